/* tests/unit/test_radix.c — the prefix cache: hand-written cases for splits,
 * inserts, locks and eviction order, then long random runs against a naive
 * reference (an uncompressed per-token trie) with the slot accounting and
 * every match result checked at each step. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/radix.h"

static KvPool *mkpool(int n)
{
    char err[256] = "";
    KvPool *p = kv_new(1, n, 1, K_DTYPE_F32, err, sizeof err);
    cr_assert_not_null(p, "kv_new: %s", err);
    return p;
}

static void check(const RadixTree *t)
{
    char err[256] = "";
    int rc = radix_check(t, err, sizeof err);
    cr_assert_eq(rc, 0, "radix_check: %s", err);
    RadixStats s;
    radix_stats(t, &s);
    cr_assert_eq(s.free + s.cached + s.locked + s.held, s.total);
    cr_assert_eq(s.in_use, s.locked + s.held);
}

/* Allocates n held slots and inserts tokens with them; returns the node. */
static RadixNode *put(RadixTree *t, const int32_t *tok, int n, int32_t *slots_out, int expect_m)
{
    int32_t slots[64];
    cr_assert(n <= 64);
    cr_assert_eq(radix_alloc_slots(t, n, slots), 0);
    RadixNode *last = NULL;
    int m = radix_insert(t, tok, slots, n, &last);
    cr_assert_eq(m, expect_m, "insert returned %d, expected %d", m, expect_m);
    if (slots_out) memcpy(slots_out, slots, (size_t)n * sizeof *slots);
    check(t);
    return last;
}

static int count_nodes(const RadixTree *t)
{
    RadixStats s;
    radix_stats(t, &s);
    return s.nodes;
}

Test(radix, empty_tree_matches_nothing)
{
    KvPool *p = mkpool(16);
    RadixTree *t = radix_new(p);
    int32_t tok[3] = {1, 2, 3}, out[3];
    RadixNode *last = NULL;
    cr_assert_eq(radix_match_prefix(t, tok, 3, out, &last), 0);
    cr_assert_eq(last, radix_root(t));
    cr_assert_eq(radix_node_depth(last), 0);
    RadixStats s;
    radix_stats(t, &s);
    cr_assert_eq(s.free, 16);
    cr_assert_eq(s.cached + s.locked + s.held, 0);
    check(t);
    radix_free(t);
    kv_free(p);
}

Test(radix, split_in_the_middle_of_an_edge)
{
    KvPool *p = mkpool(32);
    RadixTree *t = radix_new(p);
    int32_t a[5] = {10, 20, 30, 40, 50}, sa[5];
    put(t, a, 5, sa, 0);
    cr_assert_eq(count_nodes(t), 1);

    /* Diverges after 3 tokens: the match stops inside the edge and splits it. */
    int32_t q[4] = {10, 20, 30, 99}, out[4] = {-1, -1, -1, -1};
    RadixNode *last = NULL;
    cr_assert_eq(radix_match_prefix(t, q, 4, out, &last), 3);
    cr_assert_eq(count_nodes(t), 2);
    cr_assert_eq(radix_node_depth(last), 3);
    for (int i = 0; i < 3; i++) cr_assert_eq(out[i], sa[i]);
    check(t);

    /* The lower half still matches the whole sequence with the same slots. */
    int32_t full[5];
    cr_assert_eq(radix_match_prefix(t, a, 5, full, &last), 5);
    cr_assert_eq(radix_node_depth(last), 5);
    cr_assert_arr_eq(full, sa, sizeof sa);

    /* A match that ends exactly at a node boundary does not split. */
    cr_assert_eq(radix_match_prefix(t, a, 3, NULL, &last), 3);
    cr_assert_eq(count_nodes(t), 2);

    /* A prefix of the upper node splits again. */
    cr_assert_eq(radix_match_prefix(t, a, 1, out, &last), 1);
    cr_assert_eq(count_nodes(t), 3);
    cr_assert_eq(out[0], sa[0]);
    check(t);

    /* Inserting the diverging sequence adds one leaf under the [30] node. */
    int32_t sq[4];
    RadixNode *leaf = put(t, q, 4, sq, 3);
    cr_assert_eq(count_nodes(t), 4);
    cr_assert_eq(radix_node_depth(leaf), 4);
    for (int i = 0; i < 3; i++) cr_assert_eq(sq[i], sa[i], "shared prefix keeps the tree's slots");
    RadixStats s;
    radix_stats(t, &s);
    cr_assert_eq(s.cached, 6);
    cr_assert_eq(s.held, 0);
    cr_assert_eq(s.free, 32 - 6);
    radix_free(t);
    cr_assert_eq(kv_n_free(p), 32);
    kv_free(p);
}

