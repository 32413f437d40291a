/*
 * tests/gpu/engine_gpu.c — the engine on the CUDA backend, on the GPU machine.
 *
 *   engine_gpu check DIR [OUT]   correctness on a (small) HF checkpoint
 *     (or a .gguf file, e.g. from `sgl make-model --gguf`):
 *     1. teacher-forced logits: a prompt plus the CPU engine's greedy
 *        continuation through model_forward on both backends (every row's
 *        logits); per-row ||gpu - cpu|| / ||cpu|| and argmax agreement.
 *        With OUT, the GPU rows are written to OUT/sgl_out.bin for
 *        e2e_logits.py (transformers on the same ids).
 *     2. engine greedy ids, CPU vs CUDA: 6 requests (3 share a prefix), each
 *        alone and all at once, cache on; where they first differ.
 *     Exit 1 when a GPU row's logits differ from the CPU's by more than
 *     CHECK_TOL or a request fails.
 *   engine_gpu sample DIR   device vs host sampling (see "sample" below)
 *   engine_gpu bench DIR N_REQ IN OUT [MAX_RUNNING CHUNK]   (every mode: SGL_OVERLAP=0/1
 *     turns the overlap scheduler off/on; default the engine's)
 *     batch-1 decode (one request of IN prompt tokens, OUT output tokens,
 *     greedy, ignore_eos) then N_REQ such requests submitted at once
 *     (offline throughput); prints JSON lines.
 *   engine_gpu lens DIR LENS [MAX_RUNNING CHUNK]
 *     SGLang's offline workload: every line of LENS is "IN OUT" (a request
 *     of IN random prompt ids, OUT output tokens, greedy, ignore_eos); all
 *     submitted at once; prints one JSON line (output tok/s over the wall
 *     time from the first submit to the last token).
 *   engine_gpu graphcheck DIR
 *     decode-step graphs: the 6 requests of `check`, alone and all at once,
 *     with ModelOptions.device_graphs ON, PADDED (the same padded steps op
 *     by op) and OFF; exit 1 unless ON and PADDED give identical ids (OFF
 *     is reported: its GEMMs run at other row counts, so ids may part at
 *     near-ties).
 *   engine_gpu fusecheck DIR
 *     RoPE + KV write fused into the decode attention (SGL_CUDA_FUSE_ROPE,
 *     KDevOps.attention_rope): the 6 requests of `check`, alone and all at
 *     once, decode graphs on, on a model opened with the switch off and on
 *     one opened with it on; exit 1 unless every id is the same (the fused
 *     kernel is meant to give the two ops' bits) or the switch did not set
 *     the op. SGL_KV_CACHE_DTYPE=fp8_e4m3 checks the fp8 pools.
 *   engine_gpu decode DIR
 *     the forward alone for B decode rows of context ctx (B 1, 16, 64; ctx
 *     1024, 4096, 8192) with the row kernel, the split-K kernel, and the
 *     split-K kernel from graphs; then the engine's batch-1 decode (256/256
 *     and 1024/256), row kernel without graphs against split-K with graphs.
 *   engine_gpu offline DIR N_REQ IN OUT row|split on|off
 *     N_REQ requests at once with that decode kernel and graphs on or off.
 *   engine_gpu gemv DIR IN OUT SPEC...
 *     batch-1 decode under each small-batch matmul policy (SPEC as
 *     cuda_backend_set_gemv: off, auto, mma, rows:R:U:KS[:pdl]): forward
 *     step eager / graph, the engine's IN/OUT decode tok/s, greedy ids
 *     against the first policy's.
 *   engine_gpu prof DIR [B CTX]
 *     eager and graph step times, then where an eager decode step's GPU
 *     time goes: every device op timed on the stream, summed by op (matmuls
 *     by shape), the rest of the step's span as gaps (see "op times"); then
 *     one eager decode step inside a profiled range (ncu
 *     --profile-from-start off).
 *
 * Prompts are token ids drawn from a fixed hash (no tokenizer text), below
 * the regular vocabulary's size.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_decode.h"
#include "runtime/engine.h"
#include "runtime/hf.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"

#define CHECK_TOL 0.05
#define CHECK_TOL_FP8 0.15    /* --quantization fp8 */
#define CHECK_TOL_FP8_KV 0.08 /* --kv-cache-dtype fp8_e4m3 */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "engine_gpu: %s: %s\n", what, err);
    exit(2);
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void prompt_ids(int32_t *out, int n, uint64_t seed, int vocab)
{
    for (int i = 0; i < n; i++) out[i] = (int32_t)(mix(seed * 7919 + (uint64_t)i) % (uint64_t)vocab);
}

/* a Hugging Face directory, or a .gguf file */
static int is_gguf(const char *path)
{
    size_t n = strlen(path);
    return n > 5 && !strcmp(path + n - 5, ".gguf");
}

static Model *open_model(const char *dir, KBackendKind kind)
{
    char err[1024];
    Model *m;
    if (is_gguf(dir) ? model_load_gguf(dir, &m, err, sizeof err) : hf_load(dir, &m, NULL, err, sizeof err))
        die("load", err);
    ModelOptions o;
    model_options_default(&o);
    o.backend = kind;
    /* the fp8 options for the device model, as sgl's flags spell them:
     * SGL_QUANTIZATION=fp8, SGL_KV_CACHE_DTYPE=fp8_e4m3 */
    if (kind != K_BACKEND_CPU) {
        int q = model_quant_from_name(getenv("SGL_QUANTIZATION")), kv = model_kv_cache_from_name(getenv("SGL_KV_CACHE_DTYPE"));
        if (q < 0 || kv < 0) die("options", "SGL_QUANTIZATION: none|fp8, SGL_KV_CACHE_DTYPE: auto|bf16|fp8_e4m3");
        o.quantization = (ModelQuant)q;
        o.kv_cache_dtype = (ModelKvCache)kv;
    }
    model_set_options(m, &o);
    return m;
}

/* check's tolerance on GPU vs CPU logits: bf16's, or fp8's with the fp8
 * options (test_model_fp8 measures the same error on dev-ref: 3 mantissa
 * bits per weight and activation) */
static double check_tol(void)
{
    const char *q = getenv("SGL_QUANTIZATION"), *kv = getenv("SGL_KV_CACHE_DTYPE");
    double t = CHECK_TOL;
    if (kv && !strcmp(kv, "fp8_e4m3")) t = CHECK_TOL_FP8_KV;
    if (q && !strcmp(q, "fp8")) t = CHECK_TOL_FP8;
    return t;
}

/* The tokenizer of what open_model opened as m: a GGUF file's own, or the
 * HF directory's tokenizer.json. */
static Tokenizer *open_tok(const char *dir, const Model *m)
{
    char err[1024];
    Tokenizer *tok;
    if (is_gguf(dir) ? tok_load_gguf(m->gguf, &tok, err, sizeof err) : tok_load_hf(dir, &tok, err, sizeof err))
        die("tokenizer", err);
    return tok;
}

/* ---- requests ---- */

typedef struct {
    int32_t *ids;
    int n;
    int done;
    int failed;
    double t_first, t_last;
} Out;

static void on_delta(void *ud, const EngDelta *d)
{
    Out *o = ud;
    double t = now();
    if (o->t_first == 0) o->t_first = t;
    o->t_last = t;
}

static void on_done(void *ud, const EngResult *r)
{
    Out *o = ud;
    o->done = 1;
    if (r->status) {
        fprintf(stderr, "request failed: %s\n", r->error ? r->error : "?");
        o->failed = 1;
        return;
    }
    o->ids = malloc((size_t)(r->n_ids ? r->n_ids : 1) * sizeof *o->ids);
    memcpy(o->ids, r->ids, (size_t)r->n_ids * sizeof *o->ids);
    o->n = r->n_ids;
}

static Engine *engine(Model *m, Tokenizer *tok, int max_running, int chunk);
static Engine *engine_chunked(Model *m, Tokenizer *tok, int chunk) { return engine(m, tok, 0, chunk); }

