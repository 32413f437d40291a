/*
 * server/server.c — sgl_serve: the loop, the runtime on it, the route
 * table, authentication, the access log, signals (SIGINT/SIGTERM drain,
 * SIGHUP reloads programs) and the small routes (/health, /metrics).
 *
 * Drain: stop accepting, close idle connections, refuse new requests on
 * open ones (503), wait for requests in flight; at drain_timeout_s cancel
 * what is left (its clients get what was generated, finish "abort"), then
 * close everything and return.
 */
#include "server/server.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double server_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sgl_serve_options_init(sgl_serve_options *o)
{
    memset(o, 0, sizeof *o);
    sgl_runtime_options_init(&o->runtime);
    o->host = "127.0.0.1";
    o->port = 30000;
    o->max_connections = 1024;
    o->max_queued = 256;
    o->max_header_bytes = 16 << 10;
    o->max_body_bytes = 8 << 20;
    o->read_timeout_s = 30;
    o->idle_timeout_s = 60;
    o->drain_timeout_s = 30;
    o->program_max_steps = 100000000ull;
    o->program_max_heap = (size_t)256 << 20;
}

void server_log(Server *s, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (s->opt.log) s->opt.log(s->opt.log_ud, line);
    else fprintf(stderr, "%s\n", line);
}

void server_json(HttpRequest *r, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":500}}";
        http_respond(r, 500, "application/json", oom, sizeof oom - 1, NULL);
        return;
    }
    http_respond(r, status, "application/json", text, strlen(text), NULL);
    free(text);
}

void server_error(HttpRequest *r, const ApiError *e)
{
    char *body = api_error_json(e);
    http_respond(r, e->status, "application/json", body ? body : "{}", body ? strlen(body) : 2,
                 e->status == 503 || e->status == 429 ? "Retry-After: 1\r\n" : NULL);
    free(body);
}

void server_errorf(HttpRequest *r, int status, const char *param, const char *fmt, ...)
{
    ApiError e;
    va_list ap;
    va_start(ap, fmt);
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_error_set(&e, status, param, "%s", msg);
    server_error(r, &e);
}

/* ---- the VMs' driver ---- */

static void vm_check_cb(uv_check_t *h)
{
    Server *s = h->data;
    if (s->chat_vm) sgl_vm_run_ready(s->chat_vm);
    programs_run_ready(s);
}

void server_vm_task_started(Server *s)
{
    if (s->vm_tasks++ == 0) uv_check_start(&s->vm_check, vm_check_cb);
}

void server_vm_task_finished(Server *s)
{
    if (--s->vm_tasks == 0) uv_check_stop(&s->vm_check);
}

/* ---- routing ---- */

typedef struct {
    const char *method, *path;
    int auth;
} Route;

static const Route routes[ROUTE_COUNT] = {
#define ROUTE_ENTRY(name, method, path, auth) {method, path, auth},
    SERVER_ROUTES(ROUTE_ENTRY)
#undef ROUTE_ENTRY
};

static const char *const route_names[ROUTE_COUNT + 1] = {
#define ROUTE_NAME(name, method, path, auth) #name,
    SERVER_ROUTES(ROUTE_NAME)
#undef ROUTE_NAME
    "not_found",
};

_Static_assert(sizeof routes / sizeof routes[0] == ROUTE_COUNT, "one routes entry per SERVER_ROUTES line");
_Static_assert(sizeof route_names / sizeof route_names[0] == ROUTE_COUNT + 1, "a name per route, and not_found");

const char *server_route_name(int id) { return route_names[id]; }

