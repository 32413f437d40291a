/*
 * server/gen.c — generation jobs: one HTTP exchange's engine requests
 * (every prompt × n choices), from submission to the last on_done, and
 * what the APIs share about their results (finish reasons, the stop that
 * matched, token texts).
 *
 * A job ends when both sides are done: every submitted sequence has been
 * delivered (on_done fires exactly once each, also after eng_cancel) and
 * the HTTP request has been answered or aborted. An aborted request (the
 * client went away) cancels its live sequences: the engine frees their KV
 * slots and keeps what they computed in the prefix cache.
 */
#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/strbuf.h"
#include "base/utf8.h"
#include "runtime/rt_constrain.h"
#include "runtime/rt_engine.h"

static void job_destroy(GenJob *j)
{
    Server *s = j->s;
    if (j->prev) j->prev->next = j->next;
    else if (s->jobs == j) s->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    s->n_jobs--;
    for (int i = 0; i < j->n_seqs; i++) {
        GenSeq *q = &j->seqs[i];
        sb_free(&q->text);
        free(q->stream_ids);
        free(q->error);
        free(q->prompt_ids);
        free(q->ids);
        free(q->out);
        free(q->logprobs);
        free(q->top);
        free(q->input_logprobs);
        free(q->input_top);
        free(q->matched_stop);
    }
    free(j->seqs);
    if (j->constraint) cg_unref(j->constraint);
    if (j->free_ud) j->free_ud(j->ud);
    free(j->prompt_text);
    api_req_free(j->api);
    free(j);
}

static void maybe_destroy(GenJob *j)
{
    if (!j->req && j->n_live == 0) job_destroy(j);
}

static void on_abort(void *ud, HttpRequest *r)
{
    GenJob *j = ud;
    j->req = NULL;
    j->aborted = 1;
    http_request_done(r);
    job_cancel(j);
    maybe_destroy(j);
}

GenJob *job_new(Server *s, HttpRequest *r, JobKind kind, ApiReq *api)
{
    GenJob *j = calloc(1, sizeof *j);
    if (!j) {
        api_req_free(api);
        server_errorf(r, 500, NULL, "out of memory");
        return NULL;
    }
    j->s = s;
    j->kind = kind;
    j->req = r;
    j->api = api;
    j->serial = ++s->next_job;
    j->t0 = server_now();
    j->created = (long)time(NULL);
    const char *prefix = kind == JOB_CHAT ? "chatcmpl-" : kind == JOB_COMPLETIONS ? "cmpl-" : "";
    if (kind == JOB_GENERATE && api->rid) snprintf(j->id, sizeof j->id, "%.47s", api->rid);
    else snprintf(j->id, sizeof j->id, "%s%08lx%012llx", prefix, (unsigned long)j->created, (unsigned long long)j->serial);
    j->next = s->jobs;
    if (s->jobs) s->jobs->prev = j;
    s->jobs = j;
    s->n_jobs++;
    r->on_abort = on_abort;
    r->ud = j;
    return j;
}

void job_cancel(GenJob *j)
{
    for (int i = 0; i < j->n_seqs; i++)
        if (j->seqs[i].live) eng_cancel(j->s->eng, j->seqs[i].id);
}

void job_free(GenJob *j)
{
    if (j->req) {
        HttpRequest *r = j->req;
        j->req = NULL;
        r->on_abort = NULL;
        http_request_done(r);
    }
    job_cancel(j);
    maybe_destroy(j);
}

int job_admit(Server *s, HttpRequest *r, int sequences)
{
    int cap = (s->eng ? eng_max_running(s->eng) : 64) + s->opt.max_queued;
    if (s->eng && eng_in_flight(s->eng) + sequences > cap) {
        s->metrics.rejected_queue_full++;
        ApiError e;
        api_error_set(&e, 429, NULL, "too many requests queued (%d in flight); retry later", eng_in_flight(s->eng));
        e.type = "rate_limit_error";
        char *body = api_error_json(&e);
        http_respond(r, 429, "application/json", body ? body : "", body ? strlen(body) : 0, "Retry-After: 1\r\n");
        free(body);
        return -1;
    }
    return 0;
}

