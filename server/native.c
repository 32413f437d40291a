/*
 * server/native.c — SGLang's native routes, in the shapes its frontend
 * (sglang 0.5.2, lang/backend/runtime_endpoint.py) sends and reads:
 * /generate (single or list in, single or list out; SSE with cumulative
 * text), /get_model_info, /get_server_info, /health_generate,
 * /flush_cache, /abort_request, /concate_and_append_request.
 *
 * Logprob triples are [logprob, token_id, text-or-null]; the prompt's
 * first token has no logprob (null), as in SGLang; with top_logprobs_num,
 * input_top_logprobs and output_top_logprobs hold that many alternatives
 * per position (null for the first prompt token).
 */
#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"

static json_t *triple(Server *s, json_t *lp, int32_t id, int with_text)
{
    json_t *t = json_null();
    if (with_text) {
        size_t n;
        const char *p = job_token_piece(s, id, &n);
        json_decref(t);
        t = json_text(p, n);
    }
    return json_pack("[o, i, o]", lp, id, t);
}

static json_t *finish_json(const GenSeq *q)
{
    switch (q->finish) {
    case ENG_FINISH_LENGTH: return json_pack("{s:s, s:i}", "type", "length", "length", q->completion_tokens);
    case ENG_FINISH_CANCELLED: return json_pack("{s:s, s:s}", "type", "abort", "message", "cancelled");
    case ENG_FINISH_ERROR: return json_pack("{s:s, s:s}", "type", "abort", "message", q->error ? q->error : "error");
    default:
        if (q->matched_stop) return json_pack("{s:s, s:s}", "type", "stop", "matched", q->matched_stop);
        if (q->matched_id >= 0) return json_pack("{s:s, s:i}", "type", "stop", "matched", q->matched_id);
        return json_pack("{s:s, s:n}", "type", "stop", "matched");
    }
}

static json_t *meta_info(GenJob *j, const GenSeq *q, int final)
{
    Server *s = j->s;
    const ApiReq *a = j->api;
    char id[64];
    if (j->n_seqs > 1) snprintf(id, sizeof id, "%s-%d", j->id, q->index);
    else snprintf(id, sizeof id, "%s", j->id);
    json_t *m = json_pack("{s:s, s:o, s:i, s:i, s:i, s:f}", "id", id, "finish_reason", final ? finish_json(q) : json_null(),
                          "prompt_tokens", q->prompt_tokens, "completion_tokens", final ? q->completion_tokens : q->n_tokens,
                          "cached_tokens", q->cached_tokens, "e2e_latency", final ? q->e2e : server_now() - j->t0);
    if (!a->return_logprob || !final) return m;
    int wt = a->return_text_in_logprobs;
    json_t *in = json_array(), *in_top = json_array();
    if (q->input_from >= 1) {
        /* SGLang: -1 (the default) reports the last prompt token only */
        int start = a->logprob_start_len >= 0 ? a->logprob_start_len : q->n_prompt - 1;
        for (int p = start; p < q->n_prompt; p++) {
            int k = p - q->input_from;
            int have = p >= q->input_from && k < q->n_input_logprobs;
            json_t *lp = have ? json_real(q->input_logprobs[k]) : json_null();
            json_array_append_new(in, triple(s, lp, q->prompt_ids[p], wt));
            json_t *alts = json_null();
            if (have && q->input_top && a->top_logprobs) {
                json_decref(alts);
                alts = json_array();
                for (int t = 0; t < q->input_top_per_token; t++) {
                    const SampTokLogprob *x = &q->input_top[(size_t)k * (size_t)q->input_top_per_token + (size_t)t];
                    if (x->id >= 0) json_array_append_new(alts, triple(s, json_real(x->logprob), x->id, wt));
                }
            }
            json_array_append_new(in_top, alts);
        }
    }
    json_t *out = json_array(), *out_top = json_array();
    for (int i = 0; i < q->n_ids; i++) {
        json_array_append_new(out, triple(s, q->logprobs ? json_real(q->logprobs[i]) : json_null(), q->ids[i], wt));
        json_t *alts = json_array();
        for (int k = 0; q->top && k < q->top_per_token; k++) {
            const SampTokLogprob *t = &q->top[(size_t)i * (size_t)q->top_per_token + (size_t)k];
            json_array_append_new(alts, triple(s, json_real(t->logprob), t->id, wt));
        }
        json_array_append_new(out_top, a->top_logprobs ? alts : (json_decref(alts), json_null()));
    }
    json_object_set_new(m, "input_token_logprobs", in);
    json_object_set_new(m, "output_token_logprobs", out);
    json_object_set_new(m, "input_top_logprobs", in_top);
    json_object_set_new(m, "output_top_logprobs", out_top);
    return m;
}

