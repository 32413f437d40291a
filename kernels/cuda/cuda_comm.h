/*
 * kernels/cuda/cuda_comm.h — the NCCL communicator (kernels/comm.h, kind
 * NCCL) over CUDA backends, for kernels/comm.c's k_comm_group_new.
 *
 * NCCL is not linked: libnccl.so.2 is opened with dlopen at the first group
 * ($SGL_NCCL_LIB when set, else the loader's search path), so sgl builds
 * and runs without it until a group is asked for. NCCL_NVLS_ENABLE is set
 * to 0 before NCCL initialises: NVLink multicast is never used.
 */
#ifndef SGL_KERNELS_CUDA_COMM_H
#define SGL_KERNELS_CUDA_COMM_H

#include <stddef.h>

#include "kernels/comm.h"

/* One communicator per backend (rank r on backends[r], a CUDA backend of
 * its own GPU; one GPU may serve one rank only), made with
 * ncclCommInitAll from the calling thread. NULL with a message. */
KCommGroup *cuda_nccl_group_new(int n, KBackend *const *backends, char *err, size_t errcap);

#endif
