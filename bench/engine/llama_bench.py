#!/usr/bin/env python3
"""llama.cpp's figures for bench/engine: the same three measurements as
engine_bench.c (prefill of one prompt, decode of one sequence, decode of a
batch of sequences), same GGUF, same synthetic token ids, same thread count,
through llama-cpp-python's low-level API.

Usage: python bench/engine/llama_bench.py [--model PATH] [--threads N] [--prompt N]
                                          [--gen N] [--batch N] [--reps N] [--flash-attn on|off|auto]
"""
import argparse
import ctypes
import os
import time

import llama_cpp as L


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--flash-attn", default="auto", choices=["on", "off", "auto"])
    a = ap.parse_args()

    quiet = L.llama_log_callback(lambda level, text, user: None)
    L.llama_log_set(quiet, ctypes.c_void_p(0))
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(a.model.encode(), mp)
    vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    ctx_len = a.prompt + a.gen
    cp = L.llama_context_default_params()
    cp.n_ctx = ctx_len * a.batch
    cp.n_batch = max(a.prompt * a.batch, 512)
    cp.n_ubatch = cp.n_batch
    cp.n_seq_max = a.batch
    cp.n_threads = a.threads
    cp.n_threads_batch = a.threads
    cp.kv_unified = True
    cp.flash_attn_type = {"on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED, "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                          "auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO}[a.flash_attn]
    ctx = L.llama_init_from_model(model, cp)
    mem = L.llama_get_memory(ctx)
    ids = [(i * 7919 + 13) % vocab for i in range(ctx_len * a.batch)]
    batch = L.llama_batch_init(cp.n_batch, 0, a.batch)

    def fill(entries):
        """entries: (token, pos, seq, want_logits)"""
        batch.n_tokens = len(entries)
        for k, (t, p, s, lg) in enumerate(entries):
            batch.token[k] = t
            batch.pos[k] = p
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = s
            batch.logits[k] = 1 if lg else 0

    def decode():
        r = L.llama_decode(ctx, batch)
        if r != 0:
            raise SystemExit(f"llama_decode failed: {r}")

    best = [1e30, 1e30, 1e30]
    for rep in range(a.reps + 1):
        L.llama_memory_clear(mem, True)
        fill([(ids[i], i, 0, i == a.prompt - 1) for i in range(a.prompt)])
        t0 = time.perf_counter(); decode(); pf = time.perf_counter() - t0
        t0 = time.perf_counter()
        for g in range(a.gen):
            fill([(ids[a.prompt + g], a.prompt + g, 0, True)])
            decode()
        d1 = time.perf_counter() - t0
        L.llama_memory_clear(mem, True)
        fill([(ids[s * ctx_len + i], i, s, i == a.prompt - 1) for s in range(a.batch) for i in range(a.prompt)])
        decode()
        t0 = time.perf_counter()
        for g in range(a.gen):
            fill([(ids[s * ctx_len + a.prompt + g], a.prompt + g, s, True) for s in range(a.batch)])
            decode()
        d8 = time.perf_counter() - t0
        if rep == 0:
            continue
        best = [min(best[0], pf), min(best[1], d1), min(best[2], d8)]
    print(f"llama.cpp  threads={a.threads:<2d} prefill({a.prompt}) {a.prompt / best[0]:8.1f} tok/s   "
          f"decode(1) {a.gen / best[1]:7.1f} tok/s   decode({a.batch}) {a.gen * a.batch / best[2]:7.1f} tok/s"
          f"  [llama-cpp-python {L.__version__}, flash-attn {a.flash_attn}]")
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


if __name__ == "__main__":
    main()
