/*
 * tests/unit/test_server_api.c — sgl serve's body decoder (server/api_req.h)
 * and tool planning (server/tools.h): fields reach gen's options by the one
 * table, SGLang's keys on /generate, refusals name their field, and tool
 * replies parse into calls.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "server/api_req.h"
#include "server/tools.h"

static ApiReq *ok(ApiKind k, const char *body)
{
    ApiReq *r;
    ApiError e;
    int rc = api_req_decode(k, body, strlen(body), &r, &e);
    cr_assert_eq(rc, 0, "refused: %s", e.message);
    return r;
}

static void refused(ApiKind k, const char *body, int status, const char *param, const char *in_message)
{
    ApiReq *r;
    ApiError e;
    cr_assert_eq(api_req_decode(k, body, strlen(body), &r, &e), -1, "accepted: %s", body);
    cr_assert_eq(e.status, status, "%s: %d %s", body, e.status, e.message);
    cr_assert_str_eq(e.param, param, "%s: param %s (%s)", body, e.param, e.message);
    cr_assert(strstr(e.message, in_message), "%s: message '%s'", body, e.message);
}

Test(api_req, completions_fields_by_the_table)
{
    ApiReq *r = ok(API_COMPLETIONS, "{\"prompt\": [\"a\", \"b\"], \"n\": 3, \"max_tokens\": 7, \"temperature\": 0,"
                                    " \"top_p\": 0.5, \"top_k\": 4, \"min_p\": 0.1, \"min_tokens\": 2, \"seed\": 9,"
                                    " \"stop\": \"\\n\", \"repetition_penalty\": 1.1, \"stop_token_ids\": [5],"
                                    " \"ignore_eos\": true, \"logprobs\": 2, \"echo\": true, \"unknown\": 1}");
    cr_assert_eq(r->n_prompts, 2);
    cr_assert_eq(r->n, 3);
    cr_assert_eq(r->gen.max_tokens, 7);
    cr_assert_eq(r->gen.temperature, 0);
    cr_assert_eq(r->gen.top_p, 0.5);
    cr_assert_eq(r->gen.top_k, 4);
    cr_assert_eq(r->gen.min_tokens, 2);
    cr_assert(r->gen.has_seed && r->gen.seed == 9);
    cr_assert_eq(r->gen.nstop, 1);
    cr_assert_str_eq(r->gen.stop[0], "\n");
    cr_assert_eq(r->gen.nstop_token_ids, 1);
    cr_assert(r->gen.ignore_eos);
    cr_assert(r->logprobs && r->top_logprobs == 2 && r->echo);
    api_req_free(r);
    /* OpenAI's default max_tokens for completions */
    r = ok(API_COMPLETIONS, "{\"prompt\": [1, 2, 3], \"max_tokens\": null}");
    cr_assert_eq(r->gen.max_tokens, 16);
    cr_assert_eq(r->prompts[0].n_ids, 3);
    api_req_free(r);
}

