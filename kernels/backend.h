/*
 * kernels/backend.h — the compute interface the runtime calls: tensor dtypes,
 * the weight-tensor descriptor, and the backend table of ops.
 *
 * Owns: the dtype list (numbered as ggml numbers them, so GGUF type ids map
 * 1:1), block layouts' sizes, the KBackend and KDevOps function-pointer
 * tables. Does not own: any implementation (kernels/cpu fills the table for
 * the CPU; kernels/cuda/cuda_backend.c fills both for CUDA), model structure
 * (runtime/model.h).
 *
 * Two tables: K_OPS, which every backend fills (the CPU backends compute
 * with it; a device backend fills its buffer ops and refuses the host-f32
 * compute ops by name), and K_DEV_OPS (KDevOps, below), which a backend
 * whose activations live in its own memory fills and points KBackend.dev
 * at: runtime/model.c runs one or the other.
 *
 * Conventions shared by every K_OPS op:
 *   - Activations are f32, row-major, one row per token: x[n][dim].
 *   - A weight matrix W is a KTensor with ne[0] = in (row length) and
 *     ne[1] = out (number of rows), stored row by row in its dtype (quantized
 *     rows are a whole number of blocks). matmul computes y = x · Wᵀ, i.e.
 *     y[t][r] = sum_i x[t][i] * W[r][i], the layout of ggml and of
 *     PyTorch's nn.Linear weights (out, in).
 *   - Pointers are in the backend's memory space (host memory for the CPU).
 *   - A matmul weight's data does not change while the backend may use it:
 *     a backend may keep derived copies keyed by its address (the CPU
 *     backend's repacked tiles, kernels/cpu/cpu.c).
 *   - Arguments are checked once, at model load, not per op. The one
 *     failure an op can meet is running out of scratch memory: it then
 *     skips its work and the failure is reported by the `error` op, which
 *     the caller checks once per forward pass.
 *
 * Choosing one: a caller names the kind it wants in a KBackendConfig and
 * calls k_backend_new (kernels/backend.c, the list of backends this build
 * has), so that code above kernels/ (runtime/model.c) depends on this header
 * only and never on a backend's own. Tests that need a backend's private
 * switches still call its constructor (cpu_backend_new) directly.
 *
 * Ownership: a KBackend is created by k_backend_new or its own constructor
 * and freed by its own `destroy` op. KTensor data is borrowed (from a
 * mapping or a loader's buffer).
 */
#ifndef SGL_KERNELS_BACKEND_H
#define SGL_KERNELS_BACKEND_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* name, ggml type id, elements per block, bytes per block */
#define K_DTYPES(X)            \
    X(F32,   0,   1,   4)      \
    X(F16,   1,   1,   2)      \
    X(Q4_0,  2,  32,  18)      \
    X(Q4_1,  3,  32,  20)      \
    X(Q5_0,  6,  32,  22)      \
    X(Q5_1,  7,  32,  24)      \
    X(Q8_0,  8,  32,  34)      \
    X(Q8_1,  9,  32,  36)      \
    X(Q4_K, 12, 256, 144)      \
    X(Q5_K, 13, 256, 176)      \
    X(Q6_K, 14, 256, 210)      \
    X(Q8_K, 15, 256, 292)      \
    X(BF16, 30,   1,   2)

typedef enum {
#define X(name, id, blk, bytes) K_DTYPE_##name = id,
    K_DTYPES(X)
#undef X
    K_DTYPE_INVALID = -1
} KDtype;

/* 1 if `id` is a dtype listed above (weights may use any of them except
 * Q8_1 / Q8_K, which only hold activations inside kernels). */
static inline int k_dtype_known(int id)
{
    switch (id) {
#define X(name, i, blk, bytes) case i: return 1;
    K_DTYPES(X)
#undef X
    default: return 0;
    }
}

#define K_DTYPE_F8_E4M3 ((KDtype)200) /* device-only: see "fp8 e4m3" below */

static inline const char *k_dtype_name(KDtype t)
{
    if (t == K_DTYPE_F8_E4M3) return "F8_E4M3";
    switch (t) {
#define X(name, i, blk, bytes) case K_DTYPE_##name: return #name;
    K_DTYPES(X)
#undef X
    default: return "?";
    }
}

