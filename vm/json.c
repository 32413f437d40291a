/*
 * vm/json.c — a recursive-descent JSON parser producing SGL values.
 *
 * Written here rather than through jansson because SGL needs what jansson
 * does not give directly: integers past int64 as floats instead of an error,
 * and error positions as line/column of the input.
 */
#include "vm/json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Heap *heap;
    const char *s, *p, *end;
    char *err;
    size_t errsize;
    int depth;
} Parser;

static int fail(Parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(Parser *ps, const char *fmt, ...)
{
    size_t line = 1, col = 1;
    for (const char *q = ps->s; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)*q & 0xC0) != 0x80) {
            col++;
        }
    }
    int n = snprintf(ps->err, ps->errsize, "line %zu, column %zu: ", line, col);
    if (n >= 0 && (size_t)n < ps->errsize) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err + n, ps->errsize - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void skip_ws(Parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static const char *what_here(Parser *ps)
{
    return ps->p >= ps->end ? "end of input" : "unexpected character";
}

static int parse_value(Parser *ps, Value *out);

static int hex4(Parser *ps, unsigned *out)
{
    if (ps->end - ps->p < 4) return fail(ps, "incomplete \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = ps->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return fail(ps, "bad \\u escape");
    }
    ps->p += 4;
    *out = v;
    return 0;
}

static void put_utf8(StrBuf *b, unsigned cp)
{
    char u[UTF8_MAX];
    sb_append(b, u, (size_t)utf8_encode(cp, u));
}

/* At the opening quote. */
static int parse_string(Parser *ps, ObjString **out)
{
    ps->p++;
    StrBuf b;
    sb_init(&b);
    const char *run = ps->p;
    for (;;) {
        if (ps->p >= ps->end) {
            sb_free(&b);
            return fail(ps, "unterminated string");
        }
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') break;
        if (c < 0x20) {
            sb_free(&b);
            return fail(ps, "control character in string");
        }
        if (c != '\\') {
            ps->p++;
            continue;
        }
        sb_append(&b, run, (size_t)(ps->p - run));
        ps->p++;
        if (ps->p >= ps->end) {
            sb_free(&b);
            return fail(ps, "unterminated string");
        }
        char e = *ps->p++;
        switch (e) {
        case '"': sb_appendc(&b, '"'); break;
        case '\\': sb_appendc(&b, '\\'); break;
        case '/': sb_appendc(&b, '/'); break;
        case 'b': sb_appendc(&b, '\b'); break;
        case 'f': sb_appendc(&b, '\f'); break;
        case 'n': sb_appendc(&b, '\n'); break;
        case 'r': sb_appendc(&b, '\r'); break;
        case 't': sb_appendc(&b, '\t'); break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(ps, &cp) < 0) { sb_free(&b); return -1; }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                    sb_free(&b);
                    return fail(ps, "unpaired surrogate in \\u escape");
                }
                ps->p += 2;
                if (hex4(ps, &lo) < 0) { sb_free(&b); return -1; }
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    sb_free(&b);
                    return fail(ps, "unpaired surrogate in \\u escape");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                sb_free(&b);
                return fail(ps, "unpaired surrogate in \\u escape");
            }
            put_utf8(&b, cp);
            break;
        }
        default:
            ps->p--;
            sb_free(&b);
            return fail(ps, "bad escape \\%c", e);
        }
        run = ps->p;
    }
    sb_append(&b, run, (size_t)(ps->p - run));
    ps->p++;  /* closing quote */
    const char *data = b.data ? b.data : "";
    if (!utf8_valid(data, b.len)) {
        sb_free(&b);
        return fail(ps, "string is not valid UTF-8");
    }
    *out = sb_to_string(ps->heap, &b);
    return *out ? 0 : fail(ps, "out of memory");
}

