/* mysql statements: bound parameters, prepared execution, error classification, and the
 * two small actions built on them: mysql.query ({rows, count}, capped) and mysql.exec
 * ({affected}; a list of statements runs in one transaction). */
#include "myc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- parameters ---------- */

void myc_params_free(myc_params *p)
{
    if (p->owned)
        for (size_t i = 0; i < p->n; i++)
            free(p->owned[i]);
    free(p->owned);
    free(p->binds);
    free(p->ints);
    free(p->lens);
    memset(p, 0, sizeof *p);
}

/* Values are bound as the spec says: strings as they are, integers as 64-bit integers
 * (so LIMIT ? works and a big key compares exactly, not through a double), booleans as
 * 1/0, reals in their shortest text, arrays and objects as their JSON text, null as
 * NULL. The server converts them to the column types. */
etl_status myc_params_bind(const etl_host *h, const etl_json *params, const char *what,
                           myc_params *out, etl_error *err)
{
    memset(out, 0, sizeof *out);
    if (!params || h->json_type(params) == ETL_JSON_NULL)
        return ETL_OK;
    if (h->json_type(params) != ETL_JSON_ARRAY)
        return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                       "mysql: '%s' must be a list of values for the '?' placeholders", what);
    size_t n = h->json_size(params);
    out->n = n;
    if (!n)
        return ETL_OK;
    out->binds = calloc(n, sizeof *out->binds);
    out->ints = calloc(n, sizeof *out->ints);
    out->lens = calloc(n, sizeof *out->lens);
    out->owned = calloc(n, sizeof *out->owned);
    if (!out->binds || !out->ints || !out->lens || !out->owned)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        etl_json *v = h->json_at(params, i);
        MYSQL_BIND *b = &out->binds[i];
        int64_t iv;
        bool bv;
        double d;
        size_t len;
        const char *s;
        switch (h->json_type(v)) {
        case ETL_JSON_NULL:
            b->buffer_type = MYSQL_TYPE_NULL;
            break;
        case ETL_JSON_INT:
            h->json_int(v, &iv);
            out->ints[i] = iv;
            b->buffer_type = MYSQL_TYPE_LONGLONG;
            b->buffer = &out->ints[i];
            break;
        case ETL_JSON_BOOL:
            h->json_bool(v, &bv);
            out->ints[i] = bv;
            b->buffer_type = MYSQL_TYPE_LONGLONG;
            b->buffer = &out->ints[i];
            break;
        case ETL_JSON_STRING:
            s = h->json_string(v, &len);
            b->buffer_type = MYSQL_TYPE_STRING;
            b->buffer = (void *)s;
            out->lens[i] = len;
            b->buffer_length = len;
            b->length = &out->lens[i];
            break;
        case ETL_JSON_REAL:
            h->json_real(v, &d);
            if (!(out->owned[i] = malloc(32)))
                goto oom;
            out->lens[i] = myc_fmt_double(d, out->owned[i]);
            b->buffer_type = MYSQL_TYPE_STRING;
            b->buffer = out->owned[i];
            b->buffer_length = out->lens[i];
            b->length = &out->lens[i];
            break;
        default: { /* arrays and objects: JSON text */
            char *text = h->json_dump(v, &len);
            if (!text || !(out->owned[i] = malloc(len + 1))) {
                h->free(text);
                goto oom;
            }
            memcpy(out->owned[i], text, len + 1);
            h->free(text);
            out->lens[i] = len;
            b->buffer_type = MYSQL_TYPE_STRING;
            b->buffer = out->owned[i];
            b->buffer_length = len;
            b->length = &out->lens[i];
            break;
        }
        }
    }
    return ETL_OK;
oom:
    myc_params_free(out);
    return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory binding %s", what);
}

/* ---------- errors ---------- */

static bool lost_link(unsigned e)
{
    /* CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED, CR_CONN_HOST_ERROR;
     * ER_CONNECTION_KILLED (1927), ER_SERVER_SHUTDOWN (1053) */
    return e == 2006 || e == 2013 || e == 2055 || e == 2003 || e == 1927 || e == 1053;
}

