/*
 * runtime/rt_engine.c — RtBackend over the engine (see rt_engine.h).
 *
 * Each VM request becomes one Pending record that lives from submit to its
 * callback; the engine's callbacks arrive on the VM thread inside wait()
 * (eng_wait), so nothing here needs a lock.
 */
#include "runtime/rt_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CACHE_ENTRIES 256

typedef struct {
    char *text;
    size_t len;
    int32_t *ids;
    int n;
    uint64_t used;
} CacheEntry;

struct RtEngine {
    Engine *e;
    RtBackend be;
    CacheEntry *cache;
    int n_cache, cap_cache;
    uint64_t tick;
    int pending;
    int fired;          /* callbacks run during the current wait() */
    char err[512];
};

typedef enum { P_GEN, P_SELECT, P_GEN_CHOICES } PendKind;

typedef struct {
    RtEngine *r;
    PendKind kind;
    EngSelectMethod method;
    rt_gen_cb gen_cb;
    rt_select_cb sel_cb;
    void *ud;
    char *prompt;       /* the prompt text, for the token cache (P_GEN) */
    size_t prompt_len;
    char **choices;     /* P_GEN_CHOICES: texts to return */
    int n_choices;
} Pending;

static void pending_free(Pending *p)
{
    if (!p) return;
    free(p->prompt);
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

/* ---- the token cache --------------------------------------------------------- */

/* Longest recorded text that starts the prompt, or NULL. */
static CacheEntry *cache_lookup(RtEngine *r, const char *text, size_t len)
{
    CacheEntry *best = NULL;
    for (int i = 0; i < r->n_cache; i++) {
        CacheEntry *c = &r->cache[i];
        if (c->len <= len && (!best || c->len > best->len) && memcmp(c->text, text, c->len) == 0) best = c;
    }
    if (best) best->used = ++r->tick;
    return best;
}

/* Records text[0..len) = a ++ b. Silently skipped when out of memory: the
 * cache only saves work. */
static void cache_put(RtEngine *r, const char *t1, size_t l1, const char *t2, size_t l2, const int32_t *a, int na,
                      const int32_t *b, int nb)
{
    if (r->cap_cache == 0) return;
    CacheEntry *slot = NULL;
    for (int i = 0; i < r->n_cache; i++)
        if (r->cache[i].len == l1 + l2 && memcmp(r->cache[i].text, t1, l1) == 0 &&
            memcmp(r->cache[i].text + l1, t2, l2) == 0) {
            r->cache[i].used = ++r->tick;
            return;   /* same text: keep the first tokenization */
        }
    char *text = malloc(l1 + l2 + 1);
    int32_t *ids = malloc((size_t)(na + nb + 1) * sizeof *ids);
    if (!text || !ids) {
        free(text);
        free(ids);
        return;
    }
    memcpy(text, t1, l1);
    memcpy(text + l1, t2, l2);
    text[l1 + l2] = 0;
    memcpy(ids, a, (size_t)na * sizeof *ids);
    if (nb) memcpy(ids + na, b, (size_t)nb * sizeof *ids);
    if (r->n_cache < r->cap_cache) {
        slot = &r->cache[r->n_cache++];
    } else {
        slot = &r->cache[0];
        for (int i = 1; i < r->n_cache; i++)
            if (r->cache[i].used < slot->used) slot = &r->cache[i];
        free(slot->text);
        free(slot->ids);
    }
    slot->text = text;
    slot->len = l1 + l2;
    slot->ids = ids;
    slot->n = na + nb;
    slot->used = ++r->tick;
}

/* The prompt's ids (malloc'd into *out): a recorded prefix's ids plus the
 * rest tokenized, or the whole text tokenized with the model's BOS. */
static int prompt_ids(RtEngine *r, const RtPrompt *pr, int32_t **out, int *n)
{
    const Tokenizer *tk = eng_tokenizer(r->e);
    const char *text = pr->text ? pr->text : "";
    CacheEntry *c = cache_lookup(r, text, pr->len);
    TokIds v = {0};
    int rc;
    if (c) {
        v.ids = malloc((size_t)(c->n + 16) * sizeof *v.ids);
        if (!v.ids) return fail(r, "out of memory");
        v.cap = (size_t)c->n + 16;
        memcpy(v.ids, c->ids, (size_t)c->n * sizeof *v.ids);
        v.n = (size_t)c->n;
        rc = tok_encode((Tokenizer *)tk, text + c->len, pr->len - c->len, TOK_ENC_PARSE_SPECIAL, &v);
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
    if (res->status == 0 && res->finish != ENG_FINISH_CANCELLED) {
        /* prompt text + the generated ids' text -> their ids */
        size_t covered = 0;
        for (int i = 0; i < res->text_ids; i++) {
            size_t pl;
            tok_token_piece(eng_tokenizer(r->e), res->ids[i], &pl);
            covered += pl;
        }
        cache_put(r, p->prompt, p->prompt_len, res->text, covered, res->prompt_ids, res->n_prompt, res->ids,
                  res->text_ids);
    }
    r->pending--;
    r->fired++;
    p->gen_cb(p->ud, &out);
    free(lp);
    pending_free(p);
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
    r->pending--;
    r->fired++;
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
    if (prompt_ids(r, pr, &ids, &nids)) return -1;
    EngScoreParams sp = {
        .prompt_ids = ids,
        .n_prompt_ids = nids,
        .choices = choices,
        .n_choices = n,
        .unconditional = p->method == ENG_SELECT_UNCONDITIONAL_LIKELIHOOD_NORMALIZED,
        .on_done = on_score_done,
        .ud = p,
    };
    int rc = eng_score(r->e, &sp, NULL);
    free(ids);
    if (rc) {
        snprintf(r->err, sizeof r->err, "%s", eng_last_error(r->e));
        r->be.last_error = r->err;
        return -1;
    }
    r->pending++;
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

static int be_gen(void *ctx, const RtPrompt *pr, const RtGenParams *params, rt_gen_cb cb, void *ud)
{
    RtEngine *r = ctx;
    if (!pr || !params || !cb) return fail(r, "gen needs a prompt, parameters and a callback");
    Pending *p = calloc(1, sizeof *p);
    if (!p) return fail(r, "out of memory");
    p->r = r;
    p->gen_cb = cb;
    p->ud = ud;

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
        pending_free(p);
        return fail(r, "gen: regex, json, grammar and type constraints need structured generation, "
                       "which this runtime does not have yet");
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
    if (prompt_ids(r, pr, &ids, &nids)) {
        pending_free(p);
        return -1;
    }
    EngGenParams gp;
    eng_gen_params_default(&gp);
    rt_engine_sampling(&gp.sampling, params);
    gp.prompt_ids = ids;
    gp.n_prompt_ids = nids;
    gp.stop = params->stop;
    gp.n_stop = params->nstop;
    gp.on_done = on_gen_done;
    gp.ud = p;
    int rc = eng_submit(r->e, &gp, NULL);
    free(ids);
    if (rc) {
        snprintf(r->err, sizeof r->err, "%s", eng_last_error(r->e));
        r->be.last_error = r->err;
        pending_free(p);
        return -1;
    }
    r->pending++;
    return 0;
}

static int be_wait(void *ctx)
{
    RtEngine *r = ctx;
    if (r->pending == 0) return -1;
    r->fired = 0;
    while (r->fired == 0) {
        /* other users of the engine may own what arrives; keep pumping
         * until one of ours has run */
        if (eng_wait(r->e) < 0) return r->fired ? 0 : -1;
    }
    return 0;
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
    r->cap_cache = o && o->token_cache_entries > 0 ? o->token_cache_entries : DEFAULT_CACHE_ENTRIES;
    r->cache = calloc((size_t)r->cap_cache, sizeof *r->cache);
    if (!r->cache) {
        rt_engine_free(r);
        if (err) snprintf(err, errcap, "out of memory");
        return NULL;
    }
    r->be.ctx = r;
    r->be.gen = be_gen;
    r->be.select = be_select;
    r->be.wait = be_wait;
    r->be.chat_template = be_chat_template;
    return r;
}

void rt_engine_free(RtEngine *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_cache; i++) {
        free(r->cache[i].text);
        free(r->cache[i].ids);
    }
    free(r->cache);
    free(r);
}

RtBackend *rt_engine_backend(RtEngine *r) { return &r->be; }
int rt_engine_pending(const RtEngine *r) { return r->pending; }
