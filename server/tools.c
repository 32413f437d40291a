/*
 * server/tools.c — tools: the system text, the call schema, parsing a
 * reply into tool_calls (see tools.h for the format).
 */
#include "server/tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"

static json_t *fn_of(json_t *tool) { return json_object_get(tool, "function"); }

/* {"type":"object","properties":{"name":{"const":N},"arguments":P},"required":[...]} */
static json_t *call_schema(json_t *fn)
{
    json_t *params = json_object_get(fn, "parameters");
    json_t *p = params && json_is_object(params) ? json_deep_copy(params) : json_pack("{s:s}", "type", "object");
    return json_pack("{s:s, s:{s:{s:O}, s:o}, s:[s, s], s:b}", "type", "object", "properties", "name", "const",
                     json_object_get(fn, "name"), "arguments", p, "required", "name", "arguments",
                     "additionalProperties", 0);
}

int tools_plan(const ApiReq *a, ToolPlan *p, ApiError *e)
{
    memset(p, 0, sizeof *p);
    if (!a->tools || !strcmp(a->tool_choice, "none")) return 0;
    p->mode = a->tool_choice_named ? TOOLS_NAMED : !strcmp(a->tool_choice, "required") ? TOOLS_REQUIRED : TOOLS_AUTO;
    StrBuf b = {0};
    sb_appends(&b, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                   "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
    for (size_t i = 0; i < json_array_size(a->tools); i++) {
        char *t = json_dumps(json_array_get(a->tools, i), JSON_COMPACT);
        if (t) {
            sb_appends(&b, "\n");
            sb_appends(&b, t);
            free(t);
        }
    }
    sb_appends(&b, "\n</tools>\n\n");
    if (p->mode == TOOLS_AUTO)
        sb_appends(&b, "For each function call, return a json object with function name and arguments within "
                       "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
                       "<args-json-object>}\n</tool_call>");
    else
        sb_appends(&b, "Reply with one function call only, as a json object: {\"name\": <function-name>, "
                       "\"arguments\": <args-json-object>}");
    p->system_text = sb_detach(&b);
    if (p->mode == TOOLS_AUTO) return p->system_text ? 0 : -1;
    json_t *schema;
    if (p->mode == TOOLS_NAMED) {
        json_t *fn = NULL;
        for (size_t i = 0; i < json_array_size(a->tools); i++)
            if (!strcmp(json_string_value(json_object_get(fn_of(json_array_get(a->tools, i)), "name")), a->tool_choice))
                fn = fn_of(json_array_get(a->tools, i));
        schema = call_schema(fn);
    } else if (json_array_size(a->tools) == 1) {
        schema = call_schema(fn_of(json_array_get(a->tools, 0)));
    } else {
        json_t *any = json_array();
        for (size_t i = 0; i < json_array_size(a->tools); i++)
            json_array_append_new(any, call_schema(fn_of(json_array_get(a->tools, i))));
        schema = json_pack("{s:o}", "anyOf", any);
    }
    p->schema = schema ? json_dumps(schema, JSON_COMPACT) : NULL;
    json_decref(schema);
    if (!p->schema || !p->system_text) {
        tools_plan_free(p);
        api_error_set(e, 500, NULL, "out of memory");
        return -1;
    }
    return 0;
}

void tools_plan_free(ToolPlan *p)
{
    free(p->system_text);
    free(p->schema);
    memset(p, 0, sizeof *p);
}

/* {"name", "arguments"|"parameters"} as a tool call, or NULL. */
static json_t *as_call(json_t *o, uint64_t serial, int index, int k)
{
    json_t *name = json_object_get(o, "name");
    json_t *args = json_object_get(o, "arguments");
    if (!args) args = json_object_get(o, "parameters");
    if (!json_is_object(o) || !json_is_string(name) || !args) return NULL;
    char *text = json_is_string(args) ? strdup(json_string_value(args)) : json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) return NULL;
    char id[64];
    snprintf(id, sizeof id, "call_%llx_%d_%d", (unsigned long long)serial, index, k);
    json_t *c = json_pack("{s:s, s:s, s:{s:O, s:s}}", "id", id, "type", "function", "function", "name", name,
                          "arguments", text);
    free(text);
    return c;
}

