/*
 * tests/unit/test_model_fp8.c — the fp8 options (ModelOptions.quantization
 * FP8, kv_cache_dtype FP8_E4M3) on the reference device backend
 * (kernels/cpu/devref.c, which rounds as the CUDA kernels do), so they run
 * in `make test` without a GPU:
 *   - k_f32_to_e4m3 against a brute-force nearest-value search
 *   - quant_fp8's scales and bytes
 *   - fp8 weights and fp8 KV against the bf16 path of the same model:
 *     logits within a stated relative error, greedy argmax mostly equal
 *   - the memory plan (half the layer weights, twice the KV slots)
 *   - refusal on a host backend, by name
 *
 * The model: llama layout with q/k/v biases, 2 layers, head_dim 64, GQA 2:1
 * (test_model_dev.c's shape, weights from the same generator).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/sgl.h"
#include "kernels/cpu/cpu.h"
#include "runtime/device.h"
#include "runtime/model.h"
#include "runtime/model_dev.h"
#include "tiny_model.h"

enum { E = 128, NH = 2, NKV = 1, HD = 64, FF = 256, V = 96, NL = 2 };

static Model *build(KBackendKind kind, ModelQuant quant, ModelKvCache kvc)
{
    ModelConfig c = {.arch = MODEL_ARCH_QWEN2, .n_layer = NL, .n_embd = E, .n_head = NH, .n_head_kv = NKV,
                     .head_dim = HD, .rope_dim = HD, .n_ff = FF, .vocab = V, .max_ctx = 512,
                     .rope_theta = 10000.0f, .rope_style = K_ROPE_NEOX, .rms_eps = 1e-5f, .qkv_bias = true,
                     .bos_id = -1, .eos_id = -1};
    Model *m = tiny_model(&c, 1);
    ModelOptions o;
    model_options_default(&o);
    o.backend = kind;
    o.n_threads = 1;
    o.quantization = quant;
    o.kv_cache_dtype = kvc;
    model_set_options(m, &o);
    return m;
}

static int32_t tokens[200];

static void init_tokens(void) { tiny_tokens(tokens, 200, V); }

/* logits of every position of tokens[0..n) as chunks of `chunk` (1: token
 * by token, the decode path); malloc'd n x V */
static float *run(Model *m, int n, int chunk) { return tiny_run(m, tokens, n, chunk, 256); }

/* worst relative L2 error over rows, and how many rows' argmax agree */
static double compare(const float *a, const float *b, int n, int *agree)
{
    double worst = 0;
    *agree = 0;
    for (int t = 0; t < n; t++) {
        const float *x = a + (size_t)t * V, *y = b + (size_t)t * V;
        double num = 0, den = 0;
        int ax = 0, ay = 0;
        for (int i = 0; i < V; i++) {
            num += (double)(x[i] - y[i]) * (x[i] - y[i]), den += (double)y[i] * y[i];
            if (x[i] > x[ax]) ax = i;
            if (y[i] > y[ay]) ay = i;
        }
        double r = sqrt(num / den);
        if (r > worst) worst = r;
        *agree += ax == ay;
    }
    return worst;
}

/* the e4m3 value nearest to f (ties: even code), by search over every code */
static uint8_t nearest_e4m3(float f)
{
    if (isnan(f)) return 0x7f;
    float a = fabsf(f);
    uint8_t best = 0;
    for (int c = 1; c < 0x7f; c++) {
        float dc = fabsf(k_e4m3_to_f32((uint8_t)c) - a), db = fabsf(k_e4m3_to_f32(best) - a);
        if (dc < db || (dc == db && !(c & 1))) best = (uint8_t)c;
    }
    return (uint8_t)(best | (signbit(f) ? 0x80 : 0));
}

Test(fp8, e4m3_rounding_is_nearest_even_and_saturates)
{
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f) {
            cr_assert(isnan(k_e4m3_to_f32((uint8_t)c)));
            continue;
        }
        cr_assert_eq(k_f32_to_e4m3(k_e4m3_to_f32((uint8_t)c)), c, "code %02x", c);
    }
    cr_assert_eq(k_e4m3_to_f32(0x7e), 448.0f);
    cr_assert_eq(k_e4m3_to_f32(0x01), 1.0f / 512);
    uint64_t z = 5;
    for (int i = 0; i < 20000; i++) {
        z = tiny_mix(z + 1);
        /* magnitudes 2^-12 .. 2^9 (past 448: saturation to 0x7e) */
        float f = ldexpf((float)(z & 0xffffff) / 16777216.0f + 0.5f, (int)((z >> 24) % 22) - 12);
        if (z >> 63) f = -f;
        uint8_t want = nearest_e4m3(f);
        cr_assert_eq(k_f32_to_e4m3(f), want, "%g: got %02x want %02x", f, k_f32_to_e4m3(f), want);
    }
    cr_assert_eq(k_f32_to_e4m3(1e30f), 0x7e);
    cr_assert_eq(k_f32_to_e4m3(-INFINITY), 0xfe);
    cr_assert_eq(k_f32_to_e4m3(1.0625f), 0x38, "a tie rounds to the even mantissa (1.0)");
    cr_assert_eq(k_f32_to_e4m3(1.1875f), 0x3a, "a tie rounds to the even mantissa (1.25)");
    cr_assert_eq(k_row_bytes(K_DTYPE_F8_E4M3, 100), 100u);
    cr_assert_str_eq(k_dtype_name(K_DTYPE_F8_E4M3), "F8_E4M3");
    cr_assert_not(k_dtype_known((int)K_DTYPE_F8_E4M3), "no GGUF file may carry it");
}

