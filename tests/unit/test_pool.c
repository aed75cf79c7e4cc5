/* Tests for the worker pool (engine/pool.c): every work item completes exactly once
 * through on_done, FIFO order, cancellation before start, started_ns, draining on
 * pool_stop, the concurrency bound and the workers' signal mask. Run under TSan by CI. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "pool.h"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

/* A gate that blocks work until opened (mutex + condvar, so TSan sees the ordering). */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
} gate;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = false;
}

static void gate_wait(gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_destroy(gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

/* What one test shares with its work items and on_done. */
typedef struct bench {
    atomic_int *ran;          /* per item: run() calls */
    atomic_int *done;         /* per item: on_done calls */
    atomic_int total_done;
    atomic_int running, max_running;
    atomic_int order_n;
    int *order;               /* item ids in the order run() started them */
    gate *gate;               /* item 0 waits on it when set */
    int sleep_ms;             /* each run() sleeps this long */
    int64_t *started_seen;    /* per item: started_ns as run() saw it */
    int64_t *done_at;         /* per item: now_ns() in on_done */
    atomic_int sig_blocked;   /* run() calls that found SIGINT and SIGTERM blocked */
    atomic_int wrong_arg;
    atomic_int hook_start, hook_stop;
    atomic_int ran_unhooked;  /* run() calls on a thread whose start hook had not run */
} bench;

/* Set by the start hook on the worker thread itself. */
static _Thread_local bool hooked;

typedef struct item {
    work w;
    bench *b;
    int id;
} item;

static etl_status item_run(work *w)
{
    item *it = (item *)w;
    bench *b = it->b;
    atomic_fetch_add(&b->ran[it->id], 1);
    int cur = atomic_fetch_add(&b->running, 1) + 1;
    int mx = atomic_load(&b->max_running);
    while (cur > mx && !atomic_compare_exchange_weak(&b->max_running, &mx, cur))
        ;
    if (b->order)
        b->order[atomic_fetch_add(&b->order_n, 1)] = it->id;
    if (b->started_seen)
        b->started_seen[it->id] = atomic_load(&w->started_ns);
    sigset_t cur_mask;
    pthread_sigmask(SIG_BLOCK, NULL, &cur_mask);
    if (sigismember(&cur_mask, SIGINT) == 1 && sigismember(&cur_mask, SIGTERM) == 1)
        atomic_fetch_add(&b->sig_blocked, 1);
    if (!hooked)
        atomic_fetch_add(&b->ran_unhooked, 1);
    if (b->gate && it->id == 0)
        gate_wait(b->gate);
    if (b->sleep_ms)
        sleep_ms(b->sleep_ms);
    atomic_fetch_sub(&b->running, 1);
    w->result = json_integer(it->id);
    return ETL_OK;
}

static void item_destroy(work *w)
{
    json_decref(w->result);
    free(w);
}

static void on_done(work *w, void *arg)
{
    bench *b = arg;
    item *it = (item *)w;
    if (it->b != b)
        atomic_fetch_add(&b->wrong_arg, 1);
    if (b->done_at)
        b->done_at[it->id] = now_ns();
    atomic_fetch_add(&b->done[it->id], 1);
    atomic_fetch_add(&b->total_done, 1);
}

static bench *bench_new(int n)
{
    bench *b = calloc(1, sizeof *b);
    b->ran = calloc((size_t)n, sizeof *b->ran);
    b->done = calloc((size_t)n, sizeof *b->done);
    return b;
}

static void bench_free(bench *b)
{
    free(b->ran);
    free(b->done);
    free(b->order);
    free(b->started_seen);
    free(b->done_at);
    free(b);
}

static item *item_new(bench *b, int id)
{
    item *it = calloc(1, sizeof *it);
    it->w.run = item_run;
    it->w.destroy = item_destroy;
    it->b = b;
    it->id = id;
    return it;
}

/* ---- exactly once ---------------------------------------------------------- */

enum { SUBMITTERS = 4, PER_SUBMITTER = 1500 };

typedef struct submitter {
    pool *p;
    bench *b;
    int first;
    item **items;
} submitter;

static void *submit_thread(void *arg)
{
    submitter *s = arg;
    /* several calls per thread, interleaved with the other submitters */
    for (int i = 0; i < PER_SUBMITTER; i++)
        pool_submit(s->p, &s->items[s->first + i]->w);
    return NULL;
}

static void test_every_item_completes_exactly_once(void **state)
{
    (void)state;
    const int n = SUBMITTERS * PER_SUBMITTER;
    bench *b = bench_new(n);
    item **items = calloc((size_t)n, sizeof *items);
    for (int i = 0; i < n; i++)
        items[i] = item_new(b, i);
    pool *p = pool_start(3, on_done, b, NULL, NULL);
    assert_non_null(p);
    assert_int_equal(pool_size(p), 3);

    pthread_t th[SUBMITTERS];
    submitter sub[SUBMITTERS];
    for (int t = 0; t < SUBMITTERS; t++) {
        sub[t] = (submitter){.p = p, .b = b, .first = t * PER_SUBMITTER, .items = items};
        assert_int_equal(pthread_create(&th[t], NULL, submit_thread, &sub[t]), 0);
    }
    for (int t = 0; t < SUBMITTERS; t++)
        pthread_join(th[t], NULL);
    /* wait for completion before stopping, so this checks the running pool and not
     * only the drain in pool_stop */
    int64_t until = now_ns() + 20LL * 1000000000;
    while (atomic_load(&b->total_done) < n && now_ns() < until)
        sleep_ms(1);
    assert_int_equal(atomic_load(&b->total_done), n);
    pool_stop(p);

    assert_int_equal(atomic_load(&b->total_done), n);
    assert_int_equal(atomic_load(&b->wrong_arg), 0);
    for (int i = 0; i < n; i++) {
        if (atomic_load(&b->done[i]) != 1 || atomic_load(&b->ran[i]) != 1)
            fail_msg("item %d: on_done %d times, run %d times", i, atomic_load(&b->done[i]),
                     atomic_load(&b->ran[i]));
        assert_int_equal(items[i]->w.status, ETL_OK);
        assert_int_equal(json_integer_value(items[i]->w.result), i);
        items[i]->w.destroy(&items[i]->w);
    }
    free(items);
    bench_free(b);
}

/* ---- FIFO ---------------------------------------------------------------------- */

static void test_fifo_with_one_worker(void **state)
{
    (void)state;
    enum { N = 200 };
    bench *b = bench_new(N);
    b->order = calloc(N, sizeof *b->order);
    gate g;
    gate_init(&g);
    b->gate = &g;
    item *items[N];
    pool *p = pool_start(1, on_done, b, NULL, NULL);
    assert_non_null(p);
    /* item 0 holds the only worker, so every other item is queued before any runs */
    for (int i = 0; i < N; i++) {
        items[i] = item_new(b, i);
        pool_submit(p, &items[i]->w);
    }
    int64_t until = now_ns() + 5LL * 1000000000;
    while (atomic_load(&b->order_n) < 1 && now_ns() < until)
        sleep_ms(1);
    sleep_ms(10);
    assert_int_equal(atomic_load(&b->order_n), 1);
    gate_open(&g);
    pool_stop(p);
    assert_int_equal(atomic_load(&b->order_n), N);
    for (int i = 0; i < N; i++) {
        if (b->order[i] != i)
            fail_msg("position %d ran item %d: the queue is not FIFO", i, b->order[i]);
        items[i]->w.destroy(&items[i]->w);
    }
    gate_destroy(&g);
    bench_free(b);
}

/* ---- cancellation before start ------------------------------------------------ */

static void test_cancelled_before_start(void **state)
{
    (void)state;
    enum { N = 4 };
    bench *b = bench_new(N);
    gate g;
    gate_init(&g);
    b->gate = &g;
    item *items[N];
    pool *p = pool_start(1, on_done, b, NULL, NULL);
    assert_non_null(p);
    for (int i = 0; i < N; i++)
        items[i] = item_new(b, i);
    /* item 1 is cancelled before it is submitted, item 2 while it waits in the queue */
    atomic_store(&items[1]->w.cancel, 1);
    for (int i = 0; i < N; i++)
        pool_submit(p, &items[i]->w);
    sleep_ms(10);
    atomic_store(&items[2]->w.cancel, 1);
    gate_open(&g);
    pool_stop(p);

    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&b->done[i]), 1);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(atomic_load(&b->ran[i]), 0);
        assert_int_equal(items[i]->w.status, ETL_ECANCELLED);
        assert_int_equal(items[i]->w.err.status, ETL_ECANCELLED);
        assert_string_equal(items[i]->w.err.name, "States.Cancelled");
        assert_null(items[i]->w.result);
        assert_true(atomic_load(&items[i]->w.started_ns) == 0);
    }
    for (int i = 0; i < N; i += 3) {
        assert_int_equal(atomic_load(&b->ran[i]), 1);
        assert_int_equal(items[i]->w.status, ETL_OK);
    }
    for (int i = 0; i < N; i++)
        items[i]->w.destroy(&items[i]->w);
    gate_destroy(&g);
    bench_free(b);
}

