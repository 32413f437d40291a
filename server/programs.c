/*
 * server/programs.c — compiled SGL programs as endpoints: every .sgl /
 * .sglc file of --programs DIR, GET /v1/programs (names, parameters,
 * defaults), POST /v1/programs/NAME (a JSON object of arguments → the
 * run's {text, vars, value}, or SSE events with "stream": true), SIGHUP
 * reloads the directory.
 *
 *   DIR/NAME.sgl ──compile──► Prog (refcounted: a reload retires the old set,
 *                          runs in flight keep theirs)
 *   POST ──► sgl_task_start on the programs VM ──► gen/select: the runtime's
 *            backend, the same engine and cache as the API routes
 *        ◄── done: 200 result | 400 bad arguments | 422 runtime error
 *
 * Served programs run under the per-run step and heap limits of the
 * options; a client that disconnects cancels its task.
 */
#include "server/server.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"

typedef struct Prog {
    char *name;
    char *path;
    sgl_program *prog;
    char *signature;             /* {"functions": [...]} JSON, or NULL */
    int refs;                    /* the directory's list + runs in flight */
} Prog;

typedef struct PRun {
    Server *s;
    HttpRequest *req;
    Prog *prog;
    sgl_task *task;
    int stream;
    struct PRun *prev, *next;
} PRun;

struct Programs {
    sgl_vm *vm;
    char *dir;
    Prog **items;
    int n;
    PRun *runs;
    int n_runs;
};

static void prog_unref(Programs *ps, Prog *p)
{
    if (!p || --p->refs > 0) return;
    sgl_program_free(p->prog);
    free(p->name);
    free(p->path);
    free(p->signature);
    free(p);
    (void)ps;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n > m && strcmp(s + n - m, suf) == 0;
}

static int cmp_prog(const void *a, const void *b)
{
    return strcmp((*(Prog *const *)a)->name, (*(Prog *const *)b)->name);
}

/* Compiles every program of the directory; the set replaces the old one
 * only when all of them compiled (a reload with an error keeps serving the
 * old set). 0, or -1 with err. */
static int load_dir(Server *s, char *err, size_t errcap)
{
    Programs *ps = s->programs;
    DIR *d = opendir(ps->dir);
    if (!d) {
        snprintf(err, errcap, "--programs %s: cannot open the directory", ps->dir);
        return -1;
    }
    Prog **items = NULL;
    int n = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int sglc = has_suffix(e->d_name, ".sglc");
        if (e->d_name[0] == '.' || (!sglc && !has_suffix(e->d_name, ".sgl"))) continue;
        Prog *p = calloc(1, sizeof *p);
        Prog **grown = realloc(items, (size_t)(n + 1) * sizeof *items);
        if (!p || !grown) {
            free(p);
            snprintf(err, errcap, "out of memory");
            rc = -1;
            break;
        }
        items = grown;
        size_t nl = strlen(e->d_name) - (sglc ? 5 : 4);
        p->name = strndup(e->d_name, nl);
        size_t pl = strlen(ps->dir) + strlen(e->d_name) + 2;
        p->path = malloc(pl);
        if (p->path) snprintf(p->path, pl, "%s/%s", ps->dir, e->d_name);
        p->refs = 1;
        items[n++] = p;
        if (!p->name || !p->path) {
            snprintf(err, errcap, "out of memory");
            rc = -1;
            break;
        }
        for (int k = 0; k < n - 1; k++)
            if (!strcmp(items[k]->name, p->name)) {
                snprintf(err, errcap, "%s: two programs named %s (.sgl and .sglc)", ps->dir, p->name);
                rc = -1;
            }
        if (rc) break;
        sgl_status st = sglc ? sgl_program_load(ps->vm, p->path, &p->prog) : sgl_compile_file(ps->vm, p->path, &p->prog);
        if (st != SGL_OK) {
            snprintf(err, errcap, "%s", sgl_last_error(ps->vm));
            rc = -1;
            break;
        }
        p->signature = sgl_program_signature_json(p->prog);
    }
    closedir(d);
    if (rc) {
        for (int i = 0; i < n; i++) prog_unref(ps, items[i]);
        free(items);
        return -1;
    }
    if (n) qsort(items, (size_t)n, sizeof *items, cmp_prog);
    for (int i = 0; i < ps->n; i++) prog_unref(ps, ps->items[i]);
    free(ps->items);
    ps->items = items;
    ps->n = n;
    return 0;
}

static void discard_output(void *ud, const char *s, size_t n)
{
    (void)ud;
    (void)s;
    (void)n;
}

