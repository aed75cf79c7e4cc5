/* Tests for the scheduler (engine/scheduler.c) seen from inside the process: worker
 * and thread bounds, cancellation (signals, fail-fast, timeouts) down to the child
 * processes, retry timing, history events and thread/descriptor hygiene. ASL semantics
 * seen through the CLI are the conformance suite's job (tests/conformance). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc_util.h"

#include "diag.h"
#include "doc.h"
#include "machine.h"
#include "scheduler.h"

/* Scripts find their scratch directory as $SCHED_TMP (set once, before any thread). */
static char tmpdir[64];

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

static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    if (d)
        closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

/* A fresh, empty scratch directory $SCHED_TMP/<name>; its path goes to buf. */
static void scratch(const char *name, char *buf, size_t n)
{
    char cmd[256];
    snprintf(buf, n, "%s/%s", tmpdir, name);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mkdir(buf, 0700), 0);
}

/* Files named pid.* in dir, each holding one pid. Returns how many were read. */
static int read_pids(const char *dir, pid_t *pids, int max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) && n < max) {
        if (strncmp(e->d_name, "pid.", 4) != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        int p = 0;
        if (f && fscanf(f, "%d", &p) == 1 && p > 0)
            pids[n++] = p;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

static int count_pid_files(const char *dir)
{
    pid_t pids[64];
    return read_pids(dir, pids, 64);
}

/* The largest number of [start, end] intervals (files X.s and X.e holding
 * nanosecond times, written by the task scripts) open at one moment. */
static int max_overlap(const char *dir, int *out_n)
{
    long long s[64], e[64];
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) && n < 64) {
        size_t len = strlen(de->d_name);
        if (len < 3 || strcmp(de->d_name + len - 2, ".s") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "r");
        if (!f || fscanf(f, "%lld", &s[n]) != 1)
            fail_msg("cannot read %s", path);
        fclose(f);
        path[strlen(path) - 1] = 'e';
        f = fopen(path, "r");
        if (!f || fscanf(f, "%lld", &e[n]) != 1)
            fail_msg("cannot read %s", path);
        fclose(f);
        n++;
    }
    if (d)
        closedir(d);
    int best = 0;
    for (int i = 0; i < n; i++) {
        /* at the moment interval i starts, count the intervals open then */
        int open = 0;
        for (int j = 0; j < n; j++)
            if (s[j] <= s[i] && e[j] > s[i])
                open++;
        if (open > best)
            best = open;
    }
    *out_n = n;
    return best;
}

static pipeline *compile(const char *yaml)
{
    diag *d = diag_new("t.yaml");
    doc *dc = doc_load_string(yaml, strlen(yaml), "t.yaml", false, d);
    pipeline *pl = dc ? pipeline_compile(dc, d) : NULL;
    if (!pl) {
        diag_print(d, stderr);
        fail_msg("the test pipeline does not compile");
    }
    doc_free(dc);
    diag_free(d);
    return pl;
}

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (!v)
        fail_msg("bad JSON in the test: %s", je.text);
    return v;
}

static sched_options opts(int jobs)
{
    return (sched_options){.jobs = jobs, .wake_fd = -1, .name = "test"};
}

/* Compile yaml, run it on input (JSON text) and return the status; the wall time in
 * seconds goes to *secs. */
static etl_status run_yaml(const char *yaml, const char *input, const sched_options *opt,
                           sched_outcome *out, double *secs)
{
    pipeline *pl = compile(yaml);
    json_t *in = parse(input);
    int64_t t0 = now_ms();
    etl_status st = sched_run(pl, in, opt, out);
    if (secs)
        *secs = (double)(now_ms() - t0) / 1000.0;
    json_decref(in);
    pipeline_free(pl);
    return st;
}

