#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers for the tiny checkpoints.

For every model directory under tests/data/hf/ (written by make_tiny_hf.py)
this loads the checkpoint with transformers' AutoModelForCausalLM in float32
(F16/BF16 weights widen exactly), eager attention, on the CPU, and runs two
forward passes over the same token ids:

  case 0: 10 tokens at positions 0..9
  case 1: 48 tokens at positions 100..147 (explicit position_ids)

It writes <model>.ref.json into --out with, per case, the tokens, the
positions, the
logits of every position (row-major [n][vocab]), the hidden states after
the embedding and after each layer for case 0 (to locate a discrepancy),
and the RoPE inverse frequencies and attention scaling that transformers
derived from config.json (a check that it read rope_scaling as meant).

It also runs an independent float64 numpy forward of the same
architecture (numpy_forward below: written from the papers' equations, not
from transformers) and records its largest difference from transformers, so
that a disagreement between sgl and the reference can be placed.

Needs torch and transformers: it runs on the GPU machine (the CPU is
enough there; the GPU is not used). The JSON files it writes are committed
as tests/data/hf/<model>.ref.json; tests/unit/test_hf.c compares sgl's
forward against them. With --numpy-only (no torch needed) it writes the
numpy forward's logits instead, marked "source": "numpy".

Usage: python3 hf_reference.py --out DIR [--models DIR] [--numpy-only]
"""
import argparse
import json
import os
import sys
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

try:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
except ImportError:
    torch = None

# case 0: a short prompt at positions 0..9; case 1: 48 tokens at positions
# 100..147 (explicit position_ids; longer relative distances exercise the
# low RoPE frequencies that Llama-3 scaling changes).
CASES = [([1, 45, 200, 7, 99, 150, 3, 255, 64, 12], 0),
         ([(37 * i * i + 11 * i + 5) % 256 for i in range(48)], 100)]


# ---- numpy forward (float64) ---------------------------------------------

def np_read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in hdr.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        buf = raw[base + b:base + end]
        if e["dtype"] == "BF16":
            a = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(buf, {"F32": "<f4", "F16": "<f2"}[e["dtype"]])
        out[name] = a.astype(np.float64).reshape(e["shape"])
    return out


def np_load(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    idx = os.path.join(d, "model.safetensors.index.json")
    w = {}
    if os.path.exists(idx):
        with open(idx) as f:
            for shard in sorted(set(json.load(f)["weight_map"].values())):
                w.update(np_read_safetensors(os.path.join(d, shard)))
    else:
        w = np_read_safetensors(os.path.join(d, "model.safetensors"))
    return cfg, w


def np_inv_freq(cfg, hd):
    inv = 1.0 / cfg.get("rope_theta", 10000.0) ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        # Llama 3.1: long wavelengths slowed by `factor`, short ones kept,
        # a linear blend (in 1/wavelength) between the two thresholds.
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wavelen = 2 * np.pi / inv
        smooth = (old / wavelen - lo) / (hi - lo)
        blended = (1 - smooth) * inv / factor + smooth * inv
        inv = np.where(wavelen > old / lo, inv / factor,
                       np.where(wavelen < old / hi, inv, blended))
    elif kind != "default":
        raise ValueError("rope type " + kind)
    return inv


def numpy_forward(d, tokens, positions):
    cfg, w = np_load(d)
    H, KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim") or cfg["hidden_size"] // H
    eps = cfg["rms_norm_eps"]
    inv = np_inv_freq(cfg, hd)
    ang = np.outer(np.asarray(positions, np.float64), inv)          # [n, hd/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(x):  # x [n, heads, hd]; pairs (i, i + hd/2) rotate together
        a, b = x[..., :hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1)

    n = len(tokens)
    x = w["model.embed_tokens.weight"][tokens]
    states = [x]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def lin(h, name):
            y = h @ w[p + name + ".weight"].T
            return y + w[p + name + ".bias"] if p + name + ".bias" in w else y
        h = rms(x, w[p + "input_layernorm.weight"])
        q = rope(lin(h, "self_attn.q_proj").reshape(n, H, hd))
        k = rope(lin(h, "self_attn.k_proj").reshape(n, KV, hd))
        v = lin(h, "self_attn.v_proj").reshape(n, KV, hd)
        k, v = np.repeat(k, H // KV, 1), np.repeat(v, H // KV, 1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", s, v).reshape(n, H * hd)
        x = x + lin(o, "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = lin(h, "mlp.gate_proj")
        x = x + lin(g / (1 + np.exp(-g)) * lin(h, "mlp.up_proj"), "mlp.down_proj")
        states.append(x)
    x = rms(x, w["model.norm.weight"])
    states[-1] = x
    head = w.get("lm_head.weight") if not cfg.get("tie_word_embeddings") else None
    if head is None:
        head = w["model.embed_tokens.weight"]
    return x @ head.T, states, inv


def numpy_reference(d):
    out = {"model": os.path.basename(d), "source": "numpy", "cases": []}
    for ci, (toks, start) in enumerate(CASES):
        pos = list(range(start, start + len(toks)))
        logits, states, inv = numpy_forward(d, toks, pos)
        case = {"tokens": toks, "positions": pos, "vocab": int(logits.shape[-1]),
                "logits": nflat(logits), "argmax": logits.argmax(-1).tolist()}
        if ci == 0:
            case["hidden_states"] = [nflat(h) for h in states]
        out["inv_freq"] = nflat(inv)
        out["cases"].append(case)
    return out


def nflat(a):
    return [float("%.7g" % x) for x in np.asarray(a, np.float64).reshape(-1)]


# ---- transformers --------------------------------------------------------

def flat(t):
    return [float("%.7g" % x) for x in t.detach().to(torch.float64).reshape(-1).tolist()]


def load(d):
    kw = dict(attn_implementation="eager")
    try:
        return AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, **kw)
    except TypeError:
        return AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32, **kw)


def reference(d):
    model = load(d).eval()
    out = {"model": os.path.basename(d), "transformers": transformers.__version__,
           "torch": torch.__version__, "cases": []}
    rot = getattr(model.model, "rotary_emb", None)
    if rot is not None and hasattr(rot, "inv_freq"):
        out["inv_freq"] = flat(rot.inv_freq)
        out["attention_scaling"] = float(getattr(rot, "attention_scaling", 1.0))
    out["config_seen"] = {k: v for k, v in model.config.to_dict().items()
                          if k.startswith("rope") or k in ("head_dim", "tie_word_embeddings",
                                                            "sliding_window", "rms_norm_eps")}
    with torch.no_grad():
        for ci, (toks, start) in enumerate(CASES):
            pos = list(range(start, start + len(toks)))
            r = model(input_ids=torch.tensor([toks]), position_ids=torch.tensor([pos]),
                      use_cache=False, output_hidden_states=(ci == 0))
            logits = r.logits[0]
            case = {"tokens": toks, "positions": pos, "vocab": int(logits.shape[-1]),
                    "logits": flat(logits), "argmax": logits.argmax(-1).tolist()}
            if ci == 0:
                # hidden_states: embeddings, then each layer's output; the last
                # one has the final norm applied by transformers.
                case["hidden_states"] = [flat(h[0]) for h in r.hidden_states]
            npl, _, _ = numpy_forward(d, toks, pos)
            case["numpy_max_abs_diff"] = float(np.abs(npl - logits.double().numpy()).max())
            out["cases"].append(case)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--models", default=os.path.join(here, "..", "data", "hf"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--numpy-only", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if torch is None and not a.numpy_only:
        sys.exit("hf_reference.py: torch/transformers are not installed (use --numpy-only)")
    if not a.numpy_only:
        print("torch", torch.__version__, "transformers", transformers.__version__, flush=True)
    failed = 0
    for name in sorted(os.listdir(a.models)):
        d = os.path.join(a.models, name)
        if not os.path.isfile(os.path.join(d, "config.json")):
            continue
        try:
            ref = numpy_reference(d) if a.numpy_only else reference(d)
        except Exception:
            traceback.print_exc()
            failed += 1
            continue
        path = os.path.join(a.out, name + ".ref.json")
        with open(path, "w") as f:
            json.dump(ref, f, separators=(",", ":"))
        c0 = ref["cases"][0]
        print(f"{name}: argmax {c0['argmax']} numpy diff "
              f"{[c.get('numpy_max_abs_diff') for c in ref['cases']]} "
              f"inv_freq {ref.get('inv_freq')} config {ref.get('config_seen')}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
