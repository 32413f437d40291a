/*
 * server/http.c — HTTP/1.1 on libuv with Debian's http-parser (see http.h).
 *
 * Owns: the listener, connections (a tcp handle and one timer each), the
 * per-connection parser state and the request being answered, the bytes a
 * client pipelined behind it, response framing. Does not own: what a
 * request means (the handler's).
 *
 * A connection's life:
 *
 *   accept ─► idle timer ─► first byte: read deadline ─► message complete:
 *   parser paused, reading stopped, handler(req) ─► response finished ─►
 *   keep-alive? parse what was pipelined, else read again (idle timer)
 *            : close after the last write
 *
 * Both handles of a connection are closed together; the connection is
 * freed when the second close callback has run.
 */
#include "server/http.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "base/strbuf.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void http_limits_default(HttpLimits *l)
{
    l->max_header_bytes = 16 << 10;
    l->max_body_bytes = 8 << 20;
    l->read_timeout_s = 30;
    l->idle_timeout_s = 60;
    l->max_connections = 1024;
    l->max_write_queue = 16 << 20;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---- the parser (shared by connections and http_parse_*) ---------------- */

struct HttpParse {
    http_parser p;
    HttpLimits lim;
    HttpRequest *req;            /* being parsed (allocated at message begin) */
    StrBuf url, field, value;
    int in_value;                /* the last header callback was a value */
    size_t header_bytes;
    StrBuf body;
    int complete;                /* a whole request is in req */
    int status;                  /* a refused request's status */
    const char *why;             /* and why */
    int expect_continue;
    size_t consumed;             /* bytes the last http_parse_feed used */
};

static void req_free(HttpRequest *r)
{
    if (!r) return;
    free(r->path);
    free(r->query);
    free(r->authorization);
    free(r->body);
    free(r);
}

static int refuse(HttpParse *ps, int status, const char *why)
{
    ps->status = status;
    ps->why = why;
    return -1;
}

static void end_header(HttpParse *ps)
{
    if (!ps->field.len) return;
    if (strcasecmp(ps->field.data, "authorization") == 0) {
        free(ps->req->authorization);
        ps->req->authorization = sb_detach(&ps->value);
    } else if (strcasecmp(ps->field.data, "expect") == 0 && ps->value.data &&
               strcasecmp(ps->value.data, "100-continue") == 0) {
        ps->expect_continue = 1;
    }
    sb_truncate(&ps->field, 0);
    sb_truncate(&ps->value, 0);
}

static int count_header(HttpParse *ps, size_t n)
{
    ps->header_bytes += n;
    return ps->header_bytes > ps->lim.max_header_bytes ? refuse(ps, 431, "request headers too large") : 0;
}

static int on_message_begin(http_parser *p)
{
    HttpParse *ps = p->data;
    req_free(ps->req);
    ps->req = calloc(1, sizeof *ps->req);
    if (!ps->req) return refuse(ps, 500, "out of memory");
    ps->req->t_start = now_s();
    sb_truncate(&ps->url, 0);
    sb_truncate(&ps->field, 0);
    sb_truncate(&ps->value, 0);
    sb_truncate(&ps->body, 0);
    ps->in_value = 0;
    ps->header_bytes = 0;
    ps->expect_continue = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    HttpParse *ps = p->data;
    if (count_header(ps, n)) return -1;
    sb_append(&ps->url, at, n);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    HttpParse *ps = p->data;
    if (count_header(ps, n)) return -1;
    if (ps->in_value) end_header(ps);
    ps->in_value = 0;
    sb_append(&ps->field, at, n);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    HttpParse *ps = p->data;
    if (count_header(ps, n)) return -1;
    ps->in_value = 1;
    sb_append(&ps->value, at, n);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    HttpParse *ps = p->data;
    end_header(ps);
    HttpRequest *r = ps->req;
    r->method = http_method_str((enum http_method)p->method);
    r->http10 = p->http_major == 1 && p->http_minor == 0;
    const char *u = ps->url.data ? ps->url.data : "";
    const char *q = strchr(u, '?');
    r->path = q ? strndup(u, (size_t)(q - u)) : strdup(u);
    r->query = strdup(q ? q + 1 : "");
    if (!r->path || !r->query || ps->url.oom || ps->field.oom || ps->value.oom) return refuse(ps, 500, "out of memory");
    if (!*r->path) return refuse(ps, 400, "empty request target");
    /* A declared body too large is refused before a byte of it is read. */
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > ps->lim.max_body_bytes)
        return refuse(ps, 413, "request body too large");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    HttpParse *ps = p->data;
    if (ps->body.len + n > ps->lim.max_body_bytes) return refuse(ps, 413, "request body too large");
    sb_append(&ps->body, at, n);
    return ps->body.oom ? refuse(ps, 500, "out of memory") : 0;
}

