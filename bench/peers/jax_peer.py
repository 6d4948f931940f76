#!/usr/bin/env python3
"""BlackMambaLab's JAX peer for `bmlab bench compare`: the bench-small model of
Experiments/bench-small.yaml in JAX, the whole training step (forward, backward by
autodiff, AdamW) compiled by XLA with `jax.jit`.

The model is torch_peer.py's (byte vocabulary, d_model 256, 4 Mamba + 4 MoE pre-norm
layers, LayerNorm, tied head; 8 SwiGLU experts of width 1024, BlackMamba's fast
Sinkhorn, gate = sigmoid of the chosen logit). Written the way the JAX documentation
suggests: the selective scan as a `jax.lax.scan` over the sequence (its backward
derived by JAX), the experts as one batched product per projection over the tokens
sorted into fixed-capacity blocks by expert (capacity twice the mean load, as Switch
Transformer implementations in JAX do; a token past it is dropped), the Sinkhorn loop
as a `jax.lax.while_loop`. AdamW (lr 1e-3, weight decay 0.1, clipping at 1), fp32, random bytes.

    python jax_peer.py train [--arch blackmamba|mamba] [--steps 6] [--warmup 2] [--threads 2]

Prints one JSON line with `tokens_per_s` over the timed steps (compilation is in the
warm-up steps, never timed).
"""
import argparse
import json
import math
import os
import sys
import time

VOCAB, D, N_STATE, D_CONV, EXPAND, EXPERTS, FFN = 256, 256, 16, 4, 2, 8, 1024


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["train"])
    p.add_argument("--arch", choices=["blackmamba", "mamba"], default="blackmamba")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


args = parse()
# XLA sizes its thread pool from the CPUs the process may run on: pin to --threads of them
cpus = sorted(os.sched_getaffinity(0))
os.sched_setaffinity(0, cpus[:max(1, args.threads)])
os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}")

import jax                      # noqa: E402  (after the affinity and flags are set)
import jax.numpy as jnp         # noqa: E402

E_INNER, DT_RANK = EXPAND * D, math.ceil(D / 16)


def dense(key, rows, cols):
    return jax.random.normal(key, (rows, cols), jnp.float32) / math.sqrt(cols)


def init(key, arch):
    keys = iter(jax.random.split(key, 64))
    layers = []
    for i in range(8):
        if i % 2 == 0:
            layers.append({
                "norm": {"w": jnp.ones(D), "b": jnp.zeros(D)},
                "in_proj": dense(next(keys), 2 * E_INNER, D),
                "conv_w": jax.random.normal(next(keys), (E_INNER, D_CONV)) / math.sqrt(D_CONV),
                "conv_b": jnp.zeros(E_INNER),
                "x_proj": dense(next(keys), DT_RANK + 2 * N_STATE, E_INNER),
                "dt_w": dense(next(keys), E_INNER, DT_RANK), "dt_b": jnp.full(E_INNER, -4.0),
                "A_log": jnp.log(jnp.tile(jnp.arange(1, N_STATE + 1, dtype=jnp.float32), (E_INNER, 1))),
                "D": jnp.ones(E_INNER),
                "out_proj": dense(next(keys), D, E_INNER),
            })
        elif arch == "blackmamba":
            layers.append({
                "norm": {"w": jnp.ones(D), "b": jnp.zeros(D)},
                "router_w": dense(next(keys), EXPERTS, D), "router_b": jnp.zeros(EXPERTS),
                "fc1": jax.random.normal(next(keys), (EXPERTS, D, 2 * FFN)) / math.sqrt(D),
                "fc2": jax.random.normal(next(keys), (EXPERTS, FFN, D)) / math.sqrt(FFN),
            })
        else:
            layers.append({
                "norm": {"w": jnp.ones(D), "b": jnp.zeros(D)},
                "fc1": dense(next(keys), 2 * FFN, D), "fc2": dense(next(keys), D, FFN),
            })
    return {"embedding": jax.random.normal(next(keys), (VOCAB, D)) * 0.02, "layers": layers,
            "final_norm": {"w": jnp.ones(D), "b": jnp.zeros(D)}}


def layernorm(p, x):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + 1e-5) * p["w"] + p["b"]


def selective_scan(dt, a, b, xs, c):
    # dt, xs: [B, L, E]; a: [E, N]; b, c: [B, L, N] → y [B, L, E]. One step of the
    # recurrence per position (jax.lax.scan), the decay made inside the step: measured
    # 3x faster than jax.lax.associative_scan over [B, L, E, N] on these shapes
    def step(h, z):
        d, bb, x, cc = z                                                     # [B, E], [B, N], [B, E], [B, N]
        h = jnp.exp(d[..., None] * a) * h + (d * x)[..., None] * bb[:, None, :]
        return h, jnp.einsum("ben,bn->be", h, cc)
    h0 = jnp.zeros((dt.shape[0], dt.shape[2], a.shape[1]), dt.dtype)
    _, y = jax.lax.scan(step, h0, tuple(t.swapaxes(0, 1) for t in (dt, b, xs, c)))
    return y.swapaxes(0, 1)


