/*
 * runtime/safetensors.c — .safetensors parsing (mmap + jansson) and the
 * sharded index. See safetensors.h for the format and the checks.
 */
#include "base/err.h"
#include "runtime/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)

static const struct {
    const char *name;
    int size;
    KDtype kd;
} dtype_info[] = {
#define X(name, size, kd) { #name, size, kd },
    ST_DTYPES(X)
#undef X
};
_Static_assert(sizeof dtype_info / sizeof *dtype_info == ST_DTYPE_COUNT_, "dtype table");

const char *st_dtype_name(StDtype t)
{
    return (unsigned)t < ST_DTYPE_COUNT_ ? dtype_info[t].name : "?";
}

int st_dtype_size(StDtype t) { return (unsigned)t < ST_DTYPE_COUNT_ ? dtype_info[t].size : 0; }

KDtype st_dtype_kdtype(StDtype t)
{
    return (unsigned)t < ST_DTYPE_COUNT_ ? dtype_info[t].kd : K_DTYPE_INVALID;
}

int st_dtype_supported(StDtype t) { return st_dtype_kdtype(t) != K_DTYPE_INVALID; }

static int dtype_from_name(const char *s)
{
    for (int i = 0; i < ST_DTYPE_COUNT_; i++)
        if (strcmp(s, dtype_info[i].name) == 0) return i;
    return -1;
}

/* ---- one file ------------------------------------------------------------ */

typedef struct {
    char *key, *value;
} StMeta;

struct StFile {
    char *path;
    void *map;
    size_t map_len;
    StTensor *tensors;          /* sorted by name; names owned */
    int n_tensors;
    StMeta *meta;
    int n_meta;
};

static int tensor_name_cmp(const void *a, const void *b)
{
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

static int tensor_begin_cmp(const void *a, const void *b)
{
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    const char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

/* Reads one tensor entry of the header into t. data_base / data_len is the
 * data section. Returns 0 or writes a message. */
static int parse_entry(const char *path, const char *name, json_t *v, const char *data_base,
                       uint64_t data_len, StTensor *t, char *err, size_t errcap)
{
    if (!json_is_object(v)) {
        err_fmt(err, errcap, "%s: tensor '%s': header entry is not an object", path, name);
        return -1;
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
        json_array_size(jo) != 2) {
        err_fmt(err, errcap, "%s: tensor '%s': needs dtype, shape and data_offsets [begin, end]",
                path, name);
        return -1;
    }
    int dt = dtype_from_name(json_string_value(jd));
    if (dt < 0) {
        err_fmt(err, errcap, "%s: tensor '%s': unknown dtype '%s'", path, name,
                json_string_value(jd));
        return -1;
    }
    t->dtype = (StDtype)dt;
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS) {
        err_fmt(err, errcap, "%s: tensor '%s': %zu dimensions (at most %d)", path, name, nd,
                ST_MAX_DIMS);
        return -1;
    }
    t->n_dims = (int)nd;
    uint64_t n = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0) {
            err_fmt(err, errcap, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                    path, name, i);
            return -1;
        }
        t->shape[i] = (int64_t)json_integer_value(d);
        if (__builtin_mul_overflow(n, (uint64_t)t->shape[i], &n)) {
            err_fmt(err, errcap, "%s: tensor '%s': shape overflows", path, name);
            return -1;
        }
    }
    for (size_t i = nd; i < ST_MAX_DIMS; i++) t->shape[i] = 1;
    t->n_elems = n;
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
        json_integer_value(je) < json_integer_value(jb)) {
        err_fmt(err, errcap, "%s: tensor '%s': bad data_offsets", path, name);
        return -1;
    }
    uint64_t begin = (uint64_t)json_integer_value(jb), end = (uint64_t)json_integer_value(je);
    uint64_t want;
    if (__builtin_mul_overflow(n, (uint64_t)dtype_info[dt].size, &want) || end - begin != want) {
        err_fmt(err, errcap,
                "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %s%s needs %llu",
                path, name, (unsigned long long)begin, (unsigned long long)end,
                (unsigned long long)(end - begin), dtype_info[dt].name,
                nd ? " of that shape" : "", (unsigned long long)want);
        return -1;
    }
    if (end > data_len) {
        err_fmt(err, errcap,
                "%s: tensor '%s': data ends at byte %llu of a %llu-byte data section "
                "(file truncated?)",
                path, name, (unsigned long long)end, (unsigned long long)data_len);
        return -1;
    }
    t->data = data_base + begin;
    t->nbytes = want;
    return 0;
}

