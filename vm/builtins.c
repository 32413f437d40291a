/*
 * vm/builtins.c — the §10 built-ins: conversions, strings, lists, maps,
 * JSON, regex (PCRE2), numbers, error.
 *
 * Owns only the functions; values come from vm/value.h, errors and output
 * go through the VM (vm_raise, vm_write_out). Every error message names the
 * built-in and says what it got: "len() takes a string, list or map, not int".
 *
 * Decisions where §10 is silent:
 *   - lower/upper map ASCII letters only; strip removes ASCII whitespace.
 *   - split(s) without a separator splits on runs of whitespace (Python);
 *     split(s, "") gives the characters.
 *   - join(list) without a separator joins with "".
 *   - contains also takes a list (an equal item) or a map (a key).
 *   - range takes an optional step, like Python.
 *   - format: "{{" and "}}" are literal braces; a count mismatch between
 *     placeholders and arguments is an error.
 *   - int("...") accepts an optional sign and decimal digits, surrounded by
 *     whitespace; float("...") what strtod accepts.
 *   - regex arguments given as plain strings are compiled on every call; a
 *     re"..." value compiles once and keeps the code.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "vm/builtins.h"

#include <errno.h>
#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "vm/json.h"

#define RANGE_MAX_ITEMS 100000000  /* a list bigger than this is surely a mistake */

#define SGL_BUILTIN_DECL(name, fn) \
    static int fn(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out);
SGL_BUILTINS(SGL_BUILTIN_DECL)
#undef SGL_BUILTIN_DECL

#define SGL_BUILTIN_ROW(name, fn) {#name, fn},
const VmNative builtin_table[] = {SGL_BUILTINS(SGL_BUILTIN_ROW)};
#undef SGL_BUILTIN_ROW
const int builtin_count = (int)(sizeof builtin_table / sizeof builtin_table[0]);

NativeFn builtin_find(const char *name)
{
    for (int i = 0; i < builtin_count; i++)
        if (strcmp(builtin_table[i].name, name) == 0) return builtin_table[i].fn;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* argument checks                                                     */

static int check_args(struct VM *vm, const char *fn, int argc, ObjMap *kwargs, int min, int max)
{
    if (kwargs && kwargs->count > 0) {
        for (size_t i = 0; i < kwargs->nentries; i++) {
            if (!kwargs->entries[i].live) continue;
            Value k = kwargs->entries[i].key;
            if (VAL_IS_STRING(k))
                return vm_raise(vm, "%s() takes no named argument '%s'", fn, AS_STRING(k)->chars);
        }
        return vm_raise(vm, "%s() takes no named arguments", fn);
    }
    if (argc >= min && (max < 0 || argc <= max)) return 0;
    const char *plural = min == 1 ? "" : "s";
    if (max < 0) return vm_raise(vm, "%s() takes at least %d argument%s (%d given)", fn, min, plural, argc);
    if (min == max) return vm_raise(vm, "%s() takes %d argument%s (%d given)", fn, min, plural, argc);
    return vm_raise(vm, "%s() takes %d to %d arguments (%d given)", fn, min, max, argc);
}

static int want_string(struct VM *vm, const char *fn, const char *what, Value v, ObjString **out)
{
    if (!VAL_IS_STRING(v)) return vm_raise(vm, "%s() takes a string%s%s, not %s", fn, *what ? " as " : "", what, val_type_name(v));
    *out = AS_STRING(v);
    return 0;
}

static int want_list(struct VM *vm, const char *fn, Value v, ObjList **out)
{
    if (!VAL_IS_LIST(v)) return vm_raise(vm, "%s() takes a list, not %s", fn, val_type_name(v));
    *out = AS_LIST(v);
    return 0;
}

static int want_map(struct VM *vm, const char *fn, Value v, ObjMap **out)
{
    if (!VAL_IS_MAP(v)) return vm_raise(vm, "%s() takes a map, not %s", fn, val_type_name(v));
    *out = AS_MAP(v);
    return 0;
}

static int want_int(struct VM *vm, const char *fn, Value v, int64_t *out)
{
    if (v.type != V_INT) return vm_raise(vm, "%s() takes an int, not %s", fn, val_type_name(v));
    *out = v.as.i;
    return 0;
}

static int oom(struct VM *vm) { return vm_raise(vm, "out of memory"); }

static int ret_string(struct VM *vm, Value *out, const char *s, size_t len)
{
    ObjString *str = str_new(vm_heap(vm), s, len);
    if (!str) return oom(vm);
    *out = val_obj(str);
    return 0;
}

static int ret_buf(struct VM *vm, Value *out, StrBuf *b)
{
    ObjString *str = sb_to_string(vm_heap(vm), b);
    if (!str) return oom(vm);
    *out = val_obj(str);
    return 0;
}

static ObjList *new_list(struct VM *vm, size_t cap)
{
    ObjList *l = list_new(vm_heap(vm), cap);
    if (!l) oom(vm);
    return l;
}

/* Byte length of the UTF-8 sequence starting with byte c (1 for stray bytes). */
/* Bytes of the character starting at c (strings hold valid UTF-8). */
static size_t char_len(unsigned char c)
{
    int n = utf8_lead_len(c);
    return n > 0 ? (size_t)n : 1;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* ------------------------------------------------------------------ */
/* output and conversions                                              */

static int bi_print(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "print", argc, kwargs, 0, -1) < 0) return -1;
    StrBuf b;
    sb_init(&b);
    for (int i = 0; i < argc; i++) {
        if (i) sb_appendc(&b, ' ');
        val_to_text(&b, args[i]);
    }
    sb_appendc(&b, '\n');
    vm_write_out(vm, b.data, b.len);
    sb_free(&b);
    *out = val_nil();
    return 0;
}

