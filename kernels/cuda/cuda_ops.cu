/*
 * kernels/cuda/cuda_ops.cu — the CUDA ops of kernels/cuda/cuda_ops.h.
 *
 * Owns: the context (stream, cuBLASLt handle and its work space, the
 * matmul plan cache), the elementwise and attention kernels. Every kernel
 * keeps its arithmetic in f32 and rounds to bf16 where the Hugging Face
 * reference rounds (after each bf16 tensor op), so logits can be compared
 * with `transformers` within bf16 tolerance.
 */
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_ptx.cuh"
#include "kernels/cuda/cuda_rope.cuh"
#include "kernels/cuda/cuda_act.cuh"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <mma.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_fp8.cuh"

typedef __nv_bfloat16 bf16;

enum { PLAN_CACHE = 512 };

typedef struct {
    int m, n, k, lda, ldb, ldc, f32_out;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} Plan;

struct CuCtx {
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
    Plan plans[PLAN_CACHE];
    int n_plans;
    cudaDeviceProp prop;
    char error[256];
};

struct CuTimer { cudaEvent_t ev; };
struct CuGraph { cudaGraphExec_t exec; };

static void fail(CuCtx *c, const char *what, const char *why)
{
    if (!c->error[0]) snprintf(c->error, sizeof c->error, "cuda: %s: %s", what, why);
}

static int check(CuCtx *c, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return 0;
    fail(c, what, cudaGetErrorString(e));
    return -1;
}

#define LAUNCHED(c, what) check((c), cudaGetLastError(), (what))

extern "C" CuCtx *cu_ctx_new(char *err, size_t errcap)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        if (err) snprintf(err, errcap, "cuda: no GPU: %s", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return NULL;
    }
    CuCtx *c = (CuCtx *)calloc(1, sizeof *c);
    if (!c) {
        if (err) snprintf(err, errcap, "cuda: out of host memory");
        return NULL;
    }
    int dev = 0;
    cudaGetDevice(&dev); /* the calling thread's device (cu_set_device) */
    cudaGetDeviceProperties(&c->prop, dev);
    if (c->prop.major < 9) {
        if (err) snprintf(err, errcap, "cuda: %s is compute capability %d.%d; this build is for sm_90a (Hopper)",
                          c->prop.name, c->prop.major, c->prop.minor);
        free(c);
        return NULL;
    }
    c->ws_bytes = 64u << 20;
    if (cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking) != cudaSuccess ||
        cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS || cudaMalloc(&c->ws, c->ws_bytes) != cudaSuccess) {
        if (err) snprintf(err, errcap, "cuda: cannot create the stream, cuBLASLt or its work space");
        free(c);
        return NULL;
    }
    return c;
}

extern "C" void cu_ctx_free(CuCtx *c)
{
    if (!c) return;
    cudaStreamSynchronize(c->stream);
    for (int i = 0; i < c->n_plans; i++) {
        Plan *p = &c->plans[i];
        cublasLtMatrixLayoutDestroy(p->a);
        cublasLtMatrixLayoutDestroy(p->b);
        cublasLtMatrixLayoutDestroy(p->c);
        cublasLtMatmulDescDestroy(p->op);
    }
    cudaFree(c->ws);
    cublasLtDestroy(c->lt);
    cudaStreamDestroy(c->stream);
    free(c);
}

extern "C" const char *cu_device_name(CuCtx *c) { return c->prop.name; }
extern "C" void *cu_lt_handle(CuCtx *c) { return (void *)c->lt; }
extern "C" void *cu_lt_workspace(CuCtx *c, size_t *bytes)
{
    *bytes = c->ws_bytes;
    return c->ws;
}
extern "C" int cu_compute_capability(CuCtx *c) { return c->prop.major * 10 + c->prop.minor; }

extern "C" int cu_sm_count(CuCtx *c) { return c->prop.multiProcessorCount; }

extern "C" int cu_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

extern "C" void cu_mem_info(CuCtx *c, size_t *free_b, size_t *total_b)
{
    if (cudaMemGetInfo(free_b, total_b) != cudaSuccess) *free_b = *total_b = 0;
}

extern "C" void *cu_alloc(CuCtx *c, size_t bytes)
{
    void *p = NULL;
    if (check(c, cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc")) return NULL;
    return p;
}

extern "C" void cu_free(CuCtx *c, void *p)
{
    if (p) check(c, cudaFree(p), "cudaFree");
}

extern "C" void cu_upload(CuCtx *c, void *dst, const void *src, size_t bytes)
{
    /* synchronous with respect to the host buffer: it may be reused on return */
    if (!check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "upload"))
        check(c, cudaStreamSynchronize(c->stream), "upload");
}

extern "C" void cu_download(CuCtx *c, void *dst, const void *src, size_t bytes)
{
    if (!check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "download"))
        check(c, cudaStreamSynchronize(c->stream), "download");
}

extern "C" void cu_memset(CuCtx *c, void *p, int value, size_t bytes)
{
    check(c, cudaMemsetAsync(p, value, bytes, c->stream), "memset");
}

extern "C" void *cu_host_alloc(CuCtx *c, size_t bytes)
{
    void *p = NULL;
    if (check(c, cudaMallocHost(&p, bytes ? bytes : 1), "cudaMallocHost")) return NULL;
    return p;
}

extern "C" void cu_host_free(CuCtx *c, void *p)
{
    if (p) check(c, cudaFreeHost(p), "cudaFreeHost");
}

extern "C" void cu_copy_d2d(CuCtx *c, void *dst, const void *src, size_t bytes)
{
    check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), "copy");
}

extern "C" int cu_sync(CuCtx *c)
{
    check(c, cudaStreamSynchronize(c->stream), "sync");
    return c->error[0] ? -1 : 0;
}

extern "C" const char *cu_error(CuCtx *c)
{
    static __thread char last[256];
    if (!c->error[0]) return NULL;
    memcpy(last, c->error, sizeof last);
    c->error[0] = 0;
    return last;
}

extern "C" CuTimer *cu_timer_new(CuCtx *c)
{
    CuTimer *t = (CuTimer *)calloc(1, sizeof *t);
    if (t && check(c, cudaEventCreate(&t->ev), "event")) {
        free(t);
        return NULL;
    }
    return t;
}

extern "C" void cu_timer_record(CuCtx *c, CuTimer *t) { check(c, cudaEventRecord(t->ev, c->stream), "event"); }

extern "C" float cu_timer_ms(CuTimer *a, CuTimer *b)
{
    float ms = 0;
    cudaEventElapsedTime(&ms, a->ev, b->ev);
    return ms;
}

