/* Conformance runner: runs one data-driven ASL case against the etlrun CLI and checks
 * the expectation written next to it (cases/<group>/<name>.expect.json).
 *
 *   conformance_runner ETLRUN CASEFILE     (CASEFILE: the pipeline or its .expect.json)
 *
 * Exit 0 when the case passes, 1 when it fails (with the command, exit code, stdout,
 * stderr and the expectation printed), 2 when the case itself is malformed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ctest kills a test after 60 s; stop etlrun a little before that so that its output
 * can still be shown. */
#define RUN_DEADLINE_SECONDS 55.0
/* After etlrun has exited, how long to keep reading pipes that a leaked descendant
 * may still hold open. */
#define DRAIN_GRACE_SECONDS 2.0

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

typedef struct run_result {
    int exit_code;  /* exit status, or 128 + signal number */
    bool killed;    /* the runner killed it at the deadline */
    double seconds; /* wall time from spawn to exit */
    buf out, err;
} run_result;

typedef struct the_case {
    char dir[PATH_MAX];      /* directory of the case: etlrun's working directory */
    char pipeline[PATH_MAX]; /* file name of the pipeline, relative to dir */
    char expect[PATH_MAX];   /* absolute path of the .expect.json */
    char tmpdir[PATH_MAX];   /* fresh per run of the runner; removed at the end */
    char input_file[PATH_MAX + 16];
    json_t *spec;            /* the parsed expectation */
} the_case;