static void expect_output(const sched_outcome *out, const char *want_text)
{
    if (out->status != ETL_OK)
        fail_msg("run failed: %s: %s", out->err.name, out->err.cause);
    json_t *want = parse(want_text);
    if (!json_equal(out->output, want)) {
        char *got = json_dumps(out->output, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("output %s, want %s", got ? got : "(null)", want_text);
    }
    json_decref(want);
}

/* ---- signals: delivered to the scheduler thread, as the CLI's handler does ---- */

static volatile sig_atomic_t got_signal;
static int wake_pipe[2] = {-1, -1};
static pthread_t main_thread;

static void on_signal(int sig)
{
    got_signal = sig;
    ssize_t n = write(wake_pipe[1], "x", 1);
    (void)n;
}

/* After pid files appear in dir (n_pids of them; 0 = don't wait), waits delay_ms,
 * then signals the scheduler (main) thread. A real signal rather than a store from
 * this thread: the scheduler reads *signo unsynchronised, as a handler's flag. */
typedef struct killer {
    const char *dir;
    int n_pids;
    int delay_ms;
    _Atomic int64_t sent_at;
} killer;

static void *killer_thread(void *arg)
{
    killer *k = arg;
    int64_t until = now_ms() + 10000;
    while (k->n_pids && count_pid_files(k->dir) < k->n_pids && now_ms() < until)
        sleep_ms(5);
    sleep_ms(k->delay_ms);
    atomic_store(&k->sent_at, now_ms());
    pthread_kill(main_thread, SIGUSR1);
    return NULL;
}

static sched_options signal_opts(int jobs)
{
    char c;
    while (read(wake_pipe[0], &c, 1) == 1)
        ;
    got_signal = 0;
    sched_options o = opts(jobs);
    o.wake_fd = wake_pipe[0];
    o.signo = &got_signal;
    return o;
}

/* ---- the pool under nesting ---------------------------------------------------- */

/* A Map of Parallels of Tasks on one worker: parents never hold a worker while their
 * children wait for one. */
static void test_nesting_cannot_deadlock_one_job(void **state)
{
    (void)state;
    const char *yaml =
        "StartAt: M\n"
        "States:\n"
        "  M:\n"
        "    Type: Map\n"
        "    MaxConcurrency: 0\n"
        "    End: true\n"
        "    ItemProcessor:\n"
        "      StartAt: P\n"
        "      States:\n"
        "        P:\n"
        "          Type: Parallel\n"
        "          End: true\n"
        "          Branches:\n"
        "            - StartAt: T1\n"
        "              States:\n"
        "                T1: {Type: Task, Resource: exec, End: true,\n"
        "                    Command: [sh, -c, 'sleep 0.05; echo 1']}\n"
        "            - StartAt: T2\n"
        "              States:\n"
        "                T2: {Type: Task, Resource: exec, End: true,\n"
        "                    Command: [sh, -c, 'sleep 0.05; echo 1']}\n"
        "            - StartAt: T3\n"
        "              States:\n"
        "                T3: {Type: Task, Resource: exec, End: true,\n"
        "                    Command: [sh, -c, 'sleep 0.05; echo 1']}\n";
    json_t *items = json_array(), *want = json_array();
    for (int i = 0; i < 20; i++) {
        json_array_append_new(items, json_integer(i));
        json_array_append_new(want, json_pack("[i,i,i]", 1, 1, 1));
    }
    pipeline *pl = compile(yaml);
    sched_options o = opts(1);
    sched_outcome out;
    int64_t t0 = now_ms();
    assert_int_equal(sched_run(pl, items, &o, &out), ETL_OK);
    int64_t ms = now_ms() - t0;
    assert_true(json_equal(out.output, want));
    /* 60 tasks of 50 ms on one worker ran one after another */
    assert_true(ms >= 60 * 50);
    /* Map + 20 Parallels + 60 Tasks */
    assert_int_equal(out.transitions, 81);
    json_decref(out.output);
    json_decref(items);
    json_decref(want);
    pipeline_free(pl);
}

/* ---- concurrency limits ------------------------------------------------------- */

#define RECORD_INTERVAL(dir)                                                            \
    "[sh, -c, 'd=$SCHED_TMP/" dir "; date +%s%N > $d/$$.s; sleep 0.2; "                \
    "date +%s%N > $d/$$.e; echo 1']"

static void test_jobs_limits_concurrency(void **state)
{
    (void)state;
    char dir[128];
    scratch("jobs", dir, sizeof dir);
    const char *yaml =
        "StartAt: M\n"
        "States:\n"
        "  M:\n"
        "    Type: Map\n"
        "    End: true\n"
        "    ItemProcessor:\n"
        "      StartAt: T\n"
        "      States:\n"
        "        T:\n"
        "          Type: Task\n"
        "          Resource: exec\n"
        "          Command: " RECORD_INTERVAL("jobs") "\n"
        "          End: true\n";
    sched_options o = opts(3);
    sched_outcome out;
    run_yaml(yaml, "[0,1,2,3,4,5,6,7]", &o, &out, NULL);
    expect_output(&out, "[1,1,1,1,1,1,1,1]");
    int n;
    int most = max_overlap(dir, &n);
    assert_int_equal(n, 8);
    /* never more than --jobs at once, and --jobs of them do run side by side */
    assert_int_equal(most, 3);
    json_decref(out.output);
}

static void test_map_max_concurrency_with_exec(void **state)
{
    (void)state;
    char dir[128];
    scratch("maxconc", dir, sizeof dir);
    const char *yaml =
        "StartAt: M\n"
        "States:\n"
        "  M:\n"
        "    Type: Map\n"
        "    MaxConcurrency: 2\n"
        "    End: true\n"
        "    ItemProcessor:\n"
        "      StartAt: T\n"
        "      States:\n"
        "        T:\n"
        "          Type: Task\n"
        "          Resource: exec\n"
        "          Command: " RECORD_INTERVAL("maxconc") "\n"
        "          End: true\n";
    sched_options o = opts(8);
    sched_outcome out;
    run_yaml(yaml, "[0,1,2,3,4,5]", &o, &out, NULL);
    expect_output(&out, "[1,1,1,1,1,1]");
    int n;
    int most = max_overlap(dir, &n);
    assert_int_equal(n, 6);
    assert_int_equal(most, 2);
    json_decref(out.output);
}

/* ---- Waits are timers, not threads -------------------------------------------------- */

typedef struct watcher {
    atomic_int stop;
    atomic_int max_threads;
} watcher;

static void *watch_threads(void *arg)
{
    watcher *w = arg;
    while (!atomic_load(&w->stop)) {
        int n = thread_count();
        if (n > atomic_load(&w->max_threads))
            atomic_store(&w->max_threads, n);
        sleep_ms(5);
    }
    return NULL;
}

static void test_many_waits_few_threads(void **state)
{
    (void)state;
    enum { N = 10000, JOBS = 2 };
    const char *yaml =
        "StartAt: M\n"
        "States:\n"
        "  M:\n"
        "    Type: Map\n"
        "    MaxConcurrency: 0\n"
        "    End: true\n"
        "    ItemProcessor:\n"
        "      StartAt: W\n"
        "      States:\n"
        "        W: {Type: Wait, Seconds: 1, End: true}\n";
    pipeline *pl = compile(yaml);
    json_t *items = json_array();
    for (int i = 0; i < N; i++)
        json_array_append_new(items, json_integer(i));
    int base = thread_count();
    watcher w = {0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, watch_threads, &w), 0);
    sched_options o = opts(JOBS);
    sched_outcome out;
    int64_t t0 = now_ms();
    etl_status st = sched_run(pl, items, &o, &out);
    int64_t ms = now_ms() - t0;
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);

    assert_int_equal(st, ETL_OK);
    assert_true(json_equal(out.output, items));
    assert_int_equal(out.transitions, 1 + N);
    /* all the Waits ran at once: about one second, not N of them */
    if (ms < 1000 || ms >= 5000)
        fail_msg("10,000 one-second Waits took %lld ms", (long long)ms);
    /* the threads before (main, and a sanitizer's own if any), the watcher and the
     * workers: no more (jobs + 2 in a plain build, within the jobs + 3 budget) */
    int most = atomic_load(&w.max_threads);
    if (most > base + 1 + JOBS)
        fail_msg("%d threads during the run (base %d, jobs %d)", most, base, JOBS);
    json_decref(out.output);
    json_decref(items);
    pipeline_free(pl);
}

