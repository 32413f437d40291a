/*
 * compiler/disasm.c — bytecode listings (sgl compile --disasm).
 *
 *   function fib (fib.sgl:1:1) params 1 (n), registers 4, upvalues 0, constants 0
 *     0  [2:10]  LTI        0 2 0          ; if ((R[A] <  sB) ~= C) then pc++
 *     1  [2:10]  JMP        -> 3
 *
 * The comment column shows what an operand refers to (constant values,
 * global names, jump targets, child functions) or, failing that, the
 * opcode's one-line semantics from the table.
 */
#include "compiler/disasm.h"

#include <inttypes.h>
#include <string.h>

static void print_const(FILE *out, const Const *k)
{
    switch (k->kind) {
    case KC_INT: fprintf(out, "%" PRId64, k->i); break;
    case KC_FLOAT: fprintf(out, "%.17g", k->f); break;
    case KC_STRING:
    case KC_REGEX: {
        fputs(k->kind == KC_REGEX ? "re\"" : "\"", out);
        size_t n = k->len > 40 ? 40 : k->len;
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)k->s[i];
            if (ch == '\n') fputs("\\n", out);
            else if (ch == '\t') fputs("\\t", out);
            else if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
            else if (ch < 0x20) fprintf(out, "\\x%02x", ch);
            else fputc(ch, out);
        }
        fputs(k->len > n ? "\"..." : "\"", out);
        break;
    }
    case KC_GRAMMAR: fprintf(out, "grammar %s", k->name ? k->name : "?"); break;
    case KC_BUILTIN: fprintf(out, "builtin %s", k->s); break;
    case KC_NAMES:
        fputs("names(", out);
        for (int i = 0; i < k->nnames; i++) fprintf(out, "%s%s", i ? ", " : "", k->names[i]);
        fputc(')', out);
        break;
    case KC__COUNT: break;
    }
}

static void print_k(FILE *out, const Proto *f, int k, int *commented)
{
    fputs(*commented ? "  " : "  ; ", out);
    *commented = 1;
    if (k >= 0 && k < f->nconsts) print_const(out, &f->consts[k]);
    else fprintf(out, "K[%d]?", k);
}