static int bi_len(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "len", argc, kwargs, 1, 1) < 0) return -1;
    Value v = args[0];
    if (VAL_IS_STRING(v)) *out = val_int((int64_t)AS_STRING(v)->nchars);
    else if (VAL_IS_LIST(v)) *out = val_int((int64_t)AS_LIST(v)->len);
    else if (VAL_IS_MAP(v)) *out = val_int((int64_t)AS_MAP(v)->count);
    else return vm_raise(vm, "len() takes a string, list or map, not %s", val_type_name(v));
    return 0;
}

static int bi_str(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "str", argc, kwargs, 1, 1) < 0) return -1;
    if (VAL_IS_STRING(args[0])) {
        *out = args[0];
        return 0;
    }
    if (args[0].type == V_INT) {  /* the common case: no buffer, and digits are ASCII */
        char digits[FMT_INT_MAX];
        size_t n = fmt_int(digits, args[0].as.i);
        ObjString *str = str_alloc(vm_heap(vm), n, n);
        if (!str) return oom(vm);
        memcpy(str->chars, digits, n);
        *out = val_obj(str);
        return 0;
    }
    StrBuf b;
    sb_init(&b);
    val_to_text(&b, args[0]);
    return ret_buf(vm, out, &b);
}

/* A float that converts to int64 exactly when truncated, or an error. */
static int float_to_int(struct VM *vm, const char *fn, double f, int64_t *out)
{
    if (isnan(f)) return vm_raise(vm, "%s() cannot convert NaN to int", fn);
    if (!(f > -9223372036854775809.0 && f < 9223372036854775808.0)) {
        StrBuf b;
        sb_init(&b);
        fmt_double(&b, f);
        int rc = vm_raise(vm, "%s() result %s does not fit in an int", fn, b.data);
        sb_free(&b);
        return rc;
    }
    *out = (int64_t)f;
    return 0;
}

static int bi_int(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "int", argc, kwargs, 1, 1) < 0) return -1;
    Value v = args[0];
    int64_t i;
    switch (v.type) {
    case V_INT: *out = v; return 0;
    case V_BOOL: *out = val_int(v.as.b ? 1 : 0); return 0;
    case V_FLOAT:
        if (float_to_int(vm, "int", trunc(v.as.f), &i) < 0) return -1;
        *out = val_int(i);
        return 0;
    default: break;
    }
    if (!VAL_IS_STRING(v)) return vm_raise(vm, "int() cannot convert %s to int", val_type_name(v));
    const ObjString *s = AS_STRING(v);
    const char *p = s->chars, *end = s->chars + s->len;
    while (p < end && is_space(*p)) p++;
    while (end > p && is_space(end[-1])) end--;
    const char *digits = p;
    if (digits < end && (*digits == '+' || *digits == '-')) digits++;
    bool ok = digits < end && (size_t)(end - p) < 64;
    for (const char *q = digits; ok && q < end; q++)
        if (*q < '0' || *q > '9') ok = false;
    if (ok) {
        char buf[64];
        memcpy(buf, p, (size_t)(end - p));
        buf[end - p] = '\0';
        errno = 0;
        long long n = strtoll(buf, NULL, 10);
        if (errno == ERANGE) return vm_raise(vm, "int() value \"%s\" does not fit in an int", buf);
        *out = val_int(n);
        return 0;
    }
    StrBuf b;
    sb_init(&b);
    val_to_repr(&b, v);
    int rc = vm_raise(vm, "int() cannot convert %s to int", b.data);
    sb_free(&b);
    return rc;
}

