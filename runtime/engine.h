/*
 * runtime/engine.h — the inference engine: one thread that owns a model's
 * KV pool, its radix prefix cache and the running batch, and the C request
 * API that the VM (through runtime/rt_engine.h) and, later, the HTTP server
 * use.
 *
 * Owns: the engine thread, the KV pool and radix tree it creates, requests
 * from submission to completion, the scheduler, the incoming and outgoing
 * queues, statistics. Does not own: the Model and the Tokenizer (borrowed:
 * the caller keeps them alive until eng_free, and must not use the model
 * while the engine runs), sampling (runtime/sampler.h), detokenization and
 * stop strings (runtime/detok.h), the forward pass (runtime/model.h).
 *
 *   caller thread(s)            engine thread                  consumer thread
 *   ────────────────            ─────────────                  ───────────────
 *   eng_submit ──► in-queue ──► take new requests
 *   eng_cancel ──►   (mutex)    radix match, lock, admit
 *                               build one batch: decode tokens + prefill chunks
 *                               model_forward
 *                               sample, detokenize, check stops
 *                               finish: insert into radix, unlock
 *                               publish ──► out-queue ──► uv_async_send / notify
 *                                             (mutex)     eng_poll: callbacks
 *
 * Scheduling, each step:
 *  1. New requests join the waiting list; cancellations are applied.
 *  2. Admission: every waiting sequence is matched against the radix tree
 *     (longest cached prefix, up to all but the last token that needs
 *     logits) and the longest matches are admitted first (ties: arrival
 *     order) while the KV budget allows: free + evictable slots must cover
 *     what running sequences still need plus the newcomer's uncached prompt
 *     and a first share of its output (decode_reserve). A sequence whose
 *     uncached prompt starts with tokens that a sequence still prefilling
 *     will compute
 *     waits for them (in-batch prefix sharing: a fork's n branches compute
 *     their common prefix once). One that does not fit waits; it is never
 *     dropped. A prompt that could never fit (longer than the pool or the
 *     model's context) fails at once.
 *  3. One forward over a batch that mixes decode tokens of running
 *     sequences (one each) with prompt chunks (`chunk_size` prompt tokens
 *     at most per step across all sequences). Decode first: while some
 *     sequences decode, the prompt tokens that join them are capped so the
 *     step is expected to take `itl_target_ms` (the pace, engine_sched.c:
 *     the step's cost per row, measured over the last steps that had
 *     prompt tokens, sets how many rows fit; at least ENG_MIN_MIXED_PROMPT
 *     prompt tokens, so prompts always progress). If decode slots run short
 *     after eviction, the most recently admitted sequence is retracted: its
 *     computed tokens go to the radix cache, it returns to the head of the
 *     waiting list and later resumes where it was (same sampler state).
 *  4. Sampling (runtime/sampler.h), incremental detokenization and stop
 *     checks (runtime/detok.h), stream deltas and completions published.
 *     A prefill chunk's tokens are inserted into the radix tree as soon as
 *     they are computed; a finished sequence's whole context is.
 *  5. Overlap (EngOptions.overlap, on where the model is on one device):
 *     when the next step needs none of this step's tokens on the host
 *     (every row sampled on the device, nothing waiting for admission, no
 *     constraint, penalty or min_tokens ban to update), it is launched
 *     before this step's tokens are taken, its input tokens picked on the
 *     device (model_launch's prev_ref), and 4. runs while it computes. A
 *     sequence that 4. finishes has that one row dropped (its slot freed,
 *     nothing published); one that ends by length gets no row. Otherwise
 *     the step waits as before. engine_step.c, "Overlap", states the
 *     invariants; outputs are the same on and off.
 *
 * Determinism: a sequence's tokens, positions and context slots are the
 * same whatever else shares its batch, whether its prefix came from the
 * cache, and however its prompt was chunked; so its output is too when
 * model_forward computes each row independently of the batch (the CPU
 * backend does with CPU_NO_BLAS; its sgemm path for batches of 16+ rows
 * sums in another order, which moves greedy picks on small models; the
 * CUDA backend's cuBLASLt GEMMs pick their kernel by row count, so there a
 * token's logits can move in the last bf16 bits with its batch).
 * Unseeded requests get seeds drawn from EngOptions.seed in submission
 * order.
 *
 * Delivery: callbacks run on the consumer thread, inside eng_poll /
 * eng_wait (or the uv_async callback when EngOptions.loop is set, which
 * calls eng_poll on the loop thread). Rule, as in libuv: if a submit
 * returns an error its callbacks never fire; if it returns 0, on_done fires
 * exactly once (after every on_delta of that request), also when the
 * request is cancelled or the engine is freed.
 *
 * Ownership: eng_new returns an engine freed by eng_free. Request params are
 * borrowed during the submit call only (the engine copies prompt, stop
 * strings, choices). Results passed to callbacks are valid only during the
 * callback.
 */
