/*
 * runtime/sampler.c — the sampling chain, the per-request RNG and penalty
 * table, stop conditions. See sampler.h for the conventions.
 *
 * The penalty table is a small open-addressing hash (token -> counts) so
 * that a request costs memory in proportion to the distinct tokens it has
 * seen, not to the vocabulary; the penalty step then touches only those
 * tokens.
 */
#include "base/err.h"
#include "runtime/sampler.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* ---- RNG ----------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void samp_rng_seed(SampRng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t samp_rng_next(SampRng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double samp_rng_uniform(SampRng *r)
{
    return (double)(samp_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Seed for a request that gave none: distinct per sampler within a process
 * (counter) and across processes (clock). */
static uint64_t unseeded_seed(void)
{
    static atomic_uint_fast64_t counter;
    uint64_t n = atomic_fetch_add(&counter, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^ (n << 32);
    return splitmix64(&x);
}

/* ---- candidates ---------------------------------------------------------- */

void samp_cands_init(SampCands *c, SampCand *buf, const float *logits, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf[i].id = (int32_t)i;
        buf[i].logit = logits[i];
        buf[i].p = 0.0f;
    }
    c->data = buf;
    c->size = n;
    c->identity = 1;
    c->sorted = 0;
    c->has_p = 0;
}

/* a ranks before b: higher logit, then lower id. */
static int cand_before(const SampCand *a, const SampCand *b)
{
    if (a->logit != b->logit) return a->logit > b->logit;
    return a->id < b->id;
}

static int cand_cmp(const void *pa, const void *pb)
{
    const SampCand *a = pa, *b = pb;
    if (cand_before(a, b)) return -1;
    if (cand_before(b, a)) return 1;
    return 0;
}

static void cand_swap(SampCand *a, SampCand *b)
{
    SampCand t = *a;
    *a = *b;
    *b = t;
}

/* Rearrange v[0..n) so that v[0..k) are the k best, in any order:
 * quickselect with a median-of-three pivot and a Lomuto partition. Ranks
 * are strict (ties broken by id), so equal logits cannot degrade it.
 * Expected O(n). */
static void select_best(SampCand *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n;           /* the boundary k lies in [lo, hi] */
    if (k == 0 || k >= n) return;
    while (hi - lo > 16) {
        size_t mid = lo + (hi - lo) / 2, last = hi - 1;
        if (cand_before(&v[mid], &v[lo])) cand_swap(&v[mid], &v[lo]);
        if (cand_before(&v[last], &v[lo])) cand_swap(&v[last], &v[lo]);
        if (cand_before(&v[last], &v[mid])) cand_swap(&v[last], &v[mid]);
        cand_swap(&v[mid], &v[last]);          /* the median becomes the pivot */
        size_t st = lo;
        for (size_t i = lo; i < last; i++)
            if (cand_before(&v[i], &v[last])) cand_swap(&v[i], &v[st++]);
        cand_swap(&v[st], &v[last]);
        /* v[lo..st) rank before the pivot at st, v(st..hi) after it */
        if (st == k || st + 1 == k) return;
        if (st > k) hi = st;
        else lo = st + 1;
    }
    /* a small range: sorting it settles the boundary */
    qsort(v + lo, hi - lo, sizeof *v, cand_cmp);
}

/* ---- penalty table ------------------------------------------------------- */

typedef struct {
    int32_t id;          /* -1: empty */
    uint32_t generated;  /* times generated */
    uint8_t in_prompt;
} PenSlot;

struct Sampler {
    SampParams p;
    int n_vocab;
    SampRng rng;
    int n_generated;
    int32_t *eos, *stop;     /* owned copies of p.eos_ids / p.stop_ids */
    SampBias *bias;          /* owned copy of p.bias */
    PenSlot *slots;          /* capacity cap (power of two), used entries n_used */
    size_t cap, n_used;
};

static size_t pen_hash(int32_t id, size_t cap)
{
    uint32_t h = (uint32_t)id * 2654435761u;
    return (size_t)h & (cap - 1);
}

static int pen_grow(Sampler *s)
{
    size_t ncap = s->cap ? s->cap * 2 : 64;
    PenSlot *ns = malloc(ncap * sizeof *ns);
    if (!ns) return ERR_NOMEM;
    for (size_t i = 0; i < ncap; i++) ns[i].id = -1;
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i].id < 0) continue;
        size_t h = pen_hash(s->slots[i].id, ncap);
        while (ns[h].id >= 0) h = (h + 1) & (ncap - 1);
        ns[h] = s->slots[i];
    }
    free(s->slots);
    s->slots = ns;
    s->cap = ncap;
    return 0;
}

