/* Tests for the `exec` Task resource (engine/exec.c): result and error protocol,
 * stdin/stdout plumbing without deadlocks, limits, cancellation, process-group cleanup
 * and concurrent use. Programs are inline `sh -c` scripts; nothing to install. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc_util.h"

#include "exec.h"

static char tmpdir[64];

static etl_status run_spec(const exec_spec *spec, const char *input, json_t **out,
                           etl_error *err)
{
    atomic_int cancel = EXEC_RUN;
    etl_error_clear(err);
    return exec_run(spec, input, input ? strlen(input) : 0, &cancel, out, err);
}

static etl_status run_sh(const char *script, const char *input, json_t **out, etl_error *err)
{
    const char *argv[] = {"sh", "-c", script, NULL};
    exec_spec spec = {.argv = argv};
    return run_spec(&spec, input, out, err);
}

static void tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
    unlink(buf);
}

/* Reads "pid1 pid2" written by a script; waits for the file to appear. */
static int read_pids(const char *path, pid_t *a, pid_t *b, int wait_ms)
{
    int64_t until = now_ms() + wait_ms;
    for (;;) {
        FILE *f = fopen(path, "r");
        if (f) {
            int x = 0, y = 0;
            int n = fscanf(f, "%d %d", &x, &y);
            fclose(f);
            if (n == 2) {
                *a = x;
                *b = y;
                return 0;
            }
        }
        if (now_ms() >= until)
            return -1;
        sleep_ms(5);
    }
}

/* Sets *cancel once `path` exists (or at once when path is NULL), after delay_ms. */
typedef struct canceller {
    atomic_int *cancel;
    const char *path;
    int delay_ms;
    atomic_llong cancelled_at; /* now_ms() when the flag was set */
} canceller;

static void *cancel_thread(void *arg)
{
    canceller *c = arg;
    int64_t until = now_ms() + 5000;
    while (c->path && access(c->path, F_OK) != 0 && now_ms() < until)
        sleep_ms(5);
    sleep_ms(c->delay_ms);
    atomic_store(&c->cancelled_at, now_ms());
    atomic_store(c->cancel, EXEC_CANCEL);
    return NULL;
}

/* ---- results ---------------------------------------------------------------- */

static void test_json_object_result(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("echo '{\"a\": 1, \"big\": 9007199254740993, \"s\": \"x\"}'", NULL,
                            &out, &err),
                     ETL_OK);
    assert_true(json_is_object(out));
    assert_int_equal(json_integer_value(json_object_get(out, "a")), 1);
    assert_true(json_integer_value(json_object_get(out, "big")) == 9007199254740993LL);
    assert_string_equal(json_string_value(json_object_get(out, "s")), "x");
    json_decref(out);
}

static void test_json_scalar_results(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("printf 42", NULL, &out, &err), ETL_OK);
    assert_true(json_is_integer(out));
    assert_int_equal(json_integer_value(out), 42);
    json_decref(out);

    assert_int_equal(run_sh("echo '\"x\"'", NULL, &out, &err), ETL_OK);
    assert_true(json_is_string(out));
    assert_string_equal(json_string_value(out), "x");
    json_decref(out);

    assert_int_equal(run_sh("echo false", NULL, &out, &err), ETL_OK);
    assert_true(json_is_false(out));
    json_decref(out);
}

static void test_text_result_trims_one_newline(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("echo hello world", NULL, &out, &err), ETL_OK);
    assert_true(json_is_string(out));
    assert_string_equal(json_string_value(out), "hello world");
    json_decref(out);

    assert_int_equal(run_sh("printf 'a\\r\\n'", NULL, &out, &err), ETL_OK);
    assert_string_equal(json_string_value(out), "a");
    json_decref(out);

    assert_int_equal(run_sh("printf 'a\\n\\n'", NULL, &out, &err), ETL_OK);
    assert_string_equal(json_string_value(out), "a\n");
    json_decref(out);

    /* Two JSON values are not one JSON document: text. */
    assert_int_equal(run_sh("echo 1; echo 2", NULL, &out, &err), ETL_OK);
    assert_string_equal(json_string_value(out), "1\n2");
    json_decref(out);
}

