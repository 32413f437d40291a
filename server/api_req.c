/*
 * server/api_req.c — request bodies of the generation routes into ApiReq
 * (see api_req.h). gen's options are read by one reader per option kind,
 * chosen by expanding RT_GEN_OPTIONS, so a field of either API reaches the
 * same RtGenParams member that gen(...) in SGL sets.
 */
#include "server/api_req.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "base/utf8.h"
#include "runtime/gen_options.h"

#define MAX_STOPS 64
#define MAX_N 128
#define MAX_PROMPTS 1024
#define MAX_TOP_LOGPROBS 20

void api_error_set(ApiError *e, int status, const char *param, const char *fmt, ...)
{
    e->status = status;
    e->type = status >= 500 ? "server_error" : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

json_t *json_text(const char *s, size_t n)
{
    if (utf8_valid(s, n)) return json_stringn(s, n);
    StrBuf b = {0};
    for (size_t i = 0; i < n;) {
        size_t ok = utf8_invalid_at(s + i, n - i);
        sb_append(&b, s + i, ok);
        i += ok;
        if (i < n) {
            sb_appends(&b, "\xEF\xBF\xBD");
            i++;
        }
    }
    json_t *v = json_stringn(b.data ? b.data : "", b.len);
    sb_free(&b);
    return v;
}

char *api_error_json(const ApiError *e)
{
    json_t *o = json_pack("{s:{s:o, s:s, s:o, s:i}}", "error", "message", json_text(e->message, strlen(e->message)), "type",
                          e->type ? e->type : "invalid_request_error", "param",
                          e->param[0] ? json_string(e->param) : json_null(), "code", e->status);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* ---- one reader per option kind ---- */

typedef struct {
    ApiReq *r;
    ApiError *e;
    const char *field;           /* as the client wrote it */
    int constraints;             /* how many constraint options were given */
} Rd;

static int rd_num(Rd *d, json_t *v, double lo, double hi, int open_lo, double *out)
{
    if (!json_is_number(v)) {
        api_error_set(d->e, 400, d->field, "%s must be a number", d->field);
        return -1;
    }
    double x = json_number_value(v);
    if ((open_lo ? x <= lo : x < lo) || x > hi || isnan(x)) {
        api_error_set(d->e, 400, d->field, "%s must be in %s%g, %g], not %g", d->field, open_lo ? "(" : "[", lo, hi, x);
        return -1;
    }
    *out = x;
    return 0;
}

static int rd_int(Rd *d, json_t *v, double lo, double hi, int *out)
{
    if (!json_is_integer(v)) {
        api_error_set(d->e, 400, d->field, "%s must be an integer", d->field);
        return -1;
    }
    json_int_t x = json_integer_value(v);
    if ((double)x < lo || (double)x > hi) {
        api_error_set(d->e, 400, d->field, "%s must be in [%.0f, %.0f], not %lld", d->field, lo, hi, (long long)x);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int rd_bool(Rd *d, json_t *v, int *out)
{
    if (!json_is_boolean(v)) {
        api_error_set(d->e, 400, d->field, "%s must be true or false", d->field);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int rd_seed(Rd *d, json_t *v)
{
    if (!json_is_integer(v)) {
        api_error_set(d->e, 400, d->field, "%s must be an integer", d->field);
        return -1;
    }
    d->r->gen.has_seed = 1;
    d->r->gen.seed = (uint64_t)json_integer_value(v);
    return 0;
}

static int rd_stop(Rd *d, json_t *v)
{
    int one = json_is_string(v);
    if (!one && !json_is_array(v)) {
        api_error_set(d->e, 400, d->field, "%s must be a string or a list of strings", d->field);
        return -1;
    }
    size_t n = one ? 1 : json_array_size(v);
    if (n > MAX_STOPS) {
        api_error_set(d->e, 400, d->field, "%s: at most %d stop strings", d->field, MAX_STOPS);
        return -1;
    }
    free(d->r->stops);
    d->r->stops = calloc(n ? n : 1, sizeof *d->r->stops);
    if (!d->r->stops) return -1;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *x = one ? v : json_array_get(v, i);
        if (!json_is_string(x)) {
            api_error_set(d->e, 400, d->field, "%s must be a string or a list of strings", d->field);
            return -1;
        }
        if (json_string_length(x) == 0) continue;   /* an empty stop string never matches */
        d->r->stops[k++] = json_string_value(x);
    }
    d->r->gen.stop = d->r->stops;
    d->r->gen.nstop = k;
    return 0;
}

static int rd_stop_ids(Rd *d, json_t *v, double lo, double hi)
{
    if (!json_is_array(v)) {
        api_error_set(d->e, 400, d->field, "%s must be a list of token ids", d->field);
        return -1;
    }
    size_t n = json_array_size(v);
    if (n > 1024) {
        api_error_set(d->e, 400, d->field, "%s: at most 1024 ids", d->field);
        return -1;
    }
    free(d->r->stop_ids);
    d->r->stop_ids = malloc((n ? n : 1) * sizeof *d->r->stop_ids);
    if (!d->r->stop_ids) return -1;
    for (size_t i = 0; i < n; i++) {
        int x;
        if (rd_int(d, json_array_get(v, i), lo, hi, &x)) return -1;
        d->r->stop_ids[i] = x;
    }
    d->r->gen.stop_token_ids = d->r->stop_ids;
    d->r->gen.nstop_token_ids = (int)n;
    return 0;
}

static int set_constraint(Rd *d, RtConstraintKind k, const char *src, size_t len)
{
    if (d->constraints++) {
        api_error_set(d->e, 400, d->field,
                      "%s: at most one of regex, json_schema, ebnf and response_format (json) may be given", d->field);
        return -1;
    }
    d->r->gen.constraint = k;
    d->r->gen.constraint_src = src;
    d->r->gen.constraint_len = len;
    return 0;
}

static int rd_string_constraint(Rd *d, json_t *v, RtConstraintKind k)
{
    if (!json_is_string(v)) {
        api_error_set(d->e, 400, d->field, "%s must be a string", d->field);
        return -1;
    }
    return set_constraint(d, k, json_string_value(v), json_string_length(v));
}

/* A JSON Schema given as a string (SGLang's json_schema) or an object. */
static int rd_schema(Rd *d, json_t *v)
{
    if (json_is_string(v)) return set_constraint(d, RT_CONSTRAINT_JSON, json_string_value(v), json_string_length(v));
    if (!json_is_object(v) && !json_is_boolean(v)) {
        api_error_set(d->e, 400, d->field, "%s must be a JSON Schema (an object or its text)", d->field);
        return -1;
    }
    free(d->r->constraint_owned);
    d->r->constraint_owned = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!d->r->constraint_owned) return -1;
    return set_constraint(d, RT_CONSTRAINT_JSON, d->r->constraint_owned, strlen(d->r->constraint_owned));
}

/* OpenAI's response_format: text, json_object, json_schema {name, schema, strict}. */
static int rd_response_format(Rd *d, json_t *v)
{
    json_t *t = json_object_get(v, "type");
    if (!json_is_object(v) || !json_is_string(t)) {
        api_error_set(d->e, 400, "response_format", "response_format must be an object with a type");
        return -1;
    }
    const char *type = json_string_value(t);
    if (!strcmp(type, "text")) return 0;
    if (!strcmp(type, "json_object")) {   /* OpenAI's JSON mode: an object, of any shape */
        static const char object[] = "{\"type\":\"object\"}";
        return set_constraint(d, RT_CONSTRAINT_JSON, object, sizeof object - 1);
    }
    if (!strcmp(type, "json_schema")) {
        json_t *js = json_object_get(v, "json_schema");
        json_t *schema = json_is_object(js) ? json_object_get(js, "schema") : NULL;
        json_t *strict = json_is_object(js) ? json_object_get(js, "strict") : NULL;
        if (!schema || json_is_null(schema)) {
            api_error_set(d->e, 400, "response_format.json_schema.schema",
                          "response_format json_schema needs json_schema.schema");
            return -1;
        }
        if (strict && !json_is_null(strict) && !json_is_boolean(strict)) {
            api_error_set(d->e, 400, "response_format.json_schema.strict", "strict must be true or false");
            return -1;
        }
        d->field = "response_format.json_schema.schema";
        return rd_schema(d, schema);
    }
    api_error_set(d->e, 400, "response_format.type", "response_format type '%s' is not supported (text, json_object, json_schema)",
                  type);
    return -1;
}

static int rd_refused(Rd *d)
{
    api_error_set(d->e, 400, d->field, "%s is not supported here", d->field);
    return -1;
}

#define RD_INT(name, lo, hi) rd_int(d, v, lo, hi, &d->r->gen.name)
#define RD_NUM(name, lo, hi) rd_num(d, v, lo, hi, 0, &d->r->gen.name)
#define RD_NUM_GT(name, lo, hi) rd_num(d, v, lo, hi, 1, &d->r->gen.name)
#define RD_BOOL(name, lo, hi) rd_bool(d, v, &d->r->gen.name)
#define RD_SEED(name, lo, hi) rd_seed(d, v)
#define RD_STOP(name, lo, hi) rd_stop(d, v)
#define RD_STOP_IDS(name, lo, hi) rd_stop_ids(d, v, lo, hi)
#define RD_REGEX(name, lo, hi) rd_string_constraint(d, v, RT_CONSTRAINT_REGEX)
#define RD_JSON(name, lo, hi) rd_schema(d, v)
#define RD_GRAMMAR(name, lo, hi) rd_string_constraint(d, v, RT_CONSTRAINT_EBNF)
#define RD_NAME(name, lo, hi) rd_refused(d)
#define RD_CHOICES(name, lo, hi) rd_refused(d)
#define RD_TYPE(name, lo, hi) rd_refused(d)

static int read_option(Rd *d, int id, json_t *v)
{
    switch (id) {
#define RT_GEN_OPT_READ(name, kind, lo, hi, dflt, openai, sglang) \
    case RT_GEN_OPT_##name: return RD_##kind(name, lo, hi);
        RT_GEN_OPTIONS(RT_GEN_OPT_READ)
#undef RT_GEN_OPT_READ
    default: return rd_refused(d);
    }
}

/* The field that carries option i on the OpenAI routes: its OpenAI name,
 * else SGLang's OpenAI-side extra (min_tokens, top_k, min_p, regex, ebnf,
 * json_schema, repetition_penalty, ignore_eos, stop_token_ids: the
 * sampling_params key, but min_tokens under gen's own name). */
static const char *openai_field(int i)
{
    const RtGenOption *o = &rt_gen_options[i];
    if (i == RT_GEN_OPT_json) return "json_schema";     /* response_format is read on its own */
    if (i == RT_GEN_OPT_logprobs) return NULL;          /* API-specific: read on its own */
    if (o->openai) return o->openai;
    if (!o->sglang) return NULL;
    if (i == RT_GEN_OPT_min_tokens) return o->name;
    return o->sglang;
}

/* Every option of the table found in obj under its field for this API. */
static int read_options(Rd *d, json_t *obj, int native)
{
    for (int i = 0; i < RT_GEN_OPTION_COUNT; i++) {
        const char *f = native ? rt_gen_options[i].sglang : openai_field(i);
        if (!f) continue;
        json_t *v = json_object_get(obj, f);
        if (!v || json_is_null(v)) continue;
        d->field = f;
        if (read_option(d, i, v)) return -1;
    }
    return 0;
}

/* ---- prompts ---- */

static int add_prompt_text(ApiReq *r, json_t *s)
{
    ApiPrompt *p = &r->prompts[r->n_prompts++];
    p->text = json_string_value(s);
    p->len = json_string_length(s);
    return 0;
}

static int add_prompt_ids(ApiReq *r, json_t *a, const char *field, ApiError *e)
{
    size_t n = json_array_size(a);
    ApiPrompt *p = &r->prompts[r->n_prompts++];
    p->ids = malloc((n ? n : 1) * sizeof *p->ids);
    if (!p->ids) return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(a, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
            api_error_set(e, 400, field, "%s: token ids must be non-negative integers", field);
            return -1;
        }
        p->ids[i] = (int32_t)json_integer_value(x);
    }
    p->n_ids = (int)n;
    return 0;
}

/* A string, a list of strings, a list of ids or a list of id lists. */
static int read_prompts(ApiReq *r, json_t *v, const char *field, int allow_text, int allow_ids, ApiError *e)
{
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (json_is_array(v) && n == 0) {
        api_error_set(e, 400, field, "%s must not be empty", field);
        return -1;
    }
    if (n > MAX_PROMPTS) {
        api_error_set(e, 400, field, "%s: at most %d prompts", field, MAX_PROMPTS);
        return -1;
    }
    r->prompts = calloc(n, sizeof *r->prompts);
    if (!r->prompts) return -1;
    if (json_is_string(v) && allow_text) return add_prompt_text(r, v);
    if (!json_is_array(v)) goto bad;
    json_t *first = json_array_get(v, 0);
    if (json_is_integer(first) && allow_ids) return add_prompt_ids(r, v, field, e);
    r->list_in = 1;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        if (json_is_string(x) && allow_text) add_prompt_text(r, x);
        else if (json_is_array(x) && allow_ids) {
            if (json_array_size(x) == 0) {
                api_error_set(e, 400, field, "%s: a token-id prompt must not be empty", field);
                return -1;
            }
            if (add_prompt_ids(r, x, field, e)) return -1;
        } else goto bad;
    }
    return 0;
bad:
    api_error_set(e, 400, field, "%s must be %s", field,
                  allow_text && allow_ids ? "a string, a list of strings, a list of token ids or a list of such lists"
                  : allow_text            ? "a string or a list of strings"
                                          : "a list of token ids or a list of such lists");
    return -1;
}

/* ---- shared checks ---- */

/* A field the server cannot honour: refused unless absent, null or the
 * value that means "off". */
static int refuse_if(json_t *obj, const char *field, int (*is_off)(json_t *), ApiError *e, const char *why)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v) || (is_off && is_off(v))) return 0;
    api_error_set(e, 400, field, "%s is not supported%s%s", field, why ? ": " : "", why ? why : "");
    return -1;
}

