/*
 * runtime/make_gguf.c — `sgl make-model --gguf TYPE` (include/sgl.h
 * sgl_make_gguf): a Hugging Face checkpoint written by make-model, as one
 * GGUF file of llama.cpp's layout with its matrices in TYPE, so the GGUF
 * path (dequantization at load, NORM rope on permuted Q/K rows) can be run
 * on machines that cannot fetch a real GGUF model.
 *
 *   HF dir (config.json, model.safetensors, tokenizer.json)
 *     -> general.architecture llama | qwen2, ARCH.* hyper-parameters
 *        tokenizer.ggml.{model gpt2, pre gpt-2, tokens, token_type, merges,
 *                        bos/eos ids, add_bos_token}
 *        token_embd, output (unless tied), output_norm, rope_freqs (Llama 3
 *        rope scaling), blk.N.{attn_norm, attn_q/k/v (+bias), attn_output,
 *        ffn_norm, ffn_gate, ffn_up, ffn_down}
 *
 * What changes on the way, as llama.cpp's converter does it:
 *   - llama: the rows of attn_q and attn_k are permuted within each head so
 *     that rotating pairs (2i, 2i+1) (NORM) equals HF's rotate_half (NEOX):
 *     GGUF row h*hd + 2i + j is HF row h*hd + j*hd/2 + i. qwen2 keeps NEOX.
 *   - Llama 3 rope scaling becomes rope_freqs.weight: per rotated pair the
 *     divisor of the plain inverse frequency (model_rope_inv_freq's ratio).
 *   - norms, biases and rope_freqs are F32; matrices (the embedding too) TYPE.
 * The same model either way: `sgl generate` on the GGUF and on the HF
 * directory give the same logits up to TYPE's rounding (tests/unit/
 * test_make_gguf.c checks F32, Q8_0 and the k-quants). A k-quant needs
 * every matrix's row length a multiple of its 256-element block: the
 * writer refuses another by the tensor's name.
 *
 * Only make-model's own byte-level BPE tokenizer.json is converted; another
 * is refused by name. Threads: the caller's.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/sgl.h"
#include "kernels/backend.h"
#include "runtime/gguf_write.h"
#include "runtime/hf.h"
#include "runtime/model.h"

static int parse_type(const char *s, KDtype *out)
{
    static const struct { const char *name; KDtype t; } types[] = {
        {"f32", K_DTYPE_F32},   {"f16", K_DTYPE_F16},   {"bf16", K_DTYPE_BF16},
        {"q8_0", K_DTYPE_Q8_0}, {"q4_0", K_DTYPE_Q4_0}, {"q4_1", K_DTYPE_Q4_1},
        {"q4_k", K_DTYPE_Q4_K}, {"q5_k", K_DTYPE_Q5_K}, {"q6_k", K_DTYPE_Q6_K},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (s && !strcmp(s, types[i].name)) {
            *out = types[i].t;
            return 0;
        }
    return -1;
}

/* ---- tokenizer ---- */

typedef struct {
    char **tokens;
    int32_t *types;
    const char **merges;
    size_t n_merges;
    json_t *root;
} GTok;

static void gtok_free(GTok *t, int n)
{
    for (int i = 0; t->tokens && i < n; i++) free(t->tokens[i]);
    free(t->tokens);
    free(t->types);
    free(t->merges);
    json_decref(t->root);
}

static int read_tokenizer(const char *dir, int vocab, GTok *t, char *err, size_t errcap)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    json_error_t je;
    memset(t, 0, sizeof *t);
    t->root = json_load_file(path, 0, &je);
    if (!t->root) {
        snprintf(err, errcap, "%s:%d: %s", path, je.line, je.text);
        return -1;
    }
    json_t *model = json_object_get(t->root, "model"), *pre = json_object_get(t->root, "pre_tokenizer");
    json_t *vmap = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    const char *mt = json_string_value(json_object_get(model, "type"));
    const char *pt = json_string_value(json_object_get(pre, "type"));
    if (!mt || strcmp(mt, "BPE") || !pt || strcmp(pt, "ByteLevel") || !json_is_true(json_object_get(pre, "use_regex")) ||
        !json_is_null(json_object_get(t->root, "normalizer")) || !json_is_object(vmap) || !json_is_array(merges)) {
        snprintf(err, errcap, "%s: only make-model's byte-level BPE tokenizer is written to GGUF", path);
        return -1;
    }
    t->tokens = calloc((size_t)vocab, sizeof *t->tokens);
    t->types = calloc((size_t)vocab, sizeof *t->types);
    t->n_merges = json_array_size(merges);
    t->merges = calloc(t->n_merges + 1, sizeof *t->merges);
    if (!t->tokens || !t->types || !t->merges) {
        snprintf(err, errcap, "make-model --gguf: out of memory");
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(vmap, k, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= vocab || t->tokens[id]) {
            snprintf(err, errcap, "%s: token '%s' has id %lld (vocab %d)", path, k, (long long)id, vocab);
            return -1;
        }
        t->tokens[id] = strdup(k);
        t->types[id] = 1;   /* normal */
    }
    size_t i;
    json_array_foreach(json_object_get(t->root, "added_tokens"), i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        const char *c = json_string_value(json_object_get(v, "content"));
        if (!c || id < 0 || id >= vocab) {
            snprintf(err, errcap, "%s: added token %zu is not {id < %d, content}", path, i, vocab);
            return -1;
        }
        free(t->tokens[id]);
        t->tokens[id] = strdup(c);
        t->types[id] = json_is_true(json_object_get(v, "special")) ? 3 : 4;   /* control / user-defined */
    }
    for (int id = 0; id < vocab; id++)
        if (!t->tokens[id]) {
            snprintf(err, errcap, "%s: no token has id %d (vocab %d)", path, id, vocab);
            return -1;
        }
    json_array_foreach(merges, i, v) {
        if (!(t->merges[i] = json_string_value(v))) {
            snprintf(err, errcap, "%s: merge %zu is not a string", path, i);
            return -1;
        }
    }
    return 0;
}

