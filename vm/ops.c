/*
 * vm/ops.c — the slow paths of the operators: arithmetic with overflow and
 * mixed types, ordering, indexing and fields of strings, lists, maps and
 * states, `in`, ranges, text conversion and concatenation. The interpreter
 * (vm/interp.c) inlines the int/float fast paths and calls these for the
 * rest. Every function returns 0, or -1 with the error raised.
 */
#include "vm/vm_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* operators (slow paths)                                              */

static bool is_num(Value v) { return v.type == V_INT || v.type == V_FLOAT; }
static double num(Value v) { return v.type == V_INT ? (double)v.as.i : v.as.f; }

static const char *op_verb(OpCode op)
{
    switch (op) {
    case OP_ADD: return "add";
    case OP_SUB: return "subtract";
    case OP_MUL: return "multiply";
    case OP_DIV: return "divide";
    default: return "take the remainder of";
    }
}

static const char *op_symbol(OpCode op)
{
    switch (op) {
    case OP_ADD: return "+";
    case OP_SUB: return "-";
    case OP_MUL: return "*";
    case OP_DIV: return "/";
    default: return "%";
    }
}

int ops_arith(VM *vm, OpCode op, Value *ra, Value b, Value c)
{
    if (b.type == V_INT && c.type == V_INT) {
        int64_t x = b.as.i, y = c.as.i, r;
        switch (op) {
        case OP_ADD:
            if (__builtin_add_overflow(x, y, &r)) return vm_raise(vm, "integer overflow in %lld + %lld", (long long)x, (long long)y);
            break;
        case OP_SUB:
            if (__builtin_sub_overflow(x, y, &r)) return vm_raise(vm, "integer overflow in %lld - %lld", (long long)x, (long long)y);
            break;
        case OP_MUL:
            if (__builtin_mul_overflow(x, y, &r)) return vm_raise(vm, "integer overflow in %lld * %lld", (long long)x, (long long)y);
            break;
        case OP_DIV:
            if (y == 0) return vm_raise(vm, "division by zero");
            *ra = val_float((double)x / (double)y);
            return 0;
        default:
            if (y == 0) return vm_raise(vm, "modulo by zero");
            if (y == -1) { r = 0; break; }
            r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            break;
        }
        *ra = val_int(r);
        return 0;
    }
    if (is_num(b) && is_num(c)) {
        double x = num(b), y = num(c), r;
        switch (op) {
        case OP_ADD: r = x + y; break;
        case OP_SUB: r = x - y; break;
        case OP_MUL: r = x * y; break;
        case OP_DIV:
            if (y == 0) return vm_raise(vm, "division by zero");
            r = x / y;
            break;
        default:
            if (y == 0) return vm_raise(vm, "modulo by zero");
            r = fmod(x, y);
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            break;
        }
        *ra = val_float(r);
        return 0;
    }
    if (op == OP_ADD) {
        if (VAL_IS_STRING(b) && VAL_IS_STRING(c)) {
            ObjString *s = str_concat(&vm->heap, AS_STRING(b), AS_STRING(c));
            if (!s) return vm_raise(vm, "out of memory");
            *ra = val_obj(s);
            return 0;
        }
        if (VAL_IS_LIST(b) && VAL_IS_LIST(c)) {
            ObjList *x = AS_LIST(b), *y = AS_LIST(c);
            ObjList *l = list_new(&vm->heap, x->len + y->len);
            if (!l) return vm_raise(vm, "out of memory");
            for (size_t i = 0; i < x->len; i++) list_push(l, x->items[i]);
            for (size_t i = 0; i < y->len; i++) list_push(l, y->items[i]);
            *ra = val_obj(l);
            return 0;
        }
        if ((VAL_IS_STRING(b) && c.type != V_OBJ) || (VAL_IS_STRING(c) && b.type != V_OBJ))
            return vm_raise(vm, "cannot add %s and %s; use str() to convert", val_type_name(b), val_type_name(c));
    }
    return vm_raise(vm, "cannot %s %s and %s (%s)", op_verb(op), val_type_name(b), val_type_name(c), op_symbol(op));
}