/* ---- cancellation --------------------------------------------------------------- */

/* The script writes its pid (the exec'd sleep's) atomically as $d/pid.<pid>. */
#define SLEEPER(dir)                                                                    \
    "[sh, -c, 'd=$SCHED_TMP/" dir "; echo $$ > $d/t.$$; mv $d/t.$$ $d/pid.$$; "         \
    "exec sleep 30']"

static void test_signal_cancels_and_kills(void **state)
{
    (void)state;
    char dir[128];
    scratch("signal", dir, sizeof dir);
    const char *yaml =
        "StartAt: P\n"
        "States:\n"
        "  P:\n"
        "    Type: Parallel\n"
        "    End: true\n"
        "    Branches:\n"
        "      - StartAt: A\n"
        "        States:\n"
        "          A: {Type: Task, Resource: exec, End: true, Command: " SLEEPER("signal") "}\n"
        "      - StartAt: B\n"
        "        States:\n"
        "          B: {Type: Task, Resource: exec, End: true, Command: " SLEEPER("signal") "}\n";
    FILE *hist = tmpfile();
    sched_options o = signal_opts(4);
    o.history = hist;
    killer k = {.dir = dir, .n_pids = 2, .delay_ms = 200};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, killer_thread, &k), 0);
    sched_outcome out;
    etl_status st = run_yaml(yaml, "{}", &o, &out, NULL);
    int64_t ended = now_ms();
    pthread_join(th, NULL);

    int64_t sent = atomic_load(&k.sent_at);
    assert_true(sent > 0);
    if (ended - sent > 3000)
        fail_msg("sched_run returned %lld ms after the signal", (long long)(ended - sent));
    assert_int_equal(st, ETL_ECANCELLED);
    assert_int_equal(out.status, ETL_ECANCELLED);
    assert_int_equal(out.signal, SIGUSR1);
    assert_string_equal(out.err.name, "States.Cancelled");
    assert_null(out.output);

    pid_t pids[4];
    assert_int_equal(read_pids(dir, pids, 4), 2);
    for (int i = 0; i < 2; i++)
        if (!proc_gone(pids[i], 0))
            fail_msg("task process %d outlived the cancelled run", (int)pids[i]);

    /* the history ends with the abort */
    char line[4096], last[4096] = "";
    rewind(hist);
    while (fgets(line, sizeof line, hist))
        memcpy(last, line, sizeof line);
    fclose(hist);
    json_t *ev = parse(last);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "ExecutionAborted");
    json_decref(ev);
}

