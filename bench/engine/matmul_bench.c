/*
 * bench/engine/matmul_bench.c — the CPU backend's quantized matmul by batch
 * size: ms a call and GFLOP/s (2*n*k*rows / time) for each shape of the
 * default model (SmolLM2-135M: Q4_1 layers, Q8_0 output head), on three
 * paths of the fast backend:
 *
 *   avx2    quantized dots, 4 activation rows per weight row (CPU_NO_VNNI)
 *   avx512  AVX-512 VNNI over repacked weights, 16 x 8 tiles (the default
 *           where the CPU has it)
 *   blas    OpenBLAS sgemm over dequantized tiles (--blas-prefill; only
 *           where n >= 16, as cpu.c uses it)
 *
 *   matmul_bench [--threads N] [--reps N] [--rows 1,2,4,...] [--dtype q4_1|q4_0|q8_0]
 *
 * Weights are random floats quantized round-to-nearest, activations random
 * floats. Each figure is the minimum over --reps calls (after one warm-up
 * call, which also packs the weights), so another process taking a core
 * now and then does not move it; the box's load still does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint32_t rng = 2463534242u;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return (float)(rng >> 8) / 16777216.0f * 2.0f - 1.0f;
}

typedef struct {
    const char *name;
    int64_t k, rows;
    KDtype dtype;               /* K_DTYPE_INVALID: the --dtype choice */
} Shape;

static const Shape shapes[] = {
    {"attn_q/o 576x576", 576, 576, K_DTYPE_INVALID},
    {"attn_k/v 576x192", 576, 192, K_DTYPE_INVALID},
    {"ffn_gate/up 576x1536", 576, 1536, K_DTYPE_INVALID},
    {"ffn_down 1536x576", 1536, 576, K_DTYPE_INVALID},
    {"output 576x49152 (q8_0)", 576, 49152, K_DTYPE_Q8_0},
};

int main(int argc, char **argv)
{
    int threads = 2, reps = 20;
    const char *rows_list = "1,2,4,8,16,32,64,128,512";
    KDtype dt = K_DTYPE_Q4_1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows_list = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            const char *d = argv[++i];
            dt = !strcmp(d, "q4_0") ? K_DTYPE_Q4_0 : !strcmp(d, "q8_0") ? K_DTYPE_Q8_0 : K_DTYPE_Q4_1;
        } else {
            fprintf(stderr, "usage: matmul_bench [--threads N] [--reps N] [--rows LIST] [--dtype q4_1|q4_0|q8_0]\n");
            return 2;
        }
    }
    char err[256];
    KBackend *be[3];
    const char *names[3] = {"avx2", "avx512", "blas"};
    unsigned flags[3] = {CPU_NO_VNNI | CPU_NO_BLAS, CPU_NO_BLAS, CPU_NO_VNNI};
    for (int v = 0; v < 3; v++) {
        be[v] = cpu_backend_new(threads, flags[v], err, sizeof err);
        if (!be[v]) {
            fprintf(stderr, "matmul_bench: %s\n", err);
            return 1;
        }
    }
    printf("matmul_bench: %d threads, min of %d calls, backend %s / %s\n", threads, reps, be[0]->name, be[1]->name);
    printf("%-26s %5s | %9s %8s | %9s %8s | %9s %8s | %s\n", "shape", "n", "avx2 ms", "GFLOP/s", "avx512 ms",
           "GFLOP/s", "blas ms", "GFLOP/s", "avx512 vs avx2");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const Shape *s = &shapes[si];
        KDtype t = s->dtype == K_DTYPE_INVALID ? dt : s->dtype;
        size_t rb = k_row_bytes(t, s->k);
        uint8_t *wd = malloc(rb * (size_t)s->rows);
        float *tmp = malloc((size_t)s->k * sizeof(float));
        for (int64_t r = 0; r < s->rows; r++) {
            for (int64_t i = 0; i < s->k; i++) tmp[i] = frand() * 0.05f;
            cpu_quant_row(t, tmp, wd + (size_t)r * rb, s->k);
        }
        KTensor w = {.dtype = t, .ne = {s->k, s->rows, 1, 1}, .data = wd};
        for (const char *p = rows_list; *p;) {
            int n = atoi(p);
            p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p);
            if (n <= 0) continue;
            float *x = malloc((size_t)n * (size_t)s->k * sizeof(float));
            float *y = malloc((size_t)n * (size_t)s->rows * sizeof(float));
            for (size_t i = 0; i < (size_t)n * (size_t)s->k; i++) x[i] = frand();
            double best[3] = {0, 0, 0};
            for (int v = 0; v < 3; v++) {
                if (v == 2 && n < 16) continue;
                be[v]->matmul(be[v]->ctx, &w, NULL, x, n, y);
                best[v] = 1e30;
                for (int r = 0; r < reps; r++) {
                    double t0 = now();
                    be[v]->matmul(be[v]->ctx, &w, NULL, x, n, y);
                    double dt_ = now() - t0;
                    if (dt_ < best[v]) best[v] = dt_;
                }
            }
            double flop = 2.0 * n * (double)s->k * (double)s->rows;
            printf("%-26s %5d |", s->name, n);
            for (int v = 0; v < 3; v++) {
                if (best[v] > 0) printf(" %9.3f %8.1f |", best[v] * 1e3, flop / best[v] * 1e-9);
                else printf(" %9s %8s |", "-", "-");
            }
            printf(" %.2fx\n", best[0] / best[1]);
            fflush(stdout);
            free(x);
            free(y);
        }
        free(wd);
        free(tmp);
    }
    for (int v = 0; v < 3; v++) be[v]->destroy(be[v]->ctx);
    (void)names;
    return 0;
}
