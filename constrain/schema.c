/*
 * constrain/schema.c — JSON Schema (draft 2020-12, 2019-09, 07, 06, 04)
 * lowered to builder expressions: cg_compile_json and cg_compile_json_any.
 *
 *   schema text ─jd_parse─► JdValue ─lower─► CgExpr (rules for $ref targets,
 *                                             property values and items)
 *                                   ─cgb_build─► CGrammar
 *
 * Combinators are rewritten on the JSON level before lowering: allOf (and,
 * from 2019-09 on, $ref beside other keywords) merges its members into one
 * schema (merge()); anyOf distributes the rest of its schema over the
 * alternatives (base ∧ (a ∨ b) = (base ∧ a) ∨ (base ∧ b)); oneOf is anyOf
 * where the alternatives are proven disjoint. enum and const are filtered
 * by their sibling keywords through a grammar of those siblings.
 *
 * What the text looks like (a subset of JSON's spellings, so every
 * accepted text is valid and every value has a text):
 *   - members in the order of `properties`, then other members;
 *   - strings as json.dumps(ensure_ascii=False) writes them;
 *   - whitespace: none or one space after ':' and ',' (CgJsonOptions:
 *     any JSON whitespace between tokens);
 *   - integers without fraction or exponent and without "-0"; bounded
 *     numbers without exponent.
 *
 * Keywords: assertions not enforced exactly are refused (ERR_UNSUPPORTED
 * naming them); annotations and unknown keywords are ignored, as
 * validators ignore them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "constrain/grammar.h"
#include "constrain/jdoc.h"
#include "constrain/schema_int.h"

enum { T_NULL = 1, T_BOOL = 2, T_OBJ = 4, T_ARR = 8, T_STR = 16, T_INT = 32, T_NUM = 64, T_ALL = 127 };

typedef struct {
    const JdValue *node;
    int rule;
} Memo;

typedef struct {
    CgBuilder *b;
    const JdValue *root;
    CgJsonOptions opt;
    CgLimits lim;
    int draft;              /* 4, 6, 7, 2019, 2020 */
    char *err;
    size_t errcap;
    int rc;
    Memo *memo;
    int nmemo, capmemo;
    JdValue **made;         /* synthetic nodes (children borrowed) */
    int nmade, capmade;
    int depth;
    long work;
} Sc;

static CgExpr lower(Sc *s, const JdValue *sch);

