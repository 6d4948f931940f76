#!/usr/bin/env python3
"""Writes BMInteropTests' fixtures (make test-interop; the files are committed, so
`make test` and CI check the readers and the parity without Python).

For each case, a small random-weight model, its weights in a layout `bmlab import` reads,
and what a reference computes on a fixed token sequence:
  - hf-*: transformers' MambaForCausalLM (several shapes: time_step_rank not the default,
    tied and untied heads, conv_kernel 2 and 3), saved by save_pretrained both as
    model.safetensors and as pytorch_model.bin; the reference is the model itself;
  - mamba-ssm: the hf-tied weights in mamba_ssm's layout (backbone.embedding.weight,
    its config.json, torch.save of the state dict with the tied head under two names);
  - zyphra: a BlackMamba with Zyphra's names and config, torch.save({"model": …}); the
    reference is an independent float64 transcription of the released forward pass
    (Mamba blocks, MoE routed by the largest sigmoid and scaled by it, GELU-gated
    experts, final LayerNorm, tied head).
expected.json holds the tokens, the per-position log-probabilities (float64) and the
greedy continuation of a prompt, with the smallest top-2 logit margin along it (so a
test knows the greedy tokens are not a near tie).
"""
import json, os, shutil, sys
import torch
import torch.nn.functional as F
from transformers import MambaConfig, MambaForCausalLM

torch.set_num_threads(1)
OUT = sys.argv[1]
L, PROMPT, NEW = 24, 6, 12

HF_CASES = [
    dict(name="hf-tied", seed=1, vocab_size=48, hidden_size=16, num_hidden_layers=2, state_size=4, expand=2,
         conv_kernel=4, time_step_rank="auto", tie_word_embeddings=True),
    dict(name="hf-untied-rank5", seed=2, vocab_size=40, hidden_size=24, num_hidden_layers=3, state_size=6, expand=2,
         conv_kernel=3, time_step_rank=5, tie_word_embeddings=False),
    dict(name="hf-expand3-k2", seed=3, vocab_size=32, hidden_size=8, num_hidden_layers=1, state_size=8, expand=3,
         conv_kernel=2, time_step_rank=2, tie_word_embeddings=True),
]


def perturb(named, gen):
    """Moves every parameter off its initial value (norm weights, D and biases are trivial after init)."""
    with torch.no_grad():
        for n, p in named:
            scale = 0.1 if n.endswith("A_log") else 0.2 if n.endswith("dt_proj.bias") else 0.05
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def greedy(next_logits, prompt):
    """Greedy continuation by a function giving the last position's logits; the smallest top-2 margin."""
    seq, margin = list(prompt), float("inf")
    for _ in range(NEW):
        lg = next_logits(seq)
        top = torch.topk(lg, 2).values
        margin = min(margin, float(top[0] - top[1]))
        seq.append(int(torch.argmax(lg)))
    return seq[len(prompt):], margin


def write_expected(d, tokens, logprobs, prompt, cont, margin):
    assert margin > 1e-3, f"{d}: greedy top-2 margin {margin} is a near tie; choose another seed"
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"tokens": tokens, "logprobs": [[round(x, 10) for x in row] for row in logprobs],
                   "prompt": prompt, "greedy": cont, "greedy_min_margin": margin}, f)
        f.write("\n")


def hf_case(c):
    gen = torch.Generator().manual_seed(c["seed"])
    torch.manual_seed(c["seed"])
    cfg = MambaConfig(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], num_hidden_layers=c["num_hidden_layers"],
                      state_size=c["state_size"], expand=c["expand"], conv_kernel=c["conv_kernel"],
                      time_step_rank=c["time_step_rank"], use_bias=False, use_conv_bias=True, layer_norm_epsilon=1e-5,
                      tie_word_embeddings=c["tie_word_embeddings"], pad_token_id=0, bos_token_id=0, eos_token_id=0)
    model = MambaForCausalLM(cfg).eval()
    perturb(model.named_parameters(), gen)
    d = os.path.join(OUT, c["name"])
    model.save_pretrained(os.path.join(d, "safetensors"), safe_serialization=True)
    model.save_pretrained(os.path.join(d, "bin"), safe_serialization=False)
    for sub in ("safetensors", "bin"):
        gc = os.path.join(d, sub, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)
    tokens = torch.randint(0, c["vocab_size"], (1, L), generator=gen)
    with torch.no_grad():
        logits = model(tokens, use_cache=False).logits[0].double()
        lp = torch.log_softmax(logits, -1)
        prompt = tokens[0, :PROMPT].tolist()
        # transformers' own recurrent generation (the cache path), greedy, no stopping token
        model.generation_config.eos_token_id = None
        out = model.generate(tokens[:, :PROMPT], max_new_tokens=NEW, do_sample=False, use_cache=True, pad_token_id=0)
        cont = out[0, PROMPT:].tolist()
        # the same by the parallel forward, with the top-2 margins
        cont2, margin = greedy(lambda s: model(torch.tensor([s]), use_cache=False).logits[0, -1].double(), prompt)
    assert cont == cont2, f"{c['name']}: generate {cont} vs parallel greedy {cont2}"
    write_expected(d, tokens[0].tolist(), lp.tolist(), prompt, cont, margin)
    return model, d


