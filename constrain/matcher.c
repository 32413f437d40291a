/*
 * constrain/matcher.c — CMatcher: one request's position in a CGrammar, its
 * token masks over a CVocab, jump-forward and rollback; cg_match (bytes
 * without a vocabulary); the per-grammar mask cache.
 *
 * Owns: matcher state and history, the interned frames of its stacks, the
 * walk buffers; the mask cache hung off each CGrammar (g->mcache). Does not
 * own: the grammar's tables (constrain/grammar.h, built by build.c), the
 * vocabulary and its trie (constrain/vocab.h), the sampler that applies a
 * mask (runtime/).
 *
 * The automaton. A grammar is a set of rules, each a byte DFA whose states
 * may call other rules (grammar.h). The matcher is a pushdown automaton over
 * them; its state is a SET of stacks, because a call is a choice (the
 * caller may also take a byte edge) and so is a final state (return, or go
 * on). A stack is its top frame (rule, state) plus a parent: an interned
 * frame node (rule, state, parent) that the top returns to. Interned nodes
 * are never freed, so a stack is three ints, copying one is free and two
 * stacks are equal iff their three ints are — saving the set at every trie
 * depth costs nothing but the copy.
 *
 *      stack (value, 1 | ·) ─parent─► node (array, 3) ─parent─► node (root, 2) ─► BOTTOM
 *
 * Parent BOTTOM (-1): the top is the start rule's bottom frame; reaching a
 * final state there means the text so far is accepted (flag ACC). Parent
 * UNKNOWN (-2): only inside mask-cache walks, where the frames below the
 * top are not known; reaching a final state there sets flag POP.
 *
 * One step on a byte: every stack takes its top's byte edge (or dies), then
 * the closure runs: a state with calls pushes (caller returns to `to`;
 * no frame when `to` can only end: a tail call) and continues in the
 * callee's start state, a final state pops (continues in
 * the parent frame). Only stacks whose top has byte edges are kept; G2 (no
 * call of a rule to itself without a byte between) bounds the pushes, a
 * visited list the pops, so the closure terminates. A text is alive when a
 * stack is left or ACC is set; accepted when ACC is set.
 *
 * Masks: a walk down the vocabulary trie (vocab.h) with one stack set per
 * depth; a rejected byte skips its subtree. Walking the whole trie for every
 * mask would cost a millisecond on a 128k vocabulary, so masks come from a
 * cache kept per grammar and vocabulary, keyed by (rule, state, bottom):
 *
 *   - bottom = the top is the bottom frame (a regex is always there): the
 *     entry is the exact set of tokens that can follow; nothing below can
 *     change it.
 *   - otherwise (XGrammar's adaptive token mask cache): the walk starts
 *     from (rule, state) over an UNKNOWN parent. A token that stays alive
 *     without popping the frame is accepted whatever lies below; one that
 *     dies without ever reaching a final state of the frame is rejected
 *     whatever lies below; the rest are context-dependent. The entry keeps
 *     the accepted set and a "script": the trie nodes to re-walk with the
 *     real stack — every node below which a pop was reached and the text
 *     died in-frame (the whole subtree there, RANGE), and their ancestors
 *     (to rebuild the stack sets on the way).
 *
 *   mask(state) = EOG bits if ACC
 *               ∪ for each stack σ: cache(top σ).accepted
 *                                  ∪ real walk of cache(top σ).script from σ
 *
 * What makes the walks and the cache cheap (each has its comment below):
 *   - one transition table for all rules, a state named by its row, the
 *     single-stack step inline (the common case); rows filled per rule the
 *     first time a stack enters it;
 *   - the subtree shortcut: summaries of the bytes below trie nodes and
 *     per-state character chains let a walk accept a whole subtree (or
 *     exactly its short tokens at the end of a counted repetition) in one
 *     loop over a token list or an OR of a bitset;
 *   - states no token can tell apart (bounded Moore refinement, depth = the
 *     longest token) share one entry: `[^"]{0,500}` has a few hundred
 *     states but most of them one mask;
 *   - tail calls push no frame, so right-recursive rules run in constant
 *     stack.
 *
 * The cache is filled lazily (the first mask of a state pays its walk),
 * entries are published with a compare-and-swap (concurrent matchers may
 * both compute one; the loser frees its copy), and they are immutable once
 * published. The per-vocabulary tables hang off a list guarded by a mutex
 * taken only to add one; each holds a reference to its vocabulary, so a
 * vocabulary lives as long as a grammar that cached masks for it.
 *
 * History: every accepted token (or non-empty cm_accept_bytes call) pushes
 * the stack set it left; cm_rollback restores one, so cm_history counts
 * cm_accept_bytes calls as one step each. Frame nodes are never freed, so old
 * sets stay valid.
 *
 * Threads: a CMatcher belongs to one thread at a time; the cache is shared.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar.h"
#include "constrain/vocab.h"

enum { BOTTOM = -1, UNKNOWN = -2 };
enum { SF_BYTES = 1, SF_CALLS = 2, SF_FINAL = 4 };     /* per rule state */
enum { SF_XRULE = 8 };  /* eflags only: the edge lands in another rule (erule[]) */
enum { LF_ACC = 1, LF_POP = 2 };                       /* per stack set */
#define SCRIPT_RANGE 0x80000000u

/* `row` names the state by its row in the grammar-wide transition table
 * (MCache.next): the state's index is rstate[row]. */
typedef struct {
    int32_t rule, row, parent;
} Stk;

static inline bool stk_eq(Stk a, Stk b) { return a.rule == b.rule && a.row == b.row && a.parent == b.parent; }

/* ---- interned frame nodes ----------------------------------------------- */

typedef struct {
    Stk *node;              /* node i = (rule, row, parent) */
    int32_t n, cap;
    int32_t *hash;          /* open addressing: node index or -1 */
    uint32_t hcap;          /* power of two */
} Frames;

static uint32_t stk_hash(int32_t r, int32_t s, int32_t p)
{
    uint64_t h = (uint64_t)(uint32_t)r * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uint32_t)s * 0xC2B2AE3D27D4EB4Full ^
                 (uint64_t)(uint32_t)p * 0x165667B19E3779F9ull;
    h ^= h >> 29;
    return (uint32_t)(h * 0xBF58476D1CE4E5B9ull >> 32);
}

static void frames_free(Frames *f)
{
    free(f->node);
    free(f->hash);
    memset(f, 0, sizeof *f);
}

static void frames_reset(Frames *f)
{
    f->n = 0;
    if (f->hash)
        memset(f->hash, 0xff, f->hcap * sizeof *f->hash);
}

static int frames_rehash(Frames *f, uint32_t hcap)
{
    int32_t *h = malloc(hcap * sizeof *h);
    if (!h)
        return ERR_NOMEM;
    memset(h, 0xff, hcap * sizeof *h);
    for (int32_t i = 0; i < f->n; i++) {
        uint32_t k = stk_hash(f->node[i].rule, f->node[i].row, f->node[i].parent) & (hcap - 1);
        while (h[k] >= 0)
            k = (k + 1) & (hcap - 1);
        h[k] = i;
    }
    free(f->hash);
    f->hash = h;
    f->hcap = hcap;
    return 0;
}

/* The node (r, s, p), created if new; < 0 on out of memory. */
static int32_t frames_intern(Frames *f, int32_t r, int32_t s, int32_t p)
{
    if ((uint32_t)(f->n + 1) * 2 > f->hcap && frames_rehash(f, f->hcap ? f->hcap * 2 : 256) < 0)
        return ERR_NOMEM;
    uint32_t k = stk_hash(r, s, p) & (f->hcap - 1);
    for (;;) {
        int32_t i = f->hash[k];
        if (i < 0)
            break;
        if (f->node[i].rule == r && f->node[i].row == s && f->node[i].parent == p)
            return i;
        k = (k + 1) & (f->hcap - 1);
    }
    if (f->n == f->cap) {
        int32_t cap = f->cap ? f->cap * 2 : 256;
        Stk *g = realloc(f->node, (size_t)cap * sizeof *g);
        if (!g)
            return ERR_NOMEM;
        f->node = g;
        f->cap = cap;
    }
    f->node[f->n] = (Stk){ r, s, p };
    f->hash[k] = f->n;
    return f->n++;
}

/* ---- the per-grammar mask cache ----------------------------------------- */

typedef struct {
    uint32_t *bits;         /* accepted tokens as a mask, or NULL: see ids */
    int32_t *ids;           /* accepted tokens as a list (when few) */
    int32_t nids;
    uint32_t *script;       /* trie nodes to re-walk with the real stack */
    int32_t nscript;
    int32_t count;          /* accepted tokens */
} MEntry;

typedef struct VCache {
    CVocab *v;              /* a reference */
    _Atomic(MEntry *) *e;   /* 2 * total: (rep[base[rule] + state]) * 2 + bottom */
    int32_t *rep;           /* total: the state whose entry a state uses */
    _Atomic uint8_t *rdone; /* nrules: 1 = rep[] of the rule is final (refine_lazily) */
    struct VCache *next;
} VCache;

/* The grammar's tables re-laid for walks: one transition table for all
 * rules, a state named by its row (row_base[rule] + state * width), so one
 * step is next[row + cmap[rule][byte]] with no per-rule indirection, and
 * the target's flags sit beside it (eflags) instead of behind it. */