static int on_message_complete(http_parser *p)
{
    HttpParse *ps = p->data;
    HttpRequest *r = ps->req;
    r->body_len = ps->body.len;
    r->body = sb_detach(&ps->body);
    if (!r->body) return refuse(ps, 500, "out of memory");
    ps->complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void parse_init(HttpParse *ps, const HttpLimits *lim)
{
    memset(ps, 0, sizeof *ps);
    ps->lim = *lim;
    http_parser_init(&ps->p, HTTP_REQUEST);
    ps->p.data = ps;
}

static void parse_fini(HttpParse *ps)
{
    req_free(ps->req);
    sb_free(&ps->url);
    sb_free(&ps->field);
    sb_free(&ps->value);
    sb_free(&ps->body);
}

/* Feeds bytes; returns how many were consumed. Stops after a complete
 * request (ps->complete) or an error (ps->status). */
static size_t parse_feed(HttpParse *ps, const char *data, size_t len)
{
    if (HTTP_PARSER_ERRNO(&ps->p) == HPE_PAUSED) http_parser_pause(&ps->p, 0);
    size_t n = http_parser_execute(&ps->p, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&ps->p);
    if (e != HPE_OK && e != HPE_PAUSED && !ps->status) {
        if (e == HPE_INVALID_VERSION) refuse(ps, 505, "HTTP version not supported");
        else if (e == HPE_HEADER_OVERFLOW) refuse(ps, 431, "request headers too large");
        else refuse(ps, 400, http_errno_description(e));
    }
    return n;
}

HttpParse *http_parse_new(const HttpLimits *lim)
{
    HttpParse *ps = malloc(sizeof *ps);
    if (ps) parse_init(ps, lim);
    return ps;
}

int http_parse_feed(HttpParse *ps, const char *data, size_t len, int *status, const HttpRequest **req)
{
    *status = 0;
    *req = NULL;
    if (ps->status) {
        *status = ps->status;
        return -1;
    }
    ps->consumed = 0;
    if (ps->complete) {       /* the next pipelined request */
        ps->complete = 0;
        req_free(ps->req);
        ps->req = NULL;
    }
    if (!len) return 0;       /* (http-parser reads no bytes as the end of the stream) */
    ps->consumed = parse_feed(ps, data, len);
    if (ps->status) {
        *status = ps->status;
        return -1;
    }
    if (ps->complete) {
        *req = ps->req;
        return 1;
    }
    return 0;
}

size_t http_parse_consumed(const HttpParse *ps) { return ps->consumed; }

void http_parse_free(HttpParse *ps)
{
    if (!ps) return;
    parse_fini(ps);
    free(ps);
}

/* ---- connections ----------------------------------------------------------- */

typedef struct HttpConn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    HttpServer *srv;
    struct HttpConn *prev, *next;
    HttpParse ps;
    HttpRequest *cur;            /* being answered */
    StrBuf pending;              /* bytes read behind the current request */
    int closing, handles_open;
    int keep_alive;
    int reading;
    int close_after_write;
    int writes;                  /* uv_write requests in flight */
    size_t queued;               /* their bytes */
    char peer[64];
} HttpConn;

struct HttpServer {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    HttpLimits lim;
    http_handler_fn handler;
    http_log_fn log;
    void *ud;
    HttpConn *conns;
    int n_conns, n_busy;
    int stopping;
    int port;
    int freeing;
};

typedef struct {
    uv_write_t w;
    HttpConn *c;
    size_t len;
    char data[];
} WriteReq;

