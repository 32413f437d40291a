/*
 * kernels/cpu/devref.c — the reference device backend: KDevOps filled on the
 * host, one thread, bf16 activations rounded where kernels/cuda rounds, so
 * that runtime/model_dev.c (upload, memory plan, flat index arrays, tiles,
 * device argmax and sampling) runs and is tested on machines without a GPU. Not fast; not
 * a serving backend (k_backend_new kind DEV_REF, tests only).
 *
 *   KBackend buffer ops ── malloc'd "device" memory (a 1 GiB budget that
 *   mem_info reports, minus what is allocated)
 *   KDevOps ── plain loops over bf16 rows, f32 accumulation
 *   K_OPS host-f32 compute ops ── refused by name, as on CUDA
 *   fp8 e4m3 ── CUDA's rules (kernels/backend.h "fp8 e4m3"): quant_fp8's
 *   scales, matmuls of <= 8 rows on bf16 x, more rows on per-token e4m3 x,
 *   rope_kv_fp8 and attention over F8_E4M3 pools (k_f32_to_e4m3 rounding)
 *   matmul_swiglu ── set: its matmul then its swiglu, the op's definition
 *   upload_async ── copies at once, and checks its contract: the source's
 *   hash is kept until an event recorded after the upload is waited (or a
 *   sync, upload or download); a source that changed before then fails the
 *   backend by name (what a GPU still behind would have read wrongly)
 *   attention_rope ── the two ops one after the other (its meaning), set
 *   when SGL_CUDA_FUSE_ROPE=1 as on CUDA, so model_dev.c's fused branch runs
 *   here too
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

enum { DEVREF_BUDGET = 1 << 30 };

/* An upload_async whose source the host must not touch yet: tag is the
 * number of event_records before it (an event with a larger seq covers it). */
typedef struct {
    const char *src;
    size_t bytes;
    uint64_t hash;
    unsigned tag;
} PendUpload;
enum { DEVREF_PENDING = 64 };

typedef struct {
    unsigned seq;               /* the record it was last placed by (0: never) */
} DevRefEvent;

typedef struct {
    KBackend be;
    KDevOps dev;
    size_t used;
    PendUpload pend[DEVREF_PENDING];
    int n_pend;
    unsigned n_records;
    char error[160];
} DevRef;

typedef uint16_t bf;

static float f(bf x) { return k_bf16_to_f32(x); }
static bf b(float x) { return k_f32_to_bf16(x); }
static float rb(float x) { return f(b(x)); } /* round through bf16 */

static void refuse(void *ctx, const char *op)
{
    DevRef *d = ctx;
    if (!d->error[0]) snprintf(d->error, sizeof d->error, "dev-ref backend: op '%s' takes host f32 activations", op);
}

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
static void h_swiglu(void *ctx, const float *gate, const float *up, float *out, size_t count) { refuse(ctx, "swiglu"); }
static void h_add(void *ctx, float *y, const float *x, size_t count) { refuse(ctx, "add"); }
static void h_softmax(void *ctx, float *x, int n, int dim) { refuse(ctx, "softmax"); }
static void h_kv_store(void *ctx, void *k_pool, void *v_pool, KDtype kv_dtype, int kv_dim, const float *k,
                       const float *v, const int32_t *slots, int n)
{
    refuse(ctx, "kv_store");
}
static void h_attention(void *ctx, const KAttnArgs *a) { refuse(ctx, "attention"); }

/* ---- memory: a size word before each block ---- */

static void *b_buf_alloc(void *ctx, size_t bytes)
{
    DevRef *d = ctx;
    if (bytes > DEVREF_BUDGET - d->used) return NULL;
    size_t *p = malloc(bytes + 16);
    if (!p) return NULL;
    p[0] = bytes;
    d->used += bytes;
    return (char *)p + 16;
}
static void b_buf_free(void *ctx, void *p)
{
    DevRef *d = ctx;
    if (!p) return;
    size_t *h = (size_t *)(void *)((char *)p - 16);
    d->used -= h[0];
    free(h);
}
/* ---- upload_async's contract (see the top) ---- */

static uint64_t fnv(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211u;
    return h;
}

/* Fails the backend if a pending source changed; then drops the pending
 * uploads with tag < seq (UINT32_MAX: all of them). */
