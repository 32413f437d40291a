/*
 * constrain/schema_str.c — JSON strings of a schema: the body characters
 * as json.dumps(ensure_ascii=False) writes them, minLength/maxLength,
 * `pattern` (ECMA-262 syntax, unanchored) and `format`.
 *
 * A pattern is parsed here into a small tree (Rx) and lowered to builder
 * expressions whose characters are *encoded* JSON string characters: the
 * pattern speaks of the decoded string, the grammar of its JSON text, so
 * `"` in a class becomes `\"`, a newline `\n`. Where ECMA-262 (the spec)
 * and Python's re (which the reference validator runs) disagree, the
 * intersection is taken, so every accepted string satisfies both:
 *   \d \w      ASCII classes (ECMA) — Python's Unicode ones are supersets
 *   \s         the characters both call whitespace; \S the complement of
 *              either's (so \x1c-\x1f, U+0085, U+FEFF match neither)
 *   .          anything but \n \r U+2028 U+2029 (ECMA; Python: not \n)
 *   $          the very end (Python's $ also matches before a final \n)
 * \D and \W (Unicode tables on Python's side), back-references,
 * look-around, \b, and anchors that are not at the start or end of a
 * top-level alternative are refused with a message naming them.
 *
 * Formats are regexes in the same syntax, each as exact as the RFC and the
 * `jsonschema` package's checkers allow together (see format_regex).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/utf8.h"
#include "constrain/schema_int.h"

#define MAX_CP 0x10FFFF

/* ---- code point sets ---------------------------------------------------- */

typedef struct {
    CgRange *r;
    int n, cap;
} Set;

static int set_add(Set *s, uint32_t lo, uint32_t hi) {
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 8;
        CgRange *nr = realloc(s->r, (size_t)nc * sizeof *nr);
        if (!nr) return -1;
        s->r = nr;
        s->cap = nc;
    }
    s->r[s->n++] = (CgRange){lo, hi};
    return 0;
}

static int rcmp(const void *a, const void *b) {
    const CgRange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void set_norm(Set *s) {
    if (s->n == 0) return;
    qsort(s->r, (size_t)s->n, sizeof *s->r, rcmp);
    int k = 0;
    for (int i = 1; i < s->n; i++) {
        if (s->r[i].lo <= s->r[k].hi + 1) {
            if (s->r[i].hi > s->r[k].hi) s->r[k].hi = s->r[i].hi;
        } else {
            s->r[++k] = s->r[i];
        }
    }
    s->n = k + 1;
}

/* The complement over all scalar values (surrogates are never matched). */
static int set_negate(Set *s) {
    set_norm(s);
    Set o = {0};
    uint32_t next = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->r[i].lo > next && set_add(&o, next, s->r[i].lo - 1) < 0) goto oom;
        next = s->r[i].hi + 1;
    }
    if (next <= MAX_CP && set_add(&o, next, MAX_CP) < 0) goto oom;
    free(s->r);
    *s = o;
    return 0;
oom:
    free(o.r);
    return -1;
}

/* ---- encoded characters ------------------------------------------------- */

static const char *short_escape(uint32_t c) {
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\b': return "\\b";
    case '\f': return "\\f";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    }
    return NULL;
}

static CgExpr escaped(CgBuilder *b, uint32_t c) {
    const char *e = short_escape(c);
    if (e) return cgb_lit(b, e, strlen(e));
    /* \u00xx in lower case, as json.dumps writes it */
    char u[7];
    snprintf(u, sizeof u, "\\u%04x", (unsigned)c);
    return cgb_lit(b, u, 6);
}

static CgExpr set_expr(CgBuilder *b, Set *s) {
    set_norm(s);
    Set raw = {0};
    CgExpr alts[40];
    int n = 0;
    for (int i = 0; i < s->n; i++) {
        uint32_t lo = s->r[i].lo, hi = s->r[i].hi;
        for (uint32_t c = lo; c <= hi && c < 0x20; c++) alts[n++] = escaped(b, c);
        if (lo < 0x20) lo = 0x20;
        if (lo > hi) continue;
        /* split out '"' and '\\' */
        uint32_t cut[2] = {'"', '\\'};
        uint32_t a = lo;
        for (int k = 0; k < 2; k++) {
            if (cut[k] >= a && cut[k] <= hi) {
                if (cut[k] > a) set_add(&raw, a, cut[k] - 1);
                alts[n++] = escaped(b, cut[k]);
                a = cut[k] + 1;
            }
        }
        if (a <= hi) set_add(&raw, a, hi);
    }
    if (raw.n) alts[n++] = cgb_class(b, raw.r, raw.n, false);
    free(raw.r);
    return cgb_alt(b, alts, n);
}

CgExpr ss_chars(CgBuilder *b, const CgRange *r, int n, bool negate) {
    Set s = {0};
    for (int i = 0; i < n; i++) set_add(&s, r[i].lo, r[i].hi);
    if (negate) set_negate(&s);
    CgExpr e = set_expr(b, &s);
    free(s.r);
    return e;
}

