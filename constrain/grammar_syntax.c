/*
 * constrain/grammar_syntax.c — recursive-descent parser and checker for the
 * GBNF-style EBNF (syntax and tree: constrain/grammar_syntax.h).
 *
 * Character classes are handed to the regex parser (regex_syntax.c), so a
 * class means the same in `re"..."` and in a grammar. References are
 * resolved after all rules are read, in source order, so the first
 * undefined name is the one reported. Hex digits and the dump's text and
 * class ranges come from regex_syntax.h too.
 */
#include "constrain/grammar_syntax.h"
#include "base/err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"

typedef struct {
    const char *s;
    size_t len, i;
    GbnfGrammar *g;
    int *line_starts;
    int nlines;
    int failed;
    size_t err_pos;
    char *msg;
    size_t msgcap;
    int depth;
    GbNode **refs;          /* GB_REF nodes in source order */
    int nrefs, refcap;
    GbDialect dialect;
    int code;               /* ERR_CONSTRAINT, or ERR_UNSUPPORTED */
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

static void position(const Parser *p, size_t off, int *line, int *col) {
    int lo = 0, hi = p->nlines - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if ((size_t)p->line_starts[mid] <= off) lo = mid;
        else hi = mid - 1;
    }
    *line = lo + 1;
    *col = (int)(off - (size_t)p->line_starts[lo]) + 1;
}

static GbNode *node(Parser *p, GbKind kind, size_t pos) {
    GbNode *n = calloc(1, sizeof *n);
    if (!n) {
        fail(p, 0, "out of memory");
        return NULL;
    }
    n->kind = kind;
    position(p, pos, &n->line, &n->col);
    n->next_alloc = p->g->nodes;
    p->g->nodes = n;
    return n;
}

static int add_kid(Parser *p, GbNode *parent, GbNode *kid) {
    if ((parent->nkids & (parent->nkids - 1)) == 0) {
        int cap = parent->nkids ? parent->nkids * 2 : 2;
        GbNode **k = realloc(parent->kids, (size_t)cap * sizeof *k);
        if (!k) {
            fail(p, 0, "out of memory");
            return -1;
        }
        parent->kids = k;
    }
    parent->kids[parent->nkids++] = kid;
    return 0;
}

static int peek(const Parser *p) {
    return p->i < p->len ? (unsigned char)p->s[p->i] : -1;
}

static int is_name_char(const Parser *p, int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || (c == '.' && p->dialect == GB_EBNF);
}

/* A valid construct of the dialect that this parser does not enforce:
 * "<what> not supported" with ERR_UNSUPPORTED. */
static void unsupported(Parser *p, size_t pos, const char *what) {
    if (p->failed) return;
    fail(p, pos, "%s not supported", what);
    p->code = ERR_UNSUPPORTED;
}

static void skip_space(Parser *p) {
    while (p->i < p->len) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            p->i++;
        } else if (c == '#') {
            while (p->i < p->len && p->s[p->i] != '\n') p->i++;
        } else {
            break;
        }
    }
}

/* Is there `NAME ::=` at p->i? (the start of the next rule) */
static int rule_starts_here(const Parser *p) {
    size_t i = p->i;
    while (i < p->len && is_name_char(p, (unsigned char)p->s[i])) i++;
    if (i == p->i) return 0;
    while (i < p->len && (p->s[i] == ' ' || p->s[i] == '\t')) i++;
    if (p->dialect == GB_EBNF && i < p->len && p->s[i] == '[') {
        /* XGrammar's rule options: name[...] ::= */
        while (i < p->len && p->s[i] != ']' && p->s[i] != '\n') i++;
        if (i < p->len && p->s[i] == ']') i++;
        while (i < p->len && (p->s[i] == ' ' || p->s[i] == '\t')) i++;
    }
    return p->len - i >= 3 && memcmp(p->s + i, "::=", 3) == 0;
}

