/*
 * runtime/engine_step.c — one step of the engine thread: one forward pass
 * over a batch of decode tokens and prompt chunks.
 *
 * Owns: making room for decode tokens (retracting the newest sequences when
 * the pool is short), the batch (decode tokens first, then prompt chunks in
 * admission order within chunk_size), the forward pass, and what its logits
 * become: input logprobs, prefill checkpoints into the cache, the next
 * sampled token (on the host, or on the device where the model is: one
 * function, samples_on_device, decides per row), detokenization and stop
 * checks; the overlap scheduler (the next step launched before this one's
 * tokens are taken: "Overlap" at the end). Does not own: admission
 * and finishing (engine_sched.c), publishing (engine.c).
 *
 *   eng_step ─┬─ a launch in flight: overlap_step: plan_ahead (launch the
 *             │    next decode step if it needs no host token) → wait →
 *             │    consume the flight
 *             └─ none: admit, retract, build the batch;
 *                  every row's token on the device → fly_first (launch; the
 *                  next eng_step consumes it), else model_forward
 *                  (+ model_sample) → consume
 */
#include "runtime/engine_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- one step ------------------------------------------------------------------- */

static int is_decode(const Seq *s) { return s->n_kv >= s->n_prompt && s->n_toks - s->n_kv == 1; }

static long kv_available(Engine *e) { return (long)kv_n_free(e->kv) + radix_evictable(e->tree); }

/* Appends tok (sampled, or forced by the constraint) to s: counts,
 * detokenizes, checks stops. Returns 1 while s goes on, 0 once finished. */
static int take_token(Engine *e, Seq *s, int32_t tok, float logprob)
{
    if (eng_seq_reserve(s, s->n_toks + 1)) {
        sched_fail(e, s, ERR_NOMEM, "out of memory");
        return 0;
    }
    if (s->cm && cm_accept_token(s->cm, tok) != 0) {
        sched_fail(e, s, ERR_CORRUPT, "constraint: the sampled token is not allowed");
        return 0;
    }
    int fin = samp_accept(s->samp, tok);
    if (fin < 0) {
        sched_fail(e, s, ERR_SAMPLER, err_str(fin));
        return 0;
    }
    s->toks[s->n_toks++] = tok;
    if (s->want_lp) s->out_lp[s->n_gen] = logprob;
    s->n_gen++;
    e->st.generated_tokens++;
    if (fin == SAMP_FINISH_EOS) {
        sched_finish(e, s, ENG_FINISH_EOS);
        return 0;
    }
    if (fin == SAMP_FINISH_STOP) {
        sched_finish(e, s, ENG_FINISH_STOP);
        return 0;
    }
    const char *text = NULL;
    size_t len = 0;
    int drc = detok_feed(s->dt, tok, &text, &len);
    if (drc < 0) {
        sched_fail(e, s, ERR_NOMEM, "detokenizer: out of memory");
        return 0;
    }
    if (drc == DETOK_STOPPED) {
        s->stopped_text = 1;
        eng_publish_delta(e, s, text, len);
        sched_finish(e, s, ENG_FINISH_STOP);
        return 0;
    }
    if (fin == SAMP_FINISH_LENGTH || s->n_toks >= e->model->cfg.max_ctx) {
        eng_publish_delta(e, s, text, len);
        sched_finish(e, s, ENG_FINISH_LENGTH);
        return 0;
    }
    eng_publish_delta(e, s, text, len);
    if (s->cm && cm_is_finished(s->cm)) {
        /* the constraint is complete and nothing may follow: the end token
         * would be the only choice, so stop here without another step */
        sched_finish(e, s, ENG_FINISH_STOP);
        return 0;
    }
    return 1;
}

static void took(Engine *e, Seq *s, int32_t tok, float logprob);

/* Sample the next token of s from a row of logits (masked by its
 * constraint) and take it. */
