/*
 * lang/parser.y — the SGL grammar (Lemon). LANGUAGE.md §2–9; the tree it
 * builds is described in lang/ast.h.
 *
 * Actions only call parse_* helpers (lang/parse.c). Every node lives in the
 * tree's arena, so nothing needs a destructor: after a syntax error the
 * driver stops feeding tokens and frees the whole arena.
 *
 * Layout of expressions, loosest first (one nonterminal per level, so the
 * grammar needs no precedence declarations):
 *   expr (a ? b : c) > or_e > and_e > not_e > cmp_e > range_e > add_e
 *   > mul_e > unary > postfix > primary
 * Comparisons and `..` do not chain (`a < b < c` is a syntax error).
 *
 * Statements are separated by NL or `;` (the lexer decides which newlines
 * are NL). An expression statement is one expression, or two or more
 * postfix expressions side by side (§4 "pieces"). A call's `(` and an
 * index's `[` are distinct tokens (the lexer gives LPAREN_CALL /
 * LBRACKET_INDEX only when they touch the preceding operand), so
 * `"a" (b)` is two pieces and `f(b)` one call.
 *
 * A `{` right after `system`/`user`/`assistant` opens a block: the one-line
 * role form cannot start with a map literal (postfix_nb excludes it).
 */

%name parse_lemon
%token_prefix TK_
%token_type {LexToken}
%default_type {AstNode *}
%extra_context {ParseState *ps}
%stack_size 1000
%start_symbol program

%include {
#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"
#include "lang/lexer.h"
#include "lang/parse.h"
}

%syntax_error {
    parse_syntax_error(ps, yymajor, &TOKEN);
}

%stack_overflow {
    parse_error(ps, ps->last_tok.line, ps->last_tok.col, "program nested too deeply");
}

/* The arena owns all values; nothing to release per symbol. */
%default_destructor { (void)ps; }

/* Token order fixes the codes in parser.h. */
%token NL SEMI LBRACE RBRACE LPAREN LPAREN_CALL RPAREN LBRACKET LBRACKET_INDEX RBRACKET
       COMMA COLON DOT DOTDOT QUESTION ASSIGN PLUS_ASSIGN MINUS_ASSIGN STAR_ASSIGN
       SLASH_ASSIGN PLUS MINUS STAR SLASH PERCENT EQ NE LT LE GT GE.
%token IDENT INT FLOAT STRING REGEX STR_HEAD STR_MID STR_TAIL GRAMMAR_BODY.
%token FN LET IF ELSE FOR IN WHILE BREAK CONTINUE RETURN FORK IMPORT AS TRUE FALSE NIL
       AND OR NOT SYSTEM USER ASSISTANT GRAMMAR.

/* ---- program and statements --------------------------------------------- */

program ::= stmts(L). {
    L->kind = AST_PROGRAM;
    L->line = 1;
    L->col = 1;
    ps->tree->root = L;
}

stmts(A) ::= opt_stmt(S). {
    A = parse_node_at(ps, AST_BLOCK, 0, 0);
    if (S) parse_push(ps, A, S);
}
stmts(A) ::= stmts(B) sep opt_stmt(S). {
    A = B;
    if (S) parse_push(ps, A, S);
}

sep ::= NL.
sep ::= SEMI.

opt_stmt(A) ::= . { A = NULL; }
opt_stmt(A) ::= stmt(S). { A = S; }

block(A) ::= LBRACE(L) stmts(B) RBRACE. {
    A = B;
    A->line = L.line;
    A->col = L.col;
}

stmt(A) ::= expr(E). {
    int line, col;
    parse_start_of(E, &line, &col);
    A = parse_node_at(ps, AST_EXPR_STMT, line, col);
    parse_push(ps, A, E);
}
stmt(A) ::= pieces(P). { A = P; }

pieces(A) ::= postfix(X) postfix(Y). {
    int line, col;
    parse_start_of(X, &line, &col);
    A = parse_node_at(ps, AST_EXPR_STMT, line, col);
    parse_push(ps, A, X);
    parse_push(ps, A, Y);
}
pieces(A) ::= pieces(B) postfix(Y). { A = B; parse_push(ps, A, Y); }

