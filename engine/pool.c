/* Worker pool: a mutex + condition variable queue in front of N pthreads.
 *
 * DESIGN: the queue is FIFO so that work runs in submission order when workers are
 * scarce (Map MaxConcurrency and --jobs make work wait its turn, never fail). Workers
 * block SIGINT/SIGTERM so that signals reach the main (scheduler) thread, which owns
 * cancellation. Lock order: p->mu is a leaf lock; on_done is called without it. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    work *head, *tail;        /* guarded by mu */
    bool stopping;            /* guarded by mu */
    int n;
    pthread_t *threads;
    void (*on_done)(work *w, void *arg);
    void *arg;
    void (*thread_hook)(bool start, void *hook_arg);
    void *hook_arg;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *worker(void *arg)
{
    pool *p = arg;
    pthread_setname_np(pthread_self(), "etlrun-worker"); /* for top -H, perf, gdb */
    if (p->thread_hook)
        p->thread_hook(true, p->hook_arg);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        work *w = p->head;
        if (!w) {
            pthread_mutex_unlock(&p->mu);
            if (p->thread_hook)
                p->thread_hook(false, p->hook_arg);
            return NULL;
        }
        p->head = w->next;
        if (!p->head)
            p->tail = NULL;
        w->next = NULL;
        pthread_mutex_unlock(&p->mu);

        if (atomic_load(&w->cancel)) {
            w->status = etl_fail(&w->err, ETL_ECANCELLED, "States.Cancelled",
                                 "cancelled before it started");
        } else {
            atomic_store(&w->started_ns, now_ns());
            w->status = w->run(w);
        }
        p->on_done(w, p->arg);
    }
}

pool *pool_start(int n, void (*on_done)(work *w, void *arg), void *arg,
                 void (*thread_hook)(bool start, void *hook_arg), void *hook_arg)
{
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->threads = calloc((size_t)n, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->on_done = on_done;
    p->arg = arg;
    p->thread_hook = thread_hook;
    p->hook_arg = hook_arg;
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 0; i < n; i++) {
        int rc = pthread_create(&p->threads[i], NULL, worker, p);
        if (rc != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            p->n = i;
            pool_stop(p);
            errno = rc;
            return NULL;
        }
        p->n = i + 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return p;
}

void pool_submit(pool *p, work *w)
{
    w->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = w;
    else
        p->head = w;
    p->tail = w;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void pool_stop(pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

int pool_size(const pool *p) { return p->n; }
