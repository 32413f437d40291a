/*
 * kernels/cuda/cuda_decode.cu — split-K flash-decoding attention (see
 * cuda_decode.h for the layout and the invariants).
 *
 * One block = one (row, kv head, chunk), DEC_WARPS warps. A warp walks its
 * share of the chunk TILE keys at a time: lane l reads the 16 bytes
 * [8c, 8c + 8) of key (l / LPK) of each of the U key groups, where LPK =
 * head_dim / 8 lanes cover one key row and KPL = 32 / LPK keys are read by
 * one load instruction. The partial dot products of the G query heads are
 * summed over the LPK lanes of a key by xor shuffles; the online softmax
 * (log2 domain, the scale folded into q) keeps one running max per head for
 * the warp and lane-partial sums (l, acc) that are summed over the key lanes
 * once at the end. The warps' (m, l, acc) are merged in shared memory; a
 * split row writes (acc, m, l) to the work space, and the row's chunks are
 * combined in chunk order (dec_merge) by the last of its blocks to finish
 * (a counter per (row, kv head), put back to 0 by that block, so a graph
 * replays with the counters as it found them), or by k_decode_merge when
 * the caller gives no counters. Either way the same bits.
 */
#include "kernels/cuda/cuda_decode.h"
#include "kernels/cuda/cuda_ptx.cuh"

#include <cuda_bf16.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/cuda/cuda_fp8.cuh"
#include "kernels/cuda/cuda_rope.cuh"

typedef __nv_bfloat16 bf16;

enum { DEC_WARPS = 4, DEC_ROUND = 16, DEC_MAX_G = 8 };

typedef struct {
    int n, chunk; /* chunks and keys per chunk */
} DecSplit;

/* The fused RoPE + KV write (cu_attention_decode_rope; unused otherwise).
 * q points at the qkv rows: [q heads | k heads | v heads] of head_dim. */
typedef struct {
    int rot, neox;
    const float *inv_freq;
    const int32_t *pos, *wslot;
    void *k_pool, *v_pool;      /* where the new key and value are written */
} DecRope;

/* The one split rule (host and device): depends on the row alone. */
__host__ __device__ static inline DecSplit dec_split(int len, int max_split, int min_chunk)
{
    DecSplit s = {1, len > 0 ? len : 0};
    if (len <= 0 || max_split <= 1) return s;
    int n = (len + min_chunk - 1) / min_chunk;
    if (n > max_split) n = max_split;
    int chunk = (len + n - 1) / n;
    chunk = (chunk + DEC_ROUND - 1) / DEC_ROUND * DEC_ROUND;
    s.chunk = chunk;
    s.n = (len + chunk - 1) / chunk;
    return s;
}

/* Dimension d of the n chunks' partials of one (row, head), in chunk order.
 * __ldcg: other blocks wrote them (L2, not this SM's L1). */
__device__ __forceinline__ float dec_merge(const float *part, int n, int hd, int d)
{
    float M = -INFINITY;
    for (int s = 0; s < n; s++) M = fmaxf(M, __ldcg(part + s * (hd + 2) + hd));
    float L = 0.0f, A = 0.0f;
    if (M != -INFINITY) {
        for (int s = 0; s < n; s++) {
            const float *p = part + s * (hd + 2);
            float f = exp2f(__ldcg(p + hd) - M);
            L = fmaf(__ldcg(p + hd + 1), f, L);
            A = fmaf(__ldcg(p + d), f, A);
        }
    }
    return L > 0.0f ? A / L : 0.0f;
}

__device__ __forceinline__ void bf16x8_to_f32(const uint4 &v, float *f)
{
    const __nv_bfloat162 *p = (const __nv_bfloat162 *)&v;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(p[i]);
        f[2 * i] = t.x, f[2 * i + 1] = t.y;
    }
}

/* 4 blocks an SM (128 registers) up to G 4: the merge's registers had
 * pushed it to 152, 3 blocks */
