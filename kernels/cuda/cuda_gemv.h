/*
 * kernels/cuda/cuda_gemv.h — small-batch matmul for decode (n <= 8 rows of
 * x against bf16 weights [out][in]), memory-bound: every weight byte is read
 * once, 16 bytes a load (kernels/cuda/cuda_gemv.cu).
 *
 *   block = 16 output rows × all of `in`, 8 warps splitting `in`:
 *
 *        in ──► | w0 w1 .. w7 | w0 w1 .. w7 | ...     (128 columns a warp-step)
 *   W rows r0..r0+15 ─┘
 *   each warp: mma m16n8k16 with the 16 weight rows as A and the n <= 8 x
 *   rows as B (both loaded straight from global memory in the same permuted
 *   k order, so no shuffles); the 8 warps' 16x8 partials summed in smem
 *   (the split-K), then bias, rounding, store
 *
 * Invariants:
 *   - y[t][o] = bf16(Σ_i x[t][i]·W[o][i]) (f32 accumulation), then with a
 *     bias bf16(y + bias[o]): cuBLASLt + cu_add_bias's rounding. The f32
 *     form (logits) stores the sum unrounded.
 *   - Shapes it takes (cu_gemv_fits): 1 <= n <= 8, in a multiple of 32, ldx
 *     a multiple of 8, x, w 16-byte aligned; any out. Others are the
 *     caller's to send elsewhere (cuBLASLt).
 *   - No allocation, no host synchronisation: capturable in a CUDA graph.
 *     The summation order depends on `in` only, never on n: a row's result
 *     does not change with the batch it is in.
 *
 * Threads: as CuCtx (one host thread at a time).
 */
#ifndef SGL_KERNELS_CUDA_GEMV_H
#define SGL_KERNELS_CUDA_GEMV_H

#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CU_GEMV_MAX_N = 8 };

/* 1 when cu_gemv_bf16 / cu_gemv_bf16_f32 take this shape. */
int cu_gemv_fits(int n, int in, int ldx, const void *x, const void *w);

/* y[n][out] (row stride ldy) = x[n][in] (row stride ldx) · Wᵀ (+ bias[out]
 * when bias), bf16. */
void cu_gemv_bf16(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                  const uint16_t *bias, uint16_t *y, int ldy);

/* The same with f32 y and no bias (logits). */
void cu_gemv_bf16_f32(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out, float *y,
                      int ldy);

#ifdef __cplusplus
}
#endif

#endif
