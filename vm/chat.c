/*
 * vm/chat.c — chat templates for role blocks (see vm/chat.h for the rules).
 *
 * A template is an ordinary SGL module, compiled here from
 * <stdlib>/chat/NAME.sgl into its own Program (constants linked onto a
 * heap of ours), instantiated once as an auxiliary run of the VM, and
 * called through vm_call_now on the fiber's state whenever a role block
 * opens or closes. The detector (detect.sgl) is loaded the same way, only
 * when the name has to come from the model.
 */
#include "vm/chat.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compiler/compile.h"
#include "vm/vm.h"

/* A module of stdlib/chat/ loaded into the VM. */
typedef struct {
    Program *prog;
    Heap kheap;             /* the program's constants */
    VmRun *run;             /* its instance (auxiliary run) */
    ObjModule *mod;
} Loaded;

struct Chat {
    char *name;             /* configured name, or NULL: from the model */
    char *stdlib_dir;
    int resolved;           /* the choice is made (tmpl.run NULL: no template) */
    Loaded tmpl;
    char *tmpl_name;
    Value role_begin, role_end;   /* closures, reachable from tmpl.mod */
    char *bos, *end_of_turn;
    Loaded detect;
};


Chat *chat_new(void) { return calloc(1, sizeof(Chat)); }

static void unload(VM *vm, Loaded *l)
{
    if (l->run) vm_aux_free(vm, l->run);
    if (l->prog) {
        chunk_program_free(l->prog);
        heap_free_all(&l->kheap);
    }
    memset(l, 0, sizeof *l);
}

void chat_reset(VM *vm, Chat *c)
{
    unload(vm, &c->tmpl);
    unload(vm, &c->detect);
    free(c->tmpl_name);
    free(c->bos);
    free(c->end_of_turn);
    c->tmpl_name = c->bos = c->end_of_turn = NULL;
    c->role_begin = c->role_end = val_nil();
    c->resolved = 0;
}

void chat_free(VM *vm, Chat *c)
{
    if (!c) return;
    chat_reset(vm, c);
    free(c->name);
    free(c->stdlib_dir);
    free(c);
}

static int same(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

int chat_configure(VM *vm, Chat *c, const char *name, const char *stdlib_dir)
{
    if (same(c->name, name) && same(c->stdlib_dir, stdlib_dir)) return 0;
    chat_reset(vm, c);
    free(c->name);
    free(c->stdlib_dir);
    c->name = name ? strdup(name) : NULL;
    c->stdlib_dir = stdlib_dir ? strdup(stdlib_dir) : NULL;
    return (name && !c->name) || (stdlib_dir && !c->stdlib_dir) ? -1 : 0;
}

const char *chat_end_of_turn(const Chat *c)
{
    return c && c->resolved && c->end_of_turn && *c->end_of_turn ? c->end_of_turn : NULL;
}

/* ---- finding and loading modules ---- */

static const char *dir_of(const Chat *c) { return c->stdlib_dir ? c->stdlib_dir : "stdlib"; }

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* "chatml, llama2, ..." — the templates in <stdlib>/chat/, sorted. */
static void list_available(const Chat *c, char *buf, size_t cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/chat", dir_of(c));
    buf[0] = '\0';
    DIR *d = opendir(path);
    if (!d) {
        snprintf(buf, cap, "none: no directory %.300s", path);
        return;
    }
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".sgl") != 0 || e->d_name[0] == '.') continue;
        if (strcmp(e->d_name, "detect.sgl") == 0) continue;
        names[n] = strndup(e->d_name, len - 4);
        if (names[n]) n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_names);
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", names[i]);
        if (w > 0 && (size_t)w < cap - used) used += (size_t)w;
        free(names[i]);
    }
    if (n == 0) snprintf(buf, cap, "none in %.300s", path);
}

/* A template name is a plain file name: no paths, no dots. */
static int name_ok(const char *name)
{
    if (!*name || strlen(name) > 64 || strcmp(name, "detect") == 0) return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* Compiles, links and instantiates <stdlib>/chat/<base>.sgl. */
static int load(VM *vm, Chat *c, const char *base, Loaded *l)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/chat/%s.sgl", dir_of(c), base);
    CmpOptions o;
    memset(&o, 0, sizeof o);
    o.stdlib_dir = c->stdlib_dir;
    o.builtins = vm_builtin_names(vm, &o.nbuiltins);
    char *err = NULL;
    int io = 0;
    Program *p = NULL;
    if (cmp_compile_file(&o, path, &p, &err, &io) < 0) {
        vm_raise(vm, "cannot load the chat template %s: %s", path, err ? err : "out of memory");
        free(err);
        return -1;
    }
    l->prog = p;
    heap_init(&l->kheap);
    char lerr[256];
    if (vm_link(vm, p, &l->kheap, lerr, sizeof lerr) < 0) {
        unload(vm, l);
        return vm_raise(vm, "cannot load the chat template %s: %s", path, lerr);
    }
    l->run = vm_aux_new(vm, p, &l->mod);
    if (!l->run) {
        unload(vm, l);
        return -1;
    }
    return 0;
}

static int export_fn(VM *vm, const Chat *c, const char *what, Value *out)
{
    if (!map_get_cstr(c->tmpl.mod->exports, what, out) || !val_is_obj_type(*out, OBJ_CLOSURE))
        return vm_raise(vm, "chat template '%s' has no function %s(role)", c->tmpl_name, what);
    return 0;
}

