/*
 * bench/engine/engine_bench.c — tokens per second of sgl's CPU forward pass:
 * prefill of one prompt, decode of one sequence, decode of a batch of 8.
 * bench/engine/llama_bench.py measures llama.cpp the same way (same GGUF,
 * same token ids, same thread count); bench/engine/run.sh prints both.
 *
 *   engine_bench [--model PATH] [--threads N] [--prompt N] [--gen N] [--batch N]
 *                [--no-blas] [--reps N] [--ctx N,N,...]
 *
 * Token ids are synthetic (id_i = (i * 7919 + 13) % vocab): timing does not
 * depend on the text. Each figure is the best of --reps runs.
 *
 * --ctx 64,512,1536,4096: instead, one sequence's decode cost at each
 * context length (ms a token, the whole forward pass), and the attention
 * op's share of it (ms a token: the backend's attention over every layer's
 * KV, called alone). The context's K/V are pseudo-random f16 values written
 * straight into the pool, not a prefill: the cost of a decode step does
 * not depend on what the keys hold, and a 4k prefill would dominate the
 * run. Each figure: the best of --reps rounds of --gen tokens.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu.h"
#include "runtime/kvpool.h"
#include "runtime/model.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "engine_bench: %s: %s\n", what, err);
    exit(1);
}

/* --ctx: decode of one sequence at each context length in `list`. */
static void bench_ctx(Model *m, int threads, bool no_blas, const char *list, int gen, int reps)
{
    const ModelConfig *c = &m->cfg;
    int kvd = c->n_head_kv * c->head_dim, qd = c->n_head * c->head_dim, max_ctx = 0;
    for (const char *p = list; *p;) {
        int n = atoi(p);
        if (n > max_ctx) max_ctx = n;
        p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p);
    }
    int n_slots = max_ctx + gen;
    char err[512];
    KvPool *kv = kv_new(c->n_layer, n_slots, kvd, K_DTYPE_F16, err, sizeof err);
    if (!kv) die("kv pool", err);
    uint32_t r = 12345;
    for (int l = 0; l < c->n_layer; l++) {
        uint16_t *k = kv->k[l], *v = kv->v[l];
        for (size_t i = 0; i < (size_t)n_slots * kvd; i++) {
            r = r * 1664525u + 1013904223u;
            k[i] = cpu_f32_to_f16((float)(r >> 8) / (float)(1u << 24) * 2.0f - 1.0f);
            v[i] = cpu_f32_to_f16((float)(r & 0xffff) / 65536.0f - 0.5f);
        }
    }
    int32_t *slots = malloc(sizeof(int32_t) * (size_t)n_slots), *ids = malloc(sizeof(int32_t) * (size_t)gen);
    for (int i = 0; i < n_slots; i++) slots[i] = i;
    for (int i = 0; i < gen; i++) ids[i] = (int32_t)(((int64_t)i * 7919 + 13) % c->vocab);
    if (model_reserve(m, 1, 1, err, sizeof err)) die("reserve", err);
    KBackend *be = cpu_backend_new(threads, no_blas ? CPU_NO_BLAS : 0, err, sizeof err);
    if (!be) die("backend", err);
    float *q = malloc(sizeof(float) * (size_t)qd), *out = malloc(sizeof(float) * (size_t)qd);
    for (int i = 0; i < qd; i++) q[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    printf("sgl        threads=%-2d decode(1) by context%s\n", threads,
           no_blas ? "  [batch-invariant, the default]" : "  [--blas-prefill]");
    for (const char *p = list; *p;) {
        int n = atoi(p);
        p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p);
        double best_tok = 1e30, best_attn = 1e30;
        for (int rep = 0; rep < reps + 1; rep++) { /* the first round warms up */
            double t0 = now();
            for (int g = 0; g < gen; g++) {
                ModelSeq s = {.tokens = ids + g, .n_new = 1, .slots = slots, .n_ctx = n + g + 1};
                ModelBatch b = {.seqs = &s, .n_seqs = 1};
                if (model_forward(m, kv, &b, err, sizeof err)) die("decode", err);
            }
            double tok = (now() - t0) / gen;
            KAttnSeq as = {.slots = slots, .n_ctx = n + 1, .n_new = 1, .row0 = 0};
            t0 = now();
            for (int g = 0; g < gen; g++)
                for (int l = 0; l < c->n_layer; l++) {
                    KAttnArgs a = {.q = q, .out = out, .k_pool = kv->k[l], .v_pool = kv->v[l],
                                   .kv_dtype = K_DTYPE_F16, .n_head = c->n_head, .n_head_kv = c->n_head_kv,
                                   .head_dim = c->head_dim, .scale = 0.125f, .seqs = &as, .n_seqs = 1};
                    be->attention(be->ctx, &a);
                }
            double attn = (now() - t0) / gen;
            if (rep == 0) continue;
            if (tok < best_tok) best_tok = tok;
            if (attn < best_attn) best_attn = attn;
        }
        printf("  ctx %5d   %7.2f ms/token   attention %6.2f ms/token (%d layers)\n", n, best_tok * 1e3,
               best_attn * 1e3, c->n_layer);
    }
    be->destroy(be->ctx);
    free(q);
    free(out);
    free(slots);
    free(ids);
    kv_free(kv);
}

