/*
 * vm/api_session.c — include/sgl.h's tasks (a program instance in flight),
 * the non-blocking driver (sgl_vm_run_ready) and the blocking one built on
 * it (drive: sgl_run, sgl_run_batch, sessions), and sessions (a live top
 * level that grows one chunk at a time: the REPL).
 *
 * A finished run's task is queued on its VM (done_head) by the VM's
 * run-done hook, which may not call into the VM; the driver calls the
 * tasks' done callbacks after the VM has run every ready fiber, where they
 * may do anything.
 */
#include "vm/api.h"

#include <stdlib.h>
#include <string.h>

struct sgl_task {
    ApiRunHook hook;            /* first: the run's ud */
    sgl_vm *vm;
    VmRun *run;
    sgl_task_done_fn done;
    void *ud;
    sgl_task *next_done;
    int queued;                 /* on vm->done_head's list */
};

struct sgl_session {
    sgl_vm *vm;
    Program *prog;
    Heap kheap;                 /* the chunks' constants */
    VmRun *run;
};

void api_run_done(void *ud, VmRun *r)
{
    (void)ud;
    ApiRunHook *h = vm_run_ud(r);
    if (h && h->finished) h->finished(h, r);
}

static void task_finished(ApiRunHook *h, VmRun *r)
{
    (void)r;
    sgl_task *t = (sgl_task *)h;
    sgl_vm *vm = t->vm;
    if (!t->done || t->queued) return;
    t->queued = 1;
    t->next_done = NULL;
    if (vm->done_tail) vm->done_tail->next_done = t;
    else vm->done_head = t;
    vm->done_tail = t;
}

sgl_status task_start_bound(sgl_vm *vm, sgl_program *prog, int slot, const Proto *proto, Value *args,
                            uint64_t mask, sgl_task_done_fn done, void *ud, sgl_task **out)
{
    *out = NULL;
    sgl_task *t = calloc(1, sizeof *t);
    if (!t || configure_chat(vm) < 0) {
        free(t);
        return fail(vm, SGL_ERR_RUNTIME, "error: out of memory");
    }
    t->hook.finished = task_finished;
    t->hook.task = t;
    t->vm = vm;
    t->done = done;
    t->ud = ud;
    t->run = vm_run_new(vm->vm, prog->prog, slot, args, proto ? proto->nparams : 0, mask, &t->hook);
    if (!t->run) {
        free(t);
        return fail(vm, SGL_ERR_RUNTIME, "error: out of memory");
    }
    clear_err(vm);
    *out = t;
    return SGL_OK;
}

sgl_status sgl_task_start(sgl_vm *vm, sgl_program *prog, const char *fn, const char *args_json,
                          sgl_task_done_fn done, void *ud, sgl_task **out)
{
    *out = NULL;
    int slot;
    const Proto *proto;
    Value args[64];
    uint64_t mask;
    sgl_status st = bind_call(vm, prog, fn, args_json, &slot, &proto, args, &mask);
    if (st != SGL_OK) return st;
    return task_start_bound(vm, prog, slot, proto, args, mask, done, ud, out);
}

VmRun *task_run(const sgl_task *t) { return t->run; }
void task_hide(sgl_task *t) { t->hook.task = NULL; }

int sgl_task_finished(const sgl_task *t) { return vm_run_finished(t->run); }

sgl_status sgl_task_result(const sgl_task *t, char **result)
{
    *result = NULL;
    if (!vm_run_finished(t->run)) return SGL_ERR_USAGE;
    if (vm_run_failed(t->run)) return SGL_ERR_RUNTIME;
    *result = result_json(t->run);
    return *result ? SGL_OK : SGL_ERR_RUNTIME;
}

const char *sgl_task_error(const sgl_task *t)
{
    if (!vm_run_finished(t->run)) return "error: the task has not finished";
    return vm_run_error(t->run);
}

