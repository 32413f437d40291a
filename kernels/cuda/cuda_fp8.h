/*
 * kernels/cuda/cuda_fp8.h — fp8 e4m3 matmuls of more than a few rows
 * (prefill, large decode batches) through cuBLASLt (kernels/cuda/cuda_fp8.cu);
 * decode rows (n <= 8) go to cuda_gemv.h's cu_gemv_fp8 instead.
 *
 *   x bf16 [n][in] ──cu_quant_rows_fp8──► xq e4m3 [n][in], sx[n]   (per token)
 *   W e4m3 [out][in], sw[out]                                     (per channel, at load)
 *        └──────────── cu_gemm_fp8 ───────────► y bf16 [n][out]
 *        y[t][o] = bf16(sx[t] · sw[o] · Σ_i xq[t][i] · wq[o][i])   (f32 sums)
 *
 * Two ways to apply the scales (CuFp8Mode):
 *   OUTER     cuBLASLt's outer-vector scaling (CUBLASLT_MATMUL_MATRIX_SCALE_
 *             OUTER_VEC_32F, CUDA 12.9+: sw as A's per-row, sx as B's
 *             per-column scales): one rounding, in the GEMM's epilogue
 *   EPILOGUE  the GEMM without scales into y (bf16), then one kernel
 *             multiplying by sx[t]·sw[o]: two roundings (the unscaled sum
 *             to bf16, then the scaled value)
 *   AUTO      OUTER where cuBLASLt offers an algorithm for the shape, else
 *             EPILOGUE (decided per shape, once)
 *
 * Invariants:
 *   - sx[t] = max_i |x[t][i]| / 448 (1 for a zero row), xq = e4m3(x · (1 /
 *     sx)), rounding to nearest even, saturating: cu_quant_fp8's rule for
 *     weight rows, and kernels/backend.h k_f32_to_e4m3's.
 *   - No allocation and no host synchronisation in either call: capturable
 *     in a CUDA graph (plans are made on first use of a shape, on the host).
 *   - in a multiple of 16, xq/wq 16-byte aligned (cuBLASLt's fp8 rules).
 *
 * Threads: a CuFp8 belongs to one CuCtx and is used by its thread.
 */
#ifndef SGL_KERNELS_CUDA_FP8_H
#define SGL_KERNELS_CUDA_FP8_H

#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CU_FP8_AUTO = 0, CU_FP8_OUTER = 1, CU_FP8_EPILOGUE = 2 } CuFp8Mode;

typedef struct CuFp8 CuFp8;

CuFp8 *cu_fp8_new(CuCtx *c, CuFp8Mode mode);
void cu_fp8_free(CuFp8 *f);

/* xq[n][in] and sx[n] from bf16 x[n][in] (row stride ldx). */
void cu_quant_rows_fp8(CuCtx *c, const uint16_t *x, int ldx, int n, int in, uint8_t *xq, float *sx);

/* y[n][out] (row stride ldy) as above; the mode the shape ran in comes
 * back in *used when used is not NULL (OUTER or EPILOGUE). */
void cu_gemm_fp8(CuFp8 *f, const uint8_t *xq, const float *sx, int n, int in, const uint8_t *wq, const float *sw,
                 int out, uint16_t *y, int ldy, CuFp8Mode *used);

#ifdef __cplusplus
}
#endif

#endif