typedef struct {
    pthread_mutex_t mu;     /* taken to add a VCache */
    _Atomic(VCache *) head;
    int32_t total;          /* states over all rules */
    int32_t *base;          /* nrules: index of the rule's state 0 */
    int32_t *row_base;      /* nrules: row of the rule's state 0 */
    int32_t *width;         /* nrules: row width (nclasses, at least 1) */
    int32_t total_rows;
    int32_t *next;          /* total_rows: target row, or -1 */
    uint8_t *eflags;        /* total_rows: SF_* of the target */
    uint8_t *rflags;        /* total_rows: SF_* of the state whose row starts here */
    int32_t *rstate;        /* total_rows: that state's index */
    uint8_t *cmap;          /* nrules * 256: byte classes */
    /* Per state (base[rule] + state), filled on first use for the subtree
     * shortcut: ready[] 0 = not yet, 2 = being written, 1 = chain[] valid. */
    _Atomic uint8_t *ready;
    struct Chain *chain;
    _Atomic int32_t *run;   /* per state: chain states from it alike (0 = not yet) */
    _Atomic int32_t *run_end; /* per state: the row where that run ends, or -1 */
    /* Per rule, the distinct byte classes of the byte ranges UTF-8 cares
     * about (lists in cls_pool, list k of rule r at cls_off[r * CL_N + k]
     * .. [+ 1]), so a chain step checks classes, not bytes. */
    int32_t *cls_off;
    uint8_t *cls_pool;
    const CGrammar *g;      /* the owner */
    _Atomic uint8_t *rinit; /* nrules: 1 = the rule's rows are filled */
    int32_t *erule;         /* total_rows: the target's rule, read when eflags has SF_XRULE */
    pthread_mutex_t fill_mu;    /* serialises rule_fill; guards fill_work, fill_mark */
    int32_t *fill_work;     /* nrules */
    uint8_t *fill_mark;     /* nrules, all 0 between fills */
} MCache;

/* The byte ranges of cls_off: lead bytes of 2-, 3- and 4-byte characters
 * (grouped by the range their first continuation byte must be in), and
 * those continuation ranges. */
enum { CL_LEAD0 = 0, CL_NLEAD = 8, CL_CONT0 = 8, CL_NCONT = 5, CL_N = 13 };
static const struct {
    uint8_t lo, hi, need, cont;     /* cont: index of the first continuation range */
} utf8_leads[CL_NLEAD] = {
    { 0xc2, 0xdf, 1, 0 }, { 0xe0, 0xe0, 2, 1 }, { 0xe1, 0xec, 2, 0 }, { 0xed, 0xed, 2, 2 },
    { 0xee, 0xef, 2, 0 }, { 0xf0, 0xf0, 3, 3 }, { 0xf1, 0xf3, 3, 0 }, { 0xf4, 0xf4, 3, 4 },
};
static const uint8_t utf8_conts[CL_NCONT][2] = { { 0x80, 0xbf }, { 0xa0, 0xbf }, { 0x80, 0x9f }, { 0x90, 0xbf }, { 0x80, 0x8f } };

/* A state's "character step" (subtree shortcut): succ is the row most ASCII
 * bytes lead to, ascii[] the ASCII bytes that lead there, utf8 whether every
 * valid multi-byte character leads there too (through defined edges). */
typedef struct Chain {
    uint32_t ascii[4];
    uint32_t anydef[4];     /* ASCII bytes with any edge */
    int32_t succ;
    uint8_t utf8;
} Chain;

static void entry_free(MEntry *e)
{
    if (!e)
        return;
    free(e->bits);
    free(e->ids);
    free(e->script);
    free(e);
}

static void mcache_free(void *p)
{
    MCache *mc = p;
    if (!mc)
        return;
    VCache *vc = atomic_load(&mc->head);
    while (vc) {
        VCache *next = vc->next;
        for (int32_t i = 0; i < 2 * mc->total; i++)
            entry_free(atomic_load(&vc->e[i]));
        free(vc->e);
        free(vc->rep);
        free((void *)vc->rdone);
        cv_unref(vc->v);
        free(vc);
        vc = next;
    }
    pthread_mutex_destroy(&mc->mu);
    free(mc->base);
    free(mc->row_base);
    free(mc->width);
    free(mc->next);
    free(mc->eflags);
    free(mc->rflags);
    free(mc->rstate);
    free(mc->cmap);
    free((void *)mc->ready);
    free((void *)mc->run);
    free((void *)mc->run_end);
    free(mc->cls_off);
    free(mc->cls_pool);
    free((void *)mc->rinit);
    free(mc->erule);
    free(mc->fill_work);
    free(mc->fill_mark);
    pthread_mutex_destroy(&mc->fill_mu);
    free(mc->chain);
    free(mc);
}

static MCache *mcache_build(const CGrammar *g)
{
    MCache *mc = calloc(1, sizeof *mc);
    if (!mc)
        return NULL;
    pthread_mutex_init(&mc->mu, NULL);
    pthread_mutex_init(&mc->fill_mu, NULL);
    atomic_init(&mc->head, NULL);
    size_t nr = (size_t)g->nrules + 1;
    mc->base = malloc(nr * sizeof *mc->base);
    mc->row_base = malloc(nr * sizeof *mc->row_base);
    mc->width = malloc(nr * sizeof *mc->width);
    mc->cmap = malloc(nr * 256);
    if (!mc->base || !mc->row_base || !mc->width || !mc->cmap)
        goto nomem;
    int64_t total = 0, rows = 0;
    for (int32_t r = 0; r < g->nrules; r++) {
        const CgRule *R = &g->rules[r];
        mc->base[r] = (int32_t)total;
        mc->row_base[r] = (int32_t)rows;
        mc->width[r] = R->nclasses > 0 ? R->nclasses : 1;
        total += R->nstates;
        rows += (int64_t)R->nstates * mc->width[r];
        for (int b = 0; b < 256; b++)
            mc->cmap[(size_t)r * 256 + b] = R->nclasses > 0 ? R->classmap[b] : 0;
    }
    if (rows >= INT32_MAX / 2)
        goto nomem;
    mc->total = (int32_t)total;
    mc->total_rows = (int32_t)rows;
    size_t nrow = (size_t)rows + 1;
    /* the row tables are filled per rule on first entry (rule_ready):
     * untouched pages of a big grammar's rules cost nothing */
    mc->next = malloc(nrow * sizeof *mc->next);
    mc->eflags = calloc(nrow, 1);
    mc->rflags = calloc(nrow, 1);
    mc->rstate = calloc(nrow, sizeof *mc->rstate);
    mc->ready = calloc((size_t)total + 1, 1);
    mc->chain = malloc(((size_t)total + 1) * sizeof *mc->chain);
    mc->run = calloc((size_t)total + 1, sizeof *mc->run);
    mc->run_end = calloc((size_t)total + 1, sizeof *mc->run_end);
    if (!mc->run || !mc->run_end || !mc->next || !mc->eflags || !mc->rflags || !mc->rstate || !mc->ready || !mc->chain)
        goto nomem;
    mc->cls_off = malloc(((size_t)g->nrules * CL_N + 1) * sizeof *mc->cls_off);
    size_t pool_cap = 1024, pool_n = 0;
    mc->cls_pool = malloc(pool_cap);
    if (!mc->cls_off || !mc->cls_pool)
        goto nomem;
    for (int32_t r = 0; r < g->nrules; r++) {
        const uint8_t *cm = mc->cmap + (size_t)r * 256;
        for (int k = 0; k < CL_N; k++) {
            int lo = k < CL_NLEAD ? utf8_leads[k].lo : utf8_conts[k - CL_CONT0][0];
            int hi = k < CL_NLEAD ? utf8_leads[k].hi : utf8_conts[k - CL_CONT0][1];
            mc->cls_off[(size_t)r * CL_N + k] = (int32_t)pool_n;
            uint32_t seen[8] = { 0 };
            for (int b = lo; b <= hi; b++) {
                uint8_t c = cm[b];
                if (seen[c >> 5] >> (c & 31) & 1)
                    continue;
                seen[c >> 5] |= 1u << (c & 31);
                if (pool_n == pool_cap) {
                    uint8_t *np = realloc(mc->cls_pool, pool_cap * 2);
                    if (!np)
                        goto nomem;
                    mc->cls_pool = np;
                    pool_cap *= 2;
                }
                mc->cls_pool[pool_n++] = c;
            }
        }
    }
    mc->cls_off[(size_t)g->nrules * CL_N] = (int32_t)pool_n;
    mc->g = g;
    mc->rinit = calloc((size_t)g->nrules + 1, 1);
    mc->erule = malloc(nrow * sizeof *mc->erule);
    mc->fill_work = malloc(((size_t)g->nrules + 1) * sizeof *mc->fill_work);
    mc->fill_mark = calloc((size_t)g->nrules + 1, 1);
    if (!mc->rinit || !mc->erule || !mc->fill_work || !mc->fill_mark)
        goto nomem;
    return mc;
nomem:
    mcache_free(mc);
    return NULL;
}

static uint8_t state_flags(const CgRule *R, int32_t st)
{
    uint8_t f = 0;
    for (int32_t c = 0; c < R->nclasses; c++)
        if (R->next[(size_t)st * R->nclasses + c] >= 0) {
            f |= SF_BYTES;
            break;
        }
    if (R->call_off[st + 1] > R->call_off[st])
        f |= SF_CALLS;
    if (R->final[st])
        f |= SF_FINAL;
    return f;
}

/* A state that only tail-calls one rule (no bytes, not final, one call
 * whose return state can only end) is a jump: the frame it would push is
 * never needed (closure() pushes none). rule_fill folds such targets into
 * the edges that reach them, so a right-linear rule set (one rule per
 * state of a name pattern) steps like one DFA, on the inline path. */
static bool tail_jump(const CgRule *R, int32_t st, int32_t *callee)
{
    if (state_flags(R, st) != SF_CALLS || R->call_off[st + 1] - R->call_off[st] != 1)
        return false;
    const CgCall *c = &R->calls[R->call_off[st]];
    if (state_flags(R, c->to) != SF_FINAL)
        return false;
    *callee = c->rule;
    return true;
}

