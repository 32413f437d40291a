/*
 * vm/value.c — values, heap objects, the mark-and-sweep heap, strings,
 * lists, ordered maps, equality, hashing and the §3 printing rules.
 *
 * Owns every heap object's memory (and what hangs off it: list items, map
 * tables, state text/segments, compiled PCRE2 code). Does not own the
 * function prototypes a closure points at (the program owns those), nor the
 * backend's token record on a state (kept by reference count through its
 * own retain/release, runtime/rt.h).
 *
 * Accounting: heap->bytes_allocated grows by every object's size and by the
 * payload it is created with; growth of a list/map/state afterwards is not
 * seen until the next collection, which recomputes the exact live size.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "vm/value.h"

#include "runtime/rt.h"
#include "vm/json.h"

#include <math.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GC_MIN_NEXT ((size_t)1 << 20)
/* How many objects ahead the sweep (and the marking of a list) prefetches. */
#define SWEEP_AHEAD 8

/* ------------------------------------------------------------------ */
/* hooks                                                               */

static const char *(*proto_namer)(const struct Proto *);

void val_set_proto_namer(const char *(*fn)(const struct Proto *proto)) { proto_namer = fn; }

/* ------------------------------------------------------------------ */
/* heap                                                                */

typedef struct {
    Obj **items;
    size_t len, cap;
} GrayStack;

void heap_init(Heap *h)
{
    h->objects = NULL;
    h->nobjects = h->cap_objects = 0;
    h->bytes_allocated = 0;
    h->next_gc = GC_MIN_NEXT;
}

/* Registers a fresh object with the heap; frees it and returns NULL when
 * the object table cannot grow. */
static void *obj_link(Heap *h, Obj *o, size_t size, ObjType type)
{
    if (!o) return NULL;
    if (h->nobjects == h->cap_objects) {
        size_t cap = h->cap_objects ? h->cap_objects * 2 : 1024;
        Obj **objects = realloc(h->objects, cap * sizeof(Obj *));
        if (!objects) {
            free(o);
            return NULL;
        }
        h->objects = objects;
        h->cap_objects = cap;
    }
    o->type = type;
    o->marked = false;
    h->objects[h->nobjects++] = o;
    h->bytes_allocated += size;
    return o;
}

void *heap_alloc_obj(Heap *h, size_t size, ObjType type) { return obj_link(h, calloc(1, size), size, type); }

/* A string object with room for len bytes and the NUL; the payload is not
 * zeroed (the caller fills it), which matters for long strings. */
static ObjString *alloc_string(Heap *h, size_t len)
{
    size_t size = sizeof(ObjString) + len + 1;
    ObjString *s = obj_link(h, malloc(size), size, OBJ_STRING);
    if (s) {
        s->len = len;
        s->chars[len] = '\0';
    }
    return s;
}

/* Bytes an object holds right now, including what hangs off it. */
static size_t obj_size(const Obj *o)
{
    switch (o->type) {
    case OBJ_STRING: return sizeof(ObjString) + ((const ObjString *)o)->len + 1;
    case OBJ_LIST: return sizeof(ObjList) + ((const ObjList *)o)->cap * sizeof(Value);
    case OBJ_MAP: {
        const ObjMap *m = (const ObjMap *)o;
        return sizeof(ObjMap) + m->cap_entries * sizeof(MapEntry) + m->index_cap * sizeof(int32_t);
    }
    case OBJ_CLOSURE:
        return sizeof(ObjClosure) + (size_t)((const ObjClosure *)o)->nupvals * sizeof(ObjUpvalue *);
    case OBJ_UPVALUE: return sizeof(ObjUpvalue);
    case OBJ_NATIVE: return sizeof(ObjNative);
    case OBJ_STATE: {
        const ObjState *s = (const ObjState *)o;
        return sizeof(ObjState) + s->cap + (size_t)s->cap_segs * sizeof(StateSegment);
    }
    case OBJ_REGEX: return sizeof(ObjRegex);
    case OBJ_GRAMMAR: return sizeof(ObjGrammar);
    case OBJ_MODULE: return sizeof(ObjModule);
    case OBJ_TYPE_COUNT: break;
    }
    return 0;
}

