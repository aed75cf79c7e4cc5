/* The etlrun command line: parse arguments, load and validate the pipeline, run it,
 * and map the outcome to an exit code. stdout carries only the final output JSON;
 * everything else goes to stderr. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"
#include "graph.h"
#include "host.h"
#include "jsontext.h"
#include "machine.h"
#include "plugins.h"
#include "scheduler.h"
#include "version.h"

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_SIGINT = 130,
    EXIT_SIGTERM = 143,
};

static const char usage_text[] =
    "usage: etlrun [run] PIPELINE [options]   run a pipeline; its output JSON goes to stdout\n"
    "       etlrun validate PIPELINE           check a pipeline, run nothing\n"
    "       etlrun graph PIPELINE              print the state machine as Graphviz DOT\n"
    "       etlrun check PIPELINE              connect to every connection and report each\n"
    "       etlrun plugins                     list the connectors: built in and plugins\n"
    "       etlrun plugin check FILE.so        check a connector plugin against the interface\n"
    "       etlrun --help | --version\n"
    "\n"
    "PIPELINE is a YAML file, or a JSON file (name ending in .json) in the Amazon States\n"
    "Language.\n"
    "\n"
    "options of run:\n"
    "  --input JSON         the execution input (default {})\n"
    "  --input-file FILE    read the input from FILE ('-' for stdin)\n"
    "  --jobs N             worker threads for blocking Task work (default 8)\n"
    "  --history FILE       append the execution's events to FILE, as JSON lines\n"
    "  --name NAME          the execution name ($$.Execution.Name; default generated)\n"
    "  --stage-dir DIR      where staged files go (default: staging.dir of the pipeline,\n"
    "                       else $TMPDIR/etlrun-UID/PIPELINE/NAME)\n"
    "\n"
    "environment:\n"
    "  ETLRUN_PLUGIN_PATH   ':'-separated directories searched for connector plugins\n"
    "\n"
    "exit codes:\n"
    "  0    the execution succeeded\n"
    "  1    the execution failed (stderr names the error and its cause)\n"
    "  2    the pipeline or the command line is invalid; nothing ran\n"
    "  130  interrupted by SIGINT; 143: terminated by SIGTERM (in-flight work cancelled)\n";

static volatile sig_atomic_t got_signal;
static int wake_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    if (got_signal && sig == SIGINT) {
        /* a second Ctrl-C: stop waiting for cancellation, but leave no program behind */
        exec_kill_all();
        _exit(EXIT_SIGINT);
    }
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
        host_task_done(&task);
        pthread_mutex_destroy(&task.mu);
    }
    registry_thread_end(pl->reg);
    registry_global_cleanup(pl->reg);
    pipeline_free(pl);
    return failed ? EXIT_FAILED : EXIT_OK;
}

typedef struct run_args {
    const char *input, *input_file, *history, *name, *stage_dir;
    int jobs;
} run_args;

