/*
 * runtime/gguf_write.h — writing GGUF files (version 3), the format
 * runtime/gguf.h reads; for `sgl make-model --gguf` (runtime/make_gguf.c).
 *
 *   w = gguf_writer_new()
 *   gguf_w_str/u32/f32/bool/str_array/i32_array(w, key, ...)   metadata, in order
 *   gguf_w_tensor(w, name, dtype, ne, n_dims)                   tensor infos, in order
 *   gguf_writer_begin(w, path)      header + infos + padding written
 *   gguf_writer_append(w, bytes)    the tensors' data, in the order declared,
 *                                   in pieces of any size; the writer pads to
 *                                   the alignment (32) between tensors
 *   gguf_writer_finish(w)           checks every tensor got all its bytes
 *   gguf_writer_free(w)
 *
 * Invariants: a tensor's size is k_row_bytes(dtype, ne[0]) * ne[1] * ne[2] *
 * ne[3] (ne[0] a whole number of blocks); offsets are multiples of 32 from
 * the start of the data section; metadata and infos cannot be added after
 * begin. Ownership: the writer copies keys, names and values; it owns its
 * FILE until finish/free. Threads: one at a time. Errors: -1 with a message
 * in the writer (gguf_writer_error); every later call then fails too.
 */
#ifndef SGL_RUNTIME_GGUF_WRITE_H
#define SGL_RUNTIME_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

typedef struct GgufWriter GgufWriter;

GgufWriter *gguf_writer_new(void);
void gguf_writer_free(GgufWriter *w);          /* closes (and keeps) a partly written file */
const char *gguf_writer_error(const GgufWriter *w);

int gguf_w_str(GgufWriter *w, const char *key, const char *val);
int gguf_w_u32(GgufWriter *w, const char *key, uint32_t val);
int gguf_w_f32(GgufWriter *w, const char *key, float val);
int gguf_w_bool(GgufWriter *w, const char *key, int val);
int gguf_w_str_array(GgufWriter *w, const char *key, const char *const *vals, size_t n);
int gguf_w_i32_array(GgufWriter *w, const char *key, const int32_t *vals, size_t n);

/* ne[0] innermost (the row length), n_dims 1..4. */
int gguf_w_tensor(GgufWriter *w, const char *name, KDtype t, const int64_t *ne, int n_dims);

int gguf_writer_begin(GgufWriter *w, const char *path);
int gguf_writer_append(GgufWriter *w, const void *data, size_t n);
int gguf_writer_finish(GgufWriter *w);

#endif
