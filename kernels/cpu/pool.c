/*
 * kernels/cpu/pool.c — a fixed pool of worker threads running parallel-for
 * jobs: cpu_pool_run(p, n_tasks, fn, arg) calls fn for every task index,
 * spread over the calling thread and the workers, and returns when all are
 * done.
 *
 * Hand-off: one 64-bit word `next` holds (job number << 32 | tasks left).
 * Whoever wants work (caller or worker) claims task `left - 1` with a
 * compare-and-swap that also checks the job number, so a worker that wakes
 * late can never claim a task of a job other than the one it saw. A claimed
 * task keeps its job alive (the caller waits until `done` counts every task),
 * so fn/arg, written before the job was published, stay valid while it runs.
 * The caller never waits for idle workers: on a busy machine it may simply
 * run every task itself.
 *
 * A forward pass issues hundreds of small jobs back to back, so idle workers
 * spin briefly before sleeping on the condition variable (a futex wake per
 * op would cost more than many of the ops).
 */
#include "kernels/cpu/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_NS 100000          /* how long an idle worker spins before sleeping */

struct CpuPool {
    int n;                      /* threads including the caller */
    pthread_t *threads;
    _Alignas(64) atomic_uint_fast64_t next;
    _Alignas(64) atomic_int done;
    cpu_task_fn fn;
    void *arg;
    uint32_t job;
    bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sleeping;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Claims and runs tasks of job `job` until none are left. */
static void run_tasks(CpuPool *p, uint32_t job, int thread)
{
    uint64_t v = atomic_load_explicit(&p->next, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(v >> 32) != job || (uint32_t)v == 0) return;
        if (!atomic_compare_exchange_weak_explicit(&p->next, &v, v - 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        int task = (int)(uint32_t)(v - 1);
        p->fn(p->arg, task, thread);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        v = atomic_load_explicit(&p->next, memory_order_acquire);
    }
}

/* a job with tasks left, newer than `seen` */
static bool has_work(uint64_t v, uint32_t seen) { return (uint32_t)(v >> 32) != seen && (uint32_t)v != 0; }

typedef struct {
    CpuPool *pool;
    int index;
} WorkerArg;

static void *worker_loop(void *varg)
{
    WorkerArg *wa = varg;
    CpuPool *p = wa->pool;
    int index = wa->index;
    free(wa);
    uint32_t seen = 0;
    for (;;) {
        uint64_t v = atomic_load_explicit(&p->next, memory_order_acquire);
        if (!has_work(v, seen)) {
            uint64_t t0 = now_ns();
            int spins = 0;
            while (!has_work(v = atomic_load_explicit(&p->next, memory_order_acquire), seen)) {
                cpu_relax();
                if (++spins % 256 == 0 && now_ns() - t0 > SPIN_NS) break;
            }
            if (!has_work(v, seen)) {
                pthread_mutex_lock(&p->mu);
                while (!has_work(v = atomic_load_explicit(&p->next, memory_order_acquire), seen) && !p->stop) {
                    p->sleeping++;
                    pthread_cond_wait(&p->cv, &p->mu);
                    p->sleeping--;
                }
                bool stop = p->stop;
                pthread_mutex_unlock(&p->mu);
                if (stop) return NULL;
            }
        }
        seen = (uint32_t)(v >> 32);
        run_tasks(p, seen, index);
    }
}

int cpu_n_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

CpuPool *cpu_pool_new(int n_threads)
{
    if (n_threads <= 0) n_threads = cpu_n_cores();
    CpuPool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            free(p);
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            WorkerArg *wa = malloc(sizeof *wa);
            if (wa) *wa = (WorkerArg){p, i + 1};
            if (!wa || pthread_create(&p->threads[i], NULL, worker_loop, wa) != 0) {
                free(wa);
                p->n = i + 1; /* run with the threads we got */
                break;
            }
        }
    }
    return p;
}

void cpu_pool_free(CpuPool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n - 1; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int cpu_pool_size(const CpuPool *p) { return p->n; }

void cpu_pool_run(CpuPool *p, int n_tasks, cpu_task_fn fn, void *arg)
{
    if (n_tasks <= 0) return;
    if (p->n == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    /* job 0 is never used, so a fresh worker (seen = 0) cannot match it */
    if (++p->job == 0) p->job = 1;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->next, (uint64_t)p->job << 32 | (uint32_t)n_tasks, memory_order_release);
    pthread_mutex_lock(&p->mu);
    if (p->sleeping) pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, p->job, 0);
    while (atomic_load_explicit(&p->done, memory_order_acquire) != n_tasks) cpu_relax();
}
