/* The etlrun command line: parse arguments, load and validate the pipeline, run it in
 * its run folder of the state directory under the pipeline's lock, and map the outcome
 * to an exit code. stdout carries only the final output JSON (or what `runs` and `show`
 * print); everything else goes to stderr: log lines, the summary, the failure line.
 *
 * The end of a run, in order: output on stdout, summary.json and meta.json in the run
 * folder, the notify ping, pruning, then on stderr the summary and, last, the line
 * "etlrun: execution failed: NAME: CAUSE" (tests and scripts read the last line). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "exec.h"
#include "graph.h"
#include "host.h"
#include "jsontext.h"
#include "ledger_cmd.h"
#include "log.h"
#include "machine.h"
#include "notify.h"
#include "orphans.h"
#include "plugins.h"
#include "report.h"
#include "rundir.h"
#include "stage.h"
#include "scheduler.h"
#include "timestamp.h"
#include "version.h"

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_CAUGHT = 3,    /* succeeded, but errors were caught (--strict) */
    EXIT_LOCKED = 75,   /* EX_TEMPFAIL: another run holds the pipeline's lock */
    EXIT_SIGINT = 130,
    EXIT_SIGTERM = 143,
};

static const char usage_text[] =
    "usage: etlrun [run] PIPELINE [options]   run a pipeline; its output JSON goes to stdout\n"
    "       etlrun validate PIPELINE           check a pipeline, run nothing\n"
    "       etlrun graph PIPELINE              print the state machine as Graphviz DOT\n"
    "       etlrun check PIPELINE              connect to every connection and report each\n"
    "       etlrun runs PIPELINE               list the pipeline's past runs, newest last\n"
    "       etlrun show RUN_ID [--history]     print a run's summary (and its events)\n"
    "       etlrun resume RUN_ID               finish a failed, cancelled or killed run\n"
    "       etlrun ledger PIPELINE [--key K] [--limit N]\n"
    "                                          the newest loads recorded in the load ledgers\n"
    "       etlrun plugins                     list the connectors: built in and plugins\n"
    "       etlrun plugin check FILE.so        check a connector plugin against the interface\n"
    "       etlrun --help | --version\n"
    "\n"
    "PIPELINE is a YAML file, or a JSON file (name ending in .json) in the Amazon States\n"
    "Language. For runs, PIPELINE may also be the pipeline's name.\n"
    "\n"
    "options of run:\n"
    "  --input JSON         the execution input (default {})\n"
    "  --input-file FILE    read the input from FILE ('-' for stdin)\n"
    "  --jobs N             worker threads for blocking Task work (default 8)\n"
    "  --history FILE       also append the execution's events to FILE, as JSON lines\n"
    "  --name NAME          the run id ($$.Execution.Name; default generated, sorts by time)\n"
    "  --resume RUN_ID|last continue that run (same input and id): completed Map iterations\n"
    "                       and Parallel branches are reused, failed paths restart at the\n"
    "                       state that failed\n"
    "  --stage-dir DIR      where staged files go (default: staging.dir of the pipeline,\n"
    "                       else the run folder's stage/)\n"
    "  --state-dir DIR      the state directory (runs, locks); also for runs and show\n"
    "  --no-state           keep nothing: no lock, no run folder (history, checkpoints,\n"
    "                       summary.json), no resume; staging in a temporary folder\n"
    "  --wait-lock SECONDS  when another run of the pipeline holds its lock, wait up to\n"
    "                       SECONDS for it instead of exiting 75 at once\n"
    "  --stop-timeout SECONDS  after SIGINT/SIGTERM, wait at most SECONDS (default 60;\n"
    "                       0: no limit) for in-flight work to stop, then exit anyway\n"
    "  --strict             exit 3 when the run succeeded but errors were caught\n"
    "  --log-format FORMAT  text (default) or json (one JSON object per line)\n"
    "  --log-file FILE      also append every log line to FILE\n"
    "  --quiet              errors only; the summary only when the run failed (for cron)\n"
    "  --verbose            debug lines too\n"
    "  --summary FILE       also write the summary JSON to FILE\n"
    "  --notify-url URL     ping URL/start, URL (success) or URL/fail (as notify.url)\n"
    "  --env-file FILE      set NAME=VALUE lines of FILE in the environment before the\n"
    "                       pipeline is read (also for validate, graph, check); FILE must\n"
    "                       not be readable by other users\n"
    "\n"
    "environment:\n"
    "  ETLRUN_STATE_DIR     the state directory when --state-dir is not given; else\n"
    "                       $XDG_STATE_HOME/etlrun, else ~/.local/state/etlrun\n"
    "  ETLRUN_PLUGIN_PATH   ':'-separated directories searched for connector plugins\n"
    "  NO_COLOR             set and not empty: no colour on a terminal\n"
    "\n"
    "exit codes:\n"
    "  0    the execution succeeded\n"
    "  1    the execution failed (stderr names the error and its cause), or its output\n"
    "       or its records (history, summary) could not be written\n"
    "  2    the pipeline or the command line is invalid; nothing ran\n"
    "  3    the execution succeeded, but errors were caught (only with --strict)\n"
    "  75   another run of the pipeline holds its lock; nothing ran (try again later)\n"
    "  130  interrupted by SIGINT; 143: terminated by SIGTERM (in-flight work cancelled)\n";

static volatile sig_atomic_t got_signal;
static int wake_pipe[2] = {-1, -1};
static unsigned stop_timeout_s;         /* --stop-timeout; 0: wait for in-flight work */
static char stop_msg[2][160];           /* made before any signal: the handler only writes */

/* SIGALRM, armed by the first SIGINT/SIGTERM: the work in flight did not stop in time
 * (a plugin that ignores cancellation, a server that does not answer). Exit as a second
 * Ctrl-C does; open transactions die with their connections, and the run has no
 * summary, so it reads as killed, and a resume redoes what was not finished. */
static void on_stop_timeout(int sig)
{
    (void)sig;
    const char *m = stop_msg[got_signal == SIGINT ? 0 : 1];
    ssize_t n = write(STDERR_FILENO, m, strlen(m));
    (void)n;
    exec_kill_all();
    _exit(got_signal == SIGINT ? EXIT_SIGINT : EXIT_SIGTERM);
}

static void on_signal(int sig)
{
    if (got_signal && sig == SIGINT) {
        /* a second Ctrl-C: stop waiting for cancellation, but leave no program behind */
        exec_kill_all();
        _exit(EXIT_SIGINT);
    }
    if (!got_signal && stop_timeout_s)
        alarm(stop_timeout_s);
    got_signal = sig;
    int saved = errno;
    ssize_t n = write(wake_pipe[1], "x", 1);
    (void)n;
    errno = saved;
}

static int usage_error(const char *fmt, const char *arg)
{
    fputs("etlrun: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nTry 'etlrun --help'.\n", stderr);
    return EXIT_USAGE;
}

/* Which options a command accepts. */
enum {
    OPTS_RUN = 1,      /* --input, --jobs, ... */
    OPTS_STATE = 2,    /* --state-dir */
    OPTS_ENV = 4,      /* --env-file */
    OPTS_SHOW = 8,     /* show's --history */
    OPTS_LEDGER = 16,  /* ledger's --key, --limit */
};

typedef struct run_args {
    const char *input, *input_file, *history, *name, *stage_dir;
    const char *state_dir, *summary, *notify_url, *env_file, *log_file;
    const char *resume;     /* --resume RUN_ID|last, or `etlrun resume RUN_ID` */
    const char *ledger_key; /* ledger --key */
    int ledger_limit;       /* ledger --limit */
    double wait_lock;       /* < 0: fail at once when locked */
    unsigned stop_timeout;  /* --stop-timeout: seconds; 0 = no limit */
    bool strict, quiet, verbose, show_history;
    bool no_state;          /* --no-state */
    log_format log_format;
    int jobs;
    unsigned used;          /* OPTS_* of the options given */
} run_args;