static int parse_metadata(StFile *f, json_t *m, char *err, size_t errcap)
{
    if (!json_is_object(m)) {
        err_fmt(err, errcap, "%s: __metadata__ is not an object", f->path);
        return -1;
    }
    f->meta = calloc(json_object_size(m) + 1, sizeof *f->meta);
    if (!f->meta) goto nomem;
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v)) {
            err_fmt(err, errcap, "%s: __metadata__ value of '%s' is not a string", f->path, k);
            return -1;
        }
        StMeta *e = &f->meta[f->n_meta];
        e->key = strdup(k);
        e->value = strdup(json_string_value(v));
        f->n_meta++;
        if (!e->key || !e->value) goto nomem;
    }
    return 0;
nomem:
    err_fmt(err, errcap, "%s: out of memory", f->path);
    return -1;
}

static int parse_header(StFile *f, const char *hdr, size_t hlen, const char *data_base,
                        uint64_t data_len, char *err, size_t errcap)
{
    json_error_t je;
    json_t *root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        err_fmt(err, errcap, "%s: header is not valid JSON: %s (line %d, column %d)", f->path,
                je.text, je.line, je.column);
        return -1;
    }
    int rc = -1;
    StTensor **by_begin = NULL;
    if (!json_is_object(root)) {
        err_fmt(err, errcap, "%s: header is not a JSON object", f->path);
        goto out;
    }
    f->tensors = calloc(json_object_size(root) + 1, sizeof *f->tensors);
    if (!f->tensors) {
        err_fmt(err, errcap, "%s: out of memory", f->path);
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0) {
            if (parse_metadata(f, v, err, errcap)) goto out;
            continue;
        }
        StTensor *t = &f->tensors[f->n_tensors];
        if (parse_entry(f->path, k, v, data_base, data_len, t, err, errcap)) goto out;
        t->name = strdup(k);
        if (!t->name) {
            err_fmt(err, errcap, "%s: out of memory", f->path);
            goto out;
        }
        f->n_tensors++;
    }
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, tensor_name_cmp);

    /* no two tensors may share bytes */
    by_begin = malloc(((size_t)f->n_tensors + 1) * sizeof *by_begin);
    if (!by_begin) {
        err_fmt(err, errcap, "%s: out of memory", f->path);
        goto out;
    }
    for (int i = 0; i < f->n_tensors; i++) by_begin[i] = &f->tensors[i];
    qsort(by_begin, (size_t)f->n_tensors, sizeof *by_begin, tensor_begin_cmp);
    for (int i = 1; i < f->n_tensors; i++) {
        const StTensor *a = by_begin[i - 1], *b = by_begin[i];
        if ((const char *)a->data + a->nbytes > (const char *)b->data && b->nbytes && a->nbytes) {
            err_fmt(err, errcap, "%s: tensors '%s' and '%s' overlap", f->path, a->name, b->name);
            goto out;
        }
    }
    rc = 0;
out:
    free(by_begin);
    json_decref(root);
    return rc;
}

StFile *st_open(const char *path, char *err, size_t errcap)
{
    StFile *f = calloc(1, sizeof *f);
    int fd = -1;
    if (!f || !(f->path = strdup(path))) {
        err_fmt(err, errcap, "%s: out of memory", path);
        goto fail;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        err_fmt(err, errcap, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 8) {
        err_fmt(err, errcap, "%s: not a safetensors file (shorter than its 8-byte header size)",
                path);
        goto fail;
    }
    f->map_len = (size_t)st.st_size;
    f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        err_fmt(err, errcap, "%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    const unsigned char *b = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    if (hlen > ST_MAX_HEADER || hlen > f->map_len - 8) {
        err_fmt(err, errcap,
                "%s: header size %llu does not fit in the file (%zu bytes): not a safetensors file?",
                path, (unsigned long long)hlen, f->map_len);
        goto fail;
    }
    const char *hdr = (const char *)b + 8;
    if (parse_header(f, hdr, (size_t)hlen, hdr + hlen, f->map_len - 8 - hlen, err, errcap))
        goto fail;
    return f;
fail:
    if (fd >= 0) close(fd);
    st_close(f);
    return NULL;
}

void st_close(StFile *f)
{
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    for (int i = 0; i < f->n_tensors; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    free(f->path);
    free(f);
}

const char *st_path(const StFile *f) { return f->path; }

int st_n_tensors(const StFile *f) { return f->n_tensors; }

const StTensor *st_tensor(const StFile *f, int i)
{
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const StTensor *st_find(const StFile *f, const char *name)
{
    StTensor key = { .name = name };
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, tensor_name_cmp);
}

const char *st_metadata(const StFile *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

/* ---- a directory's set of files ----------------------------------------- */

typedef struct {
    const StTensor *t;
    int file;
} StEntry;

struct StSet {
    StFile **files;
    int n_files;
    StEntry *entries;           /* every tensor, sorted by name */
    int n_entries;
};

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const StEntry *)a)->t->name, ((const StEntry *)b)->t->name);
}

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Opens shard `name` unless already open; its index in s->files. */
static int open_shard(StSet *s, const char *dir, const char *name, char *err, size_t errcap)
{
    for (int i = 0; i < s->n_files; i++) {
        const char *p = st_path(s->files[i]);
        const char *base = strrchr(p, '/');
        base = base ? base + 1 : p;
        if (strcmp(base, name) == 0) return i;
    }
    if (strchr(name, '/') || strcmp(name, "..") == 0 || !*name) {
        err_fmt(err, errcap, "%s: shard name '%s' must be a plain file name", dir, name);
        return -1;
    }
    char *path = join_path(dir, name);
    if (!path) {
        err_fmt(err, errcap, "%s: out of memory", dir);
        return -1;
    }
    StFile *f = st_open(path, err, errcap);
    free(path);
    if (!f) return -1;
    StFile **nf = realloc(s->files, ((size_t)s->n_files + 1) * sizeof *nf);
    if (!nf) {
        st_close(f);
        err_fmt(err, errcap, "%s: out of memory", dir);
        return -1;
    }
    s->files = nf;
    s->files[s->n_files] = f;
    return s->n_files++;
}

