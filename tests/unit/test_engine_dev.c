/*
 * tests/unit/test_engine_dev.c — the engine on a device backend, without a
 * GPU: the default model on the reference device backend (kernels/cpu/
 * devref.c; Q4_1 weights uploaded as bf16, NORM rope, GQA 3:1), so the
 * engine's device hooks run in CI: the KV pool from the memory plan in the
 * backend's memory (model_kv_new), greedy picks through
 * ModelSeq.device_argmax, prompt chunks as attention tiles beside decode
 * rows. The reference device backend computes each row alone, so greedy
 * output must not depend on batching, chunking or the prefix cache.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/constrain.h"
#include "runtime/engine.h"
#include "runtime/gguf.h"
#include "engine_helper.h"

static Model *model;
static Tokenizer *tok;

static void setup(void)
{
    engine_model_load(&model, &tok);
    ModelOptions mo;
    model_get_options(model, &mo);
    mo.backend = K_BACKEND_DEV_REF;
    model_set_options(model, &mo);
}

static void teardown(void) { engine_model_free(&model, &tok); }

TestSuite(engine_dev, .init = setup, .fini = teardown, .timeout = 600);

typedef struct {
    int done, status, n;
    int32_t ids[64];
    int cached;
    char text[256];
} Out;

static void on_done(void *ud, const EngResult *r)
{
    Out *o = ud;
    o->done = 1;
    o->status = r->status;
    o->n = r->n_ids < 64 ? r->n_ids : 64;
    memcpy(o->ids, r->ids, (size_t)o->n * sizeof *o->ids);
    o->cached = r->cached_tokens;
    size_t len = r->len < sizeof o->text - 1 ? r->len : sizeof o->text - 1;
    memcpy(o->text, r->text, len);
    o->text[len] = 0;
}

static const char *prompts[] = {
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is the capital of Italy?<|im_end|>\n<|im_start|>assistant\n",
};
enum { NP = 2, MAXT = 6 };

static void run(int cache, int chunk, int together, Out *o, EngStats *st)
{
    EngOptions eo;
    eng_options_default(&eo);
    eo.prefix_cache = cache;
    eo.chunk_size = chunk;
    eo.check_each_step = 1;
    char err[512] = "";
    Engine *e = eng_new(model, tok, &eo, err, sizeof err);
    cr_assert_not_null(e, "eng_new: %s", err);
    memset(o, 0, NP * sizeof *o);
    for (int i = 0; i < NP; i++) {
        EngGenParams p;
        eng_gen_params_default(&p);
        p.prompt_text = prompts[i];
        p.prompt_len = strlen(prompts[i]);
        p.sampling.temperature = 0;
        p.sampling.max_tokens = MAXT;
        p.sampling.ignore_eos = 1;
        p.on_done = on_done;
        p.ud = &o[i];
        cr_assert_eq(eng_submit(e, &p, NULL), 0, "%s", eng_last_error(e));
        if (!together)
            while (!o[i].done) eng_wait(e);
    }
    for (int i = 0; i < NP; i++)
        while (!o[i].done) eng_wait(e);
    eng_stats(e, st);
    eng_free(e);
    for (int i = 0; i < NP; i++) {
        cr_assert_eq(o[i].status, 0);
        cr_assert_eq(o[i].n, MAXT);
    }
}

Test(engine_dev, greedy_is_the_same_alone_batched_chunked_and_cached)
{
    Out alone[NP], mixed[NP];
    EngStats st;
    run(0, 512, 0, alone, &st);
    cr_assert(model_on_device(model));
    cr_assert_str_eq(model_backend_name(model), "dev-ref");
    /* 0.88 of the reference device's 1 GiB after ~270 MB of bf16 weights, at 23 KB a slot */
    cr_assert(st.kv.total > 20000 && st.kv.total < 40000, "the pool is the memory plan's: %d slots", st.kv.total);
    /* all at once, prompts in chunks of 5 (decode rows beside tiles), the
     * cache on: the second prompt shares the first's prefix */
    run(1, 5, 1, mixed, &st);
    for (int i = 0; i < NP; i++)
        for (int j = 0; j < MAXT; j++)
            cr_assert_eq(alone[i].ids[j], mixed[i].ids[j], "prompt %d token %d", i, j);
    cr_assert_eq(st.check_failures, 0, "%s", st.check_error);
}

