/*
 * base/strbuf.h — a growable byte buffer for building strings.
 *
 *   StrBuf: data ──► [ b y t e s ... \0 | spare ]
 *                     <──── len ────>
 *                     <──────── cap ────────────>
 *
 * Invariant: when data is non-NULL, data[len] == '\0' (so data is always a C
 * string), and len < cap. A zeroed StrBuf (sb_init, or `StrBuf b = {0}`) is
 * empty and owns nothing.
 *
 * Out of memory: an append that cannot grow the buffer leaves it as it was
 * and sets `oom`; later appends still try. Callers that must not lose bytes
 * check `oom` once at the end instead of after every call.
 *
 * Ownership: the buffer owns data; sb_free releases it, sb_detach hands it
 * to the caller (who frees it with free()). Not thread-safe; no global state.
 */
#ifndef SGL_BASE_STRBUF_H
#define SGL_BASE_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *data;
    size_t len, cap;
    bool oom;         /* an append failed for lack of memory */
} StrBuf;

void sb_init(StrBuf *b);
/* Makes room for `extra` more bytes (plus the NUL). 0, or -1 (and oom). */
int sb_reserve(StrBuf *b, size_t extra);
void sb_append(StrBuf *b, const char *s, size_t len);
void sb_appends(StrBuf *b, const char *s);   /* a C string */
void sb_appendc(StrBuf *b, char c);
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vprintf(StrBuf *b, const char *fmt, va_list ap);
/* Drops the bytes from `len` on (len <= b->len). */
void sb_truncate(StrBuf *b, size_t len);
void sb_free(StrBuf *b);
/* The bytes as a malloc'd C string (never NULL unless out of memory: an
 * empty buffer gives ""); the buffer is left empty. */
char *sb_detach(StrBuf *b);

#endif
