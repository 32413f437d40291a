/* tests/unit/test_value.c — vm/value.c: printing (§3), equality, hashing,
 * maps, strings, states and the collector. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"
#include "vm/json.h"
#include "vm/value.h"

static Heap heap;

static void setup(void) { heap_init(&heap); }
static void teardown(void) { heap_free_all(&heap); }

TestSuite(value, .init = setup, .fini = teardown);

static char *text_of(Value v, bool repr)
{
    static char out[4096];
    StrBuf b;
    sb_init(&b);
    if (repr) val_to_repr(&b, v);
    else val_to_text(&b, v);
    snprintf(out, sizeof out, "%s", b.data ? b.data : "");
    sb_free(&b);
    return out;
}

static char *json_of(Value v)
{
    static char out[4096];
    StrBuf b;
    sb_init(&b);
    int rc = json_encode(&b, v, JSON_STRICT, NULL);
    snprintf(out, sizeof out, "%s", rc < 0 ? "<error>" : b.data ? b.data : "");
    sb_free(&b);
    return out;
}

static Value S(const char *s) { return val_obj(str_cstr(&heap, s)); }

/* ---- doubles: the JavaScript Number#toString layout ---- */

static const struct { double d; const char *text; } doubles[] = {
    {0.1, "0.1"},
    {0.2 + 0.1, "0.30000000000000004"},
    {3.5, "3.5"},
    {1500.0, "1500"},
    {2.0, "2"},
    {-2.5, "-2.5"},
    {1e21, "1e+21"},
    {1e20, "100000000000000000000"},
    {123456789012345680000.0, "123456789012345680000"},
    {1e-7, "1e-7"},
    {1.5e-7, "1.5e-7"},
    {1e-6, "0.000001"},
    {0.000001234, "0.000001234"},
    {5e-324, "5e-324"},
    {1.7976931348623157e308, "1.7976931348623157e+308"},
    {-0.0, "0"},
    {0.0, "0"},
    {9007199254740993.0, "9007199254740992"},
    {1.0 / 3.0, "0.3333333333333333"},
    {2.5e25, "2.5e+25"},
    {100.0, "100"},
    {7.120236347223045e-307, "7.120236347223045e-307"},
};

Test(value, fmt_double_table)
{
    for (size_t i = 0; i < sizeof doubles / sizeof doubles[0]; i++)
        cr_expect_str_eq(text_of(val_float(doubles[i].d), false), doubles[i].text, "double #%zu", i);
}

Test(value, fmt_double_specials)
{
    cr_expect_str_eq(text_of(val_float(NAN), false), "NaN");
    cr_expect_str_eq(text_of(val_float(INFINITY), false), "Infinity");
    cr_expect_str_eq(text_of(val_float(-INFINITY), false), "-Infinity");
}

Test(value, fmt_double_round_trips)
{
    /* powers of two are where the shortest digits are hardest to find */
    for (int e = -1074; e < 1024; e += 7) {
        double d = ldexp(1.0, e);
        char *s = text_of(val_float(d), false);
        cr_assert_eq(strtod(s, NULL), d, "2^%d printed as %s", e, s);
    }
}

/* ---- printing of every kind of value ---- */

Test(value, print_scalars)
{
    cr_expect_str_eq(text_of(val_nil(), false), "nil");
    cr_expect_str_eq(text_of(val_bool(true), false), "true");
    cr_expect_str_eq(text_of(val_bool(false), false), "false");
    cr_expect_str_eq(text_of(val_int(-42), false), "-42");
    cr_expect_str_eq(text_of(val_int(INT64_MIN), false), "-9223372036854775808");
    cr_expect_str_eq(text_of(S("héllo"), false), "héllo");
    cr_expect_str_eq(text_of(S("a\"b\n"), true), "\"a\\\"b\\n\"");
}

