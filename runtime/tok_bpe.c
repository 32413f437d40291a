/*
 * runtime/tok_bpe.c — BPE merging of one pre-tokenized piece into ids, and
 * the word cache in front of it (called by tok_pretok.c, under the
 * tokenizer's mutex).
 *
 * Merging (one piece):
 *
 *   symbols   [h][e][l][l][o]         ids; prev/next links; dead = TOK_DEAD
 *   heap      (prio, pos) of every adjacent pair found in the pair map
 *   loop      pop the best pair; skip it when either side changed since it
 *             was pushed; else merge right into left and push the two new
 *             neighbour pairs
 *
 * With BPE ranks this is Hugging Face's Word::merge_all and llama.cpp's
 * llm_tokenizer_bpe_session; with prio = -score it is llama.cpp's SPM
 * session (highest score first, leftmost on ties).
 *
 * Owns: the word cache (TokCache), the symbol and heap scratch. Does not
 * own: the tables it reads (tokenizer.c builds them), splitting text into
 * pieces (tok_pretok.c).
 */
#include "base/err.h"
#include "runtime/tok_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOK_DEAD INT32_MIN
#define TOK_CACHE_MAX_WORD 256      /* longer pieces are not cached */
#define TOK_CACHE_MAX_ENTRIES 32768 /* then the cache is cleared */

/* ---- output, word cache ---------------------------------------------------- */

static void cache_clear(TokCache *c)
{
    if (c->slots)
        for (uint32_t i = 0; i <= c->mask; i++)
            c->slots[i].key_len = UINT32_MAX;
    c->n = 0;
    c->keys_len = 0;
    c->ids_len = 0;
}

static int ids_append(TokIds *v, const int32_t *ids, size_t n)
{
    if (grow((void **)&v->ids, &v->cap, v->n + n, sizeof *v->ids))
        return ERR_NOMEM;
    memcpy(v->ids + v->n, ids, n * sizeof *ids);
    v->n += n;
    return 0;
}

static const TokCacheEntry *cache_get(const TokCache *c, const char *w, size_t n, uint64_t h)
{
    if (!c->slots)
        return NULL;
    for (uint32_t i = (uint32_t)h & c->mask;; i = (i + 1) & c->mask) {
        const TokCacheEntry *e = &c->slots[i];
        if (e->key_len == UINT32_MAX)
            return NULL;
        if (e->hash == h && e->key_len == n && memcmp(c->keys + e->key_off, w, n) == 0)
            return e;
    }
}

/* Best effort: a failed allocation only means no caching. */
static void cache_put(TokCache *c, const char *w, size_t n, uint64_t h, const int32_t *ids, size_t nids)
{
    if (!c->slots) {
        uint32_t cap = TOK_CACHE_MAX_ENTRIES * 2;
        c->slots = malloc(cap * sizeof *c->slots);
        if (!c->slots)
            return;
        c->mask = cap - 1;
        cache_clear(c);
    }
    if (c->n >= TOK_CACHE_MAX_ENTRIES)
        cache_clear(c);
    if (grow((void **)&c->keys, &c->keys_cap, c->keys_len + n, 1) ||
        grow((void **)&c->ids, &c->ids_cap, c->ids_len + nids, sizeof *c->ids))
        return;
    uint32_t i = (uint32_t)h & c->mask;
    while (c->slots[i].key_len != UINT32_MAX)
        i = (i + 1) & c->mask;
    TokCacheEntry *e = &c->slots[i];
    e->hash = h;
    e->key_off = (uint32_t)c->keys_len;
    e->key_len = (uint32_t)n;
    e->ids_off = (uint32_t)c->ids_len;
    e->ids_n = (uint32_t)nids;
    memcpy(c->keys + c->keys_len, w, n);
    c->keys_len += n;
    memcpy(c->ids + c->ids_len, ids, nids * sizeof *ids);
    c->ids_len += nids;
    c->n++;
}

/* ---- merging ---------------------------------------------------------------- */

typedef struct {
    float prio;
    int32_t pos, l, r, id;
} HeapItem;

static bool heap_less(const HeapItem *a, const HeapItem *b)
{
    return a->prio < b->prio || (a->prio == b->prio && a->pos < b->pos);
}

static int heap_push(Tokenizer *t, size_t *n, HeapItem it)
{
    if (grow(&t->heap, &t->cap_heap, *n + 1, sizeof(HeapItem)))
        return ERR_NOMEM;
    HeapItem *h = t->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
    return 0;
}

static HeapItem heap_pop(Tokenizer *t, size_t *n)
{
    HeapItem *h = t->heap;
    HeapItem top = h[0];
    HeapItem last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

static int try_pair(Tokenizer *t, size_t *hn, int32_t a, int32_t b)
{
    int32_t l = t->sym[a], r = t->sym[b];
    if (l < 0 || r < 0)
        return 0;
    const TokPair *p = pair_get(&t->pairs, l, r);
    if (!p)
        return 0;
    return heap_push(t, hn, (HeapItem){ p->prio, a, l, r, p->id });
}

#define TOK_SMALL_WORD 64

/* Short pieces (almost all of them): keep the current pair of every live
 * symbol in an array and scan for the best each round. Same result as the
 * heap: the lowest priority, leftmost on ties. */
static void merge_small(Tokenizer *t, size_t n)
{
    int32_t *sym = t->sym, *next = t->sym_next;
    float prio[TOK_SMALL_WORD];
    int32_t to[TOK_SMALL_WORD];
    int32_t prev[TOK_SMALL_WORD];
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prio[i] = INFINITY;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const TokPair *p = sym[i] >= 0 && sym[i + 1] >= 0 ? pair_get(&t->pairs, sym[i], sym[i + 1]) : NULL;
        if (p) {
            prio[i] = p->prio;
            to[i] = p->id;
        }
    }
    for (;;) {
        int32_t best = -1;
        float bp = INFINITY;
        for (int32_t i = 0; i >= 0; i = next[i])
            if (prio[i] < bp) {
                bp = prio[i];
                best = i;
            }
        if (best < 0)
            return;
        int32_t r = next[best];
        sym[best] = to[best];
        sym[r] = TOK_DEAD;
        next[best] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = best;
        int32_t around[2] = { prev[best], best };
        for (int k = 0; k < 2; k++) {
            int32_t a = around[k];
            if (a < 0)
                continue;
            int32_t b = next[a];
            const TokPair *p = b >= 0 && sym[a] >= 0 && sym[b] >= 0 ? pair_get(&t->pairs, sym[a], sym[b]) : NULL;
            prio[a] = p ? p->prio : INFINITY;
            if (p)
                to[a] = p->id;
        }
    }
}

