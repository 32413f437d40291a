/*
 * runtime/model_dev.c — the model on a device backend (see model_dev.h).
 *
 * The layer loop (llama: pre-norm, GQA attention, SwiGLU), per layer:
 *
 *   x = rmsnorm(h += d)            (d: the previous sublayer's output)
 *   qkv = x · [Wq; Wk; Wv]ᵀ (+ b)  rope(q, k) by position, k/v -> slots
 *   att = attention(q, pool, flat slot lists)
 *   d = att · Woᵀ ; x = rmsnorm(h += d)
 *   gu = x · [Wg; Wu]ᵀ ; d = (silu(g) * u) · Wdᵀ
 *
 * then, for the logit rows only: rmsnorm(h + d) · Woutᵀ as f32.
 *
 * Tensor parallelism (m->tp_comm set; runtime/model_tp.c runs this file on
 * every rank): the rank's weights are its shard (TpShare: its heads, its
 * ff columns, its vocabulary rows), each `d` above is a partial sum that is
 * all-reduced right after its matmul, and the logits are all-gathered
 * ([rank][row][vocab/N], put back in [row][vocab] order by a gather of
 * byte rows). Only rank 0 downloads logits and ids.
 * Decode-step graphs: a step whose sequences all bring one new token, at
 * most MODEL_GRAPH_MAX_ROWS of them, is padded up to the next size P of
 * GRAPH_ROWS and its embedding + layer loop replayed from a graph recorded
 * the first time P came (the logit rows after it run op by op: their count
 * and kinds vary). A graph reads everything that changes between steps from
 * fixed device arrays, filled by one upload before the replay:
 *
 *   gidx: | tok P | pos P | wslot P | row_off P | row_len P | rows P | ids P | fix P | slots ...
 *          padding rows: token 0, position 0, wslot -1 (no k/v write), row_len 0
 *
 * and bounds attention's max_len by the pool's slot count (a row's result
 * does not depend on it: KDevAttn). So a replay computes what the same
 * padded step launched op by op computes (MODEL_GRAPHS_PADDED, for tests).
 * Graphs are dropped when what they baked in changes: the activation
 * buffers (mdev_reserve grows them), the KV pool's layer arrays, the mode,
 * ids_dev (ensure_ids). Every graph starts with pick_tokens over gidx's
 * `fix` row (all -1 but for mdev_launch's prev_ref rows), so the overlap
 * scheduler's steps replay the same graphs.
 *
 *   gidx: ... | ids P | fix P | slots ...
 *
 * fp8 (ModelOptions.quantization FP8 / kv_cache_dtype FP8_E4M3): the layer
 * matrices are uploaded as bf16 a part at a time and quantized there
 * (fuse_fp8: KTensor F8_E4M3 + per-row scales; embedding, lm head and norms
 * stay bf16), mdev_reserve sizes the backend's per-token activation buffer
 * (fp8_reserve), an F8_E4M3 pool takes rope_kv_fp8 and KDevAttn.kv_fp8 and
 * counts one byte a value in the plan (mdev_kv_slots).
 *
 * Launch and wait (mdev_launch / mdev_wait, model.h's contract): see the
 * section of that name below. A step's index arrays and sample rows go up
 * by upload_async from pinned staging of two parities (idx_host,
 * gidx_host, samp_host [2]): a forward stages into parity
 * (fly_head + fly_n) & 1, the one no launch in flight reads, so the host
 * plans and issues step N+1 while step N runs; the parity is written again
 * only after its launch was waited (or, for a plain forward, after the
 * forward's own closing sync).
 */
#include "runtime/model_dev.h"

#include "base/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    KTensor qkv, o, gu, down;   /* bf16 in device memory, or F8_E4M3 + scales (--quantization fp8) */
    void *bqkv;                 /* [Q + 2 KV] or NULL */
    void *n1, *n2;              /* [E] */
} DevLayer;

/* This rank's share of the model's dims (the whole without tp). */
typedef struct {
    int n_ranks, rank;
    int n_head, n_head_kv, n_ff, vocab;
} TpShare;
static const int GRAPH_ROWS[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 224, 256};
enum { N_GRAPH_SIZES = sizeof GRAPH_ROWS / sizeof GRAPH_ROWS[0], GRAPH_P = MODEL_GRAPH_MAX_ROWS };
_Static_assert(sizeof GRAPH_ROWS / sizeof GRAPH_ROWS[0] == 17 && MODEL_GRAPH_MAX_ROWS == 256,
               "GRAPH_ROWS ends at MODEL_GRAPH_MAX_ROWS");

struct ModelDevice {
    TpShare sh;
    DevLayer *layers;
    void *emb, *out_norm;
    KTensor head;
    float *inv_freq;
    void **allocs;              /* every device allocation, for mdev_free */
    int n_allocs, cap_allocs;
    size_t weight_bytes, free0;
    /* activations */
    int max_tokens, max_rows;
    void *h, *x, *qkv, *att, *d, *gu, *act, *hsel, *dsel;
    float *logits_dev, *logits_host;
    float *logits_loc, *logits_all; /* tp: this rank's slice; every rank's (n_ranks > 1) */
    int32_t *idx_dev;
    void *idx_host[2];          /* int32 arrays; pinned staging of two parities (see the top) */
    size_t idx_cap;             /* int32 entries of each */
    /* device sampling: the last forward's sample rows start at logit row
     * samp_row0; the op's inputs and outputs, packed (see mdev_sample) */
    int samp_row0, samp_rows;
    void *samp_dev, *samp_host[2];
    size_t samp_cap;            /* bytes of each */
    /* decode-step graphs (see the top of this file) */
    int graphs_none;            /* the backend has no graphs */
    int graph_mode;             /* the ModelGraphs mode they were recorded in */
    void *graph[N_GRAPH_SIZES];
    void **graph_kv;            /* [2 * n_layer]: the pool's k[] then v[] they use */
    int32_t *gidx_dev;
    void *gidx_host[2];         /* int32 arrays, as idx_host */
    size_t gidx_slots;          /* room for context slots after the 8 row arrays */
    /* model_launch / model_wait (see "Launch and wait" below) */
    int launching;              /* mdev_forward runs for mdev_launch */
    int32_t *ids_dev;           /* the last launch's sampled ids: argmax rows, then sampled rows */
    size_t ids_cap;
    int32_t *fix;               /* [n_seqs] of the launch: prev_ref's index into ids_dev, or -1 */
    int32_t *prev_pos;          /* [n_prev]: sequence i of the last launch -> its id in ids_dev, or -1 */
    int n_prev, cap_fix, cap_prev;
    struct {
        void *ev;
        int32_t *ids_host;      /* [ids_cap] pinned */
        char *out_host;         /* [samp_cap] pinned: the sample op's outputs land at their offsets */
        size_t out_cap;
        size_t o_out, o_lp, o_nt, o_tid, o_tlp, end;
    } fly[2];
    int fly_n, fly_head;        /* launches in flight; the oldest's parity */
};

static void drop_graphs(Model *m)
{
    ModelDevice *d = m->device;
    for (int i = 0; i < N_GRAPH_SIZES; i++)
        if (d->graph[i]) {
            m->backend->dev->graph_free(m->backend->ctx, d->graph[i]);
            d->graph[i] = NULL;
        }
}

static const KBackend *be_of(const Model *m) { return m->backend; }

/* The staging parity a forward writes: the one no launch in flight reads
 * (with two in flight, a plain forward first waits for the stream). */
static int stage_par(Model *m)
{
    ModelDevice *d = m->device;
    if (d->fly_n == 2 && !d->launching) (void)be_of(m)->sync(be_of(m)->ctx);
    return (d->fly_head + d->fly_n) & 1;
}

/* Both parities of a pinned staging array at `bytes` each (a sync first:
 * an upload in flight may still read the old ones); 0, or -1. */
static int stage_grow(Model *m, void *bufs[2], size_t bytes)
{
    const KBackend *be = be_of(m);
    (void)be->sync(be->ctx);
    for (int i = 0; i < 2; i++) {
        if (bufs[i]) be->dev->host_free(be->ctx, bufs[i]);
        bufs[i] = be->dev->host_alloc(be->ctx, bytes);
    }
    return bufs[0] && bufs[1] ? 0 : -1;
}

