/*
 * compiler/sglc_verify.c — the bytecode verifier (sglc_verify, declared in
 * compiler/sglc.h).
 *
 * A .sglc file comes from outside: its checksum says the bytes arrived as
 * they were written, not that sgl's compiler wrote them. The interpreter
 * (vm/interp.c and the files it calls) checks the values it meets at run
 * time (operand types, list indices, argument counts, stack depth) but
 * takes the code itself on trust: a register number is an offset into the
 * frame, a constant index an offset into the constant table, and LISTADD
 * treats R[A] as a list without looking. Everything the VM takes on trust
 * is proved here, before a loaded program is returned; the compiler's own
 * output passes by construction (tests/unit/test_compiler.c checks it).
 *
 * What is proved (the tags are cited at the checks below):
 *
 * The program (verify_program)
 *   P0  Every function reached from a module or a parent is one of
 *       p->protos, so all of them are verified.
 *   P1  There is a module; each has a top level that belongs to it (its
 *       GETGLOBALs index that module's globals), takes no parameters and
 *       captures nothing (IMPORT and vm_run_new call it with neither).
 *   P2  Global names are present, valid UTF-8 and distinct (each slot is
 *       one entry of the module's exports map, which GETGLOBAL indexes by
 *       slot); global_fn is -1 or a function of the same module (api.c
 *       binds the entry's arguments with its parameters).
 *   P3  Each function belongs to a module and has a name.
 *   P4  Parameters: 0 <= nparams <= 64 (argmask has 64 bits), nparams <=
 *       maxstack <= MAXARG_A (parameters are registers), names present,
 *       valid and distinct, and no `required` bit at or above nparams
 *       (a missing argument is reported as param_names[ctz(missing)]).
 *   P5  Constants: a known kind; text present; strings, names and argument
 *       names valid UTF-8; a regex passes rx_check and a grammar gbnf_check
 *       (gen() hands re"..." and grammar constants to the runtime without
 *       checking them again, as the compiler did); a built-in name is
 *       NUL-free (vm_link resolves it or fails); an argument-name list has
 *       1..255 distinct names.
 *   P6  Children: each belongs to its parent's module (CLOSURE gives the
 *       new closure its creator's module, whose globals it then indexes);
 *       each upvalue descriptor is a register below the parent's maxstack
 *       (instack 1) or one of the parent's upvalues (instack 0).
 *
 * Each instruction, reachable or not (verify_instr)
 *   I1  The code splits into instructions from pc 0: FIELD with C = 255,
 *       SETFIELD with B = 255 and CALLKW take the next word as an EXTRAARG
 *       operand, which must be there; an EXTRAARG anywhere else is an error.
 *   I2  The opcode is known.
 *   I3  Operands of each kind are in range: registers < maxstack,
 *       constants < nconsts, upvalues < nupvals, children < nchildren,
 *       globals < the module's nglobals, modules < nmods, flags 0 or 1.
 *   I4  Register ranges stay in the frame: LOADNIL, NEWLIST, LISTADD
 *       A..A+B; NEWMAP, MAPADD A..A+2B; CONCAT A..A+B-1 with B >= 1; CALL
 *       A..A+B; CALLKW A..A+B+C; FORPREP, FORLOOP, ITERPREP, ITERLOOP
 *       A..A+2; FORK A, B and B+1.
 *   I5  Constants have the kind their opcode casts them to: FIELD and
 *       SETFIELD names and APPENDK text are strings (AS_STRING); ADDK..MODK
 *       take an int or float, EQK an int, float or string; CALLKW's
 *       EXTRAARG names a list of exactly C argument names (AS_LIST, then
 *       AS_STRING of each); LOADK never loads such a list (a program could
 *       then change what CALLKW relies on).
 *   I6  ARGDEF A < nparams (argmask >> A); ROLEBEGIN/ROLEEND A is a role.
 *   I7  Every way on is an instruction start inside the code: jump
 *       targets (JMP, ARGDEF, FOR*, ITER*), skips, and the fall-through
 *       (nothing runs off the end). A test (EQ..TEST) is followed by a JMP,
 *       which condjump executes in place.
 *
 * Every path from pc 0 (verify_flow: a forward dataflow over the reachable
 * code; per register one fact and one "captured" bit, see Fact)
 *   D1  LISTADD's R[A] holds a list, put there by NEWLIST (AS_LIST).
 *   D2  MAPADD's R[A] holds a map, put there by NEWMAP (AS_MAP).
 *   D3  FORLOOP's R[A], R[A+1] are ints with R[A] < R[A+1], as FORPREP or
 *       the last FORLOOP left them: it increments R[A].as.i with no type
 *       check (an object's pointer otherwise) and no overflow check.
 *   D4  ITERLOOP's R[A] is a list or a string and R[A+1] an int cursor,
 *       as ITERPREP or the last ITERLOOP left them (R[A].as.obj->type).
 *   D5  A call (CALL, CALLKW, IMPORT at R[A]) gives the callee the
 *       registers from R[A+1] up; none of those may be captured by an
 *       open upvalue of this frame then (CLOSE first), or a closure could
 *       change the callee's registers behind its facts. With D5 in every
 *       function, the only open upvalues into a frame are its own.
 *   A fact dies when its register is written (a call writes R[A] and every
 *   register above it) and, for a captured register, at any instruction
 *   that can run other code meanwhile (CALL, CALLKW, IMPORT, FORK,
 *   ROLEBEGIN, ROLEEND). Facts meet at joins: a register keeps one only if
 *   every path into the join agrees.
 *
 * Not proved, and not assumed by the VM: that a program terminates or
 * stays within memory (the VM has no instruction budget; see
 * tests/fuzz/fuzz_sglc.c), and anything about the values a program meets.
 *
 * Owns nothing beyond a call: scratch arrays are allocated and freed
 * inside sglc_verify. Pure; any thread.
 */