extern "C" void cu_timer_free(CuTimer *t)
{
    if (!t) return;
    cudaEventDestroy(t->ev);
    free(t);
}

extern "C" int cu_graph_begin(CuCtx *c)
{
    return check(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "graph capture");
}

extern "C" CuGraph *cu_graph_end(CuCtx *c)
{
    cudaGraph_t g;
    if (check(c, cudaStreamEndCapture(c->stream, &g), "graph capture")) return NULL;
    CuGraph *cg = (CuGraph *)calloc(1, sizeof *cg);
    if (!cg || check(c, cudaGraphInstantiate(&cg->exec, g, 0), "graph instantiate")) {
        free(cg);
        cudaGraphDestroy(g);
        return NULL;
    }
    cudaGraphDestroy(g);
    return cg;
}

extern "C" void cu_graph_launch(CuCtx *c, CuGraph *g) { check(c, cudaGraphLaunch(g->exec, c->stream), "graph launch"); }

extern "C" void cu_graph_free(CuGraph *g)
{
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    free(g);
}

/* ---- fills ------------------------------------------------------------------ */

__device__ __forceinline__ uint64_t mix64(uint64_t z)
{
    /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__global__ void k_fill_uniform(bf16 *p, size_t n, uint64_t seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t r = mix64(seed * 0x9e3779b97f4a7c15ull + i);
        float u = (float)(r >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
        p[i] = __float2bfloat16((2.0f * u - 1.0f) * scale);
    }
}

__global__ void k_fill(bf16 *p, size_t n, float v)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16(v);
}

static int grid_for(CuCtx *c, size_t n)
{
    size_t g = (n + 255) / 256, cap = (size_t)c->prop.multiProcessorCount * 16;
    return (int)(g < cap ? (g ? g : 1) : cap);
}

extern "C" void cu_fill_uniform_bf16(CuCtx *c, uint16_t *p, size_t n, uint64_t seed, float scale)
{
    k_fill_uniform<<<grid_for(c, n), 256, 0, c->stream>>>((bf16 *)p, n, seed, scale);
    LAUNCHED(c, "fill");
}

extern "C" void cu_fill_bf16(CuCtx *c, uint16_t *p, size_t n, float value)
{
    k_fill<<<grid_for(c, n), 256, 0, c->stream>>>((bf16 *)p, n, value);
    LAUNCHED(c, "fill");
}

/* ---- GEMM (cuBLASLt) ---------------------------------------------------------
 * Row-major y[n][out] = x[n][in] · W[out][in]ᵀ is, column-major, the
 * out × n matrix Wᵀ' · X': A = W seen as in × out (lda = in) transposed, B =
 * x seen as in × n (ldb = ldx), C = y as out × n (ldc = ldy). */

static Plan *plan_for(CuCtx *c, int m, int n, int k, int lda, int ldb, int ldc, int f32_out)
{
    for (int i = 0; i < c->n_plans; i++) {
        Plan *p = &c->plans[i];
        if (p->m == m && p->n == n && p->k == k && p->lda == lda && p->ldb == ldb && p->ldc == ldc &&
            p->f32_out == f32_out)
            return p;
    }
    if (c->n_plans == PLAN_CACHE) {
        /* a full cache starts over (shapes of a serving engine's steps vary) */
        for (int i = 0; i < c->n_plans; i++) {
            Plan *q = &c->plans[i];
            cublasLtMatrixLayoutDestroy(q->a);
            cublasLtMatrixLayoutDestroy(q->b);
            cublasLtMatrixLayoutDestroy(q->c);
            cublasLtMatmulDescDestroy(q->op);
        }
        c->n_plans = 0;
    }
    Plan tmp;
    memset(&tmp, 0, sizeof tmp);
    Plan *p = c->n_plans < PLAN_CACHE ? &c->plans[c->n_plans] : &tmp;
    p->m = m, p->n = n, p->k = k, p->lda = lda, p->ldb = ldb, p->ldc = ldc, p->f32_out = f32_out;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    if (cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return NULL;
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, k, m, lda);
    cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, k, n, ldb);
    cublasLtMatrixLayoutCreate(&p->c, f32_out ? CUDA_R_32F : CUDA_R_16BF, m, n, ldc);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->ws_bytes,
                                         sizeof c->ws_bytes);
    cublasLtMatmulHeuristicResult_t h;
    int got = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->a, p->b, p->c, p->c, pref, 1, &h, &got);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || got == 0) {
        fail(c, "gemm", "cuBLASLt has no algorithm for this shape");
        return NULL;
    }
    p->algo = h.algo;
    if (p != &tmp) c->n_plans++;
    else fail(c, "gemm", "plan cache full");
    return p != &tmp ? p : NULL;
}

extern "C" void cu_gemm_bf16(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                             uint16_t *y, int ldy)
{
    Plan *p = plan_for(c, out, n, in, in, ldx, ldy, 0);
    if (!p) return;
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = cublasLtMatmul(c->lt, p->op, &one, w, p->a, x, p->b, &zero, y, p->c, y, p->c, &p->algo,
                                       c->ws, c->ws_bytes, c->stream);
    if (st != CUBLAS_STATUS_SUCCESS) fail(c, "gemm", cublasLtGetStatusString(st));
}

extern "C" void cu_gemm_bf16_f32(CuCtx *c, const uint16_t *x, int ldx, int n, int in, const uint16_t *w, int out,
                                 float *y, int ldy)
{
    if (n <= 0) return;
    Plan *p = plan_for(c, out, n, in, in, ldx, ldy, 1);
    if (!p) return;
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = cublasLtMatmul(c->lt, p->op, &one, w, p->a, x, p->b, &zero, y, p->c, y, p->c, &p->algo,
                                       c->ws, c->ws_bytes, c->stream);
    if (st != CUBLAS_STATUS_SUCCESS) fail(c, "gemm", cublasLtGetStatusString(st));
}

__global__ void k_add_bias(bf16 *y, int ldy, int cols, const bf16 *bias)
{
    bf16 *row = y + (size_t)blockIdx.y * ldy;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < cols; i += gridDim.x * blockDim.x)
        row[i] = __float2bfloat16(__bfloat162float(row[i]) + __bfloat162float(bias[i]));
}

extern "C" void cu_add_bias(CuCtx *c, uint16_t *y, int ldy, int n, int cols, const uint16_t *bias)
{
    if (n <= 0) return;
    k_add_bias<<<dim3((cols + 255) / 256, n), 256, 0, c->stream>>>((bf16 *)y, ldy, cols, (const bf16 *)bias);
    LAUNCHED(c, "bias");
}

/* ---- elementwise -------------------------------------------------------------- */

