/* base/suggest.c — see base/suggest.h. */
#include "base/suggest.h"

#include <stdio.h>
#include <string.h>

#define MAXW 64   /* longer words are compared on their first MAXW bytes */

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Optimal string alignment distance, three rows of the DP table. */
static int distance(const char *a, size_t na, const char *b, size_t nb)
{
    int rows[3][MAXW + 1];
    int *pp = rows[0], *p = rows[1], *c = rows[2];
    for (size_t j = 0; j <= nb; j++) p[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        c[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int same = lower((unsigned char)a[i - 1]) == lower((unsigned char)b[j - 1]);
            int d = p[j - 1] + !same;
            if (p[j] + 1 < d) d = p[j] + 1;
            if (c[j - 1] + 1 < d) d = c[j - 1] + 1;
            if (i > 1 && j > 1 && lower((unsigned char)a[i - 1]) == lower((unsigned char)b[j - 2]) &&
                lower((unsigned char)a[i - 2]) == lower((unsigned char)b[j - 1]) && pp[j - 2] + 1 < d)
                d = pp[j - 2] + 1;
            c[j] = d;
        }
        int *t = pp;
        pp = p, p = c, c = t;
    }
    return p[nb];
}

static int prefix_of(const char *a, size_t na, const char *b, size_t nb)
{
    if (na > nb || na < 3) return 0;
    for (size_t i = 0; i < na; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
    return 1;
}

const char *suggest(const char *word, const char *const *cands, size_t n)
{
    if (!word || !*word) return NULL;
    size_t nw = strlen(word);
    if (nw > MAXW) nw = MAXW;
    int limit = nw <= 4 ? 1 : nw <= 8 ? 2 : 3;
    const char *best = NULL;
    int best_d = 1 << 30;
    for (size_t i = 0; i < n; i++) {
        const char *c = cands[i];
        if (!c || !*c) continue;
        size_t nc = strlen(c);
        if (nc > MAXW) nc = MAXW;
        if (nc == nw && strncmp(c, word, nw) == 0) continue;   /* the word itself is no suggestion */
        int d = distance(word, nw, c, nc);
        int ok = d <= limit || prefix_of(word, nw, c, nc) || prefix_of(c, nc, word, nw);
        if (ok && d < best_d) best = c, best_d = d;
    }
    return best;
}

char *suggest_append(char *buf, size_t cap, const char *word, const char *const *cands, size_t n)
{
    const char *s = suggest(word, cands, n);
    if (s && cap) {
        size_t len = strlen(buf);
        if (len < cap) snprintf(buf + len, cap - len, " (did you mean '%s'?)", s);
    }
    return buf;
}