static int bi_float(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "float", argc, kwargs, 1, 1) < 0) return -1;
    Value v = args[0];
    switch (v.type) {
    case V_FLOAT: *out = v; return 0;
    case V_INT: *out = val_float((double)v.as.i); return 0;
    case V_BOOL: *out = val_float(v.as.b ? 1.0 : 0.0); return 0;
    default: break;
    }
    if (!VAL_IS_STRING(v)) return vm_raise(vm, "float() cannot convert %s to float", val_type_name(v));
    const ObjString *s = AS_STRING(v);
    const char *p = s->chars;
    while (is_space(*p)) p++;
    char *end = NULL;
    double d = *p ? strtod(p, &end) : 0;
    if (end && end != p) {
        while (is_space(*end)) end++;
        if (end == s->chars + s->len) {
            *out = val_float(d);
            return 0;
        }
    }
    StrBuf b;
    sb_init(&b);
    val_to_repr(&b, v);
    int rc = vm_raise(vm, "float() cannot convert %s to float", b.data);
    sb_free(&b);
    return rc;
}

/* ------------------------------------------------------------------ */
/* lists and maps                                                      */

static int bi_range(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "range", argc, kwargs, 1, 3) < 0) return -1;
    int64_t a = 0, b = 0, step = 1;
    if (argc == 1) {
        if (want_int(vm, "range", args[0], &b) < 0) return -1;
    } else {
        if (want_int(vm, "range", args[0], &a) < 0 || want_int(vm, "range", args[1], &b) < 0) return -1;
        if (argc == 3 && want_int(vm, "range", args[2], &step) < 0) return -1;
    }
    if (step == 0) return vm_raise(vm, "range() step must not be zero");
    /* count in unsigned arithmetic: b - a can overflow int64 */
    uint64_t n = 0;
    if (step > 0 && b > a) n = ((uint64_t)b - (uint64_t)a - 1) / (uint64_t)step + 1;
    if (step < 0 && b < a) n = ((uint64_t)a - (uint64_t)b - 1) / ((uint64_t)0 - (uint64_t)step) + 1;
    if (n > RANGE_MAX_ITEMS) return vm_raise(vm, "range() of %llu items is too large", (unsigned long long)n);
    ObjList *l = new_list(vm, (size_t)n);
    if (!l) return -1;
    for (uint64_t i = 0; i < n; i++) list_push(l, val_int((int64_t)((uint64_t)a + i * (uint64_t)step)));
    *out = val_obj(l);
    return 0;
}

static int map_column(struct VM *vm, const char *fn, int argc, Value *args, ObjMap *kwargs, Value *out, bool want_keys)
{
    ObjMap *m = NULL;
    if (check_args(vm, fn, argc, kwargs, 1, 1) < 0 || want_map(vm, fn, args[0], &m) < 0) return -1;
    ObjList *l = new_list(vm, m->count);
    if (!l) return -1;
    for (size_t i = 0; i < m->nentries; i++)
        if (m->entries[i].live) list_push(l, want_keys ? m->entries[i].key : m->entries[i].value);
    *out = val_obj(l);
    return 0;
}

static int bi_keys(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    return map_column(vm, "keys", argc, args, kwargs, out, true);
}

static int bi_values(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    return map_column(vm, "values", argc, args, kwargs, out, false);
}

static int bi_append(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjList *l = NULL;
    if (check_args(vm, "append", argc, kwargs, 2, 2) < 0 || want_list(vm, "append", args[0], &l) < 0) return -1;
    size_t before = l->len;
    list_push(l, args[1]);
    if (l->len == before) return oom(vm);
    *out = val_nil();
    return 0;
}