/* ---- started_ns ------------------------------------------------------------------ */

static void test_started_ns_set_when_run_starts(void **state)
{
    (void)state;
    enum { N = 3 };
    bench *b = bench_new(N);
    b->sleep_ms = 100;
    b->started_seen = calloc(N, sizeof *b->started_seen);
    b->done_at = calloc(N, sizeof *b->done_at);
    item *items[N];
    for (int i = 0; i < N; i++) {
        items[i] = item_new(b, i);
        assert_true(atomic_load(&items[i]->w.started_ns) == 0);
    }
    pool *p = pool_start(1, on_done, b, NULL, NULL);
    assert_non_null(p);
    int64_t submitted = now_ns();
    for (int i = 0; i < N; i++)
        pool_submit(p, &items[i]->w);
    pool_stop(p);

    for (int i = 0; i < N; i++) {
        int64_t st = atomic_load(&items[i]->w.started_ns);
        /* visible to run() itself, on the CLOCK_MONOTONIC scale */
        assert_true(st == b->started_seen[i]);
        assert_true(st >= submitted);
        assert_true(st <= b->done_at[i]);
        /* queued behind i earlier items of 100 ms each: set at the start, not at submit */
        if (st - submitted < (int64_t)i * 95000000)
            fail_msg("item %d: started_ns only %lld ms after submission", i,
                     (long long)((st - submitted) / 1000000));
        if (i > 0)
            assert_true(st >= b->done_at[i - 1] - 1000000);
        items[i]->w.destroy(&items[i]->w);
    }
    bench_free(b);
}

