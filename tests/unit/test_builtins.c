/* tests/unit/test_builtins.c — every §10 built-in, normal and error cases,
 * and json_decode. The three VM functions the built-ins call are provided
 * here as test doubles, so this test links without the interpreter. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vm/builtins.h"
#include "vm/json.h"

struct VM {
    Heap heap;
    StrBuf out;
    char err[1024];
};

static struct VM vm;

int vm_raise(struct VM *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->err, sizeof v->err, fmt, ap);
    va_end(ap);
    return -1;
}

void vm_write_out(struct VM *v, const char *s, size_t n) { sb_append(&v->out, s, n); }

Heap *vm_heap(struct VM *v) { return &v->heap; }

static void setup(void)
{
    heap_init(&vm.heap);
    sb_init(&vm.out);
    vm.err[0] = '\0';
}

static void teardown(void)
{
    heap_free_all(&vm.heap);
    sb_free(&vm.out);
}

TestSuite(builtins, .init = setup, .fini = teardown);

static Value S(const char *s) { return val_obj(str_cstr(&vm.heap, s)); }
static Value I(int64_t i) { return val_int(i); }
static Value F(double f) { return val_float(f); }

static Value L(int n, ...)
{
    ObjList *l = list_new(&vm.heap, 0);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) list_push(l, va_arg(ap, Value));
    va_end(ap);
    return val_obj(l);
}

static Value last;  /* the last call's result */

/* Calls built-in `name` and returns its result as val_to_repr text, or
 * "error: <message>". */
static const char *run(const char *name, int argc, ...)
{
    static char text[4096];
    Value args[16];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) args[i] = va_arg(ap, Value);
    va_end(ap);
    NativeFn fn = builtin_find(name);
    cr_assert_not_null(fn, "no built-in %s", name);
    vm.err[0] = '\0';
    last = val_nil();
    if (fn(&vm, argc, args, NULL, &last) < 0) {
        snprintf(text, sizeof text, "error: %s", vm.err);
        return text;
    }
    StrBuf b;
    sb_init(&b);
    val_to_repr(&b, last);
    snprintf(text, sizeof text, "%s", b.data ? b.data : "");
    sb_free(&b);
    return text;
}

#define EXPECT(expected, ...) cr_expect_str_eq(run(__VA_ARGS__), expected)

Test(builtins, table_is_complete)
{
    static const char *names[] = {"print", "len", "str", "int", "float", "range", "keys", "values", "append",
                                  "join", "split", "strip", "lower", "upper", "replace", "contains",
                                  "startswith", "endswith", "format", "json_encode", "json_decode", "match",
                                  "find_all", "sub", "min", "max", "abs", "round", "sort", "error"};
    cr_expect_eq(builtin_count, (int)(sizeof names / sizeof names[0]));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) cr_expect_not_null(builtin_find(names[i]), "%s", names[i]);
    cr_expect_null(builtin_find("nope"));
}

Test(builtins, named_arguments_are_rejected)
{
    ObjMap *kw = map_new(&vm.heap);
    map_set(kw, S("sep"), S(","));
    Value args[1] = {S("x")}, out;
    cr_expect_eq(builtin_find("len")(&vm, 1, args, kw, &out), -1);
    cr_expect_str_eq(vm.err, "len() takes no named argument 'sep'");
}

Test(builtins, print)
{
    EXPECT("null", "print", 3, S("a"), I(1), L(2, S("x"), val_nil()));
    cr_expect_str_eq(vm.out.data, "a 1 [\"x\", null]\n");
    run("print", 0);
    cr_expect_str_eq(vm.out.data, "a 1 [\"x\", null]\n\n");
    run("print", 2, F(0.5), val_nil());
    cr_expect_str_eq(vm.out.data + vm.out.len - 8, "0.5 nil\n");
}

