/* tests/unit/test_sampler.c — the sampling chain, penalties, logprobs, stops. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sampler.h"

/* Deterministic pseudo-random logits (the tests own RNG, not the sampler's). */
static void fill_logits(float *v, size_t n, uint64_t seed, float scale)
{
    SampRng r;
    samp_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) v[i] = (float)((samp_rng_uniform(&r) * 2 - 1) * scale);
}

static int32_t argmax(const float *v, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return (int32_t)b;
}

static Sampler *mk(const SampParams *p, int n_vocab)
{
    char err[256] = "";
    Sampler *s = samp_new(p, n_vocab, err, sizeof err);
    cr_assert_not_null(s, "samp_new: %s", err);
    return s;
}

Test(sampler, rng_is_deterministic_and_uniform)
{
    SampRng a, b;
    samp_rng_seed(&a, 42);
    samp_rng_seed(&b, 42);
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        uint64_t x = samp_rng_next(&a);
        cr_assert_eq(x, samp_rng_next(&b));
    }
    samp_rng_seed(&a, 7);
    for (int i = 0; i < 100000; i++) {
        double u = samp_rng_uniform(&a);
        cr_assert(u >= 0.0 && u < 1.0);
        sum += u;
    }
    cr_assert(fabs(sum / 100000 - 0.5) < 0.01);
}

Test(sampler, greedy_is_argmax_with_lowest_id_on_ties)
{
    float l[6] = { 0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 3.0f };
    SampParams p;
    samp_params_default(&p);
    p.temperature = 0;
    Sampler *s = mk(&p, 6);
    SampWork *w = samp_work_new(6);
    cr_assert_eq(samp_sample(s, w, l, NULL, NULL), 1);
    samp_free(s);
    samp_work_free(w);
}

Test(sampler, top_k_1_and_tiny_top_p_and_min_p_1_equal_greedy)
{
    enum { V = 5000 };
    float *l = malloc(V * sizeof *l);
    SampWork *w = samp_work_new(V);
    for (int trial = 0; trial < 20; trial++) {
        fill_logits(l, V, 100 + trial, 8.0f);
        int32_t g = argmax(l, V);
        SampParams p;
        samp_params_default(&p);
        p.has_seed = 1;
        p.seed = trial;
        p.temperature = 1.3f;

        p.top_k = 1;
        Sampler *s = mk(&p, V);
        cr_assert_eq(samp_sample(s, w, l, NULL, NULL), g);
        samp_free(s);

        p.top_k = 0;
        p.top_p = 1e-9f;
        s = mk(&p, V);
        cr_assert_eq(samp_sample(s, w, l, NULL, NULL), g);
        samp_free(s);

        p.top_p = 1.0f;
        p.min_p = 1.0f;
        s = mk(&p, V);
        cr_assert_eq(samp_sample(s, w, l, NULL, NULL), g);
        samp_free(s);
    }
    samp_work_free(w);
    free(l);
}

Test(sampler, same_seed_same_tokens_other_seed_differs)
{
    enum { V = 1000, N = 64 };
    float l[V];
    fill_logits(l, V, 5, 2.0f);
    SampWork *w = samp_work_new(V);
    int32_t a[N], b[N], c[N];
    for (int run = 0; run < 3; run++) {
        SampParams p;
        samp_params_default(&p);
        p.has_seed = 1;
        p.seed = run == 2 ? 1235 : 1234;
        p.top_p = 0.95f;
        p.top_k = 200;
        Sampler *s = mk(&p, V);
        int32_t *dst = run == 0 ? a : run == 1 ? b : c;
        for (int i = 0; i < N; i++) {
            dst[i] = samp_sample(s, w, l, NULL, NULL);
            cr_assert(dst[i] >= 0);
            cr_assert_eq(samp_accept(s, dst[i]), SAMP_CONTINUE);
        }
        samp_free(s);
    }
    cr_assert_arr_eq(a, b, sizeof a);
    cr_assert(memcmp(a, c, sizeof a) != 0);
    samp_work_free(w);
}

