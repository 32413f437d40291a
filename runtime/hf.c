/*
 * runtime/hf.c — Hugging Face directory loader: config.json,
 * generation_config.json, tensor names -> Model. See hf.h.
 */
#include "base/err.h"
#include "runtime/hf.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/safetensors.h"

void hf_gen_config_init(HfGenConfig *g)
{
    memset(g, 0, sizeof *g);
    g->bos_id = -1;
    g->pad_id = -1;
}

/* ---- JSON helpers --------------------------------------------------------
 * Each returns 0 (value stored, or key absent/null and default kept) or -1
 * with a message naming `what` and the key. */

static int get_int(json_t *o, const char *key, int *out, bool required, const char *what,
                   char *err, size_t errcap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (!required) return 0;
        err_fmt(err, errcap, "%s: missing \"%s\"", what, key);
        return -1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > INT32_MAX) {
        err_fmt(err, errcap, "%s: \"%s\" must be an integer", what, key);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_float(json_t *o, const char *key, float *out, bool *present, const char *what,
                     char *err, size_t errcap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) {
        err_fmt(err, errcap, "%s: \"%s\" must be a number", what, key);
        return -1;
    }
    *out = (float)json_number_value(v);
    if (present) *present = true;
    return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, bool *present, const char *what,
                    char *err, size_t errcap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) {
        err_fmt(err, errcap, "%s: \"%s\" must be true or false", what, key);
        return -1;
    }
    *out = json_is_true(v);
    if (present) *present = true;
    return 0;
}

/* eos_token_id: an integer or a list of them; appended to gen's list
 * (duplicates skipped). *first gets the first id (unchanged if none). */
static int get_ids(json_t *o, const char *key, HfGenConfig *gen, int *first, const char *what,
                   char *err, size_t errcap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(e) || json_integer_value(e) < 0 ||
            json_integer_value(e) > INT32_MAX) {
            err_fmt(err, errcap, "%s: \"%s\" must be a token id or a list of them", what, key);
            return -1;
        }
        int32_t id = (int32_t)json_integer_value(e);
        if (first && i == 0) *first = id;
        if (!gen) continue;
        bool dup = false;
        for (int j = 0; j < gen->n_eos; j++) dup |= gen->eos_ids[j] == id;
        if (dup) continue;
        if (gen->n_eos == HF_MAX_EOS) {
            err_fmt(err, errcap, "%s: more than %d ids in \"%s\"", what, HF_MAX_EOS, key);
            return -1;
        }
        gen->eos_ids[gen->n_eos++] = id;
    }
    return 0;
}

static json_t *parse_json(const char *text, size_t len, const char *what, char *err,
                          size_t errcap)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root) {
        err_fmt(err, errcap, "%s: invalid JSON: %s (line %d, column %d)", what, je.text, je.line,
                je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        err_fmt(err, errcap, "%s: not a JSON object", what);
        json_decref(root);
        return NULL;
    }
    return root;
}

/* ---- config.json ---------------------------------------------------------- */

/* architectures[] entries each model_type may name */
static const struct {
    const char *model_type, *architecture;
} known_archs[] = {
    { "llama", "LlamaForCausalLM" },
    { "mistral", "MistralForCausalLM" },
    { "qwen2", "Qwen2ForCausalLM" },
};