Test(builtins, len)
{
    EXPECT("5", "len", 1, S("héllo"));
    EXPECT("3", "len", 1, L(3, I(1), I(2), I(3)));
    ObjMap *m = map_new(&vm.heap);
    map_set(m, S("a"), I(1));
    EXPECT("1", "len", 1, val_obj(m));
    EXPECT("error: len() takes a string, list or map, not int", "len", 1, I(3));
    EXPECT("error: len() takes 1 argument (2 given)", "len", 2, I(3), I(4));
    EXPECT("error: len() takes 1 argument (0 given)", "len", 0);
}

Test(builtins, str)
{
    EXPECT("\"42\"", "str", 1, I(42));
    EXPECT("\"3.5\"", "str", 1, F(3.5));
    EXPECT("\"1500\"", "str", 1, F(1500.0));
    EXPECT("\"nil\"", "str", 1, val_nil());
    EXPECT("\"true\"", "str", 1, val_bool(true));
    EXPECT("\"abc\"", "str", 1, S("abc"));
    EXPECT("\"-9223372036854775808\"", "str", 1, I(INT64_MIN));
    EXPECT("\"0\"", "str", 1, I(0));
    cr_expect_eq(AS_STRING(last)->nchars, 1);
    EXPECT("\"[1, \\\"a\\\"]\"", "str", 1, L(2, I(1), S("a")));
}

Test(builtins, int_conversion)
{
    EXPECT("42", "int", 1, S("42"));
    EXPECT("-7", "int", 1, S("  -7\n"));
    EXPECT("3", "int", 1, F(3.9));
    EXPECT("-3", "int", 1, F(-3.9));
    EXPECT("5", "int", 1, I(5));
    EXPECT("1", "int", 1, val_bool(true));
    EXPECT("error: int() cannot convert \"3.5\" to int", "int", 1, S("3.5"));
    EXPECT("error: int() cannot convert \"\" to int", "int", 1, S(""));
    EXPECT("error: int() cannot convert \"abc\" to int", "int", 1, S("abc"));
    EXPECT("error: int() value \"99999999999999999999\" does not fit in an int", "int", 1, S("99999999999999999999"));
    EXPECT("error: int() cannot convert NaN to int", "int", 1, F(NAN));
    EXPECT("error: int() result 1e+30 does not fit in an int", "int", 1, F(1e30));
    EXPECT("error: int() cannot convert nil to int", "int", 1, val_nil());
}

Test(builtins, float_conversion)
{
    EXPECT("2.5", "float", 1, S("2.5"));
    EXPECT("0.001", "float", 1, S(" 1e-3 "));
    EXPECT("2", "float", 1, I(2));
    cr_expect_eq(last.type, V_FLOAT);
    EXPECT("error: float() cannot convert \"2.5x\" to float", "float", 1, S("2.5x"));
    EXPECT("error: float() cannot convert \"\" to float", "float", 1, S(""));
    EXPECT("error: float() cannot convert list to float", "float", 1, L(0));
}

Test(builtins, range)
{
    EXPECT("[0, 1, 2]", "range", 1, I(3));
    EXPECT("[]", "range", 1, I(0));
    EXPECT("[]", "range", 1, I(-2));
    EXPECT("[2, 3, 4]", "range", 2, I(2), I(5));
    EXPECT("[5, 3, 1]", "range", 3, I(5), I(0), I(-2));
    EXPECT("error: range() takes an int, not float", "range", 1, F(2.0));
    EXPECT("error: range() step must not be zero", "range", 3, I(0), I(5), I(0));
    EXPECT("error: range() of 9223372036854775807 items is too large", "range", 1, I(INT64_MAX));
}

Test(builtins, keys_values_append)
{
    ObjMap *m = map_new(&vm.heap);
    map_set(m, S("b"), I(2));
    map_set(m, S("a"), I(1));
    map_set(m, S("c"), I(3));
    map_delete(m, S("a"));
    EXPECT("[\"b\", \"c\"]", "keys", 1, val_obj(m));
    EXPECT("[2, 3]", "values", 1, val_obj(m));
    EXPECT("error: keys() takes a map, not list", "keys", 1, L(0));
    Value l = L(1, I(1));
    EXPECT("null", "append", 2, l, S("x"));
    cr_expect_eq(AS_LIST(l)->len, 2);
    EXPECT("error: append() takes a list, not string", "append", 2, S("x"), I(1));
}