/* ---- pool_stop drains -------------------------------------------------------- */

static void test_stop_drains_queued_work(void **state)
{
    (void)state;
    enum { N = 300 };
    bench *b = bench_new(N);
    b->sleep_ms = 1;
    item *items[N];
    int before = thread_count();
    pool *p = pool_start(2, on_done, b, NULL, NULL);
    assert_non_null(p);
    assert_int_equal(thread_count(), before + 2);
    for (int i = 0; i < N; i++) {
        items[i] = item_new(b, i);
        pool_submit(p, &items[i]->w);
    }
    /* most of the queue is still waiting here */
    pool_stop(p);
    assert_int_equal(atomic_load(&b->total_done), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&b->done[i]), 1);
        assert_int_equal(atomic_load(&b->ran[i]), 1);
        assert_int_equal(items[i]->w.status, ETL_OK);
        items[i]->w.destroy(&items[i]->w);
    }
    /* the workers were joined, not left behind */
    assert_int_equal(thread_count(), before);
    bench_free(b);
}

/* ---- concurrency bound ------------------------------------------------------- */

static void test_concurrency_never_exceeds_n(void **state)
{
    (void)state;
    enum { N = 40, WORKERS = 3 };
    bench *b = bench_new(N);
    b->sleep_ms = 15;
    item *items[N];
    pool *p = pool_start(WORKERS, on_done, b, NULL, NULL);
    assert_non_null(p);
    for (int i = 0; i < N; i++) {
        items[i] = item_new(b, i);
        pool_submit(p, &items[i]->w);
    }
    pool_stop(p);
    assert_int_equal(atomic_load(&b->total_done), N);
    /* at most one run per worker, and the workers do run side by side */
    assert_int_equal(atomic_load(&b->max_running), WORKERS);
    for (int i = 0; i < N; i++)
        items[i]->w.destroy(&items[i]->w);
    bench_free(b);
}