__global__ void k_embed(const uint4 *table, int vec_per_row, const int32_t *tokens, uint4 *out)
{
    int r = blockIdx.x;
    const uint4 *src = table + (size_t)tokens[r] * vec_per_row;
    uint4 *dst = out + (size_t)r * vec_per_row;
    for (int i = threadIdx.x; i < vec_per_row; i += blockDim.x) dst[i] = src[i];
}

extern "C" void cu_embed(CuCtx *c, const uint16_t *table, int dim, const int32_t *tokens, int n, uint16_t *out)
{
    if (n <= 0) return;
    k_embed<<<n, 128, 0, c->stream>>>((const uint4 *)table, dim / 8, tokens, (uint4 *)out);
    LAUNCHED(c, "embed");
}

__device__ __forceinline__ float block_sum(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    if (l == 0) sh[w] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = l < nw ? sh[l] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One block per row; each thread keeps its elements (8 at a time, 16 bytes)
 * in registers between the two passes. dim <= 8 * 256 * RMS_VEC. */
enum { RMS_THREADS = 256, RMS_VEC = 4 };

__global__ void k_add_rmsnorm(bf16 *h, const bf16 *delta, const bf16 *w, bf16 *y, int dim, float eps)
{
    ptx_launch_dependents(); /* the GEMV after it may start streaming its weights */
    __shared__ float sh[32];
    size_t base = (size_t)blockIdx.x * dim;
    float v[RMS_VEC][8];
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < RMS_VEC; j++) {
        int i = (threadIdx.x + j * RMS_THREADS) * 8;
        if (i < dim) {
            uint4 hv = *(const uint4 *)(h + base + i);
            const bf16 *hb = (const bf16 *)&hv;
            if (delta) {
                uint4 dv = *(const uint4 *)(delta + base + i);
                const bf16 *db = (const bf16 *)&dv;
                uint4 ov;
                bf16 *ob = (bf16 *)&ov;
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    ob[e] = __float2bfloat16(__bfloat162float(hb[e]) + __bfloat162float(db[e]));
                    v[j][e] = __bfloat162float(ob[e]);
                }
                *(uint4 *)(h + base + i) = ov;
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) v[j][e] = __bfloat162float(hb[e]);
            }
#pragma unroll
            for (int e = 0; e < 8; e++) ss += v[j][e] * v[j][e];
        }
    }
    float r = rsqrtf(block_sum(ss, sh) / (float)dim + eps);
#pragma unroll
    for (int j = 0; j < RMS_VEC; j++) {
        int i = (threadIdx.x + j * RMS_THREADS) * 8;
        if (i < dim) {
            uint4 wv = *(const uint4 *)(w + i), ov;
            const bf16 *wb = (const bf16 *)&wv;
            bf16 *ob = (bf16 *)&ov;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                float nrm = __bfloat162float(__float2bfloat16(v[j][e] * r)); /* HF: .to(bf16), then * weight */
                ob[e] = __float2bfloat16(nrm * __bfloat162float(wb[e]));
            }
            *(uint4 *)(y + base + i) = ov;
        }
    }
}

extern "C" void cu_add_rmsnorm(CuCtx *c, uint16_t *h, const uint16_t *delta, const uint16_t *w, uint16_t *y,
                               int n, int dim, float eps)
{
    if (n <= 0) return;
    if (dim % 8 || dim > 8 * RMS_THREADS * RMS_VEC) {
        fail(c, "rmsnorm", "dim must be a multiple of 8 and at most 8192");
        return;
    }
    k_add_rmsnorm<<<n, RMS_THREADS, 0, c->stream>>>((bf16 *)h, (const bf16 *)delta, (const bf16 *)w, (bf16 *)y,
                                                    dim, eps);
    LAUNCHED(c, "rmsnorm");
}

__global__ void k_rope_kv(bf16 *qkv, int n_head, int n_head_kv, int hd, float theta, const int32_t *pos,
                          const int32_t *wslot, bf16 *kp, bf16 *vp)
{
    int r = blockIdx.x, half = hd / 2, kv_dim = n_head_kv * hd;
    bf16 *row = qkv + (size_t)r * (n_head + 2 * n_head_kv) * hd;
    float p = (float)pos[r];
    size_t so = (size_t)wslot[r] * kv_dim;
    int n_pairs = (n_head + n_head_kv) * half;
    for (int idx = threadIdx.x; idx < n_pairs; idx += blockDim.x) {
        int head = idx / half, i = idx % half;
        /* HF: inv_freq = 1 / theta^(2i/hd) in f32, angle = pos * inv_freq, cos/sin cast to bf16 */
        float inv = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        float s, cs;
        sincosf(p * inv, &s, &cs);
        float cb = __bfloat162float(__float2bfloat16(cs)), sb = __bfloat162float(__float2bfloat16(s));
        bf16 *x = row + head * hd;
        float x1 = __bfloat162float(x[i]), x2 = __bfloat162float(x[i + half]);
        /* q*cos + rotate_half(q)*sin, each product and the sum rounded to bf16 */
        float a = __bfloat162float(__float2bfloat16(x1 * cb)), b = __bfloat162float(__float2bfloat16(-x2 * sb));
        float e = __bfloat162float(__float2bfloat16(x2 * cb)), f = __bfloat162float(__float2bfloat16(x1 * sb));
        bf16 lo = __float2bfloat16(a + b), hi = __float2bfloat16(e + f);
        if (head < n_head) {
            x[i] = lo;
            x[i + half] = hi;
        } else {
            int kh = head - n_head;
            kp[so + kh * hd + i] = lo;
            kp[so + kh * hd + i + half] = hi;
        }
    }
    const bf16 *v = row + (n_head + n_head_kv) * hd;
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) vp[so + i] = v[i];
}

extern "C" void cu_rope_kv_write(CuCtx *c, uint16_t *qkv, int n, int n_head, int n_head_kv, int head_dim,
                                 float theta, const int32_t *pos, const int32_t *wslot, uint16_t *k_pool,
                                 uint16_t *v_pool)
{
    if (n <= 0) return;
    k_rope_kv<<<n, 256, 0, c->stream>>>((bf16 *)qkv, n_head, n_head_kv, head_dim, theta, pos, wslot,
                                        (bf16 *)k_pool, (bf16 *)v_pool);
    LAUNCHED(c, "rope");
}

/* RoPE from the model's inv_freq (rot_dim/2 values: scaling already folded
 * in), pairing NEOX (x[i], x[i + rot/2]) or NORM (x[2i], x[2i+1]); dims past
 * rot_dim are kept. Rounding as the theta form above (HF's bf16 cos/sin).
 * One block per (row, head): q heads first, then the kv heads, whose block
 * also writes the head's k dims past rot_dim and its v (a row-per-block
 * version took ~11 us a layer at batch 1, one block for the whole row). */
