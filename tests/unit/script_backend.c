/*
 * tests/unit/script_backend.c — the scripted backend (see the header).
 * Requests wait in a FIFO of in-flight entries until wait() completes them.
 */
#include "script_backend.h"

#include "constrain/constrain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int req;                /* index into reqs */
    rt_gen_cb gen_cb;
    rt_select_cb select_cb;
    void *ud;
} Flight;

struct ScriptBackend {
    RtBackend rt;
    ScriptRequest *reqs;
    int nreqs, capreqs;
    char **answers;
    int nanswers, capanswers, next_answer;
    int *selects;
    int nselects, capselects, next_select;
    char **rule_suffix, **rule_answer;
    int nrules;
    Flight *flight;
    int nflight, capflight;
    int max_flight;
    int batch;
    char *fail_submit, *fail_result;
    double lp[16];
    int nlp;
};

static char *dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) abort();
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *dupz(const char *s) { return s ? dup(s, strlen(s)) : NULL; }

static void *grow(void *p, int *cap, int n, size_t elem)
{
    if (n < *cap) return p;
    *cap = *cap ? *cap * 2 : 16;
    p = realloc(p, (size_t)*cap * elem);
    if (!p) abort();
    return p;
}

static ScriptRequest *new_request(ScriptBackend *sb, const RtPrompt *pr)
{
    sb->reqs = grow(sb->reqs, &sb->capreqs, sb->nreqs, sizeof(ScriptRequest));
    ScriptRequest *r = &sb->reqs[sb->nreqs++];
    memset(r, 0, sizeof *r);
    r->prompt = dup(pr->text ? pr->text : "", pr->len);
    r->nsegs = pr->nsegs < 8 ? pr->nsegs : 8;
    for (int i = 0; i < r->nsegs; i++) r->segs[i] = pr->segs[i];
    r->in_flight_at_completion = -1;
    return r;
}

static int enqueue(ScriptBackend *sb, rt_gen_cb gcb, rt_select_cb scb, void *ud)
{
    sb->flight = grow(sb->flight, &sb->capflight, sb->nflight, sizeof(Flight));
    Flight *f = &sb->flight[sb->nflight++];
    f->req = sb->nreqs - 1;
    f->gen_cb = gcb;
    f->select_cb = scb;
    f->ud = ud;
    if (sb->nflight > sb->max_flight) sb->max_flight = sb->nflight;
    return 0;
}

static int refuse(ScriptBackend *sb)
{
    if (!sb->fail_submit) return 0;
    free((char *)sb->rt.last_error);
    sb->rt.last_error = sb->fail_submit;
    sb->fail_submit = NULL;
    return 1;
}

static int s_gen(void *ctx, const RtPrompt *pr, const RtGenParams *p, rt_gen_cb cb, void *ud)
{
    ScriptBackend *sb = ctx;
    if (refuse(sb)) return -1;
    ScriptRequest *r = new_request(sb, pr);
    r->max_tokens = p->max_tokens;
    r->temperature = p->temperature;
    r->nstop = p->nstop < 8 ? p->nstop : 8;
    for (int i = 0; i < r->nstop; i++) r->stop[i] = dupz(p->stop[i]);
    r->constraint = p->constraint;
    if (p->constraint_src) r->constraint_src = dup(p->constraint_src, p->constraint_len);
    if (p->compiled) r->compiled_dump = cg_dump(p->compiled);
    r->logprobs = p->logprobs;
    return enqueue(sb, cb, NULL, ud);
}

static int s_select(void *ctx, const RtPrompt *pr, const char *const *choices, int n, RtSelectMethod m,
                    rt_select_cb cb, void *ud)
{
    ScriptBackend *sb = ctx;
    if (refuse(sb)) return -1;
    ScriptRequest *r = new_request(sb, pr);
    r->is_select = 1;
    r->method = m;
    r->nchoices = n < 8 ? n : 8;
    for (int i = 0; i < r->nchoices; i++) r->choices[i] = dupz(choices[i]);
    return enqueue(sb, NULL, cb, ud);
}

static const char *answer_for(ScriptBackend *sb, const ScriptRequest *r, char *buf, size_t cap)
{
    if (sb->next_answer < sb->nanswers) return sb->answers[sb->next_answer++];
    size_t plen = strlen(r->prompt);
    for (int i = 0; i < sb->nrules; i++) {
        size_t n = strlen(sb->rule_suffix[i]);
        if (n <= plen && memcmp(r->prompt + plen - n, sb->rule_suffix[i], n) == 0) return sb->rule_answer[i];
    }
    snprintf(buf, cap, "gen%d", (int)(r - sb->reqs));
    return buf;
}