static void obj_free(Obj *o)
{
    switch (o->type) {
    case OBJ_LIST: free(((ObjList *)o)->items); break;
    case OBJ_MAP:
        free(((ObjMap *)o)->entries);
        free(((ObjMap *)o)->index);
        break;
    case OBJ_STATE: {
        ObjState *s = (ObjState *)o;
        free(s->text);
        free(s->segs);
        if (s->tokens) s->tokens->release(s->tokens);
        break;
    }
    case OBJ_REGEX:
        if (((ObjRegex *)o)->code) pcre2_code_free((pcre2_code *)((ObjRegex *)o)->code);
        break;
    default: break;
    }
    free(o);
}

void heap_free_all(Heap *h)
{
    for (size_t i = 0; i < h->nobjects; i++) obj_free(h->objects[i]);
    free(h->objects);
    heap_init(h);
}

/* Objects without references to other objects: marking them is all there
 * is to do, so they never go on the gray stack. */
static bool obj_is_leaf(ObjType t) { return t == OBJ_STRING || t == OBJ_NATIVE; }

void heap_mark_obj(Obj *o, void *gray)
{
    if (!o || o->marked) return;
    o->marked = true;
    if (obj_is_leaf(o->type)) return;
    GrayStack *g = gray;
    if (g->len == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 256;
        Obj **items = realloc(g->items, cap * sizeof(Obj *));
        if (!items) return;  /* cannot trace further; the object stays marked */
        g->items = items;
        g->cap = cap;
    }
    g->items[g->len++] = o;
}

void heap_mark_value(Value v, void *gray)
{
    if (v.type == V_OBJ) heap_mark_obj(v.as.obj, gray);
}

static void trace(Obj *o, GrayStack *g)
{
    switch (o->type) {
    case OBJ_LIST: {
        ObjList *l = (ObjList *)o;
        for (size_t i = 0; i < l->len; i++) {
            if (i + SWEEP_AHEAD < l->len && l->items[i + SWEEP_AHEAD].type == V_OBJ)
                __builtin_prefetch(l->items[i + SWEEP_AHEAD].as.obj);  /* long lists: overlap the misses */
            heap_mark_value(l->items[i], g);
        }
        break;
    }
    case OBJ_MAP: {
        ObjMap *m = (ObjMap *)o;
        for (size_t i = 0; i < m->nentries; i++) {
            if (!m->entries[i].live) continue;
            heap_mark_value(m->entries[i].key, g);
            heap_mark_value(m->entries[i].value, g);
        }
        break;
    }
    case OBJ_CLOSURE: {
        ObjClosure *c = (ObjClosure *)o;
        heap_mark_obj(c->module, g);
        for (int i = 0; i < c->nupvals; i++) heap_mark_obj((Obj *)c->upvals[i], g);
        break;
    }
    case OBJ_UPVALUE: heap_mark_value(((ObjUpvalue *)o)->closed, g); break;
    case OBJ_STATE: {
        ObjState *s = (ObjState *)o;
        heap_mark_obj((Obj *)s->vars, g);
        heap_mark_obj((Obj *)s->meta, g);
        heap_mark_obj((Obj *)s->logprobs, g);
        break;
    }
    case OBJ_REGEX: heap_mark_obj((Obj *)((ObjRegex *)o)->source, g); break;
    case OBJ_GRAMMAR:
        heap_mark_obj((Obj *)((ObjGrammar *)o)->name, g);
        heap_mark_obj((Obj *)((ObjGrammar *)o)->source, g);
        break;
    case OBJ_MODULE:
        heap_mark_obj((Obj *)((ObjModule *)o)->path, g);
        heap_mark_obj((Obj *)((ObjModule *)o)->exports, g);
        break;
    default: break;
    }
}

