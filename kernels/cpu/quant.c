/*
 * kernels/cpu/quant.c — block formats in plain C: fp16/bf16 conversion,
 * dequantization of every dtype in kernels/backend.h, quantization of the
 * activation formats, and scalar quantized dot products.
 *
 * These are the reference definitions: the AVX2 kernels (quant_avx2.c) are
 * tested against them, and they are tested against vectors produced by the
 * gguf Python package (tests/data/dequant.bin). Block layouts follow ggml:
 *
 *   Q4_0 {f16 d; u8 qs[16]}                x = (nibble - 8) * d
 *   Q4_1 {f16 d, m; u8 qs[16]}             x = nibble * d + m
 *   Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}      x = (nibble | hibit << 4) - 16) * d
 *   Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]}   x = (nibble | hibit << 4) * d + m
 *   Q8_0 {f16 d; i8 qs[32]}                x = q * d
 *   Q8_1 {f16 d, s; i8 qs[32]}             s = d * sum(q) (activations)
 *   element j < 16 is the low nibble of qs[j], element j + 16 the high one.
 *
 *   Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}  256 = 8 sub-blocks of 32,
 *        6-bit scale and min per sub-block: x = d*sc*q - dmin*m
 *   Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
 *   Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}  x = d*sc[e/16]*(q-32)
 *   Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}  (activations; bsums = sums of 16)
 */
#include "kernels/cpu/cpu.h"

#include <math.h>
#include <string.h>

/* ---- fp16 / bf16 ---------------------------------------------------------- */

float cpu_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {
            /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            man &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t cpu_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* result is subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign; /* < half the smallest subnormal */
        uint32_t man = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(absx >> 23); /* 14..24 */
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((absx >> 13) - ((127 - 15) << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float cpu_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t cpu_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- little-endian field readers (blocks are byte arrays) -------------- */

static inline float rd_f16(const uint8_t *p) { return cpu_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }
static inline void wr_f16(uint8_t *p, float f)
{
    uint16_t h = cpu_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}
static inline uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline float rd_f32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Q4_K / Q5_K: scale and min of sub-block j (0..7) from the 12 packed bytes. */
static inline void k4_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* ---- dequantization ------------------------------------------------------ */

static void dq_q4_0(const uint8_t *b, float *y)
{
    float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = ((qs[j] & 0x0f) - 8) * d;
        y[j + 16] = ((qs[j] >> 4) - 8) * d;
    }
}

static void dq_q4_1(const uint8_t *b, float *y)
{
    float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (qs[j] & 0x0f) * d + m;
        y[j + 16] = (qs[j] >> 4) * d + m;
    }
}

static void dq_q5_0(const uint8_t *b, float *y)
{
    float d = rd_f16(b);
    uint32_t qh = rd_u32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
        y[j] = (((qs[j] & 0x0f) | h0 << 4) - 16) * d;
        y[j + 16] = (((qs[j] >> 4) | h1 << 4) - 16) * d;
    }
}

static void dq_q5_1(const uint8_t *b, float *y)
{
    float d = rd_f16(b), m = rd_f16(b + 2);
    uint32_t qh = rd_u32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
        y[j] = ((qs[j] & 0x0f) | h0 << 4) * d + m;
        y[j + 16] = ((qs[j] >> 4) | h1 << 4) * d + m;
    }
}

static void dq_q8_0(const uint8_t *b, float *y)
{
    float d = rd_f16(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = qs[j] * d;
}

static void dq_q8_1(const uint8_t *b, float *y)
{
    float d = rd_f16(b);
    const int8_t *qs = (const int8_t *)(b + 4);
    for (int j = 0; j < 32; j++) y[j] = qs[j] * d;
}

static void dq_q4_k(const uint8_t *b, float *y)
{
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int c = 0; c < 4; c++) {
        int sc1, m1, sc2, m2;
        k4_scale_min(2 * c, scales, &sc1, &m1);
        k4_scale_min(2 * c + 1, scales, &sc2, &m2);
        float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
        for (int l = 0; l < 32; l++) y[l] = d1 * (q[l] & 0x0f) - mm1;
        for (int l = 0; l < 32; l++) y[l + 32] = d2 * (q[l] >> 4) - mm2;
        q += 32;
        y += 64;
    }
}