/* A signal while only timers are pending (a Wait, a retry delay) ends the run at once. */
static void test_signal_stops_timers(void **state)
{
    (void)state;
    const char *yaml =
        "StartAt: P\n"
        "States:\n"
        "  P:\n"
        "    Type: Parallel\n"
        "    End: true\n"
        "    Branches:\n"
        "      - StartAt: W\n"
        "        States:\n"
        "          W: {Type: Wait, Seconds: 30, End: true}\n"
        "      - StartAt: T\n"
        "        States:\n"
        "          T:\n"
        "            Type: Task\n"
        "            Resource: exec\n"
        "            Command: [sh, -c, 'exit 1']\n"
        "            Retry: [{ErrorEquals: [States.ALL], IntervalSeconds: 30}]\n"
        "            End: true\n";
    sched_options o = signal_opts(2);
    killer k = {.delay_ms = 300};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, killer_thread, &k), 0);
    sched_outcome out;
    etl_status st = run_yaml(yaml, "{}", &o, &out, NULL);
    int64_t ended = now_ms();
    pthread_join(th, NULL);
    assert_int_equal(st, ETL_ECANCELLED);
    assert_int_equal(out.signal, SIGUSR1);
    if (ended - atomic_load(&k.sent_at) > 1000)
        fail_msg("sched_run returned %lld ms after the signal",
                 (long long)(ended - atomic_load(&k.sent_at)));
}

static void test_parallel_fail_fast(void **state)
{
    (void)state;
    char dir[128];
    scratch("failfast", dir, sizeof dir);
    const char *yaml =
        "StartAt: P\n"
        "States:\n"
        "  P:\n"
        "    Type: Parallel\n"
        "    End: true\n"
        "    Branches:\n"
        "      - StartAt: Sleeper\n"
        "        States:\n"
        "          Sleeper: {Type: Task, Resource: exec, End: true,\n"
        "                    Command: " SLEEPER("failfast") "}\n"
        "      - StartAt: Boom\n"
        "        States:\n"
        "          Boom:\n"
        "            Type: Task\n"
        "            Resource: exec\n"
        "            End: true\n"
        "            Command: [sh, -c, 'i=0; while [ $i -lt 200 ] && ! ls $SCHED_TMP/failfast "
        "| grep -q pid; do i=$((i+1)); sleep 0.02; done; "
        "echo \"{\\\"Error\\\":\\\"Custom.Boom\\\",\\\"Cause\\\":\\\"boom cause\\\"}\"; exit 3']\n";
    sched_options o = opts(4);
    sched_outcome out;
    double secs;
    etl_status st = run_yaml(yaml, "{}", &o, &out, &secs);
    assert_int_equal(st, ETL_ETASK);
    assert_string_equal(out.err.name, "Custom.Boom");
    assert_string_equal(out.err.cause, "boom cause");
    if (secs >= 3.0)
        fail_msg("the failure took %.2f s to arrive", secs);
    pid_t pid;
    assert_int_equal(read_pids(dir, &pid, 1), 1);
    assert_true(proc_gone(pid, 0));
}

static void test_map_failure_cancels_others(void **state)
{
    (void)state;
    char dir[128];
    scratch("mapfail", dir, sizeof dir);
    const char *yaml =
        "StartAt: M\n"
        "States:\n"
        "  M:\n"
        "    Type: Map\n"
        "    End: true\n"
        "    ItemProcessor:\n"
        "      StartAt: T\n"
        "      States:\n"
        "        T:\n"
        "          Type: Task\n"
        "          Resource: exec\n"
        "          End: true\n"
        "          Command: [sh, -c, 'd=$SCHED_TMP/mapfail; a=$(tr -d \\\"); "
        "if [ $a = fail ]; then i=0; while [ $i -lt 200 ] && [ $(ls $d | grep -c pid) -lt 3 ]; "
        "do i=$((i+1)); sleep 0.02; done; "
        "echo \"{\\\"Error\\\":\\\"Custom.MapBoom\\\",\\\"Cause\\\":\\\"item failed\\\"}\"; "
        "exit 2; fi; echo $$ > $d/t.$$; mv $d/t.$$ $d/pid.$$; exec sleep 30']\n";
    sched_options o = opts(4);
    sched_outcome out;
    double secs;
    FILE *hist = tmpfile();
    o.history = hist;
    etl_status st = run_yaml(yaml, "[\"s\", \"fail\", \"s\", \"s\"]", &o, &out, &secs);
    assert_int_equal(st, ETL_ETASK);
    assert_string_equal(out.err.name, "Custom.MapBoom");
    assert_string_equal(out.err.cause, "item failed");
    if (secs >= 3.0)
        fail_msg("the failure took %.2f s to arrive", secs);
    pid_t pids[8];
    assert_int_equal(read_pids(dir, pids, 8), 3);
    for (int i = 0; i < 3; i++)
        assert_true(proc_gone(pids[i], 0));
    /* the failed iteration is the only one reported as failed; the rest were cancelled */
    char line[4096];
    int failed = 0, succeeded = 0;
    rewind(hist);
    while (fgets(line, sizeof line, hist)) {
        json_t *ev = parse(line);
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (strcmp(type, "MapIterationFailed") == 0) {
            failed++;
            assert_int_equal(json_integer_value(json_object_get(ev, "index")), 1);
        }
        succeeded += strcmp(type, "MapIterationSucceeded") == 0;
        json_decref(ev);
    }
    fclose(hist);
    assert_int_equal(failed, 1);
    assert_int_equal(succeeded, 0);
}

/* ---- timeouts --------------------------------------------------------------------- */

/* With one worker the second task waits ~1.2 s in the queue; its 2 s run more than
 * covers the limit counted from queueing, but not from its own start. */