static void pend_check(DevRef *d, unsigned seq)
{
    int k = 0;
    for (int i = 0; i < d->n_pend; i++) {
        const PendUpload *u = &d->pend[i];
        if (fnv(u->src, u->bytes) != u->hash && !d->error[0])
            snprintf(d->error, sizeof d->error,
                     "dev-ref backend: upload_async: host memory %p (%zu bytes) changed before the stream read it",
                     (const void *)u->src, u->bytes);
        if (u->tag >= seq) d->pend[k++] = *u;
    }
    d->n_pend = k;
}

static void b_upload(void *ctx, void *dst, const void *src, size_t bytes)
{
    pend_check(ctx, UINT32_MAX); /* waits for the stream, as CUDA's does */
    memcpy(dst, src, bytes);
}
static void b_download(void *ctx, void *dst, const void *src, size_t bytes)
{
    pend_check(ctx, UINT32_MAX);
    memcpy(dst, src, bytes);
}
static int b_sync(void *ctx)
{
    pend_check(ctx, UINT32_MAX);
    return ((DevRef *)ctx)->error[0] ? -1 : 0;
}
static const char *b_error(void *ctx)
{
    DevRef *d = ctx;
    static __thread char last[160];
    if (!d->error[0]) return NULL;
    memcpy(last, d->error, sizeof last);
    d->error[0] = 0;
    return last;
}
static void b_destroy(void *ctx) { free(ctx); }

/* ---- device ops ---- */

static void d_gather(void *ctx, const void *table, int dim, const int32_t *idx, int n, void *out)
{
    for (int i = 0; i < n; i++)
        memcpy((bf *)out + (size_t)i * dim, (const bf *)table + (size_t)idx[i] * dim, (size_t)dim * sizeof(bf));
}

static void d_add_rmsnorm(void *ctx, void *hp, const void *dp, const void *wp, void *yp, int n, int dim, float eps)
{
    bf *h = hp, *y = yp;
    const bf *delta = dp, *w = wp;
    for (int r = 0; r < n; r++) {
        bf *hr = h + (size_t)r * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) {
            if (delta) hr[i] = b(f(hr[i]) + f(delta[(size_t)r * dim + i]));
            ss += (double)f(hr[i]) * f(hr[i]);
        }
        float inv = 1.0f / sqrtf((float)(ss / dim) + eps);
        for (int i = 0; i < dim; i++) y[(size_t)r * dim + i] = b(rb(f(hr[i]) * inv) * f(w[i]));
    }
}

/* ---- fp8 e4m3: the CUDA backend's rules (kernels/backend.h "fp8 e4m3") ---- */

static float e4m3(uint8_t q) { return k_e4m3_to_f32(q); }

/* One row of `in` act values into e4m3 bytes and its scale: max|x| / 448
 * (1 for a zero row), q = e4m3(x * (1 / scale)). */
static float quant_row(const bf *x, int in, uint8_t *q)
{
    float mx = 0;
    for (int i = 0; i < in; i++) mx = fmaxf(mx, fabsf(f(x[i])));
    float sc = mx > 0 ? mx / 448.0f : 1.0f, inv = 1.0f / sc;
    for (int i = 0; i < in; i++) q[i] = k_f32_to_e4m3(f(x[i]) * inv);
    return sc;
}

static void d_quant_fp8(void *ctx, const void *wp, int in, int out, void *qp, float *scale)
{
    for (int o = 0; o < out; o++)
        scale[o] = quant_row((const bf *)wp + (size_t)o * in, in, (uint8_t *)qp + (size_t)o * in);
}

static int d_fp8_reserve(void *ctx, int rows, int in) { return 0; } /* fp8_matmul allocates per call */

enum { FP8_GEMV_ROWS = 8 }; /* CUDA's CU_GEMV_MAX_N: up to this many rows keep x in bf16 */

