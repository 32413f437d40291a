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
#include <unistd.h>
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

/* ---- the seam for sgl serve: events, cancel, limits, signatures ---- */

#define MAX_EVENTS 512

typedef struct {
    int n;
    sgl_event_kind kind[MAX_EVENTS];
    sgl_task *task[MAX_EVENTS];
    int branch[MAX_EVENTS];
    char name[MAX_EVENTS][16];
    char data[MAX_EVENTS][128];
    int finished_before[MAX_EVENTS];   /* the task had finished when it came */
    sgl_task *watch;
    sgl_task *cancel_on_text;          /* cancelled at its first TEXT event */
} Events;

static void on_event(void *ud, const sgl_event *ev)
{
    Events *e = ud;
    cr_assert_lt(e->n, MAX_EVENTS);
    int i = e->n++;
    e->kind[i] = ev->kind;
    e->task[i] = ev->task;
    e->branch[i] = ev->branch;
    snprintf(e->name[i], sizeof e->name[i], "%s", ev->name ? ev->name : "");
    snprintf(e->data[i], sizeof e->data[i], "%.*s", (int)(ev->len < 127 ? ev->len : 127), ev->data);
    e->finished_before[i] = e->watch ? sgl_task_finished(e->watch) : 0;
    if (e->cancel_on_text && ev->kind == SGL_EV_TEXT && ev->task == e->cancel_on_text) {
        sgl_task_cancel(e->cancel_on_text);
        e->cancel_on_text = NULL;
    }
}

/* Runs t by hand (run what is ready, wait) until nothing is in flight. */
static void drive_by_hand(sgl_vm *vm, sgl_runtime *rt)
{
    while (sgl_vm_run_ready(vm) > 0) cr_assert_geq(sgl_runtime_wait(rt), 0);
}