etl_status myc_fail(const etl_host *h, etl_task *task, etl_conn *c, MYSQL_STMT *stmt,
                    const char *name, const char *what, etl_error *err)
{
    unsigned e = stmt ? mysql_stmt_errno(stmt) : mysql_errno(c->my);
    const char *state = stmt ? mysql_stmt_sqlstate(stmt) : mysql_sqlstate(c->my);
    const char *msg = stmt ? mysql_stmt_error(stmt) : mysql_error(c->my);
    c->last_errno = e;
    if (task && h->cancelled(task))
        return myc_cancelled(h, c, err, what);
    if (lost_link(e)) {
        c->broken = true;
        return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", true,
                       "MySQL %s: the connection was lost during %s: %s (error %u)", c->set.label,
                       what, msg, e);
    }
    /* 2014 (commands out of sync) and other client errors leave the protocol unknown */
    if (e >= 2000 && e < 3000)
        c->broken = true;
    bool transient = e == 1213 || e == 1205;
    /* a load's deadlock, lock timeout, or a missing table or column is not about the
     * data: Etl.QueryFailed, as for any statement (and the deadlock transient) */
    if (transient || strncmp(state, "42", 2) == 0 || strncmp(state, "40", 2) == 0)
        name = "Etl.QueryFailed";
    return h->fail(err, ETL_EQUERY, name, transient, "MySQL error %u (SQLSTATE %s) in %s: %s", e, state,
                   what, msg);
}

void myc_rollback(etl_conn *c)
{
    static const char sql[] = "ROLLBACK";
    if (c->broken || mysql_real_query(c->my, sql, sizeof sql - 1) != 0)
        c->broken = true;
}

/* ---------- running statements ---------- */

etl_status myc_stmt_run(const etl_host *h, etl_task *task, etl_conn *c, const char *sql,
                        const myc_params *p, const char *what, MYSQL_STMT **out_stmt,
                        etl_error *err)
{
    *out_stmt = NULL;
    c->last_errno = 0;
    if (h->cancelled(task))
        return myc_cancelled(h, c, err, what);
    MYSQL_STMT *stmt = mysql_stmt_init(c->my);
    if (!stmt)
        return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory (mysql_stmt_init)");
    etl_status st;
    /* no server-side cursor: rows stream as the client fetches them */
    unsigned long cursor = CURSOR_TYPE_NO_CURSOR;
    mysql_stmt_attr_set(stmt, STMT_ATTR_CURSOR_TYPE, &cursor);
    if (mysql_stmt_prepare(stmt, sql, strlen(sql)) != 0) {
        st = myc_fail(h, task, c, stmt, "Etl.QueryFailed", what, err);
        goto fail;
    }
    unsigned long want = mysql_stmt_param_count(stmt);
    size_t have = p ? p->n : 0;
    if (want != have) {
        st = h->fail(err, ETL_EINVAL, "Etl.QueryFailed", false,
                     "mysql: %s has %lu '?' placeholder%s but %zu param%s given", what, want,
                     want == 1 ? "" : "s", have, have == 1 ? " was" : "s were");
        goto fail;
    }
    if (have && mysql_stmt_bind_param(stmt, p->binds) != 0) {
        st = myc_fail(h, task, c, stmt, "Etl.QueryFailed", what, err);
        goto fail;
    }
    if (mysql_stmt_execute(stmt) != 0) {
        st = myc_fail(h, task, c, stmt, "Etl.QueryFailed", what, err);
        goto fail;
    }
    *out_stmt = stmt;
    return ETL_OK;
fail:
    mysql_stmt_close(stmt);
    return st;
}

etl_status myc_simple(const etl_host *h, etl_task *task, etl_conn *c, const char *sql,
                      const char *what, uint64_t *out_affected, etl_error *err)
{
    if (h->cancelled(task))
        return myc_cancelled(h, c, err, what);
    if (mysql_real_query(c->my, sql, strlen(sql)) != 0)
        return myc_fail(h, task, c, NULL, "Etl.QueryFailed", what, err);
    /* read any result sets (a CALL, or a statement that returns rows) to the end */
    uint64_t affected = 0;
    int more;
    do {
        MYSQL_RES *res = mysql_store_result(c->my);
        if (res)
            mysql_free_result(res);
        else if (mysql_field_count(c->my) == 0)
            affected += mysql_affected_rows(c->my) == (my_ulonglong)-1
                            ? 0 : mysql_affected_rows(c->my);
        else
            return myc_fail(h, task, c, NULL, "Etl.QueryFailed", what, err);
        more = mysql_next_result(c->my);
        if (more > 0)
            return myc_fail(h, task, c, NULL, "Etl.QueryFailed", what, err);
    } while (more == 0);
    if (h->cancelled(task))
        return myc_cancelled(h, c, err, what);
    if (out_affected)
        *out_affected = affected;
    return ETL_OK;
}

