/*
 * kernels/comm.h — collectives between the ranks of a tensor-parallel model:
 * one communicator per rank, each bound to that rank's backend.
 *
 *   KCommGroup (made once, from one thread, over n backends)
 *     ├─ ranks[0]: KComm ── ops issued by rank 0's thread, on backend 0
 *     ├─ ranks[1]: KComm ── ops issued by rank 1's thread, on backend 1
 *     └─ ...
 *
 *   rank r's buffer ──all_reduce(sum)──► the same sum in every rank's buffer
 *   rank r's send   ──all_gather──────► recv = [rank 0's | rank 1's | ...]
 *
 * Kinds:
 *   NCCL  CUDA backends, one GPU each (kernels/cuda/cuda_comm.c): libnccl.so.2
 *         is opened with dlopen at the first group, so builds, `make test`
 *         and single-GPU runs need no NCCL; NCCL_NVLS_ENABLE=0 is set before
 *         its init (NVLink multicast is never used). Ops are queued on the
 *         rank's backend stream, ordered with its other work.
 *   HOST  backends whose memory is host memory (dev-ref): threads and shared
 *         memory (kernels/comm.c); ops run when called and return finished.
 *   AUTO  NCCL for CUDA backends, HOST for host-memory ones.
 *
 * Invariants:
 *   - Every rank calls the same collectives in the same order with the same
 *     sizes; a rank that skips one blocks the others (as with NCCL).
 *   - all_reduce is in place and leaves bitwise the same values on every
 *     rank (HOST: summed in f32 in rank order, rounded once to the dtype).
 *   - Buffers are in the rank's backend memory (buf_alloc).
 *
 * Ownership: k_comm_group_new returns a group freed by k_comm_group_free,
 * which the backends must outlive; the KComm entries are the group's.
 *
 * Threads: one thread per rank issues that rank's ops (the group is made
 * and freed by one thread while no op runs).
 */
#ifndef SGL_KERNELS_COMM_H
#define SGL_KERNELS_COMM_H

#include <stddef.h>

#include "kernels/backend.h"

/* name, string (flags and messages) */
#define K_COMM_KINDS(X) \
    X(AUTO, "auto")     \
    X(NCCL, "nccl")     \
    X(HOST, "host")

typedef enum {
#define X(name, str) K_COMM_##name,
    K_COMM_KINDS(X)
#undef X
    K_COMM_COUNT_
} KCommKind;

/*
 *   all_reduce  buf[0..count) of dtype (F32 or BF16) := the sum over ranks
 *   all_gather  recv[k * bytes ..] := rank k's send[0..bytes), for every k
 *   barrier     returns once every rank has called it and this rank's
 *               earlier ops (and its backend's) have finished; 0, or -1
 *               (error says why)
 *   error       NULL if every op since the last call ran, else a message
 *               for the first that did not (cleared)
 */
#define K_COMM_OPS(X)                                                                  \
    X(all_reduce, void, (void *ctx, void *buf, size_t count, KDtype dtype))            \
    X(all_gather, void, (void *ctx, const void *send, void *recv, size_t bytes))       \
    X(barrier, int, (void *ctx))                                                       \
    X(error, const char *, (void *ctx))

typedef struct KComm {
    int rank, n_ranks;
    void *ctx;
#define X(op, ret, params) ret (*op) params;
    K_COMM_OPS(X)
#undef X
} KComm;

typedef struct KCommGroup {
    char name[64];              /* "nccl 2.27.3", "host" */
    KCommKind kind;             /* NCCL or HOST, after AUTO */
    int n_ranks;
    KComm *ranks;               /* [n_ranks] */
    void (*destroy)(struct KCommGroup *g);
    void *impl;
} KCommGroup;

/* A group over backends[0..n) (rank r on backends[r]; made by k_backend_new
 * of backend_kind). NULL with a message when the kind cannot serve those
 * backends (HOST over device memory, NCCL without CUDA) or cannot start
 * (libnccl.so.2 not found, its init failed). */
KCommGroup *k_comm_group_new(KCommKind kind, KBackendKind backend_kind, int n, KBackend *const *backends,
                             char *err, size_t errcap);
void k_comm_group_free(KCommGroup *g);

/* "auto", "nccl", "host"; "?" outside the list. */
const char *k_comm_kind_name(KCommKind k);
/* The kind named s, or -1. */
int k_comm_kind_from_name(const char *s);

/* The HOST group (kernels/comm.c), for tests and k_comm_group_new. */
KCommGroup *k_comm_host_group_new(int n, char *err, size_t errcap);

#endif
