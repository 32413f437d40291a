/*
 * vm/interp.c — the dispatch loop (vm_execute).
 *
 * Lua-style: registers are a window of the fiber's value stack starting at
 * `base`; a call pushes a CallFrame and moves the window, a return pops it,
 * so SGL calls never recurse in C and a fiber can stop at any model call
 * and resume later. Dispatch is computed goto where the compiler has it
 * (vmcase/vmbreak), a switch otherwise (-DSGL_VM_SWITCH).
 *
 * Fiber stack layout (one frame):
 *
 *   stack[base-1]  the called function (the return value goes here)
 *   stack[base+0]  R[0] = first parameter
 *   ...            R[maxstack-1]
 *
 * Collection happens only in checkgc(), between instructions, when every
 * live value is in a register, a root or an object reachable from one.
 */
#include "vm/vm_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* the interpreter                                                     */

#if defined(__GNUC__) && !defined(SGL_VM_SWITCH)
#define VM_COMPUTED_GOTO 1
#endif

/* dt is disptab, or with a step limit (max_steps) counttab, whose every
 * entry counts the instruction first (L_count): no cost without a limit. */
#ifdef VM_COMPUTED_GOTO
#define vmdispatch(o) goto *dt[o];
#define vmcase(l) L_##l:
#define vmbreak \
    i = *pc++;  \
    goto *dt[GET_OP(i)]
#else
#define vmdispatch(o) switch ((int)(o))
#define vmcase(l) case l:
#define vmbreak break
#endif

#define RA(i) (base + GETARG_A(i))
#define RB(i) (base + GETARG_B(i))
#define RC(i) (base + GETARG_C(i))
/* after a test: execute the JMP that follows, or skip it */
#define condjump(cond, i)                       \
    do {                                        \
        if ((cond) != GETARG_C(i)) pc++;        \
        else {                                  \
            Instr ni = *pc;                     \
            pc += GETARG_sJ(ni) + 1;            \
        }                                       \
    } while (0)
#define savepc() (fr->pc = pc)
#define savestate() (fr->pc = pc, f->top = fr->base + (size_t)cl->proto->maxstack)
/* -DSGL_GC_STRESS collects at every safe point (a test build) */
#ifdef SGL_GC_STRESS
#define gc_due(h) ((void)(h), 1)
#else
#define gc_due(h) heap_should_collect(h)
#endif
#define checkgc()                                  \
    do {                                           \
        if (gc_due(&vm->heap)) {                   \
            savestate();                           \
            vm_collect(vm);                        \
            if (vm_heap_over(vm, f)) {             \
                savepc();                          \
                goto on_error;                     \
            }                                      \
        }                                          \
    } while (0)
#define vmraise(...)                  \
    do {                            \
        savepc();                   \
        vm_raise(vm, __VA_ARGS__);  \
        goto on_error;              \
    } while (0)
#define protect(call)           \
    do {                        \
        savestate();            \
        if ((call) < 0) goto on_error; \
    } while (0)
/* The fast paths of the arithmetic and comparison opcodes, written once.
 * They are macros, not functions, because a fast path ends the opcode with
 * vmbreak (the next dispatch) right where it succeeds. */
/* R[A] := x op y when both are ints and `ovf` (a __builtin_*_overflow) says
 * it fits; otherwise falls through to the slow path after it. */
#define arith_int_fast(ovf, ra, x, y)                   \
    if ((x)->type == V_INT && (y)->type == V_INT) {     \
        int64_t r_;                                     \
        if (!ovf((x)->as.i, (y)->as.i, &r_)) {          \
            (ra)->tag = V_INT;                          \
            (ra)->as.i = r_;                            \
            vmbreak;                                    \
        }                                               \
    }
/* ADD/SUB/MUL: R[A] := R[B] op R[C]; int (no overflow) or float with float
 * on the spot, the rest (an overflow raises) through ops_arith(). */
#define op_arith(opc, ovf, fop)                                     \
    Value *rb = RB(i), *rc = RC(i), *ra = RA(i);                    \
    arith_int_fast(ovf, ra, rb, rc)                                 \
    else if (rb->type == V_FLOAT && rc->type == V_FLOAT) {          \
        ra->tag = V_FLOAT;                                          \
        ra->as.f = rb->as.f fop rc->as.f;                           \
        vmbreak;                                                    \
    }                                                               \
    protect(ops_arith(vm, opc, ra, *rb, *rc))
