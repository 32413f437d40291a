/*
 * kernels/cpu/quant_avx2.c — AVX2/FMA/F16C versions of the hot loops:
 * quantized dot products (weights x quantized activations), f16/f32 row
 * helpers for attention, and activation quantization.
 *
 * Built with -mavx2 -mfma -mf16c (the Makefile's *_avx2.c rule); callers go
 * through the selectors in cpu.c, which check the CPU first. Each kernel
 * computes exactly what its scalar twin in quant.c computes (integer sums
 * per block are exact), only the float accumulation order differs.
 *
 * The trick used throughout: _mm256_maddubs_epi16 multiplies unsigned bytes
 * by signed bytes and adds neighbouring pairs into int16; 4-bit and 6-bit
 * weights are unsigned, so they go in the first operand as they are. Signed
 * weights (Q4_0 after -8, Q8_0) use |w| and sign(y, w) to keep the product.
 */
#include "kernels/cpu/simd.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

static inline float hsum_ps(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline float ld_f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 16 packed bytes of nibbles -> 32 bytes: low nibbles first, then high ones. */
static inline __m256i unpack_nibbles(const uint8_t *qs)
{
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* sum of unsigned bytes u times signed bytes s, as 8 int32 lanes */
static inline __m256i mul_us(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* sum of signed bytes a times signed bytes b */
static inline __m256i mul_ss(__m256i a, __m256i b)
{
    return mul_us(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

/* The 32-element block formats share one kernel shape: a weight row against
 * T activation rows (T = 1..4, a compile-time constant after inlining).
 * Each token gets exactly the operations the T = 1 case performs, in the
 * same order, so results do not depend on how tokens are grouped: a row
 * computed in a batch of 8 is bit-identical to the same row computed alone.
 * Blocks are taken two at a time into two accumulators (acc0 even, acc1
 * odd blocks) for instruction-level parallelism. */
#define MAXT 4

typedef enum { B_Q4_0, B_Q4_1, B_Q8_0 } BlockKind;

static inline __m256i load_w(BlockKind k, const uint8_t *a)
{
    switch (k) {
    case B_Q4_0: return _mm256_sub_epi8(unpack_nibbles(a + 2), _mm256_set1_epi8(8));
    case B_Q4_1: return unpack_nibbles(a + 4);
    default: return _mm256_loadu_si256((const __m256i *)(a + 2));
    }
}

/* sum over the block of w*y as 8 int32 lanes */
static inline __m256i block_dot(BlockKind k, __m256i q, __m256i y)
{
    return k == B_Q4_1 ? mul_us(q, y) : mul_ss(q, y);
}

/* The activation block's d (and Q8_1's s) from the f16 block itself, or
 * from sc: the same values as f32 pairs (d, s) per block, converted once
 * per matmul by the caller (cpu_avx2_dotx). f16 -> f32 is exact, so both
 * give the same numbers; the table saves each weight row's pass the
 * conversions. */
static inline float act_d(const float *sc, const uint8_t *b, int64_t i) { return sc ? sc[2 * i] : ld_f16(b); }
static inline float act_s(const float *sc, const uint8_t *b, int64_t i) { return sc ? sc[2 * i + 1] : ld_f16(b + 2); }

static inline __attribute__((always_inline)) void dot_rows(BlockKind k, int T, int64_t n, const uint8_t *a,
                                                          const uint8_t *const *xs, const float *const *scs,
                                                          float *out)
{
    const int wb = k == B_Q4_0 ? 18 : k == B_Q4_1 ? 20 : 34; /* weight block bytes */
    const int xb = k == B_Q4_1 ? 36 : 34;                    /* activation block bytes */
    const int yo = k == B_Q4_1 ? 4 : 2;                      /* quants offset in an activation block */
    __m256 acc0[MAXT], acc1[MAXT];
    float summ[MAXT];
    for (int t = 0; t < T; t++) {
        acc0[t] = _mm256_setzero_ps();
        acc1[t] = _mm256_setzero_ps();
        summ[t] = 0;
    }
    int64_t nb = n / 32, i = 0;
    for (; i + 1 < nb; i += 2) {
        const uint8_t *w0 = a + i * wb, *w1 = w0 + wb;
        __m256i q0 = load_w(k, w0), q1 = load_w(k, w1);
        float d0 = ld_f16(w0), d1 = ld_f16(w1);
        float m0 = k == B_Q4_1 ? ld_f16(w0 + 2) : 0, m1 = k == B_Q4_1 ? ld_f16(w1 + 2) : 0;
        for (int t = 0; t < T; t++) {
            const uint8_t *b0 = xs[t] + i * xb, *b1 = b0 + xb;
            const float *sc = scs ? scs[t] : NULL;
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(b0 + yo));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(b1 + yo));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * act_d(sc, b0, i)), _mm256_cvtepi32_ps(block_dot(k, q0, y0)),
                                      acc0[t]);
            acc1[t] = _mm256_fmadd_ps(_mm256_set1_ps(d1 * act_d(sc, b1, i + 1)), _mm256_cvtepi32_ps(block_dot(k, q1, y1)),
                                      acc1[t]);
            if (k == B_Q4_1) summ[t] += m0 * act_s(sc, b0, i) + m1 * act_s(sc, b1, i + 1);
        }
    }
    for (; i < nb; i++) {
        const uint8_t *w0 = a + i * wb;
        __m256i q0 = load_w(k, w0);
        float d0 = ld_f16(w0);
        float m0 = k == B_Q4_1 ? ld_f16(w0 + 2) : 0;
        for (int t = 0; t < T; t++) {
            const uint8_t *b0 = xs[t] + i * xb;
            const float *sc = scs ? scs[t] : NULL;
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(b0 + yo));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * act_d(sc, b0, i)), _mm256_cvtepi32_ps(block_dot(k, q0, y0)),
                                      acc0[t]);
            if (k == B_Q4_1) summ[t] += m0 * act_s(sc, b0, i);
        }
    }
    for (int t = 0; t < T; t++) out[t] = hsum_ps(_mm256_add_ps(acc0[t], acc1[t])) + summ[t];
}