Test(radix, insert_that_diverges_mid_edge_splits_once)
{
    KvPool *p = mkpool(32);
    RadixTree *t = radix_new(p);
    int32_t a[5] = {1, 2, 3, 4, 5}, b[5] = {1, 2, 3, 7, 8};
    put(t, a, 5, NULL, 0);
    put(t, b, 5, NULL, 3);
    cr_assert_eq(count_nodes(t), 3);    /* [1 2 3] -> [4 5], [7 8] */
    int32_t c[2] = {1, 2};
    RadixNode *n = put(t, c, 2, NULL, 2); /* ends inside [1 2 3]: split, no leaf */
    cr_assert_eq(count_nodes(t), 4);
    cr_assert_eq(radix_node_depth(n), 2);
    RadixStats s;
    radix_stats(t, &s);
    cr_assert_eq(s.cached, 7);
    cr_assert_eq(s.free, 25);
    radix_free(t);
    kv_free(p);
}

Test(radix, insert_extending_a_leaf)
{
    KvPool *p = mkpool(32);
    RadixTree *t = radix_new(p);
    int32_t a[3] = {7, 8, 9}, sa[3];
    RadixNode *la = put(t, a, 3, sa, 0);

    /* A request that matched [7 8 9] and generated two more tokens. */
    int32_t b[5] = {7, 8, 9, 1, 2}, sb[5];
    RadixNode *node;
    cr_assert_eq(radix_match_prefix(t, b, 5, sb, &node), 3);
    cr_assert_eq(node, la);
    radix_lock(t, node);
    cr_assert_eq(radix_alloc_slots(t, 2, sb + 3), 0);
    check(t);
    RadixStats s;
    radix_stats(t, &s);
    cr_assert_eq(s.locked, 3);
    cr_assert_eq(s.held, 2);

    RadixNode *lb;
    cr_assert_eq(radix_insert(t, b, sb, 5, &lb), 3);
    cr_assert_eq(radix_unlock(t, node), 0);
    check(t);
    cr_assert_eq(count_nodes(t), 2);   /* the old leaf got a child, no split */
    cr_assert_eq(radix_node_depth(lb), 5);
    for (int i = 0; i < 3; i++) cr_assert_eq(sb[i], sa[i]);
    radix_stats(t, &s);
    cr_assert_eq(s.cached, 5);
    cr_assert_eq(s.locked + s.held, 0);
    radix_free(t);
    kv_free(p);
}

Test(radix, duplicate_slots_go_back_to_the_pool)
{
    KvPool *p = mkpool(16);
    RadixTree *t = radix_new(p);
    int32_t a[3] = {1, 2, 3}, sa[3];
    put(t, a, 3, sa, 0);
    /* The same tokens computed again elsewhere (cache off for that request). */
    int32_t b[4] = {1, 2, 3, 4}, sb[4], orig[4];
    cr_assert_eq(radix_alloc_slots(t, 4, sb), 0);
    memcpy(orig, sb, sizeof sb);
    RadixStats s;
    radix_stats(t, &s);
    cr_assert_eq(s.free, 16 - 7);
    cr_assert_eq(radix_insert(t, b, sb, 4, NULL), 3);
    check(t);
    for (int i = 0; i < 3; i++) cr_assert_eq(sb[i], sa[i], "rewritten to the tree's slot");
    cr_assert_eq(sb[3], orig[3]);
    radix_stats(t, &s);
    cr_assert_eq(s.free, 16 - 4);
    cr_assert_eq(s.held, 0);
    cr_assert_eq(s.cached, 4);
    /* Inserting a sequence that is wholly present changes nothing but slots. */
    int32_t sc[2];
    cr_assert_eq(radix_alloc_slots(t, 2, sc), 0);
    cr_assert_eq(radix_insert(t, b, sc, 2, NULL), 2);
    check(t);
    radix_stats(t, &s);
    cr_assert_eq(s.free, 16 - 4);
    radix_free(t);
    kv_free(p);
}