static void buf_append(buf *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            fprintf(stderr, "conformance_runner: out of memory\n");
            exit(2);
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static const char *buf_str(const buf *b)
{
    return b->data ? b->data : "";
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Locate the pipeline and the expectation from either of the two files. */
static int locate_case(const char *arg, the_case *c)
{
    char abs[PATH_MAX];
    if (!realpath(arg, abs)) {
        fprintf(stderr, "conformance_runner: %s: %s\n", arg, strerror(errno));
        return -1;
    }
    char *slash = strrchr(abs, '/');
    *slash = '\0';
    snprintf(c->dir, sizeof c->dir, "%s", abs);
    const char *base = slash + 1;
    char stem[PATH_MAX];
    snprintf(stem, sizeof stem, "%s", base);

    if (ends_with(base, ".expect.json")) {
        stem[strlen(stem) - strlen(".expect.json")] = '\0';
        static const char *const exts[] = {".yaml", ".yml", ".json"};
        c->pipeline[0] = '\0';
        for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
            char candidate[PATH_MAX * 2];
            snprintf(candidate, sizeof candidate, "%s/%s%s", c->dir, stem, exts[i]);
            if (file_exists(candidate)) {
                snprintf(c->pipeline, sizeof c->pipeline, "%s%s", stem, exts[i]);
                break;
            }
        }
        if (!c->pipeline[0]) {
            fprintf(stderr, "conformance_runner: no pipeline %s.{yaml,yml,json} next to %s\n",
                    stem, arg);
            return -1;
        }
    } else {
        snprintf(c->pipeline, sizeof c->pipeline, "%s", base);
        char *dot = strrchr(stem, '.');
        if (dot)
            *dot = '\0';
    }
    int n = snprintf(c->expect, sizeof c->expect, "%s/%s.expect.json", c->dir, stem);
    if (n < 0 || (size_t)n >= sizeof c->expect) {
        fprintf(stderr, "conformance_runner: path too long: %s\n", arg);
        return -1;
    }
    return 0;
}

/* Reject expectations that the format does not define: a typo in a key would otherwise
 * silently weaken the case. */
static int check_spec(const the_case *c)
{
    static const char *const known[] = {"input", "output", "error", "cause", "invalid", "args",
                                        "min_seconds", "max_seconds", "comment"};
    json_t *spec = c->spec;
    const char *key;
    json_t *value;
    if (!json_is_object(spec)) {
        fprintf(stderr, "conformance_runner: %s: not a JSON object\n", c->expect);
        return -1;
    }
    json_object_foreach(spec, key, value) {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok) {
            fprintf(stderr, "conformance_runner: %s: unknown key \"%s\"\n", c->expect, key);
            return -1;
        }
    }
    int kinds = (json_object_get(spec, "output") != NULL) +
                (json_object_get(spec, "error") != NULL) +
                (json_object_get(spec, "invalid") != NULL);
    if (kinds != 1) {
        fprintf(stderr, "conformance_runner: %s: needs exactly one of output, error, invalid\n",
                c->expect);
        return -1;
    }
    json_t *err = json_object_get(spec, "error");
    if (err && !json_is_string(err)) {
        fprintf(stderr, "conformance_runner: %s: \"error\" must be a string\n", c->expect);
        return -1;
    }
    json_t *cause = json_object_get(spec, "cause");
    if (cause && (!err || !json_is_string(cause))) {
        fprintf(stderr, "conformance_runner: %s: \"cause\" must be a string next to \"error\"\n",
                c->expect);
        return -1;
    }
    json_t *inv = json_object_get(spec, "invalid");
    if (inv) {
        size_t i;
        json_t *pos;
        if (!json_is_array(inv) || json_array_size(inv) == 0) {
            fprintf(stderr, "conformance_runner: %s: \"invalid\" must be a non-empty array\n",
                    c->expect);
            return -1;
        }
        json_array_foreach(inv, i, pos) {
            int line, col;
            char extra;
            if (!json_is_string(pos) ||
                sscanf(json_string_value(pos), "%d:%d%c", &line, &col, &extra) != 2 ||
                line < 1 || col < 1) {
                fprintf(stderr, "conformance_runner: %s: invalid[%zu] must be \"LINE:COL\"\n",
                        c->expect, i);
                return -1;
            }
        }
    }
    json_t *args = json_object_get(spec, "args");
    if (args) {
        size_t i;
        json_t *a;
        if (!json_is_array(args)) {
            fprintf(stderr, "conformance_runner: %s: \"args\" must be an array\n", c->expect);
            return -1;
        }
        json_array_foreach(args, i, a) {
            if (!json_is_string(a)) {
                fprintf(stderr, "conformance_runner: %s: args[%zu] must be a string\n",
                        c->expect, i);
                return -1;
            }
        }
    }
    static const char *const bounds[] = {"min_seconds", "max_seconds"};
    for (size_t i = 0; i < 2; i++) {
        json_t *b = json_object_get(spec, bounds[i]);
        if (b && !json_is_number(b)) {
            fprintf(stderr, "conformance_runner: %s: \"%s\" must be a number\n", c->expect,
                    bounds[i]);
            return -1;
        }
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    if (dir[0])
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Spawn argv with cwd as working directory, stdin from /dev/null, stdout and stderr
 * captured. The child leads its own process group so that a deadline kill reaches
 * everything it started. */
static int run(char *const argv[], const char *cwd, run_result *r)
{
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    pid_t pid;
    int rc = -1;

    memset(r, 0, sizeof *r);
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
        perror("conformance_runner: pipe");
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
    posix_spawn_file_actions_addchdir_np(&fa, cwd);
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    double start = now_seconds();
    int err = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out_pipe[1]);
    close(err_pipe[1]);
    out_pipe[1] = err_pipe[1] = -1;
    if (err != 0) {
        fprintf(stderr, "conformance_runner: cannot start %s: %s\n", argv[0], strerror(err));
        goto out;
    }

    struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    buf *bufs[2] = {&r->out, &r->err};
    bool exited = false;
    double exit_time = 0;
    int status = 0;
    for (;;) {
        if (!exited) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid) {
                exited = true;
                exit_time = now_seconds();
                r->seconds = exit_time - start;
            }
        }
        if (fds[0].fd < 0 && fds[1].fd < 0 && exited)
            break;
        double t = now_seconds();
        if (!exited && t - start > RUN_DEADLINE_SECONDS) {
            kill(-pid, SIGKILL);
            r->killed = true;
            waitpid(pid, &status, 0);
            exited = true;
            exit_time = t;
            r->seconds = t - start;
        }
        if (exited && t - exit_time > DRAIN_GRACE_SECONDS)
            break;
        int n = poll(fds, 2, 20);
        if (n < 0 && errno != EINTR) {
            perror("conformance_runner: poll");
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char chunk[8192];
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got > 0) {
                buf_append(bufs[i], chunk, (size_t)got);
            } else if (got == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
            }
        }
    }
    /* Anything still alive in the group was leaked by etlrun; do not let it outlive us. */
    kill(-pid, SIGKILL);
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    out_pipe[0] = err_pipe[0] = -1;
    if (WIFEXITED(status))
        r->exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        r->exit_code = 128 + WTERMSIG(status);
    rc = 0;
out:
    for (int i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
    }
    return rc;
}

/* --- reporting ------------------------------------------------------------------ */

static int n_failures;
static buf report;

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    buf_append(&report, "  - ", 4);
    buf_append(&report, line, strlen(line));
    buf_append(&report, "\n", 1);
    n_failures++;
}