static Engine *engine(Model *m, Tokenizer *tok, int max_running, int chunk)
{
    EngOptions eo;
    eng_options_default(&eo);
    if (max_running) eo.max_running = max_running;
    if (chunk) eo.chunk_size = chunk;
    ModelOptions mo;
    model_get_options(m, &mo);
    if (mo.backend != K_BACKEND_CUDA) eo.n_slots = 32768; /* the GPU's is its memory plan */
    /* SGL_OVERLAP=0|1: the overlap scheduler off / on (default: the engine's) */
    if (getenv("SGL_OVERLAP")) eo.overlap = atoi(getenv("SGL_OVERLAP"));
    char err[1024];
    Engine *e = eng_new(m, tok, &eo, err, sizeof err);
    if (!e) die("engine", err);
    return e;
}

static void submit(Engine *e, const int32_t *p, int np, int max_tokens, Out *o)
{
    EngGenParams g;
    eng_gen_params_default(&g);
    g.prompt_ids = p;
    g.n_prompt_ids = np;
    g.sampling.temperature = 0;
    g.sampling.max_tokens = max_tokens;
    g.sampling.ignore_eos = 1;
    g.on_delta = on_delta;
    g.on_done = on_done;
    g.ud = o;
    memset(o, 0, sizeof *o);
    if (eng_submit(e, &g, NULL)) die("submit", eng_last_error(e));
}

/* Waits for o[0..n). With SGL_BENCH_PROGRESS=S set, prints a progress line
 * every S seconds (requests done, tokens out, the rate so far), so a run cut
 * off by a time limit still tells its rate. */
static void wait_all(Engine *e, Out *o, int n)
{
    const char *pe = getenv("SGL_BENCH_PROGRESS");
    double every = pe ? atof(pe) : 0, t0 = now(), next = t0 + every;
    for (;;) {
        int left = 0;
        long toks = 0;
        for (int i = 0; i < n; i++) left += !o[i].done, toks += o[i].n;
        if (!left) return;
        if (every > 0 && now() >= next) {
            printf("{\"progress_s\": %.0f, \"done\": %d, \"of\": %d, \"out_tokens\": %ld, \"out_tok_s\": %.1f}\n",
                   now() - t0, n - left, n, toks, toks / (now() - t0));
            fflush(stdout);
            next += every;
        }
        eng_wait(e);
    }
}

/* ---- check ---- */

enum { NREQ = 6, PLEN = 160, GEN = 32 };

static void run_requests(Engine *e, int32_t (*prompts)[PLEN], const int *plen, Out *o, int together)
{
    if (together) {
        for (int i = 0; i < NREQ; i++) submit(e, prompts[i], plen[i], GEN, &o[i]);
        wait_all(e, o, NREQ);
    } else {
        for (int i = 0; i < NREQ; i++) {
            submit(e, prompts[i], plen[i], GEN, &o[i]);
            wait_all(e, &o[i], 1);
        }
    }
}

/* the requests alone (o[0], secs[0]) then together (o[1], secs[1]), each on
 * a fresh engine over m; 1 when a request failed */
static int alone_and_together(Model *m, Tokenizer *tok, int32_t (*prompts)[PLEN], const int *plen, Out o[2][NREQ],
                              double secs[2])
{
    int fail = 0;
    for (int together = 0; together < 2; together++) {
        Engine *e = engine(m, tok, 0, 0);
        double t0 = now();
        run_requests(e, prompts, plen, o[together], together);
        secs[together] = now() - t0;
        eng_free(e);
        for (int i = 0; i < NREQ; i++) fail |= o[together][i].failed;
    }
    return fail;
}

/* The NREQ requests of `check`, `graphcheck` and `fusecheck`: ids below
 * every special id, request 0 of 150 tokens (three attention tiles), 3..5
 * sharing request 0's first 24 tokens. */
static void check_prompts(int32_t (*prompts)[PLEN], int *plen, int vocab)
{
    int reg = vocab < 100000 ? vocab : 100000;
    for (int i = 0; i < NREQ; i++) {
        plen[i] = i == 0 ? 150 : 40 - 4 * (i % 3);
        prompt_ids(prompts[i], PLEN, 100 + (uint64_t)i, reg);
        if (i >= 3) memcpy(prompts[i], prompts[0], 24 * sizeof(int32_t));
    }
}

static int first_diff(const Out *a, const Out *b)
{
    int n = a->n < b->n ? a->n : b->n;
    for (int i = 0; i < n; i++)
        if (a->ids[i] != b->ids[i]) return i;
    return a->n == b->n ? -1 : n;
}

static int check(const char *dir, const char *out_dir)
{
    char err[1024];
    Model *cpu = open_model(dir, K_BACKEND_CPU), *gpu = open_model(dir, K_BACKEND_CUDA);
    Tokenizer *tok = open_tok(dir, cpu);
    int V = cpu->cfg.vocab;
    int fail = 0;

    /* 2. engine greedy ids (first, so that 1 can reuse the CPU continuation) */
    int32_t prompts[NREQ][PLEN];
    int plen[NREQ];
    check_prompts(prompts, plen, V);
    Out oc[NREQ], og1[NREQ], ogb[NREQ];
    Engine *ec = engine(cpu, tok, 0, 0);
    run_requests(ec, prompts, plen, oc, 0);
    eng_free(ec);
    Engine *eg = engine(gpu, tok, 0, 0);
    printf("{\"backend\": \"%s\"}\n", model_backend_name(gpu));
    run_requests(eg, prompts, plen, og1, 0);
    EngStats st;
    eng_stats(eg, &st);
    eng_free(eg);
    /* all at once, prompts in chunks of 24 (prefill tiles over cached context) */
    eg = engine_chunked(gpu, tok, 24);
    run_requests(eg, prompts, plen, ogb, 1);
    eng_free(eg);
    int same_alone = 0, same_batch = 0;
    for (int i = 0; i < NREQ; i++) {
        if (oc[i].failed || og1[i].failed || ogb[i].failed) fail = 1;
        int d1 = first_diff(&oc[i], &og1[i]), d2 = first_diff(&og1[i], &ogb[i]);
        same_alone += d1 < 0;
        same_batch += d2 < 0;
        printf("{\"request\": %d, \"prompt\": %d, \"generated\": %d, \"cpu_vs_gpu_first_diff\": %d, "
               "\"gpu_alone_vs_batched_chunked_first_diff\": %d}\n",
               i, plen[i], og1[i].n, d1, d2);
    }
    printf("{\"greedy_ids_identical_cpu_gpu\": \"%d/%d\", \"gpu_alone_eq_batched_chunk24\": \"%d/%d\", "
           "\"gpu_cached_tokens\": %llu}\n",
           same_alone, NREQ, same_batch, NREQ, (unsigned long long)st.cached_tokens);

    /* 1. teacher-forced logits on prompt 0 + the CPU's continuation */
    int P = plen[0], N = oc[0].n, T = P + N;
    int32_t *ids = malloc((size_t)T * sizeof *ids), *slots = malloc((size_t)T * sizeof *slots);
    memcpy(ids, prompts[0], (size_t)P * sizeof *ids);
    memcpy(ids + P, oc[0].ids, (size_t)N * sizeof *ids);
    for (int i = 0; i < T; i++) slots[i] = i;
    float *lc = malloc((size_t)T * V * sizeof *lc), *lg = malloc((size_t)T * V * sizeof *lg);
    for (int which = 0; which < 2; which++) {
        Model *m = which ? gpu : cpu;
        KvPool *kv = model_kv_new(m, T + 8, K_DTYPE_F16, err, sizeof err);
        if (!kv) die("kv", err);
        /* prompt as one prefill, the rest one decode step at a time (both
         * attention paths) */
        ModelSeq s = {.tokens = ids, .n_new = P, .slots = slots, .n_ctx = P, .logits = MODEL_LOGITS_ALL};
        ModelBatch b = {.seqs = &s, .n_seqs = 1};
        if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
        memcpy(which ? lg : lc, b.logits, (size_t)P * V * sizeof(float));
        for (int t = P; t < T; t++) {
            ModelSeq d = {.tokens = ids + t, .n_new = 1, .slots = slots, .n_ctx = t + 1, .logits = MODEL_LOGITS_LAST};
            ModelBatch db = {.seqs = &d, .n_seqs = 1};
            if (model_forward(m, kv, &db, err, sizeof err)) die("forward", err);
            memcpy((which ? lg : lc) + (size_t)t * V, db.logits, (size_t)V * sizeof(float));
        }
        kv_free(kv);
    }
    double worst = 0, sum = 0;
    int agree = 0;
    for (int t = 0; t < T; t++) {
        double num = 0, den = 0;
        int ac = 0, ag = 0;
        for (int i = 0; i < V; i++) {
            double a = lc[(size_t)t * V + i], g = lg[(size_t)t * V + i];
            num += (g - a) * (g - a);
            den += a * a;
            if (a > lc[(size_t)t * V + ac]) ac = i;
            if (g > lg[(size_t)t * V + ag]) ag = i;
        }
        double rel = sqrt(num / (den > 0 ? den : 1));
        if (!(rel <= worst)) worst = rel;
        sum += rel;
        agree += ac == ag;
    }
    double tol = check_tol();
    int ok = worst <= tol;
    printf("{\"teacher_forced_rows\": %d, \"gpu_vs_cpu_rel_max\": %.5f, \"gpu_vs_cpu_rel_mean\": %.5f, "
           "\"argmax_agree\": \"%d/%d\", \"tol\": %.3f, \"pass\": %s}\n",
           T, worst, sum / T, agree, T, tol, ok ? "true" : "false");
    if (!ok) fail = 1;
    if (out_dir) {
        char path[2048];
        snprintf(path, sizeof path, "%s/sgl_out.bin", out_dir);
        FILE *f = fopen(path, "wb");
        if (!f) die("write", path);
        int32_t hdr[3] = {P, N, V};
        fwrite(hdr, 4, 3, f);
        fwrite(ids, 4, (size_t)T, f);
        fwrite(lg, 4, (size_t)T * V, f);
        fclose(f);
    }
    model_free(cpu);
    model_free(gpu);
    tok_free(tok);
    printf("{\"check\": \"%s\"}\n", fail ? "FAILED" : "passed");
    return fail;
}

