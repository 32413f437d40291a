/*
 * kernels/cuda/cuda_backend.c — the CUDA KBackend: kernels/backend.h's
 * tables filled with kernels/cuda/cuda_ops.h.
 *
 *   KBackend (buffer ops: device memory, one stream) ──dev──► KDevOps
 *       │                                                   (bf16 activations,
 *       └─ host f32 ops: refused by name                     flat index arrays)
 *
 * The host ops of K_OPS take host f32 activations, which this backend never
 * holds: each one records an error naming itself (model.c runs the device
 * table whenever KBackend.dev is set, so only a caller that ignores dev meets
 * it). Attention owns a fixed work space for split-K decode; the split is
 * chosen per call from the rows and the longest context.
 *
 * fp8 e4m3 (an option): F8_E4M3 weights go to cu_gemv_fp8 up to
 * CU_GEMV_MAX_N rows, else to per-token activation quantization and
 * cuBLASLt's fp8 GEMM (cuda_fp8.h; SGL_CUDA_FP8_GEMM=auto|outer|epilogue);
 * KDevAttn.kv_fp8 pools to the fp8 split-K decode and mma prefill kernels
 * (the row and WMMA kernels refuse them by name).
 *
 * KDevOps.attention_rope (SGL_CUDA_FUSE_ROPE=1, off by default until a GPU
 * run has checked it): decode rows take RoPE and the KV write inside the
 * split-K decode kernel (cu_attention_decode_rope), one kernel a layer less.
 * KDevOps.matmul_swiglu (SGL_CUDA_FUSE_SWIGLU=1, off by default): gate|up
 * with swiglu in the row-stream GEMV's epilogue where that GEMV is chosen,
 * else the two ops (d_matmul_swiglu).
 *
 * Threads: one host thread at a time (the engine thread), as CuCtx.
 */
#include "kernels/cuda/cuda_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_decode.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_sample.h"
#include "kernels/cuda/cuda_gemv.h"
#include "kernels/cuda/cuda_prefill.h"
#include "kernels/cuda/cuda_fp8.h"
#include "kernels/cuda/cuda_overlap.h"

enum { ATTN_WS_BYTES = 32 << 20, ATTN_MIN_CHUNK = 128, DEC_COUNTERS = 1 << 18 };
enum { GEMV_MAX_N = 0, GEMV_MAX_MB = 64 };

typedef struct {
    KBackend be;
    KDevOps dev;
    CuCtx *cu;
    int device;                 /* the GPU (bind makes it current) */
    float *attn_ws;
    int *dec_counters;          /* DEC_COUNTERS zeros for the split-K kernel's merge */
    int n_sm;
    int gemv_max_n;             /* SGL_CUDA_GEMV_MAX_N: matmuls of up to this many rows by cuda_gemv.cu (0: none) */
    size_t gemv_max_bytes;      /* SGL_CUDA_GEMV_MAX_MB: ... whose weight matrix is at most this large */
    int gemv_mode;              /* GEMV_AUTO, GEMV_OFF, GEMV_MMA (gemv_max_n above), GEMV_FORCE (gemv_cfg) */
    int gemv_cfg;               /* GEMV_FORCE: the row-stream layout, CU_GR(...) [| CU_GR_PDL] */
    int fuse_swiglu;            /* SGL_CUDA_FUSE_SWIGLU: FUSE_OFF, FUSE_ON, FUSE_NO_TRIGGER (d_matmul_swiglu) */
    int prefill_kernel;         /* SGL_CUDA_PREFILL: -1 the WMMA kernel, else mma: heads a block (0 auto, 1, 2)
                                 * in bits 0-1, cu_attention_prefill_mma's flags above them */
    /* decode rows (attention without tiles): the split-K kernel
     * (cuda_decode.h) aiming at dec_blocks blocks per SM, chunks of at least
     * dec_min_chunk keys; or, dec_row_kernel, cu_attention (the row kernel,
     * kept as the baseline: SGL_CUDA_DECODE=row) */
    int dec_row_kernel, dec_blocks, dec_min_chunk, dec_merge_kernel;
    char name[96];
    char refused[160];
    /* fp8 e4m3 (ModelOptions.quantization / kv_cache_dtype): the GEMM's
     * plans (SGL_CUDA_FP8_GEMM=auto|outer|epilogue), and the per-token
     * quantized activations of fp8 matmuls of more than CU_GEMV_MAX_N rows
     * (fp8_reserve sizes them: fp8_rows x fp8_in bytes, then fp8_rows f32
     * scales) */
    CuFp8 *fp8;
    uint8_t *fp8_xq;
    float *fp8_sx;
    int fp8_rows, fp8_in;
    char no_fp8[96];
} Cuda;

/* ---- host f32 ops: not this backend's ---- */

static void refuse(void *ctx, const char *op)
{
    Cuda *c = ctx;
    if (!c->refused[0])
        snprintf(c->refused, sizeof c->refused, "cuda backend: op '%s' takes host f32 activations; use KBackend.dev",
                 op);
}

#define HOST_OPS(X) X(matmul) X(matmul_multi) X(embed) X(rmsnorm) X(rope) X(swiglu) X(add) X(softmax) \
    X(kv_store) X(attention)

