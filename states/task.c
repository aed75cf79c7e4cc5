/* Task: blocking work on the worker pool. The effective input (after Parameters) is
 * handed to the resource; its result goes through ResultSelector/ResultPath/OutputPath.
 * Resources:
 *   exec                  a program run with the input on stdin (engine/exec.c);
 *   CONNECTOR.ACTION      an action of a connector (include/etlrun/connector.h), e.g.
 *                         http.request, file.extract;
 *   extract, load, sql.query, sql.exec
 *                         the action extract/load/query/exec of the connector whose
 *                         type the connection named in Parameters.connection has. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "connpool.h"
#include "host.h"
#include "jsontext.h"
#include "plugins.h"
#include "state.h"

static const char *const fields[] = {"Resource", "Command", "TimeoutSeconds",
                                     "HeartbeatSeconds", NULL};

typedef struct task_impl {
    char **argv;          /* exec: NULL-terminated */
    double timeout_s;     /* 0 = none */
    const etl_connector *connector; /* connector resources */
    const etl_action *action;
    int conn_index;       /* Parameters.connection, or -1 */
} task_impl;

typedef struct connector_work {
    work w;
    const task_impl *im;
    connpool *pool;
    json_t *params;       /* evaluated Parameters */
    char *key;            /* Parameters.key as text, "" when absent */
    etl_task task;
} connector_work;

/* Generic resources and the action they name on the connection's connector. */
static const struct {
    const char *resource, *action;
} generic[] = {{"extract", "extract"}, {"load", "load"}, {"sql.query", "query"},
               {"sql.exec", "exec"}};

static bool resolve_connector(compile_ctx *cc, state *st, const doc_node *def,
                              const doc_node *res, const char *rs, task_impl *im)
{
    diag *d = compile_diag(cc);
    pipeline *pl = compile_pipeline(cc);
    const doc_node *params = doc_get(def, "Parameters");
    const doc_node *cn = params ? doc_get(params, "connection") : NULL;
    const char *action_name = NULL;
    im->conn_index = -1;
    if (params && doc_get(params, "connection.$")) {
        diag_add(d, doc_member_get(params, "connection.$")->key_pos,
                 "'connection' must be written as a name, not a path: the connection is "
                 "chosen before the pipeline runs");
        return false;
    }
    if (cn) {
        if (!json_is_string(cn->json)) {
            diag_add(d, cn->pos, "'connection' must be the name of a connection");
            return false;
        }
        im->conn_index = pipeline_conn_index(pl, json_string_value(cn->json));
        if (im->conn_index < 0) {
            diag_add(d, cn->pos, "no connection named '%s' in 'connections:'",
                     json_string_value(cn->json));
            return false;
        }
    }
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        if (strcmp(rs, generic[i].resource) == 0)
            action_name = generic[i].action;
    if (action_name) {
        if (im->conn_index < 0) {
            diag_add(d, params ? params->pos : res->pos,
                     "Resource '%s' needs Parameters.connection: the name of the connection "
                     "whose connector does the work", rs);
            return false;
        }
        im->connector = pl->conns[im->conn_index].connector;
    } else {
        const char *dot = strchr(rs, '.');
        char cname[128];
        if (!dot || dot == rs || !dot[1] || (size_t)(dot - rs) >= sizeof cname) {
            diag_add(d, res->pos, "unknown Resource '%s' in Task state '%s' (use exec, "
                                  "CONNECTOR.ACTION such as http.request, or extract, load, "
                                  "sql.query, sql.exec)", rs, st->name);
            return false;
        }
        memcpy(cname, rs, (size_t)(dot - rs));
        cname[dot - rs] = '\0';
        action_name = dot + 1;
        im->connector = registry_find(pl->reg, cname, d, res->pos);
        if (!im->connector) {
            diag_add(d, res->pos, "unknown Resource '%s': no connector named '%s' ('etlrun "
                                  "plugins' lists them)", rs, cname);
            return false;
        }
        if (im->conn_index >= 0 && pl->conns[im->conn_index].connector != im->connector) {
            diag_add(d, cn->pos, "connection '%s' is of type '%s', but Resource '%s' needs a "
                                 "'%s' connection", pl->conns[im->conn_index].name,
                     pl->conns[im->conn_index].connector->name, rs, cname);
            return false;
        }
    }
    im->action = registry_action(im->connector, action_name);
    if (!im->action) {
        diag_add(d, res->pos, "connector '%s' has no action '%s'", im->connector->name,
                 action_name);
        return false;
    }
    if ((im->action->flags & ETL_ACTION_NEEDS_CONNECTION) && im->conn_index < 0) {
        diag_add(d, params ? params->pos : st->pos,
                 "Resource '%s' needs Parameters.connection naming a '%s' connection", rs,
                 im->connector->name);
        return false;
    }
    if (im->action->check) {
        char what[300];
        snprintf(what, sizeof what, "Parameters of state '%s'", st->name);
        json_t *empty = NULL;
        if (!params)
            empty = json_object();
        etl_checker chk = {d, params ? params : def, what, 0};
        bool ok = im->action->check(host_services(), host_wrap(params ? params->json : empty),
                                    &chk);
        json_decref(empty);
        if (!ok || chk.errors)
            return false;
    }
    return true;
}

