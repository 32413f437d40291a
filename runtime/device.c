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
static int tp_size;             /* sgl_set_tensor_parallel: 0, 1: none */
static KCommKind tp_comm = K_COMM_AUTO;
static ModelQuant quant;        /* sgl_set_quantization */
static ModelKvCache kv_cache;

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
    else if (!strcmp(device, "dev-ref")) kind = K_BACKEND_DEV_REF; /* the reference device backend: tests */
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

sgl_status sgl_set_tensor_parallel(int tp, const char *comm, char *err, size_t errcap)
{
    if (tp < 0 || tp > 64) {
        if (err) snprintf(err, errcap, "tp %d is outside 0..64", tp);
        return SGL_ERR_USAGE;
    }
    int kind = comm ? k_comm_kind_from_name(comm) : K_COMM_AUTO;
    if (kind < 0) {
        if (err) snprintf(err, errcap, "unknown communicator '%s' (nccl, host or auto)", comm);
        return SGL_ERR_USAGE;
    }
    pthread_mutex_lock(&mu);
    tp_size = tp;
    tp_comm = (KCommKind)kind;
    pthread_mutex_unlock(&mu);
    return SGL_OK;
}

sgl_status sgl_set_quantization(const char *quantization, const char *kv_cache_dtype, char *err, size_t errcap)
{
    int q = model_quant_from_name(quantization), kv = model_kv_cache_from_name(kv_cache_dtype);
    if (q < 0) {
        if (err) snprintf(err, errcap, "unknown quantization '%s' (none or fp8)", quantization);
        return SGL_ERR_USAGE;
    }
    if (kv < 0) {
        if (err) snprintf(err, errcap, "unknown kv-cache-dtype '%s' (auto, bf16 or fp8_e4m3)", kv_cache_dtype);
        return SGL_ERR_USAGE;
    }
    pthread_mutex_lock(&mu);
    quant = (ModelQuant)q;
    kv_cache = (ModelKvCache)kv;
    pthread_mutex_unlock(&mu);
    return SGL_OK;
}

void runtime_device_options(ModelOptions *o)
{
    pthread_mutex_lock(&mu);
    int k = chosen;
    double f = fraction;
    int tp = tp_size;
    KCommKind comm = tp_comm;
    o->quantization = quant;
    o->kv_cache_dtype = kv_cache;
    pthread_mutex_unlock(&mu);
    o->backend = resolve(k);
    o->mem_fraction = f;
    o->tp = tp;
    o->tp_comm = comm;
}
