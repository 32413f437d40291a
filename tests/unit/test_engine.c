/* tests/unit/test_engine.c — the engine on the default model: greedy output
 * is the same alone, in a batch, with and without the prefix cache, with
 * any chunk size and through retraction; cached-token counts; the slot
 * accounting after a run; scoring (select) against separate scoring;
 * streaming, stop strings, cancel, errors, libuv delivery, and the VM's
 * backend (runtime/rt_engine.h).
 *
 * Needs models/SmolLM2-135M-Instruct.Q4_1.gguf (`make model`); every test
 * skips with a message when it is absent.
 *
 * Exactness: the CPU backend's sgemm path (batches of 16+ rows) sums in a
 * different order than its quantized-dot path, and on a 135M model with
 * 8-bit activations that moves logits by up to ~1, enough to flip a greedy
 * pick. Batch invariance is a property of the dot path only, so these
 * tests run the model with CPU_NO_BLAS.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "runtime/engine.h"
#include "runtime/rt_engine.h"
#include "engine_helper.h"

static Model *model;
static Tokenizer *tok;

static void setup(void)
{
    engine_model_load(&model, &tok);
}

static void teardown(void)
{
    engine_model_free(&model, &tok);
}

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 600);

static EngOptions opts(int cache, int chunk, int n_slots)
{
    EngOptions o;
    eng_options_default(&o);
    o.prefix_cache = cache;
    o.chunk_size = chunk;
    o.n_slots = n_slots;
    o.n_threads = THREADS;
    o.check_each_step = 1;
    return o;
}

static Engine *start(EngOptions o)
{
    char err[512] = "";
    Engine *e = eng_new(model, tok, &o, err, sizeof err);
    cr_assert_not_null(e, "eng_new: %s", err);
    return e;
}

/* Every slot accounted for, nothing locked or held once all is done. */
static void check_idle_accounting(Engine *e)
{
    EngStats st;
    eng_stats(e, &st);
    cr_assert_eq(st.kv.free + st.kv.cached + st.kv.locked + st.kv.held, st.kv.total);
    cr_assert_eq(st.kv.locked, 0, "locked slots after the run: %d", st.kv.locked);
    cr_assert_eq(st.kv.held, 0, "held slots after the run: %d", st.kv.held);
    cr_assert_eq(st.check_failures, 0, "radix_check failed during the run: %s", st.check_error);
}

typedef struct {
    int done;
    int status;
    EngFinish finish;
    int32_t ids[512];
    int n_ids;
    char text[4096];
    size_t len;
    int prompt_tokens, cached_tokens;
    char streamed[4096];
    size_t streamed_len;
    int n_deltas;
    float lp[512];
    int n_lp;
    int text_ids;
} Out;

static void on_done(void *ud, const EngResult *r)
{
    Out *o = ud;
    cr_assert_eq(o->done, 0, "on_done fired twice");
    o->done = 1;
    o->status = r->status;
    o->finish = r->finish;
    o->n_ids = r->n_ids < 512 ? r->n_ids : 512;
    memcpy(o->ids, r->ids, (size_t)o->n_ids * sizeof *r->ids);
    o->len = r->len < sizeof o->text - 1 ? r->len : sizeof o->text - 1;
    memcpy(o->text, r->text, o->len);
    o->text[o->len] = 0;
    o->prompt_tokens = r->prompt_tokens;
    o->cached_tokens = r->cached_tokens;
    o->n_lp = r->n_logprobs < 512 ? r->n_logprobs : 512;
    if (r->logprobs) memcpy(o->lp, r->logprobs, (size_t)o->n_lp * sizeof *o->lp);
    o->text_ids = r->text_ids;
}

static void on_delta(void *ud, const EngDelta *d)
{
    Out *o = ud;
    cr_assert_eq(o->done, 0, "a delta after on_done");
    cr_assert(o->streamed_len + d->len < sizeof o->streamed);
    memcpy(o->streamed + o->streamed_len, d->text, d->len);
    o->streamed_len += d->len;
    o->streamed[o->streamed_len] = 0;
    o->n_deltas++;
}

static const char *prompts[] = {
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is the capital of Italy?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, in a small village by the sea,",
};
#define NPROMPTS 4

static void submit_greedy(Engine *e, const char *prompt, int max_tokens, Out *o)
{
    EngGenParams p;
    eng_gen_params_default(&p);
    p.prompt_text = prompt;
    p.prompt_len = strlen(prompt);
    p.sampling.temperature = 0;
    p.sampling.max_tokens = max_tokens;
    p.sampling.ignore_eos = 1;   /* every run generates the same number of tokens */
    p.on_done = on_done;
    p.on_delta = on_delta;
    p.ud = o;
    int rc = eng_submit(e, &p, NULL);
    cr_assert_eq(rc, 0, "eng_submit: %s", eng_last_error(e));
}

static void wait_all(Engine *e, Out *outs, int n)
{
    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++) all &= outs[i].done;
        if (all) break;
        cr_assert_geq(eng_wait(e), 0, "nothing in flight but not every request is done");
    }
    for (int i = 0; i < n; i++) {
        cr_assert_eq(outs[i].status, 0);
        cr_assert_str_eq(outs[i].streamed, outs[i].text, "streamed text differs from the result");
    }
}

/* Runs the prompts (all at once, or one after the other) and returns stats. */
static void run_set(EngOptions o, int together, int max_tokens, Out *outs, EngStats *st)
{
    memset(outs, 0, NPROMPTS * sizeof *outs);
    Engine *e = start(o);
    if (together) {
        for (int i = 0; i < NPROMPTS; i++) submit_greedy(e, prompts[i], max_tokens, &outs[i]);
        wait_all(e, outs, NPROMPTS);
    } else {
        for (int i = 0; i < NPROMPTS; i++) {
            submit_greedy(e, prompts[i], max_tokens, &outs[i]);
            wait_all(e, &outs[i], 1);
        }
    }
    check_idle_accounting(e);
    if (st) eng_stats(e, st);
    eng_free(e);
}