static void test_empty_stdout_is_null(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("true", "{}", &out, &err), ETL_OK);
    assert_non_null(out);
    assert_true(json_is_null(out));
    json_decref(out);
}

static void test_binary_stdout_fails(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("printf '\\377\\376\\n'", NULL, &out, &err), ETL_ETASK);
    assert_null(out);
    assert_string_equal(err.name, "States.TaskFailed");
    assert_non_null(strstr(err.cause, "neither JSON nor UTF-8"));
}

static void test_input_on_stdin(void **state)
{
    (void)state;
    const char *input = "{\"k\": [1, 2, {\"n\": null}], \"u\": \"\\u00e9\"}";
    json_t *out = NULL, *want = json_loads(input, 0, NULL);
    etl_error err;
    const char *argv[] = {"cat", NULL};
    exec_spec spec = {.argv = argv};
    assert_int_equal(run_spec(&spec, input, &out, &err), ETL_OK);
    assert_true(json_equal(out, want));
    json_decref(out);
    json_decref(want);
}

static void test_working_directory(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    const char *argv[] = {"pwd", NULL};
    exec_spec spec = {.argv = argv, .dir = tmpdir};
    assert_int_equal(run_spec(&spec, NULL, &out, &err), ETL_OK);
    char real[4096];
    assert_non_null(realpath(tmpdir, real));
    assert_string_equal(json_string_value(out), real);
    json_decref(out);

    spec.dir = "/nonexistent-etlrun-dir";
    assert_int_equal(run_spec(&spec, NULL, &out, &err), ETL_EIO);
    assert_string_equal(err.name, "States.TaskFailed");
    assert_string_equal(err.cause,
                        "cannot run 'pwd' in '/nonexistent-etlrun-dir': No such file or directory");
}

/* ---- errors ------------------------------------------------------------------ */

static void test_json_error_object(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("echo '{\"Error\": \"Etl.BadRow\", \"Cause\": \"row 7 has 3 "
                            "fields\"}'; exit 3",
                            NULL, &out, &err),
                     ETL_ETASK);
    assert_null(out);
    assert_string_equal(err.name, "Etl.BadRow");
    assert_string_equal(err.cause, "row 7 has 3 fields");

    /* Without a Cause, the cause says how the program ended. */
    assert_int_equal(run_sh("echo '{\"Error\": \"Etl.BadRow\"}'; exit 3", NULL, &out, &err),
                     ETL_ETASK);
    assert_string_equal(err.name, "Etl.BadRow");
    assert_string_equal(err.cause, "'sh' exited with status 3 (stderr was empty)");

    /* Exit 0 is success whatever stdout says. */
    assert_int_equal(run_sh("echo '{\"Error\": \"Etl.BadRow\"}'", NULL, &out, &err), ETL_OK);
    assert_string_equal(json_string_value(json_object_get(out, "Error")), "Etl.BadRow");
    json_decref(out);
}

static void test_plain_failure_quotes_stderr(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("echo '[1]'; echo 'oops: disk full' >&2; exit 1", NULL, &out, &err),
                     ETL_ETASK);
    assert_string_equal(err.name, "States.TaskFailed");
    assert_string_equal(err.cause, "'sh' exited with status 1: oops: disk full");
}

static void test_stderr_tail_is_last_lines(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("i=0; while [ $i -lt 400 ]; do echo \"early line $i\" >&2; "
                            "i=$((i+1)); done; printf 'second to last\\r\\nthe last line\\n' "
                            ">&2; exit 1",
                            NULL, &out, &err),
                     ETL_ETASK);
    assert_string_equal(err.name, "States.TaskFailed");
    const char *prefix = "'sh' exited with status 1: ...early line ";
    assert_memory_equal(err.cause, prefix, strlen(prefix));
    size_t n = strlen(err.cause);
    const char *suffix = " | second to last | the last line";
    assert_true(n > strlen(suffix));
    assert_string_equal(err.cause + n - strlen(suffix), suffix);
    assert_null(strstr(err.cause, "early line 0 "));
    assert_null(strchr(err.cause, '\n'));
    assert_null(strchr(err.cause, '\r'));
    assert_true(n < 1200);
    assert_true(n > 900); /* the tail is ~1 KiB, not one line */
}