static int parse_rope(json_t *root, ModelConfig *cfg, const char *what, char *err, size_t errcap)
{
    cfg->rope_theta = 10000.0f;
    if (get_float(root, "rope_theta", &cfg->rope_theta, NULL, what, err, errcap)) return -1;
    /* transformers 5 writes rope_parameters (theta inside); older files
     * rope_scaling. Either may be null. */
    json_t *rs = json_object_get(root, "rope_parameters");
    const char *key = "rope_parameters";
    if (!rs || json_is_null(rs)) {
        rs = json_object_get(root, "rope_scaling");
        key = "rope_scaling";
    }
    cfg->rope_scaling.type = MODEL_ROPE_SCALING_NONE;
    cfg->rope_scaling.factor = 1.0f;
    if (!rs || json_is_null(rs)) return 0;
    if (!json_is_object(rs)) {
        err_fmt(err, errcap, "%s: \"%s\" must be an object or null", what, key);
        return -1;
    }
    if (get_float(rs, "rope_theta", &cfg->rope_theta, NULL, what, err, errcap)) return -1;
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : "default";
    if (strcmp(type, "default") == 0) return 0;
    bool has_factor = false;
    if (get_float(rs, "factor", &cfg->rope_scaling.factor, &has_factor, what, err, errcap))
        return -1;
    if (!has_factor || !(cfg->rope_scaling.factor >= 1.0f)) {
        err_fmt(err, errcap, "%s: %s of type '%s' needs a factor >= 1", what, key, type);
        return -1;
    }
    if (strcmp(type, "linear") == 0) {
        cfg->rope_scaling.type = MODEL_ROPE_SCALING_LINEAR;
        return 0;
    }
    if (strcmp(type, "llama3") == 0) {
        cfg->rope_scaling.type = MODEL_ROPE_SCALING_LLAMA3;
        bool hl = false, hh = false;
        int orig = 0;
        if (get_float(rs, "low_freq_factor", &cfg->rope_scaling.low_freq_factor, &hl, what, err,
                      errcap) ||
            get_float(rs, "high_freq_factor", &cfg->rope_scaling.high_freq_factor, &hh, what, err,
                      errcap) ||
            get_int(rs, "original_max_position_embeddings", &orig, true, what, err, errcap))
            return -1;
        if (!hl || !hh || orig <= 0 ||
            !(cfg->rope_scaling.high_freq_factor > cfg->rope_scaling.low_freq_factor)) {
            err_fmt(err, errcap,
                    "%s: llama3 %s needs low_freq_factor < high_freq_factor and a positive "
                    "original_max_position_embeddings",
                    what, key);
            return -1;
        }
        cfg->rope_scaling.original_ctx = orig;
        return 0;
    }
    err_fmt(err, errcap,
            "%s: %s type '%s' is not supported (sgl knows default, linear and llama3)", what, key,
            type);
    return -1;
}