stmt(A) ::= LET(K) IDENT(N) ASSIGN expr(E). {
    A = parse_node(ps, AST_LET, &K);
    A->name = parse_text(ps, &N);
    A->a = E;
}

stmt(A) ::= postfix(T) ASSIGN expr(V).       { A = parse_assign(ps, AST_OP_NONE, T, V); }
stmt(A) ::= postfix(T) PLUS_ASSIGN expr(V).  { A = parse_assign(ps, AST_OP_ADD, T, V); }
stmt(A) ::= postfix(T) MINUS_ASSIGN expr(V). { A = parse_assign(ps, AST_OP_SUB, T, V); }
stmt(A) ::= postfix(T) STAR_ASSIGN expr(V).  { A = parse_assign(ps, AST_OP_MUL, T, V); }
stmt(A) ::= postfix(T) SLASH_ASSIGN expr(V). { A = parse_assign(ps, AST_OP_DIV, T, V); }

stmt(A) ::= if_stmt(I). { A = I; }

if_stmt(A) ::= IF(K) expr(C) block(T) else_part(E). {
    A = parse_node(ps, AST_IF, &K);
    A->a = C;
    A->b = T;
    A->c = E;
}
else_part(A) ::= . { A = NULL; }
else_part(A) ::= ELSE block(B). { A = B; }
else_part(A) ::= ELSE if_stmt(I). { A = I; }

stmt(A) ::= WHILE(K) expr(C) block(B). {
    A = parse_node(ps, AST_WHILE, &K);
    A->a = C;
    A->b = B;
}
stmt(A) ::= FOR(K) IDENT(N) IN expr(E) block(B). {
    A = parse_node(ps, AST_FOR, &K);
    A->name = parse_text(ps, &N);
    A->a = E;
    A->b = B;
}
stmt(A) ::= BREAK(K).    { A = parse_node(ps, AST_BREAK, &K); }
stmt(A) ::= CONTINUE(K). { A = parse_node(ps, AST_CONTINUE, &K); }
stmt(A) ::= RETURN(K). { A = parse_node(ps, AST_RETURN, &K); }
stmt(A) ::= RETURN(K) expr(E). {
    A = parse_node(ps, AST_RETURN, &K);
    A->a = E;
}

stmt(A) ::= FN(K) IDENT(N) lparen params(P) RPAREN block(B). {
    A = P;
    A->line = K.line;
    A->col = K.col;
    A->name = parse_text(ps, &N);
    A->a = B;
}

lparen ::= LPAREN.
lparen ::= LPAREN_CALL.

/* params: an AST_FN node collecting AST_PARAMs */
params(A) ::= . { A = parse_node_at(ps, AST_FN, 0, 0); }
params(A) ::= param_list(L) opt_comma. { A = L; }
param_list(A) ::= param(P). {
    A = parse_node_at(ps, AST_FN, 0, 0);
    parse_push(ps, A, P);
}
param_list(A) ::= param_list(B) COMMA param(P). { A = B; parse_push(ps, A, P); }
param(A) ::= IDENT(N). {
    A = parse_node(ps, AST_PARAM, &N);
    A->name = parse_text(ps, &N);
}
param(A) ::= IDENT(N) ASSIGN expr(E). {
    A = parse_node(ps, AST_PARAM, &N);
    A->name = parse_text(ps, &N);
    A->a = E;
}

opt_comma ::= .
opt_comma ::= COMMA.

stmt(A) ::= role(R). { A = R; }
role(A) ::= role_kw(R) block(B). { A = R; A->a = B; }
role(A) ::= role_kw(R) role_pieces(P). { A = R; A->list = P->list; }
role_kw(A) ::= SYSTEM(K).    { A = parse_node(ps, AST_ROLE, &K); A->op = ROLE_SYSTEM; }
role_kw(A) ::= USER(K).      { A = parse_node(ps, AST_ROLE, &K); A->op = ROLE_USER; }
role_kw(A) ::= ASSISTANT(K). { A = parse_node(ps, AST_ROLE, &K); A->op = ROLE_ASSISTANT; }
role_pieces(A) ::= postfix_nb(X). {
    A = parse_node_at(ps, AST_EXPR_STMT, 0, 0);
    parse_push(ps, A, X);
}
role_pieces(A) ::= role_pieces(B) postfix(X). { A = B; parse_push(ps, A, X); }