static inline int k_dtype_block(KDtype t)
{
    switch (t) {
#define X(name, i, blk, bytes) case K_DTYPE_##name: return blk;
    K_DTYPES(X)
#undef X
    default: return 0;
    }
}

static inline int k_dtype_block_bytes(KDtype t)
{
    switch (t) {
#define X(name, i, blk, bytes) case K_DTYPE_##name: return bytes;
    K_DTYPES(X)
#undef X
    default: return 0;
    }
}

/* fp8 e4m3 (OCP "e4m3fn": 1 sign, 4 exponent bits of bias 7, 3 mantissa
 * bits, no infinities, largest finite 448), K_DTYPE_F8_E4M3: a device-only
 * dtype, not one of GGUF's, so it is outside K_DTYPES (k_dtype_known says 0:
 * no file may carry it). Device backends use it for fp8 weights
 * (KTensor.scale) and the fp8 KV pool; k_dtype_name and k_row_bytes (1 byte
 * an element) know it. k_f32_to_e4m3 below is the rounding every backend
 * uses: round to nearest even, saturating to +-448 (NaN stays NaN). */
enum { K_E4M3_MAX = 448 };

/* Bytes of one row of n elements (n a multiple of the block size). */
static inline size_t k_row_bytes(KDtype t, int64_t n)
{
    if (t == K_DTYPE_F8_E4M3) return (size_t)n;
    int blk = k_dtype_block(t);
    return blk ? (size_t)(n / blk) * (size_t)k_dtype_block_bytes(t) : 0;
}

/* A tensor in backend memory. ne[0] is the innermost dimension; unused
 * dimensions are 1. `data` is borrowed. */
typedef struct KTensor {
    KDtype dtype;
    int64_t ne[4];
    const void *data;
    /* F8_E4M3 weight matrices only (device backends): ne[1] f32 scales in
     * backend memory, one per row (output channel): W[o][i] =
     * e4m3(data[o][i]) * scale[o]. NULL for every other dtype. */
    const float *scale;
} KTensor;

/* RoPE pairing. NORM: rotate (x[2i], x[2i+1]) — what llama.cpp uses for
 * LLAMA-arch GGUF files, whose Q/K rows the converter permuted. NEOX: rotate
 * (x[i], x[i + rot_dim/2]) — Hugging Face's rotate_half on unpermuted
 * weights, and llama.cpp's layout for QWEN2. */
typedef enum { K_ROPE_NORM = 0, K_ROPE_NEOX = 1 } KRopeStyle;

enum { K_MATMUL_MAX_PARTS = 4 };

/* One sequence's share of an attention call. Its n_new query rows are rows
 * [row0, row0 + n_new) of q/out; its context is slots[0..n_ctx), whose last
 * n_new entries are the new tokens' own slots. New token j (0-based) attends
 * causally to slots[0 .. n_ctx - n_new + j] inclusive. */
typedef struct {
    const int32_t *slots;
    int n_ctx;
    int n_new;
    int row0;
} KAttnSeq;

typedef struct {
    const float *q;             /* [n_rows][n_head * head_dim] (rope applied) */
    float *out;                 /* [n_rows][n_head * head_dim] */
    const void *k_pool;         /* [n_slots][n_head_kv * head_dim] in kv_dtype */
    const void *v_pool;
    KDtype kv_dtype;            /* F32 or F16 */
    int n_head, n_head_kv, head_dim;
    float scale;                /* usually 1/sqrt(head_dim) */
    const KAttnSeq *seqs;
    int n_seqs;
} KAttnArgs;

