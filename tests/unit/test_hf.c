/*
 * tests/unit/test_hf.c — safetensors parsing, config.json /
 * generation_config.json, the HF directory loader, and sgl's forward on the
 * tiny checkpoints against logits recorded from Hugging Face transformers
 * (tests/data/hf/<model>.ref.json, written by tests/tools/hf_reference.py).
 *
 * Paths are relative to the repository root, where `make unit` runs.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/hf.h"
#include "runtime/kvpool.h"
#include "runtime/model.h"
#include "runtime/safetensors.h"

#define DATA "tests/data/hf/"

static const char *models[] = { "tiny-llama", "tiny-llama3-bf16", "tiny-qwen2-sharded",
                                "tiny-mistral-f16" };

/* ---- helpers --------------------------------------------------------------- */

static char *tmpdir(void)
{
    char *d = strdup("/tmp/sgl_test_hf_XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static void rmdir_all(char *d)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
    free(d);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* Writes a safetensors file: `header` JSON verbatim, then `data_len` bytes
 * of a counting pattern. */
static void write_st(const char *dir, const char *name, const char *header, size_t data_len)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    uint64_t n = strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(n >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i & 0xff), f);
    fclose(f);
}

static void link_into(const char *dir, const char *model, const char *file)
{
    char src[PATH_MAX], rel[PATH_MAX], dst[PATH_MAX];
    snprintf(rel, sizeof rel, DATA "%s/%s", model, file);
    cr_assert_not_null(realpath(rel, src), "%s", rel);
    snprintf(dst, sizeof dst, "%s/%s", dir, file);
    cr_assert_eq(symlink(src, dst), 0);
}

/* config.json of `model` with one key replaced (value: JSON text, or NULL
 * to delete the key). */
static char *config_with(const char *model, const char *key, const char *value)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, DATA "%s/config.json", model);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    cr_assert_not_null(root);
    if (value) {
        json_t *v = json_loads(value, JSON_DECODE_ANY, &je);
        cr_assert_not_null(v, "%s", value);
        json_object_set_new(root, key, v);
    } else {
        json_object_del(root, key);
    }
    char *s = json_dumps(root, 0);
    json_decref(root);
    return s;
}

static int parse_cfg(const char *json, ModelConfig *cfg, HfGenConfig *gen, char *err, size_t n)
{
    return hf_parse_config(json, strlen(json), "config.json", cfg, gen, err, n);
}

/* ---- safetensors ------------------------------------------------------------ */

/* IEEE half -> float, written out (the compiler's _Float16 is not portable). */
static float half_to_float(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24)
              : e == 31 ? (m ? NAN : INFINITY)
                        : ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

