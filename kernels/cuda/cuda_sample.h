/*
 * kernels/cuda/cuda_sample.h — sampling on the GPU: the KDevSample op of
 * kernels/backend.h (see there for what it computes and
 * kernels/cuda/cuda_sample.cu for how). Every pointer in the KDevSample is
 * device memory; the launch goes on the context's stream and returns at
 * once (nothing allocated, no synchronisation). A launch failure is
 * recorded on the context (cu_error).
 */
#ifndef SGL_KERNELS_CUDA_SAMPLE_H
#define SGL_KERNELS_CUDA_SAMPLE_H

#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

void cu_sample(CuCtx *c, const KDevSample *s);

#ifdef __cplusplus
}
#endif

#endif
