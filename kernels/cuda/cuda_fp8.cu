/*
 * kernels/cuda/cuda_fp8.cu — per-token activation quantization and the fp8
 * e4m3 GEMM through cuBLASLt (kernels/cuda/cuda_fp8.h says what they
 * compute).
 *
 * Column-major, as cu_gemm_bf16: y[n][out] = x[n][in] · W[out][in]ᵀ is the
 * out × n matrix op(A)·B with A = W seen as in × out (transposed: the "TN"
 * form cuBLASLt requires of fp8 inputs), B = xq as in × n, D = y as out × n.
 * A's outer-vector scales are per output channel (sw), B's per token (sx).
 */
#include "kernels/cuda/cuda_fp8.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef __nv_bfloat16 bf16;

enum { FP8_PLANS = 256 };

typedef struct {
    int m, n, k, ldc;
    CuFp8Mode mode;             /* what it runs: OUTER or EPILOGUE */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} Fp8Plan;

struct CuFp8 {
    CuCtx *cu;
    CuFp8Mode mode;
    Fp8Plan plans[FP8_PLANS];
    int n_plans;
};

static void plan_destroy(Fp8Plan *p)
{
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->c) cublasLtMatrixLayoutDestroy(p->c);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

extern "C" CuFp8 *cu_fp8_new(CuCtx *c, CuFp8Mode mode)
{
    CuFp8 *f = (CuFp8 *)calloc(1, sizeof *f);
    if (!f) return NULL;
    f->cu = c;
    f->mode = mode;
    return f;
}

extern "C" void cu_fp8_free(CuFp8 *f)
{
    if (!f) return;
    for (int i = 0; i < f->n_plans; i++) plan_destroy(&f->plans[i]);
    free(f);
}

/* A plan for (m, n, k, ldc) with the scales applied as `mode` says (OUTER
 * or EPILOGUE); 0, or -1 when cuBLASLt has no algorithm for it. */
static int plan_make(CuFp8 *f, Fp8Plan *p, int m, int n, int k, int ldc, CuFp8Mode mode)
{
    memset(p, 0, sizeof *p);
    p->m = m, p->n = n, p->k = k, p->ldc = ldc, p->mode = mode;
    cublasLtHandle_t lt = (cublasLtHandle_t)cu_lt_handle(f->cu);
    size_t ws_bytes;
    (void)cu_lt_workspace(f->cu, &ws_bytes);
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    if (cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return -1;
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (mode == CU_FP8_OUTER) {
        int32_t sm = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
        if (cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &sm, sizeof sm) ||
            cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &sm, sizeof sm)) {
            plan_destroy(p);
            return -1;
        }
    }
    cublasLtMatrixLayoutCreate(&p->a, CUDA_R_8F_E4M3, k, m, k);
    cublasLtMatrixLayoutCreate(&p->b, CUDA_R_8F_E4M3, k, n, k);
    cublasLtMatrixLayoutCreate(&p->c, CUDA_R_16BF, m, n, ldc);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes);
    cublasLtMatmulHeuristicResult_t h;
    int got = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, p->op, p->a, p->b, p->c, p->c, pref, 1, &h, &got);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || got == 0) {
        plan_destroy(p);
        return -1;
    }
    p->algo = h.algo;
    return 0;
}

static Fp8Plan *plan_for(CuFp8 *f, int m, int n, int k, int ldc)
{
    for (int i = 0; i < f->n_plans; i++) {
        Fp8Plan *p = &f->plans[i];
        if (p->m == m && p->n == n && p->k == k && p->ldc == ldc) return p;
    }
    if (f->n_plans == FP8_PLANS) { /* full: start over (step shapes vary) */
        for (int i = 0; i < f->n_plans; i++) plan_destroy(&f->plans[i]);
        f->n_plans = 0;
    }
    Fp8Plan *p = &f->plans[f->n_plans];
    int ok = -1;
    if (f->mode != CU_FP8_EPILOGUE) ok = plan_make(f, p, m, n, k, ldc, CU_FP8_OUTER);
    if (ok && f->mode != CU_FP8_OUTER) ok = plan_make(f, p, m, n, k, ldc, CU_FP8_EPILOGUE);
    if (ok) {
        char why[160];
        snprintf(why, sizeof why, "cuBLASLt has no fp8 e4m3 algorithm for %d x %d x %d%s", m, n, k,
                 f->mode == CU_FP8_OUTER ? " with outer-vector scales (SGL_CUDA_FP8_GEMM=outer)" : "");
        cu_fail(f->cu, "gemm fp8", why);
        return NULL;
    }
    f->n_plans++;
    return p;
}

