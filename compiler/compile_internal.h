/*
 * compiler/compile_internal.h — what the code generator (compile.c) and
 * the loader (loader.c) share: one compilation (Comp), the source file
 * being compiled (ModCtx), and the calls between them. Not for other rooms.
 *
 *   loader.c   entry points, reading files, resolving import specs,
 *              loading a module (parse, then compile_tree), sessions
 *   compile.c  one module's tree to bytecode; its pass 1 asks the loader
 *              for every import (import_module)
 *
 * Errors longjmp to the entry point's setjmp in c->jb (error_mc).
 */
#ifndef SGL_COMPILER_COMPILE_INTERNAL_H
#define SGL_COMPILER_COMPILE_INTERNAL_H

#include <setjmp.h>

#include "compiler/compile.h"

#pragma GCC visibility push(hidden)

#define MAX_IMPORT_DEPTH 64

typedef struct Comp Comp;

/* One source file being compiled. */
typedef struct {
    const char *file;     /* display name */
    const char *path;     /* resolved path (imports resolve relative to it) */
    const char *src;
    size_t len;
    int mod;
} ModCtx;

/* Parse trees and sources kept alive while their module compiles. */
typedef struct {
    AstTree tree;
    char *src;
    int has_tree;
} Loaded;

struct Comp {
    const CmpOptions *opt;
    Program *prog;
    jmp_buf jb;
    Diag diag;
    int has_diag;
    char *plain_err;      /* an error without a position (file not found) */
    int io_error;
    Loaded loaded[MAX_IMPORT_DEPTH + 1];
    int nloaded;
};

/* ---- compile.c ---- */
/* Declares the module's top-level names (loading its imports), then
 * compiles its top level as a new init function of module mc->mod. */
void compile_tree(Comp *c, ModCtx *mc, AstNode *root);
/* A compile error at line:col of mc's source; does not return. */
void error_mc(Comp *c, const ModCtx *mc, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6), noreturn));

/* ---- loader.c ---- */
/* Loads and compiles the file an import statement names; its module index. */
int import_module(Comp *c, const ModCtx *mc, const AstNode *s);
/* The name an import binds without `as` (the file's base name) in buf, or
 * NULL when that is not a name. */
const char *import_default_name(const char *spec, char *buf, size_t cap);

#pragma GCC visibility pop

#endif