Test(value, print_list_and_map)
{
    ObjList *inner = list_new(&heap, 0);
    list_push(inner, val_bool(true));
    list_push(inner, val_nil());
    ObjList *l = list_new(&heap, 0);
    list_push(l, val_int(1));
    list_push(l, S("a"));
    list_push(l, val_obj(inner));
    cr_expect_str_eq(text_of(val_obj(l), false), "[1, \"a\", [true, null]]");
    cr_expect_str_eq(json_of(val_obj(l)), "[1,\"a\",[true,null]]");

    ObjMap *m = map_new(&heap);
    map_set(m, S("k"), val_int(1));
    map_set(m, S("b"), val_float(2.5));
    map_set(m, val_int(3), S("x"));
    cr_expect_str_eq(text_of(val_obj(m), false), "{\"k\": 1, \"b\": 2.5, \"3\": \"x\"}");
    cr_expect_str_eq(json_of(val_obj(m)), "{\"k\":1,\"b\":2.5,\"3\":\"x\"}");
    cr_expect_str_eq(text_of(val_obj(list_new(&heap, 0)), false), "[]");
    cr_expect_str_eq(text_of(val_obj(map_new(&heap)), false), "{}");
}

Test(value, print_self_containing_list_terminates)
{
    ObjList *l = list_new(&heap, 0);
    list_push(l, val_obj(l));
    char *s = text_of(val_obj(l), false);
    cr_expect(strstr(s, "[...]") != NULL);
    cr_expect_str_eq(json_of(val_obj(l)), "<error>");
}

Test(value, print_other_objects)
{
    ObjNative *n = heap_alloc_obj(&heap, sizeof(ObjNative), OBJ_NATIVE);
    n->name = "len";
    cr_expect_str_eq(text_of(val_obj(n), false), "<fn len>");
    cr_expect_str_eq(val_type_name(val_obj(n)), "function");
    ObjRegex *r = heap_alloc_obj(&heap, sizeof(ObjRegex), OBJ_REGEX);
    r->source = str_cstr(&heap, "a+b");
    cr_expect_str_eq(text_of(val_obj(r), false), "re\"a+b\"");
    ObjClosure *c = heap_alloc_obj(&heap, sizeof(ObjClosure), OBJ_CLOSURE);
    cr_expect_str_eq(text_of(val_obj(c), false), "<fn>");
    ObjState *st = state_new(&heap);
    state_append(st, "Hi \"there\"", 10);
    cr_expect_str_eq(text_of(val_obj(st), false), "Hi \"there\"");
    cr_expect_str_eq(json_of(val_obj(st)), "\"Hi \\\"there\\\"\"");
    cr_expect_str_eq(json_of(val_obj(n)), "<error>");
    cr_expect_str_eq(json_of(val_float(NAN)), "<error>");
}

Test(value, json_control_chars)
{
    cr_expect_str_eq(json_of(S("a\tb\x01")), "\"a\\tb\\u0001\"");
    cr_expect_str_eq(json_of(S("日本")), "\"日本\"");
}

/* ---- equality and hashing ---- */

Test(value, equality)
{
    cr_expect(val_equal(val_nil(), val_nil()));
    cr_expect(!val_equal(val_nil(), val_bool(false)));
    cr_expect(val_equal(val_int(1), val_float(1.0)));
    cr_expect(val_equal(val_float(1.0), val_int(1)));
    cr_expect(!val_equal(val_int(1), val_float(1.5)));
    cr_expect(!val_equal(val_int(INT64_MAX), val_float(9223372036854775808.0)));
    cr_expect(!val_equal(val_float(NAN), val_float(NAN)));
    cr_expect(val_equal(val_float(0.0), val_float(-0.0)));
    cr_expect(val_equal(S("abc"), S("abc")));
    cr_expect(!val_equal(S("abc"), S("abd")));
    cr_expect(!val_equal(S("1"), val_int(1)));

    ObjList *a = list_new(&heap, 0), *b = list_new(&heap, 0);
    list_push(a, val_int(1));
    list_push(a, S("x"));
    list_push(b, val_float(1.0));
    list_push(b, S("x"));
    cr_expect(val_equal(val_obj(a), val_obj(b)));
    list_push(b, val_nil());
    cr_expect(!val_equal(val_obj(a), val_obj(b)));

    ObjMap *m = map_new(&heap), *n = map_new(&heap);
    map_set(m, S("a"), val_int(1));
    map_set(m, S("b"), val_int(2));
    map_set(n, S("b"), val_int(2));
    map_set(n, S("a"), val_int(1));
    cr_expect(val_equal(val_obj(m), val_obj(n)), "maps compare regardless of order");
    map_set(n, S("a"), val_int(3));
    cr_expect(!val_equal(val_obj(m), val_obj(n)));

    /* identity for functions */
    ObjNative *f = heap_alloc_obj(&heap, sizeof(ObjNative), OBJ_NATIVE);
    ObjNative *g = heap_alloc_obj(&heap, sizeof(ObjNative), OBJ_NATIVE);
    cr_expect(val_equal(val_obj(f), val_obj(f)));
    cr_expect(!val_equal(val_obj(f), val_obj(g)));
}

