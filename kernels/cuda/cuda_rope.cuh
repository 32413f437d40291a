/*
 * kernels/cuda/cuda_rope.cuh — the one RoPE rounding of the CUDA kernels, as
 * inline device functions, so that rope_kv (cuda_ops.cu k_rope_kv_f) and the
 * decode attention that rotates q and the new key itself (cuda_decode.cu,
 * cu_attention_decode_rope) compute the same bits from the same inputs.
 *
 *   angle = pos * inv_freq[i]          (f32 product, never contracted)
 *   cos, sin of it, each rounded to bf16          (Hugging Face's cos/sin cast)
 *   lo = bf16(bf16(x1 * cos) + bf16(-x2 * sin))   (q*cos + rotate_half(q)*sin,
 *   hi = bf16(bf16(x2 * cos) + bf16(x1 * sin))     each product rounded)
 *
 * Pairing: NEOX (x[i], x[i + rot/2]), NORM (x[2i], x[2i+1]); dims past rot
 * are kept as they are (kernels/backend.h KRopeStyle). kernels/cpu/devref.c
 * is the host twin (its cosf/sinf differ from sincosf in the last bit now and
 * then, so GPU tests compare it within a tolerance; CUDA against CUDA is
 * bit-exact).
 */
#ifndef SGL_KERNELS_CUDA_ROPE_CUH
#define SGL_KERNELS_CUDA_ROPE_CUH

#include <cuda_bf16.h>

/* cos and sin of pair i's angle at position p, rounded to bf16 (as f32) */
__device__ __forceinline__ float2 rope_cos_sin(float p, float inv_freq)
{
    float s, c;
    sincosf(__fmul_rn(p, inv_freq), &s, &c);
    return make_float2(__bfloat162float(__float2bfloat16(c)), __bfloat162float(__float2bfloat16(s)));
}

/* the rotated pair of (x1, x2) under cs = rope_cos_sin(...) */
__device__ __forceinline__ void rope_rotate(float x1, float x2, float2 cs, __nv_bfloat16 &lo, __nv_bfloat16 &hi)
{
    float a = __bfloat162float(__float2bfloat16(__fmul_rn(x1, cs.x)));
    float b = __bfloat162float(__float2bfloat16(__fmul_rn(-x2, cs.y)));
    float e = __bfloat162float(__float2bfloat16(__fmul_rn(x2, cs.x)));
    float f = __bfloat162float(__float2bfloat16(__fmul_rn(x1, cs.y)));
    lo = __float2bfloat16(__fadd_rn(a, b));
    hi = __float2bfloat16(__fadd_rn(e, f));
}

/* Dimension d of a head x[0..hd) after rotation (x bf16, rot even, cs[i] =
 * rope_cos_sin of pair i for i < rot/2): one value, computed on its own
 * (its pair partner computes the same pair again), for kernels whose
 * threads each own some dimensions. */
__device__ __forceinline__ __nv_bfloat16 rope_dim(const __nv_bfloat16 *x, int d, int rot, int neox,
                                                  const float2 *cs)
{
    if (d >= rot) return x[d];
    int half = rot / 2, i, i1, i2;
    if (neox) i = d < half ? d : d - half, i1 = i, i2 = i + half;
    else i = d / 2, i1 = 2 * i, i2 = 2 * i + 1;
    __nv_bfloat16 lo, hi;
    rope_rotate(__bfloat162float(x[i1]), __bfloat162float(x[i2]), cs[i], lo, hi);
    return d == i1 ? lo : hi;
}

#endif