/* Frequencies of 40000 seeded draws match softmax(l / T) within 1.5 %. */
Test(sampler, draws_follow_the_distribution)
{
    float l[4] = { 1.0f, 2.0f, 0.0f, 1.5f };
    const float T = 0.7f;
    double z = 0, want[4];
    for (int i = 0; i < 4; i++) z += exp(l[i] / T);
    for (int i = 0; i < 4; i++) want[i] = exp(l[i] / T) / z;
    SampParams p;
    samp_params_default(&p);
    p.temperature = T;
    p.has_seed = 1;
    p.seed = 99;
    Sampler *s = mk(&p, 4);
    SampWork *w = samp_work_new(4);
    int count[4] = { 0 };
    const int N = 40000;
    for (int i = 0; i < N; i++) count[samp_sample(s, w, l, NULL, NULL)]++;
    for (int i = 0; i < 4; i++)
        cr_assert(fabs((double)count[i] / N - want[i]) < 0.015, "token %d: %g vs %g", i,
                  (double)count[i] / N, want[i]);
    samp_free(s);
    samp_work_free(w);
}

Test(sampler, top_k_and_min_p_restrict_the_support)
{
    /* p ∝ e^l: with min_p 0.3 only tokens within log(0.3) of the max survive */
    float l[6] = { 0.0f, 1.0f, 2.0f, 2.5f, -3.0f, 1.9f };
    SampParams p;
    samp_params_default(&p);
    p.has_seed = 1;
    p.seed = 3;
    p.min_p = 0.3f;                 /* e^(l-2.5) >= 0.3  <=>  l >= 1.296 → ids 2, 3, 5 */
    Sampler *s = mk(&p, 6);
    SampWork *w = samp_work_new(6);
    int seen[6] = { 0 };
    for (int i = 0; i < 3000; i++) seen[samp_sample(s, w, l, NULL, NULL)]++;
    cr_assert(seen[2] && seen[3] && seen[5]);
    cr_assert(!seen[0] && !seen[1] && !seen[4]);
    samp_free(s);

    samp_params_default(&p);
    p.has_seed = 1;
    p.top_k = 2;                    /* ids 3 and 2 */
    s = mk(&p, 6);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 3000; i++) seen[samp_sample(s, w, l, NULL, NULL)]++;
    cr_assert(seen[2] && seen[3]);
    cr_assert_eq(seen[0] + seen[1] + seen[4] + seen[5], 0);
    samp_free(s);
    samp_work_free(w);
}

static int cmp_desc(const void *a, const void *b)
{
    const SampCand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}

/* The steps against a plain full sort, on a 150k vocabulary with ties. */
Test(sampler, steps_match_full_sort_reference)
{
    enum { V = 150000 };
    float *l = malloc(V * sizeof *l);
    SampCand *buf = malloc(V * sizeof *buf), *ref = malloc(V * sizeof *ref);
    fill_logits(l, V, 77, 12.0f);
    for (int i = 0; i < V; i += 97) l[i] = 5.0f;     /* ties */

    int ks[] = { 1, 2, 40, 1000, 50000 };
    for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
        SampCands c;
        samp_cands_init(&c, buf, l, V);
        samp_step_top_k(&c, ks[t]);
        SampCands r;
        samp_cands_init(&r, ref, l, V);
        qsort(ref, V, sizeof *ref, cmp_desc);
        cr_assert_eq(c.size, (size_t)ks[t]);
        if (!c.sorted) qsort(c.data, c.size, sizeof *c.data, cmp_desc);   /* same set? */
        for (int i = 0; i < ks[t]; i++) cr_assert_eq(c.data[i].id, ref[i].id, "k=%d i=%d", ks[t], i);
    }

    float ps[] = { 0.01f, 0.5f, 0.9f, 0.999f };
    for (size_t t = 0; t < sizeof ps / sizeof *ps; t++) {
        SampCands c;
        samp_cands_init(&c, buf, l, V);
        samp_step_temperature(&c, 0.5f);
        samp_step_top_p(&c, ps[t]);
        /* reference: softmax, full sort, smallest prefix reaching p */
        SampCands r;
        samp_cands_init(&r, ref, l, V);
        samp_step_temperature(&r, 0.5f);
        samp_step_softmax(&r);
        qsort(ref, V, sizeof *ref, cmp_desc);
        double cum = 0;
        size_t keep = V;
        for (size_t i = 0; i < V; i++) {
            cum += ref[i].p;
            if (cum >= ps[t]) { keep = i + 1; break; }
        }
        cr_assert_eq(c.size, keep, "p=%g: %zu vs %zu", ps[t], c.size, keep);
        if (!c.sorted) qsort(c.data, c.size, sizeof *c.data, cmp_desc);
        double mass = 0;
        for (size_t i = 0; i < c.size; i++) {
            cr_assert_eq(c.data[i].id, ref[i].id);
            mass += c.data[i].p;
        }
        cr_assert(fabs(mass - 1.0) < 1e-4);
    }
    free(l);
    free(buf);
    free(ref);
}