Test(value, equality_of_cycles_terminates)
{
    ObjList *a = list_new(&heap, 0), *b = list_new(&heap, 0);
    list_push(a, val_obj(a));
    list_push(b, val_obj(b));
    cr_expect(val_equal(val_obj(a), val_obj(a)));
    (void)val_equal(val_obj(a), val_obj(b));  /* must return, either way */
}

Test(value, equal_values_hash_alike)
{
    cr_expect_eq(val_hash(val_int(1)), val_hash(val_float(1.0)));
    cr_expect_eq(val_hash(val_int(0)), val_hash(val_float(-0.0)));
    cr_expect_eq(val_hash(S("key")), val_hash(S("key")));
}

/* ---- strings ---- */

Test(value, strings)
{
    ObjString *s = str_cstr(&heap, "héllo wörld");
    cr_expect_eq(s->len, 13);
    cr_expect_eq(s->nchars, 11);
    ObjString *c = str_concat(&heap, s, str_cstr(&heap, "!"));
    cr_expect_str_eq(c->chars, "héllo wörld!");
    cr_expect_eq(c->nchars, 12);
    cr_expect_eq(c->hash, 0, "hashed lazily, not at creation");
    cr_expect_eq(str_hash(c), str_hash(str_cstr(&heap, "héllo wörld!")));
    cr_expect_neq(c->hash, 0, "cached once computed");
    cr_expect(utf8_valid("h\xc3\xa9", 3));
    cr_expect(!utf8_valid("\xc3", 1));
    cr_expect(!utf8_valid("\xc0\x80", 2), "overlong");
    cr_expect(!utf8_valid("\xed\xa0\x80", 3), "surrogate");
    cr_expect(utf8_valid("\xf0\x9f\x98\x80", 4));
    cr_expect(!utf8_valid("\xf4\x90\x80\x80", 4), "past U+10FFFF");
}