static void fp8_matmul(void *ctx, const KTensor *w, const bf *bs, const bf *x, int ldx, int n, bf *y, int ldy)
{
    const uint8_t *W = w->data;
    int in = (int)w->ne[0], out = (int)w->ne[1];
    uint8_t *xq = n > FP8_GEMV_ROWS ? malloc((size_t)n * in) : NULL;
    float *sx = n > FP8_GEMV_ROWS ? malloc((size_t)n * sizeof *sx) : NULL;
    if (n > FP8_GEMV_ROWS && (!xq || !sx)) {
        refuse(ctx, "fp8 matmul: out of memory");
        free(xq);
        free(sx);
        return;
    }
    for (int t = 0; xq && t < n; t++) sx[t] = quant_row(x + (size_t)t * ldx, in, xq + (size_t)t * in);
    for (int t = 0; t < n; t++)
        for (int o = 0; o < out; o++) {
            const uint8_t *wr = W + (size_t)o * in;
            float acc = 0, v;
            if (xq) {
                const uint8_t *xr = xq + (size_t)t * in;
                for (int i = 0; i < in; i++) acc += e4m3(xr[i]) * e4m3(wr[i]);
                v = rb(acc * sx[t] * w->scale[o]);
            } else {
                for (int i = 0; i < in; i++) acc += f(x[(size_t)t * ldx + i]) * e4m3(wr[i]);
                v = rb(acc * w->scale[o]);
            }
            y[(size_t)t * ldy + o] = b(bs ? v + f(bs[o]) : v);
        }
    free(xq);
    free(sx);
}

static void d_matmul(void *ctx, const KTensor *w, const void *bias, const void *xp, int ldx, int n, void *yp, int ldy)
{
    if (w->dtype == K_DTYPE_F8_E4M3 && w->scale) {
        fp8_matmul(ctx, w, bias, xp, ldx, n, yp, ldy);
        return;
    }
    if (w->dtype != K_DTYPE_BF16) {
        refuse(ctx, "matmul of a non-BF16 weight");
        return;
    }
    const bf *x = xp, *W = w->data, *bs = bias;
    bf *y = yp;
    int in = (int)w->ne[0], out = (int)w->ne[1];
    for (int t = 0; t < n; t++)
        for (int o = 0; o < out; o++) {
            float acc = 0;
            for (int i = 0; i < in; i++) acc += f(x[(size_t)t * ldx + i]) * f(W[(size_t)o * in + i]);
            float v = rb(acc);
            y[(size_t)t * ldy + o] = b(bs ? v + f(bs[o]) : v);
        }
}

static void d_logits(void *ctx, const KTensor *w, const void *xp, int n, float *y)
{
    const bf *x = xp, *W = w->data;
    int in = (int)w->ne[0], out = (int)w->ne[1];
    for (int t = 0; t < n; t++)
        for (int o = 0; o < out; o++) {
            float acc = 0;
            for (int i = 0; i < in; i++) acc += f(x[(size_t)t * in + i]) * f(W[(size_t)o * in + i]);
            y[(size_t)t * out + o] = acc;
        }
}

/* k and v into the pools: bf16, or (fp8) rounded on to e4m3 */
static void kv_put(void *pool, int fp8, size_t at, const bf *src, int count)
{
    if (!fp8) {
        memcpy((bf *)pool + at, src, (size_t)count * sizeof(bf));
        return;
    }
    for (int i = 0; i < count; i++) ((uint8_t *)pool)[at + i] = k_f32_to_e4m3(f(src[i]));
}

static void rope_kv(void *qkvp, int n, int n_head, int n_head_kv, int hd, int rot, const float *inv_freq,
                    KRopeStyle style, const int32_t *pos, const int32_t *wslot, void *K, void *V, int fp8)
{
    bf *qkv = qkvp;
    int kv_dim = n_head_kv * hd, half = rot / 2;
    for (int r = 0; r < n; r++) {
        bf *row = qkv + (size_t)r * (n_head + 2 * n_head_kv) * hd;
        size_t so = wslot[r] >= 0 ? (size_t)wslot[r] * kv_dim : 0;
        for (int hh = 0; hh < n_head + n_head_kv; hh++) {
            bf *x = row + hh * hd;
            bf tmp[512];
            memcpy(tmp, x, (size_t)hd * sizeof(bf));
            for (int i = 0; i < half; i++) {
                float cs = rb(cosf(pos[r] * inv_freq[i])), sn = rb(sinf(pos[r] * inv_freq[i]));
                int i1 = style == K_ROPE_NEOX ? i : 2 * i, i2 = style == K_ROPE_NEOX ? i + half : 2 * i + 1;
                float x1 = f(x[i1]), x2 = f(x[i2]);
                tmp[i1] = b(rb(x1 * cs) + rb(-x2 * sn));
                tmp[i2] = b(rb(x2 * cs) + rb(x1 * sn));
            }
            if (hh < n_head) memcpy(x, tmp, (size_t)hd * sizeof(bf));
            else if (wslot[r] >= 0) kv_put(K, fp8, so + (size_t)(hh - n_head) * hd, tmp, hd);
        }
        if (wslot[r] >= 0) kv_put(V, fp8, so, row + (size_t)(n_head + n_head_kv) * hd, kv_dim);
    }
}

