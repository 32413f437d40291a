/*
 * kernels/cpu/cpu.c — the fast CPU backend (fills KBackend).
 *
 * matmul picks one of two paths by batch size:
 *   - few rows of x (decode, small batches): x is quantized once to the
 *     weight's activation format (cpu_dot_type), then each worker takes a
 *     chunk of weight rows and computes quantized dots against every row of
 *     x (four at a time) while the weight row is hot in L1, so each weight
 *     row is read once per batch.
 *   - many rows (prefill), where the weights have no packed AVX-512 kernel
 *     (below): each worker dequantizes a tile of weight rows to
 *     f32 and runs OpenBLAS sgemm for that tile (OpenBLAS is kept to one
 *     thread; the pool provides the parallelism). x goes through the same
 *     8-bit activation format first (quantized, then expanded back to f32),
 *     so both paths compute the same function and differ only in float
 *     summation order. Small models amplify even that (re-rolled 8-bit
 *     rounding downstream): the same prompt prefilled in one batch or token
 *     by token can differ by up to ~1 in a logit, as llama.cpp's own two
 *     attention paths do (tests/unit/test_model.c).
 * Attention runs one task per (sequence, KV head, block of new tokens), so
 * the query heads that share a KV head read each K/V row once; a decode
 * step is further cut into fixed 256-key parts merged afterwards, so long
 * contexts use every thread, and when there are parts enough a part is one
 * task for all KV heads (whole rows, read in order); a block of several new
 * tokens (prefill) gathers its K/V rows to f32 and uses sgemm for Q·Kᵀ and
 * P·V. f16 parts go through attn_avx2.c's kernel (every query head of a KV
 * head on each row it loads), the rest through kv_dot/kv_axpy.
 *
 * Determinism: without sgemm (CPU_NO_BLAS) every token's numbers depend only
 * on its own inputs, not on batch composition or thread count (tested).
 *
 * SIMD: AVX2/FMA/F16C kernels from quant_avx2.c when the CPU has them
 * (checked once in cpu_backend_new), scalar ones from quant.c otherwise.
 *
 * AVX-512 VNNI (quant_avx512.c): Q4_0/Q4_1/Q8_0 weights are repacked on
 * their first matmul into tiles of 16 interleaved rows, kept for the
 * backend's life in `packs` (keyed by the data pointer, dtype and shape,
 * checked against a fingerprint of sampled bytes: kernels/backend.h says
 * weight data does not change while a backend uses it), and the dot path
 * runs 16 weight rows x 8 activation rows per kernel call. Tasks are then
 * whole tiles: every part's virtual rows start at a multiple of 16.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLAS_MIN_ROWS 16        /* x rows from which sgemm beats quantized dots */
#define TILE_ROWS 64            /* weight rows dequantized per sgemm call */
#define ATTN_BLOCK 16           /* new tokens per attention task */
#define ATTN_GEMM_MIN 4         /* new tokens in a task from which attention uses sgemm */
#define VNNI_TILE 16            /* weight rows per packed tile (quant_avx512.c) */

/* One repacked weight matrix (cpu_vnni_pack), owned by the backend. */
typedef struct {
    const void *data;           /* the KTensor's data it was made from */
    KDtype dtype;
    int64_t k, rows;
    uint64_t print;             /* fingerprint of sampled bytes of data */
    void *packed;               /* aligned_alloc'ed, cpu_vnni_packed_bytes */
} Pack;

typedef struct {
    float *buf;                 /* dequantized weight tile / attention scores */
    size_t cap;                 /* floats */
} ThreadScratch;

typedef struct {
    KBackend be;
    CpuPool *pool;
    int n_threads;
    int simd;
    int blas;
    int vnni;                   /* AVX-512 VNNI kernels over packed weights */
    Pack *packs;
    int n_packs, packs_cap;
    ThreadScratch *ts;
    uint8_t *xq;                /* quantized activations */
    size_t xq_cap;
    float *xr;                  /* activations rounded through their 8-bit format */
    size_t xr_cap;
    float *xsc;                 /* their blocks' scales as f32 (cpu_avx2_dotx) */
    size_t xsc_cap;
    struct AttnTask *tasks;
    size_t tasks_cap;
    size_t *part_base;          /* attention: per sequence, first split-decode partial */
    size_t part_base_cap;
    int *n_parts;
    size_t n_parts_cap;
    float *partials;
    size_t partials_cap;
    const char *error;          /* first op that could not get scratch memory */
} Cpu;

int cpu_has_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