/* ---- bench ---- */

static int cmp_ms(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* The bf16 GEMM peak of this GPU now (cuBLASLt 8192³ on random data, median
 * of 7), TFLOP/s; 0 when it cannot be measured. The prefill's MFU is against
 * this figure, measured in the same run. */
static double gemm_peak_tflops(void)
{
    char err[256];
    CuCtx *cu = cu_ctx_new(err, sizeof err);
    if (!cu) return 0;
    int G = 8192;
    uint16_t *a = cu_alloc(cu, (size_t)G * G * 2), *b = cu_alloc(cu, (size_t)G * G * 2);
    uint16_t *c = cu_alloc(cu, (size_t)G * G * 2);
    CuTimer *t0 = cu_timer_new(cu), *t1 = cu_timer_new(cu);
    float ms[7];
    double peak = 0;
    if (a && b && c && t0 && t1) {
        cu_fill_uniform_bf16(cu, a, (size_t)G * G, 2, 1.0f);
        cu_fill_uniform_bf16(cu, b, (size_t)G * G, 3, 1.0f);
        for (int i = 0; i < 3; i++) cu_gemm_bf16(cu, a, G, G, G, b, G, c, G);
        for (int i = 0; i < 7; i++) {
            cu_timer_record(cu, t0);
            cu_gemm_bf16(cu, a, G, G, G, b, G, c, G);
            cu_timer_record(cu, t1);
            cu_sync(cu);
            ms[i] = cu_timer_ms(t0, t1);
        }
        qsort(ms, 7, sizeof *ms, cmp_ms);
        if (!cu_sync(cu)) peak = 2.0 * G * G * (double)G / (ms[3] * 1e-3) / 1e12;
    }
    cu_free(cu, a), cu_free(cu, b), cu_free(cu, c);
    cu_timer_free(t0), cu_timer_free(t1);
    cu_ctx_free(cu);
    return peak;
}

/* FLOPs of one prefill of n tokens (no cache): 2·n per weight of the layers'
 * matmuls, causal attention 4·n_head·head_dim·n²/2 per layer (QKᵀ and PV),
 * the lm head for the one logit row. */
static double prefill_flop(const ModelConfig *c, int n)
{
    double q = (double)c->n_head * c->head_dim, kv = (double)c->n_head_kv * c->head_dim, e = c->n_embd;
    double per_layer = e * (q + 2 * kv) + q * e + e * 2.0 * c->n_ff + (double)c->n_ff * e;
    return c->n_layer * (2.0 * n * per_layer + 4.0 * q * (double)n * n / 2) + 2.0 * e * c->vocab;
}

static void forward_bench(Model *m, int in, int outn)
{
    char err[1024];
    if (model_reserve(m, 8192, 192, err, sizeof err)) die("reserve", err);
    /* the forward alone: B decode rows of context ctx each (logits of every
     * row come back to the host, as the engine asks) */
    {
        int ctx = in + outn / 2;
        int Bs[] = {1, 16, 64, 128};
        int fit = model_kv_slots(m) / ctx;
        if (fit > 128) fit = 128;
        KvPool *kv = model_kv_new(m, fit * ctx + 8, K_DTYPE_F16, err, sizeof err);
        if (!kv) die("kv", err);
        int pre_n[2] = {in, getenv("SGL_BENCH_PREFILL") ? atoi(getenv("SGL_BENCH_PREFILL")) : 0};
        for (int pi = 0; pi < 2 && pre_n[pi] > 0 && pre_n[pi] <= 8192 && pre_n[pi] <= fit * ctx; pi++) {
            /* one prompt of `in` tokens (then of $SGL_BENCH_PREFILL) as one prefill */
            int in = pre_n[pi];
            int32_t *pt = malloc((size_t)in * sizeof *pt), *ps = malloc((size_t)in * sizeof *ps);
            prompt_ids(pt, in, 3, 100000 < m->cfg.vocab ? 100000 : m->cfg.vocab);
            for (int i = 0; i < in; i++) ps[i] = i;
            ModelSeq q = {.tokens = pt, .n_new = in, .slots = ps, .n_ctx = in, .logits = MODEL_LOGITS_LAST};
            ModelBatch pb = {.seqs = &q, .n_seqs = 1};
            if (model_forward(m, kv, &pb, err, sizeof err)) die("prefill", err);
            double tp = now();
            for (int r = 0; r < 3; r++)
                if (model_forward(m, kv, &pb, err, sizeof err)) die("prefill", err);
            double ms = (now() - tp) / 3 * 1e3;
            double peak = gemm_peak_tflops(), tf = prefill_flop(&m->cfg, in) / (ms * 1e-3) / 1e12;
            printf("{\"bench\": \"forward prefill\", \"tokens\": %d, \"ms\": %.1f, \"tok_s\": %.0f, "
                   "\"TFLOPs\": %.1f, \"gemm_peak_TFLOPs\": %.1f, \"mfu_vs_gemm_peak\": %.3f}\n",
                   in, ms, in / ms * 1e3, tf, peak, peak > 0 ? tf / peak : 0.0);
            free(pt);
            free(ps);
        }
        int32_t *slots = malloc((size_t)fit * ctx * sizeof *slots), tokv[128];
        ModelSeq sq[128];
        for (int i = 0; i < fit * ctx; i++) slots[i] = i;
        for (int bi = 0; bi < 4 && Bs[bi] <= fit; bi++) {
            int B = Bs[bi];
            for (int i = 0; i < B; i++) {
                tokv[i] = (int32_t)(i * 31 + 7);
                sq[i] = (ModelSeq){.tokens = &tokv[i], .n_new = 1, .slots = slots + (size_t)i * ctx, .n_ctx = ctx,
                                   .logits = MODEL_LOGITS_LAST};
            }
            ModelBatch b = {.seqs = sq, .n_seqs = B};
            if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
            int reps = 10;
            double tf = now();
            for (int r = 0; r < reps; r++)
                if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
            double ms = (now() - tf) / reps * 1e3;
            printf("{\"bench\": \"forward decode\", \"batch\": %d, \"ctx\": %d, \"ms\": %.2f, \"tok_s\": %.1f}\n", B,
                   ctx, ms, B / ms * 1e3);
        }
        kv_free(kv);
        free(slots);
        fflush(stdout);
    }
}

static int bench(const char *dir, int n_req, int in, int outn, int max_running, int chunk)
{
    double t0 = now();
    Model *m = open_model(dir, K_BACKEND_CUDA);
    Tokenizer *tok = open_tok(dir, m);
    forward_bench(m, in, outn);
    Engine *e = engine(m, tok, max_running, chunk);
    double t_load = now() - t0;
    EngStats st;
    eng_stats(e, &st);
    int V = m->cfg.vocab < 100000 ? m->cfg.vocab : 100000;
    printf("{\"backend\": \"%s\", \"load_s\": %.1f, \"kv_slots\": %d}\n", model_backend_name(m), t_load,
           st.kv.total);
    fflush(stdout);
    int32_t *p = malloc((size_t)in * sizeof *p);
    /* warm-up (plans, first launches) */
    Out w;
    prompt_ids(p, in, 1, V);
    submit(e, p, in, 8, &w);
    wait_all(e, &w, 1);
    /* batch 1 */
    Out o;
    prompt_ids(p, in, 2, V);
    double ts = now();
    submit(e, p, in, outn, &o);
    wait_all(e, &o, 1);
    double ttft = o.t_first - ts, dec = o.t_last - o.t_first;
    printf("{\"bench\": \"batch-1\", \"in\": %d, \"out\": %d, \"ttft_ms\": %.1f, \"decode_tok_s\": %.1f}\n", in, o.n,
           ttft * 1e3, dec > 0 ? (o.n - 1) / dec : 0.0);
    fflush(stdout);
    /* offline: all at once */
    Out *os = calloc((size_t)n_req, sizeof *os);
    int32_t *ps = malloc((size_t)n_req * in * sizeof *ps);
    for (int i = 0; i < n_req; i++) prompt_ids(ps + (size_t)i * in, in, 1000 + (uint64_t)i, V);
    EngStats s0;
    eng_stats(e, &s0);
    ts = now();
    for (int i = 0; i < n_req; i++) submit(e, ps + (size_t)i * in, in, outn, &os[i]);
    wait_all(e, os, n_req);
    double wall = now() - ts;
    EngStats s1;
    eng_stats(e, &s1);
    long gen = 0;
    int failed = 0;
    for (int i = 0; i < n_req; i++) gen += os[i].n, failed += os[i].failed;
    printf("{\"bench\": \"offline\", \"requests\": %d, \"in\": %d, \"out\": %d, \"wall_s\": %.1f, "
           "\"output_tok_s\": %.1f, \"total_tok_s\": %.1f, \"steps\": %llu, \"busy_s\": %.1f, \"retractions\": %llu, "
           "\"failed\": %d}\n",
           n_req, in, outn, wall, gen / wall, (gen + (double)n_req * in) / wall,
           (unsigned long long)(s1.steps - s0.steps), s1.busy_seconds - s0.busy_seconds,
           (unsigned long long)(s1.retractions - s0.retractions), failed);
    eng_free(e);
    model_free(m);
    tok_free(tok);
    return failed != 0;
}

/* ---- offline workload from a lengths file ---- */

static int offline_lens(const char *dir, const char *lens, int max_running, int chunk)
{
    FILE *f = fopen(lens, "r");
    if (!f) die("lengths", lens);
    int cap = 1024, n = 0, *in = malloc(cap * sizeof *in), *out = malloc(cap * sizeof *out);
    while (n < cap && fscanf(f, "%d %d", &in[n], &out[n]) == 2) {
        if (in[n] < 1) in[n] = 1;
        if (out[n] < 1) out[n] = 1; /* SGLang may draw 0; the engine needs >= 1 */
        n++;
    }
    fclose(f);
    if (n == 0) die("lengths", "no \"IN OUT\" lines");
    Model *m = open_model(dir, K_BACKEND_CUDA);
    Tokenizer *tok = open_tok(dir, m);
    Engine *e = engine(m, tok, max_running, chunk);
    int V = m->cfg.vocab < 100000 ? m->cfg.vocab : 100000;
    long sum_in = 0, sum_out = 0;
    int32_t **ps = malloc((size_t)n * sizeof *ps);
    for (int i = 0; i < n; i++) {
        ps[i] = malloc((size_t)in[i] * sizeof **ps);
        prompt_ids(ps[i], in[i], 5000 + (uint64_t)i, V);
        sum_in += in[i];
        sum_out += out[i];
    }
    Out w;
    submit(e, ps[0], in[0] < 64 ? in[0] : 64, 8, &w); /* warm-up */
    wait_all(e, &w, 1);
    Out *os = calloc((size_t)n, sizeof *os);
    EngStats s0, s1;
    eng_stats(e, &s0);
    double ts = now();
    for (int i = 0; i < n; i++) submit(e, ps[i], in[i], out[i], &os[i]);
    wait_all(e, os, n);
    double wall = now() - ts;
    eng_stats(e, &s1);
    long gen = 0;
    int failed = 0;
    for (int i = 0; i < n; i++) gen += os[i].n, failed += os[i].failed;
    printf("{\"bench\": \"offline-lens\", \"requests\": %d, \"sum_in\": %ld, \"sum_out\": %ld, \"kv_slots\": %d, "
           "\"wall_s\": %.1f, \"output_tok_s\": %.1f, \"total_tok_s\": %.1f, \"steps\": %llu, \"busy_s\": %.1f, "
           "\"retractions\": %llu, \"failed\": %d}\n",
           n, sum_in, sum_out, s1.kv.total, wall, gen / wall, (gen + (double)sum_in) / wall,
           (unsigned long long)(s1.steps - s0.steps), s1.busy_seconds - s0.busy_seconds,
           (unsigned long long)(s1.retractions - s0.retractions), failed);
    eng_free(e);
    model_free(m);
    tok_free(tok);
    return failed != 0;
}

/* ---- sample: device sampling vs host sampling on the GPU ----
 *
 *   engine_gpu sample DIR
 *     1. NS seeded requests with different sampling parameters (top-k/p,
 *        min-p, penalties, logprobs with top-n, a logit bias), all at once,
 *        on the CUDA model twice: EngOptions.device_sample on (the rows are
 *        sampled by cuda_sample.cu) and off (rows downloaded, sampler.c):
 *        the ids must be the same (the forward passes are the same; a draw
 *        within float rounding of a cumulative boundary may differ, and is
 *        reported); logprobs within 1e-4.
 *     2. decode tok/s with temperature 0.7, top-p 0.9 sampling, batch 1 and
 *        batch 32, both ways. */

enum { NS = 8, SGEN = 48 };

typedef struct {
    Out o;
    float lp[SGEN];
    int n_lp;
} SOut;

static void on_done_s(void *ud, const EngResult *r)
{
    SOut *so = ud;
    on_done(&so->o, r);
    so->n_lp = r->logprobs ? (r->n_logprobs < SGEN ? r->n_logprobs : SGEN) : 0;
    if (so->n_lp) memcpy(so->lp, r->logprobs, (size_t)so->n_lp * sizeof *so->lp);
}

static void sample_params(int i, SampParams *s, SampBias *bias)
{
    s->has_seed = 1;
    s->seed = 500 + (uint64_t)i;
    s->ignore_eos = 1;
    s->temperature = 0.8f;
    switch (i % NS) {
    case 1: s->top_k = 40; break;
    case 2: s->top_p = 0.9f; s->temperature = 0.7f; break;
    case 3: s->min_p = 0.05f; s->top_p = 0.95f; s->temperature = 1.1f; break;
    case 4: s->repetition_penalty = 1.3f; s->frequency_penalty = 0.5f; s->presence_penalty = 0.2f; break;
    case 5: s->logprobs = 1; s->top_logprobs = 5; break;
    case 6: s->logprobs = 1; s->logprob_mode = SAMP_LOGPROBS_PROCESSED; s->top_k = 100; break;
    case 7: bias[0] = (SampBias){1000, 4.0f}; s->bias = bias; s->n_bias = 1; s->temperature = 0; break;
    default: break;
    }
}

static void run_sampled(Model *m, Tokenizer *tok, int device_sample, int n, int in, int gen, int typical, SOut *o,
                        double *tok_s)
{
    EngOptions eo;
    eng_options_default(&eo);
    eo.device_sample = device_sample;
    char err[1024];
    Engine *e = eng_new(m, tok, &eo, err, sizeof err);
    if (!e) die("engine", err);
    int V = m->cfg.vocab < 100000 ? m->cfg.vocab : 100000;
    int32_t *p = malloc((size_t)n * in * sizeof *p);
    SampBias bias[NS][1];
    for (int i = 0; i < n; i++) prompt_ids(p + (size_t)i * in, in, 900 + (uint64_t)i, V);
    for (int i = 0; i < n; i++) {
        EngGenParams g;
        eng_gen_params_default(&g);
        g.prompt_ids = p + (size_t)i * in;
        g.n_prompt_ids = in;
        g.sampling.max_tokens = gen;
        if (typical) {
            g.sampling.temperature = 0.7f;
            g.sampling.top_p = 0.9f;
            g.sampling.has_seed = 1;
            g.sampling.seed = 7 + (uint64_t)i;
            g.sampling.ignore_eos = 1;
        } else {
            sample_params(i, &g.sampling, bias[i % NS]);
        }
        g.on_delta = on_delta;
        g.on_done = on_done_s;
        g.ud = &o[i];
        memset(&o[i], 0, sizeof o[i]);
        if (eng_submit(e, &g, NULL)) die("submit", eng_last_error(e));
    }
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) left += !o[i].o.done;
        if (!left) break;
        eng_wait(e);
    }
    double first = 1e30, last = 0;
    long toks = 0;
    for (int i = 0; i < n; i++) {
        if (o[i].o.t_first < first) first = o[i].o.t_first;
        if (o[i].o.t_last > last) last = o[i].o.t_last;
        toks += o[i].o.n - 1;
    }
    *tok_s = last > first ? toks / (last - first) : 0;
    EngStats st;
    eng_stats(e, &st);
    printf("{\"device_sample\": %d, \"requests\": %d, \"sampled_on_device\": %llu, \"generated\": %llu}\n",
           device_sample, n, (unsigned long long)st.device_sampled, (unsigned long long)st.generated_tokens);
    eng_free(e);
    free(p);
}