static void sample_next(Engine *e, Seq *s, const float *row)
{
    const uint64_t *allow = NULL;
    if (s->cm) {
        int k = s->mask_ready ? s->mask_rc : cm_fill_mask(s->cm, s->mask);
        s->mask_ready = 0;
        if (k < 0) {
            sched_fail(e, s, k, "constraint: cannot compute the token mask");
            return;
        }
        allow = (const uint64_t *)(const void *)s->mask;
    }
    if (eng_seq_reserve(s, s->n_toks + 1)) {
        sched_fail(e, s, ERR_NOMEM, "out of memory");
        return;
    }
    /* after the reserve, which may move s->top */
    SampOut out = {.top = s->top_n ? s->top + (size_t)s->n_gen * s->top_n : NULL, .top_cap = s->top_n};
    int32_t tok = samp_sample(s->samp, e->work, row, allow, &out);
    if (tok == ERR_ALL_MASKED && s->cm && cm_can_end(s->cm)) {
        /* only the end was allowed and ignore_eos/min_tokens forbid it:
         * the constrained output is complete */
        sched_finish(e, s, ENG_FINISH_STOP);
        return;
    }
    if (tok < 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "sampling: %s", err_str(tok));
        sched_fail(e, s, ERR_SAMPLER, msg);
        return;
    }
    for (int k = out.n_top; out.top && k < s->top_n; k++) out.top[k] = (SampTokLogprob){-1, 0.0f};
    took(e, s, tok, out.logprob);
}

/* The picked token of s: take it, then, with jump-forward, the tokens the
 * constraint forces (computed together in the next step as one chunk). */
static void took(Engine *e, Seq *s, int32_t tok, float logprob)
{
    if (!take_token(e, s, tok, logprob)) return;
    if (!s->cm || !e->opt.jump_forward || s->want_lp) return;
    int32_t forced[64];
    int room = s->max_new < 0 ? 64 : s->max_new - s->n_gen;
    if (room > 64) room = 64;
    int nf = room > 0 ? cm_forced(s->cm, forced, room) : 0;
    if (nf <= 0) return;
    /* cm_forced accepted them already; take_token accepts again */
    cm_rollback(s->cm, nf);
    for (int i = 0; i < nf; i++) {
        if (!take_token(e, s, forced[i], 0.0f)) return;
        e->st.forced_tokens++;
    }
}

/* ---- sampling on the device (issue 11) -------------------------------------------- */

/* 1 when s's next token can be sampled where the logits are: a device
 * model, a row the op can do (samp_device_ok), a mask over the ids the op
 * samples. The one place that decides between the device and the host. */
static int samples_on_device(const Engine *e, const Seq *s, const ModelSeq *m)
{
    return e->opt.device_sample && m->logits == MODEL_LOGITS_LAST && !m->device_argmax &&
           model_on_device(e->model) && model_tp_ranks(e->model) <= 1 && samp_device_ok(s->samp, s->top_n) &&
           (!s->cm || (e->cvocab && cv_size(e->cvocab) >= e->n_sample));
}

static int grow_bytes(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 256;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return ERR_NOMEM;
    *p = q;
    *cap = nc;
    return 0;
}

/* Describes s's next sample for the device: its row (drawing the uniform
 * from s's RNG), penalty and bias entries appended to the step's lists at
 * *n_pen / *n_bias (offsets kept in the row until the lists stop moving). */
static int plan_device_sample(Engine *e, Seq *s, ModelSample *ms, size_t *n_pen, size_t *n_bias)
{
    size_t np = (size_t)samp_device_n_pen(s->samp), nb = (size_t)samp_params(s->samp)->n_bias;
    if (grow_bytes((void **)&e->dpen, &e->cap_dpen, *n_pen + np, sizeof *e->dpen) ||
        grow_bytes((void **)&e->dbias, &e->cap_dbias, *n_bias + nb, sizeof *e->dbias))
        return ERR_NOMEM;
    samp_device_row(s->samp, s->cm != NULL, s->top_n, &ms->row, e->dpen + *n_pen, e->dbias + *n_bias);
    ms->row.pen_off = (int32_t)*n_pen;
    ms->row.bias_off = (int32_t)*n_bias;
    ms->allow = NULL;
    *n_pen += np;
    *n_bias += nb;
    return 0;
}

/* After the masks are in: each device row's allow bitset (the
 * constraint's, with min_tokens' bans cleared in a copy). */