static void *dalloc(Model *m, size_t bytes)
{
    ModelDevice *d = m->device;
    if (d->n_allocs == d->cap_allocs) {
        int cap = d->cap_allocs ? 2 * d->cap_allocs : 64;
        void **a = realloc(d->allocs, (size_t)cap * sizeof *a);
        if (!a) return NULL;
        d->allocs = a;
        d->cap_allocs = cap;
    }
    void *p = be_of(m)->buf_alloc(be_of(m)->ctx, bytes);
    if (p) d->allocs[d->n_allocs++] = p;
    return p;
}

static void dfree(Model *m, void *p)
{
    ModelDevice *d = m->device;
    if (!p) return;
    for (int i = 0; i < d->n_allocs; i++)
        if (d->allocs[i] == p) {
            d->allocs[i] = d->allocs[--d->n_allocs];
            break;
        }
    be_of(m)->buf_free(be_of(m)->ctx, p);
}

void mdev_free(Model *m)
{
    ModelDevice *d = m->device;
    if (!d) return;
    const KBackend *b = be_of(m);
    if (b) drop_graphs(m);
    for (int i = 0; b && i < d->n_allocs; i++) b->buf_free(b->ctx, d->allocs[i]);
    if (b && d->logits_host) b->dev->host_free(b->ctx, d->logits_host);
    for (int i = 0; b && i < 2; i++) {
        if (d->samp_host[i]) b->dev->host_free(b->ctx, d->samp_host[i]);
        if (d->idx_host[i]) b->dev->host_free(b->ctx, d->idx_host[i]);
        if (d->gidx_host[i]) b->dev->host_free(b->ctx, d->gidx_host[i]);
        if (d->fly[i].ids_host) b->dev->host_free(b->ctx, d->fly[i].ids_host);
        if (d->fly[i].out_host) b->dev->host_free(b->ctx, d->fly[i].out_host);
        if (d->fly[i].ev) b->dev->event_free(b->ctx, d->fly[i].ev);
    }
    free(d->fix);
    free(d->prev_pos);
    free(d->allocs);
    free(d->layers);
    free(d->graph_kv);
    free(d);
    m->device = NULL;
}

size_t mdev_weight_bytes(const Model *m) { return m->device ? m->device->weight_bytes : 0; }

/* ---- weights ---------------------------------------------------------------- */

enum { STAGE_BYTES = 64 << 20 };

typedef struct {
    uint16_t *stage;            /* STAGE_BYTES of host bf16 */
    float *row;                 /* one dequantized row */
    int64_t row_cap;
} Stager;

/* A block of a weight matrix: rows [r0, r0 + nr), columns [c0, c0 + nc)
 * (a rank's shard; the whole matrix without tp). */
typedef struct {
    const KTensor *t;
    int64_t r0, nr, c0, nc;
} Part;

static Part whole(const KTensor *t) { return (Part){t, 0, t->ne[1], 0, t->ne[0]}; }
static Part rows_of(const KTensor *t, int64_t r0, int64_t nr) { return (Part){t, r0, nr, 0, t->ne[0]}; }
static Part cols_of(const KTensor *t, int64_t c0, int64_t nc) { return (Part){t, 0, t->ne[1], c0, nc}; }

/* The block p as bf16 rows of p.nc into dst (device), through the stager. */
static int put_matrix(Model *m, Stager *s, const Part *p, uint16_t *dst, char *err, size_t errcap)
{
    const KBackend *b = be_of(m);
    const KTensor *t = p->t;
    int64_t full = t->ne[0], cols = p->nc, rows = p->nr;
    size_t rb = k_row_bytes(t->dtype, full);
    if (t->dtype == K_DTYPE_BF16 && cols == full) {
        /* straight from the mapping */
        b->upload(b->ctx, dst, (const char *)t->data + (size_t)p->r0 * rb, (size_t)rows * cols * 2);
        return 0;
    }
    if (full > s->row_cap) {
        float *r = realloc(s->row, (size_t)full * sizeof *r);
        if (!r) goto oom;
        s->row = r;
        s->row_cap = full;
    }
    int64_t per = (int64_t)(STAGE_BYTES / 2) / cols;
    if (per < 1) goto oom;
    for (int64_t r0 = 0; r0 < rows; r0 += per) {
        int64_t n = rows - r0 < per ? rows - r0 : per;
        for (int64_t r = 0; r < n; r++) {
            const void *src = (const char *)t->data + (size_t)(p->r0 + r0 + r) * rb;
            uint16_t *o = s->stage + (size_t)r * cols;
            if (t->dtype == K_DTYPE_BF16) {
                memcpy(o, (const uint16_t *)src + p->c0, (size_t)cols * 2);
                continue;
            }
            const float *f = src;
            if (t->dtype != K_DTYPE_F32) {
                k_dequant_row_host(t->dtype, src, s->row, full);
                f = s->row;
            }
            for (int64_t i = 0; i < cols; i++) o[i] = k_f32_to_bf16(f[p->c0 + i]);
        }
        b->upload(b->ctx, dst + (size_t)r0 * cols, s->stage, (size_t)n * cols * 2);
    }
    return 0;
oom:
    err_fmt(err, errcap, "model: out of host memory converting weights");
    return -1;
}

/* A device copy of the f32 vector v (n values) as bf16. */
static void *put_vector(Model *m, Stager *s, const float *v, int64_t n)
{
    uint16_t *p = dalloc(m, (size_t)n * 2);
    if (!p) return NULL;
    for (int64_t i = 0; i < n; i++) s->stage[i] = k_f32_to_bf16(v[i]);
    be_of(m)->upload(be_of(m)->ctx, p, s->stage, (size_t)n * 2);
    return p;
}

/* parts[0..count) stacked by rows into one bf16 matrix. */
static int fuse(Model *m, Stager *s, const Part *parts, int count, KTensor *out, char *err, size_t errcap)
{
    int64_t cols = parts[0].nc, rows = 0;
    for (int i = 0; i < count; i++) rows += parts[i].nr;
    uint16_t *p = dalloc(m, (size_t)rows * cols * 2);
    if (!p) {
        err_fmt(err, errcap, "model: device memory ran out uploading the weights (%.2f GB so far)",
                m->device->weight_bytes / 1e9);
        return -1;
    }
    int64_t r = 0;
    for (int i = 0; i < count; i++) {
        if (put_matrix(m, s, &parts[i], p + (size_t)r * cols, err, errcap)) return -1;
        r += parts[i].nr;
    }
    *out = (KTensor){.dtype = K_DTYPE_BF16, .ne = {cols, rows, 1, 1}, .data = p};
    m->device->weight_bytes += (size_t)rows * cols * 2;
    return 0;
}

/* fuse's matrix as fp8 e4m3 with a scale per row (--quantization fp8):
 * each part uploaded as bf16 into a transient device buffer and quantized
 * there by the backend (quant_fp8: a row's scale is its own max, so part by
 * part is the whole matrix's result); the bf16 copy is freed after each. */
static int fuse_fp8(Model *m, Stager *s, const Part *parts, int count, KTensor *out, char *err, size_t errcap)
{
    const KBackend *b = be_of(m);
    int64_t cols = parts[0].nc, rows = 0;
    for (int i = 0; i < count; i++) rows += parts[i].nr;
    size_t qb = ((size_t)rows * cols + 255) & ~(size_t)255;
    uint8_t *q = dalloc(m, qb + (size_t)rows * sizeof(float));
    if (!q) goto nomem;
    float *scale = (float *)(void *)(q + qb);
    int64_t r = 0;
    for (int i = 0; i < count; i++) {
        uint16_t *tmp = dalloc(m, (size_t)parts[i].nr * cols * 2);
        if (!tmp) goto nomem;
        int rc = put_matrix(m, s, &parts[i], tmp, err, errcap);
        if (!rc) b->dev->quant_fp8(b->ctx, tmp, (int)cols, (int)parts[i].nr, q + (size_t)r * cols, scale + r);
        if (!rc && b->sync(b->ctx)) {
            const char *e = b->error(b->ctx);
            err_fmt(err, errcap, "model: quantizing the weights to fp8: %s", e ? e : "device failure");
            rc = -1;
        }
        dfree(m, tmp);
        if (rc) return -1;
        r += parts[i].nr;
    }
    *out = (KTensor){.dtype = K_DTYPE_F8_E4M3, .ne = {cols, rows, 1, 1}, .data = q, .scale = scale};
    m->device->weight_bytes += qb + (size_t)rows * sizeof(float);
    return 0;
nomem:
    err_fmt(err, errcap, "model: device memory ran out uploading the weights as fp8 (%.2f GB so far)",
            m->device->weight_bytes / 1e9);
    return -1;
}