void heap_collect(Heap *h, void (*mark_roots)(void *ud, void *gray), void *ud)
{
    GrayStack g = {0};
    if (mark_roots) mark_roots(ud, &g);
    while (g.len > 0) trace(g.items[--g.len], &g);
    free(g.items);

    /* Sweep, compacting the survivors in place (allocation order is kept).
     * Prefetching a few objects ahead keeps several misses in flight. */
    size_t live = 0, n = h->nobjects, kept = 0;
    Obj **objs = h->objects;
    for (size_t i = 0; i < n; i++) {
        if (i + SWEEP_AHEAD < n) __builtin_prefetch(objs[i + SWEEP_AHEAD]);
        Obj *o = objs[i];
        if (o->marked) {
            o->marked = false;
            live += obj_size(o);
            objs[kept++] = o;
        } else {
            obj_free(o);
        }
    }
    h->nobjects = kept;
    if (h->cap_objects > 4096 && kept < h->cap_objects / 4) {  /* give back a table that emptied */
        size_t cap = kept * 2 > 1024 ? kept * 2 : 1024;
        Obj **shrunk = realloc(objs, cap * sizeof(Obj *));
        if (shrunk) {
            h->objects = shrunk;
            h->cap_objects = cap;
        }
    }
    h->bytes_allocated = live;
    h->next_gc = live * 2 > GC_MIN_NEXT ? live * 2 : GC_MIN_NEXT;
}

size_t heap_measure(Heap *h, void (*mark_roots)(void *ud, void *gray), void *ud)
{
    GrayStack g = {0};
    if (mark_roots) mark_roots(ud, &g);
    while (g.len > 0) trace(g.items[--g.len], &g);
    free(g.items);
    size_t live = 0;
    for (size_t i = 0; i < h->nobjects; i++) {
        Obj *o = h->objects[i];
        if (!o->marked) continue;
        o->marked = false;
        live += obj_size(o);
    }
    return live;
}

/* ------------------------------------------------------------------ */
/* strings                                                             */

static uint32_t hash_u64(uint64_t x);

/* Eight bytes per step (multiply-xorshift), then a full avalanche. Never 0:
 * ObjString.hash uses 0 for "not computed yet". */
static uint32_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    uint64_t tail = 0;
    if (len > i) memcpy(&tail, s + i, len - i);
    h = (h ^ tail) * 0xc4ceb9fe1a85ec53ULL;
    uint32_t r = hash_u64(h);
    return r ? r : 1;
}

/* Strings are hashed on first use as a map key, not at creation: most
 * strings a program builds (pieces, `+=` accumulators) never become keys,
 * and hashing a long string costs as much as copying it. */
uint32_t str_hash(ObjString *s)
{
    if (s->hash == 0) s->hash = hash_bytes(s->chars, s->len);
    return s->hash;
}

ObjString *str_new(Heap *h, const char *s, size_t len)
{
    ObjString *str = alloc_string(h, len);
    if (!str) return NULL;
    if (len) memcpy(str->chars, s, len);
    str->nchars = utf8_count(s, len);
    str->hash = 0;
    return str;
}

ObjString *str_alloc(Heap *h, size_t len, size_t nchars)
{
    ObjString *str = alloc_string(h, len);
    if (!str) return NULL;
    str->nchars = nchars;
    str->hash = 0;
    return str;
}

ObjString *str_cstr(Heap *h, const char *s) { return str_new(h, s, strlen(s)); }

ObjString *str_concat(Heap *h, const ObjString *a, const ObjString *b)
{
    size_t len = a->len + b->len;
    ObjString *str = alloc_string(h, len);
    if (!str) return NULL;
    memcpy(str->chars, a->chars, a->len);
    memcpy(str->chars + a->len, b->chars, b->len);
    str->nchars = a->nchars + b->nchars;
    str->hash = 0;
    return str;
}

ObjString *sb_to_string(Heap *h, StrBuf *b)
{
    ObjString *s = str_new(h, b->data ? b->data : "", b->len);
    sb_free(b);
    return s;
}

/* ------------------------------------------------------------------ */
/* lists                                                               */

ObjList *list_new(Heap *h, size_t cap)
{
    ObjList *l = heap_alloc_obj(h, sizeof(ObjList), OBJ_LIST);
    if (!l) return NULL;
    if (cap) {
        l->items = malloc(cap * sizeof(Value));
        if (l->items) {
            l->cap = cap;
            h->bytes_allocated += cap * sizeof(Value);
        }
    }
    return l;
}

