/*
 * vm/value.h — SGL values and heap objects (§3 of the language reference).
 *
 * Owns: the Value representation, every heap object type, the heap (a
 * mark-and-sweep collector over a table of objects), strings, lists,
 * ordered maps, equality, hashing, printing (the str/print rules of §3).
 * JSON reading and writing is vm/json.h.
 * Does not own: the interpreter, fibers, or how roots are found (the VM
 * passes a root-marking callback to heap_collect).
 *
 * Collection happens only when the VM calls heap_collect at a safe point
 * (between instructions, with every live value on a fiber stack or a root).
 * Nothing in this module or in a built-in ever triggers a collection, so C
 * code may hold unrooted objects for as long as it runs.
 *
 *   Value (16 bytes)            heap
 *   +------+-----------+        objects: [Obj*, Obj*, ...]  (nobjects, in
 *   | type | i/f/b/obj |                  allocation order)
 *   +------+-----------+        bytes_allocated, next_gc
 *
 * The heap keeps its objects in an array rather than a list threaded
 * through them: the sweep then reads independent pointers, which the CPU
 * can fetch in parallel, instead of chasing one cache miss after another.
 */
#ifndef SGL_VM_VALUE_H
#define SGL_VM_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/role.h"
#include "base/strbuf.h"
#include "base/utf8.h"

/* The one nesting limit of lists and maps for every walk of a value:
 * printing shows [...] / {...} past it, equality falls back to identity,
 * and JSON reading and writing (vm/json.h) refuse it. Lists and maps can
 * hold themselves; this keeps every walk finite. */
#define VAL_MAX_DEPTH 200

typedef enum { V_NIL, V_BOOL, V_INT, V_FLOAT, V_OBJ } VType;

typedef struct Obj Obj;

/* Read the type as `type`; write it through `tag`, which also fills the
 * four bytes after it. A Value is often written field by field (type, then
 * payload) and soon after copied whole with 8- or 16-byte loads; a load
 * that covers bytes the last store did not write cannot be forwarded from
 * that store and stalls until it retires (about 5% of a call-heavy loop). */
typedef struct Value {
    union {
        VType type;
        uint64_t tag;
    };
    union {
        bool b;
        int64_t i;
        double f;
        Obj *obj;
    } as;
} Value;

typedef enum {
    OBJ_STRING,
    OBJ_LIST,
    OBJ_MAP,
    OBJ_CLOSURE,   /* a function value: proto + captured upvalues */
    OBJ_UPVALUE,
    OBJ_NATIVE,    /* a built-in */
    OBJ_STATE,     /* a prompt state (§4) */
    OBJ_REGEX,
    OBJ_GRAMMAR,
    OBJ_MODULE,    /* an imported module: its exports map */
    OBJ_TYPE_COUNT
} ObjType;

struct Obj {
    ObjType type;
    bool marked;
};

typedef struct {
    Obj obj;
    uint32_t hash;
    size_t len;        /* bytes, excluding the NUL */
    size_t nchars;     /* UTF-8 code points */
    char chars[];      /* NUL-terminated */
} ObjString;

typedef struct {
    Obj obj;
    Value *items;
    size_t len, cap;
} ObjList;

/* Insertion-ordered hash map. Keys are nil/bool/int/float/string values;
 * a list or map as a key is an error reported by the caller. Deleted
 * entries leave tombstones in `entries` that are compacted on growth. */
typedef struct {
    Value key, value;
    uint32_t hash;
    bool live;
} MapEntry;

typedef struct {
    Obj obj;
    MapEntry *entries;   /* in insertion order */
    size_t nentries, cap_entries, count;  /* count = live entries */
    int32_t *index;      /* open addressing into entries; -1 empty */
    size_t index_cap;    /* power of two */
} ObjMap;

typedef struct ObjUpvalue {
    Obj obj;
    Value *loc;                 /* points at the stack slot while open, at `closed` once closed */
    Value closed;
    struct ObjUpvalue *next_open;
    size_t slot;                /* stack index while open (stacks may move) */
} ObjUpvalue;

struct Proto;  /* compiler/chunk.h: code, constants, debug info; owned by its program, not the heap */

typedef struct {
    Obj obj;
    struct Proto *proto;
    Obj *module;                /* ObjModule whose globals it sees, or NULL */
    int nupvals;
    ObjUpvalue *upvals[];
} ObjClosure;

struct VM;
/* A built-in. args[0..argc) positional; `kwargs` is an ObjMap of named
 * arguments or NULL. Writes the result to *out and returns 0, or calls
 * vm_raise(vm, fmt, ...) and returns -1. */
typedef int (*NativeFn)(struct VM *vm, int argc, Value *args, ObjMap *kwargs, Value *out);

typedef struct {
    Obj obj;
    const char *name;
    NativeFn fn;
} ObjNative;


/* A role segment: bytes [start, end) of the state's text were appended inside
 * a role block. end == SIZE_MAX while the block is open. */
typedef struct {
    Role role;
    size_t start, end;
} StateSegment;

struct RtTokens;                /* runtime/rt.h */

typedef struct {
    Obj obj;
    char *text;                 /* malloc'd, NUL-terminated */
    size_t len, cap;
    ObjMap *vars;               /* name -> captured value */
    ObjMap *meta;               /* name -> select scores etc. */
    ObjMap *logprobs;           /* name -> list of per-token log-probabilities */
    StateSegment *segs;
    int nsegs, cap_segs;
    struct RtTokens *tokens;    /* the backend's token record for this text, or NULL (runtime/rt.h) */
} ObjState;

typedef struct {
    Obj obj;
    ObjString *source;
    void *code;                 /* pcre2_code *, compiled on first use */
} ObjRegex;