template <int HD, int G, typename KT, bool ROPE>
__global__ void __launch_bounds__(DEC_WARPS * 32, G <= 4 ? 4 : 1)
    k_decode(const bf16 *__restrict__ q, int ldq, int n_head, int n_head_kv, float scale_log2,
             const KT *__restrict__ kp, const KT *__restrict__ vp, const int32_t *__restrict__ slots,
             const int32_t *__restrict__ row_off, const int32_t *__restrict__ row_len, int max_split, int min_chunk,
             int ws_stride, float *__restrict__ ws, int *__restrict__ counters, bf16 *__restrict__ out, DecRope rp)
{
    constexpr int LPK = HD / 8, KPL = 32 / LPK, U = G <= 4 ? 4 : 2, TILE = KPL * U;
    __shared__ float sm_m[DEC_WARPS][G], sm_l[DEC_WARPS][G];
    __shared__ __align__(16) float sm_acc[DEC_WARPS][G][HD];
    /* ROPE: the qkv row's group of q heads, its k and v heads as they are
     * (raw), the q heads rotated, the new key and value as the pool holds
     * them, the pairs' cos/sin (8-element stand-ins otherwise) */
    constexpr int RQ = ROPE ? G * HD : 8, RK = ROPE ? HD : 8, RC = ROPE ? HD / 2 : 1;
    __shared__ __align__(16) bf16 sm_raw[ROPE ? (G + 2) * HD : 8], sm_q[RQ];
    __shared__ __align__(16) KT sm_k[RK], sm_v[RK];
    __shared__ float2 sm_cs[RC];

    ptx_launch_dependents(); /* the o GEMV after it may start streaming its weights */
    const int r = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int len = row_len[r];
    /* ROPE: loaded beside row_len, not after it (one latency, not three) */
    const int wslot = ROPE ? rp.wslot[r] : -1;
    const float pos = ROPE ? (float)rp.pos[r] : 0.0f;
    const float inv = ROPE && (int)threadIdx.x < rp.rot / 2 ? rp.inv_freq[threadIdx.x] : 0.0f;
    const DecSplit sp = dec_split(len, max_split, min_chunk);
    if (split >= sp.n) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sub = lane / LPK, c8 = lane % LPK;
    const int kv_dim = n_head_kv * HD;
    const int k0 = split * sp.chunk, k1 = min(len, k0 + sp.chunk);
    const int32_t *sl = slots + (len > 0 ? row_off[r] : 0);

    /* ROPE: knew is the row's key taken from sm_k / sm_v instead of the
     * pool (its new token's, rotated here), -1 when none */
    int knew = -1;
    if constexpr (ROPE) {
        static_assert(HD / 2 <= DEC_WARPS * 32, "one cos/sin pair a thread");
        const bf16 *row = q + (size_t)r * ldq;
        /* the last chunk holds the row's last key: its block alone writes
         * the new k and v (rope_kv writes them whatever the row's length) */
        const bool writer = split == sp.n - 1 && wslot >= 0;
        /* raw rows into shared memory, 16 bytes a load: the group's q heads
         * (adjacent in the row), then the kv head's k and v */
        constexpr int NQ8 = G * HD / 8, NK8 = HD / 8;
        for (int i = threadIdx.x; i < NQ8 + 2 * NK8; i += blockDim.x) {
            const bf16 *src = i < NQ8         ? row + (size_t)kvh * G * HD + i * 8
                              : i < NQ8 + NK8 ? row + (size_t)(n_head + kvh) * HD + (i - NQ8) * 8
                                              : row + (size_t)(n_head + n_head_kv + kvh) * HD + (i - NQ8 - NK8) * 8;
            *(uint4 *)(sm_raw + i * 8) = *(const uint4 *)src;
        }
        if (writer && len > 0 && sl[len - 1] == wslot) knew = len - 1;
        if ((int)threadIdx.x < rp.rot / 2) sm_cs[threadIdx.x] = rope_cos_sin(pos, inv);
        __syncthreads();
        for (int i = threadIdx.x; i < G * HD; i += blockDim.x)
            sm_q[i] = rope_dim(sm_raw + (i / HD) * HD, i % HD, rp.rot, rp.neox, sm_cs);
        if (writer) {
            KT *kw = (KT *)rp.k_pool + (size_t)wslot * n_head_kv * HD + (size_t)kvh * HD;
            KT *vw = (KT *)rp.v_pool + (size_t)wslot * n_head_kv * HD + (size_t)kvh * HD;
            for (int d = threadIdx.x; d < HD; d += blockDim.x) {
                KvT<KT>::put(&sm_k[d], rope_dim(sm_raw + G * HD, d, rp.rot, rp.neox, sm_cs));
                KvT<KT>::put(&sm_v[d], sm_raw[(G + 1) * HD + d]);
                kw[d] = sm_k[d];
                vw[d] = sm_v[d];
            }
        }
        __syncthreads();
    }

    float qf[G][8];
#pragma unroll
    for (int g = 0; g < G; g++) {
        uint4 v = ROPE ? *(const uint4 *)(sm_q + g * HD + c8 * 8)
                       : *(const uint4 *)(q + (size_t)r * ldq + (size_t)(kvh * G + g) * HD + c8 * 8);
        bf16x8_to_f32(v, qf[g]);
#pragma unroll
        for (int e = 0; e < 8; e++) qf[g][e] *= scale_log2;
    }
    float m[G], l[G], acc[G][8];
#pragma unroll
    for (int g = 0; g < G; g++) {
        m[g] = -INFINITY, l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) acc[g][e] = 0.0f;
    }
    typedef typename KvT<KT>::raw8 Raw; /* 8 values of K or V (cuda_fp8.cuh) */
    const KT *kb = kp + (size_t)kvh * HD + c8 * 8, *vb = vp + (size_t)kvh * HD + c8 * 8;

    /* slots of the first tile; each iteration loads the next tile's first */
    int base = k0 + warp * TILE;
    int slot[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
        int t = base + u * KPL + sub;
        slot[u] = t < k1 ? (ROPE && t == knew ? -2 : sl[t]) : -1;
    }
    for (; base < k1; base += DEC_WARPS * TILE) {
        Raw kr[U], vr[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (slot[u] >= 0) {
                kr[u] = __ldg((const Raw *)(kb + (size_t)slot[u] * kv_dim));
                vr[u] = __ldg((const Raw *)(vb + (size_t)slot[u] * kv_dim));
            } else if (ROPE && slot[u] == -2) { /* the new key: what the pool would hold */
                kr[u] = *(const Raw *)(sm_k + c8 * 8);
                vr[u] = *(const Raw *)(sm_v + c8 * 8);
            } else {
                kr[u] = Raw{};
                vr[u] = Raw{};
            }
        }
        bool ok[U];
#pragma unroll
        for (int u = 0; u < U; u++) ok[u] = ROPE ? slot[u] != -1 : slot[u] >= 0;
        const int nb = base + DEC_WARPS * TILE;
#pragma unroll
        for (int u = 0; u < U; u++) {
            int t = nb + u * KPL + sub;
            slot[u] = t < k1 ? (ROPE && t == knew ? -2 : sl[t]) : -1;
        }
        float s[U][G];
#pragma unroll
        for (int u = 0; u < U; u++) {
            float kf[8];
            KvT<KT>::to_f32(kr[u], kf);
#pragma unroll
            for (int g = 0; g < G; g++) {
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; e++) d = fmaf(qf[g][e], kf[e], d);
                s[u][g] = d;
            }
        }
