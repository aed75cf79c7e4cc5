/* The worker pool: a fixed set of pthreads that run blocking Task work (exec, SQL,
 * HTTP, file I/O). Extra work queues; it never fails for lack of a worker.
 *
 * Work submitted completes exactly once: the completion callback receives every item,
 * with status ETL_ECANCELLED when it was cancelled before or while running. */
#ifndef ETL_POOL_H
#define ETL_POOL_H

#include "state.h"

typedef struct pool pool;

/* Start n workers. on_done(w, arg) runs on the worker thread after w->run returns; it
 * must only hand w over (e.g. queue it for the scheduler) and must not block.
 * Returns NULL on failure (errno set). */
/* thread_hook (may be NULL) runs on each worker: (true, hook_arg) when it starts,
 * (false, hook_arg) when it stops. */
pool *pool_start(int n, void (*on_done)(work *w, void *arg), void *arg,
                 void (*thread_hook)(bool start, void *hook_arg), void *hook_arg);
/* Queue w (never blocks the caller). Thread-safe. */
void pool_submit(pool *p, work *w);
/* Stop accepting work, let queued and running items finish (each completes through
 * on_done), join the workers and free the pool. */
void pool_stop(pool *p);
/* Number of worker threads (for diagnostics). */
int pool_size(const pool *p);

#endif
