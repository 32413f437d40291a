/*
 * vm/fiber.c — fibers: one per program instance, fork branch or helper
 * call, each with its own growable value stack and call-frame stack.
 *
 * Owns: creating and freeing fibers, the ready queue, stack growth and the
 * open upvalues that point into a stack, closures and module instances,
 * binding a call's arguments to parameters, and how a fiber's error becomes
 * a message with a trace and reaches its run, fork parent or helper caller.
 *
 * Stacks grow by reallocation; open upvalues keep their slot index and are
 * re-pointed when the stack moves.
 */
#include "vm/vm_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* fibers                                                              */

Fiber *fiber_new(VM *vm, VmRun *run, FibRole role)
{
    Fiber *f = calloc(1, sizeof(Fiber));
    if (!f) return NULL;
    f->stack = malloc(STACK_INIT * sizeof(Value));
    f->frames = malloc(FRAMES_INIT * sizeof(CallFrame));
    if (!f->stack || !f->frames) {
        free(f->stack);
        free(f->frames);
        free(f);
        return NULL;
    }
    for (size_t i = 0; i < STACK_INIT; i++) f->stack[i] = val_nil();
    f->stack_cap = STACK_INIT;
    f->cap_frames = FRAMES_INIT;
    f->vm = vm;
    f->run = run;
    f->role = role;
    f->status = FIB_READY;
    f->next_all = vm->all;
    if (vm->all) vm->all->prev_all = f;
    vm->all = f;
    vm->stats.fibers_live++;
    if (vm->stats.fibers_live > vm->stats.fibers_max) vm->stats.fibers_max = vm->stats.fibers_live;
    return f;
}

void fiber_close_upvalues(Fiber *f, size_t level)
{
    while (f->open && f->open->slot >= level) {
        ObjUpvalue *uv = f->open;
        uv->closed = *uv->loc;
        uv->loc = &uv->closed;
        f->open = uv->next_open;
        uv->next_open = NULL;
    }
}

void fiber_ready_remove(VM *vm, Fiber *f)
{
    Fiber *prev = NULL;
    for (Fiber *x = vm->ready_head; x; prev = x, x = x->next_ready) {
        if (x != f) continue;
        if (prev) prev->next_ready = x->next_ready;
        else vm->ready_head = x->next_ready;
        if (vm->ready_tail == x) vm->ready_tail = prev;
        x->next_ready = NULL;
        return;
    }
}

void fiber_free(VM *vm, Fiber *f)
{
    fiber_close_upvalues(f, 0);
    if (f->status == FIB_READY) fiber_ready_remove(vm, f);
    if (f->prev_all) f->prev_all->next_all = f->next_all;
    else vm->all = f->next_all;
    if (f->next_all) f->next_all->prev_all = f->prev_all;
    if (vm->cur == f) vm->cur = NULL;
    free(f->stack);
    free(f->frames);
    free(f);
    vm->stats.fibers_live--;
}

void fiber_ready_push(VM *vm, Fiber *f)
{
    f->status = FIB_READY;
    f->next_ready = NULL;
    if (vm->ready_tail) vm->ready_tail->next_ready = f;
    else vm->ready_head = f;
    vm->ready_tail = f;
    if (!vm->driving && vm->wake) vm->wake(vm->wake_ud);
}

Fiber *fiber_ready_pop(VM *vm)
{
    Fiber *f = vm->ready_head;
    if (!f) return NULL;
    vm->ready_head = f->next_ready;
    if (!vm->ready_head) vm->ready_tail = NULL;
    f->next_ready = NULL;
    return f;
}

/* Makes room for `need` stack slots and one more frame. The stack may move:
 * open upvalues are re-pointed; callers recompute their pointers. */
int fiber_reserve(VM *vm, Fiber *f, size_t need)
{
    if (need > f->stack_cap) {
        if (need > STACK_MAX) return vm_raise(vm, "stack overflow (recursion too deep)");
        size_t cap = f->stack_cap * 2;
        while (cap < need) cap *= 2;
        if (cap > STACK_MAX) cap = STACK_MAX;
        Value *s = realloc(f->stack, cap * sizeof(Value));
        if (!s) return vm_raise(vm, "out of memory");
        for (size_t i = f->stack_cap; i < cap; i++) s[i] = val_nil();
        f->stack = s;
        f->stack_cap = cap;
        for (ObjUpvalue *uv = f->open; uv; uv = uv->next_open) uv->loc = &s[uv->slot];
    }
    if (f->nframes >= f->cap_frames) {
        int cap = f->cap_frames * 2;
        CallFrame *fr = realloc(f->frames, (size_t)cap * sizeof(CallFrame));
        if (!fr) return vm_raise(vm, "out of memory");
        f->frames = fr;
        f->cap_frames = cap;
    }
    return 0;
}

ObjUpvalue *fiber_find_upvalue(VM *vm, Fiber *f, size_t slot)
{
    ObjUpvalue **pp = &f->open;
    while (*pp && (*pp)->slot > slot) pp = &(*pp)->next_open;
    if (*pp && (*pp)->slot == slot) return *pp;
    ObjUpvalue *uv = heap_alloc_obj(&vm->heap, sizeof(ObjUpvalue), OBJ_UPVALUE);
    if (!uv) return NULL;
    uv->slot = slot;
    uv->loc = &f->stack[slot];
    uv->closed = val_nil();
    uv->next_open = *pp;
    *pp = uv;
    return uv;
}