static void d_rope_kv(void *ctx, void *qkv, int n, int n_head, int n_head_kv, int hd, int rot, const float *inv_freq,
                      KRopeStyle style, const int32_t *pos, const int32_t *wslot, void *kp, void *vp)
{
    rope_kv(qkv, n, n_head, n_head_kv, hd, rot, inv_freq, style, pos, wslot, kp, vp, 0);
}

static void d_rope_kv_fp8(void *ctx, void *qkv, int n, int n_head, int n_head_kv, int hd, int rot,
                          const float *inv_freq, KRopeStyle style, const int32_t *pos, const int32_t *wslot, void *kp,
                          void *vp)
{
    rope_kv(qkv, n, n_head, n_head_kv, hd, rot, inv_freq, style, pos, wslot, kp, vp, 1);
}

/* value i of a pool row starting at element `at` */
static float kv_get(const void *pool, int fp8, size_t at)
{
    return fp8 ? e4m3(((const uint8_t *)pool)[at]) : f(((const bf *)pool)[at]);
}

/* one query row of one head over ctx slots */
static void attend(const KDevAttn *a, int r, int h, const int32_t *slots, int len)
{
    const bf *q = (const bf *)a->q + (size_t)r * a->ldq + (size_t)h * a->head_dim;
    int hd = a->head_dim, kvh = h / (a->n_head / a->n_head_kv), kv_dim = a->n_head_kv * hd;
    float *s = malloc((size_t)(len ? len : 1) * sizeof *s), acc[512] = {0};
    float mx = -INFINITY, sum = 0;
    for (int t = 0; t < len; t++) {
        size_t k = (size_t)slots[t] * kv_dim + (size_t)kvh * hd;
        float d = 0;
        for (int i = 0; i < hd; i++) d += f(q[i]) * kv_get(a->k_pool, a->kv_fp8, k + i);
        s[t] = d * a->scale;
        if (s[t] > mx) mx = s[t];
    }
    for (int t = 0; t < len; t++) {
        float p = expf(s[t] - mx);
        sum += p;
        size_t v = (size_t)slots[t] * kv_dim + (size_t)kvh * hd;
        for (int i = 0; i < hd; i++) acc[i] += p * kv_get(a->v_pool, a->kv_fp8, v + i);
    }
    bf *o = (bf *)a->out + (size_t)r * a->n_head * hd + (size_t)h * hd;
    for (int i = 0; i < hd; i++) o[i] = b(sum > 0 ? acc[i] / sum : 0);
    free(s);
}

static void d_attention(void *ctx, const KDevAttn *a)
{
    if (a->head_dim > 512) {
        refuse(ctx, "attention with head_dim > 512");
        return;
    }
    if (a->n_tiles > 0) {
        for (int t = 0; t < a->n_tiles; t++) {
            const int32_t *tl = a->tiles + 4 * t;
            if (tl[1] > K_ATTN_TILE_ROWS) refuse(ctx, "attention tile of more than K_ATTN_TILE_ROWS rows");
            for (int i = 0; i < tl[1]; i++)
                for (int h = 0; h < a->n_head; h++) attend(a, tl[0] + i, h, a->slots + tl[2], tl[3] + i);
        }
        return;
    }
    for (int r = 0; r < a->n_rows; r++) {
        if (a->row_len[r] > a->max_len) refuse(ctx, "attention row longer than max_len");
        for (int h = 0; h < a->n_head; h++) attend(a, r, h, a->slots + a->row_off[r], a->row_len[r]);
    }
}

static void d_attention_rope(void *ctx, const KDevAttn *a, const KDevRope *r)
{
    rope_kv(r->qkv, a->n_rows, a->n_head, a->n_head_kv, a->head_dim, r->rot_dim, r->inv_freq, r->style, r->pos,
            r->wslot, r->k_pool, r->v_pool, a->kv_fp8);
    d_attention(ctx, a);
}