static void conn_close(HttpConn *c);
static void conn_continue(HttpConn *c);
static void refuse_conn(HttpConn *c, int status, const char *why, const char *extra);

static void on_write(uv_write_t *w, int status)
{
    WriteReq *wr = (WriteReq *)w;
    HttpConn *c = wr->c;
    c->writes--;
    c->queued -= wr->len;
    free(wr);
    if (status < 0) conn_close(c);
    else if (c->close_after_write && c->writes == 0) conn_close(c);
}

/* One uv_write of the pieces, copied into one buffer (one syscall, and
 * with TCP_NODELAY one segment, per SSE event). */
static void write_pieces(HttpConn *c, const char *const *data, const size_t *lens, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) len += lens[i];
    if (c->closing || !len) return;
    WriteReq *wr = malloc(sizeof *wr + len);
    if (!wr) {
        conn_close(c);
        return;
    }
    wr->c = c;
    wr->len = len;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        memcpy(wr->data + at, data[i], lens[i]);
        at += lens[i];
    }
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(wr);
        conn_close(c);
        return;
    }
    c->writes++;
    c->queued += len;
}

static void write_raw(HttpConn *c, const char *data, size_t len) { write_pieces(c, &data, &len, 1); }

static void conn_freed(uv_handle_t *h)
{
    HttpConn *c = h->data;
    if (--c->handles_open > 0) return;
    HttpServer *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n_conns--;
    parse_fini(&c->ps);
    sb_free(&c->pending);
    free(c);
    if (s->freeing && s->n_conns == 0 && !s->listening) free(s);
}

/* The connection lets go of its request; freed once the handler has too. */
static void release_request(HttpConn *c)
{
    HttpRequest *r = c->cur;
    if (!r) return;
    c->cur = NULL;
    c->srv->n_busy--;
    r->conn = NULL;
    if (r->done_by_handler) req_free(r);
}

static void conn_close(HttpConn *c)
{
    if (c->closing) return;
    c->closing = 1;
    HttpRequest *r = c->cur;
    if (r && !r->finished) {
        r->aborted = 1;
        if (!r->status) r->status = 499;    /* client closed request (as nginx logs it) */
        if (c->srv->log) c->srv->log(c->srv->ud, r);
        if (r->on_abort && !r->done_by_handler) r->on_abort(r->ud, r);
    }
    release_request(c);
    uv_close((uv_handle_t *)&c->tcp, conn_freed);
    uv_close((uv_handle_t *)&c->timer, conn_freed);
}

static void on_timer(uv_timer_t *t)
{
    HttpConn *c = t->data;
    if (c->cur) return;      /* answering: no deadline here */
    /* mid-request: the client was too slow (slowloris) */
    if (c->ps.req && !c->ps.complete) {
        refuse_conn(c, 408, "request not received in time", NULL);
        return;
    }
    conn_close(c);
}

static void arm_timer(HttpConn *c, double seconds)
{
    uv_timer_start(&c->timer, on_timer, (uint64_t)(seconds * 1000.0), 0);
}

/* A refused request: a small JSON error and close. */
static void refuse_conn(HttpConn *c, int status, const char *why, const char *extra)
{
    char body[512], head[512];
    int bl = snprintf(body, sizeof body,
                      "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":%d}}", why,
                      status >= 500 ? "server_error" : "invalid_request_error", status);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n%s"
                      "Content-Length: %d\r\n\r\n",
                      status, http_status_text(status), extra ? extra : "", bl);
    c->close_after_write = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    write_raw(c, head, (size_t)hl);
    write_raw(c, body, (size_t)bl);
    if (!c->writes) conn_close(c);
}

static void dispatch(HttpConn *c)
{
    HttpServer *s = c->srv;
    HttpRequest *r = c->ps.req;
    c->ps.req = NULL;
    c->ps.complete = 0;
    r->conn = c;
    snprintf(r->peer, sizeof r->peer, "%s", c->peer);
    c->keep_alive = http_should_keep_alive(&c->ps.p) && !s->stopping;
    c->cur = r;
    s->n_busy++;
    uv_timer_stop(&c->timer);
    s->handler(s->ud, r);
}

/* Parses data (from the socket or the pending buffer): dispatches a
 * complete request, keeps what follows it. */
