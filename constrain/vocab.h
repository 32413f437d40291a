/*
 * constrain/vocab.h — the inside of a CVocab: token bytes and the byte trie
 * the matcher walks (constrain/vocab.c builds it, constrain/matcher.c reads
 * it). Nothing outside constrain/ includes it.
 *
 * The trie is flat, in pre-order (llguidance's layout): node 0 is the root
 * (the empty string); every node is one byte deeper than its parent and
 * follows it, children in byte order. A node's subtree is the contiguous run
 * nodes[i .. i + sub), so a walk that rejects the byte of node i skips its
 * whole subtree with `i += sub`:
 *
 *      tokens  "a" "ab" "abc" "b"          index  byte depth sub tok
 *                                            0     -    0    5   -1   root
 *            (root)                          1    'a'   1    3   "a"
 *            /    \                          2    'b'   2    2   "ab"
 *          a*      b*                        3    'c'   3    1   "abc"
 *          |                                 4    'b'   1    1   "b"
 *          b*
 *          |
 *          c*
 *
 * A walk keeps one automaton state per depth: visiting node i at depth d
 * computes the state for depth d from the one saved at depth d - 1 (its
 * parent's, still valid because of the pre-order).
 *
 * Subtrees of CV_SUM_MIN nodes or more carry a summary (CvSum) of the
 * bytes below them and the range of their tokens in order[], the text
 * tokens listed in pre-order, so a walk can accept a whole subtree in one
 * loop over that range.
 *
 * Only text tokens are in the trie: special tokens (CV_SPECIAL), end tokens
 * (CV_EOG, listed in eog[]) and tokens with no bytes are not. Tokens with
 * identical bytes share a node: the node names the smallest id and
 * dup_next[] chains the others in increasing order.
 *
 * Ownership: everything is owned by the CVocab and immutable after cv_new;
 * `refs` is atomic, so any thread may read and ref it.
 */
#ifndef SGL_CONSTRAIN_VOCAB_H
#define SGL_CONSTRAIN_VOCAB_H

#include <stdatomic.h>
#include <stdint.h>

#include "constrain/constrain.h"

typedef struct {
    uint32_t bd;            /* byte | depth << 8 | CV_NODE_DUP */
    uint32_t sub;           /* nodes in the subtree, this one included */
    int32_t tok;            /* smallest token id ending here, or -1 */
    int32_t sum;            /* index in sums[] (subtrees of CV_SUM_MIN nodes or more), or -1 */
} CvNode;

/* What the strings below a node (its subtree's suffixes, the node's own
 * byte excluded) are made of, for walks that accept a whole subtree at
 * once when the automaton provably accepts every such string (matcher.c,
 * "subtree shortcut"). */
typedef struct {
    uint32_t ascii[4];      /* ASCII bytes that occur */
    uint8_t nonascii;       /* some byte >= 0x80 occurs */
    uint8_t utf8ok;         /* every suffix is a prefix of valid UTF-8 */
    uint32_t depth;         /* longest suffix, bytes */
    int32_t tok_lo, tok_hi; /* their tokens: order[tok_lo .. tok_hi) */
    int32_t bits;           /* when there are CV_BITS_MIN or more: their mask is
                               bitsets[bits * words ..], else -1 */
    int32_t bylen;          /* ASCII-only subtrees: the same tokens sorted by
                               length are bylen[bylen .. + tok_hi - tok_lo); else -1 */
} CvSum;

enum { CV_SUM_MIN = 2, CV_BITS_MIN = 2048 };

#define CV_NODE_DUP 0x80000000u     /* tok has duplicates: follow dup_next */
#define CV_NODE_BYTE(nd) ((uint8_t)((nd)->bd & 0xff))
#define CV_NODE_DEPTH(nd) ((int)(((nd)->bd & ~CV_NODE_DUP) >> 8))

struct CVocab {
    atomic_int refs;
    int32_t n;              /* tokens */
    uint8_t *flags;         /* n: CV_* */
    uint32_t *off;          /* n + 1: token i is bytes[off[i] .. off[i + 1]) */
    char *bytes;
    int32_t *eog;           /* end-of-generation ids, increasing */
    int neog;
    int32_t *dup_next;      /* n: next id with the same bytes, or -1 */
    CvNode *nodes;          /* nnodes, pre-order, nodes[0] the root */
    int32_t nnodes;
    CvSum *sums;
    int32_t nsums;
    int32_t *order;         /* every text token (duplicates too) in pre-order */
    int32_t norder;
    uint32_t *bitsets;      /* masks of big subtrees (CvSum.bits) */
    int32_t nbitsets;
    int32_t *bylen;         /* CvSum.bylen lists */
    int32_t max_depth;      /* longest text token in bytes */
    size_t words;           /* cv_mask_words */
};

static inline const char *cv_token_bytes(const CVocab *v, int32_t id, size_t *len)
{
    *len = v->off[id + 1] - v->off[id];
    return v->bytes + v->off[id];
}

#endif