static int sample_check(const char *dir)
{
    Model *m = open_model(dir, K_BACKEND_CUDA);
    Tokenizer *tok = open_tok(dir, m);
    printf("{\"backend\": \"%s\", \"vocab\": %d}\n", model_backend_name(m), m->cfg.vocab);
    SOut dev[NS], host[NS];
    double ts;
    run_sampled(m, tok, 1, NS, 64, SGEN, 0, dev, &ts);
    run_sampled(m, tok, 0, NS, 64, SGEN, 0, host, &ts);
    int same = 0, fail = 0;
    for (int i = 0; i < NS; i++) {
        if (dev[i].o.failed || host[i].o.failed) fail = 1;
        int d = first_diff(&dev[i].o, &host[i].o);
        double lp_err = 0;
        int nl = dev[i].n_lp < host[i].n_lp ? dev[i].n_lp : host[i].n_lp;
        for (int j = 0; j < nl && (d < 0 || j < d); j++) {
            double x = fabs((double)dev[i].lp[j] - host[i].lp[j]);
            if (x > lp_err) lp_err = x;
        }
        same += d < 0;
        if (lp_err > 1e-4) fail = 1;
        printf("{\"sample_request\": %d, \"generated\": %d, \"device_vs_host_first_diff\": %d, \"logprob_max_err\": "
               "%.2g}\n",
               i, dev[i].o.n, d, lp_err);
    }
    if (same < NS - 1) fail = 1;   /* more than one rounding boundary in 8 x 48 draws is not rounding */
    printf("{\"seeded_ids_identical_device_host\": \"%d/%d\"}\n", same, NS);
    fflush(stdout);
    int Bs[] = {1, 32};
    for (int k = 0; k < 2; k++) {
        SOut *o = calloc((size_t)Bs[k], sizeof *o);
        double on, off;
        run_sampled(m, tok, 1, Bs[k], 256, 128, 1, o, &on);
        run_sampled(m, tok, 0, Bs[k], 256, 128, 1, o, &off);
        printf("{\"bench\": \"sampled decode (t 0.7, top-p 0.9)\", \"batch\": %d, \"device_sample_tok_s\": %.1f, "
               "\"host_sample_tok_s\": %.1f}\n",
               Bs[k], on, off);
        fflush(stdout);
        free(o);
    }
    model_free(m);
    tok_free(tok);
    printf("{\"sample_check\": \"%s\"}\n", fail ? "FAILED" : "passed");
    return fail;
}