/* A layer's linear weight: fuse, or fuse_fp8 with --quantization fp8. */
static int fuse_linear(Model *m, Stager *s, const Part *parts, int count, KTensor *out, char *err, size_t errcap)
{
    if (m->quantization == MODEL_QUANT_FP8) return fuse_fp8(m, s, parts, count, out, err, errcap);
    return fuse(m, s, parts, count, out, err, errcap);
}

int mdev_open(Model *m, char *err, size_t errcap)
{
    const ModelConfig *c = &m->cfg;
    const KBackend *b = be_of(m);
    if (c->head_dim != 64 && c->head_dim != 128) {
        err_fmt(err, errcap, "model: the %s backend runs head_dim 64 or 128, not %d", b->name, c->head_dim);
        return -1;
    }
    if (c->n_head / c->n_head_kv > 8) {
        err_fmt(err, errcap, "model: the %s backend runs at most 8 query heads per kv head, not %d", b->name,
                c->n_head / c->n_head_kv);
        return -1;
    }
    /* this rank's share: model_tp.c checked that the dims divide */
    int n_ranks = m->tp_comm ? m->tp_comm->n_ranks : 1, rank = m->tp_comm ? m->tp_comm->rank : 0;
    TpShare sh = {.n_ranks = n_ranks, .rank = rank, .n_head = c->n_head / n_ranks,
                  .n_head_kv = c->n_head_kv / n_ranks, .n_ff = c->n_ff / n_ranks, .vocab = c->vocab / n_ranks};
    if (c->n_embd % 8 || c->n_embd > 8192 || sh.n_ff % 8) {
        err_fmt(err, errcap, "model: the %s backend needs hidden size (%d) and ff (%d%s) multiples of 8, hidden <= 8192",
                b->name, c->n_embd, sh.n_ff, n_ranks > 1 ? " per rank" : "");
        return -1;
    }
    ModelDevice *d = calloc(1, sizeof *d);
    if (!d || !(d->layers = calloc((size_t)c->n_layer, sizeof *d->layers))) {
        free(d);
        err_fmt(err, errcap, "model: out of memory");
        return -1;
    }
    d->sh = sh;
    m->device = d;
    size_t total;
    b->dev->mem_info(b->ctx, &d->free0, &total);
    Stager s = {0};
    s.stage = b->dev->host_alloc(b->ctx, STAGE_BYTES);
    int rc = -1;
    if (!s.stage) {
        err_fmt(err, errcap, "model: cannot allocate the upload staging buffer");
        goto out;
    }
    int64_t E = c->n_embd, hd = c->head_dim;
    int64_t Q = sh.n_head * hd, KV = sh.n_head_kv * hd, F = sh.n_ff; /* this rank's */
    for (int l = 0; l < c->n_layer; l++) {
        const ModelLayer *L = &m->layers[l];
        DevLayer *D = &d->layers[l];
        Part qkv[3] = {rows_of(&L->wq, rank * Q, Q), rows_of(&L->wk, rank * KV, KV), rows_of(&L->wv, rank * KV, KV)};
        Part gu[2] = {rows_of(&L->w_gate, rank * F, F), rows_of(&L->w_up, rank * F, F)};
        Part o[1] = {cols_of(&L->wo, rank * Q, Q)}, dn[1] = {cols_of(&L->w_down, rank * F, F)};
        if (fuse_linear(m, &s, qkv, 3, &D->qkv, err, errcap) || fuse_linear(m, &s, o, 1, &D->o, err, errcap) ||
            fuse_linear(m, &s, gu, 2, &D->gu, err, errcap) || fuse_linear(m, &s, dn, 1, &D->down, err, errcap))
            goto out;
        D->n1 = put_vector(m, &s, L->attn_norm.data, E);
        D->n2 = put_vector(m, &s, L->ffn_norm.data, E);
        if (!D->n1 || !D->n2) goto nomem;
        if (c->qkv_bias) {
            float *bias = malloc((size_t)(Q + 2 * KV) * sizeof *bias);
            if (!bias) goto nomem;
            memcpy(bias, (const float *)L->bq.data + rank * Q, (size_t)Q * sizeof *bias);
            memcpy(bias + Q, (const float *)L->bk.data + rank * KV, (size_t)KV * sizeof *bias);
            memcpy(bias + Q + KV, (const float *)L->bv.data + rank * KV, (size_t)KV * sizeof *bias);
            D->bqkv = put_vector(m, &s, bias, Q + 2 * KV);
            free(bias);
            if (!D->bqkv) goto nomem;
        }
    }
    /* the embedding whole on every rank; the head by vocabulary rows (tied:
     * the same rows of the embedding's copy) */
    Part emb[1] = {whole(&m->tok_embd)}, head[1] = {rows_of(&m->output, (int64_t)rank * sh.vocab, sh.vocab)};
    KTensor et;
    if (fuse(m, &s, emb, 1, &et, err, errcap)) goto out;
    d->emb = (void *)et.data;
    if (c->tied_embeddings)
        d->head = (KTensor){.dtype = K_DTYPE_BF16, .ne = {E, sh.vocab, 1, 1},
                            .data = (const uint16_t *)et.data + (size_t)rank * sh.vocab * E};
    else if (fuse(m, &s, head, 1, &d->head, err, errcap)) goto out;
    d->out_norm = put_vector(m, &s, m->out_norm.data, E);
    d->inv_freq = dalloc(m, (size_t)(c->rope_dim / 2) * sizeof(float));
    if (!d->out_norm || !d->inv_freq) goto nomem;
    b->upload(b->ctx, d->inv_freq, model_inv_freq(m), (size_t)(c->rope_dim / 2) * sizeof(float));
    if (b->sync(b->ctx)) {
        const char *e = b->error(b->ctx);
        err_fmt(err, errcap, "model: uploading the weights: %s", e ? e : "device failure");
        goto out;
    }
    rc = 0;
    goto out;
nomem:
    err_fmt(err, errcap, "model: device memory ran out uploading the weights");
out:
    if (s.stage) b->dev->host_free(b->ctx, s.stage);
    free(s.row);
    if (rc) mdev_free(m);
    return rc;
}

/* ---- activations -------------------------------------------------------------- */

int mdev_reserve(Model *m, int max_tokens, int max_rows, char *err, size_t errcap)
{
    ModelDevice *d = m->device;
    const ModelConfig *c = &m->cfg;
    const KBackend *b = be_of(m);
    size_t E = (size_t)c->n_embd, Q = (size_t)d->sh.n_head * c->head_dim, KV = (size_t)d->sh.n_head_kv * c->head_dim;
    size_t F = (size_t)d->sh.n_ff;
    if (max_tokens > d->max_tokens) {
        size_t T = (size_t)max_tokens;
        drop_graphs(m); /* they use the buffers freed here */
        void **bufs[] = {&d->h, &d->x, &d->qkv, &d->att, &d->d, &d->gu, &d->act};
        size_t sizes[] = {T * E, T * E, T * (Q + 2 * KV), T * Q, T * E, T * 2 * F, T * F};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            dfree(m, *bufs[i]);
            *bufs[i] = dalloc(m, sizes[i] * 2);
            if (!*bufs[i]) goto nomem;
        }
        d->max_tokens = max_tokens;
        /* fp8 weights: room for the per-token quantized activations of the
         * largest step (graphs are recorded after this, never allocating) */
        size_t in_max = E > Q ? E : Q;
        if (F > in_max) in_max = F;
        if (m->quantization == MODEL_QUANT_FP8 && b->dev->fp8_reserve(b->ctx, max_tokens, (int)in_max)) {
            const char *e = b->error(b->ctx);
            err_fmt(err, errcap, "model: fp8 activations of %d tokens: %s", max_tokens, e ? e : "out of memory");
            d->max_tokens = d->max_rows = 0;
            return -1;
        }
    }
    if (max_rows > d->max_rows) {
        size_t R = (size_t)max_rows;
        dfree(m, d->hsel);
        dfree(m, d->dsel);
        dfree(m, d->logits_dev);
        dfree(m, d->logits_loc);
        dfree(m, d->logits_all);
        d->logits_loc = d->logits_all = NULL;
        if (d->logits_host) b->dev->host_free(b->ctx, d->logits_host);
        d->logits_host = NULL;
        d->hsel = dalloc(m, R * E * 2);
        d->dsel = dalloc(m, R * E * 2);
        d->logits_dev = dalloc(m, R * (size_t)c->vocab * sizeof(float));
        if (!d->hsel || !d->dsel || !d->logits_dev) goto nomem;
        if (m->tp_comm && !(d->logits_loc = dalloc(m, R * (size_t)d->sh.vocab * sizeof(float)))) goto nomem;
        if (d->sh.n_ranks > 1 && !(d->logits_all = dalloc(m, R * (size_t)c->vocab * sizeof(float)))) goto nomem;
        if (d->sh.rank == 0 && !(d->logits_host = b->dev->host_alloc(b->ctx, R * (size_t)c->vocab * sizeof(float))))
            goto nomem;
        d->max_rows = max_rows;
    }
    return 0;
