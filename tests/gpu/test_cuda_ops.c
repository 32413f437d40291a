/*
 * tests/gpu/test_cuda_ops.c — every CUDA op (kernels/cuda/cuda_ops.h) against
 * the CPU reference backend (kernels/cpu/ref.c) on the same bf16 inputs, on
 * the GPU machine (tests/gpu/run.sh). Fresh random inputs each run (the seed
 * is printed); outputs are poisoned (0xffff, a NaN) before each op so an
 * unwritten element fails. Error measure: ‖gpu − ref‖ / ‖ref‖ over the
 * output, bf16 outputs pass under 1e-2 (bf16 rounding of the output alone is
 * ~2e-3); integer outputs must be equal.
 *
 * Exit status: 0 when every case passes, 1 otherwise; one line per case.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cuda/cuda_decode.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_sample.h"
#include "kernels/cuda/cuda_prefill.h"
#include "kernels/cuda/cuda_gemv.h"
#include "kernels/cuda/cuda_fp8.h"
#include "kernels/cuda/cuda_overlap.h"
#include "kernels/cuda/cuda_backend.h"

static CuCtx *cu;
static KBackend *ref;
static int failures;
static uint64_t rng_state;

static double urand(void)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* n bf16 values uniform in [-s, s), and their f32 copy. */
static uint16_t *rand_bf16(size_t n, float s, float **f32)
{
    uint16_t *b = malloc(n * 2);
    float *f = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        b[i] = cu_f32_to_bf16((float)((2 * urand() - 1) * s));
        f[i] = cu_bf16_to_f32(b[i]);
    }
    *f32 = f;
    return b;
}

static void *dev_copy(const void *h, size_t bytes)
{
    void *d = cu_alloc(cu, bytes);
    cu_upload(cu, d, h, bytes);
    return d;
}

static uint16_t *dev_poisoned(size_t n)
{
    uint16_t *d = cu_alloc(cu, n * 2), *h = malloc(n * 2);
    memset(h, 0xff, n * 2);
    cu_upload(cu, d, h, n * 2);
    free(h);
    return d;
}

static float *back_f32(const uint16_t *d, size_t n)
{
    uint16_t *h = malloc(n * 2);
    float *f = malloc(n * 4);
    cu_download(cu, h, d, n * 2);
    for (size_t i = 0; i < n; i++) f[i] = cu_bf16_to_f32(h[i]);
    free(h);
    return f;
}

static void report(const char *what, const float *got, const float *want, size_t n, double tol)
{
    double num = 0, den = 0;
    int nan = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) nan = 1;
        double d = (double)got[i] - want[i];
        num += d * d, den += (double)want[i] * want[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    const char *e = cu_sync(cu) ? cu_error(cu) : NULL;
    int ok = !nan && !e && rel < tol;
    if (!ok) failures++;
    printf("%-4s %-44s rel %.2e (tol %.0e)%s%s\n", ok ? "ok" : "FAIL", what, rel, tol, nan ? " non-finite output" : "",
           e ? e : "");
}

static void test_gemm(int n, int in, int out, int ldx)
{
    float *xf, *wf;
    uint16_t *x = rand_bf16((size_t)n * ldx, 1.0f, &xf), *w = rand_bf16((size_t)out * in, 0.05f, &wf);
    uint16_t *dx = dev_copy(x, (size_t)n * ldx * 2), *dw = dev_copy(w, (size_t)out * in * 2);
    uint16_t *dy = dev_poisoned((size_t)n * out);
    cu_gemm_bf16(cu, dx, ldx, n, in, dw, out, dy, out);
    float *got = back_f32(dy, (size_t)n * out), *want = malloc((size_t)n * out * 4), *xc = malloc((size_t)n * in * 4);
    for (int t = 0; t < n; t++) memcpy(xc + (size_t)t * in, xf + (size_t)t * ldx, (size_t)in * 4);
    KTensor kw = {.dtype = K_DTYPE_BF16, .ne = {in, out, 1, 1}, .data = w};
    ref->matmul(ref->ctx, &kw, NULL, xc, n, want);
    char name[96];
    snprintf(name, sizeof name, "gemm n=%d in=%d out=%d ldx=%d", n, in, out, ldx);
    report(name, got, want, (size_t)n * out, 1e-2);
    cu_free(cu, dx), cu_free(cu, dw), cu_free(cu, dy);
    free(x), free(w), free(xf), free(wf), free(got), free(want), free(xc);
}

/* cuda_gemv.cu against the CPU reference: bf16 out with and without a bias
 * (y rounded, then + bias rounded, as cuBLASLt + cu_add_bias), f32 out */
static void test_gemv(int n, int in, int out, int ldx, int with_bias, int split, int vec)
{
    float *xf, *wf, *bf;
    uint16_t *x = rand_bf16((size_t)n * ldx, 1.0f, &xf), *w = rand_bf16((size_t)out * in, 0.05f, &wf);
    uint16_t *b = rand_bf16(out, 0.5f, &bf);
    uint16_t *dx = dev_copy(x, (size_t)n * ldx * 2), *dw = dev_copy(w, (size_t)out * in * 2), *db = dev_copy(b, out * 2);
    int ldy = out + 8;
    uint16_t *dy = dev_poisoned((size_t)n * ldy);
    float *dyf = cu_alloc(cu, (size_t)n * out * 4);
    cu_memset(cu, dyf, 0xff, (size_t)n * out * 4);
    cu_gemv_bf16_cfg(cu, dx, ldx, n, in, dw, out, with_bias ? db : NULL, dy, ldy, split, vec);
    cu_gemv_bf16_f32_cfg(cu, dx, ldx, n, in, dw, out, dyf, out, split, vec);
    float *gy = back_f32(dy, (size_t)n * ldy), *got = malloc((size_t)n * out * 4), *gotf = malloc((size_t)n * out * 4);
    cu_download(cu, gotf, dyf, (size_t)n * out * 4);
    for (int t = 0; t < n; t++) memcpy(got + (size_t)t * out, gy + (size_t)t * ldy, (size_t)out * 4);
    float *want = malloc((size_t)n * out * 4), *wantb = malloc((size_t)n * out * 4), *xc = malloc((size_t)n * in * 4);
    for (int t = 0; t < n; t++) memcpy(xc + (size_t)t * in, xf + (size_t)t * ldx, (size_t)in * 4);
    KTensor kw = {.dtype = K_DTYPE_BF16, .ne = {in, out, 1, 1}, .data = w};
    ref->matmul(ref->ctx, &kw, NULL, xc, n, want);
    for (size_t i = 0; i < (size_t)n * out; i++)
        wantb[i] = with_bias ? cu_bf16_to_f32(cu_f32_to_bf16(want[i])) + bf[i % out] : want[i];
    char name[96];
    snprintf(name, sizeof name, "gemv n=%d in=%d out=%d ldx=%d%s split=%d vec=%d", n, in, out, ldx,
             with_bias ? " +bias" : "", split, vec);
    report(name, got, wantb, (size_t)n * out, 1e-2);
    snprintf(name, sizeof name, "gemv f32 n=%d in=%d out=%d split=%d vec=%d", n, in, out, split, vec);
    report(name, gotf, want, (size_t)n * out, 1e-4);
    /* a row's result does not depend on the rows beside it */
    if (n > 1) {
        cu_memset(cu, dyf, 0xff, (size_t)out * 4);
        cu_gemv_bf16_f32_cfg(cu, dx, ldx, 1, in, dw, out, dyf, out, split, vec);
        float *one = malloc((size_t)out * 4);
        cu_download(cu, one, dyf, (size_t)out * 4);
        int same = memcmp(one, gotf, (size_t)out * 4) == 0;
        if (!same) failures++;
        printf("%-4s gemv row 0 alone == row 0 of %d (bit-exact)\n", same ? "ok" : "FAIL", n);
        free(one);
    }
    cu_free(cu, dx), cu_free(cu, dw), cu_free(cu, db), cu_free(cu, dy), cu_free(cu, dyf);
    free(x), free(w), free(b), free(xf), free(wf), free(bf), free(gy), free(got), free(gotf), free(want), free(wantb);
    free(xc);
}

/* cu_gemv_rows (the row-stream layout) against the CPU reference, bf16 out
 * (+ bias) and f32 out; then the invariants: row 0 alone is bit-equal to
 * row 0 of n, and another (R, U) of the same KS gives the same bits. */
static void test_gemv_rows(int n, int in, int out, int ldx, int with_bias, int cfg, int cfg2)
{
    float *xf, *wf, *bf;
    uint16_t *x = rand_bf16((size_t)n * ldx, 1.0f, &xf), *w = rand_bf16((size_t)out * in, 0.05f, &wf);
    uint16_t *b = rand_bf16(out, 0.5f, &bf);
    uint16_t *dx = dev_copy(x, (size_t)n * ldx * 2), *dw = dev_copy(w, (size_t)out * in * 2), *db = dev_copy(b, out * 2);
    int ldy = out + 8;
    uint16_t *dy = dev_poisoned((size_t)n * ldy);
    float *dyf = cu_alloc(cu, (size_t)n * out * 4);
    cu_memset(cu, dyf, 0xff, (size_t)n * out * 4);
    cu_gemv_rows(cu, dx, ldx, n, in, dw, out, with_bias ? db : NULL, dy, ldy, 0, cfg);
    cu_gemv_rows(cu, dx, ldx, n, in, dw, out, NULL, dyf, out, 1, cfg);
    float *gy = back_f32(dy, (size_t)n * ldy), *got = malloc((size_t)n * out * 4), *gotf = malloc((size_t)n * out * 4);
    cu_download(cu, gotf, dyf, (size_t)n * out * 4);
    for (int t = 0; t < n; t++) memcpy(got + (size_t)t * out, gy + (size_t)t * ldy, (size_t)out * 4);
    float *want = malloc((size_t)n * out * 4), *wantb = malloc((size_t)n * out * 4), *xc = malloc((size_t)n * in * 4);
    for (int t = 0; t < n; t++) memcpy(xc + (size_t)t * in, xf + (size_t)t * ldx, (size_t)in * 4);
    KTensor kw = {.dtype = K_DTYPE_BF16, .ne = {in, out, 1, 1}, .data = w};
    ref->matmul(ref->ctx, &kw, NULL, xc, n, want);
    for (size_t i = 0; i < (size_t)n * out; i++)
        wantb[i] = with_bias ? cu_bf16_to_f32(cu_f32_to_bf16(want[i])) + bf[i % out] : want[i];
    char name[128];
    snprintf(name, sizeof name, "gemv rows n=%d in=%d out=%d ldx=%d%s cfg=%#x", n, in, out, ldx,
             with_bias ? " +bias" : "", cfg);
    report(name, got, wantb, (size_t)n * out, 1e-2);
    snprintf(name, sizeof name, "gemv rows f32 n=%d in=%d out=%d cfg=%#x", n, in, out, cfg);
    report(name, gotf, want, (size_t)n * out, 1e-4);
    float *one = malloc((size_t)n * out * 4);
    for (int pass = 0; pass < 2; pass++) {
        int m = pass ? n : 1, c2 = pass ? cfg2 : cfg;
        if ((!pass && n == 1) || (pass && !cfg2)) continue;
        cu_memset(cu, dyf, 0xff, (size_t)n * out * 4);
        cu_gemv_rows(cu, dx, ldx, m, in, dw, out, NULL, dyf, out, 1, c2);
        cu_download(cu, one, dyf, (size_t)m * out * 4);
        int same = memcmp(one, gotf, (size_t)m * out * 4) == 0;
        if (!same) failures++;
        if (pass) printf("%-4s gemv rows cfg %#x == cfg %#x on %d rows (bit-exact)\n", same ? "ok" : "FAIL", c2, cfg, n);
        else printf("%-4s gemv rows row 0 alone == row 0 of %d (bit-exact)\n", same ? "ok" : "FAIL", n);
    }
    cu_free(cu, dx), cu_free(cu, dw), cu_free(cu, db), cu_free(cu, dy), cu_free(cu, dyf);
    free(x), free(w), free(b), free(xf), free(wf), free(bf), free(gy), free(got), free(gotf), free(want), free(wantb);
    free(xc), free(one);
}

/* ---- gate|up with SwiGLU in the GEMV's epilogue (cu_gemv_rows_swiglu,
 * KDevOps.matmul_swiglu) against their definition: the unfused GEMV into
 * gu[n][2ff], then cu_swiglu, bit for bit ---- */

typedef struct {
    int unfused, fused; /* cu_gemv_rows cfg, cu_gemv_rows_swiglu cfg (same KS) */
} SwPair;

enum { SW_NMAX = 4, SW_DOWN = 256 };

/* rows of act (stride lda) == rows of want (stride ff), n rows; counts the
 * values that are not finite or zero in want into *degenerate */
static int sw_same(const uint16_t *dact, int lda, const uint16_t *dwant, int n, int ff, int *degenerate)
{
    uint16_t *a = malloc((size_t)n * lda * 2), *b = malloc((size_t)n * ff * 2);
    cu_download(cu, a, dact, (size_t)n * lda * 2);
    cu_download(cu, b, dwant, (size_t)n * ff * 2);
    int same = 1;
    for (int t = 0; t < n; t++) same &= memcmp(a + (size_t)t * lda, b + (size_t)t * ff, (size_t)ff * 2) == 0;
    for (size_t i = 0; i < (size_t)n * ff; i++) {
        float v = cu_bf16_to_f32(b[i]);
        *degenerate += !isfinite(v) || v == 0.0f;
    }
    free(a), free(b);
    return same;
}

/* The kernel: every (unfused, fused) pair at n = 1..SW_NMAX, act at a row
 * stride past ff; row 0 also against the CPU reference (matmul, bf16
 * rounding, swiglu). Then a captured graph rmsnorm -> fused (PDL, early
 * trigger) -> a GEMV reading act (PDL), replayed with new inputs, against
 * the eager unfused chain; then the backend op, fused switched on, under
 * several GEMV choices (the table's, forced row layouts, cuBLASLt). */