Test(sampler, penalties_math)
{
    float l[5] = { 2.0f, -2.0f, 1.0f, 0.5f, 3.0f };
    SampParams p;
    samp_params_default(&p);
    p.repetition_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    Sampler *s = mk(&p, 5);
    int32_t prompt[] = { 0, 1, 0 };
    cr_assert_eq(samp_add_prompt(s, prompt, 3), 0);
    cr_assert_eq(samp_accept(s, 2), SAMP_CONTINUE);
    cr_assert_eq(samp_accept(s, 2), SAMP_CONTINUE);
    cr_assert_eq(samp_accept(s, 1), SAMP_CONTINUE);
    SampCand buf[5];
    SampCands c;
    samp_cands_init(&c, buf, l, 5);
    cr_assert_eq(samp_step_penalties(&c, s), 0);
    /* 0: prompt only, positive: 2/2 */
    cr_assert_float_eq(c.data[0].logit, 1.0f, 1e-6);
    /* 1: prompt + generated once, negative: -2*2 - 0.5 - 0.25 */
    cr_assert_float_eq(c.data[1].logit, -4.75f, 1e-6);
    /* 2: generated twice: 1/2 - 2*0.5 - 0.25 */
    cr_assert_float_eq(c.data[2].logit, -0.75f, 1e-6);
    cr_assert_float_eq(c.data[3].logit, 0.5f, 1e-6);
    cr_assert_float_eq(c.data[4].logit, 3.0f, 1e-6);
    samp_free(s);
}

Test(sampler, penalties_change_greedy_choice)
{
    float l[3] = { 1.0f, 0.9f, 0.0f };
    SampParams p;
    samp_params_default(&p);
    p.temperature = 0;
    p.presence_penalty = 0.5f;
    Sampler *s = mk(&p, 3);
    SampWork *w = samp_work_new(3);
    cr_assert_eq(samp_sample(s, w, l, NULL, NULL), 0);
    samp_accept(s, 0);
    cr_assert_eq(samp_sample(s, w, l, NULL, NULL), 1);
    samp_free(s);
    samp_work_free(w);
}

Test(sampler, logprobs_raw_sum_to_one_and_match_log_softmax)
{
    enum { V = 300 };
    float l[V];
    fill_logits(l, V, 11, 4.0f);
    SampParams p;
    samp_params_default(&p);
    p.has_seed = 1;
    p.temperature = 0.5f;          /* raw logprobs ignore it */
    p.top_k = 10;
    p.logprobs = 1;
    p.top_logprobs = V;
    Sampler *s = mk(&p, V);
    SampWork *w = samp_work_new(V);
    SampTokLogprob top[V];
    SampOut out = { .top = top, .top_cap = V };
    int32_t id = samp_sample(s, w, l, NULL, &out);
    cr_assert(id >= 0);
    cr_assert_eq(out.id, id);
    cr_assert_eq(out.n_top, V);
    double lse = 0, mx = l[argmax(l, V)];
    for (int i = 0; i < V; i++) lse += exp(l[i] - mx);
    lse = mx + log(lse);
    cr_assert_float_eq(out.logprob, (float)(l[id] - lse), 1e-5);
    cr_assert_float_eq(samp_logprob_of(l, V, id), out.logprob, 1e-6);
    double total = 0;
    for (int i = 0; i < out.n_top; i++) {
        total += exp(top[i].logprob);
        if (i) cr_assert(top[i].logprob <= top[i - 1].logprob);
        cr_assert_float_eq(top[i].logprob, (float)(l[top[i].id] - lse), 1e-5);
    }
    cr_assert(fabs(total - 1.0) < 1e-4, "sum %g", total);
    cr_assert_eq(top[0].id, argmax(l, V));
    samp_free(s);
    samp_work_free(w);
}

