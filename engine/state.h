/* The interface every state type implements (one file per type in states/), and the scheduler services
 * a state may call while it runs.
 *
 * The scheduler does the common work of every state: InputPath, Parameters (when the
 * type takes them), ResultSelector, ResultPath, OutputPath, Retry, Catch, transitions
 * and history. A state type does only its own step: it is handed the effective input
 * and finishes by calling exactly one of sched_result / sched_goto / sched_fail, now or
 * later (after a timer, a worker's completion or its children's completion).
 *
 * Threads: every function here runs on the scheduler thread, never on a worker. */
#ifndef ETL_STATE_H
#define ETL_STATE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <etlrun/error.h>

#include "ctx.h"
#include "machine.h"

typedef struct frame frame;
typedef struct work work;
typedef struct compile_ctx compile_ctx;

/* Which common fields a type accepts. */
enum {
    SF_INPUT_PATH = 1 << 0,
    SF_OUTPUT_PATH = 1 << 1,
    SF_RESULT_PATH = 1 << 2,
    SF_PARAMETERS = 1 << 3,      /* "Parameters" applied by the scheduler before enter */
    SF_RESULT_SELECTOR = 1 << 4,
    SF_RETRY_CATCH = 1 << 5,
    SF_TRANSITION = 1 << 6,      /* Next / End required */
    SF_TERMINAL = 1 << 7,        /* Succeed / Fail: no Next, no End */
};

struct state_ops {
    const char *type_name;            /* "Pass" */
    state_type type;
    unsigned flags;                   /* SF_* */
    const char *const *fields;        /* type-specific fields, NULL-terminated */

    /* Compile the type-specific fields of def into st->impl. Report problems to cc's
     * diag (compile_diag) with positions; return false on any. */
    bool (*compile)(state *st, const doc_node *def, compile_ctx *cc);
    /* Second pass, once every state of the pipeline exists: resolve names (Choice
     * Next/Default). May be NULL. */
    bool (*link)(state *st, compile_ctx *cc);
    /* Run the state's own step on its effective input (borrowed). */
    void (*enter)(state *st, frame *f, json_t *effective);
    /* A timer armed with sched_timer fired. May be NULL. */
    void (*on_timer)(state *st, frame *f);
    /* Work submitted with sched_submit finished (status ETL_OK with result, or err). */
    void (*on_work)(state *st, frame *f, work *w);
    /* A child frame spawned with sched_spawn finished: output (borrowed) on success,
     * else err (ETL_ECANCELLED when it was cancelled). */
    void (*on_child)(state *st, frame *f, int64_t index, json_t *output, const etl_error *err);
    /* Child machines for graph drawing and validation (Parallel branches, Map
     * processor). May be NULL. */
    size_t (*children)(const state *st, machine ***out);
    /* Transition targets beyond Next and Catch (Choice rules and Default), for
     * reachability and drawing: calls visit(target, label, arg) for each. May be NULL. */
    void (*targets)(const state *st, void (*visit)(state *target, const char *label, void *arg),
                    void *arg);
    void (*free)(state *st);
};

/* Registry: one entry per type (engine/states.c). */
const state_ops *state_ops_find(const char *type_name);

/* --- compile services --- */
diag *compile_diag(compile_ctx *cc);
const char *compile_dir(compile_ctx *cc);   /* absolute directory of the pipeline file */
/* Compile a nested machine (a Parallel branch, a Map processor) written at node. */
machine *compile_submachine(compile_ctx *cc, const doc_node *node, state *parent,
                            const char *label);
/* Resolve a transition target in st's own machine; reports a precise error at pos
 * (no such state, or a state of another branch) and returns NULL when not found. */
state *compile_resolve(compile_ctx *cc, state *st, const char *name, doc_pos pos);
/* The pipeline being compiled (its connections and connector registry). */
pipeline *compile_pipeline(compile_ctx *cc);
/* A non-negative integer / number field helpers; report at the node. */
bool compile_int(compile_ctx *cc, const doc_node *node, const char *field, int64_t min,
                 int64_t max,
                  int64_t *out);
bool compile_number(compile_ctx *cc, const doc_node *node, const char *field, double min,
                    double *out);
bool compile_string(compile_ctx *cc, const doc_node *node, const char *field,
                    const char **out);
bool compile_refpath(compile_ctx *cc, const doc_node *node, const char *field, path **out);

/* --- run-time services (scheduler thread only) --- */
/* The state's own step is done: result goes through ResultSelector, ResultPath and
 * OutputPath, then the transition. Steals result. */
