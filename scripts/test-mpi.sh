#!/usr/bin/env bash
# make test-mpi: data-parallel training on Open MPI, across real processes
# (docs/distributed.md). Each check prints what it compared; any failure exits non-zero.
#   1. the shim's handles equal the installed mpi.h's (scripts/mpi/abi-check.c)
#   2. 2 ranks = 2 shards in one process, bit for bit (parameters, training and
#      validation losses) (dense Mamba, BlackMamba with fast
#      Sinkhorn, the lossfree router); 4 ranks = 4 shards (Open MPI's basic_linear
#      reduction, forced below); 1 process = 2 ranks within 1e-5 relative (dense Mamba)
#   3. a rank killed mid-run ends the job (no hang), and --resume continues from the
#      checkpoint on 2 ranks and on 1 process, to the bits of the uninterrupted run;
#      a rank that stops answering trips the collective watchdog; ranks that start from
#      different parameters (another seed) are stopped by the parameter check
#   4. a sweep run distributed over 2 ranks
#   5. the same training launched by Slurm (sbatch + srun --mpi=pmix) on the one-node
#      cluster of make test-slurm, equal to the mpirun run
set -euo pipefail
cd "$(dirname "$0")/.."
BMLAB=${BMLAB:-.build/release/bmlab}
OUT=${OUT:-/tmp/bmlab-test-mpi}
log() { echo "[test-mpi] $*"; }
fail() { echo "[test-mpi] FAILED: $*" >&2; exit 1; }

# What mpirun needs here, set for the user: root in CI containers, no ptrace between
# ranks (vader's single-copy path), more ranks than cores for the 4-rank check, and one
# fixed reduction algorithm (basic_linear: rank order, the same bits on every run).
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_coll_tuned_use_dynamic_rules=1 OMPI_MCA_coll_tuned_allreduce_algorithm=1
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl self,vader --timeout 900)
command -v mpirun >/dev/null || fail "mpirun is missing (make deps installs openmpi-bin)"

rm -rf "$OUT"; mkdir -p "$OUT"

# 1 -------------------------------------------------------------------------------
cc scripts/mpi/abi-check.c $(pkg-config --cflags --libs ompi-c) -ldl -o "$OUT/abi-check"
"$OUT/abi-check"

# Python compares the files (h5py, installed by make deps)
compare() {  # compare MODE A B [TOL]: bitwise | close
  python3 - "$@" <<'PY'
import sys, h5py, numpy as np
mode, a, b = sys.argv[1:4]
tol = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
def params(d):
    out = {}
    with h5py.File(d + "/checkpoint.h5", "r") as f:
        f["model"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out
def series(d, k):
    with h5py.File(d + "/metrics.h5", "r") as f:
        return f[k][()]
la, lb = series(a, "train/loss"), series(b, "train/loss")
if mode == "bitwise":
    pa, pb = params(a), params(b)
    same = pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)
    ea, eb = series(a, "eval/loss"), series(b, "eval/loss")
    ok = same and np.array_equal(la, lb) and np.array_equal(ea, eb)
    with h5py.File(a + "/metrics.h5", "r") as f:
        routed = "router/layer_1/load" in f
    if routed:   # the logged router load covers the whole batch, as in one process with these shards
        ra, rb = series(a, "router/layer_1/load"), series(b, "router/layer_1/load")
        with h5py.File(a + "/metrics.h5", "r") as f:
            tokens = int(f["train/tokens"][0])
        whole = ra.sum(axis=1).min() >= tokens
        print(f"  router load: {'equal' if np.array_equal(ra, rb) else 'DIFFERS'}, every logged step covers the batch's {tokens} tokens: {whole}")
        ok = ok and np.array_equal(ra, rb) and whole
    print(f"  {a} vs {b}: {len(pa)} parameter tensors, {len(la)} training and {len(ea)} validation losses {'bitwise equal' if ok else 'DIFFER'}")
else:
    rel = float(np.max(np.abs(la - lb) / np.abs(la)))
    ok = len(la) == len(lb) and rel <= tol
    print(f"  {a} vs {b}: {len(la)} training losses, largest relative difference {rel:.2e} (bound {tol:g})")
sys.exit(0 if ok else 1)
PY
}

attr() { python3 -c "import h5py,sys; print(h5py.File(sys.argv[1],'r').attrs[sys.argv[2]])" "$1" "$2"; }