typedef struct exec_work {
    work w;
    const task_impl *im;
    char *input;
    size_t len;
    char *key;            /* Parameters.key as text, "" when absent (events, summaries) */
    const char *run_id;   /* for the program's environment; all three live for the run */
    const char *pipeline;
    const char *state_name;
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
        ok &= resolve_connector(cc, st, def, res, rs, im);
    }
    if ((n = doc_get(def, "HeartbeatSeconds"))) {
        diag_add(d, doc_member_get(def, "HeartbeatSeconds")->key_pos,
                 "'HeartbeatSeconds' is not supported by etlrun; use TimeoutSeconds");
        ok = false;
    }
    if ((n = doc_get(def, "TimeoutSeconds"))) {
        int64_t v;
        if (compile_int(cc, n, "TimeoutSeconds", 1, 99999999, &v))
            im->timeout_s = (double)v;
        else
            ok = false;
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
    /* ETLRUN_RUN_ID, ETLRUN_PIPELINE, ETLRUN_STATE: for scripts, and the marks by which
     * engine/orphans.c finds what the program left running when etlrun was killed.
     * Built here, on the worker, to keep the scheduler's enter() cheap. */
    size_t n = strlen(ew->run_id) + strlen(ew->pipeline) + strlen(ew->state_name) + 48;
    char *env = malloc(n);
    if (!env)
        return etl_fail(&w->err, ETL_ENOMEM, "States.Runtime",
                        "out of memory preparing task '%s'", ew->state_name);
    size_t a = (size_t)snprintf(env, n, "ETLRUN_RUN_ID=%s", ew->run_id) + 1;
    size_t b = a + (size_t)snprintf(env + a, n - a, "ETLRUN_PIPELINE=%s", ew->pipeline) + 1;
    snprintf(env + b, n - b, "ETLRUN_STATE=%s", ew->state_name);
    const char *const extra[] = {env, env + a, env + b, NULL};
    exec_spec spec = {.argv = (const char *const *)ew->im->argv, .env_extra = extra};
    etl_status st = exec_run(&spec, ew->input, ew->len, &w->cancel, &w->result, &w->err);
    free(env);
    return st;
}

static void destroy_exec(work *w)
{
    exec_work *ew = (exec_work *)w;
    json_decref(w->result);
    free(ew->input);
    free(ew->key);
    free(ew);
}

