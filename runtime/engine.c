/*
 * runtime/engine.c — the engine's request API and the queues around the
 * engine thread (see engine.h for the picture, engine_internal.h for the
 * types and how the module's files divide the work).
 *
 * Owns: submit / score / cancel (turning parameters into a Req and its
 * sequences, on the caller's thread), the in-queue of messages, the
 * out-queue of events and the ids in flight, delivery on the consumer
 * thread (eng_poll / eng_wait, the uv_async hand-off), the engine thread's
 * loop and the engine's lifetime. Does not own: scheduling
 * (engine_sched.c), the step (engine_step.c), select's scoring
 * (engine_select.c).
 */
#include "runtime/engine_internal.h"
#include "runtime/rt_constrain.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

static const char *const finish_names[] = {
#define ENG_FINISH_STR(name, str) str,
    ENG_FINISHES(ENG_FINISH_STR)
#undef ENG_FINISH_STR
};
_Static_assert(sizeof finish_names / sizeof finish_names[0] == ENG_FINISH_COUNT_, "one name per finish reason");

const char *eng_finish_name(EngFinish f)
{
    return (unsigned)f < ENG_FINISH_COUNT_ ? finish_names[f] : "?";
}

/* ---- small helpers ------------------------------------------------------------ */

static void set_last_error(Engine *e, const char *fmt, ...)
{
    pthread_mutex_lock(&e->err_mu);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->last_error, sizeof e->last_error, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&e->err_mu);
}

const char *eng_last_error(Engine *e)
{
    return e->last_error;
}

void eng_options_default(EngOptions *o)
{
    memset(o, 0, sizeof *o);
    o->chunk_size = 512;
    o->itl_target_ms = ENG_ITL_TARGET_AUTO; /* eng_new: by backend */
    o->max_running = 0;     /* eng_new: ENG_MAX_RUNNING_HOST or _DEVICE */
    o->prefix_cache = 1;
    o->decode_reserve = 32;
    o->seed = 0x5eed;
    o->kv_dtype = K_DTYPE_F16;
    o->batch_invariant = 1;
    o->jump_forward = 1;
    o->mask_overlap = -1;
    o->device_sample = 1;
    o->overlap = -1;
}

void eng_gen_params_default(EngGenParams *p)
{
    memset(p, 0, sizeof *p);
    samp_params_default(&p->sampling);
    p->sampling.max_tokens = 128;
    p->input_logprobs_from = -1;
}

const Tokenizer *eng_tokenizer(const Engine *e) { return e->tok; }

int eng_max_running(const Engine *e) { return e->opt.max_running; }

CVocab *eng_constraint_vocab(Engine *e)
{
    pthread_mutex_lock(&e->cv_mu);
    if (!e->cvocab) {
        char err[256];
        if (rtc_vocab_new(e->tok, &e->cvocab, err, sizeof err) != 0) e->cvocab = NULL;
    }
    CVocab *v = e->cvocab;
    pthread_mutex_unlock(&e->cv_mu);
    return v;
}
const Model *eng_model(const Engine *e) { return e->model; }

/* ---- sequences and requests (any thread until queued) ------------------------- */

int eng_seq_reserve(Seq *s, int need)
{
    if (need <= s->cap) return 0;
    int nc = s->cap ? s->cap : 16;
    while (nc < need) nc *= 2;
    int32_t *t = realloc(s->toks, (size_t)nc * sizeof *t);
    if (!t) return ERR_NOMEM;
    s->toks = t;
    int32_t *sl = realloc(s->slots, (size_t)nc * sizeof *sl);
    if (!sl) return ERR_NOMEM;
    s->slots = sl;
    if (s->want_lp) {
        float *l = realloc(s->out_lp, (size_t)nc * sizeof *l);
        if (!l) return ERR_NOMEM;
        s->out_lp = l;
        if (s->top_n) {
            SampTokLogprob *tp = realloc(s->top, (size_t)nc * s->top_n * sizeof *tp);
            if (!tp) return ERR_NOMEM;
            s->top = tp;
        }
    }
    s->cap = nc;
    return 0;
}

static void seq_free(Seq *s)
{
    if (!s) return;
    free(s->toks);
    free(s->slots);
    free(s->in_lp);
    free(s->in_top);
    free(s->out_lp);
    free(s->top);
    samp_free(s->samp);
    detok_free(s->dt);
    cm_free(s->cm);
    free(s->mask);
    free(s);
}