# small and short: 16 × 64 tokens a step; the dense Mamba at d_model 64, 4 layers
STEPS="train.steps=30 train.log_every=1 train.eval_every=15 train.checkpoint_every=15 train.eval_batches=4 train.batch=16 train.seq_len=64"
MAMBA="model.d_model=64 model.repeat=2"

# 2 -------------------------------------------------------------------------------
log "2 ranks against 2 shards in one process (bitwise) and against 1 process (close)"
for spec in mamba blackmamba-tiny lossfree; do
  file=Experiments/$spec.yaml; extra=""
  [ $spec = mamba ] && extra="$MAMBA"
  [ $spec = lossfree ] && { file=Experiments/blackmamba-tiny.yaml; extra="model.defaults.moe.router.name=lossfree"; }
  "$BMLAB" train $file $STEPS $extra --threads 1 --shards 2 --out "$OUT/$spec-shards2" > "$OUT/$spec-shards2.log" 2>&1
  "${MPIRUN[@]}" -np 2 "$BMLAB" train $file $STEPS $extra --out "$OUT/$spec-ranks2" > "$OUT/$spec-ranks2.log" 2>&1 \
    || { cat "$OUT/$spec-ranks2.log"; fail "2-rank run of $spec"; }
  [ "$(attr "$OUT/$spec-ranks2/metrics.h5" world_size)" = 2 ] || fail "$spec: world_size not recorded as 2"
  [ "$(attr "$OUT/$spec-ranks2/metrics.h5" rank_batch)" = 8 ] || fail "$spec: rank_batch not recorded as 8"
  compare bitwise "$OUT/$spec-shards2" "$OUT/$spec-ranks2" || fail "$spec: 2 ranks differ from 2 shards"
done
# One process, whole batch: another summation order, so not bitwise; a dense model's
# curve agrees to float32 rounding (measured: 4e-7 relative over 20 steps).
"$BMLAB" train Experiments/mamba.yaml $STEPS $MAMBA --threads 1 --out "$OUT/mamba-single" > "$OUT/mamba-single.log" 2>&1
compare close "$OUT/mamba-single" "$OUT/mamba-ranks2" 1e-5 || fail "1 process and 2 ranks diverge"
log "4 ranks against 4 shards (basic_linear folds rank 3 first, as the shards are added)"
"$BMLAB" train Experiments/mamba.yaml $STEPS $MAMBA --threads 1 --shards 4 --out "$OUT/mamba-shards4" > "$OUT/mamba-shards4.log" 2>&1
"${MPIRUN[@]}" -np 4 "$BMLAB" train Experiments/mamba.yaml $STEPS $MAMBA --out "$OUT/mamba-ranks4" > "$OUT/mamba-ranks4.log" 2>&1 \
  || { cat "$OUT/mamba-ranks4.log"; fail "4-rank run"; }
compare bitwise "$OUT/mamba-shards4" "$OUT/mamba-ranks4" || fail "4 ranks differ from 4 shards"

log "ranks that start apart (another seed on rank 1) are stopped by the parameter check"
status=0
"${MPIRUN[@]}" -np 1 "$BMLAB" train Experiments/mamba.yaml $STEPS $MAMBA train.seed=1 --out "$OUT/apart" : \
               -np 1 "$BMLAB" train Experiments/mamba.yaml $STEPS $MAMBA train.seed=2 --out "$OUT/apart" > "$OUT/apart.log" 2>&1 || status=$?
[ $status -ne 0 ] || fail "ranks with different parameters trained on"
grep -q "the ranks' parameters differ at the start" "$OUT/apart.log" || { cat "$OUT/apart.log"; fail "no message about the parameters"; }
log "  stopped (status $status): $(grep -o "the ranks' parameters differ at the start[^;]*" "$OUT/apart.log" | head -1)"