static void test_program_not_found(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    const char *argv[] = {"etlrun-no-such-program-xyz", "a", NULL};
    exec_spec spec = {.argv = argv};
    assert_int_equal(run_spec(&spec, "{}", &out, &err), ETL_EIO);
    assert_null(out);
    assert_string_equal(err.name, "States.TaskFailed");
    assert_string_equal(err.cause,
                        "cannot run 'etlrun-no-such-program-xyz': No such file or directory");

    const char *argv2[] = {"/etc/passwd", NULL};
    spec.argv = argv2;
    assert_int_equal(run_spec(&spec, "{}", &out, &err), ETL_EIO);
    assert_string_equal(err.cause, "cannot run '/etc/passwd': Permission denied");
}

static void test_death_by_signal(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("echo dying >&2; kill -KILL $$", NULL, &out, &err), ETL_ETASK);
    assert_string_equal(err.name, "States.TaskFailed");
    assert_string_equal(err.cause, "'sh' was killed by signal 9 (SIGKILL): dying");
}

static void test_reserved_error_names(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("echo '{\"Error\": \"States.Runtime\", \"Cause\": \"fake\"}'; exit 1",
                            NULL, &out, &err),
                     ETL_ETASK);
    assert_string_equal(err.name, "States.TaskFailed");
    assert_non_null(strstr(err.cause, "'States.Runtime'"));
    assert_non_null(strstr(err.cause, "fake"));

    assert_int_equal(run_sh("echo '{\"Error\": \"States.Timeout\", \"Cause\": \"slow\"}'; exit 1",
                            NULL, &out, &err),
                     ETL_ETASK);
    assert_string_equal(err.name, "States.Timeout");
    assert_string_equal(err.cause, "slow");

    assert_int_equal(run_sh("echo '{\"Error\": \"States.TaskFailed\"}'; exit 1", NULL, &out,
                            &err),
                     ETL_ETASK);
    assert_string_equal(err.name, "States.TaskFailed");
}

/* ---- plumbing ------------------------------------------------------------------ */

#define BIG (8u << 20)

static char *big_json_string(void)
{
    char *s = malloc(BIG + 1);
    assert_non_null(s);
    memset(s, 'a', BIG);
    s[0] = '"';
    s[BIG - 1] = '"';
    s[BIG] = '\0';
    return s;
}

static void test_large_input_and_output(void **state)
{
    (void)state;
    char *input = big_json_string();
    json_t *out = NULL;
    etl_error err;

    /* cat writes while we write: both directions must progress at once. */
    const char *cat[] = {"cat", NULL};
    exec_spec spec = {.argv = cat};
    assert_int_equal(run_spec(&spec, input, &out, &err), ETL_OK);
    assert_true(json_is_string(out));
    assert_int_equal(json_string_length(out), BIG - 2);
    json_decref(out);

    const char *wc[] = {"wc", "-c", NULL};
    spec.argv = wc;
    assert_int_equal(run_spec(&spec, input, &out, &err), ETL_OK);
    assert_int_equal(json_integer_value(out), BIG);
    json_decref(out);
    free(input);
}

static void test_large_output(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh("head -c 10485760 /dev/zero | tr '\\0' x", NULL, &out, &err),
                     ETL_OK);
    assert_int_equal(json_string_length(out), 10485760);
    const char *s = json_string_value(out);
    assert_int_equal(s[0], 'x');
    assert_int_equal(s[10485759], 'x');
    json_decref(out);
}

