/*
 * kernels/cuda/cuda_backend.h — the CUDA backend's constructor, for
 * kernels/backend.c (k_backend_new with K_BACKEND_CUDA) and GPU tests.
 *
 * The backend fills KBackend's buffer ops (device memory on one stream) and
 * the device table KBackend.dev (bf16 activations); see cuda_backend.c.
 * Built only when nvcc is present (SGL_CUDA).
 */
#ifndef SGL_KERNELS_CUDA_BACKEND_H
#define SGL_KERNELS_CUDA_BACKEND_H

#include <stddef.h>

#include "kernels/backend.h"

/* A backend on GPU 0; NULL with a message when there is none or it cannot
 * start. Freed by its destroy op. */
KBackend *cuda_backend_new(char *err, size_t errcap);

/* The same on GPU `device` (0-based), which also becomes the calling
 * thread's current device; other threads call its bind op first. */
KBackend *cuda_backend_new_on(int device, char *err, size_t errcap);

/* For the NCCL communicator: a CUDA backend's GPU and its cudaStream_t. */
int cuda_backend_device(const KBackend *b);
void *cuda_backend_stream(const KBackend *b);
/* Its CuCtx (kernels/cuda/cuda_ops.h), for benches that time on its stream. */
void *cuda_backend_cu(const KBackend *b);
/* How attention runs decode rows (KDevAttn without tiles), for benches:
 * "split" (the default: the split-K kernel of cuda_decode.h, 2 blocks per
 * SM, chunks of at least 64 keys, chunks merged by the last block),
 * "split:BLOCKS:MIN_CHUNK[:0]" (:0: merged by a second kernel), or "row" (the
 * row kernel cu_attention, the earlier baseline; its chunks follow max_len,
 * so graph replays are not bit-equal to eager steps with it). The
 * environment's SGL_CUDA_DECODE sets it when the backend is made. Graphs
 * captured before a change keep the kernel they captured. 0, or -1 for a
 * spec it does not know. */
int cuda_backend_set_decode(KBackend *b, const char *spec);

/* Which kernel takes the small-batch matmuls (n <= 8 rows), for benches:
 * "auto" (the default: the per-shape table of cuda_backend.c, measured on
 * an H100, the row-stream GEMV where it beat cuBLASLt), "off" (cuBLASLt
 * for every matmul), "mma" (the tensor-core GEMV of cuda_gemv.h for every
 * shape it takes, as SGL_CUDA_GEMV_MAX_N did), or "rows:R:U:KS[:pdl]" (the
 * row-stream GEMV with that layout for every shape it takes). The
 * environment's SGL_CUDA_GEMV sets it when the backend is made. Graphs
 * captured before a change keep the kernels they captured. 0, or -1 for a
 * spec it does not know. */
int cuda_backend_set_gemv(KBackend *b, const char *spec);

/* KDevOps.matmul_swiglu, for tests and benches: "0" (the default: NULL, the
 * model runs gate|up then swiglu), "1" (gate|up with swiglu in the row-stream
 * GEMV's epilogue wherever the table picks that GEMV for gate|up, the two
 * ops elsewhere; the kernel lets the down GEMV start early, as swiglu did),
 * "no-trigger" (the same without that early start). The environment's
 * SGL_CUDA_FUSE_SWIGLU sets it when the backend is made. 0, or -1 for a
 * spec it does not know. */
int cuda_backend_set_fuse_swiglu(KBackend *b, const char *spec);

/* 1 when a GPU is visible. */
int cuda_backend_usable(void);

#endif
