/*
 * kernels/cuda/cuda_comm.c — the NCCL communicator (see cuda_comm.h).
 *
 *   dlopen("libnccl.so.2") once ─► the few entry points below, by dlsym
 *   cuda_nccl_group_new: NCCL_NVLS_ENABLE=0, ncclCommInitAll(n, devices)
 *   rank r's ops ─► ncclAllReduce / ncclAllGather on backend r's stream
 *
 * NCCL's header is not included (the build needs no NCCL): the handful of
 * types it passes are declared here with the values nccl.h gives them
 * (ncclResult_t, ncclDataType_t, ncclRedOp_t are C enums, passed as int).
 *
 * Threads: the library is opened under a mutex; each rank's ops come from
 * that rank's thread (NCCL's one-thread-per-GPU use).
 */
#include "kernels/cuda/cuda_comm.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_ops.h"

/* nccl.h's values */
enum { NCCL_SUCCESS = 0, NCCL_INT8 = 0, NCCL_FLOAT32 = 7, NCCL_BFLOAT16 = 9, NCCL_SUM = 0 };
typedef void *NcclComm;

static struct {
    pthread_mutex_t mu;
    void *lib;
    int version;
    char why[256];              /* why it could not be opened, once tried */
    int (*get_version)(int *);
    int (*comm_init_all)(NcclComm *, int, const int *);
    int (*comm_destroy)(NcclComm);
    int (*all_reduce)(const void *, void *, size_t, int, int, NcclComm, void *);
    int (*all_gather)(const void *, void *, size_t, int, NcclComm, void *);
    const char *(*error_string)(int);
} nccl = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int nccl_open(char *err, size_t errcap)
{
    pthread_mutex_lock(&nccl.mu);
    if (!nccl.lib && !nccl.why[0]) {
        const char *path = getenv("SGL_NCCL_LIB");
        if (!path || !*path) path = "libnccl.so.2";
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            snprintf(nccl.why, sizeof nccl.why, "nccl comm: cannot open %s (set SGL_NCCL_LIB to its path): %s", path,
                     dlerror());
        } else {
#define SYM(field, name)                                   \
    do {                                                   \
        void *p_ = dlsym(h, name);                         \
        memcpy(&nccl.field, &p_, sizeof p_);               \
    } while (0)
            SYM(get_version, "ncclGetVersion");
            SYM(comm_init_all, "ncclCommInitAll");
            SYM(comm_destroy, "ncclCommDestroy");
            SYM(all_reduce, "ncclAllReduce");
            SYM(all_gather, "ncclAllGather");
            SYM(error_string, "ncclGetErrorString");
#undef SYM
            if (!nccl.get_version || !nccl.comm_init_all || !nccl.comm_destroy || !nccl.all_reduce ||
                !nccl.all_gather || !nccl.error_string) {
                snprintf(nccl.why, sizeof nccl.why, "nccl comm: %s lacks an entry point sgl needs", path);
                dlclose(h);
            } else {
                nccl.get_version(&nccl.version);
                nccl.lib = h;
            }
        }
    }
    int ok = nccl.lib != NULL;
    if (!ok && err) snprintf(err, errcap, "%s", nccl.why);
    pthread_mutex_unlock(&nccl.mu);
    return ok ? 0 : -1;
}

typedef struct {
    NcclComm comm;
    KBackend *be;
    void *stream;
    float *flag;                /* one f32 on the device, for the barrier */
    char error[160];
} NcclRank;

typedef struct {
    KCommGroup base;
    int n;
    NcclRank *ranks;
} NcclGroup;

static void failed(NcclRank *r, const char *what, int rc)
{
    if (!r->error[0]) snprintf(r->error, sizeof r->error, "nccl: %s: %s", what, nccl.error_string(rc));
}

static void n_all_reduce(void *ctx, void *buf, size_t count, KDtype dtype)
{
    NcclRank *r = ctx;
    if (dtype != K_DTYPE_F32 && dtype != K_DTYPE_BF16) {
        if (!r->error[0]) snprintf(r->error, sizeof r->error, "nccl: all_reduce of %s", k_dtype_name(dtype));
        return;
    }
    int rc = nccl.all_reduce(buf, buf, count, dtype == K_DTYPE_F32 ? NCCL_FLOAT32 : NCCL_BFLOAT16, NCCL_SUM, r->comm,
                             r->stream);
    if (rc != NCCL_SUCCESS) failed(r, "all_reduce", rc);
}