int cpu_has_avx512vnni(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

cpu_dot_fn cpu_dot_avx2(KDtype w) { return cpu_has_avx2() ? cpu_avx2_dot(w) : NULL; }

static int grow_bytes(Cpu *c, void **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    void *p = realloc(*buf, need);
    if (!p) {
        if (!c->error) c->error = "cpu backend: out of memory for scratch buffers";
        return -1;
    }
    *buf = p;
    *cap = need;
    return 0;
}

/* Every thread's scratch holds at least `floats` floats (grown on the calling
 * thread, before a job, so workers never allocate). */
static int reserve_thread_scratch(Cpu *c, size_t floats)
{
    for (int i = 0; i < c->n_threads; i++) {
        ThreadScratch *t = &c->ts[i];
        size_t cap = t->cap * sizeof(float);
        if (grow_bytes(c, (void **)&t->buf, &cap, floats * sizeof(float))) return -1;
        t->cap = cap / sizeof(float);
    }
    return 0;
}

static void dequant_row(Cpu *c, KDtype t, const void *src, float *dst, int64_t n)
{
    if (c->simd && cpu_avx2_dequant_row(t, src, dst, n) == 0) return;
    cpu_dequant_row(t, src, dst, n);
}

static void quant_row(Cpu *c, KDtype t, const float *src, void *dst, int64_t n)
{
    if (c->simd && cpu_avx2_quant_row(t, src, dst, n) == 0) return;
    cpu_quant_row(t, src, dst, n);
}

/* ---- matmul ------------------------------------------------------------------ */

/* One weight matrix of a (possibly fused) matmul. Its rows are numbered
 * after the previous parts' ("virtual rows"), so one parallel job can cover
 * q, k and v, or gate and up, reading x's quantized copy once. */
typedef struct {
    const KTensor *w;
    const float *bias;
    float *y;
    int64_t rows;
    int64_t row0;               /* first virtual row */
    size_t wrb;                 /* weight row bytes */
    KDtype qt;                  /* activation format */
    const uint8_t *xq;          /* x in that format (or x itself for F32) */
    size_t xrb;                 /* its row bytes */
    float *xr;                  /* gemm path: x rounded through that format */
    cpu_dot_fn dot;
    cpu_dot4_fn dot4;           /* four tokens at once (same results), or NULL */
    cpu_dotx_fn dotx;           /* 1-4 tokens with xsc (same results), or NULL */
    float *xsc;                 /* per row of x: (d, s) of each 32-value block, or NULL */
    size_t xscn;                /* floats per row of xsc */
    const void *packed;         /* w repacked for cpu_vnni_matmul, or NULL */
} MatPart;

typedef struct {
    Cpu *c;
    const float *x;
    int n;
    int64_t k;
    int n_parts;
    MatPart p[K_MATMUL_MAX_PARTS];
    int64_t total_rows;
    int chunk;                  /* rows per task */
    const MatPart *cur;         /* quant_task / round_task / gemm_task: the part being done */
    const Pack *pack;           /* pack_task: the matrix being packed */
    const void *pack_src;
} MatJob;

static void quant_task(void *arg, int task, int thread)
{
    MatJob *j = arg;
    const MatPart *p = j->cur;
    uint8_t *q = (uint8_t *)p->xq + (size_t)task * p->xrb;
    quant_row(j->c, p->qt, j->x + (size_t)task * j->k, q, j->k);
    if (!p->xsc) return;
    /* Q8_0 {f16 d; i8 q[32]}, Q8_1 {f16 d, s; i8 q[32]}: the scales once
     * as f32, for every weight row's dot to read */
    size_t bb = k_row_bytes(p->qt, 32);
    float *sc = p->xsc + (size_t)task * p->xscn;
    for (size_t b = 0; b < p->xscn / 2; b++) {
        uint16_t h[2];
        memcpy(h, q + b * bb, sizeof h);
        sc[2 * b] = cpu_f16_to_f32(h[0]);
        if (p->qt == K_DTYPE_Q8_1) {
            sc[2 * b + 1] = cpu_f16_to_f32(h[1]);
        } else { /* Q8_0: the sum of the quants (cpu_vnni_matmul's correction) */
            const int8_t *qs = (const int8_t *)(q + b * bb + 2);
            int sum = 0;
            for (int i = 0; i < 32; i++) sum += qs[i];
            sc[2 * b + 1] = (float)sum;
        }
    }
}

/* gemm path: row `task` of x -> activation format -> f32 */
static void round_task(void *arg, int task, int thread)
{
    MatJob *j = arg;
    const MatPart *p = j->cur;
    uint8_t *q = (uint8_t *)p->xq + (size_t)task * p->xrb;
    quant_row(j->c, p->qt, j->x + (size_t)task * j->k, q, j->k);
    dequant_row(j->c, p->qt, q, p->xr + (size_t)task * j->k, j->k);
}

static void dot_rows(const MatJob *j, const MatPart *p, int64_t r0, int64_t r1)
{
    const uint8_t *w = (const uint8_t *)p->w->data;
    if (p->packed && p->xsc) { /* r0 is a multiple of VNNI_TILE */
        cpu_vnni_matmul(p->w->dtype, j->k, p->packed, r0 / VNNI_TILE, (r1 + VNNI_TILE - 1) / VNNI_TILE, p->rows, j->n,
                        p->xq, p->xrb, p->xsc, p->xscn, p->bias, p->y);
        return;
    }
    if (p->dotx && p->xsc) {
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *wr = w + r * p->wrb;
            float b = p->bias ? p->bias[r] : 0.0f;
            for (int t = 0; t < j->n; t += 4) {
                int T = j->n - t < 4 ? j->n - t : 4;
                const uint8_t *xs[4];
                const float *sc[4];
                float s[4];
                for (int i = 0; i < T; i++) {
                    xs[i] = p->xq + (size_t)(t + i) * p->xrb;
                    sc[i] = p->xsc + (size_t)(t + i) * p->xscn;
                }
                p->dotx(T, j->k, wr, xs, sc, s);
                for (int i = 0; i < T; i++) p->y[(size_t)(t + i) * p->rows + r] = s[i] + b;
            }
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = w + r * p->wrb;
        float b = p->bias ? p->bias[r] : 0.0f;
        int t = 0;
        if (p->dot4)
            for (; t + 4 <= j->n; t += 4) {
                float s[4];
                p->dot4(j->k, wr, p->xq + (size_t)t * p->xrb, p->xrb, s);
                for (int i = 0; i < 4; i++) p->y[(size_t)(t + i) * p->rows + r] = s[i] + b;
            }
        for (; t < j->n; t++) p->y[(size_t)t * p->rows + r] = p->dot(j->k, wr, p->xq + (size_t)t * p->xrb) + b;
    }
}

static void dot_task(void *arg, int task, int thread)
{
    MatJob *j = arg;
    int64_t v0 = (int64_t)task * j->chunk, v1 = v0 + j->chunk;
    if (v1 > j->total_rows) v1 = j->total_rows;
    for (int i = 0; i < j->n_parts; i++) {
        const MatPart *p = &j->p[i];
        int64_t a = v0 > p->row0 ? v0 : p->row0, b = v1 < p->row0 + p->rows ? v1 : p->row0 + p->rows;
        if (a < b) dot_rows(j, p, a - p->row0, b - p->row0);
    }
}

/* ---- packed weights (AVX-512 VNNI) ------------------------------------------ */

/* FNV-1a over 16 samples of 64 bytes spread over the matrix: cheap enough for
 * every matmul, and a freed matrix whose address is reused for new data (as
 * tests do) differs in it. */
static uint64_t fingerprint(const void *data, size_t bytes)
{
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull;
    if (bytes < 64) {
        for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 1099511628211ull;
        return h;
    }
    for (int s = 0; s < 16; s++) { /* 8 bytes at a time */
        const uint8_t *q = p + (bytes - 64) / 15 * (size_t)s;
        for (int i = 0; i < 8; i++) {
            uint64_t v;
            memcpy(&v, q + 8 * i, 8);
            h = (h ^ v) * 1099511628211ull;
        }
    }
    return h;
}

static void pack_task(void *arg, int task, int thread)
{
    MatJob *j = arg;
    const Pack *pk = j->pack;
    int64_t tiles = (pk->rows + VNNI_TILE - 1) / VNNI_TILE, t0 = (int64_t)task * 16, t1 = t0 + 16;
    if (t1 > tiles) t1 = tiles;
    cpu_vnni_pack(pk->dtype, pk->k, pk->rows, j->pack_src, t0, t1, pk->packed);
}

/* w's packed copy, made on first use; NULL when w has no packed kernel or
 * memory ran out (the caller then takes the AVX2 path: same function,
 * other summation order). */
static const void *packed_of(Cpu *c, MatJob *j, const KTensor *w)
{
    int64_t k = w->ne[0], rows = w->ne[1];
    size_t bytes = cpu_vnni_packed_bytes(w->dtype, k, rows);
    if (!bytes) return NULL;
    uint64_t print = fingerprint(w->data, k_row_bytes(w->dtype, k) * (size_t)rows);
    for (int i = 0; i < c->n_packs; i++) {
        Pack *pk = &c->packs[i];
        if (pk->data != w->data || pk->dtype != w->dtype || pk->k != k || pk->rows != rows) continue;
        if (pk->print == print) return pk->packed;
        /* the address holds other data now: pack again in place */
        pk->print = print;
        j->pack = pk;
        j->pack_src = w->data;
        cpu_pool_run(c->pool, (int)(((rows + VNNI_TILE - 1) / VNNI_TILE + 15) / 16), pack_task, j);
        return pk->packed;
    }
    if (c->n_packs == c->packs_cap) {
        int cap = c->packs_cap ? 2 * c->packs_cap : 64;
        Pack *np = realloc(c->packs, (size_t)cap * sizeof *np);
        if (!np) return NULL;
        c->packs = np;
        c->packs_cap = cap;
    }
    void *buf = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!buf) return NULL;
    Pack *pk = &c->packs[c->n_packs++];
    *pk = (Pack){.data = w->data, .dtype = w->dtype, .k = k, .rows = rows, .print = print, .packed = buf};
    j->pack = pk;
    j->pack_src = w->data;
    cpu_pool_run(c->pool, (int)(((rows + VNNI_TILE - 1) / VNNI_TILE + 15) / 16), pack_task, j);
    return buf;
}