/* ---- literals and classes ------------------------------------------------------ */

/* The escape at p->s[p->i] == '\\' (end: where the literal or class ends).
 * Returns 1 with *cp for a character, 2 with *cls = 'd' 'w' 's' 'D' 'W' 'S'
 * (classes only), 0 after a failure. In a class, regex punctuation may be
 * escaped too. */
static int decode_escape(Parser *p, size_t end, int in_class, uint32_t *cp, int *cls) {
    size_t esc = p->i;
    if (p->i + 1 >= end) {
        fail(p, esc, "trailing backslash");
        return 0;
    }
    char e = p->s[p->i + 1];
    p->i += 2;
    int digits = 0;
    switch (e) {
    case 'n': *cp = '\n'; return 1;
    case 't': *cp = '\t'; return 1;
    case 'r': *cp = '\r'; return 1;
    case 'f': *cp = '\f'; return 1;
    case 'v': *cp = '\v'; return 1;
    case 'a': *cp = '\a'; return 1;
    case 'b': *cp = '\b'; return 1;
    case 'e': *cp = 0x1B; return 1;
    case '0': *cp = 0; return 1;
    case '\\': case '"': case '\'': case '[': case ']': case '-': case '/': case '?':
        *cp = (uint32_t)e;
        return 1;
    case 'x': digits = p->dialect == GB_EBNF ? -1 : 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    case 'd': case 'w': case 's': case 'D': case 'W': case 'S':
        if (in_class) {
            *cls = e;
            return 2;
        }
        break;
    case '^': case '$': case '.': case '*': case '+': case '(': case ')': case '{': case '}': case '|':
        if (in_class) {
            *cp = (uint32_t)e;
            return 1;
        }
        break;
    default: break;
    }
    if (!digits) {
        fail(p, esc, "unknown escape '\\%c'", e >= 0x20 && e < 0x7F ? e : '?');
        return 0;
    }
    uint32_t v = 0;
    if (e == 'u' && p->i < end && p->s[p->i] == '{') {
        size_t k = p->i + 1;
        int nd = 0;
        while (k < end && rx_hexval((unsigned char)p->s[k]) >= 0) {
            if (nd < 8) v = v * 16 + (uint32_t)rx_hexval((unsigned char)p->s[k]);
            nd++, k++;
        }
        if (k >= end || p->s[k] != '}' || nd == 0 || nd > 6) {
            fail(p, esc, "malformed escape '\\u{...}'");
            return 0;
        }
        p->i = k + 1;
    } else if (digits < 0) {
        /* XGrammar's \x: one or more hex digits */
        int nd = 0;
        while (p->i < end && rx_hexval((unsigned char)p->s[p->i]) >= 0) {
            if (nd < 8) v = v * 16 + (uint32_t)rx_hexval((unsigned char)p->s[p->i]);
            nd++, p->i++;
        }
        if (nd == 0 || nd > 8) {
            fail(p, esc, "malformed escape '\\x' (expected hex digits)");
            return 0;
        }
    } else {
        for (int d = 0; d < digits; d++, p->i++) {
            int h = p->i < end ? rx_hexval((unsigned char)p->s[p->i]) : -1;
            if (h < 0) {
                fail(p, esc, "malformed escape '\\%c' (expected %d hex digits)", e, digits);
                return 0;
            }
            v = v * 16 + (uint32_t)h;
        }
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        fail(p, esc, "escape is not a Unicode scalar value");
        return 0;
    }
    *cp = v;
    return 1;
}

/* One character of the text at p->i (raw UTF-8 or an escape); see decode_escape. */
static int next_char(Parser *p, size_t end, int in_class, uint32_t *cp, int *cls) {
    if (p->s[p->i] == '\\') return decode_escape(p, end, in_class, cp, cls);
    int n = utf8_decode(p->s + p->i, end - p->i, cp);
    if (n <= 0) {
        fail(p, p->i, "invalid UTF-8");
        return 0;
    }
    p->i += (size_t)n;
    return 1;
}