static void h_matmul(void *ctx, const KTensor *w, const float *bias, const float *x, int n, float *y)
{
    refuse(ctx, "matmul");
}
static void h_matmul_multi(void *ctx, int count, const KTensor *const *w, const float *const *bias, const float *x,
                           int n, float *const *y)
{
    refuse(ctx, "matmul_multi");
}
static void h_embed(void *ctx, const KTensor *e, const int32_t *tokens, int n, float *out) { refuse(ctx, "embed"); }
static void h_rmsnorm(void *ctx, const float *x, const float *w, float *y, int n, int dim, float eps)
{
    refuse(ctx, "rmsnorm");
}
static void h_rope(void *ctx, float *x, int n, int n_heads, int head_dim, int rot_dim, const float *cs,
                   KRopeStyle style)
{
    refuse(ctx, "rope");
}
static void h_swiglu(void *ctx, const float *gate, const float *up, float *out, size_t count)
{
    refuse(ctx, "swiglu");
}
static void h_add(void *ctx, float *y, const float *x, size_t count) { refuse(ctx, "add"); }
static void h_softmax(void *ctx, float *x, int n, int dim) { refuse(ctx, "softmax"); }
static void h_kv_store(void *ctx, void *k_pool, void *v_pool, KDtype kv_dtype, int kv_dim, const float *k,
                       const float *v, const int32_t *slots, int n)
{
    refuse(ctx, "kv_store");
}
static void h_attention(void *ctx, const KAttnArgs *a) { refuse(ctx, "attention"); }

/* ---- buffers ---- */

static void *b_buf_alloc(void *ctx, size_t bytes)
{
    Cuda *c = ctx;
    void *p = cu_alloc(c->cu, bytes);
    if (!p) (void)cu_error(c->cu); /* NULL is the answer, not a failed op */
    return p;
}
static void b_buf_free(void *ctx, void *p) { cu_free(((Cuda *)ctx)->cu, p); }
static void b_upload(void *ctx, void *dst, const void *src, size_t bytes) { cu_upload(((Cuda *)ctx)->cu, dst, src, bytes); }
static void b_download(void *ctx, void *dst, const void *src, size_t bytes)
{
    cu_download(((Cuda *)ctx)->cu, dst, src, bytes);
}
static int b_sync(void *ctx) { return cu_sync(((Cuda *)ctx)->cu); }

static const char *b_error(void *ctx)
{
    Cuda *c = ctx;
    static __thread char last[160];
    if (c->refused[0]) {
        memcpy(last, c->refused, sizeof c->refused);
        c->refused[0] = 0;
        (void)cu_error(c->cu);
        return last;
    }
    return cu_error(c->cu);
}

static void b_destroy(void *ctx)
{
    Cuda *c = ctx;
    cu_free(c->cu, c->attn_ws);
    cu_free(c->cu, c->dec_counters);
    cu_free(c->cu, c->fp8_xq);
    cu_fp8_free(c->fp8);
    cu_ctx_free(c->cu);
    free(c);
}

/* ---- device ops ---- */

static void d_gather(void *ctx, const void *table, int dim, const int32_t *idx, int n, void *out)
{
    cu_embed(((Cuda *)ctx)->cu, table, dim, idx, n, out);
}

static void d_add_rmsnorm(void *ctx, void *h, const void *delta, const void *w, void *y, int n, int dim, float eps)
{
    cu_add_rmsnorm(((Cuda *)ctx)->cu, h, delta, w, y, n, dim, eps);
}

static int bf16_matrix(Cuda *c, const KTensor *w)
{
    if (w->dtype == K_DTYPE_BF16) return 0;
    if (!c->refused[0])
        snprintf(c->refused, sizeof c->refused, "cuda backend: matmul weights must be BF16, not %s",
                 k_dtype_name(w->dtype));
    return -1;
}

/* ---- fp8 e4m3 (an option: kernels/backend.h "fp8 e4m3") ---- */

/* n <= CU_GEMV_MAX_N rows: cu_gemv_fp8 on x as it is; more: x quantized per
 * token into the reserved buffer, then cuBLASLt's fp8 GEMM (cuda_fp8.h) */
static void fp8_matmul(Cuda *c, const KTensor *w, const void *bias, const void *x, int ldx, int n, void *y, int ldy)
{
    int in = (int)w->ne[0], out = (int)w->ne[1];
    if (n <= CU_GEMV_MAX_N) {
        cu_gemv_fp8(c->cu, x, ldx, n, in, w->data, w->scale, out, bias, y, ldy); /* bias fused */
        return;
    }
    if (n > c->fp8_rows || in > c->fp8_in) {
        if (!c->refused[0])
            snprintf(c->refused, sizeof c->refused, "cuda backend: fp8 matmul of %d x %d beyond fp8_reserve's %d x %d",
                     n, in, c->fp8_rows, c->fp8_in);
        return;
    }
    cu_quant_rows_fp8(c->cu, x, ldx, n, in, c->fp8_xq, c->fp8_sx);
    cu_gemm_fp8(c->fp8, c->fp8_xq, c->fp8_sx, n, in, w->data, w->scale, out, y, ldy, NULL);
    if (bias) cu_add_bias(c->cu, y, ldy, n, out, bias);
}

