/* tests/unit/test_json.c — vm/json.h, the one JSON reader and writer of SGL
 * values, and the sgl_args_* API built on it (include/sgl.h): round trips,
 * the depth limit, line:col errors, integers beyond int64, UTF-8. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/sgl.h"
#include "vm/json.h"

static Heap heap;

static void setup(void) { heap_init(&heap); }
static void teardown(void) { heap_free_all(&heap); }

TestSuite(json, .init = setup, .fini = teardown);

static Value decode_ok(const char *text)
{
    Value v;
    JsonError err;
    cr_assert_eq(json_decode(&heap, text, strlen(text), &v, &err), 0, "%s: %d:%d: %s", text, err.line, err.col,
                 err.msg);
    return v;
}

/* The JSON_STRICT text of v, or "<error>". */
static char *encode(Value v, JsonMode mode)
{
    static char out[8192];
    StrBuf b;
    sb_init(&b);
    int rc = json_encode(&b, v, mode, NULL);
    snprintf(out, sizeof out, "%s", rc < 0 ? "<error>" : b.data ? b.data : "");
    sb_free(&b);
    return out;
}

static Value S(const char *s) { return val_obj(str_cstr(&heap, s)); }

/* ---- round trips ---- */

/* Texts already in the writer's form read back and write out unchanged. */
static const char *const canonical[] = {
    "null", "true", "false", "0", "-1", "42", "2.5", "-3e-7", "1e+21", "0.1", "0.30000000000000004",
    "9223372036854775807", "-9223372036854775808", "100000000000000000000", "5e-324",
    "\"\"", "\"plain\"", "\"q\\\"b\\\\s/\"", "\"\\n\\t\\r\\b\\f\\u0001\\u001f\"", "\"é日本😀\"",
    "[]", "{}", "[1,[2,[3,[]]],{}]", "{\"b\":1,\"a\":[true,false,null,2.5,\"x\"]}",
    "{\"nested\":{\"k\":{\"k\":[{\"z\":\"\"}]}}}",
};

Test(json, canonical_texts_round_trip)
{
    for (size_t i = 0; i < sizeof canonical / sizeof canonical[0]; i++)
        cr_expect_str_eq(encode(decode_ok(canonical[i]), JSON_STRICT), canonical[i]);
}

Test(json, values_round_trip)
{
    ObjList *l = list_new(&heap, 0);
    double floats[] = {0.1, 1.0 / 3, 1e21, 1e-7, 123456789.125, -2.5e-300, 1.7976931348623157e308};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) list_push(l, val_float(floats[i]));
    list_push(l, val_int(INT64_MIN));
    list_push(l, val_int(INT64_MAX));
    list_push(l, S("tab\there \"quoted\" \\ é\x01"));
    ObjMap *m = map_new(&heap);
    map_set(m, S("list"), val_obj(l));
    map_set(m, S("nil"), val_nil());
    StrBuf b;
    sb_init(&b);
    cr_assert_eq(json_encode(&b, val_obj(m), JSON_STRICT, NULL), 0);
    Value back = decode_ok(b.data);
    cr_expect(val_equal(back, val_obj(m)), "%s", b.data);
    /* same types, not just equal numbers */
    ObjList *bl = NULL;
    Value lv;
    cr_assert(map_get_cstr(AS_MAP(back), "list", &lv));
    bl = AS_LIST(lv);
    for (size_t i = 0; i < bl->len; i++) cr_expect_eq(bl->items[i].type, l->items[i].type, "item %zu", i);
    sb_free(&b);
}

Test(json, integral_float_writes_without_fraction)
{
    /* §12: 2.0 encodes as 2, which reads back as an int */
    cr_expect_str_eq(encode(val_float(2.0), JSON_STRICT), "2");
    cr_expect_eq(decode_ok("2").type, V_INT);
    cr_expect_eq(decode_ok("2.0").type, V_FLOAT);
}

Test(json, repeated_key_keeps_first_position_last_value)
{
    cr_expect_str_eq(encode(decode_ok("{\"a\":1,\"b\":2,\"a\":3}"), JSON_STRICT), "{\"a\":3,\"b\":2}");
}