Test(fp8, quant_fp8_scales_rows_to_448)
{
    char err[256];
    KBackend *b = cpu_devref_backend_new(err, sizeof err);
    cr_assert(b, "%s", err);
    enum { IN = 48, OUT = 3 };
    uint16_t w[OUT * IN];
    for (int i = 0; i < IN; i++) {
        w[i] = k_f32_to_bf16(0.01f * (float)(i - 20));
        w[IN + i] = 0; /* a zero row: scale 1, bytes 0 */
        w[2 * IN + i] = k_f32_to_bf16(i == 7 ? -3.0f : 0.001f * (float)i);
    }
    uint8_t q[OUT * IN];
    float sc[OUT];
    b->dev->quant_fp8(b->ctx, w, IN, OUT, q, sc);
    cr_assert_float_eq(sc[0], k_bf16_to_f32(w[IN - 1]) / 448.0f, 1e-9);
    cr_assert_eq(sc[1], 1.0f);
    cr_assert_eq(q[IN + 5], 0);
    cr_assert_float_eq(sc[2], 3.0f / 448.0f, 1e-9);
    cr_assert_eq(q[2 * IN + 7], 0xfe, "the row's largest magnitude is -448");
    for (int o = 0; o < OUT; o++)
        for (int i = 0; i < IN; i++) {
            float x = k_bf16_to_f32(w[o * IN + i]), y = k_e4m3_to_f32(q[o * IN + i]) * sc[o];
            /* 3 mantissa bits: within 2^-4 relative, or a subnormal step of the row's range */
            cr_assert(fabsf(x - y) <= fabsf(x) / 16 + sc[o] / 512 + 1e-12f, "w[%d][%d] %g -> %g", o, i, x, y);
        }
    b->destroy(b->ctx);
}

Test(fp8, weights_match_bf16_within_fp8_rounding, .init = init_tokens)
{
    Model *bf = build(K_BACKEND_DEV_REF, MODEL_QUANT_NONE, MODEL_KV_AUTO);
    Model *f8 = build(K_BACKEND_DEV_REF, MODEL_QUANT_FP8, MODEL_KV_AUTO);
    int n = 120;
    /* a prefill (rows > 8: activations in e4m3 per token) and token by token
     * (rows <= 8: bf16 activations on fp8 weights) */
    float *a = run(bf, n, n), *p = run(f8, n, n), *s = run(f8, n, 1);
    int agree_p, agree_s;
    double wp = compare(p, a, n, &agree_p), ws = compare(s, a, n, &agree_s);
    printf("fp8 weights vs bf16: prefill rel max %.4f, argmax %d/%d; decode rel max %.4f, argmax %d/%d\n", wp,
           agree_p, n, ws, agree_s, n);
    /* 3 mantissa bits on every weight (and, for the prefill, on every
     * activation entering a matmul) through 2 layers and a 96-wide head of
     * near-uniform random logits: measured 0.100 / 0.071 here */
    cr_assert(wp < 0.15, "prefill rel %g", wp);
    cr_assert(ws < 0.12, "decode rel %g", ws);
    cr_assert(agree_p >= n * 8 / 10 && agree_s >= n * 8 / 10, "argmax %d, %d of %d", agree_p, agree_s, n);
    cr_assert(wp > 0 && ws > 0, "the weights were quantized");
    /* the weights' memory: every layer matrix one byte a value plus its
     * scales (padded to 256 bytes), the rest as in bf16 */
    size_t layer_vals = (size_t)NL * ((size_t)(NH + 2 * NKV) * HD * E + (size_t)E * NH * HD + 2 * (size_t)FF * E +
                                      (size_t)E * FF);
    size_t wb = mdev_weight_bytes(bf), w8 = mdev_weight_bytes(f8);
    cr_assert_gt(wb, 0);
    cr_assert(w8 < wb - layer_vals + layer_vals / 20 * 11 && w8 > wb - layer_vals, "bf16 %zu, fp8 %zu bytes", wb, w8);
    free(a), free(p), free(s);
    model_free(bf);
    model_free(f8);
}

