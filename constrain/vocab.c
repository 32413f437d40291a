/*
 * constrain/vocab.c — CVocab: a tokenizer's vocabulary as raw bytes, its
 * flat pre-order byte trie (layout in constrain/vocab.h), the end tokens,
 * and random valid tokenizations (cv_random_segment).
 *
 * Owns the copies of the token bytes it is given. Does not know how a
 * tokenizer spells its tokens (the runtime has already turned byte-level
 * BPE symbols, "▁" and <0xHH> into bytes) and never tokenizes canonically.
 */
#include <stdlib.h>
#include <string.h>

#include "constrain/vocab.h"

/* ---- building ----------------------------------------------------------- */

static int cmp_token_bytes(const void *a, const void *b, void *ctx)
{
    const CVocab *sort_vocab = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t lx, ly;
    const char *px = cv_token_bytes(sort_vocab, x, &lx);
    const char *py = cv_token_bytes(sort_vocab, y, &ly);
    size_t n = lx < ly ? lx : ly;
    int c = memcmp(px, py, n);
    if (c)
        return c;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static void vocab_free(CVocab *v)
{
    if (!v)
        return;
    free(v->flags);
    free(v->off);
    free(v->bytes);
    free(v->eog);
    free(v->dup_next);
    free(v->nodes);
    free(v->sums);
    free(v->order);
    free(v->bitsets);
    free(v->bylen);
    free(v);
}

/* UTF-8 decoding states for "is a prefix of valid UTF-8": 0 at a
 * character boundary; 1: one continuation byte due; 2-4: two due, the
 * first in 80-BF, A0-BF (after E0), 80-9F (after ED); 5-7: three due, the
 * first in 80-BF, 90-BF (after F0), 80-8F (after F4). */
static int utf8_step(int q, uint8_t b)
{
    switch (q) {
    case 0:
        if (b < 0x80)
            return 0;
        if (b >= 0xc2 && b <= 0xdf)
            return 1;
        if (b == 0xe0)
            return 3;
        if (b == 0xed)
            return 4;
        if (b >= 0xe1 && b <= 0xef)
            return 2;
        if (b == 0xf0)
            return 6;
        if (b >= 0xf1 && b <= 0xf3)
            return 5;
        if (b == 0xf4)
            return 7;
        return -1;
    case 1:
        return b >= 0x80 && b <= 0xbf ? 0 : -1;
    case 2:
        return b >= 0x80 && b <= 0xbf ? 1 : -1;
    case 3:
        return b >= 0xa0 && b <= 0xbf ? 1 : -1;
    case 4:
        return b >= 0x80 && b <= 0x9f ? 1 : -1;
    case 5:
        return b >= 0x80 && b <= 0xbf ? 2 : -1;
    case 6:
        return b >= 0x90 && b <= 0xbf ? 2 : -1;
    case 7:
        return b >= 0x80 && b <= 0x8f ? 2 : -1;
    }
    return -1;
}

/* Summaries of the subtrees below big nodes, computed bottom-up (a node's
 * children follow it, so a reverse scan sees children first), and the
 * pre-order token list. */
static int build_sums(CVocab *v)
{
    int32_t nn = v->nnodes;
    typedef struct {
        uint32_t ascii[4];
        uint8_t nonascii, valid;    /* valid: bit q = every suffix is valid from UTF-8 state q */
        uint32_t depth;
    } Tmp;
    Tmp *t = malloc((size_t)nn * sizeof *t);
    int32_t *before = malloc(((size_t)nn + 1) * sizeof *before);   /* tokens before node i in pre-order */
    int32_t ntok = 0;
    for (int32_t i = 0; i < nn; i++)
        for (int32_t k = v->nodes[i].tok; k >= 0; k = v->dup_next[k])
            ntok++;
    v->order = malloc(((size_t)ntok + 1) * sizeof *v->order);
    if (!t || !before || !v->order) {
        free(t);
        free(before);
        return ERR_NOMEM;
    }
    int32_t at = 0, nsums = 0;
    for (int32_t i = 0; i < nn; i++) {
        before[i] = at;
        for (int32_t k = v->nodes[i].tok; k >= 0; k = v->dup_next[k])
            v->order[at++] = k;
        if (v->nodes[i].sub >= CV_SUM_MIN)
            nsums++;
    }
    before[nn] = at;
    v->norder = at;
    v->sums = malloc(((size_t)nsums + 1) * sizeof *v->sums);
    if (!v->sums) {
        free(t);
        free(before);
        return ERR_NOMEM;
    }
    for (int32_t i = nn - 1; i >= 0; i--) {
        Tmp x = { { 0, 0, 0, 0 }, 0, 0xff, 0 };
        int32_t end = i + (int32_t)v->nodes[i].sub;
        for (int32_t c = i + 1; c < end; c += (int32_t)v->nodes[c].sub) {
            uint8_t b = CV_NODE_BYTE(&v->nodes[c]);
            if (b < 0x80)
                x.ascii[b >> 5] |= 1u << (b & 31);
            else
                x.nonascii = 1;
            for (int k = 0; k < 4; k++)
                x.ascii[k] |= t[c].ascii[k];
            x.nonascii |= t[c].nonascii;
            if (t[c].depth + 1 > x.depth)
                x.depth = t[c].depth + 1;
            for (int q = 0; q < 8; q++) {
                int q2 = utf8_step(q, b);
                if (q2 < 0 || !(t[c].valid >> q2 & 1))
                    x.valid &= (uint8_t)~(1u << q);
            }
        }
        t[i] = x;
    }
    nsums = 0;
    for (int32_t i = 0; i < nn; i++) {
        if (v->nodes[i].sub < CV_SUM_MIN)
            continue;
        CvSum *s = &v->sums[nsums];
        memcpy(s->ascii, t[i].ascii, sizeof s->ascii);
        s->nonascii = t[i].nonascii;
        s->utf8ok = t[i].valid & 1;
        s->depth = t[i].depth;
        s->tok_lo = before[i + 1];
        s->tok_hi = before[i + (int32_t)v->nodes[i].sub];
        s->bits = s->tok_hi - s->tok_lo >= CV_BITS_MIN ? v->nbitsets++ : -1;
        v->nodes[i].sum = nsums++;
    }
    v->nsums = nsums;
    size_t words = ((size_t)v->n + 31) / 32;
    words += words & 1;
    v->bitsets = calloc((size_t)v->nbitsets * words + 1, sizeof *v->bitsets);
    if (!v->bitsets) {
        free(t);
        free(before);
        return ERR_NOMEM;
    }
    /* length-sorted lists of ASCII-only subtrees (counting sort by length) */
    size_t nbylen = 0;
    for (int32_t k = 0; k < nsums; k++)
        if (!v->sums[k].nonascii)
            nbylen += (size_t)(v->sums[k].tok_hi - v->sums[k].tok_lo);
    v->bylen = malloc((nbylen + 1) * sizeof *v->bylen);
    int32_t *hist = calloc((size_t)v->max_depth + 2, sizeof *hist);
    if (!v->bylen || !hist) {
        free(hist);
        free(t);
        free(before);
        return ERR_NOMEM;
    }
    size_t at2 = 0;
    for (int32_t k = 0; k < nsums; k++) {
        CvSum *s = &v->sums[k];
        s->bylen = -1;
        if (s->nonascii)
            continue;
        s->bylen = (int32_t)at2;
        int32_t maxl = 0;
        for (int32_t j = s->tok_lo; j < s->tok_hi; j++) {
            int32_t l = (int32_t)(v->off[v->order[j] + 1] - v->off[v->order[j]]);
            hist[l]++;
            if (l > maxl)
                maxl = l;
        }
        int32_t sum = 0;
        for (int32_t l = 0; l <= maxl; l++) {
            int32_t c = hist[l];
            hist[l] = sum;
            sum += c;
        }
        for (int32_t j = s->tok_lo; j < s->tok_hi; j++) {
            int32_t l = (int32_t)(v->off[v->order[j] + 1] - v->off[v->order[j]]);
            v->bylen[at2 + (size_t)hist[l]++] = v->order[j];
        }
        memset(hist, 0, ((size_t)maxl + 1) * sizeof *hist);
        at2 += (size_t)(s->tok_hi - s->tok_lo);
    }
    free(hist);
    for (int32_t k = 0; k < nsums; k++) {
        const CvSum *s = &v->sums[k];
        if (s->bits < 0)
            continue;
        uint32_t *bs = v->bitsets + (size_t)s->bits * words;
        for (int32_t j = s->tok_lo; j < s->tok_hi; j++)
            bs[v->order[j] >> 5] |= 1u << (v->order[j] & 31);
    }
    free(t);
    free(before);
    return 0;
}

/* Builds the trie from the text tokens sorted by bytes: each token adds one
 * node per byte past its common prefix with the previous one, which is
 * exactly pre-order; a node's subtree closes when a later node is emitted
 * at its depth or above. */
static int build_trie(CVocab *v, int32_t *order, int32_t m)
{
    size_t cap = 1;
    for (int32_t k = 0; k < m; k++)
        cap += v->off[order[k] + 1] - v->off[order[k]];
    v->nodes = malloc(cap * sizeof *v->nodes);
    int32_t *open = malloc(((size_t)v->max_depth + 2) * sizeof *open);
    if (!v->nodes || !open) {
        free(open);
        return ERR_NOMEM;
    }
    int32_t nn = 0;
    v->nodes[nn++] = (CvNode){ .bd = 0, .sub = 0, .tok = -1, .sum = -1 };
    open[0] = 0;
    int depth_open = 0;             /* open[0..depth_open] is the current path */
    const char *prev = NULL;
    size_t prevlen = 0;
    for (int32_t k = 0; k < m; k++) {
        int32_t id = order[k];
        size_t len;
        const char *p = cv_token_bytes(v, id, &len);
        size_t l = 0;
        while (prev && l < len && l < prevlen && p[l] == prev[l])
            l++;
        if (prev && l == len && len == prevlen) {
            /* same bytes as the previous token: chain it */
            int32_t first = v->nodes[open[depth_open]].tok, at = first;
            while (v->dup_next[at] >= 0)
                at = v->dup_next[at];
            v->dup_next[at] = id;
            v->nodes[open[depth_open]].bd |= CV_NODE_DUP;
            continue;
        }
        while (depth_open > (int)l) {
            v->nodes[open[depth_open]].sub = (uint32_t)(nn - open[depth_open]);
            depth_open--;
        }
        for (size_t d = l; d < len; d++) {
            v->nodes[nn] = (CvNode){ .bd = (uint8_t)p[d] | (uint32_t)(d + 1) << 8, .sub = 0, .tok = -1, .sum = -1 };
            open[++depth_open] = nn++;
        }
        v->nodes[open[depth_open]].tok = id;
        prev = p;
        prevlen = len;
    }
    while (depth_open >= 0) {
        v->nodes[open[depth_open]].sub = (uint32_t)(nn - open[depth_open]);
        depth_open--;
    }
    free(open);
    v->nnodes = nn;
    return build_sums(v);
}

int cv_new(int32_t n, const char *const *bytes, const size_t *lens, const uint8_t *flags, CVocab **out)
{
    if (!out || n < 0 || (n > 0 && (!bytes || !lens || !flags)))
        return ERR_ARG;
    *out = NULL;
    CVocab *v = calloc(1, sizeof *v);
    if (!v)
        return ERR_NOMEM;
    atomic_init(&v->refs, 1);
    v->n = n;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (lens[i] && !bytes[i]) {
            free(v);
            return ERR_ARG;
        }
        total += lens[i];
    }
    v->flags = malloc((size_t)n + 1);
    v->off = malloc(((size_t)n + 1) * sizeof *v->off);
    v->bytes = malloc(total + 1);
    v->dup_next = malloc(((size_t)n + 1) * sizeof *v->dup_next);
    v->eog = malloc(((size_t)n + 1) * sizeof *v->eog);
    int32_t *order = malloc(((size_t)n + 1) * sizeof *order);
    if (!v->flags || !v->off || !v->bytes || !v->dup_next || !v->eog || !order || total > UINT32_MAX) {
        free(order);
        vocab_free(v);
        return total > UINT32_MAX ? ERR_LIMIT : ERR_NOMEM;
    }
    size_t at = 0;
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        v->flags[i] = flags[i];
        v->off[i] = (uint32_t)at;
        if (lens[i])
            memcpy(v->bytes + at, bytes[i], lens[i]);
        at += lens[i];
        v->dup_next[i] = -1;
        if (flags[i] & CV_EOG)
            v->eog[v->neog++] = i;
        else if (!(flags[i] & CV_SPECIAL) && lens[i] > 0) {
            order[m++] = i;
            if ((int32_t)lens[i] > v->max_depth)
                v->max_depth = (int32_t)lens[i];
        }
    }
    v->off[n] = (uint32_t)at;
    v->words = ((size_t)n + 31) / 32;
    v->words += v->words & 1;
    if (v->max_depth >= (1 << 23)) {
        free(order);
        vocab_free(v);
        return ERR_LIMIT;
    }
    qsort_r(order, (size_t)m, sizeof *order, cmp_token_bytes, v);
    int rc = build_trie(v, order, m);
    free(order);
    if (rc < 0) {
        vocab_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

CVocab *cv_ref(CVocab *v)
{
    if (v)
        atomic_fetch_add(&v->refs, 1);
    return v;
}

void cv_unref(CVocab *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1)
        vocab_free(v);
}

