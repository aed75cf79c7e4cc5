/* Tests of the state directory (engine/rundir.c): where the root is, run ids, the
 * per-pipeline lock between real processes (fork), pruning, atomic JSON files and
 * reading runs back. Each test works in its own fresh temp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rundir.h"
#include "tmp_dir.h"
#include "timestamp.h"

static char root[256];

/* renameat2 as on a filesystem without RENAME_NOREPLACE (EINVAL), while no_noreplace is
 * set: this definition in the test program wins over libc's for the engine's calls. */
static bool no_noreplace;
static int refused; /* how many times it said EINVAL */
int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags)
{
    if (no_noreplace && (flags & RENAME_NOREPLACE)) {
        refused++;
        errno = EINVAL;
        return -1;
    }
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

static int setup(void **state)
{
    (void)state;
    return tmp_dir_make(root, sizeof root, "test_rundir") ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tmp_dir_remove(root);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool exists(const char *fmt, ...)
{
    char p[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    struct stat st;
    return stat(p, &st) == 0;
}

static rundir *open_ok(const char *pipeline)
{
    bool locked = true;
    char msg[512] = "";
    rundir *rd = rundir_open(root, pipeline, -1, &locked, msg, sizeof msg);
    if (!rd)
        fail_msg("rundir_open(%s): %s", pipeline, msg);
    assert_false(locked);
    return rd;
}

/* --- the root ----------------------------------------------------------------------- */

static void test_root_resolution_order(void **state)
{
    (void)state;
    setenv("ETLRUN_STATE_DIR", "/from/env", 1);
    setenv("XDG_STATE_HOME", "/xdg", 1);
    setenv("HOME", "/home/someone", 1);
    char *r = rundir_root("/from/option");
    assert_string_equal(r, "/from/option");
    free(r);
    r = rundir_root(NULL);
    assert_string_equal(r, "/from/env");
    free(r);
    setenv("ETLRUN_STATE_DIR", "", 1); /* empty counts as unset */
    r = rundir_root("");
    assert_string_equal(r, "/xdg/etlrun");
    free(r);
    unsetenv("ETLRUN_STATE_DIR");
    setenv("XDG_STATE_HOME", "relative/dir", 1); /* invalid per the XDG spec: ignored */
    r = rundir_root(NULL);
    assert_string_equal(r, "/home/someone/.local/state/etlrun");
    free(r);
    unsetenv("XDG_STATE_HOME");
    r = rundir_root(NULL);
    assert_string_equal(r, "/home/someone/.local/state/etlrun");
    free(r);
}

static void test_valid_names(void **state)
{
    (void)state;
    assert_true(rundir_valid_name("nightly-orders"));
    assert_true(rundir_valid_name("with space.v2"));
    assert_false(rundir_valid_name(""));
    assert_false(rundir_valid_name(".hidden"));
    assert_false(rundir_valid_name(".."));
    assert_false(rundir_valid_name("a/b"));
    assert_false(rundir_valid_name("tab\there"));
    char long_name[102];
    memset(long_name, 'x', 101);
    long_name[101] = '\0';
    assert_false(rundir_valid_name(long_name));
    long_name[100] = '\0';
    assert_true(rundir_valid_name(long_name));
}

/* --- runs ----------------------------------------------------------------------------- */

static void test_run_folder_and_id(void **state)
{
    (void)state;
    rundir *rd = open_ok("p1");
    assert_true(exists("%s/p1/lock", root));
    char msg[512];
    char before[40], after[40];
    ts_format(ts_now(), before, sizeof before);
    assert_true(rundir_new_run(rd, NULL, msg, sizeof msg));
    ts_format(ts_now(), after, sizeof after);
    const char *id = rundir_run_id(rd);
    /* 20261122T030000.123Z-1a2b3c: the run's UTC time, then randomness */
    assert_int_equal(strlen(id), 27);
    char as_ts[40];
    snprintf(as_ts, sizeof as_ts, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2s.%.3sZ", id, id + 4, id + 6,
             id + 9, id + 11, id + 13, id + 16);
    assert_true(strcmp(as_ts, before) >= 0);
    assert_true(strcmp(as_ts, after) <= 0);
    char want_path[512];
    snprintf(want_path, sizeof want_path, "%s/p1/runs/%s", root, id);
    assert_string_equal(rundir_run_path(rd), want_path);
    /* the folder appears only when published, with what was written before */
    assert_false(exists("%s", want_path));
    assert_true(exists("%s/p1/runs/.%s.new", root, id));
    json_t *meta = json_pack("{s:s}", "run_id", id);
    assert_true(rundir_write_json(rd, "meta.json", meta));
    json_decref(meta);
    assert_true(rundir_publish(rd, msg, sizeof msg));
    assert_true(exists("%s/meta.json", want_path));
    assert_false(exists("%s/p1/runs/.%s.new", root, id));
    struct stat st;
    assert_int_equal(stat(want_path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 077, 0); /* runs hold inputs: private */
    rundir_close(rd);
}

static void test_run_ids_sort_by_time_and_are_unique(void **state)
{
    (void)state;
    char prev[128] = "", msg[512];
    /* many runs in a few milliseconds, each by a new holder of the lock, as cron would */
    for (int i = 0; i < 60; i++) {
        rundir *rd = open_ok("fast");
        assert_true(rundir_new_run(rd, NULL, msg, sizeof msg));
        assert_true(rundir_publish(rd, msg, sizeof msg));
        const char *id = rundir_run_id(rd);
        if (strcmp(id, prev) <= 0)
            fail_msg("run %d: id %s does not sort after the previous %s", i, id, prev);
        snprintf(prev, sizeof prev, "%s", id);
        rundir_close(rd);
    }
    char tmp[512];
    json_t *list = rundir_list(root, "fast", tmp, sizeof tmp);
    assert_non_null(list);
    assert_int_equal(json_array_size(list), 60);
    json_decref(list);
}

static void test_named_runs(void **state)
{
    (void)state;
    char msg[512];
    rundir *rd = open_ok("named");
    assert_true(rundir_new_run(rd, "backfill-2026-11", msg, sizeof msg));
    assert_true(rundir_publish(rd, msg, sizeof msg));
    assert_string_equal(rundir_run_id(rd), "backfill-2026-11");
    assert_true(exists("%s/named/runs/backfill-2026-11", root));
    /* a name is a folder: the same name twice is refused, with a hint */
    assert_false(rundir_new_run(rd, "backfill-2026-11", msg, sizeof msg));
    assert_non_null(strstr(msg, "already exists"));
    assert_non_null(strstr(msg, "--name"));
    assert_false(rundir_new_run(rd, "../escape", msg, sizeof msg));
    assert_false(exists("%s/named/escape", root));
    assert_false(rundir_new_run(rd, ".hidden", msg, sizeof msg));
    rundir_close(rd);
}

/* Where the filesystem has no RENAME_NOREPLACE, a run folder is published with rename:
 * the same result, and a folder of the same name is still never replaced. */
static void test_publish_without_noreplace(void **state)
{
    (void)state;
    char msg[512];
    no_noreplace = true;
    rundir *rd = open_ok("plainfs");
    assert_true(rundir_new_run(rd, "one", msg, sizeof msg));
    assert_true(rundir_publish(rd, msg, sizeof msg));
    assert_true(exists("%s/plainfs/runs/one", root));
    assert_false(exists("%s/plainfs/runs/.one.new", root));
    /* a folder of that name appearing meanwhile is not replaced */
    assert_true(rundir_new_run(rd, "two", msg, sizeof msg));
    char two[512];
    snprintf(two, sizeof two, "%s/plainfs/runs/two", root);
    assert_int_equal(mkdir(two, 0700), 0);
    assert_false(rundir_publish(rd, msg, sizeof msg));
    assert_non_null(strstr(msg, "File exists"));
    assert_int_equal(refused, 2); /* both went through the fallback */
    rundir_close(rd);
    no_noreplace = false;
}

/* A holder that ends normally empties the lock file; one that dies (here: _exit, as
 * after a kill -9) leaves its line, and the next holder learns that it died. */
static void test_holder_died(void **state)
{
    (void)state;
    rundir *rd = open_ok("died");
    assert_false(rundir_holder_died(rd));
    rundir_close(rd);
    rd = open_ok("died");
    assert_false(rundir_holder_died(rd));
    rundir_close(rd);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        bool locked;
        char m[256];
        _exit(rundir_open(root, "died", -1, &locked, m, sizeof m) ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    rd = open_ok("died");
    assert_true(rundir_holder_died(rd));
    rundir_close(rd);
    rd = open_ok("died");
    assert_false(rundir_holder_died(rd));
    rundir_close(rd);
}

/* A run killed before its folder was published leaves only a hidden .ID.new folder:
 * no run, and removed by the next prune; one never published is removed at close. */
static void test_unpublished_runs_are_not_runs(void **state)
{
    (void)state;
    char msg[512];
    rundir *rd = open_ok("unpub");
    assert_true(rundir_new_run(rd, "never", msg, sizeof msg));
    assert_true(exists("%s/unpub/runs/.never.new", root));
    rundir_close(rd); /* without publishing */
    assert_false(exists("%s/unpub/runs/.never.new", root));
    assert_false(exists("%s/unpub/runs/never", root));

    char killed[512];
    snprintf(killed, sizeof killed, "%s/unpub/runs/.killed.new", root);
    assert_int_equal(mkdir(killed, 0700), 0);
    json_t *list = rundir_list(root, "unpub", msg, sizeof msg);
    assert_non_null(list);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    rd = open_ok("unpub");
    assert_true(rundir_new_run(rd, "next", msg, sizeof msg));
    assert_true(rundir_publish(rd, msg, sizeof msg));
    rundir_prune(rd, 30, 0);
    assert_true(rundir_flush(rd, msg, sizeof msg));
    assert_false(exists("%s", killed));
    assert_true(exists("%s/unpub/runs/next", root));
    rundir_close(rd);
}

static void test_invalid_pipeline_name(void **state)
{
    (void)state;
    bool locked = true;
    char msg[512] = "";
    assert_null(rundir_open(root, "a/b", -1, &locked, msg, sizeof msg));
    assert_false(locked);
    assert_non_null(strstr(msg, "name:"));
    assert_false(exists("%s/a", root));
}

static void test_unwritable_root(void **state)
{
    (void)state;
    char file[300], below[400];
    snprintf(file, sizeof file, "%s/not-a-dir", root);
    int fd = open(file, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(below, sizeof below, "%s/state", file);
    bool locked = true;
    char msg[512] = "";
    assert_null(rundir_open(below, "p", -1, &locked, msg, sizeof msg));
    assert_false(locked);
    assert_non_null(strstr(msg, "cannot create the state directory"));
    assert_non_null(strstr(msg, "--state-dir"));
}

/* --- the lock ------------------------------------------------------------------------- */

/* A child process that takes the lock of pipeline, says so on ready (one byte) and then
 * holds it until release is readable (or forever when release < 0). */
static pid_t holder(const char *pipeline, int *out_release)
{
    int ready[2], release[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(release), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(release[1]);
        bool locked;
        char msg[512];
        rundir *rd = rundir_open(root, pipeline, -1, &locked, msg, sizeof msg);
        if (!rd)
            _exit(3);
        if (write(ready[1], "x", 1) != 1)
            _exit(4);
        char c;
        ssize_t n = read(release[0], &c, 1);
        (void)n;
        rundir_close(rd);
        _exit(0);
    }
    close(ready[1]);
    close(release[0]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    *out_release = release[1];
    return pid;
}

static void test_lock_contention_between_processes(void **state)
{
    (void)state;
    int release;
    pid_t child = holder("shared", &release);

    bool locked = false;
    char msg[512] = "";
    double t0 = now_s();
    rundir *rd = rundir_open(root, "shared", -1, &locked, msg, sizeof msg);
    double took = now_s() - t0;
    assert_null(rd);
    assert_true(locked);
    assert_true(took < 1.0); /* at once */
    char want[64];
    snprintf(want, sizeof want, "shared is locked by pid %ld (running since 20", (long)child);
    if (!strstr(msg, want))
        fail_msg("message '%s' lacks '%s'", msg, want);
    assert_non_null(strstr(msg, "--wait-lock SECONDS"));

    /* waiting gives up after the time asked */
    locked = false;
    t0 = now_s();
    rd = rundir_open(root, "shared", 0.3, &locked, msg, sizeof msg);
    took = now_s() - t0;
    assert_null(rd);
    assert_true(locked);
    assert_true(took >= 0.3 && took < 2.0);
    assert_non_null(strstr(msg, "still locked"));

    /* the holder lets go 0.3 s into a wait of 10 s: the wait ends with the lock */
    pid_t releaser = fork();
    assert_true(releaser >= 0);
    if (releaser == 0) {
        struct timespec ts = {0, 300 * 1000000L};
        nanosleep(&ts, NULL);
        ssize_t n = write(release, "x", 1);
        _exit(n == 1 ? 0 : 1);
    }
    t0 = now_s();
    rd = rundir_open(root, "shared", 10, &locked, msg, sizeof msg);
    took = now_s() - t0;
    if (!rd)
        fail_msg("the wait did not get the lock: %s", msg);
    assert_false(locked);
    assert_true(took >= 0.25 && took < 5.0);
    int st;
    assert_int_equal(waitpid(releaser, &st, 0), releaser);
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* the new holder wrote its own pid into the lock file */
    char path[400], buf[128] = "";
    snprintf(path, sizeof path, "%s/shared/lock", root);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    long pid = 0;
    char when[64];
    assert_int_equal(sscanf(buf, "%ld %63s", &pid, when), 2);
    assert_int_equal(pid, (long)getpid());
    ts_instant t;
    assert_true(ts_parse(when, &t));
    rundir_close(rd);
    close(release);
}

static void test_other_pipelines_are_not_locked(void **state)
{
    (void)state;
    int release;
    pid_t child = holder("one", &release);
    rundir *rd = open_ok("two");
    rundir_close(rd);
    assert_int_equal(write(release, "x", 1), 1);
    int st;
    waitpid(child, &st, 0);
    close(release);
}

static void test_lock_of_killed_process_is_free(void **state)
{
    (void)state;
    int release;
    pid_t child = holder("killed", &release);
    bool locked = false;
    char msg[512];
    assert_null(rundir_open(root, "killed", -1, &locked, msg, sizeof msg));
    assert_true(locked);
    kill(child, SIGKILL);
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFSIGNALED(st));
    /* no stale-lock cleanup needed: the kernel released it */
    rundir *rd = open_ok("killed");
    rundir_close(rd);
    close(release);
}

static void test_lock_fd_is_close_on_exec(void **state)
{
    (void)state;
    rundir *rd = open_ok("cloexec");
    char want[400];
    snprintf(want, sizeof want, "%s/cloexec/lock", root);
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        rundir_close(rd);
        skip();
    }
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        char link[300], target[512];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, want) == 0) {
            int flags = fcntl(atoi(e->d_name), F_GETFD);
            assert_true(flags >= 0 && (flags & FD_CLOEXEC));
            found++;
        }
    }
    closedir(d);
    assert_int_equal(found, 1);
    rundir_close(rd);
}

/* --- files ---------------------------------------------------------------------------- */

static void test_atomic_json_write(void **state)
{
    (void)state;
    char msg[512];
    rundir *rd = open_ok("atomic");
    assert_true(rundir_new_run(rd, "r1", msg, sizeof msg));
    assert_true(rundir_publish(rd, msg, sizeof msg));
    json_t *v1 = json_pack("{s:s,s:i}", "status", "running", "n", 1);
    json_t *v2 = json_pack("{s:s,s:i,s:[i,i]}", "status", "succeeded", "n", 2, "a", 1, 2);
    assert_true(rundir_write_json(rd, "meta.json", v1));
    assert_true(rundir_flush(rd, msg, sizeof msg)); /* the keeper wrote it */
    char path[512];
    snprintf(path, sizeof path, "%s/meta.json", rundir_run_path(rd));
    json_t *back = json_load_file(path, 0, NULL);
    assert_true(json_equal(back, v1));
    json_decref(back);
    assert_true(rundir_write_json(rd, "meta.json", v2)); /* replaces */
    assert_true(rundir_flush(rd, msg, sizeof msg));
    back = json_load_file(path, 0, NULL);
    assert_true(json_equal(back, v2));
    json_decref(back);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    /* nothing else is left in the folder (no temp file) */
    DIR *d = opendir(rundir_run_path(rd));
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    assert_int_equal(n, 1);
    /* a write that cannot happen says so, and leaves the old file */
    char dir[512];
    snprintf(dir, sizeof dir, "%s", rundir_run_path(rd));
    assert_int_equal(chmod(dir, 0500), 0);
    if (access(dir, W_OK) != 0) { /* root can write anyway */
        assert_true(rundir_write_json(rd, "meta.json", v1)); /* queued */
        assert_false(rundir_flush(rd, msg, sizeof msg));
        assert_non_null(strstr(msg, "cannot write meta.json"));
        back = json_load_file(path, 0, NULL);
        assert_true(json_equal(back, v2));
        json_decref(back);
    }
    chmod(dir, 0700);
    /* after rundir_finish (the keeper ends), a write is still done: on this thread, so
     * the file is there when the call returns */
    rundir_finish(rd);
    assert_true(rundir_write_json(rd, "meta.json", v1));
    back = json_load_file(path, 0, NULL);
    assert_true(json_equal(back, v1));
    json_decref(back);
    json_decref(v1);
    json_decref(v2);
    rundir_close(rd);
}

/* Appends (the run's history): written by the keeper in order, more of them than the
 * 8 MiB that may wait at once; rundir_appends_done waits for them. A failed append is
 * reported with the file's name and undone, and nothing after it is written, so that
 * the file has no hole and no line cut short. */
static void test_appends_in_order_and_failures(void **state)
{
    (void)state;
    char msg[512], path[512];
    rundir *rd = open_ok("appends");
    assert_true(rundir_new_run(rd, "r1", msg, sizeof msg));
    assert_true(rundir_publish(rd, msg, sizeof msg));
    snprintf(path, sizeof path, "%s/history.jsonl", rundir_run_path(rd));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    const size_t chunk = 1u << 20, n = 20;
    for (size_t i = 0; i < n; i++) {
        char *text = malloc(chunk);
        assert_non_null(text);
        memset(text, 'a' + (int)i, chunk);
        assert_true(rundir_append(rd, fd, path, text, chunk));
    }
    assert_true(rundir_appends_done(rd, msg, sizeof msg));
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal((size_t)st.st_size, chunk * n);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(fseek(f, (long)(i * chunk), SEEK_SET), 0);
        assert_int_equal(fgetc(f), 'a' + (int)i);
        assert_int_equal(fseek(f, (long)((i + 1) * chunk - 1), SEEK_SET), 0);
        assert_int_equal(fgetc(f), 'a' + (int)i);
    }
    fclose(f);

    /* a write that fails half-way (the file size limit: EFBIG after a part) is undone */
    struct rlimit old_lim, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
    lim = old_lim;
    lim.rlim_cur = (rlim_t)(chunk * n + 100);
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char *big = malloc(1000);
    assert_non_null(big);
    memset(big, 'z', 1000);
    assert_true(rundir_append(rd, fd, path, big, 1000));
    assert_true(rundir_append(rd, fd, path, strdup("later\n"), 6));
    assert_false(rundir_appends_done(rd, msg, sizeof msg));
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_non_null(strstr(msg, "cannot write "));
    assert_non_null(strstr(msg, "history.jsonl: File too large"));
    assert_int_equal(fstat(fd, &st), 0);
    /* neither the 100 bytes of the cut append nor the append after it */
    assert_int_equal((size_t)st.st_size, chunk * n);
    /* the appends' failure is theirs: the other writes are fine */
    assert_true(rundir_flush(rd, msg, sizeof msg));
    rundir_close(rd);
    close(fd);

    /* a full disk (/dev/full): ENOSPC, named */
    rd = open_ok("appends");
    assert_true(rundir_new_run(rd, "r2", msg, sizeof msg));
    assert_true(rundir_publish(rd, msg, sizeof msg));
    int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
    assert_true(full >= 0);
    assert_true(rundir_append(rd, full, "/dev/full", strdup("{\"id\":1}\n"), 9));
    assert_false(rundir_appends_done(rd, msg, sizeof msg));
    assert_non_null(strstr(msg, "cannot write /dev/full: No space left on device"));
    rundir_close(rd);
    close(full);
}

/* A run named id that started secs_ago seconds ago (meta.json's "started"). */
static void make_run(rundir *rd, const char *id, double secs_ago)
{
    char msg[512], started[40];
    assert_true(rundir_new_run(rd, id, msg, sizeof msg));
    ts_instant t = ts_now();
    t.sec -= (int64_t)secs_ago;
    ts_format(t, started, sizeof started);
    json_t *meta = json_pack("{s:s,s:s}", "run_id", id, "started", started);
    assert_true(rundir_write_json(rd, "meta.json", meta));
    json_decref(meta);
    assert_true(rundir_publish(rd, msg, sizeof msg));
}

static void test_prune_keeps_newest_and_never_current(void **state)
{
    (void)state;
    rundir *rd = open_ok("prune");
    /* names in an order unlike their times: pruning goes by start time */
    make_run(rd, "e", 500);
    make_run(rd, "a", 400);
    make_run(rd, "d", 300);
    make_run(rd, "b", 200);
    make_run(rd, "c", 100);
    make_run(rd, "current", 900); /* oldest of all, but it is the run in progress */
    /* trash of a prune that was killed halfway goes too */
    char trash[512];
    snprintf(trash, sizeof trash, "%s/prune/runs/.trash-old", root);
    assert_int_equal(mkdir(trash, 0700), 0);
    char msg[512];
    rundir_prune(rd, 2, 0);
    assert_true(rundir_flush(rd, msg, sizeof msg));
    assert_true(exists("%s/prune/runs/c", root));
    assert_true(exists("%s/prune/runs/b", root));
    assert_true(exists("%s/prune/runs/current", root));
    assert_false(exists("%s/prune/runs/d", root));
    assert_false(exists("%s/prune/runs/a", root));
    assert_false(exists("%s/prune/runs/e", root));
    assert_false(exists("%s", trash));
    rundir_close(rd);
}

static void test_prune_by_age_keeps_younger_runs(void **state)
{
    (void)state;
    rundir *rd = open_ok("age");
    make_run(rd, "r3days", 3 * 86400.0);
    make_run(rd, "r2days", 2 * 86400.0);
    make_run(rd, "r1hour", 3600);
    make_run(rd, "r1min", 60);
    make_run(rd, "now", 0);
    /* keep 1, but also whatever is younger than 1.5 days */
    char msg[512];
    rundir_prune(rd, 1, 1.5 * 86400);
    assert_true(rundir_flush(rd, msg, sizeof msg));
    assert_true(exists("%s/age/runs/now", root));
    assert_true(exists("%s/age/runs/r1min", root));
    assert_true(exists("%s/age/runs/r1hour", root));
    assert_false(exists("%s/age/runs/r2days", root));
    assert_false(exists("%s/age/runs/r3days", root));
    /* keep 0 without an age rule: only the current run stays */
    rundir_prune(rd, 0, 0);
    assert_true(rundir_flush(rd, msg, sizeof msg));
    assert_true(exists("%s/age/runs/now", root));
    assert_false(exists("%s/age/runs/r1min", root));
    rundir_close(rd);
}

/* --- reading runs back ------------------------------------------------------------- */

static void test_list_find_and_running(void **state)
{
    (void)state;
    char msg[512];
    json_t *list = rundir_list(root, "nothing-yet", msg, sizeof msg);
    assert_non_null(list);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);

    rundir *rd = open_ok("listed");
    make_run(rd, "late", 10);
    make_run(rd, "early", 20);
    json_t *summary = json_pack("{s:s}", "status", "succeeded");
    assert_true(rundir_write_json(rd, "summary.json", summary));
    assert_true(rundir_flush(rd, msg, sizeof msg));
    json_decref(summary);
    char *root_pl = NULL;
    char *found = rundir_find(root, "late", &root_pl);
    assert_non_null(found);
    assert_string_equal(root_pl, "listed");
    char want[512];
    snprintf(want, sizeof want, "%s/listed/runs/late", root);
    assert_string_equal(found, want);
    free(found);
    free(root_pl);
    assert_null(rundir_find(root, "no-such-run", NULL));
    assert_null(rundir_find(root, "../listed", NULL));

    list = rundir_list(root, "listed", msg, sizeof msg);
    assert_non_null(list);
    assert_int_equal(json_array_size(list), 2);
    json_t *first = json_array_get(list, 0), *second = json_array_get(list, 1);
    assert_string_equal(json_string_value(json_object_get(first, "id")), "early");
    assert_string_equal(json_string_value(json_object_get(second, "id")), "late");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(first, "summary"), "status")),
        "succeeded");
    assert_true(json_is_null(json_object_get(second, "summary")));

    /* a run whose process holds the lock is running; once released, it is not */
    json_t *meta = json_pack("{s:I}", "pid", (json_int_t)getpid());
    assert_true(rundir_is_running(root, "listed", meta));
    rundir_close(rd);
    assert_false(rundir_is_running(root, "listed", meta));
    json_decref(meta);
    json_decref(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root_resolution_order),
        cmocka_unit_test(test_valid_names),
        cmocka_unit_test_setup_teardown(test_run_folder_and_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_ids_sort_by_time_and_are_unique, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_named_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpublished_runs_are_not_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holder_died, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_without_noreplace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_pipeline_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_contention_between_processes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_other_pipelines_are_not_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_of_killed_process_is_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_fd_is_close_on_exec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_atomic_json_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_appends_in_order_and_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_keeps_newest_and_never_current, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prune_by_age_keeps_younger_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_find_and_running, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
