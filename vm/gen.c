/*
 * vm/gen.c — gen() and select(): from a call to a backend request and back.
 *
 * A request borrows everything it points at (the prompt text, stop strings,
 * choices) only for the submit call, as runtime/rt.h promises. What the
 * callback needs later (the capture name, the choices) are values in the
 * waiting fiber's argument registers, which the collector sees as live for
 * as long as the fiber waits.
 *
 * gen()'s options are runtime/gen_options.h's RT_GEN_OPTIONS, the one list:
 * a named argument is looked up there and read by the reader of its kind
 * (READ_<kind> below), straight into the RtGenParams field of its name;
 * the defaults come from the same table through rt_gen_params_default.
 */
#include "vm/gen.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "constrain/grammar_syntax.h"
#include "constrain/regex_syntax.h"
#include "runtime/gen_options.h"
#include "vm/json.h"
#include "vm/vm.h"

#define NO_MODEL "no model: pass --model or run make model"
#define MAX_STOPS 64

typedef enum { CONV_NONE, CONV_INT, CONV_FLOAT, CONV_BOOL } Conv;

typedef struct {
    VM *vm;
    Fiber *f;
    Value name;             /* string or nil */
    Conv conv;
    int append_text;        /* type: and appended: the call yields the text, the var the value */
    int logprobs;
    ObjList *choices;       /* select */
    const char *fn;         /* "gen" or "select", for messages */
} Pending;

/* ---- the prompt ---- */

/* Fills *pr from the state; the segment array is malloc'd (caller frees). */
static int make_prompt(ObjState *s, RtPrompt *pr, RtSegment **segs)
{
    *segs = NULL;
    if (s->nsegs > 0) {
        *segs = malloc((size_t)s->nsegs * sizeof(RtSegment));
        if (!*segs) return -1;
        for (int i = 0; i < s->nsegs; i++) {
            (*segs)[i].role = s->segs[i].role;
            (*segs)[i].start = s->segs[i].start;
            (*segs)[i].end = s->segs[i].end == SIZE_MAX ? s->len : s->segs[i].end;
        }
    }
    pr->text = s->text ? s->text : "";
    pr->len = s->len;
    pr->segs = *segs;
    pr->nsegs = s->nsegs;
    pr->tokens = s->tokens;
    return 0;
}

static int in_assistant(const ObjState *s)
{
    return s->nsegs > 0 && s->segs[s->nsegs - 1].end == SIZE_MAX && s->segs[s->nsegs - 1].role == ROLE_ASSISTANT;
}

/* ---- option checks ---- */

static int want_num(VM *vm, const char *fn, const char *opt, Value v, double *out)
{
    if (v.type == V_INT) *out = (double)v.as.i;
    else if (v.type == V_FLOAT) *out = v.as.f;
    else return vm_raise(vm, "%s(): %s must be a number, not %s", fn, opt, val_type_name(v));
    return 0;
}

static int want_int(VM *vm, const char *fn, const char *opt, Value v, int64_t lo, int64_t hi, int64_t *out)
{
    if (v.type != V_INT) return vm_raise(vm, "%s(): %s must be an int, not %s", fn, opt, val_type_name(v));
    if (v.as.i < lo || v.as.i > hi)
        return vm_raise(vm, "%s(): %s must be between %lld and %lld, not %lld", fn, opt, (long long)lo, (long long)hi,
                        (long long)v.as.i);
    *out = v.as.i;
    return 0;
}

static int want_bool(VM *vm, const char *fn, const char *opt, Value v, int *out)
{
    if (v.type != V_BOOL) return vm_raise(vm, "%s(): %s must be true or false, not %s", fn, opt, val_type_name(v));
    *out = v.as.b;
    return 0;
}

