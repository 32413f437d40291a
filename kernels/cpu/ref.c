/*
 * kernels/cpu/ref.c — the reference backend: every op as the plainest loop
 * that computes it, on one thread, in f32 with double accumulators. It is
 * the yardstick the fast CPU backend (and later the CUDA one) is tested
 * against, never used for serving.
 */
#include "kernels/cpu/cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    KBackend be;
    float *row;                 /* one dequantized row */
    size_t row_cap;
    double *scores;
    size_t scores_cap;
    double *acc;
    size_t acc_cap;
    const char *error;
} Ref;

static int grow(Ref *r, void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    void *p = realloc(*buf, need * elem);
    if (!p) {
        if (!r->error) r->error = "reference backend: out of memory";
        return -1;
    }
    *buf = p;
    *cap = need;
    return 0;
}

static void ref_matmul(void *ctx, const KTensor *w, const float *bias, const float *x, int n, float *y)
{
    Ref *r = ctx;
    int64_t k = w->ne[0], rows = w->ne[1];
    size_t rb = k_row_bytes(w->dtype, k);
    if (grow(r, (void **)&r->row, &r->row_cap, (size_t)k, sizeof(float))) return;
    for (int64_t i = 0; i < rows; i++) {
        cpu_dequant_row(w->dtype, (const uint8_t *)w->data + i * rb, r->row, k);
        for (int t = 0; t < n; t++) {
            double s = 0;
            for (int64_t j = 0; j < k; j++) s += (double)r->row[j] * x[(size_t)t * k + j];
            y[(size_t)t * rows + i] = (float)(s + (bias ? bias[i] : 0));
        }
    }
}

static void ref_matmul_multi(void *ctx, int count, const KTensor *const *w, const float *const *bias,
                             const float *x, int n, float *const *y)
{
    for (int i = 0; i < count; i++) ref_matmul(ctx, w[i], bias ? bias[i] : NULL, x, n, y[i]);
}

static void ref_embed(void *ctx, const KTensor *e, const int32_t *tokens, int n, float *out)
{
    int64_t k = e->ne[0];
    size_t rb = k_row_bytes(e->dtype, k);
    for (int i = 0; i < n; i++)
        cpu_dequant_row(e->dtype, (const uint8_t *)e->data + (size_t)tokens[i] * rb, out + (size_t)i * k, k);
}

static void ref_rmsnorm(void *ctx, const float *x, const float *w, float *y, int n, int dim, float eps)
{
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float scale = (float)(1.0 / sqrt(ss / dim + eps));
        for (int i = 0; i < dim; i++) y[(size_t)t * dim + i] = xr[i] * scale * w[i];
    }
}

static void ref_rope(void *ctx, float *x, int n, int n_heads, int head_dim, int rot_dim, const float *cs,
                     KRopeStyle style)
{
    int half = rot_dim / 2;
    for (int t = 0; t < n; t++) {
        const float *c = cs + (size_t)t * rot_dim;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * head_dim;
            for (int p = 0; p < half; p++) {
                int i0 = style == K_ROPE_NEOX ? p : 2 * p;
                int i1 = style == K_ROPE_NEOX ? p + half : 2 * p + 1;
                float a = v[i0], b = v[i1], co = c[2 * p], si = c[2 * p + 1];
                v[i0] = a * co - b * si;
                v[i1] = a * si + b * co;
            }
        }
    }
}

static void ref_swiglu(void *ctx, const float *gate, const float *up, float *out, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        double g = gate[i];
        out[i] = (float)(g / (1.0 + exp(-g)) * up[i]);
    }
}

static void ref_add(void *ctx, float *y, const float *x, size_t count)
{
    for (size_t i = 0; i < count; i++) y[i] += x[i];
}

static void ref_softmax(void *ctx, float *x, int n, int dim)
{
    for (int t = 0; t < n; t++) {
        float *r = x + (size_t)t * dim;
        float mx = -INFINITY;
        for (int i = 0; i < dim; i++) mx = fmaxf(mx, r[i]);
        double s = 0;
        for (int i = 0; i < dim; i++) s += exp((double)r[i] - mx);
        for (int i = 0; i < dim; i++) r[i] = (float)(exp((double)r[i] - mx) / s);
    }
}

