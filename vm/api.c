/*
 * vm/api.c — include/sgl.h: the embedding API over the compiler (compiler/)
 * and the VM (vm/vm.h).
 *
 * Owns: sgl_vm (a VM, its last error, the stdlib path, the last result's
 * text), sgl_program (a compiled Program plus the heap holding its
 * constants as values) and sgl_args (arguments as values on a heap of
 * their own). All JSON goes through vm/json.h: argument texts are read by
 * json_decode, results written by json_encode in JSON_RESULT mode.
 *
 * Before each run the VM is told the chat template to use (the embedder's
 * name, or NULL: the model's) and the stdlib directory to load it from
 * (vm/chat.h); sgl_run_batch reports progress from the VM's run-done hook.
 */
#include "include/sgl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
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
    err_vfmt(buf, sizeof buf, fmt, ap);
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
    free(vm->result_text);
    free(vm);
}

void sgl_vm_set_backend(sgl_vm *vm, struct RtBackend *backend) { vm_set_backend(vm->vm, backend); }

void sgl_vm_set_events(sgl_vm *vm, sgl_event_fn fn, void *ud)
{
    vm->events = fn;
    vm->events_ud = fn ? ud : NULL;
    vm_set_events(vm->vm, fn ? api_event : NULL, vm);
}

void api_event(void *ud, const VmEvent *ev)
{
    sgl_vm *vm = ud;
    if (!vm->events) return;
    ApiRunHook *h = vm_run_ud(ev->run);
    sgl_event out = {
        .kind = ev->kind == VM_EV_TEXT ? SGL_EV_TEXT : SGL_EV_VAR,
        .task = h ? h->task : NULL,
        .branch = ev->branch,
        .name = ev->name,
        .data = ev->data,
        .len = ev->len,
    };
    vm->events(vm->events_ud, &out);
}

void sgl_vm_set_limits(sgl_vm *vm, uint64_t max_steps, size_t max_heap) { vm_set_limits(vm->vm, max_steps, max_heap); }

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

char *sgl_program_signature_json(const sgl_program *prog)
{
    const Program *p = prog->prog;
    const Module *m = &p->mods[0];
    StrBuf b;
    sb_init(&b);
    sb_appends(&b, "{\"functions\":[");
    int nfn = 0;
    for (int g = 0; g < m->nglobals; g++) {
        if (m->global_fn[g] < 0) continue;
        const Proto *f = p->protos[m->global_fn[g]];
        if (nfn++) sb_appendc(&b, ',');
        sb_appends(&b, "{\"name\":");
        json_quote(&b, m->globals[g], strlen(m->globals[g]));
        sb_appends(&b, ",\"params\":[");
        for (int i = 0; i < f->nparams; i++) {
            if (i) sb_appendc(&b, ',');
            sb_appends(&b, "{\"name\":");
            json_quote(&b, f->param_names[i], strlen(f->param_names[i]));
            const char *d = f->param_defaults ? f->param_defaults[i] : NULL;
            /* the compiler's "J" + JSON of a literal, or "E" + source text */
            if (!(f->required >> i & 1) && d && d[0] == 'J') {
                sb_appends(&b, ",\"default\":");
                sb_appends(&b, d + 1);
            } else if (!(f->required >> i & 1) && d && d[0] == 'E') {
                sb_appends(&b, ",\"default_expr\":");
                json_quote(&b, d + 1, strlen(d + 1));
            }
            sb_appendc(&b, '}');
        }
        sb_appends(&b, "]}");
    }
    sb_appends(&b, "]}");
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    return sb_detach(&b);
}

void sgl_program_free(sgl_program *prog)
{
    if (!prog) return;
    heap_free_all(&prog->kheap);
    chunk_program_free(prog->prog);
    free(prog);
}

/* ---- result JSON (written by vm/json.h in JSON_RESULT mode) ---- */

char *result_json(VmRun *r)
{
    StrBuf b;
    sb_init(&b);
    ObjState *s = vm_run_state(r);
    sb_appends(&b, "{\"text\":");
    json_quote(&b, s && s->text ? s->text : "", s ? s->len : 0);
    sb_appends(&b, ",\"vars\":");
    if (s && s->vars) json_encode(&b, val_obj(s->vars), JSON_RESULT, NULL);
    else sb_append(&b, "{}", 2);
    sb_appends(&b, ",\"value\":");
    json_encode(&b, vm_run_value(r), JSON_RESULT, NULL);
    sb_appendc(&b, '}');
    return sb_detach(&b);
}