static int d_fp8_reserve(void *ctx, int rows, int in)
{
    Cuda *c = ctx;
    if (c->no_fp8[0]) {
        if (!c->refused[0]) snprintf(c->refused, sizeof c->refused, "cuda backend: %s", c->no_fp8);
        return -1;
    }
    if (rows <= c->fp8_rows && in <= c->fp8_in) return 0;
    if (rows < c->fp8_rows) rows = c->fp8_rows;
    if (in < c->fp8_in) in = c->fp8_in;
    size_t qb = ((size_t)rows * in + 255) & ~(size_t)255;
    cu_free(c->cu, c->fp8_xq);
    c->fp8_xq = cu_alloc(c->cu, qb + (size_t)rows * sizeof(float));
    if (!c->fp8_xq) {
        c->fp8_rows = c->fp8_in = 0;
        return -1; /* cu_alloc recorded why */
    }
    c->fp8_sx = (float *)(void *)(c->fp8_xq + qb);
    c->fp8_rows = rows;
    c->fp8_in = in;
    return 0;
}

static void d_quant_fp8(void *ctx, const void *w, int in, int out, void *q, float *scale)
{
    Cuda *c = ctx;
    if (c->no_fp8[0]) {
        if (!c->refused[0]) snprintf(c->refused, sizeof c->refused, "cuda backend: %s", c->no_fp8);
        return;
    }
    cu_quant_fp8(c->cu, w, in, out, q, scale);
}

static void d_rope_kv_fp8(void *ctx, void *qkv, int n, int n_head, int n_head_kv, int head_dim, int rot_dim,
                          const float *inv_freq, KRopeStyle style, const int32_t *pos, const int32_t *wslot,
                          void *k_pool, void *v_pool)
{
    cu_rope_kv_write_fp8(((Cuda *)ctx)->cu, qkv, n, n_head, n_head_kv, head_dim, rot_dim, inv_freq,
                         style == K_ROPE_NEOX, pos, wslot, k_pool, v_pool);
}
/* ---- small-batch matmuls: the row-stream GEMV or cuBLASLt, per shape ----
 *
 * The table: (in, out) of the Llama-3-8B shape's decode matmuls, the layout
 * bench_kernels measured fastest at n = 1 on an H100 (1980 MHz, copy 3014
 * GB/s; results/h100-gemv-v1-kernels.log), launched as a programmatic
 * dependent (engine batch-1 decode 159.4 -> 173.2 tok/s with r1u8+pdl for
 * all, h100-gemv-v1-engine.log), and the most rows for which it still beat
 * cuBLASLt there (n > 1 runs (2, 4) at KS 1, (1, 8) at KS 2):
 *
 *   shape             n=1 us: cuBLASLt -> rows (fraction of copy)   max_n
 *   q|k|v  4096x6144    19.73 -> 17.77 r2u8k2 (0.940)               2 (19.12 vs 19.73)
 *   o      4096x4096    15.06 -> 12.53 r1u8+pdl (0.888)             4 (14.24 vs 15.08)
 *   gate|up 4096x28672  76.84 -> 75.04 r1u8+pdl (1.039)             1 (n=2: 78.0 vs 77.1)
 *   down   14336x4096   42.00 -> 38.95 r1u8+pdl (1.000)             1 (n=2: 42.5 vs 42.0)
 *   head   4096x128256  361.7 -> 329.3 r1u8+pdl (1.059, f32 out)    4 (344.8 vs 364.2)
 *
 * (a fraction above 1: a read-only stream beats the copy's read+write).
 * Shapes not in it follow the rule after it. KS is a function of the shape
 * alone, so a row's sums do not change with n. */
typedef struct {
    int in, out, cfg, max_n;
} GemvPick;

static const GemvPick GEMV_TABLE[] = {
    {4096, 6144, CU_GR(2, 8, 2) | CU_GR_PDL, 2},   /* q|k|v */
    {4096, 4096, CU_GR(1, 8, 1) | CU_GR_PDL, 4},   /* o */
    {4096, 28672, CU_GR(1, 8, 1) | CU_GR_PDL, 1},  /* gate|up */
    {14336, 4096, CU_GR(1, 8, 1) | CU_GR_PDL, 1},  /* down */
    {4096, 128256, CU_GR(1, 8, 1) | CU_GR_PDL, 4}, /* lm head (f32 out) */
};

enum { GEMV_AUTO, GEMV_OFF, GEMV_MMA, GEMV_FORCE };

/* The row-stream layout for n rows of this shape, or 0: cuBLASLt. */
static int gemv_pick(const Cuda *c, int n, int in, int out, int ldx, const void *x, const void *w)
{
    if (c->gemv_mode == GEMV_OFF || c->gemv_mode == GEMV_MMA || !cu_gemv_fits(n, in, ldx, x, w)) return 0;
    if (c->gemv_mode == GEMV_FORCE) return c->gemv_cfg;
    for (size_t i = 0; i < sizeof GEMV_TABLE / sizeof GEMV_TABLE[0]; i++)
        if (GEMV_TABLE[i].in == in && GEMV_TABLE[i].out == out)
            return n <= GEMV_TABLE[i].max_n ? GEMV_TABLE[i].cfg : 0;
    /* elsewhere: one row a warp for a single row where the matrix streams
     * long enough to pay (>= 16 MB: every table shape won at n = 1) */
    return n == 1 && (size_t)in * out * 2 >= ((size_t)16 << 20) ? CU_GR(1, 8, 1) | CU_GR_PDL : 0;
}

