/*
 * runtime/kvpool.c — KV slot storage and the free-slot stack (see kvpool.h).
 */
#include "runtime/kvpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t kv_bytes(int n_layer, int n_slots, int kv_dim, KDtype dtype)
{
    return 2 * (size_t)n_layer * (size_t)n_slots * k_row_bytes(dtype, kv_dim);
}

static KvPool *pool_new(const KBackend *b, int n_layer, int n_slots, int kv_dim, KDtype dtype, char *err,
                        size_t errcap)
{
    if (n_layer <= 0 || n_slots <= 0 || kv_dim <= 0) {
        if (err) snprintf(err, errcap, "kv pool: bad sizes (%d layers, %d slots, kv_dim %d)", n_layer, n_slots, kv_dim);
        return NULL;
    }
    if (dtype != K_DTYPE_F16 && dtype != K_DTYPE_F32 && !(b && (dtype == K_DTYPE_BF16 || dtype == K_DTYPE_F8_E4M3))) {
        if (err)
            snprintf(err, errcap, "kv pool: dtype %s not supported (F16 or F32%s)", k_dtype_name(dtype),
                     b ? ", BF16 or F8_E4M3 on a device" : "");
        return NULL;
    }
    KvPool *p = calloc(1, sizeof *p);
    if (!p) goto oom;
    p->n_layer = n_layer;
    p->n_slots = n_slots;
    p->kv_dim = kv_dim;
    p->dtype = dtype;
    p->k = calloc((size_t)n_layer, sizeof *p->k);
    p->v = calloc((size_t)n_layer, sizeof *p->v);
    p->free_slots = malloc((size_t)n_slots * sizeof *p->free_slots);
    if (!p->k || !p->v || !p->free_slots) goto oom;
    size_t layer_bytes = (size_t)n_slots * k_row_bytes(dtype, kv_dim);
    if (b) {
        p->mem = b;
        p->k_base = b->buf_alloc(b->ctx, layer_bytes * (size_t)n_layer);
        p->v_base = p->k_base ? b->buf_alloc(b->ctx, layer_bytes * (size_t)n_layer) : NULL;
        if (!p->v_base) goto oom;
        /* zeroed: attention may read a never-written slot with weight 0 */
        b->dev->zero(b->ctx, p->k_base, layer_bytes * (size_t)n_layer);
        b->dev->zero(b->ctx, p->v_base, layer_bytes * (size_t)n_layer);
        if (b->sync(b->ctx)) {
            const char *e = b->error(b->ctx);
            if (err) snprintf(err, errcap, "kv pool: %s", e ? e : "device failure");
            kv_free(p);
            return NULL;
        }
        for (int l = 0; l < n_layer; l++) {
            p->k[l] = (char *)p->k_base + (size_t)l * layer_bytes;
            p->v[l] = (char *)p->v_base + (size_t)l * layer_bytes;
        }
    }
    for (int l = 0; !b && l < n_layer; l++) {
        /* zeroed so that reading a never-written slot is harmless */
        p->k[l] = calloc(1, layer_bytes);
        p->v[l] = calloc(1, layer_bytes);
        if (!p->k[l] || !p->v[l]) goto oom;
    }
    /* pop order 0, 1, 2, ...: keeps early allocations contiguous */
    for (int i = 0; i < n_slots; i++) p->free_slots[i] = n_slots - 1 - i;
    p->n_free = n_slots;
    return p;
oom:
    if (err)
        snprintf(err, errcap, "kv pool: out of memory for %d slots (%.1f MiB)", n_slots,
                 kv_bytes(n_layer, n_slots, kv_dim, dtype) / 1048576.0);
    kv_free(p);
    return NULL;
}

KvPool *kv_new(int n_layer, int n_slots, int kv_dim, KDtype dtype, char *err, size_t errcap)
{
    return pool_new(NULL, n_layer, n_slots, kv_dim, dtype, err, errcap);
}

KvPool *kv_new_on(const KBackend *b, int n_layer, int n_slots, int kv_dim, KDtype dtype, char *err, size_t errcap)
{
    if (!b->dev) return pool_new(NULL, n_layer, n_slots, kv_dim, dtype, err, errcap);
    return pool_new(b, n_layer, n_slots, kv_dim, dtype, err, errcap);
}

void kv_free(KvPool *p)
{
    if (!p) return;
    if (p->mem) {
        p->mem->buf_free(p->mem->ctx, p->k_base);
        p->mem->buf_free(p->mem->ctx, p->v_base);
        free(p->k);
        free(p->v);
        free(p->free_slots);
        free(p);
        return;
    }
    for (int l = 0; l < p->n_layer; l++) {
        if (p->k) free(p->k[l]);
        if (p->v) free(p->v[l]);
    }
    free(p->k);
    free(p->v);
    free(p->free_slots);
    free(p);
}

int kv_n_free(const KvPool *p) { return p->n_free; }

int kv_alloc(KvPool *p, int n, int32_t *out)
{
    if (n < 0 || n > p->n_free) return -1;
    for (int i = 0; i < n; i++) out[i] = p->free_slots[--p->n_free];
    return 0;
}

void kv_release(KvPool *p, const int32_t *slots, int n)
{
    for (int i = 0; i < n && p->n_free < p->n_slots; i++) p->free_slots[p->n_free++] = slots[i];
}

int kv_check(const KvPool *p)
{
    if (p->n_free < 0 || p->n_free > p->n_slots) return -1;
    unsigned char *seen = calloc((size_t)p->n_slots, 1);
    if (!seen) return -1;
    int bad = 0;
    for (int i = 0; i < p->n_free && !bad; i++) {
        int32_t s = p->free_slots[i];
        if (s < 0 || s >= p->n_slots || seen[s]) bad = 1;
        else seen[s] = 1;
    }
    free(seen);
    return bad ? -1 : 0;
}