static int empty_string(json_t *v) { return json_is_string(v) && json_string_length(v) == 0; }
static int is_false(json_t *v) { return json_is_false(v); }
static int is_true(json_t *v) { return json_is_true(v); }

static int get_bool(json_t *obj, const char *field, int *out, ApiError *e)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) {
        api_error_set(e, 400, field, "%s must be true or false", field);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int get_int(json_t *obj, const char *field, int lo, int hi, int *out, ApiError *e)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        api_error_set(e, 400, field, "%s must be an integer in [%d, %d]", field, lo, hi);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_string(json_t *obj, const char *field, const char **out, ApiError *e)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        api_error_set(e, 400, field, "%s must be a string", field);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* OpenAI's logit_bias: {"token id": bias in [-100, 100]} (the ids are
 * checked against the vocabulary when the job starts). */
static int read_logit_bias(ApiReq *r, json_t *v, ApiError *e)
{
    if (!v || json_is_null(v)) return 0;
    if (!json_is_object(v)) {
        api_error_set(e, 400, "logit_bias", "logit_bias must be an object of token id -> bias");
        return -1;
    }
    size_t n = json_object_size(v);
    if (n > 1024) {
        api_error_set(e, 400, "logit_bias", "logit_bias: at most 1024 tokens");
        return -1;
    }
    r->bias = calloc(n ? n : 1, sizeof *r->bias);
    if (!r->bias) return -1;
    const char *key;
    json_t *b;
    json_object_foreach(v, key, b) {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id > INT32_MAX) {
            api_error_set(e, 400, "logit_bias", "logit_bias: '%s' is not a token id", key);
            return -1;
        }
        if (!json_is_number(b) || json_number_value(b) < -100 || json_number_value(b) > 100) {
            api_error_set(e, 400, "logit_bias", "logit_bias[%s] must be a number in [-100, 100]", key);
            return -1;
        }
        r->bias[r->n_bias].id = (int32_t)id;
        r->bias[r->n_bias].bias = (float)json_number_value(b);
        r->n_bias++;
    }
    return 0;
}