/*
 * The op table. Each entry: name, return type, parameter list. `ctx` is the
 * backend's own state (thread pool, streams, ...).
 *
 *   matmul     y[n][W.ne[1]] = x[n][W.ne[0]] · Wᵀ (+ bias[W.ne[1]] if bias)
 *   matmul_multi  `count` (<= K_MATMUL_MAX_PARTS) matmuls of the same x:
 *              y[i] = x · w[i]ᵀ (+ bias[i] when bias && bias[i]); one pass
 *              over x for q/k/v or gate/up. All w[i]->ne[0] are equal.
 *   embed      out[i] = row tokens[i] of table E (dequantized to f32)
 *   rmsnorm    y[i] = x[i] / sqrt(mean(x[i]²) + eps) * w       (n rows of dim)
 *   rope       rotate the first rot_dim dims of each of n_heads heads in every
 *              row of x in place; cs[t][2p], cs[t][2p+1] are cos and sin of
 *              row t's angle for pair p (pos[t] * inv_freq[p]; the caller
 *              builds this table once per forward and shares it by layers)
 *   swiglu     out[i] = silu(gate[i]) * up[i]                   (count elems)
 *   add        y[i] += x[i]                                     (count elems)
 *   softmax    in place over each of n rows of length dim
 *   kv_store   write k[i], v[i] (f32 rows of kv_dim) into slot slots[i] of
 *              the pools, converting to kv_dtype
 *   attention  see KAttnArgs
 *   buf_alloc  `bytes` of the backend's memory (host for the CPU, device for
 *              CUDA: plain allocations, never managed memory); NULL when none
 *              is left. Freed by buf_free (NULL is a no-op).
 *   upload     copy `bytes` from host src to backend dst (ordered before the
 *              ops issued after it; the host buffer may be reused on return)
 *   download   copy `bytes` from backend src to host dst; on return dst holds
 *              the result of every op issued before it
 *   sync       wait until every op issued so far has finished; 0, or -1 when
 *              the device reported a failure (the `error` op then names it)
 *   error      NULL if every op since the last call ran, else a message for
 *              the first one that could not (the flag is cleared)
 *   destroy    frees the backend (table included)
 */
#define K_OPS(X)                                                                        \
    X(matmul, void, (void *ctx, const KTensor *w, const float *bias, const float *x,   \
                     int n, float *y))                                                  \
    X(matmul_multi, void, (void *ctx, int count, const KTensor *const *w,              \
                           const float *const *bias, const float *x, int n,             \
                           float *const *y))                                            \
    X(embed, void, (void *ctx, const KTensor *e, const int32_t *tokens, int n,         \
                    float *out))                                                        \
    X(rmsnorm, void, (void *ctx, const float *x, const float *w, float *y, int n,      \
                      int dim, float eps))                                              \
    X(rope, void, (void *ctx, float *x, int n, int n_heads, int head_dim, int rot_dim, \
                   const float *cs, KRopeStyle style))                                  \
    X(swiglu, void, (void *ctx, const float *gate, const float *up, float *out,        \
                     size_t count))                                                     \
    X(add, void, (void *ctx, float *y, const float *x, size_t count))                  \
    X(softmax, void, (void *ctx, float *x, int n, int dim))                            \
    X(kv_store, void, (void *ctx, void *k_pool, void *v_pool, KDtype kv_dtype,         \
                       int kv_dim, const float *k, const float *v,                      \
                       const int32_t *slots, int n))                                    \
    X(attention, void, (void *ctx, const KAttnArgs *a))                                \
    X(buf_alloc, void *, (void *ctx, size_t bytes))                                     \
    X(buf_free, void, (void *ctx, void *p))                                             \
    X(upload, void, (void *ctx, void *dst, const void *src, size_t bytes))             \
    X(download, void, (void *ctx, void *dst, const void *src, size_t bytes))           \
    X(sync, int, (void *ctx))                                                           \
    X(error, const char *, (void *ctx))                                                 \
    X(destroy, void, (void *ctx))

