/*
 * runtime/radix.c — the prefix cache's radix tree and slot accounting.
 *
 * Owns the nodes and the counters described in radix.h. Every mutation that
 * needs memory allocates it first and commits afterwards, so a failure
 * leaves the tree, the pool and the caller's arrays untouched.
 *
 * Traversals walk with parent pointers (next node in pre-order = first
 * child, else the next sibling of the nearest ancestor that has one), so
 * they need neither recursion nor a stack however deep the tree gets.
 */
#include "runtime/radix.h"
#include "base/err.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct RadixNode {
    RadixNode *parent;          /* NULL for the root */
    RadixNode **child;          /* sorted by child[i]->key[0] */
    int n_child, cap_child;
    int32_t *key;               /* len tokens of the entering edge */
    int32_t *val;               /* len slots, one per key token */
    int len;
    int depth;                  /* tokens from the root to the end of this node */
    int lock;                   /* locks whose path passes through here */
    uint64_t access;            /* tree clock at the last touch */
};

struct RadixTree {
    KvPool *pool;
    RadixNode root;
    int cached, locked, held, nodes;
    uint64_t clock;
    uint64_t evicted;
    RadixNode **heap;           /* radix_evict's candidates, kept between calls */
    int heap_cap;
};


/* ---- nodes --------------------------------------------------------------- */

/* A detached node with room for len tokens and cap_child children. */
static RadixNode *node_new(int len, int cap_child)
{
    RadixNode *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->key = malloc(2 * (size_t)len * sizeof(int32_t));
    x->child = cap_child ? malloc((size_t)cap_child * sizeof *x->child) : NULL;
    if (!x->key || (cap_child && !x->child)) {
        free(x->key);
        free(x->child);
        free(x);
        return NULL;
    }
    x->val = x->key + len;
    x->len = len;
    x->cap_child = cap_child;
    return x;
}

static void node_destroy(RadixNode *x)
{
    free(x->key);
    free(x->child);
    free(x);
}

/* Index of the child whose edge starts with tok, or -(insertion point) - 1. */
static int child_find(const RadixNode *x, int32_t tok)
{
    int lo = 0, hi = x->n_child - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int32_t k = x->child[mid]->key[0];
        if (k == tok) return mid;
        if (k < tok) lo = mid + 1;
        else hi = mid - 1;
    }
    return -lo - 1;
}

static int child_reserve(RadixNode *x, int need)
{
    if (need <= x->cap_child) return 0;
    int cap = x->cap_child ? x->cap_child * 2 : 2;
    if (cap < need) cap = need;
    RadixNode **c = realloc(x->child, (size_t)cap * sizeof *c);
    if (!c) return ERR_NOMEM;
    x->child = c;
    x->cap_child = cap;
    return 0;
}

/* Capacity must have been reserved. */
static void child_add(RadixNode *x, RadixNode *c)
{
    int at = child_find(x, c->key[0]);
    at = -at - 1;
    memmove(x->child + at + 1, x->child + at, (size_t)(x->n_child - at) * sizeof *x->child);
    x->child[at] = c;
    x->n_child++;
    c->parent = x;
}

static void child_remove(RadixNode *x, const RadixNode *c)
{
    int at = child_find(x, c->key[0]);
    memmove(x->child + at, x->child + at + 1, (size_t)(x->n_child - at - 1) * sizeof *x->child);
    x->n_child--;
}

/* The node after x in pre-order, children by first token; NULL at the end. */
static RadixNode *next_preorder(const RadixNode *x)
{
    if (x->n_child) return x->child[0];
    while (x->parent) {
        const RadixNode *p = x->parent;
        int at = child_find(p, x->key[0]);
        if (at + 1 < p->n_child) return p->child[at + 1];
        x = p;
    }
    return NULL;
}

/*
 * Cuts c after its first k tokens (0 < k < c->len) using the detached node
 * m (room for k tokens and at least one child): m takes c's place under the
 * parent and c hangs under m with the remaining tokens.
 *
 *     p ── c[t0..tk..tL) ── kids   ==>   p ── m[t0..tk) ── c[tk..tL) ── kids
 */
static void split(RadixTree *t, RadixNode *c, int k, RadixNode *m)
{
    RadixNode *p = c->parent;
    memcpy(m->key, c->key, (size_t)k * sizeof(int32_t));
    memcpy(m->val, c->val, (size_t)k * sizeof(int32_t));
    m->len = k;
    m->depth = c->depth - c->len + k;
    m->lock = c->lock;
    m->access = c->access;
    m->parent = p;
    p->child[child_find(p, c->key[0])] = m;
    m->child[0] = c;
    m->n_child = 1;

    int rest = c->len - k;
    memmove(c->key, c->key + k, (size_t)rest * sizeof(int32_t));
    /* val follows key in the same block: move it down to key + rest */
    memmove(c->key + rest, c->val + k, (size_t)rest * sizeof(int32_t));
    c->val = c->key + rest;
    c->len = rest;
    c->parent = m;
    t->nodes++;
}

