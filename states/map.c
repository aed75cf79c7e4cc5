/* Map: runs the item processor once per item of the array at ItemsPath, at most
 * MaxConcurrency at a time (0 = all at once); the output is the array of iteration
 * outputs in item order, whatever the completion order.
 *
 * Failures: without ToleratedFailureCount/Percentage the first failed iteration fails
 * the state with its own error and cancels the rest. With a tolerance, a failed
 * iteration's slot holds {"Error", "Cause"}, and the state fails with
 * States.ExceedToleratedFailureThreshold once the failures exceed it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

static const char *const fields[] = {"ItemsPath", "ItemSelector", "Parameters", "ItemProcessor",
                                     "Iterator", "MaxConcurrency", "ToleratedFailurePercentage",
                                     "ToleratedFailureCount", NULL};

typedef struct map_impl {
    path *items_path;
    tmpl *selector;            /* ItemSelector or legacy Parameters */
    machine *processor;
    int64_t max_concurrency;   /* 0 = unlimited */
    bool has_tolerance;
    int64_t tol_count;         /* -1 when unset */
    double tol_percent;        /* -1 when unset */
} map_impl;

typedef struct map_run {
    json_t *items;             /* owned: ItemsPath may select from the $$ cache, whose
                                * lifetime is the scheduler's, not the effective input's */
    json_t *results;
    size_t n, next, running, done, failed;
    bool stopping;             /* a failure decided the state; start nothing more */
    etl_error err;
} map_run;

static bool compile(state *st, const doc_node *def, compile_ctx *cc)
{
    map_impl *im = calloc(1, sizeof *im);
    st->impl = im;
    if (!im)
        return false;
    im->tol_count = -1;
    im->tol_percent = -1;
    diag *d = compile_diag(cc);
    bool ok = true;
    const doc_node *n;
    if ((n = doc_get(def, "ItemsPath")))
        ok &= compile_refpath(cc, n, "ItemsPath", &im->items_path);
    const doc_member *sel = doc_member_get(def, "ItemSelector");
    const doc_member *par = doc_member_get(def, "Parameters");
    if (sel && par) {
        diag_add(d, par->key_pos, "a Map state takes 'ItemSelector' or its legacy name "
                                  "'Parameters', not both");
        ok = false;
    }
    if (sel || par) {
        const doc_member *m = sel ? sel : par;
        if (!json_is_object(m->value->json)) {
            diag_add(d, m->value->pos, "'%s' must be an object", m->key);
            ok = false;
        } else if (!(im->selector = tmpl_compile(m->value, d)))
            ok = false;
    }
    const doc_member *ip = doc_member_get(def, "ItemProcessor");
    const doc_member *it = doc_member_get(def, "Iterator");
    if (ip && it) {
        diag_add(d, it->key_pos, "a Map state takes 'ItemProcessor' or its legacy name "
                                 "'Iterator', not both");
        ok = false;
    } else if (!ip && !it) {
        diag_add(d, st->pos, "Map state '%s' needs 'ItemProcessor'", st->name);
        ok = false;
    } else {
        const doc_member *m = ip ? ip : it;
        const doc_node *pc = doc_get(m->value, "ProcessorConfig");
        if (pc) {
            const doc_node *mode = doc_get(pc, "Mode");
            if (!json_is_object(pc->json) ||
                (mode && !(json_is_string(mode->json) &&
                           strcmp(json_string_value(mode->json), "INLINE") == 0))) {
                diag_add(d, mode ? mode->pos : pc->pos,
                         "only ProcessorConfig Mode INLINE is supported (distributed Map runs "
                         "on the managed service only)");
                ok = false;
            }
        }
        char label[160];
        snprintf(label, sizeof label, "the item processor of Map state '%s'", st->name);
        im->processor = compile_submachine(cc, m->value, st, label);
    }
    if ((n = doc_get(def, "MaxConcurrency")))
        ok &= compile_int(cc, n, "MaxConcurrency", 0, INT32_MAX, &im->max_concurrency);
    if ((n = doc_get(def, "ToleratedFailureCount"))) {
        ok &= compile_int(cc, n, "ToleratedFailureCount", 0, INT32_MAX, &im->tol_count);
        im->has_tolerance = true;
    }
    if ((n = doc_get(def, "ToleratedFailurePercentage"))) {
        if (!json_is_number(n->json) || json_number_value(n->json) < 0 ||
            json_number_value(n->json) > 100) {
            diag_add(d, n->pos, "'ToleratedFailurePercentage' must be a number from 0 to 100");
            ok = false;
        } else
            im->tol_percent = json_number_value(n->json);
        im->has_tolerance = true;
    }
    return ok;
}

static void free_run(void *p)
{
    map_run *mr = p;
    json_decref(mr->items);
    json_decref(mr->results);
    free(mr);
}

static bool exceeded(const map_impl *im, const map_run *mr)
{
    if (!im->has_tolerance)
        return mr->failed > 0;
    /* with both set, exceeding either one fails the state */
    if (im->tol_count >= 0 && (int64_t)mr->failed > im->tol_count)
        return true;
    return im->tol_percent >= 0 &&
           (double)mr->failed * 100.0 > im->tol_percent * (double)mr->n;
}

/* Start iterations up to the concurrency limit. Returns false when a selector failed
 * (the state has then been failed). */
