/*
 * tests/unit/test_server_e2e.c — sgl_serve in this process on the default
 * model, over loopback sockets: health, a completion, keep-alive, a stream
 * with usage, a client that leaves mid-stream (its KV slots come back),
 * the API key, and SIGTERM's drain (sgl_serve returns SGL_OK). The Python
 * suites (tests/serve) cover the APIs in depth; this one runs under `make
 * asan` with the rest of the unit tests, so the server's own memory is
 * checked there too. Waits are bounded polls, never timings.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sgl.h"

#define MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int port = -1;
static int access_lines;
static sgl_status serve_status = (sgl_status)-1;
static char serve_err[512];

static void on_log(void *ud, const char *line)
{
    (void)ud;
    pthread_mutex_lock(&mu);
    int p;
    if (sscanf(line, "sgl serve: listening on http://127.0.0.1:%d", &p) == 1) port = p;
    if (line[0] == '2') access_lines++;     /* "2026-...Z peer "METHOD path" status ..." */
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void *serve_thread(void *arg)
{
    (void)arg;
    sgl_serve_options o;
    sgl_serve_options_init(&o);
    o.runtime.model = MODEL;
    o.runtime.threads = 2;
    o.port = 0;
    o.api_key = "k3y";
    o.log = on_log;
    o.drain_timeout_s = 30;
    sgl_status st = sgl_serve(&o, serve_err, sizeof serve_err);
    pthread_mutex_lock(&mu);
    serve_status = st;
    if (port < 0) port = 0;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_all(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = write(fd, s + off, n - off);
        cr_assert_gt(w, 0);
        off += (size_t)w;
    }
}

/* Reads until `until` appears (or the peer closes); returns the bytes. */
static char *read_until(int fd, const char *until)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    for (;;) {
        if (n == cap) b = realloc(b, (cap *= 2) + 1);
        ssize_t r = read(fd, b + n, cap - n);
        if (r <= 0) break;
        n += (size_t)r;
        b[n] = '\0';
        if (until && strstr(b, until)) break;
    }
    b[n] = '\0';
    return b;
}

static char *request(const char *method, const char *path, const char *body, const char *until)
{
    int fd = connect_server();
    char head[512];
    snprintf(head, sizeof head,
             "%s %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer k3y\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n",
             method, path, body ? strlen(body) : 0);
    send_all(fd, head);
    if (body) send_all(fd, body);
    char *r = read_until(fd, until);
    close(fd);
    return r;
}

static long metric(const char *name)
{
    char *m = request("GET", "/metrics", NULL, NULL);
    char *at = strstr(m, name);
    long v = -1;
    while (at && (at > m && at[-1] != '\n')) at = strstr(at + 1, name);
    if (at) v = strtol(at + strlen(name) + 1, NULL, 10);
    free(m);
    return v;
}

Test(server_e2e, routes_stream_disconnect_and_drain, .timeout = 300)
{
    if (access(MODEL, R_OK) != 0) cr_skip_test("no model at " MODEL " (run `make model`)");
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, serve_thread, NULL), 0);
    pthread_mutex_lock(&mu);
    while (port < 0) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    cr_assert_gt(port, 0, "sgl_serve failed: %s", serve_err);

    /* health needs no key; everything else does */
    char *r = request("GET", "/health", NULL, NULL);
    cr_assert(strstr(r, "HTTP/1.1 200 OK") && strstr(r, "\r\n\r\n{}"), "%s", r);
    free(r);
    int fd = connect_server();
    send_all(fd, "GET /v1/models HTTP/1.1\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n");
    r = read_until(fd, NULL);
    close(fd);
    cr_assert(strstr(r, "HTTP/1.1 401") && strstr(r, "\"authentication_error\""), "%s", r);
    free(r);

    /* a completion, greedy */
    r = request("POST", "/v1/completions", "{\"prompt\": \"1, 2, 3,\", \"max_tokens\": 4, \"temperature\": 0}", NULL);
    cr_assert(strstr(r, "HTTP/1.1 200 OK") && strstr(r, "\"text_completion\"") && strstr(r, "\"completion_tokens\":4"), "%s", r);
    free(r);

    /* keep-alive: two requests pipelined on one connection, answered in order */
    fd = connect_server();
    send_all(fd, "GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/models HTTP/1.1\r\nAuthorization: Bearer k3y\r\n"
                 "Connection: close\r\n\r\n");
    r = read_until(fd, NULL);
    close(fd);
    char *second = strstr(r + 1, "HTTP/1.1 200 OK");
    cr_assert(strncmp(r, "HTTP/1.1 200 OK", 15) == 0 && second && strstr(second, "\"object\":\"list\""), "%s", r);
    free(r);

    /* a chat stream with usage, ended by [DONE] */
    r = request("POST", "/v1/chat/completions",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 3, \"temperature\": 0,"
                " \"stream\": true, \"stream_options\": {\"include_usage\": true}}",
                "data: [DONE]");
    cr_assert(strstr(r, "Transfer-Encoding: chunked") && strstr(r, "\"role\":\"assistant\"") && strstr(r, "\"usage\"") &&
                  strstr(r, "data: [DONE]"),
              "%s", r);
    free(r);

    /* a client that leaves mid-stream: its request is cancelled and its
     * KV slots come back (polled through /metrics) */
    fd = connect_server();
    const char *body = "{\"prompt\": \"Once upon a time\", \"max_tokens\": 4000, \"ignore_eos\": true, \"stream\": true}";
    char head[512];
    snprintf(head, sizeof head, "POST /v1/completions HTTP/1.1\r\nAuthorization: Bearer k3y\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    send_all(fd, head);
    r = read_until(fd, "data: {");
    cr_assert(strstr(r, "data: {"), "%s", r);
    free(r);
    close(fd);
    long used = -1;
    for (int i = 0; i < 3000 && used != 0; i++) {
        used = metric("sgl_kv_slots_used");
        if (used) usleep(10000);
    }
    cr_assert_eq(used, 0, "KV slots still held after the client left");
    cr_assert_eq(metric("sgl_running_requests"), 0);

    /* SIGTERM: drain and return */
    raise(SIGTERM);
    pthread_join(th, NULL);
    cr_assert_eq(serve_status, SGL_OK, "%s", serve_err);
    cr_assert_geq(access_lines, 6);
}
