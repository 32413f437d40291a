/* tests/unit/test_embed.c — an embedder that knows only include/sgl.h (and
 * libuv for a loop of its own): it opens the default model as a runtime,
 * runs a program with a gen, runs two programs concurrently as tasks on
 * its own uv loop, and keeps a session's globals and prompt across chunks.
 *
 * Needs models/SmolLM2-135M-Instruct.Q4_1.gguf (`make model`): the runtime
 * finds it by walking up from the test binary; the model tests skip with a
 * message when it is absent.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sgl.h"

static sgl_runtime *open_runtime(void *loop)
{
    sgl_runtime_options o;
    sgl_runtime_options_init(&o);
    o.threads = 2;
    o.uv_loop = loop;
    sgl_runtime *rt = NULL;
    char err[1024];
    if (sgl_runtime_open(&o, &rt, err, sizeof err) != SGL_OK) {
        cr_log_warn("skipped: %s", err);
        return NULL;
    }
    return rt;
}

static sgl_program *compile(sgl_vm *vm, const char *src)
{
    sgl_program *p = NULL;
    sgl_status st = sgl_compile_source(vm, "embed.sgl", src, strlen(src), &p);
    cr_assert_eq(st, SGL_OK, "%s", sgl_last_error(vm));
    return p;
}

static const char capital_src[] =
    "fn main(country) {\n"
    "  \"The capital of \" + country + \" is\"\n"
    "  gen(\"answer\", max_tokens: 8, temperature: 0)\n"
    "}\n";

Test(embed, runtime_runs_a_program_with_gen)
{
    sgl_runtime *rt = open_runtime(NULL);
    if (!rt) return;
    sgl_vm *vm = sgl_vm_new();
    sgl_vm_set_runtime(vm, rt);
    sgl_program *p = compile(vm, capital_src);
    char *res = NULL;
    sgl_status st = sgl_run(vm, p, NULL, "{\"country\": \"France\"}", &res);
    cr_assert_eq(st, SGL_OK, "%s", sgl_last_error(vm));
    cr_assert(strstr(res, "\"text\":\"The capital of France is"), "%s", res);
    cr_assert(strstr(res, "\"answer\":\""), "%s", res);
    free(res);
    sgl_runtime_stats s;
    sgl_runtime_get_stats(rt, &s);
    cr_assert(s.loaded && s.requests == 1 && s.generated_tokens > 0);
    sgl_program_free(p);
    sgl_vm_free(vm);
    sgl_runtime_close(rt);
}

/* The non-blocking driver without a loop: run what is ready, wait for a
 * completion, again. */
Test(embed, tasks_driven_by_hand_without_a_loop)
{
    sgl_runtime *rt = open_runtime(NULL);
    if (!rt) return;
    sgl_vm *vm = sgl_vm_new();
    sgl_vm_set_runtime(vm, rt);
    sgl_program *p = compile(vm, capital_src);
    sgl_task *t[3];
    const char *args[3] = {"{\"country\": \"Italy\"}", "{\"country\": \"Spain\"}", "{\"nope\": 1}"};
    for (int i = 0; i < 2; i++) cr_assert_eq(sgl_task_start(vm, p, NULL, args[i], NULL, NULL, &t[i]), SGL_OK);
    cr_assert_eq(sgl_task_start(vm, p, NULL, args[2], NULL, NULL, &t[2]), SGL_ERR_USAGE);
    cr_assert(strstr(sgl_last_error(vm), "no parameter 'nope'"), "%s", sgl_last_error(vm));
    int waits = 0, most = 0;
    for (;;) {
        int waiting = sgl_vm_run_ready(vm);
        if (waiting > most) most = waiting;
        if (waiting == 0) break;
        cr_assert_geq(sgl_runtime_wait(rt), 0);
        waits++;
    }
    cr_assert_eq(most, 2, "both gens were in flight at once");
    cr_assert(waits >= 1);
    for (int i = 0; i < 2; i++) {
        char *res;
        cr_assert_eq(sgl_task_result(t[i], &res), SGL_OK, "%s", sgl_task_error(t[i]));
        cr_assert(strstr(res, i ? "Spain is" : "Italy is"), "%s", res);
        free(res);
        sgl_task_free(t[i]);
    }
    cr_assert_eq(sgl_runtime_wait(rt), -1, "nothing is left in flight");
    sgl_program_free(p);
    sgl_vm_free(vm);
    sgl_runtime_close(rt);
}

/* ---- two programs at once on our own loop ---- */

typedef struct {
    int finished;
    int order;          /* 1 for the first to finish */
    int *counter;
    char *result;
    sgl_status status;
    const sgl_task *other;
    int other_was_running;
} Done;

static void on_done(void *ud, sgl_task *t)
{
    Done *d = ud;
    d->finished = 1;
    d->order = ++*d->counter;
    d->status = sgl_task_result(t, &d->result);
    d->other_was_running = !sgl_task_finished(d->other);
}

