/*
 * tests/unit/tiny_model.h — small random-weight models built in memory for
 * the model tests (test_model_dev.c, test_model_fp8.c, test_model_tp.c,
 * test_dev_rope.c), the way a loader builds one (model_new, tensors,
 * model_finish), and the prompt they run. Static functions in a header, as
 * in engine_helper.h: only the tests that include it link libsgl's model.
 *
 * Weights are bf16, uniform from a counter-based hash of (key, index), so a
 * key gives the same bits on every machine. tiny_model draws the tensors in
 * one fixed order, one key each, counting up from key0:
 *
 *   tok_embd, output (skipped when tied), out_norm, then for each layer
 *   attn_norm, ffn_norm, wq, wk, wv, [bq, bk, bv when qkv_bias], wo,
 *   w_gate, w_up, w_down
 *
 * Norm weights are 1 ± 0.2, biases ± 0.5, matrices ± sqrt(3 / cols) (unit
 * variance out for unit variance in), the embedding ± 1.
 *
 * Ownership: the model owns the weight buffers (model_free releases them);
 * tiny_run's logits are the caller's to free. The caller sets the options
 * (backend, threads, quantization) after tiny_model returns.
 */
#ifndef SGL_TESTS_TINY_MODEL_H
#define SGL_TESTS_TINY_MODEL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model.h"

static inline uint64_t tiny_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [-s, s) from (key, i) */
static inline float tiny_urand(uint64_t key, uint64_t i, float s)
{
    return ((float)(tiny_mix(key * 1000003u + i) >> 40) / 16777216.0f * 2 - 1) * s;
}

typedef struct {
    void **bufs;
    int n, cap;
} TinyBufs;

static inline void tiny_release(void *ctx)
{
    TinyBufs *bt = ctx;
    for (int i = 0; i < bt->n; i++) free(bt->bufs[i]);
    free(bt->bufs);
    free(bt);
}

static inline KTensor tiny_tensor(TinyBufs *bt, int64_t cols, int64_t rows, float scale, float center, uint64_t key)
{
    uint16_t *p = malloc((size_t)(cols * rows) * 2);
    cr_assert(p);
    for (int64_t i = 0; i < cols * rows; i++) p[i] = k_f32_to_bf16(center + tiny_urand(key, (uint64_t)i, scale));
    if (bt->n == bt->cap) {
        bt->cap = bt->cap ? 2 * bt->cap : 32;
        bt->bufs = realloc(bt->bufs, (size_t)bt->cap * sizeof *bt->bufs);
        cr_assert(bt->bufs);
    }
    bt->bufs[bt->n++] = p;
    return (KTensor){.dtype = K_DTYPE_BF16, .ne = {cols, rows, 1, 1}, .data = p};
}

/* the model of config c with every weight drawn (see the top); finished,
 * options still the defaults */
static inline Model *tiny_model(const ModelConfig *c, uint64_t key0)
{
    char err[256];
    Model *m = model_new(c, err, sizeof err);
    cr_assert(m, "%s", err);
    TinyBufs *bt = calloc(1, sizeof *bt);
    cr_assert(bt);
    int64_t E = c->n_embd, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    int64_t FF = c->n_ff, V = c->vocab;
    float se = sqrtf(3.0f / (float)E);
    uint64_t k = key0;
    m->tok_embd = tiny_tensor(bt, E, V, 1.0f, 0, k++);
    m->output = c->tied_embeddings ? m->tok_embd : tiny_tensor(bt, E, V, se, 0, k++);
    m->out_norm = tiny_tensor(bt, E, 1, 0.2f, 1.0f, k++);
    for (int l = 0; l < c->n_layer; l++) {
        ModelLayer *L = &m->layers[l];
        L->attn_norm = tiny_tensor(bt, E, 1, 0.2f, 1.0f, k++);
        L->ffn_norm = tiny_tensor(bt, E, 1, 0.2f, 1.0f, k++);
        L->wq = tiny_tensor(bt, E, Q, se, 0, k++);
        L->wk = tiny_tensor(bt, E, KV, se, 0, k++);
        L->wv = tiny_tensor(bt, E, KV, se, 0, k++);
        if (c->qkv_bias) {
            L->bq = tiny_tensor(bt, Q, 1, 0.5f, 0, k++);
            L->bk = tiny_tensor(bt, KV, 1, 0.5f, 0, k++);
            L->bv = tiny_tensor(bt, KV, 1, 0.5f, 0, k++);
        }
        L->wo = tiny_tensor(bt, Q, E, sqrtf(3.0f / (float)Q), 0, k++);
        L->w_gate = tiny_tensor(bt, E, FF, se, 0, k++);
        L->w_up = tiny_tensor(bt, E, FF, se, 0, k++);
        L->w_down = tiny_tensor(bt, FF, E, sqrtf(3.0f / (float)FF), 0, k++);
    }
    m->release = tiny_release;
    m->release_ctx = bt;
    cr_assert_eq(model_finish(m, err, sizeof err), 0, "%s", err);
    return m;
}

/* the prompt: tokens[i] = mix(7 + i) mod vocab */
static inline void tiny_tokens(int32_t *tokens, int n, int vocab)
{
    for (int i = 0; i < n; i++) tokens[i] = (int32_t)(tiny_mix(7u + (uint64_t)i) % (uint64_t)vocab);
}

/* logits of every position of tokens[0..n) run as chunks of `chunk` (the
 * first chunk a prefill, 1 = token by token, the decode path) in a fresh
 * f16 pool of n_slots > n slots, at scattered distinct slots; malloc'd
 * n x vocab */
static inline float *tiny_run(Model *m, const int32_t *tokens, int n, int chunk, int n_slots)
{
    char err[256];
    int V = m->cfg.vocab;
    KvPool *kv = model_kv_new(m, n_slots, K_DTYPE_F16, err, sizeof err);
    cr_assert(kv, "%s", err);
    int32_t *slots = malloc((size_t)n * sizeof *slots);
    for (int i = 0; i < n; i++) slots[i] = (i * 37 + 11) % n_slots; /* n_slots prime to 37 */
    float *out = malloc((size_t)n * V * sizeof *out);
    for (int p = 0; p < n; p += chunk) {
        int take = n - p < chunk ? n - p : chunk;
        ModelSeq s = {.tokens = tokens + p, .n_new = take, .slots = slots, .n_ctx = p + take,
                      .logits = MODEL_LOGITS_ALL};
        ModelBatch b = {.seqs = &s, .n_seqs = 1};
        cr_assert_eq(model_forward(m, kv, &b, err, sizeof err), 0, "%s", err);
        cr_assert_eq(b.n_rows, take);
        memcpy(out + (size_t)p * V, b.logits, (size_t)take * V * sizeof *out);
    }
    free(slots);
    kv_free(kv);
    return out;
}

/* relative L2 distance of a from b over n values */
static inline double tiny_rel(const float *a, const float *b, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) num += (double)(a[i] - b[i]) * (a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / den);
}

#endif