static int want_choices(VM *vm, const char *fn, Value v, ObjList **out)
{
    if (!VAL_IS_LIST(v)) return vm_raise(vm, "%s(): choices must be a list of strings, not %s", fn, val_type_name(v));
    ObjList *l = AS_LIST(v);
    if (l->len == 0) return vm_raise(vm, "%s(): choices must not be empty", fn);
    for (size_t i = 0; i < l->len; i++)
        if (!VAL_IS_STRING(l->items[i]))
            return vm_raise(vm, "%s(): choices must be strings, item %zu is %s", fn, i, val_type_name(l->items[i]));
    *out = l;
    return 0;
}

/* ---- completion ---- */

static int convert(Pending *pd, const char *text, size_t len, Value *out, char *err, size_t errcap)
{
    /* the constrained output may still carry surrounding spaces */
    while (len && (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r')) { text++; len--; }
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\n' || text[len - 1] == '\t' || text[len - 1] == '\r')) len--;
    char buf[128];
    const char *want = pd->conv == CONV_INT ? "an int" : pd->conv == CONV_FLOAT ? "a float" : "a bool";
    if (len == 0 || len >= sizeof buf) goto bad;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    if (pd->conv == CONV_INT) {
        long long v = strtoll(buf, &end, 10);
        if (*end || errno == ERANGE) goto bad;
        *out = val_int(v);
    } else if (pd->conv == CONV_FLOAT) {
        double v = strtod(buf, &end);
        if (*end) goto bad;
        *out = val_float(v);
    } else {
        if (strcasecmp(buf, "true") == 0) *out = val_bool(true);
        else if (strcasecmp(buf, "false") == 0) *out = val_bool(false);
        else goto bad;
    }
    return 0;
bad:
    snprintf(err, errcap, "%s(): the model's output \"%.*s\" is not %s", pd->fn, (int)(len > 60 ? 60 : len), text, want);
    return -1;
}

static void on_gen(void *ud, const RtGenResult *res)
{
    Pending *pd = ud;
    VM *vm = pd->vm;
    Heap *h = vm_heap(vm);
    char err[256];
    if (res->status != 0) {
        snprintf(err, sizeof err, "%s(): the model call failed: %s", pd->fn, res->error ? res->error : "unknown error");
        vm_wait_fail(vm, pd->f, err);
        free(pd);
        return;
    }
    ObjState *st = vm_fiber_state(pd->f);
    if (st && res->tokens) state_set_tokens(st, res->tokens);   /* for the state's next prompt */
    ObjString *text = str_new(h, res->text ? res->text : "", res->text ? res->len : 0);
    if (!text) {
        vm_wait_fail(vm, pd->f, "out of memory");
        free(pd);
        return;
    }
    Value v = val_obj(text);
    if (pd->conv != CONV_NONE && convert(pd, text->chars, text->len, &v, err, sizeof err) < 0) {
        vm_wait_fail(vm, pd->f, err);
        free(pd);
        return;
    }
    /* `s += gen(..., dtype=int)` in SGLang: appended, the model's text goes
     * into the prompt, while the captured variable holds the value */
    Value result = pd->append_text ? val_obj(text) : v;
    if (st && VAL_IS_STRING(pd->name)) {
        map_set(st->vars, pd->name, v);
        vm_event_var(vm, pd->f, pd->name, v);
        if (pd->logprobs) {
            ObjList *lp = list_new(h, (size_t)(res->n_logprobs > 0 ? res->n_logprobs : 0));
            if (lp) {
                for (int i = 0; i < res->n_logprobs; i++) list_push(lp, val_float(res->logprobs[i]));
                map_set(st->logprobs, pd->name, val_obj(lp));
            }
        }
    }
    vm_wait_done(vm, pd->f, result);
    free(pd);
}

/* Streamed text, as the event of the fiber whose gen it is. */
static void on_gen_delta(void *ud, const char *text, size_t len)
{
    Pending *pd = ud;
    vm_event_text(pd->vm, pd->f, pd->name, text, len);
}

static void on_select(void *ud, const RtSelectResult *res)
{
    Pending *pd = ud;
    VM *vm = pd->vm;
    char err[256];
    if (res->status != 0 || res->best < 0 || (size_t)res->best >= pd->choices->len) {
        snprintf(err, sizeof err, "%s(): the model call failed: %s", pd->fn,
                 res->status != 0 ? (res->error ? res->error : "unknown error") : "no valid choice returned");
        vm_wait_fail(vm, pd->f, err);
        free(pd);
        return;
    }
    Value choice = pd->choices->items[res->best];
    ObjState *st = vm_fiber_state(pd->f);
    if (st && VAL_IS_STRING(pd->name)) {
        map_set(st->vars, pd->name, choice);
        vm_event_var(vm, pd->f, pd->name, choice);
        ObjList *scores = list_new(vm_heap(vm), (size_t)(res->nscores > 0 ? res->nscores : 0));
        if (scores) {
            for (int i = 0; i < res->nscores; i++) list_push(scores, val_float(res->scores[i]));
            map_set(st->meta, pd->name, val_obj(scores));
        }
    }
    vm_wait_done(vm, pd->f, choice);
    free(pd);
}

/* ---- submitting ---- */

static int submit_select(VM *vm, const char *fn, Value name, ObjList *choices, RtSelectMethod method, Value *out)
{
    RtBackend *be = vm_backend(vm);
    if (!be || !be->select) return vm_raise(vm, NO_MODEL);
    ObjState *st = vm_current_state(vm);
    RtPrompt pr;
    RtSegment *segs;
    const char **texts = malloc(choices->len * sizeof(char *));
    Pending *pd = calloc(1, sizeof(Pending));
    if (!texts || !pd || make_prompt(st, &pr, &segs) < 0) {
        free(texts);
        free(pd);
        return vm_raise(vm, "out of memory");
    }
    for (size_t i = 0; i < choices->len; i++) texts[i] = AS_STRING(choices->items[i])->chars;
    pd->vm = vm;
    pd->name = name;
    pd->choices = choices;
    pd->fn = fn;
    pd->f = vm_wait_begin(vm, out);
    vm_wait_request(vm, pd->f, pd);
    int rc = be->select(be->ctx, &pr, texts, (int)choices->len, method, on_select, pd);
    free(texts);
    free(segs);
    if (rc != 0) {
        vm_wait_cancel(vm, pd->f);
        free(pd);
        return vm_raise(vm, "%s(): the model refused the request: %s", fn, be->last_error ? be->last_error : "unknown error");
    }
    return VM_NATIVE_WAIT;
}

static int parse_method(VM *vm, const char *fn, Value v, RtSelectMethod *out)
{
    if (!VAL_IS_STRING(v)) return vm_raise(vm, "%s(): method must be a string, not %s", fn, val_type_name(v));
    const char *m = AS_STRING(v)->chars;
    if (strcmp(m, "token_length_normalized") == 0) *out = RT_SELECT_TOKEN_LENGTH_NORMALIZED;
    else if (strcmp(m, "greedy_token") == 0) *out = RT_SELECT_GREEDY_TOKEN;
    else if (strcmp(m, "unconditional_likelihood_normalized") == 0) *out = RT_SELECT_UNCONDITIONAL_LIKELIHOOD_NORMALIZED;
    else
        return vm_raise(vm, "%s(): unknown method \"%s\" (token_length_normalized, greedy_token or "
                            "unconditional_likelihood_normalized)", fn, m);
    return 0;
}

static int want_name(VM *vm, const char *fn, Value v, Value *name)
{
    if (v.type != V_NIL && !VAL_IS_STRING(v))
        return vm_raise(vm, "%s(): the name must be a string, not %s", fn, val_type_name(v));
    *name = v;
    return 0;
}

/* ---- gen's options: one reader per kind of runtime/gen_options.h ---- */

/* A gen() call's options as they are read. Borrows the values it points at
 * (they are the call's arguments); owns stop_ids and json. */
typedef struct {
    VM *vm;
    int argc;                        /* positional arguments (1: the name was one) */
    Value name;                      /* string or nil */
    RtGenParams p;
    const char *stops[MAX_STOPS + 1];
    int nstops;
    int32_t *stop_ids;               /* malloc'd */
    StrBuf json;                     /* a map or bool schema written as text */
    ObjList *choices;
    Conv conv;
    int nconstraints;
} GenCall;

static int read_int(GenCall *c, const char *opt, Value v, int64_t lo, int64_t hi, int *field)
{
    int64_t iv = 0;
    if (want_int(c->vm, "gen", opt, v, lo, hi, &iv) < 0) return -1;
    *field = (int)iv;
    return 0;
}

/* A number in [lo, hi], or (lo, hi] when lo_open; an infinite bound is none. */
static int read_num(GenCall *c, const char *opt, Value v, double lo, bool lo_open, double hi, double *field)
{
    double dv = 0;
    if (want_num(c->vm, "gen", opt, v, &dv) < 0) return -1;
    if (lo_open ? dv <= lo : dv < lo) {
        if (!isinf(hi)) goto range;
        return vm_raise(c->vm, "gen(): %s must be %s %g, not %g", opt, lo_open ? "greater than" : "at least", lo, dv);
    }
    if (dv > hi) {
        if (!isinf(lo)) goto range;
        return vm_raise(c->vm, "gen(): %s must be at most %g, not %g", opt, hi, dv);
    }
    *field = dv;
    return 0;
range:
    return vm_raise(c->vm, "gen(): %s must be in %c%g, %g], not %g", opt, lo_open ? '(' : '[', lo, hi, dv);
}

static int read_bool(GenCall *c, const char *opt, Value v, int *field) { return want_bool(c->vm, "gen", opt, v, field); }

static int read_seed(GenCall *c, Value v)
{
    int64_t iv;
    if (want_int(c->vm, "gen", "seed", v, INT64_MIN, INT64_MAX, &iv) < 0) return -1;
    c->p.has_seed = 1;
    c->p.seed = (uint64_t)iv;
    return 0;
}

static int read_name(GenCall *c, Value v)
{
    if (c->argc == 1) return vm_raise(c->vm, "gen(): the name is given twice");
    return want_name(c->vm, "gen", v, &c->name);
}

static int read_stop(GenCall *c, Value v)
{
    if (VAL_IS_STRING(v)) {
        c->stops[c->nstops++] = AS_STRING(v)->chars;
    } else if (VAL_IS_LIST(v)) {
        ObjList *l = AS_LIST(v);
        if (l->len > MAX_STOPS) return vm_raise(c->vm, "gen(): at most %d stop strings", MAX_STOPS);
        for (size_t i = 0; i < l->len; i++) {
            if (!VAL_IS_STRING(l->items[i]))
                return vm_raise(c->vm, "gen(): stop must be a string or a list of strings; item %zu is %s", i,
                                val_type_name(l->items[i]));
            c->stops[c->nstops++] = AS_STRING(l->items[i])->chars;
        }
    } else if (v.type != V_NIL) {
        return vm_raise(c->vm, "gen(): stop must be a string or a list of strings, not %s", val_type_name(v));
    }
    return 0;
}

static int read_stop_ids(GenCall *c, Value v, int64_t lo, int64_t hi)
{
    if (!VAL_IS_LIST(v)) return vm_raise(c->vm, "gen(): stop_token_ids must be a list of ints, not %s", val_type_name(v));
    ObjList *l = AS_LIST(v);
    free(c->stop_ids);
    c->stop_ids = malloc((l->len ? l->len : 1) * sizeof(int32_t));
    if (!c->stop_ids) return vm_raise(c->vm, "out of memory");
    for (size_t i = 0; i < l->len; i++) {
        int64_t iv;
        if (want_int(c->vm, "gen", "stop_token_ids item", l->items[i], lo, hi, &iv) < 0) return -1;
        c->stop_ids[i] = (int32_t)iv;
    }
    c->p.stop_token_ids = c->stop_ids;
    c->p.nstop_token_ids = (int)l->len;
    return 0;
}

static int read_regex(GenCall *c, Value v)
{
    ObjString *src;
    if (val_is_obj_type(v, OBJ_REGEX)) {
        src = ((ObjRegex *)v.as.obj)->source;
    } else if (VAL_IS_STRING(v)) {
        src = AS_STRING(v);
        int col = 0;
        char msg[200] = "";
        if (rx_check(src->chars, src->len, &col, msg, sizeof msg) != 0)
            return vm_raise(c->vm, "gen(): bad regex (column %d): %s", col, msg);
    } else {
        return vm_raise(c->vm, "gen(): regex must be a re\"...\" literal or a string, not %s", val_type_name(v));
    }
    c->p.constraint = RT_CONSTRAINT_REGEX;
    c->p.constraint_src = src->chars;
    c->p.constraint_len = src->len;
    return 0;
}

static int read_json(GenCall *c, Value v)
{
    if (VAL_IS_STRING(v)) {
        c->p.constraint_src = AS_STRING(v)->chars;
        c->p.constraint_len = AS_STRING(v)->len;
    } else if (VAL_IS_MAP(v) || v.type == V_BOOL) {
        sb_truncate(&c->json, 0);
        if (json_encode(&c->json, v, JSON_STRICT, NULL) < 0)
            return vm_raise(c->vm, "gen(): the json schema cannot be written as JSON");
        c->p.constraint_src = c->json.data ? c->json.data : "";
        c->p.constraint_len = c->json.len;
    } else {
        return vm_raise(c->vm, "gen(): json must be a schema (a map or a string), not %s", val_type_name(v));
    }
    c->p.constraint = RT_CONSTRAINT_JSON;
    return 0;
}

static int read_grammar(GenCall *c, Value v)
{
    ObjString *src;
    if (val_is_obj_type(v, OBJ_GRAMMAR)) {
        src = ((ObjGrammar *)v.as.obj)->source;
    } else if (VAL_IS_STRING(v)) {
        src = AS_STRING(v);
        int line = 0, col = 0;
        char msg[200] = "";
        if (gbnf_check(src->chars, src->len, &line, &col, msg, sizeof msg) != 0)
            return vm_raise(c->vm, "gen(): bad grammar (line %d, column %d): %s", line, col, msg);
    } else {
        return vm_raise(c->vm, "gen(): grammar must be a grammar block or a string, not %s", val_type_name(v));
    }
    c->p.constraint = RT_CONSTRAINT_GRAMMAR;
    c->p.constraint_src = src->chars;
    c->p.constraint_len = src->len;
    return 0;
}

static int read_choices(GenCall *c, Value v) { return want_choices(c->vm, "gen", v, &c->choices); }

static int read_type(GenCall *c, Value v)
{
    if (!VAL_IS_STRING(v)) return vm_raise(c->vm, "gen(): type must be \"int\", \"float\" or \"bool\"");
    const char *t = AS_STRING(v)->chars;
    if (strcmp(t, "int") == 0) c->conv = CONV_INT;
    else if (strcmp(t, "float") == 0) c->conv = CONV_FLOAT;
    else if (strcmp(t, "bool") == 0) c->conv = CONV_BOOL;
    else return vm_raise(c->vm, "gen(): type must be \"int\", \"float\" or \"bool\", not \"%s\"", t);
    c->p.constraint = RT_CONSTRAINT_TYPE;
    c->p.constraint_src = t;
    c->p.constraint_len = strlen(t);
    return 0;
}

/* READ_<kind>(name, lo, hi): the reader of one kind, for option `name`. */
#define READ_INT(name, lo, hi) read_int(c, #name, v, lo, hi, &c->p.name)
#define READ_NUM(name, lo, hi) read_num(c, #name, v, lo, false, hi, &c->p.name)
#define READ_NUM_GT(name, lo, hi) read_num(c, #name, v, lo, true, hi, &c->p.name)
#define READ_BOOL(name, lo, hi) read_bool(c, #name, v, &c->p.name)
#define READ_SEED(name, lo, hi) read_seed(c, v)
#define READ_NAME(name, lo, hi) read_name(c, v)
#define READ_STOP(name, lo, hi) read_stop(c, v)
#define READ_STOP_IDS(name, lo, hi) read_stop_ids(c, v, lo, hi)
#define READ_REGEX(name, lo, hi) read_regex(c, v)
#define READ_JSON(name, lo, hi) read_json(c, v)
#define READ_GRAMMAR(name, lo, hi) read_grammar(c, v)
#define READ_CHOICES(name, lo, hi) read_choices(c, v)
#define READ_TYPE(name, lo, hi) read_type(c, v)

static int read_option(GenCall *c, RtGenOptionId id, Value v)
{
    switch (id) {
#define READ_CASE(name, kind, lo, hi, dflt, openai, sglang) \
    case RT_GEN_OPT_##name: return READ_##kind(name, lo, hi);
        RT_GEN_OPTIONS(READ_CASE)
#undef READ_CASE
    case RT_GEN_OPTION_COUNT: break;
    }
    return vm_raise(c->vm, "gen(): no such option");
}

/* "gen(): at most one of regex, json, grammar, choices and type may be given",
 * the names from the table. */
static int too_many_constraints(VM *vm)
{
    StrBuf b;
    sb_init(&b);
    int n = 0, total = 0;
    for (int i = 0; i < RT_GEN_OPTION_COUNT; i++) total += rt_gen_kind_is_constraint(rt_gen_options[i].kind);
    for (int i = 0; i < RT_GEN_OPTION_COUNT; i++) {
        if (!rt_gen_kind_is_constraint(rt_gen_options[i].kind)) continue;
        if (n++) sb_appends(&b, n == total ? " and " : ", ");
        sb_appends(&b, rt_gen_options[i].name);
    }
    int rc = vm_raise(vm, "gen(): at most one of %s may be given", b.data ? b.data : "");
    sb_free(&b);
    return rc;
}

/* Reads every named argument of the call into c. 0, or -1 after vm_raise. */
static int read_options(GenCall *c, ObjMap *kwargs)
{
    for (size_t e = 0; kwargs && e < kwargs->nentries; e++) {
        if (!kwargs->entries[e].live) continue;
        const char *opt = AS_STRING(kwargs->entries[e].key)->chars;
        int id = rt_gen_option_find(opt);
        if (id < 0) return vm_raise(c->vm, "gen() has no option '%s'", opt);
        if (read_option(c, (RtGenOptionId)id, kwargs->entries[e].value) < 0) return -1;
        c->nconstraints += rt_gen_kind_is_constraint(rt_gen_options[id].kind);
    }
    if (c->nconstraints > 1) return too_many_constraints(c->vm);
    return 0;
}

static int submit_gen(GenCall *c, Value *out)
{
    VM *vm = c->vm;
    RtBackend *be = vm_backend(vm);
    if (!be || !be->gen) return vm_raise(vm, NO_MODEL);
    if (c->choices) return submit_select(vm, "gen", c->name, c->choices, RT_SELECT_TOKEN_LENGTH_NORMALIZED, out);

    ObjState *st = vm_current_state(vm);
    if (in_assistant(st)) {
        /* the chat template's end of turn is a default stop (§7) */
        const char *eot = vm_chat_end_of_turn(vm);
        if (eot && c->nstops < MAX_STOPS + 1) c->stops[c->nstops++] = eot;
    }
    c->p.stop = c->nstops ? c->stops : NULL;
    c->p.nstop = c->nstops;

    RtPrompt pr;
    RtSegment *segs;
    Pending *pd = calloc(1, sizeof(Pending));
    if (!pd || make_prompt(st, &pr, &segs) < 0) {
        free(pd);
        return vm_raise(vm, "out of memory");
    }
    pd->vm = vm;
    pd->name = c->name;
    pd->conv = c->conv;
    pd->append_text = c->conv != CONV_NONE && vm_native_result_appended(vm);
    pd->logprobs = c->p.logprobs;
    pd->fn = "gen";
    pd->f = vm_wait_begin(vm, out);
    vm_wait_request(vm, pd->f, pd);
    if (vm_events_on(vm)) c->p.on_delta = on_gen_delta;
    int sub = be->gen(be->ctx, &pr, &c->p, on_gen, pd);
    free(segs);
    if (sub != 0) {
        vm_wait_cancel(vm, pd->f);
        free(pd);
        return vm_raise(vm, "gen(): the model refused the request: %s", be->last_error ? be->last_error : "unknown error");
    }
    return VM_NATIVE_WAIT;
}

static int gen_native_gen(VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (argc > 1) return vm_raise(vm, "gen() takes at most one positional argument (the name), %d given", argc);
    GenCall c;
    memset(&c, 0, sizeof c);
    c.vm = vm;
    c.argc = argc;
    c.name = val_nil();
    rt_gen_params_default(&c.p);
    sb_init(&c.json);
    if (argc == 1 && want_name(vm, "gen", args[0], &c.name) < 0) return -1;
    int rc = read_options(&c, kwargs);
    if (rc == 0) rc = submit_gen(&c, out);
    free(c.stop_ids);
    sb_free(&c.json);
    return rc;
}

static int gen_native_select(VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    const char *fn = "select";
    Value name = val_nil(), choices_v = val_nil();
    int have_choices = 0;
    RtSelectMethod method = RT_SELECT_TOKEN_LENGTH_NORMALIZED;
    if (argc > 2) return vm_raise(vm, "select() takes at most two positional arguments (name, choices), %d given", argc);
    if (argc == 2) {
        if (want_name(vm, fn, args[0], &name) < 0) return -1;
        choices_v = args[1];
        have_choices = 1;
    } else if (argc == 1) {
        /* select(choices) or select(name, choices: ...) */
        if (VAL_IS_LIST(args[0])) {
            choices_v = args[0];
            have_choices = 1;
        } else if (want_name(vm, fn, args[0], &name) < 0) {
            return -1;
        }
    }
    for (size_t e = 0; kwargs && e < kwargs->nentries; e++) {
        if (!kwargs->entries[e].live) continue;
        const char *opt = AS_STRING(kwargs->entries[e].key)->chars;
        Value v = kwargs->entries[e].value;
        if (strcmp(opt, "method") == 0) {
            if (parse_method(vm, fn, v, &method) < 0) return -1;
        } else if (strcmp(opt, "choices") == 0) {
            if (have_choices) return vm_raise(vm, "select(): choices given twice");
            choices_v = v;
            have_choices = 1;
        } else if (strcmp(opt, "name") == 0) {
            if (name.type != V_NIL) return vm_raise(vm, "select(): the name is given twice");
            if (want_name(vm, fn, v, &name) < 0) return -1;
        } else {
            return vm_raise(vm, "select() has no option '%s'", opt);
        }
    }
    if (!have_choices) return vm_raise(vm, "select(): missing the list of choices");
    ObjList *choices;
    if (want_choices(vm, fn, choices_v, &choices) < 0) return -1;
    return submit_select(vm, fn, name, choices, method, out);
}

const VmNative gen_natives[] = {
    {"gen", gen_native_gen},
    {"select", gen_native_select},
};
const int gen_native_count = (int)(sizeof gen_natives / sizeof gen_natives[0]);
