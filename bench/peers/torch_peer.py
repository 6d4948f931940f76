#!/usr/bin/env python3
"""BlackMambaLab's PyTorch peer for `bmlab bench compare`: the bench-small model of
Experiments/bench-small.yaml written in plain PyTorch, as a CPU user would write it first.

Model (the toolkit's names in brackets): byte vocabulary 256, d_model 256, 8 pre-norm
residual layers alternating Mamba and MoE [pattern: [mamba, moe], repeat: 4], LayerNorm
everywhere [final_norm: layernorm], tied head. Mamba: expand 2, d_state 16, d_conv 4,
dt_rank ceil(d/16); the selective scan is mambapy's parallel scan (`mambapy.pscan`, a
Blelloch scan with its own backward), the one pure-PyTorch scan on PyPI. MoE: 8 SwiGLU
experts of width 1024, a router Linear with bias, top-1 routing by BlackMamba's fast
Sinkhorn in training (temperature 0.5, column-normalising start, tolerance 1e-4 on the
mean change of d1) and by the argmax of the logits in generation, gate = sigmoid of the
chosen logit; each expert runs one matrix product per projection over its tokens.
AdamW (lr 1e-3, weight decay 0.1), fp32, random bytes (speed only).

    python torch_peer.py train [--arch blackmamba|mamba] [--steps 6] [--warmup 1] [--threads 2]
    python torch_peer.py generate [--lengths 128,1024] [--tokens 32] [--threads 2]
    python torch_peer.py check      # the recurrent step equals the parallel forward

Each prints one JSON line: `{"tokens_per_s": ...}` (training, fwd + bwd + AdamW over the
timed steps) or `{"per_token_s_at_length": {"128": s, ...}}` (batch-1 generation: a
parallel prefill of the context, then the median time of a recurrent step).
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from mambapy.pscan import pscan

VOCAB, D, N_STATE, D_CONV, EXPAND, EXPERTS, FFN = 256, 256, 16, 4, 2, 8, 1024


def fast_sinkhorn(logits, tol=1e-4, max_iter=100):
    """Expert choice of BlackMamba's fast Sinkhorn on [T, E] logits (no gradient)."""
    with torch.no_grad():
        k = torch.exp(2.0 * logits.float())                      # temperature 0.5
        t, e = k.shape
        d1 = 1.0 / (e * k.sum(0))                                 # column-normalising start
        for _ in range(max_iter):
            d0 = (1.0 / t) / (k @ d1 + 1e-8)
            d1_new = (1.0 / e) / (k.t() @ d0 + 1e-8)
            err = (d1_new - d1).abs().mean()
            d1 = d1_new
            if err <= tol:
                break
        return (d0[:, None] * k * d1[None, :]).argmax(1)


class Mamba(nn.Module):
    def __init__(self):
        super().__init__()
        e, r = EXPAND * D, math.ceil(D / 16)
        self.e, self.r = e, r
        self.in_proj = nn.Linear(D, 2 * e, bias=False)
        self.conv1d = nn.Conv1d(e, e, D_CONV, groups=e, padding=D_CONV - 1)
        self.x_proj = nn.Linear(e, r + 2 * N_STATE, bias=False)
        self.dt_proj = nn.Linear(r, e)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N_STATE + 1, dtype=torch.float32)).repeat(e, 1))
        self.D = nn.Parameter(torch.ones(e))
        self.out_proj = nn.Linear(e, D, bias=False)

    def ssm_inputs(self, xs):
        # xs: [B, L, E] → decay [B, L, E, N], input [B, L, E, N], C [B, L, N]
        dt, b, c = self.x_proj(xs).split([self.r, N_STATE, N_STATE], dim=-1)
        dt = F.softplus(self.dt_proj(dt))
        a = -torch.exp(self.A_log)
        return torch.exp(dt[..., None] * a), dt[..., None] * b[:, :, None, :] * xs[..., None], c

    def forward(self, x, want_state=False):
        # x: [B, L, D]
        L = x.shape[1]
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        conv_in = xs.transpose(1, 2)                              # [B, E, L]
        xs = F.silu(self.conv1d(conv_in)[..., :L].transpose(1, 2))
        decay, inp, c = self.ssm_inputs(xs)
        h = pscan(decay, inp)                                     # [B, L, E, N]
        y = (h @ c[..., None]).squeeze(-1) + self.D * xs
        out = self.out_proj(y * F.silu(z))
        if not want_state:
            return out
        pad = F.pad(conv_in, (D_CONV - 1, 0))[..., -(D_CONV - 1):]
        return out, (pad, h[:, -1])

    def step(self, x, state):
        # x: [B, D]; state: conv inputs [B, E, d_conv - 1], h [B, E, N]
        conv, h = state
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        window = torch.cat([conv, xs[..., None]], dim=-1)         # [B, E, d_conv]
        xs = F.silu((window * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias)
        decay, inp, c = self.ssm_inputs(xs[:, None])
        h = decay[:, 0] * h + inp[:, 0]
        y = (h @ c[:, 0, :, None]).squeeze(-1) + self.D * xs
        return self.out_proj(y * F.silu(z)), (window[..., 1:], h)


class MoE(nn.Module):
    def __init__(self):
        super().__init__()
        self.router = nn.Linear(D, EXPERTS)
        self.fc1 = nn.Parameter(torch.randn(EXPERTS, 2 * FFN, D) / math.sqrt(D))
        self.fc2 = nn.Parameter(torch.randn(EXPERTS, D, FFN) / math.sqrt(FFN))

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, D)
        logits = self.router(x)
        pick = fast_sinkhorn(logits) if self.training else logits.argmax(1)
        gate = torch.sigmoid(logits.gather(1, pick[:, None]))
        out = torch.zeros_like(x)
        order = torch.argsort(pick, stable=True)
        counts = torch.bincount(pick, minlength=EXPERTS).tolist()
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            idx = order[start:start + n]
            start += n
            g, u = F.linear(x[idx], self.fc1[e]).chunk(2, dim=-1)
            out = out.index_add(0, idx, F.linear(F.silu(g) * u, self.fc2[e]) * gate[idx])
        return out.reshape(shape)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, 2 * FFN, bias=False)
        self.fc2 = nn.Linear(FFN, D, bias=False)

    def forward(self, x):
        g, u = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(g) * u)