static CgExpr fail(Sc *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static CgExpr fail(Sc *s, int code, const char *fmt, ...) {
    if (!s->rc) {
        va_list ap;
        va_start(ap, fmt);
        err_vfmt(s->err, s->errcap, fmt, ap);
        va_end(ap);
        s->rc = code;
    }
    return -1;
}

/* ---- synthetic nodes ---------------------------------------------------- */

static JdValue *made(Sc *s, JdKind k) {
    JdValue *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = k;
    if (s->nmade == s->capmade) {
        int nc = s->capmade ? s->capmade * 2 : 16;
        JdValue **nm = realloc(s->made, (size_t)nc * sizeof *nm);
        if (!nm) {
            free(v);
            return NULL;
        }
        s->made = nm;
        s->capmade = nc;
    }
    s->made[s->nmade++] = v;
    return v;
}

static void made_free(Sc *s) {
    for (int i = 0; i < s->nmade; i++) {
        JdValue *v = s->made[i];
        free(v->items);
        free(v->keys);
        free(v->key_lens);
        free(v->str);
        free(v);
    }
    free(s->made);
}

static int add_item(JdValue *v, const char *key, size_t klen, const JdValue *item) {
    JdValue **ni = realloc(v->items, (size_t)(v->n + 1) * sizeof *ni);
    if (!ni) return -1;
    v->items = ni;
    if (v->kind == JD_OBJECT) {
        char **nk = realloc(v->keys, (size_t)(v->n + 1) * sizeof *nk);
        if (!nk) return -1;
        v->keys = nk;
        size_t *nl = realloc(v->key_lens, (size_t)(v->n + 1) * sizeof *nl);
        if (!nl) return -1;
        v->key_lens = nl;
        v->keys[v->n] = (char *)key;
        v->key_lens[v->n] = klen;
    }
    v->items[v->n++] = (JdValue *)item;
    return 0;
}

static void set_item(JdValue *v, const char *key, const JdValue *item) {
    size_t kl = strlen(key);
    for (int i = v->n - 1; i >= 0; i--)
        if (v->key_lens[i] == kl && memcmp(v->keys[i], key, kl) == 0) {
            v->items[i] = (JdValue *)item;
            return;
        }
    add_item(v, key, kl, item);
}

static JdValue *allof2(Sc *s, const JdValue *a, const JdValue *b) {
    JdValue *arr = made(s, JD_ARRAY), *o = made(s, JD_OBJECT);
    if (!arr || !o) return NULL;
    add_item(arr, NULL, 0, a);
    add_item(arr, NULL, 0, b);
    add_item(o, "allOf", 5, arr);
    return o;
}

/* ---- keywords ----------------------------------------------------------- */

static const char *const annotations[] = {
    "title", "description", "default", "examples", "example", "$comment", "$schema", "$id", "id",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "$anchor", "$vocabulary",
    "contentMediaType", "contentEncoding", "contentSchema", "discriminator", "nullable_annotation",
    NULL};

static const char *const refused[] = {
    "not", "if", "then", "else", "propertyNames", "contains", "minContains", "maxContains", "unevaluatedProperties",
    "unevaluatedItems", "$dynamicRef", "$recursiveRef", "$dynamicAnchor", "$recursiveAnchor",
    NULL};

static bool in_list(const char *const *l, const char *k) {
    for (; *l; l++)
        if (strcmp(*l, k) == 0) return true;
    return false;
}

/* The keywords this front end enforces. */
static const char *const handled[] = {
    "type", "enum", "const", "properties", "required", "additionalProperties",
    "patternProperties", "minProperties", "maxProperties", "items", "prefixItems",
    "additionalItems", "minItems", "maxItems", "uniqueItems", "minLength", "maxLength",
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "anyOf", "oneOf", "allOf", "$ref", "dependencies", "dependentRequired",
    "dependentSchemas", NULL};

static bool is_true_schema(const JdValue *v) {
    if (v->kind == JD_TRUE) return true;
    if (v->kind != JD_OBJECT) return false;
    for (int i = 0; i < v->n; i++)
        if (in_list(handled, v->keys[i]) || in_list(refused, v->keys[i])) return false;
    return true;
}

/* ---- $ref --------------------------------------------------------------- */

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static const JdValue *resolve(Sc *s, const char *ref) {
    const char *p = ref;
    if (*p != '#') {
        /* a reference to this document by its own $id */
        const JdValue *id = jd_get(s->root, "$id");
        if (!id) id = jd_get(s->root, "id");
        const char *h = strchr(ref, '#');
        size_t base = h ? (size_t)(h - ref) : strlen(ref);
        if (id && id->kind == JD_STRING) {
            size_t il = id->len;
            if (il && id->str[il - 1] == '#') il--;
            if (il == base && memcmp(id->str, ref, base) == 0) p = h ? h : "#";
        }
        if (*p != '#') {
            fail(s, ERR_UNSUPPORTED, "$ref \"%s\": only references within the schema (\"#...\") are supported", ref);
            return NULL;
        }
    }
    p++;
    const JdValue *cur = s->root;
    if (*p && *p != '/') {
        fail(s, ERR_UNSUPPORTED, "$ref \"%s\": anchors are not supported", ref);
        return NULL;
    }
    while (*p == '/') {
        p++;
        char tok[512];
        size_t n = 0;
        while (*p && *p != '/' && n + 1 < sizeof tok) {
            char c = *p++;
            if (c == '~' && (*p == '0' || *p == '1')) c = *p++ == '0' ? '~' : '/';
            else if (c == '%' && hexv(p[0]) >= 0 && hexv(p[1]) >= 0) {
                c = (char)(hexv(p[0]) * 16 + hexv(p[1]));
                p += 2;
            }
            tok[n++] = c;
        }
        tok[n] = 0;
        if (cur->kind == JD_OBJECT) {
            cur = jd_get(cur, tok);
        } else if (cur->kind == JD_ARRAY) {
            char *end;
            long i = strtol(tok, &end, 10);
            cur = (*end || i < 0 || i >= cur->n) ? NULL : cur->items[i];
        } else {
            cur = NULL;
        }
        if (!cur) {
            fail(s, ERR_CONSTRAINT, "$ref \"%s\": no such location in the schema", ref);
            return NULL;
        }
    }
    return cur;
}

static CgExpr ref_expr(Sc *s, const JdValue *target, const char *name) {
    for (int i = 0; i < s->nmemo; i++)
        if (s->memo[i].node == target) return cgb_ref(s->b, s->memo[i].rule);
    int r = cgb_rule(s->b, name);
    if (r < 0) return fail(s, ERR_NOMEM, "out of memory");
    if (s->nmemo == s->capmemo) {
        int nc = s->capmemo ? s->capmemo * 2 : 16;
        Memo *nm = realloc(s->memo, (size_t)nc * sizeof *nm);
        if (!nm) return fail(s, ERR_NOMEM, "out of memory");
        s->memo = nm;
        s->capmemo = nc;
    }
    s->memo[s->nmemo++] = (Memo){target, r};
    CgExpr body = lower(s, target);
    if (body < 0) return -1;
    cgb_define(s->b, r, body);
    return cgb_ref(s->b, r);
}

/* An expression as its own rule (keeps shared sub-languages from being
 * copied into every use). */
static CgExpr as_rule(Sc *s, CgExpr e, const char *name) {
    if (e < 0) return -1;
    int r = cgb_rule(s->b, name);
    if (r < 0 || cgb_define(s->b, r, e) < 0) return fail(s, ERR_NOMEM, "out of memory");
    return cgb_ref(s->b, r);
}

/* ---- whitespace and literals -------------------------------------------- */

static CgExpr ws_tight(Sc *s) {   /* after '[' '{', before ']' '}' ',' ':' */
    if (s->opt.any_whitespace) {
        CgRange w[3] = {{' ', ' '}, {'\t', '\n'}, {'\r', '\r'}};
        return cgb_repeat(s->b, cgb_class(s->b, w, 3, false), 0, CG_INF);
    }
    return cgb_empty(s->b);
}

static CgExpr ws_sep(Sc *s) {     /* after ':' and ',' */
    if (s->opt.any_whitespace) return ws_tight(s);
    return cgb_repeat(s->b, cgb_lit(s->b, " ", 1), 0, 1);
}

static CgExpr punct(Sc *s, const char *p) {   /* ws p ws' */
    CgExpr after = (*p == ':' || *p == ',') ? ws_sep(s) : ws_tight(s);
    return cgb_seq(s->b, (CgExpr[]){ws_tight(s), cgb_lit(s->b, p, 1), after}, 3);
}

static CgExpr open_tok(Sc *s, const char *p) {
    return cgb_seq2(s->b, cgb_lit(s->b, p, 1), ws_tight(s));
}

static CgExpr close_tok(Sc *s, const char *p) {
    return cgb_seq2(s->b, ws_tight(s), cgb_lit(s->b, p, 1));
}

/* A JSON value as text (enum and const members). */
static CgExpr value_lit(Sc *s, const JdValue *v) {
    CgBuilder *b = s->b;
    switch (v->kind) {
    case JD_NULL: return cgb_lit(b, "null", 4);
    case JD_TRUE: return cgb_lit(b, "true", 4);
    case JD_FALSE: return cgb_lit(b, "false", 5);
    case JD_NUMBER: return cgb_lit(b, v->str, v->len);
    case JD_STRING: return ss_literal(b, v->str, v->len);
    case JD_ARRAY: {
        if (v->n == 0) return cgb_seq2(b, open_tok(s, "["), cgb_lit(b, "]", 1));
        CgExpr e = open_tok(s, "[");
        for (int i = 0; i < v->n; i++) {
            if (i) e = cgb_seq2(b, e, punct(s, ","));
            e = cgb_seq2(b, e, value_lit(s, v->items[i]));
        }
        return cgb_seq2(b, e, close_tok(s, "]"));
    }
    case JD_OBJECT: {
        if (v->n == 0) return cgb_seq2(b, open_tok(s, "{"), cgb_lit(b, "}", 1));
        CgExpr e = open_tok(s, "{");
        for (int i = 0; i < v->n; i++) {
            if (i) e = cgb_seq2(b, e, punct(s, ","));
            e = cgb_seq(b, (CgExpr[]){e, ss_literal(b, v->keys[i], v->key_lens[i]), punct(s, ":"),
                                      value_lit(s, v->items[i])}, 4);
        }
        return cgb_seq2(b, e, close_tok(s, "}"));
    }
    }
    return -1;
}

/* ---- merging (allOf) ---------------------------------------------------- */

static int type_mask(Sc *s, const JdValue *t) {
    if (!t) return T_ALL;
    const JdValue *one[1] = {t};
    const JdValue *const *list = one;
    int n = 1;
    if (t->kind == JD_ARRAY) {
        list = (const JdValue *const *)t->items;
        n = t->n;
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        const JdValue *x = list[i];
        if (x->kind != JD_STRING) {
            fail(s, ERR_CONSTRAINT, "type: expected a string or a list of strings");
            return 0;
        }
        const char *k = x->str;
        if (!strcmp(k, "null")) m |= T_NULL;
        else if (!strcmp(k, "boolean")) m |= T_BOOL;
        else if (!strcmp(k, "object")) m |= T_OBJ;
        else if (!strcmp(k, "array")) m |= T_ARR;
        else if (!strcmp(k, "string")) m |= T_STR;
        else if (!strcmp(k, "integer")) m |= T_INT;
        else if (!strcmp(k, "number")) m |= T_NUM | T_INT;
        else if (!strcmp(k, "any")) m |= T_ALL;
        else {
            fail(s, ERR_CONSTRAINT, "type: unknown type \"%s\"", k);
            return 0;
        }
    }
    return m;
}

static JdValue *type_node(Sc *s, int m) {
    JdValue *arr = made(s, JD_ARRAY);
    static const char *const names[] = {"null", "boolean", "object", "array", "string", "integer", "number"};
    if (!arr) return NULL;
    if (m & T_NUM) m &= ~T_INT;
    for (int i = 0; i < 7; i++) {
        if (!(m & (1 << i))) continue;
        JdValue *str = made(s, JD_STRING);
        if (!str) return NULL;
        str->str = strdup(names[i]);
        str->len = strlen(names[i]);
        add_item(arr, NULL, 0, str);
    }
    return arr;
}

static const JdValue *deref(Sc *s, const JdValue *v, int depth);

/* One schema with the members of allOf (and $ref siblings) folded in;
 * returns v itself when there is nothing to fold. */
static const JdValue *flatten(Sc *s, const JdValue *v, int depth);

static bool num_kw(const char *k) {
    return !strcmp(k, "minimum") || !strcmp(k, "maximum") || !strcmp(k, "exclusiveMinimum") ||
           !strcmp(k, "exclusiveMaximum");
}

/* Folds schema b into the object o (a synthetic copy being built). */
static int merge_into(Sc *s, JdValue *o, const JdValue *b, int depth) {
    if (b->kind == JD_TRUE) return 0;
    if (b->kind == JD_FALSE) {
        set_item(o, "type", type_node(s, 0));   /* a false member: nothing matches */
        return 0;
    }
    if (b->kind != JD_OBJECT) return fail(s, ERR_CONSTRAINT, "allOf: a member is not a schema"), -1;
    const JdValue *bref = jd_get(b, "$ref");
    if (bref) {
        /* the target is merged in; its siblings too from 2019-09 on */
        const JdValue *t = deref(s, b, depth + 1);
        if (!t || merge_into(s, o, t, depth + 1) < 0) return -1;
        if (s->draft < 2019) return 0;
        JdValue *rest = made(s, JD_OBJECT);
        if (!rest) return -1;
        for (int i = 0; i < b->n; i++)
            if (strcmp(b->keys[i], "$ref")) add_item(rest, b->keys[i], b->key_lens[i], b->items[i]);
        return merge_into(s, o, rest, depth + 1);
    }
    b = flatten(s, b, depth + 1);
    if (!b) return -1;
    for (int i = 0; i < b->n; i++) {
        const char *k = b->keys[i];
        const JdValue *bv = b->items[i];
        if (in_list(annotations, k) || !strcmp(k, "allOf")) continue;
        const JdValue *av = jd_get(o, k);
        if (!av) {
            if (!strcmp(k, "exclusiveMinimum") || !strcmp(k, "exclusiveMaximum")) {
                if (bv->kind == JD_TRUE || bv->kind == JD_FALSE) {
                    /* draft-04 form: goes with its minimum/maximum */
                    const char *base = k[9] == 'M' && k[10] == 'i' ? "minimum" : "maximum";
                    if (jd_get(o, base)) return fail(s, ERR_UNSUPPORTED, "allOf: %s (draft-04) with another %s", k, base), -1;
                }
            }
            add_item(o, k, strlen(k), bv);
            continue;
        }
        if (jd_equal(av, bv)) continue;
        if (!strcmp(k, "type")) {
            int m = type_mask(s, av) & type_mask(s, bv);
            if ((type_mask(s, av) & T_NUM) && (type_mask(s, bv) & T_INT)) m |= T_INT;
            if ((type_mask(s, bv) & T_NUM) && (type_mask(s, av) & T_INT)) m |= T_INT;
            if (!(type_mask(s, av) & T_NUM) || !(type_mask(s, bv) & T_NUM)) m &= ~T_NUM;
            set_item(o, "type", type_node(s, m));
        } else if (!strcmp(k, "required")) {
            JdValue *arr = made(s, JD_ARRAY);
            if (!arr) return -1;
            for (int j = 0; j < av->n; j++) add_item(arr, NULL, 0, av->items[j]);
            for (int j = 0; j < bv->n; j++) {
                bool dup = false;
                for (int q = 0; q < av->n; q++) dup |= jd_equal(av->items[q], bv->items[j]);
                if (!dup) add_item(arr, NULL, 0, bv->items[j]);
            }
            set_item(o, "required", arr);
        } else if (!strcmp(k, "properties") || !strcmp(k, "patternProperties")) {
            if (av->kind != JD_OBJECT || bv->kind != JD_OBJECT) return fail(s, ERR_CONSTRAINT, "%s: expected an object", k), -1;
            JdValue *props = made(s, JD_OBJECT);
            if (!props) return -1;
            for (int j = 0; j < av->n; j++) add_item(props, av->keys[j], av->key_lens[j], av->items[j]);
            for (int j = 0; j < bv->n; j++) {
                const JdValue *x = jd_get(props, bv->keys[j]);
                if (x) set_item(props, bv->keys[j], allof2(s, x, bv->items[j]));
                else add_item(props, bv->keys[j], bv->key_lens[j], bv->items[j]);
            }
            set_item(o, k, props);
        } else if (!strcmp(k, "additionalProperties") ||
                   (!strcmp(k, "items") && av->kind != JD_ARRAY && bv->kind != JD_ARRAY)) {
            set_item(o, k, allof2(s, av, bv));
        } else if (!strcmp(k, "minLength") || !strcmp(k, "minItems") || !strcmp(k, "minProperties")) {
            if (jd_num_cmp(bv->str, av->str) > 0) set_item(o, k, bv);
        } else if (!strcmp(k, "maxLength") || !strcmp(k, "maxItems") || !strcmp(k, "maxProperties")) {
            if (jd_num_cmp(bv->str, av->str) < 0) set_item(o, k, bv);
        } else if (num_kw(k) && av->kind == JD_NUMBER && bv->kind == JD_NUMBER) {
            bool lower_kw = !strcmp(k, "minimum") || !strcmp(k, "exclusiveMinimum");
            int c = jd_num_cmp(bv->str, av->str);
            if (lower_kw ? c > 0 : c < 0) set_item(o, k, bv);
        } else if (!strcmp(k, "enum") || !strcmp(k, "const")) {
            JdValue *arr = made(s, JD_ARRAY);
            if (!arr) return -1;
            const JdValue *ae = !strcmp(k, "const") ? NULL : av, *be = !strcmp(k, "const") ? NULL : bv;
            int an = ae ? ae->n : 1, bn = be ? be->n : 1;
            for (int j = 0; j < an; j++) {
                const JdValue *x = ae ? ae->items[j] : av;
                for (int q = 0; q < bn; q++) {
                    const JdValue *y = be ? be->items[q] : bv;
                    if (jd_equal(x, y)) {
                        add_item(arr, NULL, 0, x);
                        break;
                    }
                }
            }
            if (!strcmp(k, "const")) {
                set_item(o, "const", av);
                if (arr->n == 0) set_item(o, "enum", arr);
            } else {
                set_item(o, "enum", arr);
            }
        } else if (!strcmp(k, "anyOf") || !strcmp(k, "oneOf")) {
            /* two lists: keep one here, the other as a nested allOf member */
            JdValue *wrap = made(s, JD_OBJECT);
            if (!wrap) return -1;
            add_item(wrap, k, strlen(k), bv);
            const JdValue *rest = jd_get(o, "allOf");
            JdValue *arr = made(s, JD_ARRAY);
            if (!arr) return -1;
            if (rest)
                for (int j = 0; j < rest->n; j++) add_item(arr, NULL, 0, rest->items[j]);
            add_item(arr, NULL, 0, wrap);
            set_item(o, "allOf", arr);
        } else if (in_list(handled, k) || in_list(refused, k)) {
            return fail(s, ERR_UNSUPPORTED, "allOf: cannot merge two different \"%s\"", k), -1;
        }
    }
    return 0;
}

static const JdValue *deref(Sc *s, const JdValue *v, int depth) {
    const JdValue *r = jd_get(v, "$ref");
    if (!r || r->kind != JD_STRING) {
        fail(s, ERR_CONSTRAINT, "$ref: expected a string");
        return NULL;
    }
    if (depth > 40) {
        fail(s, ERR_UNSUPPORTED, "allOf over a recursive $ref \"%s\" cannot be merged", r->str);
        return NULL;
    }
    return resolve(s, r->str);
}

static const JdValue *flatten(Sc *s, const JdValue *v, int depth) {
    if (v->kind != JD_OBJECT) return v;
    const JdValue *all = jd_get(v, "allOf");
    const JdValue *ref = jd_get(v, "$ref");
    bool ref_merge = false;
    if (ref && s->draft >= 2019) {
        for (int i = 0; i < v->n; i++) {
            const char *k = v->keys[i];
            if (strcmp(k, "$ref") && (in_list(handled, k) || in_list(refused, k))) ref_merge = true;
        }
    }
    if (!all && !ref_merge) return v;
    if (depth > 60) {
        fail(s, ERR_LIMIT, "allOf nested too deeply");
        return NULL;
    }
    JdValue *o = made(s, JD_OBJECT);
    if (!o) return NULL;
    for (int i = 0; i < v->n; i++) {
        const char *k = v->keys[i];
        if (!strcmp(k, "allOf") || (ref_merge && !strcmp(k, "$ref"))) continue;
        add_item(o, k, v->key_lens[i], v->items[i]);
    }
    if (ref_merge) {
        const JdValue *t = deref(s, v, depth);
        if (!t || merge_into(s, o, t, depth) < 0) return NULL;
    }
    if (all) {
        if (all->kind != JD_ARRAY) {
            fail(s, ERR_CONSTRAINT, "allOf: expected a list");
            return NULL;
        }
        for (int i = 0; i < all->n; i++)
            if (merge_into(s, o, all->items[i], depth) < 0) return NULL;
    }
    /* anyOf lists beyond the first wait in allOf until lower distributes
     * the first; folding them again here would go round in circles */
    const JdValue *na = jd_get(o, "allOf");
    if (na && (jd_get(o, "anyOf") || jd_get(o, "oneOf"))) {
        bool deferred_only = true;
        for (int i = 0; i < na->n; i++) {
            const JdValue *w = na->items[i];
            deferred_only &= w->kind == JD_OBJECT && w->n == 1 && (!strcmp(w->keys[0], "anyOf") || !strcmp(w->keys[0], "oneOf"));
        }
        if (deferred_only) return o;
    }
    return flatten(s, o, depth + 1);
}

/* ---- oneOf: disjointness ------------------------------------------------ */

/* Whether no value satisfies both a and b (false when unsure). */
static bool disjoint(Sc *s, const JdValue *a, const JdValue *b, int depth) {
    if (depth > 8) return false;
    if (a->kind == JD_FALSE || b->kind == JD_FALSE) return true;
    if (a->kind != JD_OBJECT || b->kind != JD_OBJECT) return false;
    if (jd_get(a, "$ref") && !jd_get(a, "type")) {
        const JdValue *t = resolve(s, jd_get(a, "$ref")->str);
        if (!t || t == a) return false;
        return disjoint(s, t, b, depth + 1);
    }
    if (jd_get(b, "$ref") && !jd_get(b, "type")) {
        const JdValue *t = resolve(s, jd_get(b, "$ref")->str);
        if (!t || t == b) return false;
        return disjoint(s, a, t, depth + 1);
    }
    int ta = type_mask(s, jd_get(a, "type")), tb = type_mask(s, jd_get(b, "type"));
    const JdValue *ea = jd_get(a, "enum"), *eb = jd_get(b, "enum");
    const JdValue *ca = jd_get(a, "const"), *cb = jd_get(b, "const");
    if (!(ta & tb)) return true;
    /* enum / const sets */
    if ((ea || ca) && (eb || cb)) {
        int na = ca ? 1 : ea->n, nb = cb ? 1 : eb->n;
        bool meet = false;
        for (int i = 0; i < na && !meet; i++)
            for (int j = 0; j < nb && !meet; j++)
                meet = jd_equal(ca ? ca : ea->items[i], cb ? cb : eb->items[j]);
        if (!meet) return true;
    }
    /* objects only, with a required property of disjoint schemas, or a
     * required property the other side forbids */
    if ((ta & tb) == T_OBJ) {
        const JdValue *pa = jd_get(a, "properties"), *pb = jd_get(b, "properties");
        const JdValue *ra = jd_get(a, "required"), *rb = jd_get(b, "required");
        const JdValue *aa = jd_get(a, "additionalProperties"), *ab = jd_get(b, "additionalProperties");
        if (ra && rb && pa && pb)
            for (int i = 0; i < ra->n; i++) {
                const char *k = ra->items[i]->str;
                bool both = false;
                for (int j = 0; j < rb->n; j++) both |= !strcmp(rb->items[j]->str, k);
                const JdValue *x = jd_get(pa, k), *y = jd_get(pb, k);
                if (both && x && y && disjoint(s, x, y, depth + 1)) return true;
            }
        if (ra && ab && ab->kind == JD_FALSE && !jd_get(b, "patternProperties"))
            for (int i = 0; i < ra->n; i++)
                if (ra->items[i]->kind == JD_STRING && !(pb && jd_get(pb, ra->items[i]->str))) return true;
        if (rb && aa && aa->kind == JD_FALSE && !jd_get(a, "patternProperties"))
            for (int i = 0; i < rb->n; i++)
                if (rb->items[i]->kind == JD_STRING && !(pa && jd_get(pa, rb->items[i]->str))) return true;
    }
    return false;
}

/* ---- numbers ------------------------------------------------------------ */

typedef struct {
    const JdValue *val;
    bool excl, lower;
} Bound;

static int num_spec(Sc *s, const JdValue *v, bool integer, NumSpec *ns) {
    memset(ns, 0, sizeof *ns);
    ns->integer = integer;
    ns->frac_max = -1;
    const JdValue *mn = jd_get(v, "minimum"), *mx = jd_get(v, "maximum");
    const JdValue *emn = jd_get(v, "exclusiveMinimum"), *emx = jd_get(v, "exclusiveMaximum");
    const JdValue *mo = jd_get(v, "multipleOf");
    Bound bs[4];
    int nb = 0;
    if (mn) bs[nb++] = (Bound){mn, emn && emn->kind == JD_TRUE, true};
    if (mx) bs[nb++] = (Bound){mx, emx && emx->kind == JD_TRUE, false};
    if (emn && emn->kind == JD_NUMBER) bs[nb++] = (Bound){emn, true, true};
    if (emx && emx->kind == JD_NUMBER) bs[nb++] = (Bound){emx, true, false};
    for (int i = 0; i < nb; i++) {
        if (bs[i].val->kind != JD_NUMBER) return fail(s, ERR_CONSTRAINT, "minimum/maximum: expected a number"), -1;
        Dec d;
        if (dec_parse(bs[i].val->str, &d) < 0) return fail(s, ERR_NOMEM, "out of memory"), -1;
        NbKind *kind = bs[i].lower ? &ns->lo_kind : &ns->hi_kind;
        Dec *cur = bs[i].lower ? &ns->lo : &ns->hi;
        bool take = *kind == NB_NONE;
        if (!take) {
            int c = dec_cmp(&d, cur);
            take = bs[i].lower ? (c > 0 || (c == 0 && bs[i].excl)) : (c < 0 || (c == 0 && bs[i].excl));
        }
        if (take) {
            dec_free(cur);
            *cur = d;
            *kind = bs[i].excl ? NB_EXCL : NB_INCL;
        } else {
            dec_free(&d);
        }
    }
    if (mo) {
        Dec d;
        if (mo->kind != JD_NUMBER || dec_parse(mo->str, &d) < 0 || d.neg || !d.digits[0])
            return fail(s, ERR_CONSTRAINT, "multipleOf: expected a positive number"), -1;
        if (!strcmp(d.digits, "1") && d.exp <= 0) {
            if (d.exp == 0) ns->integer = true;
            else if (!integer) ns->frac_max = (int)-d.exp;
        } else if (dec_is_int(&d) && integer && strlen(d.digits) + (size_t)d.exp <= 15) {
            long long k = atoll(d.digits);
            for (long e = 0; e < d.exp; e++) k *= 10;
            ns->int_step = k;
        } else {
            dec_free(&d);
            return fail(s, ERR_UNSUPPORTED, "multipleOf %s is not supported (only 1 and 10^-k)", mo->str), -1;
        }
        dec_free(&d);
    }
    return 0;
}

static void num_spec_free(NumSpec *ns) {
    dec_free(&ns->lo);
    dec_free(&ns->hi);
}

static CgExpr lower_number(Sc *s, const JdValue *v, bool integer) {
    NumSpec ns;
    if (num_spec(s, v, integer, &ns) < 0) {
        num_spec_free(&ns);
        return -1;
    }
    CgExpr e;
    char msg[256];
    int rc = sn_number(s->b, &ns, &e, msg, sizeof msg);
    num_spec_free(&ns);
    if (rc) return fail(s, rc, "%s", msg);
    return e;
}

/* ---- strings ------------------------------------------------------------ */

static long get_count(Sc *s, const JdValue *v, const char *k, long dflt) {
    const JdValue *x = jd_get(v, k);
    if (!x) return dflt;
    Dec d;
    if (x->kind != JD_NUMBER || dec_parse(x->str, &d) < 0 || d.neg || !dec_is_int(&d)) {
        fail(s, ERR_CONSTRAINT, "%s: expected a non-negative integer", k);
        return dflt;
    }
    long n = 0;
    size_t nd = strlen(d.digits);
    if (nd + (size_t)(d.exp > 0 ? d.exp : 0) > 9) n = 1000000000L;
    else {
        n = nd ? atol(d.digits) : 0;
        for (long e = 0; e < d.exp; e++) n *= 10;
    }
    dec_free(&d);
    return n;
}

static CgExpr lower_string(Sc *s, const JdValue *v) {
    long mn = get_count(s, v, "minLength", 0), mx = get_count(s, v, "maxLength", -1);
    const JdValue *pat = jd_get(v, "pattern"), *fmt = jd_get(v, "format");
    if (pat && pat->kind != JD_STRING) return fail(s, ERR_CONSTRAINT, "pattern: expected a string");
    const char *f = fmt && fmt->kind == JD_STRING ? fmt->str : NULL;
    CgExpr e;
    char msg[300];
    int rc = ss_string(s->b, mn, mx, pat ? pat->str : NULL, pat ? pat->len : 0, f, &e, msg, sizeof msg);
    if (rc) return fail(s, rc, "%s", msg);
    return e;
}

/* ---- objects ------------------------------------------------------------ */

static bool str_in(const JdValue *arr, const char *k) {
    if (!arr || arr->kind != JD_ARRAY) return false;
    for (int i = 0; i < arr->n; i++)
        if (arr->items[i]->kind == JD_STRING && !strcmp(arr->items[i]->str, k)) return true;
    return false;
}

/* Keys (JSON strings, quotes included) that are none of the names. */
typedef struct Trie Trie;
struct Trie {
    uint32_t cp;
    bool end;
    Trie *kid, *next;
};

static void trie_free(Trie *t) {
    while (t) {
        Trie *n = t->next;
        trie_free(t->kid);
        free(t);
        t = n;
    }
}

#include "base/utf8.h"

static int trie_add(Trie **root, const char *s, size_t n) {
    Trie **level = root;
    Trie *node = NULL;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = utf8_decode(s + i, n - i, &cp);
        if (k <= 0) return -1;
        i += (size_t)k;
        Trie *t = *level;
        while (t && t->cp != cp) t = t->next;
        if (!t) {
            t = calloc(1, sizeof *t);
            if (!t) return -1;
            t->cp = cp;
            t->next = *level;
            *level = t;
        }
        node = t;
        level = &t->kid;
    }
    if (node) node->end = true;
    return 0;
}

