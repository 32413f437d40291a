/*
 * constrain/grammar_syntax.h — the EBNF of `grammar` blocks and `grammar:`
 * strings (LANGUAGE.md §9: llama.cpp's GBNF) and of SGLang's `ebnf` field
 * (XGrammar's dialect): parser, checker, and the tree that the front end
 * (constrain/front.c) lowers to the builder.
 *
 * Syntax:
 *   grammar  := rule*
 *   rule     := NAME '::=' alts          NAME = [A-Za-z0-9_-]+
 *   alts     := seq ('|' seq)*
 *   seq      := (term quant?)*           (may be empty: `("a" | )`)
 *   term     := NAME | "text" | 'text' | [class] | '(' alts ')' | '.'
 *   quant    := '*' | '+' | '?' | '{m}' | '{m,}' | '{m,n}' | '{,n}'
 * Whitespace, line breaks and `#` comments may stand between any two
 * tokens, so rules span lines freely: a rule ends where the next `NAME ::=`
 * begins. Literals take the escapes \n \t \r \f \v \a \b \e \0 \\ \" \'
 * \[ \] \- \/ \? \xHH \uHHHH \u{H..} \UHHHHHHHH. Classes `[...]`: ranges
 * `a-z`, `^` negation, the same escapes, regex punctuation escaped, and
 * \d \w \s \D \W \S (ASCII, as in regexes); `[^]` is any character, `[]` an
 * error. `.` is any character, line breaks included (llama.cpp). Token
 * references (`<[id]>`, `<tok>`) are refused as unsupported. Every referenced rule must be defined, no
 * rule twice, and `root` is the start rule. Counts are at most
 * RX_MAX_REPEAT; parentheses nest at most RX_MAX_DEPTH deep.
 *
 * Tree:
 *   GB_ALT     kids[nkids] (>= 2)
 *   GB_SEQ     kids[nkids] (0 = the empty string, or >= 2)
 *   GB_STR     str/len: the literal's UTF-8 bytes (escapes resolved)
 *   GB_CLASS   ranges/nranges, as RX_CLASS (sorted, disjoint, scalar values)
 *   GB_REF     rule: index into GbnfGrammar.rules
 *   GB_REPEAT  sub, min..max (max = RX_INF for no bound)
 * Positions: line/col (1-based; col in bytes) within the grammar text. For
 * a `grammar` block, line 1 col c of the text is the AST_GRAMMAR node's
 * body_line/body_col + c - 1; line n > 1 is body_line + n - 1.
 *
 * Ownership: a GbnfGrammar owns every node, name and string; gbnf_free
 * releases them.
 */
#ifndef SGL_CONSTRAIN_GRAMMAR_SYNTAX_H
#define SGL_CONSTRAIN_GRAMMAR_SYNTAX_H

#include <stddef.h>

#include "constrain/regex_syntax.h"

typedef enum { GB_ALT, GB_SEQ, GB_STR, GB_CLASS, GB_REF, GB_REPEAT } GbKind;

/* GB_GBNF: llama.cpp's GBNF (and `grammar` blocks). GB_EBNF: XGrammar's
 * EBNF (SGLang's `ebnf` field): names may contain '.', `\x` takes any
 * number of hex digits; its rule options `name[...]`, macros `Name(...)`
 * and lookahead `(= ...)` are refused as unsupported. */
typedef enum { GB_GBNF, GB_EBNF } GbDialect;

typedef struct GbNode GbNode;
struct GbNode {
    GbKind kind;
    int line, col;
    char *str;              /* GB_STR (NUL-terminated too); GB_REF: the name */
    size_t len;
    RxRange *ranges;        /* GB_CLASS */
    int nranges;
    int rule;               /* GB_REF */
    GbNode **kids;          /* GB_ALT, GB_SEQ */
    int nkids;
    GbNode *sub;            /* GB_REPEAT */
    int min, max;
    GbNode *next_alloc;     /* internal: allocation list */
};

typedef struct {
    char *name;
    GbNode *body;
    int line, col;          /* of the name */
} GbRule;

typedef struct {
    GbRule *rules;          /* in source order */
    int nrules;
    int root;               /* index of `root` */
    GbNode *nodes;          /* internal: allocation list */
} GbnfGrammar;

/* Parse and check (GB_GBNF). Returns 0 and fills *out (free with
 * gbnf_free), or -1 with *line and *col (1-based, in src) and a message in
 * msg (msgcap bytes); *out is then empty. */
int gbnf_parse(const char *src, size_t len, GbnfGrammar *out, int *line, int *col, char *msg,
               size_t msgcap);

/* As gbnf_parse, in a dialect; on failure *code (if not NULL) is
 * ERR_CONSTRAINT (invalid text) or ERR_UNSUPPORTED (valid syntax of the
 * dialect that is not enforced; the message names it). */
int gbnf_parse_dialect(const char *src, size_t len, GbDialect dialect, GbnfGrammar *out, int *line,
                       int *col, int *code, char *msg, size_t msgcap);

void gbnf_free(GbnfGrammar *g);

/* Only check: 0 when valid, else -1 as gbnf_parse. */
int gbnf_check(const char *src, size_t len, int *line, int *col, char *msg, size_t msgcap);

/* The rules as S-expressions separated by spaces, e.g.
 *   (root (seq (ref a) (rep 0 inf (str "x")))) (a (class '0'-'9'))
 * Malloc'd (caller frees); NULL when out of memory. */
char *gbnf_dump(const GbnfGrammar *g);

#endif
