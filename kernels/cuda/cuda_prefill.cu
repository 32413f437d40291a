/*
 * kernels/cuda/cuda_prefill.cu — prefill attention with mma.sync, ldmatrix
 * and cp.async (kernels/cuda/cuda_prefill.h says what it computes).
 *
 * Block: HPB query heads of one kv group × one tile of <= 64 query rows; 4
 * warps per head, each owning 16 rows. Shared memory, rows padded by 16
 * bytes so the 8 rows an ldmatrix reads fall in distinct banks:
 *
 *   Q[HPB][64][hd+8] | K[2][64][hd+8] | V[2][64][hd+8]      (bf16)
 *
 * Per key tile j (64 slots): issue tile j+1's cp.async into the other stage,
 * wait for tile j, then per warp
 *   S[16x64] = Q·Kᵀ           ldmatrix K (no trans) as B, 8 n-blocks of 8
 *   online softmax            rows g and g+8 of the fragment per thread; the
 *                             row max over the 4 lanes of a quad; the row sum
 *                             kept per thread, reduced once at the end
 *   O[16xhd] += P·V           S's C fragments are P's A fragments (packed to
 *                             bf16); V by ldmatrix.trans as B
 * Tiles are taken longest first (the last tile of a sequence sees the most
 * keys), heads fastest, so a kv head's K/V is shared in L2 by the blocks of
 * its group that run together.
 */
#include "kernels/cuda/cuda_prefill.h"

#include <cuda_runtime.h>
#include <math.h>

#include "kernels/cuda/cuda_fp8.cuh"
#include "kernels/cuda/cuda_ptx.cuh"

typedef __nv_bfloat16 bf16;

enum { PF_BM = 64, PF_BN = 64 };

template <int HD, int HPB> struct PfSmem {
    static constexpr int LD = HD + 8;            /* elements per smem row */
    static constexpr int Q = PF_BM * LD, KV = PF_BN * LD;
    static constexpr size_t bytes = (size_t)(HPB * Q + 4 * KV) * sizeof(bf16);
};

template <bool EXACT> __device__ __forceinline__ float pf_exp2(float x) { return EXACT ? exp2f(x) : ptx_exp2(x); }

/* KT: the pool's element type (cuda_fp8.cuh). bf16 tiles come by cp.async;
 * fp8 tiles are loaded into registers at the top of the step before they
 * are needed, and widened to bf16 into the free stage after the step's
 * mma (the same shared-memory layout from there on). */
