/*
 * bench/gpu/bench_kernels.c — the hand-written CUDA kernels beside what they
 * replace, on the GPU machine, with the two ceilings measured in the same run:
 *
 *   1. copy roofline (device-to-device, bytes read + written) and the bf16
 *      GEMM peak (cuBLASLt, 8192³)
 *   2. decode matmuls of the Llama-3-8B shape (qkv, o, gate|up, down, lm
 *      head) at n = 1, 2, 4, 8 rows: cuBLASLt against cuda_gemv.cu's
 *      layouts (registers with 1, 2, 4 adjacent loads; staged), as GB/s
 *      of weights and the fraction of the copy roofline; weights rotate over
 *      copies larger than L2 together, calls replayed from a CUDA graph
 *      and cu_gemv_fp8 on the same weights quantized to e4m3 (half the bytes)
 *   2c. gate|up with SwiGLU in its epilogue (cu_gemv_rows_swiglu) at n = 1
 *      against the table's gate|up GEMV then cu_swiglu, alone and with the
 *      down GEMV behind it (PDL), and the layer chain of 2b with it
 *   3. prefill attention, one sequence of 4096 tokens (8B: 32/8 heads,
 *      hd 128; 1B: 32/8, hd 64): the WMMA kernel against cuda_prefill.cu
 *      (one and two heads a block; ex2.approx and exp2f), ms and TFLOP/s of
 *      the causal count, and
 *      the mma outputs' distance from the WMMA output on that shape
 *
 * Figures are medians of repeated runs timed with device events. Inputs are
 * random (never zeros). Prints one JSON line per figure, then a table.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_gemv.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_prefill.h"

static CuCtx *cu;
static CuTimer *t0, *t1;

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static float median(float *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_f);
    return v[n / 2];
}

static int die(const char *what)
{
    const char *e = cu_error(cu);
    fprintf(stderr, "bench_kernels: %s: %s\n", what, e ? e : "failed");
    return 1;
}

/* ---- 2. decode matmuls ---- */

typedef struct {
    const char *name;
    int in, out, f32;
} Shape;

enum { REPS = 20, TRIALS = 7 };

/* fp8 copies of the rotating weights (cu_quant_fp8), for which == 2 */
static uint8_t *g_q[REPS];
static float *g_sc[REPS];
static int g_cur;

/* One decode matmul: which 0 cuBLASLt, 1 cuda_gemv.cu with (split, vec), 2
 * cu_gemv_fp8 on copy g_cur, 3 cu_gemv_rows with cfg vec. */
static void mm_call(int which, const Shape *s, int n, const uint16_t *w, const uint16_t *x, void *y, int split,
                    int vec)
{
    if (which == 3) cu_gemv_rows(cu, x, s->in, n, s->in, w, s->out, NULL, y, s->out, s->f32, vec);
    else if (which == 2 && s->f32) cu_gemv_fp8_f32(cu, x, s->in, n, s->in, g_q[g_cur], g_sc[g_cur], s->out, y, s->out);
    else if (which == 2) cu_gemv_fp8(cu, x, s->in, n, s->in, g_q[g_cur], g_sc[g_cur], s->out, NULL, y, s->out);
    else if (which == 0 && s->f32) cu_gemm_bf16_f32(cu, x, s->in, n, s->in, w, s->out, y, s->out);
    else if (which == 0) cu_gemm_bf16(cu, x, s->in, n, s->in, w, s->out, y, s->out);
    else if (s->f32) cu_gemv_bf16_f32_cfg(cu, x, s->in, n, s->in, w, s->out, y, s->out, split, vec);
    else cu_gemv_bf16_cfg(cu, x, s->in, n, s->in, w, s->out, NULL, y, s->out, split, vec);
}

/* median ms of one call, REPS calls over the rotating copies captured in a
 * graph and replayed */
static float time_mm(int which, const Shape *s, int n, uint16_t **w, int nw, const uint16_t *x, void *y, int split,
                     int vec)
{
    g_cur = 0;
    for (int i = 0; i < 3; i++) mm_call(which, s, n, w[0], x, y, split, vec); /* plans, module load */
    if (cu_sync(cu)) return -1;
    if (cu_graph_begin(cu)) return -1;
    for (int r = 0; r < REPS; r++) {
        g_cur = r % nw;
        mm_call(which, s, n, w[r % nw], x, y, split, vec);
    }
    CuGraph *g = cu_graph_end(cu);
    if (!g) return -1;
    float ms[TRIALS];
    cu_graph_launch(cu, g);
    for (int t = 0; t < TRIALS; t++) {
        cu_timer_record(cu, t0);
        cu_graph_launch(cu, g);
        cu_timer_record(cu, t1);
        if (cu_sync(cu)) return -1;
        ms[t] = cu_timer_ms(t0, t1) / REPS;
    }
    cu_graph_free(g);
    return median(ms, TRIALS);
}

