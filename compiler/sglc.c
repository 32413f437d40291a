/*
 * compiler/sglc.c — .sglc encoding and decoding (the file layout is in
 * compiler/sglc.h; the bytecode verifier is compiler/sglc_verify.c).
 *
 * The reader never trusts a count: each is checked against the bytes left
 * before anything is allocated, so a truncated or corrupted file fails with
 * a message instead of a huge allocation or an out-of-bounds read. It
 * checks the structure (indices between functions and modules, the function
 * tree); sglc_decode then runs sglc_verify before it returns anything, so no
 * caller ever holds a decoded program that has not been verified.
 */
#include "compiler/sglc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define HEADER_LEN 20   /* magic 4 + version 4 + body length 8 + crc 4 */
#define MAX_FUNCS 1000000
#define MAX_NAME 65536

/* ------------------------------------------------------------------ */
/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320)               */

static uint32_t crc32_bytes(const unsigned char *p, size_t n)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ------------------------------------------------------------------ */
/* writer                                                              */

typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int oom;
} W;

static void w_bytes(W *w, const void *p, size_t n)
{
    if (w->oom) return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 1024;
        while (cap < w->len + n) cap *= 2;
        unsigned char *b = realloc(w->buf, cap);
        if (!b) { w->oom = 1; return; }
        w->buf = b;
        w->cap = cap;
    }
    if (n) memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void w_u8(W *w, unsigned v) { unsigned char b = (unsigned char)v; w_bytes(w, &b, 1); }

static void w_u32(W *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    w_bytes(w, b, 4);
}

static void w_u64(W *w, uint64_t v)
{
    w_u32(w, (uint32_t)v);
    w_u32(w, (uint32_t)(v >> 32));
}

static void w_str(W *w, const char *s, size_t n)
{
    w_u32(w, (uint32_t)n);
    w_bytes(w, s, n);
}

static void w_cstr(W *w, const char *s) { w_str(w, s ? s : "", s ? strlen(s) : 0); }

static void w_const(W *w, const Const *k)
{
    w_u8(w, k->kind);
    switch (k->kind) {
    case KC_INT: w_u64(w, (uint64_t)k->i); break;
    case KC_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &k->f, sizeof bits);
        w_u64(w, bits);
        break;
    }
    case KC_STRING: case KC_REGEX: case KC_BUILTIN: w_str(w, k->s, k->len); break;
    case KC_GRAMMAR: w_cstr(w, k->name); w_str(w, k->s, k->len); break;
    case KC_NAMES:
        w_u32(w, (uint32_t)k->nnames);
        for (int i = 0; i < k->nnames; i++) w_cstr(w, k->names[i]);
        break;
    case KC__COUNT: break;
    }
}

