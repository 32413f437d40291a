/*
 * runtime/model_tp.c — tensor parallelism (see model_tp.h): rank threads,
 * the jobs they run, and the per-rank KV pools.
 *
 * A job is one kind plus its arguments in ModelTp.job; the caller bumps the
 * generation, wakes the rank threads, runs rank 0's part itself and waits
 * until `pending` drops to zero. Ranks run model_dev.c on their own copy of
 * the Model (view), so that file knows nothing of threads.
 */
#include "runtime/model_tp.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "runtime/model_dev.h"

typedef enum { JOB_BACKEND, JOB_UPLOAD, JOB_RESERVE, JOB_KV_SLOTS, JOB_KV_NEW, JOB_FORWARD, JOB_CLOSE } JobKind;

typedef struct {
    Model *m;                   /* rank 0: the model; r > 0: its copy (owned; its
                                   tp points at this ModelTp too) */
    KvPool *kv;                 /* r > 0: this rank's pool (owned); rank 0: the caller's */
    ModelSeq *seqs;             /* r > 0: the forward's batch, copied */
    int seqs_cap;
    ModelBatch batch;
    pthread_t th;
    bool started;
    int rc, out;
    char err[512];
} TpRank;

struct ModelTp {
    int n;
    int n_started;              /* rank threads running (ranks 1 .. n_started) */
    TpRank *ranks;              /* [n] */
    KCommGroup *comms;
    KvPool *pool0;              /* the pool mtp_kv_new last gave the caller */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long gen;
    int pending;
    bool quit;
    struct {
        JobKind kind;
        int a, b;               /* RESERVE: tokens, rows; KV_NEW: slots; FORWARD: N, R */
    } job;
};

int mtp_wanted(const Model *m) { return m->tp_size > 1 || m->tp_comm_kind != K_COMM_AUTO; }

const char *mtp_comm_name(const Model *m) { return m->tp ? m->tp->comms->name : NULL; }

int mtp_check_shape(const ModelConfig *c, int n, char *err, size_t errcap)
{
    struct {
        const char *name;
        int value, by;
    } dims[] = {{"n_head_kv (KV heads)", c->n_head_kv, n}, {"n_head", c->n_head, n},
                {"n_ff (MLP columns)", c->n_ff, n}, {"vocab", c->vocab, n},
                {"vocab / tp (logit slices of 16-byte rows)", n ? c->vocab / n : 0, 4}};
    if (n < 1) {
        err_fmt(err, errcap, "model: tensor parallelism over %d ranks", n);
        return -1;
    }
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].value % dims[i].by) {
            err_fmt(err, errcap, "model: --tp %d does not divide %s = %d", n, dims[i].name, dims[i].value);
            return -1;
        }
    return 0;
}

/* ---- jobs ---- */

static void bind(Model *rm)
{
    if (rm->backend) rm->backend->dev->bind(rm->backend->ctx);
}

static void run_job(ModelTp *t, int r)
{
    TpRank *k = &t->ranks[r];
    Model *rm = k->m;
    const ModelConfig *c = &rm->cfg;
    k->rc = 0;
    k->err[0] = 0;
    bind(rm);
    switch (t->job.kind) {
    case JOB_BACKEND:
        if (r > 0) {
            KBackendConfig bc = {.kind = rm->backend_kind, .n_threads = rm->n_threads, .flags = rm->backend_flags,
                                 .device = r};
            rm->backend = k_backend_new(&bc, k->err, sizeof k->err);
            if (!rm->backend) k->rc = -1;
            else if (!rm->backend->dev) {
                err_fmt(k->err, sizeof k->err, "the %s backend is not a device backend", rm->backend->name);
                k->rc = -1;
            }
        }
        break;
    case JOB_UPLOAD:
        k->rc = mdev_open(rm, k->err, sizeof k->err);
        break;
    case JOB_RESERVE:
        k->rc = mdev_reserve(rm, t->job.a, t->job.b, k->err, sizeof k->err);
        break;
    case JOB_KV_SLOTS:
        /* ranks 1.. count their pool as free: the next model_kv_new
         * replaces it (rank 0's is the caller's to free; while it lives,
         * rank 0's answer is the smallest) */
        k->out = mdev_kv_slots(rm) + (r > 0 && k->kv ? k->kv->n_slots : 0);
        break;
    case JOB_KV_NEW: {
        /* the old pool first: the new one takes its memory */
        if (r > 0) kv_free(k->kv);
        int kv_dim = c->n_head_kv / t->n * c->head_dim;
        k->kv = kv_new_on(rm->backend, c->n_layer, t->job.a, kv_dim, rm->backend->dev->act_dtype, k->err,
                          sizeof k->err);
        if (!k->kv) k->rc = -1;
        break;
    }
    case JOB_FORWARD:
        k->rc = mdev_forward(rm, k->kv, &k->batch, t->job.a, t->job.b, k->err, sizeof k->err);
        break;
    case JOB_CLOSE:
        if (r > 0) {
            kv_free(k->kv);
            k->kv = NULL;
            mdev_free(rm);
            if (rm->backend) rm->backend->destroy(rm->backend->ctx);
            rm->backend = NULL;
        }
        break;
    }
}