static float dot_q4_0(int64_t n, const void *w, const void *x)
{
    const uint8_t *xs[1] = {x};
    float r;
    dot_rows(B_Q4_0, 1, n, w, xs, NULL, &r);
    return r;
}

static float dot_q4_1(int64_t n, const void *w, const void *x)
{
    const uint8_t *xs[1] = {x};
    float r;
    dot_rows(B_Q4_1, 1, n, w, xs, NULL, &r);
    return r;
}

static float dot_q8_0(int64_t n, const void *w, const void *x)
{
    const uint8_t *xs[1] = {x};
    float r;
    dot_rows(B_Q8_0, 1, n, w, xs, NULL, &r);
    return r;
}

static void dot4_q4_0(int64_t n, const void *w, const void *x, size_t xstride, float *out)
{
    const uint8_t *b = x, *xs[4] = {b, b + xstride, b + 2 * xstride, b + 3 * xstride};
    dot_rows(B_Q4_0, 4, n, w, xs, NULL, out);
}

static void dot4_q4_1(int64_t n, const void *w, const void *x, size_t xstride, float *out)
{
    const uint8_t *b = x, *xs[4] = {b, b + xstride, b + 2 * xstride, b + 3 * xstride};
    dot_rows(B_Q4_1, 4, n, w, xs, NULL, out);
}

static void dot4_q8_0(int64_t n, const void *w, const void *x, size_t xstride, float *out)
{
    const uint8_t *b = x, *xs[4] = {b, b + xstride, b + 2 * xstride, b + 3 * xstride};
    dot_rows(B_Q8_0, 4, n, w, xs, NULL, out);
}

/* Q4_K / Q5_K packed 6-bit scales and mins -> sc[8], m[8] */
static inline void k4_unpack(const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        m[j] = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K against T activation rows; per token the same operations as T = 1. */
static inline __attribute__((always_inline)) void q4k_rows(int T, int64_t n, const uint8_t *a,
                                                          const uint8_t *const *xs, float *out)
{
    __m256 acc[MAXT];
    float accm[MAXT];
    for (int t = 0; t < T; t++) {
        acc[t] = _mm256_setzero_ps();
        accm[t] = 0;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t i = 0; i < n / 256; i++, a += 144) {
        uint8_t sc[8], m[8];
        k4_unpack(a + 4, sc, m);
        float d = ld_f16(a), dmin = ld_f16(a + 2);
        __m256i lo[4], hi[4];
        for (int c = 0; c < 4; c++) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(a + 16 + 32 * c));
            lo[c] = _mm256_and_si256(bits, m4);
            hi[c] = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        }
        for (int t = 0; t < T; t++) {
            const uint8_t *b = xs[t] + i * 292;
            float yd;
            memcpy(&yd, b, 4);
            const int8_t *y = (const int8_t *)(b + 4);
            int16_t bs[16];
            memcpy(bs, b + 260, 32);
            int summ = 0;
            for (int j = 0; j < 8; j++) summ += m[j] * (bs[2 * j] + bs[2 * j + 1]);
            __m256i sumi = _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                __m256i y0 = _mm256_loadu_si256((const __m256i *)(y + 64 * c));
                __m256i y1 = _mm256_loadu_si256((const __m256i *)(y + 64 * c + 32));
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo[c], y0), _mm256_set1_epi16(sc[2 * c]));
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi[c], y1), _mm256_set1_epi16(sc[2 * c + 1]));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(yd * d), _mm256_cvtepi32_ps(sumi), acc[t]);
            accm[t] += yd * dmin * summ;
        }
    }
    for (int t = 0; t < T; t++) out[t] = hsum_ps(acc[t]) - accm[t];
}