int sglc_encode(const Program *p, unsigned char **out, size_t *out_len)
{
    W w = {0};
    /* header; length and checksum are filled in at the end */
    w_bytes(&w, SGLC_MAGIC, 4);
    w_u32(&w, SGLC_VERSION);
    w_u64(&w, 0);
    w_u32(&w, 0);
    w_u32(&w, (uint32_t)p->nprotos);
    w_u32(&w, (uint32_t)p->nmods);
    for (int i = 0; i < p->nmods; i++) {
        const Module *m = &p->mods[i];
        w_cstr(&w, m->path);
        w_cstr(&w, m->file);
        w_u32(&w, m->init ? (uint32_t)m->init->id : 0xFFFFFFFFu);
        w_u32(&w, (uint32_t)m->has_code);
        w_u32(&w, (uint32_t)m->nglobals);
        for (int g = 0; g < m->nglobals; g++) {
            w_cstr(&w, m->globals[g]);
            w_u32(&w, (uint32_t)m->global_fn[g]);
        }
    }
    for (int i = 0; i < p->nprotos; i++) {
        const Proto *f = p->protos[i];
        w_cstr(&w, f->name);
        w_u32(&w, (uint32_t)f->module);
        w_u32(&w, (uint32_t)f->line);
        w_u32(&w, (uint32_t)f->col);
        w_u32(&w, (uint32_t)f->nparams);
        w_u32(&w, (uint32_t)f->maxstack);
        w_u64(&w, f->required);
        for (int j = 0; j < f->nparams; j++) w_cstr(&w, f->param_names[j]);
        /* each default's source text (for signatures), optional params only */
        for (int j = 0; j < f->nparams; j++)
            if (!(f->required >> j & 1)) w_cstr(&w, f->param_defaults ? f->param_defaults[j] : NULL);
        w_u32(&w, (uint32_t)f->ncode);
        for (int j = 0; j < f->ncode; j++) w_u32(&w, f->code[j]);
        for (int j = 0; j < f->ncode; j++) {
            w_u32(&w, (uint32_t)f->lines[j].line);
            w_u32(&w, (uint32_t)f->lines[j].col);
        }
        w_u32(&w, (uint32_t)f->nconsts);
        for (int j = 0; j < f->nconsts; j++) w_const(&w, &f->consts[j]);
        w_u32(&w, (uint32_t)f->nchildren);
        for (int j = 0; j < f->nchildren; j++) w_u32(&w, (uint32_t)f->children[j]->id);
        w_u32(&w, (uint32_t)f->nupvals);
        for (int j = 0; j < f->nupvals; j++) {
            w_u8(&w, f->upvals[j].instack);
            w_u8(&w, f->upvals[j].idx);
        }
    }
    if (w.oom) { free(w.buf); return ERR_NOMEM; }
    uint64_t body = w.len - HEADER_LEN;
    uint32_t crc = crc32_bytes(w.buf + HEADER_LEN, (size_t)body);
    for (int k = 0; k < 8; k++) w.buf[8 + k] = (unsigned char)(body >> (8 * k));
    for (int k = 0; k < 4; k++) w.buf[16 + k] = (unsigned char)(crc >> (8 * k));
    *out = w.buf;
    *out_len = w.len;
    return 0;
}

/* ------------------------------------------------------------------ */
/* reader                                                              */