Test(radix, eviction_order_is_lru_and_by_whole_leaves)
{
    KvPool *p = mkpool(12);
    RadixTree *t = radix_new(p);
    int32_t a[3] = {1, 1, 1}, b[3] = {2, 2, 2}, c[3] = {3, 3, 3};
    put(t, a, 3, NULL, 0);
    put(t, b, 3, NULL, 0);
    put(t, c, 3, NULL, 0);
    /* Touch a: the oldest is now b, then c, then a. */
    cr_assert_eq(radix_match_prefix(t, a, 3, NULL, NULL), 3);
    cr_assert_eq(radix_evict(t, 1), 3, "a whole leaf goes");
    check(t);
    cr_assert_eq(radix_match_prefix(t, b, 3, NULL, NULL), 0);
    cr_assert_eq(radix_match_prefix(t, c, 3, NULL, NULL), 3);   /* c is now newest */
    cr_assert_eq(radix_evict(t, 2), 3);
    cr_assert_eq(radix_match_prefix(t, a, 3, NULL, NULL), 0);
    cr_assert_eq(radix_match_prefix(t, c, 3, NULL, NULL), 3);
    check(t);
    radix_free(t);
    kv_free(p);
}

Test(radix, parent_left_childless_becomes_a_candidate)
{
    KvPool *p = mkpool(16);
    RadixTree *t = radix_new(p);
    int32_t a[5] = {1, 2, 3, 4, 5}, b[5] = {1, 2, 3, 8, 9}, z[2] = {7, 7};
    put(t, a, 5, NULL, 0);
    put(t, b, 5, NULL, 3);
    put(t, z, 2, NULL, 0);   /* newest */
    /* Oldest leaf [4 5], then [8 9]; then their parent [1 2 3] (touched with
     * b, older than z). */
    cr_assert_eq(radix_evict(t, 4), 4);
    RadixStats s;
    radix_stats(t, &s);
    cr_assert_eq(s.cached, 5);          /* [1 2 3] and [7 7] (no match here: it would touch) */
    cr_assert_eq(s.nodes, 2);
    check(t);
    cr_assert_eq(radix_evict(t, 1), 3);
    cr_assert_eq(radix_match_prefix(t, a, 5, NULL, NULL), 0);
    cr_assert_eq(radix_match_prefix(t, z, 2, NULL, NULL), 2);
    radix_stats(t, &s);
    cr_assert_eq(s.cached, 2);
    cr_assert_eq(s.evicted, 7);
    radix_free(t);
    kv_free(p);
}

Test(radix, locked_paths_survive_eviction)
{
    KvPool *p = mkpool(16);
    RadixTree *t = radix_new(p);
    int32_t a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 5, 6};
    RadixNode *la = put(t, a, 4, NULL, 0);
    put(t, b, 4, NULL, 2);
    radix_lock(t, la);
    cr_assert_eq(radix_node_lock_count(la), 1);
    RadixStats s;
    radix_stats(t, &s);
    cr_assert_eq(s.locked, 4);      /* [1 2] and [3 4] */
    cr_assert_eq(s.cached, 2);      /* [5 6] */
    cr_assert_eq(radix_evictable(t), 2);
    cr_assert_eq(radix_evict(t, INT_MAX), 2);
    check(t);
    cr_assert_eq(radix_match_prefix(t, a, 4, NULL, NULL), 4);
    cr_assert_eq(radix_evict(t, INT_MAX), 0);
    /* Two locks need two unlocks. */
    radix_lock(t, la);
    cr_assert_eq(radix_unlock(t, la), 0);
    cr_assert_eq(radix_evict(t, INT_MAX), 0);
    cr_assert_eq(radix_unlock(t, la), 0);
    cr_assert_eq(radix_unlock(t, la), ERR_UNLOCKED);
    check(t);
    cr_assert_eq(radix_evict(t, INT_MAX), 4);
    radix_stats(t, &s);
    cr_assert_eq(s.free, 16);
    cr_assert_eq(s.nodes, 0);
    /* Unlocking the root is a no-op. */
    cr_assert_eq(radix_unlock(t, radix_root(t)), 0);
    radix_free(t);
    kv_free(p);
}

Test(radix, lock_survives_a_split_above_it)
{
    KvPool *p = mkpool(16);
    RadixTree *t = radix_new(p);
    int32_t a[6] = {1, 2, 3, 4, 5, 6};
    RadixNode *la = put(t, a, 6, NULL, 0);
    radix_lock(t, la);
    /* A match inside the locked edge splits it; the pointer keeps its end. */
    cr_assert_eq(radix_match_prefix(t, a, 2, NULL, NULL), 2);
    cr_assert_eq(radix_node_depth(la), 6);
    check(t);
    RadixStats s;
    radix_stats(t, &s);
    cr_assert_eq(s.locked, 6);
    cr_assert_eq(radix_unlock(t, la), 0);
    radix_stats(t, &s);
    cr_assert_eq(s.cached, 6);
    check(t);
    radix_free(t);
    kv_free(p);
}