/* ------------------------------------------------------------------ */
/* strings                                                             */

static int bi_join(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjList *l = NULL;
    ObjString *sep = NULL;
    if (check_args(vm, "join", argc, kwargs, 1, 2) < 0 || want_list(vm, "join", args[0], &l) < 0) return -1;
    if (argc == 2 && want_string(vm, "join", "separator", args[1], &sep) < 0) return -1;
    /* sizes first, then one copy straight into the result */
    size_t len = 0, nchars = 0;
    for (size_t i = 0; i < l->len; i++) {
        if (!VAL_IS_STRING(l->items[i]))
            return vm_raise(vm, "join() list item %zu is %s, not a string (use str())", i, val_type_name(l->items[i]));
        len += AS_STRING(l->items[i])->len;
        nchars += AS_STRING(l->items[i])->nchars;
    }
    if (sep && l->len > 1) {
        len += sep->len * (l->len - 1);
        nchars += sep->nchars * (l->len - 1);
    }
    ObjString *str = str_alloc(vm_heap(vm), len, nchars);
    if (!str) return oom(vm);
    char *p = str->chars;
    for (size_t i = 0; i < l->len; i++) {
        if (i && sep) {
            memcpy(p, sep->chars, sep->len);
            p += sep->len;
        }
        const ObjString *item = AS_STRING(l->items[i]);
        memcpy(p, item->chars, item->len);
        p += item->len;
    }
    *out = val_obj(str);
    return 0;
}

static int push_piece(struct VM *vm, ObjList *l, const char *s, size_t len)
{
    ObjString *str = str_new(vm_heap(vm), s, len);
    if (!str) return oom(vm);
    list_push(l, val_obj(str));
    return 0;
}

static int bi_split(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjString *s = NULL, *sep = NULL;
    if (check_args(vm, "split", argc, kwargs, 1, 2) < 0 || want_string(vm, "split", "", args[0], &s) < 0) return -1;
    if (argc == 2 && want_string(vm, "split", "separator", args[1], &sep) < 0) return -1;
    ObjList *l = new_list(vm, 0);
    if (!l) return -1;
    *out = val_obj(l);
    const char *p = s->chars, *end = s->chars + s->len;
    if (!sep) {
        while (p < end) {
            while (p < end && is_space(*p)) p++;
            const char *start = p;
            while (p < end && !is_space(*p)) p++;
            if (p > start && push_piece(vm, l, start, (size_t)(p - start)) < 0) return -1;
        }
        return 0;
    }
    if (sep->len == 0) {
        while (p < end) {
            size_t n = char_len((unsigned char)*p);
            if (n > (size_t)(end - p)) n = (size_t)(end - p);
            if (push_piece(vm, l, p, n) < 0) return -1;
            p += n;
        }
        return 0;
    }
    for (;;) {
        const char *hit = memmem(p, (size_t)(end - p), sep->chars, sep->len);
        if (!hit) return push_piece(vm, l, p, (size_t)(end - p));
        if (push_piece(vm, l, p, (size_t)(hit - p)) < 0) return -1;
        p = hit + sep->len;
    }
}

static int bi_strip(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjString *s = NULL;
    if (check_args(vm, "strip", argc, kwargs, 1, 1) < 0 || want_string(vm, "strip", "", args[0], &s) < 0) return -1;
    const char *p = s->chars, *end = s->chars + s->len;
    while (p < end && is_space(*p)) p++;
    while (end > p && is_space(end[-1])) end--;
    if (p == s->chars && end == s->chars + s->len) {
        *out = args[0];
        return 0;
    }
    return ret_string(vm, out, p, (size_t)(end - p));
}

static int change_case(struct VM *vm, const char *fn, int argc, Value *args, ObjMap *kwargs, Value *out, bool upper)
{
    ObjString *s = NULL;
    if (check_args(vm, fn, argc, kwargs, 1, 1) < 0 || want_string(vm, fn, "", args[0], &s) < 0) return -1;
    ObjString *r = str_alloc(vm_heap(vm), s->len, s->nchars);  /* ASCII-only mapping keeps the count */
    if (!r) return oom(vm);
    char lo = upper ? 'a' : 'A', hi = upper ? 'z' : 'Z';
    for (size_t i = 0; i < s->len; i++) {
        char c = s->chars[i];
        r->chars[i] = c >= lo && c <= hi ? (char)(c ^ 0x20) : c;
    }
    *out = val_obj(r);
    return 0;
}

