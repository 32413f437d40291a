/*
 * tests/unit/test_engine_overlap.c — the overlap scheduler (EngOptions.
 * overlap, runtime/engine_step.c "Overlap") on the reference device backend
 * (kernels/cpu/devref.c, which runs model_launch's ops synchronously with
 * the same results): the same requests with overlap on and off give the
 * same ids, logprobs, finish reasons and texts, and the same pool state;
 * a sequence that finishes while its next token is in flight leaves the
 * pool as it would be without overlap. The reference backend computes each
 * row alone, so outputs do not depend on which requests share a step.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

TestSuite(engine_overlap, .init = setup, .fini = teardown, .timeout = 900);

enum { MAXN = 48, TOPN = 3 };

typedef struct {
    int done, status, finish, n, deltas;
    int32_t ids[MAXN];
    float lp[MAXN];
    SampTokLogprob top[MAXN * TOPN];
    int top_n, has_lp;
    char text[512];
} Out;

static void on_done(void *ud, const EngResult *r)
{
    Out *o = ud;
    o->done = 1;
    o->status = r->status;
    o->finish = r->finish;
    o->n = r->n_ids < MAXN ? r->n_ids : MAXN;
    memcpy(o->ids, r->ids, (size_t)o->n * sizeof *o->ids);
    o->has_lp = r->logprobs != NULL;
    if (r->logprobs) memcpy(o->lp, r->logprobs, (size_t)o->n * sizeof *o->lp);
    o->top_n = r->top_per_token;
    if (r->top && o->top_n <= TOPN) memcpy(o->top, r->top, (size_t)o->n * (size_t)o->top_n * sizeof *o->top);
    size_t len = r->len < sizeof o->text - 1 ? r->len : sizeof o->text - 1;
    memcpy(o->text, r->text, len);
    o->text[len] = 0;
}

static void on_delta(void *ud, const EngDelta *d)
{
    Out *o = ud;
    o->deltas++;
}

static const char *prompts[] = {
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nCount from one to ten.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is 7 times 6?<|im_end|>\n<|im_start|>assistant\n",
};
enum { NR = 8 };
static const int32_t NO_TOKEN_T = 0; /* a prev_ref row's tokens[0] (ignored) */

static Engine *start(int overlap, int n_slots)
{
    EngOptions eo;
    eng_options_default(&eo);
    eo.overlap = overlap;
    eo.check_each_step = 1;
    eo.chunk_size = 16;
    eo.n_slots = n_slots;
    char err[512] = "";
    Engine *e = eng_new(model, tok, &eo, err, sizeof err);
    cr_assert_not_null(e, "eng_new: %s", err);
    return e;
}

static void submit(Engine *e, EngGenParams *p, Out *o)
{
    p->on_done = on_done;
    p->on_delta = on_delta;
    p->ud = o;
    cr_assert_eq(eng_submit(e, p, NULL), 0, "%s", eng_last_error(e));
}

static void wait_all(Engine *e, Out *o, int n)
{
    for (int i = 0; i < n; i++)
        while (!o[i].done) eng_wait(e);
}

/* The stats once the engine has taken every launch (a step launched for a
 * sequence that the step before finished is taken after its on_done). */
static void settled_stats(Engine *e, EngStats *st)
{
    EngStats a, b;
    eng_stats(e, &a);
    for (;;) {
        usleep(20000);
        eng_stats(e, &b);
        if (b.steps == a.steps && b.kv.held == 0) break;
        a = b;
    }
    *st = b;
}

/* Eight requests of every kind, two of them joining once the first has
 * streamed; stop_id ends request 2 (a token it makes) with a step in flight. */
