/* postgres.query and postgres.exec: one statement (or, for exec, a list in one
 * transaction) with bound parameters; query returns its rows as JSON under the
 * max_rows / max_bytes caps.
 *
 * query reads rows in single-row mode, so the caps bound memory: past a cap the
 * statement is cancelled on the server and the rest discarded. */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- parameters ---------- */

static char *own(const etl_host *h, pg_params *p, int i, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static char *own(const etl_host *h, pg_params *p, int i, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *s = h->alloc((size_t)n + 1);
    if (s)
        memcpy(s, buf, (size_t)n + 1);
    p->owned[i] = s;
    return s;
}

etl_status pg_params_bind(const etl_host *h, const etl_json *params, const char *what,
                          pg_params *out, etl_error *err)
{
    memset(out, 0, sizeof *out);
    if (!params || h->json_type(params) == ETL_JSON_NULL)
        return ETL_OK;
    if (h->json_type(params) != ETL_JSON_ARRAY)
        return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                       "postgres: '%s' must be a list of values for $1, $2, ...", what);
    size_t n = h->json_size(params);
    if (n > 65535)
        return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                       "postgres: '%s' has %zu values; a statement takes at most 65535", what, n);
    out->n = (int)n;
    out->values = calloc(n ? n : 1, sizeof *out->values);
    out->owned = calloc(n ? n : 1, sizeof *out->owned);
    if (!out->values || !out->owned) {
        pg_params_free(h, out);
        return h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const etl_json *v = h->json_at(params, i);
        const char *s = NULL;
        size_t len = 0;
        int64_t iv;
        double d;
        bool b;
        switch (h->json_type(v)) {
        case ETL_JSON_NULL:
            continue;
        case ETL_JSON_STRING:
            s = h->json_string(v, &len);
            if (strlen(s) != len) {
                pg_params_free(h, out);
                return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                               "postgres: %s[%zu] holds a NUL byte, which PostgreSQL text "
                               "cannot hold", what, i);
            }
            break;
        case ETL_JSON_INT:
            h->json_int(v, &iv);
            s = own(h, out, (int)i, "%lld", (long long)iv);
            break;
        case ETL_JSON_REAL:
            h->json_real(v, &d);
            /* the shortest text that reads back to the same double */
            for (int prec = 15; prec <= 17; prec++) {
                char buf[40];
                snprintf(buf, sizeof buf, "%.*g", prec, d);
                if (strtod(buf, NULL) == d || prec == 17) {
                    s = own(h, out, (int)i, "%s", buf);
                    break;
                }
            }
            break;
        case ETL_JSON_BOOL:
            h->json_bool(v, &b);
            s = b ? "true" : "false";
            break;
        default: /* arrays and objects: their JSON text (for json/jsonb parameters) */
            s = out->owned[i] = h->json_dump(v, NULL);
            break;
        }
        if (!s) {
            pg_params_free(h, out);
            return h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
        }
        out->values[i] = s;
    }
    return ETL_OK;
}

void pg_params_free(const etl_host *h, pg_params *p)
{
    for (int i = 0; p->owned && i < p->n; i++)
        h->free(p->owned[i]);
    free(p->owned);
    free(p->values);
    memset(p, 0, sizeof *p);
}

/* ---------- query ---------- */

typedef struct rowset {
    int n_cols;
    char **names;       /* column names (from the first result) */
    pg_kind *kinds;
} rowset;

static void rowset_free(rowset *rs)
{
    for (int i = 0; rs->names && i < rs->n_cols; i++)
        free(rs->names[i]);
    free(rs->names);
    free(rs->kinds);
}

static bool rowset_init(rowset *rs, const PGresult *res)
{
    rs->n_cols = PQnfields(res);
    rs->names = calloc((size_t)rs->n_cols + 1, sizeof *rs->names);
    rs->kinds = calloc((size_t)rs->n_cols + 1, sizeof *rs->kinds);
    if (!rs->names || !rs->kinds)
        return false;
    for (int i = 0; i < rs->n_cols; i++) {
        rs->kinds[i] = pg_kind_of(PQftype(res, i));
        if (!(rs->names[i] = strdup(PQfname(res, i))))
            return false;
    }
    return true;
}

/* One row of res as a JSON object appended to rows; adds its text size to *bytes. */
static etl_status add_row(const etl_host *h, etl_conn *c, const rowset *rs, const PGresult *res,
                          etl_json *rows, int64_t row_no, int64_t *bytes, etl_error *err)
{
    etl_json *obj = h->json_new_object();
    if (!obj)
        return h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
    for (int i = 0; i < rs->n_cols; i++) {
        etl_json *v;
        if (PQgetisnull(res, 0, i)) {
            v = h->json_new_null();
        } else {
            size_t len = (size_t)PQgetlength(res, 0, i);
            *bytes += (int64_t)len;
            v = pg_json_value(h, rs->kinds[i], PQgetvalue(res, 0, i), len);
            if (!v) {
                h->json_decref(obj);
                return h->fail(err, ETL_EQUERY, "Etl.QueryFailed", false,
                               "postgres: query on %s: column '%s' of row %lld is not valid "
                               "UTF-8 (the database's encoding is not UTF-8?)", c->label,
                               rs->names[i], (long long)row_no);
            }
        }
        if (h->json_set(obj, rs->names[i], v) != 0) {
            h->json_decref(obj);
            return h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
        }
    }
    if (h->json_append(rows, obj) != 0)
        return h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
    return ETL_OK;
}