static void conn_feed(HttpConn *c, const char *data, size_t len)
{
    if (len && !c->ps.req) arm_timer(c, c->srv->lim.read_timeout_s);   /* first byte of a request */
    size_t n = parse_feed(&c->ps, data, len);
    if (c->ps.status) {
        refuse_conn(c, c->ps.status, c->ps.why, NULL);
        return;
    }
    if (c->ps.expect_continue && !c->ps.complete) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        write_raw(c, cont, sizeof cont - 1);
        c->ps.expect_continue = 0;
    }
    if (!c->ps.complete) return;
    /* keep the rest for after this request's response */
    StrBuf rest = {0};
    if (n < len) sb_append(&rest, data + n, len - n);
    sb_free(&c->pending);
    c->pending = rest;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    dispatch(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    HttpConn *c = st->data;
    if (n < 0) {
        free(buf->base);
        conn_close(c);
        return;
    }
    if (n > 0 && !c->closing) {
        if (c->cur) sb_append(&c->pending, buf->base, (size_t)n);   /* not expected: reading is off */
        else conn_feed(c, buf->base, (size_t)n);
    }
    free(buf->base);
}

static void start_reading(HttpConn *c)
{
    if (c->reading || c->closing) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    else conn_close(c);
}

/* After a finished response: the next request, or close. */
static void conn_continue(HttpConn *c)
{
    if (c->closing) return;
    if (!c->keep_alive || c->srv->stopping) {
        c->close_after_write = 1;
        if (!c->writes) conn_close(c);
        return;
    }
    arm_timer(c, c->srv->lim.idle_timeout_s);
    if (c->pending.len) {
        StrBuf p = c->pending;
        memset(&c->pending, 0, sizeof c->pending);
        conn_feed(c, p.data, p.len);
        sb_free(&p);
        if (c->cur || c->closing) return;
    }
    start_reading(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
    HttpServer *s = ls->data;
    if (status < 0) return;
    HttpConn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    parse_init(&c->ps, &s->lim);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
        char ip[48] = "?";
        int port = 0;
        if (sa.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
    }
    if (s->n_conns > s->lim.max_connections || s->stopping) {
        refuse_conn(c, 503, s->stopping ? "server is shutting down" : "too many connections", "Retry-After: 1\r\n");
        return;
    }
    arm_timer(c, s->lim.idle_timeout_s);
    start_reading(c);
}

HttpServer *http_server_new(uv_loop_t *loop, const char *host, int port, const HttpLimits *lim,
                            http_handler_fn handler, http_log_fn log, void *ud, char *err, size_t errcap)
{
    HttpServer *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->lim = *lim;
    s->handler = handler;
    s->log = log;
    s->ud = ud;
    struct sockaddr_storage addr;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                               : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc < 0) {
        snprintf(err, errcap, "bad host %s: %s", host, uv_strerror(rc));
        free(s);
        return NULL;
    }
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listening = 1;
    if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection)) < 0) {
        snprintf(err, errcap, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
        s->freeing = 1;
        http_server_stop_accepting(s);
        return NULL;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    s->port = port;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen) == 0)
        s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    return s;
}

int http_server_port(const HttpServer *s) { return s->port; }
int http_server_busy(const HttpServer *s) { return s->n_busy; }
int http_server_connections(const HttpServer *s) { return s->n_conns; }

static void listener_closed(uv_handle_t *h)
{
    HttpServer *s = h->data;
    s->listening = 0;
    if (s->freeing && s->n_conns == 0) free(s);
}

void http_server_stop_accepting(HttpServer *s)
{
    if (!s->stopping && s->listening) uv_close((uv_handle_t *)&s->listener, listener_closed);
    else if (!s->listening && s->freeing && s->n_conns == 0) {
        free(s);
        return;
    }
    s->stopping = 1;
    for (HttpConn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (!c->cur && !c->ps.req) conn_close(c);
    }
}

void http_server_free(HttpServer *s)
{
    if (!s) return;
    s->freeing = 1;
    for (HttpConn *c = s->conns; c; c = c->next) conn_close(c);
    if (!s->stopping) http_server_stop_accepting(s);
    else if (!s->listening && s->n_conns == 0) free(s);
}