/* *res := b < c (or <=). */
int ops_less(VM *vm, Value b, Value c, int or_equal, bool *res)
{
    if (b.type == V_INT && c.type == V_INT) {
        *res = or_equal ? b.as.i <= c.as.i : b.as.i < c.as.i;
        return 0;
    }
    if (is_num(b) && is_num(c)) {
        double x = num(b), y = num(c);
        *res = or_equal ? x <= y : x < y;
        return 0;
    }
    if (VAL_IS_STRING(b) && VAL_IS_STRING(c)) {
        const ObjString *x = AS_STRING(b), *y = AS_STRING(c);
        size_t n = x->len < y->len ? x->len : y->len;
        int d = memcmp(x->chars, y->chars, n);
        if (d == 0) d = x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
        *res = or_equal ? d <= 0 : d < 0;
        return 0;
    }
    return vm_raise(vm, "cannot compare %s and %s", val_type_name(b), val_type_name(c));
}

int ops_compare_imm(VM *vm, Value a, int64_t imm, OpCode op, bool *res)
{
    double x;
    if (a.type == V_INT) {
        int64_t v = a.as.i;
        switch (op) {
        case OP_LTI: *res = v < imm; break;
        case OP_LEI: *res = v <= imm; break;
        case OP_GTI: *res = v > imm; break;
        default: *res = v >= imm; break;
        }
        return 0;
    }
    if (a.type != V_FLOAT) return vm_raise(vm, "cannot compare %s and int", val_type_name(a));
    x = a.as.f;
    double y = (double)imm;
    switch (op) {
    case OP_LTI: *res = x < y; break;
    case OP_LEI: *res = x <= y; break;
    case OP_GTI: *res = x > y; break;
    default: *res = x >= y; break;
    }
    return 0;
}

static void repr_into(char *buf, size_t cap, Value v)
{
    StrBuf b;
    sb_init(&b);
    val_to_repr(&b, v);
    if (b.len > 60) {
        b.len = 57;
        sb_append(&b, "...", 3);
    }
    snprintf(buf, cap, "%.*s", (int)b.len, b.data ? b.data : "");
    sb_free(&b);
}

/* Byte offset of character `i` (0-based) in a UTF-8 string, and its length. */
static void utf8_char_at(const ObjString *s, size_t i, size_t *off, size_t *n)
{
    if (s->nchars == s->len) {
        *off = i;
        *n = 1;
        return;
    }
    size_t o = 0;
    for (size_t c = 0; c < i; c++) {
        o++;
        while (o < s->len && ((unsigned char)s->chars[o] & 0xC0) == 0x80) o++;
    }
    size_t e = o + 1;
    while (e < s->len && ((unsigned char)s->chars[e] & 0xC0) == 0x80) e++;
    *off = o;
    *n = e - o;
}

static int norm_index(VM *vm, Value key, size_t len, const char *what, size_t *out)
{
    if (key.type != V_INT) return vm_raise(vm, "%s index must be an int, not %s", what, val_type_name(key));
    int64_t i = key.as.i;
    if (i < 0) i += (int64_t)len;
    if (i < 0 || (uint64_t)i >= len)
        return vm_raise(vm, "%s index %lld out of range (length %zu)", what, (long long)key.as.i, len);
    *out = (size_t)i;
    return 0;
}

static int state_var(VM *vm, ObjState *s, Value key, Value *out)
{
    if (map_get(s->vars, key, out)) return 0;
    char k[80];
    repr_into(k, sizeof k, key);
    return vm_raise(vm, "the state has no variable %s", k);
}

