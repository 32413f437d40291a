/*
 * runtime/engine_internal.h — the engine's insides, shared by the files of
 * the engine module only; nothing outside runtime/engine*.c includes this.
 *
 *   engine.c         the request API (submit, score, cancel), the queues
 *                    between the threads, delivery on the consumer side,
 *                    the engine thread's loop, lifetime
 *   engine_sched.c   the scheduler: waiting and running sequences,
 *                    admission by longest prefix match, retraction, the
 *                    radix-tree side of a sequence, finishing
 *   engine_step.c    one step: build the batch, run the forward pass, turn
 *                    logits into sampled tokens and input logprobs
 *   engine_select.c  select's scoring methods over a score result
 *   engine_mask.c    constrained sequences' masks on a thread of their own
 *                    while the forward pass runs
 *
 * The data is of three kinds, each on one side of the queues:
 *   - shared (mutexes): the incoming message list, the outgoing event list,
 *     the ids in flight, the stats snapshot, the last error message;
 *   - engine thread only: the KV pool, the radix tree, the waiting and
 *     running sequences, the sampler scratch;
 *   - handed over: a finished request (Req) is pushed in a DONE event and
 *     from then on belongs to the consumer, which builds the result from
 *     it, calls back and frees it.
 *
 * A request is one or more sequences (Seq): a generation is one; a score
 * request is a prompt prefill, then one sequence per choice (the prompt plus
 * the choice) and, for the unconditional method, one per choice alone.
 *
 * A sequence's context:
 *
 *     toks   [0 ............ n_prompt ........................ n_toks)
 *     slots  [0 .. tree_len)[tree_len .. n_kv)[n_kv .. n_alloc)
 *             from the tree   held, computed   held, being computed
 *             (locked: node)                   this step
 *
 * n_kv tokens have K/V in their slots. The last token of a generating
 * sequence (the one just sampled) has none until the next step computes it.
 *
 * Function prefixes: eng_ (engine.c, engine_step.c) and sched_
 * (engine_sched.c); every sched_ function and eng_step run on the engine
 * thread only.
 */
#ifndef SGL_RUNTIME_ENGINE_INTERNAL_H
#define SGL_RUNTIME_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <uv.h>

#include "constrain/constrain.h"
#include "runtime/detok.h"
#include "runtime/engine.h"

/* ---- types ----------------------------------------------------------------- */

typedef enum { SEQ_GEN, SEQ_PROMPT, SEQ_CHOICE, SEQ_UNCOND } SeqKind;
typedef enum { SEQ_NEW, SEQ_WAITING, SEQ_RUNNING, SEQ_DONE } SeqState;
typedef enum { REQ_GEN, REQ_SCORE } ReqKind;

typedef struct Req Req;

typedef enum { EV_DELTA, EV_DONE } EvKind;

typedef struct Event {
    struct Event *next;
    EvKind kind;
    Req *req;                   /* EV_DONE: handed over */
    /* EV_DELTA */
    eng_delta_fn on_delta;
    void *ud;
    uint64_t id;
    int32_t *ids;
    float *lp;
    SampTokLogprob *top;        /* n_ids * top_n, when top logprobs were asked */
    int top_n;
    int n_ids;
    char *text;
    size_t len;
} Event;

typedef struct {
    Req *req;
    SeqKind kind;
    SeqState state;
    int choice;                 /* SEQ_CHOICE / SEQ_UNCOND */
    int32_t *toks;
    int32_t *slots;
    int n_toks, cap;
    int n_prompt;
    int n_alloc, n_kv, tree_len;
    RadixNode *node;            /* locked while running (cache on) */
    int admitted;               /* admitted at least once (stats) */
    uint64_t arrival, admit_order;
    int max_new;                /* < 0 unlimited, 0 none */
    int lp_from;                /* input logprobs from this position, -1 none */
    float *in_lp;               /* [n_prompt], valid at [lp_from, n_prompt) */
    SampTokLogprob *in_top;     /* [n_prompt * in_top_n], likewise (or NULL) */
    int in_top_n;
    Sampler *samp;
    Detok *dt;
    int n_gen;                  /* == n_toks - n_prompt */
    float *out_lp;              /* [cap] when logprobs are asked */
    SampTokLogprob *top;        /* [cap * top_n] */
    int top_n;
    int want_lp;
    int streamed;               /* generated ids already sent as deltas */
    EngFinish finish;
    int stopped_text;           /* the detokenizer matched a stop string */
    CMatcher *cm;               /* the constraint's position, or NULL */
    uint32_t *mask;             /* [cv_mask_words] scratch for cm */
    int mask_ready;             /* mask holds cm's mask for this step (the
                                   mask thread filled it, engine_mask.c) */
    int mask_rc;                /* then: cm_fill_mask's result */
    /* the overlap scheduler: s has row ahead_row in the launch numbered
     * ahead_serial (0: none), whose input is the token s is still waiting
     * for (engine_step.c, "Overlap") */
    uint64_t ahead_serial;
    int ahead_row;
} Seq;

