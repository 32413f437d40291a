/*
 * server/tools.h — OpenAI tools on /v1/chat/completions: what the prompt
 * says about them, what the output is constrained to, and how a reply's
 * text becomes `tool_calls`.
 *
 * The tool-call format is the Hermes/Qwen one that the ChatML-family
 * templates (stdlib/chat/chatml, qwen) are trained on:
 *
 *   system turn += "# Tools ... <tools>\n{fn json}\n...</tools> ... <tool_call> ... </tool_call>"
 *   reply:   <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>   (one or more)
 *   history: assistant tool_calls are written back in that form; a `tool`
 *            message is a user turn holding <tool_response>\n...\n</tool_response>
 *
 * tool_choice:
 *   none      tools are not shown; plain chat
 *   auto      tools shown; the reply is parsed: <tool_call> blocks, Mistral's
 *             [TOOL_CALLS] [...] list, or a reply that is exactly {"name",
 *             "arguments"|"parameters"} (Llama 3's JSON form) become
 *             tool_calls, anything else is content
 *   required  the reply is constrained (JSON Schema) to one call of any tool:
 *   named     {"name": <const>, "arguments": <the function's parameters schema>}
 *
 * Pure functions over jansson values; any thread.
 */
#ifndef SGL_SERVER_TOOLS_H
#define SGL_SERVER_TOOLS_H

#include <jansson.h>
#include <stdint.h>

#include "server/api_req.h"

typedef enum { TOOLS_OFF, TOOLS_AUTO, TOOLS_REQUIRED, TOOLS_NAMED } ToolMode;

typedef struct {
    ToolMode mode;
    char *system_text;           /* added to the system turn (owned), or NULL */
    char *schema;                /* required / named: the output's JSON Schema (owned) */
} ToolPlan;

/* From the request's tools and tool_choice. 0, or -1 with e. */
int tools_plan(const ApiReq *a, ToolPlan *p, ApiError *e);
void tools_plan_free(ToolPlan *p);

/* The tool calls in a reply: a list of {"id", "type": "function",
 * "function": {"name", "arguments": TEXT}}, or NULL when there are none;
 * *content gets the text outside the calls (malloc'd). */
json_t *tools_parse(const ToolPlan *p, const char *text, size_t len, uint64_t serial, int index, char **content);

/* The history forms: an assistant message's tool_calls as <tool_call>
 * blocks, a tool message's content as a <tool_response> block (malloc'd). */
char *tools_render_calls(json_t *tool_calls);
char *tools_render_response(const char *content);

#endif
