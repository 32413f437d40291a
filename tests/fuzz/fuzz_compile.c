/*
 * tests/fuzz/fuzz_compile.c — libFuzzer target over the front end: the
 * lexer and parser (parse_source), the constraint regex and EBNF checkers on
 * every re"..." and grammar block the program holds, and the compiler
 * (cmp_compile_tree) on whatever parses. Everything allocated is freed, so
 * ASan's leak check covers the error paths too. What the compiler writes
 * must pass the bytecode verifier (sglc_verify): a program it refuses is
 * reported as a crash, since sgl could not load its own .sglc file.
 *
 * Build and run: `make fuzz` (FUZZ_SECONDS=N).
 * The input is also fed, as a pattern and as a grammar, straight to
 * rx_check/gbnf_check, so those parsers see arbitrary bytes and not only
 * what survives the lexer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar_syntax.h"
#include "constrain/regex_syntax.h"
#include "lang/ast.h"
#include "lang/ast_util.h"

#if __has_include("compiler/compile.h")
#include "compiler/compile.h"
#include "compiler/sglc.h"
#define FUZZ_COMPILER 1
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_constraints(const AstNode *n) {
    if (!n) return;
    int col, line;
    char msg[256];
    if (n->kind == AST_REGEX) {
        RxRegex re;
        if (rx_parse(n->str, n->str_len, &re, &col, msg, sizeof msg) == 0) {
            char *d = rx_dump(re.root);
            free(d);
            rx_free(&re);
        }
    } else if (n->kind == AST_GRAMMAR) {
        GbnfGrammar g;
        if (gbnf_parse(n->str, n->str_len, &g, &line, &col, msg, sizeof msg) == 0) {
            char *d = gbnf_dump(&g);
            free(d);
            gbnf_free(&g);
        }
    }
    check_constraints(n->a);
    check_constraints(n->b);
    check_constraints(n->c);
    for (int i = 0; i < n->list.len; i++) check_constraints(n->list.items[i]);
}

#ifdef FUZZ_COMPILER
static int has_import(const AstNode *n) {
    if (!n) return 0;
    if (n->kind == AST_IMPORT) return 1;
    if (has_import(n->a) || has_import(n->b) || has_import(n->c)) return 1;
    for (int i = 0; i < n->list.len; i++)
        if (has_import(n->list.items[i])) return 1;
    return 0;
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data;
    int line, col;
    char msg[256];
    rx_check(src, size, &col, msg, sizeof msg);
    gbnf_check(src, size, &line, &col, msg, sizeof msg);

    AstTree tree;
    Diag err = {0};
    if (parse_source("fuzz.sgl", src, size, &tree, &err) != 0) {
        char *text = diag_format(&err);
        free(text);
        diag_clear(&err);
        return 0;
    }
    char *dump = ast_dump(tree.root);
    free(dump);
    check_constraints(tree.root);
#ifdef FUZZ_COMPILER
    {
        /* imports would read files: compile only programs without them */
        if (!has_import(tree.root)) {
            static const char *const builtins[] = {"print", "len", "str", "gen", "select"};
            CmpOptions opt = {.stdlib_dir = "/nonexistent", .builtins = builtins,
                              .nbuiltins = (int)(sizeof builtins / sizeof builtins[0])};
            Program *prog = NULL;
            char *cerr = NULL;
            if (cmp_compile_tree(&opt, &tree, src, size, &prog, &cerr) == 0) {
                char verr[512];
                if (sglc_verify(prog, verr, sizeof verr) != 0) {
                    fprintf(stderr, "fuzz_compile: the compiler's output fails verification: %s\n", verr);
                    abort();
                }
                chunk_program_free(prog);
            }
            free(cerr);
        }
    }
#endif
    ast_free(&tree);
    return 0;
}