template <typename KT> /* the pool's element type: bf16, or fp8 e4m3 bytes (cuda_fp8.cuh) */
__global__ void k_rope_kv_f(bf16 *qkv, int n_head, int n_head_kv, int hd, int rot, const float *inv_freq, int neox,
                            const int32_t *pos, const int32_t *wslot, KT *kp, KT *vp)
{
    int r = blockIdx.x, head = blockIdx.y, half = rot / 2, kv_dim = n_head_kv * hd;
    const int write = wslot[r] >= 0; /* < 0: a graph's padding row, q only */
    if (head >= n_head && !write) return;
    bf16 *row = qkv + (size_t)r * (n_head + 2 * n_head_kv) * hd;
    float p = (float)pos[r];
    size_t so = write ? (size_t)wslot[r] * kv_dim : 0;
    bf16 *x = row + head * hd;
    int kh = head - n_head;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        int i1 = neox ? i : 2 * i, i2 = neox ? i + half : 2 * i + 1;
        bf16 lo, hi; /* cuda_rope.cuh: the rounding cu_attention_decode_rope repeats */
        rope_rotate(__bfloat162float(x[i1]), __bfloat162float(x[i2]), rope_cos_sin(p, inv_freq[i]), lo, hi);
        if (head < n_head) {
            x[i1] = lo;
            x[i2] = hi;
        } else {
            KvT<KT>::put(kp + so + kh * hd + i1, lo);
            KvT<KT>::put(kp + so + kh * hd + i2, hi);
        }
    }
    if (head < n_head) return;
    /* this kv head's k dims past rot_dim, then its v */
    for (int d = rot + threadIdx.x; d < hd; d += blockDim.x) KvT<KT>::put(kp + so + kh * hd + d, x[d]);
    const bf16 *v = row + (size_t)(n_head + n_head_kv + kh) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) KvT<KT>::put(vp + so + kh * hd + d, v[d]);
}

extern "C" void cu_rope_kv_write_f(CuCtx *c, uint16_t *qkv, int n, int n_head, int n_head_kv, int head_dim,
                                   int rot_dim, const float *inv_freq, int neox, const int32_t *pos,
                                   const int32_t *wslot, uint16_t *k_pool, uint16_t *v_pool)
{
    if (n <= 0) return;
    if (rot_dim <= 0 || rot_dim > head_dim || rot_dim % 2) {
        fail(c, "rope", "rot_dim must be even and within head_dim");
        return;
    }
    k_rope_kv_f<bf16><<<dim3(n, n_head + n_head_kv), 64, 0, c->stream>>>((bf16 *)qkv, n_head, n_head_kv, head_dim,
                                                                          rot_dim, inv_freq, neox, pos, wslot,
                                                                          (bf16 *)k_pool, (bf16 *)v_pool);
    LAUNCHED(c, "rope");
}

extern "C" void cu_rope_kv_write_fp8(CuCtx *c, uint16_t *qkv, int n, int n_head, int n_head_kv, int head_dim,
                                     int rot_dim, const float *inv_freq, int neox, const int32_t *pos,
                                     const int32_t *wslot, uint8_t *k_pool, uint8_t *v_pool)
{
    if (n <= 0) return;
    if (rot_dim <= 0 || rot_dim > head_dim || rot_dim % 2) {
        fail(c, "rope", "rot_dim must be even and within head_dim");
        return;
    }
    k_rope_kv_f<uint8_t><<<dim3(n, n_head + n_head_kv), 64, 0, c->stream>>>((bf16 *)qkv, n_head, n_head_kv,
                                                                             head_dim, rot_dim, inv_freq, neox, pos,
                                                                             wslot, k_pool, v_pool);
    LAUNCHED(c, "rope fp8");
}

__global__ void k_swiglu(const bf16 *gu, int ff, bf16 *out)
{
    ptx_launch_dependents(); /* the down GEMV may start streaming its weights */
    size_t r = blockIdx.y;
    const bf16 *g = gu + r * 2 * ff, *u = g + ff;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < ff / 8; i += gridDim.x * blockDim.x) {
        uint4 gv = ((const uint4 *)g)[i], uv = ((const uint4 *)u)[i], ov;
        const bf16 *gb = (const bf16 *)&gv, *ub = (const bf16 *)&uv;
        bf16 *ob = (bf16 *)&ov;
#pragma unroll
        for (int e = 0; e < 8; e++) ob[e] = swiglu_bf16(gb[e], ub[e]);
        ((uint4 *)(out + r * ff))[i] = ov;
    }
}

extern "C" void cu_swiglu(CuCtx *c, const uint16_t *gu, int n, int ff, uint16_t *out)
{
    if (n <= 0) return;
    if (ff % 8) {
        fail(c, "swiglu", "ff must be a multiple of 8");
        return;
    }
    int bx = (ff / 8 + 255) / 256;
    k_swiglu<<<dim3(bx, n), 256, 0, c->stream>>>((const bf16 *)gu, ff, (bf16 *)out);
    LAUNCHED(c, "swiglu");
}

/* ---- attention ----------------------------------------------------------------
 * One block per (query row, kv head, split): 4 warps, all G = n_head/n_head_kv
 * query heads of the group at once so each k/v row is read once for G heads.
 * Scores: lane j of a warp takes key j of the warp's 32 (q in shared memory),
 * so a dot product needs no shuffles; one online-softmax update per 32 keys.
 * Values: the warp walks its 32 keys, each lane owning HD/32 dimensions. The 4
 * warps' (max, sum, acc) are merged in shared memory at the end; with splits,
 * each block writes its partial (acc, max, sum) and k_attn_merge combines. */

enum { ATT_WARPS = 4, ATT_MAXG = 8 };

