/*
 * runtime/radix.h — the prefix cache: a radix tree from token sequences to
 * runs of KV slots, and the accounting of every slot of the KV pool.
 *
 * Owns: the tree (nodes, their token keys and slot values), the lock counts
 * that keep running requests' prefixes resident, LRU eviction, and the
 * bookkeeping of slots handed out to requests (radix_alloc_slots). Does not
 * own: the KV pool (borrowed; the tree calls kv_alloc / kv_release on it),
 * the K/V data in the slots (model_forward writes it), requests.
 *
 * Each edge carries a run of tokens and, one for one, the KV slot that holds
 * that token's K/V (page size 1). A node is named by the edge that enters
 * it; the root has an empty edge. Children are keyed by their edge's first
 * token, so two children never start with the same token. The sequence of a
 * node is the concatenation of the edges on its path from the root.
 *
 * After inserting "a b c d e" and then "a b c x y":
 *
 *              (root)
 *                |
 *             [a b c]          <- split: the edge "a b c d e" was cut after c
 *              /    \
 *          [d e]    [x y]
 *
 * A split keeps the slots where they were: the upper node takes the first
 * k tokens (and their slots), the lower node keeps the rest and all the
 * children. Before the split, [a b c d e] was one node:
 *
 *     parent ── [a b c d e] ── children          (one node, 5 tokens)
 *
 *     parent ── [a b c] ── [d e] ── children      (two nodes, 3 + 2)
 *
 * A match that ends inside an edge also splits it there, so that the node it
 * returns covers exactly the matched tokens (and can be locked on its own).
 * Nodes are never merged back; a node with one child is harmless.
 *
 * Slot accounting. Every slot of the pool is in exactly one state:
 *
 *     free     in the pool's free list
 *     cached   in the tree, on a node whose lock count is 0 (evictable)
 *     locked   in the tree, on a node some running request has locked
 *     held     taken by radix_alloc_slots and not yet given back (by
 *              radix_insert or radix_free_slots): a running request's own
 *              tokens that are not in the tree
 *
 * and free + cached + locked + held == total at all times (in use = locked +
 * held). This is exact only if every slot leaves the pool through
 * radix_alloc_slots and comes back through radix_insert / radix_free_slots /
 * eviction: a user of the tree must not call kv_alloc / kv_release itself.
 *
 * Lock counts: radix_lock(node) adds one to every node from `node` up to the
 * root; a node's count is the number of locks whose path passes through it,
 * so a parent's count is at least the sum of its children's. Locked nodes are
 * never evicted, and neither are their ancestors.
 *
 * LRU: a counter ticks once per match or insert; every node on the touched
 * path records it as its last access. A parent is therefore never older
 * than its children. radix_evict removes unlocked leaves oldest first
 * (a parent left childless and unlocked becomes a candidate), whole nodes at
 * a time, until enough slots are free.
 *
 * Typical request life (the engine's):
 *
 *     m = radix_match_prefix(t, prompt, n - 1, slots, &node);   // cached part
 *     radix_lock(t, node);
 *     radix_alloc_slots(t, n - m, slots + m);                   // the rest
 *     ... forward, decode: radix_alloc_slots one slot per new token ...
 *     radix_insert(t, seq, slots, len, &last);                  // give to tree
 *     radix_unlock(t, node);
 *
 * (Match at most n - 1 prompt tokens: the last one must be computed to get
 * the logits for the first generated token.) A request that keeps running
 * after inserting its progress (chunked prefill) locks `last` before
 * unlocking `node`, and continues with `slots` as radix_insert rewrote them.
 *
 * Errors are negative ERR_* (base/err.h) codes; every failing call leaves the tree,
 * the pool and the caller's arrays as they were. Out of memory is reported,
 * never ignored.
 *
 * Ownership: radix_new returns a tree freed by radix_free; the pool is
 * borrowed and must outlive it. radix_free returns the tree's slots to the
 * pool (held slots stay with whoever holds them). RadixNode pointers are
 * borrowed: valid until the node is evicted (never while locked), and a
 * split keeps the deeper half in the original node (so a locked node's
 * pointer stays valid and still ends where it did).
 * Threads: one thread (the engine's).
 */
#ifndef SGL_RUNTIME_RADIX_H
#define SGL_RUNTIME_RADIX_H

#include "base/err.h"   /* errors are negative ERR_* codes; err_str gives the message */
#include <stddef.h>
#include <stdint.h>

#include "runtime/kvpool.h"


typedef struct RadixTree RadixTree;
typedef struct RadixNode RadixNode;