#ifndef SGL_RUNTIME_ENGINE_H
#define SGL_RUNTIME_ENGINE_H

#include "base/err.h"   /* errors are negative ERR_* codes; err_str gives the message */
#include <stddef.h>
#include <stdint.h>

#include "runtime/model.h"
#include "runtime/radix.h"
#include "runtime/sampler.h"
#include "runtime/tokenizer.h"

struct uv_loop_s;


/* Why a request ended: name, string reported to users. */
#define ENG_FINISHES(X)              \
    X(ENG_FINISH_STOP, "stop")       \
    X(ENG_FINISH_LENGTH, "length")   \
    X(ENG_FINISH_EOS, "eos")         \
    X(ENG_FINISH_CANCELLED, "cancelled") \
    X(ENG_FINISH_ERROR, "error")

typedef enum {
#define ENG_FINISH_ENUM(name, str) name,
    ENG_FINISHES(ENG_FINISH_ENUM)
#undef ENG_FINISH_ENUM
    ENG_FINISH_COUNT_
} EngFinish;

const char *eng_finish_name(EngFinish f);

typedef struct Engine Engine;

/* The itl_target_ms default, by backend: on the CPU, where a step's cost
 * grows with its rows, 25 ms keeps the decoders' inter-token gaps under
 * llama-server's at concurrency 8 and 32 with the throughput lead intact
 * (bench/serving/README.md, figures after the AVX-512 kernel); on a device,
 * 200 (a step there is short either way). ENG_ITL_TARGET_AUTO (what
 * eng_options_default sets) picks by the model's backend in eng_new. */
#define ENG_DEFAULT_ITL_TARGET_MS 200.0
#define ENG_DEFAULT_ITL_TARGET_MS_HOST 25.0
#define ENG_ITL_TARGET_AUTO (-1.0)
/* The default max_running: on the CPU, where a step's cost grows with its
 * rows and 64 already saturates the cores; on a device, the largest decode
 * graph (MODEL_GRAPH_MAX_ROWS), as SGLang's cuda-graph-max-bs. */
enum { ENG_MAX_RUNNING_HOST = 64, ENG_MAX_RUNNING_DEVICE = 256 };
#define ENG_MIN_MIXED_PROMPT 16  /* prompt tokens a step beside decodes may always take */

