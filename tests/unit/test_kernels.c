/*
 * tests/unit/test_kernels.c — every CPU kernel against its reference:
 *   - fp16/bf16 conversion (exhaustive over halves)
 *   - dequantization against ggml's definitions (vectors from the gguf
 *     Python package: tests/data/dequant_ref.bin, tests/tools/dequant_ref.py)
 *   - scalar quantized dots against dequantize-then-multiply
 *   - AVX2 dots and activation quantization against the scalar ones
 *   - every op of the fast backend (SIMD / scalar, BLAS / no BLAS) against
 *     the reference backend
 *   - the worker pool
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd.h"

/* deterministic xorshift */
static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() & 0xffffff) / (float)0x1000000; }
static float gauss(void)
{
    float u = frand(1e-6f, 1.0f), v = frand(0.0f, 1.0f);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static const KDtype weight_types[] = {K_DTYPE_F32, K_DTYPE_F16, K_DTYPE_BF16, K_DTYPE_Q4_0, K_DTYPE_Q4_1,
                                      K_DTYPE_Q5_0, K_DTYPE_Q5_1, K_DTYPE_Q8_0, K_DTYPE_Q4_K, K_DTYPE_Q5_K,
                                      K_DTYPE_Q6_K};
#define N_WEIGHT_TYPES (int)(sizeof weight_types / sizeof weight_types[0])

static void put_f16(uint8_t *p, float f)
{
    uint16_t h = cpu_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* Random rows of dtype t: random bits for the quants, sane scales. */
static void *random_rows(KDtype t, int64_t k, int64_t rows)
{
    size_t rb = k_row_bytes(t, k), nb = rb * (size_t)rows;
    uint8_t *w = malloc(nb);
    cr_assert(w);
    if (t == K_DTYPE_F32 || t == K_DTYPE_F16 || t == K_DTYPE_BF16) {
        float *tmp = malloc((size_t)(k * rows) * sizeof(float));
        for (int64_t i = 0; i < k * rows; i++) tmp[i] = gauss() * 0.1f;
        for (int64_t r = 0; r < rows; r++) cpu_quant_row(t, tmp + r * k, w + r * rb, k);
        free(tmp);
        return w;
    }
    for (size_t i = 0; i < nb; i++) w[i] = (uint8_t)rnd();
    int bb = k_dtype_block_bytes(t);
    for (size_t b = 0; b < nb / (size_t)bb; b++) {
        uint8_t *p = w + b * (size_t)bb;
        switch (t) {
        case K_DTYPE_Q4_1: case K_DTYPE_Q5_1:
            put_f16(p, frand(0.001f, 0.02f));
            put_f16(p + 2, frand(-0.1f, 0.0f));
            break;
        case K_DTYPE_Q4_K: case K_DTYPE_Q5_K:
            put_f16(p, frand(0.0005f, 0.002f));
            put_f16(p + 2, frand(0.0005f, 0.002f));
            break;
        case K_DTYPE_Q6_K: put_f16(p + 208, frand(0.0005f, 0.002f)); break;
        default: put_f16(p, frand(0.001f, 0.02f)); break;
        }
    }
    return w;
}

static float *random_floats(size_t n, float scale)
{
    float *x = malloc(n * sizeof(float));
    cr_assert(x);
    for (size_t i = 0; i < n; i++) x[i] = gauss() * scale;
    return x;
}

/* max |a-b| relative to max |b| (plus a floor) */
static double rel_err(const float *a, const float *b, size_t n)
{
    double md = 0, mb = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / mb;
}

/* ---- numbers ------------------------------------------------------------------ */

Test(f16, every_half_round_trips)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = cpu_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            cr_assert(isnan(cpu_f16_to_f32(cpu_f32_to_f16(f))));
            continue;
        }
        cr_assert_eq(cpu_f32_to_f16(f), h, "half 0x%04x -> %g -> 0x%04x", h, f, cpu_f32_to_f16(f));
        /* value check through the definition */
        int e = (h >> 10) & 31, m = h & 1023;
        double v = e == 0 ? ldexp(m, -24) : e == 31 ? INFINITY : ldexp(1024 + m, e - 25);
        if (h & 0x8000) v = -v;
        cr_assert(f == (float)v, "half 0x%04x decoded %g, expected %g", h, f, v);
    }
}

Test(f16, rounds_to_nearest_even)
{
    for (int i = 0; i < 200000; i++) {
        float x = ldexpf(frand(-1, 1), (int)(rnd() % 40) - 26);
        uint16_t h = cpu_f32_to_f16(x);
        float y = cpu_f16_to_f32(h);
        if (fabsf(x) > 65504.0f) continue;
        /* neighbours of h are no closer */
        for (int d = -1; d <= 1; d += 2) {
            uint16_t n = (uint16_t)(h + d);
            float z = cpu_f16_to_f32(n);
            if (isnan(z) || isinf(z) || ((n ^ h) & 0x8000)) continue;
            cr_assert(fabsf(z - x) >= fabsf(y - x), "%g -> %g but %g is closer", x, y, z);
        }
    }
    cr_assert_eq(cpu_f32_to_f16(1e6f), 0x7c00);
    cr_assert_eq(cpu_f32_to_f16(-1e6f), 0xfc00);
    cr_assert_eq(cpu_f32_to_f16(65519.0f), 0x7bff);
    cr_assert_eq(cpu_f32_to_f16(65520.0f), 0x7c00);
}