static Seq *seq_new(Req *r, SeqKind kind, const int32_t *a, int na, const int32_t *b, int nb)
{
    Seq *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->req = r;
    s->kind = kind;
    s->lp_from = -1;
    if (eng_seq_reserve(s, na + nb + 1)) {
        seq_free(s);
        return NULL;
    }
    if (na) memcpy(s->toks, a, (size_t)na * sizeof *a);
    if (nb) memcpy(s->toks + na, b, (size_t)nb * sizeof *b);
    s->n_toks = s->n_prompt = na + nb;
    return s;
}

static void req_free(Req *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_seqs; i++) seq_free(r->seqs[i]);
    free(r->seqs);
    free(r->prompt);
    for (int i = 0; i < r->n_choices; i++) {
        if (r->ctoks) free(r->ctoks[i]);
        if (r->clp) free(r->clp[i]);
        if (r->culp) free(r->culp[i]);
    }
    free(r->ctoks);
    free(r->clen);
    free(r->clp);
    free(r->culp);
    free(r);
}

/* The prompt as ids: copied, or tokenized from text. */
static int take_prompt(Engine *e, const int32_t *ids, int n, const char *text, size_t len, Req *r)
{
    if (ids) {
        if (n <= 0) {
            set_last_error(e, "empty prompt");
            return ERR_ARG;
        }
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= e->vocab) {
                set_last_error(e, "prompt token %d is outside the vocabulary (%d)", ids[i], e->vocab);
                return ERR_ARG;
            }
        r->prompt = malloc((size_t)n * sizeof *ids);
        if (!r->prompt) return ERR_NOMEM;
        memcpy(r->prompt, ids, (size_t)n * sizeof *ids);
        r->n_prompt = n;
        return 0;
    }
    if (!text && len) return ERR_ARG;
    TokIds v = {0};
    int rc = tok_encode(e->tok, text ? text : "", len, TOK_ENC_ADD_SPECIAL | TOK_ENC_PARSE_SPECIAL, &v);
    if (rc < 0) {
        set_last_error(e, "tokenizing the prompt: %s (%s)", err_str(rc), tok_last_error(e->tok));
        tok_ids_free(&v);
        return ERR_TOKENIZE;
    }
    if (v.n == 0) {
        tok_ids_free(&v);
        set_last_error(e, "empty prompt");
        return ERR_ARG;
    }
    r->prompt = v.ids;
    r->n_prompt = (int)v.n;
    return 0;
}

/* A sequence of n tokens generating up to max_new more must fit the pool
 * and the model's context. */
static int check_fits(Engine *e, int n, int max_new)
{
    int ctx = e->model->cfg.max_ctx;
    if (n + 1 > e->kv->n_slots || n >= ctx) {
        set_last_error(e, "prompt of %d tokens does not fit (KV cache %d tokens, model context %d)", n,
                       e->kv->n_slots, ctx);
        return ERR_TOO_LONG;
    }
    (void)max_new;
    return 0;
}

/* Registers a new id as in flight (out_mu held). */
static int add_live(Engine *e, uint64_t *id)
{
    if (e->n_live == e->cap_live) {
        int nc = e->cap_live ? e->cap_live * 2 : 64;
        uint64_t *p = realloc(e->live, (size_t)nc * sizeof *p);
        if (!p) return ERR_NOMEM;
        e->live = p;
        e->cap_live = nc;
    }
    *id = ++e->next_id;
    e->live[e->n_live++] = *id;
    return 0;
}

static void push_msg(Engine *e, Msg *m)
{
    pthread_mutex_lock(&e->in_mu);
    if (e->in_tail) e->in_tail->next = m;
    else e->in_head = m;
    e->in_tail = m;
    pthread_cond_signal(&e->in_cv);
    pthread_mutex_unlock(&e->in_mu);
}

static int queue_req(Engine *e, Req *r, uint64_t *id)
{
    Msg *m = calloc(1, sizeof *m);
    if (!m) return ERR_NOMEM;
    m->kind = MSG_REQ;
    m->req = r;
    /* Checked and queued under one lock: once the thread has seen
     * `stopping` nothing else gets in. Lock order: in_mu, then out_mu. */
    pthread_mutex_lock(&e->in_mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->in_mu);
        free(m);
        set_last_error(e, "engine is shutting down");
        return ERR_CLOSED;
    }
    pthread_mutex_lock(&e->out_mu);
    int rc = add_live(e, &r->id);
    pthread_mutex_unlock(&e->out_mu);
    if (rc) {
        pthread_mutex_unlock(&e->in_mu);
        free(m);
        return rc;
    }
    if (id) *id = r->id;
    if (e->in_tail) e->in_tail->next = m;
    else e->in_head = m;
    e->in_tail = m;
    pthread_cond_signal(&e->in_cv);
    pthread_mutex_unlock(&e->in_mu);
    return 0;
}