static int set_gemv(Cuda *c, const char *spec)
{
    int r, u, ks, n;
    char pdl[8] = "";
    if (!strcmp(spec, "auto")) c->gemv_mode = GEMV_AUTO;
    else if (!strcmp(spec, "off")) c->gemv_mode = GEMV_OFF;
    else if (!strcmp(spec, "mma")) c->gemv_mode = GEMV_MMA, c->gemv_max_n = CU_GEMV_MAX_N;
    else if ((n = sscanf(spec, "rows:%d:%d:%d:%7s", &r, &u, &ks, pdl)) >= 3 && (r == 1 || r == 2 || r == 4) &&
             (u == 4 || u == 8) && (ks == 1 || ks == 2 || ks == 4) && (n == 3 || !strcmp(pdl, "pdl"))) {
        c->gemv_mode = GEMV_FORCE;
        c->gemv_cfg = CU_GR(r, u, ks) | (n == 4 ? CU_GR_PDL : 0);
    } else
        return -1;
    if (c->gemv_mode != GEMV_MMA) c->gemv_max_n = 0;
    return 0;
}

int cuda_backend_set_gemv(KBackend *b, const char *spec) { return set_gemv(b->ctx, spec); }

static void d_matmul(void *ctx, const KTensor *w, const void *bias, const void *x, int ldx, int n, void *y, int ldy)
{
    Cuda *c = ctx;
    if (n > 0 && w->dtype == K_DTYPE_F8_E4M3 && w->scale) {
        fp8_matmul(c, w, bias, x, ldx, n, y, ldy);
        return;
    }
    if (n <= 0 || bf16_matrix(c, w)) return;
    int in = (int)w->ne[0], out = (int)w->ne[1];
    int cfg = gemv_pick(c, n, in, out, ldx, x, w->data);
    if (cfg) {
        cu_gemv_rows(c->cu, x, ldx, n, in, w->data, out, bias, y, ldy, 0, cfg); /* bias fused */
        return;
    }
    if (n <= c->gemv_max_n && (size_t)in * out * 2 <= c->gemv_max_bytes && cu_gemv_fits(n, in, ldx, x, w->data)) {
        cu_gemv_bf16(c->cu, x, ldx, n, in, w->data, out, bias, y, ldy); /* bias fused */
        return;
    }
    cu_gemm_bf16(c->cu, x, ldx, n, in, w->data, out, y, ldy);
    if (bias) cu_add_bias(c->cu, y, ldy, n, out, bias);
}

/* ---- gate|up + swiglu in one kernel (KDevOps.matmul_swiglu) ----
 *
 * Where gemv_pick sends the gate|up matmul to the row-stream GEMV (bf16 W
 * of 2ff rows, n within the table's max_n: n = 1 on the Llama-3-8B shape),
 * cu_gemv_rows_swiglu at the chosen layout's U and KS with its PDL bit: the
 * same sums, so act has the bits d_matmul + d_swiglu would give, without
 * the gu round trip and the swiglu kernel. Elsewhere (cuBLASLt's n, fp8
 * weights, GEMV off) the two ops themselves. Set in the table only when
 * SGL_CUDA_FUSE_SWIGLU is on (read at creation, or
 * cuda_backend_set_fuse_swiglu; off by default until a GPU run has shown
 * the bits and the gain). */
enum { FUSE_OFF, FUSE_ON, FUSE_NO_TRIGGER };

static void d_swiglu(void *ctx, const void *gu, int n, int ff, void *out);

static void d_matmul_swiglu(void *ctx, const KTensor *w, const void *x, int ldx, int n, int ff, void *gu, void *act)
{
    Cuda *c = ctx;
    int in = (int)w->ne[0], cfg = 0;
    if (n > 0 && w->dtype == K_DTYPE_BF16 && w->ne[1] == 2 * (int64_t)ff && ff % 8 == 0) /* cu_swiglu's rule */
        cfg = gemv_pick(c, n, in, 2 * ff, ldx, x, w->data);
    if (cfg) {
        int fcfg = CU_GR(2, (cfg >> 4) & 15, (cfg >> 8) & 15) | (cfg & CU_GR_PDL) |
                   (c->fuse_swiglu == FUSE_ON ? CU_GR_TRIGGER : 0);
        cu_gemv_rows_swiglu(c->cu, x, ldx, n, in, w->data, ff, act, ff, fcfg);
        return;
    }
    d_matmul(c, w, NULL, x, ldx, n, gu, 2 * ff);
    d_swiglu(c, gu, n, ff, act);
}

static int set_fuse_swiglu(Cuda *c, const char *spec)
{
    int m;
    if (!strcmp(spec, "0")) m = FUSE_OFF;
    else if (!strcmp(spec, "1")) m = FUSE_ON;
    else if (!strcmp(spec, "no-trigger")) m = FUSE_NO_TRIGGER;
    else return -1;
    c->fuse_swiglu = m;
    c->dev.matmul_swiglu = m != FUSE_OFF ? d_matmul_swiglu : NULL;
    return 0;
}

int cuda_backend_set_fuse_swiglu(KBackend *b, const char *spec) { return set_fuse_swiglu(b->ctx, spec); }

