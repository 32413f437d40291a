/*
 * runtime/model_dev.h — the model on a device backend (KBackend.dev set):
 * weights uploaded once, activations planned up front, the forward pass
 * over flat index arrays. Internal to runtime/model.c, which calls these
 * when its backend has a device table; nothing else includes this file.
 *
 *   host (model.c)                          device (backend memory)
 *   ──────────────                          ───────────────────────
 *   KTensor weights (mmap, any dtype) ──►   bf16: qkv = [Wq; Wk; Wv], o,
 *     converted row by row to bf16          gu = [Wgate; Wup], down, norms,
 *                                           qkv bias, embedding, lm head
 *   ModelBatch ── one int32 array ──────►   tokens | pos | wslot | row_off |
 *                                           row_len | logit rows | slots
 *   batch->logits (pinned, f32) ◄────────   logits of the asked-for rows only
 *
 * Memory plan (ModelOptions.mem_fraction of the memory free when the
 * backend was made): weights first, then activations for the largest step
 * (model_reserve), and what remains of the fraction is the KV pool
 * (mdev_kv_slots). Nothing is allocated per forward unless a batch outgrows
 * the plan.
 *
 * Threads: the model's thread only.
 */
#ifndef SGL_RUNTIME_MODEL_DEV_H
#define SGL_RUNTIME_MODEL_DEV_H

#include <stddef.h>

#include "runtime/model.h"

typedef struct ModelDevice ModelDevice;

/* Uploads the weights of m (validated, model_finish done) to m->backend,
 * recording the free memory first. 0, or -1 with a message. */
int mdev_open(Model *m, char *err, size_t errcap);
void mdev_free(Model *m);

/* Activations for max_tokens rows and max_rows logit rows (grows only). */
int mdev_reserve(Model *m, int max_tokens, int max_rows, char *err, size_t errcap);

/* KV slots left in the plan (mem_fraction) after weights and activations. */
int mdev_kv_slots(const Model *m);

/* The forward of model.h on the device; the batch is validated already
 * (N new tokens, R logit rows). */
int mdev_forward(Model *m, KvPool *kv, ModelBatch *b, int N, int R, char *err, size_t errcap);

/* model_sample on the device: the rows mdev_forward kept for it. */
int mdev_sample(Model *m, ModelBatch *b, char *err, size_t errcap);

/* model_launch / model_wait on the device (model.h states the contract;
 * the batch is validated already). */
int mdev_launch(Model *m, KvPool *kv, ModelBatch *b, int N, int R, char *err, size_t errcap);
int mdev_wait(Model *m, ModelBatch *b, char *err, size_t errcap);
int mdev_in_flight(const Model *m);

/* Bytes of device memory the weights take. */
size_t mdev_weight_bytes(const Model *m);

#endif