static void same_outputs(const Out *a, const Out *b, const char *what)
{
    for (int i = 0; i < NPROMPTS; i++) {
        cr_assert_eq(a[i].n_ids, b[i].n_ids, "%s: prompt %d: %d vs %d tokens", what, i, a[i].n_ids, b[i].n_ids);
        for (int j = 0; j < a[i].n_ids; j++)
            cr_assert_eq(a[i].ids[j], b[i].ids[j], "%s: prompt %d differs at token %d:\n  %s\n  %s", what, i, j,
                         a[i].text, b[i].text);
        cr_assert_str_eq(a[i].text, b[i].text);
    }
}

Test(engine, greedy_is_the_same_alone_batched_cached_and_chunked)
{
    enum { MAXT = 12 };
    Out ref[NPROMPTS], got[NPROMPTS];
    EngStats st;
    run_set(opts(0, 512, 2048), 0, MAXT, ref, NULL);
    for (int i = 0; i < NPROMPTS; i++) {
        cr_assert_eq(ref[i].n_ids, MAXT);
        cr_assert_eq(ref[i].finish, ENG_FINISH_LENGTH);
        cr_log_info("prompt %d -> %s", i, ref[i].text);
    }

    run_set(opts(0, 512, 2048), 1, MAXT, got, NULL);
    same_outputs(ref, got, "batched, cache off");

    run_set(opts(1, 512, 2048), 1, MAXT, got, &st);
    same_outputs(ref, got, "batched, cache on");
    cr_assert_gt(st.cached_tokens, 0, "prompts 0-2 share a chat prefix");

    run_set(opts(1, 512, 2048), 0, MAXT, got, NULL);
    same_outputs(ref, got, "one by one, cache on");
    cr_assert_gt(got[1].cached_tokens, 0);

    int chunks[] = {1, 7};
    for (int c = 0; c < 2; c++) {
        char what[64];
        snprintf(what, sizeof what, "batched, cache on, chunk %d", chunks[c]);
        run_set(opts(1, chunks[c], 2048), 1, MAXT, got, NULL);
        same_outputs(ref, got, what);
    }
    run_set(opts(0, 5, 2048), 1, MAXT, got, NULL);
    same_outputs(ref, got, "batched, cache off, chunk 5");
}

Test(engine, retraction_keeps_the_output)
{
    /* A pool too small for all four at once: decode runs out, sequences are
     * retracted and resumed, output unchanged. */
    enum { MAXT = 24 };
    Out ref[NPROMPTS], got[NPROMPTS];
    EngStats st;
    run_set(opts(1, 512, 2048), 0, MAXT, ref, NULL);
    EngOptions o = opts(1, 16, 80);
    o.decode_reserve = 2;   /* admit optimistically */
    run_set(o, 1, MAXT, got, &st);
    same_outputs(ref, got, "small pool");
    cr_log_info("retractions: %llu", (unsigned long long)st.retractions);
    cr_assert_gt(st.retractions, 0, "the pool was meant to force a retraction");
}

static int32_t *encode(const char *text, int *n)
{
    TokIds v = {0};
    cr_assert_eq(tok_encode(tok, text, strlen(text), TOK_ENC_ADD_SPECIAL | TOK_ENC_PARSE_SPECIAL, &v), 0);
    *n = (int)v.n;
    return v.ids;
}

Test(engine, shared_prefix_reports_cached_tokens)
{
    Engine *e = start(opts(1, 512, 2048));
    Out a = {0}, b = {0};
    submit_greedy(e, prompts[0], 4, &a);
    wait_all(e, &a, 1);
    cr_assert_eq(a.cached_tokens, 0);
    submit_greedy(e, prompts[1], 4, &b);
    wait_all(e, &b, 1);
    int na, nb;
    int32_t *ta = encode(prompts[0], &na), *tb = encode(prompts[1], &nb);
    int common = 0;
    while (common < na && common < nb && ta[common] == tb[common]) common++;
    cr_assert_gt(common, 4);
    cr_assert_eq(b.cached_tokens, common, "cached %d, shared prefix %d", b.cached_tokens, common);
    cr_assert_eq(b.prompt_tokens, nb);

    /* The same prompt again: all but its last token (which must be
     * recomputed for its logits) comes from the cache. */
    Out c = {0};
    submit_greedy(e, prompts[1], 4, &c);
    wait_all(e, &c, 1);
    cr_assert_eq(c.cached_tokens, nb - 1);
    cr_assert_eq(memcmp(b.ids, c.ids, sizeof(int32_t) * 4), 0);
    check_idle_accounting(e);
    EngStats st;
    eng_stats(e, &st);
    cr_assert_eq(st.prompt_tokens, (uint64_t)(na + nb + nb));
    cr_assert_eq(st.cached_tokens, (uint64_t)(common + nb - 1));
    cr_assert_float_eq(st.hit_rate, (double)(common + nb - 1) / (na + 2 * nb), 1e-9);
    free(ta);
    free(tb);
    eng_free(e);
}

Test(engine, concurrent_same_prompt_computes_it_once)
{
    /* Like a fork: n requests with one prompt arrive together. The first
     * computes it; the others wait for it and find it cached. */
    enum { N = 4 };
    Engine *e = start(opts(1, 512, 2048));
    Out o[N];
    memset(o, 0, sizeof o);
    for (int i = 0; i < N; i++) submit_greedy(e, prompts[3], 3, &o[i]);
    wait_all(e, o, N);
    int np;
    free(encode(prompts[3], &np));
    EngStats st;
    eng_stats(e, &st);
    cr_assert_eq(st.prompt_tokens, (uint64_t)(N * np));
    cr_assert_eq(st.cached_tokens, (uint64_t)((N - 1) * (np - 1)), "cached %llu",
                 (unsigned long long)st.cached_tokens);
    /* prompt once, its last token once per other branch, 3 tokens each
     * minus the last one sampled (never computed) */
    cr_assert_eq(st.computed_tokens, (uint64_t)(np + (N - 1) + N * 2));
    for (int i = 1; i < N; i++) cr_assert_eq(memcmp(o[0].ids, o[i].ids, 3 * sizeof(int32_t)), 0);
    check_idle_accounting(e);
    eng_free(e);
}

