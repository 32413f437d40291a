/*
 * server/openai.c — the OpenAI-compatible routes: /v1/models,
 * /v1/completions, /v1/chat/completions (whole or streamed as SSE, with
 * stream_options.include_usage), /v1/tokenize and /v1/detokenize.
 *
 * Shapes follow OpenAI's API reference: a completion's choices are indexed
 * prompt * n + choice; usage counts each prompt once (prompt_tokens,
 * prompt_tokens_details.cached_tokens from its first choice) and every
 * choice's completion tokens; logprobs are the model's log-softmax of the
 * chosen token (before sampling transforms, as vLLM reports them).
 */
#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "server/tools.h"

/* ---- shared pieces ---- */

static json_t *usage_json(const GenJob *j)
{
    long long prompt = 0, cached = 0, completion = 0;
    int n = j->api->n;
    for (int i = 0; i < j->n_seqs; i++) {
        const GenSeq *q = &j->seqs[i];
        if (i % n == 0) {
            prompt += q->prompt_tokens;
            cached += q->cached_tokens;
        }
        completion += q->completion_tokens;
    }
    return json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)prompt, "completion_tokens",
                     (json_int_t)completion, "total_tokens", (json_int_t)(prompt + completion), "prompt_tokens_details",
                     "cached_tokens", (json_int_t)cached);
}

static json_t *bytes_json(const char *p, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

/* Chat logprobs: {"content": [{token, logprob, bytes, top_logprobs}]}
 * over ids[0..n) with their logprobs (and k alternatives each, or none). */
static json_t *chat_logprobs(Server *s, const int32_t *ids, const float *lps, const SampTokLogprob *top, int per,
                             int n)
{
    json_t *content = json_array();
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = job_token_piece(s, ids[i], &len);
        json_t *alts = json_array();
        for (int k = 0; top && k < per; k++) {
            const SampTokLogprob *t = &top[(size_t)i * (size_t)per + (size_t)k];
            size_t tl;
            const char *tp = job_token_piece(s, t->id, &tl);
            json_array_append_new(alts, json_pack("{s:o, s:f, s:o}", "token", json_text(tp, tl), "logprob",
                                                  (double)t->logprob, "bytes", bytes_json(tp, tl)));
        }
        json_array_append_new(content, json_pack("{s:o, s:f, s:o, s:o}", "token", json_text(p, len), "logprob",
                                                 lps ? (double)lps[i] : 0.0, "bytes", bytes_json(p, len),
                                                 "top_logprobs", alts));
    }
    return json_pack("{s:o}", "content", content);
}

/* Completions logprobs: {tokens, token_logprobs, top_logprobs, text_offset}
 * over the echoed prompt (first logprob null) and the generated ids. */
static json_t *completion_logprobs(Server *s, const GenJob *j, const GenSeq *q, int echo)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = 0;
    if (echo) {
        for (int i = 0; i < q->n_prompt; i++) {
            size_t len;
            const char *p = job_token_piece(s, q->prompt_ids[i], &len);
            json_array_append_new(tokens, json_text(p, len));
            int k = i - q->input_from;   /* input_logprobs[k] is position input_from + k */
            json_array_append_new(lps, i >= q->input_from && q->input_from >= 1 && k < q->n_input_logprobs
                                           ? json_real(q->input_logprobs[k])
                                           : json_null());
            json_array_append_new(tops, json_null());
            json_array_append_new(offs, json_integer((json_int_t)off));
            off += len;
        }
    }
    int n = q->text_ids < q->n_ids ? q->text_ids : q->n_ids;
    if (q->finish == ENG_FINISH_LENGTH || q->finish == ENG_FINISH_CANCELLED) n = q->n_ids;
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = job_token_piece(s, q->ids[i], &len);
        json_array_append_new(tokens, json_text(p, len));
        json_array_append_new(lps, q->logprobs ? json_real(q->logprobs[i]) : json_null());
        json_t *alt = json_object();
        for (int k = 0; q->top && k < q->top_per_token; k++) {
            const SampTokLogprob *t = &q->top[(size_t)i * (size_t)q->top_per_token + (size_t)k];
            size_t tl;
            const char *tp = job_token_piece(s, t->id, &tl);
            json_t *key = json_text(tp, tl);
            json_object_set_new(alt, json_string_value(key), json_real(t->logprob));
            json_decref(key);
        }
        json_array_append_new(tops, j->api->top_logprobs ? alt : (json_decref(alt), json_null()));
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += len;
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