/* ---- chat messages ---- */

static int read_messages(ApiReq *r, json_t *msgs, ApiError *e)
{
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        api_error_set(e, 400, "messages", "messages must be a non-empty list");
        return -1;
    }
    size_t n = json_array_size(msgs);
    if (n > 4096) {
        api_error_set(e, 400, "messages", "at most 4096 messages");
        return -1;
    }
    r->messages = calloc(n, sizeof *r->messages);
    if (!r->messages) return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) {
            api_error_set(e, 400, param, "%s must be an object", param);
            return -1;
        }
        ApiMessage *am = &r->messages[r->n_messages++];
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) {
            api_error_set(e, 400, param, "%s.role must be a string", param);
            return -1;
        }
        am->role = json_string_value(role);
        if (strcmp(am->role, "system") && strcmp(am->role, "user") && strcmp(am->role, "assistant") &&
            strcmp(am->role, "tool") && strcmp(am->role, "developer")) {
            api_error_set(e, 400, param, "%s.role '%s' is not supported (system, developer, user, assistant, tool)",
                          param, am->role);
            return -1;
        }
        if (!strcmp(am->role, "developer")) am->role = "system";
        json_t *c = json_object_get(m, "content");
        StrBuf b = {0};
        if (json_is_string(c)) {
            sb_append(&b, json_string_value(c), json_string_length(c));
        } else if (json_is_array(c)) {
            for (size_t k = 0; k < json_array_size(c); k++) {
                json_t *part = json_array_get(c, k);
                json_t *type = json_object_get(part, "type");
                json_t *text = json_object_get(part, "text");
                if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text)) {
                    sb_free(&b);
                    api_error_set(e, 400, param, "%s.content[%zu]: only text parts are supported (type \"text\")", param,
                                  k);
                    return -1;
                }
                sb_append(&b, json_string_value(text), json_string_length(text));
            }
        } else if (c && !json_is_null(c)) {
            api_error_set(e, 400, param, "%s.content must be a string or a list of text parts", param);
            return -1;
        } else if (strcmp(am->role, "assistant")) {
            api_error_set(e, 400, param, "%s.content is required", param);
            return -1;
        }
        am->content = sb_detach(&b);
        if (!am->content) return -1;
        json_t *tc = json_object_get(m, "tool_calls");
        if (tc && !json_is_null(tc)) {
            if (strcmp(am->role, "assistant") || !json_is_array(tc)) {
                api_error_set(e, 400, param, "%s.tool_calls must be a list, on an assistant message", param);
                return -1;
            }
            am->tool_calls = tc;
        }
        json_t *tid = json_object_get(m, "tool_call_id");
        if (json_is_string(tid)) am->tool_call_id = json_string_value(tid);
    }
    return 0;
}

