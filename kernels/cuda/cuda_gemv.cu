/*
 * kernels/cuda/cuda_gemv.cu — the small-batch matmul of
 * kernels/cuda/cuda_gemv.h on the tensor cores.
 *
 * Why mma for a GEMV: with the weight tile as A (16 rows) and x as B (n <= 8
 * columns) one m16n8k16 does 16 rows × 8 batch rows × 16 columns, so the
 * arithmetic costs nothing beside the loads for any n <= 8, and every lane
 * keeps two independent 16-byte weight loads per 32 columns.
 *
 * The permuted k order: lane (g = lane/4, t = lane%4) loads 16 bytes of
 * weight rows g and g+8 at columns 8t..8t+7 of a 32-column chunk, and 16
 * bytes of x row g at the same columns. The mma's A fragment wants (row g,
 * k 2t..2t+1 | 2t+8..2t+9), its B fragment (k 2t..2t+1 | 2t+8..2t+9, col g):
 * taking logical k {2t, 2t+1, 2t+8, 2t+9} to physical columns {8t..8t+3}
 * for the first mma and to {8t+4..8t+7} for the second is a bijection of
 * the chunk's 32 columns applied to both operands, so the dot products are
 * unchanged and no lane exchanges data.
 */
#include "kernels/cuda/cuda_gemv.h"

#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_act.cuh"
#include "kernels/cuda/cuda_ptx.cuh"

typedef __nv_bfloat16 bf16;

/* lane run length in uint4 (gv_idx) when SGL_CUDA_GEMV_VEC does not say */
enum { GV_VEC_DEFAULT = CU_GEMV_PREFETCH | 1 };

enum { GV_WARPS = 8, GV_ROWS = 16, GV_STEP = 16 /* uint4 of a row per warp-step: 128 columns */ };

/* weights are read once: no L1 allocation; PF asks L2 to fetch the whole
 * 256-byte block around the access from DRAM (the rest of the row's run
 * follows in the next loads) */
template <int PF> __device__ __forceinline__ uint4 ld_stream(const uint4 *p)
{
    uint4 v;
    if (PF)
        asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "l"(p));
    else
        asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "l"(p));
    return v;
}

/* cp.async with the same 256-byte L2 prefetch */
__device__ __forceinline__ void cp16_pf(uint32_t dst, const void *src, bool ok)
{
    int n = ok ? 16 : 0;
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}

template <typename TOut> __device__ __forceinline__ void gv_store(TOut *p, float v, const bf16 *bias, int o);
template <> __device__ __forceinline__ void gv_store<bf16>(bf16 *p, float v, const bf16 *bias, int o)
{
    float r = __bfloat162float(__float2bfloat16(v));
    *p = __float2bfloat16(bias ? r + __bfloat162float(bias[o]) : r);
}
template <> __device__ __forceinline__ void gv_store<float>(float *p, float v, const bf16 *bias, int o) { *p = v; }

/* One warp-step's operands: 4 uint4 of weight rows g and g+8 and of x row g. */
struct GvStep {
    uint4 a[4], b[4], x[4];
};

/* Lane t's 4 uint4 of a 16-uint4 step: V adjacent ones (V*16 bytes a row,
 * the 4 lanes of a row covering 64·V contiguous bytes), 4/V such runs. */
template <int V> __device__ __forceinline__ int gv_idx(int i, int t) { return (i / V) * (4 * V) + t * V + i % V; }

template <int V, int PF>
__device__ __forceinline__ void gv_load(GvStep &st, const uint4 *wa, const uint4 *wb, const uint4 *xr, bool xok,
                                        int group, int t, int n_vec)
{
    const uint4 z = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int v = group * GV_STEP + gv_idx<V>(i, t);
        bool ok = v < n_vec;
        st.a[i] = ok ? ld_stream<PF>(wa + v) : z;
        st.b[i] = ok ? ld_stream<PF>(wb + v) : z;
        st.x[i] = ok && xok ? __ldg(xr + v) : z;
    }
}

__device__ __forceinline__ void gv_mma(float (&acc)[4], const GvStep &st)
{
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t a0[4] = {st.a[i].x, st.b[i].x, st.a[i].y, st.b[i].y};
        const uint32_t a1[4] = {st.a[i].z, st.b[i].z, st.a[i].w, st.b[i].w};
        ptx_mma(acc, a0, st.x[i].x, st.x[i].y);
        ptx_mma(acc, a1, st.x[i].z, st.x[i].w);
    }
}

/* The split-K tail of k_gemv and k_gemv_fp8: each warp's C fragment (weight
 * row g | g+8, batch row 2t..2t+1) into part, then every output of the
 * block's TILES tiles summed over the S warps of its tile in order and
 * stored, times wscale[o] when wscale is given. */
template <typename TOut, int S>
__device__ __forceinline__ void gv_split_store(float (*part)[GV_ROWS][8], const float *acc, int warp, int g, int t4,
                                               int n, int out, const float *wscale, const bf16 *bias, TOut *y, int ldy)
{
    constexpr int TILES = GV_WARPS / S;
    part[warp][g][2 * t4] = acc[0];
    part[warp][g][2 * t4 + 1] = acc[1];
    part[warp][g + 8][2 * t4] = acc[2];
    part[warp][g + 8][2 * t4 + 1] = acc[3];
    __syncthreads();
    for (int i = threadIdx.x; i < TILES * GV_ROWS * 8; i += GV_WARPS * 32) {
        int tl = i / (GV_ROWS * 8), row = i % GV_ROWS, col = (i / GV_ROWS) % 8;
        int o = (blockIdx.x * TILES + tl) * GV_ROWS + row;
        if (col < n && o < out) {
            float sum = 0.0f;
#pragma unroll
            for (int k = 0; k < S; k++) sum += part[tl * S + k][row][col];
            gv_store<TOut>(y + (size_t)col * ldy + o, wscale ? sum * wscale[o] : sum, bias, o);
        }
    }
}

