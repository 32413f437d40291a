/*
 * constrain/front.c — the grammar front ends: GBNF (llama.cpp) and EBNF
 * (XGrammar's dialect, SGLang's `ebnf` field) trees from grammar_syntax.c
 * lowered to the builder; gen(type:) and gen(choices:). The regex front end
 * is in builder.c (cgb_regex), JSON Schema in schema.c.
 *
 * Rule i of the parsed grammar is rule i of the builder, so a build error
 * that names a rule (CgBuilder.fail_rule) is reported at that rule's
 * definition; a builder error while lowering is reported at the node that
 * caused it.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/utf8.h"
#include "constrain/builder_internal.h"
#include "constrain/constrain.h"
#include "constrain/grammar_syntax.h"

static CgExpr lower_gb(CgBuilder *b, const GbNode *n, const GbNode **failed);

static CgExpr lower_gb1(CgBuilder *b, const GbNode *n, const GbNode **failed) {
    switch (n->kind) {
    case GB_STR: return cgb_lit(b, n->str, n->len);
    case GB_CLASS: return cgb_class(b, (const CgRange *)n->ranges, n->nranges, false);
    case GB_REF: return cgb_ref(b, n->rule);
    case GB_REPEAT: return cgb_repeat(b, lower_gb(b, n->sub, failed), n->min, n->max == RX_INF ? CG_INF : n->max);
    case GB_SEQ:
    case GB_ALT: {
        CgExpr *xs = malloc(((size_t)n->nkids + 1) * sizeof *xs);
        if (!xs) return cx_fail(b, ERR_NOMEM, "out of memory");
        for (int i = 0; i < n->nkids; i++) xs[i] = lower_gb(b, n->kids[i], failed);
        CgExpr e = n->kind == GB_SEQ ? cgb_seq(b, xs, n->nkids) : cgb_alt(b, xs, n->nkids);
        free(xs);
        return e;
    }
    }
    return cx_fail(b, ERR_ARG, "bad grammar node");
}

static CgExpr lower_gb(CgBuilder *b, const GbNode *n, const GbNode **failed) {
    CgExpr e = lower_gb1(b, n, failed);
    if (e < 0 && !*failed) *failed = n;
    return e;
}

static int compile_grammar(const char *src, size_t n, GbDialect dialect, const CgLimits *lim, CGrammar **out,
                           int *line, int *col, char *err, size_t errcap) {
    *out = NULL;
    if (line) *line = 1;
    if (col) *col = 1;
    if (err && errcap) err[0] = '\0';
    if (!src && n) return err_fmt(err, errcap, "grammar text is NULL"), ERR_ARG;
    GbnfGrammar g;
    int code = ERR_CONSTRAINT;
    if (gbnf_parse_dialect(src ? src : "", n, dialect, &g, line, col, &code, err, errcap)) return code;
    CgBuilder *b = cgb_new(lim);
    if (!b) {
        gbnf_free(&g);
        return err_fmt(err, errcap, "out of memory"), ERR_NOMEM;
    }
    for (int i = 0; i < g.nrules; i++) cgb_rule(b, g.rules[i].name);
    const GbNode *failed = NULL;
    int failed_rule = -1;
    for (int i = 0; i < g.nrules && !b->err; i++) {
        CgExpr body = lower_gb(b, g.rules[i].body, &failed);
        if (body < 0 || cgb_define(b, i, body)) failed_rule = i;
    }
    int rc;
    if (b->err) {
        rc = b->err;
        err_fmt(err, errcap, "%s", b->msg);
        if (failed) {
            if (line) *line = failed->line;
            if (col) *col = failed->col;
        } else if (failed_rule >= 0) {
            if (line) *line = g.rules[failed_rule].line;
            if (col) *col = g.rules[failed_rule].col;
        }
    } else {
        rc = cgb_build(b, g.root, out, err, errcap);
        if (rc && b->fail_rule >= 0 && b->fail_rule < g.nrules) {
            if (line) *line = g.rules[b->fail_rule].line;
            if (col) *col = g.rules[b->fail_rule].col;
        }
    }
    cgb_free(b);
    gbnf_free(&g);
    return rc;
}

int cg_compile_gbnf(const char *src, size_t n, const CgLimits *lim, CGrammar **out, int *line, int *col, char *err,
                    size_t errcap) {
    return compile_grammar(src, n, GB_GBNF, lim, out, line, col, err, errcap);
}

int cg_compile_ebnf(const char *src, size_t n, const CgLimits *lim, CGrammar **out, int *line, int *col, char *err,
                    size_t errcap) {
    return compile_grammar(src, n, GB_EBNF, lim, out, line, col, err, errcap);
}

/* SGLang's regexes for gen(dtype=...) (python/sglang/lang/ir.py: REGEX_INT,
 * REGEX_FLOAT, REGEX_BOOL). */
static const struct {
    const char *type, *regex;
} type_regex[] = {
    {"int", "[-+]?[0-9]+[ \\n]*"},
    {"float", "[-+]?[0-9]*\\.?[0-9]+[ \\n]*"},
    {"bool", "(True|False)"},
};

int cg_compile_type(const char *type, CGrammar **out, char *err, size_t errcap) {
    *out = NULL;
    if (err && errcap) err[0] = '\0';
    for (size_t i = 0; type && i < sizeof type_regex / sizeof *type_regex; i++) {
        if (strcmp(type, type_regex[i].type) == 0) {
            int pos;
            return cg_compile_regex(type_regex[i].regex, strlen(type_regex[i].regex), NULL, out, &pos, err, errcap);
        }
    }
    err_fmt(err, errcap, "unknown type '%s' (expected \"int\", \"float\" or \"bool\")", type ? type : "(null)");
    return ERR_CONSTRAINT;
}

int cg_compile_choices(const char *const *choices, const size_t *lens, int n, CGrammar **out, char *err,
                       size_t errcap) {
    *out = NULL;
    if (err && errcap) err[0] = '\0';
    if (n <= 0) return err_fmt(err, errcap, "choices is empty: no string can be generated"), ERR_CONSTRAINT;
    if (!choices || !lens) return err_fmt(err, errcap, "choices is NULL"), ERR_ARG;
    for (int i = 0; i < n; i++) {
        if (!choices[i] && lens[i]) return err_fmt(err, errcap, "choice %d is NULL", i), ERR_ARG;
        size_t bad = utf8_invalid_at(choices[i], lens[i]);
        if (bad < lens[i]) {
            err_fmt(err, errcap, "choice %d is not valid UTF-8 (at byte %zu)", i, bad);
            return ERR_CONSTRAINT;
        }
    }
    CgBuilder *b = cgb_new(NULL);
    CgExpr *xs = malloc((size_t)n * sizeof *xs);
    if (!b || !xs) {
        cgb_free(b);
        free(xs);
        return err_fmt(err, errcap, "out of memory"), ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) xs[i] = cgb_lit(b, choices[i] ? choices[i] : "", lens[i]);
    int root = cgb_rule(b, "choices");
    cgb_define(b, root, cgb_alt(b, xs, n));
    free(xs);
    int rc = cgb_build(b, root, out, err, errcap);
    cgb_free(b);
    return rc;
}