static json_t *seq_text(const GenJob *j, const GenSeq *q)
{
    StrBuf b = {0};
    sb_append(&b, q->out ? q->out : "", q->out_len);
    if (j->api->no_stop_trim && q->matched_stop) sb_appends(&b, q->matched_stop);
    json_t *v = json_text(b.data ? b.data : "", b.len);
    sb_free(&b);
    return v;
}

static json_t *ids_json(const int32_t *ids, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static json_t *seq_json(GenJob *j, const GenSeq *q)
{
    return json_pack("{s:o, s:o, s:o}", "text", seq_text(j, q), "output_ids", ids_json(q->ids, q->n_ids), "meta_info",
                     meta_info(j, q, 1));
}

static void generate_finish(GenJob *j)
{
    for (int i = 0; i < j->n_seqs; i++)
        if (j->seqs[i].error && j->seqs[i].finish == ENG_FINISH_ERROR) {
            server_errorf(j->req, 500, NULL, "%s", j->seqs[i].error);
            job_free(j);
            return;
        }
    json_t *out;
    if (j->n_seqs == 1 && !j->api->list_in) out = seq_json(j, &j->seqs[0]);
    else {
        out = json_array();
        for (int i = 0; i < j->n_seqs; i++) json_array_append_new(out, seq_json(j, &j->seqs[i]));
    }
    server_json(j->req, 200, out);
    job_free(j);
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

/* Streamed: each event carries the text so far (SGLang's cumulative form). */
static void generate_delta(GenJob *j, GenSeq *q, const EngDelta *d)
{
    if (!d->len) return;
    sse(j->req, json_pack("{s:o, s:o, s:o}", "text", json_text(q->text.data ? q->text.data : "", q->text.len),
                          "output_ids", ids_json(q->stream_ids, q->n_stream_ids), "meta_info", meta_info(j, q, 0)));
}

static void generate_stream_finish(GenJob *j)
{
    sse(j->req, seq_json(j, &j->seqs[0]));
    static const char done[] = "data: [DONE]\n\n";
    http_stream_write(j->req, done, sizeof done - 1);
    http_stream_end(j->req);
    job_free(j);
}

static void start_generate(Server *s, HttpRequest *r, ApiReq *a, void (*finish)(GenJob *))
{
    if (job_admit(s, r, a->n_prompts * a->n)) {
        api_req_free(a);
        return;
    }
    GenJob *j = job_new(s, r, JOB_GENERATE, a);
    if (!j) return;
    if (a->stream) {
        j->on_delta = generate_delta;
        j->on_finish = generate_stream_finish;
    } else {
        j->on_finish = finish;
    }
    if (job_start(j)) return;
    if (a->stream) {
        j->streaming = 1;
        http_stream_begin(r, 200, "text/event-stream", NULL);
    }
}

void native_generate(Server *s, HttpRequest *r)
{
    ApiReq *a;
    ApiError e;
    if (api_req_decode(API_GENERATE, r->body, r->body_len, &a, &e)) {
        server_error(r, &e);
        return;
    }
    start_generate(s, r, a, generate_finish);
}

static void health_finish(GenJob *j)
{
    int ok = j->n_seqs == 1 && !j->seqs[0].error;
    if (ok) http_respond(j->req, 200, "application/json", "{}", 2, NULL);
    else server_errorf(j->req, 503, NULL, "generation failed: %s", j->seqs[0].error ? j->seqs[0].error : "?");
    job_free(j);
}

void native_health_generate(Server *s, HttpRequest *r)
{
    static const char body[] = "{\"text\": \"ping\", \"sampling_params\": {\"max_new_tokens\": 1, \"temperature\": 0}}";
    ApiReq *a;
    ApiError e;
    if (api_req_decode(API_GENERATE, body, sizeof body - 1, &a, &e)) {
        server_error(r, &e);
        return;
    }
    start_generate(s, r, a, health_finish);
}

void native_model_info(Server *s, HttpRequest *r)
{
    const char *path = runtime_model_path(s->rt);
    server_json(r, 200, json_pack("{s:s, s:s, s:b, s:n, s:s}", "model_path", path, "tokenizer_path", path,
                                  "is_generation", 1, "preferred_sampling_params", "weight_version", "default"));
}

void native_server_info(Server *s, HttpRequest *r)
{
    EngStats es;
    eng_stats(s->eng, &es);
    const sgl_serve_options *o = &s->opt;
    server_json(r, 200,
                json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:I, s:b, s:s, s:[{s:f, s:I, s:I}]}", "version", "sgl 0.1.0",
                          "model_path", runtime_model_path(s->rt), "host", o->host ? o->host : "127.0.0.1", "port",
                          http_server_port(s->http), "max_running_requests",
                          eng_max_running(s->eng), "chunked_prefill_size",
                          o->runtime.chunk_size ? o->runtime.chunk_size : 512, "context_length",
                          eng_model(s->eng)->cfg.max_ctx, "max_total_num_tokens", (json_int_t)es.kv.total,
                          "disable_radix_cache", !o->runtime.prefix_cache, "served_model_name", s->model_id,
                          "internal_states", "cache_hit_rate", es.hit_rate, "generated_tokens",
                          (json_int_t)es.generated_tokens, "prompt_tokens", (json_int_t)es.prompt_tokens));
}