static int read_tools(ApiReq *r, json_t *body, ApiError *e)
{
    json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) {
            api_error_set(e, 400, "tools", "tools must be a list");
            return -1;
        }
        for (size_t i = 0; i < json_array_size(tools); i++) {
            json_t *t = json_array_get(tools, i);
            json_t *type = json_object_get(t, "type");
            json_t *fn = json_object_get(t, "function");
            json_t *name = json_object_get(fn, "name");
            if (!json_is_string(type) || strcmp(json_string_value(type), "function") || !json_is_object(fn) ||
                !json_is_string(name)) {
                api_error_set(e, 400, "tools", "tools[%zu] must be {\"type\": \"function\", \"function\": {\"name\", ...}}", i);
                return -1;
            }
        }
        if (json_array_size(tools)) r->tools = tools;
    }
    json_t *tc = json_object_get(body, "tool_choice");
    r->tool_choice = r->tools ? "auto" : "none";
    if (!tc || json_is_null(tc)) return 0;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (strcmp(s, "none") && strcmp(s, "auto") && strcmp(s, "required")) {
            api_error_set(e, 400, "tool_choice", "tool_choice must be none, auto, required or a named function");
            return -1;
        }
        r->tool_choice = s;
    } else {
        json_t *name = json_object_get(json_object_get(tc, "function"), "name");
        if (!json_is_string(name)) {
            api_error_set(e, 400, "tool_choice", "tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\"}}");
            return -1;
        }
        r->tool_choice = json_string_value(name);
        r->tool_choice_named = 1;
    }
    if (strcmp(r->tool_choice, "none") && !r->tools) {
        api_error_set(e, 400, "tool_choice", "tool_choice %s needs tools", r->tool_choice);
        return -1;
    }
    if (r->tool_choice_named) {
        int found = 0;
        for (size_t i = 0; i < json_array_size(r->tools); i++) {
            json_t *nm = json_object_get(json_object_get(json_array_get(r->tools, i), "function"), "name");
            if (!strcmp(json_string_value(nm), r->tool_choice)) found = 1;
        }
        if (!found) {
            api_error_set(e, 400, "tool_choice", "tool_choice names function '%s', which is not in tools", r->tool_choice);
            return -1;
        }
    }
    return 0;
}