static void *rank_main(void *arg)
{
    TpRank *k = arg;
    ModelTp *t = k->m->tp;
    int r = (int)(k - t->ranks);
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&t->mu);
        while (t->gen == seen && !t->quit) pthread_cond_wait(&t->go, &t->mu);
        seen = t->gen;
        bool quit = t->quit;
        pthread_mutex_unlock(&t->mu);
        if (quit) break;
        run_job(t, r);
        pthread_mutex_lock(&t->mu);
        if (--t->pending == 0) pthread_cond_signal(&t->done);
        pthread_mutex_unlock(&t->mu);
    }
    return NULL;
}

/* Runs the job on every rank; 0, or -1 with the first failing rank's
 * message. */
static int run_all(ModelTp *t, JobKind kind, int a, int b, char *err, size_t errcap)
{
    pthread_mutex_lock(&t->mu);
    t->job.kind = kind;
    t->job.a = a;
    t->job.b = b;
    t->pending = t->n_started;
    t->gen++;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    run_job(t, 0);
    pthread_mutex_lock(&t->mu);
    while (t->pending > 0) pthread_cond_wait(&t->done, &t->mu);
    pthread_mutex_unlock(&t->mu);
    bind(t->ranks[0].m);
    for (int r = 0; r < t->n; r++)
        if (t->ranks[r].rc) {
            if (t->n > 1) err_fmt(err, errcap, "tp rank %d: %s", r, t->ranks[r].err);
            else err_fmt(err, errcap, "%s", t->ranks[r].err);
            return -1;
        }
    return 0;
}

/* ---- open / free ---- */

static void tp_destroy(Model *m)
{
    ModelTp *t = m->tp;
    if (!t) return;
    /* the communicators first, while every backend lives */
    if (t->comms) {
        k_comm_group_free(t->comms);
        t->comms = NULL;
    }
    char err[64];
    (void)run_all(t, JOB_CLOSE, 0, 0, err, sizeof err);
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    for (int r = 1; r < t->n; r++) {
        TpRank *k = &t->ranks[r];
        if (k->started) pthread_join(k->th, NULL);
        free(k->seqs);
        free(k->m);
    }
    free(t->ranks[0].seqs);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->go);
    pthread_cond_destroy(&t->done);
    free(t->ranks);
    free(t);
    m->tp = NULL;
    m->tp_comm = NULL;
}

void mtp_free(Model *m) { tp_destroy(m); }

