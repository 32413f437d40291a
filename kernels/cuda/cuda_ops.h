/*
 * kernels/cuda/cuda_ops.h — the CUDA backend's ops on device memory, bf16
 * activations, for one Hopper GPU (sm_90a). A C interface over
 * kernels/cuda/cuda_ops.cu, so C callers (kernels/cuda/cuda_backend.c, which
 * fills the KBackend tables with these, tests/gpu, bench/gpu) need no CUDA
 * headers.
 *
 *   host ── cu_* call ──> CuCtx (one stream, one cuBLASLt handle, workspace)
 *                               │ launches, in issue order, on the stream
 *                               v
 *   device buffers: weights (bf16) · activations (bf16) · KV slot pool (bf16)
 *                   · int32 index arrays (tokens, positions, slots, rows)
 *
 * Invariants:
 *   - Every pointer an op takes is device memory (cu_alloc). bf16 values are
 *     passed as uint16_t (their bit pattern); f32 only where named.
 *   - Everything that changes from one decode step to the next (tokens,
 *     positions, write slots, context lengths) is read from device arrays, so
 *     a step can be captured once in a CUDA graph and replayed.
 *   - A weight matrix W is [out][in] row-major (nn.Linear's layout) and a
 *     matmul computes y[n][out] = x[n][in] · Wᵀ, as kernels/backend.h says.
 *   - The KV pool is token-granular (the radix cache's layout): slot s of a
 *     layer holds k (or v) as kv_dim = n_head_kv * head_dim bf16 values at
 *     pool + s * kv_dim.
 *   - Attention, per query row r: its context is the slots
 *     slots[row_off[r] .. row_off[r] + row_len[r]), already holding this
 *     row's own k/v (causality is the caller's choice of row_len). Grouped
 *     query heads: q head h reads kv head h / (n_head / n_head_kv).
 *
 * Errors: an op that cannot launch records the first failure on the context;
 * cu_sync returns -1 and cu_error names it. Nothing aborts.
 *
 * Threads: a CuCtx is used by one host thread at a time.
 */
#ifndef SGL_KERNELS_CUDA_OPS_H
#define SGL_KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CuCtx CuCtx;

/* A context on the current device: NULL with a message in err when there is
 * no usable GPU or cuBLASLt cannot start. */
CuCtx *cu_ctx_new(char *err, size_t errcap);
void cu_ctx_free(CuCtx *c);
/* GPUs visible (0 without a driver or device); needs no context. */
int cu_device_count(void);
/* Device name, memory free/total in bytes, multiprocessor count. */
const char *cu_device_name(CuCtx *c);
void cu_mem_info(CuCtx *c, size_t *free_b, size_t *total_b);
int cu_sm_count(CuCtx *c);

/* The GPU the calling thread drives (the runtime's current device):
 * cu_ctx_new and every op use it (kernels/cuda/cuda_device.cu). 0 / -1. */
int cu_set_device(int device);
int cu_current_device(void);
void *cu_alloc(CuCtx *c, size_t bytes);            /* cudaMalloc; NULL on failure */
void cu_free(CuCtx *c, void *p);
void cu_upload(CuCtx *c, void *dst, const void *src, size_t bytes);
void cu_download(CuCtx *c, void *dst, const void *src, size_t bytes);
void cu_copy_d2d(CuCtx *c, void *dst, const void *src, size_t bytes);
void cu_memset(CuCtx *c, void *p, int value, size_t bytes);  /* stream-ordered */
/* Page-locked host memory (fast downloads); NULL on failure. */
void *cu_host_alloc(CuCtx *c, size_t bytes);
void cu_host_free(CuCtx *c, void *p);
int cu_sync(CuCtx *c);                             /* 0, or -1 (cu_error says why) */
const char *cu_error(CuCtx *c);                    /* first failure, or NULL; clears it */

/* Stream-ordered timing: a timer records on the stream; cu_timer_ms gives
 * the milliseconds between two recorded timers (after a sync). */
typedef struct CuTimer CuTimer;
CuTimer *cu_timer_new(CuCtx *c);
void cu_timer_record(CuCtx *c, CuTimer *t);
float cu_timer_ms(CuTimer *a, CuTimer *b);
void cu_timer_free(CuTimer *t);

