/* tests/unit/test_vm.c — the interpreter: operators, calls, closures,
 * errors with positions, the prompt state, model calls through the
 * scripted backend, collection under load and many waiting fibers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "run_helper.h"
#include "constrain/constrain.h"
#include "script_backend.h"

static Run R;

static void setup(void) { run_init(&R, NULL); }
static void teardown(void) { run_done(&R); }

TestSuite(vm, .init = setup, .fini = teardown);

/* Runs main, expects success and the given print output. */
static void expect_out(const char *src, const char *want)
{
    sgl_status st = run_src(&R, src, NULL, NULL);
    cr_assert_eq(st, SGL_OK, "status %d: %s", st, R.error ? R.error : "");
    cr_assert_str_eq(R.out, want);
}

/* Runs main, expects a runtime error containing each fragment. */
static void expect_error(const char *src, sgl_status want_st, const char *frag1, const char *frag2)
{
    sgl_status st = run_src(&R, src, NULL, NULL);
    cr_assert_eq(st, want_st, "status %d (want %d): %s", st, want_st, R.error ? R.error : "(no error)");
    cr_assert(strstr(R.error, frag1), "error lacks '%s': %s", frag1, R.error);
    if (frag2) cr_assert(strstr(R.error, frag2), "error lacks '%s': %s", frag2, R.error);
}

/* ---- §3 values and operators ---- */

Test(vm, arithmetic)
{
    expect_out("fn main() {\n"
               "  print(7 / 2, 6 / 2, 7 % 3, -7 % 3, 7 % -3, 7.5 % 2, -7.5 % 2)\n"
               "  print(1 + 2 * 3, 2 - 3 - 4, 2 * 3.5, 10 - 0.5, -(3))\n"
               "  let big = 4611686018427387904\n"
               "  print(big + (big - 1), -9223372036854775807 - 1)\n"
               "}\n",
               "3.5 3 1 2 -2 1.5 0.5\n7 -5 7 9.5 -3\n9223372036854775807 -9223372036854775808\n");
}

Test(vm, integer_overflow_is_an_error)
{
    expect_error("fn main() {\n  let x = 9223372036854775807\n  print(x * 2)\n}\n", SGL_ERR_RUNTIME,
                 "test.sgl:3:", "overflow");
    expect_error("fn main() {\n  let x = -9223372036854775807 - 1\n  print(-x)\n}\n", SGL_ERR_RUNTIME,
                 "test.sgl:3:", "overflow");
    expect_error("fn main() {\n  let x = -9223372036854775807 - 1\n  print(x - 1)\n}\n", SGL_ERR_RUNTIME,
                 "test.sgl:3:", "overflow");
}

Test(vm, division_by_zero)
{
    expect_error("fn main() {\n  print(1 / 0)\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:", "division by zero");
    expect_error("fn main() {\n  print(1 % 0)\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:", "modulo by zero");
    expect_out("fn main() { print(-9223372036854775807 % -1) }\n", "0\n");
}

Test(vm, strings_and_lists_join_with_plus)
{
    expect_out("fn main() { print(\"ab\" + \"cd\", [1] + [2, 3], len([1] + [])) }\n", "abcd [1, 2, 3] 1\n");
    expect_error("fn main() {\n  print(\"n=\" + 3)\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:", "use str()");
    expect_error("fn main() {\n  print(3.5 + \"x\")\n}\n", SGL_ERR_RUNTIME, "cannot add float and string", NULL);
    expect_error("fn main() {\n  print([1] - [1])\n}\n", SGL_ERR_RUNTIME, "cannot subtract list and list", NULL);
}

Test(vm, comparisons_and_truth)
{
    expect_out("fn main() {\n"
               "  print(1 < 2.5, 2.5 <= 2, \"a\" < \"ab\", \"b\" > \"ab\", 3 >= 3, 1 == 1.0, [1, {\"a\": nil}] == [1, {\"a\": nil}])\n"
               "  print(not 0, not \"\", not [], not {}, not nil, not \"x\", not 0.5)\n"
               "  print(0 or \"d\", 5 and 6, nil or false, 1 != 2)\n"
               "  let x = 5\n"
               "  print(x > 3 and x < 10, 3 < x, -1 > x, x == 5 ? \"five\" : \"other\")\n"
               "}\n",
               "true false true true true true true\n"
               "true true true true true false false\n"
               "d 6 false true\n"
               "true true false five\n");
    expect_error("fn main() {\n  print(1 < \"2\")\n}\n", SGL_ERR_RUNTIME, "cannot compare", "test.sgl:2:");
}

Test(vm, membership)
{
    expect_out("fn main() {\n"
               "  print(2 in [1, 2], \"k\" in {\"k\": 1}, \"ell\" in \"hello\", 5 in [1], [1] in [[1]], \"\" in \"a\")\n"
               "}\n",
               "true true true false true true\n");
    expect_error("fn main() {\n  print(1 in \"abc\")\n}\n", SGL_ERR_RUNTIME, "needs a string on the left", NULL);
}