/* ---- scoring ---------------------------------------------------------------- */

typedef struct {
    int done, status;
    int n;
    int len[4];
    int32_t toks[4][16];
    float lp[4][16], ulp[4][16];
    int has_u;
    double scores[3][4];
    int best[3];
    int cached, prompt;
} Score;

static void on_score(void *ud, const EngScoreResult *r)
{
    Score *s = ud;
    s->done = 1;
    s->status = r->status;
    if (r->status) return;
    s->n = r->n_choices;
    s->cached = r->cached_tokens;
    s->prompt = r->prompt_tokens;
    for (int i = 0; i < r->n_choices; i++) {
        s->len[i] = r->n_tokens[i];
        memcpy(s->toks[i], r->tokens[i], (size_t)r->n_tokens[i] * sizeof(int32_t));
        memcpy(s->lp[i], r->logprobs[i], (size_t)r->n_tokens[i] * sizeof(float));
        if (r->unconditional) memcpy(s->ulp[i], r->unconditional[i], (size_t)r->n_tokens[i] * sizeof(float));
    }
    s->has_u = r->unconditional != NULL;
    for (int m = 0; m < 3; m++) {
        s->best[m] = eng_select_scores(r, (EngSelectMethod)m, s->scores[m]);
        if (m == 2 && !r->unconditional) cr_assert_eq(s->best[m], ERR_ARG);
    }
}

static const char *score_prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\nThe capital of France is";
static const char *choices[] = {" Paris", " London", " Berlin and Rome", " a city"};

typedef struct {
    int done;
    float lp[64];
    int n;
} InLp;

static void on_inlp(void *ud, const EngResult *r)
{
    InLp *x = ud;
    x->done = 1;
    cr_assert_eq(r->status, 0);
    x->n = r->n_input_logprobs;
    memcpy(x->lp, r->input_logprobs, (size_t)r->n_input_logprobs * sizeof(float));
}

static void input_logprobs(Engine *e, const int32_t *seq, int n, int from, InLp *x)
{
    EngGenParams p;
    eng_gen_params_default(&p);
    p.prompt_ids = seq;
    p.n_prompt_ids = n;
    p.sampling.max_tokens = 0;
    p.input_logprobs_from = from;
    p.on_done = on_inlp;
    p.ud = x;
    memset(x, 0, sizeof *x);
    cr_assert_eq(eng_submit(e, &p, NULL), 0, "%s", eng_last_error(e));
    while (!x->done) cr_assert_geq(eng_wait(e), 0);
}

static void run_score(Engine *e, const char *prompt, int unconditional, Score *s)
{
    EngScoreParams p = {.prompt_text = prompt, .prompt_len = strlen(prompt), .choices = choices, .n_choices = 4,
                        .unconditional = unconditional, .on_done = on_score, .ud = s};
    memset(s, 0, sizeof *s);
    cr_assert_eq(eng_score(e, &p, NULL), 0, "%s", eng_last_error(e));
    while (!s->done) cr_assert_geq(eng_wait(e), 0);
    cr_assert_eq(s->status, 0);
}

Test(engine, select_agrees_with_scoring_each_choice_separately)
{
    Engine *ec = start(opts(1, 512, 2048));
    Score s;
    run_score(ec, score_prompt, 1, &s);
    cr_assert_eq(s.n, 4);
    cr_assert(s.has_u);
    EngStats st;
    eng_stats(ec, &st);
    int np;
    int32_t *pt = encode(score_prompt, &np);
    /* prompt once, then each choice sequence recomputes only the last
     * prompt token (its logits) and its own tokens; the unconditional
     * sequences are the choices alone */
    long choice_tokens = 0, uncond = 0;
    for (int i = 0; i < 4; i++) {
        choice_tokens += s.len[i];
        if (s.len[i] > 1) uncond += s.len[i];
    }
    cr_assert_eq(st.computed_tokens, (uint64_t)(np + 4 + choice_tokens + uncond), "computed %llu",
                 (unsigned long long)st.computed_tokens);
    check_idle_accounting(ec);

    /* The reference: every choice scored on its own by an engine without
     * the cache, as input logprobs of prompt + choice. */
    Engine *ea = start(opts(0, 512, 2048));
    for (int i = 0; i < 4; i++) {
        int32_t seq[256];
        memcpy(seq, pt, (size_t)np * sizeof *seq);
        memcpy(seq + np, s.toks[i], (size_t)s.len[i] * sizeof *seq);
        InLp x;
        input_logprobs(ea, seq, np + s.len[i], np, &x);
        cr_assert_eq(x.n, s.len[i]);
        for (int j = 0; j < s.len[i]; j++)
            cr_assert_float_eq(x.lp[j], s.lp[i][j], 1e-6, "choice %d token %d: %g vs %g", i, j, x.lp[j], s.lp[i][j]);
        /* unconditional: the choice alone, from its second token */
        if (s.len[i] > 1) {
            input_logprobs(ea, s.toks[i], s.len[i], 1, &x);
            cr_assert_eq(x.n, s.len[i] - 1);
            cr_assert_float_eq(s.ulp[i][0], 0.0f, 0);
            for (int j = 1; j < s.len[i]; j++) cr_assert_float_eq(x.lp[j - 1], s.ulp[i][j], 1e-6);
        }
    }
    /* the three methods, recomputed by hand */
    int best_mean = 0, best_first = 0, best_u = 0;
    double mean[4], first[4], u[4];
    for (int i = 0; i < 4; i++) {
        double sm = 0, su = 0;
        for (int j = 0; j < s.len[i]; j++) {
            sm += s.lp[i][j];
            su += s.lp[i][j] - s.ulp[i][j];
        }
        mean[i] = sm / s.len[i];
        u[i] = su / s.len[i];
        first[i] = s.lp[i][0];
        cr_assert_float_eq(s.scores[0][i], mean[i], 1e-12);
        cr_assert_float_eq(s.scores[2][i], u[i], 1e-12);
        cr_assert_float_eq(s.scores[1][i], first[i], 1e-12);
        if (mean[i] > mean[best_mean]) best_mean = i;
        if (first[i] > first[best_first]) best_first = i;
        if (u[i] > u[best_u]) best_u = i;
    }
    cr_assert_eq(s.best[0], best_mean);
    cr_assert_eq(s.best[1], best_first);
    cr_assert_eq(s.best[2], best_u);
    cr_assert_eq(best_mean, 0, "\" Paris\" should win token_length_normalized (scores %g %g %g %g)", mean[0],
                 mean[1], mean[2], mean[3]);

    /* And the same numbers with the cache off (no shared prefill). */
    Score s2;
    run_score(ea, score_prompt, 0, &s2);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < s.len[i]; j++) cr_assert_float_eq(s.lp[i][j], s2.lp[i][j], 1e-6);
    check_idle_accounting(ea);
    free(pt);
    eng_free(ea);
    eng_free(ec);
}