static CgExpr not_in(Sc *s, const Trie *kids, bool here_is_name) {
    CgBuilder *b = s->b;
    int nk = 0;
    for (const Trie *t = kids; t; t = t->next) nk++;
    CgExpr *alts = malloc((size_t)(nk + 2) * sizeof *alts);
    CgRange *rs = malloc((size_t)(nk + 1) * sizeof *rs);
    if (!alts || !rs) {
        free(alts);
        free(rs);
        return fail(s, ERR_NOMEM, "out of memory");
    }
    int n = 0, nr = 0;
    if (!here_is_name) alts[n++] = cgb_empty(b);
    for (const Trie *t = kids; t; t = t->next) {
        rs[nr++] = (CgRange){t->cp, t->cp};
        CgRange one = {t->cp, t->cp};
        alts[n++] = cgb_seq2(b, ss_chars(b, &one, 1, false), not_in(s, t->kid, t->end));
    }
    alts[n++] = cgb_seq2(b, ss_chars(b, rs, nr, true), cgb_repeat(b, ss_any_char(b), 0, CG_INF));
    CgExpr e = cgb_alt(b, alts, n);
    free(alts);
    free(rs);
    return e;
}

static CgExpr member(Sc *s, CgExpr key, CgExpr value) {
    return cgb_seq(s->b, (CgExpr[]){key, punct(s, ":"), value}, 3);
}