/* Block: GV_WARPS warps = GV_WARPS / S row tiles of 16, S warps each; warp
 * k of a tile takes the 128-column steps k, k + S, k + 2S, ... with the
 * next step's loads issued before the current step's mma (two register
 * stages). */
template <typename TOut, int S, int V, int PF>
__global__ void __launch_bounds__(GV_WARPS * 32) k_gemv(const bf16 *__restrict__ x, int ldx, int n, int in,
                                                        const bf16 *__restrict__ w, int out,
                                                        const bf16 *__restrict__ bias, TOut *__restrict__ y, int ldy)
{
    constexpr int TILES = GV_WARPS / S;
    __shared__ float part[GV_WARPS][GV_ROWS][8];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int r0 = (blockIdx.x * TILES + warp / S) * GV_ROWS, ks = warp % S;
    /* rows past `out` (the last tile, or a tile past the end) read row out-1
     * and are not stored */
    const int ra = min(r0 + g, out - 1), rb = min(r0 + g + 8, out - 1);
    const uint4 *wa = (const uint4 *)(w + (size_t)ra * in), *wb = (const uint4 *)(w + (size_t)rb * in);
    const bool xok = g < n;
    const uint4 *xr = (const uint4 *)(x + (size_t)(xok ? g : 0) * ldx);
    const int n_vec = in / 8, n_groups = (n_vec + GV_STEP - 1) / GV_STEP;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    GvStep s0, s1;
    int gi = ks;
    gv_load<V, PF>(s0, wa, wb, xr, xok, gi, t4, n_vec);
    for (;;) {
        if (gi >= n_groups) break;
        gv_load<V, PF>(s1, wa, wb, xr, xok, gi + S, t4, n_vec);
        gv_mma(acc, s0);
        gi += S;
        if (gi >= n_groups) break;
        gv_load<V, PF>(s0, wa, wb, xr, xok, gi + S, t4, n_vec);
        gv_mma(acc, s1);
        gi += S;
    }
    gv_split_store<TOut, S>(part, acc, warp, g, t4, n, out, NULL, bias, y, ldy);
}

/* ---- the staged layout ------------------------------------------------------
 * Block: one 16-row tile, all of `in`, in stages of GS_K = 512 columns: each
 * warp copies whole 512-byte runs of two weight rows per cp.async
 * instruction (the access pattern of a copy) into a ring of GS_N stages in
 * shared memory, with the x rows of the stage; each warp then takes 64
 * columns of the stage: A (16 weight rows) and B (the x rows) by ldmatrix.
 * Rows padded by 16 bytes: ldmatrix's 8 rows fall in distinct banks. */
enum { GS_K = 512, GS_LD = GS_K + 8, GS_N = 3 };

struct GsSmem {
    bf16 w[GS_N][GV_ROWS][GS_LD];
    bf16 x[GS_N][8][GS_LD];
};

template <int PF>
__device__ __forceinline__ void gs_load(GsSmem &sm, int buf, const bf16 *w, int in, int r0, int out, const bf16 *x,
                                        int ldx, int n, int k0, int warp, int lane)
{
    /* weights: warp w copies rows 2w, 2w+1, 64 uint4 each, 32 lanes a run */
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int r = 2 * warp + (i >> 1), c = ((i & 1) * 32 + lane) * 8, k = k0 + c;
        int row = min(r0 + r, out - 1);
        bool ok = k < in;
        if (PF) cp16_pf(ptx_smem(&sm.w[buf][r][c]), w + (size_t)row * in + (ok ? k : 0), ok);
        else ptx_cp16(ptx_smem(&sm.w[buf][r][c]), w + (size_t)row * in + (ok ? k : 0), ok);
    }
    /* x rows 0..n-1 (rows past n feed only C columns that are not stored) */
    for (int i = threadIdx.x; i < n * (GS_K / 8); i += GV_WARPS * 32) {
        int r = i / (GS_K / 8), c = (i % (GS_K / 8)) * 8, k = k0 + c;
        bool ok = k < in;
        ptx_cp16(ptx_smem(&sm.x[buf][r][c]), x + (size_t)r * ldx + (ok ? k : 0), ok);
    }
}