Test(vm, ranges)
{
    expect_out("fn main() {\n"
               "  let r = 2..5\n"
               "  print(r, 3..3, 5..2, 1 in 0..3)\n"
               "  let t = 0\n"
               "  for i in 0..100 { t += i }\n"
               "  let lo = 3\n"
               "  for i in lo..lo + 2 { t += i }\n"
               "  print(t)\n"
               "}\n",
               "[2, 3, 4] [] [] true\n4957\n");
    expect_error("fn main() {\n  for i in 0..2.5 { print(i) }\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:", "ints");
}

Test(vm, indexing)
{
    expect_out("fn main() {\n"
               "  let l = [10, 20, 30]\n"
               "  print(l[0], l[-1], l[-3], \"héllo\"[1], \"héllo\"[-1], \"abc\"[0])\n"
               "  l[-1] = 99\n"
               "  let m = {\"a\": 1}\n"
               "  m.b = 2\n"
               "  m[3] = \"three\"\n"
               "  print(l, m, m.a, m[3])\n"
               "}\n",
               "10 30 10 é o a\n[10, 20, 99] {\"a\": 1, \"b\": 2, \"3\": \"three\"} 1 three\n");
    expect_error("fn main() {\n  let l = [1]\n  print(l[-2])\n}\n", SGL_ERR_RUNTIME, "test.sgl:3:", "out of range");
    expect_error("fn main() {\n  let m = {}\n  print(m[\"zz\"])\n}\n", SGL_ERR_RUNTIME, "test.sgl:3:",
                 "key \"zz\" not in map");
    expect_error("fn main() {\n  let m = {}\n  print(m.zz)\n}\n", SGL_ERR_RUNTIME, "test.sgl:3:", "not in map");
    expect_error("fn main() {\n  let s = \"abc\"\n  s[0] = \"x\"\n}\n", SGL_ERR_RUNTIME, "immutable", NULL);
    expect_error("fn main() {\n  print([1][1.0])\n}\n", SGL_ERR_RUNTIME, "must be an int", NULL);
    expect_error("fn main() {\n  let m = {}\n  m[[1]] = 2\n}\n", SGL_ERR_RUNTIME, "cannot be a map key", NULL);
}

Test(vm, loops)
{
    expect_out("fn main() {\n"
               "  let out = []\n"
               "  for k in {\"x\": 1, \"y\": 2} { append(out, k) }\n"
               "  for c in \"añb\" { append(out, c) }\n"
               "  let i = 0\n"
               "  while i < 10 {\n"
               "    i += 1\n"
               "    if i % 2 == 0 { continue }\n"
               "    if i > 7 { break }\n"
               "    append(out, i)\n"
               "  }\n"
               "  let l = [1, 2]\n"
               "  for x in l { if x < 4 { append(l, x + 2) } }\n"
               "  print(out, l)\n"
               "}\n",
               "[\"x\", \"y\", \"a\", \"ñ\", \"b\", 1, 3, 5, 7] [1, 2, 3, 4, 5]\n");
    expect_error("fn main() {\n  for x in 5 { print(x) }\n}\n", SGL_ERR_RUNTIME, "cannot iterate over int", NULL);
}

/* ---- §5 functions ---- */

Test(vm, closures_share_captured_variables)
{
    expect_out("fn pair() {\n"
               "  let n = 0\n"
               "  let inc = fn() { n += 1\n return n }\n"
               "  let get = fn() { return n }\n"
               "  return [inc, get]\n"
               "}\n"
               "fn main() {\n"
               "  let p = pair()\n"
               "  let q = pair()\n"
               "  p[0]()\n  p[0]()\n  q[0]()\n"
               "  print(p[1](), q[1]())\n"
               "  let fs = []\n"
               "  for i in 0..3 { append(fs, fn() { return i * 10 }) }\n"
               "  let gs = []\n"
               "  for x in [\"a\", \"b\"] { let y = x + \"!\"\n append(gs, fn() { return y }) }\n"
               "  print(fs[0](), fs[1](), fs[2](), gs[0](), gs[1]())\n"
               "  let total = 0\n"
               "  let add = fn(v) { total += v }\n"
               "  add(3)\n  add(4)\n"
               "  print(total)\n"
               "}\n",
               "2 1\n0 10 20 a! b!\n7\n");
}

Test(vm, nested_closures_and_recursion)
{
    expect_out("fn main() {\n"
               "  let a = 1\n"
               "  let f = fn() {\n"
               "    let b = 2\n"
               "    return fn() { a += 1\n return a + b }\n"
               "  }\n"
               "  let g = f()\n"
               "  print(g(), g(), a)\n"
               "  let fact = fn(n) { return n <= 1 ? 1 : n * fact(n - 1) }\n"
               "  print(fact(20))\n"
               "}\n",
               "4 5 3\n2432902008176640000\n");
}

Test(vm, upvalues_survive_stack_growth)
{
    /* the closure's variable lives on a stack that is reallocated by deep recursion */
    expect_out("fn deep(n, f) {\n"
               "  if n == 0 { return f() }\n"
               "  return deep(n - 1, f)\n"
               "}\n"
               "fn main() {\n"
               "  let v = 41\n"
               "  let f = fn() { v += 1\n return v }\n"
               "  print(deep(5000, f), v)\n"
               "}\n",
               "42 42\n");
}

