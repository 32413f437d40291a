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
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"

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
    EngFinish finish;
    int prompt_tokens, completion_tokens;
} GenState;

static void on_delta(void *ud, const EngDelta *d)
{
    (void)ud;
    fwrite(d->text, 1, d->len, stdout);
    fflush(stdout);
}

static void on_done(void *ud, const EngResult *r)
{
    GenState *g = ud;
    g->done = 1;
    g->finish = r->finish;
    g->prompt_tokens = r->prompt_tokens;
    g->completion_tokens = r->completion_tokens;
    if (r->finish == ENG_FINISH_ERROR) {
        g->failed = 1;
        fprintf(stderr, "\nsgl generate: %s\n", r->error ? r->error : "generation failed");
    }
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
    EngGenParams gp;
    eng_gen_params_default(&gp);
    gp.sampling.temperature = 0.8f;
    const char *prompt = NULL;
    const char *stops[16];
    int nstop = 0, stats = 0;

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
        if (!strcmp(a, "--ignore-eos")) {
            gp.sampling.ignore_eos = 1;
            continue;
        }
        if (!strcmp(a, "--logprobs")) {
            gp.sampling.logprobs = 1;
            continue;
        }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) {
                fprintf(stderr, "sgl generate: %s needs a value\n", a);
                return EXIT_USAGE;
            }
            const char *v = argv[++i];
            int bad = 0;
            if (!strcmp(a, "--max-tokens")) bad = parse_int(a, v, 0, &gp.sampling.max_tokens);
            else if (!strcmp(a, "--temperature")) bad = parse_float(a, v, &gp.sampling.temperature);
            else if (!strcmp(a, "--top-k")) bad = parse_int(a, v, -1, &gp.sampling.top_k);
            else if (!strcmp(a, "--top-p")) bad = parse_float(a, v, &gp.sampling.top_p);
            else if (!strcmp(a, "--min-p")) bad = parse_float(a, v, &gp.sampling.min_p);
            else if (!strcmp(a, "--repetition-penalty")) bad = parse_float(a, v, &gp.sampling.repetition_penalty);
            else if (!strcmp(a, "--frequency-penalty")) bad = parse_float(a, v, &gp.sampling.frequency_penalty);
            else if (!strcmp(a, "--presence-penalty")) bad = parse_float(a, v, &gp.sampling.presence_penalty);
            else if (!strcmp(a, "--stop")) {
                if (nstop == 16) {
                    fprintf(stderr, "sgl generate: at most 16 --stop strings\n");
                    return EXIT_USAGE;
                }
                stops[nstop++] = v;
            } else {
                fprintf(stderr, "sgl generate: unknown option %s (see sgl generate --help)\n", a);
                return EXIT_USAGE;
            }
            if (bad)
                return EXIT_USAGE;
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
    if (eo.has_seed) {
        gp.sampling.has_seed = 1;
        gp.sampling.seed = eo.seed;
    }
    stats = eo.stats;

    char err[1024];
    Model *model;
    Tokenizer *tok;
    if (cli_load_model(&eo, &model, &tok, err, sizeof err) != 0) {
        fprintf(stderr, "sgl generate: %s\n", err);
        return 1;
    }
    Engine *eng;
    if (cli_engine_open(&eo, model, tok, &eng, err, sizeof err) != 0) {
        fprintf(stderr, "sgl generate: %s\n", err);
        tok_free(tok);
        model_free(model);
        return 1;
    }
    GenState g = {0};
    gp.prompt_text = prompt;
    gp.prompt_len = strlen(prompt);
    gp.stop = stops;
    gp.n_stop = nstop;
    gp.on_delta = on_delta;
    gp.on_done = on_done;
    gp.ud = &g;
    int rc = 0;
    if (eng_submit(eng, &gp, NULL) != 0) {
        /* the request is the command line: its prompt or an option is bad */
        fprintf(stderr, "sgl generate: %s\n", eng_last_error(eng));
        rc = EXIT_USAGE;
    } else {
        while (!g.done && eng_wait(eng) >= 0)
            ;
        fputc('\n', stdout);
        if (g.failed)
            rc = 2;
    }
    fflush(stdout);
    if (stats) {
        EngStats s;
        eng_stats(eng, &s);
        fprintf(stderr, "stats: prompt tokens %llu, generated tokens %llu, finish %s, %.1f tok/s generated\n",
                (unsigned long long)s.prompt_tokens, (unsigned long long)s.generated_tokens,
                eng_finish_name(g.finish), s.gen_tokens_per_s);
    }
    eng_free(eng);
    tok_free(tok);
    model_free(model);
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
            fprintf(stderr, "sgl tokenize: unknown option %s\n", argv[i]);
            return EXIT_USAGE;
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
    Model *model;
    Tokenizer *tok;
    if (cli_load_model(&eo, &model, &tok, err, sizeof err) != 0) {
        fprintf(stderr, "sgl tokenize: %s\n", err);
        return 1;
    }
    unsigned flags = (bos ? TOK_ENC_ADD_SPECIAL : 0) | (special ? TOK_ENC_PARSE_SPECIAL : 0);
    TokIds ids = {0};
    int rc = 0;
    if (tok_encode(tok, text, strlen(text), flags, &ids) != 0) {
        fprintf(stderr, "sgl tokenize: %s\n", tok_last_error(tok));
        rc = 1;
    } else {
        for (size_t i = 0; i < ids.n; i++)
            printf(i ? " %d" : "%d", ids.ids[i]);
        putchar('\n');
    }
    tok_ids_free(&ids);
    tok_free(tok);
    model_free(model);
    return rc;
}
