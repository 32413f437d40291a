/*
 * runtime/sampler.h — picking the next token from a row of logits.
 *
 * Owns: one request's sampling state (parameters, its own RNG, the token
 * counts that penalties need, the stop conditions) and the chain of small
 * steps that turn logits into a token, in this order:
 *
 *     logits ─► penalties ─► logit bias ─► min_tokens mask ─► allow-mask ─► temperature
 *            ─► top-k ─► top-p ─► min-p ─► pick (greedy or random draw)
 *
 * Each step is a public function over a candidate list (SampCands), so a
 * caller (or a test) can run its own chain; samp_sample() runs the chain
 * that a request's SampParams describe.
 *
 * Does not own: the logits (borrowed, never written), the allow-mask (a
 * bitset for constrained generation, built outside: the engine passes its
 * constraint's mask), detokenisation and stop *strings*
 * (text-level, the engine's job).
 *
 * Conventions, chosen to match vLLM's OpenAI server:
 *  - repetition_penalty (HF / llama.cpp style: a positive logit is divided by
 *    it, a negative one multiplied) covers prompt and generated tokens;
 *    frequency/presence penalties (OpenAI style, subtracted) cover generated
 *    tokens only.
 *  - temperature < 1e-5 (0 in practice) means greedy, as does top_k 1
 *    (argmax after penalties and masks; ties go to the lowest id, like
 *    torch.argmax).
 *  - min-p is relative to the most likely token after temperature, top-k and
 *    top-p (HF order: temperature, top-k, top-p, min-p).
 *  - a random draw takes one uniform u from the request's RNG and walks the
 *    surviving tokens in id order: the first whose cumulative probability
 *    exceeds u. It depends on the surviving set alone, not on the order a
 *    step left the list in, so a device computes the same draw
 *    (samp_device_row below).
 *  - logprobs: by default (SAMP_LOGPROBS_RAW) the log-softmax of the model's
 *    own logits, before penalties, masks, temperature and truncation — what
 *    vLLM reports by default and what `select` scoring needs. With
 *    SAMP_LOGPROBS_PROCESSED they are taken after penalties, masks and
 *    temperature but before top-k/top-p/min-p truncation (SGLang's default).
 *    Top alternatives come from the same distribution, most likely first.
 *
 * Threads: a Sampler and a SampWork belong to one thread (the engine's).
 * Sizes: a Sampler is small (its penalty table grows with the number of
 * distinct tokens seen, not with the vocabulary); the vocabulary-sized
 * scratch lives in a SampWork that one engine thread shares between all of
 * its requests.
 */
#ifndef SGL_RUNTIME_SAMPLER_H
#define SGL_RUNTIME_SAMPLER_H

#include "base/err.h"   /* errors are negative ERR_* codes; err_str gives the message */
#include "kernels/backend.h"   /* KDevSampleRow: the device op's row (samp_device_row) */
#include <stddef.h>
#include <stdint.h>



/* ---- RNG: xoshiro256**, seeded through splitmix64 ---------------------- */

typedef struct { uint64_t s[4]; } SampRng;