/* The text a choice returns: the prompt (echo), the output, the stop (no_stop_trim). */
static json_t *choice_text(Server *s, const GenJob *j, const GenSeq *q)
{
    StrBuf b = {0};
    const ApiReq *a = j->api;
    if (a->echo) {
        const ApiPrompt *p = &a->prompts[q->prompt];
        if (p->ids) {
            char *t = NULL;
            size_t tl = 0;
            if (tok_decode(eng_tokenizer(s->eng), p->ids, (size_t)p->n_ids, TOK_DEC_SKIP_SPECIAL, &t, &tl) == 0)
                sb_append(&b, t, tl);
            free(t);
        } else sb_append(&b, p->text, p->len);
    }
    sb_append(&b, q->out ? q->out : "", q->out_len);
    if (a->no_stop_trim && q->matched_stop) sb_appends(&b, q->matched_stop);
    json_t *v = json_text(b.data ? b.data : "", b.len);
    sb_free(&b);
    return v;
}

static void sse(HttpRequest *r, json_t *obj)
{
    char *t = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!t) return;
    StrBuf b = {0};
    sb_appends(&b, "data: ");
    sb_appends(&b, t);
    sb_appends(&b, "\n\n");
    http_stream_write(r, b.data, b.len);
    sb_free(&b);
    free(t);
}

static void sse_done(HttpRequest *r)
{
    static const char done[] = "data: [DONE]\n\n";
    http_stream_write(r, done, sizeof done - 1);
    http_stream_end(r);
}

/* The first error of a job's sequences (a failed sequence fails the request). */
static const GenSeq *failed_seq(const GenJob *j)
{
    for (int i = 0; i < j->n_seqs; i++)
        if (j->seqs[i].error) return &j->seqs[i];
    return NULL;
}

static json_t *error_obj(int status, const char *msg)
{
    ApiError e;
    api_error_set(&e, status, NULL, "%s", msg);
    return json_pack("{s:{s:s, s:s, s:n, s:i}}", "error", "message", e.message, "type", e.type, "param", "code", status);
}

/* ---- /v1/completions ---- */

static json_t *chunk_base(const GenJob *j, const char *object)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", j->id, "object", object, "created", (json_int_t)j->created, "model",
                     j->s->model_id);
}

