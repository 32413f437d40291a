/*
 * bench/gpu/llama_gpu.c — the forward pass of llama_gpu.h.
 */
#include "bench/gpu/llama_gpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint16_t *balloc(LlamaGpu *m, size_t n, int *bad)
{
    uint16_t *p = cu_alloc(m->cu, n * 2);
    if (!p) *bad = 1;
    return p;
}

static int32_t *ialloc(LlamaGpu *m, size_t n, int *bad)
{
    int32_t *p = cu_alloc(m->cu, n * 4);
    if (!p) *bad = 1;
    return p;
}

int llama_gpu_new(LlamaGpu *m, CuCtx *cu, const LlamaShape *s, int n_slots, int max_rows, uint64_t seed,
                  int random_norms, char *err, size_t errcap)
{
    memset(m, 0, sizeof *m);
    m->s = *s, m->cu = cu, m->n_slots = n_slots, m->max_rows = max_rows;
    int D = s->dim, Q = s->n_head * s->head_dim, KV = s->n_kv * s->head_dim, F = s->ff;
    int bad = 0;
    uint64_t sd = seed * 1000003u;
    /* uniform in [-a, a) has variance a²/3: a = sqrt(3 / in) keeps rows' scale */
#define RAND(p, n, in) cu_fill_uniform_bf16(cu, (p), (n), sd++, sqrtf(3.0f / (float)(in)))
#define NORM(p, n) (random_norms ? cu_fill_uniform_bf16(cu, (p), (n), sd++, 1.5f) : cu_fill_bf16(cu, (p), (n), 1.0f))
    m->l = calloc((size_t)s->n_layer, sizeof *m->l);
    if (!m->l) bad = 1;
    for (int i = 0; !bad && i < s->n_layer; i++) {
        LlamaLayer *L = &m->l[i];
        L->qkv = balloc(m, (size_t)(Q + 2 * KV) * D, &bad);
        L->o = balloc(m, (size_t)D * Q, &bad);
        L->gu = balloc(m, (size_t)2 * F * D, &bad);
        L->down = balloc(m, (size_t)D * F, &bad);
        L->n1 = balloc(m, D, &bad);
        L->n2 = balloc(m, D, &bad);
        if (bad) break;
        RAND(L->qkv, (size_t)(Q + 2 * KV) * D, D);
        RAND(L->o, (size_t)D * Q, Q);
        RAND(L->gu, (size_t)2 * F * D, D);
        RAND(L->down, (size_t)D * F, F);
        NORM(L->n1, D);
        NORM(L->n2, D);
        m->weight_bytes += 2 * ((size_t)(Q + 2 * KV) * D + (size_t)D * Q + (size_t)3 * F * D + 2 * (size_t)D);
    }
    if (!bad) {
        m->emb = balloc(m, (size_t)s->vocab * D, &bad);
        m->head = balloc(m, (size_t)s->vocab * D, &bad);
        m->nf = balloc(m, D, &bad);
    }
    if (!bad) {
        cu_fill_uniform_bf16(cu, m->emb, (size_t)s->vocab * D, sd++, 1.0f);
        RAND(m->head, (size_t)s->vocab * D, D);
        NORM(m->nf, D);
        m->weight_bytes += 2 * ((size_t)s->vocab * D + D);
    }
#undef RAND
#undef NORM
    size_t R = (size_t)max_rows;
    if (!bad) {
        m->k_pool = balloc(m, (size_t)s->n_layer * n_slots * KV, &bad);
        m->v_pool = balloc(m, (size_t)s->n_layer * n_slots * KV, &bad);
        m->h = balloc(m, R * D, &bad);
        m->x = balloc(m, R * D, &bad);
        m->qkv = balloc(m, R * (Q + 2 * KV), &bad);
        m->att = balloc(m, R * Q, &bad);
        m->d = balloc(m, R * D, &bad);
        m->gu = balloc(m, R * 2 * F, &bad);
        m->act = balloc(m, R * F, &bad);
        m->logits = balloc(m, R * s->vocab, &bad);
        /* tok/pos/wslot/roff/rlen: max_rows for prefill, then 1 for decode at [max_rows] */
        m->tok = ialloc(m, R + 1, &bad);
        m->pos = ialloc(m, R + 1, &bad);
        m->wslot = ialloc(m, R + 1, &bad);
        m->roff = ialloc(m, R + 1, &bad);
        m->rlen = ialloc(m, R + 1, &bad);
        m->slots = ialloc(m, n_slots, &bad);
        m->next = ialloc(m, 1, &bad);
    }
    /* decode attention: split the context into chunks of 64 slots */
    m->dec_chunk = 64;
    m->dec_split = (n_slots + m->dec_chunk - 1) / m->dec_chunk;
    if (!bad) {
        m->ws = cu_alloc(cu, cu_attn_ws_bytes(1, s->n_head, s->head_dim, m->dec_split));
        if (!m->ws) bad = 1;
    }
    if (!bad) {
        int32_t *id = malloc((size_t)n_slots * 4);
        if (!id) bad = 1;
        else {
            for (int i = 0; i < n_slots; i++) id[i] = i;
            cu_upload(cu, m->slots, id, (size_t)n_slots * 4);
            free(id);
        }
    }
    if (bad || cu_sync(cu)) {
        const char *e = cu_error(cu);
        snprintf(err, errcap, "llama_gpu: cannot allocate %s: %s", s->name, e ? e : "out of memory");
        llama_gpu_free(m);
        return -1;
    }
    return 0;
}

