/*
 * vm/vm.c — fibers, the interpreter loop, the scheduler and the collector's
 * roots (see vm/vm.h for the picture).
 *
 * The loop (execute) is Lua-style: registers are a window of the fiber's
 * value stack starting at `base`; a call pushes a CallFrame and moves the
 * window, a return pops it, so SGL calls never recurse in C and a fiber can
 * stop at any model call and resume later. Dispatch is computed goto where
 * the compiler has it (vmcase/vmbreak), a switch otherwise (-DSGL_VM_SWITCH).
 *
 * Fiber stack layout (one frame):
 *
 *   stack[base-1]  the called function (the return value goes here)
 *   stack[base+0]  R[0] = first parameter
 *   ...            R[maxstack-1]
 *
 * Stacks grow by reallocation; open upvalues keep their slot index and are
 * re-pointed when the stack moves. Collection happens only in checkgc(),
 * between instructions, when every live value is in a register, a root or
 * an object reachable from one.
 */
#include "vm/vm.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/builtins.h"
#include "vm/chat.h"
#include "vm/gen.h"

#define STACK_INIT 64
#define STACK_MAX ((size_t)1 << 20)   /* values per fiber: "stack overflow" beyond */
#define FRAMES_INIT 8
#define RANGE_MAX ((int64_t)1 << 28)

typedef struct {
    ObjClosure *cl;
    Value *k;               /* cl->proto->k and its module's globals, cached: */
    MapEntry *gl;           /* returns reload them from here */
    const Instr *pc;        /* next instruction (saved when the frame is not running) */
    size_t base;            /* stack index of R[0] */
    uint64_t argmask;       /* bit i: parameter i was passed */
    int entry;              /* returning from this frame returns to C (the fiber's start) */
} CallFrame;

typedef enum { FIB_READY, FIB_RUNNING, FIB_WAIT_MODEL, FIB_WAIT_FORK } FibStatus;
typedef enum { FIB_ROOT_INIT, FIB_ROOT_MAIN, FIB_BRANCH, FIB_HELPER } FibRole;

/* Where a helper fiber (vm_call_now) leaves its outcome. */
typedef struct {
    int done, failed;
    Value value;
    char *error;            /* malloc'd full message when failed */
} HelperOut;

struct Fiber {
    VM *vm;
    VmRun *run;
    Fiber *next_ready;
    Fiber *prev_all, *next_all;
    Value *stack;
    size_t stack_cap;
    size_t top;             /* slots in use (for the collector) */
    CallFrame *frames;
    int nframes, cap_frames;
    ObjUpvalue *open;       /* open upvalues, highest slot first */
    ObjState *state;
    FibStatus status;
    FibRole role;
    int cancelled;          /* its fork failed; freed when its model call returns */
    Fiber *parent;          /* the fiber waiting on this branch's fork */
    int branch;             /* index of this branch */
    ObjList *fork_results;  /* while waiting on a fork: branch states */
    int fork_pending;
    size_t wait_slot;       /* while waiting on the model: where the result goes */
    HelperOut *helper;      /* FIB_HELPER: its caller's outcome slot (NULL once abandoned) */
};

struct VmRun {
    VM *vm;
    VmRun *prev, *next;
    Program *prog;
    ObjModule **mods;       /* this instance's modules, created on first import */
    int entry_slot;
    Value *args;
    int nargs;
    uint64_t argmask;
    int finished, failed;
    char *error;
    Value value;
    ObjState *state;
};

typedef struct {
    const char *name;
    NativeFn fn;
} NativeEntry;

struct VM {
    Heap heap;
    RtBackend *backend;
    void (*out)(void *ud, const char *s, size_t n);
    void *out_ud;
    Fiber *ready_head, *ready_tail;
    Fiber *all;
    VmRun *runs;
    Fiber *cur;             /* the fiber whose instruction is running */
    Fiber *in_native;       /* the fiber inside a native call */
    char *raise_msg;        /* message of the pending runtime error */
    NativeEntry *natives;
    const char **native_names;
    int nnatives;
    VmStats stats;
    int raise_full;         /* raise_msg is already a full message (a helper's): add only the trace */
    Chat *chat;             /* chat templates for role blocks */
    VmRun *aux;             /* auxiliary runs (template modules), not in `runs` */
    int helper_depth;       /* vm_call_now nesting */
    void (*run_done)(void *ud, VmRun *r);
    void *run_done_ud;
};

static const NativeEntry model_natives[] = {
    {"gen", gen_native_gen},
    {"select", gen_native_select},
};

/* ------------------------------------------------------------------ */
/* VM                                                                  */

static const char *proto_name(const struct Proto *p) { return p ? p->name : NULL; }

static void stdout_write(void *ud, const char *s, size_t n)
{
    (void)ud;
    fwrite(s, 1, n, stdout);
}

VM *vm_new(void)
{
    VM *vm = calloc(1, sizeof(VM));
    if (!vm) return NULL;
    heap_init(&vm->heap);
    vm->out = stdout_write;
    int n = sgl_builtin_count + (int)(sizeof model_natives / sizeof model_natives[0]);
    vm->natives = calloc((size_t)n, sizeof(NativeEntry));
    vm->native_names = calloc((size_t)n, sizeof(char *));
    if (!vm->natives || !vm->native_names) {
        vm_free(vm);
        return NULL;
    }
    for (int i = 0; i < sgl_builtin_count; i++) {
        vm->natives[i].name = sgl_builtins[i].name;
        vm->natives[i].fn = sgl_builtins[i].fn;
    }
    for (size_t i = 0; i < sizeof model_natives / sizeof model_natives[0]; i++)
        vm->natives[sgl_builtin_count + (int)i] = model_natives[i];
    for (int i = 0; i < n; i++) vm->native_names[i] = vm->natives[i].name;
    vm->nnatives = n;
    vm->chat = chat_new();
    if (!vm->chat) {
        vm_free(vm);
        return NULL;
    }
    val_set_proto_namer(proto_name);
    return vm;
}

static void fiber_free(VM *vm, Fiber *f);

void vm_free(VM *vm)
{
    if (!vm) return;
    chat_free(vm, vm->chat);
    while (vm->runs) vm_run_free(vm, vm->runs);
    while (vm->aux) vm_aux_free(vm, vm->aux);
    while (vm->all) fiber_free(vm, vm->all);
    heap_free_all(&vm->heap);
    free(vm->natives);
    free(vm->native_names);
    free(vm->raise_msg);
    free(vm);
}

void vm_set_backend(VM *vm, RtBackend *backend)
{
    /* the template chosen from the old backend's model may not fit the new one */
    if (backend != vm->backend) chat_reset(vm, vm->chat);
    vm->backend = backend;
}

int vm_set_chat_template(VM *vm, const char *name, const char *stdlib_dir)
{
    return chat_configure(vm, vm->chat, name, stdlib_dir);
}

const char *vm_chat_end_of_turn(const VM *vm) { return chat_end_of_turn(vm->chat); }

void vm_set_run_done(VM *vm, void (*done)(void *ud, VmRun *r), void *ud)
{
    vm->run_done = done;
    vm->run_done_ud = done ? ud : NULL;
}