static int device_masks(Engine *e, int nb)
{
    size_t words = ((size_t)e->n_sample + 31) / 32, n_ban = 0;
    for (int i = 0; i < nb; i++)
        if (e->mseqs[i].sample && samp_device_bans(e->bseqs[i]->samp)) n_ban++;
    if (grow_bytes((void **)&e->dallow, &e->cap_dallow, n_ban * words, sizeof *e->dallow)) return ERR_NOMEM;
    size_t k = 0;
    for (int i = 0; i < nb; i++) {
        Seq *s = e->bseqs[i];
        ModelSample *ms = e->mseqs[i].sample;
        if (!ms) continue;
        ms->pen = e->dpen + ms->row.pen_off;
        ms->bias = e->dbias + ms->row.bias_off;
        if (s->cm && !s->mask_ready) {
            s->mask_rc = cm_fill_mask(s->cm, s->mask);
            s->mask_ready = 1;
        }
        const uint32_t *mask = s->cm && s->mask_rc >= 0 ? s->mask : NULL;
        if (samp_device_bans(s->samp)) {
            uint32_t *a = e->dallow + k++ * words;
            if (mask) memcpy(a, mask, words * sizeof *a);
            else memset(a, 0xff, words * sizeof *a);
            samp_device_ban(s->samp, a);
            mask = a;
        }
        ms->allow = mask;
    }
    return 0;
}

/* What the device sampled for s: as sample_next does with a host pick. */
static void device_pick(Engine *e, Seq *s, const ModelSample *ms)
{
    if (s->cm) {
        int k = s->mask_rc;
        s->mask_ready = 0;
        if (k < 0) {
            sched_fail(e, s, k, "constraint: cannot compute the token mask");
            return;
        }
    }
    if (ms->id < 0) {
        if (s->cm && cm_can_end(s->cm)) {
            sched_finish(e, s, ENG_FINISH_STOP);
            return;
        }
        char msg[128];
        snprintf(msg, sizeof msg, "sampling: %s", err_str(ERR_ALL_MASKED));
        sched_fail(e, s, ERR_SAMPLER, msg);
        return;
    }
    if (eng_seq_reserve(s, s->n_toks + 1)) {
        sched_fail(e, s, ERR_NOMEM, "out of memory");
        return;
    }
    if (s->top_n) {
        SampTokLogprob *t = s->top + (size_t)s->n_gen * s->top_n;
        for (int k = 0; k < s->top_n; k++)
            t[k] = k < ms->n_top ? (SampTokLogprob){ms->top_id[k], ms->top_lp[k]} : (SampTokLogprob){-1, 0.0f};
    }
    e->st.device_sampled++;
    took(e, s, ms->id, ms->logprob);
}

/* What a forward's rows become (the batch's logits, argmax ids, device
 * samples): input logprobs, checkpoints, the next token. seqs[i] NULL: a
 * row dropped while in flight. serial: the launch's number (0: a
 * model_forward). */
static void consume(Engine *e, Seq **seqs, ModelSeq *mseqs, int nb, const ModelBatch *batch, uint64_t serial)
{
    int V = e->vocab;
    for (int i = 0; i < nb; i++) {
        Seq *s = seqs[i];
        ModelSeq *m = &mseqs[i];
        if (!s) {
            /* finished while this row was in flight: nothing is published */
            e->st.discarded_tokens += (uint64_t)m->n_new;
            continue;
        }
        if (serial && s->ahead_serial == serial) s->ahead_serial = 0;
        if (serial && s->state != SEQ_RUNNING) continue; /* ended by a sibling meanwhile */
        e->st.computed_tokens += (uint64_t)m->n_new;
        const float *rows = m->logits_row >= 0 ? batch->logits + (size_t)m->logits_row * V : NULL;
        int was_prefill = s->n_kv < s->n_prompt;
        if (m->logits == MODEL_LOGITS_ALL) {
            int lim = s->kind == SEQ_GEN ? s->n_prompt : s->n_toks;
            for (int q = 0; q < m->n_new; q++) {
                int p = s->n_kv + q + 1;
                if (p < s->lp_from || p >= lim) continue;
                const float *row = rows + (size_t)q * V;
                if (s->in_top) {
                    double lse = samp_logsumexp(row, (size_t)V);
                    s->in_lp[p] = (float)((double)row[s->toks[p]] - lse);
                    SampTokLogprob *t = s->in_top + (size_t)p * (size_t)s->in_top_n;
                    int got = samp_top_logprobs(row, (size_t)V, lse, s->in_top_n, t);
                    for (int k = got; k < s->in_top_n; k++) t[k] = (SampTokLogprob){-1, 0.0f};
                } else {
                    s->in_lp[p] = samp_logprob_of(row, (size_t)V, s->toks[p]);
                }
            }
        }
        s->n_kv += m->n_new;
        if (s->n_kv < s->n_toks) {
            sched_checkpoint(e, s);
            continue;
        }
        if (!seq_samples(s)) {
            sched_finish(e, s, ENG_FINISH_LENGTH);
            continue;
        }
        /* the whole prompt is in: let others share it while this decodes */
        if (was_prefill) sched_checkpoint(e, s);
        if (m->device_argmax) {
            take_token(e, s, m->argmax, 0.0f);
            continue;
        }
        if (m->sample) {
            device_pick(e, s, m->sample);
            continue;
        }
        const float *last = m->logits == MODEL_LOGITS_ALL ? rows + (size_t)(m->n_new - 1) * V : rows;
        sample_next(e, s, last);
    }
}