static void d_logits(void *ctx, const KTensor *w, const void *x, int n, float *y)
{
    Cuda *c = ctx;
    if (n <= 0 || bf16_matrix(c, w)) return;
    int in = (int)w->ne[0], out = (int)w->ne[1];
    int cfg = gemv_pick(c, n, in, out, in, x, w->data);
    if (cfg) {
        cu_gemv_rows(c->cu, x, in, n, in, w->data, out, NULL, y, out, 1, cfg);
        return;
    }
    if (n <= c->gemv_max_n && (size_t)in * out * 2 <= c->gemv_max_bytes && cu_gemv_fits(n, in, in, x, w->data)) {
        cu_gemv_bf16_f32(c->cu, x, in, n, in, w->data, out, y, out);
        return;
    }
    cu_gemm_bf16_f32(c->cu, x, in, n, in, w->data, out, y, out);
}

static void d_rope_kv(void *ctx, void *qkv, int n, int n_head, int n_head_kv, int head_dim, int rot_dim,
                      const float *inv_freq, KRopeStyle style, const int32_t *pos, const int32_t *wslot,
                      void *k_pool, void *v_pool)
{
    cu_rope_kv_write_f(((Cuda *)ctx)->cu, qkv, n, n_head, n_head_kv, head_dim, rot_dim, inv_freq,
                       style == K_ROPE_NEOX, pos, wslot, k_pool, v_pool);
}

/* The split-K decode kernel's chunk bound for n_rows rows: a function of
 * the launch's row count alone (never of max_len), so that a graph captured
 * for n_rows rows computes what the eager launch does. */
static int decode_max_split(const Cuda *c, int n_rows, int n_head, int n_head_kv, int head_dim)
{
    int pairs = n_rows * n_head_kv, want = c->dec_blocks * c->n_sm;
    int n = (want + pairs - 1) / pairs;
    if (n > 64) n = 64;
    if (n < 1) n = 1;
    while (n > 1 && cu_decode_ws_bytes(n_rows, n_head, head_dim, n) > ATTN_WS_BYTES) n--;
    return n;
}

static void d_attention(void *ctx, const KDevAttn *a)
{
    Cuda *c = ctx;
    if (a->n_rows <= 0) return;
    if (a->kv_fp8) { /* an fp8 pool: the split-K decode and mma prefill kernels only */
        if (a->n_tiles > 0 && c->prefill_kernel >= 0)
            cu_attention_prefill_mma_fp8(c->cu, a->q, a->ldq, a->n_head, a->n_head_kv, a->head_dim, a->scale,
                                         a->k_pool, a->v_pool, a->slots, a->tiles, a->n_tiles, a->out,
                                         c->prefill_kernel & 3, c->prefill_kernel >> 2);
        else if (a->n_tiles == 0 && !c->dec_row_kernel) {
            int ms = decode_max_split(c, a->n_rows, a->n_head, a->n_head_kv, a->head_dim);
            int *cnt = !c->dec_merge_kernel && (size_t)a->n_rows * a->n_head_kv <= DEC_COUNTERS ? c->dec_counters
                                                                                                : NULL;
            cu_attention_decode_fp8(c->cu, a->q, a->ldq, a->n_rows, a->n_head, a->n_head_kv, a->head_dim, a->scale,
                                    a->k_pool, a->v_pool, a->slots, a->row_off, a->row_len, a->max_len, ms,
                                    c->dec_min_chunk, ms > 1 ? c->attn_ws : NULL, cnt, a->out);
        } else if (!c->refused[0])
            snprintf(c->refused, sizeof c->refused, "cuda backend: an fp8 KV cache runs on the split-K decode and mma "
                     "prefill kernels, not SGL_CUDA_DECODE=row or SGL_CUDA_PREFILL=wmma");
        return;
    }
    if (a->n_tiles > 0) {
        if (c->prefill_kernel < 0)
            cu_attention_prefill(c->cu, a->q, a->ldq, a->n_head, a->n_head_kv, a->head_dim, a->scale, a->k_pool,
                                 a->v_pool, a->slots, a->tiles, a->n_tiles, a->out);
        else
            cu_attention_prefill_mma(c->cu, a->q, a->ldq, a->n_head, a->n_head_kv, a->head_dim, a->scale,
                                     a->k_pool, a->v_pool, a->slots, a->tiles, a->n_tiles, a->out,
                                     c->prefill_kernel & 3, c->prefill_kernel >> 2);
        return;
    }
    if (!c->dec_row_kernel) {
        int ms = decode_max_split(c, a->n_rows, a->n_head, a->n_head_kv, a->head_dim);
        int *cnt = !c->dec_merge_kernel && (size_t)a->n_rows * a->n_head_kv <= DEC_COUNTERS ? c->dec_counters : NULL;
        cu_attention_decode(c->cu, a->q, a->ldq, a->n_rows, a->n_head, a->n_head_kv, a->head_dim, a->scale,
                            a->k_pool, a->v_pool, a->slots, a->row_off, a->row_len, a->max_len, ms,
                            c->dec_min_chunk, ms > 1 ? c->attn_ws : NULL, cnt, a->out);
        return;
    }
    /* split long rows until the grid has ~2 blocks per SM (flash-decoding),
     * chunks of at least ATTN_MIN_CHUNK keys, within the work space. Measured
     * alternatives (bench/gpu/results): 16 blocks/SM with 256-key chunks was
     * 5-9% slower at 1152 keys (v3); cu_attention_decode_tc (one warp per
     * row, kv head and split on the tensor cores) was correct but slower at
     * 4096 keys, offline 778 vs 1255 out tok/s (v5), so the row kernel stays */
    int blocks = a->n_rows * a->n_head_kv, want = 2 * c->n_sm;
    int n_split = 1;
    if (blocks < want && a->max_len > ATTN_MIN_CHUNK) {
        n_split = (want + blocks - 1) / blocks;
        int most = (a->max_len + ATTN_MIN_CHUNK - 1) / ATTN_MIN_CHUNK;
        if (n_split > most) n_split = most;
        while (n_split > 1 && cu_attn_ws_bytes(a->n_rows, a->n_head, a->head_dim, n_split) > ATTN_WS_BYTES) n_split--;
    }
    int chunk = (a->max_len + n_split - 1) / n_split;
    cu_attention(c->cu, a->q, a->ldq, a->n_rows, a->n_head, a->n_head_kv, a->head_dim, a->scale, a->k_pool,
                 a->v_pool, a->slots, a->row_off, a->row_len, n_split, chunk, n_split > 1 ? c->attn_ws : NULL,
                 a->out);
}

