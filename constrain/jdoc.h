/*
 * constrain/jdoc.h — a small JSON reader for the schema front end: a tree
 * that keeps what exactness needs and jansson drops.
 *
 *   text ──jd_parse──► JdValue (tree, one malloc'd block per node)
 *                        object: keys[i] ─► items[i], in document order
 *                        number: its text, verbatim ("1e400", "0.10",
 *                                "123456789012345678901234567890")
 *
 * Why not jansson: integers past 64 bits, decimal fractions (multipleOf
 * 0.01, minimum 0.1) and the difference between 1 and 1.0 must survive
 * reading; key order must survive (properties are generated in order).
 *
 * Invariants: strings and keys are decoded to valid UTF-8 (escapes
 * resolved, surrogate pairs joined; a lone surrogate escape is an error);
 * a number's text matches the JSON number grammar. Duplicate keys are kept
 * (jd_get returns the last, as Python's json and JSON Schema validators do).
 *
 * Ownership: jd_parse returns a tree the caller frees with jd_free; every
 * pointer inside is owned by the tree. Pure; any thread.
 */
#ifndef SGL_CONSTRAIN_JDOC_H
#define SGL_CONSTRAIN_JDOC_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { JD_NULL, JD_FALSE, JD_TRUE, JD_NUMBER, JD_STRING, JD_ARRAY, JD_OBJECT } JdKind;

typedef struct JdValue JdValue;
struct JdValue {
    JdKind kind;
    char *str;              /* string: decoded UTF-8 (NUL-terminated); number: its text */
    size_t len;             /* bytes in str */
    bool is_int;            /* number: no fraction and no exponent in the text */
    int n;                  /* array / object: entries */
    JdValue **items;        /* array items; object values */
    char **keys;            /* object keys, decoded (NUL-terminated) */
    size_t *key_lens;
    int line, col;          /* where the value starts (1-based) */
};

/* Parses one JSON value (surrounding whitespace allowed). 0, or ERR_FORMAT
 * with "line L col C: what" in err, or ERR_NOMEM, or ERR_LIMIT past
 * max_depth nesting (0 = 1000). */
int jd_parse(const char *s, size_t n, int max_depth, JdValue **out, char *err, size_t errcap);
void jd_free(JdValue *v);

/* Object member by key (the last one when duplicated), or NULL. */
const JdValue *jd_get(const JdValue *obj, const char *key);
/* Structural equality as JSON Schema defines it for const/enum: numbers by
 * value (1 == 1.0), objects regardless of key order. */
bool jd_equal(const JdValue *a, const JdValue *b);
/* Numbers: -1, 0, 1 comparing exact decimal values of two number texts. */
int jd_num_cmp(const char *a, const char *b);

#endif