stmt(A) ::= IMPORT(K) STRING(S). {
    A = parse_node(ps, AST_IMPORT, &K);
    AstNode *s = parse_string(ps, &S);
    A->str = s->str;
    A->str_len = s->str_len;
}
stmt(A) ::= IMPORT(K) STRING(S) AS IDENT(N). {
    A = parse_node(ps, AST_IMPORT, &K);
    AstNode *s = parse_string(ps, &S);
    A->str = s->str;
    A->str_len = s->str_len;
    A->name = parse_text(ps, &N);
}

stmt(A) ::= GRAMMAR(K) IDENT(N) GRAMMAR_BODY(B). {
    A = parse_node(ps, AST_GRAMMAR, &K);
    A->name = parse_text(ps, &N);
    A->str = parse_text(ps, &B);
    A->str_len = B.n;
    A->body_line = B.line;
    A->body_col = B.col;
}

/* ---- expressions ---------------------------------------------------------- */

expr(A) ::= or_e(X). { A = X; }
expr(A) ::= or_e(C) QUESTION expr(T) COLON expr(E). {
    int line, col;
    parse_start_of(C, &line, &col);
    A = parse_node_at(ps, AST_COND, line, col);
    A->a = C;
    A->b = T;
    A->c = E;
}

or_e(A) ::= and_e(X). { A = X; }
or_e(A) ::= or_e(X) OR(O) and_e(Y). {
    A = parse_node(ps, AST_OR, &O);
    A->a = X;
    A->b = Y;
}
and_e(A) ::= not_e(X). { A = X; }
and_e(A) ::= and_e(X) AND(O) not_e(Y). {
    A = parse_node(ps, AST_AND, &O);
    A->a = X;
    A->b = Y;
}
not_e(A) ::= cmp_e(X). { A = X; }
not_e(A) ::= NOT(O) not_e(X). {
    A = parse_node(ps, AST_UNARY, &O);
    A->op = AST_OP_NOT;
    A->a = X;
}

cmp_e(A) ::= range_e(X). { A = X; }
cmp_e(A) ::= range_e(X) EQ(O) range_e(Y). { A = parse_binary(ps, AST_OP_EQ, X, &O, Y); }
cmp_e(A) ::= range_e(X) NE(O) range_e(Y). { A = parse_binary(ps, AST_OP_NE, X, &O, Y); }
cmp_e(A) ::= range_e(X) LT(O) range_e(Y). { A = parse_binary(ps, AST_OP_LT, X, &O, Y); }
cmp_e(A) ::= range_e(X) LE(O) range_e(Y). { A = parse_binary(ps, AST_OP_LE, X, &O, Y); }
cmp_e(A) ::= range_e(X) GT(O) range_e(Y). { A = parse_binary(ps, AST_OP_GT, X, &O, Y); }
cmp_e(A) ::= range_e(X) GE(O) range_e(Y). { A = parse_binary(ps, AST_OP_GE, X, &O, Y); }
cmp_e(A) ::= range_e(X) IN(O) range_e(Y). { A = parse_binary(ps, AST_OP_IN, X, &O, Y); }

range_e(A) ::= add_e(X). { A = X; }
range_e(A) ::= add_e(X) DOTDOT(O) add_e(Y). { A = parse_binary(ps, AST_OP_RANGE, X, &O, Y); }

add_e(A) ::= mul_e(X). { A = X; }
add_e(A) ::= add_e(X) PLUS(O) mul_e(Y).  { A = parse_binary(ps, AST_OP_ADD, X, &O, Y); }
add_e(A) ::= add_e(X) MINUS(O) mul_e(Y). { A = parse_binary(ps, AST_OP_SUB, X, &O, Y); }