/* Greedy without a mask takes a shortcut (no candidate list); an all-ones
 * mask forces the general path. Both must agree, logprobs included. */
Test(sampler, greedy_shortcut_equals_general_path)
{
    enum { V = 1000 };
    float l[V];
    uint64_t all[(V + 63) / 64];
    memset(all, 0xff, sizeof all);
    SampWork *w = samp_work_new(V);
    for (int trial = 0; trial < 10; trial++) {
        fill_logits(l, V, 300 + trial, 5.0f);
        SampParams p;
        samp_params_default(&p);
        p.temperature = 0;
        p.repetition_penalty = 1.3f;
        p.frequency_penalty = 0.2f;
        p.logprobs = 1;
        p.top_logprobs = 5;
        Sampler *a = mk(&p, V), *b = mk(&p, V);
        int32_t prompt[3] = { argmax(l, V), 5, 7 };
        samp_add_prompt(a, prompt, 3);
        samp_add_prompt(b, prompt, 3);
        for (int step = 0; step < 8; step++) {
            SampTokLogprob ta[5], tb[5];
            SampOut oa = { .top = ta, .top_cap = 5 }, ob = { .top = tb, .top_cap = 5 };
            int32_t x = samp_sample(a, w, l, NULL, &oa), y = samp_sample(b, w, l, all, &ob);
            cr_assert_eq(x, y);
            cr_assert_float_eq(oa.logprob, ob.logprob, 1e-6);
            cr_assert_eq(oa.n_top, 5);
            cr_assert_eq(ob.n_top, 5);
            for (int i = 0; i < 5; i++) cr_assert_eq(ta[i].id, tb[i].id);
            samp_accept(a, x);
            samp_accept(b, y);
        }
        samp_free(a);
        samp_free(b);
    }
    samp_work_free(w);
}

Test(sampler, logprobs_processed_use_penalised_tempered_distribution)
{
    float l[4] = { 1.0f, 2.0f, 0.5f, -1.0f };
    SampParams p;
    samp_params_default(&p);
    p.temperature = 2.0f;
    p.presence_penalty = 1.0f;
    p.has_seed = 1;
    p.logprobs = 1;
    p.top_logprobs = 4;
    p.logprob_mode = SAMP_LOGPROBS_PROCESSED;
    Sampler *s = mk(&p, 4);
    samp_accept(s, 1);
    SampWork *w = samp_work_new(4);
    uint64_t allow = 0x7;                /* id 3 masked */
    SampTokLogprob top[4];
    SampOut out = { .top = top, .top_cap = 4 };
    int32_t id = samp_sample(s, w, l, &allow, &out);
    cr_assert(id >= 0 && id < 3);
    float q[3] = { 0.5f, 0.5f, 0.25f };  /* (l - penalty) / T over allowed ids */
    double z = exp(q[0]) + exp(q[1]) + exp(q[2]);
    cr_assert_float_eq(out.logprob, (float)(q[id] - log(z)), 1e-5);
    cr_assert_eq(out.n_top, 3);
    cr_assert_eq(top[0].id, 0);           /* tie 0/1: lower id first */
    cr_assert_eq(top[1].id, 1);
    cr_assert_eq(top[2].id, 2);
    double total = 0;
    for (int i = 0; i < 3; i++) total += exp(top[i].logprob);
    cr_assert(fabs(total - 1.0) < 1e-5);
    samp_free(s);
    samp_work_free(w);
}

