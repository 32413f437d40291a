/*
 * vm/json.c — JSON text to SGL values and back: a recursive-descent reader
 * and a recursive writer (rules in vm/json.h).
 *
 * Owns no memory past a call: values are allocated on the caller's heap,
 * text on the caller's StrBuf. Written here rather than through jansson
 * because SGL values need what jansson does not give: integers past int64
 * read as the nearest float instead of an error, insertion-ordered maps
 * straight on the VM heap, and NaN/functions/states handled by the
 * JsonMode rules.
 */
#include "vm/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* ------------------------------------------------------------------ */
/* reader                                                              */

/* Invariant: s <= p <= end; depth is the number of containers open
 * around p. */
typedef struct {
    Heap *heap;
    const char *s, *p, *end;
    JsonError *err;
    int depth;
} Parser;

static int fail(Parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fills in the error at the parser's position; returns -1. */
static int fail(Parser *ps, const char *fmt, ...)
{
    int line = 1, col = 1;
    for (const char *q = ps->s; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)*q & 0xC0) != 0x80) {
            col++;
        }
    }
    ps->err->line = line;
    ps->err->col = col;
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(ps->err->msg, sizeof ps->err->msg, fmt, ap);
    va_end(ap);
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

/* After "\u": one escape, or a surrogate pair of two, as a code point. A
 * lone surrogate is reported at the backslash of its escape. */
static int unicode_escape(Parser *ps, unsigned *cp)
{
    const char *escape = ps->p - 2;
    unsigned lo;
    if (hex4(ps, cp) < 0) return -1;
    if (*cp >= 0xD800 && *cp <= 0xDBFF && ps->end - ps->p >= 2 && ps->p[0] == '\\' && ps->p[1] == 'u') {
        ps->p += 2;
        if (hex4(ps, &lo) < 0) return -1;
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
            return 0;
        }
    }
    if (*cp < 0xD800 || *cp > 0xDFFF) return 0;
    ps->p = escape;
    return fail(ps, "unpaired surrogate in \\u escape");
}

/* At the opening quote. Raw bytes are checked as UTF-8 where they stand,
 * so an error points at the bad byte; escapes always give valid UTF-8. */
static int parse_string(Parser *ps, ObjString **out)
{
    ps->p++;
    StrBuf b;
    sb_init(&b);
    const char *run = ps->p;   /* bytes since the last escape, copied as they are */
    for (;;) {
        if (ps->p >= ps->end) goto unterminated;
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') break;
        if (c < 0x20) {
            sb_free(&b);
            return fail(ps, "control character in string");
        }
        if (c >= 0x80) {
            uint32_t cp;
            int n = utf8_decode(ps->p, (size_t)(ps->end - ps->p), &cp);
            if (n == 0) {
                sb_free(&b);
                return fail(ps, "invalid UTF-8 (byte 0x%02X)", c);
            }
            ps->p += n;
            continue;
        }
        if (c != '\\') {
            ps->p++;
            continue;
        }
        sb_append(&b, run, (size_t)(ps->p - run));
        ps->p++;
        if (ps->p >= ps->end) goto unterminated;
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
            unsigned cp;
            if (unicode_escape(ps, &cp) < 0) {
                sb_free(&b);
                return -1;
            }
            char u[UTF8_MAX];
            sb_append(&b, u, (size_t)utf8_encode(cp, u));
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
    if (b.oom) {
        sb_free(&b);
        return fail(ps, "out of memory");
    }
    *out = sb_to_string(ps->heap, &b);
    return *out ? 0 : fail(ps, "out of memory");
unterminated:
    sb_free(&b);
    return fail(ps, "unterminated string");
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
        else integral = false;  /* beyond int64: the nearest float (vm/json.h) */
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
        if (ps->depth >= VAL_MAX_DEPTH) return fail(ps, "nesting deeper than %d", VAL_MAX_DEPTH);
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
    return fail(ps, "unexpected byte 0x%02X", (unsigned char)c);
}

int json_decode(Heap *h, const char *s, size_t len, Value *out, JsonError *err)
{
    Parser ps = {h, s, s, s + len, err, 0};
    err->line = err->col = 0;
    err->msg[0] = '\0';
    *out = val_nil();
    Value v;
    if (parse_value(&ps, &v) < 0) return -1;
    skip_ws(&ps);
    if (ps.p < ps.end) return fail(&ps, "unexpected text after the JSON value");
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* writer                                                              */

int json_quote(StrBuf *b, const char *s, size_t len)
{
    int rc = 0;
    sb_appendc(b, '"');
    size_t run = 0;  /* bytes written as they are are flushed in runs from here */
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            uint32_t cp;
            int n = utf8_decode(s + i, len - i, &cp);
            if (n > 0) {
                i += (size_t)n;
                continue;
            }
            sb_append(b, s + run, i - run);
            sb_append(b, "\xEF\xBF\xBD", 3);  /* U+FFFD */
            run = ++i;
            rc = -1;
            continue;
        }
        const char *esc;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c >= 0x20) {
                i++;
                continue;
            }
            esc = NULL;
        }
        sb_append(b, s + run, i - run);
        if (esc) sb_appends(b, esc);
        else sb_printf(b, "\\u%04x", c);
        run = ++i;
    }
    sb_append(b, s + run, len - run);
    sb_appendc(b, '"');
    return rc;
}