/* ---- device-resident ops ---------------------------------------------------
 *
 * A backend whose activations live in its own memory (CUDA) fills a second
 * table, KDevOps, and points KBackend.dev at it; host backends leave dev
 * NULL and model.c then runs the f32 ops above. On the device path:
 *
 *   - Activations, weights, norm weights, biases and the KV pool are in
 *     act_dtype (BF16 for CUDA), in the backend's memory (buf_alloc).
 *     Weight matrices are KTensors of that dtype, laid out as above.
 *   - Index arrays (tokens, positions, write slots, context slots, per-row
 *     offsets and lengths, logit rows) are int32 arrays in backend memory,
 *     uploaded once per forward: a step's shape is its sizes alone.
 *   - Attention reads flat arrays: query row r attends to the slots
 *     slots[row_off[r] .. row_off[r] + row_len[r]), which already hold its
 *     own k/v; causality is the caller's choice of row_len.
 *   - RoPE takes positions and the model's inv_freq (rot_dim/2 f32 values in
 *     backend memory), no cos/sin table.
 *   - Only the logit rows asked for are computed, as f32.
 *
 *   gather     out[i] = row idx[i] of table (rows of dim values): embedding
 *              lookup and the choice of logit rows
 *   add_rmsnorm  per row: h += delta when delta (the residual stream, in
 *              place), then y = rmsnorm(h) * w
 *   matmul     y[n][W.ne[1]] (row stride ldy) = x[n][W.ne[0]] (stride ldx)
 *              · Wᵀ (+ bias[W.ne[1]] when bias)
 *   logits     y[n][W.ne[1]] f32 = x[n][W.ne[0]] · Wᵀ (rows packed)
 *   rope_kv    qkv rows are [q: n_head*hd | k: n_head_kv*hd | v: n_head_kv*hd]
 *              (stride (n_head + 2*n_head_kv)*hd): rotates q in place and k
 *              by pos[r], writes k and v into slot wslot[r] of the pools
 *              (none when wslot[r] < 0: a graph's padding rows)
 *   attention  see KDevAttn (row_len[r] 0: row r's output is zeros)
 *   swiglu     out[r][i] = silu(gu[r][i]) * gu[r][ff + i]
 *   matmul_swiglu  (optional, outside K_DEV_OPS: NULL when the backend has
 *              no fused form) act[n][ff] = exactly matmul(w, NULL, x, ldx,
 *              n) into gu[n][2ff] (row stride 2ff) then swiglu(gu, n, ff,
 *              act), bit for bit, for W of 2ff rows (gate rows, then up
 *              rows); gu is the op's scratch (its content afterwards is
 *              unspecified). The caller, where it is set, calls it instead
 *              of the two.
 *   mem_info   free and total bytes of the backend's memory
 *   zero       bytes of backend memory set to 0 (stream-ordered)
 *   host_alloc page-locked host memory for downloads (NULL when none);
 *              freed by host_free
 *   argmax     ids[r] = the first maximum of f32 row r of logits (n rows of v)
 *   sample     see KDevSample: the sampling chain of runtime/sampler.h per
 *              row; only ids and asked-for logprobs come back
 *   bind       makes the calling thread the one that drives this backend
 *              (CUDA: its GPU becomes the thread's current device); a
 *              thread calls it before its first op on a backend that
 *              another thread made or last drove (tensor parallelism: one
 *              thread per GPU)
 *   graph_begin  the ops issued from here to graph_end are recorded, not
 *              run (no upload, download or sync in between); 0, or -1 when
 *              the backend has no graphs (nothing is recorded: the caller
 *              runs its ops itself)
 *   graph_end  the recorded ops as a graph (NULL when recording failed: the
 *              error op says why); freed by graph_free
 *   graph_launch  runs a graph's ops again, in issue order with other ops,
 *              on the values the device arrays hold when they run
 *
 * fp8 e4m3 (ModelOptions.quantization / kv_cache_dtype; KDevOps.no_fp8 NULL
 * when the backend runs them):
 *   quant_fp8  q[out][in] e4m3 bytes and scale[out] f32 from the act_dtype
 *              matrix w[out][in]: scale = max|w[o]| / 448 (1 for a zero
 *              row), q = e4m3(w / scale) (k_f32_to_e4m3's rounding)
 *   matmul / logits with an F8_E4M3 weight (KTensor.scale): rows n <= 8
 *              take x as it is: y = round(scale[o] * sum x * e4m3(q))
 *              (+ bias); more rows quantize x per token first: sx[t] =
 *              max|x[t]| / 448 (1 for a zero row), y = round(sx[t] *
 *              scale[o] * sum e4m3(x / sx) * e4m3(q)) (+ bias), f32 sums
 *   fp8_reserve  room for the activations of fp8 matmuls of up to `rows`
 *              rows of up to `in` values (the per-token quantized copy);
 *              called before recording graphs (nothing is allocated
 *              inside an op); 0, or -1 (the error op says why)
 *   rope_kv_fp8  rope_kv with F8_E4M3 pools: k and v are rounded as
 *              rope_kv rounds them, then to e4m3 (scale 1, saturating)
 * The overlap scheduler's ops (runtime/model.h model_launch / model_wait):
 *   pick_tokens  per row i: tok[i] = prev[src[i]] when src[i] >= 0, else
 *              tok[i] stays (int32 device arrays; a decode row's token that
 *              the previous step sampled on the device, never seen by the
 *              host before this step runs; graph-safe: fixed arrays)
 *   download_async  as download, but returns at once: dst (host_alloc
 *              memory) holds the result only after a later event_wait on an
 *              event recorded after it (or a sync)
 *   upload_async  as upload, but returns at once: the stream reads src
 *              (host_alloc memory) when it gets there, so the caller leaves
 *              src untouched until an event recorded after it has been
 *              waited, or a sync, upload or download has returned (dev-ref
 *              checks this: it fails by name when src changed before then)
 *   event_new / event_free  a marker in the op stream (NULL when none)
 *   event_record  places it after every op issued so far
 *   event_wait  blocks until the ops before its last record have run; 0, or
 *              -1 when the device reported a failure (the error op names it)
 * A synchronous backend (dev-ref) runs them at once: same results.
 */
