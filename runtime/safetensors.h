/*
 * runtime/safetensors.h — read-only access to .safetensors files and to a
 * Hugging Face directory's set of them (one file or index-sharded).
 *
 * Owns: mapping a file, parsing and validating its header, the tensor table
 * (name, dtype, shape, data pointer), and model.safetensors.index.json.
 * Does not own: what tensor names mean (runtime/hf.c) or dtype arithmetic
 * beyond element sizes.
 *
 * File layout (little-endian):
 *
 *   u64 N | N bytes of JSON header | data section
 *   header = { "__metadata__": {str: str}?,
 *              "<name>": {"dtype": "F32", "shape": [d0, d1, ...],
 *                         "data_offsets": [begin, end]}, ... }
 *
 * Offsets are relative to the data section. st_open checks every tensor:
 * known dtype, non-negative shape, end - begin == elements * element size,
 * begin <= end <= data section size. Tensors of any listed dtype are
 * indexed; callers that can only use F32/F16/BF16 check StTensor.dtype
 * (st_dtype_supported) and report the rest by name.
 *
 * Ownership: st_open / st_set_open return objects freed by st_close /
 * st_set_close; every pointer they hand out (names, data) is borrowed and
 * valid until then. Threads: read-only after open, so any thread may read.
 * Errors: NULL / non-zero return and a one-line message naming the file in
 * the caller's err buffer (errcap bytes; err may be NULL).
 */
#ifndef SGL_RUNTIME_SAFETENSORS_H
#define SGL_RUNTIME_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

/* name in the header, element bytes, the KDtype sgl computes with (or
 * K_DTYPE_INVALID when it cannot) */
#define ST_DTYPES(X)                       \
    X(F64,     8, K_DTYPE_INVALID)         \
    X(F32,     4, K_DTYPE_F32)             \
    X(F16,     2, K_DTYPE_F16)             \
    X(BF16,    2, K_DTYPE_BF16)            \
    X(F8_E4M3, 1, K_DTYPE_INVALID)         \
    X(F8_E5M2, 1, K_DTYPE_INVALID)         \
    X(I64,     8, K_DTYPE_INVALID)         \
    X(I32,     4, K_DTYPE_INVALID)         \
    X(I16,     2, K_DTYPE_INVALID)         \
    X(I8,      1, K_DTYPE_INVALID)         \
    X(U64,     8, K_DTYPE_INVALID)         \
    X(U32,     4, K_DTYPE_INVALID)         \
    X(U16,     2, K_DTYPE_INVALID)         \
    X(U8,      1, K_DTYPE_INVALID)         \
    X(BOOL,    1, K_DTYPE_INVALID)

typedef enum {
#define X(name, size, kd) ST_##name,
    ST_DTYPES(X)
#undef X
    ST_DTYPE_COUNT_
} StDtype;

const char *st_dtype_name(StDtype t);
int st_dtype_size(StDtype t);
/* The kernels' dtype for t, K_DTYPE_INVALID if sgl cannot compute with it. */
KDtype st_dtype_kdtype(StDtype t);
/* 1 for F32, F16, BF16. */
int st_dtype_supported(StDtype t);

#define ST_MAX_DIMS 8

typedef struct {
    const char *name;           /* NUL-terminated, owned by the file */
    StDtype dtype;
    int n_dims;                 /* 0 (scalar) .. ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS]; /* outermost first, as in PyTorch */
    const void *data;           /* into the mapping; may be unaligned */
    uint64_t nbytes;
    uint64_t n_elems;
} StTensor;

typedef struct StFile StFile;

StFile *st_open(const char *path, char *err, size_t errcap);
void st_close(StFile *f);

const char *st_path(const StFile *f);
int st_n_tensors(const StFile *f);
/* Tensors in name order. */
const StTensor *st_tensor(const StFile *f, int i);
/* NULL if absent. */
const StTensor *st_find(const StFile *f, const char *name);
/* A "__metadata__" string value, NULL if absent. */
const char *st_metadata(const StFile *f, const char *key);

/*
 * A model directory's tensors: `dir/model.safetensors`, or the shards that
 * `dir/model.safetensors.index.json` lists in its weight_map (every tensor
 * the index names must be in the shard it names; a tensor in no index entry
 * is still found in the shard that holds it; one name in two shards is an
 * error).
 */
typedef struct StSet StSet;

StSet *st_set_open(const char *dir, char *err, size_t errcap);
void st_set_close(StSet *s);

int st_set_n_files(const StSet *s);
const StFile *st_set_file(const StSet *s, int i);
/* NULL if no file has it; *file (may be NULL) gets the file holding it. */
const StTensor *st_set_find(const StSet *s, const char *name, const StFile **file);
/* Every tensor of every file, for iteration: n is st_set_n_tensors. */
int st_set_n_tensors(const StSet *s);
const StTensor *st_set_tensor(const StSet *s, int i);

#endif