ObjClosure *fiber_closure_new(VM *vm, Proto *p, Obj *module)
{
    ObjClosure *cl = heap_alloc_obj(&vm->heap, sizeof(ObjClosure) + (size_t)p->nupvals * sizeof(ObjUpvalue *),
                                    OBJ_CLOSURE);
    if (!cl) return NULL;
    cl->proto = p;
    cl->module = module;
    cl->nupvals = p->nupvals;
    return cl;
}

/* ------------------------------------------------------------------ */
/* errors                                                              */

static const char *fiber_file(const Fiber *f, const Proto *p)
{
    const Program *prog = f->run->prog;
    return p->module >= 0 && p->module < prog->nmods ? prog->mods[p->module].file : "?";
}

static LineCol frame_pos(const CallFrame *fr)
{
    const Proto *p = fr->cl->proto;
    return chunk_pos(p, (int)(fr->pc - p->code) - 1);
}

/* "  at fn (file:line:col)" for every frame, innermost first. */
void fiber_append_trace(StrBuf *b, const Fiber *f)
{
    for (int i = f->nframes - 1; i >= 0; i--) {
        const CallFrame *fr = &f->frames[i];
        LineCol lc = frame_pos(fr);
        sb_printf(b, "\n  at %s (%s:%d:%d)", fr->cl->proto->name, fiber_file(f, fr->cl->proto), lc.line, lc.col);
    }
}

/* The full message of an error at f's current instruction. */
char *fiber_error_message(const Fiber *f, const char *msg)
{
    StrBuf b;
    sb_init(&b);
    if (f->nframes > 0) {
        const CallFrame *fr = &f->frames[f->nframes - 1];
        LineCol lc = frame_pos(fr);
        sb_printf(&b, "%s:%d:%d: error: %s", fiber_file(f, fr->cl->proto), lc.line, lc.col, msg);
        fiber_append_trace(&b, f);
    } else {
        const Program *prog = f->run->prog;
        sb_printf(&b, "%s: error: %s", prog->nmods ? prog->mods[0].file : "?", msg);
    }
    char *s = b.data ? b.data : strdup("error");
    return s;
}


/* Every run reports its end exactly once (sgl_run_batch's progress). */
void run_notify(VmRun *r)
{
    VM *vm = r->vm;
    if (vm->run_done) vm->run_done(vm->run_done_ud, r);
}

void run_finish(VmRun *r, Value value, ObjState *state)
{
    r->finished = 1;
    r->value = value;
    r->state = state;
    run_notify(r);
}

/* Detaches and cancels every branch of p's fork (p is failing). */
void fiber_cancel_branches(VM *vm, Fiber *p)
{
    /* collect first: cancelling frees fibers (only p's descendants) */
    size_t n = 0, cap = 0;
    Fiber **kids = NULL;
    for (Fiber *x = vm->all; x; x = x->next_all) {
        if (x->parent != p) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            Fiber **k = realloc(kids, cap * sizeof(Fiber *));
            if (!k) break;
            kids = k;
        }
        kids[n++] = x;
    }
    for (size_t i = 0; i < n; i++) fiber_cancel(vm, kids[i]);
    free(kids);
    /* anything missed for lack of memory (normally one pass finding none) */
    for (;;) {
        Fiber *c = NULL;
        for (Fiber *x = vm->all; x && !c; x = x->next_all)
            if (x->parent == p) c = x;
        if (!c) return;
        fiber_cancel(vm, c);
    }
}

void fiber_cancel(VM *vm, Fiber *f)
{
    f->parent = NULL;
    f->cancelled = 1;
    fiber_cancel_branches(vm, f);
    /* a fiber waiting on the model is freed when its callback comes */
    if (f->status != FIB_WAIT_MODEL) fiber_free(vm, f);
}

/* f ended with an error (msg is malloc'd, taken over). */
void fiber_fail(VM *vm, Fiber *f, char *msg)
{
    if (f->role == FIB_BRANCH) {
        Fiber *p = f->parent;
        f->parent = NULL;
        fiber_free(vm, f);
        if (!p) { free(msg); return; }
        /* the fork fails: the branch's message, then the parent's frames */
        StrBuf b;
        sb_init(&b);
        sb_append(&b, msg, strlen(msg));
        fiber_append_trace(&b, p);
        free(msg);
        fiber_cancel_branches(vm, p);
        fiber_fail(vm, p, b.data ? b.data : strdup("error"));
        return;
    }
    fiber_cancel_branches(vm, f);
    if (f->role == FIB_HELPER) {
        /* vm_call_now reports it as its caller's error */
        if (f->helper) {
            f->helper->failed = 1;
            f->helper->error = msg;
        } else {
            free(msg);
        }
        fiber_free(vm, f);
        return;
    }
    VmRun *r = f->run;
    r->failed = 1;
    free(r->error);
    r->error = msg;
    r->finished = 1;
    fiber_free(vm, f);
    run_notify(r);
}

