/*
 * server/chatmsg.c — chat messages to a prompt through the VM's one template
 * path: the messages become role blocks of a small SGL program, and the
 * VM applies the chat template in effect (stdlib/chat/, picked from the
 * model's Jinja template or by --chat-template) exactly as it does for
 * programs; the program returns the prompt up to an open assistant turn.
 *
 *   messages ──(tools: system text, <tool_call>/<tool_response> forms)──► args JSON
 *      ──sgl_task_start(render)──► role blocks ─► role_begin/role_end ─► state.text
 *      ──done──► cb(prompt)
 *
 * The render program never calls the model, so its task finishes inside
 * the sgl_vm_run_ready that chatmsg_render calls: cb runs before chatmsg_render
 * returns.
 */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

#include "server/tools.h"

static const char render_src[] =
    "# sgl serve: OpenAI chat messages as role blocks (server/chatmsg.c)\n"
    "fn main(messages) {\n"
    "    let prompt = \"\"\n"
    "    for m in messages {\n"
    "        let content = m[\"content\"]\n"
    "        if m[\"role\"] == \"system\" { system { content } }\n"
    "        else if m[\"role\"] == \"user\" { user { content } }\n"
    "        else { assistant { content } }\n"
    "    }\n"
    "    assistant { prompt = state.text }\n"
    "    return prompt\n"
    "}\n";

int chatmsg_init(Server *s, char *err, size_t errcap)
{
    s->chat_vm = sgl_vm_new();
    if (!s->chat_vm) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    sgl_vm_set_backend(s->chat_vm, runtime_backend(s->rt));
    if (s->opt.runtime.chat_template) sgl_vm_set_chat_template(s->chat_vm, s->opt.runtime.chat_template);
    if (sgl_compile_source(s->chat_vm, "<chat>", render_src, sizeof render_src - 1, &s->chat_prog) != SGL_OK) {
        snprintf(err, errcap, "chat renderer: %s", sgl_last_error(s->chat_vm));
        return -1;
    }
    return 0;
}

void chatmsg_fini(Server *s)
{
    sgl_program_free(s->chat_prog);
    s->chat_prog = NULL;
    sgl_vm_free(s->chat_vm);
    s->chat_vm = NULL;
}

typedef struct {
    chatmsg_fn cb;
    void *ud;
} Render;

static void render_done(void *ud, sgl_task *t)
{
    Render *rd = ud;
    char *res = NULL;
    const char *error = NULL;
    json_t *doc = NULL;
    if (sgl_task_result(t, &res) != SGL_OK) error = sgl_task_error(t);
    else {
        doc = json_loads(res, 0, NULL);
        if (!json_is_string(json_object_get(doc, "value"))) error = "the chat renderer returned no prompt";
    }
    json_t *v = json_object_get(doc, "value");
    rd->cb(rd->ud, error ? NULL : json_string_value(v), error ? 0 : json_string_length(v), error);
    json_decref(doc);
    free(res);
    sgl_task_free(t);
    free(rd);
}

static json_t *msg(const char *role, const char *content)
{
    return json_pack("{s:s, s:s}", "role", role, "content", content);
}

int chatmsg_render(Server *s, const ApiReq *a, const ToolPlan *plan, chatmsg_fn cb, void *ud, ApiError *e)
{
    json_t *list = json_array();
    int first_system = a->n_messages && !strcmp(a->messages[0].role, "system");
    if (plan && plan->system_text && !first_system) json_array_append_new(list, msg("system", plan->system_text));
    for (int i = 0; i < a->n_messages; i++) {
        const ApiMessage *m = &a->messages[i];
        if (i == 0 && first_system && plan && plan->system_text) {
            size_t n = strlen(m->content) + strlen(plan->system_text) + 3;
            char *t = malloc(n);
            if (!t) goto oom;
            snprintf(t, n, "%s%s%s", m->content, *m->content ? "\n\n" : "", plan->system_text);
            json_array_append_new(list, msg("system", t));
            free(t);
        } else if (!strcmp(m->role, "tool")) {
            char *t = tools_render_response(m->content);
            if (!t) goto oom;
            json_array_append_new(list, msg("user", t));
            free(t);
        } else if (m->tool_calls && json_array_size(m->tool_calls)) {
            char *calls = tools_render_calls(m->tool_calls);
            if (!calls) goto oom;
            size_t n = strlen(m->content) + strlen(calls) + 2;
            char *t = malloc(n);
            if (!t) {
                free(calls);
                goto oom;
            }
            snprintf(t, n, "%s%s%s", m->content, *m->content ? "\n" : "", calls);
            json_array_append_new(list, msg("assistant", t));
            free(t);
            free(calls);
        } else {
            json_array_append_new(list, msg(m->role, m->content));
        }
    }
    json_t *args = json_pack("{s:o}", "messages", list);
    char *args_text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    Render *rd = malloc(sizeof *rd);
    if (!args_text || !rd) {
        free(args_text);
        free(rd);
        api_error_set(e, 500, NULL, "out of memory");
        return -1;
    }
    rd->cb = cb;
    rd->ud = ud;
    sgl_task *t;
    if (sgl_task_start(s->chat_vm, s->chat_prog, "main", args_text, render_done, rd, &t) != SGL_OK) {
        api_error_set(e, 500, NULL, "chat renderer: %s", sgl_last_error(s->chat_vm));
        free(args_text);
        free(rd);
        return -1;
    }
    free(args_text);
    server_vm_task_started(s);
    sgl_vm_run_ready(s->chat_vm);
    server_vm_task_finished(s);
    return 0;
oom:
    json_decref(list);
    api_error_set(e, 500, NULL, "out of memory");
    return -1;
}