nomem:
    d->max_tokens = d->max_rows = 0;
    err_fmt(err, errcap, "model: device memory ran out for activations of %d tokens / %d logit rows", max_tokens,
            max_rows);
    return -1;
}

int mdev_kv_slots(const Model *m)
{
    const ModelDevice *d = m->device;
    const ModelConfig *c = &m->cfg;
    if (!d) return 0;
    size_t free_now, total;
    be_of(m)->dev->mem_info(be_of(m)->ctx, &free_now, &total);
    double frac = m->mem_fraction > 0 ? m->mem_fraction : 0.88;
    double used = (double)d->free0 - (double)free_now;
    double left = frac * (double)d->free0 - used;
    double elem = m->kv_cache_dtype == MODEL_KV_FP8_E4M3 ? 1.0 : 2.0; /* fp8: twice the slots */
    double per = 2.0 * c->n_layer * d->sh.n_head_kv * c->head_dim * elem;
    double n = left > 0 ? left / per : 0;
    if (n > INT32_MAX / 2) n = INT32_MAX / 2;
    return n < 1 ? 1 : (int)n;
}

/* ---- forward ---------------------------------------------------------------------- */

/* Tensor parallelism's two hooks (no-ops without tp). tp_sum: a sublayer's
 * output d[N][E], a partial sum on each rank, summed over the ranks in
 * place (after o and after down). tp_logits: the R logit rows of x into
 * logits_dev [R][vocab] (rank 0's matters): each rank's vocabulary slice,
 * all-gathered as [rank][row][vocab/N], then put in row order by a gather
 * of byte rows (perm: R * N indices, row r of rank k is k * R + r). */
static void tp_sum(Model *m, void *d, int N)
{
    const KComm *cm = m->tp_comm;
    if (cm) cm->all_reduce(cm->ctx, d, (size_t)N * m->cfg.n_embd, K_DTYPE_BF16);
}

static void tp_logits(Model *m, const void *x, int R, const int32_t *perm)
{
    const KDevOps *op = be_of(m)->dev;
    void *bx = be_of(m)->ctx;
    ModelDevice *d = m->device;
    const KComm *cm = m->tp_comm;
    if (!cm) {
        op->logits(bx, &d->head, x, R, d->logits_dev);
        return;
    }
    int vn = d->sh.vocab, n = d->sh.n_ranks;
    op->logits(bx, &d->head, x, R, d->logits_loc);
    cm->all_gather(cm->ctx, d->logits_loc, n > 1 ? d->logits_all : d->logits_dev, (size_t)R * vn * sizeof(float));
    /* an f32 row of vocab/N is 2 * vocab/N bf16-sized units */
    if (n > 1 && d->sh.rank == 0) op->gather(bx, d->logits_all, 2 * vn, perm, R * n, d->logits_dev);
}

/* The device arrays one step reads. */
typedef struct {
    const int32_t *tok, *pos, *wslot, *rows;
    int32_t *ids;               /* room for the argmax rows' ids */
    int32_t *ids_host;          /* where they come back */
    const int32_t *perm;        /* tp: the logits' reorder (tp_logits), NULL without */
    const int32_t *fix;         /* per row: index into ids_dev for pick_tokens, or -1; NULL: none */
} StepIdx;

/* Embedding and the layer loop over N rows (recorded in a graph or run). */
static void run_layers(Model *m, KvPool *kv, int N, const StepIdx *ix, KDevAttn *aa, KDevAttn *at)
{
    const ModelConfig *c = &m->cfg;
    const KDevOps *op = be_of(m)->dev;
    void *bx = be_of(m)->ctx;
    ModelDevice *d = m->device;
    /* this rank's heads and ff columns (all of them without tp) */
    int nh = d->sh.n_head, nkv = d->sh.n_head_kv;
    int E = c->n_embd, Q = nh * c->head_dim, KVd = nkv * c->head_dim, F = d->sh.n_ff;
    int ldqkv = Q + 2 * KVd;
    /* rows whose token the previous launch sampled read it on the device */
    if (ix->fix) op->pick_tokens(bx, (int32_t *)ix->tok, ix->fix, d->ids_dev, N);
    op->gather(bx, d->emb, E, ix->tok, N, d->h);
    for (int l = 0; l < c->n_layer; l++) {
        const DevLayer *L = &d->layers[l];
        op->add_rmsnorm(bx, d->h, l ? d->d : NULL, L->n1, d->x, N, E, c->rms_eps);
        op->matmul(bx, &L->qkv, L->bqkv, d->x, E, N, d->qkv, ldqkv);
        aa->k_pool = at->k_pool = kv->k[l];
        aa->v_pool = at->v_pool = kv->v[l];
        /* a decode-only step (every row a decode row of aa, no tiles: each
         * row's last context slot is its wslot) takes RoPE and the k/v
         * write inside attention when the backend fuses them (KDevRope) */
        if (op->attention_rope && aa->n_rows == N && !at->n_tiles) {
            KDevRope rp = {.qkv = d->qkv, .rot_dim = c->rope_dim, .inv_freq = d->inv_freq, .style = c->rope_style,
                           .pos = ix->pos, .wslot = ix->wslot, .k_pool = kv->k[l], .v_pool = kv->v[l]};
            op->attention_rope(bx, aa, &rp);
        } else {
            (kv->dtype == K_DTYPE_F8_E4M3 ? op->rope_kv_fp8 : op->rope_kv)(bx, d->qkv, N, nh, nkv, c->head_dim,
                                                                           c->rope_dim, d->inv_freq,
                                                                           c->rope_style, ix->pos, ix->wslot,
                                                                           kv->k[l], kv->v[l]);
            if (aa->n_rows) op->attention(bx, aa);
            if (at->n_tiles) op->attention(bx, at);
        }
        op->matmul(bx, &L->o, NULL, d->att, Q, N, d->d, E);
        tp_sum(m, d->d, N);
        op->add_rmsnorm(bx, d->h, d->d, L->n2, d->x, N, E, c->rms_eps);
        if (op->matmul_swiglu) { /* the same bits, one kernel where the backend fuses them */
            op->matmul_swiglu(bx, &L->gu, d->x, E, N, F, d->gu, d->act);
        } else {
            op->matmul(bx, &L->gu, NULL, d->x, E, N, d->gu, 2 * F);
            op->swiglu(bx, d->gu, N, F, d->act);
        }
        op->matmul(bx, &L->down, NULL, d->act, F, N, d->d, E);
        tp_sum(m, d->d, N);
    }
}

/* The logit rows (R of them: the host rows, then the R_arg device_argmax
 * ones, then the R_smp ones model_sample samples), then the wait for the
 * step. With tp only rank 0 downloads. */