Test(value, utf8_count_word_at_a_time)
{
    /* lengths around the 8-byte step, multi-byte characters across the
     * word boundary and in the tail */
    cr_expect_eq(utf8_count("", 0), 0);
    cr_expect_eq(utf8_count("abcdefg", 7), 7);
    cr_expect_eq(utf8_count("abcdefgh", 8), 8);
    cr_expect_eq(utf8_count("abcdefghi", 9), 9);
    cr_expect_eq(utf8_count("abcdefg\xc3\xa9", 9), 8);         /* é split across words */
    cr_expect_eq(utf8_count("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9), 3);  /* 日本語 */
    cr_expect_eq(utf8_count("\xf0\x9f\x98\x80xyz\xf0\x9f\x98\x80z", 12), 6);
    cr_expect_eq(str_cstr(&heap, "abc日本語defgh😀")->nchars, 12);
}

Test(value, fmt_int)
{
    char buf[FMT_INT_MAX + 1];
    struct { int64_t v; const char *text; } cases[] = {
        {0, "0"}, {7, "7"}, {-7, "-7"}, {10, "10"}, {99, "99"}, {100, "100"}, {-100, "-100"},
        {123456789, "123456789"}, {INT64_MAX, "9223372036854775807"},
        {INT64_MIN, "-9223372036854775808"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = fmt_int(buf, cases[i].v);
        buf[n] = '\0';
        cr_expect_str_eq(buf, cases[i].text);
    }
    cr_expect_str_eq(text_of(val_int(INT64_MIN), true), "-9223372036854775808");
    cr_expect_str_eq(text_of(val_float(-4503599627370496.0), true), "-4503599627370496");
}

Test(value, lazy_hash_keys)
{
    /* keys built different ways find each other; a computed hash is never 0 */
    ObjMap *m = map_new(&heap);
    ObjString *k = str_concat(&heap, str_cstr(&heap, "k"), str_cstr(&heap, "42"));
    map_set(m, val_obj(k), val_int(1));
    Value v;
    cr_expect(map_get(m, S("k42"), &v));
    cr_expect_eq(v.as.i, 1);
    cr_expect(map_get_cstr(m, "k42", &v));
    cr_expect(!map_get_cstr(m, "k43", &v));
    ObjString *e = str_cstr(&heap, "");
    cr_expect_neq(str_hash(e), 0);
    /* equality before and after either side is hashed */
    ObjString *a = str_cstr(&heap, "same"), *b = str_cstr(&heap, "same"), *d = str_cstr(&heap, "samf");
    cr_expect(val_equal(val_obj(a), val_obj(b)));
    str_hash(a);
    cr_expect(val_equal(val_obj(a), val_obj(b)));
    cr_expect(!val_equal(val_obj(a), val_obj(d)));
    str_hash(d);
    cr_expect(!val_equal(val_obj(a), val_obj(d)));
}

Test(value, strbuf)
{
    StrBuf b;
    sb_init(&b);
    sb_append(&b, "ab", 2);
    sb_appendc(&b, 'c');
    sb_printf(&b, "%d-%s", 42, "x");
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sb_printf(&b, "%s", big);
    cr_expect_eq(b.len, 3 + 4 + 999);
    cr_expect_eq(strncmp(b.data, "abc42-xzzz", 10), 0);
    ObjString *s = sb_to_string(&heap, &b);
    cr_expect_eq(s->len, 1006);
    cr_expect_null(b.data);
}

/* ---- maps ---- */

Test(value, map_basics)
{
    ObjMap *m = map_new(&heap);
    Value v;
    cr_expect(!map_get(m, S("a"), &v));
    map_set(m, S("a"), val_int(1));
    map_set(m, S("b"), val_int(2));
    map_set(m, S("c"), val_int(3));
    map_set(m, S("a"), val_int(10));  /* overwrite keeps position */
    cr_expect_eq(m->count, 3);
    cr_expect(map_get(m, S("a"), &v));
    cr_expect_eq(v.as.i, 10);
    cr_expect(map_get_cstr(m, "b", &v));
    cr_expect_eq(v.as.i, 2);
    cr_expect(!map_get_cstr(m, "zz", &v));
    cr_expect(map_delete(m, S("b")));
    cr_expect(!map_delete(m, S("b")));
    cr_expect(!map_get(m, S("b"), NULL));
    cr_expect_eq(m->count, 2);
    map_set(m, S("b"), val_int(20));  /* re-added goes to the end */
    cr_expect_str_eq(text_of(val_obj(m), false), "{\"a\": 10, \"c\": 3, \"b\": 20}");
}

Test(value, map_numeric_keys)
{
    ObjMap *m = map_new(&heap);
    Value v;
    map_set(m, val_int(1), S("one"));
    cr_expect(map_get(m, val_float(1.0), &v), "1.0 finds the key 1");
    map_set(m, val_float(1.0), S("uno"));
    cr_expect_eq(m->count, 1);
    cr_expect_str_eq(AS_STRING(v)->chars, "one");
    map_get(m, val_int(1), &v);
    cr_expect_str_eq(AS_STRING(v)->chars, "uno");
    map_set(m, val_nil(), val_int(0));
    map_set(m, val_bool(true), val_int(1));
    map_set(m, val_float(2.5), val_int(2));
    cr_expect(map_get(m, val_nil(), NULL));
    cr_expect(map_get(m, val_bool(true), NULL));
    cr_expect(!map_get(m, val_bool(false), NULL));
    cr_expect(map_get(m, val_float(2.5), NULL));
    cr_expect(!map_get(m, S("1"), NULL));
    cr_expect(map_key_ok(val_int(3)));
    cr_expect(map_key_ok(S("x")));
    cr_expect(!map_key_ok(val_float(NAN)));
    cr_expect(!map_key_ok(val_obj(list_new(&heap, 0))));
}

Test(value, map_100k_keys)
{
    ObjMap *m = map_new(&heap);
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        char k[32];
        snprintf(k, sizeof k, "key%d", i);
        map_set(m, S(k), val_int(i));
    }
    cr_assert_eq(m->count, (size_t)n);
    for (int i = 0; i < n; i += 2) {
        char k[32];
        snprintf(k, sizeof k, "key%d", i);
        cr_assert(map_delete(m, S(k)));
    }
    cr_assert_eq(m->count, (size_t)n / 2);
    for (int i = 0; i < n; i++) {
        char k[32];
        snprintf(k, sizeof k, "key%d", i);
        Value v;
        bool found = map_get(m, S(k), &v);
        cr_assert_eq(found, i % 2 == 1, "key%d", i);
        if (found) cr_assert_eq(v.as.i, i);
    }
    /* order is insertion order of the survivors */
    int64_t prev = -1;
    size_t live = 0;
    for (size_t i = 0; i < m->nentries; i++) {
        if (!m->entries[i].live) continue;
        cr_assert_gt(m->entries[i].value.as.i, prev);
        prev = m->entries[i].value.as.i;
        live++;
    }
    cr_assert_eq(live, (size_t)n / 2);
    /* churn: tombstones must be compacted, not grow the table forever */
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 1000; i++) map_set(m, val_int(1000000 + i), val_int(i));
        for (int i = 0; i < 1000; i++) cr_assert(map_delete(m, val_int(1000000 + i)));
    }
    cr_assert_eq(m->count, (size_t)n / 2);
    cr_assert_leq(m->cap_entries, (size_t)262144);
    for (int i = 1; i < n; i += 2) {
        char k[32];
        snprintf(k, sizeof k, "key%d", i);
        Value v;
        cr_assert(map_get(m, S(k), &v));
        cr_assert_eq(v.as.i, i);
    }
}

