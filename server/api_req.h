/*
 * server/api_req.h — the body decoder: a request body (JSON, through
 * jansson) of /v1/completions, /v1/chat/completions or SGLang's /generate
 * read into one ApiReq — the prompts, gen's options by the one table
 * (runtime/gen_options.h: each option's OpenAI field and SGLang key) and
 * the API's own switches — or refused with an OpenAI-style error: the
 * status, a message and the field ("param") at fault.
 *
 *   body ──json_loadb──► json_t ──api_req_decode(kind)──► ApiReq
 *                                      │  options: rt_gen_options[] by the openai /
 *                                      │  sglang column (plus SGLang's extras on the
 *                                      │  OpenAI routes, under their SGLang names)
 *                                      └─ error: status 400, message, param
 *
 * Rules: unknown fields are ignored (as OpenAI does); null is "not given";
 * a known field of the wrong type or out of range is a 400 that names it; a
 * value the server cannot honour exactly (suffix, logit_bias, best_of > n,
 * ...) is a 400 that names it, never silently dropped.
 *
 * Ownership: an ApiReq owns the json_t document; its strings (prompts,
 * stops, constraint source) point into it or into its own allocations;
 * api_req_free releases both. Pure: no runtime needed (the fuzz target
 * runs it), any thread.
 */
#ifndef SGL_SERVER_API_REQ_H
#define SGL_SERVER_API_REQ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/rt.h"
#include "runtime/sampler.h"

typedef enum { API_COMPLETIONS, API_CHAT, API_GENERATE } ApiKind;

/* One prompt: text, or token ids. */
typedef struct {
    const char *text;
    size_t len;
    int32_t *ids;
    int n_ids;
} ApiPrompt;

/* A chat message with its content as one text (text parts joined). */
typedef struct {
    const char *role;            /* system, user, assistant, tool */
    char *content;               /* owned */
    json_t *tool_calls;          /* an assistant message's, borrowed from the doc */
    const char *tool_call_id;
} ApiMessage;

typedef struct {
    ApiKind kind;
    json_t *doc;
    RtGenParams gen;             /* gen's options; strings point into doc / the arrays below */
    const char **stops;
    int32_t *stop_ids;
    char *constraint_owned;      /* a schema serialised from an object */
    SampBias *bias;              /* logit_bias: token id -> added to its logit */
    int n_bias;
    int n;                       /* choices per prompt (n / sampling_params.n) */
    int stream;
    int include_usage;           /* stream_options.include_usage */
    int echo;                    /* completions */
    int logprobs;                /* chat: logprobs; completions: logprobs > 0 */
    int top_logprobs;            /* chat: top_logprobs; completions: logprobs N; native: top_logprobs_num */
    int no_stop_trim;
    int keep_special_tokens;     /* skip_special_tokens: false */
    int list_in;                 /* native: text/input_ids was a list (list out) */
    int return_logprob;          /* native */
    int logprob_start_len;       /* native: -1 none */
    int return_text_in_logprobs; /* native */
    const char *rid;             /* native: the request id, or NULL */
    const char *model;           /* the "model" field, or NULL */
    const char *user;
    ApiPrompt *prompts;
    int n_prompts;
    ApiMessage *messages;        /* chat */
    int n_messages;
    json_t *tools;               /* chat: the tools array (borrowed), or NULL */
    const char *tool_choice;     /* "none", "auto", "required", or a function's name */
    int tool_choice_named;       /* tool_choice was {"type":"function","function":{"name"}} */
    int add_generation_prompt;   /* chat (SGLang's continue_final_message is refused) */
    double max_tokens_given;     /* 0: defaulted */
} ApiReq;

typedef struct {
    int status;                  /* 400 ... */
    char message[512];
    char param[64];              /* "" for none */
    const char *type;            /* "invalid_request_error" */
} ApiError;

/* Decodes body[0..len). 0 and *out, or -1 with *e. */
int api_req_decode(ApiKind kind, const char *body, size_t len, ApiReq **out, ApiError *e);
void api_req_free(ApiReq *r);

/* {"error": {"message", "type", "param", "code"}} as a malloc'd string. */
char *api_error_json(const ApiError *e);

/* A JSON string of s[0..n), invalid UTF-8 bytes replaced by U+FFFD (an
 * error message may quote the client's bytes; so may generated text). */
json_t *json_text(const char *s, size_t n);
void api_error_set(ApiError *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