typedef struct {
    int n_slots;             /* KV pool size in tokens; 0: from kv_bytes */
    size_t kv_bytes;         /* KV memory budget when n_slots is 0; 0: room
                                for min(model context, 16384) tokens, or on
                                a device backend what its memory plan leaves
                                (model_kv_slots: --mem-fraction) */
    int chunk_size;          /* prompt tokens per step at most (default 512) */
    /* While sequences decode, a step's prompt tokens are capped so that
     * the step (and so the decoders' inter-token latency) is expected to
     * take about this long; decode steps alone may take longer. 0: no cap
     * but chunk_size (prompts then delay decodes by a whole chunk).
     * ENG_ITL_TARGET_AUTO (the default): ENG_DEFAULT_ITL_TARGET_MS_HOST on
     * a host backend, ENG_DEFAULT_ITL_TARGET_MS on a device. */
    double itl_target_ms;
    int max_running;         /* sequences in one batch at most; 0 (default):
                                ENG_MAX_RUNNING_HOST, or _DEVICE on a device
                                backend (its decode graphs' largest size) */
    int prefix_cache;        /* 1 (default): radix cache on; 0: off */
    int decode_reserve;      /* output tokens per running sequence (at most
                                its remaining max_tokens) that admission
                                keeps room for (default 32); lower admits
                                more and retracts more often */
    KDtype kv_dtype;         /* K_DTYPE_F16 (default) or K_DTYPE_F32; a
                                device backend keeps bf16 (model_kv_new) */
    int check_each_step;     /* tests: radix_check after every step; failures
                                are counted in EngStats.check_failures */
    /* eng_new sets these two on the model (model_set_threads /
     * model_set_batch_invariant); the backend kind stays the one its
     * opener chose (ModelOptions). */
    int n_threads;           /* model worker threads, 0: one per core */
    int batch_invariant;     /* 1 (default): ModelOptions.batch_invariant (greedy
                                output independent of batching and chunking);
                                0: sgemm prefill, faster but batch-dependent
                                rounding */
    uint64_t seed;           /* seed of unseeded requests' samplers are
                                drawn from this (default 0x5eed) */
    /* Where completions are delivered. With `loop`, eng_new (and eng_free)
     * must run on that loop's thread; callbacks run on it. Without a loop,
     * `notify` (may be NULL) is called from the engine thread whenever
     * events are ready, and the consumer calls eng_poll / eng_wait. */
    struct uv_loop_s *loop;
    /* Exact jump-forward for constrained requests (default 1): when the
     * constraint's mask allows exactly one token, it is appended without
     * sampling and a run of such tokens is computed as one prefill chunk.
     * Greedy outputs are the same either way (the forward pass is
     * batch-invariant); requests that ask for logprobs never jump. */
    int jump_forward;
    /* Constrained sequences' token masks computed on a thread of their own
     * while the forward pass runs; outputs are the same either way. 1 on,
     * 0 off, -1 (default) where the cores allow: on when the model runs on
     * a device or the CPU pool leaves a core free (on 2 cores running a
     * 2-thread forward pass the mask thread only takes a core from it:
     * bench/structured/bench_gen). */
    int mask_overlap;
    /* On a device backend, rows are sampled where the logits are (only the
     * ids and asked-for logprobs cross to the host; issue 11): 1 (default)
     * or 0 (every row that is not plain greedy downloads its logits and
     * runs runtime/sampler.c). Seeded outputs are the same either way but
     * where a draw falls within float rounding of a cumulative boundary
     * (kernels/cuda/cuda_sample.cu says why). */
    int device_sample;
    /* The overlap scheduler (SGLang's; engine_step.c): the next decode step
     * is launched before this one's tokens reach the host, which then
     * detokenizes, checks stops and calls back while the device runs it.
     * Outputs are the same either way. 1 on, 0 off (--disable-overlap-
     * schedule), -1 (default): on where the model runs on one device (a
     * device backend without tp), off on the CPU. */
    int overlap;
    void (*notify)(void *ud);
    void *notify_ud;
} EngOptions;

void eng_options_default(EngOptions *o);

/* Starts the engine thread. NULL on failure with a message in err. */
Engine *eng_new(Model *model, Tokenizer *tok, const EngOptions *o, char *err, size_t errcap);

/* Cancels every request (their on_done fire with ENG_FINISH_CANCELLED,
 * here, on the calling thread), stops the thread and frees everything the
 * engine created. With a loop: call it on the loop thread; the uv handle is
 * closed and freed by the loop later (run the loop once more to free it). */
void eng_free(Engine *e);

const Tokenizer *eng_tokenizer(const Engine *e);
/* The batch's sequence limit in effect (EngOptions.max_running resolved). */
int eng_max_running(const Engine *e);
const Model *eng_model(const Engine *e);

/* ---- generation requests ------------------------------------------------- */

/* A piece of streamed output: the tokens accepted this step and the text
 * that became final (complete UTF-8, before any stop string). */
typedef struct {
    uint64_t id;
    const int32_t *ids;
    int n_ids;
    const float *logprobs;   /* one per id when logprobs were asked, else NULL */
    const SampTokLogprob *top;   /* n_ids * top_per_token alternatives, or NULL */
    int top_per_token;
    const char *text;
    size_t len;
} EngDelta;

