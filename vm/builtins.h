/*
 * vm/builtins.h — the module-less built-in functions of §10.
 *
 * Owns: the list of built-ins (one X-macro, SGL_BUILTINS) and their C
 * implementations. Does not own: how they become globals (vm/api.c adds
 * builtin_table[] to each VM, which wraps each in an ObjNative), nor errors and output,
 * which go through vm/native.h.
 *
 * Every built-in is a NativeFn: it writes its result to *out and returns 0,
 * or returns vm_raise(...) (-1). None takes named arguments; passing one is
 * an error. A built-in never triggers a collection.
 */
#ifndef SGL_VM_BUILTINS_H
#define SGL_VM_BUILTINS_H

#include "vm/native.h"

/* X(name as the program writes it, C function) */
#define SGL_BUILTINS(X)             \
    X(print, bi_print)              \
    X(len, bi_len)                  \
    X(str, bi_str)                  \
    X(int, bi_int)                  \
    X(float, bi_float)              \
    X(range, bi_range)              \
    X(keys, bi_keys)                \
    X(values, bi_values)            \
    X(append, bi_append)            \
    X(join, bi_join)                \
    X(split, bi_split)              \
    X(strip, bi_strip)              \
    X(lower, bi_lower)              \
    X(upper, bi_upper)              \
    X(replace, bi_replace)          \
    X(contains, bi_contains)        \
    X(startswith, bi_startswith)    \
    X(endswith, bi_endswith)        \
    X(format, bi_format)            \
    X(json_encode, bi_json_encode)  \
    X(json_decode, bi_json_decode)  \
    X(match, bi_match)              \
    X(find_all, bi_find_all)        \
    X(sub, bi_sub)                  \
    X(min, bi_min)                  \
    X(max, bi_max)                  \
    X(abs, bi_abs)                  \
    X(round, bi_round)              \
    X(sort, bi_sort)                \
    X(error, bi_error)

extern const VmNative builtin_table[];
extern const int builtin_count;

/* The built-in called `name`, or NULL. */
NativeFn builtin_find(const char *name);

#endif