/* "..." or '...': each escape becomes at most 4 bytes and takes at least 2
 * source bytes, so the literal's source length bounds its decoded length. */
static GbNode *parse_string(Parser *p) {
    size_t start = p->i;
    char quote = p->s[p->i++];
    size_t end = p->i;
    while (end < p->len && p->s[end] != quote && p->s[end] != '\n') {
        if (p->s[end] == '\\' && end + 1 < p->len && p->s[end + 1] != '\n') end++;
        end++;
    }
    if (end >= p->len || p->s[end] != quote) {
        fail(p, start, "unterminated string literal");
        return NULL;
    }
    GbNode *n = node(p, GB_STR, start);
    if (!n) return NULL;
    n->str = malloc(2 * (end - p->i) + 4);
    if (!n->str) {
        fail(p, 0, "out of memory");
        return NULL;
    }
    size_t len = 0;
    while (p->i < end) {
        uint32_t cp;
        int cls;
        if (!next_char(p, end, 0, &cp, &cls)) return NULL;
        len += (size_t)utf8_encode(cp, n->str + len);
    }
    n->str[len] = '\0';
    n->len = len;
    p->i = end + 1;
    return n;
}

typedef RxRangeSet Ranges;

static int ranges_add(Parser *p, Ranges *s, uint32_t lo, uint32_t hi) {
    if (rx_set_add(s, lo, hi) == 0) return 0;
    fail(p, 0, "out of memory");
    return -1;
}

/* Sorted, merged, surrogates cut out, complemented when `negate`. */
static int ranges_finish(Parser *p, Ranges *s, int negate) {
    if (rx_set_finish(s, negate) == 0) return 0;
    fail(p, 0, "out of memory");
    return -1;
}

static int add_class_escape(Parser *p, Ranges *set, int c) {
    Ranges tmp = {0};
    int lower = c | 0x20, rc;
    if (lower == 'd') rc = ranges_add(p, &tmp, '0', '9');
    else if (lower == 'w') rc = ranges_add(p, &tmp, '0', '9') || ranges_add(p, &tmp, 'A', 'Z') ||
                                ranges_add(p, &tmp, '_', '_') || ranges_add(p, &tmp, 'a', 'z');
    else rc = ranges_add(p, &tmp, '\t', '\r') || ranges_add(p, &tmp, ' ', ' ');
    if (!rc && c != lower) rc = ranges_finish(p, &tmp, 1);
    for (int k = 0; !rc && k < tmp.n; k++) rc = ranges_add(p, set, tmp.r[k].lo, tmp.r[k].hi);
    free(tmp.r);
    return rc;
}

/* [...]: ranges, `^`, escapes, \d \w \s. `[^]` is any character; a `]`
 * right after `[` or `[^` closes the class (llama.cpp's reading). */
static GbNode *parse_class(Parser *p) {
    size_t start = p->i;
    size_t end = p->i + 1;
    while (end < p->len && p->s[end] != ']' && p->s[end] != '\n') {
        if (p->s[end] == '\\' && end + 1 < p->len && p->s[end + 1] != '\n') end++;
        end++;
    }
    if (end >= p->len || p->s[end] != ']') {
        fail(p, start, "unterminated character class");
        return NULL;
    }
    p->i++;
    int negate = 0;
    if (p->i < end && p->s[p->i] == '^') negate = 1, p->i++;
    if (p->i == end && !negate) {
        fail(p, start, "empty character class '[]'");
        return NULL;
    }
    Ranges set = {0};
    while (p->i < end) {
        uint32_t lo, hi;
        int cls;
        size_t at = p->i;
        int k = next_char(p, end, 1, &lo, &cls);
        if (!k) goto bad;
        if (k == 2) {
            if (add_class_escape(p, &set, cls)) goto bad;
            continue;
        }
        hi = lo;
        if (p->i + 1 < end && p->s[p->i] == '-') {
            p->i++;
            k = next_char(p, end, 1, &hi, &cls);
            if (!k) goto bad;
            if (k == 2) {
                fail(p, at, "a class escape cannot end a range");
                goto bad;
            }
            if (hi < lo) {
                fail(p, at, "range out of order in class");
                goto bad;
            }
        }
        if (ranges_add(p, &set, lo, hi)) goto bad;
    }
    if (ranges_finish(p, &set, negate)) goto bad;
    GbNode *n = node(p, GB_CLASS, start);
    if (!n) goto bad;
    n->ranges = set.r;
    n->nranges = set.n;
    p->i = end + 1;
    return n;
bad:
    free(set.r);
    return NULL;
}

