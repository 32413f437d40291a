/*
 * compiler/compile.c — AST to register bytecode, one pass per function
 * (Lua's lcode/lparser split folded into one walk over the finished tree).
 *
 * Registers: a function's locals occupy R[0..nactive) in declaration order
 * (parameters first); temporaries are allocated above them, stack-wise
 * (freereg), and released at the end of every statement. An expression is
 * compiled either into a given register (expr_to) or into "any" register
 * (expr_any: a local's own register when it is one, so `a + b` reads locals
 * in place).
 *
 * Jumps: pending jumps form linked lists through their own sJ field (as in
 * Lua), patched once the target is known. Conditions compile to test+JMP
 * pairs (cond_jump) so `if a < b` costs one compare and one jump.
 *
 * Errors: the first error longjmps out to cmp_compile_*, which frees the
 * partial program; everything allocated while compiling is owned by the
 * Program or by the Comp (parse trees, sources), never by C locals.
 */
#include "compiler/compile_internal.h"
#include "base/err.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "base/utf8.h"
#include "constrain/grammar_syntax.h"
#include "constrain/regex_syntax.h"

#define MAX_REGS 250      /* registers per function (A fits 8 bits; headroom for calls) */
#define MAX_UPVALS 255
#define MAX_PARAMS 64     /* the "argument passed" mask is 64 bits */
#define MAX_ROLES 16
#define NO_JUMP (-1)
#define LIST_CHUNK 32     /* list/map literal items per NEWLIST/LISTADD */
#define CONCAT_CHUNK 64



typedef struct {
    const char *name;
    int reg;
} LocalVar;

typedef struct BlockScope {
    struct BlockScope *prev;
    int nactive;          /* locals active when the block was entered */
    int captured;         /* one of its locals is captured by a closure */
    int inner_captured;   /* a local of a block inside it was captured */
    int is_loop;
    int break_list;
    int cont_list;
    int nroles;           /* role blocks open when the loop was entered */
} BlockScope;

typedef struct FuncState {
    struct FuncState *prev;
    Comp *c;
    ModCtx *mc;
    Proto *p;
    BlockScope *bl;
    BlockScope *top_bl;   /* the function's outermost block */
    LocalVar locals[MAX_REGS];
    int nactive;
    int freereg;
    const char *upnames[MAX_UPVALS];
    UpvalDesc updesc[MAX_UPVALS];
    int nup;
    int roles[MAX_ROLES];
    int nroles;
    int is_top;           /* the module's top-level code */
} FuncState;



/* ------------------------------------------------------------------ */
/* errors                                                              */

static void error_at(FuncState *fs, const AstNode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void error_pos(Comp *c, const ModCtx *mc, int line, int col, const char *fmt, va_list ap)
    __attribute__((noreturn));

static void error_pos(Comp *c, const ModCtx *mc, int line, int col, const char *fmt, va_list ap)
{
    char msg[512];
    err_vfmt(msg, sizeof msg, fmt, ap);
    diag_clear(&c->diag);
    diag_set(&c->diag, mc->file, line, col, mc->src, mc->len, "%s", msg);
    c->has_diag = 1;
    longjmp(c->jb, 1);
}

void error_mc(Comp *c, const ModCtx *mc, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_pos(c, mc, line, col, fmt, ap);
}

static void error_at(FuncState *fs, const AstNode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_pos(fs->c, fs->mc, at ? at->line : 0, at ? at->col : 0, fmt, ap);
}

static void oom(FuncState *fs, const AstNode *at) __attribute__((noreturn));
static void oom(FuncState *fs, const AstNode *at) { error_at(fs, at, "out of memory"); }

static char *xstrndup(FuncState *fs, const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) oom(fs, NULL);
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* ---- a default's source text (the lexer's rules, lang/lexer.re, in
 * miniature: strings with their ${ } pieces, # comments, brackets) ---- */

static const char *skip_code(const char *p, const char *e, int nested);

/* p at the opening quote (after an r/re prefix): past the closing one. */
static const char *skip_string(const char *p, const char *e)
{
    int triple = e - p >= 3 && p[1] == '"' && p[2] == '"';
    p += triple ? 3 : 1;
    while (p < e) {
        if (*p == '\\' && p + 1 < e) p += 2;
        else if (*p == '$' && p + 1 < e && p[1] == '{') p = skip_code(p + 2, e, 1) + 1;
        else if (*p == '"' && (!triple || (e - p >= 3 && p[1] == '"' && p[2] == '"'))) return p + (triple ? 3 : 1);
        else p++;
    }
    return e;
}

/* Past an expression: at the ',' or ')' that ends it (nested: the '}' that
 * closes a ${ }), brackets balanced. */
static const char *skip_code(const char *p, const char *e, int nested)
{
    int depth = 0;
    while (p < e) {
        char ch = *p;
        if (ch == '"') { p = skip_string(p, e); continue; }
        if (ch == '#') { while (p < e && *p != '\n') p++; continue; }
        if (ch == '(' || ch == '[' || ch == '{') depth++;
        else if (ch == ')' || ch == ']' || ch == '}') {
            if (depth == 0) return p;
            depth--;
        } else if (ch == ',' && depth == 0 && !nested) return p;
        p++;
    }
    return e;
}

static void json_str(StrBuf *b, const char *s, size_t n)
{
    sb_appendc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            sb_appendc(b, '\\');
            sb_appendc(b, (char)ch);
        } else if (ch < 0x20) {
            sb_printf(b, "\\u%04x", ch);
        } else {
            sb_appendc(b, (char)ch);
        }
    }
    sb_appendc(b, '"');
}

/* A literal default as JSON: 1 with it appended to b, or 0 (not a literal:
 * names, calls, operators, interpolation, a non-string map key, a float
 * JSON cannot hold). */