Test(bf16, round_trip_and_rounding)
{
    cr_assert_eq(cpu_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(cpu_bf16_to_f32(0x3f80), 1.0f);
    /* 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1) */
    cr_assert_eq(cpu_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
    cr_assert_eq(cpu_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = cpu_bf16_to_f32((uint16_t)h);
        if (!isnan(f)) cr_assert_eq(cpu_f32_to_bf16(f), h);
    }
}

/* ---- dequantization vs ggml ------------------------------------------------------ */

Test(dequant, matches_gguf_python_reference)
{
    FILE *f = fopen("tests/data/dequant_ref.bin", "rb");
    cr_assert(f, "tests/data/dequant_ref.bin missing (run from the repository root)");
    int seen = 0;
    uint32_t hdr[3];
    while (fread(hdr, 4, 3, f) == 3) {
        KDtype t = (KDtype)hdr[0];
        uint32_t n = hdr[1], nb = hdr[2];
        cr_assert(k_dtype_known((int)t));
        cr_assert_eq(k_row_bytes(t, n), nb, "%s: %u elements should be %zu bytes", k_dtype_name(t), n,
                     k_row_bytes(t, n));
        uint8_t *raw = malloc(nb);
        float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
        cr_assert_eq(fread(raw, 1, nb, f), nb);
        cr_assert_eq(fread(want, 4, n, f), n);
        cpu_dequant_row(t, raw, got, n);
        for (uint32_t i = 0; i < n; i++)
            cr_assert(fabsf(got[i] - want[i]) <= 1e-6f * fabsf(want[i]) + 1e-12f, "%s element %u: %g, ggml says %g",
                      k_dtype_name(t), i, got[i], want[i]);
        if (cpu_has_avx2() && cpu_avx2_dequant_row(t, raw, got, n) == 0)
            for (uint32_t i = 0; i < n; i++)
                cr_assert(fabsf(got[i] - want[i]) <= 1e-6f * fabsf(want[i]) + 1e-12f, "avx2 %s element %u", k_dtype_name(t),
                          i);
        free(raw);
        free(want);
        free(got);
        seen++;
    }
    fclose(f);
    cr_assert_eq(seen, 10, "expected 10 dtypes in the file, read %d", seen);
}

Test(quant, activation_formats_round_trip)
{
    KDtype ts[] = {K_DTYPE_Q8_0, K_DTYPE_Q8_1, K_DTYPE_Q8_K, K_DTYPE_Q4_0, K_DTYPE_Q4_1, K_DTYPE_F16, K_DTYPE_BF16};
    int64_t n = 512;
    float *x = random_floats((size_t)n, 1.0f), *y = malloc((size_t)n * sizeof(float));
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        uint8_t *q = malloc(k_row_bytes(ts[i], n));
        cr_assert_eq(cpu_quant_row(ts[i], x, q, n), 0);
        cpu_dequant_row(ts[i], q, y, n);
        double tol = ts[i] == K_DTYPE_Q4_0 || ts[i] == K_DTYPE_Q4_1 ? 0.1 : 0.01;
        cr_assert(rel_err(y, x, (size_t)n) < tol, "%s round trip error %g", k_dtype_name(ts[i]),
                  rel_err(y, x, (size_t)n));
        free(q);
    }
    /* Q8_1's s field is d * sum(q) */
    uint8_t b[36];
    cpu_quant_row(K_DTYPE_Q8_1, x, b, 32);
    int sum = 0;
    for (int j = 0; j < 32; j++) sum += (int8_t)b[4 + j];
    uint16_t d, s;
    memcpy(&d, b, 2);
    memcpy(&s, b + 2, 2);
    cr_assert(fabsf(cpu_f16_to_f32(s) - cpu_f16_to_f32(d) * sum) <= 1e-2f * fabsf(cpu_f16_to_f32(s)) + 1e-3f);
    free(x);
    free(y);
}

/* ---- dots ------------------------------------------------------------------------- */

Test(dot, scalar_matches_dequantized_product)
{
    int64_t k = 512;
    for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        KDtype t = weight_types[ti], at = cpu_dot_type(t);
        cr_assert_neq(at, K_DTYPE_INVALID);
        uint8_t *w = random_rows(t, k, 1);
        float *x = random_floats((size_t)k, 1.0f), *wd = malloc((size_t)k * 4), *xd = malloc((size_t)k * 4);
        uint8_t *xq = malloc(k_row_bytes(at, k));
        cpu_quant_row(at, x, xq, k);
        cpu_dequant_row(t, w, wd, k);
        cpu_dequant_row(at, xq, xd, k);
        double want = 0, mag = 0;
        for (int64_t i = 0; i < k; i++) {
            want += (double)wd[i] * xd[i];
            mag += fabs((double)wd[i] * xd[i]);
        }
        float got = cpu_dot_scalar(t)(k, w, xq);
        cr_assert(fabs(got - want) <= 1e-5 * mag + 1e-6, "%s: scalar dot %g, dequantized %g", k_dtype_name(t), got,
                  want);
        free(w);
        free(x);
        free(wd);
        free(xd);
        free(xq);
    }
}

Test(dot, avx2_matches_scalar)
{
    if (!cpu_has_avx2()) cr_skip_test("CPU has no AVX2/FMA/F16C");
    int64_t ks[] = {256, 512, 1536, 4096};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
            int64_t k = ks[ki];
            KDtype t = weight_types[ti], at = cpu_dot_type(t);
            cpu_dot_fn fast = cpu_dot_avx2(t);
            if (!fast) continue;
            uint8_t *w = random_rows(t, k, 1);
            float *x = random_floats((size_t)k, 1.0f), *wd = malloc((size_t)k * 4), *xd = malloc((size_t)k * 4);
            uint8_t *xq = malloc(k_row_bytes(at, k));
            cpu_quant_row(at, x, xq, k);
            cpu_dequant_row(t, w, wd, k);
            cpu_dequant_row(at, xq, xd, k);
            double mag = 0;
            for (int64_t i = 0; i < k; i++) mag += fabs((double)wd[i] * xd[i]);
            float a = cpu_dot_scalar(t)(k, w, xq), b = fast(k, w, xq);
            cr_assert(fabs(a - b) <= 1e-5 * mag + 1e-6, "%s k=%lld: avx2 %g, scalar %g", k_dtype_name(t),
                      (long long)k, b, a);
            free(w);
            free(x);
            free(wd);
            free(xd);
            free(xq);
        }
}

Test(dot, four_token_kernels_are_bit_identical_to_one_token)
{
    if (!cpu_has_avx2()) cr_skip_test("CPU has no AVX2/FMA/F16C");
    int64_t ks[] = {32, 96, 576, 1536};
    int found = 0;
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
            KDtype t = weight_types[ti], at = cpu_dot_type(t);
            cpu_dot4_fn d4 = cpu_avx2_dot4(t);
            if (!d4 || ks[ki] % k_dtype_block(t)) continue;
            found++;
            int64_t k = ks[ki];
            size_t xrb = k_row_bytes(at, k);
            uint8_t *w = random_rows(t, k, 1), *xq = malloc(4 * xrb);
            float *x = random_floats((size_t)(4 * k), 1.0f);
            for (int i = 0; i < 4; i++) cpu_quant_row(at, x + i * k, xq + i * xrb, k);
            float four[4];
            d4(k, w, xq, xrb, four);
            for (int i = 0; i < 4; i++) {
                float one = cpu_avx2_dot(t)(k, w, xq + i * xrb);
                cr_assert(memcmp(&one, &four[i], 4) == 0, "%s k=%lld token %d: %.9g vs %.9g", k_dtype_name(t),
                          (long long)k, i, one, four[i]);
            }
            free(w);
            free(xq);
            free(x);
        }
    cr_assert(found >= 13, "Q4_0, Q4_1, Q8_0, Q4_K and Q6_K have four-token kernels (found %d)", found);
}

