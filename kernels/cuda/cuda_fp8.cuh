/*
 * kernels/cuda/cuda_fp8.cuh — the KV pool's element type as a template
 * argument of the attention kernels and rope_kv (cuda_decode.cu,
 * cuda_prefill.cu, cuda_ops.cu): bf16, or fp8 e4m3 bytes (scale 1.0).
 *
 *   KvT<bf16>     8 values = one uint4 (16 bytes)   load -> 8 f32 / 8 bf16
 *   KvT<uint8_t>  8 values = one uint2 (8 bytes)    e4m3 -> f16 -> f32 / bf16 (exact)
 *
 * Invariants:
 *   - Every e4m3 value is exactly a bf16 (3 mantissa bits, exponents
 *     -9..8), so widening loses nothing; the kernels then compute as on a
 *     bf16 pool.
 *   - put: a bf16 result (as rope_kv rounds it) stored as bf16, or rounded
 *     from it to e4m3 (nearest even, saturating to +-448): kernels/backend.h
 *     k_f32_to_e4m3 is the host's copy of that rounding.
 */
#ifndef SGL_KERNELS_CUDA_FP8_CUH
#define SGL_KERNELS_CUDA_FP8_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

template <typename KT> struct KvT;

template <> struct KvT<__nv_bfloat16> {
    typedef uint4 raw8; /* 8 values */
    static constexpr bool fp8 = false;
    __device__ static __forceinline__ void to_f32(const raw8 &v, float *f)
    {
        const __nv_bfloat162 *p = (const __nv_bfloat162 *)&v;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 t = __bfloat1622float2(p[i]);
            f[2 * i] = t.x, f[2 * i + 1] = t.y;
        }
    }
    __device__ static __forceinline__ uint4 to_bf16(const raw8 &v) { return v; }
    __device__ static __forceinline__ void put(__nv_bfloat16 *p, __nv_bfloat16 v) { *p = v; }
};

template <> struct KvT<uint8_t> {
    typedef uint2 raw8;
    static constexpr bool fp8 = true;
    __device__ static __forceinline__ float2 pair(uint32_t w16)
    {
        __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)w16, __NV_E4M3);
        return __half22float2(*(__half2 *)&h);
    }
    __device__ static __forceinline__ void to_f32(const raw8 &v, float *f)
    {
        const uint32_t w[2] = {v.x, v.y};
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float2 a = pair(w[i] & 0xffffu), b = pair(w[i] >> 16);
            f[4 * i] = a.x, f[4 * i + 1] = a.y, f[4 * i + 2] = b.x, f[4 * i + 3] = b.y;
        }
    }
    __device__ static __forceinline__ uint4 to_bf16(const raw8 &v)
    {
        float f[8];
        to_f32(v, f);
        uint4 o;
        __nv_bfloat162 *p = (__nv_bfloat162 *)&o;
#pragma unroll
        for (int i = 0; i < 4; i++) p[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
        return o;
    }
    __device__ static __forceinline__ void put(uint8_t *p, __nv_bfloat16 v)
    {
        *p = (uint8_t)__nv_cvt_float_to_fp8(__bfloat162float(v), __NV_SATFINITE, __NV_E4M3);
    }
};

#endif
