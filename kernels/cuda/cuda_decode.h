/*
 * kernels/cuda/cuda_decode.h — split-K flash-decoding attention for decode
 * rows (one new query row per sequence) over the token-granular KV slot pool,
 * bf16, head_dim 64 or 128, 1..8 query heads per kv head (GQA).
 *
 *   row r, kv head h:  slots[row_off[r] .. + row_len[r])  split into n(len) chunks
 *
 *        keys ──►  | chunk 0 | chunk 1 | ... | chunk n-1 |
 *                      │         │               │        one block each
 *                      ▼         ▼               ▼        (4 warps, the G query
 *                  (m,l,acc)  (m,l,acc)  ...  (m,l,acc)    heads of the group)
 *                      └─────────┴──── merge ────┘ ──► out[r][h*G .. h*G+G)
 *
 * Inside a block, a key's K (and V) row of head_dim bf16 values is read by
 * head_dim/8 lanes, 16 bytes each (coalesced: 256 bytes for head_dim 128),
 * every lane several keys ahead, K and V loads issued together; each load
 * serves all G query heads of the group.
 *
 * Invariants:
 *   - A row's split depends on its own length and on (max_split, min_chunk)
 *     only: cu_decode_split below, the same function on host and device.
 *     So the same row gives the same bits whatever else is in the launch and
 *     whatever max_len bounded it: a launch captured in a CUDA graph with a
 *     large max_len computes what an eager launch with the exact one does.
 *   - Lengths and offsets are read from device memory; the launch's shape
 *     (grid) depends on n_rows, max_len, max_split and min_chunk only.
 *   - row_len[r] <= 0: the row's output is zeros (padded rows of a graph).
 *   - cu_attention_decode_rope (RoPE + the KV write fused in): the same
 *     split, the same key order; only where the last key comes from
 *     differs (shared memory, holding the bytes the pool gets).
 *   - Rows whose split is 1 are written by the main kernel; the others go
 *     through the work space (cu_decode_ws_bytes) and are merged, in chunk
 *     order, by the last block of the (row, kv head) to finish when the
 *     caller gives counters (one launch), else by a second kernel: the same
 *     bits either way.
 *
 * Errors as cuda_ops.h: recorded on the context, nothing aborts.
 * Threads: as the CuCtx (one host thread at a time).
 */
#ifndef SGL_KERNELS_CUDA_DECODE_H
#define SGL_KERNELS_CUDA_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of work space a launch for n_rows rows and at most max_split
 * chunks a row needs (0 when max_split is 1). */
size_t cu_decode_ws_bytes(int n_rows, int n_head, int head_dim, int max_split);

/* Attention for n_rows decode rows, arguments as cu_attention (q rows of
 * stride ldq, out rows of n_head * head_dim); every row_len[r] <= max_len.
 * A row of length len is split into n = min(ceil(len / min_chunk),
 * max_split) chunks of ceil(len / n) keys rounded up to 16 (fewer when the
 * rounding covers the row). ws: cu_decode_ws_bytes(n_rows, n_head,
 * head_dim, max_split) bytes, or NULL when max_split is 1. counters: NULL,
 * or n_rows * n_head_kv ints that are 0 (made 0 once, e.g. cu_memset; each
 * launch leaves them 0). */
void cu_attention_decode(CuCtx *c, const uint16_t *q, int ldq, int n_rows, int n_head, int n_head_kv, int head_dim,
                         float scale, const uint16_t *k_pool, const uint16_t *v_pool, const int32_t *slots,
                         const int32_t *row_off, const int32_t *row_len, int max_len, int max_split, int min_chunk,
                         float *ws, int *counters, uint16_t *out);

/* The same over an fp8 e4m3 pool (scale 1.0: K and V are the e4m3 values
 * themselves, widened exactly; cuda_fp8.cuh), head_dim/8 lanes reading 8
 * bytes each. */
void cu_attention_decode_fp8(CuCtx *c, const uint16_t *q, int ldq, int n_rows, int n_head, int n_head_kv,
                             int head_dim, float scale, const uint8_t *k_pool, const uint8_t *v_pool,
                             const int32_t *slots, const int32_t *row_off, const int32_t *row_len, int max_len,
                             int max_split, int min_chunk, float *ws, int *counters, uint16_t *out);

/* rope_kv (cu_rope_kv_write_f, or _fp8 when kv_fp8) then the decode
 * attention above, in one launch: the same attention output bits and the
 * same pool bytes. qkv holds the rows [q heads | k heads | v heads] (stride
 * (n_head + 2 * n_head_kv) * head_dim); each block rotates its group's q
 * heads into shared memory (qkv's q is left unrotated: nothing after
 * attention reads it), and the block of a row's last chunk rotates the kv
 * head's new key, writes it and the value into slot wslot[r] of the pools
 * (bf16, or e4m3 when kv_fp8: cu_rope_kv_write_fp8's rounding) and uses
 * them for the row's last key when that key is slot wslot[r]. Rows with
 * wslot[r] < 0 write nothing and read every key from the pool (a graph's
 * padding: row_len 0 too). Exact for decode steps, where no row's context
 * holds another row's wslot (nor its own before its last key): such a key
 * would be read from the pool while it is being written. */
void cu_attention_decode_rope(CuCtx *c, uint16_t *qkv, int n_rows, int n_head, int n_head_kv, int head_dim,
                              float scale, void *k_pool, void *v_pool, int kv_fp8, const int32_t *slots,
                              const int32_t *row_off, const int32_t *row_len, int max_len, int max_split,
                              int min_chunk, float *ws, int *counters, int rot_dim, const float *inv_freq, int neox,
                              const int32_t *pos, const int32_t *wslot, uint16_t *out);

/* For profiling a decode step under Nsight Compute (ncu
 * --profile-from-start off): on 1 starts, 0 stops the profiled range. */
void cu_profile_range(int on);

#ifdef __cplusplus
}
#endif

#endif
