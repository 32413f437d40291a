/*
 * cli/engine.c — the model options the subcommands share, and the runtime
 * (include/sgl.h: sgl_runtime) that serves a VM's gen/select calls.
 *
 * `sgl run` opens the runtime lazily: the model is loaded at the program's
 * first gen/select, so programs that never call the model never pay for it
 * (and run on machines without one). The model is --model PATH, else
 * $SGL_MODEL, else the default model (models/ found by walking up from the
 * executable, then from the working directory).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

struct CliEngine {
    CliEngineOptions opt;
    sgl_runtime *rt;
};

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
    if (!strcmp(a, "--disable-overlap-schedule")) {
        o->disable_overlap = 1;
        return 1;
    }
    if (!strcmp(a, "--blas-prefill")) {
        o->blas_prefill = 1;
        return 1;
    }
    if (!strcmp(a, "--itl-target")) {
        if (*i + 1 >= argc) {
            fprintf(stderr, "sgl: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++*i];
        char *end;
        double ms = strtod(v, &end);
        if (*v == 0 || *end != 0 || !(ms >= 0 && ms <= 1e7)) {
            fprintf(stderr, "sgl: --itl-target needs milliseconds >= 0 (0: off), not '%s'\n", v);
            return -1;
        }
        o->itl_target_ms = ms > 0 ? ms : -1;
        return 1;
    }
    static const char *const with_value[] = {"--model", "--threads", "--chunk-size", "--kv-tokens", "--seed",
                                             "--max-running", "--chat-template", "--device", "--mem-fraction",
                                             "--tp", "--tp-comm", "--quantization", "--kv-cache-dtype", NULL};
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
    case 7: o->device = v; return 1;
    case 8: {
        char *end;
        double f = strtod(v, &end);
        if (*v == 0 || *end != 0 || !(f > 0 && f <= 1)) {
            fprintf(stderr, "sgl: --mem-fraction needs a number in (0, 1], not '%s'\n", v);
            return -1;
        }
        o->mem_fraction = f;
        return 1;
    }
    case 9: return int_value(a, v, 1, &o->tp);
    case 10: o->tp_comm = v; return 1;
    case 11: o->quantization = v; return 1;
    case 12: o->kv_cache_dtype = v; return 1;
    default: o->chat_template = v; return 1;
    }
}

int cli_runtime_open(const CliEngineOptions *o, int lazy, sgl_runtime **out, char *err, size_t errcap)
{
    if (sgl_set_device(o->device, o->mem_fraction, err, errcap) != SGL_OK) return -1;
    if (sgl_set_tensor_parallel(o->tp, o->tp_comm, err, errcap) != SGL_OK) return -1;
    if (sgl_set_quantization(o->quantization, o->kv_cache_dtype, err, errcap) != SGL_OK) return -1;
    sgl_runtime_options ro;
    sgl_runtime_options_init(&ro);
    ro.model = o->model;
    ro.threads = o->threads;
    ro.kv_tokens = o->kv_tokens;
    ro.chunk_size = o->chunk_size;
    ro.itl_target_ms = o->itl_target_ms;
    ro.max_running = o->max_running;
    ro.prefix_cache = o->prefix_cache;
    ro.blas_prefill = o->blas_prefill;
    ro.disable_overlap = o->disable_overlap;
    ro.has_seed = o->has_seed;
    ro.seed = o->seed;
    ro.chat_template = o->chat_template;
    ro.lazy = lazy;
    return sgl_runtime_open(&ro, out, err, errcap) == SGL_OK ? 0 : -1;
}

int cli_engine_start(const CliEngineOptions *o, sgl_vm *vm, CliEngine **out)
{
    CliEngine *e = calloc(1, sizeof *e);
    char err[1024];
    if (!e) {
        fprintf(stderr, "sgl: out of memory\n");
        return 1;
    }
    e->opt = *o;
    if (cli_runtime_open(o, 1, &e->rt, err, sizeof err) != 0) {
        fprintf(stderr, "sgl: %s\n", err);
        free(e);
        return 1;
    }
    sgl_vm_set_runtime(vm, e->rt);
    *out = e;
    return 0;
}

void cli_engine_report(CliEngine *e)
{
    if (!e || !e->opt.stats)
        return;
    sgl_runtime_stats s;
    sgl_runtime_get_stats(e->rt, &s);
    if (!s.loaded) {
        fprintf(stderr, "stats: the model was not used\n");
        return;
    }
    fprintf(stderr,
            "stats: requests %llu, prompt tokens %llu, cached tokens %llu, hit rate %.1f%%, "
            "computed tokens %llu, generated tokens %llu, %.1f tok/s generated (%.1f in forward), "
            "wall %.2fs\n",
            s.requests, s.prompt_tokens, s.cached_tokens, 100.0 * s.hit_rate, s.computed_tokens,
            s.generated_tokens, s.seconds > 0 ? (double)s.generated_tokens / s.seconds : 0.0,
            s.gen_tokens_per_s, s.seconds);
}

void cli_engine_stop(CliEngine *e)
{
    if (!e)
        return;
    sgl_runtime_close(e->rt);
    free(e);
}