int eng_submit(Engine *e, const EngGenParams *p, uint64_t *id)
{
    if (!e || !p || !p->on_done) return ERR_ARG;
    Req *r = calloc(1, sizeof *r);
    if (!r) return ERR_NOMEM;
    r->kind = REQ_GEN;
    r->on_delta = p->on_delta;
    r->on_done = p->on_done;
    r->ud = p->ud;
    int rc = take_prompt(e, p->prompt_ids, p->n_prompt_ids, p->prompt_text, p->prompt_len, r);
    if (!rc) rc = check_fits(e, r->n_prompt, p->sampling.max_tokens);
    if (!rc && (p->input_logprobs_from == 0 || p->input_logprobs_from > r->n_prompt)) {
        set_last_error(e, "input_logprobs_from must be in [1, prompt length]");
        rc = ERR_ARG;
    }
    if (rc) {
        req_free(r);
        return rc;
    }
    rc = ERR_NOMEM;
    r->seqs = calloc(1, sizeof *r->seqs);
    Seq *s = r->seqs ? seq_new(r, SEQ_GEN, r->prompt, r->n_prompt, NULL, 0) : NULL;
    if (!s) goto fail;
    r->seqs[0] = s;
    r->n_seqs = r->seqs_left = 1;

    SampParams sp = p->sampling;
    if (sp.n_eos == 0) {
        sp.eos_ids = e->eog;
        sp.n_eos = e->n_eog;
    }
    if (!sp.has_seed) {
        /* Deterministic given the submission order. */
        pthread_mutex_lock(&e->in_mu);
        sp.seed = samp_rng_next(&e->seed_rng);
        pthread_mutex_unlock(&e->in_mu);
        sp.has_seed = 1;
    }
    char serr[256] = "";
    s->samp = samp_new(&sp, e->n_sample, serr, sizeof serr);
    if (!s->samp) {
        set_last_error(e, "sampling parameters: %s", serr);
        rc = ERR_ARG;
        goto fail;
    }
    if (samp_add_prompt(s->samp, r->prompt, (size_t)r->n_prompt) < 0) goto fail;
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i]) {
            rc = ERR_ARG;
            set_last_error(e, "stop string %d is NULL", i);
            goto fail;
        }
    if (detok_new(e->tok, p->stop, p->n_stop, p->keep_special_tokens ? 0 : DETOK_SKIP_SPECIAL, &s->dt) != 0) goto fail;
    s->max_new = sp.max_tokens;
    s->want_lp = sp.logprobs || sp.top_logprobs > 0;
    s->top_n = sp.top_logprobs > 0 ? sp.top_logprobs : 0;
    if (s->want_lp) {
        int c = s->cap;
        s->cap = 0;
        if (eng_seq_reserve(s, c)) goto fail;
    }
    if (p->input_logprobs_from > 0) {
        s->lp_from = p->input_logprobs_from;
        s->in_lp = calloc((size_t)r->n_prompt, sizeof *s->in_lp);
        if (!s->in_lp) goto fail;
        if (p->input_top_logprobs > 0) {
            s->in_top_n = p->input_top_logprobs;
            s->in_top = calloc((size_t)r->n_prompt * (size_t)s->in_top_n, sizeof *s->in_top);
            if (!s->in_top) goto fail;
        }
    }
    if (p->constraint) {
        CVocab *v = eng_constraint_vocab(e);
        if (!v) {
            rc = ERR_NOMEM;
            goto fail;
        }
        rc = cm_new(p->constraint, v, &s->cm);
        if (!rc && !(s->mask = malloc(cv_mask_words(v) * sizeof *s->mask))) rc = ERR_NOMEM;
        if (rc) {
            set_last_error(e, "constraint: %s", err_str(rc));
            goto fail;
        }
    }
    rc = queue_req(e, r, id);
    if (rc) goto fail;
    return 0;
fail:
    req_free(r);
    return rc;
}