static void d_swiglu(void *ctx, const void *gu, int n, int ff, void *out) { cu_swiglu(((Cuda *)ctx)->cu, gu, n, ff, out); }

static void d_mem_info(void *ctx, size_t *free_b, size_t *total_b) { cu_mem_info(((Cuda *)ctx)->cu, free_b, total_b); }

static void d_zero(void *ctx, void *p, size_t bytes) { cu_memset(((Cuda *)ctx)->cu, p, 0, bytes); }

static void *d_host_alloc(void *ctx, size_t bytes)
{
    Cuda *c = ctx;
    void *p = cu_host_alloc(c->cu, bytes);
    if (!p) (void)cu_error(c->cu);
    return p;
}

static void d_host_free(void *ctx, void *p) { cu_host_free(((Cuda *)ctx)->cu, p); }

static void d_argmax(void *ctx, const float *logits, int n, int v, int32_t *ids)
{
    cu_argmax_f32(((Cuda *)ctx)->cu, logits, n, v, ids);
}

static void d_sample(void *ctx, const KDevSample *s) { cu_sample(((Cuda *)ctx)->cu, s); }
static void d_bind(void *ctx) { cu_set_device(((Cuda *)ctx)->device); }

int cuda_backend_device(const KBackend *b) { return ((const Cuda *)b->ctx)->device; }
void *cuda_backend_stream(const KBackend *b) { return cu_stream(((const Cuda *)b->ctx)->cu); }
void *cuda_backend_cu(const KBackend *b) { return ((const Cuda *)b->ctx)->cu; }
/* ---- graphs (decode steps) ---- */

static int d_graph_begin(void *ctx) { return cu_graph_begin(((Cuda *)ctx)->cu) ? -1 : 0; }
static void *d_graph_end(void *ctx) { return cu_graph_end(((Cuda *)ctx)->cu); }
static void d_graph_launch(void *ctx, void *g) { cu_graph_launch(((Cuda *)ctx)->cu, g); }
static void d_graph_free(void *ctx, void *g) { cu_graph_free(g); }

/* ---- the overlap scheduler's ops (kernels/cuda/cuda_overlap.cu) ---- */

static void d_pick_tokens(void *ctx, int32_t *tok, const int32_t *src, const int32_t *prev, int n)
{
    cu_pick_tokens(((Cuda *)ctx)->cu, tok, src, prev, n);
}
static void d_download_async(void *ctx, void *dst, const void *src, size_t bytes)
{
    cu_download_async(((Cuda *)ctx)->cu, dst, src, bytes);
}
static void d_upload_async(void *ctx, void *dst, const void *src, size_t bytes)
{
    cu_upload_async(((Cuda *)ctx)->cu, dst, src, bytes);
}
static void *d_event_new(void *ctx) { return cu_event_new(((Cuda *)ctx)->cu); }
/* KDevOps.attention_rope (SGL_CUDA_FUSE_ROPE=1): decode rows on the split-K
 * kernel with RoPE and the KV write inside it (cu_attention_decode_rope);
 * any other case runs the two ops, which is what the op means. */
static void d_attention_rope(void *ctx, const KDevAttn *a, const KDevRope *r)
{
    Cuda *c = ctx;
    if (a->n_rows <= 0) return;
    int ldqkv = (a->n_head + 2 * a->n_head_kv) * a->head_dim;
    if (a->n_tiles > 0 || c->dec_row_kernel || a->q != r->qkv || a->ldq != ldqkv || a->k_pool != r->k_pool ||
        a->v_pool != r->v_pool) {
        (a->kv_fp8 ? d_rope_kv_fp8 : d_rope_kv)(ctx, r->qkv, a->n_rows, a->n_head, a->n_head_kv, a->head_dim,
                                                r->rot_dim, r->inv_freq, r->style, r->pos, r->wslot, r->k_pool,
                                                r->v_pool);
        d_attention(ctx, a);
        return;
    }
    int ms = decode_max_split(c, a->n_rows, a->n_head, a->n_head_kv, a->head_dim);
    int *cnt = !c->dec_merge_kernel && (size_t)a->n_rows * a->n_head_kv <= DEC_COUNTERS ? c->dec_counters : NULL;
    cu_attention_decode_rope(c->cu, r->qkv, a->n_rows, a->n_head, a->n_head_kv, a->head_dim, a->scale, r->k_pool,
                             r->v_pool, a->kv_fp8, a->slots, a->row_off, a->row_len, a->max_len, ms,
                             c->dec_min_chunk, ms > 1 ? c->attn_ws : NULL, cnt, r->rot_dim, r->inv_freq,
                             r->style == K_ROPE_NEOX, r->pos, r->wslot, a->out);
}

