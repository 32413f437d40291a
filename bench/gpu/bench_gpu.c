/*
 * bench/gpu/bench_gpu.c — the GPU figures of issue 11, one run printing all
 * (bench/gpu/run.sh runs it beside the PyTorch peer), and the end-to-end
 * logits dump that tests/gpu/run.sh compares with `transformers`.
 *
 *   bench_gpu                 roofline (device copy), bf16 GEMM peak, and for
 *                             a Llama-3-8B-shaped random bf16 model: batch-1
 *                             256 in / 256 out decode (CUDA graph per step) and
 *                             prefill of 4096 tokens (MFU vs the GEMM peak);
 *                             the standalone forward of bench/gpu/llama_gpu.c,
 *                             not the engine (tests/gpu/engine_gpu.c bench)
 *   bench_gpu --peaks         the roofline and GEMM peak lines only
 *   bench_gpu --e2e DIR SHAPE writes DIR/model.safetensors + config.json, the
 *                             prompt and generated ids and every position's
 *                             logits (f32) of a prefill + greedy decode
 *
 * Figures are medians of repeated runs timed with device events.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/gpu/llama_gpu.h"

static const LlamaShape shapes[] = {
    {"llama-3-8b", 4096, 32, 32, 8, 128, 14336, 128256, 500000.0f, 1e-5f},
    /* the real widths of Llama-3-8B, two layers: checked against transformers */
    {"llama-3-8b-2l", 4096, 2, 32, 8, 128, 14336, 128256, 500000.0f, 1e-5f},
    /* Llama-3.2-1B's shape (head_dim 64), four layers */
    {"llama-3.2-1b-4l", 2048, 4, 32, 8, 64, 8192, 128256, 500000.0f, 1e-5f},
};

static const LlamaShape *shape_named(const char *n)
{
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, n)) return &shapes[i];
    return NULL;
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float median(float *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_f);
    return v[n / 2];
}

static int die(CuCtx *cu, const char *what)
{
    const char *e = cu ? cu_error(cu) : NULL;
    fprintf(stderr, "bench_gpu: %s%s%s\n", what, e ? ": " : "", e ? e : "");
    return 1;
}