int programs_init(Server *s, char *err, size_t errcap)
{
    Programs *ps = calloc(1, sizeof *ps);
    if (!ps) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    s->programs = ps;
    ps->vm = sgl_vm_new();
    if (!ps->vm) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    sgl_vm_set_backend(ps->vm, runtime_backend(s->rt));
    if (s->opt.runtime.chat_template) sgl_vm_set_chat_template(ps->vm, s->opt.runtime.chat_template);
    sgl_vm_set_output(ps->vm, discard_output, NULL);   /* print() of a served program goes nowhere */
    sgl_vm_set_limits(ps->vm, s->opt.program_max_steps, s->opt.program_max_heap);
    if (!s->opt.programs_dir) return 0;
    ps->dir = strdup(s->opt.programs_dir);
    if (!ps->dir) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    return load_dir(s, err, errcap);
}

void programs_reload(Server *s)
{
    Programs *ps = s->programs;
    if (!ps || !ps->dir) {
        server_log(s, "sgl serve: SIGHUP: no --programs directory to reload");
        return;
    }
    char err[1024];
    if (load_dir(s, err, sizeof err)) server_log(s, "sgl serve: SIGHUP: reload failed, keeping the old programs: %s", err);
    else server_log(s, "sgl serve: SIGHUP: %d programs loaded from %s", ps->n, ps->dir);
}

void programs_fini(Server *s)
{
    Programs *ps = s->programs;
    if (!ps) return;
    while (ps->runs) {            /* only after the loop stopped: nothing to answer */
        PRun *r = ps->runs;
        ps->runs = r->next;
        sgl_task_free(r->task);
        prog_unref(ps, r->prog);
        free(r);
    }
    for (int i = 0; i < ps->n; i++) prog_unref(ps, ps->items[i]);
    free(ps->items);
    sgl_vm_free(ps->vm);
    free(ps->dir);
    free(ps);
    s->programs = NULL;
}

int programs_busy(Server *s) { return s->programs ? s->programs->n_runs : 0; }

void programs_run_ready(Server *s)
{
    if (s->programs && s->programs->n_runs) sgl_vm_run_ready(s->programs->vm);
}

void programs_cancel_all(Server *s)
{
    if (!s->programs) return;
    /* a done callback may run inside sgl_task_cancel and free its run */
    int n = s->programs->n_runs;
    sgl_task **tasks = malloc((size_t)(n ? n : 1) * sizeof *tasks);
    if (!tasks) return;
    int k = 0;
    for (PRun *r = s->programs->runs; r && k < n; r = r->next) tasks[k++] = r->task;
    for (int i = 0; i < k; i++) {
        int live = 0;
        for (PRun *r = s->programs ? s->programs->runs : NULL; r; r = r->next) live |= r->task == tasks[i];
        if (live) sgl_task_cancel(tasks[i]);
    }
    free(tasks);
}

void programs_list(Server *s, HttpRequest *r)
{
    Programs *ps = s->programs;
    json_t *list = json_array();
    for (int i = 0; ps && i < ps->n; i++) {
        Prog *p = ps->items[i];
        json_t *sig = p->signature ? json_loads(p->signature, 0, NULL) : NULL;
        json_t *params = json_array();
        json_t *fns = json_object_get(sig, "functions");
        for (size_t k = 0; k < json_array_size(fns); k++) {
            json_t *f = json_array_get(fns, k);
            if (!strcmp(json_string_value(json_object_get(f, "name")) ? json_string_value(json_object_get(f, "name")) : "",
                        "main")) {
                json_decref(params);
                params = json_incref(json_object_get(f, "params"));
            }
        }
        json_array_append_new(list, json_pack("{s:s, s:s, s:o, s:o}", "name", p->name, "file", p->path, "params",
                                              params ? params : json_array(), "functions",
                                              fns ? json_incref(fns) : json_array()));
        json_decref(sig);
    }
    server_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", list));
}

/* ---- a run ---- */

static void run_unlink(PRun *run)
{
    Programs *ps = run->s->programs;
    if (run->prev) run->prev->next = run->next;
    else ps->runs = run->next;
    if (run->next) run->next->prev = run->prev;
    ps->n_runs--;
    server_vm_task_finished(run->s);
}

static void sse_event(HttpRequest *r, const char *event, const char *data, size_t len)
{
    StrBuf b = {0};
    sb_printf(&b, "event: %s\ndata: ", event);
    sb_append(&b, data, len);
    sb_appends(&b, "\n\n");
    http_stream_write(r, b.data, b.len);
    sb_free(&b);
}