static void dq_q5_k(const uint8_t *b, float *y)
{
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
    for (int c = 0; c < 4; c++) {
        int sc1, m1, sc2, m2;
        k4_scale_min(2 * c, scales, &sc1, &m1);
        k4_scale_min(2 * c + 1, scales, &sc2, &m2);
        float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
        int u1 = 1 << (2 * c), u2 = 2 << (2 * c);
        for (int l = 0; l < 32; l++) y[l] = d1 * ((ql[l] & 0x0f) + (qh[l] & u1 ? 16 : 0)) - mm1;
        for (int l = 0; l < 32; l++) y[l + 32] = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - mm2;
        ql += 32;
        y += 64;
    }
}

/* Q6_K: 6-bit value of element e (0..255), before subtracting 32. */
static inline int q6_value(const uint8_t *ql, const uint8_t *qh, int e)
{
    int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
    ql += 64 * half;
    qh += 32 * half;
    int lo = (quarter & 1) ? ql[l + 32] : ql[l];
    lo = (quarter & 2) ? lo >> 4 : lo & 0x0f;
    int hi = (qh[l] >> (2 * quarter)) & 3;
    return lo | hi << 4;
}

static void dq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = rd_f16(b + 208);
    for (int e = 0; e < 256; e++) y[e] = d * sc[e / 16] * (q6_value(ql, qh, e) - 32);
}

static void dq_q8_k(const uint8_t *b, float *y)
{
    float d = rd_f32(b);
    const int8_t *qs = (const int8_t *)(b + 4);
    for (int j = 0; j < 256; j++) y[j] = d * qs[j];
}

void cpu_dequant_row(KDtype t, const void *src, float *dst, int64_t n)
{
    const uint8_t *s = src;
    int blk = k_dtype_block(t), bytes = k_dtype_block_bytes(t);
    switch (t) {
    case K_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); return;
    case K_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = cpu_f16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        return;
    case K_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = cpu_bf16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        return;
    default: break;
    }
    void (*f)(const uint8_t *, float *) = NULL;
    switch (t) {
    case K_DTYPE_Q4_0: f = dq_q4_0; break;
    case K_DTYPE_Q4_1: f = dq_q4_1; break;
    case K_DTYPE_Q5_0: f = dq_q5_0; break;
    case K_DTYPE_Q5_1: f = dq_q5_1; break;
    case K_DTYPE_Q8_0: f = dq_q8_0; break;
    case K_DTYPE_Q8_1: f = dq_q8_1; break;
    case K_DTYPE_Q4_K: f = dq_q4_k; break;
    case K_DTYPE_Q5_K: f = dq_q5_k; break;
    case K_DTYPE_Q6_K: f = dq_q6_k; break;
    case K_DTYPE_Q8_K: f = dq_q8_k; break;
    default: return;
    }
    for (int64_t i = 0; i < n / blk; i++) f(s + i * bytes, dst + i * blk);
}

/* ---- quantization ---------------------------------------------------------- */

static void q_q8_0(const float *x, uint8_t *b, int with_sum)
{
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    int8_t *qs = (int8_t *)(b + (with_sum ? 4 : 2));
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        qs[j] = (int8_t)lrintf(x[j] * id);
        sum += qs[j];
    }
    wr_f16(b, d);
    if (with_sum) wr_f16(b + 2, d * (float)sum);
}

static void q_q8_k(const float *x, uint8_t *b)
{
    float amax = 0, max = 0;
    for (int j = 0; j < 256; j++)
        if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
    int8_t *qs = (int8_t *)(b + 4);
    int16_t bsums[16];
    if (amax == 0) {
        memset(b, 0, 292);
        return;
    }
    float iscale = -128.0f / max;
    for (int j = 0; j < 256; j++) {
        long v = lrintf(iscale * x[j]);
        qs[j] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
    }
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += qs[16 * g + j];
        bsums[g] = (int16_t)s;
    }
    float d = 1.0f / iscale;
    memcpy(b, &d, 4);
    memcpy(b + 260, bsums, 32);
}

static void q_q4_0(const float *x, uint8_t *b)
{
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
    float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    for (int j = 0; j < 16; j++) {
        int a = (int)(x[j] * id + 8.5f), c = (int)(x[j + 16] * id + 8.5f);
        a = a > 15 ? 15 : a < 0 ? 0 : a;
        c = c > 15 ? 15 : c < 0 ? 0 : c;
        b[2 + j] = (uint8_t)(a | c << 4);
    }
}

static void q_q4_1(const float *x, uint8_t *b)
{
    float mn = x[0], mx = x[0];
    for (int j = 1; j < 32; j++) { mn = fminf(mn, x[j]); mx = fmaxf(mx, x[j]); }
    float d = (mx - mn) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    wr_f16(b + 2, mn);
    for (int j = 0; j < 16; j++) {
        int a = (int)((x[j] - mn) * id + 0.5f), c = (int)((x[j + 16] - mn) * id + 0.5f);
        a = a > 15 ? 15 : a;
        c = c > 15 ? 15 : c;
        b[4 + j] = (uint8_t)(a | c << 4);
    }
}