void list_push(ObjList *l, Value v)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        Value *items = realloc(l->items, cap * sizeof(Value));
        if (!items) return;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->len++] = v;
}

/* ------------------------------------------------------------------ */
/* hashing and equality                                                */

static uint32_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

/* A float holding an integer value in int64 range, as that integer. */
static bool float_as_int(double f, int64_t *out)
{
    if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0)) return false;
    if (f != floor(f)) return false;
    *out = (int64_t)f;
    return true;
}

uint32_t val_hash(Value v)
{
    switch (v.type) {
    case V_NIL: return 0x9e3779b9u;
    case V_BOOL: return v.as.b ? 0x85ebca6bu : 0xc2b2ae35u;
    case V_INT: return hash_u64((uint64_t)v.as.i);
    case V_FLOAT: {
        int64_t i;
        /* equal values hash alike: 1 == 1.0 and 0 == -0.0 */
        if (float_as_int(v.as.f, &i)) return hash_u64((uint64_t)i);
        uint64_t bits;
        memcpy(&bits, &v.as.f, sizeof bits);
        return hash_u64(bits);
    }
    case V_OBJ:
        if (v.as.obj->type == OBJ_STRING) return str_hash((ObjString *)v.as.obj);
        return hash_u64((uint64_t)(uintptr_t)v.as.obj);
    }
    return 0;
}

static bool equal_depth(Value a, Value b, int depth);

static bool map_equal(const ObjMap *a, const ObjMap *b, int depth)
{
    if (a->count != b->count) return false;
    for (size_t i = 0; i < a->nentries; i++) {
        const MapEntry *e = &a->entries[i];
        if (!e->live) continue;
        Value other;
        if (!map_get(b, e->key, &other)) return false;
        if (!equal_depth(e->value, other, depth + 1)) return false;
    }
    return true;
}

static bool equal_depth(Value a, Value b, int depth)
{
    if (a.type == V_INT && b.type == V_FLOAT) {
        int64_t i;
        return float_as_int(b.as.f, &i) && i == a.as.i;
    }
    if (a.type == V_FLOAT && b.type == V_INT) return equal_depth(b, a, depth);
    if (a.type != b.type) return false;
    switch (a.type) {
    case V_NIL: return true;
    case V_BOOL: return a.as.b == b.as.b;
    case V_INT: return a.as.i == b.as.i;
    case V_FLOAT: return a.as.f == b.as.f;
    case V_OBJ: break;
    }
    Obj *x = a.as.obj, *y = b.as.obj;
    if (x == y) return true;
    if (x->type != y->type) return false;
    if (depth > VAL_MAX_DEPTH) return false;
    switch (x->type) {
    case OBJ_STRING: {
        const ObjString *s = (const ObjString *)x, *t = (const ObjString *)y;
        if (s->len != t->len) return false;
        if (s->hash && t->hash && s->hash != t->hash) return false;  /* only when both are known */
        return memcmp(s->chars, t->chars, s->len) == 0;
    }
    case OBJ_LIST: {
        const ObjList *l = (const ObjList *)x, *m = (const ObjList *)y;
        if (l->len != m->len) return false;
        for (size_t i = 0; i < l->len; i++)
            if (!equal_depth(l->items[i], m->items[i], depth + 1)) return false;
        return true;
    }
    case OBJ_MAP: return map_equal((const ObjMap *)x, (const ObjMap *)y, depth);
    default: return false;
    }
}

bool val_equal(Value a, Value b) { return equal_depth(a, b, 0); }

/* ------------------------------------------------------------------ */
/* maps                                                                */

ObjMap *map_new(Heap *h) { return heap_alloc_obj(h, sizeof(ObjMap), OBJ_MAP); }

bool map_key_ok(Value key)
{
    switch (key.type) {
    case V_NIL: case V_BOOL: case V_INT: return true;
    case V_FLOAT: return !isnan(key.as.f);  /* NaN equals nothing, so it could never be found */
    case V_OBJ: return key.as.obj->type == OBJ_STRING;
    }
    return false;
}

