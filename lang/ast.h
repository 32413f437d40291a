/*
 * lang/ast.h — the abstract syntax tree: the contract between the parser
 * (lang/parser.y, lang/lexer.re) and the compiler (compiler/).
 *
 * Ownership: every node, list and string of a tree lives in the tree's arena
 * (AstTree.arena). Nothing in a tree is freed on its own; ast_free(tree)
 * releases all of it at once. That keeps the Lemon actions simple and makes
 * a syntax error leak-free by construction.
 *
 * One node type serves every kind; the table below says which fields each
 * kind uses. Unused fields are zero/NULL.
 *
 *   kind            fields
 *   --------------  ---------------------------------------------------------
 *   AST_NIL/TRUE/FALSE
 *   AST_INT         ival
 *   AST_FLOAT       fval
 *   AST_STRING      str, str_len (bytes, escapes resolved, may hold NUL)
 *   AST_INTERP      list = parts, each an AST_STRING or any expression
 *                   (a `${expr}` part; its value is converted with str())
 *   AST_REGEX       str, str_len = the regex source between re"..."
 *                   (col of the node = column of the `r` of re"...")
 *   AST_IDENT       name
 *   AST_LIST        list = elements
 *   AST_MAP         list = AST_PAIR nodes
 *   AST_PAIR        a = key expression (bare keys become AST_STRING), b = value
 *   AST_BINARY      op (AST_OP_ADD..AST_OP_RANGE), a = lhs, b = rhs
 *   AST_UNARY       op (AST_OP_NEG or AST_OP_NOT), a = operand
 *   AST_AND/AST_OR  a, b (short-circuit)
 *   AST_COND        a = condition, b = then, c = else   (a ? b : c)
 *   AST_CALL        a = callee, list = AST_ARG nodes
 *   AST_ARG         name = NULL for positional or the argument name, a = value
 *   AST_INDEX       a = object, b = index
 *   AST_FIELD       a = object, name = field name
 *   AST_FN          name = NULL (lambda) or the name (declaration),
 *                   list = AST_PARAM nodes, a = body (AST_BLOCK)
 *   AST_PARAM       name, a = default expression or NULL
 *   AST_FORK        name = loop variable, a = iterable, b = body (AST_BLOCK)
 *                   (an expression: its value is the list of branch states)
 *
 *   AST_BLOCK       list = statements
 *   AST_EXPR_STMT   list = pieces (1 or more expressions, side by side on one
 *                   line; §4 append rule applies to each)
 *   AST_LET         name, a = value
 *   AST_ASSIGN      op = AST_OP_NONE for `=`, else ADD/SUB/MUL/DIV for the
 *                   compound forms; a = target (AST_IDENT, AST_INDEX or
 *                   AST_FIELD), b = value
 *   AST_IF          a = condition, b = then (AST_BLOCK), c = else (AST_BLOCK,
 *                   an AST_IF for `else if`, or NULL)
 *   AST_WHILE       a = condition, b = body
 *   AST_FOR         name = loop variable, a = iterable, b = body
 *   AST_BREAK, AST_CONTINUE
 *   AST_RETURN      a = value or NULL
 *   AST_ROLE        op = ROLE_SYSTEM/USER/ASSISTANT (base/role.h); a = body (AST_BLOCK)
 *                   for the block form, or NULL and list = pieces for the
 *                   one-line form (`user question`)
 *   AST_IMPORT      str = path as written, name = alias or NULL
 *   AST_GRAMMAR     name, str/str_len = the rule text between the braces,
 *                   verbatim; line/col = position of the `grammar` keyword,
 *                   body_line/body_col = position of the first byte of str
 *   AST_PROGRAM     list = top-level statements (AST_FN with a name, AST_LET,
 *                   AST_IMPORT, AST_GRAMMAR and any other statement)
 *
 * Positions: line and col are 1-based; col counts bytes from the start of the
 * line. For a binary node they are those of the operator; for a call, of the
 * opening parenthesis; otherwise of the first token of the construct.
 */
#ifndef SGL_LANG_AST_H
#define SGL_LANG_AST_H

#include <stddef.h>
#include <stdint.h>

#include "base/role.h"

typedef enum {
    AST_NIL, AST_TRUE, AST_FALSE, AST_INT, AST_FLOAT, AST_STRING, AST_INTERP,
    AST_REGEX, AST_IDENT, AST_LIST, AST_MAP, AST_PAIR, AST_BINARY, AST_UNARY,
    AST_AND, AST_OR, AST_COND, AST_CALL, AST_ARG, AST_INDEX, AST_FIELD,
    AST_FN, AST_PARAM, AST_FORK,
    AST_BLOCK, AST_EXPR_STMT, AST_LET, AST_ASSIGN, AST_IF, AST_WHILE, AST_FOR,
    AST_BREAK, AST_CONTINUE, AST_RETURN, AST_ROLE, AST_IMPORT, AST_GRAMMAR,
    AST_PROGRAM,
    AST_KIND_COUNT
} AstKind;

typedef enum {
    AST_OP_NONE,
    AST_OP_ADD, AST_OP_SUB, AST_OP_MUL, AST_OP_DIV, AST_OP_MOD,
    AST_OP_EQ, AST_OP_NE, AST_OP_LT, AST_OP_LE, AST_OP_GT, AST_OP_GE,
    AST_OP_IN, AST_OP_RANGE,
    AST_OP_NEG, AST_OP_NOT
} AstOp;


typedef struct AstNode AstNode;

typedef struct {
    AstNode **items;
    int len, cap;
} AstList;

struct AstNode {
    AstKind kind;
    int line, col;
    int op;                 /* AstOp or Role, per kind */
    int64_t ival;
    double fval;
    char *str;              /* NUL-terminated; str_len excludes the NUL */
    size_t str_len;
    char *name;             /* identifiers, parameter/field/function names */
    AstNode *a, *b, *c;
    AstList list;
    int body_line, body_col;
};

typedef struct AstArena AstArena;

typedef struct {
    AstArena *arena;
    AstNode *root;          /* AST_PROGRAM */
    char *file;             /* file name as given to the parser (arena-owned) */
} AstTree;

/* A diagnostic: where and what. Owned by whoever holds it; diag_clear frees. */
typedef struct {
    char *file;
    int line, col;          /* 1-based; 0 when not tied to a position */
    char *message;
    char *source_line;      /* the text of that line without its newline, or NULL */
    int at_eof;             /* the error is "unexpected end of input" (REPL uses it) */
} Diag;

/* Parse a whole source buffer. On success returns 0 and fills *out (free with
 * ast_free). On error returns -1, fills *err (free with diag_clear) and leaves
 * *out empty. `src` need not be NUL-terminated; the parser copies it. */
int parse_source(const char *file, const char *src, size_t len, AstTree *out, Diag *err);

void ast_free(AstTree *tree);

/* Arena helpers for the parser and for tools that build trees. */
AstNode *ast_new(AstTree *tree, AstKind kind, int line, int col);
void ast_push(AstTree *tree, AstList *list, AstNode *item);
char *ast_strdup(AstTree *tree, const char *s, size_t len);

const char *ast_kind_name(AstKind kind);

/* Diagnostics. diag_set formats the message; diag_format writes
 *   file:line:col: error: message
 *   <source line>
 *   <spaces>^
 * into a malloc'd string (caller frees). */
void diag_set(Diag *d, const char *file, int line, int col, const char *src, size_t src_len,
              const char *fmt, ...) __attribute__((format(printf, 7, 8)));
char *diag_format(const Diag *d);
void diag_clear(Diag *d);

#endif
