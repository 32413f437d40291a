/*
 * runtime/tok_pretok.c — tok_encode: from text to pieces, each piece then
 * merged by tok_bpe.c.
 *
 *   added/special tokens ─► segments ─► normalizer ─► pre-tokenizer pieces
 *      (leftmost-longest)              (Prepend,     (Split regex, ByteLevel,
 *                                       Replace,      Digits, Metaspace)
 *                                       NFC)
 *
 * Owns: matching added tokens in the raw text (the trie tokenizer.c built),
 * the normalizer steps (NFC through runtime/tok_nfc.h), the pre-tokenizer
 * steps (PCRE2 splits with HF's delimiter behaviours, the prefix space,
 * Metaspace), the encode scratch (arena, piece lists), the BOS/EOS the
 * tokenizer adds and the mutex around all of it. Does not own: the merge
 * (tok_bpe.c), the tables.
 */
#include "base/err.h"
#include "runtime/tok_internal.h"
#include "runtime/tok_nfc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- normalizer and pre-tokenizer ------------------------------------------ */

static bool is_space_byte(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_word_byte(uint8_t c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

static int arena_reserve(Tokenizer *t, size_t extra)
{
    return grow((void **)&t->arena, &t->arena_cap, t->arena_len + extra, 1);
}

static int pieces_push(TokPiece **v, size_t *n, size_t *cap, TokPiece p)
{
    if (p.len == 0)
        return 0;
    if (*n == *cap && grow((void **)v, cap, *n + 1, sizeof **v))
        return ERR_NOMEM;
    (*v)[(*n)++] = p;
    return 0;
}

/* Applies the normalizer steps to text; the result is appended to the arena
 * and its offset/length returned. */
static int normalize(Tokenizer *t, const char *text, size_t len, size_t *off, size_t *outlen)
{
    if (arena_reserve(t, len))
        return ERR_NOMEM;
    size_t cur = t->arena_len;
    memcpy(t->arena + cur, text, len);
    t->arena_len += len;
    size_t cl = len;
    for (int k = 0; k < t->n_norm; k++) {
        const TokNormStep *st = &t->norm[k];
        if (st->kind == TOK_NORM_NFC) {
            if (tok_nfc_stable(t->arena + cur, cl))
                continue;
            char *nfc;
            size_t nl;
            if (tok_nfc(t->arena + cur, cl, &nfc, &nl))
                return ERR_NOMEM;
            if (arena_reserve(t, nl)) {
                free(nfc);
                return ERR_NOMEM;
            }
            cur = t->arena_len;
            memcpy(t->arena + cur, nfc, nl);
            t->arena_len += nl;
            cl = nl;
            free(nfc);
            continue;
        }
        if (st->kind == TOK_NORM_PREPEND) {
            if (cl == 0)
                continue;
            if (arena_reserve(t, st->alen + cl))
                return ERR_NOMEM;
            size_t no = t->arena_len;
            memcpy(t->arena + no, st->a, st->alen);
            memcpy(t->arena + no + st->alen, t->arena + cur, cl);
            t->arena_len += st->alen + cl;
            cur = no;
            cl += st->alen;
            continue;
        }
        /* REPLACE: count first, to reserve once */
        size_t count = 0;
        for (size_t i = 0; i + st->alen <= cl;) {
            if (memcmp(t->arena + cur + i, st->a, st->alen) == 0) {
                count++;
                i += st->alen;
            } else
                i++;
        }
        if (!count)
            continue;
        size_t nl = cl - count * st->alen + count * st->blen;
        if (arena_reserve(t, nl))
            return ERR_NOMEM;
        size_t no = t->arena_len, m = 0;
        const char *src = t->arena + cur;
        char *dst = t->arena + no;
        for (size_t i = 0; i < cl;) {
            if (i + st->alen <= cl && memcmp(src + i, st->a, st->alen) == 0) {
                memcpy(dst + m, st->b, st->blen);
                m += st->blen;
                i += st->alen;
            } else
                dst[m++] = src[i++];
        }
        t->arena_len += m;
        cur = no;
        cl = m;
    }
    *off = cur;
    *outlen = cl;
    return 0;
}

typedef struct {
    size_t s, e;
    bool match;
} Span;

/* Splits one piece by a regex into spans (HF's find_matches), then groups
 * them by the behavior. */
static int split_piece(Tokenizer *t, const TokPreStep *st, TokPiece p, TokPiece **out, size_t *nout, size_t *capout)
{
    const PCRE2_SPTR subj = (PCRE2_SPTR)(t->arena + p.off);
    size_t n = p.len;
    Span spans_local[64];
    Span *spans = spans_local;
    size_t ns = 0, cap = 64;
    int rc = 0;
#define SPAN_PUSH(S, E, M)                                                                 \
    do {                                                                                   \
        if (ns == cap) {                                                                   \
            size_t nc = cap * 2;                                                           \
            Span *q = spans == spans_local ? malloc(nc * sizeof *q) : realloc(spans, nc * sizeof *q); \
            if (!q) {                                                                      \
                rc = ERR_NOMEM;                                                        \
                goto out;                                                                  \
            }                                                                              \
            if (spans == spans_local)                                                      \
                memcpy(q, spans_local, sizeof spans_local);                                \
            spans = q;                                                                     \
            cap = nc;                                                                      \
        }                                                                                  \
        spans[ns++] = (Span){ (S), (E), (M) };                                             \
    } while (0)

    size_t prev = 0, start = 0;
    while (start <= n) {
        int m = st->jit ? pcre2_jit_match(st->re, subj, n, start, 0, t->md, NULL)
                        : pcre2_match(st->re, subj, n, start, 0, t->md, NULL);
        if (m == PCRE2_ERROR_NOMATCH)
            break;
        if (m < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(m, msg, sizeof msg);
            snprintf(t->errmsg, sizeof t->errmsg, "pre-tokenizer regex: %s", (const char *)msg);
            rc = ERR_REGEX;
            goto out;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > prev)
            SPAN_PUSH(prev, ms, false);
        SPAN_PUSH(ms, me, true);
        prev = me;
        if (me > ms)
            start = me;
        else {
            if (me >= n)
                break;
            start = me + (size_t)utf8_len(subj + me, n - me);
        }
    }
    if (prev < n)
        SPAN_PUSH(prev, n, false);

    if (st->invert)
        for (size_t i = 0; i < ns; i++)
            spans[i].match = !spans[i].match;

    /* group: written as pieces relative to p */
    switch (st->behavior) {
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < ns; i++)
            if ((rc = pieces_push(out, nout, capout,
                                  (TokPiece){ p.off + spans[i].s, spans[i].e - spans[i].s, p.first && spans[i].s == 0 })))
                goto out;
        break;
    case TOK_SPLIT_REMOVED:
        for (size_t i = 0; i < ns; i++)
            if (!spans[i].match &&
                (rc = pieces_push(out, nout, capout,
                                  (TokPiece){ p.off + spans[i].s, spans[i].e - spans[i].s, p.first && spans[i].s == 0 })))
                goto out;
        break;
    case TOK_SPLIT_MERGED_PREV:
    case TOK_SPLIT_CONTIGUOUS: {
        /* forward fold over spans into [s,e) groups (empty ones dropped later) */
        size_t gs = 0, ge = 0;
        bool have = false, prev_match = false;
        for (size_t i = 0; i < ns; i++) {
            bool join = st->behavior == TOK_SPLIT_MERGED_PREV ? (spans[i].match && !prev_match)
                                                               : (spans[i].match == prev_match);
            if (join && have)
                ge = spans[i].e;
            else {
                if (have &&
                    (rc = pieces_push(out, nout, capout, (TokPiece){ p.off + gs, ge - gs, p.first && gs == 0 })))
                    goto out;
                gs = spans[i].s;
                ge = spans[i].e;
                have = true;
            }
            prev_match = spans[i].match;
        }
        if (have && (rc = pieces_push(out, nout, capout, (TokPiece){ p.off + gs, ge - gs, p.first && gs == 0 })))
            goto out;
        break;
    }
    case TOK_SPLIT_MERGED_NEXT: {
        /* backward fold: a match joins the group to its right unless that
         * group started with a match */
        size_t base = *nout;
        size_t gs = 0, ge = 0;
        bool have = false, prev_match = false;
        for (size_t k = ns; k-- > 0;) {
            bool join = spans[k].match && !prev_match;
            if (join && have)
                gs = spans[k].s;
            else {
                if (have &&
                    (rc = pieces_push(out, nout, capout, (TokPiece){ p.off + gs, ge - gs, p.first && gs == 0 })))
                    goto out;
                gs = spans[k].s;
                ge = spans[k].e;
                have = true;
            }
            prev_match = spans[k].match;
        }
        if (have && (rc = pieces_push(out, nout, capout, (TokPiece){ p.off + gs, ge - gs, p.first && gs == 0 })))
            goto out;
        /* reverse what was pushed */
        for (size_t a = base, b = *nout; a + 1 < b; a++, b--) {
            TokPiece tmp = (*out)[a];
            (*out)[a] = (*out)[b - 1];
            (*out)[b - 1] = tmp;
        }
        break;
    }
    }
out:
    if (spans != spans_local)
        free(spans);
    return rc;
#undef SPAN_PUSH
}

static int metaspace_piece(Tokenizer *t, const TokPreStep *st, TokPiece p, TokPiece **out, size_t *nout,
                           size_t *capout)
{
    /* replace spaces, then maybe prepend (HF: after the replacement, so a
     * leading space counts as the prefix) */
    size_t spaces = 0;
    for (size_t i = 0; i < p.len; i++)
        spaces += t->arena[p.off + i] == ' ';
    size_t nl = p.len + spaces * (st->repl_len - 1) + st->repl_len;
    if (arena_reserve(t, nl))
        return ERR_NOMEM;
    size_t no = t->arena_len, m = 0;
    char *dst = t->arena + no;
    const char *src = t->arena + p.off;
    bool starts = p.len > 0 && (src[0] == ' ' || (p.len >= st->repl_len && memcmp(src, st->repl, st->repl_len) == 0));
    bool prepend = !starts && (st->scheme == TOK_PREPEND_ALWAYS || (st->scheme == TOK_PREPEND_FIRST && p.first));
    if (prepend) {
        memcpy(dst, st->repl, st->repl_len);
        m += st->repl_len;
    }
    for (size_t i = 0; i < p.len; i++) {
        if (src[i] == ' ') {
            memcpy(dst + m, st->repl, st->repl_len);
            m += st->repl_len;
        } else
            dst[m++] = src[i];
    }
    t->arena_len += m;
    if (!st->split)
        return pieces_push(out, nout, capout, (TokPiece){ no, m, p.first });
    /* split before every replacement char (MergedWithNext) */
    size_t gs = 0;
    for (size_t i = 0; i < m;) {
        if (i + st->repl_len <= m && memcmp(dst + i, st->repl, st->repl_len) == 0) {
            if (i > gs) {
                int rc = pieces_push(out, nout, capout, (TokPiece){ no + gs, i - gs, p.first && gs == 0 });
                if (rc)
                    return rc;
            }
            gs = i;
            i += st->repl_len;
        } else
            i++;
    }
    return pieces_push(out, nout, capout, (TokPiece){ no + gs, m - gs, p.first && gs == 0 });
}

static int encode_segment(Tokenizer *t, const char *text, size_t len, bool first, TokIds *out)
{
    if (len == 0)
        return 0;
    int rc;
    t->arena_len = 0;
    size_t off, nl;
    if ((rc = normalize(t, text, len, &off, &nl)))
        return rc;
    t->n_pieces = 0;
    if ((rc = pieces_push(&t->pieces, &t->n_pieces, &t->cap_pieces, (TokPiece){ off, nl, first })))
        return rc;
    for (int k = 0; k < t->n_pre; k++) {
        const TokPreStep *st = &t->pre[k];
        size_t n2 = 0;
        for (size_t i = 0; i < t->n_pieces; i++) {
            TokPiece p = t->pieces[i];
            if (st->kind == TOK_PRE_SPLIT)
                rc = split_piece(t, st, p, &t->pieces2, &n2, &t->cap_pieces2);
            else if (st->kind == TOK_PRE_METASPACE)
                rc = metaspace_piece(t, st, p, &t->pieces2, &n2, &t->cap_pieces2);
            else { /* PREFIX_SPACE */
                if (t->arena[p.off] != ' ') {
                    if (arena_reserve(t, p.len + 1))
                        return ERR_NOMEM;
                    size_t no = t->arena_len;
                    t->arena[no] = ' ';
                    memcpy(t->arena + no + 1, t->arena + p.off, p.len);
                    t->arena_len += p.len + 1;
                    p.off = no;
                    p.len++;
                }
                rc = pieces_push(&t->pieces2, &n2, &t->cap_pieces2, p);
            }
            if (rc)
                return rc;
        }
        TokPiece *tmp = t->pieces;
        t->pieces = t->pieces2;
        t->pieces2 = tmp;
        size_t tc = t->cap_pieces;
        t->cap_pieces = t->cap_pieces2;
        t->cap_pieces2 = tc;
        t->n_pieces = n2;
    }
    for (size_t i = 0; i < t->n_pieces; i++) {
        const char *w = t->arena + t->pieces[i].off;
        size_t n = t->pieces[i].len, start = 0;
        if (t->meta_split) /* cut before a "▁" that follows another character */
            for (size_t k = 1; k + 3 <= n; k++)
                if (w[k] == '\xE2' && w[k + 1] == '\x96' && w[k + 2] == '\x81' &&
                    !(k >= 3 && w[k - 3] == '\xE2' && w[k - 2] == '\x96' && w[k - 1] == '\x81')) {
                    if ((rc = tok_encode_word(t, w + start, k - start, out)))
                        return rc;
                    start = k;
                }
        if ((rc = tok_encode_word(t, w + start, n - start, out)))
            return rc;
    }
    return 0;
}

/* Longest allowed added token starting at text[i], or -1; *end set. */
static int match_added(const Tokenizer *t, const char *text, size_t len, size_t i, bool parse_special, size_t *end)
{
    int best = -1;
    int cur = 0;
    for (size_t j = i; j < len; j++) {
        int c = t->trie[cur].first_child;
        while (c >= 0 && t->trie[c].byte != (uint8_t)text[j])
            c = t->trie[c].next_sibling;
        if (c < 0)
            break;
        cur = c;
        int k = t->trie[cur].added;
        if (k < 0)
            continue;
        const TokAdded *a = &t->added[k];
        if (a->special && !parse_special)
            continue;
        if (a->single_word && ((i > 0 && is_word_byte((uint8_t)text[i - 1])) ||
                               (j + 1 < len && is_word_byte((uint8_t)text[j + 1]))))
            continue;
        best = k;
        *end = j + 1;
    }
    return best;
}

int tok_encode(Tokenizer *t, const char *text, size_t len, unsigned flags, TokIds *out)
{
    if (!t || (!text && len) || !out)
        return ERR_ARG;
    size_t n0 = out->n;
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    t->errmsg[0] = 0;
    bool parse_special = flags & TOK_ENC_PARSE_SPECIAL;
    if ((flags & TOK_ENC_ADD_SPECIAL) && t->add_bos && (rc = ids_push(out, t->bos)))
        goto fail;
    size_t seg = 0;
    if (t->n_added) {
        for (size_t i = 0; i < len; i++) {
            uint8_t c = (uint8_t)text[i];
            if (!(t->added_first[c >> 3] & (1u << (c & 7))))
                continue;
            size_t end = 0;
            int k = match_added(t, text, len, i, parse_special, &end);
            if (k < 0)
                continue;
            const TokAdded *a = &t->added[k];
            size_t le = i;
            if (a->lstrip)
                while (le > seg && is_space_byte((uint8_t)text[le - 1]))
                    le--;
            if ((rc = encode_segment(t, text + seg, le - seg, seg == 0, out)))
                goto fail;
            if ((rc = ids_push(out, a->id)))
                goto fail;
            seg = end;
            if (a->rstrip)
                while (seg < len && is_space_byte((uint8_t)text[seg]))
                    seg++;
            i = seg - 1;
        }
    }
    if ((rc = encode_segment(t, text + seg, len - seg, seg == 0, out)))
        goto fail;
    if ((flags & TOK_ENC_ADD_SPECIAL) && t->add_eos && (rc = ids_push(out, t->eos)))
        goto fail;
    pthread_mutex_unlock(&t->mu);
    return 0;
fail:
    if (!t->errmsg[0])
        snprintf(t->errmsg, sizeof t->errmsg, "%s", err_str(rc));
    out->n = n0;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

const char *tok_last_error(const Tokenizer *t)
{
    return t && t->errmsg[0] ? t->errmsg : "no error";
}