int eng_score(Engine *e, const EngScoreParams *p, uint64_t *id)
{
    if (!e || !p || !p->on_done || p->n_choices <= 0 || (!p->choices && !(p->choice_ids && p->choice_lens)))
        return ERR_ARG;
    Req *r = calloc(1, sizeof *r);
    if (!r) return ERR_NOMEM;
    r->kind = REQ_SCORE;
    r->on_score = p->on_done;
    r->ud = p->ud;
    r->unconditional = p->unconditional;
    int rc = take_prompt(e, p->prompt_ids, p->n_prompt_ids, p->prompt_text, p->prompt_len, r);
    if (rc) goto fail;
    rc = ERR_NOMEM;
    int n = p->n_choices;
    r->n_choices = n;
    r->ctoks = calloc((size_t)n, sizeof *r->ctoks);
    r->clen = calloc((size_t)n, sizeof *r->clen);
    r->clp = calloc((size_t)n, sizeof *r->clp);
    r->culp = calloc((size_t)n, sizeof *r->culp);
    if (!r->ctoks || !r->clen || !r->clp || !r->culp) goto fail;
    int longest = 0;
    for (int i = 0; i < n; i++) {
        if (p->choices) {
            if (!p->choices[i]) {
                rc = ERR_ARG;
                goto fail;
            }
            TokIds v = {0};
            int trc = tok_encode(e->tok, p->choices[i], strlen(p->choices[i]), TOK_ENC_PARSE_SPECIAL, &v);
            if (trc < 0) {
                tok_ids_free(&v);
                set_last_error(e, "tokenizing choice %d: %s", i, err_str(trc));
                rc = ERR_TOKENIZE;
                goto fail;
            }
            r->ctoks[i] = v.ids;
            r->clen[i] = (int)v.n;
        } else {
            int len = p->choice_lens[i];
            if (len < 0 || (len && !p->choice_ids[i])) {
                rc = ERR_ARG;
                goto fail;
            }
            r->ctoks[i] = malloc((size_t)(len ? len : 1) * sizeof(int32_t));
            if (!r->ctoks[i]) goto fail;
            if (len) memcpy(r->ctoks[i], p->choice_ids[i], (size_t)len * sizeof(int32_t));
            r->clen[i] = len;
            for (int j = 0; j < len; j++)
                if (p->choice_ids[i][j] < 0 || p->choice_ids[i][j] >= e->vocab) {
                    rc = ERR_ARG;
                    set_last_error(e, "choice %d: token id out of range", i);
                    goto fail;
                }
        }
        if (r->clen[i] == 0) {
            rc = ERR_ARG;
            set_last_error(e, "choice %d is empty", i);
            goto fail;
        }
        if (r->clen[i] > longest) longest = r->clen[i];
        r->clp[i] = calloc((size_t)r->clen[i], sizeof(float));
        r->culp[i] = calloc((size_t)r->clen[i], sizeof(float));
        if (!r->clp[i] || !r->culp[i]) goto fail;
    }
    rc = check_fits(e, r->n_prompt + longest, 0);
    if (rc) goto fail;
    rc = ERR_NOMEM;
    r->seqs = calloc((size_t)(1 + 2 * n), sizeof *r->seqs);
    if (!r->seqs) goto fail;
    /* The prompt prefill (only useful with the cache: the choices then
     * find it there), then one sequence per choice over the prompt. */
    if (e->opt.prefix_cache) {
        Seq *s = seq_new(r, SEQ_PROMPT, r->prompt, r->n_prompt, NULL, 0);
        if (!s) goto fail;
        s->max_new = 0;
        r->seqs[r->n_seqs++] = s;
    }
    for (int i = 0; i < n; i++) {
        Seq *s = seq_new(r, SEQ_CHOICE, r->prompt, r->n_prompt, r->ctoks[i], r->clen[i]);
        if (!s) goto fail;
        s->choice = i;
        s->lp_from = r->n_prompt;
        s->in_lp = calloc((size_t)s->n_prompt, sizeof *s->in_lp);
        if (!s->in_lp) {
            seq_free(s);
            goto fail;
        }
        r->seqs[r->n_seqs++] = s;
    }
    for (int i = 0; r->unconditional && i < n; i++) {
        if (r->clen[i] == 1) continue;   /* its one unconditional logprob is 0 by definition */
        Seq *s = seq_new(r, SEQ_UNCOND, r->ctoks[i], r->clen[i], NULL, 0);
        if (!s) goto fail;
        s->choice = i;
        s->lp_from = 1;
        s->in_lp = calloc((size_t)s->n_prompt, sizeof *s->in_lp);
        if (!s->in_lp) {
            seq_free(s);
            goto fail;
        }
        r->seqs[r->n_seqs++] = s;
    }
    r->seqs_left = r->n_seqs;
    rc = queue_req(e, r, id);
    if (rc) goto fail;
    return 0;
fail:
    req_free(r);
    return rc;
}

int eng_cancel(Engine *e, uint64_t id)
{
    if (!e) return ERR_ARG;
    pthread_mutex_lock(&e->out_mu);
    int found = 0;
    for (int i = 0; i < e->n_live && !found; i++) found = e->live[i] == id;
    pthread_mutex_unlock(&e->out_mu);
    if (!found) {
        set_last_error(e, "request %llu is not in flight", (unsigned long long)id);
        return ERR_NOT_FOUND;
    }
    Msg *m = calloc(1, sizeof *m);
    if (!m) return ERR_NOMEM;
    m->kind = MSG_CANCEL;
    m->id = id;
    push_msg(e, m);
    return 0;
}

