/*
 * tests/unit/test_make_gguf.c — `sgl make-model --gguf` (runtime/make_gguf.c):
 * a one-layer Llama-3.2-1B-shaped checkpoint (rope scaling, tied
 * embeddings, GQA 4:1) written as GGUF must be the same model as the HF
 * directory it came from: the same tokenizer ids for a text, and through
 * the CPU reference backend the same logits (f32: to rounding; q8_0: within
 * its quantization error, same argmax on most rows). This is what checks
 * the Q/K row permutation (NORM rope on GGUF llama files), rope_freqs for
 * Llama 3 scaling and the tokenizer metadata. Also the writer's refusals.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "include/sgl.h"
#include "runtime/gguf.h"
#include "runtime/gguf_write.h"
#include "runtime/hf.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/sgl-test-gguf-%d", (int)getpid());
    char err[512];
    cr_assert_eq(sgl_make_model("llama-3.2-1b", dir, 7, 1, err, sizeof err), SGL_OK, "%s", err);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(make_gguf, .init = setup, .fini = teardown, .timeout = 300);

enum { NT = 24 };

/* logits of every row of one prompt on the reference CPU backend */
static float *logits_of(Model *m, const int32_t *ids, int n)
{
    ModelOptions o;
    model_options_default(&o);
    o.backend = K_BACKEND_CPU_REF;
    model_set_options(m, &o);
    char err[512];
    KvPool *kv = model_kv_new(m, 64, K_DTYPE_F32, err, sizeof err);
    cr_assert(kv, "%s", err);
    int32_t slots[NT];
    for (int i = 0; i < n; i++) slots[i] = i;
    ModelSeq s = {.tokens = ids, .n_new = n, .slots = slots, .n_ctx = n, .logits = MODEL_LOGITS_ALL};
    ModelBatch b = {.seqs = &s, .n_seqs = 1};
    cr_assert_eq(model_forward(m, kv, &b, err, sizeof err), 0, "%s", err);
    size_t bytes = (size_t)n * (size_t)m->cfg.vocab * sizeof(float);
    float *out = malloc(bytes);
    memcpy(out, b.logits, bytes);
    kv_free(kv);
    return out;
}

