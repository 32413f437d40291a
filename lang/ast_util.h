/*
 * lang/ast_util.h — additions to the AST contract (lang/ast.h) that the
 * parser and tests use; implemented in lang/ast.c.
 */
#ifndef SGL_LANG_AST_UTIL_H
#define SGL_LANG_AST_UTIL_H

#include <stdio.h>

#include "lang/ast.h"

/* Whether an arena allocation of this tree has failed (out of memory). */
int ast_failed(const AstTree *tree);

/* Write a node as a one-line S-expression, e.g.
 *   (program (fn main (block (expr-stmt "hi" (call gen "x")))))
 * Strings are quoted with C escapes; ints and floats are written as numbers;
 * identifiers bare. Meant for tests and debugging (`sgl` may expose it).
 * Returns a malloc'd string (caller frees) or NULL when out of memory. */
char *ast_dump(const AstNode *node);

#endif