static void d_swiglu(void *ctx, const void *gup, int n, int ff, void *outp)
{
    const bf *gu = gup;
    bf *out = outp;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < ff; i++) {
            float g = f(gu[(size_t)r * 2 * ff + i]), u = f(gu[(size_t)r * 2 * ff + ff + i]);
            out[(size_t)r * ff + i] = b(rb(g / (1.0f + expf(-g))) * u);
        }
}

/* KDevOps.matmul_swiglu by its definition: this backend's matmul into the
 * caller's gu scratch, then its swiglu (so the device path of model_dev.c
 * that calls the fused op runs in every dev-ref test) */
static void d_matmul_swiglu(void *ctx, const KTensor *w, const void *x, int ldx, int n, int ff, void *gu, void *act)
{
    d_matmul(ctx, w, NULL, x, ldx, n, gu, 2 * ff);
    d_swiglu(ctx, gu, n, ff, act);
}

static void d_mem_info(void *ctx, size_t *free_b, size_t *total_b)
{
    DevRef *d = ctx;
    *total_b = DEVREF_BUDGET;
    *free_b = DEVREF_BUDGET - d->used;
}

static void d_zero(void *ctx, void *p, size_t bytes) { memset(p, 0, bytes); }
/* a size word before each block: host_free forgets the pending uploads
 * from it (CUDA's cudaFreeHost waits for the device) */
static void *d_host_alloc(void *ctx, size_t bytes)
{
    size_t *p = malloc(bytes + 16);
    if (!p) return NULL;
    p[0] = bytes;
    return (char *)p + 16;
}
static void d_host_free(void *ctx, void *p)
{
    DevRef *d = ctx;
    if (!p) return;
    size_t *h = (size_t *)(void *)((char *)p - 16);
    const char *lo = p, *hi = lo + h[0];
    int k = 0;
    for (int i = 0; i < d->n_pend; i++)
        if (d->pend[i].src < lo || d->pend[i].src >= hi) d->pend[k++] = d->pend[i];
    d->n_pend = k;
    free(h);
}

static void d_argmax(void *ctx, const float *logits, int n, int v, int32_t *ids)
{
    for (int r = 0; r < n; r++) {
        const float *row = logits + (size_t)r * v;
        int best = 0;
        for (int i = 1; i < v; i++)
            if (row[i] > row[best]) best = i;
        ids[r] = best;
    }
}

/* ---- sampling: the chain of KDevSample, spelled out plainly ----
 *
 * Every allowed id is put in one list sorted by processed logit (ties: lower
 * id); each stage keeps a prefix of it, and the draw walks the survivors in
 * id order. Each softmax is max-subtracted, expf per term, the sum in double
 * and the scale (float)(1 / sum), the arithmetic of runtime/sampler.c. */

typedef struct {
    int32_t id;
    float l;
} SCand;

static int scand_before(const SCand *a, const SCand *b)
{
    if (a->l != b->l) return a->l > b->l;
    return a->id < b->id;
}

static int scand_cmp(const void *pa, const void *pb)
{
    const SCand *a = pa, *b = pb;
    return scand_before(a, b) ? -1 : scand_before(b, a) ? 1 : 0;
}