const char *job_token_piece(Server *s, int32_t id, size_t *len)
{
    const char *p = tok_token_piece(eng_tokenizer(s->eng), id, len);
    if (!p) {
        *len = 0;
        return "";
    }
    return p;
}

const char *job_finish_reason_openai(const GenSeq *q)
{
    switch (q->finish) {
    case ENG_FINISH_LENGTH: return "length";
    case ENG_FINISH_CANCELLED: return "abort";
    case ENG_FINISH_ERROR: return "error";
    default: return "stop";
    }
}

/* ---- engine callbacks (on the loop) ---- */

static void on_delta(void *ud, const EngDelta *d)
{
    GenSeq *q = ud;
    GenJob *j = q->job;
    double now = server_now();
    if (!j->t_first) {
        j->t_first = now;
        metrics_observe(&j->s->metrics.ttft, now - j->t0);
    } else if (q->t_last && d->n_ids > 0) {
        metrics_observe(&j->s->metrics.itl, (now - q->t_last) / d->n_ids);
    }
    if (d->n_ids > 0) q->t_last = now;
    q->n_tokens += d->n_ids;
    sb_append(&q->text, d->text, d->len);
    if (j->kind == JOB_GENERATE && j->streaming && d->n_ids) {
        if (q->n_stream_ids + d->n_ids > q->cap_stream_ids) {
            int cap = (q->n_stream_ids + d->n_ids) * 2;
            int32_t *grown = realloc(q->stream_ids, (size_t)cap * sizeof *grown);
            if (grown) {
                q->stream_ids = grown;
                q->cap_stream_ids = cap;
            }
        }
        if (q->n_stream_ids + d->n_ids <= q->cap_stream_ids) {
            memcpy(q->stream_ids + q->n_stream_ids, d->ids, (size_t)d->n_ids * sizeof *d->ids);
            q->n_stream_ids += d->n_ids;
        }
    }
    if (j->req && j->on_delta) j->on_delta(j, q, d);
}

static void *dup_mem(const void *p, size_t n)
{
    if (!p || !n) return NULL;
    void *c = malloc(n);
    if (c) memcpy(c, p, n);
    return c;
}

/* Which stop ended the sequence: a stop token id, or the stop string the
 * text after the returned one starts with. */
static void find_match(GenJob *j, GenSeq *q)
{
    q->matched_id = -1;
    const RtGenParams *g = &j->api->gen;
    if (q->finish == ENG_FINISH_EOS) {
        if (q->n_ids) q->matched_id = q->ids[q->n_ids - 1];
        return;
    }
    if (q->finish != ENG_FINISH_STOP || !q->n_ids) return;
    int32_t last = q->ids[q->n_ids - 1];
    for (int i = 0; i < g->nstop_token_ids; i++)
        if (g->stop_token_ids[i] == last) {
            q->matched_id = last;
            return;
        }
    char *full = NULL;
    size_t flen = 0;
    if (tok_decode(eng_tokenizer(j->s->eng), q->ids, (size_t)q->n_ids, TOK_DEC_SKIP_SPECIAL, &full, &flen) != 0) return;
    /* the decode of every id is the returned text, then the stop's text */
    const char *rest = full;
    size_t rlen = flen;
    if (q->out_len <= flen && memcmp(full, q->out, q->out_len) == 0) {
        rest = full + q->out_len;
        rlen = flen - q->out_len;
    }
    size_t best = (size_t)-1;
    for (int i = 0; i < g->nstop; i++) {
        size_t sl = strlen(g->stop[i]);
        const char *at = sl <= rlen ? memmem(rest, rlen, g->stop[i], sl) : NULL;
        if (at && (size_t)(at - rest) < best) {
            best = (size_t)(at - rest);
            free(q->matched_stop);
            q->matched_stop = strdup(g->stop[i]);
        }
    }
    free(full);
}