static int bi_lower(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    return change_case(vm, "lower", argc, args, kwargs, out, false);
}

static int bi_upper(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    return change_case(vm, "upper", argc, args, kwargs, out, true);
}

static int bi_replace(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjString *s = NULL, *old = NULL, *new_ = NULL;
    if (check_args(vm, "replace", argc, kwargs, 3, 3) < 0 || want_string(vm, "replace", "", args[0], &s) < 0 ||
        want_string(vm, "replace", "old text", args[1], &old) < 0 ||
        want_string(vm, "replace", "new text", args[2], &new_) < 0)
        return -1;
    StrBuf b;
    sb_init(&b);
    const char *p = s->chars, *end = s->chars + s->len;
    if (old->len == 0) {
        /* as in Python: the new text goes before every character and at the end */
        sb_append(&b, new_->chars, new_->len);
        while (p < end) {
            size_t n = char_len((unsigned char)*p);
            if (n > (size_t)(end - p)) n = (size_t)(end - p);
            sb_append(&b, p, n);
            sb_append(&b, new_->chars, new_->len);
            p += n;
        }
        return ret_buf(vm, out, &b);
    }
    for (;;) {
        const char *hit = memmem(p, (size_t)(end - p), old->chars, old->len);
        if (!hit) break;
        sb_append(&b, p, (size_t)(hit - p));
        sb_append(&b, new_->chars, new_->len);
        p = hit + old->len;
    }
    sb_append(&b, p, (size_t)(end - p));
    return ret_buf(vm, out, &b);
}

static int bi_contains(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "contains", argc, kwargs, 2, 2) < 0) return -1;
    Value hay = args[0], needle = args[1];
    if (VAL_IS_STRING(hay)) {
        ObjString *sub = NULL;
        if (want_string(vm, "contains", "to look for in a string", needle, &sub) < 0) return -1;
        *out = val_bool(memmem(AS_STRING(hay)->chars, AS_STRING(hay)->len, sub->chars, sub->len) != NULL);
        return 0;
    }
    if (VAL_IS_LIST(hay)) {
        ObjList *l = AS_LIST(hay);
        bool found = false;
        for (size_t i = 0; i < l->len && !found; i++) found = val_equal(l->items[i], needle);
        *out = val_bool(found);
        return 0;
    }
    if (VAL_IS_MAP(hay)) {
        *out = val_bool(map_key_ok(needle) && map_get(AS_MAP(hay), needle, NULL));
        return 0;
    }
    return vm_raise(vm, "contains() takes a string, list or map, not %s", val_type_name(hay));
}

static int affix(struct VM *vm, const char *fn, int argc, Value *args, ObjMap *kwargs, Value *out, bool at_end)
{
    ObjString *s = NULL, *p = NULL;
    if (check_args(vm, fn, argc, kwargs, 2, 2) < 0 || want_string(vm, fn, "", args[0], &s) < 0 ||
        want_string(vm, fn, at_end ? "suffix" : "prefix", args[1], &p) < 0)
        return -1;
    bool ok = p->len <= s->len &&
              memcmp(at_end ? s->chars + s->len - p->len : s->chars, p->chars, p->len) == 0;
    *out = val_bool(ok);
    return 0;
}

static int bi_startswith(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    return affix(vm, "startswith", argc, args, kwargs, out, false);
}

static int bi_endswith(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    return affix(vm, "endswith", argc, args, kwargs, out, true);
}

static int bi_format(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjString *f = NULL;
    if (check_args(vm, "format", argc, kwargs, 1, -1) < 0 || want_string(vm, "format", "format", args[0], &f) < 0)
        return -1;
    StrBuf b;
    sb_init(&b);
    int next = 1;
    const char *p = f->chars, *end = f->chars + f->len;
    while (p < end) {
        if (p + 1 < end && ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}'))) {
            sb_appendc(&b, *p);
            p += 2;
        } else if (p + 1 < end && p[0] == '{' && p[1] == '}') {
            if (next >= argc) {
                sb_free(&b);
                return vm_raise(vm, "format() has more {} placeholders than arguments (%d)", argc - 1);
            }
            val_to_text(&b, args[next++]);
            p += 2;
        } else {
            sb_appendc(&b, *p++);
        }
    }
    if (next < argc) {
        sb_free(&b);
        return vm_raise(vm, "format() got %d arguments for %d {} placeholders", argc - 1, next - 1);
    }
    return ret_buf(vm, out, &b);
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */

