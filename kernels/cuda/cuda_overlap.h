/*
 * kernels/cuda/cuda_overlap.h — the CUDA side of the overlap scheduler
 * (runtime/model.h model_launch / model_wait; kernels/backend.h says what
 * each op computes): the token pick that lets a decode step read the ids
 * the step before it sampled, without the host in between, an upload and a
 * download that do not wait, and stream events to wait on one step while
 * the next runs.
 *
 *   step N:   upload_async(pinned idx[N % 2]) ─► ... sample ─► ids (device)
 *             ─► download_async ─► pinned ids[N % 2] ─► event[N % 2]
 *   step N+1: upload_async(pinned idx[(N+1) % 2]) ─► pick_tokens(tok, src, ids)
 *             ─► embedding ...     (stream order: after N's sample)
 *   host:     launch N+1 (returns at once), then event_wait(N), then reads
 *             ids[N % 2]; it writes idx[N % 2] again only for N+2, after that wait
 *
 * Everything runs on the context's one stream (cu_stream), so stream order
 * is the only ordering there is; events only tell the host.
 *
 * Threads: as CuCtx (one host thread at a time).
 */
#ifndef SGL_KERNELS_CUDA_OVERLAP_H
#define SGL_KERNELS_CUDA_OVERLAP_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* tok[i] = prev[src[i]] where src[i] >= 0 (n rows, device int32 arrays). */
void cu_pick_tokens(CuCtx *c, int32_t *tok, const int32_t *src, const int32_t *prev, int n);
/* cudaMemcpyAsync device -> host on the stream, no wait. */
void cu_download_async(CuCtx *c, void *dst, const void *src, size_t bytes);
/* cudaMemcpyAsync host (pinned) -> device on the stream, no wait: src is
 * read when the stream gets there. */
void cu_upload_async(CuCtx *c, void *dst, const void *src, size_t bytes);
/* An event (NULL with the failure recorded), its record on the stream, the
 * host's wait for it (0, or -1: cu_error names the failure). */
void *cu_event_new(CuCtx *c);
void cu_event_free(CuCtx *c, void *ev);
void cu_event_record(CuCtx *c, void *ev);
int cu_event_wait(CuCtx *c, void *ev);

#ifdef __cplusplus
}
#endif

#endif
