/*
 * constrain/builder.c — the grammar IR every front end lowers to: hash-consed
 * expressions, rules, the first-failure memory, and the regex front end's
 * lowering (cgb_regex, cg_compile_regex). Layout: constrain/builder_internal.h.
 * Turning rules into automata is build.c's job.
 *
 * Construction simplifies as it goes, so equal languages written alike get
 * one handle: sequences and alternations are flattened, EMPTY leaves a
 * sequence, NOTHING an alternation, a NOTHING kid makes the sequence
 * NOTHING, alternation kids are sorted and deduplicated.
 */
#include "constrain/builder_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/utf8.h"
#include "constrain/regex_syntax.h"

/* ---- limits and failures ----------------------------------------------------- */

void cx_limits(CgLimits *out, const CgLimits *in) {
    CgLimits d = {.max_repeat = 1000, .max_dfa_states = 100000, .max_rules = 100000, .max_depth = 100};
    if (in) {
        if (in->max_repeat > 0) d.max_repeat = in->max_repeat;
        if (in->max_dfa_states > 0) d.max_dfa_states = in->max_dfa_states;
        if (in->max_rules > 0) d.max_rules = in->max_rules;
        if (in->max_depth > 0) d.max_depth = in->max_depth;
    }
    *out = d;
}

int cx_fail(CgBuilder *b, int code, const char *fmt, ...) {
    if (b->err) return -1;
    b->err = code;
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(b->msg, sizeof b->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int oom(CgBuilder *b) { return cx_fail(b, ERR_NOMEM, "out of memory"); }

/* ---- interning --------------------------------------------------------------- */

static uint32_t mix(uint32_t h, uint32_t v) {
    h ^= v + 0x9E3779B9u + (h << 6) + (h >> 2);
    return h;
}

static uint32_t node_hash(const CgBuilder *b, const CxNode *n) {
    uint32_t h = mix(n->kind * 0x85EBCA6Bu, (uint32_t)n->c);
    if (n->kind == CX_SEQ || n->kind == CX_ALT) {
        for (int32_t i = 0; i < n->b; i++) h = mix(h, (uint32_t)b->kids[n->a + i]);
        return mix(h, (uint32_t)n->b);
    }
    if (n->kind == CX_CLASS) {
        for (int32_t i = 0; i < n->b; i++) {
            h = mix(h, b->ranges[n->a + i].lo);
            h = mix(h, b->ranges[n->a + i].hi);
        }
        return mix(h, (uint32_t)n->b);
    }
    return mix(mix(h, (uint32_t)n->a), (uint32_t)n->b);
}

static int node_eq(const CgBuilder *b, const CxNode *x, const CxNode *y) {
    if (x->kind != y->kind || x->hash != y->hash || x->c != y->c) return 0;
    if (x->kind == CX_SEQ || x->kind == CX_ALT) {
        return x->b == y->b && memcmp(b->kids + x->a, b->kids + y->a, (size_t)x->b * sizeof(int32_t)) == 0;
    }
    if (x->kind == CX_CLASS) {
        return x->b == y->b && memcmp(b->ranges + x->a, b->ranges + y->a, (size_t)x->b * sizeof(CgRange)) == 0;
    }
    return x->a == y->a && x->b == y->b;
}

static int rehash(CgBuilder *b) {
    uint32_t cap = b->hcap ? b->hcap * 2 : 1024;
    int32_t *t = malloc(cap * sizeof *t);
    if (!t) return oom(b);
    memset(t, 0xFF, cap * sizeof *t);
    for (int32_t e = 0; e < b->nnodes; e++) {
        uint32_t i = b->nodes[e].hash & (cap - 1);
        while (t[i] >= 0) i = (i + 1) & (cap - 1);
        t[i] = e;
    }
    free(b->htab);
    b->htab = t;
    b->hcap = cap;
    return 0;
}

/* Interns n, whose kids or ranges (if any) sit at the end of their pool
 * (n->a == the pool's length before they were appended). On a hit, they
 * are taken back off the pool. */
static CgExpr intern(CgBuilder *b, CxNode n) {
    if (b->err) return -1;
    n.hash = node_hash(b, &n);
    if ((uint32_t)(b->nnodes + 1) * 2 > b->hcap && rehash(b)) return -1;
    uint32_t i = n.hash & (b->hcap - 1);
    for (; b->htab[i] >= 0; i = (i + 1) & (b->hcap - 1)) {
        CgExpr e = b->htab[i];
        if (node_eq(b, &b->nodes[e], &n)) {
            if (n.kind == CX_SEQ || n.kind == CX_ALT) b->nkids = (size_t)n.a;
            if (n.kind == CX_CLASS) b->nranges = (size_t)n.a;
            return e;
        }
    }
    int32_t maxdepth = b->lim.max_depth * CX_DEPTH_PER_LEVEL;
    if (n.depth > maxdepth) {
        return cx_fail(b, ERR_LIMIT, "expressions nested too deeply (the limit is %d levels)", maxdepth);
    }
    if (b->nnodes == b->capnodes) {
        int32_t cap = b->capnodes ? b->capnodes * 2 : 256;
        CxNode *p = realloc(b->nodes, (size_t)cap * sizeof *p);
        if (!p) return oom(b);
        b->nodes = p;
        b->capnodes = cap;
    }
    CgExpr e = b->nnodes++;
    b->nodes[e] = n;
    b->htab[i] = e;
    return e;
}

static int reserve_kids(CgBuilder *b, size_t extra) {
    if (b->nkids + extra <= b->capkids) return 0;
    size_t cap = b->capkids ? b->capkids : 1024;
    while (cap < b->nkids + extra) cap *= 2;
    int32_t *p = realloc(b->kids, cap * sizeof *p);
    if (!p) return oom(b);
    b->kids = p;
    b->capkids = cap;
    return 0;
}

static int reserve_ranges(CgBuilder *b, size_t extra) {
    if (b->nranges + extra <= b->capranges) return 0;
    size_t cap = b->capranges ? b->capranges : 256;
    while (cap < b->nranges + extra) cap *= 2;
    CgRange *p = realloc(b->ranges, cap * sizeof *p);
    if (!p) return oom(b);
    b->ranges = p;
    b->capranges = cap;
    return 0;
}

static int valid(const CgBuilder *b, CgExpr x) { return x >= 0 && x < b->nnodes; }

/* ---- the builder --------------------------------------------------------------- */

CgBuilder *cgb_new(const CgLimits *limits) {
    CgBuilder *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    cx_limits(&b->lim, limits);
    b->fail_rule = -1;
    if (intern(b, (CxNode){.kind = CX_EMPTY, .depth = 1}) != CX_ID_EMPTY ||
        intern(b, (CxNode){.kind = CX_NOTHING, .depth = 1}) != CX_ID_NOTHING) {
        cgb_free(b);
        return NULL;
    }
    return b;
}

void cgb_free(CgBuilder *b) {
    if (!b) return;
    for (int32_t i = 0; i < b->nrules; i++) free(b->rules[i].name);
    free(b->rules);
    free(b->nodes);
    free(b->kids);
    free(b->ranges);
    free(b->htab);
    free(b);
}

CgExpr cgb_empty(CgBuilder *b) { return b->err ? -1 : CX_ID_EMPTY; }
CgExpr cgb_nothing(CgBuilder *b) { return b->err ? -1 : CX_ID_NOTHING; }

CgExpr cgb_byte_range(CgBuilder *b, uint8_t lo, uint8_t hi) {
    if (lo > hi) return cx_fail(b, ERR_ARG, "byte range %u-%u is out of order", lo, hi);
    return intern(b, (CxNode){.kind = CX_BYTES, .a = lo, .b = hi, .depth = 1});
}

CgExpr cgb_lit(CgBuilder *b, const char *s, size_t n) {
    if (b->err) return -1;
    if (!s && n) return cx_fail(b, ERR_ARG, "literal is NULL");
    size_t bad = utf8_invalid_at(s, n);
    if (bad < n) return cx_fail(b, ERR_CONSTRAINT, "literal is not valid UTF-8 (at byte %zu)", bad);
    if (n == 1) return cgb_byte_range(b, (uint8_t)s[0], (uint8_t)s[0]);
    CgExpr small[64];
    CgExpr *xs = n <= 64 ? small : malloc(n * sizeof *xs);
    if (!xs) return oom(b);
    for (size_t i = 0; i < n; i++) xs[i] = cgb_byte_range(b, (uint8_t)s[i], (uint8_t)s[i]);
    CgExpr e = n > (size_t)INT32_MAX ? cx_fail(b, ERR_LIMIT, "literal too long") : cgb_seq(b, xs, (int)n);
    if (xs != small) free(xs);
    return e;
}

static int range_cmp(const void *x, const void *y) {
    const CgRange *p = x, *q = y;
    return p->lo < q->lo ? -1 : p->lo > q->lo;
}

CgExpr cgb_class(CgBuilder *b, const CgRange *r, int n, bool negate) {
    if (b->err) return -1;
    if (n < 0 || (n > 0 && !r)) return cx_fail(b, ERR_ARG, "bad class ranges");
    for (int i = 0; i < n; i++) {
        if (r[i].lo > r[i].hi) return cx_fail(b, ERR_ARG, "class range U+%04X-U+%04X is out of order", r[i].lo, r[i].hi);
    }
    /* sorted, merged, clipped to scalar values; room for the surrogate
     * split (+1) and the complement (+1) */
    CgRange *t = malloc((size_t)(n + 2) * sizeof *t);
    if (!t) return oom(b);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (r[i].lo > 0x10FFFF) continue;
        t[m] = r[i];
        if (t[m].hi > 0x10FFFF) t[m].hi = 0x10FFFF;
        m++;
    }
    qsort(t, (size_t)m, sizeof *t, range_cmp);
    int k = 0;
    for (int i = 0; i < m; i++) {
        if (k > 0 && t[i].lo <= t[k - 1].hi + 1) {
            if (t[i].hi > t[k - 1].hi) t[k - 1].hi = t[i].hi;
        } else {
            t[k++] = t[i];
        }
    }
    if (negate) {
        /* the complement in 0..10FFFF, in place from the back */
        CgRange *c = malloc((size_t)(k + 1) * sizeof *c);
        if (!c) {
            free(t);
            return oom(b);
        }
        int nc = 0;
        uint32_t from = 0;
        for (int i = 0; i < k; i++) {
            if (t[i].lo > from) c[nc++] = (CgRange){from, t[i].lo - 1};
            from = t[i].hi + 1;
        }
        if (from <= 0x10FFFF) c[nc++] = (CgRange){from, 0x10FFFF};
        memcpy(t, c, (size_t)nc * sizeof *c);
        free(c);
        k = nc;
    }
    /* cut out the surrogates */
    if (reserve_ranges(b, (size_t)k * 2 + 1)) {
        free(t);
        return -1;
    }
    size_t off = b->nranges;
    for (int i = 0; i < k; i++) {
        uint32_t lo = t[i].lo, hi = t[i].hi;
        if (lo < 0xD800 && hi >= 0xD800) {
            b->ranges[b->nranges++] = (CgRange){lo, 0xD7FF};
            lo = 0xE000;
        } else if (lo >= 0xD800 && lo <= 0xDFFF) {
            lo = 0xE000;
        }
        if (lo <= hi) b->ranges[b->nranges++] = (CgRange){lo, hi};
    }
    free(t);
    int32_t cnt = (int32_t)(b->nranges - off);
    if (cnt == 0) return CX_ID_NOTHING;
    if (cnt == 1 && b->ranges[off].hi < 0x80) {
        b->nranges = off;
        return cgb_byte_range(b, (uint8_t)b->ranges[off].lo, (uint8_t)b->ranges[off].hi);
    }
    return intern(b, (CxNode){.kind = CX_CLASS, .a = (int32_t)off, .b = cnt, .depth = 1});
}

/* Flattens xs into the kid pool (kids of nested nodes of `kind` inline). */
static int flatten(CgBuilder *b, int kind, const CgExpr *xs, int n, int32_t *depth, int *nothing, int *empty) {
    for (int i = 0; i < n; i++) {
        if (!valid(b, xs[i])) return cx_fail(b, ERR_ARG, "bad expression handle %d", (int)xs[i]);
        const CxNode *x = &b->nodes[xs[i]];
        if (x->kind == CX_NOTHING) {
            (*nothing)++;
            continue;
        }
        if (x->kind == CX_EMPTY) {
            (*empty)++;
            continue;
        }
        if (x->kind == kind) {
            if (reserve_kids(b, (size_t)x->b)) return -1;
            x = &b->nodes[xs[i]];
            memcpy(b->kids + b->nkids, b->kids + x->a, (size_t)x->b * sizeof(int32_t));
            b->nkids += (size_t)x->b;
            if (x->depth - 1 > *depth) *depth = x->depth - 1;
            continue;
        }
        if (reserve_kids(b, 1)) return -1;
        b->kids[b->nkids++] = xs[i];
        if (b->nodes[xs[i]].depth > *depth) *depth = b->nodes[xs[i]].depth;
    }
    return 0;
}

CgExpr cgb_seq(CgBuilder *b, const CgExpr *xs, int n) {
    if (b->err) return -1;
    if (n < 0 || (n > 0 && !xs)) return cx_fail(b, ERR_ARG, "bad sequence");
    size_t off = b->nkids;
    int32_t depth = 0;
    int nothing = 0, empty = 0;
    if (flatten(b, CX_SEQ, xs, n, &depth, &nothing, &empty)) return -1;
    int32_t cnt = (int32_t)(b->nkids - off);
    if (nothing) {
        b->nkids = off;
        return CX_ID_NOTHING;
    }
    if (cnt <= 1) {
        b->nkids = off;
        return cnt == 0 ? CX_ID_EMPTY : b->kids[off];
    }
    return intern(b, (CxNode){.kind = CX_SEQ, .a = (int32_t)off, .b = cnt, .depth = depth + 1});
}

static int id_cmp(const void *x, const void *y) {
    int32_t p = *(const int32_t *)x, q = *(const int32_t *)y;
    return p < q ? -1 : p > q;
}

CgExpr cgb_alt(CgBuilder *b, const CgExpr *xs, int n) {
    if (b->err) return -1;
    if (n < 0 || (n > 0 && !xs)) return cx_fail(b, ERR_ARG, "bad alternation");
    size_t off = b->nkids;
    int32_t depth = 0;
    int nothing = 0, empty = 0;
    if (flatten(b, CX_ALT, xs, n, &depth, &nothing, &empty)) return -1;
    if (empty) {
        /* ε | x... : keep ε as a kid (it is a language, not a unit here) */
        if (reserve_kids(b, 1)) return -1;
        b->kids[b->nkids++] = CX_ID_EMPTY;
    }
    int32_t *k = b->kids + off;
    int32_t cnt = (int32_t)(b->nkids - off);
    qsort(k, (size_t)cnt, sizeof *k, id_cmp);
    int32_t m = 0;
    for (int32_t i = 0; i < cnt; i++) {
        if (m == 0 || k[m - 1] != k[i]) k[m++] = k[i];
    }
    b->nkids = off + (size_t)m;
    if (m <= 1) {
        b->nkids = off;
        return m == 0 ? CX_ID_NOTHING : k[0];
    }
    return intern(b, (CxNode){.kind = CX_ALT, .a = (int32_t)off, .b = m, .depth = depth + 1});
}

CgExpr cgb_seq2(CgBuilder *b, CgExpr x, CgExpr y) {
    CgExpr xs[2] = {x, y};
    return cgb_seq(b, xs, 2);
}

CgExpr cgb_alt2(CgBuilder *b, CgExpr x, CgExpr y) {
    CgExpr xs[2] = {x, y};
    return cgb_alt(b, xs, 2);
}

CgExpr cgb_repeat(CgBuilder *b, CgExpr x, int min, int max) {
    if (b->err) return -1;
    if (!valid(b, x)) return cx_fail(b, ERR_ARG, "bad expression handle %d", (int)x);
    if (min < 0 || (max != CG_INF && (max < 0 || max < min))) {
        return cx_fail(b, ERR_ARG, "repetition {%d,%d} is out of order", min, max);
    }
    if (min > b->lim.max_repeat || max > b->lim.max_repeat) {
        return cx_fail(b, ERR_LIMIT, "repetition count %d is above the limit (%d)", max > min ? max : min,
                       b->lim.max_repeat);
    }
    const CxNode *n = &b->nodes[x];
    if (max == 0 || n->kind == CX_EMPTY) return CX_ID_EMPTY;
    if (n->kind == CX_NOTHING) return min == 0 ? CX_ID_EMPTY : CX_ID_NOTHING;
    if (min == 1 && max == 1) return x;
    /* (x*)* = (x+)* = (x*)+ = x*, (x+)+ = x+ */
    if (n->kind == CX_REPEAT && n->c == CG_INF && max == CG_INF && n->b <= 1 && min <= 1) {
        return intern(b, (CxNode){.kind = CX_REPEAT, .a = n->a, .b = n->b & min, .c = CG_INF, .depth = n->depth});
    }
    return intern(b, (CxNode){.kind = CX_REPEAT, .a = x, .b = min, .c = max, .depth = n->depth + 1});
}

/* ---- rules --------------------------------------------------------------------- */

int cx_rule_named(CgBuilder *b, const char *name, const char *suffix) {
    if (b->err) return -1;
    if (b->nrules == b->caprules) {
        int32_t cap = b->caprules ? b->caprules * 2 : 16;
        CxRule *p = realloc(b->rules, (size_t)cap * sizeof *p);
        if (!p) return oom(b);
        b->rules = p;
        b->caprules = cap;
    }
    size_t ln = name ? strlen(name) : 0, ls = suffix ? strlen(suffix) : 0;
    char *copy = malloc(ln + ls + 1);
    if (!copy) return oom(b);
    if (ln) memcpy(copy, name, ln);
    if (ls) memcpy(copy + ln, suffix, ls);
    copy[ln + ls] = '\0';
    b->rules[b->nrules] = (CxRule){copy, -1};
    return b->nrules++;
}

int cgb_rule(CgBuilder *b, const char *name) {
    if (b->err) return -1;
    if (b->nrules >= b->lim.max_rules) {
        return cx_fail(b, ERR_LIMIT, "too many rules (the limit is %d)", b->lim.max_rules);
    }
    return cx_rule_named(b, name, NULL);
}

CgExpr cgb_ref(CgBuilder *b, int rule) {
    if (b->err) return -1;
    if (rule < 0 || rule >= b->nrules) return cx_fail(b, ERR_ARG, "reference to rule %d, which was not declared", rule);
    return intern(b, (CxNode){.kind = CX_REF, .a = rule, .depth = 1});
}

int cgb_define(CgBuilder *b, int rule, CgExpr body) {
    if (b->err) return -1;
    if (rule < 0 || rule >= b->nrules) return cx_fail(b, ERR_ARG, "definition of rule %d, which was not declared", rule);
    if (!valid(b, body)) return cx_fail(b, ERR_ARG, "bad expression handle %d", (int)body);
    if (b->rules[rule].body >= 0) return cx_fail(b, ERR_CONSTRAINT, "rule '%s' is defined twice", b->rules[rule].name);
    b->rules[rule].body = body;
    return 0;
}

/* ---- regex front end ----------------------------------------------------------- */

static CgExpr lower_rx1(CgBuilder *b, const RxNode *n, int *fail_pos);

/* Lowers n; the first node that fails (the deepest) leaves its offset. */
static CgExpr lower_rx(CgBuilder *b, const RxNode *n, int *fail_pos) {
    CgExpr e = lower_rx1(b, n, fail_pos);
    if (e < 0 && *fail_pos < 0) *fail_pos = n->pos;
    return e;
}

static CgExpr lower_rx1(CgBuilder *b, const RxNode *n, int *fail_pos) {
    switch (n->kind) {
    case RX_EMPTY: return cgb_empty(b);
    case RX_CHAR: {
        char u[UTF8_MAX];
        int len = utf8_encode(n->cp, u);
        return cgb_lit(b, u, (size_t)len);
    }
    case RX_CLASS:
        /* RxRange and CgRange are both {lo, hi} inclusive code points */
        return cgb_class(b, (const CgRange *)n->ranges, n->nranges, false);
    case RX_CONCAT:
    case RX_ALT: {
        CgExpr *xs = malloc((size_t)n->nkids * sizeof *xs);
        if (!xs) return oom(b);
        for (int i = 0; i < n->nkids; i++) xs[i] = lower_rx(b, n->kids[i], fail_pos);
        CgExpr e = n->kind == RX_CONCAT ? cgb_seq(b, xs, n->nkids) : cgb_alt(b, xs, n->nkids);
        free(xs);
        return e;
    }
    case RX_REPEAT: return cgb_repeat(b, lower_rx(b, n->sub, fail_pos), n->min, n->max == RX_INF ? CG_INF : n->max);
    case RX_GROUP: return lower_rx(b, n->sub, fail_pos);
    }
    return cx_fail(b, ERR_ARG, "bad regex node");
}

_Static_assert(sizeof(RxRange) == sizeof(CgRange), "RxRange and CgRange have one layout");

CgExpr cgb_regex(CgBuilder *b, const char *re, size_t n, int *err_pos, char *err, size_t errcap) {
    if (err && errcap) err[0] = '\0';
    if (err_pos) *err_pos = 0;
    if (b->err) return err_fmt(err, errcap, "%s", b->msg);
    RxRegex rx;
    int col = 1;
    char msg[200];
    if (rx_parse(re, n, &rx, &col, msg, sizeof msg)) {
        if (err_pos) *err_pos = col - 1;
        /* the parser's own caps (counts, nesting) say "(the limit is N)" */
        int code = strstr(msg, "(the limit is") ? ERR_LIMIT : strcmp(msg, "out of memory") ? ERR_CONSTRAINT : ERR_NOMEM;
        cx_fail(b, code, "%s", msg);
        return err_fmt(err, errcap, "%s", msg);
    }
    int fail_pos = -1;
    CgExpr e = lower_rx(b, rx.root, &fail_pos);
    rx_free(&rx);
    if (e < 0) {
        if (err_pos) *err_pos = fail_pos < 0 ? 0 : fail_pos;
        return err_fmt(err, errcap, "%s", b->msg);
    }
    return e;
}

int cg_compile_regex(const char *re, size_t n, const CgLimits *lim, CGrammar **out, int *err_pos, char *err,
                     size_t errcap) {
    *out = NULL;
    if (err_pos) *err_pos = 0;
    if (!re && n) return err_fmt(err, errcap, "regex is NULL"), ERR_ARG;
    CgBuilder *b = cgb_new(lim);
    if (!b) return err_fmt(err, errcap, "out of memory"), ERR_NOMEM;
    CgExpr e = cgb_regex(b, re, n, err_pos, err, errcap);
    if (e < 0) {
        int code = b->err;
        cgb_free(b);
        return code;
    }
    int root = cgb_rule(b, "regex");
    cgb_define(b, root, e);
    int rc = cgb_build(b, root, out, err, errcap);
    cgb_free(b);
    return rc;
}