/* Fills the rows of rule r (flags, transitions, target flags), and of every
 * rule its folded edges land in, under fill_mu; publishes them together
 * (rinit = 1, release) once all are written, so a thread that sees a rule
 * ready may follow any of its edges. Every way into a rule goes through
 * rule_ready: the start rule in start_set, callees in closure(). */
static void rule_fill(MCache *mc, int32_t r, int32_t *work, int32_t *nwork, uint8_t *mark)
{
    const CGrammar *g = mc->g;
    const CgRule *R = &g->rules[r];
    int32_t w = mc->width[r];
    for (int32_t st = 0; st < R->nstates; st++) {
        int32_t row = mc->row_base[r] + st * w;
        mc->rflags[row] = state_flags(R, st);
        mc->rstate[row] = st;
    }
    for (int32_t st = 0; st < R->nstates; st++)
        for (int32_t c = 0; c < w; c++) {
            int32_t row = mc->row_base[r] + st * w + c;
            int32_t t = c < R->nclasses ? R->next[(size_t)st * R->nclasses + c] : -1;
            if (t < 0) {
                mc->next[row] = -1;
                mc->eflags[row] = 0;
                continue;
            }
            int32_t tr = r, ts = t, callee, hops = 0;
            while (hops < 64 && tail_jump(&g->rules[tr], ts, &callee)) {
                tr = callee;
                ts = g->rules[callee].start;
                hops++;
            }
            if (hops == 64) {
                tr = r;
                ts = t;
            }
            mc->next[row] = mc->row_base[tr] + ts * mc->width[tr];
            mc->eflags[row] = (uint8_t)(state_flags(&g->rules[tr], ts) | (tr != r ? SF_XRULE : 0));
            mc->erule[row] = tr;
            if (tr != r && !mark[tr] && atomic_load_explicit(&mc->rinit[tr], memory_order_relaxed) != 1) {
                mark[tr] = 1;
                work[(*nwork)++] = tr;
            }
        }
}