/* ---- k-quant weights (writers: sgl make-model --gguf) ----------------------
 * Plain min/max fits, not llama.cpp's searched ones: a valid block of the
 * type whose dequantization (above) is the nearest its grid allows for each
 * sub-block's range. Q4_K / Q5_K: 8 sub-blocks of 32, a 6-bit scale and
 * min each under the super-block's f16 d and dmin (x = d*sc*q - dmin*m, the
 * sub-block's minimum taken <= 0 so m >= 0). Q6_K: 16 sub-blocks of 16, an
 * int8 scale each under f16 d (x = d*sc*(q - 32)). */

static int clamp_i(long v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : (int)v; }

/* k4_scale_min's inverse: sc[8], m[8] (6 bits each) into 12 bytes. */
static void k4_pack_scales(const int *sc, const int *m, uint8_t *q)
{
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        q[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
        q[j + 8] = (uint8_t)((sc[j + 4] & 0x0f) | (m[j + 4] & 0x0f) << 4);
    }
}

/* The shared part of Q4_K and Q5_K: per sub-block levels 0..top, the packed
 * scales and the f16 d, dmin at b; q[256] the levels. */
static void q_k4_levels(const float *x, uint8_t *b, int top, uint8_t *q)
{
    float scale[8], minv[8], smax = 0, mmax = 0;
    for (int j = 0; j < 8; j++) {
        float mn = x[32 * j], mx = x[32 * j];
        for (int l = 1; l < 32; l++) { mn = fminf(mn, x[32 * j + l]); mx = fmaxf(mx, x[32 * j + l]); }
        if (mn > 0) mn = 0;
        scale[j] = (mx - mn) / (float)top;
        minv[j] = -mn;
        smax = fmaxf(smax, scale[j]);
        mmax = fmaxf(mmax, minv[j]);
    }
    wr_f16(b, smax / 63.0f);
    wr_f16(b + 2, mmax / 63.0f);
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    int sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = d > 0 ? clamp_i(lrintf(scale[j] / d), 0, 63) : 0;
        m[j] = dmin > 0 ? clamp_i(lrintf(minv[j] / dmin), 0, 63) : 0;
        float ds = d * (float)sc[j], dm = dmin * (float)m[j];
        for (int l = 0; l < 32; l++)
            q[32 * j + l] = (uint8_t)(ds > 0 ? clamp_i(lrintf((x[32 * j + l] + dm) / ds), 0, top) : 0);
    }
    k4_pack_scales(sc, m, b + 4);
}

static void q_q4_k(const float *x, uint8_t *b)
{
    uint8_t q[256];
    q_k4_levels(x, b, 15, q);
    uint8_t *qs = b + 16;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) qs[32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
}

static void q_q5_k(const float *x, uint8_t *b)
{
    uint8_t q[256];
    q_k4_levels(x, b, 31, q);
    uint8_t *qh = b + 16, *ql = b + 48;
    memset(qh, 0, 32);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
            ql[32 * c + l] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
        }
}

static void q_q6_k(const float *x, uint8_t *b)
{
    float scale[16], amax = 0;
    for (int g = 0; g < 16; g++) {
        float m = 0;
        for (int l = 0; l < 16; l++) m = fmaxf(m, fabsf(x[16 * g + l]));
        scale[g] = m / 31.0f;
        amax = fmaxf(amax, scale[g]);
    }
    uint8_t *ql = b, *qh = b + 128;
    int8_t *sc = (int8_t *)(b + 192);
    wr_f16(b + 208, amax / 127.0f);
    float d = rd_f16(b + 208);
    memset(ql, 0, 128);
    memset(qh, 0, 64);
    for (int g = 0; g < 16; g++) sc[g] = (int8_t)(d > 0 ? clamp_i(lrintf(scale[g] / d), 0, 127) : 0);
    for (int e = 0; e < 256; e++) {
        float ds = d * (float)sc[e / 16];
        int v = ds > 0 ? clamp_i(lrintf(x[e] / ds) + 32, 0, 63) : 32;
        /* q6_value's layout, written */
        int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
        uint8_t *lo = ql + 64 * half + ((quarter & 1) ? l + 32 : l);
        *lo |= (uint8_t)((quarter & 2) ? (v & 0x0f) << 4 : (v & 0x0f));
        qh[32 * half + l] |= (uint8_t)((v >> 4) << (2 * quarter));
    }
}