/* The kernels that read the activations' block scales from an f32 table
 * (cpu_avx2_dotx, what matmul's dot path uses) give the one-token kernel's
 * bits for any number of tokens 1-4. */
Test(dot, scale_table_kernels_are_bit_identical_to_one_token)
{
    if (!cpu_has_avx2()) cr_skip_test("CPU has no AVX2/FMA/F16C");
    int64_t ks[] = {32, 96, 576, 1536};
    int found = 0;
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
            KDtype t = weight_types[ti], at = cpu_dot_type(t);
            cpu_dotx_fn dx = cpu_avx2_dotx(t);
            if (!dx || ks[ki] % k_dtype_block(t)) continue;
            found++;
            int64_t k = ks[ki], nb = k / 32;
            size_t xrb = k_row_bytes(at, k), bb = k_row_bytes(at, 32);
            uint8_t *w = random_rows(t, k, 1), *xq = malloc(4 * xrb);
            float *x = random_floats((size_t)(4 * k), 1.0f), *sc = malloc(sizeof(float) * 8 * (size_t)nb);
            const uint8_t *xs[4];
            const float *scs[4];
            for (int i = 0; i < 4; i++) {
                cpu_quant_row(at, x + i * k, xq + i * xrb, k);
                xs[i] = xq + i * xrb;
                scs[i] = sc + 2 * nb * i;
                for (int64_t b = 0; b < nb; b++) {
                    uint16_t h[2];
                    memcpy(h, xs[i] + b * bb, sizeof h);
                    sc[2 * nb * i + 2 * b] = cpu_f16_to_f32(h[0]);
                    sc[2 * nb * i + 2 * b + 1] = at == K_DTYPE_Q8_1 ? cpu_f16_to_f32(h[1]) : 0.0f;
                }
            }
            for (int T = 1; T <= 4; T++) {
                float got[4];
                dx(T, k, w, xs, scs, got);
                for (int i = 0; i < T; i++) {
                    float one = cpu_avx2_dot(t)(k, w, xs[i]);
                    cr_assert(memcmp(&one, &got[i], 4) == 0, "%s k=%lld T=%d token %d: %.9g vs %.9g", k_dtype_name(t),
                              (long long)k, T, i, one, got[i]);
                }
            }
            free(w);
            free(xq);
            free(x);
            free(sc);
        }
    cr_assert(found >= 12, "Q4_0, Q4_1 and Q8_0 have scale-table kernels (found %d)", found);
}

Test(dot, avx2_activation_quantization_is_bit_exact)
{
    if (!cpu_has_avx2()) cr_skip_test("CPU has no AVX2/FMA/F16C");
    int64_t n = 1024;
    float *x = random_floats((size_t)n, 3.0f);
    KDtype ts[] = {K_DTYPE_Q8_0, K_DTYPE_Q8_1};
    for (int i = 0; i < 2; i++) {
        size_t nb = k_row_bytes(ts[i], n);
        uint8_t *a = malloc(nb), *b = malloc(nb);
        cpu_quant_row(ts[i], x, a, n);
        cr_assert_eq(cpu_avx2_quant_row(ts[i], x, b, n), 0);
        cr_assert(memcmp(a, b, nb) == 0, "%s: avx2 and scalar quantization differ", k_dtype_name(ts[i]));
        free(a);
        free(b);
    }
    free(x);
}

Test(simd, helpers_match_plain_loops)
{
    if (!cpu_has_avx2()) cr_skip_test("CPU has no AVX2/FMA/F16C");
    int n = 203;
    float *a = random_floats((size_t)n, 1.0f), *b = random_floats((size_t)n, 1.0f);
    uint16_t *h = malloc((size_t)n * 2);
    cpu_avx2_f32_to_f16(n, b, h);
    double d32 = 0, d16 = 0, ss = 0;
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        cr_assert_eq(h[i], cpu_f32_to_f16(b[i]));
        d32 += (double)a[i] * b[i];
        d16 += (double)a[i] * cpu_f16_to_f32(h[i]);
        ss += (double)a[i] * a[i];
        mx = fmaxf(mx, a[i]);
    }
    cr_assert(fabs(cpu_avx2_dot_f32(n, a, b) - d32) < 1e-4);
    cr_assert(fabs(cpu_avx2_dot_f16(n, a, h) - d16) < 1e-4);
    cr_assert(fabs(cpu_avx2_sumsq(n, a) - ss) < 1e-3);
    cr_assert_eq(cpu_avx2_max(n, a), mx);
    /* exp over a wide range */
    float e[64];
    for (int i = 0; i < 64; i++) e[i] = -80.0f + 2.5f * i;
    float s = cpu_avx2_exp_shift_sum(64, e, 0.0f);
    double sw = 0;
    for (int i = 0; i < 64; i++) {
        double want = exp(-80.0 + 2.5 * i);
        sw += want;
        cr_assert(fabs(e[i] - want) <= 3e-7 * want + 1e-37, "exp(%g) = %g, want %g", -80.0 + 2.5 * i, e[i], want);
    }
    cr_assert(fabs(s - sw) <= 1e-6 * sw);
    free(a);
    free(b);
    free(h);
}

/* ---- backend ops vs the reference backend ----------------------------------------- */

typedef struct {
    const char *name;
    unsigned flags;
} Variant;

static const Variant variants[] = {
    {"default", 0},
    {"no-blas", CPU_NO_BLAS},
    {"scalar", CPU_NO_SIMD},
    {"scalar-no-blas", CPU_NO_SIMD | CPU_NO_BLAS},
    {"avx2", CPU_NO_VNNI},
    {"avx2-no-blas", CPU_NO_VNNI | CPU_NO_BLAS},
};
#define N_VARIANTS 6