static int open_index(StSet *s, const char *dir, const char *index_path, char *err,
                      size_t errcap)
{
    json_error_t je;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        err_fmt(err, errcap, "%s: %s (line %d)", index_path, je.text, je.line);
        return -1;
    }
    int rc = -1;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        err_fmt(err, errcap, "%s: no weight_map object", index_path);
        goto out;
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v)) {
            err_fmt(err, errcap, "%s: weight_map entry '%s' is not a file name", index_path, name);
            goto out;
        }
        int fi = open_shard(s, dir, json_string_value(v), err, errcap);
        if (fi < 0) goto out;
        if (!st_find(s->files[fi], name)) {
            err_fmt(err, errcap, "%s: tensor '%s' is listed in %s but that shard lacks it",
                    index_path, name, json_string_value(v));
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

StSet *st_set_open(const char *dir, char *err, size_t errcap)
{
    StSet *s = calloc(1, sizeof *s);
    char *single = join_path(dir, "model.safetensors");
    char *index = join_path(dir, "model.safetensors.index.json");
    if (!s || !single || !index) {
        err_fmt(err, errcap, "%s: out of memory", dir);
        goto fail;
    }
    if (file_exists(index)) {
        if (open_index(s, dir, index, err, errcap)) goto fail;
    } else if (file_exists(single)) {
        if (open_shard(s, dir, "model.safetensors", err, errcap) < 0) goto fail;
    } else {
        err_fmt(err, errcap, "%s: no model.safetensors or model.safetensors.index.json", dir);
        goto fail;
    }
    int total = 0;
    for (int i = 0; i < s->n_files; i++) total += st_n_tensors(s->files[i]);
    s->entries = malloc(((size_t)total + 1) * sizeof *s->entries);
    if (!s->entries) {
        err_fmt(err, errcap, "%s: out of memory", dir);
        goto fail;
    }
    for (int i = 0; i < s->n_files; i++)
        for (int j = 0; j < st_n_tensors(s->files[i]); j++)
            s->entries[s->n_entries++] = (StEntry){ st_tensor(s->files[i], j), i };
    qsort(s->entries, (size_t)s->n_entries, sizeof *s->entries, entry_cmp);
    for (int i = 1; i < s->n_entries; i++)
        if (strcmp(s->entries[i].t->name, s->entries[i - 1].t->name) == 0) {
            err_fmt(err, errcap, "%s: tensor '%s' appears in both %s and %s", dir,
                    s->entries[i].t->name, st_path(s->files[s->entries[i - 1].file]),
                    st_path(s->files[s->entries[i].file]));
            goto fail;
        }
    free(single);
    free(index);
    return s;
fail:
    free(single);
    free(index);
    st_set_close(s);
    return NULL;
}

void st_set_close(StSet *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) st_close(s->files[i]);
    free(s->files);
    free(s->entries);
    free(s);
}

int st_set_n_files(const StSet *s) { return s->n_files; }

const StFile *st_set_file(const StSet *s, int i)
{
    return i >= 0 && i < s->n_files ? s->files[i] : NULL;
}

const StTensor *st_set_find(const StSet *s, const char *name, const StFile **file)
{
    StTensor kt = { .name = name };
    StEntry key = { &kt, 0 };
    const StEntry *e =
        bsearch(&key, s->entries, (size_t)s->n_entries, sizeof *s->entries, entry_cmp);
    if (file) *file = e ? s->files[e->file] : NULL;
    return e ? e->t : NULL;
}

int st_set_n_tensors(const StSet *s) { return s->n_entries; }

const StTensor *st_set_tensor(const StSet *s, int i)
{
    return i >= 0 && i < s->n_entries ? s->entries[i].t : NULL;
}