CgExpr ss_any_char(CgBuilder *b) {
    CgRange all = {0, MAX_CP};
    return ss_chars(b, &all, 1, false);
}

char *ss_encode(const char *s, size_t n, size_t *outlen) {
    size_t cap = n * 6 + 3, k = 0;
    char *o = malloc(cap);
    if (!o) return NULL;
    o[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = short_escape(c);
        if (e) {
            memcpy(o + k, e, 2);
            k += 2;
        } else if (c < 0x20) {
            k += (size_t)snprintf(o + k, cap - k, "\\u%04x", c);
        } else {
            o[k++] = (char)c;
        }
    }
    o[k++] = '"';
    o[k] = 0;
    *outlen = k;
    return o;
}

CgExpr ss_literal(CgBuilder *b, const char *s, size_t n) {
    size_t len;
    char *e = ss_encode(s, n, &len);
    if (!e) return -1;
    CgExpr x = cgb_lit(b, e, len);
    free(e);
    return x;
}

/* ---- patterns: ECMA-262 regex → tree ------------------------------------ */

typedef enum { RX_SET, RX_SEQ, RX_ALT, RX_REP, RX_EMPTY } RxKind;

typedef struct Rx Rx;
struct Rx {
    RxKind kind;
    Set set;            /* RX_SET */
    Rx **kids;          /* RX_SEQ, RX_ALT; RX_REP: kids[0] */
    int n, cap;
    int min, max;       /* RX_REP; max -1 = unbounded */
};

typedef struct {
    const char *s;
    size_t n, i;
    int depth;
    char *err;
    size_t errcap;
    int rc;
} Px;

static Rx *rx_new(Px *p, RxKind k) {
    Rx *x = calloc(1, sizeof *x);
    if (!x && !p->rc) {
        p->rc = ERR_NOMEM;
        err_fmt(p->err, p->errcap, "out of memory");
    }
    if (x) x->kind = k;
    return x;
}

static void rx_free(Rx *x) {
    if (!x) return;
    for (int i = 0; i < x->n; i++) rx_free(x->kids[i]);
    free(x->kids);
    free(x->set.r);
    free(x);
}

static int rx_push(Rx *x, Rx *k) {
    if (x->n == x->cap) {
        int nc = x->cap ? x->cap * 2 : 4;
        Rx **nk = realloc(x->kids, (size_t)nc * sizeof *nk);
        if (!nk) return -1;
        x->kids = nk;
        x->cap = nc;
    }
    x->kids[x->n++] = k;
    return 0;
}

static Rx *px_fail(Px *p, int code, const char *fmt, const char *what) {
    if (!p->rc) {
        p->rc = code;
        char msg[160];
        snprintf(msg, sizeof msg, fmt, what);
        err_fmt(p->err, p->errcap, "pattern: %s (at offset %zu)", msg, p->i);
    }
    return NULL;
}

static bool px_more(Px *p) { return p->i < p->n; }
static char px_peek(Px *p) { return p->i < p->n ? p->s[p->i] : 0; }

static int add_class_escape(Px *p, Set *s, char c) {
    switch (c) {
    case 'd': return set_add(s, '0', '9');
    case 'w':
        set_add(s, '0', '9');
        set_add(s, 'A', 'Z');
        set_add(s, 'a', 'z');
        return set_add(s, '_', '_');
    case 's':
        /* whitespace under both ECMA-262 and Python's str.isspace */
        set_add(s, 0x09, 0x0D);
        set_add(s, 0x20, 0x20);
        set_add(s, 0xA0, 0xA0);
        set_add(s, 0x1680, 0x1680);
        set_add(s, 0x2000, 0x200A);
        set_add(s, 0x2028, 0x2029);
        set_add(s, 0x202F, 0x202F);
        set_add(s, 0x205F, 0x205F);
        return set_add(s, 0x3000, 0x3000);
    }
    return -1;
}