Test(engine, greedy_token_breaks_ties_on_later_tokens)
{
    /* SGLang's greedy_token: equal first tokens compare the next ones; a
     * shorter choice stands in with its mean. */
    float a[3] = {-1, -2, -9}, b[3] = {-1, -1.5f, -9}, c[1] = {-1};
    const float *lps[3] = {a, b, c};
    int n[3] = {3, 3, 1};
    EngScoreResult r = {.n_choices = 3, .n_tokens = n, .logprobs = lps};
    double sc[3];
    cr_assert_eq(eng_select_scores(&r, ENG_SELECT_GREEDY_TOKEN, sc), 2, "c's mean -1 beats -1.5 at column 2");
    c[0] = -1.6f;
    cr_assert_eq(eng_select_scores(&r, ENG_SELECT_GREEDY_TOKEN, sc), 1);
    cr_assert_float_eq(sc[0], -1.0, 1e-9);
    cr_assert_eq(eng_select_scores(&r, ENG_SELECT_UNCONDITIONAL_LIKELIHOOD_NORMALIZED, sc), ERR_ARG);
}

/* ---- stops, streaming, cancel, errors ----------------------------------------- */

Test(engine, stop_strings_cut_the_text)
{
    Engine *e = start(opts(1, 512, 2048));
    Out free_run = {0}, stopped = {0};
    submit_greedy(e, prompts[3], 24, &free_run);
    wait_all(e, &free_run, 1);
    cr_assert_gt(free_run.len, 8);
    /* stop at a piece of the text the model produced anyway */
    char stop[8];
    memcpy(stop, free_run.text + 5, 3);
    stop[3] = 0;
    const char *cut = strstr(free_run.text, stop);
    cr_assert_not_null(cut);
    EngGenParams p;
    eng_gen_params_default(&p);
    p.prompt_text = prompts[3];
    p.prompt_len = strlen(prompts[3]);
    p.sampling.temperature = 0;
    p.sampling.max_tokens = 24;
    p.sampling.ignore_eos = 1;
    const char *stops[] = {"never appears", stop};
    p.stop = stops;
    p.n_stop = 2;
    p.on_done = on_done;
    p.on_delta = on_delta;
    p.ud = &stopped;
    cr_assert_eq(eng_submit(e, &p, NULL), 0);
    wait_all(e, &stopped, 1);
    cr_assert_eq(stopped.finish, ENG_FINISH_STOP);
    cr_assert_eq(stopped.len, (size_t)(cut - free_run.text), "text '%s' stop '%s'", stopped.text, stop);
    cr_assert_eq(strncmp(stopped.text, free_run.text, stopped.len), 0);
    cr_assert_lt(stopped.n_ids, 24);
    cr_assert_leq(stopped.text_ids, stopped.n_ids);
    check_idle_accounting(e);
    eng_free(e);
}

Test(engine, eos_and_stop_ids_finish)
{
    Engine *e = start(opts(1, 512, 2048));
    Out a = {0};
    EngGenParams p;
    eng_gen_params_default(&p);
    p.prompt_text = prompts[0];
    p.prompt_len = strlen(prompts[0]);
    p.sampling.temperature = 0;
    p.sampling.max_tokens = 64;
    p.on_done = on_done;
    p.on_delta = on_delta;
    p.ud = &a;
    cr_assert_eq(eng_submit(e, &p, NULL), 0);
    wait_all(e, &a, 1);
    cr_assert_eq(a.finish, ENG_FINISH_EOS, "'%s' (%d tokens)", a.text, a.n_ids);
    cr_assert(tok_is_eog(tok, a.ids[a.n_ids - 1]));
    cr_assert_eq(a.text_ids, a.n_ids - 1, "the EOS token is not in the text");
    cr_assert_str_eq(a.text, "The capital of France is Paris.");

    /* stop at the third generated token by id */
    Out b = {0};
    int32_t third = a.ids[2];
    p.sampling.stop_ids = &third;
    p.sampling.n_stop = 1;
    p.ud = &b;
    cr_assert_eq(eng_submit(e, &p, NULL), 0);
    wait_all(e, &b, 1);
    cr_assert_eq(b.finish, ENG_FINISH_STOP);
    cr_assert_eq(b.n_ids, 3);

    /* logprobs: one per token, each <= 0 */
    Out c = {0};
    p.sampling.stop_ids = NULL;
    p.sampling.n_stop = 0;
    p.sampling.logprobs = 1;
    p.ud = &c;
    cr_assert_eq(eng_submit(e, &p, NULL), 0);
    wait_all(e, &c, 1);
    cr_assert_eq(c.n_lp, c.n_ids);
    for (int i = 0; i < c.n_lp; i++) cr_assert_leq(c.lp[i], 0.0f);
    cr_assert_gt(c.lp[0], -1.0f, "greedy picks are likely ones");
    eng_free(e);
}

