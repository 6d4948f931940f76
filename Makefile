# BlackMambaLab — the two commands a new machine needs: `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libhdf5-dev libopenblas-dev gnuplot-nox hdf5-tools pkg-config fortunes bible-kjv dict-gcide openmpi-bin libopenmpi-dev
BMLAB_RELEASE := .build/release/bmlab
DEMO_OUT ?= results/demo

.PHONY: deps build release test test-matrix test-debug test-slurm test-interop test-mpi demo doctor peers bench docs clean

## deps: install the system packages that are missing (Debian; needs root or sudo)
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "system packages present: $(APT_PACKAGES)"; fi
	@python3 -c "import h5py" 2>/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-h5py >/dev/null 2>&1; \
	  python3 -c "import h5py" 2>/dev/null || pip install -q h5py 2>/dev/null || \
	  echo "note: python3 on PATH does not import h5py (python3-h5py or pip install h5py); make test will fail its h5py tests"; }

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product bmlab

## test: the whole suite, built in release mode (with -enable-testing for @testable):
## the training tests (MQAR, resume, determinism) run in seconds instead of minutes.
## BMLAB_REQUIRE_TOOLS=1: a test whose program (gnuplot, h5dump, h5py, bmlab) is missing
## fails here instead of skipping; what was skipped (what this CPU cannot run) is listed.
TEST_FLAGS := -c release -Xswiftc -enable-testing --scratch-path .build-test
test: deps
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	BMLAB_REQUIRE_TOOLS=1 $(SWIFT) test $(TEST_FLAGS) --skip-build --disable-swift-testing 2>&1 | tee .test.log; \
	  status=$${PIPESTATUS[0]}; \
	  echo "skipped (what this CPU cannot run):"; \
	  grep -E ": Test skipped - " .test.log | sed -E 's/^.*: ([A-Za-z0-9_]+\.[A-Za-z0-9_]+) : Test skipped - /  \1: /' || echo "  none"; \
	  exit $$status

## test-matrix: the suite under every OpenBLAS kernel this CPU runs, with 1 and 2 threads
## (KERNELS="Zen Prescott" THREADS=2 make test-matrix for a part); logs in .test-matrix/
test-matrix: deps
	bash scripts/test-matrix.sh

## test-debug: the same suite in a debug build (slower; the MQAR test alone takes ~15 minutes)
test-debug: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-swift-testing

## test-interop: parity with the PyTorch world. Makes (once) a cached Python environment with
## torch's CPU build and transformers (scripts/interop-env.sh), rewrites the committed fixtures
## (small random MambaForCausalLM models in both file formats, mamba_ssm's and Zyphra's layouts,
## with what their references compute), runs the Swift parity tests on them, and checks that
## transformers reads a bmlab export of a trained model to the same loss (docs/weights.md).
test-interop: release
	@py=$$(bash scripts/interop-env.sh) && \
	  $$py scripts/interop/make_fixtures.py Tests/BMInteropTests/Fixtures && \
	  $(SWIFT) build $(TEST_FLAGS) --build-tests && \
	  $(SWIFT) test $(TEST_FLAGS) --skip-build --disable-swift-testing --filter BMInteropTests && \
	  bash scripts/interop/check-export.sh $$py $(BMLAB_RELEASE) && \
	  { git diff --quiet -- Tests/BMInteropTests/Fixtures || echo "test-interop: the fixtures changed (git diff Tests/BMInteropTests/Fixtures); commit them if the change is meant"; }

## test-slurm: a real single-node Slurm (installs slurm-wlm, munge), a 2-run sweep through sbatch
test-slurm: release
	bash scripts/test-slurm.sh

## test-mpi: data-parallel training across real processes (docs/distributed.md): 2 and 4 ranks
## against the same shards in one process (bitwise), 1 process against 2 ranks, a killed and a
## hung rank, resume on another number of ranks, a sweep on 2 ranks, a 2-rank Slurm job (sets up
## the one-node cluster of test-slurm). Sets what mpirun needs here (root, containers) itself.
## Uses make test's build (nothing to rebuild after make test, as in CI).
test-mpi: deps
	$(SWIFT) build $(TEST_FLAGS) --product bmlab
	BMLAB=.build-test/release/bmlab bash scripts/test-mpi.sh

## demo: a small default experiment end to end, with its HDF5 file
demo: release
	$(BMLAB_RELEASE) doctor
	$(BMLAB_RELEASE) demo --out $(DEMO_OUT)

doctor: release
	$(BMLAB_RELEASE) doctor

## peers: the virtual environments of the PyTorch and JAX peers in bench/peers, made once
## in ~/.cache/blackmambalab/peers (BMLAB_PEERS_ENV=DIR elsewhere), remade when a pin changes
peers:
	bash scripts/peers.sh

## bench: the kernels, then the toolkit against the PyTorch and JAX peers, side by side
bench: release peers
	$(BMLAB_RELEASE) bench kernels
	$(BMLAB_RELEASE) bench compare --rounds 3 --out results/bench

## docs: regenerate the generated parts of docs/ (the spec key reference in docs/specs.md)
docs: release
	$(BMLAB_RELEASE) list --keys --into docs/specs.md

clean:
	rm -rf .build