/* \S: not whitespace under either (the union of both sets, negated). */
static int add_not_space(Set *s) {
    Set w = {0};
    add_class_escape(NULL, &w, 's');
    set_add(&w, 0x1C, 0x1F);
    set_add(&w, 0x85, 0x85);
    set_add(&w, 0xFEFF, 0xFEFF);
    if (set_negate(&w) < 0) return -1;
    for (int i = 0; i < w.n; i++) set_add(s, w.r[i].lo, w.r[i].hi);
    free(w.r);
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One escaped character after '\\' (not a class escape); -1 on error. */
static int64_t px_escape_char(Px *p, bool in_class) {
    char c = p->s[p->i++];
    switch (c) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'f': return '\f';
    case 'v': return '\v';
    case '0':
        if (px_more(p) && px_peek(p) >= '0' && px_peek(p) <= '9') {
            px_fail(p, ERR_UNSUPPORTED, "%s", "octal escape");
            return -1;
        }
        return 0;
    case 'x': {
        if (p->i + 2 > p->n || hexval(p->s[p->i]) < 0 || hexval(p->s[p->i + 1]) < 0) {
            px_fail(p, ERR_CONSTRAINT, "%s", "bad \\x escape");
            return -1;
        }
        int v = hexval(p->s[p->i]) * 16 + hexval(p->s[p->i + 1]);
        p->i += 2;
        return v;
    }
    case 'u': {
        if (p->i + 4 > p->n) {
            px_fail(p, ERR_CONSTRAINT, "%s", "bad \\u escape");
            return -1;
        }
        int v = 0;
        for (int k = 0; k < 4; k++) {
            int h = hexval(p->s[p->i + k]);
            if (h < 0) {
                px_fail(p, ERR_CONSTRAINT, "%s", "bad \\u escape");
                return -1;
            }
            v = v * 16 + h;
        }
        p->i += 4;
        if (v >= 0xD800 && v <= 0xDFFF) {
            px_fail(p, ERR_UNSUPPORTED, "%s", "surrogate \\u escape");
            return -1;
        }
        return v;
    }
    case 'b':
        if (in_class) return '\b';
        px_fail(p, ERR_UNSUPPORTED, "%s", "\\b (word boundary)");
        return -1;
    case 'B': px_fail(p, ERR_UNSUPPORTED, "%s", "\\B (word boundary)"); return -1;
    case 'c': px_fail(p, ERR_UNSUPPORTED, "%s", "\\c control escape"); return -1;
    case 'k': px_fail(p, ERR_UNSUPPORTED, "%s", "\\k back-reference"); return -1;
    case 'p':
    case 'P': px_fail(p, ERR_UNSUPPORTED, "%s", "\\p Unicode property"); return -1;
    case 'D': px_fail(p, ERR_UNSUPPORTED, "%s", "\\D (ECMA and Python disagree on digits)"); return -1;
    case 'W': px_fail(p, ERR_UNSUPPORTED, "%s", "\\W (ECMA and Python disagree on word characters)"); return -1;
    default:
        if (c >= '1' && c <= '9') {
            px_fail(p, ERR_UNSUPPORTED, "%s", "back-reference");
            return -1;
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            /* identity escapes of letters: ECMA literal, Python an error */
            px_fail(p, ERR_UNSUPPORTED, "%s", "escape of a letter");
            return -1;
        }
        {
            p->i--;
            uint32_t cp;
            int k = utf8_decode(p->s + p->i, p->n - p->i, &cp);
            if (k <= 0) {
                px_fail(p, ERR_CONSTRAINT, "%s", "invalid UTF-8");
                return -1;
            }
            p->i += (size_t)k;
            return cp;
        }
    }
}

static int64_t px_char(Px *p) {
    uint32_t cp;
    int k = utf8_decode(p->s + p->i, p->n - p->i, &cp);
    if (k <= 0) {
        px_fail(p, ERR_CONSTRAINT, "%s", "invalid UTF-8");
        return -1;
    }
    p->i += (size_t)k;
    return cp;
}

static Rx *px_class(Px *p) {
    Rx *x = rx_new(p, RX_SET);
    if (!x) return NULL;
    p->i++;   /* '[' */
    bool neg = false;
    if (px_peek(p) == '^') {
        neg = true;
        p->i++;
    }
    bool first = true;
    for (;;) {
        if (!px_more(p)) {
            rx_free(x);
            return px_fail(p, ERR_CONSTRAINT, "%s", "unterminated [class]");
        }
        char c = px_peek(p);
        if (c == ']' && !first) {
            p->i++;
            break;
        }
        if (c == ']' && first) {
            /* ECMA: [] matches nothing, [^] anything; Python: ']' literal */
            rx_free(x);
            return px_fail(p, ERR_UNSUPPORTED, "%s", "empty class [] (ECMA and Python disagree)");
        }
        first = false;
        if (c == '[' && p->i + 1 < p->n && (p->s[p->i + 1] == ':' || p->s[p->i + 1] == '=' || p->s[p->i + 1] == '.')) {
            rx_free(x);
            return px_fail(p, ERR_UNSUPPORTED, "%s", "POSIX class syntax");
        }
        int64_t lo;
        if (c == '\\') {
            p->i++;
            if (!px_more(p)) {
                rx_free(x);
                return px_fail(p, ERR_CONSTRAINT, "%s", "trailing backslash");
            }
            char e = px_peek(p);
            if (e == 'd' || e == 'w' || e == 's') {
                p->i++;
                add_class_escape(p, &x->set, e);
                if (px_peek(p) == '-' && p->i + 1 < p->n && p->s[p->i + 1] != ']') {
                    rx_free(x);
                    return px_fail(p, ERR_UNSUPPORTED, "%s", "range from a class escape");
                }
                continue;
            }
            if (e == 'S') {
                p->i++;
                add_not_space(&x->set);
                continue;
            }
            lo = px_escape_char(p, true);
        } else {
            lo = px_char(p);
        }
        if (lo < 0) {
            rx_free(x);
            return NULL;
        }
        int64_t hi = lo;
        if (px_peek(p) == '-' && p->i + 1 < p->n && p->s[p->i + 1] != ']') {
            p->i++;
            if (px_peek(p) == '\\') {
                p->i++;
                char e = px_peek(p);
                if (e == 'd' || e == 'w' || e == 's' || e == 'S' || e == 'D' || e == 'W') {
                    rx_free(x);
                    return px_fail(p, ERR_UNSUPPORTED, "%s", "range to a class escape");
                }
                hi = px_escape_char(p, true);
            } else {
                hi = px_char(p);
            }
            if (hi < 0) {
                rx_free(x);
                return NULL;
            }
            if (hi < lo) {
                rx_free(x);
                return px_fail(p, ERR_CONSTRAINT, "%s", "class range out of order");
            }
        }
        if (lo <= 0xD7FF || hi >= 0xE000) {
            if (lo < 0xD800 && hi >= 0xD800) {
                set_add(&x->set, (uint32_t)lo, 0xD7FF);
                if (hi >= 0xE000) set_add(&x->set, 0xE000, (uint32_t)hi);
            } else {
                set_add(&x->set, (uint32_t)lo, (uint32_t)hi);
            }
        }
    }
    if (neg) set_negate(&x->set);
    return x;
}

