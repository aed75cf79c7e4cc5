/* Tests for engine/orphans.c: the leftovers of a killed run -- process trees whose
 * environment carries its ETLRUN_RUN_ID -- are killed, whole groups included, and
 * nothing else is: other runs, other pipelines, look-alike names. The trees are real
 * `sh` processes started here with a chosen environment. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc_util.h"

#include "orphans.h"

static char tmpdir[64];
/* ids unique to this test process: ctest runs other tests at the same time */
static char id_x[64], id_y[64], id_xy[64], id_other[64];
static char env_id_x[96], env_id_y[96], env_id_xy[96], env_id_idx[96];
static pid_t started[64]; /* every process a test learnt of: killed by teardown */
static size_t n_started;

/* Start `sh -c script` with exactly the environment env (NULL-terminated), in its own
 * process group; the script writes its pids, space-separated, to tmpdir/name. Returns
 * the sh's pid and fills pids[0..want-1] from the file. */
static pid_t start_tree(const char *name, const char *script_fmt, const char *const *env,
                        pid_t *pids, int want)
{
    char file[128], script[1024];
    snprintf(file, sizeof file, "%s/%s", tmpdir, name);
    unlink(file);
    snprintf(script, sizeof script, script_fmt, file);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    pid_t sh;
    int rc = posix_spawn(&sh, "/bin/sh", NULL, &at, (char *const *)argv, (char *const *)env);
    posix_spawnattr_destroy(&at);
    assert_int_equal(rc, 0);
    started[n_started++] = sh;
    int got = 0;
    for (int64_t until = now_ms() + 10000; got < want && now_ms() < until; sleep_ms(5)) {
        FILE *f = fopen(file, "r");
        if (!f)
            continue;
        got = 0;
        while (got < want && fscanf(f, "%d", &pids[got]) == 1)
            got++;
        fclose(f);
    }
    assert_int_equal(got, want);
    for (int i = 0; i < want; i++)
        if (n_started < sizeof started / sizeof started[0])
            started[n_started++] = pids[i];
    return sh;
}

/* Reap sh (our child) if it died, so that it is no zombie of ours. */
static void reap(pid_t sh)
{
    for (int64_t until = now_ms() + 2000; now_ms() < until; sleep_ms(5))
        if (waitpid(sh, NULL, WNOHANG) != 0)
            return;
}

static void test_kills_the_tree_and_its_group(void **state)
{
    (void)state;
    /* the group leader carries the id; the third sleep has it removed from its own
     * environment: it goes with the leader's group */
    const char *const env_x[] = {"PATH=/bin:/usr/bin", env_id_x, "ETLRUN_PIPELINE=p", NULL};
    pid_t p[3];
    pid_t sh = start_tree("tree.pids",
                          "sleep 300 & a=$!; sleep 300 & b=$!; "
                          "env -u ETLRUN_RUN_ID sleep 300 & c=$!; "
                          "echo $a $b $c > %1$s.tmp && mv %1$s.tmp %1$s; wait",
                          env_x, p, 3);
    assert_false(proc_gone(sh, 0));
    const char *ids[] = {id_x};
    char msg[512];
    int n = orphans_kill("p", ids, 1, msg, sizeof msg);
    reap(sh);
    assert_int_equal(n, 3); /* sh and the two sleeps that carry the id */
    assert_true(proc_gone(sh, 2000));
    for (int i = 0; i < 3; i++)
        assert_true(proc_gone(p[i], 2000));
    char item[64];
    snprintf(item, sizeof item, "%d (sh)", (int)sh);
    assert_non_null(strstr(msg, item));
    snprintf(item, sizeof item, "%d (sleep)", (int)p[0]);
    assert_non_null(strstr(msg, item));
}

static void test_kills_reparented_leftovers(void **state)
{
    (void)state;
    /* what a killed run leaves: the program is gone, its children were reparented and
     * their group has no leader any more */
    const char *const env_x[] = {"PATH=/bin:/usr/bin", env_id_x, "ETLRUN_PIPELINE=p", NULL};
    pid_t p[2];
    pid_t sh = start_tree("reparented.pids",
                          "sleep 300 & a=$!; sleep 300 & b=$!; "
                          "echo $a $b > %1$s.tmp && mv %1$s.tmp %1$s; exit 0",
                          env_x, p, 2);
    reap(sh);
    assert_true(proc_gone(sh, 2000));
    assert_false(proc_gone(p[0], 0));
    const char *ids[] = {id_other, id_x};
    char msg[512];
    assert_int_equal(orphans_kill(NULL, ids, 2, msg, sizeof msg), 2);
    assert_true(proc_gone(p[0], 2000));
    assert_true(proc_gone(p[1], 2000));
}