/* ---- tensors ---- */

typedef struct {
    const char *name;
    const KTensor *src;
    KDtype type;
    int permute_heads;          /* > 0: llama's Q/K row permutation, this many heads */
    const float *values;        /* instead of src: F32 values computed here */
    int64_t n_values;
} Out;

static int write_tensor(GgufWriter *w, const Out *o, int head_dim, float *row, void *qrow, char *err,
                        size_t errcap)
{
    if (o->values) return gguf_writer_append(w, o->values, (size_t)o->n_values * sizeof(float));
    int64_t cols = o->src->ne[0], rows = o->src->ne[1];
    size_t sb = k_row_bytes(o->src->dtype, cols), qb = k_row_bytes(o->type, cols);
    for (int64_t r = 0; r < rows; r++) {
        int64_t s = r;
        if (o->permute_heads > 0) {
            int64_t h = r / head_dim, wi = r % head_dim;
            s = h * head_dim + (wi % 2) * (head_dim / 2) + wi / 2;
        }
        k_dequant_row_host(o->src->dtype, (const char *)o->src->data + (size_t)s * sb, row, cols);
        if (k_quant_row_host(o->type, row, qrow, cols)) {
            snprintf(err, errcap, "make-model --gguf: no %s quantizer", k_dtype_name(o->type));
            return -1;
        }
        if (gguf_writer_append(w, qrow, qb)) return -1;
    }
    return 0;
}