static void print_run(const char *label, char *const argv[], const the_case *c,
                      const run_result *r)
{
    fprintf(stderr, "--- %s: (cd %s &&", label, c->dir);
    for (size_t i = 0; argv[i]; i++)
        fprintf(stderr, " %s", argv[i]);
    fprintf(stderr, ")\n    exit code %d%s, %.2f s\n", r->exit_code,
            r->killed ? " (killed at the runner's deadline)" : "", r->seconds);
    fprintf(stderr, "--- stdout (%zu bytes):\n%s%s", r->out.len, buf_str(&r->out),
            r->out.len && r->out.data[r->out.len - 1] != '\n' ? "\n" : "");
    fprintf(stderr, "--- stderr (%zu bytes):\n%s%s", r->err.len, buf_str(&r->err),
            r->err.len && r->err.data[r->err.len - 1] != '\n' ? "\n" : "");
}

/* --- checks --------------------------------------------------------------------- */

static void check_exit(const char *what, const run_result *r, int want)
{
    if (r->killed)
        failf("%s: did not finish within %.0f s", what, RUN_DEADLINE_SECONDS);
    else if (r->exit_code != want)
        failf("%s: exit code %d, want %d", what, r->exit_code, want);
}

static void check_output(const run_result *r, json_t *want)
{
    const char *out = buf_str(&r->out);
    const char *nl = strchr(out, '\n');
    if (r->out.len == 0) {
        failf("run: stdout is empty, want the final output");
        return;
    }
    if (!nl || nl[1] != '\0')
        failf("run: stdout must be exactly one line of JSON ending in a newline");
    json_error_t jerr;
    json_t *got = json_loadb(out, r->out.len, JSON_DECODE_ANY, &jerr);
    if (!got) {
        failf("run: stdout is not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
              jerr.column);
        return;
    }
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
        char *w = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
        failf("run: output %s, want %s (strict: 1 and 1.0 differ)", g ? g : "?", w ? w : "?");
        free(g);
        free(w);
    }
    json_decref(got);
}

/* stderr must hold "etlrun: execution failed: NAME: CAUSE" with NAME exact and CAUSE
 * containing want_cause (when given). */
static void check_error(const run_result *r, const char *want_name, const char *want_cause)
{
    static const char prefix[] = "etlrun: execution failed: ";
    const char *err = buf_str(&r->err);
    size_t name_len = strlen(want_name);
    bool name_found = false, cause_found = false;
    for (const char *p = strstr(err, prefix); p; p = strstr(p + 1, prefix)) {
        const char *name = p + strlen(prefix);
        if (strncmp(name, want_name, name_len) != 0)
            continue;
        char after = name[name_len];
        if (after != ':' && after != '\n' && after != '\0')
            continue;
        name_found = true;
        if (!want_cause) {
            cause_found = true;
            break;
        }
        const char *eol = strchr(name, '\n');
        size_t line_len = eol ? (size_t)(eol - name) : strlen(name);
        char *line = strndup(name, line_len);
        if (line && strstr(line + name_len, want_cause))
            cause_found = true;
        free(line);
        if (cause_found)
            break;
    }
    if (!name_found)
        failf("run: stderr lacks \"%s%s: ...\"", prefix, want_name);
    else if (!cause_found)
        failf("run: the cause of %s does not contain \"%s\"", want_name, want_cause);
    if (r->out.len != 0)
        failf("run: a failed execution printed something on stdout");
}

static void check_positions(const char *what, const run_result *r, const the_case *c,
                            json_t *positions)
{
    size_t i;
    json_t *pos;
    json_array_foreach(positions, i, pos) {
        char needle[PATH_MAX + 64];
        snprintf(needle, sizeof needle, "%s:%s:", c->pipeline, json_string_value(pos));
        if (!strstr(buf_str(&r->err), needle))
            failf("%s: stderr lacks \"%s\"", what, needle);
    }
    if (r->out.len != 0)
        failf("%s: an invalid definition printed something on stdout", what);
}

static void check_time(const run_result *r, json_t *spec)
{
    json_t *lo = json_object_get(spec, "min_seconds");
    json_t *hi = json_object_get(spec, "max_seconds");
    if (lo && r->seconds < json_number_value(lo))
        failf("run: took %.2f s, want at least %.2f s", r->seconds, json_number_value(lo));
    if (hi && r->seconds > json_number_value(hi))
        failf("run: took %.2f s, want at most %.2f s", r->seconds, json_number_value(hi));
}

/* --- main ----------------------------------------------------------------------- */

