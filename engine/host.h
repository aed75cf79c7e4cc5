/* The host side of the connector interface: the etl_host services table given to every
 * connector (built-in or plugin), and the etl_task a running action sees.
 *
 * scheduler --(work on a worker)--> host_task + action->run --> host services */
#ifndef ETL_HOST_H
#define ETL_HOST_H

#include <etlrun/connector.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "diag.h"
#include "doc.h"

/* The one services table; immutable, shared by every thread. */
const etl_host *host_services(void);

/* JSON handles are jansson values: these casts are the only place that knows it. */
static inline json_t *host_json(const etl_json *v) { return (json_t *)v; }
static inline etl_json *host_wrap(const json_t *v) { return (etl_json *)v; }

struct etl_task {
    const char *state;        /* the Task state's name */
    const char *key;          /* "" when the task has no key */
    const char *conn_name;    /* "" when no connection */
    const char *stage_dir;    /* where staged files go */
    const char *base_dir;     /* the pipeline file's directory ("." when unknown) */
    bool keep_staged;         /* staging.keep of the pipeline */
    const char *run_id;       /* $$.Execution.Name ("" when unknown) */
    const char *pipeline;     /* the pipeline's name ("" when unknown) */
    char path[512];           /* where in the execution: "" or "/Keys[3]"... */
    int attempt;              /* from 1 */
    int64_t deadline_ns;      /* CLOCK_MONOTONIC; 0 = none (set when the work starts) */
    atomic_int *cancel;       /* the work's cancel word */
    _Atomic uint64_t rows, bytes; /* progress */
    pthread_mutex_t mu;       /* guards the cancel callback */
    void (*cancel_fn)(void *);/* guarded by mu */
    void *cancel_arg;         /* guarded by mu */
    pthread_cond_t cv;        /* signalled when a canceller thread ends */
    int cancellers;           /* guarded by mu: canceller threads not yet done */
};

/* Initialise a task (strings are borrowed and must outlive it). */
void host_task_init(etl_task *t, const char *state, const char *key, const char *conn_name,
                    const char *stage_dir, int attempt, atomic_int *cancel);
/* Request cancellation: sets the cancel word and starts the registered callback, if
 * any, on a short-lived thread of its own (it may block: PQcancel connects to the
 * server), so the caller (the scheduler) never waits for it. Thread-safe; idempotent. */
void host_task_cancel(etl_task *t);
/* After the action returned: drop any callback, and wait for a cancel callback that
 * is running on its own thread. */
void host_task_done(etl_task *t);
/* host_task_done, then free the task's lock (the task's memory is the caller's). */
void host_task_destroy(etl_task *t);

/* A validate-time checker reporting to d at positions inside node (the object whose
 * fields are named in check_error). */
struct etl_checker {
    diag *d;
    const doc_node *node;
    const char *what;         /* "connection 'wh'", "Parameters of state 'Load'" */
    int errors;
};

#endif