/* Members whose names are not declared, by region of the patterns: a
 * name matching the patterns in set m (and no others) takes all their
 * schemas; one matching none takes additionalProperties. -1: none. */
static CgExpr pattern_members(Sc *s, const JdValue *pprops, CGrammar *const *pg, int npat, const JdValue *addl,
                              const char *const *names, const size_t *nlens, int n) {
    CgBuilder *b = s->b;
    static const JdValue true_schema = {.kind = JD_TRUE};
    CGrammar *ug = NULL, *dg = NULL;
    char msg[300];
    int rc = ss_names_grammar(NULL, NULL, 0, true, &ug, msg, sizeof msg);
    if (!rc && n > 0) rc = ss_names_grammar(names, nlens, n, false, &dg, msg, sizeof msg);
    if (rc) {
        cg_unref(ug);
        return fail(s, rc, "patternProperties: %s", msg);
    }
    CgExpr alts[8];
    int k = 0;
    for (int m = 0; m < (1 << npat) && !s->rc; m++) {
        if (m == 0 && addl && addl->kind == JD_FALSE) continue;
        CGrammar *gs[5];
        bool neg[5];
        int ng = 0;
        gs[ng] = ug;
        neg[ng++] = false;
        for (int i = 0; i < npat; i++) {
            gs[ng] = pg[i];
            neg[ng++] = !((m >> i) & 1);
        }
        if (dg) {
            gs[ng] = dg;
            neg[ng++] = true;
        }
        CgExpr body;
        bool empty;
        rc = sk_region(b, gs, neg, ng, "pattern-names", &body, &empty, msg, sizeof msg);
        if (rc) {
            fail(s, rc, "%s", msg);
            break;
        }
        if (empty) continue;
        const JdValue *val = NULL;
        for (int i = 0; i < npat; i++)
            if ((m >> i) & 1) val = val ? allof2(s, val, pprops->items[i]) : pprops->items[i];
        if (!val) val = addl ? addl : &true_schema;
        CgExpr key = cgb_seq(b, (CgExpr[]){cgb_lit(b, "\"", 1), body, cgb_lit(b, "\"", 1)}, 3);
        alts[k++] = member(s, key, as_rule(s, lower(s, val), "patternProperties"));
    }
    cg_unref(ug);
    cg_unref(dg);
    if (s->rc) return -1;
    return k ? cgb_alt(b, alts, k) : -1;
}

