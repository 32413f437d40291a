/*
 * tests/unit/test_dev_sample.c — the device sampling op (KDevOps.sample) on
 * the reference device backend (kernels/cpu/devref.c) against
 * runtime/sampler.c: for many random logit rows and parameter sets, two
 * samplers made alike (same parameters, seed and history) pick the same
 * id, one through samp_sample, the other through samp_device_row and the
 * op; logprobs and top-n alternatives agree bit for bit.
 *
 * Where it cannot hold: the softmax sums of each stage are accumulated in
 * sampler.c's list order (sorted after top-k, quickselect order for wide
 * top-p) and in the op's own order, so a draw, a top-p cut or a min-p
 * threshold lying within double rounding (~1e-15 relative) of a
 * cumulative boundary could go either way. No case here lies that close
 * (the seeds are fixed), so every case is checked exactly.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "runtime/sampler.h"

static KBackend *be;

static void setup(void)
{
    char err[256] = "";
    be = cpu_devref_backend_new(err, sizeof err);
    cr_assert_not_null(be, "%s", err);
}

static void teardown(void) { be->destroy(be->ctx); }

TestSuite(dev_sample, .init = setup, .fini = teardown);

static uint64_t rnd(SampRng *r, uint64_t n) { return samp_rng_next(r) % n; }

/* Logits of a few shapes: wide uniform, peaked, quantized (many ties). */
static void fill_row(float *v, int n, SampRng *r)
{
    int shape = (int)rnd(r, 4);
    for (int i = 0; i < n; i++) {
        double u = samp_rng_uniform(r);
        switch (shape) {
        case 0: v[i] = (float)((u * 2 - 1) * 4); break;
        case 1: v[i] = (float)((u * 2 - 1) * 12); break;
        case 2: v[i] = (float)floor(u * 6) * 0.5f; break;        /* ties everywhere */
        default: v[i] = (float)((u * 2 - 1) * 2) - (rnd(r, 50) == 0 ? 0 : 6.0f);
        }
    }
}

typedef struct {
    SampParams p;
    int32_t eos[2], stop[1];
    SampBias bias[4];
    int32_t prompt[32];
    int n_prompt;
    int32_t gen[16];
    int n_gen;
    int masked;
} Case;

static const float temps[] = {0.0f, 0.3f, 0.7f, 1.0f, 1.6f};
static const float top_ps[] = {1.0f, 0.95f, 0.6f, 0.1f};
static const float min_ps[] = {0.0f, 0.02f, 0.3f};

static void make_case(Case *c, int n, SampRng *r)
{
    memset(c, 0, sizeof *c);
    samp_params_default(&c->p);
    c->p.temperature = temps[rnd(r, 5)];
    int ks[] = {0, 0, 1, 5, 40, n + 3, 700};
    c->p.top_k = ks[rnd(r, 7)];
    c->p.top_p = top_ps[rnd(r, 4)];
    c->p.min_p = min_ps[rnd(r, 3)];
    if (rnd(r, 2)) c->p.repetition_penalty = rnd(r, 2) ? 1.3f : 0.8f;
    if (rnd(r, 3) == 0) c->p.frequency_penalty = 0.5f;
    if (rnd(r, 3) == 0) c->p.presence_penalty = 0.7f;
    c->p.has_seed = 1;
    c->p.seed = samp_rng_next(r);
    if (rnd(r, 2)) {
        c->p.logprobs = 1;
        int tops[] = {0, 1, 5, 20};
        c->p.top_logprobs = tops[rnd(r, 4)];
        c->p.logprob_mode = rnd(r, 2) ? SAMP_LOGPROBS_PROCESSED : SAMP_LOGPROBS_RAW;
    }
    c->p.n_bias = (int)rnd(r, 4);
    for (int i = 0; i < c->p.n_bias; i++)
        c->bias[i] = (SampBias){(int32_t)rnd(r, (uint64_t)n), (float)(samp_rng_uniform(r) * 10 - 4)};
    c->p.bias = c->bias;
    c->eos[0] = (int32_t)rnd(r, (uint64_t)n);
    c->eos[1] = (int32_t)rnd(r, (uint64_t)n);
    c->stop[0] = (int32_t)rnd(r, (uint64_t)n);
    c->p.eos_ids = c->eos;
    c->p.n_eos = 2;
    c->p.stop_ids = c->stop;
    c->p.n_stop = rnd(r, 2) ? 1 : 0;
    c->p.min_tokens = rnd(r, 3) == 0 ? 100 : 0;
    c->p.ignore_eos = rnd(r, 4) == 0;
    c->n_prompt = (int)rnd(r, 32);
    for (int i = 0; i < c->n_prompt; i++) c->prompt[i] = (int32_t)rnd(r, (uint64_t)n);
    c->n_gen = (int)rnd(r, 16);
    for (int i = 0; i < c->n_gen; i++) c->gen[i] = (int32_t)rnd(r, (uint64_t)n);
    c->masked = rnd(r, 3) == 0;
}