static int bi_json_encode(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "json_encode", argc, kwargs, 1, 1) < 0) return -1;
    StrBuf b;
    sb_init(&b);
    Value bad = val_nil();
    if (json_encode(&b, args[0], JSON_STRICT, &bad) < 0) {
        sb_free(&b);
        if (bad.type == V_FLOAT) {
            sb_init(&b);
            fmt_double(&b, bad.as.f);
            int rc = vm_raise(vm, "json_encode() cannot encode %s", b.data);
            sb_free(&b);
            return rc;
        }
        if (VAL_IS_LIST(bad) || VAL_IS_MAP(bad))
            return vm_raise(vm, "json_encode() cannot encode a %s nested this deeply (does it contain itself?)",
                            val_type_name(bad));
        if (VAL_IS_STRING(bad) || VAL_IS_STATE(bad))
            return vm_raise(vm, "json_encode() cannot encode a %s that is not valid UTF-8", val_type_name(bad));
        return vm_raise(vm, "json_encode() cannot encode a %s", val_type_name(bad));
    }
    if (!b.data) sb_append(&b, "", 0);
    return ret_buf(vm, out, &b);
}

static int bi_json_decode(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjString *s = NULL;
    if (check_args(vm, "json_decode", argc, kwargs, 1, 1) < 0 ||
        want_string(vm, "json_decode", "", args[0], &s) < 0)
        return -1;
    JsonError err;
    if (json_decode(vm_heap(vm), s->chars, s->len, out, &err) < 0)
        return vm_raise(vm, "json_decode(): invalid JSON at line %d, column %d: %s", err.line, err.col, err.msg);
    return 0;
}

/* ------------------------------------------------------------------ */
/* regex                                                               */

static pcre2_code *regex_compile(struct VM *vm, const char *fn, const ObjString *src)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src->chars, src->len, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        vm_raise(vm, "%s(): bad regex at offset %zu: %s", fn, (size_t)off, (const char *)msg);
    }
    return re;
}

/* The compiled form of a regex argument. *owned tells whether the caller
 * must free it (plain strings) or the ObjRegex keeps it. */
static pcre2_code *regex_arg(struct VM *vm, const char *fn, Value v, bool *owned)
{
    *owned = false;
    if (val_is_obj_type(v, OBJ_REGEX)) {
        ObjRegex *r = (ObjRegex *)v.as.obj;
        if (!r->code) {
            if (!r->source) {
                vm_raise(vm, "%s(): regex has no source", fn);
                return NULL;
            }
            r->code = regex_compile(vm, fn, r->source);
        }
        return r->code;
    }
    if (VAL_IS_STRING(v)) {
        *owned = true;
        return regex_compile(vm, fn, AS_STRING(v));
    }
    vm_raise(vm, "%s() takes a regex or string as the pattern, not %s", fn, val_type_name(v));
    return NULL;
}

static int match_error(struct VM *vm, const char *fn, int rc)
{
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return vm_raise(vm, "%s(): %s", fn, (const char *)msg);
}

static int bi_match(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjString *s = NULL;
    if (check_args(vm, "match", argc, kwargs, 2, 2) < 0 || want_string(vm, "match", "subject", args[1], &s) < 0)
        return -1;
    bool owned;
    pcre2_code *re = regex_arg(vm, "match", args[0], &owned);
    if (!re) return -1;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int status = 0;
    if (!md) {
        status = oom(vm);
        goto done;
    }
    int rc = pcre2_match(re, (PCRE2_SPTR)s->chars, s->len, 0, 0, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) {
        *out = val_nil();
        goto done;
    }
    if (rc < 0) {
        status = match_error(vm, "match", rc);
        goto done;
    }
    uint32_t groups = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    ObjList *l = new_list(vm, groups + 1);
    if (!l) {
        status = -1;
        goto done;
    }
    *out = val_obj(l);
    for (uint32_t g = 0; g <= groups; g++) {
        if ((int)g >= rc || ov[2 * g] == PCRE2_UNSET) {
            list_push(l, val_nil());
            continue;
        }
        if (push_piece(vm, l, s->chars + ov[2 * g], ov[2 * g + 1] - ov[2 * g]) < 0) {
            status = -1;
            goto done;
        }
    }
done:
    pcre2_match_data_free(md);
    if (owned) pcre2_code_free(re);
    return status;
}

