/*
 * vm/vm.h — the interpreter: fibers, the dispatch loop, the scheduler, the
 * collector's roots, and the hooks built-ins and model calls use.
 *
 * Owns: the VM heap, every fiber (one per program instance and one per fork
 * branch; each has its own growable value stack and call-frame stack, so
 * thousands can wait on the model at once), the ready queue, and the runs
 * (program instances) in progress. Does not own programs (the embedder
 * does; a program must outlive the runs that use it) nor the backend.
 *
 *   VM ──► runs ──► VmRun (one program instance: its modules, its result)
 *    │                 └──► root fiber ──► fork branch fibers ──► ...
 *    ├──► ready queue (fibers that can run now)
 *    └──► heap (every object; collected only between instructions)
 *
 * Scheduling: the loop runs a ready fiber until it finishes or waits (on
 * the model, or on its fork branches); when no fiber is ready and some wait
 * on the model, it calls backend->wait(), whose callbacks make fibers ready.
 * Natives run on the fiber's stack and never call back into SGL.
 */
#ifndef SGL_VM_VM_H
#define SGL_VM_VM_H

#include <stddef.h>
#include <stdint.h>

#include "compiler/chunk.h"
#include "runtime/rt.h"
#include "vm/value.h"

typedef struct VM VM;
typedef struct Fiber Fiber;
typedef struct VmRun VmRun;

VM *vm_new(void);
void vm_free(VM *vm);

/* Borrowed; NULL detaches (gen/select then raise "no model: ..."). */
void vm_set_backend(VM *vm, RtBackend *backend);
RtBackend *vm_backend(VM *vm);
/* Where print() writes; NULL restores stdout. */
void vm_set_output(VM *vm, void (*write)(void *ud, const char *s, size_t n), void *ud);

/* ---- for built-ins (also declared in vm/builtins.h) ---- */
/* Sets the pending runtime error of the running fiber; returns -1. The VM
 * adds file:line:col of the current instruction and the call-stack trace. */
int vm_raise(VM *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vm_write_out(VM *vm, const char *s, size_t n);
Heap *vm_heap(VM *vm);

/* Names of all built-ins (§10 and gen/select), for the compiler. */
const char *const *vm_builtin_names(const VM *vm, int *count);

/* Turns a program's constants into values (proto->k) allocated on `kheap`,
 * which the caller owns and frees after the program. Built-ins resolve by
 * name. 0, or -1 with a message. */
int vm_link(VM *vm, Program *p, Heap *kheap, char *err, size_t errcap);

/* ---- runs ----
 * A run executes module 0's top level (and, through IMPORT, its imports'),
 * then, when entry_slot >= 0, calls the function in that global slot of
 * module 0 with args[0..nargs) as its parameters in order; bit i of argmask
 * says args[i] was given (else the default applies; a missing required
 * parameter is an error of the run). The values must live on vm_heap(vm);
 * the run roots them. The program must be linked. */
VmRun *vm_run_new(VM *vm, Program *p, int entry_slot, const Value *args, int nargs, uint64_t argmask);
/* Runs every fiber of every run until all runs are finished. 0, or -1 when
 * the backend failed (the runs still waiting then fail). */
int vm_run_all(VM *vm);
int vm_run_failed(const VmRun *r);          /* 1 after a runtime error */
const char *vm_run_error(const VmRun *r);    /* "file:line:col: error: ...\n  at ..." */
Value vm_run_value(const VmRun *r);          /* the entry function's return value */
ObjState *vm_run_state(const VmRun *r);      /* the final prompt state */
void vm_run_free(VM *vm, VmRun *r);

/* ---- for model calls (vm/gen.c) ----
 * A native that submits a model request calls vm_wait_begin(vm, out) and
 * returns VM_NATIVE_WAIT: the running fiber then waits, and the request's
 * callback later calls vm_wait_done (the value lands where `out` pointed)
 * or vm_wait_fail (a runtime error at the call). If submitting fails, the
 * native calls vm_wait_cancel and returns vm_raise(...). */
#define VM_NATIVE_WAIT 1
Fiber *vm_wait_begin(VM *vm, Value *out);
void vm_wait_cancel(VM *vm, Fiber *f);
void vm_wait_done(VM *vm, Fiber *f, Value result);
void vm_wait_fail(VM *vm, Fiber *f, const char *msg);
/* The running fiber's prompt state (also valid for a waiting fiber). */
ObjState *vm_current_state(VM *vm);
ObjState *vm_fiber_state(Fiber *f);

/* Statistics, for tests and --stats. */
typedef struct {
    size_t fibers_live;       /* fibers that exist now */
    size_t fibers_max;        /* most at once since vm_new */
    size_t waiting_model;     /* fibers waiting on the model now */
    size_t collections;       /* heap collections so far */
} VmStats;
void vm_stats(const VM *vm, VmStats *out);

/* Runs a full collection now (between runs; tests). */
void vm_collect(VM *vm);

#endif