#pragma unroll
        for (int o = LPK / 2; o > 0; o >>= 1)
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int g = 0; g < G; g++) s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], o);
#pragma unroll
        for (int g = 0; g < G; g++) {
            float mx = -INFINITY;
#pragma unroll
            for (int u = 0; u < U; u++) {
                if (!ok[u]) s[u][g] = -INFINITY;
                mx = fmaxf(mx, s[u][g]);
            }
#pragma unroll
            for (int o = LPK; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            /* mx is finite: key `base` of this tile exists */
            float mn = fmaxf(m[g], mx), corr = exp2f(m[g] - mn);
            m[g] = mn;
            l[g] *= corr;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[g][e] *= corr;
#pragma unroll
            for (int u = 0; u < U; u++) s[u][g] = exp2f(s[u][g] - mn);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            float vf[8];
            KvT<KT>::to_f32(vr[u], vf);
#pragma unroll
            for (int g = 0; g < G; g++) {
                l[g] += s[u][g];
#pragma unroll
                for (int e = 0; e < 8; e++) acc[g][e] = fmaf(s[u][g], vf[e], acc[g][e]);
            }
        }
    }
    /* the lanes of one dimension slice hold different keys: sum them */
#pragma unroll
    for (int o = LPK; o < 32; o <<= 1)