static void d_event_free(void *ctx, void *ev) { cu_event_free(((Cuda *)ctx)->cu, ev); }
static void d_event_record(void *ctx, void *ev) { cu_event_record(((Cuda *)ctx)->cu, ev); }
static int d_event_wait(void *ctx, void *ev) { return cu_event_wait(((Cuda *)ctx)->cu, ev); }

static int set_decode(Cuda *c, const char *spec)
{
    int blocks = 2, min_chunk = 64, counters = 1;
    if (!strcmp(spec, "row")) {
        c->dec_row_kernel = 1;
        return 0;
    }
    if (strncmp(spec, "split", 5) || (spec[5] && sscanf(spec + 5, ":%d:%d:%d", &blocks, &min_chunk, &counters) < 1) ||
        blocks < 1 || blocks > 64 || min_chunk < 16)
        return -1;
    c->dec_row_kernel = 0;
    c->dec_merge_kernel = !counters;
    c->dec_blocks = blocks;
    c->dec_min_chunk = min_chunk;
    return 0;
}

int cuda_backend_set_decode(KBackend *b, const char *spec) { return set_decode(b->ctx, spec); }

int cuda_backend_usable(void) { return cu_device_count() > 0; }

KBackend *cuda_backend_new(char *err, size_t errcap) { return cuda_backend_new_on(0, err, errcap); }