typedef struct {
    Engine *e;
    uint64_t id;
    Out out;
    int cancelled;
} CancelCtx;

static void cancel_on_delta(void *ud, const EngDelta *d)
{
    CancelCtx *c = ud;
    on_delta(&c->out, d);
    if (!c->cancelled) {
        c->cancelled = 1;
        cr_assert_eq(eng_cancel(c->e, c->id), 0);
    }
}

static void cancel_on_done(void *ud, const EngResult *r) { on_done(&((CancelCtx *)ud)->out, r); }

Test(engine, cancel_stops_a_request_and_frees_its_slots)
{
    Engine *e = start(opts(1, 512, 2048));
    CancelCtx c = {.e = e};
    EngGenParams p;
    eng_gen_params_default(&p);
    p.prompt_text = prompts[3];
    p.prompt_len = strlen(prompts[3]);
    p.sampling.temperature = 0;
    p.sampling.max_tokens = 2000;
    p.sampling.ignore_eos = 1;
    p.on_done = cancel_on_done;
    p.on_delta = cancel_on_delta;
    p.ud = &c;
    cr_assert_eq(eng_submit(e, &p, &c.id), 0);
    while (!c.out.done) cr_assert_geq(eng_wait(e), 0);
    cr_assert_eq(c.out.finish, ENG_FINISH_CANCELLED);
    cr_assert_lt(c.out.n_ids, 2000);
    cr_assert_eq(eng_cancel(e, c.id), ERR_NOT_FOUND);
    cr_assert_eq(eng_wait(e), -1, "nothing in flight");
    check_idle_accounting(e);
    EngStats st;
    eng_stats(e, &st);
    cr_assert_gt(st.kv.cached, 0, "the cancelled request's tokens stay cached");
    eng_free(e);
}

Test(engine, freeing_the_engine_cancels_what_is_in_flight)
{
    Engine *e = start(opts(1, 512, 2048));
    Out o[2];
    memset(o, 0, sizeof o);
    submit_greedy(e, prompts[0], 1000, &o[0]);
    submit_greedy(e, prompts[1], 1000, &o[1]);
    eng_free(e);
    for (int i = 0; i < 2; i++) {
        cr_assert(o[i].done, "on_done fires exactly once, also at eng_free");
        cr_assert_eq(o[i].finish, ENG_FINISH_CANCELLED);
    }
}

Test(engine, refused_requests_never_call_back)
{
    Engine *e = start(opts(1, 512, 64));
    char big[2048];
    for (int i = 0; i < 2047; i++) big[i] = "abc def "[i % 8];
    big[2047] = 0;
    Out o = {0};
    EngGenParams p;
    eng_gen_params_default(&p);
    p.prompt_text = big;
    p.prompt_len = strlen(big);
    p.on_done = on_done;
    p.ud = &o;
    cr_assert_eq(eng_submit(e, &p, NULL), ERR_TOO_LONG);
    cr_assert(strstr(eng_last_error(e), "does not fit"), "%s", eng_last_error(e));
    int32_t bad = 1 << 30;
    p.prompt_ids = &bad;
    p.n_prompt_ids = 1;
    cr_assert_eq(eng_submit(e, &p, NULL), ERR_ARG);
    p.on_done = NULL;
    cr_assert_eq(eng_submit(e, &p, NULL), ERR_ARG);
    cr_assert_eq(eng_wait(e), -1);
    cr_assert_eq(o.done, 0);
    cr_assert_eq(eng_cancel(e, 12345), ERR_NOT_FOUND);
    eng_free(e);
}

Test(engine, prefill_only_request_of_a_cached_prompt_finishes_at_once)
{
    Engine *e = start(opts(1, 512, 2048));
    int n;
    int32_t *ids = encode(prompts[2], &n);
    for (int round = 0; round < 2; round++) {
        Out o = {0};
        EngGenParams p;
        eng_gen_params_default(&p);
        p.prompt_ids = ids;
        p.n_prompt_ids = n;
        p.sampling.max_tokens = 0;
        p.on_done = on_done;
        p.ud = &o;
        cr_assert_eq(eng_submit(e, &p, NULL), 0);
        wait_all(e, &o, 1);
        cr_assert_eq(o.n_ids, 0);
        cr_assert_eq(o.cached_tokens, round ? n : 0);
    }
    EngStats st;
    eng_stats(e, &st);
    cr_assert_eq(st.computed_tokens, (uint64_t)n);
    free(ids);
    eng_free(e);
}

/* ---- libuv delivery ---------------------------------------------------------- */

typedef struct {
    Out out;
    uv_loop_t *loop;
    int on_loop_thread;
    uv_thread_t loop_thread;
} UvCtx;

static void uv_done(void *ud, const EngResult *r)
{
    UvCtx *c = ud;
    uv_thread_t self = uv_thread_self();
    c->on_loop_thread = uv_thread_equal(&self, &c->loop_thread);
    on_done(&c->out, r);
    uv_stop(c->loop);
}

/* Decode first: a prompt that arrives while another sequence decodes
 * joins its steps ENG_MIN_MIXED_PROMPT tokens at a time when the pace's
 * target is below any step's cost, in one chunk with the pace off; the
 * outputs are the same either way (batch-invariant). */