json_t *tools_parse(const ToolPlan *p, const char *text, size_t len, uint64_t serial, int index, char **content)
{
    *content = NULL;
    json_t *calls = json_array();
    StrBuf rest = {0};
    static const char open[] = "<tool_call>", close[] = "</tool_call>";
    const char *s = text, *end = text + len;
    if (p->mode == TOOLS_AUTO) {
        while (s < end) {
            const char *a = memmem(s, (size_t)(end - s), open, sizeof open - 1);
            if (!a) break;
            const char *body = a + sizeof open - 1;
            const char *b = memmem(body, (size_t)(end - body), close, sizeof close - 1);
            const char *body_end = b ? b : end;      /* an unclosed last call (cut by a stop) */
            json_t *o = json_loadb(body, (size_t)(body_end - body), JSON_DECODE_ANY, NULL);
            json_t *c = o ? as_call(o, serial, index, (int)json_array_size(calls)) : NULL;
            json_decref(o);
            if (!c) break;              /* not a call: leave the rest as content */
            sb_append(&rest, s, (size_t)(a - s));
            json_array_append_new(calls, c);
            s = b ? b + sizeof close - 1 : end;
        }
    }
    if (json_array_size(calls) == 0 && p->mode == TOOLS_AUTO) {
        /* Mistral's form: [TOOL_CALLS] [{"name", "arguments"}, ...] */
        static const char tag[] = "[TOOL_CALLS]";
        const char *a = memmem(text, len, tag, sizeof tag - 1);
        if (a) {
            const char *body = a + sizeof tag - 1;
            json_t *arr = json_loadb(body, (size_t)(end - body), JSON_DISABLE_EOF_CHECK, NULL);
            for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++) {
                json_t *c = as_call(json_array_get(arr, i), serial, index, (int)i);
                if (!c) {
                    json_array_clear(calls);
                    break;
                }
                json_array_append_new(calls, c);
            }
            json_decref(arr);
            if (json_array_size(calls)) {
                sb_append(&rest, text, (size_t)(a - text));
                s = end;
            }
        }
    }
    if (json_array_size(calls) == 0) {
        /* the reply is exactly one call object (required / named, or Llama 3's JSON form) */
        json_t *o = json_loadb(text, len, 0, NULL);
        json_t *c = o ? as_call(o, serial, index, 0) : NULL;
        json_decref(o);
        if (c) {
            json_array_append_new(calls, c);
            s = end;
        }
    }
    if (s < end) sb_append(&rest, s, (size_t)(end - s));
    if (json_array_size(calls) == 0) {
        json_decref(calls);
        sb_free(&rest);
        return NULL;
    }
    /* trim the whitespace around what is left */
    char *r = sb_detach(&rest);
    if (r) {
        size_t a = 0, n = strlen(r);
        while (a < n && (r[a] == ' ' || r[a] == '\n' || r[a] == '\t' || r[a] == '\r')) a++;
        while (n > a && (r[n - 1] == ' ' || r[n - 1] == '\n' || r[n - 1] == '\t' || r[n - 1] == '\r')) n--;
        memmove(r, r + a, n - a);
        r[n - a] = '\0';
    }
    *content = r;
    return calls;
}

char *tools_render_calls(json_t *tool_calls)
{
    StrBuf b = {0};
    for (size_t i = 0; i < json_array_size(tool_calls); i++) {
        json_t *fn = json_object_get(json_array_get(tool_calls, i), "function");
        json_t *args = json_object_get(fn, "arguments");
        json_t *parsed = json_is_string(args) ? json_loads(json_string_value(args), JSON_DECODE_ANY, NULL) : json_incref(args);
        json_t *call = json_pack("{s:O, s:O}", "name", json_object_get(fn, "name") ? json_object_get(fn, "name") : json_null(),
                                 "arguments", parsed ? parsed : (args ? args : json_null()));
        char *t = call ? json_dumps(call, JSON_COMPACT) : NULL;
        json_decref(call);
        json_decref(parsed);
        if (i) sb_appends(&b, "\n");
        sb_appends(&b, "<tool_call>\n");
        sb_appends(&b, t ? t : "{}");
        sb_appends(&b, "\n</tool_call>");
        free(t);
    }
    return sb_detach(&b);
}

char *tools_render_response(const char *content)
{
    StrBuf b = {0};
    sb_appends(&b, "<tool_response>\n");
    sb_appends(&b, content);
    sb_appends(&b, "\n</tool_response>");
    return sb_detach(&b);
}