Test(radix, alloc_evicts_or_fails_without_side_effects)
{
    KvPool *p = mkpool(10);
    RadixTree *t = radix_new(p);
    int32_t a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    RadixNode *la = put(t, a, 4, NULL, 0);
    put(t, b, 4, NULL, 0);
    radix_lock(t, la);
    int32_t out[10];
    /* free 2 + evictable 4 < 7: refused, nothing evicted */
    cr_assert_eq(radix_alloc_slots(t, 7, out), ERR_NO_SLOTS);
    RadixStats s;
    radix_stats(t, &s);
    cr_assert_eq(s.cached, 4);
    cr_assert_eq(s.free, 2);
    cr_assert_eq(s.evicted, 0);
    /* 6 fits by evicting b */
    cr_assert_eq(radix_alloc_slots(t, 6, out), 0);
    radix_stats(t, &s);
    cr_assert_eq(s.held, 6);
    cr_assert_eq(s.free, 0);
    cr_assert_eq(s.locked, 4);
    check(t);
    radix_free_slots(t, out, 6);
    radix_stats(t, &s);
    cr_assert_eq(s.held, 0);
    cr_assert_eq(s.free, 6);
    cr_assert_eq(radix_unlock(t, la), 0);
    check(t);
    cr_assert_eq(radix_alloc_slots(t, -1, out), ERR_ARG);
    cr_assert_eq(radix_alloc_slots(t, 0, out), 0);
    cr_assert_str_eq(err_str(ERR_NO_SLOTS), "not enough KV slots (free + evictable)");
    radix_free(t);
    kv_free(p);
}

Test(radix, insert_rejects_bad_slots)
{
    KvPool *p = mkpool(4);
    RadixTree *t = radix_new(p);
    int32_t a[2] = {1, 2}, s[2] = {0, 4};
    cr_assert_eq(radix_insert(t, a, s, 2, NULL), ERR_ARG);
    cr_assert_eq(radix_match_prefix(t, a, -1, NULL, NULL), ERR_ARG);
    check(t);
    radix_free(t);
    kv_free(p);
}

typedef struct {
    int n;
    int32_t tok[8][8];
    int len[8];
} Seen;

static int collect(void *ud, const RadixNode *node, const int32_t *tokens, const int32_t *slots,
                   int depth, int edge)
{
    Seen *s = ud;
    (void)node; (void)slots; (void)edge;
    memcpy(s->tok[s->n], tokens, (size_t)depth * sizeof *tokens);
    s->len[s->n++] = depth;
    return 0;
}

Test(radix, visit_is_preorder_by_first_token)
{
    KvPool *p = mkpool(32);
    RadixTree *t = radix_new(p);
    int32_t a[3] = {5, 6, 7}, b[3] = {5, 6, 1}, c[2] = {2, 3};
    put(t, a, 3, NULL, 0);
    put(t, b, 3, NULL, 2);
    put(t, c, 2, NULL, 0);
    Seen s = {0};
    cr_assert_eq(radix_visit(t, collect, &s), 0);
    cr_assert_eq(s.n, 4);
    int32_t want[4][3] = {{2, 3}, {5, 6}, {5, 6, 1}, {5, 6, 7}};
    int wlen[4] = {2, 2, 3, 3};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(s.len[i], wlen[i]);
        cr_assert_arr_eq(s.tok[i], want[i], (size_t)wlen[i] * sizeof(int32_t));
    }
    radix_free(t);
    kv_free(p);
}

/* ==== property test against a naive reference ============================== */

/*
 * The reference is an uncompressed trie: one entry per cached token (its
 * prefix is the path of entries to the root), with the slot, the last
 * access and the lock count of that token. Token values come from a small
 * alphabet so that sequences share prefixes often; they are spread over the
 * id space so child ordering is exercised.
 */
#define ALPHA 4
static const int32_t tokval[ALPHA] = {49151, 3, 1000, 0};

enum { S_FREE, S_TREE, S_HELD };

typedef struct {
    int parent;        /* -1: child of the root */
    int a;             /* alphabet index */
    int32_t slot;
    uint64_t access;
    int lock;
    int alive;
    int child[ALPHA];  /* -1 if none */
} Ent;

typedef struct {
    int total;
    Ent *e;
    int ne, cap;
    int *free_ent;
    int nfree_ent;
    int root_child[ALPHA];
    unsigned char *state;   /* per slot */
    int *slot_ent;          /* per slot, when S_TREE */
    uint64_t clock;
} Ref;

