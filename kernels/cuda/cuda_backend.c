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
    int prefill_kernel;         /* SGL_CUDA_PREFILL: -1 the WMMA kernel, else mma: heads a block (0 auto, 1, 2)
                                 * in bits 0-1, cu_attention_prefill_mma's flags above them */
    /* decode rows (attention without tiles): the split-K kernel
     * (cuda_decode.h) aiming at dec_blocks blocks per SM, chunks of at least
     * dec_min_chunk keys; or, dec_row_kernel, cu_attention (the row kernel,
     * kept as the baseline: SGL_CUDA_DECODE=row) */
    int dec_row_kernel, dec_blocks, dec_min_chunk, dec_merge_kernel;
    char name[96];
    char refused[128];
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

static void d_matmul(void *ctx, const KTensor *w, const void *bias, const void *x, int ldx, int n, void *y, int ldy)
{
    Cuda *c = ctx;
    if (n <= 0 || bf16_matrix(c, w)) return;
    int in = (int)w->ne[0], out = (int)w->ne[1];
    if (n <= c->gemv_max_n && (size_t)in * out * 2 <= c->gemv_max_bytes && cu_gemv_fits(n, in, ldx, x, w->data)) {
        cu_gemv_bf16(c->cu, x, ldx, n, in, w->data, out, bias, y, ldy); /* bias fused */
        return;
    }
    cu_gemm_bf16(c->cu, x, ldx, n, in, w->data, out, y, ldy);
    if (bias) cu_add_bias(c->cu, y, ldy, n, out, bias);
}

static void d_logits(void *ctx, const KTensor *w, const void *x, int n, float *y)
{
    Cuda *c = ctx;
    if (n <= 0 || bf16_matrix(c, w)) return;
    int in = (int)w->ne[0], out = (int)w->ne[1];
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
static void *d_event_new(void *ctx) { return cu_event_new(((Cuda *)ctx)->cu); }
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
    /* small-batch matmuls to cuda_gemv.cu: off by default (GEMV_MAX_N 0),
     * as no layout has yet been measured ahead of cuBLASLt (NOTES.md: the
     * first was at 65-80% of the copy roofline against cuBLASLt's 72-96%);
     * SGL_CUDA_GEMV_MAX_N=8 sends matmuls of up to 8 rows whose weights are
     * at most SGL_CUDA_GEMV_MAX_MB (64) to it */
    const char *gv = getenv("SGL_CUDA_GEMV_MAX_N"), *gb = getenv("SGL_CUDA_GEMV_MAX_MB");
    c->gemv_max_n = gv ? atoi(gv) : GEMV_MAX_N;
    if (c->gemv_max_n > CU_GEMV_MAX_N) c->gemv_max_n = CU_GEMV_MAX_N;
    c->gemv_max_bytes = (size_t)(gb ? atoi(gb) : GEMV_MAX_MB) << 20;
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
#define X(op, ret, params) c->dev.op = d_##op;
    K_DEV_OPS(X)
#undef X
    c->be.dev = &c->dev;
    if (!k_backend_complete(&c->be)) {
        if (err) snprintf(err, errcap, "cuda backend: an op is missing");
        b_destroy(c);
        return NULL;
    }
    return &c->be;
}