static void complete_one(ScriptBackend *sb)
{
    Flight f = sb->flight[0];
    memmove(sb->flight, sb->flight + 1, (size_t)(sb->nflight - 1) * sizeof(Flight));
    ScriptRequest *r = &sb->reqs[f.req];
    r->in_flight_at_completion = sb->nflight;
    sb->nflight--;
    char *err = sb->fail_result;
    sb->fail_result = NULL;
    if (f.gen_cb) {
        RtGenResult res;
        memset(&res, 0, sizeof res);
        char buf[32];
        const char *text = answer_for(sb, r, buf, sizeof buf);
        res.status = err ? 1 : 0;
        res.error = err;
        res.text = err ? NULL : text;
        res.len = err ? 0 : strlen(text);
        res.finish_reason = "stop";
        if (r->logprobs) {
            res.logprobs = sb->lp;
            res.n_logprobs = sb->nlp;
        }
        f.gen_cb(f.ud, &res);
    } else {
        RtSelectResult res;
        memset(&res, 0, sizeof res);
        double scores[8];
        for (int i = 0; i < r->nchoices; i++) scores[i] = -(double)(i + 1);
        res.status = err ? 1 : 0;
        res.error = err;
        res.best = sb->next_select < sb->nselects ? sb->selects[sb->next_select++] : 0;
        res.scores = scores;
        res.nscores = r->nchoices;
        f.select_cb(f.ud, &res);
    }
    free(err);
}

static int s_wait(void *ctx)
{
    ScriptBackend *sb = ctx;
    if (sb->nflight == 0) return -1;
    int n = sb->batch == 0 ? sb->nflight : sb->batch;
    for (int i = 0; i < n && sb->nflight > 0; i++) complete_one(sb);
    return 0;
}


ScriptBackend *script_new(void)
{
    ScriptBackend *sb = calloc(1, sizeof(ScriptBackend));
    if (!sb) abort();
    sb->rt.ctx = sb;
    sb->rt.gen = s_gen;
    sb->rt.select = s_select;
    sb->rt.wait = s_wait;
    sb->batch = 1;
    return sb;
}

void script_free(ScriptBackend *sb)
{
    if (!sb) return;
    for (int i = 0; i < sb->nreqs; i++) {
        ScriptRequest *r = &sb->reqs[i];
        free(r->prompt);
        free(r->constraint_src);
        free(r->compiled_dump);
        for (int j = 0; j < r->nstop; j++) free(r->stop[j]);
        for (int j = 0; j < r->nchoices; j++) free(r->choices[j]);
    }
    free(sb->reqs);
    for (int i = 0; i < sb->nanswers; i++) free(sb->answers[i]);
    free(sb->answers);
    free(sb->selects);
    for (int i = 0; i < sb->nrules; i++) {
        free(sb->rule_suffix[i]);
        free(sb->rule_answer[i]);
    }
    free(sb->rule_suffix);
    free(sb->rule_answer);
    free(sb->flight);
    free(sb->fail_submit);
    free(sb->fail_result);
    free((char *)sb->rt.last_error);
    free(sb);
}

RtBackend *script_backend(ScriptBackend *sb) { return &sb->rt; }

void script_push(ScriptBackend *sb, const char *answer)
{
    sb->answers = grow(sb->answers, &sb->capanswers, sb->nanswers, sizeof(char *));
    sb->answers[sb->nanswers++] = dupz(answer);
}

void script_push_select(ScriptBackend *sb, int best)
{
    sb->selects = grow(sb->selects, &sb->capselects, sb->nselects, sizeof(int));
    sb->selects[sb->nselects++] = best;
}

void script_rule(ScriptBackend *sb, const char *suffix, const char *answer)
{
    sb->rule_suffix = realloc(sb->rule_suffix, (size_t)(sb->nrules + 1) * sizeof(char *));
    sb->rule_answer = realloc(sb->rule_answer, (size_t)(sb->nrules + 1) * sizeof(char *));
    if (!sb->rule_suffix || !sb->rule_answer) abort();
    sb->rule_suffix[sb->nrules] = dupz(suffix);
    sb->rule_answer[sb->nrules] = dupz(answer);
    sb->nrules++;
}

void script_fail_next_submit(ScriptBackend *sb, const char *msg)
{
    free(sb->fail_submit);
    sb->fail_submit = dupz(msg);
}

void script_fail_next_result(ScriptBackend *sb, const char *msg)
{
    free(sb->fail_result);
    sb->fail_result = dupz(msg);
}

void script_set_batch(ScriptBackend *sb, int batch) { sb->batch = batch; }

void script_set_logprobs(ScriptBackend *sb, const double *lp, int n)
{
    sb->nlp = n < 16 ? n : 16;
    memcpy(sb->lp, lp, (size_t)sb->nlp * sizeof(double));
}

int script_nrequests(const ScriptBackend *sb) { return sb->nreqs; }
const ScriptRequest *script_request(const ScriptBackend *sb, int i) { return &sb->reqs[i]; }
int script_in_flight(const ScriptBackend *sb) { return sb->nflight; }
int script_max_in_flight(const ScriptBackend *sb) { return sb->max_flight; }
