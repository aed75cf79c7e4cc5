/* Parallel: runs every branch on the state's effective input; the output is the array
 * of branch outputs in branch order. The first failing branch fails the state with
 * its own error name and cause and cancels the others; the state reports the failure
 * once every branch has stopped, so no branch work outlives the state. */
#include <stdio.h>
#include <stdlib.h>

#include "state.h"

static const char *const fields[] = {"Branches", NULL};

typedef struct parallel_impl {
    machine **branches;
    size_t n;
} parallel_impl;

typedef struct par_run {
    json_t *results;      /* array, one slot per branch */
    size_t pending;
    bool failed;
    etl_error err;
} par_run;

static bool compile(state *st, const doc_node *def, compile_ctx *cc)
{
    parallel_impl *im = calloc(1, sizeof *im);
    st->impl = im;
    if (!im)
        return false;
    const doc_node *b = doc_get(def, "Branches");
    if (!b) {
        diag_add(compile_diag(cc), st->pos, "Parallel state '%s' needs 'Branches'", st->name);
        return false;
    }
    if (!json_is_array(b->json) || b->n == 0) {
        diag_add(compile_diag(cc), b->pos, "'Branches' must be a non-empty list of state machines");
        return false;
    }
    im->branches = calloc(b->n, sizeof *im->branches);
    im->n = b->n;
    for (size_t i = 0; i < b->n; i++) {
        char label[160];
        snprintf(label, sizeof label, "branch %zu of Parallel state '%s'", i + 1, st->name);
        im->branches[i] = compile_submachine(cc, b->items[i], st, label);
    }
    return true;
}

static void free_run(void *p)
{
    par_run *pr = p;
    json_decref(pr->results);
    free(pr);
}

static void enter(state *st, frame *f, json_t *effective)
{
    parallel_impl *im = st->impl;
    par_run *pr = calloc(1, sizeof *pr);
    if (!pr) {
        etl_error err;
        etl_fail(&err, ETL_ENOMEM, "States.Runtime", "out of memory in Parallel state '%s'",
                 st->name);
        sched_fail(f, &err);
        return;
    }
    pr->results = json_array();
    for (size_t i = 0; i < im->n; i++)
        json_array_append_new(pr->results, json_null());
    pr->pending = im->n;
    sched_set_scratch(f, pr, free_run);
    for (size_t i = 0; i < im->n; i++)
        sched_spawn(f, im->branches[i], effective, (int64_t)i, NULL);
}

static void on_child(state *st, frame *f, int64_t index, json_t *output, const etl_error *err)
{
    (void)st;
    par_run *pr = sched_scratch(f);
    pr->pending--;
    if (err) {
        /* before a failure nothing cancelled the branches, so even ETL_ECANCELLED (a
         * connector's own doing) fails the state rather than leaving a null */
        if (!pr->failed) {
            pr->failed = true;
            pr->err = *err;
            sched_cancel_children(f);
        }
    } else {
        json_array_set(pr->results, (size_t)index, output);
    }
    if (pr->pending > 0)
        return;
    if (pr->failed) {
        etl_error e = pr->err;
        sched_fail(f, &e);
    } else {
        sched_result(f, json_incref(pr->results));
    }
}

static size_t children(const state *st, machine ***out)
{
    parallel_impl *im = st->impl;
    *out = im ? im->branches : NULL;
    return im ? im->n : 0;
}

static void destroy(state *st)
{
    parallel_impl *im = st->impl;
    if (!im)
        return;
    for (size_t i = 0; i < im->n; i++)
        pipeline_free_machine(im->branches[i]);
    free(im->branches);
    free(im);
}

const state_ops parallel_ops = {
    .type_name = "Parallel",
    .type = ST_PARALLEL,
    .flags = SF_INPUT_PATH | SF_OUTPUT_PATH | SF_RESULT_PATH | SF_PARAMETERS |
             SF_RESULT_SELECTOR | SF_RETRY_CATCH | SF_TRANSITION,
    .fields = fields,
    .compile = compile,
    .enter = enter,
    .on_child = on_child,
    .children = children,
    .free = destroy,
};