# 3 -------------------------------------------------------------------------------
log "a rank killed mid-run; resume on 2 ranks and on 1 process"
LONG="train.steps=80 train.log_every=1 train.eval_every=20 train.checkpoint_every=20 train.eval_batches=4 train.batch=16 train.seq_len=64"
SPEC=Experiments/blackmamba-tiny.yaml
"${MPIRUN[@]}" -np 2 "$BMLAB" train $SPEC $LONG --out "$OUT/whole" > "$OUT/whole.log" 2>&1 || fail "uninterrupted run"
rank_pid() {  # the pid of rank $1 of the bmlab processes writing into $2
  for p in $(pgrep -f "bmlab train .*--out $2\$" || true); do
    tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo $p; return; }
  done
}
checkpoint_step() { python3 -c "import h5py,sys; print(int(h5py.File(sys.argv[1],'r').attrs['step']))" "$1" 2>/dev/null || echo 0; }
interrupt() {  # interrupt SIGNAL DIR: start a 2-rank run, signal rank 1 after the step-20 checkpoint
  local sig=$1 dir=$2
  "${MPIRUN[@]}" -np 2 "$BMLAB" train $SPEC $LONG --out "$dir" > "$dir.log" 2>&1 &
  local job=$! t=0
  until [ "$(checkpoint_step "$dir/checkpoint.h5")" -ge 20 ]; do sleep 0.2; t=$((t + 1)); [ $t -lt 1500 ] || fail "no checkpoint after 300 s"; done
  local pid; pid=$(rank_pid 1 "$dir"); [ -n "$pid" ] || fail "rank 1 not found"
  kill -"$sig" "$pid"
  local start=$SECONDS status=0
  wait $job || status=$?
  [ $status -ne 0 ] || fail "the job ended with status 0 after rank 1 got SIG$sig"
  log "  SIG$sig to rank 1: the job ended in $((SECONDS - start)) s with status $status; it said:"
  grep -E "rank|signal|Killed|waited" "$dir.log" | sed 's/^/    /' | head -6
}
interrupt KILL "$OUT/killed"
[ "$(checkpoint_step "$OUT/killed/checkpoint.h5")" -lt 80 ] || fail "the run finished before the kill"
cp -r "$OUT/killed" "$OUT/killed-1proc"
"${MPIRUN[@]}" -np 2 "$BMLAB" train $SPEC $LONG --out "$OUT/killed" --resume > "$OUT/resume2.log" 2>&1 || { cat "$OUT/resume2.log"; fail "resume on 2 ranks"; }
compare bitwise "$OUT/whole" "$OUT/killed" || fail "the run resumed on 2 ranks differs from the uninterrupted one"
"$BMLAB" train $SPEC $LONG --threads 1 --shards 2 --out "$OUT/killed-1proc" --resume > "$OUT/resume1.log" 2>&1 || { cat "$OUT/resume1.log"; fail "resume in 1 process"; }
compare bitwise "$OUT/whole" "$OUT/killed-1proc" || fail "the run resumed in 1 process differs from the uninterrupted one"
log "a rank that stops answering (SIGSTOP): the watchdog of the others ends the job"
BMLAB_MPI_TIMEOUT=10 interrupt STOP "$OUT/stopped"
grep -q "has waited 10 s for the other ranks" "$OUT/stopped.log" || { cat "$OUT/stopped.log"; fail "no watchdog message"; }

# 4 -------------------------------------------------------------------------------
log "a sweep whose runs are distributed over 2 ranks"
"$BMLAB" sweep Experiments/sweeps/slurm-2runs.yaml train.steps=20 --ranks 2 --workers 1 --out "$OUT/sweep" > "$OUT/sweep.log" 2>&1 \
  || { cat "$OUT/sweep.log"; fail "distributed sweep"; }
for m in "$OUT"/sweep/runs/*/metrics.h5; do [ "$(attr "$m" world_size)" = 2 ] || fail "$m: not run on 2 ranks"; done
log "  $(ls "$OUT"/sweep/runs | wc -l) runs, each on 2 ranks"

# 5 -------------------------------------------------------------------------------
log "the same training through Slurm: sbatch, srun --mpi=pmix, 2 tasks"
source scripts/slurm/cluster.sh
srun --mpi=list 2>&1 | grep -q pmix || fail "this Slurm has no pmix plugin (srun --mpi=list)"
JOBID=$("$BMLAB" train Experiments/mamba.yaml $STEPS $MAMBA --slurm-ranks 2 --slurm-time 00:10:00 --out "$OUT/mamba-slurm" | sed -n 's/^submitted job \([0-9]*\).*/\1/p')
[ -n "$JOBID" ] || fail "no job submitted"
for i in $(seq 1 600); do [ -z "$(squeue -h -j "$JOBID" 2>/dev/null)" ] && break; sleep 1; done
cat "$OUT/mamba-slurm/slurm-$JOBID.out" | tail -3
[ "$(attr "$OUT/mamba-slurm/metrics.h5" world_size)" = 2 ] || fail "the Slurm run did not run on 2 ranks"
compare bitwise "$OUT/mamba-ranks2" "$OUT/mamba-slurm" || fail "the Slurm run differs from the mpirun run"
log "passed"