/* ---- the tree ------------------------------------------------------------ */

RadixTree *radix_new(KvPool *pool)
{
    if (!pool) return NULL;
    RadixTree *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->pool = pool;
    return t;
}

void radix_free(RadixTree *t)
{
    if (!t) return;
    /* Destructive post-order walk: descend to a leaf, free it, resume at its
     * parent. No allocation, so it cannot fail. */
    RadixNode *x = &t->root;
    while (x) {
        if (x->n_child) {
            x = x->child[x->n_child - 1];
            continue;
        }
        RadixNode *p = x->parent;
        if (!p) break;
        kv_release(t->pool, x->val, x->len);
        p->n_child--;
        node_destroy(x);
        x = p;
    }
    free(t->root.child);
    free(t->heap);
    free(t);
}

KvPool *radix_pool(const RadixTree *t) { return t->pool; }
RadixNode *radix_root(const RadixTree *t) { return (RadixNode *)&t->root; }
int radix_node_depth(const RadixNode *node) { return node->depth; }
int radix_node_lock_count(const RadixNode *node) { return node->lock; }
int radix_evictable(const RadixTree *t) { return t->cached; }

/*
 * Follows tokens[0..n) down from the root as far as the tree has them.
 * *at is the deepest node reached, *off how many tokens of its edge matched
 * (== (*at)->len when the match ends on a node boundary). Returns the number
 * of tokens matched.
 */
static int walk(RadixTree *t, const int32_t *tokens, int n, RadixNode **at, int *off)
{
    RadixNode *x = &t->root;
    int i = 0, k = 0;
    while (i < n) {
        int ci = child_find(x, tokens[i]);
        if (ci < 0) break;
        RadixNode *c = x->child[ci];
        k = 0;
        while (k < c->len && i + k < n && c->key[k] == tokens[i + k]) k++;
        x = c;
        i += k;
        if (k < c->len) {
            *at = x;
            *off = k;
            return i;
        }
    }
    *at = x;
    *off = x->len;
    return i;
}

static void touch(RadixTree *t, RadixNode *x)
{
    uint64_t now = ++t->clock;
    for (; x && x->parent; x = x->parent) x->access = now;
}

/* Slots of the path root..x into out[0..x->depth). */
static void path_slots(const RadixNode *x, int32_t *out)
{
    for (; x->parent; x = x->parent)
        memcpy(out + x->depth - x->len, x->val, (size_t)x->len * sizeof(int32_t));
}

int radix_match_prefix(RadixTree *t, const int32_t *tokens, int n, int32_t *out_slots,
                       RadixNode **last)
{
    if (!t || n < 0 || (n > 0 && !tokens)) return ERR_ARG;
    RadixNode *x;
    int off;
    int m = walk(t, tokens, n, &x, &off);
    if (off < x->len) {
        RadixNode *mid = node_new(off, 1);
        if (!mid) return ERR_NOMEM;
        split(t, x, off, mid);
        x = mid;
    }
    touch(t, x);
    if (out_slots) path_slots(x, out_slots);
    if (last) *last = x;
    return m;
}

int radix_insert(RadixTree *t, const int32_t *tokens, int32_t *slots, int n, RadixNode **last)
{
    if (!t || n < 0 || (n > 0 && (!tokens || !slots))) return ERR_ARG;
    for (int i = 0; i < n; i++)
        if (slots[i] < 0 || slots[i] >= t->pool->n_slots) return ERR_ARG;

    RadixNode *x;
    int off;
    int m = walk(t, tokens, n, &x, &off);

    /* Allocate everything first: at most one split and one new leaf. */
    RadixNode *mid = NULL, *leaf = NULL;
    if (off < x->len) {
        mid = node_new(off, m < n ? 2 : 1);
        if (!mid) return ERR_NOMEM;
    }
    if (m < n) {
        leaf = node_new(n - m, 0);
        if (!leaf || (!mid && child_reserve(x, x->n_child + 1))) {
            if (leaf) node_destroy(leaf);
            if (mid) node_destroy(mid);
            return ERR_NOMEM;
        }
    }

    /* Commit. */
    if (mid) {
        split(t, x, off, mid);
        x = mid;
    }
    /* The already-present part: the tree's slots win. */
    for (RadixNode *y = x; y->parent; y = y->parent) {
        int base = y->depth - y->len;
        for (int j = 0; j < y->len; j++) {
            int32_t *s = &slots[base + j];
            if (*s != y->val[j]) {
                kv_release(t->pool, s, 1);
                t->held--;
                *s = y->val[j];
            }
        }
    }
    if (leaf) {
        memcpy(leaf->key, tokens + m, (size_t)(n - m) * sizeof(int32_t));
        memcpy(leaf->val, slots + m, (size_t)(n - m) * sizeof(int32_t));
        leaf->depth = n;
        child_add(x, leaf);
        t->nodes++;
        t->held -= n - m;
        t->cached += n - m;
        x = leaf;
    }
    touch(t, x);
    if (last) *last = x;
    return m;
}