template <int HD, int HPB, bool EXACT, typename KT>
__global__ void __launch_bounds__(128 * HPB, HPB == 1 ? 2 : 1)
    k_prefill_mma(const bf16 *__restrict__ q, int ldq, int n_head, int n_head_kv, float sl2,
                  const KT *__restrict__ kp, const KT *__restrict__ vp, const int32_t *__restrict__ slots,
                  const int4 *__restrict__ tiles, int n_tiles, bf16 *__restrict__ out)
{
    typedef PfSmem<HD, HPB> L;
    constexpr int LD = L::LD, C8 = HD / 8, NT = 128 * HPB;
    extern __shared__ __align__(128) unsigned char pf_smem[];
    bf16 *Qs = (bf16 *)pf_smem, *Ks = Qs + HPB * L::Q, *Vs = Ks + 2 * L::KV;

    const int4 tile = tiles[n_tiles - 1 - blockIdx.y]; /* row0, rows, slot_off, len0 */
    const int h0 = blockIdx.x * HPB, G = n_head / n_head_kv, kvh = h0 / G, kv_dim = n_head_kv * HD;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wh = warp >> 2, wr = (warp & 3) * 16; /* this warp's head (of HPB) and first row */
    const int nq = tile.y, off = tile.z, len0 = tile.w, kmax = len0 + nq - 1;
    const int n_kt = (kmax + PF_BN - 1) / PF_BN;

    /* Q rows of every head of the block, then K/V tile 0: one group */
#pragma unroll
    for (int i = tid; i < HPB * PF_BM * C8; i += NT) {
        int hh = i / (PF_BM * C8), r = (i / C8) % PF_BM, c = i % C8;
        bool ok = r < nq;
        const bf16 *src = q + (size_t)(tile.x + (ok ? r : 0)) * ldq + (h0 + hh) * HD + c * 8;
        ptx_cp16(ptx_smem(Qs + hh * L::Q + r * LD + c * 8), src, ok);
    }
    constexpr bool FP8 = KvT<KT>::fp8;
    constexpr int PER = (PF_BN * C8 + NT - 1) / NT; /* 8-value pieces a thread loads per tile */
    typename KvT<KT>::raw8 kr[FP8 ? PER : 1], vr[FP8 ? PER : 1];
    (void)kr, (void)vr;
    typedef typename KvT<KT>::raw8 Raw;
    auto load_kv = [&](int kt, int stage) {
        bf16 *Kb = Ks + stage * L::KV, *Vb = Vs + stage * L::KV;
#pragma unroll
        for (int p = 0; p < PER; p++) {
            int i = tid + p * NT;
            if (i >= PF_BN * C8) break;
            int j = i / C8, c = i % C8, t = kt * PF_BN + j;
            bool ok = t < kmax;
            size_t so = (size_t)(ok ? slots[off + t] : 0) * kv_dim + kvh * HD + c * 8;
            if constexpr (FP8) {
                kr[p] = ok ? __ldg((const Raw *)(kp + so)) : Raw{};
                vr[p] = ok ? __ldg((const Raw *)(vp + so)) : Raw{};
            } else {
                ptx_cp16(ptx_smem(Kb + j * LD + c * 8), kp + so, ok);
                ptx_cp16(ptx_smem(Vb + j * LD + c * 8), vp + so, ok);
            }
        }
    };
    auto store_kv = [&](int stage) { /* fp8: the registers load_kv filled, widened into the stage */
        bf16 *Kb = Ks + stage * L::KV, *Vb = Vs + stage * L::KV;
#pragma unroll
        for (int p = 0; p < PER; p++) {
            int i = tid + p * NT;
            if (i >= PF_BN * C8) break;
            int j = i / C8, c = i % C8;
            *(uint4 *)(Kb + j * LD + c * 8) = KvT<KT>::to_bf16(kr[p]);
            *(uint4 *)(Vb + j * LD + c * 8) = KvT<KT>::to_bf16(vr[p]);
        }
    };
    load_kv(0, 0);
    if constexpr (FP8) store_kv(0);
    ptx_cp_commit();

    const int g = lane >> 2, t4 = lane & 3;
    const int r_lo = wr + g, r_hi = r_lo + 8;
    /* keys visible to this thread's two rows: [0, lim) (0 for rows past the tile) */
    const int lim_lo = r_lo < nq ? len0 + r_lo : 0, lim_hi = r_hi < nq ? len0 + r_hi : 0;
    const bool has_rows = wr < nq;
    const int warp_lim = has_rows ? len0 + min(wr + 15, nq - 1) : 0; /* the warp's longest row */
    const int min_lim = min(lim_lo, lim_hi);

    uint32_t qf[HD / 16][4];
    float o[HD / 8][4];
#pragma unroll
    for (int d = 0; d < HD / 8; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;
    bf16 *Qw = Qs + wh * L::Q + wr * LD;

    for (int kt = 0; kt < n_kt; kt++) {
        if (kt + 1 < n_kt) load_kv(kt + 1, (kt + 1) & 1);
        ptx_cp_commit();
        ptx_cp_wait<1>();
        __syncthreads();
        if (kt == 0) {
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++)
                ptx_ldsm4(qf[kk], ptx_smem(Qw + (lane & 15) * LD + kk * 16 + (lane >> 4) * 8));
        }
        const int k0 = kt * PF_BN;
        if (k0 < warp_lim) {
            const bf16 *Kb = Ks + (kt & 1) * L::KV, *Vb = Vs + (kt & 1) * L::KV;
            float s[PF_BN / 8][4];
#pragma unroll
            for (int n = 0; n < PF_BN / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            /* S = Q Kᵀ: matrices (keys n0..+7 | n0+8..+15) x (dims k0..+7 | k0+8..+15) */
            const int krow = (lane & 7) + (lane >> 4) * 8, kcol = ((lane >> 3) & 1) * 8;
#pragma unroll
            for (int n2 = 0; n2 < PF_BN / 16; n2++) {
#pragma unroll
                for (int kk = 0; kk < HD / 16; kk++) {
                    uint32_t b[4];
                    ptx_ldsm4(b, ptx_smem(Kb + (n2 * 16 + krow) * LD + kk * 16 + kcol));
                    ptx_mma(s[2 * n2], qf[kk], b[0], b[1]);
                    ptx_mma(s[2 * n2 + 1], qf[kk], b[2], b[3]);
                }
            }
            /* EXACT: the scores scaled to log2 units first, then 2^(s − m) by
             * exp2f (the arithmetic measured first on the H100); else raw
             * scores and 2^(s·sl2 − m·sl2), one FFMA and one ex2.approx a
             * score. Mask and row maxima either way (the scale is positive). */
            const float ks = EXACT ? 1.0f : sl2;
            if (EXACT) {
#pragma unroll
                for (int n = 0; n < PF_BN / 8; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) s[n][e] *= sl2;
            }
            const bool mask = k0 + PF_BN > min_lim;
            float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
            for (int n = 0; n < PF_BN / 8; n++) {
                int key = k0 + n * 8 + 2 * t4;
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    if (mask) {
                        if (key + e >= lim_lo) s[n][e] = -INFINITY;
                        if (key + e >= lim_hi) s[n][2 + e] = -INFINITY;
                    }
                    mx_lo = fmaxf(mx_lo, s[n][e]), mx_hi = fmaxf(mx_hi, s[n][2 + e]);
                }
            }
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 1));
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 2));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 1));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 2));
            float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
            /* a row with nothing visible yet keeps m = -inf: subtract 0, not -inf */
            float ms_lo = mn_lo == -INFINITY ? 0.0f : mn_lo * ks, ms_hi = mn_hi == -INFINITY ? 0.0f : mn_hi * ks;
            float corr_lo = pf_exp2<EXACT>(fmaf(m_lo, ks, -ms_lo)), corr_hi = pf_exp2<EXACT>(fmaf(m_hi, ks, -ms_hi));
            m_lo = mn_lo, m_hi = mn_hi;
            float ps_lo = 0.0f, ps_hi = 0.0f;
            uint32_t pa[PF_BN / 16][4];