Test(builtins, join_split)
{
    EXPECT("\"a, b, c\"", "join", 2, L(3, S("a"), S("b"), S("c")), S(", "));
    EXPECT("\"abc\"", "join", 1, L(3, S("a"), S("b"), S("c")));
    EXPECT("\"\"", "join", 2, L(0), S(","));
    EXPECT("\"x\"", "join", 2, L(1, S("x")), S(","));
    EXPECT("\"é·日·\"", "join", 2, L(3, S("é"), S("日"), S("")), S("·"));
    cr_expect_eq(AS_STRING(last)->nchars, 4);
    cr_expect_eq(AS_STRING(last)->len, 9);
    EXPECT("error: join() list item 1 is int, not a string (use str())", "join", 2, L(2, S("a"), I(1)), S(","));
    EXPECT("[\"a\", \"b\", \"\", \"c\"]", "split", 2, S("a,b,,c"), S(","));
    EXPECT("[\"\"]", "split", 2, S(""), S(","));
    EXPECT("[\"a\", \"b\"]", "split", 1, S("  a \t b\n"));
    EXPECT("[\"h\", \"é\", \"!\"]", "split", 2, S("hé!"), S(""));
    EXPECT("[\"a\", \"c\"]", "split", 2, S("a::c"), S("::"));
    EXPECT("error: split() takes a string as separator, not int", "split", 2, S("a"), I(1));
}

Test(builtins, strip_lower_upper)
{
    EXPECT("\"hi there\"", "strip", 1, S("  hi there \n\t"));
    EXPECT("\"\"", "strip", 1, S("   "));
    EXPECT("\"hello é\"", "lower", 1, S("HeLLo é"));
    EXPECT("\"HELLO é\"", "upper", 1, S("hello é"));
    cr_expect(val_equal(last, S("HELLO é")), "hash recomputed");
    cr_expect_eq(AS_STRING(last)->nchars, 7);
    EXPECT("\"@AZ[`AZ{\"", "upper", 1, S("@AZ[`az{"));  /* only a-z move */
    EXPECT("\"@az[`az{\"", "lower", 1, S("@AZ[`az{"));
    EXPECT("error: upper() takes a string, not nil", "upper", 1, val_nil());
}

Test(builtins, replace)
{
    EXPECT("\"a-b-c\"", "replace", 3, S("a b c"), S(" "), S("-"));
    EXPECT("\"xx\"", "replace", 3, S("aaaa"), S("aa"), S("x"));
    EXPECT("\"abc\"", "replace", 3, S("abc"), S("z"), S("y"));
    EXPECT("\"-a-é-\"", "replace", 3, S("aé"), S(""), S("-"));
    EXPECT("error: replace() takes a string as new text, not int", "replace", 3, S("a"), S("a"), I(1));
}

Test(builtins, contains_startswith_endswith)
{
    EXPECT("true", "contains", 2, S("hello"), S("ell"));
    EXPECT("false", "contains", 2, S("hello"), S("xyz"));
    EXPECT("true", "contains", 2, S("hello"), S(""));
    EXPECT("true", "contains", 2, L(2, I(1), S("a")), S("a"));
    EXPECT("true", "contains", 2, L(2, I(1), S("a")), F(1.0));
    EXPECT("false", "contains", 2, L(1, I(1)), I(2));
    ObjMap *m = map_new(&vm.heap);
    map_set(m, S("k"), I(1));
    EXPECT("true", "contains", 2, val_obj(m), S("k"));
    EXPECT("false", "contains", 2, val_obj(m), L(0));
    EXPECT("error: contains() takes a string as to look for in a string, not int", "contains", 2, S("a"), I(1));
    EXPECT("error: contains() takes a string, list or map, not int", "contains", 2, I(1), I(1));
    EXPECT("true", "startswith", 2, S("hello"), S("he"));
    EXPECT("false", "startswith", 2, S("hello"), S("lo"));
    EXPECT("false", "startswith", 2, S("h"), S("hello"));
    EXPECT("true", "endswith", 2, S("hello"), S("lo"));
    EXPECT("false", "endswith", 2, S("hello"), S("he"));
    EXPECT("error: endswith() takes a string as suffix, not nil", "endswith", 2, S("a"), val_nil());
}