int mtp_open(Model *m, char *err, size_t errcap)
{
    int n = m->tp_size > 1 ? m->tp_size : 1;
    if (!m->backend || !m->backend->dev) {
        err_fmt(err, errcap, "model: tensor parallelism needs a device backend (cuda or dev-ref), not %s",
                m->backend ? m->backend->name : k_backend_kind_name(m->backend_kind));
        return -1;
    }
    if (mtp_check_shape(&m->cfg, n, err, errcap)) return -1;
    ModelTp *t = calloc(1, sizeof *t);
    if (!t || !(t->ranks = calloc((size_t)n, sizeof *t->ranks))) {
        free(t);
        err_fmt(err, errcap, "model: out of memory");
        return -1;
    }
    t->n = n;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->go, NULL);
    pthread_cond_init(&t->done, NULL);
    m->tp = t;
    t->ranks[0].m = m;
    for (int r = 1; r < n; r++) {
        Model *rm = malloc(sizeof *rm);
        if (!rm) goto nomem;
        /* shares the host tensors; owns nothing of the model's */
        *rm = *m;
        rm->backend = NULL;
        rm->device = NULL;
        rm->scratch = NULL;
        rm->owned_ = NULL;
        rm->release = NULL;
        rm->release_ctx = NULL;
        rm->gguf = NULL;
        t->ranks[r].m = rm;
        if (pthread_create(&t->ranks[r].th, NULL, rank_main, &t->ranks[r])) {
            err_fmt(err, errcap, "model: cannot start the thread of tp rank %d", r);
            goto fail;
        }
        t->ranks[r].started = true;
        t->n_started++;
    }
    if (run_all(t, JOB_BACKEND, 0, 0, err, errcap)) goto fail;
    KBackend **bes = calloc((size_t)n, sizeof *bes);
    if (!bes) goto nomem;
    for (int r = 0; r < n; r++) bes[r] = (KBackend *)t->ranks[r].m->backend;
    t->comms = k_comm_group_new(m->tp_comm_kind, m->backend_kind, n, bes, err, errcap);
    free(bes);
    bind(m);
    if (!t->comms) goto fail;
    for (int r = 0; r < n; r++) t->ranks[r].m->tp_comm = &t->comms->ranks[r];
    if (run_all(t, JOB_UPLOAD, 0, 0, err, errcap)) goto fail;
    return 0;
nomem:
    err_fmt(err, errcap, "model: out of memory");
fail:
    /* rank 0's device state (if its upload ran) is model.c's to drop with
     * its backend; the ranks' are dropped here */
    tp_destroy(m);
    mdev_free(m);
    return -1;
}

/* ---- the model_dev.h calls ---- */

int mtp_reserve(Model *m, int max_tokens, int max_rows, char *err, size_t errcap)
{
    return run_all(m->tp, JOB_RESERVE, max_tokens, max_rows, err, errcap);
}

int mtp_kv_slots(const Model *m)
{
    ModelTp *t = m->tp;
    char err[64];
    if (run_all(t, JOB_KV_SLOTS, 0, 0, err, sizeof err)) return 0;
    int least = t->ranks[0].out;
    for (int r = 1; r < t->n; r++)
        if (t->ranks[r].out < least) least = t->ranks[r].out;
    return least;
}

KvPool *mtp_kv_new(Model *m, int n_slots, char *err, size_t errcap)
{
    ModelTp *t = m->tp;
    t->ranks[0].kv = NULL;
    if (run_all(t, JOB_KV_NEW, n_slots, 0, err, errcap)) {
        kv_free(t->ranks[0].kv);
        t->ranks[0].kv = NULL;
        return NULL;
    }
    t->pool0 = t->ranks[0].kv;
    return t->pool0;
}

int mtp_forward(Model *m, KvPool *kv, ModelBatch *b, int N, int R, char *err, size_t errcap)
{
    ModelTp *t = m->tp;
    if (kv != t->pool0) {
        err_fmt(err, errcap, "model_forward: with tensor parallelism the KV pool must be the one model_kv_new made "
                             "last");
        return -1;
    }
    /* every rank reads the same sequences; ranks 1.. get copies, since
     * mdev_forward writes its outputs into them */
    for (int r = 1; r < t->n; r++) {
        TpRank *k = &t->ranks[r];
        if (b->n_seqs > k->seqs_cap) {
            ModelSeq *s = realloc(k->seqs, (size_t)b->n_seqs * sizeof *s);
            if (!s) {
                err_fmt(err, errcap, "model: out of memory");
                return -1;
            }
            k->seqs = s;
            k->seqs_cap = b->n_seqs;
        }
        memcpy(k->seqs, b->seqs, (size_t)b->n_seqs * sizeof *k->seqs);
        k->batch = (ModelBatch){.seqs = k->seqs, .n_seqs = b->n_seqs};
    }
    t->ranks[0].batch = *b;
    t->ranks[0].batch.seqs = b->seqs;
    int rc = run_all(t, JOB_FORWARD, N, R, err, errcap);
    b->logits = t->ranks[0].batch.logits;
    b->n_rows = t->ranks[0].batch.n_rows;
    return rc;
}
