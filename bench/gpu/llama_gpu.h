/*
 * bench/gpu/llama_gpu.h — a Llama-architecture forward pass on one GPU built
 * only from kernels/cuda/cuda_ops.h, with random bf16 weights generated on
 * the device from a seed: bench_gpu's kernel-level figures (roofline, GEMM
 * peak, graph-captured decode) and a second check against `transformers`.
 * The engine's own model on the GPU is runtime/model_dev.c (timed by
 * tests/gpu/engine_gpu.c bench).
 *
 *   tokens ─ embed ─> h ─┬─ rmsnorm ─ qkv GEMM ─ rope+kv write ─ attention ─ o GEMM ─┐
 *                        │<──────────────────────── h += ───────────────────────────┘
 *                        ├─ rmsnorm ─ gate|up GEMM ─ swiglu ─ down GEMM ─┐
 *                        │<──────────────────── h += ─────────────────────┘  (× n_layer)
 *                        └─ rmsnorm (logit rows only) ─ lm_head GEMM ─ logits ─ argmax
 *
 * Invariants: one sequence whose token t sits in KV slot t (slots is the
 * identity list, so a row's context is slots[0 .. pos + 1)); q|k|v and
 * gate|up are fused weights ([q; k; v] and [gate; up] rows), split back into
 * Hugging Face's names when written out. All step inputs are device arrays,
 * so a decode step is captured once as a CUDA graph.
 */
#ifndef SGL_BENCH_GPU_LLAMA_GPU_H
#define SGL_BENCH_GPU_LLAMA_GPU_H

#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"

typedef struct {
    const char *name;
    int dim, n_layer, n_head, n_kv, head_dim, ff, vocab;
    float theta, eps;
} LlamaShape;

typedef struct {
    uint16_t *qkv, *o, *gu, *down, *n1, *n2;
} LlamaLayer;

typedef struct {
    LlamaShape s;
    CuCtx *cu;
    uint16_t *emb, *head, *nf;
    LlamaLayer *l;
    uint16_t *k_pool, *v_pool;  /* [n_layer][n_slots][kv_dim] */
    int n_slots, max_rows, dec_split, dec_chunk;
    /* activations for max_rows rows */
    uint16_t *h, *x, *qkv, *att, *d, *gu, *act, *logits;
    int32_t *tok, *pos, *wslot, *roff, *rlen, *slots, *next;
    float *ws;
    size_t weight_bytes;        /* what one decode step reads: layers + lm_head + final norm */
} LlamaGpu;

/* Allocates and fills (seeded) the weights, a KV pool of n_slots, and
 * activations for max_rows rows. random_norms: norm weights uniform in
 * [-1.5, 1.5) instead of 1 (for tests). 0, or -1 with a message. */
int llama_gpu_new(LlamaGpu *m, CuCtx *cu, const LlamaShape *s, int n_slots, int max_rows, uint64_t seed,
                  int random_norms, char *err, size_t errcap);
void llama_gpu_free(LlamaGpu *m);

/* Uploads rows [p0, p0 + n) of a prefill (tokens given) and runs it; logits
 * for the last row only, or for every row when all_logits (m->logits then
 * holds n rows). m->next[0] gets the last row's argmax. */
void llama_gpu_prefill(LlamaGpu *m, const int32_t *tokens, int n, int p0, int all_logits);

/* One decode step reading m->next[0] as the token at position m->pos[0]
 * (device state left by prefill or the previous step), then advancing. */
void llama_gpu_decode_step(LlamaGpu *m);

/* Writes the weights as a Hugging Face Llama checkpoint in dir:
 * model.safetensors and config.json. */
int llama_gpu_write_hf(LlamaGpu *m, const char *dir, char *err, size_t errcap);

#endif