Test(sampler, allow_mask_restricts_and_empty_mask_errors)
{
    enum { V = 200 };
    float l[V];
    fill_logits(l, V, 8, 3.0f);
    uint64_t allow[(V + 63) / 64] = { 0 };
    int ids[] = { 3, 64, 130, 199 };
    for (int i = 0; i < 4; i++) allow[ids[i] / 64] |= 1ULL << (ids[i] % 64);
    SampParams p;
    samp_params_default(&p);
    p.has_seed = 1;
    Sampler *s = mk(&p, V);
    SampWork *w = samp_work_new(V);
    for (int i = 0; i < 500; i++) {
        int32_t t = samp_sample(s, w, l, allow, NULL);
        cr_assert(t == 3 || t == 64 || t == 130 || t == 199, "got %d", t);
    }
    uint64_t none[(V + 63) / 64] = { 0 };
    cr_assert_eq(samp_sample(s, w, l, none, NULL), ERR_ALL_MASKED);
    cr_assert_str_eq(err_str(ERR_ALL_MASKED),
                     "no token is allowed (mask and min_tokens leave nothing)");
    samp_free(s);
    samp_work_free(w);
}

Test(sampler, stop_conditions_and_min_tokens)
{
    float l[8] = { 0, 0, 0, 0, 0, 0, 0, 9.0f };   /* 7 (EOS) dominates */
    int32_t eos[] = { 7 }, stop[] = { 5 };
    SampParams p;
    samp_params_default(&p);
    p.temperature = 0;
    p.eos_ids = eos;
    p.n_eos = 1;
    p.stop_ids = stop;
    p.n_stop = 1;
    p.min_tokens = 2;
    p.max_tokens = 4;
    Sampler *s = mk(&p, 8);
    SampWork *w = samp_work_new(8);
    int32_t t = samp_sample(s, w, l, NULL, NULL);
    cr_assert(t != 7 && t != 5);
    cr_assert_eq(samp_accept(s, t), SAMP_CONTINUE);
    t = samp_sample(s, w, l, NULL, NULL);
    cr_assert(t != 7 && t != 5);
    cr_assert_eq(samp_accept(s, t), SAMP_CONTINUE);
    t = samp_sample(s, w, l, NULL, NULL);          /* min_tokens reached */
    cr_assert_eq(t, 7);
    cr_assert_eq(samp_accept(s, t), SAMP_FINISH_EOS);
    cr_assert_eq(samp_n_generated(s), 3);
    samp_free(s);

    p.ignore_eos = 1;
    p.min_tokens = 0;
    s = mk(&p, 8);
    cr_assert_eq(samp_accept(s, 7), SAMP_CONTINUE);
    cr_assert_eq(samp_accept(s, 5), SAMP_FINISH_STOP);
    cr_assert_eq(samp_accept(s, 1), SAMP_CONTINUE);
    cr_assert_eq(samp_accept(s, 1), SAMP_FINISH_LENGTH);
    cr_assert_eq(samp_accept(s, 8), ERR_VOCAB);
    samp_free(s);

    /* min_tokens with only EOS/stop allowed: nothing to sample */
    p.ignore_eos = 0;
    p.min_tokens = 1;
    s = mk(&p, 8);
    uint64_t allow = (1u << 7) | (1u << 5);
    cr_assert_eq(samp_sample(s, w, l, &allow, NULL), ERR_ALL_MASKED);
    samp_free(s);
    samp_work_free(w);
}

Test(sampler, bad_parameters_are_rejected_with_a_message)
{
    SampParams p;
    char err[128];
    samp_params_default(&p);
    p.top_p = 0;
    cr_assert_null(samp_new(&p, 10, err, sizeof err));
    cr_assert(strstr(err, "top_p") != NULL);
    samp_params_default(&p);
    p.repetition_penalty = 0;
    cr_assert_null(samp_new(&p, 10, err, sizeof err));
    cr_assert(strstr(err, "repetition_penalty") != NULL);
    samp_params_default(&p);
    cr_assert_null(samp_new(&p, 0, err, sizeof err));
}

