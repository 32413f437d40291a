/*
 * constrain/regex_syntax.h — the constraint regex subset (LANGUAGE.md §9):
 * a parser from pattern text to a small regex AST, ready to be lowered to a
 * byte-level DFA. Not the PCRE2 syntax of the built-in regex functions (§10).
 *
 * Supported: literals (any UTF-8 text), `.`, classes `[a-z]` `[^...]`,
 * `\d \w \s \D \W \S` (ASCII: [0-9], [A-Za-z0-9_], [ \t\n\r\f\v]), escapes
 * (`\n \t \r \f \v \0`, `\xHH`, `\x{H..}`, `\u{H..}`, and `\` before any
 * ASCII punctuation), groups `( )` and `(?: )`, alternation `|`, quantifiers
 * `* + ? {m} {m,} {m,n} {,n}` (a trailing `?`, PCRE's lazy marker, is
 * accepted: it does not change which strings match). The pattern always
 * matches the whole output, so `^` at the very start and `$` at the very end
 * are accepted and mean nothing. A `{` that does not start a quantifier is
 * a literal, as in PCRE.
 *
 * Refused with a message: backreferences (`\1`, `\k<..>`), look-around
 * (`(?=` `(?!` `(?<=` `(?<!`), other `(?...)` syntax, `\b \B \A \z \Z`,
 * anchors elsewhere, possessive quantifiers, counts above RX_MAX_REPEAT,
 * groups nested deeper than RX_MAX_DEPTH, invalid UTF-8.
 *
 * The tree (every character is a Unicode scalar value; byte-level lowering
 * is the DFA builder's job):
 *
 *   RX_EMPTY    matches the empty string
 *   RX_CHAR     cp: one code point
 *   RX_CLASS    ranges[nranges]: sorted, disjoint, non-adjacent inclusive
 *               ranges of code points (negation and `.` already resolved
 *               against all scalar values, surrogates excluded; `.` is
 *               every code point but '\n')
 *   RX_CONCAT   kids[nkids] (nkids >= 2) in order
 *   RX_ALT      kids[nkids] (nkids >= 2), any of them
 *   RX_REPEAT   sub repeated min..max times (max = RX_INF for no bound)
 *   RX_GROUP    sub, capture index `group` (1-based, in order of the `(`);
 *               (?: ) groups leave no node
 *
 * Every node has `pos`: the 0-based byte offset in the pattern where its
 * construct starts. Ownership: an RxRegex owns all its nodes; rx_free
 * releases them.
 */
#ifndef SGL_CONSTRAIN_REGEX_SYNTAX_H
#define SGL_CONSTRAIN_REGEX_SYNTAX_H

#include <stddef.h>
#include <stdint.h>

enum { RX_MAX_REPEAT = 1000, RX_MAX_DEPTH = 100, RX_INF = -1 };

typedef enum { RX_EMPTY, RX_CHAR, RX_CLASS, RX_CONCAT, RX_ALT, RX_REPEAT, RX_GROUP } RxKind;

typedef struct {
    uint32_t lo, hi;        /* inclusive */
} RxRange;

typedef struct RxNode RxNode;
struct RxNode {
    RxKind kind;
    int pos;
    uint32_t cp;            /* RX_CHAR */
    RxRange *ranges;        /* RX_CLASS */
    int nranges;
    RxNode **kids;          /* RX_CONCAT, RX_ALT */
    int nkids;
    RxNode *sub;            /* RX_REPEAT, RX_GROUP */
    int min, max;           /* RX_REPEAT */
    int group;              /* RX_GROUP */
    RxNode *next_alloc;     /* internal: every node of the regex, for rx_free */
};

typedef struct {
    RxNode *root;
    int ngroups;
    RxNode *nodes;          /* internal: allocation list */
} RxRegex;

/* Parse a pattern. Returns 0 and fills *out (free with rx_free), or -1 with
 * *err_col = the 1-based byte column in the pattern where the problem is
 * and a message in msg (msgcap bytes, NUL-terminated); *out is then empty.
 * Out of memory is an error too ("out of memory", column 1). */
int rx_parse(const char *src, size_t len, RxRegex *out, int *err_col, char *msg, size_t msgcap);

void rx_free(RxRegex *re);

/* Only check: 0 when the pattern is valid, else -1 as rx_parse. */
int rx_check(const char *src, size_t len, int *err_col, char *msg, size_t msgcap);

/* The tree as an S-expression, for tests and --disasm: `(cat (char 'a') (rep
 * 0 inf (class 0x30-0x39)))`. Malloc'd (caller frees); NULL when out of
 * memory. */
char *rx_dump(const RxNode *node);

/* Pieces the grammar parser (grammar_syntax.c) shares with this one, so a
 * hex digit and a dumped class read the same in both. */

/* The value of one hex digit, or -1 when c is not one. */
int rx_hexval(int c);

/* A set of code points under construction, shared by both parsers'
 * classes. Start it zeroed; r is malloc'd (the owner frees it). */
typedef struct {
    RxRange *r;
    int n, cap;
} RxRangeSet;

/* Appends [lo, hi]. 0, or -1 when out of memory (the set is unchanged). */
int rx_set_add(RxRangeSet *set, uint32_t lo, uint32_t hi);

/* Sorts and merges the ranges, keeps only Unicode scalar values (cuts out
 * the surrogates and anything above U+10FFFF) and, when `negate`, takes
 * the complement within the scalar values: the RX_CLASS form. 0, or -1
 * when out of memory (the set is then as it was after sorting). */
int rx_set_finish(RxRangeSet *set, int negate);

/* A growing text for the dumps. Start it zeroed; p is malloc'd (the caller
 * frees it) and NUL-terminated once anything was put. After an out-of-memory
 * `failed` is set and later puts do nothing. */
typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} RxText;

void rx_text_put(RxText *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* nranges ranges as ` lo` or ` lo-hi` each: a printable ASCII code point as
 * 'c' unless it is in `quoted_as_number`, every other one as U+XXXX. */
void rx_text_ranges(RxText *t, const RxRange *ranges, int nranges, const char *quoted_as_number);

#endif