static bool start_more(state *st, frame *f, map_run *mr)
{
    map_impl *im = st->impl;
    while (!mr->stopping && mr->next < mr->n &&
           (im->max_concurrency == 0 || (int64_t)mr->running < im->max_concurrency)) {
        size_t i = mr->next++;
        json_t *item = json_array_get(mr->items, i);
        json_t *input = item;
        json_t *owned = NULL;
        if (im->selector) {
            ctx_provider cp = {0};
            if (tmpl_uses_context(im->selector))
                cp.cache = sched_item_ctx(f, (int64_t)i, item);
            etl_error terr, err;
            owned = tmpl_eval(im->selector, sched_effective(f), &cp, &terr);
            ctx_release(&cp);
            if (!owned) {
                /* the template's message says which field; add which state and item */
                etl_fail(&err, terr.status, terr.name,
                         "ItemSelector of Map state '%s', item %zu: %s", st->name, i,
                         terr.cause);
                err.transient = terr.transient;
                mr->stopping = true;
                mr->err = err;
                mr->failed++;
                if (mr->running == 0) {
                    sched_fail(f, &err);
                    return false;
                }
                sched_cancel_children(f);
                return true;
            }
            input = owned;
        }
        mr->running++;
        if (sched_tracing_all(f))
            sched_event(f, "MapIterationStarted", json_pack("{s:I}", "index", (json_int_t)i));
        sched_spawn(f, im->processor, input, (int64_t)i, item);
        json_decref(owned);
    }
    return true;
}

static void finish(state *st, frame *f, map_run *mr)
{
    (void)st;
    if (mr->stopping) {
        etl_error e = mr->err;
        sched_fail(f, &e);
    } else {
        sched_result(f, json_incref(mr->results));
    }
}

static void enter(state *st, frame *f, json_t *effective)
{
    map_impl *im = st->impl;
    etl_error err;
    json_t *items = effective;
    if (im->items_path) {
        json_t *root = path_is_context(im->items_path) ? ctx_get(sched_ctx(f)) : effective;
        items = root ? path_get(im->items_path, root) : NULL;
        if (!items) {
            etl_fail(&err, ETL_ERUNTIME, "States.Runtime",
                     "ItemsPath '%s' of Map state '%s' matched nothing in the input",
                     path_text(im->items_path), st->name);
            sched_fail(f, &err);
            return;
        }
    }
    if (!json_is_array(items)) {
        etl_fail(&err, ETL_ERUNTIME, "States.Runtime",
                 "the items of Map state '%s' must be an array, not %s", st->name,
                 json_is_object(items) ? "an object" : "a scalar");
        sched_fail(f, &err);
        return;
    }
    map_run *mr = calloc(1, sizeof *mr);
    if (!mr) {
        etl_fail(&err, ETL_ENOMEM, "States.Runtime", "out of memory in Map state '%s'", st->name);
        sched_fail(f, &err);
        return;
    }
    mr->items = json_incref(items);
    mr->n = json_array_size(items);
    if (sched_tracing(f))
        sched_event(f, "MapStarted", json_pack("{s:I}", "items", (json_int_t)mr->n));
    mr->results = json_array();
    for (size_t i = 0; i < mr->n; i++)
        json_array_append_new(mr->results, json_null());
    sched_set_scratch(f, mr, free_run);
    if (mr->n == 0) {
        sched_result(f, json_incref(mr->results));
        return;
    }
    start_more(st, f, mr);
}

static void on_child(state *st, frame *f, int64_t index, json_t *output, const etl_error *err)
{
    map_impl *im = st->impl;
    map_run *mr = sched_scratch(f);
    mr->running--;
    mr->done++;
    if (err && err->status == ETL_ECANCELLED && mr->stopping) {
        /* cancelled because the state already failed; a "cancelled" that nobody asked
         * for (a connector's own doing) is a failure like any other, never a null */
    } else if (err) {
        mr->failed++;
        if (sched_tracing(f))
            sched_event(f, "MapIterationFailed",
                    json_pack("{s:I,s:s,s:s}", "index", (json_int_t)index, "error", err->name,
                              "cause", err->cause));
        json_array_set_new(mr->results, (size_t)index,
                           json_pack("{s:s,s:s}", "Error", err->name, "Cause", err->cause));
        if (!mr->stopping && exceeded(im, mr)) {
            mr->stopping = true;
            if (im->has_tolerance)
                etl_fail(&mr->err, ETL_ETASK, "States.ExceedToleratedFailureThreshold",
                         "Map state '%s': %zu of %zu iterations failed, more than tolerated; "
                         "last error: %s: %s",
                         st->name, mr->failed, mr->n, err->name, err->cause);
            else
                mr->err = *err;
            sched_cancel_children(f);
        }
    } else {
        if (sched_tracing_all(f))
            sched_event(f, "MapIterationSucceeded", json_pack("{s:I}", "index", (json_int_t)index));
        json_array_set(mr->results, (size_t)index, output);
    }
    if (!mr->stopping && !start_more(st, f, mr))
        return;
    if (mr->running == 0 && (mr->stopping || mr->next == mr->n))
        finish(st, f, mr);
}

static size_t children(const state *st, machine ***out)
{
    map_impl *im = st->impl;
    *out = im ? &im->processor : NULL;
    return im && im->processor ? 1 : 0;
}

static void destroy(state *st)
{
    map_impl *im = st->impl;
    if (!im)
        return;
    path_free(im->items_path);
    tmpl_free(im->selector);
    pipeline_free_machine(im->processor);
    free(im);
}

const state_ops map_ops = {
    .type_name = "Map",
    .type = ST_MAP,
    .flags = SF_INPUT_PATH | SF_OUTPUT_PATH | SF_RESULT_PATH | SF_RESULT_SELECTOR |
             SF_RETRY_CATCH | SF_TRANSITION,
    .fields = fields,
    .compile = compile,
    .enter = enter,
    .on_child = on_child,
    .children = children,
    .free = destroy,
};