char *error_json(const char *msg)
{
    StrBuf b;
    sb_init(&b);
    sb_appends(&b, "{\"error\":");
    json_quote(&b, msg, strlen(msg));
    sb_appendc(&b, '}');
    return sb_detach(&b);
}

/* Keeps a copy of the final state's text for sgl_result_text. */
static void keep_text(sgl_vm *vm, VmRun *r)
{
    ObjState *s = vm_run_state(r);
    free(vm->result_text);
    vm->result_len = s && s->text ? s->len : 0;
    vm->result_text = malloc(vm->result_len + 1);
    if (!vm->result_text) {
        vm->result_len = 0;
        return;
    }
    if (vm->result_len) memcpy(vm->result_text, s->text, vm->result_len);
    vm->result_text[vm->result_len] = '\0';
}

const char *sgl_result_text(const sgl_vm *vm, size_t *len)
{
    if (len) *len = vm->result_text ? vm->result_len : 0;
    return vm->result_text ? vm->result_text : "";
}

/* ---- arguments ---- */

struct sgl_args {
    Heap heap;       /* every value below (and garbage of failed loads); never
                        collected, freed whole by sgl_args_free */
    ObjMap *map;     /* name -> value, in the order first set */
    char *err;       /* message of the last failed call, or NULL; malloc'd */
};

static sgl_status args_fail(sgl_args *a, sgl_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static sgl_status args_fail(sgl_args *a, sgl_status st, const char *fmt, ...)
{
    StrBuf b;
    sb_init(&b);
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&b, fmt, ap);
    va_end(ap);
    free(a->err);
    a->err = sb_detach(&b);
    return st;
}

sgl_args *sgl_args_new(void)
{
    sgl_args *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    heap_init(&a->heap);
    a->map = map_new(&a->heap);
    if (!a->map) {
        sgl_args_free(a);
        return NULL;
    }
    return a;
}

void sgl_args_free(sgl_args *args)
{
    if (!args) return;
    heap_free_all(&args->heap);
    free(args->err);
    free(args);
}

const char *sgl_args_error(const sgl_args *args) { return args->err ? args->err : ""; }

sgl_status sgl_args_set(sgl_args *args, const char *name, const char *value_text)
{
    size_t nlen = strlen(name), vlen = strlen(value_text);
    if (!utf8_valid(name, nlen)) return args_fail(args, SGL_ERR_USAGE, "argument name is not valid UTF-8");
    Value v;
    JsonError jerr;
    if (json_decode(&args->heap, value_text, vlen, &v, &jerr) < 0) {
        /* not JSON: the text itself, as a string */
        if (!utf8_valid(value_text, vlen))
            return args_fail(args, SGL_ERR_USAGE, "argument '%s' is not valid UTF-8", name);
        ObjString *s = str_new(&args->heap, value_text, vlen);
        if (!s) return args_fail(args, SGL_ERR_USAGE, "out of memory");
        v = val_obj(s);
    }
    ObjString *key = str_new(&args->heap, name, nlen);
    if (!key) return args_fail(args, SGL_ERR_USAGE, "out of memory");
    map_set(args->map, val_obj(key), v);
    return SGL_OK;
}

sgl_status sgl_args_load_json(sgl_args *args, const char *name, const char *text, size_t len)
{
    Value v;
    JsonError jerr;
    if (json_decode(&args->heap, text, len, &v, &jerr) < 0)
        return args_fail(args, SGL_ERR_USAGE, "%s:%d:%d: error: %s", name, jerr.line, jerr.col, jerr.msg);
    if (!VAL_IS_MAP(v))
        return args_fail(args, SGL_ERR_USAGE, "%s: error: arguments must be a JSON object, not %s", name,
                         val_type_name(v));
    const ObjMap *m = AS_MAP(v);
    for (size_t i = 0; i < m->nentries; i++)
        if (m->entries[i].live && !map_get(args->map, m->entries[i].key, NULL))
            map_set(args->map, m->entries[i].key, m->entries[i].value);
    return SGL_OK;
}

sgl_status sgl_args_load_file(sgl_args *args, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return args_fail(args, SGL_ERR_IO, "%s: error: %s", path, strerror(errno));
    StrBuf b;
    sb_init(&b);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) sb_append(&b, chunk, n);
    int bad = ferror(f) || b.oom;   /* a directory, say, fails here */
    int saved = errno;
    fclose(f);
    if (bad) {
        sb_free(&b);
        return args_fail(args, SGL_ERR_IO, "%s: error: %s", path, strerror(saved ? saved : ENOMEM));
    }
    sgl_status st = sgl_args_load_json(args, path, b.data ? b.data : "", b.len);
    sb_free(&b);
    return st;
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