static void test_task_timeout_counts_from_start(void **state)
{
    (void)state;
    const char *yaml =
        "StartAt: M\n"
        "States:\n"
        "  M:\n"
        "    Type: Map\n"
        "    MaxConcurrency: 0\n"
        "    End: true\n"
        "    ItemProcessor:\n"
        "      StartAt: T\n"
        "      States:\n"
        "        T: {Type: Task, Resource: exec, Command: [sleep, '1.2'],\n"
        "            TimeoutSeconds: 2, End: true}\n";
    sched_options o = opts(1);
    sched_outcome out;
    double secs;
    run_yaml(yaml, "[1, 2]", &o, &out, &secs);
    expect_output(&out, "[null, null]");
    if (secs < 2.3 || secs > 4.5)
        fail_msg("two 1.2 s tasks on one worker took %.2f s", secs);
    json_decref(out.output);
}

static void test_task_timeout_fires(void **state)
{
    (void)state;
    const char *yaml =
        "StartAt: T\n"
        "States:\n"
        "  T: {Type: Task, Resource: exec, Command: [sleep, '5'], TimeoutSeconds: 1,\n"
        "      End: true}\n";
    sched_options o = opts(1);
    sched_outcome out;
    double secs;
    etl_status st = run_yaml(yaml, "{}", &o, &out, &secs);
    assert_int_equal(st, ETL_ETIMEOUT);
    assert_string_equal(out.err.name, "States.Timeout");
    if (secs < 0.95 || secs > 3.0)
        fail_msg("a 1 s TimeoutSeconds ended the task after %.2f s", secs);
}

static void test_top_level_timeout(void **state)
{
    (void)state;
    const char *yaml =
        "TimeoutSeconds: 1\n"
        "StartAt: W\n"
        "States:\n"
        "  W: {Type: Wait, Seconds: 30, End: true}\n";
    FILE *hist = tmpfile();
    sched_options o = opts(1);
    o.history = hist;
    sched_outcome out;
    double secs;
    etl_status st = run_yaml(yaml, "{}", &o, &out, &secs);
    assert_int_equal(st, ETL_ETIMEOUT);
    assert_string_equal(out.err.name, "States.Timeout");
    assert_non_null(strstr(out.err.cause, "TimeoutSeconds"));
    assert_int_equal(out.signal, 0);
    if (secs < 0.95 || secs > 3.0)
        fail_msg("a 1 s pipeline TimeoutSeconds ended the run after %.2f s", secs);
    char line[4096], last[4096] = "";
    rewind(hist);
    while (fgets(line, sizeof line, hist))
        memcpy(last, line, sizeof line);
    fclose(hist);
    json_t *ev = parse(last);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "ExecutionFailed");
    assert_string_equal(json_string_value(json_object_get(ev, "error")), "States.Timeout");
    json_decref(ev);
}

/* ---- retries ---------------------------------------------------------------------- */

static void test_retry_delay_arithmetic(void **state)
{
    (void)state;
    retrier rt = {.interval_s = 1, .max_attempts = 5, .backoff = 2.0};
    const double doubling[] = {1, 2, 4, 8};
    for (int a = 0; a < 4; a++)
        assert_float_equal(sched_retry_delay(&rt, a, 0.5), doubling[a], 1e-9);

    rt.max_delay_s = 5;
    const double capped[] = {1, 2, 4, 5, 5};
    for (int a = 0; a < 5; a++)
        assert_float_equal(sched_retry_delay(&rt, a, 0.5), capped[a], 1e-9);

    retrier flat = {.interval_s = 3, .max_attempts = 5, .backoff = 1.0};
    for (int a = 0; a < 4; a++)
        assert_float_equal(sched_retry_delay(&flat, a, 0.5), 3.0, 1e-9);

    retrier frac = {.interval_s = 2, .max_attempts = 5, .backoff = 1.5};
    assert_float_equal(sched_retry_delay(&frac, 2, 0.0), 4.5, 1e-9);

    /* FULL jitter scales the capped delay by the random unit */
    rt.jitter_full = true;
    assert_float_equal(sched_retry_delay(&rt, 2, 0.5), 2.0, 1e-9);
    assert_float_equal(sched_retry_delay(&rt, 2, 0.0), 0.0, 1e-9);
    assert_float_equal(sched_retry_delay(&rt, 3, 0.25), 1.25, 1e-9);
    assert_float_equal(sched_retry_delay(&rt, 9, 0.999), 4.995, 1e-9);
}

