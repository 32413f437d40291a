/*
 * vm/api_value.c — include/sgl.h's values (sgl_value: arguments and
 * results as C data) and sgl_call, which runs a function with them.
 *
 * An sgl_value is a plain malloc'd tree, apart from every VM: arguments are
 * copied onto the VM heap when a call starts (to_vm), results copied out of
 * it before the run is freed (from_vm), so no pointer into a heap ever
 * reaches the caller. From the VM the rules of JSON results (vm/json.h,
 * JSON_RESULT) apply, except that values keep their kind exactly (an
 * integral float stays a float): what a map, list, string or number cannot
 * hold is its str() text.
 *
 *   sgl_value ──to_vm──► Value on vm_heap ──run──► result Value ──from_vm──► sgl_value
 */
#include "vm/api.h"

#include <stdlib.h>
#include <string.h>

#include "vm/json.h"

struct sgl_value {
    sgl_type type;
    union {
        int b;
        long long i;
        double f;
        struct {
            char *s;          /* NUL-terminated; len bytes before it */
            size_t len;
        } str;
        struct {
            sgl_value **items;
            size_t len, cap;
        } list;
        struct {
            char **keys;      /* NUL-terminated */
            sgl_value **vals;
            size_t len, cap;
        } map;
    } u;
};

static sgl_value *new_value(sgl_type t)
{
    sgl_value *v = calloc(1, sizeof *v);
    if (v) v->type = t;
    return v;
}

sgl_value *sgl_value_nil(void) { return new_value(SGL_NIL); }

sgl_value *sgl_value_bool(int b)
{
    sgl_value *v = new_value(SGL_BOOL);
    if (v) v->u.b = b != 0;
    return v;
}

sgl_value *sgl_value_int(long long i)
{
    sgl_value *v = new_value(SGL_INT);
    if (v) v->u.i = i;
    return v;
}

sgl_value *sgl_value_float(double f)
{
    sgl_value *v = new_value(SGL_FLOAT);
    if (v) v->u.f = f;
    return v;
}

sgl_value *sgl_value_string(const char *s, size_t len)
{
    sgl_value *v = new_value(SGL_STRING);
    if (!v) return NULL;
    v->u.str.s = malloc(len + 1);
    if (!v->u.str.s) {
        free(v);
        return NULL;
    }
    if (len) memcpy(v->u.str.s, s, len);
    v->u.str.s[len] = '\0';
    v->u.str.len = len;
    return v;
}

sgl_value *sgl_value_cstring(const char *s) { return sgl_value_string(s, strlen(s)); }
sgl_value *sgl_value_list(void) { return new_value(SGL_LIST); }
sgl_value *sgl_value_map(void) { return new_value(SGL_MAP); }

void sgl_value_free(sgl_value *v)
{
    if (!v) return;
    switch (v->type) {
    case SGL_STRING: free(v->u.str.s); break;
    case SGL_LIST:
        for (size_t i = 0; i < v->u.list.len; i++) sgl_value_free(v->u.list.items[i]);
        free(v->u.list.items);
        break;
    case SGL_MAP:
        for (size_t i = 0; i < v->u.map.len; i++) {
            free(v->u.map.keys[i]);
            sgl_value_free(v->u.map.vals[i]);
        }
        free(v->u.map.keys);
        free(v->u.map.vals);
        break;
    default: break;
    }
    free(v);
}

sgl_type sgl_value_type(const sgl_value *v) { return v ? v->type : SGL_NIL; }
int sgl_value_as_bool(const sgl_value *v) { return v && v->type == SGL_BOOL && v->u.b; }

long long sgl_value_as_int(const sgl_value *v)
{
    if (!v) return 0;
    if (v->type == SGL_INT) return v->u.i;
    if (v->type == SGL_FLOAT && v->u.f > -9.2e18 && v->u.f < 9.2e18) return (long long)v->u.f;
    return 0;
}

double sgl_value_as_float(const sgl_value *v)
{
    if (!v) return 0;
    if (v->type == SGL_FLOAT) return v->u.f;
    if (v->type == SGL_INT) return (double)v->u.i;
    return 0;
}

const char *sgl_value_as_string(const sgl_value *v, size_t *len)
{
    if (!v || v->type != SGL_STRING) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->u.str.len;
    return v->u.str.s;
}