static void test_max_stdout(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    const char *exact[] = {"sh", "-c", "head -c 1000 /dev/zero | tr '\\0' x", NULL};
    exec_spec spec = {.argv = exact, .max_stdout = 1000};
    assert_int_equal(run_spec(&spec, NULL, &out, &err), ETL_OK);
    assert_int_equal(json_string_length(out), 1000);
    json_decref(out);

    const char *over[] = {"sh", "-c", "head -c 1001 /dev/zero | tr '\\0' x", NULL};
    spec.argv = over;
    assert_int_equal(run_spec(&spec, NULL, &out, &err), ETL_ETASK);
    assert_null(out);
    assert_string_equal(err.name, "States.TaskFailed");
    assert_string_equal(err.cause, "'sh': output larger than 1000 bytes (max_stdout)");

    /* An endless writer is stopped, not waited for. */
    const char *yes[] = {"yes", NULL};
    spec.argv = yes;
    spec.max_stdout = 1 << 20;
    int64_t t0 = now_ms();
    assert_int_equal(run_spec(&spec, NULL, &out, &err), ETL_ETASK);
    assert_true(now_ms() - t0 < 3000);
    assert_non_null(strstr(err.cause, "output larger than 1048576 bytes"));
}

static void test_program_ignoring_stdin(void **state)
{
    (void)state;
    char *input = big_json_string();
    json_t *out = NULL;
    etl_error err;
    sigset_t before, after, pending;
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    assert_false(sigismember(&before, SIGPIPE));

    /* Closes its stdin first: our writes hit EPIPE (and raise SIGPIPE on this thread). */
    assert_int_equal(run_sh("exec 0<&-; sleep 0.1; echo 7", input, &out, &err), ETL_OK);
    assert_int_equal(json_integer_value(out), 7);
    json_decref(out);

    assert_int_equal(run_sh("true", input, &out, &err), ETL_OK);
    assert_true(json_is_null(out));
    json_decref(out);

    /* The thread's mask is restored and no SIGPIPE is left pending to kill us later. */
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    assert_false(sigismember(&after, SIGPIPE));
    sigpending(&pending);
    assert_false(sigismember(&pending, SIGPIPE));
    free(input);
}

static void test_child_environment(void **state)
{
    (void)state;
    /* A descriptor without O_CLOEXEC, a blocked signal and an ignored one: none of
     * them may reach the program. */
    int fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, 100), 100);
    close(fd);
    sigset_t usr1, old_mask;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, &old_mask);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_int;
    sigaction(SIGINT, &ign, &old_int);

    json_t *out = NULL;
    etl_error err;
    etl_status st = run_sh(
        "read -r pid comm st ppid pgrp rest < /proc/$$/stat; "
        "blk=$(sed -n 's/^SigBlk:[[:space:]]*//p' /proc/$$/status); "
        "ign=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status); "
        "if [ -e /proc/$$/fd/100 ]; then leak=true; else leak=false; fi; "
        "if [ -e /proc/$$/fd/0 ] && [ -e /proc/$$/fd/1 ] && [ -e /proc/$$/fd/2 ]; then "
        "std=true; else std=false; fi; "
        "printf '{\"pid\":%s,\"pgrp\":%s,\"blk\":\"%s\",\"ign\":\"%s\",\"leak\":%s,\"std\":%s}' "
        "$pid $pgrp $blk $ign $leak $std",
        NULL, &out, &err);

    sigaction(SIGINT, &old_int, NULL);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    close(100);

    assert_int_equal(st, ETL_OK);
    assert_true(json_is_object(out));
    assert_true(json_integer_value(json_object_get(out, "pid")) > 0);
    assert_int_equal(json_integer_value(json_object_get(out, "pgrp")),
                     json_integer_value(json_object_get(out, "pid")));
    assert_int_equal(strtoull(json_string_value(json_object_get(out, "blk")), NULL, 16), 0);
    unsigned long long ign_mask = strtoull(json_string_value(json_object_get(out, "ign")), NULL, 16);
    assert_int_equal(ign_mask & (1ull << (SIGINT - 1)), 0);
    assert_int_equal(ign_mask & (1ull << (SIGPIPE - 1)), 0);
    assert_int_equal(ign_mask & (1ull << (SIGTERM - 1)), 0);
    assert_true(json_is_false(json_object_get(out, "leak")));
    assert_true(json_is_true(json_object_get(out, "std")));
    json_decref(out);
}

