/*
 * lang/parse.h — the parser's internals, shared by the driver (lang/parse.c)
 * and the Lemon grammar (lang/parser.y). Not for use outside lang/: the
 * public entry point is parse_source in lang/ast.h.
 *
 * Grammar actions only call the parse_* helpers below; the helpers allocate
 * from the tree's arena and, if it runs dry, jump back to parse_source
 * (which reports "out of memory"), so actions never see NULL.
 */
#ifndef SGL_LANG_PARSE_H
#define SGL_LANG_PARSE_H

#include <setjmp.h>
#include <stdio.h>

#include "lang/ast.h"
#include "lang/lexer.h"

typedef struct {
    AstTree *tree;
    const char *file;
    const char *src;        /* the arena copy, NUL-terminated */
    size_t len;
    Diag *err;
    int failed;             /* an error is in *err; stop feeding tokens */
    int prev_code;          /* the token before the one being parsed */
    LexToken prev_tok;
    LexToken last_tok;      /* the token being parsed */
    int last_code;
    jmp_buf oom;
} ParseState;

/* Lemon's entry points (generated from lang/parser.y with %name parse_lemon). */
void *parse_lemonAlloc(void *(*alloc)(size_t), ParseState *ps);
void parse_lemon(void *parser, int code, LexToken tok);
void parse_lemonFree(void *parser, void (*dealloc)(void *));

/* Helpers for the grammar actions. */
AstNode *parse_node(ParseState *ps, AstKind kind, const LexToken *at);
AstNode *parse_node_at(ParseState *ps, AstKind kind, int line, int col);
void parse_push(ParseState *ps, AstNode *list_owner, AstNode *item);
char *parse_text(ParseState *ps, const LexToken *t);    /* token text, arena copy */
AstNode *parse_binary(ParseState *ps, int op, AstNode *a, const LexToken *at, AstNode *b);
AstNode *parse_string(ParseState *ps, const LexToken *t);      /* TK_STRING / TK_REGEX */
AstNode *parse_interp_begin(ParseState *ps, const LexToken *head, AstNode *expr);
void parse_interp_add(ParseState *ps, AstNode *interp, const LexToken *seg, AstNode *expr);
AstNode *parse_interp_end(ParseState *ps, AstNode *interp, const LexToken *tail);
/* Attach a call/index/field suffix (built with a = NULL) to its object. */
AstNode *parse_suffix(ParseState *ps, AstNode *object, AstNode *suffix);
AstNode *parse_assign(ParseState *ps, int op, AstNode *target, AstNode *value);
/* Position of the first token of an expression. */
void parse_start_of(const AstNode *n, int *line, int *col);
void parse_error(ParseState *ps, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void parse_syntax_error(ParseState *ps, int code, const LexToken *t);

#endif