int32_t cv_size(const CVocab *v) { return v ? v->n : 0; }

size_t cv_mask_words(const CVocab *v) { return v ? v->words : 0; }

/* ---- random segmentation ------------------------------------------------ */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Calls fn(len, tok) for every text token that is a prefix of text[0..n),
 * walking down the trie along the text. */
#define FOR_EACH_PREFIX_TOKEN(v, text, n, LEN, TOK, BODY)                                         \
    do {                                                                                          \
        int32_t node_ = 1, end_ = (v)->nnodes;                                                    \
        size_t d_ = 0;                                                                            \
        while (node_ < end_ && d_ < (n)) {                                                        \
            const CvNode *nd_ = &(v)->nodes[node_];                                               \
            if (CV_NODE_BYTE(nd_) != (uint8_t)(text)[d_]) {                                       \
                node_ += (int32_t)nd_->sub;                                                       \
                continue;                                                                         \
            }                                                                                     \
            d_++;                                                                                 \
            end_ = node_ + (int32_t)nd_->sub;                                                     \
            if (nd_->tok >= 0) {                                                                  \
                size_t LEN = d_;                                                                  \
                int32_t TOK = nd_->tok;                                                           \
                BODY                                                                              \
            }                                                                                     \
            node_++;                                                                              \
        }                                                                                         \
    } while (0)