Test(safetensors, reads_a_real_file)
{
    char err[512] = "";
    StFile *f = st_open(DATA "tiny-llama/model.safetensors", err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    cr_assert_eq(st_n_tensors(f), 21);
    const StTensor *t = st_find(f, "model.embed_tokens.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, ST_F32);
    cr_assert_eq(t->n_dims, 2);
    cr_assert_eq(t->shape[0], 256);
    cr_assert_eq(t->shape[1], 64);
    cr_assert_eq(t->nbytes, 256 * 64 * 4);
    cr_assert_str_eq(st_metadata(f, "format"), "pt");
    cr_assert_null(st_find(f, "lm_head.bias"));
    /* names come back sorted */
    for (int i = 1; i < st_n_tensors(f); i++)
        cr_assert(strcmp(st_tensor(f, i - 1)->name, st_tensor(f, i)->name) < 0);
    st_close(f);

    f = st_open(DATA "tiny-llama3-bf16/model.safetensors", err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    t = st_find(f, "model.layers.1.mlp.down_proj.weight");
    cr_assert_eq(t->dtype, ST_BF16);
    cr_assert_eq(st_dtype_kdtype(t->dtype), K_DTYPE_BF16);
    cr_assert_eq(t->shape[0], 64);
    cr_assert_eq(t->shape[1], 128);
    cr_assert_null(st_find(f, "lm_head.weight"));   /* tied */
    st_close(f);
}

Test(safetensors, embedding_rows_match_transformers_hidden_state_0)
{
    /* transformers' first hidden state is embed_tokens[tokens] in f32: a
     * check of our data pointers and of the BF16/F16 widening */
    for (size_t mi = 0; mi < sizeof models / sizeof *models; mi++) {
        char p[PATH_MAX], err[512];
        snprintf(p, sizeof p, DATA "%s.ref.json", models[mi]);
        json_error_t je;
        json_t *ref = json_load_file(p, 0, &je);
        cr_assert_not_null(ref, "%s", p);
        json_t *c0 = json_array_get(json_object_get(ref, "cases"), 0);
        json_t *toks = json_object_get(c0, "tokens");
        json_t *h0 = json_array_get(json_object_get(c0, "hidden_states"), 0);
        snprintf(p, sizeof p, DATA "%s", models[mi]);
        StSet *s = st_set_open(p, err, sizeof err);
        cr_assert_not_null(s, "%s", err);
        const StTensor *e = st_set_find(s, "model.embed_tokens.weight", NULL);
        cr_assert_not_null(e);
        int64_t dim = e->shape[1];
        for (size_t i = 0; i < json_array_size(toks); i++) {
            int64_t tok = json_integer_value(json_array_get(toks, i));
            for (int64_t j = 0; j < dim; j++) {
                float v;
                const unsigned char *b = (const unsigned char *)e->data + (tok * dim + j) * st_dtype_size(e->dtype);
                if (e->dtype == ST_F32) {
                    memcpy(&v, b, 4);
                } else if (e->dtype == ST_BF16) {
                    uint32_t u = (uint32_t)(b[0] | b[1] << 8) << 16;
                    memcpy(&v, &u, 4);
                } else {
                    v = half_to_float((uint16_t)(b[0] | b[1] << 8));
                }
                double want = json_number_value(json_array_get(h0, (size_t)(i * dim + j)));
                cr_assert(fabs(v - want) <= 1e-6 * fabs(want) + 1e-7, "%s tok %lld dim %lld: %g vs %g",
                          models[mi], (long long)tok, (long long)j, v, want);
            }
        }
        st_set_close(s);
        json_decref(ref);
    }
}

Test(safetensors, sharded_index)
{
    char err[512] = "";
    StSet *s = st_set_open(DATA "tiny-qwen2-sharded", err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cr_assert_eq(st_set_n_files(s), 2);
    cr_assert_eq(st_set_n_tensors(s), 26);
    const StFile *f = NULL;
    cr_assert_not_null(st_set_find(s, "model.layers.0.self_attn.q_proj.bias", &f));
    cr_assert(strstr(st_path(f), "model-00001-of-00002.safetensors") != NULL);
    cr_assert_not_null(st_set_find(s, "model.norm.weight", &f));
    cr_assert(strstr(st_path(f), "model-00002-of-00002.safetensors") != NULL);
    cr_assert_null(st_set_find(s, "lm_head.weight", &f));
    cr_assert_null(f);
    st_set_close(s);
}

static void expect_open_error(const char *dir, const char *file, const char *needle)
{
    char p[PATH_MAX], err[512] = "";
    snprintf(p, sizeof p, "%s/%s", dir, file);
    StFile *f = st_open(p, err, sizeof err);
    cr_assert_null(f, "%s opened", file);
    cr_assert(strstr(err, needle) != NULL, "%s: '%s' lacks '%s'", file, err, needle);
    cr_assert(strstr(err, file) != NULL, "message names the file: %s", err);
}

Test(safetensors, malformed_files_are_rejected_with_a_reason)
{
    char *d = tmpdir();
    write_st(d, "ok.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
             "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]}}", 24);
    char p[PATH_MAX], err[512] = "";
    snprintf(p, sizeof p, "%s/ok.safetensors", d);
    StFile *f = st_open(p, err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    cr_assert_eq(st_find(f, "b")->dtype, ST_I64);
    cr_assert(!st_dtype_supported(ST_I64));
    cr_assert(st_dtype_supported(ST_BF16));
    st_close(f);

    write_st(d, "short.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
    expect_open_error(d, "short.safetensors", "truncated");
    write_st(d, "size.safetensors",
             "{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16);
    expect_open_error(d, "size.safetensors", "needs 8");
    write_st(d, "dtype.safetensors",
             "{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
    expect_open_error(d, "dtype.safetensors", "unknown dtype 'Q4'");
    write_st(d, "json.safetensors", "{\"a\":{\"dtype\":", 4);
    expect_open_error(d, "json.safetensors", "not valid JSON");
    write_st(d, "overlap.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    expect_open_error(d, "overlap.safetensors", "overlap");
    write_st(d, "neg.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_open_error(d, "neg.safetensors", "shape[0]");
    write_text(d, "tiny.safetensors", "abc");
    expect_open_error(d, "tiny.safetensors", "not a safetensors file");
    /* a header length far past the end */
    {
        char p2[PATH_MAX];
        snprintf(p2, sizeof p2, "%s/hlen.safetensors", d);
        FILE *hf = fopen(p2, "wb");
        cr_assert_not_null(hf);
        fwrite("\xff\xff\xff\x00\x00\x00\x00\x00{}", 1, 10, hf);
        fclose(hf);
    }
    expect_open_error(d, "hlen.safetensors", "does not fit");
    expect_open_error(d, "absent.safetensors", "No such file");
    rmdir_all(d);
}

Test(safetensors, bad_index_or_directory)
{
    char *d = tmpdir(), err[512] = "";
    cr_assert_null(st_set_open(d, err, sizeof err));
    cr_assert(strstr(err, "no model.safetensors") != NULL, "%s", err);

    write_st(d, "s1.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}");
    cr_assert_null(st_set_open(d, err, sizeof err));
    cr_assert(strstr(err, "'b'") && strstr(err, "lacks"), "%s", err);

    write_text(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s2.safetensors\"}}");
    cr_assert_null(st_set_open(d, err, sizeof err));
    cr_assert(strstr(err, "s2.safetensors") != NULL, "%s", err);

    write_text(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"../x.safetensors\"}}");
    cr_assert_null(st_set_open(d, err, sizeof err));
    cr_assert(strstr(err, "plain file name") != NULL, "%s", err);

    /* the same tensor in two shards */
    write_st(d, "s2.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}");
    cr_assert_null(st_set_open(d, err, sizeof err));
    cr_assert(strstr(err, "s2.safetensors") != NULL, "%s", err);
    rmdir_all(d);
}

/* ---- config.json ------------------------------------------------------------ */

#define LLAMA_CFG(extra)                                                                   \
    "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":64," \
    "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"          \
    "\"vocab_size\":256" extra "}"

Test(hf_config, llama_defaults_and_fields)
{
    ModelConfig c;
    HfGenConfig g;
    char err[512] = "";
    hf_gen_config_init(&g);
    cr_assert_eq(parse_cfg(LLAMA_CFG(",\"eos_token_id\":[128001,128009],\"bos_token_id\":128000"),
                           &c, &g, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.arch, MODEL_ARCH_LLAMA);
    cr_assert_eq(c.n_embd, 64);
    cr_assert_eq(c.n_head_kv, 4);          /* defaults to num_attention_heads */
    cr_assert_eq(c.head_dim, 16);
    cr_assert_eq(c.rope_dim, 16);
    cr_assert_eq(c.rope_style, K_ROPE_NEOX);
    cr_assert_float_eq(c.rope_theta, 10000.0f, 1e-3);
    cr_assert_float_eq(c.rms_eps, 1e-6f, 1e-12);
    cr_assert_eq(c.max_ctx, 2048);
    cr_assert(!c.tied_embeddings);
    cr_assert(!c.qkv_bias);
    cr_assert_eq(c.rope_scaling.type, MODEL_ROPE_SCALING_NONE);
    cr_assert_eq(c.bos_id, 128000);
    cr_assert_eq(c.eos_id, 128001);
    cr_assert_eq(g.n_eos, 2);
    cr_assert_eq(g.eos_ids[1], 128009);
    cr_assert_eq(g.bos_id, 128000);
}

Test(hf_config, rope_scaling_forms)
{
    ModelConfig c;
    char err[512] = "";
    cr_assert_eq(parse_cfg(LLAMA_CFG(",\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":"
                                     "\"llama3\",\"factor\":32.0,\"low_freq_factor\":1.0,"
                                     "\"high_freq_factor\":4.0,"
                                     "\"original_max_position_embeddings\":8192}"),
                           &c, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.rope_scaling.type, MODEL_ROPE_SCALING_LLAMA3);
    cr_assert_float_eq(c.rope_scaling.factor, 32.0f, 1e-6);
    cr_assert_float_eq(c.rope_scaling.high_freq_factor, 4.0f, 1e-6);
    cr_assert_eq(c.rope_scaling.original_ctx, 8192);
    cr_assert_float_eq(c.rope_theta, 500000.0f, 1e-1);

    /* transformers 5 spelling: theta inside rope_parameters */
    cr_assert_eq(parse_cfg(LLAMA_CFG(",\"rope_parameters\":{\"rope_type\":\"linear\","
                                     "\"factor\":2.0,\"rope_theta\":1000.0}"),
                           &c, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.rope_scaling.type, MODEL_ROPE_SCALING_LINEAR);
    cr_assert_float_eq(c.rope_scaling.factor, 2.0f, 1e-6);
    cr_assert_float_eq(c.rope_theta, 1000.0f, 1e-3);

    cr_assert_eq(parse_cfg(LLAMA_CFG(",\"rope_scaling\":{\"type\":\"default\"}"), &c, NULL, err,
                           sizeof err), 0, "%s", err);
    cr_assert_eq(c.rope_scaling.type, MODEL_ROPE_SCALING_NONE);

    cr_assert_neq(parse_cfg(LLAMA_CFG(",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4.0}"),
                            &c, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "'yarn' is not supported") != NULL, "%s", err);
    cr_assert_neq(parse_cfg(LLAMA_CFG(",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}"),
                            &c, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "original_max_position_embeddings") != NULL, "%s", err);
}

Test(hf_config, qwen2_mistral_and_windows)
{
    ModelConfig c;
    char err[512] = "";
    cr_assert_eq(parse_cfg("{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\","
                           "\"hidden_size\":896,\"intermediate_size\":4864,\"num_hidden_layers\":24,"
                           "\"num_attention_heads\":14,\"num_key_value_heads\":2,"
                           "\"vocab_size\":151936,\"max_position_embeddings\":32768,"
                           "\"sliding_window\":4096,\"use_sliding_window\":false,"
                           "\"tie_word_embeddings\":true,\"rope_theta\":1000000.0}",
                           &c, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.arch, MODEL_ARCH_QWEN2);
    cr_assert(c.qkv_bias);
    cr_assert(c.tied_embeddings);
    cr_assert_eq(c.head_dim, 64);
    cr_assert_eq(c.max_ctx, 32768);        /* window off */
    cr_assert_eq(parse_cfg("{\"model_type\":\"mistral\",\"hidden_size\":64,"
                           "\"intermediate_size\":128,\"num_hidden_layers\":1,"
                           "\"num_attention_heads\":16,\"vocab_size\":10,\"head_dim\":32,"
                           "\"max_position_embeddings\":32768,\"sliding_window\":4096}",
                           &c, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.arch, MODEL_ARCH_MISTRAL);
    cr_assert_eq(c.n_head_kv, 8);          /* MistralConfig's default */
    cr_assert_eq(c.n_head, 16);
    cr_assert_eq(c.head_dim, 32);
    cr_assert_eq(c.max_ctx, 4096);         /* capped at the window */
}

Test(hf_config, unsupported_models_are_named)
{
    ModelConfig c;
    char err[512] = "";
    cr_assert_neq(parse_cfg("{\"architectures\":[\"GemmaForCausalLM\"],\"model_type\":\"gemma\"}",
                            &c, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "model_type 'gemma' (GemmaForCausalLM) is not supported"), "%s", err);
    cr_assert_neq(parse_cfg("{\"architectures\":[\"LlamaForSequenceClassification\"],"
                            "\"model_type\":\"llama\",\"hidden_size\":64}", &c, NULL, err,
                            sizeof err), 0);
    cr_assert(strstr(err, "LlamaForSequenceClassification"), "%s", err);
    cr_assert_neq(parse_cfg("{\"model_type\":\"llama\",\"hidden_size\":64}", &c, NULL, err,
                            sizeof err), 0);
    cr_assert(strstr(err, "missing \"intermediate_size\""), "%s", err);
    cr_assert_neq(parse_cfg(LLAMA_CFG(",\"num_key_value_heads\":3"), &c, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "not a multiple"), "%s", err);
    cr_assert_neq(parse_cfg(LLAMA_CFG(",\"attention_bias\":true"), &c, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "attention_bias"), "%s", err);
    cr_assert_neq(parse_cfg(LLAMA_CFG(",\"hidden_act\":\"gelu\""), &c, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "hidden_act 'gelu'"), "%s", err);
    cr_assert_neq(parse_cfg(LLAMA_CFG(",\"hidden_size\":\"64\""), &c, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "\"hidden_size\" must be an integer"), "%s", err);
    cr_assert_neq(parse_cfg("[1]", &c, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "not a JSON object"), "%s", err);
}

Test(hf_config, generation_config_and_apply)
{
    ModelConfig c;
    HfGenConfig g;
    char err[512] = "";
    cr_assert_eq(hf_read_config(DATA "tiny-qwen2-sharded", &c, &g, err, sizeof err), 0, "%s", err);
    /* generation_config's [3, 2] first, then config.json's 3 (a duplicate) */
    cr_assert_eq(g.n_eos, 2);
    cr_assert_eq(g.eos_ids[0], 3);
    cr_assert_eq(g.eos_ids[1], 2);
    cr_assert_eq(c.eos_id, 3);
    cr_assert(g.has_do_sample && g.do_sample);
    cr_assert(g.has_top_k && g.top_k == 20);
    cr_assert(!g.has_min_p);
    cr_assert_float_eq(g.repetition_penalty, 1.05f, 1e-6);
    SampParams p;
    samp_params_default(&p);
    p.min_p = 0.02f;
    hf_gen_apply(&g, &p);
    cr_assert_float_eq(p.temperature, 0.7f, 1e-6);
    cr_assert_float_eq(p.top_p, 0.8f, 1e-6);
    cr_assert_eq(p.top_k, 20);
    cr_assert_float_eq(p.min_p, 0.02f, 1e-6);     /* absent: kept */
    cr_assert_eq(p.n_eos, 2);
    cr_assert_eq(p.eos_ids[0], 3);

    /* no generation_config.json: config.json's ids only */
    cr_assert_eq(hf_read_config(DATA "tiny-mistral-f16", &c, &g, err, sizeof err), 0, "%s", err);
    cr_assert_eq(g.n_eos, 1);
    cr_assert_eq(g.eos_ids[0], 2);
    cr_assert(!g.has_temperature);

    cr_assert_neq(hf_read_config("tests/data/hf/no-such-model", &c, &g, err, sizeof err), 0);
    cr_assert(strstr(err, "no config.json"), "%s", err);
}

/* ---- loading ------------------------------------------------------------------ */

Test(hf_load, every_tiny_model_loads)
{
    for (size_t mi = 0; mi < sizeof models / sizeof *models; mi++) {
        char dir[PATH_MAX], err[512] = "";
        snprintf(dir, sizeof dir, DATA "%s", models[mi]);
        Model *m = NULL;
        HfGenConfig g;
        cr_assert_eq(hf_load(dir, &m, &g, err, sizeof err), 0, "%s: %s", models[mi], err);
        const ModelConfig *c = &m->cfg;
        cr_assert_eq(c->n_layer, 2);
        cr_assert_eq(c->n_embd, 64);
        cr_assert_eq(c->n_head, 4);
        cr_assert_eq(c->n_head_kv, 2);
        cr_assert_eq(c->vocab, 256);
        cr_assert_eq(c->rope_style, K_ROPE_NEOX);
        cr_assert_eq(m->tok_embd.ne[0], 64);
        cr_assert_eq(m->tok_embd.ne[1], 256);
        cr_assert_eq(m->layers[1].wq.ne[0], 64);
        cr_assert_eq(m->layers[1].wq.ne[1], c->n_head * c->head_dim);
        cr_assert_eq(m->layers[0].w_down.ne[0], 128);
        cr_assert_eq(m->layers[0].w_down.ne[1], 64);
        cr_assert_null(m->gguf);
        if (c->tied_embeddings) cr_assert_eq(m->output.data, m->tok_embd.data);
        else cr_assert_neq(m->output.data, m->tok_embd.data);
        model_free(m);
    }
}

Test(hf_load, shapes_dtypes_and_names_follow_the_config)
{
    Model *m = NULL;
    char err[512] = "";
    cr_assert_eq(hf_load(DATA "tiny-llama3-bf16", &m, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m->cfg.rope_scaling.type, MODEL_ROPE_SCALING_LLAMA3);
    cr_assert_eq(m->cfg.rope_scaling.original_ctx, 64);
    cr_assert(m->cfg.tied_embeddings);
    cr_assert_eq(m->layers[0].wq.dtype, K_DTYPE_BF16);
    model_free(m);
    cr_assert_eq(hf_load(DATA "tiny-qwen2-sharded", &m, NULL, err, sizeof err), 0, "%s", err);
    cr_assert(m->cfg.qkv_bias);
    cr_assert_eq(m->layers[1].bk.ne[0], 32);
    model_free(m);
    cr_assert_eq(hf_load(DATA "tiny-mistral-f16", &m, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m->cfg.head_dim, 32);
    cr_assert_eq(m->layers[0].wq.dtype, K_DTYPE_F16);
    cr_assert_eq(m->layers[0].wo.ne[0], 128);
    model_free(m);
}

static void expect_load_error(const char *model, const char *cfg_json, const char *needle)
{
    char *d = tmpdir(), err[512] = "";
    write_text(d, "config.json", cfg_json);
    link_into(d, model, "model.safetensors");
    Model *m = (Model *)1;
    cr_assert_neq(hf_load(d, &m, NULL, err, sizeof err), 0, "loaded with %s", cfg_json);
    cr_assert_null(m);
    cr_assert(strstr(err, needle) != NULL, "'%s' lacks '%s'", err, needle);
    rmdir_all(d);
}

Test(hf_load, mismatches_name_the_tensor)
{
    char *c = config_with("tiny-llama", "vocab_size", "300");
    expect_load_error("tiny-llama", c,
                      "tensor 'model.embed_tokens.weight' has shape [256, 64], "
                      "config.json implies [300, 64]");
    free(c);
    c = config_with("tiny-llama", "intermediate_size", "96");
    expect_load_error("tiny-llama", c, "model.layers.0.mlp.gate_proj.weight' has shape [128, 64]");
    free(c);
    /* tied in config but the file also has lm_head: HF would ignore it; so do we */
    c = config_with("tiny-llama", "tie_word_embeddings", "true");
    {
        char *d = tmpdir(), err[512] = "";
        write_text(d, "config.json", c);
        link_into(d, "tiny-llama", "model.safetensors");
        Model *m = NULL;
        cr_assert_eq(hf_load(d, &m, NULL, err, sizeof err), 0, "%s", err);
        cr_assert_eq(m->output.data, m->tok_embd.data);
        model_free(m);
        rmdir_all(d);
    }
    free(c);
    /* untied config over a tied file: lm_head.weight is missing */
    c = config_with("tiny-llama3-bf16", "tie_word_embeddings", "false");
    expect_load_error("tiny-llama3-bf16", c, "missing tensor 'lm_head.weight'");
    free(c);
    /* one layer declared, two in the file: the extra ones are refused */
    c = config_with("tiny-llama", "num_hidden_layers", "1");
    expect_load_error("tiny-llama", c, "unexpected tensor 'model.layers.1.");
    free(c);
    /* three layers declared, two in the file */
    c = config_with("tiny-llama", "num_hidden_layers", "3");
    expect_load_error("tiny-llama", c, "missing tensor 'model.layers.2.input_layernorm.weight'");
    free(c);
}

Test(hf_load, unsupported_dtype_and_extra_tensor)
{
    char *d = tmpdir(), err[512] = "";
    char *c = config_with("tiny-llama", "num_hidden_layers", "1");
    write_text(d, "config.json", c);
    free(c);
    /* a checkpoint whose embedding is I8 */
    write_st(d, "model.safetensors",
             "{\"model.embed_tokens.weight\":{\"dtype\":\"I8\",\"shape\":[256,64],"
             "\"data_offsets\":[0,16384]}}", 16384);
    Model *m = NULL;
    cr_assert_neq(hf_load(d, &m, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "'model.embed_tokens.weight' has dtype I8"), "%s", err);
    write_st(d, "model.safetensors",
             "{\"model.layers.0.self_attn.o_proj.bias\":{\"dtype\":\"F32\",\"shape\":[64],"
             "\"data_offsets\":[0,256]}}", 256);
    cr_assert_neq(hf_load(d, &m, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "unexpected tensor 'model.layers.0.self_attn.o_proj.bias'"), "%s", err);
    rmdir_all(d);
}

/* A 1-layer llama written with F32 tensors whose data section starts at
 * an offset that is (misalign) mod 4: the loader must copy misaligned
 * tensors, and the model must compute the same either way. */
static void write_micro_llama(const char *dir, int misalign)
{
    static const struct {
        const char *name;
        int rows, cols;
    } t[] = {
        { "model.embed_tokens.weight", 8, 4 }, { "model.norm.weight", 4, 0 },
        { "lm_head.weight", 8, 4 },
        { "model.layers.0.input_layernorm.weight", 4, 0 },
        { "model.layers.0.self_attn.q_proj.weight", 4, 4 },
        { "model.layers.0.self_attn.k_proj.weight", 2, 4 },
        { "model.layers.0.self_attn.v_proj.weight", 2, 4 },
        { "model.layers.0.self_attn.o_proj.weight", 4, 4 },
        { "model.layers.0.post_attention_layernorm.weight", 4, 0 },
        { "model.layers.0.mlp.gate_proj.weight", 6, 4 },
        { "model.layers.0.mlp.up_proj.weight", 6, 4 },
        { "model.layers.0.mlp.down_proj.weight", 4, 6 },
    };
    char hdr[4096];
    size_t o = 0, off = 0;
    o += (size_t)snprintf(hdr + o, sizeof hdr - o, "{");
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        size_t n = (size_t)t[i].rows * (size_t)(t[i].cols ? t[i].cols : 1) * 4;
        if (t[i].cols)
            o += (size_t)snprintf(hdr + o, sizeof hdr - o,
                                  "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
                                  "\"data_offsets\":[%zu,%zu]}", i ? "," : "", t[i].name,
                                  t[i].rows, t[i].cols, off, off + n);
        else
            o += (size_t)snprintf(hdr + o, sizeof hdr - o,
                                  "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],"
                                  "\"data_offsets\":[%zu,%zu]}", i ? "," : "", t[i].name,
                                  t[i].rows, off, off + n);
        off += n;
    }
    o += (size_t)snprintf(hdr + o, sizeof hdr - o, "}");
    while ((8 + o) % 4 != (size_t)misalign) hdr[o++] = ' ';   /* JSON allows trailing spaces */
    hdr[o] = 0;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)o >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(hdr, 1, o, f);
    for (size_t i = 0; i < off / 4; i++) {
        float v = (float)sin(0.37 * (double)i) * 0.8f + (i % 7 == 0 ? 1.0f : 0.0f);
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
    write_text(dir, "config.json",
               "{\"model_type\":\"llama\",\"hidden_size\":4,\"intermediate_size\":6,"
               "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
               "\"vocab_size\":8,\"rms_norm_eps\":1e-5}");
}

static void micro_logits(const char *dir, float *out /* [3][8] */)
{
    char err[512] = "";
    Model *m = NULL;
    cr_assert_eq(hf_load(dir, &m, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq((uintptr_t)m->layers[0].wq.data % 4, 0);
    cr_assert_eq((uintptr_t)m->tok_embd.data % 4, 0);
    KvPool *kv = kv_new(1, 8, 2, K_DTYPE_F32, err, sizeof err);
    cr_assert_not_null(kv, "%s", err);
    int32_t slots[3], toks[3] = { 3, 1, 6 };
    cr_assert_eq(kv_alloc(kv, 3, slots), 0);
    ModelSeq seq = { .tokens = toks, .n_new = 3, .slots = slots, .n_ctx = 3,
                     .logits = MODEL_LOGITS_ALL };
    ModelBatch b = { .seqs = &seq, .n_seqs = 1 };
    cr_assert_eq(model_forward(m, kv, &b, err, sizeof err), 0, "%s", err);
    memcpy(out, b.logits + (size_t)seq.logits_row * 8, 24 * sizeof *out);
    kv_free(kv);
    model_free(m);
}

Test(hf_load, misaligned_tensors_are_copied)
{
    float a[24], b[24];
    char *d1 = tmpdir(), *d2 = tmpdir();
    write_micro_llama(d1, 0);
    write_micro_llama(d2, 2);
    micro_logits(d1, a);
    micro_logits(d2, b);
    for (int i = 0; i < 24; i++) {
        cr_assert(isfinite(a[i]));
        cr_assert_eq(a[i], b[i], "logit %d: %g vs %g", i, a[i], b[i]);
    }
    rmdir_all(d1);
    rmdir_all(d2);
}

/* ---- forward against transformers --------------------------------------------- */

typedef struct {
    int n;                      /* tokens */
    int32_t tokens[64], pos[64];
    int vocab;
    float *logits;              /* [n][vocab] */
} RefCase;

static json_t *load_ref(const char *model)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, DATA "%s.ref.json", model);
    json_error_t je;
    json_t *ref = json_load_file(p, 0, &je);
    cr_assert_not_null(ref, "%s: %s", p, je.text);
    return ref;
}

static void ref_case(json_t *ref, int ci, RefCase *rc)
{
    json_t *c = json_array_get(json_object_get(ref, "cases"), (size_t)ci);
    cr_assert_not_null(c);
    json_t *t = json_object_get(c, "tokens"), *p = json_object_get(c, "positions"),
           *l = json_object_get(c, "logits");
    rc->n = (int)json_array_size(t);
    cr_assert(rc->n > 0 && rc->n <= 64);
    rc->vocab = (int)json_integer_value(json_object_get(c, "vocab"));
    for (int i = 0; i < rc->n; i++) {
        rc->tokens[i] = (int32_t)json_integer_value(json_array_get(t, (size_t)i));
        rc->pos[i] = (int32_t)json_integer_value(json_array_get(p, (size_t)i));
    }
    cr_assert_eq(json_array_size(l), (size_t)rc->n * (size_t)rc->vocab);
    rc->logits = malloc(json_array_size(l) * sizeof *rc->logits);
    for (size_t i = 0; i < json_array_size(l); i++)
        rc->logits[i] = (float)json_number_value(json_array_get(l, i));
}

/* Compares one row; returns its max abs difference. Argmax must agree when
 * transformers' top two are further apart than twice the tolerance. */
static double compare_row(const char *what, const float *got, const float *want, int vocab,
                          double tol)
{
    double md = 0;
    int ga = 0, wa = 0, w2 = -1;
    for (int i = 0; i < vocab; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > md) md = d;
        if (got[i] > got[ga]) ga = i;
        if (want[i] > want[wa]) wa = i;
    }
    for (int i = 0; i < vocab; i++)
        if (i != wa && (w2 < 0 || want[i] > want[w2])) w2 = i;
    cr_assert(md <= tol, "%s: max |diff| %g > %g", what, md, tol);
    if (want[wa] - want[w2] > 2 * tol) cr_assert_eq(ga, wa, "%s: argmax %d vs %d", what, ga, wa);
    return md;
}

/* Tolerance on logits of spread ~1-2. Both sides compute in f32 from the
 * same (exactly widened) weights, so only summation order differs: seen
 * <= 1e-5 everywhere. The margin leaves room for other kernels' orders,
 * not for lower-precision arithmetic. */
static double tolerance(const Model *m)
{
    return m->layers[0].wq.dtype == K_DTYPE_F32 ? 1e-4 : 5e-4;
}

/* Whole-prompt forward (one batch, every row of logits). */
static double run_prefill(Model *m, const RefCase *rc, const char *what)
{
    char err[512] = "";
    KvPool *kv = kv_new(m->cfg.n_layer, 128, m->cfg.n_head_kv * m->cfg.head_dim, K_DTYPE_F32,
                        err, sizeof err);
    cr_assert_not_null(kv, "%s", err);
    int32_t slots[64];
    cr_assert_eq(kv_alloc(kv, rc->n, slots), 0);
    ModelSeq seq = { .tokens = rc->tokens, .n_new = rc->n, .slots = slots, .n_ctx = rc->n,
                     .pos = rc->pos, .logits = MODEL_LOGITS_ALL };
    ModelBatch b = { .seqs = &seq, .n_seqs = 1 };
    cr_assert_eq(model_forward(m, kv, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b.n_rows, rc->n);
    double md = 0;
    for (int i = 0; i < rc->n; i++) {
        char w[128];
        snprintf(w, sizeof w, "%s prefill row %d", what, i);
        double d = compare_row(w, b.logits + (size_t)(seq.logits_row + i) * rc->vocab,
                               rc->logits + (size_t)i * rc->vocab, rc->vocab, tolerance(m));
        if (d > md) md = d;
    }
    kv_free(kv);
    return md;
}

/* First half as a prefill chunk, then one decode step per token, in a
 * pool whose slots are deliberately not in order. */
static double run_decode(Model *m, const RefCase *rc, const char *what)
{
    char err[512] = "";
    KvPool *kv = kv_new(m->cfg.n_layer, 128, m->cfg.n_head_kv * m->cfg.head_dim, K_DTYPE_F32,
                        err, sizeof err);
    cr_assert_not_null(kv, "%s", err);
    int32_t slots[64], junk[7];
    cr_assert_eq(kv_alloc(kv, 7, junk), 0);
    for (int i = 0; i < rc->n; i++) {
        cr_assert_eq(kv_alloc(kv, 1, &slots[i]), 0);
        if (i % 3 == 0) {                    /* shuffle the free list a little */
            kv_release(kv, &junk[i % 7], 1);
            cr_assert_eq(kv_alloc(kv, 1, &junk[i % 7]), 0);
        }
    }
    int half = rc->n / 2;
    double md = 0;
    for (int start = 0; start < rc->n;) {
        int n_new = start == 0 ? half : 1;
        ModelSeq seq = { .tokens = rc->tokens + start, .n_new = n_new, .slots = slots,
                         .n_ctx = start + n_new, .pos = rc->pos + start,
                         .logits = MODEL_LOGITS_LAST };
        ModelBatch b = { .seqs = &seq, .n_seqs = 1 };
        cr_assert_eq(model_forward(m, kv, &b, err, sizeof err), 0, "%s", err);
        int row = start + n_new - 1;
        char w[128];
        snprintf(w, sizeof w, "%s decode row %d", what, row);
        double d = compare_row(w, b.logits + (size_t)seq.logits_row * rc->vocab,
                               rc->logits + (size_t)row * rc->vocab, rc->vocab, tolerance(m));
        if (d > md) md = d;
        start += n_new;
    }
    kv_free(kv);
    return md;
}

Test(hf_forward, logits_match_transformers)
{
    for (size_t mi = 0; mi < sizeof models / sizeof *models; mi++) {
        char dir[PATH_MAX], err[512] = "";
        snprintf(dir, sizeof dir, DATA "%s", models[mi]);
        Model *m = NULL;
        cr_assert_eq(hf_load(dir, &m, NULL, err, sizeof err), 0, "%s", err);
        model_set_threads(m, 2);
        json_t *ref = load_ref(models[mi]);
        /* RoPE frequencies as transformers derived them from config.json */
        json_t *inv = json_object_get(ref, "inv_freq");
        cr_assert_eq(json_array_size(inv), (size_t)m->cfg.rope_dim / 2);
        for (int i = 0; i < m->cfg.rope_dim / 2; i++) {
            double want = json_number_value(json_array_get(inv, (size_t)i));
            cr_assert(fabs(model_inv_freq(m)[i] - want) <= 1e-5 * want, "%s inv_freq[%d] %g vs %g",
                      models[mi], i, model_inv_freq(m)[i], want);
        }
        for (int ci = 0; ci < 2; ci++) {
            RefCase rc;
            ref_case(ref, ci, &rc);
            char what[96];
            snprintf(what, sizeof what, "%s case %d", models[mi], ci);
            double a = run_prefill(m, &rc, what);
            double b = run_decode(m, &rc, what);
            cr_log_info("%s: max |logit diff| prefill %.2e decode %.2e", what, a, b);
            free(rc.logits);
        }
        json_decref(ref);
        model_free(m);
    }
}

/* Two sequences in one batch (different models' prompts would not share a
 * batch; here: case 0 and case 1 of one model) give the same rows as alone. */
Test(hf_forward, batched_sequences_match)
{
    char err[512] = "";
    Model *m = NULL;
    cr_assert_eq(hf_load(DATA "tiny-qwen2-sharded", &m, NULL, err, sizeof err), 0, "%s", err);
    model_set_threads(m, 2);
    json_t *ref = load_ref("tiny-qwen2-sharded");
    RefCase a, b;
    ref_case(ref, 0, &a);
    ref_case(ref, 1, &b);
    KvPool *kv = kv_new(m->cfg.n_layer, 256, m->cfg.n_head_kv * m->cfg.head_dim, K_DTYPE_F32, err,
                        sizeof err);
    cr_assert_not_null(kv, "%s", err);
    int32_t sa[64], sb[64];
    cr_assert_eq(kv_alloc(kv, a.n, sa), 0);
    cr_assert_eq(kv_alloc(kv, b.n, sb), 0);
    ModelSeq seqs[2] = {
        { .tokens = a.tokens, .n_new = a.n, .slots = sa, .n_ctx = a.n, .pos = a.pos,
          .logits = MODEL_LOGITS_ALL },
        { .tokens = b.tokens, .n_new = b.n, .slots = sb, .n_ctx = b.n, .pos = b.pos,
          .logits = MODEL_LOGITS_ALL },
    };
    ModelBatch batch = { .seqs = seqs, .n_seqs = 2 };
    cr_assert_eq(model_forward(m, kv, &batch, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < a.n; i++)
        compare_row("batch seq 0", batch.logits + (size_t)(seqs[0].logits_row + i) * a.vocab,
                    a.logits + (size_t)i * a.vocab, a.vocab, tolerance(m));
    for (int i = 0; i < b.n; i++)
        compare_row("batch seq 1", batch.logits + (size_t)(seqs[1].logits_row + i) * b.vocab,
                    b.logits + (size_t)i * b.vocab, b.vocab, tolerance(m));
    free(a.logits);
    free(b.logits);
    kv_free(kv);
    json_decref(ref);
    model_free(m);
}