/* ---- process groups and cancellation -------------------------------------------- */

static void test_cancel_running_program(void **state)
{
    (void)state;
    char pids[128], script[512];
    tmp_path(pids, sizeof pids, "cancel.pids");
    snprintf(script, sizeof script,
             "sleep 30 & echo $$ $! > %s.tmp; mv %s.tmp %s; wait", pids, pids, pids);
    const char *argv[] = {"sh", "-c", script, NULL};
    exec_spec spec = {.argv = argv};
    atomic_int cancel = EXEC_RUN;
    canceller c = {.cancel = &cancel, .path = pids, .delay_ms = 100};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_thread, &c), 0);

    json_t *out = NULL;
    etl_error err;
    etl_error_clear(&err);
    assert_int_equal(exec_run(&spec, "{}", 2, &cancel, &out, &err), ETL_ECANCELLED);
    int64_t took = now_ms() - atomic_load(&c.cancelled_at);
    pthread_join(th, NULL);
    assert_null(out);
    assert_string_equal(err.name, "States.Cancelled");
    assert_true(took < 1000);

    pid_t sh = 0, sleeper = 0;
    assert_int_equal(read_pids(pids, &sh, &sleeper, 0), 0);
    assert_true(proc_gone(sh, 0)); /* reaped by exec_run */
    assert_true(proc_gone(sleeper, 500));
}

static void test_cancel_kills_after_grace(void **state)
{
    (void)state;
    char pids[128], script[512];
    tmp_path(pids, sizeof pids, "grace.pids");
    snprintf(script, sizeof script,
             "trap '' TERM; sleep 30 & echo $$ $! > %s.tmp; mv %s.tmp %s; "
             "while :; do wait; done",
             pids, pids, pids);
    const char *argv[] = {"sh", "-c", script, NULL};
    exec_spec spec = {.argv = argv, .grace_ms = 300};
    atomic_int cancel = EXEC_RUN;
    canceller c = {.cancel = &cancel, .path = pids, .delay_ms = 50};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_thread, &c), 0);

    json_t *out = NULL;
    etl_error err;
    assert_int_equal(exec_run(&spec, NULL, 0, &cancel, &out, &err), ETL_ECANCELLED);
    int64_t took = now_ms() - atomic_load(&c.cancelled_at);
    pthread_join(th, NULL);
    assert_true(took >= 300);  /* TERM was ignored: it took the KILL */
    assert_true(took < 1300);

    pid_t sh = 0, sleeper = 0;
    assert_int_equal(read_pids(pids, &sh, &sleeper, 0), 0);
    assert_true(proc_gone(sh, 0));
    assert_true(proc_gone(sleeper, 500));
}

static void test_cancel_before_start(void **state)
{
    (void)state;
    char mark[128], script[256];
    tmp_path(mark, sizeof mark, "never");
    snprintf(script, sizeof script, "touch %s", mark);
    const char *argv[] = {"sh", "-c", script, NULL};
    exec_spec spec = {.argv = argv};
    atomic_int cancel = EXEC_CANCEL;
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(exec_run(&spec, NULL, 0, &cancel, &out, &err), ETL_ECANCELLED);
    assert_null(out);
    sleep_ms(50);
    assert_int_equal(access(mark, F_OK), -1);
}

static void test_grandchild_holding_stdout(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    int64_t t0 = now_ms();
    assert_int_equal(run_sh("sleep 30 & echo $!", NULL, &out, &err), ETL_OK);
    assert_true(now_ms() - t0 < 1000);
    assert_true(json_is_integer(out));
    pid_t sleeper = (pid_t)json_integer_value(out);
    json_decref(out);
    assert_true(sleeper > 0);
    assert_true(proc_gone(sleeper, 500));
}

