/*
 * kernels/cuda/cuda_device.cu — which GPU the calling host thread drives
 * (the CUDA runtime keeps a current device per thread), for backends on a
 * GPU other than 0 and the threads of a tensor-parallel model.
 */
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"

extern "C" int cu_set_device(int device) { return cudaSetDevice(device) == cudaSuccess ? 0 : -1; }

extern "C" int cu_current_device(void)
{
    int d = -1;
    return cudaGetDevice(&d) == cudaSuccess ? d : -1;
}