int hf_parse_config(const char *json, size_t len, const char *what, ModelConfig *cfg,
                    HfGenConfig *gen, char *err, size_t errcap)
{
    json_t *root = parse_json(json, len, what, err, errcap);
    if (!root) return -1;
    int rc = -1;
    memset(cfg, 0, sizeof *cfg);

    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_string(mt)) {
        err_fmt(err, errcap, "%s: missing \"model_type\"", what);
        goto out;
    }
    const char *model_type = json_string_value(mt);
    int arch = -1;
    for (size_t i = 0; i < sizeof known_archs / sizeof *known_archs; i++)
        if (strcmp(model_type, known_archs[i].model_type) == 0) arch = model_arch_from_name(model_type);
    if (arch < 0) {
        json_t *a0 = json_array_get(json_object_get(root, "architectures"), 0);
        err_fmt(err, errcap,
                "%s: model_type '%s'%s%s%s is not supported (sgl loads llama, mistral, qwen2)", what,
                model_type, json_is_string(a0) ? " (" : "",
                json_is_string(a0) ? json_string_value(a0) : "", json_is_string(a0) ? ")" : "");
        goto out;
    }
    cfg->arch = (ModelArch)arch;
    json_t *archs = json_object_get(root, "architectures");
    if (json_is_array(archs)) {
        for (size_t i = 0; i < json_array_size(archs); i++) {
            json_t *a = json_array_get(archs, i);
            bool ok = false;
            for (size_t k = 0; k < sizeof known_archs / sizeof *known_archs; k++)
                ok |= json_is_string(a) &&
                      strcmp(known_archs[k].model_type, model_type) == 0 &&
                      strcmp(known_archs[k].architecture, json_string_value(a)) == 0;
            if (!ok) {
                err_fmt(err, errcap,
                        "%s: architecture '%s' is not a %s causal LM that sgl can run", what,
                        json_is_string(a) ? json_string_value(a) : "?", model_type);
                goto out;
            }
        }
    }

    if (get_int(root, "hidden_size", &cfg->n_embd, true, what, err, errcap) ||
        get_int(root, "intermediate_size", &cfg->n_ff, true, what, err, errcap) ||
        get_int(root, "num_hidden_layers", &cfg->n_layer, true, what, err, errcap) ||
        get_int(root, "num_attention_heads", &cfg->n_head, true, what, err, errcap) ||
        get_int(root, "vocab_size", &cfg->vocab, true, what, err, errcap))
        goto out;
    /* the transformers defaults of each config class */
    cfg->n_head_kv = cfg->arch == MODEL_ARCH_MISTRAL ? 8
                     : cfg->arch == MODEL_ARCH_QWEN2 ? 32
                                                     : cfg->n_head;
    cfg->max_ctx = cfg->arch == MODEL_ARCH_MISTRAL ? 4096 * 32
                   : cfg->arch == MODEL_ARCH_QWEN2 ? 32768
                                                   : 2048;
    cfg->head_dim = cfg->n_head > 0 ? cfg->n_embd / cfg->n_head : 0;
    cfg->rms_eps = 1e-6f;
    if (get_int(root, "num_key_value_heads", &cfg->n_head_kv, false, what, err, errcap) ||
        get_int(root, "head_dim", &cfg->head_dim, false, what, err, errcap) ||
        get_int(root, "max_position_embeddings", &cfg->max_ctx, false, what, err, errcap) ||
        get_float(root, "rms_norm_eps", &cfg->rms_eps, NULL, what, err, errcap) ||
        get_bool(root, "tie_word_embeddings", &cfg->tied_embeddings, NULL, what, err, errcap))
        goto out;
    if (cfg->n_embd <= 0 || cfg->n_ff <= 0 || cfg->n_layer <= 0 || cfg->n_head <= 0 ||
        cfg->n_head_kv <= 0 || cfg->vocab <= 0 || cfg->head_dim <= 0 || cfg->max_ctx <= 0) {
        err_fmt(err, errcap, "%s: sizes must be positive", what);
        goto out;
    }
    if (cfg->n_head % cfg->n_head_kv != 0) {
        err_fmt(err, errcap, "%s: num_attention_heads (%d) is not a multiple of "
                "num_key_value_heads (%d)", what, cfg->n_head, cfg->n_head_kv);
        goto out;
    }
    if (cfg->head_dim % 2 != 0) {
        err_fmt(err, errcap, "%s: head_dim %d is odd (RoPE rotates pairs)", what, cfg->head_dim);
        goto out;
    }
    if (!(cfg->rms_eps > 0.0f)) {
        err_fmt(err, errcap, "%s: rms_norm_eps must be positive", what);
        goto out;
    }
    cfg->rope_dim = cfg->head_dim;
    cfg->rope_style = K_ROPE_NEOX;
    float partial = 1.0f;
    if (get_float(root, "partial_rotary_factor", &partial, NULL, what, err, errcap)) goto out;
    if (partial != 1.0f) {
        err_fmt(err, errcap, "%s: partial_rotary_factor %g is not supported", what,
                (double)partial);
        goto out;
    }
    if (parse_rope(root, cfg, what, err, errcap)) goto out;

    json_t *act = json_object_get(root, "hidden_act");
    if (act && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0)) {
        err_fmt(err, errcap, "%s: hidden_act '%s' is not supported (silu only)", what,
                json_is_string(act) ? json_string_value(act) : "?");
        goto out;
    }
    bool attention_bias = false, mlp_bias = false;
    if (get_bool(root, "attention_bias", &attention_bias, NULL, what, err, errcap) ||
        get_bool(root, "mlp_bias", &mlp_bias, NULL, what, err, errcap))
        goto out;
    if (attention_bias || mlp_bias) {
        /* llama's attention_bias also puts a bias on o_proj, which the
         * model has no slot for */
        err_fmt(err, errcap, "%s: %s is not supported", what,
                attention_bias ? "attention_bias (o_proj bias)" : "mlp_bias");
        goto out;
    }
    cfg->qkv_bias = cfg->arch == MODEL_ARCH_QWEN2;

    /* sliding window: identical to full attention while the context fits */
    int window = 0;
    bool use_window = cfg->arch == MODEL_ARCH_MISTRAL;
    if (cfg->arch == MODEL_ARCH_QWEN2 &&
        get_bool(root, "use_sliding_window", &use_window, NULL, what, err, errcap))
        goto out;
    if (use_window && get_int(root, "sliding_window", &window, false, what, err, errcap))
        goto out;
    if (use_window && window > 0 && window < cfg->max_ctx) cfg->max_ctx = window;

    cfg->bos_id = -1;
    cfg->eos_id = -1;
    if (get_int(root, "bos_token_id", &cfg->bos_id, false, what, err, errcap) ||
        get_ids(root, "eos_token_id", gen, &cfg->eos_id, what, err, errcap))
        goto out;
    if (gen && gen->bos_id < 0) gen->bos_id = cfg->bos_id;
    if (gen && get_int(root, "pad_token_id", &gen->pad_id, false, what, err, errcap)) goto out;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int hf_parse_generation_config(const char *json, size_t len, const char *what,
                               HfGenConfig *gen, char *err, size_t errcap)
{
    json_t *root = parse_json(json, len, what, err, errcap);
    if (!root) return -1;
    int rc = -1;
    /* its eos ids go first: they are the ones generation stops on */
    HfGenConfig old = *gen;
    gen->n_eos = 0;
    if (get_bool(root, "do_sample", &gen->do_sample, &gen->has_do_sample, what, err, errcap) ||
        get_float(root, "temperature", &gen->temperature, &gen->has_temperature, what, err,
                  errcap) ||
        get_float(root, "top_p", &gen->top_p, &gen->has_top_p, what, err, errcap) ||
        get_float(root, "min_p", &gen->min_p, &gen->has_min_p, what, err, errcap) ||
        get_float(root, "repetition_penalty", &gen->repetition_penalty,
                  &gen->has_repetition_penalty, what, err, errcap) ||
        get_ids(root, "eos_token_id", gen, NULL, what, err, errcap) ||
        get_int(root, "bos_token_id", &gen->bos_id, false, what, err, errcap) ||
        get_int(root, "pad_token_id", &gen->pad_id, false, what, err, errcap))
        goto out;
    int v = 0;
    json_t *k = json_object_get(root, "top_k");
    if (k && !json_is_null(k)) {
        if (get_int(root, "top_k", &v, false, what, err, errcap)) goto out;
        gen->top_k = v;
        gen->has_top_k = true;
    }
    k = json_object_get(root, "max_new_tokens");
    if (k && !json_is_null(k)) {
        if (get_int(root, "max_new_tokens", &v, false, what, err, errcap)) goto out;
        gen->max_new_tokens = v;
        gen->has_max_new_tokens = true;
    }
    for (int i = 0; i < old.n_eos; i++) {
        bool dup = false;
        for (int j = 0; j < gen->n_eos; j++) dup |= gen->eos_ids[j] == old.eos_ids[i];
        if (!dup && gen->n_eos < HF_MAX_EOS) gen->eos_ids[gen->n_eos++] = old.eos_ids[i];
    }
    rc = 0;
out:
    if (rc) *gen = old;
    json_decref(root);
    return rc;
}