size_t sgl_value_len(const sgl_value *v)
{
    if (!v) return 0;
    switch (v->type) {
    case SGL_STRING: return v->u.str.len;
    case SGL_LIST: return v->u.list.len;
    case SGL_MAP: return v->u.map.len;
    default: return 0;
    }
}

sgl_status sgl_list_append(sgl_value *list, sgl_value *item)
{
    if (!list || list->type != SGL_LIST || !item) {
        sgl_value_free(item);
        return SGL_ERR_USAGE;
    }
    if (list->u.list.len == list->u.list.cap) {
        size_t cap = list->u.list.cap ? list->u.list.cap * 2 : 4;
        sgl_value **items = realloc(list->u.list.items, cap * sizeof *items);
        if (!items) {
            sgl_value_free(item);
            return SGL_ERR_RUNTIME;
        }
        list->u.list.items = items;
        list->u.list.cap = cap;
    }
    list->u.list.items[list->u.list.len++] = item;
    return SGL_OK;
}

sgl_value *sgl_list_get(const sgl_value *list, size_t i)
{
    if (!list || list->type != SGL_LIST || i >= list->u.list.len) return NULL;
    return list->u.list.items[i];
}

static long map_find(const sgl_value *map, const char *key)
{
    for (size_t i = 0; i < map->u.map.len; i++)
        if (strcmp(map->u.map.keys[i], key) == 0) return (long)i;
    return -1;
}

sgl_status sgl_map_set(sgl_value *map, const char *key, sgl_value *value)
{
    if (!map || map->type != SGL_MAP || !key || !value) {
        sgl_value_free(value);
        return SGL_ERR_USAGE;
    }
    long at = map_find(map, key);
    if (at >= 0) {
        sgl_value_free(map->u.map.vals[at]);
        map->u.map.vals[at] = value;
        return SGL_OK;
    }
    if (map->u.map.len == map->u.map.cap) {
        size_t cap = map->u.map.cap ? map->u.map.cap * 2 : 4;
        char **keys = realloc(map->u.map.keys, cap * sizeof *keys);
        if (keys) map->u.map.keys = keys;
        sgl_value **vals = keys ? realloc(map->u.map.vals, cap * sizeof *vals) : NULL;
        if (!vals) {
            sgl_value_free(value);
            return SGL_ERR_RUNTIME;
        }
        map->u.map.vals = vals;
        map->u.map.cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        sgl_value_free(value);
        return SGL_ERR_RUNTIME;
    }
    map->u.map.keys[map->u.map.len] = k;
    map->u.map.vals[map->u.map.len++] = value;
    return SGL_OK;
}

sgl_value *sgl_map_get(const sgl_value *map, const char *key)
{
    if (!map || map->type != SGL_MAP || !key) return NULL;
    long at = map_find(map, key);
    return at >= 0 ? map->u.map.vals[at] : NULL;
}

const char *sgl_map_key(const sgl_value *map, size_t i)
{
    if (!map || map->type != SGL_MAP || i >= map->u.map.len) return NULL;
    return map->u.map.keys[i];
}

sgl_value *sgl_map_value(const sgl_value *map, size_t i)
{
    if (!map || map->type != SGL_MAP || i >= map->u.map.len) return NULL;
    return map->u.map.vals[i];
}

/* ---- to and from the VM's values ---- */

/* v onto heap h (depth-limited as JSON is); 0, or -1 (*why set). */
static int to_vm(Heap *h, const sgl_value *v, Value *out, int depth, const char **why)
{
    if (depth > VAL_MAX_DEPTH) {
        *why = "arguments nested too deeply";
        return -1;
    }
    switch (v->type) {
    case SGL_NIL: *out = val_nil(); return 0;
    case SGL_BOOL: *out = val_bool(v->u.b); return 0;
    case SGL_INT: *out = val_int(v->u.i); return 0;
    case SGL_FLOAT: *out = val_float(v->u.f); return 0;
    case SGL_STRING: {
        if (!utf8_valid(v->u.str.s, v->u.str.len)) {
            *why = "a string argument is not valid UTF-8";
            return -1;
        }
        ObjString *s = str_new(h, v->u.str.s, v->u.str.len);
        if (!s) break;
        *out = val_obj(s);
        return 0;
    }
    case SGL_LIST: {
        ObjList *l = list_new(h, v->u.list.len);
        if (!l) break;
        *out = val_obj(l);   /* the caller's heap is not collected while we build */
        for (size_t i = 0; i < v->u.list.len; i++) {
            Value item;
            if (to_vm(h, v->u.list.items[i], &item, depth + 1, why) < 0) return -1;
            list_push(l, item);
        }
        return 0;
    }
    case SGL_MAP: {
        ObjMap *m = map_new(h);
        if (!m) break;
        *out = val_obj(m);
        for (size_t i = 0; i < v->u.map.len; i++) {
            const char *key = v->u.map.keys[i];
            if (!utf8_valid(key, strlen(key))) {
                *why = "a map key is not valid UTF-8";
                return -1;
            }
            ObjString *k = str_cstr(h, key);
            Value item;
            if (!k) break;
            if (to_vm(h, v->u.map.vals[i], &item, depth + 1, why) < 0) return -1;
            map_set(m, val_obj(k), item);
        }
        return 0;
    }
    }
    *why = "out of memory";
    return -1;
}

