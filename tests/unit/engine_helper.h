/*
 * tests/unit/engine_helper.h — the default model and its tokenizer, loaded
 * for the tests that run the engine on it (test_engine.c,
 * test_select_e2e.c). Static functions in a header, so only the tests that
 * include it link libsgl's model and engine; the files linked into every
 * test binary must not.
 */
#ifndef SGL_TESTS_ENGINE_HELPER_H
#define SGL_TESTS_ENGINE_HELPER_H

#include <criterion/criterion.h>
#include <stddef.h>
#include <unistd.h>

#include "runtime/engine.h"

#define MODEL_PATH "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define THREADS 2

/* A suite's .init: loads MODEL_PATH and its tokenizer on the CPU backend
 * with THREADS threads, batch-invariant (no sgemm: rows are then computed
 * independently of what shares their batch); skips the test when the
 * model file is absent. */
static inline void engine_model_load(Model **model, Tokenizer **tok)
{
    if (access(MODEL_PATH, R_OK) != 0) cr_skip_test("no model at " MODEL_PATH " (run `make model`)");
    char err[512];
    cr_assert_eq(model_load_gguf(MODEL_PATH, model, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tok_load_gguf((*model)->gguf, tok, err, sizeof err), 0, "%s", err);
    ModelOptions mo;
    model_options_default(&mo);
    mo.backend = K_BACKEND_CPU;
    mo.n_threads = THREADS;
    mo.batch_invariant = true;
    model_set_options(*model, &mo);
    cr_assert_eq(model_reserve(*model, 1, 1, err, sizeof err), 0, "%s", err);
}

/* A suite's .fini: frees what engine_model_load made and clears both. */
static inline void engine_model_free(Model **model, Tokenizer **tok)
{
    tok_free(*tok);
    model_free(*model);
    *tok = NULL;
    *model = NULL;
}

#endif
