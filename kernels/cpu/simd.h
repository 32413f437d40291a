/*
 * kernels/cpu/simd.h — internal to kernels/cpu: the AVX2 entry points of
 * quant_avx2.c. Only call them after cpu_has_avx2() said yes; the selectors
 * in cpu.c do that.
 */
#ifndef SGL_KERNELS_CPU_SIMD_H
#define SGL_KERNELS_CPU_SIMD_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/cpu.h"

/* Dot kernel for weight dtype w, or NULL when there is no AVX2 version. */
cpu_dot_fn cpu_avx2_dot(KDtype w);

/* One weight row against four activation rows x, x + xstride, ...:
 * out[t] is bit-identical to cpu_avx2_dot(w)(n, w, x + t*xstride). NULL
 * where there is no such kernel for w. */
typedef void (*cpu_dot4_fn)(int64_t n, const void *w, const void *x, size_t xstride, float *out);
cpu_dot4_fn cpu_avx2_dot4(KDtype w);

/* One weight row against T (1..4) activation rows xs[t], whose blocks'
 * scales are also given as f32: sc[t][2b] = the d of block b, sc[t][2b+1]
 * its s (Q8_1; anything for Q8_0), exactly as converted from the blocks.
 * out[t] is bit-identical to cpu_avx2_dot(w)(n, w, xs[t]); the table spares
 * every weight row the f16 conversions of the activations' scales. Q4_0,
 * Q4_1 and Q8_0 (the 32-value block formats); NULL for the others. */
typedef void (*cpu_dotx_fn)(int T, int64_t n, const void *w, const uint8_t *const *xs, const float *const *sc,
                            float *out);
cpu_dotx_fn cpu_avx2_dotx(KDtype w);

/* ---- quant_avx512.c: AVX-512 VNNI matmul over repacked weights ---------
 * Only after cpu_has_avx512vnni() said yes. Q4_0, Q4_1 and Q8_0 with k a
 * multiple of 32; the layout and the order of float operations are in the
 * file's header. */

/* Bytes of w (dtype t, rows of k) in the packed layout; 0 when t has none. */
size_t cpu_vnni_packed_bytes(KDtype t, int64_t k, int64_t rows);
/* Packs tiles [tile0, tile1) (16 rows each) of w into dst (64-byte aligned,
 * cpu_vnni_packed_bytes big): tiles are independent, so workers may pack
 * disjoint ranges at once. */
void cpu_vnni_pack(KDtype t, int64_t k, int64_t rows, const void *w, int64_t tile0, int64_t tile1, void *dst);
/* y[i][r] = x_i . w_r (+ bias[r]) for the rows r of tiles [tile0, tile1)
 * and the n activation rows xq + i*xrb in cpu_dot_type(t), with their
 * scale table xsc + i*xscn: (d, s) per block, s the sum of the quants for
 * Q8_0. y rows are `rows` apart. */
void cpu_vnni_matmul(KDtype t, int64_t k, const void *packed, int64_t tile0, int64_t tile1, int64_t rows, int n,
                     const uint8_t *xq, size_t xrb, const float *xsc, size_t xscn, const float *bias, float *y);

/* Activation quantization (same results as cpu_quant_row up to rounding
 * ties); returns -1 for a type it does not handle. */
int cpu_avx2_quant_row(KDtype t, const float *src, void *dst, int64_t n);

/* Attention helpers over KV rows. */
float cpu_avx2_dot_f32(int n, const float *a, const float *b);
float cpu_avx2_dot_f16(int n, const float *a, const uint16_t *h);
void cpu_avx2_axpy_f32(int n, float a, const float *x, float *y);   /* y += a*x */
void cpu_avx2_axpy_f16(int n, float a, const uint16_t *h, float *y);
void cpu_avx2_f32_to_f16(int n, const float *x, uint16_t *h);
void cpu_avx2_f16_to_f32(int n, const uint16_t *h, float *x);

/* One attention part (attn_avx2.c): n_q query heads (q rows hd apart) of one
 * KV group against the n f16 K/V rows k/v + slots[i] * row_stride (in
 * halves). Out: sc[g * sc_stride + i] = exp(score - m[g]) with score =
 * scale * q_g . k_i, m[g] = the largest score, l[g] = the sum of sc[g][..],
 * o[g * hd ..] = sum_i sc[g][i] * v_i (unnormalised). hd % 8 == 0. Each
 * head's numbers do not depend on n_q or on the other heads. */
void cpu_avx2_attn_part_f16(int hd, int n_q, const float *q, float scale, const uint16_t *k, const uint16_t *v,
                            size_t row_stride, const int32_t *slots, int n, float *sc, size_t sc_stride, float *o,
                            float *m, float *l);


/* Elementwise and row helpers. */
void cpu_avx2_silu_mul(size_t n, const float *gate, const float *up, float *out);
/* x[i] = exp(x[i] - shift) for i < n; returns the sum of the results. */
float cpu_avx2_exp_shift_sum(int n, float *x, float shift);
float cpu_avx2_max(int n, const float *x);
float cpu_avx2_sumsq(int n, const float *x);
void cpu_avx2_scale_mul(int n, const float *x, float s, const float *w, float *y); /* y = x*s*w */
void cpu_avx2_scale(int n, float *x, float s);
/* Dequantize (F16, Q4_0, Q4_1, Q8_0); -1 for other types. */
int cpu_avx2_dequant_row(KDtype t, const void *src, float *dst, int64_t n);

#endif