/* Rows that are not plain greedy take the host route from device logits:
 * a regex-constrained request (the mask needs the row) and a seeded sampled
 * one (the same seed gives the same ids). */
Test(engine_dev, constrained_and_sampled_requests_take_device_logits)
{
    EngOptions eo;
    eng_options_default(&eo);
    char err[512] = "";
    Engine *e = eng_new(model, tok, &eo, err, sizeof err);
    cr_assert_not_null(e, "eng_new: %s", err);
    CGrammar *g = NULL;
    int pos = 0;
    cr_assert_eq(cg_compile_regex("[0-9]{1,3}", 10, NULL, &g, &pos, err, sizeof err), 0, "%s", err);
    Out o[3];
    memset(o, 0, sizeof o);
    for (int i = 0; i < 3; i++) {
        EngGenParams p;
        eng_gen_params_default(&p);
        p.prompt_text = prompts[0];
        p.prompt_len = strlen(prompts[0]);
        p.sampling.max_tokens = MAXT;
        if (i == 0) {
            p.sampling.temperature = 0;
            p.constraint = g;
        } else {
            p.sampling.temperature = 0.8f;
            p.sampling.has_seed = 1;
            p.sampling.seed = 42;
            p.sampling.ignore_eos = 1;
        }
        p.on_done = on_done;
        p.ud = &o[i];
        cr_assert_eq(eng_submit(e, &p, NULL), 0, "%s", eng_last_error(e));
    }
    for (int i = 0; i < 3; i++)
        while (!o[i].done) eng_wait(e);
    eng_free(e);
    cg_unref(g);
    for (int i = 0; i < 3; i++) cr_assert_eq(o[i].status, 0);
    size_t n = strlen(o[0].text);
    cr_assert(n >= 1 && n <= 3 && strspn(o[0].text, "0123456789") == n, "constrained output '%s'", o[0].text);
    cr_assert_eq(o[1].n, MAXT);
    cr_assert_eq(o[2].n, MAXT);
    for (int j = 0; j < MAXT; j++) cr_assert_eq(o[1].ids[j], o[2].ids[j], "seeded sampling, token %d", j);
}

/* ---- sampling on the device (ModelSeq.sample, KDevOps.sample) ---- */

typedef struct {
    int done, status, n;
    int32_t ids[32];
    float lp[32];
    SampTokLogprob top[32 * 5];
    int top_n;
    char text[256];
} SOut;

static void on_done_s(void *ud, const EngResult *r)
{
    SOut *o = ud;
    o->done = 1;
    o->status = r->status;
    o->n = r->n_ids < 32 ? r->n_ids : 32;
    memcpy(o->ids, r->ids, (size_t)o->n * sizeof *o->ids);
    if (r->logprobs) memcpy(o->lp, r->logprobs, (size_t)o->n * sizeof *o->lp);
    o->top_n = r->top_per_token;
    if (r->top && o->top_n <= 5) memcpy(o->top, r->top, (size_t)o->n * (size_t)o->top_n * sizeof *o->top);
    size_t len = r->len < sizeof o->text - 1 ? r->len : sizeof o->text - 1;
    memcpy(o->text, r->text, len);
    o->text[len] = 0;
}

enum { NS = 9, SMAXT = 12 };

