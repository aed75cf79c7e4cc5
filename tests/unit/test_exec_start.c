/* Tests for how engine/exec.c starts a program (its own vfork-and-exec): the extra
 * environment (ETLRUN_RUN_ID, ...), execvp's PATH rules, and the program's death with
 * etlrun (PR_SET_PDEATHSIG) when etlrun is killed by SIGKILL. test_exec.c covers the
 * rest of the protocol. */
#include <errno.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc_util.h"

#include "exec.h"

static char tmpdir[64];

static etl_status run_sh_env(const char *script, const char *const *extra, json_t **out,
                             etl_error *err)
{
    const char *argv[] = {"sh", "-c", script, NULL};
    exec_spec spec = {.argv = argv, .env_extra = extra};
    atomic_int cancel = EXEC_RUN;
    etl_error_clear(err);
    return exec_run(&spec, NULL, 0, &cancel, out, err);
}

/* ---- environment ------------------------------------------------------------------ */

static void test_run_id_reaches_the_program(void **state)
{
    (void)state;
    const char *extra[] = {"ETLRUN_RUN_ID=20261122T030000.123Z-1a2b3c",
                           "ETLRUN_PIPELINE=nightly", "ETLRUN_STATE=Load rows", NULL};
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(run_sh_env("echo \"$ETLRUN_RUN_ID\"", extra, &out, &err), ETL_OK);
    assert_string_equal(json_string_value(out), "20261122T030000.123Z-1a2b3c");
    json_decref(out);
    assert_int_equal(run_sh_env("printf '%s|%s' \"$ETLRUN_PIPELINE\" \"$ETLRUN_STATE\"",
                                extra, &out, &err),
                     ETL_OK);
    assert_string_equal(json_string_value(out), "nightly|Load rows");
    json_decref(out);
}

static void test_extra_replaces_inherited_entries(void **state)
{
    (void)state;
    /* an etlrun started by an exec task inherits its parent's marks: its own programs
     * must carry its own, once; look-alike names are someone else's and stay */
    setenv("ETLRUN_RUN_ID", "outer-run", 1);
    setenv("ETLRUN_STATE", "Outer", 1);
    setenv("ETLRUN_STATE_DIR", "/tmp/state-dir-kept", 1);
    setenv("ETLRUN_RUN_IDX", "kept-too", 1);
    const char *extra[] = {"ETLRUN_RUN_ID=inner-run", "ETLRUN_STATE=Inner", NULL};
    json_t *out = NULL;
    etl_error err;
    etl_status st = run_sh_env("env | grep '^ETLRUN_' | LC_ALL=C sort | tr '\\n' ' '", extra,
                               &out, &err);
    unsetenv("ETLRUN_RUN_ID");
    unsetenv("ETLRUN_STATE");
    unsetenv("ETLRUN_STATE_DIR");
    unsetenv("ETLRUN_RUN_IDX");
    assert_int_equal(st, ETL_OK);
    assert_string_equal(json_string_value(out), "ETLRUN_RUN_ID=inner-run ETLRUN_RUN_IDX=kept-too "
                                                "ETLRUN_STATE=Inner "
                                                "ETLRUN_STATE_DIR=/tmp/state-dir-kept ");
    json_decref(out);

    /* without env_extra the environment is etlrun's, unchanged */
    setenv("ETL_TEST_START_MARK", "plain", 1);
    assert_int_equal(run_sh_env("echo \"$ETL_TEST_START_MARK\"", NULL, &out, &err), ETL_OK);
    unsetenv("ETL_TEST_START_MARK");
    assert_string_equal(json_string_value(out), "plain");
    json_decref(out);
}

