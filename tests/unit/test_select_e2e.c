/* tests/unit/test_select_e2e.c — `select` in an SGL program on the real
 * model agrees with log-probabilities computed by scoring each choice on
 * its own.
 *
 * The program runs through the public API (sgl_run) with the engine's
 * backend (runtime/rt_engine.h) attached: its selects go VM -> rt_engine
 * -> eng_score, where the prompt is prefilled once and the choices scored
 * in one batch over it. The reference is a second engine with the prefix
 * cache off, scoring each choice alone (one eng_score per choice, with its
 * unconditional logprobs); the three methods' scores are recomputed from
 * those per-token logprobs by their definitions (SGLang's choices.py) and
 * compared with state.meta[name], and each select's pick with the argmax.
 *
 * The model runs with CPU_NO_BLAS: rows are then computed independently of
 * what shares their batch, so the batched and the separate scores are the
 * same numbers (the sgemm path for big batches sums in another order).
 *
 * Needs models/SmolLM2-135M-Instruct.Q4_1.gguf (`make model`); skips with
 * a message when it is absent.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "include/sgl.h"
#include "runtime/engine.h"
#include "runtime/rt_engine.h"
#include "engine_helper.h"

#define NCH 4
#define MAXTOK 16

static Model *model;
static Tokenizer *tok;

static void setup(void)
{
    engine_model_load(&model, &tok);
}

static void teardown(void)
{
    engine_model_free(&model, &tok);
}

TestSuite(select_e2e, .init = setup, .fini = teardown, .timeout = 300);

static Engine *start(int cache)
{
    EngOptions o;
    eng_options_default(&o);
    o.prefix_cache = cache;
    o.n_threads = THREADS;
    o.n_slots = 2048;
    char err[512] = "";
    Engine *e = eng_new(model, tok, &o, err, sizeof err);
    cr_assert_not_null(e, "eng_new: %s", err);
    return e;
}

/* One choice scored alone. */
typedef struct {
    int done;
    int n;
    float lp[MAXTOK], ulp[MAXTOK];
} Alone;

static void on_alone(void *ud, const EngScoreResult *r)
{
    Alone *a = ud;
    a->done = 1;
    cr_assert_eq(r->status, 0, "%s", r->error ? r->error : "");
    cr_assert_eq(r->n_choices, 1);
    cr_assert_not_null(r->unconditional);
    a->n = r->n_tokens[0];
    cr_assert(a->n > 0 && a->n <= MAXTOK);
    memcpy(a->lp, r->logprobs[0], (size_t)a->n * sizeof(float));
    memcpy(a->ulp, r->unconditional[0], (size_t)a->n * sizeof(float));
}

static void score_alone(Engine *e, const char *prompt, const char *choice, Alone *a)
{
    const char *one[1] = {choice};
    EngScoreParams p = {.prompt_text = prompt, .prompt_len = strlen(prompt), .choices = one, .n_choices = 1,
                        .unconditional = 1, .on_done = on_alone, .ud = a};
    memset(a, 0, sizeof *a);
    cr_assert_eq(eng_score(e, &p, NULL), 0, "%s", eng_last_error(e));
    while (!a->done) cr_assert_geq(eng_wait(e), 0);
}

static int argmax(const double *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static void expect_scores(json_t *value, const char *name, const double *want)
{
    json_t *got = json_object_get(value, name);
    cr_assert(json_is_array(got) && json_array_size(got) == NCH, "state.meta[\"%s\"] missing", name);
    for (int i = 0; i < NCH; i++) {
        double g = json_number_value(json_array_get(got, (size_t)i));
        cr_assert(fabs(g - want[i]) < 1e-5, "%s choice %d: select says %.9g, scored alone %.9g", name, i, g, want[i]);
    }
}

Test(select_e2e, select_agrees_with_scoring_each_choice_alone)
{
    static const char *prompt = "Question: What is the capital of France?\nAnswer:";
    static const char *choices[NCH] = {" Paris", " London", " Berlin and Rome", " Madrid, Spain"};
    static const char *src =
        "let choices = [\" Paris\", \" London\", \" Berlin and Rome\", \" Madrid, Spain\"]\n"
        "fn main() {\n"
        "    \"Question: What is the capital of France?\\nAnswer:\"\n"
        "    let t = select(\"t\", choices)\n"
        "    let g = select(\"g\", choices, method: \"greedy_token\")\n"
        "    let u = select(\"u\", choices, method: \"unconditional_likelihood_normalized\")\n"
        "    let c = gen(\"c\", choices: choices)\n"
        "    return {t: state.meta.t, g: state.meta.g, u: state.meta.u, picks: [t, g, u, c]}\n"
        "}\n";

    Engine *ec = start(1);
    char err[256];
    RtEngineOptions ro;
    memset(&ro, 0, sizeof ro);
    RtEngine *rt = rt_engine_new(ec, &ro, err, sizeof err);
    cr_assert_not_null(rt, "%s", err);
    sgl_vm *vm = sgl_vm_new();
    sgl_vm_set_backend(vm, rt_engine_backend(rt));
    sgl_program *prog;
    cr_assert_eq(sgl_compile_source(vm, "select.sgl", src, strlen(src), &prog), SGL_OK, "%s", sgl_last_error(vm));
    char *result = NULL;
    cr_assert_eq(sgl_run(vm, prog, NULL, NULL, &result), SGL_OK, "%s", sgl_last_error(vm));
    json_error_t jerr;
    json_t *res = json_loads(result, 0, &jerr);
    cr_assert_not_null(res, "%s: %s", jerr.text, result);
    json_t *value = json_object_get(res, "value");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(res, "vars"), "t")),
                     json_string_value(json_array_get(json_object_get(value, "picks"), 0)));
    sgl_program_free(prog);
    sgl_vm_free(vm);
    rt_engine_free(rt);
    /* the shared prompt was prefilled once: the later selects found it cached */
    EngStats st;
    eng_stats(ec, &st);
    cr_assert_gt(st.cached_tokens, 0);
    eng_free(ec);

    /* the reference: each choice alone, no cache */
    Engine *ea = start(0);
    double mean[NCH], first[NCH], uncond[NCH];
    for (int i = 0; i < NCH; i++) {
        Alone a;
        score_alone(ea, prompt, choices[i], &a);
        double s = 0, su = 0;
        for (int j = 0; j < a.n; j++) {
            s += a.lp[j];
            su += a.lp[j] - a.ulp[j];
        }
        mean[i] = s / a.n;
        first[i] = a.lp[0];
        uncond[i] = su / a.n;
    }
    eng_free(ea);

    expect_scores(value, "t", mean);
    expect_scores(value, "g", first);
    expect_scores(value, "u", uncond);
    json_t *picks = json_object_get(value, "picks");
    const int want[4] = {argmax(mean, NCH), argmax(first, NCH), argmax(uncond, NCH), argmax(mean, NCH)};
    for (int m = 0; m < 4; m++)
        cr_assert_str_eq(json_string_value(json_array_get(picks, (size_t)m)), choices[want[m]], "pick %d", m);
    cr_assert_str_eq(choices[want[0]], " Paris", "the model should know this one: %g %g %g %g", mean[0], mean[1], mean[2], mean[3]);
    json_decref(res);
    free(result);
}