typedef struct {
    const void *q;              /* rows of stride ldq (q heads first) */
    int ldq;
    void *out;                  /* [n_rows][n_head * head_dim] */
    const void *k_pool, *v_pool;/* [n_slots][n_head_kv * head_dim] */
    int n_rows, n_head, n_head_kv, head_dim;
    float scale;
    const int32_t *slots, *row_off, *row_len;
    /* At least the longest row_len: the backend splits long rows. A row's
     * result depends on its own data and n_rows only, never on max_len, so
     * a graph recorded with a bound computes what an exact step does. */
    int max_len;
    /* Batches with prompt chunks: the same rows as tiles of consecutive
     * rows of one sequence, n_tiles int32 quadruples (row0, rows, slot_off,
     * len0) with rows <= K_ATTN_TILE_ROWS: row row0 + i attends to
     * slots[slot_off .. slot_off + len0 + i). The backend may then run its
     * tiled (tensor-core) kernel; n_tiles 0: rows only. */
    const int32_t *tiles;
    int n_tiles;
    /* 1: k_pool / v_pool hold F8_E4M3 values (scale 1.0, as rope_kv_fp8
     * wrote them: SGLang's fp8_e4m3 KV cache without calibrated scales);
     * 0: act_dtype values */
    int kv_fp8;
} KDevAttn;

enum { K_ATTN_TILE_ROWS = 64 };

/*
 * KDevOps.attention_rope (optional: NULL when the backend does not fuse):
 * exactly rope_kv (rope_kv_fp8 when a->kv_fp8) over a->n_rows rows with
 * these arguments, then attention(a): the same output bits, the same pool
 * bytes. What it is for: decode steps, where one kernel can rotate q and the
 * new key on the fly and write k/v while it attends.
 *
 *   qkv      the rows rope_kv rotates; a->q must be qkv and a->ldq its
 *            stride (n_head + 2 * n_head_kv) * head_dim
 *   k_pool, v_pool  the pools rope_kv writes: a->k_pool and a->v_pool
 *   afterwards the q and k parts of qkv are unspecified (rotated or not:
 *            CUDA leaves them as they were); nothing may read them
 *
 * Exact only when no row's context holds another row's wslot, nor its own
 * anywhere but as its last slot (decode steps: a new token's slot is fresh),
 * a->n_tiles is 0 (rows only) and the caller runs it on the same rows as
 * the two ops would (a row of wslot < 0 writes nothing).
 */
typedef struct {
    void *qkv;
    int rot_dim;
    const float *inv_freq;
    KRopeStyle style;
    const int32_t *pos, *wslot;
    void *k_pool, *v_pool;
} KDevRope;

