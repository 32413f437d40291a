/*
 * runtime/runtime.c — the Runtime (runtime/runtime.h): finding and opening
 * the model, its tokenizer, engine and VM backend; the lazy backend VMs
 * hold; statistics; direct generation and tokenization; loop wake-ups.
 */
#include "runtime/runtime.h"
#include "runtime/device.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <uv.h>

#include "base/err.h"
#include "runtime/engine.h"
#include "runtime/gen_options.h"
#include "runtime/hf.h"
#include "runtime/model.h"
#include "runtime/rt_constrain.h"
#include "runtime/rt_engine.h"
#include "runtime/gguf.h"
#include "runtime/sampler.h"
#include "runtime/tokenizer.h"

#define NO_MODEL_HINT "pass --model or run make model"

struct Runtime {
    RuntimeOptions opt;
    char *path;                 /* the model's path, resolved at open */
    RtBackend backend;          /* what VMs hold: loads on first use */
    int load_failed;
    char err[1024];
    Model *model;
    Tokenizer *tok;
    Engine *eng;
    RtEngine *rt;
    RtBackend *inner;           /* the RtEngine's table, once loaded */
    GgufFile *tok_gguf;         /* runtime_check's tokenizer-only load */
    CVocab *cvocab;             /* runtime_check's vocabulary */
    double t_loaded;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void runtime_options_default(RuntimeOptions *o)
{
    memset(o, 0, sizeof *o);
    o->prefix_cache = 1;
}

void sgl_runtime_options_init(sgl_runtime_options *o) { runtime_options_default(o); }

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* models/RUNTIME_DEFAULT_MODEL_FILE above the executable, then above the
 * working directory; malloc'd, or NULL. */
static char *find_default_model(void)
{
    char start[2][PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", start[0], sizeof start[0] - 1);
    start[0][n > 0 ? n : 0] = 0;
    if (!getcwd(start[1], sizeof start[1])) start[1][0] = 0;
    for (int s = 0; s < 2; s++) {
        char dir[PATH_MAX];
        memcpy(dir, start[s], sizeof dir);
        if (s == 0) {
            char *slash = strrchr(dir, '/');
            if (slash) *slash = 0;
        }
        for (int up = 0; up < 5 && dir[0]; up++) {
            char cand[PATH_MAX + 64];
            snprintf(cand, sizeof cand, "%s/models/%s", dir, RUNTIME_DEFAULT_MODEL_FILE);
            if (exists(cand)) return strdup(cand);
            char *slash = strrchr(dir, '/');
            if (!slash) break;
            *slash = 0;
        }
    }
    return NULL;
}

static char *model_path(const RuntimeOptions *o)
{
    if (o->model) return strdup(o->model);
    const char *env = getenv("SGL_MODEL");
    if (env && *env) return strdup(env);
    return find_default_model();
}

/* Model, tokenizer, engine and backend; 0, or -1 with rt->err. */
static int load(Runtime *rt)
{
    if (!rt->path) {
        err_fmt(rt->err, sizeof rt->err,
                "no model: " NO_MODEL_HINT " (the default is models/" RUNTIME_DEFAULT_MODEL_FILE ")");
        return -1;
    }
    struct stat st;
    if (stat(rt->path, &st) != 0) {
        err_fmt(rt->err, sizeof rt->err, "no model at %s: " NO_MODEL_HINT, rt->path);
        return -1;
    }
    char msg[768];
    int rc;
    tok_free(rt->tok);
    rt->tok = NULL;
    if (S_ISDIR(st.st_mode)) {
        rc = hf_load(rt->path, &rt->model, NULL, msg, sizeof msg);
        if (rc == 0) rc = tok_load_hf(rt->path, &rt->tok, msg, sizeof msg);
    } else {
        rc = model_load_gguf(rt->path, &rt->model, msg, sizeof msg);
        if (rc == 0) rc = tok_load_gguf(rt->model->gguf, &rt->tok, msg, sizeof msg);
    }
    /* a tokenizer-only load for runtime_check gives way to the model's */
    gguf_close(rt->tok_gguf);
    rt->tok_gguf = NULL;
    if (rc != 0) {
        err_fmt(rt->err, sizeof rt->err, "cannot load model %s: %s", rt->path, msg);
        return -1;
    }
    const RuntimeOptions *o = &rt->opt;
    /* the opener chooses the backend: sgl_set_device's choice (runtime/device.h) */
    ModelOptions mo;
    model_options_default(&mo);
    runtime_device_options(&mo);
    mo.n_threads = o->threads;
    mo.batch_invariant = !o->blas_prefill;
    model_set_options(rt->model, &mo);
    EngOptions eo;
    eng_options_default(&eo);
    eo.prefix_cache = o->prefix_cache;
    if (o->chunk_size) eo.chunk_size = o->chunk_size;
    if (o->itl_target_ms) eo.itl_target_ms = o->itl_target_ms > 0 ? o->itl_target_ms : 0;
    if (o->kv_tokens) eo.n_slots = o->kv_tokens;
    if (o->max_running) eo.max_running = o->max_running;
    if (o->threads) eo.n_threads = o->threads;
    if (o->has_seed) eo.seed = o->seed;
    eo.batch_invariant = !o->blas_prefill;
    if (o->disable_overlap) eo.overlap = 0;
    eo.loop = o->uv_loop;
    rt->eng = eng_new(rt->model, rt->tok, &eo, msg, sizeof msg);
    if (!rt->eng) {
        err_fmt(rt->err, sizeof rt->err, "%s", msg);
        return -1;
    }
    RtEngineOptions ro;
    memset(&ro, 0, sizeof ro);
    rt->rt = rt_engine_new(rt->eng, &ro, msg, sizeof msg);
    if (!rt->rt) {
        err_fmt(rt->err, sizeof rt->err, "%s", msg);
        return -1;
    }
    rt->inner = rt_engine_backend(rt->rt);
    rt->t_loaded = now_s();
    return 0;
}

int runtime_load(Runtime *rt)
{
    if (rt->inner) return 0;
    if (rt->load_failed) return -1;
    if (load(rt) != 0) {
        rt->load_failed = 1;
        rt->backend.last_error = rt->err;
        return -1;
    }
    return 0;
}

const char *runtime_error(const Runtime *rt) { return rt->err; }
const char *runtime_model_path(const Runtime *rt) { return rt->path ? rt->path : ""; }
struct uv_loop_s *runtime_loop(const Runtime *rt) { return rt->opt.uv_loop; }

/* ---- the backend VMs hold ---- */

static int be_gen(void *ctx, const RtPrompt *p, const RtGenParams *g, rt_gen_cb cb, void *ud)
{
    Runtime *rt = ctx;
    if (runtime_load(rt)) return -1;
    int rc = rt->inner->gen(rt->inner->ctx, p, g, cb, ud);
    rt->backend.last_error = rt->inner->last_error;
    return rc;
}

static int be_select(void *ctx, const RtPrompt *p, const char *const *choices, int n, RtSelectMethod m,
                     rt_select_cb cb, void *ud)
{
    Runtime *rt = ctx;
    if (runtime_load(rt)) return -1;
    int rc = rt->inner->select(rt->inner->ctx, p, choices, n, m, cb, ud);
    rt->backend.last_error = rt->inner->last_error;
    return rc;
}

static int be_wait(void *ctx)
{
    Runtime *rt = ctx;
    if (!rt->inner || eng_in_flight(rt->eng) == 0) return -1;
    /* any completion of the engine: the VM's (through rt_engine) and
     * runtime_generate's alike */
    if (!rt->opt.uv_loop) return rt_engine_wait_any(rt->rt);
    /* completions arrive through the engine's uv_async on this loop */
    uv_run(rt->opt.uv_loop, UV_RUN_ONCE);
    return 0;
}

static int be_poll(void *ctx)
{
    Runtime *rt = ctx;
    if (!rt->inner || eng_in_flight(rt->eng) == 0) return -1;
    if (rt->opt.uv_loop) return 0;     /* the loop delivers */
    return eng_poll(rt->eng);
}

static void be_cancel(void *ctx, void *ud)
{
    Runtime *rt = ctx;
    if (rt->inner && rt->inner->cancel) rt->inner->cancel(rt->inner->ctx, ud);
}

static const char *be_chat_template(void *ctx)
{
    Runtime *rt = ctx;
    if (runtime_load(rt)) return NULL;
    return tok_chat_template(rt->tok);
}

RtBackend *runtime_backend(Runtime *rt) { return &rt->backend; }

Engine *runtime_engine(Runtime *rt) { return rt->eng; }

int runtime_open(const RuntimeOptions *o, Runtime **out, char *err, size_t errcap)
{
    *out = NULL;
    Runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        err_fmt(err, errcap, "out of memory");
        return -1;
    }
    rt->opt = *o;
    rt->opt.model = NULL;           /* borrowed: resolved into path */
    rt->opt.chat_template = NULL;   /* the sgl_runtime keeps its copy */
    rt->path = model_path(o);
    rt->backend.ctx = rt;
    rt->backend.gen = be_gen;
    rt->backend.select = be_select;
    rt->backend.wait = be_wait;
    rt->backend.poll = be_poll;
    rt->backend.chat_template = be_chat_template;
    rt->backend.cancel = be_cancel;
    if (!o->lazy && runtime_load(rt) != 0) {
        err_fmt(err, errcap, "%s", rt->err);
        runtime_close(rt);
        return -1;
    }
    *out = rt;
    return 0;
}

void runtime_close(Runtime *rt)
{
    if (!rt) return;
    rt_engine_free(rt->rt);
    eng_free(rt->eng);
    cv_unref(rt->cvocab);
    tok_free(rt->tok);
    gguf_close(rt->tok_gguf);
    model_free(rt->model);
    free(rt->path);
    free(rt);
}

const char *runtime_token_text(Runtime *rt, int id, size_t *len)
{
    *len = 0;
    if (runtime_load(rt) != 0) return NULL;
    return tok_token_piece(rt->tok, id, len);
}

void runtime_stats(Runtime *rt, RuntimeStats *out)
{
    memset(out, 0, sizeof *out);
    if (!rt->eng) return;
    EngStats s;
    eng_stats(rt->eng, &s);
    out->loaded = 1;
    out->requests = s.requests;
    out->prompt_tokens = s.prompt_tokens;
    out->cached_tokens = s.cached_tokens;
    out->computed_tokens = s.computed_tokens;
    out->generated_tokens = s.generated_tokens;
    out->in_flight = (unsigned long long)eng_in_flight(rt->eng);
    out->hit_rate = s.hit_rate;
    out->gen_tokens_per_s = s.gen_tokens_per_s;
    out->seconds = now_s() - rt->t_loaded;
}

int runtime_tokenize(Runtime *rt, const char *text, size_t len, int add_special, int parse_special,
                     int **ids, size_t *n, char *err, size_t errcap)
{
    *ids = NULL;
    *n = 0;
    if (runtime_load(rt) != 0) {
        err_fmt(err, errcap, "%s", rt->err);
        return -1;
    }
    unsigned flags = (add_special ? TOK_ENC_ADD_SPECIAL : 0) | (parse_special ? TOK_ENC_PARSE_SPECIAL : 0);
    TokIds t = {0};
    if (tok_encode(rt->tok, text, len, flags, &t) != 0) {
        err_fmt(err, errcap, "%s", tok_last_error(rt->tok));
        tok_ids_free(&t);
        return -1;
    }
    *ids = malloc((t.n ? t.n : 1) * sizeof(int));
    if (!*ids) {
        tok_ids_free(&t);
        err_fmt(err, errcap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < t.n; i++) (*ids)[i] = t.ids[i];
    *n = t.n;
    tok_ids_free(&t);
    return 0;
}

/* ---- direct generation ---- */

typedef struct {
    RuntimeStream cb;
} StreamCtx;

static void stream_delta(void *ud, const EngDelta *d)
{
    StreamCtx *s = ud;
    double lp = d->logprobs && d->n_ids > 0 ? d->logprobs[d->n_ids - 1] : 0.0;
    if (s->cb.on_text && d->len) s->cb.on_text(s->cb.ud, d->text, d->len, lp);
}

static void stream_done(void *ud, const EngResult *r)
{
    StreamCtx *s = ud;
    if (s->cb.on_done)
        s->cb.on_done(s->cb.ud, r->finish_reason, r->finish == ENG_FINISH_ERROR ? (r->error ? r->error : "generation failed") : NULL,
                      r->prompt_tokens, r->completion_tokens);
    free(s);
}

int runtime_generate(Runtime *rt, const char *prompt, size_t len, const RtGenParams *params,
                     const RuntimeStream *cb, char *err, size_t errcap)
{
    if (runtime_load(rt) != 0) {
        err_fmt(err, errcap, "%s", rt->err);
        return -1;
    }
    StreamCtx *s = malloc(sizeof *s);
    if (!s) {
        err_fmt(err, errcap, "out of memory");
        return -1;
    }
    s->cb = *cb;
    EngGenParams gp;
    eng_gen_params_default(&gp);
    rt_engine_sampling(&gp.sampling, params);
    gp.prompt_text = prompt;
    gp.prompt_len = len;
    gp.stop = params->stop;
    gp.n_stop = params->nstop;
    gp.on_delta = stream_delta;
    gp.on_done = stream_done;
    gp.ud = s;
    if (eng_submit(rt->eng, &gp, NULL) != 0) {
        err_fmt(err, errcap, "%s", eng_last_error(rt->eng));
        free(s);
        return -1;
    }
    return 0;
}

/* gen's options from a JSON object, by the one table (runtime/gen_options.h):
 * one reader per kind, as vm/gen.c has for SGL values. Each returns 0, or
 * -1 with a message. */
typedef struct {
    RtGenParams *p;
    const char *key;
    const char **stops;
    int nstop;
    char *err;
    size_t errcap;
} JsonOpt;

static int j_num(JsonOpt *o, json_t *v, double lo, double hi, int open_lo, double *out)
{
    if (!json_is_number(v)) return err_fmt(o->err, o->errcap, "option %s needs a number", o->key);
    double d = json_number_value(v);
    if ((open_lo ? d <= lo : d < lo) || d > hi)
        return err_fmt(o->err, o->errcap, "option %s must be in %s%g, %g], not %g", o->key, open_lo ? "(" : "[", lo,
                       hi, d);
    *out = d;
    return 0;
}

static int j_int(JsonOpt *o, json_t *v, double lo, double hi, int *out)
{
    double d;
    if (!json_is_integer(v)) return err_fmt(o->err, o->errcap, "option %s needs an integer", o->key);
    if (j_num(o, v, lo, hi, 0, &d) < 0) return -1;
    *out = (int)d;
    return 0;
}

static int j_bool(JsonOpt *o, json_t *v, int *out)
{
    if (!json_is_boolean(v)) return err_fmt(o->err, o->errcap, "option %s needs true or false", o->key);
    *out = json_is_true(v);
    return 0;
}

static int j_seed(JsonOpt *o, json_t *v)
{
    if (!json_is_integer(v)) return err_fmt(o->err, o->errcap, "option %s needs an integer", o->key);
    o->p->has_seed = 1;
    o->p->seed = (uint64_t)json_integer_value(v);
    return 0;
}

static int j_stop(JsonOpt *o, json_t *v)
{
    int one = json_is_string(v);
    if (!one && !json_is_array(v)) return err_fmt(o->err, o->errcap, "option %s needs a string or a list", o->key);
    size_t n = one ? 1 : json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        json_t *x = one ? v : json_array_get(v, i);
        if (!json_is_string(x)) return err_fmt(o->err, o->errcap, "option %s needs strings", o->key);
        if (o->nstop == 16) return err_fmt(o->err, o->errcap, "option %s: at most 16 strings", o->key);
        o->stops[o->nstop++] = json_string_value(x);
    }
    return 0;
}

static int j_refused(JsonOpt *o)
{
    return err_fmt(o->err, o->errcap, "option %s is for programs (gen in SGL), not a plain completion", o->key);
}

#define JSET_INT(name, lo, hi) j_int(o, v, lo, hi, &o->p->name)
#define JSET_NUM(name, lo, hi) j_num(o, v, lo, hi, 0, &o->p->name)
#define JSET_NUM_GT(name, lo, hi) j_num(o, v, lo, hi, 1, &o->p->name)
#define JSET_BOOL(name, lo, hi) j_bool(o, v, &o->p->name)
#define JSET_SEED(name, lo, hi) j_seed(o, v)
#define JSET_STOP(name, lo, hi) j_stop(o, v)
#define JSET_NAME(name, lo, hi) j_refused(o)
#define JSET_STOP_IDS(name, lo, hi) j_refused(o)
#define JSET_REGEX(name, lo, hi) j_refused(o)
#define JSET_JSON(name, lo, hi) j_refused(o)
#define JSET_GRAMMAR(name, lo, hi) j_refused(o)
#define JSET_CHOICES(name, lo, hi) j_refused(o)
#define JSET_TYPE(name, lo, hi) j_refused(o)

static int json_option(JsonOpt *o, json_t *v)
{
    switch (rt_gen_option_find(o->key)) {
#define RT_GEN_OPT_JSON(name, kind, lo, hi, dflt, openai, sglang) \
    case RT_GEN_OPT_##name: return JSET_##kind(name, lo, hi);
        RT_GEN_OPTIONS(RT_GEN_OPT_JSON)
#undef RT_GEN_OPT_JSON
    default: return err_fmt(o->err, o->errcap, "unknown option %s", o->key);
    }
}

int runtime_generate_json(Runtime *rt, const char *prompt, size_t len, const char *options_json,
                          const RuntimeStream *cb, char *err, size_t errcap)
{
    RtGenParams p;
    rt_gen_params_default(&p);
    const char *stops[16];
    JsonOpt jo = {&p, NULL, stops, 0, err, errcap};
    json_t *o = NULL;
    if (options_json && *options_json) {
        json_error_t je;
        o = json_loads(options_json, 0, &je);
        if (!o || !json_is_object(o)) {
            if (o) err_fmt(err, errcap, "options must be a JSON object");
            else err_fmt(err, errcap, "bad options JSON at %d:%d: %s", je.line, je.column, je.text);
            json_decref(o);
            return -1;
        }
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v) {
            jo.key = key;
            if (json_option(&jo, v) < 0) {
                json_decref(o);
                return -1;
            }
        }
    }
    p.stop = stops;
    p.nstop = jo.nstop;
    int rc = runtime_generate(rt, prompt, len, &p, cb, err, errcap);
    json_decref(o);
    return rc;
}