template <typename TOut, int PF>
__global__ void __launch_bounds__(GV_WARPS * 32) k_gemv_staged(const bf16 *__restrict__ x, int ldx, int n, int in,
                                                               const bf16 *__restrict__ w, int out,
                                                               const bf16 *__restrict__ bias, TOut *__restrict__ y,
                                                               int ldy)
{
    extern __shared__ __align__(128) unsigned char gs_raw[];
    GsSmem &sm = *(GsSmem *)gs_raw;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int r0 = blockIdx.x * GV_ROWS, n_st = (in + GS_K - 1) / GS_K;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int s = 0; s < GS_N - 1; s++) {
        if (s < n_st) gs_load<PF>(sm, s, w, in, r0, out, x, ldx, n, s * GS_K, warp, lane);
        ptx_cp_commit();
    }
    for (int s = 0; s < n_st; s++) {
        ptx_cp_wait<GS_N - 2>();
        __syncthreads(); /* stage s landed for every thread; stage s-1 is no longer read */
        int nx = s + GS_N - 1;
        if (nx < n_st) gs_load<PF>(sm, nx % GS_N, w, in, r0, out, x, ldx, n, nx * GS_K, warp, lane);
        ptx_cp_commit();
        const int b = s % GS_N, c0 = warp * (GS_K / GV_WARPS);
#pragma unroll
        for (int kk = 0; kk < GS_K / GV_WARPS; kk += 32) {
            uint32_t a0[4], a1[4], xb[4];
            ptx_ldsm4(a0, ptx_smem(&sm.w[b][lane & 15][c0 + kk + (lane >> 4) * 8]));
            ptx_ldsm4(a1, ptx_smem(&sm.w[b][lane & 15][c0 + kk + 16 + (lane >> 4) * 8]));
            ptx_ldsm4(xb, ptx_smem(&sm.x[b][lane & 7][c0 + kk + (lane >> 3) * 8]));
            ptx_mma(acc, a0, xb[0], xb[1]);
            ptx_mma(acc, a1, xb[2], xb[3]);
        }
    }
    ptx_cp_wait<0>();
    __syncthreads();
    float (*part)[GV_ROWS][8] = (float (*)[GV_ROWS][8])gs_raw; /* the ring is free now */
    part[warp][g][2 * t4] = acc[0];
    part[warp][g][2 * t4 + 1] = acc[1];
    part[warp][g + 8][2 * t4] = acc[2];
    part[warp][g + 8][2 * t4 + 1] = acc[3];
    __syncthreads();
    if (threadIdx.x < GV_ROWS * 8) {
        int row = threadIdx.x % GV_ROWS, col = threadIdx.x / GV_ROWS, o = r0 + row;
        if (col < n && o < out) {
            float sum = 0.0f;
#pragma unroll
            for (int k = 0; k < GV_WARPS; k++) sum += part[k][row][col];
            gv_store<TOut>(y + (size_t)col * ldy + o, sum, bias, o);
        }
    }
}

template <typename TOut, int PF>
static int gemv_staged(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                       const uint16_t *bias, TOut *y, int ldy)
{
    static int set = 0;
    if (!set) {
        cudaError_t e = cudaFuncSetAttribute(k_gemv_staged<TOut, PF>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)sizeof(GsSmem));
        if (e != cudaSuccess) return -1;
        set = 1;
    }
    k_gemv_staged<TOut, PF><<<(out + GV_ROWS - 1) / GV_ROWS, GV_WARPS * 32, sizeof(GsSmem), (cudaStream_t)cu_stream(c)>>>(
        (const bf16 *)x, ldx, n, in, (const bf16 *)w, out, (const bf16 *)bias, y, ldy);
    return 0;
}

/* warps per row tile: the fewest that give the grid about one resident
 * wave of warps (16 a multiprocessor), so the split-K sum stays short */
static int gv_split(CuCtx *c, int out)
{
    int tiles = (out + GV_ROWS - 1) / GV_ROWS, want = cu_sm_count(c) * 16, s = 1;
    while (s < GV_WARPS && tiles * s < want) s *= 2;
    return s;
}

extern "C" int cu_gemv_fits(int n, int in, int ldx, const void *x, const void *w)
{
    return n >= 1 && n <= CU_GEMV_MAX_N && in >= 8 && in % 8 == 0 && ldx % 8 == 0 && ((uintptr_t)x & 15) == 0 &&
           ((uintptr_t)w & 15) == 0;
}

template <typename TOut, int S, int V, int PF>
static void gemv_launch(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                        const uint16_t *bias, TOut *y, int ldy)
{
    constexpr int rows_per_block = GV_WARPS / S * GV_ROWS;
    k_gemv<TOut, S, V, PF><<<(out + rows_per_block - 1) / rows_per_block, GV_WARPS * 32, 0,
                         (cudaStream_t)cu_stream(c)>>>((const bf16 *)x, ldx, n, in, (const bf16 *)w, out,
                                                       (const bf16 *)bias, y, ldy);
}

template <typename TOut, int V, int PF>
static int gemv_v(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                  const uint16_t *bias, TOut *y, int ldy, int split)
{
    switch (split) {
    case 1: gemv_launch<TOut, 1, V, PF>(c, x, ldx, n, in, w, out, bias, y, ldy); return 0;
    case 2: gemv_launch<TOut, 2, V, PF>(c, x, ldx, n, in, w, out, bias, y, ldy); return 0;
    case 4: gemv_launch<TOut, 4, V, PF>(c, x, ldx, n, in, w, out, bias, y, ldy); return 0;
    case 8: gemv_launch<TOut, 8, V, PF>(c, x, ldx, n, in, w, out, bias, y, ldy); return 0;
    default: return -1;
    }
}

static int gv_vec_default = 0; /* 0: read SGL_CUDA_GEMV_VEC once */

static int gv_vec(void)
{
    if (!gv_vec_default) {
        const char *e = getenv("SGL_CUDA_GEMV_VEC");
        int v = e ? (int)strtol(e, NULL, 0) : 0;
        int l = v & ~CU_GEMV_PREFETCH;
        gv_vec_default = l == 1 || l == 2 || l == 4 || l == CU_GEMV_STAGED ? v : GV_VEC_DEFAULT;
    }
    return gv_vec_default;
}