void disasm_proto(const Program *p, const Proto *f, FILE *out)
{
    const Module *mod = f->module >= 0 && f->module < p->nmods ? &p->mods[f->module] : NULL;
    fprintf(out, "function %s (%s:%d:%d) params %d", f->name, mod ? mod->file : "?", f->line, f->col, f->nparams);
    if (f->nparams) {
        fputs(" (", out);
        for (int i = 0; i < f->nparams; i++)
            fprintf(out, "%s%s%s", i ? ", " : "", f->param_names[i], f->required >> i & 1 ? "" : "=");
        fputc(')', out);
    }
    fprintf(out, ", registers %d, upvalues %d, constants %d\n", f->maxstack, f->nupvals, f->nconsts);
    for (int pc = 0; pc < f->ncode; pc++) {
        Instr i = f->code[pc];
        unsigned opn = i & 0xffu;
        if (opn >= OP__COUNT) {
            fprintf(out, "  %4d  ?? 0x%08x\n", pc, i);
            continue;
        }
        OpCode op = (OpCode)opn;
        const OpInfo *info = &op_info[op];
        char pos[32];
        snprintf(pos, sizeof pos, "[%d:%d]", f->lines[pc].line, f->lines[pc].col);
        fprintf(out, "  %4d  %-10s %-10s ", pc, pos, info->name);
        int a = GETARG_A(i), b = GETARG_B(i), c = GETARG_C(i);
        char ops[48];
        int commented = 0;
        switch (info->format) {
        case iABC: {
            int n = 0;
            ops[0] = '\0';
            if (info->a != OPK_N) n += snprintf(ops + n, sizeof ops - (size_t)n, "%d ", a);
            if (info->b != OPK_N) n += snprintf(ops + n, sizeof ops - (size_t)n, "%d ", info->b == OPK_S ? b - OFFSET_sC : b);
            if (info->c != OPK_N) snprintf(ops + n, sizeof ops - (size_t)n, "%d", info->c == OPK_S ? c - OFFSET_sC : c);
            break;
        }
        case iABx:
            if (info->a != OPK_N) snprintf(ops, sizeof ops, "%d %d", a, GETARG_Bx(i));
            else snprintf(ops, sizeof ops, "%d", GETARG_Bx(i));
            break;
        case iAsBx: snprintf(ops, sizeof ops, "%d %d", a, GETARG_sBx(i)); break;
        case isJ: snprintf(ops, sizeof ops, "-> %d", pc + 1 + GETARG_sJ(i)); break;
        case iAx: snprintf(ops, sizeof ops, "%d", GETARG_Ax(i)); break;
        }
        fprintf(out, "%-14s", ops);
        /* operand meanings */
        switch (op) {
        case OP_LOADK: case OP_APPENDK: print_k(out, f, GETARG_Bx(i), &commented); break;
        case OP_FIELD: print_k(out, f, c == MAXARG_C ? GETARG_Ax(f->code[pc + 1 < f->ncode ? pc + 1 : pc]) : c, &commented); break;
        case OP_SETFIELD: print_k(out, f, b == MAXARG_B ? GETARG_Ax(f->code[pc + 1 < f->ncode ? pc + 1 : pc]) : b, &commented); break;
        case OP_ADDK: case OP_SUBK: case OP_MULK: case OP_DIVK: case OP_MODK: print_k(out, f, c, &commented); break;
        case OP_EQK: print_k(out, f, b, &commented); break;
        case OP_EXTRAARG: print_k(out, f, GETARG_Ax(i), &commented); break;
        case OP_GETGLOBAL: case OP_SETGLOBAL:
            if (mod && GETARG_Bx(i) < mod->nglobals) {
                fprintf(out, "  ; %s", mod->globals[GETARG_Bx(i)]);
                commented = 1;
            }
            break;
        case OP_IMPORT:
            if (GETARG_Bx(i) < p->nmods) {
                fprintf(out, "  ; module %s", p->mods[GETARG_Bx(i)].file);
                commented = 1;
            }
            break;
        case OP_CLOSURE:
            if (GETARG_Bx(i) < f->nchildren) {
                const Proto *ch = f->children[GETARG_Bx(i)];
                fprintf(out, "  ; function %s (%d:%d)", ch->name, ch->line, ch->col);
                commented = 1;
            }
            break;
        case OP_GETUPVAL: case OP_SETUPVAL:
            if (b < f->nupvals) {
                fprintf(out, "  ; upvalue %d (%s %d)", b, f->upvals[b].instack ? "register" : "upvalue", f->upvals[b].idx);
                commented = 1;
            }
            break;
        case OP_ARGDEF: case OP_FORPREP: case OP_FORLOOP: case OP_ITERPREP: case OP_ITERLOOP:
            fprintf(out, "  ; -> %d", pc + 1 + GETARG_sBx(i));
            commented = 1;
            break;
        case OP_ROLEBEGIN: case OP_ROLEEND: {
            static const char *roles[] = {"system", "user", "assistant"};
            fprintf(out, "  ; %s", a <= 2 ? roles[a] : "?");
            commented = 1;
            break;
        }
        default: break;
        }
        if (!commented && op != OP_JMP) fprintf(out, "  ; %s", info->doc);
        fputc('\n', out);
    }
    fputc('\n', out);
}

void disasm_program(const Program *p, FILE *out)
{
    for (int m = 0; m < p->nmods; m++) {
        const Module *mod = &p->mods[m];
        fprintf(out, "module %d: %s, %d top-level names", m, mod->file, mod->nglobals);
        for (int g = 0; g < mod->nglobals; g++) fprintf(out, "%s%s", g ? ", " : ": ", mod->globals[g]);
        fputs("\n\n", out);
        /* the module's functions, in the order they were compiled */
        for (int i = 0; i < p->nprotos; i++)
            if (p->protos[i]->module == m) disasm_proto(p, p->protos[i], out);
    }
}