/* The route for a path; *method_ok 0 when only the method is wrong. */
static int find_route(const char *method, const char *path, int *method_ok)
{
    int found = ROUTE_NOT_FOUND;
    *method_ok = 1;
    for (int i = 0; i < ROUTE_COUNT; i++) {
        size_t n = strlen(routes[i].path);
        int match = i == ROUTE_programs_run ? strncmp(path, routes[i].path, n) == 0 && path[n]
                                            : strcmp(path, routes[i].path) == 0;
        if (!match) continue;
        /* SGLang's clients GET or POST some of its routes */
        int any = i == ROUTE_health || i == ROUTE_health_generate || i == ROUTE_flush_cache ||
                  i == ROUTE_get_model_info || i == ROUTE_get_server_info || i == ROUTE_model_info ||
                  i == ROUTE_server_info || i == ROUTE_generate;
        if (!strcmp(method, routes[i].method) || (any && (!strcmp(method, "GET") || !strcmp(method, "POST"))))
            return i;
        found = i;
        *method_ok = 0;
    }
    return found;
}

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
static int authorized(const Server *s, const HttpRequest *r)
{
    const char *key = s->opt.api_key;
    if (!key || !*key) return 1;
    const char *h = r->authorization ? r->authorization : "";
    static const char bearer[] = "Bearer ";
    size_t hl = strlen(h), kl = strlen(key), bl = sizeof bearer - 1;
    unsigned diff = (unsigned)(hl != bl + kl);
    /* compare over the expected length whatever was sent */
    for (size_t i = 0; i < bl + kl; i++) {
        char want = i < bl ? bearer[i] : key[i - bl];
        char got = i < hl ? h[i] : 0;
        diff |= (unsigned char)(want ^ got);
    }
    return diff == 0;
}

static void health(Server *s, HttpRequest *r)
{
    (void)s;
    http_respond(r, 200, "application/json", "{}", 2, NULL);
}

static void metrics_route(Server *s, HttpRequest *r)
{
    char *t = metrics_text(s);
    if (!t) {
        server_errorf(r, 500, NULL, "out of memory");
        return;
    }
    http_respond(r, 200, "text/plain; version=0.0.4", t, strlen(t), NULL);
    free(t);
}

static void handle(void *ud, HttpRequest *r)
{
    Server *s = ud;
    int method_ok;
    int id = find_route(r->method, r->path, &method_ok);
    r->route = id;
    if (id == ROUTE_NOT_FOUND) {
        server_errorf(r, 404, NULL, "no route %s %s", r->method, r->path);
        return;
    }
    if (!method_ok) {
        server_errorf(r, 405, NULL, "%s %s: use %s", r->method, r->path, routes[id].method);
        return;
    }
    if (routes[id].auth && !authorized(s, r)) {
        ApiError e;
        api_error_set(&e, 401, NULL, "missing or wrong API key (Authorization: Bearer KEY)");
        e.type = "authentication_error";
        server_error(r, &e);
        return;
    }
    if (s->draining && id != ROUTE_health) {
        server_errorf(r, 503, NULL, "server is shutting down");
        return;
    }
    switch ((RouteId)id) {
    case ROUTE_health: health(s, r); return;
    case ROUTE_health_generate: native_health_generate(s, r); return;
    case ROUTE_models: openai_models(s, r); return;
    case ROUTE_completions: openai_completions(s, r); return;
    case ROUTE_chat_completions: openai_chat(s, r); return;
    case ROUTE_tokenize: openai_tokenize(s, r); return;
    case ROUTE_detokenize: openai_detokenize(s, r); return;
    case ROUTE_generate: native_generate(s, r); return;
    case ROUTE_get_model_info:
    case ROUTE_model_info: native_model_info(s, r); return;
    case ROUTE_get_server_info:
    case ROUTE_server_info: native_server_info(s, r); return;
    case ROUTE_flush_cache: native_flush_cache(s, r); return;
    case ROUTE_abort_request: native_abort_request(s, r); return;
    case ROUTE_concate_and_append_request: native_concate_and_append(s, r); return;
    case ROUTE_programs_list: programs_list(s, r); return;
    case ROUTE_programs_run: programs_run(s, r, r->path + strlen(routes[id].path)); return;
    case ROUTE_metrics: metrics_route(s, r); return;
    case ROUTE_COUNT: break;
    }
    server_errorf(r, 404, NULL, "no route %s %s", r->method, r->path);
}

static void access_log(void *ud, const HttpRequest *r)
{
    Server *s = ud;
    metrics_request(&s->metrics, r->route, r->status);
    if (s->opt.quiet) return;
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    server_log(s, "%s %s \"%s %s\" %d %zu %.3fs%s", when, r->peer, r->method, r->path, r->status, r->bytes_out,
               server_now() - r->t_start, r->aborted ? " (client went away)" : "");
}

/* ---- signals and drain ---- */

static void stop_loop_if_idle(Server *s)
{
    if (!s->draining) return;
    if (http_server_busy(s->http) == 0 && s->n_jobs == 0 && !programs_busy(s)) uv_stop(s->loop);
}