static KBackend *ref_be, *fast_be[N_VARIANTS];

static void backends_up(void)
{
    char err[256];
    ref_be = cpu_ref_backend_new(err, sizeof err);
    cr_assert(ref_be, "%s", err);
    cr_assert(k_backend_complete(ref_be));
    for (int i = 0; i < N_VARIANTS; i++) {
        fast_be[i] = cpu_backend_new(3, variants[i].flags, err, sizeof err);
        cr_assert(fast_be[i], "%s", err);
        cr_assert(k_backend_complete(fast_be[i]));
    }
}

static void backends_down(void)
{
    ref_be->destroy(ref_be->ctx);
    for (int i = 0; i < N_VARIANTS; i++) fast_be[i]->destroy(fast_be[i]->ctx);
}

TestSuite(ops, .init = backends_up, .fini = backends_down);

/* Buffers: what upload puts in, download gives back, on every CPU backend;
 * a matmul run on buffers from buf_alloc agrees with one on plain memory. */
Test(ops, buffers_round_trip)
{
    KBackend *all[N_VARIANTS + 1] = {ref_be};
    for (int i = 0; i < N_VARIANTS; i++) all[i + 1] = fast_be[i];
    for (int b = 0; b <= N_VARIANTS; b++) {
        KBackend *be = all[b];
        enum { N = 1000 };
        float src[N], back[N];
        for (int i = 0; i < N; i++) src[i] = (float)i * 0.37f - 11.0f;
        float *d = be->buf_alloc(be->ctx, sizeof src);
        cr_assert(d);
        memset(back, 0xff, sizeof back);
        be->upload(be->ctx, d, src, sizeof src);
        be->download(be->ctx, back, d, sizeof back);
        cr_assert_eq(be->sync(be->ctx), 0);
        cr_assert(memcmp(src, back, sizeof src) == 0, "%s: buffer round trip", be->name);
        be->buf_free(be->ctx, d);
        be->buf_free(be->ctx, NULL);
        cr_assert_null(be->error(be->ctx));
    }
}

Test(ops, matmul_every_dtype_and_batch_size)
{
    int64_t k = 512, rows = 72;
    int ns[] = {1, 3, 8, 40};
    for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        KDtype t = weight_types[ti];
        KTensor w = {.dtype = t, .ne = {k, rows, 1, 1}, .data = random_rows(t, k, rows)};
        float *bias = random_floats((size_t)rows, 0.1f);
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            int n = ns[ni];
            float *x = random_floats((size_t)n * k, 1.0f);
            float *want = malloc((size_t)n * rows * 4), *got = malloc((size_t)n * rows * 4);
            ref_be->matmul(ref_be->ctx, &w, bias, x, n, want);
            for (int v = 0; v < N_VARIANTS; v++) {
                memset(got, 0xff, (size_t)n * rows * 4);
                fast_be[v]->matmul(fast_be[v]->ctx, &w, bias, x, n, got);
                cr_assert_null(fast_be[v]->error(fast_be[v]->ctx));
                /* quantized activations cost ~1% on 8-bit formats */
                double e = rel_err(got, want, (size_t)n * rows);
                cr_assert(e < 2e-2, "%s n=%d %s: relative error %g", k_dtype_name(t), n, variants[v].name, e);
            }
            free(x);
            free(want);
            free(got);
        }
        free((void *)w.data);
        free(bias);
    }
}

/* The AVX-512 VNNI path (packed 16-row tiles): every (weight row, token)
 * within float rounding of the scalar dot on the same quantized
 * activations (the integer sums are exact, only the summation order of the
 * per-block scaled sums differs), and bit-identical whatever else is in
 * the batch: each token alone, in any batch size, with rows that do not
 * fill the last tile. */
Test(ops, vnni_matmul_matches_scalar_dots_and_is_batch_invariant)
{
    if (!cpu_has_avx512vnni()) {
        cr_log_info("no AVX-512 VNNI on this CPU: skipped");
        return;
    }
    char err[256];
    KBackend *b = cpu_backend_new(2, CPU_NO_BLAS, err, sizeof err);
    cr_assert(b, "%s", err);
    KBackend *bb = cpu_backend_new(2, 0, err, sizeof err); /* blas on: packed weights still skip sgemm */
    cr_assert(bb, "%s", err);
    cr_assert_str_eq(b->name, "cpu-avx512");
    KDtype ts[3] = {K_DTYPE_Q4_0, K_DTYPE_Q4_1, K_DTYPE_Q8_0};
    int64_t k = 320, rows = 40; /* 10 blocks (odd tail of pairs), 2.5 tiles */
    enum { N = 21 };            /* 2 full groups of 8 and a tail of 5 */
    for (int ti = 0; ti < 3; ti++) {
        KDtype t = ts[ti];
        KTensor w = {.dtype = t, .ne = {k, rows, 1, 1}, .data = random_rows(t, k, rows)};
        float *bias = random_floats((size_t)rows, 0.1f);
        float *x = random_floats((size_t)N * k, 1.0f);
        float *all = malloc((size_t)N * rows * 4), *one = malloc((size_t)rows * 4), *blas = malloc((size_t)N * rows * 4);
        b->matmul(b->ctx, &w, bias, x, N, all);
        cr_assert_null(b->error(b->ctx));
        bb->matmul(bb->ctx, &w, bias, x, N, blas);
        cr_assert(memcmp(all, blas, (size_t)N * rows * 4) == 0, "%s: the blas backend took another path", k_dtype_name(t));
        KDtype qt = cpu_dot_type(t);
        uint8_t *xq = malloc(k_row_bytes(qt, k));
        cpu_dot_fn dot = cpu_dot_scalar(t);
        size_t rb = k_row_bytes(t, k);
        for (int i = 0; i < N; i++) {
            cpu_quant_row(qt, x + (size_t)i * k, xq, k);
            double mag = 1e-6;
            for (int64_t r = 0; r < rows; r++) {
                double v = fabs(dot(k, (const uint8_t *)w.data + r * rb, xq) + bias[r]);
                if (v > mag) mag = v;
            }
            for (int64_t r = 0; r < rows; r++) {
                float want = dot(k, (const uint8_t *)w.data + r * rb, xq) + bias[r];
                cr_assert(fabs(all[(size_t)i * rows + r] - want) <= 1e-5 * mag, "%s token %d row %ld: %g vs %g",
                          k_dtype_name(t), i, (long)r, all[(size_t)i * rows + r], want);
            }
            b->matmul(b->ctx, &w, bias, x + (size_t)i * k, 1, one);
            cr_assert(memcmp(one, all + (size_t)i * rows, (size_t)rows * 4) == 0, "%s token %d alone", k_dtype_name(t), i);
        }
        for (int n = 2; n <= 9; n++) {
            b->matmul(b->ctx, &w, bias, x + (size_t)(N - n) * k, n, blas);
            cr_assert(memcmp(blas, all + (size_t)(N - n) * rows, (size_t)n * rows * 4) == 0, "%s batch of %d",
                      k_dtype_name(t), n);
        }
        free(xq);
        free(x);
        free(all);
        free(one);
        free(blas);
        free(bias);
        free((void *)w.data);
    }
    b->destroy(b->ctx);
    bb->destroy(bb->ctx);
}

