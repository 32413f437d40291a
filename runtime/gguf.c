/*
 * runtime/gguf.c — GGUF reader: maps the file, parses the header, the
 * metadata table and the tensor infos, checking every length against the
 * end of the mapping (a truncated or hostile file yields a message, never a
 * read past the end). Layout is described in gguf.h.
 */
#include "runtime/gguf.h"
#include "base/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/backend.h"

struct GgufFile {
    char *path;
    const uint8_t *map;
    size_t size;
    uint32_t version;
    size_t alignment;
    GgufKV *kv;
    size_t n_kv;
    GgufTensor *tensors;
    size_t n_tensors;
    uint64_t data_start;
};

typedef struct {
    const uint8_t *p, *end;
    GgufFile *f;
    char *err;
    size_t errcap;
    int failed;
} Cursor;

static void fail(Cursor *c, const char *fmt, ...)
{
    if (c->failed) return;
    c->failed = 1;
    if (!c->err || !c->errcap) return;
    int n = snprintf(c->err, c->errcap, "%s: ", c->f->path);
    if (n < 0 || (size_t)n >= c->errcap) return;
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(c->err + n, c->errcap - (size_t)n, fmt, ap);
    va_end(ap);
}

static const uint8_t *take(Cursor *c, uint64_t n, const char *what)
{
    if (c->failed) return NULL;
    if (n > (uint64_t)(c->end - c->p)) {
        fail(c, "file truncated while reading %s (offset %zu)", what, (size_t)(c->p - c->f->map));
        return NULL;
    }
    const uint8_t *q = c->p;
    c->p += n;
    return q;
}

static uint32_t rd32(Cursor *c, const char *what)
{
    const uint8_t *q = take(c, 4, what);
    uint32_t v = 0;
    if (q) memcpy(&v, q, 4);
    return v;
}

static uint64_t rd64(Cursor *c, const char *what)
{
    const uint8_t *q = take(c, 8, what);
    uint64_t v = 0;
    if (q) memcpy(&v, q, 8);
    return v;
}

/* GGUF string -> pointer into the map + length */
static const char *rdstr(Cursor *c, uint64_t *len, const char *what)
{
    *len = rd64(c, what);
    return (const char *)take(c, *len, what);
}

