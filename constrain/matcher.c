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
 * the closure runs: a state with calls pushes (caller returns to `to`) and
 * continues in the callee's start state, a final state pops (continues in
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
 * The cache is filled lazily (the first mask of a state pays its walk),
 * entries are published with a compare-and-swap (concurrent matchers may
 * both compute one; the loser frees its copy), and they are immutable once
 * published. The per-vocabulary tables hang off a list guarded by a mutex
 * taken only to add one; each holds a reference to its vocabulary, so a
 * vocabulary lives as long as a grammar that cached masks for it.
 *
 * History: every accepted token (or cm_accept_bytes call) pushes the stack
 * set it left; cm_rollback restores one. Frame nodes are never freed, so old
 * sets stay valid.
 *
 * Threads: a CMatcher belongs to one thread at a time; the cache is shared.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar.h"
#include "constrain/vocab.h"

enum { BOTTOM = -1, UNKNOWN = -2 };
enum { SF_BYTES = 1, SF_CALLS = 2, SF_FINAL = 4 };     /* per rule state */
enum { LF_ACC = 1, LF_POP = 2 };                       /* per stack set */
#define SCRIPT_RANGE 0x80000000u

typedef struct {
    int32_t rule, state, parent;
} Stk;

static inline bool stk_eq(Stk a, Stk b) { return a.rule == b.rule && a.state == b.state && a.parent == b.parent; }

/* ---- interned frame nodes ----------------------------------------------- */

typedef struct {
    Stk *node;              /* node i = (rule, state, parent) */
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
        uint32_t k = stk_hash(f->node[i].rule, f->node[i].state, f->node[i].parent) & (hcap - 1);
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
        if (f->node[i].rule == r && f->node[i].state == s && f->node[i].parent == p)
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
} MEntry;

typedef struct VCache {
    CVocab *v;              /* a reference */
    _Atomic(MEntry *) *e;   /* 2 * total: (base[rule] + state) * 2 + bottom */
    struct VCache *next;
} VCache;

typedef struct {
    pthread_mutex_t mu;     /* taken to add a VCache */
    _Atomic(VCache *) head;
    int32_t total;          /* states over all rules */
    int32_t *base;          /* nrules: index of the rule's state 0 */
    uint8_t *sflags;        /* total: SF_* */
} MCache;

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
        cv_unref(vc->v);
        free(vc);
        vc = next;
    }
    pthread_mutex_destroy(&mc->mu);
    free(mc->base);
    free(mc->sflags);
    free(mc);
}