static void drain_tick(uv_timer_t *t)
{
    Server *s = t->data;
    if (server_now() - s->drain_started > s->opt.drain_timeout_s && !s->drain_cancelled) {
        s->drain_cancelled = 1;
        server_log(s, "sgl serve: drain deadline: cancelling %d requests", s->n_jobs);
        for (GenJob *j = s->jobs; j; j = j->next) job_cancel(j);
        programs_cancel_all(s);
    }
    stop_loop_if_idle(s);
}

static void on_stop_signal(uv_signal_t *h, int sig)
{
    Server *s = h->data;
    if (s->draining) {
        if (sig == SIGINT) {       /* a second ^C: stop waiting */
            s->drain_started = -1e9;
        }
        return;
    }
    s->draining = 1;
    s->drain_started = server_now();
    server_log(s, "sgl serve: %s: draining %d requests", sig == SIGINT ? "SIGINT" : "SIGTERM", http_server_busy(s->http));
    http_server_stop_accepting(s->http);
    uv_timer_start(&s->drain_timer, drain_tick, 0, 50);
}

static void on_hup(uv_signal_t *h, int sig)
{
    (void)sig;
    Server *s = h->data;
    programs_reload(s);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

sgl_status sgl_serve(const sgl_serve_options *o, char *err, size_t errcap)
{
    signal(SIGPIPE, SIG_IGN);
    Server *s = calloc(1, sizeof *s);
    uv_loop_t *loop = malloc(sizeof *loop);
    if (!s || !loop || uv_loop_init(loop) != 0) {
        free(s);
        free(loop);
        snprintf(err, errcap, "out of memory");
        return SGL_ERR_IO;
    }
    s->loop = loop;
    s->opt = *o;
    s->t_start = server_now();
    sgl_status st = SGL_ERR_IO;
    RuntimeOptions ro = o->runtime;
    ro.uv_loop = loop;
    ro.lazy = 0;
    if (runtime_open(&ro, &s->rt, err, errcap) != 0) goto out;
    s->eng = runtime_engine(s->rt);
    const char *path = runtime_model_path(s->rt);
    const char *base = strrchr(path, '/');
    snprintf(s->model_id, sizeof s->model_id, "%s",
             o->served_model_name ? o->served_model_name : base && base[1] ? base + 1 : path);
    uv_check_init(loop, &s->vm_check);
    s->vm_check.data = s;
    if (chatmsg_init(s, err, errcap) != 0) goto out;
    if (programs_init(s, err, errcap) != 0) {
        st = SGL_ERR_USAGE;
        goto out;
    }
    HttpLimits lim;
    http_limits_default(&lim);
    if (o->max_header_bytes) lim.max_header_bytes = o->max_header_bytes;
    if (o->max_body_bytes) lim.max_body_bytes = o->max_body_bytes;
    if (o->read_timeout_s > 0) lim.read_timeout_s = o->read_timeout_s;
    if (o->idle_timeout_s > 0) lim.idle_timeout_s = o->idle_timeout_s;
    if (o->max_connections > 0) lim.max_connections = o->max_connections;
    s->http = http_server_new(loop, o->host ? o->host : "127.0.0.1", o->port, &lim, handle, access_log, s, err, errcap);
    if (!s->http) goto out;
    uv_signal_init(loop, &s->sig_int);
    uv_signal_init(loop, &s->sig_term);
    uv_signal_init(loop, &s->sig_hup);
    s->sig_int.data = s->sig_term.data = s->sig_hup.data = s;
    uv_signal_start(&s->sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&s->sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&s->sig_hup, on_hup, SIGHUP);
    uv_timer_init(loop, &s->drain_timer);
    s->drain_timer.data = s;
    server_log(s, "sgl serve: listening on http://%s:%d (model %s)", o->host ? o->host : "127.0.0.1",
               http_server_port(s->http), path);
    uv_run(loop, UV_RUN_DEFAULT);
    server_log(s, "sgl serve: stopped");
    st = SGL_OK;
out:
    if (s->http) http_server_free(s->http);
    programs_fini(s);
    chatmsg_fini(s);
    runtime_close(s->rt);    /* remaining requests' on_done fire here */
    uv_walk(loop, close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    free(loop);
    free(s);
    return st;
}
