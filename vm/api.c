/*
 * vm/api.c — include/sgl.h: the embedding API over the compiler (compiler/)
 * and the VM (vm/vm.h).
 *
 * Owns: sgl_vm (a VM, its last error, the stdlib path) and sgl_program (a
 * compiled Program plus the heap holding its constants as values). Argument
 * JSON is decoded with vm/json.h onto the VM heap; results are written as
 * compact JSON here (values JSON cannot hold are written as their str()
 * text, a state as {"text", "vars"}).
 *
 * Before each run the VM is told the chat template to use (the embedder's
 * name, or NULL: the model's) and the stdlib directory to load it from
 * (vm/chat.h); sgl_run_batch reports progress from the VM's run-done hook.
 */
#include "include/sgl.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compiler/compile.h"
#include "compiler/disasm.h"
#include "compiler/sglc.h"
#include "vm/api.h"
#include "vm/builtins.h"
#include "vm/chat.h"
#include "vm/gen.h"
#include "vm/json.h"
#include "vm/vm.h"

sgl_status fail(sgl_vm *vm, sgl_status st, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(vm->err);
    vm->err = strdup(buf);
    return st;
}

void set_err(sgl_vm *vm, char *msg_owned)
{
    free(vm->err);
    vm->err = msg_owned ? msg_owned : strdup("error: out of memory");
}

void clear_err(sgl_vm *vm)
{
    free(vm->err);
    vm->err = NULL;
}

sgl_vm *sgl_vm_new(void)
{
    sgl_vm *v = calloc(1, sizeof(sgl_vm));
    if (!v) return NULL;
    v->vm = vm_new();
    v->chat = chat_new();
    if (!v->vm || !v->chat || vm_add_natives(v->vm, builtin_table, builtin_count) < 0 ||
        vm_add_natives(v->vm, gen_natives, gen_native_count) < 0) {
        sgl_vm_free(v);
        return NULL;
    }
    vm_set_role_hooks(v->vm, &chat_role_hooks, v->chat);
    vm_set_run_done(v->vm, api_run_done, v);
    return v;
}

void sgl_vm_free(sgl_vm *vm)
{
    if (!vm) return;
    sgl_vm_set_runtime(vm, NULL);
    if (vm->chat) chat_free(vm->vm, vm->chat);
    vm_free(vm->vm);
    free(vm->err);
    free(vm->stdlib_dir);
    free(vm->chat_template);
    free(vm);
}

void sgl_vm_set_backend(sgl_vm *vm, struct RtBackend *backend) { vm_set_backend(vm->vm, backend); }

void sgl_vm_set_output(sgl_vm *vm, void (*write)(void *ud, const char *s, size_t n), void *ud)
{
    vm_set_output(vm->vm, write, ud);
}

void sgl_vm_set_chat_template(sgl_vm *vm, const char *name)
{
    free(vm->chat_template);
    vm->chat_template = name ? strdup(name) : NULL;
}

void sgl_vm_set_progress(sgl_vm *vm, void (*progress)(void *ud, int done, int total), void *ud)
{
    vm->progress = progress;
    vm->progress_ud = ud;
}

void sgl_vm_set_stdlib_path(sgl_vm *vm, const char *dir)
{
    free(vm->stdlib_dir);
    vm->stdlib_dir = dir ? strdup(dir) : NULL;
}

const char *sgl_last_error(const sgl_vm *vm) { return vm->err ? vm->err : ""; }

/* SGL_STDLIB, else the first stdlib/ found walking up from the executable's
 * directory (build/sgl and build/asan/sgl both find the source tree's), else
 * ./stdlib. */
const char *stdlib_dir(sgl_vm *vm)
{
    if (vm->stdlib_dir) return vm->stdlib_dir;
    const char *env = getenv("SGL_STDLIB");
    if (env && *env) {
        vm->stdlib_dir = strdup(env);
        return vm->stdlib_dir;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 16);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash) break;
            *slash = '\0';
            char cand[PATH_MAX + 16];
            snprintf(cand, sizeof cand, "%s/stdlib", exe);
            if (access(cand, R_OK) == 0) {
                vm->stdlib_dir = strdup(cand);
                return vm->stdlib_dir;
            }
        }
    }
    vm->stdlib_dir = strdup("./stdlib");
    return vm->stdlib_dir;
}