static int scand_cmp_id(const void *pa, const void *pb)
{
    const SCand *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

static double list_lse(const SCand *c, int m)
{
    float mx = c[0].l;
    for (int i = 1; i < m; i++)
        if (c[i].l > mx) mx = c[i].l;
    if (isinf(mx)) return mx;
    double sum = 0;
    for (int i = 0; i < m; i++) sum += expf(c[i].l - mx);
    return mx + log(sum);
}

/* The best k of c[0..m) by logit, most likely first, as (id, l - lse). */
static int list_top(SCand *c, int m, int k, double lse, int32_t *ids, float *lps)
{
    if (k > m) k = m;
    for (int j = 0; j < k; j++) {
        int best = j;
        for (int i = j + 1; i < m; i++)
            if (scand_before(&c[i], &c[best])) best = i;
        SCand t = c[j];
        c[j] = c[best];
        c[best] = t;
    }
    for (int j = 0; j < k; j++) {
        ids[j] = c[j].id;
        lps[j] = (float)((double)c[j].l - lse);
    }
    return k;
}

/* (float)(1 / sum of expf(l - mx)) over the first m of a sorted list, and
 * the terms into e. */
static float list_scale(const SCand *c, int m, float *e)
{
    double sum = 0;
    for (int i = 0; i < m; i++) {
        e[i] = expf(c[i].l - c[0].l);
        sum += e[i];
    }
    return (float)(1.0 / sum);
}

static void sample_row(const KDevSample *s, int r, SCand *c, SCand *tmp, float *e, float *raw)
{
    const KDevSampleRow *p = &s->rows[r];
    float *row = s->logits + (size_t)r * s->ld;
    int n = s->n, nt = p->n_top < K_SAMPLE_TOP_MAX ? p->n_top : K_SAMPLE_TOP_MAX;
    int32_t *top_id = s->top_id + (size_t)r * K_SAMPLE_TOP_MAX;
    float *top_lp = s->top_lp + (size_t)r * K_SAMPLE_TOP_MAX;
    double lse = 0;
    s->out_lp[r] = 0;
    s->out_n_top[r] = 0;
    memcpy(raw, row, (size_t)n * sizeof *raw);
    if (p->lp_mode == K_LP_RAW) {
        for (int i = 0; i < n; i++) c[i] = (SCand){i, raw[i]};
        lse = list_lse(c, n);
        s->out_n_top[r] = nt > 0 ? list_top(c, n, nt, lse, top_id, top_lp) : 0;
    }
    for (int j = 0; j < p->n_pen; j++) {
        const KDevPenalty *pe = &s->pen[p->pen_off + j];
        if (pe->id < 0 || pe->id >= n) continue;
        float l = row[pe->id];
        if (p->repetition_penalty != 1.0f) l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
        if (pe->generated) l -= p->frequency_penalty * (float)pe->generated + p->presence_penalty;
        row[pe->id] = l;
    }
    for (int j = 0; j < p->n_bias; j++) {
        const KDevBias *bi = &s->bias[p->bias_off + j];
        if (bi->id >= 0 && bi->id < n) row[bi->id] += bi->bias;
    }
    const uint32_t *allow = p->allow_off >= 0 ? s->allow + p->allow_off : NULL;
    float inv_t = 1.0f / p->temperature;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!allow || (allow[i >> 5] >> (i & 31) & 1))
            c[m++] = (SCand){i, p->temperature != 1.0f ? row[i] * inv_t : row[i]};
    if (m == 0) {
        s->out_id[r] = -1;
        s->out_n_top[r] = 0;
        return;
    }
    if (p->lp_mode == K_LP_PROCESSED) {
        lse = list_lse(c, m);
        memcpy(tmp, c, (size_t)m * sizeof *c);
        s->out_n_top[r] = nt > 0 ? list_top(tmp, m, nt, lse, top_id, top_lp) : 0;
    }
    qsort(c, (size_t)m, sizeof *c, scand_cmp);
    int32_t id;
    float chosen = c[0].l;
    if (p->greedy) {
        id = c[0].id;
    } else {
        if (p->top_k > 0 && p->top_k < m) m = p->top_k;
        if (p->top_p < 1.0f && m > 1) {
            float inv = list_scale(c, m, e);
            double cum = 0;
            for (int i = 0; i < m; i++) {
                cum += e[i] * inv;
                if (cum >= p->top_p) {
                    m = i + 1;
                    break;
                }
            }
        }
        if (p->min_p > 0.0f && m > 1) {
            float inv = list_scale(c, m, e), pmax = 0;
            for (int i = 0; i < m; i++)
                if (e[i] * inv > pmax) pmax = e[i] * inv;
            float thr = p->min_p * pmax;
            int o = 0;
            while (o < m && e[o] * inv >= thr) o++;
            m = o;
        }
        float inv = list_scale(c, m, e);
        for (int i = 0; i < m; i++) tmp[i] = (SCand){c[i].id, e[i] * inv};   /* l: the probability */
        qsort(tmp, (size_t)m, sizeof *tmp, scand_cmp_id);
        double cum = 0;
        int k = -1;
        for (int i = 0; i < m && k < 0; i++) {
            cum += tmp[i].l;
            if (p->u < cum) k = i;
        }
        for (int i = m; k < 0 && i-- > 0;)   /* rounding left u above the total */
            if (tmp[i].l > 0) k = i;
        id = tmp[k < 0 ? m - 1 : k].id;
        chosen = p->temperature != 1.0f ? row[id] * inv_t : row[id];
    }
    s->out_id[r] = id;
    if (p->lp_mode == K_LP_RAW) s->out_lp[r] = (float)((double)raw[id] - lse);
    else if (p->lp_mode == K_LP_PROCESSED) s->out_lp[r] = (float)((double)chosen - lse);
}

