/*
 * runtime/kvpool.h — the token-granular KV cache (SGLang's page size 1).
 *
 * Owns: one K and one V allocation per layer, each n_slots rows of kv_dim
 * (n_head_kv * head_dim) values in F16 or F32, and the free list of slots.
 * A slot holds one token's K and V in every layer; a sequence's context is
 * just an array of slot indices (which the radix cache shares between
 * sequences). Does not own: which slots belong to which sequence (the
 * scheduler / radix tree), what is written into them (model_forward).
 *
 *   layer l:  k[l] ──► | slot 0 | slot 1 | ... | slot n_slots-1 |   kv_dim each
 *             v[l] ──► | slot 0 | slot 1 | ... | slot n_slots-1 |
 *
 * Placement: kv_new puts K/V in host memory; kv_new_on in a backend's own
 * memory (a device backend's KBackend.buf_alloc: the model computes there
 * and k[l] / v[l] are device pointers, never read by the host). The free
 * list is on the host either way.
 *
 * Ownership: kv_new / kv_new_on return a pool freed by kv_free. Threads:
 * used by the engine thread only.
 */
#ifndef SGL_RUNTIME_KVPOOL_H
#define SGL_RUNTIME_KVPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

typedef struct KvPool {
    int n_layer;
    int n_slots;
    int kv_dim;
    KDtype dtype;               /* F16 or F32 on the host; BF16 or F8_E4M3 on a device */
    void **k;                   /* [n_layer] -> [n_slots][kv_dim] */
    void **v;
    const KBackend *mem;        /* whose memory k/v are in; NULL: the host's */
    void *k_base, *v_base;      /* kv_new_on: one allocation each for all layers */
    int32_t *free_slots;        /* stack of free slot ids (internal) */
    int n_free;
} KvPool;

/* dtype must be F16 or F32. All slots start free. */
KvPool *kv_new(int n_layer, int n_slots, int kv_dim, KDtype dtype, char *err, size_t errcap);
/* The same in backend b's memory (zeroed there), dtype F16, F32, BF16 or
 * F8_E4M3 (ModelOptions.kv_cache_dtype fp8_e4m3).
 * The backend must outlive the pool. */
KvPool *kv_new_on(const KBackend *b, int n_layer, int n_slots, int kv_dim, KDtype dtype, char *err, size_t errcap);
void kv_free(KvPool *p);

/* Bytes of K+V memory for these sizes (to size a pool from a memory budget). */
size_t kv_bytes(int n_layer, int n_slots, int kv_dim, KDtype dtype);

int kv_n_free(const KvPool *p);
/* Takes n free slots into out[0..n); returns 0, or -1 (taking nothing) when
 * fewer than n are free. */
int kv_alloc(KvPool *p, int n, int32_t *out);
/* Returns slots to the free list. Each must be currently allocated
 * (returning a slot twice corrupts the list; kv_check finds it). */
void kv_release(KvPool *p, const int32_t *slots, int n);
/* Consistency check for tests: free list has no duplicates or out-of-range
 * ids. Returns 0 when consistent. */
int kv_check(const KvPool *p);

#endif