/* ---- the grammar ------------------------------------------------------------ */

static GbNode *parse_alts(Parser *p);

/* A quantifier at p->i: 1 (bounds set, advanced), 0 none, -1 error. */
static int quantifier(Parser *p, int *min, int *max) {
    int c = peek(p);
    if (c == '*' || c == '+' || c == '?') {
        *min = c == '+';
        *max = c == '?' ? 1 : RX_INF;
        p->i++;
        return 1;
    }
    if (c != '{') return 0;
    size_t start = p->i, i = p->i + 1;
    long m = -1, n = -1;
    while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') {
        m = (m < 0 ? 0 : m) * 10 + (p->s[i] - '0');
        if (m > RX_MAX_REPEAT) m = RX_MAX_REPEAT + 1;
        i++;
    }
    int comma = 0;
    if (i < p->len && p->s[i] == ',') {
        comma = 1;
        for (i++; i < p->len && p->s[i] >= '0' && p->s[i] <= '9'; i++) {
            n = (n < 0 ? 0 : n) * 10 + (p->s[i] - '0');
            if (n > RX_MAX_REPEAT) n = RX_MAX_REPEAT + 1;
        }
    }
    if (i >= p->len || p->s[i] != '}' || (m < 0 && n < 0)) {
        fail(p, start, "malformed repetition (expected {m}, {m,}, {m,n} or {,n})");
        return -1;
    }
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
    *min = (int)m;
    *max = n < 0 ? RX_INF : (int)n;
    p->i = i + 1;
    return 1;
}