/* ADDK/MULK: R[A] := R[B] op K[C]; only ints on the spot. */
#define op_arithK(opc, ovf)                                         \
    Value *rb = RB(i), *kc = k + GETARG_C(i), *ra = RA(i);          \
    arith_int_fast(ovf, ra, rb, kc)                                 \
    protect(ops_arith(vm, opc, ra, *rb, *kc))
/* LT/LE: if ((R[A] op R[B]) ~= k) then pc++; ints on the spot. */
#define op_order(cop, or_equal)                                         \
    Value *ra = RA(i), *rb = RB(i);                                     \
    bool res = false;                                                   \
    if (ra->type == V_INT && rb->type == V_INT) res = ra->as.i cop rb->as.i; \
    else protect(ops_less(vm, *ra, *rb, or_equal, &res));                   \
    condjump(res, i)
/* LTI/LEI/GTI/GEI: if ((R[A] op sB) ~= k) then pc++; ints on the spot. */
#define op_order_imm(opc, cop)                                              \
    Value *ra = RA(i);                                                      \
    bool res = false;                                                       \
    if (ra->type == V_INT) res = ra->as.i cop GETARG_sB(i);                 \
    else protect(ops_compare_imm(vm, *ra, GETARG_sB(i), opc, &res));            \
    condjump(res, i)
/* reload the registers of the current frame */
#define load_frame()                                    \
    do {                                                \
        fr = &f->frames[f->nframes - 1];                \
        cl = fr->cl;                                    \
        k = fr->k;                                      \
        base = f->stack + fr->base;                     \
        pc = fr->pc;                                    \
        gl = fr->gl;                                    \
    } while (0)

/* Where a run's root fiber goes after module 0's top level: the entry. */
static int start_entry(VM *vm, Fiber *f)
{
    VmRun *r = f->run;
    f->role = FIB_ROOT_MAIN;
    ObjModule *m = r->mods[0];
    Value fn = m->exports->entries[r->entry_slot].value;
    if (!val_is_obj_type(fn, OBJ_CLOSURE))
        return vm_raise(vm, "%s is not a function", r->prog->mods[0].globals[r->entry_slot]);
    f->nframes = 0;
    return fiber_call_entry(vm, f, (ObjClosure *)fn.as.obj, r->args, r->nargs, r->argmask);
}