static void run_done(void *ud, sgl_task *t)
{
    PRun *run = ud;
    char *res = NULL;
    sgl_status st = sgl_task_result(t, &res);
    if (run->req) {
        HttpRequest *r = run->req;
        r->on_abort = NULL;
        if (run->stream) {
            if (st == SGL_OK) sse_event(r, "result", res, strlen(res));
            else {
                json_t *e = json_pack("{s:{s:s, s:s, s:n, s:i}}", "error", "message", sgl_task_error(t), "type",
                                      "program_error", "param", "code", 422);
                char *et = json_dumps(e, JSON_COMPACT);
                json_decref(e);
                if (et) sse_event(r, "error", et, strlen(et));
                free(et);
            }
            static const char done[] = "data: [DONE]\n\n";
            http_stream_write(r, done, sizeof done - 1);
            http_stream_end(r);
        } else if (st == SGL_OK) {
            http_respond(r, 200, "application/json", res, strlen(res), NULL);
        } else {
            ApiError e;
            api_error_set(&e, 422, NULL, "%s", sgl_task_error(t));
            e.type = "program_error";
            server_error(r, &e);
        }
    }
    free(res);
    run_unlink(run);
    Programs *ps = run->s->programs;
    prog_unref(ps, run->prog);
    sgl_task_free(t);
    free(run);
}

static void run_abort(void *ud, HttpRequest *r)
{
    PRun *run = ud;
    run->req = NULL;
    http_request_done(r);
    sgl_task_cancel(run->task);   /* its done callback still runs */
}

/* Events of a streaming run (text as generated, per branch; variables as set). */
static void on_event(void *ud, const sgl_event *ev)
{
    (void)ud;
    PRun *run = NULL;
    Programs *ps = ud;
    for (PRun *r = ps->runs; r; r = r->next)
        if (r->task == ev->task) run = r;
    if (!run || !run->stream || !run->req) return;
    json_t *o;
    if (ev->kind == SGL_EV_TEXT)
        o = json_pack("{s:i, s:o, s:o}", "branch", ev->branch, "name", ev->name ? json_string(ev->name) : json_null(), "text",
                      json_text(ev->data, ev->len));
    else {
        json_t *v = json_loadb(ev->data, ev->len, JSON_DECODE_ANY, NULL);
        o = json_pack("{s:i, s:s, s:o}", "branch", ev->branch, "name", ev->name ? ev->name : "", "value", v ? v : json_null());
    }
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (t) sse_event(run->req, ev->kind == SGL_EV_TEXT ? "text" : "var", t, strlen(t));
    free(t);
}

void programs_run(Server *s, HttpRequest *r, const char *name)
{
    Programs *ps = s->programs;
    Prog *p = NULL;
    for (int i = 0; ps && i < ps->n; i++)
        if (!strcmp(ps->items[i]->name, name)) p = ps->items[i];
    if (!p) {
        server_errorf(r, 404, NULL, "no program named '%s'%s", name, ps && ps->dir ? "" : " (the server has no --programs)");
        return;
    }
    /* a program run holds model calls too: the same queue limit */
    int cap = (s->eng ? eng_max_running(s->eng) : 64) + s->opt.max_queued;
    if (ps->n_runs >= cap) {
        s->metrics.rejected_queue_full++;
        server_errorf(r, 429, NULL, "too many program runs in flight (%d); retry later", ps->n_runs);
        return;
    }
    if (job_admit(s, r, 1)) return;
    json_error_t je;
    json_t *args = r->body_len ? json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je) : json_object();
    if (!args) {
        server_errorf(r, 400, NULL, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return;
    }
    if (!json_is_object(args)) {
        json_decref(args);
        server_errorf(r, 400, NULL, "the body must be a JSON object of the program's arguments");
        return;
    }
    int stream = 0;
    json_t *sv = json_object_get(args, "stream");
    if (sv && !json_is_boolean(sv)) {
        json_decref(args);
        server_errorf(r, 400, "stream", "stream must be true or false");
        return;
    }
    stream = json_is_true(sv);
    json_object_del(args, "stream");
    char *args_text = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    PRun *run = calloc(1, sizeof *run);
    if (!args_text || !run) {
        free(args_text);
        free(run);
        server_errorf(r, 500, NULL, "out of memory");
        return;
    }
    run->s = s;
    run->req = r;
    run->prog = p;
    run->stream = stream;
    p->refs++;
    sgl_vm_set_events(ps->vm, on_event, ps);
    sgl_status st = sgl_task_start(ps->vm, p->prog, NULL, args_text, run_done, run, &run->task);
    free(args_text);
    if (st != SGL_OK) {
        prog_unref(ps, p);
        free(run);
        server_errorf(r, st == SGL_ERR_USAGE ? 400 : 500, NULL, "%s", sgl_last_error(ps->vm));
        return;
    }
    run->next = ps->runs;
    if (ps->runs) ps->runs->prev = run;
    ps->runs = run;
    ps->n_runs++;
    server_vm_task_started(s);
    r->on_abort = run_abort;
    r->ud = run;
    if (stream) http_stream_begin(r, 200, "text/event-stream", NULL);
    sgl_vm_run_ready(ps->vm);
}
