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
#include "base/suggest.h"
#include "runtime/rt_constrain.h"
#include "vm/json.h"
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

const char *sgl_token_text(sgl_runtime *r, int id, size_t *len)
{
    size_t n = 0;
    const char *s = runtime_token_text(r->rt, id, &n);
    if (len) *len = n;
    return s;
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

/* ---- sgl check ---- */

struct sgl_checker {
    sgl_runtime *r;
    RtConstraintKind kind;
    CGrammar *g;
};

sgl_status sgl_checker_new(sgl_runtime *r, sgl_check_kind kind, const char *src, size_t len,
                           sgl_checker **out, char *err, size_t errcap)
{
    return sgl_checker_new_opts(r, kind, src, len, 0, out, err, errcap);
}

sgl_status sgl_checker_new_opts(sgl_runtime *r, sgl_check_kind kind, const char *src, size_t len,
                                unsigned flags, sgl_checker **out, char *err, size_t errcap)
{
    static const RtConstraintKind kinds[] = {
        [SGL_CHECK_REGEX] = RT_CONSTRAINT_REGEX,
        [SGL_CHECK_JSON_SCHEMA] = RT_CONSTRAINT_JSON,
        [SGL_CHECK_GRAMMAR] = RT_CONSTRAINT_GRAMMAR,
        [SGL_CHECK_EBNF] = RT_CONSTRAINT_EBNF,
    };
    *out = NULL;
    if ((unsigned)kind > SGL_CHECK_EBNF) {
        err_fmt(err, errcap, "unknown constraint kind");
        return SGL_ERR_USAGE;
    }
    sgl_checker *c = calloc(1, sizeof *c);
    if (!c) {
        err_fmt(err, errcap, "out of memory");
        return SGL_ERR_IO;
    }
    c->r = r;
    c->kind = kinds[kind];
    if (flags & ~(unsigned)SGL_CHECK_ANY_WHITESPACE) {
        sgl_checker_free(c);
        err_fmt(err, errcap, "unknown checker option 0x%x", flags);
        return SGL_ERR_USAGE;
    }
    if (flags & SGL_CHECK_ANY_WHITESPACE) {   /* compiled here; runtime_check then compiles nothing */
        int rc = rtc_compile_flags(c->kind, src, len, RTC_ANY_WHITESPACE, &c->g, err, errcap);
        if (rc < 0) {
            sgl_checker_free(c);
            return SGL_ERR_USAGE;
        }
    }
    size_t at;
    int rc = runtime_check(r->rt, c->kind, src, len, "", 0, 0, 0, &c->g, &at, err, errcap);
    if (rc < 0) {
        sgl_checker_free(c);
        return rc == ERR_IO ? SGL_ERR_IO : SGL_ERR_USAGE;
    }
    *out = c;
    return SGL_OK;
}

int sgl_checker_run(sgl_checker *c, const char *text, size_t len, int random_segment,
                    unsigned long long seed, size_t *reject_at, char *err, size_t errcap)
{
    int rc = runtime_check(c->r->rt, c->kind, NULL, 0, text, len, random_segment ? RTC_SEGMENT_RANDOM : 0,
                           seed, &c->g, reject_at, err, errcap);
    return rc < 0 ? -1 : rc;
}

void sgl_checker_free(sgl_checker *c)
{
    if (!c) return;
    cg_unref(c->g);
    free(c);
}

int sgl_json_string(const char *json, size_t n, char **out, size_t *len, char *err, size_t errcap)
{
    *out = NULL;
    *len = 0;
    Heap h;
    heap_init(&h);
    Value v;
    JsonError je;
    int rc = -1;
    if (json_decode(&h, json, n, &v, &je) != 0) {
        err_fmt(err, errcap, "line %d, column %d: %s", je.line, je.col, je.msg);
    } else if (!VAL_IS_STRING(v)) {
        err_fmt(err, errcap, "not a JSON string");
    } else {
        ObjString *s = AS_STRING(v);
        if ((*out = malloc(s->len + 1))) {
            memcpy(*out, s->chars, s->len + 1);
            *len = s->len;
            rc = 0;
        } else {
            err_fmt(err, errcap, "out of memory");
        }
    }
    heap_free_all(&h);
    return rc;
}

const char *sgl_suggest(const char *word, const char *const *cands, size_t n)
{
    return suggest(word, cands, n);
}