/* Index slot holding `key`, or the empty slot where it would go. Slots that
 * point at deleted entries keep probe chains intact (they are tombstones). */
static size_t map_find_slot(const ObjMap *m, Value key, uint32_t hash, bool *found)
{
    size_t mask = m->index_cap - 1;
    size_t i = hash & mask;
    for (;;) {
        int32_t e = m->index[i];
        if (e < 0) {
            *found = false;
            return i;
        }
        const MapEntry *ent = &m->entries[e];
        if (ent->live && ent->hash == hash && val_equal(ent->key, key)) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static void map_rebuild_index(ObjMap *m, size_t index_cap)
{
    int32_t *index = malloc(index_cap * sizeof(int32_t));
    if (!index) return;
    memset(index, 0xff, index_cap * sizeof(int32_t));
    free(m->index);
    m->index = index;
    m->index_cap = index_cap;
    size_t mask = index_cap - 1;
    for (size_t e = 0; e < m->nentries; e++) {
        if (!m->entries[e].live) continue;
        size_t i = m->entries[e].hash & mask;
        while (index[i] >= 0) i = (i + 1) & mask;
        index[i] = (int32_t)e;
    }
}

/* Makes room for one more entry: drops tombstones when at least a quarter
 * of the entries are dead, otherwise doubles. The index is kept at twice the
 * entry capacity so probes stay short even with tombstones. */
static void map_make_room(ObjMap *m)
{
    if (m->nentries < m->cap_entries) return;
    if (m->nentries - m->count >= m->cap_entries / 4 && m->nentries > 0) {
        size_t j = 0;
        for (size_t i = 0; i < m->nentries; i++)
            if (m->entries[i].live) m->entries[j++] = m->entries[i];
        m->nentries = j;
        map_rebuild_index(m, m->index_cap);
        return;
    }
    size_t cap = m->cap_entries ? m->cap_entries * 2 : 8;
    MapEntry *entries = realloc(m->entries, cap * sizeof(MapEntry));
    if (!entries) return;
    m->entries = entries;
    m->cap_entries = cap;
    map_rebuild_index(m, cap * 2);
}

bool map_get(const ObjMap *m, Value key, Value *out)
{
    if (m->count == 0 || !m->index) return false;
    bool found;
    size_t slot = map_find_slot(m, key, val_hash(key), &found);
    if (found && out) *out = m->entries[m->index[slot]].value;
    return found;
}

void map_set(ObjMap *m, Value key, Value value)
{
    uint32_t hash = val_hash(key);
    bool found = false;
    size_t slot = 0;
    if (m->index) {
        slot = map_find_slot(m, key, hash, &found);
        if (found) {
            m->entries[m->index[slot]].value = value;
            return;
        }
    }
    if (m->nentries >= m->cap_entries) {
        map_make_room(m);  /* rebuilds the index, so look again */
        if (m->nentries >= m->cap_entries) return;  /* out of memory */
        slot = map_find_slot(m, key, hash, &found);
    }
    MapEntry *e = &m->entries[m->nentries];
    e->key = key;
    e->value = value;
    e->hash = hash;
    e->live = true;
    m->index[slot] = (int32_t)m->nentries;
    m->nentries++;
    m->count++;
}

bool map_delete(ObjMap *m, Value key)
{
    if (m->count == 0 || !m->index) return false;
    bool found;
    size_t slot = map_find_slot(m, key, val_hash(key), &found);
    if (!found) return false;
    MapEntry *e = &m->entries[m->index[slot]];
    e->live = false;
    e->key = val_nil();  /* drop references so the collector can free them */
    e->value = val_nil();
    m->count--;
    return true;
}

bool map_get_cstr(const ObjMap *m, const char *key, Value *out)
{
    if (m->count == 0 || !m->index) return false;
    size_t len = strlen(key);
    uint32_t hash = hash_bytes(key, len);
    size_t mask = m->index_cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        int32_t e = m->index[i];
        if (e < 0) return false;
        const MapEntry *ent = &m->entries[e];
        if (ent->live && ent->hash == hash && VAL_IS_STRING(ent->key)) {
            const ObjString *s = AS_STRING(ent->key);
            if (s->len == len && memcmp(s->chars, key, len) == 0) {
                if (out) *out = ent->value;
                return true;
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* printing                                                            */

const char *val_type_name(Value v)
{
    switch (v.type) {
    case V_NIL: return "nil";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_OBJ: break;
    }
    switch (v.as.obj->type) {
    case OBJ_STRING: return "string";
    case OBJ_LIST: return "list";
    case OBJ_MAP: return "map";
    case OBJ_CLOSURE: case OBJ_NATIVE: return "function";
    case OBJ_UPVALUE: return "upvalue";
    case OBJ_STATE: return "state";
    case OBJ_REGEX: return "regex";
    case OBJ_GRAMMAR: return "grammar";
    case OBJ_MODULE: return "module";
    case OBJ_TYPE_COUNT: break;
    }
    return "?";
}

static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Two digits per division, written from the end (str(i) and printing ints
 * are hot enough in real programs that printf's parsing shows). */
size_t fmt_int(char buf[FMT_INT_MAX], int64_t i)
{
    char tmp[FMT_INT_MAX];
    char *p = tmp + FMT_INT_MAX;
    uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;  /* INT64_MIN too */
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--p = digit_pairs[d + 1];
        *--p = digit_pairs[d];
    }
    if (u >= 10) {
        unsigned d = (unsigned)u * 2;
        *--p = digit_pairs[d + 1];
        *--p = digit_pairs[d];
    } else {
        *--p = (char)('0' + u);
    }
    if (i < 0) *--p = '-';
    size_t n = (size_t)(tmp + FMT_INT_MAX - p);
    memcpy(buf, p, n);
    return n;
}

/* The correctly rounded prec-digit decimal of d (d > 0): its digits as an
 * integer and the power of ten of its last digit. */
static void round_digits(double d, int prec, uint64_t *mant, int *scale)
{
    char buf[48];
    snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
    char *e = strchr(buf, 'e');
    uint64_t m = 0;
    for (char *p = buf; p < e; p++)
        if (*p != '.') m = m * 10 + (uint64_t)(*p - '0');
    *mant = m;
    *scale = atoi(e + 1) - (prec - 1);
}

static bool reads_back(uint64_t mant, int scale, double d)
{
    char cand[48];
    snprintf(cand, sizeof cand, "%llue%d", (unsigned long long)mant, scale);
    return strtod(cand, NULL) == d;
}

/* Shortest decimal digits of a finite, positive d that read back as d:
 * writes the digits (no dot) to `digits` and returns their count; *exp10 is
 * the exponent of the first digit (d = d1.d2d3... * 10^(*exp10)).
 * Whether the correctly rounded p-digit decimal reads back is monotone in p,
 * so p is found by bisection. Next to a power of two the rounding interval
 * is lopsided and a neighbour one unit away in the last digit may read back
 * with one digit fewer, so those are tried too. */
static int shortest_digits(double d, char digits[24], int *exp10)
{
    uint64_t mant;
    int scale;
    int lo = 1, hi = 17;  /* 17 digits always read back */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        round_digits(d, mid, &mant, &scale);
        if (reads_back(mant, scale, d)) hi = mid;
        else lo = mid + 1;
    }
    round_digits(d, lo, &mant, &scale);
    if (lo > 1) {
        uint64_t m2;
        int s2;
        round_digits(d, lo - 1, &m2, &s2);
        if (reads_back(m2 + 1, s2, d)) { mant = m2 + 1; scale = s2; }
        else if (m2 > 1 && reads_back(m2 - 1, s2, d)) { mant = m2 - 1; scale = s2; }
    }
    int n = snprintf(digits, 24, "%llu", (unsigned long long)mant);
    *exp10 = scale + n - 1;
    while (n > 1 && digits[n - 1] == '0') n--;
    digits[n] = '\0';
    return n;
}

void fmt_double(StrBuf *b, double d)
{
    if (isnan(d)) { sb_append(b, "NaN", 3); return; }
    if (isinf(d)) {
        if (d < 0) sb_appendc(b, '-');
        sb_append(b, "Infinity", 8);
        return;
    }
    if (d == 0) { sb_appendc(b, '0'); return; }  /* -0 prints as 0, as in JavaScript */
    if (d < 0) {
        sb_appendc(b, '-');
        d = -d;
    }
    if (d < 1e21 && d == floor(d) && d < 9007199254740992.0) {
        char digits[FMT_INT_MAX];  /* integral and exact: the common case, printed directly */
        sb_append(b, digits, fmt_int(digits, (int64_t)d));
        return;
    }
    char digits[24];
    int e, k = shortest_digits(d, digits, &e);
    int n = e + 1;  /* ECMAScript Number::toString: value = 0.digits * 10^n */
    if (k <= n && n <= 21) {
        sb_append(b, digits, (size_t)k);
        for (int i = k; i < n; i++) sb_appendc(b, '0');
    } else if (0 < n && n <= 21) {
        sb_append(b, digits, (size_t)n);
        sb_appendc(b, '.');
        sb_append(b, digits + n, (size_t)(k - n));
    } else if (-6 < n && n <= 0) {
        sb_append(b, "0.", 2);
        for (int i = 0; i < -n; i++) sb_appendc(b, '0');
        sb_append(b, digits, (size_t)k);
    } else {
        sb_appendc(b, digits[0]);
        if (k > 1) {
            sb_appendc(b, '.');
            sb_append(b, digits + 1, (size_t)(k - 1));
        }
        sb_printf(b, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
}

static void closure_name(StrBuf *b, const ObjClosure *c)
{
    const char *name = proto_namer && c->proto ? proto_namer(c->proto) : NULL;
    if (name && *name) sb_printf(b, "<fn %s>", name);
    else sb_append(b, "<fn>", 4);
}

static void render(StrBuf *b, Value v, bool top, int depth)
{
    switch (v.type) {
    case V_NIL: sb_append(b, top ? "nil" : "null", top ? 3 : 4); return;
    case V_BOOL: if (v.as.b) sb_append(b, "true", 4); else sb_append(b, "false", 5); return;
    case V_INT: {
        char digits[FMT_INT_MAX];
        sb_append(b, digits, fmt_int(digits, v.as.i));
        return;
    }
    case V_FLOAT: fmt_double(b, v.as.f); return;
    case V_OBJ: break;
    }
    Obj *o = v.as.obj;
    switch (o->type) {
    case OBJ_STRING: {
        ObjString *s = (ObjString *)o;
        if (top) sb_append(b, s->chars, s->len);
        else json_quote(b, s->chars, s->len);
        return;
    }
    case OBJ_LIST: {
        ObjList *l = (ObjList *)o;
        if (depth >= VAL_MAX_DEPTH) { sb_append(b, "[...]", 5); return; }
        sb_appendc(b, '[');
        for (size_t i = 0; i < l->len; i++) {
            if (i) sb_append(b, ", ", 2);
            render(b, l->items[i], false, depth + 1);
        }
        sb_appendc(b, ']');
        return;
    }
    case OBJ_MAP: {
        ObjMap *m = (ObjMap *)o;
        if (depth >= VAL_MAX_DEPTH) { sb_append(b, "{...}", 5); return; }
        sb_appendc(b, '{');
        bool first = true;
        for (size_t i = 0; i < m->nentries; i++) {
            MapEntry *e = &m->entries[i];
            if (!e->live) continue;
            if (!first) sb_append(b, ", ", 2);
            first = false;
            /* JSON keys are strings: non-string keys are written quoted */
            if (VAL_IS_STRING(e->key)) {
                render(b, e->key, false, depth + 1);
            } else {
                StrBuf k;
                sb_init(&k);
                render(&k, e->key, true, depth + 1);
                json_quote(b, k.data ? k.data : "", k.len);
                sb_free(&k);
            }
            sb_append(b, ": ", 2);
            render(b, e->value, false, depth + 1);
        }
        sb_appendc(b, '}');
        return;
    }
    case OBJ_CLOSURE: closure_name(b, (ObjClosure *)o); return;
    case OBJ_NATIVE: sb_printf(b, "<fn %s>", ((ObjNative *)o)->name ? ((ObjNative *)o)->name : "?"); return;
    case OBJ_UPVALUE: sb_append(b, "<upvalue>", 9); return;
    case OBJ_STATE: {
        /* a state shows as its text, like the string it stands for */
        ObjState *s = (ObjState *)o;
        if (top) sb_append(b, s->text ? s->text : "", s->len);
        else json_quote(b, s->text ? s->text : "", s->len);
        return;
    }
    case OBJ_REGEX: {
        ObjString *src = ((ObjRegex *)o)->source;
        sb_append(b, "re\"", 3);
        if (src) sb_append(b, src->chars, src->len);
        sb_appendc(b, '"');
        return;
    }
    case OBJ_GRAMMAR: {
        ObjString *name = ((ObjGrammar *)o)->name;
        if (name) sb_printf(b, "<grammar %s>", name->chars);
        else sb_append(b, "<grammar>", 9);
        return;
    }
    case OBJ_MODULE: {
        ObjString *path = ((ObjModule *)o)->path;
        if (path) sb_printf(b, "<module %s>", path->chars);
        else sb_append(b, "<module>", 8);
        return;
    }
    case OBJ_TYPE_COUNT: break;
    }
}

void val_to_text(StrBuf *b, Value v) { render(b, v, true, 0); }

void val_to_repr(StrBuf *b, Value v) { render(b, v, false, 0); }

/* ------------------------------------------------------------------ */
/* states                                                              */

static void state_reserve(ObjState *s, size_t extra)
{
    if (s->len + extra + 1 <= s->cap && s->text) return;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < s->len + extra + 1) cap *= 2;
    char *t = realloc(s->text, cap);
    if (!t) return;
    s->text = t;
    s->cap = cap;
}

ObjState *state_new(Heap *h)
{
    ObjState *s = heap_alloc_obj(h, sizeof(ObjState), OBJ_STATE);
    if (!s) return NULL;
    state_reserve(s, 0);
    if (s->text) {
        s->text[0] = '\0';
        h->bytes_allocated += s->cap;
    }
    s->vars = map_new(h);
    s->meta = map_new(h);
    s->logprobs = map_new(h);
    return s;
}

static ObjMap *map_clone(Heap *h, const ObjMap *src)
{
    ObjMap *m = map_new(h);
    if (!m || !src) return m;
    for (size_t i = 0; i < src->nentries; i++)
        if (src->entries[i].live) map_set(m, src->entries[i].key, src->entries[i].value);
    return m;
}

ObjState *state_copy(Heap *h, const ObjState *src)
{
    ObjState *s = heap_alloc_obj(h, sizeof(ObjState), OBJ_STATE);
    if (!s) return NULL;
    state_reserve(s, src->len);
    if (s->text) {
        if (src->len) memcpy(s->text, src->text, src->len);
        s->text[src->len] = '\0';
        s->len = src->len;
        h->bytes_allocated += s->cap;
    }
    if (src->nsegs > 0) {
        s->segs = malloc((size_t)src->nsegs * sizeof(StateSegment));
        if (s->segs) {
            memcpy(s->segs, src->segs, (size_t)src->nsegs * sizeof(StateSegment));
            s->nsegs = s->cap_segs = src->nsegs;
        }
    }
    s->vars = map_clone(h, src->vars);
    s->meta = map_clone(h, src->meta);
    s->logprobs = map_clone(h, src->logprobs);
    state_set_tokens(s, src->tokens);   /* the same text so far: the same ids */
    return s;
}

void state_set_tokens(ObjState *s, RtTokens *t)
{
    if (t) t->retain(t);
    if (s->tokens) s->tokens->release(s->tokens);
    s->tokens = t;
}

void state_append(ObjState *s, const char *text, size_t len)
{
    state_reserve(s, len);
    if (s->len + len + 1 > s->cap) return;
    if (len) memcpy(s->text + s->len, text, len);
    s->len += len;
    s->text[s->len] = '\0';
}