Test(builtins, format)
{
    EXPECT("\"1 and b\"", "format", 3, S("{} and {}"), I(1), S("b"));
    EXPECT("\"{} [1, 2.5]\"", "format", 2, S("{{}} {}"), L(2, I(1), F(2.5)));
    EXPECT("\"no placeholders\"", "format", 1, S("no placeholders"));
    EXPECT("error: format() has more {} placeholders than arguments (1)", "format", 2, S("{} {}"), I(1));
    EXPECT("error: format() got 2 arguments for 1 {} placeholders", "format", 3, S("{}"), I(1), I(2));
    EXPECT("error: format() takes a string as format, not int", "format", 1, I(1));
}

Test(builtins, json_encode)
{
    ObjMap *m = map_new(&vm.heap);
    map_set(m, S("a"), I(1));
    map_set(m, S("b"), L(3, I(1), F(2.0), val_nil()));
    map_set(m, S("s"), S("q\"\n"));
    EXPECT("\"{\\\"a\\\":1,\\\"b\\\":[1,2,null],\\\"s\\\":\\\"q\\\\\\\"\\\\n\\\"}\"", "json_encode", 1, val_obj(m));
    cr_expect_str_eq(AS_STRING(last)->chars, "{\"a\":1,\"b\":[1,2,null],\"s\":\"q\\\"\\n\"}");
    EXPECT("\"true\"", "json_encode", 1, val_bool(true));
    ObjNative *n = heap_alloc_obj(&vm.heap, sizeof(ObjNative), OBJ_NATIVE);
    n->name = "f";
    EXPECT("error: json_encode() cannot encode a function", "json_encode", 1, L(1, val_obj(n)));
    EXPECT("error: json_encode() cannot encode NaN", "json_encode", 1, F(NAN));
}

Test(builtins, json_decode)
{
    EXPECT("{\"b\": 1, \"a\": [true, false, null, 2.5, \"x\"]}", "json_decode", 1,
           S(" {\"b\": 1, \"a\": [true, false, null, 2.5, \"x\"]} "));
    EXPECT("12345678901234567000", "json_decode", 1, S("12345678901234567890"));
    cr_expect_eq(last.type, V_FLOAT);
    EXPECT("-42", "json_decode", 1, S("-42"));
    cr_expect_eq(last.type, V_INT);
    EXPECT("1", "json_decode", 1, S("1.0"));
    cr_expect_eq(last.type, V_FLOAT);
    EXPECT("\"é😀\\n\"", "json_decode", 1, S("\"\\u00e9\\ud83d\\ude00\\n\""));
    EXPECT("{\"k\": 2}", "json_decode", 1, S("{\"k\": 1, \"k\": 2}"));
    EXPECT("error: json_decode(): invalid JSON at line 1, column 6: expected ':' after object key", "json_decode", 1,
           S("{\"a\" 1}"));
    EXPECT("error: json_decode(): invalid JSON at line 2, column 3: expected a value, found end of input",
           "json_decode", 1, S("[1,\n  "));
    EXPECT("error: json_decode(): invalid JSON at line 1, column 3: unexpected text after the JSON value",
           "json_decode", 1, S("1 2"));
    EXPECT("error: json_decode(): invalid JSON at line 1, column 1: unexpected character 'n'", "json_decode", 1,
           S("nul"));
    EXPECT("error: json_decode(): invalid JSON at line 1, column 2: bad number: digits expected", "json_decode", 1, S("-x"));
    EXPECT("error: json_decode(): invalid JSON at line 1, column 1: expected a value, found end of input",
           "json_decode", 1, S(""));
    EXPECT("error: json_decode() takes a string, not int", "json_decode", 1, I(1));
}

