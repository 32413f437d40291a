/*
 * kernels/cpu/pool.c — a fixed pool of worker threads running parallel-for
 * jobs: cpu_pool_run(p, n_tasks, fn, arg) calls fn for every task index,
 * spread over the calling thread and the workers, and returns when all are
 * done.
 *
 * Hand-off: the caller publishes the job and bumps `gen`; workers that see a
 * new generation grab task indices from the shared `next` counter, then
 * record the generation in their own `finished` slot. The caller returns only
 * when every worker has finished the generation, so no worker still reads
 * the job when the next one is written. A forward pass issues hundreds of
 * small jobs back to back, so workers spin briefly before sleeping on the
 * condition variable (a futex wake per op would cost more than many ops).
 */
#include "kernels/cpu/cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_NS 200000          /* how long an idle worker spins before sleeping */

typedef struct {
    CpuPool *pool;
    int index;
    _Alignas(64) atomic_uint finished;  /* last generation this worker completed */
} Worker;

struct CpuPool {
    int n;                      /* threads including the caller */
    pthread_t *threads;
    Worker *workers;            /* n - 1 */
    _Alignas(64) atomic_uint gen;
    _Alignas(64) atomic_int next;
    cpu_task_fn fn;
    void *arg;
    int n_tasks;
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

static void run_tasks(CpuPool *p, int thread)
{
    int n = p->n_tasks;
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= n) break;
        p->fn(p->arg, t, thread);
    }
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    CpuPool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g == seen) {
            uint64_t t0 = now_ns();
            int spins = 0;
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
                cpu_relax();
                if (++spins % 256 == 0 && now_ns() - t0 > SPIN_NS) break;
            }
            if (g == seen) {
                pthread_mutex_lock(&p->mu);
                while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && !p->stop) {
                    p->sleeping++;
                    pthread_cond_wait(&p->cv, &p->mu);
                    p->sleeping--;
                }
                bool stop = p->stop;
                pthread_mutex_unlock(&p->mu);
                if (stop) return NULL;
            }
        }
        seen = g;
        run_tasks(p, w->index);
        atomic_store_explicit(&w->finished, g, memory_order_release);
    }
}

CpuPool *cpu_pool_new(int n_threads)
{
    if (n_threads <= 0) n_threads = cpu_n_cores();
    CpuPool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->next, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        p->workers = aligned_alloc(64, sizeof(Worker) * (size_t)(n_threads - 1));
        if (!p->threads || !p->workers) {
            free(p->threads);
            free(p->workers);
            free(p);
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].index = i + 1;
            atomic_init(&p->workers[i].finished, 0);
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i]) != 0) {
                /* run with the threads we got */
                p->n = i + 1;
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
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n - 1; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p->workers);
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
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    unsigned g = atomic_fetch_add_explicit(&p->gen, 1, memory_order_acq_rel) + 1;
    pthread_mutex_lock(&p->mu);
    if (p->sleeping) pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    for (int i = 0; i < p->n - 1; i++)
        while (atomic_load_explicit(&p->workers[i].finished, memory_order_acquire) != g) cpu_relax();
}