/* Graphs: everything issued between begin and end is captured (not run);
 * cu_graph_launch replays it. */
typedef struct CuGraph CuGraph;
int cu_graph_begin(CuCtx *c);
CuGraph *cu_graph_end(CuCtx *c);
void cu_graph_launch(CuCtx *c, CuGraph *g);
void cu_graph_free(CuGraph *g);


/* ---- ops ------------------------------------------------------------------ */

/* bf16 values filled from a counter-based hash of (seed, index): uniform in
 * [-scale, scale), the same on every device for the same seed. */
void cu_fill_uniform_bf16(CuCtx *c, uint16_t *p, size_t n, uint64_t seed, float scale);
void cu_fill_bf16(CuCtx *c, uint16_t *p, size_t n, float value);

/* y[n][out] = x[n][in] · W[out][in]ᵀ through cuBLASLt (bf16 in and out, f32
 * accumulation). ldx / ldy: row strides of x and y in elements. */
void cu_gemm_bf16(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                  uint16_t *y, int ldy);

/* cu_gemm_bf16 with f32 y (logits). */
void cu_gemm_bf16_f32(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out, float *y,
                      int ldy);

/* y[r][i] += bias[i] for r < n, i < cols (row stride ldy), rounded to bf16. */
void cu_add_bias(CuCtx *c, uint16_t *y, int ldy, int n, int cols, const uint16_t *bias);

/* out[i] = table[tokens[i]] (rows of dim; dim a multiple of 8). */
void cu_embed(CuCtx *c, const uint16_t *table, int dim, const int32_t *tokens, int n, uint16_t *out);

/* Per row: when delta, h += delta first (h rounded to bf16 and written back:
 * the residual stream); then y = h / sqrt(mean(h²) + eps) * w. */
void cu_add_rmsnorm(CuCtx *c, uint16_t *h, const uint16_t *delta, const uint16_t *w, uint16_t *y,
                    int n, int dim, float eps);

/* qkv rows are [q: n_head*hd | k: n_head_kv*hd | v: n_head_kv*hd]. Rotates q
 * (in place) and k by position pos[r] with Hugging Face's rotate_half pairing
 * (x[i], x[i + hd/2]), inv_freq[p] = theta^(-2p/hd); writes the rotated k and
 * v into slot wslot[r] of k_pool / v_pool. */
void cu_rope_kv_write(CuCtx *c, uint16_t *qkv, int n, int n_head, int n_head_kv, int head_dim,
                      float theta, const int32_t *pos, const int32_t *wslot, uint16_t *k_pool,
                      uint16_t *v_pool);

/* cu_rope_kv_write with the model's inv_freq (rot_dim/2 f32 values in device
 * memory, scaling folded in) for the first rot_dim dims of each head, paired
 * NEOX (x[i], x[i + rot/2]) when neox, else NORM (x[2i], x[2i+1]). A row
 * with wslot[r] < 0 (a graph's padding) has q rotated and no k/v written. */
void cu_rope_kv_write_f(CuCtx *c, uint16_t *qkv, int n, int n_head, int n_head_kv, int head_dim, int rot_dim,
                        const float *inv_freq, int neox, const int32_t *pos, const int32_t *wslot,
                        uint16_t *k_pool, uint16_t *v_pool);
/* The same into fp8 e4m3 pools (scale 1.0): k and v rounded to bf16 as
 * above, then to e4m3 (nearest even, saturating; kernels/backend.h
 * k_f32_to_e4m3). */
void cu_rope_kv_write_fp8(CuCtx *c, uint16_t *qkv, int n, int n_head, int n_head_kv, int head_dim, int rot_dim,
                          const float *inv_freq, int neox, const int32_t *pos, const int32_t *wslot, uint8_t *k_pool,
                          uint8_t *v_pool);

/* out[r][i] = silu(gu[r][i]) * gu[r][ff + i]  (gu rows are [gate | up]). */
void cu_swiglu(CuCtx *c, const uint16_t *gu, int n, int ff, uint16_t *out);