/* ---- states ---- */

Test(value, state_copy_is_independent)
{
    ObjState *s = state_new(&heap);
    state_append(s, "Hello", 5);
    map_set(s->vars, S("x"), val_int(1));
    ObjState *c = state_copy(&heap, s);
    state_append(c, ", world", 7);
    map_set(c->vars, S("y"), val_int(2));
    cr_expect_str_eq(s->text, "Hello");
    cr_expect_str_eq(c->text, "Hello, world");
    cr_expect_eq(s->vars->count, 1);
    cr_expect_eq(c->vars->count, 2);
    cr_expect(map_get_cstr(c->vars, "x", NULL));
    cr_expect_neq(c->meta, s->meta);
    cr_expect_neq(c->logprobs, s->logprobs);

    /* a long text grows */
    for (int i = 0; i < 1000; i++) state_append(s, "0123456789", 10);
    cr_expect_eq(s->len, 10005);
    cr_expect_eq(strlen(s->text), 10005);
}

Test(value, state_copy_segments)
{
    ObjState *s = state_new(&heap);
    s->segs = malloc(2 * sizeof(StateSegment));
    s->cap_segs = 2;
    s->segs[0] = (StateSegment){ROLE_SYSTEM, 0, 5};
    s->segs[1] = (StateSegment){ROLE_USER, 5, SIZE_MAX};
    s->nsegs = 2;
    ObjState *c = state_copy(&heap, s);
    cr_assert_eq(c->nsegs, 2);
    cr_expect_neq(c->segs, s->segs);
    cr_expect_eq(c->segs[1].role, ROLE_USER);
    cr_expect_eq(c->segs[1].end, SIZE_MAX);
}