static void ref_init(Ref *r, int total)
{
    memset(r, 0, sizeof *r);
    r->total = total;
    r->cap = total + 1;
    r->e = calloc((size_t)r->cap, sizeof *r->e);
    r->free_ent = calloc((size_t)r->cap, sizeof *r->free_ent);
    r->state = calloc((size_t)total, 1);
    r->slot_ent = calloc((size_t)total, sizeof *r->slot_ent);
    for (int i = 0; i < ALPHA; i++) r->root_child[i] = -1;
}

static void ref_fini(Ref *r)
{
    free(r->e);
    free(r->free_ent);
    free(r->state);
    free(r->slot_ent);
}

static int *ref_childp(Ref *r, int parent, int a)
{
    return parent < 0 ? &r->root_child[a] : &r->e[parent].child[a];
}

/* Entries along the longest cached prefix of seq; returns its length. */
static int ref_walk(Ref *r, const int *seq, int n, int *path)
{
    int cur = -1, m = 0;
    while (m < n) {
        int c = *ref_childp(r, cur, seq[m]);
        if (c < 0) break;
        path[m++] = c;
        cur = c;
    }
    return m;
}

static int ref_count(const Ref *r, int st)
{
    int n = 0;
    for (int i = 0; i < r->total; i++) n += r->state[i] == st;
    return n;
}

static int ref_evictable(const Ref *r)
{
    int n = 0;
    for (int i = 0; i < r->ne; i++) n += r->e[i].alive && r->e[i].lock == 0;
    return n;
}

static int ref_new_ent(Ref *r)
{
    if (r->nfree_ent) return r->free_ent[--r->nfree_ent];
    cr_assert(r->ne < r->cap, "more cached tokens than slots");
    return r->ne++;
}

typedef struct {
    int seq[64];
    int len;                /* tokens so far */
    int32_t slots[64];
    int tree_len;           /* slots[0..tree_len) are the tree's, the rest held */
    RadixNode *node;        /* locked, depth tree_len */
} Req;

typedef struct {
    RadixTree *t;
    KvPool *pool;
    Ref r;
    Req req[8];
    int nreq;
    int maxlen;
    uint64_t rng;
    /* scratch */
    unsigned char *in_tree;
    long steps, evictions, refusals, hits;
} World;

static uint32_t rnd(World *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return (uint32_t)(w->rng >> 11);
}

static int rnd_in(World *w, int lo, int hi) { return lo + (int)(rnd(w) % (uint32_t)(hi - lo + 1)); }

static void to_tokens(const int *seq, int n, int32_t *tok)
{
    for (int i = 0; i < n; i++) tok[i] = tokval[seq[i]];
}

static int mark_tree_slot(void *ud, const RadixNode *node, const int32_t *tokens,
                          const int32_t *slots, int depth, int edge)
{
    World *w = ud;
    (void)node; (void)tokens;
    for (int i = depth - edge; i < depth; i++) w->in_tree[slots[i]] = 1;
    return 0;
}

/*
 * After a tree call that may have evicted: find the entries whose slot left
 * the tree, check they were evictable and that the choice was LRU, drop them
 * from the reference. Returns how many were evicted.
 */
static int sync_evictions(World *w)
{
    Ref *r = &w->r;
    memset(w->in_tree, 0, (size_t)r->total);
    cr_assert_eq(radix_visit(w->t, mark_tree_slot, w), 0);
    int freed = 0;
    uint64_t newest_evicted = 0;
    for (int i = 0; i < r->ne; i++) {
        Ent *e = &r->e[i];
        if (!e->alive || w->in_tree[e->slot]) continue;
        cr_assert_eq(e->lock, 0, "a locked token was evicted");
        for (int a = 0; a < ALPHA; a++)
            if (e->child[a] >= 0) cr_assert(!w->in_tree[r->e[e->child[a]].slot], "evicted a token but kept its continuation");
        if (e->access > newest_evicted) newest_evicted = e->access;
        freed++;
    }
    if (!freed) return 0;
    for (int i = 0; i < r->ne; i++) {
        Ent *e = &r->e[i];
        if (!e->alive || w->in_tree[e->slot]) continue;
        e->alive = 0;
        r->state[e->slot] = S_FREE;
        *ref_childp(r, e->parent, e->a) = -1;
        r->free_ent[r->nfree_ent++] = i;
    }
    /* LRU: every surviving evictable leaf is at least as recent as anything
     * evicted. */
    for (int i = 0; i < r->ne; i++) {
        Ent *e = &r->e[i];
        if (!e->alive || e->lock) continue;
        int leaf = 1;
        for (int a = 0; a < ALPHA; a++) leaf &= e->child[a] < 0;
        if (leaf) cr_assert_geq(e->access, newest_evicted, "evicted a leaf newer than a surviving one");
    }
    w->evictions += freed;
    return freed;
}

