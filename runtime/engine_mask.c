/*
 * runtime/engine_mask.c — constrained sequences' token masks, computed on a
 * thread of their own while the forward pass runs (EngOptions.mask_overlap).
 *
 *   engine thread:  batch ─► mask_start(seqs) ─► model_forward ─► mask_wait ─► sample
 *   mask thread:               └──► cm_fill_mask for each seq ──────┘
 *
 * The mask of step N depends only on the tokens accepted before step N,
 * which are known before its forward pass starts, so it can be computed
 * during it; the logits of step N are then masked exactly as they would be
 * without the overlap (the same cm_fill_mask on the same state): outputs
 * do not change.
 *
 * Ownership: from mask_start to mask_wait, the mask thread owns the cm and
 * mask of the sequences it was handed (the engine thread does not touch
 * them; model_forward reads neither); after mask_wait they are the engine
 * thread's again, with mask_rc set (>= 0: allowed tokens; < 0: an error)
 * and mask_ready = 1 until sample_next consumes it. The CGrammar's mask
 * cache has its own lock; the CVocab is read-only.
 *
 * The thread starts with the first constrained step and stops in
 * eng_mask_free (eng_free).
 */
#include <stdlib.h>

#include "runtime/engine_internal.h"
#include "constrain/constrain.h"

typedef struct MaskWorker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* job posted / job done / stop */
    Seq **jobs;
    int n_jobs, cap_jobs;
    uint64_t posted, done;      /* job generations */
    int stop;
} MaskWorker;

static void *mask_main(void *arg)
{
    MaskWorker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && w->done == w->posted) pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop) break;
        int n = w->n_jobs;
        Seq **jobs = w->jobs;
        pthread_mutex_unlock(&w->mu);
        for (int i = 0; i < n; i++) {
            Seq *s = jobs[i];
            s->mask_rc = cm_fill_mask(s->cm, s->mask);
            s->mask_ready = 1;
        }
        pthread_mutex_lock(&w->mu);
        w->done = w->posted;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static MaskWorker *worker(Engine *e)
{
    if (e->mask) return e->mask;
    MaskWorker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, mask_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return NULL;
    }
    return e->mask = w;
}

int eng_mask_start(Engine *e, Seq *const *seqs, int n)
{
    if (!e->opt.mask_overlap || n <= 0) return 0;
    MaskWorker *w = worker(e);
    if (!w) return 0;   /* no thread: sample_next computes the masks inline */
    if (grow_ptrs((void ***)&w->jobs, &w->cap_jobs, n)) return 0;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < n; i++) w->jobs[i] = seqs[i];
    w->n_jobs = n;
    w->posted++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return n;
}

void eng_mask_wait(Engine *e)
{
    MaskWorker *w = e->mask;
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    while (w->done != w->posted) pthread_cond_wait(&w->cv, &w->mu);
    w->n_jobs = 0;
    pthread_mutex_unlock(&w->mu);
}

void eng_mask_free(Engine *e)
{
    MaskWorker *w = e->mask;
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->jobs);
    free(w);
    e->mask = NULL;
}