KBackend *cuda_backend_new_on(int device, char *err, size_t errcap)
{
    int n_dev = cu_device_count();
    if (device < 0 || (n_dev > 0 && device >= n_dev)) {
        if (err) snprintf(err, errcap, "cuda backend: no GPU %d (%d visible)", device, n_dev);
        return NULL;
    }
    Cuda *c = calloc(1, sizeof *c);
    if (!c) {
        if (err) snprintf(err, errcap, "cuda backend: out of memory");
        return NULL;
    }
    c->device = device;
    if (n_dev > 0 && cu_set_device(device)) {
        if (err) snprintf(err, errcap, "cuda backend: cannot make GPU %d current", device);
        free(c);
        return NULL;
    }
    c->cu = cu_ctx_new(err, errcap);
    if (!c->cu) {
        free(c);
        return NULL;
    }
    c->attn_ws = cu_alloc(c->cu, ATTN_WS_BYTES);
    c->dec_counters = cu_alloc(c->cu, DEC_COUNTERS * sizeof(int));
    if (c->dec_counters) cu_memset(c->cu, c->dec_counters, 0, DEC_COUNTERS * sizeof(int));
    if (!c->attn_ws || !c->dec_counters) {
        if (err) snprintf(err, errcap, "cuda backend: cannot allocate the attention work space");
        cu_free(c->cu, c->attn_ws);
        cu_free(c->cu, c->dec_counters);
        cu_ctx_free(c->cu);
        free(c);
        return NULL;
    }
    c->n_sm = cu_sm_count(c->cu);
    /* the tensor-core GEMV (cu_gemv_bf16, the first layout): off by default (GEMV_MAX_N 0),
     * as no layout has yet been measured ahead of cuBLASLt (NOTES.md: the
     * first was at 65-80% of the copy roofline against cuBLASLt's 72-96%);
     * SGL_CUDA_GEMV_MAX_N=8 sends matmuls of up to 8 rows whose weights are
     * at most SGL_CUDA_GEMV_MAX_MB (64) to it */
    const char *gv = getenv("SGL_CUDA_GEMV_MAX_N"), *gb = getenv("SGL_CUDA_GEMV_MAX_MB");
    c->gemv_max_n = gv ? atoi(gv) : GEMV_MAX_N;
    if (c->gemv_max_n > CU_GEMV_MAX_N) c->gemv_max_n = CU_GEMV_MAX_N;
    c->gemv_max_bytes = (size_t)(gb ? atoi(gb) : GEMV_MAX_MB) << 20;
    /* the row-stream GEMV by the table (gemv_pick) unless SGL_CUDA_GEMV
     * says otherwise; SGL_CUDA_GEMV_MAX_N alone keeps its old meaning */
    const char *gs = getenv("SGL_CUDA_GEMV");
    c->gemv_mode = gv && !gs ? GEMV_MMA : GEMV_AUTO;
    if (gs && *gs && set_gemv(c, gs)) {
        if (err) snprintf(err, errcap, "cuda backend: SGL_CUDA_GEMV=%s: want auto, off, mma or rows:R:U:KS[:pdl]", gs);
        b_destroy(c);
        return NULL;
    }
    /* gate|up + swiglu fused (d_matmul_swiglu): off unless
     * SGL_CUDA_FUSE_SWIGLU=1 (no-trigger: without the early
     * launch_dependents, to time its share) */
    const char *fs = getenv("SGL_CUDA_FUSE_SWIGLU");
    if (fs && *fs && set_fuse_swiglu(c, fs)) {
        if (err) snprintf(err, errcap, "cuda backend: SGL_CUDA_FUSE_SWIGLU=%s: want 0, 1 or no-trigger", fs);
        b_destroy(c);
        return NULL;
    }
    /* the prefill attention kernel: mma.sync (cuda_prefill.cu) with exp2f,
     * as measured (NOTES.md: 4096-token prefill 190 -> 110 ms), unless
     * SGL_CUDA_PREFILL names another: wmma (the old kernel), mma1/mma2
     * (heads a block), mma-fast (ex2.approx: tested, not yet timed) */
    const char *pk = getenv("SGL_CUDA_PREFILL");
    const int exact = CU_PREFILL_EXACT_EXP << 2;
    c->prefill_kernel = !pk || !strcmp(pk, "mma") ? exact : !strcmp(pk, "wmma") ? -1 : !strcmp(pk, "mma1") ? 1 | exact
                        : !strcmp(pk, "mma2") ? 2 | exact : !strcmp(pk, "mma-fast") ? 0 : -2;
    if (c->prefill_kernel == -2) {
        if (err)
            snprintf(err, errcap, "cuda backend: SGL_CUDA_PREFILL=%s: not one of mma, mma1, mma2, mma-fast, wmma", pk);
        b_destroy(c);
        return NULL;
    }
    /* 2 blocks per SM, chunks >= 64: the best policy of bench_decode on an
     * H100 (results/h100-dec-v1.log), 2.0-3.0 TB/s from batch 16 on */
    c->dec_blocks = 2;
    c->dec_min_chunk = 64;
    const char *dec = getenv("SGL_CUDA_DECODE");
    if (dec && *dec && set_decode(c, dec)) {
        if (err) snprintf(err, errcap, "cuda backend: SGL_CUDA_DECODE=%s: want row, split or split:BLOCKS:MIN_CHUNK",
                          dec);
        b_destroy(c);
        return NULL;
    }
    if (cu_attn_tile_rows() != K_ATTN_TILE_ROWS) {
        if (err) snprintf(err, errcap, "cuda backend: attention tiles of %d rows, backend.h says %d",
                          cu_attn_tile_rows(), K_ATTN_TILE_ROWS);
        b_destroy(c);
        return NULL;
    }
    if (device) snprintf(c->name, sizeof c->name, "cuda:%d (%s)", device, cu_device_name(c->cu));
    else snprintf(c->name, sizeof c->name, "cuda (%s)", cu_device_name(c->cu));
    c->be.name = c->name;
    c->be.ctx = c;
#define X(op) c->be.op = h_##op;
    HOST_OPS(X)
#undef X
    c->be.buf_alloc = b_buf_alloc;
    c->be.buf_free = b_buf_free;
    c->be.upload = b_upload;
    c->be.download = b_download;
    c->be.sync = b_sync;
    c->be.error = b_error;
    c->be.destroy = b_destroy;
    c->dev.act_dtype = K_DTYPE_BF16;
    /* fp8 e4m3 tensor cores: Ada (8.9) and Hopper; this build's cubins are
     * sm_90a, so cu_ctx_new has refused older GPUs already: the check names
     * the rule for builds that add other targets */
    int cc = cu_compute_capability(c->cu);
    if (cc < 89)
        snprintf(c->no_fp8, sizeof c->no_fp8, "fp8 needs compute capability 8.9+ (this GPU is %d.%d)", cc / 10,
                 cc % 10);
    const char *fg = getenv("SGL_CUDA_FP8_GEMM");
    CuFp8Mode fm = !fg || !strcmp(fg, "auto") ? CU_FP8_AUTO : !strcmp(fg, "outer") ? CU_FP8_OUTER
                   : !strcmp(fg, "epilogue") ? CU_FP8_EPILOGUE : (CuFp8Mode)-1;
    if ((int)fm < 0) {
        if (err) snprintf(err, errcap, "cuda backend: SGL_CUDA_FP8_GEMM=%s: not one of auto, outer, epilogue", fg);
        b_destroy(c);
        return NULL;
    }
    c->fp8 = cu_fp8_new(c->cu, fm);
    if (!c->fp8) {
        if (err) snprintf(err, errcap, "cuda backend: out of memory");
        b_destroy(c);
        return NULL;
    }
    c->dev.no_fp8 = c->no_fp8[0] ? c->no_fp8 : NULL;
#define X(op, ret, params) c->dev.op = d_##op;
    K_DEV_OPS(X)
#undef X
    /* RoPE + KV write fused into the decode attention: off until a GPU run
     * has shown it bit-identical to rope_kv + attention and faster
     * (bench/gpu/NOTES.md, "Session 5 (helper rope)") */
    const char *fr = getenv("SGL_CUDA_FUSE_ROPE");
    if (fr && *fr && strcmp(fr, "0") && strcmp(fr, "1")) {
        if (err) snprintf(err, errcap, "cuda backend: SGL_CUDA_FUSE_ROPE=%s: want 0 or 1", fr);
        b_destroy(c);
        return NULL;
    }
    c->dev.attention_rope = fr && !strcmp(fr, "1") ? d_attention_rope : NULL;
    c->be.dev = &c->dev;
    if (!k_backend_complete(&c->be)) {
        if (err) snprintf(err, errcap, "cuda backend: an op is missing");
        b_destroy(c);
        return NULL;
    }
    return &c->be;
}