static Rx *px_alt(Px *p);

static Rx *px_atom(Px *p) {
    char c = px_peek(p);
    if (c == '(') {
        p->i++;
        if (px_peek(p) == '?') {
            if (p->i + 1 < p->n && p->s[p->i + 1] == ':') {
                p->i += 2;
            } else if (p->i + 1 < p->n && p->s[p->i + 1] == '<' && p->i + 2 < p->n && p->s[p->i + 2] != '=' &&
                       p->s[p->i + 2] != '!') {
                /* a named group (ECMA); Python spells it (?P<...>) */
                return px_fail(p, ERR_UNSUPPORTED, "%s", "named group (ECMA and Python differ)");
            } else {
                return px_fail(p, ERR_UNSUPPORTED, "%s", "look-around or group flags (?...)");
            }
        }
        if (++p->depth > 100) return px_fail(p, ERR_LIMIT, "%s", "groups nested too deeply");
        Rx *x = px_alt(p);
        p->depth--;
        if (!x) return NULL;
        if (px_peek(p) != ')') {
            rx_free(x);
            return px_fail(p, ERR_CONSTRAINT, "%s", "missing ')'");
        }
        p->i++;
        return x;
    }
    if (c == '[') return px_class(p);
    Rx *x = rx_new(p, RX_SET);
    if (!x) return NULL;
    if (c == '.') {
        p->i++;
        set_add(&x->set, '\n', '\n');
        set_add(&x->set, '\r', '\r');
        set_add(&x->set, 0x2028, 0x2029);
        set_negate(&x->set);
        return x;
    }
    if (c == '\\') {
        p->i++;
        if (!px_more(p)) {
            rx_free(x);
            return px_fail(p, ERR_CONSTRAINT, "%s", "trailing backslash");
        }
        char e = px_peek(p);
        if (e == 'd' || e == 'w' || e == 's') {
            p->i++;
            add_class_escape(p, &x->set, e);
            return x;
        }
        if (e == 'S') {
            p->i++;
            add_not_space(&x->set);
            return x;
        }
        int64_t v = px_escape_char(p, false);
        if (v < 0) {
            rx_free(x);
            return NULL;
        }
        set_add(&x->set, (uint32_t)v, (uint32_t)v);
        return x;
    }
    if (c == '^' || c == '$') {
        rx_free(x);
        return px_fail(p, ERR_UNSUPPORTED, "%s", "anchor ^ or $ inside the pattern (only at the ends of an alternative)");
    }
    if (c == '*' || c == '+' || c == '?') {
        rx_free(x);
        return px_fail(p, ERR_CONSTRAINT, "%s", "nothing to repeat");
    }
    int64_t v = px_char(p);
    if (v < 0) {
        rx_free(x);
        return NULL;
    }
    set_add(&x->set, (uint32_t)v, (uint32_t)v);
    return x;
}

/* {m}, {m,}, {m,n} at p->i; false (and nothing consumed) when it is not a
 * quantifier (then '{' is a literal, as both ECMA Annex B and Python say). */
static bool px_braces(Px *p, int *mn, int *mx) {
    size_t i = p->i + 1;
    long a = 0, b;
    if (i >= p->n || p->s[i] < '0' || p->s[i] > '9') {
        if (i < p->n && p->s[i] == ',') {
            px_fail(p, ERR_UNSUPPORTED, "%s", "{,n} (ECMA: literal, Python: a quantifier)");
        }
        return false;
    }
    while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') a = a < 100000 ? a * 10 + (p->s[i++] - '0') : a;
    b = a;
    if (i < p->n && p->s[i] == ',') {
        i++;
        if (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') {
            b = 0;
            while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') b = b < 100000 ? b * 10 + (p->s[i++] - '0') : b;
        } else {
            b = -1;
        }
    }
    if (i >= p->n || p->s[i] != '}') return false;
    p->i = i + 1;
    *mn = (int)a;
    *mx = (int)b;
    return true;
}