/* Compares the tree with the reference token by token. */
typedef struct {
    World *w;
    int path[128];
    int count;
} Cmp;

static int cmp_node(void *ud, const RadixNode *node, const int32_t *tokens, const int32_t *slots,
                    int depth, int edge)
{
    Cmp *c = ud;
    Ref *r = &c->w->r;
    for (int p = depth - edge; p < depth; p++) {
        int a = -1;
        for (int k = 0; k < ALPHA; k++)
            if (tokval[k] == tokens[p]) a = k;
        cr_assert_geq(a, 0);
        int e = *ref_childp(r, p ? c->path[p - 1] : -1, a);
        cr_assert_geq(e, 0, "tree has a token the reference lacks (depth %d)", p + 1);
        cr_assert_eq(r->e[e].slot, slots[p], "slot differs at depth %d", p + 1);
        cr_assert_eq(r->e[e].lock, radix_node_lock_count(node), "lock count differs at depth %d", p + 1);
        c->path[p] = e;
        c->count++;
    }
    return 0;
}

static void compare(World *w)
{
    Ref *r = &w->r;
    check(w->t);
    RadixStats s;
    radix_stats(w->t, &s);
    int cached = 0, locked = 0, alive = 0;
    for (int i = 0; i < r->ne; i++) {
        if (!r->e[i].alive) continue;
        alive++;
        if (r->e[i].lock) locked++;
        else cached++;
    }
    cr_assert_eq(s.free, ref_count(r, S_FREE));
    cr_assert_eq(s.held, ref_count(r, S_HELD));
    cr_assert_eq(s.cached, cached);
    cr_assert_eq(s.locked, locked);
    cr_assert_eq(ref_count(r, S_TREE), alive);
    Cmp c = {.w = w};
    cr_assert_eq(radix_visit(w->t, cmp_node, &c), 0);
    cr_assert_eq(c.count, alive, "the reference has tokens the tree lacks");
}

static void ref_touch(Ref *r, const int *path, int m)
{
    r->clock++;
    for (int i = 0; i < m; i++) r->e[path[i]].access = r->clock;
}

static void ref_lock(Ref *r, const int *seq, int depth, int delta)
{
    int path[64];
    cr_assert_eq(ref_walk(r, seq, depth, path), depth);
    for (int i = 0; i < depth; i++) {
        r->e[path[i]].lock += delta;
        cr_assert_geq(r->e[path[i]].lock, 0);
    }
}

/* Match on both; returns m. */
static int do_match(World *w, const int *seq, int n, int32_t *slots, RadixNode **node)
{
    int32_t tok[64];
    to_tokens(seq, n, tok);
    int path[64];
    int m = ref_walk(&w->r, seq, n, path);
    ref_touch(&w->r, path, m);
    int got = radix_match_prefix(w->t, tok, n, slots, node);
    cr_assert_eq(got, m, "match length %d, reference %d", got, m);
    for (int i = 0; i < m; i++) cr_assert_eq(slots[i], w->r.e[path[i]].slot);
    cr_assert_eq(radix_node_depth(*node), m);
    if (m) w->hits++;
    return m;
}

/* Insert on both: slots[i] for i >= tree_len must be held. */
static int do_insert(World *w, const int *seq, int n, int32_t *slots, RadixNode **node)
{
    Ref *r = &w->r;
    int32_t tok[64], expect[64];
    to_tokens(seq, n, tok);
    int path[64];
    int m = ref_walk(r, seq, n, path);
    memcpy(expect, slots, (size_t)n * sizeof *slots);
    for (int i = 0; i < m; i++) {
        int32_t ts = r->e[path[i]].slot;
        if (expect[i] != ts) {
            cr_assert_eq(r->state[expect[i]], S_HELD, "duplicate slot was not held");
            r->state[expect[i]] = S_FREE;
            expect[i] = ts;
        }
    }
    int parent = m ? path[m - 1] : -1;
    for (int i = m; i < n; i++) {
        cr_assert_eq(r->state[slots[i]], S_HELD, "inserted slot was not held");
        int e = ref_new_ent(r);
        Ent *x = &r->e[e];
        memset(x, 0, sizeof *x);
        x->parent = parent;
        x->a = seq[i];
        x->slot = slots[i];
        x->alive = 1;
        for (int a = 0; a < ALPHA; a++) x->child[a] = -1;
        *ref_childp(r, parent, seq[i]) = e;
        r->state[slots[i]] = S_TREE;
        r->slot_ent[slots[i]] = e;
        path[i] = e;
        parent = e;
    }
    ref_touch(r, path, n);
    int got = radix_insert(w->t, tok, slots, n, node);
    cr_assert_eq(got, m, "insert returned %d, reference %d", got, m);
    cr_assert_arr_eq(slots, expect, (size_t)n * sizeof *slots);
    cr_assert_eq(radix_node_depth(*node), n);
    return m;
}