static void d_sample(void *ctx, const KDevSample *s)
{
    size_t n = (size_t)(s->n > 0 ? s->n : 1);
    SCand *c = malloc(n * sizeof *c), *tmp = malloc(n * sizeof *tmp);
    float *e = malloc(n * sizeof *e), *raw = malloc(n * sizeof *raw);
    if (!c || !tmp || !e || !raw) {
        DevRef *d = ctx;
        if (!d->error[0]) snprintf(d->error, sizeof d->error, "dev-ref backend: sample: out of memory");
    } else {
        for (int r = 0; r < s->n_rows; r++) sample_row(s, r, c, tmp, e, raw);
    }
    free(c);
    free(tmp);
    free(e);
    free(raw);
}
/* host memory: any thread may drive it */
static void d_bind(void *ctx) {}
/* No graphs: model_dev.c then runs every step's ops itself. */
static int d_graph_begin(void *ctx) { return -1; }
static void *d_graph_end(void *ctx)
{
    refuse(ctx, "graph_end without graph_begin");
    return NULL;
}
static void d_graph_launch(void *ctx, void *g) { refuse(ctx, "graph_launch (this backend has no graphs)"); }
static void d_graph_free(void *ctx, void *g) {}

/* ---- the overlap scheduler's ops: synchronous here, the same results ---- */

static void d_pick_tokens(void *ctx, int32_t *tok, const int32_t *src, const int32_t *prev, int n)
{
    for (int i = 0; i < n; i++)
        if (src[i] >= 0) tok[i] = prev[src[i]];
}
static void d_download_async(void *ctx, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void d_upload_async(void *ctx, void *dst, const void *src, size_t bytes)
{
    DevRef *d = ctx;
    pend_check(d, 0);
    if (d->n_pend == DEVREF_PENDING) {
        if (!d->error[0])
            snprintf(d->error, sizeof d->error, "dev-ref backend: upload_async: %d uploads pending (no event waited)",
                     DEVREF_PENDING);
        return;
    }
    memcpy(dst, src, bytes);
    d->pend[d->n_pend++] = (PendUpload){src, bytes, fnv(src, bytes), d->n_records};
}
/* every op has run by the time it returns; an event orders the checks */
static void *d_event_new(void *ctx) { return calloc(1, sizeof(DevRefEvent)); }
static void d_event_free(void *ctx, void *ev) { free(ev); }
static void d_event_record(void *ctx, void *ev)
{
    DevRef *d = ctx;
    pend_check(d, 0);
    ((DevRefEvent *)ev)->seq = ++d->n_records;
}
static int d_event_wait(void *ctx, void *ev)
{
    DevRef *d = ctx;
    pend_check(d, ((DevRefEvent *)ev)->seq);
    return d->error[0] ? -1 : 0;
}

KBackend *cpu_devref_backend_new(char *err, size_t errcap)
{
    DevRef *d = calloc(1, sizeof *d);
    if (!d) {
        if (err) snprintf(err, errcap, "dev-ref backend: out of memory");
        return NULL;
    }
    d->be.name = "dev-ref";
    d->be.ctx = d;
#define X(op) d->be.op = h_##op;
    X(matmul) X(matmul_multi) X(embed) X(rmsnorm) X(rope) X(swiglu) X(add) X(softmax) X(kv_store) X(attention)
#undef X
    d->be.buf_alloc = b_buf_alloc;
    d->be.buf_free = b_buf_free;
    d->be.upload = b_upload;
    d->be.download = b_download;
    d->be.sync = b_sync;
    d->be.error = b_error;
    d->be.destroy = b_destroy;
    d->dev.act_dtype = K_DTYPE_BF16;
#define X(op, ret, params) d->dev.op = d_##op;
    K_DEV_OPS(X)
#undef X
    const char *fr = getenv("SGL_CUDA_FUSE_ROPE");
    d->dev.attention_rope = fr && !strcmp(fr, "1") ? d_attention_rope : NULL;
    d->dev.matmul_swiglu = d_matmul_swiglu;
    d->be.dev = &d->dev;
    return &d->be;
}