typedef struct {
    uint64_t id;
    int status;              /* 0, or a negative ERR_* (then `error`) */
    const char *error;
    EngFinish finish;
    const char *finish_reason;   /* eng_finish_name(finish) */
    const int32_t *prompt_ids;   /* the prompt as tokenized */
    int n_prompt;
    const int32_t *ids;      /* every generated token (incl. a stop token) */
    int n_ids;
    /* How many leading ids lie wholly inside `text` (a stop string may cut
     * the last ones): prompt_ids + ids[0..text_ids) is a tokenization of a
     * prefix of prompt + text. */
    int text_ids;
    const char *text;        /* generated text, stop string removed */
    size_t len;
    const float *logprobs;   /* per generated id, when asked */
    int n_logprobs;
    const SampTokLogprob *top;   /* n_ids * top_per_token alternatives */
    int top_per_token;
    const float *input_logprobs; /* prompt logprobs from input_logprobs_from */
    int n_input_logprobs;
    const SampTokLogprob *input_top; /* n_input_logprobs * input_top_per_token alternatives */
    int input_top_per_token;
    int prompt_tokens, cached_tokens, completion_tokens;
} EngResult;

typedef void (*eng_delta_fn)(void *ud, const EngDelta *d);
typedef void (*eng_done_fn)(void *ud, const EngResult *r);

typedef struct {
    /* The prompt: token ids, or else text (tokenized with the model's BOS
     * and special-token markers parsed, as chat templates need). */
    const int32_t *prompt_ids;
    int n_prompt_ids;
    const char *prompt_text;
    size_t prompt_len;
    SampParams sampling;     /* max_tokens (default 128 here), stops ids,
                                logprobs...; eos_ids left empty mean the
                                tokenizer's end-of-generation ids */
    const char *const *stop; /* stop strings */
    int n_stop;
    /* Report logprobs of prompt tokens at positions >= this (>= 1; each
     * given the tokens before it); -1: none (SGLang's logprob_start_len). */
    int input_logprobs_from;
    /* With input logprobs: also this many most likely alternatives at each
     * of those prompt positions (SGLang's input_top_logprobs); 0: none. */
    int input_top_logprobs;
    /* 1: control tokens (other than the end-of-generation and stop ids
     * that end it) are kept in the text (SGLang's skip_special_tokens:
     * false); 0 (default): they add no text. */
    int keep_special_tokens;
    /* The output's shape (constrain/constrain.h), or NULL: every sampled
     * token is masked by it, end-of-generation only where it accepts. The
     * engine takes its own reference; the caller keeps theirs. */
    struct CGrammar *constraint;
    eng_delta_fn on_delta;   /* optional streaming */
    eng_done_fn on_done;     /* required */
    void *ud;
} EngGenParams;

void eng_gen_params_default(EngGenParams *p);

/* The tokenizer's vocabulary as constrain/ sees it (built on first use,
 * owned by the engine; NULL when out of memory). Any thread. */
struct CVocab *eng_constraint_vocab(Engine *e);

/* Queues a generation. Returns 0 and the request's id in *id (may be NULL),
 * or a negative ERR_* (callbacks never fire; eng_last_error says why). */
int eng_submit(Engine *e, const EngGenParams *p, uint64_t *id);

/* Asks the engine to stop a request (generation or score): a generation's
 * on_done fires with ENG_FINISH_CANCELLED and what was generated so far, a
 * score's with status ERR_CANCELLED, unless it finished first. Tokens
 * already computed stay in the prefix cache. ERR_NOT_FOUND for an id
 * that is unknown or already delivered. */
int eng_cancel(Engine *e, uint64_t id);

/* Empties the prefix cache: every cached slot that no running request has
 * locked is evicted, on the engine thread, before it takes the messages
 * queued after this one (SGLang's /flush_cache). 0 or ERR_NOMEM. */
int eng_flush_cache(Engine *e);

/* ---- scoring continuations (select) -------------------------------------- */

typedef struct {
    uint64_t id;
    int status;
    const char *error;
    int n_choices;
    const int *n_tokens;             /* per choice */
    const int32_t *const *tokens;    /* per choice: its token ids */
    /* per choice: logprob of each choice token given the prompt and the
     * choice's earlier tokens */
    const float *const *logprobs;
    /* per choice, when asked: the same without the prompt (SGLang's
     * unconditional likelihood: [0] is 0, [j] = lp(c_j | c_0..c_j-1)) */
    const float *const *unconditional;
    int prompt_tokens, cached_tokens;
} EngScoreResult;

typedef void (*eng_score_fn)(void *ud, const EngScoreResult *r);