/* The slot for id, inserted if missing; NULL when out of memory. */
static PenSlot *pen_get(Sampler *s, int32_t id)
{
    if ((s->n_used + 1) * 2 > s->cap && pen_grow(s) < 0) return NULL;
    size_t h = pen_hash(id, s->cap);
    while (s->slots[h].id >= 0 && s->slots[h].id != id) h = (h + 1) & (s->cap - 1);
    if (s->slots[h].id < 0) {
        s->slots[h].id = id;
        s->slots[h].generated = 0;
        s->slots[h].in_prompt = 0;
        s->n_used++;
    }
    return &s->slots[h];
}

static const PenSlot *pen_find(const Sampler *s, int32_t id)
{
    if (!s->cap) return NULL;
    size_t h = pen_hash(id, s->cap);
    while (s->slots[h].id >= 0) {
        if (s->slots[h].id == id) return &s->slots[h];
        h = (h + 1) & (s->cap - 1);
    }
    return NULL;
}

/* One token's logit after penalties (vLLM order: repetition, then
 * frequency/presence). */
static float penalize(const SampParams *p, const PenSlot *sl, float l)
{
    if (p->repetition_penalty != 1.0f)
        l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
    if (sl->generated) l -= p->frequency_penalty * (float)sl->generated + p->presence_penalty;
    return l;
}

/* ---- steps --------------------------------------------------------------- */

int samp_step_penalties(SampCands *c, const Sampler *s)
{
    const SampParams *p = &s->p;
    if (!s->cap) return 0;
    if (!c->identity) return ERR_ARG;
    for (size_t i = 0; i < s->cap; i++) {
        const PenSlot *sl = &s->slots[i];
        if (sl->id < 0 || (size_t)sl->id >= c->size) continue;
        c->data[sl->id].logit = penalize(p, sl, c->data[sl->id].logit);
    }
    c->sorted = 0;
    c->has_p = 0;
    return 0;
}

void samp_step_allow(SampCands *c, const uint64_t *allow, size_t nbits)
{
    size_t o = 0;
    for (size_t i = 0; i < c->size; i++) {
        size_t id = (size_t)c->data[i].id;
        if (id < nbits && (allow[id >> 6] >> (id & 63) & 1)) c->data[o++] = c->data[i];
    }
    if (o != c->size) {
        c->identity = 0;
        c->has_p = 0;
    }
    c->size = o;
}

void samp_step_ban(SampCands *c, const int32_t *ids, int n)
{
    if (n <= 0) return;
    if (c->identity) {
        /* mark the banned entries (id -1), then compact once */
        int any = 0;
        for (int j = 0; j < n; j++)
            if (ids[j] >= 0 && (size_t)ids[j] < c->size) {
                c->data[ids[j]].id = -1;
                any = 1;
            }
        if (!any) return;
    } else {
        for (size_t i = 0; i < c->size; i++)
            for (int j = 0; j < n; j++)
                if (c->data[i].id == ids[j]) c->data[i].id = -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < c->size; i++)
        if (c->data[i].id >= 0) c->data[o++] = c->data[i];
    if (o != c->size) {
        c->identity = 0;
        c->has_p = 0;
    }
    c->size = o;
}