/*
 * Sampling on the device: runtime/sampler.c's chain (its header states the
 * conventions) over rows of f32 logits, one row per request:
 *
 *   logits ─► penalties ─► logit bias ─► allow ─► temperature ─► top-k ─► top-p ─► min-p ─► draw
 *      │                                              │
 *      └─ RAW logprobs (log-softmax of the row)       └─ PROCESSED logprobs (before truncation)
 *
 * Per row (KDevSampleRow), everything is in backend memory and uploaded in
 * one piece per step; the kernels allocate nothing and never synchronise
 * with the host, so a decode step with sampling can be captured whole.
 *   - The first `n` entries of each row are candidates (the tokenizer's ids;
 *     a padded vocabulary's tail is never picked); rows are `ld` apart.
 *   - Penalties: entries pen[pen_off .. pen_off + n_pen) (distinct ids):
 *     repetition divides a positive logit (multiplies a negative one) for
 *     every listed id; frequency * generated + presence is subtracted where
 *     generated > 0. Then bias[bias_off .. + n_bias) is added in order.
 *   - allow: words allow[allow_off ..] of a bitset over the n ids (bit i of
 *     32-bit word i / 32); allow_off < 0: every id. Bans (min_tokens) come
 *     in it too.
 *   - temperature: logits are multiplied by 1/temperature when it is not 1
 *     (the host passes 1 where sampler.c does not scale: greedy shortcut).
 *   - greedy: the highest processed logit among the allowed (ties: lower id).
 *     Else top_k (<= 0 off), top_p (>= 1 off), min_p (<= 0 off) cut the
 *     allowed ids ranked by processed logit (ties: lower id), each stage's
 *     probabilities the softmax over what the stage before kept, and the
 *     draw walks the survivors in id order: the first whose cumulative
 *     probability exceeds u (the host's uniform in [0, 1), from the
 *     request's RNG).
 *   - Logprobs (lp_mode): RAW, of the model's row over all n ids; PROCESSED,
 *     of the allowed ids after penalties, bias and temperature. The chosen
 *     id's in out_lp, and n_top (<= K_SAMPLE_TOP_MAX) best, most likely
 *     first (ties: lower id), at top_id/top_lp [r * K_SAMPLE_TOP_MAX ..];
 *     out_n_top[r] says how many (fewer when fewer are allowed).
 *   - out_id[r] = -1 when nothing is allowed (the host's ERR_ALL_MASKED).
 *   - The logit rows are scratch: the op may overwrite them.
 */
enum { K_SAMPLE_TOP_MAX = 20 };
enum { K_LP_NONE = 0, K_LP_RAW = 1, K_LP_PROCESSED = 2 };

typedef struct {
    double u;                   /* the draw, in [0, 1) (unused when greedy) */
    float temperature;          /* the divisor applied (1: none) */
    float top_p, min_p;
    float repetition_penalty, frequency_penalty, presence_penalty;
    int32_t greedy, top_k;
    int32_t pen_off, n_pen, bias_off, n_bias;
    int32_t allow_off;          /* in 32-bit words; -1: no bitset */
    int32_t lp_mode, n_top;
    int32_t pad_;
} KDevSampleRow;

/* `raw` in both is the op's scratch (it keeps the row's logit there before
 * changing it, for RAW logprobs): the arrays are written by the op. */
typedef struct {
    int32_t id;                 /* seen in the prompt or generated */
    int32_t generated;          /* times generated (frequency/presence) */
    float raw;
} KDevPenalty;

typedef struct {
    int32_t id;
    float bias;
    float raw;
} KDevBias;

typedef struct {
    float *logits;              /* n_rows rows, ld apart (overwritten) */
    int ld, n, n_rows;
    const KDevSampleRow *rows;
    KDevPenalty *pen;
    KDevBias *bias;
    const uint32_t *allow;
    int32_t *out_id;            /* [n_rows] */
    float *out_lp;              /* [n_rows] */
    int32_t *out_n_top;         /* [n_rows] */
    int32_t *top_id;            /* [n_rows * K_SAMPLE_TOP_MAX] */
    float *top_lp;
} KDevSample;