template <typename TOut>
static void gemv(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                 const uint16_t *bias, TOut *y, int ldy, int split, int vec)
{
    if (n <= 0 || out <= 0) return;
    if (!cu_gemv_fits(n, in, ldx, x, w)) {
        cu_fail(c, "gemv", "shape not taken (n <= 8, in a multiple of 8, 16-byte aligned rows)");
        return;
    }
    if (!split) split = gv_split(c, out);
    if (!vec) vec = gv_vec();
    int bad;
    switch (vec) {
    case 1: bad = gemv_v<TOut, 1, 0>(c, x, ldx, n, in, w, out, bias, y, ldy, split); break;
    case 2: bad = gemv_v<TOut, 2, 0>(c, x, ldx, n, in, w, out, bias, y, ldy, split); break;
    case 4: bad = gemv_v<TOut, 4, 0>(c, x, ldx, n, in, w, out, bias, y, ldy, split); break;
    case CU_GEMV_PREFETCH | 1: bad = gemv_v<TOut, 1, 1>(c, x, ldx, n, in, w, out, bias, y, ldy, split); break;
    case CU_GEMV_PREFETCH | 2: bad = gemv_v<TOut, 2, 1>(c, x, ldx, n, in, w, out, bias, y, ldy, split); break;
    case CU_GEMV_PREFETCH | 4: bad = gemv_v<TOut, 4, 1>(c, x, ldx, n, in, w, out, bias, y, ldy, split); break;
    case CU_GEMV_STAGED: bad = gemv_staged<TOut, 0>(c, x, ldx, n, in, w, out, bias, y, ldy); break;
    case CU_GEMV_PREFETCH | CU_GEMV_STAGED: bad = gemv_staged<TOut, 1>(c, x, ldx, n, in, w, out, bias, y, ldy); break;
    default: bad = -1;
    }
    if (bad) {
        cu_fail(c, "gemv", "split must be 1, 2, 4 or 8 and the layout 1, 2, 4 or CU_GEMV_STAGED (| CU_GEMV_PREFETCH)");
        return;
    }
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) cu_fail(c, "gemv", cudaGetErrorString(e));
}

extern "C" void cu_gemv_bf16(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                             const uint16_t *bias, uint16_t *y, int ldy)
{
    gemv<bf16>(c, x, ldx, n, in, w, out, bias, (bf16 *)y, ldy, 0, 0);
}

extern "C" void cu_gemv_bf16_f32(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                                 float *y, int ldy)
{
    gemv<float>(c, x, ldx, n, in, w, out, NULL, y, ldy, 0, 0);
}

extern "C" void cu_gemv_bf16_cfg(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                                 const uint16_t *bias, uint16_t *y, int ldy, int split, int vec)
{
    gemv<bf16>(c, x, ldx, n, in, w, out, bias, (bf16 *)y, ldy, split, vec);
}

extern "C" void cu_gemv_bf16_f32_cfg(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w,
                                     int out, float *y, int ldy, int split, int vec)
{
    gemv<float>(c, x, ldx, n, in, w, out, NULL, y, ldy, split, vec);
}

/* ---- the row-stream layout (cuda_gemv.h: cu_gemv_rows) ---------------------- */

enum { GR_WARPS = 4, GR_STEP = 256 /* columns a warp-step: 32 lanes x 8 */ };

/* programmatic dependent launch: wait for the grids this one depends on
 * (a no-op when launched without the attribute) */
__device__ __forceinline__ void gr_wait_prior() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }

/* 8 bf16 -> f32 (exact: a bf16 is the high half of its f32) */
__device__ __forceinline__ void gr_f8(const uint4 v, float (&f)[8])
{
    const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        f[2 * k] = __uint_as_float(u[k] << 16);
        f[2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
    }
}

template <int R, int U>
__device__ __forceinline__ void gr_load(uint4 (&wv)[U][R], const uint4 *const (&wr)[R], int j0, int ks, int KS,
                                        int lane, int nv)
{
    const uint4 z = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < U; u++) {
        int v = (ks + KS * (j0 + u)) * 32 + lane;
#pragma unroll
        for (int r = 0; r < R; r++) wv[u][r] = v < nv ? ld_stream<0>(wr[r] + v) : z;
    }
}

/* The sums of a row group: warp ks of the group takes the steps ks, ks +
 * KS, ... of the R rows wr[] against the N x rows (two accumulators a row
 * pair, a shuffle tree, then the KS warps' partials in order through part),
 * so sum[r][t] depends on `in` and KS only (the header's invariant); nv =
 * in / 8 (uint4 a row), n_iter the steps of this warp. The
 * first U steps of weights are loaded before griddepcontrol.wait. Returns
 * true in the group's first warp, every lane holding every sum; false in
 * the others, which hold nothing and return. */
template <int N, int R, int U, int KS>
__device__ __forceinline__ bool gr_sums(float (&sum)[R][N], const uint4 *const (&wr)[R], const bf16 *__restrict__ x,
                                        int ldx, int n, int nv, int n_iter, float (*part)[R][N], int warp,
                                        int grp, int ks, int lane)
{
    float acc[R][N][2];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < N; t++) acc[r][t][0] = acc[r][t][1] = 0.0f;
    uint4 wv[U][R];
    gr_load<R, U>(wv, wr, 0, ks, KS, lane, nv); /* weights do not depend on the kernel before */
    gr_wait_prior();
    const uint4 z = make_uint4(0, 0, 0, 0);
    for (int j0 = 0; j0 < n_iter; j0 += U) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int v = (ks + KS * (j0 + u)) * 32 + lane;
            float wf[R][8];