/* Requests that each take another part of the op: every one seeded. */
static void sampled_params(int i, EngGenParams *p, SampBias *bias)
{
    SampParams *s = &p->sampling;
    s->has_seed = 1;
    s->seed = 100 + (uint64_t)i;
    s->max_tokens = SMAXT;
    s->ignore_eos = 1;
    switch (i) {
    case 0: s->temperature = 0.8f; break;
    case 1: s->temperature = 1.0f; s->top_k = 20; break;
    case 2: s->temperature = 0.7f; s->top_p = 0.9f; break;
    case 3: s->temperature = 1.2f; s->min_p = 0.05f; s->top_p = 0.95f; s->top_k = 200; break;
    case 4:
        s->temperature = 0.9f;
        s->repetition_penalty = 1.3f;
        s->frequency_penalty = 0.4f;
        s->presence_penalty = 0.2f;
        break;
    case 5: s->temperature = 0.8f; s->logprobs = 1; s->top_logprobs = 5; break;
    case 6:
        s->temperature = 0.6f;
        s->logprobs = 1;
        s->top_logprobs = 3;
        s->logprob_mode = SAMP_LOGPROBS_PROCESSED;
        s->repetition_penalty = 1.1f;
        break;
    case 7:   /* greedy with penalties and a bias: not plain argmax, so the op */
        s->temperature = 0;
        s->repetition_penalty = 1.5f;
        bias[0] = (SampBias){13, 3.0f};
        s->bias = bias;
        s->n_bias = 1;
        break;
    default:  /* min_tokens bans EOS through the op's bitset */
        s->temperature = 0.9f;
        s->ignore_eos = 0;
        s->min_tokens = SMAXT;
        break;
    }
}

static void run_sampled(int device_sample, CGrammar *g, SOut *o, EngStats *st)
{
    EngOptions eo;
    eng_options_default(&eo);
    eo.device_sample = device_sample;
    eo.check_each_step = 1;
    char err[512] = "";
    Engine *e = eng_new(model, tok, &eo, err, sizeof err);
    cr_assert_not_null(e, "eng_new: %s", err);
    memset(o, 0, (NS + 1) * sizeof *o);
    SampBias bias[NS][1];
    for (int i = 0; i <= NS; i++) {
        EngGenParams p;
        eng_gen_params_default(&p);
        p.prompt_text = prompts[i % NP];
        p.prompt_len = strlen(prompts[i % NP]);
        if (i < NS) {
            sampled_params(i, &p, bias[i]);
        } else {   /* constrained and sampled: the mask goes to the op */
            p.sampling.temperature = 0.9f;
            p.sampling.has_seed = 1;
            p.sampling.seed = 5;
            p.sampling.max_tokens = SMAXT;
            p.constraint = g;
        }
        p.on_done = on_done_s;
        p.ud = &o[i];
        cr_assert_eq(eng_submit(e, &p, NULL), 0, "%s", eng_last_error(e));
    }
    for (int i = 0; i <= NS; i++)
        while (!o[i].done) eng_wait(e);
    eng_stats(e, st);
    eng_free(e);
    for (int i = 0; i <= NS; i++) cr_assert_eq(o[i].status, 0, "request %d", i);
}

Test(engine_dev, seeded_sampling_is_the_same_on_the_device_and_the_host)
{
    char err[256];
    CGrammar *g = NULL;
    int pos = 0;
    cr_assert_eq(cg_compile_regex("(yes|no|maybe) [a-z]{2,8}", 24, NULL, &g, &pos, err, sizeof err), 0, "%s", err);
    SOut dev[NS + 1], host[NS + 1];
    EngStats st;
    run_sampled(1, g, dev, &st);
    cr_assert_eq(st.check_failures, 0, "%s", st.check_error);
    cr_assert(st.device_sampled >= NS * SMAXT, "the rows were sampled on the device (%d)", (int)st.device_sampled);
    run_sampled(0, g, host, &st);
    cr_assert_eq(st.device_sampled, 0);
    cg_unref(g);
    for (int i = 0; i <= NS; i++) {
        cr_assert_eq(dev[i].n, host[i].n, "request %d: %d vs %d tokens", i, dev[i].n, host[i].n);
        for (int j = 0; j < dev[i].n; j++) {
            cr_assert_eq(dev[i].ids[j], host[i].ids[j], "request %d token %d", i, j);
            cr_assert_eq(dev[i].lp[j], host[i].lp[j], "request %d token %d: logprob", i, j);
        }
        cr_assert_eq(dev[i].top_n, host[i].top_n);
        for (int k = 0; k < dev[i].n * dev[i].top_n; k++) {
            cr_assert_eq(dev[i].top[k].id, host[i].top[k].id, "request %d alternative %d", i, k);
            cr_assert_eq(dev[i].top[k].logprob, host[i].top[k].logprob, "request %d alternative %d", i, k);
        }
        cr_assert_str_eq(dev[i].text, host[i].text);
    }
    cr_assert_eq(dev[NS - 1].n, SMAXT, "min_tokens held EOS off");
    cr_assert(strncmp(dev[NS].text, "yes ", 4) == 0 || strncmp(dev[NS].text, "no ", 3) == 0 ||
                  strncmp(dev[NS].text, "maybe ", 6) == 0,
              "constrained output '%s'", dev[NS].text);
    /* the draws differ between requests: sampling did happen */
    int differ = 0;
    for (int j = 0; j < SMAXT; j++) differ += dev[0].ids[j] != dev[2].ids[j];
    cr_assert(differ > 0);
}