/* Fails twice, then succeeds: delays of 1 s and 2 s between the three attempts. */
static void test_retry_end_to_end(void **state)
{
    (void)state;
    char dir[128];
    scratch("retry", dir, sizeof dir);
    const char *yaml =
        "StartAt: T\n"
        "States:\n"
        "  T:\n"
        "    Type: Task\n"
        "    Resource: exec\n"
        "    Command: [sh, -c, 'f=$SCHED_TMP/retry/n; n=$(cat $f 2>/dev/null || echo 0); "
        "n=$((n+1)); echo $n > $f; if [ $n -ge 3 ]; then echo $n; else exit 1; fi']\n"
        "    Retry:\n"
        "      - ErrorEquals: [States.ALL]\n"
        "        IntervalSeconds: 1\n"
        "        MaxAttempts: 2\n"
        "    End: true\n";
    FILE *hist = tmpfile();
    sched_options o = opts(2);
    o.history = hist;
    sched_outcome out;
    double secs;
    run_yaml(yaml, "{}", &o, &out, &secs);
    expect_output(&out, "3");
    if (secs < 2.8 || secs > 8.0)
        fail_msg("retries after 1 s and 2 s took %.2f s in all", secs);
    /* a retry re-runs the state; it is not a new transition */
    assert_int_equal(out.transitions, 1);

    char line[8192];
    int retries = 0;
    const double delays[] = {1.0, 2.0};
    rewind(hist);
    while (fgets(line, sizeof line, hist)) {
        json_t *ev = parse(line);
        if (strcmp(json_string_value(json_object_get(ev, "type")), "StateRetryScheduled") == 0) {
            assert_true(retries < 2);
            assert_string_equal(json_string_value(json_object_get(ev, "state")), "T");
            assert_string_equal(json_string_value(json_object_get(ev, "error")),
                                "States.TaskFailed");
            assert_int_equal(json_integer_value(json_object_get(ev, "attempt")), retries + 1);
            assert_float_equal(json_number_value(json_object_get(ev, "delaySeconds")),
                               delays[retries], 1e-9);
            retries++;
        }
        json_decref(ev);
    }
    fclose(hist);
    assert_int_equal(retries, 2);
    json_decref(out.output);
}

/* A delay too long to express in int64 nanoseconds (about 292 years) must still be a
 * long wait, never an immediate retry: here the second delay is 1e10 s. */