static void gemm_task(void *arg, int task, int thread)
{
    MatJob *j = arg;
    const MatPart *p = j->cur;
    int64_t r0 = (int64_t)task * j->chunk, r1 = r0 + j->chunk;
    if (r1 > p->rows) r1 = p->rows;
    int nr = (int)(r1 - r0);
    const float *wt;
    if (p->w->dtype == K_DTYPE_F32) {
        wt = (const float *)p->w->data + r0 * j->k;
    } else {
        float *tile = j->c->ts[thread].buf;
        const uint8_t *w = (const uint8_t *)p->w->data;
        for (int i = 0; i < nr; i++) dequant_row(j->c, p->w->dtype, w + (r0 + i) * p->wrb, tile + (size_t)i * j->k, j->k);
        wt = tile;
    }
    float *y = p->y + r0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, nr, (int)j->k, 1.0f, p->xr, (int)j->k, wt, (int)j->k,
                0.0f, y, (int)p->rows);
    if (p->bias)
        for (int t = 0; t < j->n; t++)
            for (int i = 0; i < nr; i++) y[(size_t)t * p->rows + i] += p->bias[r0 + i];
}

/* Gives every part its x in its activation format. Parts with the same
 * format share one copy. With `rounded`, also the f32 expansion (gemm path). */
static int prepare_x(MatJob *j, int rounded)
{
    Cpu *c = j->c;
    size_t qbytes = 0, fbytes = 0;
    for (int i = 0; i < j->n_parts; i++) {
        MatPart *p = &j->p[i];
        p->xrb = p->qt == K_DTYPE_F32 ? (size_t)j->k * sizeof(float) : k_row_bytes(p->qt, j->k);
        if (p->qt == K_DTYPE_F32) continue;
        qbytes += p->xrb * (size_t)j->n;
        fbytes += (size_t)j->n * (size_t)j->k * sizeof(float);
    }
    if (grow_bytes(c, (void **)&c->xq, &c->xq_cap, qbytes ? qbytes : 1)) return -1;
    if (rounded && grow_bytes(c, (void **)&c->xr, &c->xr_cap, fbytes ? fbytes : 1)) return -1;
    /* the dot path's scale tables: 2 floats per 32 values, for Q8_0/Q8_1 */
    size_t scn = 2 * (size_t)(j->k / 32), sbytes = 0;
    if (!rounded && c->simd && j->k % 32 == 0)
        for (int i = 0; i < j->n_parts; i++)
            if (j->p[i].qt == K_DTYPE_Q8_0 || j->p[i].qt == K_DTYPE_Q8_1) sbytes += scn * (size_t)j->n * sizeof(float);
    if (sbytes && grow_bytes(c, (void **)&c->xsc, &c->xsc_cap, sbytes)) return -1;
    size_t qoff = 0, foff = 0, soff = 0;
    for (int i = 0; i < j->n_parts; i++) {
        MatPart *p = &j->p[i];
        if (p->qt == K_DTYPE_F32) {
            p->xq = (const uint8_t *)j->x;
            p->xr = (float *)j->x;
            continue;
        }
        int shared = -1;
        for (int k = 0; k < i; k++)
            if (j->p[k].qt == p->qt) shared = k;
        if (shared >= 0) {
            p->xq = j->p[shared].xq;
            p->xr = j->p[shared].xr;
            p->xsc = j->p[shared].xsc;
            p->xscn = j->p[shared].xscn;
            continue;
        }
        p->xq = c->xq + qoff;
        qoff += p->xrb * (size_t)j->n;
        p->xsc = NULL;
        if (sbytes && (p->qt == K_DTYPE_Q8_0 || p->qt == K_DTYPE_Q8_1)) {
            p->xsc = (float *)((uint8_t *)c->xsc + soff);
            p->xscn = scn;
            soff += scn * (size_t)j->n * sizeof(float);
        }
        if (rounded) {
            p->xr = (float *)((uint8_t *)c->xr + foff);
            foff += (size_t)j->n * (size_t)j->k * sizeof(float);
        }
        j->cur = p;
        if (rounded) cpu_pool_run(c->pool, j->n, round_task, j);
        else if (j->n >= 4) cpu_pool_run(c->pool, j->n, quant_task, j);
        else for (int t = 0; t < j->n; t++) quant_task(j, t, 0);
    }
    return 0;
}

static void matmul_parts(Cpu *c, int count, const KTensor *const *w, const float *const *bias, const float *x,
                         int n, float *const *y, int use_blas);