static Rx *px_seq(Px *p) {
    Rx *seq = rx_new(p, RX_SEQ);
    if (!seq) return NULL;
    while (px_more(p) && px_peek(p) != '|' && px_peek(p) != ')') {
        if (px_peek(p) == '$' && (p->i + 1 == p->n || p->s[p->i + 1] == '|' || p->s[p->i + 1] == ')')) break;
        Rx *a;
        int mn, mx;
        if (px_peek(p) == '{' && px_braces(p, &mn, &mx)) {
            rx_free(seq);
            return px_fail(p, ERR_CONSTRAINT, "%s", "nothing to repeat");
        }
        if (p->rc) {
            rx_free(seq);
            return NULL;
        }
        a = px_atom(p);
        if (!a) {
            rx_free(seq);
            return NULL;
        }
        for (;;) {
            char q = px_peek(p);
            mn = -2;
            if (q == '*') mn = 0, mx = -1, p->i++;
            else if (q == '+') mn = 1, mx = -1, p->i++;
            else if (q == '?') mn = 0, mx = 1, p->i++;
            else if (q == '{' && px_braces(p, &mn, &mx)) {
                if (mx >= 0 && mx < mn) {
                    rx_free(a);
                    rx_free(seq);
                    return px_fail(p, ERR_CONSTRAINT, "%s", "{m,n} with n < m");
                }
            }
            if (p->rc) {
                rx_free(a);
                rx_free(seq);
                return NULL;
            }
            if (mn == -2) break;
            if (px_peek(p) == '?') p->i++;   /* lazy: the same language */
            if (px_peek(p) == '+') {
                rx_free(a);
                rx_free(seq);
                return px_fail(p, ERR_UNSUPPORTED, "%s", "possessive quantifier");
            }
            Rx *r = rx_new(p, RX_REP);
            if (!r || rx_push(r, a) < 0) {
                rx_free(a);
                rx_free(r);
                rx_free(seq);
                return NULL;
            }
            r->min = mn;
            r->max = mx;
            a = r;
        }
        if (rx_push(seq, a) < 0) {
            rx_free(a);
            rx_free(seq);
            return NULL;
        }
    }
    return seq;
}

static Rx *px_alt(Px *p) {
    Rx *alt = rx_new(p, RX_ALT);
    if (!alt) return NULL;
    for (;;) {
        Rx *s = px_seq(p);
        if (!s || rx_push(alt, s) < 0) {
            rx_free(s);
            rx_free(alt);
            return NULL;
        }
        if (px_peek(p) == '$') {
            rx_free(alt);
            return px_fail(p, ERR_UNSUPPORTED, "%s", "anchor $ inside a group");
        }
        if (px_peek(p) != '|') break;
        p->i++;
    }
    return alt;
}

/* Top level: alternatives, each with optional ^ at its start and $ at its
 * end. Unanchored ends get "any characters". */
typedef struct {
    Rx *body;           /* RX_ALT of branches; branch i is kids[i] */
    bool *start_anchored, *end_anchored;
} Pat;

static void pat_free(Pat *t) {
    rx_free(t->body);
    free(t->start_anchored);
    free(t->end_anchored);
}

static int pat_parse(const char *s, size_t n, Pat *out, char *err, size_t errcap) {
    memset(out, 0, sizeof *out);
    Px p = {.s = s, .n = n, .err = err, .errcap = errcap};
    Rx *alt = rx_new(&p, RX_ALT);
    int cap = 0;
    if (!alt) return ERR_NOMEM;
    for (;;) {
        bool st = false, en = false;
        if (px_peek(&p) == '^') {
            st = true;
            p.i++;
        }
        Rx *seq = px_seq(&p);
        if (!seq) goto bad;
        if (px_peek(&p) == '$') {
            en = true;
            p.i++;
        }
        if (rx_push(alt, seq) < 0) {
            rx_free(seq);
            goto bad;
        }
        if (alt->n > cap) {
            cap = alt->cap;
            bool *a = realloc(out->start_anchored, (size_t)cap * sizeof *a);
            if (!a) goto bad;
            out->start_anchored = a;
            bool *b = realloc(out->end_anchored, (size_t)cap * sizeof *b);
            if (!b) goto bad;
            out->end_anchored = b;
        }
        out->start_anchored[alt->n - 1] = st;
        out->end_anchored[alt->n - 1] = en;
        if (!px_more(&p)) break;
        if (px_peek(&p) == '|') {
            p.i++;
            continue;
        }
        if (px_peek(&p) == ')') {
            px_fail(&p, ERR_CONSTRAINT, "%s", "unmatched ')'");
        } else {
            px_fail(&p, ERR_UNSUPPORTED, "%s", "anchor ^ or $ inside the pattern");
        }
        goto bad;
    }
    out->body = alt;
    return 0;
bad:
    rx_free(alt);
    free(out->start_anchored);
    free(out->end_anchored);
    memset(out, 0, sizeof *out);
    return p.rc ? p.rc : ERR_NOMEM;
}