Test(api_req, refusals_name_the_field)
{
    refused(API_COMPLETIONS, "{\"prompt\": \"a\", \"max_tokens\": -1}", 400, "max_tokens", "max_tokens must be in");
    refused(API_COMPLETIONS, "{\"prompt\": \"a\", \"max_tokens\": 1e12}", 400, "max_tokens", "integer");
    refused(API_COMPLETIONS, "{\"prompt\": \"a\", \"temperature\": \"hot\"}", 400, "temperature", "number");
    refused(API_COMPLETIONS, "{\"prompt\": \"a\", \"suffix\": \"z\"}", 400, "suffix", "suffix");
    refused(API_COMPLETIONS, "{\"prompt\": \"a\", \"logit_bias\": {\"x\": 1}}", 400, "logit_bias", "token id");
    refused(API_COMPLETIONS, "{\"prompt\": \"a\", \"logit_bias\": {\"5\": 101}}", 400, "logit_bias", "[-100, 100]");
    refused(API_COMPLETIONS, "{\"prompt\": \"a\", \"best_of\": 3}", 400, "best_of", "best_of");
    refused(API_COMPLETIONS, "{\"prompt\": \"a\", \"regex\": \"a\", \"json_schema\": \"{}\"}", 400, "json_schema", "at most one");
    refused(API_COMPLETIONS, "{\"max_tokens\": 3}", 400, "prompt", "required");
    refused(API_COMPLETIONS, "[1]", 400, "", "JSON object");
    refused(API_COMPLETIONS, "{\"prompt\": ", 400, "", "not valid JSON");
    refused(API_CHAT, "{\"messages\": []}", 400, "messages", "non-empty");
    refused(API_CHAT, "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", 400, "messages[0]", "wizard");
    refused(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400, "messages[0]",
            "text parts");
    refused(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 2}", 400,
            "top_logprobs", "logprobs: true");
    refused(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": {\"type\": \"yaml\"}}", 400,
            "response_format.type", "yaml");
    refused(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tool_choice\": \"required\"}", 400,
            "tool_choice", "needs tools");
    refused(API_GENERATE, "{\"text\": \"a\", \"input_ids\": [1]}", 400, "input_ids", "exactly one");
    refused(API_GENERATE, "{\"text\": \"a\", \"sampling_params\": {\"skip_special_tokens\": 0}}", 400,
            "skip_special_tokens", "true or false");
    refused(API_GENERATE, "{\"text\": \"a\", \"image_data\": \"x\"}", 400, "image_data", "text only");
}

Test(api_req, chat_response_format_and_max_completion_tokens)
{
    ApiReq *r = ok(API_CHAT, "{\"messages\": [{\"role\": \"developer\", \"content\": [{\"type\": \"text\", \"text\": \"a\"},"
                             " {\"type\": \"text\", \"text\": \"b\"}]}, {\"role\": \"user\", \"content\": \"q\"}],"
                             " \"max_completion_tokens\": 5, \"response_format\": {\"type\": \"json_object\"}}");
    cr_assert_eq(r->n_messages, 2);
    cr_assert_str_eq(r->messages[0].role, "system");
    cr_assert_str_eq(r->messages[0].content, "ab");
    cr_assert_eq(r->gen.max_tokens, 5);
    cr_assert_eq(r->gen.constraint, RT_CONSTRAINT_JSON);
    cr_assert_str_eq(r->gen.constraint_src, "{\"type\":\"object\"}");     /* JSON mode: an object */
    api_req_free(r);
    r = ok(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"response_format\": {\"type\": \"json_schema\","
                     " \"json_schema\": {\"name\": \"x\", \"strict\": true, \"schema\": {\"type\": \"integer\"}}}}");
    cr_assert_eq(r->gen.constraint, RT_CONSTRAINT_JSON);
    cr_assert_str_eq(r->gen.constraint_src, "{\"type\":\"integer\"}");
    api_req_free(r);
}

Test(api_req, generate_sampling_params_by_sglang_keys)
{
    ApiReq *r = ok(API_GENERATE, "{\"text\": [\"a\", \"b\"], \"sampling_params\": {\"max_new_tokens\": 0, \"min_new_tokens\": 1,"
                                 " \"sampling_seed\": 4, \"json_schema\": {\"type\": \"string\"}, \"regex\": null,"
                                 " \"skip_special_tokens\": true, \"spaces_between_special_tokens\": true, \"n\": 1,"
                                 " \"stop\": []}, \"return_logprob\": true, \"logprob_start_len\": 0,"
                                 " \"return_text_in_logprobs\": true, \"rid\": \"r1\"}");
    cr_assert(r->list_in);
    cr_assert_eq(r->n_prompts, 2);
    cr_assert_eq(r->gen.max_tokens, 0);
    cr_assert_eq(r->gen.min_tokens, 1);
    cr_assert(r->gen.has_seed && r->gen.seed == 4);
    cr_assert_eq(r->gen.constraint, RT_CONSTRAINT_JSON);
    cr_assert_eq(r->gen.nstop, 0);
    cr_assert(r->return_logprob && r->gen.logprobs && r->logprob_start_len == 0 && r->return_text_in_logprobs);
    cr_assert_str_eq(r->rid, "r1");
    cr_assert(!r->keep_special_tokens);
    api_req_free(r);
    r = ok(API_GENERATE, "{\"text\": \"a\", \"sampling_params\": {\"skip_special_tokens\": false}}");
    cr_assert(r->keep_special_tokens);
    api_req_free(r);
    r = ok(API_GENERATE, "{\"input_ids\": [[1, 2], [3]], \"sampling_params\": {\"ebnf\": \"root ::= \\\"a\\\"\"}}");
    cr_assert_eq(r->n_prompts, 2);
    cr_assert_eq(r->prompts[1].n_ids, 1);
    cr_assert_eq(r->gen.constraint, RT_CONSTRAINT_EBNF);
    cr_assert_eq(r->gen.max_tokens, 128);    /* the table's default (SGLang's too) */
    api_req_free(r);
}