static MCache *mcache_build(const CGrammar *g)
{
    MCache *mc = calloc(1, sizeof *mc);
    if (!mc)
        return NULL;
    pthread_mutex_init(&mc->mu, NULL);
    atomic_init(&mc->head, NULL);
    mc->base = malloc(((size_t)g->nrules + 1) * sizeof *mc->base);
    if (!mc->base) {
        mcache_free(mc);
        return NULL;
    }
    int32_t total = 0;
    for (int32_t r = 0; r < g->nrules; r++) {
        mc->base[r] = total;
        total += g->rules[r].nstates;
    }
    mc->total = total;
    mc->sflags = calloc((size_t)total + 1, 1);
    if (!mc->sflags) {
        mcache_free(mc);
        return NULL;
    }
    for (int32_t r = 0; r < g->nrules; r++) {
        const CgRule *R = &g->rules[r];
        for (int32_t s = 0; s < R->nstates; s++) {
            uint8_t f = 0;
            for (int32_t c = 0; c < R->nclasses; c++)
                if (R->next[(size_t)s * R->nclasses + c] >= 0) {
                    f |= SF_BYTES;
                    break;
                }
            if (R->call_off[s + 1] > R->call_off[s])
                f |= SF_CALLS;
            if (R->final[s])
                f |= SF_FINAL;
            mc->sflags[mc->base[r] + s] = f;
        }
    }
    return mc;
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

static VCache *vcache_of(MCache *mc, CVocab *v)
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
            if (!vc->e) {
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

/* ---- walks -------------------------------------------------------------- */

/* Buffers for stepping stack sets: level d of a walk is the set after d
 * bytes, stored in arena[lstart[d] .. lstart[d] + lcount[d]). Levels are
 * contiguous, so writing level d overwrites only deeper ones. */
typedef struct {
    const CGrammar *g;
    const int32_t *base;
    const uint8_t *sflags;
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
    w->base = mc->base;
    w->sflags = mc->sflags;
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
        uint8_t f = w->sflags[w->base[x.rule] + x.state];
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
            for (int32_t c = R->call_off[x.state]; c < R->call_off[x.state + 1]; c++) {
                int32_t p = frames_intern(w->fr, x.rule, R->calls[c].to, x.parent);
                if (p < 0) {
                    w->err = ERR_NOMEM;
                    return;
                }
                int32_t callee = R->calls[c].rule;
                Stk y = { callee, g->rules[callee].start, p };
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

/* Level d = level d - 1 stepped on byte b. */
static inline void step(Walk *w, int32_t d, uint8_t b)
{
    int32_t from = w->lstart[d - 1], n = w->lcount[d - 1];
    w->lstart[d] = from + n;
    w->lcount[d] = 0;
    w->lflags[d] = 0;
    const CGrammar *g = w->g;
    if (n == 1) {
        /* the common case: one stack, and a plain byte edge */
        Stk x = w->arena[from];
        const CgRule *R = &g->rules[x.rule];
        int32_t t = R->next[(size_t)x.state * R->nclasses + R->classmap[b]];
        if (t < 0)
            return;
        if (w->sflags[w->base[x.rule] + t] == SF_BYTES) {
            if (!arena_reserve(w, (size_t)from + 2))
                return;
            w->arena[from + 1] = (Stk){ x.rule, t, x.parent };
            w->lcount[d] = 1;
            return;
        }
        w->nvis = 0;
        closure(w, d, (Stk){ x.rule, t, x.parent });
        return;
    }
    w->nvis = 0;
    for (int32_t i = 0; i < n; i++) {
        Stk x = w->arena[from + i];
        const CgRule *R = &g->rules[x.rule];
        int32_t t = R->next[(size_t)x.state * R->nclasses + R->classmap[b]];
        if (t >= 0)
            closure(w, d, (Stk){ x.rule, t, x.parent });
    }
}

static inline void set_token(const CVocab *v, uint32_t *mask, int32_t tok)
{
    for (; tok >= 0; tok = v->dup_next[tok])
        mask[tok >> 5] |= 1u << (tok & 31);
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
                set_token(v, mask, nd->tok);
            i += (int32_t)nd->sub;
            continue;
        }
        if (nd->tok >= 0)
            set_token(v, mask, nd->tok);
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
            set_token(v, mask, nd->tok);
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
    U32s acc = { 0 }, script = { 0 };
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
            for (int32_t t = nd->tok; t >= 0; t = v->dup_next[t]) {
                tmp[t >> 5] |= 1u << (t & 31);
                if (!u32_push(&acc, (uint32_t)t))
                    goto nomem;
            }
        }
        if (live) {
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
    if ((size_t)acc.n * 4 < words) {
        e->ids = (int32_t *)acc.u;
        e->nids = acc.n;
        acc.u = NULL;
    } else {
        e->bits = malloc(words * sizeof *e->bits);
        if (!e->bits)
            goto nomem;
        memcpy(e->bits, tmp, words * sizeof *tmp);
    }
    e->script = script.u;
    e->nscript = script.n;
    free(acc.u);
    free(popd);
    free(path);
    return e;
nomem:
    free(acc.u);
    free(script.u);
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
    closure(w, 1, (Stk){ g->start, g->rules[g->start].start, BOTTOM });
    return w->err;
}

int cm_new(CGrammar *g, CVocab *v, CMatcher **out)
{
    if (!g || !v || !out)
        return ERR_ARG;
    *out = NULL;
    MCache *mc = mcache_of(g);
    VCache *vc = mc ? vcache_of(mc, v) : NULL;
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
    size_t idx = (size_t)(m->mc->base[top.rule] + top.state) * 2 + (size_t)bottom;
    MEntry *e = atomic_load_explicit(&m->vc->e[idx], memory_order_acquire);
    if (e)
        return e;
    frames_reset(&m->scratch);
    m->w.fr = &m->scratch;
    m->w.err = 0;
    MEntry *mine = entry_build(&m->w, m->v, (Stk){ top.rule, top.state, bottom ? BOTTOM : UNKNOWN }, m->tmp);
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
    for (int32_t k = 0; k < m->ncur; k++) {
        Stk top = m->cur[k];
        const MEntry *e = entry_get(m, top);
        if (!e)
            return ERR_NOMEM;
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
    int count = 0;
    for (size_t i = 0; i < words; i++)
        count += __builtin_popcount(mask[i]);
    return count;
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
    if (m->finished) {
        if (bad_at)
            *bad_at = 0;
        return n ? ERR_CONSTRAINT : 0;
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