/* Writes the message and returns code (an ERR_*). */
static int fail(int code, char *err, size_t errcap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(int code, char *err, size_t errcap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(err, errcap, fmt, ap);
    va_end(ap);
    return code;
}

typedef struct {
    const unsigned char *p, *end;
    char *err;
    size_t errcap;
    int failed;     /* 0, or the ERR_* code of the first failure */
} R;

static void r_fail(R *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void r_fail(R *r, const char *fmt, ...)
{
    if (r->failed) return;
    r->failed = ERR_FORMAT;
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(r->err, r->errcap, fmt, ap);
    va_end(ap);
}

static void r_nomem(R *r)
{
    if (r->failed) return;
    r->failed = ERR_NOMEM;
    err_fmt(r->err, r->errcap, "out of memory");
}

static int r_need(R *r, size_t n)
{
    if (r->failed) return 0;
    if ((size_t)(r->end - r->p) < n) {
        r_fail(r, "bad .sglc file: truncated");
        return 0;
    }
    return 1;
}

static unsigned r_u8(R *r)
{
    if (!r_need(r, 1)) return 0;
    return *r->p++;
}

static uint32_t r_u32(R *r)
{
    if (!r_need(r, 4)) return 0;
    uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return v;
}

static uint64_t r_u64(R *r)
{
    uint64_t lo = r_u32(r);
    uint64_t hi = r_u32(r);
    return lo | hi << 32;
}

/* A count of items each at least `min_size` bytes, checked against what is left. */
static int r_count(R *r, size_t min_size, uint32_t limit, const char *what)
{
    uint32_t n = r_u32(r);
    if (r->failed) return -1;
    if (n > limit || (min_size && (size_t)(r->end - r->p) / min_size < n)) {
        r_fail(r, "bad .sglc file: %s count %u is impossible", what, n);
        return -1;
    }
    return (int)n;
}

static char *r_str(R *r, size_t *len)
{
    uint32_t n = r_u32(r);
    if (!r_need(r, n)) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) { r_nomem(r); return NULL; }
    memcpy(s, r->p, n);
    s[n] = '\0';
    r->p += n;
    if (len) *len = n;
    return s;
}

/* A name: a NUL-free string. */
static char *r_name(R *r)
{
    size_t n = 0;
    char *s = r_str(r, &n);
    if (s && (strlen(s) != n || n > MAX_NAME)) {
        free(s);
        r_fail(r, "bad .sglc file: malformed name");
        return NULL;
    }
    return s;
}

static void r_const(R *r, Const *k)
{
    unsigned kind = r_u8(r);
    if (r->failed) return;
    if (kind >= KC__COUNT) { r_fail(r, "bad .sglc file: unknown constant kind %u", kind); return; }
    k->kind = (ConstKind)kind;
    switch (k->kind) {
    case KC_INT: k->i = (int64_t)r_u64(r); break;
    case KC_FLOAT: {
        uint64_t bits = r_u64(r);
        memcpy(&k->f, &bits, sizeof bits);
        break;
    }
    case KC_STRING: case KC_REGEX: k->s = r_str(r, &k->len); break;
    case KC_BUILTIN: k->s = r_name(r); if (k->s) k->len = strlen(k->s); break;
    case KC_GRAMMAR:
        k->name = r_name(r);
        if (k->name) k->s = r_str(r, &k->len);
        break;
    case KC_NAMES: {
        int n = r_count(r, 4, 255, "argument name");
        if (n <= 0) {
            if (n == 0) r_fail(r, "bad .sglc file: empty argument name list");
            return;
        }
        k->names = calloc((size_t)n, sizeof(char *));
        if (!k->names) { r_nomem(r); return; }
        k->nnames = n;
        for (int i = 0; i < n && !r->failed; i++) k->names[i] = r_name(r);
        break;
    }
    case KC__COUNT: break;
    }
}

static int r_int(R *r, int lo, int hi, const char *what)
{
    uint32_t v = r_u32(r);
    if (r->failed) return lo;
    int64_t s = (int32_t)v;
    if (s < lo || s > hi) {
        r_fail(r, "bad .sglc file: %s %lld out of range", what, (long long)s);
        return lo;
    }
    return (int)s;
}

static Program *decode_body(R *r)
{
    Program *p = chunk_program_new();
    if (!p) { r_nomem(r); return NULL; }
    int nprotos = r_count(r, 32, MAX_FUNCS, "function");
    int nmods = r_count(r, 16, MAX_FUNCS, "module");
    if (r->failed) return p;
    if (nmods < 1) { r_fail(r, "bad .sglc file: no modules"); return p; }
    int *init_ids = calloc((size_t)nmods, sizeof(int));
    if (!init_ids) { r_nomem(r); return p; }
    for (int i = 0; i < nmods && !r->failed; i++) {
        char *path = r_name(r);
        char *file = path ? r_name(r) : NULL;
        int idx = -1;
        if (path && file) idx = chunk_add_module(p, path, file);
        free(path);
        free(file);
        if (r->failed) break;
        if (idx < 0) { r_nomem(r); break; }
        Module *m = &p->mods[idx];
        init_ids[i] = r_int(r, 0, nprotos - 1, "module top level");
        m->has_code = (int)(r_u32(r) != 0);
        int ng = r_count(r, 8, 0xFFFF, "global");
        for (int g = 0; g < ng && !r->failed; g++) {
            char *name = r_name(r);
            if (!name) break;
            int slot = chunk_add_global(m, name);
            free(name);
            if (slot < 0) { r_nomem(r); break; }
            m->global_fn[slot] = r_int(r, -1, nprotos - 1, "function index");
        }
    }
    int **child_ids = calloc((size_t)(nprotos > 0 ? nprotos : 1), sizeof(int *));
    if (!child_ids) r_nomem(r);
    for (int i = 0; i < nprotos && !r->failed; i++) {
        char *name = r_name(r);
        if (!name) break;
        Proto *f = chunk_proto_new(p, name, 0, 0, 0);
        free(name);
        if (!f) { r_nomem(r); break; }
        f->module = r_int(r, 0, nmods - 1, "module index");
        f->line = r_int(r, 0, 1 << 30, "line");
        f->col = r_int(r, 0, 1 << 30, "column");
        f->nparams = r_int(r, 0, 64, "parameter count");
        f->maxstack = r_int(r, 1, MAXARG_A, "register count");
        f->required = r_u64(r);
        if (r->failed) break;
        if (f->nparams > f->maxstack) { r_fail(r, "bad .sglc file: more parameters than registers"); break; }
        if (f->nparams) {
            f->param_names = calloc((size_t)f->nparams, sizeof(char *));
            if (!f->param_names) { r_nomem(r); break; }
            for (int j = 0; j < f->nparams && !r->failed; j++) f->param_names[j] = r_name(r);
            f->param_defaults = calloc((size_t)f->nparams, sizeof(char *));
            if (!f->param_defaults) { r_nomem(r); break; }
            for (int j = 0; j < f->nparams && !r->failed; j++)
                if (!(f->required >> j & 1)) f->param_defaults[j] = r_str(r, NULL);
        }
        int n = r_count(r, 12, 1 << 24, "instruction");
        if (n <= 0) { if (n == 0) r_fail(r, "bad .sglc file: empty function"); break; }
        f->code = malloc((size_t)n * sizeof(Instr));
        f->lines = malloc((size_t)n * sizeof(LineCol));
        if (!f->code || !f->lines) { r_nomem(r); break; }
        f->ncode = f->capcode = n;
        for (int j = 0; j < n; j++) f->code[j] = r_u32(r);
        for (int j = 0; j < n; j++) {
            f->lines[j].line = (int32_t)r_u32(r);
            f->lines[j].col = (int32_t)r_u32(r);
        }
        int nk = r_count(r, 1, MAXARG_Bx + 1, "constant");
        if (nk < 0) break;
        if (nk) {
            f->consts = calloc((size_t)nk, sizeof(Const));
            if (!f->consts) { r_nomem(r); break; }
            f->capconsts = nk;
            for (int j = 0; j < nk && !r->failed; j++) {
                r_const(r, &f->consts[j]);
                f->nconsts = j + 1;
            }
        }
        int nc = r_count(r, 4, MAXARG_Bx + 1, "child function");
        if (nc < 0) break;
        child_ids[i] = calloc((size_t)nc + 1, sizeof(int));
        if (!child_ids[i]) { r_nomem(r); break; }
        child_ids[i][0] = nc;
        for (int j = 0; j < nc; j++) child_ids[i][j + 1] = r_int(r, 0, nprotos - 1, "child function");
        int nu = r_count(r, 2, 255, "upvalue");
        if (nu < 0) break;
        if (nu) {
            f->upvals = malloc((size_t)nu * sizeof(UpvalDesc));
            if (!f->upvals) { r_nomem(r); break; }
            f->nupvals = nu;
            for (int j = 0; j < nu; j++) {
                f->upvals[j].instack = (uint8_t)r_u8(r);
                f->upvals[j].idx = (uint8_t)r_u8(r);
            }
        }
    }
    if (!r->failed && r->p != r->end) r_fail(r, "bad .sglc file: trailing bytes");
    if (!r->failed) {
        /* link children and module top levels; each function has exactly one
         * parent (or is a module's top level), so the tree is finite */
        int *parents = calloc((size_t)nprotos, sizeof(int));
        if (!parents) r_nomem(r);
        for (int i = 0; i < nmods && !r->failed; i++) {
            if (parents[init_ids[i]]) r_fail(r, "bad .sglc file: function %d used twice", init_ids[i]);
            parents[init_ids[i]] = -1;
            p->mods[i].init = p->protos[init_ids[i]];
        }
        for (int i = 0; i < nprotos && !r->failed; i++) {
            int nc = child_ids[i][0];
            for (int j = 0; j < nc && !r->failed; j++) {
                int c = child_ids[i][j + 1];
                if (parents[c]) { r_fail(r, "bad .sglc file: function %d used twice", c); break; }
                parents[c] = i + 1;
                if (chunk_add_child(p->protos[i], p->protos[c]) < 0) r_nomem(r);
            }
        }
        free(parents);
    }
    if (child_ids)
        for (int i = 0; i < nprotos; i++) free(child_ids[i]);
    free(child_ids);
    free(init_ids);
    return p;
}

int sglc_decode(const unsigned char *buf, size_t len, Program **out, char *err, size_t errcap)
{
    *out = NULL;
    if (len < 4 || memcmp(buf, SGLC_MAGIC, 4) != 0) return fail(ERR_FORMAT, err, errcap, "not an .sglc file (bad magic)");
    if (len < HEADER_LEN) return fail(ERR_FORMAT, err, errcap, "bad .sglc file: truncated header");
    R r = {.p = buf + 4, .end = buf + len, .err = err, .errcap = errcap};
    uint32_t version = r_u32(&r);
    uint64_t body = r_u64(&r);
    uint32_t crc = r_u32(&r);
    if (version != SGLC_VERSION)
        return fail(ERR_UNSUPPORTED, err, errcap, ".sglc version %u is not supported (this sgl reads version %d)",
                    version, SGLC_VERSION);
    if (body != len - HEADER_LEN)
        return fail(ERR_FORMAT, err, errcap, "bad .sglc file: %s (body is %zu bytes, header says %llu)",
                    body > len - HEADER_LEN ? "truncated" : "trailing bytes", len - HEADER_LEN,
                    (unsigned long long)body);
    if (crc32_bytes(buf + HEADER_LEN, (size_t)body) != crc)
        return fail(ERR_FORMAT, err, errcap, "bad .sglc file: checksum mismatch (corrupted)");
    Program *p = decode_body(&r);
    if (r.failed) {
        chunk_program_free(p);
        return r.failed;
    }
    /* the structure is sound; now what the VM will take on trust */
    int rc = sglc_verify(p, err, errcap);
    if (rc < 0) {
        chunk_program_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int sglc_save(const Program *p, const char *path, char *err, size_t errcap)
{
    unsigned char *buf;
    size_t len;
    if (sglc_encode(p, &buf, &len) < 0) return fail(ERR_NOMEM, err, errcap, "out of memory");
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return fail(ERR_IO, err, errcap, "%s: cannot write file", path);
    }
    size_t n = fwrite(buf, 1, len, f);
    int bad = fclose(f) != 0 || n != len;
    free(buf);
    if (bad) return fail(ERR_IO, err, errcap, "%s: write failed", path);
    return 0;
}

int sglc_load(const char *path, Program **out, char *err, size_t errcap)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(ERR_IO, err, errcap, "%s: cannot read file", path);
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        cap *= 2;
        unsigned char *nb = realloc(buf, cap);
        if (!nb) free(buf);
        buf = nb;
    }
    int rerr = ferror(f);
    fclose(f);
    if (!buf || rerr) {
        free(buf);
        return fail(ERR_IO, err, errcap, "%s: cannot read file", path);
    }
    char msg[512];
    int rc = sglc_decode(buf, len, out, msg, sizeof msg);
    free(buf);
    if (rc < 0) err_fmt(err, errcap, "%s: %s", path, msg);
    return rc;
}