int cv_random_segment(const CVocab *v, const char *text, size_t n, uint64_t seed, int32_t *ids, int cap)
{
    if (!v || (!text && n) || cap < 0 || (!ids && cap))
        return ERR_ARG;
    /* ok[i]: text[i..n) can be tokenized. */
    uint8_t *ok = calloc(n + 1, 1);
    int ncap = v->max_depth * 4 + 16;
    int32_t *cand = malloc((size_t)ncap * sizeof *cand);
    if (!ok || !cand) {
        free(ok);
        free(cand);
        return ERR_NOMEM;
    }
    ok[n] = 1;
    for (size_t i = n; i-- > 0;) {
        FOR_EACH_PREFIX_TOKEN(v, text + i, n - i, len, tok, {
            (void)tok;
            if (ok[i + len]) {
                ok[i] = 1;
                break;
            }
        });
    }
    int rc = 0;
    if (!ok[0]) {
        rc = ERR_CONSTRAINT;
        goto out;
    }
    int count = 0;
    size_t at = 0;
    while (at < n) {
        /* Candidates: each id (duplicates included) whose bytes fit here and
         * leave a tokenizable rest; one is chosen uniformly. */
        int nc = 0;
        FOR_EACH_PREFIX_TOKEN(v, text + at, n - at, len, tok, {
            if (ok[at + len]) {
                for (int32_t t = tok; t >= 0; t = v->dup_next[t]) {
                    if (nc == ncap) {
                        int32_t *g = realloc(cand, (size_t)ncap * 2 * sizeof *cand);
                        if (!g) {
                            rc = ERR_NOMEM;
                            goto out;
                        }
                        cand = g;
                        ncap *= 2;
                    }
                    cand[nc++] = t;
                }
            }
        });
        int32_t pick = cand[splitmix(&seed) % (uint64_t)nc];
        if (count == cap) {
            rc = ERR_LIMIT;
            goto out;
        }
        ids[count++] = pick;
        at += v->off[pick + 1] - v->off[pick];
    }
    rc = count;
out:
    free(ok);
    free(cand);
    return rc;
}