void llama_gpu_free(LlamaGpu *m)
{
    CuCtx *cu = m->cu;
    if (!cu) return;
    for (int i = 0; m->l && i < m->s.n_layer; i++) {
        LlamaLayer *L = &m->l[i];
        cu_free(cu, L->qkv), cu_free(cu, L->o), cu_free(cu, L->gu), cu_free(cu, L->down);
        cu_free(cu, L->n1), cu_free(cu, L->n2);
    }
    free(m->l);
    void *ps[] = {m->emb, m->head, m->nf, m->k_pool, m->v_pool, m->h, m->x, m->qkv, m->att, m->d, m->gu,
                  m->act, m->logits, m->tok, m->pos, m->wslot, m->roff, m->rlen, m->slots, m->next, m->ws};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) cu_free(cu, ps[i]);
    memset(m, 0, sizeof *m);
}

/* The layers over n rows whose index arrays start at tok/pos/wslot/roff/rlen,
 * then logits for the last n_logit rows. */
static void forward(LlamaGpu *m, int n, const int32_t *tok, const int32_t *pos, const int32_t *wslot,
                    const int32_t *roff, const int32_t *rlen, int n_split, int chunk, int n_logit)
{
    const LlamaShape *s = &m->s;
    CuCtx *cu = m->cu;
    int D = s->dim, Q = s->n_head * s->head_dim, KV = s->n_kv * s->head_dim, F = s->ff, ldqkv = Q + 2 * KV;
    float scale = 1.0f / sqrtf((float)s->head_dim);
    cu_embed(cu, m->emb, D, tok, n, m->h);
    for (int i = 0; i < s->n_layer; i++) {
        LlamaLayer *L = &m->l[i];
        uint16_t *kp = m->k_pool + (size_t)i * m->n_slots * KV, *vp = m->v_pool + (size_t)i * m->n_slots * KV;
        cu_add_rmsnorm(cu, m->h, i ? m->d : NULL, L->n1, m->x, n, D, s->eps);
        cu_gemm_bf16(cu, m->x, D, n, D, L->qkv, ldqkv, m->qkv, ldqkv);
        cu_rope_kv_write(cu, m->qkv, n, s->n_head, s->n_kv, s->head_dim, s->theta, pos, wslot, kp, vp);
        cu_attention(cu, m->qkv, ldqkv, n, s->n_head, s->n_kv, s->head_dim, scale, kp, vp, m->slots, roff, rlen,
                     n_split, chunk, m->ws, m->att);
        cu_gemm_bf16(cu, m->att, Q, n, Q, L->o, D, m->d, D);
        cu_add_rmsnorm(cu, m->h, m->d, L->n2, m->x, n, D, s->eps);
        cu_gemm_bf16(cu, m->x, D, n, D, L->gu, 2 * F, m->gu, 2 * F);
        cu_swiglu(cu, m->gu, n, F, m->act);
        cu_gemm_bf16(cu, m->act, F, n, F, L->down, D, m->d, D);
    }
    /* logits only for the rows that need them */
    size_t r0 = (size_t)(n - n_logit) * D;
    cu_add_rmsnorm(cu, m->h + r0, m->d + r0, m->nf, m->x, n_logit, D, s->eps);
    cu_gemm_bf16(cu, m->x, D, n_logit, D, m->head, s->vocab, m->logits, s->vocab);
    cu_argmax(cu, m->logits + (size_t)(n_logit - 1) * s->vocab, 1, s->vocab, m->next);
}

void llama_gpu_prefill(LlamaGpu *m, const int32_t *tokens, int n, int p0, int all_logits)
{
    int R = m->max_rows;
    int32_t *h = malloc((size_t)(R + 1) * 4 * 4);
    int32_t *pos = h, *roff = h + (R + 1), *rlen = h + 2 * (R + 1);
    for (int r = 0; r < n; r++) pos[r] = p0 + r, roff[r] = 0, rlen[r] = p0 + r + 1;
    /* the decode row (index R) continues after this prefill */
    pos[R] = p0 + n, roff[R] = 0, rlen[R] = p0 + n + 1;
    cu_upload(m->cu, m->tok, tokens, (size_t)n * 4);
    cu_upload(m->cu, m->pos, pos, (size_t)n * 4);
    cu_upload(m->cu, m->wslot, pos, (size_t)n * 4);
    cu_upload(m->cu, m->roff, roff, (size_t)n * 4);
    cu_upload(m->cu, m->rlen, rlen, (size_t)n * 4);
    cu_upload(m->cu, m->pos + R, pos + R, 4);
    cu_upload(m->cu, m->wslot + R, pos + R, 4);
    cu_upload(m->cu, m->roff + R, roff + R, 4);
    cu_upload(m->cu, m->rlen + R, rlen + R, 4);
    free(h);
    forward(m, n, m->tok, m->pos, m->wslot, m->roff, m->rlen, 1, 0, all_logits ? n : 1);
}