static void completions_delta(GenJob *j, GenSeq *q, const EngDelta *d)
{
    if (!d->len && !j->api->logprobs) return;
    json_t *c = chunk_base(j, "text_completion");
    json_t *lp = json_null();
    if (j->api->logprobs && d->n_ids) {
        json_t *tokens = json_array(), *lps = json_array(), *tops = json_array();
        for (int i = 0; i < d->n_ids; i++) {
            size_t len;
            const char *p = job_token_piece(j->s, d->ids[i], &len);
            json_array_append_new(tokens, json_text(p, len));
            json_array_append_new(lps, d->logprobs ? json_real(d->logprobs[i]) : json_null());
            json_t *alt = json_null();
            if (j->api->top_logprobs && d->top) {
                json_decref(alt);
                alt = json_object();
                for (int k = 0; k < d->top_per_token; k++) {
                    const SampTokLogprob *t = &d->top[(size_t)i * (size_t)d->top_per_token + (size_t)k];
                    size_t tl;
                    const char *tp = job_token_piece(j->s, t->id, &tl);
                    json_t *key = json_text(tp, tl);
                    json_object_set_new(alt, json_string_value(key), json_real(t->logprob));
                    json_decref(key);
                }
            }
            json_array_append_new(tops, alt);
        }
        json_decref(lp);
        lp = json_pack("{s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops);
    }
    json_object_set_new(c, "choices", json_pack("[{s:i, s:o, s:o, s:n}]", "index", q->index, "text",
                                                json_text(d->text, d->len), "logprobs", lp, "finish_reason"));
    sse(j->req, c);
}

static void completions_seq_done(GenJob *j, GenSeq *q)
{
    json_t *c = chunk_base(j, "text_completion");
    const char *tail = j->api->no_stop_trim && q->matched_stop ? q->matched_stop : "";
    json_object_set_new(c, "choices", json_pack("[{s:i, s:s, s:n, s:s}]", "index", q->index, "text", tail, "logprobs",
                                                "finish_reason", job_finish_reason_openai(q)));
    sse(j->req, c);
}

static void stream_finish(GenJob *j, const char *object)
{
    const GenSeq *bad = failed_seq(j);
    if (bad) sse(j->req, error_obj(500, bad->error));
    if (j->api->include_usage) {
        json_t *c = chunk_base(j, object);
        json_object_set_new(c, "choices", json_array());
        json_object_set_new(c, "usage", usage_json(j));
        sse(j->req, c);
    }
    sse_done(j->req);
    job_free(j);
}

static void completions_stream_finish(GenJob *j) { stream_finish(j, "text_completion"); }

static void completions_finish(GenJob *j)
{
    const GenSeq *bad = failed_seq(j);
    if (bad) {
        server_errorf(j->req, 500, NULL, "%s", bad->error);
        job_free(j);
        return;
    }
    json_t *choices = json_array();
    for (int i = 0; i < j->n_seqs; i++) {
        GenSeq *q = &j->seqs[i];
        json_array_append_new(choices, json_pack("{s:i, s:o, s:o, s:s}", "index", i, "text", choice_text(j->s, j, q),
                                                 "logprobs",
                                                 j->api->logprobs ? completion_logprobs(j->s, j, q, j->api->echo)
                                                                  : json_null(),
                                                 "finish_reason", job_finish_reason_openai(q)));
    }
    json_t *o = chunk_base(j, "text_completion");
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_json(j));
    server_json(j->req, 200, o);
    job_free(j);
}

static void begin_stream(GenJob *j)
{
    j->streaming = 1;
    http_stream_begin(j->req, 200, "text/event-stream", NULL);
}

void openai_completions(Server *s, HttpRequest *r)
{
    ApiReq *a;
    ApiError e;
    if (api_req_decode(API_COMPLETIONS, r->body, r->body_len, &a, &e)) {
        server_error(r, &e);
        return;
    }
    if (job_admit(s, r, a->n_prompts * a->n)) {
        api_req_free(a);
        return;
    }
    GenJob *j = job_new(s, r, JOB_COMPLETIONS, a);
    if (!j) return;
    if (a->stream) {
        j->on_delta = completions_delta;
        j->on_seq_done = completions_seq_done;
        j->on_finish = completions_stream_finish;
    } else {
        j->on_finish = completions_finish;
    }
    if (job_start(j)) return;
    if (a->stream) {
        begin_stream(j);
        if (a->echo)
            for (int i = 0; i < j->n_seqs; i++) {
                json_t *c = chunk_base(j, "text_completion");
                const ApiPrompt *p = &a->prompts[j->seqs[i].prompt];
                json_t *t = p->ids ? json_string("") : json_text(p->text, p->len);
                if (p->ids) {
                    char *dt = NULL;
                    size_t dl = 0;
                    if (tok_decode(eng_tokenizer(s->eng), p->ids, (size_t)p->n_ids, TOK_DEC_SKIP_SPECIAL, &dt, &dl) == 0) {
                        json_decref(t);
                        t = json_text(dt, dl);
                    }
                    free(dt);
                }
                json_object_set_new(c, "choices", json_pack("[{s:i, s:o, s:n, s:n}]", "index", i, "text", t, "logprobs",
                                                            "finish_reason"));
                sse(r, c);
            }
    }
}

/* ---- /v1/chat/completions ---- */

typedef struct {
    int *role_sent;              /* per choice: the first chunk went out */
    ToolPlan plan;
} ChatState;

static void chat_state_free(void *ud)
{
    ChatState *c = ud;
    if (!c) return;
    free(c->role_sent);
    tools_plan_free(&c->plan);
    free(c);
}