#pragma unroll
            for (int n = 0; n < PF_BN / 8; n++) {
                float p0 = pf_exp2<EXACT>(fmaf(s[n][0], ks, -ms_lo)), p1 = pf_exp2<EXACT>(fmaf(s[n][1], ks, -ms_lo));
                float p2 = pf_exp2<EXACT>(fmaf(s[n][2], ks, -ms_hi)), p3 = pf_exp2<EXACT>(fmaf(s[n][3], ks, -ms_hi));
                ps_lo += p0 + p1, ps_hi += p2 + p3;
                pa[n >> 1][(n & 1) * 2] = ptx_pack_bf16(p0, p1);
                pa[n >> 1][(n & 1) * 2 + 1] = ptx_pack_bf16(p2, p3);
            }
            l_lo = l_lo * corr_lo + ps_lo, l_hi = l_hi * corr_hi + ps_hi;
#pragma unroll
            for (int d = 0; d < HD / 8; d++) {
                o[d][0] *= corr_lo, o[d][1] *= corr_lo;
                o[d][2] *= corr_hi, o[d][3] *= corr_hi;
            }
            /* O += P V: matrices (keys kb..+7 | kb+8..+15) x (dims d0..+7 | d0+8..+15), transposed */
            const int vrow = lane & 15, vcol = (lane >> 4) * 8;
#pragma unroll
            for (int kb = 0; kb < PF_BN / 16; kb++) {
#pragma unroll
                for (int d2 = 0; d2 < HD / 16; d2++) {
                    uint32_t b[4];
                    ptx_ldsm4_t(b, ptx_smem(Vb + (kb * 16 + vrow) * LD + d2 * 16 + vcol));
                    ptx_mma(o[2 * d2], pa[kb], b[0], b[1]);
                    ptx_mma(o[2 * d2 + 1], pa[kb], b[2], b[3]);
                }
            }
        }
        if constexpr (FP8)
            if (kt + 1 < n_kt) store_kv((kt + 1) & 1); /* read last in step kt - 1 */
        __syncthreads(); /* the stage read here is the one the next iteration refills */
    }
    ptx_cp_wait<0>();
    if (!has_rows) return;
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);
    float inv_lo = l_lo > 0.0f ? 1.0f / l_lo : 0.0f, inv_hi = l_hi > 0.0f ? 1.0f / l_hi : 0.0f;
    /* stage O through this warp's own Q rows (Q is in registers now) */
#pragma unroll
    for (int d = 0; d < HD / 8; d++) {
        *(uint32_t *)(Qw + g * LD + d * 8 + 2 * t4) = ptx_pack_bf16(o[d][0] * inv_lo, o[d][1] * inv_lo);
        *(uint32_t *)(Qw + (g + 8) * LD + d * 8 + 2 * t4) = ptx_pack_bf16(o[d][2] * inv_hi, o[d][3] * inv_hi);
    }
    __syncwarp();
    const int h = h0 + wh;
#pragma unroll
    for (int i = lane; i < 16 * C8; i += 32) {
        int r = i / C8, c = i % C8;
        if (wr + r < nq)
            *(uint4 *)(out + (size_t)(tile.x + wr + r) * n_head * HD + h * HD + c * 8) =
                *(const uint4 *)(Qw + r * LD + c * 8);
    }
}

