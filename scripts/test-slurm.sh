#!/usr/bin/env bash
# make test-slurm: a real single-node Slurm (controller and node daemon on this
# machine, munge authentication), and a 2-run sweep submitted through sbatch.
# Installs slurm-wlm and munge with apt-get where missing (root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
BMLAB=${BMLAB:-.build/release/bmlab}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
OUT=${OUT:-results/test-slurm}
log() { echo "[test-slurm] $*"; }

source scripts/slurm/cluster.sh

# a 2-run sweep through sbatch
rm -rf "$OUT"
SWEEP=Experiments/sweeps/slurm-2runs.yaml
SUBMIT=$("$BMLAB" sweep "$SWEEP" --slurm --cpus 1 --time 00:10:00 --out "$OUT")
echo "$SUBMIT"
JOB=$(echo "$SUBMIT" | sed -n 's/^submitted array job \([0-9]*\).*/\1/p')
[ -n "$JOB" ] || { log "no job id"; exit 1; }
for i in $(seq 1 600); do
  [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] && break
  sleep 1
done
[ -z "$(squeue -h -j "$JOB")" ] || { log "job $JOB still queued after 10 minutes"; squeue; exit 1; }
cat "$OUT"/slurm/*.out | tail -5
"$BMLAB" sweep "$SWEEP" --collect --out "$OUT"
log "passed: 2 runs through sbatch, collected into $OUT/sweep.h5"