static CgExpr rx_lower(CgBuilder *b, Rx *x) {
    switch (x->kind) {
    case RX_SET: return set_expr(b, &x->set);
    case RX_EMPTY: return cgb_empty(b);
    case RX_REP: return cgb_repeat(b, rx_lower(b, x->kids[0]), x->min, x->max < 0 ? CG_INF : x->max);
    case RX_SEQ:
    case RX_ALT: {
        CgExpr *xs = malloc((size_t)(x->n ? x->n : 1) * sizeof *xs);
        if (!xs) return -1;
        for (int i = 0; i < x->n; i++) xs[i] = rx_lower(b, x->kids[i]);
        CgExpr e = x->kind == RX_SEQ ? cgb_seq(b, xs, x->n) : cgb_alt(b, xs, x->n);
        free(xs);
        return e;
    }
    }
    return -1;
}

/* Length range of x in characters; max -1 = unbounded. */
static void rx_len(const Rx *x, long *mn, long *mx) {
    switch (x->kind) {
    case RX_SET:
        *mn = *mx = x->set.n ? 1 : 0;
        return;
    case RX_EMPTY: *mn = *mx = 0; return;
    case RX_REP: {
        long a, b;
        rx_len(x->kids[0], &a, &b);
        *mn = a * x->min;
        *mx = (x->max < 0 || b < 0) ? (b == 0 ? 0 : -1) : b * x->max;
        return;
    }
    case RX_SEQ: {
        long smn = 0, smx = 0;
        for (int i = 0; i < x->n; i++) {
            long a, b;
            rx_len(x->kids[i], &a, &b);
            smn += a;
            smx = (smx < 0 || b < 0) ? -1 : smx + b;
        }
        *mn = smn;
        *mx = smx;
        return;
    }
    case RX_ALT: {
        long amn = -1, amx = 0;
        for (int i = 0; i < x->n; i++) {
            long a, b;
            rx_len(x->kids[i], &a, &b);
            if (amn < 0 || a < amn) amn = a;
            if (amx >= 0 && (b < 0 || b > amx)) amx = b;
        }
        *mn = amn < 0 ? 0 : amn;
        *mx = amx;
        return;
    }
    }
}

/* Folds a length bound into a sequence whose parts are all of fixed
 * length but one repeat of a one-character atom: true when done. */
static bool fold_length(Rx *seq, long min_len, long max_len) {
    if (seq->kind != RX_SEQ) return false;
    int var = -1;
    long fixed = 0;
    for (int i = 0; i < seq->n; i++) {
        long a, b;
        rx_len(seq->kids[i], &a, &b);
        if (a == b) {
            fixed += a;
            continue;
        }
        Rx *k = seq->kids[i];
        if (var >= 0 || k->kind != RX_REP) return false;
        long ka, kb;
        rx_len(k->kids[0], &ka, &kb);
        if (ka != 1 || kb != 1) return false;
        var = i;
    }
    if (var < 0) return false;
    Rx *r = seq->kids[var];
    long lo = r->min, hi = r->max;
    if (min_len - fixed > lo) lo = min_len - fixed;
    if (max_len >= 0 && (hi < 0 || max_len - fixed < hi)) hi = max_len - fixed;
    if (hi >= 0 && hi < lo) return false;
    if (lo > 100000 || hi > 100000) return false;
    r->min = (int)lo;
    r->max = (int)hi;
    return true;
}

static int pattern_expr(CgBuilder *b, const char *pat, size_t n, long min_len, long max_len, CgExpr *out,
                        char *err, size_t errcap) {
    Pat t;
    int rc = pat_parse(pat, n, &t, err, errcap);
    if (rc) return rc;
    bool has_len = min_len > 0 || max_len >= 0;
    CgExpr *alts = malloc((size_t)t.body->n * sizeof *alts);
    if (!alts) {
        pat_free(&t);
        return ERR_NOMEM;
    }
    for (int i = 0; i < t.body->n; i++) {
        Rx *br = t.body->kids[i];
        bool st = t.start_anchored[i], en = t.end_anchored[i];
        if (has_len) {
            long a, bmax;
            rx_len(br, &a, &bmax);
            if (!st || !en) bmax = -1;
            bool redundant = a >= min_len && (max_len < 0 || (bmax >= 0 && bmax <= max_len));
            if (!redundant) {
                if (!st || !en || !fold_length(br, min_len, max_len)) {
                    free(alts);
                    pat_free(&t);
                    err_fmt(err, errcap,
                            "pattern together with minLength/maxLength: this pattern's length cannot be "
                            "bounded exactly");
                    return ERR_UNSUPPORTED;
                }
            }
        }
        CgExpr any = cgb_repeat(b, ss_any_char(b), 0, CG_INF);
        CgExpr parts[3];
        int k = 0;
        if (!st) parts[k++] = any;
        parts[k++] = rx_lower(b, br);
        if (!en) parts[k++] = any;
        alts[i] = cgb_seq(b, parts, k);
    }
    *out = cgb_alt(b, alts, t.body->n);
    free(alts);
    pat_free(&t);
    return 0;
}