static void chat_role_chunk(GenJob *j, GenSeq *q, ChatState *cs)
{
    if (cs->role_sent[q->index]) return;
    cs->role_sent[q->index] = 1;
    json_t *c = chunk_base(j, "chat.completion.chunk");
    json_object_set_new(c, "choices", json_pack("[{s:i, s:{s:s, s:s}, s:n, s:n}]", "index", q->index, "delta", "role",
                                                "assistant", "content", "", "logprobs", "finish_reason"));
    sse(j->req, c);
}

static void chat_delta(GenJob *j, GenSeq *q, const EngDelta *d)
{
    ChatState *cs = j->ud;
    chat_role_chunk(j, q, cs);
    if (cs->plan.mode != TOOLS_OFF) return;     /* tool calls go out whole, at the end */
    if (!d->len && !j->api->logprobs) return;
    json_t *c = chunk_base(j, "chat.completion.chunk");
    json_t *lp = j->api->logprobs && d->n_ids ? chat_logprobs(j->s, d->ids, d->logprobs, j->api->top_logprobs ? d->top : NULL,
                                                              d->top_per_token, d->n_ids)
                                              : json_null();
    json_object_set_new(c, "choices", json_pack("[{s:i, s:{s:o}, s:o, s:n}]", "index", q->index, "delta", "content",
                                                json_text(d->text, d->len), "logprobs", lp, "finish_reason"));
    sse(j->req, c);
}

/* The message of a finished choice: content, or tool calls parsed from it. */
static json_t *chat_message(GenJob *j, GenSeq *q, const char **finish)
{
    ChatState *cs = j->ud;
    StrBuf b = {0};
    sb_append(&b, q->out ? q->out : "", q->out_len);
    if (j->api->no_stop_trim && q->matched_stop) sb_appends(&b, q->matched_stop);
    json_t *m = json_pack("{s:s}", "role", "assistant");
    json_t *calls = NULL;
    char *content = NULL;
    if (cs->plan.mode != TOOLS_OFF && q->finish != ENG_FINISH_CANCELLED)
        calls = tools_parse(&cs->plan, b.data ? b.data : "", b.len, j->serial, q->index, &content);
    if (calls && json_array_size(calls)) {
        json_object_set_new(m, "content", content && *content ? json_string(content) : json_null());
        json_object_set_new(m, "tool_calls", calls);
        *finish = "tool_calls";
    } else {
        json_decref(calls);
        json_object_set_new(m, "content", json_text(b.data ? b.data : "", b.len));
        *finish = job_finish_reason_openai(q);
    }
    free(content);
    sb_free(&b);
    return m;
}

static void chat_seq_done(GenJob *j, GenSeq *q)
{
    ChatState *cs = j->ud;
    chat_role_chunk(j, q, cs);
    const char *finish = job_finish_reason_openai(q);
    json_t *delta = json_object();
    if (cs->plan.mode != TOOLS_OFF) {
        json_t *m = chat_message(j, q, &finish);
        json_t *calls = json_object_get(m, "tool_calls");
        if (calls) {
            for (size_t k = 0; k < json_array_size(calls); k++)
                json_object_set_new(json_array_get(calls, k), "index", json_integer((json_int_t)k));
            json_object_set(delta, "tool_calls", calls);
        } else json_object_set(delta, "content", json_object_get(m, "content"));
        json_decref(m);
    } else if (j->api->no_stop_trim && q->matched_stop) {
        json_object_set_new(delta, "content", json_string(q->matched_stop));
    }
    json_t *c = chunk_base(j, "chat.completion.chunk");
    json_object_set_new(c, "choices", json_pack("[{s:i, s:o, s:n, s:s}]", "index", q->index, "delta", delta, "logprobs",
                                                "finish_reason", finish));
    sse(j->req, c);
}

static void chat_stream_finish(GenJob *j) { stream_finish(j, "chat.completion.chunk"); }