static sgl_value *text_value(Value v)
{
    StrBuf b;
    sb_init(&b);
    val_to_text(&b, v);
    sgl_value *out = b.oom ? NULL : sgl_value_string(b.data ? b.data : "", b.len);
    sb_free(&b);
    return out;
}

static sgl_value *from_vm(Value v, int depth);

static sgl_value *state_value(const ObjState *s, int depth)
{
    sgl_value *m = sgl_value_map();
    if (!m) return NULL;
    sgl_value *vars = s->vars ? from_vm(val_obj(s->vars), depth + 1) : sgl_value_map();
    if (sgl_map_set(m, "text", sgl_value_string(s->text ? s->text : "", s->text ? s->len : 0)) != SGL_OK ||
        sgl_map_set(m, "vars", vars) != SGL_OK) {
        sgl_value_free(m);
        return NULL;
    }
    return m;
}

/* NULL only when out of memory. */
static sgl_value *from_vm(Value v, int depth)
{
    switch (v.type) {
    case V_NIL: return sgl_value_nil();
    case V_BOOL: return sgl_value_bool(v.as.b);
    case V_INT: return sgl_value_int(v.as.i);
    case V_FLOAT: return sgl_value_float(v.as.f);
    case V_OBJ: break;
    }
    if (depth > VAL_MAX_DEPTH) return sgl_value_cstring(VAL_IS_MAP(v) ? "{...}" : "[...]");
    if (VAL_IS_STRING(v)) return sgl_value_string(AS_STRING(v)->chars, AS_STRING(v)->len);
    if (VAL_IS_LIST(v)) {
        const ObjList *l = AS_LIST(v);
        sgl_value *out = sgl_value_list();
        for (size_t i = 0; out && i < l->len; i++) {
            sgl_value *item = from_vm(l->items[i], depth + 1);
            if (!item || sgl_list_append(out, item) != SGL_OK) {
                sgl_value_free(out);
                return NULL;
            }
        }
        return out;
    }
    if (VAL_IS_MAP(v)) {
        const ObjMap *m = AS_MAP(v);
        sgl_value *out = sgl_value_map();
        for (size_t i = 0; out && i < m->nentries; i++) {
            if (!m->entries[i].live) continue;
            Value k = m->entries[i].key;
            StrBuf kb;
            sb_init(&kb);
            val_to_text(&kb, k);
            sgl_value *item = from_vm(m->entries[i].value, depth + 1);
            sgl_status st = kb.oom ? SGL_ERR_RUNTIME : sgl_map_set(out, kb.data ? kb.data : "", item);
            if (kb.oom) sgl_value_free(item);
            sb_free(&kb);
            if (!item || st != SGL_OK) {
                sgl_value_free(out);
                return NULL;
            }
        }
        return out;
    }
    if (VAL_IS_STATE(v)) return state_value(AS_STATE(v), depth);
    return text_value(v);
}

char *sgl_value_to_json(const sgl_value *v)
{
    Heap h;
    heap_init(&h);
    Value x;
    const char *why = NULL;
    char *out = NULL;
    if (v && to_vm(&h, v, &x, 0, &why) == 0) {
        StrBuf b;
        sb_init(&b);
        if (json_encode(&b, x, JSON_STRICT, NULL) == 0 && !b.oom) out = sb_detach(&b);
        else sb_free(&b);
    }
    heap_free_all(&h);
    return out;
}