mul_e(A) ::= unary(X). { A = X; }
mul_e(A) ::= mul_e(X) STAR(O) unary(Y).    { A = parse_binary(ps, AST_OP_MUL, X, &O, Y); }
mul_e(A) ::= mul_e(X) SLASH(O) unary(Y).   { A = parse_binary(ps, AST_OP_DIV, X, &O, Y); }
mul_e(A) ::= mul_e(X) PERCENT(O) unary(Y). { A = parse_binary(ps, AST_OP_MOD, X, &O, Y); }

unary(A) ::= postfix(X). { A = X; }
unary(A) ::= MINUS(O) unary(X). {
    A = parse_node(ps, AST_UNARY, &O);
    A->op = AST_OP_NEG;
    A->a = X;
}

/* postfix_nb: a postfix expression that does not start with a map literal;
 * postfix_map: one that does. */
postfix(A) ::= postfix_nb(X). { A = X; }
postfix(A) ::= postfix_map(X). { A = X; }
postfix_nb(A) ::= primary(X). { A = X; }
postfix_nb(A) ::= postfix_nb(X) suffix(S). { A = parse_suffix(ps, X, S); }
postfix_map(A) ::= map(X). { A = X; }
postfix_map(A) ::= postfix_map(X) suffix(S). { A = parse_suffix(ps, X, S); }

suffix(A) ::= LPAREN_CALL(L) args(G) RPAREN. {
    A = G;
    A->line = L.line;
    A->col = L.col;
}
suffix(A) ::= LBRACKET_INDEX(L) expr(I) RBRACKET. {
    A = parse_node(ps, AST_INDEX, &L);
    A->b = I;
}
suffix(A) ::= DOT(D) IDENT(N). {
    A = parse_node(ps, AST_FIELD, &D);
    A->name = parse_text(ps, &N);
}

/* args: an AST_CALL node collecting AST_ARGs */
args(A) ::= . { A = parse_node_at(ps, AST_CALL, 0, 0); }
args(A) ::= arg_list(L) opt_comma. { A = L; }
arg_list(A) ::= arg(X). {
    A = parse_node_at(ps, AST_CALL, 0, 0);
    parse_push(ps, A, X);
}
arg_list(A) ::= arg_list(B) COMMA arg(X). { A = B; parse_push(ps, A, X); }
arg(A) ::= expr(E). {
    int line, col;
    parse_start_of(E, &line, &col);
    A = parse_node_at(ps, AST_ARG, line, col);
    A->a = E;
}
arg(A) ::= IDENT(N) COLON expr(E). {
    A = parse_node(ps, AST_ARG, &N);
    A->name = parse_text(ps, &N);
    A->a = E;
}
/* Keywords are fine as argument names and bare map keys (`grammar: g`). */
arg(A) ::= keyword(N) COLON expr(E). {
    A = parse_node(ps, AST_ARG, &N);
    A->name = parse_text(ps, &N);
    A->a = E;
}

%type keyword {LexToken}
keyword(A) ::= FN(T).        { A = T; }
keyword(A) ::= LET(T).       { A = T; }
keyword(A) ::= IF(T).        { A = T; }
keyword(A) ::= ELSE(T).      { A = T; }
keyword(A) ::= FOR(T).       { A = T; }
keyword(A) ::= IN(T).        { A = T; }
keyword(A) ::= WHILE(T).     { A = T; }
keyword(A) ::= BREAK(T).     { A = T; }
keyword(A) ::= CONTINUE(T).  { A = T; }
keyword(A) ::= RETURN(T).    { A = T; }
keyword(A) ::= FORK(T).      { A = T; }
keyword(A) ::= IMPORT(T).    { A = T; }
keyword(A) ::= AS(T).        { A = T; }
keyword(A) ::= AND(T).       { A = T; }
keyword(A) ::= OR(T).        { A = T; }
keyword(A) ::= NOT(T).       { A = T; }
keyword(A) ::= SYSTEM(T).    { A = T; }
keyword(A) ::= USER(T).      { A = T; }
keyword(A) ::= ASSISTANT(T). { A = T; }
keyword(A) ::= GRAMMAR(T).   { A = T; }