Test(builtins, json_decode_depth_and_round_trip)
{
    char deep[2000];
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 1000);
    Value v;
    JsonError err;
    cr_expect_eq(json_decode(&vm.heap, deep, sizeof deep, &v, &err), -1);
    cr_expect(strstr(err.msg, "nesting deeper than 200") != NULL, "%s", err.msg);

    const char *doc = "{\"name\":\"x\",\"n\":[1,2.5,-3e-7,1e+21],\"o\":{\"z\":null,\"a\":true}}";
    cr_assert_eq(json_decode(&vm.heap, doc, strlen(doc), &v, &err), 0, "%s", err.msg);
    StrBuf b;
    sb_init(&b);
    cr_assert_eq(json_encode(&b, v, JSON_STRICT, NULL), 0);
    cr_expect_str_eq(b.data, "{\"name\":\"x\",\"n\":[1,2.5,-3e-7,1e+21],\"o\":{\"z\":null,\"a\":true}}");
    sb_free(&b);
}

Test(builtins, match)
{
    EXPECT("[\"ab12\", \"ab\", \"12\"]", "match", 2, S("([a-z]+)(\\d+)"), S("xx ab12 cd34"));
    EXPECT("null", "match", 2, S("\\d+"), S("no digits"));
    EXPECT("[\"b\", null, \"b\"]", "match", 2, S("(a)|(b)"), S("b"));
    EXPECT("[\"é\"]", "match", 2, S("\\w"), S("é"));
    ObjRegex *re = heap_alloc_obj(&vm.heap, sizeof(ObjRegex), OBJ_REGEX);
    re->source = str_cstr(&vm.heap, "(\\d+)");
    EXPECT("[\"7\", \"7\"]", "match", 2, val_obj(re), S("a7"));
    cr_expect_not_null(re->code, "compiled code is cached");
    EXPECT("[\"8\", \"8\"]", "match", 2, val_obj(re), S("8"));
    EXPECT("error: match(): bad regex at offset 1: missing closing parenthesis", "match", 2, S("("), S("x"));
    EXPECT("error: match() takes a regex or string as the pattern, not int", "match", 2, I(1), S("x"));
    EXPECT("error: match() takes a string as subject, not int", "match", 2, S("x"), I(1));
}

Test(builtins, find_all)
{
    EXPECT("[\"1\", \"22\", \"333\"]", "find_all", 2, S("\\d+"), S("a1b22c333"));
    EXPECT("[]", "find_all", 2, S("\\d+"), S("abc"));
    EXPECT("[\"\", \"\", \"\"]", "find_all", 2, S("x*"), S("ab"));
    EXPECT("[\"\", \"a\", \"\"]", "find_all", 2, S("x*|a"), S("a"));
    EXPECT("[\"é\", \"ü\"]", "find_all", 2, S("[^a-z]"), S("aébü"));
}

Test(builtins, sub)
{
    EXPECT("\"b-a d-c\"", "sub", 3, S("(\\w)(\\w)"), S("$2-$1"), S("ab cd"));
    EXPECT("\"x x x\"", "sub", 3, S("\\d+"), S("x"), S("1 22 333"));
    EXPECT("\"cost: $5\"", "sub", 3, S("N"), S("$$5"), S("cost: N"));
    EXPECT("\"[]b\"", "sub", 3, S("(x)?a"), S("[$1]"), S("ab"));
    /* output much longer than the input: the buffer grows */
    EXPECT("\"0123456789012345678901234567890123456789012345678901234567890123456789"
           "0123456789012345678901234567890123456789012345678901234567890123456789\"",
           "sub", 3, S("a"), S("0123456789012345678901234567890123456789012345678901234567890123456789"), S("aa"));
    cr_expect_str_eq(run("sub", 3, S("a"), S("$9"), S("a")), "error: sub(): unknown substring");
    EXPECT("error: sub() takes a string as replacement, not int", "sub", 3, S("a"), I(1), S("a"));
}