int eng_flush_cache(Engine *e)
{
    if (!e) return ERR_ARG;
    Msg *m = calloc(1, sizeof *m);
    if (!m) return ERR_NOMEM;
    m->kind = MSG_FLUSH;
    push_msg(e, m);
    return 0;
}

/* ---- publishing (engine thread) ----------------------------------------------- */

static void publish(Engine *e, Event *ev)
{
    pthread_mutex_lock(&e->out_mu);
    if (e->out_tail) e->out_tail->next = ev;
    else e->out_head = ev;
    e->out_tail = ev;
    e->n_published++;
    pthread_cond_broadcast(&e->out_cv);
    pthread_mutex_unlock(&e->out_mu);
}

static void wake_consumer(Engine *e)
{
    if (e->async) uv_async_send(&e->async->handle);
    else if (e->opt.notify) e->opt.notify(e->opt.notify_ud);
}

/* Sends the ids generated since the last delta and the text released now.
 * A failed allocation drops the delta (the final result still has it all). */
void eng_publish_delta(Engine *e, Seq *s, const char *text, size_t len)
{
    Req *r = s->req;
    int n = s->n_gen - s->streamed;
    if (!r->on_delta || (n <= 0 && len == 0)) return;
    Event *ev = calloc(1, sizeof *ev);
    if (!ev) return;
    ev->kind = EV_DELTA;
    ev->on_delta = r->on_delta;
    ev->ud = r->ud;
    ev->id = r->id;
    ev->n_ids = n;
    ev->ids = malloc((size_t)(n ? n : 1) * sizeof *ev->ids);
    ev->text = malloc(len + 1);
    if (s->want_lp) ev->lp = malloc((size_t)(n ? n : 1) * sizeof *ev->lp);
    if (s->top_n) {
        ev->top_n = s->top_n;
        ev->top = malloc((size_t)(n ? n : 1) * (size_t)s->top_n * sizeof *ev->top);
    }
    if (!ev->ids || !ev->text || (s->want_lp && !ev->lp) || (s->top_n && !ev->top)) {
        free(ev->ids);
        free(ev->text);
        free(ev->lp);
        free(ev->top);
        free(ev);
        return;
    }
    memcpy(ev->ids, s->toks + s->n_prompt + s->streamed, (size_t)n * sizeof *ev->ids);
    if (s->want_lp) memcpy(ev->lp, s->out_lp + s->streamed, (size_t)n * sizeof *ev->lp);
    if (s->top_n)
        memcpy(ev->top, s->top + (size_t)s->streamed * (size_t)s->top_n, (size_t)n * (size_t)s->top_n * sizeof *ev->top);
    memcpy(ev->text, text, len);
    ev->text[len] = 0;
    ev->len = len;
    s->streamed = s->n_gen;
    publish(e, ev);
}

static void remove_active(Engine *e, Req *r)
{
    for (int i = 0; i < e->n_active; i++)
        if (e->active[i] == r) {
            e->active[i] = e->active[--e->n_active];
            return;
        }
}

/* The request is complete. It is handed to the consumer only at the end of
 * the loop iteration (flush_complete): after that the engine thread must
 * not touch it, and code that finished it may still be looking at it. */
void eng_mark_complete(Engine *e, Req *r)
{
    if (r->complete) return;
    r->complete = 1;
    e->st.requests++;       /* counted here, before the step's snapshot */
    if (e->done_tail) e->done_tail->next_complete = r;
    else e->done_head = r;
    e->done_tail = r;
}

static void flush_complete(Engine *e)
{
    Req *r = e->done_head;
    e->done_head = e->done_tail = NULL;
    while (r) {
        Req *next = r->next_complete;
        remove_active(e, r);
        r->done_ev.kind = EV_DONE;
        r->done_ev.req = r;
        publish(e, &r->done_ev);
        r = next;
    }
}

/* ---- the thread ------------------------------------------------------------------- */

static void take_messages(Engine *e, Msg *m)
{
    while (m) {
        Msg *next = m->next;
        if (m->kind == MSG_REQ) {
            sched_start_req(e, m->req);
        } else if (m->kind == MSG_FLUSH) {
            radix_evict(e->tree, radix_evictable(e->tree));   /* locked prefixes of running requests stay */
        } else {
            for (int i = 0; i < e->n_active; i++)
                if (e->active[i]->id == m->id) {
                    sched_cancel_req(e, e->active[i]);
                    break;
                }
        }
        free(m);
        m = next;
    }
}

