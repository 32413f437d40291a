/*
 * tests/unit/test_engine_tp.c — the engine on a tensor-parallel model
 * without a GPU: the default model (SmolLM2-135M: 9 query heads, 3 KV
 * heads, ff 1536, vocab 49152) split over 3 reference device backends
 * (tp = 3: one KV head, 512 ff columns and 16384 vocabulary rows per rank)
 * joined by the HOST communicator. The scheduler, radix cache and sampler
 * are the single-device ones; only rank 0's KV pool is theirs.
 *
 * Checked: greedy ids equal tp = 1's, alone and batched with chunked
 * prompts and the prefix cache on; the KV pool is the per-rank memory
 * plan's (each rank holds a third of the KV heads, so over three times
 * the slots of tp = 1 in the same per-device memory).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "runtime/engine.h"
#include "engine_helper.h"

static Model *model;
static Tokenizer *tok;

static void setup(void) { engine_model_load(&model, &tok); }
static void teardown(void) { engine_model_free(&model, &tok); }

TestSuite(engine_tp, .init = setup, .fini = teardown, .timeout = 600);

enum { NP = 2, MAXT = 12 };

typedef struct {
    int done, status, n;
    int32_t ids[MAXT];
} Out;

static void on_done(void *ud, const EngResult *r)
{
    Out *o = ud;
    o->done = 1;
    o->status = r->status;
    o->n = r->n_ids < MAXT ? r->n_ids : MAXT;
    memcpy(o->ids, r->ids, (size_t)o->n * sizeof *o->ids);
}

static const char *prompts[NP] = {
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is the capital of Italy?<|im_end|>\n<|im_start|>assistant\n",
};

static void use(int tp)
{
    ModelOptions mo;
    model_get_options(model, &mo);
    mo.backend = K_BACKEND_DEV_REF;
    mo.tp = tp;
    mo.tp_comm = K_COMM_AUTO;
    model_set_options(model, &mo);
}

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
    cr_assert_eq(st->check_failures, 0, "%s", st->check_error);
}

Test(engine_tp, greedy_at_tp3_equals_tp1_alone_batched_chunked_cached)
{
    Out one[NP], three[NP], mixed[NP];
    EngStats st1, st3;
    use(1);
    run(0, 512, 0, one, &st1);
    cr_assert_eq(model_tp_ranks(model), 1);
    use(3);
    run(0, 512, 0, three, &st3);
    cr_assert_eq(model_tp_ranks(model), 3);
    cr_assert_str_eq(model_tp_comm_name(model), "host");
    double ratio = (double)st3.kv.total / st1.kv.total;
    /* a third of the KV heads per slot, and a third of the weights beside
     * them (the embedding whole): a little over 3x the slots */
    cr_assert(ratio > 3.0 && ratio < 4.0, "tp 1: %d slots, tp 3: %d", st1.kv.total, st3.kv.total);
    run(1, 7, 1, mixed, &st3);
    for (int i = 0; i < NP; i++)
        for (int j = 0; j < MAXT; j++) {
            cr_assert_eq(three[i].ids[j], one[i].ids[j], "prompt %d token %d: tp 3 %d, tp 1 %d", i, j,
                         three[i].ids[j], one[i].ids[j]);
            cr_assert_eq(mixed[i].ids[j], one[i].ids[j], "prompt %d token %d (batched, chunked, cached)", i, j);
        }
    use(2);
    char err[512] = "";
    EngOptions eo;
    eng_options_default(&eo);
    cr_assert_null(eng_new(model, tok, &eo, err, sizeof err));
    cr_assert(strstr(err, "--tp 2") && strstr(err, "n_head_kv"), "%s", err);
}
