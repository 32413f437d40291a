/*
 * kernels/cuda/cuda_overlap.cu — the overlap scheduler's device ops (see
 * cuda_overlap.h).
 */
#include "kernels/cuda/cuda_overlap.h"

#include <cuda_runtime.h>

static int ok(CuCtx *c, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return 1;
    cu_fail(c, what, cudaGetErrorString(e));
    return 0;
}

__global__ void k_pick_tokens(int32_t *tok, const int32_t *src, const int32_t *prev, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && src[i] >= 0) tok[i] = prev[src[i]];
}

extern "C" void cu_pick_tokens(CuCtx *c, int32_t *tok, const int32_t *src, const int32_t *prev, int n)
{
    if (n <= 0) return;
    k_pick_tokens<<<(n + 255) / 256, 256, 0, (cudaStream_t)cu_stream(c)>>>(tok, src, prev, n);
    ok(c, cudaGetLastError(), "pick_tokens");
}

extern "C" void cu_download_async(CuCtx *c, void *dst, const void *src, size_t bytes)
{
    ok(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)cu_stream(c)), "download_async");
}

extern "C" void cu_upload_async(CuCtx *c, void *dst, const void *src, size_t bytes)
{
    ok(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)cu_stream(c)), "upload_async");
}

extern "C" void *cu_event_new(CuCtx *c)
{
    cudaEvent_t ev;
    if (!ok(c, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "event")) return NULL;
    return (void *)ev;
}

extern "C" void cu_event_free(CuCtx *c, void *ev)
{
    if (ev) ok(c, cudaEventDestroy((cudaEvent_t)ev), "event");
}

extern "C" void cu_event_record(CuCtx *c, void *ev)
{
    ok(c, cudaEventRecord((cudaEvent_t)ev, (cudaStream_t)cu_stream(c)), "event");
}

extern "C" int cu_event_wait(CuCtx *c, void *ev)
{
    /* a failed op before it is named by the error op (cu_error), which
     * the caller checks after the wait */
    return ok(c, cudaEventSynchronize((cudaEvent_t)ev), "event wait") ? 0 : -1;
}
