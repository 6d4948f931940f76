#!/bin/bash
# make test-interop's last step: a briefly trained Mamba-only model, exported with
# `bmlab export --format hf`, is read by transformers' MambaForCausalLM.from_pretrained
# and gives the loss `bmlab eval` gives on the same text, in the same windows.
set -euo pipefail
py=$1 bmlab=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bmlab" train "$root/Experiments/mamba-hf-tiny.yaml" --out "$work/run" > "$work/train.log"
"$bmlab" export "$work/run" --format hf --out "$work/hf"
head -c 20000 "$root/docs/weights.md" > "$work/text.txt"
loss=$("$bmlab" eval --checkpoint "$work/run/checkpoint.h5" --data "$work/text.txt" | sed -n 's/^loss: //p')
HF_HUB_OFFLINE=1 "$py" "$root/scripts/interop/check_export.py" "$work/hf" "$work/text.txt" "$loss" 8 128