static void cpu_matmul_multi(void *ctx, int count, const KTensor *const *w, const float *const *bias,
                             const float *x, int n, float *const *y)
{
    Cpu *c = ctx;
    if (n <= 0 || count <= 0) return;
    if (count > K_MATMUL_MAX_PARTS) {
        if (!c->error) c->error = "cpu backend: matmul_multi given more than K_MATMUL_MAX_PARTS matrices";
        return;
    }
    /* The packed kernel beats sgemm at every batch size (bench/engine/
     * matmul_bench): with sgemm on, packable matrices still take it, the
     * others sgemm, each part as it would alone. */
    int use_blas = c->blas && n >= BLAS_MIN_ROWS, np = 0;
    const KTensor *pw[K_MATMUL_MAX_PARTS], *ow[K_MATMUL_MAX_PARTS];
    const float *pb[K_MATMUL_MAX_PARTS], *ob[K_MATMUL_MAX_PARTS];
    float *py[K_MATMUL_MAX_PARTS], *oy[K_MATMUL_MAX_PARTS];
    if (use_blas && c->vnni && w[0]->ne[0] % 32 == 0) {
        int no = 0;
        for (int i = 0; i < count; i++) {
            int p = cpu_vnni_packed_bytes(w[i]->dtype, w[i]->ne[0], w[i]->ne[1]) > 0;
            (p ? pw : ow)[p ? np : no] = w[i];
            (p ? pb : ob)[p ? np : no] = bias ? bias[i] : NULL;
            (p ? py : oy)[p ? np++ : no++] = y[i];
        }
        if (np) matmul_parts(c, np, pw, pb, x, n, py, 0);
        if (no) matmul_parts(c, no, ow, ob, x, n, oy, 1);
        return;
    }
    matmul_parts(c, count, w, bias, x, n, y, use_blas);
}

/* count parts, through sgemm when use_blas */
static void matmul_parts(Cpu *c, int count, const KTensor *const *w, const float *const *bias, const float *x,
                         int n, float *const *y, int use_blas)
{
    MatJob j = {.c = c, .x = x, .n = n, .k = w[0]->ne[0], .n_parts = count};
    int64_t row0 = 0;
    for (int i = 0; i < count; i++) {
        MatPart *p = &j.p[i];
        *p = (MatPart){.w = w[i], .bias = bias ? bias[i] : NULL, .y = y[i], .rows = w[i]->ne[1], .row0 = row0,
                       .wrb = k_row_bytes(w[i]->dtype, j.k), .qt = cpu_dot_type(w[i]->dtype)};
        p->dot = c->simd ? cpu_avx2_dot(p->w->dtype) : NULL;
        p->dot4 = c->simd ? cpu_avx2_dot4(p->w->dtype) : NULL;
        p->dotx = c->simd ? cpu_avx2_dotx(p->w->dtype) : NULL;
        if (!p->dot) p->dot = cpu_dot_scalar(p->w->dtype);
        /* packed parts cover whole tiles: every part starts at a multiple of 16 */
        row0 += (p->rows + VNNI_TILE - 1) / VNNI_TILE * VNNI_TILE;
    }
    j.total_rows = row0;
    if (use_blas) {
        if (prepare_x(&j, 1)) return;
        for (int i = 0; i < count; i++) {
            MatPart *p = &j.p[i];
            int chunk = TILE_ROWS;
            while (chunk > 8 && (p->rows + chunk - 1) / chunk < 2 * c->n_threads) chunk /= 2;
            j.chunk = chunk;
            if (p->w->dtype != K_DTYPE_F32 && reserve_thread_scratch(c, (size_t)chunk * j.k)) return;
            j.cur = p;
            cpu_pool_run(c->pool, (int)((p->rows + chunk - 1) / chunk), gemm_task, &j);
        }
        return;
    }
    if (prepare_x(&j, 0)) return;
    int any_packed = 0;
    if (c->vnni && j.k % 32 == 0)
        for (int i = 0; i < count; i++) {
            MatPart *p = &j.p[i];
            if (p->xsc) p->packed = packed_of(c, &j, p->w);
            any_packed |= p->packed != NULL;
        }
    /* ~4 tasks per thread for balance, at least 4 rows each (whole tiles
     * where a part is packed) */
    int chunk = (int)((j.total_rows + 4 * c->n_threads - 1) / (4 * c->n_threads));
    if (chunk < 4) chunk = 4;
    if (any_packed) chunk = (chunk + VNNI_TILE - 1) / VNNI_TILE * VNNI_TILE;
    j.chunk = chunk;
    cpu_pool_run(c->pool, (int)((j.total_rows + chunk - 1) / chunk), dot_task, &j);
}

static void cpu_matmul(void *ctx, const KTensor *w, const float *bias, const float *x, int n, float *y)
{
    cpu_matmul_multi(ctx, 1, &w, &bias, x, n, &y);
}

/* ---- row ops ------------------------------------------------------------------- */

static void cpu_embed(void *ctx, const KTensor *e, const int32_t *tokens, int n, float *out)
{
    Cpu *c = ctx;
    int64_t k = e->ne[0];
    size_t rb = k_row_bytes(e->dtype, k);
    for (int i = 0; i < n; i++)
        dequant_row(c, e->dtype, (const uint8_t *)e->data + (size_t)tokens[i] * rb, out + (size_t)i * k, k);
}

typedef struct {
    Cpu *c;
    const float *x, *w;
    float *y;
    int n, dim, per_task;
    float eps;
} NormJob;

static void norm_task(void *arg, int task, int thread)
{
    NormJob *j = arg;
    int t0 = task * j->per_task, t1 = t0 + j->per_task;
    if (t1 > j->n) t1 = j->n;
    for (int t = t0; t < t1; t++) {
        const float *x = j->x + (size_t)t * j->dim;
        float *y = j->y + (size_t)t * j->dim;
        float ss;
        if (j->c->simd) {
            ss = cpu_avx2_sumsq(j->dim, x);
        } else {
            ss = 0;
            for (int i = 0; i < j->dim; i++) ss += x[i] * x[i];
        }
        float s = 1.0f / sqrtf(ss / j->dim + j->eps);
        if (j->c->simd) cpu_avx2_scale_mul(j->dim, x, s, j->w, y);
        else for (int i = 0; i < j->dim; i++) y[i] = x[i] * s * j->w[i];
    }
}

