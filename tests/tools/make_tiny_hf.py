#!/usr/bin/env python3
"""Write tiny random Hugging Face checkpoints into tests/data/hf/.

Each model is a directory like one from the Hub: config.json,
generation_config.json, and model.safetensors (or shards with
model.safetensors.index.json). They exercise the HF loader (runtime/hf.c):

  tiny-llama           llama, F32, untied lm_head, plain RoPE
  tiny-llama3-bf16     llama, BF16, tied embeddings (SmolLM style),
                       rope_scaling type "llama3", eos list in config.json
  tiny-qwen2-sharded   qwen2 (q/k/v bias), F32, tied, two shards + index
  tiny-mistral-f16     mistral, F16, head_dim (32) != hidden/heads (16),
                       sliding_window

Weights are random but deterministic (numpy's PCG64 with fixed seeds) and
scaled so that logits spread over a few units: comparisons of argmax are
then meaningful. F32 and F16 files go through the `safetensors` package's
own writer; numpy has no bfloat16, so BF16 files are written here by hand
(8-byte header length, JSON header, raw little-endian data), rounding to
nearest even.

Usage: python3 tests/tools/make_tiny_hf.py [--out tests/data/hf]
Needs numpy and safetensors (pip).
"""
import argparse
import json
import os
import struct

import numpy as np
from safetensors.numpy import save_file

VOCAB = 256
HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
FF = 128
MAX_POS = 512