typedef struct {
    Obj obj;
    ObjString *name;
    ObjString *source;          /* EBNF text */
} ObjGrammar;

typedef struct {
    Obj obj;
    ObjString *path;
    ObjMap *exports;            /* name -> value */
} ObjModule;

typedef struct Heap {
    Obj **objects;              /* every object not yet swept; malloc'd */
    size_t nobjects, cap_objects;
    size_t bytes_allocated;
    size_t next_gc;
    /* interned strings are not required; equality compares bytes */
} Heap;

/* ---- value constructors and tests ---- */
static inline Value val_nil(void) { Value v; v.tag = V_NIL; v.as.i = 0; return v; }
static inline Value val_bool(bool b) { Value v; v.tag = V_BOOL; v.as.i = 0; v.as.b = b; return v; }
static inline Value val_int(int64_t i) { Value v; v.tag = V_INT; v.as.i = i; return v; }
static inline Value val_float(double f) { Value v; v.tag = V_FLOAT; v.as.f = f; return v; }
static inline Value val_obj(void *o) { Value v; v.tag = V_OBJ; v.as.obj = (Obj *)o; return v; }
static inline bool val_is_obj_type(Value v, ObjType t) { return v.type == V_OBJ && v.as.obj->type == t; }
#define VAL_IS_STRING(v) val_is_obj_type((v), OBJ_STRING)
#define VAL_IS_LIST(v)   val_is_obj_type((v), OBJ_LIST)
#define VAL_IS_MAP(v)    val_is_obj_type((v), OBJ_MAP)
#define VAL_IS_STATE(v)  val_is_obj_type((v), OBJ_STATE)
#define AS_STRING(v) ((ObjString *)(v).as.obj)
#define AS_LIST(v)   ((ObjList *)(v).as.obj)
#define AS_MAP(v)    ((ObjMap *)(v).as.obj)
#define AS_STATE(v)  ((ObjState *)(v).as.obj)

/* ---- heap ---- */
void heap_init(Heap *h);
void heap_free_all(Heap *h);            /* frees every object */
void *heap_alloc_obj(Heap *h, size_t size, ObjType type);  /* zeroed, registered with the heap */
void heap_mark_value(Value v, void *gray);
void heap_mark_obj(Obj *o, void *gray);
/* Runs a full collection: calls mark_roots(ud, gray) which must call
 * heap_mark_value/heap_mark_obj for every root, then traces and sweeps. */
void heap_collect(Heap *h, void (*mark_roots)(void *ud, void *gray), void *ud);
/* The bytes of the objects reachable from the roots mark_roots marks,
 * without collecting anything (the marks are cleared again). */
size_t heap_measure(Heap *h, void (*mark_roots)(void *ud, void *gray), void *ud);
static inline bool heap_should_collect(const Heap *h) { return h->bytes_allocated > h->next_gc; }

/* ---- strings ---- */
ObjString *str_new(Heap *h, const char *s, size_t len);  /* copies; len in bytes */
ObjString *str_cstr(Heap *h, const char *s);
ObjString *str_concat(Heap *h, const ObjString *a, const ObjString *b);
/* A string of len bytes whose chars the caller fills in (before anything
 * reads it); nchars must be their UTF-8 code point count. */
ObjString *str_alloc(Heap *h, size_t len, size_t nchars);
/* The string's hash, computed on first use and cached in s->hash. */
uint32_t str_hash(ObjString *s);
/* Decimal text of i into buf (no NUL); returns the byte count. */
#define FMT_INT_MAX 20
size_t fmt_int(char buf[FMT_INT_MAX], int64_t i);
/* A heap string of the buffer's bytes (base/strbuf.h); the buffer is freed. */
ObjString *sb_to_string(Heap *h, StrBuf *b);  /* frees the buffer */

/* ---- lists and maps ---- */
ObjList *list_new(Heap *h, size_t cap);
void list_push(ObjList *l, Value v);
ObjMap *map_new(Heap *h);
bool map_key_ok(Value key);             /* hashable? */
bool map_get(const ObjMap *m, Value key, Value *out);
void map_set(ObjMap *m, Value key, Value value);
bool map_delete(ObjMap *m, Value key);
bool map_get_cstr(const ObjMap *m, const char *key, Value *out);
uint32_t val_hash(Value v);

/* ---- equality, printing ---- */
bool val_equal(Value a, Value b);       /* §3: by value for nil/bool/num/str/list/map */
const char *val_type_name(Value v);     /* "nil", "bool", "int", "float", "string", "list", "map", "function", "state", "regex", "grammar", "module" */
/* str(v): top-level strings as themselves, everything else as in §3. */
void val_to_text(StrBuf *b, Value v);
/* The §3 rendering used inside lists/maps: strings JSON-quoted (by
 * json_quote, vm/json.h; JSON itself is written by json_encode there). */
void val_to_repr(StrBuf *b, Value v);
/* Shortest text that reads back as the same double, JavaScript style. */
void fmt_double(StrBuf *b, double d);
/* How a closure prints (`<fn name>`): the VM installs a function that names a
 * prototype (process-wide, set once at start-up; without it closures print `<fn>`). */
void val_set_proto_namer(const char *(*fn)(const struct Proto *proto));

/* ---- state ---- */
ObjState *state_new(Heap *h);
ObjState *state_copy(Heap *h, const ObjState *s);   /* fork: deep-copies text/segs, shallow-copies maps */
void state_append(ObjState *s, const char *text, size_t len);
/* Keeps t (retained; may be NULL) as the state's token record, releasing the
 * one it had. state_copy shares the record; sweeping a state releases it. */
void state_set_tokens(ObjState *s, struct RtTokens *t);

#endif