void samp_step_temperature(SampCands *c, float t)
{
    if (t == 1.0f) return;
    float inv = 1.0f / t;
    for (size_t i = 0; i < c->size; i++) c->data[i].logit *= inv;
    c->has_p = 0;
}

void samp_step_softmax(SampCands *c)
{
    if (c->size == 0) return;
    float mx = c->data[0].logit;
    if (!c->sorted)
        for (size_t i = 1; i < c->size; i++)
            if (c->data[i].logit > mx) mx = c->data[i].logit;
    double sum = 0;
    for (size_t i = 0; i < c->size; i++) {
        float e = expf(c->data[i].logit - mx);
        c->data[i].p = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (size_t i = 0; i < c->size; i++) c->data[i].p *= inv;
    c->has_p = 1;
}

void samp_step_top_k(SampCands *c, int k)
{
    if (k <= 0 || (size_t)k >= c->size) {
        return;
    }
    if (!c->sorted) {
        select_best(c->data, c->size, (size_t)k);
        /* a small k is worth ordering: top-p then just scans it */
        if (k <= 1024) {
            qsort(c->data, (size_t)k, sizeof *c->data, cand_cmp);
            c->sorted = 1;
        }
    }
    c->size = (size_t)k;
    c->identity = 0;
    c->has_p = 0;
}

/* The smallest k such that the k best of v[0..n) hold probability mass >=
 * target, with those k moved to the front (in no particular order): a
 * quickselect that recurses on mass instead of on count. Expected O(n). */
static size_t select_mass(SampCand *v, size_t n, double target)
{
    size_t lo = 0, hi = n;       /* v[0..lo) are in; the boundary lies in [lo, hi] */
    double acc = 0;              /* mass of v[0..lo) */
    while (hi - lo > 16) {
        size_t mid = lo + (hi - lo) / 2, last = hi - 1;
        if (cand_before(&v[mid], &v[lo])) cand_swap(&v[mid], &v[lo]);
        if (cand_before(&v[last], &v[lo])) cand_swap(&v[last], &v[lo]);
        if (cand_before(&v[last], &v[mid])) cand_swap(&v[last], &v[mid]);
        cand_swap(&v[mid], &v[last]);
        size_t st = lo;
        double before = 0;
        for (size_t i = lo; i < last; i++)
            if (cand_before(&v[i], &v[last])) {
                before += v[i].p;
                cand_swap(&v[i], &v[st++]);
            }
        cand_swap(&v[st], &v[last]);
        if (acc + before >= target) {
            hi = st;
        } else if (acc + before + v[st].p >= target) {
            return st + 1;
        } else {
            acc += before + v[st].p;
            lo = st + 1;
        }
    }
    qsort(v + lo, hi - lo, sizeof *v, cand_cmp);
    for (size_t i = lo; i < hi; i++) {
        acc += v[i].p;
        if (acc >= target) return i + 1;
    }
    return hi;                   /* rounding kept the total just under target */
}

void samp_step_top_p(SampCands *c, float p)
{
    if (p >= 1.0f || c->size <= 1) return;
    if (!c->has_p) samp_step_softmax(c);
    double cum = 0;
    size_t keep = c->size;
    if (c->sorted) {
        for (size_t i = 0; i < c->size; i++) {
            cum += c->data[i].p;
            if (cum >= p) { keep = i + 1; break; }
        }
    } else {
        /* Peaked distributions (the usual case) reach p within a few
         * hundred tokens: select and sort that block. Flat ones go on with
         * a mass-quickselect over the rest instead of sorting thousands. */
        size_t n = c->size, block = n < 256 ? n : 256, i;
        select_best(c->data, n, block);
        qsort(c->data, block, sizeof *c->data, cand_cmp);
        for (i = 0; i < block; i++) {
            cum += c->data[i].p;
            if (cum >= p) break;
        }
        if (i < block) {
            keep = i + 1;
            c->sorted = 1;
        } else if (block < n) {
            keep = block + select_mass(c->data + block, n - block, p - cum);
        }
    }
    if (keep < c->size) {
        c->size = keep;
        c->identity = 0;
    }
    samp_step_softmax(c);
}

void samp_step_min_p(SampCands *c, float min_p)
{
    if (min_p <= 0.0f || c->size <= 1) return;
    if (!c->has_p) samp_step_softmax(c);
    float pmax = 0;
    for (size_t i = 0; i < c->size; i++)
        if (c->data[i].p > pmax) pmax = c->data[i].p;
    float thr = min_p * pmax;
    size_t o = 0;
    for (size_t i = 0; i < c->size; i++)
        if (c->data[i].p >= thr) c->data[o++] = c->data[i];
    if (o != c->size) {
        c->size = o;
        c->identity = 0;
        samp_step_softmax(c);
    }
}

int32_t samp_pick_greedy(const SampCands *c)
{
    if (c->sorted) return c->data[0].id;
    size_t best = 0;
    for (size_t i = 1; i < c->size; i++)
        if (cand_before(&c->data[i], &c->data[best])) best = i;
    return c->data[best].id;
}

static int cand_cmp_id(const void *pa, const void *pb)
{
    const SampCand *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

int32_t samp_pick_dist(SampCands *c, SampRng *rng)
{
    if (!c->has_p) samp_step_softmax(c);
    /* the walk is in id order, whatever order truncation left: a draw is
     * then a function of the surviving set and u alone, which a device
     * computes the same way (KDevSample) */
    size_t k = 1;
    while (k < c->size && c->data[k - 1].id < c->data[k].id) k++;
    if (k < c->size) {
        qsort(c->data, c->size, sizeof *c->data, cand_cmp_id);
        c->sorted = 0;
    }
    double u = samp_rng_uniform(rng), cum = 0;
    for (size_t i = 0; i < c->size; i++) {
        cum += c->data[i].p;
        if (u < cum) return c->data[i].id;
    }
    /* rounding left u above the total: the last token with mass */
    for (size_t i = c->size; i-- > 0;)
        if (c->data[i].p > 0) return c->data[i].id;
    return c->data[c->size - 1].id;
}

/* ---- log-probabilities --------------------------------------------------- */

double samp_logsumexp(const float *logits, size_t n)
{
    if (n == 0) return -INFINITY;
    float mx = logits[0];
    for (size_t i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    if (isinf(mx)) return mx;
    double sum = 0;     /* terms in float (they are <= 1), their sum in double */
    for (size_t i = 0; i < n; i++) sum += expf(logits[i] - mx);
    return mx + log(sum);
}

float samp_logprob_of(const float *logits, size_t n, int32_t id)
{
    if (id < 0 || (size_t)id >= n) return -INFINITY;
    return (float)((double)logits[id] - samp_logsumexp(logits, n));
}

/* min-heap on rank: heap[0] is the worst kept entry */
static int tl_worse(const SampTokLogprob *a, const SampTokLogprob *b)
{
    if (a->logprob != b->logprob) return a->logprob < b->logprob;
    return a->id > b->id;
}

static void heap_down(SampTokLogprob *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && tl_worse(&h[l], &h[m])) m = l;
        if (r < n && tl_worse(&h[r], &h[m])) m = r;
        if (m == i) return;
        SampTokLogprob t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_up(SampTokLogprob *h, int i)
{
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!tl_worse(&h[i], &h[parent])) return;
        SampTokLogprob t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

static int tl_cmp_best_first(const void *pa, const void *pb)
{
    const SampTokLogprob *a = pa, *b = pb;
    if (tl_worse(b, a)) return -1;
    if (tl_worse(a, b)) return 1;
    return 0;
}

int samp_top_logprobs(const float *logits, size_t size, double lse, int n, SampTokLogprob *out)
{
    if (n <= 0 || size == 0) return 0;
    if ((size_t)n > size) n = (int)size;
    int used = 0;
    for (size_t i = 0; i < size; i++) {
        SampTokLogprob e = { (int32_t)i, logits[i] };   /* rank by logit; convert later */
        if (used < n) {
            out[used] = e;
            heap_up(out, used++);
        } else if (tl_worse(&out[0], &e)) {
            out[0] = e;
            heap_down(out, n, 0);
        }
    }
    qsort(out, (size_t)used, sizeof *out, tl_cmp_best_first);
    for (int i = 0; i < used; i++) out[i].logprob = (float)((double)out[i].logprob - lse);
    return used;
}

/* Top entries of a candidate list (the PROCESSED mode). */
static int cands_top_logprobs(const SampCands *c, double lse, int n, SampTokLogprob *out)
{
    if (n <= 0 || c->size == 0) return 0;
    if ((size_t)n > c->size) n = (int)c->size;
    int used = 0;
    for (size_t i = 0; i < c->size; i++) {
        SampTokLogprob e = { c->data[i].id, c->data[i].logit };
        if (used < n) {
            out[used] = e;
            heap_up(out, used++);
        } else if (tl_worse(&out[0], &e)) {
            out[0] = e;
            heap_down(out, n, 0);
        }
    }
    qsort(out, (size_t)used, sizeof *out, tl_cmp_best_first);
    for (int i = 0; i < used; i++) out[i].logprob = (float)((double)out[i].logprob - lse);
    return used;
}

static double cands_logsumexp(const SampCands *c)
{
    if (c->size == 0) return -INFINITY;
    float mx = c->data[0].logit;
    for (size_t i = 1; i < c->size; i++)
        if (c->data[i].logit > mx) mx = c->data[i].logit;
    double sum = 0;
    for (size_t i = 0; i < c->size; i++) sum += expf(c->data[i].logit - mx);
    return mx + log(sum);
}

/* ---- the sampler --------------------------------------------------------- */

void samp_params_default(SampParams *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
    p->logprob_mode = SAMP_LOGPROBS_RAW;
    p->max_tokens = -1;
}

static int32_t *dup_ids(const int32_t *ids, int n)
{
    int32_t *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
    if (d && n > 0) memcpy(d, ids, (size_t)n * sizeof *d);
    return d;
}

Sampler *samp_new(const SampParams *p, int n_vocab, char *err, size_t errlen)
{
    if (!p || n_vocab <= 0) {
        err_fmt(err, errlen, "sampler: vocabulary size must be positive");
        return NULL;
    }
    if (!(p->temperature == p->temperature) || isinf(p->temperature)) {
        err_fmt(err, errlen, "sampler: temperature must be a finite number");
        return NULL;
    }
    if (p->temperature < 0.0f) {
        err_fmt(err, errlen, "sampler: temperature must not be negative, got %g",
                (double)p->temperature);
        return NULL;
    }
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) {
        err_fmt(err, errlen, "sampler: top_p must be in (0, 1], got %g", (double)p->top_p);
        return NULL;
    }
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f)) {
        err_fmt(err, errlen, "sampler: min_p must be in [0, 1], got %g", (double)p->min_p);
        return NULL;
    }
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty)) {
        err_fmt(err, errlen, "sampler: repetition_penalty must be > 0, got %g",
                (double)p->repetition_penalty);
        return NULL;
    }
    if (!isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty)) {
        err_fmt(err, errlen, "sampler: frequency/presence penalties must be finite");
        return NULL;
    }
    if (p->n_bias < 0 || (p->n_bias > 0 && !p->bias)) {
        err_fmt(err, errlen, "sampler: negative count or missing logit_bias list");
        return NULL;
    }
    for (int i = 0; i < p->n_bias; i++)
        if (p->bias[i].id < 0 || p->bias[i].id >= n_vocab || !isfinite(p->bias[i].bias)) {
            err_fmt(err, errlen, "sampler: logit_bias for token %d: the id must be in [0, %d) and the bias finite",
                    p->bias[i].id, n_vocab);
            return NULL;
        }
    if (p->top_logprobs < 0 || p->min_tokens < 0 || p->n_eos < 0 || p->n_stop < 0 ||
        (p->n_eos > 0 && !p->eos_ids) || (p->n_stop > 0 && !p->stop_ids)) {
        err_fmt(err, errlen, "sampler: negative count or missing id list");
        return NULL;
    }
    Sampler *s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->eos = dup_ids(p->eos_ids, p->n_eos);
    s->stop = dup_ids(p->stop_ids, p->n_stop);
    s->bias = malloc((size_t)(p->n_bias ? p->n_bias : 1) * sizeof *s->bias);
    if (!s->eos || !s->stop || !s->bias) goto nomem;
    if (p->n_bias) memcpy(s->bias, p->bias, (size_t)p->n_bias * sizeof *s->bias);
    s->p.eos_ids = s->eos;
    s->p.stop_ids = s->stop;
    s->p.bias = s->bias;
    samp_rng_seed(&s->rng, p->has_seed ? p->seed : unseeded_seed());
    return s;
