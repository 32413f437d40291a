/*
 * kernels/cpu/attn_avx2.c — the AVX2/FMA/F16C kernel of one attention part:
 * the query heads of one KV group against a run of f16 K/V rows (cpu.c's
 * attn_part; see "attention" there for the parts and their merge).
 *
 *   scores   sc[g][i] = scale · q_g · k_i      4 keys × up to 3 heads a pass
 *   softmax  m[g] = max_i sc[g][i], sc[g][i] = exp(sc[g][i] - m[g]),
 *            l[g] = sum_i sc[g][i]
 *   values   o_g = sum_i sc[g][i] · v_i        32 dims × up to 3 heads a pass
 *
 * Why this shape: a decode step's attention is a stream over the context's
 * K/V rows. Done one (row, head) at a time (a dot with its horizontal sum,
 * then an axpy that loads and stores the whole output row), every row is
 * converted from f16 once per head, and the output rows go through memory
 * once per key. Here each loaded row is converted once and feeds every
 * head of the pass, the accumulators stay in registers (12 of the 16 ymm
 * registers, the loaded q/p values take 3, the row chunk 1), and four
 * keys' dot products are reduced together (one transpose-add instead of
 * four horizontal sums).
 *
 * Determinism: every head's numbers are computed by the same instructions
 * in the same order whatever heads share its pass (n_q = 1 when cpu.c
 * splits a decode by query head) and whatever keys share its block of four
 * (a short last block repeats its last row and drops the extra lanes), so
 * the result depends only on the head's query and the rows, as cpu.c's
 * batch-invariance promise needs.
 *
 * Built with -mavx2 -mfma -mf16c (the Makefile's *_avx2.c rule); only
 * called after cpu_has_avx2() said yes. head_dim must be a multiple of 8.
 */
#include "kernels/cpu/simd.h"

#include <immintrin.h>

/* the loops over heads, keys and vector columns below have constant trip
 * counts once inlined; unrolled, their arrays become registers */
#define UNROLL _Pragma("GCC unroll 4")
#define PREFETCH 16             /* keys ahead */
#define MAXG 3                  /* heads per pass: 3 x 4 accumulators + 4 loads = 16 ymm */

static inline __m256 load_h8(const uint16_t *h) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)); }

/* Sums of each of four vectors: {Σa, Σb, Σc, Σd}. Each lane of the result
 * depends only on its own input vector. */
static inline __m128 sum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d), s = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* Scores of G heads (q rows hd apart) against keys k[0..3]: sc[g*ss + j]. */
static inline __attribute__((always_inline)) void scores4(int G, int hd, const float *q, float scale,
                                                        const uint16_t *const k[4], float *sc, size_t ss, int nk)
{
    __m256 acc[MAXG][4];
    UNROLL for (int g = 0; g < G; g++)
        UNROLL for (int j = 0; j < 4; j++) acc[g][j] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d += 8) {
        __m256 qv[MAXG];
        UNROLL for (int g = 0; g < G; g++) qv[g] = _mm256_loadu_ps(q + (size_t)g * hd + d);
        UNROLL for (int j = 0; j < 4; j++) {
            __m256 kv = load_h8(k[j] + d);
            UNROLL for (int g = 0; g < G; g++) acc[g][j] = _mm256_fmadd_ps(qv[g], kv, acc[g][j]);
        }
    }
    __m128 vs = _mm_set1_ps(scale);
    UNROLL for (int g = 0; g < G; g++) {
        __m128 s = _mm_mul_ps(sum4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]), vs);
        if (nk == 4) {
            _mm_storeu_ps(sc + (size_t)g * ss, s);
        } else {
            float t[4];
            _mm_storeu_ps(t, s);
            for (int j = 0; j < nk; j++) sc[(size_t)g * ss + j] = t[j];
        }
    }
}

