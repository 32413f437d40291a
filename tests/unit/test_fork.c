/* tests/unit/test_fork.c — §8 fork: every branch's model call is in flight
 * before any completes, branch states are copies, nesting, errors. */
#include <criterion/criterion.h>

#include "run_helper.h"
#include "script_backend.h"

static Run R;
static ScriptBackend *SB;

static void setup(void)
{
    SB = script_new();
    run_init(&R, script_backend(SB));
}

static void teardown(void)
{
    run_done(&R);
    script_free(SB);
}

TestSuite(fork, .init = setup, .fini = teardown);

Test(fork, all_branches_in_flight_before_any_completes)
{
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  \"Tips:\\n\"\n"
                            "  let tips = fork i in 0..4 {\n"
                            "    \"Tip ${i + 1}: \"\n"
                            "    gen(\"detail\", max_tokens: 16, stop: \"\\n\")\n"
                            "  }\n"
                            "  \"1: ${tips[0].detail}\\n4: ${tips[3].detail}\"\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_eq(script_nrequests(SB), 4);
    /* the first completion happened with all four requests in flight */
    cr_assert_eq(script_request(SB, 0)->in_flight_at_completion, 4);
    cr_assert_eq(script_max_in_flight(SB), 4);
    for (int i = 0; i < 4; i++) {
        char want[64];
        snprintf(want, sizeof want, "Tips:\nTip %d: ", i + 1);
        cr_assert_str_eq(script_request(SB, i)->prompt, want);
    }
    cr_assert_str_eq(R.result, "{\"text\":\"Tips:\\n1: gen0\\n4: gen3\",\"vars\":{},\"value\":null}");
}

Test(fork, branches_with_several_calls_interleave)
{
    /* each branch makes two calls; the second calls go out as the first
     * ones complete, and each branch sees only its own text */
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  let bs = fork w in [\"a\", \"b\", \"c\"] {\n"
                            "    \"${w}1 \" gen(\"x\")\n"
                            "    \" ${w}2 \" gen(\"y\")\n"
                            "  }\n"
                            "  for b in bs { print(b.text, \"|\", b.x, b.y) }\n"
                            "  print(state.text == \"\", len(state.vars))\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_eq(script_nrequests(SB), 6);
    cr_assert_eq(script_request(SB, 0)->in_flight_at_completion, 3);
    cr_assert_str_eq(R.out, "a1 gen0 a2 gen3 | gen0 gen3\n"
                            "b1 gen1 b2 gen4 | gen1 gen4\n"
                            "c1 gen2 c2 gen5 | gen2 gen5\n"
                            "true 0\n");
}

Test(fork, parent_state_is_copied_not_shared)
{
    script_push(SB, "P");
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  \"Base.\" gen(\"p\")\n"
                            "  let bs = fork k in 2 { \" k=${k}\" gen(\"q\") }\n"
                            "  print(bs[0].text, \"|\", bs[1].text, \"|\", bs[1].p, bs[1].q)\n"
                            "  print(state.text, state.vars)\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_str_eq(R.out, "Base.P k=0gen1 | Base.P k=1gen2 | P gen2\nBase.P {\"p\": \"P\"}\n");
    cr_assert_str_eq(script_request(SB, 1)->prompt, "Base.P k=0");
}

Test(fork, nested)
{
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  let outer = fork a in 2 {\n"
                            "    \"a${a}\"\n"
                            "    let inner = fork b in 3 { \"b${b}:\" gen(\"g\") }\n"
                            "    \"[\" inner[2].g \"]\"\n"
                            "  }\n"
                            "  print(outer[0].text, outer[1].text)\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_eq(script_nrequests(SB), 6);
    cr_assert_eq(script_max_in_flight(SB), 6, "inner forks of both outer branches are in flight together");
    cr_assert_str_eq(R.out, "a0[gen2] a1[gen5]\n");
}

Test(fork, captured_variables_and_empty_forks)
{
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  let hits = 0\n"
                            "  let prefix = \"p\"\n"
                            "  let bs = fork i in [10, 20] { hits += i\n \"${prefix}${i}\" }\n"
                            "  let none = fork i in [] { \"never\" }\n"
                            "  let zero = fork i in 0 { \"never\" }\n"
                            "  print(hits, bs[1].text, none, zero)\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_OK, "%s", R.error);
    cr_assert_str_eq(R.out, "30 p20 [] []\n");
}

Test(fork, an_error_in_one_branch_fails_the_fork)
{
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  let b = fork i in 0..3 {\n"
                            "    gen(\"x\")\n"
                            "    if i == 1 { error(\"branch failed\") }\n"
                            "    gen(\"y\")\n"
                            "  }\n"
                            "  print(\"not reached\")\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_ERR_RUNTIME);
    cr_assert(strstr(R.error, "test.sgl:4:"), "%s", R.error);
    cr_assert(strstr(R.error, "branch failed"), "%s", R.error);
    cr_assert(strstr(R.error, "at <fork> (test.sgl:4:"), "%s", R.error);
    cr_assert(strstr(R.error, "at main (test.sgl:2:"), "%s", R.error);
    cr_assert_str_eq(R.out, "");
    /* the sibling's pending call still completed (no callback was lost) */
    cr_assert_eq(script_in_flight(SB), 0);
}

Test(fork, bad_fork_values)
{
    cr_assert_eq(run_src(&R, "fn main() {\n  fork x in \"abc\" { x }\n}\n", NULL, NULL), SGL_ERR_RUNTIME);
    cr_assert(strstr(R.error, "fork needs a list, a range or an int, not string"), "%s", R.error);
    cr_assert_eq(run_src(&R, "fn main() {\n  fork x in -1 { x }\n}\n", NULL, NULL), SGL_ERR_RUNTIME);
}

Test(fork, an_error_cancels_nested_branches_waiting_on_the_model)
{
    sgl_status st = run_src(&R,
                            "fn main() {\n"
                            "  let outer = fork a in 3 {\n"
                            "    let inner = fork b in 4 {\n"
                            "      gen(\"x\")\n"
                            "      if a == 2 and b == 3 { error(\"deep failure\") }\n"
                            "      gen(\"y\")\n"
                            "    }\n"
                            "  }\n"
                            "}\n",
                            NULL, NULL);
    cr_assert_eq(st, SGL_ERR_RUNTIME);
    cr_assert(strstr(R.error, "test.sgl:5:"), "%s", R.error);
    cr_assert(strstr(R.error, "deep failure"), "%s", R.error);
    /* inner branch, outer branch, main */
    cr_assert(strstr(R.error, "at <fork> (test.sgl:5:"), "%s", R.error);
    cr_assert(strstr(R.error, "at <fork> (test.sgl:3:"), "%s", R.error);
    cr_assert(strstr(R.error, "at main (test.sgl:2:"), "%s", R.error);
    cr_assert_eq(script_in_flight(SB), 0, "every submitted call was drained");
    cr_assert_eq(script_max_in_flight(SB), 12);
}