static void chat_finish(GenJob *j)
{
    const GenSeq *bad = failed_seq(j);
    if (bad) {
        server_errorf(j->req, 500, NULL, "%s", bad->error);
        job_free(j);
        return;
    }
    json_t *choices = json_array();
    for (int i = 0; i < j->n_seqs; i++) {
        GenSeq *q = &j->seqs[i];
        const char *finish;
        json_t *m = chat_message(j, q, &finish);
        int n = q->finish == ENG_FINISH_STOP || q->finish == ENG_FINISH_EOS ? q->text_ids : q->n_ids;
        if (n > q->n_ids) n = q->n_ids;
        json_t *lp = j->api->logprobs ? chat_logprobs(j->s, q->ids, q->logprobs, q->top, q->top_per_token, n) : json_null();
        json_array_append_new(choices, json_pack("{s:i, s:o, s:o, s:s}", "index", i, "message", m, "logprobs", lp,
                                                 "finish_reason", finish));
    }
    json_t *o = chunk_base(j, "chat.completion");
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_json(j));
    server_json(j->req, 200, o);
    job_free(j);
}

static void chat_prompt_ready(void *ud, const char *prompt, size_t len, const char *error)
{
    GenJob *j = ud;
    if (!j->req) {           /* the client left while the template ran */
        job_free(j);
        return;
    }
    if (error) {
        server_errorf(j->req, 500, NULL, "chat template: %s", error);
        job_free(j);
        return;
    }
    j->prompt_text = malloc(len + 1);
    if (!j->prompt_text) {
        server_errorf(j->req, 500, NULL, "out of memory");
        job_free(j);
        return;
    }
    memcpy(j->prompt_text, prompt, len);
    j->prompt_text[len] = '\0';
    j->prompt_len = len;
    ChatState *cs = j->ud;
    if (cs->plan.mode != TOOLS_OFF && cs->plan.schema) {   /* required / named: the call's shape */
        j->api->gen.constraint = RT_CONSTRAINT_JSON;
        j->api->gen.constraint_src = cs->plan.schema;
        j->api->gen.constraint_len = strlen(cs->plan.schema);
    }
    if (job_start(j)) return;
    if (j->api->stream) begin_stream(j);
}

void openai_chat(Server *s, HttpRequest *r)
{
    ApiReq *a;
    ApiError e;
    if (api_req_decode(API_CHAT, r->body, r->body_len, &a, &e)) {
        server_error(r, &e);
        return;
    }
    if (job_admit(s, r, a->n)) {
        api_req_free(a);
        return;
    }
    ChatState *cs = calloc(1, sizeof *cs);
    int *sent = calloc((size_t)a->n, sizeof *sent);
    if (!cs || !sent) {
        free(cs);
        free(sent);
        api_req_free(a);
        server_errorf(r, 500, NULL, "out of memory");
        return;
    }
    cs->role_sent = sent;
    if (tools_plan(a, &cs->plan, &e)) {
        chat_state_free(cs);
        api_req_free(a);
        server_error(r, &e);
        return;
    }
    if (cs->plan.schema && a->gen.constraint != RT_CONSTRAINT_NONE) {
        chat_state_free(cs);
        api_req_free(a);
        server_errorf(r, 400, "tool_choice", "tool_choice %s cannot be combined with response_format or another constraint",
                      a->tool_choice);
        return;
    }
    GenJob *j = job_new(s, r, JOB_CHAT, a);
    if (!j) {
        chat_state_free(cs);
        return;
    }
    j->ud = cs;
    j->free_ud = chat_state_free;
    if (a->stream) {
        j->on_delta = chat_delta;
        j->on_seq_done = chat_seq_done;
        j->on_finish = chat_stream_finish;
    } else {
        j->on_finish = chat_finish;
    }
    if (chatmsg_render(s, a, &cs->plan, chat_prompt_ready, j, &e)) {
        j->req = NULL;
        r->on_abort = NULL;
        server_error(r, &e);
        job_free(j);
    }
}

/* ---- /v1/models, /v1/tokenize, /v1/detokenize ---- */

