/*
 * kernels/cpu/cpu.h — the CPU backend: constructors for the fast and the
 * reference KBackend, the worker pool, and the row conversions (fp16/bf16,
 * dequantization, activation quantization, quantized dot products) that
 * both backends and the tests share.
 *
 * Files:
 *   quant.c        scalar fp16/bf16, dequantize/quantize rows, scalar dots
 *   quant_avx2.c   AVX2/FMA/F16C dots and vector helpers (chosen at run time)
 *   quant_avx512.c AVX-512 VNNI matmul: 16 repacked weight rows x up to 8
 *                  activation rows per call (Q4_0, Q4_1, Q8_0)
 *   attn_avx2.c    AVX2 kernel of one attention part over f16 K/V (decode)
 *   pool.c         worker pool (pthreads), parallel-for over task indices,
 *                  core count (kernels/cpu/pool.h: it needs nothing above)
 *   ref.c          reference backend: one thread, plain loops, f32 math
 *   cpu.c          fast backend: quantized dots for small batches, OpenBLAS
 *                  sgemm over dequantized tiles for large ones, threaded ops
 *   devref.c       reference *device* backend: KDevOps on the host (bf16
 *                  activations as kernels/cuda rounds them), for tests
 *
 * Ownership: cpu_backend_new / cpu_ref_backend_new return a KBackend freed by
 * its destroy op. cpu_pool_new / cpu_pool_free pair up.
 */
#ifndef SGL_KERNELS_CPU_H
#define SGL_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/cpu/pool.h"   /* the worker pool and cpu_n_cores, re-exported */

/* ---- backends ------------------------------------------------------------ */

enum {
    CPU_NO_SIMD = 1 << 0,       /* use the portable scalar dots even with AVX2 */
    CPU_NO_BLAS = 1 << 1,       /* never use sgemm (quantized dots for every batch) */
    CPU_NO_VNNI = 1 << 2,       /* no AVX-512 VNNI kernels over repacked weights */
};

/* n_threads <= 0: one per online core. */
KBackend *cpu_backend_new(int n_threads, unsigned flags, char *err, size_t errcap);
KBackend *cpu_ref_backend_new(char *err, size_t errcap);
/* The reference device backend (devref.c): KBackend.dev on the host. */
KBackend *cpu_devref_backend_new(char *err, size_t errcap);

/* 1 when this CPU runs the *_avx2.c kernels (AVX2 + FMA + F16C). */
int cpu_has_avx2(void);
/* 1 when it also runs the *_avx512.c ones (AVX-512 F/BW/VL/VNNI). */
int cpu_has_avx512vnni(void);

/* ---- numbers and rows -------------------------------------------------- */

float cpu_f16_to_f32(uint16_t h);
uint16_t cpu_f32_to_f16(float f);       /* round to nearest even */
float cpu_bf16_to_f32(uint16_t h);
uint16_t cpu_f32_to_bf16(float f);      /* round to nearest even */

/* Dequantize n elements (a whole number of blocks) of any dtype to f32. */
void cpu_dequant_row(KDtype t, const void *src, float *dst, int64_t n);

/* Quantize n floats to t. Supported: F32, F16, BF16, Q8_0, Q8_1, Q8_K (the
 * activation formats) and Q4_0, Q4_1, Q4_K, Q5_K, Q6_K (simple
 * round-to-nearest fits, for tests and make-model --gguf). Returns -1 for
 * other types (Q5_0, Q5_1). */
int cpu_quant_row(KDtype t, const float *src, void *dst, int64_t n);

/* The activation format a weight dtype's dot product consumes: F32 for
 * F32/F16/BF16, Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for K-quants. */
KDtype cpu_dot_type(KDtype weight);

/* Scalar dot of one weight row (dtype w) with one activation row in
 * cpu_dot_type(w); n elements. The integer arithmetic is exact, so the SIMD
 * versions must agree up to float summation order. Returns 0 on an
 * unsupported dtype. */
typedef float (*cpu_dot_fn)(int64_t n, const void *w, const void *x);
cpu_dot_fn cpu_dot_scalar(KDtype w);
/* AVX2 version, or NULL where there is none (or the CPU lacks AVX2). */
cpu_dot_fn cpu_dot_avx2(KDtype w);

#endif