static int bi_find_all(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjString *s = NULL;
    if (check_args(vm, "find_all", argc, kwargs, 2, 2) < 0 ||
        want_string(vm, "find_all", "subject", args[1], &s) < 0)
        return -1;
    bool owned;
    pcre2_code *re = regex_arg(vm, "find_all", args[0], &owned);
    if (!re) return -1;
    int status = 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    ObjList *l = md ? new_list(vm, 0) : NULL;
    if (!l) {
        status = md ? -1 : oom(vm);
        goto done;
    }
    *out = val_obj(l);
    PCRE2_SIZE start = 0;
    uint32_t flags = 0;
    while (start <= s->len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s->chars, s->len, start, flags, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) {
            if (flags == 0) break;
            /* no non-empty match here after an empty one: step one character */
            flags = 0;
            start += start < s->len ? char_len((unsigned char)s->chars[start]) : 1;
            continue;
        }
        if (rc < 0) {
            status = match_error(vm, "find_all", rc);
            goto done;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (push_piece(vm, l, s->chars + ov[0], ov[1] - ov[0]) < 0) {
            status = -1;
            goto done;
        }
        /* after an empty match, look for a non-empty one at the same place
         * before moving on (Perl's and Python's rule) */
        flags = ov[0] == ov[1] ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
        start = ov[1];
    }
done:
    pcre2_match_data_free(md);
    if (owned) pcre2_code_free(re);
    return status;
}

static int bi_sub(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjString *repl = NULL, *s = NULL;
    if (check_args(vm, "sub", argc, kwargs, 3, 3) < 0 || want_string(vm, "sub", "replacement", args[1], &repl) < 0 ||
        want_string(vm, "sub", "subject", args[2], &s) < 0)
        return -1;
    bool owned;
    pcre2_code *re = regex_arg(vm, "sub", args[0], &owned);
    if (!re) return -1;
    uint32_t opts = PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_UNSET_EMPTY | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH;
    PCRE2_SIZE cap = s->len * 2 + repl->len + 64;
    int status = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *buf = malloc(cap + 1);
        if (!buf) {
            status = oom(vm);
            break;
        }
        PCRE2_SIZE outlen = cap;
        int rc = pcre2_substitute(re, (PCRE2_SPTR)s->chars, s->len, 0, opts, NULL, NULL, (PCRE2_SPTR)repl->chars,
                                  repl->len, (PCRE2_UCHAR *)buf, &outlen);
        if (rc >= 0) {
            status = ret_string(vm, out, buf, outlen);
            free(buf);
            break;
        }
        free(buf);
        if (rc == PCRE2_ERROR_NOMEMORY && attempt == 0) {
            cap = outlen;  /* the length it needs */
            continue;
        }
        status = match_error(vm, "sub", rc);
        break;
    }
    if (owned) pcre2_code_free(re);
    return status;
}

/* ------------------------------------------------------------------ */
/* numbers, ordering                                                   */

static bool is_number(Value v) { return v.type == V_INT || v.type == V_FLOAT; }

/* Orders two numbers or two strings (by code point: UTF-8 byte order is
 * code point order). Returns -1/0/1, or 2 when they cannot be compared. */
static int order(Value a, Value b)
{
    if (a.type == V_INT && b.type == V_INT) return (a.as.i > b.as.i) - (a.as.i < b.as.i);
    if (is_number(a) && is_number(b)) {
        /* long double holds every int64 exactly on x86-64; elsewhere this is
         * as exact as double */
        long double x = a.type == V_INT ? (long double)a.as.i : (long double)a.as.f;
        long double y = b.type == V_INT ? (long double)b.as.i : (long double)b.as.f;
        if (x < y) return -1;
        if (x > y) return 1;
        return 0;  /* equal, or NaN: NaN sorts wherever it lands */
    }
    if (VAL_IS_STRING(a) && VAL_IS_STRING(b)) {
        const ObjString *s = AS_STRING(a), *t = AS_STRING(b);
        size_t n = s->len < t->len ? s->len : t->len;
        int c = memcmp(s->chars, t->chars, n);
        if (c) return c < 0 ? -1 : 1;
        return (s->len > t->len) - (s->len < t->len);
    }
    return 2;
}