static int flyable(const Engine *e, int nb);
static void fly_first(Engine *e, int nb, int n_dev, int decode_rows, int prompt_rows);
static void overlap_step(Engine *e);

void eng_step(Engine *e)
{
    if (eng_flight_live(e)) {
        overlap_step(e);
        return;
    }
    sched_admit(e);
    if (!e->n_running) return;

    /* Decode tokens first: each needs one slot. Retract the newest
     * sequences until they fit. */
    for (;;) {
        long need = 0;
        for (int i = 0; i < e->n_running; i++) need += is_decode(e->running[i]);
        if (need <= kv_available(e)) break;
        Seq *v = sched_newest_running(e, NULL);
        if (e->n_running == 1) {
            /* alone and still out of room: the pool is its limit */
            sched_finish(e, v, ENG_FINISH_LENGTH);
            return;
        }
        sched_retract(e, v);
    }

    int cap = e->cap_batch;
    if (grow_ptrs((void ***)&e->bseqs, &e->cap_batch, e->n_running)) return;
    if (e->cap_batch != cap || !e->mseq_jobs || !e->msamp) {
        ModelSeq *ms = realloc(e->mseqs, (size_t)e->cap_batch * sizeof *ms);
        if (ms) e->mseqs = ms;
        Seq **jobs = realloc(e->mseq_jobs, (size_t)e->cap_batch * sizeof *jobs);
        if (jobs) e->mseq_jobs = jobs;
        ModelSample *smp = realloc(e->msamp, (size_t)e->cap_batch * sizeof *smp);
        if (smp) e->msamp = smp;
        if (!ms || !jobs || !smp) {
            e->cap_batch = cap;   /* try again next step */
            return;
        }
    }

    int nb = 0, budget = e->opt.chunk_size, n_dev = 0;
    size_t n_pen = 0, n_bias = 0;
    /* Pass 0: decode tokens (their room was made above). Pass 1: prompt
     * chunks, in admission order (running[] is), within the budget, which
     * beside decode tokens is the pace's (decode first). */
    int n_decode = 0, prompt_rows = 0, decode_rows = 0;
    for (int i = 0; i < e->n_running; i++) n_decode += is_decode(e->running[i]);
    budget = sched_pace_budget(&e->pace, budget, n_decode);
    for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < e->n_running; i++) {
        Seq *s = e->running[i];
        int take;
        if (is_decode(s) != (pass == 0)) continue;
        if (pass == 0) {
            take = 1;
        } else {
            take = s->n_toks - s->n_kv;
            if (take > budget) take = budget;
            long avail = kv_available(e);
            if (take > avail) take = (int)avail;
            if (take <= 0) continue;
        }
        if (radix_alloc_slots(e->tree, take, s->slots + s->n_alloc) != 0) continue;
        if (pass == 1) {
            budget -= take;
            prompt_rows += take;
        } else {
            decode_rows++;
        }
        s->n_alloc += take;
        ModelSeq *m = &e->mseqs[nb];
        m->tokens = s->toks + s->n_kv;
        m->n_new = take;
        m->slots = s->slots;
        m->n_ctx = s->n_kv + take;
        m->pos = NULL;
        if (s->lp_from >= 1 && s->n_kv + take >= s->lp_from) m->logits = MODEL_LOGITS_ALL;
        else if (s->n_kv + take == s->n_toks && seq_samples(s)) m->logits = MODEL_LOGITS_LAST;
        else m->logits = MODEL_LOGITS_NONE;
        /* a plain greedy pick is made where the logits are (issue 11: on a
         * device backend the row then never crosses to the host) */
        m->device_argmax = m->logits == MODEL_LOGITS_LAST && !s->cm && !s->want_lp && model_on_device(e->model) &&
                           e->n_sample == e->vocab && samp_plain_argmax(s->samp);
        m->sample = NULL;
        m->prev_ref = 0;
        if (samples_on_device(e, s, m) && plan_device_sample(e, s, &e->msamp[nb], &n_pen, &n_bias) == 0) {
            m->sample = &e->msamp[nb];
            n_dev++;
        }
        e->bseqs[nb++] = s;
    }
    if (nb == 0) {
        /* Prompts cannot progress (the pool is locked up by partial
         * prefills): let the newest go so the others can. */
        Seq *v = sched_newest_running(e, NULL);
        if (e->n_running == 1) sched_finish(e, v, ENG_FINISH_LENGTH);
        else sched_retract(e, v);
        return;
    }

    /* the masks of the constrained sequences that sample this step are
     * computed beside the forward pass */
    int nj = 0;
    for (int i = 0; i < nb; i++) {
        Seq *s = e->bseqs[i];
        if (s->cm && e->mseqs[i].logits != MODEL_LOGITS_NONE && s->n_kv + e->mseqs[i].n_new == s->n_toks &&
            seq_samples(s))
            e->mseq_jobs[nj++] = s;
    }
    if (nj) eng_mask_start(e, e->mseq_jobs, nj);

    if (e->overlap_on && nj == 0 && flyable(e, nb)) {
        fly_first(e, nb, n_dev, decode_rows, prompt_rows);
        return;
    }
    double t0 = now_s();
    ModelBatch batch = {.seqs = e->mseqs, .n_seqs = nb, .n_sample = e->n_sample};
    int frc = model_forward(e->model, e->kv, &batch, e->ferr, sizeof e->ferr);
    if (nj) eng_mask_wait(e);
    if (frc == 0 && n_dev) {
        if (device_masks(e, nb)) {
            snprintf(e->ferr, sizeof e->ferr, "out of memory for the sampling masks");
            frc = -1;
        } else {
            frc = model_sample(e->model, &batch, e->ferr, sizeof e->ferr);
        }
    }
    if (frc != 0) {
        for (int i = 0; i < nb; i++) {
            Seq *s = e->bseqs[i];
            /* the new slots hold nothing valid: drop them before finishing */
            radix_free_slots(e->tree, s->slots + s->n_kv, s->n_alloc - s->n_kv);
            s->n_alloc = s->n_kv;
            s->mask_ready = 0;
            sched_fail(e, s, ERR_MODEL, e->ferr);
        }
        return;
    }
    e->st.steps++;
    if (decode_rows && prompt_rows) {
        e->st.mixed_steps++;
        if (prompt_rows > e->st.mixed_prompt_max) e->st.mixed_prompt_max = prompt_rows;
    }
    consume(e, e->bseqs, e->mseqs, nb, &batch, 0);
    double step_s = now_s() - t0;
    e->st.busy_seconds += step_s;
    sched_pace_record(&e->pace, decode_rows + prompt_rows, prompt_rows, step_s);
}