static void run_mix(int overlap, int32_t stop_id, CGrammar *g, Out *o, EngStats *st)
{
    Engine *e = start(overlap, 0);
    memset(o, 0, NR * sizeof *o);
    static const char *stops[] = {"Paris", " is"};
    for (int i = 0; i < NR; i++) {
        if (i == 5)
            while (!o[0].deltas && !o[0].done) eng_wait(e);
        EngGenParams p;
        eng_gen_params_default(&p);
        const char *pr = prompts[i % 4];
        p.prompt_text = pr;
        p.prompt_len = strlen(pr);
        SampParams *s = &p.sampling;
        s->has_seed = 1;
        s->seed = 7 + (uint64_t)i;
        s->ignore_eos = 1;
        switch (i) {
        case 0: s->temperature = 0; s->max_tokens = 24; break;
        case 1: s->temperature = 0.8f; s->max_tokens = 12; s->logprobs = 1; s->top_logprobs = TOPN; break;
        case 2: s->temperature = 0; s->max_tokens = 16; s->stop_ids = &stop_id; s->n_stop = stop_id >= 0; break;
        case 3: s->temperature = 0; s->max_tokens = 8; p.constraint = g; break;
        case 4: s->temperature = 1.0f; s->top_k = 20; s->max_tokens = 14; p.stop = stops; p.n_stop = 2; break;
        case 5: s->temperature = 0; s->max_tokens = 7; break;
        case 6: s->temperature = 1.0f; s->top_p = 0.9f; s->max_tokens = 9; break;
        case 7: s->temperature = 0.9f; s->repetition_penalty = 1.3f; s->max_tokens = 4; break;
        }
        submit(e, &p, &o[i]);
    }
    wait_all(e, o, NR);
    settled_stats(e, st);
    eng_free(e);
}

static void same_outputs(const Out *a, const Out *b, int n)
{
    for (int i = 0; i < n; i++) {
        cr_assert_eq(a[i].status, 0, "request %d", i);
        cr_assert_eq(b[i].status, 0, "request %d", i);
        cr_assert_eq(a[i].finish, b[i].finish, "request %d: finish", i);
        cr_assert_eq(a[i].n, b[i].n, "request %d: %d vs %d ids", i, a[i].n, b[i].n);
        for (int j = 0; j < a[i].n; j++) cr_assert_eq(a[i].ids[j], b[i].ids[j], "request %d token %d", i, j);
        cr_assert_eq(a[i].has_lp, b[i].has_lp);
        for (int j = 0; a[i].has_lp && j < a[i].n; j++)
            cr_assert_eq(a[i].lp[j], b[i].lp[j], "request %d logprob %d", i, j);
        cr_assert_eq(a[i].top_n, b[i].top_n);
        for (int j = 0; j < a[i].n * a[i].top_n; j++) {
            cr_assert_eq(a[i].top[j].id, b[i].top[j].id, "request %d top %d", i, j);
            cr_assert_eq(a[i].top[j].logprob, b[i].top[j].logprob, "request %d top %d", i, j);
        }
        cr_assert_str_eq(a[i].text, b[i].text, "request %d", i);
    }
}

Test(engine_overlap, same_outputs_on_and_off)
{
    char err[256];
    CGrammar *g = NULL;
    int pos = 0;
    cr_assert_eq(cg_compile_regex("[0-9]{1,3}", 10, NULL, &g, &pos, err, sizeof err), 0, "%s", err);
    Out off[NR], on[NR];
    EngStats s_off, s_on;
    run_mix(0, -1, g, off, &s_off);
    /* request 2 (greedy) stops at its fourth token */
    cr_assert(off[2].n >= 5);
    int32_t stop = off[2].ids[3];
    run_mix(0, stop, g, off, &s_off);
    run_mix(1, stop, g, on, &s_on);
    cg_unref(g);
    same_outputs(off, on, NR);
    cr_assert_eq(on[2].finish, ENG_FINISH_STOP);
    cr_assert_eq(on[0].finish, ENG_FINISH_LENGTH);
    cr_assert_eq(s_off.overlap_steps, 0);
    cr_assert_gt(s_on.overlap_steps, 0, "overlap on launched no step ahead");
    cr_assert_eq(s_on.requests, s_off.requests);
    cr_assert_eq(s_on.generated_tokens, s_off.generated_tokens);
    cr_assert_eq(s_on.device_sampled, s_off.device_sampled);
    cr_assert_eq(s_on.check_failures, 0, "%s", s_on.check_error);
    cr_assert_eq(s_off.check_failures, 0, "%s", s_off.check_error);
    /* the finished sequences' slots: nothing held, the same tree */
    cr_assert_eq(s_on.kv.held, 0);
    cr_assert_eq(s_on.kv.locked, 0);
    cr_assert_eq(s_on.kv.free + s_on.kv.cached, s_off.kv.free + s_off.kv.cached);
}

/* A pool too small for everyone: sequences are retracted and resume; the
 * outputs stay the same. */
