/*
 * compiler/sglc.c — .sglc encoding, decoding and bytecode verification.
 *
 * The reader never trusts a count: each is checked against the bytes left
 * before anything is allocated, so a truncated or corrupted file fails with
 * a message instead of a huge allocation or an out-of-bounds read. After the
 * checksum and the structure, sglc_verify checks every operand, which is
 * what lets the VM skip bounds checks on registers and constants.
 */
#include "compiler/sglc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (w.oom) { free(w.buf); return -1; }
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

typedef struct {
    const unsigned char *p, *end;
    char *err;
    size_t errcap;
    int failed;
} R;

static void r_fail(R *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void r_fail(R *r, const char *fmt, ...)
{
    if (r->failed) return;
    r->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errcap, fmt, ap);
    va_end(ap);
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
    if (!s) { r_fail(r, "out of memory"); return NULL; }
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
        if (!k->names) { r_fail(r, "out of memory"); return; }
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
    if (!p) { r_fail(r, "out of memory"); return NULL; }
    int nprotos = r_count(r, 32, MAX_FUNCS, "function");
    int nmods = r_count(r, 16, MAX_FUNCS, "module");
    if (r->failed) return p;
    if (nmods < 1) { r_fail(r, "bad .sglc file: no modules"); return p; }
    int *init_ids = calloc((size_t)nmods, sizeof(int));
    if (!init_ids) { r_fail(r, "out of memory"); return p; }
    for (int i = 0; i < nmods && !r->failed; i++) {
        char *path = r_name(r);
        char *file = path ? r_name(r) : NULL;
        int idx = -1;
        if (path && file) idx = chunk_add_module(p, path, file);
        free(path);
        free(file);
        if (r->failed) break;
        if (idx < 0) { r_fail(r, "out of memory"); break; }
        Module *m = &p->mods[idx];
        init_ids[i] = r_int(r, 0, nprotos - 1, "module top level");
        m->has_code = (int)(r_u32(r) != 0);
        int ng = r_count(r, 8, 0xFFFF, "global");
        for (int g = 0; g < ng && !r->failed; g++) {
            char *name = r_name(r);
            if (!name) break;
            int slot = chunk_add_global(m, name);
            free(name);
            if (slot < 0) { r_fail(r, "out of memory"); break; }
            m->global_fn[slot] = r_int(r, -1, nprotos - 1, "function index");
        }
    }
    int **child_ids = calloc((size_t)(nprotos > 0 ? nprotos : 1), sizeof(int *));
    if (!child_ids) r_fail(r, "out of memory");
    for (int i = 0; i < nprotos && !r->failed; i++) {
        char *name = r_name(r);
        if (!name) break;
        Proto *f = chunk_proto_new(p, name, 0, 0, 0);
        free(name);
        if (!f) { r_fail(r, "out of memory"); break; }
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
            if (!f->param_names) { r_fail(r, "out of memory"); break; }
            for (int j = 0; j < f->nparams && !r->failed; j++) f->param_names[j] = r_name(r);
        }
        int n = r_count(r, 12, 1 << 24, "instruction");
        if (n <= 0) { if (n == 0) r_fail(r, "bad .sglc file: empty function"); break; }
        f->code = malloc((size_t)n * sizeof(Instr));
        f->lines = malloc((size_t)n * sizeof(LineCol));
        if (!f->code || !f->lines) { r_fail(r, "out of memory"); break; }
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
            if (!f->consts) { r_fail(r, "out of memory"); break; }
            f->capconsts = nk;
            for (int j = 0; j < nk && !r->failed; j++) {
                r_const(r, &f->consts[j]);
                f->nconsts = j + 1;
            }
        }
        int nc = r_count(r, 4, MAXARG_Bx + 1, "child function");
        if (nc < 0) break;
        child_ids[i] = calloc((size_t)nc + 1, sizeof(int));
        if (!child_ids[i]) { r_fail(r, "out of memory"); break; }
        child_ids[i][0] = nc;
        for (int j = 0; j < nc; j++) child_ids[i][j + 1] = r_int(r, 0, nprotos - 1, "child function");
        int nu = r_count(r, 2, 255, "upvalue");
        if (nu < 0) break;
        if (nu) {
            f->upvals = malloc((size_t)nu * sizeof(UpvalDesc));
            if (!f->upvals) { r_fail(r, "out of memory"); break; }
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
        if (!parents) r_fail(r, "out of memory");
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
                if (chunk_add_child(p->protos[i], p->protos[c]) < 0) r_fail(r, "out of memory");
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
    if (len < 4 || memcmp(buf, SGLC_MAGIC, 4) != 0) {
        snprintf(err, errcap, "not an .sglc file (bad magic)");
        return -1;
    }
    if (len < HEADER_LEN) {
        snprintf(err, errcap, "bad .sglc file: truncated header");
        return -1;
    }
    R r = {.p = buf + 4, .end = buf + len, .err = err, .errcap = errcap};
    uint32_t version = r_u32(&r);
    uint64_t body = r_u64(&r);
    uint32_t crc = r_u32(&r);
    if (version != SGLC_VERSION) {
        snprintf(err, errcap, ".sglc version %u is not supported (this sgl reads version %d)", version, SGLC_VERSION);
        return -1;
    }
    if (body != len - HEADER_LEN) {
        snprintf(err, errcap, "bad .sglc file: %s (body is %zu bytes, header says %llu)",
                 body > len - HEADER_LEN ? "truncated" : "trailing bytes", len - HEADER_LEN,
                 (unsigned long long)body);
        return -1;
    }
    if (crc32_bytes(buf + HEADER_LEN, (size_t)body) != crc) {
        snprintf(err, errcap, "bad .sglc file: checksum mismatch (corrupted)");
        return -1;
    }
    Program *p = decode_body(&r);
    if (r.failed) {
        chunk_program_free(p);
        return -1;
    }
    if (sglc_verify(p, err, errcap) < 0) {
        chunk_program_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

int sglc_save(const Program *p, const char *path, char *err, size_t errcap)
{
    unsigned char *buf;
    size_t len;
    if (sglc_encode(p, &buf, &len) < 0) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(err, errcap, "%s: cannot write file", path);
        free(buf);
        return -1;
    }
    size_t n = fwrite(buf, 1, len, f);
    int bad = fclose(f) != 0 || n != len;
    free(buf);
    if (bad) {
        snprintf(err, errcap, "%s: write failed", path);
        return -1;
    }
    return 0;
}

int sglc_load(const char *path, Program **out, char *err, size_t errcap)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errcap, "%s: cannot read file", path);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        cap *= 2;
        unsigned char *nb = realloc(buf, cap);
        if (!nb) { free(buf); buf = NULL; }
        buf = nb;
    }
    int rerr = ferror(f);
    fclose(f);
    if (!buf || rerr) {
        free(buf);
        snprintf(err, errcap, "%s: cannot read file", path);
        return -1;
    }
    char msg[256];
    int r = sglc_decode(buf, len, out, msg, sizeof msg);
    free(buf);
    if (r < 0) snprintf(err, errcap, "%s: %s", path, msg);
    return r;
}