#define K_DEV_OPS(X)                                                                        \
    X(gather, void, (void *ctx, const void *table, int dim, const int32_t *idx, int n,      \
                     void *out))                                                            \
    X(add_rmsnorm, void, (void *ctx, void *h, const void *delta, const void *w, void *y,   \
                          int n, int dim, float eps))                                       \
    X(matmul, void, (void *ctx, const KTensor *w, const void *bias, const void *x, int ldx, \
                     int n, void *y, int ldy))                                              \
    X(logits, void, (void *ctx, const KTensor *w, const void *x, int n, float *y))         \
    X(rope_kv, void, (void *ctx, void *qkv, int n, int n_head, int n_head_kv, int head_dim, \
                      int rot_dim, const float *inv_freq, KRopeStyle style,                 \
                      const int32_t *pos, const int32_t *wslot, void *k_pool, void *v_pool))\
    X(attention, void, (void *ctx, const KDevAttn *a))                                     \
    X(swiglu, void, (void *ctx, const void *gu, int n, int ff, void *out))                 \
    X(mem_info, void, (void *ctx, size_t *free_b, size_t *total_b))                         \
    X(zero, void, (void *ctx, void *p, size_t bytes))                                      \
    X(host_alloc, void *, (void *ctx, size_t bytes))                                       \
    X(host_free, void, (void *ctx, void *p))                                               \
    X(argmax, void, (void *ctx, const float *logits, int n, int v, int32_t *ids))           \
    X(sample, void, (void *ctx, const KDevSample *s))                                       \
    X(bind, void, (void *ctx))                                                              \
    X(graph_begin, int, (void *ctx))                                                        \
    X(graph_end, void *, (void *ctx))                                                       \
    X(graph_launch, void, (void *ctx, void *graph))                                        \
    X(graph_free, void, (void *ctx, void *graph))                                          \
    X(quant_fp8, void, (void *ctx, const void *w, int in, int out, void *q, float *scale))  \
    X(fp8_reserve, int, (void *ctx, int rows, int in))                                      \
    X(rope_kv_fp8, void, (void *ctx, void *qkv, int n, int n_head, int n_head_kv,           \
                          int head_dim, int rot_dim, const float *inv_freq, KRopeStyle style,\
                          const int32_t *pos, const int32_t *wslot, void *k_pool,           \
                          void *v_pool))                                             \
    X(pick_tokens, void, (void *ctx, int32_t *tok, const int32_t *src, const int32_t *prev, \
                          int n))                                                           \
    X(download_async, void, (void *ctx, void *dst, const void *src, size_t bytes))          \
    X(upload_async, void, (void *ctx, void *dst, const void *src, size_t bytes))            \
    X(event_new, void *, (void *ctx))                                                       \
    X(event_free, void, (void *ctx, void *ev))                                              \
    X(event_record, void, (void *ctx, void *ev))                                            \
    X(event_wait, int, (void *ctx, void *ev))

typedef struct KDevOps {
    KDtype act_dtype;           /* BF16 */
    /* NULL when fp8 e4m3 weights and KV run here, else why not (e.g.
     * "fp8 needs compute capability 8.9+ (this GPU is 8.0)") */
    const char *no_fp8;
    /* fused ops a backend may offer (NULL: the caller runs what they stand
     * for; above, "matmul_swiglu") */
    void (*matmul_swiglu)(void *ctx, const KTensor *w, const void *x, int ldx, int n, int ff, void *gu, void *act);
#define X(op, ret, params) ret (*op) params;
    K_DEV_OPS(X)
#undef X
    /* optional, outside K_DEV_OPS (k_backend_complete does not ask for it):
     * see KDevRope; NULL: the caller runs rope_kv then attention */
    void (*attention_rope)(void *ctx, const KDevAttn *a, const KDevRope *r);
} KDevOps;

typedef struct KBackend {
    const char *name;
    void *ctx;
#define X(op, ret, params) ret (*op) params;
    K_OPS(X)
#undef X
    const KDevOps *dev;         /* NULL for host backends */
} KBackend;

enum {
#define X(op, ret, params) +1
    K_N_OPS = 0 K_OPS(X)
#undef X
};

static_assert(sizeof(KBackend) == 3 * sizeof(void *) + K_N_OPS * sizeof(void (*)(void)),
              "KBackend must be name, ctx, exactly one pointer per K_OPS entry, then dev");

/* ---- choosing a backend --------------------------------------------------- */

/* name, string (for messages and flags) */
#define K_BACKEND_KINDS(X)      \
    X(CPU,     "cpu")           \
    X(CPU_REF, "cpu-ref")       \
    X(CUDA,    "cuda")          \
    X(DEV_REF, "dev-ref")

/* CPU: the fast backend (kernels/cpu/cpu.c). CPU_REF: the one-thread
 * reference (kernels/cpu/ref.c), for tests. CUDA: kernels/cuda, in builds
 * that have it. DEV_REF: the device table (KDevOps) on the host with the
 * CUDA kernels' bf16 rounding (kernels/cpu/devref.c), so the device path of
 * runtime/model.c is tested without a GPU; slow, for tests. */
typedef enum {
#define X(name, str) K_BACKEND_##name,
    K_BACKEND_KINDS(X)
#undef X
    K_BACKEND_COUNT_
} KBackendKind;