Test(engine_overlap, retraction_gives_the_same_outputs)
{
    enum { N = 4 };
    Out o[2][N];
    EngStats st[2];
    for (int on = 0; on < 2; on++) {
        Engine *e = start(on, 150);
        memset(o[on], 0, sizeof o[on]);
        for (int i = 0; i < N; i++) {
            EngGenParams p;
            eng_gen_params_default(&p);
            p.prompt_text = prompts[i];
            p.prompt_len = strlen(prompts[i]);
            p.sampling.temperature = i % 2 ? 0.8f : 0;
            p.sampling.has_seed = 1;
            p.sampling.seed = 99 + (uint64_t)i;
            p.sampling.max_tokens = 40;
            p.sampling.ignore_eos = 1;
            submit(e, &p, &o[on][i]);
        }
        wait_all(e, o[on], N);
        settled_stats(e, &st[on]);
        eng_free(e);
    }
    same_outputs(o[0], o[1], N);
    cr_assert_gt(st[0].retractions, 0, "the pool should have been short");
    cr_assert_gt(st[1].overlap_steps, 0);
    cr_assert_eq(st[1].check_failures, 0, "%s", st[1].check_error);
}

/* The discard path: a greedy sequence that stops (stop id) while its next
 * token is in flight; that row is computed, dropped, and the pool ends as
 * without overlap (radix_check after every step, the same counters). */
Test(engine_overlap, a_finish_with_a_token_in_flight_leaves_the_pool_as_without)
{
    Out ref[1], o[2][1];
    EngStats st[2];
    int32_t stop = -1;
    for (int pass = 0; pass < 3; pass++) {
        int on = pass == 2;
        Out *out = pass == 0 ? ref : o[on];
        Engine *e = start(on, 0);
        memset(out, 0, sizeof *out);
        EngGenParams p;
        eng_gen_params_default(&p);
        p.prompt_text = prompts[1];
        p.prompt_len = strlen(prompts[1]);
        p.sampling.temperature = 0;
        p.sampling.max_tokens = 20;
        p.sampling.ignore_eos = 1;
        p.sampling.stop_ids = &stop;
        p.sampling.n_stop = stop >= 0;
        submit(e, &p, out);
        wait_all(e, out, 1);
        settled_stats(e, pass ? &st[on] : &st[0]);
        eng_free(e);
        if (pass == 0) {
            cr_assert(ref[0].n >= 6);
            stop = ref[0].ids[5];
        }
    }
    same_outputs(o[0], o[1], 1);
    cr_assert_eq(o[1][0].finish, ENG_FINISH_STOP);
    cr_assert_gt(st[1].discarded_tokens, 0, "the stop should have found a token in flight");
    cr_assert_eq(st[0].discarded_tokens, 0);
    cr_assert_eq(st[1].check_failures, 0, "%s", st[1].check_error);
    cr_assert_eq(st[1].kv.free, st[0].kv.free);
    cr_assert_eq(st[1].kv.cached, st[0].kv.cached);
    cr_assert_eq(st[1].kv.nodes, st[0].kv.nodes);
    cr_assert_eq(st[1].kv.held, 0);
    cr_assert_eq(st[1].kv.locked, 0);
    cr_assert_eq(st[1].generated_tokens, st[0].generated_tokens);
}

/* Overlap needs the model on one device: asked for on the CPU it is
 * refused by name. */
Test(engine_overlap, refused_on_the_cpu)
{
    Model *m2 = NULL;
    Tokenizer *t2 = NULL;
    engine_model_load(&m2, &t2);
    EngOptions eo;
    eng_options_default(&eo);
    eo.overlap = 1;
    char err[512] = "";
    Engine *e = eng_new(m2, t2, &eo, err, sizeof err);
    cr_assert_null(e);
    cr_assert(strstr(err, "overlap"), "%s", err);
    engine_model_free(&m2, &t2);
}

/* ---- the model's side: model_launch / model_wait against model_forward ---- */

static KDevSampleRow sample_row(double u)
{
    return (KDevSampleRow){.u = u, .temperature = 0.8f, .top_p = 1.0f, .repetition_penalty = 1.0f,
                           .allow_off = -1, .lp_mode = K_LP_RAW, .n_top = 2};
}