void llama_gpu_decode_step(LlamaGpu *m)
{
    int R = m->max_rows;
    forward(m, 1, m->next, m->pos + R, m->wslot + R, m->roff + R, m->rlen + R, m->dec_split, m->dec_chunk, 1);
    cu_add_i32(m->cu, m->pos + R, 1, 1);
    cu_add_i32(m->cu, m->wslot + R, 1, 1);
    cu_add_i32(m->cu, m->rlen + R, 1, 1);
}

/* ---- Hugging Face checkpoint ------------------------------------------------ */

typedef struct {
    char name[96];
    const uint16_t *dev;
    int64_t rows, cols;
} Tensor;

int llama_gpu_write_hf(LlamaGpu *m, const char *dir, char *err, size_t errcap)
{
    const LlamaShape *s = &m->s;
    int D = s->dim, Q = s->n_head * s->head_dim, KV = s->n_kv * s->head_dim, F = s->ff;
    int nt = 3 + 9 * s->n_layer;
    Tensor *t = calloc((size_t)nt, sizeof *t);
    int k = 0;
#define T(nm, p, r, c) (snprintf(t[k].name, sizeof t[k].name, "%s", nm), t[k].dev = (p), t[k].rows = (r), t[k].cols = (c), k++)
    T("model.embed_tokens.weight", m->emb, s->vocab, D);
    T("model.norm.weight", m->nf, 1, D);
    T("lm_head.weight", m->head, s->vocab, D);
    for (int i = 0; i < s->n_layer; i++) {
        LlamaLayer *L = &m->l[i];
        char nm[96];
#define TL(suffix, p, r, c) (snprintf(nm, sizeof nm, "model.layers.%d.%s", i, suffix), T(nm, p, r, c))
        TL("self_attn.q_proj.weight", L->qkv, Q, D);
        TL("self_attn.k_proj.weight", L->qkv + (size_t)Q * D, KV, D);
        TL("self_attn.v_proj.weight", L->qkv + (size_t)(Q + KV) * D, KV, D);
        TL("self_attn.o_proj.weight", L->o, D, Q);
        TL("mlp.gate_proj.weight", L->gu, F, D);
        TL("mlp.up_proj.weight", L->gu + (size_t)F * D, F, D);
        TL("mlp.down_proj.weight", L->down, D, F);
        TL("input_layernorm.weight", L->n1, 1, D);
        TL("post_attention_layernorm.weight", L->n2, 1, D);
#undef TL
    }
#undef T
    /* header: {"name": {"dtype": "BF16", "shape": [...], "data_offsets": [a, b]}, ...} */
    size_t cap = (size_t)nt * 192 + 64, len = 0, off = 0;
    char *hdr = malloc(cap);
    len += (size_t)snprintf(hdr + len, cap - len, "{");
    for (int i = 0; i < nt; i++) {
        size_t bytes = (size_t)t[i].rows * t[i].cols * 2;
        if (t[i].rows == 1)
            len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                                    i ? "," : "", t[i].name, (long long)t[i].cols, off, off + bytes);
        else
            len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                                    i ? "," : "", t[i].name, (long long)t[i].rows, (long long)t[i].cols, off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while (len % 8) hdr[len++] = ' ';
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    int rc = -1;
    if (!f) {
        snprintf(err, errcap, "cannot write %s", path);
        goto out;
    }
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, len, f);
    size_t big = 0;
    for (int i = 0; i < nt; i++)
        if ((size_t)t[i].rows * t[i].cols > big) big = (size_t)t[i].rows * t[i].cols;
    uint16_t *buf = malloc(big * 2);
    for (int i = 0; i < nt; i++) {
        size_t n = (size_t)t[i].rows * t[i].cols;
        cu_download(m->cu, buf, t[i].dev, n * 2);
        fwrite(buf, 2, n, f);
    }
    free(buf);
    if (fclose(f)) {
        snprintf(err, errcap, "cannot write %s", path);
        goto out;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    if (!f) {
        snprintf(err, errcap, "cannot write %s", path);
        goto out;
    }
    fprintf(f,
            "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":%d,"
            "\"intermediate_size\":%d,\"num_hidden_layers\":%d,\"num_attention_heads\":%d,"
            "\"num_key_value_heads\":%d,\"head_dim\":%d,\"vocab_size\":%d,\"rope_theta\":%.1f,"
            "\"rms_norm_eps\":%g,\"max_position_embeddings\":%d,\"hidden_act\":\"silu\","
            "\"tie_word_embeddings\":false,\"attention_bias\":false,\"mlp_bias\":false,"
            "\"torch_dtype\":\"bfloat16\",\"bos_token_id\":0,\"eos_token_id\":1}\n",
            D, F, s->n_layer, s->n_head, s->n_kv, s->head_dim, s->vocab, (double)s->theta, (double)s->eps,
            m->n_slots);
    fclose(f);
    rc = 0;
out:
    free(hdr);
    free(t);
    return rc;
}
