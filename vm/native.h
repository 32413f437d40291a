/*
 * vm/native.h — what a native function (a built-in, gen, select) sees of
 * the VM: how it raises an error, where print() writes, and the heap it
 * allocates on. The natives' rooms (vm/builtins.c, vm/gen.c) and their
 * tests need nothing more of the interpreter; vm/vm.h includes this.
 *
 * A NativeFn (vm/value.h) writes its result to *out and returns 0, or
 * returns vm_raise(...) (-1).
 */
#ifndef SGL_VM_NATIVE_H
#define SGL_VM_NATIVE_H

#include <stddef.h>

#include "vm/value.h"

struct VM;

/* A native the programs call by name. */
typedef struct {
    const char *name;
    NativeFn fn;
} VmNative;

/* Sets the pending runtime error of the running fiber; returns -1. The VM
 * adds file:line:col of the current instruction and the call-stack trace. */
int vm_raise(struct VM *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vm_write_out(struct VM *vm, const char *s, size_t n);
Heap *vm_heap(struct VM *vm);

#endif