typedef struct {
    StrBuf *b;
    JsonMode mode;
    Value *bad;     /* JSON_STRICT: where the refused value goes, or NULL */
} Writer;

static int write_value(Writer *w, Value v, int depth);

/* A value JSON_STRICT cannot write: refused there, written as its str()
 * text otherwise. */
static int refuse(Writer *w, Value v)
{
    if (w->mode == JSON_STRICT) {
        if (w->bad) *w->bad = v;
        return -1;
    }
    StrBuf t;
    sb_init(&t);
    val_to_text(&t, v);
    json_quote(w->b, t.data ? t.data : "", t.len);
    sb_free(&t);
    return 0;
}

/* nil, bools, ints and finite floats; -1 (nothing written) for the rest. */
static int write_scalar(StrBuf *b, Value v)
{
    switch (v.type) {
    case V_NIL: sb_append(b, "null", 4); return 0;
    case V_BOOL: sb_appends(b, v.as.b ? "true" : "false"); return 0;
    case V_INT: {
        char digits[FMT_INT_MAX];
        sb_append(b, digits, fmt_int(digits, v.as.i));
        return 0;
    }
    case V_FLOAT:
        if (!isfinite(v.as.f)) return -1;
        fmt_double(b, v.as.f);
        return 0;
    case V_OBJ: break;
    }
    return -1;
}

/* The string s[0..len) of value `owner` (a string or a state). */
static int write_string(Writer *w, Value owner, const char *s, size_t len)
{
    if (json_quote(w->b, s ? s : "", len) == 0 || w->mode != JSON_STRICT) return 0;
    if (w->bad) *w->bad = owner;
    return -1;
}

static int write_key(Writer *w, Value key)
{
    if (VAL_IS_STRING(key)) return write_string(w, key, AS_STRING(key)->chars, AS_STRING(key)->len);
    StrBuf k;
    sb_init(&k);
    if (write_scalar(&k, key) < 0) {
        if (w->mode == JSON_STRICT) {
            sb_free(&k);
            if (w->bad) *w->bad = key;
            return -1;
        }
        val_to_text(&k, key);
    }
    json_quote(w->b, k.data ? k.data : "", k.len);
    sb_free(&k);
    return 0;
}

static int write_map(Writer *w, const ObjMap *m, int depth)
{
    sb_appendc(w->b, '{');
    bool first = true;
    for (size_t i = 0; i < m->nentries; i++) {
        const MapEntry *e = &m->entries[i];
        if (!e->live) continue;
        if (!first) sb_appendc(w->b, ',');
        first = false;
        if (write_key(w, e->key) < 0) return -1;
        sb_appendc(w->b, ':');
        if (write_value(w, e->value, depth + 1) < 0) return -1;
    }
    sb_appendc(w->b, '}');
    return 0;
}