#pragma unroll
            for (int r = 0; r < R; r++) gr_f8(wv[u][r], wf[r]);
#pragma unroll
            for (int t = 0; t < N; t++) {
                /* rows t >= n read row n - 1 and are not stored */
                const uint4 *xr = (const uint4 *)(x + (size_t)min(t, n - 1) * ldx);
                float xf[8];
                gr_f8(v < nv ? __ldg(xr + v) : z, xf);
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int e = 0; e < 8; e++) acc[r][t][e & 1] = fmaf(wf[r][e], xf[e], acc[r][t][e & 1]);
            }
        }
        if (j0 + U < n_iter) gr_load<R, U>(wv, wr, j0 + U, ks, KS, lane, nv);
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < N; t++) {
            float s = acc[r][t][0] + acc[r][t][1];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            sum[r][t] = s;
        }
    if (KS > 1) {
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int t = 0; t < N; t++) part[warp][r][t] = sum[r][t];
        __syncthreads();
        if (ks) return false;
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < N; t++) {
                float s = part[grp * KS][r][t];
#pragma unroll
                for (int k = 1; k < KS; k++) s += part[grp * KS + k][r][t];
                sum[r][t] = s;
            }
    }
    return true;
}

template <typename TOut, int N, int R, int U, int KS>
__global__ void __launch_bounds__(GR_WARPS * 32) k_gemv_rows(const bf16 *__restrict__ x, int ldx, int n, int in,
                                                             const bf16 *__restrict__ w, int out,
                                                             const bf16 *__restrict__ bias, TOut *__restrict__ y,
                                                             int ldy)
{
    constexpr int GROUPS = GR_WARPS / KS;
    __shared__ float part[KS > 1 ? GR_WARPS : 1][R][N];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, grp = warp / KS, ks = warp % KS;
    const int r0 = (blockIdx.x * GROUPS + grp) * R;
    const int nv = in / 8, n_steps = (in + GR_STEP - 1) / GR_STEP;
    const int n_iter = (n_steps - ks + KS - 1) / KS; /* steps of this warp */
    const uint4 *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) wr[r] = (const uint4 *)(w + (size_t)min(r0 + r, out - 1) * in);
    float sum[R][N];
    if (!gr_sums<N, R, U, KS>(sum, wr, x, ldx, n, nv, n_iter, part, warp, grp, ks, lane)) return;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < N; t++)
            if (lane == r * N + t && t < n && r0 + r < out)
                gv_store<TOut>(y + (size_t)t * ldy + r0 + r, sum[r][t], bias, r0 + r);
}

template <typename TOut, int N, int R, int U, int KS>
static cudaError_t gr_launch(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                             const uint16_t *bias, TOut *y, int ldy, bool pdl)
{
    constexpr int rows_per_block = GR_WARPS / KS * R;
    cudaLaunchConfig_t lc = {};
    lc.gridDim = dim3((out + rows_per_block - 1) / rows_per_block);
    lc.blockDim = dim3(GR_WARPS * 32);
    lc.stream = (cudaStream_t)cu_stream(c);
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    lc.attrs = at;
    lc.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&lc, k_gemv_rows<TOut, N, R, U, KS>, (const bf16 *)x, ldx, n, in, (const bf16 *)w,
                              out, (const bf16 *)bias, y, ldy);
}

template <typename TOut, int N, int KS>
static cudaError_t gr_ru(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                         const uint16_t *bias, TOut *y, int ldy, int R, int U, bool pdl)
{
    if constexpr (N == 1) {
        if (R == 2 && U == 8) return gr_launch<TOut, N, 2, 8, KS>(c, x, ldx, n, in, w, out, bias, y, ldy, pdl);
        if (R == 4 && U == 4) return gr_launch<TOut, N, 4, 4, KS>(c, x, ldx, n, in, w, out, bias, y, ldy, pdl);
        if (R == 1 && U == 8) return gr_launch<TOut, N, 1, 8, KS>(c, x, ldx, n, in, w, out, bias, y, ldy, pdl);
        return gr_launch<TOut, N, 2, 4, KS>(c, x, ldx, n, in, w, out, bias, y, ldy, pdl);
    } else {
        /* n > 1: the faster of the two by KS on an H100 (results/h100-gemv-v1):
         * (2, 4) with one warp a row, (1, 8) with the row split */
        (void)R, (void)U;
        if (KS == 1) return gr_launch<TOut, N, 2, 4, KS>(c, x, ldx, n, in, w, out, bias, y, ldy, pdl);
        return gr_launch<TOut, N, 1, 8, KS>(c, x, ldx, n, in, w, out, bias, y, ldy, pdl);
    }
}

template <typename TOut, int KS>
static cudaError_t gr_n(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                        const uint16_t *bias, TOut *y, int ldy, int R, int U, bool pdl)
{
    if (n == 1) return gr_ru<TOut, 1, KS>(c, x, ldx, n, in, w, out, bias, y, ldy, R, U, pdl);
    if (n == 2) return gr_ru<TOut, 2, KS>(c, x, ldx, n, in, w, out, bias, y, ldy, R, U, pdl);
    if (n <= 4) return gr_ru<TOut, 4, KS>(c, x, ldx, n, in, w, out, bias, y, ldy, R, U, pdl);
    return gr_ru<TOut, 8, KS>(c, x, ldx, n, in, w, out, bias, y, ldy, R, U, pdl);
}

