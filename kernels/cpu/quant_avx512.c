/*
 * kernels/cpu/quant_avx512.c — AVX-512 VNNI matmul over repacked weights
 * (Q4_0, Q4_1, Q8_0): 16 weight rows x up to 8 activation rows per kernel
 * call, each loaded weight block serving every activation row.
 *
 * Built with AVX-512 F/BW/VL/VNNI flags (the Makefile's *_avx512.c rule);
 * cpu.c calls it only after cpu_has_avx512vnni() said yes.
 *
 * The packed layout (cpu_vnni_pack): rows in tiles of 16 (the last tile
 * padded with zero rows), a tile's blocks one after the other, a tile-block
 * 64-byte aligned:
 *
 *   Q4_0 / Q4_1 (320 bytes)                 Q8_0 (576 bytes)
 *   ┌──────────────────────────────┐        ┌──────────────────────────────┐
 *   │ d[16] f16 │ m[16] f16 (Q4_1) │ 64     │ d[16] f16 │ (zero)           │ 64
 *   ├──────────────────────────────┤        ├──────────────────────────────┤
 *   │ Z0: row r's qs[0..3] at 4r   │ 64     │ Z0: row r's q[0..3] ^ 0x80   │ 64
 *   │ Z1: qs[4..7]  Z2  Z3         │ 3x64   │ Z1..Z7: q[4g..4g+3] ^ 0x80   │ 7x64
 *   └──────────────────────────────┘        └──────────────────────────────┘
 *
 * One 64-byte Z holds 4 consecutive bytes of each of the 16 rows, so
 * vpdpbusd with an activation dword broadcast adds 4 products into every
 * row's lane at once: 8 vpdpbusd give the 16 rows' exact integer block
 * sums. Q4 bytes keep ggml's nibble order (low nibble = element j, high =
 * element j + 16): Z_g & 0x0f meets activation bytes 4g.., Z_g >> 4 bytes
 * 16 + 4g... vpdpbusd takes unsigned x signed bytes: 4-bit weights are
 * unsigned as they are; Q8_0 weights are stored + 128 (^ 0x80) and Q4_0's
 * are q = w/d + 8, so their sums are corrected by -128 resp. -8 times the
 * activation block's sum of quants (exact: integers below 2^24).
 *
 * Numbers: per (weight row, activation row) the float operations are fixed
 * — for each block in order, acc = fma(dw*dx, isum, acc), then for Q4_1
 * acc = fma(mw, sx, acc) — whatever the number of activation rows in the
 * call or the tile a row sits in: a row's result does not depend on its
 * batch. They differ from quant.c's scalar dots only in that order.
 */
#include "kernels/cpu/simd.h"

#include <immintrin.h>
#include <string.h>

enum { TILE = 16, MAXT = 8 };

static int block_bytes_of(KDtype t)
{
    switch (t) {
    case K_DTYPE_Q4_0: case K_DTYPE_Q4_1: return 320;
    case K_DTYPE_Q8_0: return 576;
    default: return 0;
    }
}

size_t cpu_vnni_packed_bytes(KDtype t, int64_t k, int64_t rows)
{
    int bb = block_bytes_of(t);
    if (!bb || k % 32) return 0;
    return (size_t)((rows + TILE - 1) / TILE) * (size_t)(k / 32) * (size_t)bb;
}

void cpu_vnni_pack(KDtype t, int64_t k, int64_t rows, const void *w, int64_t tile0, int64_t tile1, void *dst)
{
    const uint8_t *src = w;
    int64_t nb = k / 32;
    int bb = block_bytes_of(t), sbb = k_dtype_block_bytes(t);
    size_t rb = k_row_bytes(t, k);
    for (int64_t tl = tile0; tl < tile1; tl++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *p = (uint8_t *)dst + ((size_t)tl * (size_t)nb + (size_t)b) * (size_t)bb;
            memset(p, 0, (size_t)bb);
            for (int r = 0; r < TILE; r++) {
                int64_t row = tl * TILE + r;
                if (row >= rows) break; /* padding rows: d = 0, their lanes are never stored */
                const uint8_t *s = src + (size_t)row * rb + (size_t)b * (size_t)sbb;
                memcpy(p + 2 * r, s, 2);
                if (t == K_DTYPE_Q4_1) memcpy(p + 32 + 2 * r, s + 2, 2);
                const uint8_t *q = s + (t == K_DTYPE_Q4_1 ? 4 : 2);
                int ng = t == K_DTYPE_Q8_0 ? 8 : 4;
                for (int g = 0; g < ng; g++)
                    for (int i = 0; i < 4; i++) {
                        uint8_t v = q[4 * g + i];
                        p[64 + 64 * g + 4 * r + i] = t == K_DTYPE_Q8_0 ? (uint8_t)(v ^ 0x80) : v;
                    }
            }
        }
}

static inline int32_t ld_i32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* One tile against T activation rows. xs[t]: row t's blocks; sc[t][2b],
 * sc[t][2b+1]: block b's d and (Q8_1) s, or (Q8_0) its sum of quants. */