/* A sampler with c's parameters, prompt and generated tokens. */
static Sampler *make_sampler(const Case *c, int n)
{
    char err[256] = "";
    Sampler *s = samp_new(&c->p, n, err, sizeof err);
    cr_assert_not_null(s, "samp_new: %s", err);
    cr_assert_eq(samp_add_prompt(s, c->prompt, (size_t)c->n_prompt), 0);
    for (int i = 0; i < c->n_gen; i++) cr_assert(samp_accept(s, c->gen[i]) >= 0);
    return s;
}

typedef struct {
    int32_t id;
    float lp;
    int n_top;
    SampTokLogprob top[K_SAMPLE_TOP_MAX];
} Pick;

/* The op over one row: the host's arrays as "device" memory (devref's
 * memory is host memory). */
static void device_pick(Sampler *s, const float *logits, int ld, int n, const uint32_t *mask, int top_cap, Pick *out)
{
    int words = (n + 31) / 32;
    KDevSampleRow row;
    int np = samp_device_n_pen(s);
    KDevPenalty *pen = malloc((size_t)(np ? np : 1) * sizeof *pen);
    KDevBias *bias = malloc(8 * sizeof *bias);
    uint32_t *allow = malloc((size_t)words * sizeof *allow);
    float *rowbuf = malloc((size_t)ld * sizeof *rowbuf);
    memcpy(rowbuf, logits, (size_t)ld * sizeof *rowbuf);
    samp_device_row(s, mask != NULL, top_cap, &row, pen, bias);
    row.pen_off = row.bias_off = 0;
    if (mask || samp_device_bans(s)) {
        if (mask) memcpy(allow, mask, (size_t)words * sizeof *allow);
        else memset(allow, 0xff, (size_t)words * sizeof *allow);
        samp_device_ban(s, allow);
        row.allow_off = 0;
    }
    int32_t id, nt, tid[K_SAMPLE_TOP_MAX];
    float lp, tlp[K_SAMPLE_TOP_MAX];
    KDevSample ks = {.logits = rowbuf, .ld = ld, .n = n, .n_rows = 1, .rows = &row, .pen = pen, .bias = bias,
                     .allow = allow, .out_id = &id, .out_lp = &lp, .out_n_top = &nt, .top_id = tid, .top_lp = tlp};
    be->dev->sample(be->ctx, &ks);
    cr_assert_null(be->error(be->ctx));
    out->id = id;
    out->lp = lp;
    out->n_top = nt;
    for (int k = 0; k < nt; k++) out->top[k] = (SampTokLogprob){tid[k], tlp[k]};
    free(pen);
    free(bias);
    free(allow);
    free(rowbuf);
}

static void host_pick(Sampler *s, SampWork *w, const float *logits, const uint32_t *mask, int top_cap, Pick *out)
{
    SampOut o = {.top = out->top, .top_cap = top_cap};
    int32_t id = samp_sample(s, w, logits, (const uint64_t *)(const void *)mask, &o);
    out->id = id == ERR_ALL_MASKED ? -1 : id;
    out->lp = o.logprob;
    out->n_top = id < 0 ? 0 : o.n_top;
}

static void compare(const Case *c, const Pick *h, const Pick *d, int trial)
{
    cr_assert_eq(h->id, d->id, "trial %d: host %d, device %d (t %g k %d p %g min_p %g)", trial, h->id, d->id,
                 (double)c->p.temperature, c->p.top_k, (double)c->p.top_p, (double)c->p.min_p);
    if (h->id < 0 || !(c->p.logprobs || c->p.top_logprobs)) return;
    cr_assert_eq(h->lp, d->lp, "trial %d: logprob %.9g vs %.9g", trial, (double)h->lp, (double)d->lp);
    cr_assert_eq(h->n_top, d->n_top, "trial %d: top-n %d vs %d", trial, h->n_top, d->n_top);
    for (int k = 0; k < h->n_top; k++) {
        cr_assert_eq(h->top[k].id, d->top[k].id, "trial %d: top %d id", trial, k);
        cr_assert_eq(h->top[k].logprob, d->top[k].logprob, "trial %d: top %d logprob", trial, k);
    }
}