/* one block per row: the row's max, then the row scaled into e4m3 */
__global__ void k_quant_rows(const bf16 *__restrict__ x, int ldx, int in, uint8_t *__restrict__ q,
                             float *__restrict__ scale)
{
    __shared__ float red[32];
    const bf16 *row = x + (size_t)blockIdx.x * ldx;
    float mx = 0.0f;
    for (int i = threadIdx.x; i < in; i += blockDim.x) mx = fmaxf(mx, fabsf(__bfloat162float(row[i])));
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = 0.0f;
    for (int k = 0; k < (int)(blockDim.x >> 5); k++) mx = fmaxf(mx, red[k]);
    float sc = mx > 0.0f ? mx / 448.0f : 1.0f, inv = 1.0f / sc;
    if (threadIdx.x == 0) scale[blockIdx.x] = sc;
    uint8_t *qr = q + (size_t)blockIdx.x * in;
    for (int i = 2 * threadIdx.x; i < in; i += 2 * blockDim.x) {
        float2 v = make_float2(__bfloat162float(row[i]) * inv, __bfloat162float(row[i + 1]) * inv);
        *(__nv_fp8x2_storage_t *)(qr + i) = __nv_cvt_float2_to_fp8x2(v, __NV_SATFINITE, __NV_E4M3);
    }
}

extern "C" void cu_quant_rows_fp8(CuCtx *c, const uint16_t *x, int ldx, int n, int in, uint8_t *xq, float *sx)
{
    if (n <= 0) return;
    if (in % 16 || ldx % 2) {
        cu_fail(c, "quant rows fp8", "rows must be a multiple of 16 values");
        return;
    }
    k_quant_rows<<<n, 256, 0, (cudaStream_t)cu_stream(c)>>>((const bf16 *)x, ldx, in, xq, sx);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) cu_fail(c, "quant rows fp8", cudaGetErrorString(e));
}

/* EPILOGUE: y[t][o] = bf16(y[t][o] · sx[t] · sw[o]) */
__global__ void k_scale_out(bf16 *__restrict__ y, int ldy, int out, const float *__restrict__ sx,
                            const float *__restrict__ sw)
{
    bf16 *row = y + (size_t)blockIdx.y * ldy;
    const float s = sx[blockIdx.y];
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < out; o += gridDim.x * blockDim.x)
        row[o] = __float2bfloat16(__bfloat162float(row[o]) * s * sw[o]);
}

extern "C" void cu_gemm_fp8(CuFp8 *f, const uint8_t *xq, const float *sx, int n, int in, const uint8_t *wq,
                            const float *sw, int out, uint16_t *y, int ldy, CuFp8Mode *used)
{
    if (n <= 0 || out <= 0) return;
    if (in % 16 || ((uintptr_t)xq & 15) || ((uintptr_t)wq & 15)) {
        cu_fail(f->cu, "gemm fp8", "in must be a multiple of 16 and the matrices 16-byte aligned");
        return;
    }
    Fp8Plan *p = plan_for(f, out, n, in, ldy);
    if (!p) return;
    if (used) *used = p->mode;
    cublasLtHandle_t lt = (cublasLtHandle_t)cu_lt_handle(f->cu);
    size_t ws_bytes;
    void *ws = cu_lt_workspace(f->cu, &ws_bytes);
    cudaStream_t st = (cudaStream_t)cu_stream(f->cu);
    if (p->mode == CU_FP8_OUTER) {
        /* the pointers change per weight: set on the plan's descriptor each call (read when the call is made) */
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw, sizeof sw);
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx, sizeof sx);
    }
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = cublasLtMatmul(lt, p->op, &one, wq, p->a, xq, p->b, &zero, y, p->c, y, p->c, &p->algo, ws,
                                      ws_bytes, st);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cu_fail(f->cu, "gemm fp8", cublasLtGetStatusString(s));
        return;
    }
    if (p->mode == CU_FP8_EPILOGUE) {
        k_scale_out<<<dim3((out + 255) / 256 < 64 ? (out + 255) / 256 : 64, n), 256, 0, st>>>((bf16 *)y, ldy, out,
                                                                                          sx, sw);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) cu_fail(f->cu, "gemm fp8 scales", cudaGetErrorString(e));
    }
}
