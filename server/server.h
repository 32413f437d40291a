/*
 * server/server.h — the server room's shared declarations (included by
 * the server room's .c files only): the Server object, the route table, generation jobs
 * (one HTTP exchange's engine requests), metrics, chat prompts, programs.
 *
 *   HttpServer ──request──► route (SERVER_ROUTES) ──► handler
 *        openai.c / native.c: api_req_decode ─► GenJob ─► eng_submit × (prompts × n)
 *                      on_delta / on_done on the loop ─► SSE chunks / the response
 *        chatmsg.c: messages ─► the VM's chat template (a role-block program) ─► prompt text
 *        programs.c: POST /v1/programs/NAME ─► sgl_task on the programs VM
 *        metrics.c: counters and histograms ─► GET /metrics
 *
 * Threads: everything here runs on the loop thread; the engine delivers
 * on it (EngOptions.loop). Ownership: the Server owns the runtime, the
 * HTTP server, the VMs and every job; a job owns its ApiReq and lives
 * until its last engine request is delivered and its HTTP request is
 * answered or aborted.
 */
#ifndef SGL_SERVER_SERVER_H
#define SGL_SERVER_SERVER_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "base/strbuf.h"

#include "include/sgl.h"
#include "runtime/engine.h"
#include "runtime/runtime.h"
#include "server/api_req.h"
#include "server/http.h"
#include "server/tools.h"

typedef struct Server Server;
typedef struct GenJob GenJob;
typedef struct Programs Programs;

/* ---- routes: method, path, handler, metrics label (declared once) ---- */
#define SERVER_ROUTES(X)                                                              \
    X(health, "GET", "/health", 0)                                                    \
    X(health_generate, "GET", "/health_generate", 1)                                  \
    X(models, "GET", "/v1/models", 1)                                                 \
    X(completions, "POST", "/v1/completions", 1)                                      \
    X(chat_completions, "POST", "/v1/chat/completions", 1)                            \
    X(tokenize, "POST", "/v1/tokenize", 1)                                            \
    X(detokenize, "POST", "/v1/detokenize", 1)                                        \
    X(generate, "POST", "/generate", 1)                                               \
    X(get_model_info, "GET", "/get_model_info", 1)                                    \
    X(model_info, "GET", "/model_info", 1)                                            \
    X(get_server_info, "GET", "/get_server_info", 1)                                  \
    X(server_info, "GET", "/server_info", 1)                                          \
    X(flush_cache, "POST", "/flush_cache", 1)                                         \
    X(abort_request, "POST", "/abort_request", 1)                                     \
    X(concate_and_append_request, "POST", "/concate_and_append_request", 1)           \
    X(programs_list, "GET", "/v1/programs", 1)                                        \
    X(programs_run, "POST", "/v1/programs/", 1) /* prefix: /v1/programs/NAME */       \
    X(metrics, "GET", "/metrics", 1)

typedef enum {
#define ROUTE_ENUM(name, method, path, auth) ROUTE_##name,
    SERVER_ROUTES(ROUTE_ENUM)
#undef ROUTE_ENUM
    ROUTE_COUNT,
    ROUTE_NOT_FOUND = ROUTE_COUNT
} RouteId;

/* ---- metrics (metrics.c) ---- */
#define METRIC_BUCKETS 16
typedef struct {
    uint64_t counts[METRIC_BUCKETS + 1];   /* one per bound, then +Inf */
    double sum;
    uint64_t n;
} Histogram;

typedef struct {
    uint64_t requests[ROUTE_COUNT + 1][6];  /* by route and status class 1xx..5xx (index 1..5), 0: other */
    uint64_t prompt_tokens, cached_tokens, generated_tokens;
    uint64_t rejected_queue_full;
    Histogram ttft, itl, e2e;
} Metrics;

void metrics_request(Metrics *m, int route, int status);
void metrics_observe(Histogram *h, double seconds);
/* The Prometheus text of every metric (malloc'd). */
char *metrics_text(Server *s);

/* ---- the server ---- */
struct Server {
    uv_loop_t *loop;
    sgl_serve_options opt;
    Runtime *rt;
    Engine *eng;
    HttpServer *http;
    char model_id[256];
    uv_signal_t sig_int, sig_term, sig_hup;
    uv_timer_t drain_timer;
    int draining;
    double drain_started;
    int drain_cancelled;
    int exit_status;
    GenJob *jobs;                /* in flight (for abort_request, drain) */
    int n_jobs;
    uint64_t next_job;
    Metrics metrics;
    /* chat templates: a VM running stdlib/chat/ through role blocks */
    sgl_vm *chat_vm;
    sgl_program *chat_prog;
    /* the VMs' driver: runs ready fibers after each loop turn's I/O */
    uv_check_t vm_check;
    int vm_tasks;
    Programs *programs;
    double t_start;
};