static void test_gemv_swiglu(int in, int ff, int ldx, const SwPair *pairs, int n_pairs)
{
    float *xf, *wf;
    size_t nw = (size_t)2 * ff * in;
    uint16_t *x = rand_bf16((size_t)SW_NMAX * ldx, 1.0f, &xf), *w = rand_bf16(nw, 0.05f, &wf);
    uint16_t *dx = dev_copy(x, (size_t)SW_NMAX * ldx * 2), *dw = dev_copy(w, nw * 2);
    const int lda = ff + 8;
    uint16_t *dgu = dev_poisoned((size_t)SW_NMAX * 2 * ff), *dwant = dev_poisoned((size_t)SW_NMAX * ff);
    uint16_t *dact = dev_poisoned((size_t)SW_NMAX * lda);
    char name[160];
    for (int p = 0; p < n_pairs; p++) {
        int same = 1, degenerate = 0;
        for (int n = 1; n <= SW_NMAX; n++) {
            cu_memset(cu, dwant, 0xff, (size_t)SW_NMAX * ff * 2);
            cu_memset(cu, dact, 0xff, (size_t)SW_NMAX * lda * 2);
            cu_gemv_rows(cu, dx, ldx, n, in, dw, 2 * ff, NULL, dgu, 2 * ff, 0, pairs[p].unfused);
            cu_swiglu(cu, dgu, n, ff, dwant);
            cu_gemv_rows_swiglu(cu, dx, ldx, n, in, dw, ff, dact, lda, pairs[p].fused);
            same &= sw_same(dact, lda, dwant, n, ff, &degenerate);
        }
        const char *e = cu_sync(cu) ? cu_error(cu) : NULL;
        int ok = same && !e && degenerate < SW_NMAX * ff / 4;
        failures += !ok;
        printf("%-4s gemv swiglu in=%d ff=%d fused %#x == rows %#x then swiglu, n=1..%d (bit-exact)%s%s\n",
               ok ? "ok" : "FAIL", in, ff, pairs[p].fused, pairs[p].unfused, SW_NMAX,
               degenerate >= SW_NMAX * ff / 4 ? " (mostly zero or non-finite)" : "", e ? e : "");
    }
    /* row 0 against the CPU reference (g, u rounded to bf16 as the GEMV
     * stores them), also as a matrix of ff - 3 columns (its first 2ff - 6
     * rows): an odd ff, so the last group of columns is partial */
    for (int f2 = ff; f2 >= ff - 3; f2 -= 3) {
        float *gu = malloc((size_t)2 * f2 * 4), *want = malloc((size_t)f2 * 4);
        KTensor kw = {.dtype = K_DTYPE_BF16, .ne = {in, 2 * f2, 1, 1}, .data = w};
        ref->matmul(ref->ctx, &kw, NULL, xf, 1, gu);
        for (int i = 0; i < 2 * f2; i++) gu[i] = cu_bf16_to_f32(cu_f32_to_bf16(gu[i]));
        ref->swiglu(ref->ctx, gu, gu + f2, want, f2);
        for (int q = 0; q < 2; q++) { /* the first and the last layout */
            int p = q ? n_pairs - 1 : 0;
            cu_memset(cu, dact, 0xff, (size_t)SW_NMAX * lda * 2);
            cu_gemv_rows_swiglu(cu, dx, ldx, 1, in, dw, f2, dact, lda, pairs[p].fused);
            float *got = back_f32(dact, f2);
            snprintf(name, sizeof name, "gemv swiglu in=%d ff=%d n=1 cfg=%#x vs CPU", in, f2, pairs[p].fused);
            report(name, got, want, f2, 1e-2);
            free(got);
        }
        free(gu), free(want);
    }
    /* inside a graph, between PDL neighbours */
    for (int n = 1; n <= 3; n += 2) {
        float *nf, *df;
        uint16_t *nwt = rand_bf16(in, 1.0f, &nf), *wd = rand_bf16((size_t)SW_DOWN * ff, 0.05f, &df);
        uint16_t *dn = dev_copy(nwt, (size_t)in * 2), *dwd = dev_copy(wd, (size_t)SW_DOWN * ff * 2);
        uint16_t *dh = dev_poisoned((size_t)n * in), *dxn = dev_poisoned((size_t)n * in);
        uint16_t *dy = dev_poisoned((size_t)n * SW_DOWN), *dy2 = dev_poisoned((size_t)n * SW_DOWN);
        const int down_cfg = CU_GR(1, 8, 1);
        int bad = 0;
        CuGraph *g = NULL;
        if (!cu_graph_begin(cu)) {
            cu_add_rmsnorm(cu, dh, NULL, dn, dxn, n, in, 1e-5f);
            cu_gemv_rows_swiglu(cu, dxn, in, n, in, dw, ff, dact, lda, pairs[0].fused | CU_GR_PDL | CU_GR_TRIGGER);
            cu_gemv_rows(cu, dact, lda, n, ff, dwd, SW_DOWN, NULL, dy, SW_DOWN, 0, down_cfg | CU_GR_PDL);
            g = cu_graph_end(cu);
        }
        if (!g) {
            const char *e = cu_error(cu);
            printf("FAIL gemv swiglu in a graph: capture: %s\n", e ? e : "no graph");
            failures++;
        }
        for (int rep = 0; g && rep < 4 && !bad; rep++) {
            float *hf;
            uint16_t *h = rand_bf16((size_t)n * in, 1.0f + rep, &hf);
            cu_upload(cu, dh, h, (size_t)n * in * 2);
            cu_graph_launch(cu, g);
            cu_add_rmsnorm(cu, dh, NULL, dn, dxn, n, in, 1e-5f);
            cu_gemv_rows(cu, dxn, in, n, in, dw, 2 * ff, NULL, dgu, 2 * ff, 0, pairs[0].unfused & ~CU_GR_PDL);
            cu_swiglu(cu, dgu, n, ff, dwant);
            cu_gemv_rows(cu, dwant, ff, n, ff, dwd, SW_DOWN, NULL, dy2, SW_DOWN, 0, down_cfg);
            int degenerate = 0;
            bad = !sw_same(dact, lda, dwant, n, ff, &degenerate) || !sw_same(dy, SW_DOWN, dy2, n, SW_DOWN, &degenerate) ||
                  cu_error(cu) != NULL;
            free(h), free(hf);
        }
        if (g) {
            printf("%-4s gemv swiglu in a graph: rmsnorm -> fused (PDL, trigger) -> GEMV (PDL) == eager unfused, "
                   "n=%d in=%d ff=%d (act and y bit-exact, 4 replays)\n", bad ? "FAIL" : "ok", n, in, ff);
            failures += bad;
            cu_graph_free(g);
        }
        cu_free(cu, dn), cu_free(cu, dwd), cu_free(cu, dh), cu_free(cu, dxn), cu_free(cu, dy), cu_free(cu, dy2);
        free(nwt), free(nf), free(wd), free(df);
    }
    cu_free(cu, dx), cu_free(cu, dw), cu_free(cu, dgu), cu_free(cu, dwant), cu_free(cu, dact);
    /* KDevOps.matmul_swiglu on the CUDA backend == its matmul then its swiglu */
    char err[256];
    KBackend *be = cuda_backend_new(err, sizeof err);
    if (!be) {
        printf("FAIL matmul_swiglu op: %s\n", err);
        failures++;
    } else {
        const KDevOps *op = be->dev;
        int sw_ok = cuda_backend_set_fuse_swiglu(be, "0") == 0 && !op->matmul_swiglu &&
                    cuda_backend_set_fuse_swiglu(be, "bogus") == -1 && cuda_backend_set_fuse_swiglu(be, "1") == 0 &&
                    op->matmul_swiglu;
        printf("%-4s matmul_swiglu op: NULL when off, set when on, unknown spec refused\n", sw_ok ? "ok" : "FAIL");
        failures += !sw_ok;
        uint16_t *bx = be->buf_alloc(be->ctx, (size_t)SW_NMAX * ldx * 2), *bw = be->buf_alloc(be->ctx, nw * 2);
        uint16_t *bgu = be->buf_alloc(be->ctx, (size_t)SW_NMAX * 2 * ff * 2);
        uint16_t *bwant = be->buf_alloc(be->ctx, (size_t)SW_NMAX * ff * 2), *bact = be->buf_alloc(be->ctx, (size_t)SW_NMAX * ff * 2);
        be->upload(be->ctx, bx, x, (size_t)SW_NMAX * ldx * 2);
        be->upload(be->ctx, bw, w, nw * 2);
        KTensor kw = {.dtype = K_DTYPE_BF16, .ne = {in, 2 * ff, 1, 1}, .data = bw};
        uint16_t *a = malloc((size_t)SW_NMAX * ff * 2), *b = malloc((size_t)SW_NMAX * ff * 2), *poison = malloc((size_t)SW_NMAX * ff * 2);
        memset(poison, 0xff, (size_t)SW_NMAX * ff * 2);
        const char *specs[] = {"auto", "rows:1:8:1:pdl", "rows:2:8:2", "rows:4:4:4:pdl", "off"};
        for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
            cuda_backend_set_gemv(be, specs[k]);
            cuda_backend_set_fuse_swiglu(be, k & 1 ? "no-trigger" : "1");
            int same = 1;
            for (int n = 1; n <= SW_NMAX; n++) {
                be->upload(be->ctx, bwant, poison, (size_t)n * ff * 2);
                be->upload(be->ctx, bact, poison, (size_t)n * ff * 2);
                op->matmul(be->ctx, &kw, NULL, bx, ldx, n, bgu, 2 * ff);
                op->swiglu(be->ctx, bgu, n, ff, bwant);
                op->matmul_swiglu(be->ctx, &kw, bx, ldx, n, ff, bgu, bact);
                be->download(be->ctx, a, bact, (size_t)n * ff * 2);
                be->download(be->ctx, b, bwant, (size_t)n * ff * 2);
                same &= memcmp(a, b, (size_t)n * ff * 2) == 0 && b[0] != 0xffff;
            }
            const char *e = be->error(be->ctx);
            int ok = same && !e;
            failures += !ok;
            printf("%-4s matmul_swiglu op (%s) in=%d ff=%d == matmul then swiglu, n=1..%d (bit-exact)%s\n",
                   ok ? "ok" : "FAIL", specs[k], in, ff, SW_NMAX, e ? e : "");
        }
        be->buf_free(be->ctx, bx), be->buf_free(be->ctx, bw), be->buf_free(be->ctx, bgu);
        be->buf_free(be->ctx, bwant), be->buf_free(be->ctx, bact);
        free(a), free(b), free(poison);
        be->destroy(be->ctx);
    }
    free(x), free(w), free(xf), free(wf);
}

/* A captured graph of add_rmsnorm -> the row-stream GEMV launched as a
 * programmatic dependent (CU_GR_PDL: its weight loads start before the norm
 * ends), replayed with a new residual each time: y must equal the eager
 * norm + GEMV without PDL, bit for bit (a missing wait would read a stale
 * or half-written x). */
static void test_gemv_rows_pdl(int n, int in, int out)
{
    float *hf, *wf, *nf;
    uint16_t *h = rand_bf16((size_t)n * in, 1.0f, &hf), *w = rand_bf16((size_t)out * in, 0.05f, &wf);
    uint16_t *nw = rand_bf16(in, 1.0f, &nf);
    uint16_t *dh = dev_copy(h, (size_t)n * in * 2), *dw = dev_copy(w, (size_t)out * in * 2), *dn = dev_copy(nw, in * 2);
    uint16_t *dx = dev_poisoned((size_t)n * in), *dy = dev_poisoned((size_t)n * out), *dy2 = dev_poisoned((size_t)n * out);
    int cfg = CU_GR(2, 8, 1);
    int bad = 0;
    CuGraph *g = NULL;
    if (!cu_graph_begin(cu)) {
        cu_add_rmsnorm(cu, dh, NULL, dn, dx, n, in, 1e-5f);
        cu_gemv_rows(cu, dx, in, n, in, dw, out, NULL, dy, out, 0, cfg | CU_GR_PDL);
        g = cu_graph_end(cu);
    }
    if (!g) {
        const char *e = cu_error(cu);
        printf("FAIL gemv rows PDL: capture: %s\n", e ? e : "no graph");
        failures++;
        return;
    }
    uint16_t *a = malloc((size_t)n * out * 2), *b = malloc((size_t)n * out * 2);
    for (int rep = 0; rep < 4 && !bad; rep++) {
        float *hf2;
        uint16_t *h2 = rand_bf16((size_t)n * in, 1.0f + rep, &hf2);
        cu_upload(cu, dh, h2, (size_t)n * in * 2);
        cu_graph_launch(cu, g);
        cu_add_rmsnorm(cu, dh, NULL, dn, dx, n, in, 1e-5f);
        cu_gemv_rows(cu, dx, in, n, in, dw, out, NULL, dy2, out, 0, cfg);
        cu_download(cu, a, dy, (size_t)n * out * 2);
        cu_download(cu, b, dy2, (size_t)n * out * 2);
        bad = memcmp(a, b, (size_t)n * out * 2) != 0 || cu_error(cu) != NULL;
        free(h2), free(hf2);
    }
    printf("%-4s gemv rows PDL in a graph after rmsnorm == eager, n=%d in=%d out=%d (bit-exact, 4 replays)\n",
           bad ? "FAIL" : "ok", n, in, out);
    failures += bad;
    cu_graph_free(g);
    cu_free(cu, dh), cu_free(cu, dw), cu_free(cu, dn), cu_free(cu, dx), cu_free(cu, dy), cu_free(cu, dy2);
    free(h), free(w), free(nw), free(hf), free(wf), free(nf), free(a), free(b);
}

static float e4m3_value(uint8_t b)
{
    int e = (b >> 3) & 15, m = b & 7;
    float v = e ? ldexpf(1.0f + m / 8.0f, e - 7) : ldexpf((float)m, -9);
    if (e == 15 && m == 7) v = NAN;
    return b & 0x80 ? -v : v;
}

/* cu_quant_fp8 + cu_gemv_fp8: the GEMV against the CPU reference on the same
 * (dequantized) weights, and the quantization itself against the bf16
 * weights: the fp8 result within 5e-2 of the bf16 one (e4m3 keeps 3
 * mantissa bits: 2^-4 relative rounding at worst) */