/* Reads a whole file into a malloc'd buffer. 1 if it does not exist. */
static int read_file(const char *path, char **out, size_t *len, char *err, size_t errcap)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                err_fmt(err, errcap, "%s: out of memory", path);
                return -1;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        err_fmt(err, errcap, "%s: read error", path);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

int hf_read_config(const char *dir, ModelConfig *cfg, HfGenConfig *gen, char *err, size_t errcap)
{
    char *cpath = join(dir, "config.json"), *gpath = join(dir, "generation_config.json");
    char *text = NULL;
    size_t len = 0;
    int rc = -1;
    if (!cpath || !gpath) {
        err_fmt(err, errcap, "%s: out of memory", dir);
        goto out;
    }
    if (gen) hf_gen_config_init(gen);
    int r = read_file(cpath, &text, &len, err, errcap);
    if (r > 0) err_fmt(err, errcap, "%s: no config.json (not a Hugging Face model directory)", dir);
    if (r) goto out;
    if (hf_parse_config(text, len, cpath, cfg, gen, err, errcap)) goto out;
    free(text);
    text = NULL;
    if (gen) {
        r = read_file(gpath, &text, &len, err, errcap);
        if (r < 0) goto out;
        if (r == 0 && hf_parse_generation_config(text, len, gpath, gen, err, errcap)) goto out;
    }
    rc = 0;
out:
    free(text);
    free(cpath);
    free(gpath);
    return rc;
}

