/*
 * lang/diag.c — diagnostics: a position, a message, and the source line they
 * point into (Diag in lang/ast.h).
 *
 * diag_format renders the form every sgl tool prints:
 *
 *   prog.sgl:2:9: error: unexpected '='
 *       let = 3
 *           ^
 *
 * Each line ends with '\n'. The caret is placed under the column's
 * character: tabs before it are copied so it lines up in a terminal, and a
 * multi-byte UTF-8 character counts as one cell.
 *
 * A Diag owns its strings (malloc'd); diag_clear frees them. If memory runs
 * out while filling one, the fields that could not be copied stay NULL.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"

static char *copy_bytes(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* The text of 1-based line `line` of src, without its line break. */
static char *source_line(const char *src, size_t len, int line) {
    if (!src || line < 1) return NULL;
    size_t i = 0;
    for (int l = 1; l < line; l++) {
        const char *nl = memchr(src + i, '\n', len - i);
        if (!nl) return NULL;
        i = (size_t)(nl - src) + 1;
    }
    if (i > len) return NULL;
    const char *nl = memchr(src + i, '\n', len - i);
    size_t end = nl ? (size_t)(nl - src) : len;
    if (end > i && src[end - 1] == '\r') end--;
    return copy_bytes(src + i, end - i);
}

void diag_set(Diag *d, const char *file, int line, int col, const char *src, size_t src_len,
              const char *fmt, ...) {
    diag_clear(d);
    d->file = file ? copy_bytes(file, strlen(file)) : NULL;
    d->line = line;
    d->col = col;
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0) {
        d->message = malloc((size_t)n + 1);
        if (d->message) vsnprintf(d->message, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    d->source_line = line > 0 ? source_line(src, src_len, line) : NULL;
}

char *diag_format(const Diag *d) {
    const char *file = d->file ? d->file : "<input>";
    const char *msg = d->message ? d->message : "error";
    size_t cap = strlen(file) + strlen(msg) + 64;
    if (d->source_line) cap += 2 * strlen(d->source_line) + (size_t)(d->col > 0 ? d->col : 0) + 4;
    char *out = malloc(cap);
    if (!out) return NULL;
    int n;
    if (d->line > 0 && d->col > 0)
        n = snprintf(out, cap, "%s:%d:%d: error: %s\n", file, d->line, d->col, msg);
    else if (d->line > 0)
        n = snprintf(out, cap, "%s:%d: error: %s\n", file, d->line, msg);
    else
        n = snprintf(out, cap, "%s: error: %s\n", file, msg);
    size_t len = (size_t)n;
    if (d->source_line && d->line > 0 && d->col > 0) {
        size_t sl = strlen(d->source_line);
        memcpy(out + len, d->source_line, sl);
        len += sl;
        out[len++] = '\n';
        /* Walk the bytes before the column: one cell per character. */
        for (size_t i = 0; i + 1 < (size_t)d->col; i++) {
            unsigned char c = i < sl ? (unsigned char)d->source_line[i] : ' ';
            if ((c & 0xC0) == 0x80) continue;
            out[len++] = c == '\t' ? '\t' : ' ';
        }
        out[len++] = '^';
        out[len++] = '\n';
    }
    out[len] = '\0';
    return out;
}

void diag_clear(Diag *d) {
    if (!d) return;
    free(d->file);
    free(d->message);
    free(d->source_line);
    memset(d, 0, sizeof *d);
}