/* ---- 2b. the decode layer chain ----
 * What a batch-1 step's matmuls cost with the small kernels between them:
 * per layer add_rmsnorm -> q|k|v -> o (reading the q columns) ->
 * add_rmsnorm -> gate|up -> swiglu -> down, 32 layers (weights of CHAIN_SETS
 * layers rotating, together far past L2), then the final norm and the lm
 * head, captured in one graph and replayed. kind 0: cuBLASLt; 1: the
 * row-stream GEMV with cfg[shape]; 2: the same launched as programmatic
 * dependents (CU_GR_PDL); 3: kind 2 with gate|up + swiglu fused
 * (cu_gemv_rows_swiglu). No attention or rope: the figure is the matmul
 * chain alone. */
enum { CHAIN_SETS = 4, CHAIN_LAYERS = 32 };

static void chain_mm(int kind, const int *cfg, int si, const uint16_t *x, int ldx, int in, const uint16_t *w,
                     int out, void *y, int f32)
{
    if (kind == 0 && f32) cu_gemm_bf16_f32(cu, x, ldx, 1, in, w, out, y, out);
    else if (kind == 0) cu_gemm_bf16(cu, x, ldx, 1, in, w, out, y, out);
    else cu_gemv_rows(cu, x, ldx, 1, in, w, out, NULL, y, out, f32, cfg[si] | (kind >= 2 ? CU_GR_PDL : 0));
}

/* the fused gate|up + swiglu layout for a gate|up row layout: a warp's rows
 * are the gate and up rows of one column, at the layout's U and KS (the
 * same sums), launched as a programmatic dependent that lets the down GEMV
 * start early (what cuda_backend.c's d_matmul_swiglu passes) */
static int fused_cfg(int cfg) { return CU_GR(2, (cfg >> 4) & 15, (cfg >> 8) & 15) | CU_GR_PDL | CU_GR_TRIGGER; }

static float bench_chain(int kind, const int *cfg, uint16_t *const (*lw)[4], const uint16_t *head,
                         const uint16_t *nw, uint16_t *h, uint16_t *d, uint16_t *xb, uint16_t *qkv, uint16_t *gu,
                         uint16_t *act, float *logits)
{
    const int E = 4096, F = 14336, QKV = 6144, V = 128256;
    for (int pass = 0; pass < 2; pass++) { /* pass 0 warms plans outside the capture */
        if (pass && cu_graph_begin(cu)) return -1;
        for (int l = 0; l < (pass ? CHAIN_LAYERS : 1); l++) {
            uint16_t *const *W = lw[l % CHAIN_SETS];
            cu_add_rmsnorm(cu, h, l ? d : NULL, nw, xb, 1, E, 1e-5f);
            chain_mm(kind, cfg, 0, xb, E, E, W[0], QKV, qkv, 0);
            chain_mm(kind, cfg, 1, qkv, QKV, E, W[1], E, d, 0);
            cu_add_rmsnorm(cu, h, d, nw, xb, 1, E, 1e-5f);
            if (kind == 3) {
                cu_gemv_rows_swiglu(cu, xb, E, 1, E, W[2], F, act, F, fused_cfg(cfg[2]));
            } else {
                chain_mm(kind, cfg, 2, xb, E, E, W[2], 2 * F, gu, 0);
                cu_swiglu(cu, gu, 1, F, act);
            }
            chain_mm(kind, cfg, 3, act, F, F, W[3], E, d, 0);
        }
        cu_add_rmsnorm(cu, h, d, nw, xb, 1, E, 1e-5f);
        chain_mm(kind, cfg, 4, xb, E, E, head, V, logits, 1);
        if (!pass && cu_sync(cu)) return -1;
    }
    CuGraph *g = cu_graph_end(cu);
    if (!g) return -1;
    float ms[TRIALS];
    cu_graph_launch(cu, g);
    for (int t = 0; t < TRIALS; t++) {
        cu_timer_record(cu, t0);
        cu_graph_launch(cu, g);
        cu_timer_record(cu, t1);
        if (cu_sync(cu)) return -1;
        ms[t] = cu_timer_ms(t0, t1);
    }
    cu_graph_free(g);
    return median(ms, TRIALS);
}

/* ---- 2c. gate|up + swiglu ----
 * Median us of one gate|up + swiglu of n rows (+ down when with_down),
 * REPS of them over rotating weight copies in one graph. mode 0:
 * cu_gemv_rows(cfg) into gu then cu_swiglu (the unfused path at n = 1);
 * 1: cu_gemv_rows_swiglu with fcfg; 2: cuBLASLt into gu then cu_swiglu (the
 * unfused path at n >= 2, where the table takes cuBLASLt for gate|up).
 * down: cu_gemv_rows(down_cfg | PDL) reading act (cuBLASLt at n >= 2). */