/* Packed copies are keyed by address: new data at the same address (a freed
 * matrix's memory reused, as in these tests) is seen and packed again. */
Test(ops, vnni_repacks_new_data_at_the_same_address)
{
    if (!cpu_has_avx512vnni()) {
        cr_log_info("no AVX-512 VNNI on this CPU: skipped");
        return;
    }
    char err[256];
    KBackend *b = cpu_backend_new(2, CPU_NO_BLAS, err, sizeof err), *fresh;
    cr_assert(b, "%s", err);
    int64_t k = 256, rows = 48;
    uint8_t *data = random_rows(K_DTYPE_Q4_1, k, rows);
    KTensor w = {.dtype = K_DTYPE_Q4_1, .ne = {k, rows, 1, 1}, .data = data};
    float *x = random_floats((size_t)3 * k, 1.0f), *y0 = malloc((size_t)3 * rows * 4), *y1 = malloc((size_t)3 * rows * 4);
    b->matmul(b->ctx, &w, NULL, x, 3, y0);
    uint8_t *other = random_rows(K_DTYPE_Q4_1, k, rows);
    memcpy(data, other, k_row_bytes(K_DTYPE_Q4_1, k) * (size_t)rows);
    b->matmul(b->ctx, &w, NULL, x, 3, y0);
    fresh = cpu_backend_new(2, CPU_NO_BLAS, err, sizeof err);
    cr_assert(fresh, "%s", err);
    fresh->matmul(fresh->ctx, &w, NULL, x, 3, y1);
    cr_assert(memcmp(y0, y1, (size_t)3 * rows * 4) == 0);
    b->destroy(b->ctx);
    fresh->destroy(fresh->ctx);
    free(data);
    free(other);
    free(x);
    free(y0);
    free(y1);
}

Test(ops, matmul_multi_mixed_dtypes_equals_separate_matmuls)
{
    int64_t k = 256;
    KDtype ts[3] = {K_DTYPE_Q4_1, K_DTYPE_Q8_0, K_DTYPE_Q4_K};
    int64_t rows[3] = {40, 24, 24};
    KTensor w[3];
    const KTensor *wp[3];
    float *bias[3], *ys[3], *ysep[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (KTensor){.dtype = ts[i], .ne = {k, rows[i], 1, 1}, .data = random_rows(ts[i], k, rows[i])};
        wp[i] = &w[i];
        bias[i] = i == 1 ? NULL : random_floats((size_t)rows[i], 0.1f);
    }
    int ns[] = {1, 5, 33};
    for (size_t ni = 0; ni < 3; ni++) {
        int n = ns[ni];
        float *x = random_floats((size_t)n * k, 1.0f);
        for (int i = 0; i < 3; i++) {
            ys[i] = malloc((size_t)n * rows[i] * 4);
            ysep[i] = malloc((size_t)n * rows[i] * 4);
        }
        for (int v = 0; v < N_VARIANTS; v++) {
            KBackend *b = fast_be[v];
            b->matmul_multi(b->ctx, 3, wp, (const float *const *)bias, x, n, ys);
            cr_assert_null(b->error(b->ctx));
            for (int i = 0; i < 3; i++) {
                b->matmul(b->ctx, &w[i], bias[i], x, n, ysep[i]);
                cr_assert(memcmp(ys[i], ysep[i], (size_t)n * rows[i] * 4) == 0, "%s part %d n=%d",
                          variants[v].name, i, n);
            }
        }
        ref_be->matmul_multi(ref_be->ctx, 3, wp, (const float *const *)bias, x, n, ys);
        for (int i = 0; i < 3; i++) {
            ref_be->matmul(ref_be->ctx, &w[i], bias[i], x, n, ysep[i]);
            cr_assert(memcmp(ys[i], ysep[i], (size_t)n * rows[i] * 4) == 0);
            free(ys[i]);
            free(ysep[i]);
        }
        free(x);
    }
    for (int i = 0; i < 3; i++) {
        free((void *)w[i].data);
        free(bias[i]);
    }
}

Test(ops, matmul_f32_weights_are_exact_enough)
{
    int64_t k = 96, rows = 33;
    KTensor w = {.dtype = K_DTYPE_F32, .ne = {k, rows, 1, 1}, .data = random_floats((size_t)(k * rows), 1.0f)};
    for (int n = 1; n <= 40; n += 13) {
        float *x = random_floats((size_t)n * k, 1.0f), *want = malloc((size_t)n * rows * 4),
              *got = malloc((size_t)n * rows * 4);
        ref_be->matmul(ref_be->ctx, &w, NULL, x, n, want);
        for (int v = 0; v < N_VARIANTS; v++) {
            fast_be[v]->matmul(fast_be[v]->ctx, &w, NULL, x, n, got);
            cr_assert(rel_err(got, want, (size_t)n * rows) < 1e-5, "%s n=%d", variants[v].name, n);
        }
        free(x);
        free(want);
        free(got);
    }
    free((void *)w.data);
}

Test(ops, embed_rows)
{
    int64_t k = 256, rows = 50;
    int32_t toks[] = {0, 49, 7, 7, 23};
    for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        KDtype t = weight_types[ti];
        KTensor e = {.dtype = t, .ne = {k, rows, 1, 1}, .data = random_rows(t, k, rows)};
        float want[5 * 256], got[5 * 256];
        ref_be->embed(ref_be->ctx, &e, toks, 5, want);
        for (int v = 0; v < N_VARIANTS; v++) {
            fast_be[v]->embed(fast_be[v]->ctx, &e, toks, 5, got);
            cr_assert(rel_err(got, want, 5 * 256) < 1e-6, "%s %s", k_dtype_name(t), variants[v].name);
        }
        free((void *)e.data);
    }
}