static int rows_per_task(Cpu *c, int n)
{
    int per = (n + 2 * c->n_threads - 1) / (2 * c->n_threads);
    return per < 8 ? 8 : per;
}

static void cpu_rmsnorm(void *ctx, const float *x, const float *w, float *y, int n, int dim, float eps)
{
    Cpu *c = ctx;
    NormJob j = {.c = c, .x = x, .w = w, .y = y, .n = n, .dim = dim, .eps = eps, .per_task = rows_per_task(c, n)};
    cpu_pool_run(c->pool, (n + j.per_task - 1) / j.per_task, norm_task, &j);
}

typedef struct {
    float *x;
    const float *cs;
    int n, n_heads, head_dim, rot_dim, per_task;
    KRopeStyle style;
} RopeJob;

static void rope_task(void *arg, int task, int thread)
{
    RopeJob *j = arg;
    int half = j->rot_dim / 2;
    int t0 = task * j->per_task, t1 = t0 + j->per_task;
    if (t1 > j->n) t1 = j->n;
    for (int t = t0; t < t1; t++) {
        const float *c = j->cs + (size_t)t * j->rot_dim;
        for (int h = 0; h < j->n_heads; h++) {
            float *v = j->x + ((size_t)t * j->n_heads + h) * j->head_dim;
            if (j->style == K_ROPE_NEOX) {
                for (int p = 0; p < half; p++) {
                    float a = v[p], b = v[p + half];
                    v[p] = a * c[2 * p] - b * c[2 * p + 1];
                    v[p + half] = a * c[2 * p + 1] + b * c[2 * p];
                }
            } else {
                for (int p = 0; p < half; p++) {
                    float a = v[2 * p], b = v[2 * p + 1];
                    v[2 * p] = a * c[2 * p] - b * c[2 * p + 1];
                    v[2 * p + 1] = a * c[2 * p + 1] + b * c[2 * p];
                }
            }
        }
    }
}

static void cpu_rope(void *ctx, float *x, int n, int n_heads, int head_dim, int rot_dim, const float *cs,
                     KRopeStyle style)
{
    Cpu *c = ctx;
    RopeJob j = {.x = x, .cs = cs, .n = n, .n_heads = n_heads, .head_dim = head_dim, .rot_dim = rot_dim,
                 .style = style, .per_task = rows_per_task(c, n)};
    cpu_pool_run(c->pool, (n + j.per_task - 1) / j.per_task, rope_task, &j);
}

typedef struct {
    Cpu *c;
    const float *gate, *up;
    float *out;
    size_t count, per_task;
} SwigluJob;

static void swiglu_task(void *arg, int task, int thread)
{
    SwigluJob *j = arg;
    size_t i0 = (size_t)task * j->per_task, i1 = i0 + j->per_task;
    if (i1 > j->count) i1 = j->count;
    if (j->c->simd) {
        cpu_avx2_silu_mul(i1 - i0, j->gate + i0, j->up + i0, j->out + i0);
        return;
    }
    for (size_t i = i0; i < i1; i++) {
        float g = j->gate[i];
        j->out[i] = g / (1.0f + expf(-g)) * j->up[i];
    }
}

static void cpu_swiglu(void *ctx, const float *gate, const float *up, float *out, size_t count)
{
    Cpu *c = ctx;
    size_t per = (count + (size_t)c->n_threads - 1) / (size_t)c->n_threads;
    if (per < 4096) per = 4096;
    per = (per + 7) & ~(size_t)7;
    SwigluJob j = {.c = c, .gate = gate, .up = up, .out = out, .count = count, .per_task = per};
    cpu_pool_run(c->pool, (int)((count + per - 1) / per), swiglu_task, &j);
}

static void cpu_add(void *ctx, float *y, const float *x, size_t count)
{
    for (size_t i = 0; i < count; i++) y[i] += x[i];
}

static void softmax_row(Cpu *c, float *r, int dim)
{
    float mx, s;
    if (c->simd) {
        mx = cpu_avx2_max(dim, r);
        s = cpu_avx2_exp_shift_sum(dim, r, mx);
        cpu_avx2_scale(dim, r, 1.0f / s);
        return;
    }
    mx = -INFINITY;
    for (int i = 0; i < dim; i++) mx = r[i] > mx ? r[i] : mx;
    s = 0;
    for (int i = 0; i < dim; i++) s += (r[i] = expf(r[i] - mx));
    for (int i = 0; i < dim; i++) r[i] /= s;
}

static void cpu_softmax(void *ctx, float *x, int n, int dim)
{
    for (int t = 0; t < n; t++) softmax_row(ctx, x + (size_t)t * dim, dim);
}

static void cpu_kv_store(void *ctx, void *k_pool, void *v_pool, KDtype kv_dtype, int kv_dim, const float *k,
                         const float *v, const int32_t *slots, int n)
{
    Cpu *c = ctx;
    size_t rb = k_row_bytes(kv_dtype, kv_dim);
    for (int i = 0; i < n; i++) {
        uint8_t *kd = (uint8_t *)k_pool + (size_t)slots[i] * rb, *vd = (uint8_t *)v_pool + (size_t)slots[i] * rb;
        if (kv_dtype == K_DTYPE_F16 && c->simd) {
            cpu_avx2_f32_to_f16(kv_dim, k + (size_t)i * kv_dim, (uint16_t *)kd);
            cpu_avx2_f32_to_f16(kv_dim, v + (size_t)i * kv_dim, (uint16_t *)vd);
        } else {
            cpu_quant_row(kv_dtype, k + (size_t)i * kv_dim, kd, kv_dim);
            cpu_quant_row(kv_dtype, v + (size_t)i * kv_dim, vd, kv_dim);
        }
    }
}

/* ---- attention ------------------------------------------------------------------ */

/*
 * Direct path (decode, and prefill without sgemm): a query token's keys are
 * cut into parts of ATTN_PART positions with fixed boundaries. Each part
 * yields a partial result for a query head: its max score m, the sum l of
 * exp(score - m), and o = sum of exp(score - m) * value. Parts are merged in
 * order 0, 1, 2, ... by the online-softmax rule:
 *
 *     M' = max(M, m)   L' = L e^(M-M') + l e^(m-M')   O' = O e^(M-M') + o e^(m-M')
 *
 * and the output is O / L. Decode steps compute the parts as separate tasks
 * (so a long context spreads over all threads) and merge after the job;
 * prefill blocks compute and merge them inline. Both run the same arithmetic
 * in the same order, so a token's output depends only on its own context,
 * never on the batch it came in or the number of threads.
 *
 * Gemm path (prefill blocks with BLAS on): see attn_rows_gemm.
 */