static void run_beside_a_decode(double itl_target_ms, Out *a, Out *b, EngStats *st, int *n_prompt_b)
{
    EngOptions o = opts(1, 512, 2048);
    o.itl_target_ms = itl_target_ms;
    Engine *e = start(o);
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    submit_greedy(e, prompts[3], 64, a);
    while (a->n_deltas == 0) {   /* until A decodes (its prefill step is measured by then) */
        cr_assert_geq(eng_in_flight(e), 1);
        eng_poll(e);
        usleep(1000);
    }
    static const char long_prompt[] =
        "<|im_start|>user\nList the planets of the solar system in order from the sun, and for each "
        "one give its size compared with the earth, how many moons it has, how long its year lasts, "
        "what its surface or atmosphere is made of, and one fact that most people do not know about "
        "it. Then say which planet you would visit first and why, in two sentences.<|im_end|>\n"
        "<|im_start|>assistant\n";
    submit_greedy(e, long_prompt, 8, b);
    while (!a->done || !b->done) cr_assert_geq(eng_wait(e), 0);
    cr_assert_eq(a->status, 0);
    cr_assert_eq(b->status, 0);
    eng_stats(e, st);
    *n_prompt_b = b->prompt_tokens;
    check_idle_accounting(e);
    eng_free(e);
}

Test(engine, prompts_join_decodes_at_the_pace)
{
    Out a_slow, b_slow, a_off, b_off;
    EngStats paced, off;
    int n_b, n_b_off;
    run_beside_a_decode(1e-6, &a_slow, &b_slow, &paced, &n_b);
    run_beside_a_decode(0, &a_off, &b_off, &off, &n_b_off);
    cr_assert_gt(n_b, 4 * ENG_MIN_MIXED_PROMPT, "the second prompt is long (%d tokens)", n_b);
    cr_assert_eq(paced.mixed_prompt_max, ENG_MIN_MIXED_PROMPT, "paced: %d prompt tokens beside a decode",
                 paced.mixed_prompt_max);
    cr_assert_geq(paced.mixed_steps, (uint64_t)(n_b - 1) / ENG_MIN_MIXED_PROMPT, "paced: %d mixed steps for %d tokens",
                  (int)paced.mixed_steps, n_b);
    cr_assert_eq(off.mixed_steps, 1, "off: the whole prompt in one step beside the decode");
    cr_assert_eq(off.mixed_prompt_max, n_b_off);
    cr_assert_eq(a_slow.n_ids, a_off.n_ids);
    cr_assert_eq(memcmp(a_slow.ids, a_off.ids, sizeof(int32_t) * (size_t)a_off.n_ids), 0, "the decode's tokens");
    cr_assert_eq(memcmp(b_slow.ids, b_off.ids, sizeof(int32_t) * (size_t)b_off.n_ids), 0, "the prompt's tokens");
}

/* Every step that publishes something wakes the consumer. A consumer that
 * drains at once frees the queue's last event during the next step, and
 * the step's new event may get the same address: "the queue's tail
 * moved" then reads "nothing new", and the delta waited a whole step for
 * the next wake (a server streamed tokens two at a time). */
static atomic_int n_notified;
static void count_notify(void *ud) { atomic_fetch_add(&n_notified, 1); }

Test(engine, every_step_with_output_notifies_the_consumer)
{
    EngOptions o = opts(1, 512, 2048);
    o.notify = count_notify;
    atomic_store(&n_notified, 0);
    Engine *e = start(o);
    Out out = {0};
    submit_greedy(e, prompts[3], 48, &out);
    wait_all(e, &out, 1);   /* eng_wait drains each event as soon as it is published */
    cr_assert_eq(out.n_ids, 48);
    EngStats st;
    eng_stats(e, &st);
    /* each step adds a token and publishes its delta (the last one its
     * completion too), then wakes the consumer; eng_wait may return on the
     * last events before that wake, so it is waited for (not a timing
     * condition: without a wake the count never gets there) */
    for (int i = 0; i < 10000 && atomic_load(&n_notified) < (int)st.steps; i++) usleep(1000);
    cr_assert_eq(atomic_load(&n_notified), (int)st.steps, "%d wakes for %d steps (%d deltas)",
                 atomic_load(&n_notified), (int)st.steps, out.n_deltas);
    eng_free(e);
}