/* ---- programs ---- */

static sgl_status adopt(sgl_vm *vm, Program *p, sgl_program **out)
{
    sgl_program *sp = calloc(1, sizeof(sgl_program));
    if (!sp) {
        chunk_program_free(p);
        return fail(vm, SGL_ERR_IO, "error: out of memory");
    }
    sp->prog = p;
    heap_init(&sp->kheap);
    char err[256];
    if (vm_link(vm->vm, p, &sp->kheap, err, sizeof err) < 0) {
        sgl_program_free(sp);
        return fail(vm, SGL_ERR_IO, "error: %s", err);
    }
    *out = sp;
    clear_err(vm);
    return SGL_OK;
}

void cmp_options(sgl_vm *vm, CmpOptions *o)
{
    memset(o, 0, sizeof *o);
    o->stdlib_dir = stdlib_dir(vm);
    o->builtins = vm_builtin_names(vm->vm, &o->nbuiltins);
}

sgl_status sgl_compile_file(sgl_vm *vm, const char *path, sgl_program **out)
{
    *out = NULL;
    CmpOptions o;
    cmp_options(vm, &o);
    Program *p;
    char *err;
    int io = 0;
    if (cmp_compile_file(&o, path, &p, &err, &io) < 0) {
        set_err(vm, err);
        return io ? SGL_ERR_IO : SGL_ERR_COMPILE;
    }
    return adopt(vm, p, out);
}

sgl_status sgl_compile_source(sgl_vm *vm, const char *name, const char *src, size_t len, sgl_program **out)
{
    *out = NULL;
    CmpOptions o;
    cmp_options(vm, &o);
    Program *p;
    char *err;
    if (cmp_compile_source(&o, name ? name : "<source>", src, len, &p, &err) < 0) {
        set_err(vm, err);
        return SGL_ERR_COMPILE;
    }
    return adopt(vm, p, out);
}

sgl_status sgl_program_save(sgl_vm *vm, const sgl_program *prog, const char *path)
{
    char err[512];
    if (sglc_save(prog->prog, path, err, sizeof err) < 0) return fail(vm, SGL_ERR_IO, "%s", err);
    clear_err(vm);
    return SGL_OK;
}

sgl_status sgl_program_load(sgl_vm *vm, const char *path, sgl_program **out)
{
    *out = NULL;
    char err[512];
    Program *p;
    if (sglc_load(path, &p, err, sizeof err) < 0) return fail(vm, SGL_ERR_IO, "%s", err);
    return adopt(vm, p, out);
}

void sgl_program_disasm(const sgl_program *prog, FILE *out) { disasm_program(prog->prog, out); }

void sgl_program_free(sgl_program *prog)
{
    if (!prog) return;
    heap_free_all(&prog->kheap);
    chunk_program_free(prog->prog);
    free(prog);
}

/* ---- result JSON ---- */

static void json_quote(StrBuf *b, const char *s, size_t n)
{
    sb_appendc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sb_append(b, "\\\"", 2); break;
        case '\\': sb_append(b, "\\\\", 2); break;
        case '\n': sb_append(b, "\\n", 2); break;
        case '\r': sb_append(b, "\\r", 2); break;
        case '\t': sb_append(b, "\\t", 2); break;
        case '\b': sb_append(b, "\\b", 2); break;
        case '\f': sb_append(b, "\\f", 2); break;
        default:
            if (c < 0x20) sb_printf(b, "\\u%04x", c);
            else sb_appendc(b, (char)c);
        }
    }
    sb_appendc(b, '"');
}

static void json_value(StrBuf *b, Value v, int depth);

static void json_map(StrBuf *b, const ObjMap *m, int depth)
{
    sb_appendc(b, '{');
    int first = 1;
    for (size_t i = 0; i < m->nentries; i++) {
        const MapEntry *e = &m->entries[i];
        if (!e->live) continue;
        if (!first) sb_appendc(b, ',');
        first = 0;
        if (VAL_IS_STRING(e->key)) {
            json_quote(b, AS_STRING(e->key)->chars, AS_STRING(e->key)->len);
        } else {
            StrBuf k;
            sb_init(&k);
            val_to_text(&k, e->key);
            json_quote(b, k.data ? k.data : "", k.len);
            sb_free(&k);
        }
        sb_appendc(b, ':');
        json_value(b, e->value, depth + 1);
    }
    sb_appendc(b, '}');
}