template <int HD>
__global__ void __launch_bounds__(ATT_WARPS * 32) k_attention(const bf16 *q, int ldq, int n_head, int n_head_kv,
                                                              float scale_log2, const bf16 *kp, const bf16 *vp,
                                                              const int32_t *slots, const int32_t *row_off,
                                                              const int32_t *row_len, int n_split, int chunk,
                                                              float *ws, bf16 *out)
{
    constexpr int DPL = HD / 32; /* dims per lane in the value phase */
    const int r = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int G = n_head / n_head_kv, kv_dim = n_head_kv * HD;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __shared__ float qs[ATT_MAXG][HD];
    __shared__ float wm[ATT_WARPS][ATT_MAXG], wl[ATT_WARPS][ATT_MAXG];
    __shared__ float wacc[ATT_WARPS][ATT_MAXG][HD];

    for (int i = threadIdx.x; i < G * HD; i += blockDim.x) {
        int g = i / HD, d = i % HD;
        qs[g][d] = __bfloat162float(q[(size_t)r * ldq + (kvh * G + g) * HD + d]) * scale_log2;
    }
    __syncthreads();

    const int len = row_len[r], off = row_off[r];
    int k0 = split * chunk, k1 = min(len, k0 + chunk);
    float m[ATT_MAXG], l[ATT_MAXG], acc[ATT_MAXG][DPL];
#pragma unroll
    for (int g = 0; g < ATT_MAXG; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int d = 0; d < DPL; d++) acc[g][d] = 0.0f;
    }
    for (int base = k0 + warp * 32; base < k1; base += ATT_WARPS * 32) {
        int t = base + lane;
        bool ok = t < k1;
        int slot = ok ? slots[off + t] : 0;
        float s[ATT_MAXG];
#pragma unroll
        for (int g = 0; g < ATT_MAXG; g++) s[g] = 0.0f;
        if (ok) {
            const uint4 *kr = (const uint4 *)(kp + (size_t)slot * kv_dim + kvh * HD);
#pragma unroll
            for (int v8 = 0; v8 < HD / 8; v8++) {
                uint4 kv = kr[v8];
                const bf16 *kb = (const bf16 *)&kv;
                float kf[8];
#pragma unroll
                for (int e = 0; e < 8; e++) kf[e] = __bfloat162float(kb[e]);
#pragma unroll
                for (int g = 0; g < ATT_MAXG; g++) {
                    if (g < G) {
#pragma unroll
                        for (int e = 0; e < 8; e++) s[g] += qs[g][v8 * 8 + e] * kf[e];
                    }
                }
            }
        }
        /* online softmax over these 32 keys (scores are in log2 units) */
        float p[ATT_MAXG];
#pragma unroll
        for (int g = 0; g < ATT_MAXG; g++) {
            if (g < G) {
                float mx = ok ? s[g] : -INFINITY;
                for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
                float mn = fmaxf(m[g], mx);
                float corr = exp2f(m[g] - mn); /* m = -inf first: exp2(-inf) = 0 */
                p[g] = ok ? exp2f(s[g] - mn) : 0.0f;
                float ps = p[g];
                for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
                l[g] = l[g] * corr + ps;
                m[g] = mn;
#pragma unroll
                for (int d = 0; d < DPL; d++) acc[g][d] *= corr;
            }
        }
        /* all 32 keys, 8 at a time with their loads issued first (a key past
         * the end has p = 0 and reads slot 0, which exists): no load waits on
         * the previous key's arithmetic */
        for (int j0 = 0; j0 < 32; j0 += 8) {
            float vf[8][DPL];
#pragma unroll
            for (int jj = 0; jj < 8; jj++) {
                int sj = __shfl_sync(0xffffffffu, slot, j0 + jj);
                const bf16 *vr = vp + (size_t)sj * kv_dim + kvh * HD + lane * DPL;
                if (DPL == 4) {
                    uint2 vv = *(const uint2 *)vr;
                    const bf16 *vb = (const bf16 *)&vv;
#pragma unroll
                    for (int d = 0; d < DPL; d++) vf[jj][d] = __bfloat162float(vb[d]);
                } else {
#pragma unroll
                    for (int d = 0; d < DPL; d++) vf[jj][d] = __bfloat162float(vr[d]);
                }
            }
#pragma unroll
            for (int jj = 0; jj < 8; jj++) {
#pragma unroll
                for (int g = 0; g < ATT_MAXG; g++) {
                    if (g < G) {
                        float pj = __shfl_sync(0xffffffffu, p[g], j0 + jj);
#pragma unroll
                        for (int d = 0; d < DPL; d++) acc[g][d] += pj * vf[jj][d];
                    }
                }
            }
        }
    }
    /* merge the warps */
#pragma unroll
    for (int g = 0; g < ATT_MAXG; g++) {
        if (g < G) {
            if (lane == 0) wm[warp][g] = m[g], wl[warp][g] = l[g];
#pragma unroll
            for (int d = 0; d < DPL; d++) wacc[warp][g][lane * DPL + d] = acc[g][d];
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * HD; i += blockDim.x) {
        int g = i / HD, d = i % HD;
        float M = -INFINITY;
        for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, wm[w][g]);
        float L = 0.0f, A = 0.0f;
        if (M != -INFINITY) {
            for (int w = 0; w < ATT_WARPS; w++) {
                float f = exp2f(wm[w][g] - M);
                L += wl[w][g] * f;
                A += wacc[w][g][d] * f;
            }
        }
        int h = kvh * G + g;
        if (n_split == 1) {
            out[(size_t)r * n_head * HD + h * HD + d] = __float2bfloat16(L > 0.0f ? A / L : 0.0f);
        } else {
            float *part = ws + (((size_t)r * n_head + h) * n_split + split) * (HD + 2);
            part[d] = A;
            if (d == 0) part[HD] = M, part[HD + 1] = L;
        }
    }
}

__global__ void k_attn_merge(const float *ws, int n_head, int hd, int n_split, bf16 *out)
{
    int r = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
    const float *part = ws + ((size_t)r * n_head + h) * n_split * (hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, part[s * (hd + 2) + hd]);
    float L = 0.0f, A = 0.0f;
    if (M != -INFINITY) {
        for (int s = 0; s < n_split; s++) {
            const float *p = part + s * (hd + 2);
            float f = exp2f(p[hd] - M);
            L += p[hd + 1] * f;
            A += p[d] * f;
        }
    }
    out[((size_t)r * n_head + h) * hd + d] = __float2bfloat16(L > 0.0f ? A / L : 0.0f);
}

extern "C" size_t cu_attn_ws_bytes(int n_rows, int n_head, int head_dim, int n_split)
{
    return n_split > 1 ? (size_t)n_rows * n_head * n_split * (head_dim + 2) * sizeof(float) : 0;
}