/* ---- loop wake-ups ---- */

struct RuntimeWaker {
    uv_idle_t idle;
    void (*fn)(void *ud);
    void *ud;
};

static void waker_fire(uv_idle_t *h)
{
    RuntimeWaker *w = h->data;
    uv_idle_stop(h);
    w->fn(w->ud);
}

RuntimeWaker *runtime_waker_new(Runtime *rt, void (*fn)(void *ud), void *ud)
{
    if (!rt->opt.uv_loop) return NULL;
    RuntimeWaker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    uv_idle_init(rt->opt.uv_loop, &w->idle);
    w->idle.data = w;
    w->fn = fn;
    w->ud = ud;
    return w;
}

void runtime_waker_poke(RuntimeWaker *w)
{
    if (w && !uv_is_active((uv_handle_t *)&w->idle)) uv_idle_start(&w->idle, waker_fire);
}

static void waker_closed(uv_handle_t *h) { free(h->data); }

void runtime_waker_free(RuntimeWaker *w)
{
    if (!w) return;
    uv_idle_stop(&w->idle);
    uv_close((uv_handle_t *)&w->idle, waker_closed);
}

/* ---- constraints as a tool (sgl check) ---- */

/* The tokenizer alone (a vocabulary-only GGUF has no weights): the
 * model's when loaded, else loaded here. 0 or -1 with rt->err. */