static int prepare_tmp(the_case *c)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(c->tmpdir, sizeof c->tmpdir, "%s/etlconf.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(c->tmpdir)) {
        fprintf(stderr, "conformance_runner: mkdtemp %s: %s\n", c->tmpdir, strerror(errno));
        c->tmpdir[0] = '\0';
        return -1;
    }
    char work[PATH_MAX + 16];
    snprintf(work, sizeof work, "%s/work", c->tmpdir);
    if (mkdir(work, 0700) != 0) {
        fprintf(stderr, "conformance_runner: mkdir %s: %s\n", work, strerror(errno));
        return -1;
    }
    /* Scripts that keep state (attempt counters, ordered logs) put it here: one fresh
     * directory per case, so that cases can run in parallel. */
    setenv("ETL_CASE_TMP", work, 1);
    /* etlrun keeps runs and per-pipeline locks in its state directory: one per case, so
     * that cases of the same pipeline name run in parallel and nothing lands in $HOME */
    char state[PATH_MAX + 16];
    snprintf(state, sizeof state, "%s/state", c->tmpdir);
    setenv("ETLRUN_STATE_DIR", state, 1);

    snprintf(c->input_file, sizeof c->input_file, "%s/input.json", c->tmpdir);
    json_t *input = json_object_get(c->spec, "input");
    json_t *empty = json_object();
    int rc = json_dump_file(input ? input : empty, c->input_file, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(empty);
    if (rc != 0) {
        fprintf(stderr, "conformance_runner: cannot write %s\n", c->input_file);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    the_case c;
    char etlrun[PATH_MAX];
    char *run_argv[64], *validate_argv[4];
    run_result run_r = {0}, val_r = {0};
    int status = 2;

    memset(&c, 0, sizeof c);
    if (argc != 3) {
        fprintf(stderr, "usage: conformance_runner ETLRUN CASEFILE\n");
        return 2;
    }
    if (!realpath(argv[1], etlrun)) {
        fprintf(stderr, "conformance_runner: %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    if (locate_case(argv[2], &c) != 0)
        return 2;
    json_error_t jerr;
    c.spec = json_load_file(c.expect, 0, &jerr);
    if (!c.spec) {
        fprintf(stderr, "conformance_runner: %s:%d:%d: %s\n", c.expect, jerr.line, jerr.column,
                jerr.text);
        return 2;
    }
    if (check_spec(&c) != 0 || prepare_tmp(&c) != 0)
        goto out;

    size_t n = 0;
    run_argv[n++] = etlrun;
    run_argv[n++] = "run";
    run_argv[n++] = c.pipeline;
    run_argv[n++] = "--input-file";
    run_argv[n++] = c.input_file;
    json_t *args = json_object_get(c.spec, "args");
    size_t i;
    json_t *a;
    json_array_foreach(args, i, a) {
        if (n + 1 >= sizeof run_argv / sizeof run_argv[0]) {
            fprintf(stderr, "conformance_runner: too many args\n");
            goto out;
        }
        run_argv[n++] = (char *)json_string_value(a);
    }
    run_argv[n] = NULL;
    validate_argv[0] = etlrun;
    validate_argv[1] = "validate";
    validate_argv[2] = c.pipeline;
    validate_argv[3] = NULL;

    if (run(run_argv, c.dir, &run_r) != 0)
        goto out;
    if (run(validate_argv, c.dir, &val_r) != 0)
        goto out;

    json_t *output = json_object_get(c.spec, "output");
    json_t *error = json_object_get(c.spec, "error");
    json_t *invalid = json_object_get(c.spec, "invalid");
    if (output) {
        check_exit("run", &run_r, 0);
        if (run_r.exit_code == 0)
            check_output(&run_r, output);
        check_exit("validate", &val_r, 0);
    } else if (error) {
        check_exit("run", &run_r, 1);
        if (run_r.exit_code == 1)
            check_error(&run_r, json_string_value(error),
                        json_string_value(json_object_get(c.spec, "cause")));
        check_exit("validate", &val_r, 0);
    } else {
        check_exit("validate", &val_r, 2);
        check_positions("validate", &val_r, &c, invalid);
        check_exit("run", &run_r, 2);
        check_positions("run", &run_r, &c, invalid);
    }
    check_time(&run_r, c.spec);

    if (n_failures == 0) {
        printf("ok %s/%s (%.2f s)\n", c.dir, c.pipeline, run_r.seconds);
        status = 0;
    } else {
        fprintf(stderr, "FAIL %s/%s\n%s", c.dir, c.pipeline, buf_str(&report));
        print_run("run", run_argv, &c, &run_r);
        print_run("validate", validate_argv, &c, &val_r);
        char *spec = json_dumps(c.spec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fprintf(stderr, "--- expectation (%s):\n%s\n", c.expect, spec ? spec : "?");
        free(spec);
        status = 1;
    }
out:
    free(run_r.out.data);
    free(run_r.err.data);
    free(val_r.out.data);
    free(val_r.err.data);
    free(report.data);
    remove_tree(c.tmpdir);
    json_decref(c.spec);
    return status;
}
