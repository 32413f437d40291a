/*
 * runtime/model.c — Llama-family model: GGUF metadata -> ModelConfig, tensor
 * validation shared by every loader, and the batched forward pass.
 *
 * Forward pass, for the N new tokens of all sequences stacked as rows:
 *
 *   x = embed(tokens)                                    [N][n_embd]
 *   per layer:
 *     h = rmsnorm(x) ; q,k,v = h·Wqᵀ(+b), h·Wkᵀ(+b), h·Wvᵀ(+b)
 *     rope(q), rope(k) ; K/V of the new tokens -> their pool slots
 *     a = attention(q, pool, each sequence's slot list)  (causal, GQA)
 *     x += a·Woᵀ
 *     h = rmsnorm(x) ; x += (silu(h·Wgᵀ) * h·Wuᵀ)·Wdᵀ
 *   logits = rmsnorm(x[rows asked for]) · Woutᵀ
 *
 * Every op goes through the KBackend table (kernels/backend.h); this file
 * only plans the batch, owns the scratch buffers (allocated for the largest
 * batch seen) and makes the backend its opener chose (ModelOptions) through
 * k_backend_new, knowing no backend by name.
 */
#include "base/err.h"
#include "runtime/model.h"
#include "runtime/model_dev.h"
#include "runtime/model_tp.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ---------------------------------------------------------------- */

static const char *const arch_names[] = {
#define X(name, str, rope) str,
    MODEL_ARCHS(X)
#undef X
};
static_assert(sizeof arch_names / sizeof arch_names[0] == MODEL_ARCH_COUNT_, "one name per architecture");

static const KRopeStyle arch_rope[] = {
#define X(name, str, rope) rope,
    MODEL_ARCHS(X)
#undef X
};

const char *model_arch_name(ModelArch a)
{
    return (unsigned)a < MODEL_ARCH_COUNT_ ? arch_names[a] : "?";
}

int model_arch_from_name(const char *name)
{
    for (int i = 0; i < MODEL_ARCH_COUNT_; i++)
        if (strcmp(arch_names[i], name) == 0) return i;
    return -1;
}