/* Items must be all numbers or all strings. */
static int check_sortable(struct VM *vm, const char *fn, const Value *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_number(items[i]) && !VAL_IS_STRING(items[i]))
            return vm_raise(vm, "%s() can only compare numbers or strings, not %s", fn, val_type_name(items[i]));
        if (i > 0 && order(items[0], items[i]) == 2)
            return vm_raise(vm, "%s() cannot compare %s with %s", fn, val_type_name(items[0]), val_type_name(items[i]));
    }
    return 0;
}

static int extreme(struct VM *vm, const char *fn, int argc, Value *args, ObjMap *kwargs, Value *out, int sign)
{
    if (check_args(vm, fn, argc, kwargs, 1, -1) < 0) return -1;
    const Value *items = args;
    size_t n = (size_t)argc;
    if (argc == 1 && VAL_IS_LIST(args[0])) {
        items = AS_LIST(args[0])->items;
        n = AS_LIST(args[0])->len;
        if (n == 0) return vm_raise(vm, "%s() of an empty list", fn);
    }
    if (check_sortable(vm, fn, items, n) < 0) return -1;
    Value best = items[0];
    for (size_t i = 1; i < n; i++)
        if (order(items[i], best) == sign) best = items[i];
    *out = best;
    return 0;
}

static int bi_min(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    return extreme(vm, "min", argc, args, kwargs, out, -1);
}

static int bi_max(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    return extreme(vm, "max", argc, args, kwargs, out, 1);
}

static int bi_abs(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "abs", argc, kwargs, 1, 1) < 0) return -1;
    Value v = args[0];
    if (v.type == V_INT) {
        if (v.as.i == INT64_MIN) return vm_raise(vm, "integer overflow in abs()");
        *out = val_int(v.as.i < 0 ? -v.as.i : v.as.i);
        return 0;
    }
    if (v.type == V_FLOAT) {
        *out = val_float(fabs(v.as.f));
        return 0;
    }
    return vm_raise(vm, "abs() takes a number, not %s", val_type_name(v));
}

static int bi_round(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "round", argc, kwargs, 1, 1) < 0) return -1;
    Value v = args[0];
    if (v.type == V_INT) {
        *out = v;
        return 0;
    }
    if (v.type != V_FLOAT) return vm_raise(vm, "round() takes a number, not %s", val_type_name(v));
    int64_t i;
    if (float_to_int(vm, "round", round(v.as.f), &i) < 0) return -1;  /* C round(): halves away from zero */
    *out = val_int(i);
    return 0;
}

/* Stable merge sort; items are already known to be comparable. */
static void merge_sort(Value *a, Value *tmp, size_t n)
{
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(a, tmp, h);
    merge_sort(a + h, tmp, n - h);
    if (order(a[h - 1], a[h]) <= 0) return;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = order(a[j], a[i]) < 0 ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof(Value));
}

static int bi_sort(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    ObjList *src = NULL;
    if (check_args(vm, "sort", argc, kwargs, 1, 1) < 0 || want_list(vm, "sort", args[0], &src) < 0) return -1;
    if (check_sortable(vm, "sort", src->items, src->len) < 0) return -1;
    ObjList *l = new_list(vm, src->len);
    if (!l) return -1;
    if (src->len) {
        Value *tmp = malloc(src->len * sizeof(Value));
        if (!tmp || l->cap < src->len) {
            free(tmp);
            return oom(vm);
        }
        memcpy(l->items, src->items, src->len * sizeof(Value));
        l->len = src->len;
        merge_sort(l->items, tmp, l->len);
        free(tmp);
    }
    *out = val_obj(l);
    return 0;
}

static int bi_error(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out)
{
    if (check_args(vm, "error", argc, kwargs, 1, 1) < 0) return -1;
    StrBuf b;
    sb_init(&b);
    val_to_text(&b, args[0]);
    int rc = vm_raise(vm, "%s", b.data ? b.data : "");
    sb_free(&b);
    *out = val_nil();
    return rc;
}