/* ---- responses ------------------------------------------------------------- */

static int writable(HttpRequest *r) { return r->conn && !r->aborted && !r->finished; }

static void finish(HttpRequest *r)
{
    HttpConn *c = r->conn;
    r->finished = 1;
    /* a handler that keeps state on the request (on_abort set) lets go of
     * it with http_request_done; a plain one is done with its response */
    if (!r->on_abort) r->done_by_handler = 1;
    if (c->srv->log) c->srv->log(c->srv->ud, r);
    release_request(c);
    conn_continue(c);
}

/* The status line and headers, then body[0..len) in the same write. */
static void head(HttpRequest *r, int status, const char *ctype, const char *extra, const char *framing,
                 const char *body, size_t len)
{
    HttpConn *c = r->conn;
    StrBuf h = {0};
    sb_printf(&h, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    if (ctype) sb_printf(&h, "Content-Type: %s\r\n", ctype);
    if (extra) sb_appends(&h, extra);
    if (!c->keep_alive || c->srv->stopping) sb_appends(&h, "Connection: close\r\n");
    else sb_appends(&h, "Connection: keep-alive\r\n");
    sb_appends(&h, framing);
    if (h.oom) conn_close(c);
    else {
        const char *pieces[2] = {h.data, body ? body : ""};
        size_t lens[2] = {h.len, body ? len : 0};
        write_pieces(c, pieces, lens, 2);
    }
    sb_free(&h);
    r->status = status;
}

void http_respond(HttpRequest *r, int status, const char *content_type, const char *body, size_t len,
                  const char *extra_headers)
{
    if (!writable(r) || r->streaming) return;
    char framing[64];
    snprintf(framing, sizeof framing, "Content-Length: %zu\r\n\r\n", len);
    head(r, status, content_type, extra_headers, framing, body, len);
    r->bytes_out += len;
    if (r->conn) finish(r);
}

void http_stream_begin(HttpRequest *r, int status, const char *content_type, const char *extra_headers)
{
    if (!writable(r) || r->streaming) return;
    r->streaming = 1;
    if (r->http10) r->conn->keep_alive = 0;   /* HTTP/1.0 has no chunks: the close ends the body */
    head(r, status, content_type, extra_headers,
         r->http10 ? "Cache-Control: no-cache\r\n\r\n" : "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n",
         NULL, 0);
}

void http_stream_write(HttpRequest *r, const char *data, size_t len)
{
    if (!writable(r) || !r->streaming || !len) return;
    HttpConn *c = r->conn;
    if (c->queued > c->srv->lim.max_write_queue) {   /* a reader this slow is dropped */
        conn_close(c);
        return;
    }
    if (r->http10) {
        write_raw(c, data, len);
    } else {
        char size[24];
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        const char *pieces[3] = {size, data, "\r\n"};
        size_t lens[3] = {(size_t)n, len, 2};
        write_pieces(c, pieces, lens, 3);
    }
    r->bytes_out += len;
}

void http_stream_end(HttpRequest *r)
{
    if (!writable(r) || !r->streaming) return;
    if (!r->http10) write_raw(r->conn, "0\r\n\r\n", 5);
    if (r->conn) finish(r);
}

void http_request_done(HttpRequest *r)
{
    if (r->done_by_handler) return;
    r->done_by_handler = 1;
    if (!r->conn) req_free(r);
}

/* ---- query strings ---------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int http_query_param(const char *q, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t seg = amp ? (size_t)(amp - q) : strlen(q);
        if (seg >= nl && strncmp(q, name, nl) == 0 && (seg == nl || q[nl] == '=')) {
            const char *v = q + nl + (seg > nl), *end = q + seg;
            size_t o = 0;
            for (; v < end && o + 1 < cap; v++) {
                if (*v == '+') buf[o++] = ' ';
                else if (*v == '%' && end - v >= 3 && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
                    buf[o++] = (char)(hexval(v[1]) * 16 + hexval(v[2]));
                    v += 2;
                } else buf[o++] = *v;
            }
            buf[o] = '\0';
            return 0;
        }
        q = amp ? amp + 1 : NULL;
    }
    return -1;
}