static void snapshot(Engine *e)
{
    EngStats s = e->st;
    s.hit_rate = s.prompt_tokens ? (double)s.cached_tokens / (double)s.prompt_tokens : 0;
    s.gen_tokens_per_s = s.busy_seconds > 0 ? (double)s.generated_tokens / s.busy_seconds : 0;
    radix_stats(e->tree, &s.kv);
    pthread_mutex_lock(&e->st_mu);
    e->snap = s;
    pthread_mutex_unlock(&e->st_mu);
}

static void *engine_main(void *arg)
{
    Engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->in_mu);
        while (!e->stopping && !e->in_head && e->n_running == 0 && e->n_waiting == 0 && !eng_flight_live(e))
            pthread_cond_wait(&e->in_cv, &e->in_mu);
        Msg *m = e->in_head;
        e->in_head = e->in_tail = NULL;
        int stopping = e->stopping;
        pthread_mutex_unlock(&e->in_mu);

        /* a count, not the tail pointer: the consumer may drain and free the
         * tail during the step and the next event reuse its address */
        pthread_mutex_lock(&e->out_mu);
        uint64_t before = e->n_published;
        pthread_mutex_unlock(&e->out_mu);

        take_messages(e, m);
        if (stopping) {
            eng_flight_drain(e);
            for (int i = 0; i < e->n_active; i++) sched_cancel_req(e, e->active[i]);
            snapshot(e);
            flush_complete(e);
            wake_consumer(e);
            return NULL;
        }
        eng_step(e);
        if (e->opt.check_each_step) {
            char msg[256];
            if (radix_check(e->tree, msg, sizeof msg) != 0 && e->st.check_failures++ == 0)
                snprintf(e->st.check_error, sizeof e->st.check_error, "%s", msg);
        }
        /* the snapshot first: a consumer that reads stats right after its
         * last callback sees the state that callback came from */
        snapshot(e);
        flush_complete(e);

        pthread_mutex_lock(&e->out_mu);
        int fresh = e->n_published != before;
        pthread_mutex_unlock(&e->out_mu);
        if (fresh) wake_consumer(e);
    }
}

/* ---- consumer side ----------------------------------------------------------------- */

static void deliver_done(Engine *e, Req *r)
{
    if (r->kind == REQ_GEN) {
        Seq *s = r->seqs[0];
        size_t len = 0;
        const char *text = s->dt ? detok_text(s->dt, &len) : "";
        /* ids wholly inside the text: their pieces' bytes are a prefix of it */
        int text_ids = 0;
        size_t off = 0;
        for (int i = 0; i < s->n_gen; i++) {
            size_t pl;
            const char *piece = tok_token_piece(e->tok, s->toks[s->n_prompt + i], &pl);
            if (!piece || off + pl > len || memcmp(text + off, piece, pl) != 0) break;
            off += pl;
            text_ids = i + 1;
        }
        EngResult res = {
            .id = r->id,
            .status = r->status,
            .error = r->status ? r->error : NULL,
            .finish = s->finish,
            .finish_reason = eng_finish_name(s->finish),
            .prompt_ids = r->prompt,
            .n_prompt = r->n_prompt,
            .ids = s->toks + s->n_prompt,
            .n_ids = s->n_gen,
            .text_ids = text_ids,
            .text = text,
            .len = len,
            .logprobs = s->want_lp ? s->out_lp : NULL,
            .n_logprobs = s->want_lp ? s->n_gen : 0,
            .top = s->top_n ? s->top : NULL,
            .top_per_token = s->top_n,
            .input_logprobs = s->in_lp && s->lp_from >= 1 ? s->in_lp + s->lp_from : NULL,
            .n_input_logprobs = s->in_lp && s->lp_from >= 1 ? r->n_prompt - s->lp_from : 0,
            .input_top = s->in_top && s->lp_from >= 1 ? s->in_top + (size_t)s->lp_from * (size_t)s->in_top_n : NULL,
            .input_top_per_token = s->in_top ? s->in_top_n : 0,
            .prompt_tokens = r->prompt_tokens ? r->prompt_tokens : r->n_prompt,
            .cached_tokens = r->cached_tokens,
            .completion_tokens = s->n_gen,
        };
        r->on_done(r->ud, &res);
    } else {
        const float **lp = (const float **)r->clp;
        const float **ulp = r->unconditional ? (const float **)r->culp : NULL;
        EngScoreResult res = {
            .id = r->id,
            .status = r->status,
            .error = r->status ? r->error : NULL,
            .n_choices = r->n_choices,
            .n_tokens = r->clen,
            .tokens = (const int32_t *const *)r->ctoks,
            .logprobs = lp,
            .unconditional = ulp,
            .prompt_tokens = r->prompt_tokens ? r->prompt_tokens : r->n_prompt,
            .cached_tokens = r->cached_tokens,
        };
        r->on_score(r->ud, &res);
    }
}

