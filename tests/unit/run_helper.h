/*
 * tests/unit/run_helper.h — compile-and-run helpers for the VM, compiler
 * and fork tests (static functions: only the tests that include it link
 * libsgl's API; the files linked into every test binary must not).
 */
#ifndef SGL_TESTS_RUN_HELPER_H
#define SGL_TESTS_RUN_HELPER_H

#include <stdlib.h>
#include <string.h>

#include "include/sgl.h"
#include "runtime/rt.h"

typedef struct {
    sgl_vm *vm;
    sgl_program *prog;
    char *out;            /* what print() wrote */
    size_t outlen, outcap;
    char *result;         /* result JSON of the last run */
    char *error;          /* copy of sgl_last_error after a failure */
    sgl_status status;
} Run;

static void run_capture(void *ud, const char *s, size_t n)
{
    Run *r = ud;
    if (r->outlen + n + 1 > r->outcap) {
        r->outcap = (r->outlen + n + 1) * 2;
        r->out = realloc(r->out, r->outcap);
    }
    memcpy(r->out + r->outlen, s, n);
    r->outlen += n;
    r->out[r->outlen] = '\0';
}

static void run_init(Run *r, RtBackend *be)
{
    memset(r, 0, sizeof *r);
    r->vm = sgl_vm_new();
    sgl_vm_set_output(r->vm, run_capture, r);
    sgl_vm_set_backend(r->vm, be);
    r->out = calloc(1, 1);
    r->outcap = 1;
}

static void run_reset(Run *r)
{
    sgl_program_free(r->prog);
    r->prog = NULL;
    free(r->result);
    r->result = NULL;
    free(r->error);
    r->error = NULL;
    r->outlen = 0;
    r->out[0] = '\0';
}

static void run_done(Run *r)
{
    run_reset(r);
    free(r->out);
    sgl_vm_free(r->vm);
}

static sgl_status run_keep_error(Run *r, sgl_status st)
{
    r->status = st;
    if (st != SGL_OK) r->error = strdup(sgl_last_error(r->vm));
    return st;
}

/* Compiles src as "test.sgl". */
static sgl_status run_compile(Run *r, const char *src)
{
    run_reset(r);
    return run_keep_error(r, sgl_compile_source(r->vm, "test.sgl", src, strlen(src), &r->prog));
}

/* Compiles and runs fn (NULL = main) with args JSON (may be NULL). */
static sgl_status run_src(Run *r, const char *src, const char *fn, const char *args)
{
    if (run_compile(r, src) != SGL_OK) return r->status;
    return run_keep_error(r, sgl_run(r->vm, r->prog, fn, args, &r->result));
}

#endif