template <int HD, int HPB, bool EXACT, typename KT>
static void launch(CuCtx *c, const uint16_t *q, int ldq, int n_head, int n_head_kv, float sl2, const KT *kp,
                   const KT *vp, const int32_t *slots, const int32_t *tiles, int n_tiles, uint16_t *out)
{
    typedef PfSmem<HD, HPB> L;
    static int set = 0;
    if (!set) {
        cudaError_t e = cudaFuncSetAttribute(k_prefill_mma<HD, HPB, EXACT, KT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)L::bytes);
        if (e != cudaSuccess) {
            cu_fail(c, "attention prefill smem", cudaGetErrorString(e));
            return;
        }
        set = 1;
    }
    dim3 grid(n_head / HPB, n_tiles);
    k_prefill_mma<HD, HPB, EXACT, KT><<<grid, 128 * HPB, L::bytes, (cudaStream_t)cu_stream(c)>>>(
        (const bf16 *)q, ldq, n_head, n_head_kv, sl2, kp, vp, slots,
        (const int4 *)tiles, n_tiles, (bf16 *)out);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) cu_fail(c, "attention prefill", cudaGetErrorString(e));
}

template <int HD, int HPB, typename KT>
static void launch_e(CuCtx *c, bool exact, const uint16_t *q, int ldq, int n_head, int n_head_kv, float sl2,
                     const KT *kp, const KT *vp, const int32_t *slots, const int32_t *tiles, int n_tiles,
                     uint16_t *out)
{
    if (exact) launch<HD, HPB, true, KT>(c, q, ldq, n_head, n_head_kv, sl2, kp, vp, slots, tiles, n_tiles, out);
    else launch<HD, HPB, false, KT>(c, q, ldq, n_head, n_head_kv, sl2, kp, vp, slots, tiles, n_tiles, out);
}

template <typename KT>
static void prefill_mma(CuCtx *c, const uint16_t *q, int ldq, int n_head, int n_head_kv, int head_dim, float scale,
                        const KT *k_pool, const KT *v_pool, const int32_t *slots, const int32_t *tiles, int n_tiles,
                        uint16_t *out, int heads_per_block, int flags)
{
    if (n_tiles <= 0) return;
    if (n_head_kv <= 0 || n_head % n_head_kv || (head_dim != 64 && head_dim != 128) || ldq % 8) {
        cu_fail(c, "attention prefill", "unsupported shape (head_dim 64 or 128, row stride a multiple of 8)");
        return;
    }
    int G = n_head / n_head_kv;
    /* measured (bench_kernels, H100): two heads a block 2% faster at hd 128, 25% slower at hd 64 */
    if (heads_per_block == 0) heads_per_block = head_dim == 128 && G % 2 == 0 ? 2 : 1;
    if (heads_per_block != 1 && !(heads_per_block == 2 && G % 2 == 0)) {
        cu_fail(c, "attention prefill", "heads_per_block must be 1, or 2 with an even group size");
        return;
    }
    bool exact = flags & CU_PREFILL_EXACT_EXP;
    float sl2 = scale * 1.4426950408889634f;
    if (head_dim == 128) {
        if (heads_per_block == 2)
            launch_e<128, 2, KT>(c, exact, q, ldq, n_head, n_head_kv, sl2, k_pool, v_pool, slots, tiles, n_tiles, out);
        else
            launch_e<128, 1, KT>(c, exact, q, ldq, n_head, n_head_kv, sl2, k_pool, v_pool, slots, tiles, n_tiles, out);
    } else {
        if (heads_per_block == 2)
            launch_e<64, 2, KT>(c, exact, q, ldq, n_head, n_head_kv, sl2, k_pool, v_pool, slots, tiles, n_tiles, out);
        else
            launch_e<64, 1, KT>(c, exact, q, ldq, n_head, n_head_kv, sl2, k_pool, v_pool, slots, tiles, n_tiles, out);
    }
}

extern "C" void cu_attention_prefill_mma(CuCtx *c, const uint16_t *q, int ldq, int n_head, int n_head_kv,
                                         int head_dim, float scale, const uint16_t *k_pool, const uint16_t *v_pool,
                                         const int32_t *slots, const int32_t *tiles, int n_tiles, uint16_t *out,
                                         int heads_per_block, int flags)
{
    prefill_mma<bf16>(c, q, ldq, n_head, n_head_kv, head_dim, scale, (const bf16 *)k_pool, (const bf16 *)v_pool,
                      slots, tiles, n_tiles, out, heads_per_block, flags);
}

extern "C" void cu_attention_prefill_mma_fp8(CuCtx *c, const uint16_t *q, int ldq, int n_head, int n_head_kv,
                                             int head_dim, float scale, const uint8_t *k_pool,
                                             const uint8_t *v_pool, const int32_t *slots, const int32_t *tiles,
                                             int n_tiles, uint16_t *out, int heads_per_block, int flags)
{
    prefill_mma<uint8_t>(c, q, ldq, n_head, n_head_kv, head_dim, scale, k_pool, v_pool, slots, tiles, n_tiles, out,
                         heads_per_block, flags);
}