static void test_spares_other_runs_and_pipelines(void **state)
{
    (void)state;
    const char *const env_y[] = {"PATH=/bin:/usr/bin", env_id_y, "ETLRUN_PIPELINE=p", NULL};
    const char *const env_idx[] = {"PATH=/bin:/usr/bin", env_id_idx, "ETLRUN_PIPELINE=p",
                                   NULL};
    const char *const env_xy[] = {"PATH=/bin:/usr/bin", env_id_xy, "ETLRUN_PIPELINE=p", NULL};
    const char *const env_q[] = {"PATH=/bin:/usr/bin", env_id_x, "ETLRUN_PIPELINE=q", NULL};
    const char *const *envs[] = {env_y, env_idx, env_xy, env_q};
    pid_t sh[4], p[4];
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "spare%d.pids", i);
        sh[i] = start_tree(name, "sleep 300 & echo $! > %1$s.tmp && mv %1$s.tmp %1$s; wait",
                           envs[i], &p[i], 1);
    }
    const char *ids[] = {id_x};
    char msg[256];
    assert_int_equal(orphans_kill("p", ids, 1, msg, sizeof msg), 0);
    assert_string_equal(msg, "");
    for (int i = 0; i < 4; i++) {
        assert_false(proc_gone(sh[i], 0));
        assert_false(proc_gone(p[i], 0));
    }
    /* without a pipeline, the run id alone decides: pipeline q's tree goes */
    assert_int_equal(orphans_kill(NULL, ids, 1, msg, sizeof msg), 2);
    reap(sh[3]);
    assert_true(proc_gone(p[3], 2000));
    assert_false(proc_gone(p[0], 0));
    assert_int_equal(orphans_kill("p", NULL, 0, msg, sizeof msg), 0);
}

static void test_message_is_cut_to_its_buffer(void **state)
{
    (void)state;
    const char *const env_x[] = {"PATH=/bin:/usr/bin", env_id_x, "ETLRUN_PIPELINE=p", NULL};
    pid_t p[4];
    pid_t sh = start_tree("many.pids",
                          "for i in 1 2 3 4; do sleep 300 & echo $! >> %1$s.tmp; done; "
                          "mv %1$s.tmp %1$s; wait",
                          env_x, p, 4);
    const char *ids[] = {id_x};
    char msg[24];
    assert_int_equal(orphans_kill("p", ids, 1, msg, sizeof msg), 5);
    reap(sh);
    assert_true(strlen(msg) < sizeof msg);
    assert_non_null(strstr(msg, "..."));
    for (int i = 0; i < 4; i++)
        assert_true(proc_gone(p[i], 2000));
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/etl_test_orphans.XXXXXX");
    int me = (int)getpid();
    snprintf(id_x, sizeof id_x, "test-orphans-%d", me);
    snprintf(id_y, sizeof id_y, "test-orphans-%d-y", me);
    snprintf(id_xy, sizeof id_xy, "test-orphans-%dy", me); /* id_x is a prefix of it */
    snprintf(id_other, sizeof id_other, "test-orphans-%d-none", me);
    snprintf(env_id_x, sizeof env_id_x, "ETLRUN_RUN_ID=%s", id_x);
    snprintf(env_id_y, sizeof env_id_y, "ETLRUN_RUN_ID=%s", id_y);
    snprintf(env_id_xy, sizeof env_id_xy, "ETLRUN_RUN_ID=%s", id_xy);
    snprintf(env_id_idx, sizeof env_id_idx, "ETLRUN_RUN_IDX=%s", id_x);
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_started; i++)
        kill(started[i], SIGKILL);
    for (size_t i = 0; i < n_started; i++)
        waitpid(started[i], NULL, WNOHANG);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kills_the_tree_and_its_group),
        cmocka_unit_test(test_kills_reparented_leftovers),
        cmocka_unit_test(test_spares_other_runs_and_pipelines),
        cmocka_unit_test(test_message_is_cut_to_its_buffer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
