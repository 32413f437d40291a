/*
 * vm/vm_internal.h — what the files of the interpreter share, and nobody
 * else sees: the Fiber, VmRun and VM structs, and the functions one part of
 * the VM calls in another. Only the files listed
 * below include it.
 *
 *   vm.c      the VM object: natives, linking, the collector's roots
 *   fiber.c   fibers: stacks, upvalues, closures, errors and traces, binding
 *             a call's arguments, module instances
 *   ops.c     the slow paths of the operators (arithmetic, comparison,
 *             indexing, fields, `in`, ranges, text conversion)
 *   prompt.c  the prompt state: appends, role blocks, fork and its branches
 *   interp.c  the dispatch loop (vm_execute)
 *   run.c     runs, the scheduler (vm_run_ready / vm_run_all), model-call
 *             waits, helper fibers (vm_call_now) and auxiliary runs
 *
 * Threads: everything here belongs to the VM's one thread.
 */
#ifndef SGL_VM_VM_INTERNAL_H
#define SGL_VM_VM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vm/vm.h"

#pragma GCC visibility push(hidden)

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
    void *wait_req;         /* ...and the request's callback data (vm_wait_request), for cancel */
    int ev_branch;          /* events' branch number: 0 root, fork branches 1, 2, ... per run */
    HelperOut *helper;      /* FIB_HELPER: its caller's outcome slot (NULL once abandoned) */
};

struct VmRun {
    VM *vm;
    VmRun *prev, *next;
    Program *prog;
    ObjModule **mods;       /* this instance's modules, created on first import */
    int nmods_cap;          /* a session's: mods[] slots (the program grows) */
    int entry_slot;
    Value *args;
    int nargs;
    uint64_t argmask;
    int finished, failed;
    char *error;
    Value value;
    ObjState *state;
    void *ud;               /* vm_run_set_ud */
    int nbranches;          /* fork branches created so far (events number them) */
    uint64_t max_steps;     /* vm_set_limits when it started (0: none) */
    uint64_t steps;         /* instructions counted against max_steps */
    size_t max_heap;        /* vm_set_limits when it started (0: none) */
    int cancel_pending;     /* vm_run_cancel while one of its fibers ran: done after it */
};

typedef VmNative NativeEntry;

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
    const VmRoleHooks *roles;  /* role-block markers (vm/chat.c), or NULL: none */
    void *roles_ud;
    VmRun *aux;             /* auxiliary runs (template modules), not in `runs` */
    int helper_depth;       /* vm_call_now nesting */
    void (*run_done)(void *ud, VmRun *r);
    void *run_done_ud;
    void (*wake)(void *ud); /* vm_set_wake */
    void *wake_ud;
    int driving;            /* inside vm_run_ready: readiness needs no wake */
    void (*events)(void *ud, const VmEvent *ev);   /* vm_set_events */
    void *events_ud;
    uint64_t max_steps;     /* vm_set_limits: for runs started from now on */
    size_t max_heap;
};

/* ---- fiber.c ---- */
Fiber *fiber_new(VM *vm, VmRun *run, FibRole role);
void fiber_free(VM *vm, Fiber *f);
/* The ready queue, first in first out. */
void fiber_ready_push(VM *vm, Fiber *f);
Fiber *fiber_ready_pop(VM *vm);
void fiber_ready_remove(VM *vm, Fiber *f);
/* Room for `need` more values above the top; -1 with the error raised. */
int fiber_reserve(VM *vm, Fiber *f, size_t need);
void fiber_close_upvalues(Fiber *f, size_t level);
ObjUpvalue *fiber_find_upvalue(VM *vm, Fiber *f, size_t slot);
ObjClosure *fiber_closure_new(VM *vm, Proto *p, Obj *module);
ObjModule *fiber_module_new(VM *vm, VmRun *r, int mi);
/* "file:line:col: error: msg" and the call-stack trace, malloc'd. */
char *fiber_error_message(const Fiber *f, const char *msg);
void fiber_append_trace(StrBuf *b, const Fiber *f);
/* A run's outcome is final: calls the run-done hook once. */
void run_notify(VmRun *r);
void run_finish(VmRun *r, Value value, ObjState *state);
void fiber_cancel_branches(VM *vm, Fiber *p);
void fiber_cancel(VM *vm, Fiber *f);
/* The fiber fails with msg (a full message, taken); its run, its fork's
 * parent or its helper's caller sees the error. */
void fiber_fail(VM *vm, Fiber *f, char *msg);
void fiber_fail_here(VM *vm, Fiber *f, const char *msg);
int fiber_bind_positional(VM *vm, const Proto *p, Value *args, int nargs, uint64_t *mask);
int fiber_bind_named(VM *vm, const Proto *p, Value *args, int npos, int nnamed, const ObjList *names,
                     uint64_t *mask);
/* Pushes the first frame of cl(args) on f (its entry frame). */
int fiber_call_entry(VM *vm, Fiber *f, ObjClosure *cl, const Value *args, int nargs, uint64_t mask);

/* ---- ops.c: every one returns 0, or -1 with the error raised ---- */
int ops_arith(VM *vm, OpCode op, Value *ra, Value b, Value c);
int ops_less(VM *vm, Value b, Value c, int or_equal, bool *res);
int ops_compare_imm(VM *vm, Value a, int64_t imm, OpCode op, bool *res);
int ops_index_get(VM *vm, Value obj, Value key, Value *out);
int ops_field_get(VM *vm, Value obj, ObjString *name, Value *out);
int ops_index_set(VM *vm, Value obj, Value key, Value v);
int ops_field_set(VM *vm, Value obj, ObjString *name, Value v);
int ops_in(VM *vm, Value a, Value b, bool *res);
int ops_range(VM *vm, Value a, Value b, Value *out);
int ops_to_text(VM *vm, Value v, Value *out);
int ops_concat(VM *vm, Value *regs, int n, Value *out);

/* ---- prompt.c ---- */
int prompt_append(VM *vm, Fiber *f, Value v, int strict);
int prompt_role_begin(VM *vm, Fiber *f, int role);
int prompt_role_end(VM *vm, Fiber *f, int role);
/* 1 when f now waits on its branches, 0 when there were none, -1 on error. */
int prompt_fork(VM *vm, Fiber *f, Value *base, int a, int b);
void prompt_branch_done(VM *vm, Fiber *br);

/* ---- vm.c: limits ---- */
/* After a collection inside f's instruction: 1 when f's run holds more
 * live heap than its max_heap (the message is raised). */
int vm_heap_over(VM *vm, Fiber *f);
/* Counts one instruction of f's run: 1 when it would pass max_steps (raised). */
int vm_step_over(VM *vm, Fiber *f);

/* ---- interp.c ---- */
/* Runs f until it finishes, fails or waits. */
void vm_execute(VM *vm, Fiber *f);

/* ---- small and hot: inline ---- */
static inline bool ops_truthy(Value v)
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

static inline bool ops_equal(Value a, Value b)
{
    if (a.type == V_INT && b.type == V_INT) return a.as.i == b.as.i;
    return val_equal(a, b);
}

static inline uint64_t low_bits(int n) { return n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1); }

static inline MapEntry *module_globals(const ObjClosure *cl)
{
    return ((ObjModule *)cl->module)->exports->entries;
}

#pragma GCC visibility pop

#endif