/* ---- graphcheck ---- */

static void set_graphs(Model *m, ModelGraphs g)
{
    ModelOptions o;
    model_get_options(m, &o);
    o.device_graphs = g;
    model_set_options(m, &o);
}

static int graphcheck(const char *dir)
{
    Model *gpu = open_model(dir, K_BACKEND_CUDA);
    Tokenizer *tok = open_tok(dir, gpu);
    int32_t prompts[NREQ][PLEN];
    int plen[NREQ];
    check_prompts(prompts, plen, gpu->cfg.vocab);
    const ModelGraphs modes[3] = {MODEL_GRAPHS_ON, MODEL_GRAPHS_PADDED, MODEL_GRAPHS_OFF};
    const char *names[3] = {"on", "padded", "off"};
    Out o[3][2][NREQ];
    double secs[3][2];
    int fail = 0;
    for (int mi = 0; mi < 3; mi++) {
        set_graphs(gpu, modes[mi]);
        fail |= alone_and_together(gpu, tok, prompts, plen, o[mi], secs[mi]);
    }
    for (int together = 0; together < 2; together++) {
        int eq_pad = 0, eq_off = 0;
        for (int i = 0; i < NREQ; i++) {
            int d_pad = first_diff(&o[0][together][i], &o[1][together][i]);
            int d_off = first_diff(&o[0][together][i], &o[2][together][i]);
            eq_pad += d_pad < 0, eq_off += d_off < 0;
            printf("{\"graphcheck\": \"%s\", \"request\": %d, \"generated\": %d, \"on_vs_padded_first_diff\": %d, "
                   "\"on_vs_off_first_diff\": %d}\n",
                   together ? "together" : "alone", i, o[0][together][i].n, d_pad, d_off);
        }
        printf("{\"graphcheck\": \"%s\", \"ids_on_eq_padded\": \"%d/%d\", \"ids_on_eq_off\": \"%d/%d\", "
               "\"s_%s\": %.2f, \"s_%s\": %.2f, \"s_%s\": %.2f}\n",
               together ? "together" : "alone", eq_pad, NREQ, eq_off, NREQ, names[0], secs[0][together], names[1],
               secs[1][together], names[2], secs[2][together]);
        if (eq_pad != NREQ) fail = 1;
    }
    model_free(gpu);
    tok_free(tok);
    printf("{\"graphcheck\": \"%s\"}\n", fail ? "FAILED" : "passed");
    return fail;
}

/* ---- fusecheck: RoPE + KV write inside the decode attention, on and off ---- */

static int fusecheck(const char *dir)
{
    Out o[2][2][NREQ];
    double secs[2][2];
    int fail = 0, has_op[2] = {0, 0};
    for (int f = 0; f < 2; f++) {
        /* read when the backend is made: one model each */
        if (f) setenv("SGL_CUDA_FUSE_ROPE", "1", 1);
        else unsetenv("SGL_CUDA_FUSE_ROPE");
        Model *gpu = open_model(dir, K_BACKEND_CUDA);
        Tokenizer *tok = open_tok(dir, gpu);
        set_graphs(gpu, MODEL_GRAPHS_ON);
        int32_t prompts[NREQ][PLEN];
        int plen[NREQ];
        check_prompts(prompts, plen, gpu->cfg.vocab);
        fail |= alone_and_together(gpu, tok, prompts, plen, o[f], secs[f]);
        const KBackend *be = gpu->backend;
        has_op[f] = be && be->dev && be->dev->attention_rope;
        model_free(gpu);
        tok_free(tok);
    }
    unsetenv("SGL_CUDA_FUSE_ROPE");
    if (has_op[0] || !has_op[1]) fail = 1;
    for (int together = 0; together < 2; together++) {
        int eq = 0;
        for (int i = 0; i < NREQ; i++) {
            int d = first_diff(&o[0][together][i], &o[1][together][i]);
            eq += d < 0;
            printf("{\"fusecheck\": \"%s\", \"request\": %d, \"generated\": %d, \"off_vs_on_first_diff\": %d}\n",
                   together ? "together" : "alone", i, o[1][together][i].n, d);
        }
        printf("{\"fusecheck\": \"%s\", \"ids_off_eq_on\": \"%d/%d\", \"s_off\": %.2f, \"s_on\": %.2f}\n",
               together ? "together" : "alone", eq, NREQ, secs[0][together], secs[1][together]);
        if (eq != NREQ) fail = 1;
    }
    printf("{\"fusecheck\": \"%s\", \"op_off\": %d, \"op_on\": %d}\n", fail ? "FAILED" : "passed", has_op[0],
           has_op[1]);
    return fail;
}

