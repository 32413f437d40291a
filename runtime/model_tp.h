/*
 * runtime/model_tp.h — tensor parallelism: the model on N device backends,
 * one thread per rank, the same batch on all (see model.h, "Tensor
 * parallelism"). Internal to runtime/model.c, like model_dev.h.
 *
 *   caller's thread ── rank 0: the Model itself (its backend, m->device)
 *        │  job (open, upload, reserve, kv, forward, close)
 *        ├──────────► rank 1's thread: a copy of the Model (shared host
 *        │            tensors; its own backend on device 1, ModelDevice,
 *        │            KV pool)
 *        └──────────► rank N-1's thread ...
 *   every rank runs runtime/model_dev.c on its shard; the KCommGroup
 *   (kernels/comm.h) joins them inside each forward.
 *
 * Invariants:
 *   - A job runs on every rank at once and returns when all have finished;
 *     rank 0 runs it on the caller's thread (binding its backend first).
 *   - The caller's KV pool is rank 0's; ranks 1.. hold pools of the same
 *     slot count for their own KV heads, replaced when model_kv_new is
 *     called again.
 *
 * Ownership: the ModelTp is the model's (m->tp), freed by mtp_free before
 * model_free frees rank 0's device state and backend.
 */
#ifndef SGL_RUNTIME_MODEL_TP_H
#define SGL_RUNTIME_MODEL_TP_H

#include <stddef.h>

#include "runtime/model.h"

typedef struct ModelTp ModelTp;

/* 1 when the options ask for the sharded path (tp > 1, or a named
 * communicator at tp 1). */
int mtp_wanted(const Model *m);

/* The ranks for a model whose rank-0 backend is made (m->backend, a device
 * backend on device 0, no device state yet): checks that the shape divides,
 * makes ranks 1.. (threads, backends on devices 1..), the communicator
 * group, and uploads every rank's shard. 0, or -1 with a message (nothing
 * of it left). */
int mtp_open(Model *m, char *err, size_t errcap);
/* Ranks 1.. and the group; rank 0's state stays for model_free. */
void mtp_free(Model *m);

/* The model_dev.h calls, on every rank. */
int mtp_reserve(Model *m, int max_tokens, int max_rows, char *err, size_t errcap);
int mtp_kv_slots(const Model *m);
KvPool *mtp_kv_new(Model *m, int n_slots, char *err, size_t errcap);
int mtp_forward(Model *m, KvPool *kv, ModelBatch *b, int N, int R, char *err, size_t errcap);

/* The communicator's name ("nccl 2.27.3", "host"), NULL without tp. */
const char *mtp_comm_name(const Model *m);

/* 0 when cfg splits over n ranks (n_head_kv, n_ff and vocab divide by n,
 * and vocab/n by 4), else -1 with a message naming the dimension. */
int mtp_check_shape(const ModelConfig *cfg, int n, char *err, size_t errcap);

#endif
