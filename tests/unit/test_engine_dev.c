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
#include <string.h>

#include "constrain/constrain.h"
#include "runtime/engine.h"
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