static int literal_json(StrBuf *b, const AstNode *n)
{
    switch (n->kind) {
    case AST_NIL: sb_appends(b, "null"); return 1;
    case AST_TRUE: sb_appends(b, "true"); return 1;
    case AST_FALSE: sb_appends(b, "false"); return 1;
    case AST_INT: sb_printf(b, "%lld", (long long)n->ival); return 1;
    case AST_FLOAT: {
        double v = n->fval;
        if (v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308) return 0;
        char buf[40];
        for (int prec = 15; prec <= 17; prec++) {   /* the shortest that reads back */
            snprintf(buf, sizeof buf, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
        sb_appends(b, buf);
        if (!strpbrk(buf, ".eE")) sb_appends(b, ".0");   /* still a float when read */
        return 1;
    }
    case AST_STRING:
        if (!utf8_valid(n->str, n->str_len)) return 0;
        json_str(b, n->str, n->str_len);
        return 1;
    case AST_UNARY:
        if (n->op != AST_OP_NEG || !n->a || (n->a->kind != AST_INT && n->a->kind != AST_FLOAT)) return 0;
        if (n->a->kind == AST_INT && n->a->ival == INT64_MIN) return 0;
        sb_appendc(b, '-');
        return literal_json(b, n->a);
    case AST_LIST:
        sb_appendc(b, '[');
        for (int i = 0; i < n->list.len; i++) {
            if (i) sb_appendc(b, ',');
            if (!literal_json(b, n->list.items[i])) return 0;
        }
        sb_appendc(b, ']');
        return 1;
    case AST_MAP:
        sb_appendc(b, '{');
        for (int i = 0; i < n->list.len; i++) {
            const AstNode *pair = n->list.items[i];
            if (!pair->a || pair->a->kind != AST_STRING || !pair->b) return 0;
            if (i) sb_appendc(b, ',');
            if (!literal_json(b, pair->a)) return 0;
            sb_appendc(b, ':');
            if (!literal_json(b, pair->b)) return 0;
        }
        sb_appendc(b, '}');
        return 1;
    default: return 0;
    }
}

/* The text after `NAME =` of parameter pn, trimmed; NULL when it cannot be
 * found (a source that is not the one parsed). */
static char *source_text(FuncState *fs, const AstNode *pn)
{
    const char *s = fs->mc->src, *e = s + fs->mc->len, *p = s;
    if (!s) return NULL;
    for (int line = 1; line < pn->line && p < e; p++)
        if (*p == '\n') line++;
    p += pn->col - 1;
    size_t nlen = strlen(pn->name);
    if (p + nlen > e || memcmp(p, pn->name, nlen) != 0) return NULL;
    p += nlen;
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    if (p >= e || *p != '=') return NULL;
    p++;
    const char *end = skip_code(p, e, 0);
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n')) end--;
    return xstrndup(fs, p, (size_t)(end - p));
}

/* Proto.param_defaults[i]: "J" + JSON for a literal, else "E" + its source
 * text; NULL when neither can be had. */
static char *default_text(FuncState *fs, const AstNode *pn)
{
    StrBuf b;
    sb_init(&b);
    sb_appendc(&b, 'J');
    if (literal_json(&b, pn->a) && !b.oom) return sb_detach(&b);
    sb_free(&b);
    char *src = source_text(fs, pn);
    if (!src) return NULL;
    size_t n = strlen(src);
    char *tagged = xstrndup(fs, src, n + 1);
    memmove(tagged + 1, src, n + 1);
    tagged[0] = 'E';
    free(src);
    return tagged;
}

/* ------------------------------------------------------------------ */
/* emitting                                                            */

static int emit(FuncState *fs, Instr i, const AstNode *at)
{
    int pc = chunk_emit(fs->p, i, at ? at->line : 0, at ? at->col : 0);
    if (pc < 0) oom(fs, at);
    return pc;
}

static int emit_abc(FuncState *fs, OpCode op, int a, int b, int c, const AstNode *at)
{
    return emit(fs, CREATE_ABC(op, a, b, c), at);
}

static int emit_abx(FuncState *fs, OpCode op, int a, int bx, const AstNode *at)
{
    if (bx < 0 || bx > MAXARG_Bx) error_at(fs, at, "function too large (operand %d out of range)", bx);
    return emit(fs, CREATE_ABx(op, a, bx), at);
}

static int emit_asbx(FuncState *fs, OpCode op, int a, int sbx, const AstNode *at)
{
    return emit(fs, CREATE_ABx(op, a, sbx + OFFSET_sBx), at);
}

static int pc_here(FuncState *fs) { return fs->p->ncode; }

static int emit_jump(FuncState *fs, const AstNode *at)
{
    return emit(fs, CREATE_sJ(OP_JMP, NO_JUMP), at);
}

static int jump_next(FuncState *fs, int pc)
{
    int off = GETARG_sJ(fs->p->code[pc]);
    return off == NO_JUMP ? NO_JUMP : pc + 1 + off;
}

static void set_jump(FuncState *fs, int pc, int target)
{
    int off = target - (pc + 1);
    if (off < -OFFSET_sJ || off > MAXARG_sJ - OFFSET_sJ) error_at(fs, NULL, "function too large (jump out of range)");
    fs->p->code[pc] = CREATE_sJ(OP_JMP, off);
}

/* Appends list l2 to list *l1. */
static void jump_concat(FuncState *fs, int *l1, int l2)
{
    if (l2 == NO_JUMP) return;
    if (*l1 == NO_JUMP) { *l1 = l2; return; }
    int list = *l1, next;
    while ((next = jump_next(fs, list)) != NO_JUMP) list = next;
    int off = l2 - (list + 1);
    fs->p->code[list] = CREATE_sJ(OP_JMP, off);
}

static void patch_to(FuncState *fs, int list, int target)
{
    while (list != NO_JUMP) {
        int next = jump_next(fs, list);
        set_jump(fs, list, target);
        list = next;
    }
}

static void patch_here(FuncState *fs, int list) { patch_to(fs, list, pc_here(fs)); }

/* Jumps of the iAsBx form (ARGDEF, FORPREP, ...): patched directly. */
static void fix_sbx(FuncState *fs, int pc, int target, const AstNode *at)
{
    int off = target - (pc + 1);
    if (off < -OFFSET_sBx || off > MAXARG_Bx - OFFSET_sBx) error_at(fs, at, "loop or function body too large");
    Instr i = fs->p->code[pc];
    fs->p->code[pc] = CREATE_ABx(GET_OP(i), GETARG_A(i), off + OFFSET_sBx);
}

/* ------------------------------------------------------------------ */
/* registers and constants                                             */

static int reg_alloc(FuncState *fs, int n, const AstNode *at)
{
    int r = fs->freereg;
    if (r + n > MAX_REGS) error_at(fs, at, "function or expression too complex (more than %d registers)", MAX_REGS);
    fs->freereg += n;
    if (fs->freereg > fs->p->maxstack) fs->p->maxstack = fs->freereg;
    return r;
}

static int add_const(FuncState *fs, Const *k, const AstNode *at)
{
    if (fs->p->nconsts > MAXARG_Bx) error_at(fs, at, "too many constants in one function");
    int i = chunk_add_const(fs->p, k);
    if (i < 0) { chunk_const_clear(k); oom(fs, at); }
    return i;
}

static int k_int(FuncState *fs, int64_t v, const AstNode *at)
{
    for (int i = 0; i < fs->p->nconsts; i++)
        if (fs->p->consts[i].kind == KC_INT && fs->p->consts[i].i == v) return i;
    Const k = {.kind = KC_INT, .i = v};
    return add_const(fs, &k, at);
}

static int k_float(FuncState *fs, double v, const AstNode *at)
{
    for (int i = 0; i < fs->p->nconsts; i++)
        if (fs->p->consts[i].kind == KC_FLOAT && memcmp(&fs->p->consts[i].f, &v, sizeof v) == 0) return i;
    Const k = {.kind = KC_FLOAT, .f = v};
    return add_const(fs, &k, at);
}

static int k_strkind(FuncState *fs, ConstKind kind, const char *s, size_t len, const AstNode *at)
{
    for (int i = 0; i < fs->p->nconsts; i++) {
        const Const *k = &fs->p->consts[i];
        if (k->kind == kind && k->len == len && memcmp(k->s, s, len) == 0) return i;
    }
    Const k = {.kind = kind, .len = len};
    k.s = xstrndup(fs, s, len);
    return add_const(fs, &k, at);
}

static int k_str(FuncState *fs, const char *s, size_t len, const AstNode *at)
{
    return k_strkind(fs, KC_STRING, s, len, at);
}

static int k_grammar(FuncState *fs, const char *name, const char *src, size_t len, const AstNode *at)
{
    Const k = {.kind = KC_GRAMMAR, .len = len};
    k.s = xstrndup(fs, src, len);
    k.name = malloc(strlen(name) + 1);
    if (!k.name) { free(k.s); oom(fs, at); }
    strcpy(k.name, name);
    return add_const(fs, &k, at);
}

/* ------------------------------------------------------------------ */
/* scopes and names                                                    */

static void enter_block(FuncState *fs, BlockScope *bl, int is_loop)
{
    memset(bl, 0, sizeof *bl);
    bl->prev = fs->bl;
    bl->nactive = fs->nactive;
    bl->is_loop = is_loop;
    bl->break_list = NO_JUMP;
    bl->cont_list = NO_JUMP;
    bl->nroles = fs->nroles;
    fs->bl = bl;
}

/* Leaves a block: its locals go out of scope; captured ones are closed so a
 * register reused later is not seen by the closures. */
static void leave_block(FuncState *fs, const AstNode *at)
{
    BlockScope *bl = fs->bl;
    if (bl->captured && bl->prev && !bl->is_loop) emit_abc(fs, OP_CLOSE, bl->nactive, 0, 0, at);
    if (bl->prev && (bl->captured || bl->inner_captured)) bl->prev->inner_captured = 1;
    fs->bl = bl->prev;
    fs->nactive = bl->nactive;
    fs->freereg = fs->nactive;
}

static void add_local(FuncState *fs, const char *name, int reg, const AstNode *at)
{
    if (reg != fs->nactive) error_at(fs, at, "internal error: local register out of order");
    if (fs->nactive >= MAX_REGS) error_at(fs, at, "too many local variables");
    fs->locals[fs->nactive].name = name;
    fs->locals[fs->nactive].reg = reg;
    fs->nactive++;
    if (fs->freereg < fs->nactive) fs->freereg = fs->nactive;
}

static int find_local(FuncState *fs, const char *name)
{
    for (int i = fs->nactive - 1; i >= 0; i--)
        if (fs->locals[i].name && strcmp(fs->locals[i].name, name) == 0) return i;
    return -1;
}

static void mark_captured(FuncState *fs, int local)
{
    for (BlockScope *bl = fs->bl; bl; bl = bl->prev)
        if (bl->nactive <= local) { bl->captured = 1; return; }
}

static int add_upval(FuncState *fs, const char *name, int instack, int idx, const AstNode *at)
{
    if (fs->nup >= MAX_UPVALS) error_at(fs, at, "too many captured variables in one function");
    fs->upnames[fs->nup] = name;
    fs->updesc[fs->nup].instack = (uint8_t)instack;
    fs->updesc[fs->nup].idx = (uint8_t)idx;
    return fs->nup++;
}

/* Upvalue index of `name` in fs, creating it through the enclosing
 * functions; -1 if no enclosing function has such a local. */
static int find_upval(FuncState *fs, const char *name, const AstNode *at)
{
    for (int i = 0; i < fs->nup; i++)
        if (strcmp(fs->upnames[i], name) == 0) return i;
    FuncState *up = fs->prev;
    if (!up) return -1;
    int l = find_local(up, name);
    if (l >= 0) {
        mark_captured(up, l);
        return add_upval(fs, name, 1, up->locals[l].reg, at);
    }
    int u = find_upval(up, name, at);
    if (u < 0) return -1;
    return add_upval(fs, name, 0, u, at);
}

typedef enum { VAR_LOCAL, VAR_UPVAL, VAR_GLOBAL, VAR_BUILTIN, VAR_STATE } VarKind;

static Module *cur_module(FuncState *fs) { return &fs->c->prog->mods[fs->mc->mod]; }

static int find_builtin(FuncState *fs, const char *name)
{
    const CmpOptions *o = fs->c->opt;
    for (int i = 0; i < o->nbuiltins; i++)
        if (strcmp(o->builtins[i], name) == 0) return i;
    return -1;
}

static VarKind resolve(FuncState *fs, const char *name, int *idx, const AstNode *at)
{
    int l = find_local(fs, name);
    if (l >= 0) { *idx = fs->locals[l].reg; return VAR_LOCAL; }
    int u = find_upval(fs, name, at);
    if (u >= 0) { *idx = u; return VAR_UPVAL; }
    int g = chunk_find_global(cur_module(fs), name);
    if (g >= 0) { *idx = g; return VAR_GLOBAL; }
    if (find_builtin(fs, name) >= 0) { *idx = 0; return VAR_BUILTIN; }
    if (strcmp(name, "state") == 0) { *idx = 0; return VAR_STATE; }
    error_at(fs, at, "undefined name '%s'", name);
}

/* ------------------------------------------------------------------ */
/* expressions                                                         */

static void expr_to(FuncState *fs, AstNode *e, int dst);
static int expr_any(FuncState *fs, AstNode *e);
static int cond_jump(FuncState *fs, AstNode *e, int jump_when);
static void block_stmt(FuncState *fs, AstNode *blk);
static void stmt(FuncState *fs, AstNode *s);
static int function(FuncState *fs, const char *name, AstList *params, const char *fork_var,
                    AstNode *body, const AstNode *at);

static int is_int_lit(const AstNode *e, int64_t lo, int64_t hi, int64_t *v)
{
    if (!e) return 0;
    if (e->kind == AST_INT && e->ival >= lo && e->ival <= hi) { *v = e->ival; return 1; }
    if (e->kind == AST_UNARY && e->op == AST_OP_NEG && e->a->kind == AST_INT &&
        e->a->ival <= -lo && -e->a->ival <= hi) { *v = -e->a->ival; return 1; }
    return 0;
}

/* A numeric literal as a constant index (small enough for a C operand), or -1. */
static int num_const(FuncState *fs, const AstNode *e)
{
    int k;
    if (e->kind == AST_INT) k = k_int(fs, e->ival, e);
    else if (e->kind == AST_FLOAT) k = k_float(fs, e->fval, e);
    else if (e->kind == AST_UNARY && e->op == AST_OP_NEG && e->a->kind == AST_INT && e->a->ival != INT64_MIN)
        k = k_int(fs, -e->a->ival, e);
    else if (e->kind == AST_UNARY && e->op == AST_OP_NEG && e->a->kind == AST_FLOAT)
        k = k_float(fs, -e->a->fval, e);
    else return -1;
    return k <= MAXARG_C ? k : -1;
}

static void load_const(FuncState *fs, int k, int dst, const AstNode *at)
{
    emit_abx(fs, OP_LOADK, dst, k, at);
}

static void check_regex(FuncState *fs, const AstNode *e)
{
    int col = 0;
    char msg[256] = "";
    if (rx_check(e->str, e->str_len, &col, msg, sizeof msg) != 0) {
        /* col counts from the first byte of the regex, after `re"` */
        int at_col = e->col + 3 + (col > 0 ? col - 1 : 0);
        error_mc(fs->c, fs->mc, e->line, at_col, "bad regex: %s", msg[0] ? msg : "syntax error");
    }
}

/* The register of a `fn`/lambda value: closure of a freshly compiled child. */
static int closure_to(FuncState *fs, AstNode *fn, int dst, const char *name)
{
    int child = function(fs, name ? name : fn->name, &fn->list, NULL, fn->a, fn);
    emit_abx(fs, OP_CLOSURE, dst, child, fn);
    return child;
}

static void interp_to(FuncState *fs, AstNode *e, int dst)
{
    AstList *parts = &e->list;
    if (parts->len == 0) { load_const(fs, k_str(fs, "", 0, e), dst, e); return; }
    if (parts->len == 1 && parts->items[0]->kind == AST_STRING) {
        expr_to(fs, parts->items[0], dst);
        return;
    }
    int save = fs->freereg;
    int base = (dst >= fs->nactive && dst == fs->freereg - 1) ? dst : reg_alloc(fs, 1, e);
    int after = fs->freereg;
    int i = 0, n = 0;
    /* CONCAT joins R[base..base+n); later chunks start with the text so far */
    while (i < parts->len) {
        int r = n == 0 ? base : reg_alloc(fs, 1, e);
        expr_to(fs, parts->items[i++], r);
        n++;
        if (n == CONCAT_CHUNK || i == parts->len) {
            emit_abc(fs, OP_CONCAT, base, n, 0, e);
            fs->freereg = after;
            n = 1;
        }
    }
    if (base != dst) emit_abc(fs, OP_MOVE, dst, base, 0, e);
    fs->freereg = save;
}

/* List and map literals: items (or key/value pairs) are evaluated into
 * consecutive registers above R[base] in chunks; the first chunk creates the
 * collection (NEWLIST/NEWMAP), later ones extend it (LISTADD/MAPADD). */
static void collection_to(FuncState *fs, AstNode *e, int dst, int pairs)
{
    int save = fs->freereg;
    int base = (dst >= fs->nactive && dst == fs->freereg - 1) ? dst : reg_alloc(fs, 1, e);
    int after = fs->freereg;
    int width = pairs ? 2 : 1;
    int i = 0, first = 1;
    do {
        int n = 0;
        while (i < e->list.len && n < LIST_CHUNK / width) {
            AstNode *item = e->list.items[i++];
            int r = reg_alloc(fs, width, pairs ? item : e);
            if (pairs) {
                expr_to(fs, item->a, r);
                expr_to(fs, item->b, r + 1);
            } else {
                expr_to(fs, item, r);
            }
            n++;
        }
        OpCode op = pairs ? (first ? OP_NEWMAP : OP_MAPADD) : (first ? OP_NEWLIST : OP_LISTADD);
        emit_abc(fs, op, base, n, 0, e);
        fs->freereg = after;
        first = 0;
    } while (i < e->list.len);
    if (base != dst) emit_abc(fs, OP_MOVE, dst, base, 0, e);
    fs->freereg = save;
}

/* Calls: callee in R[base], positional arguments above it, then named ones. */
static void call_to(FuncState *fs, AstNode *e, int dst)
{
    int save = fs->freereg;
    int base = (dst >= fs->nactive && dst == fs->freereg - 1) ? dst : reg_alloc(fs, 1, e);
    expr_to(fs, e->a, base);
    int npos = 0, nnamed = 0;
    const char *names[MAXARG_C];
    for (int i = 0; i < e->list.len; i++) {
        AstNode *arg = e->list.items[i];
        if (arg->name) {
            for (int j = 0; j < nnamed; j++)
                if (strcmp(names[j], arg->name) == 0) error_at(fs, arg, "argument '%s' given twice", arg->name);
            if (nnamed >= MAXARG_C) error_at(fs, arg, "too many arguments");
            names[nnamed++] = arg->name;
        } else {
            if (nnamed) error_at(fs, arg, "positional argument after a named argument");
            npos++;
        }
        if (npos + nnamed > MAXARG_B) error_at(fs, arg, "too many arguments");
        int r = reg_alloc(fs, 1, arg);
        expr_to(fs, arg->a, r);
    }
    if (nnamed == 0) {
        emit_abc(fs, OP_CALL, base, npos, 0, e);
    } else {
        Const k = {.kind = KC_NAMES, .nnames = nnamed};
        k.names = calloc((size_t)nnamed, sizeof(char *));
        if (!k.names) oom(fs, e);
        for (int j = 0; j < nnamed; j++) {
            k.names[j] = malloc(strlen(names[j]) + 1);
            if (!k.names[j]) { chunk_const_clear(&k); oom(fs, e); }
            strcpy(k.names[j], names[j]);
        }
        int ki = add_const(fs, &k, e);
        emit_abc(fs, OP_CALLKW, base, npos, nnamed, e);
        emit(fs, CREATE_Ax(OP_EXTRAARG, ki), e);
    }
    if (base != dst) emit_abc(fs, OP_MOVE, dst, base, 0, e);
    fs->freereg = save;
}

static int arith_op(int astop)
{
    switch (astop) {
    case AST_OP_ADD: return OP_ADD;
    case AST_OP_SUB: return OP_SUB;
    case AST_OP_MUL: return OP_MUL;
    case AST_OP_DIV: return OP_DIV;
    case AST_OP_MOD: return OP_MOD;
    default: return -1;
    }
}

/* dst := a <op> b, for arithmetic operators; b may already be in register rb
 * (compound assignment) when bnode is NULL. */
static void arith_to(FuncState *fs, int astop, int ra, AstNode *bnode, int rb, int dst, const AstNode *at)
{
    int op = arith_op(astop);
    int64_t v;
    if (bnode && (astop == AST_OP_ADD || astop == AST_OP_SUB) &&
        is_int_lit(bnode, -OFFSET_sC + 1, OFFSET_sC - 1, &v)) {
        if (astop == AST_OP_SUB) v = -v;
        emit_abc(fs, OP_ADDI, dst, ra, (int)v + OFFSET_sC, at);
        return;
    }
    if (bnode) {
        int k = num_const(fs, bnode);
        if (k >= 0) {
            emit_abc(fs, op - OP_ADD + OP_ADDK, dst, ra, k, at);
            return;
        }
        int save = fs->freereg;
        rb = expr_any(fs, bnode);
        emit_abc(fs, op, dst, ra, rb, at);
        fs->freereg = save;
        return;
    }
    emit_abc(fs, op, dst, ra, rb, at);
}

static int is_compare(const AstNode *e)
{
    if (e->kind != AST_BINARY) return 0;
    switch (e->op) {
    case AST_OP_EQ: case AST_OP_NE: case AST_OP_LT: case AST_OP_LE: case AST_OP_GT: case AST_OP_GE:
        return 1;
    default:
        return 0;
    }
}

/* A boolean-valued expression (comparison, and/or used for their truth,
 * not): dst := true/false through a condition jump. */
static void bool_to(FuncState *fs, AstNode *e, int dst)
{
    int jt = cond_jump(fs, e, 1);
    emit_abc(fs, OP_LFALSESKIP, dst, 0, 0, e);
    patch_here(fs, jt);
    emit_abc(fs, OP_LOADTRUE, dst, 0, 0, e);
}

static void expr_to(FuncState *fs, AstNode *e, int dst)
{
    int save = fs->freereg;
    switch (e->kind) {
    case AST_NIL: emit_abc(fs, OP_LOADNIL, dst, 0, 0, e); break;
    case AST_TRUE: emit_abc(fs, OP_LOADTRUE, dst, 0, 0, e); break;
    case AST_FALSE: emit_abc(fs, OP_LOADFALSE, dst, 0, 0, e); break;
    case AST_INT:
        if (e->ival >= -OFFSET_sBx && e->ival <= MAXARG_Bx - OFFSET_sBx) emit_asbx(fs, OP_LOADI, dst, (int)e->ival, e);
        else load_const(fs, k_int(fs, e->ival, e), dst, e);
        break;
    case AST_FLOAT: load_const(fs, k_float(fs, e->fval, e), dst, e); break;
    case AST_STRING: load_const(fs, k_str(fs, e->str, e->str_len, e), dst, e); break;
    case AST_INTERP: interp_to(fs, e, dst); break;
    case AST_REGEX:
        check_regex(fs, e);
        load_const(fs, k_strkind(fs, KC_REGEX, e->str, e->str_len, e), dst, e);
        break;
    case AST_IDENT: {
        int idx;
        switch (resolve(fs, e->name, &idx, e)) {
        case VAR_LOCAL: if (idx != dst) emit_abc(fs, OP_MOVE, dst, idx, 0, e); break;
        case VAR_UPVAL: emit_abc(fs, OP_GETUPVAL, dst, idx, 0, e); break;
        case VAR_GLOBAL: emit_abx(fs, OP_GETGLOBAL, dst, idx, e); break;
        case VAR_BUILTIN:
            load_const(fs, k_strkind(fs, KC_BUILTIN, e->name, strlen(e->name), e), dst, e);
            break;
        case VAR_STATE: emit_abc(fs, OP_GETSTATE, dst, 0, 0, e); break;
        }
        break;
    }
    case AST_LIST: collection_to(fs, e, dst, 0); break;
    case AST_MAP: collection_to(fs, e, dst, 1); break;
    case AST_BINARY:
        if (is_compare(e)) { bool_to(fs, e, dst); break; }
        if (e->op == AST_OP_RANGE || e->op == AST_OP_IN) {
            int ra = expr_any(fs, e->a);
            int rb = expr_any(fs, e->b);
            emit_abc(fs, e->op == AST_OP_RANGE ? OP_RANGE : OP_IN, dst, ra, rb, e);
            break;
        }
        if (arith_op(e->op) < 0) error_at(fs, e, "internal error: bad binary operator");
        {
            int ra = expr_any(fs, e->a);
            arith_to(fs, e->op, ra, e->b, 0, dst, e);
        }
        break;
    case AST_UNARY:
        if (e->op == AST_OP_NEG) {
            if (e->a->kind == AST_INT && e->a->ival != INT64_MIN) {
                AstNode lit = *e->a;
                lit.ival = -lit.ival;
                lit.line = e->line;
                lit.col = e->col;
                expr_to(fs, &lit, dst);
                break;
            }
            if (e->a->kind == AST_FLOAT) {
                load_const(fs, k_float(fs, -e->a->fval, e), dst, e);
                break;
            }
            int r = expr_any(fs, e->a);
            emit_abc(fs, OP_UNM, dst, r, 0, e);
        } else {
            int r = expr_any(fs, e->a);
            emit_abc(fs, OP_NOT, dst, r, 0, e);
        }
        break;
    case AST_AND:
    case AST_OR: {
        /* the left value must not land in a live local before the right
         * side (which may read that local) has run */
        int t = dst < fs->nactive ? reg_alloc(fs, 1, e) : dst;
        expr_to(fs, e->a, t);
        emit_abc(fs, OP_TEST, t, 0, e->kind == AST_OR ? 1 : 0, e);
        int j = emit_jump(fs, e);
        expr_to(fs, e->b, t);
        patch_here(fs, j);
        if (t != dst) emit_abc(fs, OP_MOVE, dst, t, 0, e);
        break;
    }
    case AST_COND: {
        int jf = cond_jump(fs, e->a, 0);
        expr_to(fs, e->b, dst);
        int jend = emit_jump(fs, e);
        patch_here(fs, jf);
        expr_to(fs, e->c, dst);
        patch_here(fs, jend);
        break;
    }
    case AST_CALL: call_to(fs, e, dst); break;
    case AST_INDEX: {
        int ro = expr_any(fs, e->a);
        int ri = expr_any(fs, e->b);
        emit_abc(fs, OP_INDEX, dst, ro, ri, e);
        break;
    }
    case AST_FIELD: {
        int ro = expr_any(fs, e->a);
        int k = k_str(fs, e->name, strlen(e->name), e);
        if (k <= MAXARG_C - 1) {
            emit_abc(fs, OP_FIELD, dst, ro, k, e);
        } else {
            /* C == MAXARG_C: the constant index follows in an EXTRAARG */
            emit_abc(fs, OP_FIELD, dst, ro, MAXARG_C, e);
            emit(fs, CREATE_Ax(OP_EXTRAARG, k), e);
        }
        break;
    }
    case AST_FN: closure_to(fs, e, dst, NULL); break;
    case AST_FORK: {
        int base = reg_alloc(fs, 2, e);
        expr_to(fs, e->a, base);
        int child = function(fs, "<fork>", NULL, e->name, e->b, e);
        emit_abx(fs, OP_CLOSURE, base + 1, child, e);
        emit_abc(fs, OP_FORK, base, base, 0, e);
        if (base != dst) emit_abc(fs, OP_MOVE, dst, base, 0, e);
        break;
    }
    default:
        error_at(fs, e, "%s is not an expression", ast_kind_name(e->kind));
    }
    fs->freereg = save;
}

static int expr_any(FuncState *fs, AstNode *e)
{
    if (e->kind == AST_IDENT) {
        int l = find_local(fs, e->name);
        if (l >= 0) return fs->locals[l].reg;
    }
    int r = reg_alloc(fs, 1, e);
    expr_to(fs, e, r);
    return r;
}

/* Emits a comparison followed by a JMP taken when the comparison's result
 * equals `when`; returns the JMP's address. */
static int compare_jump(FuncState *fs, AstNode *e, int when)
{
    int save = fs->freereg;
    AstNode *a = e->a, *b = e->b;
    int op = e->op;
    int flag = when;
    if (op == AST_OP_NE) { op = AST_OP_EQ; flag = !when; }
    int64_t v;
    int lo = -OFFSET_sC + 1, hi = OFFSET_sC - 1;
    if (op == AST_OP_EQ) {
        if (is_int_lit(b, lo, hi, &v)) {
            int ra = expr_any(fs, a);
            emit_abc(fs, OP_EQI, ra, (int)v + OFFSET_sC, flag, e);
        } else if (is_int_lit(a, lo, hi, &v)) {
            int rb = expr_any(fs, b);
            emit_abc(fs, OP_EQI, rb, (int)v + OFFSET_sC, flag, e);
        } else if (b->kind == AST_STRING || b->kind == AST_FLOAT || b->kind == AST_INT) {
            int ra = expr_any(fs, a);
            int k = b->kind == AST_STRING ? k_str(fs, b->str, b->str_len, b)
                  : b->kind == AST_INT ? k_int(fs, b->ival, b) : k_float(fs, b->fval, b);
            if (k <= MAXARG_B) {
                emit_abc(fs, OP_EQK, ra, k, flag, e);
            } else {
                int rb = reg_alloc(fs, 1, b);
                load_const(fs, k, rb, b);
                emit_abc(fs, OP_EQ, ra, rb, flag, e);
            }
        } else {
            int ra = expr_any(fs, a);
            int rb = expr_any(fs, b);
            emit_abc(fs, OP_EQ, ra, rb, flag, e);
        }
    } else {
        /* order comparisons: an immediate on either side, else registers
         * (a > b is b < a) */
        if (is_int_lit(b, lo, hi, &v)) {
            static const int imm_op[] = {[AST_OP_LT] = OP_LTI, [AST_OP_LE] = OP_LEI,
                                         [AST_OP_GT] = OP_GTI, [AST_OP_GE] = OP_GEI};
            int ra = expr_any(fs, a);
            emit_abc(fs, imm_op[op], ra, (int)v + OFFSET_sC, flag, e);
        } else if (is_int_lit(a, lo, hi, &v)) {
            /* 3 < x is x > 3 */
            static const int rev_op[] = {[AST_OP_LT] = OP_GTI, [AST_OP_LE] = OP_GEI,
                                         [AST_OP_GT] = OP_LTI, [AST_OP_GE] = OP_LEI};
            int rb = expr_any(fs, b);
            emit_abc(fs, rev_op[op], rb, (int)v + OFFSET_sC, flag, e);
        } else {
            int ra = expr_any(fs, a);
            int rb = expr_any(fs, b);
            if (op == AST_OP_LT) emit_abc(fs, OP_LT, ra, rb, flag, e);
            else if (op == AST_OP_LE) emit_abc(fs, OP_LE, ra, rb, flag, e);
            else if (op == AST_OP_GT) emit_abc(fs, OP_LT, rb, ra, flag, e);
            else emit_abc(fs, OP_LE, rb, ra, flag, e);
        }
    }
    fs->freereg = save;
    return emit_jump(fs, e);
}

/* Returns the list of jumps taken when the truth of e equals jump_when;
 * falls through otherwise. */
static int cond_jump(FuncState *fs, AstNode *e, int jump_when)
{
    switch (e->kind) {
    case AST_TRUE:
        return jump_when ? emit_jump(fs, e) : NO_JUMP;
    case AST_FALSE:
    case AST_NIL:
        return jump_when ? NO_JUMP : emit_jump(fs, e);
    case AST_UNARY:
        if (e->op == AST_OP_NOT) return cond_jump(fs, e->a, !jump_when);
        break;
    case AST_AND:
    case AST_OR: {
        /* `a and b` is false when either is; `a or b` true when either is */
        int shortcut = e->kind == AST_AND ? 0 : 1;
        if (jump_when == shortcut) {
            int l = cond_jump(fs, e->a, jump_when);
            jump_concat(fs, &l, cond_jump(fs, e->b, jump_when));
            return l;
        }
        int skip = cond_jump(fs, e->a, shortcut);
        int l = cond_jump(fs, e->b, jump_when);
        patch_here(fs, skip);
        return l;
    }
    case AST_BINARY:
        if (is_compare(e)) return compare_jump(fs, e, jump_when);
        break;
    default:
        break;
    }
    int save = fs->freereg;
    int r = expr_any(fs, e);
    emit_abc(fs, OP_TEST, r, 0, jump_when, e);
    fs->freereg = save;
    return emit_jump(fs, e);
}

/* ------------------------------------------------------------------ */
/* statements                                                          */

static int module_level(FuncState *fs) { return fs->is_top && fs->bl == fs->top_bl; }

/* Binds a value being computed to `name`: a global slot at module level,
 * else a new local. Calls gen(fs, reg) to fill the register. */
static void bind_name(FuncState *fs, const char *name, AstNode *value, const AstNode *at)
{
    if (module_level(fs)) {
        int slot = chunk_find_global(cur_module(fs), name);
        if (slot < 0) error_at(fs, at, "internal error: undeclared global '%s'", name);
        int r = reg_alloc(fs, 1, at);
        if (value->kind == AST_FN) {
            /* `let f = fn(...)` can be an entry point like `fn f(...)` */
            int child = closure_to(fs, value, r, name);
            cur_module(fs)->global_fn[slot] = fs->p->children[child]->id;
        } else {
            expr_to(fs, value, r);
            cur_module(fs)->global_fn[slot] = -1;
        }
        emit_abx(fs, OP_SETGLOBAL, r, slot, at);
        fs->freereg = fs->nactive;
        return;
    }
    int r = reg_alloc(fs, 1, at);
    if (value->kind == AST_FN) {
        /* the name is visible inside the function, so it can recurse */
        add_local(fs, name, r, at);
        closure_to(fs, value, r, name);
    } else {
        expr_to(fs, value, r);
        add_local(fs, name, r, at);
    }
}

/* The pieces of one line appended under the §4 rule. `strict`: each piece
 * must be a string or nil (side-by-side pieces, one-line roles). */
static void append_piece(FuncState *fs, AstNode *e, int strict)
{
    int save = fs->freereg;
    if (e->kind == AST_STRING) {
        if (e->str_len) emit_abx(fs, OP_APPENDK, 0, k_str(fs, e->str, e->str_len, e), e);
    } else if (e->kind == AST_INTERP) {
        /* piece by piece, so a model call inside ${} sees the text before it */
        for (int i = 0; i < e->list.len; i++) {
            AstNode *part = e->list.items[i];
            if (part->kind == AST_STRING) {
                if (part->str_len) emit_abx(fs, OP_APPENDK, 0, k_str(fs, part->str, part->str_len, part), part);
            } else {
                int r = expr_any(fs, part);
                int t = reg_alloc(fs, 1, part);
                emit_abc(fs, OP_TOSTR, t, r, 0, part);
                emit_abc(fs, OP_APPEND, t, 0, 0, part);
                fs->freereg = save;
            }
        }
    } else {
        int r = expr_any(fs, e);
        emit_abc(fs, strict ? OP_APPENDP : OP_APPEND, r, 0, 0, e);
    }
    fs->freereg = save;
}

static void assign_stmt(FuncState *fs, AstNode *s)
{
    AstNode *t = s->a;
    int op = s->op;
    if (op != AST_OP_NONE && arith_op(op) < 0) error_at(fs, s, "internal error: bad assignment operator");
    if (t->kind == AST_IDENT) {
        int idx;
        VarKind k = resolve(fs, t->name, &idx, t);
        if (k == VAR_BUILTIN) error_at(fs, t, "cannot assign to built-in '%s'", t->name);
        if (k == VAR_STATE) error_at(fs, t, "cannot assign to 'state'");
        if (k == VAR_LOCAL) {
            if (op == AST_OP_NONE) expr_to(fs, s->b, idx);
            else arith_to(fs, op, idx, s->b, 0, idx, s);
            return;
        }
        int r = reg_alloc(fs, 1, s);
        if (op == AST_OP_NONE) {
            expr_to(fs, s->b, r);
        } else {
            expr_to(fs, t, r);
            arith_to(fs, op, r, s->b, 0, r, s);
        }
        if (k == VAR_UPVAL) emit_abc(fs, OP_SETUPVAL, r, idx, 0, s);
        else emit_abx(fs, OP_SETGLOBAL, r, idx, s);
        return;
    }
    if (t->kind == AST_INDEX) {
        int ro = expr_any(fs, t->a);
        int ri = expr_any(fs, t->b);
        int rv;
        if (op == AST_OP_NONE) {
            rv = expr_any(fs, s->b);
        } else {
            rv = reg_alloc(fs, 1, s);
            emit_abc(fs, OP_INDEX, rv, ro, ri, t);
            arith_to(fs, op, rv, s->b, 0, rv, s);
        }
        emit_abc(fs, OP_SETINDEX, ro, ri, rv, s);
        return;
    }
    if (t->kind == AST_FIELD) {
        int ro = expr_any(fs, t->a);
        int k = k_str(fs, t->name, strlen(t->name), t);
        int rv;
        if (op == AST_OP_NONE) {
            rv = expr_any(fs, s->b);
        } else {
            rv = reg_alloc(fs, 1, s);
            if (k <= MAXARG_C - 1) {
                emit_abc(fs, OP_FIELD, rv, ro, k, t);
            } else {
                emit_abc(fs, OP_FIELD, rv, ro, MAXARG_C, t);
                emit(fs, CREATE_Ax(OP_EXTRAARG, k), t);
            }
            arith_to(fs, op, rv, s->b, 0, rv, s);
        }
        if (k <= MAXARG_B - 1) {
            emit_abc(fs, OP_SETFIELD, ro, k, rv, s);
        } else {
            emit_abc(fs, OP_SETFIELD, ro, MAXARG_B, rv, s);
            emit(fs, CREATE_Ax(OP_EXTRAARG, k), s);
        }
        return;
    }
    error_at(fs, t, "cannot assign to this expression");
}

/* Emits ROLEEND for the role blocks opened after `keep` were. */
static void close_roles(FuncState *fs, int keep, const AstNode *at)
{
    for (int i = fs->nroles - 1; i >= keep; i--) emit_abc(fs, OP_ROLEEND, fs->roles[i], 0, 0, at);
}

/* `return e`; `return c ? a : b` returns from each branch (no join). */
static void return_value(FuncState *fs, AstNode *e, const AstNode *at)
{
    if (e && e->kind == AST_COND) {
        int jf = cond_jump(fs, e->a, 0);
        return_value(fs, e->b, at);
        patch_here(fs, jf);
        return_value(fs, e->c, at);
        return;
    }
    int save = fs->freereg;
    if (e) {
        int r = expr_any(fs, e);
        close_roles(fs, 0, at);
        emit_abc(fs, OP_RETURN, r, 0, 0, at);
    } else {
        close_roles(fs, 0, at);
        emit_abc(fs, OP_RETURN0, 0, 0, 0, at);
    }
    fs->freereg = save;
}

static BlockScope *innermost_loop(FuncState *fs)
{
    for (BlockScope *bl = fs->bl; bl; bl = bl->prev)
        if (bl->is_loop) return bl;
    return NULL;
}


/* After a loop's body: the continue point and the exit, both closing the
 * loop's captured variables (the body may have been left by a jump). */
static int loop_needs_close(BlockScope *loop) { return loop->captured || loop->inner_captured; }

static void while_stmt(FuncState *fs, AstNode *s)
{
    int top = pc_here(fs);
    int jf = cond_jump(fs, s->a, 0);
    BlockScope loop;
    enter_block(fs, &loop, 1);
    block_stmt(fs, s->b);
    patch_here(fs, loop.cont_list);
    if (loop_needs_close(&loop)) emit_abc(fs, OP_CLOSE, loop.nactive, 0, 0, s);
    int back = emit_jump(fs, s);
    set_jump(fs, back, top);
    patch_here(fs, jf);
    patch_here(fs, loop.break_list);
    if (loop_needs_close(&loop)) emit_abc(fs, OP_CLOSE, loop.nactive, 0, 0, s);
    leave_block(fs, s);
}

static void for_stmt(FuncState *fs, AstNode *s)
{
    BlockScope loop;
    enter_block(fs, &loop, 1);
    int base = reg_alloc(fs, 3, s);
    int numeric = s->a->kind == AST_BINARY && s->a->op == AST_OP_RANGE;
    if (numeric) {
        expr_to(fs, s->a->a, base);
        expr_to(fs, s->a->b, base + 1);
    } else {
        expr_to(fs, s->a, base);
    }
    add_local(fs, NULL, base, s);
    add_local(fs, NULL, base + 1, s);
    add_local(fs, s->name, base + 2, s);
    /* the loop variable belongs to the body's iteration: its captures are
     * closed at the continue point, like the body's */
    loop.nactive = base + 2;
    int prep = emit_asbx(fs, numeric ? OP_FORPREP : OP_ITERPREP, base, 0, s);
    int body = pc_here(fs);
    block_stmt(fs, s->b);
    patch_here(fs, loop.cont_list);
    if (loop_needs_close(&loop)) emit_abc(fs, OP_CLOSE, base + 2, 0, 0, s);
    int back = emit_asbx(fs, numeric ? OP_FORLOOP : OP_ITERLOOP, base, 0, s);
    fix_sbx(fs, back, body, s);
    if (numeric) fix_sbx(fs, prep, pc_here(fs), s);
    else fix_sbx(fs, prep, back, s);
    patch_here(fs, loop.break_list);
    if (loop_needs_close(&loop)) emit_abc(fs, OP_CLOSE, base + 2, 0, 0, s);
    loop.nactive = base;
    leave_block(fs, s);
}

static void role_stmt(FuncState *fs, AstNode *s)
{
    if (fs->nroles > 0) error_at(fs, s, "role blocks cannot be nested");
    if (fs->nroles >= MAX_ROLES) error_at(fs, s, "too many nested role blocks");
    emit_abc(fs, OP_ROLEBEGIN, s->op, 0, 0, s);
    fs->roles[fs->nroles++] = s->op;
    if (s->a) {
        block_stmt(fs, s->a);
    } else {
        for (int i = 0; i < s->list.len; i++) append_piece(fs, s->list.items[i], 1);
    }
    fs->nroles--;
    emit_abc(fs, OP_ROLEEND, s->op, 0, 0, s);
}

static void grammar_check(FuncState *fs, AstNode *s)
{
    int line = 0, col = 0;
    char msg[256] = "";
    if (gbnf_check(s->str, s->str_len, &line, &col, msg, sizeof msg) != 0) {
        /* line/col count from the first byte of the rules */
        int at_line = s->body_line, at_col = s->body_col;
        if (line > 1) { at_line += line - 1; at_col = col; }
        else if (col > 0) at_col += col - 1;
        if (at_line <= 0) { at_line = s->line; at_col = s->col; }
        error_mc(fs->c, fs->mc, at_line, at_col, "bad grammar '%s': %s", s->name, msg[0] ? msg : "syntax error");
    }
}

static void stmt(FuncState *fs, AstNode *s)
{
    switch (s->kind) {
    case AST_EXPR_STMT: {
        int strict = s->list.len > 1;
        for (int i = 0; i < s->list.len; i++) append_piece(fs, s->list.items[i], strict);
        break;
    }
    case AST_LET: bind_name(fs, s->name, s->a, s); break;
    case AST_FN:
        if (!s->name) { append_piece(fs, s, 0); break; }
        if (module_level(fs)) break;  /* hoisted: compiled before the other top-level statements */
        bind_name(fs, s->name, s, s);
        break;
    case AST_ASSIGN: assign_stmt(fs, s); break;
    case AST_IF: {
        int jf = cond_jump(fs, s->a, 0);
        block_stmt(fs, s->b);
        if (s->c) {
            int jend = emit_jump(fs, s);
            patch_here(fs, jf);
            if (s->c->kind == AST_IF) stmt(fs, s->c);
            else block_stmt(fs, s->c);
            patch_here(fs, jend);
        } else {
            patch_here(fs, jf);
        }
        break;
    }
    case AST_WHILE: while_stmt(fs, s); break;
    case AST_FOR: for_stmt(fs, s); break;
    case AST_BREAK:
    case AST_CONTINUE: {
        BlockScope *loop = innermost_loop(fs);
        const char *what = s->kind == AST_BREAK ? "break" : "continue";
        if (!loop) error_at(fs, s, "'%s' outside a loop", what);
        close_roles(fs, loop->nroles, s);
        int j = emit_jump(fs, s);
        jump_concat(fs, s->kind == AST_BREAK ? &loop->break_list : &loop->cont_list, j);
        break;
    }
    case AST_RETURN:
        if (fs->is_top) error_at(fs, s, "'return' outside a function");
        return_value(fs, s->a, s);
        break;
    case AST_ROLE: role_stmt(fs, s); break;
    case AST_IMPORT: {
        if (!module_level(fs)) error_at(fs, s, "'import' must be at the top level of a file");
        /* the module was compiled, and its module index and global slot
         * stored in ival/fval, when the file's names were collected */
        int mod = (int)s->ival, slot = (int)s->fval;
        int r = reg_alloc(fs, 1, s);
        emit_abx(fs, OP_IMPORT, r, mod, s);
        emit_abx(fs, OP_SETGLOBAL, r, slot, s);
        break;
    }
    case AST_GRAMMAR: {
        grammar_check(fs, s);
        int k = k_grammar(fs, s->name, s->str, s->str_len, s);
        if (module_level(fs)) {
            int slot = chunk_find_global(cur_module(fs), s->name);
            int r = reg_alloc(fs, 1, s);
            load_const(fs, k, r, s);
            emit_abx(fs, OP_SETGLOBAL, r, slot, s);
        } else {
            int r = reg_alloc(fs, 1, s);
            load_const(fs, k, r, s);
            add_local(fs, s->name, r, s);
        }
        break;
    }
    case AST_BLOCK: block_stmt(fs, s); break;
    default:
        /* any other expression used as a statement */
        append_piece(fs, s, 0);
        break;
    }
    fs->freereg = fs->nactive;
}

static void block_stmt(FuncState *fs, AstNode *blk)
{
    BlockScope bl;
    enter_block(fs, &bl, 0);
    if (blk->kind == AST_BLOCK) {
        for (int i = 0; i < blk->list.len; i++) stmt(fs, blk->list.items[i]);
    } else {
        stmt(fs, blk);
    }
    leave_block(fs, blk);
}

/* ------------------------------------------------------------------ */
/* functions                                                           */

static void open_func(FuncState *fs, FuncState *parent, Comp *c, ModCtx *mc, Proto *p, BlockScope *bl)
{
    memset(fs, 0, sizeof *fs);
    fs->prev = parent;
    fs->c = c;
    fs->mc = mc;
    fs->p = p;
    enter_block(fs, bl, 0);
    fs->top_bl = bl;
}

static void close_func(FuncState *fs, const AstNode *at)
{
    Proto *p = fs->p;
    emit_abc(fs, OP_RETURN0, 0, 0, 0, at);
    if (p->maxstack < 1) p->maxstack = 1;
    if (fs->nup) {
        p->upvals = malloc((size_t)fs->nup * sizeof(UpvalDesc));
        if (!p->upvals) oom(fs, at);
        memcpy(p->upvals, fs->updesc, (size_t)fs->nup * sizeof(UpvalDesc));
        p->nupvals = fs->nup;
    }
}

/* Compiles a function (declaration, lambda or fork body) as a child of fs;
 * returns its index in fs's CLOSURE table. */
static int function(FuncState *fs, const char *name, AstList *params, const char *fork_var,
                    AstNode *body, const AstNode *at)
{
    Proto *p = chunk_proto_new(fs->c->prog, name ? name : "<fn>", fs->mc->mod, at->line, at->col);
    if (!p) oom(fs, at);
    int child = chunk_add_child(fs->p, p);
    if (child < 0) oom(fs, at);
    if (child > MAXARG_Bx) error_at(fs, at, "too many functions in one function");

    FuncState nfs;
    BlockScope bl;
    open_func(&nfs, fs, fs->c, fs->mc, p, &bl);
    int n = fork_var ? 1 : (params ? params->len : 0);
    if (n > MAX_PARAMS) error_at(fs, at, "too many parameters (at most %d)", MAX_PARAMS);
    p->nparams = n;
    if (n) {
        p->param_names = calloc((size_t)n, sizeof(char *));
        p->param_defaults = calloc((size_t)n, sizeof(char *));
        if (!p->param_names || !p->param_defaults) oom(fs, at);
    }
    reg_alloc(&nfs, n, at);
    for (int i = 0; i < n; i++) {
        const char *pname = fork_var ? fork_var : params->items[i]->name;
        AstNode *pn = fork_var ? NULL : params->items[i];
        for (int j = 0; j < i; j++)
            if (strcmp(p->param_names[j], pname) == 0) error_at(fs, pn ? pn : at, "parameter '%s' declared twice", pname);
        p->param_names[i] = xstrndup(fs, pname, strlen(pname));
        if (pn && pn->a) {
            /* default: computed in the callee when the argument is absent;
             * it sees the parameters before it */
            p->param_defaults[i] = default_text(fs, pn);
            int skip = emit_asbx(&nfs, OP_ARGDEF, i, 0, pn);
            expr_to(&nfs, pn->a, i);
            fix_sbx(&nfs, skip, pc_here(&nfs), pn);
            nfs.freereg = n;
        } else {
            p->required |= (uint64_t)1 << i;
        }
        nfs.nactive = i;
        add_local(&nfs, p->param_names[i], i, at);
        nfs.freereg = n;
    }
    if (body->kind == AST_BLOCK) {
        for (int i = 0; i < body->list.len; i++) stmt(&nfs, body->list.items[i]);
    } else {
        stmt(&nfs, body);
    }
    close_func(&nfs, at);
    return child;
}

/* Pass 1 over a module: every top-level name gets its global slot (imports
 * are compiled here, depth first). Import statements remember their module
 * and slot in the node's ival/fval (the tree is ours until the module is done). */
static void declare_globals(Comp *c, ModCtx *mc, AstNode *root)
{
    for (int i = 0; i < root->list.len; i++) {
        AstNode *s = root->list.items[i];
        const char *name = NULL;
        char buf[256];
        switch (s->kind) {
        case AST_FN: name = s->name; break;
        case AST_LET: name = s->name; break;
        case AST_GRAMMAR: name = s->name; break;
        case AST_IMPORT: {
            name = s->name ? s->name : import_default_name(s->str, buf, sizeof buf);
            if (!name) error_mc(c, mc, s->line, s->col, "import \"%s\" needs `as NAME`", s->str);
            int mod = import_module(c, mc, s);
            s->ival = mod;
            break;
        }
        default: break;
        }
        if (!name) continue;
        Module *m = &c->prog->mods[mc->mod];
        int slot = chunk_find_global(m, name);
        if (slot < 0) slot = chunk_add_global(m, name);
        if (slot < 0) error_mc(c, mc, s->line, s->col, "out of memory");
        if (slot > MAXARG_Bx) error_mc(c, mc, s->line, s->col, "too many top-level names");
        if (s->kind == AST_IMPORT) s->fval = slot;
    }
    for (int i = 0; i < root->list.len; i++) {
        AstNode *s = root->list.items[i];
        switch (s->kind) {
        case AST_FN: case AST_GRAMMAR: case AST_IMPORT: break;
        default: c->prog->mods[mc->mod].has_code = 1;
        }
    }
}

void compile_tree(Comp *c, ModCtx *mc, AstNode *root)
{
    declare_globals(c, mc, root);
    Proto *p = chunk_proto_new(c->prog, "<top level>", mc->mod, 1, 1);
    if (!p) error_mc(c, mc, 0, 0, "out of memory");
    FuncState fs;
    BlockScope bl;
    open_func(&fs, NULL, c, mc, p, &bl);
    fs.is_top = 1;
    /* functions first, so top-level code may call those declared below it */
    for (int i = 0; i < root->list.len; i++) {
        AstNode *s = root->list.items[i];
        if (s->kind != AST_FN || !s->name) continue;
        int slot = chunk_find_global(cur_module(&fs), s->name);
        int r = reg_alloc(&fs, 1, s);
        int child = function(&fs, s->name, &s->list, NULL, s->a, s);
        emit_abx(&fs, OP_CLOSURE, r, child, s);
        emit_abx(&fs, OP_SETGLOBAL, r, slot, s);
        c->prog->mods[mc->mod].global_fn[slot] = p->children[child]->id;
        fs.freereg = fs.nactive;
    }
    for (int i = 0; i < root->list.len; i++) stmt(&fs, root->list.items[i]);
    /* the top level's value is the module itself (IMPORT of its own index) */
    int r = reg_alloc(&fs, 1, root);
    emit_abx(&fs, OP_IMPORT, r, mc->mod, root);
    emit_abc(&fs, OP_RETURN, r, 0, 0, root);
    close_func(&fs, root);
    c->prog->mods[mc->mod].init = p;
}
