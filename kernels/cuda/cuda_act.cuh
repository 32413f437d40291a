/*
 * kernels/cuda/cuda_act.cuh — elementwise activations that two kernels must
 * compute bit for bit alike, written once as inline device functions:
 *
 *   swiglu_bf16(g, u)   used by k_swiglu (cuda_ops.cu, over gu rows) and by
 *                       k_gemv_rows_swiglu (cuda_gemv.cu, on the GEMV's
 *                       bf16-rounded sums): the fused path's contract is
 *                       "the same bits as the GEMV then k_swiglu"
 *
 * Invariants: the float operations and roundings here are the whole
 * definition (devref.c's d_swiglu is their host twin); no fast-math
 * intrinsics, so the result does not depend on the kernel it is inlined in
 * (IEEE division, CUDA's expf).
 */
#ifndef SGL_KERNELS_CUDA_ACT_CUH
#define SGL_KERNELS_CUDA_ACT_CUH

#include <cuda_bf16.h>

/* bf16(bf16(g * sigmoid(g)) * u): silu rounded to bf16 before the product,
 * as the CPU reference rounds its intermediate */
__device__ __forceinline__ __nv_bfloat16 swiglu_bf16(__nv_bfloat16 g, __nv_bfloat16 u)
{
    float x = __bfloat162float(g);
    float s = __bfloat162float(__float2bfloat16(x / (1.0f + expf(-x))));
    return __float2bfloat16(s * __bfloat162float(u));
}

#endif
