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
 * checks. Does not own: admission
 * and finishing (engine_sched.c), publishing (engine.c).
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

void eng_step(Engine *e)
{
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
    int V = e->vocab;
    for (int i = 0; i < nb; i++) {
        Seq *s = e->bseqs[i];
        ModelSeq *m = &e->mseqs[i];
        e->st.computed_tokens += (uint64_t)m->n_new;
        const float *rows = m->logits_row >= 0 ? batch.logits + (size_t)m->logits_row * V : NULL;
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
    double step_s = now_s() - t0;
    e->st.busy_seconds += step_s;
    sched_pace_record(&e->pace, decode_rows + prompt_rows, prompt_rows, step_s);
}
