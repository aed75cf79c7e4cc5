/* Task: blocking work on the worker pool. The effective input (after Parameters) is
 * handed to the resource; its result goes through ResultSelector/ResultPath/OutputPath.
 * Resources: "exec" (connectors/exec): a program run with the input on stdin. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../connectors/exec/exec.h"
#include "jsontext.h"
#include "state.h"

static const char *const fields[] = {"Resource", "Command", "TimeoutSeconds",
                                     "HeartbeatSeconds", NULL};

typedef struct task_impl {
    char **argv;          /* exec: NULL-terminated */
    double timeout_s;     /* 0 = none */
} task_impl;

typedef struct exec_work {
    work w;
    const task_impl *im;
    char *input;
    size_t len;
} exec_work;

static bool compile(state *st, const doc_node *def, compile_ctx *cc)
{
    task_impl *im = calloc(1, sizeof *im);
    st->impl = im;
    if (!im)
        return false;
    diag *d = compile_diag(cc);
    bool ok = true;
    const doc_node *res = doc_get(def, "Resource");
    const doc_node *n;
    const char *rs = NULL;
    if (!res) {
        diag_add(d, st->pos, "Task state '%s' needs 'Resource'", st->name);
        ok = false;
    } else if (compile_string(cc, res, "Resource", &rs) && strcmp(rs, "exec") != 0) {
        diag_add(d, res->pos, "unknown Resource '%s' in Task state '%s' (available: exec)", rs,
                 st->name);
        ok = false;
    }
    if ((n = doc_get(def, "HeartbeatSeconds"))) {
        diag_add(d, doc_member_get(def, "HeartbeatSeconds")->key_pos,
                 "'HeartbeatSeconds' is not supported by etlrun; use TimeoutSeconds");
        ok = false;
    }
    if ((n = doc_get(def, "TimeoutSeconds"))) {
        int64_t v;
        if (compile_uint(cc, n, "TimeoutSeconds", 99999999, &v) && v > 0)
            im->timeout_s = (double)v;
        else {
            if (json_is_integer(n->json) && json_integer_value(n->json) == 0)
                diag_add(d, n->pos, "'TimeoutSeconds' must be a positive integer");
            ok = false;
        }
    }
    const doc_node *cmd = doc_get(def, "Command");
    if (rs && strcmp(rs, "exec") == 0) {
        if (!cmd) {
            diag_add(d, st->pos, "Task state '%s' with Resource exec needs 'Command' (a list: "
                                 "program and arguments)", st->name);
            return false;
        }
        if (!json_is_array(cmd->json) || cmd->n == 0) {
            diag_add(d, cmd->pos, "'Command' must be a non-empty list: program and arguments");
            return false;
        }
        im->argv = calloc(cmd->n + 1, sizeof *im->argv);
        for (size_t i = 0; i < cmd->n; i++) {
            const doc_node *a = cmd->items[i];
            if (!json_is_string(a->json)) {
                diag_add(d, a->pos, "'Command' items must be strings, not %s",
                         doc_type_name(a));
                ok = false;
                im->argv[i] = strdup("");
                continue;
            }
            const char *s = json_string_value(a->json);
            if (i == 0 && s[0] != '/' && strchr(s, '/')) {
                /* relative to the pipeline file, so a pipeline runs from any directory */
                size_t len = strlen(compile_dir(cc)) + strlen(s) + 2;
                im->argv[i] = malloc(len);
                snprintf(im->argv[i], len, "%s/%s", compile_dir(cc), s);
            } else {
                im->argv[i] = strdup(s);
            }
        }
    } else if (cmd) {
        diag_add(d, doc_member_get(def, "Command")->key_pos,
                 "'Command' is only valid with Resource exec");
        ok = false;
    }
    return ok;
}

static etl_status run_exec(work *w)
{
    exec_work *ew = (exec_work *)w;
    exec_spec spec = {.argv = (const char *const *)ew->im->argv};
    return exec_run(&spec, ew->input, ew->len, &w->cancel, &w->result, &w->err);
}

static void destroy_exec(work *w)
{
    exec_work *ew = (exec_work *)w;
    json_decref(w->result);
    free(ew->input);
    free(ew);
}

static void enter(state *st, frame *f, json_t *effective)
{
    task_impl *im = st->impl;
    exec_work *ew = calloc(1, sizeof *ew);
    etl_error err;
    if (ew)
        ew->input = jsontext_dumps(effective, &ew->len);
    if (!ew || !ew->input) {
        free(ew);
        etl_fail(&err, ETL_ENOMEM, "States.Runtime", "out of memory preparing task '%s'",
                 st->name);
        sched_fail(f, &err);
        return;
    }
    ew->im = im;
    ew->w.run = run_exec;
    ew->w.destroy = destroy_exec;
    sched_submit(f, &ew->w, im->timeout_s);
}

static void on_work(state *st, frame *f, work *w)
{
    (void)st;
    if (w->status == ETL_OK) {
        json_t *r = w->result ? w->result : json_null();
        sched_result(f, json_incref(r));
    } else {
        sched_fail(f, &w->err);
    }
}

static void destroy(state *st)
{
    task_impl *im = st->impl;
    if (!im)
        return;
    for (size_t i = 0; im->argv && im->argv[i]; i++)
        free(im->argv[i]);
    free(im->argv);
    free(im);
}

const state_ops task_ops = {
    .type_name = "Task",
    .type = ST_TASK,
    .flags = SF_INPUT_PATH | SF_OUTPUT_PATH | SF_RESULT_PATH | SF_PARAMETERS |
             SF_RESULT_SELECTOR | SF_RETRY_CATCH | SF_TRANSITION,
    .fields = fields,
    .compile = compile,
    .enter = enter,
    .on_work = on_work,
    .free = destroy,
};
