/*
 * cli/serve.c — `sgl serve`: the command line of the HTTP server. The
 * server itself is libsgl's (server/, behind sgl_serve in include/sgl.h);
 * this file only reads options, prints the error and picks the exit status.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char serve_help[] =
    "usage: sgl serve [options]\n"
    "\n"
    "Serves the model over HTTP: the OpenAI API (/v1/models, /v1/completions,\n"
    "/v1/chat/completions, /v1/tokenize, /v1/detokenize), SGLang's native API\n"
    "(/generate, /get_model_info, /get_server_info, /health, /health_generate,\n"
    "/abort_request, ...), compiled programs (/v1/programs) and /metrics.\n"
    "SIGINT/SIGTERM drain and exit 0; SIGHUP reloads --programs.\n"
    "\n"
    "options:\n"
    "  --host HOST          address to bind (default 127.0.0.1)\n"
    "  --port N             port (default 30000; 0: any free port)\n"
    "  --programs DIR       serve every .sgl/.sglc there as /v1/programs/NAME\n"
    "  --api-key KEY        require Authorization: Bearer KEY (all routes but /health)\n"
    "  --served-model-name NAME  the model id clients see (default: the file name)\n"
    "  --quiet              no access log\n"
    "  --max-connections N  open connections at once (default 1024; more get 503)\n"
    "  --max-queued N       sequences waiting beyond --max-running (default 256; more get 429)\n"
    "  --max-header-bytes N request line + headers (default 16384; more get 431)\n"
    "  --max-body-bytes N   request body (default 8388608; more get 413)\n"
    "  --read-timeout S     seconds to receive a whole request (default 30; then 408)\n"
    "  --idle-timeout S     keep-alive connection with no request (default 60)\n"
    "  --drain-timeout S    on SIGINT/SIGTERM, wait this long for requests (default 30)\n"
    "  --program-max-steps N   bytecode steps per program run (default 100000000)\n"
    "  --program-max-heap N    heap bytes per program run (default 268435456)\n" CLI_ENGINE_RUN_HELP;

static int num(const char *opt, const char *v, double lo, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end || d < lo) {
        fprintf(stderr, "sgl serve: %s needs a number >= %g, not '%s'\n", opt, lo, v);
        return -1;
    }
    *out = d;
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    CliEngineOptions eo;
    cli_engine_options_init(&eo);
    sgl_serve_options o;
    sgl_serve_options_init(&o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(serve_help, stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
            continue;
        }
        int rc = cli_engine_parse_option(&eo, argc, argv, &i);
        if (rc < 0) return 64;
        if (rc > 0) continue;
        static const char *const opts[] = {"--host", "--port", "--programs", "--api-key", "--served-model-name",
                                           "--max-connections", "--max-queued", "--max-header-bytes",
                                           "--max-body-bytes", "--read-timeout", "--idle-timeout", "--drain-timeout",
                                           "--program-max-steps", "--program-max-heap", NULL};
        int k = 0;
        while (opts[k] && strcmp(a, opts[k])) k++;
        if (!opts[k]) {
            return cli_unknown_option("serve", a, serve_help);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sgl serve: %s needs a value\n", a);
            return 64;
        }
        const char *v = argv[++i];
        double d = 0;
        switch (k) {
        case 0: o.host = v; continue;
        case 2: o.programs_dir = v; continue;
        case 3: o.api_key = v; continue;
        case 4: o.served_model_name = v; continue;
        default: break;
        }
        if (num(a, v, k == 1 ? 0 : k >= 9 && k <= 11 ? 0.001 : 1, &d)) return 64;
        if ((k == 1 && d > 65535) || (k != 12 && k != 13 && k < 9 && d > INT_MAX)) {
            fprintf(stderr, "sgl serve: %s: %s is too large\n", a, v);
            return 64;
        }
        switch (k) {
        case 1: o.port = (int)d; break;
        case 5: o.max_connections = (int)d; break;
        case 6: o.max_queued = (int)d; break;
        case 7: o.max_header_bytes = (size_t)d; break;
        case 8: o.max_body_bytes = (size_t)d; break;
        case 9: o.read_timeout_s = d; break;
        case 10: o.idle_timeout_s = d; break;
        case 11: o.drain_timeout_s = d; break;
        case 12: o.program_max_steps = (unsigned long long)d; break;
        case 13: o.program_max_heap = (size_t)d; break;
        }
    }
    o.runtime.model = eo.model;
    o.runtime.threads = eo.threads;
    o.runtime.kv_tokens = eo.kv_tokens;
    o.runtime.chunk_size = eo.chunk_size;
    o.runtime.itl_target_ms = eo.itl_target_ms;
    o.runtime.max_running = eo.max_running;
    o.runtime.prefix_cache = eo.prefix_cache;
    o.runtime.blas_prefill = eo.blas_prefill;
    o.runtime.disable_overlap = eo.disable_overlap;
    o.runtime.has_seed = eo.has_seed;
    o.runtime.seed = eo.seed;
    o.runtime.chat_template = eo.chat_template;
    char err[1024];
    sgl_status st = sgl_serve(&o, err, sizeof err);
    if (st != SGL_OK) {
        fprintf(stderr, "sgl serve: %s\n", err);
        return st == SGL_ERR_USAGE ? 64 : 1;
    }
    return 0;
}
