/*
 * cli/engine.c — model options shared by the subcommands, and the engine
 * that serves a VM's gen/select calls.
 *
 * `sgl run` attaches a lazy backend: the model is loaded at the program's
 * first gen/select, so programs that never call the model never pay for it
 * (and run on machines without one). The model is --model PATH, else
 * $SGL_MODEL, else the default model (models/<DEFAULT> found by walking up
 * from the executable, then from the working directory).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "runtime/engine.h"
#include "runtime/hf.h"
#include "runtime/model.h"
#include "runtime/rt_engine.h"
#include "runtime/tokenizer.h"

#define DEFAULT_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"
#define NO_MODEL_HINT "pass --model or run make model"

struct CliEngine {
    CliEngineOptions opt;
    sgl_vm *vm;
    RtBackend lazy;             /* what the VM holds: loads on first use */
    int load_failed;
    char err[1024];
    Model *model;
    Tokenizer *tok;
    Engine *eng;
    RtEngine *rt;
    RtBackend *inner;
    double t_start;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_engine_options_init(CliEngineOptions *o)
{
    memset(o, 0, sizeof *o);
    o->prefix_cache = 1;
}

static int int_value(const char *opt, const char *v, int min, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == 0 || *end != 0 || n < min || n > INT_MAX) {
        fprintf(stderr, "sgl: %s needs an integer >= %d, not '%s'\n", opt, min, v);
        return -1;
    }
    *out = (int)n;
    return 1;
}

int cli_engine_parse_option(CliEngineOptions *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (!strcmp(a, "--stats")) {
        o->stats = 1;
        return 1;
    }
    if (!strcmp(a, "--no-prefix-cache")) {
        o->prefix_cache = 0;
        return 1;
    }
    if (!strcmp(a, "--blas-prefill")) {
        o->blas_prefill = 1;
        return 1;
    }
    static const char *const with_value[] = {"--model", "--threads", "--chunk-size", "--kv-tokens",
                                             "--seed", "--max-running", "--chat-template", NULL};
    int k = 0;
    while (with_value[k] && strcmp(a, with_value[k]) != 0)
        k++;
    if (!with_value[k])
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "sgl: %s needs a value\n", a);
        return -1;
    }
    const char *v = argv[++*i];
    switch (k) {
    case 0: o->model = v; return 1;
    case 1: return int_value(a, v, 0, &o->threads);
    case 2: return int_value(a, v, 1, &o->chunk_size);
    case 3: return int_value(a, v, 16, &o->kv_tokens);
    case 4: {
        int s;
        int r = int_value(a, v, 0, &s);
        o->seed = (unsigned long long)s;
        o->has_seed = 1;
        return r;
    }
    case 5: return int_value(a, v, 1, &o->max_running);
    default: o->chat_template = v; return 1;
    }
}

static int is_file_or_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Looks for models/DEFAULT_MODEL_FILE above the executable, then above the
 * working directory. Returns a malloc'd path or NULL. */
