/*
 * vm/prompt.c — what the instructions do to a fiber's prompt state:
 * appending values, role blocks (segments, and the markers the role hooks
 * write around them: vm/chat.c), and fork (one branch fiber per item, each
 * on a copy of the state; the parent waits until every branch returns).
 */
#include "vm/vm_internal.h"

#include <stdint.h>
#include <stdlib.h>

/* ---- the prompt state ---- */

int prompt_append(VM *vm, Fiber *f, Value v, int strict)
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
int prompt_role_begin(VM *vm, Fiber *f, int role)
{
    ObjState *s = f->state;
    if (role < 0 || role >= ROLE_COUNT) return vm_raise(vm, "internal error: bad role %d", role);
    if (f->role == FIB_HELPER) return vm_raise(vm, "a chat template cannot open a %s block", role_name(role));
    if (s->nsegs > 0 && s->segs[s->nsegs - 1].end == SIZE_MAX)
        return vm_raise(vm, "a %s block cannot start inside a %s block", role_name(role),
                        role_name(s->segs[s->nsegs - 1].role));
    if (vm->roles && vm->roles->open(vm->roles_ud, vm, s, role) < 0) return -1;
    if (segs_push(s, (Role)role, s->len) < 0) return vm_raise(vm, "out of memory");
    return 0;
}

int prompt_role_end(VM *vm, Fiber *f, int role)
{
    ObjState *s = f->state;
    if (role < 0 || role >= ROLE_COUNT) return vm_raise(vm, "internal error: bad role %d", role);
    if (s->nsegs == 0 || s->segs[s->nsegs - 1].end != SIZE_MAX) return 0;
    s->segs[s->nsegs - 1].end = s->len;
    return vm->roles ? vm->roles->close(vm->roles_ud, vm, s, role) : 0;
}

/* ---- fork ---- */

/* Starts one branch per item; 1 when the fiber now waits, 0 when there was
 * nothing to run (R[a] is then the empty list), -1 on error. */
int prompt_fork(VM *vm, Fiber *f, Value *base, int a, int b)
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
            fiber_cancel_branches(vm, f);
            return vm_raise(vm, "out of memory");
        }
        br->parent = f;
        br->branch = (int)i;
        br->ev_branch = ++f->run->nbranches;
        br->state = state_copy(&vm->heap, f->state);
        if (!br->state || fiber_call_entry(vm, br, body, &item, 1, 1) < 0) {
            fiber_cancel_branches(vm, f);
            return br->state ? -1 : vm_raise(vm, "out of memory");
        }
        fiber_ready_push(vm, br);
    }
    base[a] = val_obj(results);
    f->fork_results = results;
    f->fork_pending = (int)n;
    return 1;
}

/* A branch's body returned: its state is its value in the fork's list. */
void prompt_branch_done(VM *vm, Fiber *br)
{
    Fiber *p = br->parent;
    if (p) {
        p->fork_results->items[br->branch] = val_obj(br->state);
        if (--p->fork_pending == 0) {
            p->fork_results = NULL;
            fiber_ready_push(vm, p);
        }
    }
    br->parent = NULL;
    fiber_free(vm, br);
}
