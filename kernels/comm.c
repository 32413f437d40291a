/*
 * kernels/comm.c — k_comm_group_new (kernels/comm.h) and the HOST
 * communicator: the ranks are threads of this process and their buffers are
 * host memory, so a collective is a rendezvous on a barrier plus plain
 * copies.
 *
 *   all_reduce, rank r:   publish buf ─barrier─ sum chunk r of every rank's
 *                         buf into a private f32 row ─barrier─ write chunk r
 *                         (rounded once) into every rank's buf ─barrier─
 *   all_gather, rank r:   publish send ─barrier─ copy every rank's send into
 *                         recv ─barrier─
 *
 * The summation order is rank 0, 1, ... for every element, so each rank
 * ends with the same bits. The NCCL communicator lives in
 * kernels/cuda/cuda_comm.c.
 */
#include "kernels/comm.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SGL_CUDA
#include "kernels/cuda/cuda_comm.h"
#endif

static const char *const kind_names[] = {
#define X(name, str) str,
    K_COMM_KINDS(X)
#undef X
};
static_assert(sizeof kind_names / sizeof kind_names[0] == K_COMM_COUNT_, "one name per communicator kind");

const char *k_comm_kind_name(KCommKind k) { return (unsigned)k < K_COMM_COUNT_ ? kind_names[k] : "?"; }

int k_comm_kind_from_name(const char *s)
{
    for (int k = 0; s && k < K_COMM_COUNT_; k++)
        if (!strcmp(s, kind_names[k])) return k;
    return -1;
}

/* ---- HOST ---- */

typedef struct HostGroup HostGroup;

typedef struct {
    HostGroup *g;
    int rank;
    float *row;                 /* this rank's chunk sums */
    size_t row_cap;
    char error[96];
} HostRank;

struct HostGroup {
    KCommGroup base;
    pthread_barrier_t bar;
    int n;
    void **bufs;                /* [n] what each rank published */
    HostRank *ranks;
};

static void sync_all(HostGroup *g) { pthread_barrier_wait(&g->bar); }

static void chunk_of(size_t count, int n, int r, size_t *lo, size_t *hi)
{
    size_t per = (count + (size_t)n - 1) / (size_t)n;
    *lo = per * (size_t)r < count ? per * (size_t)r : count;
    *hi = *lo + per < count ? *lo + per : count;
}

static void h_all_reduce(void *ctx, void *buf, size_t count, KDtype dtype)
{
    HostRank *me = ctx;
    HostGroup *g = me->g;
    size_t lo, hi;
    chunk_of(count, g->n, me->rank, &lo, &hi);
    int ok = dtype == K_DTYPE_F32 || dtype == K_DTYPE_BF16;
    if (ok && hi - lo > me->row_cap) {
        float *r = realloc(me->row, (hi - lo) * sizeof *r);
        if (r) {
            me->row = r;
            me->row_cap = hi - lo;
        } else ok = 0;
    }
    if (!ok && !me->error[0])
        snprintf(me->error, sizeof me->error, "host comm: all_reduce of %s %s", k_dtype_name(dtype),
                 dtype == K_DTYPE_F32 || dtype == K_DTYPE_BF16 ? "ran out of memory" : "is not supported");
    /* every rank takes part in the rendezvous even when it cannot sum, so
     * that the others do not wait forever; its chunk is then left as is */
    g->bufs[me->rank] = buf;
    sync_all(g);
    if (ok)
        for (size_t i = lo; i < hi; i++) {
            float s = 0;
            for (int k = 0; k < g->n; k++)
                s += dtype == K_DTYPE_F32 ? ((const float *)g->bufs[k])[i]
                                          : k_bf16_to_f32(((const uint16_t *)g->bufs[k])[i]);
            me->row[i - lo] = s;
        }
    sync_all(g);
    if (ok)
        for (int k = 0; k < g->n; k++)
            for (size_t i = lo; i < hi; i++) {
                if (dtype == K_DTYPE_F32) ((float *)g->bufs[k])[i] = me->row[i - lo];
                else ((uint16_t *)g->bufs[k])[i] = k_f32_to_bf16(me->row[i - lo]);
            }
    sync_all(g);
}

