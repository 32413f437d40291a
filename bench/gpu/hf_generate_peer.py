#!/usr/bin/env python3
"""bench/gpu/hf_generate_peer.py DIR [--in N] [--out N] [--batch B]

Issue 11's in-house peer: the same checkpoint (a `sgl make-model` directory)
through Hugging Face transformers' own `generate` on the same GPU, bf16,
greedy, eager (transformers' default: dynamic KV cache, no compilation).
Prints JSON lines like engine_gpu's:
  batch-1: IN random prompt ids, OUT new tokens (min_new_tokens = OUT so EOS
           cannot stop it early); decode tok/s = (OUT - 1) / (t(OUT) - t(1)),
           t(k) the wall time of generate with max_new_tokens k
  offline: B such prompts in one generate call; output tok/s = B*OUT / wall
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def timed_generate(model, ids, n):
    torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=0)
    torch.cuda.synchronize()
    return time.perf_counter() - t, out.shape[1] - ids.shape[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--in", dest="n_in", type=int, default=1024)
    ap.add_argument("--out", dest="n_out", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    model = AutoModelForCausalLM.from_pretrained(a.dir, torch_dtype=torch.bfloat16).cuda().eval()
    g = torch.Generator().manual_seed(0)
    vocab = min(model.config.vocab_size, 100000)
    one = torch.randint(0, vocab, (1, a.n_in), generator=g).cuda()
    timed_generate(model, one, 8)  # warm-up
    t1, _ = timed_generate(model, one, 1)
    tn, got = timed_generate(model, one, a.n_out)
    print(json.dumps({"peer": "transformers generate", "version": __import__("transformers").__version__,
                      "bench": "batch-1", "in": a.n_in, "out": got, "ttft_ms": round(t1 * 1e3, 1),
                      "decode_tok_s": round((got - 1) / (tn - t1), 1)}), flush=True)
    many = torch.randint(0, vocab, (a.batch, a.n_in), generator=g).cuda()
    tb, got = timed_generate(model, many, a.n_out)
    print(json.dumps({"peer": "transformers generate", "bench": "offline", "requests": a.batch, "in": a.n_in,
                      "out": got, "wall_s": round(tb, 1), "output_tok_s": round(a.batch * got / tb, 1)}), flush=True)


if __name__ == "__main__":
    main()