static void ref_kv_store(void *ctx, void *k_pool, void *v_pool, KDtype kv_dtype, int kv_dim, const float *k,
                         const float *v, const int32_t *slots, int n)
{
    size_t rb = k_row_bytes(kv_dtype, kv_dim);
    for (int i = 0; i < n; i++) {
        cpu_quant_row(kv_dtype, k + (size_t)i * kv_dim, (uint8_t *)k_pool + (size_t)slots[i] * rb, kv_dim);
        cpu_quant_row(kv_dtype, v + (size_t)i * kv_dim, (uint8_t *)v_pool + (size_t)slots[i] * rb, kv_dim);
    }
}

static void ref_attention(void *ctx, const KAttnArgs *a)
{
    Ref *r = ctx;
    int kv_dim = a->n_head_kv * a->head_dim, qd = a->n_head * a->head_dim, group = a->n_head / a->n_head_kv;
    size_t rb = k_row_bytes(a->kv_dtype, kv_dim);
    if (grow(r, (void **)&r->row, &r->row_cap, (size_t)kv_dim, sizeof(float))) return;
    if (grow(r, (void **)&r->acc, &r->acc_cap, (size_t)a->head_dim, sizeof(double))) return;
    for (int s = 0; s < a->n_seqs; s++) {
        const KAttnSeq *sq = &a->seqs[s];
        if (grow(r, (void **)&r->scores, &r->scores_cap, (size_t)sq->n_ctx, sizeof(double))) return;
        for (int j = 0; j < sq->n_new; j++) {
            int visible = sq->n_ctx - sq->n_new + j + 1;
            const float *q = a->q + (size_t)(sq->row0 + j) * qd;
            float *out = a->out + (size_t)(sq->row0 + j) * qd;
            for (int h = 0; h < a->n_head; h++) {
                int kh = h / group;
                const float *qh = q + h * a->head_dim;
                double mx = -INFINITY;
                for (int c = 0; c < visible; c++) {
                    cpu_dequant_row(a->kv_dtype, (const uint8_t *)a->k_pool + (size_t)sq->slots[c] * rb, r->row, kv_dim);
                    double dot = 0;
                    for (int i = 0; i < a->head_dim; i++) dot += (double)qh[i] * r->row[kh * a->head_dim + i];
                    r->scores[c] = dot * a->scale;
                    if (r->scores[c] > mx) mx = r->scores[c];
                }
                double sum = 0;
                for (int c = 0; c < visible; c++) sum += (r->scores[c] = exp(r->scores[c] - mx));
                float *oh = out + h * a->head_dim;
                double *acc = r->acc;
                int hd = a->head_dim;
                for (int i = 0; i < hd; i++) acc[i] = 0;
                for (int c = 0; c < visible; c++) {
                    cpu_dequant_row(a->kv_dtype, (const uint8_t *)a->v_pool + (size_t)sq->slots[c] * rb, r->row, kv_dim);
                    double p = r->scores[c] / sum;
                    for (int i = 0; i < hd; i++) acc[i] += p * r->row[kh * a->head_dim + i];
                }
                for (int i = 0; i < hd; i++) oh[i] = (float)acc[i];
            }
        }
    }
}

/* Host memory: the CPU backends' buffers are malloc'ed and their copies are
 * memcpy; every op has finished when it returns, so sync has nothing to wait for. */
static void *ref_buf_alloc(void *ctx, size_t bytes)
{
    return malloc(bytes ? bytes : 1);
}

static void ref_buf_free(void *ctx, void *p)
{
    free(p);
}

static void ref_upload(void *ctx, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
}

static void ref_download(void *ctx, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
}

static int ref_sync(void *ctx)
{
    return 0;
}

static const char *ref_error(void *ctx)
{
    Ref *r = ctx;
    const char *e = r->error;
    r->error = NULL;
    return e;
}

static void ref_destroy(void *ctx)
{
    Ref *r = ctx;
    free(r->row);
    free(r->scores);
    free(r->acc);
    free(r);
}

KBackend *cpu_ref_backend_new(char *err, size_t errcap)
{
    Ref *r = calloc(1, sizeof *r);
    if (!r) {
        if (err) snprintf(err, errcap, "reference backend: out of memory");
        return NULL;
    }
    r->be.name = "cpu-ref";
    r->be.ctx = r;
#define X(op, ret, params) r->be.op = ref_##op;
    K_OPS(X)
#undef X
    return &r->be;
}