static void on_done(void *ud, const EngResult *r)
{
    GenSeq *q = ud;
    GenJob *j = q->job;
    Server *s = j->s;
    q->live = 0;
    q->done = 1;
    j->n_live--;
    j->n_done++;
    q->finish = r->finish;
    if (r->status || r->finish == ENG_FINISH_ERROR) q->error = strdup(r->error ? r->error : "generation failed");
    q->prompt_ids = dup_mem(r->prompt_ids, (size_t)r->n_prompt * sizeof *r->prompt_ids);
    q->n_prompt = r->n_prompt;
    q->ids = dup_mem(r->ids, (size_t)r->n_ids * sizeof *r->ids);
    q->n_ids = r->n_ids;
    q->text_ids = r->text_ids;
    q->out = malloc(r->len + 1);
    if (q->out) {
        memcpy(q->out, r->text ? r->text : "", r->len);
        q->out[r->len] = '\0';
        q->out_len = r->len;
    }
    q->logprobs = dup_mem(r->logprobs, (size_t)r->n_logprobs * sizeof *r->logprobs);
    q->top_per_token = r->top_per_token;
    q->top = dup_mem(r->top, (size_t)r->n_ids * (size_t)r->top_per_token * sizeof *r->top);
    q->input_logprobs = dup_mem(r->input_logprobs, (size_t)r->n_input_logprobs * sizeof *r->input_logprobs);
    q->n_input_logprobs = r->n_input_logprobs;
    q->input_top_per_token = r->input_top_per_token;
    q->input_top = dup_mem(r->input_top, (size_t)r->n_input_logprobs * (size_t)r->input_top_per_token * sizeof *r->input_top);
    q->prompt_tokens = r->prompt_tokens;
    q->cached_tokens = r->cached_tokens;
    q->completion_tokens = r->completion_tokens;
    q->e2e = server_now() - j->t0;
    find_match(j, q);
    s->metrics.prompt_tokens += (uint64_t)r->prompt_tokens;
    s->metrics.cached_tokens += (uint64_t)r->cached_tokens;
    s->metrics.generated_tokens += (uint64_t)r->completion_tokens;
    if (j->req && j->on_seq_done) j->on_seq_done(j, q);
    if (j->n_done == j->n_seqs) {
        metrics_observe(&s->metrics.e2e, server_now() - j->t0);
        if (j->req && j->on_finish) {
            j->on_finish(j);     /* answers and calls job_free */
            return;
        }
    }
    maybe_destroy(j);
}

/* ---- starting ---- */

static const char *constraint_param(const ApiReq *a)
{
    switch (a->gen.constraint) {
    case RT_CONSTRAINT_REGEX: return "regex";
    case RT_CONSTRAINT_EBNF: return "ebnf";
    case RT_CONSTRAINT_JSON:
        return a->kind == API_GENERATE ? "json_schema"
               : json_object_get(a->doc, "json_schema") && !json_is_null(json_object_get(a->doc, "json_schema"))
                   ? "json_schema"
                   : "response_format";
    default: return NULL;
    }
}

/* The engine failed a submit: answer now, cancel what went in. */
static void fail(GenJob *j, int status, const char *param, const char *msg)
{
    ApiError e;
    api_error_set(&e, status, param, "%s", msg);
    if (j->req) {
        HttpRequest *r = j->req;
        j->req = NULL;
        r->on_abort = NULL;
        server_error(r, &e);
    }
    job_cancel(j);
    maybe_destroy(j);
}