/* ---- Overlap (EngOptions.overlap; issue 11) ------------------------------------------
 *
 * SGLang's overlap scheduler: the host prepares and launches step N+1
 * while the device runs step N, then takes N's tokens (detokenizes, checks
 * stops, publishes) while N+1 runs:
 *
 *   eng_step k:    plan N+1 ─► model_launch(N+1) ─► model_wait(N) ─► consume N
 *   device:        ....... N ........|......... N+1 .........
 *
 * A row of N+1 whose input is the token N samples names it by prev_ref (the
 * model picks it on the device: model.h); its context slot is allocated at
 * planning, its sampling row (the request's uniform draw) planned then,
 * which is each request's next draw either way, so seeds reproduce.
 *
 * Invariants:
 *   - At most one launch is in flight between eng_step calls, two inside
 *     one (N waited right after N+1 is launched). A flight's rows are the
 *     sequences it was launched for; one that finishes meanwhile (its own
 *     N row, a stop, a cancel, a failure: sched_finish calls
 *     eng_flight_forget) has its row dropped: the token is never taken,
 *     its slot was released with the sequence (the device's write to it
 *     comes, in stream order, before any later step's use of it), nothing
 *     is published, the draw is gone with the request.
 *   - N+1 is planned ahead only when it could be planned without N's
 *     tokens: nothing waits for admission, every running sequence samples
 *     at N on the device (argmax or device sampling) with nothing that
 *     needs N's token on the host first: no constraint (its mask needs the
 *     accepted token; jump-forward), no penalties (their counts), no
 *     min_tokens bans (their count); every such row fits the pool without
 *     retraction. N+1 is then decode rows only. A sequence that N finishes
 *     by length (max_tokens, the context) gets no row. Otherwise N is
 *     waited and consumed first (the synchronous path).
 *   - A step is launched (rather than run by model_forward) when all its
 *     rows sampling is on the device and no constrained row samples; its
 *     results are taken by the next eng_step, in the order they would be.
 *   - Outputs (ids, logprobs, finish reasons, the cache's contents) are
 *     those of the synchronous path: the same rows are computed from the
 *     same tokens at the same slots. One difference in the cache only: a
 *     sequence cancelled while its row is in flight gives the tree the
 *     tokens computed before that row (the row's K/V is not waited for).
 */