etl_status pg_query_run(const etl_host *h, etl_task *task, etl_conn *c, const pg_opts *o,
                        etl_json **out_result, etl_error *err)
{
    pg_params p;
    rowset rs = {0};
    PGresult *res = NULL;
    etl_json *rows = NULL, *result = NULL;
    int64_t count = 0, bytes = 0;
    const char *over = NULL; /* the cap that was passed */
    etl_status st = pg_params_bind(h, o->params, "params", &p, err);
    if (st != ETL_OK)
        return st;
    pg_watch(h, task, c);
    if (!(rows = h->json_new_array())) {
        st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
        goto out;
    }
    st = pg_send(h, task, c, o->sql, p.n, p.values, true, &res, err);
    while (st == ETL_OK && res) {
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_SINGLE_TUPLE && !over) {
            if (!rs.names && !rowset_init(&rs, res)) {
                st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
            } else if (count >= o->max_rows) {
                over = "max_rows";
            } else {
                st = add_row(h, c, &rs, res, rows, count + 1, &bytes, err);
                count++;
                if (bytes > o->max_bytes)
                    over = "max_bytes";
            }
            if (over) {
                char buf[256];
                PQcancel(c->cancel, buf, sizeof buf); /* the rest is discarded below */
            }
        } else if (s != PGRES_SINGLE_TUPLE && s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK &&
                   s != PGRES_EMPTY_QUERY && !over) {
            st = pg_result_fail(h, task, c, res, "the query", PG_FAIL_QUERY, err);
        }
        PQclear(res);
        res = NULL;
        if (st != ETL_OK)
            break;
        st = pg_next(h, task, c, &res, err);
    }
    if (st != ETL_OK) {
        PQclear(res);
        if (st != ETL_ECANCELLED && st != ETL_ECONNECT)
            pg_drain(c);
        goto out;
    }
    if (over) {
        st = h->fail(err, ETL_EQUERY, "Etl.QueryFailed", false,
                     "postgres: the query's result is larger than %s (%lld%s); sql.query is "
                     "for small results such as today's keys: use extract for large ones, or "
                     "raise %s", over,
                     (long long)(over[4] == 'r' ? o->max_rows : o->max_bytes),
                     over[4] == 'r' ? " rows" : " bytes of text", over);
        goto out;
    }
    if (!(result = h->json_new_object())) {
        st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
        goto out;
    }
    int set_rows = h->json_set(result, "rows", rows); /* steals rows either way */
    rows = NULL;
    if (set_rows != 0 || h->json_set(result, "count", h->json_new_int(count)) != 0) {
        st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
        goto out;
    }
    *out_result = result;
    result = NULL;
out:
    pg_unwatch(h, task);
    h->json_decref(rows);
    h->json_decref(result);
    rowset_free(&rs);
    pg_params_free(h, &p);
    return st;
}

/* ---------- exec ---------- */

etl_status pg_exec_run(const etl_host *h, etl_task *task, etl_conn *c, const pg_opts *o,
                       etl_json **out_result, etl_error *err)
{
    pg_params p = {0};
    etl_json *result = h->json_new_object(), *list = NULL;
    etl_status st = ETL_OK;
    int64_t affected = 0;
    if (!result)
        return h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
    pg_watch(h, task, c);
    if (o->sql) {
        if ((st = pg_params_bind(h, o->params, "params", &p, err)) != ETL_OK ||
            (st = pg_run(h, task, c, "the statement", o->sql, p.n, p.values, PG_FAIL_QUERY,
                         &affected, err)) != ETL_OK)
            goto out;
        if (h->json_set(result, "affected", h->json_new_int(affected)) != 0)
            st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
        goto out;
    }
    /* a list: one transaction; params is one list of values per statement */
    size_t n = h->json_size(o->sql_list);
    if (!(list = h->json_new_array())) {
        st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
        goto out;
    }
    if ((st = pg_run(h, task, c, "BEGIN", "BEGIN", 0, NULL, PG_FAIL_QUERY, NULL, err)) != ETL_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        char what[48];
        const etl_json *pi = o->params ? h->json_at(o->params, i) : NULL;
        snprintf(what, sizeof what, "params[%zu]", i);
        if ((st = pg_params_bind(h, pi, what, &p, err)) != ETL_OK)
            goto out;
        snprintf(what, sizeof what, "sql[%zu]", i);
        st = pg_run(h, task, c, what, h->json_string(h->json_at(o->sql_list, i), NULL), p.n,
                    p.values, PG_FAIL_QUERY, &affected, err);
        pg_params_free(h, &p);
        if (st != ETL_OK)
            goto out;
        if (h->json_append(list, h->json_new_int(affected)) != 0) {
            st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
            goto out;
        }
    }
    if ((st = pg_run(h, task, c, "COMMIT", "COMMIT", 0, NULL, PG_FAIL_QUERY, NULL, err)) != ETL_OK)
        goto out;
    st = h->json_set(result, "affected", list) == 0
             ? ETL_OK
             : h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
    list = NULL;
out:
    pg_abort(c, st);
    pg_unwatch(h, task);
    pg_params_free(h, &p);
    h->json_decref(list);
    if (st == ETL_OK)
        *out_result = result;
    else
        h->json_decref(result);
    return st;
}
