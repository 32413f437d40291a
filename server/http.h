/*
 * server/http.h — HTTP/1.1 over libuv: the listening socket, connections,
 * request parsing (Debian's http-parser) and responses (whole, chunked,
 * Server-Sent Events). Knows nothing of routes, JSON or models: a complete
 * request is handed to the handler, which answers through http_respond or
 * the http_stream_* calls, now or later.
 *
 *   uv_tcp (listen) ──accept──► HttpConn ──read──► http_parser ──► HttpRequest
 *        │                         │                                   │
 *        │                 limits: header bytes, body bytes,           ▼
 *        │                 request-read deadline, idle deadline    handler(req)
 *        │                                                             │
 *        └─ max connections: 503 + Retry-After           http_respond / http_stream_*
 *                                                                      │
 *                                     keep-alive: parse the next request (pipelined
 *                                     bytes were kept) ◄───────────────┘
 *
 * One request per connection at a time: reading pauses while a request is
 * answered, so a pipelining client waits its turn and a fast sender cannot
 * make the server buffer more than one request's limits.
 *
 * Lifetime: a request whose handler set no on_abort is freed once its
 * response is finished (do not touch it after http_respond/http_stream_end);
 * one with on_abort set lives until http_request_done as well.
 *
 * Disconnects: when the peer goes away while its request is being answered,
 * the request's on_abort (set by the handler) is called once, on the loop;
 * after it the handler must not touch the request again (its later
 * respond/stream calls are no-ops until it calls http_request_done). The
 * request object lives until both sides let go: the connection (closed)
 * and the handler (http_request_done, implied by a finished response).
 *
 * Threads: everything runs on the loop thread. Ownership: the server owns
 * connections and requests; strings in HttpRequest are owned by the request.
 */
#ifndef SGL_SERVER_HTTP_H
#define SGL_SERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct uv_loop_s;

typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;

typedef struct {
    size_t max_header_bytes;     /* request line + headers (default 16 KiB) */
    size_t max_body_bytes;       /* (default 8 MiB) */
    double read_timeout_s;       /* from a request's first byte to its last (default 30) */
    double idle_timeout_s;       /* keep-alive connection with no request (default 60) */
    int max_connections;         /* open at once; more get 503 (default 1024) */
    size_t max_write_queue;      /* unsent bytes of a streaming response before the
                                    connection is dropped as a slow reader (default 16 MiB) */
} HttpLimits;

void http_limits_default(HttpLimits *l);

struct HttpRequest {
    /* filled by the parser */
    const char *method;          /* "GET", "POST", ... */
    char *path;                  /* URL path, without the query */
    char *query;                 /* after '?', or "" */
    char *authorization;         /* the Authorization header, or NULL */
    char *body;                  /* NUL-terminated (may hold NULs: body_len) */
    size_t body_len;
    char peer[64];               /* "127.0.0.1:5555" */
    double t_start;              /* monotonic seconds at the first byte */
    int http10;                  /* an HTTP/1.0 client: no chunked framing (a stream ends with the connection) */
    /* set by the handler */
    void (*on_abort)(void *ud, HttpRequest *r);
    void *ud;
    int status;                  /* the response's status (for the access log) */
    int route;                   /* the handler's label for it (metrics) */
    /* private */
    struct HttpConn *conn;
    int done_by_handler, aborted, streaming, finished;
    size_t bytes_out;
};

/* handler(ud, req): answer the request (now or later). */
typedef void (*http_handler_fn)(void *ud, HttpRequest *r);
/* Called after each request is finished or aborted (the access log). */
typedef void (*http_log_fn)(void *ud, const HttpRequest *r);

/* Binds host:port and starts listening on loop. NULL with a message. */
HttpServer *http_server_new(struct uv_loop_s *loop, const char *host, int port, const HttpLimits *lim,
                            http_handler_fn handler, http_log_fn log, void *ud, char *err, size_t errcap);
/* The port actually bound (for port 0). */
int http_server_port(const HttpServer *s);
/* Stops accepting; idle connections are closed now, busy ones after their
 * response (keep-alive off from now on). */
void http_server_stop_accepting(HttpServer *s);
/* Requests being answered now. */
int http_server_busy(const HttpServer *s);
int http_server_connections(const HttpServer *s);
/* Closes every connection (busy ones are aborted first) and the listener;
 * frees the server once the loop has closed its handles. */
void http_server_free(HttpServer *s);

/* ---- answering ---- */

/* A whole response. extra_headers: "Name: value\r\n" lines, or NULL. */
void http_respond(HttpRequest *r, int status, const char *content_type, const char *body, size_t len,
                  const char *extra_headers);
/* Chunked response; then any number of http_stream_write and one
 * http_stream_end. */
void http_stream_begin(HttpRequest *r, int status, const char *content_type, const char *extra_headers);
void http_stream_write(HttpRequest *r, const char *data, size_t len);
void http_stream_end(HttpRequest *r);
/* The handler lets go of an aborted request (no response will follow). */
void http_request_done(HttpRequest *r);

/* The query parameter `name` ("a=1&b=2"), URL-decoded into buf; 0 if found. */
int http_query_param(const char *query, const char *name, char *buf, size_t cap);

const char *http_status_text(int status);

/* ---- parsing without sockets (the fuzz target and tests) ----
 * Feeds bytes as the connection would and reports the first request (or
 * the status a bad one would get). Returns 1 with *status 0 and the
 * request's method/path/body in the callbacks, 0 when more bytes are
 * needed, -1 with *status (400, 413, 431, 505) for a refused request. */
typedef struct HttpParse HttpParse;
HttpParse *http_parse_new(const HttpLimits *lim);
int http_parse_feed(HttpParse *p, const char *data, size_t len, int *status, const HttpRequest **req);
/* Bytes of the last feed that were parsed (the rest belongs to a later
 * request: feed it again). */
size_t http_parse_consumed(const HttpParse *p);
void http_parse_free(HttpParse *p);

#endif