/* ------------------------------------------------------------------ */
/* verification                                                        */

typedef struct {
    const Program *p;
    const Proto *f;
    char *err;
    size_t errcap;
    int failed;
} V;

static int v_fail(V *v, int pc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int v_fail(V *v, int pc, const char *fmt, ...)
{
    if (v->failed) return -1;
    v->failed = 1;
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(v->err, v->errcap, "bad bytecode in function %s at %d: %s", v->f->name, pc, msg);
    return -1;
}

static int const_kind(const Proto *f, int k) { return k >= 0 && k < f->nconsts ? (int)f->consts[k].kind : -1; }

static int v_operand(V *v, int pc, OpKind kind, int x, char which)
{
    const Proto *f = v->f;
    switch (kind) {
    case OPK_N: case OPK_U: case OPK_S: return 0;
    case OPK_R: return x < f->maxstack ? 0 : v_fail(v, pc, "register %c=%d beyond %d", which, x, f->maxstack);
    case OPK_K: return x < f->nconsts ? 0 : v_fail(v, pc, "constant %c=%d beyond %d", which, x, f->nconsts);
    case OPK_F: return x <= 1 ? 0 : v_fail(v, pc, "flag %c=%d", which, x);
    case OPK_J: {
        int target = pc + 1 + x;
        return target >= 0 && target < f->ncode ? 0 : v_fail(v, pc, "jump to %d outside the function", target);
    }
    case OPK_P: return x < f->nchildren ? 0 : v_fail(v, pc, "function %d beyond %d", x, f->nchildren);
    case OPK_V: return x < f->nupvals ? 0 : v_fail(v, pc, "upvalue %d beyond %d", x, f->nupvals);
    case OPK_G: {
        const Module *m = &v->p->mods[f->module];
        return x < m->nglobals ? 0 : v_fail(v, pc, "global %d beyond %d", x, m->nglobals);
    }
    case OPK_M: return x < v->p->nmods ? 0 : v_fail(v, pc, "module %d beyond %d", x, v->p->nmods);
    }
    return 0;
}

static int is_skip_op(OpCode op)
{
    switch (op) {
    case OP_EQ: case OP_LT: case OP_LE: case OP_EQK: case OP_EQI: case OP_LTI: case OP_LEI:
    case OP_GTI: case OP_GEI: case OP_TEST: case OP_LFALSESKIP:
        return 1;
    default:
        return 0;
    }
}

static int verify_proto(V *v)
{
    const Proto *f = v->f;
    int ms = f->maxstack;
    if (f->ncode < 1) return v_fail(v, 0, "no code");
    OpCode last = GET_OP(f->code[f->ncode - 1]);
    if (last != OP_RETURN && last != OP_RETURN0 && last != OP_JMP)
        return v_fail(v, f->ncode - 1, "the function does not end in a return");
    for (int pc = 0; pc < f->ncode; pc++) {
        Instr i = f->code[pc];
        unsigned opn = i & 0xffu;
        if (opn >= OP__COUNT) return v_fail(v, pc, "unknown opcode %u", opn);
        OpCode op = (OpCode)opn;
        const OpInfo *info = &op_info[op];
        int a = GETARG_A(i), b = GETARG_B(i), c = GETARG_C(i);
        switch (info->format) {
        case iABC:
            if (v_operand(v, pc, info->a, a, 'A') < 0) return -1;
            if (op == OP_FIELD && c == MAXARG_C) break;  /* constant in EXTRAARG */
            if (op == OP_SETFIELD && b == MAXARG_B) {
                if (v_operand(v, pc, info->c, c, 'C') < 0) return -1;
                break;
            }
            if (v_operand(v, pc, info->b, b, 'B') < 0 || v_operand(v, pc, info->c, c, 'C') < 0) return -1;
            break;
        case iABx:
            if (v_operand(v, pc, info->a, a, 'A') < 0 || v_operand(v, pc, info->b, GETARG_Bx(i), 'B') < 0) return -1;
            break;
        case iAsBx:
            if (v_operand(v, pc, info->a, a, 'A') < 0 || v_operand(v, pc, info->b, GETARG_sBx(i), 'B') < 0) return -1;
            break;
        case isJ:
            if (v_operand(v, pc, OPK_J, GETARG_sJ(i), 'J') < 0) return -1;
            break;
        case iAx:
            break;
        }
        if (is_skip_op(op)) {
            /* the VM executes the JMP after a test directly */
            if (pc + 2 >= f->ncode) return v_fail(v, pc, "test at the end of the function");
            if (op != OP_LFALSESKIP && GET_OP(f->code[pc + 1]) != OP_JMP) return v_fail(v, pc, "test not followed by a jump");
        }
        switch (op) {
        case OP_LOADNIL: case OP_NEWLIST: case OP_LISTADD: case OP_CALL:
            if (a + b >= ms) return v_fail(v, pc, "register range beyond %d", ms);
            break;
        case OP_NEWMAP: case OP_MAPADD:
            if (a + 2 * b >= ms) return v_fail(v, pc, "register range beyond %d", ms);
            break;
        case OP_CONCAT:
            if (b < 1 || a + b - 1 >= ms) return v_fail(v, pc, "register range beyond %d", ms);
            break;
        case OP_CALLKW: {
            if (a + b + c >= ms) return v_fail(v, pc, "register range beyond %d", ms);
            if (pc + 1 >= f->ncode || GET_OP(f->code[pc + 1]) != OP_EXTRAARG)
                return v_fail(v, pc, "CALLKW without its names");
            int k = GETARG_Ax(f->code[pc + 1]);
            if (const_kind(f, k) != KC_NAMES || f->consts[k].nnames != c)
                return v_fail(v, pc, "CALLKW names do not match");
            break;
        }
        case OP_FIELD: case OP_SETFIELD: {
            int k = op == OP_FIELD ? c : b;
            if (k == MAXARG_C) {
                if (pc + 1 >= f->ncode || GET_OP(f->code[pc + 1]) != OP_EXTRAARG)
                    return v_fail(v, pc, "field without its name");
                k = GETARG_Ax(f->code[pc + 1]);
            }
            if (const_kind(f, k) != KC_STRING) return v_fail(v, pc, "field name is not a string constant");
            break;
        }
        case OP_ADDK: case OP_SUBK: case OP_MULK: case OP_DIVK: case OP_MODK: {
            int kk = const_kind(f, c);
            if (kk != KC_INT && kk != KC_FLOAT) return v_fail(v, pc, "arithmetic on a non-number constant");
            break;
        }
        case OP_EQK: {
            int kk = const_kind(f, b);
            if (kk != KC_INT && kk != KC_FLOAT && kk != KC_STRING) return v_fail(v, pc, "bad comparison constant");
            break;
        }
        case OP_APPENDK:
            if (const_kind(f, GETARG_Bx(i)) != KC_STRING) return v_fail(v, pc, "appending a non-string constant");
            break;
        case OP_LOADK:
            if (const_kind(f, GETARG_Bx(i)) == KC_NAMES) return v_fail(v, pc, "loading an argument name list");
            break;
        case OP_ARGDEF:
            if (a >= f->nparams) return v_fail(v, pc, "default for parameter %d of %d", a, f->nparams);
            break;
        case OP_FORPREP: case OP_FORLOOP: case OP_ITERPREP: case OP_ITERLOOP:
            if (a + 2 >= ms) return v_fail(v, pc, "loop registers beyond %d", ms);
            break;
        case OP_FORK:
            if (b + 1 >= ms) return v_fail(v, pc, "fork registers beyond %d", ms);
            break;
        case OP_ROLEBEGIN: case OP_ROLEEND:
            if (a > 2) return v_fail(v, pc, "unknown role %d", a);
            break;
        case OP_EXTRAARG: {
            int k = GETARG_Ax(i);
            if (k >= f->nconsts) return v_fail(v, pc, "constant %d beyond %d", k, f->nconsts);
            break;
        }
        default:
            break;
        }
    }
    return 0;
}

int sglc_verify(const Program *p, char *err, size_t errcap)
{
    V v = {.p = p, .err = err, .errcap = errcap};
    if (p->nmods < 1) {
        snprintf(err, errcap, "bad bytecode: no modules");
        return -1;
    }
    for (int m = 0; m < p->nmods; m++) {
        if (!p->mods[m].init) {
            snprintf(err, errcap, "bad bytecode: module %d has no top level", m);
            return -1;
        }
        if (p->mods[m].init->nparams != 0) {
            snprintf(err, errcap, "bad bytecode: module %d's top level takes parameters", m);
            return -1;
        }
    }
    for (int i = 0; i < p->nprotos; i++) {
        const Proto *f = p->protos[i];
        v.f = f;
        if (f->module < 0 || f->module >= p->nmods) return v_fail(&v, 0, "bad module index");
        if (f->nparams > 64 || f->nparams > f->maxstack || f->maxstack > MAXARG_A)
            return v_fail(&v, 0, "bad parameter or register count");
        for (int j = 0; j < f->nparams; j++)
            if (!f->param_names || !f->param_names[j]) return v_fail(&v, 0, "missing parameter name");
        for (int j = 0; j < f->nconsts; j++) {
            const Const *k = &f->consts[j];
            if ((k->kind == KC_STRING || k->kind == KC_REGEX || k->kind == KC_BUILTIN || k->kind == KC_GRAMMAR) && !k->s)
                return v_fail(&v, 0, "malformed constant %d", j);
            if (k->kind == KC_GRAMMAR && !k->name) return v_fail(&v, 0, "malformed constant %d", j);
            if (k->kind == KC_NAMES)
                for (int n = 0; n < k->nnames; n++)
                    if (!k->names[n]) return v_fail(&v, 0, "malformed constant %d", j);
        }
        /* upvalues are checked against the enclosing function */
        for (int c = 0; c < f->nchildren; c++) {
            const Proto *ch = f->children[c];
            for (int u = 0; u < ch->nupvals; u++) {
                const UpvalDesc *d = &ch->upvals[u];
                if (d->instack ? d->idx >= f->maxstack : d->idx >= f->nupvals) {
                    v.f = ch;
                    return v_fail(&v, 0, "captured variable %d out of range", u);
                }
                if (d->instack > 1) { v.f = ch; return v_fail(&v, 0, "bad upvalue descriptor"); }
            }
        }
        if (verify_proto(&v) < 0) return -1;
    }
    for (int m = 0; m < p->nmods; m++) {
        if (p->mods[m].init->nupvals != 0) {
            snprintf(err, errcap, "bad bytecode: module %d's top level captures variables", m);
            return -1;
        }
        for (int g = 0; g < p->mods[m].nglobals; g++) {
            int fn = p->mods[m].global_fn[g];
            if (fn < -1 || fn >= p->nprotos) {
                snprintf(err, errcap, "bad bytecode: module %d global %d names function %d", m, g, fn);
                return -1;
            }
        }
    }
    return 0;
}
