/*
 * vm/run.c — runs and the scheduler.
 *
 * Owns: program instances (VmRun: their modules, arguments and outcome),
 * the drivers (vm_run_ready runs what is ready and returns; vm_run_all
 * waits on the backend until every run is finished), model-call waits
 * (vm_wait_*), helper fibers that run SGL to completion inside an
 * instruction (vm_call_now) and auxiliary runs (template modules).
 */
#include "vm/vm_internal.h"

#include <stdlib.h>
#include <string.h>

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

void vm_wait_request(VM *vm, Fiber *f, void *req)
{
    (void)vm;
    if (f) f->wait_req = req;
}

void vm_wait_cancel(VM *vm, Fiber *f)
{
    if (!f || f->status != FIB_WAIT_MODEL) return;
    f->status = FIB_RUNNING;
    f->wait_req = NULL;
    vm->stats.waiting_model--;
}

void vm_wait_done(VM *vm, Fiber *f, Value result)
{
    if (!f || f->status != FIB_WAIT_MODEL) return;
    f->wait_req = NULL;
    vm->stats.waiting_model--;
    if (f->cancelled) {
        fiber_free(vm, f);
        return;
    }
    f->stack[f->wait_slot] = result;
    if (vm->in_native == f) f->status = FIB_RUNNING;  /* completed during submit */
    else fiber_ready_push(vm, f);
}

