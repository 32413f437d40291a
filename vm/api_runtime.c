/*
 * vm/api_runtime.c — include/sgl.h's runtime object over the runtime
 * room's Runtime (runtime/runtime.h): opening a model with options,
 * attaching it to VMs (and, on a uv loop, letting each VM drive itself
 * there), statistics, tokenization and blocking waits.
 */
#include "vm/api.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "runtime/runtime.h"

struct sgl_runtime {
    Runtime *rt;
    char *chat_template;
};

sgl_status sgl_runtime_open(const sgl_runtime_options *o, sgl_runtime **out, char *err, size_t errcap)
{
    *out = NULL;
    sgl_runtime *r = calloc(1, sizeof *r);
    if (!r) {
        err_fmt(err, errcap, "out of memory");
        return SGL_ERR_IO;
    }
    if (o->chat_template && !(r->chat_template = strdup(o->chat_template))) {
        free(r);
        err_fmt(err, errcap, "out of memory");
        return SGL_ERR_IO;
    }
    if (runtime_open(o, &r->rt, err, errcap) != 0) {
        free(r->chat_template);
        free(r);
        return SGL_ERR_IO;
    }
    *out = r;
    return SGL_OK;
}

void sgl_runtime_close(sgl_runtime *r)
{
    if (!r) return;
    runtime_close(r->rt);
    free(r->chat_template);
    free(r);
}

const char *sgl_runtime_model_path(const sgl_runtime *r) { return runtime_model_path(r->rt); }

static void vm_wake(void *ud)
{
    sgl_vm *vm = ud;
    runtime_waker_poke(vm->waker);
}

static void vm_resume(void *ud) { sgl_vm_run_ready(ud); }

void sgl_vm_set_runtime(sgl_vm *vm, sgl_runtime *r)
{
    if (vm->waker) {
        vm_set_wake(vm->vm, NULL, NULL);
        runtime_waker_free(vm->waker);
        vm->waker = NULL;
    }
    vm->runtime = r;
    vm_set_backend(vm->vm, r ? runtime_backend(r->rt) : NULL);
    if (!r) return;
    if (!vm->chat_template && r->chat_template) sgl_vm_set_chat_template(vm, r->chat_template);
    if (runtime_loop(r->rt)) {
        vm->waker = runtime_waker_new(r->rt, vm_resume, vm);
        if (vm->waker) vm_set_wake(vm->vm, vm_wake, vm);
    }
}

void sgl_runtime_get_stats(sgl_runtime *r, sgl_runtime_stats *out) { runtime_stats(r->rt, out); }

sgl_status sgl_tokenize(sgl_runtime *r, const char *text, size_t len, int add_special, int parse_special,
                        int **ids, size_t *n, char *err, size_t errcap)
{
    if (runtime_load(r->rt) != 0) {
        err_fmt(err, errcap, "%s", runtime_error(r->rt));
        return SGL_ERR_IO;
    }
    return runtime_tokenize(r->rt, text, len, add_special, parse_special, ids, n, err, errcap) ? SGL_ERR_USAGE
                                                                                                 : SGL_OK;
}

int sgl_runtime_wait(sgl_runtime *r)
{
    RtBackend *be = runtime_backend(r->rt);
    return be->wait(be->ctx);
}

sgl_status sgl_generate(sgl_runtime *r, const char *prompt, size_t len, const char *options_json,
                        const sgl_stream *stream, char *err, size_t errcap)
{
    if (runtime_load(r->rt) != 0) {
        err_fmt(err, errcap, "%s", runtime_error(r->rt));
        return SGL_ERR_IO;
    }
    return runtime_generate_json(r->rt, prompt, len, options_json, stream, err, errcap) ? SGL_ERR_USAGE : SGL_OK;
}