static char *dupn(const char *s, uint64_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static size_t scalar_size(GgufType t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(GgufType t)
{
    switch (t) {
#define X(name, id, str) case GGUF_TYPE_##name: return str;
    GGUF_TYPES(X)
#undef X
    default: return "?";
    }
}

static void parse_kv(Cursor *c, GgufKV *kv)
{
    uint64_t klen;
    const char *k = rdstr(c, &klen, "a metadata key");
    if (c->failed) return;
    kv->key = dupn(k, klen);
    if (!kv->key) { fail(c, "out of memory"); return; }
    uint32_t t = rd32(c, "a metadata type");
    if (c->failed) return;
    if (t >= GGUF_TYPE_COUNT_) { fail(c, "metadata key '%s' has unknown type %u", kv->key, t); return; }
    kv->type = (GgufType)t;
    if (t == GGUF_TYPE_STRING) {
        kv->data = rdstr(c, &kv->str_len, kv->key);
        return;
    }
    if (t != GGUF_TYPE_ARRAY) {
        kv->data = take(c, scalar_size(kv->type), kv->key);
        return;
    }
    uint32_t et = rd32(c, kv->key);
    uint64_t n = rd64(c, kv->key);
    if (c->failed) return;
    if (et >= GGUF_TYPE_COUNT_ || et == GGUF_TYPE_ARRAY) {
        fail(c, "metadata array '%s' has unsupported element type %u", kv->key, et);
        return;
    }
    kv->arr_type = (GgufType)et;
    kv->arr_n = n;
    kv->data = c->p;
    if (et != GGUF_TYPE_STRING) {
        size_t es = scalar_size(kv->arr_type);
        if (n > (uint64_t)(c->end - c->p) / es) { fail(c, "metadata array '%s' runs past the end of the file", kv->key); return; }
        c->p += n * es;
        return;
    }
    /* each string is at least its 8-byte length */
    if (n > (uint64_t)(c->end - c->p) / 8) { fail(c, "metadata array '%s' runs past the end of the file", kv->key); return; }
    uint64_t *offs = malloc((n ? n : 1) * sizeof *offs);
    if (!offs) { fail(c, "out of memory"); return; }
    kv->str_offs = offs;
    for (uint64_t i = 0; i < n && !c->failed; i++) {
        offs[i] = (uint64_t)(c->p - (const uint8_t *)kv->data);
        uint64_t len;
        rdstr(c, &len, kv->key);
    }
}

static void parse_tensor(Cursor *c, GgufTensor *t)
{
    uint64_t nlen;
    const char *name = rdstr(c, &nlen, "a tensor name");
    if (c->failed) return;
    t->name = dupn(name, nlen);
    if (!t->name) { fail(c, "out of memory"); return; }
    uint32_t nd = rd32(c, t->name);
    if (c->failed) return;
    if (nd < 1 || nd > 4) { fail(c, "tensor '%s' has %u dimensions (1..4 supported)", t->name, nd); return; }
    t->n_dims = (int)nd;
    for (int i = 0; i < 4; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < nd; i++) {
        uint64_t d = rd64(c, t->name);
        if (d == 0 || d > ((uint64_t)1 << 40)) { fail(c, "tensor '%s' has bad dimension %llu", t->name, (unsigned long long)d); return; }
        t->ne[i] = (int64_t)d;
    }
    t->ggml_type = rd32(c, t->name);
    t->offset = rd64(c, t->name);
}

/* Element count overflow is excluded by the per-dimension bound (2^40) only
 * loosely; check the product explicitly. */
static int tensor_size(GgufTensor *t, uint64_t *nbytes)
{
    uint64_t n = 1;
    for (int i = 0; i < 4; i++) {
        if (n > ((uint64_t)1 << 50) / (uint64_t)t->ne[i]) return -1;
        n *= (uint64_t)t->ne[i];
    }
    KDtype dt = (KDtype)t->ggml_type;
    int blk = k_dtype_block(dt);
    if (t->ne[0] % blk) return -2;
    *nbytes = n / (uint64_t)blk * (uint64_t)k_dtype_block_bytes(dt);
    return 0;
}

GgufFile *gguf_open(const char *path, char *err, size_t errcap)
{
    if (err && errcap) err[0] = 0;
    GgufFile *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        if (err) snprintf(err, errcap, "%s: out of memory", path);
        free(f);
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err) snprintf(err, errcap, "%s: cannot open: %s", path, strerror(errno));
        gguf_close(f);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (err) snprintf(err, errcap, "%s: not a regular file", path);
        close(fd);
        gguf_close(f);
        return NULL;
    }
    f->size = (size_t)st.st_size;
    if (f->size < 24) {
        if (err) snprintf(err, errcap, "%s: too small to be a GGUF file (%zu bytes)", path, f->size);
        close(fd);
        gguf_close(f);
        return NULL;
    }
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        if (err) snprintf(err, errcap, "%s: mmap failed: %s", path, strerror(errno));
        gguf_close(f);
        return NULL;
    }
    f->map = m;

    Cursor c = {.p = f->map, .end = f->map + f->size, .f = f, .err = err, .errcap = errcap};
    const uint8_t *magic = take(&c, 4, "magic");
    if (memcmp(magic, "GGUF", 4) != 0) {
        fail(&c, "not a GGUF file (bad magic)");
        gguf_close(f);
        return NULL;
    }
    f->version = rd32(&c, "version");
    if (f->version != 2 && f->version != 3) {
        fail(&c, "GGUF version %u is not supported (2 and 3 are)", f->version);
        gguf_close(f);
        return NULL;
    }
    uint64_t n_tensors = rd64(&c, "tensor count"), n_kv = rd64(&c, "metadata count");
    /* each kv needs >= 12 bytes, each tensor info >= 28: bound the counts
     * before allocating */
    if (n_kv > f->size / 12 || n_tensors > f->size / 28) {
        fail(&c, "implausible counts (%llu keys, %llu tensors)", (unsigned long long)n_kv, (unsigned long long)n_tensors);
        gguf_close(f);
        return NULL;
    }
    f->kv = calloc(n_kv ? n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) {
        fail(&c, "out of memory");
        gguf_close(f);
        return NULL;
    }
    /* counted before parsing, so an entry that fails midway is still freed */
    for (uint64_t i = 0; i < n_kv && !c.failed; i++) {
        f->n_kv++;
        parse_kv(&c, &f->kv[i]);
    }
    for (uint64_t i = 0; i < n_tensors && !c.failed; i++) {
        f->n_tensors++;
        parse_tensor(&c, &f->tensors[i]);
    }
    if (c.failed) {
        gguf_close(f);
        return NULL;
    }

    f->alignment = 32;
    const GgufKV *al = gguf_find(f, "general.alignment");
    if (al) {
        int64_t a;
        if (gguf_kv_i64(al, &a) || a <= 0 || (a & (a - 1)) || a > 65536) {
            fail(&c, "general.alignment must be a power of two");
            gguf_close(f);
            return NULL;
        }
        f->alignment = (size_t)a;
    }
    uint64_t pos = (uint64_t)(c.p - f->map);
    f->data_start = (pos + f->alignment - 1) / f->alignment * f->alignment;
    for (size_t i = 0; i < f->n_tensors; i++) {
        GgufTensor *t = &f->tensors[i];
        if (!k_dtype_known((int)t->ggml_type)) continue;
        uint64_t nb = 0;
        int r = tensor_size(t, &nb);
        if (r == -2) {
            fail(&c, "tensor '%s': row length %lld is not a multiple of its type's block size", t->name, (long long)t->ne[0]);
        } else if (r) {
            fail(&c, "tensor '%s' is too large", t->name);
        } else if (t->offset > f->size || f->data_start > f->size - t->offset ||
                   nb > f->size - f->data_start - t->offset) {
            fail(&c, "tensor '%s' data lies outside the file (truncated download?)", t->name);
        }
        if (c.failed) {
            gguf_close(f);
            return NULL;
        }
        t->nbytes = nb;
        t->data = f->map + f->data_start + t->offset;
    }
    return f;
}