/* A padded vocabulary: the model has more rows than the tokenizer has ids
 * (here the default model's 49152 under Llama 2's 32000-id tokenizer), and
 * no sampler, on the device or the host, greedy or random, may pick a
 * padding id. Every id the tokenizer has is pushed down by a logit bias of
 * -50, so without the limit the padding ids are the argmax and hold nearly
 * all the probability. */
Test(engine_dev, a_padded_vocabulary_never_yields_a_padding_id)
{
    const char *path = "build/vocab/ggml-vocab-llama-spm.gguf";
    if (access(path, R_OK) != 0) cr_skip_test("no %s", path);
    char err[512] = "";
    GgufFile *f = gguf_open(path, err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    Tokenizer *small = NULL;
    cr_assert_eq(tok_load_gguf(f, &small, err, sizeof err), 0, "%s", err);
    int n_tok = tok_vocab_size(small);
    cr_assert(n_tok == 32000 && n_tok < model->cfg.vocab);
    SampBias *bias = malloc((size_t)n_tok * sizeof *bias);
    for (int i = 0; i < n_tok; i++) bias[i] = (SampBias){i, -50.0f};
    for (int device_sample = 0; device_sample < 2; device_sample++) {
        EngOptions eo;
        eng_options_default(&eo);
        eo.device_sample = device_sample;
        Engine *e = eng_new(model, small, &eo, err, sizeof err);
        cr_assert_not_null(e, "eng_new: %s", err);
        SOut o[3];
        memset(o, 0, sizeof o);
        for (int i = 0; i < 3; i++) {
            EngGenParams p;
            eng_gen_params_default(&p);
            p.prompt_text = "Hello world, this is";
            p.prompt_len = strlen(p.prompt_text);
            p.sampling.max_tokens = 8;
            p.sampling.ignore_eos = 1;
            p.sampling.temperature = i == 0 ? 0.0f : 1.0f;
            p.sampling.top_k = i == 2 ? 50 : 0;
            p.sampling.has_seed = 1;
            p.sampling.seed = 3;
            p.sampling.bias = bias;
            p.sampling.n_bias = n_tok;
            p.on_done = on_done_s;
            p.ud = &o[i];
            cr_assert_eq(eng_submit(e, &p, NULL), 0, "%s", eng_last_error(e));
        }
        for (int i = 0; i < 3; i++)
            while (!o[i].done) eng_wait(e);
        EngStats st;
        eng_stats(e, &st);
        eng_free(e);
        cr_assert_eq(st.device_sampled > 0, device_sample, "device_sample %d: %d on the device", device_sample,
                     (int)st.device_sampled);
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(o[i].status, 0);
            cr_assert_eq(o[i].n, 8);
            for (int j = 0; j < o[i].n; j++)
                cr_assert(o[i].ids[j] >= 0 && o[i].ids[j] < n_tok, "device_sample %d request %d: id %d is padding",
                          device_sample, i, o[i].ids[j]);
        }
    }
    free(bias);
    tok_free(small);
    gguf_close(f);
}