/* A launched step whose results are not taken yet (engine_step.c,
 * "Overlap"): its rows, the sequences they belong to (NULL once a sequence
 * finished while the row was in flight: its result is dropped), the
 * model's view of them. */
typedef struct {
    uint64_t serial;            /* numbered from 1 */
    int live;                   /* launched, not yet waited */
    int nb, cap;
    Seq **seqs;
    ModelSeq *mseqs;
    ModelSample *msamp;
    int decode_rows, prompt_rows;
} EngFlight;

struct Req {
    uint64_t id;
    ReqKind kind;
    int cancelled;
    int status;                 /* 0 or ERR_* */
    char error[512];
    eng_delta_fn on_delta;
    eng_done_fn on_done;
    eng_score_fn on_score;
    void *ud;
    int32_t *prompt;
    int n_prompt;
    Seq **seqs;                 /* gen: 1; score: prompt, choices, unconditionals */
    int n_seqs;
    int seqs_left;              /* not yet done */
    int prompt_tokens, cached_tokens;
    /* score */
    int n_choices;
    int32_t **ctoks;
    int *clen;
    float **clp, **culp;
    int unconditional;
    int spawned;                /* choice sequences queued */
    int complete;               /* on the engine's completed list */
    Req *next_complete;
    Event done_ev;              /* preallocated: completion cannot fail */
};

typedef enum { MSG_REQ, MSG_CANCEL, MSG_FLUSH } MsgKind;

typedef struct Msg {
    struct Msg *next;
    MsgKind kind;
    Req *req;
    uint64_t id;
} Msg;

typedef struct {
    uv_async_t handle;
} AsyncBox;

/* The mixed-step pace (engine_sched.c): how many prompt tokens may join a
 * step beside decode tokens. The model is "a step costs row_s seconds a
 * row" (decode and prompt rows alike), measured over the recent steps that
 * had prompt tokens; the budget is then target_s / row_s rows less the
 * decode rows. Fixed per-step costs make small steps dearer per row than
 * the estimate from large ones, but the estimate is then taken again at
 * the budget it chose: with t(rows) = c0 + c1 rows the budget moves to the
 * rows where t = target_s (contracting, by c0 / target_s each step). */
typedef struct {
    double target_s;            /* 0: off */
    double row_s;               /* moving average; 0: nothing measured yet */
} SchedPace;

struct Engine {
    Model *model;
    Tokenizer *tok;
    /* the vocabulary as bytes for constraints: built by the first
     * constrained submit (under cv_mu), read-only afterwards */
    pthread_mutex_t cv_mu;
    CVocab *cvocab;
    EngOptions opt;
    SchedPace pace;
    int vocab;                  /* logits per row (the model's) */
    int n_sample;               /* ids a sampler may pick: the model's rows that the
                                   tokenizer has (checkpoints often pad the embedding) */
    const int32_t *eog;
    int n_eog;

    pthread_t thread;
    int thread_started;

    /* incoming */
    pthread_mutex_t in_mu;
    pthread_cond_t in_cv;
    Msg *in_head, *in_tail;
    int stopping;

    /* outgoing */
    pthread_mutex_t out_mu;
    pthread_cond_t out_cv;
    Event *out_head, *out_tail;
    uint64_t n_published;       /* events ever published (under out_mu): whether a
                                   step published anything, which the tail pointer
                                   cannot tell once the consumer freed it */
    uint64_t *live;             /* ids submitted and not yet delivered */
    int n_live, cap_live;
    uint64_t next_id;
    AsyncBox *async;

    /* stats snapshot */
    pthread_mutex_t st_mu;
    EngStats snap;

    pthread_mutex_t err_mu;
    char last_error[512];

