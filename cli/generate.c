/*
 * cli/generate.c — `sgl generate` (stream a continuation of a prompt) and
 * `sgl tokenize` (print token ids): the engine used directly, without a
 * program.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define EXIT_USAGE 64

static const char generate_help[] =
    "usage: sgl generate [options] \"prompt\"\n"
    "\n"
    "Streams the model's continuation of the prompt to stdout.\n"
    "\n"
    "options:\n"
    "  --max-tokens N        tokens to generate at most (default 128)\n"
    "  --temperature T       0 = greedy (default 0.8)\n"
    "  --top-k K, --top-p P, --min-p P\n"
    "  --repetition-penalty R, --frequency-penalty F, --presence-penalty P\n"
    "  --stop TEXT           stop before TEXT (repeatable)\n"
    "  --ignore-eos          keep going past end-of-sequence\n"
    "  --logprobs            print each token's log-probability to stderr\n" CLI_ENGINE_RUN_HELP;

typedef struct {
    int done;
    int failed;
    int logprobs;
    char finish[16];
} GenState;

static void on_text(void *ud, const char *text, size_t len, double logprob)
{
    GenState *g = ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (g->logprobs) fprintf(stderr, "%.4f\n", logprob);
}

static void on_done(void *ud, const char *finish, const char *error, int prompt_tokens, int completion_tokens)
{
    GenState *g = ud;
    g->done = 1;
    snprintf(g->finish, sizeof g->finish, "%s", finish ? finish : "");
    if (error) {
        g->failed = 1;
        fprintf(stderr, "\nsgl generate: %s\n", error);
    }
}

/* Options JSON: a string value, escaped. */
static void put_json_string(char *buf, size_t cap, size_t *n, const char *s)
{
    *n += (size_t)snprintf(buf + *n, *n < cap ? cap - *n : 0, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') *n += (size_t)snprintf(buf + *n, *n < cap ? cap - *n : 0, "\\%c", c);
        else if (c < 0x20) *n += (size_t)snprintf(buf + *n, *n < cap ? cap - *n : 0, "\\u%04x", c);
        else if (*n + 1 < cap) buf[(*n)++] = (char)c;
    }
    *n += (size_t)snprintf(buf + *n, *n < cap ? cap - *n : 0, "\"");
}

static int parse_float(const char *opt, const char *v, float *out)
{
    char *end;
    double d = strtod(v, &end);
    if (*v == 0 || *end != 0) {
        fprintf(stderr, "sgl generate: %s needs a number, not '%s'\n", opt, v);
        return -1;
    }
    *out = (float)d;
    return 0;
}

static int parse_int(const char *opt, const char *v, int min, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == 0 || *end != 0 || n < min || n > INT_MAX) {
        fprintf(stderr, "sgl generate: %s needs an integer >= %d, not '%s'\n", opt, min, v);
        return -1;
    }
    *out = (int)n;
    return 0;
}

