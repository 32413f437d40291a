/*
 * runtime/rt_engine.c — RtBackend over the engine (see rt_engine.h).
 *
 * Each VM request becomes one Pending record that lives from submit to its
 * callback; the engine's callbacks arrive on the VM thread inside wait()
 * (eng_wait), so nothing here needs a lock. Token records (TokRecord,
 * below) live on the VM's prompt states, by reference count, on the same
 * thread.
 */
#include "runtime/rt_engine.h"
#include "runtime/rt_constrain.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MARKS 256

enum { CONSTRAINT_CACHE = 32 };

struct RtEngine {
    Engine *e;
    RtBackend be;
    uint64_t serial;    /* names this RtEngine in the token records it makes */
    int max_marks;      /* RtEngineOptions.token_cache_entries */
    int pending;
    struct Pending *inflight;   /* every Pending from submit to its callback */
    int fired;          /* callbacks run during the current wait() */
    char err[512];
    /* compiled constraints by (kind, source), most recent first: a gen in
     * a loop compiles its regex or schema once */
    struct {
        RtConstraintKind kind;
        char *src;
        size_t len;
        CGrammar *g;
    } cons[CONSTRAINT_CACHE];
    int n_cons;
};

/* RtEngine serials: unique for the process, so that a record can never be
 * taken for another (freed) RtEngine's. */
static atomic_uint_fast64_t serials;

typedef enum { P_GEN, P_SELECT, P_GEN_CHOICES } PendKind;

typedef struct TokRecord TokRecord;

typedef struct Pending {
    RtEngine *r;
    struct Pending *prev, *next;   /* RtEngine.inflight, once submitted */
    uint64_t id;        /* the engine's request id */
    void (*on_delta)(void *ud, const char *text, size_t len);
    PendKind kind;
    EngSelectMethod method;
    rt_gen_cb gen_cb;
    rt_select_cb sel_cb;
    void *ud;
    char *prompt;       /* the prompt text, for the new token record (P_GEN) */
    size_t prompt_len;
    TokRecord *base;    /* P_GEN: the state's record its ids came from (held), or NULL */
    int kept;           /* how many of base's marks the prompt starts with */
    char **choices;     /* P_GEN_CHOICES: texts to return */
    int n_choices;
} Pending;

static void record_release(RtTokens *t);

static void inflight_add(RtEngine *r, Pending *p)
{
    p->prev = NULL;
    p->next = r->inflight;
    if (r->inflight) r->inflight->prev = p;
    r->inflight = p;
    r->pending++;
}

/* The callback is about to run: p leaves the in-flight list. */
static void inflight_remove(RtEngine *r, Pending *p)
{
    if (p->prev) p->prev->next = p->next;
    else r->inflight = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
    r->pending--;
    r->fired++;
}

static void pending_free(Pending *p)
{
    if (!p) return;
    free(p->prompt);
    if (p->base) record_release((RtTokens *)p->base);
    for (int i = 0; i < p->n_choices; i++) free(p->choices[i]);
    free(p->choices);
    free(p);
}