static CgExpr lower_object(Sc *s, const JdValue *v) {
    CgBuilder *b = s->b;
    const JdValue *props = jd_get(v, "properties");
    const JdValue *req = jd_get(v, "required");
    const JdValue *addl = jd_get(v, "additionalProperties");
    const JdValue *pprops = jd_get(v, "patternProperties");
    const JdValue *pat_all = NULL;   /* what every member must satisfy */
    if (props && props->kind != JD_OBJECT) return fail(s, ERR_CONSTRAINT, "properties: expected an object");
    if (req && req->kind != JD_ARRAY) return fail(s, ERR_CONSTRAINT, "required: expected a list");
    if (pprops && pprops->kind != JD_OBJECT) return fail(s, ERR_CONSTRAINT, "patternProperties: expected an object");
    if (pprops && pprops->n == 0) pprops = NULL;
    /* patternProperties: a pattern every name matches folds into
     * additionalProperties; others split the names into regions */
    int npat = 0;
    CGrammar *pg[3] = {0};
    if (pprops) {
        npat = pprops->n;
        if (npat > 3) return fail(s, ERR_UNSUPPORTED, "patternProperties with more than 3 patterns");
        bool universal = true;
        for (int i = 0; i < npat; i++) universal &= ss_pattern_universal(pprops->keys[i], pprops->key_lens[i]);
        if (universal) {
            const JdValue *all = pprops->items[0];
            for (int i = 1; i < npat; i++) all = allof2(s, all, pprops->items[i]);
            pat_all = all;
            addl = all;
            pprops = NULL;
            npat = 0;
        } else {
            for (int i = 0; i < npat; i++) {
                char msg[300];
                int rc = ss_pattern_grammar(pprops->keys[i], pprops->key_lens[i], &pg[i], msg, sizeof msg);
                if (rc) {
                    for (int j = 0; j < i; j++) cg_unref(pg[j]);
                    return fail(s, rc, "patternProperties: %s", msg);
                }
            }
        }
    }
    bool addl_any = !addl || is_true_schema(addl);
    bool addl_none = addl && addl->kind == JD_FALSE && !pprops;
    /* the declared members, then required names not declared */
    int np = props ? props->n : 0;
    int nreq_extra = 0;
    if (req)
        for (int i = 0; i < req->n; i++) {
            if (req->items[i]->kind != JD_STRING) return fail(s, ERR_CONSTRAINT, "required: expected strings");
            if (!props || !jd_get(props, req->items[i]->str)) nreq_extra++;
        }
    int total = np + nreq_extra;
    const char **names = calloc((size_t)total + 1, sizeof *names);
    size_t *nlens = calloc((size_t)total + 1, sizeof *nlens);
    const JdValue **schemas = calloc((size_t)total + 1, sizeof *schemas);
    bool *required = calloc((size_t)total + 1, sizeof *required);
    if (!names || !nlens || !schemas || !required) {
        free(names);
        free(nlens);
        free(schemas);
        free(required);
        for (int q = 0; q < npat; q++) cg_unref(pg[q]);
        return fail(s, ERR_NOMEM, "out of memory");
    }
    int n = 0;
    for (int i = 0; i < np; i++) {
        /* a duplicated key: the last one counts */
        if (jd_get(props, props->keys[i]) != props->items[i]) continue;
        names[n] = props->keys[i];
        nlens[n] = props->key_lens[i];
        schemas[n] = pat_all ? allof2(s, props->items[i], pat_all) : props->items[i];
        for (int q = 0; q < npat; q++)
            if (ss_name_matches(pg[q], names[n], nlens[n]) == 1) schemas[n] = allof2(s, schemas[n], pprops->items[q]);
        required[n] = str_in(req, props->keys[i]);
        n++;
    }
    static const JdValue true_schema = {.kind = JD_TRUE};
    if (req)
        for (int i = 0; i < req->n; i++) {
            const char *k = req->items[i]->str;
            if (props && jd_get(props, k)) continue;
            bool dup = false;
            for (int j = 0; j < n; j++) dup |= !strcmp(names[j], k);
            if (dup) continue;
            const JdValue *sch = NULL;
            for (int q = 0; q < npat; q++)
                if (ss_name_matches(pg[q], k, req->items[i]->len) == 1)
                    sch = sch ? allof2(s, sch, pprops->items[q]) : pprops->items[q];
            if (!sch && addl && addl->kind == JD_FALSE) {
                free(names);
                free(nlens);
                free(schemas);
                free(required);
                for (int q = 0; q < npat; q++) cg_unref(pg[q]);
                return fail(s, ERR_CONSTRAINT, "required: \"%s\" is not allowed by additionalProperties: false", k);
            }
            names[n] = k;
            nlens[n] = req->items[i]->len;
            schemas[n] = sch ? sch : addl ? addl : &true_schema;
            required[n] = true;
            n++;
        }
    /* minProperties / maxProperties: only where they decide nothing */
    long minp = get_count(s, v, "minProperties", 0), maxp = get_count(s, v, "maxProperties", -1);
    int nreq = 0;
    for (int i = 0; i < n; i++) nreq += required[i];
    bool extra_possible = !addl_none;
    if (minp == 1 && nreq == 0) {
        /* handled below: the members may not all be absent */
    } else if (minp > nreq && (extra_possible || minp > n)) {
        if (!extra_possible && minp > n) {
            free(names);
            free(nlens);
            free(schemas);
            free(required);
            for (int q = 0; q < npat; q++) cg_unref(pg[q]);
            return fail(s, ERR_CONSTRAINT, "minProperties %ld: only %d properties are allowed", minp, n);
        }
        /* all declared optional members but at least minp present */
        if (extra_possible) {
            free(names);
            free(nlens);
            free(schemas);
            free(required);
            for (int q = 0; q < npat; q++) cg_unref(pg[q]);
            return fail(s, ERR_UNSUPPORTED, "minProperties with optional or additional properties");
        }
    }
    bool at_least_one = minp == 1 && nreq == 0;
    if (at_least_one) minp = 0;
    if (minp > nreq && !extra_possible) {
        free(names);
        free(nlens);
        free(schemas);
        free(required);
        for (int q = 0; q < npat; q++) cg_unref(pg[q]);
        return fail(s, ERR_UNSUPPORTED, "minProperties with optional properties");
    }
    if (maxp >= 0 && (extra_possible || maxp < n)) {
        if (maxp < nreq) {
            free(names);
            free(nlens);
            free(schemas);
            free(required);
            for (int q = 0; q < npat; q++) cg_unref(pg[q]);
            return fail(s, ERR_CONSTRAINT, "maxProperties %ld < %d required properties", maxp, nreq);
        }
        if (!(maxp == 0 && nreq == 0 && n == 0 && false)) {
            free(names);
            free(nlens);
            free(schemas);
            free(required);
            for (int q = 0; q < npat; q++) cg_unref(pg[q]);
            return fail(s, ERR_UNSUPPORTED, "maxProperties with optional or additional properties");
        }
    }
    /* member expressions */
    CgExpr *mem = malloc((size_t)(n + 1) * sizeof *mem);
    if (!mem) {
        free(names);
        free(nlens);
        free(schemas);
        free(required);
        for (int q = 0; q < npat; q++) cg_unref(pg[q]);
        return fail(s, ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        CgExpr val = as_rule(s, lower(s, schemas[i]), names[i]);
        mem[i] = member(s, ss_literal(b, names[i], nlens[i]), val);
    }
    /* additional members */
    CgExpr extra = -1;
    if (!addl_none) {
        CgExpr key, val;
        if (pprops) {
            extra = pattern_members(s, pprops, pg, npat, addl, names, nlens, n);
            key = val = -1;
        } else {
            Trie *t = NULL;
            for (int i = 0; i < n; i++) trie_add(&t, names[i], nlens[i]);
            CgExpr body = not_in(s, t, false);
            trie_free(t);
            if (n == 0) body = cgb_repeat(b, ss_any_char(b), 0, CG_INF);
            key = cgb_seq(b, (CgExpr[]){cgb_lit(b, "\"", 1), body, cgb_lit(b, "\"", 1)}, 3);
            val = addl_any ? as_rule(s, lower(s, &true_schema), "value")
                           : as_rule(s, lower(s, addl), "additionalProperties");
        }
        if (key >= 0) extra = member(s, key, val);
    }
    for (int q = 0; q < npat; q++) cg_unref(pg[q]);
    /* Sequence with optional members and commas between present ones:
     *   S_i = m_i C_{i+1} | S_{i+1} (m_i optional)    S_n = (x (, x)*)?
     *   C_i = (, m_i)? C_{i+1}                        C_n = (, x)*
     * C_i are built back to front as rules, so every S_i is small. */
    CgExpr comma = punct(s, ",");
    CgExpr c_next = extra >= 0 ? cgb_repeat(b, cgb_seq2(b, comma, extra), 0, CG_INF) : cgb_empty(b);
    CgExpr s_next = extra >= 0 ? cgb_repeat(b, cgb_seq2(b, extra, c_next), at_least_one ? 1 : 0, 1)
                               : (at_least_one ? cgb_nothing(b) : cgb_empty(b));
    c_next = as_rule(s, c_next, "members");
    for (int i = n - 1; i >= 0; i--) {
        CgExpr with = cgb_seq2(b, mem[i], c_next);
        CgExpr s_i = required[i] ? with : cgb_alt2(b, with, s_next);
        CgExpr c_item = cgb_seq2(b, comma, mem[i]);
        CgExpr c_i = cgb_seq2(b, required[i] ? c_item : cgb_repeat(b, c_item, 0, 1), c_next);
        c_next = as_rule(s, c_i, "members");
        s_next = as_rule(s, s_i, "members");
    }
    free(mem);
    free(names);
    free(nlens);
    free(schemas);
    free(required);
    return cgb_seq(b, (CgExpr[]){open_tok(s, "{"), s_next, close_tok(s, "}")}, 3);
}

/* ---- arrays ------------------------------------------------------------- */

static CgExpr lower_array(Sc *s, const JdValue *v) {
    CgBuilder *b = s->b;
    const JdValue *items = jd_get(v, "items"), *prefix = jd_get(v, "prefixItems");
    const JdValue *addl = jd_get(v, "additionalItems");
    const JdValue *uniq = jd_get(v, "uniqueItems");
    long mn = get_count(s, v, "minItems", 0), mx = get_count(s, v, "maxItems", -1);
    static const JdValue true_schema = {.kind = JD_TRUE};
    const JdValue *rest = &true_schema;
    const JdValue *const *pre = NULL;
    int np = 0;
    if (items && items->kind == JD_ARRAY) {
        if (prefix) return fail(s, ERR_CONSTRAINT, "items as a list together with prefixItems");
        pre = (const JdValue *const *)items->items;
        np = items->n;
        if (addl) rest = addl;
    } else {
        if (items) rest = items;
        if (prefix) {
            if (prefix->kind != JD_ARRAY) return fail(s, ERR_CONSTRAINT, "prefixItems: expected a list");
            pre = (const JdValue *const *)prefix->items;
            np = prefix->n;
        }
    }
    if (mx >= 0 && mx < mn) return fail(s, ERR_CONSTRAINT, "minItems %ld > maxItems %ld", mn, mx);
    if (uniq && uniq->kind == JD_TRUE && !(mx >= 0 && mx <= 1))
        return fail(s, ERR_UNSUPPORTED, "uniqueItems: true (not expressible exactly)");
    bool rest_none = rest->kind == JD_FALSE;
    if (rest_none && (mx < 0 || mx > np)) mx = np;
    if (mn > mx && mx >= 0) return fail(s, ERR_CONSTRAINT, "minItems %ld: only %ld items are allowed", mn, mx);
    if (mn > 1000000 || mx > 1000000) return fail(s, ERR_LIMIT, "minItems/maxItems past 1000000");
    CgExpr comma = punct(s, ",");
    CgExpr r = rest_none ? -1 : as_rule(s, lower(s, rest), "items");
    /* tail(i): what follows after i elements */
    long start_rest = np;
    CgExpr tail;
    if (rest_none || (mx >= 0 && mx <= np)) {
        tail = cgb_empty(b);
    } else {
        long lo = mn > start_rest ? mn - start_rest : 0;
        long hi = mx < 0 ? -1 : mx - start_rest;
        tail = sx_repeat(b, cgb_seq2(b, comma, r), lo, hi, s->lim.max_repeat, "items");
    }
    long last = np;
    if (mx >= 0 && mx < last) last = mx;
    for (long i = last - 1; i >= 0; i--) {
        CgExpr e = as_rule(s, lower(s, pre[i]), "prefixItems");
        CgExpr step = i == 0 ? cgb_seq2(b, e, tail) : cgb_seq(b, (CgExpr[]){comma, e, tail}, 3);
        tail = i < mn ? step : cgb_alt2(b, step, cgb_empty(b));
        if (i == 0) break;
    }
    CgExpr body;
    if (last > 0) {
        body = tail;
    } else if (rest_none || mx == 0) {
        body = cgb_empty(b);
    } else {
        /* no prefix: (r (, r){mn-1..mx-1})? */
        long lo = mn > 0 ? mn - 1 : 0;
        long hi = mx < 0 ? -1 : mx - 1;
        CgExpr seq = cgb_seq2(b, r, sx_repeat(b, cgb_seq2(b, comma, r), lo, hi, s->lim.max_repeat, "items"));
        body = mn > 0 ? seq : cgb_alt2(b, seq, cgb_empty(b));
    }
    return cgb_seq(b, (CgExpr[]){open_tok(s, "["), body, close_tok(s, "]")}, 3);
}

/* ---- a schema ----------------------------------------------------------- */


static int check_keywords(Sc *s, const JdValue *v) {
    for (int i = 0; i < v->n; i++) {
        const char *k = v->keys[i];
        if (in_list(refused, k)) {
            if ((!strcmp(k, "then") || !strcmp(k, "else")) && !jd_get(v, "if")) continue;
            fail(s, ERR_UNSUPPORTED, "keyword \"%s\" is not supported", k);
            return -1;
        }
        if (!strcmp(k, "format") && v->items[i]->kind == JD_STRING) {
            bool unenf;
            if (!ss_format_known(v->items[i]->str, &unenf) && unenf) {
                fail(s, ERR_UNSUPPORTED, "format \"%s\" is not enforced", v->items[i]->str);
                return -1;
            }
        }
    }
    return 0;
}

/* dependencies / dependentRequired / dependentSchemas as allOf members
 * anyOf[{name absent}, {name present, and what it needs}]. */
static const JdValue *rewrite_dependencies(Sc *s, const JdValue *v) {
    static const char *const kws[] = {"dependencies", "dependentRequired", "dependentSchemas"};
    int count = 0;
    for (int k = 0; k < 3; k++) {
        const JdValue *d = jd_get(v, kws[k]);
        if (d && d->kind == JD_OBJECT) count += d->n;
    }
    if (count == 0) return v;
    if (count > 4) {
        fail(s, ERR_UNSUPPORTED, "dependencies: more than 4 entries");
        return NULL;
    }
    JdValue *o = made(s, JD_OBJECT), *all = made(s, JD_ARRAY);
    if (!o || !all) return NULL;
    const JdValue *prev = jd_get(v, "allOf");
    if (prev)
        for (int i = 0; i < prev->n; i++) add_item(all, NULL, 0, prev->items[i]);
    for (int i = 0; i < v->n; i++) {
        const char *k = v->keys[i];
        if (!strcmp(k, "allOf") || !strcmp(k, kws[0]) || !strcmp(k, kws[1]) || !strcmp(k, kws[2])) continue;
        add_item(o, k, v->key_lens[i], v->items[i]);
    }
    static const JdValue false_schema = {.kind = JD_FALSE};
    for (int q = 0; q < 3; q++) {
        const JdValue *d = jd_get(v, kws[q]);
        if (!d || d->kind != JD_OBJECT) continue;
        for (int i = 0; i < d->n; i++) {
            const char *name = d->keys[i];
            size_t nl = d->key_lens[i];
            const JdValue *need = d->items[i];
            JdValue *absent = made(s, JD_OBJECT), *props = made(s, JD_OBJECT);
            JdValue *req = made(s, JD_ARRAY), *present = made(s, JD_OBJECT), *self = made(s, JD_STRING);
            JdValue *pair = made(s, JD_ARRAY), *alt = made(s, JD_OBJECT);
            if (!absent || !props || !req || !present || !self || !pair || !alt) return NULL;
            add_item(props, name, nl, &false_schema);
            add_item(absent, "properties", 10, props);
            self->str = strndup(name, nl);
            self->len = nl;
            add_item(req, NULL, 0, self);
            if (need->kind == JD_ARRAY) {
                for (int j = 0; j < need->n; j++) add_item(req, NULL, 0, need->items[j]);
                add_item(present, "required", 8, req);
            } else {
                JdValue *r = made(s, JD_OBJECT);
                if (!r) return NULL;
                add_item(r, "required", 8, req);
                present = allof2(s, r, need);
            }
            add_item(pair, NULL, 0, absent);
            add_item(pair, NULL, 0, present);
            add_item(alt, "anyOf", 5, pair);
            add_item(all, NULL, 0, alt);
        }
    }
    add_item(o, "allOf", 5, all);
    return o;
}

/* Expression of v without its enum/const (for filtering them). */
static CgExpr lower_types(Sc *s, const JdValue *v, int types);

static CGrammar *rest_grammar(Sc *s, const JdValue *v, bool *none);
static bool value_ok(CGrammar *g, const JdValue *value);

static CgExpr lower_enum(Sc *s, const JdValue *v) {
    const JdValue *en = jd_get(v, "enum"), *co = jd_get(v, "const");
    const JdValue *one[1];
    const JdValue *const *vals;
    int n;
    if (co) {
        one[0] = co;
        vals = one;
        n = 1;
    } else {
        if (en->kind != JD_ARRAY) return fail(s, ERR_CONSTRAINT, "enum: expected a list");
        vals = (const JdValue *const *)en->items;
        n = en->n;
    }
    bool others = false;
    for (int i = 0; i < v->n; i++) {
        const char *k = v->keys[i];
        if (strcmp(k, "enum") && strcmp(k, "const") && in_list(handled, k)) others = true;
    }
    CGrammar *rest = NULL;
    bool none = false;
    if (others) {
        rest = rest_grammar(s, v, &none);
        if (s->rc) return -1;
        if (none) return cgb_nothing(s->b);
    }
    CgExpr *alts = malloc((size_t)(n + 1) * sizeof *alts);
    if (!alts) {
        cg_unref(rest);
        return fail(s, ERR_NOMEM, "out of memory");
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (co && en) {
            bool in = false;
            for (int j = 0; j < en->n; j++) in |= jd_equal(en->items[j], co);
            if (!in) continue;
        }
        if (rest && !value_ok(rest, vals[i])) continue;
        alts[k++] = value_lit(s, vals[i]);
    }
    CgExpr e = cgb_alt(s->b, alts, k);
    free(alts);
    cg_unref(rest);
    return e;
}

static CgExpr lower_types(Sc *s, const JdValue *v, int types) {
    CgBuilder *b = s->b;
    CgExpr alts[7];
    int n = 0;
    if (types & T_NULL) alts[n++] = cgb_lit(b, "null", 4);
    if (types & T_BOOL) alts[n++] = cgb_alt2(b, cgb_lit(b, "true", 4), cgb_lit(b, "false", 5));
    if (types & T_NUM) alts[n++] = lower_number(s, v, false);
    else if (types & T_INT) alts[n++] = lower_number(s, v, true);
    if (types & T_STR) alts[n++] = lower_string(s, v);
    if (types & T_ARR) alts[n++] = lower_array(s, v);
    if (types & T_OBJ) alts[n++] = lower_object(s, v);
    if (s->rc) return -1;
    return cgb_alt(b, alts, n);
}

static CgExpr lower(Sc *s, const JdValue *v) {
    if (s->rc) return -1;
    if (++s->work > 200000) return fail(s, ERR_LIMIT, "schema too large to lower (past 200000 steps)");
    if (v->kind == JD_TRUE) {
        v = NULL;
    } else if (v->kind == JD_FALSE) {
        return cgb_nothing(s->b);
    } else if (v->kind != JD_OBJECT) {
        return fail(s, ERR_CONSTRAINT, "a schema must be an object or a boolean");
    }
    if (!v) {
        /* any value: one recursive rule shared by all uses */
        static const JdValue any_key = {.kind = JD_NULL};
        for (int i = 0; i < s->nmemo; i++)
            if (s->memo[i].node == &any_key) return cgb_ref(s->b, s->memo[i].rule);
        int r = cgb_rule(s->b, "value");
        if (s->nmemo == s->capmemo) {
            int nc = s->capmemo ? s->capmemo * 2 : 16;
            Memo *nm = realloc(s->memo, (size_t)nc * sizeof *nm);
            if (!nm) return fail(s, ERR_NOMEM, "out of memory");
            s->memo = nm;
            s->capmemo = nc;
        }
        s->memo[s->nmemo++] = (Memo){&any_key, r};
        CgBuilder *b = s->b;
        CgExpr val = cgb_ref(b, r);
        CgExpr str = cgb_seq(b, (CgExpr[]){cgb_lit(b, "\"", 1), cgb_repeat(b, ss_any_char(b), 0, CG_INF), cgb_lit(b, "\"", 1)}, 3);
        CgExpr arr = cgb_seq(b, (CgExpr[]){open_tok(s, "["),
                                           cgb_repeat(b, cgb_seq2(b, val, cgb_repeat(b, cgb_seq2(b, punct(s, ","), val), 0, CG_INF)), 0, 1),
                                           close_tok(s, "]")}, 3);
        CgExpr mem = member(s, str, val);
        CgExpr obj = cgb_seq(b, (CgExpr[]){open_tok(s, "{"),
                                           cgb_repeat(b, cgb_seq2(b, mem, cgb_repeat(b, cgb_seq2(b, punct(s, ","), mem), 0, CG_INF)), 0, 1),
                                           close_tok(s, "}")}, 3);
        NumSpec ns = {.frac_max = -1};
        CgExpr num;
        char msg[64];
        sn_number(b, &ns, &num, msg, sizeof msg);
        CgExpr alts[6] = {cgb_lit(b, "null", 4), cgb_alt2(b, cgb_lit(b, "true", 4), cgb_lit(b, "false", 5)), num, str, arr, obj};
        cgb_define(b, r, cgb_alt(b, alts, 6));
        return cgb_ref(b, r);
    }
    if (s->depth > s->lim.max_depth) return fail(s, ERR_LIMIT, "schema nested too deeply (max_depth %d)", s->lim.max_depth);
    s->depth++;
    CgExpr out = -1;
    const JdValue *ref = jd_get(v, "$ref");
    if (ref && (s->draft < 2019 || !jd_get(flatten(s, v, 0) ? v : v, "allOf"))) {
        bool siblings = false;
        for (int i = 0; i < v->n; i++)
            if (strcmp(v->keys[i], "$ref") && (in_list(handled, v->keys[i]) || in_list(refused, v->keys[i])))
                siblings = true;
        if (s->draft < 2019 || !siblings) {
            if (ref->kind != JD_STRING) {
                out = fail(s, ERR_CONSTRAINT, "$ref: expected a string");
            } else {
                const JdValue *t = resolve(s, ref->str);
                out = t ? ref_expr(s, t, ref->str) : -1;
            }
            s->depth--;
            return out;
        }
    }
    v = rewrite_dependencies(s, v);
    if (!v) {
        s->depth--;
        return -1;
    }
    const JdValue *f = flatten(s, v, 0);
    if (!f) {
        s->depth--;
        return -1;
    }
    v = f;
    if (check_keywords(s, v) < 0) {
        s->depth--;
        return -1;
    }
    const JdValue *any = jd_get(v, "anyOf"), *one = jd_get(v, "oneOf");
    if (any || one) {
        const JdValue *list = any ? any : one;
        if (list->kind != JD_ARRAY || list->n == 0) {
            s->depth--;
            return fail(s, ERR_CONSTRAINT, "%s: expected a non-empty list", any ? "anyOf" : "oneOf");
        }
        if (any && one) {
            /* distribute anyOf here; oneOf waits inside allOf */
            JdValue *o = made(s, JD_OBJECT), *w = made(s, JD_OBJECT), *arr = made(s, JD_ARRAY);
            const JdValue *prev = jd_get(v, "allOf");
            for (int i = 0; i < v->n; i++)
                if (strcmp(v->keys[i], "oneOf") && strcmp(v->keys[i], "allOf"))
                    add_item(o, v->keys[i], v->key_lens[i], v->items[i]);
            add_item(w, "oneOf", 5, one);
            if (prev)
                for (int i = 0; i < prev->n; i++) add_item(arr, NULL, 0, prev->items[i]);
            add_item(arr, NULL, 0, w);
            add_item(o, "allOf", 5, arr);
            v = o;
            one = NULL;
        }
        if (one) {
            for (int i = 0; i < list->n; i++)
                for (int j = i + 1; j < list->n; j++)
                    if (!disjoint(s, list->items[i], list->items[j], 0)) {
                        s->depth--;
                        return fail(s, ERR_UNSUPPORTED,
                                    "oneOf: alternatives %d and %d may overlap (only disjoint oneOf is exact)", i, j);
                    }
        }
        /* base ∧ (a1 ∨ a2 ...) = (base ∧ a1) ∨ (base ∧ a2) ... */
        JdValue *base = made(s, JD_OBJECT);
        if (!base) {
            s->depth--;
            return fail(s, ERR_NOMEM, "out of memory");
        }
        bool base_empty = true;
        for (int i = 0; i < v->n; i++) {
            if (v->items[i] == list) continue;
            add_item(base, v->keys[i], v->key_lens[i], v->items[i]);
            if (in_list(handled, v->keys[i])) base_empty = false;
        }
        CgExpr *alts = malloc((size_t)list->n * sizeof *alts);
        if (!alts) {
            s->depth--;
            return fail(s, ERR_NOMEM, "out of memory");
        }
        for (int i = 0; i < list->n; i++) {
            const JdValue *a = list->items[i];
            alts[i] = base_empty ? lower(s, a) : lower(s, allof2(s, base, a));
        }
        out = s->rc ? -1 : cgb_alt(s->b, alts, list->n);
        free(alts);
        s->depth--;
        return out;
    }
    int types = type_mask(s, jd_get(v, "type"));
    if (jd_get(v, "enum") || jd_get(v, "const")) out = lower_enum(s, v);
    else out = lower_types(s, v, types);
    s->depth--;
    return s->rc ? -1 : out;
}

/* ---- enum filtering: the canonical text of a value through a grammar of
 * the schema without its enum/const ----------------------------------------- */

static char *value_text(const JdValue *v, size_t *len);

static void text_app(char **buf, size_t *n, size_t *cap, const char *s, size_t k) {
    if (!*buf) return;
    if (*n + k + 1 > *cap) {
        while (*n + k + 1 > *cap) *cap *= 2;
        char *nb = realloc(*buf, *cap);
        if (!nb) {
            free(*buf);
            *buf = NULL;
            return;
        }
        *buf = nb;
    }
    memcpy(*buf + *n, s, k);
    *n += k;
    (*buf)[*n] = 0;
}

static void text_value(char **buf, size_t *n, size_t *cap, const JdValue *v) {
    switch (v->kind) {
    case JD_NULL: text_app(buf, n, cap, "null", 4); break;
    case JD_TRUE: text_app(buf, n, cap, "true", 4); break;
    case JD_FALSE: text_app(buf, n, cap, "false", 5); break;
    case JD_NUMBER: text_app(buf, n, cap, v->str, v->len); break;
    case JD_STRING: {
        size_t el;
        char *e = ss_encode(v->str, v->len, &el);
        if (!e) {
            free(*buf);
            *buf = NULL;
            return;
        }
        text_app(buf, n, cap, e, el);
        free(e);
        break;
    }
    case JD_ARRAY:
        text_app(buf, n, cap, "[", 1);
        for (int i = 0; i < v->n; i++) {
            if (i) text_app(buf, n, cap, ", ", 2);
            text_value(buf, n, cap, v->items[i]);
        }
        text_app(buf, n, cap, "]", 1);
        break;
    case JD_OBJECT:
        text_app(buf, n, cap, "{", 1);
        for (int i = 0; i < v->n; i++) {
            if (i) text_app(buf, n, cap, ", ", 2);
            size_t el;
            char *e = ss_encode(v->keys[i], v->key_lens[i], &el);
            if (!e) {
                free(*buf);
                *buf = NULL;
                return;
            }
            text_app(buf, n, cap, e, el);
            free(e);
            text_app(buf, n, cap, ": ", 2);
            text_value(buf, n, cap, v->items[i]);
        }
        text_app(buf, n, cap, "}", 1);
        break;
    }
}

static char *value_text(const JdValue *v, size_t *len) {
    size_t cap = 64, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    buf[0] = 0;
    text_value(&buf, &n, &cap, v);
    *len = n;
    return buf;
}

static int compile_root(const JdValue *root, const JdValue *sch, const CgJsonOptions *opt, const CgLimits *lim,
                        CGrammar **out, char *err, size_t errcap);

static CGrammar *rest_grammar(Sc *s, const JdValue *v, bool *none) {
    *none = false;
    JdValue *rest = made(s, JD_OBJECT);
    if (!rest) return NULL;
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], "enum") && strcmp(v->keys[i], "const"))
            add_item(rest, v->keys[i], v->key_lens[i], v->items[i]);
    CGrammar *g = NULL;
    char msg[300];
    CgJsonOptions o = {0};
    int rc = compile_root(s->root, rest, &o, &s->lim, &g, msg, sizeof msg);
    if (rc == ERR_CONSTRAINT) {   /* nothing satisfies the rest */
        *none = true;
        return NULL;
    }
    if (rc) {
        fail(s, rc, "enum/const with sibling keywords: %s", msg);
        return NULL;
    }
    return g;
}