#define ATTN_PART 256
#define ATTN_TASKS_PER_THREAD 2 /* whole-row decode tasks from this many a thread */

/* work unit: sequence s, KV head kh, new tokens [j0, j1), query heads
 * [g0, g1) of the KV head's group; for split decode, key part `part` */
typedef struct AttnTask {
    int s, kh, kh1, j0, j1, g0, g1, part;   /* split decode: KV heads [kh, kh1) */
} AttnTask;

typedef struct {
    Cpu *c;
    const KAttnArgs *a;
    const AttnTask *tasks;
    size_t stride;              /* gemm path: floats per score row (>= every n_ctx) */
    int gemm;                   /* prefill blocks through sgemm */
    float *partials;            /* split decode: per (seq, head, part): o[hd], m, l */
    const size_t *part_base;    /* per sequence: index of its first partial, or SIZE_MAX */
    const int *n_parts;         /* per sequence */
} AttnJob;

static float kv_dot(Cpu *c, KDtype dt, const float *q, const void *row, int n)
{
    if (dt == K_DTYPE_F16) {
        if (c->simd) return cpu_avx2_dot_f16(n, q, row);
        const uint16_t *h = row;
        float s = 0;
        for (int i = 0; i < n; i++) s += q[i] * cpu_f16_to_f32(h[i]);
        return s;
    }
    if (c->simd) return cpu_avx2_dot_f32(n, q, row);
    const float *f = row;
    float s = 0;
    for (int i = 0; i < n; i++) s += q[i] * f[i];
    return s;
}

static void kv_axpy(Cpu *c, KDtype dt, float p, const void *row, float *y, int n)
{
    if (dt == K_DTYPE_F16) {
        if (c->simd) { cpu_avx2_axpy_f16(n, p, row, y); return; }
        const uint16_t *h = row;
        for (int i = 0; i < n; i++) y[i] += p * cpu_f16_to_f32(h[i]);
        return;
    }
    if (c->simd) { cpu_avx2_axpy_f32(n, p, row, y); return; }
    const float *f = row;
    for (int i = 0; i < n; i++) y[i] += p * f[i];
}

/* Partial results over keys [c0, c1) for query heads [g0, g1) of KV head kh:
 * o[g*hd ..] (unnormalised), m[g], l[g]. `sc` holds ATTN_PART floats per head.
 * The heads share each K/V row load. */
static void attn_part(Cpu *c, const KAttnArgs *a, const KAttnSeq *sq, int kh, const float *q, int g0, int g1,
                      int c0, int c1, float *sc, float *o, float *m, float *l)
{
    int hd = a->head_dim, n = c1 - c0;
    size_t rb = k_row_bytes(a->kv_dtype, a->n_head_kv * hd), off = k_row_bytes(a->kv_dtype, (int64_t)kh * hd);
    const uint8_t *kp = (const uint8_t *)a->k_pool + off, *vp = (const uint8_t *)a->v_pool + off;
    if (c->simd && a->kv_dtype == K_DTYPE_F16 && hd % 8 == 0) {
        cpu_avx2_attn_part_f16(hd, g1 - g0, q + (size_t)g0 * hd, a->scale, (const uint16_t *)kp, (const uint16_t *)vp,
                               rb / sizeof(uint16_t), sq->slots + c0, n, sc + (size_t)g0 * ATTN_PART, ATTN_PART,
                               o + (size_t)g0 * hd, m + g0, l + g0);
        return;
    }
    for (int ci = 0; ci < n; ci++) {
        const uint8_t *krow = kp + (size_t)sq->slots[c0 + ci] * rb;
        for (int g = g0; g < g1; g++) sc[g * ATTN_PART + ci] = kv_dot(c, a->kv_dtype, q + g * hd, krow, hd) * a->scale;
    }
    for (int g = g0; g < g1; g++) {
        float *r = sc + g * ATTN_PART, mx, sum;
        if (c->simd) {
            mx = cpu_avx2_max(n, r);
            sum = cpu_avx2_exp_shift_sum(n, r, mx);
        } else {
            mx = -INFINITY;
            for (int i = 0; i < n; i++) mx = r[i] > mx ? r[i] : mx;
            sum = 0;
            for (int i = 0; i < n; i++) sum += (r[i] = expf(r[i] - mx));
        }
        m[g] = mx;
        l[g] = sum;
        memset(o + g * hd, 0, (size_t)hd * sizeof(float));
    }
    for (int ci = 0; ci < n; ci++) {
        const uint8_t *vrow = vp + (size_t)sq->slots[c0 + ci] * rb;
        for (int g = g0; g < g1; g++) kv_axpy(c, a->kv_dtype, sc[g * ATTN_PART + ci], vrow, o + g * hd, hd);
    }
}

/* Online merge of one part into the running (M, L, O) of a head. */
static void attn_merge(int hd, float m, float l, const float *o, float *M, float *L, float *O, int first)
{
    if (first) {
        *M = m;
        *L = l;
        memcpy(O, o, (size_t)hd * sizeof(float));
        return;
    }
    float nm = m > *M ? m : *M, a = expf(*M - nm), b = expf(m - nm);
    *L = *L * a + l * b;
    for (int i = 0; i < hd; i++) O[i] = O[i] * a + o[i] * b;
    *M = nm;
}

static int n_parts_for(int visible) { return (visible + ATTN_PART - 1) / ATTN_PART; }

/* Tokens [j0, j1) of a task, all parts inline. Thread scratch: sc (group *
 * ATTN_PART), o, O (group * hd each), m, l, M, L (group each). */
