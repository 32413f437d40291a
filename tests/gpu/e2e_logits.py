#!/usr/bin/env python3
"""End-to-end logits of sgl's GPU forward against `transformers`, on the GPU machine.

Reads DIR: a Hugging Face Llama or Qwen2 checkpoint (config.json, model.safetensors;
written by `bench_gpu --e2e DIR SHAPE` or `sgl make-model`) and sgl_out.bin (from
bench_gpu, or `engine_gpu check DIR DIR`: the engine's model on the CUDA backend) (prompt + greedily generated ids,
and sgl's logits at every position: prefill rows, then one row per decode step).
Runs the checkpoint through LlamaForCausalLM on the same ids in bf16 and in f32 and
compares per row by ||a - b|| / ||b||. Passes when sgl's error against the f32
reference is within bf16 tolerance: at most max(2e-2, 1.5 x transformers-bf16's own).
Exit 0 on pass, 1 on fail."""
import json, sys
import numpy as np, torch
from transformers import AutoModelForCausalLM

d = sys.argv[1]
raw = open(f"{d}/sgl_out.bin", "rb").read()
P, N, V = (int(x) for x in np.frombuffer(raw[:12], np.int32))
ids = np.frombuffer(raw[12:12 + 4 * (P + N)], np.int32).astype(np.int64)
ours = torch.from_numpy(np.frombuffer(raw[12 + 4 * (P + N):], np.float32).reshape(P + N, V).copy())
cfg = json.load(open(f"{d}/config.json"))

def logits(dtype):
    m = AutoModelForCausalLM.from_pretrained(d, dtype=dtype).cuda().eval()
    with torch.no_grad():
        out = m(torch.tensor(ids[None]).cuda()).logits[0].float().cpu()
    del m; torch.cuda.empty_cache()
    return out

ref32, ref16 = logits(torch.float32), logits(torch.bfloat16)
def rel(a, b): return ((a - b).norm(dim=-1) / b.norm(dim=-1))
e_ours, e_hf = rel(ours, ref32), rel(ref16, ref32)
agree = (ours.argmax(-1) == ref32.argmax(-1)).float().mean().item()
agree_hf = (ref16.argmax(-1) == ref32.argmax(-1)).float().mean().item()
# sgl's greedy continuation vs the f32 reference's argmax at the same positions
greedy = (torch.from_numpy(ids[P:]) == ref32[P - 1:P + N - 1].argmax(-1)).float().mean().item()
tol = max(2e-2, 1.5 * e_hf.max().item())
ok = bool(torch.isfinite(ours).all()) and e_ours.max().item() <= tol
print(json.dumps({"device": torch.cuda.get_device_name(0), "arch": cfg["model_type"], "shape": f"L{cfg['num_hidden_layers']} D{cfg['hidden_size']} "
                  f"H{cfg['num_attention_heads']}/{cfg['num_key_value_heads']} hd{cfg['head_dim']} V{V}",
                  "positions": P + N, "prefill_rows": P, "decode_rows": N,
                  "sgl_vs_f32_rel_max": round(e_ours.max().item(), 5), "sgl_vs_f32_rel_mean": round(e_ours.mean().item(), 5),
                  "sgl_decode_rows_rel_max": round(e_ours[P:].max().item(), 5),
                  "hf_bf16_vs_f32_rel_max": round(e_hf.max().item(), 5), "tol": round(tol, 5),
                  "argmax_agree_sgl": round(agree, 3), "argmax_agree_hf_bf16": round(agree_hf, 3),
                  "sgl_greedy_eq_f32_argmax": round(greedy, 3), "pass": ok}))
sys.exit(0 if ok else 1)
