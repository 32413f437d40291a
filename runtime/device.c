/*
 * runtime/device.c — sgl_set_device / sgl_device_name (include/sgl.h) and
 * runtime_device_options (runtime/device.h).
 */
#include "runtime/device.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "include/sgl.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int chosen = -1;         /* a KBackendKind, or -1: auto */
static double fraction;         /* 0: the default */

static KBackendKind resolve(int kind)
{
    if (kind >= 0) return (KBackendKind)kind;
    return k_backend_usable(K_BACKEND_CUDA) ? K_BACKEND_CUDA : K_BACKEND_CPU;
}

sgl_status sgl_set_device(const char *device, double mem_fraction, char *err, size_t errcap)
{
    int kind;
    if (!device || !strcmp(device, "auto")) kind = -1;
    else if (!strcmp(device, "cpu")) kind = K_BACKEND_CPU;
    else if (!strcmp(device, "cuda")) kind = K_BACKEND_CUDA;
    else {
        if (err) snprintf(err, errcap, "unknown device '%s' (cpu, cuda or auto)", device);
        return SGL_ERR_USAGE;
    }
    if (kind == K_BACKEND_CUDA && !k_backend_usable(K_BACKEND_CUDA)) {
        KBackendConfig c = {.kind = K_BACKEND_CUDA};
        char why[256] = "";
        KBackend *b = k_backend_new(&c, why, sizeof why);
        if (b) b->destroy(b->ctx);
        if (err) snprintf(err, errcap, "device cuda: %s", why[0] ? why : "no GPU is visible");
        return SGL_ERR_USAGE;
    }
    if (mem_fraction < 0 || mem_fraction > 1) {
        if (err) snprintf(err, errcap, "mem-fraction %g is outside (0, 1]", mem_fraction);
        return SGL_ERR_USAGE;
    }
    pthread_mutex_lock(&mu);
    chosen = kind;
    fraction = mem_fraction;
    pthread_mutex_unlock(&mu);
    return SGL_OK;
}

const char *sgl_device_name(void)
{
    pthread_mutex_lock(&mu);
    int k = chosen;
    pthread_mutex_unlock(&mu);
    return k_backend_kind_name(resolve(k));
}

void runtime_device_options(ModelOptions *o)
{
    pthread_mutex_lock(&mu);
    int k = chosen;
    double f = fraction;
    pthread_mutex_unlock(&mu);
    o->backend = resolve(k);
    o->mem_fraction = f;
}