static __attribute__((noinline)) void rule_ready_slow(MCache *mc, int32_t r)
{
    pthread_mutex_lock(&mc->fill_mu);
    if (atomic_load_explicit(&mc->rinit[r], memory_order_acquire) != 1) {
        int32_t *work = mc->fill_work;
        uint8_t *mark = mc->fill_mark;
        int32_t nwork = 0, done = 0;
        mark[r] = 1;
        work[nwork++] = r;
        while (done < nwork)
            rule_fill(mc, work[done++], work, &nwork, mark);
        for (int32_t k = 0; k < nwork; k++) {
            mark[work[k]] = 0;
            atomic_store_explicit(&mc->rinit[work[k]], 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&mc->fill_mu);
}

static inline void rule_ready(const MCache *cmc, int32_t r)
{
    MCache *mc = (MCache *)cmc;
    if (atomic_load_explicit(&mc->rinit[r], memory_order_acquire) != 1)
        rule_ready_slow(mc, r);
}

/* The grammar's cache, created on first use (lock-free publication). */
static MCache *mcache_of(CGrammar *g)
{
    MCache *mc = __atomic_load_n((MCache **)&g->mcache, __ATOMIC_ACQUIRE);
    if (mc)
        return mc;
    MCache *mine = mcache_build(g);
    if (!mine)
        return NULL;
    void *expected = NULL;
    if (__atomic_compare_exchange_n(&g->mcache, &expected, mine, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        g->mcache_free = mcache_free;
        return mine;
    }
    mcache_free(mine);
    return expected;
}

/* States that no token can tell apart share a cache entry. A token has at
 * most D = the vocabulary's longest token bytes, so two states of a rule
 * whose behaviour agrees on every string of D bytes or fewer (Moore's
 * refinement stopped after D rounds: same finality, and after each byte
 * class states that agree on D - 1 bytes) accept and reject the same
 * tokens, pop at the same places, and so have equal entries. States with
 * calls stay alone (their callees and return states would have to be
 * compared too). This is what lets `[^\n]{0,300}` or a string's
 * maxLength share masks across most of their counted states. A rule past
 * the work budget keeps one entry per state. */
enum { REFINE_BUDGET = 20 * 1000 * 1000 };

/* Moore's refinement of one rule's states, `depth` rounds, done
 * incrementally: a round re-examines only the predecessors of states that
 * changed class in the round before (a counted repetition splits one state
 * off its chain per round, so a round costs a few states, not all of
 * them). Rounds stay synchronous: every signature of a round is read
 * before any class of that round changes. Writes rep[s] = the smallest
 * state of s's class. */
typedef struct {
    int32_t *cls, *elems, *pos, *cstart, *csize, *caff;
    int32_t *poff, *preds, *mark, *aff, *aidx, *changed, *nchanged_buf, *grp, *gcls, *order;
    int32_t *sig;           /* affected-state signatures, (m + 1) each */
    int32_t *ref;           /* per touched class: the unaffected members' signature */
    int32_t *touched, *refrow;
    int32_t *htab, *hstamp; /* hstamp[h] == round + 1: htab[h] is set this round */
} Refine;

static int32_t *sig_row(const Refine *rf, int32_t m, int32_t k) { return rf->sig + (size_t)k * (m + 1); }

static void sig_of(const CgRule *R, const int32_t *cls, int32_t st, int32_t *out)
{
    int32_t m = R->nclasses;
    const int32_t *nx = R->next + (size_t)st * m;
    out[0] = cls[st];
    for (int32_t c = 0; c < m; c++)
        out[1 + c] = nx[c] < 0 ? -1 : cls[nx[c]];
}

static uint32_t sig_hash(const int32_t *x, int32_t len)
{
    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (int32_t i = 0; i < len; i++)
        h = (h ^ (uint64_t)(uint32_t)x[i]) * 0x100000001B3ull;
    return (uint32_t)(h ^ h >> 29);
}

static _Thread_local const int32_t *cmp_grp;
static int cmp_by_group(const void *a, const void *b)
{
    int32_t x = cmp_grp[*(const int32_t *)a], y = cmp_grp[*(const int32_t *)b];
    return x < y ? -1 : x > y;
}

static bool refine_rule(const CgRule *R, int32_t depth, int32_t *rep)
{
    int32_t n = R->nstates, m = R->nclasses;
    Refine rf = { 0 };
    size_t N = (size_t)n + 1;
    rf.cls = malloc(N * sizeof(int32_t));
    rf.elems = malloc(N * sizeof(int32_t));
    rf.pos = malloc(N * sizeof(int32_t));
    rf.cstart = malloc(N * sizeof(int32_t));
    rf.csize = calloc(N, sizeof(int32_t));
    rf.caff = calloc(N, sizeof(int32_t));
    rf.poff = calloc(N + 1, sizeof(int32_t));
    rf.mark = malloc(N * sizeof(int32_t));
    rf.aff = malloc(N * sizeof(int32_t));
    rf.aidx = malloc(N * sizeof(int32_t));
    rf.changed = malloc(N * sizeof(int32_t));
    rf.nchanged_buf = malloc(N * sizeof(int32_t));
    rf.grp = malloc(N * sizeof(int32_t));
    rf.gcls = malloc(N * sizeof(int32_t));
    rf.order = malloc(N * sizeof(int32_t));
    rf.touched = malloc(N * sizeof(int32_t));
    rf.refrow = malloc(N * sizeof(int32_t));
    rf.sig = malloc(N * (size_t)(m + 1) * sizeof(int32_t));
    rf.ref = malloc(N * (size_t)(m + 1) * sizeof(int32_t));
    uint32_t hcap = 16;
    while (hcap < (uint32_t)n * 2)
        hcap *= 2;
    rf.htab = malloc((size_t)hcap * sizeof(int32_t));
    rf.hstamp = calloc((size_t)hcap, sizeof(int32_t));
    bool ok = rf.cls && rf.elems && rf.pos && rf.cstart && rf.csize && rf.caff && rf.poff && rf.mark && rf.aff &&
              rf.aidx && rf.changed && rf.nchanged_buf && rf.grp && rf.gcls && rf.order && rf.touched && rf.refrow &&
              rf.sig && rf.ref && rf.htab && rf.hstamp;
    if (ok) {
        /* predecessors (CSR), each once per target */
        for (int32_t st = 0; st < n; st++)
            rf.mark[st] = -1;
        for (int32_t st = 0; st < n; st++)
            for (int32_t c = 0; c < m; c++) {
                int32_t t = R->next[(size_t)st * m + c];
                if (t >= 0 && rf.mark[t] != st) {
                    rf.mark[t] = st;
                    rf.poff[t + 1]++;
                }
            }
        for (int32_t st = 0; st < n; st++)
            rf.poff[st + 1] += rf.poff[st];
        rf.preds = malloc(((size_t)rf.poff[n] + 1) * sizeof(int32_t));
        ok = rf.preds != NULL;
    }
    if (ok) {
        int32_t *fill = rf.aidx;     /* scratch */
        for (int32_t st = 0; st < n; st++) {
            fill[st] = rf.poff[st];
            rf.mark[st] = -1;
        }
        for (int32_t st = 0; st < n; st++)
            for (int32_t c = 0; c < m; c++) {
                int32_t t = R->next[(size_t)st * m + c];
                if (t >= 0 && rf.mark[t] != st) {
                    rf.mark[t] = st;
                    rf.preds[fill[t]++] = st;
                }
            }
        /* the initial partition: states with calls alone, then final / not */
        int32_t ncls = 0, cf = -1, cn = -1;
        for (int32_t st = 0; st < n; st++) {
            if (R->call_off[st + 1] > R->call_off[st])
                rf.cls[st] = ncls++;
            else if (R->final[st])
                rf.cls[st] = cf >= 0 ? cf : (cf = ncls++);
            else
                rf.cls[st] = cn >= 0 ? cn : (cn = ncls++);
            rf.csize[rf.cls[st]]++;
        }
        int32_t at = 0;
        for (int32_t c = 0; c < ncls; c++) {
            rf.cstart[c] = at;
            at += rf.csize[c];
            rf.caff[c] = 0;
        }
        for (int32_t c = 0; c < ncls; c++)
            rf.csize[c] = 0;
        for (int32_t st = 0; st < n; st++) {
            int32_t c = rf.cls[st];
            rf.pos[st] = rf.cstart[c] + rf.csize[c]++;
            rf.elems[rf.pos[st]] = st;
        }
        for (int32_t st = 0; st < n; st++)
            rf.mark[st] = -1;
        int32_t nchanged = 0;
        for (int32_t round = 0; round < depth; round++) {
            /* affected: every state in round 0, then the predecessors of
             * the states that changed class */
            int32_t na = 0;
            if (round == 0)
                for (int32_t st = 0; st < n; st++)
                    rf.aff[na++] = st;
            else
                for (int32_t k = 0; k < nchanged; k++) {
                    int32_t x = rf.changed[k];
                    for (int32_t e = rf.poff[x]; e < rf.poff[x + 1]; e++) {
                        int32_t p = rf.preds[e];
                        if (rf.mark[p] != round) {
                            rf.mark[p] = round;
                            rf.aff[na++] = p;
                        }
                    }
                }
            if (na == 0)
                break;
            /* signatures (all read before anything changes) */
            for (int32_t k = 0; k < na; k++) {
                sig_of(R, rf.cls, rf.aff[k], sig_row(&rf, m, k));
                rf.aidx[rf.aff[k]] = k;
            }
            /* move affected members to the end of their class's block */
            int32_t nt = 0;
            for (int32_t k = 0; k < na; k++) {
                int32_t a = rf.aff[k], c = rf.cls[a];
                if (rf.caff[c] == 0)
                    rf.touched[nt++] = c;
                rf.caff[c]++;
                int32_t to = rf.cstart[c] + rf.csize[c] - rf.caff[c];
                int32_t other = rf.elems[to];
                rf.elems[rf.pos[a]] = other;
                rf.pos[other] = rf.pos[a];
                rf.elems[to] = a;
                rf.pos[a] = to;
            }
            for (int32_t t = 0; t < nt; t++) {
                int32_t c = rf.touched[t];
                rf.refrow[t] = -1;
                if (rf.caff[c] < rf.csize[c]) {
                    sig_of(R, rf.cls, rf.elems[rf.cstart[c]], rf.ref + (size_t)t * (m + 1));
                    rf.refrow[t] = t;
                }
            }
            /* group the affected states by signature */
            int32_t ng = 0;
            for (int32_t k = 0; k < na; k++) {
                const int32_t *sg = sig_row(&rf, m, k);
                uint32_t h = sig_hash(sg, m + 1) & (hcap - 1);
                for (;;) {
                    int32_t o = rf.hstamp[h] == round + 1 ? rf.htab[h] : -1;
                    if (o < 0) {
                        rf.hstamp[h] = round + 1;
                        rf.htab[h] = k;
                        rf.grp[k] = ng;
                        rf.gcls[ng++] = -1;
                        break;
                    }
                    if (!memcmp(sig_row(&rf, m, o), sg, (size_t)(m + 1) * sizeof(int32_t))) {
                        rf.grp[k] = rf.grp[o];
                        break;
                    }
                    h = (h + 1) & (hcap - 1);
                }
            }
            /* split each touched class into segments: the unaffected
             * members with the affected group of their signature, then
             * each other affected group. The largest segment keeps the
             * class id (so only the smaller parts count as changed, and a
             * round touches few states: Hopcroft's "smaller half"); every
             * other segment becomes a new class. */
            int32_t nc2 = 0;
            for (int32_t t = 0; t < nt; t++) {
                int32_t c = rf.touched[t];
                int32_t lo = rf.cstart[c] + rf.csize[c] - rf.caff[c], hi = rf.cstart[c] + rf.csize[c];
                for (int32_t i = lo; i < hi; i++) {
                    int32_t st = rf.elems[i], k = rf.aidx[st];
                    bool with_ref = rf.refrow[t] >= 0 &&
                                    !memcmp(sig_row(&rf, m, k), rf.ref + (size_t)t * (m + 1), (size_t)(m + 1) * sizeof(int32_t));
                    rf.order[st] = with_ref ? -1 : rf.grp[k];
                }
                cmp_grp = rf.order;
                qsort(rf.elems + lo, (size_t)(hi - lo), sizeof(int32_t), cmp_by_group);
                /* segments: [cstart, seg_end0) is the unaffected part plus
                 * the matching group (may be empty); then one per group */
                int32_t i = lo;
                while (i < hi && rf.order[rf.elems[i]] == -1)
                    i++;
                int32_t best_lo = rf.cstart[c], best_n = i - rf.cstart[c];
                for (int32_t j = i; j < hi;) {
                    int32_t g = rf.order[rf.elems[j]], e = j;
                    while (e < hi && rf.order[rf.elems[e]] == g)
                        e++;
                    if (e - j > best_n) {
                        best_n = e - j;
                        best_lo = j;
                    }
                    j = e;
                }
                /* walk the segments again, assigning ids: the first is
                 * [cstart, i) (possibly empty), then one per group */
                int32_t cstart0 = rf.cstart[c];
                for (int32_t j = cstart0; j < hi;) {
                    int32_t e;
                    if (j == cstart0 && i > cstart0)
                        e = i;
                    else {
                        if (j == cstart0)
                            j = i;
                        int32_t g = rf.order[rf.elems[j]];
                        e = j;
                        while (e < hi && rf.order[rf.elems[e]] == g)
                            e++;
                    }
                    int32_t id = j == best_lo ? c : ncls++;
                    rf.cstart[id] = j;
                    rf.csize[id] = e - j;
                    rf.caff[id] = 0;
                    for (int32_t x = j; x < e; x++) {
                        int32_t st = rf.elems[x];
                        rf.pos[st] = x;
                        if (id != c) {
                            rf.cls[st] = id;
                            rf.nchanged_buf[nc2++] = st;
                        }
                    }
                    j = e;
                }
                rf.caff[c] = 0;
            }
            int32_t *tmp = rf.changed;
            rf.changed = rf.nchanged_buf;
            rf.nchanged_buf = tmp;
            nchanged = nc2;
            if (nchanged == 0)
                break;
        }
        for (int32_t c = 0; c < ncls; c++) {
            int32_t lo = rf.cstart[c], best = INT32_MAX;
            for (int32_t i = lo; i < lo + rf.csize[c]; i++)
                if (rf.elems[i] < best)
                    best = rf.elems[i];
            for (int32_t i = lo; i < lo + rf.csize[c]; i++)
                rep[rf.elems[i]] = best;
        }
    }
    free(rf.cls);
    free(rf.elems);
    free(rf.pos);
    free(rf.cstart);
    free(rf.csize);
    free(rf.caff);
    free(rf.poff);
    free(rf.preds);
    free(rf.mark);
    free(rf.aff);
    free(rf.aidx);
    free(rf.changed);
    free(rf.nchanged_buf);
    free(rf.grp);
    free(rf.gcls);
    free(rf.order);
    free(rf.touched);
    free(rf.refrow);
    free(rf.sig);
    free(rf.ref);
    free(rf.htab);
    free(rf.hstamp);
    return ok;
}

/* A rule's sharing, computed the first time one of its states needs an
 * entry: the thread that claims the rule writes its rep[] slice, then
 * publishes it; until then (and for a thread that finds the rule being
 * refined) a state uses its own entry, which is always correct. */
static void refine_lazily(const CGrammar *g, const MCache *mc, VCache *vc, int32_t rule)
{
    uint8_t expected = 0;
    if (!atomic_compare_exchange_strong_explicit(&vc->rdone[rule], &expected, 2, memory_order_acq_rel,
                                                 memory_order_acquire))
        return;
    const CgRule *R = &g->rules[rule];
    if (R->nstates > 1 && (int64_t)R->nstates * (R->nclasses + 1) <= REFINE_BUDGET) {
        int32_t *local = malloc(((size_t)R->nstates + 1) * sizeof *local);
        if (local && refine_rule(R, vc->v->max_depth, local))
            for (int32_t st = 0; st < R->nstates; st++)
                vc->rep[mc->base[rule] + st] = mc->base[rule] + local[st];
        free(local);
    }
    atomic_store_explicit(&vc->rdone[rule], 1, memory_order_release);
}

static VCache *vcache_of(const CGrammar *g, MCache *mc, CVocab *v)
{
    for (VCache *vc = atomic_load(&mc->head); vc; vc = vc->next)
        if (vc->v == v)
            return vc;
    pthread_mutex_lock(&mc->mu);
    VCache *vc = atomic_load(&mc->head);
    for (; vc; vc = vc->next)
        if (vc->v == v)
            break;
    if (!vc) {
        vc = calloc(1, sizeof *vc);
        if (vc) {
            vc->e = calloc((size_t)mc->total * 2 + 1, sizeof *vc->e);
            vc->rep = malloc(((size_t)mc->total + 1) * sizeof *vc->rep);
            vc->rdone = calloc((size_t)g->nrules + 1, 1);
            if (vc->rep)
                for (int32_t i = 0; i < mc->total; i++)
                    vc->rep[i] = i;
            if (!vc->e || !vc->rep || !vc->rdone) {
                free(vc->e);
                free(vc->rep);
                free((void *)vc->rdone);
                free(vc);
                vc = NULL;
            } else {
                vc->v = cv_ref(v);
                vc->next = atomic_load(&mc->head);
                atomic_store(&mc->head, vc);
            }
        }
    }
    pthread_mutex_unlock(&mc->mu);
    return vc;
}

/* ---- the subtree shortcut ---------------------------------------------- *
 *
 * Most of a full trie walk is spent where the automaton accepts nearly
 * everything: inside a string, under `[^\n]{0,300}`. There, a whole subtree
 * of the trie is alive when, along the chain of states the text goes
 * through one character at a time (succ), each state sends every ASCII byte
 * of the subtree (CvSum.ascii) and every multi-byte character (when the
 * subtree has any, and its strings are valid UTF-8 prefixes) to the next
 * state of the chain, for as many characters as the subtree's strings have
 * bytes at most. Then every token below is accepted and the walk sets them
 * from the pre-order token list without stepping. A self-loop (succ == the
 * state) ends the check at once.
 */

/* Every run of `need` continuation bytes from `row`, the first in range
 * `cont`, the others in 80-BF, ends in `target` through defined edges. */
static bool conts_reach(const MCache *mc, int32_t rule, int32_t row, int need, int cont, int32_t target)
{
    const int32_t *off = mc->cls_off + (size_t)rule * CL_N + CL_CONT0 + cont;
    for (int32_t k = off[0]; k < off[1]; k++) {
        int32_t t = mc->next[row + mc->cls_pool[k]];
        if (t < 0 || (mc->eflags[row + mc->cls_pool[k]] & SF_XRULE))
            return false;
        if (need == 1 ? t != target : !conts_reach(mc, rule, t, need - 1, 0, target))
            return false;
    }
    return true;
}

static void chain_compute(const MCache *mc, int32_t rule, int32_t row, Chain *out)
{
    const uint8_t *cm = mc->cmap + (size_t)rule * 256;
    /* targets in another rule (folded tail jumps) are never the chain's
     * successor (the chain stays in the rule) but do count as edges */
    int32_t tgt[128];
    bool xr[128];
    for (int b = 0; b < 128; b++) {
        tgt[b] = mc->next[row + cm[b]];
        xr[b] = (mc->eflags[row + cm[b]] & SF_XRULE) != 0;
    }
    /* succ: the target of the most ASCII bytes (a majority vote over runs
     * of equal targets is enough in practice; ties keep the first) */
    int32_t succ = -1;
    int best = 0;
    int32_t cand[8];
    int ncand = 0;
    for (int b = 0; b < 128 && ncand < 8; b++) {
        if (tgt[b] < 0 || xr[b])
            continue;
        bool have = false;
        for (int k = 0; k < ncand; k++)
            have |= cand[k] == tgt[b];
        if (!have)
            cand[ncand++] = tgt[b];
    }
    for (int k = 0; k < ncand; k++) {
        int n = 0;
        for (int b = 0; b < 128; b++)
            n += tgt[b] == cand[k] && !xr[b];
        if (n > best) {
            best = n;
            succ = cand[k];
        }
    }
    memset(out, 0, sizeof *out);
    out->succ = succ;
    for (int b = 0; b < 128; b++)
        if (tgt[b] >= 0)
            out->anydef[b >> 5] |= 1u << (b & 31);
    if (succ < 0)
        return;
    for (int b = 0; b < 128; b++)
        if (tgt[b] == succ && !xr[b])
            out->ascii[b >> 5] |= 1u << (b & 31);
    const int32_t *off = mc->cls_off + (size_t)rule * CL_N;
    for (int g = 0; g < CL_NLEAD; g++)
        for (int32_t k = off[CL_LEAD0 + g]; k < off[CL_LEAD0 + g + 1]; k++) {
            int32_t t = mc->next[row + mc->cls_pool[k]];
            if (t < 0 || (mc->eflags[row + mc->cls_pool[k]] & SF_XRULE) || !conts_reach(mc, rule, t, utf8_leads[g].need, utf8_leads[g].cont, succ))
                return;
        }
    out->utf8 = 1;
}

/* The chain step of (rule, row), computed once per grammar: the first
 * thread to claim it writes it; one that finds it being written computes
 * its own copy. */
static const Chain *chain_of(const MCache *mc, int32_t rule, int32_t row, Chain *local)
{
    int32_t gi = mc->base[rule] + mc->rstate[row];
    uint8_t st = atomic_load_explicit(&mc->ready[gi], memory_order_acquire);
    if (st == 1)
        return &mc->chain[gi];
    uint8_t expected = 0;
    if (st == 0 && atomic_compare_exchange_strong_explicit(&mc->ready[gi], &expected, 2, memory_order_acq_rel,
                                                           memory_order_acquire)) {
        chain_compute(mc, rule, row, &mc->chain[gi]);
        atomic_store_explicit(&mc->ready[gi], 1, memory_order_release);
        return &mc->chain[gi];
    }
    if (expected == 1)
        return &mc->chain[gi];
    chain_compute(mc, rule, row, local);
    return local;
}

enum { RUN_CAP = 1 << 20 };

static bool chain_alike(const Chain *a, const Chain *b)
{
    return a->utf8 == b->utf8 && !memcmp(a->ascii, b->ascii, sizeof a->ascii);
}

/* How many states of the chain from (rule, row) on have the same step as
 * it (RUN_CAP when it ends in a self-loop): a subtree no deeper than that
 * needs one check. Counted repetitions ({0,300}) make such chains. Values
 * are deterministic, so concurrent writers store the same number. */
static int32_t chain_run(const MCache *mc, int32_t rule, int32_t row, int32_t *end)
{
    int32_t gi = mc->base[rule] + mc->rstate[row];
    int32_t r = atomic_load_explicit(&mc->run[gi], memory_order_acquire);
    if (r) {
        *end = atomic_load_explicit(&mc->run_end[gi], memory_order_relaxed);
        return r;
    }
    Chain l0, l1;
    const Chain *c0 = chain_of(mc, rule, row, &l0);
    int32_t k = 1, t = row, e = -1;
    for (;;) {
        const Chain *c = chain_of(mc, rule, t, &l1);
        if (c->succ == t) {
            k = RUN_CAP;
            break;
        }
        if (c->succ < 0 || k >= RUN_CAP)
            break;
        const Chain *cn = chain_of(mc, rule, c->succ, &l1);
        if (!chain_alike(c0, cn)) {
            e = c->succ;
            break;
        }
        int32_t gs = mc->base[rule] + mc->rstate[c->succ];
        int32_t known = atomic_load_explicit(&mc->run[gs], memory_order_acquire);
        if (known) {
            e = atomic_load_explicit(&mc->run_end[gs], memory_order_relaxed);
            k = known >= RUN_CAP - k ? RUN_CAP : k + known;
            break;
        }
        t = c->succ;
        k++;
    }
    atomic_store_explicit(&mc->run_end[gi], e, memory_order_relaxed);
    atomic_store_explicit(&mc->run[gi], k, memory_order_release);
    *end = e;
    return k;
}

static bool chain_admits(const Chain *c, const CvSum *s)
{
    if ((s->ascii[0] & ~c->ascii[0]) | (s->ascii[1] & ~c->ascii[1]) | (s->ascii[2] & ~c->ascii[2]) |
        (s->ascii[3] & ~c->ascii[3]))
        return false;
    return !s->nonascii || c->utf8;
}

/* Whether the strings below the summarised node are alive from (rule, row):
 * true with *limit = -1 when all are; true with *limit = L when exactly
 * those of L bytes or fewer are (allowed only where nothing can pop: the
 * subtree is ASCII, the chain steps alike for L positions and then has no
 * edge for any of its bytes — `[^\n]{0,300}` near its end); false when
 * the walk must look. */
static bool subtree_alive(const MCache *mc, int32_t rule, int32_t row, const CvSum *s, bool allow_prefix,
                          int32_t *limit)
{
    *limit = -1;
    if (s->nonascii && !s->utf8ok)
        return false;
    Chain local;
    const Chain *c0 = chain_of(mc, rule, row, &local);
    if (!chain_admits(c0, s))
        return false;
    if (c0->succ == row || s->depth <= 1)
        return true;
    /* positions 0 .. run - 1 of the chain step alike: checked at once */
    int32_t end;
    int32_t run = chain_run(mc, rule, row, &end);
    if ((int64_t)s->depth <= run)
        return true;
    if (end < 0)
        return false;
    if (allow_prefix && s->bylen >= 0) {
        const Chain *ce = chain_of(mc, rule, end, &local);
        if (!((s->ascii[0] & ce->anydef[0]) | (s->ascii[1] & ce->anydef[1]) | (s->ascii[2] & ce->anydef[2]) |
              (s->ascii[3] & ce->anydef[3]))) {
            *limit = run;
            return true;
        }
    }
    row = end;
    for (uint32_t j = (uint32_t)run; j < s->depth; j++) {
        const Chain *c = chain_of(mc, rule, row, &local);
        if (!chain_admits(c, s))
            return false;
        if (c->succ == row || j + 1 == s->depth)
            return true;
        if (c->succ < 0)
            return false;
        row = c->succ;
    }
    return true;
}

/* ---- walks -------------------------------------------------------------- */

/* Buffers for stepping stack sets: level d of a walk is the set after d
 * bytes, stored in arena[lstart[d] .. lstart[d] + lcount[d]). Levels are
 * contiguous, so writing level d overwrites only deeper ones. */
typedef struct {
    const CGrammar *g;
    const MCache *mc;
    const int32_t *next, *erule;
    const uint8_t *eflags, *rflags, *cmap;
    Frames *fr;             /* where pushes intern their nodes */
    Stk *arena;
    size_t acap;
    int32_t *lstart, *lcount;
    uint8_t *lflags;
    int32_t nlevels;
    Stk *work, *vis;        /* closure scratch */
    int32_t wcap, vcap, nvis;
    int err;                /* first out-of-memory */
} Walk;

static void walk_free(Walk *w)
{
    free(w->arena);
    free(w->lstart);
    free(w->lcount);
    free(w->lflags);
    free(w->work);
    free(w->vis);
}

static int walk_init(Walk *w, const CGrammar *g, const MCache *mc, Frames *fr, int32_t levels)
{
    memset(w, 0, sizeof *w);
    w->g = g;
    w->mc = mc;
    w->next = mc->next;
    w->erule = mc->erule;
    w->eflags = mc->eflags;
    w->rflags = mc->rflags;
    w->cmap = mc->cmap;
    w->fr = fr;
    w->nlevels = levels + 2;
    w->acap = 1024;
    w->arena = malloc(w->acap * sizeof *w->arena);
    w->lstart = calloc((size_t)w->nlevels, sizeof *w->lstart);
    w->lcount = calloc((size_t)w->nlevels, sizeof *w->lcount);
    w->lflags = calloc((size_t)w->nlevels, 1);
    w->wcap = w->vcap = 64;
    w->work = malloc((size_t)w->wcap * sizeof *w->work);
    w->vis = malloc((size_t)w->vcap * sizeof *w->vis);
    if (!w->arena || !w->lstart || !w->lcount || !w->lflags || !w->work || !w->vis) {
        walk_free(w);
        return ERR_NOMEM;
    }
    return 0;
}

static bool arena_reserve(Walk *w, size_t need)
{
    if (need <= w->acap)
        return true;
    size_t cap = w->acap * 2;
    while (cap < need)
        cap *= 2;
    Stk *a = realloc(w->arena, cap * sizeof *a);
    if (!a) {
        w->err = ERR_NOMEM;
        return false;
    }
    w->arena = a;
    w->acap = cap;
    return true;
}

static bool vis_add(Walk *w, Stk s)
{
    for (int32_t i = 0; i < w->nvis; i++)
        if (stk_eq(w->vis[i], s))
            return false;
    if (w->nvis == w->vcap) {
        Stk *v = realloc(w->vis, (size_t)w->vcap * 2 * sizeof *v);
        if (!v) {
            w->err = ERR_NOMEM;
            return false;
        }
        w->vis = v;
        w->vcap *= 2;
    }
    w->vis[w->nvis++] = s;
    return true;
}

/* Adds the epsilon closure of s to level d (byte-ready stacks) and its
 * flags. The visited list spans one whole step, so stacks reached from two
 * inputs are kept once. */
static void closure(Walk *w, int32_t d, Stk s)
{
    if (!vis_add(w, s))
        return;
    int32_t nwork = 0;
    w->work[nwork++] = s;
    const CGrammar *g = w->g;
    while (nwork > 0) {
        Stk x = w->work[--nwork];
        uint8_t f = w->rflags[x.row];
        if (f & SF_BYTES) {
            size_t at = (size_t)w->lstart[d] + (size_t)w->lcount[d];
            if (!arena_reserve(w, at + 1))
                return;
            w->arena[at] = x;
            w->lcount[d]++;
        }
        if (f & SF_FINAL) {
            if (x.parent == BOTTOM)
                w->lflags[d] |= LF_ACC;
            else if (x.parent == UNKNOWN)
                w->lflags[d] |= LF_POP;
            else {
                Stk y = w->fr->node[x.parent];
                if (vis_add(w, y)) {
                    if (nwork == w->wcap) {
                        Stk *nw = realloc(w->work, (size_t)w->wcap * 2 * sizeof *nw);
                        if (!nw) {
                            w->err = ERR_NOMEM;
                            return;
                        }
                        w->work = nw;
                        w->wcap *= 2;
                    }
                    w->work[nwork++] = y;
                }
            }
        }
        if (f & SF_CALLS) {
            const CgRule *R = &g->rules[x.rule];
            const MCache *mc = w->mc;
            int32_t st = mc->rstate[x.row];
            for (int32_t c = R->call_off[st]; c < R->call_off[st + 1]; c++) {
                int32_t to = mc->row_base[x.rule] + R->calls[c].to * mc->width[x.rule];
                /* a tail call (the caller returns to a state that can only
                 * end) needs no frame: the callee returns straight to the
                 * caller's parent. Right-recursive rules (a JSON Schema
                 * name pattern as right-linear rules, `list ::= item list
                 * | item`) then run in constant stack instead of one frame
                 * per byte or item. */
                int32_t p = x.parent;
                if (w->rflags[to] != SF_FINAL) {
                    p = frames_intern(w->fr, x.rule, to, x.parent);
                    if (p < 0) {
                        w->err = ERR_NOMEM;
                        return;
                    }
                }
                int32_t callee = R->calls[c].rule;
                rule_ready(mc, callee);
                Stk y = { callee, mc->row_base[callee] + g->rules[callee].start * mc->width[callee], p };
                if (vis_add(w, y)) {
                    if (nwork == w->wcap) {
                        Stk *nw = realloc(w->work, (size_t)w->wcap * 2 * sizeof *nw);
                        if (!nw) {
                            w->err = ERR_NOMEM;
                            return;
                        }
                        w->work = nw;
                        w->wcap *= 2;
                    }
                    w->work[nwork++] = y;
                }
            }
        }
    }
}

/* Level d = level d - 1 stepped on byte b: the general case. */
static __attribute__((noinline)) void step_slow(Walk *w, int32_t d, uint8_t b)
{
    int32_t from = w->lstart[d - 1], n = w->lcount[d - 1];
    w->lstart[d] = from + n;
    w->lcount[d] = 0;
    w->lflags[d] = 0;
    w->nvis = 0;
    for (int32_t i = 0; i < n; i++) {
        Stk x = w->arena[from + i];
        int32_t e = x.row + w->cmap[(size_t)x.rule * 256 + b];
        int32_t t = w->next[e];
        if (t >= 0)
            closure(w, d, (Stk){ w->eflags[e] & SF_XRULE ? w->erule[e] : x.rule, t, x.parent });
    }
}

/* Level d = level d - 1 stepped on byte b. Inline for the case that makes
 * up most of every walk: one stack whose byte edge leads to a state without
 * calls that does not need its parent (not final, or final over BOTTOM or
 * UNKNOWN, which only set a flag). */
static inline __attribute__((always_inline)) void step(Walk *w, int32_t d, uint8_t b)
{
    int32_t from = w->lstart[d - 1];
    if (w->lcount[d - 1] == 1 && (size_t)from + 2 <= w->acap) {
        Stk x = w->arena[from];
        int32_t e = x.row + w->cmap[(size_t)x.rule * 256 + b];
        int32_t t = w->next[e];
        uint8_t f = w->eflags[e];
        w->lstart[d] = from + 1;
        if (t < 0) {
            w->lcount[d] = 0;
            w->lflags[d] = 0;
            return;
        }
        int32_t nr = x.rule;
        if (f & SF_XRULE) {
            nr = w->erule[e];
            f &= (uint8_t)~SF_XRULE;
        }
        if (!(f & SF_CALLS) && (!(f & SF_FINAL) || x.parent < 0)) {
            w->lflags[d] = !(f & SF_FINAL) ? 0 : x.parent == BOTTOM ? LF_ACC : LF_POP;
            if (f & SF_BYTES) {
                w->arena[from + 1] = (Stk){ nr, t, x.parent };
                w->lcount[d] = 1;
            } else
                w->lcount[d] = 0;
            return;
        }
    }
    step_slow(w, d, b);
}

static inline void set_token(const CVocab *v, const CvNode *nd, uint32_t *mask)
{
    int32_t tok = nd->tok;
    mask[tok >> 5] |= 1u << (tok & 31);
    if (nd->bd & CV_NODE_DUP)
        for (tok = v->dup_next[tok]; tok >= 0; tok = v->dup_next[tok])
            mask[tok >> 5] |= 1u << (tok & 31);
}

/* Sets the tokens below a summarised node at depth `depth` (those of
 * `limit` bytes below it or fewer when limit >= 0); returns how many. */
static int32_t set_subtree(const CVocab *v, const CvSum *sm, int32_t depth, int32_t limit, uint32_t *mask)
{
    if (limit >= 0) {
        const int32_t *lst = v->bylen + sm->bylen;
        int32_t n = sm->tok_hi - sm->tok_lo, k = 0;
        uint32_t maxlen = (uint32_t)(depth + limit);
        for (; k < n && v->off[lst[k] + 1] - v->off[lst[k]] <= maxlen; k++)
            mask[lst[k] >> 5] |= 1u << (lst[k] & 31);
        return k;
    }
    if (sm->bits >= 0) {
        const uint32_t *bs = v->bitsets + (size_t)sm->bits * v->words;
        for (size_t k = 0; k < v->words; k++)
            mask[k] |= bs[k];
        return sm->tok_hi - sm->tok_lo;
    }
    for (int32_t k = sm->tok_lo; k < sm->tok_hi; k++)
        mask[v->order[k] >> 5] |= 1u << (v->order[k] & 31);
    return sm->tok_hi - sm->tok_lo;
}

/* Real walk of the trie nodes [lo, hi): a run of whole subtrees whose
 * parents' level is set. Sets the bit of every token left alive. */
static void walk_real(Walk *w, const CVocab *v, int32_t lo, int32_t hi, uint32_t *mask)
{
    const CvNode *nodes = v->nodes;
    int32_t i = lo;
    while (i < hi) {
        const CvNode *nd = &nodes[i];
        int32_t d = CV_NODE_DEPTH(nd);
        step(w, d, CV_NODE_BYTE(nd));
        if (w->lcount[d] == 0) {
            if ((w->lflags[d] & LF_ACC) && nd->tok >= 0)
                set_token(v, nd, mask);
            i += (int32_t)nd->sub;
            continue;
        }
        if (nd->tok >= 0)
            set_token(v, nd, mask);
        if (nd->sum >= 0 && w->lcount[d] == 1) {
            Stk x = w->arena[w->lstart[d]];
            const CvSum *sm = &v->sums[nd->sum];
            int32_t limit;
            if (subtree_alive(w->mc, x.rule, x.row, sm, x.parent == BOTTOM, &limit)) {
                set_subtree(v, sm, d, limit, mask);
                i += (int32_t)nd->sub;
                continue;
            }
        }
        i++;
    }
}

/* Runs an entry's script from the stack at level 0. */
static void run_script(Walk *w, const CVocab *v, const MEntry *e, uint32_t *mask)
{
    const CvNode *nodes = v->nodes;
    int32_t skip_until = 0;
    for (int32_t k = 0; k < e->nscript; k++) {
        int32_t i = (int32_t)(e->script[k] & ~SCRIPT_RANGE);
        if (i < skip_until)
            continue;
        const CvNode *nd = &nodes[i];
        int32_t d = CV_NODE_DEPTH(nd);
        step(w, d, CV_NODE_BYTE(nd));
        bool live = w->lcount[d] > 0;
        if (!live && !(w->lflags[d] & LF_ACC)) {
            skip_until = i + (int32_t)nd->sub;
            continue;
        }
        if (nd->tok >= 0)
            set_token(v, nd, mask);
        if (!live)
            skip_until = i + (int32_t)nd->sub;
        else if (e->script[k] & SCRIPT_RANGE)
            walk_real(w, v, i + 1, i + (int32_t)nd->sub, mask);
    }
}

typedef struct {
    uint32_t *u;
    int32_t n, cap;
} U32s;

static bool u32_push(U32s *a, uint32_t x)
{
    if (a->n == a->cap) {
        int32_t cap = a->cap ? a->cap * 2 : 64;
        uint32_t *p = realloc(a->u, (size_t)cap * sizeof *p);
        if (!p)
            return false;
        a->u = p;
        a->cap = cap;
    }
    a->u[a->n++] = x;
    return true;
}

/* The cache entry for a top (rule, state): a walk of the whole trie from
 * that frame alone, over BOTTOM or UNKNOWN (see the header comment). */
static MEntry *entry_build(Walk *w, const CVocab *v, Stk top, uint32_t *tmp)
{
    const CvNode *nodes = v->nodes;
    size_t words = v->words;
    memset(tmp, 0, words * sizeof *tmp);
    int32_t maxd = v->max_depth + 1;
    uint8_t *popd = calloc((size_t)maxd + 1, 1);          /* a pop on the path at depth <= d */
    int32_t *path = calloc((size_t)maxd + 1, sizeof *path);
    U32s script = { 0 };
    int32_t nacc = 0;
    MEntry *e = calloc(1, sizeof *e);
    if (!popd || !path || !e)
        goto nomem;
    w->lstart[0] = 0;
    w->lcount[0] = 1;
    w->lflags[0] = 0;
    w->arena[0] = top;
    int32_t emitted = 0;         /* path[1..emitted] are in the script */
    int32_t i = 1;
    while (i < v->nnodes) {
        const CvNode *nd = &nodes[i];
        int32_t d = CV_NODE_DEPTH(nd);
        if (emitted > d - 1)
            emitted = d - 1;
        path[d] = i;
        step(w, d, CV_NODE_BYTE(nd));
        if (w->err)
            goto nomem;
        uint8_t lf = w->lflags[d];
        bool live = w->lcount[d] > 0;
        popd[d] = popd[d - 1] | ((lf & LF_POP) != 0);
        if (nd->tok >= 0 && (live || lf)) {
            set_token(v, nd, tmp);
            nacc++;
            if (nd->bd & CV_NODE_DUP)
                for (int32_t t = v->dup_next[nd->tok]; t >= 0; t = v->dup_next[t])
                    nacc++;
        }
        if (live) {
            if (nd->sum >= 0 && w->lcount[d] == 1) {
                Stk x = w->arena[w->lstart[d]];
                const CvSum *sm = &v->sums[nd->sum];
                int32_t limit;
                if (subtree_alive(w->mc, x.rule, x.row, sm, x.parent == BOTTOM, &limit)) {
                    nacc += set_subtree(v, sm, d, limit, tmp);
                    i += (int32_t)nd->sub;
                    continue;
                }
            }
            i++;
            continue;
        }
        if (popd[d]) {
            for (int32_t a = emitted + 1; a < d; a++)
                if (!u32_push(&script, (uint32_t)path[a]))
                    goto nomem;
            emitted = d - 1;
            if (!u32_push(&script, (uint32_t)i | SCRIPT_RANGE))
                goto nomem;
        }
        i += (int32_t)nd->sub;
    }
    if ((size_t)nacc * 4 < words) {
        e->ids = malloc(((size_t)nacc + 1) * sizeof *e->ids);
        if (!e->ids)
            goto nomem;
        for (size_t k = 0; k < words; k++)
            for (uint32_t x = tmp[k]; x; x &= x - 1)
                e->ids[e->nids++] = (int32_t)(k * 32 + (size_t)__builtin_ctz(x));
    } else {
        e->bits = malloc(words * sizeof *e->bits);
        if (!e->bits)
            goto nomem;
        memcpy(e->bits, tmp, words * sizeof *tmp);
    }
    e->script = script.u;
    e->nscript = script.n;
    e->count = nacc;
    free(popd);
    free(path);
    return e;
nomem:
    free(script.u);
    if (e)
        free(e->ids);
    free(popd);
    free(path);
    free(e);
    return NULL;
}

/* ---- matchers ----------------------------------------------------------- */

typedef struct {
    int32_t off, n;         /* into hist_stk */
    uint8_t acc, finished;
} HistEntry;

struct CMatcher {
    CGrammar *g;
    CVocab *v;
    MCache *mc;
    VCache *vc;
    Frames fr;              /* the stacks' frames */
    Frames scratch;         /* frames of cache walks (parent UNKNOWN) */
    Walk w;
    Stk *cur;               /* the stack set after the text so far */
    int32_t ncur, capcur;
    bool acc, finished;
    HistEntry *hist;
    int32_t nhist, caphist;
    Stk *hist_stk;
    int32_t nhist_stk, caphist_stk;
    uint32_t *tmp;          /* cv_mask_words: entry builds, cm_forced */
};

/* cur = level d of the walk. */
static int take_level(CMatcher *m, int32_t d)
{
    int32_t n = m->w.lcount[d];
    if (n > m->capcur) {
        Stk *c = realloc(m->cur, (size_t)n * sizeof *c);
        if (!c)
            return ERR_NOMEM;
        m->cur = c;
        m->capcur = n;
    }
    memcpy(m->cur, m->w.arena + m->w.lstart[d], (size_t)n * sizeof *m->cur);
    m->ncur = n;
    m->acc = (m->w.lflags[d] & LF_ACC) != 0;
    return 0;
}

/* Level 0 of the walk = cur. */
static int put_level0(CMatcher *m)
{
    if (!arena_reserve(&m->w, (size_t)m->ncur + 1))
        return ERR_NOMEM;
    memcpy(m->w.arena, m->cur, (size_t)m->ncur * sizeof *m->cur);
    m->w.lstart[0] = 0;
    m->w.lcount[0] = m->ncur;
    m->w.lflags[0] = m->acc ? LF_ACC : 0;
    return 0;
}

static int hist_push(CMatcher *m)
{
    if (m->nhist == m->caphist) {
        int32_t cap = m->caphist ? m->caphist * 2 : 64;
        HistEntry *h = realloc(m->hist, (size_t)cap * sizeof *h);
        if (!h)
            return ERR_NOMEM;
        m->hist = h;
        m->caphist = cap;
    }
    if (m->nhist_stk + m->ncur > m->caphist_stk) {
        int32_t cap = m->caphist_stk ? m->caphist_stk * 2 : 256;
        while (cap < m->nhist_stk + m->ncur)
            cap *= 2;
        Stk *s = realloc(m->hist_stk, (size_t)cap * sizeof *s);
        if (!s)
            return ERR_NOMEM;
        m->hist_stk = s;
        m->caphist_stk = cap;
    }
    memcpy(m->hist_stk + m->nhist_stk, m->cur, (size_t)m->ncur * sizeof *m->cur);
    m->hist[m->nhist++] = (HistEntry){ m->nhist_stk, m->ncur, m->acc, m->finished };
    m->nhist_stk += m->ncur;
    return 0;
}

static void matcher_free_parts(CMatcher *m)
{
    frames_free(&m->fr);
    frames_free(&m->scratch);
    walk_free(&m->w);
    free(m->cur);
    free(m->hist);
    free(m->hist_stk);
    free(m->tmp);
}

/* The initial stack set: the closure of the start rule's bottom frame.
 * Written through a one-byte-deeper level so closure() can be reused. */
static int start_set(Walk *w, const CGrammar *g)
{
    w->lstart[0] = 0;
    w->lcount[0] = 0;
    w->lstart[1] = 0;
    w->lcount[1] = 0;
    w->lflags[1] = 0;
    w->nvis = 0;
    const MCache *mc = w->mc;
    rule_ready(mc, g->start);
    closure(w, 1, (Stk){ g->start, mc->row_base[g->start] + g->rules[g->start].start * mc->width[g->start], BOTTOM });
    return w->err;
}

int cm_new(CGrammar *g, CVocab *v, CMatcher **out)
{
    if (!g || !v || !out)
        return ERR_ARG;
    *out = NULL;
    MCache *mc = mcache_of(g);
    VCache *vc = mc ? vcache_of(g, mc, v) : NULL;
    CMatcher *m = calloc(1, sizeof *m);
    if (!vc || !m) {
        free(m);
        return ERR_NOMEM;
    }
    m->mc = mc;
    m->vc = vc;
    m->tmp = malloc((v->words + 1) * sizeof *m->tmp);
    if (!m->tmp || walk_init(&m->w, g, mc, &m->fr, v->max_depth + 1) < 0) {
        free(m->tmp);
        free(m);
        return ERR_NOMEM;
    }
    int rc = start_set(&m->w, g);
    if (rc == 0)
        rc = take_level(m, 1);
    if (rc < 0) {
        matcher_free_parts(m);
        free(m);
        return rc;
    }
    m->g = cg_ref(g);
    m->v = cv_ref(v);
    *out = m;
    return 0;
}

void cm_free(CMatcher *m)
{
    if (!m)
        return;
    matcher_free_parts(m);
    cg_unref(m->g);
    cv_unref(m->v);
    free(m);
}

bool cm_can_end(const CMatcher *m) { return m && !m->finished && m->acc; }

bool cm_is_finished(const CMatcher *m) { return !m || m->finished || m->ncur == 0; }

int cm_history(const CMatcher *m) { return m ? m->nhist : 0; }

static const MEntry *entry_get(CMatcher *m, Stk top)
{
    int32_t bottom = top.parent == BOTTOM;
    int32_t gi = m->mc->base[top.rule] + m->mc->rstate[top.row];
    uint8_t done = atomic_load_explicit(&m->vc->rdone[top.rule], memory_order_acquire);
    if (done == 0) {
        refine_lazily(m->g, m->mc, m->vc, top.rule);
        done = atomic_load_explicit(&m->vc->rdone[top.rule], memory_order_acquire);
    }
    size_t idx = (size_t)(done == 1 ? m->vc->rep[gi] : gi) * 2 + (size_t)bottom;
    MEntry *e = atomic_load_explicit(&m->vc->e[idx], memory_order_acquire);
    if (e)
        return e;
    frames_reset(&m->scratch);
    m->w.fr = &m->scratch;
    m->w.err = 0;
    MEntry *mine = entry_build(&m->w, m->v, (Stk){ top.rule, top.row, bottom ? BOTTOM : UNKNOWN }, m->tmp);
    m->w.fr = &m->fr;
    if (!mine)
        return NULL;
    MEntry *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&m->vc->e[idx], &expected, mine, memory_order_acq_rel,
                                                memory_order_acquire))
        return mine;
    entry_free(mine);
    return expected;
}

__attribute__((target("popcnt"))) static int popcount_words_hw(const uint32_t *w, size_t n)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += __builtin_popcount(w[i]);
    return c;
}