static char *find_default_model(void)
{
    char start[2][PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", start[0], sizeof start[0] - 1);
    start[0][n > 0 ? n : 0] = 0;
    if (!getcwd(start[1], sizeof start[1]))
        start[1][0] = 0;
    for (int s = 0; s < 2; s++) {
        char dir[PATH_MAX];
        memcpy(dir, start[s], sizeof dir);
        if (s == 0) {
            char *slash = strrchr(dir, '/');
            if (slash) *slash = 0;
        }
        for (int up = 0; up < 5 && dir[0]; up++) {
            char cand[PATH_MAX + 64];
            snprintf(cand, sizeof cand, "%s/models/%s", dir, DEFAULT_MODEL_FILE);
            if (is_file_or_dir(cand))
                return strdup(cand);
            char *slash = strrchr(dir, '/');
            if (!slash) break;
            *slash = 0;
        }
    }
    return NULL;
}

char *cli_model_path(const CliEngineOptions *o)
{
    if (o->model)
        return strdup(o->model);
    const char *env = getenv("SGL_MODEL");
    if (env && *env)
        return strdup(env);
    return find_default_model();
}

int cli_load_model(const CliEngineOptions *o, Model **model, Tokenizer **tok, char *err, size_t errcap)
{
    *model = NULL;
    *tok = NULL;
    char *path = cli_model_path(o);
    if (!path) {
        snprintf(err, errcap, "no model: " NO_MODEL_HINT " (the default is models/" DEFAULT_MODEL_FILE ")");
        return -1;
    }
    if (!is_file_or_dir(path)) {
        snprintf(err, errcap, "no model at %s: " NO_MODEL_HINT, path);
        free(path);
        return -1;
    }
    struct stat st;
    stat(path, &st);
    int rc;
    char msg[768];
    if (S_ISDIR(st.st_mode)) {
        rc = hf_load(path, model, NULL, msg, sizeof msg);
        if (rc == 0 && (rc = tok_load_hf(path, tok, msg, sizeof msg)) != 0) {
            model_free(*model);
            *model = NULL;
        }
    } else {
        rc = model_load_gguf(path, model, msg, sizeof msg);
        if (rc == 0 && (rc = tok_load_gguf((*model)->gguf, tok, msg, sizeof msg)) != 0) {
            model_free(*model);
            *model = NULL;
        }
    }
    if (rc != 0)
        snprintf(err, errcap, "cannot load model %s: %s", path, msg);
    else if (o->threads > 0)
        (*model)->n_threads = o->threads;
    free(path);
    return rc ? -1 : 0;
}

int cli_engine_open(const CliEngineOptions *o, Model *model, Tokenizer *tok, Engine **out,
                    char *err, size_t errcap)
{
    EngOptions eo;
    eng_options_default(&eo);
    eo.prefix_cache = o->prefix_cache;
    if (o->chunk_size) eo.chunk_size = o->chunk_size;
    if (o->kv_tokens) eo.n_slots = o->kv_tokens;
    if (o->max_running) eo.max_running = o->max_running;
    if (o->threads) eo.n_threads = o->threads;
    if (o->has_seed) eo.seed = o->seed;
    eo.batch_invariant = !o->blas_prefill;
    *out = eng_new(model, tok, &eo, err, errcap);
    return *out ? 0 : -1;
}

/* ---- the lazy backend ------------------------------------------------------ */

static int ensure_loaded(CliEngine *e)
{
    if (e->inner)
        return 0;
    if (e->load_failed)
        return -1;
    char msg[1024];
    if (cli_load_model(&e->opt, &e->model, &e->tok, msg, sizeof msg) != 0 ||
        cli_engine_open(&e->opt, e->model, e->tok, &e->eng, msg, sizeof msg) != 0) {
        snprintf(e->err, sizeof e->err, "%s", msg);
        e->lazy.last_error = e->err;
        e->load_failed = 1;
        return -1;
    }
    RtEngineOptions ro;
    memset(&ro, 0, sizeof ro);
    e->rt = rt_engine_new(e->eng, &ro, msg, sizeof msg);
    if (!e->rt) {
        snprintf(e->err, sizeof e->err, "%s", msg);
        e->lazy.last_error = e->err;
        e->load_failed = 1;
        return -1;
    }
    e->inner = rt_engine_backend(e->rt);
    e->t_start = now_s();
    return 0;
}

static int lazy_gen(void *ctx, const RtPrompt *p, const RtGenParams *g, rt_gen_cb cb, void *ud)
{
    CliEngine *e = ctx;
    if (ensure_loaded(e))
        return -1;
    int rc = e->inner->gen(e->inner->ctx, p, g, cb, ud);
    e->lazy.last_error = e->inner->last_error;
    return rc;
}

static int lazy_select(void *ctx, const RtPrompt *p, const char *const *choices, int n,
                       RtSelectMethod m, rt_select_cb cb, void *ud)
{
    CliEngine *e = ctx;
    if (ensure_loaded(e))
        return -1;
    int rc = e->inner->select(e->inner->ctx, p, choices, n, m, cb, ud);
    e->lazy.last_error = e->inner->last_error;
    return rc;
}

static int lazy_wait(void *ctx)
{
    CliEngine *e = ctx;
    return e->inner ? e->inner->wait(e->inner->ctx) : -1;
}

static const char *lazy_chat_template(void *ctx)
{
    CliEngine *e = ctx;
    if (ensure_loaded(e))
        return NULL;
    return tok_chat_template(e->tok);
}

int cli_engine_start(const CliEngineOptions *o, sgl_vm *vm, CliEngine **out)
{
    CliEngine *e = calloc(1, sizeof *e);
    if (!e) {
        fprintf(stderr, "sgl: out of memory\n");
        return 1;
    }
    e->opt = *o;
    e->vm = vm;
    e->lazy.ctx = e;
    e->lazy.gen = lazy_gen;
    e->lazy.select = lazy_select;
    e->lazy.wait = lazy_wait;
    e->lazy.chat_template = lazy_chat_template;
    if (o->chat_template)
        sgl_vm_set_chat_template(vm, o->chat_template);
    sgl_vm_set_backend(vm, &e->lazy);
    *out = e;
    return 0;
}

void cli_engine_report(CliEngine *e)
{
    if (!e || !e->opt.stats)
        return;
    if (!e->eng) {
        fprintf(stderr, "stats: the model was not used\n");
        return;
    }
    EngStats s;
    eng_stats(e->eng, &s);
    double wall = now_s() - e->t_start;
    fprintf(stderr,
            "stats: requests %llu, prompt tokens %llu, cached tokens %llu, hit rate %.1f%%, "
            "computed tokens %llu, generated tokens %llu, %.1f tok/s generated (%.1f in forward), "
            "wall %.2fs\n",
            (unsigned long long)s.requests, (unsigned long long)s.prompt_tokens,
            (unsigned long long)s.cached_tokens, 100.0 * s.hit_rate,
            (unsigned long long)s.computed_tokens, (unsigned long long)s.generated_tokens,
            wall > 0 ? (double)s.generated_tokens / wall : 0.0, s.gen_tokens_per_s, wall);
}

void cli_engine_stop(CliEngine *e)
{
    if (!e)
        return;
    rt_engine_free(e->rt);
    eng_free(e->eng);
    tok_free(e->tok);
    model_free(e->model);
    free(e);
}