/* --- messages of a run ----------------------------------------------------------- */

static log_format g_log_format = LOG_TEXT;

/* A line that ends a run or stops it from starting: "etlrun: MESSAGE" on stderr in
 * text, an error log line in JSON (stderr then holds only JSON lines). */
static void final_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void final_line(const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_log_format == LOG_JSON)
        log_msg(ETL_LOG_ERROR, NULL, NULL, NULL, "%s", msg);
    else
        fprintf(stderr, "etlrun: %s\n", msg);
}

/* --- input, pipeline, environment ---------------------------------------------- */

static json_t *read_input(const char *text, const char *file)
{
    json_error_t jerr;
    json_t *v;
    if (file) {
        FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
        if (!f) {
            fprintf(stderr, "etlrun: cannot read --input-file %s: %s\n", file, strerror(errno));
            return NULL;
        }
        v = json_loadf(f, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        if (f != stdin)
            fclose(f);
        if (!v)
            fprintf(stderr, "%s:%d:%d: invalid JSON input: %s\n",
                    strcmp(file, "-") == 0 ? "<stdin>" : file, jerr.line, jerr.column,
                    jerr.text);
        return v;
    }
    v = json_loads(text ? text : "{}", JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        fprintf(stderr, "etlrun: --input is not valid JSON (column %d): %s\n", jerr.column,
                jerr.text);
    return v;
}

static pipeline *load(const char *file)
{
    diag *d = diag_new(file);
    if (!d) {
        fprintf(stderr, "etlrun: out of memory\n");
        return NULL;
    }
    pipeline *pl = pipeline_load(file, d);
    if (!pl) {
        diag_print(d, stderr);
        size_t n = diag_count(d);
        fprintf(stderr, "etlrun: %s: %zu error%s; nothing ran\n", file, n, n == 1 ? "" : "s");
    }
    diag_free(d);
    return pl;
}

static bool env_name_ok(const char *s, size_t n)
{
    if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* --env-file: "NAME=VALUE" lines ("export " allowed before NAME; one pair of matching
 * quotes around VALUE removed; nothing else interpreted), '#' comments, blank lines.
 * The file holds secrets: refused when other users may read or write it, and no message
 * ever quotes a value. Values replace the environment's. */
static int load_env_file(const char *path)
{
    int rc = EXIT_USAGE;
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(stderr, "etlrun: cannot read --env-file %s: %s\n", path, strerror(errno));
        return EXIT_USAGE;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "etlrun: --env-file %s is not a regular file\n", path);
        goto out;
    }
    if (st.st_mode & S_IRWXO) {
        fprintf(stderr, "etlrun: --env-file %s holds secrets but other users may read or "
                "write it (mode %04o); run: chmod 600 %s\n", path,
                (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    ssize_t n;
    int lineno = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        char *s = line + strspn(line, " \t");
        if (*s == '\0' || *s == '#')
            continue;
        if (strncmp(s, "export ", 7) == 0)
            s += 7 + strspn(s + 7, " \t");
        char *eq = strchr(s, '=');
        if (!eq || !env_name_ok(s, (size_t)(eq - s))) {
            fprintf(stderr, "%s:%d: expected NAME=VALUE (NAME: letters, digits, '_')\n", path,
                    lineno);
            goto out;
        }
        *eq = '\0';
        char *v = eq + 1;
        size_t vlen = strlen(v);
        if (vlen >= 2 && (v[0] == '"' || v[0] == '\'') && v[vlen - 1] == v[0]) {
            v[vlen - 1] = '\0';
            v++;
        }
        if (setenv(s, v, 1) != 0) {
            fprintf(stderr, "%s:%d: cannot set %s: %s\n", path, lineno, s, strerror(errno));
            goto out;
        }
    }
    rc = EXIT_OK;
out:
    free(line);
    fclose(f);
    return rc;
}

/* --- validate, graph, check ------------------------------------------------------ */

static int cmd_validate(const char *file)
{
    pipeline *pl = load(file);
    if (!pl)
        return EXIT_USAGE;
    fprintf(stderr, "etlrun: %s is valid (%zu state%s)\n", file, pl->n_states_total,
            pl->n_states_total == 1 ? "" : "s");
    pipeline_free(pl);
    return EXIT_OK;
}

static int cmd_graph(const char *file)
{
    pipeline *pl = load(file);
    if (!pl)
        return EXIT_USAGE;
    graph_write(pl, stdout);
    pipeline_free(pl);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
}

/* `etlrun check`: open every connection once and report each. */
static int cmd_check(const char *file)
{
    pipeline *pl = load(file);
    if (!pl)
        return EXIT_USAGE;
    int failed = 0;
    etl_error err;
    etl_error_clear(&err);
    if (registry_global_init(pl->reg, &err) != ETL_OK) {
        fprintf(stderr, "etlrun: cannot initialise the connectors: %s: %s\n", err.name,
                err.cause);
        pipeline_free(pl);
        return EXIT_FAILED;
    }
    registry_thread_init(pl->reg);
    if (pl->n_conns == 0)
        printf("%s: no connections to check\n", file);
    for (size_t i = 0; i < pl->n_conns; i++) {
        const conn_def *cd = &pl->conns[i];
        const etl_connector *c = cd->connector;
        atomic_int cancel = 0;
        etl_task task;
        host_task_init(&task, "check", "", cd->name, ".", 1, &cancel);
        etl_conn *conn = NULL;
        etl_error_clear(&err);
        if (c->open(host_services(), &task, host_wrap(cd->settings), &conn, &err) != ETL_OK) {
            printf("%s (%s): FAILED: %s: %s\n", cd->name, c->name, err.name, err.cause);
            failed++;
        } else {
            char version[256] = "reachable";
            if (c->server_version)
                c->server_version(host_services(), conn, version, sizeof version);
            printf("%s (%s): ok, %s\n", cd->name, c->name, version);
            c->close(host_services(), conn);
        }
        host_task_destroy(&task);
    }
    registry_thread_end(pl->reg);
    registry_global_cleanup(pl->reg);
    pipeline_free(pl);
    return failed ? EXIT_FAILED : EXIT_OK;
}

/* --- the run folder's history.jsonl ----------------------------------------------- */

/* The run folder keeps every event but StateEntered/StateExited: those come one pair
 * per transition, and writing them would cost a run of a big Map most of its time.
 * They are written, with the rest, by --history FILE (the scheduler's own history).
 * The lines are gathered here and written by rundir's keeper thread, so that the run
 * does not wait for the disk. Scheduler thread. */
typedef struct observer {
    report *rep;
    rundir *rd;           /* NULL: no history in a run folder */
    int hist_fd;          /* RUN_FOLDER/history.jsonl, written by rd's keeper */
    char hist_name[PATH_MAX + 16]; /* its path, for messages */
    bool failed;          /* out of memory: an event was lost; said at the end */
    jt_buf lines;         /* events not handed to the keeper yet */
    /* values whose text is made once for all their uses: the input (its size, meta.json,
     * ExecutionStarted) and, once ExecutionSucceeded is written, the output (printed) */
    jt_known known[2];
    size_t nknown;
    char *input_text, *output_text;
    size_t output_len;
    json_t *output;       /* held while output_text is its text */
} observer;

/* lines gathered before they go to the keeper (and at the end of the run) */
#define HISTORY_CHUNK (64 * 1024)

static void hand_lines(observer *o)
{
    jt_buf b = o->lines;
    o->lines = (jt_buf){0};
    if (b.oom || b.len == 0) {
        o->failed = o->failed || b.oom;
        free(b.p);
    } else if (!rundir_append(o->rd, o->hist_fd, o->hist_name, b.p, b.len)) {
        o->failed = true; /* b.p is freed */
    }
}

/* The input's text is no longer needed (meta.json and ExecutionStarted are written). */
static void forget_input(observer *o)
{
    for (size_t i = 0; i < o->nknown; i++)
        if (o->known[i].text == o->input_text) {
            o->known[i] = o->known[--o->nknown];
            break;
        }
    free(o->input_text);
    o->input_text = NULL;
}

static void observe(void *arg, const json_t *event)
{
    observer *o = arg;
    report_observe(o->rep, event);
    if (!o->rd || o->failed)
        return;
    json_t *output = json_object_get(event, "output");
    const char *type = json_string_value(json_object_get(event, "type"));
    if (output && !o->output && type && strcmp(type, "ExecutionSucceeded") == 0) {
        o->output_text = jsontext_dumps(output, &o->output_len);
        if (o->output_text) {
            o->output = json_incref(output);
            o->known[o->nknown++] = (jt_known){output, o->output_text, o->output_len};
        }
    }
    o->lines.known = o->known;
    o->lines.nknown = o->nknown;
    jt_value(&o->lines, event);
    jt_putc(&o->lines, '\n');
    if (o->input_text && type && strcmp(type, "ExecutionStarted") == 0)
        forget_input(o);
    if (o->lines.len >= HISTORY_CHUNK || o->lines.oom)
        hand_lines(o);
}

/* The run's history is written (after the end of the run): false, having said why,
 * when an event could not be. */
static bool history_written(observer *o)
{
    char msg[PATH_MAX + 300];
    if (!o->rd)
        return true;
    if (o->failed) {
        final_line("cannot write %s: out of memory", o->hist_name);
        return false;
    }
    if (!rundir_appends_done(o->rd, msg, sizeof msg)) {
        final_line("%s", msg);
        return false;
    }
    return true;
}

/* Its texts and the output it holds (the known texts go with them); again: nothing. */
static void observer_free(observer *o)
{
    free(o->lines.p);
    free(o->input_text);
    free(o->output_text);
    json_decref(o->output);
    o->lines = (jt_buf){0};
    o->input_text = o->output_text = NULL;
    o->output = NULL;
    o->nknown = 0;
}

/* fflush f and report a write error that fflush or an earlier write met. */
static bool flush_ok(FILE *f, bool failed_before, const char *what)
{
    errno = 0;
    int flushed = fflush(f);
    int e = errno;
    if (flushed == 0 && !ferror(f) && !failed_before)
        return true;
    final_line("cannot write %s: %s", what, flushed != 0 && e ? strerror(e) : "a write failed");
    return false;
}

/* RUN/history.jsonl at path, created, or opened for appending by a resumed attempt.
 * -1 with errno on failure. */
static int open_run_history(const char *path, bool resumed)
{
    /* private like the rest of the run folder: events carry inputs and outputs */
    int fd = open(path, (resumed ? O_RDWR | O_APPEND : O_WRONLY | O_TRUNC) | O_CREAT |
                            O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    /* a killed attempt can leave its last event cut short: end that line, so that the
     * resumed attempt's first event is a line of its own */
    char last = '\n';
    off_t size = resumed ? lseek(fd, 0, SEEK_END) : 0;
    if (size > 0 && pread(fd, &last, 1, size - 1) == 1 && last != '\n') {
        ssize_t w = write(fd, "\n", 1);
        (void)w; /* at worst the torn line swallows the next event, as before */
    }
    return fd;
}

/* Take up run `want` (a run id, or "last") of the pipeline again: its folder becomes the
 * current run's, *out_input its input, *out_redrive its resume count plus one, *replay
 * its checkpoints. Returns EXIT_OK, or the exit code after saying why on stderr. */
static int open_resumed(const char *root, rundir *rd, const pipeline *pl, const char *want_arg,
                        json_t **out_input, int *out_redrive, char *out_started,
                        size_t started_len, ckpt_replay *replay, char *msg, size_t len)
{
    char want[256];
    snprintf(want, sizeof want, "%s", want_arg);
    if (strcmp(want, "last") == 0) {
        json_t *runs = rundir_list(root, pl->name, msg, len);
        size_t n = json_array_size(runs);
        const char *id =
            n ? json_string_value(json_object_get(json_array_get(runs, n - 1), "id")) : NULL;
        snprintf(want, sizeof want, "%s", id ? id : "");
        json_decref(runs);
        if (!want[0]) {
            final_line("pipeline %s has no run to resume", pl->name);
            return EXIT_USAGE;
        }
    }
    if (!rundir_reuse_run(rd, want, msg, len)) {
        final_line("%s", msg);
        return EXIT_USAGE;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/summary.json", rundir_run_path(rd));
    json_t *osum = json_load_file(path, 0, NULL);
    const char *st = json_string_value(json_object_get(osum, "status"));
    bool done = st && strcmp(st, "succeeded") == 0 &&
                json_integer_value(json_object_get(osum, "errors_caught")) == 0;
    json_decref(osum);
    /* a run whose errors were caught (a key recorded as failed) succeeded, but a resume
     * is how its failed keys are redone once the cause is fixed */
    if (done) {
        final_line("run %s of %s succeeded: there is nothing to resume", want, pl->name);
        return EXIT_USAGE;
    }
    snprintf(path, sizeof path, "%s/meta.json", rundir_run_path(rd));
    json_t *old = json_load_file(path, 0, NULL);
    if (!old || !json_object_get(old, "input")) {
        final_line("%s is missing or damaged: run %s cannot be resumed", path, want);
        json_decref(old);
        return EXIT_USAGE;
    }
    *out_redrive = (int)json_integer_value(json_object_get(old, "redrive_count")) + 1;
    *out_input = json_incref(json_object_get(old, "input"));
    const char *started = json_string_value(json_object_get(old, "started"));
    snprintf(out_started, started_len, "%s", started ? started : "");
    json_decref(old);
    int rc = EXIT_OK;
    if (!ckpt_load(rundir_run_path(rd), replay, msg, len)) {
        final_line("cannot resume run %s: %s", want, msg);
        rc = EXIT_FAILED;
    } else if (!sched_check_replay(pl, replay, msg, len)) {
        final_line("cannot resume run %s: %s (the pipeline changed since; run it afresh)",
                   want, msg);
        ckpt_replay_free(replay);
        rc = EXIT_USAGE;
    }
    if (rc != EXIT_OK) {
        json_decref(*out_input);
        *out_input = NULL;
    }
    return rc;
}

/* --- the run ------------------------------------------------------------------------ */

static void fmt_seconds(char *buf, size_t len, double s)
{
    if (s < 60)
        snprintf(buf, len, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, len, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* Kill what killed attempts of this pipeline left running (engine/orphans.h). Under the
 * pipeline's lock, a run without a summary.json has no etlrun any more.
 * Called when the lock's previous holder died, so that a normal start reads no run. */
static void kill_leftovers(const char *root, const char *pipeline)
{
    char msg[1024];
    json_t *runs = rundir_list(root, pipeline, msg, sizeof msg), *run;
    const char **ids = calloc(json_array_size(runs) + 1, sizeof *ids);
    size_t n = 0, i;
    json_array_foreach(runs, i, run) {
        const char *id = json_string_value(json_object_get(run, "id"));
        if (ids && id && json_is_null(json_object_get(run, "summary")))
            ids[n++] = id;
    }
    int killed = n ? orphans_kill(pipeline, ids, n, msg, sizeof msg) : 0;
    if (killed < 0)
        log_msg(ETL_LOG_WARN, NULL, NULL, NULL,
                "cannot look for processes left over by killed runs: %s", msg);
    else if (killed > 0)
        log_msg(ETL_LOG_WARN, NULL, NULL, NULL,
                "killed %d process%s left running by killed run%s %s%s: %s", killed,
                killed == 1 ? "" : "es", n == 1 ? "" : "s", ids[0], n == 1 ? "" : ", ...",
                msg);
    free(ids);
    json_decref(runs);
}

static bool write_summary_file(const char *path, const json_t *summary);

/* A failure found after the summary was written: the run exits 1, and the summary says
 * so again: in --summary FILE (summary_file) and, when rd is given, in summary.json,
 * queued again (rundir's keeper writes it after the first: it replaces it). */
static void fail_late(int *rc, json_t *summary, const char *summary_file, rundir *rd,
                      const char *run_path)
{
    *rc = EXIT_FAILED;
    if (!summary)
        return;
    json_object_set_new(summary, "exit_code", json_integer(*rc));
    if (summary_file && !write_summary_file(summary_file, summary))
        log_msg(ETL_LOG_ERROR, NULL, NULL, NULL, "cannot write --summary %s: %s",
                summary_file, strerror(errno));
    if (rd && !rundir_write_json(rd, "summary.json", summary))
        log_msg(ETL_LOG_ERROR, NULL, NULL, NULL, "cannot write %s/summary.json", run_path);
}

/* v onto stdout as JSON: the text the history's observer made of it, when it did. */
static int print_json(const json_t *v, const observer *o)
{
    if (v && v == o->output)
        return fwrite(o->output_text, 1, o->output_len, stdout) == o->output_len ? 0 : -1;
    return jsontext_dumpf(v, stdout);
}

/* --summary FILE: beside FILE as a temp file, then renamed (a reader never sees half);
 * the same text as the run folder's summary.json. */
static bool write_summary_file(const char *path, const json_t *summary)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    char *text = json_dumps(summary, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    bool ok = false;
    if (tmp && text) {
        snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
        FILE *f = fopen(tmp, "we");
        if (f) {
            bool written = fputs(text, f) != EOF && fputc('\n', f) != EOF;
            ok = fclose(f) == 0 && written && rename(tmp, path) == 0;
            if (!ok)
                unlink(tmp);
        }
    }
    free(text);
    free(tmp);
    return ok;
}

static int cmd_run(const char *file, const run_args *a)
{
    int rc = EXIT_FAILED;
    FILE *user_hist = NULL;
    json_t *input = NULL, *meta = NULL, *summary = NULL;
    char *root = NULL, *stage = NULL;
    rundir *rd = NULL;
    report *rep = NULL;
    pipeline *pl = NULL;
    sched_outcome out = {0};
    char msg[1024];
    ckpt_replay replay = {0};
    bool have_replay = false;
    ckpt *cp = NULL;
    bool temp_stage = false; /* stage is a temporary folder (--no-state) */
    observer obs = {.hist_fd = -1};

    g_log_format = a->log_format;
    log_config lc = {.format = a->log_format, .quiet = a->quiet, .verbose = a->verbose,
                     .file = a->log_file};
    if (!log_open(&lc, msg, sizeof msg)) {
        fprintf(stderr, "etlrun: %s\n", msg);
        return EXIT_USAGE;
    }
    pl = load(file);
    if (!pl) {
        rc = EXIT_USAGE;
        goto out;
    }

    input = read_input(a->input, a->input_file);
    if (!input) {
        rc = EXIT_USAGE;
        goto out;
    }
    if (a->history) {
        user_hist = fopen(a->history, "ae");
        if (!user_hist) {
            fprintf(stderr, "etlrun: cannot open --history %s: %s\n", a->history,
                    strerror(errno));
            rc = EXIT_USAGE;
            goto out;
        }
    }
    if (!rundir_valid_name(pl->name)) {
        fprintf(stderr, "etlrun: %s: the pipeline's name '%s' cannot name its folder in the "
                "state directory; set 'name:' (1 to 100 characters, no '/', not starting "
                "with '.')\n", file, pl->name);
        rc = EXIT_USAGE;
        goto out;
    }

    int redrive = 0;
    char id_buf[64], first_started[64] = ""; /* a resumed run's first start */
    const char *run_id = NULL, *run_path = NULL;
    if (a->no_state) {
        /* --no-state: no lock, no run folder, nothing kept; only the id is made */
        if (a->name)
            snprintf(id_buf, sizeof id_buf, "%s", a->name);
        else
            rundir_new_id(id_buf, sizeof id_buf);
        run_id = id_buf;
    } else {
        /* the state directory and the lock: from here on, one run of this pipeline at a
         * time */
        root = rundir_root(a->state_dir);
        if (!root) {
            final_line("no state directory: HOME is not set; give --state-dir or set "
                       "ETLRUN_STATE_DIR (or run with --no-state)");
            goto out;
        }
        bool locked = false;
        rd = rundir_open(root, pl->name, a->wait_lock, &locked, msg, sizeof msg);
        if (!rd) {
            final_line("%s", msg);
            rc = locked ? EXIT_LOCKED : EXIT_FAILED;
            goto out;
        }
        /* only after a holder died: a run that ends normally leaves nothing running */
        if (rundir_holder_died(rd))
            kill_leftovers(root, pl->name);
        if (a->resume) {
            json_t *old_input = NULL;
            rc = open_resumed(root, rd, pl, a->resume, &old_input, &redrive, first_started,
                              sizeof first_started, &replay, msg, sizeof msg);
            if (rc != EXIT_OK)
                goto out;
            rc = EXIT_FAILED;
            have_replay = true;
            json_decref(input);
            input = old_input;
        } else if (!rundir_new_run(rd, a->name, msg, sizeof msg)) {
            final_line("%s", msg);
            rc = a->name ? EXIT_USAGE : EXIT_FAILED;
            goto out;
        }
        run_id = rundir_run_id(rd);
        run_path = rundir_run_path(rd);
    }
    log_set_run_id(run_id);

    /* default staging: in the run folder, so the run's files stay together; without a
     * run folder, in a temporary folder removed at the end */
    const char *stage_dir = a->stage_dir;
    if (!stage_dir && !pl->stage_dir) {
        if (run_path) {
            size_t n = strlen(run_path) + 8;
            stage = malloc(n);
            if (stage)
                snprintf(stage, n, "%s/stage", run_path);
        } else {
            const char *tmpdir = getenv("TMPDIR");
            if (!tmpdir || !*tmpdir)
                tmpdir = "/tmp";
            size_t n = strlen(tmpdir) + 32;
            stage = malloc(n);
            if (stage) {
                snprintf(stage, n, "%s/etlrun-stage-XXXXXX", tmpdir);
                if (!mkdtemp(stage)) {
                    final_line("cannot create a staging folder %s: %s", stage,
                               strerror(errno));
                    goto out;
                }
                temp_stage = true;
            }
        }
        stage_dir = stage;
    }
    if (a->resume && stage && !temp_stage) {
        /* what writers of a killed attempt left half-written in the run's own staging
         * folder (nothing else writes there: the lock is ours) */
        int n = stage_remove_partial(stage);
        if (n > 0)
            log_msg(ETL_LOG_INFO, NULL, NULL, NULL,
                    "removed %d partial staged file%s of an earlier attempt", n,
                    n == 1 ? "" : "s");
    }

    size_t input_len = 0;
    obs.input_text = jsontext_dumps(input, &input_len); /* its size, for the start line */
    if (obs.input_text)
        obs.known[obs.nknown++] = (jt_known){input, obs.input_text, input_len};
    char started[40];
    ts_format(ts_now(), started, sizeof started);
    if (rd) {
        char *abs_file = realpath(file, NULL);
        /* a run keeps its first start (runs are listed and pruned in that order); a
         * resume adds when it started */
        meta = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:I,s:s?,s:s,s:i,s:O}", "run_id", run_id,
                         "pipeline", pl->name, "file", abs_file ? abs_file : file, "started",
                         first_started[0] ? first_started : started, "resumed",
                         a->resume ? started : NULL, "pid", (json_int_t)getpid(),
                         "stage_dir", stage_dir, "etlrun", ETLRUN_VERSION, "redrive_count",
                         redrive, "input", input);
        free(abs_file);
        /* a new run's folder appears with its meta.json (and input), or not at all */
        /* compact: it holds the input, which may be large */
        size_t meta_len = 0;
        char *meta_text = NULL;
        if (meta) {
            jt_buf mb = {.known = obs.known, .nknown = obs.nknown};
            jt_value(&mb, meta);
            jt_putc(&mb, '\n');
            meta_text = jt_finish(&mb, &meta_len);
        }
        bool wrote = meta_text && rundir_write_text(rd, "meta.json", meta_text, meta_len);
        free(meta_text);
        if (!wrote || !rundir_publish(rd, msg, sizeof msg)) {
            final_line("cannot write the run folder %s: %s", run_path,
                       wrote ? msg : strerror(errno));
            goto out;
        }
        /* old runs go while this one runs (rundir's keeper thread) */
        rundir_prune(rd, pl->keep_runs, pl->keep_days * 86400);
    } else {
        forget_input(&obs); /* no meta.json, no history */
    }

    if (run_path) {
        snprintf(obs.hist_name, sizeof obs.hist_name, "%s/history.jsonl", run_path);
        obs.hist_fd = open_run_history(obs.hist_name, a->resume != NULL);
        if (obs.hist_fd < 0) {
            final_line("cannot create %s: %s", obs.hist_name, strerror(errno));
            goto out;
        }
        obs.rd = rd;
    }

    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        final_line("cannot create a pipe: %s", strerror(errno));
        goto out;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    stop_timeout_s = a->stop_timeout;
    for (int i = 0; i < 2; i++)
        snprintf(stop_msg[i], sizeof stop_msg[i],
                 "etlrun: in-flight work did not stop within %u s of %s; exiting anyway "
                 "(a resume redoes what was not finished)\n",
                 stop_timeout_s, i == 0 ? "SIGINT" : "SIGTERM");
    struct sigaction st = {0};
    st.sa_handler = on_stop_timeout;
    sigemptyset(&st.sa_mask);
    sigaction(SIGALRM, &st, NULL);

    const char *notify_url = a->notify_url ? a->notify_url : pl->notify_url;
    double notify_timeout = pl->notify_timeout_s > 0 ? pl->notify_timeout_s : 10;
    if (notify_url) {
        notify_init();
        notify_ping(notify_url, NOTIFY_START, NULL, notify_timeout);
    }

    bool progress = isatty(STDERR_FILENO) && !a->quiet && a->log_format == LOG_TEXT;
    rep = report_new(progress);
    if (!rep) {
        final_line("out of memory");
        goto out;
    }
    log_msg(ETL_LOG_INFO, NULL, NULL, NULL, "run %s started: pipeline %s, input %zu bytes",
            run_id, pl->name, input_len);

    if (run_path && !(cp = ckpt_open(run_path, msg, sizeof msg))) {
        final_line("%s", msg);
        goto out;
    }
    if (a->resume)
        log_msg(ETL_LOG_INFO, NULL, NULL, NULL,
                "resuming run %s (resume %d): %zu completed iterations and branches are "
                "reused", run_id, redrive, json_object_size(replay.done));

    obs.rep = rep;
    sched_options opt = {.jobs = a->jobs, .history = user_hist, .name = run_id,
                         .wake_fd = wake_pipe[0], .signo = &got_signal,
                         .stage_dir = stage_dir, .observe = observe, .observe_arg = &obs,
                         .ckpt = cp, .replay = have_replay ? &replay : NULL,
                         .redrive_count = redrive};
    if (a->resume) {
        /* the resumed run is not over until it writes its own summary: without one it
         * is running, or was killed (etlrun runs, kill_leftovers). Here, when nothing
         * can stop it from starting any more. */
        char spath[PATH_MAX];
        snprintf(spath, sizeof spath, "%s/summary.json", run_path);
        if (unlink(spath) != 0 && errno != ENOENT)
            log_msg(ETL_LOG_WARN, NULL, NULL, NULL, "cannot remove %s: %s", spath,
                    strerror(errno));
    }
    sched_run(pl, input, &opt, &out);
    report_clear_progress(rep);
    /* the last checkpoint batch is written and fsynced while the run's end is written,
     * when a resume may need it: the same test as open_resumed's */
    bool resumable = !(out.status == ETL_OK && report_errors_caught(rep) == 0);
    ckpt_end(cp, resumable);

    /* the history is buffered: a full disk shows only here, and must not pass silently
     * (the run folder's, written by rundir's keeper meanwhile: below) */
    bool hist_ok = true;
    if (user_hist) {
        char what[1100];
        snprintf(what, sizeof what, "--history %s", a->history);
        hist_ok = flush_ok(user_hist, false, what);
    }
    hand_lines(&obs);

    int caught = report_errors_caught(rep);
    char end_line[sizeof out.err.cause + sizeof out.err.name + 64] = "";
    bool print_output = false;
    if (out.signal) {
        snprintf(end_line, sizeof end_line, "interrupted by %s; in-flight work was cancelled",
                 out.signal == SIGINT ? "SIGINT" : "SIGTERM");
        rc = out.signal == SIGINT ? EXIT_SIGINT : EXIT_SIGTERM;
    } else if (out.status == ETL_OK) {
        print_output = true;
        if (!hist_ok) {
            rc = EXIT_FAILED;
        } else if (a->strict && caught > 0) {
            snprintf(end_line, sizeof end_line,
                     "the execution succeeded, but %d error%s caught (--strict)", caught,
                     caught == 1 ? " was" : "s were");
            rc = EXIT_CAUGHT;
        } else {
            rc = EXIT_OK;
        }
    } else {
        snprintf(end_line, sizeof end_line, "execution failed: %s: %s",
                 out.err.name[0] ? out.err.name : "(no error name)", out.err.cause);
        rc = EXIT_FAILED;
    }

    summary = report_summary(rep, pl->name, run_id, &out);
    if (summary)
        json_object_set_new(summary, "exit_code", json_integer(rc));
    const char *summary_file = a->summary; /* NULL once it failed: not tried again */
    if (summary_file && (!summary || !write_summary_file(summary_file, summary))) {
        log_msg(ETL_LOG_ERROR, NULL, NULL, NULL, "cannot write --summary %s: %s",
                summary_file, strerror(errno));
        summary_file = NULL;
        if (rc == EXIT_OK) {
            rc = EXIT_FAILED;
            json_object_set_new(summary, "exit_code", json_integer(rc));
        }
    }
    /* written by rundir's keeper while the output is printed */
    bool summary_queued = rd && summary && rundir_write_json(rd, "summary.json", summary);
    if (rd && !summary_queued)
        log_msg(ETL_LOG_ERROR, NULL, NULL, NULL, "cannot write %s/summary.json", run_path);
    if (print_output && (print_json(out.output, &obs) != 0 || fputc('\n', stdout) == EOF ||
                         fflush(stdout) != 0)) {
        snprintf(end_line, sizeof end_line, "cannot write the output: %s", strerror(errno));
        fail_late(&rc, summary, summary_file, rd, run_path);
    }

    /* the output is printed: its values go now, so that ckpt_close's dropping of the
     * records' references frees them (one pass over them, not two) */
    observer_free(&obs);
    json_decref(out.output);
    out.output = NULL;
    bool ckpt_ok = ckpt_close(cp, msg, sizeof msg);
    cp = NULL;
    if (!ckpt_ok)
        log_msg(ETL_LOG_ERROR, NULL, NULL, NULL, "%s (a resume of this run would redo more)",
                msg);
    /* the run folder's history, written meanwhile: a run that succeeded fails without it */
    if (!history_written(&obs) && rc != EXIT_FAILED && !out.signal) {
        end_line[0] = '\0'; /* history_written said why */
        fail_late(&rc, summary, summary_file, rd, run_path);
    }
    /* summary.json, written by rundir's keeper meanwhile: a run whose outcome is not on
     * disk looks killed (etlrun runs) and can be resumed, which redoes the iterations of
     * its last checkpoint batch when it was not written (after a success): it fails, for
     * cron to see */
    if (rd && !rundir_flush(rd, msg, sizeof msg))
        log_msg(ETL_LOG_ERROR, NULL, NULL, NULL, "%s", msg);
    if (rd && (!summary_queued || !rundir_wrote(rd, "summary.json")) && rc != EXIT_FAILED &&
        !out.signal) {
        snprintf(end_line, sizeof end_line, "the execution succeeded, but the run is not "
                 "recorded (%s/summary.json, error above): etlrun runs lists it as killed%s",
                 run_path, resumable ? "" : ", and a resume would redo its last iterations");
        fail_late(&rc, summary, summary_file, NULL, run_path);
    }
    rundir_finish(rd); /* its keeper ends while the end of the run is printed */
    /* the end of the run is logged by the report (ExecutionSucceeded/Failed/Aborted) */
    if (notify_url) {
        char *body = rc == EXIT_OK ? NULL : jsontext_dumps(summary, NULL);
        notify_ping(notify_url, rc == EXIT_OK ? NOTIFY_SUCCESS : NOTIFY_FAIL, body,
                    notify_timeout);
        free(body);
    }

    /* the summary for people: in text only (JSON logs keep stderr to JSON lines); with
     * --quiet only when something went wrong */
    if (summary && a->log_format == LOG_TEXT && (!a->quiet || rc != EXIT_OK)) {
        const char *nc = getenv("NO_COLOR");
        report_print(summary, stderr, isatty(STDERR_FILENO) && !(nc && *nc));
        fflush(stderr);
    }
    if (end_line[0])
        final_line("%s", end_line);

out:
    if (cp)
        ckpt_close(cp, msg, sizeof msg);
    if (have_replay)
        ckpt_replay_free(&replay);
    report_free(rep);
    observer_free(&obs);
    json_decref(out.output);
    json_decref(input);
    json_decref(meta);
    json_decref(summary);
    if (user_hist)
        fclose(user_hist);
    rundir_close(rd); /* releases the lock */
    if (obs.hist_fd >= 0)
        close(obs.hist_fd); /* after the keeper, which wrote it */
    if (temp_stage)
        rundir_remove_tree(stage);
    free(stage);
    free(root);
    pipeline_free(pl);
    log_close();
    return rc;
}

/* `etlrun resume RUN_ID`: the run's folder names its pipeline file (meta.json). */
static int cmd_resume(const char *run_id, const run_args *a)
{
    char *root = rundir_root(a->state_dir);
    char *pipeline = NULL;
    char *path = root ? rundir_find(root, run_id, &pipeline) : NULL;
    json_t *meta = NULL;
    int rc = EXIT_USAGE;
    if (!path) {
        fprintf(stderr, "etlrun: no run %s in %s; 'etlrun runs PIPELINE' lists the runs\n",
                run_id, root ? root : "the state directory");
        goto out;
    }
    char mpath[PATH_MAX];
    snprintf(mpath, sizeof mpath, "%s/meta.json", path);
    meta = json_load_file(mpath, 0, NULL);
    const char *file = json_string_value(json_object_get(meta, "file"));
    if (!file) {
        fprintf(stderr, "etlrun: %s has no pipeline file: the run cannot be resumed\n", mpath);
        goto out;
    }
    run_args b = *a;
    b.resume = run_id;
    rc = cmd_run(file, &b);
out:
    json_decref(meta);
    free(path);
    free(pipeline);
    free(root);
    return rc;
}

/* --- runs and show ------------------------------------------------------------------ */

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* A run's status: the summary's; a run without one is running (its process holds the
 * lock) or was killed before it could write one. */
static const char *run_status(const char *root, const char *pipeline, const json_t *meta,
                              const json_t *summary)
{
    if (jstr(summary, "status"))
        return jstr(summary, "status");
    return rundir_is_running(root, pipeline, meta) ? "running" : "killed";
}

/* The pipeline name of a `runs` argument: the name: of a pipeline file, or the name. */
static char *pipeline_name_of(const char *arg, int *out_rc)
{
    struct stat st;
    *out_rc = EXIT_OK;
    if (stat(arg, &st) == 0 && S_ISREG(st.st_mode)) {
        pipeline *pl = load(arg);
        if (!pl) {
            *out_rc = EXIT_USAGE;
            return NULL;
        }
        char *name = strdup(pl->name);
        pipeline_free(pl);
        return name;
    }
    if (!rundir_valid_name(arg)) {
        *out_rc = usage_error("runs: '%s' is neither a pipeline file nor a pipeline name", arg);
        return NULL;
    }
    return strdup(arg);
}

static int cmd_runs(const char *arg, const run_args *a)
{
    int rc;
    char *name = pipeline_name_of(arg, &rc);
    if (!name)
        return rc;
    char *root = rundir_root(a->state_dir);
    char msg[1024];
    json_t *list = root ? rundir_list(root, name, msg, sizeof msg) : NULL;
    rc = EXIT_FAILED;
    if (!root) {
        fprintf(stderr, "etlrun: no state directory: HOME is not set; give --state-dir\n");
        goto out;
    }
    if (!list) {
        fprintf(stderr, "etlrun: %s\n", msg);
        goto out;
    }
    if (json_array_size(list) == 0) {
        fprintf(stderr, "etlrun: no runs of %s in %s\n", name, root);
        rc = EXIT_OK;
        goto out;
    }
    int idw = 6;
    size_t i;
    json_t *r;
    json_array_foreach(list, i, r) {
        int w = (int)strlen(jstr(r, "id"));
        if (w > idw)
            idw = w;
    }
    printf("%-*s  %-24s  %8s  %-9s  %7s  %6s\n", idw, "RUN_ID", "STARTED", "DURATION", "STATUS",
           "KEYS_OK", "FAILED");
    json_array_foreach(list, i, r) {
        const json_t *meta = json_object_get(r, "meta"), *sum = json_object_get(r, "summary");
        const char *started = jstr(sum, "started") ? jstr(sum, "started") : jstr(meta, "started");
        char dur[32] = "-", ok[32] = "-", failed[32] = "-";
        if (json_is_number(json_object_get(sum, "duration_s")))
            fmt_seconds(dur, sizeof dur, json_number_value(json_object_get(sum, "duration_s")));
        const json_t *tot = json_object_get(sum, "totals");
        if (json_is_integer(json_object_get(tot, "ok")))
            snprintf(ok, sizeof ok, "%lld", (long long)json_integer_value(json_object_get(tot, "ok")));
        if (json_is_integer(json_object_get(tot, "failed")))
            snprintf(failed, sizeof failed, "%lld",
                     (long long)json_integer_value(json_object_get(tot, "failed")));
        printf("%-*s  %-24s  %8s  %-9s  %7s  %6s\n", idw, jstr(r, "id"), started ? started : "-",
               dur, run_status(root, name, meta, sum), ok, failed);
    }
    rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
out:
    json_decref(list);
    free(root);
    free(name);
    return rc;
}

/* One history event for a person: id, time, type, state [item], key, error or counts. */
static void print_event(const json_t *ev)
{
    char where[512] = "";
    const char *state = jstr(ev, "state");
    if (state) {
        json_t *item = json_object_get(ev, "mapItemIndex");
        if (json_is_integer(item))
            snprintf(where, sizeof where, "%s [item %lld]", state,
                     (long long)json_integer_value(item));
        else
            snprintf(where, sizeof where, "%s", state);
    }
    printf("%5lld  %-24s  %s%s%s", (long long)json_integer_value(json_object_get(ev, "id")),
           jstr(ev, "timestamp") ? jstr(ev, "timestamp") : "",
           jstr(ev, "type") ? jstr(ev, "type") : "?", where[0] ? "  " : "", where);
    if (jstr(ev, "key"))
        printf("  key=%s", jstr(ev, "key"));
    if (json_is_integer(json_object_get(ev, "rows")))
        printf("  rows=%lld", (long long)json_integer_value(json_object_get(ev, "rows")));
    if (jstr(ev, "error"))
        printf("  %s: %s", jstr(ev, "error"), jstr(ev, "cause") ? jstr(ev, "cause") : "");
    putchar('\n');
}

static int cmd_show(const char *run_id, const run_args *a)
{
    int rc = EXIT_FAILED;
    char *root = rundir_root(a->state_dir), *pipeline = NULL, *dir = NULL, *p = NULL;
    json_t *summary = NULL, *meta = NULL;
    FILE *h = NULL;
    if (!root) {
        fprintf(stderr, "etlrun: no state directory: HOME is not set; give --state-dir\n");
        goto out;
    }
    dir = rundir_find(root, run_id, &pipeline);
    if (!dir) {
        fprintf(stderr, "etlrun: no run %s in %s ('etlrun runs PIPELINE' lists the runs)\n",
                run_id, root);
        goto out;
    }
    size_t n = strlen(dir) + 32;
    p = malloc(n);
    if (!p)
        goto out;
    snprintf(p, n, "%s/summary.json", dir);
    summary = json_load_file(p, 0, NULL);
    snprintf(p, n, "%s/meta.json", dir);
    meta = json_load_file(p, 0, NULL);
    const char *nc = getenv("NO_COLOR");
    bool color = isatty(STDOUT_FILENO) && !(nc && *nc);
    if (summary) {
        report_print(summary, stdout, color);
    } else {
        /* a run in progress, or one killed before its end */
        printf("\nRun %s of %s: %s (started %s; no summary)\n", run_id, pipeline,
               run_status(root, pipeline, meta, NULL),
               jstr(meta, "started") ? jstr(meta, "started") : "?");
    }
    printf("Folder: %s\n", dir);
    if (a->show_history) {
        snprintf(p, n, "%s/history.jsonl", dir);
        h = fopen(p, "re");
        if (!h) {
            fprintf(stderr, "etlrun: cannot read %s: %s\n", p, strerror(errno));
            goto out;
        }
        printf("\nEvents (%s):\n", p);
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, h) >= 0) {
            json_t *ev = json_loads(line, 0, NULL);
            if (ev)
                print_event(ev);
            json_decref(ev);
        }
        free(line);
    }
    rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
out:
    if (h)
        fclose(h);
    json_decref(summary);
    json_decref(meta);
    free(p);
    free(dir);
    free(pipeline);
    free(root);
    return rc;
}

/* --- the command line ------------------------------------------------------------ */

enum { OPT_INPUT = 256, OPT_INPUT_FILE, OPT_JOBS, OPT_HISTORY, OPT_NAME, OPT_VERSION,
       OPT_STAGE_DIR, OPT_STATE_DIR, OPT_WAIT_LOCK, OPT_STRICT, OPT_LOG_FORMAT,
       OPT_LOG_FILE, OPT_QUIET, OPT_VERBOSE, OPT_SUMMARY, OPT_NOTIFY_URL, OPT_ENV_FILE,
       OPT_SHOW_HISTORY, OPT_RESUME, OPT_KEY, OPT_LIMIT, OPT_NO_STATE,
       OPT_STOP_TIMEOUT };

static const struct option longopts[] = {
    {"input", required_argument, NULL, OPT_INPUT},
    {"input-file", required_argument, NULL, OPT_INPUT_FILE},
    {"jobs", required_argument, NULL, OPT_JOBS},
    {"history", required_argument, NULL, OPT_HISTORY},
    {"name", required_argument, NULL, OPT_NAME},
    {"stage-dir", required_argument, NULL, OPT_STAGE_DIR},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"wait-lock", required_argument, NULL, OPT_WAIT_LOCK},
    {"strict", no_argument, NULL, OPT_STRICT},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"log-file", required_argument, NULL, OPT_LOG_FILE},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"summary", required_argument, NULL, OPT_SUMMARY},
    {"notify-url", required_argument, NULL, OPT_NOTIFY_URL},
    {"env-file", required_argument, NULL, OPT_ENV_FILE},
    {"show-history", no_argument, NULL, OPT_SHOW_HISTORY}, /* show's --history, see below */
    {"resume", required_argument, NULL, OPT_RESUME},
    {"no-state", no_argument, NULL, OPT_NO_STATE},
    {"stop-timeout", required_argument, NULL, OPT_STOP_TIMEOUT},
    {"key", required_argument, NULL, OPT_KEY},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* `etlrun show RUN_ID --history` uses --history as a flag, while run's --history takes
 * a FILE. Find the first word that is not an option (or an option's value); when it is
 * "show", the --history arguments become --show-history for getopt. */
static void rewrite_show_history(int argc, char **argv)
{
    int first = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--") == 0) {
            first = i + 1 < argc ? i + 1 : -1;
            break;
        }
        if (s[0] != '-' || s[1] == '\0') {
            first = i;
            break;
        }
        if (s[1] != '-' || strchr(s, '='))
            continue;
        for (const struct option *o = longopts; o->name; o++)
            if (strcmp(s + 2, o->name) == 0 && o->has_arg == required_argument) {
                i++; /* its value */
                break;
            }
    }
    if (first < 0 || strcmp(argv[first], "show") != 0)
        return;
    static char show_history[] = "--show-history";
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--history") == 0)
            argv[i] = show_history;
}