/* o[g*hd + d0 .. + W*8) = Σ_i p[g*ss + i] · v_i[d0 ..] for G heads, W ymm wide. */
static inline __attribute__((always_inline)) void values(int G, int W, int hd, int d0, const uint16_t *v,
                                                       size_t rs, const int32_t *slots, int n, const float *p,
                                                       size_t ss, float *o)
{
    __m256 acc[MAXG][4];
    UNROLL for (int g = 0; g < G; g++)
        UNROLL for (int w = 0; w < W; w++) acc[g][w] = _mm256_setzero_ps();
    for (int i = 0; i < n; i++) {
        const uint16_t *row = v + (size_t)slots[i] * rs + d0;
        __m256 pv[MAXG];
        UNROLL for (int g = 0; g < G; g++) pv[g] = _mm256_broadcast_ss(p + (size_t)g * ss + i);
        UNROLL for (int w = 0; w < W; w++) {
            __m256 x = load_h8(row + 8 * w);
            UNROLL for (int g = 0; g < G; g++) acc[g][w] = _mm256_fmadd_ps(pv[g], x, acc[g][w]);
        }
    }
    UNROLL for (int g = 0; g < G; g++)
        UNROLL for (int w = 0; w < W; w++) _mm256_storeu_ps(o + (size_t)g * hd + d0 + 8 * w, acc[g][w]);
}

static inline __attribute__((always_inline)) void part_heads(int G, int hd, const float *q, float scale,
                                                           const uint16_t *k, const uint16_t *v, size_t rs,
                                                           const int32_t *slots, int n, float *sc, size_t ss,
                                                           float *o, float *m, float *l)
{
    size_t row_bytes = (size_t)hd * sizeof(uint16_t);
    for (int i = 0; i < n; i += 4) {
        int nk = n - i < 4 ? n - i : 4;
        /* the rows PREFETCH keys ahead, K and V (the values pass reads V
         * right after), every cache line the head's slice touches */
        for (int j = i + PREFETCH; j < i + PREFETCH + 4 && j < n; j++) {
            const char *kr = (const char *)(k + (size_t)slots[j] * rs), *vr = (const char *)(v + (size_t)slots[j] * rs);
            for (size_t b = 0; b < row_bytes + 63; b += 64) {
                size_t at = b < row_bytes ? b : row_bytes - 1;
                _mm_prefetch(kr + at, _MM_HINT_T0);
                _mm_prefetch(vr + at, _MM_HINT_T0);
            }
        }
        const uint16_t *rows[4];
        UNROLL for (int j = 0; j < 4; j++) rows[j] = k + (size_t)slots[i + (j < nk ? j : nk - 1)] * rs;
        scores4(G, hd, q, scale, rows, sc + i, ss, nk);
    }
    for (int g = 0; g < G; g++) {
        float *r = sc + (size_t)g * ss;
        m[g] = cpu_avx2_max(n, r);
        l[g] = cpu_avx2_exp_shift_sum(n, r, m[g]);
    }
    int d0 = 0;
    for (; d0 + 32 <= hd; d0 += 32) values(G, 4, hd, d0, v, rs, slots, n, sc, ss, o);
    for (; d0 + 16 <= hd; d0 += 16) values(G, 2, hd, d0, v, rs, slots, n, sc, ss, o);
    for (; d0 < hd; d0 += 8) values(G, 1, hd, d0, v, rs, slots, n, sc, ss, o);
}

void cpu_avx2_attn_part_f16(int hd, int n_q, const float *q, float scale, const uint16_t *k, const uint16_t *v,
                            size_t row_stride, const int32_t *slots, int n, float *sc, size_t sc_stride, float *o,
                            float *m, float *l)
{
    for (int g = 0; g < n_q;) {
        int G = n_q - g >= 3 ? 3 : n_q - g;
        const float *qg = q + (size_t)g * hd;
        float *scg = sc + (size_t)g * sc_stride, *og = o + (size_t)g * hd;
        if (G == 3) part_heads(3, hd, qg, scale, k, v, row_stride, slots, n, scg, sc_stride, og, m + g, l + g);
        else if (G == 2) part_heads(2, hd, qg, scale, k, v, row_stride, slots, n, scg, sc_stride, og, m + g, l + g);
        else part_heads(1, hd, qg, scale, k, v, row_stride, slots, n, scg, sc_stride, og, m + g, l + g);
        g += G;
    }
}
