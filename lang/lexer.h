/*
 * lang/lexer.h — the tokenizer (lang/lexer.re, generated with re2c).
 *
 * The lexer turns a NUL-terminated source buffer into the token codes of the
 * Lemon grammar (TK_* from the generated parser.h). It owns the rules that
 * the grammar cannot see:
 *   - which newlines matter (a statement separator TK_NL, emitted only where
 *     a statement could end: not inside ( ) [ ] or ${ }, not after an
 *     operator, `,` or an open bracket, never twice, and dropped before `}`
 *     and `else`);
 *   - whether `(` / `[` is a call / index (written right after a name, a
 *     closing bracket or a string with no space: TK_LPAREN_CALL,
 *     TK_LBRACKET_INDEX) or starts a new expression (TK_LPAREN, TK_LBRACKET);
 *   - strings: a string without `${` is one TK_STRING; an interpolated one is
 *     TK_STR_HEAD expr (TK_STR_MID expr)* TK_STR_TAIL. Token text is the raw
 *     source between the delimiters (escapes validated here, resolved by the
 *     parser, which also applies the triple-quote dedent rule);
 *   - `grammar NAME { ... }`: the braces' content is one TK_GRAMMAR_BODY.
 *
 * The lexer does not allocate: token text points into the source buffer,
 * which must outlive it. It stops at the first error and keeps a message.
 */
#ifndef SGL_LANG_LEXER_H
#define SGL_LANG_LEXER_H

#include <stddef.h>
#include <stdint.h>

/* Flags of a string token. */
enum {
    LEX_STR_TRIPLE = 1,     /* """...""" */
    LEX_STR_RAW = 2,        /* r"..." or re"...": no escapes, no ${} */
    LEX_STR_REGEX = 4       /* re"..." */
};

/* The value Lemon carries for every token. */
typedef struct {
    const char *s;          /* token text (strings: raw content) */
    size_t n;
    int line, col;          /* 1-based position of the token's first byte */
    int64_t ival;           /* TK_INT */
    double fval;            /* TK_FLOAT */
    int flags;              /* LEX_STR_* for string tokens */
} LexToken;

enum { LEX_MAX_NEST = 256 };    /* brackets/strings open at once */

typedef struct {
    unsigned char kind;     /* a LexMode value (lexer.re) */
    unsigned char flags;    /* string modes: LEX_STR_* */
    int line, col;          /* where it was opened */
} LexFrame;

typedef struct {
    const char *src, *cur, *lim, *tok, *marker;
    const char *str_seg;    /* start of the string segment being scanned */
    int cond;               /* re2c start condition */
    const int *line_starts; /* byte offset of each line's first byte */
    int nlines;
    LexFrame stack[LEX_MAX_NEST];
    int depth;
    int prev;               /* the last token code handed out (0 at start) */
    const char *prev_end;   /* one past its last byte */
    int pending;            /* 1: a token was read ahead while deciding on a newline */
    int pending_code;
    LexToken pending_tok;
    const char *pending_end;
    int grammar_state;      /* 1 after `grammar`, 2 after `grammar NAME` */
    /* error */
    int failed;
    int err_line, err_col, err_at_eof;
    char err[160];
} Lexer;

/* src must be NUL-terminated at src[len]; line_starts has nlines entries
 * (see lex_line_starts). */
void lex_init(Lexer *lx, const char *src, size_t len, const int *line_starts, int nlines);

/* Count the lines of src and fill starts (malloc'd; caller frees). Returns
 * the number of lines, or -1 when out of memory. */
int lex_line_starts(const char *src, size_t len, int **starts);

/* The next token code (0 at end of input, -1 on a lexical error, with
 * lx->err* set). */
int lex_next(Lexer *lx, LexToken *tok);

/* Line and column of a byte of the source. */
void lex_position(const Lexer *lx, const char *p, int *line, int *col);

#endif