RtBackend *vm_backend(VM *vm) { return vm->backend; }

void vm_set_output(VM *vm, void (*write)(void *ud, const char *s, size_t n), void *ud)
{
    vm->out = write ? write : stdout_write;
    vm->out_ud = write ? ud : NULL;
}

void vm_write_out(VM *vm, const char *s, size_t n) { vm->out(vm->out_ud, s, n); }
Heap *vm_heap(VM *vm) { return &vm->heap; }

const char *const *vm_builtin_names(const VM *vm, int *count)
{
    *count = vm->nnatives;
    return vm->native_names;
}

int vm_raise(VM *vm, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(vm->raise_msg);
    vm->raise_msg = strdup(buf);
    vm->raise_full = 0;
    return -1;
}

void vm_stats(const VM *vm, VmStats *out) { *out = vm->stats; }

/* ------------------------------------------------------------------ */
/* linking                                                             */

static NativeFn find_native(VM *vm, const char *name)
{
    for (int i = 0; i < vm->nnatives; i++)
        if (strcmp(vm->natives[i].name, name) == 0) return vm->natives[i].fn;
    return NULL;
}

static const char *native_name(VM *vm, const char *name)
{
    for (int i = 0; i < vm->nnatives; i++)
        if (strcmp(vm->natives[i].name, name) == 0) return vm->natives[i].name;
    return name;
}

int vm_link(VM *vm, Program *p, Heap *kheap, char *err, size_t errcap)
{
    for (int pi = 0; pi < p->nprotos; pi++) {
        Proto *f = p->protos[pi];
        free(f->k);
        f->k = calloc((size_t)(f->nconsts > 0 ? f->nconsts : 1), sizeof(Value));
        if (!f->k) goto oom;
        for (int i = 0; i < f->nconsts; i++) {
            const Const *c = &f->consts[i];
            Value v = val_nil();
            switch (c->kind) {
            case KC_INT: v = val_int(c->i); break;
            case KC_FLOAT: v = val_float(c->f); break;
            case KC_STRING: {
                ObjString *s = str_new(kheap, c->s, c->len);
                if (!s) goto oom;
                v = val_obj(s);
                break;
            }
            case KC_REGEX: {
                ObjRegex *r = heap_alloc_obj(kheap, sizeof(ObjRegex), OBJ_REGEX);
                if (!r) goto oom;
                r->source = str_new(kheap, c->s, c->len);
                if (!r->source) goto oom;
                v = val_obj(r);
                break;
            }
            case KC_GRAMMAR: {
                ObjGrammar *g = heap_alloc_obj(kheap, sizeof(ObjGrammar), OBJ_GRAMMAR);
                if (!g) goto oom;
                g->name = str_cstr(kheap, c->name);
                g->source = str_new(kheap, c->s, c->len);
                if (!g->name || !g->source) goto oom;
                v = val_obj(g);
                break;
            }
            case KC_BUILTIN: {
                NativeFn fn = find_native(vm, c->s);
                if (!fn) {
                    snprintf(err, errcap, "unknown built-in '%s' (compiled by another version of sgl?)", c->s);
                    return -1;
                }
                ObjNative *n = heap_alloc_obj(kheap, sizeof(ObjNative), OBJ_NATIVE);
                if (!n) goto oom;
                n->name = native_name(vm, c->s);
                n->fn = fn;
                v = val_obj(n);
                break;
            }
            case KC_NAMES: {
                ObjList *l = list_new(kheap, (size_t)c->nnames);
                if (!l) goto oom;
                for (int j = 0; j < c->nnames; j++) {
                    ObjString *s = str_cstr(kheap, c->names[j]);
                    if (!s) goto oom;
                    list_push(l, val_obj(s));
                }
                v = val_obj(l);
                break;
            }
            case KC__COUNT: break;
            }
            f->k[i] = v;
        }
    }
    return 0;
oom:
    snprintf(err, errcap, "out of memory");
    return -1;
}

/* ------------------------------------------------------------------ */
/* fibers                                                              */

static Fiber *fiber_new(VM *vm, VmRun *run, FibRole role)
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

static void close_upvalues(Fiber *f, size_t level)
{
    while (f->open && f->open->slot >= level) {
        ObjUpvalue *uv = f->open;
        uv->closed = *uv->loc;
        uv->loc = &uv->closed;
        f->open = uv->next_open;
        uv->next_open = NULL;
    }
}

static void ready_remove(VM *vm, Fiber *f)
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

static void fiber_free(VM *vm, Fiber *f)
{
    close_upvalues(f, 0);
    if (f->status == FIB_READY) ready_remove(vm, f);
    if (f->prev_all) f->prev_all->next_all = f->next_all;
    else vm->all = f->next_all;
    if (f->next_all) f->next_all->prev_all = f->prev_all;
    if (vm->cur == f) vm->cur = NULL;
    free(f->stack);
    free(f->frames);
    free(f);
    vm->stats.fibers_live--;
}

static void ready_push(VM *vm, Fiber *f)
{
    f->status = FIB_READY;
    f->next_ready = NULL;
    if (vm->ready_tail) vm->ready_tail->next_ready = f;
    else vm->ready_head = f;
    vm->ready_tail = f;
}

static Fiber *ready_pop(VM *vm)
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
static int fiber_reserve(VM *vm, Fiber *f, size_t need)
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

static ObjUpvalue *find_upvalue(VM *vm, Fiber *f, size_t slot)
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

static ObjClosure *closure_new(VM *vm, Proto *p, Obj *module)
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
static void append_trace(StrBuf *b, const Fiber *f)
{
    for (int i = f->nframes - 1; i >= 0; i--) {
        const CallFrame *fr = &f->frames[i];
        LineCol lc = frame_pos(fr);
        sb_printf(b, "\n  at %s (%s:%d:%d)", fr->cl->proto->name, fiber_file(f, fr->cl->proto), lc.line, lc.col);
    }
}

/* The full message of an error at f's current instruction. */
static char *error_message(const Fiber *f, const char *msg)
{
    StrBuf b;
    sb_init(&b);
    if (f->nframes > 0) {
        const CallFrame *fr = &f->frames[f->nframes - 1];
        LineCol lc = frame_pos(fr);
        sb_printf(&b, "%s:%d:%d: error: %s", fiber_file(f, fr->cl->proto), lc.line, lc.col, msg);
        append_trace(&b, f);
    } else {
        const Program *prog = f->run->prog;
        sb_printf(&b, "%s: error: %s", prog->nmods ? prog->mods[0].file : "?", msg);
    }
    char *s = b.data ? b.data : strdup("error");
    return s;
}

static void fiber_cancel(VM *vm, Fiber *f);
static void fiber_fail(VM *vm, Fiber *f, char *msg);

/* Every run reports its end exactly once (sgl_run_batch's progress). */
static void run_notify(VmRun *r)
{
    VM *vm = r->vm;
    if (vm->run_done) vm->run_done(vm->run_done_ud, r);
}

static void run_finish(VmRun *r, Value value, ObjState *state)
{
    r->finished = 1;
    r->value = value;
    r->state = state;
    run_notify(r);
}

/* Detaches and cancels every branch of p's fork (p is failing). */
static void cancel_branches(VM *vm, Fiber *p)
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