void gguf_close(GgufFile *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n_kv; i++) {
        free((char *)f->kv[i].key);
        free((uint64_t *)f->kv[i].str_offs);
    }
    for (size_t i = 0; i < f->n_tensors; i++) free((char *)f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    if (f->map) munmap((void *)f->map, f->size);
    free(f->path);
    free(f);
}

uint32_t gguf_version(const GgufFile *f) { return f->version; }
const char *gguf_path(const GgufFile *f) { return f->path; }
size_t gguf_alignment(const GgufFile *f) { return f->alignment; }
size_t gguf_n_kv(const GgufFile *f) { return f->n_kv; }
const GgufKV *gguf_kv(const GgufFile *f, size_t i) { return i < f->n_kv ? &f->kv[i] : NULL; }
size_t gguf_n_tensors(const GgufFile *f) { return f->n_tensors; }
const GgufTensor *gguf_tensor(const GgufFile *f, size_t i) { return i < f->n_tensors ? &f->tensors[i] : NULL; }

const GgufKV *gguf_find(const GgufFile *f, const char *key)
{
    for (size_t i = 0; i < f->n_kv; i++)
        if (strcmp(f->kv[i].key, key) == 0) return &f->kv[i];
    return NULL;
}

const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

/* ---- value conversion ----------------------------------------------------- */

static int scalar_i64(GgufType t, const void *p, int64_t *out)
{
    switch (t) {
    case GGUF_TYPE_UINT8: *out = *(const uint8_t *)p; return 0;
    case GGUF_TYPE_INT8: *out = *(const int8_t *)p; return 0;
    case GGUF_TYPE_BOOL: *out = *(const uint8_t *)p != 0; return 0;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return 0; }
    case GGUF_TYPE_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)v;
        return 0;
    }
    default: return -1;
    }
}

static int scalar_f64(GgufType t, const void *p, double *out)
{
    if (t == GGUF_TYPE_FLOAT32) { float v; memcpy(&v, p, 4); *out = v; return 0; }
    if (t == GGUF_TYPE_FLOAT64) { double v; memcpy(&v, p, 8); *out = v; return 0; }
    if (t == GGUF_TYPE_UINT64) { uint64_t v; memcpy(&v, p, 8); *out = (double)v; return 0; }
    int64_t i;
    if (scalar_i64(t, p, &i)) return -1;
    *out = (double)i;
    return 0;
}

