/*
 * vm/gen.h — the model-call built-ins gen() and select() (§6).
 *
 * Owns: turning a call's arguments and the current prompt state into an
 * RtGenParams / select request, submitting it to the backend, and, in the
 * completion callback, converting the result (type:), recording it in the
 * state (vars, meta, logprobs) and resuming the fiber. Does not own the
 * fiber machinery (vm/vm.h: vm_wait_begin/done/fail) nor the backend.
 *
 * Both are NativeFns (gen_natives[]) that return VM_NATIVE_WAIT after a
 * successful submit.
 *
 * gen with `type:` gives the converted value (int, float, bool) to a `let`,
 * an assignment, an argument or a return, and records it in state.vars;
 * used as a statement or a side-by-side or interpolated piece, the call
 * yields the model's text instead, so that text is what gets appended (as
 * SGLang's `s += gen(..., dtype=int)`). Output that does not convert is a
 * runtime error either way. Inside an `assistant` block the chat template's
 * end_of_turn (vm/chat.h) joins gen's stop strings.
 */
#ifndef SGL_VM_GEN_H
#define SGL_VM_GEN_H

#include "vm/native.h"

/* gen and select, for vm_add_natives. */
extern const VmNative gen_natives[];
extern const int gen_native_count;

#endif