static GbNode *parse_term(Parser *p) {
    size_t start = p->i;
    int c = peek(p);
    if (c == '"' || c == '\'') return parse_string(p);
    if (c == '[') return parse_class(p);
    if (c == '.') {
        p->i++;
        GbNode *n = node(p, GB_CLASS, start);
        if (!n) return NULL;
        /* any character, line breaks included (llama.cpp's `.`) */
        n->ranges = malloc(2 * sizeof *n->ranges);
        if (!n->ranges) {
            fail(p, 0, "out of memory");
            return NULL;
        }
        n->ranges[0] = (RxRange){0, 0xD7FF};
        n->ranges[1] = (RxRange){0xE000, 0x10FFFF};
        n->nranges = 2;
        return n;
    }
    if (c == '(') {
        size_t k = p->i + 1;
        while (k < p->len && (p->s[k] == ' ' || p->s[k] == '\t')) k++;
        if (k < p->len && p->s[k] == '=' && p->dialect == GB_EBNF) {
            unsupported(p, start, "lookahead assertions '(= ...)' are");
            return NULL;
        }
        p->i++;
        if (++p->depth > RX_MAX_DEPTH) {
            fail(p, start, "groups nested too deeply (the limit is %d)", RX_MAX_DEPTH);
            return NULL;
        }
        GbNode *inner = parse_alts(p);
        p->depth--;
        if (!inner) return NULL;
        skip_space(p);
        if (peek(p) != ')') {
            fail(p, start, "missing ')' to close this group");
            return NULL;
        }
        p->i++;
        return inner;
    }
    if (c == '<' || (c == '!' && p->i + 1 < p->len && p->s[p->i + 1] == '<')) {
        unsupported(p, start, "token references ('<[id]>', '<token>', '!<...>') are");
        return NULL;
    }
    if (is_name_char(p, c)) {
        while (p->i < p->len && is_name_char(p, (unsigned char)p->s[p->i])) p->i++;
        if (p->i < p->len && p->s[p->i] == '(' && p->dialect == GB_EBNF) {
            char what[96];
            snprintf(what, sizeof what, "the macro '%.*s(...)' is", (int)(p->i - start > 40 ? 40 : p->i - start),
                     p->s + start);
            unsupported(p, start, what);
            return NULL;
        }
        GbNode *n = node(p, GB_REF, start);
        if (!n) return NULL;
        n->len = p->i - start;
        n->str = malloc(n->len + 1);
        if (!n->str) {
            fail(p, 0, "out of memory");
            return NULL;
        }
        memcpy(n->str, p->s + start, n->len);
        n->str[n->len] = '\0';
        if (p->nrefs == p->refcap) {
            int cap = p->refcap ? p->refcap * 2 : 16;
            GbNode **r = realloc(p->refs, (size_t)cap * sizeof *r);
            if (!r) {
                fail(p, 0, "out of memory");
                return NULL;
            }
            p->refs = r;
            p->refcap = cap;
        }
        p->refs[p->nrefs++] = n;
        return n;
    }
    if (c == '*' || c == '+' || c == '?' || c == '{') {
        fail(p, start, "nothing to repeat before '%c'", c);
        return NULL;
    }
    if (c >= 0x21 && c < 0x7F) fail(p, start, "unexpected character '%c'", c);
    else fail(p, start, "unexpected byte 0x%02X", (unsigned)c);
    return NULL;
}

static GbNode *parse_seq(Parser *p) {
    skip_space(p);
    GbNode *seq = node(p, GB_SEQ, p->i);
    if (!seq) return NULL;
    for (;;) {
        skip_space(p);
        int c = peek(p);
        if (c < 0 || c == '|' || c == ')' || rule_starts_here(p)) break;
        GbNode *t = parse_term(p);
        if (!t) return NULL;
        int min, max;
        int q = quantifier(p, &min, &max);
        if (q < 0) return NULL;
        if (q > 0) {
            GbNode *r = node(p, GB_REPEAT, 0);
            if (!r) return NULL;
            r->line = t->line;
            r->col = t->col;
            r->sub = t;
            r->min = min;
            r->max = max;
            t = r;
            size_t qpos = p->i;
            int q2 = quantifier(p, &min, &max);
            if (q2 < 0) return NULL;
            if (q2 > 0) {
                fail(p, qpos, "a quantifier cannot follow another (use a group)");
                return NULL;
            }
        }
        if (add_kid(p, seq, t)) return NULL;
    }
    /* a one-item sequence is that item */
    if (seq->nkids == 1) return seq->kids[0];
    return seq;
}

static GbNode *parse_alts(Parser *p) {
    size_t start = p->i;
    GbNode *first = parse_seq(p);
    if (!first) return NULL;
    skip_space(p);
    if (peek(p) != '|') return first;
    GbNode *alt = node(p, GB_ALT, start);
    if (!alt || add_kid(p, alt, first)) return NULL;
    while (peek(p) == '|') {
        p->i++;
        GbNode *next = parse_seq(p);
        if (!next || add_kid(p, alt, next)) return NULL;
        skip_space(p);
    }
    alt->line = first->line;
    alt->col = first->col;
    return alt;
}

static int find_rule(const GbnfGrammar *g, const char *name) {
    for (int i = 0; i < g->nrules; i++)
        if (strcmp(g->rules[i].name, name) == 0) return i;
    return -1;
}