#pragma unroll
        for (int g = 0; g < G; g++) {
            l[g] += __shfl_xor_sync(0xffffffffu, l[g], o);
#pragma unroll
            for (int e = 0; e < 8; e++) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], o);
        }
    if (sub == 0) {
#pragma unroll
        for (int g = 0; g < G; g++) {
#pragma unroll
            for (int e = 0; e < 8; e++) sm_acc[warp][g][c8 * 8 + e] = acc[g][e];
            if (c8 == 0) sm_m[warp][g] = m[g], sm_l[warp][g] = l[g];
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * HD; i += blockDim.x) {
        int g = i / HD, d = i % HD;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, sm_m[w][g]);
        float L = 0.0f, A = 0.0f;
        if (M != -INFINITY) {
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) {
                float f = exp2f(sm_m[w][g] - M); /* a warp with no keys: exp2(-inf) = 0 */
                L = fmaf(sm_l[w][g], f, L);
                A = fmaf(sm_acc[w][g][d], f, A);
            }
        }
        int h = kvh * G + g;
        if (sp.n == 1) {
            out[(size_t)r * n_head * HD + (size_t)h * HD + d] = __float2bfloat16(L > 0.0f ? A / L : 0.0f);
        } else {
            float *part = ws + (((size_t)r * n_head + h) * ws_stride + split) * (HD + 2);
            part[d] = A;
            if (d == 0) part[HD] = M, part[HD + 1] = L;
        }
    }
    if (sp.n == 1 || !counters) return;
    /* the last block of this (row, kv head) merges its chunks */
    __shared__ int last;
    __threadfence();
    __syncthreads();
    int *cnt = counters + (size_t)r * n_head_kv + kvh;
    if (threadIdx.x == 0) last = atomicAdd(cnt, 1) == sp.n - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int i = threadIdx.x; i < G * HD; i += blockDim.x) {
        int g = i / HD, d = i % HD, h = kvh * G + g;
        const float *part = ws + ((size_t)r * n_head + h) * ws_stride * (HD + 2);
        out[(size_t)r * n_head * HD + (size_t)h * HD + d] = __float2bfloat16(dec_merge(part, sp.n, HD, d));
    }
    if (threadIdx.x == 0) *cnt = 0;
}

/* One block per (row, query head), head_dim threads: the row's chunks in
 * chunk order. */
__global__ void k_decode_merge(const float *__restrict__ ws, const int32_t *__restrict__ row_len, int n_head, int hd,
                               int max_split, int min_chunk, int ws_stride, bf16 *__restrict__ out)
{
    ptx_launch_dependents();
    const int r = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
    const DecSplit sp = dec_split(row_len[r], max_split, min_chunk);
    if (sp.n == 1) return; /* written by k_decode */
    const float *part = ws + ((size_t)r * n_head + h) * ws_stride * (hd + 2);
    out[((size_t)r * n_head + h) * hd + d] = __float2bfloat16(dec_merge(part, sp.n, hd, d));
}