extern "C" void cu_attention(CuCtx *c, const uint16_t *q, int ldq, int n_rows, int n_head, int n_head_kv,
                             int head_dim, float scale, const uint16_t *k_pool, const uint16_t *v_pool,
                             const int32_t *slots, const int32_t *row_off, const int32_t *row_len, int n_split,
                             int chunk, float *ws, uint16_t *out)
{
    if (n_rows <= 0) return;
    if (n_head % n_head_kv || n_head / n_head_kv > ATT_MAXG || (head_dim != 64 && head_dim != 128) ||
        n_split < 1 || (n_split > 1 && !ws)) {
        fail(c, "attention", "unsupported shape (head_dim 64 or 128, at most 8 query heads per kv head)");
        return;
    }
    if (n_split == 1) chunk = 1 << 30;
    dim3 grid(n_rows, n_head_kv, n_split);
    float sl2 = scale * 1.4426950408889634f;
    if (head_dim == 128)
        k_attention<128><<<grid, ATT_WARPS * 32, 0, c->stream>>>((const bf16 *)q, ldq, n_head, n_head_kv, sl2,
                                                                 (const bf16 *)k_pool, (const bf16 *)v_pool, slots,
                                                                 row_off, row_len, n_split, chunk, ws, (bf16 *)out);
    else
        k_attention<64><<<grid, ATT_WARPS * 32, 0, c->stream>>>((const bf16 *)q, ldq, n_head, n_head_kv, sl2,
                                                                (const bf16 *)k_pool, (const bf16 *)v_pool, slots,
                                                                row_off, row_len, n_split, chunk, ws, (bf16 *)out);
    if (LAUNCHED(c, "attention")) return;
    if (n_split > 1) {
        k_attn_merge<<<dim3(n_rows, n_head), head_dim, 0, c->stream>>>(ws, n_head, head_dim, n_split, (bf16 *)out);
        LAUNCHED(c, "attention merge");
    }
}

/* ---- prefill attention on the tensor cores ---------------------------------
 * FlashAttention-2's loop over the token-granular pool: a block takes one
 * tile of up to FA_BM consecutive query rows of one sequence and one query
 * head; 4 warps own 16 rows each. Per key tile of FA_BN slots (gathered from
 * the pool into shared memory): S = Q·Kᵀ on the tensor cores (WMMA bf16,
 * f32 accumulate), the online softmax in f32 (two lanes a row), P rounded to
 * bf16, O += P·V on the tensor cores (O kept in shared memory as f32, so the
 * softmax can rescale it). Causality: row i of a tile whose first row has
 * context length len0 sees keys [0, len0 + i). */

enum { FA_BM = 64, FA_BN = 64, FA_WARPS = 4 };

template <int HD> struct FaSmem {
    static constexpr int LDQ = HD + 8, LDS = FA_BN + 4, LDP = FA_BN + 8, LDO = HD + 4;
    static constexpr size_t Q = (size_t)FA_BM * LDQ * 2, K = (size_t)FA_BN * LDQ * 2, S = (size_t)FA_BM * LDS * 4,
                            P = (size_t)FA_BM * LDP * 2, O = (size_t)FA_BM * LDO * 4;
    static constexpr size_t bytes = Q + 2 * K + S + P + O;
};

template <int HD>
__global__ void __launch_bounds__(FA_WARPS * 32) k_attn_prefill(const bf16 *q, int ldq, int n_head, int n_head_kv,
                                                                float scale_log2, const bf16 *kp, const bf16 *vp,
                                                                const int32_t *slots, const int4 *tiles, bf16 *out)
{
    using namespace nvcuda;
    typedef FaSmem<HD> L;
    extern __shared__ __align__(128) unsigned char fa_smem[];
    bf16 *Qs = (bf16 *)fa_smem, *Ks = (bf16 *)(fa_smem + L::Q), *Vs = (bf16 *)(fa_smem + L::Q + L::K);
    float *Ss = (float *)(fa_smem + L::Q + 2 * L::K);
    bf16 *Ps = (bf16 *)(fa_smem + L::Q + 2 * L::K + L::S);
    float *Os = (float *)(fa_smem + L::Q + 2 * L::K + L::S + L::P);
    const int4 tile = tiles[blockIdx.x]; /* row0, rows, slot offset, len0 */
    const int h = blockIdx.y, G = n_head / n_head_kv, kvh = h / G, kv_dim = n_head_kv * HD;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int nq = tile.y, off = tile.z, len0 = tile.w, kmax = len0 + nq - 1;

    for (int i = tid; i < FA_BM * (HD / 8); i += blockDim.x) {
        int r = i / (HD / 8), c8 = i % (HD / 8);
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r < nq) v = *(const uint4 *)(q + (size_t)(tile.x + r) * ldq + h * HD + c8 * 8);
        *(uint4 *)(Qs + r * L::LDQ + c8 * 8) = v;
    }
    for (int i = tid; i < FA_BM * HD; i += blockDim.x) Os[(i / HD) * L::LDO + i % HD] = 0.0f;
    const int row = lane >> 1, half = lane & 1; /* softmax: two lanes a row */
    const int grow = warp * 16 + row;          /* row within the tile */
    const int rlen = grow < nq ? len0 + grow : 0;
    float m = -INFINITY, l = 0.0f;
    bf16 *Qw = Qs + warp * 16 * L::LDQ;
    float *Sw = Ss + warp * 16 * L::LDS, *Ow = Os + warp * 16 * L::LDO;
    bf16 *Pw = Ps + warp * 16 * L::LDP;

    for (int k0 = 0; k0 < kmax; k0 += FA_BN) {
        __syncthreads(); /* the previous tile's K/V are no longer read */
        for (int i = tid; i < FA_BN * (HD / 8); i += blockDim.x) {
            int j = i / (HD / 8), c8 = i % (HD / 8), t = k0 + j;
            uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
            if (t < kmax) {
                size_t so = (size_t)slots[off + t] * kv_dim + kvh * HD + c8 * 8;
                kv4 = *(const uint4 *)(kp + so);
                vv4 = *(const uint4 *)(vp + so);
            }
            *(uint4 *)(Ks + j * L::LDQ + c8 * 8) = kv4;
            *(uint4 *)(Vs + j * L::LDQ + c8 * 8) = vv4;
        }
        __syncthreads();
        /* S = Q Kᵀ for this warp's 16 rows */
#pragma unroll
        for (int n0 = 0; n0 < FA_BN; n0 += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < HD; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                wmma::load_matrix_sync(a, Qw + kk, L::LDQ);
                wmma::load_matrix_sync(b, Ks + n0 * L::LDQ + kk, L::LDQ);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Sw + n0, acc, L::LDS, wmma::mem_row_major);
        }
        __syncwarp();
        /* online softmax: this lane's 32 columns of its row */
        float sv[32], mx = -INFINITY;
#pragma unroll
        for (int c = 0; c < 32; c++) {
            int col = half * 32 + c;
            bool ok = k0 + col < rlen;
            sv[c] = ok ? Sw[row * L::LDS + col] * scale_log2 : -INFINITY;
            mx = fmaxf(mx, sv[c]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float mn = fmaxf(m, mx);
        float corr = mn == -INFINITY ? 1.0f : exp2f(m - mn);
        float ps = 0.0f;
#pragma unroll
        for (int c = 0; c < 32; c++) {
            float p = sv[c] == -INFINITY ? 0.0f : exp2f(sv[c] - mn);
            ps += p;
            Pw[row * L::LDP + half * 32 + c] = __float2bfloat16(p);
        }
        ps += __shfl_xor_sync(0xffffffffu, ps, 1);
        l = l * corr + ps;
        m = mn;
        for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); d++) Ow[row * L::LDO + d] *= corr;
        __syncwarp();
        /* O += P V */