static void run_logits(Model *m, ModelBatch *b, int R, int R_arg, int R_smp, const StepIdx *ix)
{
    const ModelConfig *c = &m->cfg;
    const KBackend *be = be_of(m);
    const KDevOps *op = be->dev;
    void *bx = be->ctx;
    ModelDevice *d = m->device;
    int E = c->n_embd, R_host = R - R_arg - R_smp;
    if (R > 0) {
        op->gather(bx, d->h, E, ix->rows, R, d->hsel);
        op->gather(bx, d->d, E, ix->rows, R, d->dsel);
        op->add_rmsnorm(bx, d->hsel, d->dsel, d->out_norm, d->x, R, E, c->rms_eps);
        tp_logits(m, d->x, R, ix->perm);
        if (d->sh.rank > 0) {
            (void)be->sync(bx); /* rank 0 returns the rows */
            return;
        }
        if (d->launching) {
            /* mdev_launch downloads the ids after the sample op, no wait */
            if (R_arg) op->argmax(bx, d->logits_dev + (size_t)R_host * c->vocab, R_arg, c->vocab, d->ids_dev);
            return;
        }
        if (R_arg) {
            op->argmax(bx, d->logits_dev + (size_t)R_host * c->vocab, R_arg, c->vocab, ix->ids);
            be->download(bx, ix->ids_host, ix->ids, (size_t)R_arg * sizeof(int32_t));
            int k = 0;
            for (int i = 0; i < b->n_seqs; i++)
                if (b->seqs[i].device_argmax && b->seqs[i].logits == MODEL_LOGITS_LAST)
                    b->seqs[i].argmax = ix->ids_host[k++];
        }
        if (R_host) be->download(bx, d->logits_host, d->logits_dev, (size_t)R_host * c->vocab * sizeof(float));
        else (void)be->sync(bx); /* a failure is named by the error op */
    } else if (!d->launching) {
        (void)be->sync(bx);
    }
}

/* Logit rows of the batch into rows[]: the host rows first, then the
 * device_argmax ones, then the ones model_sample samples (where it finds
 * them: samp_row0, samp_rows); each sequence's logits_row set. */
static void fill_rows(ModelDevice *d, ModelBatch *b, int R, int32_t *rows, int *R_arg_out, int *R_smp_out)
{
    int R_arg = 0, R_smp = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        R_arg += b->seqs[i].device_argmax && b->seqs[i].logits == MODEL_LOGITS_LAST;
        R_smp += b->seqs[i].sample != NULL;
    }
    int r = 0, ra = R - R_arg - R_smp, rs = R - R_smp, row = 0;
    d->samp_row0 = rs;
    d->samp_rows = R_smp;
    for (int i = 0; i < b->n_seqs; i++) {
        ModelSeq *s = &b->seqs[i];
        s->logits_row = -1;
        if (s->logits == MODEL_LOGITS_ALL) {
            s->logits_row = r;
            for (int j = 0; j < s->n_new; j++) rows[r++] = row + j;
        } else if (s->logits == MODEL_LOGITS_LAST && s->device_argmax) {
            rows[ra++] = row + s->n_new - 1;
        } else if (s->sample) {
            rows[rs++] = row + s->n_new - 1;
        } else if (s->logits == MODEL_LOGITS_LAST) {
            s->logits_row = r;
            rows[r++] = row + s->n_new - 1;
        }
        row += s->n_new;
    }
    *R_arg_out = R_arg;
    *R_smp_out = R_smp;
}

static int forward_error(Model *m, ModelBatch *b, int R, int R_arg, int R_smp, char *err, size_t errcap)
{
    const char *e = be_of(m)->error(be_of(m)->ctx);
    if (!e && m->tp_comm) e = m->tp_comm->error(m->tp_comm->ctx);
    if (e) {
        err_fmt(err, errcap, "model_forward: %s", e);
        return -1;
    }
    b->logits = m->device->logits_host;
    b->n_rows = R - R_arg - R_smp;
    return 0;
}

static int ensure_ids(Model *m, size_t cap, char *err, size_t errcap);

/* The padded row count for a decode step of N rows (N <= GRAPH_P). */
static int graph_size(int N, int *which)
{
    int i = 0;
    while (GRAPH_ROWS[i] < N) i++;
    *which = i;
    return GRAPH_ROWS[i];
}

/* 1 when the graphs in hand were recorded on kv's layer arrays (and it
 * records them as the current ones when not, dropping the graphs). */
static int graphs_match_pool(Model *m, const KvPool *kv)
{
    ModelDevice *d = m->device;
    int L = m->cfg.n_layer;
    if (!d->graph_kv && !(d->graph_kv = calloc((size_t)2 * L, sizeof *d->graph_kv))) return -1;
    int same = 1;
    for (int l = 0; l < L; l++) same &= d->graph_kv[l] == kv->k[l] && d->graph_kv[L + l] == kv->v[l];
    if (!same) {
        drop_graphs(m);
        for (int l = 0; l < L; l++) d->graph_kv[l] = kv->k[l], d->graph_kv[L + l] = kv->v[l];
    }
    return 0;
}

/* A decode-only step through the fixed arrays, padded to P rows, replayed
 * from (or recorded into) a graph unless the mode is MODEL_GRAPHS_PADDED.
 * 1 when the step does not fit (the caller runs it the plain way), else 0 or
 * -1 with err set. */
static int forward_graph(Model *m, KvPool *kv, ModelBatch *b, int N, int R, size_t S, char *err, size_t errcap)
{
    const ModelConfig *c = &m->cfg;
    const KBackend *be = be_of(m);
    const KDevOps *op = be->dev;
    void *bx = be->ctx;
    ModelDevice *d = m->device;
    int which, P = graph_size(N, &which);
    size_t want_slots = (size_t)kv->n_slots * 2 > 65536 ? (size_t)kv->n_slots * 2 : 65536;
    if (S > want_slots) return 1;
    if (P > d->max_tokens && mdev_reserve(m, P, d->max_rows, err, errcap)) return -1;
    if (!d->gidx_dev || d->gidx_slots < want_slots) {
        size_t n = 8 * (size_t)GRAPH_P + want_slots;
        dfree(m, d->gidx_dev);
        drop_graphs(m); /* they read the freed arrays */
        int staged = !stage_grow(m, d->gidx_host, n * sizeof(int32_t));
        d->gidx_dev = dalloc(m, n * sizeof(int32_t));
        d->gidx_slots = d->gidx_dev && staged ? want_slots : 0;
        if (!d->gidx_slots) {
            err_fmt(err, errcap, "model: device memory ran out for the decode graphs' index arrays");
            return -1;
        }
    }
    if (graphs_match_pool(m, kv)) {
        err_fmt(err, errcap, "model: out of memory");
        return -1;
    }
    int32_t *h = d->gidx_host[stage_par(m)];
    int32_t *tok = h, *pos = h + GRAPH_P, *wslot = h + 2 * GRAPH_P, *roff = h + 3 * GRAPH_P;
    int32_t *rlen = h + 4 * GRAPH_P, *rows = h + 5 * GRAPH_P, *fix = h + 7 * GRAPH_P, *slots = h + 8 * GRAPH_P;
    if (ensure_ids(m, GRAPH_P, err, errcap)) return -1; /* the graph reads ids_dev (pick_tokens) */
    size_t off = 0;
    for (int i = 0; i < N; i++) {
        const ModelSeq *s = &b->seqs[i];
        memcpy(slots + off, s->slots, (size_t)s->n_ctx * sizeof *slots);
        tok[i] = s->prev_ref ? 0 : s->tokens[0];
        fix[i] = d->launching && s->prev_ref ? d->fix[i] : -1;
        pos[i] = s->pos ? s->pos[0] : s->n_ctx - 1;
        wslot[i] = s->slots[s->n_ctx - 1];
        roff[i] = (int32_t)off;
        rlen[i] = s->n_ctx;
        off += (size_t)s->n_ctx;
    }
    for (int i = N; i < P; i++) tok[i] = pos[i] = roff[i] = rlen[i] = 0, wslot[i] = fix[i] = -1;
    int R_arg, R_smp;
    fill_rows(d, b, R, rows, &R_arg, &R_smp);
    op->upload_async(bx, d->gidx_dev, h, (8 * (size_t)GRAPH_P + S) * sizeof(int32_t));
    int32_t *D = d->gidx_dev;
    StepIdx ix = {.tok = D, .pos = D + GRAPH_P, .wslot = D + 2 * GRAPH_P, .rows = D + 5 * GRAPH_P,
                  .ids = D + 6 * GRAPH_P, .ids_host = h + 6 * GRAPH_P, .fix = D + 7 * GRAPH_P};
    KDevAttn aa = {.q = d->qkv, .ldq = (c->n_head + 2 * c->n_head_kv) * c->head_dim, .out = d->att, .n_rows = P,
                   .n_head = c->n_head, .n_head_kv = c->n_head_kv, .head_dim = c->head_dim,
                   .scale = 1.0f / sqrtf((float)c->head_dim), .slots = D + 8 * GRAPH_P, .row_off = D + 3 * GRAPH_P,
                   .row_len = D + 4 * GRAPH_P, .max_len = kv->n_slots, .kv_fp8 = kv->dtype == K_DTYPE_F8_E4M3};
    KDevAttn at = aa;
    at.n_rows = 0;
    if (m->device_graphs == MODEL_GRAPHS_PADDED) {
        run_layers(m, kv, P, &ix, &aa, &at);
    } else {
        if (!d->graph[which]) {
            if (op->graph_begin(bx)) {
                d->graphs_none = 1; /* this step runs op by op, the next ones the plain way */
                run_layers(m, kv, P, &ix, &aa, &at);
                run_logits(m, b, R, R_arg, R_smp, &ix);
                return forward_error(m, b, R, R_arg, R_smp, err, errcap);
            }
            run_layers(m, kv, P, &ix, &aa, &at);
            d->graph[which] = op->graph_end(bx);
            if (!d->graph[which]) {
                const char *e = be->error(bx);
                err_fmt(err, errcap, "model_forward: recording the decode graph of %d rows: %s", P,
                        e ? e : "the backend gave none");
                return -1;
            }
        }
        op->graph_launch(bx, d->graph[which]);
    }
    run_logits(m, b, R, R_arg, R_smp, &ix);
    return forward_error(m, b, R, R_arg, R_smp, err, errcap);
}