typedef struct {
    KBackendKind kind;
    int n_threads;              /* CPU worker threads; <= 0: one per online core */
    /* Every row's numbers independent of what else is in the batch (the CPU
     * backend then never uses sgemm: CPU_NO_BLAS). */
    bool batch_invariant;
    unsigned flags;             /* the backend's own switches (CPU_NO_SIMD...), 0 normally */
    int device;                 /* device backends: which GPU (0-based), 0 normally */
} KBackendConfig;

/* A new backend of c->kind. NULL with a message in err when the kind is not
 * in this build or cannot start. Free it with its destroy op. */
KBackend *k_backend_new(const KBackendConfig *c, char *err, size_t errcap);

/* "cpu", "cpu-ref", "cuda"; "?" for a value outside the list. */
const char *k_backend_kind_name(KBackendKind k);

/* Dequantizes n elements (a whole number of blocks) of dtype t from host
 * memory to f32, on the calling thread. For loaders: the small vectors
 * (norm weights, biases) that every backend's ops take as f32. */
void k_dequant_row_host(KDtype t, const void *src, float *dst, int64_t n);

/* The other way: n f32 values (a whole number of blocks) to dtype t, on the
 * calling thread, for writers (sgl make-model --gguf). 0, or -1 when t has
 * no quantizer here (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K do). */
int k_quant_row_host(KDtype t, const float *src, void *dst, int64_t n);

/* 1 when every op is filled, the device table's too when there is one (a
 * backend under construction checks itself). */
static inline int k_backend_complete(const KBackend *b)
{
#define X(op, ret, params) if (!b->op) return 0;
    K_OPS(X)
#undef X
    if (b->dev) {
#define X(op, ret, params) if (!b->dev->op) return 0;
        K_DEV_OPS(X)
#undef X
    }
    return 1;
}

/* 1 when this build has kind k and it can start here (CUDA: a GPU is
 * visible); for choosing a default device without making a backend. */
int k_backend_usable(KBackendKind k);

/* f32 -> bf16, round to nearest even (NaN stays NaN), and back. */
static inline uint16_t k_f32_to_bf16(float f)
{
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)(v.u >> 16);
}

static inline float k_bf16_to_f32(uint16_t b)
{
    union { uint32_t u; float f; } v = {(uint32_t)b << 16};
    return v.f;
}

/* f32 -> fp8 e4m3 (K_DTYPE_F8_E4M3), round to nearest even, saturating to
 * +-448, NaN to NaN (0x7f): what CUDA's __nv_cvt_float_to_fp8(x,
 * __NV_SATFINITE, __NV_E4M3) gives, bit for bit. And back (exact). */
static inline uint8_t k_f32_to_e4m3(float f)
{
    union { float f; uint32_t u; } v = {f};
    uint8_t sign = (uint8_t)((v.u >> 24) & 0x80u);
    uint32_t a = v.u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7f;
    if (a >= 0x3c800000u) { /* >= 2^-6: normal; round the f32 mantissa to 3 bits */
        uint32_t r = (a + 0x7ffffu + ((a >> 20) & 1u)) >> 20;
        if (r > (120u << 3) + 0x7eu) r = (120u << 3) + 0x7eu; /* past 448 (and inf) */
        return sign | (uint8_t)(r - (120u << 3));
    }
    union { uint32_t u; float f; } m = {a};
    float t = m.f * 512.0f;     /* subnormal steps of 2^-9, exact */
    uint32_t i = (uint32_t)t;
    float frac = t - (float)i;
    if (frac > 0.5f || (frac == 0.5f && (i & 1u))) i++;
    return sign | (uint8_t)i;   /* i = 8 is the smallest normal, 0x08 */
}

static inline float k_e4m3_to_f32(uint8_t b)
{
    uint32_t e = (b >> 3) & 15u, mt = b & 7u, sign = (uint32_t)(b & 0x80u) << 24;
    union { uint32_t u; float f; } v;
    if (e == 15 && mt == 7) {
        v.u = sign | 0x7fc00000u;
    } else if (e == 0) {
        v.f = (float)mt * (1.0f / 512.0f);
        v.u |= sign;
    } else {
        v.u = sign | ((e + 120u) << 23) | (mt << 20);
    }
    return v.f;
}

#endif