int ops_index_get(VM *vm, Value obj, Value key, Value *out)
{
    if (obj.type == V_OBJ) {
        switch (obj.as.obj->type) {
        case OBJ_LIST: {
            ObjList *l = AS_LIST(obj);
            size_t i;
            if (norm_index(vm, key, l->len, "list", &i) < 0) return -1;
            *out = l->items[i];
            return 0;
        }
        case OBJ_STRING: {
            ObjString *s = AS_STRING(obj);
            size_t i, off, n;
            if (norm_index(vm, key, s->nchars, "string", &i) < 0) return -1;
            utf8_char_at(s, i, &off, &n);
            ObjString *c = str_new(&vm->heap, s->chars + off, n);
            if (!c) return vm_raise(vm, "out of memory");
            *out = val_obj(c);
            return 0;
        }
        case OBJ_MAP: {
            if (!map_key_ok(key)) return vm_raise(vm, "a %s cannot be a map key", val_type_name(key));
            if (map_get(AS_MAP(obj), key, out)) return 0;
            char k[80];
            repr_into(k, sizeof k, key);
            return vm_raise(vm, "key %s not in map", k);
        }
        case OBJ_STATE:
            return state_var(vm, AS_STATE(obj), key, out);
        case OBJ_MODULE: {
            ObjModule *m = (ObjModule *)obj.as.obj;
            if (VAL_IS_STRING(key) && map_get(m->exports, key, out)) return 0;
            char k[80];
            repr_into(k, sizeof k, key);
            return vm_raise(vm, "module %s has no name %s", m->path ? m->path->chars : "?", k);
        }
        default: break;
        }
    }
    return vm_raise(vm, "cannot index %s", val_type_name(obj));
}

int ops_field_get(VM *vm, Value obj, ObjString *name, Value *out)
{
    if (obj.type == V_OBJ) {
        switch (obj.as.obj->type) {
        case OBJ_MAP:
            if (map_get(AS_MAP(obj), val_obj(name), out)) return 0;
            return vm_raise(vm, "key \"%s\" not in map", name->chars);
        case OBJ_STATE: {
            ObjState *s = AS_STATE(obj);
            if (strcmp(name->chars, "text") == 0) {
                ObjString *t = str_new(&vm->heap, s->text ? s->text : "", s->len);
                if (!t) return vm_raise(vm, "out of memory");
                *out = val_obj(t);
                return 0;
            }
            if (strcmp(name->chars, "vars") == 0) { *out = val_obj(s->vars); return 0; }
            if (strcmp(name->chars, "meta") == 0) { *out = val_obj(s->meta); return 0; }
            if (strcmp(name->chars, "logprobs") == 0) { *out = val_obj(s->logprobs); return 0; }
            return state_var(vm, s, val_obj(name), out);
        }
        case OBJ_MODULE: {
            ObjModule *m = (ObjModule *)obj.as.obj;
            if (map_get(m->exports, val_obj(name), out)) return 0;
            return vm_raise(vm, "module %s has no name '%s'", m->path ? m->path->chars : "?", name->chars);
        }
        default: break;
        }
    }
    return vm_raise(vm, "%s has no field '%s'", val_type_name(obj), name->chars);
}

int ops_index_set(VM *vm, Value obj, Value key, Value v)
{
    if (obj.type == V_OBJ) {
        switch (obj.as.obj->type) {
        case OBJ_LIST: {
            ObjList *l = AS_LIST(obj);
            size_t i;
            if (norm_index(vm, key, l->len, "list", &i) < 0) return -1;
            l->items[i] = v;
            return 0;
        }
        case OBJ_MAP:
            if (!map_key_ok(key)) return vm_raise(vm, "a %s cannot be a map key", val_type_name(key));
            map_set(AS_MAP(obj), key, v);
            return 0;
        case OBJ_STATE:
            if (!VAL_IS_STRING(key)) return vm_raise(vm, "state variable names are strings, not %s", val_type_name(key));
            map_set(AS_STATE(obj)->vars, key, v);
            return 0;
        case OBJ_STRING:
            return vm_raise(vm, "strings are immutable");
        case OBJ_MODULE:
            return vm_raise(vm, "cannot assign to a module's names from outside it");
        default: break;
        }
    }
    return vm_raise(vm, "cannot assign into %s", val_type_name(obj));
}