static const int32_t NO_TOKEN = 0; /* a prev_ref row's tokens[0] (ignored) */

int eng_flight_live(const Engine *e) { return e->fl[0].live || e->fl[1].live; }

void eng_flight_forget(Engine *e, Seq *s)
{
    if (!s->ahead_serial) return;
    for (int k = 0; k < 2; k++) {
        EngFlight *f = &e->fl[k];
        if (f->live && f->serial == s->ahead_serial && s->ahead_row < f->nb && f->seqs[s->ahead_row] == s)
            f->seqs[s->ahead_row] = NULL;
    }
    s->ahead_serial = 0;
}

void eng_flight_drain(Engine *e)
{
    char err[256];
    for (;;) {
        EngFlight *f = NULL;
        for (int k = 0; k < 2; k++)
            if (e->fl[k].live && (!f || e->fl[k].serial < f->serial)) f = &e->fl[k];
        if (!f) return;
        ModelBatch b = {.seqs = f->mseqs, .n_seqs = f->nb, .n_sample = e->n_sample};
        (void)model_wait(e->model, &b, err, sizeof err);
        f->live = 0;
        for (int i = 0; i < f->nb; i++)
            if (f->seqs[i] && f->seqs[i]->ahead_serial == f->serial) f->seqs[i]->ahead_serial = 0;
    }
}

void eng_flight_free(Engine *e)
{
    for (int k = 0; k < 2; k++) {
        free(e->fl[k].seqs);
        free(e->fl[k].mseqs);
        free(e->fl[k].msamp);
    }
}

static int flight_room(EngFlight *f, int n)
{
    if (n <= f->cap) return 0;
    int nc = f->cap ? f->cap : 16;
    while (nc < n) nc *= 2;
    Seq **sq = realloc(f->seqs, (size_t)nc * sizeof *sq);
    if (sq) f->seqs = sq;
    ModelSeq *ms = realloc(f->mseqs, (size_t)nc * sizeof *ms);
    if (ms) f->mseqs = ms;
    ModelSample *sm = realloc(f->msamp, (size_t)nc * sizeof *sm);
    if (sm) f->msamp = sm;
    if (!sq || !ms || !sm) return ERR_NOMEM;
    f->cap = nc;
    return 0;
}

static EngFlight *free_flight(Engine *e) { return !e->fl[0].live ? &e->fl[0] : !e->fl[1].live ? &e->fl[1] : NULL; }

/* 1 when every row of the planned batch gets its token on the device
 * (or none): the batch can be launched and taken later. */