static int parse_number(Parser *ps, Value *out)
{
    const char *start = ps->p, *q = ps->p;
    bool integral = true;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || *q < '0' || *q > '9') {
        ps->p = q;
        return fail(ps, "bad number: digits expected");
    }
    if (*q == '0') q++;
    else while (q < ps->end && *q >= '0' && *q <= '9') q++;
    if (q < ps->end && *q == '.') {
        integral = false;
        q++;
        if (q >= ps->end || *q < '0' || *q > '9') {
            ps->p = q;
            return fail(ps, "bad number: digits expected after '.'");
        }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        integral = false;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || *q < '0' || *q > '9') {
            ps->p = q;
            return fail(ps, "bad number: digits expected in exponent");
        }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    /* strtoll/strtod need a NUL-terminated copy: the input may not end here */
    size_t n = (size_t)(q - start);
    char small[64], *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) return fail(ps, "out of memory");
    memcpy(buf, start, n);
    buf[n] = '\0';
    if (integral) {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno == 0) *out = val_int(v);
        else integral = false;  /* too big for int64: a float, as JavaScript reads it */
    }
    if (!integral) *out = val_float(strtod(buf, NULL));
    if (buf != small) free(buf);
    ps->p = q;
    return 0;
}

static bool literal(Parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return false;
    ps->p += n;
    return true;
}

static int parse_array(Parser *ps, Value *out)
{
    ps->p++;
    ObjList *l = list_new(ps->heap, 0);
    if (!l) return fail(ps, "out of memory");
    *out = val_obj(l);
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return 0;
    }
    for (;;) {
        Value item;
        if (parse_value(ps, &item) < 0) return -1;
        list_push(l, item);
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return 0;
        }
        return fail(ps, "expected ',' or ']' in array, found %s", what_here(ps));
    }
}

static int parse_object(Parser *ps, Value *out)
{
    ps->p++;
    ObjMap *m = map_new(ps->heap);
    if (!m) return fail(ps, "out of memory");
    *out = val_obj(m);
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return 0;
    }
    for (;;) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"')
            return fail(ps, "expected a string key in object, found %s", what_here(ps));
        ObjString *key;
        if (parse_string(ps, &key) < 0) return -1;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "expected ':' after object key");
        ps->p++;
        Value v;
        if (parse_value(ps, &v) < 0) return -1;
        map_set(m, val_obj(key), v);
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return 0;
        }
        return fail(ps, "expected ',' or '}' in object, found %s", what_here(ps));
    }
}

static int parse_value(Parser *ps, Value *out)
{
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps, "expected a value, found end of input");
    char c = *ps->p;
    if (c == '{' || c == '[') {
        if (ps->depth >= JSON_MAX_DEPTH) return fail(ps, "nesting deeper than %d", JSON_MAX_DEPTH);
        ps->depth++;
        int rc = c == '{' ? parse_object(ps, out) : parse_array(ps, out);
        ps->depth--;
        return rc;
    }
    if (c == '"') {
        ObjString *s;
        if (parse_string(ps, &s) < 0) return -1;
        *out = val_obj(s);
        return 0;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(ps, out);
    if (literal(ps, "true")) { *out = val_bool(true); return 0; }
    if (literal(ps, "false")) { *out = val_bool(false); return 0; }
    if (literal(ps, "null")) { *out = val_nil(); return 0; }
    if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
        return fail(ps, "unexpected character '%c'", c);
    return fail(ps, "unexpected byte 0x%02x", (unsigned char)c);
}

int json_decode(Heap *h, const char *s, size_t len, Value *out, char *err, size_t errsize)
{
    Parser ps = {h, s, s, s + len, err, errsize, 0};
    if (errsize) err[0] = '\0';
    *out = val_nil();
    Value v;
    if (parse_value(&ps, &v) < 0) return -1;
    skip_ws(&ps);
    if (ps.p < ps.end) return fail(&ps, "unexpected text after the JSON value");
    *out = v;
    return 0;
}
