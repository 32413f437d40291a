/*
 * bench/structured/bench_gen.c — the end-to-end cost of structured
 * generation on the default model: output tokens per second of greedy
 * generation unconstrained, under a regex, a JSON schema and a GBNF
 * grammar, with the mask thread (EngOptions.mask_overlap) on and off and
 * jump-forward on and off. One request at a time and a batch of 8.
 *
 * Tokens per second count every output token (forced ones included), over
 * the wall time from submit to the last completion. Figures only; nothing
 * here asserts.
 *
 * Usage: bench_gen [MODEL.gguf] [THREADS] [CASE-SUBSTRING] [REPEATS]
 * (defaults: the default model, 2 threads, every case, once)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "constrain/constrain.h"
#include "runtime/engine.h"
#include "runtime/rt_constrain.h"

typedef struct {
    int done, status, n;
} Out;

static void on_done(void *ud, const EngResult *r)
{
    Out *o = ud;
    o->done = 1;
    o->status = r->status;
    o->n = r->n_ids;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *name;
    RtConstraintKind kind;
    const char *src;
    const char *prompt;
} Case;

static const Case cases[] = {
    {"unconstrained", RT_CONSTRAINT_NONE, NULL, "Write a long story about a dragon:"},
    {"regex (words)", RT_CONSTRAINT_REGEX, "([A-Z][a-z]+ ){1,60}[A-Z][a-z]+\\.",
     "Write a long story about a dragon:"},
    {"json schema (list of people)", RT_CONSTRAINT_JSON,
     "{\"type\":\"array\",\"minItems\":6,\"items\":{\"type\":\"object\",\"properties\":"
     "{\"name\":{\"type\":\"string\",\"maxLength\":24},\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120},"
     "\"city\":{\"type\":\"string\",\"maxLength\":24}},\"required\":[\"name\",\"age\",\"city\"],"
     "\"additionalProperties\":false}}",
     "A JSON list of people with their name, age and city:"},
    {"gbnf (arithmetic)", RT_CONSTRAINT_GRAMMAR,
     "root ::= expr (\" = \" num)?\nexpr ::= term ((\" + \" | \" - \") term)*\n"
     "term ::= factor ((\" * \" | \" / \") factor)*\nfactor ::= num | \"(\" expr \")\"\nnum ::= [0-9]{1,6}\n",
     "A long arithmetic expression:"},
};

static double run(Engine *e, const Case *c, CGrammar *g, int batch, int max_tokens, int *ntok)
{
    Out o[8];
    memset(o, 0, sizeof o);
    double t0 = now();
    for (int i = 0; i < batch; i++) {
        EngGenParams p;
        eng_gen_params_default(&p);
        char prompt[256];
        snprintf(prompt, sizeof prompt, "%s (%d)", c->prompt, i);
        p.prompt_text = prompt;
        p.prompt_len = strlen(prompt);
        p.sampling.temperature = 0;
        p.sampling.max_tokens = max_tokens;
        p.sampling.ignore_eos = g == NULL;
        p.constraint = g;
        p.on_done = on_done;
        p.ud = &o[i];
        if (eng_submit(e, &p, NULL) != 0) {
            fprintf(stderr, "submit: %s\n", eng_last_error(e));
            exit(1);
        }
    }
    for (;;) {
        int all = 1;
        for (int i = 0; i < batch; i++) all &= o[i].done;
        if (all) break;
        eng_wait(e);
    }
    double dt = now() - t0;
    *ntok = 0;
    for (int i = 0; i < batch; i++) *ntok += o[i].n;
    return dt;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    const char *only = argc > 3 ? argv[3] : NULL;
    int repeats = argc > 4 ? atoi(argv[4]) : 1;
    char err[512];
    Model *model;
    Tokenizer *tok;
    if (model_load_gguf(path, &model, err, sizeof err) || tok_load_gguf(model->gguf, &tok, err, sizeof err)) {
        fprintf(stderr, "bench_gen: %s (make model)\n", err);
        return 1;
    }
    ModelOptions mo;
    model_options_default(&mo);
    mo.n_threads = threads;
    model_set_options(model, &mo);
    CGrammar *gs[sizeof cases / sizeof *cases] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (cases[i].kind == RT_CONSTRAINT_NONE) continue;
        if (rtc_compile(cases[i].kind, cases[i].src, strlen(cases[i].src), &gs[i], err, sizeof err)) {
            fprintf(stderr, "bench_gen: %s: %s\n", cases[i].name, err);
            return 1;
        }
    }
    printf("\n== end to end: %s, %d threads, greedy, up to 200 output tokens per request ==\n", path, threads);
    printf("%-30s %6s %8s %8s %10s %10s\n", "case", "batch", "overlap", "jump", "tokens", "tok/s");
    static const int modes[][2] = {{1, 1}, {0, 1}, {1, 0}};
    for (int rep = 0; rep < repeats; rep++)
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (only && !strstr(cases[i].name, only)) continue;
        for (int batch = 1; batch <= 8; batch += 7) {
            for (int m = 0; m < 3; m++) {
                if (!gs[i] && m > 0) continue;
                EngOptions eo;
                eng_options_default(&eo);
                eo.n_threads = threads;
                eo.mask_overlap = modes[m][0];
                eo.jump_forward = modes[m][1];
                Engine *e = eng_new(model, tok, &eo, err, sizeof err);
                if (!e) {
                    fprintf(stderr, "bench_gen: %s\n", err);
                    return 1;
                }
                int n = 0;
                run(e, &cases[i], gs[i], 1, 8, &n);   /* warm: compile masks' first states, page the weights */
                double dt = run(e, &cases[i], gs[i], batch, 200, &n);
                printf("%-30s %6d %8s %8s %10d %10.1f\n", cases[i].name, batch, gs[i] ? (modes[m][0] ? "on" : "off") : "-",
                       gs[i] ? (modes[m][1] ? "on" : "off") : "-", n, n / dt);
                fflush(stdout);
                eng_free(e);
            }
        }
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) cg_unref(gs[i]);
    tok_free(tok);
    model_free(model);
    return 0;
}