static int popcount_words(const uint32_t *w, size_t n)
{
    if (__builtin_cpu_supports("popcnt"))
        return popcount_words_hw(w, n);
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += __builtin_popcount(w[i]);
    return c;
}

int cm_fill_mask(CMatcher *m, uint32_t *mask)
{
    if (!m || !mask)
        return ERR_ARG;
    const CVocab *v = m->v;
    size_t words = v->words;
    memset(mask, 0, words * sizeof *mask);
    if (m->finished)
        return 0;
    if (m->acc)
        for (int i = 0; i < v->neog; i++)
            mask[v->eog[i] >> 5] |= 1u << (v->eog[i] & 31);
    int32_t single_count = 0;
    bool single_script = false;
    for (int32_t k = 0; k < m->ncur; k++) {
        Stk top = m->cur[k];
        const MEntry *e = entry_get(m, top);
        if (!e)
            return ERR_NOMEM;
        single_count = e->count;
        single_script = e->nscript > 0;
        if (e->bits) {
            const uint32_t *s = e->bits;
            for (size_t i = 0; i < words; i++)
                mask[i] |= s[i];
        } else {
            for (int32_t i = 0; i < e->nids; i++)
                mask[e->ids[i] >> 5] |= 1u << (e->ids[i] & 31);
        }
        if (e->nscript) {
            m->w.err = 0;
            m->w.lstart[0] = 0;
            m->w.lcount[0] = 1;
            m->w.lflags[0] = 0;
            m->w.arena[0] = top;
            run_script(&m->w, v, e, mask);
            if (m->w.err)
                return m->w.err;
        }
    }
    if (m->ncur == 1 && !single_script)
        return single_count + (m->acc ? v->neog : 0);
    return popcount_words(mask, words);
}