static float dot_q4_k(int64_t n, const void *w, const void *x)
{
    const uint8_t *xs[1] = {x};
    float r;
    q4k_rows(1, n, w, xs, &r);
    return r;
}

static void dot4_q4_k(int64_t n, const void *w, const void *x, size_t xstride, float *out)
{
    const uint8_t *b = x, *xs[4] = {b, b + xstride, b + 2 * xstride, b + 3 * xstride};
    q4k_rows(4, n, w, xs, out);
}

static float dot_q5_k(int64_t n, const void *w, const void *x)
{
    const uint8_t *a = w, *b = x;
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    const __m256i m4 = _mm256_set1_epi8(0x0f), bit = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < n / 256; i++, a += 176, b += 292) {
        float yd;
        memcpy(&yd, b, 4);
        const int8_t *y = (const int8_t *)(b + 4);
        int16_t bs[16];
        memcpy(bs, b + 260, 32);
        uint8_t sc[8], m[8];
        k4_unpack(a + 4, sc, m);
        int summ = 0;
        for (int j = 0; j < 8; j++) summ += m[j] * (bs[2 * j] + bs[2 * j + 1]);
        const uint8_t *ql = a + 48;
        __m256i qh = _mm256_loadu_si256((const __m256i *)(a + 16));
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(ql + 32 * c));
            /* bit 2c of qh feeds the low nibbles, bit 2c+1 the high ones;
             * shifting qh right moves that bit to position 0, then <<4 */
            __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * c), 4), bit);
            __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * c + 1), 4), bit);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4), h0);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), h1);
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(y + 64 * c));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(y + 64 * c + 32));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16(sc[2 * c]));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * ld_f16(a)), _mm256_cvtepi32_ps(sumi), acc);
        accm += yd * ld_f16(a + 2) * summ;
    }
    return hsum_ps(acc) - accm;
}

/* Q6_K against T activation rows; per token the same operations as T = 1. */
static inline __attribute__((always_inline)) void q6k_rows(int T, int64_t n, const uint8_t *a,
                                                          const uint8_t *const *xs, float *out)
{
    __m256 acc[MAXT];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(0x03);
    for (int64_t i = 0; i < n / 256; i++, a += 210) {
        const int8_t *sc = (const int8_t *)(a + 192);
        float d = ld_f16(a + 208);
        __m256i q[2][4];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a + 64 * h, *qhp = a + 128 + 32 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)qhp);
            q[h][0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            q[h][1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                      _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            q[h][2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                      _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            q[h][3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                      _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
        }
        for (int t = 0; t < T; t++) {
            const uint8_t *b = xs[t] + i * 292;
            float yd;
            memcpy(&yd, b, 4);
            const int8_t *y = (const int8_t *)(b + 4);
            int16_t bs[16];
            memcpy(bs, b + 260, 32);
            int sum32 = 0;
            for (int g = 0; g < 16; g++) sum32 += sc[g] * bs[g];
            __m256i sumi = _mm256_setzero_si256();
            for (int h = 0; h < 2; h++)
                for (int k = 0; k < 4; k++) {
                    __m256i yk = _mm256_loadu_si256((const __m256i *)(y + 128 * h + 32 * k));
                    int g = 8 * h + 2 * k;
                    __m256i sv = _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[h][k], yk), sv));
                }
            __m256 dv = _mm256_set1_ps(yd * d);
            acc[t] = _mm256_fmadd_ps(dv, _mm256_cvtepi32_ps(sumi), acc[t]);
            acc[t] = _mm256_fmadd_ps(dv, _mm256_setr_ps((float)(-32 * sum32), 0, 0, 0, 0, 0, 0, 0), acc[t]);
        }
    }
    for (int t = 0; t < T; t++) out[t] = hsum_ps(acc[t]);
}

static float dot_q6_k(int64_t n, const void *w, const void *x)
{
    const uint8_t *xs[1] = {x};
    float r;
    q6k_rows(1, n, w, xs, &r);
    return r;
}