static void test_huge_retry_delay_still_waits(void **state)
{
    (void)state;
    char dir[128];
    scratch("hugeretry", dir, sizeof dir);
    const char *yaml =
        "TimeoutSeconds: 2\n"
        "StartAt: T\n"
        "States:\n"
        "  T:\n"
        "    Type: Task\n"
        "    Resource: exec\n"
        "    Command: [sh, -c, 'echo x >> $SCHED_TMP/hugeretry/runs; exit 1']\n"
        "    Retry:\n"
        "      - ErrorEquals: [States.ALL]\n"
        "        IntervalSeconds: 1\n"
        "        BackoffRate: 10000000000\n"
        "        MaxAttempts: 50\n"
        "    End: true\n";
    sched_options o = opts(1);
    sched_outcome out;
    double secs;
    etl_status st = run_yaml(yaml, "{}", &o, &out, &secs);
    /* first retry after 1 s, then a wait the pipeline's 2 s timeout ends */
    if (st != ETL_ETIMEOUT)
        fail_msg("run ended after %.2f s with %s: %s", secs, out.err.name, out.err.cause);
    assert_string_equal(out.err.name, "States.Timeout");
    char path[256];
    snprintf(path, sizeof path, "%s/runs", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int runs = 0, c;
    while ((c = fgetc(f)) != EOF)
        runs += c == '\n';
    fclose(f);
    assert_int_equal(runs, 2);
}

/* The same for a Wait until a far-future Timestamp. */
static void test_far_future_timestamp_waits(void **state)
{
    (void)state;
    const char *yaml =
        "TimeoutSeconds: 1\n"
        "StartAt: W\n"
        "States:\n"
        "  W: {Type: Wait, Timestamp: '9999-12-31T00:00:00Z', End: true}\n";
    sched_options o = opts(1);
    sched_outcome out;
    double secs;
    etl_status st = run_yaml(yaml, "{}", &o, &out, &secs);
    if (st != ETL_ETIMEOUT)
        fail_msg("a Wait until year 9999 ended after %.2f s with status %d", secs, (int)st);
    json_decref(out.output);
}

/* ---- history and transitions -------------------------------------------------------- */

static void test_history_events(void **state)
{
    (void)state;
    const char *yaml =
        "StartAt: A\n"
        "States:\n"
        "  A: {Type: Pass, Result: [10, 20, 30], Next: M}\n"
        "  M:\n"
        "    Type: Map\n"
        "    Next: Done\n"
        "    ItemProcessor:\n"
        "      StartAt: Inner\n"
        "      States:\n"
        "        Inner: {Type: Pass, End: true}\n"
        "  Done: {Type: Succeed}\n";
    FILE *hist = tmpfile();
    sched_options o = opts(2);
    o.history = hist;
    sched_outcome out;
    run_yaml(yaml, "{\"x\": 1}", &o, &out, NULL);
    expect_output(&out, "[10, 20, 30]");
    assert_int_equal(out.transitions, 6);

    enum { MAXEV = 64 };
    json_t *evs[MAXEV];
    int n = 0;
    char line[8192];
    rewind(hist);
    while (fgets(line, sizeof line, hist)) {
        assert_true(n < MAXEV);
        assert_non_null(strchr(line, '\n')); /* one event per line */
        json_error_t je;
        evs[n] = json_loads(line, 0, &je);
        if (!evs[n])
            fail_msg("history line %d is not JSON: %s", n + 1, je.text);
        n++;
    }
    fclose(hist);
    assert_true(n >= 2);

    int entered = 0, exited = 0, iter_started[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        json_t *ev = evs[i];
        assert_true(json_is_object(ev));
        assert_int_equal(json_integer_value(json_object_get(ev, "id")), i + 1);
        assert_true(json_is_string(json_object_get(ev, "timestamp")));
        const char *type = json_string_value(json_object_get(ev, "type"));
        assert_non_null(type);
        if (strcmp(type, "StateEntered") == 0) {
            entered++;
            /* the matching exit follows, for the same state in the same iteration */
            json_t *name = json_object_get(ev, "state"), *idx = json_object_get(ev, "mapItemIndex");
            bool found = false;
            for (int j = i + 1; j < n && !found; j++) {
                json_t *e2 = evs[j];
                if (strcmp(json_string_value(json_object_get(e2, "type")), "StateExited") == 0 &&
                    json_equal(json_object_get(e2, "state"), name) &&
                    (idx ? json_equal(json_object_get(e2, "mapItemIndex"), idx)
                         : !json_object_get(e2, "mapItemIndex")))
                    found = true;
            }
            if (!found)
                fail_msg("StateEntered %s (event %d) has no StateExited", json_string_value(name),
                         i + 1);
        } else if (strcmp(type, "StateExited") == 0) {
            exited++;
        } else if (strcmp(type, "MapIterationStarted") == 0) {
            json_int_t idx = json_integer_value(json_object_get(ev, "index"));
            assert_true(idx >= 0 && idx < 3);
            iter_started[idx]++;
            assert_string_equal(json_string_value(json_object_get(ev, "state")), "M");
        }
        if (strcmp(type, "StateEntered") == 0 &&
            strcmp(json_string_value(json_object_get(ev, "state")), "Inner") == 0)
            assert_true(json_is_integer(json_object_get(ev, "mapItemIndex")));
    }
    assert_string_equal(json_string_value(json_object_get(evs[0], "type")), "ExecutionStarted");
    assert_string_equal(json_string_value(json_object_get(evs[n - 1], "type")),
                        "ExecutionSucceeded");
    assert_int_equal(json_integer_value(json_object_get(evs[n - 1], "transitions")),
                     (json_int_t)out.transitions);
    assert_true(json_equal(json_object_get(evs[n - 1], "output"), out.output));
    assert_int_equal(entered, 6);
    assert_int_equal(exited, 6);
    for (int i = 0; i < 3; i++)
        assert_int_equal(iter_started[i], 1);
    for (int i = 0; i < n; i++)
        json_decref(evs[i]);
    json_decref(out.output);
}

static void test_transitions_count_states_entered(void **state)
{
    (void)state;
    sched_options o = opts(2);
    sched_outcome out;
    run_yaml("StartAt: A\n"
             "States:\n"
             "  A: {Type: Pass, Next: B}\n"
             "  B: {Type: Pass, Next: C}\n"
             "  C: {Type: Succeed}\n",
             "{}", &o, &out, NULL);
    expect_output(&out, "{}");
    assert_int_equal(out.transitions, 3);
    json_decref(out.output);

    /* nested states count too: Map + 4 x (Pass, Pass) */
    run_yaml("StartAt: M\n"
             "States:\n"
             "  M:\n"
             "    Type: Map\n"
             "    End: true\n"
             "    ItemProcessor:\n"
             "      StartAt: X\n"
             "      States:\n"
             "        X: {Type: Pass, Next: Y}\n"
             "        Y: {Type: Pass, End: true}\n",
             "[1, 2, 3, 4]", &o, &out, NULL);
    expect_output(&out, "[1, 2, 3, 4]");
    assert_int_equal(out.transitions, 9);
    json_decref(out.output);

    /* a failed run still reports what it entered */
    etl_status st = run_yaml("StartAt: A\n"
                             "States:\n"
                             "  A: {Type: Pass, Next: F}\n"
                             "  F: {Type: Fail, Error: E.x, Cause: c}\n",
                             "{}", &o, &out, NULL);
    assert_int_not_equal(st, ETL_OK);
    assert_string_equal(out.err.name, "E.x");
    assert_int_equal(out.transitions, 2);
}

/* Items finish in reverse order; the output keeps item order. */
static void test_map_output_in_item_order(void **state)
{
    (void)state;
    char dir[128];
    scratch("order", dir, sizeof dir);
    const char *yaml =
        "StartAt: M\n"
        "States:\n"
        "  M:\n"
        "    Type: Map\n"
        "    End: true\n"
        "    ItemProcessor:\n"
        "      StartAt: T\n"
        "      States:\n"
        "        T:\n"
        "          Type: Task\n"
        "          Resource: exec\n"
        "          Command: [sh, -c, 'set -- $(tr -d \\\"); sleep $2; "
        "echo $1 >> $SCHED_TMP/order/log; echo \"{\\\"i\\\":$1}\"']\n"
        "          End: true\n";
    sched_options o = opts(4);
    sched_outcome out;
    run_yaml(yaml, "[\"0 0.6\", \"1 0.4\", \"2 0.2\", \"3 0\"]", &o, &out, NULL);
    expect_output(&out, "[{\"i\":0}, {\"i\":1}, {\"i\":2}, {\"i\":3}]");
    json_decref(out.output);
    /* the premise: they did complete in reverse */
    char path[256], buf[64] = "";
    snprintf(path, sizeof path, "%s/log", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_string_equal(buf, "3\n2\n1\n0\n");
}

/* ---- hygiene -------------------------------------------------------------------------- */

static void test_no_thread_or_fd_left_behind(void **state)
{
    (void)state;
    const char *ok_yaml =
        "StartAt: P\n"
        "States:\n"
        "  P:\n"
        "    Type: Parallel\n"
        "    End: true\n"
        "    Branches:\n"
        "      - StartAt: A\n"
        "        States:\n"
        "          A: {Type: Task, Resource: exec, Command: [echo, '1'], End: true}\n"
        "      - StartAt: B\n"
        "        States:\n"
        "          B: {Type: Wait, Seconds: 0, End: true}\n";
    const char *fail_yaml =
        "StartAt: T\n"
        "States:\n"
        "  T: {Type: Task, Resource: exec, Command: [sh, -c, 'exit 4'], End: true}\n";
    int threads = thread_count(), fds = fd_count();
    for (int i = 0; i < 3; i++) {
        sched_options o = opts(6);
        sched_outcome out;
        run_yaml(ok_yaml, "{}", &o, &out, NULL);
        expect_output(&out, "[1, {}]");
        json_decref(out.output);
        assert_int_equal(thread_count(), threads);
        assert_int_equal(run_yaml(fail_yaml, "{}", &o, &out, NULL), ETL_ETASK);
        assert_int_equal(thread_count(), threads);
    }
    assert_int_equal(fd_count(), fds);
}

/* After a signal, the scheduler waits for in-flight work to stop without spinning. */
static void test_cancel_wait_does_not_spin(void **state)
{
    (void)state;
    char dir[128];
    scratch("spin", dir, sizeof dir);
    /* the task ignores SIGTERM, so it lives through exec's whole TERM -> KILL grace */
    const char *yaml =
        "StartAt: T\n"
        "States:\n"
        "  T:\n"
        "    Type: Task\n"
        "    Resource: exec\n"
        "    End: true\n"
        "    Command: [sh, -c, 'trap \"\" TERM; d=$SCHED_TMP/spin; echo $$ > $d/t.$$; "
        "mv $d/t.$$ $d/pid.$$; sleep 30']\n";
    sched_options o = signal_opts(1);
    killer k = {.dir = dir, .n_pids = 1, .delay_ms = 50};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, killer_thread, &k), 0);
    pipeline *pl = compile(yaml);
    json_t *in = json_object();
    sched_outcome out;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    int64_t t0 = now_ms();
    etl_status st = sched_run(pl, in, &o, &out);
    int64_t wall = now_ms() - t0;
    getrusage(RUSAGE_SELF, &r1);
    pthread_join(th, NULL);
    assert_int_equal(st, ETL_ECANCELLED);
    assert_int_equal(out.signal, SIGUSR1);
    double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
                 (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
                 (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                 (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    /* the grace period makes the run last ~2 s; a busy loop would burn all of it */
    assert_true(wall >= 1000);
    if (cpu > 0.25 * (double)wall / 1000.0)
        fail_msg("%.2f s of CPU in %.2f s of waiting for cancelled work", cpu,
                 (double)wall / 1000.0);
    pid_t pid;
    assert_int_equal(read_pids(dir, &pid, 1), 1);
    assert_true(proc_gone(pid, 0));
    json_decref(in);
    pipeline_free(pl);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/etl_sched_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    setenv("SCHED_TMP", tmpdir, 1);
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    main_thread = pthread_self();
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nesting_cannot_deadlock_one_job),
        cmocka_unit_test(test_jobs_limits_concurrency),
        cmocka_unit_test(test_map_max_concurrency_with_exec),
        cmocka_unit_test(test_many_waits_few_threads),
        cmocka_unit_test(test_signal_cancels_and_kills),
        cmocka_unit_test(test_signal_stops_timers),
        cmocka_unit_test(test_parallel_fail_fast),
        cmocka_unit_test(test_map_failure_cancels_others),
        cmocka_unit_test(test_task_timeout_counts_from_start),
        cmocka_unit_test(test_task_timeout_fires),
        cmocka_unit_test(test_top_level_timeout),
        cmocka_unit_test(test_retry_delay_arithmetic),
        cmocka_unit_test(test_retry_end_to_end),
        cmocka_unit_test(test_huge_retry_delay_still_waits),
        cmocka_unit_test(test_far_future_timestamp_waits),
        cmocka_unit_test(test_history_events),
        cmocka_unit_test(test_transitions_count_states_entered),
        cmocka_unit_test(test_map_output_in_item_order),
        cmocka_unit_test(test_no_thread_or_fd_left_behind),
        cmocka_unit_test(test_cancel_wait_does_not_spin),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