static void run_trials(int trials, int max_n, uint64_t seed)
{
    SampRng r;
    samp_rng_seed(&r, seed);
    SampWork *w = samp_work_new(max_n + 64);
    float *logits = malloc((size_t)(max_n + 64) * sizeof *logits);
    uint32_t *mask = malloc((size_t)(max_n / 32 + 4) * sizeof *mask);
    int sampled = 0, masked_out = 0;
    for (int t = 0; t < trials; t++) {
        int n = 1 + (int)rnd(&r, (uint64_t)max_n);
        int ld = n + (int)rnd(&r, 64);   /* a padded row: ids >= n are never candidates */
        fill_row(logits, ld, &r);
        for (int i = n; i < ld; i++) logits[i] = 100.0f;
        Case c;
        make_case(&c, n, &r);
        const uint32_t *m = NULL;
        memset(mask, 0, (size_t)(max_n / 32 + 4) * sizeof *mask);
        if (c.masked) {
            int words = (n + 31) / 32, dense = (int)rnd(&r, 4);
            for (int i = 0; i < words; i++) {
                uint32_t x = (uint32_t)samp_rng_next(&r);
                mask[i] = dense == 0 ? 0 : dense == 1 ? x & (uint32_t)samp_rng_next(&r) : x;
            }
            if (n % 32) mask[words - 1] &= (1u << (n % 32)) - 1;
            m = mask;
        }
        int top_cap = c.p.top_logprobs;
        Sampler *a = make_sampler(&c, n), *b = make_sampler(&c, n);
        Pick h = {0}, d = {0};
        host_pick(a, w, logits, m, top_cap, &h);
        device_pick(b, logits, ld, n, m, top_cap, &d);
        compare(&c, &h, &d, t);
        cr_assert(d.id < n, "trial %d: id %d past the %d candidates", t, d.id, n);
        sampled += h.id >= 0;
        masked_out += h.id < 0;
        samp_free(a);
        samp_free(b);
    }
    cr_assert(sampled > trials / 2, "most cases sample (%d of %d)", sampled, trials);
    cr_assert(masked_out > 0, "some masks allow nothing");
    samp_work_free(w);
    free(logits);
    free(mask);
}

Test(dev_sample, small_rows_match_the_host_sampler) { run_trials(3000, 300, 1); }

Test(dev_sample, vocabulary_sized_rows_match_the_host_sampler) { run_trials(60, 50000, 2); }

/* Several tokens in a row from one pair of samplers: the RNGs stay in step
 * and penalties follow what was accepted. */
Test(dev_sample, a_sequence_of_draws_stays_in_step)
{
    enum { N = 2000, STEPS = 200 };
    SampRng r;
    samp_rng_seed(&r, 9);
    float *logits = malloc(N * sizeof *logits);
    SampWork *w = samp_work_new(N);
    SampParams p;
    samp_params_default(&p);
    p.temperature = 0.9f;
    p.top_p = 0.9f;
    p.top_k = 100;
    p.repetition_penalty = 1.2f;
    p.frequency_penalty = 0.3f;
    p.has_seed = 1;
    p.seed = 77;
    char err[128];
    Sampler *a = samp_new(&p, N, err, sizeof err), *b = samp_new(&p, N, err, sizeof err);
    int distinct = 0;
    int32_t prev = -1;
    for (int t = 0; t < STEPS; t++) {
        fill_row(logits, N, &r);
        Pick h = {0}, d = {0};
        host_pick(a, w, logits, NULL, 0, &h);
        device_pick(b, logits, N, N, NULL, 0, &d);
        cr_assert_eq(h.id, d.id, "step %d", t);
        distinct += h.id != prev;
        prev = h.id;
        cr_assert(samp_accept(a, h.id) >= 0);
        cr_assert(samp_accept(b, d.id) >= 0);
    }
    cr_assert(distinct > STEPS / 2);
    samp_free(a);
    samp_free(b);
    samp_work_free(w);
    free(logits);
}

/* Ties straddling a top-k cut: the lower ids stay, on both sides. */
Test(dev_sample, ties_at_the_top_k_cut_keep_the_lower_ids)
{
    enum { N = 64 };
    float logits[N];
    for (int i = 0; i < N; i++) logits[i] = i % 2 ? 1.0f : 0.0f;
    SampParams p;
    samp_params_default(&p);
    p.top_k = 3;
    p.has_seed = 1;
    SampWork *w = samp_work_new(N);
    char err[128];
    int seen[N] = {0};
    for (uint64_t seed = 1; seed <= 300; seed++) {
        p.seed = seed;
        Sampler *a = samp_new(&p, N, err, sizeof err), *b = samp_new(&p, N, err, sizeof err);
        Pick h = {0}, d = {0};
        host_pick(a, w, logits, NULL, 0, &h);
        device_pick(b, logits, N, N, NULL, 0, &d);
        cr_assert_eq(h.id, d.id, "seed %d", (int)seed);
        seen[d.id]++;
        samp_free(a);
        samp_free(b);
    }
    /* the three best are ids 1, 3, 5 (logit 1, lowest ids first) */
    cr_assert(seen[1] && seen[3] && seen[5]);
    for (int i = 0; i < N; i++)
        if (i != 1 && i != 3 && i != 5) cr_assert_eq(seen[i], 0, "id %d is past the cut", i);
    samp_work_free(w);
}