static float time_gus(int mode, int n, int cfg, int fcfg, int with_down, int down_cfg, uint16_t **wgu, int ngu,
                      uint16_t **wdn, int ndn, const uint16_t *x, uint16_t *gu, uint16_t *act, uint16_t *y)
{
    const int E = 4096, F = 14336;
    for (int pass = 0; pass < 2; pass++) {
        if (pass && cu_graph_begin(cu)) return -1;
        for (int r = 0; r < (pass ? REPS : 2); r++) {
            if (mode == 0) {
                cu_gemv_rows(cu, x, E, n, E, wgu[r % ngu], 2 * F, NULL, gu, 2 * F, 0, cfg);
                cu_swiglu(cu, gu, n, F, act);
            } else if (mode == 2) {
                cu_gemm_bf16(cu, x, E, n, E, wgu[r % ngu], 2 * F, gu, 2 * F);
                cu_swiglu(cu, gu, n, F, act);
            } else {
                cu_gemv_rows_swiglu(cu, x, E, n, E, wgu[r % ngu], F, act, F, fcfg);
            }
            if (with_down && n == 1) cu_gemv_rows(cu, act, F, 1, F, wdn[r % ndn], E, NULL, y, E, 0, down_cfg | CU_GR_PDL);
            else if (with_down) cu_gemm_bf16(cu, act, F, n, F, wdn[r % ndn], E, y, E);
        }
        if (!pass && cu_sync(cu)) return -1;
    }
    CuGraph *g = cu_graph_end(cu);
    if (!g) return -1;
    float ms[TRIALS];
    cu_graph_launch(cu, g);
    for (int t = 0; t < TRIALS; t++) {
        cu_timer_record(cu, t0);
        cu_graph_launch(cu, g);
        cu_timer_record(cu, t1);
        if (cu_sync(cu)) return -1;
        ms[t] = cu_timer_ms(t0, t1) / REPS;
    }
    cu_graph_free(g);
    return median(ms, TRIALS);
}

/* ---- 3. prefill attention ---- */