/* ---------- mysql.query ---------- */

etl_status myc_query_run(const etl_host *h, etl_task *task, etl_conn *c, const etl_json *params,
                         etl_json **out_result, etl_error *err)
{
    static const char *const keys[] = {"connection", "sql", "params", "max_rows", "max_bytes",
                                       "key", NULL};
    myc_report rep = {.host = h, .err = err, .what = "mysql.query"};
    myc_params p = {0};
    myc_result r = {0};
    MYSQL_STMT *stmt = NULL;
    etl_json *rows = NULL;
    etl_status st = ETL_OK;
    int64_t max_rows = MYC_DEFAULT_MAX_ROWS, max_bytes = MYC_DEFAULT_MAX_BYTES;
    const char *sql = NULL;
    myc_known_keys(&rep, params, keys);
    myc_check_sql(&rep, params, false);
    myc_get_string(&rep, params, "sql", &sql);
    myc_get_int(&rep, params, "max_rows", 1, &max_rows);
    myc_get_int(&rep, params, "max_bytes", 1, &max_bytes);
    if (rep.problems)
        return err->status;
    myc_watch(h, task, c);
    if ((st = myc_params_bind(h, h->json_get(params, "params"), "params", &p, err)) != ETL_OK)
        goto out;
    if ((st = myc_stmt_run(h, task, c, sql, &p, "the query", &stmt, err)) != ETL_OK)
        goto out;
    if ((st = myc_result_open(h, stmt, &r, err)) != ETL_OK)
        goto out;
    if (!(rows = h->json_new_array())) {
        st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
        goto out;
    }
    int64_t count = 0, bytes = 0;
    int rc;
    while (r.n && (rc = myc_result_fetch(h, &r, err)) != 0) {
        if (rc < 0) {
            st = rc == -2 ? err->status
                          : myc_fail(h, task, c, stmt, "Etl.QueryFailed", "the query", err);
            goto out;
        }
        if (++count > max_rows) {
            st = h->fail(err, ETL_EQUERY, "Etl.QueryFailed", false,
                         "mysql.query: the result has more than %" PRId64 " rows (max_rows); "
                         "use extract for large results, or raise max_rows", max_rows);
            goto out;
        }
        etl_json *row = h->json_new_object();
        if (!row || h->json_append(rows, row) != 0) {
            st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
            goto out;
        }
        for (unsigned i = 0; i < r.n; i++) {
            myc_col *col = &r.cols[i];
            bool bad;
            etl_json *v = myc_result_json(h, &r, i, &bad);
            if (!v || h->json_set(row, col->name, v) != 0) {
                st = bad ? h->fail(err, ETL_EQUERY, "Etl.QueryFailed", false,
                                   "mysql.query: column '%s' (%s) holds text that is not valid "
                                   "UTF-8", col->name, col->type)
                         : h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
                goto out;
            }
            /* the cap counts the values' text, as extract would write it */
            bytes += col->is_null ? 0 : col->buf ? (int64_t)col->length : 8;
        }
        if (bytes > max_bytes) {
            st = h->fail(err, ETL_EQUERY, "Etl.QueryFailed", false,
                         "mysql.query: the result is larger than %" PRId64 " bytes (max_bytes); "
                         "use extract for large results, or raise max_bytes", max_bytes);
            goto out;
        }
        if (count % MYC_PROGRESS_ROWS == 0 && h->cancelled(task)) {
            st = myc_cancelled(h, c, err, "the query");
            goto out;
        }
    }
    if (h->cancelled(task)) {
        st = myc_cancelled(h, c, err, "the query");
        goto out;
    }
    etl_json *res = h->json_new_object();
    if (!res || h->json_set(res, "rows", rows) != 0) {
        rows = NULL;
        h->json_decref(res);
        st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
        goto out;
    }
    rows = NULL;
    if (h->json_set(res, "count", h->json_new_int(count)) != 0) {
        h->json_decref(res);
        st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
        goto out;
    }
    *out_result = res;
out:
    h->json_decref(rows);
    myc_result_close(&r);
    if (stmt && mysql_stmt_close(stmt) && st == ETL_OK)
        c->broken = true;
    myc_params_free(&p);
    return st;
}

/* ---------- mysql.exec ---------- */