def mamba(p, x):
    # x: [B, L, D]
    L = x.shape[1]
    xs, z = jnp.split(x @ p["in_proj"].T, 2, axis=-1)                     # [B, L, E] each
    padded = jnp.pad(xs, ((0, 0), (D_CONV - 1, 0), (0, 0)))
    xs = sum(padded[:, k:k + L] * p["conv_w"][:, k] for k in range(D_CONV)) + p["conv_b"]
    xs = jax.nn.silu(xs)
    dt, b, c = jnp.split(xs @ p["x_proj"].T, [DT_RANK, DT_RANK + N_STATE], axis=-1)
    dt = jax.nn.softplus(dt @ p["dt_w"].T + p["dt_b"])                    # [B, L, E]
    y = selective_scan(dt, -jnp.exp(p["A_log"]), b, xs, c) + p["D"] * xs
    return (y * jax.nn.silu(z)) @ p["out_proj"].T


def fast_sinkhorn(logits, tol=1e-4, max_iter=100):
    # logits: [T, E] → expert of each token (no gradient)
    k = jnp.exp(2.0 * jax.lax.stop_gradient(logits))
    t, e = k.shape
    d1 = 1.0 / (e * k.sum(0))

    def body(state):
        d0, d1, _, i = state
        d0 = (1.0 / t) / (k @ d1 + 1e-8)
        d1_new = (1.0 / e) / (k.T @ d0 + 1e-8)
        return d0, d1_new, jnp.abs(d1_new - d1).mean(), i + 1

    d0, d1, _, _ = jax.lax.while_loop(lambda s: (s[2] > tol) & (s[3] < max_iter), body,
                                      (jnp.ones(t), d1, jnp.array(jnp.inf), 0))
    return jnp.argmax(d0[:, None] * k * d1[None, :], axis=1)


def moe(p, x):
    # x: [B, L, D]. Tokens sorted by expert into blocks of a fixed capacity (twice the
    # mean load: XLA needs static shapes), one batched product per projection over the
    # [E, C, D] blocks; a token past its expert's capacity is dropped (output 0).
    shape = x.shape
    x = x.reshape(-1, D)
    t = x.shape[0]
    cap = 2 * t // EXPERTS
    logits = x @ p["router_w"].T + p["router_b"]
    pick = fast_sinkhorn(logits)
    gate = jax.nn.sigmoid(jnp.take_along_axis(logits, pick[:, None], axis=1))
    onehot = jax.nn.one_hot(pick, EXPERTS, dtype=jnp.int32)
    slot = jnp.take_along_axis(jnp.cumsum(onehot, axis=0) - 1, pick[:, None], axis=1)[:, 0]   # place in its expert's block
    keep = slot < cap
    flat = jnp.where(keep, pick * cap + slot, EXPERTS * cap)                 # dropped → a spare row
    blocks = jnp.zeros((EXPERTS * cap + 1, D), x.dtype).at[flat].set(x)[:-1].reshape(EXPERTS, cap, D)
    g, u = jnp.split(jnp.einsum("ecd,edf->ecf", blocks, p["fc1"]), 2, axis=-1)
    y = jnp.einsum("ecf,efd->ecd", jax.nn.silu(g) * u, p["fc2"]).reshape(EXPERTS * cap, D)
    y = jnp.concatenate([y, jnp.zeros((1, D), y.dtype)])[flat]
    return (y * gate * keep[:, None]).reshape(shape)


def mlp(p, x):
    g, u = jnp.split(x @ p["fc1"].T, 2, axis=-1)
    return (jax.nn.silu(g) * u) @ p["fc2"].T


def loss_fn(params, tokens):
    x = params["embedding"][tokens[:, :-1]]
    for i, p in enumerate(params["layers"]):
        h = layernorm(p["norm"], x)
        x = x + (mamba(p, h) if i % 2 == 0 else moe(p, h) if "router_w" in p else mlp(p, h))
    logits = layernorm(params["final_norm"], x) @ params["embedding"].T
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()


@jax.jit
def train_step(params, m, v, t, tokens):
    loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
    scale = jnp.minimum(1.0, 1.0 / (norm + 1e-6))
    lr, b1, b2, eps, wd = 1e-3, 0.9, 0.999, 1e-8, 0.1
    m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g * scale, m, grads)
    v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * (g * scale) ** 2, v, grads)
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    params = jax.tree_util.tree_map(lambda p, m, v: p - lr * (m / c1 / (jnp.sqrt(v / c2) + eps) + wd * p), params, m, v)
    return params, m, v, loss


def main():
    params = init(jax.random.PRNGKey(0), args.arch)
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    data = jax.random.randint(jax.random.PRNGKey(1), (args.warmup + args.steps, args.batch, args.seq_len + 1), 0, VOCAB)
    loss = None
    for i in range(args.warmup):
        params, m, v, loss = train_step(params, m, v, float(i + 1), data[i])
    jax.block_until_ready(params)
    t0 = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        params, m, v, loss = train_step(params, m, v, float(i + 1), data[i])
    jax.block_until_ready(params)
    dt = time.perf_counter() - t0
    print(json.dumps({"peer": "jax", "arch": args.arch, "tokens_per_s": args.steps * args.batch * args.seq_len / dt,
                      "loss": float(loss), "threads": args.threads, "jax": jax.__version__}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