static double rel_diff(const uint16_t *a, const uint16_t *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double x = cu_bf16_to_f32(a[i]), y = cu_bf16_to_f32(b[i]);
        if (!isfinite(x)) return INFINITY;
        num += (x - y) * (x - y), den += y * y;
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static int bench_prefill(const char *label, int nh, int nkv, int hd, int N, double *out_ms)
{
    int ldq = (nh + 2 * nkv) * hd, kvd = nkv * hd, n_slots = N + 333;
    uint16_t *q = cu_alloc(cu, (size_t)N * ldq * 2), *k = cu_alloc(cu, (size_t)n_slots * kvd * 2);
    uint16_t *v = cu_alloc(cu, (size_t)n_slots * kvd * 2), *o = cu_alloc(cu, (size_t)N * nh * hd * 2);
    int32_t *slots = malloc((size_t)N * 4), *tiles = malloc(((size_t)N / 64 + 1) * 16);
    if (!q || !k || !v || !o) return die("prefill buffers");
    cu_fill_uniform_bf16(cu, q, (size_t)N * ldq, 11, 2.0f);
    cu_fill_uniform_bf16(cu, k, (size_t)n_slots * kvd, 12, 2.0f);
    cu_fill_uniform_bf16(cu, v, (size_t)n_slots * kvd, 13, 1.0f);
    /* the context's slots scattered over the pool (a fixed shuffle) */
    int32_t *perm = malloc((size_t)n_slots * 4);
    uint64_t r = 88172645463325252ull;
    for (int i = 0; i < n_slots; i++) perm[i] = i;
    for (int i = n_slots - 1; i > 0; i--) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int j = (int)(r % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    memcpy(slots, perm, (size_t)N * 4);
    int n_tiles = 0;
    for (int t0r = 0; t0r < N; t0r += 64, n_tiles++) {
        tiles[4 * n_tiles] = t0r;
        tiles[4 * n_tiles + 1] = N - t0r < 64 ? N - t0r : 64;
        tiles[4 * n_tiles + 2] = 0;
        tiles[4 * n_tiles + 3] = t0r + 1;
    }
    int32_t *ds = cu_alloc(cu, (size_t)N * 4), *dt = cu_alloc(cu, (size_t)n_tiles * 16);
    cu_upload(cu, ds, slots, (size_t)N * 4);
    cu_upload(cu, dt, tiles, (size_t)n_tiles * 16);
    float scale = 1.0f / sqrtf((float)hd);
    double flop = 4.0 * nh * hd * (double)N * N / 2;
    size_t on = (size_t)N * nh * hd;
    uint16_t *ref = malloc(on * 2), *got = malloc(on * 2);
    const char *names[] = {"wmma", "mma1", "mma2", "mma1-exact", "mma2-exact"};
    for (int kind = 0; kind < 5; kind++) {
        if ((kind == 2 || kind == 4) && (nh / nkv) % 2) continue;
        float ms[TRIALS];
        for (int t = -2; t < TRIALS; t++) {
            cu_memset(cu, o, 0xff, on * 2);
            if (t >= 0) cu_timer_record(cu, t0);
            if (kind == 0) cu_attention_prefill(cu, q, ldq, nh, nkv, hd, scale, k, v, ds, dt, n_tiles, o);
            else cu_attention_prefill_mma(cu, q, ldq, nh, nkv, hd, scale, k, v, ds, dt, n_tiles, o, 2 - kind % 2,
                                          kind > 2 ? CU_PREFILL_EXACT_EXP : 0);
            if (t >= 0) cu_timer_record(cu, t1);
            if (cu_sync(cu)) return die("prefill attention");
            if (t >= 0) ms[t] = cu_timer_ms(t0, t1);
        }
        float m = median(ms, TRIALS);
        cu_download(cu, kind == 0 ? ref : got, o, on * 2);
        double d = kind == 0 ? 0.0 : rel_diff(got, ref, on);
        printf("{\"bench\":\"prefill_attention\",\"shape\":\"%s\",\"tokens\":%d,\"kernel\":\"%s\",\"ms\":%.3f,"
               "\"TFLOPs\":%.1f,\"rel_vs_wmma\":%.2e}\n",
               label, N, names[kind], m, flop / (m * 1e-3) / 1e12, d);
        out_ms[kind] = m;
    }
    cu_free(cu, q), cu_free(cu, k), cu_free(cu, v), cu_free(cu, o), cu_free(cu, ds), cu_free(cu, dt);
    free(slots), free(tiles), free(perm), free(ref), free(got);
    return 0;
}

int main(void)
{
    char err[256];
    cu = cu_ctx_new(err, sizeof err);
    if (!cu) {
        fprintf(stderr, "bench_kernels: %s\n", err);
        return 1;
    }
    t0 = cu_timer_new(cu), t1 = cu_timer_new(cu);
    float ms[TRIALS];

    /* 1. ceilings */
    size_t nb = (size_t)1 << 30;
    uint16_t *a = cu_alloc(cu, nb), *b = cu_alloc(cu, nb);
    if (!a || !b) return die("copy buffers");
    cu_fill_uniform_bf16(cu, a, nb / 2, 1, 1.0f);
    for (int i = 0; i < 3; i++) cu_copy_d2d(cu, b, a, nb);
    for (int i = 0; i < TRIALS; i++) {
        cu_timer_record(cu, t0);
        cu_copy_d2d(cu, b, a, nb);
        cu_timer_record(cu, t1);
        cu_sync(cu);
        ms[i] = cu_timer_ms(t0, t1);
    }
    double copy_gbps = 2.0 * nb / (median(ms, TRIALS) * 1e-3) / 1e9;
    cu_free(cu, a), cu_free(cu, b);
    int G = 8192;
    uint16_t *ga = cu_alloc(cu, (size_t)G * G * 2), *gb = cu_alloc(cu, (size_t)G * G * 2);
    uint16_t *gc = cu_alloc(cu, (size_t)G * G * 2);
    if (!ga || !gb || !gc) return die("gemm buffers");
    cu_fill_uniform_bf16(cu, ga, (size_t)G * G, 2, 1.0f);
    cu_fill_uniform_bf16(cu, gb, (size_t)G * G, 3, 1.0f);
    for (int i = 0; i < 3; i++) cu_gemm_bf16(cu, ga, G, G, G, gb, G, gc, G);
    for (int i = 0; i < TRIALS; i++) {
        cu_timer_record(cu, t0);
        cu_gemm_bf16(cu, ga, G, G, G, gb, G, gc, G);
        cu_timer_record(cu, t1);
        cu_sync(cu);
        ms[i] = cu_timer_ms(t0, t1);
    }
    double peak = 2.0 * G * G * (double)G / (median(ms, TRIALS) * 1e-3) / 1e12;
    cu_free(cu, ga), cu_free(cu, gb), cu_free(cu, gc);
    if (cu_sync(cu)) return die("ceilings");
    printf("{\"device\":\"%s\",\"copy_GBps\":%.0f,\"gemm_bf16_TFLOPs\":%.1f}\n", cu_device_name(cu), copy_gbps, peak);

    /* 2. decode matmuls */
    const Shape shapes[] = {{"qkv 4096->6144", 4096, 6144, 0},
                            {"o 4096->4096", 4096, 4096, 0},
                            {"gate|up 4096->28672", 4096, 28672, 0},
                            {"down 14336->4096", 14336, 4096, 0},
                            {"lm head 4096->128256 f32", 4096, 128256, 1}};
    const int ns[] = {1, 2, 4, 8};
    /* kernels: cuBLASLt (layout 0), then the mma gemv layouts (split
     * chosen), then the row-stream layouts (R, U, KS; +pdl: launched as
     * programmatic dependents, so each call's weight loads start as the
     * call before it ends) */
    const int lay[] = {0, 1, CU_GEMV_PREFETCH | 4, CU_GEMV_STAGED, CU_GR(1, 8, 1), CU_GR(2, 8, 1), CU_GR(4, 4, 1),
                       CU_GR(1, 8, 2), CU_GR(2, 8, 2), CU_GR(2, 4, 4), CU_GR(2, 8, 1) | CU_GR_PDL,
                       CU_GR(1, 8, 1) | CU_GR_PDL, CU_GR(1, 8, 2) | CU_GR_PDL};
    const char *lname[] = {"cuBLASLt", "v1", "v4+pf", "staged", "r1u8", "r2u8", "r4u4", "r1u8k2", "r2u8k2",
                           "r2u4k4", "r2u8+P", "r1u8+P", "r1u8k2+P"};
    const int lwhich[] = {0, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3};
    const int slay[] = {1, 4, CU_GEMV_PREFETCH | 1}; /* n = 1, every split */
    enum { NS = sizeof shapes / sizeof shapes[0], NN = sizeof ns / sizeof ns[0], NK = sizeof lay / sizeof lay[0] };
    float res[NS][NN][NK], spl[NS][3][4], f8[NS][2];
    uint16_t *x = cu_alloc(cu, (size_t)8 * 14336 * 2);
    float *y = cu_alloc(cu, (size_t)8 * 128256 * 4);
    if (!x || !y) return die("matmul buffers");
    cu_fill_uniform_bf16(cu, x, (size_t)8 * 14336, 5, 1.0f);
    for (int si = 0; si < NS; si++) {
        const Shape *s = &shapes[si];
        size_t wb = (size_t)s->in * s->out * 2;
        int nw = (int)((400u << 20) / wb) + 1; /* copies: > 400 MB together, well past L2 */
        if (nw > REPS) nw = REPS;
        uint16_t *w[REPS];
        for (int i = 0; i < nw; i++) {
            w[i] = cu_alloc(cu, wb);
            if (!w[i]) return die("weights");
            cu_fill_uniform_bf16(cu, w[i], wb / 2, 100 + (uint64_t)i, 0.05f);
        }
        for (int ni = 0; ni < NN; ni++) {
            for (int k = 0; k < NK; k++) {
                int vec = lay[k];
                float m = time_mm(lwhich[k], s, ns[ni], w, nw, x, y, 0, vec);
                if (m < 0) return die(s->name);
                res[si][ni][k] = m;
                double gbps = wb / (m * 1e-3) / 1e9;
                printf("{\"bench\":\"decode_matmul\",\"shape\":\"%s\",\"n\":%d,\"kernel\":\"%s\",\"layout\":%d,"
                       "\"us\":%.2f,\"GBps\":%.0f,\"frac_copy\":%.3f}\n",
                       s->name, ns[ni], lname[k], vec, m * 1e3, gbps, gbps / copy_gbps);
            }
        }
        /* fp8 weights (cu_gemv_fp8) at n = 1 and 8, beside cuBLASLt on bf16 */
        for (int i = 0; i < nw; i++) {
            g_q[i] = cu_alloc(cu, wb / 2);
            g_sc[i] = cu_alloc(cu, (size_t)s->out * 4);
            if (!g_q[i] || !g_sc[i]) return die("fp8 weights");
            cu_quant_fp8(cu, w[i], s->in, s->out, g_q[i], g_sc[i]);
        }
        for (int ni = 0; ni < 2; ni++) {
            int nn = ni ? 8 : 1;
            float m = time_mm(2, s, nn, w, nw, x, y, 0, 0);
            if (m < 0) return die(s->name);
            f8[si][ni] = m;
            double gbps = wb / 2 / (m * 1e-3) / 1e9;
            printf("{\"bench\":\"decode_matmul\",\"shape\":\"%s\",\"n\":%d,\"kernel\":\"gemv_fp8\",\"us\":%.2f,"
                   "\"GBps_fp8\":%.0f,\"frac_copy\":%.3f,\"speedup_vs_cublaslt_bf16\":%.2f}\n",
                   s->name, nn, m * 1e3, gbps, gbps / copy_gbps, res[si][ni ? 3 : 0][0] / m);
        }
        for (int i = 0; i < nw; i++) cu_free(cu, g_q[i]), cu_free(cu, g_sc[i]);
        /* n = 1: every split for each vec */
        for (int vi = 0; vi < 3; vi++)
            for (int sp = 0; sp < 4; sp++) {
                float m = time_mm(1, s, 1, w, nw, x, y, 1 << sp, slay[vi]);
                if (m < 0) return die(s->name);
                spl[si][vi][sp] = m;
            }
        for (int i = 0; i < nw; i++) cu_free(cu, w[i]);
    }
    cu_free(cu, x), cu_free(cu, y);

    /* 2b. the layer chain: cuBLASLt, the best row-stream layout of each
     * shape at n = 1 (by the table above, without PDL), the same with PDL */
    int best[NS];
    for (int si = 0; si < NS; si++) {
        int bk = -1;
        for (int k = 0; k < NK; k++)
            if (lwhich[k] == 3 && !(lay[k] & CU_GR_PDL) && (bk < 0 || res[si][0][k] < res[si][0][bk])) bk = k;
        best[si] = lay[bk];
    }
    float chain[4] = {0};
    {
        uint16_t *lw[CHAIN_SETS][4];
        for (int l = 0; l < CHAIN_SETS; l++)
            for (int si = 0; si < 4; si++) {
                size_t nel = (size_t)shapes[si].in * shapes[si].out;
                lw[l][si] = cu_alloc(cu, nel * 2);
                if (!lw[l][si]) return die("chain weights");
                cu_fill_uniform_bf16(cu, lw[l][si], nel, 200 + (uint64_t)(l * 4 + si), 0.02f);
            }
        uint16_t *head = cu_alloc(cu, (size_t)4096 * 128256 * 2), *nw = cu_alloc(cu, 4096 * 2);
        uint16_t *h = cu_alloc(cu, 4096 * 2), *d = cu_alloc(cu, 4096 * 2), *xb = cu_alloc(cu, 4096 * 2);
        uint16_t *qkv = cu_alloc(cu, 6144 * 2), *gu = cu_alloc(cu, 2 * 14336 * 2), *act = cu_alloc(cu, 14336 * 2);
        float *logits = cu_alloc(cu, 128256 * 4);
        if (!head || !nw || !h || !d || !xb || !qkv || !gu || !act || !logits) return die("chain buffers");
        cu_fill_uniform_bf16(cu, head, (size_t)4096 * 128256, 300, 0.02f);
        cu_fill_uniform_bf16(cu, nw, 4096, 301, 1.0f);
        cu_fill_uniform_bf16(cu, h, 4096, 302, 1.0f);
        for (int kind = 0; kind < 4; kind++) {
            chain[kind] = bench_chain(kind, best, (uint16_t *const (*)[4])lw, head, nw, h, d, xb, qkv, gu, act,
                                      logits);
            if (chain[kind] < 0) return die("layer chain");
            double sum = 0;
            for (int si = 0; si < NS; si++) {
                int k = 0;
                if (kind)
                    while (lay[k] != best[si]) k++;
                sum += res[si][0][k] * (si < 4 ? CHAIN_LAYERS : 1); /* kind 3: the unfused gate|up's time */
            }
            printf("{\"bench\":\"layer_chain\",\"kernel\":\"%s\",\"ms\":%.3f,\"sum_of_matmuls_ms\":%.3f,"
                   "\"weights_floor_ms\":%.3f}\n",
                   kind == 0 ? "cuBLASLt" : kind == 1 ? "rows best" : kind == 2 ? "rows best+pdl"
                                                                        : "rows best+pdl, swiglu fused",
                   chain[kind], sum,
                   (CHAIN_LAYERS * 436207616.0 + 1050673152.0) / copy_gbps / 1e6);
        }
        for (int l = 0; l < CHAIN_SETS; l++)
            for (int si = 0; si < 4; si++) cu_free(cu, lw[l][si]);
        cu_free(cu, head), cu_free(cu, nw), cu_free(cu, h), cu_free(cu, d), cu_free(cu, xb), cu_free(cu, qkv);
        cu_free(cu, gu), cu_free(cu, act), cu_free(cu, logits);
    }
    fflush(stdout);

    /* 2c. gate|up + swiglu at n = 1: the table's gate|up layout (r1u8+pdl)
     * then swiglu, against the fused kernel in several layouts; alone, then
     * with the down GEMV (r1u8+pdl) behind each */
    const int gu_cfg = CU_GR(1, 8, 1) | CU_GR_PDL, dn_cfg = CU_GR(1, 8, 1);
    const int gmode[] = {0, 1, 1, 1, 1, 1};
    const int gfcfg[] = {0, CU_GR(2, 8, 1) | CU_GR_PDL | CU_GR_TRIGGER, CU_GR(2, 8, 1) | CU_GR_PDL,
                         CU_GR(2, 4, 1) | CU_GR_PDL | CU_GR_TRIGGER, CU_GR(4, 4, 1) | CU_GR_PDL | CU_GR_TRIGGER,
                         CU_GR(2, 8, 2) | CU_GR_PDL | CU_GR_TRIGGER};
    const char *gname[] = {"rows r1u8+P then swiglu", "fused r2u8+P+T", "fused r2u8+P", "fused r2u4+P+T",
                           "fused r4u4+P+T", "fused r2u8k2+P+T"};
    enum { NG = sizeof gmode / sizeof gmode[0] };
    float gus[NG][2], gus_n[2][2][2]; /* n = 2, 4: [cuBLASLt + swiglu, fused r2u4+P+T][alone, with down] */
    {
        const size_t gub = (size_t)4096 * 28672 * 2, dnb = (size_t)14336 * 4096 * 2;
        enum { NGU = 2, NDN = 4 }; /* > 400 MB of each, past L2 */
        uint16_t *wgu[NGU], *wdn[NDN];
        for (int i = 0; i < NGU; i++) {
            wgu[i] = cu_alloc(cu, gub);
            if (!wgu[i]) return die("gate|up weights");
            cu_fill_uniform_bf16(cu, wgu[i], gub / 2, 400 + (uint64_t)i, 0.02f);
        }
        for (int i = 0; i < NDN; i++) {
            wdn[i] = cu_alloc(cu, dnb);
            if (!wdn[i]) return die("down weights");
            cu_fill_uniform_bf16(cu, wdn[i], dnb / 2, 410 + (uint64_t)i, 0.02f);
        }
        uint16_t *gx = cu_alloc(cu, 4 * 4096 * 2), *ggu = cu_alloc(cu, 4 * 2 * 14336 * 2);
        uint16_t *gact = cu_alloc(cu, 4 * 14336 * 2), *gact2 = cu_alloc(cu, 14336 * 2), *gy = cu_alloc(cu, 4 * 4096 * 2);
        if (!gx || !ggu || !gact || !gact2 || !gy) return die("gate|up buffers");
        cu_fill_uniform_bf16(cu, gx, 4 * 4096, 420, 1.0f);
        for (int k = 0; k < NG; k++)
            for (int wd = 0; wd < 2; wd++) {
                gus[k][wd] = time_gus(gmode[k], 1, gu_cfg, gfcfg[k], wd, dn_cfg, wgu, NGU, wdn, NDN, gx, ggu, gact, gy);
                if (gus[k][wd] < 0) return die("gate|up + swiglu");
                printf("{\"bench\":\"gate_up_swiglu\",\"n\":1,\"kernel\":\"%s\",\"with_down\":%d,\"us\":%.2f,"
                       "\"us_saved\":%.2f}\n",
                       gname[k], wd, gus[k][wd] * 1e3, (gus[0][wd] - gus[k][wd]) * 1e3);
            }
        /* n = 2, 4: what the table runs (cuBLASLt, max_n 1 for gate|up)
         * against the fused kernel, which would need the table's gate|up
         * max_n raised (and so the unfused path's matmul changed with it) */
        for (int ni = 0; ni < 2; ni++)
            for (int k = 0; k < 2; k++)
                for (int wd = 0; wd < 2; wd++) {
                    int n = ni ? 4 : 2;
                    float m = time_gus(k ? 1 : 2, n, 0, CU_GR(2, 4, 1) | CU_GR_PDL | CU_GR_TRIGGER, wd, dn_cfg, wgu,
                                       NGU, wdn, NDN, gx, ggu, gact, gy);
                    if (m < 0) return die("gate|up + swiglu, n > 1");
                    gus_n[ni][k][wd] = m;
                    printf("{\"bench\":\"gate_up_swiglu\",\"n\":%d,\"kernel\":\"%s\",\"with_down\":%d,\"us\":%.2f}\n", n,
                           k ? "fused r2u4+P+T" : "cuBLASLt then swiglu", wd, m * 1e3);
                }
        /* the bits: fused == unfused on these weights (test_cuda_ops checks it everywhere) */
        cu_gemv_rows(cu, gx, 4096, 1, 4096, wgu[0], 2 * 14336, NULL, ggu, 2 * 14336, 0, gu_cfg);
        cu_swiglu(cu, ggu, 1, 14336, gact);
        cu_gemv_rows_swiglu(cu, gx, 4096, 1, 4096, wgu[0], 14336, gact2, 14336, gfcfg[1]);
        uint16_t *ha = malloc(14336 * 2), *hb = malloc(14336 * 2);
        cu_download(cu, ha, gact, 14336 * 2);
        cu_download(cu, hb, gact2, 14336 * 2);
        printf("{\"bench\":\"gate_up_swiglu\",\"fused_bit_exact\":%d}\n", !memcmp(ha, hb, 14336 * 2));
        free(ha), free(hb);
        for (int i = 0; i < NGU; i++) cu_free(cu, wgu[i]);
        for (int i = 0; i < NDN; i++) cu_free(cu, wdn[i]);
        cu_free(cu, gx), cu_free(cu, ggu), cu_free(cu, gact), cu_free(cu, gact2), cu_free(cu, gy);
    }
    fflush(stdout);

    /* 3. prefill attention */
    double pa[2][5] = {{0}};
    if (bench_prefill("8b 32/8 hd128", 32, 8, 128, 4096, pa[0])) return 1;
    if (bench_prefill("1b 32/8 hd64", 32, 8, 64, 4096, pa[1])) return 1;

    printf("\n%s: copy %.0f GB/s, bf16 GEMM %.1f TFLOP/s\n", cu_device_name(cu), copy_gbps, peak);
    printf("%-26s %3s", "decode matmul: us", "n");
    for (int k = 0; k < NK; k++) printf(" %8s", lname[k]);
    printf(" | fraction of copy\n");
    fflush(stdout);
    for (int si = 0; si < NS; si++)
        for (int ni = 0; ni < NN; ni++) {
            double wb = (double)shapes[si].in * shapes[si].out * 2;
            float *r = res[si][ni];
            printf("%-26s %3d", shapes[si].name, ns[ni]);
            for (int k = 0; k < NK; k++) printf(" %8.2f", r[k] * 1e3);
            printf(" |");
            for (int k = 0; k < NK; k++) printf(" %5.3f", wb / (r[k] * 1e-3) / 1e9 / copy_gbps);
            printf("\n");
        }
    printf("fp8 weights (cu_gemv_fp8), us and fraction of copy for the fp8 bytes, speedup over cuBLASLt bf16:\n");
    for (int si = 0; si < NS; si++) {
        double wb = (double)shapes[si].in * shapes[si].out;
        printf("  %-26s n=1 %8.2f (%.3f, x%.2f)  n=8 %8.2f (%.3f, x%.2f)\n", shapes[si].name, f8[si][0] * 1e3,
               wb / (f8[si][0] * 1e-3) / 1e9 / copy_gbps, res[si][0][0] / f8[si][0], f8[si][1] * 1e3,
               wb / (f8[si][1] * 1e-3) / 1e9 / copy_gbps, res[si][3][0] / f8[si][1]);
    }
    printf("gemv n=1, us by split 1/2/4/8:\n");
    for (int si = 0; si < NS; si++)
        for (int vi = 0; vi < 3; vi++)
            printf("  %-26s layout %2d: %8.2f %8.2f %8.2f %8.2f\n", shapes[si].name, slay[vi], spl[si][vi][0] * 1e3,
                   spl[si][vi][1] * 1e3, spl[si][vi][2] * 1e3, spl[si][vi][3] * 1e3);
    printf("layer chain (32 layers + head, n = 1, ms): cuBLASLt %.3f | rows best %.3f | rows best+pdl %.3f | "
           "+ swiglu fused %.3f; weights at the copy roofline %.3f\n",
           chain[0], chain[1], chain[2], chain[3], (CHAIN_LAYERS * 436207616.0 + 1050673152.0) / copy_gbps / 1e6);
    printf("gate|up + swiglu, n = 1 (us a call; alone | with down r1u8+P):\n");
    for (int k = 0; k < NG; k++)
        printf("  %-26s %8.2f | %8.2f\n", gname[k], gus[k][0] * 1e3, gus[k][1] * 1e3);
    for (int ni = 0; ni < 2; ni++)
        printf("  n = %d: cuBLASLt then swiglu %8.2f | %8.2f; fused r2u4+P+T %8.2f | %8.2f\n", ni ? 4 : 2,
               gus_n[ni][0][0] * 1e3, gus_n[ni][0][1] * 1e3, gus_n[ni][1][0] * 1e3, gus_n[ni][1][1] * 1e3);
    printf("rows best cfg per shape:");
    for (int si = 0; si < NS; si++) printf(" %s=%#x", shapes[si].name, best[si]);
    printf("\n");
    for (int i = 0; i < 2; i++)
        printf("prefill attention 4096, %s (ms): wmma %.3f | mma1 %.3f mma2 %.3f | exact exp2: mma1 %.3f mma2 %.3f\n",
               i ? "1b hd64" : "8b hd128", pa[i][0], pa[i][1], pa[i][2], pa[i][3], pa[i][4]);
    cu_timer_free(t0), cu_timer_free(t1);
    cu_ctx_free(cu);
    return 0;
}