int job_start(GenJob *j)
{
    Server *s = j->s;
    ApiReq *a = j->api;
    const RtGenParams *g = &a->gen;
    int ctx = eng_model(s->eng)->cfg.max_ctx;
    if (g->max_tokens > ctx) {
        const char *param = a->kind == API_GENERATE ? "max_new_tokens"
                            : json_object_get(a->doc, "max_completion_tokens") ? "max_completion_tokens"
                                                                                 : "max_tokens";
        char msg[160];
        snprintf(msg, sizeof msg, "%s is %d, more than the model's context of %d tokens", param, g->max_tokens, ctx);
        fail(j, 400, param, msg);
        return -1;
    }
    int vocab = tok_vocab_size(eng_tokenizer(s->eng));
    for (int i = 0; i < a->n_bias; i++)
        if (a->bias[i].id >= vocab) {
            char msg[128];
            snprintf(msg, sizeof msg, "logit_bias: %d is not a token id of this model (0..%d)", a->bias[i].id, vocab - 1);
            fail(j, 400, "logit_bias", msg);
            return -1;
        }
    if (g->constraint != RT_CONSTRAINT_NONE) {
        char err[1024];
        int rc = rtc_compile(g->constraint, g->constraint_src, g->constraint_len, &j->constraint, err, sizeof err);
        if (rc < 0) {
            fail(j, 400, constraint_param(a), err);
            return -1;
        }
    }
    int n_prompts = j->prompt_text ? 1 : a->n_prompts;
    j->n_seqs = n_prompts * a->n;
    j->seqs = calloc((size_t)j->n_seqs, sizeof *j->seqs);
    if (!j->seqs) {
        fail(j, 500, NULL, "out of memory");
        return -1;
    }
    for (int p = 0; p < n_prompts; p++) {
        for (int c = 0; c < a->n; c++) {
            GenSeq *q = &j->seqs[p * a->n + c];
            q->job = j;
            q->index = p * a->n + c;
            q->prompt = p;
            q->matched_id = -1;
            EngGenParams gp;
            eng_gen_params_default(&gp);
            rt_engine_sampling(&gp.sampling, g);
            if (g->has_seed) gp.sampling.seed = g->seed + (uint64_t)c;   /* n choices differ */
            gp.keep_special_tokens = a->keep_special_tokens;
            gp.sampling.bias = a->bias;
            gp.sampling.n_bias = a->n_bias;
            if (j->prompt_text) {
                gp.prompt_text = j->prompt_text;
                gp.prompt_len = j->prompt_len;
            } else if (a->prompts[p].ids) {
                gp.prompt_ids = a->prompts[p].ids;
                gp.n_prompt_ids = a->prompts[p].n_ids;
            } else {
                gp.prompt_text = a->prompts[p].text;
                gp.prompt_len = a->prompts[p].len;
            }
            gp.stop = g->stop;
            gp.n_stop = g->nstop;
            gp.constraint = j->constraint;
            if (a->kind == API_GENERATE && a->return_logprob)   /* -1: the last prompt token, known after tokenizing */
                q->input_from = a->logprob_start_len < 1 ? 1 : a->logprob_start_len;
            else if (a->kind == API_COMPLETIONS && a->echo && a->logprobs)
                q->input_from = 1;
            else
                q->input_from = -1;
            gp.input_logprobs_from = q->input_from;
            if (q->input_from >= 1 && a->kind == API_GENERATE) gp.input_top_logprobs = a->top_logprobs;
            gp.on_delta = on_delta;
            gp.on_done = on_done;
            gp.ud = q;
            int rc = eng_submit(s->eng, &gp, &q->id);
            if (rc == ERR_ARG && q->input_from > 1) {   /* start past the prompt: no input logprobs */
                q->input_from = -1;
                gp.input_logprobs_from = -1;
                rc = eng_submit(s->eng, &gp, &q->id);
            }
            if (rc < 0) {
                j->n_seqs = q->index;     /* the rest never started */
                const char *param = a->kind == API_CHAT ? "messages" : a->kind == API_GENERATE ? "text" : "prompt";
                fail(j, rc == ERR_NOMEM ? 500 : 400, rc == ERR_TOO_LONG || rc == ERR_TOKENIZE || rc == ERR_ARG ? param : NULL,
                     eng_last_error(s->eng));
                return -1;
            }
            q->live = 1;
            j->n_live++;
        }
    }
    return 0;
}