Test(vm, defaults_and_named_arguments)
{
    expect_out("fn f(a, b = 2, c = a + b) { return [a, b, c] }\n"
               "fn g(x = [], y = \"d\") { append(x, 1)\n return x }\n"
               "fn main() {\n"
               "  print(f(1), f(1, 5), f(c: 0, a: 7), f(1, c: 9), f(b: 1, a: 1))\n"
               "  print(g(), g(), g(y: nil))\n"
               "}\n",
               "[1, 2, 3] [1, 5, 6] [7, 2, 0] [1, 2, 9] [1, 1, 2]\n[1] [1] [1]\n");
    expect_error("fn f(a) { return a }\nfn main() {\n  f(1, b: 2)\n}\n", SGL_ERR_RUNTIME, "test.sgl:3:",
                 "no parameter named 'b'");
    expect_error("fn f(a, b) { return a }\nfn main() {\n  f(1)\n}\n", SGL_ERR_RUNTIME, "test.sgl:3:",
                 "missing argument 'b'");
    expect_error("fn f(a) { return a }\nfn main() {\n  f(1, 2)\n}\n", SGL_ERR_RUNTIME, "test.sgl:3:",
                 "takes 1 argument but 2 were given");
    expect_error("fn f(a) { return a }\nfn main() {\n  f(1, a: 2)\n}\n", SGL_ERR_RUNTIME, "two values for 'a'",
                 NULL);
}

Test(vm, builtins_are_values)
{
    expect_out("fn main() {\n  let p = print\n  p(\"via\", len)\n  let app = fn(f, x) { return f(x) }\n"
               "  print(app(len, \"abc\"), app(str, 5) + \"!\")\n}\n",
               "via <fn len>\n3 5!\n");
}