int eng_poll(Engine *e)
{
    pthread_mutex_lock(&e->out_mu);
    Event *ev = e->out_head;
    e->out_head = e->out_tail = NULL;
    pthread_mutex_unlock(&e->out_mu);
    int done = 0;
    while (ev) {
        Event *next = ev->next;
        if (ev->kind == EV_DELTA) {
            EngDelta d = {.id = ev->id, .ids = ev->ids, .n_ids = ev->n_ids, .logprobs = ev->lp, .top = ev->top,
                          .top_per_token = ev->top_n, .text = ev->text, .len = ev->len};
            ev->on_delta(ev->ud, &d);
            free(ev->ids);
            free(ev->lp);
            free(ev->top);
            free(ev->text);
        } else {
            Req *r = ev->req;
            /* no longer cancellable; counted out of flight before the
             * callback so that it may submit and wait again */
            pthread_mutex_lock(&e->out_mu);
            for (int i = 0; i < e->n_live; i++)
                if (e->live[i] == r->id) {
                    e->live[i] = e->live[--e->n_live];
                    break;
                }
            pthread_mutex_unlock(&e->out_mu);
            deliver_done(e, r);
            req_free(r);   /* the event lives in the request */
            done++;
            ev = next;
            continue;
        }
        free(ev);
        ev = next;
    }
    return done;
}

int eng_wait(Engine *e)
{
    for (;;) {
        pthread_mutex_lock(&e->out_mu);
        while (!e->out_head) {
            if (e->n_live == 0) {
                pthread_mutex_unlock(&e->out_mu);
                return -1;
            }
            pthread_cond_wait(&e->out_cv, &e->out_mu);
        }
        pthread_mutex_unlock(&e->out_mu);
        int n = eng_poll(e);
        if (n > 0) return n;
    }
}

int eng_in_flight(const Engine *e)
{
    Engine *m = (Engine *)e;
    pthread_mutex_lock(&m->out_mu);
    int n = m->n_live;
    pthread_mutex_unlock(&m->out_mu);
    return n;
}

void eng_stats(Engine *e, EngStats *out)
{
    pthread_mutex_lock(&e->st_mu);
    *out = e->snap;
    pthread_mutex_unlock(&e->st_mu);
}

static void on_async(uv_async_t *h)
{
    Engine *e = h->data;
    if (e) eng_poll(e);
}

static void on_async_closed(uv_handle_t *h)
{
    free(h);   /* the AsyncBox: handle is its first member */
}

/* ---- lifetime --------------------------------------------------------------------- */