static void compare(const char *type, double tol, int min_argmax)
{
    char err[512], path[128];
    snprintf(path, sizeof path, "%s/model-%s.gguf", dir, type);
    cr_assert_eq(sgl_make_gguf(dir, type, path, err, sizeof err), SGL_OK, "%s", err);

    Model *hf, *gg;
    cr_assert_eq(hf_load(dir, &hf, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_load_gguf(path, &gg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(gg->cfg.vocab, hf->cfg.vocab);
    cr_assert_eq(gg->cfg.rope_style, K_ROPE_NORM);
    cr_assert_eq(hf->cfg.rope_style, K_ROPE_NEOX);
    cr_assert(gg->cfg.tied_embeddings);

    /* the tokenizers agree */
    Tokenizer *th, *tg;
    cr_assert_eq(tok_load_hf(dir, &th, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tok_load_gguf(gg->gguf, &tg, err, sizeof err), 0, "%s", err);
    const char *text = "The quick brown fox jumps over the lazy dog, 1234 times! Caf\xc3\xa9?";
    TokIds a = {0}, b = {0};
    cr_assert_eq(tok_encode(th, text, strlen(text), TOK_ENC_ADD_SPECIAL, &a), 0);
    cr_assert_eq(tok_encode(tg, text, strlen(text), TOK_ENC_ADD_SPECIAL, &b), 0);
    cr_assert_eq(a.n, b.n);
    cr_assert_eq(memcmp(a.ids, b.ids, a.n * sizeof *a.ids), 0);
    cr_assert_eq(a.ids[0], 128000, "BOS first");

    int n = a.n < NT ? (int)a.n : NT;
    float *lh = logits_of(hf, a.ids, n), *lg = logits_of(gg, a.ids, n);
    int V = hf->cfg.vocab, same = 0;
    double worst = 0;
    for (int r = 0; r < n; r++) {
        double d2 = 0, n2 = 0;
        int ah = 0, ag = 0;
        for (int i = 0; i < V; i++) {
            double d = (double)lh[(size_t)r * V + i] - lg[(size_t)r * V + i];
            d2 += d * d;
            n2 += (double)lh[(size_t)r * V + i] * lh[(size_t)r * V + i];
            if (lh[(size_t)r * V + i] > lh[(size_t)r * V + ah]) ah = i;
            if (lg[(size_t)r * V + i] > lg[(size_t)r * V + ag]) ag = i;
        }
        double rel = sqrt(d2 / (n2 > 0 ? n2 : 1));
        if (rel > worst) worst = rel;
        same += ah == ag;
    }
    cr_log_info("%s: worst rel. L2 %.3g, argmax agrees on %d of %d rows", type, worst, same, n);
    cr_assert(worst < tol, "%s: rel. L2 of the logits %g (tolerance %g)", type, worst, tol);
    cr_assert(same >= min_argmax * n / NT, "%s: argmax agrees on %d of %d rows", type, same, n);
    free(lh);
    free(lg);
    tok_ids_free(&a);
    tok_ids_free(&b);
    tok_free(th);
    tok_free(tg);
    model_free(hf);
    model_free(gg);
}

Test(make_gguf, f32_is_the_same_model) { compare("f32", 1e-4, NT); }

Test(make_gguf, q8_0_within_quantization) { compare("q8_0", 0.02, NT * 3 / 4); }

/* The k-quants (make-model's min/max fits): 6-bit within a few percent,
 * 4- and 5-bit within their grids' error on random weights. */
Test(make_gguf, q6_k_within_quantization) { compare("q6_k", 0.05, NT / 2); }
Test(make_gguf, q5_k_within_quantization) { compare("q5_k", 0.12, NT / 3); }
Test(make_gguf, q4_k_within_quantization) { compare("q4_k", 0.25, NT / 4); }

/* Each k-quant block dequantizes back near what was quantized: per block
 * the error is bounded by the sub-block grids (checked against a bound
 * from the block's range), and exact zeros and constant blocks survive. */
Test(make_gguf, k_quant_blocks_round_trip)
{
    const KDtype types[] = {K_DTYPE_Q4_K, K_DTYPE_Q5_K, K_DTYPE_Q6_K};
    const int levels[] = {15, 31, 31};
    float x[512], y[512];
    uint8_t q[512];
    unsigned r = 12345;
    for (int i = 0; i < 512; i++) {
        r = r * 1103515245u + 12345u;
        x[i] = ((float)(r >> 8) / (float)(1u << 24) - 0.5f) * (i < 256 ? 0.2f : 3.0f);
    }
    for (int t = 0; t < 3; t++) {
        cr_assert_eq(k_quant_row_host(types[t], x, q, 512), 0);
        k_dequant_row_host(types[t], q, y, 512);
        for (int b = 0; b < 2; b++) {
            float amax = 0, err = 0;
            for (int i = 256 * b; i < 256 * b + 256; i++) {
                amax = fmaxf(amax, fabsf(x[i]));
                err = fmaxf(err, fabsf(x[i] - y[i]));
            }
            /* half a step of the widest sub-block's grid, the 6-bit
             * sub-scales' and the f16 super-scale's rounding on top */
            float bound = 2 * amax / levels[t] * 0.75f;
            cr_assert(err <= bound, "%s block %d: max error %g over bound %g", k_dtype_name(types[t]), b, err, bound);
        }
        float z[256] = {0}, c[256];
        for (int i = 0; i < 256; i++) c[i] = 0.5f;
        cr_assert_eq(k_quant_row_host(types[t], z, q, 256), 0);
        k_dequant_row_host(types[t], q, y, 256);
        for (int i = 0; i < 256; i++) cr_assert_eq(y[i], 0.0f, "%s: zeros", k_dtype_name(types[t]));
        cr_assert_eq(k_quant_row_host(types[t], c, q, 256), 0);
        k_dequant_row_host(types[t], q, y, 256);
        for (int i = 0; i < 256; i++)
            cr_assert(fabsf(y[i] - 0.5f) < 0.01f, "%s: constant 0.5 came back %g", k_dtype_name(types[t]), y[i]);
    }
}

Test(make_gguf, refusals)
{
    char err[512], path[128];
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    cr_assert_eq(sgl_make_gguf(dir, "q5_0", path, err, sizeof err), SGL_ERR_USAGE);
    cr_assert(strstr(err, "q5_0") && strstr(err, "q8_0") && strstr(err, "q6_k"), "%s", err);
    cr_assert_eq(sgl_make_gguf("/nonexistent-dir", "f16", path, err, sizeof err), SGL_ERR_IO);

    /* the writer refuses what the format cannot hold, by name */
    GgufWriter *w = gguf_writer_new();
    int64_t ne[2] = {30, 2};
    cr_assert_eq(gguf_w_tensor(w, "odd", K_DTYPE_Q8_0, ne, 2), -1);
    cr_assert(strstr(gguf_writer_error(w), "odd") && strstr(gguf_writer_error(w), "Q8_0"), "%s", gguf_writer_error(w));
    gguf_writer_free(w);

    /* a short tensor is reported at finish */
    w = gguf_writer_new();
    int64_t ne1[1] = {8};
    cr_assert_eq(gguf_w_u32(w, "general.alignment", 32), 0);
    cr_assert_eq(gguf_w_tensor(w, "t", K_DTYPE_F32, ne1, 1), 0);
    cr_assert_eq(gguf_writer_begin(w, path), 0, "%s", gguf_writer_error(w));
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cr_assert_eq(gguf_writer_append(w, v, 16), 0);
    cr_assert_eq(gguf_writer_finish(w), -1);
    cr_assert(strstr(gguf_writer_error(w), "16 of its 32 bytes"), "%s", gguf_writer_error(w));
    gguf_writer_free(w);

    /* and a whole one reads back */
    w = gguf_writer_new();
    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_tensor(w, "t", K_DTYPE_F32, ne1, 1);
    cr_assert_eq(gguf_writer_begin(w, path), 0);
    cr_assert_eq(gguf_writer_append(w, v, 12), 0);
    cr_assert_eq(gguf_writer_append(w, v + 3, 20), 0);
    cr_assert_eq(gguf_writer_finish(w), 0, "%s", gguf_writer_error(w));
    gguf_writer_free(w);
    GgufFile *f = gguf_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    const GgufTensor *t = gguf_find_tensor(f, "t");
    cr_assert(t && t->ne[0] == 8);
    cr_assert_eq(memcmp(t->data, v, 32), 0);
    gguf_close(f);
}
