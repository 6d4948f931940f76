#!/usr/bin/env bash
# `make test-matrix`: the tests under every path this CPU runs, with one build.
# Results must not depend on the path (docs/blas.md, docs/performance.md); this shows it
# on the machine at hand.
#
# Stage 1, the kernel-level tests (FILTER) for each
#   toolkit-kernel path (PATHS; BMLAB_KERNELS) x OpenBLAS kernel family (KERNELS;
#   OPENBLAS_CORETYPE) x thread count (THREADS; BMLAB_THREADS).
# Stage 2, the learning test (MQARTests) for each OpenBLAS family x thread count on the
#   CPU's own kernel path: the toolkit's paths train bit for bit the same
#   (KernelPathTests), the BLAS family and the thread count do not
#   (notebooks-md/mqar-robustness.md).
#
#   PATHS    default: every path `bmlab doctor` lists as kernels_runnable
#   KERNELS  default: SkylakeX Haswell Sandybridge Prescott, those this CPU runs
#            (Zen computes what Haswell does; Nehalem and Core2 what the study ran)
#   THREADS  default: "1 2"
#   FILTER   default: the Core, Layers and Mixers test targets (kernels, gradient
#            checks of every layer and registered plugin, parity with references) and
#            generation against the parallel forward (the one-token products)
#   LEARN    default: 1 (0 skips stage 2)
# Logs in .test-matrix/; a table at the end; exit 1 if any cell failed.
set -uo pipefail
cd "$(dirname "$0")/.."
FLAGS=(-c release -Xswiftc -enable-testing --scratch-path .build-test)
swift build "${FLAGS[@]}" --build-tests || exit 1
BM=.build-test/release/bmlab
doctor=$($BM doctor) || exit 1
runnable=$(sed -n 's/^blas_runnable_cores: //p' <<<"$doctor" | tr ',' ' ')
PATHS=${PATHS:-$(sed -n 's/^kernels_runnable: //p' <<<"$doctor" | tr ',' ' ')}
if [ -z "${KERNELS:-}" ]; then
  KERNELS=""
  for k in SkylakeX Haswell Sandybridge Prescott; do
    [[ " $runnable " == *" $k "* ]] && KERNELS="$KERNELS $k"
  done
fi
THREADS=${THREADS:-"1 2"}
FILTER=${FILTER:-"BMCoreTests|BMLayersTests|BMMixersTests|BF16GenerationTests|RunTests.testGenerationMatchesTheParallelForward|RunTests.testChunkedPrefillMatchesTheParallelForward"}
LEARN=${LEARN:-1}
cpu=$(sed -n 's/^cpu_model: //p' <<<"$doctor")
echo "CPU: $cpu; paths: $PATHS; OpenBLAS kernels: $KERNELS; threads: $THREADS"
mkdir -p .test-matrix
summary=()
status=0

counts() { grep -E "^\s*Executed [0-9]+ tests" "$1" | tail -1 | sed -E 's/^[[:space:]]*Executed ([0-9]+) tests?, with ([0-9]+) tests? skipped and ([0-9]+) failures?.*/\1 run, \2 skipped, \3 failed/'; }

for p in $PATHS; do
  for k in $KERNELS; do
    for t in $THREADS; do
      log=.test-matrix/kernels-$p-$k-$t.log
      start=$(date +%s)
      BMLAB_KERNELS=$p OPENBLAS_CORETYPE=$k BMLAB_THREADS=$t \
        swift test "${FLAGS[@]}" --skip-build --disable-swift-testing --filter "$FILTER" > "$log" 2>&1
      rc=$?
      secs=$(( $(date +%s) - start ))
      summary+=("$(printf '%-8s %-8s %-12s %-7s %-4s %5ss  %s' kernels "$p" "$k" "$t" "$([ $rc = 0 ] && echo ok || echo FAIL)" "$secs" "$(counts "$log")")")
      [ $rc = 0 ] || status=1
      echo "${summary[-1]}"
    done
  done
done

if [ "$LEARN" = 1 ]; then
  for k in $KERNELS; do
    for t in $THREADS; do
      log=.test-matrix/mqar-$k-$t.log
      start=$(date +%s)
      OPENBLAS_CORETYPE=$k BMLAB_THREADS=$t \
        swift test "${FLAGS[@]}" --skip-build --disable-swift-testing --filter MQARTests > "$log" 2>&1
      rc=$?
      secs=$(( $(date +%s) - start ))
      acc=$(grep -o "MQAR seed [0-9]*: accuracy [0-9.]*" "$log" | sed -E 's/MQAR seed ([0-9]+): accuracy ([0-9.]+)/\2/' | sort -g | sed -n '1p;$p' | paste -sd- -)
      first=$(grep -o "first ≥ 90 % at step [0-9a-z]*" "$log" | sed 's/.* //' | paste -sd, -)
      summary+=("$(printf '%-8s %-8s %-12s %-7s %-4s %5ss  accuracy %s, first >= 90 %% at step %s' learning cpuid "$k" "$t" "$([ $rc = 0 ] && echo ok || echo FAIL)" "$secs" "${acc:-?}" "${first:-?}")")
      [ $rc = 0 ] || status=1
      echo "${summary[-1]}"
    done
  done
fi

echo
echo "CPU: $cpu"
echo "stage    path     blas kernel  threads rc    time  result"
printf '%s\n' "${summary[@]}"
exit $status