Engine *eng_new(Model *model, Tokenizer *tok, const EngOptions *o, char *err, size_t errcap)
{
    EngOptions def;
    if (!o) {
        eng_options_default(&def);
        o = &def;
    }
    if (!model || !tok) {
        if (err) snprintf(err, errcap, "engine: a model and a tokenizer are required");
        return NULL;
    }
    if (o->chunk_size <= 0 || o->max_running < 0 || o->n_slots < 0 || o->decode_reserve < 0) {
        if (err) snprintf(err, errcap, "engine: chunk_size must be positive, max_running, n_slots and decode_reserve not negative");
        return NULL;
    }
    if (!(o->itl_target_ms >= 0) && o->itl_target_ms != ENG_ITL_TARGET_AUTO) {
        if (err) snprintf(err, errcap, "engine: itl_target_ms must be 0 (off), positive or ENG_ITL_TARGET_AUTO");
        return NULL;
    }
    Engine *e = calloc(1, sizeof *e);
    if (!e) {
        if (err) snprintf(err, errcap, "engine: out of memory");
        return NULL;
    }
    e->model = model;
    e->tok = tok;
    e->opt = *o;
    if (!e->opt.max_running) e->opt.max_running = model_on_device(model) ? ENG_MAX_RUNNING_DEVICE : ENG_MAX_RUNNING_HOST;
    if (e->opt.itl_target_ms == ENG_ITL_TARGET_AUTO)
        e->opt.itl_target_ms = model_on_device(model) ? ENG_DEFAULT_ITL_TARGET_MS : ENG_DEFAULT_ITL_TARGET_MS_HOST;
    sched_pace_init(&e->pace, e->opt.itl_target_ms);
    if (e->opt.mask_overlap < 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        e->opt.mask_overlap = model_on_device(model) || (o->n_threads > 0 && o->n_threads < cores);
    }
    const ModelConfig *c = &model->cfg;
    e->vocab = c->vocab;
    int32_t tv = tok_vocab_size(tok);
    e->n_sample = tv > 0 && tv < c->vocab ? tv : c->vocab;
    e->eog = tok_eog_ids(tok, &e->n_eog);
    pthread_mutex_init(&e->in_mu, NULL);
    pthread_cond_init(&e->in_cv, NULL);
    pthread_mutex_init(&e->out_mu, NULL);
    pthread_cond_init(&e->out_cv, NULL);
    pthread_mutex_init(&e->st_mu, NULL);
    pthread_mutex_init(&e->err_mu, NULL);
    pthread_mutex_init(&e->cv_mu, NULL);
    samp_rng_seed(&e->seed_rng, o->seed);

    /* the model's backend and activations first: on a device backend they
     * come before the KV pool in the memory plan (model.h) */
    model_set_threads(model, o->n_threads);
    model_set_batch_invariant(model, o->batch_invariant != 0);
    if (model_reserve(model, o->chunk_size + e->opt.max_running, e->opt.max_running + 64, err, errcap)) goto fail;
    {
        /* (the sharded path on one device, tp_comm named with tp 1, is tp too) */
        int one_device = model_on_device(model) && model_tp_ranks(model) <= 1 && !model_tp_comm_name(model);
        if (e->opt.overlap > 0 && !one_device) {
            if (err) snprintf(err, errcap, "engine: the overlap scheduler needs the model on one device (%s%s)",
                              model_backend_name(model), model_tp_ranks(model) > 1 ? ", tensor parallel" : "");
            goto fail;
        }
        e->overlap_on = e->opt.overlap != 0 && one_device;
    }
    int kv_dim = c->n_head_kv * c->head_dim;
    int n_slots = o->n_slots;
    if (n_slots == 0) {
        if (o->kv_bytes) {
            size_t per = kv_bytes(c->n_layer, 1, kv_dim, o->kv_dtype);
            size_t n = per ? o->kv_bytes / per : 0;
            n_slots = n > INT32_MAX / 2 ? INT32_MAX / 2 : (int)n;
        } else if (model_on_device(model)) {
            n_slots = model_kv_slots(model);
        } else {
            n_slots = c->max_ctx < 16384 ? c->max_ctx : 16384;
        }
    }
    if (n_slots < 2) {
        if (err) snprintf(err, errcap, "engine: KV cache of %d slots is too small", n_slots);
        goto fail;
    }
    e->kv = model_kv_new(model, n_slots, o->kv_dtype, err, errcap);
    if (!e->kv) goto fail;
    e->tree = radix_new(e->kv);
    e->work = samp_work_new(e->vocab);
    if (!e->tree || !e->work) {
        if (err) snprintf(err, errcap, "engine: out of memory");
        goto fail;
    }
    if (o->loop) {
        e->async = calloc(1, sizeof *e->async);
        if (!e->async || uv_async_init(o->loop, &e->async->handle, on_async) != 0) {
            free(e->async);
            e->async = NULL;
            if (err) snprintf(err, errcap, "engine: uv_async_init failed");
            goto fail;
        }
        e->async->handle.data = e;
    }
    snapshot(e);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        if (err) snprintf(err, errcap, "engine: cannot start the engine thread");
        goto fail;
    }
    e->thread_started = 1;
    return e;
fail:
    eng_free(e);
    return NULL;
}

void eng_free(Engine *e)
{
    if (!e) return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->in_mu);
        e->stopping = 1;
        pthread_cond_signal(&e->in_cv);
        pthread_mutex_unlock(&e->in_mu);
        pthread_join(e->thread, NULL);
        eng_mask_free(e);
        eng_poll(e);   /* the cancellations, delivered here */
    }
    if (e->async) {
        e->async->handle.data = NULL;
        uv_close((uv_handle_t *)&e->async->handle, on_async_closed);
    }
    /* requests queued but never taken (the thread never ran) */
    for (Msg *m = e->in_head; m;) {
        Msg *next = m->next;
        if (m->req) req_free(m->req);
        free(m);
        m = next;
    }
    radix_free(e->tree);
    kv_free(e->kv);
    samp_work_free(e->work);
    free(e->waiting);
    free(e->running);
    free(e->active);
    free(e->mseqs);
    free(e->bseqs);
    free(e->mseq_jobs);
    free(e->msamp);
    eng_flight_free(e);
    free(e->dpen);
    free(e->dbias);
    free(e->dallow);
    free(e->live);
    pthread_mutex_destroy(&e->in_mu);
    pthread_cond_destroy(&e->in_cv);
    pthread_mutex_destroy(&e->out_mu);
    pthread_cond_destroy(&e->out_cv);
    pthread_mutex_destroy(&e->st_mu);
    pthread_mutex_destroy(&e->err_mu);
    pthread_mutex_destroy(&e->cv_mu);
    cv_unref(e->cvocab);
    free(e);
}