static void attn_rows_direct(AttnJob *j, const AttnTask *tk, int thread)
{
    Cpu *c = j->c;
    const KAttnArgs *a = j->a;
    const KAttnSeq *sq = &a->seqs[tk->s];
    int hd = a->head_dim, group = a->n_head / a->n_head_kv, qd = a->n_head * hd;
    float *sc = c->ts[thread].buf, *o = sc + (size_t)group * ATTN_PART, *O = o + (size_t)group * hd;
    float *m = O + (size_t)group * hd, *l = m + group, *M = l + group, *L = M + group;
    for (int jn = tk->j0; jn < tk->j1; jn++) {
        int visible = sq->n_ctx - sq->n_new + jn + 1;
        const float *q = a->q + (size_t)(sq->row0 + jn) * qd + (size_t)tk->kh * group * hd;
        float *out = a->out + (size_t)(sq->row0 + jn) * qd + (size_t)tk->kh * group * hd;
        int np = n_parts_for(visible);
        for (int p = 0; p < np; p++) {
            int c0 = p * ATTN_PART, c1 = c0 + ATTN_PART < visible ? c0 + ATTN_PART : visible;
            attn_part(c, a, sq, tk->kh, q, tk->g0, tk->g1, c0, c1, sc, o, m, l);
            for (int g = tk->g0; g < tk->g1; g++) attn_merge(hd, m[g], l[g], o + g * hd, &M[g], &L[g], O + g * hd, p == 0);
        }
        for (int g = tk->g0; g < tk->g1; g++) {
            float inv = 1.0f / L[g];
            for (int i = 0; i < hd; i++) out[g * hd + i] = O[g * hd + i] * inv;
        }
    }
}

/* Split decode: one key part of one token, into the partials buffer. */
static void attn_decode_part(AttnJob *j, const AttnTask *tk, int thread)
{
    Cpu *c = j->c;
    const KAttnArgs *a = j->a;
    const KAttnSeq *sq = &a->seqs[tk->s];
    int hd = a->head_dim, group = a->n_head / a->n_head_kv, qd = a->n_head * hd;
    float *sc = c->ts[thread].buf, *o = sc + (size_t)group * ATTN_PART, *m = o + (size_t)group * hd, *l = m + group;
    int visible = sq->n_ctx, c0 = tk->part * ATTN_PART, c1 = c0 + ATTN_PART < visible ? c0 + ATTN_PART : visible;
    for (int kh = tk->kh; kh < tk->kh1; kh++) {
        const float *q = a->q + (size_t)sq->row0 * qd + (size_t)kh * group * hd;
        attn_part(c, a, sq, kh, q, tk->g0, tk->g1, c0, c1, sc, o, m, l);
        for (int g = tk->g0; g < tk->g1; g++) {
            int head = kh * group + g;
            float *dst = j->partials + (j->part_base[tk->s] + (size_t)head * j->n_parts[tk->s] + tk->part) * (hd + 2);
            memcpy(dst, o + g * hd, (size_t)hd * sizeof(float));
            dst[hd] = m[g];
            dst[hd + 1] = l[g];
        }
    }
}

/* A block of new tokens (prefill): gather the visible K and V rows of this
 * KV head into f32 once, then S = Q·Kᵀ and O = softmax(S)·V as two sgemm
 * calls per query head of the group. Scratch: Kf, Vf [vis][hd], S [nt][vis]. */
static void attn_rows_gemm(AttnJob *j, const AttnTask *tk, int thread)
{
    Cpu *c = j->c;
    const KAttnArgs *a = j->a;
    const KAttnSeq *sq = &a->seqs[tk->s];
    int hd = a->head_dim, group = a->n_head / a->n_head_kv, qd = a->n_head * hd;
    int nt = tk->j1 - tk->j0, past = sq->n_ctx - sq->n_new, vis = past + tk->j1;
    size_t rb = k_row_bytes(a->kv_dtype, a->n_head_kv * hd), off = k_row_bytes(a->kv_dtype, (int64_t)tk->kh * hd);
    const uint8_t *kp = (const uint8_t *)a->k_pool + off, *vp = (const uint8_t *)a->v_pool + off;
    float *kf = c->ts[thread].buf, *vf = kf + j->stride * (size_t)hd, *sc = vf + j->stride * (size_t)hd;
    for (int ci = 0; ci < vis; ci++) {
        dequant_row(c, a->kv_dtype, kp + (size_t)sq->slots[ci] * rb, kf + (size_t)ci * hd, hd);
        dequant_row(c, a->kv_dtype, vp + (size_t)sq->slots[ci] * rb, vf + (size_t)ci * hd, hd);
    }
    for (int g = tk->g0; g < tk->g1; g++) {
        const float *q = a->q + (size_t)(sq->row0 + tk->j0) * qd + (size_t)(tk->kh * group + g) * hd;
        float *out = a->out + (size_t)(sq->row0 + tk->j0) * qd + (size_t)(tk->kh * group + g) * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nt, vis, hd, a->scale, q, qd, kf, hd, 0.0f, sc,
                    (int)j->stride);
        for (int t = 0; t < nt; t++) {
            float *row = sc + (size_t)t * j->stride;
            int visible = past + tk->j0 + t + 1;
            softmax_row(c, row, visible);
            memset(row + visible, 0, (size_t)(vis - visible) * sizeof(float));
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nt, hd, vis, 1.0f, sc, (int)j->stride, vf, hd, 0.0f,
                    out, qd);
    }
}

static void attn_task(void *arg, int task, int thread)
{
    AttnJob *j = arg;
    const AttnTask *tk = &j->tasks[task];
    if (tk->part >= 0) attn_decode_part(j, tk, thread);
    else if (j->gemm && tk->j1 - tk->j0 >= ATTN_GEMM_MIN) attn_rows_gemm(j, tk, thread);
    else attn_rows_direct(j, tk, thread);
}