/* ---- workers leave signals to the scheduler thread ------------------------------ */

static void test_workers_block_termination_signals(void **state)
{
    (void)state;
    enum { N = 8 };
    bench *b = bench_new(N);
    b->sleep_ms = 5;
    item *items[N];
    sigset_t before, after;
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    pool *p = pool_start(4, on_done, b, NULL, NULL);
    assert_non_null(p);
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    /* the caller's own mask is restored after starting the workers */
    assert_int_equal(sigismember(&after, SIGINT), sigismember(&before, SIGINT));
    assert_int_equal(sigismember(&after, SIGTERM), sigismember(&before, SIGTERM));
    for (int i = 0; i < N; i++) {
        items[i] = item_new(b, i);
        pool_submit(p, &items[i]->w);
    }
    pool_stop(p);
    assert_int_equal(atomic_load(&b->sig_blocked), N);
    for (int i = 0; i < N; i++)
        items[i]->w.destroy(&items[i]->w);
    bench_free(b);
}

/* ---- stopping an idle pool -------------------------------------------------------- */

static void test_stop_idle_pool(void **state)
{
    (void)state;
    int before = thread_count();
    bench *b = bench_new(1);
    pool *p = pool_start(5, on_done, b, NULL, NULL);
    assert_non_null(p);
    assert_int_equal(pool_size(p), 5);
    assert_int_equal(thread_count(), before + 5);
    int64_t t0 = now_ns();
    pool_stop(p);
    assert_true(now_ns() - t0 < 1000000000LL);
    assert_int_equal(thread_count(), before);
    assert_int_equal(atomic_load(&b->total_done), 0);
    pool_stop(NULL); /* accepted, does nothing */
    bench_free(b);
}

/* ---- per-thread hooks ------------------------------------------------------------- */

static void thread_hook(bool start, void *arg)
{
    bench *b = arg;
    if (start) {
        hooked = true;
        atomic_fetch_add(&b->hook_start, 1);
    } else {
        /* the stop hook runs on a thread that ran the start hook */
        if (hooked)
            atomic_fetch_add(&b->hook_stop, 1);
        hooked = false;
    }
}

static void test_thread_hooks_run_on_each_worker(void **state)
{
    (void)state;
    enum { N = 50, WORKERS = 4 };
    bench *b = bench_new(N);
    b->sleep_ms = 2;
    item *items[N];
    pool *p = pool_start(WORKERS, on_done, b, thread_hook, b);
    assert_non_null(p);
    for (int i = 0; i < N; i++) {
        items[i] = item_new(b, i);
        pool_submit(p, &items[i]->w);
    }
    pool_stop(p);
    assert_false(hooked); /* not run on the caller's thread */
    assert_int_equal(atomic_load(&b->hook_start), WORKERS);
    assert_int_equal(atomic_load(&b->hook_stop), WORKERS);
    assert_int_equal(atomic_load(&b->ran_unhooked), 0);
    assert_int_equal(atomic_load(&b->total_done), N);
    for (int i = 0; i < N; i++)
        items[i]->w.destroy(&items[i]->w);
    bench_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_item_completes_exactly_once),
        cmocka_unit_test(test_fifo_with_one_worker),
        cmocka_unit_test(test_cancelled_before_start),
        cmocka_unit_test(test_started_ns_set_when_run_starts),
        cmocka_unit_test(test_stop_drains_queued_work),
        cmocka_unit_test(test_concurrency_never_exceeds_n),
        cmocka_unit_test(test_workers_block_termination_signals),
        cmocka_unit_test(test_stop_idle_pool),
        cmocka_unit_test(test_thread_hooks_run_on_each_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