/* ---- the three bodies ---- */

static int decode_openai(ApiReq *r, json_t *body, ApiError *e)
{
    Rd d = {r, e, NULL, 0};
    int chat = r->kind == API_CHAT;
    /* OpenAI's defaults: completions 16 tokens; chat until the turn ends
     * (capped here at 4096 unless max_tokens says otherwise) */
    r->gen.max_tokens = chat ? 4096 : 16;
    if (get_string(body, "model", &r->model, e)) return -1;
    if (read_options(&d, body, 0)) return -1;
    if (chat) {
        json_t *mct = json_object_get(body, "max_completion_tokens");
        if (mct && !json_is_null(mct)) {
            d.field = "max_completion_tokens";
            if (read_option(&d, RT_GEN_OPT_max_tokens, mct)) return -1;
        }
    }
    json_t *rf = json_object_get(body, "response_format");
    if (rf && !json_is_null(rf) && rd_response_format(&d, rf)) return -1;
    if (get_int(body, "n", 1, MAX_N, &r->n, e)) return -1;
    int best_of = r->n;
    if (get_int(body, "best_of", 1, MAX_N, &best_of, e)) return -1;
    if (best_of != r->n) {
        api_error_set(e, 400, "best_of", "best_of other than n is not supported");
        return -1;
    }
    if (get_bool(body, "stream", &r->stream, e)) return -1;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            api_error_set(e, 400, "stream_options", "stream_options must be an object");
            return -1;
        }
        if (get_bool(so, "include_usage", &r->include_usage, e)) return -1;
    }
    if (get_bool(body, "no_stop_trim", &r->no_stop_trim, e)) return -1;
    int skip = 1;   /* SGLang's OpenAI-side extra */
    if (get_bool(body, "skip_special_tokens", &skip, e)) return -1;
    r->keep_special_tokens = !skip;
    if (read_logit_bias(r, json_object_get(body, "logit_bias"), e)) return -1;
    if (get_string(body, "user", &r->user, e)) return -1;
    if (chat) {
        if (get_bool(body, "logprobs", &r->logprobs, e)) return -1;
        if (get_int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS, &r->top_logprobs, e)) return -1;
        if (r->top_logprobs && !r->logprobs) {
            api_error_set(e, 400, "top_logprobs", "top_logprobs needs logprobs: true");
            return -1;
        }
        if (refuse_if(body, "functions", NULL, e, "use tools")) return -1;
        if (refuse_if(body, "function_call", NULL, e, "use tool_choice")) return -1;
        if (refuse_if(body, "continue_final_message", is_false, e, NULL)) return -1;
        if (refuse_if(body, "audio", NULL, e, NULL)) return -1;
        r->add_generation_prompt = 1;
        if (read_messages(r, json_object_get(body, "messages"), e)) return -1;
        if (read_tools(r, body, e)) return -1;
    } else {
        json_t *lp = json_object_get(body, "logprobs");
        if (lp && !json_is_null(lp)) {
            if (json_is_boolean(lp)) {   /* SGLang's clients send a bool here too */
                r->logprobs = json_is_true(lp);
            } else {
                int k = 0;
                if (get_int(body, "logprobs", 0, MAX_TOP_LOGPROBS, &k, e)) return -1;
                r->logprobs = 1;
                r->top_logprobs = k;
            }
        }
        if (get_bool(body, "echo", &r->echo, e)) return -1;
        if (refuse_if(body, "suffix", empty_string, e, "insertion (fill-in-the-middle) is not available")) return -1;
        json_t *p = json_object_get(body, "prompt");
        if (!p || json_is_null(p)) {
            api_error_set(e, 400, "prompt", "prompt is required");
            return -1;
        }
        if (read_prompts(r, p, "prompt", 1, 1, e)) return -1;
    }
    r->gen.logprobs = r->logprobs;
    r->gen.top_logprobs = r->top_logprobs;
    return 0;
}