template <typename TOut>
static void gemv_rows(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                      const uint16_t *bias, TOut *y, int ldy, int cfg)
{
    if (n <= 0 || out <= 0) return;
    if (!cu_gemv_fits(n, in, ldx, x, w)) {
        cu_fail(c, "gemv rows", "shape not taken (n <= 8, in a multiple of 8, 16-byte aligned rows)");
        return;
    }
    int R = cfg & 15, U = (cfg >> 4) & 15, KS = (cfg >> 8) & 15;
    bool pdl = (cfg & CU_GR_PDL) != 0;
    if ((R != 1 && R != 2 && R != 4) || (U != 4 && U != 8) || (KS != 1 && KS != 2 && KS != 4)) {
        cu_fail(c, "gemv rows", "cfg must be CU_GR(R 1|2|4, U 4|8, KS 1|2|4)");
        return;
    }
    cudaError_t e = KS == 1   ? gr_n<TOut, 1>(c, x, ldx, n, in, w, out, bias, y, ldy, R, U, pdl)
                    : KS == 2 ? gr_n<TOut, 2>(c, x, ldx, n, in, w, out, bias, y, ldy, R, U, pdl)
                              : gr_n<TOut, 4>(c, x, ldx, n, in, w, out, bias, y, ldy, R, U, pdl);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) cu_fail(c, "gemv rows", cudaGetErrorString(e));
}

extern "C" void cu_gemv_rows(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                             const uint16_t *bias, void *y, int ldy, int f32, int cfg)
{
    if (f32) gemv_rows<float>(c, x, ldx, n, in, w, out, NULL, (float *)y, ldy, cfg);
    else gemv_rows<bf16>(c, x, ldx, n, in, w, out, bias, (bf16 *)y, ldy, cfg);
}

/* ---- gate|up with SwiGLU in the epilogue (cuda_gemv.h: cu_gemv_rows_swiglu) ----
 * A group owns P = R/2 columns j of act: its R rows are gate rows j..j+P-1
 * then up rows ff+j..ff+j+P-1 of the [2ff][in] matrix, summed by gr_sums
 * exactly as k_gemv_rows sums any row at the same KS; the epilogue rounds
 * both sums to bf16 (gv_store's rounding without a bias) and applies
 * swiglu_bf16 (k_swiglu's operations), so act is bit for bit the GEMV into
 * gu then k_swiglu. */
template <int N, int P, int U, int KS>
__global__ void __launch_bounds__(GR_WARPS * 32)
    k_gemv_rows_swiglu(const bf16 *__restrict__ x, int ldx, int n, int in, const bf16 *__restrict__ w, int ff,
                       bf16 *__restrict__ act, int ldact, int trigger)
{
    constexpr int GROUPS = GR_WARPS / KS, R = 2 * P;
    __shared__ float part[KS > 1 ? GR_WARPS : 1][R][N];
    /* the down GEMV after this kernel may start streaming its weights, as
     * it did after k_swiglu (it still waits for this grid before reading act) */
    if (trigger) ptx_launch_dependents();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, grp = warp / KS, ks = warp % KS;
    const int j0 = (blockIdx.x * GROUPS + grp) * P;
    const int nv = in / 8, n_steps = (in + GR_STEP - 1) / GR_STEP;
    const int n_iter = (n_steps - ks + KS - 1) / KS;
    const uint4 *wr[R];
#pragma unroll
    for (int p = 0; p < P; p++) {
        /* columns past ff (the last group) read column ff-1 and are not stored */
        const size_t j = (size_t)min(j0 + p, ff - 1);
        wr[p] = (const uint4 *)(w + j * in);
        wr[P + p] = (const uint4 *)(w + ((size_t)ff + j) * in);
    }
    float sum[R][N];
    if (!gr_sums<N, R, U, KS>(sum, wr, x, ldx, n, nv, n_iter, part, warp, grp, ks, lane)) return;
#pragma unroll
    for (int p = 0; p < P; p++)
#pragma unroll
        for (int t = 0; t < N; t++)
            if (lane == p * N + t && t < n && j0 + p < ff)
                act[(size_t)t * ldact + j0 + p] =
                    swiglu_bf16(__float2bfloat16(sum[p][t]), __float2bfloat16(sum[P + p][t]));
}

template <int N, int P, int U, int KS>
static cudaError_t grs_launch(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int ff,
                              uint16_t *act, int ldact, bool pdl, int trigger)
{
    constexpr int cols_per_block = GR_WARPS / KS * P;
    cudaLaunchConfig_t lc = {};
    lc.gridDim = dim3((ff + cols_per_block - 1) / cols_per_block);
    lc.blockDim = dim3(GR_WARPS * 32);
    lc.stream = (cudaStream_t)cu_stream(c);
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    lc.attrs = at;
    lc.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&lc, k_gemv_rows_swiglu<N, P, U, KS>, (const bf16 *)x, ldx, n, in, (const bf16 *)w, ff,
                              (bf16 *)act, ldact, trigger);
}

/* n = 1: (R, U) as asked; n > 1: (2, 4), the same sums (R and U never
 * change them) */