Test(embed, events_stream_text_while_a_gen_runs_then_its_var)
{
    sgl_runtime *rt = open_runtime(NULL);
    if (!rt) return;
    sgl_vm *vm = sgl_vm_new();
    sgl_vm_set_runtime(vm, rt);
    Events *ev = calloc(1, sizeof *ev);
    sgl_vm_set_events(vm, on_event, ev);
    sgl_program *p = compile(vm,
                             "fn main() {\n"
                             "  \"Count: one, two, three,\"\n"
                             "  gen(\"more\", max_tokens: 12, temperature: 0, ignore_eos: true)\n"
                             "}\n");
    sgl_task *t;
    cr_assert_eq(sgl_task_start(vm, p, NULL, NULL, NULL, NULL, &t), SGL_OK);
    ev->watch = t;
    drive_by_hand(vm, rt);
    cr_assert(sgl_task_finished(t));
    char *res;
    cr_assert_eq(sgl_task_result(t, &res), SGL_OK, "%s", sgl_task_error(t));
    /* TEXT events, each while the task was still running, concatenating
     * to the captured text; then one VAR event with it as JSON */
    char streamed[2048] = "";
    int ntext = 0, var_at = -1;
    for (int i = 0; i < ev->n; i++) {
        cr_assert_eq(ev->task[i], t);
        cr_assert_eq(ev->branch[i], 0);
        cr_assert_str_eq(ev->name[i], "more");
        if (ev->kind[i] == SGL_EV_TEXT) {
            cr_assert_eq(var_at, -1, "text after the var");
            cr_assert(!ev->finished_before[i], "a text event came after the task finished");
            strncat(streamed, ev->data[i], sizeof streamed - strlen(streamed) - 1);
            ntext++;
        } else {
            cr_assert_eq(ev->kind[i], SGL_EV_VAR);
            var_at = i;
        }
    }
    cr_assert_geq(ntext, 2, "the text came in pieces (%d)", ntext);
    cr_assert_neq(var_at, -1);
    char want[2200];
    snprintf(want, sizeof want, "\"more\":%s", ev->data[var_at]);
    cr_assert(strstr(res, want), "%s lacks %s", res, want);
    /* the var's JSON is the streamed text */
    char *var = NULL, err[256];
    size_t vlen = 0;
    cr_assert_eq(sgl_json_string(ev->data[var_at], strlen(ev->data[var_at]), &var, &vlen, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(var, streamed);
    free(var);
    free(res);
    sgl_task_free(t);

    /* sgl_run's events name no task */
    ev->n = 0;
    ev->watch = NULL;
    cr_assert_eq(sgl_run(vm, p, NULL, NULL, NULL), SGL_OK, "%s", sgl_last_error(vm));
    cr_assert_gt(ev->n, 0);
    for (int i = 0; i < ev->n; i++) cr_assert_null(ev->task[i]);
    sgl_program_free(p);
    sgl_vm_free(vm);
    sgl_runtime_close(rt);
    free(ev);
}

Test(embed, events_number_fork_branches_in_creation_order)
{
    sgl_runtime *rt = open_runtime(NULL);
    if (!rt) return;
    sgl_vm *vm = sgl_vm_new();
    sgl_vm_set_runtime(vm, rt);
    Events *ev = calloc(1, sizeof *ev);
    sgl_vm_set_events(vm, on_event, ev);
    sgl_program *p = compile(vm,
                             "fn main() {\n"
                             "  \"Colours:\"\n"
                             "  gen(\"first\", max_tokens: 2, temperature: 0)\n"
                             "  let a = fork i in 0..3 { \" ${i}:\" gen(\"c\", max_tokens: 3, temperature: 0) }\n"
                             "  let b = fork j in 0..2 { \" ${j};\" gen(\"d\", max_tokens: 2, temperature: 0) }\n"
                             "}\n");
    sgl_task *t;
    cr_assert_eq(sgl_task_start(vm, p, NULL, NULL, NULL, NULL, &t), SGL_OK);
    drive_by_hand(vm, rt);
    char *res;
    cr_assert_eq(sgl_task_result(t, &res), SGL_OK, "%s", sgl_task_error(t));
    free(res);
    /* VAR events: "first" on the root (0), "c" on branches 1..3, "d" on 4..5 */
    int seen[8] = {0};
    for (int i = 0; i < ev->n; i++) {
        if (ev->kind[i] != SGL_EV_VAR) continue;
        int b = ev->branch[i];
        cr_assert(b >= 0 && b <= 5, "branch %d", b);
        const char *want = b == 0 ? "first" : b <= 3 ? "c" : "d";
        cr_assert_str_eq(ev->name[i], want, "branch %d", b);
        seen[b]++;
    }
    for (int b = 0; b <= 5; b++) cr_assert_eq(seen[b], 1, "branch %d: %d var events", b, seen[b]);
    sgl_task_free(t);
    sgl_program_free(p);
    sgl_vm_free(vm);
    sgl_runtime_close(rt);
    free(ev);
}

typedef struct {
    int calls;
} DoneCount;

static void count_done(void *ud, sgl_task *t)
{
    (void)t;
    ((DoneCount *)ud)->calls++;
}

Test(embed, cancel_stops_a_gen_in_flight_and_leaves_the_engine_idle)
{
    sgl_runtime *rt = open_runtime(NULL);
    if (!rt) return;
    sgl_vm *vm = sgl_vm_new();
    sgl_vm_set_runtime(vm, rt);
    Events *ev = calloc(1, sizeof *ev);
    sgl_vm_set_events(vm, on_event, ev);
    sgl_program *p = compile(vm,
                             "fn main() {\n"
                             "  \"Once upon a time\"\n"
                             "  gen(\"story\", max_tokens: 400, temperature: 0, ignore_eos: true)\n"
                             "  \" the end\"\n"
                             "}\n");
    /* by hand: cancelled from outside the driver, between waits */
    DoneCount dc = {0};
    sgl_task *t;
    cr_assert_eq(sgl_task_start(vm, p, NULL, NULL, count_done, &dc, &t), SGL_OK);
    cr_assert_eq(sgl_vm_run_ready(vm), 1, "the gen is in flight");
    int texts = 0;
    while (texts == 0) {
        cr_assert_geq(sgl_runtime_wait(rt), 0);
        for (int i = 0; i < ev->n; i++) texts += ev->kind[i] == SGL_EV_TEXT;
    }
    cr_assert(!sgl_task_finished(t));
    sgl_task_cancel(t);
    cr_assert(sgl_task_finished(t));
    cr_assert_eq(dc.calls, 1, "the done callback fired");
    cr_assert_str_eq(sgl_task_error(t), "cancelled");
    char *res;
    cr_assert_eq(sgl_task_result(t, &res), SGL_ERR_RUNTIME);
    sgl_task_cancel(t);   /* a no-op now */
    cr_assert_eq(dc.calls, 1);
    int before = ev->n;
    /* the engine's completion of the cancelled request still comes; then
     * nothing is in flight */
    drive_by_hand(vm, rt);
    cr_assert_eq(sgl_runtime_wait(rt), -1, "nothing is left in flight");
    for (int i = before; i < ev->n; i++) cr_assert_neq(ev->kind[i], SGL_EV_VAR, "no var of a cancelled gen");
    sgl_runtime_stats s;
    sgl_runtime_get_stats(rt, &s);
    cr_assert_eq(s.requests, 1, "the cancelled request finished in the engine");
    cr_assert_lt(s.generated_tokens, 400, "it stopped early (%llu tokens)", s.generated_tokens);
    unsigned long long first_tokens = s.generated_tokens;
    sgl_task_free(t);

    /* from inside an event of its own (a TEXT event, inside a wait) */
    ev->n = 0;
    dc.calls = 0;
    cr_assert_eq(sgl_task_start(vm, p, NULL, NULL, count_done, &dc, &t), SGL_OK);
    ev->cancel_on_text = t;
    drive_by_hand(vm, rt);
    cr_assert(sgl_task_finished(t));
    cr_assert_eq(dc.calls, 1);
    cr_assert_str_eq(sgl_task_error(t), "cancelled");
    cr_assert_eq(sgl_runtime_wait(rt), -1, "nothing is left in flight");
    sgl_runtime_get_stats(rt, &s);
    cr_assert_eq(s.requests, 2);
    cr_assert_lt(s.generated_tokens - first_tokens, 400, "it stopped early");
    sgl_task_free(t);

    /* the engine serves the next run as usual, from the cached prefix */
    sgl_program *cap = compile(vm, capital_src);
    char *out = NULL;
    cr_assert_eq(sgl_run(vm, cap, NULL, "{\"country\": \"Peru\"}", &out), SGL_OK, "%s", sgl_last_error(vm));
    cr_assert(strstr(out, "\"answer\":\""), "%s", out);
    free(out);
    sgl_program_free(cap);
    sgl_program_free(p);
    sgl_vm_free(vm);
    sgl_runtime_close(rt);
    free(ev);
}

Test(embed, limits_fail_a_run_with_the_limit_named)
{
    sgl_vm *vm = sgl_vm_new();
    sgl_program *loop = compile(vm,
                                "fn main() {\n"
                                "  let n = 0\n"
                                "  while true {\n"
                                "    n = n + 1\n"
                                "  }\n"
                                "}\n");
    sgl_program *hog = compile(vm,
                               "fn main() {\n"
                               "  let xs = []\n"
                               "  while true {\n"
                               "    append(xs, \"some text that fills the heap, again and again\" + str(len(xs)))\n"
                               "  }\n"
                               "}\n");
    sgl_program *small = compile(vm,
                                 "fn main() {\n"
                                 "  let n = 0\n"
                                 "  for i in 0..100 { n = n + i }\n"
                                 "  return n\n"
                                 "}\n");
    sgl_vm_set_limits(vm, 100000, 4 << 20);
    cr_assert_eq(sgl_run(vm, loop, NULL, NULL, NULL), SGL_ERR_RUNTIME);
    const char *e = sgl_last_error(vm);
    cr_assert(strstr(e, "step limit exceeded") && strstr(e, "max_steps 100000"), "%s", e);
    cr_assert(strstr(e, "embed.sgl:3:") || strstr(e, "embed.sgl:4:"), "%s", e);
    sgl_vm_set_limits(vm, 0, 4 << 20);
    cr_assert_eq(sgl_run(vm, hog, NULL, NULL, NULL), SGL_ERR_RUNTIME);
    e = sgl_last_error(vm);
    cr_assert(strstr(e, "heap limit exceeded") && strstr(e, "max_heap 4194304"), "%s", e);
    cr_assert(strstr(e, "embed.sgl:3:") || strstr(e, "embed.sgl:4:"), "%s", e);
    /* within the limits: runs */
    sgl_vm_set_limits(vm, 100000, 4 << 20);
    char *res = NULL;
    cr_assert_eq(sgl_run(vm, small, NULL, NULL, &res), SGL_OK, "%s", sgl_last_error(vm));
    cr_assert(strstr(res, "\"value\":4950"), "%s", res);
    free(res);
    /* each run counts its own steps: the same program again */
    cr_assert_eq(sgl_run(vm, small, NULL, NULL, NULL), SGL_OK, "%s", sgl_last_error(vm));
    /* and no limit at all */
    sgl_vm_set_limits(vm, 0, 0);
    cr_assert_eq(sgl_run(vm, small, NULL, NULL, NULL), SGL_OK, "%s", sgl_last_error(vm));
    sgl_program_free(loop);
    sgl_program_free(hog);
    sgl_program_free(small);
    sgl_vm_free(vm);
}

Test(embed, signature_json_lists_functions_params_and_defaults)
{
    sgl_vm *vm = sgl_vm_new();
    sgl_program *p = compile(vm,
                             "fn main(q, n = 3, style = \"short\", tags = [1, 2.5, nil], opts = {\"a\": true},\n"
                             "        m = n * 2, s = \"about ${q}\", z = nil) {\n"
                             "  return q\n"
                             "}\n"
                             "fn helper() { return 1 }\n");
    char *sig = sgl_program_signature_json(p);
    cr_assert_not_null(sig);
    cr_assert_str_eq(sig,
                     "{\"functions\":[{\"name\":\"main\",\"params\":["
                     "{\"name\":\"q\"},{\"name\":\"n\",\"default\":3},{\"name\":\"style\",\"default\":\"short\"},"
                     "{\"name\":\"tags\",\"default\":[1,2.5,null]},{\"name\":\"opts\",\"default\":{\"a\":true}},"
                     "{\"name\":\"m\",\"default_expr\":\"n * 2\"},{\"name\":\"s\",\"default_expr\":\"\\\"about ${q}\\\"\"},"
                     "{\"name\":\"z\",\"default\":null}]},"
                     "{\"name\":\"helper\",\"params\":[]}]}");
    /* the same from the program saved as bytecode and loaded again */
    char path[] = "/tmp/sgl_sig_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(sgl_program_save(vm, p, path), SGL_OK, "%s", sgl_last_error(vm));
    sgl_program *q = NULL;
    cr_assert_eq(sgl_program_load(vm, path, &q), SGL_OK, "%s", sgl_last_error(vm));
    char *sig2 = sgl_program_signature_json(q);
    cr_assert_str_eq(sig2, sig);
    unlink(path);
    free(sig);
    free(sig2);
    sgl_program_free(p);
    sgl_program_free(q);
    sgl_vm_free(vm);
}