/* Some statements cannot be prepared (ER_UNSUPPORTED_PS): without params they run as
 * plain queries. */
static etl_status exec_one(const etl_host *h, etl_task *task, etl_conn *c, const char *sql,
                           const etl_json *params, const char *what, const char *pwhat,
                           uint64_t *out_affected, etl_error *err)
{
    myc_params p = {0};
    MYSQL_STMT *stmt = NULL;
    etl_status st = myc_params_bind(h, params, pwhat, &p, err);
    if (st != ETL_OK)
        return st;
    st = myc_stmt_run(h, task, c, sql, &p, what, &stmt, err);
    if (st != ETL_OK && p.n == 0 && c->last_errno == 1295) {
        st = myc_simple(h, task, c, sql, what, out_affected, err);
        goto out;
    }
    if (st != ETL_OK)
        goto out;
    uint64_t affected = 0;
    for (;;) {
        if (mysql_stmt_field_count(stmt) > 0) {
            /* rows nobody reads (a SELECT, a CALL's result sets): read them off */
            if (mysql_stmt_store_result(stmt) != 0) {
                st = myc_fail(h, task, c, stmt, "Etl.QueryFailed", what, err);
                goto out;
            }
            mysql_stmt_free_result(stmt);
        } else {
            my_ulonglong a = mysql_stmt_affected_rows(stmt);
            affected += a == (my_ulonglong)-1 ? 0 : a;
        }
        int more = mysql_stmt_next_result(stmt);
        if (more > 0) {
            st = myc_fail(h, task, c, stmt, "Etl.QueryFailed", what, err);
            goto out;
        }
        if (more < 0)
            break;
    }
    if (h->cancelled(task)) {
        st = myc_cancelled(h, c, err, what);
        goto out;
    }
    *out_affected = affected;
out:
    if (stmt && mysql_stmt_close(stmt) && st == ETL_OK)
        c->broken = true;
    myc_params_free(&p);
    return st;
}

etl_status myc_exec_run(const etl_host *h, etl_task *task, etl_conn *c, const etl_json *params,
                        etl_json **out_result, etl_error *err)
{
    static const char *const keys[] = {"connection", "sql", "params", "key", NULL};
    myc_report rep = {.host = h, .err = err, .what = "mysql.exec"};
    myc_known_keys(&rep, params, keys);
    myc_check_sql(&rep, params, true);
    if (rep.problems)
        return err->status;
    myc_watch(h, task, c);
    etl_json *sql = h->json_get(params, "sql");
    etl_json *prm = h->json_get(params, "params");
    uint64_t affected = 0;
    etl_status st;
    if (h->json_type(sql) == ETL_JSON_STRING) {
        st = exec_one(h, task, c, h->json_string(sql, NULL), prm, "the statement", "params",
                      &affected, err);
        if (st != ETL_OK)
            return st;
        etl_json *res = h->json_new_object();
        if (!res || h->json_set(res, "affected", h->json_new_int((int64_t)affected)) != 0) {
            h->json_decref(res);
            return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
        }
        *out_result = res;
        return ETL_OK;
    }
    /* a list: one transaction (DDL commits implicitly in MySQL: keep it out of lists) */
    etl_json *list = h->json_new_array();
    if (!list)
        return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
    st = myc_simple(h, task, c, "START TRANSACTION", "START TRANSACTION", NULL, err);
    size_t n = h->json_size(sql);
    for (size_t i = 0; i < n && st == ETL_OK; i++) {
        char what[64], pwhat[64];
        snprintf(what, sizeof what, "sql[%zu]", i);
        snprintf(pwhat, sizeof pwhat, "params[%zu]", i);
        etl_json *pi = prm && h->json_type(prm) == ETL_JSON_ARRAY ? h->json_at(prm, i) : NULL;
        st = exec_one(h, task, c, h->json_string(h->json_at(sql, i), NULL), pi, what, pwhat,
                      &affected, err);
        if (st == ETL_OK && h->json_append(list, h->json_new_int((int64_t)affected)) != 0)
            st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
    }
    if (st == ETL_OK)
        st = myc_simple(h, task, c, "COMMIT", "COMMIT", NULL, err);
    if (st != ETL_OK) {
        myc_rollback(c);
        h->json_decref(list);
        return st;
    }
    etl_json *res = h->json_new_object();
    if (!res || h->json_set(res, "affected", list) != 0) {
        h->json_decref(res);
        return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
    }
    *out_result = res;
    return ETL_OK;
}