static bool value_ok(CGrammar *g, const JdValue *value) {
    size_t len;
    char *t = value_text(value, &len);
    bool ok = t && cg_match(g, t, len, NULL) == 1;
    free(t);
    return ok;
}

/* ---- entry points ------------------------------------------------------- */

static int draft_of(const JdValue *root) {
    const JdValue *sc = root->kind == JD_OBJECT ? jd_get(root, "$schema") : NULL;
    if (!sc || sc->kind != JD_STRING) return 2020;
    if (strstr(sc->str, "draft-03") || strstr(sc->str, "draft-04")) return 4;
    if (strstr(sc->str, "draft-06")) return 6;
    if (strstr(sc->str, "draft-07")) return 7;
    if (strstr(sc->str, "2019-09")) return 2019;
    return 2020;
}

static int compile_root(const JdValue *root, const JdValue *sch, const CgJsonOptions *opt, const CgLimits *lim,
                        CGrammar **out, char *err, size_t errcap) {
    Sc s = {.root = root, .err = err, .errcap = errcap};
    if (opt) s.opt = *opt;
    if (lim) s.lim = *lim;
    if (s.lim.max_depth <= 0) s.lim.max_depth = 100;
    if (s.lim.max_repeat <= 0) s.lim.max_repeat = 1000;
    s.draft = draft_of(root);
    if (s.opt.indent > 0) {
        err_fmt(err, errcap, "JSON indent option is not supported");
        return ERR_UNSUPPORTED;
    }
    s.b = cgb_new(lim);
    if (!s.b) {
        err_fmt(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    int start = cgb_rule(s.b, "root");
    CgExpr e = lower(&s, sch);
    int rc = s.rc;
    if (!rc) {
        cgb_define(s.b, start, e);
        rc = cgb_build(s.b, start, out, err, errcap);
    }
    cgb_free(s.b);
    free(s.memo);
    made_free(&s);
    return rc;
}

int cg_compile_json(const char *schema, size_t n, const CgJsonOptions *opt, const CgLimits *lim, CGrammar **out,
                    char *err, size_t errcap) {
    if (!schema || !out) return err_fmt(err, errcap, "no schema"), ERR_ARG;
    *out = NULL;
    JdValue *root;
    char jerr[200];
    int rc = jd_parse(schema, n, lim && lim->max_depth > 0 ? lim->max_depth * 4 : 0, &root, jerr, sizeof jerr);
    if (rc) {
        err_fmt(err, errcap, "schema: %s", jerr);
        return rc == ERR_NOMEM ? rc : ERR_CONSTRAINT;
    }
    rc = compile_root(root, root, opt, lim, out, err, errcap);
    jd_free(root);
    return rc;
}

int cg_compile_json_any(const CgJsonOptions *opt, CGrammar **out, char *err, size_t errcap) {
    static const JdValue t = {.kind = JD_TRUE};
    if (!out) return err_fmt(err, errcap, "no output"), ERR_ARG;
    *out = NULL;
    return compile_root(&t, &t, opt, NULL, out, err, errcap);
}