template <int KS>
static cudaError_t grs_n(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int ff,
                         uint16_t *act, int ldact, int R, int U, bool pdl, int trigger)
{
    if (n == 1) {
        if (R == 4) return grs_launch<1, 2, 4, KS>(c, x, ldx, n, in, w, ff, act, ldact, pdl, trigger);
        if (U == 8) return grs_launch<1, 1, 8, KS>(c, x, ldx, n, in, w, ff, act, ldact, pdl, trigger);
        return grs_launch<1, 1, 4, KS>(c, x, ldx, n, in, w, ff, act, ldact, pdl, trigger);
    }
    if (n == 2) return grs_launch<2, 1, 4, KS>(c, x, ldx, n, in, w, ff, act, ldact, pdl, trigger);
    if (n <= 4) return grs_launch<4, 1, 4, KS>(c, x, ldx, n, in, w, ff, act, ldact, pdl, trigger);
    return grs_launch<8, 1, 4, KS>(c, x, ldx, n, in, w, ff, act, ldact, pdl, trigger);
}

extern "C" void cu_gemv_rows_swiglu(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int ff,
                                    uint16_t *act, int ldact, int cfg)
{
    if (n <= 0 || ff <= 0) return;
    if (!cu_gemv_fits(n, in, ldx, x, w)) {
        cu_fail(c, "gemv rows swiglu", "shape not taken (n <= 8, in a multiple of 8, 16-byte aligned rows)");
        return;
    }
    int R = cfg & 15, U = (cfg >> 4) & 15, KS = (cfg >> 8) & 15;
    bool pdl = (cfg & CU_GR_PDL) != 0;
    int trigger = (cfg & CU_GR_TRIGGER) != 0;
    if ((R != 2 && R != 4) || (U != 4 && U != 8) || (R == 4 && U == 8) || (KS != 1 && KS != 2 && KS != 4)) {
        cu_fail(c, "gemv rows swiglu", "cfg must be CU_GR(R 2|4, U 4|8 (4 with R 4), KS 1|2|4)");
        return;
    }
    cudaError_t e = KS == 1   ? grs_n<1>(c, x, ldx, n, in, w, ff, act, ldact, R, U, pdl, trigger)
                    : KS == 2 ? grs_n<2>(c, x, ldx, n, in, w, ff, act, ldact, R, U, pdl, trigger)
                              : grs_n<4>(c, x, ldx, n, in, w, ff, act, ldact, R, U, pdl, trigger);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) cu_fail(c, "gemv rows swiglu", cudaGetErrorString(e));
}

/* ---- fp8 e4m3 weights ---------------------------------------------------------
 * Rows of `in` fp8 bytes, one f32 scale a row: W[o][i] = e4m3(q[o][i]) ·
 * scale[o], scale = max|W[o]| / 448 (e4m3's largest finite value), so each
 * row uses the whole range; rounding to nearest even, saturating. */

__global__ void k_quant_fp8(const bf16 *__restrict__ w, int in, uint8_t *__restrict__ q, float *__restrict__ scale)
{
    __shared__ float red[32];
    const bf16 *row = w + (size_t)blockIdx.x * in;
    float mx = 0.0f;
    for (int i = threadIdx.x; i < in; i += blockDim.x) mx = fmaxf(mx, fabsf(__bfloat162float(row[i])));
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = 0.0f;
    for (int k = 0; k < (int)(blockDim.x >> 5); k++) mx = fmaxf(mx, red[k]);
    float sc = mx > 0.0f ? mx / 448.0f : 1.0f, inv = 1.0f / sc;
    if (threadIdx.x == 0) scale[blockIdx.x] = sc;
    uint8_t *qr = q + (size_t)blockIdx.x * in;
    for (int i = 2 * threadIdx.x; i < in; i += 2 * blockDim.x) {
        float2 v = make_float2(__bfloat162float(row[i]) * inv, __bfloat162float(row[i + 1]) * inv);
        __nv_fp8x2_storage_t p = __nv_cvt_float2_to_fp8x2(v, __NV_SATFINITE, __NV_E4M3);
        *(__nv_fp8x2_storage_t *)(qr + i) = p;
    }
}

extern "C" void cu_quant_fp8(CuCtx *c, const uint16_t *w, int in, int out, uint8_t *q, float *scale)
{
    if (out <= 0) return;
    if (in % 16) {
        cu_fail(c, "quant fp8", "rows must be a multiple of 16 values");
        return;
    }
    k_quant_fp8<<<out, 256, 0, (cudaStream_t)cu_stream(c)>>>((const bf16 *)w, in, q, scale);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) cu_fail(c, "quant fp8", cudaGetErrorString(e));
}

/* two e4m3 -> bf16x2, exactly (every e4m3 value is a normal f16 and a bf16) */
__device__ __forceinline__ uint32_t fp8x2_bf16x2(uint16_t v)
{
    __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)v, __NV_E4M3);
    float2 f = __half22float2(*(__half2 *)&h);
    return ptx_pack_bf16(f.x, f.y);
}

/* Lane (g, t) takes 16 fp8 columns [16t, 16t + 16) of each 64-column chunk
 * of weight rows g and g+8 (one uint4), and the same columns of x row g (two
 * uint4); as bf16 they are two of the bf16 kernel's 8-column pieces, each
 * two mma. A warp-step is 4 chunks (256 columns); steps interleave over the
 * S warps of a tile as in k_gemv. */