/* ---- collector ---- */

typedef struct {
    Value *roots;
    int n;
} Roots;

static void mark_roots(void *ud, void *gray)
{
    Roots *r = ud;
    for (int i = 0; i < r->n; i++) heap_mark_value(r->roots[i], gray);
}

static size_t count_objects(void)
{
    return heap.nobjects;
}

Test(value, gc_keeps_reachable_frees_garbage)
{
    /* survivors: a list holding a map holding a string; a state with vars;
     * a closure with an upvalue and a module; a regex; a grammar */
    ObjList *keep = list_new(&heap, 0);
    ObjMap *m = map_new(&heap);
    map_set(m, S("name"), S("value"));
    list_push(keep, val_obj(m));
    ObjState *st = state_new(&heap);
    map_set(st->vars, S("captured"), S("text"));
    list_push(keep, val_obj(st));

    ObjClosure *c = heap_alloc_obj(&heap, sizeof(ObjClosure) + sizeof(ObjUpvalue *), OBJ_CLOSURE);
    c->nupvals = 1;
    ObjUpvalue *uv = heap_alloc_obj(&heap, sizeof(ObjUpvalue), OBJ_UPVALUE);
    uv->closed = S("upvalue string");
    uv->loc = &uv->closed;
    c->upvals[0] = uv;
    ObjModule *mod = heap_alloc_obj(&heap, sizeof(ObjModule), OBJ_MODULE);
    mod->path = str_cstr(&heap, "std/x");
    mod->exports = map_new(&heap);
    c->module = (Obj *)mod;

    ObjRegex *re = heap_alloc_obj(&heap, sizeof(ObjRegex), OBJ_REGEX);
    re->source = str_cstr(&heap, "a+");
    ObjGrammar *g = heap_alloc_obj(&heap, sizeof(ObjGrammar), OBJ_GRAMMAR);
    g->name = str_cstr(&heap, "arith");
    g->source = str_cstr(&heap, "root ::= \"x\"");

    size_t survivors = count_objects();
    /* survivors: keep, m, 2 strings, st, 3 state maps, 2 strings, closure,
     * upvalue, its string, module, path, exports, regex, source, grammar,
     * name, source = 21 */
    cr_assert_eq(survivors, 21);

    /* garbage: lists of strings and a cycle */
    for (int i = 0; i < 1000; i++) {
        ObjList *l = list_new(&heap, 0);
        list_push(l, S("garbage"));
        list_push(l, val_obj(l));
    }
    ObjState *dead = state_new(&heap);
    state_append(dead, "bye", 3);
    cr_assert_eq(count_objects(), survivors + 2000 + 4);

    Value roots[] = {val_obj(keep), val_obj(c), val_obj(re), val_obj(g), val_int(7)};
    Roots r = {roots, 5};
    heap_collect(&heap, mark_roots, &r);
    cr_expect_eq(count_objects(), survivors);
    for (size_t i = 0; i < heap.nobjects; i++) cr_expect(!heap.objects[i]->marked, "marks are cleared after a sweep");
    cr_expect_gt(heap.bytes_allocated, 0);
    cr_expect_geq(heap.next_gc, (size_t)1 << 20);

    /* everything is still usable */
    Value v;
    cr_expect(map_get_cstr(m, "name", &v));
    cr_expect_str_eq(AS_STRING(v)->chars, "value");
    cr_expect(map_get_cstr(st->vars, "captured", &v));
    cr_expect_str_eq(AS_STRING(uv->closed)->chars, "upvalue string");
    cr_expect_str_eq(mod->path->chars, "std/x");

    /* with no roots at all, everything goes */
    heap_collect(&heap, NULL, NULL);
    cr_expect_eq(count_objects(), 0);
    cr_expect_eq(heap.bytes_allocated, 0);
}