static void test_escaped_grandchild_does_not_hang(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    /* The grandchild leaves the group (new session) before the script ends, keeping
     * stdout open: it survives the group kill, and the call must still return. */
    int64_t t0 = now_ms();
    assert_int_equal(run_sh("setsid sleep 30 & p=$!; "
                            "until [ \"$(cut -d' ' -f6 /proc/$p/stat)\" = \"$p\" ]; do :; done; "
                            "echo $p",
                            NULL, &out, &err),
                     ETL_OK);
    assert_true(now_ms() - t0 < 1000);
    pid_t sleeper = (pid_t)json_integer_value(out);
    json_decref(out);
    assert_true(sleeper > 0);
    assert_false(proc_gone(sleeper, 0));
    kill(sleeper, SIGKILL);
    assert_true(proc_gone(sleeper, 1000));
}

/* ---- concurrency ---------------------------------------------------------------- */

#define N_THREADS 8
#define N_RUNS 12

typedef struct worker {
    int id;
    int failures;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < N_RUNS; i++) {
        char input[128], name[64];
        snprintf(input, sizeof input, "{\"thread\": %d, \"run\": %d}", w->id, i);
        json_t *out = NULL;
        etl_error err;
        atomic_int cancel = EXEC_RUN;
        if (i % 3 == 2) {
            /* Failing runs report their own error name. */
            char script[160];
            snprintf(name, sizeof name, "Etl.T%dR%d", w->id, i);
            snprintf(script, sizeof script, "cat >/dev/null; echo '{\"Error\":\"%s\"}'; exit 2",
                     name);
            const char *argv[] = {"sh", "-c", script, NULL};
            exec_spec spec = {.argv = argv};
            etl_status st = exec_run(&spec, input, strlen(input), &cancel, &out, &err);
            if (st != ETL_ETASK || strcmp(err.name, name) != 0 || out)
                w->failures++;
        } else {
            const char *argv[] = {"cat", NULL};
            exec_spec spec = {.argv = argv};
            json_t *want = json_loads(input, 0, NULL);
            etl_status st = exec_run(&spec, input, strlen(input), &cancel, &out, &err);
            if (st != ETL_OK || !json_equal(out, want))
                w->failures++;
            json_decref(want);
        }
        json_decref(out);
    }
    return NULL;
}

static void test_concurrent_runs(void **state)
{
    (void)state;
    pthread_t th[N_THREADS];
    worker w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (worker){.id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(w[i].failures, 0);
}

static void test_invalid_spec(void **state)
{
    (void)state;
    json_t *out = NULL;
    etl_error err;
    const char *argv[] = {NULL};
    exec_spec spec = {.argv = argv};
    assert_int_equal(run_spec(&spec, NULL, &out, &err), ETL_EINVAL);
    assert_null(out);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/etl_test_exec.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    const char *names[] = {"cancel.pids", "grace.pids", "never"};
    char p[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_object_result),
        cmocka_unit_test(test_json_scalar_results),
        cmocka_unit_test(test_text_result_trims_one_newline),
        cmocka_unit_test(test_empty_stdout_is_null),
        cmocka_unit_test(test_binary_stdout_fails),
        cmocka_unit_test(test_input_on_stdin),
        cmocka_unit_test(test_working_directory),
        cmocka_unit_test(test_json_error_object),
        cmocka_unit_test(test_plain_failure_quotes_stderr),
        cmocka_unit_test(test_stderr_tail_is_last_lines),
        cmocka_unit_test(test_program_not_found),
        cmocka_unit_test(test_death_by_signal),
        cmocka_unit_test(test_reserved_error_names),
        cmocka_unit_test(test_large_input_and_output),
        cmocka_unit_test(test_large_output),
        cmocka_unit_test(test_max_stdout),
        cmocka_unit_test(test_program_ignoring_stdin),
        cmocka_unit_test(test_child_environment),
        cmocka_unit_test(test_cancel_running_program),
        cmocka_unit_test(test_cancel_kills_after_grace),
        cmocka_unit_test(test_cancel_before_start),
        cmocka_unit_test(test_grandchild_holding_stdout),
        cmocka_unit_test(test_escaped_grandchild_does_not_hang),
        cmocka_unit_test(test_concurrent_runs),
        cmocka_unit_test(test_invalid_spec),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