static int load_tokenizer(Runtime *rt)
{
    if (rt->tok) return 0;
    if (!rt->path) {
        err_fmt(rt->err, sizeof rt->err, "no model: " NO_MODEL_HINT);
        return -1;
    }
    struct stat st;
    if (stat(rt->path, &st) != 0) {
        err_fmt(rt->err, sizeof rt->err, "no model at %s: " NO_MODEL_HINT, rt->path);
        return -1;
    }
    char msg[768];
    int rc;
    if (S_ISDIR(st.st_mode)) {
        rc = tok_load_hf(rt->path, &rt->tok, msg, sizeof msg);
    } else {
        rt->tok_gguf = gguf_open(rt->path, msg, sizeof msg);
        rc = rt->tok_gguf ? tok_load_gguf(rt->tok_gguf, &rt->tok, msg, sizeof msg) : -1;
    }
    if (rc != 0) {
        err_fmt(rt->err, sizeof rt->err, "cannot load the tokenizer of %s: %s", rt->path, msg);
        return -1;
    }
    return 0;
}

int runtime_check(Runtime *rt, RtConstraintKind kind, const char *src, size_t len, const char *text,
                  size_t tlen, unsigned flags, uint64_t seed, CGrammar **cache, size_t *reject_at,
                  char *err, size_t errcap)
{
    if (load_tokenizer(rt) != 0) {
        err_fmt(err, errcap, "%s", rt->err);
        return ERR_IO;
    }
    if (!rt->cvocab) {
        int rc = rtc_vocab_new(rt->tok, &rt->cvocab, err, errcap);
        if (rc) return rc;
    }
    if (!*cache) {
        int rc = rtc_compile(kind, src, len, cache, err, errcap);
        if (rc) return rc;
    }
    return rtc_check(rt->tok, rt->cvocab, *cache, text, tlen, flags, seed, reject_at, err, errcap);
}