Test(ops, rmsnorm_swiglu_add_softmax)
{
    int n = 37, dim = 200;
    size_t c = (size_t)n * dim;
    float *x = random_floats(c, 2.0f), *w = random_floats((size_t)dim, 1.0f), *u = random_floats(c, 1.0f);
    float *want = malloc(c * 4), *got = malloc(c * 4);
    for (int v = 0; v < N_VARIANTS; v++) {
        KBackend *b = fast_be[v];
        ref_be->rmsnorm(ref_be->ctx, x, w, want, n, dim, 1e-5f);
        b->rmsnorm(b->ctx, x, w, got, n, dim, 1e-5f);
        cr_assert(rel_err(got, want, c) < 1e-5, "rmsnorm %s", variants[v].name);
        /* in place */
        memcpy(got, x, c * 4);
        b->rmsnorm(b->ctx, got, w, got, n, dim, 1e-5f);
        cr_assert(rel_err(got, want, c) < 1e-5, "rmsnorm in place %s", variants[v].name);

        ref_be->swiglu(ref_be->ctx, x, u, want, c);
        b->swiglu(b->ctx, x, u, got, c);
        cr_assert(rel_err(got, want, c) < 1e-5, "swiglu %s", variants[v].name);

        memcpy(want, x, c * 4);
        memcpy(got, x, c * 4);
        ref_be->add(ref_be->ctx, want, u, c);
        b->add(b->ctx, got, u, c);
        cr_assert(rel_err(got, want, c) == 0, "add %s", variants[v].name);

        memcpy(want, x, c * 4);
        memcpy(got, x, c * 4);
        ref_be->softmax(ref_be->ctx, want, n, dim);
        b->softmax(b->ctx, got, n, dim);
        cr_assert(rel_err(got, want, c) < 1e-5, "softmax %s", variants[v].name);
    }
    free(x);
    free(w);
    free(u);
    free(want);
    free(got);
}

Test(ops, rope_both_styles)
{
    int n = 11, heads = 3, hd = 64;
    int rots[] = {64, 32};
    for (int ri = 0; ri < 2; ri++) {
        int rot = rots[ri];
        float *cs = malloc((size_t)n * rot * 4);
        for (int t = 0; t < n; t++)
            for (int p = 0; p < rot / 2; p++) {
                double ang = (t * 7 + 3) * pow(10000.0, -2.0 * p / rot);
                cs[t * rot + 2 * p] = (float)cos(ang);
                cs[t * rot + 2 * p + 1] = (float)sin(ang);
            }
        for (int style = 0; style < 2; style++) {
            size_t c = (size_t)n * heads * hd;
            float *x = random_floats(c, 1.0f), *want = malloc(c * 4), *got = malloc(c * 4);
            memcpy(want, x, c * 4);
            ref_be->rope(ref_be->ctx, want, n, heads, hd, rot, cs, (KRopeStyle)style);
            for (int v = 0; v < N_VARIANTS; v++) {
                memcpy(got, x, c * 4);
                fast_be[v]->rope(fast_be[v]->ctx, got, n, heads, hd, rot, cs, (KRopeStyle)style);
                cr_assert(rel_err(got, want, c) < 1e-6, "rope style %d rot %d %s", style, rot, variants[v].name);
            }
            /* spot-check the pairing itself on the reference */
            int t = 5, h = 1, p = 3, half = rot / 2;
            const float *xv = x + ((size_t)t * heads + h) * hd, *yv = want + ((size_t)t * heads + h) * hd;
            int i0 = style == K_ROPE_NEOX ? p : 2 * p, i1 = style == K_ROPE_NEOX ? p + half : 2 * p + 1;
            float co = cs[t * rot + 2 * p], si = cs[t * rot + 2 * p + 1];
            cr_assert(fabsf(yv[i0] - (xv[i0] * co - xv[i1] * si)) < 1e-5f);
            cr_assert(fabsf(yv[i1] - (xv[i0] * si + xv[i1] * co)) < 1e-5f);
            if (rot < hd) cr_assert_eq(yv[hd - 1], xv[hd - 1], "dims past rot_dim are untouched");
            free(x);
            free(want);
            free(got);
        }
        free(cs);
    }
}

