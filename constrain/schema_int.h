/*
 * constrain/schema_int.h — what the files of the JSON Schema front end
 * (schema.c, schema_num.c, schema_str.c) share; nothing outside constrain/
 * includes it.
 *
 *   schema.c      keywords: types, objects, arrays, combinators, $ref
 *     ├─ schema_num.c  exact decimal bounds and multipleOf as digit regexes
 *     └─ schema_str.c  JSON string bodies: characters as json.dumps writes
 *                      them, lengths, ECMA patterns, formats
 *
 * Decimals (Dec): value = (neg ? -1 : 1) * digits * 10^exp, digits without
 * leading or trailing zeros ("" is zero, never negative). Exact for any
 * number text; owned (dec_free).
 */
#ifndef SGL_CONSTRAIN_SCHEMA_INT_H
#define SGL_CONSTRAIN_SCHEMA_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "constrain/constrain.h"

typedef struct {
    bool neg;
    char *digits;
    long exp;
} Dec;

int dec_parse(const char *text, Dec *out);   /* 0, -1 (bad text or no memory) */
void dec_free(Dec *d);
int dec_cmp(const Dec *a, const Dec *b);
bool dec_is_int(const Dec *d);

/* Bounds of a number: kind NONE, or inclusive / exclusive at `v`. */
typedef enum { NB_NONE, NB_INCL, NB_EXCL } NbKind;
typedef struct {
    NbKind lo_kind, hi_kind;
    Dec lo, hi;
    bool integer;           /* only integers (no fraction, no exponent) */
    int frac_max;           /* -1, or: at most this many fraction digits
                               before only zeros (multipleOf 10^-k) */
    long long int_step;     /* 0, or the integer part must be a multiple of
                               it (multipleOf 10^k and its divisors' kin) */
} NumSpec;

/* The number texts of spec as an expression; ERR_CONSTRAINT when none
 * exists (bounds cross), ERR_UNSUPPORTED with a message for a multipleOf
 * it cannot express. Writes the message to err. */
int sn_number(CgBuilder *b, const NumSpec *spec, CgExpr *out, char *err, size_t errcap);

/* x{min,max} (max CG_INF = none) for counts past the builder's repeat cap
 * (cap): blocks of k copies as a rule, counted by the caller, so
 * x{0,65535} costs ~2*sqrt(65535) states instead of 65535. x must always
 * match exactly one unit (a character, a ", item"). */
CgExpr sx_repeat(CgBuilder *b, CgExpr x, long min, long max, int cap, const char *name);

/* ---- strings ----------------------------------------------------------- */

/* One character of a JSON string body: code points in the ranges, each
 * written as json.dumps(ensure_ascii=False) writes it (raw UTF-8; `\"`,
 * `\\`, \b \f \n \r \t, \u00xx for other controls): one spelling per
 * character, so a set of decoded strings is a set of texts. */
CgExpr ss_chars(CgBuilder *b, const CgRange *r, int n, bool negate);
CgExpr ss_any_char(CgBuilder *b);
/* The JSON encoding (with quotes) of UTF-8 text s as json.dumps writes it. */
CgExpr ss_literal(CgBuilder *b, const char *s, size_t n);
/* Appends the JSON string encoding (quotes included) to a malloc'd buffer. */
char *ss_encode(const char *s, size_t n, size_t *outlen);

/* A string body (no quotes) constrained by length (max -1 = none), an
 * ECMA-262 pattern (NULL = none; unanchored: "contains") and a format
 * (NULL = none). 0, or ERR_UNSUPPORTED / ERR_CONSTRAINT / ERR_LIMIT with a
 * message naming the keyword. */
int ss_string(CgBuilder *b, long min_len, long max_len, const char *pattern, size_t pattern_len,
              const char *format, CgExpr *out, char *err, size_t errcap);

/* A pattern (unanchored, ECMA) as an expression over *decoded* text in
 * code points, for patternProperties keys: same as ss_string's body. */
int ss_pattern_body(CgBuilder *b, const char *pattern, size_t n, CgExpr *out, char *err,
                    size_t errcap);

/* Names (encoded string bodies) accepted by gs[i]'s start rule where
 * neg[i] is false and rejected where it is true, as right-linear rules in b
 * (n <= 16; each grammar call-free). *empty when there are none. */
int sk_region(CgBuilder *b, CGrammar *const *gs, const bool *neg, int n, const char *name, CgExpr *out,
              bool *empty, char *err, size_t errcap);

/* 1 when the decoded name matches the pattern (unanchored), 0 when not,
 * negative with a message on a bad pattern. *g (if not NULL) receives the
 * pattern's body grammar for sk_region. */
int ss_pattern_grammar(const char *pattern, size_t n, CGrammar **g, char *err, size_t errcap);
int ss_name_matches(const CGrammar *g, const char *s, size_t n);
/* Grammars of all encoded names and of exactly the given names. */
int ss_names_grammar(const char *const *names, const size_t *lens, int n, bool universe, CGrammar **g,
                     char *err, size_t errcap);
/* Whether the pattern matches every string (unanchored with a branch that
 * matches the empty string, e.g. ".*", ""). */
bool ss_pattern_universal(const char *pattern, size_t n);

/* Whether a format name is one this room enforces; *known_unenforced set
 * when it is a format the JSON Schema vocabulary defines but this room
 * does not enforce (the caller refuses it); unknown names are annotations. */
bool ss_format_known(const char *format, bool *known_unenforced);

#endif