/* ---- locks --------------------------------------------------------------- */

void radix_lock(RadixTree *t, RadixNode *node)
{
    for (RadixNode *x = node; x && x->parent; x = x->parent) {
        if (x->lock == 0) {
            t->cached -= x->len;
            t->locked += x->len;
        }
        x->lock++;
    }
}

int radix_unlock(RadixTree *t, RadixNode *node)
{
    if (!node) return ERR_ARG;
    if (!node->parent) return 0;
    /* A lock through node passed every ancestor, so checking node suffices. */
    if (node->lock <= 0) return ERR_UNLOCKED;
    for (RadixNode *x = node; x->parent; x = x->parent) {
        x->lock--;
        if (x->lock == 0) {
            t->locked -= x->len;
            t->cached += x->len;
        }
    }
    return 0;
}

/* ---- slots and eviction -------------------------------------------------- */

/* Older first; at equal times the deeper node first (a child before the
 * parent it shares a touch with). */
static int older(const RadixNode *a, const RadixNode *b)
{
    if (a->access != b->access) return a->access < b->access;
    return a->depth > b->depth;
}

static void heap_push(RadixNode **h, int *n, RadixNode *x)
{
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!older(x, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static RadixNode *heap_pop(RadixNode **h, int *n)
{
    RadixNode *top = h[0];
    RadixNode *x = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && older(h[c + 1], h[c])) c++;
        if (!older(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

static int evictable_leaf(const RadixNode *x)
{
    return x->parent && x->n_child == 0 && x->lock == 0;
}

int radix_evict(RadixTree *t, int n)
{
    if (!t) return ERR_ARG;
    if (n <= 0 || t->cached == 0) return 0;
    /* Every candidate is a distinct node, so the heap never outgrows the
     * node count. */
    if (t->heap_cap < t->nodes) {
        RadixNode **h = realloc(t->heap, (size_t)t->nodes * sizeof *h);
        if (!h) return ERR_NOMEM;
        t->heap = h;
        t->heap_cap = t->nodes;
    }
    int nh = 0;
    for (RadixNode *x = next_preorder(&t->root); x; x = next_preorder(x))
        if (evictable_leaf(x)) heap_push(t->heap, &nh, x);

    int freed = 0;
    while (freed < n && nh > 0) {
        RadixNode *x = heap_pop(t->heap, &nh);
        RadixNode *p = x->parent;
        kv_release(t->pool, x->val, x->len);
        freed += x->len;
        t->cached -= x->len;
        t->evicted += (uint64_t)x->len;
        child_remove(p, x);
        node_destroy(x);
        t->nodes--;
        if (evictable_leaf(p)) heap_push(t->heap, &nh, p);
    }
    return freed;
}

int radix_alloc_slots(RadixTree *t, int n, int32_t *out)
{
    if (!t || n < 0 || (n > 0 && !out)) return ERR_ARG;
    if (n == 0) return 0;
    int nfree = kv_n_free(t->pool);
    if (nfree < n) {
        if ((long)nfree + t->cached < n) return ERR_NO_SLOTS;
        int r = radix_evict(t, n - nfree);
        if (r < 0) return r;
    }
    if (kv_alloc(t->pool, n, out) != 0) return ERR_CORRUPT;   /* cannot happen: checked above */
    t->held += n;
    return 0;
}

void radix_free_slots(RadixTree *t, const int32_t *slots, int n)
{
    if (!t || n <= 0) return;
    kv_release(t->pool, slots, n);
    t->held -= n;
}

void radix_stats(const RadixTree *t, RadixStats *out)
{
    memset(out, 0, sizeof *out);
    out->total = t->pool->n_slots;
    out->free = kv_n_free(t->pool);
    out->cached = t->cached;
    out->locked = t->locked;
    out->held = t->held;
    out->in_use = t->locked + t->held;
    out->nodes = t->nodes;
    out->evicted = t->evicted;
}

/* ---- checks and iteration ------------------------------------------------ */

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        err_vfmt(err, cap, fmt, ap);
        va_end(ap);
    }
    return ERR_CORRUPT;
}

int radix_check(const RadixTree *t, char *err, size_t errcap)
{
    const KvPool *pool = t->pool;
    int total = pool->n_slots;
    if (kv_check(pool) != 0) return fail(err, errcap, "kv pool free list inconsistent");
    /* 0 unseen, 1 free, 2 in the tree */
    unsigned char *seen = calloc((size_t)total + 1, 1);
    if (!seen) return fail(err, errcap, "out of memory in radix_check");
    int rc = 0;
    /* The free list is internal to the pool, but reading it is the only way
     * to prove no tree slot is also free. */
    for (int i = 0; i < pool->n_free; i++) seen[pool->free_slots[i]] = 1;

    if (t->root.len != 0 || t->root.depth != 0 || t->root.lock != 0) {
        rc = fail(err, errcap, "root has tokens or locks");
        goto out;
    }
    int cached = 0, locked = 0, nodes = 0;
    for (const RadixNode *x = &t->root; x; x = next_preorder(x)) {
        const RadixNode *p = x->parent;
        if (p) {
            nodes++;
            if (x->len <= 0) { rc = fail(err, errcap, "node with an empty edge"); goto out; }
            if (x->depth != p->depth + x->len) { rc = fail(err, errcap, "node depth %d != parent %d + edge %d", x->depth, p->depth, x->len); goto out; }
            if (p->parent && p->access < x->access) { rc = fail(err, errcap, "parent older than its child (depth %d)", x->depth); goto out; }
            if (x->lock < 0) { rc = fail(err, errcap, "negative lock count"); goto out; }
            if (x->lock) locked += x->len;
            else cached += x->len;
            for (int j = 0; j < x->len; j++) {
                int32_t s = x->val[j];
                if (s < 0 || s >= total) { rc = fail(err, errcap, "slot %d out of range", s); goto out; }
                if (seen[s] == 1) { rc = fail(err, errcap, "slot %d is both free and in the tree", s); goto out; }
                if (seen[s] == 2) { rc = fail(err, errcap, "slot %d twice in the tree", s); goto out; }
                seen[s] = 2;
            }
        }
        long child_locks = 0;
        for (int i = 0; i < x->n_child; i++) {
            const RadixNode *c = x->child[i];
            if (c->parent != x) { rc = fail(err, errcap, "child's parent pointer is wrong"); goto out; }
            if (i > 0 && x->child[i - 1]->key[0] >= c->key[0]) { rc = fail(err, errcap, "children not sorted / duplicate first token"); goto out; }
            child_locks += c->lock;
        }
        if (p && x->lock < child_locks) { rc = fail(err, errcap, "lock count %d below children's %ld", x->lock, child_locks); goto out; }
    }
    if (cached != t->cached) { rc = fail(err, errcap, "cached counter %d, recount %d", t->cached, cached); goto out; }
    if (locked != t->locked) { rc = fail(err, errcap, "locked counter %d, recount %d", t->locked, locked); goto out; }
    if (nodes != t->nodes) { rc = fail(err, errcap, "node counter %d, recount %d", t->nodes, nodes); goto out; }
    if (t->held < 0) { rc = fail(err, errcap, "held counter negative (%d)", t->held); goto out; }
    if (pool->n_free + cached + locked + t->held != total) {
        rc = fail(err, errcap, "free %d + cached %d + locked %d + held %d != total %d",
                  pool->n_free, cached, locked, t->held, total);
        goto out;
    }
out:
    free(seen);
    return rc;
}

int radix_visit(const RadixTree *t, radix_visit_fn fn, void *ud)
{
    int cap = 0;
    int32_t *tok = NULL, *val = NULL;
    int rc = 0;
    for (const RadixNode *x = next_preorder(&t->root); x; x = next_preorder(x)) {
        if (x->depth > cap) {
            int ncap = cap ? cap : 64;
            while (ncap < x->depth) ncap *= 2;
            int32_t *a = realloc(tok, (size_t)ncap * sizeof *a);
            if (!a) { rc = ERR_NOMEM; break; }
            tok = a;
            int32_t *b = realloc(val, (size_t)ncap * sizeof *b);
            if (!b) { rc = ERR_NOMEM; break; }
            val = b;
            cap = ncap;
        }
        /* Pre-order: the ancestors' part of the buffers is already right. */
        int base = x->depth - x->len;
        memcpy(tok + base, x->key, (size_t)x->len * sizeof *tok);
        memcpy(val + base, x->val, (size_t)x->len * sizeof *val);
        rc = fn(ud, x, tok, val, x->depth, x->len);
        if (rc) break;
    }
    free(tok);
    free(val);
    return rc;
}