int mdev_forward(Model *m, KvPool *kv, ModelBatch *b, int N, int R, char *err, size_t errcap)
{
    const ModelConfig *c = &m->cfg;
    const KBackend *be = be_of(m);
    const KDevOps *op = be->dev;
    void *bx = be->ctx;
    if (kv->mem != be || (kv->dtype != op->act_dtype && kv->dtype != K_DTYPE_F8_E4M3)) {
        err_fmt(err, errcap, "model_forward: the model computes on %s but the KV pool is %s (%s): make it with "
                "model_kv_new", be->name, kv->mem ? kv->mem->name : "in host memory", k_dtype_name(kv->dtype));
        return -1;
    }
    if (N > m->device->max_tokens || R > m->device->max_rows) {
        int mt = m->device->max_tokens > N ? m->device->max_tokens : N;
        int mr = m->device->max_rows > R ? m->device->max_rows : R;
        if (mdev_reserve(m, mt, mr, err, errcap)) return -1;
    }
    ModelDevice *d = m->device;
    if (!d->launching) d->n_prev = 0; /* prev_ref refers to the launch just before */
    if (d->graph_mode != m->device_graphs) {
        drop_graphs(m); /* the way to re-record them (a backend switch changed what they would run) */
        d->graph_mode = m->device_graphs;
    }
    size_t S = 0;
    for (int i = 0; i < b->n_seqs; i++) S += (size_t)b->seqs[i].n_ctx;
    /* attention: the leading decode rows (the engine puts decode tokens
     * first) go to the row kernel, every sequence after them to the tiled
     * one when any of those brings a prompt chunk */
    int n_dec_seqs = 0, prefill = 0;
    while (n_dec_seqs < b->n_seqs && b->seqs[n_dec_seqs].n_new == 1) n_dec_seqs++;
    for (int i = n_dec_seqs; i < b->n_seqs; i++) prefill |= b->seqs[i].n_new > 1;
    if (!prefill) n_dec_seqs = b->n_seqs;
    int decode_only = n_dec_seqs == b->n_seqs && N == b->n_seqs;
    /* (not under tp: each rank would record its own, collectives inside;
     * not measured yet, so tp steps run op by op) */
    if (decode_only && N <= GRAPH_P && N > 0 && m->device_graphs != MODEL_GRAPHS_OFF && !m->tp_comm &&
        (!d->graphs_none || m->device_graphs == MODEL_GRAPHS_PADDED)) {
        int rc = forward_graph(m, kv, b, N, R, S, err, errcap);
        if (rc <= 0) return rc;
    }
    size_t max_tiles = prefill ? (size_t)N / K_ATTN_TILE_ROWS + (size_t)b->n_seqs + 1 : 0;
    int n_ranks = d->sh.n_ranks;
    size_t n_perm = n_ranks > 1 ? (size_t)R * n_ranks : 0; /* tp: the logits' reorder */
    int any_fix = 0;
    for (int i = 0; d->launching && i < b->n_seqs; i++) any_fix |= b->seqs[i].prev_ref != 0;
    size_t n_fix = any_fix ? (size_t)N : 0;
    size_t need = 5 * (size_t)N + (size_t)R + 4 * max_tiles + S + n_perm + n_fix;
    if (need + (size_t)R > d->idx_cap) {
        size_t cap = need + (size_t)R + need / 2;
        d->idx_cap = 0;
        if (stage_grow(m, d->idx_host, cap * sizeof(int32_t))) {
            err_fmt(err, errcap, "model: out of memory for the step's index arrays");
            return -1;
        }
        dfree(m, d->idx_dev);
        d->idx_dev = dalloc(m, cap * sizeof(int32_t));
        d->idx_cap = d->idx_dev ? cap : 0;
        if (!d->idx_dev) {
            err_fmt(err, errcap, "model: device memory ran out for the step's index arrays");
            return -1;
        }
    }
    /* tiles first: the kernel reads them as int4 (16-byte aligned) */
    int32_t *h = d->idx_host[stage_par(m)];
    int32_t *tiles = h, *tok = tiles + 4 * max_tiles, *pos = tok + N, *wslot = pos + N;
    int32_t *roff = wslot + N, *rlen = roff + N, *rows = rlen + N, *slots = rows + R, *perm = slots + S;
    int32_t *fix = perm + n_perm;
    int n_tiles = 0;
    int row = 0, max_len = 0, max_dec = 0;
    size_t off = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        ModelSeq *s = &b->seqs[i];
        memcpy(slots + off, s->slots, (size_t)s->n_ctx * sizeof *slots);
        int past = s->n_ctx - s->n_new;
        for (int j = 0; j < s->n_new; j++) {
            tok[row + j] = s->prev_ref && j == 0 ? 0 : s->tokens[j];
            if (n_fix) fix[row + j] = s->prev_ref && j == 0 ? d->fix[i] : -1;
            pos[row + j] = s->pos ? s->pos[j] : past + j;
            wslot[row + j] = s->slots[past + j];
            roff[row + j] = (int32_t)off;
            rlen[row + j] = past + j + 1;
        }
        for (int t0 = 0; i >= n_dec_seqs && t0 < s->n_new; t0 += K_ATTN_TILE_ROWS) {
            int32_t *t = tiles + 4 * n_tiles++;
            t[0] = row + t0;
            t[1] = s->n_new - t0 < K_ATTN_TILE_ROWS ? s->n_new - t0 : K_ATTN_TILE_ROWS;
            t[2] = (int32_t)off;
            t[3] = past + t0 + 1;
        }
        if (s->n_ctx > max_len) max_len = s->n_ctx;
        if (i < n_dec_seqs && s->n_ctx > max_dec) max_dec = s->n_ctx;
        row += s->n_new;
        off += (size_t)s->n_ctx;
    }
    /* logit rows: the ones that go to the host first, then the
     * device_argmax ones (only their ids come back), then the sampled ones */
    int R_arg, R_smp;
    fill_rows(d, b, R, rows, &R_arg, &R_smp);
    /* tp: logit row r of rank k's slice is row k * R + r of the gathered
     * block; it goes to row r, columns k * vocab/N on */
    for (int i = 0; i < R && n_perm; i++)
        for (int k = 0; k < n_ranks; k++) perm[i * n_ranks + k] = k * R + i;
    op->upload_async(bx, d->idx_dev, h, need * sizeof(int32_t));
    const int32_t *D_tiles = d->idx_dev, *D_tok = D_tiles + 4 * max_tiles, *D_pos = D_tok + N;
    const int32_t *D_wslot = D_pos + N, *D_roff = D_wslot + N, *D_rlen = D_roff + N, *D_rows = D_rlen + N;
    const int32_t *D_slots = D_rows + R;
    StepIdx ix = {.tok = D_tok, .pos = D_pos, .wslot = D_wslot, .rows = D_rows, .ids = d->idx_dev + need,
                  .ids_host = h + need, /* ids: room kept after the index arrays */
                  .perm = n_perm ? D_slots + S : NULL, .fix = n_fix ? D_slots + S + n_perm : NULL};

    int nh = d->sh.n_head, nkv = d->sh.n_head_kv, Q = nh * c->head_dim, KVd = nkv * c->head_dim;
    /* decode rows [0, n_dec_seqs) by rows; the rest by tiles */
    KDevAttn aa = {.q = d->qkv, .ldq = Q + 2 * KVd, .out = d->att, .n_rows = n_dec_seqs, .n_head = nh,
                   .n_head_kv = nkv, .head_dim = c->head_dim, .scale = 1.0f / sqrtf((float)c->head_dim),
                   .slots = D_slots, .row_off = D_roff, .row_len = D_rlen, .max_len = max_dec,
                   .kv_fp8 = kv->dtype == K_DTYPE_F8_E4M3};
    KDevAttn at = aa;
    at.n_rows = N - n_dec_seqs;
    at.max_len = max_len;
    at.tiles = D_tiles;
    at.n_tiles = n_tiles;
    run_layers(m, kv, N, &ix, &aa, &at);
    run_logits(m, b, R, R_arg, R_smp, &ix);
    return forward_error(m, b, R, R_arg, R_smp, err, errcap);
}