static void fiber_cancel(VM *vm, Fiber *f)
{
    f->parent = NULL;
    f->cancelled = 1;
    cancel_branches(vm, f);
    /* a fiber waiting on the model is freed when its callback comes */
    if (f->status != FIB_WAIT_MODEL) fiber_free(vm, f);
}

/* f ended with an error (msg is malloc'd, taken over). */
static void fiber_fail(VM *vm, Fiber *f, char *msg)
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
        append_trace(&b, p);
        free(msg);
        cancel_branches(vm, p);
        fiber_fail(vm, p, b.data ? b.data : strdup("error"));
        return;
    }
    cancel_branches(vm, f);
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

static void fiber_fail_here(VM *vm, Fiber *f, const char *msg)
{
    fiber_fail(vm, f, error_message(f, msg));
}

/* ------------------------------------------------------------------ */
/* calls                                                               */

static uint64_t low_bits(int n) { return n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1); }

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
static int bind_positional(VM *vm, const Proto *p, Value *args, int nargs, uint64_t *mask)
{
    if (nargs > p->nparams)
        return vm_raise(vm, "%s() takes %d argument%s but %d %s given", p->name, p->nparams,
                        p->nparams == 1 ? "" : "s", nargs, nargs == 1 ? "was" : "were");
    *mask = low_bits(nargs);
    return check_args(vm, p, args, *mask);
}

/* Named arguments: args[0..npos) positional, then nnamed values named by
 * `names`; rearranged in place into parameter order. */