Test(vm, errors_name_every_frame)
{
    sgl_status st = run_src(&R,
                            "fn inner(v) {\n"
                            "  return v()\n"
                            "}\n"
                            "fn outer() {\n"
                            "  return inner(3)\n"
                            "}\n"
                            "fn main() {\n"
                            "  outer()\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_ERR_RUNTIME);
    cr_assert_str_eq(R.error, "test.sgl:2:11: error: int is not a function\n"
                              "  at inner (test.sgl:2:11)\n"
                              "  at outer (test.sgl:5:15)\n"
                              "  at main (test.sgl:8:8)");
}

Test(vm, error_builtin_and_stack_overflow)
{
    expect_error("fn main() {\n  error(\"boom \" + str(1))\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:", "boom 1");
    expect_error("fn r(n) { return r(n + 1) }\nfn main() { r(0) }\n", SGL_ERR_RUNTIME, "stack overflow", NULL);
}

/* ---- §4 the prompt state ---- */

Test(vm, append_rule)
{
    sgl_status st = run_src(&R,
                            "fn item(n) { \"<${n}>\" }\n"
                            "fn main() {\n"
                            "  \"a\"\n"
                            "  1\n"
                            "  [\"not\", \"appended\"]\n"
                            "  \"b\" nil \"c\"\n"
                            "  let x = 2\n"
                            "  \" ${x} ${nil} ${[1]}\"\n"
                            "  item(1) item(2)\n"
                            "  let s = \"S\"\n"
                            "  s\n"
                            "  print(state.text, len(state.text), state.vars)\n"
                            "  return 7\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_str_eq(R.out, "abc 2 nil [1]<1><2>S 20 {}\n");
    cr_assert_str_eq(R.result, "{\"text\":\"abc 2 nil [1]<1><2>S\",\"vars\":{},\"value\":7}");
    expect_error("fn main() {\n  \"x\" 1.5\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:", "cannot append float to the prompt; use str()");
}

Test(vm, roles_without_template)
{
    expect_out("fn main() {\n"
               "  system { \"S.\" }\n"
               "  user \"Q\" nil\n"
               "  assistant { \"A\" }\n"
               "  print(state.text)\n"
               "}\n",
               "S.QA\n");
    expect_error("fn f() { user { \"x\" } }\nfn main() {\n  system { f() }\n}\n", SGL_ERR_RUNTIME,
                 "cannot start inside a system block", NULL);
}

Test(vm, top_level_code_without_main)
{
    sgl_status st = run_src(&R, "let x = 2\n\"top \" str(x)\nprint(\"ran\")\n", NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_str_eq(R.out, "ran\n");
    cr_assert_str_eq(R.result, "{\"text\":\"top 2\",\"vars\":{},\"value\":null}");
}

Test(vm, entry_and_arguments)
{
    const char *src = "fn main(topic, n = 1) { \"T: ${topic}\"\n return n * 2 }\nfn other() { return \"o\" }\n";
    cr_assert_eq(run_src(&R, src, NULL, "{\"topic\": \"x\", \"n\": 4}"), SGL_OK, "%s", R.error);
    cr_assert_str_eq(R.result, "{\"text\":\"T: x\",\"vars\":{},\"value\":8}");
    cr_assert_eq(run_src(&R, src, "other", NULL), SGL_OK);
    cr_assert_str_eq(R.result, "{\"text\":\"\",\"vars\":{},\"value\":\"o\"}");
    cr_assert_eq(run_src(&R, src, "nope", NULL), SGL_ERR_USAGE);
    cr_assert(strstr(R.error, "no function 'nope'"), "%s", R.error);
    cr_assert_eq(run_src(&R, src, NULL, "{\"topic\": 1, \"zzz\": 2}"), SGL_ERR_USAGE);
    cr_assert(strstr(R.error, "no parameter 'zzz'"), "%s", R.error);
    cr_assert_eq(run_src(&R, src, NULL, "{}"), SGL_ERR_USAGE);
    cr_assert(strstr(R.error, "missing argument 'topic'"), "%s", R.error);
    cr_assert_eq(run_src(&R, src, NULL, "[1]"), SGL_ERR_USAGE);
    cr_assert_eq(run_src(&R, "fn helper() { }\n", NULL, NULL), SGL_ERR_USAGE);
    cr_assert(strstr(R.error, "no main"), "%s", R.error);
}

Test(vm, result_json_of_odd_values)
{
    cr_assert_eq(run_src(&R, "fn main() { return [1.5, nil, print, {\"k\": [true]}, 0.1 + 0.2] }\n", NULL, NULL),
                 SGL_OK);
    cr_assert_str_eq(R.result,
                     "{\"text\":\"\",\"vars\":{},\"value\":[1.5,null,\"<fn print>\",{\"k\":[true]},0.30000000000000004]}");
}

/* ---- §6 model calls ---- */

Test(vm, no_model)
{
    expect_error("fn main() {\n  \"Q\" gen(\"a\", max_tokens: 4)\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:",
                 "no model: pass --model or run make model");
}

Test(vm, gen_records_and_appends)
{
    ScriptBackend *sb = script_new();
    sgl_vm_set_backend(R.vm, script_backend(sb));
    script_push(sb, " Paris");
    script_push(sb, "unused?");
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  \"The capital of France is\" gen(\"city\", max_tokens: 4, stop: \".\") \".\"\n"
                            "  let quiet = gen(temperature: 0, stop: [\"\\n\", \"x\"])\n"
                            "  print(state.city, state[\"city\"], len(quiet))\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_str_eq(R.out, " Paris  Paris 7\n");
    cr_assert_str_eq(R.result, "{\"text\":\"The capital of France is Paris.\",\"vars\":{\"city\":\" Paris\"},\"value\":null}");
    cr_assert_eq(script_nrequests(sb), 2);
    const ScriptRequest *q = script_request(sb, 0);
    cr_assert_str_eq(q->prompt, "The capital of France is");
    cr_assert_eq(q->max_tokens, 4);
    cr_assert_eq(q->nstop, 1);
    cr_assert_str_eq(q->stop[0], ".");
    q = script_request(sb, 1);
    cr_assert_str_eq(q->prompt, "The capital of France is Paris.");
    cr_assert_eq(q->temperature, 0);
    cr_assert_eq(q->nstop, 2);
    run_reset(&R);
    script_free(sb);
}

Test(vm, interpolation_sees_text_before_it)
{
    ScriptBackend *sb = script_new();
    sgl_vm_set_backend(R.vm, script_backend(sb));
    script_push(sb, "42");
    cr_assert_eq(run_src(&R, "fn main() { \"Answer: ${gen(\"answer\", stop: \"\\n\")}\\n\" }\n", NULL, NULL), SGL_OK,
                 "%s", R.error);
    cr_assert_str_eq(script_request(sb, 0)->prompt, "Answer: ");
    cr_assert_str_eq(R.result, "{\"text\":\"Answer: 42\\n\",\"vars\":{\"answer\":\"42\"},\"value\":null}");
    run_reset(&R);
    script_free(sb);
}

Test(vm, gen_options_and_constraints)
{
    ScriptBackend *sb = script_new();
    sgl_vm_set_backend(R.vm, script_backend(sb));
    script_push(sb, "555-1234");
    script_push(sb, "{\"a\": 1}");
    script_push(sb, " 17 ");
    script_push(sb, "2.5");
    script_push(sb, "true");
    script_push(sb, "x");
    double lp[] = {-0.5, -1.25};
    script_set_logprobs(sb, lp, 2);
    script_push_select(sb, 1);
    script_push_select(sb, 2);
    sgl_status st = run_src(&R,
                            "grammar g { root ::= \"a\" }\n"
                            "fn main() {\n"
                            "  gen(\"r\", regex: re\"[0-9]{3}-[0-9]{4}\")\n"
                            "  gen(\"j\", json: {\"type\": \"object\"})\n"
                            "  let n = gen(\"n\", type: \"int\")\n"
                            "  let f = gen(\"f\", type: \"float\")\n"
                            "  let b = gen(\"b\", type: \"bool\", grammar: nil == nil ? nil : g)\n"
                            "  gen(\"l\", logprobs: true, max_tokens: 2)\n"
                            "  let c = gen(\"c\", choices: [\"yes\", \"no\"])\n"
                            "  let s = select(\"s\", [\"A\", \"B\", \"C\"], method: \"greedy_token\")\n"
                            "  print(n + 1, f * 2, b, c, s, state.meta[\"s\"], state.logprobs.l)\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_ERR_RUNTIME, "grammar: nil must be rejected");
    cr_assert(strstr(R.error, "grammar must be a grammar block or a string, not nil"), "%s", R.error);
    run_reset(&R);
    script_free(sb);

    sb = script_new();
    sgl_vm_set_backend(R.vm, script_backend(sb));
    script_push(sb, "555-1234");
    script_push(sb, "{\"a\": 1}");
    script_push(sb, " 17 ");
    script_push(sb, "2.5");
    script_push(sb, "true");
    script_push(sb, "x");
    script_set_logprobs(sb, lp, 2);
    script_push_select(sb, 1);
    script_push_select(sb, 2);
    st = run_src(&R,
                 "grammar g { root ::= \"a\" }\n"
                 "fn main() {\n"
                 "  gen(\"r\", regex: re\"[0-9]{3}-[0-9]{4}\")\n"
                 "  gen(\"j\", json: {\"type\": \"object\"})\n"
                 "  let n = gen(\"n\", type: \"int\")\n"
                 "  let f = gen(\"f\", type: \"float\")\n"
                 "  let b = gen(\"b\", type: \"bool\")\n"
                 "  gen(\"l\", logprobs: true, max_tokens: 2, grammar: g)\n"
                 "  let c = gen(\"c\", choices: [\"yes\", \"no\"])\n"
                 "  let s = select(\"s\", [\"A\", \"B\", \"C\"], method: \"greedy_token\")\n"
                 "  print(n + 1, f * 2, b, c, s, state.meta[\"s\"], state.logprobs.l)\n"
                 "}\n",
                 NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_str_eq(R.out, "18 5 true no C [-1, -2, -3] [-0.5, -1.25]\n");
    cr_assert_eq(script_request(sb, 0)->constraint, RT_CONSTRAINT_REGEX);
    cr_assert_str_eq(script_request(sb, 0)->constraint_src, "[0-9]{3}-[0-9]{4}");
    cr_assert_eq(script_request(sb, 1)->constraint, RT_CONSTRAINT_JSON);
    cr_assert_str_eq(script_request(sb, 1)->constraint_src, "{\"type\":\"object\"}");
    cr_assert_eq(script_request(sb, 2)->constraint, RT_CONSTRAINT_TYPE);
    cr_assert_str_eq(script_request(sb, 2)->constraint_src, "int");
    cr_assert_eq(script_request(sb, 5)->constraint, RT_CONSTRAINT_GRAMMAR);
    cr_assert_str_eq(script_request(sb, 5)->constraint_src, " root ::= \"a\" ");
    cr_assert(script_request(sb, 5)->logprobs);
    /* literals arrive compiled (by the compiler, as stored in .sglc); a
     * schema built at run time does not */
    CGrammar *g = NULL;
    int pos;
    char err[200];
    cr_assert_eq(cg_compile_regex("[0-9]{3}-[0-9]{4}", 17, NULL, &g, &pos, err, sizeof err), 0);
    char *want = cg_dump(g);
    cr_assert_not_null(script_request(sb, 0)->compiled_dump);
    cr_assert_str_eq(script_request(sb, 0)->compiled_dump, want);
    free(want);
    cg_unref(g);
    cr_assert_null(script_request(sb, 1)->compiled_dump);
    cr_assert_not_null(script_request(sb, 5)->compiled_dump);
    cr_assert(script_request(sb, 6)->is_select);
    cr_assert_eq(script_request(sb, 7)->method, RT_SELECT_GREEDY_TOKEN);
    cr_assert(strstr(R.result, "\"vars\":{\"r\":\"555-1234\",\"j\":\"{\\\"a\\\": 1}\",\"n\":17,\"f\":2.5,\"b\":true,"
                               "\"l\":\"x\",\"c\":\"no\",\"s\":\"C\"}"),
              "%s", R.result);
    run_reset(&R);
    script_free(sb);
}

Test(vm, gen_option_errors)
{
    ScriptBackend *sb = script_new();
    sgl_vm_set_backend(R.vm, script_backend(sb));
    expect_error("fn main() {\n  gen(\"x\", max_tokns: 3)\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:", "no option 'max_tokns'");
    expect_error("fn main() {\n  gen(\"x\", regex: \"a+\", type: \"int\")\n}\n", SGL_ERR_RUNTIME, "at most one", NULL);
    expect_error("fn main() {\n  gen(\"x\", max_tokens: \"3\")\n}\n", SGL_ERR_RUNTIME, "max_tokens must be an int", NULL);
    expect_error("fn main() {\n  gen(\"x\", regex: \"(a\")\n}\n", SGL_ERR_RUNTIME, "bad regex", NULL);
    expect_error("fn main() {\n  gen(\"x\", type: \"list\")\n}\n", SGL_ERR_RUNTIME, "type must be", NULL);
    expect_error("fn main() {\n  select(\"x\", [])\n}\n", SGL_ERR_RUNTIME, "must not be empty", NULL);
    expect_error("fn main() {\n  select(\"x\", [\"a\"], method: \"best\")\n}\n", SGL_ERR_RUNTIME, "unknown method", NULL);
    cr_assert_eq(script_nrequests(sb), 0);
    script_push(sb, "abc");
    expect_error("fn main() {\n  let n = gen(\"n\", type: \"int\")\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:",
                 "the model's output \"abc\" is not an int");
    script_fail_next_submit(sb, "queue full");
    expect_error("fn main() {\n  gen()\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:", "queue full");
    script_fail_next_result(sb, "out of KV slots");
    expect_error("fn f() {\n  return gen()\n}\nfn main() {\n  f()\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:",
                 "out of KV slots");
    cr_assert(strstr(R.error, "at main (test.sgl:5:"), "%s", R.error);
    run_reset(&R);
    script_free(sb);
}

Test(vm, roles_with_template_and_end_of_turn)
{
    ScriptBackend *sb = script_new();
    sgl_vm_set_backend(R.vm, script_backend(sb));
    sgl_vm_set_chat_template(R.vm, "chatml");
    script_push(sb, "4");
    sgl_status st = run_src(&R,
                            "fn main(question) {\n"
                            "  system { \"Be brief.\" }\n"
                            "  user question\n"
                            "  assistant { gen(\"answer\", max_tokens: 8, stop: \"\\n\") }\n"
                            "  gen(\"after\")\n"
                            "}\n",
                            NULL, "{\"question\": \"2+2?\"}");
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    const ScriptRequest *q = script_request(sb, 0);
    const char *sys = "<|im_start|>system\n";
    cr_assert_str_eq(q->prompt, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                                "<|im_start|>assistant\n");
    cr_assert_eq(q->nsegs, 3);
    cr_assert_eq(q->segs[0].role, ROLE_SYSTEM);
    cr_assert_eq(q->segs[0].start, strlen(sys), "the markers lie outside the segment");
    cr_assert_eq(q->segs[0].end, strlen(sys) + strlen("Be brief."));
    cr_assert_eq(q->segs[2].role, ROLE_ASSISTANT);
    cr_assert_eq(q->segs[2].start, strlen(q->prompt));
    cr_assert_eq(q->segs[2].end, strlen(q->prompt));
    cr_assert_eq(q->nstop, 2);
    cr_assert_str_eq(q->stop[0], "\n");
    cr_assert_str_eq(q->stop[1], "<|im_end|>", "the template's end of turn is added to the stops");
    q = script_request(sb, 1);
    cr_assert_eq(q->nstop, 0, "no end-of-turn stop outside assistant");
    cr_assert(strstr(q->prompt, "<|im_start|>assistant\n4<|im_end|>\n"), "%s", q->prompt);
    run_reset(&R);
    script_free(sb);
}

static const char *smollm_jinja(void *ctx)
{
    (void)ctx;
    return "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
           "'<|im_end|>' + '\\n'}}{% endfor %}";
}

static const char *llama3_jinja(void *ctx)
{
    (void)ctx;
    return "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}";
}

static const char *unknown_jinja(void *ctx)
{
    (void)ctx;
    return "{{ message['content'] }}";
}

Test(vm, template_detected_from_the_model)
{
    ScriptBackend *sb = script_new();
    RtBackend *be = script_backend(sb);
    be->chat_template = smollm_jinja;
    sgl_vm_set_backend(R.vm, be);
    const char *prog = "fn main() {\n  user \"Hi\"\n  assistant { gen(\"a\") }\n}\n";
    cr_assert_eq(run_src(&R, prog, NULL, NULL), SGL_OK, "%s", R.error);
    cr_assert_str_eq(script_request(sb, 0)->prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    cr_assert_str_eq(script_request(sb, 0)->stop[0], "<|im_end|>");
    /* another backend: chosen again from its model */
    ScriptBackend *sb2 = script_new();
    be = script_backend(sb2);
    be->chat_template = llama3_jinja;
    sgl_vm_set_backend(R.vm, be);
    cr_assert_eq(run_src(&R, prog, NULL, NULL), SGL_OK, "%s", R.error);
    cr_assert_str_eq(script_request(sb2, 0)->prompt,
                     "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n");
    cr_assert_str_eq(script_request(sb2, 0)->stop[0], "<|eot_id|>");
    /* the embedder's name wins over the model's */
    sgl_vm_set_chat_template(R.vm, "llama2");
    cr_assert_eq(run_src(&R, prog, NULL, NULL), SGL_OK, "%s", R.error);
    cr_assert_str_eq(script_request(sb2, 1)->prompt, "[INST] Hi [/INST]");
    cr_assert_str_eq(script_request(sb2, 1)->stop[0], "</s>");
    /* a Jinja template detect() does not know: no markers, no stop */
    sgl_vm_set_chat_template(R.vm, NULL);
    ScriptBackend *sb3 = script_new();
    be = script_backend(sb3);
    be->chat_template = unknown_jinja;
    sgl_vm_set_backend(R.vm, be);
    cr_assert_eq(run_src(&R, prog, NULL, NULL), SGL_OK, "%s", R.error);
    cr_assert_str_eq(script_request(sb3, 0)->prompt, "Hi");
    cr_assert_eq(script_request(sb3, 0)->nstop, 0);
    run_reset(&R);
    script_free(sb);
    script_free(sb2);
    script_free(sb3);
}

Test(vm, template_markers_read_each_branch_state)
{
    /* llama2 decides from state.text; fork branches and batch instances each see their own */
    sgl_vm_set_chat_template(R.vm, "llama2");
    expect_out("fn main() {\n"
               "  system { \"S\" }\n"
               "  let b = fork i in 0..2 {\n"
               "    if i == 0 { user { \"U\" } }\n"
               "    else {\n      user { \"U\" }\n      assistant { \" A\" }\n      user { \"V\" }\n    }\n"
               "  }\n"
               "  print(json_encode(b[0].text))\n"
               "  print(json_encode(b[1].text))\n"
               "}\n",
               "\"[INST] <<SYS>>\\nS\\n<</SYS>>\\n\\nU [/INST]\"\n"
               "\"[INST] <<SYS>>\\nS\\n<</SYS>>\\n\\nU [/INST] A </s><s>[INST] V [/INST]\"\n");
}

Test(vm, unknown_template_is_an_error)
{
    sgl_vm_set_chat_template(R.vm, "nope");
    expect_out("fn main() {\n  print(\"no role block, no error\")\n}\n", "no role block, no error\n");
    expect_error("fn main() {\n  \"x\"\n  user { \"Hi\" }\n}\n", SGL_ERR_RUNTIME, "test.sgl:3:",
                 "unknown chat template 'nope' (available: chatml, llama2, llama3, mistral, qwen)");
    sgl_vm_set_chat_template(R.vm, "../chat/chatml");
    expect_error("fn main() {\n  user { \"Hi\" }\n}\n", SGL_ERR_RUNTIME, "unknown chat template '../chat/chatml'", NULL);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

Test(vm, template_errors_and_bos)
{
    char dir[] = "/tmp/sgl-test-chat-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/chat", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/chat/bosy.sgl", dir);
    write_file(path, "let name = \"bosy\"\nlet bos = \"<BOS>\"\nlet end_of_turn = \"<E>\"\n"
                     "fn role_begin(role) { return \"<\" + role + \">\" }\n"
                     "fn role_end(role) {\n  if role == \"user\" { error(\"bosy: no end for \" + role) }\n"
                     "  return nil\n}\n");
    snprintf(path, sizeof path, "%s/chat/waits.sgl", dir);
    write_file(path, "let bos = \"\"\nlet end_of_turn = \"\"\nfn role_begin(role) { return gen() }\n"
                     "fn role_end(role) { return 1 }\n");
    snprintf(path, sizeof path, "%s/chat/broken.sgl", dir);
    write_file(path, "let bos = \"\"\nfn role_begin(role) { return \"\" }\n");
    sgl_vm_set_stdlib_path(R.vm, dir);

    sgl_vm_set_chat_template(R.vm, "bosy");
    /* bos once, at the very start; role_end returning nil writes nothing */
    expect_out("fn main() {\n  system { \"S\" }\n  assistant { \"A\" }\n  print(state.text)\n}\n", "<BOS><system>S<assistant>A\n");
    expect_out("fn main() {\n  \"text first \"\n  system { \"S\" }\n  print(state.text)\n}\n", "text first <system>S\n");
    /* an error inside the template: its position, then the program's frames */
    expect_error("fn f() {\n  user { \"U\" }\n}\nfn main() {\n  f()\n}\n", SGL_ERR_RUNTIME, "bosy.sgl:6:",
                 "bosy: no end for user");
    cr_assert(strstr(R.error, "at role_end ("), "%s", R.error);
    cr_assert(strstr(R.error, "at f (test.sgl:2:"), "%s", R.error);
    cr_assert(strstr(R.error, "at main (test.sgl:5:"), "%s", R.error);

    ScriptBackend *sb = script_new();
    sgl_vm_set_backend(R.vm, script_backend(sb));
    sgl_vm_set_chat_template(R.vm, "waits");
    expect_error("fn main() {\n  user { \"U\" }\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:",
                 "a chat template cannot call gen, select or fork");
    sgl_vm_set_chat_template(R.vm, "broken");
    expect_error("fn main() {\n  user { \"U\" }\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:",
                 "chat template 'broken' has no function role_end(role)");
    run_reset(&R);
    sgl_vm_set_backend(R.vm, NULL);
    script_free(sb);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(vm, typed_gen_appends_the_models_text)
{
    ScriptBackend *sb = script_new();
    sgl_vm_set_backend(R.vm, script_backend(sb));
    script_push(sb, " 42");
    script_push(sb, "7");
    script_push(sb, "3.50");
    script_push(sb, "true");
    script_push(sb, "8");
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  \"n =\" gen(\"n\", type: \"int\") \";\"\n"
                            "  let m = gen(\"m\", type: \"int\")\n"
                            "  m\n"
                            "  gen(\"f\", type: \"float\")\n"
                            "  \" b=${gen(\"b\", type: \"bool\")}.\"\n"
                            "  let s = \"[${gen(\"k\", type: \"int\")}]\"\n"
                            "  print(m + 1, s, state.n + state.m, state.f, state.b)\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_str_eq(R.out, "8 [8] 49 3.5 true\n");
    cr_assert(strstr(R.result, "\"text\":\"n = 42;3.50 b=true.\""), "%s", R.result);
    cr_assert(strstr(R.result, "\"vars\":{\"n\":42,\"m\":7,\"f\":3.5,\"b\":true,\"k\":8}"), "%s", R.result);
    run_reset(&R);
    /* the model's text must still convert */
    script_push(sb, "forty");
    expect_error("fn main() {\n  \"n =\" gen(\"n\", type: \"int\")\n}\n", SGL_ERR_RUNTIME, "test.sgl:2:",
                 "the model's output \"forty\" is not an int");
    run_reset(&R);
    script_free(sb);
}

static void count_progress(void *ud, int done, int total)
{
    int *seen = ud;
    cr_assert_eq(done, seen[0] + 1, "done counts up by one");
    seen[0] = done;
    seen[1] = total;
}

Test(vm, batch_progress)
{
    ScriptBackend *sb = script_new();
    sgl_vm_set_backend(R.vm, script_backend(sb));
    int seen[2] = {0, 0};
    sgl_vm_set_progress(R.vm, count_progress, seen);
    cr_assert_eq(run_compile(&R, "fn main(i) {\n  gen(\"a\")\n  if i == 1 { error(\"one\") }\n}\n"), SGL_OK);
    const char *args[] = {"{\"i\": 0}", "{\"i\": 1}", "{\"j\": 2}", "{\"i\": 3}"};
    char *res[4];
    cr_assert_eq(sgl_run_batch(R.vm, R.prog, NULL, args, 4, res), SGL_OK);
    cr_assert_eq(seen[0], 4, "every instance reported, the failed ones too");
    cr_assert_eq(seen[1], 4);
    for (int i = 0; i < 4; i++) free(res[i]);
    /* removed: no more calls */
    sgl_vm_set_progress(R.vm, NULL, NULL);
    seen[0] = 0;
    cr_assert_eq(sgl_run_batch(R.vm, R.prog, NULL, args, 1, res), SGL_OK);
    free(res[0]);
    cr_assert_eq(seen[0], 0);
    run_reset(&R);
    script_free(sb);
}

Test(vm, batch_runs_concurrently)
{
    ScriptBackend *sb = script_new();
    sgl_vm_set_backend(R.vm, script_backend(sb));
    cr_assert_eq(run_compile(&R, "fn main(i) {\n  \"Q${i}:\" gen(\"a\")\n  if i == 3 { error(\"three\") }\n  return i }\n"),
                 SGL_OK);
    enum { N = 200 };
    char *args[N], *res[N + 1];
    for (int i = 0; i < N; i++) {
        args[i] = malloc(32);
        snprintf(args[i], 32, "{\"i\": %d}", i);
    }
    free(args[7]);
    args[7] = strdup("{\"j\": 1}");
    cr_assert_eq(sgl_run_batch(R.vm, R.prog, NULL, (const char *const *)args, N, res), SGL_OK);
    cr_assert_eq(script_max_in_flight(sb), N - 1, "every instance waits on the model at once");
    char want[128];
    for (int i = 0; i < N; i++) {
        if (i == 3) {
            cr_assert(strstr(res[i], "{\"error\":\"test.sgl:3:"), "%s", res[i]);
        } else if (i == 7) {
            cr_assert(strstr(res[i], "no parameter 'j'"), "%s", res[i]);
        } else {
            snprintf(want, sizeof want, "\"value\":%d}", i);
            cr_assert(strstr(res[i], want), "%s", res[i]);
        }
        free(res[i]);
        free(args[i]);
    }
    run_reset(&R);
    script_free(sb);
}

/* ---- scale ---- */

Test(vm, collection_under_allocation_pressure)
{
    /* keeps a structure alive while producing lots of garbage; the live
     * data must come through every collection intact */
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  let keep = {}\n"
                            "  for i in 0..20000 {\n"
                            "    let junk = [str(i), [i, i + 1], {\"k\": str(i) + \"x\"}]\n"
                            "    if i % 100 == 0 { keep[str(i)] = junk }\n"
                            "    let s = \"\"\n"
                            "    for j in 0..5 { s += str(j) }\n"
                            "  }\n"
                            "  let total = 0\n"
                            "  for k in keep { total += keep[k][1][1] - int(keep[k][0]) }\n"
                            "  print(len(keep), total, keep[\"19900\"][2].k)\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_str_eq(R.out, "200 200 19900x\n");
}

Test(vm, thousands_of_waiting_fibers)
{
    ScriptBackend *sb = script_new();
    script_set_batch(sb, 0);
    sgl_vm_set_backend(R.vm, script_backend(sb));
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  let bs = fork i in 5000 { \"#${i} \" gen(\"v\", max_tokens: 1) }\n"
                            "  let n = 0\n"
                            "  for b in bs { if startswith(b.v, \"gen\") { n += 1 } }\n"
                            "  print(n, bs[4999].text)\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_eq(script_max_in_flight(sb), 5000);
    cr_assert_str_eq(R.out, "5000 #4999 gen4999\n");
    run_reset(&R);
    script_free(sb);
}
