/*
 * runtime/detok.c — streaming detokenization with stop strings (see
 * detok.h for the pipeline). Owns the three buffers of one generation:
 * pend (unfinished UTF-8 bytes), hold (a possible stop-string prefix) and
 * out (released text).
 */
#include "runtime/detok.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

struct Detok {
    const Tokenizer *tok;
    unsigned flags;
    char **stops;
    size_t *stop_len;
    int nstops;
    size_t max_stop;
    Buf pend, hold, out;
    size_t released;    /* out.n before the current call */
    bool started;       /* a non-empty piece was seen (leading-space strip) */
    int stop_index;
};

static int buf_add(Buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q)
            return ERR_NOMEM;
        b->p = q;
        b->cap = nc;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static void buf_drop_front(Buf *b, size_t n)
{
    if (n == 0)
        return;
    memmove(b->p, b->p + n, b->n - n);
    b->n -= n;
    b->p[b->n] = 0;
}

int detok_new(const Tokenizer *t, const char *const *stops, int nstops, unsigned flags, Detok **out)
{
    if (!t || !out || nstops < 0 || (nstops && !stops))
        return ERR_ARG;
    *out = NULL;
    Detok *d = calloc(1, sizeof *d);
    if (!d)
        return ERR_NOMEM;
    d->tok = t;
    d->flags = flags;
    d->stop_index = -1;
    if (nstops) {
        d->stops = calloc((size_t)nstops, sizeof *d->stops);
        d->stop_len = calloc((size_t)nstops, sizeof *d->stop_len);
        if (!d->stops || !d->stop_len) {
            detok_free(d);
            return ERR_NOMEM;
        }
        d->nstops = nstops;
        for (int i = 0; i < nstops; i++) {
            size_t n = stops[i] ? strlen(stops[i]) : 0;
            d->stops[i] = malloc(n + 1);
            if (!d->stops[i]) {
                detok_free(d);
                return ERR_NOMEM;
            }
            memcpy(d->stops[i], n ? stops[i] : "", n + 1);
            d->stop_len[i] = n;
            if (n > d->max_stop)
                d->max_stop = n;
        }
    }
    if (buf_add(&d->out, "", 0)) {
        detok_free(d);
        return ERR_NOMEM;
    }
    *out = d;
    return 0;
}

void detok_free(Detok *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->nstops; i++)
        free(d->stops[i]);
    free(d->stops);
    free(d->stop_len);
    free(d->pend.p);
    free(d->hold.p);
    free(d->out.p);
    free(d);
}

void detok_reset(Detok *d)
{
    d->pend.n = d->hold.n = d->out.n = 0;
    if (d->out.p)
        d->out.p[0] = 0;
    d->released = 0;
    d->started = false;
    d->stop_index = -1;
}

/* Valid continuation-byte range for byte k (1-based) of a sequence led by c. */
static bool cont_ok(uint8_t c, int k, uint8_t b)
{
    if (k == 1) {
        if (c == 0xE0)
            return b >= 0xA0 && b <= 0xBF;
        if (c == 0xED)
            return b >= 0x80 && b <= 0x9F;
        if (c == 0xF0)
            return b >= 0x90 && b <= 0xBF;
        if (c == 0xF4)
            return b >= 0x80 && b <= 0x8F;
    }
    return b >= 0x80 && b <= 0xBF;
}

static int seq_len(uint8_t c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0; /* never valid as a lead */
}

/* Moves complete characters from pend to hold; each maximal invalid
 * subsequence becomes one U+FFFD (as Rust's from_utf8_lossy and Python's
 * errors="replace" do). With final, an unfinished tail is invalid too. */
static int drain_pend(Detok *d, bool final)
{
    const uint8_t *p = (const uint8_t *)d->pend.p;
    size_t n = d->pend.n, i = 0, good = 0;
    int rc;
    while (i < n) {
        int len = seq_len(p[i]);
        if (len == 1) {
            i++;
            continue;
        }
        if (len == 0) {
            if ((rc = buf_add(&d->hold, (const char *)p + good, i - good)) ||
                (rc = buf_add(&d->hold, "\xEF\xBF\xBD", 3)))
                return rc;
            good = ++i;
            continue;
        }
        int k = 1;
        while (k < len && i + (size_t)k < n && cont_ok(p[i], k, p[i + (size_t)k]))
            k++;
        if (k == len) {
            i += (size_t)len;
            continue;
        }
        if (i + (size_t)k >= n && !final)
            break; /* unfinished: wait for more bytes */
        if ((rc = buf_add(&d->hold, (const char *)p + good, i - good)) ||
            (rc = buf_add(&d->hold, "\xEF\xBF\xBD", 3)))
            return rc;
        i += (size_t)k;
        good = i;
    }
    if ((rc = buf_add(&d->hold, (const char *)p + good, i - good)))
        return rc;
    buf_drop_front(&d->pend, i);
    return 0;
}

