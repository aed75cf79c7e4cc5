/* The `exec` Task resource: run a program (no shell) with the task's effective input
 * as JSON on stdin, and turn its exit status and output into a result or an ASL error.
 *
 * Runs on a worker thread; blocks until the program and its whole process group are
 * gone. Cancellation (a sibling failed, a Task timeout, SIGINT/SIGTERM) is requested by
 * the scheduler through *cancel from any thread; exec_run notices within ~50 ms,
 * sends SIGTERM to the process group, then SIGKILL after the grace period. */
#ifndef ETL_EXEC_H
#define ETL_EXEC_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

#include <etlrun/error.h>

typedef struct exec_spec {
    const char *const *argv;   /* program and arguments, NULL-terminated; argv[0] without
                                  '/' is searched in PATH */
    const char *dir;           /* working directory of the child, NULL = inherit */
    size_t max_stdout;         /* bytes; more is an error (States.TaskFailed). 0 = 64 MiB */
    int grace_ms;              /* TERM -> KILL delay on cancel; 0 = 2000 */
    const char *const *env_extra; /* "NAME=value" entries added to the child's environment
                                     (etlrun's own, minus entries of the same NAMEs);
                                     NULL-terminated, or NULL for none */
} exec_spec;

/* Cancel request word, written by the scheduler, read by the worker. */
enum { EXEC_RUN = 0, EXEC_CANCEL = 1 };

/* Run the program with input (len bytes of JSON) on stdin.
 * Exit 0: *out_result = stdout parsed as JSON (any value: "42" is 42, integers stay
 *   exact), or, when stdout is not JSON, a JSON string of it with one trailing newline
 *   ("\n" or "\r\n") removed. Empty stdout is JSON null. Returns ETL_OK. Stdout that
 *   is neither JSON nor UTF-8 text is States.TaskFailed (ETL_ETASK).
 * Non-zero exit or death by signal: when stdout is a JSON object with a string "Error"
 *   (and optionally a string "Cause"; when absent, the cause is the
 *   exit status and stderr tail below), that error (ETL_ETASK); otherwise
 *   States.TaskFailed with a cause naming the program and its exit status / signal and
 *   the last lines of its stderr (at most ~1 KiB). Error names starting "States." other
 *   than States.TaskFailed/States.Timeout are reserved: such an Error is reported as
 *   States.TaskFailed with the original name in the cause.
 * The program cannot be started (not found, not executable, bad dir): States.TaskFailed
 *   (ETL_EIO; transient when out of descriptors or processes), cause
 *   "cannot run 'prog': No such file or directory".
 * More than max_stdout bytes on stdout: the group is killed; States.TaskFailed,
 *   cause "'prog': output larger than N bytes (max_stdout)".
 * Cancelled: returns ETL_ECANCELLED (err name "States.Cancelled"... the caller decides
 *   the final name, e.g. States.Timeout); the process group has been killed and reaped.
 * The child runs in its own process group, with stdin/stdout/stderr as pipes and the
 * rest of etlrun's descriptors closed; after the program exits, any process left in its
 * group is killed. The child gets SIGKILL when the thread that started it exits
 * (PR_SET_PDEATHSIG): when etlrun dies, even by SIGKILL, the program dies too. What the
 * program started itself survives that; engine/orphans.h finds it by the
 * ETLRUN_RUN_ID that the caller (states/task.c) puts in env_extra.
 * *out_result is a NEW reference owned by the caller. */
etl_status exec_run(const exec_spec *spec, const char *input, size_t len,
                    atomic_int *cancel, json_t **out_result, etl_error *err);

/* SIGKILL the process group of every program exec_run has started and not yet reaped.
 * Async-signal-safe: for a second Ctrl-C, which exits without waiting. */
void exec_kill_all(void);

#endif
