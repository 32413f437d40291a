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
 * regex_syntax.h, constrain/grammar_syntax.h), running anything.
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

/* ---- sessions: a program that grows one chunk of top-level code at a time
 * (the REPL). Module 0 is the session's; each chunk may use every name an
 * earlier chunk declared and adds its own (a name declared again keeps its
 * slot). A chunk compiles to a new init function of module 0, run on the
 * live module instance by the VM (vm_session_run). */
/* A program with an empty module 0 named `file` (messages; imports resolve
 * against the working directory). NULL on no memory. */
Program *cmp_session_program(const char *file);
/* Compiles src as one more chunk of p's module 0. 0 and *init (the chunk's
 * top-level function, owned by p) and *first_proto (the index of the first
 * function this chunk added: the VM links those); or -1 and *err, with p as
 * it was before the call. *incomplete is 1 when the error is only that the
 * source ended inside a statement (the REPL then reads another line). */
int cmp_compile_more(const CmpOptions *opt, Program *p, const char *src, size_t len, Proto **init,
                     int *first_proto, char **err, int *incomplete);

/* Compile an already parsed tree as module 0 (tests build trees by hand). */
int cmp_compile_tree(const CmpOptions *opt, const AstTree *tree, const char *src, size_t len,
                     Program **out, char **err);

#endif
