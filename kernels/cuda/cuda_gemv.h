/*
 * kernels/cuda/cuda_gemv.h — small-batch matmul for decode (n <= 8 rows of
 * x against bf16 weights [out][in]), memory-bound: every weight byte is read
 * once, 16 bytes a load (kernels/cuda/cuda_gemv.cu).
 *
 *   block = 8 warps = 8/S tiles of 16 output rows, S warps a tile
 *   splitting `in` (S = 1..8, the fewest that fill the GPU):
 *
 *        in ──► | k0 k1 .. kS-1 | k0 k1 .. | ...   (128 columns a warp-step)
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
 *   - Shapes it takes (cu_gemv_fits): 1 <= n <= 8, in a multiple of 8, ldx
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

/* Layouts: 1, 2, 4: weights straight into registers, that many adjacent
 * 16-byte loads a lane; CU_GEMV_STAGED: whole 512-byte runs of rows copied
 * into shared memory first (cp.async, 3 stages). | CU_GEMV_PREFETCH: the
 * weight loads ask L2 for 256-byte blocks (.L2::256B). */
enum { CU_GEMV_MAX_N = 8, CU_GEMV_STAGED = 8, CU_GEMV_PREFETCH = 16 };

/* 1 when cu_gemv_bf16 / cu_gemv_bf16_f32 take this shape. */
int cu_gemv_fits(int n, int in, int ldx, const void *x, const void *w);

/* y[n][out] (row stride ldy) = x[n][in] (row stride ldx) · Wᵀ (+ bias[out]
 * when bias), bf16. */
void cu_gemv_bf16(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                  const uint16_t *bias, uint16_t *y, int ldy);

/* The same with f32 y and no bias (logits). */
void cu_gemv_bf16_f32(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out, float *y,
                      int ldy);

/* The same with the layout chosen, for benchmarks: `split` warps per 16-row
 * tile (1, 2, 4, 8; 0: the fewest that fill the GPU; the staged layout has
 * its own), `vec` the layout (above), or 0: SGL_CUDA_GEMV_VEC's (a number:
 * 0x14 is 4 | CU_GEMV_PREFETCH) or the default. */
void cu_gemv_bf16_cfg(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                      const uint16_t *bias, uint16_t *y, int ldy, int split, int vec);
void cu_gemv_bf16_f32_cfg(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                          float *y, int ldy, int split, int vec);

/* ---- the row-stream layout (cu_gemv_rows) ----------------------------------
 *
 *   block = 4 warps = 4/KS groups of KS warps; a group owns R output rows
 *
 *   W row r0+j:  | s0: 512 B | s1: 512 B | s2 ... |   (a step: 256 columns)
 *                  warp k of the group takes steps k, k+KS, k+2KS, ...
 *   lane i of a warp reads 16 bytes (columns 8i..8i+7) of each of its R
 *   rows per step: one warp instruction = 512 contiguous bytes of one row,
 *   the access pattern of a copy; U steps of loads issued before their use
 *
 * x: n <= 8 rows, read through L1 at use; f32 FMAs (2 accumulators a row
 * pair, even / odd columns), then a shuffle tree over the lanes, then the
 * KS warps' partials summed in order through shared memory.
 *
 * Invariants (beside the header's):
 *   - The summation order of y[t][o] depends on `in` and KS only: never on
 *     n, R or U, so a row's result is the same alone or among 8, and under
 *     any (R, U) of the same KS (test_cuda_ops checks both bit-exactly).
 *   - The first U steps of weights are loaded before griddepcontrol.wait:
 *     launched with CU_GR_PDL (programmatic dependent launch, also inside a
 *     captured graph) the weight stream starts while the kernel before it
 *     finishes; x and y are touched only after the wait.
 *
 * cfg = CU_GR(R, U, KS) [| CU_GR_PDL]: R in {1, 2, 4}, U in {4, 8}, KS in
 * {1, 2, 4}; n > 1 ignores (R, U) and takes (2, 4) at KS 1, (1, 8) above
 * (the faster on an H100; the same sums either way). */
#define CU_GR(r, u, ks) ((r) | ((u) << 4) | ((ks) << 8))
enum { CU_GR_PDL = 1 << 12, CU_GR_TRIGGER = 1 << 13 };

/* y = x · Wᵀ (+ bias) as cu_gemv_bf16 (f32 == 0: bf16 y; f32 == 1: f32 y,
 * no bias) with the row-stream layout cfg. Shapes as cu_gemv_fits. */
void cu_gemv_rows(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                  const uint16_t *bias, void *y, int ldy, int f32, int cfg);

/* ---- gate|up with SwiGLU in the epilogue (cu_gemv_rows_swiglu) ------------
 *
 *   W [2ff][in]:  rows 0..ff-1 gate, ff..2ff-1 up (the model's fused L->gu)
 *   a warp's R rows: gate j..j+R/2-1 and up ff+j..ff+j+R/2-1 (a row stride
 *   of ff between the halves), streamed as cu_gemv_rows streams any rows
 *   epilogue: g = bf16(Σ gate), u = bf16(Σ up), act[t][j] = bf16(bf16(silu(g)) · u)
 *
 * act[n][ff] (row stride ldact) = cu_gemv_rows(W) into gu[n][2ff], then
 * cu_swiglu(gu): the same bits (test_cuda_ops checks it, alone and inside a
 * graph), the gu round trip and the swiglu kernel gone. The sums are
 * gr_sums's, so bit-identity holds whenever the unfused GEMV ran at the
 * same KS (any R, U): the caller passes the unfused choice's KS.
 * cfg = CU_GR(R, U, KS) [| CU_GR_PDL] [| CU_GR_TRIGGER]: R 2 (U 4 or 8) or
 * 4 (U 4), KS 1, 2, 4; n > 1 takes (2, 4). CU_GR_TRIGGER: execute
 * griddepcontrol.launch_dependents at entry (what k_swiglu did for the down
 * GEMV behind it). Shapes as cu_gemv_fits (in, ldx, x, w); any ff >= 1. */
void cu_gemv_rows_swiglu(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int ff,
                         uint16_t *act, int ldact, int cfg);

/* fp8 e4m3 weights (an option; not yet reachable from the model open path):
 * q[out][in] bytes and scale[out] f32 with W[o][i] = e4m3(q[o][i]) · scale[o].
 * cu_quant_fp8 makes them from bf16 W (scale = max|W[o]| / 448, round to
 * nearest even, saturating; in a multiple of 16). cu_gemv_fp8 is cu_gemv_bf16
 * on those weights: y = bf16(scale[o] · Σ x·e4m3) (+ bias as above), the
 * weights read as fp8 (half the bytes) and widened to bf16 exactly in
 * registers; n <= 8, in a multiple of 16. */
void cu_quant_fp8(CuCtx *c, const uint16_t *w, int in, int out, uint8_t *q, float *scale);
void cu_gemv_fp8(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint8_t *wq, const float *wscale,
                 int out, const uint16_t *bias, uint16_t *y, int ldy);
void cu_gemv_fp8_f32(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint8_t *wq, const float *wscale,
                     int out, float *y, int ldy);

#ifdef __cplusplus
}
#endif

#endif