static void test_gemv_fp8(int n, int in, int out, int with_bias)
{
    float *xf, *wf, *bf;
    uint16_t *x = rand_bf16((size_t)n * in, 1.0f, &xf), *w = rand_bf16((size_t)out * in, 0.05f, &wf);
    uint16_t *b = rand_bf16(out, 0.5f, &bf);
    uint16_t *dx = dev_copy(x, (size_t)n * in * 2), *dw = dev_copy(w, (size_t)out * in * 2), *db = dev_copy(b, out * 2);
    uint8_t *dq = cu_alloc(cu, (size_t)out * in);
    float *dsc = cu_alloc(cu, (size_t)out * 4), *dyf = cu_alloc(cu, (size_t)n * out * 4);
    uint16_t *dy = dev_poisoned((size_t)n * out);
    cu_memset(cu, dq, 0xff, (size_t)out * in);
    cu_memset(cu, dyf, 0xff, (size_t)n * out * 4);
    cu_quant_fp8(cu, dw, in, out, dq, dsc);
    cu_gemv_fp8(cu, dx, in, n, in, dq, dsc, out, with_bias ? db : NULL, dy, out);
    cu_gemv_fp8_f32(cu, dx, in, n, in, dq, dsc, out, dyf, out);
    uint8_t *q = malloc((size_t)out * in);
    float *sc = malloc((size_t)out * 4), *wd = malloc((size_t)out * in * 4);
    cu_download(cu, q, dq, (size_t)out * in);
    cu_download(cu, sc, dsc, (size_t)out * 4);
    int range_ok = 1;
    for (int o = 0; o < out; o++) {
        float mx = 0, mq = 0;
        for (int i = 0; i < in; i++) {
            size_t k = (size_t)o * in + i;
            wd[k] = e4m3_value(q[k]) * sc[o];
            mx = fmaxf(mx, fabsf(wf[k])), mq = fmaxf(mq, fabsf(e4m3_value(q[k])));
        }
        if (mx > 0 && mq != 448.0f) range_ok = 0; /* each row's largest weight is e4m3's largest value */
    }
    if (!range_ok) failures++;
    printf("%-4s quant fp8 out=%d in=%d: every row's max at 448\n", range_ok ? "ok" : "FAIL", out, in);
    float *got = back_f32(dy, (size_t)n * out), *gotf = malloc((size_t)n * out * 4);
    cu_download(cu, gotf, dyf, (size_t)n * out * 4);
    float *want = malloc((size_t)n * out * 4), *wantb = malloc((size_t)n * out * 4), *w16 = malloc((size_t)n * out * 4);
    KTensor kq = {.dtype = K_DTYPE_F32, .ne = {in, out, 1, 1}, .data = wd};
    KTensor kw = {.dtype = K_DTYPE_BF16, .ne = {in, out, 1, 1}, .data = w};
    ref->matmul(ref->ctx, &kq, NULL, xf, n, want);
    ref->matmul(ref->ctx, &kw, NULL, xf, n, w16);
    for (size_t i = 0; i < (size_t)n * out; i++)
        wantb[i] = with_bias ? cu_bf16_to_f32(cu_f32_to_bf16(want[i])) + bf[i % out] : want[i];
    char name[96];
    snprintf(name, sizeof name, "gemv fp8 n=%d in=%d out=%d%s", n, in, out, with_bias ? " +bias" : "");
    report(name, got, wantb, (size_t)n * out, 1e-2);
    snprintf(name, sizeof name, "gemv fp8 f32 n=%d in=%d out=%d", n, in, out);
    report(name, gotf, want, (size_t)n * out, 1e-4);
    snprintf(name, sizeof name, "gemv fp8 vs bf16 weights n=%d in=%d out=%d", n, in, out);
    report(name, gotf, w16, (size_t)n * out, 5e-2);
    cu_free(cu, dx), cu_free(cu, dw), cu_free(cu, db), cu_free(cu, dq), cu_free(cu, dsc), cu_free(cu, dyf);
    cu_free(cu, dy);
    free(x), free(w), free(b), free(xf), free(wf), free(bf), free(q), free(sc), free(wd), free(got), free(gotf);
    free(want), free(wantb), free(w16);
}

static void test_embed(void)
{
    int v = 1000, dim = 512, n = 37;
    float *ef;
    uint16_t *e = rand_bf16((size_t)v * dim, 1.0f, &ef);
    int32_t tok[37];
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(urand() * v);
    uint16_t *de = dev_copy(e, (size_t)v * dim * 2), *dout = dev_poisoned((size_t)n * dim);
    int32_t *dt = dev_copy(tok, sizeof tok);
    cu_embed(cu, de, dim, dt, n, dout);
    float *got = back_f32(dout, (size_t)n * dim), *want = malloc((size_t)n * dim * 4);
    KTensor ke = {.dtype = K_DTYPE_BF16, .ne = {dim, v, 1, 1}, .data = e};
    ref->embed(ref->ctx, &ke, tok, n, want);
    int same = memcmp(got, want, (size_t)n * dim * 4) == 0;
    report(same ? "embed (bit-exact)" : "embed NOT bit-exact", got, want, (size_t)n * dim, same ? 1e-30 : 0);
    cu_free(cu, de), cu_free(cu, dout), cu_free(cu, dt);
    free(e), free(ef), free(got), free(want);
}

static void test_rmsnorm(int n, int dim, int with_delta)
{
    float *hf, *df, *wf;
    uint16_t *h = rand_bf16((size_t)n * dim, 2.0f, &hf), *d = rand_bf16((size_t)n * dim, 1.0f, &df);
    uint16_t *w = rand_bf16(dim, 1.5f, &wf);
    uint16_t *dh = dev_copy(h, (size_t)n * dim * 2), *dd = dev_copy(d, (size_t)n * dim * 2), *dw = dev_copy(w, dim * 2);
    uint16_t *dy = dev_poisoned((size_t)n * dim);
    cu_add_rmsnorm(cu, dh, with_delta ? dd : NULL, dw, dy, n, dim, 1e-5f);
    float *got = back_f32(dy, (size_t)n * dim), *goth = back_f32(dh, (size_t)n * dim);
    float *want = malloc((size_t)n * dim * 4);
    if (with_delta) ref->add(ref->ctx, hf, df, (size_t)n * dim);
    ref->rmsnorm(ref->ctx, hf, wf, want, n, dim, 1e-5f);
    char name[96];
    snprintf(name, sizeof name, "%s n=%d dim=%d", with_delta ? "add+rmsnorm" : "rmsnorm", n, dim);
    report(name, got, want, (size_t)n * dim, 1e-2);
    if (with_delta) report("add+rmsnorm: residual written back", goth, hf, (size_t)n * dim, 1e-2);
    cu_free(cu, dh), cu_free(cu, dd), cu_free(cu, dw), cu_free(cu, dy);
    free(h), free(d), free(w), free(hf), free(df), free(wf), free(got), free(goth), free(want);
}

static void test_rope_kv(int n, int nh, int nkv, int hd, float theta)
{
    int row = (nh + 2 * nkv) * hd, kvd = nkv * hd, n_slots = 3 * n + 5;
    float *qf;
    uint16_t *qkv = rand_bf16((size_t)n * row, 1.0f, &qf);
    int32_t *pos = malloc(n * 4), *ws = malloc(n * 4);
    for (int i = 0; i < n; i++) {
        pos[i] = (int32_t)(urand() * 5000);
        ws[i] = 3 * i + 1 + (int32_t)(urand() * 2); /* distinct slots, not in row order of a pool */
    }
    uint16_t *dq = dev_copy(qkv, (size_t)n * row * 2);
    uint16_t *dk = dev_poisoned((size_t)n_slots * kvd), *dv = dev_poisoned((size_t)n_slots * kvd);
    int32_t *dp = dev_copy(pos, n * 4), *dws = dev_copy(ws, n * 4);
    cu_rope_kv_write(cu, dq, n, nh, nkv, hd, theta, dp, dws, dk, dv);
    float *gq = back_f32(dq, (size_t)n * row), *gk = back_f32(dk, (size_t)n_slots * kvd);
    float *gv = back_f32(dv, (size_t)n_slots * kvd);
    /* reference: q and k rows rotated with a cos/sin table, then kv_store */
    float *cs = malloc((size_t)n * hd * 4);
    for (int t = 0; t < n; t++)
        for (int p = 0; p < hd / 2; p++) {
            double a = pos[t] * pow(theta, -2.0 * p / hd);
            cs[(size_t)t * hd + 2 * p] = (float)cos(a), cs[(size_t)t * hd + 2 * p + 1] = (float)sin(a);
        }
    float *q = malloc((size_t)n * nh * hd * 4), *k = malloc((size_t)n * kvd * 4), *v = malloc((size_t)n * kvd * 4);
    for (int t = 0; t < n; t++) {
        memcpy(q + (size_t)t * nh * hd, qf + (size_t)t * row, (size_t)nh * hd * 4);
        memcpy(k + (size_t)t * kvd, qf + (size_t)t * row + nh * hd, (size_t)kvd * 4);
        memcpy(v + (size_t)t * kvd, qf + (size_t)t * row + (nh + nkv) * hd, (size_t)kvd * 4);
    }
    ref->rope(ref->ctx, q, n, nh, hd, hd, cs, K_ROPE_NEOX);
    ref->rope(ref->ctx, k, n, nkv, hd, hd, cs, K_ROPE_NEOX);
    float *pk = calloc((size_t)n_slots * kvd, 4), *pv = calloc((size_t)n_slots * kvd, 4);
    ref->kv_store(ref->ctx, pk, pv, K_DTYPE_F32, kvd, k, v, ws, n);
    float *gq2 = malloc((size_t)n * nh * hd * 4), *gk2 = malloc((size_t)n * kvd * 4), *gv2 = malloc((size_t)n * kvd * 4);
    float *wk2 = malloc((size_t)n * kvd * 4), *wv2 = malloc((size_t)n * kvd * 4);
    for (int t = 0; t < n; t++) {
        memcpy(gq2 + (size_t)t * nh * hd, gq + (size_t)t * row, (size_t)nh * hd * 4);
        memcpy(gk2 + (size_t)t * kvd, gk + (size_t)ws[t] * kvd, (size_t)kvd * 4);
        memcpy(gv2 + (size_t)t * kvd, gv + (size_t)ws[t] * kvd, (size_t)kvd * 4);
        memcpy(wk2 + (size_t)t * kvd, pk + (size_t)ws[t] * kvd, (size_t)kvd * 4);
        memcpy(wv2 + (size_t)t * kvd, pv + (size_t)ws[t] * kvd, (size_t)kvd * 4);
    }
    char name[96];
    snprintf(name, sizeof name, "rope q n=%d heads=%d/%d hd=%d", n, nh, nkv, hd);
    report(name, gq2, q, (size_t)n * nh * hd, 1e-2);
    report("rope k -> slot pool", gk2, wk2, (size_t)n * kvd, 1e-2);
    int vsame = memcmp(gv2, wv2, (size_t)n * kvd * 4) == 0;
    report(vsame ? "v -> slot pool (bit-exact)" : "v -> slot pool NOT bit-exact", gv2, wv2, (size_t)n * kvd,
           vsame ? 1e-30 : 0);
    cu_free(cu, dq), cu_free(cu, dk), cu_free(cu, dv), cu_free(cu, dp), cu_free(cu, dws);
    free(qkv), free(qf), free(pos), free(ws), free(gq), free(gk), free(gv), free(cs), free(q), free(k), free(v);
    free(pk), free(pv), free(gq2), free(gk2), free(gv2), free(wk2), free(wv2);
}

/* cu_rope_kv_write_f (the model's inv_freq, rot_dim of head_dim, either
 * pairing) against the reference rope + kv_store. */
static void test_rope_kv_f(int n, int nh, int nkv, int hd, int rot, KRopeStyle style)
{
    int row = (nh + 2 * nkv) * hd, kvd = nkv * hd, n_slots = 2 * n + 3;
    float *qf;
    uint16_t *qkv = rand_bf16((size_t)n * row, 1.0f, &qf);
    int32_t *pos = malloc(n * 4), *ws = malloc(n * 4);
    for (int i = 0; i < n; i++) pos[i] = (int32_t)(urand() * 9000), ws[i] = 2 * i + 1;
    float *inv = malloc((size_t)rot / 2 * 4);
    for (int p = 0; p < rot / 2; p++) inv[p] = powf(10000.0f, -2.0f * p / rot) / (p % 3 ? 1.0f : 4.0f);
    uint16_t *dq = dev_copy(qkv, (size_t)n * row * 2);
    uint16_t *dk = dev_poisoned((size_t)n_slots * kvd), *dv = dev_poisoned((size_t)n_slots * kvd);
    int32_t *dp = dev_copy(pos, n * 4), *dws = dev_copy(ws, n * 4);
    float *dinv = dev_copy(inv, (size_t)rot / 2 * 4);
    cu_rope_kv_write_f(cu, dq, n, nh, nkv, hd, rot, dinv, style == K_ROPE_NEOX, dp, dws, dk, dv);
    float *gq = back_f32(dq, (size_t)n * row), *gk = back_f32(dk, (size_t)n_slots * kvd);
    float *gv = back_f32(dv, (size_t)n_slots * kvd);
    float *cs = malloc((size_t)n * rot * 4);
    for (int t = 0; t < n; t++)
        for (int p = 0; p < rot / 2; p++) {
            double ang = (double)pos[t] * inv[p];
            cs[(size_t)t * rot + 2 * p] = (float)cos(ang), cs[(size_t)t * rot + 2 * p + 1] = (float)sin(ang);
        }
    float *q = malloc((size_t)n * nh * hd * 4), *k = malloc((size_t)n * kvd * 4), *v = malloc((size_t)n * kvd * 4);
    for (int t = 0; t < n; t++) {
        memcpy(q + (size_t)t * nh * hd, qf + (size_t)t * row, (size_t)nh * hd * 4);
        memcpy(k + (size_t)t * kvd, qf + (size_t)t * row + nh * hd, (size_t)kvd * 4);
        memcpy(v + (size_t)t * kvd, qf + (size_t)t * row + (nh + nkv) * hd, (size_t)kvd * 4);
    }
    ref->rope(ref->ctx, q, n, nh, hd, rot, cs, style);
    ref->rope(ref->ctx, k, n, nkv, hd, rot, cs, style);
    float *gq2 = malloc((size_t)n * nh * hd * 4), *gk2 = malloc((size_t)n * kvd * 4), *gv2 = malloc((size_t)n * kvd * 4);
    for (int t = 0; t < n; t++) {
        memcpy(gq2 + (size_t)t * nh * hd, gq + (size_t)t * row, (size_t)nh * hd * 4);
        memcpy(gk2 + (size_t)t * kvd, gk + (size_t)ws[t] * kvd, (size_t)kvd * 4);
        memcpy(gv2 + (size_t)t * kvd, gv + (size_t)ws[t] * kvd, (size_t)kvd * 4);
    }
    char name[96];
    snprintf(name, sizeof name, "rope_f q n=%d heads=%d/%d hd=%d rot=%d %s", n, nh, nkv, hd, rot,
             style == K_ROPE_NEOX ? "neox" : "norm");
    report(name, gq2, q, (size_t)n * nh * hd, 1e-2);
    report("rope_f k -> slot pool", gk2, k, (size_t)n * kvd, 1e-2);
    int vsame = memcmp(gv2, v, (size_t)n * kvd * 4) == 0;
    report(vsame ? "rope_f v -> slot pool (bit-exact)" : "rope_f v -> slot pool NOT bit-exact", gv2, v,
           (size_t)n * kvd, vsame ? 1e-30 : 0);
    cu_free(cu, dq), cu_free(cu, dk), cu_free(cu, dv), cu_free(cu, dp), cu_free(cu, dws), cu_free(cu, dinv);
    free(qkv), free(qf), free(pos), free(ws), free(inv), free(gq), free(gk), free(gv), free(cs), free(q), free(k);
    free(v), free(gq2), free(gk2), free(gv2);
}

