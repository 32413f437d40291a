/*
 * runtime/gguf.h — read-only access to GGUF files (llama.cpp's model format).
 *
 * Owns: opening a .gguf by mmap, parsing its header (versions 2 and 3),
 * the metadata key/value table and the tensor-info table. Does not own:
 * what the keys mean (runtime/model.c reads the architecture keys,
 * runtime/tokenizer.c the tokenizer keys) or tensor dtypes' layouts
 * (kernels/backend.h).
 *
 * File layout (all little-endian):
 *
 *   "GGUF" u32 version | u64 n_tensors | u64 n_kv
 *   n_kv   x { str key | u32 type | value }
 *   n_tensors x { str name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to general.alignment (default 32)
 *   tensor data: tensor i lives at data_start + offset_i
 *
 *   str = u64 length + bytes (no NUL). An array value is
 *   u32 elem_type | u64 count | count elements.
 *
 * Ownership: gguf_open returns a GgufFile the caller frees with gguf_close.
 * Every pointer it hands out (keys, names, string values, array elements,
 * tensor data) is borrowed from the file and valid until gguf_close.
 * Strings inside the file are not NUL-terminated: values come back as
 * (pointer, length). Keys and tensor names are copied at open time and are
 * NUL-terminated.
 *
 * Errors: functions that can fail return 0 / non-NULL on success and write a
 * one-line message (naming the file and what is wrong) into the caller's
 * err buffer (errcap bytes; err may be NULL) on failure.
 */
#ifndef SGL_RUNTIME_GGUF_H
#define SGL_RUNTIME_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Metadata value types, with their on-disk ids. */
#define GGUF_TYPES(X) \
    X(UINT8, 0, "u8")    X(INT8, 1, "i8")       X(UINT16, 2, "u16") \
    X(INT16, 3, "i16")   X(UINT32, 4, "u32")    X(INT32, 5, "i32")  \
    X(FLOAT32, 6, "f32") X(BOOL, 7, "bool")     X(STRING, 8, "str") \
    X(ARRAY, 9, "arr")   X(UINT64, 10, "u64")   X(INT64, 11, "i64") \
    X(FLOAT64, 12, "f64")

typedef enum {
#define X(name, id, str) GGUF_TYPE_##name = id,
    GGUF_TYPES(X)
#undef X
    GGUF_TYPE_COUNT_
} GgufType;

/* One metadata entry. For scalars `data` points at the value bytes in the
 * file; for strings at the bytes (len in str_len); for arrays at the first
 * element (arr_type / arr_n describe them). Read values with the accessors
 * below rather than through `data`. */
typedef struct {
    const char *key;            /* NUL-terminated copy */
    GgufType type;
    GgufType arr_type;          /* ARRAY only */
    uint64_t arr_n;             /* ARRAY only */
    const void *data;
    uint64_t str_len;           /* STRING only */
    const uint64_t *str_offs;   /* ARRAY of STRING only: offset of element i from `data` (internal index) */
} GgufKV;

typedef struct {
    const char *name;           /* NUL-terminated copy */
    uint32_t ggml_type;         /* ggml type id; same numbering as KDtype in kernels/backend.h */
    int n_dims;                 /* 1..4 */
    int64_t ne[4];              /* ne[0] = innermost (row length); unused dims are 1 */
    uint64_t offset;            /* from the start of the data section */
    const void *data;           /* into the mapping; NULL for an unknown type */
    uint64_t nbytes;            /* size of the data (from type and shape); 0 for an unknown type */
} GgufTensor;

typedef struct GgufFile GgufFile;

/* Opens and maps `path`. Checks magic, version (2 or 3), that every value
 * lies inside the file, and that the data of every tensor whose type
 * kernels/backend.h knows lies inside the file. Tensors of other types keep
 * nbytes = 0 and data = NULL (a model loader reports them by name). */
GgufFile *gguf_open(const char *path, char *err, size_t errcap);
void gguf_close(GgufFile *f);

uint32_t gguf_version(const GgufFile *f);
const char *gguf_path(const GgufFile *f);
size_t gguf_alignment(const GgufFile *f);

/* Metadata: iterate by index 0..gguf_n_kv-1, or find by exact key (NULL if absent). */
size_t gguf_n_kv(const GgufFile *f);
const GgufKV *gguf_kv(const GgufFile *f, size_t i);
const GgufKV *gguf_find(const GgufFile *f, const char *key);
const char *gguf_type_name(GgufType t);

/* Typed reads of a scalar entry. They convert between integer widths (and
 * bool), fail (return -1, message in err) on a type that does not fit or an
 * absent key. gguf_get_f32 accepts FLOAT32, FLOAT64 and integer types. */
int gguf_get_i64(const GgufFile *f, const char *key, int64_t *out, char *err, size_t errcap);
int gguf_get_u32(const GgufFile *f, const char *key, uint32_t *out, char *err, size_t errcap);
int gguf_get_f32(const GgufFile *f, const char *key, float *out, char *err, size_t errcap);
int gguf_get_bool(const GgufFile *f, const char *key, bool *out, char *err, size_t errcap);
/* STRING entry: pointer to bytes (not NUL-terminated) and its length. */
int gguf_get_str(const GgufFile *f, const char *key, const char **s, size_t *len,
                 char *err, size_t errcap);

/* The same conversions on an entry already found; -1 (no message) when the
 * entry's type does not convert (e.g. an array, or a string to a number). */
int gguf_kv_i64(const GgufKV *kv, int64_t *out);
int gguf_kv_f64(const GgufKV *kv, double *out);
int gguf_kv_str(const GgufKV *kv, const char **s, size_t *len);

/* Array elements (kv->type must be ARRAY; i < kv->arr_n; no bounds message).
 * Integer/bool arrays read through gguf_arr_i64, float arrays through
 * gguf_arr_f64 (which also accepts integer arrays); string arrays through
 * gguf_arr_str. Each returns -1 when the element type does not fit. */
int gguf_arr_i64(const GgufKV *kv, uint64_t i, int64_t *out);
int gguf_arr_f64(const GgufKV *kv, uint64_t i, double *out);
int gguf_arr_str(const GgufKV *kv, uint64_t i, const char **s, size_t *len);

/* Tensors. */
size_t gguf_n_tensors(const GgufFile *f);
const GgufTensor *gguf_tensor(const GgufFile *f, size_t i);
const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name);

#endif