Test(sampler, unseeded_samplers_work_on_a_big_vocab)
{
    enum { V = 151936 };
    float *l = malloc(V * sizeof *l);
    fill_logits(l, V, 1, 10.0f);
    SampParams p;
    samp_params_default(&p);
    p.top_p = 0.9f;
    p.min_p = 0.01f;
    p.repetition_penalty = 1.2f;
    Sampler *s = mk(&p, V);
    SampWork *w = samp_work_new(V);
    for (int i = 0; i < 20; i++) {
        int32_t t = samp_sample(s, w, l, NULL, NULL);
        cr_assert(t >= 0 && t < V);
        cr_assert(samp_accept(s, t) >= 0);
    }
    samp_free(s);
    samp_work_free(w);
    free(l);
}

Test(sampler, logit_bias_moves_the_pick_on_both_paths)
{
    float l[6] = { 0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 3.0f };
    SampBias b[2] = {{4, 1.5f}, {1, -100.0f}};
    SampParams p;
    samp_params_default(&p);
    p.temperature = 0;
    p.bias = b;
    p.n_bias = 2;
    Sampler *s = mk(&p, 6);
    SampWork *w = samp_work_new(6);
    cr_assert_eq(samp_sample(s, w, l, NULL, NULL), 4);          /* greedy fast path: 2 + 1.5 wins */
    uint64_t allow = 0x3f;                                       /* the candidate-list path */
    cr_assert_eq(samp_sample(s, w, l, &allow, NULL), 4);
    samp_free(s);
    b[0].bias = -100.0f;                                         /* copied at samp_new: s2 sees the new value */
    Sampler *s2 = mk(&p, 6);
    cr_assert_eq(samp_sample(s2, w, l, NULL, NULL), 3);          /* 1 and 4 pushed down: first of the 3.0 ties left */
    samp_free(s2);
    SampBias bad = {6, 1.0f};
    p.bias = &bad;
    p.n_bias = 1;
    char err[128];
    cr_assert_null(samp_new(&p, 6, err, sizeof err));
    cr_assert(strstr(err, "logit_bias"));
    samp_work_free(w);
}

/* The draw depends on the surviving set and u only: the same list in any
 * order picks the same token (it walks the ids in order). */
Test(sampler, the_draw_does_not_depend_on_the_list_order)
{
    enum { N = 500 };
    float l[N];
    fill_logits(l, N, 31, 3.0f);
    SampCand a[N], b[N];
    SampRng shuf;
    samp_rng_seed(&shuf, 5);
    for (uint64_t seed = 1; seed <= 200; seed++) {
        SampCands ca, cb;
        samp_cands_init(&ca, a, l, N);
        samp_cands_init(&cb, b, l, N);
        samp_step_top_k(&ca, 60);   /* sorted by logit */
        samp_step_top_k(&cb, 60);
        for (size_t i = cb.size; i > 1; i--) {   /* b: shuffled */
            size_t j = (size_t)(samp_rng_next(&shuf) % i);
            SampCand t = cb.data[i - 1];
            cb.data[i - 1] = cb.data[j];
            cb.data[j] = t;
        }
        cb.sorted = 0;
        SampRng ra, rb;
        samp_rng_seed(&ra, seed);
        samp_rng_seed(&rb, seed);
        int32_t ia = samp_pick_dist(&ca, &ra), ib = samp_pick_dist(&cb, &rb);
        cr_assert_eq(ia, ib, "seed %d: %d vs %d", (int)seed, ia, ib);
        /* and it is the id-order walk */
        SampRng rc;
        samp_rng_seed(&rc, seed);
        double u = samp_rng_uniform(&rc), cum = 0;
        int32_t want = -1;
        for (int id = 0; id < N && want < 0; id++)
            for (size_t i = 0; i < ca.size; i++)
                if (ca.data[i].id == id) {
                    cum += ca.data[i].p;
                    if (u < cum) want = id;
                }
        cr_assert_eq(ia, want);
    }
}