void native_flush_cache(Server *s, HttpRequest *r)
{
    /* as SGLang: only when idle, so that no request loses its prefix midway */
    int busy = eng_in_flight(s->eng);
    if (busy) {
        server_errorf(r, 400, NULL, "cache not flushed: %d requests are in flight", busy);
        return;
    }
    if (eng_flush_cache(s->eng)) {
        server_errorf(r, 500, NULL, "out of memory");
        return;
    }
    static const char msg[] = "Cache flushed.\n";
    http_respond(r, 200, "text/plain", msg, sizeof msg - 1, NULL);
}

void native_abort_request(Server *s, HttpRequest *r)
{
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *rid = json_object_get(doc, "rid");
    int all = json_is_true(json_object_get(doc, "abort_all"));
    if (!doc || (!json_is_string(rid) && !all)) {
        json_decref(doc);
        server_errorf(r, 400, "rid", "abort_request needs {\"rid\": \"...\"} or {\"abort_all\": true}");
        return;
    }
    int n = 0;
    for (GenJob *j = s->jobs; j; j = j->next)
        if (all || (j->kind == JOB_GENERATE && !strcmp(j->id, json_string_value(rid)))) {
            job_cancel(j);
            n++;
        }
    json_decref(doc);
    server_json(r, 200, json_pack("{s:i}", "aborted", n));
}

void native_concate_and_append(Server *s, HttpRequest *r)
{
    (void)s;
    /* The frontend's fork join asks SGLang to splice the branches' KV;
     * here the radix cache already shares every prefix the next request
     * reuses, so there is nothing to move. */
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        server_errorf(r, 400, NULL, "concate_and_append_request needs {\"src_rids\": [...], \"dst_rid\": \"...\"}");
        return;
    }
    json_decref(doc);
    http_respond(r, 200, "application/json", "{\"success\":true}", 16, NULL);
}