sgl_status sgl_value_from_json(const char *json, size_t len, sgl_value **out, char *err, size_t errcap)
{
    *out = NULL;
    Heap h;
    heap_init(&h);
    Value v;
    JsonError jerr;
    sgl_status st = SGL_OK;
    if (json_decode(&h, json, len, &v, &jerr) < 0) {
        if (err) snprintf(err, errcap, "<json>:%d:%d: error: %s", jerr.line, jerr.col, jerr.msg);
        st = SGL_ERR_USAGE;
    } else if (!(*out = from_vm(v, 0))) {
        if (err) snprintf(err, errcap, "out of memory");
        st = SGL_ERR_RUNTIME;
    }
    heap_free_all(&h);
    return st;
}

/* ---- sgl_call ---- */

typedef struct {
    sgl_value *result;
} CallOut;

static void take_result(void *ud, VmRun *r)
{
    CallOut *co = ud;
    ObjState *s = vm_run_state(r);
    sgl_value *m = sgl_value_map();
    sgl_value *text = sgl_value_string(s && s->text ? s->text : "", s && s->text ? s->len : 0);
    sgl_value *vars = s && s->vars ? from_vm(val_obj(s->vars), 1) : sgl_value_map();
    sgl_value *value = from_vm(vm_run_value(r), 1);
    if (!m || sgl_map_set(m, "text", text) != SGL_OK || sgl_map_set(m, "vars", vars) != SGL_OK ||
        sgl_map_set(m, "value", value) != SGL_OK) {
        sgl_value_free(m);
        return;
    }
    co->result = m;
}

/* A list of arguments in parameter order. */
static sgl_status bind_list(sgl_vm *vm, const Proto *proto, const sgl_value *list, Value *args, uint64_t *mask)
{
    int nparams = proto ? proto->nparams : 0;
    const char *fname = proto ? proto->name : "the program";
    if (list->u.list.len > (size_t)nparams)
        return fail(vm, SGL_ERR_USAGE, "error: %s() takes %d argument%s, %zu given", fname, nparams,
                    nparams == 1 ? "" : "s", list->u.list.len);
    *mask = 0;
    for (int i = 0; i < nparams; i++) args[i] = val_nil();
    for (size_t i = 0; i < list->u.list.len; i++) {
        const char *why = NULL;
        if (to_vm(vm_heap(vm->vm), list->u.list.items[i], &args[i], 0, &why) < 0)
            return fail(vm, SGL_ERR_USAGE, "error: %s() argument %zu: %s", fname, i + 1, why);
        *mask |= (uint64_t)1 << i;
    }
    uint64_t missing = proto ? proto->required & ~*mask : 0;
    if (missing)
        return fail(vm, SGL_ERR_USAGE, "error: %s() missing argument '%s'", fname,
                    proto->param_names[__builtin_ctzll(missing)]);
    return SGL_OK;
}

sgl_status sgl_call(sgl_vm *vm, sgl_program *prog, const char *fn, const sgl_value *argv, sgl_value **result)
{
    if (result) *result = NULL;
    int slot;
    const Proto *proto;
    Value args[64];
    uint64_t mask = 0;
    sgl_status st = find_entry(vm, prog->prog, fn, &slot, &proto);
    if (st != SGL_OK) return st;
    if (argv && argv->type == SGL_LIST) {
        st = bind_list(vm, proto, argv, args, &mask);
    } else if (!argv || argv->type == SGL_MAP || argv->type == SGL_NIL) {
        Value m = val_nil();
        const char *why = NULL;
        if (argv && argv->type == SGL_MAP && to_vm(vm_heap(vm->vm), argv, &m, 0, &why) < 0)
            return fail(vm, SGL_ERR_USAGE, "error: %s", why);
        char *uerr = bind_map_args(proto, VAL_IS_MAP(m) ? AS_MAP(m) : NULL, args, &mask);
        if (uerr) {
            set_err(vm, uerr);
            st = SGL_ERR_USAGE;
        }
    } else {
        return fail(vm, SGL_ERR_USAGE, "error: sgl_call's arguments must be a map, a list or NULL");
    }
    if (st != SGL_OK) return st;
    CallOut co = {NULL};
    st = run_bound_with(vm, prog, slot, proto, args, mask, NULL, result ? take_result : NULL, &co);
    if (st == SGL_OK && result) {
        if (!co.result) return fail(vm, SGL_ERR_RUNTIME, "error: out of memory");
        *result = co.result;
    }
    return st;
}