static int flyable(const Engine *e, int nb)
{
    for (int i = 0; i < nb; i++) {
        const ModelSeq *m = &e->mseqs[i];
        if (m->logits == MODEL_LOGITS_ALL) return 0;
        if (m->logits == MODEL_LOGITS_LAST && !m->device_argmax && !m->sample) return 0;
    }
    return 1;
}

static void mark_ahead(Engine *e, EngFlight *f)
{
    f->serial = ++e->fl_serial;
    f->live = 1;
    for (int i = 0; i < f->nb; i++) {
        f->seqs[i]->ahead_serial = f->serial;
        f->seqs[i]->ahead_row = i;
    }
}

/* Fails the sequences of a step the model could not run (their new slots
 * hold nothing valid: dropped before finishing). */
static void fail_rows(Engine *e, Seq **seqs, int nb)
{
    for (int i = 0; i < nb; i++) {
        Seq *s = seqs[i];
        if (!s || s->state != SEQ_RUNNING) continue;
        radix_free_slots(e->tree, s->slots + s->n_kv, s->n_alloc - s->n_kv);
        s->n_alloc = s->n_kv;
        s->mask_ready = 0;
        sched_fail(e, s, ERR_MODEL, e->ferr);
    }
}

/* The synchronous path's batch (e->bseqs / mseqs / msamp), launched. */
static void fly_first(Engine *e, int nb, int n_dev, int decode_rows, int prompt_rows)
{
    double t0 = now_s();
    EngFlight *f = free_flight(e);
    int rc = !f || flight_room(f, nb) ? -1 : 0;
    if (rc) snprintf(e->ferr, sizeof e->ferr, "out of memory for the launch");
    if (!rc && n_dev && device_masks(e, nb)) {
        snprintf(e->ferr, sizeof e->ferr, "out of memory for the sampling masks");
        rc = -1;
    }
    if (!rc) {
        for (int i = 0; i < nb; i++) {
            f->seqs[i] = e->bseqs[i];
            f->mseqs[i] = e->mseqs[i];
            if (e->mseqs[i].sample) {
                f->msamp[i] = *e->mseqs[i].sample;
                f->mseqs[i].sample = &f->msamp[i];
            }
        }
        f->nb = nb;
        f->decode_rows = decode_rows;
        f->prompt_rows = prompt_rows;
        ModelBatch b = {.seqs = f->mseqs, .n_seqs = nb, .n_sample = e->n_sample};
        rc = model_launch(e->model, e->kv, &b, e->ferr, sizeof e->ferr);
    }
    if (rc) {
        fail_rows(e, e->bseqs, nb);
        return;
    }
    mark_ahead(e, f);
    e->st.steps++;
    if (decode_rows && prompt_rows) {
        e->st.mixed_steps++;
        if (prompt_rows > e->st.mixed_prompt_max) e->st.mixed_prompt_max = prompt_rows;
    }
    e->st.busy_seconds += now_s() - t0;
}

/* 1 when s's next step can be planned before f's row for it is taken. */
static int can_go_ahead(const Engine *e, const EngFlight *f, const Seq *s)
{
    if (s->ahead_serial != f->serial || s->ahead_row >= f->nb || f->seqs[s->ahead_row] != s) return 0;
    const ModelSeq *m = &f->mseqs[s->ahead_row];
    if (m->logits != MODEL_LOGITS_LAST || (!m->device_argmax && !m->sample)) return 0;
    if (s->n_alloc != s->n_toks || !seq_samples(s) || s->cm) return 0;
    return !m->sample || (samp_device_n_pen(s->samp) == 0 && !samp_device_bans(s->samp));
}

/* s finishes by length with the token f samples for it. */
static int ends_by_length(const Engine *e, const Seq *s)
{
    int max = samp_params(s->samp)->max_tokens;
    return (max >= 0 && samp_n_generated(s->samp) + 1 >= max) || s->n_toks + 1 >= e->model->cfg.max_ctx;
}

/* Plans and launches g, the decode step after f, before f is taken. 1 when
 * launched, 0 when the next step must wait for f's tokens. */
