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

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ptx.cuh"

typedef __nv_bfloat16 bf16;

enum { GV_WARPS = 8, GV_ROWS = 16, GV_U = 4 /* 32-column chunks per warp-step */ };

/* weights are read once: no L1 allocation */
__device__ __forceinline__ uint4 ld_stream(const uint4 *p)
{
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

template <typename TOut> __device__ __forceinline__ void gv_store(TOut *p, float v, const bf16 *bias, int o);
template <> __device__ __forceinline__ void gv_store<bf16>(bf16 *p, float v, const bf16 *bias, int o)
{
    float r = __bfloat162float(__float2bfloat16(v));
    *p = __float2bfloat16(bias ? r + __bfloat162float(bias[o]) : r);
}
template <> __device__ __forceinline__ void gv_store<float>(float *p, float v, const bf16 *bias, int o) { *p = v; }

template <typename TOut>
__global__ void __launch_bounds__(GV_WARPS * 32) k_gemv(const bf16 *__restrict__ x, int ldx, int n, int in,
                                                        const bf16 *__restrict__ w, int out,
                                                        const bf16 *__restrict__ bias, TOut *__restrict__ y, int ldy)
{
    __shared__ float part[GV_WARPS][GV_ROWS][8];
    const int r0 = blockIdx.x * GV_ROWS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    /* the last tile's rows past `out` read row out-1 and are not stored */
    const int ra = min(r0 + g, out - 1), rb = min(r0 + g + 8, out - 1);
    const uint4 *wa = (const uint4 *)(w + (size_t)ra * in) + t4, *wb = (const uint4 *)(w + (size_t)rb * in) + t4;
    const bool xok = g < n;
    const uint4 *xr = (const uint4 *)(x + (size_t)(xok ? g : 0) * ldx) + t4;
    const int n_chunks = in / 32;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c0 = warp * GV_U; c0 < n_chunks; c0 += GV_WARPS * GV_U) {
        uint4 A[GV_U], B[GV_U], X[GV_U];
#pragma unroll
        for (int u = 0; u < GV_U; u++) {
            int ch = c0 + u;
            const uint4 z = make_uint4(0, 0, 0, 0);
            A[u] = ch < n_chunks ? ld_stream(wa + ch * 4) : z;
            B[u] = ch < n_chunks ? ld_stream(wb + ch * 4) : z;
            X[u] = ch < n_chunks && xok ? __ldg(xr + ch * 4) : z;
        }
#pragma unroll
        for (int u = 0; u < GV_U; u++) {
            const uint32_t a0[4] = {A[u].x, B[u].x, A[u].y, B[u].y};
            const uint32_t a1[4] = {A[u].z, B[u].z, A[u].w, B[u].w};
            ptx_mma(acc, a0, X[u].x, X[u].y);
            ptx_mma(acc, a1, X[u].z, X[u].w);
        }
    }
    /* C fragment: (weight row g | g+8, batch row 2t..2t+1) */
    part[warp][g][2 * t4] = acc[0];
    part[warp][g][2 * t4 + 1] = acc[1];
    part[warp][g + 8][2 * t4] = acc[2];
    part[warp][g + 8][2 * t4 + 1] = acc[3];
    __syncthreads();
    if (threadIdx.x < GV_ROWS * 8) {
        int row = threadIdx.x % GV_ROWS, col = threadIdx.x / GV_ROWS, o = r0 + row;
        if (col < n && o < out) {
            float s = 0.0f;
#pragma unroll
            for (int k = 0; k < GV_WARPS; k++) s += part[k][row][col];
            gv_store<TOut>(y + (size_t)col * ldy + o, s, bias, o);
        }
    }
}

extern "C" int cu_gemv_fits(int n, int in, int ldx, const void *x, const void *w)
{
    return n >= 1 && n <= CU_GEMV_MAX_N && in >= 32 && in % 32 == 0 && ldx % 8 == 0 && ((uintptr_t)x & 15) == 0 &&
           ((uintptr_t)w & 15) == 0;
}

template <typename TOut>
static void gemv(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                 const uint16_t *bias, TOut *y, int ldy)
{
    if (n <= 0 || out <= 0) return;
    if (!cu_gemv_fits(n, in, ldx, x, w)) {
        cu_fail(c, "gemv", "shape not taken (n <= 8, in a multiple of 32, 16-byte aligned rows)");
        return;
    }
    k_gemv<TOut><<<(out + GV_ROWS - 1) / GV_ROWS, GV_WARPS * 32, 0, (cudaStream_t)cu_stream(c)>>>(
        (const bf16 *)x, ldx, n, in, (const bf16 *)w, out, (const bf16 *)bias, y, ldy);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) cu_fail(c, "gemv", cudaGetErrorString(e));
}

extern "C" void cu_gemv_bf16(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                             const uint16_t *bias, uint16_t *y, int ldy)
{
    gemv<bf16>(c, x, ldx, n, in, w, out, bias, (bf16 *)y, ldy);
}

extern "C" void cu_gemv_bf16_f32(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                                 float *y, int ldy)
{
    gemv<float>(c, x, ldx, n, in, w, out, NULL, y, ldy);
}