/* ---- decode: the split-K kernel and graphs against the row kernel ---- */

static void set_decode(Model *m, const char *spec)
{
    if (cuda_backend_set_decode((KBackend *)m->backend, spec)) die("decode policy", spec);
    /* graphs hold the kernel they recorded: a mode change drops them */
    set_graphs(m, MODEL_GRAPHS_OFF);
}

static void decode_grid(Model *m)
{
    char err[1024];
    if (model_reserve(m, 8192, 192, err, sizeof err)) die("reserve", err);
    int pool = model_kv_slots(m);
    if (pool > 600000) pool = 600000;
    KvPool *kv = model_kv_new(m, pool, K_DTYPE_F16, err, sizeof err);
    if (!kv) die("kv", err);
    int Bs[] = {1, 16, 64}, ctxs[] = {1024, 4096, 8192};
    const char *pol[3] = {"row", "split", "split"};
    const ModelGraphs gm[3] = {MODEL_GRAPHS_OFF, MODEL_GRAPHS_OFF, MODEL_GRAPHS_ON};
    const char *label[3] = {"row eager", "split eager", "split graph"};
    int32_t *slots = malloc((size_t)64 * 8192 * sizeof *slots), tokv[64];
    ModelSeq sq[64];
    for (int ci = 0; ci < 3; ci++)
        for (int bi = 0; bi < 3; bi++) {
            int B = Bs[bi], ctx = ctxs[ci];
            /* sequence i's context from slot i * ctx (wrapping inside the
             * pool when B * ctx is larger: shared slots read the same),
             * its own last slot at the pool's end */
            int wrap = pool - 64;
            for (int i = 0; i < B; i++) {
                for (int j = 0; j < ctx - 1; j++) slots[(size_t)i * ctx + j] = (int32_t)(((size_t)i * ctx + j) % wrap);
                slots[(size_t)i * ctx + ctx - 1] = wrap + i;
                tokv[i] = (int32_t)(i * 31 + 7);
                sq[i] = (ModelSeq){.tokens = &tokv[i], .n_new = 1, .slots = slots + (size_t)i * ctx, .n_ctx = ctx,
                                   .logits = MODEL_LOGITS_LAST, .device_argmax = true};
            }
            ModelBatch b = {.seqs = sq, .n_seqs = B};
            double ms_of[3];
            for (int k = 0; k < 3; k++) {
                set_decode(m, pol[k]);
                set_graphs(m, gm[k]);
                for (int w = 0; w < 2; w++)
                    if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
                int reps = 8;
                double t0 = now();
                for (int r = 0; r < reps; r++)
                    if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
                ms_of[k] = (now() - t0) / reps * 1e3;
            }
            printf("{\"bench\": \"forward decode\", \"batch\": %d, \"ctx\": %d", B, ctx);
            for (int k = 0; k < 3; k++) printf(", \"%s_ms\": %.2f", label[k], ms_of[k]);
            printf(", \"split_graph_tok_s\": %.1f, \"row_eager_tok_s\": %.1f}\n", B / ms_of[2] * 1e3,
                   B / ms_of[0] * 1e3);
            fflush(stdout);
        }
    kv_free(kv);
    free(slots);
}

static void batch1(Engine *e, int V, int in, int outn, const char *label)
{
    int32_t *p = malloc((size_t)in * sizeof *p);
    Out o;
    prompt_ids(p, in, 2, V);
    double ts = now();
    submit(e, p, in, outn, &o);
    wait_all(e, &o, 1);
    double ttft = o.t_first - ts, dec = o.t_last - o.t_first;
    printf("{\"bench\": \"batch-1\", \"kernel\": \"%s\", \"in\": %d, \"out\": %d, \"ttft_ms\": %.1f, "
           "\"decode_tok_s\": %.1f}\n",
           label, in, o.n, ttft * 1e3, dec > 0 ? (o.n - 1) / dec : 0.0);
    fflush(stdout);
    free(o.ids);
    free(p);
}

static void offline(Engine *e, int V, int n_req, int in, int outn, const char *label)
{
    Out *os = calloc((size_t)n_req, sizeof *os);
    int32_t *ps = malloc((size_t)n_req * in * sizeof *ps);
    for (int i = 0; i < n_req; i++) prompt_ids(ps + (size_t)i * in, in, 1000 + (uint64_t)i, V);
    EngStats s0, s1;
    eng_stats(e, &s0);
    double ts = now();
    for (int i = 0; i < n_req; i++) submit(e, ps + (size_t)i * in, in, outn, &os[i]);
    wait_all(e, os, n_req);
    double wall = now() - ts;
    eng_stats(e, &s1);
    long gen = 0;
    for (int i = 0; i < n_req; i++) gen += os[i].n, free(os[i].ids);
    printf("{\"bench\": \"offline\", \"kernel\": \"%s\", \"requests\": %d, \"in\": %d, \"out\": %d, "
           "\"wall_s\": %.1f, \"output_tok_s\": %.1f, \"steps\": %llu}\n",
           label, n_req, in, outn, wall, gen / wall, (unsigned long long)(s1.steps - s0.steps));
    fflush(stdout);
    free(os);
    free(ps);
}

static int decode_bench(const char *dir)
{
    Model *m = open_model(dir, K_BACKEND_CUDA);
    Tokenizer *tok = open_tok(dir, m);
    printf("{\"backend\": \"%s\"}\n", model_backend_name(m));
    decode_grid(m);
    int V = m->cfg.vocab < 100000 ? m->cfg.vocab : 100000;
    const char *pol[2] = {"row", "split"};
    const ModelGraphs gm[2] = {MODEL_GRAPHS_OFF, MODEL_GRAPHS_ON};
    const char *label[2] = {"row eager", "split graph"};
    for (int k = 0; k < 2; k++) {
        set_decode(m, pol[k]);
        set_graphs(m, gm[k]);
        Engine *e = engine(m, tok, 0, 0);
        batch1(e, V, 16, 8, "warm-up");
        batch1(e, V, 256, 256, label[k]);
        batch1(e, V, 1024, 256, label[k]);
        eng_free(e);
    }
    model_free(m);
    tok_free(tok);
    return 0;
}

static int offline_bench(const char *dir, int n_req, int in, int outn, const char *policy, int graphs)
{
    char err[1024], label[64];
    Model *m = open_model(dir, K_BACKEND_CUDA);
    Tokenizer *tok = open_tok(dir, m);
    if (model_reserve(m, 16, 16, err, sizeof err)) die("reserve", err); /* makes the backend */
    set_decode(m, policy);
    set_graphs(m, graphs ? MODEL_GRAPHS_ON : MODEL_GRAPHS_OFF);
    snprintf(label, sizeof label, "%s %s", policy, graphs ? "graph" : "eager");
    Engine *e = engine(m, tok, 0, 0);
    int V = m->cfg.vocab < 100000 ? m->cfg.vocab : 100000;
    batch1(e, V, 16, 8, "warm-up");
    offline(e, V, n_req, in, outn, label);
    eng_free(e);
    model_free(m);
    tok_free(tok);
    return 0;
}

/* One eager batch-1 decode step at context 1024 inside a profiled range
 * (ncu --profile-from-start off), after warm-up steps; the graph step's
 * time beside it. */
