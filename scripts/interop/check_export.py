#!/usr/bin/env python3
"""transformers reads a `bmlab export --format hf` directory and gives bmlab's loss.

usage: check_export.py HF_DIR TEXT_FILE BMLAB_LOSS B L
The text is read as bytes (the byte-level model's tokens) in bmlab eval --data's windows:
window w holds tokens [w·L, w·L + L] (inputs, then targets shifted by one), every full
batch of B windows, the loss the mean cross-entropy over all of their positions.
"""
import sys
import torch
from transformers import MambaForCausalLM

torch.set_num_threads(1)
hf_dir, text, want, B, L = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model = MambaForCausalLM.from_pretrained(hf_dir).eval()
tokens = torch.tensor(list(open(text, "rb").read()), dtype=torch.long)
windows = ((len(tokens) - 1) // L) // B * B
assert windows > 0, "the text is shorter than one batch"
total, count = 0.0, 0
with torch.no_grad():
    for w in range(windows):
        x = tokens[w * L: w * L + L][None]
        y = tokens[w * L + 1: w * L + L + 1]
        logits = model(x, use_cache=False).logits[0].double()
        total += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
        count += L
got = total / count
print(f"transformers {got:.6f}, bmlab {want:.6f} on {count} tokens of {text}")
assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), "the losses differ"
print("check-export: transformers reads the export to the same loss")