Test(embed, two_programs_run_concurrently_on_an_embedders_loop)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    sgl_runtime *rt = open_runtime(&loop);
    if (!rt) {
        uv_loop_close(&loop);
        return;
    }
    /* two VMs, two programs, one runtime */
    sgl_vm *va = sgl_vm_new(), *vb = sgl_vm_new();
    sgl_vm_set_runtime(va, rt);
    sgl_vm_set_runtime(vb, rt);
    sgl_program *pa = compile(va, capital_src);
    sgl_program *pb = compile(vb,
                              "fn main() {\n"
                              "  \"A list of three colours: red,\"\n"
                              "  gen(\"more\", max_tokens: 24, temperature: 0)\n"
                              "  return len(state.text)\n"
                              "}\n");
    int counter = 0;
    Done da = {0}, db = {0};
    da.counter = db.counter = &counter;
    sgl_task *ta, *tb;
    cr_assert_eq(sgl_task_start(va, pa, NULL, "{\"country\": \"Japan\"}", on_done, &da, &ta), SGL_OK);
    cr_assert_eq(sgl_task_start(vb, pb, NULL, NULL, on_done, &db, &tb), SGL_OK);
    da.other = tb;
    db.other = ta;
    /* nothing has run yet: the loop drives both VMs */
    cr_assert(!sgl_task_finished(ta) && !sgl_task_finished(tb));
    int turns = 0;
    while (!(da.finished && db.finished) && turns < 100000) {
        uv_run(&loop, UV_RUN_ONCE);
        turns++;
    }
    cr_assert(da.finished && db.finished, "after %d loop turns", turns);
    cr_assert_eq(da.status, SGL_OK, "%s", sgl_task_error(ta));
    cr_assert_eq(db.status, SGL_OK, "%s", sgl_task_error(tb));
    cr_assert(strstr(da.result, "The capital of Japan is"), "%s", da.result);
    cr_assert(strstr(db.result, "\"more\":\""), "%s", db.result);
    /* both were in flight together: the first to finish saw the other running */
    Done *first = da.order == 1 ? &da : &db;
    cr_assert(first->other_was_running);
    sgl_runtime_stats s;
    sgl_runtime_get_stats(rt, &s);
    cr_assert_eq(s.requests, 2);
    free(da.result);
    free(db.result);
    sgl_task_free(ta);
    sgl_task_free(tb);
    sgl_program_free(pa);
    sgl_program_free(pb);
    sgl_vm_free(va);
    sgl_vm_free(vb);
    sgl_runtime_close(rt);
    uv_run(&loop, UV_RUN_DEFAULT);   /* the handles close */
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* ---- sessions (no model needed) ---- */

static sgl_status eval(sgl_session *s, const char *src, int *incomplete)
{
    return sgl_session_eval(s, src, strlen(src), incomplete);
}

Test(embed, a_session_keeps_globals_functions_and_the_prompt)
{
    sgl_vm *vm = sgl_vm_new();
    sgl_session *s = sgl_session_new(vm, "<repl>");
    cr_assert_not_null(s);
    int inc = 0;
    cr_assert_eq(eval(s, "let x = 40\n", &inc), SGL_OK, "%s", sgl_last_error(vm));
    cr_assert_eq(eval(s, "fn add(a) { return a + x }\n", &inc), SGL_OK, "%s", sgl_last_error(vm));
    cr_assert_eq(eval(s, "\"answer: \" + str(add(2))\n", &inc), SGL_OK, "%s", sgl_last_error(vm));
    size_t n;
    const char *text = sgl_session_text(s, &n);
    cr_assert_str_eq(text, "answer: 42");
    /* an unfinished statement is incomplete, and changes nothing */
    cr_assert_eq(eval(s, "fn twice(a) {\n  return a * 2\n", &inc), SGL_ERR_COMPILE);
    cr_assert_eq(inc, 1, "%s", sgl_last_error(vm));
    cr_assert_eq(eval(s, "fn twice(a) {\n  return a * 2\n}\n", &inc), SGL_OK, "%s", sgl_last_error(vm));
    cr_assert_eq(inc, 0);
    /* a compile error is not incomplete, and leaves no half-declared name */
    cr_assert_eq(eval(s, "let y = nope + 1\n", &inc), SGL_ERR_COMPILE);
    cr_assert_eq(inc, 0);
    cr_assert(strstr(sgl_last_error(vm), "<repl>:1:"), "%s", sgl_last_error(vm));
    cr_assert_eq(eval(s, "y\n", &inc), SGL_ERR_COMPILE);
    /* a runtime error keeps what ran before it */
    cr_assert_eq(eval(s, "x = twice(x)\n\" \" + str(x)\nerror(\"stop\")\nx = 0\n", &inc), SGL_ERR_RUNTIME);
    cr_assert(strstr(sgl_last_error(vm), "stop"), "%s", sgl_last_error(vm));
    cr_assert_str_eq(sgl_session_text(s, &n), "answer: 42 80");
    cr_assert_eq(eval(s, "\" \" + str(twice(x))\n", &inc), SGL_OK, "%s", sgl_last_error(vm));
    cr_assert_str_eq(sgl_session_text(s, &n), "answer: 42 80 160");
    char *js = sgl_session_state_json(s);
    cr_assert(strstr(js, "\"text\":\"answer: 42 80 160\""), "%s", js);
    free(js);
    sgl_session_free(s);
    sgl_vm_free(vm);
}