Test(json, non_string_keys_are_written_as_their_json_text)
{
    ObjMap *m = map_new(&heap);
    map_set(m, val_int(1), S("a"));
    map_set(m, val_float(1.5), S("b"));
    map_set(m, val_bool(true), S("c"));
    map_set(m, val_nil(), S("d"));
    cr_expect_str_eq(encode(val_obj(m), JSON_STRICT), "{\"1\":\"a\",\"1.5\":\"b\",\"true\":\"c\",\"null\":\"d\"}");
    map_set(m, val_float(INFINITY), S("e"));
    cr_expect_str_eq(encode(val_obj(m), JSON_STRICT), "<error>");
    cr_expect(strstr(encode(val_obj(m), JSON_RESULT), "\"Infinity\":\"e\"") != NULL);
}

/* ---- integers beyond int64 ---- */

Test(json, oversized_integers_are_the_nearest_float)
{
    static const struct { const char *text; VType type; double f; int64_t i; } cases[] = {
        {"9223372036854775807", V_INT, 0, INT64_MAX},
        {"-9223372036854775808", V_INT, 0, INT64_MIN},
        {"9223372036854775808", V_FLOAT, 9223372036854775808.0, 0},
        {"-9223372036854775809", V_FLOAT, -9223372036854775808.0, 0},
        {"99999999999999999999", V_FLOAT, 1e20, 0},
        {"123456789012345678901234567890", V_FLOAT, 1.2345678901234568e29, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Value v = decode_ok(cases[i].text);
        cr_expect_eq(v.type, cases[i].type, "%s", cases[i].text);
        if (v.type == V_FLOAT) cr_expect_eq(v.as.f, cases[i].f, "%s", cases[i].text);
        else cr_expect_eq(v.as.i, cases[i].i, "%s", cases[i].text);
    }
    cr_expect_str_eq(encode(decode_ok("[99999999999999999999]"), JSON_STRICT), "[100000000000000000000]");
}

/* ---- the depth limit ---- */

static char *nested(int depth, char open, char close)
{
    char *s = malloc((size_t)depth * 2 + 1);
    memset(s, open, (size_t)depth);
    memset(s + depth, close, (size_t)depth);
    s[depth * 2] = '\0';
    return s;
}

Test(json, reader_depth_limit)
{
    char *ok = nested(VAL_MAX_DEPTH, '[', ']');
    decode_ok(ok);
    free(ok);
    char *deep = nested(VAL_MAX_DEPTH + 1, '[', ']');
    Value v;
    JsonError err;
    cr_expect_eq(json_decode(&heap, deep, strlen(deep), &v, &err), -1);
    cr_expect_eq(err.line, 1);
    cr_expect_eq(err.col, VAL_MAX_DEPTH + 1);
    cr_expect_str_eq(err.msg, "nesting deeper than 200");
    cr_expect_eq(v.type, V_NIL);
    free(deep);
}

Test(json, writer_depth_limit_matches_the_reader)
{
    /* VAL_MAX_DEPTH lists inside each other write; one more does not */
    ObjList *outer = list_new(&heap, 0), *inner = outer;
    for (int d = 1; d < VAL_MAX_DEPTH; d++) {
        ObjList *l = list_new(&heap, 0);
        list_push(inner, val_obj(l));
        inner = l;
    }
    char *want = nested(VAL_MAX_DEPTH, '[', ']');
    cr_expect_str_eq(encode(val_obj(outer), JSON_STRICT), want);
    free(want);
    ObjList *extra = list_new(&heap, 0);
    list_push(inner, val_obj(extra));
    StrBuf b;
    sb_init(&b);
    Value bad = val_nil();
    cr_expect_eq(json_encode(&b, val_obj(outer), JSON_STRICT, &bad), -1);
    cr_expect_eq(bad.as.obj, (Obj *)extra);
    sb_free(&b);
    /* a run's result writes what print shows there */
    cr_expect(strstr(encode(val_obj(outer), JSON_RESULT), "[\"[...]\"]") != NULL);
}

Test(json, self_containing_values_terminate)
{
    ObjMap *m = map_new(&heap);
    map_set(m, S("me"), val_obj(m));
    cr_expect_str_eq(encode(val_obj(m), JSON_STRICT), "<error>");
    cr_expect(strstr(encode(val_obj(m), JSON_RESULT), "{\"me\":\"{...}\"}") != NULL);
}

/* ---- errors with line:col ---- */

Test(json, errors_name_line_and_column)
{
    static const struct { const char *text; int line, col; const char *msg; } cases[] = {
        {"", 1, 1, "expected a value, found end of input"},
        {"{\"a\" 1}", 1, 6, "expected ':' after object key"},
        {"[1,\n  ", 2, 3, "expected a value, found end of input"},
        {"1 2", 1, 3, "unexpected text after the JSON value"},
        {"nul", 1, 1, "unexpected character 'n'"},
        {"-x", 1, 2, "bad number: digits expected"},
        {"1.", 1, 3, "bad number: digits expected after '.'"},
        {"1e+", 1, 4, "bad number: digits expected in exponent"},
        {"{\n  \"a\": 1,\n  \"b\" 2\n}", 3, 7, "expected ':' after object key"},
        {"[1 2]", 1, 4, "expected ',' or ']' in array, found unexpected character"},
        {"{1: 2}", 1, 2, "expected a string key in object, found unexpected character"},
        {"\"abc", 1, 5, "unterminated string"},
        {"\"a\nb\"", 1, 3, "control character in string"},
        {"\"\\q\"", 1, 3, "bad escape \\q"},
        {"\"\\u12x4\"", 1, 4, "bad \\u escape"},
        {"\"\\u12", 1, 4, "incomplete \\u escape"},
        {"\"日本\" x", 1, 6, "unexpected text after the JSON value"},   /* columns count code points */
        {"[\"é\", @]", 1, 7, "unexpected character '@'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Value v;
        JsonError err;
        cr_expect_eq(json_decode(&heap, cases[i].text, strlen(cases[i].text), &v, &err), -1, "%s", cases[i].text);
        cr_expect_eq(err.line, cases[i].line, "%s: line %d", cases[i].text, err.line);
        cr_expect_eq(err.col, cases[i].col, "%s: col %d", cases[i].text, err.col);
        cr_expect_str_eq(err.msg, cases[i].msg, "%s", cases[i].text);
    }
}

/* ---- UTF-8 ---- */

Test(json, invalid_utf8_is_refused_where_it_stands)
{
    static const struct { const char *text; int col; const char *msg; } cases[] = {
        {"\"a\xff\"", 3, "invalid UTF-8 (byte 0xFF)"},
        {"\"\xc0\xaf\"", 2, "invalid UTF-8 (byte 0xC0)"},          /* overlong '/' */
        {"\"ok \xed\xa0\x80\"", 5, "invalid UTF-8 (byte 0xED)"},   /* an encoded surrogate */
        {"\"\xe6\x97\"", 2, "invalid UTF-8 (byte 0xE6)"},          /* truncated */
        {"\xff", 1, "unexpected byte 0xFF"},
        {"\"\\ud800\"", 2, "unpaired surrogate in \\u escape"},
        {"\"\\udc00\"", 2, "unpaired surrogate in \\u escape"},
        {"\"ab\\ud800\\u0041\"", 4, "unpaired surrogate in \\u escape"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Value v;
        JsonError err;
        cr_expect_eq(json_decode(&heap, cases[i].text, strlen(cases[i].text), &v, &err), -1, "case %zu", i);
        cr_expect_eq(err.col, cases[i].col, "case %zu: col %d", i, err.col);
        cr_expect_str_eq(err.msg, cases[i].msg, "case %zu", i);
    }
    /* escapes give valid UTF-8, a surrogate pair one code point */
    Value v = decode_ok("\"\\u00e9\\ud83d\\ude00\"");
    cr_expect_str_eq(AS_STRING(v)->chars, "é😀");
    cr_expect_eq(AS_STRING(v)->nchars, 2);
}

Test(json, writer_refuses_invalid_utf8_or_replaces_it)
{
    Value s = val_obj(str_new(&heap, "a\xff" "b", 3));
    StrBuf b;
    sb_init(&b);
    Value bad = val_nil();
    cr_expect_eq(json_encode(&b, s, JSON_STRICT, &bad), -1);
    cr_expect_eq(bad.as.obj, s.as.obj);
    sb_free(&b);
    cr_expect_str_eq(encode(s, JSON_RESULT), "\"a\xEF\xBF\xBD" "b\"");
    sb_init(&b);
    cr_expect_eq(json_quote(&b, "\xc3", 1), -1);   /* truncated at the end */
    cr_expect_str_eq(b.data, "\"\xEF\xBF\xBD\"");
    sb_free(&b);
}

/* ---- JSON_RESULT: values JSON cannot hold ---- */

Test(json, result_mode_writes_what_strict_refuses_as_text)
{
    ObjNative *n = heap_alloc_obj(&heap, sizeof(ObjNative), OBJ_NATIVE);
    n->name = "print";
    ObjState *st = state_new(&heap);
    state_append(st, "Hi", 2);
    map_set(st->vars, S("x"), val_int(1));
    ObjList *l = list_new(&heap, 0);
    list_push(l, val_float(NAN));
    list_push(l, val_float(-INFINITY));
    list_push(l, val_obj(n));
    list_push(l, val_obj(st));
    cr_expect_str_eq(encode(val_obj(l), JSON_STRICT), "<error>");
    cr_expect_str_eq(encode(val_obj(l), JSON_RESULT),
                     "[\"NaN\",\"-Infinity\",\"<fn print>\",{\"text\":\"Hi\",\"vars\":{\"x\":1}}]");
    /* json_encode() writes a state as its text */
    cr_expect_str_eq(encode(val_obj(st), JSON_STRICT), "\"Hi\"");
}

/* ---- json_copy ---- */

Test(json, copy_is_deep_and_onto_the_other_heap)
{
    Value v = decode_ok("{\"a\":[1,{\"b\":\"s\"}],\"c\":2.5}");
    Heap other;
    heap_init(&other);
    Value c;
    cr_assert_eq(json_copy(&other, v, &c), 0);
    cr_expect(val_equal(c, v));
    cr_expect_neq(c.as.obj, v.as.obj);
    Value a;
    cr_assert(map_get_cstr(AS_MAP(c), "a", &a));
    list_push(AS_LIST(a), val_int(3));   /* changing the copy leaves v alone */
    cr_expect(!val_equal(c, v));
    cr_expect_eq(other.nobjects, 7);     /* 2 maps, a list, 4 strings: all on `other` */
    heap_free_all(&other);

    heap_init(&other);
    ObjNative *n = heap_alloc_obj(&heap, sizeof(ObjNative), OBJ_NATIVE);
    cr_expect_eq(json_copy(&other, val_obj(n), &c), -1);
    cr_expect_eq(c.type, V_NIL);
    heap_free_all(&other);
}

/* ---- sgl_args: the public face of the reader ---- */

TestSuite(args);

static char *run_with(sgl_args *args, const char *src)
{
    sgl_vm *vm = sgl_vm_new();
    sgl_program *prog = NULL;
    cr_assert_eq(sgl_compile_source(vm, "args.sgl", src, strlen(src), &prog), SGL_OK, "%s", sgl_last_error(vm));
    char *result = NULL;
    sgl_status st = sgl_run_args(vm, prog, NULL, args, &result);
    char *out = st == SGL_OK ? result : strdup(sgl_last_error(vm));
    if (st != SGL_OK) free(result);
    sgl_program_free(prog);
    sgl_vm_free(vm);
    return out;
}

Test(args, value_texts_read_as_json_else_strings)
{
    sgl_args *a = sgl_args_new();
    cr_assert_eq(sgl_args_set(a, "n", "3"), SGL_OK);
    cr_assert_eq(sgl_args_set(a, "f", "3.0"), SGL_OK);
    cr_assert_eq(sgl_args_set(a, "big", "99999999999999999999"), SGL_OK);
    cr_assert_eq(sgl_args_set(a, "s", "learning C"), SGL_OK);
    cr_assert_eq(sgl_args_set(a, "q", "\"quoted\""), SGL_OK);
    cr_assert_eq(sgl_args_set(a, "m", "{\"k\": [1, null]}"), SGL_OK);
    cr_assert_eq(sgl_args_set(a, "e", ""), SGL_OK);
    char *r = run_with(a, "fn main(n, f, big, s, q, m, e) {\n"
                          "  return [n * 2, f / 2, big * 10, s, q, m, e, f == 3]\n"
                          "}\n");
    cr_expect_str_eq(r, "{\"text\":\"\",\"vars\":{},\"value\":[6,1.5,1e+21,\"learning C\",\"quoted\",{\"k\":[1,null]},"
                        "\"\",true]}");
    free(r);
    sgl_args_free(a);
}

Test(args, set_first_wins_over_files_and_later_sets_replace)
{
    sgl_args *a = sgl_args_new();
    cr_assert_eq(sgl_args_set(a, "x", "1"), SGL_OK);
    cr_assert_eq(sgl_args_set(a, "x", "2"), SGL_OK);
    const char *doc = "{\"x\": 10, \"y\": 20}";
    cr_assert_eq(sgl_args_load_json(a, "doc.json", doc, strlen(doc)), SGL_OK);
    char *r = run_with(a, "fn main(x, y) { return [x, y] }\n");
    cr_expect_str_eq(r, "{\"text\":\"\",\"vars\":{},\"value\":[2,20]}");
    free(r);
    sgl_args_free(a);
}

Test(args, errors)
{
    sgl_args *a = sgl_args_new();
    cr_expect_eq(sgl_args_set(a, "x", "a\xff"), SGL_ERR_USAGE);
    cr_expect_str_eq(sgl_args_error(a), "argument 'x' is not valid UTF-8");
    cr_expect_eq(sgl_args_set(a, "\xff", "1"), SGL_ERR_USAGE);
    const char *bad = "{\n  \"x\" 1}";
    cr_expect_eq(sgl_args_load_json(a, "in.json", bad, strlen(bad)), SGL_ERR_USAGE);
    cr_expect_str_eq(sgl_args_error(a), "in.json:2:7: error: expected ':' after object key");
    cr_expect_eq(sgl_args_load_json(a, "in.json", "[1]", 3), SGL_ERR_USAGE);
    cr_expect_str_eq(sgl_args_error(a), "in.json: error: arguments must be a JSON object, not list");
    cr_expect_eq(sgl_args_load_file(a, "/nonexistent/args.json"), SGL_ERR_IO);
    cr_expect_str_eq(sgl_args_error(a), "/nonexistent/args.json: error: No such file or directory");
    cr_expect_eq(sgl_args_load_file(a, "/"), SGL_ERR_IO);
    /* nothing was set by the failures */
    char *r = run_with(a, "fn main(x = \"default\") { return x }\n");
    cr_expect_str_eq(r, "{\"text\":\"\",\"vars\":{},\"value\":\"default\"}");
    free(r);
    sgl_args_free(a);
}

Test(args, one_args_serves_many_runs_unchanged)
{
    sgl_args *a = sgl_args_new();
    cr_assert_eq(sgl_args_set(a, "l", "[1]"), SGL_OK);
    const char *src = "fn main(l) { append(l, 2)\n return len(l) }\n";
    for (int i = 0; i < 2; i++) {
        char *r = run_with(a, src);
        cr_expect_str_eq(r, "{\"text\":\"\",\"vars\":{},\"value\":2}");
        free(r);
    }
    sgl_args_free(a);
}

Test(args, result_text)
{
    sgl_vm *vm = sgl_vm_new();
    size_t len = 99;
    cr_expect_str_eq(sgl_result_text(vm, &len), "");
    cr_expect_eq(len, 0);
    sgl_program *prog = NULL;
    const char *src = "fn main(who) { \"Hello, ${who}\" }\n";
    cr_assert_eq(sgl_compile_source(vm, "t.sgl", src, strlen(src), &prog), SGL_OK);
    sgl_args *a = sgl_args_new();
    cr_assert_eq(sgl_args_set(a, "who", "wörld"), SGL_OK);
    cr_assert_eq(sgl_run_args(vm, prog, NULL, a, NULL), SGL_OK, "%s", sgl_last_error(vm));
    cr_expect_str_eq(sgl_result_text(vm, &len), "Hello, wörld");
    cr_expect_eq(len, strlen("Hello, wörld"));
    sgl_args_free(a);
    sgl_program_free(prog);
    sgl_vm_free(vm);
}