static void json_value(StrBuf *b, Value v, int depth)
{
    if (depth > 200) {
        sb_append(b, "null", 4);
        return;
    }
    if (v.type != V_OBJ) {
        size_t mark = b->len;
        if (val_to_json(b, v) == 0) return;
        b->len = mark;   /* NaN / infinity: written as their text */
        StrBuf t;
        sb_init(&t);
        val_to_text(&t, v);
        json_quote(b, t.data ? t.data : "", t.len);
        sb_free(&t);
        return;
    }
    switch (v.as.obj->type) {
    case OBJ_STRING: json_quote(b, AS_STRING(v)->chars, AS_STRING(v)->len); return;
    case OBJ_LIST: {
        const ObjList *l = AS_LIST(v);
        sb_appendc(b, '[');
        for (size_t i = 0; i < l->len; i++) {
            if (i) sb_appendc(b, ',');
            json_value(b, l->items[i], depth + 1);
        }
        sb_appendc(b, ']');
        return;
    }
    case OBJ_MAP: json_map(b, AS_MAP(v), depth); return;
    case OBJ_STATE: {
        const ObjState *s = AS_STATE(v);
        sb_append(b, "{\"text\":", 8);
        json_quote(b, s->text ? s->text : "", s->len);
        sb_append(b, ",\"vars\":", 8);
        json_map(b, s->vars, depth + 1);
        sb_appendc(b, '}');
        return;
    }
    default: {
        StrBuf t;
        sb_init(&t);
        val_to_text(&t, v);
        json_quote(b, t.data ? t.data : "", t.len);
        sb_free(&t);
        return;
    }
    }
}

char *result_json(VmRun *r)
{
    StrBuf b;
    sb_init(&b);
    ObjState *s = vm_run_state(r);
    sb_append(&b, "{\"text\":", 8);
    json_quote(&b, s && s->text ? s->text : "", s ? s->len : 0);
    sb_append(&b, ",\"vars\":", 8);
    if (s) json_map(&b, s->vars, 1);
    else sb_append(&b, "{}", 2);
    sb_append(&b, ",\"value\":", 9);
    json_value(&b, vm_run_value(r), 1);
    sb_appendc(&b, '}');
    return b.data;
}

char *error_json(const char *msg)
{
    StrBuf b;
    sb_init(&b);
    sb_append(&b, "{\"error\":", 9);
    json_quote(&b, msg, strlen(msg));
    sb_appendc(&b, '}');
    return b.data;
}

/* ---- running ---- */

/* The chat template for role blocks: the embedder's name (or NULL: the
 * model's), loaded from this VM's stdlib directory on first use. */
int configure_chat(sgl_vm *vm)
{
    return chat_configure(vm->vm, vm->chat, vm->chat_template, stdlib_dir(vm));
}

/* Finds the entry: the global slot of function `fn` in module 0 and its
 * prototype; -1 for "top level only" (no main, fn not given). */
sgl_status find_entry(sgl_vm *vm, const Program *p, const char *fn, int *slot, const Proto **proto)
{
    const Module *m = &p->mods[0];
    const char *name = fn ? fn : "main";
    int g = chunk_find_global(m, name);
    if (g >= 0 && m->global_fn[g] >= 0) {
        *slot = g;
        *proto = p->protos[m->global_fn[g]];
        return SGL_OK;
    }
    if (!fn && m->has_code) {
        *slot = -1;
        *proto = NULL;
        return SGL_OK;
    }
    if (fn) return fail(vm, SGL_ERR_USAGE, "error: no function '%s' in %s", fn, m->file);
    return fail(vm, SGL_ERR_USAGE, "error: %s has no main function (pass --fn NAME to run another)", m->file);
}

/* Decodes args JSON into parameter order. On a usage error returns a
 * malloc'd message. */