/* Steps cur through s[0..n) without touching history; on failure cur is
 * unchanged and *bad the offset of the first byte that cannot follow. */
static int advance(CMatcher *m, const char *s, size_t n, size_t *bad)
{
    if (n == 0)
        return 0;
    int rc = put_level0(m);
    if (rc < 0)
        return rc;
    Walk *w = &m->w;
    w->err = 0;
    for (size_t i = 0; i < n; i++) {
        if (w->lcount[0] == 0) {
            *bad = i;
            return ERR_CONSTRAINT;
        }
        step(w, 1, (uint8_t)s[i]);
        if (w->err)
            return w->err;
        if (w->lcount[1] == 0 && !(w->lflags[1] & LF_ACC)) {
            *bad = i;
            return ERR_CONSTRAINT;
        }
        /* level 1 becomes level 0 */
        memmove(w->arena, w->arena + w->lstart[1], (size_t)w->lcount[1] * sizeof *w->arena);
        w->lcount[0] = w->lcount[1];
        w->lflags[0] = w->lflags[1];
    }
    w->lstart[1] = 0;
    return take_level(m, 0);
}

int cm_accept_bytes(CMatcher *m, const char *s, size_t n, size_t *bad_at)
{
    size_t bad = 0;
    if (!m || (!s && n))
        return ERR_ARG;
    if (n == 0)
        return 0;
    if (m->finished) {
        if (bad_at)
            *bad_at = 0;
        return ERR_CONSTRAINT;
    }
    int rc = hist_push(m);
    if (rc < 0)
        return rc;
    rc = advance(m, s, n, &bad);
    if (rc < 0) {
        m->nhist--;
        m->nhist_stk = m->hist[m->nhist].off;
        if (bad_at)
            *bad_at = bad;
    }
    return rc;
}

