/*
 * compiler/compile.h — AST to bytecode (prefix cmp_).
 *
 * Compiles one source file and, recursively, every file it imports into one
 * Program (the compiled file is module 0). Names resolve, innermost first,
 * to: a local, a captured variable of an enclosing function (upvalue), a
 * top-level name of the module (global slot; all of a module's top-level
 * names are known before its code is compiled, so functions may refer to
 * names defined further down), a built-in (a constant the VM resolves), and
 * finally `state`, the current prompt state. Anything else is a compile
 * error, reported at the name.
 *
 * Does not own: parsing (lang/), regex and grammar syntax (compiler/
 * regex_syntax.h, compiler/grammar_syntax.h), running anything.
 */
#ifndef SGL_COMPILER_COMPILE_H
#define SGL_COMPILER_COMPILE_H

#include <stddef.h>

#include "compiler/chunk.h"
#include "lang/ast.h"

typedef struct {
    const char *stdlib_dir;          /* where `import "std/x"` looks (x.sgl); NULL: "stdlib" */
    const char *const *builtins;     /* names of the built-in functions */
    int nbuiltins;
} CmpOptions;

/* Compile a source buffer named `file` (used in messages and to resolve
 * relative imports). Returns 0 and *out, or -1 and *err: a malloc'd message
 * "file:line:col: error: ..." with the source line and a caret. */
int cmp_compile_source(const CmpOptions *opt, const char *file, const char *src, size_t len,
                       Program **out, char **err);
/* Same for a file on disk; a missing or unreadable file is an error whose
 * message has no position. *io_error is set to 1 in that case (else 0). */
int cmp_compile_file(const CmpOptions *opt, const char *path, Program **out, char **err,
                     int *io_error);

/* Compile an already parsed tree as module 0 (tests build trees by hand). */
int cmp_compile_tree(const CmpOptions *opt, const AstTree *tree, const char *src, size_t len,
                     Program **out, char **err);

#endif