void fiber_fail_here(VM *vm, Fiber *f, const char *msg)
{
    fiber_fail(vm, f, fiber_error_message(f, msg));
}

/* ------------------------------------------------------------------ */
/* calls                                                               */


/* Checks the arguments of a call given `mask` (which parameters were passed)
 * and nils the missing ones (their defaults run in the callee). */
static int check_args(VM *vm, const Proto *p, Value *args, uint64_t mask)
{
    uint64_t missing = p->required & ~mask;
    if (missing) {
        int i = __builtin_ctzll(missing);
        return vm_raise(vm, "%s() missing argument '%s'", p->name, p->param_names[i]);
    }
    for (int i = 0; i < p->nparams; i++)
        if (!(mask >> i & 1)) args[i] = val_nil();
    return 0;
}

/* Positional call with a count different from the parameter count. */
int fiber_bind_positional(VM *vm, const Proto *p, Value *args, int nargs, uint64_t *mask)
{
    if (nargs > p->nparams)
        return vm_raise(vm, "%s() takes %d argument%s but %d %s given", p->name, p->nparams,
                        p->nparams == 1 ? "" : "s", nargs, nargs == 1 ? "was" : "were");
    *mask = low_bits(nargs);
    return check_args(vm, p, args, *mask);
}

/* Named arguments: args[0..npos) positional, then nnamed values named by
 * `names`; rearranged in place into parameter order. */
int fiber_bind_named(VM *vm, const Proto *p, Value *args, int npos, int nnamed, const ObjList *names,
                      uint64_t *mask)
{
    if (npos > p->nparams)
        return vm_raise(vm, "%s() takes %d argument%s but %d %s given", p->name, p->nparams,
                        p->nparams == 1 ? "" : "s", npos, npos == 1 ? "was" : "were");
    Value named[256];
    for (int j = 0; j < nnamed; j++) named[j] = args[npos + j];
    uint64_t m = low_bits(npos);
    Value vals[64];
    for (int j = 0; j < nnamed; j++) {
        const ObjString *name = AS_STRING(names->items[j]);
        int idx = -1;
        for (int i = 0; i < p->nparams; i++)
            if (strcmp(p->param_names[i], name->chars) == 0) { idx = i; break; }
        if (idx < 0) return vm_raise(vm, "%s() has no parameter named '%s'", p->name, name->chars);
        if (m >> idx & 1) return vm_raise(vm, "%s() got two values for '%s'", p->name, name->chars);
        m |= (uint64_t)1 << idx;
        vals[idx] = named[j];
    }
    for (int i = npos; i < p->nparams; i++)
        if (m >> i & 1) args[i] = vals[i];
    *mask = m;
    return check_args(vm, p, args, m);
}

/* A module's globals are the entries of its exports map, in slot order. */
/* Starts a fiber's call of cl from C: cl in stack[0], arguments from 1. */
int fiber_call_entry(VM *vm, Fiber *f, ObjClosure *cl, const Value *args, int nargs, uint64_t mask)
{
    const Proto *p = cl->proto;
    if (fiber_reserve(vm, f, 1 + (size_t)p->maxstack + (size_t)nargs) < 0) return -1;
    f->stack[0] = val_obj(cl);
    for (int i = 0; i < nargs && i < p->nparams; i++) f->stack[1 + i] = args[i];
    if (nargs > p->nparams)
        return vm_raise(vm, "%s() takes %d argument%s but %d %s given", p->name, p->nparams,
                        p->nparams == 1 ? "" : "s", nargs, nargs == 1 ? "was" : "were");
    mask &= low_bits(nargs);
    if (check_args(vm, p, f->stack + 1, mask) < 0) return -1;
    CallFrame *fr = &f->frames[f->nframes++];
    fr->cl = cl;
    fr->k = p->k;
    fr->gl = module_globals(cl);
    fr->pc = p->code;
    fr->base = 1;
    fr->argmask = mask;
    fr->entry = 1;
    f->top = 1 + (size_t)p->maxstack;
    return 0;
}

/* ------------------------------------------------------------------ */
/* modules                                                             */

ObjModule *fiber_module_new(VM *vm, VmRun *r, int mi)
{
    const Module *m = &r->prog->mods[mi];
    ObjModule *mod = heap_alloc_obj(&vm->heap, sizeof(ObjModule), OBJ_MODULE);
    if (!mod) return NULL;
    mod->path = str_cstr(&vm->heap, m->file);
    mod->exports = map_new(&vm->heap);
    if (!mod->path || !mod->exports) return NULL;
    /* every top-level name is an entry, in slot order, before any code runs:
     * GETGLOBAL/SETGLOBAL then index exports->entries directly */
    for (int g = 0; g < m->nglobals; g++) {
        ObjString *name = str_cstr(&vm->heap, m->globals[g]);
        if (!name) return NULL;
        map_set(mod->exports, val_obj(name), val_nil());
    }
    if ((int)mod->exports->nentries != m->nglobals) return NULL;
    return mod;
}