char *bind_args(sgl_vm *vm, const Proto *proto, const char *args_json, Value *args, uint64_t *mask)
{
    *mask = 0;
    int nparams = proto ? proto->nparams : 0;
    for (int i = 0; i < nparams; i++) args[i] = val_nil();
    const char *fname = proto ? proto->name : "the program";
    char err[512];
    if (args_json && *args_json) {
        Value v;
        char jerr[256];
        if (json_decode(vm_heap(vm->vm), args_json, strlen(args_json), &v, jerr, sizeof jerr) < 0) {
            snprintf(err, sizeof err, "error: bad arguments JSON: %s", jerr);
            return strdup(err);
        }
        if (!VAL_IS_MAP(v)) {
            snprintf(err, sizeof err, "error: arguments must be a JSON object, not %s", val_type_name(v));
            return strdup(err);
        }
        ObjMap *m = AS_MAP(v);
        for (size_t e = 0; e < m->nentries; e++) {
            if (!m->entries[e].live) continue;
            const char *key = AS_STRING(m->entries[e].key)->chars;
            int idx = -1;
            for (int i = 0; i < nparams; i++)
                if (strcmp(proto->param_names[i], key) == 0) { idx = i; break; }
            if (idx < 0) {
                if (!proto) snprintf(err, sizeof err, "error: the program has no main function to take argument '%s'", key);
                else snprintf(err, sizeof err, "error: %s() has no parameter '%s'", fname, key);
                return strdup(err);
            }
            args[idx] = m->entries[e].value;
            *mask |= (uint64_t)1 << idx;
        }
    }
    if (proto) {
        uint64_t missing = proto->required & ~*mask;
        if (missing) {
            int i = __builtin_ctzll(missing);
            snprintf(err, sizeof err, "error: %s() missing argument '%s'", fname, proto->param_names[i]);
            return strdup(err);
        }
    }
    return NULL;
}

sgl_status sgl_run(sgl_vm *vm, sgl_program *prog, const char *fn, const char *args_json, char **result_json_out)
{
    if (result_json_out) *result_json_out = NULL;
    sgl_task *t;
    sgl_status st = sgl_task_start(vm, prog, fn, args_json, NULL, NULL, &t);
    if (st != SGL_OK) return st;
    drive(vm);
    char *res = NULL;
    st = sgl_task_result(t, &res);
    if (st != SGL_OK) fail(vm, st, "%s", sgl_task_error(t));
    else clear_err(vm);
    if (result_json_out) *result_json_out = res;
    else free(res);
    sgl_task_free(t);
    return st;
}

typedef struct {
    ApiRunHook hook;
    sgl_vm *vm;
    int done, total;
} BatchProgress;

static void batch_step(void *ud)
{
    BatchProgress *bp = ud;
    bp->done++;
    if (bp->vm->progress) bp->vm->progress(bp->vm->progress_ud, bp->done, bp->total);
}

static void batch_run_done(ApiRunHook *h, VmRun *r)
{
    (void)r;
    batch_step(h);
}

sgl_status sgl_run_batch(sgl_vm *vm, sgl_program *prog, const char *fn, const char *const *args_json_list, int count,
                         char **results_json)
{
    int slot;
    const Proto *proto;
    for (int i = 0; i < count; i++) results_json[i] = NULL;
    sgl_status st = find_entry(vm, prog->prog, fn, &slot, &proto);
    if (st != SGL_OK) return st;
    VmRun **runs = calloc((size_t)(count > 0 ? count : 1), sizeof(VmRun *));
    if (!runs || configure_chat(vm) < 0) {
        free(runs);
        return fail(vm, SGL_ERR_RUNTIME, "error: out of memory");
    }
    /* progress: an instance that cannot start counts as finished at once */
    BatchProgress bp = {{batch_run_done}, vm, 0, count};
    /* every instance is created before any runs, so all run as concurrent fibers */
    for (int i = 0; i < count; i++) {
        Value args[64];
        uint64_t mask;
        char *uerr = bind_args(vm, proto, args_json_list[i], args, &mask);
        if (uerr) {
            results_json[i] = error_json(uerr);
            free(uerr);
            batch_step(&bp);
            continue;
        }
        runs[i] = vm_run_new(vm->vm, prog->prog, slot, args, proto ? proto->nparams : 0, mask, &bp.hook);
        if (!runs[i]) {
            results_json[i] = error_json("error: out of memory");
            batch_step(&bp);
        }
    }
    drive(vm);
    for (int i = 0; i < count; i++) {
        if (!runs[i]) continue;
        results_json[i] = vm_run_failed(runs[i]) ? error_json(vm_run_error(runs[i])) : result_json(runs[i]);
        vm_run_free(vm->vm, runs[i]);
    }
    free(runs);
    clear_err(vm);
    return SGL_OK;
}