static char *dup_str(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static int fail(RtEngine *r, const char *msg)
{
    snprintf(r->err, sizeof r->err, "%s", msg);
    r->be.last_error = r->err;
    return -1;
}

/* ---- the VM's request types -> the engine's ---------------------------------- */

void rt_engine_sampling(SampParams *p, const RtGenParams *rt)
{
    p->temperature = (float)rt->temperature;
    p->top_k = rt->top_k > 0 ? rt->top_k : 0;
    p->top_p = (float)rt->top_p;
    p->min_p = (float)rt->min_p;
    p->repetition_penalty = (float)rt->repetition_penalty;
    p->frequency_penalty = (float)rt->frequency_penalty;
    p->presence_penalty = (float)rt->presence_penalty;
    p->has_seed = rt->has_seed;
    p->seed = rt->seed;
    p->logprobs = rt->logprobs;
    p->top_logprobs = rt->top_logprobs;
    p->max_tokens = rt->max_tokens;
    p->min_tokens = rt->min_tokens;
    p->ignore_eos = rt->ignore_eos;
    p->stop_ids = rt->stop_token_ids;
    p->n_stop = rt->nstop_token_ids;
}

/* 0 and the engine's method, or -1 for a value outside RtSelectMethod. */
static int select_method(RtSelectMethod m, EngSelectMethod *out)
{
    switch (m) {
    case RT_SELECT_TOKEN_LENGTH_NORMALIZED: *out = ENG_SELECT_TOKEN_LENGTH_NORMALIZED; return 0;
    case RT_SELECT_GREEDY_TOKEN: *out = ENG_SELECT_GREEDY_TOKEN; return 0;
    case RT_SELECT_UNCONDITIONAL_LIKELIHOOD_NORMALIZED:
        *out = ENG_SELECT_UNCONDITIONAL_LIKELIHOOD_NORMALIZED;
        return 0;
    }
    return -1;
}

/* ---- the prompt state's token record -------------------------------------------
 *
 * What the VM keeps on a prompt state (RtTokens): the ids this backend sent
 * for a prefix of the state's text, with a mark where each gen ended.
 *
 *   text   [0 .............. m0 ..................... m1)
 *   ids    [0 .......... n0)[n0 .................. n1)
 *   marks  (m0, n0) prompt 1 + its generated text, (m1, n1) prompt 2 + ...
 *
 * text[0..marks[i].len) went to the engine as ids[0..marks[i].n), the
 * generated part as the ids the model generated (only those wholly inside
 * the returned text). A prompt that starts with text[0..m) for a mark m
 * reuses those ids and tokenizes only the rest (without BOS), exactly as
 * the engine saw it before: so the radix cache matches from there on, and
 * model-generated text is not re-tokenized differently. A prompt that
 * starts with no mark is tokenized whole (with the model's BOS).
 *
 * A record is immutable; a finished gen makes a new one (the marks that
 * start its prompt plus one for prompt + generated text) for the VM to put
 * on the state, which shares it with its forks. Marks that do not start a
 * state's prompt are dropped: the state's text only grows, so they never
 * will again. At most max_marks marks are kept (the oldest go first).
 */
typedef struct {
    size_t len;         /* text[0..len) */
    int n;              /* went to the engine as ids[0..n) */
} TokMark;

struct TokRecord {
    RtTokens base;      /* first: all the VM sees */
    int refs;
    uint64_t owner;     /* the serial of the RtEngine that made it */
    char *text;         /* [len]: the last mark's text */
    size_t len;
    int32_t *ids;       /* [n]: the last mark's ids */
    int n;
    TokMark *marks;     /* len and n increasing */
    int n_marks;
};

static void record_retain(RtTokens *t) { ((TokRecord *)t)->refs++; }

static void record_release(RtTokens *t)
{
    TokRecord *rec = (TokRecord *)t;
    if (--rec->refs > 0) return;
    free(rec->text);
    free(rec->ids);
    free(rec->marks);
    free(rec);
}

/* t as one of this RtEngine's records, or NULL: none, another backend's, or
 * another RtEngine's (its ids may be another vocabulary's). */
static TokRecord *record_of(const RtEngine *r, RtTokens *t)
{
    if (!t || t->release != record_release) return NULL;
    TokRecord *rec = (TokRecord *)t;
    return rec->owner == r->serial ? rec : NULL;
}

/* How many marks start text[0..len): marks[0..k) do, the others do not. */
static int record_prefix_marks(const TokRecord *rec, const char *text, size_t len)
{
    size_t lim = rec->len < len ? rec->len : len, same = 0;
    while (same < lim && rec->text[same] == text[same]) same++;
    int k = 0;
    while (k < rec->n_marks && rec->marks[k].len <= same) k++;
    return k;
}

/* The record for prompt + the text its gen produced: base's first `kept`
 * marks (at most max_marks - 1 of them, the newest) and a new last one.
 * NULL when out of memory: the record only saves work. */
static TokRecord *record_after_gen(RtEngine *r, const Pending *p, const EngResult *res)
{
    size_t covered = 0;     /* bytes of the ids wholly inside the text */
    for (int i = 0; i < res->text_ids; i++) {
        size_t pl;
        tok_token_piece(eng_tokenizer(r->e), res->ids[i], &pl);
        covered += pl;
    }
    int first = p->kept + 1 > r->max_marks ? p->kept + 1 - r->max_marks : 0;
    TokRecord *rec = calloc(1, sizeof *rec);
    if (!rec) return NULL;
    rec->len = p->prompt_len + covered;
    rec->n = res->n_prompt + res->text_ids;
    rec->text = malloc(rec->len + 1);
    rec->ids = malloc((size_t)(rec->n + 1) * sizeof *rec->ids);
    rec->marks = malloc((size_t)(p->kept - first + 1) * sizeof *rec->marks);
    if (!rec->text || !rec->ids || !rec->marks) {
        free(rec->text);
        free(rec->ids);
        free(rec->marks);
        free(rec);
        return NULL;
    }
    memcpy(rec->text, p->prompt, p->prompt_len);
    memcpy(rec->text + p->prompt_len, res->text, covered);
    rec->text[rec->len] = 0;
    memcpy(rec->ids, res->prompt_ids, (size_t)res->n_prompt * sizeof *rec->ids);
    if (res->text_ids) memcpy(rec->ids + res->n_prompt, res->ids, (size_t)res->text_ids * sizeof *rec->ids);
    for (int i = first; i < p->kept; i++) rec->marks[rec->n_marks++] = p->base->marks[i];
    /* the same text as the last kept mark: keep the first tokenization */
    if (rec->n_marks == 0 || rec->marks[rec->n_marks - 1].len != rec->len)
        rec->marks[rec->n_marks++] = (TokMark){.len = rec->len, .n = rec->n};
    rec->len = rec->marks[rec->n_marks - 1].len;
    rec->n = rec->marks[rec->n_marks - 1].n;
    rec->refs = 1;
    rec->owner = r->serial;
    rec->base.retain = record_retain;
    rec->base.release = record_release;
    return rec;
}

/* The prompt's ids (malloc'd into *out): the ids of the longest marked
 * prefix in the state's record plus the rest tokenized, or the whole text
 * tokenized with the model's BOS. *base / *kept (may be NULL) receive the
 * record used and how many of its marks start the prompt (NULL / 0: none). */
static int prompt_ids(RtEngine *r, const RtPrompt *pr, int32_t **out, int *n, TokRecord **base, int *kept)
{
    const Tokenizer *tk = eng_tokenizer(r->e);
    const char *text = pr->text ? pr->text : "";
    TokRecord *rec = record_of(r, pr->tokens);
    int k = rec ? record_prefix_marks(rec, text, pr->len) : 0;
    TokIds v = {0};
    int rc;
    if (k > 0) {
        const TokMark *m = &rec->marks[k - 1];
        v.ids = malloc((size_t)(m->n + 16) * sizeof *v.ids);
        if (!v.ids) return fail(r, "out of memory");
        v.cap = (size_t)m->n + 16;
        memcpy(v.ids, rec->ids, (size_t)m->n * sizeof *v.ids);
        v.n = (size_t)m->n;
        rc = tok_encode((Tokenizer *)tk, text + m->len, pr->len - m->len, TOK_ENC_PARSE_SPECIAL, &v);
    } else {
        rc = tok_encode((Tokenizer *)tk, text, pr->len, TOK_ENC_ADD_SPECIAL | TOK_ENC_PARSE_SPECIAL, &v);
    }
    if (rc < 0) {
        tok_ids_free(&v);
        snprintf(r->err, sizeof r->err, "cannot tokenize the prompt: %s", err_str(rc));
        r->be.last_error = r->err;
        return -1;
    }
    if (v.n == 0) {
        tok_ids_free(&v);
        return fail(r, "the prompt is empty and the model adds no BOS token: nothing to continue");
    }
    *out = v.ids;
    *n = (int)v.n;
    if (base) *base = k > 0 ? rec : NULL;
    if (kept) *kept = k;
    return 0;
}

/* ---- callbacks (VM thread, inside wait) ---------------------------------------- */

static void on_gen_done(void *ud, const EngResult *res)
{
    Pending *p = ud;
    RtEngine *r = p->r;
    double *lp = NULL;
    if (res->n_logprobs > 0) {
        lp = malloc((size_t)res->n_logprobs * sizeof *lp);
        if (lp)
            for (int i = 0; i < res->n_logprobs; i++) lp[i] = res->logprobs[i];
    }
    RtGenResult out = {
        .status = res->status,
        .error = res->error,
        .text = res->text,
        .len = res->len,
        .logprobs = lp,
        .n_logprobs = lp ? res->n_logprobs : 0,
        .finish_reason = res->finish_reason,
        .prompt_tokens = res->prompt_tokens,
        .cached_tokens = res->cached_tokens,
        .completion_tokens = res->completion_tokens,
    };
    /* prompt text + the generated ids' text -> their ids, for the state */
    TokRecord *rec = res->status == 0 && res->finish != ENG_FINISH_CANCELLED ? record_after_gen(r, p, res) : NULL;
    out.tokens = rec ? &rec->base : NULL;
    inflight_remove(r, p);
    p->gen_cb(p->ud, &out);
    if (rec) record_release(&rec->base);   /* the VM holds it now, if it kept it */
    free(lp);
    pending_free(p);
}

/* Streamed text: handed on as it is (complete UTF-8, before any stop). */
static void on_gen_delta(void *ud, const EngDelta *d)
{
    Pending *p = ud;
    if (d->len == 0) return;
    p->r->fired++;   /* wait() returns after streamed text too: the embedder may act on it */
    p->on_delta(p->ud, d->text, d->len);
}

static void on_score_done(void *ud, const EngScoreResult *res)
{
    Pending *p = ud;
    RtEngine *r = p->r;
    double *scores = NULL;
    int best = -1;
    int status = res->status;
    const char *error = res->error;
    char msg[128];
    if (status == 0) {
        scores = malloc((size_t)res->n_choices * sizeof *scores);
        best = scores ? eng_select_scores(res, p->method, scores) : ERR_NOMEM;
        if (best < 0) {
            status = best;
            snprintf(msg, sizeof msg, "select: %s", err_str(best));
            error = msg;
        }
    }
    inflight_remove(r, p);
    if (p->kind == P_SELECT) {
        RtSelectResult out = {.status = status, .error = error, .best = best, .scores = scores,
                              .nscores = status ? 0 : res->n_choices};
        p->sel_cb(p->ud, &out);
    } else {
        const char *text = status ? NULL : p->choices[best];
        RtGenResult out = {.status = status, .error = error, .text = text, .len = text ? strlen(text) : 0,
                           .finish_reason = "stop", .prompt_tokens = res->prompt_tokens,
                           .cached_tokens = res->cached_tokens};
        p->gen_cb(p->ud, &out);
    }
    free(scores);
    pending_free(p);
}

/* ---- the backend table ------------------------------------------------------------- */

static int submit_score(RtEngine *r, Pending *p, const RtPrompt *pr, const char *const *choices, int n)
{
    int32_t *ids;
    int nids;
    if (prompt_ids(r, pr, &ids, &nids, NULL, NULL)) return -1;
    EngScoreParams sp = {
        .prompt_ids = ids,
        .n_prompt_ids = nids,
        .choices = choices,
        .n_choices = n,
        .unconditional = p->method == ENG_SELECT_UNCONDITIONAL_LIKELIHOOD_NORMALIZED,
        .on_done = on_score_done,
        .ud = p,
    };
    int rc = eng_score(r->e, &sp, &p->id);
    free(ids);
    if (rc) {
        snprintf(r->err, sizeof r->err, "%s", eng_last_error(r->e));
        r->be.last_error = r->err;
        return -1;
    }
    inflight_add(r, p);
    return 0;
}

static int be_select(void *ctx, const RtPrompt *pr, const char *const *choices, int nchoices, RtSelectMethod method,
                     rt_select_cb cb, void *ud)
{
    RtEngine *r = ctx;
    if (!pr || !cb || nchoices <= 0 || !choices) return fail(r, "select needs a prompt, choices and a callback");
    for (int i = 0; i < nchoices; i++)
        if (!choices[i] || !choices[i][0]) return fail(r, "select: a choice is empty");
    EngSelectMethod em;
    if (select_method(method, &em)) return fail(r, "select: unknown method");
    Pending *p = calloc(1, sizeof *p);
    if (!p) return fail(r, "out of memory");
    p->r = r;
    p->kind = P_SELECT;
    p->method = em;
    p->sel_cb = cb;
    p->ud = ud;
    if (submit_score(r, p, pr, choices, nchoices)) {
        pending_free(p);
        return -1;
    }
    return 0;
}

/* The compiled form of a gen's constraint, from the cache or compiled now
 * (and cached). NULL with r->err set on a bad constraint. Borrowed. */
static CGrammar *constraint_of(RtEngine *r, const RtGenParams *p)
{
    for (int i = 0; i < r->n_cons; i++) {
        if (r->cons[i].kind != p->constraint || r->cons[i].len != p->constraint_len ||
            memcmp(r->cons[i].src, p->constraint_src, p->constraint_len) != 0)
            continue;
        if (i > 0) {   /* move to the front */
            __typeof__(r->cons[0]) hit = r->cons[i];
            memmove(&r->cons[1], &r->cons[0], (size_t)i * sizeof r->cons[0]);
            r->cons[0] = hit;
        }
        return r->cons[0].g;
    }
    CGrammar *g = NULL;
    char msg[480];
    if (rtc_compile(p->constraint, p->constraint_src, p->constraint_len, &g, msg, sizeof msg) != 0) {
        snprintf(r->err, sizeof r->err, "gen: %s", msg);
        r->be.last_error = r->err;
        return NULL;
    }
    char *src = malloc(p->constraint_len + 1);
    if (!src) {
        cg_unref(g);
        snprintf(r->err, sizeof r->err, "out of memory");
        r->be.last_error = r->err;
        return NULL;
    }
    memcpy(src, p->constraint_src, p->constraint_len);
    src[p->constraint_len] = 0;
    if (r->n_cons == CONSTRAINT_CACHE) {
        r->n_cons--;
        free(r->cons[r->n_cons].src);
        cg_unref(r->cons[r->n_cons].g);
    }
    memmove(&r->cons[1], &r->cons[0], (size_t)r->n_cons * sizeof r->cons[0]);
    r->cons[0].kind = p->constraint;
    r->cons[0].src = src;
    r->cons[0].len = p->constraint_len;
    r->cons[0].g = g;
    r->n_cons++;
    return g;
}

static int be_gen(void *ctx, const RtPrompt *pr, const RtGenParams *params, rt_gen_cb cb, void *ud)
{
    RtEngine *r = ctx;
    if (!pr || !params || !cb) return fail(r, "gen needs a prompt, parameters and a callback");
    Pending *p = calloc(1, sizeof *p);
    if (!p) return fail(r, "out of memory");
    p->r = r;
    p->gen_cb = cb;
    p->ud = ud;

    CGrammar *cons = NULL;
    switch (params->constraint) {
    case RT_CONSTRAINT_NONE:
        break;
    case RT_CONSTRAINT_CHOICES:
        if (params->nchoices <= 0 || !params->choices) {
            pending_free(p);
            return fail(r, "gen: choices is empty");
        }
        p->kind = P_GEN_CHOICES;
        p->method = ENG_SELECT_TOKEN_LENGTH_NORMALIZED;
        p->choices = calloc((size_t)params->nchoices, sizeof *p->choices);
        if (!p->choices) {
            pending_free(p);
            return fail(r, "out of memory");
        }
        for (int i = 0; i < params->nchoices; i++) {
            p->n_choices = i + 1;
            if (!params->choices[i] || !params->choices[i][0]) {
                pending_free(p);
                return fail(r, "gen: a choice is empty");
            }
            if (!(p->choices[i] = dup_str(params->choices[i]))) {
                pending_free(p);
                return fail(r, "out of memory");
            }
        }
        if (submit_score(r, p, pr, params->choices, params->nchoices)) {
            pending_free(p);
            return -1;
        }
        return 0;
    default:
        if (!(cons = constraint_of(r, params))) {
            pending_free(p);
            return -1;
        }
        break;
    }

    p->kind = P_GEN;
    p->prompt = malloc(pr->len + 1);
    if (!p->prompt) {
        pending_free(p);
        return fail(r, "out of memory");
    }
    if (pr->len) memcpy(p->prompt, pr->text, pr->len);
    p->prompt[pr->len] = 0;
    p->prompt_len = pr->len;

    int32_t *ids;
    int nids;
    if (prompt_ids(r, pr, &ids, &nids, &p->base, &p->kept)) {
        pending_free(p);
        return -1;
    }
    if (p->base) record_retain(&p->base->base);   /* read again when the gen is done */
    EngGenParams gp;
    eng_gen_params_default(&gp);
    rt_engine_sampling(&gp.sampling, params);
    gp.prompt_ids = ids;
    gp.n_prompt_ids = nids;
    gp.stop = params->stop;
    gp.n_stop = params->nstop;
    gp.constraint = cons;
    gp.on_done = on_gen_done;
    if (params->on_delta) {
        p->on_delta = params->on_delta;
        gp.on_delta = on_gen_delta;
    }
    gp.ud = p;
    int rc = eng_submit(r->e, &gp, &p->id);
    free(ids);
    if (rc) {
        snprintf(r->err, sizeof r->err, "%s", eng_last_error(r->e));
        r->be.last_error = r->err;
        pending_free(p);
        return -1;
    }
    inflight_add(r, p);
    return 0;
}

/* Never blocks: what has arrived for anyone on the engine is delivered. */
static int be_poll(void *ctx)
{
    RtEngine *r = ctx;
    if (r->pending == 0) return -1;
    return eng_poll(r->e);
}

/* 1 when a request in flight streams its text. */
static int streaming(const RtEngine *r)
{
    for (const Pending *p = r->inflight; p; p = p->next)
        if (p->on_delta) return 1;
    return 0;
}

/* eng_wait returns on completions only: while a request streams, poll
 * instead, so that a streamed piece returns too (the engine publishes one
 * per decode step), sleeping 50 us doubling to 2 ms between polls. 1 when
 * something of ours or a completion of anyone's came, 0 when nothing is in
 * flight in the engine. */
static int poll_streaming(RtEngine *r)
{
    long ns = 50000;
    r->fired = 0;
    for (;;) {
        if (eng_poll(r->e) > 0 || r->fired) return 1;
        if (eng_in_flight(r->e) == 0) return 0;
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
        if (ns < 2000000) ns *= 2;
    }
}

int rt_engine_wait_any(RtEngine *r)
{
    if (eng_in_flight(r->e) == 0) return -1;
    if (streaming(r)) return poll_streaming(r) ? 0 : -1;
    return eng_wait(r->e) < 0 ? -1 : 0;
}

static int be_wait(void *ctx)
{
    RtEngine *r = ctx;
    if (r->pending == 0) return -1;
    r->fired = 0;
    while (streaming(r) && r->fired == 0) {
        /* a piece streamed counts as fired: keep on while only others' came */
        if (!poll_streaming(r)) return r->fired ? 0 : -1;
        if (r->pending == 0) return 0;
    }
    while (r->fired == 0) {
        /* other users of the engine may own what arrives; keep pumping
         * until one of ours has run */
        if (eng_wait(r->e) < 0) return r->fired ? 0 : -1;
    }
    return 0;
}

/* The engine fires the request's on_done later (ENG_FINISH_CANCELLED, or
 * its result if it finished first), inside a wait or poll. */
static void be_cancel(void *ctx, void *ud)
{
    RtEngine *r = ctx;
    for (Pending *p = r->inflight; p; p = p->next)
        if (p->ud == ud) {
            (void)eng_cancel(r->e, p->id);   /* not found: its result is on its way */
            return;
        }
}

static const char *be_chat_template(void *ctx)
{
    RtEngine *r = ctx;
    return tok_chat_template(eng_tokenizer(r->e));
}

/* ---- lifetime ------------------------------------------------------------------ */

RtEngine *rt_engine_new(Engine *e, const RtEngineOptions *o, char *err, size_t errcap)
{
    RtEngine *r = calloc(1, sizeof *r);
    if (!r || !e) {
        free(r);
        if (err) snprintf(err, errcap, e ? "out of memory" : "rt_engine: no engine");
        return NULL;
    }
    r->e = e;
    r->serial = atomic_fetch_add(&serials, 1) + 1;
    r->max_marks = o && o->token_cache_entries > 0 ? o->token_cache_entries : DEFAULT_MARKS;
    r->be.ctx = r;
    r->be.gen = be_gen;
    r->be.select = be_select;
    r->be.wait = be_wait;
    r->be.poll = be_poll;
    r->be.chat_template = be_chat_template;
    r->be.cancel = be_cancel;
    return r;
}

void rt_engine_free(RtEngine *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_cons; i++) {
        free(r->cons[i].src);
        cg_unref(r->cons[i].g);
    }
    free(r);   /* its token records live on with the VM's states, and need nothing of it */
}

RtBackend *rt_engine_backend(RtEngine *r) { return &r->be; }
int rt_engine_pending(const RtEngine *r) { return r->pending; }