void openai_models(Server *s, HttpRequest *r)
{
    json_t *m = json_pack("{s:s, s:s, s:I, s:s, s:s, s:I}", "id", s->model_id, "object", "model", "created",
                          (json_int_t)0, "owned_by", "sgl", "root", runtime_model_path(s->rt), "max_model_len",
                          (json_int_t)eng_model(s->eng)->cfg.max_ctx);
    server_json(r, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", m));
}

static json_t *body_object(HttpRequest *r)
{
    json_error_t je;
    json_t *doc = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        server_errorf(r, 400, NULL, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        server_errorf(r, 400, NULL, "the body must be a JSON object");
        return NULL;
    }
    return doc;
}

static json_t *tokenize_one(Server *s, json_t *text, int add_special, char *err, size_t errcap)
{
    int *ids = NULL;
    size_t n = 0;
    if (runtime_tokenize(s->rt, json_string_value(text), json_string_length(text), add_special, 1, &ids, &n, err,
                         errcap))
        return NULL;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    free(ids);
    return a;
}

void openai_tokenize(Server *s, HttpRequest *r)
{
    json_t *doc = body_object(r);
    if (!doc) return;
    json_t *p = json_object_get(doc, "prompt");
    if (!p) p = json_object_get(doc, "text");
    json_t *as = json_object_get(doc, "add_special_tokens");
    if (as && !json_is_null(as) && !json_is_boolean(as)) {
        json_decref(doc);
        server_errorf(r, 400, "add_special_tokens", "add_special_tokens must be true or false");
        return;
    }
    int add_special = !as || json_is_null(as) || json_is_true(as);
    char err[512];
    json_t *out;
    if (json_is_string(p)) {
        json_t *ids = tokenize_one(s, p, add_special, err, sizeof err);
        if (!ids) goto fail;
        out = json_pack("{s:O, s:I, s:I}", "tokens", ids, "count", (json_int_t)json_array_size(ids), "max_model_len",
                        (json_int_t)eng_model(s->eng)->cfg.max_ctx);
        json_decref(ids);
    } else if (json_is_array(p)) {
        json_t *all = json_array(), *counts = json_array();
        for (size_t i = 0; i < json_array_size(p); i++) {
            json_t *x = json_array_get(p, i);
            json_t *ids = json_is_string(x) ? tokenize_one(s, x, add_special, err, sizeof err) : NULL;
            if (!ids) {
                if (!json_is_string(x)) snprintf(err, sizeof err, "prompt must be a string or a list of strings");
                json_decref(all);
                json_decref(counts);
                goto fail;
            }
            json_array_append_new(counts, json_integer((json_int_t)json_array_size(ids)));
            json_array_append_new(all, ids);
        }
        out = json_pack("{s:o, s:o, s:I}", "tokens", all, "count", counts, "max_model_len",
                        (json_int_t)eng_model(s->eng)->cfg.max_ctx);
    } else {
        snprintf(err, sizeof err, "prompt must be a string or a list of strings");
        goto fail;
    }
    json_decref(doc);
    server_json(r, 200, out);
    return;
fail:
    json_decref(doc);
    server_errorf(r, 400, "prompt", "%s", err);
}

void openai_detokenize(Server *s, HttpRequest *r)
{
    json_t *doc = body_object(r);
    if (!doc) return;
    json_t *t = json_object_get(doc, "tokens");
    if (!json_is_array(t)) {
        json_decref(doc);
        server_errorf(r, 400, "tokens", "tokens must be a list of token ids");
        return;
    }
    size_t n = json_array_size(t);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    int vocab = tok_vocab_size(eng_tokenizer(s->eng));
    for (size_t i = 0; ids && i < n; i++) {
        json_t *x = json_array_get(t, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= vocab) {
            free(ids);
            json_decref(doc);
            server_errorf(r, 400, "tokens", "tokens[%zu] is not a token id of this model (0..%d)", i, vocab - 1);
            return;
        }
        ids[i] = (int32_t)json_integer_value(x);
    }
    char *text = NULL;
    size_t len = 0;
    int rc = ids ? tok_decode(eng_tokenizer(s->eng), ids, n, 0, &text, &len) : ERR_NOMEM;
    free(ids);
    json_decref(doc);
    if (rc) {
        server_errorf(r, 500, NULL, "%s", err_str(rc));
        return;
    }
    server_json(r, 200, json_pack("{s:o}", "text", json_text(text, len)));
    free(text);
}
