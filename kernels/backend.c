/*
 * kernels/backend.c — the backends this build has, behind k_backend_new
 * (kernels/backend.h): the one place above kernels/cpu and kernels/cuda
 * that knows them by name, so the runtime picks a backend by kind without
 * including any backend's header.
 *
 * Owns: the kind -> constructor mapping and the host-side dequantization
 * loaders use. Does not own: any op (each backend's own files).
 */
#include "kernels/backend.h"

#include <stdio.h>

#include "kernels/cpu/cpu.h"
#ifdef SGL_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

static const char *const kind_names[] = {
#define X(name, str) str,
    K_BACKEND_KINDS(X)
#undef X
};
static_assert(sizeof kind_names / sizeof kind_names[0] == K_BACKEND_COUNT_, "one name per backend kind");

const char *k_backend_kind_name(KBackendKind k)
{
    return (unsigned)k < K_BACKEND_COUNT_ ? kind_names[k] : "?";
}

KBackend *k_backend_new(const KBackendConfig *c, char *err, size_t errcap)
{
    switch (c->kind) {
    case K_BACKEND_CPU:
        return cpu_backend_new(c->n_threads, c->flags | (c->batch_invariant ? CPU_NO_BLAS : 0), err, errcap);
    case K_BACKEND_CPU_REF:
        return cpu_ref_backend_new(err, errcap);
    case K_BACKEND_CUDA:
#ifdef SGL_CUDA
        return cuda_backend_new_on(c->device, err, errcap);
#else
        if (err) snprintf(err, errcap, "backend: this build has no CUDA backend (built without nvcc)");
        return NULL;
#endif
    case K_BACKEND_DEV_REF:
        return cpu_devref_backend_new(err, errcap);
    case K_BACKEND_COUNT_:
        break;
    }
    if (err) snprintf(err, errcap, "backend: unknown kind %d", (int)c->kind);
    return NULL;
}

int k_backend_usable(KBackendKind k)
{
    switch (k) {
    case K_BACKEND_CPU:
    case K_BACKEND_CPU_REF:
    case K_BACKEND_DEV_REF:
        return 1;
    case K_BACKEND_CUDA:
#ifdef SGL_CUDA
        return cuda_backend_usable();
#else
        return 0;
#endif
    case K_BACKEND_COUNT_:
        break;
    }
    return 0;
}

void k_dequant_row_host(KDtype t, const void *src, float *dst, int64_t n)
{
    cpu_dequant_row(t, src, dst, n);
}

int k_quant_row_host(KDtype t, const float *src, void *dst, int64_t n)
{
    if (t == K_DTYPE_Q8_1 || t == K_DTYPE_Q8_K) return -1;   /* activation-only types */
    return cpu_quant_row(t, src, dst, n);
}
