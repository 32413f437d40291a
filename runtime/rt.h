/*
 * runtime/rt.h — the model-call interface the VM sees.
 *
 * The VM knows nothing of models, tokens or threads: a fiber that reaches
 * `gen` or `select` fills an RtGenRequest / RtSelectRequest, submits it to an
 * RtBackend and suspends. The backend calls the completion callback later, on
 * the VM's thread, from inside backend->wait(). When every fiber is suspended
 * the VM calls wait() until at least one callback has fired.
 *
 * Rule (as in libuv): if submit returns non-zero, the callback never fires;
 * if it returns 0, the callback fires exactly once.
 *
 * Ownership: request fields are borrowed for the duration of the submit call
 * only; a backend copies what it keeps. Result fields are owned by the
 * backend and valid only during the callback.
 *
 * Implementations: runtime/rt_engine (the real model, over runtime/engine),
 * tests' scripted backend (tests/unit), and none at all: with no backend the
 * VM raises "no model: pass --model or run make model".
 */
#ifndef SGL_RUNTIME_RT_H
#define SGL_RUNTIME_RT_H

#include <stddef.h>
#include <stdint.h>

#include "base/role.h"


/* Bytes [start, end) of the prompt text were written inside a role block. */
typedef struct {
    Role role;
    size_t start, end;
} RtSegment;

/* A backend's record of the token ids it used for a prompt state's text,
 * opaque to the VM, which only keeps it: a backend may return one in
 * RtGenResult.tokens; the VM then keeps it on the state (retain), passes it
 * back in RtPrompt.tokens for that state's later requests, shares it with
 * a copy of the state (fork: retain) and lets go of it (release) when it
 * takes a newer one or frees the state. A backend embeds this as the first
 * member of its own record and must ignore records it did not make. VM
 * thread only. */
typedef struct RtTokens {
    void (*retain)(struct RtTokens *t);
    void (*release)(struct RtTokens *t);
} RtTokens;

typedef struct {
    const char *text;
    size_t len;
    const RtSegment *segs;
    int nsegs;
    RtTokens *tokens;           /* the state's token record, or NULL (borrowed) */
} RtPrompt;

typedef enum {
    RT_CONSTRAINT_NONE, RT_CONSTRAINT_REGEX, RT_CONSTRAINT_JSON,
    RT_CONSTRAINT_GRAMMAR, RT_CONSTRAINT_CHOICES, RT_CONSTRAINT_TYPE, RT_CONSTRAINT_EBNF
} RtConstraintKind;

/* One gen call's parameters. The scalar fields are gen()'s options of the
 * same name; their defaults and ranges are runtime/gen_options.h, the one
 * list of options (rt_gen_params_default fills them in). */
typedef struct {
    int max_tokens;
    int min_tokens;
    const char *const *stop;    /* stop strings */
    int nstop;
    const int32_t *stop_token_ids;
    int nstop_token_ids;
    double temperature;         /* 0 = greedy */
    double top_p;
    int top_k;                  /* -1 = off */
    double min_p;
    double frequency_penalty, presence_penalty, repetition_penalty;
    int has_seed;
    uint64_t seed;
    int ignore_eos;
    int logprobs;               /* record per-token logprobs */
    int top_logprobs;           /* how many alternatives per token */
    RtConstraintKind constraint;
    const char *constraint_src; /* regex / JSON Schema text / EBNF / type name */
    size_t constraint_len;
    const char *const *choices; /* RT_CONSTRAINT_CHOICES */
    int nchoices;
    /* Streaming (NULL: none): called with the gen's callback ud for each
     * piece of text that became final (complete UTF-8, stop strings held
     * back), on the VM's thread, before the completion callback; the pieces
     * concatenate to a prefix of the result's text. Not for choices. */
    void (*on_delta)(void *ud, const char *text, size_t len);
} RtGenParams;

void rt_gen_params_default(RtGenParams *p);

typedef struct {
    int status;                 /* 0 ok, else error (message in `error`) */
    const char *error;
    const char *text;
    size_t len;
    const double *logprobs;     /* one per generated token when requested */
    int n_logprobs;
    const char *finish_reason;  /* "stop", "length", "eos" */
    int prompt_tokens, cached_tokens, completion_tokens;
    RtTokens *tokens;           /* the prompt state's new token record (its text
                                   plus this text), or NULL; retain to keep it */
} RtGenResult;

typedef enum {
    RT_SELECT_TOKEN_LENGTH_NORMALIZED,
    RT_SELECT_GREEDY_TOKEN,
    RT_SELECT_UNCONDITIONAL_LIKELIHOOD_NORMALIZED
} RtSelectMethod;

typedef struct {
    int status;
    const char *error;
    int best;                   /* index into choices */
    const double *scores;       /* one per choice (method-specific score) */
    int nscores;
} RtSelectResult;

typedef void (*rt_gen_cb)(void *ud, const RtGenResult *res);
typedef void (*rt_select_cb)(void *ud, const RtSelectResult *res);

typedef struct RtBackend {
    void *ctx;
    int (*gen)(void *ctx, const RtPrompt *prompt, const RtGenParams *params,
               rt_gen_cb cb, void *ud);
    int (*select)(void *ctx, const RtPrompt *prompt, const char *const *choices, int nchoices,
                  RtSelectMethod method, rt_select_cb cb, void *ud);
    /* Blocks until at least one completion callback (or a streamed piece,
     * RtGenParams.on_delta) has fired (it fires inside this call). Returns
     * 0, or -1 if nothing is in flight. */
    int (*wait)(void *ctx);
    /* Never blocks: delivers the completions that have already arrived
     * (their callbacks fire inside this call) and returns how many fired,
     * or -1 if nothing is in flight. The non-blocking driver (vm_run_ready)
     * and an event loop use this instead of wait(). */
    int (*poll)(void *ctx);
    /* The model's chat template as its tokenizer ships it (a Jinja text, as
     * in GGUF tokenizer.chat_template or tokenizer_config.json), or NULL.
     * The VM maps it to one of the SGL templates in stdlib/chat/ (detect.sgl)
     * unless the embedder named a template (sgl_vm_set_chat_template). May
     * be NULL. */
    const char *(*chat_template)(void *ctx);
    /* Asks the backend to stop the request submitted with callback data ud
     * (a gen's or a select's): its model work stops (a gen's KV slots are
     * freed, the prefix it computed stays cached) and its callback still
     * fires exactly once, later (never inside this call), with a non-zero
     * status or the text so far. A no-op for an unknown or finished ud.
     * May be NULL: requests then run to their end. */
    void (*cancel)(void *ctx, void *ud);
    const char *last_error;     /* message for a non-zero submit return */
} RtBackend;

#endif