/* Alloc on both. Returns 0 or ERR_NO_SLOTS. */
static int do_alloc(World *w, int n, int32_t *out)
{
    Ref *r = &w->r;
    int nfree = ref_count(r, S_FREE), evictable = ref_evictable(r);
    int rc = radix_alloc_slots(w->t, n, out);
    if (nfree + evictable < n) {
        cr_assert_eq(rc, ERR_NO_SLOTS);
        cr_assert_eq(sync_evictions(w), 0, "a refused alloc evicted");
        w->refusals++;
        return rc;
    }
    cr_assert_eq(rc, 0);
    int freed = sync_evictions(w);
    if (nfree >= n) cr_assert_eq(freed, 0, "evicted with enough free slots");
    else {
        cr_assert_geq(freed, n - nfree);
        cr_assert_lt(freed - (n - nfree), w->maxlen, "evicted far more than needed");
    }
    for (int i = 0; i < n; i++) {
        cr_assert_eq(r->state[out[i]], S_FREE, "alloc returned a slot that was not free");
        r->state[out[i]] = S_HELD;
    }
    return 0;
}

static void gen_seq(World *w, int *seq, int *n, const int bases[6][24])
{
    /* a shared base prefix (often), then a random tail */
    int len = 0;
    if (rnd(w) % 4) {
        const int *b = bases[rnd(w) % 6];
        int k = rnd_in(w, 0, 24);
        for (int i = 0; i < k; i++) seq[len++] = b[i];
    }
    int tail = rnd_in(w, len ? 0 : 1, 8);
    for (int i = 0; i < tail; i++) seq[len++] = (int)(rnd(w) % ALPHA);
    *n = len;
}

static void drop_req(World *w, int i)
{
    w->req[i] = w->req[--w->nreq];
}

