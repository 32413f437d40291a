/*
 * vm/api.h — what the files implementing include/sgl.h share (vm/api.c:
 * VMs, programs, runs; vm/api_session.c: tasks, the non-blocking driver,
 * sessions; vm/api_runtime.c: the runtime object). Not for other rooms.
 */
#ifndef SGL_VM_API_H
#define SGL_VM_API_H

#include "compiler/compile.h"
#include "include/sgl.h"
#include "vm/chat.h"
#include "vm/vm.h"

#pragma GCC visibility push(hidden)

/* What a run's ud points at: called when the run finishes (from inside the
 * driver; it must not call into the VM). */
typedef struct ApiRunHook {
    void (*finished)(struct ApiRunHook *h, VmRun *r);
    sgl_task *task;    /* what the run's events name: the embedder's task, or NULL */
} ApiRunHook;

struct sgl_vm {
    VM *vm;
    struct sgl_runtime *runtime;   /* sgl_vm_set_runtime, or NULL */
    struct RuntimeWaker *waker;    /* with a runtime on a loop: runs sgl_vm_run_ready */
    sgl_task *done_head, *done_tail;   /* finished tasks whose done has not run */
    Chat *chat;                /* the role hooks' templates */
    char *err;
    char *stdlib_dir;
    char *chat_template;       /* sgl_vm_set_chat_template, or NULL */
    void (*progress)(void *ud, int done, int total);
    void *progress_ud;
    char *result_text;         /* final text of the last successful run; malloc'd */
    size_t result_len;
    sgl_event_fn events;       /* sgl_vm_set_events */
    void *events_ud;
    int driving;               /* inside sgl_vm_run_ready (done callbacks then wait for it) */
};

struct sgl_program {
    Program *prog;
    Heap kheap;            /* the program's constants as values */
};

/* The VM's last error: a formatted message, or one taken over (NULL: out
 * of memory); cleared on success. fail returns st. */
sgl_status fail(sgl_vm *vm, sgl_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void set_err(sgl_vm *vm, char *msg_owned);
void clear_err(sgl_vm *vm);
const char *stdlib_dir(sgl_vm *vm);
void cmp_options(sgl_vm *vm, CmpOptions *o);
/* Loads the chat template for role blocks (the embedder's, or the model's). */
int configure_chat(sgl_vm *vm);
/* The entry of a run: the global slot of `fn` (NULL: main) in module 0 and
 * its prototype, or slot -1 for "top level only". */
sgl_status find_entry(sgl_vm *vm, const Program *p, const char *fn, int *slot, const Proto **proto);
/* Decodes args JSON into parameter order; a malloc'd message on a usage error. */
char *bind_args(sgl_vm *vm, const Proto *proto, const char *args_json, Value *args, uint64_t *mask);
/* find_entry, then bind_args: SGL_OK, or the error set on the VM. */
sgl_status bind_call(sgl_vm *vm, sgl_program *prog, const char *fn, const char *args_json, int *slot,
                     const Proto **proto, Value *args, uint64_t *mask);
/* {"text","vars","value"} of a finished run; {"error": msg}. malloc'd. */
char *result_json(VmRun *r);
char *error_json(const char *msg);
/* A task over arguments already bound (sgl_task_start after parsing). */
sgl_status task_start_bound(sgl_vm *vm, sgl_program *prog, int slot, const Proto *proto, Value *args,
                            uint64_t mask, sgl_task_done_fn done, void *ud, sgl_task **out);
VmRun *task_run(const sgl_task *t);
/* The task is the library's own (sgl_run): its events name no task. */
void task_hide(sgl_task *t);
/* The blocking driver: runs and waits on the backend until no fiber waits
 * on the model (every run finished, no call left in flight). */
void drive(sgl_vm *vm);
/* The VM's run-done hook: calls the run's ApiRunHook. */
void api_run_done(void *ud, VmRun *r);
/* The VM's event hook: the event as an sgl_event, to the embedder's fn. */
void api_event(void *ud, const VmEvent *ev);

#pragma GCC visibility pop

#endif