/* depth: containers open around v. */
static int write_value(Writer *w, Value v, int depth)
{
    if (v.type != V_OBJ) return write_scalar(w->b, v) == 0 ? 0 : refuse(w, v);
    Obj *o = v.as.obj;
    switch (o->type) {
    case OBJ_STRING: return write_string(w, v, AS_STRING(v)->chars, AS_STRING(v)->len);
    case OBJ_STATE: {
        const ObjState *s = AS_STATE(v);
        if (w->mode == JSON_STRICT) return write_string(w, v, s->text, s->len);
        if (depth >= VAL_MAX_DEPTH) return refuse(w, v);
        sb_appends(w->b, "{\"text\":");
        write_string(w, v, s->text, s->len);
        sb_appends(w->b, ",\"vars\":");
        if (s->vars) write_map(w, s->vars, depth + 1);
        else sb_append(w->b, "{}", 2);
        sb_appendc(w->b, '}');
        return 0;
    }
    case OBJ_LIST: case OBJ_MAP:
        if (depth >= VAL_MAX_DEPTH) {
            if (w->mode == JSON_STRICT) return refuse(w, v);
            /* as print shows a value nested this deeply (§12) */
            sb_appends(w->b, o->type == OBJ_LIST ? "\"[...]\"" : "\"{...}\"");
            return 0;
        }
        if (o->type == OBJ_MAP) return write_map(w, AS_MAP(v), depth);
        sb_appendc(w->b, '[');
        for (size_t i = 0; i < AS_LIST(v)->len; i++) {
            if (i) sb_appendc(w->b, ',');
            if (write_value(w, AS_LIST(v)->items[i], depth + 1) < 0) return -1;
        }
        sb_appendc(w->b, ']');
        return 0;
    default: return refuse(w, v);
    }
}

int json_encode(StrBuf *b, Value v, JsonMode mode, Value *bad)
{
    Writer w = {b, mode, bad};
    return write_value(&w, v, 0);
}

/* ------------------------------------------------------------------ */
/* copying between heaps                                               */

static int copy_value(Heap *h, Value v, Value *out, int depth)
{
    *out = val_nil();
    if (v.type != V_OBJ) {
        *out = v;
        return 0;
    }
    switch (v.as.obj->type) {
    case OBJ_STRING: {
        ObjString *s = str_new(h, AS_STRING(v)->chars, AS_STRING(v)->len);
        if (!s) return -1;
        *out = val_obj(s);
        return 0;
    }
    case OBJ_LIST: {
        const ObjList *src = AS_LIST(v);
        ObjList *l = depth < VAL_MAX_DEPTH ? list_new(h, src->len) : NULL;
        if (!l) return -1;
        for (size_t i = 0; i < src->len; i++) {
            Value item;
            if (copy_value(h, src->items[i], &item, depth + 1) < 0) return -1;
            list_push(l, item);
        }
        *out = val_obj(l);
        return 0;
    }
    case OBJ_MAP: {
        const ObjMap *src = AS_MAP(v);
        ObjMap *m = depth < VAL_MAX_DEPTH ? map_new(h) : NULL;
        if (!m) return -1;
        for (size_t i = 0; i < src->nentries; i++) {
            const MapEntry *e = &src->entries[i];
            if (!e->live) continue;
            Value key, value;
            if (copy_value(h, e->key, &key, depth + 1) < 0 || copy_value(h, e->value, &value, depth + 1) < 0)
                return -1;
            map_set(m, key, value);
        }
        *out = val_obj(m);
        return 0;
    }
    default: return -1;
    }
}

int json_copy(Heap *h, Value v, Value *out)
{
    int rc = copy_value(h, v, out, 0);
    if (rc < 0) *out = val_nil();
    return rc;
}