static void step(World *w, const int bases[6][24])
{
    int op = rnd_in(w, 0, 99);
    Ref *r = &w->r;
    if (op < 20 && w->nreq < 8) {
        /* start a request: match all but the last prompt token, lock, alloc the rest */
        Req *q = &w->req[w->nreq];
        gen_seq(w, q->seq, &q->len, bases);
        int m = do_match(w, q->seq, q->len - 1 > 0 ? q->len - 1 : 0, q->slots, &q->node);
        radix_lock(w->t, q->node);
        ref_lock(r, q->seq, m, +1);
        q->tree_len = m;
        if (do_alloc(w, q->len - m, q->slots + m) != 0) {
            cr_assert_eq(radix_unlock(w->t, q->node), 0);
            ref_lock(r, q->seq, m, -1);
            return;
        }
        w->nreq++;
    } else if (op < 40 && w->nreq) {
        /* decode a few tokens */
        Req *q = &w->req[rnd(w) % (uint32_t)w->nreq];
        int k = rnd_in(w, 1, 4);
        if (q->len + k > w->maxlen) k = w->maxlen - q->len;
        if (k <= 0) return;
        if (do_alloc(w, k, q->slots + q->len) == 0) {
            for (int i = 0; i < k; i++) q->seq[q->len + i] = (int)(rnd(w) % ALPHA);
            q->len += k;
        }
    } else if (op < 48 && w->nreq) {
        /* checkpoint (chunked prefill): insert progress, move the lock */
        Req *q = &w->req[rnd(w) % (uint32_t)w->nreq];
        RadixNode *old = q->node, *nn;
        int oldlen = q->tree_len;
        do_insert(w, q->seq, q->len, q->slots, &nn);
        radix_lock(w->t, nn);
        ref_lock(r, q->seq, q->len, +1);
        cr_assert_eq(radix_unlock(w->t, old), 0);
        ref_lock(r, q->seq, oldlen, -1);
        q->node = nn;
        q->tree_len = q->len;
    } else if (op < 62 && w->nreq) {
        /* finish: insert and unlock */
        int i = (int)(rnd(w) % (uint32_t)w->nreq);
        Req *q = &w->req[i];
        RadixNode *nn;
        do_insert(w, q->seq, q->len, q->slots, &nn);
        cr_assert_eq(radix_unlock(w->t, q->node), 0);
        ref_lock(r, q->seq, q->tree_len, -1);
        drop_req(w, i);
    } else if (op < 67 && w->nreq) {
        /* cancel: give back the held part, unlock */
        int i = (int)(rnd(w) % (uint32_t)w->nreq);
        Req *q = &w->req[i];
        radix_free_slots(w->t, q->slots + q->tree_len, q->len - q->tree_len);
        for (int k = q->tree_len; k < q->len; k++) r->state[q->slots[k]] = S_FREE;
        cr_assert_eq(radix_unlock(w->t, q->node), 0);
        ref_lock(r, q->seq, q->tree_len, -1);
        drop_req(w, i);
    } else if (op < 80) {
        /* a lookup nobody keeps */
        int seq[64], n;
        int32_t slots[64];
        RadixNode *node;
        gen_seq(w, seq, &n, bases);
        do_match(w, seq, n, slots, &node);
    } else if (op < 92) {
        /* a fresh sequence computed without the cache, inserted whole */
        int seq[64], n;
        int32_t slots[64];
        RadixNode *node;
        gen_seq(w, seq, &n, bases);
        if (do_alloc(w, n, slots) == 0) do_insert(w, seq, n, slots, &node);
    } else if (op < 99) {
        int n = rnd_in(w, 1, r->total / 3);
        int evictable = ref_evictable(r);
        int got = radix_evict(w->t, n);
        cr_assert_geq(got, 0);
        cr_assert_eq(sync_evictions(w), got);
        if (evictable >= n) {
            cr_assert_geq(got, n);
            cr_assert_lt(got - n, w->maxlen);
        } else {
            cr_assert_eq(got, evictable);
        }
    } else {
        int evictable = ref_evictable(r);
        cr_assert_eq(radix_evict(w->t, INT_MAX), evictable);
        cr_assert_eq(sync_evictions(w), evictable);
    }
}

static void run_world(uint64_t seed, int total, long steps)
{
    World *w = calloc(1, sizeof *w);
    w->pool = mkpool(total);
    w->t = radix_new(w->pool);
    cr_assert_not_null(w->t);
    ref_init(&w->r, total);
    w->in_tree = calloc((size_t)total, 1);
    w->maxlen = 40;
    w->rng = seed * 0x9E3779B97F4A7C15ull + 1;
    int bases[6][24];
    for (int b = 0; b < 6; b++)
        for (int i = 0; i < 24; i++) bases[b][i] = (int)(rnd(w) % ALPHA);
    /* two bases share their first half, so splits happen inside long edges */
    memcpy(bases[1], bases[0], 12 * sizeof(int));
    for (long i = 0; i < steps; i++) {
        step(w, (const int(*)[24])bases);
        compare(w);
        w->steps++;
    }
    /* wind down: finish every request, evict everything, all slots free */
    while (w->nreq) {
        Req *q = &w->req[w->nreq - 1];
        RadixNode *nn;
        do_insert(w, q->seq, q->len, q->slots, &nn);
        cr_assert_eq(radix_unlock(w->t, q->node), 0);
        ref_lock(&w->r, q->seq, q->tree_len, -1);
        w->nreq--;
        compare(w);
    }
    cr_log_info("seed %llu pool %d: %ld steps, %ld tokens evicted, %ld refused allocs, %ld hits",
                (unsigned long long)seed, total, w->steps, w->evictions, w->refusals, w->hits);
    radix_evict(w->t, INT_MAX);
    sync_evictions(w);
    compare(w);
    RadixStats s;
    radix_stats(w->t, &s);
    cr_assert_eq(s.free, total);
    cr_assert_gt(w->evictions, 0);
    cr_assert_gt(w->hits, 0);
    radix_free(w->t);
    kv_free(w->pool);
    ref_fini(&w->r);
    free(w->in_tree);
    free(w);
}

Test(radix_property, small_pool_heavy_eviction) { run_world(1, 48, 20000); }
Test(radix_property, small_pool_other_seed) { run_world(2, 64, 20000); }
Test(radix_property, medium_pool) { run_world(3, 160, 20000); }
Test(radix_property, large_pool_few_evictions) { run_world(4, 400, 10000); }