/* Binds the entries of m (name -> value, or NULL for none) to the
 * parameters of proto. On a usage error returns a malloc'd message. */
static char *bind_map(const Proto *proto, const ObjMap *m, Value *args, uint64_t *mask)
{
    *mask = 0;
    int nparams = proto ? proto->nparams : 0;
    for (int i = 0; i < nparams; i++) args[i] = val_nil();
    const char *fname = proto ? proto->name : "the program";
    char err[512];
    for (size_t e = 0; m && e < m->nentries; e++) {
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

/* Decodes args JSON (NULL or "" = none) onto the VM heap and binds it. */
char *bind_args(sgl_vm *vm, const Proto *proto, const char *args_json, Value *args, uint64_t *mask)
{
    if (!args_json || !*args_json) return bind_map(proto, NULL, args, mask);
    Value v;
    JsonError jerr;
    char err[512];
    if (json_decode(vm_heap(vm->vm), args_json, strlen(args_json), &v, &jerr) < 0) {
        snprintf(err, sizeof err, "error: bad arguments JSON at line %d, column %d: %s", jerr.line, jerr.col, jerr.msg);
        return strdup(err);
    }
    if (!VAL_IS_MAP(v)) {
        snprintf(err, sizeof err, "error: arguments must be a JSON object, not %s", val_type_name(v));
        return strdup(err);
    }
    return bind_map(proto, AS_MAP(v), args, mask);
}

/* Runs one instance to its end; its arguments are bound already. */
static sgl_status run_bound(sgl_vm *vm, sgl_program *prog, int slot, const Proto *proto, Value *args, uint64_t mask,
                            char **result_json_out)
{
    sgl_task *t;
    sgl_status st = task_start_bound(vm, prog, slot, proto, args, mask, NULL, NULL, &t);
    if (st != SGL_OK) return st;
    task_hide(t);
    drive(vm);
    char *res = NULL;
    st = sgl_task_result(t, &res);
    if (st != SGL_OK) {
        fail(vm, st, "%s", sgl_task_error(t));
    } else {
        clear_err(vm);
        keep_text(vm, task_run(t));
    }
    if (result_json_out) *result_json_out = res;
    else free(res);
    sgl_task_free(t);
    return st;
}

sgl_status bind_call(sgl_vm *vm, sgl_program *prog, const char *fn, const char *args_json, int *slot,
                     const Proto **proto, Value *args, uint64_t *mask)
{
    sgl_status st = find_entry(vm, prog->prog, fn, slot, proto);
    if (st != SGL_OK) return st;
    char *uerr = bind_args(vm, *proto, args_json, args, mask);
    if (uerr) {
        set_err(vm, uerr);
        return SGL_ERR_USAGE;
    }
    return SGL_OK;
}

sgl_status sgl_run(sgl_vm *vm, sgl_program *prog, const char *fn, const char *args_json, char **result_json_out)
{
    if (result_json_out) *result_json_out = NULL;
    int slot;
    const Proto *proto;
    Value args[64];
    uint64_t mask;
    sgl_status st = bind_call(vm, prog, fn, args_json, &slot, &proto, args, &mask);
    if (st != SGL_OK) return st;
    return run_bound(vm, prog, slot, proto, args, mask, result_json_out);
}

sgl_status sgl_run_args(sgl_vm *vm, sgl_program *prog, const char *fn, const sgl_args *in, char **result_json_out)
{
    if (result_json_out) *result_json_out = NULL;
    int slot;
    const Proto *proto;
    sgl_status st = find_entry(vm, prog->prog, fn, &slot, &proto);
    if (st != SGL_OK) return st;
    /* a copy on the VM heap: the program may change what it is given, and
     * the same sgl_args may start another run */
    Value copy = val_nil();
    if (in && json_copy(vm_heap(vm->vm), val_obj(in->map), &copy) < 0)
        return fail(vm, SGL_ERR_RUNTIME, "error: out of memory");
    Value args[64];
    uint64_t mask;
    char *uerr = bind_map(proto, in ? AS_MAP(copy) : NULL, args, &mask);
    if (uerr) {
        set_err(vm, uerr);
        return SGL_ERR_USAGE;
    }
    return run_bound(vm, prog, slot, proto, args, mask, result_json_out);
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