/* ---- sampling ------------------------------------------------------------------ */

static size_t align8(size_t x) { return (x + 7) & ~(size_t)7; }

/* The sample op's packed layout: inputs rows | pen | bias | allow (uploaded
 * from samp_host), outputs id | lp | n_top | top ids | top lps (offsets into
 * samp_dev, and where a download puts them in a host buffer). */
typedef struct {
    int R, n;
    size_t o_rows, o_pen, o_bias, o_allow, o_out, o_lp, o_nt, o_tid, o_tlp, total;
    char *h;                    /* the staging it was packed in (samp_host[parity]) */
} SampLayout;

/* Checks and packs the batch's sample rows and uploads them. R 0: none. */
static int samp_stage(Model *m, ModelBatch *b, SampLayout *L, char *err, size_t errcap)
{
    ModelDevice *d = m->device;
    const KBackend *be = be_of(m);
    int V = m->cfg.vocab, n = b->n_sample > 0 ? b->n_sample : V, words = (n + 31) / 32;
    int R = 0, n_pen = 0, n_bias = 0, n_allow = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        const ModelSample *ms = b->seqs[i].sample;
        if (!ms) continue;
        if (ms->row.n_pen < 0 || ms->row.n_bias < 0 || (ms->row.n_pen && !ms->pen) ||
            (ms->row.n_bias && !ms->bias) || ms->row.n_top < 0 || ms->row.n_top > K_SAMPLE_TOP_MAX ||
            !(ms->row.temperature > 0)) {
            err_fmt(err, errcap, "model_sample: sequence %d: bad sampling row", i);
            return -1;
        }
        R++;
        n_pen += ms->row.n_pen;
        n_bias += ms->row.n_bias;
        n_allow += ms->allow ? words : 0;
    }
    *L = (SampLayout){.R = R, .n = n};
    if (R == 0) return 0;
    L->o_pen = align8(L->o_rows + (size_t)R * sizeof(KDevSampleRow));
    L->o_bias = align8(L->o_pen + (size_t)n_pen * sizeof(KDevPenalty));
    L->o_allow = align8(L->o_bias + (size_t)n_bias * sizeof(KDevBias));
    L->o_out = align8(L->o_allow + (size_t)n_allow * sizeof(uint32_t));
    L->o_lp = L->o_out + (size_t)R * 4, L->o_nt = L->o_lp + (size_t)R * 4, L->o_tid = L->o_nt + (size_t)R * 4;
    L->o_tlp = L->o_tid + (size_t)R * K_SAMPLE_TOP_MAX * 4, L->total = L->o_tlp + (size_t)R * K_SAMPLE_TOP_MAX * 4;
    if (L->total > d->samp_cap) {
        size_t cap = L->total + L->total / 2;
        int staged = !stage_grow(m, d->samp_host, cap); /* (a launch in flight may still use them) */
        dfree(m, d->samp_dev);
        d->samp_dev = dalloc(m, cap);
        d->samp_cap = d->samp_dev && staged ? cap : 0;
        if (!d->samp_cap) {
            err_fmt(err, errcap, "model_sample: out of memory for %d sampled rows", R);
            return -1;
        }
    }
    char *h = L->h = d->samp_host[stage_par(m)];
    KDevSampleRow *rows = (KDevSampleRow *)(void *)(h + L->o_rows);
    KDevPenalty *pen = (KDevPenalty *)(void *)(h + L->o_pen);
    KDevBias *bias = (KDevBias *)(void *)(h + L->o_bias);
    uint32_t *allow = (uint32_t *)(void *)(h + L->o_allow);
    int r = 0, po = 0, bo = 0, ao = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        const ModelSample *ms = b->seqs[i].sample;
        if (!ms) continue;
        KDevSampleRow *w = &rows[r++];
        *w = ms->row;
        w->pen_off = po;
        w->bias_off = bo;
        w->allow_off = ms->allow ? ao : -1;
        if (w->n_pen) memcpy(pen + po, ms->pen, (size_t)w->n_pen * sizeof *pen);
        if (w->n_bias) memcpy(bias + bo, ms->bias, (size_t)w->n_bias * sizeof *bias);
        if (ms->allow) memcpy(allow + ao, ms->allow, (size_t)words * sizeof *allow);
        po += w->n_pen;
        bo += w->n_bias;
        ao += ms->allow ? words : 0;
    }
    be->dev->upload_async(be->ctx, d->samp_dev, h, L->o_out);
    return R;
}

/* Issues the sample op over logit rows from row0 on; ids go to out_id. */
static void samp_issue(Model *m, const SampLayout *L, int row0, int32_t *out_id)
{
    ModelDevice *d = m->device;
    const KBackend *be = be_of(m);
    char *dv = d->samp_dev;
    int V = m->cfg.vocab;
    KDevSample ks = {
        .logits = d->logits_dev + (size_t)row0 * V, .ld = V, .n = L->n, .n_rows = L->R,
        .rows = (const KDevSampleRow *)(void *)(dv + L->o_rows), .pen = (KDevPenalty *)(void *)(dv + L->o_pen),
        .bias = (KDevBias *)(void *)(dv + L->o_bias), .allow = (const uint32_t *)(void *)(dv + L->o_allow),
        .out_id = out_id, .out_lp = (float *)(void *)(dv + L->o_lp),
        .out_n_top = (int32_t *)(void *)(dv + L->o_nt), .top_id = (int32_t *)(void *)(dv + L->o_tid),
        .top_lp = (float *)(void *)(dv + L->o_tlp),
    };
    be->dev->sample(be->ctx, &ks);
}

/* The outputs into the batch's ModelSamples: ids[r] and the rest from h
 * (a host copy of the outputs at L's offsets). */
static void samp_read(ModelBatch *b, const SampLayout *L, const char *h, const int32_t *ids)
{
    const int32_t *nt = (const int32_t *)(const void *)(h + L->o_nt);
    const float *lp = (const float *)(const void *)(h + L->o_lp);
    const int32_t *tid = (const int32_t *)(const void *)(h + L->o_tid);
    const float *tlp = (const float *)(const void *)(h + L->o_tlp);
    int r = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        ModelSample *ms = b->seqs[i].sample;
        if (!ms) continue;
        ms->id = ids[r];
        ms->logprob = lp[r];
        ms->n_top = nt[r] < ms->row.n_top ? nt[r] : ms->row.n_top;
        memcpy(ms->top_id, tid + (size_t)r * K_SAMPLE_TOP_MAX, (size_t)ms->n_top * sizeof *tid);
        memcpy(ms->top_lp, tlp + (size_t)r * K_SAMPLE_TOP_MAX, (size_t)ms->n_top * sizeof *tlp);
        r++;
    }
}