void sched_result(frame *f, json_t *result);
/* Choice: go to next (NULL = this frame ends) with output already final. Steals. */
void sched_goto(frame *f, state *next, json_t *output);
/* The state failed: Retry and Catch apply. */
void sched_fail(frame *f, const etl_error *err);
/* The frame ends successfully here (Succeed). Steals output. */
void sched_succeed(frame *f, json_t *output);

/* Arm the frame's one timer (replaces any earlier one) at an absolute CLOCK_MONOTONIC
 * time in nanoseconds. */
void sched_timer(frame *f, int64_t when_ns);
int64_t sched_now_ns(void);

/* Blocking work for the pool. run() executes on a worker thread; it must check
 * *cancel and return ETL_ECANCELLED promptly when set. */
struct work {
    etl_status (*run)(work *w);
    void (*destroy)(work *w);  /* frees everything the work owns, incl. w itself */
    atomic_int cancel;         /* set by the scheduler (timeout, cancel) */
    _Atomic int64_t started_ns;/* set by the worker when it starts, 0 before */
    etl_status status;         /* set by the worker when run returns */
    json_t *result;            /* set by run on ETL_OK (new reference) */
    etl_error err;             /* set by run on failure */
    /* Called on the scheduler thread right after cancel is set (timeout, a failed
     * sibling, a signal), while run() may be running on a worker: e.g. to cancel a
     * server-side query. May be NULL. */
    void (*on_cancel)(work *w);
    /* A connection slot: pipeline connection index + 1, 0 = none. The scheduler runs
     * at most max_connections works of one connection at once; the others wait. */
    int conn_slot;
    /* For events and summaries, set by the work's owner: the task's key (NULL = none)
     * and connection name, and by run(): rows and bytes moved. */
    const char *key;
    const char *conn_name;
    uint64_t rows, bytes;
    /* scheduler-private */
    frame *owner;
    bool timed_out;
    bool waiting_slot;         /* queued for a connection slot, not yet on the pool */
    bool holds_slot;           /* submitted to the pool with a connection slot */
    work *next;
};
/* Submit w on behalf of f; at most one work per frame at a time. The state's
 * TimeoutSeconds (if any) runs from when a worker starts the work. */
void sched_submit(frame *f, work *w, double timeout_s);

/* Spawn a child frame running m from its start state with input (borrowed). index is
 * the child's slot (branch number or item index); item (borrowed, may be NULL) is
 * $$.Map.Item.Value. */
void sched_spawn(frame *f, machine *m, json_t *input, int64_t index, json_t *item);
/* Cancel every child (and their work) of f; each reports through on_child with
 * ETL_ECANCELLED. */
void sched_cancel_children(frame *f);
/* The state's per-frame scratch (e.g. Map progress); freed with free_fn when the frame
 * leaves the state. */
void *sched_scratch(frame *f);
void sched_set_scratch(frame *f, void *p, void (*free_fn)(void *));
/* Context for $$ paths evaluated by a state (Choice, Wait SecondsPath, ...). */
ctx_provider *sched_ctx(frame *f);
/* The effective input handed to enter (borrowed), until the state is left. */
json_t *sched_effective(frame *f);
/* A context object (NEW reference) for evaluating a Map ItemSelector for one item:
 * f's context with $$.Map.Item.Index and $$.Map.Item.Value set. */
json_t *sched_item_ctx(frame *f, int64_t index, json_t *item);
/* The frame's raw state input (borrowed). */
json_t *sched_input(frame *f);
/* True when the frame has been cancelled (stop starting new children). */
bool sched_cancelled(frame *f);
/* What a Task needs from the run: the pipeline, its connection pools, the staging
 * directory, and the attempt number of the frame's current state (from 1). */
const pipeline *sched_pipeline(frame *f);
struct connpool *sched_connpool(frame *f);
const char *sched_stage_dir(frame *f);
const char *sched_run_id(frame *f); /* $$.Execution.Name */
/* The frame's place in the execution: "" at the top, "/Keys[3]" in item 3 of Map state
 * Keys, nested alike; the same as the checkpoint paths. */
void sched_frame_path(frame *f, char *buf, size_t len);
int sched_attempt(frame *f);
/* The pipeline's directory, for resolving relative programs. */
const char *sched_pipeline_dir(frame *f);
/* True when history events are recorded (build event details only then). */
bool sched_tracing(frame *f);
/* True when the per-step events are recorded too (StateEntered/StateExited, and a
 * Map's per-item MapIterationStarted/MapIterationSucceeded): a --history file, or an
 * observer that asked for them. */
bool sched_tracing_all(frame *f);
/* History: record a state-specific event (MapIterationStarted, ...). details is stolen. */
void sched_event(frame *f, const char *type, json_t *details);

#endif
