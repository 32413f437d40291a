/*
 * base/strbuf.c — the growable byte buffer (see strbuf.h).
 */
#include "base/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_init(StrBuf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

int sb_reserve(StrBuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return 0;
    if (extra > ((size_t)-1) / 2 - b->len) { b->oom = true; return -1; }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) { b->oom = true; return -1; }
    b->data = d;
    b->cap = cap;
    return 0;
}

void sb_append(StrBuf *b, const char *s, size_t len)
{
    if (sb_reserve(b, len)) return;
    if (len) memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void sb_appends(StrBuf *b, const char *s) { sb_append(b, s, strlen(s)); }

void sb_appendc(StrBuf *b, char c)
{
    if (b->len + 2 <= b->cap) {   /* the common case, without the call */
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return;
    }
    sb_append(b, &c, 1);
}

void sb_vprintf(StrBuf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) { va_end(ap2); return; }
    if ((size_t)n < sizeof small) {
        sb_append(b, small, (size_t)n);
    } else if (sb_reserve(b, (size_t)n) == 0) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void sb_printf(StrBuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

void sb_truncate(StrBuf *b, size_t len)
{
    if (len >= b->len) return;
    b->len = len;
    b->data[len] = '\0';
}

void sb_free(StrBuf *b)
{
    free(b->data);
    sb_init(b);
}

char *sb_detach(StrBuf *b)
{
    char *s = b->data;
    if (!s) s = calloc(1, 1);
    sb_init(b);
    return s;
}