int cm_accept_token(CMatcher *m, int32_t id)
{
    if (!m)
        return ERR_ARG;
    const CVocab *v = m->v;
    if (id < 0 || id >= v->n)
        return ERR_VOCAB;
    if (m->finished)
        return ERR_CONSTRAINT;
    uint8_t f = v->flags[id];
    size_t len;
    const char *p = cv_token_bytes(v, id, &len);
    if (f & CV_EOG) {
        if (!m->acc)
            return ERR_CONSTRAINT;
        int rc = hist_push(m);
        if (rc < 0)
            return rc;
        m->finished = true;
        return 0;
    }
    if ((f & CV_SPECIAL) || len == 0)
        return ERR_CONSTRAINT;
    int rc = hist_push(m);
    if (rc < 0)
        return rc;
    size_t bad;
    rc = advance(m, p, len, &bad);
    if (rc < 0) {
        m->nhist--;
        m->nhist_stk = m->hist[m->nhist].off;
    }
    return rc;
}

int cm_rollback(CMatcher *m, int n)
{
    if (!m || n < 0 || n > m->nhist)
        return ERR_ARG;
    if (n == 0)
        return 0;
    HistEntry h = m->hist[m->nhist - n];
    if (h.n > m->capcur) {
        Stk *c = realloc(m->cur, (size_t)h.n * sizeof *c);
        if (!c)
            return ERR_NOMEM;
        m->cur = c;
        m->capcur = h.n;
    }
    memcpy(m->cur, m->hist_stk + h.off, (size_t)h.n * sizeof *m->cur);
    m->ncur = h.n;
    m->acc = h.acc;
    m->finished = h.finished;
    m->nhist -= n;
    m->nhist_stk = h.off;
    return 0;
}

