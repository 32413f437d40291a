/*
 * compiler/chunk.c — building and freeing programs, functions, constants
 * and modules. Growth is by doubling; every failure is reported as -1/NULL
 * (the caller turns it into "out of memory").
 */
#include "compiler/chunk.h"

#include <stdlib.h>
#include <string.h>

/* Grows *arr (of elem-size items) so that index n fits. */
static int grow(void **arr, int *cap, int n, size_t elem)
{
    if (n < *cap) return 0;
    int ncap = *cap ? *cap * 2 : 8;
    while (ncap <= n) ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static char *dup_str(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

Program *chunk_program_new(void)
{
    return calloc(1, sizeof(Program));
}

void chunk_const_clear(Const *k)
{
    free(k->s);
    free(k->name);
    for (int i = 0; i < k->nnames; i++) free(k->names[i]);
    free(k->names);
    memset(k, 0, sizeof *k);
}

static void proto_free(Proto *f)
{
    if (!f) return;
    free(f->name);
    if (f->param_names)
        for (int i = 0; i < f->nparams; i++) free(f->param_names[i]);
    free(f->param_names);
    if (f->param_defaults)
        for (int i = 0; i < f->nparams; i++) free(f->param_defaults[i]);
    free(f->param_defaults);
    free(f->code);
    free(f->lines);
    for (int i = 0; i < f->nconsts; i++) chunk_const_clear(&f->consts[i]);
    free(f->consts);
    free(f->children);
    free(f->upvals);
    free(f->k);
    free(f);
}

void chunk_program_free(Program *p)
{
    if (!p) return;
    for (int i = 0; i < p->nprotos; i++) proto_free(p->protos[i]);
    free(p->protos);
    for (int i = 0; i < p->nmods; i++) {
        Module *m = &p->mods[i];
        free(m->path);
        free(m->file);
        for (int g = 0; g < m->nglobals; g++) free(m->globals[g]);
        free(m->globals);
        free(m->global_fn);
    }
    free(p->mods);
    free(p);
}

void chunk_program_truncate(Program *p, int nprotos, int nmods, int nglobals)
{
    while (p->nprotos > nprotos) proto_free(p->protos[--p->nprotos]);
    while (p->nmods > nmods) {
        Module *m = &p->mods[--p->nmods];
        free(m->path);
        free(m->file);
        for (int g = 0; g < m->nglobals; g++) free(m->globals[g]);
        free(m->globals);
        free(m->global_fn);
    }
    if (p->nmods > 0) {
        Module *m = &p->mods[0];
        while (m->nglobals > nglobals) free(m->globals[--m->nglobals]);
    }
}

Proto *chunk_proto_new(Program *p, const char *name, int module, int line, int col)
{
    if (grow((void **)&p->protos, &p->capprotos, p->nprotos, sizeof(Proto *)) < 0) return NULL;
    Proto *f = calloc(1, sizeof(Proto));
    if (!f) return NULL;
    f->name = dup_str(name ? name : "<fn>");
    if (!f->name) { free(f); return NULL; }
    f->id = p->nprotos;
    f->module = module;
    f->line = line;
    f->col = col;
    p->protos[p->nprotos++] = f;
    return f;
}

int chunk_emit(Proto *f, Instr i, int line, int col)
{
    if (f->ncode >= f->capcode) {
        int cap = f->capcode ? f->capcode * 2 : 32;
        Instr *code = realloc(f->code, (size_t)cap * sizeof(Instr));
        if (!code) return -1;
        f->code = code;
        LineCol *lines = realloc(f->lines, (size_t)cap * sizeof(LineCol));
        if (!lines) return -1;
        f->lines = lines;
        f->capcode = cap;
    }
    f->code[f->ncode] = i;
    f->lines[f->ncode].line = line;
    f->lines[f->ncode].col = col;
    return f->ncode++;
}

int chunk_add_const(Proto *f, const Const *k)
{
    if (grow((void **)&f->consts, &f->capconsts, f->nconsts, sizeof(Const)) < 0) return -1;
    f->consts[f->nconsts] = *k;
    return f->nconsts++;
}

int chunk_add_child(Proto *f, Proto *c)
{
    if (grow((void **)&f->children, &f->capchildren, f->nchildren, sizeof(Proto *)) < 0) return -1;
    f->children[f->nchildren] = c;
    return f->nchildren++;
}

int chunk_add_module(Program *p, const char *path, const char *file)
{
    if (grow((void **)&p->mods, &p->capmods, p->nmods, sizeof(Module)) < 0) return -1;
    Module *m = &p->mods[p->nmods];
    memset(m, 0, sizeof *m);
    m->path = dup_str(path);
    m->file = dup_str(file);
    if (!m->path || !m->file) {
        free(m->path);
        free(m->file);
        return -1;
    }
    return p->nmods++;
}

int chunk_add_global(Module *m, const char *name)
{
    /* globals and global_fn grow together; capacity is the next power of two */
    int n = m->nglobals;
    if ((n & (n - 1)) == 0) {
        int cap = n ? n * 2 : 1;
        char **g = realloc(m->globals, (size_t)cap * sizeof(char *));
        if (!g) return -1;
        m->globals = g;
        int *fn = realloc(m->global_fn, (size_t)cap * sizeof(int));
        if (!fn) return -1;
        m->global_fn = fn;
    }
    m->globals[n] = dup_str(name);
    if (!m->globals[n]) return -1;
    m->global_fn[n] = -1;
    return m->nglobals++;
}

LineCol chunk_pos(const Proto *f, int pc)
{
    LineCol lc = {0, 0};
    if (f && f->lines && pc >= 0 && pc < f->ncode) lc = f->lines[pc];
    return lc;
}

int chunk_find_module(const Program *p, const char *path)
{
    for (int i = 0; i < p->nmods; i++)
        if (strcmp(p->mods[i].path, path) == 0) return i;
    return -1;
}

int chunk_find_global(const Module *m, const char *name)
{
    for (int i = 0; i < m->nglobals; i++)
        if (strcmp(m->globals[i], name) == 0) return i;
    return -1;
}