    /* ---- engine thread only ---- */
    KvPool *kv;
    RadixTree *tree;
    SampWork *work;
    SampRng seed_rng;
    Seq **waiting;
    int n_waiting, cap_waiting;
    Seq **running;
    int n_running, cap_running;
    Req **active;
    int n_active, cap_active;
    Req *done_head, *done_tail;  /* complete, published at the end of the iteration */
    uint64_t arrivals, admissions;
    ModelSeq *mseqs;
    Seq **bseqs;
    Seq **mseq_jobs;            /* constrained sequences sampling this step */
    ModelSample *msamp;         /* [cap_batch]: the rows sampled on the device */
    int cap_batch;
    /* their penalty and bias entries and ban bitsets, for one step */
    KDevPenalty *dpen;
    KDevBias *dbias;
    uint32_t *dallow;
    size_t cap_dpen, cap_dbias, cap_dallow;
    struct MaskWorker *mask;    /* engine_mask.c, started on first use */
    /* the overlap scheduler (engine_step.c): at most two launches live, the
     * one in flight between steps and, inside eng_step, the next */
    EngFlight fl[2];
    int overlap_on;             /* EngOptions.overlap resolved */
    uint64_t fl_serial;         /* the last launch's number */
    EngStats st;
    char ferr[512];
};

/* ---- small helpers ------------------------------------------------------------ */

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int grow_ptrs(void ***arr, int *cap, int need)
{
    if (need <= *cap) return 0;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void **p = realloc(*arr, (size_t)nc * sizeof *p);
    if (!p) return ERR_NOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

static inline int seq_samples(const Seq *s) { return s->kind == SEQ_GEN && s->max_new != 0; }

/* ---- engine.c ----------------------------------------------------------------- */

/* Room for `need` tokens (and their slots, logprobs) in s. 0 or ERR_NOMEM. */
int eng_seq_reserve(Seq *s, int need);
/* Streams the ids generated since the last delta and `text` (engine thread). */
void eng_publish_delta(Engine *e, Seq *s, const char *text, size_t len);
/* Queues a complete request for delivery at the end of the iteration. */
void eng_mark_complete(Engine *e, Req *r);

/* ---- engine_sched.c (engine thread) -------------------------------------------- */

/* A request taken from the in-queue: its sequences start waiting. */
void sched_start_req(Engine *e, Req *r);
/* Finishes every live sequence of r as cancelled. */
void sched_cancel_req(Engine *e, Req *r);
/* Moves waiting sequences to running, longest cached prefix first, while
 * the KV budget allows. */
void sched_admit(Engine *e);
/* Takes s out of the batch; its computed tokens go to the cache and it
 * waits again at the head of the queue. */
void sched_retract(Engine *e, Seq *s);
/* The running sequence admitted last (not `except`), or NULL. */
Seq *sched_newest_running(Engine *e, const Seq *except);
/* Puts the computed prefix of s into the tree and moves its lock there. */
void sched_checkpoint(Engine *e, Seq *s);
/* Ends s (releasing its slots) and, when it was the last, its request. */
void sched_finish(Engine *e, Seq *s, EngFinish why);
/* sched_finish with an error for the request. */
void sched_fail(Engine *e, Seq *s, int code, const char *msg);
/* The pace (SchedPace above): target in ms (0: off). */
void sched_pace_init(SchedPace *p, double target_ms);
/* Prompt tokens a step with n_decode decode tokens may take: chunk_size
 * without decodes, with the pace off or before anything was measured;
 * else what fits the target, within [ENG_MIN_MIXED_PROMPT, chunk_size]. */
int sched_pace_budget(const SchedPace *p, int chunk_size, int n_decode);
/* A step of `rows` rows, `prompt_rows` of them prompt tokens, took
 * `seconds` (forward and sampling); steps without prompt tokens are not
 * counted (the budget only matters where prompts join). */
void sched_pace_record(SchedPace *p, int rows, int prompt_rows, double seconds);

/* ---- engine_step.c (engine thread) ---------------------------------------------- */

/* Admits, builds one batch, runs the forward pass and consumes its logits. */
void eng_step(Engine *e);
/* Overlap: a finishing sequence's row in a launch in flight is dropped
 * (sched_finish calls it: the sequence may be freed before the launch is
 * taken). */
void eng_flight_forget(Engine *e, Seq *s);
/* Waits for the launches in flight without taking their results (eng_free;
 * their sequences are being cancelled). */
void eng_flight_drain(Engine *e);
/* 1 while a launch's results are still to be taken (the engine thread
 * keeps stepping). */
int eng_flight_live(const Engine *e);
/* eng_free: the flights' arrays. */
void eng_flight_free(Engine *e);

/* ---- engine_mask.c (engine thread) ---------------------------------------------- */

/* Hands the n sequences' masks to the mask thread (EngOptions.mask_overlap;
 * they are the mask thread's until eng_mask_wait). Returns how many were
 * handed over (0: none, sample_next fills them itself). */
int eng_mask_start(Engine *e, Seq *const *seqs, int n);
/* Waits until every mask handed over is filled (mask_ready, mask_rc). */
void eng_mask_wait(Engine *e);
/* Stops the mask thread (eng_free, after the engine thread has stopped). */
void eng_mask_free(Engine *e);

#endif