void vm_execute(VM *vm, Fiber *f)
{
#ifdef VM_COMPUTED_GOTO
    static const void *const disptab[OP__COUNT] = {
#define OP_LABEL(name, fmt, a, b, c, doc) &&L_OP_##name,
        OPCODES(OP_LABEL)
#undef OP_LABEL
    };
    static const void *const counttab[OP__COUNT] = {[0 ... OP__COUNT - 1] = &&L_count};
    const void *const *dt = f->run->max_steps ? counttab : disptab;
#else
    const int counting = f->run->max_steps != 0;
#endif
    CallFrame *fr;
    ObjClosure *cl;
    Value *k;
    Value *base;
    const Instr *pc;
    MapEntry *gl;
    Instr i;
    Value retval;
    Value *fn;
    int nargs;
    uint64_t mask;

    f->status = FIB_RUNNING;
    vm->cur = f;
    load_frame();
    for (;;) {
        i = *pc++;
#ifndef VM_COMPUTED_GOTO
        if (counting && vm_step_over(vm, f)) {
            savepc();
            goto on_error;
        }
#endif
        vmdispatch(GET_OP(i)) {
            vmcase(OP_MOVE) {
                *RA(i) = *RB(i);
                vmbreak;
            }
            vmcase(OP_LOADK) {
                *RA(i) = k[GETARG_Bx(i)];
                vmbreak;
            }
            vmcase(OP_LOADI) {
                Value *ra = RA(i);
                ra->tag = V_INT;
                ra->as.i = GETARG_sBx(i);
                vmbreak;
            }
            vmcase(OP_LOADNIL) {
                Value *ra = RA(i);
                for (int n = GETARG_B(i); n >= 0; n--) *ra++ = val_nil();
                vmbreak;
            }
            vmcase(OP_LOADTRUE) {
                *RA(i) = val_bool(true);
                vmbreak;
            }
            vmcase(OP_LOADFALSE) {
                *RA(i) = val_bool(false);
                vmbreak;
            }
            vmcase(OP_LFALSESKIP) {
                *RA(i) = val_bool(false);
                pc++;
                vmbreak;
            }
            vmcase(OP_GETUPVAL) {
                *RA(i) = *cl->upvals[GETARG_B(i)]->loc;
                vmbreak;
            }
            vmcase(OP_SETUPVAL) {
                *cl->upvals[GETARG_B(i)]->loc = *RA(i);
                vmbreak;
            }
            vmcase(OP_GETGLOBAL) {
                *RA(i) = gl[GETARG_Bx(i)].value;
                vmbreak;
            }
            vmcase(OP_SETGLOBAL) {
                gl[GETARG_Bx(i)].value = *RA(i);
                vmbreak;
            }
            vmcase(OP_IMPORT) {
                int mi = GETARG_Bx(i);
                VmRun *r = f->run;
                if (r->mods[mi]) {
                    *RA(i) = val_obj(r->mods[mi]);
                    vmbreak;
                }
                /* first import in this instance: run its top level, whose
                 * return value (the module) lands in R[A] */
                ObjModule *m = fiber_module_new(vm, r, mi);
                if (!m) vmraise("out of memory");
                r->mods[mi] = m;
                ObjClosure *init = fiber_closure_new(vm, r->prog->mods[mi].init, (Obj *)m);
                if (!init) vmraise("out of memory");
                fn = RA(i);
                *fn = val_obj(init);
                nargs = 0;
                goto call_closure;
            }
            vmcase(OP_GETSTATE) {
                *RA(i) = val_obj(f->state);
                vmbreak;
            }
            vmcase(OP_NEWLIST) {
                Value *ra = RA(i);
                int n = GETARG_B(i);
                ObjList *l = list_new(&vm->heap, (size_t)n);
                if (!l) vmraise("out of memory");
                for (int j = 1; j <= n; j++) list_push(l, ra[j]);
                *ra = val_obj(l);
                checkgc();
                vmbreak;
            }
            vmcase(OP_LISTADD) {
                Value *ra = RA(i);
                ObjList *l = AS_LIST(*ra);
                for (int j = 1; j <= GETARG_B(i); j++) list_push(l, ra[j]);
                vmbreak;
            }
            vmcase(OP_NEWMAP) {
                Value *ra = RA(i);
                ObjMap *m = map_new(&vm->heap);
                if (!m) vmraise("out of memory");
                *ra = val_obj(m);
                for (int j = 0; j < GETARG_B(i); j++) {
                    Value key = ra[1 + 2 * j];
                    if (!map_key_ok(key)) vmraise("a %s cannot be a map key", val_type_name(key));
                    map_set(m, key, ra[2 + 2 * j]);
                }
                checkgc();
                vmbreak;
            }
            vmcase(OP_MAPADD) {
                Value *ra = RA(i);
                ObjMap *m = AS_MAP(*ra);
                for (int j = 0; j < GETARG_B(i); j++) {
                    Value key = ra[1 + 2 * j];
                    if (!map_key_ok(key)) vmraise("a %s cannot be a map key", val_type_name(key));
                    map_set(m, key, ra[2 + 2 * j]);
                }
                vmbreak;
            }
            vmcase(OP_INDEX) {
                Value *rb = RB(i), *rc = RC(i);
                if (rb->type == V_OBJ && rb->as.obj->type == OBJ_LIST && rc->type == V_INT) {
                    ObjList *l = AS_LIST(*rb);
                    int64_t idx = rc->as.i;
                    if (idx >= 0 && (uint64_t)idx < l->len) {
                        *RA(i) = l->items[idx];
                        vmbreak;
                    }
                }
                Value v;
                protect(ops_index_get(vm, *rb, *rc, &v));
                *RA(i) = v;
                checkgc();
                vmbreak;
            }
            vmcase(OP_FIELD) {
                int kc = GETARG_C(i);
                if (kc == MAXARG_C) kc = GETARG_Ax(*pc++);
                Value *rb = RB(i);
                ObjString *name = AS_STRING(k[kc]);
                Value v;
                if (rb->type == V_OBJ && rb->as.obj->type == OBJ_MAP && map_get(AS_MAP(*rb), k[kc], &v)) {
                    *RA(i) = v;
                    vmbreak;
                }
                protect(ops_field_get(vm, *rb, name, &v));
                *RA(i) = v;
                checkgc();
                vmbreak;
            }
            vmcase(OP_SETINDEX) {
                Value *ra = RA(i), *rb = RB(i);
                if (ra->type == V_OBJ && ra->as.obj->type == OBJ_LIST && rb->type == V_INT) {
                    ObjList *l = AS_LIST(*ra);
                    int64_t idx = rb->as.i;
                    if (idx >= 0 && (uint64_t)idx < l->len) {
                        l->items[idx] = *RC(i);
                        vmbreak;
                    }
                }
                protect(ops_index_set(vm, *ra, *rb, *RC(i)));
                vmbreak;
            }
            vmcase(OP_SETFIELD) {
                int kb = GETARG_B(i);
                if (kb == MAXARG_B) kb = GETARG_Ax(*pc++);
                protect(ops_field_set(vm, *RA(i), AS_STRING(k[kb]), *RC(i)));
                vmbreak;
            }
            vmcase(OP_ADD) {
                op_arith(OP_ADD, __builtin_add_overflow, +);
                checkgc();
                vmbreak;
            }
            vmcase(OP_SUB) {
                op_arith(OP_SUB, __builtin_sub_overflow, -);
                vmbreak;
            }
            vmcase(OP_MUL) {
                op_arith(OP_MUL, __builtin_mul_overflow, *);
                vmbreak;
            }
            vmcase(OP_DIV) {
                protect(ops_arith(vm, OP_DIV, RA(i), *RB(i), *RC(i)));
                vmbreak;
            }
            vmcase(OP_MOD) {
                protect(ops_arith(vm, OP_MOD, RA(i), *RB(i), *RC(i)));
                vmbreak;
            }
            vmcase(OP_ADDK) {
                op_arithK(OP_ADD, __builtin_add_overflow);
                vmbreak;
            }
            vmcase(OP_SUBK) {
                protect(ops_arith(vm, OP_SUB, RA(i), *RB(i), k[GETARG_C(i)]));
                vmbreak;
            }
            vmcase(OP_MULK) {
                op_arithK(OP_MUL, __builtin_mul_overflow);
                vmbreak;
            }
            vmcase(OP_DIVK) {
                protect(ops_arith(vm, OP_DIV, RA(i), *RB(i), k[GETARG_C(i)]));
                vmbreak;
            }
            vmcase(OP_MODK) {
                Value *rb = RB(i), *kc = k + GETARG_C(i), *ra = RA(i);
                if (rb->type == V_INT && kc->type == V_INT && kc->as.i > 0) {
                    int64_t r = rb->as.i % kc->as.i;
                    if (r < 0) r += kc->as.i;
                    ra->tag = V_INT;
                    ra->as.i = r;
                    vmbreak;
                }
                protect(ops_arith(vm, OP_MOD, ra, *rb, *kc));
                vmbreak;
            }
            vmcase(OP_ADDI) {
                Value *rb = RB(i), *ra = RA(i);
                int imm = GETARG_sC(i);
                if (rb->type == V_INT) {
                    int64_t r;
                    if (!__builtin_add_overflow(rb->as.i, (int64_t)imm, &r)) {
                        ra->tag = V_INT;
                        ra->as.i = r;
                        vmbreak;
                    }
                }
                protect(ops_arith(vm, OP_ADD, ra, *rb, val_int(imm)));
                vmbreak;
            }
            vmcase(OP_UNM) {
                Value *rb = RB(i), *ra = RA(i);
                if (rb->type == V_INT) {
                    if (rb->as.i == INT64_MIN) vmraise("integer overflow in -(%lld)", (long long)rb->as.i);
                    *ra = val_int(-rb->as.i);
                } else if (rb->type == V_FLOAT) {
                    *ra = val_float(-rb->as.f);
                } else {
                    vmraise("cannot negate %s", val_type_name(*rb));
                }
                vmbreak;
            }
            vmcase(OP_NOT) {
                *RA(i) = val_bool(!ops_truthy(*RB(i)));
                vmbreak;
            }
            vmcase(OP_RANGE) {
                Value v;
                protect(ops_range(vm, *RB(i), *RC(i), &v));
                *RA(i) = v;
                checkgc();
                vmbreak;
            }
            vmcase(OP_IN) {
                bool res = false;
                protect(ops_in(vm, *RB(i), *RC(i), &res));
                *RA(i) = val_bool(res);
                vmbreak;
            }
            vmcase(OP_TOSTR) {
                Value v;
                protect(ops_to_text(vm, *RB(i), &v));
                *RA(i) = v;
                checkgc();
                vmbreak;
            }
            vmcase(OP_CONCAT) {
                Value v;
                protect(ops_concat(vm, RA(i), GETARG_B(i), &v));
                *RA(i) = v;
                checkgc();
                vmbreak;
            }
            vmcase(OP_EQ) {
                condjump(ops_equal(*RA(i), *RB(i)), i);
                vmbreak;
            }
            vmcase(OP_LT) {
                op_order(<, 0);
                vmbreak;
            }
            vmcase(OP_LE) {
                op_order(<=, 1);
                vmbreak;
            }
            vmcase(OP_EQK) {
                condjump(ops_equal(*RA(i), k[GETARG_B(i)]), i);
                vmbreak;
            }
            vmcase(OP_EQI) {
                Value *ra = RA(i);
                int imm = GETARG_sB(i);
                bool res = ra->type == V_INT ? ra->as.i == imm : ra->type == V_FLOAT ? ra->as.f == (double)imm : false;
                condjump(res, i);
                vmbreak;
            }
            vmcase(OP_LTI) {
                op_order_imm(OP_LTI, <);
                vmbreak;
            }
            vmcase(OP_LEI) {
                op_order_imm(OP_LEI, <=);
                vmbreak;
            }
            vmcase(OP_GTI) {
                op_order_imm(OP_GTI, >);
                vmbreak;
            }
            vmcase(OP_GEI) {
                op_order_imm(OP_GEI, >=);
                vmbreak;
            }
            vmcase(OP_TEST) {
                condjump(ops_truthy(*RA(i)), i);
                vmbreak;
            }
            vmcase(OP_JMP) {
                pc += GETARG_sJ(i);
                vmbreak;
            }
            vmcase(OP_CALL) {
                fn = RA(i);
                nargs = GETARG_B(i);
                if (fn->type == V_OBJ && fn->as.obj->type == OBJ_CLOSURE) goto call_closure;
                if (fn->type == V_OBJ && fn->as.obj->type == OBJ_NATIVE) {
                    savestate();
                    vm->in_native = f;
                    int rc = ((ObjNative *)fn->as.obj)->fn(vm, nargs, fn + 1, NULL, fn);
                    vm->in_native = NULL;
                    if (rc < 0) goto on_error;
                    if (rc == VM_NATIVE_WAIT && f->status != FIB_RUNNING) return;
                    checkgc();
                    vmbreak;
                }
                vmraise("%s is not a function", val_type_name(*fn));
            }
            vmcase(OP_CALLKW) {
                fn = RA(i);
                int npos = GETARG_B(i), nnamed = GETARG_C(i);
                const ObjList *names = AS_LIST(k[GETARG_Ax(*pc)]);
                pc++;
                if (fn->type == V_OBJ && fn->as.obj->type == OBJ_CLOSURE) {
                    ObjClosure *ncl = (ObjClosure *)fn->as.obj;
                    Proto *np = ncl->proto;
                    size_t fslot = (size_t)(fn - f->stack);
                    savestate();
                    if (fiber_reserve(vm, f, fslot + 1 + (size_t)np->maxstack) < 0) goto on_error;
                    fr = &f->frames[f->nframes - 1];
                    base = f->stack + fr->base;
                    fn = f->stack + fslot;
                    if (fiber_bind_named(vm, np, fn + 1, npos, nnamed, names, &mask) < 0) goto on_error;
                    goto push_frame;
                }
                if (fn->type == V_OBJ && fn->as.obj->type == OBJ_NATIVE) {
                    savestate();
                    ObjMap *kw = map_new(&vm->heap);
                    if (!kw) vmraise("out of memory");
                    for (int j = 0; j < nnamed; j++) map_set(kw, names->items[j], fn[1 + npos + j]);
                    vm->in_native = f;
                    int rc = ((ObjNative *)fn->as.obj)->fn(vm, npos, fn + 1, kw, fn);
                    vm->in_native = NULL;
                    if (rc < 0) goto on_error;
                    if (rc == VM_NATIVE_WAIT && f->status != FIB_RUNNING) return;
                    checkgc();
                    vmbreak;
                }
                vmraise("%s is not a function", val_type_name(*fn));
            }
            vmcase(OP_EXTRAARG) {
                vmraise("internal error: bad bytecode (EXTRAARG executed)");
            }
            vmcase(OP_RETURN) {
                retval = *RA(i);
                goto do_return;
            }
            vmcase(OP_RETURN0) {
                retval = val_nil();
                goto do_return;
            }
            vmcase(OP_CLOSURE) {
                Proto *p = cl->proto->children[GETARG_Bx(i)];
                ObjClosure *ncl = fiber_closure_new(vm, p, cl->module);
                if (!ncl) vmraise("out of memory");
                for (int u = 0; u < p->nupvals; u++) {
                    if (p->upvals[u].instack) {
                        ObjUpvalue *uv = fiber_find_upvalue(vm, f, fr->base + p->upvals[u].idx);
                        if (!uv) vmraise("out of memory");
                        ncl->upvals[u] = uv;
                    } else {
                        ncl->upvals[u] = cl->upvals[p->upvals[u].idx];
                    }
                }
                *RA(i) = val_obj(ncl);
                checkgc();
                vmbreak;
            }
            vmcase(OP_CLOSE) {
                fiber_close_upvalues(f, (size_t)(RA(i) - f->stack));
                vmbreak;
            }
            vmcase(OP_ARGDEF) {
                if (fr->argmask >> GETARG_A(i) & 1) pc += GETARG_sBx(i);
                vmbreak;
            }
            vmcase(OP_FORPREP) {
                Value *ra = RA(i);
                if (ra[0].type != V_INT || ra[1].type != V_INT)
                    vmraise("range bounds must be ints, not %s and %s", val_type_name(ra[0]), val_type_name(ra[1]));
                if (ra[0].as.i >= ra[1].as.i) pc += GETARG_sBx(i);
                else ra[2] = ra[0];
                vmbreak;
            }
            vmcase(OP_FORLOOP) {
                Value *ra = RA(i);
                int64_t n = ++ra[0].as.i;
                if (n < ra[1].as.i) {
                    ra[2].tag = V_INT;
                    ra[2].as.i = n;
                    pc += GETARG_sBx(i);
                }
                vmbreak;
            }
            vmcase(OP_ITERPREP) {
                Value *ra = RA(i);
                if (VAL_IS_MAP(ra[0])) {
                    /* maps iterate over a snapshot of their keys */
                    ObjMap *m = AS_MAP(ra[0]);
                    ObjList *keys = list_new(&vm->heap, m->count);
                    if (!keys) vmraise("out of memory");
                    for (size_t e = 0; e < m->nentries; e++)
                        if (m->entries[e].live) list_push(keys, m->entries[e].key);
                    ra[0] = val_obj(keys);
                } else if (!VAL_IS_LIST(ra[0]) && !VAL_IS_STRING(ra[0])) {
                    vmraise("cannot iterate over %s", val_type_name(ra[0]));
                }
                ra[1] = val_int(0);
                pc += GETARG_sBx(i);
                checkgc();
                vmbreak;
            }
            vmcase(OP_ITERLOOP) {
                Value *ra = RA(i);
                int64_t cur = ra[1].as.i;
                if (ra[0].as.obj->type == OBJ_LIST) {
                    ObjList *l = AS_LIST(ra[0]);
                    if ((uint64_t)cur < l->len) {
                        ra[2] = l->items[cur];
                        ra[1].as.i = cur + 1;
                        pc += GETARG_sBx(i);
                    }
                    vmbreak;
                }
                /* strings: the cursor is a byte offset; one character per step */
                ObjString *s = AS_STRING(ra[0]);
                if ((uint64_t)cur < s->len) {
                    size_t e = (size_t)cur + 1;
                    while (e < s->len && ((unsigned char)s->chars[e] & 0xC0) == 0x80) e++;
                    ObjString *c = str_new(&vm->heap, s->chars + cur, e - (size_t)cur);
                    if (!c) vmraise("out of memory");
                    ra[2] = val_obj(c);
                    ra[1].as.i = (int64_t)e;
                    pc += GETARG_sBx(i);
                    checkgc();
                }
                vmbreak;
            }
            vmcase(OP_APPEND) {
                Value *ra = RA(i);
                if (ra->type == V_OBJ && ra->as.obj->type == OBJ_STRING)
                    state_append(f->state, AS_STRING(*ra)->chars, AS_STRING(*ra)->len);
                vmbreak;
            }
            vmcase(OP_APPENDP) {
                protect(prompt_append(vm, f, *RA(i), 1));
                vmbreak;
            }
            vmcase(OP_APPENDK) {
                ObjString *s = AS_STRING(k[GETARG_Bx(i)]);
                state_append(f->state, s->chars, s->len);
                vmbreak;
            }
            vmcase(OP_ROLEBEGIN) {
                protect(prompt_role_begin(vm, f, GETARG_A(i)));
                vmbreak;
            }
            vmcase(OP_ROLEEND) {
                protect(prompt_role_end(vm, f, GETARG_A(i)));
                vmbreak;
            }
            vmcase(OP_FORK) {
                savestate();
                int rc = prompt_fork(vm, f, base, GETARG_A(i), GETARG_B(i));
                if (rc < 0) goto on_error;
                if (rc > 0) {
                    f->status = FIB_WAIT_FORK;
                    return;
                }
                checkgc();
                vmbreak;
            }
        }
        continue;

    call_closure: {
        /* fn = the callee slot, nargs positional arguments above it */
        ObjClosure *ncl = (ObjClosure *)fn->as.obj;
        Proto *np = ncl->proto;
        size_t fslot = (size_t)(fn - f->stack);
        if (fslot + 1 + (size_t)np->maxstack > f->stack_cap || f->nframes == f->cap_frames) {
            savestate();
            if (fiber_reserve(vm, f, fslot + 1 + (size_t)np->maxstack) < 0) goto on_error;
            fr = &f->frames[f->nframes - 1];
            base = f->stack + fr->base;
            fn = f->stack + fslot;
        }
        if (nargs == np->nparams) {
            mask = low_bits(nargs);
        } else {
            savepc();
            if (fiber_bind_positional(vm, np, fn + 1, nargs, &mask) < 0) goto on_error;
        }
    }
    push_frame: {
        ObjClosure *ncl = (ObjClosure *)fn->as.obj;
        fr->pc = pc;
        /* calls within one module (the usual case) keep its globals */
        if (ncl->module != cl->module) gl = module_globals(ncl);
        fr++;  /* fr is always &f->frames[f->nframes - 1] */
        f->nframes++;
        fr->cl = ncl;
        fr->k = k = ncl->proto->k;
        fr->gl = gl;
        fr->pc = pc = ncl->proto->code;
        fr->base = (size_t)(fn + 1 - f->stack);
        fr->argmask = mask;
        fr->entry = 0;
        cl = ncl;
        base = fn + 1;
        continue;
    }

    do_return: {
        if (f->open && f->open->slot >= fr->base) fiber_close_upvalues(f, fr->base);
        int entry = fr->entry;
        f->nframes--;
        base[-1] = retval;  /* the callee's slot, R[A] of the CALL */
        if (!entry) {
            /* the caller's frame is the one below: fewer dependent loads
             * than load_frame() on the way to the next dispatch */
            fr--;
            cl = fr->cl;
            k = fr->k;
            gl = fr->gl;
            pc = fr->pc;
            base = f->stack + fr->base;
            continue;
        }
        /* the fiber's call from C returned */
        if (f->role == FIB_ROOT_INIT) {
            if (f->run->entry_slot >= 0) {
                if (start_entry(vm, f) < 0) goto on_error;
                load_frame();
                continue;
            }
            run_finish(f->run, val_nil(), f->state);
            fiber_free(vm, f);
            return;
        }
        if (f->role == FIB_ROOT_MAIN) {
            run_finish(f->run, retval, f->state);
            fiber_free(vm, f);
            return;
        }
        if (f->role == FIB_HELPER) {
            if (f->helper) {
                f->helper->done = 1;
                f->helper->value = retval;
            }
            fiber_free(vm, f);
            return;
        }
        prompt_branch_done(vm, f);
        return;
    }

#ifdef VM_COMPUTED_GOTO
    L_count: {
        if (vm_step_over(vm, f)) {
            savepc();
            goto on_error;
        }
        goto *disptab[GET_OP(i)];
    }
#endif

    on_error: {
        const char *msg = vm->raise_msg ? vm->raise_msg : "unknown error";
        char *full;
        if (vm->raise_full) {
            /* a helper's message (with its own position): add our frames */
            StrBuf b;
            sb_init(&b);
            sb_append(&b, msg, strlen(msg));
            fiber_append_trace(&b, f);
            full = b.data ? b.data : strdup("error");
            vm->raise_full = 0;
        } else {
            full = fiber_error_message(f, msg);
        }
        free(vm->raise_msg);
        vm->raise_msg = NULL;
        fiber_fail(vm, f, full);
        return;
    }
    }
}