int ops_field_set(VM *vm, Value obj, ObjString *name, Value v)
{
    if (VAL_IS_STATE(obj)) {
        const char *n = name->chars;
        if (!strcmp(n, "text") || !strcmp(n, "vars") || !strcmp(n, "meta") || !strcmp(n, "logprobs"))
            return vm_raise(vm, "state.%s cannot be assigned", n);
    }
    if (VAL_IS_MAP(obj) || VAL_IS_STATE(obj) || val_is_obj_type(obj, OBJ_MODULE)) return ops_index_set(vm, obj, val_obj(name), v);
    return vm_raise(vm, "cannot set field '%s' of %s", name->chars, val_type_name(obj));
}

int ops_in(VM *vm, Value a, Value b, bool *res)
{
    if (b.type == V_OBJ) {
        switch (b.as.obj->type) {
        case OBJ_LIST: {
            ObjList *l = AS_LIST(b);
            *res = false;
            for (size_t i = 0; i < l->len; i++)
                if (ops_equal(a, l->items[i])) { *res = true; break; }
            return 0;
        }
        case OBJ_MAP: {
            Value dummy;
            *res = map_key_ok(a) && map_get(AS_MAP(b), a, &dummy);
            return 0;
        }
        case OBJ_STRING: {
            if (!VAL_IS_STRING(a))
                return vm_raise(vm, "'in' with a string on the right needs a string on the left, not %s", val_type_name(a));
            ObjString *h = AS_STRING(b), *n = AS_STRING(a);
            *res = n->len == 0 || memmem(h->chars, h->len, n->chars, n->len) != NULL;
            return 0;
        }
        case OBJ_STATE: {
            Value dummy;
            *res = map_key_ok(a) && map_get(AS_STATE(b)->vars, a, &dummy);
            return 0;
        }
        default: break;
        }
    }
    return vm_raise(vm, "'in' needs a list, map or string on the right, not %s", val_type_name(b));
}

int ops_range(VM *vm, Value a, Value b, Value *out)
{
    if (a.type != V_INT || b.type != V_INT)
        return vm_raise(vm, "range bounds must be ints, not %s and %s", val_type_name(a), val_type_name(b));
    int64_t lo = a.as.i, hi = b.as.i;
    int64_t n = hi > lo ? (int64_t)((uint64_t)hi - (uint64_t)lo) : 0;
    if (n < 0 || n > RANGE_MAX) return vm_raise(vm, "range %lld..%lld is too large", (long long)lo, (long long)hi);
    ObjList *l = list_new(&vm->heap, (size_t)n);
    if (!l) return vm_raise(vm, "out of memory");
    for (int64_t i = 0; i < n; i++) list_push(l, val_int(lo + i));
    *out = val_obj(l);
    return 0;
}

int ops_to_text(VM *vm, Value v, Value *out)
{
    if (VAL_IS_STRING(v)) { *out = v; return 0; }
    StrBuf b;
    sb_init(&b);
    val_to_text(&b, v);
    ObjString *s = sb_to_string(&vm->heap, &b);
    if (!s) return vm_raise(vm, "out of memory");
    *out = val_obj(s);
    return 0;
}

int ops_concat(VM *vm, Value *regs, int n, Value *out)
{
    StrBuf b;
    sb_init(&b);
    for (int i = 0; i < n; i++) {
        if (VAL_IS_STRING(regs[i])) sb_append(&b, AS_STRING(regs[i])->chars, AS_STRING(regs[i])->len);
        else val_to_text(&b, regs[i]);
    }
    ObjString *s = sb_to_string(&vm->heap, &b);
    if (!s) return vm_raise(vm, "out of memory");
    *out = val_obj(s);
    return 0;
}