void sgl_task_free(sgl_task *t)
{
    if (!t) return;
    sgl_vm *vm = t->vm;
    if (t->queued) {
        sgl_task **pp = &vm->done_head, *prev = NULL;
        while (*pp && *pp != t) {
            prev = *pp;
            pp = &(*pp)->next_done;
        }
        if (*pp) *pp = t->next_done;
        if (vm->done_tail == t) vm->done_tail = prev;
    }
    vm_run_set_ud(t->run, NULL);
    vm_run_free(vm->vm, t->run);
    free(t);
}

/* Calls the done callbacks of the finished tasks queued so far. */
static void run_done_callbacks(sgl_vm *vm)
{
    while (vm->done_head) {
        sgl_task *t = vm->done_head;
        vm->done_head = t->next_done;
        if (!vm->done_head) vm->done_tail = NULL;
        t->queued = 0;
        t->done(t->ud, t);
    }
}

int sgl_vm_run_ready(sgl_vm *vm)
{
    int waiting;
    vm->driving++;
    for (;;) {
        waiting = vm_run_ready(vm->vm);
        if (!vm->done_head) break;
        /* a done callback may start tasks: run those too */
        run_done_callbacks(vm);
    }
    vm->driving--;
    return waiting;
}

void sgl_task_cancel(sgl_task *t)
{
    if (!t || vm_run_finished(t->run)) return;
    sgl_vm *vm = t->vm;
    vm_run_cancel(vm->vm, t->run, "cancelled");
    /* outside the driver nothing else would call the done callback now */
    if (!vm->driving) run_done_callbacks(vm);
}

void drive(sgl_vm *vm)
{
    for (;;) {
        /* to the end of every model call, those of cancelled fibers too:
         * nothing of the run is left in flight when it returns */
        if (sgl_vm_run_ready(vm) == 0) return;
        RtBackend *be = vm_backend(vm->vm);
        vm->driving++;   /* a task cancelled from an event: its done waits for the driver */
        int rc = be && be->wait ? be->wait(be->ctx) : -1;
        vm->driving--;
        if (rc < 0) {
            /* nothing will complete: the waiting runs fail */
            vm_run_all(vm->vm);
            return;
        }
    }
}

/* ---- sessions ---- */

sgl_session *sgl_session_new(sgl_vm *vm, const char *name)
{
    sgl_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->vm = vm;
    heap_init(&s->kheap);
    s->prog = cmp_session_program(name ? name : "<session>");
    s->run = s->prog ? vm_session_new(vm->vm, s->prog) : NULL;
    if (!s->run) {
        sgl_session_free(s);
        return NULL;
    }
    return s;
}

void sgl_session_free(sgl_session *s)
{
    if (!s) return;
    if (s->run) vm_run_free(s->vm->vm, s->run);
    heap_free_all(&s->kheap);
    chunk_program_free(s->prog);
    free(s);
}

sgl_status sgl_session_eval(sgl_session *s, const char *src, size_t len, int *incomplete)
{
    sgl_vm *vm = s->vm;
    int inc = 0;
    if (incomplete) *incomplete = 0;
    CmpOptions o;
    cmp_options(vm, &o);
    Proto *init;
    int first;
    char *err;
    if (cmp_compile_more(&o, s->prog, src, len, &init, &first, &err, &inc) < 0) {
        if (incomplete) *incomplete = inc;
        set_err(vm, err);
        return SGL_ERR_COMPILE;
    }
    char lerr[256];
    if (vm_link_from(vm->vm, s->prog, first, &s->kheap, lerr, sizeof lerr) < 0)
        return fail(vm, SGL_ERR_RUNTIME, "error: %s", lerr);
    if (configure_chat(vm) < 0 || vm_session_run(vm->vm, s->run, init) < 0)
        return fail(vm, SGL_ERR_RUNTIME, "error: out of memory");
    drive(vm);
    if (vm_run_failed(s->run)) return fail(vm, SGL_ERR_RUNTIME, "%s", vm_run_error(s->run));
    clear_err(vm);
    return SGL_OK;
}

char *sgl_session_state_json(sgl_session *s)
{
    char *full = result_json(s->run);
    return full;
}

const char *sgl_session_text(const sgl_session *s, size_t *len)
{
    ObjState *st = vm_run_state(s->run);
    if (len) *len = st ? st->len : 0;
    return st && st->text ? st->text : "";
}