static void parse_rules(Parser *p) {
    GbnfGrammar *g = p->g;
    int cap = 0;
    for (;;) {
        skip_space(p);
        if (p->i >= p->len) break;
        size_t start = p->i;
        if (!is_name_char(p, peek(p))) {
            if (peek(p) == ')') fail(p, start, "unexpected ')'");
            else fail(p, start, "expected a rule name");
            return;
        }
        while (p->i < p->len && is_name_char(p, (unsigned char)p->s[p->i])) p->i++;
        size_t name_end = p->i;
        skip_space(p);
        if (peek(p) == '[' && p->dialect == GB_EBNF) {
            unsupported(p, p->i, "rule options ('name[max_tokens=..., capture, lazy, ...] ::=') are");
            return;
        }
        if (p->len - p->i < 3 || memcmp(p->s + p->i, "::=", 3) != 0) {
            fail(p, p->i, "expected '::=' after the rule name");
            return;
        }
        p->i += 3;
        if (g->nrules == cap) {
            cap = cap ? cap * 2 : 8;
            GbRule *r = realloc(g->rules, (size_t)cap * sizeof *r);
            if (!r) {
                fail(p, 0, "out of memory");
                return;
            }
            g->rules = r;
        }
        GbRule *rule = &g->rules[g->nrules];
        memset(rule, 0, sizeof *rule);
        rule->name = malloc(name_end - start + 1);
        if (!rule->name) {
            fail(p, 0, "out of memory");
            return;
        }
        memcpy(rule->name, p->s + start, name_end - start);
        rule->name[name_end - start] = '\0';
        position(p, start, &rule->line, &rule->col);
        g->nrules++;
        if (find_rule(g, rule->name) != g->nrules - 1) {
            fail(p, start, "rule '%s' is defined twice", rule->name);
            return;
        }
        rule->body = parse_alts(p);
        if (!rule->body) return;
        skip_space(p);
        if (peek(p) == ')') {
            fail(p, p->i, "unexpected ')'");
            return;
        }
    }
}

void gbnf_free(GbnfGrammar *g) {
    if (!g) return;
    for (int i = 0; i < g->nrules; i++) free(g->rules[i].name);
    free(g->rules);
    GbNode *n = g->nodes;
    while (n) {
        GbNode *next = n->next_alloc;
        free(n->str);
        free(n->ranges);
        free(n->kids);
        free(n);
        n = next;
    }
    memset(g, 0, sizeof *g);
}

int gbnf_parse(const char *src, size_t len, GbnfGrammar *out, int *line, int *col, char *msg,
               size_t msgcap) {
    return gbnf_parse_dialect(src, len, GB_GBNF, out, line, col, NULL, msg, msgcap);
}

int gbnf_parse_dialect(const char *src, size_t len, GbDialect dialect, GbnfGrammar *out, int *line,
                       int *col, int *code, char *msg, size_t msgcap) {
    memset(out, 0, sizeof *out);
    if (code) *code = ERR_CONSTRAINT;
    Parser p = {0};
    p.dialect = dialect;
    p.code = ERR_CONSTRAINT;
    p.s = src;
    p.len = len;
    p.g = out;
    p.msg = msg;
    p.msgcap = msgcap;
    if (msg && msgcap) msg[0] = '\0';
    p.nlines = 1;
    for (size_t i = 0; i < len; i++) p.nlines += src[i] == '\n';
    p.line_starts = malloc((size_t)p.nlines * sizeof *p.line_starts);
    if (!p.line_starts) {
        if (line) *line = 1;
        if (col) *col = 1;
        if (msg && msgcap) snprintf(msg, msgcap, "out of memory");
        return -1;
    }
    int k = 0;
    p.line_starts[k++] = 0;
    for (size_t i = 0; i < len; i++)
        if (src[i] == '\n') p.line_starts[k++] = (int)(i + 1);

    parse_rules(&p);
    if (!p.failed && out->nrules == 0) fail(&p, 0, "the grammar has no rules (it needs a 'root' rule)");
    if (!p.failed) {
        for (int i = 0; i < p.nrefs && !p.failed; i++) {
            GbNode *r = p.refs[i];
            r->rule = find_rule(out, r->str);
            if (r->rule < 0) {
                p.failed = 1;
                p.err_pos = 0;
                if (line) *line = r->line;
                if (col) *col = r->col;
                if (msg && msgcap) snprintf(msg, msgcap, "undefined rule '%s'", r->str);
                free(p.refs);
                free(p.line_starts);
                gbnf_free(out);
                return -1;
            }
        }
    }
    if (!p.failed) {
        out->root = find_rule(out, "root");
        if (out->root < 0) fail(&p, 0, "no 'root' rule");
    }
    free(p.refs);
    if (code) *code = p.code;
    if (p.failed) {
        int l, c;
        position(&p, p.err_pos, &l, &c);
        if (line) *line = l;
        if (col) *col = c;
        free(p.line_starts);
        gbnf_free(out);
        return -1;
    }
    free(p.line_starts);
    return 0;
}