Test(value, gc_bytes_track_live_data)
{
    size_t before = heap.bytes_allocated;
    for (int i = 0; i < 10000; i++) str_cstr(&heap, "some garbage string of moderate length");
    cr_expect_gt(heap.bytes_allocated, before + 10000 * 38);
    ObjString *keep = str_cstr(&heap, "kept");
    Value roots[] = {val_obj(keep)};
    Roots r = {roots, 1};
    heap_collect(&heap, mark_roots, &r);
    cr_expect_eq(heap.bytes_allocated, sizeof(ObjString) + 5);
    cr_expect_eq(heap.next_gc, (size_t)1 << 20);
}

Test(value, gc_object_table_shrinks_and_refills)
{
    Value keep = S("kept");
    for (int i = 0; i < 50000; i++) str_cstr(&heap, "garbage");
    size_t grown = heap.cap_objects;
    Roots r = {&keep, 1};
    heap_collect(&heap, mark_roots, &r);
    cr_expect_eq(heap.nobjects, 1);
    cr_expect_lt(heap.cap_objects, grown, "an emptied table is given back");
    for (int i = 0; i < 5000; i++) str_cstr(&heap, "more");
    cr_expect_eq(heap.nobjects, 5001);
    cr_expect_str_eq(AS_STRING(keep)->chars, "kept");
}

Test(value, gc_should_collect_after_threshold)
{
    cr_expect(!heap_should_collect(&heap));
    for (int i = 0; i < 20000; i++) str_new(&heap, "0123456789012345678901234567890123456789012345678901234567890123", 64);
    cr_expect(heap_should_collect(&heap));
    heap_collect(&heap, NULL, NULL);
    cr_expect(!heap_should_collect(&heap));
}

/* ---- hooks the VM and runtime install ---- */

static const char *name_proto(const struct Proto *p) { return p ? "main" : NULL; }

Test(value, closure_prints_with_its_name)
{
    ObjClosure *c = heap_alloc_obj(&heap, sizeof(ObjClosure), OBJ_CLOSURE);
    c->proto = (struct Proto *)&heap;  /* any non-NULL pointer: the namer only looks at it */
    val_set_proto_namer(name_proto);
    cr_expect_str_eq(text_of(val_obj(c), false), "<fn main>");
    cr_expect_str_eq(text_of(val_obj(c), true), "<fn main>");
    val_set_proto_namer(NULL);
    cr_expect_str_eq(text_of(val_obj(c), false), "<fn>");
}

typedef struct {
    RtTokens base;
    int refs, released;
} CountedTokens;
static void ct_retain(RtTokens *t) { ((CountedTokens *)t)->refs++; }
static void ct_release(RtTokens *t)
{
    ((CountedTokens *)t)->refs--;
    ((CountedTokens *)t)->released++;
}

Test(value, state_tokens_shared_by_copies_and_released)
{
    CountedTokens a = {{ct_retain, ct_release}, 0, 0}, b = {{ct_retain, ct_release}, 0, 0};
    ObjState *s = state_new(&heap);
    state_set_tokens(s, &a.base);
    ObjState *c = state_copy(&heap, s);
    cr_expect_eq(c->tokens, &a.base, "a fork starts with the same text, so the same record");
    cr_expect_eq(a.refs, 2);
    state_set_tokens(c, &b.base);
    cr_expect_eq(a.refs, 1);
    cr_expect_eq(b.refs, 1);
    heap_collect(&heap, NULL, NULL);
    cr_expect_eq(a.refs, 0);
    cr_expect_eq(b.refs, 0);
    cr_expect_eq(a.released, 2);
}

Test(value, json_bad_reports_the_value)
{
    ObjNative *n = heap_alloc_obj(&heap, sizeof(ObjNative), OBJ_NATIVE);
    ObjList *l = list_new(&heap, 0);
    list_push(l, val_int(1));
    list_push(l, val_obj(n));
    StrBuf b;
    sb_init(&b);
    Value bad = val_nil();
    cr_expect_eq(json_encode(&b, val_obj(l), JSON_STRICT, &bad), -1);
    cr_expect_eq(bad.as.obj, (Obj *)n);
    sb_free(&b);
}