nomem:
    samp_free(s);
    err_fmt(err, errlen, "sampler: out of memory");
    return NULL;
}

void samp_free(Sampler *s)
{
    if (!s) return;
    free(s->eos);
    free(s->stop);
    free(s->bias);
    free(s->slots);
    free(s);
}

static int wants_penalty_table(const Sampler *s)
{
    return s->p.repetition_penalty != 1.0f || s->p.frequency_penalty != 0.0f ||
           s->p.presence_penalty != 0.0f;
}

int samp_add_prompt(Sampler *s, const int32_t *ids, size_t n)
{
    if (!s || (n && !ids)) return ERR_ARG;
    if (s->p.repetition_penalty == 1.0f) return 0;   /* only it looks at the prompt */
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_vocab) return ERR_VOCAB;
        PenSlot *sl = pen_get(s, ids[i]);
        if (!sl) return ERR_NOMEM;
        sl->in_prompt = 1;
    }
    return 0;
}

static int id_in(int32_t id, const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

int samp_accept(Sampler *s, int32_t id)
{
    if (!s) return ERR_ARG;
    if (id < 0 || id >= s->n_vocab) return ERR_VOCAB;
    if (wants_penalty_table(s)) {
        PenSlot *sl = pen_get(s, id);
        if (!sl) return ERR_NOMEM;
        sl->generated++;
    }
    s->n_generated++;
    if (id_in(id, s->stop, s->p.n_stop)) return SAMP_FINISH_STOP;
    if (!s->p.ignore_eos && id_in(id, s->eos, s->p.n_eos)) return SAMP_FINISH_EOS;
    if (s->p.max_tokens >= 0 && s->n_generated >= s->p.max_tokens) return SAMP_FINISH_LENGTH;
    return SAMP_CONTINUE;
}

int samp_n_generated(const Sampler *s) { return s->n_generated; }

const SampParams *samp_params(const Sampler *s) { return &s->p; }

struct SampWork {
    int n_vocab;
    SampCand *cands;
    float *row;         /* the greedy path's penalised copy of the logits */
};

SampWork *samp_work_new(int n_vocab)
{
    if (n_vocab <= 0) return NULL;
    SampWork *w = malloc(sizeof *w);
    if (!w) return NULL;
    w->n_vocab = n_vocab;
    w->cands = malloc((size_t)n_vocab * sizeof *w->cands);
    w->row = malloc((size_t)n_vocab * sizeof *w->row);
    if (!w->cands || !w->row) {
        samp_work_free(w);
        return NULL;
    }
    return w;
}

void samp_work_free(SampWork *w)
{
    if (!w) return;
    free(w->cands);
    free(w->row);
    free(w);
}

int samp_plain_argmax(const Sampler *s)
{
    if (!s) return 0;
    const SampParams *p = &s->p;
    int greedy = p->temperature < 1e-5f || p->top_k == 1;
    int banning = s->n_generated < p->min_tokens && (p->n_stop || (!p->ignore_eos && p->n_eos));
    int penalties = p->repetition_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f;
    return greedy && !banning && !penalties && !p->logprobs && p->top_logprobs <= 0;
}

/* ---- the device op's row ------------------------------------------------------- */

static int samp_banning(const Sampler *s)
{
    const SampParams *p = &s->p;
    return s->n_generated < p->min_tokens && (p->n_stop || (!p->ignore_eos && p->n_eos));
}

int samp_device_ok(const Sampler *s, int top_cap)
{
    if (!s) return 0;
    const SampParams *p = &s->p;
    int want_lp = p->logprobs || p->top_logprobs > 0;
    int ask = p->top_logprobs < top_cap ? p->top_logprobs : top_cap;
    return !want_lp || ask <= K_SAMPLE_TOP_MAX;
}

int samp_device_n_pen(const Sampler *s) { return s && s->cap ? (int)s->n_used : 0; }

int samp_device_bans(const Sampler *s) { return s && samp_banning(s); }

void samp_device_ban(const Sampler *s, uint32_t *allow)
{
    if (!samp_banning(s)) return;
    const SampParams *p = &s->p;
    for (int pass = 0; pass < 2; pass++) {
        const int32_t *ids = pass ? s->eos : s->stop;
        int n = pass ? (p->ignore_eos ? 0 : p->n_eos) : p->n_stop;
        for (int i = 0; i < n; i++)
            if (ids[i] >= 0 && ids[i] < s->n_vocab) allow[ids[i] >> 5] &= ~(1u << (ids[i] & 31));
    }
}

void samp_device_row(Sampler *s, int masked, int top_cap, KDevSampleRow *row, KDevPenalty *pen, KDevBias *bias)
{
    const SampParams *p = &s->p;
    int greedy = p->temperature < 1e-5f || p->top_k == 1;
    int want_lp = p->logprobs || p->top_logprobs > 0;
    int processed = want_lp && p->logprob_mode == SAMP_LOGPROBS_PROCESSED;
    masked = masked || samp_banning(s);
    /* samp_sample's greedy shortcut leaves the temperature out */
    int unscaled = p->temperature < 1e-5f || (greedy && !masked && !processed);
    *row = (KDevSampleRow){
        .u = greedy ? 0 : samp_rng_uniform(&s->rng),
        .temperature = unscaled ? 1.0f : p->temperature,
        .top_p = p->top_p,
        .min_p = p->min_p,
        .repetition_penalty = p->repetition_penalty,
        .frequency_penalty = p->frequency_penalty,
        .presence_penalty = p->presence_penalty,
        .greedy = greedy,
        .top_k = p->top_k,
        .n_pen = samp_device_n_pen(s),
        .n_bias = p->n_bias,
        .allow_off = -1,
        .lp_mode = !want_lp ? K_LP_NONE : processed ? K_LP_PROCESSED : K_LP_RAW,
        .n_top = want_lp ? (p->top_logprobs < top_cap ? p->top_logprobs : top_cap) : 0,
    };
    int k = 0;
    for (size_t i = 0; i < s->cap && k < row->n_pen; i++)
        if (s->slots[i].id >= 0) pen[k++] = (KDevPenalty){s->slots[i].id, (int32_t)s->slots[i].generated, 0};
    for (int i = 0; i < p->n_bias; i++) bias[i] = (KDevBias){p->bias[i].id, p->bias[i].bias, 0};
}

int32_t samp_sample(Sampler *s, SampWork *w, const float *logits, const uint64_t *allow,
                    SampOut *out)
{
    if (!s || !w || !logits || w->n_vocab < s->n_vocab) return ERR_ARG;
    const SampParams *p = &s->p;
    size_t n = (size_t)s->n_vocab;
    int want_lp = out && (p->logprobs || p->top_logprobs > 0);
    double lse = 0;
    if (out) {
        out->id = -1;
        out->logprob = 0;
        out->n_top = 0;
    }

    /* like vLLM, temperatures under 1e-5 are greedy (dividing by them
     * would only magnify rounding) */
    int greedy = p->temperature < 1e-5f || p->top_k == 1;
    int banning = s->n_generated < p->min_tokens && (p->n_stop || (!p->ignore_eos && p->n_eos));
    if (greedy && !allow && !banning && !(want_lp && p->logprob_mode == SAMP_LOGPROBS_PROCESSED)) {
        /* The common case (greedy, unconstrained) needs no candidate list:
         * penalise a copy of the row (sparse) and take its argmax. */
        memcpy(w->row, logits, n * sizeof *w->row);
        for (size_t i = 0; i < s->cap; i++) {
            const PenSlot *sl = &s->slots[i];
            if (sl->id >= 0 && (size_t)sl->id < n) w->row[sl->id] = penalize(p, sl, w->row[sl->id]);
        }
        for (int i = 0; i < p->n_bias; i++) w->row[p->bias[i].id] += p->bias[i].bias;
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (w->row[i] > w->row[best]) best = i;
        int32_t id = (int32_t)best;
        if (out) {
            out->id = id;
            if (want_lp) {
                int cap = out->top ? out->top_cap : 0;
                int ask = p->top_logprobs < cap ? p->top_logprobs : cap;
                lse = samp_logsumexp(logits, n);
                out->n_top = samp_top_logprobs(logits, n, lse, ask, out->top);
                out->logprob = (float)((double)logits[id] - lse);
            }
        }
        return id;
    }

    SampCands c;
    samp_cands_init(&c, w->cands, logits, n);
    int rc = samp_step_penalties(&c, s);
    if (rc < 0) return rc;
    if (p->n_bias) {   /* the list is still the identity: data[id] is token id */
        for (int i = 0; i < p->n_bias; i++) c.data[p->bias[i].id].logit += p->bias[i].bias;
        c.sorted = c.has_p = 0;
    }
    if (s->n_generated < p->min_tokens) {
        samp_step_ban(&c, s->stop, p->n_stop);
        if (!p->ignore_eos) samp_step_ban(&c, s->eos, p->n_eos);
    }
    if (allow) samp_step_allow(&c, allow, n);
    if (c.size == 0) return ERR_ALL_MASKED;

    if (p->temperature >= 1e-5f) samp_step_temperature(&c, p->temperature);

    int n_top = 0;
    if (want_lp) {
        int cap = out->top ? out->top_cap : 0;
        int ask = p->top_logprobs < cap ? p->top_logprobs : cap;
        if (p->logprob_mode == SAMP_LOGPROBS_RAW) {
            lse = samp_logsumexp(logits, n);
            n_top = samp_top_logprobs(logits, n, lse, ask, out->top);
        } else {
            lse = cands_logsumexp(&c);
            n_top = cands_top_logprobs(&c, lse, ask, out->top);
        }
    }

    int32_t id;
    float chosen_logit = 0;   /* in the distribution logprobs report */
    if (greedy) {
        id = samp_pick_greedy(&c);
    } else {
        samp_step_top_k(&c, p->top_k);
        samp_step_top_p(&c, p->top_p);
        samp_step_min_p(&c, p->min_p);
        id = samp_pick_dist(&c, &s->rng);
    }
    if (want_lp) {
        if (p->logprob_mode == SAMP_LOGPROBS_RAW) {
            chosen_logit = logits[id];
        } else {
            /* the processed logit of id: penalties and temperature applied */
            float l = logits[id];
            const PenSlot *sl = pen_find(s, id);
            if (sl) l = penalize(&s->p, sl, l);
            for (int i = 0; i < p->n_bias; i++)
                if (p->bias[i].id == id) l += p->bias[i].bias;
            if (p->temperature >= 1e-5f && p->temperature != 1.0f) l *= 1.0f / p->temperature;
            chosen_logit = l;
        }
        out->logprob = (float)((double)chosen_logit - lse);
        out->n_top = n_top;
    }
    if (out) out->id = id;
    return id;
}
