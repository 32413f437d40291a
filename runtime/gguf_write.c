/*
 * runtime/gguf_write.c — GGUF v3 writer (see gguf_write.h; the layout is
 * the one runtime/gguf.h documents).
 */
#include "runtime/gguf_write.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/gguf.h"

enum { ALIGN = 32 };

typedef struct {
    char *name;
    KDtype type;
    int n_dims;
    int64_t ne[4];
    uint64_t size, offset;
} WTensor;

struct GgufWriter {
    unsigned char *kv;          /* the serialized metadata */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    WTensor *t;
    int n_t, cap_t;
    uint64_t data_size;         /* offsets so far, padded */
    FILE *f;
    char *path;
    int cur;                    /* tensor being appended */
    uint64_t cur_done;          /* its bytes so far */
    int begun, failed;
    char err[512];
};

static int fail(GgufWriter *w, const char *fmt, ...)
{
    if (!w->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->err, sizeof w->err, fmt, ap);
        va_end(ap);
    }
    w->failed = 1;
    return -1;
}

GgufWriter *gguf_writer_new(void) { return calloc(1, sizeof(GgufWriter)); }

void gguf_writer_free(GgufWriter *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w->kv);
    free(w->path);
    free(w);
}

const char *gguf_writer_error(const GgufWriter *w) { return w->err; }

static int put(GgufWriter *w, const void *p, size_t n)
{
    if (w->failed) return -1;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        unsigned char *k = realloc(w->kv, cap);
        if (!k) return fail(w, "gguf writer: out of memory");
        w->kv = k;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 0;
}

static int put_u32(GgufWriter *w, uint32_t v) { return put(w, &v, 4); }   /* little-endian hosts only (x86, arm) */
static int put_u64(GgufWriter *w, uint64_t v) { return put(w, &v, 8); }

static int put_string(GgufWriter *w, const char *s)
{
    size_t n = strlen(s);
    return put_u64(w, n) || put(w, s, n);
}

static int key(GgufWriter *w, const char *k, GgufType type)
{
    if (w->begun) return fail(w, "gguf writer: metadata '%s' after the header was written", k);
    w->n_kv++;
    return put_string(w, k) || put_u32(w, (uint32_t)type);
}

int gguf_w_str(GgufWriter *w, const char *k, const char *val)
{
    return key(w, k, GGUF_TYPE_STRING) || put_string(w, val);
}

int gguf_w_u32(GgufWriter *w, const char *k, uint32_t val) { return key(w, k, GGUF_TYPE_UINT32) || put_u32(w, val); }

int gguf_w_f32(GgufWriter *w, const char *k, float val) { return key(w, k, GGUF_TYPE_FLOAT32) || put(w, &val, 4); }

int gguf_w_bool(GgufWriter *w, const char *k, int val)
{
    unsigned char b = val != 0;
    return key(w, k, GGUF_TYPE_BOOL) || put(w, &b, 1);
}

int gguf_w_str_array(GgufWriter *w, const char *k, const char *const *vals, size_t n)
{
    if (key(w, k, GGUF_TYPE_ARRAY) || put_u32(w, GGUF_TYPE_STRING) || put_u64(w, n)) return -1;
    for (size_t i = 0; i < n; i++)
        if (put_string(w, vals[i])) return -1;
    return 0;
}

int gguf_w_i32_array(GgufWriter *w, const char *k, const int32_t *vals, size_t n)
{
    return key(w, k, GGUF_TYPE_ARRAY) || put_u32(w, GGUF_TYPE_INT32) || put_u64(w, n) || put(w, vals, n * 4);
}

int gguf_w_tensor(GgufWriter *w, const char *name, KDtype type, const int64_t *ne, int n_dims)
{
    if (w->failed) return -1;
    if (w->begun) return fail(w, "gguf writer: tensor '%s' after the header was written", name);
    if (n_dims < 1 || n_dims > 4) return fail(w, "gguf writer: %s: %d dimensions", name, n_dims);
    int blk = k_dtype_block(type);
    if (!blk || ne[0] % blk) return fail(w, "gguf writer: %s: rows of %lld are not whole %s blocks", name,
                                         (long long)ne[0], k_dtype_name(type));
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        WTensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return fail(w, "gguf writer: out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    WTensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return fail(w, "gguf writer: out of memory");
    t->type = type;
    t->n_dims = n_dims;
    t->size = k_row_bytes(type, ne[0]);
    for (int d = 0; d < 4; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        if (d) t->size *= (uint64_t)t->ne[d];
    }
    t->offset = w->data_size;
    w->data_size += (t->size + ALIGN - 1) / ALIGN * ALIGN;
    w->n_t++;
    return 0;
}

static int write_all(GgufWriter *w, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, w->f) != n) return fail(w, "%s: %s", w->path, strerror(errno));
    return 0;
}

static int pad(GgufWriter *w, uint64_t len)
{
    static const unsigned char zeros[ALIGN];
    return write_all(w, zeros, (size_t)((ALIGN - len % ALIGN) % ALIGN));
}

int gguf_writer_begin(GgufWriter *w, const char *path)
{
    if (w->failed) return -1;
    /* the tensor infos go after the metadata, in the same buffer */
    for (int i = 0; i < w->n_t; i++) {
        const WTensor *t = &w->t[i];
        if (put_string(w, t->name) || put_u32(w, (uint32_t)t->n_dims)) return -1;
        for (int d = 0; d < t->n_dims; d++)
            if (put_u64(w, (uint64_t)t->ne[d])) return -1;
        if (put_u32(w, (uint32_t)t->type) || put_u64(w, t->offset)) return -1;
    }
    w->begun = 1;
    if (!(w->path = strdup(path))) return fail(w, "gguf writer: out of memory");
    if (!(w->f = fopen(path, "wb"))) return fail(w, "%s: %s", path, strerror(errno));
    uint32_t version = 3;
    uint64_t nt = (uint64_t)w->n_t;
    if (write_all(w, "GGUF", 4) || write_all(w, &version, 4) || write_all(w, &nt, 8) || write_all(w, &w->n_kv, 8) ||
        write_all(w, w->kv, w->kv_len))
        return -1;
    return pad(w, 24 + w->kv_len);
}

int gguf_writer_append(GgufWriter *w, const void *data, size_t n)
{
    const unsigned char *p = data;
    if (w->failed) return -1;
    if (!w->f) return fail(w, "gguf writer: data before gguf_writer_begin");
    while (n) {
        if (w->cur >= w->n_t) return fail(w, "%s: more tensor data than the tensors declared", w->path);
        WTensor *t = &w->t[w->cur];
        uint64_t left = t->size - w->cur_done;
        size_t take = n < left ? n : (size_t)left;
        if (write_all(w, p, take)) return -1;
        p += take;
        n -= take;
        w->cur_done += take;
        if (w->cur_done == t->size) {
            if (pad(w, t->size)) return -1;
            w->cur++;
            w->cur_done = 0;
        }
    }
    return 0;
}

int gguf_writer_finish(GgufWriter *w)
{
    if (w->failed) return -1;
    if (!w->f) return fail(w, "gguf writer: finish before begin");
    if (w->cur != w->n_t)
        return fail(w, "%s: tensor '%s' got %llu of its %llu bytes", w->path, w->t[w->cur].name,
                    (unsigned long long)w->cur_done, (unsigned long long)w->t[w->cur].size);
    int rc = fclose(w->f);
    w->f = NULL;
    if (rc) return fail(w, "%s: %s", w->path, strerror(errno));
    return 0;
}