static void n_all_gather(void *ctx, const void *send, void *recv, size_t bytes)
{
    NcclRank *r = ctx;
    int rc = nccl.all_gather(send, recv, bytes, NCCL_INT8, r->comm, r->stream);
    if (rc != NCCL_SUCCESS) failed(r, "all_gather", rc);
}

static int n_barrier(void *ctx)
{
    NcclRank *r = ctx;
    n_all_reduce(ctx, r->flag, 1, K_DTYPE_F32);
    if (r->be->sync(r->be->ctx) && !r->error[0]) {
        const char *e = r->be->error(r->be->ctx);
        snprintf(r->error, sizeof r->error, "nccl: barrier: %s", e ? e : "device failure");
    }
    return r->error[0] ? -1 : 0;
}

static const char *n_error(void *ctx)
{
    NcclRank *r = ctx;
    static __thread char last[160];
    if (!r->error[0]) return NULL;
    memcpy(last, r->error, sizeof last);
    r->error[0] = 0;
    return last;
}

static void nccl_destroy(KCommGroup *base)
{
    NcclGroup *g = (NcclGroup *)base;
    for (int i = 0; i < g->n; i++) {
        NcclRank *r = &g->ranks[i];
        if (!r->be) continue;
        r->be->dev->bind(r->be->ctx);
        if (r->comm) nccl.comm_destroy(r->comm);
        if (r->flag) r->be->buf_free(r->be->ctx, r->flag);
    }
    free(g->ranks);
    free(g->base.ranks);
    free(g);
}

KCommGroup *cuda_nccl_group_new(int n, KBackend *const *backends, char *err, size_t errcap)
{
    if (n < 1) {
        if (err) snprintf(err, errcap, "nccl comm: %d ranks", n);
        return NULL;
    }
    /* never NVLink multicast (NVLS): it can take a shared host's GPUs out of
     * service; set before NCCL reads its environment at init */
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    if (nccl_open(err, errcap)) return NULL;
    NcclGroup *g = calloc(1, sizeof *g);
    int *devs = calloc((size_t)n, sizeof *devs);
    NcclComm *comms = calloc((size_t)n, sizeof *comms);
    if (!g || !devs || !comms || !(g->ranks = calloc((size_t)n, sizeof *g->ranks)) ||
        !(g->base.ranks = calloc((size_t)n, sizeof *g->base.ranks))) {
        if (g) free(g->ranks);
        free(g);
        free(devs);
        free(comms);
        if (err) snprintf(err, errcap, "nccl comm: out of memory");
        return NULL;
    }
    g->n = n;
    for (int i = 0; i < n; i++) {
        devs[i] = cuda_backend_device(backends[i]);
        for (int j = 0; j < i; j++)
            if (devs[j] == devs[i]) {
                if (err) snprintf(err, errcap, "nccl comm: ranks %d and %d are both on GPU %d", j, i, devs[i]);
                goto fail;
            }
    }
    int rc = nccl.comm_init_all(comms, n, devs);
    if (rc != NCCL_SUCCESS) {
        if (err) snprintf(err, errcap, "nccl comm: ncclCommInitAll over %d GPUs: %s", n, nccl.error_string(rc));
        goto fail;
    }
    int v = nccl.version;
    snprintf(g->base.name, sizeof g->base.name, "nccl %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    g->base.kind = K_COMM_NCCL;
    g->base.n_ranks = n;
    g->base.destroy = nccl_destroy;
    g->base.impl = g;
    for (int i = 0; i < n; i++) {
        NcclRank *r = &g->ranks[i];
        r->comm = comms[i];
        r->be = backends[i];
        r->stream = cuda_backend_stream(backends[i]);
        r->be->dev->bind(r->be->ctx);
        r->flag = r->be->buf_alloc(r->be->ctx, sizeof(float));
        if (!r->flag) {
            if (err) snprintf(err, errcap, "nccl comm: no device memory for the barrier flag on GPU %d", devs[i]);
            free(devs);
            free(comms);
            nccl_destroy(&g->base);
            return NULL;
        }
        r->be->dev->zero(r->be->ctx, r->flag, sizeof(float));
        KComm *c = &g->base.ranks[i];
        *c = (KComm){.rank = i, .n_ranks = n, .ctx = r};
#define X(op, ret, params) c->op = n_##op;
        K_COMM_OPS(X)
#undef X
    }
    free(devs);
    free(comms);
    return &g->base;
fail:
    free(devs);
    free(comms);
    free(g->ranks);
    free(g->base.ranks);
    free(g);
    return NULL;
}