static void test_swiglu(int n, int ff)
{
    float *gf;
    uint16_t *gu = rand_bf16((size_t)n * 2 * ff, 4.0f, &gf);
    uint16_t *dg = dev_copy(gu, (size_t)n * 2 * ff * 2), *dout = dev_poisoned((size_t)n * ff);
    cu_swiglu(cu, dg, n, ff, dout);
    float *got = back_f32(dout, (size_t)n * ff), *want = malloc((size_t)n * ff * 4);
    for (int t = 0; t < n; t++)
        ref->swiglu(ref->ctx, gf + (size_t)t * 2 * ff, gf + (size_t)t * 2 * ff + ff, want + (size_t)t * ff, ff);
    char name[96];
    snprintf(name, sizeof name, "swiglu n=%d ff=%d", n, ff);
    report(name, got, want, (size_t)n * ff, 1e-2);
    cu_free(cu, dg), cu_free(cu, dout);
    free(gu), free(gf), free(got), free(want);
}

/* Sequences with a cached prefix plus new rows, context slots scattered over
 * the pool (a random permutation), q inside a wider qkv-like row. */
static void test_attention(int nh, int nkv, int hd, int n_seqs, const int *prefix, const int *n_new, int n_split)
{
    int kvd = nkv * hd, ldq = (nh + 2 * nkv) * hd;
    int total_ctx = 0, n_rows = 0, max_len = 0;
    for (int s = 0; s < n_seqs; s++) total_ctx += prefix[s] + n_new[s], n_rows += n_new[s];
    int n_slots = total_ctx + 17;
    int32_t *perm = malloc(n_slots * 4);
    for (int i = 0; i < n_slots; i++) perm[i] = i;
    for (int i = n_slots - 1; i > 0; i--) {
        int j = (int)(urand() * (i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int32_t *slots = malloc(total_ctx * 4), *roff = malloc(n_rows * 4), *rlen = malloc(n_rows * 4);
    KAttnSeq *seqs = malloc(n_seqs * sizeof *seqs);
    int so = 0, r = 0;
    for (int s = 0; s < n_seqs; s++) {
        int nc = prefix[s] + n_new[s];
        for (int t = 0; t < nc; t++) slots[so + t] = perm[so + t];
        seqs[s] = (KAttnSeq){.slots = slots + so, .n_ctx = nc, .n_new = n_new[s], .row0 = r};
        for (int j = 0; j < n_new[s]; j++, r++) {
            roff[r] = so, rlen[r] = prefix[s] + j + 1;
            if (rlen[r] > max_len) max_len = rlen[r];
        }
        so += nc;
    }
    float *qf, *kf, *vf;
    uint16_t *q = rand_bf16((size_t)n_rows * ldq, 2.0f, &qf);
    uint16_t *k = rand_bf16((size_t)n_slots * kvd, 2.0f, &kf), *v = rand_bf16((size_t)n_slots * kvd, 1.0f, &vf);
    uint16_t *dq = dev_copy(q, (size_t)n_rows * ldq * 2), *dk = dev_copy(k, (size_t)n_slots * kvd * 2);
    uint16_t *dv = dev_copy(v, (size_t)n_slots * kvd * 2), *dout = dev_poisoned((size_t)n_rows * nh * hd);
    int32_t *ds = dev_copy(slots, total_ctx * 4), *dro = dev_copy(roff, n_rows * 4), *drl = dev_copy(rlen, n_rows * 4);
    int chunk = (max_len + n_split - 1) / n_split;
    float *ws = n_split > 1 ? cu_alloc(cu, cu_attn_ws_bytes(n_rows, nh, hd, n_split)) : NULL;
    float scale = 1.0f / sqrtf((float)hd);
    cu_attention(cu, dq, ldq, n_rows, nh, nkv, hd, scale, dk, dv, ds, dro, drl, n_split, chunk, ws, dout);
    float *got = back_f32(dout, (size_t)n_rows * nh * hd), *want = malloc((size_t)n_rows * nh * hd * 4);
    float *qc = malloc((size_t)n_rows * nh * hd * 4);
    for (int i = 0; i < n_rows; i++) memcpy(qc + (size_t)i * nh * hd, qf + (size_t)i * ldq, (size_t)nh * hd * 4);
    KAttnArgs a = {.q = qc, .out = want, .k_pool = kf, .v_pool = vf, .kv_dtype = K_DTYPE_F32, .n_head = nh,
                   .n_head_kv = nkv, .head_dim = hd, .scale = scale, .seqs = seqs, .n_seqs = n_seqs};
    ref->attention(ref->ctx, &a);
    char name[96];
    snprintf(name, sizeof name, "attention heads=%d/%d hd=%d seqs=%d rows=%d split=%d", nh, nkv, hd, n_seqs, n_rows,
             n_split);
    report(name, got, want, (size_t)n_rows * nh * hd, 1e-2);
    /* the tensor-core row kernel, same arguments */
    free(got);
    cu_memset(cu, dout, 0xff, (size_t)n_rows * nh * hd * 2);
    cu_attention_decode_tc(cu, dq, ldq, n_rows, nh, nkv, hd, scale, dk, dv, ds, dro, drl, n_split, chunk, ws, dout);
    got = back_f32(dout, (size_t)n_rows * nh * hd);
    snprintf(name, sizeof name, "attention tc-rows heads=%d/%d hd=%d seqs=%d rows=%d split=%d", nh, nkv, hd, n_seqs,
             n_rows, n_split);
    report(name, got, want, (size_t)n_rows * nh * hd, 1e-2);
    /* the split-K decode kernel (every row on its own), several splits; a
     * launch bounded by a far larger max_len (as a graph is) must give the
     * same bits as the exact one */
    {
        int cfg[][2] = {{1, 64}, {n_split, 16}, {64, 64}, {5, 128}};
        int *cnt = cu_alloc(cu, (size_t)n_rows * nkv * sizeof(int));
        cu_memset(cu, cnt, 0, (size_t)n_rows * nkv * sizeof(int));
        for (int ci = 0; ci < 4; ci++) {
            int ms = cfg[ci][0], mc = cfg[ci][1];
            float *dws = ms > 1 ? cu_alloc(cu, cu_decode_ws_bytes(n_rows, nh, hd, ms)) : NULL;
            free(got);
            cu_memset(cu, dout, 0xff, (size_t)n_rows * nh * hd * 2);
            /* merged by the last block (counters) */
            cu_attention_decode(cu, dq, ldq, n_rows, nh, nkv, hd, scale, dk, dv, ds, dro, drl, max_len, ms, mc, dws,
                                cnt, dout);
            got = back_f32(dout, (size_t)n_rows * nh * hd);
            snprintf(name, sizeof name, "attention split-K heads=%d/%d hd=%d rows=%d split<=%d chunk>=%d", nh, nkv, hd,
                     n_rows, ms, mc);
            report(name, got, want, (size_t)n_rows * nh * hd, 1e-2);
            /* a graph's bound on max_len, merged by the second kernel (no
             * counters), then counters again: the same bits each time */
            for (int rep = 0; rep < 2; rep++) {
                cu_memset(cu, dout, 0xff, (size_t)n_rows * nh * hd * 2);
                cu_attention_decode(cu, dq, ldq, n_rows, nh, nkv, hd, scale, dk, dv, ds, dro, drl, 1 << 22, ms, mc,
                                    dws, rep ? cnt : NULL, dout);
                float *bound = back_f32(dout, (size_t)n_rows * nh * hd);
                int same = memcmp(bound, got, (size_t)n_rows * nh * hd * 4) == 0;
                if (!same) failures++;
                printf("%-4s   ... max_len 4M (a graph's bound), merged by %s: %s\n", same ? "ok" : "FAIL",
                       rep ? "the last block" : "the merge kernel", same ? "bit-identical" : "DIFFERENT");
                free(bound);
            }
            cu_free(cu, dws);
        }
        int32_t *hc = malloc((size_t)n_rows * nkv * sizeof(int)), nz = 0;
        cu_download(cu, hc, cnt, (size_t)n_rows * nkv * sizeof(int));
        for (int i = 0; i < n_rows * nkv; i++) nz += hc[i] != 0;
        if (nz) failures++;
        printf("%-4s   ... merge counters left at 0 (%d not)\n", nz ? "FAIL" : "ok", nz);
        free(hc);
        cu_free(cu, cnt);
    }
    /* the tiled prefill kernel: each sequence's rows in tiles of cu_attn_tile_rows() */
    int tr = cu_attn_tile_rows(), n_tiles = 0;
    int32_t *tiles = malloc(((size_t)n_rows + n_seqs) * 4 * sizeof *tiles);
    for (int sq = 0, so2 = 0, r0 = 0; sq < n_seqs; sq++) {
        for (int t0 = 0; t0 < n_new[sq]; t0 += tr, n_tiles++) {
            tiles[4 * n_tiles] = r0 + t0;
            tiles[4 * n_tiles + 1] = n_new[sq] - t0 < tr ? n_new[sq] - t0 : tr;
            tiles[4 * n_tiles + 2] = so2;
            tiles[4 * n_tiles + 3] = prefix[sq] + t0 + 1;
        }
        so2 += prefix[sq] + n_new[sq];
        r0 += n_new[sq];
    }
    int32_t *dt = dev_copy(tiles, (size_t)n_tiles * 4 * sizeof *tiles);
    free(got);
    cu_memset(cu, dout, 0xff, (size_t)n_rows * nh * hd * 2);
    cu_attention_prefill(cu, dq, ldq, nh, nkv, hd, scale, dk, dv, ds, dt, n_tiles, dout);
    got = back_f32(dout, (size_t)n_rows * nh * hd);
    snprintf(name, sizeof name, "attention tiles heads=%d/%d hd=%d seqs=%d rows=%d tiles=%d", nh, nkv, hd, n_seqs,
             n_rows, n_tiles);
    report(name, got, want, (size_t)n_rows * nh * hd, 1e-2);
    /* the mma.sync prefill kernel (cuda_prefill.cu), one and two heads a block */
    for (int v = 0; v < 4; v++) {
        int hpb = 1 + (v & 1), flags = v & 2 ? CU_PREFILL_EXACT_EXP : 0;
        if (hpb == 2 && (nh / nkv) % 2) continue;
        free(got);
        cu_memset(cu, dout, 0xff, (size_t)n_rows * nh * hd * 2);
        cu_attention_prefill_mma(cu, dq, ldq, nh, nkv, hd, scale, dk, dv, ds, dt, n_tiles, dout, hpb, flags);
        got = back_f32(dout, (size_t)n_rows * nh * hd);
        snprintf(name, sizeof name, "attention mma%d%s heads=%d/%d hd=%d seqs=%d rows=%d tiles=%d", hpb,
                 flags ? "-exact" : "", nh, nkv, hd, n_seqs, n_rows, n_tiles);
        report(name, got, want, (size_t)n_rows * nh * hd, 1e-2);
    }
    cu_free(cu, dt);
    free(tiles);
    cu_free(cu, dq), cu_free(cu, dk), cu_free(cu, dv), cu_free(cu, dout), cu_free(cu, ds), cu_free(cu, dro);
    cu_free(cu, drl), cu_free(cu, ws);
    free(perm), free(slots), free(roff), free(rlen), free(seqs), free(q), free(qf), free(k), free(kf), free(v);
    free(vf), free(got), free(want), free(qc);
}

/* Decode rows of length 0 (a graph's padding) give zeros; rope_kv with
 * wslot < 0 rotates q and writes no k/v. */
static void test_padding_rows(void)
{
    int nh = 32, nkv = 8, hd = 128, kvd = nkv * hd, ldq = (nh + 2 * nkv) * hd, n_slots = 600;
    int32_t len[4] = {0, 5, 0, 513}, off[4] = {0, 0, 0, 5}, slots[518];
    for (int i = 0; i < 518; i++) slots[i] = (i * 7 + 3) % n_slots;
    float *qf, *kf, *vf;
    uint16_t *q = rand_bf16((size_t)4 * ldq, 2.0f, &qf), *k = rand_bf16((size_t)n_slots * kvd, 2.0f, &kf);
    uint16_t *v = rand_bf16((size_t)n_slots * kvd, 1.0f, &vf);
    uint16_t *dq = dev_copy(q, (size_t)4 * ldq * 2), *dk = dev_copy(k, (size_t)n_slots * kvd * 2);
    uint16_t *dv = dev_copy(v, (size_t)n_slots * kvd * 2), *dout = dev_poisoned((size_t)4 * nh * hd);
    int32_t *ds = dev_copy(slots, sizeof slots), *dro = dev_copy(off, sizeof off), *drl = dev_copy(len, sizeof len);
    float *ws = cu_alloc(cu, cu_decode_ws_bytes(4, nh, hd, 16));
    cu_attention_decode(cu, dq, ldq, 4, nh, nkv, hd, 0.088f, dk, dv, ds, dro, drl, 1 << 20, 16, 32, ws, NULL, dout);
    float *got = back_f32(dout, (size_t)4 * nh * hd);
    int bad = 0;
    for (int r = 0; r < 4; r += 2)
        for (int i = 0; i < nh * hd; i++) bad += got[(size_t)r * nh * hd + i] != 0.0f;
    for (int r = 1; r < 4; r += 2)
        for (int i = 0; i < nh * hd; i++) bad += !isfinite(got[(size_t)r * nh * hd + i]);
    const char *e = cu_sync(cu) ? cu_error(cu) : NULL;
    if (bad || e) failures++;
    printf("%-4s split-K decode: rows of length 0 give zeros (%d bad values)%s\n", bad || e ? "FAIL" : "ok", bad,
           e ? e : "");
    /* rope_kv: row 0 wslot -1, row 1 wslot 2; q of both rotated as with writes */
    float inv[64];
    for (int i = 0; i < 64; i++) inv[i] = powf(500000.0f, -2.0f * i / 128);
    float *dinv = dev_copy(inv, sizeof inv);
    int32_t pos[2] = {17, 4000}, wsl[2] = {-1, 2}, wsl2[2] = {0, 2};
    int32_t *dp = dev_copy(pos, sizeof pos), *dw = dev_copy(wsl, sizeof wsl), *dw2 = dev_copy(wsl2, sizeof wsl2);
    uint16_t *dq2 = dev_copy(q, (size_t)2 * ldq * 2), *pk = dev_poisoned((size_t)4 * kvd), *pv = dev_poisoned((size_t)4 * kvd);
    uint16_t *pk2 = dev_poisoned((size_t)4 * kvd), *pv2 = dev_poisoned((size_t)4 * kvd);
    cu_rope_kv_write_f(cu, dq, 2, nh, nkv, hd, hd, dinv, 1, dp, dw, pk, pv);
    cu_rope_kv_write_f(cu, dq2, 2, nh, nkv, hd, hd, dinv, 1, dp, dw2, pk2, pv2);
    uint16_t *hq = malloc((size_t)2 * ldq * 2), *hq2 = malloc((size_t)2 * ldq * 2), *hk = malloc((size_t)4 * kvd * 2);
    uint16_t *hv = malloc((size_t)4 * kvd * 2), *hk2 = malloc((size_t)4 * kvd * 2);
    cu_download(cu, hq, dq, (size_t)2 * ldq * 2);
    cu_download(cu, hq2, dq2, (size_t)2 * ldq * 2);
    cu_download(cu, hk, pk, (size_t)4 * kvd * 2);
    cu_download(cu, hv, pv, (size_t)4 * kvd * 2);
    cu_download(cu, hk2, pk2, (size_t)4 * kvd * 2);
    int qsame = 1, untouched = 1, written = 1;
    for (int r = 0; r < 2; r++)
        qsame &= memcmp(hq + (size_t)r * ldq, hq2 + (size_t)r * ldq, (size_t)nh * hd * 2) == 0;
    for (int sl = 0; sl < 4; sl++)
        for (int i = 0; i < kvd; i++) {
            int poison = hk[(size_t)sl * kvd + i] == 0xffff && hv[(size_t)sl * kvd + i] == 0xffff;
            if (sl == 2) written &= !poison && hk[(size_t)sl * kvd + i] == hk2[(size_t)sl * kvd + i];
            else untouched &= poison;
        }
    e = cu_sync(cu) ? cu_error(cu) : NULL;
    int ok = qsame && untouched && written && !e;
    if (!ok) failures++;
    printf("%-4s rope_kv wslot -1: q rotated as usual %s, no k/v written %s, the other row's k/v %s%s\n",
           ok ? "ok" : "FAIL", qsame ? "yes" : "NO", untouched ? "yes" : "NO", written ? "yes" : "NO", e ? e : "");
    cu_free(cu, dq), cu_free(cu, dk), cu_free(cu, dv), cu_free(cu, dout), cu_free(cu, ds), cu_free(cu, dro);
    cu_free(cu, drl), cu_free(cu, ws), cu_free(cu, dinv), cu_free(cu, dp), cu_free(cu, dw), cu_free(cu, dw2);
    cu_free(cu, dq2), cu_free(cu, pk), cu_free(cu, pv), cu_free(cu, pk2), cu_free(cu, pv2);
    free(q), free(qf), free(k), free(kf), free(v), free(vf), free(got), free(hq), free(hq2), free(hk), free(hv);
    free(hk2);
}

/* cu_attention_decode_rope (RoPE + the KV write inside the split-K decode
 * kernel) against cu_rope_kv_write_f / _fp8 then cu_attention_decode / _fp8
 * on the same inputs: the attention output and the whole pools must be
 * bit-identical. Rows of lengths `lens` (0: a graph's padding row, wslot
 * -1), scattered slots, the pools filled with stale values where the new
 * keys go; eager with the exact max_len and counters, eager with a graph's
 * bound and the merge kernel, then from a graph recorded with the bound and
 * counters, replayed twice on other positions (the reference recomputed
 * eagerly for them). */
static void test_attention_rope(int fp8, int nh, int nkv, int hd, int rot, KRopeStyle style, int n_rows,
                                const int *lens)
{
    int kvd = nkv * hd, ldq = (nh + 2 * nkv) * hd, total = 0, max_len = 1, eb = fp8 ? 1 : 2;
    for (int r = 0; r < n_rows; r++) total += lens[r], max_len = lens[r] > max_len ? lens[r] : max_len;
    int n_slots = total + 17;
    int32_t *perm = malloc((size_t)n_slots * 4), *slots = malloc((size_t)(total ? total : 1) * 4);
    for (int i = 0; i < n_slots; i++) perm[i] = i;
    for (int i = n_slots - 1; i > 0; i--) {
        int j = (int)(urand() * (i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int32_t roff[16], rlen[16], pos[16], wsl[16];
    int off = 0;
    for (int r = 0; r < n_rows; r++) {
        roff[r] = lens[r] ? off : 0, rlen[r] = lens[r];
        for (int t = 0; t < lens[r]; t++) slots[off + t] = perm[off + t];
        wsl[r] = lens[r] ? slots[off + lens[r] - 1] : -1;
        pos[r] = lens[r] ? lens[r] - 1 + (int)(urand() * 3000) : 0;
        off += lens[r];
    }
    float *qf;
    uint16_t *qkv = rand_bf16((size_t)n_rows * ldq, 2.0f, &qf);
    size_t pool_b = (size_t)n_slots * kvd * eb;
    uint8_t *pk = malloc(pool_b), *pv = malloc(pool_b);
    for (size_t i = 0; i < pool_b / eb; i++) {
        float a = (float)((2 * urand() - 1) * 2.0), b = (float)(2 * urand() - 1);
        if (fp8) pk[i] = k_f32_to_e4m3(a), pv[i] = k_f32_to_e4m3(b);
        else ((uint16_t *)pk)[i] = cu_f32_to_bf16(a), ((uint16_t *)pv)[i] = cu_f32_to_bf16(b);
    }
    float inv[64] = {0};
    for (int p = 0; p < rot / 2; p++) inv[p] = powf(500000.0f, -2.0f * p / rot) / (p % 3 ? 1.0f : 4.0f);
    int neox = style == K_ROPE_NEOX, ms = 16, mc = 64;
    float scale = 1.0f / sqrtf((float)hd), *dinv = dev_copy(inv, sizeof inv);
    int32_t *ds = dev_copy(slots, (size_t)(total ? total : 1) * 4), *dro = dev_copy(roff, sizeof roff);
    int32_t *drl = dev_copy(rlen, sizeof rlen), *dp = dev_copy(pos, sizeof pos), *dw = dev_copy(wsl, sizeof wsl);
    float *ws = cu_alloc(cu, cu_decode_ws_bytes(n_rows, nh, hd, ms));
    int *cnt = cu_alloc(cu, (size_t)n_rows * nkv * sizeof(int));
    cu_memset(cu, cnt, 0, (size_t)n_rows * nkv * sizeof(int));
    uint16_t *qa = cu_alloc(cu, (size_t)n_rows * ldq * 2), *qb = cu_alloc(cu, (size_t)n_rows * ldq * 2);
    void *ka = cu_alloc(cu, pool_b), *va = cu_alloc(cu, pool_b), *kb = cu_alloc(cu, pool_b), *vb = cu_alloc(cu, pool_b);
    uint16_t *oa = dev_poisoned((size_t)n_rows * nh * hd), *ob = dev_poisoned((size_t)n_rows * nh * hd);
    size_t out_b = (size_t)n_rows * nh * hd * 2;
    uint8_t *h1 = malloc(out_b), *h2 = malloc(out_b), *p1 = malloc(pool_b), *p2 = malloc(pool_b);
    CuGraph *g = NULL;
    char name[160];
    /* 0: eager, exact max_len, counters; 1: eager, a graph's max_len bound, the
     * merge kernel; 2, 3: the graph of pass 1's launch, on new positions */
    for (int pass = 0; pass < 4; pass++) {
        if (pass >= 2) {
            for (int r = 0; r < n_rows; r++) pos[r] = lens[r] ? (int)(urand() * 60000) : 0;
            cu_upload(cu, dp, pos, sizeof pos);
        }
        cu_upload(cu, qa, qkv, (size_t)n_rows * ldq * 2), cu_upload(cu, qb, qkv, (size_t)n_rows * ldq * 2);
        cu_upload(cu, ka, pk, pool_b), cu_upload(cu, va, pv, pool_b);
        cu_upload(cu, kb, pk, pool_b), cu_upload(cu, vb, pv, pool_b);
        cu_memset(cu, oa, 0xff, out_b), cu_memset(cu, ob, 0xff, out_b);
        int bound = pass ? 1 << 22 : max_len;
        int *c = pass ? NULL : cnt;
        if (fp8) {
            cu_rope_kv_write_fp8(cu, qa, n_rows, nh, nkv, hd, rot, dinv, neox, dp, dw, ka, va);
            cu_attention_decode_fp8(cu, qa, ldq, n_rows, nh, nkv, hd, scale, ka, va, ds, dro, drl, max_len, ms, mc, ws,
                                    cnt, oa);
        } else {
            cu_rope_kv_write_f(cu, qa, n_rows, nh, nkv, hd, rot, dinv, neox, dp, dw, ka, va);
            cu_attention_decode(cu, qa, ldq, n_rows, nh, nkv, hd, scale, ka, va, ds, dro, drl, max_len, ms, mc, ws, cnt,
                                oa);
        }
        if (pass == 1 && !cu_graph_begin(cu)) { /* as the backend records it: a bound, counters */
            cu_attention_decode_rope(cu, qb, n_rows, nh, nkv, hd, scale, kb, vb, fp8, ds, dro, drl, bound, ms, mc, ws,
                                     cnt, rot, dinv, neox, dp, dw, ob);
            g = cu_graph_end(cu);
        }
        if (pass < 2)
            cu_attention_decode_rope(cu, qb, n_rows, nh, nkv, hd, scale, kb, vb, fp8, ds, dro, drl, bound, ms, mc, ws,
                                     c, rot, dinv, neox, dp, dw, ob);
        else if (g)
            cu_graph_launch(cu, g);
        cu_download(cu, h1, oa, out_b), cu_download(cu, h2, ob, out_b);
        int out_same = memcmp(h1, h2, out_b) == 0, poisoned = 0;
        for (size_t i = 0; i < out_b / 2; i++) poisoned += ((uint16_t *)h2)[i] == 0xffff;
        int ksame = 1, vsame = 1, written = 1;
        cu_download(cu, p1, ka, pool_b), cu_download(cu, p2, kb, pool_b);
        ksame = memcmp(p1, p2, pool_b) == 0;
        for (int r = 0; r < n_rows; r++) /* the new slots hold new keys (not the stale ones) */
            if (wsl[r] >= 0) written &= memcmp(p2 + (size_t)wsl[r] * kvd * eb, pk + (size_t)wsl[r] * kvd * eb,
                                               (size_t)kvd * eb) != 0;
        cu_download(cu, p1, va, pool_b), cu_download(cu, p2, vb, pool_b);
        vsame = memcmp(p1, p2, pool_b) == 0;
        const char *e = cu_sync(cu) ? cu_error(cu) : NULL;
        int ok = out_same && !poisoned && ksame && vsame && written && !e && (pass < 2 || g);
        if (!ok) failures++;
        snprintf(name, sizeof name, "attention+rope %s hd=%d heads=%d/%d rot=%d %s rows=%d max_len=%d: %s", fp8 ? "fp8" : "bf16",
                 hd, nh, nkv, rot, neox ? "neox" : "norm", n_rows, max_len,
                 pass == 0 ? "eager" : pass == 1 ? "eager, bound 4M, merge kernel" : "graph replay");
        printf("%-4s %s: out %s, k pool %s, v pool %s, new slots written %s%s%s\n", ok ? "ok" : "FAIL", name,
               out_same && !poisoned ? "bit-identical" : "DIFFERS", ksame ? "identical" : "DIFFERS",
               vsame ? "identical" : "DIFFERS", written ? "yes" : "NO", pass >= 2 && !g ? " (graph capture failed)" : "",
               e ? e : "");
    }
    if (g) cu_graph_free(g);
    cu_free(cu, dinv), cu_free(cu, ds), cu_free(cu, dro), cu_free(cu, drl), cu_free(cu, dp), cu_free(cu, dw);
    cu_free(cu, ws), cu_free(cu, cnt), cu_free(cu, qa), cu_free(cu, qb), cu_free(cu, ka), cu_free(cu, va);
    cu_free(cu, kb), cu_free(cu, vb), cu_free(cu, oa), cu_free(cu, ob);
    free(perm), free(slots), free(qkv), free(qf), free(pk), free(pv), free(h1), free(h2), free(p1), free(p2);
}

static void test_attention_rope_all(void)
{
    /* lengths across the split-K chunk edges (min_chunk 64, up to 16
     * chunks rounded to 16 keys), a padding row among them */
    const int lens[] = {1, 5000, 0, 63, 64, 65, 129, 1000, 4097, 2};
    const int n = sizeof lens / sizeof lens[0];
    for (int fp8 = 0; fp8 < 2; fp8++)
        for (int hd = 64; hd <= 128; hd *= 2) {
            test_attention_rope(fp8, 8, 8, hd, hd, K_ROPE_NEOX, n, lens);      /* no grouping */
            test_attention_rope(fp8, 32, 8, hd, hd, K_ROPE_NORM, n, lens);     /* GQA 4 */
            test_attention_rope(fp8, 32, 4, hd, hd / 2, K_ROPE_NEOX, n, lens); /* GQA 8, partial rotation */
        }
    const int one[] = {384};
    test_attention_rope(0, 32, 8, 128, 128, K_ROPE_NEOX, 1, one); /* batch 1, the 8B shape */
    test_attention_rope(1, 28, 4, 128, 128, K_ROPE_NEOX, 1, one); /* GQA 7 */
}

static void test_argmax(int n, int v)
{
    float *lf;
    uint16_t *l = rand_bf16((size_t)n * v, 10.0f, &lf);
    for (int t = 0; t < n; t++) l[(size_t)t * v + (size_t)(urand() * v)] = cu_f32_to_bf16(11.0f); /* one max per row */
    uint16_t *dl = dev_copy(l, (size_t)n * v * 2);
    int32_t *di = cu_alloc(cu, n * 4), *got = malloc(n * 4);
    cu_argmax(cu, dl, n, v, di);
    cu_download(cu, got, di, n * 4);
    int bad = 0;
    for (int t = 0; t < n; t++) {
        int best = 0;
        for (int i = 1; i < v; i++)
            if (cu_bf16_to_f32(l[(size_t)t * v + i]) > cu_bf16_to_f32(l[(size_t)t * v + best])) best = i;
        bad += got[t] != best;
    }
    const char *e = cu_sync(cu) ? cu_error(cu) : NULL;
    if (bad || e) failures++;
    printf("%-4s argmax n=%d v=%d: %d rows differ%s\n", bad || e ? "FAIL" : "ok", n, v, bad, e ? e : "");
    cu_free(cu, dl), cu_free(cu, di);
    free(l), free(lf), free(got);
}

/* ---- the overlap scheduler's ops (kernels/cuda/cuda_overlap.cu) ----
 * pick_tokens against its definition, then a download_async into pinned
 * memory that an event wait makes valid: two launches' ids in flight. */
static void test_pick_tokens(int n, int n_prev) /* n_prev <= n */
{
    int32_t *tok = malloc(n * 4), *src = malloc(n * 4), *prev = malloc(n_prev * 4), *got = malloc(n * 4);
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(urand() * 100000), src[i] = urand() < 0.5 ? (int)(urand() * n_prev) : -1;
    for (int i = 0; i < n_prev; i++) prev[i] = 200000 + i;
    int32_t *dt = dev_copy(tok, n * 4), *ds = dev_copy(src, n * 4), *dp = dev_copy(prev, n_prev * 4);
    int32_t *pin[2] = {cu_host_alloc(cu, n * 4), cu_host_alloc(cu, n * 4)};
    void *ev[2] = {cu_event_new(cu), cu_event_new(cu)};
    cu_pick_tokens(cu, dt, ds, dp, n);
    cu_download_async(cu, pin[0], dt, n * 4);
    cu_event_record(cu, ev[0]);
    /* a second launch in flight: the picked tokens picked again from themselves */
    cu_pick_tokens(cu, dp, ds, dt, n < n_prev ? n : n_prev);
    cu_download_async(cu, pin[1], dp, n_prev * 4 < n * 4 ? n_prev * 4 : n * 4);
    cu_event_record(cu, ev[1]);
    int w0 = cu_event_wait(cu, ev[0]);
    memcpy(got, pin[0], n * 4);
    int w1 = cu_event_wait(cu, ev[1]);
    int bad = 0, bad2 = 0;
    for (int i = 0; i < n; i++) bad += got[i] != (src[i] >= 0 ? prev[src[i]] : tok[i]);
    for (int i = 0; i < n && i < n_prev; i++) bad2 += pin[1][i] != (src[i] >= 0 ? got[src[i]] : prev[i]);
    const char *e = w0 || w1 || cu_sync(cu) ? cu_error(cu) : NULL;
    if (bad || bad2 || e) failures++;
    printf("%-4s pick_tokens n=%d prev=%d + download_async/events: %d, %d rows differ%s\n",
           bad || bad2 || e ? "FAIL" : "ok", n, n_prev, bad, bad2, e ? e : "");
    cu_event_free(cu, ev[0]), cu_event_free(cu, ev[1]);
    cu_host_free(cu, pin[0]), cu_host_free(cu, pin[1]);
    cu_free(cu, dt), cu_free(cu, ds), cu_free(cu, dp);
    free(tok), free(src), free(prev), free(got);
}

/* upload_async from pinned staging of two parities, as model_dev.c stages
 * a step's index arrays: launch k writes parity k % 2 only after waiting
 * launch k - 2's event; every upload lands whole, in stream order. */
static void test_upload_async(int n, int launches)
{
    int32_t *pin[2] = {cu_host_alloc(cu, n * 4), cu_host_alloc(cu, n * 4)}, *back = malloc(n * 4);
    int32_t *dv = cu_alloc(cu, n * 4);
    void *ev[2] = {cu_event_new(cu), cu_event_new(cu)};
    int bad = 0;
    for (int k = 0; k < launches; k++) {
        int p = k & 1;
        if (k >= 2 && cu_event_wait(cu, ev[p])) break;
        for (int i = 0; i < n; i++) pin[p][i] = k * 7 + i;
        cu_upload_async(cu, dv, pin[p], n * 4);
        cu_event_record(cu, ev[p]);
        if (k % 3 == 2) { /* now and then the host reads one back (a sync) */
            cu_download(cu, back, dv, n * 4);
            for (int i = 0; i < n; i++) bad += back[i] != k * 7 + i;
        }
    }
    const char *e = cu_sync(cu) ? cu_error(cu) : NULL;
    if (bad || e) failures++;
    printf("%-4s upload_async n=%d x%d launches, two parities: %d values differ%s\n", bad || e ? "FAIL" : "ok", n,
           launches, bad, e ? e : "");
    cu_event_free(cu, ev[0]), cu_event_free(cu, ev[1]);
    cu_host_free(cu, pin[0]), cu_host_free(cu, pin[1]);
    cu_free(cu, dv);
    free(back);
}

/* ---- sampling (kernels/cuda/cuda_sample.cu) vs the reference device backend --------
 *
 * The same rows and parameters through cu_sample and devref's sample op.
 * Ids must be equal except where the reference itself moves to the GPU's id
 * when u, top_p or min_p moves by 1e-6 (CUDA's expf is within 2 ulp of
 * glibc's and the sums run in another order: a boundary within rounding);
 * those are counted, not failed. Top-n ids equal, logprobs within 1e-4. */

typedef struct {
    int n_rows, ld, n;
    float *logits;
    KDevSampleRow *rows;
    KDevPenalty *pen;
    KDevBias *bias;
    uint32_t *allow;
    int n_pen, n_bias, n_allow;
} SampleCase;

static void sample_case(SampleCase *c, int n_rows, int n, int ld)
{
    static const float temps[] = {0.0f, 0.4f, 0.7f, 1.0f, 1.5f}, top_ps[] = {1.0f, 0.95f, 0.8f, 0.3f};
    static const float min_ps[] = {0.0f, 0.0f, 0.02f, 0.2f};
    static const int top_ks[] = {0, 0, 1, 20, 50, 1000};
    int words = (n + 31) / 32;
    c->n_rows = n_rows, c->n = n, c->ld = ld;
    c->logits = malloc((size_t)n_rows * ld * sizeof *c->logits);
    c->rows = calloc((size_t)n_rows, sizeof *c->rows);
    c->pen = malloc((size_t)n_rows * 64 * sizeof *c->pen);
    c->bias = malloc((size_t)n_rows * 4 * sizeof *c->bias);
    c->allow = malloc((size_t)n_rows * words * sizeof *c->allow);
    c->n_pen = c->n_bias = c->n_allow = 0;
    for (int r = 0; r < n_rows; r++) {
        float *l = c->logits + (size_t)r * ld;
        int shape = (int)(urand() * 3);
        for (int i = 0; i < ld; i++) {
            double u = urand();
            l[i] = shape == 0 ? (float)((u * 2 - 1) * 3) : shape == 1 ? (float)((u * 2 - 1) * 15)
                                                                      : (float)floor(u * 8) * 0.25f;
        }
        KDevSampleRow *p = &c->rows[r];
        p->u = urand();
        p->temperature = temps[(int)(urand() * 5)];
        p->greedy = p->temperature == 0.0f || urand() < 0.1;
        if (p->temperature == 0.0f) p->temperature = 1.0f;
        p->top_k = top_ks[(int)(urand() * 6)];
        p->top_p = top_ps[(int)(urand() * 4)];
        p->min_p = min_ps[(int)(urand() * 4)];
        p->repetition_penalty = urand() < 0.5 ? 1.0f : 1.25f;
        p->frequency_penalty = urand() < 0.3 ? 0.5f : 0.0f;
        p->presence_penalty = urand() < 0.3 ? 0.3f : 0.0f;
        p->pen_off = c->n_pen;
        p->n_pen = urand() < 0.5 ? (int)(urand() * 64) : 0;
        for (int j = 0; j < p->n_pen; j++)   /* distinct ids: j-th of a stride */
            c->pen[c->n_pen + j] = (KDevPenalty){(int32_t)(((size_t)j * 7919 + r) % (size_t)n), (int32_t)(urand() * 3), 0};
        c->n_pen += p->n_pen;
        p->bias_off = c->n_bias;
        p->n_bias = (int)(urand() * 4);
        for (int j = 0; j < p->n_bias; j++)
            c->bias[c->n_bias + j] = (KDevBias){(int32_t)(urand() * n), (float)(urand() * 8 - 3), 0};
        c->n_bias += p->n_bias;
        p->allow_off = -1;
        if (urand() < 0.3) {
            p->allow_off = c->n_allow;
            double dens = urand() < 0.5 ? 0.5 : 0.02;
            for (int w = 0; w < words; w++) {
                uint32_t x = 0;
                for (int b = 0; b < 32; b++) x |= (uint32_t)(urand() < dens) << b;
                c->allow[c->n_allow + w] = x;
            }
            c->n_allow += words;
        }
        p->lp_mode = (int)(urand() * 3);
        p->n_top = p->lp_mode ? (int)(urand() * (K_SAMPLE_TOP_MAX + 1)) : 0;
    }
}

static void sample_case_free(SampleCase *c)
{
    free(c->logits), free(c->rows), free(c->pen), free(c->bias), free(c->allow);
}

typedef struct {
    int32_t *id, *nt, *tid;
    float *lp, *tlp;
} SampleOut;

static void sample_out_new(SampleOut *o, int n_rows)
{
    o->id = malloc((size_t)n_rows * 4), o->nt = malloc((size_t)n_rows * 4), o->lp = malloc((size_t)n_rows * 4);
    o->tid = malloc((size_t)n_rows * K_SAMPLE_TOP_MAX * 4), o->tlp = malloc((size_t)n_rows * K_SAMPLE_TOP_MAX * 4);
}

static void sample_out_free(SampleOut *o) { free(o->id), free(o->nt), free(o->lp), free(o->tid), free(o->tlp); }

/* The reference on rows [r0, r0 + nr) of c (copies: the op writes its inputs). */
static void sample_ref(KBackend *dref, const SampleCase *c, int r0, int nr, const KDevSampleRow *rows, SampleOut *o)
{
    float *l = malloc((size_t)nr * c->ld * sizeof *l);
    KDevPenalty *pen = malloc((size_t)(c->n_pen + 1) * sizeof *pen);
    KDevBias *bias = malloc((size_t)(c->n_bias + 1) * sizeof *bias);
    memcpy(l, c->logits + (size_t)r0 * c->ld, (size_t)nr * c->ld * sizeof *l);
    memcpy(pen, c->pen, (size_t)c->n_pen * sizeof *pen);
    memcpy(bias, c->bias, (size_t)c->n_bias * sizeof *bias);
    KDevSample ks = {l, c->ld, c->n, nr, rows, pen, bias, c->allow, o->id, o->lp, o->nt, o->tid, o->tlp};
    dref->dev->sample(dref->ctx, &ks);
    free(l), free(pen), free(bias);
}

static void test_sample(int n_rows, int n, int ld)
{
    char err[256];
    KBackend *dref = cpu_devref_backend_new(err, sizeof err);
    SampleCase c;
    sample_case(&c, n_rows, n, ld);
    SampleOut g, w;
    sample_out_new(&g, n_rows);
    sample_out_new(&w, n_rows);
    size_t lb = (size_t)n_rows * ld * 4;
    float *dl = dev_copy(c.logits, lb);
    KDevSampleRow *drows = dev_copy(c.rows, (size_t)n_rows * sizeof *drows);
    KDevPenalty *dpen = dev_copy(c.pen, (size_t)(c.n_pen + 1) * sizeof *dpen);
    KDevBias *dbias = dev_copy(c.bias, (size_t)(c.n_bias + 1) * sizeof *dbias);
    uint32_t *dallow = dev_copy(c.allow, (size_t)(c.n_allow + 1) * 4);
    int32_t *did = cu_alloc(cu, (size_t)n_rows * 4), *dnt = cu_alloc(cu, (size_t)n_rows * 4);
    int32_t *dtid = cu_alloc(cu, (size_t)n_rows * K_SAMPLE_TOP_MAX * 4);
    float *dlp = cu_alloc(cu, (size_t)n_rows * 4), *dtlp = cu_alloc(cu, (size_t)n_rows * K_SAMPLE_TOP_MAX * 4);
    KDevSample ks = {dl, ld, n, n_rows, drows, dpen, dbias, dallow, did, dlp, dnt, dtid, dtlp};
    cu_sample(cu, &ks);
    cu_download(cu, g.id, did, (size_t)n_rows * 4);
    cu_download(cu, g.nt, dnt, (size_t)n_rows * 4);
    cu_download(cu, g.lp, dlp, (size_t)n_rows * 4);
    cu_download(cu, g.tid, dtid, (size_t)n_rows * K_SAMPLE_TOP_MAX * 4);
    cu_download(cu, g.tlp, dtlp, (size_t)n_rows * K_SAMPLE_TOP_MAX * 4);
    const char *e = cu_sync(cu) ? cu_error(cu) : NULL;
    sample_ref(dref, &c, 0, n_rows, c.rows, &w);
    int bad = 0, boundary = 0, lp_bad = 0, top_bad = 0;
    double lp_err = 0;
    for (int r = 0; r < n_rows; r++) {
        const KDevSampleRow *p = &c.rows[r];
        if (g.id[r] != w.id[r]) {
            /* a boundary within rounding: the reference itself moves there */
            int moved = 0;
            for (int k = 0; k < 6 && !moved; k++) {
                KDevSampleRow q = *p;
                double d = k % 2 ? 1e-6 : -1e-6;
                if (k / 2 == 0) q.u = q.u + d < 0 ? 0 : q.u + d;
                if (k / 2 == 1) q.top_p = (float)(q.top_p + d);
                if (k / 2 == 2) q.min_p = (float)(q.min_p * (1 + d));
                q.pen_off = p->pen_off, q.bias_off = p->bias_off;
                SampleOut one;
                sample_out_new(&one, 1);
                sample_ref(dref, &c, r, 1, &q, &one);
                moved = one.id[0] == g.id[r];
                sample_out_free(&one);
            }
            if (moved) boundary++;
            else bad++;
            continue;
        }
        if (p->lp_mode && g.id[r] >= 0) {
            double d = fabs((double)g.lp[r] - w.lp[r]);
            if (d > lp_err) lp_err = d;
            lp_bad += d > 1e-4;
            if (g.nt[r] != w.nt[r]) top_bad++;
            else
                for (int k = 0; k < g.nt[r]; k++) {
                    size_t at = (size_t)r * K_SAMPLE_TOP_MAX + k;
                    top_bad += g.tid[at] != w.tid[at] || fabs((double)g.tlp[at] - w.tlp[at]) > 1e-4;
                }
        }
    }
    int fail = bad || lp_bad || top_bad || e;
    if (fail) failures++;
    printf("%-4s sample rows=%d n=%d ld=%d: %d ids differ, %d at a rounding boundary, logprob max err %.2g (%d over),"
           " %d top lists differ%s%s\n",
           fail ? "FAIL" : "ok", n_rows, n, ld, bad, boundary, lp_err, lp_bad, top_bad, e ? " " : "", e ? e : "");

    /* speed: typical serving rows (temperature 0.7, top-p 0.9; none asks logprobs) */
    for (int r = 0; r < n_rows; r++) {
        KDevSampleRow *p = &c.rows[r];
        *p = (KDevSampleRow){.u = urand(), .temperature = 0.7f, .top_p = 0.9f, .repetition_penalty = 1.0f,
                             .allow_off = -1};
    }
    cu_upload(cu, drows, c.rows, (size_t)n_rows * sizeof *drows);
    CuTimer *t0 = cu_timer_new(cu), *t1 = cu_timer_new(cu);
    cu_sample(cu, &ks);
    cu_timer_record(cu, t0);
    for (int i = 0; i < 20; i++) cu_sample(cu, &ks);
    cu_timer_record(cu, t1);
    cu_sync(cu);
    printf("     sample rows=%d n=%d (t 0.7, top-p 0.9): %.1f us a call\n", n_rows, n, 1000.0 * cu_timer_ms(t0, t1) / 20);
    ks.n_rows = 1;
    cu_timer_record(cu, t0);
    for (int i = 0; i < 20; i++) cu_sample(cu, &ks);
    cu_timer_record(cu, t1);
    cu_sync(cu);
    printf("     sample rows=1 n=%d (t 0.7, top-p 0.9): %.1f us a call\n", n, 1000.0 * cu_timer_ms(t0, t1) / 20);
    cu_timer_free(t0), cu_timer_free(t1);
    cu_free(cu, dl), cu_free(cu, drows), cu_free(cu, dpen), cu_free(cu, dbias), cu_free(cu, dallow);
    cu_free(cu, did), cu_free(cu, dnt), cu_free(cu, dtid), cu_free(cu, dlp), cu_free(cu, dtlp);
    sample_out_free(&g), sample_out_free(&w);
    sample_case_free(&c);
    dref->destroy(dref->ctx);
}

/* ---- fp8 e4m3 (--quantization fp8, --kv-cache-dtype fp8_e4m3) ----------------
 * The CUDA kernels against devref's ops (kernels/cpu/devref.c), which follow
 * the same rules on the host: quantization bytes compared exactly, outputs
 * by relative error. */

static KBackend *dref;

/* the quantization of weights and of activation rows (bit-exact against
 * k_f32_to_e4m3), then cu_gemm_fp8 in `mode` (+ bias) against devref's
 * matmul of the same F8_E4M3 tensor (rows n > 8: x per token in e4m3) */
static void test_gemm_fp8(int n, int in, int out, int with_bias, CuFp8Mode mode)
{
    float *xf, *wf, *bf;
    uint16_t *x = rand_bf16((size_t)n * in, 1.0f, &xf), *w = rand_bf16((size_t)out * in, 0.05f, &wf);
    uint16_t *b = rand_bf16(out, 0.5f, &bf);
    if (n > 2) memset(x + in, 0, (size_t)in * 2); /* a zero row: scale 1 */
    uint16_t *dx = dev_copy(x, (size_t)n * in * 2), *dw = dev_copy(w, (size_t)out * in * 2), *db = dev_copy(b, out * 2);
    uint8_t *dq = cu_alloc(cu, (size_t)out * in), *dxq = cu_alloc(cu, (size_t)n * in);
    float *dsw = cu_alloc(cu, (size_t)out * 4), *dsx = cu_alloc(cu, (size_t)n * 4);
    uint16_t *dy = dev_poisoned((size_t)n * out);
    cu_quant_fp8(cu, dw, in, out, dq, dsw);
    cu_quant_rows_fp8(cu, dx, in, n, in, dxq, dsx);
    CuFp8 *f8 = cu_fp8_new(cu, mode);
    CuFp8Mode used = CU_FP8_AUTO;
    cu_gemm_fp8(f8, dxq, dsx, n, in, dq, dsw, out, dy, out, &used);
    if (with_bias) cu_add_bias(cu, dy, out, n, out, db);
    uint8_t *q = malloc((size_t)out * in), *xq = malloc((size_t)n * in);
    float *sw = malloc((size_t)out * 4), *sx = malloc((size_t)n * 4);
    cu_download(cu, q, dq, (size_t)out * in);
    cu_download(cu, xq, dxq, (size_t)n * in);
    cu_download(cu, sw, dsw, (size_t)out * 4);
    cu_download(cu, sx, dsx, (size_t)n * 4);
    /* the host's quantization of the same rows */
    uint8_t *hq = malloc((size_t)out * in), *hxq = malloc((size_t)n * in);
    float *hsw = malloc((size_t)out * 4), *hsx = malloc((size_t)n * 4);
    dref->dev->quant_fp8(dref->ctx, w, in, out, hq, hsw);
    dref->dev->quant_fp8(dref->ctx, x, in, n, hxq, hsx);
    int bad_w = memcmp(q, hq, (size_t)out * in) != 0 || memcmp(sw, hsw, (size_t)out * 4) != 0;
    int bad_x = memcmp(xq, hxq, (size_t)n * in) != 0 || memcmp(sx, hsx, (size_t)n * 4) != 0;
    failures += bad_w + bad_x;
    printf("%-4s quant fp8 weights %dx%d and activation rows %dx%d: bytes and scales %s the host's\n",
           bad_w || bad_x ? "FAIL" : "ok", out, in, n, in, bad_w || bad_x ? "DIFFER from" : "equal to");
    KTensor kt = {.dtype = K_DTYPE_F8_E4M3, .ne = {in, out, 1, 1}, .data = q, .scale = sw};
    uint16_t *hy = malloc((size_t)n * out * 2);
    dref->dev->matmul(dref->ctx, &kt, with_bias ? b : NULL, x, in, n, hy, out);
    float *want = malloc((size_t)n * out * 4), *got = back_f32(dy, (size_t)n * out);
    for (size_t i = 0; i < (size_t)n * out; i++) want[i] = cu_bf16_to_f32(hy[i]);
    char name[112];
    snprintf(name, sizeof name, "gemm fp8 %s n=%d in=%d out=%d%s", used == CU_FP8_OUTER ? "outer-vec" : "epilogue", n,
             in, out, with_bias ? " +bias" : "");
    report(name, got, want, (size_t)n * out, 1e-2);
    cu_fp8_free(f8);
    cu_free(cu, dx), cu_free(cu, dw), cu_free(cu, db), cu_free(cu, dq), cu_free(cu, dxq), cu_free(cu, dsw);
    cu_free(cu, dsx), cu_free(cu, dy);
    free(x), free(w), free(b), free(xf), free(wf), free(bf), free(q), free(xq), free(sw), free(sx), free(hq), free(hxq);
    free(hsw), free(hsx), free(hy), free(want), free(got);
}

/* rope_kv into fp8 pools against devref's rope_kv_fp8 (the same bf16
 * rounding, then e4m3): q rows and the pools' values by relative error, the
 * pool bytes counted where they differ (a bf16 tie of sincosf vs the host's
 * cosf/sinf may move one value by one e4m3 step) */
static void test_rope_kv_fp8(int n, int nh, int nkv, int hd, int rot, KRopeStyle style)
{
    int row = (nh + 2 * nkv) * hd, kvd = nkv * hd, n_slots = 2 * n + 3;
    float *qf;
    uint16_t *qkv = rand_bf16((size_t)n * row, 3.0f, &qf);
    int32_t *pos = malloc(n * 4), *ws = malloc(n * 4);
    for (int i = 0; i < n; i++) pos[i] = (int32_t)(urand() * 9000), ws[i] = i % 4 == 3 ? -1 : 2 * i + 1;
    float *inv = malloc((size_t)rot / 2 * 4);
    for (int p = 0; p < rot / 2; p++) inv[p] = powf(10000.0f, -2.0f * p / rot);
    uint16_t *dq = dev_copy(qkv, (size_t)n * row * 2);
    uint8_t *dk = cu_alloc(cu, (size_t)n_slots * kvd), *dv = cu_alloc(cu, (size_t)n_slots * kvd);
    cu_memset(cu, dk, 0, (size_t)n_slots * kvd), cu_memset(cu, dv, 0, (size_t)n_slots * kvd);
    int32_t *dp = dev_copy(pos, n * 4), *dws = dev_copy(ws, n * 4);
    float *dinv = dev_copy(inv, (size_t)rot / 2 * 4);
    cu_rope_kv_write_fp8(cu, dq, n, nh, nkv, hd, rot, dinv, style == K_ROPE_NEOX, dp, dws, dk, dv);
    float *gq = back_f32(dq, (size_t)n * row);
    uint8_t *gk = malloc((size_t)n_slots * kvd), *gv = malloc((size_t)n_slots * kvd);
    cu_download(cu, gk, dk, (size_t)n_slots * kvd), cu_download(cu, gv, dv, (size_t)n_slots * kvd);
    uint8_t *hk = calloc((size_t)n_slots, kvd), *hv = calloc((size_t)n_slots, kvd);
    dref->dev->rope_kv_fp8(dref->ctx, qkv, n, nh, nkv, hd, rot, inv, style, pos, ws, hk, hv);
    float *hqf = malloc((size_t)n * row * 4);
    for (size_t i = 0; i < (size_t)n * row; i++) hqf[i] = cu_bf16_to_f32(qkv[i]);
    size_t nk = (size_t)n_slots * kvd;
    float *a = malloc(nk * 4 * 2), *bq = malloc(nk * 4 * 2);
    int diff = 0;
    for (size_t i = 0; i < nk; i++) {
        a[i] = e4m3_value(gk[i]), bq[i] = e4m3_value(hk[i]);
        a[nk + i] = e4m3_value(gv[i]), bq[nk + i] = e4m3_value(hv[i]);
        diff += (gk[i] != hk[i]) + (gv[i] != hv[i]);
    }
    char name[112];
    /* q: rows' q heads only (the k/v part of qkv is left as it was) */
    float *gq2 = malloc((size_t)n * nh * hd * 4), *hq2 = malloc((size_t)n * nh * hd * 4);
    for (int t = 0; t < n; t++) {
        memcpy(gq2 + (size_t)t * nh * hd, gq + (size_t)t * row, (size_t)nh * hd * 4);
        memcpy(hq2 + (size_t)t * nh * hd, hqf + (size_t)t * row, (size_t)nh * hd * 4);
    }
    snprintf(name, sizeof name, "rope_kv fp8 q n=%d heads=%d/%d hd=%d rot=%d", n, nh, nkv, hd, rot);
    report(name, gq2, hq2, (size_t)n * nh * hd, 1e-2);
    snprintf(name, sizeof name, "rope_kv fp8 k|v pools (%d of %zu bytes differ)", diff, 2 * nk);
    report(name, a, bq, 2 * nk, 1e-2);
    if (diff > (int)(2 * nk / 1000) + 2) {
        failures++;
        printf("FAIL   ... more than 0.1%% of the pool bytes differ\n");
    }
    cu_free(cu, dq), cu_free(cu, dk), cu_free(cu, dv), cu_free(cu, dp), cu_free(cu, dws), cu_free(cu, dinv);
    free(qkv), free(qf), free(pos), free(ws), free(inv), free(gq), free(gk), free(gv), free(hk), free(hv), free(hqf);
    free(a), free(bq), free(gq2), free(hq2);
}

/* the split-K decode kernel and the mma prefill kernel over fp8 pools
 * (random e4m3 K/V, shuffled slots) against devref's attention with kv_fp8 */
static void test_attention_fp8(int nh, int nkv, int hd, int n_seqs, const int *prefix, const int *n_new, int decode)
{
    int kvd = nkv * hd, ldq = (nh + 2 * nkv) * hd, total_ctx = 0, n_rows = 0, max_len = 0;
    for (int s = 0; s < n_seqs; s++) total_ctx += prefix[s] + n_new[s], n_rows += n_new[s];
    int n_slots = total_ctx + 17;
    int32_t *perm = malloc(n_slots * 4);
    for (int i = 0; i < n_slots; i++) perm[i] = i;
    for (int i = n_slots - 1; i > 0; i--) {
        int j = (int)(urand() * (i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int32_t *slots = malloc(total_ctx * 4), *roff = malloc(n_rows * 4), *rlen = malloc(n_rows * 4);
    int32_t *tiles = malloc(((size_t)n_rows + n_seqs) * 4 * sizeof *tiles);
    int so = 0, r = 0, n_tiles = 0, tr = cu_attn_tile_rows();
    for (int s = 0; s < n_seqs; s++) {
        int nc = prefix[s] + n_new[s];
        for (int t = 0; t < nc; t++) slots[so + t] = perm[so + t];
        for (int j = 0; j < n_new[s]; j++) {
            roff[r + j] = so, rlen[r + j] = prefix[s] + j + 1;
            if (rlen[r + j] > max_len) max_len = rlen[r + j];
        }
        for (int t0 = 0; t0 < n_new[s]; t0 += tr, n_tiles++) {
            tiles[4 * n_tiles] = r + t0;
            tiles[4 * n_tiles + 1] = n_new[s] - t0 < tr ? n_new[s] - t0 : tr;
            tiles[4 * n_tiles + 2] = so;
            tiles[4 * n_tiles + 3] = prefix[s] + t0 + 1;
        }
        so += nc;
        r += n_new[s];
    }
    float *qf;
    uint16_t *q = rand_bf16((size_t)n_rows * ldq, 2.0f, &qf);
    uint8_t *k = malloc((size_t)n_slots * kvd), *v = malloc((size_t)n_slots * kvd);
    for (size_t i = 0; i < (size_t)n_slots * kvd; i++)
        k[i] = k_f32_to_e4m3((float)((2 * urand() - 1) * 2.0)), v[i] = k_f32_to_e4m3((float)(2 * urand() - 1));
    uint16_t *dq = dev_copy(q, (size_t)n_rows * ldq * 2), *dout = dev_poisoned((size_t)n_rows * nh * hd);
    uint8_t *dk = dev_copy(k, (size_t)n_slots * kvd), *dv = dev_copy(v, (size_t)n_slots * kvd);
    int32_t *ds = dev_copy(slots, total_ctx * 4), *dro = dev_copy(roff, n_rows * 4), *drl = dev_copy(rlen, n_rows * 4);
    int32_t *dt = dev_copy(tiles, (size_t)n_tiles * 4 * sizeof *tiles);
    float scale = 1.0f / sqrtf((float)hd);
    uint16_t *hout = malloc((size_t)n_rows * nh * hd * 2);
    KDevAttn a = {.q = q, .ldq = ldq, .out = hout, .k_pool = k, .v_pool = v, .n_rows = n_rows, .n_head = nh,
                  .n_head_kv = nkv, .head_dim = hd, .scale = scale, .slots = slots, .row_off = roff, .row_len = rlen,
                  .max_len = max_len, .kv_fp8 = 1};
    dref->dev->attention(dref->ctx, &a);
    float *want = malloc((size_t)n_rows * nh * hd * 4);
    for (size_t i = 0; i < (size_t)n_rows * nh * hd; i++) want[i] = cu_bf16_to_f32(hout[i]);
    char name[112];
    if (decode) {
        int ms = 8;
        float *ws = cu_alloc(cu, cu_decode_ws_bytes(n_rows, nh, hd, ms));
        int *cnt = cu_alloc(cu, (size_t)n_rows * nkv * sizeof(int));
        cu_memset(cu, cnt, 0, (size_t)n_rows * nkv * sizeof(int));
        cu_attention_decode_fp8(cu, dq, ldq, n_rows, nh, nkv, hd, scale, dk, dv, ds, dro, drl, max_len, ms, 64, ws, cnt,
                                dout);
        float *got = back_f32(dout, (size_t)n_rows * nh * hd);
        snprintf(name, sizeof name, "attention fp8 KV split-K heads=%d/%d hd=%d rows=%d", nh, nkv, hd, n_rows);
        report(name, got, want, (size_t)n_rows * nh * hd, 1e-2);
        free(got);
        cu_free(cu, ws), cu_free(cu, cnt);
    }
    for (int hpb = 1; hpb <= 2; hpb++) {
        if (hpb == 2 && (nh / nkv) % 2) continue;
        cu_memset(cu, dout, 0xff, (size_t)n_rows * nh * hd * 2);
        cu_attention_prefill_mma_fp8(cu, dq, ldq, nh, nkv, hd, scale, dk, dv, ds, dt, n_tiles, dout, hpb,
                                     CU_PREFILL_EXACT_EXP);
        float *got = back_f32(dout, (size_t)n_rows * nh * hd);
        snprintf(name, sizeof name, "attention fp8 KV mma%d heads=%d/%d hd=%d rows=%d tiles=%d", hpb, nh, nkv, hd,
                 n_rows, n_tiles);
        report(name, got, want, (size_t)n_rows * nh * hd, 1e-2);
        free(got);
    }
    cu_free(cu, dq), cu_free(cu, dout), cu_free(cu, dk), cu_free(cu, dv), cu_free(cu, ds), cu_free(cu, dro);
    cu_free(cu, drl), cu_free(cu, dt);
    free(perm), free(slots), free(roff), free(rlen), free(tiles), free(q), free(qf), free(k), free(v), free(hout);
    free(want);
}

static void test_fp8(void)
{
    char err[256];
    dref = cpu_devref_backend_new(err, sizeof err);
    if (!dref) {
        failures++;
        printf("FAIL devref backend: %s\n", err);
        return;
    }
    for (int m = CU_FP8_OUTER; m <= CU_FP8_EPILOGUE; m++) {
        /* small enough for devref's one-thread reference (the first call
         * ran 8G multiply-adds there and hit its 45 s limit) */
        test_gemm_fp8(37, 4096, 256, 1, (CuFp8Mode)m);
        test_gemm_fp8(256, 1024, 512, 0, (CuFp8Mode)m);
        test_gemm_fp8(300, 2048, 128, 0, (CuFp8Mode)m);
        test_gemm_fp8(9, 576, 960, 1, (CuFp8Mode)m); /* SmolLM2-135M's qkv */
    }
    test_rope_kv_fp8(13, 32, 8, 128, 128, K_ROPE_NEOX);
    test_rope_kv_fp8(6, 14, 2, 64, 32, K_ROPE_NORM);
    int p1[] = {1500, 700, 3, 0}, n1[] = {1, 1, 1, 1};
    test_attention_fp8(32, 8, 128, 4, p1, n1, 1); /* decode rows, split */
    int p2[] = {100, 0, 37}, n2[] = {5, 70, 1};
    test_attention_fp8(32, 8, 128, 3, p2, n2, 0); /* cached prefix + new rows */
    int p3[] = {130, 64}, n3[] = {200, 3};
    test_attention_fp8(32, 8, 64, 2, p3, n3, 0); /* head_dim 64 across tile edges */
    int p4[] = {300, 9}, n4[] = {1, 1};
    test_attention_fp8(28, 4, 128, 2, p4, n4, 1); /* GQA 7 */
    dref->destroy(dref->ctx);
}

int main(int argc, char **argv)
{
    char err[256];
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    rng_state = seed * 2654435761u + 1;
    cu = cu_ctx_new(err, sizeof err);
    if (!cu) {
        fprintf(stderr, "test_cuda_ops: %s\n", err);
        return 1;
    }
    ref = cpu_ref_backend_new(err, sizeof err);
    if (!ref) {
        fprintf(stderr, "test_cuda_ops: %s\n", err);
        return 1;
    }
    printf("test_cuda_ops on %s, seed %llu\n", cu_device_name(cu), (unsigned long long)seed);
    test_gemm(1, 4096, 1024, 4096);
    test_gemm(7, 1024, 3072, 1024);
    test_gemm(130, 512, 768, 1536); /* x rows inside a wider buffer */
    test_gemv(1, 4096, 6144, 4096, 0, 0, 0); /* the backend's choice of split and vec */
    test_gemv(3, 4096, 1000, 6144, 1, 0, 0); /* a partial last tile of rows, x inside a wider buffer */
    test_gemv(8, 14336, 512, 14336, 0, 0, 0);
    test_gemv(5, 3584, 4608, 3584, 1, 0, 0); /* Qwen2.5-7B's qkv with its bias */
    test_gemv(2, 96, 40, 96, 1, 0, 0);
    for (int vec = 1; vec <= 4; vec *= 2) /* every layout, on a row length that ends inside a step */
        for (int split = 1; split <= 8; split *= 2) test_gemv(7, 1000, 77, 1008, 1, split, vec);
    for (int vec = 1; vec <= 8; vec *= 2) test_gemv(6, 1000, 77, 1008, 1, 0, CU_GEMV_PREFETCH | vec);
    test_gemv(7, 1000, 77, 1008, 1, 0, CU_GEMV_STAGED);
    test_gemv(1, 14336, 4096, 14336, 0, 0, CU_GEMV_STAGED);
    test_gemv(4, 3584, 4608, 3584, 1, 0, CU_GEMV_STAGED);
    test_gemv(8, 4096, 1000, 6144, 0, 0, CU_GEMV_STAGED);
    /* the row-stream layout: every (R, U, KS) on a row length that ends
     * inside a step and a partial last row group; the 8B shapes */
    {
        const int ru[][2] = {{1, 8}, {2, 8}, {4, 4}, {2, 4}};
        for (int ks = 1; ks <= 4; ks *= 2)
            for (int i = 0; i < 4; i++) {
                test_gemv_rows(1, 1000, 77, 1008, 1, CU_GR(ru[i][0], ru[i][1], ks), CU_GR(1, 8, ks));
                test_gemv_rows(i < 2 ? 7 : 3, 1000, 77, 1008, 1, CU_GR(ru[i][0], ru[i][1], ks), CU_GR(2, 4, ks));
            }
        test_gemv_rows(1, 4096, 6144, 4096, 0, CU_GR(2, 8, 1) | CU_GR_PDL, CU_GR(4, 4, 1));
        test_gemv_rows(2, 14336, 4096, 14336, 0, CU_GR(1, 8, 2), CU_GR(2, 4, 2));
        test_gemv_rows(8, 4096, 1000, 6144, 1, CU_GR(2, 8, 1), CU_GR(1, 8, 1));
        test_gemv_rows(5, 3584, 4608, 3584, 1, CU_GR(2, 4, 4), 0); /* Qwen2.5-7B's qkv with its bias */
        test_gemv_rows(4, 4096, 20011, 4096, 0, CU_GR(2, 8, 1) | CU_GR_PDL, 0); /* a wide head, odd rows */
        test_gemv_rows(2, 96, 40, 96, 1, CU_GR(1, 8, 4), 0);
        test_gemv_rows_pdl(1, 4096, 6144);
        test_gemv_rows_pdl(3, 4096, 4096);
    }
    /* gate|up + swiglu fused: the 8B shape with the table's layout (r1u8
     * k1) and others of every KS, SmolLM2-135M's, and a row length that
     * ends inside a step */
    {
        const SwPair p8b[] = {
            {CU_GR(1, 8, 1) | CU_GR_PDL, CU_GR(2, 8, 1) | CU_GR_PDL | CU_GR_TRIGGER},
            {CU_GR(1, 8, 1), CU_GR(2, 4, 1)},
            {CU_GR(2, 8, 1), CU_GR(4, 4, 1)},
            {CU_GR(1, 8, 2), CU_GR(2, 8, 2)},
            {CU_GR(2, 4, 4), CU_GR(4, 4, 4) | CU_GR_TRIGGER},
        };
        test_gemv_swiglu(4096, 14336, 4096, p8b, 5);
        SwPair psm[9];
        int np = 0;
        for (int ks = 1; ks <= 4; ks *= 2) {
            psm[np++] = (SwPair){CU_GR(1, 8, ks), CU_GR(2, 8, ks)};
            psm[np++] = (SwPair){CU_GR(2, 4, ks), CU_GR(2, 4, ks) | CU_GR_TRIGGER};
            psm[np++] = (SwPair){CU_GR(4, 4, ks), CU_GR(4, 4, ks)};
        }
        test_gemv_swiglu(576, 1536, 576, psm, np);
        test_gemv_swiglu(1000, 77 * 8, 1008, psm, np);
    }
    test_gemv_fp8(1, 4096, 6144, 0);
    test_gemv_fp8(5, 3584, 1000, 1);
    test_gemv_fp8(8, 14336, 256, 0);
    test_gemv_fp8(2, 48, 33, 1);
    test_embed();
    test_rmsnorm(5, 4096, 0);
    test_rmsnorm(9, 896, 1);
    test_rope_kv(13, 32, 8, 128, 500000.0f);
    test_rope_kv(6, 14, 2, 64, 1000000.0f);
    test_rope_kv_f(13, 32, 8, 128, 128, K_ROPE_NEOX);
    test_rope_kv_f(5, 14, 2, 64, 32, K_ROPE_NORM); /* partial rotation */
    test_swiglu(3, 14336);
    test_swiglu(17, 4864);
    int p1[] = {0}, n1[] = {64};
    test_attention(32, 8, 128, 1, p1, n1, 1); /* prefill, no cache */
    int p2[] = {100, 0, 37}, n2[] = {5, 33, 1};
    test_attention(32, 8, 128, 3, p2, n2, 1); /* cached prefix + new rows, mixed */
    int p3[] = {1500, 700}, n3[] = {1, 1};
    test_attention(32, 8, 128, 2, p3, n3, 6); /* decode, split-K */
    int p4[] = {300, 9}, n4[] = {2, 40};
    test_attention(28, 4, 128, 2, p4, n4, 3); /* Qwen2.5-7B's 7 query heads per kv head, split */
    int p5[] = {77}, n5[] = {19};
    test_attention(14, 2, 64, 1, p5, n5, 1); /* head_dim 64 */
    int p6[] = {0}, n6[] = {300};
    test_attention(32, 8, 128, 1, p6, n6, 1); /* prefill over 5 tiles, the last partial */
    int p7[] = {130, 0, 64}, n7[] = {200, 129, 3};
    test_attention(32, 8, 64, 3, p7, n7, 1); /* head_dim 64, cached prefixes across tile edges */
    int p8[] = {517}, n8[] = {190};
    test_attention(28, 4, 128, 1, p8, n8, 1); /* Qwen2.5-7B's GQA 7 over a long prefix */
    int p16[] = {8191, 4000, 1, 0}, n16[] = {1, 1, 1, 1};
    test_attention(32, 8, 128, 4, p16, n16, 12); /* long decode rows, split-K */
    int p17[] = {2047, 33}, n17[] = {1, 3};
    test_attention(16, 16, 64, 2, p17, n17, 4); /* no grouping (1 query head per kv head), head_dim 64 */
    int p18[] = {3000, 65}, n18[] = {1, 1};
    test_attention(16, 2, 128, 2, p18, n18, 8); /* 8 query heads per kv head */
    int p19[] = {1100}, n19[] = {2};
    test_attention(32, 8, 64, 1, p19, n19, 3); /* head_dim 64, GQA 4 (llama-3.2-1b) */
    test_padding_rows();
    test_attention_rope_all();
    test_fp8();
    test_argmax(4, 128256);
    test_pick_tokens(256, 200);
    test_pick_tokens(1000, 64);
    test_upload_async(4096, 12);
    test_sample(64, 128256, 128256);
    test_sample(200, 3000, 3008);      /* a padded row: ids past n are never picked */
    printf("test_cuda_ops: %d failure(s)\n", failures);
    ref->destroy(ref->ctx);
    cu_ctx_free(cu);
    return failures ? 1 : 0;
}