static int export_str(VM *vm, const Chat *c, const char *what, char **out)
{
    Value v = val_nil();
    map_get_cstr(c->tmpl.mod->exports, what, &v);
    if (v.type != V_NIL && !VAL_IS_STRING(v))
        return vm_raise(vm, "chat template '%s': %s must be a string, not %s", c->tmpl_name, what, val_type_name(v));
    *out = strdup(VAL_IS_STRING(v) ? AS_STRING(v)->chars : "");
    return *out ? 0 : vm_raise(vm, "out of memory");
}

static int load_template(VM *vm, Chat *c, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/chat/%s.sgl", dir_of(c), name);
    if (!name_ok(name) || access(path, R_OK) != 0) {
        char avail[512];
        list_available(c, avail, sizeof avail);
        return vm_raise(vm, "unknown chat template '%s' (available: %s)", name, avail);
    }
    if (load(vm, c, name, &c->tmpl) < 0) return -1;
    c->tmpl_name = strdup(name);
    if (!c->tmpl_name) return vm_raise(vm, "out of memory");
    if (export_fn(vm, c, "role_begin", &c->role_begin) < 0 || export_fn(vm, c, "role_end", &c->role_end) < 0 ||
        export_str(vm, c, "bos", &c->bos) < 0 || export_str(vm, c, "end_of_turn", &c->end_of_turn) < 0)
        return -1;
    return 0;
}

/* The name from the model: detect(backend->chat_template()). *name is a
 * malloc'd name, or NULL for none. */
static int detect_name(VM *vm, Chat *c, char **name)
{
    *name = NULL;
    RtBackend *be = vm_backend(vm);
    const char *jinja = be && be->chat_template ? be->chat_template(be->ctx) : NULL;
    if (!jinja || !*jinja) return 0;
    if (!c->detect.run && load(vm, c, "detect", &c->detect) < 0) return -1;
    Value fn = val_nil();
    if (!map_get_cstr(c->detect.mod->exports, "detect", &fn))
        return vm_raise(vm, "stdlib/chat/detect.sgl has no function detect(jinja_template)");
    ObjString *arg = str_cstr(vm_heap(vm), jinja);
    if (!arg) return vm_raise(vm, "out of memory");
    Value a = val_obj(arg), res;
    if (vm_call_now(vm, c->detect.run, NULL, fn, &a, 1, &res) < 0) return -1;
    if (res.type == V_NIL) return 0;
    if (!VAL_IS_STRING(res))
        return vm_raise(vm, "stdlib/chat/detect.sgl: detect() returned %s, not a template name", val_type_name(res));
    *name = strdup(AS_STRING(res)->chars);
    return *name ? 0 : vm_raise(vm, "out of memory");
}

/* Makes the choice once; on an error nothing is kept, so the next role
 * block tries again (and fails the same way). */
static int resolve(VM *vm, Chat *c)
{
    if (c->resolved) return 0;
    char *detected = NULL;
    const char *name = c->name;
    if (!name) {
        if (detect_name(vm, c, &detected) < 0) return -1;
        name = detected;
    }
    int rc = name ? load_template(vm, c, name) : 0;
    free(detected);
    if (rc < 0) {
        unload(vm, &c->tmpl);
        free(c->tmpl_name);
        free(c->bos);
        free(c->end_of_turn);
        c->tmpl_name = c->bos = c->end_of_turn = NULL;
        c->role_begin = c->role_end = val_nil();
        return -1;
    }
    c->resolved = 1;
    return 0;
}

/* Appends fn(role)'s text to st. */
static int marker(VM *vm, Chat *c, Value fn, const char *what, ObjState *st, int role)
{
    ObjString *r = str_cstr(vm_heap(vm), role_name((Role)role));
    if (!r) return vm_raise(vm, "out of memory");
    Value a = val_obj(r), res;
    if (vm_call_now(vm, c->tmpl.run, st, fn, &a, 1, &res) < 0) return -1;
    if (VAL_IS_STRING(res)) {
        state_append(st, AS_STRING(res)->chars, AS_STRING(res)->len);
        return 0;
    }
    if (res.type == V_NIL) return 0;
    return vm_raise(vm, "chat template '%s': %s(\"%s\") returned %s, not a string", c->tmpl_name, what,
                    role_name((Role)role), val_type_name(res));
}

int chat_open(VM *vm, Chat *c, ObjState *st, int role)
{
    if (resolve(vm, c) < 0) return -1;
    if (!c->tmpl.run) return 0;
    if (st->len == 0 && c->bos && *c->bos) state_append(st, c->bos, strlen(c->bos));
    return marker(vm, c, c->role_begin, "role_begin", st, role);
}

int chat_close(VM *vm, Chat *c, ObjState *st, int role)
{
    if (resolve(vm, c) < 0) return -1;
    if (!c->tmpl.run) return 0;
    return marker(vm, c, c->role_end, "role_end", st, role);
}

/* ---- the VM's role hooks ---- */

static int hook_open(void *ud, VM *vm, ObjState *st, int role) { return chat_open(vm, ud, st, role); }
static int hook_close(void *ud, VM *vm, ObjState *st, int role) { return chat_close(vm, ud, st, role); }
static const char *hook_end_of_turn(void *ud) { return chat_end_of_turn(ud); }
static void hook_backend_changed(void *ud, VM *vm) { chat_reset(vm, ud); }

const VmRoleHooks chat_role_hooks = {hook_open, hook_close, hook_end_of_turn, hook_backend_changed};
