/*
 * kernels/cuda/cuda_ptx.cuh — the few PTX instructions the hand-written
 * tensor-core kernels use (cuda_prefill.cu, cuda_gemv.cu), as inline
 * functions: cp.async (16 bytes, zero-fill), ldmatrix (x4, plain and
 * transposed), mma.sync m16n8k16 bf16 -> f32, and bf16x2 packing.
 *
 * Fragment layouts of mma m16n8k16 (g = lane / 4, t = lane % 4), each
 * register two bf16 (lower column in the low half):
 *   A 16x16 (row-major)  a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
 *   B 16x8  (k x n)      b0 (k 2t..2t+1, n g)   b1 (k 2t+8.., n g)
 *   C 16x8  f32          c0 c1 (g, 2t..2t+1)    c2 c3 (g+8, 2t..2t+1)
 * ldmatrix x4: lane i gives the address of row i % 8 of matrix i / 8; result
 * register j is matrix j, lane holding (row lane / 4, cols 2(lane % 4)..+1),
 * or with .trans (rows 2(lane % 4)..+1, col lane / 4).
 */
#ifndef SGL_KERNELS_CUDA_PTX_CUH
#define SGL_KERNELS_CUDA_PTX_CUH

#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ uint32_t ptx_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16 bytes global -> shared, bypassing L1; when !ok the destination is
 * zero-filled and nothing is read (src must still be a valid address). */
__device__ __forceinline__ void ptx_cp16(uint32_t dst, const void *src, bool ok)
{
    int n = ok ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}

__device__ __forceinline__ void ptx_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N> __device__ __forceinline__ void ptx_cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ptx_ldsm4(uint32_t (&r)[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ptx_ldsm4_t(uint32_t (&r)[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* c += a · b (m16n8k16, bf16 inputs, f32 accumulators) */
__device__ __forceinline__ void ptx_mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* 2^x on the special-function unit (ex2.approx, ~2 ulp; -inf gives +0) */
__device__ __forceinline__ float ptx_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* Programmatic dependent launch: lets the next kernel in the stream, when
 * it was launched with the programmatic-serialization attribute (the GEMV
 * of cuda_gemv.cu, CU_GR_PDL), start its prologue now; it still waits for
 * this grid's completion and memory (griddepcontrol.wait) before reading
 * what this one writes. A no-op for a dependent launched without it. */
__device__ __forceinline__ void ptx_launch_dependents() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }

/* two f32 -> bf16x2 (round to nearest even), lo in the low half */
__device__ __forceinline__ uint32_t ptx_pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

#endif