static const char tools_body[] =
    "{\"messages\": [{\"role\": \"user\", \"content\": \"w?\"}], \"tools\": [{\"type\": \"function\", \"function\":"
    " {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"get_time\"}}], \"tool_choice\": %s}";

static ApiReq *tools_req(const char *choice)
{
    char body[1024];
    snprintf(body, sizeof body, tools_body, choice);
    return ok(API_CHAT, body);
}

Test(tools, plans)
{
    ApiError e;
    ToolPlan p;
    ApiReq *r = tools_req("\"none\"");
    cr_assert_eq(tools_plan(r, &p, &e), 0);
    cr_assert_eq(p.mode, TOOLS_OFF);
    api_req_free(r);

    r = tools_req("{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"}}");
    cr_assert_eq(tools_plan(r, &p, &e), 0);
    cr_assert_eq(p.mode, TOOLS_NAMED);
    cr_assert(strstr(p.schema, "\"const\":\"get_weather\""));
    cr_assert(strstr(p.schema, "\"city\""));
    cr_assert(strstr(p.system_text, "<tools>"));
    tools_plan_free(&p);
    api_req_free(r);

    r = tools_req("\"required\"");
    cr_assert_eq(tools_plan(r, &p, &e), 0);
    cr_assert_eq(p.mode, TOOLS_REQUIRED);
    cr_assert(strstr(p.schema, "\"anyOf\""));
    tools_plan_free(&p);
    api_req_free(r);

    refused(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{\"type\": \"function\","
                      " \"function\": {\"name\": \"f\"}}], \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"g\"}}}",
            400, "tool_choice", "not in tools");
}

Test(tools, parse_replies)
{
    ApiError e;
    ToolPlan p;
    ApiReq *r = tools_req("\"auto\"");
    cr_assert_eq(tools_plan(r, &p, &e), 0);
    cr_assert_eq(p.mode, TOOLS_AUTO);
    char *content;
    const char *reply = "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
                        "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
    json_t *calls = tools_parse(&p, reply, strlen(reply), 7, 0, &content);
    cr_assert(calls);
    cr_assert_eq(json_array_size(calls), 2);
    json_t *fn = json_object_get(json_array_get(calls, 0), "function");
    cr_assert_str_eq(json_string_value(json_object_get(fn, "name")), "get_weather");
    cr_assert_str_eq(json_string_value(json_object_get(fn, "arguments")), "{\"city\":\"Paris\"}");
    cr_assert_str_eq(content, "Sure.");
    json_decref(calls);
    free(content);
    /* Llama 3's bare JSON form */
    const char *bare = "{\"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}";
    calls = tools_parse(&p, bare, strlen(bare), 7, 1, &content);
    cr_assert(calls && json_array_size(calls) == 1);
    json_decref(calls);
    free(content);
    /* Mistral's list form */
    const char *mistral = "[TOOL_CALLS] [{\"name\": \"get_time\", \"arguments\": {}}, {\"name\": \"get_weather\","
                          " \"arguments\": {\"city\": \"Oslo\"}}]";
    calls = tools_parse(&p, mistral, strlen(mistral), 7, 0, &content);
    cr_assert(calls && json_array_size(calls) == 2);
    cr_assert_str_eq(content, "");
    json_decref(calls);
    free(content);
    /* plain text is no call */
    calls = tools_parse(&p, "It is sunny.", 12, 7, 0, &content);
    cr_assert_null(calls);
    free(content);
    tools_plan_free(&p);
    api_req_free(r);
}