static int decode_generate(ApiReq *r, json_t *body, ApiError *e)
{
    Rd d = {r, e, NULL, 0};
    json_t *text = json_object_get(body, "text"), *ids = json_object_get(body, "input_ids");
    int has_text = text && !json_is_null(text), has_ids = ids && !json_is_null(ids);
    if (has_text == has_ids) {
        api_error_set(e, 400, has_text ? "input_ids" : "text", "give exactly one of text and input_ids");
        return -1;
    }
    if (has_text ? read_prompts(r, text, "text", 1, 0, e) : read_prompts(r, ids, "input_ids", 0, 1, e)) return -1;
    json_t *sp = json_object_get(body, "sampling_params");
    if (sp && !json_is_null(sp)) {
        if (!json_is_object(sp)) {
            api_error_set(e, 400, "sampling_params", "sampling_params must be an object (one for every prompt)");
            return -1;
        }
        if (read_options(&d, sp, 1)) return -1;
        if (get_int(sp, "n", 1, MAX_N, &r->n, e)) return -1;
        if (get_bool(sp, "no_stop_trim", &r->no_stop_trim, e)) return -1;
        int skip = 1;
        if (get_bool(sp, "skip_special_tokens", &skip, e)) return -1;
        r->keep_special_tokens = !skip;
        if (refuse_if(sp, "spaces_between_special_tokens", is_true, e, NULL)) return -1;
        if (read_logit_bias(r, json_object_get(sp, "logit_bias"), e)) return -1;
        if (refuse_if(sp, "custom_params", NULL, e, NULL)) return -1;
        if (refuse_if(sp, "structural_tag", NULL, e, NULL)) return -1;
        if (refuse_if(sp, "stream_interval", NULL, e, NULL)) return -1;
    }
    json_t *rl = json_object_get(body, "return_logprob");
    if (json_is_array(rl)) {
        api_error_set(e, 400, "return_logprob", "return_logprob must be one bool for every prompt");
        return -1;
    }
    if (get_bool(body, "return_logprob", &r->return_logprob, e)) return -1;
    r->logprob_start_len = -1;
    if (get_int(body, "logprob_start_len", -1, INT32_MAX, &r->logprob_start_len, e)) return -1;
    if (get_int(body, "top_logprobs_num", 0, MAX_TOP_LOGPROBS, &r->top_logprobs, e)) return -1;
    if (get_bool(body, "return_text_in_logprobs", &r->return_text_in_logprobs, e)) return -1;
    if (get_bool(body, "stream", &r->stream, e)) return -1;
    json_t *rid = json_object_get(body, "rid");
    if (json_is_string(rid)) r->rid = json_string_value(rid);
    else if (rid && !json_is_null(rid) && !json_is_array(rid)) {
        api_error_set(e, 400, "rid", "rid must be a string or a list of strings");
        return -1;
    }
    if (refuse_if(body, "image_data", NULL, e, "the model reads text only")) return -1;
    if (refuse_if(body, "audio_data", NULL, e, "the model reads text only")) return -1;
    if (refuse_if(body, "lora_path", NULL, e, NULL)) return -1;
    if (refuse_if(body, "custom_logit_processor", NULL, e, NULL)) return -1;
    if (refuse_if(body, "return_hidden_states", is_false, e, NULL)) return -1;
    if (refuse_if(body, "input_embeds", NULL, e, NULL)) return -1;
    if (r->stream && r->n_prompts * r->n > 1) {
        api_error_set(e, 400, "stream", "stream with several prompts or n > 1 is not supported on /generate");
        return -1;
    }
    r->gen.logprobs = r->return_logprob;
    r->gen.top_logprobs = r->return_logprob ? r->top_logprobs : 0;
    return 0;
}

