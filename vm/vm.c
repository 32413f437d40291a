/*
 * vm/vm.c — the VM object: creation and teardown, its settings (backend,
 * output, natives, role hooks), linking a program's constants, runtime
 * errors (vm_raise) and the collector's roots (see vm/vm.h for the picture,
 * vm/vm_internal.h for how the interpreter's files divide the work).
 */
#include "vm/vm_internal.h"
#include "base/err.h"
#include "vm/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    val_set_proto_namer(proto_name);
    return vm;
}

int vm_add_natives(VM *vm, const VmNative *list, int n)
{
    NativeEntry *e = realloc(vm->natives, (size_t)(vm->nnatives + n) * sizeof *e);
    if (!e) return -1;
    vm->natives = e;
    const char **names = realloc(vm->native_names, (size_t)(vm->nnatives + n) * sizeof *names);
    if (!names) return -1;
    vm->native_names = names;
    for (int i = 0; i < n; i++) {
        e[vm->nnatives + i] = list[i];
        names[vm->nnatives + i] = list[i].name;
    }
    vm->nnatives += n;
    return 0;
}

void vm_set_role_hooks(VM *vm, const VmRoleHooks *hooks, void *ud)
{
    vm->roles = hooks;
    vm->roles_ud = hooks ? ud : NULL;
}

void vm_free(VM *vm)
{
    if (!vm) return;
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
    if (backend != vm->backend && vm->roles && vm->roles->backend_changed)
        vm->roles->backend_changed(vm->roles_ud, vm);
    vm->backend = backend;
}

const char *vm_chat_end_of_turn(const VM *vm)
{
    return vm->roles && vm->roles->end_of_turn ? vm->roles->end_of_turn(vm->roles_ud) : NULL;
}

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
    err_vfmt(buf, sizeof buf, fmt, ap);
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
    return vm_link_from(vm, p, 0, kheap, err, errcap);
}

int vm_link_from(VM *vm, Program *p, int first, Heap *kheap, char *err, size_t errcap)
{
    for (int pi = first; pi < p->nprotos; pi++) {
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
/* garbage collection                                                  */

static void mark_fiber(Fiber *f, void *gray)
{
    size_t top = f->top < f->stack_cap ? f->top : f->stack_cap;
    for (size_t i = 0; i < top; i++) heap_mark_value(f->stack[i], gray);
    for (int i = 0; i < f->nframes; i++) heap_mark_obj((Obj *)f->frames[i].cl, gray);
    for (ObjUpvalue *uv = f->open; uv; uv = uv->next_open) heap_mark_obj((Obj *)uv, gray);
    heap_mark_obj((Obj *)f->state, gray);
    heap_mark_obj((Obj *)f->fork_results, gray);
}

static void mark_run(VmRun *r, void *gray)
{
    for (int i = 0; i < r->nmods_cap; i++) heap_mark_obj((Obj *)r->mods[i], gray);
    for (int i = 0; i < r->nargs; i++) heap_mark_value(r->args[i], gray);
    heap_mark_value(r->value, gray);
    heap_mark_obj((Obj *)r->state, gray);
}

static void mark_roots(void *ud, void *gray)
{
    VM *vm = ud;
    for (Fiber *f = vm->all; f; f = f->next_all) {
        mark_fiber(f, gray);
        /* dead slots above the top may hold values about to be swept */
        size_t top = f->top < f->stack_cap ? f->top : f->stack_cap;
        for (size_t i = top; i < f->stack_cap; i++) f->stack[i] = val_nil();
    }
    for (VmRun *r = vm->runs; r; r = r->next) mark_run(r, gray);
    for (VmRun *r = vm->aux; r; r = r->next)
        for (int i = 0; i < r->nmods_cap; i++) heap_mark_obj((Obj *)r->mods[i], gray);
}

/* The roots of one run: what it alone keeps alive (an object it shares
 * with another run counts for it too). */
static void mark_run_roots(void *ud, void *gray)
{
    VmRun *r = ud;
    for (Fiber *f = r->vm->all; f; f = f->next_all)
        if (f->run == r) mark_fiber(f, gray);
    mark_run(r, gray);
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
    size_t live = vm->heap.bytes_allocated;
    size_t paced = live * GC_PAUSE;
    if (paced > vm->heap.next_gc) vm->heap.next_gc = paced;
    /* with a heap limit, collect again once the heap has grown by
     * max_heap at most (or passed it): a run cannot go far past its limit
     * unseen */
    size_t lim = 0;
    for (VmRun *r = vm->runs; r; r = r->next)
        if (r->max_heap && !r->finished && (!lim || r->max_heap < lim)) lim = r->max_heap;
    if (lim) {
        size_t next = live < lim ? lim : live + lim;
        if (next < vm->heap.next_gc) vm->heap.next_gc = next;
    }
    vm->stats.collections++;
}

/* ------------------------------------------------------------------ */
/* limits                                                              */

void vm_set_limits(VM *vm, uint64_t max_steps, size_t max_heap)
{
    vm->max_steps = max_steps;
    vm->max_heap = max_heap;
}

int vm_heap_over(VM *vm, Fiber *f)
{
    VmRun *r = f->run;
    if (!r->max_heap || vm->heap.bytes_allocated <= r->max_heap) return 0;
    size_t held = heap_measure(&vm->heap, mark_run_roots, r);
    if (held <= r->max_heap) return 0;
    vm_raise(vm, "heap limit exceeded: the run holds %zu bytes of live heap (max_heap %zu)", held, r->max_heap);
    return 1;
}

int vm_step_over(VM *vm, Fiber *f)
{
    VmRun *r = f->run;
    if (r->steps >= r->max_steps) {
        vm_raise(vm, "step limit exceeded: the run executed %llu instructions (max_steps %llu)",
                 (unsigned long long)r->steps, (unsigned long long)r->max_steps);
        return 1;
    }
    r->steps++;
    return 0;
}

/* ------------------------------------------------------------------ */
/* events                                                              */

void vm_set_events(VM *vm, void (*fn)(void *ud, const VmEvent *ev), void *ud)
{
    vm->events = fn;
    vm->events_ud = fn ? ud : NULL;
}

int vm_events_on(const VM *vm) { return vm->events != NULL; }

void vm_event_text(VM *vm, Fiber *f, Value name, const char *text, size_t len)
{
    if (!vm->events || !f || f->cancelled) return;
    VmEvent ev = {VM_EV_TEXT, f->run, f->ev_branch, VAL_IS_STRING(name) ? AS_STRING(name)->chars : NULL, text, len};
    vm->events(vm->events_ud, &ev);
}

void vm_event_var(VM *vm, Fiber *f, Value name, Value v)
{
    if (!vm->events || !f || f->cancelled || !VAL_IS_STRING(name)) return;
    StrBuf b;
    sb_init(&b);
    json_encode(&b, v, JSON_RESULT, NULL);
    if (b.oom) {
        sb_free(&b);
        return;
    }
    VmEvent ev = {VM_EV_VAR, f->run, f->ev_branch, AS_STRING(name)->chars, b.data ? b.data : "", b.len};
    vm->events(vm->events_ud, &ev);
    sb_free(&b);
}