int main(int argc, char **argv)
{
    const char *path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    int threads = 0, prompt = 128, gen = 64, batch = 8, reps = 3;
    bool no_blas = false;
    const char *ctx_list = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc) gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-blas")) no_blas = true;
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) ctx_list = argv[++i];
        else {
            fprintf(stderr, "usage: engine_bench [--model PATH] [--threads N] [--prompt N] [--gen N] [--batch N] "
                            "[--reps N] [--no-blas] [--ctx N,N,...]\n");
            return 2;
        }
    }
    if (threads <= 0) threads = cpu_n_cores();
    char err[512];
    Model *m;
    if (model_load_gguf(path, &m, err, sizeof err)) die("load", err);
    ModelOptions mo;
    model_options_default(&mo);
    mo.backend = K_BACKEND_CPU;
    mo.n_threads = threads;
    mo.batch_invariant = no_blas;   /* no sgemm: the CPU backend's CPU_NO_BLAS */
    model_set_options(m, &mo);
    if (ctx_list) {
        bench_ctx(m, threads, no_blas, ctx_list, gen, reps);
        model_free(m);
        return 0;
    }
    const ModelConfig *c = &m->cfg;
    int ctx = prompt + gen;
    KvPool *kv = kv_new(c->n_layer, ctx * batch, c->n_head_kv * c->head_dim, K_DTYPE_F16, err, sizeof err);
    if (!kv) die("kv pool", err);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)ctx * batch);
    int32_t *slots = malloc(sizeof(int32_t) * (size_t)ctx * batch);
    for (int i = 0; i < ctx * batch; i++) ids[i] = (int32_t)(((int64_t)i * 7919 + 13) % c->vocab);
    for (int i = 0; i < ctx * batch; i++) slots[i] = i;
    if (model_reserve(m, prompt * batch > batch ? prompt * batch : batch, batch, err, sizeof err)) die("reserve", err);

    double best_pf = 1e30, best_d1 = 1e30, best_d8 = 1e30;
    ModelSeq *seqs = calloc((size_t)batch, sizeof *seqs);
    for (int r = 0; r < reps + 1; r++) { /* the first round warms up */
        /* prefill one sequence */
        ModelSeq s = {.tokens = ids, .n_new = prompt, .slots = slots, .n_ctx = prompt};
        ModelBatch b = {.seqs = &s, .n_seqs = 1};
        double t0 = now();
        if (model_forward(m, kv, &b, err, sizeof err)) die("prefill", err);
        double pf = now() - t0;
        /* decode it */
        t0 = now();
        for (int g = 0; g < gen; g++) {
            s = (ModelSeq){.tokens = ids + prompt + g, .n_new = 1, .slots = slots, .n_ctx = prompt + g + 1};
            if (model_forward(m, kv, &b, err, sizeof err)) die("decode", err);
        }
        double d1 = now() - t0;
        /* batch: prefill `batch` sequences together (untimed), then decode */
        for (int i = 0; i < batch; i++)
            seqs[i] = (ModelSeq){.tokens = ids + (size_t)i * ctx, .n_new = prompt, .slots = slots + (size_t)i * ctx,
                                 .n_ctx = prompt};
        ModelBatch bb = {.seqs = seqs, .n_seqs = batch};
        if (model_forward(m, kv, &bb, err, sizeof err)) die("batch prefill", err);
        t0 = now();
        for (int g = 0; g < gen; g++) {
            for (int i = 0; i < batch; i++)
                seqs[i] = (ModelSeq){.tokens = ids + (size_t)i * ctx + prompt + g, .n_new = 1,
                                     .slots = slots + (size_t)i * ctx, .n_ctx = prompt + g + 1};
            if (model_forward(m, kv, &bb, err, sizeof err)) die("batch decode", err);
        }
        double d8 = now() - t0;
        if (r == 0) continue;
        if (pf < best_pf) best_pf = pf;
        if (d1 < best_d1) best_d1 = d1;
        if (d8 < best_d8) best_d8 = d8;
    }
    printf("sgl        threads=%-2d prefill(%d) %8.1f tok/s   decode(1) %7.1f tok/s   decode(%d) %7.1f tok/s%s\n",
           threads, prompt, prompt / best_pf, gen / best_d1, batch, gen * batch / best_d8,
           no_blas ? "  [batch-invariant, the default]" : "  [--blas-prefill]");
    free(seqs);
    free(ids);
    free(slots);
    kv_free(kv);
    model_free(m);
    return 0;
}