extern "C" size_t cu_decode_ws_bytes(int n_rows, int n_head, int head_dim, int max_split)
{
    return max_split > 1 ? (size_t)n_rows * n_head * max_split * (head_dim + 2) * sizeof(float) : 0;
}

template <int HD, typename KT, bool ROPE>
static void launch_hd(dim3 grid, cudaStream_t st, int G, const bf16 *q, int ldq, int n_head, int n_head_kv,
                      float sl2, const KT *kp, const KT *vp, const int32_t *slots, const int32_t *row_off,
                      const int32_t *row_len, int max_split, int min_chunk, int ws_stride, float *ws, int *counters,
                      bf16 *out, const DecRope &rp)
{
#define DEC_CASE(g)                                                                                              \
    case g:                                                                                                      \
        k_decode<HD, g, KT, ROPE><<<grid, DEC_WARPS * 32, 0, st>>>(q, ldq, n_head, n_head_kv, sl2, kp, vp, slots, \
                                                                   row_off, row_len, max_split, min_chunk,       \
                                                                   ws_stride, ws, counters, out, rp);            \
        break;
    switch (G) {
        DEC_CASE(1) DEC_CASE(2) DEC_CASE(3) DEC_CASE(4) DEC_CASE(5) DEC_CASE(6) DEC_CASE(7) DEC_CASE(8)
    }
#undef DEC_CASE
}

/* rp: NULL, or the fused RoPE + KV write (q is then the qkv rows) */
template <typename KT>
static void attention_decode(CuCtx *c, const uint16_t *q, int ldq, int n_rows, int n_head, int n_head_kv,
                             int head_dim, float scale, const KT *k_pool, const KT *v_pool, const int32_t *slots,
                             const int32_t *row_off, const int32_t *row_len, int max_len, int max_split,
                             int min_chunk, float *ws, int *counters, uint16_t *out, const DecRope *rp)
{
    if (n_rows <= 0) return;
    if (n_head_kv <= 0 || n_head % n_head_kv || n_head / n_head_kv > DEC_MAX_G ||
        (head_dim != 64 && head_dim != 128) || ldq % 8) {
        cu_fail(c, "attention decode", "unsupported shape (head_dim 64 or 128, 1..8 query heads per kv head, "
                                       "q rows 16-byte aligned)");
        return;
    }
    if (rp && (ldq != (n_head + 2 * n_head_kv) * head_dim || rp->rot <= 0 || rp->rot > head_dim || rp->rot % 2)) {
        cu_fail(c, "attention decode rope", "q must be the qkv rows (stride (n_head + 2 n_head_kv) head_dim); "
                                            "rot_dim even and within head_dim");
        return;
    }
    if (max_split < 1 || min_chunk < 1 || max_split > 65535 || (max_split > 1 && !ws)) {
        cu_fail(c, "attention decode", "max_split must be 1..65535 with a work space when above 1; min_chunk >= 1");
        return;
    }
    /* the most chunks any row of length <= max_len gets */
    int n_launch = max_split;
    if (max_len < 1) max_len = 1;
    if ((max_len + min_chunk - 1) / min_chunk < n_launch) n_launch = (max_len + min_chunk - 1) / min_chunk;
    if (n_launch < 1) n_launch = 1;
    cudaStream_t st = (cudaStream_t)cu_stream(c);
    dim3 grid(n_rows, n_head_kv, n_launch);
    float sl2 = scale * 1.4426950408889634f;
    int G = n_head / n_head_kv;
    /* ws rows keep max_split chunks whatever n_launch is, so a row's partials
     * sit where k_decode_merge looks for them in every launch */
    const DecRope none = {};
#define DEC_HD(hd, rope)                                                                                        \
    launch_hd<hd, KT, rope>(grid, st, G, (const bf16 *)q, ldq, n_head, n_head_kv, sl2, k_pool, v_pool, slots,   \
                            row_off, row_len, max_split, min_chunk, max_split, ws, counters, (bf16 *)out,       \
                            rp ? *rp : none)
    if (head_dim == 128) {
        if (rp) DEC_HD(128, true);
        else DEC_HD(128, false);
    } else {
        if (rp) DEC_HD(64, true);
        else DEC_HD(64, false);
    }
#undef DEC_HD
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        cu_fail(c, "attention decode", cudaGetErrorString(e));
        return;
    }
    if (n_launch > 1 && !counters) {
        k_decode_merge<<<dim3(n_rows, n_head), head_dim, 0, st>>>(ws, row_len, n_head, head_dim, max_split,
                                                                  min_chunk, max_split, (bf16 *)out);
        e = cudaGetLastError();
        if (e != cudaSuccess) cu_fail(c, "attention decode merge", cudaGetErrorString(e));
    }
}