Test(ops, kv_store_and_attention_gqa_shared_prefix)
{
    int n_head = 6, n_kv = 2, hd = 64, kvd = n_kv * hd, qd = n_head * hd, n_slots = 300;
    KDtype dts[] = {K_DTYPE_F16, K_DTYPE_F32};
    for (int di = 0; di < 2; di++) {
        KDtype dt = dts[di];
        size_t pool_bytes = (size_t)n_slots * k_row_bytes(dt, kvd);
        /* a scattered slot order: context slots need not be contiguous */
        int32_t perm[300];
        for (int i = 0; i < n_slots; i++) perm[i] = i;
        for (int i = n_slots - 1; i > 0; i--) {
            int j = (int)(rnd() % (uint32_t)(i + 1)), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        /* seq A: 100-token prompt being prefilled in full; seq B: shares A's
         * first 60 slots and adds 3 tokens; seq C: decode of 1 token over a
         * 150-token context. */
        int32_t a_slots[100], b_slots[63], c_slots[150];
        memcpy(a_slots, perm, sizeof a_slots);
        memcpy(b_slots, perm, 60 * sizeof(int32_t));
        memcpy(b_slots + 60, perm + 100, 3 * sizeof(int32_t));
        memcpy(c_slots, perm + 103, sizeof c_slots);
        KAttnSeq seqs[3] = {{a_slots, 100, 100, 0}, {b_slots, 63, 3, 100}, {c_slots, 150, 1, 103}};
        int rows = 104;
        /* fill the whole pool (past context of B and C) through kv_store */
        float *k_all = random_floats((size_t)n_slots * kvd, 1.0f), *v_all = random_floats((size_t)n_slots * kvd, 1.0f);
        int32_t all[300];
        for (int i = 0; i < n_slots; i++) all[i] = i;
        float *q = random_floats((size_t)rows * qd, 0.5f), *want = malloc((size_t)rows * qd * 4),
              *got = malloc((size_t)rows * qd * 4);
        void *kr = malloc(pool_bytes), *vr = malloc(pool_bytes), *kf = malloc(pool_bytes), *vf = malloc(pool_bytes);
        ref_be->kv_store(ref_be->ctx, kr, vr, dt, kvd, k_all, v_all, all, n_slots);
        KAttnArgs aa = {.q = q, .out = want, .k_pool = kr, .v_pool = vr, .kv_dtype = dt, .n_head = n_head,
                        .n_head_kv = n_kv, .head_dim = hd, .scale = 0.125f, .seqs = seqs, .n_seqs = 3};
        ref_be->attention(ref_be->ctx, &aa);
        for (int v = 0; v < N_VARIANTS; v++) {
            KBackend *b = fast_be[v];
            b->kv_store(b->ctx, kf, vf, dt, kvd, k_all, v_all, all, n_slots);
            cr_assert(memcmp(kf, kr, pool_bytes) == 0 && memcmp(vf, vr, pool_bytes) == 0, "kv_store %s %s",
                      k_dtype_name(dt), variants[v].name);
            aa.out = got;
            aa.k_pool = kf;
            aa.v_pool = vf;
            b->attention(b->ctx, &aa);
            cr_assert_null(b->error(b->ctx));
            double e = rel_err(got, want, (size_t)rows * qd);
            cr_assert(e < 1e-5, "attention %s %s: %g", k_dtype_name(dt), variants[v].name, e);
            aa.out = want;
            aa.k_pool = kr;
            aa.v_pool = vr;
        }
        /* a lone decode step: few tasks, so the backend splits by query head */
        KAttnArgs one = aa;
        one.seqs = &seqs[2];
        one.n_seqs = 1;
        one.out = want;
        ref_be->attention(ref_be->ctx, &one);
        for (int v = 0; v < N_VARIANTS; v++) {
            KBackend *b = fast_be[v];
            one.out = got;
            b->attention(b->ctx, &one);
            double e = rel_err(got + (size_t)103 * qd, want + (size_t)103 * qd, (size_t)qd);
            cr_assert(e < 1e-5, "decode attention %s %s: %g", k_dtype_name(dt), variants[v].name, e);
        }
        ref_be->attention(ref_be->ctx, &aa);
        /* causality: token 0 of A sees only itself, so its output is V of slot a_slots[0] */
        float v0[128];
        cpu_dequant_row(dt, (uint8_t *)vr + (size_t)a_slots[0] * k_row_bytes(dt, kvd), v0, kvd);
        for (int h = 0; h < n_head; h++)
            for (int i = 0; i < hd; i++)
                cr_assert(fabsf(want[h * hd + i] - v0[(h / 3) * hd + i]) < 1e-5f, "head %d dim %d", h, i);
        free(k_all);
        free(v_all);
        free(q);
        free(want);
        free(got);
        free(kr);
        free(vr);
        free(kf);
        free(vf);
    }
}

/* Contexts longer than one key part (256): decode splits them into tasks,
 * prefill merges them inline; both against the reference, and a decode
 * step bit-identical to the same token computed inside a prefill block on
 * the no-sgemm path. */
Test(ops, attention_long_context_parts)
{
    int n_head = 4, n_kv = 2, hd = 64, kvd = n_kv * hd, qd = n_head * hd, n_slots = 1300, ctx = 700;
    KDtype dt = K_DTYPE_F16;
    size_t pool_bytes = (size_t)n_slots * k_row_bytes(dt, kvd);
    float *k_all = random_floats((size_t)n_slots * kvd, 1.0f), *v_all = random_floats((size_t)n_slots * kvd, 1.0f);
    int32_t *all = malloc(sizeof(int32_t) * (size_t)n_slots), *slots = malloc(sizeof(int32_t) * (size_t)ctx);
    for (int i = 0; i < n_slots; i++) all[i] = i;
    for (int i = 0; i < ctx; i++) slots[i] = (int32_t)((i * 37 + 11) % n_slots); /* scattered, distinct */
    void *kp = malloc(pool_bytes), *vp = malloc(pool_bytes);
    ref_be->kv_store(ref_be->ctx, kp, vp, dt, kvd, k_all, v_all, all, n_slots);
    /* prefill of the last 20 tokens of the 700 (rows 0..19), and a separate
     * decode of token 699 alone (row 20) */
    float *q = random_floats((size_t)21 * qd, 0.5f), *want = malloc((size_t)21 * qd * 4), *got = malloc((size_t)21 * qd * 4);
    memcpy(q + (size_t)20 * qd, q + (size_t)19 * qd, (size_t)qd * 4);
    KAttnSeq seqs[2] = {{slots, ctx, 20, 0}, {slots, ctx, 1, 20}};
    KAttnArgs aa = {.q = q, .out = want, .k_pool = kp, .v_pool = vp, .kv_dtype = dt, .n_head = n_head,
                    .n_head_kv = n_kv, .head_dim = hd, .scale = 0.125f, .seqs = seqs, .n_seqs = 2};
    ref_be->attention(ref_be->ctx, &aa);
    aa.out = got;
    for (int v = 0; v < N_VARIANTS; v++) {
        KBackend *b = fast_be[v];
        b->attention(b->ctx, &aa);
        cr_assert_null(b->error(b->ctx));
        double e = rel_err(got, want, (size_t)21 * qd);
        cr_assert(e < 1e-5, "long attention %s: %g", variants[v].name, e);
        if (variants[v].flags & CPU_NO_BLAS)
            cr_assert(memcmp(got + (size_t)19 * qd, got + (size_t)20 * qd, (size_t)qd * 4) == 0,
                      "%s: decode step differs from the same token in a prefill block", variants[v].name);
    }
    free(k_all);
    free(v_all);
    free(all);
    free(slots);
    free(kp);
    free(vp);
    free(q);
    free(want);
    free(got);
}

/* The decode kernel over every group size and head width it handles in
 * its own way (passes of 3, 2 and 1 query heads; values 32, 16 and 8 dims
 * at a time; head_dim 36, not a multiple of 8, takes the plain loops) and
 * every way cpu_attention cuts a decode into tasks: alone (one task per
 * query head), beside other decodes (one task per key part, all KV heads),
 * beside a prefill (one per part and KV head). The token's output is
 * bit-identical in all of them, and to the same token as the last of a
 * prefill block on the no-sgemm path; and within 1e-5 of the reference. */
Test(ops, attention_decode_kernel_shapes_and_task_cuts)
{
    static const struct { int n_head, n_kv, hd; } shapes[] = {
        {3, 3, 64}, {4, 2, 64}, {9, 3, 64}, {8, 2, 128}, {10, 2, 80}, {7, 1, 72}, {6, 2, 36},
    };
    static const int ctxs[] = {1, 6, 257, 700};
    enum { N_SLOTS = 2400, N_OTHER = 4, OTHER_CTX = 300, BLOCK = 5 };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int n_head = shapes[si].n_head, n_kv = shapes[si].n_kv, hd = shapes[si].hd;
        int kvd = n_kv * hd, qd = n_head * hd;
        KDtype dt = K_DTYPE_F16;
        size_t pool_bytes = (size_t)N_SLOTS * k_row_bytes(dt, kvd);
        float *k_all = random_floats((size_t)N_SLOTS * kvd, 1.0f), *v_all = random_floats((size_t)N_SLOTS * kvd, 1.0f);
        int32_t *all = malloc(sizeof(int32_t) * N_SLOTS);
        for (int i = 0; i < N_SLOTS; i++) all[i] = (int32_t)((i * 7 + 3) % N_SLOTS); /* a scattered order */
        void *kp = malloc(pool_bytes), *vp = malloc(pool_bytes);
        ref_be->kv_store(ref_be->ctx, kp, vp, dt, kvd, k_all, v_all, all, N_SLOTS);
        /* rows: 0 the token alone; 1..N_OTHER+1 the batch of decodes (the
         * token last); then a prefill block ending with the token */
        int rows = 1 + N_OTHER + 1 + BLOCK;
        float *q = random_floats((size_t)rows * qd, 0.5f), *want = malloc((size_t)rows * qd * 4),
              *got = malloc((size_t)rows * qd * 4);
        const float *tq = q;
        memcpy(q + (size_t)N_OTHER * 1 * qd + qd, tq, (size_t)qd * 4);
        memcpy(q + (size_t)(rows - 1) * qd, tq, (size_t)qd * 4);
        for (size_t ci = 0; ci < sizeof ctxs / sizeof ctxs[0]; ci++) {
            int ctx = ctxs[ci];
            KAttnSeq alone = {all, ctx, 1, 0};
            KAttnSeq batch[N_OTHER + 1], pre = {all, ctx, BLOCK < ctx ? BLOCK : ctx, rows - (BLOCK < ctx ? BLOCK : ctx)};
            for (int o = 0; o < N_OTHER; o++) batch[o] = (KAttnSeq){all + 1000 + 100 * o, OTHER_CTX, 1, 1 + o};
            batch[N_OTHER] = (KAttnSeq){all, ctx, 1, 1 + N_OTHER};
            KAttnSeq mixed[2] = {alone, pre};
            KAttnArgs aa = {.q = q, .out = want, .k_pool = kp, .v_pool = vp, .kv_dtype = dt, .n_head = n_head,
                            .n_head_kv = n_kv, .head_dim = hd, .scale = 0.125f, .seqs = &alone, .n_seqs = 1};
            ref_be->attention(ref_be->ctx, &aa);
            for (int v = 0; v < N_VARIANTS; v++) {
                KBackend *b = fast_be[v];
                const char *name = variants[v].name;
                float *row_alone = got, *row_batch = got + (size_t)(1 + N_OTHER) * qd, *row_pre = got + (size_t)(rows - 1) * qd;
                KAttnArgs x = aa;
                x.out = got;
                memset(got, 0, (size_t)rows * qd * 4);
                b->attention(b->ctx, &x);
                cr_assert(rel_err(row_alone, want, (size_t)qd) < 1e-5, "%s hd %d group %d ctx %d: alone vs ref", name,
                          hd, n_head / n_kv, ctx);
                x.seqs = batch;
                x.n_seqs = N_OTHER + 1;
                b->attention(b->ctx, &x);
                cr_assert(memcmp(row_batch, row_alone, (size_t)qd * 4) == 0, "%s hd %d group %d ctx %d: batched decode",
                          name, hd, n_head / n_kv, ctx);
                x.seqs = mixed;
                x.n_seqs = 2;
                memset(got, 0, (size_t)qd * 4);
                b->attention(b->ctx, &x);
                cr_assert(memcmp(got, row_batch, (size_t)qd * 4) == 0, "%s hd %d group %d ctx %d: decode beside a prefill",
                          name, hd, n_head / n_kv, ctx);
                if ((variants[v].flags & CPU_NO_BLAS) || pre.n_new < 4)
                    cr_assert(memcmp(row_pre, row_batch, (size_t)qd * 4) == 0,
                              "%s hd %d group %d ctx %d: the token as the last of a prefill block", name, hd,
                              n_head / n_kv, ctx);
            }
        }
        free(k_all);
        free(v_all);
        free(all);
        free(kp);
        free(vp);
        free(q);
        free(want);
        free(got);
    }
}