void vm_wait_fail(VM *vm, Fiber *f, const char *msg)
{
    if (!f || f->status != FIB_WAIT_MODEL) return;
    f->wait_req = NULL;
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

VmRun *vm_run_new(VM *vm, Program *p, int entry_slot, const Value *args, int nargs, uint64_t argmask,
                  void *ud)
{
    VmRun *r = calloc(1, sizeof(VmRun));
    if (!r) return NULL;
    r->vm = vm;
    r->prog = p;
    r->entry_slot = entry_slot;
    r->argmask = argmask;
    r->ud = ud;
    r->value = val_nil();
    r->max_steps = vm->max_steps;
    r->max_heap = vm->max_heap;
    r->mods = calloc((size_t)p->nmods, sizeof(ObjModule *));
    r->nmods_cap = p->nmods;
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
    ObjModule *m = st ? fiber_module_new(vm, r, 0) : NULL;
    ObjClosure *init = m ? fiber_closure_new(vm, p->mods[0].init, (Obj *)m) : NULL;
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
    fiber_ready_push(vm, f);
    return r;
}

/* ---- sessions ---- */

VmRun *vm_session_new(VM *vm, Program *p)
{
    VmRun *r = calloc(1, sizeof(VmRun));
    if (!r) return NULL;
    r->vm = vm;
    r->prog = p;
    r->entry_slot = -1;
    r->value = val_nil();
    r->finished = 1;
    r->mods = calloc((size_t)(p->nmods > 0 ? p->nmods : 1), sizeof(ObjModule *));
    r->nmods_cap = p->nmods > 0 ? p->nmods : 1;
    if (!r->mods) {
        free(r);
        return NULL;
    }
    r->next = vm->runs;
    if (vm->runs) vm->runs->prev = r;
    vm->runs = r;
    r->state = state_new(&vm->heap);
    r->mods[0] = r->state ? fiber_module_new(vm, r, 0) : NULL;
    if (!r->mods[0]) {
        vm_run_free(vm, r);
        return NULL;
    }
    return r;
}

/* The chunk may have added modules (imports) and top-level names. */
static int session_grow(VM *vm, VmRun *r)
{
    const Program *p = r->prog;
    if (p->nmods > r->nmods_cap) {
        ObjModule **mods = realloc(r->mods, (size_t)p->nmods * sizeof(ObjModule *));
        if (!mods) return -1;
        for (int i = r->nmods_cap; i < p->nmods; i++) mods[i] = NULL;
        r->mods = mods;
        r->nmods_cap = p->nmods;
    }
    ObjModule *m = r->mods[0];
    const Module *pm = &p->mods[0];
    for (int g = (int)m->exports->nentries; g < pm->nglobals; g++) {
        ObjString *name = str_cstr(&vm->heap, pm->globals[g]);
        if (!name) return -1;
        map_set(m->exports, val_obj(name), val_nil());
    }
    return (int)m->exports->nentries == pm->nglobals ? 0 : -1;
}

int vm_session_run(VM *vm, VmRun *r, Proto *init)
{
    if (!r->finished || session_grow(vm, r) < 0) return -1;
    Fiber *f = fiber_new(vm, r, FIB_ROOT_INIT);
    ObjClosure *cl = f ? fiber_closure_new(vm, init, (Obj *)r->mods[0]) : NULL;
    if (!cl) {
        if (f) fiber_free(vm, f);
        return -1;
    }
    f->state = r->state;
    r->finished = r->failed = 0;
    r->cancel_pending = 0;
    r->max_steps = vm->max_steps;   /* each chunk is a run of its own */
    r->steps = 0;
    r->max_heap = vm->max_heap;
    free(r->error);
    r->error = NULL;
    r->value = val_nil();
    if (fiber_call_entry(vm, f, cl, NULL, 0, 0) < 0) {
        fiber_free(vm, f);
        r->finished = r->failed = 1;
        r->error = vm->raise_msg;
        vm->raise_msg = NULL;
        return 0;
    }
    fiber_ready_push(vm, f);
    return 0;
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

/* No fiber is ready and none waits on the model: a run still unfinished
 * waits for something nobody will do (a fork whose branches are gone). */
static void fail_stuck(VM *vm)
{
    for (VmRun *r = vm->runs; r; r = r->next) {
        if (r->finished) continue;
        r->finished = r->failed = 1;
        free(r->error);
        r->error = strdup("error: the program stopped waiting for something that never came");
        run_notify(r);
    }
    for (Fiber *f = vm->all; f;) {
        Fiber *next = f->next_all;
        if (f->status != FIB_WAIT_MODEL && f->role != FIB_HELPER) fiber_free(vm, f);
        f = next;
    }
}

/* Frees or cancels the fibers of r (the run is going away or failing):
 * those waiting on the model stay until their callback, their requests
 * cancelled in the backend when cancel_requests. */
static void release_fibers(VM *vm, VmRun *r, int cancel_requests)
{
    RtBackend *be = vm->backend;
    for (Fiber *f = vm->all; f;) {
        Fiber *next = f->next_all;
        if (f->run == r) {
            f->cancelled = 1;
            f->parent = NULL;
            if (f->status != FIB_WAIT_MODEL) fiber_free(vm, f);
            else if (cancel_requests && f->wait_req && be && be->cancel) be->cancel(be->ctx, f->wait_req);
        }
        f = next;
    }
}

/* 1 when a fiber of r is running now (inside an instruction or a native). */
static int run_is_running(const VM *vm, const VmRun *r)
{
    for (const Fiber *f = vm->all; f; f = f->next_all)
        if (f->run == r && f->status == FIB_RUNNING) return 1;
    return 0;
}

void vm_run_cancel(VM *vm, VmRun *r, const char *msg)
{
    if (r->finished) return;
    if (run_is_running(vm, r)) {
        r->cancel_pending = 1;   /* vm_run_ready, when the fiber stops */
        return;
    }
    r->cancel_pending = 0;
    release_fibers(vm, r, 1);
    r->finished = r->failed = 1;
    free(r->error);
    r->error = strdup(msg);
    run_notify(r);
}

int vm_run_ready(VM *vm)
{
    int outer = vm->driving;
    vm->driving = 1;
    for (Fiber *f; (f = fiber_ready_pop(vm));) {
        VmRun *r = f->run;
        vm_execute(vm, f);
        if (r->cancel_pending && !run_is_running(vm, r)) vm_run_cancel(vm, r, "cancelled");
    }
    vm->driving = outer;
    if (vm->stats.waiting_model == 0 && !outer) fail_stuck(vm);
    return (int)vm->stats.waiting_model;
}

void vm_set_wake(VM *vm, void (*wake)(void *ud), void *ud)
{
    vm->wake = wake;
    vm->wake_ud = wake ? ud : NULL;
}

int vm_run_all(VM *vm)
{
    int rc = 0;
    while (vm_run_ready(vm) > 0) {
        RtBackend *be = vm->backend;
        if (!be || !be->wait || be->wait(be->ctx) < 0) {
            fail_waiting(vm, "the model backend stopped with requests in flight");
            rc = -1;
        }
    }
    return rc;
}

int vm_run_finished(const VmRun *r) { return r->finished; }
void vm_run_set_ud(VmRun *r, void *ud) { r->ud = ud; }
void *vm_run_ud(const VmRun *r) { return r->ud; }
int vm_run_failed(const VmRun *r) { return r->failed; }
const char *vm_run_error(const VmRun *r) { return r->error ? r->error : ""; }
Value vm_run_value(const VmRun *r) { return r->value; }
ObjState *vm_run_state(const VmRun *r) { return r->state; }

/* Frees a run listed at *head: its fibers go with it (those waiting on the
 * model are only cancelled; the backend's callback frees them later). */
static void run_release(VM *vm, VmRun *r, VmRun **head)
{
    release_fibers(vm, r, 1);
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
    vm_execute(vm, h);
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
    r->nmods_cap = p->nmods;
    if (!r->mods) {
        free(r);
        vm_raise(vm, "out of memory");
        return NULL;
    }
    r->next = vm->aux;
    if (vm->aux) vm->aux->prev = r;
    vm->aux = r;
    ObjModule *m = fiber_module_new(vm, r, 0);
    ObjClosure *init = m ? fiber_closure_new(vm, p->mods[0].init, (Obj *)m) : NULL;
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