sgl_status sgl_make_gguf(const char *hf_dir, const char *type, const char *out_path, char *err, size_t errcap)
{
    KDtype wt;
    if (parse_type(type, &wt)) {
        snprintf(err, errcap, "--gguf %s: the types written are f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k", type ? type : "");
        return SGL_ERR_USAGE;
    }
    Model *m = NULL;
    if (hf_load(hf_dir, &m, NULL, err, errcap)) return SGL_ERR_IO;
    const ModelConfig *c = &m->cfg;
    const char *arch = c->arch == MODEL_ARCH_QWEN2 ? "qwen2" : c->arch == MODEL_ARCH_LLAMA ? "llama" : NULL;
    GTok tk = {0};
    GgufWriter *w = NULL;
    Out *outs = NULL;
    float *ropef = NULL, *row = NULL;
    char (*names)[40] = NULL;
    void *qrow = NULL;
    sgl_status st = SGL_ERR_IO;
    if (!arch) {
        snprintf(err, errcap, "make-model --gguf: %s is neither a llama nor a qwen2 checkpoint", hf_dir);
        st = SGL_ERR_USAGE;
        goto out;
    }
    if (read_tokenizer(hf_dir, c->vocab, &tk, err, errcap)) goto out;
    w = gguf_writer_new();
    if (!w) goto oom;
    char key[128];
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    gguf_w_str(w, "general.architecture", arch);
    gguf_w_str(w, "general.name", "sgl make-model random weights");
    gguf_w_u32(w, K("block_count"), (uint32_t)c->n_layer);
    gguf_w_u32(w, K("context_length"), (uint32_t)c->max_ctx);
    gguf_w_u32(w, K("embedding_length"), (uint32_t)c->n_embd);
    gguf_w_u32(w, K("feed_forward_length"), (uint32_t)c->n_ff);
    gguf_w_u32(w, K("attention.head_count"), (uint32_t)c->n_head);
    gguf_w_u32(w, K("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    gguf_w_u32(w, K("attention.key_length"), (uint32_t)c->head_dim);
    gguf_w_u32(w, K("attention.value_length"), (uint32_t)c->head_dim);
    gguf_w_u32(w, K("rope.dimension_count"), (uint32_t)c->rope_dim);
    gguf_w_f32(w, K("rope.freq_base"), c->rope_theta);
    gguf_w_f32(w, K("attention.layer_norm_rms_epsilon"), c->rms_eps);
    gguf_w_u32(w, K("vocab_size"), (uint32_t)c->vocab);
#undef K
    if (c->rope_scaling.type == MODEL_ROPE_SCALING_LINEAR) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        gguf_w_str(w, key, "linear");
        snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
        gguf_w_f32(w, key, c->rope_scaling.factor);
    }
    gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_w_str(w, "tokenizer.ggml.pre", "gpt-2");
    gguf_w_str_array(w, "tokenizer.ggml.tokens", (const char *const *)tk.tokens, (size_t)c->vocab);
    gguf_w_i32_array(w, "tokenizer.ggml.token_type", tk.types, (size_t)c->vocab);
    gguf_w_str_array(w, "tokenizer.ggml.merges", tk.merges, tk.n_merges);
    if (c->bos_id >= 0) gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_id);
    if (c->eos_id >= 0) gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_id);
    gguf_w_bool(w, "tokenizer.ggml.add_bos_token", c->bos_id >= 0);

    /* the tensors, in file order */
    int n_out = 0, cap = 4 + 12 * c->n_layer;
    if (!(outs = calloc((size_t)cap, sizeof *outs))) goto oom;
    outs[n_out++] = (Out){"token_embd.weight", &m->tok_embd, wt};
    if (!c->tied_embeddings) outs[n_out++] = (Out){"output.weight", &m->output, wt};
    outs[n_out++] = (Out){"output_norm.weight", &m->out_norm, K_DTYPE_F32};
    if (c->rope_scaling.type == MODEL_ROPE_SCALING_LLAMA3) {
        int np = c->rope_dim / 2;
        float *plain = malloc((size_t)np * sizeof *plain);
        ropef = malloc((size_t)np * sizeof *ropef);
        if (!plain || !ropef) {
            free(plain);
            goto oom;
        }
        ModelConfig pc = *c;
        pc.rope_scaling.type = MODEL_ROPE_SCALING_NONE;
        model_rope_inv_freq(&pc, NULL, plain);
        model_rope_inv_freq(c, NULL, ropef);
        for (int p = 0; p < np; p++) ropef[p] = plain[p] / ropef[p];
        free(plain);
        outs[n_out++] = (Out){"rope_freqs.weight", NULL, K_DTYPE_F32, 0, ropef, np};
    }
    names = malloc((size_t)cap * sizeof *names);   /* the blk.N.* names */
    if (!names) goto oom;
    int nn = 0;
    for (int l = 0; l < c->n_layer; l++) {
        const ModelLayer *L = &m->layers[l];
        struct { const char *g; const KTensor *t; int mat, perm; } ls[] = {
            {"attn_norm.weight", &L->attn_norm, 0, 0},
            {"attn_q.weight", &L->wq, 1, !strcmp(arch, "llama") ? c->n_head : 0},
            {"attn_k.weight", &L->wk, 1, !strcmp(arch, "llama") ? c->n_head_kv : 0},
            {"attn_v.weight", &L->wv, 1, 0},
            {"attn_q.bias", c->qkv_bias ? &L->bq : NULL, 0, 0},
            {"attn_k.bias", c->qkv_bias ? &L->bk : NULL, 0, 0},
            {"attn_v.bias", c->qkv_bias ? &L->bv : NULL, 0, 0},
            {"attn_output.weight", &L->wo, 1, 0},
            {"ffn_norm.weight", &L->ffn_norm, 0, 0},
            {"ffn_gate.weight", &L->w_gate, 1, 0},
            {"ffn_up.weight", &L->w_up, 1, 0},
            {"ffn_down.weight", &L->w_down, 1, 0},
        };
        for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) {
            if (!ls[i].t) continue;
            snprintf(names[nn], sizeof names[nn], "blk.%d.%s", l, ls[i].g);
            outs[n_out++] = (Out){names[nn++], ls[i].t, ls[i].mat ? wt : K_DTYPE_F32, ls[i].perm};
        }
    }
    int64_t maxc = 0;
    for (int i = 0; i < n_out; i++) {
        int64_t ne[2] = {outs[i].values ? outs[i].n_values : outs[i].src->ne[0], outs[i].values ? 1 : outs[i].src->ne[1]};
        int nd = outs[i].values || ne[1] == 1 ? 1 : 2;
        if (ne[0] > maxc) maxc = ne[0];
        if (gguf_w_tensor(w, outs[i].name, outs[i].type, ne, nd)) break;
    }
    row = malloc((size_t)maxc * sizeof *row);
    qrow = malloc((size_t)maxc * sizeof(float));
    if (!row || !qrow) goto oom;
    if (gguf_writer_begin(w, out_path)) goto werr;
    for (int i = 0; i < n_out; i++)
        if (write_tensor(w, &outs[i], c->head_dim, row, qrow, err, errcap)) {
            if (gguf_writer_error(w)[0]) goto werr;
            goto out;
        }
    if (gguf_writer_finish(w)) goto werr;
    st = SGL_OK;
    goto out;
werr:
    snprintf(err, errcap, "%s", gguf_writer_error(w));
    goto out;
oom:
    snprintf(err, errcap, "make-model --gguf: out of memory");
out:
    free(row);
    free(qrow);
    free(ropef);
    free(outs);
    free(names);
    gguf_writer_free(w);
    gtok_free(&tk, c->vocab);
    model_free(m);
    return st;
}