#include "compiler/sglc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/role.h"
#include "base/utf8.h"
#include "constrain/grammar_syntax.h"
#include "constrain/regex_syntax.h"

/* The dataflow keeps one state (a byte per register) per basic block;
 * a function needing more than this is refused rather than verified. */
#define FLOW_STATE_MAX ((size_t)64 << 20)

typedef struct {
    const Program *p;
    const Proto *f;     /* the function being checked, or NULL */
    int index;          /* its index in p->protos */
    char *err;
    size_t errcap;
} Verifier;

/* ------------------------------------------------------------------ */
/* messages                                                            */

static int fail_prog(const Verifier *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_prog(const Verifier *v, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_fmt(v->err, v->errcap, "bad bytecode: %s", msg);
    return ERR_BYTECODE;
}

/* "bad bytecode in function NAME (#INDEX, FILE:LINE) at pc PC: ..."; pc < 0
 * for something about the function as a whole. */
static int fail_at(const Verifier *v, int pc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(const Verifier *v, int pc, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const Proto *f = v->f;
    const char *file = f->module >= 0 && f->module < v->p->nmods ? v->p->mods[f->module].file : "?";
    char where[32] = "";
    if (pc >= 0) snprintf(where, sizeof where, " at pc %d", pc);
    err_fmt(v->err, v->errcap, "bad bytecode in function %s (#%d, %s:%d)%s: %s", f->name ? f->name : "?", v->index,
            file, f->line, where, msg);
    return ERR_BYTECODE;
}

static int fail_nomem(const Verifier *v)
{
    err_fmt(v->err, v->errcap, "out of memory");
    return ERR_NOMEM;
}

/* ------------------------------------------------------------------ */
/* the program: P0-P6                                                  */

static bool text_ok(const char *s, size_t len) { return s && utf8_valid(s, len); }
static bool name_ok(const char *s) { return s && utf8_valid(s, strlen(s)); }

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* 1 when two of names[0..n) are equal (*dup is one of them), 0 when all
 * differ, -1 on out of memory. */
static int has_duplicate(char *const *names, int n, const char **dup)
{
    if (n < 2) return 0;
    char **sorted = malloc((size_t)n * sizeof(char *));
    if (!sorted) return -1;
    memcpy(sorted, names, (size_t)n * sizeof(char *));
    qsort(sorted, (size_t)n, sizeof(char *), cmp_names);
    int found = 0;
    for (int i = 1; i < n && !found; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            *dup = sorted[i];
            found = 1;
        }
    free(sorted);
    return found;
}

/* f is p->protos[f->id]: then it is verified with the others. */
static bool is_listed(const Program *p, const Proto *f)
{
    return f->id >= 0 && f->id < p->nprotos && p->protos[f->id] == f;
}

static int verify_modules(Verifier *v)
{
    const Program *p = v->p;
    if (p->nmods < 1) return fail_prog(v, "no modules");   /* P1 */
    for (int m = 0; m < p->nmods; m++) {
        const Module *mod = &p->mods[m];
        const Proto *init = mod->init;
        const char *file = mod->file ? mod->file : "?";
        if (!mod->path || !mod->file) return fail_prog(v, "module %d has no file name", m);
        if (!init) return fail_prog(v, "module %d (%s) has no top level", m, file);        /* P1 */
        if (!is_listed(p, init))                                                            /* P0 */
            return fail_prog(v, "module %d (%s)'s top level is not one of the functions", m, file);
        if (init->module != m)
            return fail_prog(v, "module %d (%s)'s top level belongs to module %d", m, file, init->module);
        if (init->nparams != 0) return fail_prog(v, "module %d (%s)'s top level takes parameters", m, file);
        if (init->nupvals != 0) return fail_prog(v, "module %d (%s)'s top level captures variables", m, file);
        for (int g = 0; g < mod->nglobals; g++) {                                           /* P2 */
            if (!name_ok(mod->globals[g])) return fail_prog(v, "module %d (%s): global %d has a bad name", m, file, g);
            int fn = mod->global_fn[g];
            if (fn < -1 || fn >= p->nprotos)
                return fail_prog(v, "module %d (%s): global %s names function %d of %d", m, file, mod->globals[g], fn,
                                 p->nprotos);
            if (fn >= 0 && (!p->protos[fn] || p->protos[fn]->module != m))
                return fail_prog(v, "module %d (%s): global %s names a function of another module", m, file,
                                 mod->globals[g]);
        }
        const char *dup = NULL;
        int d = has_duplicate(mod->globals, mod->nglobals, &dup);
        if (d < 0) return fail_nomem(v);
        if (d) return fail_prog(v, "module %d (%s): global %s declared twice", m, file, dup);
    }
    return 0;
}

static int verify_const(Verifier *v, int j)
{
    const Const *k = &v->f->consts[j];
    int line = 0, col = 0;
    char msg[120] = "";
    switch (k->kind) {                                                                      /* P5 */
    case KC_INT: case KC_FLOAT: return 0;
    case KC_STRING:
        if (!text_ok(k->s, k->len)) return fail_at(v, -1, "constant %d: string missing or not UTF-8", j);
        return 0;
    case KC_REGEX:
        if (!k->s) return fail_at(v, -1, "constant %d: regex missing", j);
        if (rx_check(k->s, k->len, &col, msg, sizeof msg) != 0)
            return fail_at(v, -1, "constant %d: bad regex (column %d): %s", j, col, msg);
        return 0;
    case KC_GRAMMAR:
        if (!name_ok(k->name) || !k->s) return fail_at(v, -1, "constant %d: grammar name or rules missing", j);
        if (gbnf_check(k->s, k->len, &line, &col, msg, sizeof msg) != 0)
            return fail_at(v, -1, "constant %d: bad grammar %s (line %d, column %d): %s", j, k->name, line, col, msg);
        return 0;
    case KC_BUILTIN:
        if (!k->s || !*k->s || strlen(k->s) != k->len) return fail_at(v, -1, "constant %d: bad built-in name", j);
        return 0;
    case KC_NAMES: {
        if (k->nnames < 1 || k->nnames > MAXARG_C || !k->names)
            return fail_at(v, -1, "constant %d: %d argument names", j, k->nnames);
        for (int n = 0; n < k->nnames; n++)
            if (!name_ok(k->names[n])) return fail_at(v, -1, "constant %d: argument name %d missing or not UTF-8", j, n);
        const char *dup = NULL;
        int d = has_duplicate(k->names, k->nnames, &dup);
        if (d < 0) return fail_nomem(v);
        if (d) return fail_at(v, -1, "constant %d: argument %s named twice", j, dup);
        return 0;
    }
    case KC__COUNT: break;
    }
    return fail_at(v, -1, "constant %d of unknown kind %d", j, (int)k->kind);
}

/* P3, P4, P5, P6 for v->f. */
static int verify_header(Verifier *v)
{
    const Program *p = v->p;
    const Proto *f = v->f;
    if (!f->name) return fail_at(v, -1, "no name");                                          /* P3 */
    if (f->module < 0 || f->module >= p->nmods) return fail_at(v, -1, "module %d of %d", f->module, p->nmods);
    if (f->nparams < 0 || f->nparams > 64) return fail_at(v, -1, "%d parameters (at most 64)", f->nparams);  /* P4 */
    if (f->maxstack < 1 || f->maxstack > MAXARG_A)
        return fail_at(v, -1, "%d registers (1 to %d)", f->maxstack, MAXARG_A);
    if (f->nparams > f->maxstack) return fail_at(v, -1, "%d parameters in %d registers", f->nparams, f->maxstack);
    if (f->nparams && !f->param_names) return fail_at(v, -1, "parameter names missing");
    for (int j = 0; j < f->nparams; j++)
        if (!name_ok(f->param_names[j])) return fail_at(v, -1, "parameter %d has a bad name", j);
    const char *dup = NULL;
    int d = has_duplicate(f->param_names, f->nparams, &dup);
    if (d < 0) return fail_nomem(v);
    if (d) return fail_at(v, -1, "parameter %s declared twice", dup);
    uint64_t params = f->nparams >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << f->nparams) - 1;
    if (f->required & ~params)
        return fail_at(v, -1, "required-parameter mask 0x%llx names parameters beyond its %d",
                       (unsigned long long)f->required, f->nparams);
    if (f->ncode < 1 || !f->code || !f->lines) return fail_at(v, -1, "no code");
    if (f->nconsts < 0 || (f->nconsts && !f->consts)) return fail_at(v, -1, "bad constant table");
    for (int j = 0; j < f->nconsts; j++)
        if (verify_const(v, j) < 0) return ERR_BYTECODE;
    if (f->nupvals < 0 || f->nupvals > 255 || (f->nupvals && !f->upvals)) return fail_at(v, -1, "bad upvalue table");
    if (f->nchildren < 0 || (f->nchildren && !f->children)) return fail_at(v, -1, "bad child table");
    for (int c = 0; c < f->nchildren; c++) {                                                 /* P6 */
        const Proto *ch = f->children[c];
        if (!ch || !is_listed(p, ch))                                                        /* P0 */
            return fail_at(v, -1, "child %d is not one of the functions", c);
        if (ch->module != f->module)
            return fail_at(v, -1, "child %d (%s) belongs to module %d, not %d", c, ch->name ? ch->name : "?", ch->module,
                           f->module);
        if (ch->nupvals < 0 || ch->nupvals > 255 || (ch->nupvals && !ch->upvals))
            return fail_at(v, -1, "child %d has a bad upvalue table", c);
        for (int u = 0; u < ch->nupvals; u++) {
            const UpvalDesc *dsc = &ch->upvals[u];
            if (dsc->instack > 1) return fail_at(v, -1, "child %d: upvalue %d has bad kind %d", c, u, dsc->instack);
            int limit = dsc->instack ? f->maxstack : f->nupvals;
            if (dsc->idx >= limit)
                return fail_at(v, -1, "child %d: upvalue %d captures %s %d of %d", c, u,
                               dsc->instack ? "register" : "upvalue", dsc->idx, limit);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* instructions: I1-I7                                                 */

/* I1: whether instruction i takes the next word as its EXTRAARG. */
static bool takes_extraarg(Instr i)
{
    switch (GET_OP(i)) {
    case OP_FIELD: return GETARG_C(i) == MAXARG_C;
    case OP_SETFIELD: return GETARG_B(i) == MAXARG_B;
    case OP_CALLKW: return true;
    default: return false;
    }
}

static bool is_test(OpCode op)
{
    switch (op) {
    case OP_EQ: case OP_LT: case OP_LE: case OP_EQK: case OP_EQI: case OP_LTI: case OP_LEI:
    case OP_GTI: case OP_GEI: case OP_TEST:
        return true;
    default:
        return false;
    }
}

/* Where an instruction can go next: to[0] the fall-through (or the one way
 * on), to[1] the jump; taken[e] tells the dataflow which edge it is. */
typedef struct {
    int n;
    int to[2];
    bool taken[2];
} Next;

static void next_add(Next *nx, int to, bool taken)
{
    nx->to[nx->n] = to;
    nx->taken[nx->n] = taken;
    nx->n++;
}

static Next next_of(const Proto *f, int pc)
{
    Instr i = f->code[pc];
    OpCode op = GET_OP(i);
    Next nx = {0};
    if (is_test(op)) {
        next_add(&nx, pc + 1, false);   /* the JMP, which condjump runs in place */
        next_add(&nx, pc + 2, true);    /* the skip */
        return nx;
    }
    switch (op) {
    case OP_RETURN: case OP_RETURN0: case OP_EXTRAARG:
        break;
    case OP_JMP: next_add(&nx, pc + 1 + GETARG_sJ(i), true); break;
    case OP_LFALSESKIP: next_add(&nx, pc + 2, true); break;
    case OP_ARGDEF: case OP_FORPREP: case OP_FORLOOP: case OP_ITERLOOP:
        next_add(&nx, pc + 1, false);
        next_add(&nx, pc + 1 + GETARG_sBx(i), true);
        break;
    case OP_ITERPREP: next_add(&nx, pc + 1 + GETARG_sBx(i), true); break;
    default: next_add(&nx, pc + 1 + (takes_extraarg(i) ? 1 : 0), false); break;
    }
    return nx;
}

static int const_kind(const Proto *f, int k) { return k >= 0 && k < f->nconsts ? (int)f->consts[k].kind : -1; }

/* I3 for one operand. */
static int check_operand(const Verifier *v, int pc, OpKind kind, int x, char which)
{
    const Proto *f = v->f;
    switch (kind) {
    case OPK_N: case OPK_U: case OPK_S: case OPK_J: return 0;   /* counts and jumps: I4, I7 */
    case OPK_R: return x < f->maxstack ? 0 : fail_at(v, pc, "register %c=%d beyond %d", which, x, f->maxstack);
    case OPK_K: return x < f->nconsts ? 0 : fail_at(v, pc, "constant %c=%d beyond %d", which, x, f->nconsts);
    case OPK_F: return x <= 1 ? 0 : fail_at(v, pc, "flag %c=%d is not 0 or 1", which, x);
    case OPK_P: return x < f->nchildren ? 0 : fail_at(v, pc, "function %d beyond %d", x, f->nchildren);
    case OPK_V: return x < f->nupvals ? 0 : fail_at(v, pc, "upvalue %d beyond %d", x, f->nupvals);
    case OPK_G: {
        int n = v->p->mods[f->module].nglobals;
        return x < n ? 0 : fail_at(v, pc, "global %d beyond %d", x, n);
    }
    case OPK_M: return x < v->p->nmods ? 0 : fail_at(v, pc, "module %d beyond %d", x, v->p->nmods);
    }
    return 0;
}

/* The constant that FIELD/SETFIELD/CALLKW at pc names: in the instruction,
 * or in its EXTRAARG (I1 has made sure that word is there). */
static int named_const(const Proto *f, int pc, int inline_k, int escape)
{
    return inline_k == escape ? GETARG_Ax(f->code[pc + 1]) : inline_k;
}

/* I2-I7 for the instruction at pc (an instruction start). */
static int verify_instr(const Verifier *v, int pc, const uint8_t *is_start)
{
    const Proto *f = v->f;
    Instr i = f->code[pc];
    unsigned opn = i & 0xffu;
    if (opn >= OP__COUNT) return fail_at(v, pc, "unknown opcode %u", opn);                  /* I2 */
    OpCode op = (OpCode)opn;
    const OpInfo *info = &op_info[op];
    int ms = f->maxstack;
    int a = GETARG_A(i), b = GETARG_B(i), c = GETARG_C(i);
    if (op == OP_EXTRAARG) return fail_at(v, pc, "EXTRAARG outside the instruction it belongs to");   /* I1 */
    if (takes_extraarg(i) && (pc + 1 >= f->ncode || GET_OP(f->code[pc + 1]) != OP_EXTRAARG))
        return fail_at(v, pc, "%s without its EXTRAARG", info->name);

    switch (info->format) {                                                                 /* I3 */
    case iABC:
        if (check_operand(v, pc, info->a, a, 'A') < 0) return ERR_BYTECODE;
        if (op == OP_FIELD) {
            if (check_operand(v, pc, info->b, b, 'B') < 0) return ERR_BYTECODE;
            break;   /* the name: I5 */
        }
        if (op == OP_SETFIELD) {
            if (check_operand(v, pc, info->c, c, 'C') < 0) return ERR_BYTECODE;
            break;
        }
        if (check_operand(v, pc, info->b, b, 'B') < 0 || check_operand(v, pc, info->c, c, 'C') < 0)
            return ERR_BYTECODE;
        break;
    case iABx:
        if (check_operand(v, pc, info->a, a, 'A') < 0 || check_operand(v, pc, info->b, GETARG_Bx(i), 'B') < 0)
            return ERR_BYTECODE;
        break;
    case iAsBx:
        if (check_operand(v, pc, info->a, a, 'A') < 0) return ERR_BYTECODE;
        break;
    case isJ: case iAx:
        break;
    }

    switch (op) {
    case OP_LOADNIL: case OP_NEWLIST: case OP_LISTADD: case OP_CALL:                        /* I4 */
        if (a + b >= ms) return fail_at(v, pc, "registers %d..%d beyond %d", a, a + b, ms);
        break;
    case OP_NEWMAP: case OP_MAPADD:
        if (a + 2 * b >= ms) return fail_at(v, pc, "registers %d..%d beyond %d", a, a + 2 * b, ms);
        break;
    case OP_CONCAT:
        if (b < 1) return fail_at(v, pc, "CONCAT of no registers");
        if (a + b - 1 >= ms) return fail_at(v, pc, "registers %d..%d beyond %d", a, a + b - 1, ms);
        break;
    case OP_CALLKW: {
        if (c < 1) return fail_at(v, pc, "CALLKW with no named arguments");
        if (a + b + c >= ms) return fail_at(v, pc, "registers %d..%d beyond %d", a, a + b + c, ms);
        int k = GETARG_Ax(f->code[pc + 1]);                                                  /* I5 */
        if (const_kind(f, k) != KC_NAMES) return fail_at(v, pc, "CALLKW names constant %d, not an argument-name list", k);
        if (f->consts[k].nnames != c)
            return fail_at(v, pc, "CALLKW passes %d named arguments but names %d", c, f->consts[k].nnames);
        break;
    }
    case OP_FORPREP: case OP_FORLOOP: case OP_ITERPREP: case OP_ITERLOOP:
        if (a + 2 >= ms) return fail_at(v, pc, "loop registers %d..%d beyond %d", a, a + 2, ms);
        break;
    case OP_FORK:
        if (b + 1 >= ms) return fail_at(v, pc, "fork registers %d..%d beyond %d", b, b + 1, ms);
        break;
    case OP_FIELD: case OP_SETFIELD: {                                                       /* I5 */
        int k = op == OP_FIELD ? named_const(f, pc, c, MAXARG_C) : named_const(f, pc, b, MAXARG_B);
        if (const_kind(f, k) != KC_STRING) return fail_at(v, pc, "field name constant %d is not a string", k);
        break;
    }
    case OP_ADDK: case OP_SUBK: case OP_MULK: case OP_DIVK: case OP_MODK: {
        int kk = const_kind(f, c);
        if (kk != KC_INT && kk != KC_FLOAT) return fail_at(v, pc, "arithmetic on constant %d, not a number", c);
        break;
    }
    case OP_EQK: {
        int kk = const_kind(f, b);
        if (kk != KC_INT && kk != KC_FLOAT && kk != KC_STRING)
            return fail_at(v, pc, "comparison with constant %d, not a number or string", b);
        break;
    }
    case OP_APPENDK:
        if (const_kind(f, GETARG_Bx(i)) != KC_STRING)
            return fail_at(v, pc, "appending constant %d, not a string", GETARG_Bx(i));
        break;
    case OP_LOADK:
        if (const_kind(f, GETARG_Bx(i)) == KC_NAMES)
            return fail_at(v, pc, "loading constant %d, an argument-name list", GETARG_Bx(i));
        break;
    case OP_ARGDEF:                                                                          /* I6 */
        if (a >= f->nparams) return fail_at(v, pc, "default for parameter %d of %d", a, f->nparams);
        break;
    case OP_ROLEBEGIN: case OP_ROLEEND:
        if (a >= ROLE_COUNT) return fail_at(v, pc, "unknown role %d", a);
        break;
    default:
        break;
    }

    Next nx = next_of(f, pc);                                                                /* I7 */
    for (int e = 0; e < nx.n; e++) {
        int to = nx.to[e];
        if (!nx.taken[e] && to == f->ncode) return fail_at(v, pc, "runs off the end of the function");
        if (to < 0 || to >= f->ncode) return fail_at(v, pc, "jump to %d outside the function (0..%d)", to, f->ncode - 1);
        if (!is_start[to]) return fail_at(v, pc, "jump to %d, the middle of an instruction", to);
    }
    if (is_test(op) && GET_OP(f->code[pc + 1]) != OP_JMP) return fail_at(v, pc, "%s not followed by a JMP", info->name);
    return 0;
}

/* ------------------------------------------------------------------ */
/* paths: D1-D5                                                        */

/* What is known of a register on every path to a point. FACT_FORPAIR and
 * FACT_ITER are about the register and the one above it. */
typedef enum {
    FACT_NONE,      /* anything */
    FACT_LIST,      /* R[x] is a list */
    FACT_MAP,       /* R[x] is a map */
    FACT_FORPAIR,   /* R[x], R[x+1] ints, R[x] < R[x+1] */
    FACT_ITER       /* R[x] a list or string, R[x+1] an int */
} Fact;

/* A state is one byte per register: the fact, and CAPTURED when an open
 * upvalue of this frame (made by CLOSURE, not yet closed) points at it. */
#define FACT_BITS 0x07u
#define CAPTURED 0x80u

static Fact fact(const uint8_t *st, int r) { return (Fact)(st[r] & FACT_BITS); }
static void set_fact(uint8_t *st, int r, Fact x) { st[r] = (uint8_t)((st[r] & ~FACT_BITS) | (unsigned)x); }

/* R[r] is written: what was known of it (and of a pair starting below it) is gone. */
static void kill(uint8_t *st, int ms, int r)
{
    if (r < 0 || r >= ms) return;
    set_fact(st, r, FACT_NONE);
    if (r > 0 && (fact(st, r - 1) == FACT_FORPAIR || fact(st, r - 1) == FACT_ITER)) set_fact(st, r - 1, FACT_NONE);
}

static void kill_from(uint8_t *st, int ms, int r)
{
    for (int x = r; x < ms; x++) kill(st, ms, x);
}

/* Other code may run: it can write the captured registers. */
static void call_out(uint8_t *st, int ms)
{
    for (int x = 0; x < ms; x++)
        if (st[x] & CAPTURED) kill(st, ms, x);
}

/* The state after instruction i along edge `taken` (see next_of). Every
 * opcode is listed, so a new one cannot be forgotten here. */
static void step(uint8_t *st, const Proto *f, Instr i, bool taken)
{
    int ms = f->maxstack;
    int a = GETARG_A(i), b = GETARG_B(i);
    switch (GET_OP(i)) {
    case OP_MOVE: case OP_LOADK: case OP_LOADI: case OP_LOADTRUE: case OP_LOADFALSE: case OP_LFALSESKIP:
    case OP_GETUPVAL: case OP_GETGLOBAL: case OP_GETSTATE: case OP_INDEX: case OP_FIELD:
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MOD:
    case OP_ADDK: case OP_SUBK: case OP_MULK: case OP_DIVK: case OP_MODK: case OP_ADDI:
    case OP_UNM: case OP_NOT: case OP_RANGE: case OP_IN: case OP_TOSTR: case OP_CONCAT:
        kill(st, ms, a);
        break;
    case OP_LOADNIL:
        for (int x = a; x <= a + b; x++) kill(st, ms, x);
        break;
    case OP_NEWLIST:
        kill(st, ms, a);
        set_fact(st, a, FACT_LIST);
        break;
    case OP_NEWMAP:
        kill(st, ms, a);
        set_fact(st, a, FACT_MAP);
        break;
    case OP_CLOSURE: {
        const Proto *ch = f->children[GETARG_Bx(i)];
        for (int u = 0; u < ch->nupvals; u++)
            if (ch->upvals[u].instack) st[ch->upvals[u].idx] |= CAPTURED;
        kill(st, ms, a);
        break;
    }
    case OP_CLOSE:
        for (int x = a; x < ms; x++) st[x] &= (uint8_t)~CAPTURED;
        break;
    case OP_CALL: case OP_CALLKW: case OP_IMPORT:
        /* the callee's frame starts at R[A+1]; its result lands in R[A] */
        call_out(st, ms);
        kill_from(st, ms, a);
        break;
    case OP_FORK:
        call_out(st, ms);
        kill(st, ms, a);
        break;
    case OP_ROLEBEGIN: case OP_ROLEEND:
        call_out(st, ms);   /* the chat template runs */
        break;
    case OP_FORPREP:
        if (!taken) {
            kill(st, ms, a + 2);
            set_fact(st, a, FACT_FORPAIR);
        }
        break;
    case OP_FORLOOP:
        kill(st, ms, a);
        if (taken) {
            kill(st, ms, a + 2);
            set_fact(st, a, FACT_FORPAIR);
        }
        break;
    case OP_ITERPREP:
        kill(st, ms, a);
        kill(st, ms, a + 1);
        set_fact(st, a, FACT_ITER);
        break;
    case OP_ITERLOOP:
        if (taken) {
            kill(st, ms, a + 1);
            kill(st, ms, a + 2);
            set_fact(st, a, FACT_ITER);
        }
        break;
    case OP_SETUPVAL: case OP_SETGLOBAL: case OP_LISTADD: case OP_MAPADD: case OP_SETINDEX: case OP_SETFIELD:
    case OP_EQ: case OP_LT: case OP_LE: case OP_EQK: case OP_EQI: case OP_LTI: case OP_LEI: case OP_GTI: case OP_GEI:
    case OP_TEST: case OP_JMP: case OP_EXTRAARG: case OP_RETURN: case OP_RETURN0: case OP_ARGDEF:
    case OP_APPEND: case OP_APPENDP: case OP_APPENDK:
        break;
    case OP__COUNT:
        break;
    }
}

/* D1-D5 at instruction i, in state st. */
static int require(const Verifier *v, const uint8_t *st, int pc, Instr i)
{
    int ms = v->f->maxstack;
    int a = GETARG_A(i);
    switch (GET_OP(i)) {
    case OP_LISTADD:
        if (fact(st, a) != FACT_LIST) return fail_at(v, pc, "LISTADD: R[%d] is not known to hold a list", a);
        break;
    case OP_MAPADD:
        if (fact(st, a) != FACT_MAP) return fail_at(v, pc, "MAPADD: R[%d] is not known to hold a map", a);
        break;
    case OP_FORLOOP:
        if (fact(st, a) != FACT_FORPAIR)
            return fail_at(v, pc, "FORLOOP: R[%d], R[%d] are not the counter and limit of a FORPREP", a, a + 1);
        break;
    case OP_ITERLOOP:
        if (fact(st, a) != FACT_ITER)
            return fail_at(v, pc, "ITERLOOP: R[%d], R[%d] are not what an ITERPREP set up", a, a + 1);
        break;
    case OP_CALL: case OP_CALLKW: case OP_IMPORT:
        for (int x = a + 1; x < ms; x++)
            if (st[x] & CAPTURED)
                return fail_at(v, pc, "call at R[%d] while R[%d], in the callee's frame, is captured (no CLOSE)", a, x);
        break;
    default:
        break;
    }
    return 0;
}

/* Merges `in` into the state of a block; true when that state changed. */
static bool merge(uint8_t *st, const uint8_t *in, int ms, bool first)
{
    if (first) {
        memcpy(st, in, (size_t)ms);
        return true;
    }
    bool changed = false;
    for (int x = 0; x < ms; x++) {
        uint8_t cur = st[x];
        uint8_t nf = (cur & FACT_BITS) == (in[x] & FACT_BITS) ? (cur & FACT_BITS) : FACT_NONE;
        uint8_t nv = (uint8_t)(nf | ((cur | in[x]) & CAPTURED));
        if (nv != cur) {
            st[x] = nv;
            changed = true;
        }
    }
    return changed;
}

/* D1-D5 on every path from pc 0: a worklist over basic blocks, each
 * holding the meet of the states flowing into it. */
static int verify_flow(const Verifier *v, const uint8_t *is_start)
{
    const Proto *f = v->f;
    int n = f->ncode, ms = f->maxstack;
    int rc = 0, nblocks = 0, nwork = 0;
    uint8_t *leader = calloc((size_t)n, 1);           /* pc starts a basic block */
    int *block = malloc((size_t)n * sizeof(int));     /* its block index, else -1 */
    int *block_pc = malloc((size_t)n * sizeof(int));  /* where block i starts */
    uint8_t *states = NULL, *seen = NULL, *queued = NULL, *cur = NULL, *out = NULL;
    int *work = NULL;
    if (!leader || !block || !block_pc) goto nomem;
    leader[0] = 1;
    for (int pc = 0; pc < n; pc++) {
        if (!is_start[pc]) continue;
        Next nx = next_of(f, pc);
        if (nx.n == 1 && !nx.taken[0]) continue;   /* straight on */
        for (int e = 0; e < nx.n; e++) leader[nx.to[e]] = 1;
    }
    for (int pc = 0; pc < n; pc++) {
        block[pc] = leader[pc] ? nblocks : -1;
        if (leader[pc]) block_pc[nblocks++] = pc;
    }
    if ((size_t)nblocks * (size_t)ms > FLOW_STATE_MAX) {
        rc = fail_at(v, -1, "too large to verify (%d blocks of %d registers)", nblocks, ms);
        goto out;
    }
    states = calloc((size_t)nblocks, (size_t)ms);     /* block 0: nothing known, nothing captured */
    seen = calloc((size_t)nblocks, 1);
    queued = calloc((size_t)nblocks, 1);
    work = malloc((size_t)nblocks * sizeof(int));
    cur = malloc((size_t)ms);
    out = malloc((size_t)ms);
    if (!states || !seen || !queued || !work || !cur || !out) goto nomem;
    seen[0] = queued[0] = 1;
    work[nwork++] = 0;
    while (nwork > 0 && rc == 0) {
        int bi = work[--nwork];
        queued[bi] = 0;
        memcpy(cur, states + (size_t)bi * (size_t)ms, (size_t)ms);
        for (int pc = block_pc[bi];;) {
            Instr i = f->code[pc];
            if ((rc = require(v, cur, pc, i)) < 0) break;
            Next nx = next_of(f, pc);
            if (nx.n == 1 && !nx.taken[0] && !leader[nx.to[0]]) {
                step(cur, f, i, false);
                pc = nx.to[0];
                continue;
            }
            for (int e = 0; e < nx.n; e++) {
                memcpy(out, cur, (size_t)ms);
                step(out, f, i, nx.taken[e]);
                int to = block[nx.to[e]];
                if (merge(states + (size_t)to * (size_t)ms, out, ms, !seen[to]) && !queued[to]) {
                    queued[to] = 1;
                    work[nwork++] = to;
                }
                seen[to] = 1;
            }
            break;
        }
    }
    goto out;
nomem:
    rc = fail_nomem(v);
out:
    free(leader);
    free(block);
    free(block_pc);
    free(states);
    free(seen);
    free(queued);
    free(work);
    free(cur);
    free(out);
    return rc;
}

/* I1-I7 for every instruction, then D1-D5. */
static int verify_code(const Verifier *v)
{
    const Proto *f = v->f;
    uint8_t *is_start = calloc((size_t)f->ncode, 1);
    if (!is_start) return fail_nomem(v);
    for (int pc = 0; pc < f->ncode; pc += takes_extraarg(f->code[pc]) ? 2 : 1) is_start[pc] = 1;   /* I1 */
    int rc = 0;
    for (int pc = 0; pc < f->ncode && rc == 0; pc++)
        if (is_start[pc]) rc = verify_instr(v, pc, is_start);
    if (rc == 0) rc = verify_flow(v, is_start);
    free(is_start);
    return rc;
}

int sglc_verify(const Program *p, char *err, size_t errcap)
{
    Verifier v = {.p = p, .err = err, .errcap = errcap};
    int rc = verify_modules(&v);
    for (int i = 0; i < p->nprotos && rc == 0; i++) {
        v.f = p->protos[i];
        v.index = i;
        if (!v.f) return fail_prog(&v, "function %d missing", i);
        rc = verify_header(&v);
        if (rc == 0) rc = verify_code(&v);
    }
    return rc;
}