int gguf_kv_i64(const GgufKV *kv, int64_t *out) { return scalar_i64(kv->type, kv->data, out); }
int gguf_kv_f64(const GgufKV *kv, double *out) { return scalar_f64(kv->type, kv->data, out); }

int gguf_kv_str(const GgufKV *kv, const char **s, size_t *len)
{
    if (kv->type != GGUF_TYPE_STRING) return -1;
    *s = kv->data;
    *len = (size_t)kv->str_len;
    return 0;
}

int gguf_arr_i64(const GgufKV *kv, uint64_t i, int64_t *out)
{
    if (kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return -1;
    size_t es = scalar_size(kv->arr_type);
    if (!es || kv->arr_type == GGUF_TYPE_FLOAT32 || kv->arr_type == GGUF_TYPE_FLOAT64) return -1;
    return scalar_i64(kv->arr_type, (const uint8_t *)kv->data + i * es, out);
}

int gguf_arr_f64(const GgufKV *kv, uint64_t i, double *out)
{
    if (kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return -1;
    size_t es = scalar_size(kv->arr_type);
    if (!es) return -1;
    return scalar_f64(kv->arr_type, (const uint8_t *)kv->data + i * es, out);
}

int gguf_arr_str(const GgufKV *kv, uint64_t i, const char **s, size_t *len)
{
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING || i >= kv->arr_n) return -1;
    const uint8_t *p = (const uint8_t *)kv->data + kv->str_offs[i];
    uint64_t n;
    memcpy(&n, p, 8);
    *s = (const char *)p + 8;
    *len = (size_t)n;
    return 0;
}

/* ---- keyed getters ---------------------------------------------------------- */

static const GgufKV *need(const GgufFile *f, const char *key, char *err, size_t errcap)
{
    const GgufKV *kv = gguf_find(f, key);
    if (!kv && err) snprintf(err, errcap, "%s: metadata key '%s' is missing", f->path, key);
    return kv;
}

static int wrong_type(const GgufFile *f, const GgufKV *kv, const char *want, char *err, size_t errcap)
{
    if (err) snprintf(err, errcap, "%s: metadata key '%s' has type %s, expected %s", f->path, kv->key,
                      gguf_type_name(kv->type), want);
    return -1;
}

int gguf_get_i64(const GgufFile *f, const char *key, int64_t *out, char *err, size_t errcap)
{
    const GgufKV *kv = need(f, key, err, errcap);
    if (!kv) return -1;
    if (gguf_kv_i64(kv, out)) return wrong_type(f, kv, "an integer", err, errcap);
    return 0;
}

int gguf_get_u32(const GgufFile *f, const char *key, uint32_t *out, char *err, size_t errcap)
{
    int64_t v;
    if (gguf_get_i64(f, key, &v, err, errcap)) return -1;
    if (v < 0 || v > (int64_t)UINT32_MAX) {
        if (err) snprintf(err, errcap, "%s: metadata key '%s' = %lld is out of range", f->path, key, (long long)v);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_f32(const GgufFile *f, const char *key, float *out, char *err, size_t errcap)
{
    const GgufKV *kv = need(f, key, err, errcap);
    if (!kv) return -1;
    double d;
    if (gguf_kv_f64(kv, &d)) return wrong_type(f, kv, "a number", err, errcap);
    *out = (float)d;
    return 0;
}

int gguf_get_bool(const GgufFile *f, const char *key, bool *out, char *err, size_t errcap)
{
    const GgufKV *kv = need(f, key, err, errcap);
    if (!kv) return -1;
    int64_t v;
    if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64 || gguf_kv_i64(kv, &v))
        return wrong_type(f, kv, "bool", err, errcap);
    *out = v != 0;
    return 0;
}

int gguf_get_str(const GgufFile *f, const char *key, const char **s, size_t *len, char *err, size_t errcap)
{
    const GgufKV *kv = need(f, key, err, errcap);
    if (!kv) return -1;
    if (gguf_kv_str(kv, s, len)) return wrong_type(f, kv, "str", err, errcap);
    return 0;
}