/* Looks for a stop string in hold, then releases what cannot be part of
 * one. from: where new text began in hold (earlier text was already checked
 * and is shorter than any stop string). */
static int settle(Detok *d, size_t from, bool final)
{
    int rc;
    size_t best_pos = SIZE_MAX;
    int best = -1;
    size_t start = from > d->max_stop ? from - d->max_stop : 0;
    for (int s = 0; s < d->nstops; s++) {
        size_t sl = d->stop_len[s];
        if (!sl || sl > d->hold.n)
            continue;
        const char *hit = memmem(d->hold.p + start, d->hold.n - start, d->stops[s], sl);
        if (hit && (size_t)(hit - d->hold.p) < best_pos) {
            best_pos = (size_t)(hit - d->hold.p);
            best = s;
        }
    }
    if (best >= 0) {
        size_t keep = best_pos + ((d->flags & DETOK_KEEP_STOP) ? d->stop_len[best] : 0);
        if ((rc = buf_add(&d->out, d->hold.p, keep)))
            return rc;
        d->hold.n = 0;
        d->pend.n = 0;
        d->stop_index = best;
        return DETOK_STOPPED;
    }
    /* longest suffix of hold that is a proper prefix of a stop string */
    size_t keep = 0;
    if (!final) {
        for (int s = 0; s < d->nstops; s++) {
            size_t sl = d->stop_len[s];
            size_t maxk = sl ? sl - 1 : 0;
            if (maxk > d->hold.n)
                maxk = d->hold.n;
            for (size_t k = maxk; k > keep; k--)
                if (memcmp(d->hold.p + d->hold.n - k, d->stops[s], k) == 0) {
                    keep = k;
                    break;
                }
        }
    }
    size_t rel = d->hold.n - keep;
    if ((rc = buf_add(&d->out, d->hold.p, rel)))
        return rc;
    buf_drop_front(&d->hold, rel);
    return DETOK_MORE;
}

static void delta(Detok *d, const char **text, size_t *len)
{
    if (text)
        *text = d->out.p + d->released;
    if (len)
        *len = d->out.n - d->released;
    d->released = d->out.n;
}

int detok_feed(Detok *d, int32_t id, const char **text, size_t *len)
{
    d->released = d->out.n;
    if (d->stop_index >= 0) {
        delta(d, text, len);
        return DETOK_STOPPED;
    }
    size_t pl;
    const char *piece = tok_token_piece(d->tok, id, &pl);
    if (!piece) {
        delta(d, text, len);
        return ERR_ARG;
    }
    if ((d->flags & DETOK_SKIP_SPECIAL) && tok_is_special(d->tok, id))
        pl = 0;
    if (pl && !d->started) {
        d->started = true;
        if ((d->flags & DETOK_STRIP_LEADING_SPACE) && piece[0] == ' ') {
            piece++;
            pl--;
        }
    }
    int rc;
    size_t from = d->hold.n;
    if ((rc = buf_add(&d->pend, piece, pl)) || (rc = drain_pend(d, false)) || (rc = settle(d, from, false)) < 0) {
        delta(d, text, len);
        return rc;
    }
    delta(d, text, len);
    return rc;
}

int detok_flush(Detok *d, const char **text, size_t *len)
{
    d->released = d->out.n;
    if (d->stop_index >= 0) {
        delta(d, text, len);
        return DETOK_STOPPED;
    }
    int rc;
    size_t from = d->hold.n;
    if ((rc = drain_pend(d, true)) || (rc = settle(d, from, true)) < 0) {
        delta(d, text, len);
        return rc;
    }
    delta(d, text, len);
    return rc;
}

int detok_stop_index(const Detok *d) { return d ? d->stop_index : -1; }

const char *detok_text(const Detok *d, size_t *len)
{
    if (len)
        *len = d->out.n;
    return d->out.p;
}

size_t detok_pending(const Detok *d) { return d->pend.n + d->hold.n; }