Test(fp8, kv_cache_matches_bf16_and_doubles_the_slots, .init = init_tokens)
{
    char err[256];
    Model *bf = build(K_BACKEND_DEV_REF, MODEL_QUANT_NONE, MODEL_KV_BF16);
    Model *f8 = build(K_BACKEND_DEV_REF, MODEL_QUANT_NONE, MODEL_KV_FP8_E4M3);
    int n = 140;
    float *a = run(bf, n, n), *one = run(f8, n, n), *chunked = run(f8, n, 37), *steps = run(f8, n, 1);
    int agree;
    double w = compare(one, a, n, &agree);
    printf("fp8 KV vs bf16 KV: rel max %.4f, argmax %d/%d\n", w, agree, n);
    cr_assert(w > 0 && w < 0.06, "rel %g", w); /* measured 0.037 */
    cr_assert(agree >= n * 8 / 10, "argmax %d of %d", agree, n);
    /* the pool's layout is unchanged: any split of the same positions reads
     * the same e4m3 values, bit for bit on this backend */
    cr_assert_eq(memcmp(one, chunked, (size_t)n * V * sizeof *one), 0);
    cr_assert_eq(memcmp(one, steps, (size_t)n * V * sizeof *one), 0);
    cr_assert_eq(model_reserve(bf, 64, 8, err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_reserve(f8, 64, 8, err, sizeof err), 0, "%s", err);
    int sb = model_kv_slots(bf), s8 = model_kv_slots(f8);
    cr_assert(s8 > sb * 19 / 10 && s8 < sb * 21 / 10, "bf16 %d slots, fp8 %d", sb, s8);
    KvPool *kv = model_kv_new(f8, 1000, K_DTYPE_F16, err, sizeof err);
    cr_assert(kv, "%s", err);
    cr_assert_eq(kv->dtype, K_DTYPE_F8_E4M3);
    kv_free(kv);
    free(a), free(one), free(chunked), free(steps);
    model_free(bf);
    model_free(f8);
}

Test(fp8, both_options_together, .init = init_tokens)
{
    Model *bf = build(K_BACKEND_DEV_REF, MODEL_QUANT_NONE, MODEL_KV_AUTO);
    Model *f8 = build(K_BACKEND_DEV_REF, MODEL_QUANT_FP8, MODEL_KV_FP8_E4M3);
    int n = 80;
    float *a = run(bf, n, n), *b = run(f8, n, 16);
    int agree;
    double w = compare(b, a, n, &agree);
    printf("fp8 weights + fp8 KV vs bf16: rel max %.4f, argmax %d/%d\n", w, agree, n);
    cr_assert(w < 0.18, "rel %g", w); /* measured 0.118 */
    cr_assert(agree >= n * 3 / 4, "argmax %d of %d", agree, n);
    free(a), free(b);
    model_free(bf);
    model_free(f8);
}

Test(fp8, host_backends_refuse_by_name)
{
    char err[256];
    Model *m = build(K_BACKEND_CPU, MODEL_QUANT_FP8, MODEL_KV_AUTO);
    cr_assert_neq(model_reserve(m, 16, 4, err, sizeof err), 0);
    cr_assert(strstr(err, "--quantization fp8") && strstr(err, "device backend"), "%s", err);
    model_free(m);
    m = build(K_BACKEND_CPU, MODEL_QUANT_NONE, MODEL_KV_FP8_E4M3);
    cr_assert_neq(model_reserve(m, 16, 4, err, sizeof err), 0);
    cr_assert(strstr(err, "--kv-cache-dtype fp8_e4m3"), "%s", err);
    model_free(m);
    cr_assert_eq(model_quant_from_name("fp8"), MODEL_QUANT_FP8);
    cr_assert_eq(model_quant_from_name(NULL), MODEL_QUANT_NONE);
    cr_assert_eq(model_quant_from_name("int4"), -1);
    cr_assert_eq(model_kv_cache_from_name("fp8_e4m3"), MODEL_KV_FP8_E4M3);
    cr_assert_eq(model_kv_cache_from_name("auto"), MODEL_KV_AUTO);
    cr_assert_eq(model_kv_cache_from_name("fp8_e5m2"), -1);
}

Test(fp8, sgl_set_quantization_reaches_the_model_options)
{
    char err[256] = "";
    ModelOptions o;
    cr_assert_eq(sgl_set_quantization("fp8", "fp8_e4m3", err, sizeof err), SGL_OK, "%s", err);
    model_options_default(&o);
    runtime_device_options(&o);
    cr_assert_eq(o.quantization, MODEL_QUANT_FP8);
    cr_assert_eq(o.kv_cache_dtype, MODEL_KV_FP8_E4M3);
    cr_assert_eq(sgl_set_quantization("awq", NULL, err, sizeof err), SGL_ERR_USAGE);
    cr_assert(strstr(err, "awq"), "%s", err);
    cr_assert_eq(sgl_set_quantization(NULL, "fp16", err, sizeof err), SGL_ERR_USAGE);
    cr_assert(strstr(err, "fp16"), "%s", err);
    cr_assert_eq(sgl_set_quantization(NULL, NULL, err, sizeof err), SGL_OK, "%s", err);
    runtime_device_options(&o);
    cr_assert_eq(o.quantization, MODEL_QUANT_NONE);
    cr_assert_eq(o.kv_cache_dtype, MODEL_KV_AUTO);
}