def rand_weights(seed, head_dim, qkv_bias, tied):
    """name -> float32 array, shapes as PyTorch stores them ([out, in])."""
    rng = np.random.default_rng(seed)

    def lin(out_f, in_f):
        return (rng.standard_normal((out_f, in_f)) / np.sqrt(in_f)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    # small embeddings: with tied weights, large ones make every position
    # predict its own input token (x . e_t dominates), a useless test
    w = {"model.embed_tokens.weight":
         (0.25 * rng.standard_normal((VOCAB, HIDDEN))).astype(np.float32)}
    q_out, kv_out = HEADS * head_dim, KV_HEADS * head_dim
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(HIDDEN)
        w[p + "self_attn.q_proj.weight"] = lin(q_out, HIDDEN)
        w[p + "self_attn.k_proj.weight"] = lin(kv_out, HIDDEN)
        w[p + "self_attn.v_proj.weight"] = lin(kv_out, HIDDEN)
        if qkv_bias:
            w[p + "self_attn.q_proj.bias"] = (0.1 * rng.standard_normal(q_out)).astype(np.float32)
            w[p + "self_attn.k_proj.bias"] = (0.1 * rng.standard_normal(kv_out)).astype(np.float32)
            w[p + "self_attn.v_proj.bias"] = (0.1 * rng.standard_normal(kv_out)).astype(np.float32)
        w[p + "self_attn.o_proj.weight"] = lin(HIDDEN, q_out)
        w[p + "post_attention_layernorm.weight"] = norm(HIDDEN)
        w[p + "mlp.gate_proj.weight"] = lin(FF, HIDDEN)
        w[p + "mlp.up_proj.weight"] = lin(FF, HIDDEN)
        w[p + "mlp.down_proj.weight"] = lin(HIDDEN, FF)
    w["model.norm.weight"] = norm(HIDDEN)
    if not tied:
        w["lm_head.weight"] = lin(VOCAB, HIDDEN)
    return w


def to_bf16_bits(a):
    """float32 array -> uint16 bfloat16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def save_bf16(tensors, path, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs, off = [], 0
    for name in sorted(tensors):
        raw = to_bf16_bits(tensors[name]).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)          # the reference writer pads to 8 too
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for b in blobs:
            f.write(b)


def base_config(model_type, arch, head_dim, **extra):
    cfg = {
        "architectures": [arch],
        "model_type": model_type,
        "hidden_size": HIDDEN,
        "intermediate_size": FF,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POS,
        "vocab_size": VOCAB,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    if head_dim != HIDDEN // HEADS:
        cfg["head_dim"] = head_dim
    cfg.update(extra)
    return cfg


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def make(out):
    models = []

    # 1. llama, F32, untied
    d = os.path.join(out, "tiny-llama")
    os.makedirs(d, exist_ok=True)
    cfg = base_config("llama", "LlamaForCausalLM", 16, rms_norm_eps=1e-5, rope_theta=10000.0,
                      rope_scaling=None, tie_word_embeddings=False, attention_bias=False,
                      mlp_bias=False, torch_dtype="float32")
    w = rand_weights(1, 16, qkv_bias=False, tied=False)
    save_file(w, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(d, "config.json"), cfg)
    write_json(os.path.join(d, "generation_config.json"),
               {"bos_token_id": 1, "eos_token_id": [2, 3], "do_sample": True,
                "temperature": 0.6, "top_p": 0.9, "top_k": 50})
    models.append(d)

    # 2. llama with Llama-3.1 rope scaling, BF16, tied (SmolLM-like)
    d = os.path.join(out, "tiny-llama3-bf16")
    os.makedirs(d, exist_ok=True)
    cfg = base_config("llama", "LlamaForCausalLM", 16, rms_norm_eps=1e-5, rope_theta=500000.0,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 64},
                      tie_word_embeddings=True, torch_dtype="bfloat16", eos_token_id=[2, 3])
    w = rand_weights(2, 16, qkv_bias=False, tied=True)
    save_bf16(w, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(d, "config.json"), cfg)
    write_json(os.path.join(d, "generation_config.json"),
               {"bos_token_id": 1, "eos_token_id": [2, 3], "do_sample": True,
                "temperature": 0.7, "repetition_penalty": 1.1})
    models.append(d)

    # 3. qwen2, F32, tied, two shards
    d = os.path.join(out, "tiny-qwen2-sharded")
    os.makedirs(d, exist_ok=True)
    cfg = base_config("qwen2", "Qwen2ForCausalLM", 16, rms_norm_eps=1e-6, rope_theta=1000000.0,
                      tie_word_embeddings=True, use_sliding_window=False, sliding_window=4096,
                      max_window_layers=2, torch_dtype="float32", eos_token_id=3)
    w = rand_weights(3, 16, qkv_bias=True, tied=True)
    names = sorted(w)
    shard_of = {n: (1 if n.startswith("model.layers.1.") or n == "model.norm.weight" else 0)
                for n in names}
    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    total = 0
    for s in (0, 1):
        part = {n: w[n] for n in names if shard_of[n] == s}
        total += sum(a.nbytes for a in part.values())
        save_file(part, os.path.join(d, files[s]), metadata={"format": "pt"})
    write_json(os.path.join(d, "model.safetensors.index.json"),
               {"metadata": {"total_size": total},
                "weight_map": {n: files[shard_of[n]] for n in names}})
    write_json(os.path.join(d, "config.json"), cfg)
    write_json(os.path.join(d, "generation_config.json"),
               {"bos_token_id": 1, "eos_token_id": [3, 2], "do_sample": True,
                "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05})
    models.append(d)

    # 4. mistral, F16, head_dim 32 (q_proj is 128 x 64)
    d = os.path.join(out, "tiny-mistral-f16")
    os.makedirs(d, exist_ok=True)
    cfg = base_config("mistral", "MistralForCausalLM", 32, rms_norm_eps=1e-5,
                      rope_theta=10000.0, sliding_window=4096, tie_word_embeddings=False,
                      torch_dtype="float16")
    w = rand_weights(4, 32, qkv_bias=False, tied=False)
    save_file({k: v.astype(np.float16) for k, v in w.items()},
              os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(d, "config.json"), cfg)
    models.append(d)

    for d in models:
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{d}: {size} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "data", "hf"))
    make(os.path.normpath(ap.parse_args().out))


if __name__ == "__main__":
    main()