primary(A) ::= INT(T). { A = parse_node(ps, AST_INT, &T); A->ival = T.ival; }
primary(A) ::= FLOAT(T). { A = parse_node(ps, AST_FLOAT, &T); A->fval = T.fval; }
primary(A) ::= TRUE(T).  { A = parse_node(ps, AST_TRUE, &T); }
primary(A) ::= FALSE(T). { A = parse_node(ps, AST_FALSE, &T); }
primary(A) ::= NIL(T).   { A = parse_node(ps, AST_NIL, &T); }
primary(A) ::= IDENT(T). { A = parse_node(ps, AST_IDENT, &T); A->name = parse_text(ps, &T); }
primary(A) ::= string(S). { A = S; }
primary(A) ::= REGEX(T). { A = parse_string(ps, &T); }
primary(A) ::= LPAREN expr(E) RPAREN. { A = E; }
primary(A) ::= LBRACKET(L) elems(E) RBRACKET. {
    A = E;
    A->line = L.line;
    A->col = L.col;
}
primary(A) ::= FN(K) lparen params(P) RPAREN block(B). {
    A = P;
    A->line = K.line;
    A->col = K.col;
    A->a = B;
}
primary(A) ::= FORK(K) IDENT(N) IN expr(E) block(B). {
    A = parse_node(ps, AST_FORK, &K);
    A->name = parse_text(ps, &N);
    A->a = E;
    A->b = B;
}

string(A) ::= STRING(T). { A = parse_string(ps, &T); }
string(A) ::= interp(I) STR_TAIL(T). { A = parse_interp_end(ps, I, &T); }
interp(A) ::= STR_HEAD(H) expr(E). { A = parse_interp_begin(ps, &H, E); }
interp(A) ::= interp(B) STR_MID(M) expr(E). { A = B; parse_interp_add(ps, A, &M, E); }

/* elems: an AST_LIST node */
elems(A) ::= . { A = parse_node_at(ps, AST_LIST, 0, 0); }
elems(A) ::= elem_list(L) opt_comma. { A = L; }
elem_list(A) ::= expr(E). {
    A = parse_node_at(ps, AST_LIST, 0, 0);
    parse_push(ps, A, E);
}
elem_list(A) ::= elem_list(B) COMMA expr(E). { A = B; parse_push(ps, A, E); }

map(A) ::= LBRACE(L) pairs(P) RBRACE. {
    A = P;
    A->line = L.line;
    A->col = L.col;
}
pairs(A) ::= . { A = parse_node_at(ps, AST_MAP, 0, 0); }
pairs(A) ::= pair_list(L) opt_comma. { A = L; }
pair_list(A) ::= pair(P). {
    A = parse_node_at(ps, AST_MAP, 0, 0);
    parse_push(ps, A, P);
}
pair_list(A) ::= pair_list(B) COMMA pair(P). { A = B; parse_push(ps, A, P); }
pair(A) ::= map_key(K) COLON expr(V). {
    A = parse_node_at(ps, AST_PAIR, K->line, K->col);
    A->a = K;
    A->b = V;
}

/* Keys: a bare name is a string; otherwise a literal or a parenthesised
 * expression ({(k): v} uses the value of k). */
map_key(A) ::= IDENT(T). {
    A = parse_node(ps, AST_STRING, &T);
    A->str = parse_text(ps, &T);
    A->str_len = T.n;
}
map_key(A) ::= keyword(T). {
    A = parse_node(ps, AST_STRING, &T);
    A->str = parse_text(ps, &T);
    A->str_len = T.n;
}
map_key(A) ::= string(S). { A = S; }
map_key(A) ::= INT(T). { A = parse_node(ps, AST_INT, &T); A->ival = T.ival; }
map_key(A) ::= FLOAT(T). { A = parse_node(ps, AST_FLOAT, &T); A->fval = T.fval; }
map_key(A) ::= TRUE(T).  { A = parse_node(ps, AST_TRUE, &T); }
map_key(A) ::= FALSE(T). { A = parse_node(ps, AST_FALSE, &T); }
map_key(A) ::= NIL(T).   { A = parse_node(ps, AST_NIL, &T); }
map_key(A) ::= LPAREN(L) expr(E) RPAREN. {
    A = E;
    (void)L;
}
