/*
 * compiler/chunk.h — compiled programs: function prototypes (bytecode,
 * constants, debug positions) and modules. The .sglc file format is
 * compiler/sglc.h, the listing compiler/disasm.h.
 *
 * Ownership:
 *
 *   Program ──owns──► protos[] ──► Proto ──► code, lines, consts, upvals,
 *      │                             │         param_names, children (borrowed
 *      │                             │         pointers into protos[])
 *      │                             └──► k: constants as VM values; the array
 *      │                                  is filled by the VM (vm_link) and
 *      │                                  freed here, the objects it points at
 *      │                                  live in a heap the embedder owns
 *      └──owns──► mods[] (one per source file: main file first, then imports)
 *
 * Everything a Program holds is plain malloc'd memory: chunk_program_free
 * releases all of it. Constants are kept in a neutral form (Const) so the
 * compiler and the .sglc reader need nothing from the VM; the VM turns them
 * into Values once per program.
 */
#ifndef SGL_COMPILER_CHUNK_H
#define SGL_COMPILER_CHUNK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "compiler/opcodes.h"

typedef enum {
    KC_INT,        /* i */
    KC_FLOAT,      /* f */
    KC_STRING,     /* s, len */
    KC_REGEX,      /* s, len = regex source */
    KC_GRAMMAR,    /* name = grammar name, s, len = EBNF text */
    KC_BUILTIN,    /* s = built-in name, resolved by the VM */
    KC_NAMES,      /* names[nnames]: argument names of a CALLKW */
    KC__COUNT
} ConstKind;

typedef struct {
    ConstKind kind;
    int64_t i;
    double f;
    char *s;       /* NUL-terminated, may hold NULs before len */
    size_t len;
    char *name;
    char **names;
    int nnames;
} Const;

typedef struct {
    uint8_t instack;   /* 1: a register of the enclosing function; 0: its upvalue */
    uint8_t idx;
} UpvalDesc;

typedef struct {
    int32_t line, col;
} LineCol;

struct Value;

typedef struct Proto {
    int id;                 /* index in Program.protos */
    char *name;             /* function name for traces: "main", "<fn>", "<fork>", "<top level>" */
    int module;             /* index in Program.mods */
    int line, col;          /* where the function starts */
    int nparams;            /* parameters live in R[0..nparams) */
    int maxstack;           /* registers used */
    char **param_names;
    char **param_defaults;  /* [nparams] or NULL: parameter i's default, for
                               sgl_program_signature_json: "J" + JSON for a
                               literal, "E" + its source text otherwise; NULL
                               for a required one */
    uint64_t required;      /* bit i: parameter i has no default */
    Instr *code;
    LineCol *lines;         /* one per instruction */
    int ncode, capcode;
    Const *consts;
    int nconsts, capconsts;
    struct Proto **children;   /* CLOSURE operands; borrowed from Program.protos */
    int nchildren, capchildren;
    UpvalDesc *upvals;
    int nupvals;
    struct Value *k;        /* VM form of consts (NULL until linked) */
} Proto;

typedef struct {
    char *path;             /* resolved path, used to load each file once */
    char *file;             /* name shown in messages */
    Proto *init;            /* its top-level code */
    int nglobals;
    char **globals;         /* top-level names, slot order; these are its exports */
    int *global_fn;         /* proto id of the `fn` declaring slot i, or -1 */
    int has_code;           /* top level has statements besides fn/import/grammar */
} Module;

typedef struct Program {
    Proto **protos;
    int nprotos, capprotos;
    Module *mods;           /* mods[0] is the file that was compiled */
    int nmods, capmods;
} Program;

/* ---- building and freeing ---- */
Program *chunk_program_new(void);
void chunk_program_free(Program *p);
/* A new empty function, registered in p->protos. NULL on out of memory. */
Proto *chunk_proto_new(Program *p, const char *name, int module, int line, int col);
/* Appends an instruction with its position; returns its address (index) or -1
 * on out of memory. */
int chunk_emit(Proto *f, Instr i, int line, int col);
/* Appends a constant (taking ownership of its strings); returns its index or -1. */
int chunk_add_const(Proto *f, const Const *k);
void chunk_const_clear(Const *k);
/* Adds child function c to f's CLOSURE table; returns its index or -1. */
int chunk_add_child(Proto *f, Proto *c);
/* Adds a module (copies path and file); returns its index or -1. */
int chunk_add_module(Program *p, const char *path, const char *file);
/* Adds a global name to module m (copied); returns its slot or -1. */
int chunk_add_global(Module *m, const char *name);
/* Drops what was added since the program had nprotos functions, nmods
 * modules and module 0 had nglobals names (a session's failed chunk). */
void chunk_program_truncate(Program *p, int nprotos, int nmods, int nglobals);
/* Position of instruction pc of f (0,0 when unknown). */
LineCol chunk_pos(const Proto *f, int pc);
/* Index of the module whose `path` is given, or -1. */
int chunk_find_module(const Program *p, const char *path);
/* Slot of a global in module m, or -1. */
int chunk_find_global(const Module *m, const char *name);

#endif