int cmd_generate(int argc, char **argv)
{
    CliEngineOptions eo;
    cli_engine_options_init(&eo);
    const char *prompt = NULL;
    /* the request's options, as gen's names: a JSON object */
    char opts[8192];
    size_t n = 0;
    int nstop = 0, temperature_set = 0;
    GenState g = {0};
    n += (size_t)snprintf(opts, sizeof opts, "{");
    static const char *const numeric[] = {"--max-tokens", "--temperature", "--top-k", "--top-p", "--min-p",
                                          "--repetition-penalty", "--frequency-penalty", "--presence-penalty",
                                          NULL};
    char stops[4096];
    size_t ns = 0;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int used = cli_engine_parse_option(&eo, argc, argv, &i);
        if (used < 0)
            return EXIT_USAGE;
        if (used)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(generate_help, stdout);
            return 0;
        }
        if (!strcmp(a, "--ignore-eos") || !strcmp(a, "--logprobs")) {
            n += (size_t)snprintf(opts + n, sizeof opts - n, "%s\"%s\":true", n > 1 ? "," : "",
                                  a[2] == 'i' ? "ignore_eos" : "logprobs");
            if (a[2] == 'l') g.logprobs = 1;
            continue;
        }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) {
                fprintf(stderr, "sgl generate: %s needs a value\n", a);
                return EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--stop")) {
                if (nstop == 16) {
                    fprintf(stderr, "sgl generate: at most 16 --stop strings\n");
                    return EXIT_USAGE;
                }
                if (nstop++) stops[ns++] = ',';
                put_json_string(stops, sizeof stops, &ns, v);
                continue;
            }
            int k = 0;
            while (numeric[k] && strcmp(a, numeric[k]) != 0)
                k++;
            if (!numeric[k]) {
                return cli_unknown_option("generate", a, generate_help);
            }
            int iv;
            float fv;
            int is_int = k == 0 || k == 2;
            if (is_int ? parse_int(a, v, k == 0 ? 0 : -1, &iv) : parse_float(a, v, &fv))
                return EXIT_USAGE;
            char key[32];
            snprintf(key, sizeof key, "%s", a + 2);
            for (char *c = key; *c; c++)
                if (*c == '-') *c = '_';
            if (k == 1) temperature_set = 1;
            n += (size_t)snprintf(opts + n, sizeof opts - n, "%s\"%s\":%s", n > 1 ? "," : "", key, v);
            continue;
        }
        if (prompt) {
            fprintf(stderr, "sgl generate: one prompt at a time (quote it)\n");
            return EXIT_USAGE;
        }
        prompt = a;
    }
    if (!prompt) {
        fputs(generate_help, stderr);
        return EXIT_USAGE;
    }
    if (!temperature_set)
        n += (size_t)snprintf(opts + n, sizeof opts - n, "%s\"temperature\":0.8", n > 1 ? "," : "");
    if (eo.has_seed)
        n += (size_t)snprintf(opts + n, sizeof opts - n, ",\"seed\":%llu", eo.seed);
    if (nstop) {
        stops[ns < sizeof stops ? ns : sizeof stops - 1] = 0;
        n += (size_t)snprintf(opts + n, sizeof opts - n, ",\"stop\":[%s]", stops);
    }
    n += (size_t)snprintf(opts + n, sizeof opts - n, "}");
    if (n >= sizeof opts || ns >= sizeof stops) {
        fprintf(stderr, "sgl generate: options too long\n");
        return EXIT_USAGE;
    }

    char err[1024];
    sgl_runtime *rt;
    if (cli_runtime_open(&eo, 0, &rt, err, sizeof err) != 0) {
        fprintf(stderr, "sgl generate: %s\n", err);
        return 1;
    }
    sgl_stream cb = {on_text, on_done, &g};
    int rc = 0;
    sgl_status st = sgl_generate(rt, prompt, strlen(prompt), opts, &cb, err, sizeof err);
    if (st != SGL_OK) {
        /* the request is the command line: its prompt or an option is bad */
        fprintf(stderr, "sgl generate: %s\n", err);
        rc = st == SGL_ERR_USAGE ? EXIT_USAGE : 1;
    } else {
        while (!g.done && sgl_runtime_wait(rt) >= 0)
            ;
        fputc('\n', stdout);
        if (g.failed)
            rc = 2;
    }
    fflush(stdout);
    if (eo.stats) {
        sgl_runtime_stats s;
        sgl_runtime_get_stats(rt, &s);
        fprintf(stderr, "stats: prompt tokens %llu, generated tokens %llu, finish %s, %.1f tok/s generated\n",
                s.prompt_tokens, s.generated_tokens, g.finish, s.gen_tokens_per_s);
    }
    sgl_runtime_close(rt);
    return rc;
}

static const char tokenize_help[] =
    "usage: sgl tokenize [--model M] [--no-bos] [--no-special] \"text\"\n"
    "\n"
    "Prints the token ids of the text, space-separated, on one line.\n"
    "--no-bos leaves out the BOS/EOS tokens the model adds;\n"
    "--no-special reads special-token markers as plain text.\n";

int cmd_tokenize(int argc, char **argv)
{
    CliEngineOptions eo;
    cli_engine_options_init(&eo);
    const char *text = NULL;
    int bos = 1, special = 1;
    for (int i = 0; i < argc; i++) {
        int used = cli_engine_parse_option(&eo, argc, argv, &i);
        if (used < 0)
            return EXIT_USAGE;
        if (used)
            continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(tokenize_help, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--no-bos")) {
            bos = 0;
        } else if (!strcmp(argv[i], "--no-special")) {
            special = 0;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            return cli_unknown_option("tokenize", argv[i], tokenize_help);
        } else if (!text) {
            text = argv[i];
        } else {
            fprintf(stderr, "sgl tokenize: one text at a time (quote it)\n");
            return EXIT_USAGE;
        }
    }
    if (!text) {
        fputs(tokenize_help, stderr);
        return EXIT_USAGE;
    }
    char err[1024];
    sgl_runtime *rt;
    if (cli_runtime_open(&eo, 0, &rt, err, sizeof err) != 0) {
        fprintf(stderr, "sgl tokenize: %s\n", err);
        return 1;
    }
    int *ids;
    size_t n;
    int rc = 0;
    if (sgl_tokenize(rt, text, strlen(text), bos, special, &ids, &n, err, sizeof err) != SGL_OK) {
        fprintf(stderr, "sgl tokenize: %s\n", err);
        rc = 1;
    } else {
        for (size_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
        free(ids);
    }
    sgl_runtime_close(rt);
    return rc;
}