template <typename TOut, int S>
__global__ void __launch_bounds__(GV_WARPS * 32) k_gemv_fp8(const bf16 *__restrict__ x, int ldx, int n, int in,
                                                            const uint8_t *__restrict__ wq,
                                                            const float *__restrict__ wscale, int out,
                                                            const bf16 *__restrict__ bias, TOut *__restrict__ y,
                                                            int ldy)
{
    constexpr int TILES = GV_WARPS / S;
    __shared__ float part[GV_WARPS][GV_ROWS][8];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int r0 = (blockIdx.x * TILES + warp / S) * GV_ROWS, ks = warp % S;
    const int ra = min(r0 + g, out - 1), rb = min(r0 + g + 8, out - 1);
    const uint4 *wa = (const uint4 *)(wq + (size_t)ra * in), *wb = (const uint4 *)(wq + (size_t)rb * in);
    const bool xok = g < n;
    const uint4 *xr = (const uint4 *)(x + (size_t)(xok ? g : 0) * ldx);
    const int n_q = in / 16, n_groups = (n_q + 15) / 16; /* uint4 of fp8 a row; 16 a step */
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint4 z = make_uint4(0, 0, 0, 0);
    for (int gi = ks; gi < n_groups; gi += S) {
        uint4 A[4], B[4], X[8];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int v = gi * 16 + i * 4 + t4;
            bool ok = v < n_q;
            A[i] = ok ? ld_stream<1>(wa + v) : z;
            B[i] = ok ? ld_stream<1>(wb + v) : z;
            X[2 * i] = ok && xok ? __ldg(xr + 2 * v) : z;
            X[2 * i + 1] = ok && xok ? __ldg(xr + 2 * v + 1) : z;
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t aw[4] = {A[i].x, A[i].y, A[i].z, A[i].w}, bw[4] = {B[i].x, B[i].y, B[i].z, B[i].w};
#pragma unroll
            for (int h = 0; h < 2; h++) {
                /* 8 columns: fp8 words 2h, 2h+1 of the uint4 -> 4 bf16x2 each row */
                uint32_t a8[4] = {fp8x2_bf16x2((uint16_t)aw[2 * h]), fp8x2_bf16x2((uint16_t)(aw[2 * h] >> 16)),
                                  fp8x2_bf16x2((uint16_t)aw[2 * h + 1]), fp8x2_bf16x2((uint16_t)(aw[2 * h + 1] >> 16))};
                uint32_t b8[4] = {fp8x2_bf16x2((uint16_t)bw[2 * h]), fp8x2_bf16x2((uint16_t)(bw[2 * h] >> 16)),
                                  fp8x2_bf16x2((uint16_t)bw[2 * h + 1]), fp8x2_bf16x2((uint16_t)(bw[2 * h + 1] >> 16))};
                const uint4 xv = X[2 * i + h];
                const uint32_t a0[4] = {a8[0], b8[0], a8[1], b8[1]};
                const uint32_t a1[4] = {a8[2], b8[2], a8[3], b8[3]};
                ptx_mma(acc, a0, xv.x, xv.y);
                ptx_mma(acc, a1, xv.z, xv.w);
            }
        }
    }
    gv_split_store<TOut, S>(part, acc, warp, g, t4, n, out, wscale, bias, y, ldy);
}

template <typename TOut>
static void gemv_fp8(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint8_t *wq, const float *wscale,
                     int out, const uint16_t *bias, TOut *y, int ldy)
{
    if (n <= 0 || out <= 0) return;
    if (n > CU_GEMV_MAX_N || in % 16 || ldx % 8 || ((uintptr_t)x & 15) || ((uintptr_t)wq & 15)) {
        cu_fail(c, "gemv fp8", "shape not taken (n <= 8, in a multiple of 16, 16-byte aligned rows)");
        return;
    }
    int split = gv_split(c, out);
    cudaStream_t st = (cudaStream_t)cu_stream(c);
    const bf16 *xb = (const bf16 *)x, *bb = (const bf16 *)bias;
    int grid = (out + GV_WARPS / split * GV_ROWS - 1) / (GV_WARPS / split * GV_ROWS);
    switch (split) {
    case 1: k_gemv_fp8<TOut, 1><<<grid, GV_WARPS * 32, 0, st>>>(xb, ldx, n, in, wq, wscale, out, bb, y, ldy); break;
    case 2: k_gemv_fp8<TOut, 2><<<grid, GV_WARPS * 32, 0, st>>>(xb, ldx, n, in, wq, wscale, out, bb, y, ldy); break;
    case 4: k_gemv_fp8<TOut, 4><<<grid, GV_WARPS * 32, 0, st>>>(xb, ldx, n, in, wq, wscale, out, bb, y, ldy); break;
    default: k_gemv_fp8<TOut, 8><<<grid, GV_WARPS * 32, 0, st>>>(xb, ldx, n, in, wq, wscale, out, bb, y, ldy); break;
    }
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) cu_fail(c, "gemv fp8", cudaGetErrorString(e));
}

extern "C" void cu_gemv_fp8(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint8_t *wq,
                            const float *wscale, int out, const uint16_t *bias, uint16_t *y, int ldy)
{
    gemv_fp8<bf16>(c, x, ldx, n, in, wq, wscale, out, bias, (bf16 *)y, ldy);
}

extern "C" void cu_gemv_fp8_f32(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint8_t *wq,
                                const float *wscale, int out, float *y, int ldy)
{
    gemv_fp8<float>(c, x, ldx, n, in, wq, wscale, out, NULL, y, ldy);
}