Test(engine, completions_arrive_on_the_uv_loop)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    EngOptions o = opts(1, 512, 2048);
    o.loop = &loop;
    Engine *e = start(o);
    UvCtx c = {.loop = &loop, .loop_thread = uv_thread_self()};
    EngGenParams p;
    eng_gen_params_default(&p);
    p.prompt_text = prompts[0];
    p.prompt_len = strlen(prompts[0]);
    p.sampling.temperature = 0;
    p.sampling.max_tokens = 4;
    p.on_done = uv_done;
    p.ud = &c;
    cr_assert_eq(eng_submit(e, &p, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(c.out.done);
    cr_assert(c.on_loop_thread);
    cr_assert_eq(c.out.n_ids, 4);
    eng_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);   /* lets the async handle close */
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* ---- the VM's backend ---------------------------------------------------------- */

static void rt_params(RtGenParams *p, int max_tokens)
{
    memset(p, 0, sizeof *p);
    p->max_tokens = max_tokens;
    p->temperature = 0;
    p->top_p = 1;
    p->top_k = -1;
    p->repetition_penalty = 1;
}

typedef struct {
    int done, status;
    char text[1024];
    int cached, prompt, completion;
    int best;
    double scores[4];
    const char *finish;
    RtTokens *tokens;       /* what the VM would keep on the state (held) */
} RtOut;

static void rt_on_gen(void *ud, const RtGenResult *r)
{
    RtOut *o = ud;
    o->done = 1;
    o->status = r->status;
    snprintf(o->text, sizeof o->text, "%.*s", (int)r->len, r->text ? r->text : "");
    o->cached = r->cached_tokens;
    o->prompt = r->prompt_tokens;
    o->completion = r->completion_tokens;
    o->finish = r->finish_reason;
    o->tokens = r->tokens;
    if (o->tokens) o->tokens->retain(o->tokens);
}

static void rt_out_free(RtOut *o)
{
    if (o->tokens) o->tokens->release(o->tokens);
    o->tokens = NULL;
}

/* Runs one gen through the backend to completion. */
static void rt_gen(RtBackend *be, const char *text, RtTokens *tokens, int max_tokens, RtOut *o)
{
    RtGenParams gp;
    rt_params(&gp, max_tokens);
    RtPrompt pr = {.text = text, .len = strlen(text), .tokens = tokens};
    memset(o, 0, sizeof *o);
    cr_assert_eq(be->gen(be->ctx, &pr, &gp, rt_on_gen, o), 0, "%s", be->last_error);
    while (!o->done) cr_assert_eq(be->wait(be->ctx), 0);
    cr_assert_eq(o->status, 0);
}

/* Tokens of text as the backend tokenizes a prompt's rest (no BOS). */
static int n_tokens(const char *text, unsigned flags)
{
    TokIds v = {0};
    cr_assert(tok_encode(tok, text, strlen(text), flags, &v) >= 0);
    int n = (int)v.n;
    tok_ids_free(&v);
    return n;
}

static void rt_on_select(void *ud, const RtSelectResult *r)
{
    RtOut *o = ud;
    o->done = 1;
    o->status = r->status;
    o->best = r->best;
    for (int i = 0; i < r->nscores && i < 4; i++) o->scores[i] = r->scores[i];
}

Test(engine, rt_backend_gen_select_and_token_reuse)
{
    Engine *e = start(opts(1, 512, 2048));
    char err[256];
    RtEngineOptions ro = {.token_cache_entries = 0};
    RtEngine *r = rt_engine_new(e, &ro, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    RtBackend *be = rt_engine_backend(r);
    const char *tmpl = be->chat_template(be->ctx);
    cr_assert(tmpl && strstr(tmpl, "<|im_start|>"), "SmolLM2 ships a ChatML template");
    cr_assert_eq(be->wait(be->ctx), -1);

    /* gen */
    char state[4096];
    snprintf(state, sizeof state, "%s", prompts[3]);
    RtGenParams gp;
    rt_params(&gp, 10);
    RtOut a = {0};
    RtPrompt pr = {.text = state, .len = strlen(state)};
    cr_assert_eq(be->gen(be->ctx, &pr, &gp, rt_on_gen, &a), 0, "%s", be->last_error);
    cr_assert_eq(rt_engine_pending(r), 1);
    while (!a.done) cr_assert_eq(be->wait(be->ctx), 0);
    cr_assert_eq(a.status, 0);
    cr_assert_eq(a.completion, 10);
    cr_assert_not_null(a.tokens, "a finished gen hands the state a token record");

    /* the VM appends the text and continues with the state's record: the
     * prompt's tokens are the previous prompt's plus the generated ones, all
     * cached but the last generated token (never computed) */
    strncat(state, a.text, sizeof state - strlen(state) - 1);
    RtOut b = {0};
    pr.text = state;
    pr.len = strlen(state);
    pr.tokens = a.tokens;
    cr_assert_eq(be->gen(be->ctx, &pr, &gp, rt_on_gen, &b), 0, "%s", be->last_error);
    while (!b.done) cr_assert_eq(be->wait(be->ctx), 0);
    cr_assert_eq(b.prompt, a.prompt + 10, "prompt %d = %d + 10 generated ids", b.prompt, a.prompt);
    cr_assert_eq(b.cached, a.prompt + 9);
    rt_out_free(&a);
    rt_out_free(&b);

    /* select: best is " Paris" */
    RtOut s = {0};
    RtPrompt sp = {.text = score_prompt, .len = strlen(score_prompt)};
    cr_assert_eq(be->select(be->ctx, &sp, choices, 4, RT_SELECT_TOKEN_LENGTH_NORMALIZED, rt_on_select, &s), 0,
                 "%s", be->last_error);
    while (!s.done) cr_assert_eq(be->wait(be->ctx), 0);
    cr_assert_eq(s.status, 0);
    cr_assert_eq(s.best, 0);
    for (int m = 1; m < 3; m++) {
        RtOut t = {0};
        cr_assert_eq(be->select(be->ctx, &sp, choices, 4, (RtSelectMethod)m, rt_on_select, &t), 0);
        while (!t.done) cr_assert_eq(be->wait(be->ctx), 0);
        cr_assert_eq(t.status, 0);
        cr_assert(t.best >= 0 && t.best < 4);
    }

    /* gen with choices runs as select */
    RtOut c = {0};
    rt_params(&gp, 10);
    gp.constraint = RT_CONSTRAINT_CHOICES;
    gp.choices = choices;
    gp.nchoices = 4;
    cr_assert_eq(be->gen(be->ctx, &sp, &gp, rt_on_gen, &c), 0);
    while (!c.done) cr_assert_eq(be->wait(be->ctx), 0);
    cr_assert_str_eq(c.text, " Paris");

    /* a regex constraint shapes the output; a bad one is refused with a
     * message naming it, and no callback fires */
    RtOut d = {0};
    gp.constraint = RT_CONSTRAINT_REGEX;
    gp.constraint_src = "[0-9]{1,3}";
    gp.constraint_len = strlen(gp.constraint_src);
    cr_assert_eq(be->gen(be->ctx, &sp, &gp, rt_on_gen, &d), 0, "%s", be->last_error);
    while (!d.done) cr_assert_eq(be->wait(be->ctx), 0);
    cr_assert(strlen(d.text) >= 1 && strlen(d.text) <= 3 && strspn(d.text, "0123456789") == strlen(d.text), "%s", d.text);
    RtOut d2 = {0};
    gp.constraint_src = "(a)\\1";
    gp.constraint_len = strlen(gp.constraint_src);
    cr_assert_neq(be->gen(be->ctx, &sp, &gp, rt_on_gen, &d2), 0);
    cr_assert(strstr(be->last_error, "backreference"), "%s", be->last_error);
    cr_assert_eq(be->wait(be->ctx), -1);
    cr_assert_eq(d2.done, 0);
    rt_out_free(&c);
    rt_out_free(&d);

    rt_engine_free(r);
    check_idle_accounting(e);
    eng_free(e);
}

/* The state's token record: which prompts reuse which recorded ids, and
 * which are tokenized whole. */
Test(engine, rt_backend_token_records_follow_the_state)
{
    Engine *e = start(opts(1, 512, 4096));
    char err[256];
    RtEngine *r = rt_engine_new(e, NULL, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    RtBackend *be = rt_engine_backend(r);
    const unsigned whole = TOK_ENC_ADD_SPECIAL | TOK_ENC_PARSE_SPECIAL, rest = TOK_ENC_PARSE_SPECIAL;

    /* p0 -> record A: mark at p0 + g0 */
    char p0[1024], s1[4096], s2[4096], s3[4096];
    snprintf(p0, sizeof p0, "%s", prompts[3]);
    RtOut a, b, c, d;
    rt_gen(be, p0, NULL, 6, &a);
    cr_assert_eq(a.prompt, n_tokens(p0, whole));
    /* p0 + g0 + q -> record B: marks at p0 + g0 and at s1 + g1 */
    snprintf(s1, sizeof s1, "%s%s The end.", p0, a.text);
    rt_gen(be, s1, a.tokens, 6, &b);
    cr_assert_eq(b.prompt, a.prompt + a.completion + n_tokens(" The end.", rest));
    /* the state was not appended to after the second gen (`let x = gen()`),
     * and goes on from p0 + g0: the first mark is reused, not the second */
    snprintf(s2, sizeof s2, "%s%s Then", p0, a.text);
    rt_gen(be, s2, b.tokens, 4, &c);
    cr_assert_eq(c.prompt, a.prompt + a.completion + n_tokens(" Then", rest));
    /* a text that no mark starts is tokenized whole */
    snprintf(s3, sizeof s3, "%sX", p0);
    rt_gen(be, s3, c.tokens, 4, &d);
    cr_assert_eq(d.prompt, n_tokens(s3, whole));
    rt_out_free(&d);

    /* another RtEngine over the same engine does not trust this one's records */
    RtEngine *r2 = rt_engine_new(e, NULL, err, sizeof err);
    cr_assert_not_null(r2, "%s", err);
    snprintf(s2, sizeof s2, "%s%s", p0, a.text);
    rt_gen(rt_engine_backend(r2), s2, a.tokens, 2, &d);
    cr_assert_eq(d.prompt, n_tokens(s2, whole));
    rt_out_free(&d);
    rt_engine_free(r2);

    /* a record outlives its RtEngine (the VM frees states later) */
    rt_engine_free(r);
    rt_out_free(&a);
    rt_out_free(&b);
    rt_out_free(&c);
    check_idle_accounting(e);
    eng_free(e);
}

/* ---- the VM's request types as the engine's (no model needed) ------------------- */

Test(rt_engine, sampling_params_from_the_vm_request)
{
    RtGenParams rt;
    memset(&rt, 0, sizeof rt);
    rt.temperature = 0.7;
    rt.top_p = 0.9;
    rt.top_k = -1;
    rt.min_p = 0.05;
    rt.repetition_penalty = 1.1;
    rt.has_seed = 1;
    rt.seed = 17;
    rt.max_tokens = 32;
    rt.top_logprobs = 3;
    SampParams p;
    samp_params_default(&p);
    rt_engine_sampling(&p, &rt);
    cr_assert_eq(p.top_k, 0);
    cr_assert_float_eq(p.top_p, 0.9f, 1e-7);
    cr_assert_float_eq(p.temperature, 0.7f, 1e-7);
    cr_assert_eq(p.seed, 17);
    cr_assert_eq(p.max_tokens, 32);
    cr_assert_eq(p.top_logprobs, 3);
}

typedef struct {
    int done, n, k;
    float lp[256];
    SampTokLogprob top[256 * 4];
} InTop;

static void on_intop(void *ud, const EngResult *r)
{
    InTop *x = ud;
    x->done = 1;
    cr_assert_eq(r->status, 0);
    x->n = r->n_input_logprobs;
    x->k = r->input_top_per_token;
    memcpy(x->lp, r->input_logprobs, (size_t)x->n * sizeof(float));
    if (r->input_top) memcpy(x->top, r->input_top, (size_t)x->n * (size_t)x->k * sizeof *x->top);
}

Test(engine, input_top_logprobs_rank_the_prompt_positions)
{
    Engine *e = start(opts(1, 512, 2048));
    int np;
    int32_t *pt = encode(score_prompt, &np);
    cr_assert_leq(np, 256);
    InLp plain;
    input_logprobs(e, pt, np, 1, &plain);
    EngGenParams p;
    eng_gen_params_default(&p);
    p.prompt_ids = pt;
    p.n_prompt_ids = np;
    p.sampling.max_tokens = 0;
    p.input_logprobs_from = 1;
    p.input_top_logprobs = 4;
    p.on_done = on_intop;
    static InTop x;
    memset(&x, 0, sizeof x);
    p.ud = &x;
    cr_assert_eq(eng_submit(e, &p, NULL), 0, "%s", eng_last_error(e));
    while (!x.done) cr_assert_geq(eng_wait(e), 0);
    cr_assert_eq(x.n, np - 1);
    cr_assert_eq(x.k, 4);
    for (int i = 0; i < x.n; i++) {
        cr_assert_float_eq(x.lp[i], plain.lp[i], 0, "position %d: the same logprob with alternatives asked", i + 1);
        const SampTokLogprob *t = &x.top[i * 4];
        for (int j = 0; j < 4; j++) {
            cr_assert_leq(t[j].logprob, 0.0f);
            if (j) cr_assert_geq(t[j - 1].logprob, t[j].logprob);
            if (t[j].id == pt[i + 1]) cr_assert_float_eq(t[j].logprob, x.lp[i], 1e-6);
        }
        cr_assert_geq(t[0].logprob, x.lp[i] - 1e-6f, "the best alternative is at least the actual token");
    }
    free(pt);
    eng_free(e);
}
