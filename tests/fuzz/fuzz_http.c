/*
 * tests/fuzz/fuzz_http.c — libFuzzer over sgl serve's request path without
 * sockets or a model: the HTTP parser as a connection feeds it (in two
 * pieces split where the first input byte says, then every pipelined
 * request after the first), and each complete request's body through the
 * body decoder of its route (all three when the path is another), and a
 * chat request's tools through the tool planner and the reply parser.
 *
 * Input: one byte, then the bytes. An odd first byte: the bytes are a
 * body, decoded as each of the three routes' bodies (the decoder's own
 * coverage); an even one: they are raw request bytes, split where the
 * byte says (as a fraction of the rest). Seeds: tests/fuzz/http_seeds/. Properties: no crash, no
 * leak, no undefined behaviour; a refused request has a 4xx/5xx status; a
 * decoded request has a sane shape (checked below).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/api_req.h"
#include "server/http.h"
#include "server/tools.h"

static void check(int cond)
{
    if (!cond) abort();
}

static void decode(ApiKind kind, const char *body, size_t len)
{
    ApiReq *r;
    ApiError e;
    if (api_req_decode(kind, body, len, &r, &e)) {
        check(e.status >= 400 && e.status < 600);
        char *j = api_error_json(&e);
        check(j != NULL);
        free(j);
        return;
    }
    check(r->n >= 1);
    check(r->gen.max_tokens >= 0);
    check(kind == API_CHAT ? r->n_messages > 0 : r->n_prompts > 0);
    for (int i = 0; i < r->n_prompts; i++) check(r->prompts[i].text || r->prompts[i].ids);
    if (kind == API_CHAT) {
        ToolPlan p;
        if (tools_plan(r, &p, &e) == 0) {
            char *content = NULL;
            json_t *calls = tools_parse(&p, body, len, 1, 0, &content);
            json_decref(calls);
            free(content);
            tools_plan_free(&p);
        }
        for (int i = 0; i < r->n_messages; i++)
            if (r->messages[i].tool_calls) free(tools_render_calls(r->messages[i].tool_calls));
    }
    api_req_free(r);
}

static void on_request(const HttpRequest *req)
{
    check(req->path && req->query && req->body);
    if (!strcmp(req->path, "/v1/completions")) decode(API_COMPLETIONS, req->body, req->body_len);
    else if (!strcmp(req->path, "/v1/chat/completions")) decode(API_CHAT, req->body, req->body_len);
    else if (!strcmp(req->path, "/generate")) decode(API_GENERATE, req->body, req->body_len);
    else {
        decode(API_COMPLETIONS, req->body, req->body_len);
        decode(API_CHAT, req->body, req->body_len);
        decode(API_GENERATE, req->body, req->body_len);
    }
    char buf[64];
    http_query_param(req->query, "x", buf, sizeof buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1) {
        decode(API_COMPLETIONS, (const char *)data + 1, size - 1);
        decode(API_CHAT, (const char *)data + 1, size - 1);
        decode(API_GENERATE, (const char *)data + 1, size - 1);
        return 0;
    }
    size_t split = (size_t)data[0] * (size - 1) / 255;
    const char *bytes = (const char *)data + 1;
    size_t n = size - 1;
    HttpLimits lim;
    http_limits_default(&lim);
    lim.max_header_bytes = 2048;
    lim.max_body_bytes = 4096;
    HttpParse *p = http_parse_new(&lim);
    if (!p) return 0;
    int status;
    const HttpRequest *req;
    int rc = http_parse_feed(p, bytes, split, &status, &req);
    if (rc == 1) on_request(req);
    if (rc < 0) check(status >= 400 && status < 600);
    /* the rest (a request split across reads, or pipelined ones), piece by
     * piece: the parser consumes up to each complete request */
    const char *rest = bytes + split;
    size_t left = n - split;
    for (int rounds = 0; rc >= 0 && left && rounds < 64; rounds++) {
        rc = http_parse_feed(p, rest, left, &status, &req);
        size_t used = http_parse_consumed(p);
        if (rc == 1) on_request(req);
        if (rc < 0) check(status >= 400 && status < 600);
        if (used == 0) break;
        rest += used;
        left -= used;
    }
    http_parse_free(p);
    return 0;
}