def mamba_ssm_case(model, src):
    """The same weights in mamba_ssm's layout (MambaLMHeadModel.save_pretrained = torch.save(state_dict))."""
    d = os.path.join(OUT, "mamba-ssm")
    os.makedirs(d, exist_ok=True)
    cfg = model.config
    sd = {}
    for k, v in model.state_dict().items():
        sd[k.replace("backbone.embeddings.", "backbone.embedding.")] = v
    assert "lm_head.weight" in sd and sd["lm_head.weight"].data_ptr() == sd["backbone.embedding.weight"].data_ptr()
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"d_model": cfg.hidden_size, "d_intermediate": 0, "n_layer": cfg.num_hidden_layers,
                   "vocab_size": cfg.vocab_size, "ssm_cfg": {"d_state": cfg.state_size, "d_conv": cfg.conv_kernel,
                                                              "expand": cfg.expand},
                   "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
                   "fused_add_norm": True, "pad_vocab_size_multiple": 8, "tie_embeddings": True}, f, indent=2)
    shutil.copy(os.path.join(src, "expected.json"), os.path.join(d, "expected.json"))


# ---- Zyphra BlackMamba: names, config, and a float64 reference of the released forward ----

Z = dict(num_layers=4, hidden_size=16, state_size=4, conv_dimension=4, vocab_size=36, expansion_factor=2,
         mamba_moe_layers=["r", "4", "r", "4"], ffn_hidden_size=24, add_bias_linear=False, swiglu=True,
         max_sequence_length=2048)


def zyphra_state(gen):
    D, N, K, E = Z["hidden_size"], Z["state_size"], Z["conv_dimension"], Z["expansion_factor"] * Z["hidden_size"]
    R, F_, V = (D + 15) // 16, Z["ffn_hidden_size"], Z["vocab_size"]
    r = lambda *s, std=0.2: std * torch.randn(*s, generator=gen, dtype=torch.float64)
    sd = {"embedding.word_embeddings.weight": r(V, D, std=0.5)}
    for i, kind in enumerate(Z["mamba_moe_layers"]):
        p = f"decoder.layers.{i}."
        sd[p + "norm.weight"] = 1 + r(D, std=0.1)
        if kind == "r":
            m = p + "mixer."
            sd[m + "in_proj.weight"] = r(2 * E, D)
            sd[m + "conv1d.weight"] = r(E, 1, K, std=0.3)
            sd[m + "conv1d.bias"] = r(E, std=0.1)
            sd[m + "x_proj.weight"] = r(R + 2 * N, E)
            sd[m + "dt_proj.weight"] = r(E, R, std=0.5)
            sd[m + "dt_proj.bias"] = torch.log(torch.expm1(0.01 + 0.09 * torch.rand(E, generator=gen, dtype=torch.float64)))
            sd[m + "A_log"] = torch.log(torch.arange(1, N + 1, dtype=torch.float64)).repeat(E, 1) + r(E, N, std=0.1)
            sd[m + "D"] = 1 + r(E, std=0.1)
            sd[m + "out_proj.weight"] = r(D, E)
        else:
            m = p + "mixer."
            n_exp = int(kind[-1])
            sd[m + "router.weight"] = r(n_exp, D, std=0.5)
            sd[m + "router.bias"] = r(n_exp, std=0.1)
            for e in range(n_exp):
                sd[m + f"local_experts.{e}.linear_fc1.weight"] = r(2 * F_, D)
                sd[m + f"local_experts.{e}.linear_fc2.weight"] = r(D, F_)
    sd["decoder.final_layernorm.weight"] = 1 + r(D, std=0.1)
    sd["decoder.final_layernorm.bias"] = r(D, std=0.1)
    return sd