static inline __attribute__((always_inline)) void tile_rows(KDtype kind, int T, int64_t nb, const uint8_t *tile,
                                                           const uint8_t *const *xs, const float *const *sc,
                                                           __m512 *acc)
{
    const int bb = kind == K_DTYPE_Q8_0 ? 576 : 320;
    const int xb = kind == K_DTYPE_Q4_1 ? 36 : 34, yo = kind == K_DTYPE_Q4_1 ? 4 : 2;
    const float corr = kind == K_DTYPE_Q8_0 ? -128.0f : -8.0f;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = tile + (size_t)b * bb;
        __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)p));
        __m512 mw = kind == K_DTYPE_Q4_1 ? _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(p + 32)))
                                         : _mm512_setzero_ps();
        __m512i z[8];
        int off[8];
        if (kind == K_DTYPE_Q8_0) {
            for (int g = 0; g < 8; g++) {
                z[g] = _mm512_load_si512((const void *)(p + 64 + 64 * g));
                off[g] = 4 * g;
            }
        } else {
            for (int g = 0; g < 4; g++) {
                __m512i v = _mm512_load_si512((const void *)(p + 64 + 64 * g));
                z[g] = _mm512_and_si512(v, m4);
                z[g + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                off[g] = 4 * g;
                off[g + 4] = 16 + 4 * g;
            }
        }
        for (int t = 0; t < T; t++) {
            const uint8_t *y = xs[t] + (size_t)b * xb + yo;
            /* two chains so that T = 1 is not bound by vpdpbusd's latency;
             * integer sums are exact, so the split changes nothing */
            __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512();
            for (int g = 0; g < 8; g += 2) {
                i0 = _mm512_dpbusd_epi32(i0, z[g], _mm512_set1_epi32(ld_i32(y + off[g])));
                i1 = _mm512_dpbusd_epi32(i1, z[g + 1], _mm512_set1_epi32(ld_i32(y + off[g + 1])));
            }
            __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1));
            if (kind != K_DTYPE_Q4_1) f = _mm512_fmadd_ps(_mm512_set1_ps(corr), _mm512_set1_ps(sc[t][2 * b + 1]), f);
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(sc[t][2 * b])), f, acc[t]);
            if (kind == K_DTYPE_Q4_1) acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sc[t][2 * b + 1]), acc[t]);
        }
    }
}

static inline __attribute__((always_inline)) void tiles(KDtype kind, int64_t k, const uint8_t *packed,
                                                       int64_t tile0, int64_t tile1, int64_t rows, int n,
                                                       const uint8_t *xq, size_t xrb, const float *xsc, size_t xscn,
                                                       const float *bias, float *y)
{
    int64_t nb = k / 32;
    size_t tb = (size_t)nb * (size_t)(kind == K_DTYPE_Q8_0 ? 576 : 320);
    for (int64_t tl = tile0; tl < tile1; tl++) {
        const uint8_t *tile = packed + (size_t)tl * tb;
        int64_t r0 = tl * TILE;
        int live = rows - r0 < TILE ? (int)(rows - r0) : TILE;
        __mmask16 mask = (__mmask16)((1u << live) - 1);
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + r0) : _mm512_setzero_ps();
        for (int t0 = 0; t0 < n; t0 += MAXT) {
            int T = n - t0 < MAXT ? n - t0 : MAXT;
            const uint8_t *xs[MAXT];
            const float *sc[MAXT];
            __m512 acc[MAXT];
            for (int i = 0; i < T; i++) {
                xs[i] = xq + (size_t)(t0 + i) * xrb;
                sc[i] = xsc + (size_t)(t0 + i) * xscn;
            }
            switch (T) {
            case 1: tile_rows(kind, 1, nb, tile, xs, sc, acc); break;
            case 2: tile_rows(kind, 2, nb, tile, xs, sc, acc); break;
            case 3: tile_rows(kind, 3, nb, tile, xs, sc, acc); break;
            case 4: tile_rows(kind, 4, nb, tile, xs, sc, acc); break;
            case 5: tile_rows(kind, 5, nb, tile, xs, sc, acc); break;
            case 6: tile_rows(kind, 6, nb, tile, xs, sc, acc); break;
            case 7: tile_rows(kind, 7, nb, tile, xs, sc, acc); break;
            default: tile_rows(kind, 8, nb, tile, xs, sc, acc); break;
            }
            for (int i = 0; i < T; i++)
                _mm512_mask_storeu_ps(y + (size_t)(t0 + i) * (size_t)rows + r0, mask, _mm512_add_ps(acc[i], bv));
        }
    }
}

void cpu_vnni_matmul(KDtype t, int64_t k, const void *packed, int64_t tile0, int64_t tile1, int64_t rows, int n,
                     const uint8_t *xq, size_t xrb, const float *xsc, size_t xscn, const float *bias, float *y)
{
    switch (t) {
    case K_DTYPE_Q4_0: tiles(K_DTYPE_Q4_0, k, packed, tile0, tile1, rows, n, xq, xrb, xsc, xscn, bias, y); break;
    case K_DTYPE_Q4_1: tiles(K_DTYPE_Q4_1, k, packed, tile0, tile1, rows, n, xq, xrb, xsc, xscn, bias, y); break;
    case K_DTYPE_Q8_0: tiles(K_DTYPE_Q8_0, k, packed, tile0, tile1, rows, n, xq, xrb, xsc, xscn, bias, y); break;
    default: break;
    }
}