static void dot4_q6_k(int64_t n, const void *w, const void *x, size_t xstride, float *out)
{
    const uint8_t *b = x, *xs[4] = {b, b + xstride, b + 2 * xstride, b + 3 * xstride};
    q6k_rows(4, n, w, xs, out);
}

float cpu_avx2_dot_f32(int n, const float *a, const float *b)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

float cpu_avx2_dot_f16(int n, const float *a, const uint16_t *h)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 h0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i)));
        __m256 h1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 8)));
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), h0, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), h1, s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), s0);
    float s = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * _cvtsh_ss(h[i]);
    return s;
}

static float dot_f32(int64_t n, const void *w, const void *x) { return cpu_avx2_dot_f32((int)n, x, w); }
static float dot_f16(int64_t n, const void *w, const void *x) { return cpu_avx2_dot_f16((int)n, x, w); }

static float dot_bf16(int64_t n, const void *w, const void *x)
{
    const uint16_t *h = w;
    const float *a = x;
    __m256 s0 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i)));
        __m256 f = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), f, s0);
    }
    float s = hsum_ps(s0);
    for (; i < n; i++) {
        uint32_t u = (uint32_t)h[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        s += a[i] * f;
    }
    return s;
}

void cpu_avx2_axpy_f32(int n, float a, const float *x, float *y)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

void cpu_avx2_axpy_f16(int n, float a, const uint16_t *h, float *y)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, x, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * _cvtsh_ss(h[i]);
}

void cpu_avx2_f32_to_f16(int n, const float *x, uint16_t *h)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) h[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

void cpu_avx2_f16_to_f32(int n, const uint16_t *h, float *x)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) x[i] = _cvtsh_ss(h[i]);
}

/* ---- activation quantization ------------------------------------------- */

static inline float hmax_abs(const float *x, int n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    __m128 v = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    v = _mm_max_ps(v, _mm_movehl_ps(v, v));
    v = _mm_max_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

/* 32 floats * id -> 32 int8 (round to nearest even), returns their sum */
static inline int q8_32(const float *x, float id, int8_t *out)
{
    __m256 vid = _mm256_set1_ps(id);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), vid));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vid));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), vid));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), vid));
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    /* packs interleave 128-bit lanes; the permute puts elements back in order */
    __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
    __m256i p = _mm256_packs_epi16(p01, p23);
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, p);
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_hadd_epi32(t, t);
    t = _mm_hadd_epi32(t, t);
    return _mm_cvtsi128_si32(t);
}

int cpu_avx2_quant_row(KDtype t, const float *src, void *dst, int64_t n)
{
    uint8_t *d = dst;
    switch (t) {
    case K_DTYPE_Q8_0:
    case K_DTYPE_Q8_1: {
        int with_sum = t == K_DTYPE_Q8_1, bytes = with_sum ? 36 : 34;
        for (int64_t i = 0; i < n / 32; i++) {
            const float *x = src + 32 * i;
            uint8_t *b = d + bytes * i;
            float amax = hmax_abs(x, 32);
            float sc = amax / 127.0f, id = sc != 0 ? 1.0f / sc : 0.0f;
            int sum = q8_32(x, id, (int8_t *)(b + (with_sum ? 4 : 2)));
            uint16_t h = _cvtss_sh(sc, _MM_FROUND_TO_NEAREST_INT);
            memcpy(b, &h, 2);
            if (with_sum) {
                h = _cvtss_sh(sc * (float)sum, _MM_FROUND_TO_NEAREST_INT);
                memcpy(b + 2, &h, 2);
            }
        }
        return 0;
    }
    default:
        return -1;
    }
}

#define DOTX(name, kind)                                                                                          \
    static void name(int T, int64_t n, const void *w, const uint8_t *const *xs, const float *const *sc, float *out) \
    {                                                                                                             \
        switch (T) {                                                                                              \
        case 1: dot_rows(kind, 1, n, w, xs, sc, out); break;                                                      \
        case 2: dot_rows(kind, 2, n, w, xs, sc, out); break;                                                      \
        case 3: dot_rows(kind, 3, n, w, xs, sc, out); break;                                                      \
        default: dot_rows(kind, 4, n, w, xs, sc, out); break;                                                     \
        }                                                                                                         \
    }
DOTX(dotx_q4_0, B_Q4_0)
DOTX(dotx_q4_1, B_Q4_1)
DOTX(dotx_q8_0, B_Q8_0)
#undef DOTX

cpu_dotx_fn cpu_avx2_dotx(KDtype w)
{
    switch (w) {
    case K_DTYPE_Q4_0: return dotx_q4_0;
    case K_DTYPE_Q4_1: return dotx_q4_1;
    case K_DTYPE_Q8_0: return dotx_q8_0;
    default: return NULL;
    }
}

