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
 *    ├──► aux runs ──► VmRun (a chat template's module, vm/chat.c)
 *    ├──► ready queue (fibers that can run now)
 *    └──► heap (every object; collected only between instructions)
 *
 * Scheduling: the loop runs a ready fiber until it finishes or waits (on
 * the model, or on its fork branches); when no fiber is ready and some wait
 * on the model, it calls backend->wait(), whose callbacks make fibers ready.
 * Natives run on the fiber's stack and never call back into SGL. The one
 * place the VM itself calls SGL is a role block's chat template: the
 * ROLEBEGIN/ROLEEND instruction runs role_begin/role_end to completion on a
 * helper fiber (vm_call_now), nested in C inside that instruction, on the
 * fiber's own state; a helper cannot wait (no gen, select or fork).
 */
#ifndef SGL_VM_VM_H
#define SGL_VM_VM_H

#include <stddef.h>
#include <stdint.h>

#include "compiler/chunk.h"
#include "runtime/rt.h"
#include "vm/native.h"
#include "vm/value.h"

typedef struct VM VM;
typedef struct Fiber Fiber;
typedef struct VmRun VmRun;

VM *vm_new(void);
void vm_free(VM *vm);

/* Borrowed; NULL detaches (gen/select then raise "no model: ..."). A
 * different backend drops the chat template chosen from the old one. */
void vm_set_backend(VM *vm, RtBackend *backend);
RtBackend *vm_backend(VM *vm);
/* Where print() writes; NULL restores stdout. */
void vm_set_output(VM *vm, void (*write)(void *ud, const char *s, size_t n), void *ud);

/* ---- for natives: vm_raise, vm_write_out, vm_heap (vm/native.h) ---- */

/* Names of all built-ins (§10 and gen/select), for the compiler. */
const char *const *vm_builtin_names(const VM *vm, int *count);

/* Turns a program's constants into values (proto->k) allocated on `kheap`,
 * which the caller owns and frees after the program. Built-ins resolve by
 * name. 0, or -1 with a message. */
int vm_link(VM *vm, Program *p, Heap *kheap, char *err, size_t errcap);
/* The same for functions p->protos[first..] only (a session's new chunk). */
int vm_link_from(VM *vm, Program *p, int first, Heap *kheap, char *err, size_t errcap);

/* ---- runs ----
 * A run executes module 0's top level (and, through IMPORT, its imports'),
 * then, when entry_slot >= 0, calls the function in that global slot of
 * module 0 with args[0..nargs) as its parameters in order; bit i of argmask
 * says args[i] was given (else the default applies; a missing required
 * parameter is an error of the run). The values must live on vm_heap(vm);
 * the run roots them. The program must be linked. ud: vm_run_ud. */
VmRun *vm_run_new(VM *vm, Program *p, int entry_slot, const Value *args, int nargs, uint64_t argmask,
                  void *ud);
/* The non-blocking driver: runs every ready fiber until none is ready and
 * returns how many fibers wait on the model; their completions (delivered
 * by the backend: inside wait() or poll(), or on an event loop) make them
 * ready again, and the embedder calls vm_run_ready once more. With 0
 * waiting, every run is finished: one whose fibers can no longer be woken
 * fails ("stopped waiting"). */
int vm_run_ready(VM *vm);
/* Called when a completion makes a fiber ready while no driver runs (an
 * event loop delivered it): the embedder schedules vm_run_ready. Called on
 * the VM's thread; it must not call into the VM. NULL removes it. */
void vm_set_wake(VM *vm, void (*wake)(void *ud), void *ud);
/* The blocking driver: vm_run_ready, then backend->wait(), until no fiber
 * waits. 0, or -1 when the backend failed (the runs still waiting then
 * fail). */
int vm_run_all(VM *vm);
/* Called once per run when it finishes (result or error final), on the
 * VM's thread, from inside vm_run_all (or vm_run_new, for a run that could
 * not start); it must not call into the VM. NULL removes it. */
void vm_set_run_done(VM *vm, void (*done)(void *ud, VmRun *r), void *ud);
int vm_run_failed(const VmRun *r);          /* 1 after a runtime error */
const char *vm_run_error(const VmRun *r);    /* "file:line:col: error: ...\n  at ..." */
Value vm_run_value(const VmRun *r);          /* the entry function's return value */
ObjState *vm_run_state(const VmRun *r);      /* the final prompt state */
void vm_run_free(VM *vm, VmRun *r);
/* The embedder's pointer for a run (the run-done hook reads it). */
void vm_run_set_ud(VmRun *r, void *ud);
void *vm_run_ud(const VmRun *r);

/* ---- sessions ----
 * A session is a run that stays: module 0 of p is instantiated once, with
 * one prompt state, and each vm_session_run runs one more top-level chunk
 * (init, a function of module 0 compiled by cmp_compile_more and linked)
 * on that module and state, so globals, functions, imports and the prompt
 * persist. The run is "finished" between chunks; vm_run_failed/error tell
 * the last chunk's outcome. Free it with vm_run_free. */
VmRun *vm_session_new(VM *vm, Program *p);
/* Starts the chunk (its fiber is ready: drive it with vm_run_ready or
 * vm_run_all). -1 on no memory or while a chunk still runs. */
int vm_session_run(VM *vm, VmRun *s, Proto *init);
int vm_run_finished(const VmRun *r);

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

/* 1 when the result of the native now running is appended to the prompt
 * by the instructions right after its call: the call is an expression
 * statement, a side-by-side piece or an interpolated piece (gen with
 * `type:` then yields the model's text there, the converted value
 * elsewhere). */
int vm_native_result_appended(VM *vm);

/* ---- natives and role hooks: what the rooms above give the VM ----
 * The interpreter knows no built-in by itself: whoever assembles a VM
 * (vm/api.c) adds the tables of natives (vm/builtins.c, vm/gen.c) before
 * linking programs, and installs the role hooks (vm/chat.c). */
/* Copies the list (the names are borrowed: static strings). 0, or -1 on no
 * memory. */
int vm_add_natives(VM *vm, const VmNative *list, int n);

/* A role block's markers. open/close append them to st (0, or -1 with the
 * error raised); end_of_turn: the marker gen stops at inside `assistant`,
 * or NULL; backend_changed: what was chosen from the old model is stale.
 * Called on the VM's thread, from inside an instruction. */
typedef struct {
    int (*open)(void *ud, VM *vm, ObjState *st, int role);
    int (*close)(void *ud, VM *vm, ObjState *st, int role);
    const char *(*end_of_turn)(void *ud);
    void (*backend_changed)(void *ud, VM *vm);
} VmRoleHooks;
/* hooks borrowed (static); NULL: role blocks add no markers. */
void vm_set_role_hooks(VM *vm, const VmRoleHooks *hooks, void *ud);
/* The end-of-turn marker of the template in effect, or NULL. */
const char *vm_chat_end_of_turn(const VM *vm);

/* ---- calling SGL from the VM itself (vm/chat.c) ----
 * Only from inside an instruction of a running fiber (an opcode's C code,
 * never a native), or when no fiber runs. */
/* An auxiliary run: module 0 of p instantiated now (its top level runs to
 * completion), kept alive and rooted until vm_aux_free; not a run of
 * vm_run_all. NULL with the error raised (vm_raise). p must be linked and
 * outlive the aux run. */
VmRun *vm_aux_new(VM *vm, Program *p, ObjModule **module);
void vm_aux_free(VM *vm, VmRun *r);
/* Calls closure fn(args) on a helper fiber of run r whose prompt state is
 * st (NULL: a fresh one) and runs it to completion right here. 0 and
 * *out, or -1 with the error raised; an error inside fn is raised with its
 * own position and trace (the caller's frames are added). fn must not wait
 * (gen, select, fork): that is an error. */
int vm_call_now(VM *vm, VmRun *r, ObjState *st, Value fn, const Value *args, int nargs, Value *out);

/* ---- events: a run's progress as it happens (include/sgl.h's sgl_event) ----
 * TEXT: a gen's text as the backend streams it (RtGenParams.on_delta), with
 * the variable it captures into (or NULL); VAR: a variable a gen or select
 * captured, its value as compact JSON (vm/json.h, JSON_RESULT). `branch`
 * is the fiber's: 0 for a run's root, fork branches 1, 2, ... in creation
 * order within the run. Delivered on the VM's thread from inside the
 * backend's callbacks (in wait/poll, or in submit for a backend that
 * completes at once); the pointers live for the call. */
typedef enum { VM_EV_TEXT = 1, VM_EV_VAR = 2 } VmEventKind;
typedef struct {
    VmEventKind kind;
    VmRun *run;
    int branch;
    const char *name;
    const char *data;
    size_t len;
} VmEvent;
/* NULL turns them off. */
void vm_set_events(VM *vm, void (*fn)(void *ud, const VmEvent *ev), void *ud);
int vm_events_on(const VM *vm);
/* For vm/gen.c: fiber f's gen streamed text / captured a variable. */
void vm_event_text(VM *vm, Fiber *f, Value name, const char *text, size_t len);
void vm_event_var(VM *vm, Fiber *f, Value name, Value v);

/* ---- cancel and limits ---- */
/* Records the callback data of the request fiber f now waits on (after
 * vm_wait_begin, before submitting): vm_run_cancel hands it to
 * backend->cancel. */
void vm_wait_request(VM *vm, Fiber *f, void *req);
/* Ends an unfinished run now with error msg: its fibers are freed, those
 * waiting on the model are cancelled in the backend (backend->cancel; they
 * are freed when the callback comes). The run-done hook fires. Called
 * while one of its fibers runs (from an event of its own), it takes effect
 * as soon as that fiber stops. */
void vm_run_cancel(VM *vm, VmRun *r, const char *msg);
/* For runs started from now on (sessions: each chunk): at most max_steps
 * instructions (0: no limit) and max_heap bytes of live heap held by the
 * run (0: no limit), checked at the collector's safe points; past either
 * the run fails with a runtime error naming the limit, at the instruction
 * that passed it. */
void vm_set_limits(VM *vm, uint64_t max_steps, size_t max_heap);

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