int ss_pattern_body(CgBuilder *b, const char *pattern, size_t n, CgExpr *out, char *err, size_t errcap) {
    return pattern_expr(b, pattern, n, 0, -1, out, err, errcap);
}

int ss_pattern_grammar(const char *pattern, size_t n, CGrammar **g, char *err, size_t errcap) {
    CgBuilder *b = cgb_new(NULL);
    if (!b) return err_fmt(err, errcap, "out of memory"), ERR_NOMEM;
    CgExpr body;
    int rc = pattern_expr(b, pattern, n, 0, -1, &body, err, errcap);
    if (!rc) {
        int r = cgb_rule(b, "pattern");
        cgb_define(b, r, body);
        rc = cgb_build(b, r, g, err, errcap);
    }
    cgb_free(b);
    return rc;
}

int ss_name_matches(const CGrammar *g, const char *s, size_t n) {
    size_t len;
    char *e = ss_encode(s, n, &len);
    if (!e) return ERR_NOMEM;
    int m = cg_match(g, e + 1, len - 2, NULL);   /* the body, without quotes */
    free(e);
    return m;
}

int ss_names_grammar(const char *const *names, const size_t *lens, int n, bool universe, CGrammar **g,
                     char *err, size_t errcap) {
    CgBuilder *b = cgb_new(NULL);
    if (!b) return err_fmt(err, errcap, "out of memory"), ERR_NOMEM;
    CgExpr body;
    if (universe) {
        body = cgb_repeat(b, ss_any_char(b), 0, CG_INF);
    } else {
        CgExpr *alts = malloc((size_t)(n + 1) * sizeof *alts);
        if (!alts) {
            cgb_free(b);
            return err_fmt(err, errcap, "out of memory"), ERR_NOMEM;
        }
        for (int i = 0; i < n; i++) {
            size_t len;
            char *e = ss_encode(names[i], lens[i], &len);
            alts[i] = e ? cgb_lit(b, e + 1, len - 2) : -1;
            free(e);
        }
        body = cgb_alt(b, alts, n);
        free(alts);
    }
    int r = cgb_rule(b, "names");
    cgb_define(b, r, body);
    int rc = cgb_build(b, r, g, err, errcap);
    cgb_free(b);
    return rc;
}

bool ss_pattern_universal(const char *pattern, size_t n) {
    Pat t;
    char err[64];
    if (pat_parse(pattern, n, &t, err, sizeof err)) return false;
    bool u = false;
    for (int i = 0; i < t.body->n; i++) {
        long a, mx;
        rx_len(t.body->kids[i], &a, &mx);
        if (a == 0 && !(t.start_anchored[i] && t.end_anchored[i])) u = true;
    }
    pat_free(&t);
    return u;
}

/* ---- formats ------------------------------------------------------------ */

#define D2 "[0-9]{2}"
/* Year 0001-9999; leap years for February 29 (the Gregorian rule). */
#define YEAR "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
#define LEAP "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
#define MD "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
#define DATE "(?:" YEAR "-" MD "|" LEAP "-02-29)"
/* rfc3339_validator (over the upper-cased text): seconds 00-59, any
 * fraction, Z or an offset with hours 00-23 */
#define TIME "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
#define OCTET "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
#define IPV4 OCTET "\\." OCTET "\\." OCTET "\\." OCTET
#define H16 "[0-9A-Fa-f]{1,4}"
#define LS32 "(?:" H16 ":" H16 "|" IPV4 ")"
#define IPV6                                                                                                   \
    "(?:(?:" H16 ":){6}" LS32 "|::(?:" H16 ":){5}" LS32 "|(?:" H16 ")?::(?:" H16 ":){4}" LS32 "|(?:(?:" H16     \
    ":){0,1}" H16 ")?::(?:" H16 ":){3}" LS32 "|(?:(?:" H16 ":){0,2}" H16 ")?::(?:" H16 ":){2}" LS32 "|(?:(?:" H16 \
    ":){0,3}" H16 ")?::" H16 ":" LS32 "|(?:(?:" H16 ":){0,4}" H16 ")?::" LS32 "|(?:(?:" H16 ":){0,5}" H16       \
    ")?::" H16 "|(?:(?:" H16 ":){0,6}" H16 ")?::)"