int main(int argc, char **argv)
{
    /* a full file-size limit (ulimit -f) must be an error (EFBIG) we report, not a
     * signal that kills the run with a half-written staged file */
    signal(SIGXFSZ, SIG_IGN);
    run_args a = {.wait_lock = -1, .stop_timeout = 60};
    int c;
    rewrite_show_history(argc, argv);
    opterr = 0; /* our own messages, prefixed "etlrun:" */
    /* '+' would stop at the first non-option; we allow options anywhere instead */
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_INPUT:
            a.input = optarg;
            a.used |= OPTS_RUN;
            break;
        case OPT_INPUT_FILE:
            a.input_file = optarg;
            a.used |= OPTS_RUN;
            break;
        case OPT_HISTORY:
            a.history = optarg;
            a.used |= OPTS_RUN;
            break;
        case OPT_NAME:
            a.name = optarg;
            a.used |= OPTS_RUN;
            break;
        case OPT_STAGE_DIR:
            a.stage_dir = optarg;
            a.used |= OPTS_RUN;
            break;
        case OPT_JOBS: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || n < 1 || n > 1024)
                return usage_error("--jobs must be an integer from 1 to 1024, not '%s'", optarg);
            a.jobs = (int)n;
            a.used |= OPTS_RUN;
            break;
        }
        case OPT_STATE_DIR:
            if (!*optarg)
                return usage_error("%s", "--state-dir must name a directory");
            a.state_dir = optarg;
            a.used |= OPTS_STATE;
            break;
        case OPT_WAIT_LOCK: {
            char *end;
            double s = strtod(optarg, &end);
            if (*optarg == '\0' || *end || !(s >= 0 && s <= 7 * 86400))
                return usage_error("--wait-lock must be a number of seconds from 0 to 604800, "
                                   "not '%s'", optarg);
            a.wait_lock = s;
            a.used |= OPTS_RUN;
            break;
        }
        case OPT_STOP_TIMEOUT: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || v < 0 || v > 86400)
                return usage_error("--stop-timeout must be a whole number of seconds from 0 "
                                   "to 86400, not '%s'", optarg);
            a.stop_timeout = (unsigned)v;
            a.used |= OPTS_RUN;
            break;
        }
        case OPT_STRICT:
            a.strict = true;
            a.used |= OPTS_RUN;
            break;
        case OPT_LOG_FORMAT:
            if (strcmp(optarg, "text") == 0)
                a.log_format = LOG_TEXT;
            else if (strcmp(optarg, "json") == 0)
                a.log_format = LOG_JSON;
            else
                return usage_error("--log-format must be text or json, not '%s'", optarg);
            a.used |= OPTS_RUN;
            break;
        case OPT_LOG_FILE:
            a.log_file = optarg;
            a.used |= OPTS_RUN;
            break;
        case OPT_QUIET:
            a.quiet = true;
            a.used |= OPTS_RUN;
            break;
        case OPT_VERBOSE:
            a.verbose = true;
            a.used |= OPTS_RUN;
            break;
        case OPT_SUMMARY:
            a.summary = optarg;
            a.used |= OPTS_RUN;
            break;
        case OPT_NOTIFY_URL:
            if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0)
                return usage_error("--notify-url must start with http:// or https://, not "
                                   "'%s'", optarg);
            a.notify_url = optarg;
            a.used |= OPTS_RUN;
            break;
        case OPT_ENV_FILE:
            a.env_file = optarg;
            a.used |= OPTS_ENV;
            break;
        case OPT_NO_STATE:
            a.no_state = true;
            a.used |= OPTS_RUN;
            break;
        case OPT_RESUME:
            a.resume = optarg;
            a.used |= OPTS_RUN;
            break;
        case OPT_KEY:
            a.ledger_key = optarg;
            a.used |= OPTS_LEDGER;
            break;
        case OPT_LIMIT: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || n < 1 || n > 100000)
                return usage_error("--limit must be an integer from 1 to 100000, not '%s'",
                                   optarg);
            a.ledger_limit = (int)n;
            a.used |= OPTS_LEDGER;
            break;
        }
        case OPT_SHOW_HISTORY:
            a.show_history = true;
            a.used |= OPTS_SHOW;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        case OPT_VERSION:
            printf("etlrun %s\n", ETLRUN_VERSION);
            return EXIT_OK;
        default:
            if (optopt > 0 && optopt < 256)
                fprintf(stderr, "etlrun: invalid option '-%c'\n", optopt);
            else
                fprintf(stderr, "etlrun: option '%s' is unknown or lacks its value\n",
                        argv[optind - 1]);
            fputs("Try 'etlrun --help'.\n", stderr);
            return EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (nargs == 0)
        return usage_error("%s", "no pipeline given");
    if (a.input && a.input_file)
        return usage_error("%s", "give --input or --input-file, not both");
    if (a.quiet && a.verbose)
        return usage_error("%s", "give --quiet or --verbose, not both");
    if (strcmp(args[0], "plugins") == 0) {
        if (nargs != 1)
            return usage_error("%s", "plugins takes no arguments");
        registry *r = registry_new();
        registry_list(r, stdout);
        registry_free(r);
        return EXIT_OK;
    }
    if (strcmp(args[0], "plugin") == 0) {
        if (nargs != 3 || strcmp(args[1], "check") != 0)
            return usage_error("%s", "usage: etlrun plugin check FILE.so");
        return plugin_check(args[2], stdout) == 0 ? EXIT_OK : EXIT_FAILED;
    }
    const char *cmd = "run";
    static const char *const commands[] = {"run",  "validate", "graph",  "check",
                                           "runs", "show",     "resume", "ledger"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(args[0], commands[i]) == 0) {
            cmd = args[0];
            args++;
            nargs--;
            break;
        }
    bool is_resume = strcmp(cmd, "resume") == 0, is_ledger = strcmp(cmd, "ledger") == 0;
    bool is_run = strcmp(cmd, "run") == 0 || is_resume, is_runs = strcmp(cmd, "runs") == 0,
         is_show = strcmp(cmd, "show") == 0;
    if ((is_show || is_resume) && nargs != 1)
        return usage_error(nargs == 0 ? "%s: no run id given" : "%s: give exactly one run id",
                           cmd);
    if (a.resume && (a.input || a.input_file || a.name))
        return usage_error("%s", "a resumed run keeps its input and name: no --input, "
                                 "--input-file or --name with --resume");
    if (is_resume && (a.input || a.input_file || a.name || a.resume))
        return usage_error("%s", "resume keeps the run's input and name: no --input, "
                                 "--input-file, --name or --resume");
    if (a.no_state && (is_resume || a.resume || a.state_dir || a.wait_lock >= 0))
        return usage_error("%s", "--no-state keeps no run to resume and takes no lock: no "
                                 "resume, --resume, --state-dir or --wait-lock with it");
    if (nargs != 1)
        return usage_error(nargs == 0 ? "%s: no pipeline given" : "%s: give exactly one pipeline",
                           cmd);
    unsigned allowed = is_run ? OPTS_RUN | OPTS_STATE | OPTS_ENV
                       : is_runs ? OPTS_STATE
                       : is_show ? OPTS_STATE | OPTS_SHOW
                       : is_ledger ? OPTS_ENV | OPTS_LEDGER
                                 : OPTS_ENV;
    if (a.used & ~allowed & OPTS_LEDGER)
        return usage_error("%s takes no --key or --limit (they are ledger's)", cmd);
    if (a.used & OPTS_RUN & ~allowed)
        return usage_error("%s takes no run options (--input, --jobs, ...)", cmd);
    if (a.used & ~allowed & OPTS_STATE)
        return usage_error("%s takes no --state-dir", cmd);
    if (a.used & ~allowed & OPTS_ENV)
        return usage_error("%s takes no --env-file", cmd);
    if (a.used & ~allowed & OPTS_SHOW)
        return usage_error("%s takes no --show-history (show's --history)", cmd);
    if (a.name && (strlen(a.name) == 0 || strlen(a.name) > 80))
        return usage_error("%s", "--name must have 1 to 80 characters");
    if (a.name && !rundir_valid_name(a.name))
        return usage_error("--name names the run's folder: no '/', no control character, "
                           "not starting with '.' (got '%s')", a.name);
    if (a.env_file) {
        int rc = load_env_file(a.env_file);
        if (rc != EXIT_OK)
            return rc;
    }
    if (strcmp(cmd, "validate") == 0)
        return cmd_validate(args[0]);
    if (strcmp(cmd, "graph") == 0)
        return cmd_graph(args[0]);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(args[0]);
    if (is_runs)
        return cmd_runs(args[0], &a);
    if (is_show)
        return cmd_show(args[0], &a);
    if (is_resume)
        return cmd_resume(args[0], &a);
    if (is_ledger) {
        pipeline *pl = load(args[0]);
        if (!pl)
            return EXIT_USAGE;
        int rc = ledger_cmd(pl, a.ledger_key, a.ledger_limit, stdout) == 0 ? EXIT_OK
                                                                           : EXIT_FAILED;
        pipeline_free(pl);
        return rc;
    }
    return cmd_run(args[0], &a);
}
