/*
 * constrain/regex_syntax.c — recursive-descent parser for the constraint
 * regex subset (the syntax and the tree: constrain/regex_syntax.h).
 *
 *   alt    := concat ('|' concat)*
 *   concat := repeat*
 *   repeat := atom quantifier?          (a second quantifier is an error)
 *   atom   := '(' ['?:'] alt ')' | '[' class ']' | '.' | '\' escape | char
 *
 * Recursion is bounded by RX_MAX_DEPTH open groups. Nodes are malloc'd and
 * chained on RxRegex.nodes so that a failed parse frees what it built.
 */
#include "constrain/regex_syntax.h"
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef RxRangeSet RangeSet;

typedef struct {
    const unsigned char *s;
    size_t len, i;
    RxRegex *re;
    int failed;
    size_t err_pos;
    char *msg;
    size_t msgcap;
    int depth;
} Parser;

static void fail(Parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(Parser *p, size_t pos, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = 1;
    p->err_pos = pos;
    if (p->msg && p->msgcap) {
        va_list ap;
        va_start(ap, fmt);
        err_vfmt(p->msg, p->msgcap, fmt, ap);
        va_end(ap);
    }
}

static RxNode *node(Parser *p, RxKind kind, size_t pos) {
    RxNode *n = calloc(1, sizeof *n);
    if (!n) {
        fail(p, 0, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->pos = (int)pos;
    n->next_alloc = p->re->nodes;
    p->re->nodes = n;
    return n;
}

static int add_kid(Parser *p, RxNode *parent, RxNode *kid) {
    if ((parent->nkids & (parent->nkids - 1)) == 0) {   /* 0, 1, 2, 4, ...: grow */
        int cap = parent->nkids ? parent->nkids * 2 : 2;
        RxNode **k = realloc(parent->kids, (size_t)cap * sizeof *k);
        if (!k) {
            fail(p, 0, "out of memory");
            return -1;
        }
        parent->kids = k;
    }
    parent->kids[parent->nkids++] = kid;
    return 0;
}

/* ---- character sets ------------------------------------------------------ */

static int set_add(Parser *p, RangeSet *set, uint32_t lo, uint32_t hi) {
    if (rx_set_add(set, lo, hi) == 0) return 0;
    fail(p, 0, "out of memory");
    return -1;
}

int rx_set_add(RxRangeSet *set, uint32_t lo, uint32_t hi) {
    if (set->n == set->cap) {
        int cap = set->cap ? set->cap * 2 : 8;
        RxRange *r = realloc(set->r, (size_t)cap * sizeof *r);
        if (!r) return -1;
        set->r = r;
        set->cap = cap;
    }
    set->r[set->n++] = (RxRange){lo, hi};
    return 0;
}

static int range_cmp(const void *a, const void *b) {
    const RxRange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int rx_set_finish(RxRangeSet *set, int negate) {
    /* sort, merge overlapping/adjacent ranges */
    if (set->n) qsort(set->r, (size_t)set->n, sizeof *set->r, range_cmp);
    int out = 0;
    for (int i = 0; i < set->n; i++) {
        RxRange r = set->r[i];
        if (out && r.lo <= set->r[out - 1].hi + 1) {
            if (r.hi > set->r[out - 1].hi) set->r[out - 1].hi = r.hi;
        } else {
            set->r[out++] = r;
        }
    }
    set->n = out;
    /* intersect with (or complement within) the scalar values */
    static const RxRange scalars[] = {{0, 0xD7FF}, {0xE000, 0x10FFFF}};
    RxRangeSet res = {0};
    for (int k = 0; k < 2; k++) {
        uint32_t lo = scalars[k].lo, hi = scalars[k].hi;
        if (negate) {
            uint32_t next = lo;
            for (int i = 0; i < set->n; i++) {
                RxRange r = set->r[i];
                if (r.hi < lo || r.lo > hi) continue;
                if (r.lo > next && rx_set_add(&res, next, r.lo - 1)) goto oom;
                if (r.hi + 1 > next) next = r.hi + 1;
            }
            if (next <= hi && rx_set_add(&res, next, hi)) goto oom;
        } else {
            for (int i = 0; i < set->n; i++) {
                RxRange r = set->r[i];
                if (r.hi < lo || r.lo > hi) continue;
                if (rx_set_add(&res, r.lo < lo ? lo : r.lo, r.hi > hi ? hi : r.hi)) goto oom;
            }
        }
    }
    free(set->r);
    *set = res;
    return 0;
oom:
    free(res.r);
    return -1;
}

/* rx_set_finish, reporting out of memory through the parser. */
static int set_finish(Parser *p, RangeSet *set, int negate) {
    if (rx_set_finish(set, negate) == 0) return 0;
    fail(p, 0, "out of memory");
    return -1;
}

static RxNode *class_node(Parser *p, RangeSet *set, int negate, size_t pos) {
    if (set_finish(p, set, negate)) {
        free(set->r);
        return NULL;
    }
    RxNode *n = node(p, RX_CLASS, pos);
    if (!n) {
        free(set->r);
        return NULL;
    }
    n->ranges = set->r;
    n->nranges = set->n;
    set->r = NULL;
    return n;
}

/* ---- input --------------------------------------------------------------- */

static int at_end(const Parser *p) {
    return p->i >= p->len;
}

static int peek(const Parser *p) {
    return at_end(p) ? -1 : p->s[p->i];
}

/* Decode one UTF-8 character at p->i; advances. */
static int next_char(Parser *p, uint32_t *cp) {
    const unsigned char *s = p->s + p->i;
    size_t left = p->len - p->i;
    unsigned char c = s[0];
    int n;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        p->i++;
        return 0;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 1, v = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2, v = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3, v = c & 0x07u;
    } else {
        fail(p, p->i, "invalid UTF-8 in regex");
        return -1;
    }
    if ((size_t)n >= left) {
        fail(p, p->i, "invalid UTF-8 in regex");
        return -1;
    }
    for (int k = 1; k <= n; k++) {
        if ((s[k] & 0xC0) != 0x80) {
            fail(p, p->i, "invalid UTF-8 in regex");
            return -1;
        }
        v = v << 6 | (s[k] & 0x3Fu);
    }
    static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
    if (v < min[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        fail(p, p->i, "invalid UTF-8 in regex");
        return -1;
    }
    *cp = v;
    p->i += (size_t)n + 1;
    return 0;
}

int rx_hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* After `\x` or `\u`: `{H..}` (1-6 digits), or exactly `ndigits` digits. */
static int hex_escape(Parser *p, size_t start, int ndigits, uint32_t *cp) {
    uint32_t v = 0;
    if (peek(p) == '{') {
        p->i++;
        int digits = 0;
        while (!at_end(p) && rx_hexval(peek(p)) >= 0) {
            if (digits < 8) v = v * 16 + (uint32_t)rx_hexval(peek(p));
            digits++;
            p->i++;
        }
        if (peek(p) != '}' || digits == 0 || digits > 6) {
            fail(p, start, "malformed hex escape (expected {1 to 6 hex digits})");
            return -1;
        }
        p->i++;
    } else {
        for (int k = 0; k < ndigits; k++) {
            if (rx_hexval(peek(p)) < 0) {
                fail(p, start, "malformed hex escape (expected %d hex digits)", ndigits);
                return -1;
            }
            v = v * 16 + (uint32_t)rx_hexval(peek(p));
            p->i++;
        }
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        fail(p, start, "escape is not a Unicode scalar value");
        return -1;
    }
    *cp = v;
    return 0;
}

static int add_class_escape(Parser *p, RangeSet *set, int c) {
    int lower = c | 0x20;
    RangeSet tmp = {0};
    int rc = 0;
    if (lower == 'd') {
        rc = set_add(p, &tmp, '0', '9');
    } else if (lower == 'w') {
        rc = set_add(p, &tmp, '0', '9') || set_add(p, &tmp, 'A', 'Z') ||
             set_add(p, &tmp, '_', '_') || set_add(p, &tmp, 'a', 'z');
    } else {
        rc = set_add(p, &tmp, '\t', '\r') || set_add(p, &tmp, ' ', ' ');   /* \t\n\v\f\r */
    }
    if (!rc && c != lower) {   /* \D \W \S */
        rc = set_finish(p, &tmp, 1);
    }
    for (int k = 0; !rc && k < tmp.n; k++) rc = set_add(p, set, tmp.r[k].lo, tmp.r[k].hi);
    free(tmp.r);
    return rc ? -1 : 0;
}

/* One escape after `\` (p->i is past the backslash). Returns 1 with *cp for
 * a character, 2 after adding a class (\d...) to *set, -1 on error. */
static int escape(Parser *p, RangeSet *set, uint32_t *cp) {
    size_t start = p->i - 1;
    if (at_end(p)) {
        fail(p, start, "trailing backslash");
        return -1;
    }
    int c = peek(p);
    if (c >= 0x80) {    /* an escaped non-ASCII character is itself */
        if (next_char(p, cp)) return -1;
        return 1;
    }
    p->i++;
    switch (c) {
    case 'd': case 'w': case 's': case 'D': case 'W': case 'S':
        return add_class_escape(p, set, c) ? -1 : 2;
    case 'n': *cp = '\n'; return 1;
    case 't': *cp = '\t'; return 1;
    case 'r': *cp = '\r'; return 1;
    case 'f': *cp = '\f'; return 1;
    case 'v': *cp = '\v'; return 1;
    case '0':
        if (peek(p) >= '0' && peek(p) <= '7') {
            fail(p, start, "octal escapes are not supported (use \\x{...})");
            return -1;
        }
        *cp = 0;
        return 1;
    case 'x': return hex_escape(p, start, 2, cp) ? -1 : 1;
    case 'u': return hex_escape(p, start, 4, cp) ? -1 : 1;
    case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
    case 'k': case 'g':
        fail(p, start, "backreferences are not supported in constraint regexes");
        return -1;
    case 'b': case 'B': case 'A': case 'z': case 'Z': case 'G':
        fail(p, start, "'\\%c' is not supported in constraint regexes (the regex always "
                       "matches the whole output)", c);
        return -1;
    case 'p': case 'P':
        fail(p, start, "Unicode properties ('\\%c{...}') are not supported", c);
        return -1;
    default:
        if ((c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
            (c >= 0x7B && c <= 0x7E) || c == ' ') {
            *cp = (uint32_t)c;
            return 1;
        }
        fail(p, start, "unknown escape '\\%c'", c >= 0x20 && c < 0x7F ? c : '?');
        return -1;
    }
}

/* ---- the grammar ------------------------------------------------------------ */

static RxNode *parse_alt(Parser *p);

static RxNode *parse_class(Parser *p) {
    size_t start = p->i++;
    int negate = 0;
    if (peek(p) == '^') {
        negate = 1;
        p->i++;
    }
    RangeSet set = {0};
    int first = 1;
    for (;;) {
        if (at_end(p)) {
            fail(p, start, "missing ']' to close this class");
            goto err;
        }
        int c = peek(p);
        if (c == ']' && !first) {
            p->i++;
            break;
        }
        first = 0;
        if (c == '[' && p->i + 1 < p->len && (p->s[p->i + 1] == ':' || p->s[p->i + 1] == '=' ||
                                              p->s[p->i + 1] == '.')) {
            fail(p, p->i, "POSIX classes like [:alpha:] are not supported");
            goto err;
        }
        size_t lo_pos = p->i;
        uint32_t lo;
        int kind;
        if (c == '\\') {
            p->i++;
            kind = escape(p, &set, &lo);
        } else {
            kind = next_char(p, &lo) ? -1 : 1;
        }
        if (kind < 0) goto err;
        if (kind == 2) {
            if (peek(p) == '-' && p->i + 1 < p->len && p->s[p->i + 1] != ']') {
                fail(p, p->i, "a range cannot start or end with a class like \\d");
                goto err;
            }
            continue;
        }
        uint32_t hi = lo;
        if (peek(p) == '-' && p->i + 1 < p->len && p->s[p->i + 1] != ']') {
            p->i++;
            int k;
            if (peek(p) == '\\') {
                p->i++;
                k = escape(p, &set, &hi);
            } else {
                k = next_char(p, &hi) ? -1 : 1;
            }
            if (k < 0) goto err;
            if (k == 2) {
                fail(p, lo_pos, "a range cannot start or end with a class like \\d");
                goto err;
            }
            if (hi < lo) {
                fail(p, lo_pos, "range out of order in class");
                goto err;
            }
        }
        if (set_add(p, &set, lo, hi)) goto err;
    }
    return class_node(p, &set, negate, start);
err:
    free(set.r);
    return NULL;
}

/* `{m}`, `{m,}`, `{m,n}`, `{,n}` at p->i; returns 1 and advances when it
 * is one, 0 (not advancing) when the `{` is a literal, -1 on error. */
static int parse_braces(Parser *p, int *min, int *max) {
    size_t i = p->i + 1, start = p->i;
    long m = -1, n = -1;
    int digits = 0;
    while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') {
        if (m < 0) m = 0;
        if (m <= RX_MAX_REPEAT) m = m * 10 + (p->s[i] - '0');
        i++, digits++;
    }
    int comma = 0;
    if (i < p->len && p->s[i] == ',') {
        comma = 1;
        i++;
        while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') {
            if (n < 0) n = 0;
            if (n <= RX_MAX_REPEAT) n = n * 10 + (p->s[i] - '0');
            i++;
        }
    }
    if (i >= p->len || p->s[i] != '}') return 0;
    if (m < 0 && n < 0) return 0;               /* `{}` or `{,}` */
    if (m < 0) m = 0;
    if (!comma) n = m;
    if (m > RX_MAX_REPEAT || n > RX_MAX_REPEAT) {
        fail(p, start, "repetition count too large (the limit is %d)", RX_MAX_REPEAT);
        return -1;
    }
    if (n >= 0 && n < m) {
        fail(p, start, "repetition range out of order");
        return -1;
    }
    (void)digits;
    *min = (int)m;
    *max = n < 0 ? RX_INF : (int)n;
    p->i = i + 1;
    return 1;
}

/* A quantifier at p->i? Returns 1 (and the bounds, advancing), 0, -1. */
static int quantifier(Parser *p, int *min, int *max) {
    switch (peek(p)) {
    case '*': *min = 0, *max = RX_INF; p->i++; return 1;
    case '+': *min = 1, *max = RX_INF; p->i++; return 1;
    case '?': *min = 0, *max = 1; p->i++; return 1;
    case '{': return parse_braces(p, min, max);
    default: return 0;
    }
}

static RxNode *parse_atom(Parser *p) {
    size_t start = p->i;
    int c = peek(p);
    if (c == '(') {
        p->i++;
        int capture = 1;
        if (peek(p) == '?') {
            if (p->i + 1 < p->len && p->s[p->i + 1] == ':') {
                p->i += 2;
                capture = 0;
            } else {
                int d = p->i + 1 < p->len ? p->s[p->i + 1] : 0;
                int e = p->i + 2 < p->len ? p->s[p->i + 2] : 0;
                if (d == '=' || d == '!' || (d == '<' && (e == '=' || e == '!')))
                    fail(p, start, "look-around is not supported in constraint regexes");
                else
                    fail(p, start, "unsupported group syntax '(?' (only '(?:' is allowed)");
                return NULL;
            }
        }
        if (++p->depth > RX_MAX_DEPTH) {
            fail(p, start, "groups nested too deeply (the limit is %d)", RX_MAX_DEPTH);
            return NULL;
        }
        int group = capture ? ++p->re->ngroups : 0;
        RxNode *inner = parse_alt(p);
        p->depth--;
        if (!inner) return NULL;
        if (peek(p) != ')') {
            fail(p, start, "missing ')' to close this group");
            return NULL;
        }
        p->i++;
        if (!capture) return inner;
        RxNode *g = node(p, RX_GROUP, start);
        if (!g) return NULL;
        g->sub = inner;
        g->group = group;
        return g;
    }
    if (c == '[') return parse_class(p);
    if (c == '.') {
        p->i++;
        RangeSet set = {0};
        if (set_add(p, &set, '\n', '\n')) return NULL;
        return class_node(p, &set, 1, start);
    }
    if (c == '*' || c == '+' || c == '?') {
        fail(p, start, "nothing to repeat before '%c'", c);
        return NULL;
    }
    if (c == '{') {
        int min, max;
        size_t save = p->i;
        int q = parse_braces(p, &min, &max);
        if (q < 0) return NULL;
        if (q > 0) {
            fail(p, save, "nothing to repeat before '{'");
            return NULL;
        }
    }
    if (c == '^' || c == '$') {
        fail(p, start, "'%c' is only allowed at the %s of the regex (it always matches the "
                       "whole output)", c, c == '^' ? "start" : "end");
        return NULL;
    }
    uint32_t cp;
    if (c == '\\') {
        p->i++;
        RangeSet set = {0};
        int k = escape(p, &set, &cp);
        if (k < 0) {
            free(set.r);
            return NULL;
        }
        if (k == 2) return class_node(p, &set, 0, start);
    } else if (next_char(p, &cp)) {
        return NULL;
    }
    RxNode *n = node(p, RX_CHAR, start);
    if (n) n->cp = cp;
    return n;
}

static RxNode *parse_concat(Parser *p) {
    size_t start = p->i;
    RxNode *cat = NULL, *only = NULL;
    while (!at_end(p) && peek(p) != '|' && peek(p) != ')') {
        RxNode *atom = parse_atom(p);
        if (!atom) return NULL;
        int min, max;
        int q = quantifier(p, &min, &max);
        if (q < 0) return NULL;
        if (q > 0) {
            if (peek(p) == '?') {
                p->i++;     /* lazy: same language */
            } else if (peek(p) == '+') {
                fail(p, p->i, "possessive quantifiers are not supported");
                return NULL;
            }
            int min2, max2;
            size_t qpos = p->i;
            int q2 = quantifier(p, &min2, &max2);
            if (q2 < 0) return NULL;
            if (q2 > 0) {
                fail(p, qpos, "a quantifier cannot follow another (use a group)");
                return NULL;
            }
            RxNode *r = node(p, RX_REPEAT, (size_t)atom->pos);
            if (!r) return NULL;
            r->sub = atom;
            r->min = min;
            r->max = max;
            atom = r;
        }
        if (!only) {
            only = atom;
        } else {
            if (!cat) {
                cat = node(p, RX_CONCAT, start);
                if (!cat || add_kid(p, cat, only)) return NULL;
            }
            if (add_kid(p, cat, atom)) return NULL;
        }
    }
    if (cat) return cat;
    if (only) return only;
    return node(p, RX_EMPTY, start);
}

static RxNode *parse_alt(Parser *p) {
    size_t start = p->i;
    RxNode *first = parse_concat(p);
    if (!first) return NULL;
    if (peek(p) != '|') return first;
    RxNode *alt = node(p, RX_ALT, start);
    if (!alt || add_kid(p, alt, first)) return NULL;
    while (peek(p) == '|') {
        p->i++;
        RxNode *next = parse_concat(p);
        if (!next || add_kid(p, alt, next)) return NULL;
    }
    return alt;
}

void rx_free(RxRegex *re) {
    if (!re) return;
    RxNode *n = re->nodes;
    while (n) {
        RxNode *next = n->next_alloc;
        free(n->kids);
        free(n->ranges);
        free(n);
        n = next;
    }
    memset(re, 0, sizeof *re);
}

int rx_parse(const char *src, size_t len, RxRegex *out, int *err_col, char *msg, size_t msgcap) {
    memset(out, 0, sizeof *out);
    Parser p = {0};
    p.s = (const unsigned char *)src;
    p.len = len;
    p.re = out;
    p.msg = msg;
    p.msgcap = msgcap;
    if (msg && msgcap) msg[0] = '\0';
    /* whole-output matching: a leading ^ and a trailing $ add nothing */
    size_t end = len;
    if (p.len > 0 && p.s[0] == '^') p.i = 1;
    if (end > p.i && p.s[end - 1] == '$') {
        size_t bs = 0;     /* `\$` is a literal dollar */
        while (bs < end - 1 - p.i && p.s[end - 2 - bs] == '\\') bs++;
        if (bs % 2 == 0) p.len = end - 1;
    }
    RxNode *root = parse_alt(&p);
    if (root && !p.failed && !at_end(&p)) fail(&p, p.i, "unmatched ')'");
    if (!root || p.failed) {
        if (!p.failed) fail(&p, p.i, "invalid regex");
        if (err_col) *err_col = (int)p.err_pos + 1;
        rx_free(out);
        return -1;
    }
    out->root = root;
    return 0;
}

int rx_check(const char *src, size_t len, int *err_col, char *msg, size_t msgcap) {
    RxRegex re;
    int rc = rx_parse(src, len, &re, err_col, msg, msgcap);
    if (rc == 0) rx_free(&re);
    return rc;
}

/* ---- dump ------------------------------------------------------------------- */

void rx_text_put(RxText *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 128;
        while (cap <= t->len + (size_t)n) cap *= 2;
        char *np = realloc(t->p, cap);
        if (!np) {
            t->failed = 1;
            return;
        }
        t->p = np;
        t->cap = cap;
    }
}

static void put_cp(RxText *t, uint32_t cp, const char *quoted_as_number) {
    if (cp > 0x20 && cp < 0x7F && !strchr(quoted_as_number, (int)cp)) rx_text_put(t, "'%c'", (char)cp);
    else rx_text_put(t, "U+%04X", (unsigned)cp);
}

void rx_text_ranges(RxText *t, const RxRange *ranges, int nranges, const char *quoted_as_number) {
    for (int i = 0; i < nranges; i++) {
        rx_text_put(t, " ");
        put_cp(t, ranges[i].lo, quoted_as_number);
        if (ranges[i].hi != ranges[i].lo) {
            rx_text_put(t, "-");
            put_cp(t, ranges[i].hi, quoted_as_number);
        }
    }
}

/* The regex dump writes ' and \ as numbers, so a quoted character is never
 * an escape. */
static const char quoted_as_number[] = "'\\";

static void dump(RxText *o, const RxNode *n) {
    switch (n->kind) {
    case RX_EMPTY: rx_text_put(o, "(empty)"); break;
    case RX_CHAR: rx_text_put(o, "(char "); put_cp(o, n->cp, quoted_as_number); rx_text_put(o, ")"); break;
    case RX_CLASS:
        rx_text_put(o, "(class");
        rx_text_ranges(o, n->ranges, n->nranges, quoted_as_number);
        rx_text_put(o, ")");
        break;
    case RX_CONCAT:
    case RX_ALT:
        rx_text_put(o, n->kind == RX_CONCAT ? "(cat" : "(alt");
        for (int i = 0; i < n->nkids; i++) {
            rx_text_put(o, " ");
            dump(o, n->kids[i]);
        }
        rx_text_put(o, ")");
        break;
    case RX_REPEAT:
        if (n->max == RX_INF) rx_text_put(o, "(rep %d inf ", n->min);
        else rx_text_put(o, "(rep %d %d ", n->min, n->max);
        dump(o, n->sub);
        rx_text_put(o, ")");
        break;
    case RX_GROUP:
        rx_text_put(o, "(group %d ", n->group);
        dump(o, n->sub);
        rx_text_put(o, ")");
        break;
    }
}

char *rx_dump(const RxNode *n) {
    RxText o = {0};
    if (n) dump(&o, n);
    else rx_text_put(&o, "()");
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    return o.p;
}