static int bind_named(VM *vm, const Proto *p, Value *args, int npos, int nnamed, const ObjList *names,
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
static inline MapEntry *module_globals(const ObjClosure *cl)
{
    return ((ObjModule *)cl->module)->exports->entries;
}

/* Starts a fiber's call of cl from C: cl in stack[0], arguments from 1. */
static int fiber_call_entry(VM *vm, Fiber *f, ObjClosure *cl, const Value *args, int nargs, uint64_t mask)
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

static ObjModule *module_new(VM *vm, VmRun *r, int mi)
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

/* ------------------------------------------------------------------ */
/* operators (slow paths)                                              */

static bool truthy(Value v)
{
    switch (v.type) {
    case V_NIL: return false;
    case V_BOOL: return v.as.b;
    case V_INT: return v.as.i != 0;
    case V_FLOAT: return v.as.f != 0.0;
    case V_OBJ: break;
    }
    switch (v.as.obj->type) {
    case OBJ_STRING: return AS_STRING(v)->len != 0;
    case OBJ_LIST: return AS_LIST(v)->len != 0;
    case OBJ_MAP: return AS_MAP(v)->count != 0;
    default: return true;
    }
}

static bool is_num(Value v) { return v.type == V_INT || v.type == V_FLOAT; }
static double num(Value v) { return v.type == V_INT ? (double)v.as.i : v.as.f; }

static const char *op_verb(OpCode op)
{
    switch (op) {
    case OP_ADD: return "add";
    case OP_SUB: return "subtract";
    case OP_MUL: return "multiply";
    case OP_DIV: return "divide";
    default: return "take the remainder of";
    }
}

static const char *op_symbol(OpCode op)
{
    switch (op) {
    case OP_ADD: return "+";
    case OP_SUB: return "-";
    case OP_MUL: return "*";
    case OP_DIV: return "/";
    default: return "%";
    }
}

static int arith(VM *vm, OpCode op, Value *ra, Value b, Value c)
{
    if (b.type == V_INT && c.type == V_INT) {
        int64_t x = b.as.i, y = c.as.i, r;
        switch (op) {
        case OP_ADD:
            if (__builtin_add_overflow(x, y, &r)) return vm_raise(vm, "integer overflow in %lld + %lld", (long long)x, (long long)y);
            break;
        case OP_SUB:
            if (__builtin_sub_overflow(x, y, &r)) return vm_raise(vm, "integer overflow in %lld - %lld", (long long)x, (long long)y);
            break;
        case OP_MUL:
            if (__builtin_mul_overflow(x, y, &r)) return vm_raise(vm, "integer overflow in %lld * %lld", (long long)x, (long long)y);
            break;
        case OP_DIV:
            if (y == 0) return vm_raise(vm, "division by zero");
            *ra = val_float((double)x / (double)y);
            return 0;
        default:
            if (y == 0) return vm_raise(vm, "modulo by zero");
            if (y == -1) { r = 0; break; }
            r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            break;
        }
        *ra = val_int(r);
        return 0;
    }
    if (is_num(b) && is_num(c)) {
        double x = num(b), y = num(c), r;
        switch (op) {
        case OP_ADD: r = x + y; break;
        case OP_SUB: r = x - y; break;
        case OP_MUL: r = x * y; break;
        case OP_DIV:
            if (y == 0) return vm_raise(vm, "division by zero");
            r = x / y;
            break;
        default:
            if (y == 0) return vm_raise(vm, "modulo by zero");
            r = fmod(x, y);
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            break;
        }
        *ra = val_float(r);
        return 0;
    }
    if (op == OP_ADD) {
        if (VAL_IS_STRING(b) && VAL_IS_STRING(c)) {
            ObjString *s = str_concat(&vm->heap, AS_STRING(b), AS_STRING(c));
            if (!s) return vm_raise(vm, "out of memory");
            *ra = val_obj(s);
            return 0;
        }
        if (VAL_IS_LIST(b) && VAL_IS_LIST(c)) {
            ObjList *x = AS_LIST(b), *y = AS_LIST(c);
            ObjList *l = list_new(&vm->heap, x->len + y->len);
            if (!l) return vm_raise(vm, "out of memory");
            for (size_t i = 0; i < x->len; i++) list_push(l, x->items[i]);
            for (size_t i = 0; i < y->len; i++) list_push(l, y->items[i]);
            *ra = val_obj(l);
            return 0;
        }
        if ((VAL_IS_STRING(b) && c.type != V_OBJ) || (VAL_IS_STRING(c) && b.type != V_OBJ))
            return vm_raise(vm, "cannot add %s and %s; use str() to convert", val_type_name(b), val_type_name(c));
    }
    return vm_raise(vm, "cannot %s %s and %s (%s)", op_verb(op), val_type_name(b), val_type_name(c), op_symbol(op));
}

/* *res := b < c (or <=). */
static int less(VM *vm, Value b, Value c, int or_equal, bool *res)
{
    if (b.type == V_INT && c.type == V_INT) {
        *res = or_equal ? b.as.i <= c.as.i : b.as.i < c.as.i;
        return 0;
    }
    if (is_num(b) && is_num(c)) {
        double x = num(b), y = num(c);
        *res = or_equal ? x <= y : x < y;
        return 0;
    }
    if (VAL_IS_STRING(b) && VAL_IS_STRING(c)) {
        const ObjString *x = AS_STRING(b), *y = AS_STRING(c);
        size_t n = x->len < y->len ? x->len : y->len;
        int d = memcmp(x->chars, y->chars, n);
        if (d == 0) d = x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
        *res = or_equal ? d <= 0 : d < 0;
        return 0;
    }
    return vm_raise(vm, "cannot compare %s and %s", val_type_name(b), val_type_name(c));
}

static int compare_imm(VM *vm, Value a, int64_t imm, OpCode op, bool *res)
{
    double x;
    if (a.type == V_INT) {
        int64_t v = a.as.i;
        switch (op) {
        case OP_LTI: *res = v < imm; break;
        case OP_LEI: *res = v <= imm; break;
        case OP_GTI: *res = v > imm; break;
        default: *res = v >= imm; break;
        }
        return 0;
    }
    if (a.type != V_FLOAT) return vm_raise(vm, "cannot compare %s and int", val_type_name(a));
    x = a.as.f;
    double y = (double)imm;
    switch (op) {
    case OP_LTI: *res = x < y; break;
    case OP_LEI: *res = x <= y; break;
    case OP_GTI: *res = x > y; break;
    default: *res = x >= y; break;
    }
    return 0;
}

static bool equal(Value a, Value b)
{
    if (a.type == V_INT && b.type == V_INT) return a.as.i == b.as.i;
    return val_equal(a, b);
}

static void repr_into(char *buf, size_t cap, Value v)
{
    StrBuf b;
    sb_init(&b);
    val_to_repr(&b, v);
    if (b.len > 60) {
        b.len = 57;
        sb_append(&b, "...", 3);
    }
    snprintf(buf, cap, "%.*s", (int)b.len, b.data ? b.data : "");
    sb_free(&b);
}

/* Byte offset of character `i` (0-based) in a UTF-8 string, and its length. */
static void utf8_char_at(const ObjString *s, size_t i, size_t *off, size_t *n)
{
    if (s->nchars == s->len) {
        *off = i;
        *n = 1;
        return;
    }
    size_t o = 0;
    for (size_t c = 0; c < i; c++) {
        o++;
        while (o < s->len && ((unsigned char)s->chars[o] & 0xC0) == 0x80) o++;
    }
    size_t e = o + 1;
    while (e < s->len && ((unsigned char)s->chars[e] & 0xC0) == 0x80) e++;
    *off = o;
    *n = e - o;
}

static int norm_index(VM *vm, Value key, size_t len, const char *what, size_t *out)
{
    if (key.type != V_INT) return vm_raise(vm, "%s index must be an int, not %s", what, val_type_name(key));
    int64_t i = key.as.i;
    if (i < 0) i += (int64_t)len;
    if (i < 0 || (uint64_t)i >= len)
        return vm_raise(vm, "%s index %lld out of range (length %zu)", what, (long long)key.as.i, len);
    *out = (size_t)i;
    return 0;
}

static int state_var(VM *vm, ObjState *s, Value key, Value *out)
{
    if (map_get(s->vars, key, out)) return 0;
    char k[80];
    repr_into(k, sizeof k, key);
    return vm_raise(vm, "the state has no variable %s", k);
}

static int index_get(VM *vm, Value obj, Value key, Value *out)
{
    if (obj.type == V_OBJ) {
        switch (obj.as.obj->type) {
        case OBJ_LIST: {
            ObjList *l = AS_LIST(obj);
            size_t i;
            if (norm_index(vm, key, l->len, "list", &i) < 0) return -1;
            *out = l->items[i];
            return 0;
        }
        case OBJ_STRING: {
            ObjString *s = AS_STRING(obj);
            size_t i, off, n;
            if (norm_index(vm, key, s->nchars, "string", &i) < 0) return -1;
            utf8_char_at(s, i, &off, &n);
            ObjString *c = str_new(&vm->heap, s->chars + off, n);
            if (!c) return vm_raise(vm, "out of memory");
            *out = val_obj(c);
            return 0;
        }
        case OBJ_MAP: {
            if (!map_key_ok(key)) return vm_raise(vm, "a %s cannot be a map key", val_type_name(key));
            if (map_get(AS_MAP(obj), key, out)) return 0;
            char k[80];
            repr_into(k, sizeof k, key);
            return vm_raise(vm, "key %s not in map", k);
        }
        case OBJ_STATE:
            return state_var(vm, AS_STATE(obj), key, out);
        case OBJ_MODULE: {
            ObjModule *m = (ObjModule *)obj.as.obj;
            if (VAL_IS_STRING(key) && map_get(m->exports, key, out)) return 0;
            char k[80];
            repr_into(k, sizeof k, key);
            return vm_raise(vm, "module %s has no name %s", m->path ? m->path->chars : "?", k);
        }
        default: break;
        }
    }
    return vm_raise(vm, "cannot index %s", val_type_name(obj));
}

static int field_get(VM *vm, Value obj, ObjString *name, Value *out)
{
    if (obj.type == V_OBJ) {
        switch (obj.as.obj->type) {
        case OBJ_MAP:
            if (map_get(AS_MAP(obj), val_obj(name), out)) return 0;
            return vm_raise(vm, "key \"%s\" not in map", name->chars);
        case OBJ_STATE: {
            ObjState *s = AS_STATE(obj);
            if (strcmp(name->chars, "text") == 0) {
                ObjString *t = str_new(&vm->heap, s->text ? s->text : "", s->len);
                if (!t) return vm_raise(vm, "out of memory");
                *out = val_obj(t);
                return 0;
            }
            if (strcmp(name->chars, "vars") == 0) { *out = val_obj(s->vars); return 0; }
            if (strcmp(name->chars, "meta") == 0) { *out = val_obj(s->meta); return 0; }
            if (strcmp(name->chars, "logprobs") == 0) { *out = val_obj(s->logprobs); return 0; }
            return state_var(vm, s, val_obj(name), out);
        }
        case OBJ_MODULE: {
            ObjModule *m = (ObjModule *)obj.as.obj;
            if (map_get(m->exports, val_obj(name), out)) return 0;
            return vm_raise(vm, "module %s has no name '%s'", m->path ? m->path->chars : "?", name->chars);
        }
        default: break;
        }
    }
    return vm_raise(vm, "%s has no field '%s'", val_type_name(obj), name->chars);
}

static int index_set(VM *vm, Value obj, Value key, Value v)
{
    if (obj.type == V_OBJ) {
        switch (obj.as.obj->type) {
        case OBJ_LIST: {
            ObjList *l = AS_LIST(obj);
            size_t i;
            if (norm_index(vm, key, l->len, "list", &i) < 0) return -1;
            l->items[i] = v;
            return 0;
        }
        case OBJ_MAP:
            if (!map_key_ok(key)) return vm_raise(vm, "a %s cannot be a map key", val_type_name(key));
            map_set(AS_MAP(obj), key, v);
            return 0;
        case OBJ_STATE:
            if (!VAL_IS_STRING(key)) return vm_raise(vm, "state variable names are strings, not %s", val_type_name(key));
            map_set(AS_STATE(obj)->vars, key, v);
            return 0;
        case OBJ_STRING:
            return vm_raise(vm, "strings are immutable");
        case OBJ_MODULE:
            return vm_raise(vm, "cannot assign to a module's names from outside it");
        default: break;
        }
    }
    return vm_raise(vm, "cannot assign into %s", val_type_name(obj));
}

static int field_set(VM *vm, Value obj, ObjString *name, Value v)
{
    if (VAL_IS_STATE(obj)) {
        const char *n = name->chars;
        if (!strcmp(n, "text") || !strcmp(n, "vars") || !strcmp(n, "meta") || !strcmp(n, "logprobs"))
            return vm_raise(vm, "state.%s cannot be assigned", n);
    }
    if (VAL_IS_MAP(obj) || VAL_IS_STATE(obj) || val_is_obj_type(obj, OBJ_MODULE)) return index_set(vm, obj, val_obj(name), v);
    return vm_raise(vm, "cannot set field '%s' of %s", name->chars, val_type_name(obj));
}

static int op_in(VM *vm, Value a, Value b, bool *res)
{
    if (b.type == V_OBJ) {
        switch (b.as.obj->type) {
        case OBJ_LIST: {
            ObjList *l = AS_LIST(b);
            *res = false;
            for (size_t i = 0; i < l->len; i++)
                if (equal(a, l->items[i])) { *res = true; break; }
            return 0;
        }
        case OBJ_MAP: {
            Value dummy;
            *res = map_key_ok(a) && map_get(AS_MAP(b), a, &dummy);
            return 0;
        }
        case OBJ_STRING: {
            if (!VAL_IS_STRING(a))
                return vm_raise(vm, "'in' with a string on the right needs a string on the left, not %s", val_type_name(a));
            ObjString *h = AS_STRING(b), *n = AS_STRING(a);
            *res = n->len == 0 || memmem(h->chars, h->len, n->chars, n->len) != NULL;
            return 0;
        }
        case OBJ_STATE: {
            Value dummy;
            *res = map_key_ok(a) && map_get(AS_STATE(b)->vars, a, &dummy);
            return 0;
        }
        default: break;
        }
    }
    return vm_raise(vm, "'in' needs a list, map or string on the right, not %s", val_type_name(b));
}

static int make_range(VM *vm, Value a, Value b, Value *out)
{
    if (a.type != V_INT || b.type != V_INT)
        return vm_raise(vm, "range bounds must be ints, not %s and %s", val_type_name(a), val_type_name(b));
    int64_t lo = a.as.i, hi = b.as.i;
    int64_t n = hi > lo ? (int64_t)((uint64_t)hi - (uint64_t)lo) : 0;
    if (n < 0 || n > RANGE_MAX) return vm_raise(vm, "range %lld..%lld is too large", (long long)lo, (long long)hi);
    ObjList *l = list_new(&vm->heap, (size_t)n);
    if (!l) return vm_raise(vm, "out of memory");
    for (int64_t i = 0; i < n; i++) list_push(l, val_int(lo + i));
    *out = val_obj(l);
    return 0;
}

static int to_text(VM *vm, Value v, Value *out)
{
    if (VAL_IS_STRING(v)) { *out = v; return 0; }
    StrBuf b;
    sb_init(&b);
    val_to_text(&b, v);
    ObjString *s = sb_to_string(&vm->heap, &b);
    if (!s) return vm_raise(vm, "out of memory");
    *out = val_obj(s);
    return 0;
}

static int concat(VM *vm, Value *regs, int n, Value *out)
{
    StrBuf b;
    sb_init(&b);
    for (int i = 0; i < n; i++) {
        if (VAL_IS_STRING(regs[i])) sb_append(&b, AS_STRING(regs[i])->chars, AS_STRING(regs[i])->len);
        else val_to_text(&b, regs[i]);
    }
    ObjString *s = sb_to_string(&vm->heap, &b);
    if (!s) return vm_raise(vm, "out of memory");
    *out = val_obj(s);
    return 0;
}

/* ---- the prompt state ---- */

static int append_value(VM *vm, Fiber *f, Value v, int strict)
{
    if (VAL_IS_STRING(v)) {
        ObjString *s = AS_STRING(v);
        state_append(f->state, s->chars, s->len);
        return 0;
    }
    if (strict && v.type != V_NIL)
        return vm_raise(vm, "cannot append %s to the prompt; use str()", val_type_name(v));
    return 0;
}

static int segs_push(ObjState *s, Role role, size_t start)
{
    if (s->nsegs == s->cap_segs) {
        int cap = s->cap_segs ? s->cap_segs * 2 : 4;
        StateSegment *segs = realloc(s->segs, (size_t)cap * sizeof(StateSegment));
        if (!segs) return -1;
        s->segs = segs;
        s->cap_segs = cap;
    }
    s->segs[s->nsegs].role = role;
    s->segs[s->nsegs].start = start;
    s->segs[s->nsegs].end = SIZE_MAX;
    s->nsegs++;
    return 0;
}

/* Role blocks: the segment covers what the block appends; the chat
 * template's markers (vm/chat.h: bos, role_begin, role_end) go around it,
 * outside the segment. */
static int role_begin(VM *vm, Fiber *f, int role)
{
    ObjState *s = f->state;
    if (role < 0 || role >= ROLE_COUNT) return vm_raise(vm, "internal error: bad role %d", role);
    if (f->role == FIB_HELPER) return vm_raise(vm, "a chat template cannot open a %s block", role_name(role));
    if (s->nsegs > 0 && s->segs[s->nsegs - 1].end == SIZE_MAX)
        return vm_raise(vm, "a %s block cannot start inside a %s block", role_name(role),
                        role_name(s->segs[s->nsegs - 1].role));
    if (chat_open(vm, vm->chat, s, role) < 0) return -1;
    if (segs_push(s, (Role)role, s->len) < 0) return vm_raise(vm, "out of memory");
    return 0;
}

static int role_end(VM *vm, Fiber *f, int role)
{
    ObjState *s = f->state;
    if (role < 0 || role >= ROLE_COUNT) return vm_raise(vm, "internal error: bad role %d", role);
    if (s->nsegs == 0 || s->segs[s->nsegs - 1].end != SIZE_MAX) return 0;
    s->segs[s->nsegs - 1].end = s->len;
    return chat_close(vm, vm->chat, s, role);
}

/* ---- fork ---- */

/* Starts one branch per item; 1 when the fiber now waits, 0 when there was
 * nothing to run (R[a] is then the empty list), -1 on error. */
static int do_fork(VM *vm, Fiber *f, Value *base, int a, int b)
{
    Value it = base[b], clv = base[b + 1];
    int64_t n;
    ObjList *items = NULL;
    if (VAL_IS_LIST(it)) {
        items = AS_LIST(it);
        n = (int64_t)items->len;
    } else if (it.type == V_INT) {
        n = it.as.i;
        if (n < 0) return vm_raise(vm, "fork over a negative count (%lld)", (long long)n);
    } else {
        return vm_raise(vm, "fork needs a list, a range or an int, not %s", val_type_name(it));
    }
    if (n > (int64_t)1 << 24) return vm_raise(vm, "fork over too many branches (%lld)", (long long)n);
    if (!val_is_obj_type(clv, OBJ_CLOSURE)) return vm_raise(vm, "internal error: fork body is not a function");
    ObjClosure *body = (ObjClosure *)clv.as.obj;
    ObjList *results = list_new(&vm->heap, (size_t)n);
    if (!results) return vm_raise(vm, "out of memory");
    for (int64_t i = 0; i < n; i++) list_push(results, val_nil());
    if (n == 0) {
        base[a] = val_obj(results);
        return 0;
    }
    /* branches start in order; each runs until it waits, so all of their
     * first model calls are in flight before any completes */
    for (int64_t i = 0; i < n; i++) {
        Value item = items ? items->items[i] : val_int(i);
        Fiber *br = fiber_new(vm, f->run, FIB_BRANCH);
        if (!br) {
            cancel_branches(vm, f);
            return vm_raise(vm, "out of memory");
        }
        br->parent = f;
        br->branch = (int)i;
        br->state = state_copy(&vm->heap, f->state);
        if (!br->state || fiber_call_entry(vm, br, body, &item, 1, 1) < 0) {
            cancel_branches(vm, f);
            return br->state ? -1 : vm_raise(vm, "out of memory");
        }
        ready_push(vm, br);
    }
    base[a] = val_obj(results);
    f->fork_results = results;
    f->fork_pending = (int)n;
    return 1;
}

/* A branch's body returned: its state is its value in the fork's list. */
static void branch_done(VM *vm, Fiber *br)
{
    Fiber *p = br->parent;
    if (p) {
        p->fork_results->items[br->branch] = val_obj(br->state);
        if (--p->fork_pending == 0) {
            p->fork_results = NULL;
            ready_push(vm, p);
        }
    }
    br->parent = NULL;
    fiber_free(vm, br);
}

/* ------------------------------------------------------------------ */
/* garbage collection                                                  */

static void mark_roots(void *ud, void *gray)
{
    VM *vm = ud;
    for (Fiber *f = vm->all; f; f = f->next_all) {
        size_t top = f->top < f->stack_cap ? f->top : f->stack_cap;
        for (size_t i = 0; i < top; i++) heap_mark_value(f->stack[i], gray);
        /* dead slots above the top may hold values about to be swept */
        for (size_t i = top; i < f->stack_cap; i++) f->stack[i] = val_nil();
        for (int i = 0; i < f->nframes; i++) heap_mark_obj((Obj *)f->frames[i].cl, gray);
        for (ObjUpvalue *uv = f->open; uv; uv = uv->next_open) heap_mark_obj((Obj *)uv, gray);
        heap_mark_obj((Obj *)f->state, gray);
        heap_mark_obj((Obj *)f->fork_results, gray);
    }
    for (VmRun *r = vm->runs; r; r = r->next) {
        for (int i = 0; i < r->prog->nmods; i++) heap_mark_obj((Obj *)r->mods[i], gray);
        for (int i = 0; i < r->nargs; i++) heap_mark_value(r->args[i], gray);
        heap_mark_value(r->value, gray);
        heap_mark_obj((Obj *)r->state, gray);
    }
    for (VmRun *r = vm->aux; r; r = r->next)
        for (int i = 0; i < r->prog->nmods; i++) heap_mark_obj((Obj *)r->mods[i], gray);
}

/* Pacing: a full collection costs a walk over every live object, so the
 * next one waits until GC_PAUSE times the live size has been allocated
 * (the heap's own default is twice the live size). */
#ifndef GC_PAUSE
#define GC_PAUSE 4
#endif

void vm_collect(VM *vm)
{
    heap_collect(&vm->heap, mark_roots, vm);
    size_t paced = vm->heap.bytes_allocated * GC_PAUSE;
    if (paced > vm->heap.next_gc) vm->heap.next_gc = paced;
    vm->stats.collections++;
}

/* ------------------------------------------------------------------ */
/* the interpreter                                                     */

#if defined(__GNUC__) && !defined(SGL_VM_SWITCH)
#define VM_COMPUTED_GOTO 1
#endif

#ifdef VM_COMPUTED_GOTO
#define vmdispatch(o) goto *disptab[o];
#define vmcase(l) L_##l:
#define vmbreak \
    i = *pc++;  \
    goto *disptab[GET_OP(i)]
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
 * on the spot, the rest (an overflow raises) through arith(). */
#define op_arith(opc, ovf, fop)                                     \
    Value *rb = RB(i), *rc = RC(i), *ra = RA(i);                    \
    arith_int_fast(ovf, ra, rb, rc)                                 \
    else if (rb->type == V_FLOAT && rc->type == V_FLOAT) {          \
        ra->tag = V_FLOAT;                                          \
        ra->as.f = rb->as.f fop rc->as.f;                           \
        vmbreak;                                                    \
    }                                                               \
    protect(arith(vm, opc, ra, *rb, *rc))
/* ADDK/MULK: R[A] := R[B] op K[C]; only ints on the spot. */
#define op_arithK(opc, ovf)                                         \
    Value *rb = RB(i), *kc = k + GETARG_C(i), *ra = RA(i);          \
    arith_int_fast(ovf, ra, rb, kc)                                 \
    protect(arith(vm, opc, ra, *rb, *kc))
/* LT/LE: if ((R[A] op R[B]) ~= k) then pc++; ints on the spot. */
#define op_order(cop, or_equal)                                         \
    Value *ra = RA(i), *rb = RB(i);                                     \
    bool res = false;                                                   \
    if (ra->type == V_INT && rb->type == V_INT) res = ra->as.i cop rb->as.i; \
    else protect(less(vm, *ra, *rb, or_equal, &res));                   \
    condjump(res, i)
/* LTI/LEI/GTI/GEI: if ((R[A] op sB) ~= k) then pc++; ints on the spot. */
#define op_order_imm(opc, cop)                                              \
    Value *ra = RA(i);                                                      \
    bool res = false;                                                       \
    if (ra->type == V_INT) res = ra->as.i cop GETARG_sB(i);                 \
    else protect(compare_imm(vm, *ra, GETARG_sB(i), opc, &res));            \
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

static void execute(VM *vm, Fiber *f)
{
#ifdef VM_COMPUTED_GOTO
    static const void *const disptab[OP__COUNT] = {
#define OP_LABEL(name, fmt, a, b, c, doc) &&L_OP_##name,
        OPCODES(OP_LABEL)
#undef OP_LABEL
    };
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
                ObjModule *m = module_new(vm, r, mi);
                if (!m) vmraise("out of memory");
                r->mods[mi] = m;
                ObjClosure *init = closure_new(vm, r->prog->mods[mi].init, (Obj *)m);
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
                protect(index_get(vm, *rb, *rc, &v));
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
                protect(field_get(vm, *rb, name, &v));
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
                protect(index_set(vm, *ra, *rb, *RC(i)));
                vmbreak;
            }
            vmcase(OP_SETFIELD) {
                int kb = GETARG_B(i);
                if (kb == MAXARG_B) kb = GETARG_Ax(*pc++);
                protect(field_set(vm, *RA(i), AS_STRING(k[kb]), *RC(i)));
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
                protect(arith(vm, OP_DIV, RA(i), *RB(i), *RC(i)));
                vmbreak;
            }
            vmcase(OP_MOD) {
                protect(arith(vm, OP_MOD, RA(i), *RB(i), *RC(i)));
                vmbreak;
            }
            vmcase(OP_ADDK) {
                op_arithK(OP_ADD, __builtin_add_overflow);
                vmbreak;
            }
            vmcase(OP_SUBK) {
                protect(arith(vm, OP_SUB, RA(i), *RB(i), k[GETARG_C(i)]));
                vmbreak;
            }
            vmcase(OP_MULK) {
                op_arithK(OP_MUL, __builtin_mul_overflow);
                vmbreak;
            }
            vmcase(OP_DIVK) {
                protect(arith(vm, OP_DIV, RA(i), *RB(i), k[GETARG_C(i)]));
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
                protect(arith(vm, OP_MOD, ra, *rb, *kc));
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
                protect(arith(vm, OP_ADD, ra, *rb, val_int(imm)));
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
                *RA(i) = val_bool(!truthy(*RB(i)));
                vmbreak;
            }
            vmcase(OP_RANGE) {
                Value v;
                protect(make_range(vm, *RB(i), *RC(i), &v));
                *RA(i) = v;
                checkgc();
                vmbreak;
            }
            vmcase(OP_IN) {
                bool res = false;
                protect(op_in(vm, *RB(i), *RC(i), &res));
                *RA(i) = val_bool(res);
                vmbreak;
            }
            vmcase(OP_TOSTR) {
                Value v;
                protect(to_text(vm, *RB(i), &v));
                *RA(i) = v;
                checkgc();
                vmbreak;
            }
            vmcase(OP_CONCAT) {
                Value v;
                protect(concat(vm, RA(i), GETARG_B(i), &v));
                *RA(i) = v;
                checkgc();
                vmbreak;
            }
            vmcase(OP_EQ) {
                condjump(equal(*RA(i), *RB(i)), i);
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
                condjump(equal(*RA(i), k[GETARG_B(i)]), i);
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
                condjump(truthy(*RA(i)), i);
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
                    if (bind_named(vm, np, fn + 1, npos, nnamed, names, &mask) < 0) goto on_error;
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
                ObjClosure *ncl = closure_new(vm, p, cl->module);
                if (!ncl) vmraise("out of memory");
                for (int u = 0; u < p->nupvals; u++) {
                    if (p->upvals[u].instack) {
                        ObjUpvalue *uv = find_upvalue(vm, f, fr->base + p->upvals[u].idx);
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
                close_upvalues(f, (size_t)(RA(i) - f->stack));
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
                protect(append_value(vm, f, *RA(i), 1));
                vmbreak;
            }
            vmcase(OP_APPENDK) {
                ObjString *s = AS_STRING(k[GETARG_Bx(i)]);
                state_append(f->state, s->chars, s->len);
                vmbreak;
            }
            vmcase(OP_ROLEBEGIN) {
                protect(role_begin(vm, f, GETARG_A(i)));
                vmbreak;
            }
            vmcase(OP_ROLEEND) {
                protect(role_end(vm, f, GETARG_A(i)));
                vmbreak;
            }
            vmcase(OP_FORK) {
                savestate();
                int rc = do_fork(vm, f, base, GETARG_A(i), GETARG_B(i));
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
            if (bind_positional(vm, np, fn + 1, nargs, &mask) < 0) goto on_error;
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
        if (f->open && f->open->slot >= fr->base) close_upvalues(f, fr->base);
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
        branch_done(vm, f);
        return;
    }

    on_error: {
        const char *msg = vm->raise_msg ? vm->raise_msg : "unknown error";
        char *full;
        if (vm->raise_full) {
            /* a helper's message (with its own position): add our frames */
            StrBuf b;
            sb_init(&b);
            sb_append(&b, msg, strlen(msg));
            append_trace(&b, f);
            full = b.data ? b.data : strdup("error");
            vm->raise_full = 0;
        } else {
            full = error_message(f, msg);
        }
        free(vm->raise_msg);
        vm->raise_msg = NULL;
        fiber_fail(vm, f, full);
        return;
    }
    }
}

/* ------------------------------------------------------------------ */
/* model calls                                                         */

Fiber *vm_wait_begin(VM *vm, Value *out)
{
    Fiber *f = vm->in_native;
    if (!f) return NULL;
    f->wait_slot = (size_t)(out - f->stack);
    f->status = FIB_WAIT_MODEL;
    vm->stats.waiting_model++;
    return f;
}

void vm_wait_cancel(VM *vm, Fiber *f)
{
    if (!f || f->status != FIB_WAIT_MODEL) return;
    f->status = FIB_RUNNING;
    vm->stats.waiting_model--;
}

void vm_wait_done(VM *vm, Fiber *f, Value result)
{
    if (!f || f->status != FIB_WAIT_MODEL) return;
    vm->stats.waiting_model--;
    if (f->cancelled) {
        fiber_free(vm, f);
        return;
    }
    f->stack[f->wait_slot] = result;
    if (vm->in_native == f) f->status = FIB_RUNNING;  /* completed during submit */
    else ready_push(vm, f);
}

void vm_wait_fail(VM *vm, Fiber *f, const char *msg)
{
    if (!f || f->status != FIB_WAIT_MODEL) return;
    vm->stats.waiting_model--;
    if (f->cancelled) {
        fiber_free(vm, f);
        return;
    }
    f->status = FIB_RUNNING;
    fiber_fail_here(vm, f, msg);
}

/* The call instruction of the native now running and the instruction
 * after it: the compiler gives an expression statement's (or a piece's)
 * append the position of the expression, so an APPEND/APPENDP (or a TOSTR
 * then an APPEND/APPENDP, in an interpolation) of the call's register at
 * the call's own position appends this very call's result; the same
 * instructions after `let x = gen(...)` appending `x` carry x's position. */
int vm_native_result_appended(VM *vm)
{
    Fiber *f = vm->in_native;
    if (!f || f->nframes == 0) return 0;
    const CallFrame *fr = &f->frames[f->nframes - 1];
    const Proto *p = fr->cl->proto;
    int next = (int)(fr->pc - p->code);
    int call = next - 1;
    if (call >= 1 && GET_OP(p->code[call]) == OP_EXTRAARG) call--;
    if (call < 0 || next >= p->ncode) return 0;
    Instr ci = p->code[call];
    if (GET_OP(ci) != OP_CALL && GET_OP(ci) != OP_CALLKW) return 0;
    LineCol at = chunk_pos(p, call);
    int reg = GETARG_A(ci);
    for (int j = next; j < next + 2 && j < p->ncode; j++) {
        Instr ni = p->code[j];
        LineCol np = chunk_pos(p, j);
        if (np.line != at.line || np.col != at.col) return 0;
        OpCode op = GET_OP(ni);
        if ((op == OP_APPEND || op == OP_APPENDP) && GETARG_A(ni) == reg) return 1;
        if (op != OP_TOSTR || GETARG_B(ni) != reg || j != next) return 0;
        reg = GETARG_A(ni);
    }
    return 0;
}

ObjState *vm_current_state(VM *vm)
{
    Fiber *f = vm->in_native ? vm->in_native : vm->cur;
    return f ? f->state : NULL;
}

ObjState *vm_fiber_state(Fiber *f) { return f ? f->state : NULL; }

/* ------------------------------------------------------------------ */
/* runs and the scheduler                                              */

VmRun *vm_run_new(VM *vm, Program *p, int entry_slot, const Value *args, int nargs, uint64_t argmask)
{
    VmRun *r = calloc(1, sizeof(VmRun));
    if (!r) return NULL;
    r->vm = vm;
    r->prog = p;
    r->entry_slot = entry_slot;
    r->argmask = argmask;
    r->value = val_nil();
    r->mods = calloc((size_t)p->nmods, sizeof(ObjModule *));
    if (nargs > 0) r->args = malloc((size_t)nargs * sizeof(Value));
    if (!r->mods || (nargs > 0 && !r->args)) {
        free(r->mods);
        free(r->args);
        free(r);
        return NULL;
    }
    for (int i = 0; i < nargs; i++) r->args[i] = args[i];
    r->nargs = nargs;
    r->next = vm->runs;
    if (vm->runs) vm->runs->prev = r;
    vm->runs = r;

    /* the root fiber starts by importing module 0 */
    Fiber *f = fiber_new(vm, r, FIB_ROOT_INIT);
    ObjState *st = f ? state_new(&vm->heap) : NULL;
    ObjModule *m = st ? module_new(vm, r, 0) : NULL;
    ObjClosure *init = m ? closure_new(vm, p->mods[0].init, (Obj *)m) : NULL;
    if (!init) {
        if (f) fiber_free(vm, f);
        r->finished = r->failed = 1;
        r->error = strdup("error: out of memory");
        run_notify(r);
        return r;
    }
    f->state = st;
    r->mods[0] = m;
    if (fiber_call_entry(vm, f, init, NULL, 0, 0) < 0) {
        fiber_free(vm, f);
        r->finished = r->failed = 1;
        r->error = vm->raise_msg;
        vm->raise_msg = NULL;
        run_notify(r);
        return r;
    }
    ready_push(vm, f);
    return r;
}

static void fail_waiting(VM *vm, const char *msg)
{
    for (;;) {
        Fiber *w = NULL;
        for (Fiber *x = vm->all; x; x = x->next_all)
            if (x->status == FIB_WAIT_MODEL) { w = x; break; }
        if (!w) return;
        vm_wait_fail(vm, w, msg);
    }
}

int vm_run_all(VM *vm)
{
    int rc = 0;
    for (;;) {
        Fiber *f = ready_pop(vm);
        if (f) {
            execute(vm, f);
            continue;
        }
        if (vm->stats.waiting_model == 0) break;
        RtBackend *be = vm->backend;
        if (!be || !be->wait || be->wait(be->ctx) < 0) {
            fail_waiting(vm, "the model backend stopped with requests in flight");
            rc = -1;
        }
    }
    /* a run can only be left unfinished by a fiber nobody will wake */
    for (VmRun *r = vm->runs; r; r = r->next) {
        if (r->finished) continue;
        r->finished = r->failed = 1;
        free(r->error);
        r->error = strdup("error: the program stopped waiting for something that never came");
        run_notify(r);
    }
    while (vm->all) fiber_free(vm, vm->all);
    return rc;
}

int vm_run_failed(const VmRun *r) { return r->failed; }
const char *vm_run_error(const VmRun *r) { return r->error ? r->error : ""; }
Value vm_run_value(const VmRun *r) { return r->value; }
ObjState *vm_run_state(const VmRun *r) { return r->state; }

/* Frees a run listed at *head: its fibers go with it (those waiting on the
 * model are only cancelled; the backend's callback frees them later). */
static void run_release(VM *vm, VmRun *r, VmRun **head)
{
    for (Fiber *f = vm->all; f;) {
        Fiber *next = f->next_all;
        if (f->run == r) {
            f->cancelled = 1;
            f->parent = NULL;
            if (f->status != FIB_WAIT_MODEL) fiber_free(vm, f);
        }
        f = next;
    }
    if (r->prev) r->prev->next = r->next;
    else *head = r->next;
    if (r->next) r->next->prev = r->prev;
    free(r->mods);
    free(r->args);
    free(r->error);
    free(r);
}

void vm_run_free(VM *vm, VmRun *r)
{
    run_release(vm, r, &vm->runs);
}

/* ------------------------------------------------------------------ */
/* calling SGL from the VM itself                                      */

int vm_call_now(VM *vm, VmRun *r, ObjState *st, Value fn, const Value *args, int nargs, Value *out)
{
    if (!val_is_obj_type(fn, OBJ_CLOSURE)) return vm_raise(vm, "internal error: vm_call_now of %s", val_type_name(fn));
    if (vm->helper_depth >= 8) return vm_raise(vm, "chat template calls nested too deeply");
    Fiber *caller = vm->cur;
    Fiber *h = fiber_new(vm, r, FIB_HELPER);
    if (!h) return vm_raise(vm, "out of memory");
    h->state = st ? st : state_new(&vm->heap);
    if (!h->state) {
        fiber_free(vm, h);
        return vm_raise(vm, "out of memory");
    }
    HelperOut out_slot;
    memset(&out_slot, 0, sizeof out_slot);
    h->helper = &out_slot;
    if (fiber_call_entry(vm, h, (ObjClosure *)fn.as.obj, args, nargs, low_bits(nargs)) < 0) {
        fiber_free(vm, h);
        return -1;
    }
    /* runs here, nested in the caller's instruction, until it returns or
     * fails (it cannot wait: nothing would resume it) */
    vm->helper_depth++;
    execute(vm, h);
    vm->helper_depth--;
    vm->cur = caller;
    if (out_slot.done) {
        *out = out_slot.value;
        return 0;
    }
    if (out_slot.failed) {
        free(vm->raise_msg);
        vm->raise_msg = out_slot.error;
        vm->raise_full = 1;
        return -1;
    }
    /* it waits on the model or on a fork: abandon it */
    h->helper = NULL;
    fiber_cancel(vm, h);
    return vm_raise(vm, "a chat template cannot call gen, select or fork");
}

VmRun *vm_aux_new(VM *vm, Program *p, ObjModule **module)
{
    VmRun *r = calloc(1, sizeof(VmRun));
    if (!r) {
        vm_raise(vm, "out of memory");
        return NULL;
    }
    r->vm = vm;
    r->prog = p;
    r->entry_slot = -1;
    r->value = val_nil();
    r->mods = calloc((size_t)(p->nmods > 0 ? p->nmods : 1), sizeof(ObjModule *));
    if (!r->mods) {
        free(r);
        vm_raise(vm, "out of memory");
        return NULL;
    }
    r->next = vm->aux;
    if (vm->aux) vm->aux->prev = r;
    vm->aux = r;
    ObjModule *m = module_new(vm, r, 0);
    ObjClosure *init = m ? closure_new(vm, p->mods[0].init, (Obj *)m) : NULL;
    if (!init) {
        vm_aux_free(vm, r);
        vm_raise(vm, "out of memory");
        return NULL;
    }
    r->mods[0] = m;
    Value ignored;
    if (vm_call_now(vm, r, NULL, val_obj(init), NULL, 0, &ignored) < 0) {
        vm_aux_free(vm, r);
        return NULL;
    }
    *module = m;
    return r;
}

void vm_aux_free(VM *vm, VmRun *r)
{
    /* helpers still attached to it (abandoned while waiting) go with it */
    run_release(vm, r, &vm->aux);
}