/* ---- op times ----
 * The model's KDevOps table is swapped for a copy whose ops record a stream
 * timer before and after the real op (eager steps only: a graph cannot
 * hold the timers). After the step's sync each op's GPU time, its two
 * timers' difference, is summed by label (matmuls by out x in); what the
 * labels leave of the span from the step's first timer to its last is
 * launch gaps, uploads and ops not wrapped here. Timers between kernels
 * cost a little and break PDL's overlap: the sum is an upper bound of what
 * the graph's kernels take. */
enum { OP_CALLS = 2048, OP_LABELS = 48 };
static KDevOps op_real;
static CuCtx *op_cu;
static CuTimer *op_t[2 * OP_CALLS];
static int op_lab[OP_CALLS], op_n, op_nl;
static char op_names[OP_LABELS][48];

static int op_label(const char *s)
{
    for (int i = 0; i < op_nl; i++)
        if (!strcmp(op_names[i], s)) return i;
    if (op_nl == OP_LABELS) return OP_LABELS - 1;
    snprintf(op_names[op_nl], sizeof op_names[0], "%s", s);
    return op_nl++;
}
static void op_begin(const char *label)
{
    if (op_n >= OP_CALLS) return;
    op_lab[op_n] = op_label(label);
    cu_timer_record(op_cu, op_t[2 * op_n]);
}
static void op_end(void)
{
    if (op_n >= OP_CALLS) return;
    cu_timer_record(op_cu, op_t[2 * op_n + 1]);
    op_n++;
}
#define OP_SHIM(name, label, params, args) \
    static void s_##name params            \
    {                                      \
        op_begin(label);                   \
        op_real.name args;                 \
        op_end();                          \
    }
OP_SHIM(gather, "gather", (void *ctx, const void *table, int dim, const int32_t *idx, int n, void *out),
        (ctx, table, dim, idx, n, out))
OP_SHIM(add_rmsnorm, "add_rmsnorm", (void *ctx, void *h, const void *delta, const void *w, void *y, int n, int dim,
        float eps), (ctx, h, delta, w, y, n, dim, eps))
OP_SHIM(logits, "logits (head)", (void *ctx, const KTensor *w, const void *x, int n, float *y), (ctx, w, x, n, y))
OP_SHIM(rope_kv, "rope_kv", (void *ctx, void *qkv, int n, int n_head, int n_head_kv, int head_dim, int rot_dim,
        const float *inv_freq, KRopeStyle style, const int32_t *pos, const int32_t *wslot, void *k_pool, void *v_pool),
        (ctx, qkv, n, n_head, n_head_kv, head_dim, rot_dim, inv_freq, style, pos, wslot, k_pool, v_pool))
OP_SHIM(rope_kv_fp8, "rope_kv_fp8", (void *ctx, void *qkv, int n, int n_head, int n_head_kv, int head_dim,
        int rot_dim, const float *inv_freq, KRopeStyle style, const int32_t *pos, const int32_t *wslot, void *k_pool,
        void *v_pool), (ctx, qkv, n, n_head, n_head_kv, head_dim, rot_dim, inv_freq, style, pos, wslot, k_pool, v_pool))
OP_SHIM(swiglu, "swiglu", (void *ctx, const void *gu, int n, int ff, void *out), (ctx, gu, n, ff, out))
OP_SHIM(argmax, "argmax", (void *ctx, const float *logits, int n, int v, int32_t *ids), (ctx, logits, n, v, ids))
OP_SHIM(sample, "sample", (void *ctx, const KDevSample *s), (ctx, s))
OP_SHIM(pick_tokens, "pick_tokens", (void *ctx, int32_t *tok, const int32_t *src, const int32_t *prev, int n),
        (ctx, tok, src, prev, n))
OP_SHIM(upload_async, "upload_async", (void *ctx, void *dst, const void *src, size_t bytes), (ctx, dst, src, bytes))
static void s_matmul(void *ctx, const KTensor *w, const void *bias, const void *x, int ldx, int n, void *y, int ldy)
{
    char l[48];
    snprintf(l, sizeof l, "matmul %lldx%lld", (long long)w->ne[1], (long long)w->ne[0]);
    op_begin(l);
    op_real.matmul(ctx, w, bias, x, ldx, n, y, ldy);
    op_end();
}
static void s_matmul_swiglu(void *ctx, const KTensor *w, const void *x, int ldx, int n, int ff, void *gu, void *act)
{
    char l[48];
    snprintf(l, sizeof l, "matmul_swiglu %lldx%lld", (long long)w->ne[1], (long long)w->ne[0]);
    op_begin(l);
    op_real.matmul_swiglu(ctx, w, x, ldx, n, ff, gu, act);
    op_end();
}
static void s_attention(void *ctx, const KDevAttn *a)
{
    op_begin(a->n_tiles ? "attention (tiles)" : "attention (decode rows)");
    op_real.attention(ctx, a);
    op_end();
}

/* One eager forward of b with every op timed; prints the table. */
static void op_times(Model *m, KvPool *kv, ModelBatch *b)
{
    char err[1024];
    KBackend *be = (KBackend *)m->backend;
    const KDevOps *was = be->dev;
    op_real = *was;
    op_cu = cuda_backend_cu(be);
    for (int i = 0; i < 2 * OP_CALLS; i++)
        if (!op_t[i] && !(op_t[i] = cu_timer_new(op_cu))) die("timers", cu_error(op_cu));
    KDevOps shim = op_real;
    shim.gather = s_gather, shim.add_rmsnorm = s_add_rmsnorm, shim.matmul = s_matmul, shim.logits = s_logits;
    shim.rope_kv = s_rope_kv, shim.rope_kv_fp8 = s_rope_kv_fp8, shim.attention = s_attention;
    shim.swiglu = s_swiglu, shim.argmax = s_argmax, shim.sample = s_sample, shim.pick_tokens = s_pick_tokens;
    shim.upload_async = s_upload_async;
    if (op_real.matmul_swiglu) shim.matmul_swiglu = s_matmul_swiglu; /* SGL_CUDA_FUSE_SWIGLU=1 */
    set_graphs(m, MODEL_GRAPHS_OFF);
    if (model_forward(m, kv, b, err, sizeof err)) die("forward", err); /* warm, untimed */
    be->dev = &shim;
    op_n = op_nl = 0;
    CuTimer *span[2] = {cu_timer_new(op_cu), cu_timer_new(op_cu)};
    if (!span[0] || !span[1]) die("timers", cu_error(op_cu));
    cu_timer_record(op_cu, span[0]);
    int rc = model_forward(m, kv, b, err, sizeof err);
    cu_timer_record(op_cu, span[1]);
    be->dev = was;
    if (rc) die("forward", err);
    if (cu_sync(op_cu)) die("sync", cu_error(op_cu));
    double sum[OP_LABELS] = {0}, ops = 0, total = cu_timer_ms(span[0], span[1]);
    int calls[OP_LABELS] = {0};
    for (int i = 0; i < op_n; i++) {
        double t = cu_timer_ms(op_t[2 * i], op_t[2 * i + 1]);
        sum[op_lab[i]] += t, calls[op_lab[i]]++, ops += t;
    }
    for (int l = 0; l < op_nl; l++)
        printf("{\"opprof\": \"%s\", \"calls\": %d, \"ms\": %.4f, \"us_per_call\": %.2f, \"share\": %.4f}\n",
               op_names[l], calls[l], sum[l], sum[l] / calls[l] * 1e3, total > 0 ? sum[l] / total : 0.0);
    printf("{\"opprof\": \"step\", \"ops\": %d, \"span_ms\": %.4f, \"ops_ms\": %.4f, \"gaps_ms\": %.4f}\n", op_n,
           total, ops, total - ops);
    cu_timer_free(span[0]);
    cu_timer_free(span[1]);
}