/* ggml type names for messages about types sgl cannot run */
static const char *ggml_type_name(uint32_t t)
{
    if (k_dtype_known((int)t)) return k_dtype_name((KDtype)t);
    static const char *const names[] = {
        [10] = "Q2_K", [11] = "Q3_K", [16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS",
        [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S", [23] = "IQ4_XS",
        [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64", [29] = "IQ1_M",
        [34] = "TQ1_0", [35] = "TQ2_0", [39] = "MXFP4",
    };
    if (t < sizeof names / sizeof names[0] && names[t]) return names[t];
    return "unknown";
}

/* ---- config from GGUF ------------------------------------------------------ */

/* Optional integer key: absent leaves *out alone; an array (per-layer
 * values, e.g. head_count_kv in some files) must hold one repeated value. */
static int opt_int(const GgufFile *f, const char *key, int *out, char *err, size_t errcap)
{
    const GgufKV *kv = gguf_find(f, key);
    if (!kv) return 0;
    int64_t v;
    if (kv->type == GGUF_TYPE_ARRAY) {
        if (kv->arr_n == 0 || gguf_arr_i64(kv, 0, &v)) goto bad;
        for (uint64_t i = 1; i < kv->arr_n; i++) {
            int64_t w;
            if (gguf_arr_i64(kv, i, &w) || w != v) {
                err_fmt(err, errcap, "%s: '%s' differs between layers, which sgl does not support", gguf_path(f), key);
                return -1;
            }
        }
    } else if (gguf_kv_i64(kv, &v)) {
        goto bad;
    }
    if (v < 0 || v > (1 << 30)) goto bad;
    *out = (int)v;
    return 0;
bad:
    err_fmt(err, errcap, "%s: metadata key '%s' is not a valid count", gguf_path(f), key);
    return -1;
}

static int opt_float(const GgufFile *f, const char *key, float *out, char *err, size_t errcap)
{
    const GgufKV *kv = gguf_find(f, key);
    if (!kv) return 0;
    double d;
    if (gguf_kv_f64(kv, &d)) {
        err_fmt(err, errcap, "%s: metadata key '%s' is not a number", gguf_path(f), key);
        return -1;
    }
    *out = (float)d;
    return 0;
}

static int req_int(const GgufFile *f, const char *key, int *out, char *err, size_t errcap)
{
    *out = -1;
    if (opt_int(f, key, out, err, errcap)) return -1;
    if (*out < 0) {
        err_fmt(err, errcap, "%s: metadata key '%s' is missing", gguf_path(f), key);
        return -1;
    }
    return 0;
}

int model_config_from_gguf(const GgufFile *f, ModelConfig *cfg, char *err, size_t errcap)
{
    memset(cfg, 0, sizeof *cfg);
    const char *as;
    size_t alen;
    if (gguf_get_str(f, "general.architecture", &as, &alen, err, errcap)) return -1;
    char arch[64];
    if (alen >= sizeof arch) alen = sizeof arch - 1;
    memcpy(arch, as, alen);
    arch[alen] = 0;
    int a = model_arch_from_name(arch);
    if (a < 0) {
        err_fmt(err, errcap, "%s: architecture '%s' is not supported (sgl runs llama, mistral, qwen2)", gguf_path(f),
                arch);
        return -1;
    }
    cfg->arch = (ModelArch)a;
    cfg->rope_style = arch_rope[a];
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    if (req_int(f, KEY("block_count"), &cfg->n_layer, err, errcap) ||
        req_int(f, KEY("embedding_length"), &cfg->n_embd, err, errcap) ||
        req_int(f, KEY("attention.head_count"), &cfg->n_head, err, errcap) ||
        req_int(f, KEY("feed_forward_length"), &cfg->n_ff, err, errcap))
        return -1;
    cfg->n_head_kv = cfg->n_head;
    cfg->max_ctx = 4096;
    cfg->head_dim = cfg->n_head ? cfg->n_embd / cfg->n_head : 0;
    cfg->rope_theta = 10000.0f;
    cfg->rms_eps = 1e-5f;
    if (opt_int(f, KEY("attention.head_count_kv"), &cfg->n_head_kv, err, errcap) ||
        opt_int(f, KEY("context_length"), &cfg->max_ctx, err, errcap) ||
        opt_int(f, KEY("attention.key_length"), &cfg->head_dim, err, errcap) ||
        opt_float(f, KEY("rope.freq_base"), &cfg->rope_theta, err, errcap) ||
        opt_float(f, KEY("attention.layer_norm_rms_epsilon"), &cfg->rms_eps, err, errcap))
        return -1;
    cfg->rope_dim = cfg->head_dim;
    if (opt_int(f, KEY("rope.dimension_count"), &cfg->rope_dim, err, errcap)) return -1;
    int vl = -1;
    if (opt_int(f, KEY("attention.value_length"), &vl, err, errcap)) return -1;
    if (vl >= 0 && vl != cfg->head_dim) {
        err_fmt(err, errcap, "%s: key_length %d != value_length %d is not supported", gguf_path(f), cfg->head_dim, vl);
        return -1;
    }
    cfg->vocab = -1;
    if (opt_int(f, KEY("vocab_size"), &cfg->vocab, err, errcap)) return -1;
    if (cfg->vocab < 0) {
        const GgufKV *toks = gguf_find(f, "tokenizer.ggml.tokens");
        if (toks && toks->type == GGUF_TYPE_ARRAY) cfg->vocab = (int)toks->arr_n;
        else {
            const GgufTensor *te = gguf_find_tensor(f, "token_embd.weight");
            if (te) cfg->vocab = (int)te->ne[1];
        }
    }

    /* rope scaling: "none" / "linear" (also the older rope.scale_linear);
     * Llama 3 files carry a rope_freqs tensor instead, read by the loader */
    cfg->rope_scaling.type = MODEL_ROPE_SCALING_NONE;
    cfg->rope_scaling.factor = 1.0f;
    const GgufKV *st = gguf_find(f, KEY("rope.scaling.type"));
    float factor = 0;
    if (opt_float(f, KEY("rope.scaling.factor"), &factor, err, errcap)) return -1;
    if (st) {
        const char *s;
        size_t n;
        if (gguf_kv_str(st, &s, &n)) {
            err_fmt(err, errcap, "%s: %s is not a string", gguf_path(f), key);
            return -1;
        }
        if (n == 6 && memcmp(s, "linear", 6) == 0) {
            cfg->rope_scaling.type = MODEL_ROPE_SCALING_LINEAR;
        } else if (!(n == 4 && memcmp(s, "none", 4) == 0)) {
            err_fmt(err, errcap, "%s: rope scaling '%.*s' is not supported (none, linear, llama3)", gguf_path(f),
                    (int)n, s);
            return -1;
        }
    } else {
        float lin = 0;
        if (opt_float(f, KEY("rope.scale_linear"), &lin, err, errcap)) return -1;
        if (lin > 0 && lin != 1.0f) {
            cfg->rope_scaling.type = MODEL_ROPE_SCALING_LINEAR;
            factor = lin;
        }
    }
    if (cfg->rope_scaling.type == MODEL_ROPE_SCALING_LINEAR) {
        if (!(factor > 0)) {
            err_fmt(err, errcap, "%s: linear rope scaling without a positive factor", gguf_path(f));
            return -1;
        }
        cfg->rope_scaling.factor = factor;
    }
    if (opt_int(f, KEY("rope.scaling.original_context_length"), &cfg->rope_scaling.original_ctx, err, errcap))
        return -1;
#undef KEY
    cfg->bos_id = cfg->eos_id = -1;
    if (opt_int(f, "tokenizer.ggml.bos_token_id", &cfg->bos_id, err, errcap) ||
        opt_int(f, "tokenizer.ggml.eos_token_id", &cfg->eos_id, err, errcap))
        return -1;
    cfg->tied_embeddings = gguf_find_tensor(f, "output.weight") == NULL;
    cfg->qkv_bias = gguf_find_tensor(f, "blk.0.attn_q.bias") != NULL;
    return 0;
}

/* ---- model object -------------------------------------------------------------- */

struct ModelScratch {
    int max_tokens, max_rows, max_seqs;
    float *x, *h, *q, *k, *v, *att, *o, *gate, *up, *act, *cs, *hsel, *logits;
    int32_t *slots_new, *rows;
    KAttnSeq *aseqs;
};

typedef struct {
    void **bufs;
    int n, cap;
} Owned;

static int check_cfg(const ModelConfig *c, char *err, size_t errcap)
{
    if (c->n_layer <= 0 || c->n_embd <= 0 || c->n_head <= 0 || c->n_head_kv <= 0 || c->head_dim <= 0 ||
        c->n_ff <= 0 || c->vocab <= 0) {
        err_fmt(err, errcap,
                "model config: sizes must be positive (n_layer %d, n_embd %d, n_head %d, n_head_kv %d, head_dim %d, "
                "n_ff %d, vocab %d)",
                c->n_layer, c->n_embd, c->n_head, c->n_head_kv, c->head_dim, c->n_ff, c->vocab);
        return -1;
    }
    if (c->n_head % c->n_head_kv) {
        err_fmt(err, errcap, "model config: n_head %d is not a multiple of n_head_kv %d", c->n_head, c->n_head_kv);
        return -1;
    }
    if (c->rope_dim <= 0 || c->rope_dim > c->head_dim || c->rope_dim % 2) {
        err_fmt(err, errcap, "model config: rope_dim %d must be even and within head_dim %d", c->rope_dim, c->head_dim);
        return -1;
    }
    if (!(c->rope_theta > 0) || !(c->rms_eps > 0)) {
        err_fmt(err, errcap, "model config: rope_theta and rms_eps must be positive");
        return -1;
    }
    if (c->rope_scaling.type == MODEL_ROPE_SCALING_LLAMA3 &&
        (!(c->rope_scaling.factor > 0) || c->rope_scaling.original_ctx <= 0 ||
         !(c->rope_scaling.high_freq_factor > c->rope_scaling.low_freq_factor) ||
         !(c->rope_scaling.low_freq_factor > 0))) {
        err_fmt(err, errcap, "model config: llama3 rope scaling needs factor, low/high_freq_factor and original_ctx");
        return -1;
    }
    return 0;
}

Model *model_new(const ModelConfig *cfg, char *err, size_t errcap)
{
    if (check_cfg(cfg, err, errcap)) return NULL;
    Model *m = calloc(1, sizeof *m);
    Owned *o = calloc(1, sizeof *o);
    if (m) m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);

    if (!m || !o || !m->layers) {
        if (m) free(m->layers);
        free(m);
        free(o);
        err_fmt(err, errcap, "model: out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    m->owned_ = o;
    ModelOptions def;
    model_options_default(&def);
    model_set_options(m, &def);
    return m;
}

static void *own(Model *m, size_t bytes)
{
    Owned *o = m->owned_;
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        void **b = realloc(o->bufs, (size_t)cap * sizeof *b);
        if (!b) return NULL;
        o->bufs = b;
        o->cap = cap;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p) o->bufs[o->n++] = p;
    return p;
}

static void scratch_free(ModelScratch *s)
{
    if (!s) return;
    float *fs[] = {s->x, s->h, s->q, s->k, s->v, s->att, s->o, s->gate, s->up, s->act, s->cs, s->hsel, s->logits};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) free(fs[i]);
    free(s->slots_new);
    free(s->rows);
    free(s->aseqs);
    free(s);
}

void model_free(Model *m)
{
    if (!m) return;
    mtp_free(m);
    mdev_free(m);
    if (m->backend) m->backend->destroy(m->backend->ctx);
    scratch_free(m->scratch);
    Owned *o = m->owned_;
    if (o) {
        for (int i = 0; i < o->n; i++) free(o->bufs[i]);
        free(o->bufs);
        free(o);
    }
    free(m->rope_inv_freq);
    free(m->layers);
    if (m->release) m->release(m->release_ctx);
    free(m);
}

/* ---- options and the backend ------------------------------------------------------ */

void model_options_default(ModelOptions *o)
{
    memset(o, 0, sizeof *o);
    o->backend = K_BACKEND_CPU;
    o->batch_invariant = true;
}

void model_get_options(const Model *m, ModelOptions *out)
{
    memset(out, 0, sizeof *out);
    out->backend = m->backend_kind;
    out->n_threads = m->n_threads;
    out->batch_invariant = m->batch_invariant;
    out->backend_flags = m->backend_flags;
    out->mem_fraction = m->mem_fraction;
    out->tp = m->tp_size;
    out->tp_comm = m->tp_comm_kind;
    out->device_graphs = (ModelGraphs)m->device_graphs;
    out->quantization = (ModelQuant)m->quantization;
    out->kv_cache_dtype = (ModelKvCache)m->kv_cache_dtype;
}

int model_quant_from_name(const char *name)
{
    if (!name || !strcmp(name, "none")) return MODEL_QUANT_NONE;
    if (!strcmp(name, "fp8")) return MODEL_QUANT_FP8;
    return -1;
}

int model_kv_cache_from_name(const char *name)
{
    if (!name || !strcmp(name, "auto")) return MODEL_KV_AUTO;
    if (!strcmp(name, "bf16")) return MODEL_KV_BF16;
    if (!strcmp(name, "fp8_e4m3")) return MODEL_KV_FP8_E4M3;
    return -1;
}

void model_set_options(Model *m, const ModelOptions *o)
{
    m->mem_fraction = o->mem_fraction;
    bool same_tp = o->tp == m->tp_size && o->tp_comm == m->tp_comm_kind &&
                   (int)o->quantization == m->quantization; /* fp8 weights: a new upload, as a new tp */
    m->quantization = o->quantization;
    m->kv_cache_dtype = o->kv_cache_dtype; /* read by the next model_kv_new */
    m->device_graphs = o->device_graphs;
    if (o->backend == m->backend_kind && o->n_threads == m->n_threads && o->batch_invariant == m->batch_invariant &&
        o->backend_flags == m->backend_flags && same_tp)
        return;
    /* threads and batch invariance do not concern a device backend: it
     * keeps its uploaded weights */
    bool keep = m->backend && m->backend->dev && o->backend == m->backend_kind && o->backend_flags == m->backend_flags &&
                same_tp;
    m->tp_size = o->tp;
    m->tp_comm_kind = o->tp_comm;
    m->backend_kind = o->backend;
    m->n_threads = o->n_threads;
    m->batch_invariant = o->batch_invariant;
    m->backend_flags = o->backend_flags;
    if (m->backend && !keep) {
        mtp_free(m);
        mdev_free(m);
        m->backend->destroy(m->backend->ctx);
        m->backend = NULL;
    }
}

void model_set_threads(Model *m, int n_threads)
{
    ModelOptions o;
    model_get_options(m, &o);
    o.n_threads = n_threads;
    model_set_options(m, &o);
}

void model_set_batch_invariant(Model *m, bool on)
{
    ModelOptions o;
    model_get_options(m, &o);
    o.batch_invariant = on;
    model_set_options(m, &o);
}

const float *model_inv_freq(const Model *m) { return m->rope_inv_freq; }

const char *model_backend_name(const Model *m) { return m->backend ? m->backend->name : NULL; }

/* The backend the options name, made if there is none (n_threads may have
 * been written directly since: it is read here). */
static int ensure_backend(Model *m, char *err, size_t errcap)
{
    if (m->backend) return 0;
    KBackendConfig c = {.kind = m->backend_kind, .n_threads = m->n_threads, .batch_invariant = m->batch_invariant,
                        .flags = m->backend_flags};
    m->backend = k_backend_new(&c, err, errcap);
    if (!m->backend) return -1;
    /* the fp8 options: device backends that run fp8 only */
    const char *fp8 = m->quantization == MODEL_QUANT_FP8          ? "--quantization fp8"
                      : m->kv_cache_dtype == MODEL_KV_FP8_E4M3 ? "--kv-cache-dtype fp8_e4m3" : NULL;
    const char *no = !fp8 ? NULL : !m->backend->dev ? "it runs on a device backend (cuda)" : m->backend->dev->no_fp8;
    if (no) {
        err_fmt(err, errcap, "model: %s is not supported by the %s backend: %s", fp8, m->backend->name, no);
        m->backend->destroy(m->backend->ctx);
        m->backend = NULL;
        return -1;
    }
    if (mtp_wanted(m)) {
        /* rank 0 is this backend (device 0); model_tp.c makes the others */
        if (!mtp_open(m, err, errcap)) return 0;
        m->backend->destroy(m->backend->ctx);
        m->backend = NULL;
        return -1;
    }
    if (m->backend->dev && mdev_open(m, err, errcap)) {
        m->backend->destroy(m->backend->ctx);
        m->backend = NULL;
        return -1;
    }
    return 0;
}

int model_on_device(const Model *m) { return m->backend && m->backend->dev; }

int model_kv_slots(const Model *m)
{
    if (!model_on_device(m)) return 0;
    return m->tp ? mtp_kv_slots(m) : mdev_kv_slots(m);
}

int model_tp_ranks(const Model *m) { return m->tp_size > 1 ? m->tp_size : 1; }

const char *model_tp_comm_name(const Model *m) { return mtp_comm_name(m); }

/* K/V values per slot in one layer of this rank's pool (its KV heads). */
static int kv_dim_of(const Model *m) { return m->cfg.n_head_kv / model_tp_ranks(m) * m->cfg.head_dim; }

KvPool *model_kv_new(Model *m, int n_slots, KDtype dtype, char *err, size_t errcap)
{
    const ModelConfig *c = &m->cfg;
    if (ensure_backend(m, err, errcap)) return NULL;
    int kv_dim = kv_dim_of(m);
    if (!m->backend->dev) return kv_new(c->n_layer, n_slots, kv_dim, dtype, err, errcap);
    if (dtype == K_DTYPE_F32) {
        err_fmt(err, errcap, "kv pool: the %s backend keeps K/V in %s; an F32 pool is not supported", m->backend->name,
                k_dtype_name(m->backend->dev->act_dtype));
        return NULL;
    }
    KDtype kt = m->kv_cache_dtype == MODEL_KV_FP8_E4M3 ? K_DTYPE_F8_E4M3 : m->backend->dev->act_dtype;
    if (m->tp) {
        if (kt == K_DTYPE_F8_E4M3) {
            err_fmt(err, errcap, "kv pool: --kv-cache-dtype fp8_e4m3 is not supported with tensor parallelism yet");
            return NULL;
        }
        return mtp_kv_new(m, n_slots, err, errcap);
    }
    return kv_new_on(m->backend, c->n_layer, n_slots, kv_dim, kt, err, errcap);
}

/* ---- validation ------------------------------------------------------------------ */

static int check_tensor(Model *m, KTensor *t, const char *name, int64_t ne0, int64_t ne1, char *err, size_t errcap)
{
    if (!t->data) {
        err_fmt(err, errcap, "model: tensor '%s' is missing", name);
        return -1;
    }
    if (!k_dtype_known(t->dtype) || t->dtype == K_DTYPE_Q8_1 || t->dtype == K_DTYPE_Q8_K) {
        err_fmt(err, errcap, "model: tensor '%s' has type %s, which sgl cannot compute with", name,
                ggml_type_name((uint32_t)t->dtype));
        return -1;
    }
    int64_t want1 = ne1 ? ne1 : 1;
    if (t->ne[0] != ne0 || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1) {
        err_fmt(err, errcap, "model: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", name,
                (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], (long long)ne0,
                (long long)want1);
        return -1;
    }
    if (ne0 % k_dtype_block(t->dtype)) {
        err_fmt(err, errcap, "model: tensor '%s' rows (%lld) are not whole %s blocks", name, (long long)ne0,
                k_dtype_name(t->dtype));
        return -1;
    }
    /* vectors (norm weights, biases) feed the kernels as f32 */
    if (ne1 == 0 && t->dtype != K_DTYPE_F32) {
        float *f = own(m, (size_t)ne0 * sizeof(float));
        if (!f) {
            err_fmt(err, errcap, "model: out of memory");
            return -1;
        }
        k_dequant_row_host(t->dtype, t->data, f, ne0);
        t->dtype = K_DTYPE_F32;
        t->data = f;
    }
    return 0;
}

void model_rope_inv_freq(const ModelConfig *c, const float *ff, float *out)
{
    for (int p = 0; p < c->rope_dim / 2; p++) {
        double f = pow((double)c->rope_theta, -2.0 * p / c->rope_dim);
        if (c->rope_scaling.type == MODEL_ROPE_SCALING_LINEAR) {
            f /= c->rope_scaling.factor;
        } else if (c->rope_scaling.type == MODEL_ROPE_SCALING_LLAMA3 && !ff) {
            /* Llama 3.1: long wavelengths slowed by `factor`, short ones kept,
             * a linear blend in between */
            double orig = c->rope_scaling.original_ctx, lo = c->rope_scaling.low_freq_factor;
            double hi = c->rope_scaling.high_freq_factor, fac = c->rope_scaling.factor;
            double wavelen = 2 * M_PI / f;
            if (wavelen > orig / lo) {
                f /= fac;
            } else if (wavelen >= orig / hi) {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                f = (1 - smooth) * f / fac + smooth * f;
            }
        }
        if (ff) f /= ff[p];
        out[p] = (float)f;
    }
}

static int rope_tables(Model *m, char *err, size_t errcap)
{
    m->rope_inv_freq = malloc((size_t)(m->cfg.rope_dim / 2) * sizeof(float));
    if (!m->rope_inv_freq) {
        err_fmt(err, errcap, "model: out of memory");
        return -1;
    }
    model_rope_inv_freq(&m->cfg, m->rope_freqs.data, m->rope_inv_freq);
    return 0;
}

int model_finish(Model *m, char *err, size_t errcap)
{
    const ModelConfig *c = &m->cfg;
    if (check_cfg(c, err, errcap)) return -1;
    int64_t E = c->n_embd, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    if (check_tensor(m, &m->tok_embd, "token_embd", E, c->vocab, err, errcap)) return -1;
    if (check_tensor(m, &m->out_norm, "output_norm", E, 0, err, errcap)) return -1;
    if (c->tied_embeddings) m->output = m->tok_embd;
    else if (check_tensor(m, &m->output, "output", E, c->vocab, err, errcap)) return -1;
    if (m->rope_freqs.data && check_tensor(m, &m->rope_freqs, "rope_freqs", c->rope_dim / 2, 0, err, errcap))
        return -1;
    for (int l = 0; l < c->n_layer; l++) {
        ModelLayer *L = &m->layers[l];
        char name[96];
        struct { KTensor *t; const char *gguf; int64_t ne0, ne1; int req; } want[] = {
            {&L->attn_norm, "attn_norm.weight", E, 0, 1},
            {&L->wq, "attn_q.weight", E, Q, 1},
            {&L->wk, "attn_k.weight", E, KV, 1},
            {&L->wv, "attn_v.weight", E, KV, 1},
            {&L->bq, "attn_q.bias", Q, 0, c->qkv_bias},
            {&L->bk, "attn_k.bias", KV, 0, c->qkv_bias},
            {&L->bv, "attn_v.bias", KV, 0, c->qkv_bias},
            {&L->wo, "attn_output.weight", Q, E, 1},
            {&L->ffn_norm, "ffn_norm.weight", E, 0, 1},
            {&L->w_gate, "ffn_gate.weight", E, c->n_ff, 1},
            {&L->w_up, "ffn_up.weight", E, c->n_ff, 1},
            {&L->w_down, "ffn_down.weight", c->n_ff, E, 1},
        };
        static_assert(sizeof want / sizeof want[0] == sizeof(ModelLayer) / sizeof(KTensor),
                      "validate every field of ModelLayer");
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            if (!want[i].req) {
                if (want[i].t->data) {
                    err_fmt(err, errcap, "model: blk.%d.%s is present but the config says no qkv bias", l,
                            want[i].gguf);
                    return -1;
                }
                continue;
            }
            snprintf(name, sizeof name, "blk.%d.%s", l, want[i].gguf);
            if (check_tensor(m, want[i].t, name, want[i].ne0, want[i].ne1, err, errcap)) return -1;
        }
    }
    return rope_tables(m, err, errcap);
}

/* ---- GGUF loader ------------------------------------------------------------------- */

static void release_gguf(void *f) { gguf_close(f); }

static int take_tensor(const GgufFile *f, const char *name, KTensor *t, int required, char *err, size_t errcap)
{
    const GgufTensor *g = gguf_find_tensor(f, name);
    if (!g) {
        if (required) err_fmt(err, errcap, "%s: tensor '%s' is missing", gguf_path(f), name);
        return required ? -1 : 0;
    }
    if (!g->data) {
        err_fmt(err, errcap, "%s: tensor '%s' has type %s (%u), which sgl does not support", gguf_path(f), name,
                ggml_type_name(g->ggml_type), g->ggml_type);
        return -1;
    }
    t->dtype = (KDtype)g->ggml_type;
    for (int i = 0; i < 4; i++) t->ne[i] = g->ne[i];
    t->data = g->data;
    return 0;
}

int model_load_gguf(const char *path, Model **out, char *err, size_t errcap)
{
    *out = NULL;
    GgufFile *f = gguf_open(path, err, errcap);
    if (!f) return -1;
    ModelConfig cfg;
    if (model_config_from_gguf(f, &cfg, err, errcap)) {
        gguf_close(f);
        return -1;
    }
    Model *m = model_new(&cfg, err, errcap);
    if (!m) {
        gguf_close(f);
        return -1;
    }
    m->release = release_gguf;
    m->release_ctx = f;
    m->gguf = f;
    if (take_tensor(f, "token_embd.weight", &m->tok_embd, 1, err, errcap) ||
        take_tensor(f, "output_norm.weight", &m->out_norm, 1, err, errcap) ||
        take_tensor(f, "output.weight", &m->output, !cfg.tied_embeddings, err, errcap) ||
        take_tensor(f, "rope_freqs.weight", &m->rope_freqs, 0, err, errcap))
        goto fail;
    for (int l = 0; l < cfg.n_layer; l++) {
        ModelLayer *L = &m->layers[l];
        char name[96];
#define X(field, gguf, hf, req)                                                             \
        snprintf(name, sizeof name, "blk.%d.%s", l, gguf);                                  \
        if (take_tensor(f, name, &L->field, req || cfg.qkv_bias, err, errcap)) goto fail;
        MODEL_LAYER_TENSORS(X)
#undef X
    }
    if (model_finish(m, err, errcap)) {
        /* name the file in validation messages too */
        if (err && errcap) {
            size_t n = strlen(err), pl = strlen(path) + 2;
            if (n + pl < errcap) {
                memmove(err + pl, err, n + 1);
                memcpy(err, path, pl - 2);
                err[pl - 2] = ':';
                err[pl - 1] = ' ';
            }
        }
        goto fail;
    }
    *out = m;
    return 0;
fail:
    model_free(m);
    return -1;
}

/* ---- forward ------------------------------------------------------------------------- */

#define GROW(ptr, count)                                                  \
    do {                                                                  \
        void *p_ = realloc((ptr), (size_t)(count) * sizeof *(ptr));       \
        if (!p_) goto oom;                                                \
        (ptr) = p_;                                                       \
    } while (0)

int model_reserve(Model *m, int max_tokens, int max_logit_rows, char *err, size_t errcap)
{
    const ModelConfig *c = &m->cfg;
    if (ensure_backend(m, err, errcap)) return -1;
    if (m->backend->dev)
        return m->tp ? mtp_reserve(m, max_tokens, max_logit_rows, err, errcap)
                     : mdev_reserve(m, max_tokens, max_logit_rows, err, errcap);
    if (!m->scratch && !(m->scratch = calloc(1, sizeof *m->scratch))) goto oom;
    ModelScratch *s = m->scratch;
    if (max_tokens > s->max_tokens) {
        size_t T = (size_t)max_tokens, Q = (size_t)c->n_head * c->head_dim, KV = (size_t)c->n_head_kv * c->head_dim;
        size_t W = (size_t)c->n_embd > Q ? (size_t)c->n_embd : Q;
        GROW(s->x, T * c->n_embd);
        GROW(s->h, T * c->n_embd);
        GROW(s->q, T * Q);
        GROW(s->k, T * KV);
        GROW(s->v, T * KV);
        GROW(s->att, T * Q);
        GROW(s->o, T * W);
        GROW(s->gate, T * c->n_ff);
        GROW(s->up, T * c->n_ff);
        GROW(s->act, T * c->n_ff);
        GROW(s->cs, T * c->rope_dim);
        GROW(s->slots_new, T);
        s->max_tokens = max_tokens;
    }
    if (max_logit_rows > s->max_rows) {
        GROW(s->rows, max_logit_rows);
        GROW(s->hsel, (size_t)max_logit_rows * c->n_embd);
        GROW(s->logits, (size_t)max_logit_rows * c->vocab);
        s->max_rows = max_logit_rows;
    }
    return ensure_backend(m, err, errcap);
oom:
    err_fmt(err, errcap, "model: out of memory for a batch of %d tokens / %d logit rows", max_tokens, max_logit_rows);
    return -1;
}

int model_sample(Model *m, ModelBatch *b, char *err, size_t errcap)
{
    if (!m->backend || !m->backend->dev || !m->device) {
        err_fmt(err, errcap, "model_sample: the model does not compute on a device backend");
        return -1;
    }
    return mdev_sample(m, b, err, errcap);
}

static int forward_impl(Model *m, KvPool *kv, ModelBatch *b, int launch, char *err, size_t errcap);

int model_forward(Model *m, KvPool *kv, ModelBatch *b, char *err, size_t errcap)
{
    return forward_impl(m, kv, b, 0, err, errcap);
}

int model_launch(Model *m, KvPool *kv, ModelBatch *b, char *err, size_t errcap)
{
    return forward_impl(m, kv, b, 1, err, errcap);
}

int model_wait(Model *m, ModelBatch *b, char *err, size_t errcap)
{
    if (!m->backend || !m->backend->dev || !m->device || m->tp) {
        err_fmt(err, errcap, "model_wait: the model does not compute on one device");
        return -1;
    }
    return mdev_wait(m, b, err, errcap);
}

int model_in_flight(const Model *m) { return m->device ? mdev_in_flight(m) : 0; }

static int forward_impl(Model *m, KvPool *kv, ModelBatch *b, int launch, char *err, size_t errcap)
{
    const ModelConfig *c = &m->cfg;
    b->logits = NULL;
    b->n_rows = 0;
    if (!b->n_seqs || !b->seqs) {
        err_fmt(err, errcap, "model_forward: empty batch");
        return -1;
    }
    if (kv->n_layer != c->n_layer || kv->kv_dim != kv_dim_of(m)) {
        err_fmt(err, errcap, "model_forward: KV pool made for %d layers x %d, model needs %d x %d", kv->n_layer,
                kv->kv_dim, c->n_layer, kv_dim_of(m));
        return -1;
    }
    int N = 0, R = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        ModelSeq *s = &b->seqs[i];
        if (s->n_new <= 0 || s->n_new > s->n_ctx || !s->tokens || !s->slots) {
            err_fmt(err, errcap, "model_forward: sequence %d: need 1 <= n_new (%d) <= n_ctx (%d) and tokens/slots", i,
                    s->n_new, s->n_ctx);
            return -1;
        }
        if (s->prev_ref && (!launch || s->prev_ref < 0 || s->n_new != 1)) {
            err_fmt(err, errcap, "model_forward: sequence %d: prev_ref needs model_launch and n_new 1", i);
            return -1;
        }
        for (int j = s->prev_ref ? 1 : 0; j < s->n_new; j++)
            if (s->tokens[j] < 0 || s->tokens[j] >= c->vocab) {
                err_fmt(err, errcap, "model_forward: sequence %d: token id %d out of range (vocab %d)", i,
                        s->tokens[j], c->vocab);
                return -1;
            }
        for (int j = 0; j < s->n_ctx; j++)
            if (s->slots[j] < 0 || s->slots[j] >= kv->n_slots) {
                err_fmt(err, errcap, "model_forward: sequence %d: slot %d out of range (pool has %d)", i, s->slots[j],
                        kv->n_slots);
                return -1;
            }
        if (s->pos)
            for (int j = 0; j < s->n_new; j++)
                if (s->pos[j] < 0) {
                    err_fmt(err, errcap, "model_forward: sequence %d: negative position", i);
                    return -1;
                }
        if (N > INT32_MAX - s->n_new) {
            err_fmt(err, errcap, "model_forward: batch too large");
            return -1;
        }
        N += s->n_new;
        R += s->logits == MODEL_LOGITS_ALL ? s->n_new : s->logits == MODEL_LOGITS_LAST ? 1 : 0;
        if (s->sample && (s->logits != MODEL_LOGITS_LAST || s->device_argmax)) {
            err_fmt(err, errcap, "model_forward: sequence %d: device sampling needs logits LAST and no device_argmax",
                    i);
            return -1;
        }
    }
    if (b->n_sample < 0 || b->n_sample > c->vocab) {
        err_fmt(err, errcap, "model_forward: n_sample %d outside [0, vocab %d]", b->n_sample, c->vocab);
        return -1;
    }
    if (ensure_backend(m, err, errcap)) return -1;
    if (launch) {
        if (!m->backend->dev || m->tp) {
            err_fmt(err, errcap, "model_launch: needs a device backend without tensor parallelism (%s)",
                    m->backend->name);
            return -1;
        }
        return mdev_launch(m, kv, b, N, R, err, errcap);
    }
    if (m->backend->dev && !m->tp) return mdev_forward(m, kv, b, N, R, err, errcap);
    for (int i = 0; i < b->n_seqs; i++)
        if (b->seqs[i].sample) {
            err_fmt(err, errcap, "model_forward: device sampling (ModelSeq.sample) needs a device backend without "
                    "tensor parallelism, not %s%s", m->backend->name, m->tp ? " with --tp" : "");
            return -1;
        }
    if (m->backend->dev) return mtp_forward(m, kv, b, N, R, err, errcap);
    if (kv->mem) {
        err_fmt(err, errcap, "model_forward: the KV pool is in %s's memory but the model computes on %s",
                kv->mem->name, m->backend->name);
        return -1;
    }
    ModelScratch *sc = m->scratch;
    if (!sc || N > sc->max_tokens || R > sc->max_rows) {
        int mt = sc && sc->max_tokens > N ? sc->max_tokens : N;
        int mr = sc && sc->max_rows > R ? sc->max_rows : R;
        if (model_reserve(m, mt, mr, err, errcap)) return -1;
        sc = m->scratch;
    }
    if (b->n_seqs > sc->max_seqs) {
        KAttnSeq *a = realloc(sc->aseqs, (size_t)b->n_seqs * sizeof *a);
        if (!a) {
            err_fmt(err, errcap, "model: out of memory");
            return -1;
        }
        sc->aseqs = a;
        sc->max_seqs = b->n_seqs;
    }
    if (ensure_backend(m, err, errcap)) return -1;
    const KBackend *be = m->backend;
    void *bx = be->ctx;

    /* plan: embed each sequence's new tokens into consecutive rows, stack
     * their slots, build the cos/sin table from positions, list logit rows */
    int row = 0, r = 0, half = c->rope_dim / 2;
    for (int i = 0; i < b->n_seqs; i++) {
        ModelSeq *s = &b->seqs[i];
        sc->aseqs[i] = (KAttnSeq){.slots = s->slots, .n_ctx = s->n_ctx, .n_new = s->n_new, .row0 = row};
        be->embed(bx, &m->tok_embd, s->tokens, s->n_new, sc->x + (size_t)row * c->n_embd);
        for (int j = 0; j < s->n_new; j++) {
            int t = row + j;
            sc->slots_new[t] = s->slots[s->n_ctx - s->n_new + j];
            double pos = s->pos ? s->pos[j] : s->n_ctx - s->n_new + j;
            for (int p = 0; p < half; p++) {
                double ang = pos * (double)m->rope_inv_freq[p];
                sc->cs[(size_t)t * c->rope_dim + 2 * p] = (float)cos(ang);
                sc->cs[(size_t)t * c->rope_dim + 2 * p + 1] = (float)sin(ang);
            }
        }
        s->logits_row = -1;
        if (s->logits == MODEL_LOGITS_ALL) {
            s->logits_row = r;
            for (int j = 0; j < s->n_new; j++) sc->rows[r++] = row + j;
        } else if (s->logits == MODEL_LOGITS_LAST) {
            s->logits_row = r;
            sc->rows[r++] = row + s->n_new - 1;
        }
        row += s->n_new;
    }

    int E = c->n_embd, KVd = c->n_head_kv * c->head_dim;
    KAttnArgs aa = {.q = sc->q, .out = sc->att, .kv_dtype = kv->dtype, .n_head = c->n_head,
                    .n_head_kv = c->n_head_kv, .head_dim = c->head_dim, .scale = 1.0f / sqrtf((float)c->head_dim),
                    .seqs = sc->aseqs, .n_seqs = b->n_seqs};
    for (int l = 0; l < c->n_layer; l++) {
        const ModelLayer *L = &m->layers[l];
        be->rmsnorm(bx, sc->x, L->attn_norm.data, sc->h, N, E, c->rms_eps);
        const KTensor *qkv[3] = {&L->wq, &L->wk, &L->wv};
        const float *qkv_b[3] = {L->bq.data, L->bk.data, L->bv.data};
        float *qkv_y[3] = {sc->q, sc->k, sc->v};
        be->matmul_multi(bx, 3, qkv, qkv_b, sc->h, N, qkv_y);
        be->rope(bx, sc->q, N, c->n_head, c->head_dim, c->rope_dim, sc->cs, c->rope_style);
        be->rope(bx, sc->k, N, c->n_head_kv, c->head_dim, c->rope_dim, sc->cs, c->rope_style);
        be->kv_store(bx, kv->k[l], kv->v[l], kv->dtype, KVd, sc->k, sc->v, sc->slots_new, N);
        aa.k_pool = kv->k[l];
        aa.v_pool = kv->v[l];
        be->attention(bx, &aa);
        be->matmul(bx, &L->wo, NULL, sc->att, N, sc->o);
        be->add(bx, sc->x, sc->o, (size_t)N * E);
        be->rmsnorm(bx, sc->x, L->ffn_norm.data, sc->h, N, E, c->rms_eps);
        const KTensor *gu[2] = {&L->w_gate, &L->w_up};
        float *gu_y[2] = {sc->gate, sc->up};
        be->matmul_multi(bx, 2, gu, NULL, sc->h, N, gu_y);
        be->swiglu(bx, sc->gate, sc->up, sc->act, (size_t)N * c->n_ff);
        be->matmul(bx, &L->w_down, NULL, sc->act, N, sc->o);
        be->add(bx, sc->x, sc->o, (size_t)N * E);
    }
    if (R > 0) {
        KTensor xt = {.dtype = K_DTYPE_F32, .ne = {E, N, 1, 1}, .data = sc->x};
        be->embed(bx, &xt, sc->rows, R, sc->hsel);
        be->rmsnorm(bx, sc->hsel, m->out_norm.data, sc->hsel, R, E, c->rms_eps);
        be->matmul(bx, &m->output, NULL, sc->hsel, R, sc->logits);
    }
    const char *e = be->error(bx);
    if (e) {
        err_fmt(err, errcap, "model_forward: %s", e);
        return -1;
    }
    /* device_argmax rows: the first maximum of the row, picked here */
    for (int i = 0; i < b->n_seqs; i++) {
        ModelSeq *s = &b->seqs[i];
        if (!s->device_argmax || s->logits != MODEL_LOGITS_LAST) continue;
        const float *lr = sc->logits + (size_t)s->logits_row * c->vocab;
        int best = 0;
        for (int j = 1; j < c->vocab; j++)
            if (lr[j] > lr[best]) best = j;
        s->argmax = best;
        s->logits_row = -1;
    }
    b->logits = sc->logits;
    b->n_rows = R;
    return 0;
}