static int cmd_run(const char *file, const run_args *a)
{
    int rc = EXIT_FAILED;
    FILE *hist = NULL;
    json_t *input = NULL;
    sched_outcome out = {0};
    pipeline *pl = load(file);
    if (!pl)
        return EXIT_USAGE;
    input = read_input(a->input, a->input_file);
    if (!input) {
        rc = EXIT_USAGE;
        goto out;
    }
    if (a->history) {
        hist = fopen(a->history, "a");
        if (!hist) {
            fprintf(stderr, "etlrun: cannot open --history %s: %s\n", a->history,
                    strerror(errno));
            rc = EXIT_USAGE;
            goto out;
        }
    }
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "etlrun: cannot create a pipe: %s\n", strerror(errno));
        goto out;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    sched_options opt = {.jobs = a->jobs, .history = hist, .name = a->name,
                         .wake_fd = wake_pipe[0], .signo = &got_signal,
                         .stage_dir = a->stage_dir};
    sched_run(pl, input, &opt, &out);
    /* the history is buffered: a full disk shows only here, and must not pass silently */
    bool hist_failed = false;
    if (hist) {
        errno = 0;
        int flushed = fflush(hist);
        int flush_errno = errno;
        if (flushed != 0 || ferror(hist)) {
            hist_failed = true;
            fprintf(stderr, "etlrun: cannot write --history %s: %s\n", a->history,
                    flushed != 0 && flush_errno ? strerror(flush_errno) : "a write failed");
        }
    }
    if (out.signal) {
        fprintf(stderr, "etlrun: interrupted by %s; in-flight work was cancelled\n",
                out.signal == SIGINT ? "SIGINT" : "SIGTERM");
        rc = out.signal == SIGINT ? EXIT_SIGINT : EXIT_SIGTERM;
    } else if (out.status == ETL_OK) {
        if (jsontext_dumpf(out.output, stdout) != 0 || fputc('\n', stdout) == EOF ||
            fflush(stdout) != 0) {
            fprintf(stderr, "etlrun: cannot write the output: %s\n", strerror(errno));
            rc = EXIT_FAILED;
        } else {
            rc = hist_failed ? EXIT_FAILED : EXIT_OK;
        }
    } else {
        fprintf(stderr, "etlrun: execution failed: %s: %s\n",
                out.err.name[0] ? out.err.name : "(no error name)", out.err.cause);
        rc = EXIT_FAILED;
    }
out:
    json_decref(out.output);
    json_decref(input);
    if (hist)
        fclose(hist);
    pipeline_free(pl);
    return rc;
}

int main(int argc, char **argv)
{
    enum { OPT_INPUT = 256, OPT_INPUT_FILE, OPT_JOBS, OPT_HISTORY, OPT_NAME, OPT_VERSION,
           OPT_STAGE_DIR };
    static const struct option longopts[] = {
        {"input", required_argument, NULL, OPT_INPUT},
        {"input-file", required_argument, NULL, OPT_INPUT_FILE},
        {"jobs", required_argument, NULL, OPT_JOBS},
        {"history", required_argument, NULL, OPT_HISTORY},
        {"name", required_argument, NULL, OPT_NAME},
        {"stage-dir", required_argument, NULL, OPT_STAGE_DIR},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    run_args a = {0};
    int c;
    opterr = 0; /* our own messages, prefixed "etlrun:" */
    /* '+' would stop at the first non-option; we allow options anywhere instead */
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_INPUT:
            a.input = optarg;
            break;
        case OPT_INPUT_FILE:
            a.input_file = optarg;
            break;
        case OPT_HISTORY:
            a.history = optarg;
            break;
        case OPT_NAME:
            a.name = optarg;
            break;
        case OPT_STAGE_DIR:
            a.stage_dir = optarg;
            break;
        case OPT_JOBS: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || n < 1 || n > 1024)
                return usage_error("--jobs must be an integer from 1 to 1024, not '%s'", optarg);
            a.jobs = (int)n;
            break;
        }
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
    if (strcmp(args[0], "run") == 0 || strcmp(args[0], "validate") == 0 ||
        strcmp(args[0], "graph") == 0 || strcmp(args[0], "check") == 0) {
        cmd = args[0];
        args++;
        nargs--;
    }
    if (nargs != 1)
        return usage_error(nargs == 0 ? "%s: no pipeline given" : "%s: give exactly one pipeline",
                           cmd);
    if (strcmp(cmd, "run") != 0 &&
        (a.input || a.input_file || a.history || a.name || a.stage_dir || a.jobs))
        return usage_error("%s takes no run options (--input, --jobs, ...)", cmd);
    if (a.name && (strlen(a.name) == 0 || strlen(a.name) > 80))
        return usage_error("%s", "--name must have 1 to 80 characters");
    if (strcmp(cmd, "validate") == 0)
        return cmd_validate(args[0]);
    if (strcmp(cmd, "graph") == 0)
        return cmd_graph(args[0]);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(args[0]);
    return cmd_run(args[0], &a);
}