#pragma unroll
        for (int n0 = 0; n0 < HD; n0 += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, Ow + n0, L::LDO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < FA_BN; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(a, Pw + kk, L::LDP);
                wmma::load_matrix_sync(b, Vs + kk * L::LDQ + n0, L::LDQ);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Ow + n0, acc, L::LDO, wmma::mem_row_major);
        }
        __syncwarp();
    }
    if (grow < nq) {
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        bf16 *o = out + (size_t)(tile.x + grow) * n_head * HD + h * HD;
        for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); d++)
            o[d] = __float2bfloat16(Ow[row * L::LDO + d] * inv);
    }
}

/* ---- decode attention on the tensor cores ------------------------------------
 * One warp per (query row, kv head, split): the G query heads of the group
 * are the 16 rows of one WMMA tile (rows past G are zero), so each K/V row
 * is read once for the whole group, by coalesced 16-byte loads into shared
 * memory (64 keys a tile, every lane 2 x HD/8 loads in flight); S = Q·Kᵀ
 * and O += P·V on the tensor cores, the online softmax as in the prefill
 * kernel. With splits, partials go to ws in k_attn_merge's layout. */

template <int HD> struct FdSmem {
    static constexpr int LDQ = HD + 8, LDS = FA_BN + 4, LDP = FA_BN + 8, LDO = HD + 4;
    static constexpr size_t Q = (size_t)16 * LDQ * 2, K = (size_t)FA_BN * LDQ * 2, S = (size_t)16 * LDS * 4,
                            P = (size_t)16 * LDP * 2, O = (size_t)16 * LDO * 4;
    static constexpr size_t bytes = Q + 2 * K + S + P + O;
};

template <int HD>
__global__ void __launch_bounds__(32) k_attn_decode_tc(const bf16 *q, int ldq, int n_head, int n_head_kv,
                                                       float scale_log2, const bf16 *kp, const bf16 *vp,
                                                       const int32_t *slots, const int32_t *row_off,
                                                       const int32_t *row_len, int n_split, int chunk, float *ws,
                                                       bf16 *out)
{
    using namespace nvcuda;
    typedef FdSmem<HD> L;
    extern __shared__ __align__(128) unsigned char fd_smem[];
    bf16 *Qs = (bf16 *)fd_smem, *Ks = (bf16 *)(fd_smem + L::Q), *Vs = (bf16 *)(fd_smem + L::Q + L::K);
    float *Ss = (float *)(fd_smem + L::Q + 2 * L::K);
    bf16 *Ps = (bf16 *)(fd_smem + L::Q + 2 * L::K + L::S);
    float *Os = (float *)(fd_smem + L::Q + 2 * L::K + L::S + L::P);
    const int r = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int G = n_head / n_head_kv, kv_dim = n_head_kv * HD, lane = threadIdx.x;
    const int len = row_len[r], off = row_off[r];
    const int k0 = split * chunk, k1 = min(len, k0 + chunk);

    for (int i = lane; i < 16 * (HD / 8); i += 32) {
        int g = i / (HD / 8), c8 = i % (HD / 8);
        uint4 v = make_uint4(0, 0, 0, 0);
        if (g < G) v = *(const uint4 *)(q + (size_t)r * ldq + (kvh * G + g) * HD + c8 * 8);
        *(uint4 *)(Qs + g * L::LDQ + c8 * 8) = v;
    }
    for (int i = lane; i < 16 * HD; i += 32) Os[(i / HD) * L::LDO + i % HD] = 0.0f;
    const int row = lane >> 1, half = lane & 1;
    float m = -INFINITY, l = 0.0f;
    for (int kt = k0; kt < k1; kt += FA_BN) {
        __syncwarp();
        for (int i = lane; i < FA_BN * (HD / 8); i += 32) {
            int j = i / (HD / 8), c8 = i % (HD / 8), t = kt + j;
            uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
            if (t < k1) {
                size_t so = (size_t)slots[off + t] * kv_dim + kvh * HD + c8 * 8;
                kv4 = *(const uint4 *)(kp + so);
                vv4 = *(const uint4 *)(vp + so);
            }
            *(uint4 *)(Ks + j * L::LDQ + c8 * 8) = kv4;
            *(uint4 *)(Vs + j * L::LDQ + c8 * 8) = vv4;
        }
        __syncwarp();
#pragma unroll
        for (int n0 = 0; n0 < FA_BN; n0 += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < HD; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                wmma::load_matrix_sync(a, Qs + kk, L::LDQ);
                wmma::load_matrix_sync(b, Ks + n0 * L::LDQ + kk, L::LDQ);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Ss + n0, acc, L::LDS, wmma::mem_row_major);
        }
        __syncwarp();
        float sv[32], mx = -INFINITY;
#pragma unroll
        for (int c = 0; c < 32; c++) {
            int col = half * 32 + c;
            bool ok = row < G && kt + col < k1;
            sv[c] = ok ? Ss[row * L::LDS + col] * scale_log2 : -INFINITY;
            mx = fmaxf(mx, sv[c]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float mn = fmaxf(m, mx);
        float corr = mn == -INFINITY ? 1.0f : exp2f(m - mn);
        float ps = 0.0f;
#pragma unroll
        for (int c = 0; c < 32; c++) {
            float p = sv[c] == -INFINITY ? 0.0f : exp2f(sv[c] - mn);
            ps += p;
            Ps[row * L::LDP + half * 32 + c] = __float2bfloat16(p);
        }
        ps += __shfl_xor_sync(0xffffffffu, ps, 1);
        l = l * corr + ps;
        m = mn;
        for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); d++) Os[row * L::LDO + d] *= corr;
        __syncwarp();
#pragma unroll
        for (int n0 = 0; n0 < HD; n0 += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, Os + n0, L::LDO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < FA_BN; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(a, Ps + kk, L::LDP);
                wmma::load_matrix_sync(b, Vs + kk * L::LDQ + n0, L::LDQ);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Os + n0, acc, L::LDO, wmma::mem_row_major);
        }
    }
    __syncwarp();
    if (row < G) {
        int h = kvh * G + row;
        if (n_split == 1) {
            float inv = l > 0.0f ? 1.0f / l : 0.0f;
            bf16 *o = out + (size_t)r * n_head * HD + h * HD;
            for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); d++) o[d] = __float2bfloat16(Os[row * L::LDO + d] * inv);
        } else {
            float *part = ws + (((size_t)r * n_head + h) * n_split + split) * (HD + 2);
            for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); d++) part[d] = Os[row * L::LDO + d];
            if (half == 0) part[HD] = m, part[HD + 1] = l;
        }
    }
}