typedef struct {
    const int32_t *prompt_ids;       /* or prompt_text, as in EngGenParams */
    int n_prompt_ids;
    const char *prompt_text;
    size_t prompt_len;
    /* Choices as text (tokenized alone, without BOS), or as ids. */
    const char *const *choices;
    const int32_t *const *choice_ids;
    const int *choice_lens;
    int n_choices;
    int unconditional;               /* also score each choice without the prompt */
    eng_score_fn on_done;
    void *ud;
} EngScoreParams;

/*
 * Scores each choice as a continuation of the prompt: the prompt is
 * prefilled once (with the prefix cache on), then every choice runs as a
 * sequence over the cached prompt, all in one batch, its tokens' logprobs
 * read from one forward. Same callback rules as eng_submit; cancel with
 * eng_cancel.
 */
int eng_score(Engine *e, const EngScoreParams *p, uint64_t *id);

/* ---- delivery ------------------------------------------------------------ */

/* Runs the callbacks of every event ready now, on the calling thread.
 * Returns how many on_done / score callbacks fired. */
int eng_poll(Engine *e);

/* Blocks until at least one on_done / score callback has fired (running
 * ready events as eng_poll does). Returns how many fired, or -1 at once if
 * no request is in flight. Not for use with a loop. */
int eng_wait(Engine *e);

/* Requests submitted and not yet delivered. */
int eng_in_flight(const Engine *e);

/* Message for the last failed submit/score/cancel on this engine (the
 * calling thread's view; static buffer per engine, guarded). */
const char *eng_last_error(Engine *e);

/* ---- statistics ------------------------------------------------------------ */

typedef struct {
    uint64_t requests;           /* finished requests (gen and score sequences) */
    uint64_t prompt_tokens;      /* prompt tokens of admitted sequences */
    uint64_t cached_tokens;      /* of those, found in the radix cache */
    uint64_t computed_tokens;    /* tokens run through the model */
    uint64_t generated_tokens;   /* sampled tokens */
    uint64_t forced_tokens;      /* of those, taken by constraint jump-forward */
    uint64_t device_sampled;     /* of those, sampled on the device (EngOptions.device_sample) */
    uint64_t overlap_steps;      /* steps launched before the one before them was taken (EngOptions.overlap) */
    uint64_t discarded_tokens;   /* rows of those whose sequence had finished: computed, then dropped */
    uint64_t steps;              /* forward passes */
    uint64_t mixed_steps;        /* of those, with decode and prompt tokens together */
    int mixed_prompt_max;        /* the most prompt tokens such a step took */
    uint64_t retractions;
    double busy_seconds;         /* time spent in steps that ran a forward */
    double hit_rate;             /* cached / prompt tokens */
    double gen_tokens_per_s;     /* generated tokens / busy seconds */
    RadixStats kv;               /* slot accounting at the last step */
    uint64_t check_failures;     /* with check_each_step */
    char check_error[256];       /* the first failure's message */
} EngStats;

/* A snapshot (any thread). */
void eng_stats(Engine *e, EngStats *out);

/* ---- select's scoring methods --------------------------------------------- */

/* The three ways select turns a score result into a choice (the logic of
 * SGLang's choices.py):
 *   TOKEN_LENGTH_NORMALIZED: mean logprob of the choice's tokens
 *   GREEDY_TOKEN: compare first tokens' logprobs, ties broken by the
 *     next token (a shorter choice's missing positions take its mean);
 *     scores[] are the first-token logprobs
 *   UNCONDITIONAL_LIKELIHOOD_NORMALIZED: mean of (conditional -
 *     unconditional) logprob over the choice's tokens; the score request
 *     must have asked for `unconditional` */
typedef enum {
    ENG_SELECT_TOKEN_LENGTH_NORMALIZED,
    ENG_SELECT_GREEDY_TOKEN,
    ENG_SELECT_UNCONDITIONAL_LIKELIHOOD_NORMALIZED,
    ENG_SELECT_COUNT_
} EngSelectMethod;

/* Fills scores[0..n_choices) by `method` and returns the best index, or
 * ERR_ARG (an unknown method, or the unconditional one without
 * r->unconditional), or ERR_NOMEM. */
int eng_select_scores(const EngScoreResult *r, EngSelectMethod method, double *scores);

#endif
