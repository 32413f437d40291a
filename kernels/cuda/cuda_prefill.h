/*
 * kernels/cuda/cuda_prefill.h — prefill attention on the tensor cores with
 * mma.sync (kernels/cuda/cuda_prefill.cu), the backend's tiled attention.
 *
 *   tiles (row0, rows, slot_off, len0) ── one block per (tile, head group)
 *        │
 *        ├─ Q tile (64 rows × hd) ── cp.async ─► smem ── ldmatrix ─► registers
 *        ├─ K/V tiles of 64 slots, gathered by slot index, cp.async into two
 *        │  smem stages (tile j+1 loads while tile j computes)
 *        └─ per warp (16 query rows): S = Q·Kᵀ (mma m16n8k16, f32), online
 *           softmax in registers, P (bf16) · V accumulated in registers,
 *           O / l staged through smem, written as 16-byte rows
 *
 * Invariants:
 *   - Same arguments and meaning as cu_attention_prefill (cuda_ops.h): row
 *     row0 + i of a tile attends to slots[slot_off .. slot_off + len0 + i);
 *     rows <= cu_attn_tile_rows() (64). GQA: q head h reads kv head
 *     h / (n_head / n_head_kv). head_dim 64 or 128.
 *   - Rounding as the WMMA kernel's: scores and the softmax in f32 (2^x by
 *     exp2f with CU_PREFILL_EXACT_EXP, else ex2.approx), P rounded to bf16
 *     before P·V, O divided by the f32 row sum, rounded to bf16.
 *   - Key tiles past a warp's last visible key are skipped (causal); keys
 *     past a tile's end are zero-filled, never read.
 *   - No allocation, no host synchronisation: capturable in a CUDA graph.
 *
 * Threads: as CuCtx (one host thread at a time).
 */
#ifndef SGL_KERNELS_CUDA_PREFILL_H
#define SGL_KERNELS_CUDA_PREFILL_H

#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* flags: CU_PREFILL_EXACT_EXP: scores scaled first, exp2f (libdevice) for
 * the softmax: the arithmetic measured on the H100 (bench/gpu/NOTES.md) and
 * the backend's default; without it, ex2.approx with the scale folded into
 * one FFMA a score (fewer instructions; in test_cuda_ops, not yet timed). */
enum { CU_PREFILL_EXACT_EXP = 1 };

/* heads_per_block: 1 (4 warps a block) or 2 (8 warps; two query heads of one
 * kv group share each K/V tile; needs (n_head / n_head_kv) even); 0 picks. */
void cu_attention_prefill_mma(CuCtx *c, const uint16_t *q, int ldq, int n_head, int n_head_kv, int head_dim,
                              float scale, const uint16_t *k_pool, const uint16_t *v_pool, const int32_t *slots,
                              const int32_t *tiles, int n_tiles, uint16_t *out, int heads_per_block, int flags);

/* The same over an fp8 e4m3 pool (scale 1.0): K/V tiles loaded as bytes,
 * widened exactly to bf16 in shared memory (kernels/cuda/cuda_fp8.cuh). */
void cu_attention_prefill_mma_fp8(CuCtx *c, const uint16_t *q, int ldq, int n_head, int n_head_kv, int head_dim,
                                  float scale, const uint8_t *k_pool, const uint8_t *v_pool, const int32_t *slots,
                                  const int32_t *tiles, int n_tiles, uint16_t *out, int heads_per_block, int flags);

#ifdef __cplusplus
}
#endif

#endif