cpu_dot4_fn cpu_avx2_dot4(KDtype w)
{
    switch (w) {
    case K_DTYPE_Q4_0: return dot4_q4_0;
    case K_DTYPE_Q4_1: return dot4_q4_1;
    case K_DTYPE_Q8_0: return dot4_q8_0;
    case K_DTYPE_Q4_K: return dot4_q4_k;
    case K_DTYPE_Q6_K: return dot4_q6_k;
    default: return NULL;
    }
}

cpu_dot_fn cpu_avx2_dot(KDtype w)
{
    switch (w) {
    case K_DTYPE_F32: return dot_f32;
    case K_DTYPE_F16: return dot_f16;
    case K_DTYPE_BF16: return dot_bf16;
    case K_DTYPE_Q4_0: return dot_q4_0;
    case K_DTYPE_Q4_1: return dot_q4_1;
    case K_DTYPE_Q8_0: return dot_q8_0;
    case K_DTYPE_Q4_K: return dot_q4_k;
    case K_DTYPE_Q5_K: return dot_q5_k;
    case K_DTYPE_Q6_K: return dot_q6_k;
    default: return NULL;
    }
}

/* ---- elementwise ---------------------------------------------------------- */

/* exp(x) for x in [-88, 88]: x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-6
 * Taylor polynomial (relative error ~1e-7), 2^n put into the exponent. */
static inline __m256 exp_ps(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

void cpu_avx2_silu_mul(size_t n, const float *gate, const float *up, float *out)
{
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp_ps(_mm256_xor_ps(g, sign));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

float cpu_avx2_exp_shift_sum(int n, float *x, float shift)
{
    __m256 vs = _mm256_set1_ps(shift), acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float s = hsum_ps(acc);
    for (; i < n; i++) s += (x[i] = expf(x[i] - shift));
    return s;
}

float cpu_avx2_max(int n, const float *x)
{
    float m = -INFINITY;
    int i = 0;
    if (n >= 8) {
        __m256 v = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8) v = _mm256_max_ps(v, _mm256_loadu_ps(x + i));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        m = _mm_cvtss_f32(h);
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

float cpu_avx2_sumsq(int n, const float *x) { return cpu_avx2_dot_f32(n, x, x); }

void cpu_avx2_scale_mul(int n, const float *x, float s, const float *w, float *y)
{
    __m256 vs = _mm256_set1_ps(s);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) y[i] = x[i] * s * w[i];
}

void cpu_avx2_scale(int n, float *x, float s)
{
    __m256 vs = _mm256_set1_ps(s);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
    for (; i < n; i++) x[i] *= s;
}

/* ---- dequantization (for the sgemm tiles) ------------------------------- */

static inline void store_bytes_ps(__m256i q, __m256 d, __m256 m, float *y)
{
    /* 32 signed bytes -> 4 x 8 floats, y = q*d + m */
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    __m256 f2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    __m256 f3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
    _mm256_storeu_ps(y, _mm256_fmadd_ps(f0, d, m));
    _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(f1, d, m));
    _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(f2, d, m));
    _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(f3, d, m));
}

int cpu_avx2_dequant_row(KDtype t, const void *src, float *dst, int64_t n)
{
    const uint8_t *s = src;
    const __m256 zero = _mm256_setzero_ps();
    switch (t) {
    case K_DTYPE_F16:
        cpu_avx2_f16_to_f32((int)n, src, dst);
        return 0;
    case K_DTYPE_Q4_0:
        for (int64_t i = 0; i < n / 32; i++, s += 18)
            store_bytes_ps(_mm256_sub_epi8(unpack_nibbles(s + 2), _mm256_set1_epi8(8)), _mm256_set1_ps(ld_f16(s)),
                           zero, dst + 32 * i);
        return 0;
    case K_DTYPE_Q4_1:
        for (int64_t i = 0; i < n / 32; i++, s += 20)
            store_bytes_ps(unpack_nibbles(s + 4), _mm256_set1_ps(ld_f16(s)), _mm256_set1_ps(ld_f16(s + 2)),
                           dst + 32 * i);
        return 0;
    case K_DTYPE_Q8_0:
        for (int64_t i = 0; i < n / 32; i++, s += 34)
            store_bytes_ps(_mm256_loadu_si256((const __m256i *)(s + 2)), _mm256_set1_ps(ld_f16(s)), zero,
                           dst + 32 * i);
        return 0;
    default:
        return -1;
    }
}