extern "C" void cu_attention_decode_tc(CuCtx *c, const uint16_t *q, int ldq, int n_rows, int n_head, int n_head_kv,
                                       int head_dim, float scale, const uint16_t *k_pool, const uint16_t *v_pool,
                                       const int32_t *slots, const int32_t *row_off, const int32_t *row_len,
                                       int n_split, int chunk, float *ws, uint16_t *out)
{
    if (n_rows <= 0) return;
    if (n_head % n_head_kv || n_head / n_head_kv > 16 || (head_dim != 64 && head_dim != 128) || n_split < 1 ||
        (n_split > 1 && !ws)) {
        fail(c, "attention", "unsupported shape (head_dim 64 or 128, at most 16 query heads per kv head)");
        return;
    }
    if (n_split == 1) chunk = 1 << 30;
    dim3 grid(n_rows, n_head_kv, n_split);
    float sl2 = scale * 1.4426950408889634f;
    if (head_dim == 128) {
        static int set = 0;
        if (!set && !check(c, cudaFuncSetAttribute(k_attn_decode_tc<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)FdSmem<128>::bytes), "attention smem"))
            set = 1;
        k_attn_decode_tc<128><<<grid, 32, FdSmem<128>::bytes, c->stream>>>(
            (const bf16 *)q, ldq, n_head, n_head_kv, sl2, (const bf16 *)k_pool, (const bf16 *)v_pool, slots, row_off,
            row_len, n_split, chunk, ws, (bf16 *)out);
    } else {
        static int set = 0;
        if (!set && !check(c, cudaFuncSetAttribute(k_attn_decode_tc<64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)FdSmem<64>::bytes), "attention smem"))
            set = 1;
        k_attn_decode_tc<64><<<grid, 32, FdSmem<64>::bytes, c->stream>>>(
            (const bf16 *)q, ldq, n_head, n_head_kv, sl2, (const bf16 *)k_pool, (const bf16 *)v_pool, slots, row_off,
            row_len, n_split, chunk, ws, (bf16 *)out);
    }
    if (LAUNCHED(c, "attention decode")) return;
    if (n_split > 1) {
        k_attn_merge<<<dim3(n_rows, n_head), head_dim, 0, c->stream>>>(ws, n_head, head_dim, n_split, (bf16 *)out);
        LAUNCHED(c, "attention merge");
    }
}

extern "C" int cu_attn_tile_rows(void) { return FA_BM; }

extern "C" void cu_attention_prefill(CuCtx *c, const uint16_t *q, int ldq, int n_head, int n_head_kv, int head_dim,
                                     float scale, const uint16_t *k_pool, const uint16_t *v_pool,
                                     const int32_t *slots, const int32_t *tiles, int n_tiles, uint16_t *out)
{
    if (n_tiles <= 0) return;
    if (n_head % n_head_kv || (head_dim != 64 && head_dim != 128)) {
        fail(c, "attention", "unsupported shape (head_dim 64 or 128)");
        return;
    }
    dim3 grid(n_tiles, n_head);
    float sl2 = scale * 1.4426950408889634f;
    if (head_dim == 128) {
        static int set = 0;
        if (!set && !check(c, cudaFuncSetAttribute(k_attn_prefill<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)FaSmem<128>::bytes), "attention smem"))
            set = 1;
        k_attn_prefill<128><<<grid, FA_WARPS * 32, FaSmem<128>::bytes, c->stream>>>(
            (const bf16 *)q, ldq, n_head, n_head_kv, sl2, (const bf16 *)k_pool, (const bf16 *)v_pool, slots,
            (const int4 *)tiles, (bf16 *)out);
    } else {
        static int set = 0;
        if (!set && !check(c, cudaFuncSetAttribute(k_attn_prefill<64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)FaSmem<64>::bytes), "attention smem"))
            set = 1;
        k_attn_prefill<64><<<grid, FA_WARPS * 32, FaSmem<64>::bytes, c->stream>>>(
            (const bf16 *)q, ldq, n_head, n_head_kv, sl2, (const bf16 *)k_pool, (const bf16 *)v_pool, slots,
            (const int4 *)tiles, (bf16 *)out);
    }
    LAUNCHED(c, "attention prefill");
}

/* ---- argmax, counters ------------------------------------------------------------ */

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<bf16>(bf16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }

template <typename T>
__global__ void k_argmax(const T *logits, int v, int32_t *ids)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    const T *row = logits + (size_t)blockIdx.x * v;
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < v; i += blockDim.x) {
        float x = to_f<T>(row[i]);
        if (x > best) best = x, bi = i; /* i increases: the first max is kept */
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > best || (ov == best && oi < bi)) best = ov, bi = oi;
    }
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    if (l == 0) sv[w] = best, si[w] = bi;
    __syncthreads();
    if (w == 0) {
        int nw = blockDim.x >> 5;
        best = l < nw ? sv[l] : -INFINITY;
        bi = l < nw ? si[l] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, best, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > best || (ov == best && oi < bi)) best = ov, bi = oi;
        }
        if (l == 0) ids[blockIdx.x] = bi;
    }
}

extern "C" void cu_argmax(CuCtx *c, const uint16_t *logits, int n, int v, int32_t *ids)
{
    if (n <= 0) return;
    k_argmax<bf16><<<n, 1024, 0, c->stream>>>((const bf16 *)logits, v, ids);
    LAUNCHED(c, "argmax");
}

extern "C" void cu_argmax_f32(CuCtx *c, const float *logits, int n, int v, int32_t *ids)
{
    if (n <= 0) return;
    k_argmax<float><<<n, 1024, 0, c->stream>>>(logits, v, ids);
    LAUNCHED(c, "argmax");
}

__global__ void k_add_i32(int32_t *p, int n, int by)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] += by;
}

extern "C" void cu_add_i32(CuCtx *c, int32_t *p, int n, int by)
{
    if (n <= 0) return;
    k_add_i32<<<(n + 255) / 256, 256, 0, c->stream>>>(p, n, by);
    LAUNCHED(c, "add_i32");
}

/* ---- for kernels in their own .cu files ---- */

extern "C" void *cu_stream(CuCtx *c) { return (void *)c->stream; }

extern "C" void cu_fail(CuCtx *c, const char *what, const char *why) { fail(c, what, why); }

extern "C" uint16_t cu_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

extern "C" float cu_bf16_to_f32(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