/* ---- pool ---------------------------------------------------------------------------- */

typedef struct {
    atomic_int *hits;
    atomic_int bad_thread;
    int n_threads;
} PoolArg;

static void count_task(void *arg, int task, int thread)
{
    PoolArg *a = arg;
    atomic_fetch_add(&a->hits[task], 1);
    if (thread < 0 || thread >= a->n_threads) atomic_store(&a->bad_thread, 1);
}

Test(pool, every_task_runs_once)
{
    int sizes[] = {1, 2, 4};
    for (int si = 0; si < 3; si++) {
        CpuPool *p = cpu_pool_new(sizes[si]);
        cr_assert(p);
        cr_assert_eq(cpu_pool_size(p), sizes[si]);
        atomic_int hits[257];
        PoolArg a = {.hits = hits, .n_threads = sizes[si]};
        atomic_init(&a.bad_thread, 0);
        for (int job = 0; job < 300; job++) {
            int n = 1 + job % 257;
            for (int i = 0; i < n; i++) atomic_init(&hits[i], 0);
            cpu_pool_run(p, n, count_task, &a);
            for (int i = 0; i < n; i++) cr_assert_eq(atomic_load(&hits[i]), 1, "job %d task %d", job, i);
        }
        cr_assert_eq(atomic_load(&a.bad_thread), 0);
        cpu_pool_free(p);
    }
}
