/*
 * server/metrics.c — GET /metrics in the Prometheus text format (0.0.4):
 * requests by route and status class, token counters (prompt, cached,
 * generated) and the cache hit rate, running and queued requests, KV pool
 * use, and histograms of time to first token, inter-token latency and
 * end-to-end latency. Counters live in Server.metrics (loop thread); the
 * engine's figures come from an eng_stats snapshot.
 */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"

/* Histogram bounds in seconds (one list for the three latencies). */
static const double bounds[METRIC_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                              0.5,   1,      2.5,   5,    10,    30,   60,  120};

void metrics_observe(Histogram *h, double seconds)
{
    int i = 0;
    while (i < METRIC_BUCKETS && seconds > bounds[i]) i++;
    h->counts[i]++;
    h->sum += seconds;
    h->n++;
}

void metrics_request(Metrics *m, int route, int status)
{
    if (route < 0 || route > ROUTE_COUNT) route = ROUTE_COUNT;
    int cls = status >= 100 && status < 600 ? status / 100 : 0;
    m->requests[route][cls]++;
}

static void histogram(StrBuf *b, const char *name, const char *help, const Histogram *h)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < METRIC_BUCKETS; i++) {
        cum += h->counts[i];
        sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[METRIC_BUCKETS];
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cum, name,
              h->sum, name, (unsigned long long)h->n);
}

static void scalar(StrBuf *b, const char *name, const char *type, const char *help, double v)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

char *metrics_text(Server *s)
{
    const Metrics *m = &s->metrics;
    StrBuf b = {0};
    static const char *const classes[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    sb_appends(&b, "# HELP sgl_requests_total HTTP requests answered, by route and status class.\n"
                   "# TYPE sgl_requests_total counter\n");
    for (int r = 0; r <= ROUTE_COUNT; r++)
        for (int c = 0; c < 6; c++)
            if (m->requests[r][c])
                sb_printf(&b, "sgl_requests_total{route=\"%s\",status=\"%s\"} %llu\n", server_route_name(r), classes[c],
                          (unsigned long long)m->requests[r][c]);
    scalar(&b, "sgl_prompt_tokens_total", "counter", "Prompt tokens of finished generation requests.",
           (double)m->prompt_tokens);
    scalar(&b, "sgl_cached_tokens_total", "counter", "Of those, found in the radix prefix cache.",
           (double)m->cached_tokens);
    scalar(&b, "sgl_generated_tokens_total", "counter", "Generated tokens.", (double)m->generated_tokens);
    scalar(&b, "sgl_requests_rejected_total", "counter", "Generation requests refused with 429 (queue full).",
           (double)m->rejected_queue_full);
    EngStats es;
    memset(&es, 0, sizeof es);
    if (s->eng) eng_stats(s->eng, &es);
    scalar(&b, "sgl_cache_hit_rate", "gauge", "Cached / prompt tokens over the engine's life.", es.hit_rate);
    int in_flight = s->eng ? eng_in_flight(s->eng) : 0;
    int max_running = s->eng ? eng_max_running(s->eng) : 64;
    int running = in_flight < max_running ? in_flight : max_running;
    scalar(&b, "sgl_running_requests", "gauge", "Engine sequences being decoded (at most max_running).", running);
    scalar(&b, "sgl_queued_requests", "gauge", "Engine sequences waiting for a batch slot.", in_flight - running);
    scalar(&b, "sgl_http_connections", "gauge", "Open HTTP connections.", s->http ? http_server_connections(s->http) : 0);
    scalar(&b, "sgl_kv_slots_total", "gauge", "KV pool size in tokens.", (double)es.kv.total);
    scalar(&b, "sgl_kv_slots_used", "gauge", "KV slots held or locked by running requests.",
           (double)(es.kv.locked + es.kv.held));
    scalar(&b, "sgl_kv_slots_cached", "gauge", "KV slots in the prefix cache, evictable.", (double)es.kv.cached);
    scalar(&b, "sgl_kv_slots_free", "gauge", "Free KV slots.", (double)es.kv.free);
    scalar(&b, "sgl_engine_steps_total", "counter", "Forward passes.", (double)es.steps);
    histogram(&b, "sgl_time_to_first_token_seconds", "Request arrival to its first token.", &m->ttft);
    histogram(&b, "sgl_inter_token_latency_seconds", "Time between tokens of a stream, per token.", &m->itl);
    histogram(&b, "sgl_e2e_request_latency_seconds", "Request arrival to its last token.", &m->e2e);
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    return sb_detach(&b);
}