void hf_gen_apply(const HfGenConfig *g, SampParams *p)
{
    if (g->has_temperature) p->temperature = g->temperature;
    if (g->has_top_p) p->top_p = g->top_p;
    if (g->has_top_k) p->top_k = g->top_k > 0 ? g->top_k : 0;
    if (g->has_min_p) p->min_p = g->min_p;
    if (g->has_repetition_penalty) p->repetition_penalty = g->repetition_penalty;
    p->eos_ids = g->eos_ids;
    p->n_eos = g->n_eos;
}

/* ---- tensors -------------------------------------------------------------- */

/* What backs a HF model's tensors: the mappings and aligned copies. */
typedef struct {
    StSet *set;
    void **copies;
    int n_copies, cap_copies;
} HfBacking;

static void hf_release(void *ctx)
{
    HfBacking *b = ctx;
    if (!b) return;
    for (int i = 0; i < b->n_copies; i++) free(b->copies[i]);
    free(b->copies);
    st_set_close(b->set);
    free(b);
}

static void shape_str(char *buf, size_t cap, const int64_t *shape, int n)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Looks up `name`, checks dtype and shape (rows, cols; cols 0 = 1-D of
 * `rows`), and fills *t. */
static int bind(HfBacking *b, const char *dir, const char *name, int64_t rows, int64_t cols,
                KTensor *t, char *err, size_t errcap)
{
    const StFile *file = NULL;
    const StTensor *st = st_set_find(b->set, name, &file);
    if (!st) {
        err_fmt(err, errcap, "%s: missing tensor '%s'", dir, name);
        return -1;
    }
    if (!st_dtype_supported(st->dtype)) {
        err_fmt(err, errcap, "%s: tensor '%s' has dtype %s; sgl loads F32, F16 and BF16",
                st_path(file), name, st_dtype_name(st->dtype));
        return -1;
    }
    int64_t want[2] = { rows, cols };
    int want_dims = cols ? 2 : 1;
    if (st->n_dims != want_dims || st->shape[0] != rows || (cols && st->shape[1] != cols)) {
        char got[96], exp[64];
        shape_str(got, sizeof got, st->shape, st->n_dims);
        shape_str(exp, sizeof exp, want, want_dims);
        err_fmt(err, errcap, "%s: tensor '%s' has shape %s, config.json implies %s",
                st_path(file), name, got, exp);
        return -1;
    }
    size_t esize = (size_t)st_dtype_size(st->dtype);
    const void *data = st->data;
    if ((uintptr_t)data % esize != 0) {
        /* safetensors packs tensors back to back: after an odd-sized
         * 16-bit tensor, an F32 one is misaligned; kernels need natural
         * alignment */
        if (b->n_copies == b->cap_copies) {
            int nc = b->cap_copies ? b->cap_copies * 2 : 16;
            void **n = realloc(b->copies, (size_t)nc * sizeof *n);
            if (!n) goto nomem;
            b->copies = n;
            b->cap_copies = nc;
        }
        void *copy = aligned_alloc(64, (st->nbytes + 63) / 64 * 64);
        if (!copy) goto nomem;
        memcpy(copy, data, st->nbytes);
        b->copies[b->n_copies++] = copy;
        data = copy;
    }
    t->dtype = st_dtype_kdtype(st->dtype);
    t->ne[0] = cols ? cols : rows;
    t->ne[1] = cols ? rows : 1;
    t->ne[2] = 1;
    t->ne[3] = 1;
    t->data = data;
    return 0;
nomem:
    err_fmt(err, errcap, "%s: out of memory", dir);
    return -1;
}

/* PyTorch shape [rows, cols] (cols 0: 1-D) of a ModelLayer field. */
static int layer_shape(const ModelConfig *c, const char *field, int64_t *rows, int64_t *cols)
{
    const int64_t E = c->n_embd, Q = (int64_t)c->n_head * c->head_dim,
                  KV = (int64_t)c->n_head_kv * c->head_dim, F = c->n_ff;
    static const struct {
        const char *field;
        char rows, cols;        /* E, Q, K (kv), F, or 0 */
    } rules[] = {
        { "attn_norm", 'E', 0 }, { "wq", 'Q', 'E' },    { "wk", 'K', 'E' },
        { "wv", 'K', 'E' },      { "bq", 'Q', 0 },      { "bk", 'K', 0 },
        { "bv", 'K', 0 },        { "wo", 'E', 'Q' },    { "ffn_norm", 'E', 0 },
        { "w_gate", 'F', 'E' },  { "w_up", 'F', 'E' },  { "w_down", 'E', 'F' },
    };
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++) {
        if (strcmp(rules[i].field, field) != 0) continue;
        int64_t v[2];
        for (int k = 0; k < 2; k++) {
            char r = k ? rules[i].cols : rules[i].rows;
            v[k] = r == 'E' ? E : r == 'Q' ? Q : r == 'K' ? KV : r == 'F' ? F : 0;
        }
        *rows = v[0];
        *cols = v[1];
        return 0;
    }
    return -1;
}

