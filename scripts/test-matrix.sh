#!/usr/bin/env bash
# `make test-matrix`: the whole test suite under several OpenBLAS kernels and thread
# counts, one after another, with one build. Results must not depend on the kernel or
# the thread count (docs/blas.md); this shows it on the machine at hand.
#
#   KERNELS   kernels to force (default: every one `bmlab doctor` says this CPU runs)
#   THREADS   thread counts (default: "1 2")
# Each run: OPENBLAS_CORETYPE=K BMLAB_THREADS=T swift test …; a table at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
FLAGS=(-c release -Xswiftc -enable-testing --scratch-path .build-test)
swift build "${FLAGS[@]}" --build-tests || exit 1
BM=.build-test/release/bmlab
KERNELS=${KERNELS:-$($BM doctor | sed -n 's/^blas_runnable_cores: //p' | tr ',' ' ')}
THREADS=${THREADS:-"1 2"}
mkdir -p .test-matrix
summary=()
status=0
for k in $KERNELS; do
  for t in $THREADS; do
    log=.test-matrix/$k-$t.log
    start=$(date +%s)
    OPENBLAS_CORETYPE=$k BMLAB_THREADS=$t swift test "${FLAGS[@]}" --skip-build --disable-swift-testing > "$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    counts=$(grep -E "^\s*Executed [0-9]+ tests" "$log" | tail -1 | sed 's/^[[:space:]]*//')
    mqar=$(grep -o "MQAR seed [0-9]*: accuracy [0-9.]*" "$log" | sed 's/: accuracy / /' | tr '\n' ';')
    summary+=("$(printf '%-12s %-7s %-4s %5ss  %s  %s' "$k" "$t" "$([ $rc = 0 ] && echo ok || echo FAIL)" "$secs" "$counts" "$mqar")")
    [ $rc = 0 ] || status=1
    echo "${summary[-1]}"
  done
done
echo
echo "kernel       threads rc    time  tests  MQAR"
printf '%s\n' "${summary[@]}"
exit $status