/* Merges t->sym[0..n) in place; live symbols are linked by sym_next from 0. */
static int merge_symbols(Tokenizer *t, size_t n)
{
    if (n <= TOK_SMALL_WORD) {
        merge_small(t, n);
        return 0;
    }
    int32_t *sym = t->sym, *prev = t->sym_prev, *next = t->sym_next;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    int rc;
    for (size_t i = 0; i + 1 < n; i++)
        if ((rc = try_pair(t, &hn, (int32_t)i, (int32_t)i + 1)))
            return rc;
    while (hn) {
        HeapItem it = heap_pop(t, &hn);
        int32_t r = next[it.pos];
        if (sym[it.pos] != it.l || r < 0 || sym[r] != it.r)
            continue;
        sym[it.pos] = it.id;
        sym[r] = TOK_DEAD;
        next[it.pos] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = it.pos;
        if (prev[it.pos] >= 0 && (rc = try_pair(t, &hn, prev[it.pos], it.pos)))
            return rc;
        if (next[it.pos] >= 0 && (rc = try_pair(t, &hn, it.pos, next[it.pos])))
            return rc;
    }
    return 0;
}

static int sym_reserve(Tokenizer *t, size_t n)
{
    if (n <= t->cap_sym)
        return 0;
    size_t c = t->cap_sym, c2 = t->cap_sym, c3 = t->cap_sym;
    if (grow((void **)&t->sym, &c, n, sizeof(int32_t)) || grow((void **)&t->sym_prev, &c2, n, sizeof(int32_t)) ||
        grow((void **)&t->sym_next, &c3, n, sizeof(int32_t)))
        return ERR_NOMEM;
    t->cap_sym = c < c2 ? (c < c3 ? c : c3) : (c2 < c3 ? c2 : c3);
    return 0;
}

/* Ids of one pre-tokenized piece, appended to out. */
int tok_encode_word(Tokenizer *t, const char *w, size_t n, TokIds *out)
{
    if (n == 0)
        return 0;
    uint64_t h = 0;
    bool cacheable = n <= TOK_CACHE_MAX_WORD;
    if (cacheable) {
        h = hash_bytes(w, n);
        const TokCacheEntry *e = cache_get(&t->cache, w, n, h);
        if (e)
            return ids_append(out, t->cache.ids + e->ids_off, e->ids_n);
    }
    size_t out0 = out->n;
    int rc;

    if (t->ignore_merges) {
        int32_t id;
        if (t->byte_level) {
            if (grow((void **)&t->seg, &t->seg_cap, 2 * n, 1))
                return ERR_NOMEM;
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                m += (size_t)utf8_encode(tok_byte_to_cp((uint8_t)w[i]), t->seg + m);
            id = vocab_get(t, t->seg, m);
        } else
            id = vocab_get(t, w, n);
        if (id >= 0) {
            if ((rc = ids_push(out, id)))
                return rc;
            goto done;
        }
    }

    if ((rc = sym_reserve(t, n)))
        return rc;
    size_t ns = 0;
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++)
            t->sym[ns++] = t->byte_sym[(uint8_t)w[i]];
    } else {
        bool prev_unk = false;
        for (size_t i = 0; i < n;) {
            int l = utf8_len((const uint8_t *)w + i, n - i);
            int32_t id = vocab_get(t, w + i, (size_t)l);
            if (id >= 0) {
                t->sym[ns++] = id;
                prev_unk = false;
            } else {
                bool bytes_ok = t->byte_fallback || t->model == TOK_MODEL_SPM;
                for (int k = 0; k < l && bytes_ok; k++)
                    bytes_ok = t->byte_sym[(uint8_t)w[i + k]] >= 0;
                if (bytes_ok) {
                    for (int k = 0; k < l; k++)
                        t->sym[ns++] = t->byte_sym[(uint8_t)w[i + k]];
                    prev_unk = false;
                } else if (t->unk >= 0) {
                    if (!(t->fuse_unk && prev_unk))
                        t->sym[ns++] = t->unk;
                    prev_unk = true;
                }
                /* else: no way to represent it (llama.cpp drops it too) */
            }
            i += (size_t)l;
        }
    }
    if ((rc = merge_symbols(t, ns)))
        return rc;
    if (ns) {
        for (int32_t i = 0; i >= 0; i = t->sym_next[i])
            if (t->sym[i] >= 0 && (rc = ids_push(out, t->sym[i])))
                return rc;
    }
done:
    if (cacheable)
        cache_put(&t->cache, w, n, h, out->ids + out0, out->n - out0);
    return 0;
}
