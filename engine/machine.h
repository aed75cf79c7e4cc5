/* The compiled state machine: what a validated pipeline becomes before it runs.
 *
 * doc (nodes + positions) --machine_compile--> machine --sched_run--> execution
 *
 * Compilation validates everything that can be known before running and reports every
 * problem with its FILE:LINE:COL. A machine is immutable once compiled, and shared
 * read-only by every thread of an execution. */
#ifndef ETL_MACHINE_H
#define ETL_MACHINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "diag.h"
#include "doc.h"
#include "path.h"
#include "template.h"

typedef struct state state;
typedef struct machine machine;
typedef struct state_ops state_ops;

typedef enum state_type {
    ST_PASS,
    ST_TASK,
    ST_CHOICE,
    ST_WAIT,
    ST_PARALLEL,
    ST_MAP,
    ST_SUCCEED,
    ST_FAIL,
} state_type;

/* An optional path field: absent (use the default "$"), null, or a path. */
typedef struct opt_path {
    path *p;        /* NULL when absent or null */
    bool is_null;   /* written as null */
} opt_path;

typedef struct retrier {
    char **errors;        /* ErrorEquals */
    size_t n_errors;
    double interval_s;    /* IntervalSeconds, default 1 */
    int max_attempts;     /* MaxAttempts, default 3; 0 = never retry */
    double backoff;       /* BackoffRate, default 2.0 */
    double max_delay_s;   /* MaxDelaySeconds; 0 = no cap */
    bool jitter_full;     /* JitterStrategy: FULL */
} retrier;

typedef struct catcher {
    char **errors;        /* ErrorEquals */
    size_t n_errors;
    state *next;
    opt_path result_path; /* default "$" */
} catcher;

struct state {
    char *name;
    state_type type;
    const state_ops *ops;
    doc_pos pos;            /* position of the state's name key */
    machine *owner;         /* the (sub)machine the state belongs to */
    int index;              /* in owner->states */

    state *next;            /* NULL when end */
    bool end;

    opt_path input_path;
    opt_path output_path;
    opt_path result_path;
    tmpl *parameters;       /* Parameters / ItemSelector */
    tmpl *result_selector;

    retrier *retry;
    size_t n_retry;
    catcher *catch_;
    size_t n_catch;

    void *impl;             /* type-specific, owned by ops->free */
};

struct machine {
    state **states;         /* in document order */
    size_t n_states;
    state *start;
    machine *parent;        /* NULL for the top level */
    state *parent_state;    /* the Parallel/Map state that owns this branch */
    char *label;            /* "Branch 1 of Fan", "Iterator of Keys": for messages */
};

/* A named connection of the `connections:` section. */
typedef struct conn_def {
    char *name;
    const struct etl_connector *connector; /* its type */
    json_t *settings;       /* the settings without type/max_connections, ${env:...} done */
    int max_connections;    /* default 4: extra tasks wait for a free one */
    doc_pos pos;
} conn_def;

typedef struct registry registry;

typedef struct pipeline {
    char *file;             /* path as given */
    char *dir;              /* absolute directory of the file */
    char *name;             /* "name:" or the file name without extension */
    machine *top;
    double timeout_s;       /* top-level TimeoutSeconds; 0 = none */
    char *comment;
    size_t n_states_total;  /* all states, nested included */
    registry *reg;          /* connectors: built-ins and loaded plugins */
    conn_def *conns;
    size_t n_conns;
    char *stage_dir;        /* staging.dir (absolute), NULL = the default */
    bool stage_keep;        /* staging.keep */
    int keep_runs;          /* retention.keep: newest runs kept in the state dir (30) */
    double keep_days;       /* retention.max_age_days: younger runs kept too; 0 = none */
    char *notify_url;       /* notify.url, ${env:...} expanded; NULL = no pings */
    double notify_timeout_s; /* notify.timeout_seconds (10) */
} pipeline;

/* Load, validate and compile a pipeline file. Every problem goes to d; returns NULL
 * when there was any. The caller frees the result with pipeline_free(). */
pipeline *pipeline_load(const char *file, diag *d);
/* Same for an already loaded document (tests). */
pipeline *pipeline_compile(const doc *dc, diag *d);
void pipeline_free(pipeline *pl);
/* For state types that own sub-machines (Parallel branches, Map processors). */
void pipeline_free_machine(machine *m);

/* The connection named name, or -1. */
int pipeline_conn_index(const pipeline *pl, const char *name);

/* Lookups. */
state *machine_find(const machine *m, const char *name);

#endif