/* RFC 3986 URI (what rfc3987's rule "URI" checks, restricted to ASCII) */
#define UNRES "A-Za-z0-9\\-._~"
#define SUBD "!$&'()*+,;="
#define PCT "%[0-9A-Fa-f]{2}"
#define PCHAR "(?:[" UNRES SUBD ":@]|" PCT ")"
#define SEG PCHAR "*"
#define SEGNZ PCHAR "+"
#define REGNAME "(?:[" UNRES SUBD "]|" PCT ")*"
#define IPVF "[vV][0-9A-Fa-f]+\\.[" UNRES SUBD ":]+"
#define HOST "(?:\\[(?:" IPV6 "|" IPVF ")\\]|" IPV4 "|" REGNAME ")"
#define AUTH "(?:(?:[" UNRES SUBD ":]|" PCT ")*@)?" HOST "(?::[0-9]*)?"
#define HIER "(?://" AUTH "(?:/" SEG ")*|/(?:" SEGNZ "(?:/" SEG ")*)?|" SEGNZ "(?:/" SEG ")*|)"
#define QF "(?:[" UNRES SUBD ":@/?]|" PCT ")*"
#define URI "[A-Za-z][A-Za-z0-9+\\-.]*:" HIER "(?:\\?" QF ")?(?:#" QF ")?"
#define UUID "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
/* ISO 8601 durations as isoduration parses them and jsonschema then
 * requires (ending in a designator): integers only (a subset) */
#define DUR_T "T(?:[0-9]+H(?:[0-9]+M)?(?:[0-9]+S)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
#define DURATION "P(?:(?:[0-9]+Y(?:[0-9]+M)?(?:[0-9]+D)?|[0-9]+M(?:[0-9]+D)?|[0-9]+D)(?:" DUR_T ")?|" DUR_T "|[0-9]+W)"

typedef struct {
    const char *name;
    const char *regex;      /* NULL: defined by the vocabulary, not enforced */
} Format;

static const Format formats[] = {
    {"date-time", "^" DATE "[Tt]" TIME "$"},
    {"date", "^" DATE "$"},
    {"time", "^" TIME "$"},
    {"duration", "^" DURATION "$"},
    {"uuid", "^" UUID "$"},
    {"email", "@"},   /* jsonschema: contains '@' */
    {"idn-email", "@"},
    {"ipv4", "^" IPV4 "$"},
    {"ipv6", "^" IPV6 "$"},
    {"uri", "^" URI "$"},
    {"hostname", NULL},
    {"idn-hostname", NULL},
    {"uri-reference", NULL},
    {"iri", NULL},
    {"iri-reference", NULL},
    {"uri-template", NULL},
    {"json-pointer", "^(?:/(?:[^~/]|~[01])*)*$"},
    {"relative-json-pointer", NULL},
    {"regex", NULL},
};

bool ss_format_known(const char *format, bool *known_unenforced) {
    *known_unenforced = false;
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++) {
        if (strcmp(formats[i].name, format) == 0) {
            *known_unenforced = formats[i].regex == NULL;
            return formats[i].regex != NULL;
        }
    }
    return false;
}

int ss_string(CgBuilder *b, long min_len, long max_len, const char *pattern, size_t pattern_len,
              const char *format, CgExpr *out, char *err, size_t errcap) {
    if (max_len >= 0 && max_len < min_len) {
        err_fmt(err, errcap, "minLength %ld > maxLength %ld", min_len, max_len);
        return ERR_CONSTRAINT;
    }
    CgExpr body = -1;
    const char *fre = NULL;
    if (format) {
        bool unenf;
        if (ss_format_known(format, &unenf)) {
            for (size_t i = 0; i < sizeof formats / sizeof *formats; i++)
                if (strcmp(formats[i].name, format) == 0) fre = formats[i].regex;
        } else if (unenf) {
            err_fmt(err, errcap, "format \"%s\" is not enforced", format);
            return ERR_UNSUPPORTED;
        }
    }
    if (pattern && fre) {
        err_fmt(err, errcap, "pattern together with format \"%s\"", format);
        return ERR_UNSUPPORTED;
    }
    if (fre) {
        pattern = fre;
        pattern_len = strlen(fre);
    }
    if (pattern) {
        char perr[256];
        int rc = pattern_expr(b, pattern, pattern_len, min_len, max_len, &body, perr, sizeof perr);
        if (rc) {
            if (fre) err_fmt(err, errcap, "format \"%s\": %s", format, perr);
            else err_fmt(err, errcap, "%s", perr);
            return rc;
        }
    } else {
        if (min_len > 1000000 || max_len > 1000000) {
            err_fmt(err, errcap, "minLength/maxLength past 1000000");
            return ERR_LIMIT;
        }
        body = sx_repeat(b, ss_any_char(b), min_len, max_len, 1000, "string-chars");
    }
    *out = cgb_seq(b, (CgExpr[]){cgb_lit(b, "\"", 1), body, cgb_lit(b, "\"", 1)}, 3);
    return 0;
}