static int prof(const char *dir, int B, int ctx)
{
    char err[1024];
    Model *m = open_model(dir, K_BACKEND_CUDA);
    if (model_reserve(m, 256, 256, err, sizeof err)) die("reserve", err);
    KvPool *kv = model_kv_new(m, B * ctx + 8, K_DTYPE_F16, err, sizeof err);
    if (!kv) die("kv", err);
    int32_t *slots = malloc((size_t)B * ctx * sizeof *slots), tokv[256];
    ModelSeq sq[256];
    for (int i = 0; i < B * ctx; i++) slots[i] = i;
    for (int i = 0; i < B; i++) {
        tokv[i] = 7 + i;
        sq[i] = (ModelSeq){.tokens = &tokv[i], .n_new = 1, .slots = slots + (size_t)i * ctx, .n_ctx = ctx,
                           .logits = MODEL_LOGITS_LAST, .device_argmax = true};
    }
    ModelBatch b = {.seqs = sq, .n_seqs = B};
    double ms[2];
    for (int g = 0; g < 2; g++) {
        set_graphs(m, g ? MODEL_GRAPHS_ON : MODEL_GRAPHS_OFF);
        for (int w = 0; w < 3; w++)
            if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
        double t0 = now();
        for (int r = 0; r < 20; r++)
            if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
        ms[g] = (now() - t0) / 20 * 1e3;
    }
    printf("{\"prof\": \"decode step\", \"batch\": %d, \"ctx\": %d, \"eager_ms\": %.3f, \"graph_ms\": %.3f}\n", B,
           ctx, ms[0], ms[1]);
    op_times(m, kv, &b);
    fflush(stdout);
    set_graphs(m, MODEL_GRAPHS_OFF);
    cu_profile_range(1);
    if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
    cu_profile_range(0);
    kv_free(kv);
    free(slots);
    model_free(m);
    return 0;
}

/* ---- gemv: batch-1 decode under several small-batch matmul policies ----
 * One model open; for each SPEC (cuda_backend_set_gemv: off, auto, mma,
 * rows:R:U:KS[:pdl]; a "+swiglu" tail also turns on gate|up + swiglu fused,
 * cuda_backend_set_fuse_swiglu "1", "+swiglu-nt" its "no-trigger", none
 * "0") the forward alone for one decode row at context CTX
 * (eager and from the decode graph, re-recorded for the policy; ids by
 * device argmax, as the engine asks), then the engine's batch-1 decode of
 * IN prompt / OUT output tokens (a fresh prompt each, so no cache hits).
 * Then every policy's greedy ids of one request against the first's. */
static int gemv_bench(const char *dir, int in, int outn, int n_spec, char **specs)
{
    char err[1024];
    Model *m = open_model(dir, K_BACKEND_CUDA);
    Tokenizer *tok = open_tok(dir, m);
    if (model_reserve(m, 512, 8, err, sizeof err)) die("reserve", err);
    int V = m->cfg.vocab < 100000 ? m->cfg.vocab : 100000, ctx = in + outn / 2;
    int32_t *first_ids = NULL, first_n = 0;
    for (int si = 0; si < n_spec; si++) {
        char gspec[64];
        snprintf(gspec, sizeof gspec, "%s", specs[si]);
        char *fz = strstr(gspec, "+swiglu");
        const char *fuse = !fz ? "0" : !strcmp(fz, "+swiglu") ? "1" : !strcmp(fz, "+swiglu-nt") ? "no-trigger" : NULL;
        if (fz) *fz = 0;
        if (!fuse || cuda_backend_set_fuse_swiglu((KBackend *)m->backend, fuse) ||
            cuda_backend_set_gemv((KBackend *)m->backend, gspec))
            die("gemv policy", specs[si]);
        KvPool *kv = model_kv_new(m, ctx + 8, K_DTYPE_F16, err, sizeof err);
        if (!kv) die("kv", err);
        int32_t *slots = malloc((size_t)ctx * sizeof *slots), tk = 7;
        for (int i = 0; i < ctx; i++) slots[i] = i;
        ModelSeq sq = {.tokens = &tk, .n_new = 1, .slots = slots, .n_ctx = ctx, .logits = MODEL_LOGITS_LAST,
                       .device_argmax = true};
        ModelBatch b = {.seqs = &sq, .n_seqs = 1};
        double ms[2];
        for (int g = 0; g < 2; g++) {
            set_graphs(m, g ? MODEL_GRAPHS_ON : MODEL_GRAPHS_OFF); /* OFF drops the last policy's graphs */
            for (int w = 0; w < 3; w++)
                if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
            double t0 = now();
            for (int r = 0; r < 30; r++)
                if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
            ms[g] = (now() - t0) / 30 * 1e3;
        }
        kv_free(kv);
        free(slots);
        Engine *e = engine(m, tok, 0, 0);
        int32_t *p = malloc((size_t)in * sizeof *p);
        Out w, o;
        prompt_ids(p, 64, 1, V);
        submit(e, p, 64, 8, &w); /* warm-up */
        wait_all(e, &w, 1);
        prompt_ids(p, in, 50 + (uint64_t)si, V);
        double ts = now();
        submit(e, p, in, outn, &o);
        wait_all(e, &o, 1);
        double dec = o.t_last - o.t_first;
        double tps = dec > 0 ? (o.n - 1) / dec : 0.0;
        /* the same prompt for every policy: greedy ids against the first's */
        Out q;
        prompt_ids(p, in, 49, V);
        submit(e, p, in, 64, &q);
        wait_all(e, &q, 1);
        int diff = -1;
        if (!first_ids) {
            first_ids = malloc((size_t)q.n * sizeof *first_ids);
            memcpy(first_ids, q.ids, (size_t)q.n * sizeof *first_ids);
            first_n = q.n;
        } else {
            for (int i = 0; i < q.n && i < first_n && diff < 0; i++)
                if (q.ids[i] != first_ids[i]) diff = i;
        }
        printf("{\"bench\": \"gemv policy\", \"spec\": \"%s\", \"forward_b1_ctx\": %d, \"eager_ms\": %.3f, "
               "\"graph_ms\": %.3f, \"b1_in\": %d, \"b1_out\": %d, \"ttft_ms\": %.1f, \"decode_tok_s\": %.1f, "
               "\"ids_first_diff_vs_%s\": %d, \"failed\": %d}\n",
               specs[si], ctx, ms[0], ms[1], in, o.n, (o.t_first - ts) * 1e3, tps, specs[0], diff,
               o.failed || q.failed);
        fflush(stdout);
        eng_free(e);
        free(p), free(w.ids), free(o.ids), free(q.ids);
    }
    free(first_ids);
    model_free(m);
    tok_free(tok);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "lens"))
        return offline_lens(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 0, argc > 5 ? atoi(argv[5]) : 0);
    if (argc >= 3 && !strcmp(argv[1], "prof"))
        return prof(argv[2], argc > 3 ? atoi(argv[3]) : 1, argc > 4 ? atoi(argv[4]) : 1024);
    if (argc >= 3 && !strcmp(argv[1], "graphcheck")) return graphcheck(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "fusecheck")) return fusecheck(argv[2]);
    if (argc >= 6 && !strcmp(argv[1], "gemv")) return gemv_bench(argv[2], atoi(argv[3]), atoi(argv[4]), argc - 5, argv + 5);
    if (argc >= 3 && !strcmp(argv[1], "decode")) return decode_bench(argv[2]);
    if (argc >= 8 && !strcmp(argv[1], "offline"))
        return offline_bench(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), argv[6], !strcmp(argv[7], "on"));
    if (argc >= 3 && !strcmp(argv[1], "check")) return check(argv[2], argc > 3 ? argv[3] : NULL);
    if (argc >= 3 && !strcmp(argv[1], "sample")) return sample_check(argv[2]);
    if (argc >= 6 && !strcmp(argv[1], "bench"))
        return bench(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), argc > 6 ? atoi(argv[6]) : 0,
                     argc > 7 ? atoi(argv[7]) : 0);
    fprintf(stderr, "usage: engine_gpu check DIR [OUT] | sample DIR | bench DIR N_REQ IN OUT [MAX_RUNNING CHUNK] | "
                    "lens DIR LENS [MAX_RUNNING CHUNK] | graphcheck DIR | fusecheck DIR | decode DIR | offline DIR N_REQ IN OUT "
                    "row|split on|off | prof DIR [B CTX] | gemv DIR IN OUT SPEC...\n");
    return 64;
}