typedef struct {
    int total;        /* pool slots */
    int free;         /* in the pool's free list */
    int cached;       /* in the tree, unlocked (evictable) */
    int locked;       /* in the tree, locked */
    int held;         /* handed out by radix_alloc_slots, not in the tree */
    int in_use;       /* locked + held */
    int nodes;        /* tree nodes, root excluded */
    uint64_t evicted; /* slots evicted since radix_new */
} RadixStats;

/* A tree over `pool` (borrowed). NULL when out of memory. */
RadixTree *radix_new(KvPool *pool);
/* Returns every tree slot to the pool (locked ones too: the caller must not
 * use them afterwards) and frees the tree. NULL is fine. */
void radix_free(RadixTree *t);

KvPool *radix_pool(const RadixTree *t);
RadixNode *radix_root(const RadixTree *t);

/* ---- lookup and insertion ------------------------------------------------ */

/*
 * Longest cached prefix of tokens[0..n). Writes its slots to out_slots[0..m)
 * (out_slots may be NULL; else room for n), the node that ends exactly at
 * the m-th token to *last (the root when m == 0; may be NULL), touches the
 * path (LRU) and returns m >= 0. Splits an edge if the match ends inside it;
 * that split's allocation is the only way to fail (ERR_NOMEM).
 */
int radix_match_prefix(RadixTree *t, const int32_t *tokens, int n, int32_t *out_slots,
                       RadixNode **last);

/*
 * Puts tokens[0..n) with slots[0..n) into the tree. For the part already in
 * the tree, the tree's slots win: any caller slot that differs from the
 * tree's is a duplicate, goes back to the pool, and slots[i] is rewritten to
 * the tree's slot (so the caller can go on using the array). The rest
 * becomes a new leaf (cached, i.e. unlocked). Every caller slot that was
 * not already the tree's must be held (from radix_alloc_slots); after the
 * call none of them is held any more. *last (may be NULL) receives the node
 * ending at the n-th token (the root for n == 0). Touches the path (LRU).
 * Returns how many leading tokens were already in the tree, or
 * ERR_NOMEM / ERR_ARG (then nothing changed).
 */
int radix_insert(RadixTree *t, const int32_t *tokens, int32_t *slots, int n, RadixNode **last);

/* ---- locks ---------------------------------------------------------------- */

/* One more lock on the path from node to the root (the root itself: no-op). */
void radix_lock(RadixTree *t, RadixNode *node);
/* Undoes one radix_lock(node). ERR_UNLOCKED (and no change) if the node
 * is not locked. */
int radix_unlock(RadixTree *t, RadixNode *node);

/* Tokens from the root to the end of node. */
int radix_node_depth(const RadixNode *node);
int radix_node_lock_count(const RadixNode *node);

/* ---- slots and eviction --------------------------------------------------- */

/*
 * Takes n slots for a running request into out[0..n) (they become held),
 * evicting unlocked leaves (LRU) if the pool's free list is short. If free +
 * evictable < n, returns ERR_NO_SLOTS having evicted and taken
 * nothing. Returns 0.
 */
int radix_alloc_slots(RadixTree *t, int n, int32_t *out);
/* Gives held slots back to the pool (a cancelled or retracted request's
 * tokens that were never inserted). */
void radix_free_slots(RadixTree *t, const int32_t *slots, int n);

/* Removes unlocked leaves, least recently used first (a parent that becomes
 * an unlocked leaf joins the candidates), until at least n slots were freed
 * or nothing evictable is left. Returns the number of slots freed (which may
 * exceed n by part of the last node, or fall short when the tree runs out),
 * or ERR_NOMEM (nothing evicted) when its candidate heap cannot grow. */
int radix_evict(RadixTree *t, int n);

/* Slots that radix_evict could free right now (== stats.cached). */
int radix_evictable(const RadixTree *t);

void radix_stats(const RadixTree *t, RadixStats *out);

/* Full consistency check (tests): edge/slot arrays, child keys unique and
 * sorted, lock counts, parent access times, no slot twice in the tree, no
 * tree slot in the pool's free list, and the counters against a recount
 * (free + cached + locked + held == total). Returns 0, or ERR_CORRUPT
 * with a message in err. */
int radix_check(const RadixTree *t, char *err, size_t errcap);

/* ---- iteration ------------------------------------------------------------ */

/* Calls fn once per node (root excluded) in depth-first order, children by
 * first token, with the node's whole sequence from the root: tokens[0..depth)
 * and slots[0..depth), of which the last `edge` belong to this node. Stops
 * early and returns fn's value when fn returns non-zero; NOMEM when the path
 * buffer cannot grow. */
typedef int (*radix_visit_fn)(void *ud, const RadixNode *node, const int32_t *tokens,
                              const int32_t *slots, int depth, int edge);
int radix_visit(const RadixTree *t, radix_visit_fn fn, void *ud);

#endif