static int run_e2e(CuCtx *cu, const char *dir, const LlamaShape *s)
{
    enum { P = 48, N = 16 };
    LlamaGpu m;
    char err[256];
    if (llama_gpu_new(&m, cu, s, 256, P, 7, 1, err, sizeof err)) return die(cu, err);
    int32_t ids[P + N];
    uint64_t r = 12345;
    for (int i = 0; i < P; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((r >> 33) % (uint64_t)s->vocab);
    }
    size_t V = (size_t)s->vocab;
    float *logits = malloc((P + N) * V * 4);
    uint16_t *lb = malloc(P * V * 2);
    llama_gpu_prefill(&m, ids, P, 0, 1);
    cu_download(cu, lb, m.logits, P * V * 2);
    for (size_t i = 0; i < P * V; i++) logits[i] = cu_bf16_to_f32(lb[i]);
    for (int j = 0; j < N; j++) {
        cu_download(cu, &ids[P + j], m.next, 4);
        llama_gpu_decode_step(&m);
        cu_download(cu, lb, m.logits, V * 2);
        for (size_t i = 0; i < V; i++) logits[(P + j) * V + i] = cu_bf16_to_f32(lb[i]);
    }
    if (cu_sync(cu)) return die(cu, "e2e forward");
    if (llama_gpu_write_hf(&m, dir, err, sizeof err)) return die(cu, err);
    char path[1024];
    snprintf(path, sizeof path, "%s/sgl_out.bin", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return die(cu, "cannot write sgl_out.bin");
    int32_t hdr[3] = {P, N, s->vocab};
    fwrite(hdr, 4, 3, f);
    fwrite(ids, 4, P + N, f);
    fwrite(logits, 4, (P + N) * V, f);
    fclose(f);
    printf("e2e %s: %d prompt + %d generated positions written to %s\n", s->name, P, N, dir);
    llama_gpu_free(&m);
    free(logits), free(lb);
    return 0;
}

int main(int argc, char **argv)
{
    char err[256];
    CuCtx *cu = cu_ctx_new(err, sizeof err);
    if (!cu) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        return 1;
    }
    if (argc == 4 && !strcmp(argv[1], "--e2e")) {
        const LlamaShape *s = shape_named(argv[3]);
        if (!s) return die(NULL, "unknown shape (llama-3-8b, llama-3-8b-2l, llama-3.2-1b-4l)");
        int rc = run_e2e(cu, argv[2], s);
        cu_ctx_free(cu);
        return rc;
    }
    const char *dev = cu_device_name(cu);
    CuTimer *t0 = cu_timer_new(cu), *t1 = cu_timer_new(cu);
    float ms[16];

    /* 1. HBM roofline: a 2 GiB device-to-device copy (bytes read + written) */
    size_t nb = (size_t)2 << 30;
    uint16_t *a = cu_alloc(cu, nb), *b = cu_alloc(cu, nb);
    if (!a || !b) return die(cu, "copy buffers");
    cu_fill_uniform_bf16(cu, a, nb / 2, 1, 1.0f);
    for (int i = 0; i < 3; i++) cu_copy_d2d(cu, b, a, nb);
    for (int i = 0; i < 10; i++) {
        cu_timer_record(cu, t0);
        cu_copy_d2d(cu, b, a, nb);
        cu_timer_record(cu, t1);
        cu_sync(cu);
        ms[i] = cu_timer_ms(t0, t1);
    }
    double copy_tbps = 2.0 * nb / (median(ms, 10) * 1e-3) / 1e12;
    cu_free(cu, a), cu_free(cu, b);

    /* 2. bf16 GEMM peak through cuBLASLt, 8192³ on random data */
    int G = 8192;
    uint16_t *ga = cu_alloc(cu, (size_t)G * G * 2), *gb = cu_alloc(cu, (size_t)G * G * 2), *gc = cu_alloc(cu, (size_t)G * G * 2);
    if (!ga || !gb || !gc) return die(cu, "gemm buffers");
    cu_fill_uniform_bf16(cu, ga, (size_t)G * G, 2, 1.0f);
    cu_fill_uniform_bf16(cu, gb, (size_t)G * G, 3, 1.0f);
    for (int i = 0; i < 3; i++) cu_gemm_bf16(cu, ga, G, G, G, gb, G, gc, G);
    for (int i = 0; i < 10; i++) {
        cu_timer_record(cu, t0);
        cu_gemm_bf16(cu, ga, G, G, G, gb, G, gc, G);
        cu_timer_record(cu, t1);
        cu_sync(cu);
        ms[i] = cu_timer_ms(t0, t1);
    }
    double gemm_tflops = 2.0 * G * G * (double)G / (median(ms, 10) * 1e-3) / 1e12;
    cu_free(cu, ga), cu_free(cu, gb), cu_free(cu, gc);
    if (cu_sync(cu)) return die(cu, "roofline");
    printf("{\"device\":\"%s\",\"copy_TBps\":%.3f,\"gemm_bf16_TFLOPs\":%.1f}\n", dev, copy_tbps, gemm_tflops);
    fflush(stdout);
    if (argc == 2 && !strcmp(argv[1], "--peaks")) {
        cu_ctx_free(cu);
        return 0;
    }

    /* 3. Llama-3-8B-shaped model */
    const LlamaShape *s = shape_named("llama-3-8b");
    enum { LIN = 256, LOUT = 256, PRE = 4096 };
    LlamaGpu m;
    if (llama_gpu_new(&m, cu, s, PRE + 64, PRE, 42, 0, err, sizeof err)) return die(cu, err);
    int32_t *ids = malloc(PRE * 4);
    for (int i = 0; i < PRE; i++) ids[i] = (int32_t)((i * 7919u + 13u) % (unsigned)s->vocab);
    double roof_tok_s = copy_tbps * 1e12 / (double)m.weight_bytes;

    /* batch-1: prefill 256 (timed), then 256 graph-replayed decode steps */
    llama_gpu_prefill(&m, ids, LIN, 0, 0); /* warm-up: plans, module load */
    llama_gpu_decode_step(&m);
    if (cu_sync(cu)) return die(cu, "warm-up");
    cu_timer_record(cu, t0);
    llama_gpu_prefill(&m, ids, LIN, 0, 0);
    cu_timer_record(cu, t1);
    cu_sync(cu);
    float pre256_ms = cu_timer_ms(t0, t1);
    if (cu_graph_begin(cu)) return die(cu, "graph");
    llama_gpu_decode_step(&m);
    CuGraph *g = cu_graph_end(cu);
    if (!g) return die(cu, "graph");
    /* the capture ran nothing: the decode state is still right after prefill */
    cu_timer_record(cu, t0);
    for (int j = 0; j < LOUT; j++) cu_graph_launch(cu, g);
    cu_timer_record(cu, t1);
    if (cu_sync(cu)) return die(cu, "decode");
    float dec_ms = cu_timer_ms(t0, t1);
    int32_t last;
    cu_download(cu, &last, m.next, 4);
    double dec_tok_s = LOUT / (dec_ms * 1e-3);
    /* eager (no graph) for comparison: launch overhead */
    llama_gpu_prefill(&m, ids, LIN, 0, 0);
    cu_timer_record(cu, t0);
    for (int j = 0; j < 32; j++) llama_gpu_decode_step(&m);
    cu_timer_record(cu, t1);
    cu_sync(cu);
    double eager_tok_s = 32 / (cu_timer_ms(t0, t1) * 1e-3);

    /* prefill 4096 tokens: MFU against the GEMM peak measured above */
    for (int i = 0; i < 3; i++) {
        cu_timer_record(cu, t0);
        llama_gpu_prefill(&m, ids, PRE, 0, 0);
        cu_timer_record(cu, t1);
        if (cu_sync(cu)) return die(cu, "prefill");
        ms[i] = cu_timer_ms(t0, t1);
    }
    float pre_ms = median(ms, 3);
    double layer_params = (double)(m.weight_bytes - 2.0 * ((double)s->vocab * s->dim + s->dim)) / 2.0;
    double flops = 2.0 * PRE * layer_params + 2.0 * s->dim * (double)s->vocab /* one logit row */
                   + 4.0 * s->n_layer * s->n_head * s->head_dim * (PRE * (PRE + 1.0) / 2.0); /* causal QKᵀ, PV */
    double pre_tflops = flops / (pre_ms * 1e-3) / 1e12;

    printf("{\"device\":\"%s\",\"model\":\"%s random bf16\",\"weights_read_GB\":%.2f,\"roofline_tok_s\":%.1f,"
           "\"b1_prefill256_ms\":%.1f,\"b1_decode_tok_s\":%.1f,\"b1_decode_frac_roofline\":%.3f,"
           "\"b1_decode_eager_tok_s\":%.1f,\"prefill4096_ms\":%.1f,\"prefill4096_tok_s\":%.0f,"
           "\"prefill4096_TFLOPs\":%.1f,\"prefill4096_MFU_vs_gemm_peak\":%.3f,\"last_token\":%d}\n",
           dev, s->name, m.weight_bytes / 1e9, roof_tok_s, pre256_ms, dec_tok_s, dec_tok_s / roof_tok_s, eager_tok_s,
           pre_ms, PRE / (pre_ms * 1e-3), pre_tflops, pre_tflops / gemm_tflops, last);
    printf("\n%-44s %s\n", "sgl bench/gpu on", dev);
    printf("%-44s %.3f TB/s\n", "HBM roofline (2 GiB device copy)", copy_tbps);
    printf("%-44s %.1f TFLOP/s\n", "bf16 GEMM 8192^3 (cuBLASLt)", gemm_tflops);
    printf("%-44s %.1f tok/s (%.1f%% of %.1f roofline)\n", "batch-1 decode, 256 in/256 out, graphs", dec_tok_s,
           100 * dec_tok_s / roof_tok_s, roof_tok_s);
    printf("%-44s %.1f tok/s\n", "batch-1 decode without graphs", eager_tok_s);
    printf("%-44s %.1f ms (%.0f tok/s, %.1f TFLOP/s, MFU %.1f%%)\n", "prefill 4096 tokens", pre_ms,
           PRE / (pre_ms * 1e-3), pre_tflops, 100 * pre_tflops / gemm_tflops);
    cu_graph_free(g);
    llama_gpu_free(&m);
    free(ids);
    cu_timer_free(t0), cu_timer_free(t1);
    cu_ctx_free(cu);
    return 0;
}