/* ---- PATH search ------------------------------------------------------------------- */

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_path_search_follows_execvp(void **state)
{
    (void)state;
    char a[128], b[128], pa[160], pb[160], path[400];
    snprintf(a, sizeof a, "%s/a", tmpdir);
    snprintf(b, sizeof b, "%s/b", tmpdir);
    mkdir(a, 0700);
    mkdir(b, 0700);
    snprintf(pa, sizeof pa, "%s/etl-start-prog", a);
    snprintf(pb, sizeof pb, "%s/etl-start-prog", b);
    write_file(pa, "#!/bin/sh\necho from-a\n", 0644); /* not executable: skipped */
    write_file(pb, "#!/bin/sh\necho from-b\n", 0755);
    char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;

    const char *argv[] = {"etl-start-prog", NULL};
    exec_spec spec = {.argv = argv};
    atomic_int cancel = EXEC_RUN;
    json_t *out = NULL;
    etl_error err;

    snprintf(path, sizeof path, "%s/missing:%s:%s:/bin:/usr/bin", tmpdir, a, b);
    setenv("PATH", path, 1);
    etl_status st1 = exec_run(&spec, NULL, 0, &cancel, &out, &err);
    json_t *out1 = out;
    out = NULL;
    /* only the non-executable one: EACCES, as execvp reports it */
    snprintf(path, sizeof path, "%s/missing:%s", tmpdir, a);
    setenv("PATH", path, 1);
    etl_error_clear(&err);
    etl_status st2 = exec_run(&spec, NULL, 0, &cancel, &out, &err);
    char cause2[sizeof err.cause];
    snprintf(cause2, sizeof cause2, "%s", err.cause);
    /* an empty PATH entry is the working directory */
    spec.dir = b;
    setenv("PATH", ":/bin:/usr/bin", 1);
    etl_status st3 = exec_run(&spec, NULL, 0, &cancel, &out, &err);
    if (old)
        setenv("PATH", old, 1);
    else
        unsetenv("PATH");
    free(old);

    assert_int_equal(st1, ETL_OK);
    assert_string_equal(json_string_value(out1), "from-b");
    json_decref(out1);
    assert_int_equal(st2, ETL_EIO);
    assert_string_equal(cause2, "cannot run 'etl-start-prog': Permission denied");
    assert_int_equal(st3, ETL_OK);
    assert_string_equal(json_string_value(out), "from-b");
    json_decref(out);
    unlink(pa);
    unlink(pb);
    rmdir(a);
    rmdir(b);
}

/* ---- death with etlrun --------------------------------------------------------------- */

/* A stand-in for etlrun: a process that runs one program with exec_run, then is killed
 * with SIGKILL. The program must die with it; what the program started survives (that
 * is engine/orphans.c's part). */
static void test_program_dies_with_etlrun(void **state)
{
    (void)state;
    char pids[128], script[512];
    snprintf(pids, sizeof pids, "%s/death.pids", tmpdir);
    unlink(pids);
    snprintf(script, sizeof script,
             "sleep 300 & echo \"$$ $!\" > %s.tmp && mv %s.tmp %s && exec sleep 301", pids,
             pids, pids);
    pid_t helper = fork();
    assert_true(helper >= 0);
    if (helper == 0) {
        json_t *out = NULL;
        etl_error err;
        run_sh_env(script, NULL, &out, &err);
        _exit(0); /* not reached: killed first */
    }
    int x = 0, y = 0;
    int64_t until = now_ms() + 10000;
    for (;;) {
        FILE *f = fopen(pids, "r");
        int n = f ? fscanf(f, "%d %d", &x, &y) : 0;
        if (f)
            fclose(f);
        if (n == 2 || now_ms() > until)
            break;
        sleep_ms(5);
    }
    pid_t child = x, grandchild = y;
    assert_true(child > 0 && grandchild > 0);
    /* the child must have exec'd sleep 301 before the kill (the `exec` is the last step) */
    char cmdpath[64], cmd[64] = "";
    snprintf(cmdpath, sizeof cmdpath, "/proc/%d/cmdline", (int)child);
    for (until = now_ms() + 5000; now_ms() < until; sleep_ms(5)) {
        FILE *f = fopen(cmdpath, "r");
        size_t n = f ? fread(cmd, 1, sizeof cmd - 1, f) : 0;
        if (f)
            fclose(f);
        cmd[n] = '\0';
        if (strcmp(cmd, "sleep") == 0 && strcmp(cmd + 6, "301") == 0)
            break;
    }
    kill(helper, SIGKILL);
    waitpid(helper, NULL, 0);
    bool child_gone = proc_gone(child, 2000);
    bool grandchild_alive = !proc_gone(grandchild, 0);
    kill(child, SIGKILL);
    kill(grandchild, SIGKILL);
    unlink(pids);
    assert_true(child_gone);
    assert_true(grandchild_alive);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/etl_test_exec_start.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_id_reaches_the_program),
        cmocka_unit_test(test_extra_replaces_inherited_entries),
        cmocka_unit_test(test_path_search_follows_execvp),
        cmocka_unit_test(test_program_dies_with_etlrun),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
