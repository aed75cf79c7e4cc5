/* The scheduler: runs one execution of a compiled pipeline to its end.
 *
 * It owns all execution state on the calling thread. Inline states (Pass, Choice,
 * Succeed, Fail) and payload processing run here; Waits and retry delays are timers
 * here; blocking Task work goes to the worker pool, whose completions come back
 * through a queue and an eventfd. */
#ifndef ETL_SCHEDULER_H
#define ETL_SCHEDULER_H

#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include <etlrun/error.h>

#include "machine.h"

typedef struct sched_options {
    int jobs;                     /* worker threads; <= 0 means 8 */
    FILE *history;                /* JSON-lines events, or NULL */
    const char *name;             /* $$.Execution.Name; NULL = generated */
    int wake_fd;                  /* readable when a signal arrived; -1 = none */
    volatile sig_atomic_t *signo; /* the signal number set by the handler, or NULL */
    const char *stage_dir;        /* --stage-dir; NULL = staging.dir, else a default */
    /* Called on the scheduler thread with every event as written to the history (a
     * borrowed JSON object: id, timestamp, type, state, ...). The per-step events
     * (StateEntered/StateExited, MapIterationStarted/MapIterationSucceeded) are
     * included only with observe_states (they cost a JSON object each). Logging,
     * progress and summaries are built on this. */
    void (*observe)(void *arg, const json_t *event);
    void *observe_arg;
    bool observe_states;
    /* Checkpoints (engine/checkpoint.h): record completed Map iterations and Parallel
     * branches, fan-out entries and failures into ckpt (NULL = none); replay those of
     * earlier attempts of this run (NULL = a fresh run; see sched_check_replay). */
    struct ckpt *ckpt;
    const struct ckpt_replay *replay;
    int redrive_count;            /* $$.Execution.RedriveCount: resumes so far */
} sched_options;

typedef struct sched_outcome {
    etl_status status;            /* ETL_OK, or the failure's status */
    json_t *output;               /* final output on success (new reference) */
    etl_error err;                /* the execution's error on failure */
    uint64_t transitions;         /* states entered */
    int signal;                   /* the signal that interrupted the run, else 0 */
    /* Where the failure started: the state (not a Map or Parallel that only passed a
     * child's error on) and the task's key; "" when unknown. */
    char failed_state[128];
    char failed_key[128];
} sched_outcome;

/* The delay in seconds before retry number attempt+1 (attempt counts from 0):
 * IntervalSeconds x BackoffRate^attempt, capped by MaxDelaySeconds, then multiplied by
 * unit_random (uniform in [0,1)) under JitterStrategy FULL. */
double sched_retry_delay(const retrier *rt, int attempt, double unit_random);

/* Check that the checkpoints in replay fit pl (every path and state they name still
 * exists): a pipeline whose states were removed or renamed since cannot be resumed.
 * Returns false with the first misfit described in msg. */
struct ckpt_replay;
bool sched_check_replay(const pipeline *pl, const struct ckpt_replay *replay, char *msg,
                        size_t len);

/* Run pl with input (borrowed). Returns out->status. Interrupted by a signal: every
 * frame is cancelled and the run returns ETL_ECANCELLED with out->signal set once all
 * in-flight work has stopped. */
etl_status sched_run(const pipeline *pl, json_t *input, const sched_options *opt,
                     sched_outcome *out);

#endif