/* The object key whose value ends near byte pos ("max_tokens" of
 * {"max_tokens": 99999999999999999999}), for jansson's "too big integer". */
static int key_before(const char *body, size_t pos, char *key, size_t cap)
{
    size_t i = pos;
    while (i > 0 && body[i - 1] != ':') i--;
    if (i == 0) return 0;
    i--;
    while (i > 0 && (body[i - 1] == ' ' || body[i - 1] == '\t' || body[i - 1] == '\n' || body[i - 1] == '\r')) i--;
    if (i == 0 || body[i - 1] != '"') return 0;
    size_t end = --i;
    while (i > 0 && body[i - 1] != '"') i--;
    if (i == 0 || end - i >= cap) return 0;
    memcpy(key, body + i, end - i);
    key[end - i] = '\0';
    return 1;
}

int api_req_decode(ApiKind kind, const char *body, size_t len, ApiReq **out, ApiError *e)
{
    *out = NULL;
    memset(e, 0, sizeof *e);
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        char key[64];
        if (strstr(je.text, "too big integer") && key_before(body, (size_t)je.position, key, sizeof key))
            api_error_set(e, 400, key, "%s: integer out of range (%s, line %d, column %d)", key, je.text, je.line, je.column);
        else
            api_error_set(e, 400, NULL, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return -1;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        api_error_set(e, 400, NULL, "the body must be a JSON object");
        return -1;
    }
    ApiReq *r = calloc(1, sizeof *r);
    if (!r) {
        json_decref(doc);
        api_error_set(e, 500, NULL, "out of memory");
        return -1;
    }
    r->kind = kind;
    r->doc = doc;
    r->n = 1;
    rt_gen_params_default(&r->gen);
    int rc = kind == API_GENERATE ? decode_generate(r, doc, e) : decode_openai(r, doc, e);
    if (rc) {
        if (!e->status) api_error_set(e, 500, NULL, "out of memory");
        api_req_free(r);
        return -1;
    }
    *out = r;
    return 0;
}

void api_req_free(ApiReq *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_prompts; i++) free(r->prompts[i].ids);
    free(r->prompts);
    for (int i = 0; i < r->n_messages; i++) free(r->messages[i].content);
    free(r->messages);
    free(r->stops);
    free(r->stop_ids);
    free(r->bias);
    free(r->constraint_owned);
    json_decref(r->doc);
    free(r);
}