/* Attention for n_rows query rows (see the header's invariants). q rows have
 * stride ldq elements (q inside a qkv buffer); out rows are n_head*head_dim.
 * head_dim is 64 or 128; n_head / n_head_kv at most 8. n_split > 1 splits each
 * row's context into n_split chunks of `chunk` slots (flash-decoding) merged
 * by a second kernel; n_split * chunk must cover the longest row_len. The
 * split work space is `ws` (cu_attn_ws_bytes bytes; NULL when n_split == 1). */
size_t cu_attn_ws_bytes(int n_rows, int n_head, int head_dim, int n_split);
void cu_attention(CuCtx *c, const uint16_t *q, int ldq, int n_rows, int n_head, int n_head_kv,
                  int head_dim, float scale, const uint16_t *k_pool, const uint16_t *v_pool,
                  const int32_t *slots, const int32_t *row_off, const int32_t *row_len, int n_split,
                  int chunk, float *ws, uint16_t *out);

/* cu_attention on the tensor cores: one warp per (row, kv head, split) with
 * the group's query heads as the rows of one 16-row tile (at most 16 per kv
 * head); same arguments and work space. Correct (test_cuda_ops) but slower
 * than cu_attention at long contexts on an H100 (one warp a block hides too
 * little latency: bench/gpu/results/h100-engine-v5-tcdecode.log), so the
 * backend does not use it; kept as the starting point of a multi-warp
 * version. */
void cu_attention_decode_tc(CuCtx *c, const uint16_t *q, int ldq, int n_rows, int n_head, int n_head_kv,
                            int head_dim, float scale, const uint16_t *k_pool, const uint16_t *v_pool,
                            const int32_t *slots, const int32_t *row_off, const int32_t *row_len, int n_split,
                            int chunk, float *ws, uint16_t *out);

/* Prefill attention on the tensor cores (FlashAttention-2 style). tiles is
 * n_tiles int32 quadruples (row0, rows, slot_off, len0), rows <=
 * cu_attn_tile_rows(): rows row0 .. row0 + rows of one sequence whose
 * context slots start at slots[slot_off]; row row0 + i attends to the first
 * len0 + i of them (its own k/v written already). Same shapes as
 * cu_attention. */
int cu_attn_tile_rows(void);
void cu_attention_prefill(CuCtx *c, const uint16_t *q, int ldq, int n_head, int n_head_kv, int head_dim,
                          float scale, const uint16_t *k_pool, const uint16_t *v_pool, const int32_t *slots,
                          const int32_t *tiles, int n_tiles, uint16_t *out);

/* ids[r] = argmax over logits row r (length v; the lowest index on ties). */
void cu_argmax(CuCtx *c, const uint16_t *logits, int n, int v, int32_t *ids);
void cu_argmax_f32(CuCtx *c, const float *logits, int n, int v, int32_t *ids);

/* p[i] += by for i < n (decode-step counters kept on the device). */
void cu_add_i32(CuCtx *c, int32_t *p, int n, int by);

/* ---- for kernels in their own .cu files and libraries that queue on the
 * context's stream (cuda_prefill.cu, cuda_gemv.cu, cuda_sample.cu, NCCL) ----
 * cu_stream: the context's cudaStream_t (as void *, this header has no CUDA
 * types); cu_fail: records a failure as the ops do (the first one is kept). */
void *cu_stream(CuCtx *c);
void cu_fail(CuCtx *c, const char *what, const char *why);
/* fp8 (kernels/cuda/cuda_fp8.cu): the context's cuBLASLt handle
 * (cublasLtHandle_t) and work space, and the device's compute capability
 * as major * 10 + minor (90 for Hopper). */
void *cu_lt_handle(CuCtx *c);
void *cu_lt_workspace(CuCtx *c, size_t *bytes);
int cu_compute_capability(CuCtx *c);

/* bf16 <-> f32 on the host (round to nearest even), for tests and loaders. */
uint16_t cu_f32_to_bf16(float f);
float cu_bf16_to_f32(uint16_t b);

#ifdef __cplusplus
}
#endif

#endif