extern "C" void cu_attention_decode(CuCtx *c, const uint16_t *q, int ldq, int n_rows, int n_head, int n_head_kv,
                                    int head_dim, float scale, const uint16_t *k_pool, const uint16_t *v_pool,
                                    const int32_t *slots, const int32_t *row_off, const int32_t *row_len,
                                    int max_len, int max_split, int min_chunk, float *ws, int *counters,
                                    uint16_t *out)
{
    attention_decode<bf16>(c, q, ldq, n_rows, n_head, n_head_kv, head_dim, scale, (const bf16 *)k_pool,
                           (const bf16 *)v_pool, slots, row_off, row_len, max_len, max_split, min_chunk, ws,
                           counters, out, NULL);
}

extern "C" void cu_attention_decode_fp8(CuCtx *c, const uint16_t *q, int ldq, int n_rows, int n_head,
                                        int n_head_kv, int head_dim, float scale, const uint8_t *k_pool,
                                        const uint8_t *v_pool, const int32_t *slots, const int32_t *row_off,
                                        const int32_t *row_len, int max_len, int max_split, int min_chunk,
                                        float *ws, int *counters, uint16_t *out)
{
    attention_decode<uint8_t>(c, q, ldq, n_rows, n_head, n_head_kv, head_dim, scale, k_pool, v_pool, slots, row_off,
                              row_len, max_len, max_split, min_chunk, ws, counters, out, NULL);
}

extern "C" void cu_attention_decode_rope(CuCtx *c, uint16_t *qkv, int n_rows, int n_head, int n_head_kv,
                                         int head_dim, float scale, void *k_pool, void *v_pool, int kv_fp8,
                                         const int32_t *slots, const int32_t *row_off, const int32_t *row_len,
                                         int max_len, int max_split, int min_chunk, float *ws, int *counters,
                                         int rot_dim, const float *inv_freq, int neox, const int32_t *pos,
                                         const int32_t *wslot, uint16_t *out)
{
    const DecRope rp = {rot_dim, neox, inv_freq, pos, wslot, k_pool, v_pool};
    int ldq = (n_head + 2 * n_head_kv) * head_dim;
    if (kv_fp8)
        attention_decode<uint8_t>(c, qkv, ldq, n_rows, n_head, n_head_kv, head_dim, scale, (const uint8_t *)k_pool,
                                  (const uint8_t *)v_pool, slots, row_off, row_len, max_len, max_split, min_chunk, ws,
                                  counters, out, &rp);
    else
        attention_decode<bf16>(c, qkv, ldq, n_rows, n_head, n_head_kv, head_dim, scale, (const bf16 *)k_pool,
                               (const bf16 *)v_pool, slots, row_off, row_len, max_len, max_split, min_chunk, ws,
                               counters, out, &rp);
}

extern "C" void cu_profile_range(int on)
{
    if (on) cudaProfilerStart();
    else cudaProfilerStop();
}