int gbnf_check(const char *src, size_t len, int *line, int *col, char *msg, size_t msgcap) {
    GbnfGrammar g;
    int rc = gbnf_parse(src, len, &g, line, col, msg, msgcap);
    if (rc == 0) gbnf_free(&g);
    return rc;
}

/* ---- dump --------------------------------------------------------------------- */

/* The grammar dump quotes a backslash as a character; only ' is a number. */
static const char quoted_as_number[] = "'";

static void dump(RxText *o, const GbnfGrammar *g, const GbNode *n) {
    switch (n->kind) {
    case GB_ALT:
    case GB_SEQ:
        rx_text_put(o, n->kind == GB_ALT ? "(alt" : "(seq");
        for (int i = 0; i < n->nkids; i++) {
            rx_text_put(o, " ");
            dump(o, g, n->kids[i]);
        }
        rx_text_put(o, ")");
        break;
    case GB_STR:
        rx_text_put(o, "(str \"");
        for (size_t i = 0; i < n->len; i++) {
            unsigned char c = (unsigned char)n->str[i];
            if (c == '"' || c == '\\') rx_text_put(o, "\\%c", c);
            else if (c == '\n') rx_text_put(o, "\\n");
            else if (c >= 0x20 && c < 0x7F) rx_text_put(o, "%c", c);
            else if (c < 0x80) rx_text_put(o, "\\x%02x", c);
            else {
                /* one UTF-8 sequence as \uXXXX */
                int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
                uint32_t cp = c & (extra == 3 ? 7u : extra == 2 ? 15u : 31u);
                for (int k = 0; k < extra && i + 1 < n->len; k++)
                    cp = cp << 6 | ((unsigned char)n->str[++i] & 0x3Fu);
                rx_text_put(o, "\\u%04x", (unsigned)cp);
            }
        }
        rx_text_put(o, "\")");
        break;
    case GB_CLASS:
        rx_text_put(o, "(class");
        rx_text_ranges(o, n->ranges, n->nranges, quoted_as_number);
        rx_text_put(o, ")");
        break;
    case GB_REF: rx_text_put(o, "(ref %s)", g->rules[n->rule].name); break;
    case GB_REPEAT:
        if (n->max == RX_INF) rx_text_put(o, "(rep %d inf ", n->min);
        else rx_text_put(o, "(rep %d %d ", n->min, n->max);
        dump(o, g, n->sub);
        rx_text_put(o, ")");
        break;
    }
}

char *gbnf_dump(const GbnfGrammar *g) {
    RxText o = {0};
    rx_text_put(&o, "%s", "");
    for (int i = 0; i < g->nrules; i++) {
        rx_text_put(&o, "%s(%s ", i ? " " : "", g->rules[i].name);
        dump(&o, g, g->rules[i].body);
        rx_text_put(&o, ")");
    }
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    return o.p;
}
