/*
 * kernels/cpu/pool.h — the CPU backend's worker pool: a fixed set of
 * threads running parallel-for jobs, and how many cores there are.
 *
 * Owns: the threads (pthreads) and the hand-off of task indices to them
 * (pool.c explains it). Does not own: the work (the caller's fn/arg), any
 * kernel. The bottom of kernels/cpu: it includes no other kernels header,
 * and cpu.h re-exports it for the backend and the tests.
 *
 * Ownership: cpu_pool_new / cpu_pool_free pair up. Threads: a pool is
 * driven from one thread at a time (cpu_pool_run is not reentrant); fn runs
 * on that thread and on the workers.
 */
#ifndef SGL_KERNELS_CPU_POOL_H
#define SGL_KERNELS_CPU_POOL_H

typedef struct CpuPool CpuPool;

/* fn(arg, task, thread) runs once per task in [0, n_tasks); `thread` is the
 * worker's index in [0, cpu_pool_size) (0 is the calling thread). */
typedef void (*cpu_task_fn)(void *arg, int task, int thread);

/* n_threads <= 0: one per online core (the caller counts as one). NULL when
 * out of memory; fewer threads than asked when some cannot start. */
CpuPool *cpu_pool_new(int n_threads);
void cpu_pool_free(CpuPool *p);
int cpu_pool_size(const CpuPool *p);
/* Runs every task and returns when all are done. Not reentrant. */
void cpu_pool_run(CpuPool *p, int n_tasks, cpu_task_fn fn, void *arg);

/* Online cores (at least 1). */
int cpu_n_cores(void);

#endif