int cpu_quant_row(KDtype t, const float *src, void *dst, int64_t n)
{
    uint8_t *d = dst;
    switch (t) {
    case K_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case K_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = cpu_f32_to_f16(src[i]);
            d[2 * i] = (uint8_t)h;
            d[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return 0;
    case K_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = cpu_f32_to_bf16(src[i]);
            d[2 * i] = (uint8_t)h;
            d[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return 0;
    case K_DTYPE_Q8_0: for (int64_t i = 0; i < n / 32; i++) q_q8_0(src + 32 * i, d + 34 * i, 0); return 0;
    case K_DTYPE_Q8_1: for (int64_t i = 0; i < n / 32; i++) q_q8_0(src + 32 * i, d + 36 * i, 1); return 0;
    case K_DTYPE_Q8_K: for (int64_t i = 0; i < n / 256; i++) q_q8_k(src + 256 * i, d + 292 * i); return 0;
    case K_DTYPE_Q4_0: for (int64_t i = 0; i < n / 32; i++) q_q4_0(src + 32 * i, d + 18 * i); return 0;
    case K_DTYPE_Q4_1: for (int64_t i = 0; i < n / 32; i++) q_q4_1(src + 32 * i, d + 20 * i); return 0;
    case K_DTYPE_Q4_K: for (int64_t i = 0; i < n / 256; i++) q_q4_k(src + 256 * i, d + 144 * i); return 0;
    case K_DTYPE_Q5_K: for (int64_t i = 0; i < n / 256; i++) q_q5_k(src + 256 * i, d + 176 * i); return 0;
    case K_DTYPE_Q6_K: for (int64_t i = 0; i < n / 256; i++) q_q6_k(src + 256 * i, d + 210 * i); return 0;
    default: return -1;
    }
}

KDtype cpu_dot_type(KDtype w)
{
    switch (w) {
    case K_DTYPE_F32: case K_DTYPE_F16: case K_DTYPE_BF16: return K_DTYPE_F32;
    case K_DTYPE_Q4_0: case K_DTYPE_Q5_0: case K_DTYPE_Q8_0: return K_DTYPE_Q8_0;
    case K_DTYPE_Q4_1: case K_DTYPE_Q5_1: return K_DTYPE_Q8_1;
    case K_DTYPE_Q4_K: case K_DTYPE_Q5_K: case K_DTYPE_Q6_K: return K_DTYPE_Q8_K;
    default: return K_DTYPE_INVALID;
    }
}

/* ---- scalar dots ------------------------------------------------------------
 * Integer products are summed exactly per block; scales are applied per block
 * in float, the same order the SIMD kernels use. */

static float dot_f32(int64_t n, const void *w, const void *x)
{
    const float *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static float dot_f16(int64_t n, const void *w, const void *x)
{
    const uint16_t *a = w;
    const float *b = x;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += cpu_f16_to_f32(a[i]) * b[i];
    return s;
}

static float dot_bf16(int64_t n, const void *w, const void *x)
{
    const uint16_t *a = w;
    const float *b = x;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += cpu_bf16_to_f32(a[i]) * b[i];
    return s;
}

static float dot_q4_0(int64_t n, const void *w, const void *x)
{
    const uint8_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++, a += 18, b += 34) {
        const int8_t *y = (const int8_t *)(b + 2);
        int sum = 0;
        for (int j = 0; j < 16; j++)
            sum += ((a[2 + j] & 0x0f) - 8) * y[j] + ((a[2 + j] >> 4) - 8) * y[j + 16];
        s += sum * (rd_f16(a) * rd_f16(b));
    }
    return s;
}

static float dot_q4_1(int64_t n, const void *w, const void *x)
{
    const uint8_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++, a += 20, b += 36) {
        const int8_t *y = (const int8_t *)(b + 4);
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += (a[4 + j] & 0x0f) * y[j] + (a[4 + j] >> 4) * y[j + 16];
        s += sum * (rd_f16(a) * rd_f16(b)) + rd_f16(a + 2) * rd_f16(b + 2);
    }
    return s;
}

static float dot_q5_0(int64_t n, const void *w, const void *x)
{
    const uint8_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++, a += 22, b += 34) {
        const int8_t *y = (const int8_t *)(b + 2);
        uint32_t qh = rd_u32(a + 2);
        const uint8_t *qs = a + 6;
        int sum = 0;
        for (int j = 0; j < 16; j++) {
            int v0 = ((qs[j] & 0x0f) | ((qh >> j) & 1) << 4) - 16;
            int v1 = ((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16;
            sum += v0 * y[j] + v1 * y[j + 16];
        }
        s += sum * (rd_f16(a) * rd_f16(b));
    }
    return s;
}

static float dot_q5_1(int64_t n, const void *w, const void *x)
{
    const uint8_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++, a += 24, b += 36) {
        const int8_t *y = (const int8_t *)(b + 4);
        uint32_t qh = rd_u32(a + 4);
        const uint8_t *qs = a + 8;
        int sum = 0;
        for (int j = 0; j < 16; j++) {
            int v0 = (qs[j] & 0x0f) | ((qh >> j) & 1) << 4;
            int v1 = (qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            sum += v0 * y[j] + v1 * y[j + 16];
        }
        s += sum * (rd_f16(a) * rd_f16(b)) + rd_f16(a + 2) * rd_f16(b + 2);
    }
    return s;
}

static float dot_q8_0(int64_t n, const void *w, const void *x)
{
    const uint8_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++, a += 34, b += 34) {
        const int8_t *p = (const int8_t *)(a + 2), *y = (const int8_t *)(b + 2);
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += p[j] * y[j];
        s += sum * (rd_f16(a) * rd_f16(b));
    }
    return s;
}

static float dot_q4_k(int64_t n, const void *w, const void *x)
{
    const uint8_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / 256; i++, a += 144, b += 292) {
        const int8_t *y = (const int8_t *)(b + 4);
        const int16_t *bs = (const int16_t *)(b + 260);
        const uint8_t *q = a + 16;
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k4_scale_min(j, a + 4, &sc, &m);
            const uint8_t *qq = q + 32 * (j / 2);
            int sub = 0;
            for (int l = 0; l < 32; l++) sub += ((j & 1) ? qq[l] >> 4 : qq[l] & 0x0f) * y[32 * j + l];
            sumi += sc * sub;
            summ += m * (bs[2 * j] + bs[2 * j + 1]);
        }
        float yd = rd_f32(b);
        s += yd * rd_f16(a) * sumi - yd * rd_f16(a + 2) * summ;
    }
    return s;
}