Test(builtins, min_max)
{
    EXPECT("1", "min", 3, I(3), I(1), I(2));
    EXPECT("3", "max", 3, I(3), I(1), I(2));
    EXPECT("0.5", "min", 1, L(3, I(3), F(0.5), I(2)));
    EXPECT("\"b\"", "max", 2, S("a"), S("b"));
    EXPECT("7", "max", 1, I(7));
    EXPECT("error: min() of an empty list", "min", 1, L(0));
    EXPECT("error: min() takes at least 1 argument (0 given)", "min", 0);
    EXPECT("error: max() cannot compare int with string", "max", 2, I(1), S("a"));
    EXPECT("error: max() can only compare numbers or strings, not nil", "max", 2, I(1), val_nil());
}

Test(builtins, abs_round)
{
    EXPECT("5", "abs", 1, I(-5));
    EXPECT("2.5", "abs", 1, F(-2.5));
    EXPECT("error: integer overflow in abs()", "abs", 1, I(INT64_MIN));
    EXPECT("error: abs() takes a number, not string", "abs", 1, S("1"));
    EXPECT("3", "round", 1, F(2.5));
    EXPECT("-3", "round", 1, F(-2.5));
    EXPECT("2", "round", 1, F(2.4999));
    EXPECT("4", "round", 1, I(4));
    cr_expect_eq(last.type, V_INT);
    EXPECT("error: round() result Infinity does not fit in an int", "round", 1, F(INFINITY));
    EXPECT("error: round() takes a number, not nil", "round", 1, val_nil());
}

Test(builtins, sort)
{
    Value src = L(5, I(3), F(1.5), I(-2), I(10), F(1.5));
    EXPECT("[-2, 1.5, 1.5, 3, 10]", "sort", 1, src);
    cr_expect_str_eq(run("str", 1, src), "\"[3, 1.5, -2, 10, 1.5]\"", "the original is unchanged");
    EXPECT("[\"B\", \"a\", \"b\", \"é\"]", "sort", 1, L(4, S("b"), S("é"), S("a"), S("B")));
    EXPECT("[]", "sort", 1, L(0));
    /* stable: 1 and 1.0 are equal and keep their order */
    EXPECT("[1, 1, 2]", "sort", 1, L(3, I(2), I(1), F(1.0)));
    cr_expect_eq(AS_LIST(last)->items[0].type, V_INT);
    cr_expect_eq(AS_LIST(last)->items[1].type, V_FLOAT);
    EXPECT("error: sort() cannot compare int with string", "sort", 1, L(2, I(1), S("a")));
    EXPECT("error: sort() takes a list, not string", "sort", 1, S("ab"));

    /* a bigger one, checked against the order */
    ObjList *big = list_new(&vm.heap, 0);
    for (int i = 0; i < 5000; i++) list_push(big, I((i * 7919) % 5003));
    run("sort", 1, val_obj(big));
    ObjList *sorted = AS_LIST(last);
    cr_assert_eq(sorted->len, 5000);
    for (size_t i = 1; i < sorted->len; i++) cr_assert_leq(sorted->items[i - 1].as.i, sorted->items[i].as.i);
}

Test(builtins, error)
{
    EXPECT("error: something broke", "error", 1, S("something broke"));
    EXPECT("error: [1, 2]", "error", 1, L(2, I(1), I(2)));
    EXPECT("error: error() takes 1 argument (0 given)", "error", 0);
}