static etl_status run_connector(work *w)
{
    connector_work *cw = (connector_work *)w;
    const task_impl *im = cw->im;
    etl_conn *conn = NULL;
    etl_json *result = NULL;
    etl_status st;
    if (im->timeout_s > 0)
        cw->task.deadline_ns = atomic_load(&w->started_ns) + (int64_t)(im->timeout_s * 1e9);
    if (im->conn_index >= 0) {
        st = connpool_acquire(cw->pool, im->conn_index, &cw->task, &conn, &w->err);
        if (st != ETL_OK)
            return st;
    }
    etl_error_clear(&w->err);
    st = im->action->run(host_services(), &cw->task, conn, host_wrap(cw->params), &result,
                         &w->err);
    host_task_done(&cw->task);
    w->rows = atomic_load(&cw->task.rows);
    w->bytes = atomic_load(&cw->task.bytes);
    if (conn)
        /* a failed or cancelled action may have left the connection mid-protocol */
        connpool_release(cw->pool, im->conn_index, conn,
                         st == ETL_ECONNECT || st == ETL_ECANCELLED || st == ETL_ETIMEOUT);
    if (st == ETL_OK) {
        w->result = result ? host_json(result) : json_null();
    } else {
        json_decref(host_json(result));
        if (!w->err.name[0])
            etl_fail(&w->err, st, "States.TaskFailed", "%s.%s failed without saying why",
                     im->connector->name, im->action->name);
    }
    return st;
}

static void cancel_connector(work *w)
{
    host_task_cancel(&((connector_work *)w)->task);
}

static void destroy_connector(work *w)
{
    connector_work *cw = (connector_work *)w;
    json_decref(w->result);
    json_decref(cw->params);
    free(cw->key);
    host_task_destroy(&cw->task);
    free(cw);
}

static char *key_of(json_t *params)
{
    json_t *k = json_is_object(params) ? json_object_get(params, "key") : NULL;
    if (json_is_string(k))
        return strdup(json_string_value(k));
    if (k && !json_is_null(k))
        return jsontext_dumps(k, NULL);
    return strdup("");
}

static void enter_connector(state *st, frame *f, json_t *effective)
{
    task_impl *im = st->impl;
    const pipeline *pl = sched_pipeline(f);
    connector_work *cw = calloc(1, sizeof *cw);
    etl_error err;
    if (!cw || !(cw->key = key_of(effective))) {
        free(cw);
        etl_fail(&err, ETL_ENOMEM, "States.Runtime", "out of memory preparing task '%s'",
                 st->name);
        sched_fail(f, &err);
        return;
    }
    cw->im = im;
    cw->pool = sched_connpool(f);
    cw->params = json_incref(effective);
    cw->w.run = run_connector;
    cw->w.destroy = destroy_connector;
    cw->w.on_cancel = cancel_connector;
    cw->w.conn_slot = im->conn_index + 1;
    host_task_init(&cw->task, st->name, cw->key,
                   im->conn_index >= 0 ? pl->conns[im->conn_index].name : "",
                   sched_stage_dir(f), sched_attempt(f), &cw->w.cancel);
    cw->task.base_dir = pl->dir;
    cw->task.keep_staged = pl->stage_keep;
    cw->task.run_id = sched_run_id(f);
    cw->task.pipeline = pl->name;
    sched_frame_path(f, cw->task.path, sizeof cw->task.path);
    cw->w.key = cw->key[0] ? cw->key : NULL;
    cw->w.conn_name = cw->task.conn_name;
    sched_submit(f, &cw->w, im->timeout_s);
}

static void enter(state *st, frame *f, json_t *effective)
{
    task_impl *im = st->impl;
    if (im->action) {
        enter_connector(st, f, effective);
        return;
    }
    exec_work *ew = calloc(1, sizeof *ew);
    etl_error err;
    if (ew) {
        ew->input = jsontext_dumps(effective, &ew->len);
        ew->key = key_of(effective);
    }
    if (!ew || !ew->input || !ew->key) {
        if (ew) {
            free(ew->input);
            free(ew->key);
        }
        free(ew);
        etl_fail(&err, ETL_ENOMEM, "States.Runtime", "out of memory preparing task '%s'",
                 st->name);
        sched_fail(f, &err);
        return;
    }
    ew->im = im;
    ew->run_id = sched_run_id(f);
    ew->pipeline = sched_pipeline(f)->name ? sched_pipeline(f)->name : "";
    ew->state_name = st->name;
    ew->w.run = run_exec;
    ew->w.destroy = destroy_exec;
    ew->w.key = ew->key[0] ? ew->key : NULL;
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