static float dot_q5_k(int64_t n, const void *w, const void *x)
{
    const uint8_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / 256; i++, a += 176, b += 292) {
        const int8_t *y = (const int8_t *)(b + 4);
        const int16_t *bs = (const int16_t *)(b + 260);
        const uint8_t *qh = a + 16, *ql = a + 48;
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k4_scale_min(j, a + 4, &sc, &m);
            const uint8_t *qq = ql + 32 * (j / 2);
            int sub = 0;
            for (int l = 0; l < 32; l++) {
                int v = ((j & 1) ? qq[l] >> 4 : qq[l] & 0x0f) | ((qh[l] >> j) & 1) << 4;
                sub += v * y[32 * j + l];
            }
            sumi += sc * sub;
            summ += m * (bs[2 * j] + bs[2 * j + 1]);
        }
        float yd = rd_f32(b);
        s += yd * rd_f16(a) * sumi - yd * rd_f16(a + 2) * summ;
    }
    return s;
}

static float dot_q6_k(int64_t n, const void *w, const void *x)
{
    const uint8_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / 256; i++, a += 210, b += 292) {
        const int8_t *y = (const int8_t *)(b + 4);
        const int8_t *sc = (const int8_t *)(a + 192);
        int sumi = 0;
        for (int g = 0; g < 16; g++) {
            int sub = 0;
            for (int l = 0; l < 16; l++) sub += (q6_value(a, a + 128, 16 * g + l) - 32) * y[16 * g + l];
            sumi += sc[g] * sub;
        }
        s += rd_f32(b) * rd_f16(a + 208) * sumi;
    }
    return s;
}

cpu_dot_fn cpu_dot_scalar(KDtype w)
{
    switch (w) {
    case K_DTYPE_F32: return dot_f32;
    case K_DTYPE_F16: return dot_f16;
    case K_DTYPE_BF16: return dot_bf16;
    case K_DTYPE_Q4_0: return dot_q4_0;
    case K_DTYPE_Q4_1: return dot_q4_1;
    case K_DTYPE_Q5_0: return dot_q5_0;
    case K_DTYPE_Q5_1: return dot_q5_1;
    case K_DTYPE_Q8_0: return dot_q8_0;
    case K_DTYPE_Q4_K: return dot_q4_k;
    case K_DTYPE_Q5_K: return dot_q5_k;
    case K_DTYPE_Q6_K: return dot_q6_k;
    default: return 0;
    }
}