void samp_rng_seed(SampRng *r, uint64_t seed);
uint64_t samp_rng_next(SampRng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double samp_rng_uniform(SampRng *r);

/* ---- candidates and the individual steps ------------------------------- */

typedef struct {
    int32_t id;
    float logit;
    float p;          /* probability, valid when SampCands.has_p */
} SampCand;

/*
 * A candidate list. `data` is borrowed (a SampWork's buffer, or the
 * caller's). Flags:
 *   identity  data[i].id == i for every i (fresh from samp_cands_init)
 *   sorted    ordered by logit, highest first (ties: lower id first)
 *   has_p     every p is the softmax of the current logits over the list
 */
typedef struct {
    SampCand *data;
    size_t size;
    int identity, sorted, has_p;
} SampCands;

/* Fill `buf` (n entries) from logits; c->data = buf. */
void samp_cands_init(SampCands *c, SampCand *buf, const float *logits, size_t n);

/* Repetition / frequency / presence penalties for the tokens a Sampler has
 * seen. Needs an identity list (run it first). */
struct Sampler;
int samp_step_penalties(SampCands *c, const struct Sampler *s);

/* Keep only ids whose bit is set in `allow` (bit i = word i/64, bit i%64);
 * `nbits` bits are valid, ids at or past it are dropped. Order is kept. */
void samp_step_allow(SampCands *c, const uint64_t *allow, size_t nbits);

/* Drop the given ids (used for EOS/stop ids before min_tokens). */
void samp_step_ban(SampCands *c, const int32_t *ids, int n);

/* Divide logits by t (t > 0). */
void samp_step_temperature(SampCands *c, float t);

/* Softmax over the list into p (max-subtracted, accumulated in double). */
void samp_step_softmax(SampCands *c);

/* Keep the k highest logits: quickselect, O(n); k <= 1024 are then sorted
 * (cheap, and top-p after it just scans), larger k stay unordered. */
void samp_step_top_k(SampCands *c, int k);

/* Keep the smallest set of most likely tokens whose probability reaches p
 * (at least one token), renormalised. Never sorts the whole list: the best
 * 256 are selected and sorted (enough for peaked distributions, and then
 * the list stays sorted); if they hold less than p, a quickselect on mass
 * finds the rest in expected O(n), leaving the list unordered. */
void samp_step_top_p(SampCands *c, float p);

/* Keep tokens with probability >= min_p * (highest probability). */
void samp_step_min_p(SampCands *c, float min_p);

/* Highest logit (ties: lowest id). The list must not be empty. */
int32_t samp_pick_greedy(const SampCands *c);

/* Draw from the list's p (computes it if has_p is unset): the first token,
 * walking the list in id order, whose cumulative probability exceeds a
 * uniform u from rng (the list is reordered by id when it is not). */
int32_t samp_pick_dist(SampCands *c, SampRng *rng);

/* ---- log-probabilities -------------------------------------------------- */

/* log(sum(exp(logits))) over n values, computed stably. */
double samp_logsumexp(const float *logits, size_t n);

/* log-softmax of logits at `id`. */
float samp_logprob_of(const float *logits, size_t n, int32_t id);

typedef struct {
    int32_t id;
    float logprob;
} SampTokLogprob;

/* The n highest entries of a logits row as (id, logprob), most likely first
 * (ties: lower id), given its logsumexp. Returns how many were written
 * (min(n, size)). A min-heap of n entries: O(size log n). */
int samp_top_logprobs(const float *logits, size_t size, double lse, int n,
                      SampTokLogprob *out);

/* ---- one request's sampler --------------------------------------------- */

typedef enum { SAMP_LOGPROBS_RAW, SAMP_LOGPROBS_PROCESSED } SampLogprobMode;

/* OpenAI's logit_bias: added to one token's logit (after the penalties). */
typedef struct {
    int32_t id;
    float bias;
} SampBias;

typedef struct {
    float temperature;           /* < 1e-5: greedy. Default 1 */
    int top_k;                   /* <= 0: off */
    float top_p;                 /* in (0, 1]; 1: off */
    float min_p;                 /* in [0, 1]; 0: off */
    float repetition_penalty;    /* > 0; 1: off */
    float frequency_penalty;     /* 0: off */
    float presence_penalty;      /* 0: off */
    int has_seed;                /* 0: a seed is drawn per sampler */
    uint64_t seed;
    int logprobs;                /* report the chosen token's logprob */
    int top_logprobs;            /* and this many alternatives (>= 0) */
    SampLogprobMode logprob_mode;
    /* stop conditions */
    int max_tokens;              /* < 0: unlimited */
    int min_tokens;              /* EOS and stop ids are banned until this many */
    int ignore_eos;
    const int32_t *eos_ids;      /* borrowed for samp_new only (it copies) */
    int n_eos;
    const int32_t *stop_ids;     /* likewise */
    int n_stop;
    const SampBias *bias;        /* logit_bias (borrowed for samp_new only: it copies) */
    int n_bias;
} SampParams;

/* temperature 1, no truncation, no penalties, unseeded, no logprobs,
 * max_tokens -1, min_tokens 0. */
void samp_params_default(SampParams *p);

typedef struct Sampler Sampler;

/* A sampler for a vocabulary of n_vocab tokens. NULL on a bad parameter or
 * no memory; then a message is written to err (errlen bytes, may be 0). */
Sampler *samp_new(const SampParams *p, int n_vocab, char *err, size_t errlen);
void samp_free(Sampler *s);

/* Record prompt tokens (they count for repetition_penalty only). */
int samp_add_prompt(Sampler *s, const int32_t *ids, size_t n);

/* Why generation stops after a token was accepted. */
typedef enum {
    SAMP_CONTINUE = 0,
    SAMP_FINISH_EOS,     /* an EOS id (and not ignore_eos) */
    SAMP_FINISH_STOP,    /* one of stop_ids */
    SAMP_FINISH_LENGTH   /* max_tokens reached */
} SampFinish;

/* Record a generated token (sampled or appended by jump-forward) and say
 * whether to stop. Before min_tokens, EOS/stop ids cannot be sampled, but a
 * caller that appends one anyway still gets its finish reason. Returns a
 * SampFinish (>= 0), or ERR_VOCAB for an id outside the vocabulary (ERR_ARG
 * for no sampler, ERR_NOMEM). */
int samp_accept(Sampler *s, int32_t id);

int samp_n_generated(const Sampler *s);

/* 1 when the next samp_sample without a mask or logprobs is just the row's
 * argmax (the first maximum): greedy, no penalties, nothing banned by
 * min_tokens, no logprobs asked. A device backend may then pick the token
 * where the logits are (ModelSeq.device_argmax) and the engine takes it with
 * samp_accept as usual (issue 11's hook). */
int samp_plain_argmax(const Sampler *s);
const SampParams *samp_params(const Sampler *s);   /* eos/stop point into the sampler */

/* ---- sampling on a device (issue 11) ----------------------------------------
 *
 * The device op (kernels/backend.h, KDevSample) runs samp_sample's chain on
 * the device; a row of it is described here so that the two agree: the
 * same parameters, the temperature left out where samp_sample's greedy
 * shortcut leaves it out, and the uniform drawn from this sampler's RNG
 * exactly when samp_sample would draw one (seeds reproduce on either side).
 *
 *   samp_device_ok      1 when the op can do the next sample (it returns at
 *                       most K_SAMPLE_TOP_MAX top logprobs); top_cap as
 *                       SampOut.top_cap
 *   samp_device_n_pen   penalty entries samp_device_row writes
 *   samp_device_bans    1 when min_tokens bans EOS/stop ids now: the row
 *                       then needs an allow bitset (all ones when there is
 *                       no constraint) passed through samp_device_ban
 *   samp_device_ban     clears the banned ids' bits (32-bit words)
 *   samp_device_row     fills *row (its pen_off, bias_off and allow_off are
 *                       left to the caller, allow_off -1), pen[0 ..
 *                       samp_device_n_pen) and bias[0 .. n_bias); `masked`:
 *                       the row will carry a constraint's bitset. Advances
 *                       the RNG as samp_sample would: call it once per
 *                       token, instead of samp_sample, then samp_accept. */

int samp_device_ok(const Sampler *s, int top_cap);
int samp_device_n_pen(const Sampler *s);
int samp_device_bans(const Sampler *s);
void samp_device_ban(const Sampler *s, uint32_t *allow);
void samp_device_row(Sampler *s, int masked, int top_cap, KDevSampleRow *row, KDevPenalty *pen, KDevBias *bias);

/* Vocabulary-sized scratch (a candidate list and a row of floats, ~16
 * bytes a token), shared by the samplers of one thread. */
typedef struct SampWork SampWork;
SampWork *samp_work_new(int n_vocab);
void samp_work_free(SampWork *w);

/* What samp_sample() returns besides the token. `top` is the caller's
 * array of top_cap entries (may be NULL with top_cap 0). */
typedef struct {
    int32_t id;
    float logprob;               /* when params.logprobs or top_logprobs */
    SampTokLogprob *top;
    int top_cap;
    int n_top;                   /* min(top_logprobs, top_cap, allowed) */
} SampOut;

/*
 * Sample the next token from one logits row (n_vocab floats, borrowed).
 * `allow` is an optional bitset of n_vocab bits (NULL: every token). Does
 * not record the token: call samp_accept() with it (the engine may still
 * replace it, e.g. by jump-forward). Returns the token id (>= 0) or a
 * negative ERR_* (base/err.h). `out` may be NULL.
 */
int32_t samp_sample(Sampler *s, SampWork *w, const float *logits, const uint64_t *allow,
                    SampOut *out);

#endif