def zyphra_forward(sd, tokens):
    """float64, token by token where the released code scans (mamba_layer.py, switch_mlp.py, mlp.py)."""
    D, N, K, E = Z["hidden_size"], Z["state_size"], Z["conv_dimension"], Z["expansion_factor"] * Z["hidden_size"]
    R, F_ = (D + 15) // 16, Z["ffn_hidden_size"]
    x = sd["embedding.word_embeddings.weight"][tokens]                # [L, D]
    Lx = x.shape[0]
    for i, kind in enumerate(Z["mamba_moe_layers"]):
        p = f"decoder.layers.{i}."
        h = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * sd[p + "norm.weight"]
        m = p + "mixer."
        if kind == "r":
            xz = h @ sd[m + "in_proj.weight"].T
            xs, z = xz[:, :E], xz[:, E:]
            w = sd[m + "conv1d.weight"][:, 0, :]                         # [E, K]
            pad = torch.cat([torch.zeros(K - 1, E, dtype=torch.float64), xs])
            xc = torch.stack([(pad[t:t + K] * w.T).sum(0) for t in range(Lx)]) + sd[m + "conv1d.bias"]
            xc = F.silu(xc)
            dbc = xc @ sd[m + "x_proj.weight"].T
            dt, B, C = dbc[:, :R], dbc[:, R:R + N], dbc[:, R + N:]
            dt = F.softplus(dt @ sd[m + "dt_proj.weight"].T + sd[m + "dt_proj.bias"])
            A = -torch.exp(sd[m + "A_log"])
            s = torch.zeros(E, N, dtype=torch.float64)
            ys = []
            for t in range(Lx):
                s = torch.exp(dt[t][:, None] * A) * s + dt[t][:, None] * B[t][None, :] * xc[t][:, None]
                ys.append((s * C[t][None, :]).sum(-1) + sd[m + "D"] * xc[t])
            y = torch.stack(ys) * F.silu(z)
            out = y @ sd[m + "out_proj.weight"].T
        else:
            route = torch.sigmoid(h @ sd[m + "router.weight"].T + sd[m + "router.bias"])
            prob, idx = torch.max(route, dim=1)
            out = torch.zeros_like(h)
            for t in range(Lx):
                e = int(idx[t])
                a, b = torch.chunk(h[t] @ sd[m + f"local_experts.{e}.linear_fc1.weight"].T, 2)
                out[t] = (F.gelu(a) * b) @ sd[m + f"local_experts.{e}.linear_fc2.weight"].T * prob[t]
        x = x + out
    x = F.layer_norm(x, (D,), sd["decoder.final_layernorm.weight"], sd["decoder.final_layernorm.bias"], 1e-5)
    return x @ sd["embedding.word_embeddings.weight"].T


def zyphra_case():
    gen = torch.Generator().manual_seed(7)
    sd = zyphra_state(gen)
    d = os.path.join(OUT, "zyphra")
    os.makedirs(d, exist_ok=True)
    torch.save({"model": {k: v.float() for k, v in sd.items()}}, os.path.join(d, "pytorch_model.bin"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(Z, f, indent=2)
    sd32 = {k: v.float().double() for k, v in sd.items()}                # the reference runs on the stored weights
    tokens = torch.randint(0, Z["vocab_size"], (L,), generator=gen)
    lp = torch.log_softmax(zyphra_forward(sd32, tokens), -1)
    prompt = tokens[:PROMPT].tolist()
    cont, margin = greedy(lambda s: zyphra_forward(sd32, torch.tensor(s))[-1], prompt)
    write_expected(d, tokens.tolist(), lp.tolist(), prompt, cont, margin)
    # token ids to evaluate it on (uint16 little-endian, as nanoGPT's .bin): 4 batches of 8 × 128 + 1
    ids = torch.randint(0, Z["vocab_size"], (4 * 8 * 128 + 1,), generator=gen).to(torch.int16).numpy().astype("<u2")
    ids.tofile(os.path.join(d, "tokens.bin"))


# ---- a byte-level BPE tokenizer.json of the GPT-NeoX kind, trained here by `tokenizers` ----

TRAIN_TEXT = [
    "BlackMamba replaces attention with Mamba layers and the MLP with a mixture of experts.",
    "The router sends each token to one expert; Sinkhorn balances the load in training.",
    "It's 2024: we'll train 8 models, they're small, you've seen 3.14159 and 1,000,000 tokens.",
    "def forward(x):\n    return x + mixer(norm(x))\n\n    # indented code keeps its spaces",
    "Les modèles naïfs coûtent peu; die Größe zählt nicht; 日本語のテキストも少し。",
    "Émoji 🎉 and symbols — like «quotes», ±0.5 °C, and tabs\tbetween words.",
] * 20

ENCODE_TEXTS = [
    "Hello world! It's a test: we'll see if they're equal, I'm sure you've checked, he'd know.",
    "Numbers 3.14159, 2024-12-07 and 1,000,000; code:\n    x = y  +  z\n\n\tdone  ",
    "naïve café — ÅNGSTRÖM, 日本語テキスト, emoji 🎉👍🏽, combining e\u0301 vs é",
    "<|endoftext|>The next document starts here.<|endoftext|>",
    "   leading spaces, trailing spaces   ",
    "'s 't 're 've 'm 'll 'd 'S 'x '",
    "",
]


def tokenizer_case():
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT, trainer=trainer)
    # runs of spaces as added tokens, as GPT-NeoX's tokenizer has (24 … 2 spaces there)
    tok.add_tokens([AddedToken(" " * n, normalized=True) for n in (4, 3, 2)])
    d = os.path.join(OUT, "tokenizer")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    cases = []
    for t in ENCODE_TEXTS:
        ids = tok.encode(t).ids
        cases.append({"text": t, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"vocab_size": tok.get_vocab_size(with_added_tokens=True), "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    first = None
    for c in HF_CASES:
        model, d = hf_case(c)
        first = first or (model, d)
    mamba_ssm_case(*first)
    zyphra_case()
    tokenizer_case()
    print(f"fixtures written to {OUT}")