int mdev_sample(Model *m, ModelBatch *b, char *err, size_t errcap)
{
    ModelDevice *d = m->device;
    const KBackend *be = be_of(m);
    SampLayout L;
    int R = samp_stage(m, b, &L, err, errcap);
    if (R <= 0) return R;
    if (R != d->samp_rows) {
        err_fmt(err, errcap, "model_sample: the batch has %d sampled rows, its forward kept %d", R, d->samp_rows);
        return -1;
    }
    char *h = L.h, *dv = d->samp_dev;
    samp_issue(m, &L, d->samp_row0, (int32_t *)(void *)(dv + L.o_out));
    be->download(be->ctx, h + L.o_out, dv + L.o_out, L.total - L.o_out);
    const char *e = be->error(be->ctx);
    if (e) {
        err_fmt(err, errcap, "model_sample: %s", e);
        return -1;
    }
    samp_read(b, &L, h, (const int32_t *)(const void *)(h + L.o_out));
    return 0;
}

/* ---- launch and wait ----------------------------------------------------------
 *
 * mdev_launch: the sample rows are packed and uploaded first (an upload
 * waits for the stream: done before this step's kernels, it waits only for
 * the step before), then the forward with its argmax ids into ids_dev
 * (fixed: the next launch's pick_tokens reads it), the sample op with its
 * ids after them, the ids and the sample outputs downloaded without a wait
 * into this parity's pinned buffers, an event recorded. Two parities: the
 * host reads launch N's buffers after waiting N while N+1's download may
 * be landing in the others.
 *
 *   ids_dev: | argmax rows' ids (R_arg) | sampled rows' ids (R_smp) |
 */

/* ids_dev and the flight buffers for at least `cap` ids (reallocating drops
 * the graphs, which read ids_dev, and voids prev_ref). */
static int ensure_ids(Model *m, size_t cap, char *err, size_t errcap)
{
    ModelDevice *d = m->device;
    const KBackend *be = be_of(m);
    if (d->ids_dev && cap <= d->ids_cap) return 0;
    if (d->fly_n) {
        err_fmt(err, errcap, "model_launch: %zu ids outgrow the buffer (%zu) while a launch is in flight", cap,
                d->ids_cap);
        return -1;
    }
    if (cap < (size_t)GRAPH_P) cap = GRAPH_P;
    if (cap < (size_t)d->max_rows) cap = (size_t)d->max_rows;
    drop_graphs(m);
    dfree(m, d->ids_dev);
    d->ids_cap = 0;
    d->n_prev = 0;
    d->ids_dev = dalloc(m, cap * sizeof(int32_t));
    int ok = d->ids_dev != NULL;
    for (int i = 0; i < 2 && ok; i++) {
        if (d->fly[i].ids_host) be->dev->host_free(be->ctx, d->fly[i].ids_host);
        d->fly[i].ids_host = be->dev->host_alloc(be->ctx, cap * sizeof(int32_t));
        if (!d->fly[i].ev) d->fly[i].ev = be->dev->event_new(be->ctx);
        ok = d->fly[i].ids_host && d->fly[i].ev;
    }
    if (!ok) {
        err_fmt(err, errcap, "model: out of memory for the launch buffers of %zu ids", cap);
        return -1;
    }
    d->ids_cap = cap;
    return 0;
}

int mdev_in_flight(const Model *m) { return m->device->fly_n; }

int mdev_launch(Model *m, KvPool *kv, ModelBatch *b, int N, int R, char *err, size_t errcap)
{
    ModelDevice *d = m->device;
    const KBackend *be = be_of(m);
    if (d->fly_n == 2) {
        err_fmt(err, errcap, "model_launch: two launches in flight already (wait for one)");
        return -1;
    }
    int R_arg = 0, R_smp = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        const ModelSeq *s = &b->seqs[i];
        if (s->logits == MODEL_LOGITS_ALL || (s->logits == MODEL_LOGITS_LAST && !s->device_argmax && !s->sample)) {
            err_fmt(err, errcap, "model_launch: sequence %d wants logits on the host (model_forward does that)", i);
            return -1;
        }
        R_arg += s->logits == MODEL_LOGITS_LAST && s->device_argmax;
        R_smp += s->sample != NULL;
    }
    if (ensure_ids(m, (size_t)(R_arg + R_smp), err, errcap)) return -1;
    if (d->cap_fix < b->n_seqs) {
        int32_t *f = realloc(d->fix, (size_t)b->n_seqs * sizeof *f);
        if (!f) goto nomem;
        d->fix = f;
        d->cap_fix = b->n_seqs;
    }
    for (int i = 0; i < b->n_seqs; i++) {
        int k = b->seqs[i].prev_ref - 1;
        d->fix[i] = -1;
        if (k < 0) continue;
        if (k >= d->n_prev || d->prev_pos[k] < 0) {
            err_fmt(err, errcap, "model_launch: sequence %d: prev_ref %d names no id of the previous launch", i, k + 1);
            return -1;
        }
        d->fix[i] = d->prev_pos[k];
    }
    SampLayout L;
    if (samp_stage(m, b, &L, err, errcap) < 0) return -1;
    d->launching = 1;
    int rc = mdev_forward(m, kv, b, N, R, err, errcap);
    d->launching = 0;
    if (rc) return rc;
    int par = (d->fly_head + d->fly_n) & 1;
    if (R_smp) {
        samp_issue(m, &L, R_arg, d->ids_dev + R_arg);
        size_t out = L.total - L.o_lp; /* lp .. top lps */
        if (d->fly[par].out_cap < L.total) {
            if (d->fly[par].out_host) be->dev->host_free(be->ctx, d->fly[par].out_host);
            d->fly[par].out_host = be->dev->host_alloc(be->ctx, L.total + L.total / 2);
            d->fly[par].out_cap = d->fly[par].out_host ? L.total + L.total / 2 : 0;
            if (!d->fly[par].out_host) goto nomem;
        }
        be->dev->download_async(be->ctx, d->fly[par].out_host + L.o_lp, (char *)d->samp_dev + L.o_lp, out);
    }
    if (R_arg + R_smp)
        be->dev->download_async(be->ctx, d->fly[par].ids_host, d->ids_dev, (size_t)(R_arg + R_smp) * sizeof(int32_t));
    be->dev->event_record(be->ctx, d->fly[par].ev);
    d->fly[par].o_lp = L.o_lp, d->fly[par].o_nt = L.o_nt, d->fly[par].o_tid = L.o_tid;
    d->fly[par].o_tlp = L.o_tlp, d->fly[par].o_out = L.o_out, d->fly[par].end = L.total;
    /* where each sequence's id is, for the next launch's prev_ref */
    if (d->cap_prev < b->n_seqs) {
        int32_t *p = realloc(d->prev_pos, (size_t)b->n_seqs * sizeof *p);
        if (!p) goto nomem;
        d->prev_pos = p;
        d->cap_prev = b->n_seqs;
    }
    int ka = 0, ks = R_arg;
    for (int i = 0; i < b->n_seqs; i++) {
        const ModelSeq *s = &b->seqs[i];
        d->prev_pos[i] = s->sample ? ks++ : s->logits == MODEL_LOGITS_LAST && s->device_argmax ? ka++ : -1;
    }
    d->n_prev = b->n_seqs;
    d->fly_n++;
    const char *e = be->error(be->ctx);
    if (e) {
        err_fmt(err, errcap, "model_launch: %s", e);
        return -1;
    }
    return 0;
nomem:
    err_fmt(err, errcap, "model_launch: out of memory");
    return -1;
}

int mdev_wait(Model *m, ModelBatch *b, char *err, size_t errcap)
{
    ModelDevice *d = m->device;
    const KBackend *be = be_of(m);
    if (!d->fly_n) {
        err_fmt(err, errcap, "model_wait: nothing was launched");
        return -1;
    }
    int par = d->fly_head;
    d->fly_head ^= 1;
    d->fly_n--;
    int wrc = be->dev->event_wait(be->ctx, d->fly[par].ev);
    const char *e = be->error(be->ctx);
    if (wrc || e) {
        err_fmt(err, errcap, "model_wait: %s", e ? e : "the device failed");
        return -1;
    }
    const int32_t *ids = d->fly[par].ids_host;
    int k = 0;
    for (int i = 0; i < b->n_seqs; i++)
        if (b->seqs[i].logits == MODEL_LOGITS_LAST && b->seqs[i].device_argmax) b->seqs[i].argmax = ids[k++];
    SampLayout L = {.o_lp = d->fly[par].o_lp, .o_nt = d->fly[par].o_nt, .o_tid = d->fly[par].o_tid,
                    .o_tlp = d->fly[par].o_tlp};
    samp_read(b, &L, d->fly[par].out_host, ids + k);
    b->logits = NULL;
    b->n_rows = 0;
    return 0;
}