void server_log(Server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON response (takes the reference of body). */
void server_json(HttpRequest *r, int status, json_t *body);
void server_error(HttpRequest *r, const ApiError *e);
void server_errorf(HttpRequest *r, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The VMs' tasks: counted so the check handle runs only while some exist. */
void server_vm_task_started(Server *s);
void server_vm_task_finished(Server *s);
double server_now(void);
const char *server_route_name(int id);

/* ---- generation jobs (gen.c) ---- */

/* One engine request of a job: prompt p, choice c. */
typedef struct {
    GenJob *job;
    int index;                   /* in the job: prompt * n + choice */
    int prompt;
    uint64_t id;
    int live;                    /* submitted, on_done not yet delivered */
    int done;
    double t_last;               /* last delta (inter-token latency) */
    /* streamed so far */
    StrBuf text;
    int n_tokens;
    int32_t *stream_ids;         /* the ids so far (native streams report them) */
    int n_stream_ids, cap_stream_ids;
    /* the result, copied at on_done */
    EngFinish finish;
    char *error;
    int32_t *prompt_ids;
    int n_prompt;
    int32_t *ids;
    int n_ids;
    int text_ids;
    char *out;                   /* final text (stop string removed) */
    size_t out_len;
    float *logprobs;
    SampTokLogprob *top;
    int top_per_token;
    float *input_logprobs;
    int n_input_logprobs;
    SampTokLogprob *input_top;   /* n_input_logprobs * input_top_per_token */
    int input_top_per_token;
    int input_from;
    int prompt_tokens, cached_tokens, completion_tokens;
    char *matched_stop;          /* the stop string that ended it, or NULL */
    int matched_id;              /* or the stop token id; -1 */
    double e2e;
} GenSeq;

typedef enum { JOB_COMPLETIONS, JOB_CHAT, JOB_GENERATE } JobKind;

struct GenJob {
    Server *s;
    JobKind kind;
    HttpRequest *req;            /* NULL once answered or aborted */
    ApiReq *api;
    GenJob *prev, *next;
    uint64_t serial;
    char id[48];                 /* "cmpl-...", "chatcmpl-..." or the rid */
    long created;
    double t0;
    double t_first;              /* first token of any sequence; 0 before */
    struct CGrammar *constraint;
    GenSeq *seqs;
    int n_seqs, n_live, n_done;
    int aborted;
    int streaming;
    /* chat */
    char *prompt_text;           /* the rendered prompt (chat), owned */
    size_t prompt_len;
    /* per API: a streamed piece, and the end (every sequence delivered) */
    void (*on_delta)(GenJob *j, GenSeq *q, const EngDelta *d);
    void (*on_seq_done)(GenJob *j, GenSeq *q);   /* streaming: one sequence ended */
    void (*on_finish)(GenJob *j);
    void *ud;                    /* API-specific state */
    void (*free_ud)(void *ud);
};

/* A job for the request (takes api). NULL on no memory (answered 500). */
GenJob *job_new(Server *s, HttpRequest *r, JobKind kind, ApiReq *api);
/* Compiles the constraint, submits every sequence. 0, or -1 after the
 * HTTP request was answered with the error (the job is then freed). */
int job_start(GenJob *j);
/* Cancels every live sequence (their on_done still fire). */
void job_cancel(GenJob *j);
/* Answers and drops the request: called by on_finish handlers when done. */
void job_free(GenJob *j);
/* Checks the queue limit; 0, or -1 after answering 429. */
int job_admit(Server *s, HttpRequest *r, int sequences);
const char *job_finish_reason_openai(const GenSeq *q);
/* A token's bytes (its piece) and length. */
const char *job_token_piece(Server *s, int32_t id, size_t *len);

/* ---- the routes' handlers ---- */
void openai_models(Server *s, HttpRequest *r);
void openai_completions(Server *s, HttpRequest *r);
void openai_chat(Server *s, HttpRequest *r);
void openai_tokenize(Server *s, HttpRequest *r);
void openai_detokenize(Server *s, HttpRequest *r);
void native_generate(Server *s, HttpRequest *r);
void native_model_info(Server *s, HttpRequest *r);
void native_server_info(Server *s, HttpRequest *r);
void native_flush_cache(Server *s, HttpRequest *r);
void native_abort_request(Server *s, HttpRequest *r);
void native_concate_and_append(Server *s, HttpRequest *r);
void native_health_generate(Server *s, HttpRequest *r);

/* ---- chat prompts (chatmsg.c) ---- */
typedef void (*chatmsg_fn)(void *ud, const char *prompt, size_t len, const char *error);
int chatmsg_init(Server *s, char *err, size_t errcap);
void chatmsg_fini(Server *s);
/* Renders api's messages (and tools) through the chat template; cb runs
 * later on the loop (once). 0, or -1 with e set (cb never runs). */
int chatmsg_render(Server *s, const ApiReq *api, const ToolPlan *plan, chatmsg_fn cb, void *ud, ApiError *e);

/* ---- programs (programs.c) ---- */
int programs_init(Server *s, char *err, size_t errcap);
void programs_reload(Server *s);
void programs_fini(Server *s);
void programs_list(Server *s, HttpRequest *r);
void programs_run(Server *s, HttpRequest *r, const char *name);
int programs_busy(Server *s);
/* Runs the programs VM's ready fibers (the check handle's work). */
void programs_run_ready(Server *s);
void programs_cancel_all(Server *s);

#endif