/* 1 if the loader binds (or knowingly ignores) this tensor name. */
static bool name_is_used(const ModelConfig *cfg, const char *name)
{
    if (strcmp(name, "model.embed_tokens.weight") == 0 || strcmp(name, "model.norm.weight") == 0 ||
        strcmp(name, "lm_head.weight") == 0)
        return true;
    /* older checkpoints saved the RoPE table; it is recomputed */
    size_t n = strlen(name);
    const char *suffix = "rotary_emb.inv_freq";
    if (n >= strlen(suffix) && strcmp(name + n - strlen(suffix), suffix) == 0) return true;
    int layer = -1, off = 0;
    if (sscanf(name, "model.layers.%d.%n", &layer, &off) != 1 || off == 0 || layer < 0 ||
        layer >= cfg->n_layer)
        return false;
    const char *rest = name + off;
#define X(field, gguf, hf, req) \
    if (strcmp(rest, hf) == 0 && (req || cfg->qkv_bias)) return true;
    MODEL_LAYER_TENSORS(X)
#undef X
    return false;
}

int hf_load(const char *dir, Model **out, HfGenConfig *gen, char *err, size_t errcap)
{
    *out = NULL;
    ModelConfig cfg;
    if (hf_read_config(dir, &cfg, gen, err, errcap)) return -1;

    HfBacking *b = calloc(1, sizeof *b);
    if (!b) {
        err_fmt(err, errcap, "%s: out of memory", dir);
        return -1;
    }
    b->set = st_set_open(dir, err, errcap);
    if (!b->set) {
        hf_release(b);
        return -1;
    }
    /* refuse tensors that nothing would read: they mean a variant (o_proj
     * bias, extra norms, ...) that this loader does not run */
    for (int i = 0; i < st_set_n_tensors(b->set); i++) {
        const char *name = st_set_tensor(b->set, i)->name;
        if (!name_is_used(&cfg, name)) {
            err_fmt(err, errcap,
                    "%s: unexpected tensor '%s' (not part of a %s model with this config.json)",
                    dir, name, model_arch_name(cfg.arch));
            hf_release(b);
            return -1;
        }
    }

    Model *m = model_new(&cfg, err, errcap);
    if (!m) {
        hf_release(b);
        return -1;
    }
    m->release = hf_release;
    m->release_ctx = b;

    const int64_t E = cfg.n_embd, V = cfg.vocab;
    if (bind(b, dir, "model.embed_tokens.weight", V, E, &m->tok_embd, err, errcap) ||
        bind(b, dir, "model.norm.weight", E, 0, &m->out_norm, err, errcap))
        goto fail;
    if (cfg.tied_embeddings) {
        m->output = m->tok_embd;
    } else if (bind(b, dir, "lm_head.weight", V, E, &m->output, err, errcap)) {
        goto fail;
    }
    for (int l = 0; l < cfg.n_layer; l++) {
        ModelLayer *L = &m->layers[l];
        char name[160];
        int64_t rows, cols;
#define X(field, gguf, hf, req)                                                        \
        if (req || cfg.qkv_bias) {                                                     \
            snprintf(name, sizeof name, "model.layers.%d.%s", l, hf);                  \
            if (layer_shape(&cfg, #field, &rows, &cols)) {                             \
                err_fmt(err, errcap, "%s: no shape rule for layer tensor %s", dir, hf); \
                goto fail;                                                             \
            }                                                                          \
            if (bind(b, dir, name, rows, cols, &L->field, err, errcap)) goto fail;     \
        }
        MODEL_LAYER_TENSORS(X)
#undef X
    }
    if (model_finish(m, err, errcap)) goto fail;
    *out = m;
    return 0;
fail:
    model_free(m);
    return -1;
}