/* scratch lives in Cpu: tasks, per-sequence partial bases and counts, partials */
static void cpu_attention(void *ctx, const KAttnArgs *a)
{
    Cpu *c = ctx;
    int hd = a->head_dim, group = a->n_head / a->n_head_kv;
    size_t n_dec_parts = 0, n_blocks = 0, n_partials = 0;
    int max_ctx = 0, any_gemm = 0;
    if (grow_bytes(c, (void **)&c->part_base, &c->part_base_cap, (size_t)a->n_seqs * sizeof(size_t)) ||
        grow_bytes(c, (void **)&c->n_parts, &c->n_parts_cap, (size_t)a->n_seqs * sizeof(int)))
        return;
    for (int s = 0; s < a->n_seqs; s++) {
        const KAttnSeq *sq = &a->seqs[s];
        if (sq->n_new == 1) {
            c->n_parts[s] = n_parts_for(sq->n_ctx);
            c->part_base[s] = n_partials;
            n_partials += (size_t)a->n_head * (size_t)c->n_parts[s];
            n_dec_parts += (size_t)c->n_parts[s];
        } else {
            c->n_parts[s] = 0;
            c->part_base[s] = SIZE_MAX;
            n_blocks += (size_t)((sq->n_new + ATTN_BLOCK - 1) / ATTN_BLOCK);
            if (sq->n_new >= ATTN_GEMM_MIN) any_gemm = 1;
        }
        if (sq->n_ctx > max_ctx) max_ctx = sq->n_ctx;
    }
    if (!n_dec_parts && !n_blocks) return;
    /* How fine the tasks are (the numbers are the same either way). A
     * decode part is one task for all KV heads when there are tasks enough
     * to keep every thread busy: its rows are then read whole, in order, a
     * stream the prefetchers follow. Else one task per (part, KV head),
     * and with fewer tasks than threads (decode of few short sequences),
     * one per query head, so more threads take part. */
    size_t n_tasks = n_dec_parts + n_blocks * (size_t)a->n_head_kv;
    int whole_rows = n_tasks >= (size_t)ATTN_TASKS_PER_THREAD * (size_t)c->n_threads, split = 0;
    if (!whole_rows) {
        n_tasks = (n_dec_parts + n_blocks) * (size_t)a->n_head_kv;
        split = n_tasks < (size_t)c->n_threads && group > 1;
        if (split) n_tasks *= (size_t)group;
    }
    size_t stride = ((size_t)max_ctx + 15) & ~(size_t)15;
    size_t direct = (size_t)group * ATTN_PART + 2 * (size_t)group * hd + 4 * (size_t)group;
    size_t gemm = c->blas && any_gemm ? stride * (2 * (size_t)hd + ATTN_BLOCK) : 0;
    if (reserve_thread_scratch(c, gemm > direct ? gemm : direct)) return;
    if (grow_bytes(c, (void **)&c->tasks, &c->tasks_cap, n_tasks * sizeof(AttnTask))) return;
    if (n_partials && grow_bytes(c, (void **)&c->partials, &c->partials_cap, n_partials * (size_t)(hd + 2) * sizeof(float)))
        return;
    size_t i = 0;
    for (int s = 0; s < a->n_seqs; s++) {
        const KAttnSeq *sq = &a->seqs[s];
        int nb = sq->n_new == 1 ? c->n_parts[s] : (sq->n_new + ATTN_BLOCK - 1) / ATTN_BLOCK;
        int whole = whole_rows && sq->n_new == 1;
        for (int bi = 0; bi < nb; bi++)
            for (int kh = 0; kh < (whole ? 1 : a->n_head_kv); kh++) {
                AttnTask t = {.s = s, .kh = kh, .kh1 = whole ? a->n_head_kv : kh + 1, .j0 = 0, .j1 = 1, .part = bi};
                if (sq->n_new > 1) {
                    t.j0 = bi * ATTN_BLOCK;
                    t.j1 = t.j0 + ATTN_BLOCK < sq->n_new ? t.j0 + ATTN_BLOCK : sq->n_new;
                    t.part = -1;
                }
                for (int g = 0; g < (split ? group : 1); g++) {
                    t.g0 = split ? g : 0;
                    t.g1 = split ? g + 1 : group;
                    c->tasks[i++] = t;
                }
            }
    }
    AttnJob j = {.c = c, .a = a, .tasks = c->tasks, .stride = stride, .gemm = c->blas, .partials = c->partials,
                 .part_base = c->part_base, .n_parts = c->n_parts};
    cpu_pool_run(c->pool, (int)n_tasks, attn_task, &j);
    /* merge split decode partials, parts in order (see the top of this section) */
    for (int s = 0; s < a->n_seqs; s++) {
        if (c->part_base[s] == SIZE_MAX) continue;
        float *out = a->out + (size_t)a->seqs[s].row0 * a->n_head * hd;
        for (int h = 0; h < a->n_head; h++) {
            const float *pp = c->partials + (c->part_base[s] + (size_t)h * c->n_parts[s]) * (hd + 2);
            float M = 0, L = 0, *O = out + h * hd;
            for (int p = 0; p < c->n_parts[s]; p++, pp += hd + 2) attn_merge(hd, pp[hd], pp[hd + 1], pp, &M, &L, O, p == 0);
            float inv = 1.0f / L;
            for (int k = 0; k < hd; k++) O[k] *= inv;
        }
    }
}

/* Host memory: the CPU backends' buffers are malloc'ed and their copies are
 * memcpy; every op has finished when it returns, so sync has nothing to wait for. */
static void *cpu_buf_alloc(void *ctx, size_t bytes)
{
    return malloc(bytes ? bytes : 1);
}

static void cpu_buf_free(void *ctx, void *p)
{
    free(p);
}

static void cpu_upload(void *ctx, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_download(void *ctx, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
}

static int cpu_sync(void *ctx)
{
    return 0;
}

static const char *cpu_error(void *ctx)
{
    Cpu *c = ctx;
    const char *e = c->error;
    c->error = NULL;
    return e;
}

static void cpu_destroy(void *ctx)
{
    Cpu *c = ctx;
    cpu_pool_free(c->pool);
    for (int i = 0; i < c->n_threads; i++) free(c->ts[i].buf);
    free(c->ts);
    free(c->xq);
    free(c->xr);
    free(c->xsc);
    free(c->tasks);
    free(c->part_base);
    free(c->n_parts);
    free(c->partials);
    for (int i = 0; i < c->n_packs; i++) free(c->packs[i].packed);
    free(c->packs);
    free(c);
}

KBackend *cpu_backend_new(int n_threads, unsigned flags, char *err, size_t errcap)
{
    if (n_threads <= 0) n_threads = cpu_n_cores();
    Cpu *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->pool = cpu_pool_new(n_threads);
    if (!c->pool) goto oom;
    c->n_threads = cpu_pool_size(c->pool);
    c->ts = calloc((size_t)c->n_threads, sizeof *c->ts);
    if (!c->ts) goto oom;
    c->simd = !(flags & CPU_NO_SIMD) && cpu_has_avx2();
    c->blas = !(flags & CPU_NO_BLAS);
    c->vnni = c->simd && !(flags & CPU_NO_VNNI) && cpu_has_avx512vnni();
    /* one BLAS thread per call: our pool already runs one tile per core */
    openblas_set_num_threads(1);
    c->be.name = c->vnni ? "cpu-avx512" : c->simd ? "cpu-avx2" : "cpu-scalar";
    c->be.ctx = c;
#define X(op, ret, params) c->be.op = cpu_##op;
    K_OPS(X)
#undef X
    return &c->be;
oom:
    if (c) {
        if (c->pool) cpu_pool_free(c->pool);
        free(c->ts);
        free(c);
    }
    if (err) snprintf(err, errcap, "cpu backend: out of memory creating %d threads", n_threads);
    return NULL;
}
