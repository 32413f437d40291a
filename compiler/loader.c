/*
 * compiler/loader.c — the compiler's entry points and everything that
 * touches files: reading sources, resolving import specs ("std/x", a
 * relative or absolute path) to files, loading each module once (parse,
 * then compile.c's compile_tree), import cycles and depth, and sessions
 * (more top-level code compiled into a live program's module 0).
 */
#include "compiler/compile_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* modules and imports                                                 */

static int compile_module(Comp *c, const char *path, const char *file, char *src, size_t len,
                          const ModCtx *from, const AstNode *from_at);

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Directory part of a path ("." when none). malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        char *d = malloc(2);
        if (d) strcpy(d, ".");
        return d;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1;
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n + 1 < cap) {
            if (ferror(f)) { free(buf); buf = NULL; }
            break;
        }
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) { free(buf); buf = NULL; }
        buf = nb;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = '\0';
    *len = n;
    return buf;
}

const char *import_default_name(const char *spec, char *buf, size_t cap)
{
    const char *base = strrchr(spec, '/');
    base = base ? base + 1 : spec;
    size_t n = strlen(base);
    if (n > 4 && strcmp(base + n - 4, ".sgl") == 0) n -= 4;
    if (n == 0 || n >= cap) return NULL;
    memcpy(buf, base, n);
    buf[n] = '\0';
    if (!((buf[0] >= 'a' && buf[0] <= 'z') || (buf[0] >= 'A' && buf[0] <= 'Z') || buf[0] == '_')) return NULL;
    for (size_t i = 1; i < n; i++) {
        char ch = buf[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return NULL;
    }
    return buf;
}

int import_module(Comp *c, const ModCtx *mc, const AstNode *s)
{
    const char *spec = s->str;
    char display[4096];
    if (strncmp(spec, "std/", 4) == 0) {
        const char *dir = c->opt->stdlib_dir ? c->opt->stdlib_dir : "stdlib";
        snprintf(display, sizeof display, "%s/%s%s", dir, spec + 4, ends_with(spec, ".sgl") ? "" : ".sgl");
    } else if (spec[0] == '/') {
        snprintf(display, sizeof display, "%s", spec);
    } else {
        char *dir = dir_of(mc->path);
        if (!dir) error_mc(c, mc, s->line, s->col, "out of memory");
        const char *rel = spec;
        if (strcmp(dir, ".") == 0) snprintf(display, sizeof display, "%s", rel);
        else snprintf(display, sizeof display, "%s/%s", dir, rel);
        free(dir);
    }
    char *real = realpath(display, NULL);
    if (!real) error_mc(c, mc, s->line, s->col, "cannot import \"%s\": no file %s", spec, display);
    int idx = chunk_find_module(c->prog, real);
    if (idx >= 0) {
        free(real);
        if (!c->prog->mods[idx].init)
            error_mc(c, mc, s->line, s->col, "import cycle: \"%s\" imports itself through its imports", spec);
        return idx;
    }
    if (c->nloaded >= MAX_IMPORT_DEPTH) {
        free(real);
        error_mc(c, mc, s->line, s->col, "imports nested too deeply");
    }
    size_t len = 0;
    char *src = read_file(real, &len);
    if (!src) {
        free(real);
        error_mc(c, mc, s->line, s->col, "cannot import \"%s\": cannot read %s", spec, display);
    }
    /* `real` must stay valid while the module compiles: keep it in a Loaded slot */
    int r = compile_module(c, real, display, src, len, mc, s);
    free(real);
    return r;
}

static int compile_module(Comp *c, const char *path, const char *file, char *src, size_t len,
                          const ModCtx *from, const AstNode *from_at)
{
    Loaded *ld = &c->loaded[c->nloaded++];
    memset(ld, 0, sizeof *ld);
    ld->src = src;
    int mod = chunk_add_module(c->prog, path, file);
    if (mod < 0) {
        if (from) error_mc(c, from, from_at->line, from_at->col, "out of memory");
        c->plain_err = NULL;
        longjmp(c->jb, 1);
    }
    Module *m = &c->prog->mods[mod];
    ModCtx mc = {.file = m->file, .path = m->path, .src = src, .len = len, .mod = mod};
    Diag d = {0};
    if (parse_source(m->file, src, len, &ld->tree, &d) != 0) {
        diag_clear(&c->diag);
        c->diag = d;
        c->has_diag = 1;
        longjmp(c->jb, 1);
    }
    ld->has_tree = 1;
    compile_tree(c, &mc, ld->tree.root);
    ast_free(&ld->tree);
    ld->has_tree = 0;
    free(ld->src);
    ld->src = NULL;
    c->nloaded--;
    return mod;
}

/* ------------------------------------------------------------------ */
/* entry points                                                        */

static void comp_cleanup(Comp *c)
{
    for (int i = 0; i < c->nloaded; i++) {
        if (c->loaded[i].has_tree) ast_free(&c->loaded[i].tree);
        free(c->loaded[i].src);
    }
    c->nloaded = 0;
}

static int comp_fail(Comp *c, char **err)
{
    comp_cleanup(c);
    chunk_program_free(c->prog);
    c->prog = NULL;
    if (c->has_diag) {
        *err = diag_format(&c->diag);
        diag_clear(&c->diag);
    } else if (c->plain_err) {
        *err = c->plain_err;
        c->plain_err = NULL;
    } else {
        *err = malloc(32);
        if (*err) strcpy(*err, "error: out of memory");
    }
    return -1;
}

/* Compiles the source buffer `src` (malloc'd, taken over) as module 0. */
static int compile_main(const CmpOptions *opt, const char *path, const char *file, char *src, size_t len,
                        Program **out, char **err)
{
    Comp *c = calloc(1, sizeof(Comp));
    if (!c) {
        free(src);
        *err = NULL;
        return -1;
    }
    c->opt = opt;
    c->prog = chunk_program_new();
    if (!c->prog) {
        free(src);
        free(c);
        *err = NULL;
        return -1;
    }
    *out = NULL;
    *err = NULL;
    if (setjmp(c->jb)) {
        int r = comp_fail(c, err);
        free(c);
        return r;
    }
    compile_module(c, path, file, src, len, NULL, NULL);
    *out = c->prog;
    free(c);
    return 0;
}

int cmp_compile_source(const CmpOptions *opt, const char *file, const char *src, size_t len,
                       Program **out, char **err)
{
    char *copy = malloc(len + 1);
    if (!copy) { *err = NULL; return -1; }
    memcpy(copy, src, len);
    copy[len] = '\0';
    char *real = realpath(file, NULL);
    int r = compile_main(opt, real ? real : file, file, copy, len, out, err);
    free(real);
    return r;
}

int cmp_compile_file(const CmpOptions *opt, const char *path, Program **out, char **err, int *io_error)
{
    *io_error = 0;
    *out = NULL;
    size_t len = 0;
    char *src = read_file(path, &len);
    if (!src) {
        *io_error = 1;
        size_t n = strlen(path) + 64;
        *err = malloc(n);
        if (*err) snprintf(*err, n, "%s: error: cannot read file", path);
        return -1;
    }
    char *real = realpath(path, NULL);
    int r = compile_main(opt, real ? real : path, path, src, len, out, err);
    free(real);
    return r;
}

int cmp_compile_tree(const CmpOptions *opt, const AstTree *tree, const char *src, size_t len,
                     Program **out, char **err)
{
    Comp *c = calloc(1, sizeof(Comp));
    if (!c) { *err = NULL; return -1; }
    c->opt = opt;
    c->prog = chunk_program_new();
    *out = NULL;
    *err = NULL;
    if (!c->prog) {
        free(c);
        return -1;
    }
    if (setjmp(c->jb)) {
        int r = comp_fail(c, err);
        free(c);
        return r;
    }
    const char *file = tree->file ? tree->file : "<tree>";
    int mod = chunk_add_module(c->prog, file, file);
    if (mod < 0) longjmp(c->jb, 1);
    ModCtx mc = {.file = c->prog->mods[mod].file, .path = c->prog->mods[mod].path,
                 .src = src, .len = len, .mod = mod};
    compile_tree(c, &mc, tree->root);
    *out = c->prog;
    free(c);
    return 0;
}

/* ------------------------------------------------------------------ */
/* sessions                                                            */

Program *cmp_session_program(const char *file)
{
    Program *p = chunk_program_new();
    if (!p) return NULL;
    char *cwd = realpath(".", NULL);
    size_t n = (cwd ? strlen(cwd) : 1) + strlen(file) + 2;
    char *path = malloc(n);
    if (path) snprintf(path, n, "%s/%s", cwd ? cwd : ".", file);
    free(cwd);
    int mod = path ? chunk_add_module(p, path, file) : -1;
    free(path);
    if (mod != 0) {
        chunk_program_free(p);
        return NULL;
    }
    return p;
}

/* Parses and compiles one chunk (its source in c->loaded[0]) into module 0. */
static int compile_chunk(Comp *c, char *src, size_t len)
{
    if (setjmp(c->jb)) return -1;
    Module *m0 = &c->prog->mods[0];
    Loaded *ld = &c->loaded[0];
    ModCtx mc = {.file = m0->file, .path = m0->path, .src = src, .len = len, .mod = 0};
    Diag d = {0};
    if (parse_source(m0->file, src, len, &ld->tree, &d) != 0) {
        c->diag = d;
        c->has_diag = 1;
        return -1;
    }
    ld->has_tree = 1;
    compile_tree(c, &mc, ld->tree.root);
    return 0;
}

int cmp_compile_more(const CmpOptions *opt, Program *p, const char *src, size_t len, Proto **init,
                     int *first_proto, char **err, int *incomplete)
{
    *init = NULL;
    *err = NULL;
    *incomplete = 0;
    *first_proto = p->nprotos;
    Module *m0 = &p->mods[0];
    /* what a failed chunk must not leave behind */
    int nprotos = p->nprotos, nmods = p->nmods, nglobals = m0->nglobals, has_code = m0->has_code;
    Proto *old_init = m0->init;
    int *old_fn = nglobals ? malloc((size_t)nglobals * sizeof(int)) : NULL;
    char *copy = malloc(len + 1);
    Comp *c = calloc(1, sizeof(Comp));
    if ((nglobals && !old_fn) || !copy || !c) {
        free(old_fn);
        free(copy);
        free(c);
        return -1;
    }
    if (nglobals) memcpy(old_fn, m0->global_fn, (size_t)nglobals * sizeof(int));
    memcpy(copy, src, len);
    copy[len] = '\0';
    c->opt = opt;
    c->prog = p;
    Loaded *ld = &c->loaded[c->nloaded++];
    memset(ld, 0, sizeof *ld);
    ld->src = copy;
    if (compile_chunk(c, copy, len) < 0) {
        comp_cleanup(c);
        m0 = &p->mods[0];
        chunk_program_truncate(p, nprotos, nmods, nglobals);
        if (nglobals) memcpy(m0->global_fn, old_fn, (size_t)nglobals * sizeof(int));
        m0->init = old_init;
        m0->has_code = has_code;
        if (c->has_diag) {
            *incomplete = c->diag.at_eof;
            *err = diag_format(&c->diag);
            diag_clear(&c->diag);
        } else {
            *err = c->plain_err;
        }
        free(old_fn);
        free(c);
        return -1;
    }
    *init = p->mods[0].init;
    comp_cleanup(c);
    free(old_fn);
    free(c);
    return 0;
}