static void h_all_gather(void *ctx, const void *send, void *recv, size_t bytes)
{
    HostRank *me = ctx;
    HostGroup *g = me->g;
    g->bufs[me->rank] = (void *)send;
    sync_all(g);
    for (int k = 0; k < g->n; k++) memcpy((char *)recv + (size_t)k * bytes, g->bufs[k], bytes);
    sync_all(g);
}

static int h_barrier(void *ctx)
{
    HostRank *me = ctx;
    sync_all(me->g);
    return me->error[0] ? -1 : 0;
}

static const char *h_error(void *ctx)
{
    HostRank *me = ctx;
    static __thread char last[96];
    if (!me->error[0]) return NULL;
    memcpy(last, me->error, sizeof last);
    me->error[0] = 0;
    return last;
}

static void host_destroy(KCommGroup *base)
{
    HostGroup *g = (HostGroup *)base;
    for (int r = 0; r < g->n; r++) free(g->ranks[r].row);
    pthread_barrier_destroy(&g->bar);
    free(g->ranks);
    free(g->bufs);
    free(g->base.ranks);
    free(g);
}

KCommGroup *k_comm_host_group_new(int n, char *err, size_t errcap)
{
    if (n < 1) {
        if (err) snprintf(err, errcap, "host comm: %d ranks", n);
        return NULL;
    }
    HostGroup *g = calloc(1, sizeof *g);
    if (!g || !(g->bufs = calloc((size_t)n, sizeof *g->bufs)) || !(g->ranks = calloc((size_t)n, sizeof *g->ranks)) ||
        !(g->base.ranks = calloc((size_t)n, sizeof *g->base.ranks)) ||
        pthread_barrier_init(&g->bar, NULL, (unsigned)n)) {
        if (g) {
            free(g->bufs);
            free(g->ranks);
            free(g->base.ranks);
        }
        free(g);
        if (err) snprintf(err, errcap, "host comm: out of memory");
        return NULL;
    }
    g->n = n;
    snprintf(g->base.name, sizeof g->base.name, "host");
    g->base.kind = K_COMM_HOST;
    g->base.n_ranks = n;
    g->base.destroy = host_destroy;
    g->base.impl = g;
    for (int r = 0; r < n; r++) {
        g->ranks[r] = (HostRank){.g = g, .rank = r};
        KComm *c = &g->base.ranks[r];
        *c = (KComm){.rank = r, .n_ranks = n, .ctx = &g->ranks[r]};
#define X(op, ret, params) c->op = h_##op;
        K_COMM_OPS(X)
#undef X
    }
    return &g->base;
}

/* ---- the choice ---- */

KCommGroup *k_comm_group_new(KCommKind kind, KBackendKind backend_kind, int n, KBackend *const *backends,
                             char *err, size_t errcap)
{
    int host_memory = backend_kind != K_BACKEND_CUDA;
    if (kind == K_COMM_AUTO) kind = host_memory ? K_COMM_HOST : K_COMM_NCCL;
    if (kind == K_COMM_HOST) {
        if (!host_memory) {
            if (err)
                snprintf(err, errcap, "host comm: the %s backend's buffers are device memory; use nccl",
                         k_backend_kind_name(backend_kind));
            return NULL;
        }
        return k_comm_host_group_new(n, err, errcap);
    }
    if (kind != K_COMM_NCCL) {
        if (err) snprintf(err, errcap, "comm: unknown kind %d", (int)kind);
        return NULL;
    }
    if (backend_kind != K_BACKEND_CUDA) {
        if (err) snprintf(err, errcap, "nccl comm: needs the cuda backend, not %s", k_backend_kind_name(backend_kind));
        return NULL;
    }
#ifdef SGL_CUDA
    return cuda_nccl_group_new(n, backends, err, errcap);
#else
    if (err) snprintf(err, errcap, "nccl comm: this build has no CUDA backend (built without nvcc)");
    return NULL;
#endif
}

void k_comm_group_free(KCommGroup *g)
{
    if (g) g->destroy(g);
}