static int plan_ahead(Engine *e, EngFlight *f, EngFlight *g)
{
    if (e->n_waiting) return 0;
    int need = 0;
    for (int i = 0; i < e->n_running; i++) {
        Seq *s = e->running[i];
        if (!can_go_ahead(e, f, s)) return 0;
        need += !ends_by_length(e, s);
    }
    if (need == 0 || need > kv_available(e) || flight_room(g, f->nb)) return 0;
    /* the slots first (nothing drawn yet if they cannot all be had) */
    int k = 0;
    for (int i = 0; i < f->nb; i++) {
        Seq *s = f->seqs[i];
        if (!s || ends_by_length(e, s)) continue;
        if (eng_seq_reserve(s, s->n_toks + 1) || radix_alloc_slots(e->tree, 1, s->slots + s->n_alloc) != 0) break;
        s->n_alloc++;
        g->seqs[k++] = s;
    }
    int ok = k == need;
    size_t n_pen = 0, n_bias = 0;
    for (int j = 0; ok && j < k; j++) {
        Seq *s = g->seqs[j];
        const ModelSeq *fm = &f->mseqs[s->ahead_row];
        ModelSeq *m = &g->mseqs[j];
        *m = (ModelSeq){.tokens = &NO_TOKEN, .n_new = 1, .slots = s->slots, .n_ctx = s->n_alloc,
                        .logits = MODEL_LOGITS_LAST, .device_argmax = fm->device_argmax,
                        .prev_ref = s->ahead_row + 1};
        if (fm->sample) {
            if (plan_device_sample(e, s, &g->msamp[j], &n_pen, &n_bias)) {
                ok = 0;
                break;
            }
            m->sample = &g->msamp[j];
        }
    }
    for (int j = 0; ok && j < k; j++)
        if (g->mseqs[j].sample) {
            ModelSample *ms = g->mseqs[j].sample;
            ms->pen = e->dpen + ms->row.pen_off;
            ms->bias = e->dbias + ms->row.bias_off;
            ms->allow = NULL;
        }
    if (ok) {
        g->nb = k;
        ModelBatch b = {.seqs = g->mseqs, .n_seqs = k, .n_sample = e->n_sample};
        ok = model_launch(e->model, e->kv, &b, e->ferr, sizeof e->ferr) == 0;
    }
    if (!ok) {
        /* the synchronous path runs the step instead (and meets the
         * failure, if any, itself) */
        for (int j = 0; j < k; j++) {
            Seq *s = g->seqs[j];
            s->n_alloc--;
            radix_free_slots(e->tree, s->slots + s->n_alloc, 1);
        }
        return 0;
    }
    /* each s keeps its row in f (taken next) and gets one in g */
    g->serial = ++e->fl_serial;
    g->live = 1;
    g->decode_rows = k;
    g->prompt_rows = 0;
    for (int j = 0; j < k; j++) {
        Seq *s = g->seqs[j];
        s->ahead_serial = g->serial;
        s->ahead_row = j;
    }
    e->st.steps++;
    e->st.overlap_steps++;
    return 1;
}

/* A flight is live: launch the next step if it can be planned, then take
 * the flight's results. */
static void overlap_step(Engine *e)
{
    double t0 = now_s();
    EngFlight *f = e->fl[0].live && (!e->fl[1].live || e->fl[0].serial < e->fl[1].serial) ? &e->fl[0] : &e->fl[1];
    EngFlight *g = f == &e->fl[0] ? &e->fl[1] : &e->fl[0];
    if (!g->live) (void)plan_ahead(e, f, g);
    ModelBatch b = {.seqs = f->mseqs, .n_seqs = f->nb, .n_sample = e->n_sample};
    int rc = model_wait(e->model, &b, e->ferr, sizeof e->ferr);
    /* f's rows stay findable by eng_flight_forget until here; consume
     * checks each sequence itself from now on */
    f->live = 0;
    if (rc) {
        for (int i = 0; i < f->nb; i++)
            if (f->seqs[i] && f->seqs[i]->ahead_serial == f->serial) f->seqs[i]->ahead_serial = 0;
        fail_rows(e, f->seqs, f->nb);
    } else {
        consume(e, f->seqs, f->mseqs, f->nb, &b, f->serial);
    }
    double step_s = now_s() - t0;
    e->st.busy_seconds += step_s;
    sched_pace_record(&e->pace, f->decode_rows + f->prompt_rows, f->prompt_rows, step_s);
}