int cm_forced(CMatcher *m, int32_t *ids, int cap)
{
    if (!m || cap < 0 || (!ids && cap))
        return ERR_ARG;
    int k = 0;
    while (k < cap && !m->finished) {
        int c = cm_fill_mask(m, m->tmp);
        if (c < 0)
            return c;
        if (c != 1)
            break;
        int32_t tok = -1;
        for (size_t i = 0; i < m->v->words; i++)
            if (m->tmp[i]) {
                tok = (int32_t)(i * 32 + (size_t)__builtin_ctz(m->tmp[i]));
                break;
            }
        if (m->v->flags[tok] & CV_EOG)
            break;
        int rc = cm_accept_token(m, tok);
        if (rc < 0)
            return rc;
        ids[k++] = tok;
    }
    return k;
}

/* ---- recognition without a vocabulary ----------------------------------- */

int cg_match(const CGrammar *g, const char *s, size_t n, bool *prefix_ok)
{
    if (prefix_ok)
        *prefix_ok = false;
    if (!g || (!s && n))
        return ERR_ARG;
    MCache *mc = mcache_of((CGrammar *)g);
    if (!mc)
        return ERR_NOMEM;
    Frames fr = { 0 };
    Walk w;
    if (walk_init(&w, g, mc, &fr, 1) < 0)
        return ERR_NOMEM;
    int rc = start_set(&w, g);
    /* level 1 holds the set; alternate between levels 1 and 2 */
    bool alive = true;
    for (size_t i = 0; rc == 0 && i < n && alive; i++) {
        if (w.lcount[1] == 0) {
            alive = false;
            break;
        }
        step(&w, 2, (uint8_t)s[i]);
        rc = w.err;
        memmove(w.arena, w.arena + w.lstart[2], (size_t)w.lcount[2] * sizeof *w.arena);
        w.lstart[0] = 0;
        w.lcount[0] = 0;
        w.lstart[1] = 0;
        w.lcount[1] = w.lcount[2];
        w.lflags[1] = w.lflags[2];
        alive = w.lcount[1] > 0 || (w.lflags[1] & LF_ACC);
    }
    if (rc == 0) {
        if (prefix_ok)
            *prefix_ok = alive;
        rc = alive && (w.lflags[1] & LF_ACC) ? 1 : 0;
    }
    walk_free(&w);
    frames_free(&fr);
    return rc;
}