/* Three steps of two sequences (A greedy on the device, B sampled on the
 * device), step by step with model_forward + model_sample, then launched
 * ahead: step k+1 launched before step k is waited, its tokens named by
 * prev_ref. The same ids and logprobs. */
Test(engine_overlap, launch_ahead_equals_forward)
{
    char err[512];
    cr_assert_eq(model_reserve(model, 64, 8, err, sizeof err), 0, "%s", err);
    KvPool *kv = model_kv_new(model, 256, K_DTYPE_F16, err, sizeof err);
    cr_assert_not_null(kv, "%s", err);
    int32_t pa[5] = {11, 220, 5000, 31, 7}, pb[7] = {900, 12, 13, 14, 8000, 2, 100};
    int32_t sa[8], sb[10];
    for (int i = 0; i < 8; i++) sa[i] = i;
    for (int i = 0; i < 10; i++) sb[i] = 100 + i;
    double us[3] = {0.3, 0.71, 0.05};
    int32_t ref_a[3], ref_b[3];
    float ref_lp[3];
    int32_t ta, tb;
    for (int k = 0; k < 3; k++) {
        ModelSample smp = {.row = sample_row(us[k])};
        ModelSeq q[2] = {
            {.tokens = k ? &ta : pa, .n_new = k ? 1 : 5, .slots = sa, .n_ctx = 5 + k, .device_argmax = 1},
            {.tokens = k ? &tb : pb, .n_new = k ? 1 : 7, .slots = sb, .n_ctx = 7 + k, .sample = &smp},
        };
        ModelBatch b = {.seqs = q, .n_seqs = 2};
        cr_assert_eq(model_forward(model, kv, &b, err, sizeof err), 0, "%s", err);
        cr_assert_eq(model_sample(model, &b, err, sizeof err), 0, "%s", err);
        ref_a[k] = ta = q[0].argmax;
        ref_b[k] = tb = smp.id;
        ref_lp[k] = smp.logprob;
    }
    /* the same, each step launched before the one before it is waited */
    ModelSample smp[3];
    ModelSeq q[3][2];
    ModelBatch b[3];
    for (int k = 0; k < 3; k++) {
        smp[k] = (ModelSample){.row = sample_row(us[k])};
        q[k][0] = (ModelSeq){.tokens = k ? &NO_TOKEN_T : pa, .n_new = k ? 1 : 5, .slots = sa, .n_ctx = 5 + k,
                             .device_argmax = 1, .prev_ref = k ? 1 : 0};
        q[k][1] = (ModelSeq){.tokens = k ? &NO_TOKEN_T : pb, .n_new = k ? 1 : 7, .slots = sb, .n_ctx = 7 + k,
                             .sample = &smp[k], .prev_ref = k ? 2 : 0};
        b[k] = (ModelBatch){.seqs = q[k], .n_seqs = 2};
        cr_assert_eq(model_launch(model, kv, &b[k], err, sizeof err), 0, "step %d: %s", k, err);
        cr_assert_eq(model_in_flight(model), k ? 2 : 1);
        if (k) cr_assert_eq(model_wait(model, &b[k - 1], err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(model_wait(model, &b[2], err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_in_flight(model), 0);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(q[k][0].argmax, ref_a[k], "step %d greedy", k);
        cr_assert_eq(smp[k].id, ref_b[k], "step %d sampled", k);
        cr_assert_eq(smp[k].logprob, ref_lp[k], "step %d logprob", k);
        cr_assert_eq(smp[k].n_top, 2);
    }
    /* refused by name: prev_ref without a launch, a host row in a launch */
    ModelSeq bad = {.tokens = &NO_TOKEN_T, .n_new = 1, .slots = sa, .n_ctx = 6, .prev_ref = 1};
    ModelBatch bb = {.seqs = &bad, .n_seqs = 1};
    cr_assert_neq(model_forward(model, kv, &bb, err, sizeof err), 0);
    cr_assert(strstr(err, "prev_ref"), "%s", err);
    ModelSeq host = {.tokens = pa, .n_new = 5, .slots = sa, .n_ctx = 5, .logits = MODEL_LOGITS_LAST};
    ModelBatch hb = {.seqs = &host, .n_seqs = 1};
    cr_assert_neq(model_launch(model, kv, &hb, err, sizeof err), 0);
    cr_assert(strstr(err, "host"), "%s", err);
    kv_free(kv);
}