class Model(nn.Module):
    def __init__(self, arch):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, D)
        nn.init.normal_(self.embedding.weight, std=0.02)          # tied head: logits of order 1
        channel = MoE if arch == "blackmamba" else MLP
        self.mixers = nn.ModuleList([Mamba() if i % 2 == 0 else channel() for i in range(8)])
        self.norms = nn.ModuleList([nn.LayerNorm(D) for _ in range(8)])
        self.final_norm = nn.LayerNorm(D)

    def forward(self, tokens):
        # tokens: [B, L] → logits [B, L, V] (tied head)
        x = self.embedding(tokens)
        for norm, mixer in zip(self.norms, self.mixers):
            x = x + mixer(norm(x))
        return self.final_norm(x) @ self.embedding.weight.t()

    def prefill(self, tokens):
        x, states = self.embedding(tokens), []
        for norm, mixer in zip(self.norms, self.mixers):
            if isinstance(mixer, Mamba):
                y, s = mixer(norm(x), want_state=True)
                states.append(s)
            else:
                y = mixer(norm(x))
                states.append(None)
            x = x + y
        return (self.final_norm(x[:, -1]) @ self.embedding.weight.t()), states

    def step(self, token, states):
        x = self.embedding(token)
        for i, (norm, mixer) in enumerate(zip(self.norms, self.mixers)):
            if isinstance(mixer, Mamba):
                y, states[i] = mixer.step(norm(x), states[i])
            else:
                y = mixer(norm(x))
            x = x + y
        return self.final_norm(x) @ self.embedding.weight.t(), states


def train(args):
    model = Model(args.arch)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, VOCAB, (args.warmup + args.steps, args.batch, args.seq_len + 1), generator=g)

    def step(i):
        opt.zero_grad(set_to_none=True)
        logits = model(data[i, :, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), data[i, :, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for i in range(args.warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(args.warmup + i)
    dt = time.perf_counter() - t0
    print(json.dumps({"peer": "pytorch", "arch": args.arch, "tokens_per_s": args.steps * args.batch * args.seq_len / dt,
                      "loss": loss, "threads": torch.get_num_threads(), "torch": torch.__version__}))


def generate(args):
    model = Model(args.arch)
    model.eval()
    out = {}
    with torch.no_grad():
        for length in [int(s) for s in args.lengths.split(",")]:
            g = torch.Generator().manual_seed(length)
            context = torch.randint(0, VOCAB, (1, length), generator=g)
            logits, states = model.prefill(context)
            times = []
            for _ in range(args.tokens):
                token = logits.argmax(-1).reshape(1)
                t0 = time.perf_counter()
                logits, states = model.step(token, states)
                times.append(time.perf_counter() - t0)
            out[str(length)] = sorted(times)[len(times) // 2]
    print(json.dumps({"peer": "pytorch", "arch": args.arch, "per_token_s_at_length": out, "threads": torch.get_num_threads()}))


def check(args):
    """The recurrent step against the parallel forward, on one sequence (evaluation routing)."""
    model = Model(args.arch)
    model.eval()
    with torch.no_grad():
        tokens = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(3))
        full = model(tokens)[0]                                   # [L, V]
        logits, states = model.prefill(tokens[:, :8])
        worst = (logits[0] - full[7]).abs().max().item()
        for t in range(8, 24):
            logits, states = model.step(tokens[:, t], states)
            worst = max(worst, (logits[0] - full[t]).abs().max().item())
    scale = full.abs().max().item()
    print(json.dumps({"peer": "pytorch", "check": "recurrent step = parallel forward", "max_abs_diff": worst, "logit_scale": scale}))
    if worst > 1e-4 * max(1.0, scale):
        raise SystemExit(f"torch_peer.py check: recurrent and parallel logits differ by {worst}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["train", "generate", "check"])
    p.add_argument("--arch", choices=["blackmamba", "mamba"], default="blackmamba")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lengths", default="128,1024")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    {"train": train, "generate": generate, "check": check}[args.command](args)


if __name__ == "__main__":
    main()
