/* postgres.load: bulk-load a staged CSV file into a table in one transaction.
 *
 * The staged file is opened first (the host verifies its size and CRC32C against the
 * manifest), so a tampered file is refused before the warehouse is touched. Then:
 * BEGIN; (create the table); per mode nothing / DELETE the key's rows / count and
 * TRUNCATE / a temporary table for merge; COPY ... FROM STDIN (FORMAT csv) fed with the
 * staged bytes as they are (the staged format is PostgreSQL's CSV: NULL unquoted empty,
 * "" the empty string); compare the rows COPY reports with the manifest; (merge: INSERT
 * ... ON CONFLICT DO UPDATE); COMMIT; remove the staged file and its manifest unless
 * keep. Any failure rolls back, or leaves it to the host that drops a lost or cancelled
 * connection (which rolls back on the server). */
#include "pg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

/* staging.keep of the pipeline (a newer host service; absent means "not kept") */
static bool keep_staged(const etl_host *h, etl_task *task)
{
    return h->struct_size > offsetof(etl_host, task_keep_staged) && h->task_keep_staged &&
           h->task_keep_staged(task);
}

#define MERGE_TABLE "pg_temp.etlrun_merge" /* pg_temp: never a user's table of that name */

static const char *const mode_names[] = {"append", "replace", "truncate", "merge"};

/* ---------- names ---------- */

bool pg_split_table(const char *table, char *schema, char *name, size_t cap, const char **why)
{
    char *parts[2] = {schema, name};
    int n = 0;
    const char *p = table;
    schema[0] = name[0] = '\0';
    for (;;) {
        if (n == 2) {
            *why = "has more than two parts; write schema.table";
            return false;
        }
        char *out = parts[n];
        size_t o = 0;
        if (*p == '"') {
            for (p++;; p++) {
                if (!*p) {
                    *why = "has an unterminated quote";
                    return false;
                }
                if (*p == '"' && p[1] != '"')
                    break;
                if (*p == '"')
                    p++;
                if (o + 1 >= cap) {
                    *why = "is too long";
                    return false;
                }
                out[o++] = *p;
            }
            p++;
            if (*p && *p != '.') {
                *why = "has text after a closing quote";
                return false;
            }
        } else {
            while (*p && *p != '.') {
                if (o + 1 >= cap) {
                    *why = "is too long";
                    return false;
                }
                out[o++] = *p++;
            }
        }
        out[o] = '\0';
        if (!o) {
            *why = "has an empty part";
            return false;
        }
        n++;
        if (!*p)
            break;
        p++; /* the '.' */
    }
    if (n == 1) { /* no schema: the one part is the table */
        memcpy(name, schema, strlen(schema) + 1);
        schema[0] = '\0';
    }
    return true;
}

/* A growing SQL text. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* n bytes as they are (they may hold anything, NUL included). */
static void sb_raw(sbuf *b, const char *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

/* ---------- the load ---------- */

typedef struct load {
    const etl_host *h;
    etl_task *task;
    etl_conn *c;
    const pg_opts *o;
    size_t n_cols;
    const char **names;      /* target column names (borrowed) */
    const char **types;      /* manifest types (borrowed) */
    char **qnames;           /* quoted column names (PQfreemem) */
    char *qtable;            /* quoted schema.table (malloc) */
    char *qcols;             /* "(a, b, c)" (malloc) */
} load;

static etl_status nomem(const etl_host *h, etl_error *err)
{
    return h->fail(err, ETL_ENOMEM, "Etl.LoadFailed", false, "postgres: out of memory");
}

static etl_status invalid(const etl_host *h, etl_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static etl_status invalid(const etl_host *h, etl_error *err, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false, "postgres.load: %s", msg);
}

static char *quote(load *l, const char *ident)
{
    return PQescapeIdentifier(l->c->pg, ident, strlen(ident));
}

/* Column names, types and the quoted names, from the manifest and `columns`. */
static etl_status prepare(load *l, const etl_json *manifest, etl_error *err)
{
    const etl_host *h = l->h;
    const etl_json *mcols = h->json_get(manifest, "columns");
    l->n_cols = h->json_size(mcols);
    if (!l->n_cols)
        return h->fail(err, ETL_EINVAL, "Etl.IntegrityError", false,
                       "postgres.load: the manifest of %s lists no columns", l->o->file);
    if (l->o->columns && h->json_size(l->o->columns) != l->n_cols)
        return invalid(h, err, "'columns' names %zu columns but the staged file %s has %zu",
                       h->json_size(l->o->columns), l->o->file, l->n_cols);
    l->names = calloc(l->n_cols, sizeof *l->names);
    l->types = calloc(l->n_cols, sizeof *l->types);
    l->qnames = calloc(l->n_cols, sizeof *l->qnames);
    if (!l->names || !l->types || !l->qnames)
        return nomem(h, err);
    sbuf cols = {0};
    for (size_t i = 0; i < l->n_cols; i++) {
        const etl_json *mc = h->json_at(mcols, i);
        l->names[i] = h->json_string(l->o->columns ? h->json_at(l->o->columns, i)
                                                   : h->json_get(mc, "name"), NULL);
        l->types[i] = h->json_string(h->json_get(mc, "type"), NULL);
        if (!l->names[i] || !*l->names[i]) {
            free(cols.s);
            return h->fail(err, ETL_EINVAL, "Etl.IntegrityError", false,
                           "postgres.load: column %zu of %s has no name", i + 1, l->o->file);
        }
        if (!(l->qnames[i] = quote(l, l->names[i]))) {
            free(cols.s);
            return nomem(h, err);
        }
        sb_add(&cols, "%s%s", i ? ", " : "(", l->qnames[i]);
    }
    sb_add(&cols, ")");
    if (cols.oom) {
        free(cols.s);
        return nomem(h, err);
    }
    l->qcols = cols.s;
    char schema[256], name[256];
    const char *why = NULL;
    if (!pg_split_table(l->o->table, schema, name, sizeof schema, &why))
        return invalid(h, err, "'table' %s", why);
    char *qs = schema[0] ? quote(l, schema) : NULL, *qn = quote(l, name);
    if ((schema[0] && !qs) || !qn) {
        PQfreemem(qs);
        PQfreemem(qn);
        return nomem(h, err);
    }
    sbuf t = {0};
    sb_add(&t, "%s%s%s", qs ? qs : "", qs ? "." : "", qn);
    PQfreemem(qs);
    PQfreemem(qn);
    if (t.oom) {
        free(t.s);
        return nomem(h, err);
    }
    l->qtable = t.s;
    return ETL_OK;
}

static bool is_pk(load *l, const char *name)
{
    const etl_host *h = l->h;
    for (size_t i = 0; l->o->primary_key && i < h->json_size(l->o->primary_key); i++)
        if (strcmp(h->json_string(h->json_at(l->o->primary_key, i), NULL), name) == 0)
            return true;
    return false;
}

/* A one-row, one-column query's value as an integer (count, existence). */
static etl_status scalar(load *l, const char *what, const char *sql, int n,
                         const char *const *vals, int64_t *out, etl_error *err)
{
    PGresult *res = NULL;
    etl_status st = pg_send(l->h, l->task, l->c, sql, n, vals, false, &res, err);
    if (st != ETL_OK)
        return st;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        st = pg_result_fail(l->h, l->task, l->c, res, what, PG_FAIL_QUERY, err);
    } else {
        const char *v = PQgetvalue(res, 0, 0);
        *out = v[0] == 't' ? 1 : v[0] == 'f' ? 0 : strtoll(v, NULL, 10);
    }
    PQclear(res);
    pg_drain(l->c);
    return st;
}

/* CREATE TABLE in a savepoint: *out_exists is set instead of failing when another
 * transaction created the table meanwhile (42P07; the failed CREATE also refreshed this
 * session's catalog cache, which the first check may have left stale). */
static etl_status create_table(load *l, const char *ddl, bool *out_exists, etl_error *err)
{
    PGresult *res = NULL;
    *out_exists = false;
    etl_status st = pg_run(l->h, l->task, l->c, "SAVEPOINT", "SAVEPOINT etlrun_create", 0, NULL,
                           PG_FAIL_QUERY, NULL, err);
    if (st == ETL_OK)
        st = pg_send(l->h, l->task, l->c, ddl, 0, NULL, false, &res, err);
    if (st != ETL_OK)
        return st;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        pg_drain(l->c);
    } else if (state && strcmp(state, "42P07") == 0) {
        pg_drain(l->c);
        *out_exists = true;
        st = pg_run(l->h, l->task, l->c, "ROLLBACK TO SAVEPOINT", "ROLLBACK TO SAVEPOINT "
                    "etlrun_create", 0, NULL, PG_FAIL_QUERY, NULL, err);
    } else {
        st = pg_result_fail(l->h, l->task, l->c, res, "CREATE TABLE", PG_FAIL_QUERY, err);
        pg_drain(l->c);
    }
    PQclear(res);
    return st;
}

/* create: true — create the table when missing. Concurrent loads of one new table (a
 * Map over keys) serialise on an advisory lock held until their transaction ends, so
 * one creates it and the others find it once it is committed; once it exists nobody
 * takes the lock. */
static etl_status ensure_table(load *l, etl_error *err)
{
    const etl_host *h = l->h;
    const char *vals[] = {l->qtable};
    int64_t exists = 0, ignored;
    bool created_meanwhile = false;
    etl_status st = scalar(l, "checking that the table exists",
                           "SELECT pg_catalog.to_regclass($1) IS NOT NULL", 1, vals, &exists, err);
    if (st != ETL_OK || exists)
        return st;
    if ((st = scalar(l, "locking the table's creation",
                     "SELECT 1 FROM pg_catalog.pg_advisory_xact_lock("
                     "pg_catalog.hashtext('etlrun create ' || $1))", 1, vals, &ignored, err)) != ETL_OK)
        return st;
    sbuf sql = {0};
    sb_add(&sql, "CREATE TABLE %s (", l->qtable);
    for (size_t i = 0; i < l->n_cols; i++) {
        char type[160];
        pg_map_type(l->types[i], type, sizeof type);
        sb_add(&sql, "%s%s %s", i ? ", " : "", l->qnames[i], type);
    }
    if (l->o->mode == PG_MERGE) { /* ON CONFLICT needs the key to be unique */
        sb_add(&sql, ", PRIMARY KEY (");
        for (size_t i = 0; i < h->json_size(l->o->primary_key); i++) {
            char *q = quote(l, h->json_string(h->json_at(l->o->primary_key, i), NULL));
            sb_add(&sql, "%s%s", i ? ", " : "", q ? q : "");
            if (!q)
                sql.oom = true;
            PQfreemem(q);
        }
        sb_add(&sql, ")");
    }
    sb_add(&sql, ")");
    st = sql.oom ? nomem(h, err) : create_table(l, sql.s, &created_meanwhile, err);
    if (st == ETL_OK && !created_meanwhile && l->o->mode == PG_REPLACE) {
        /* every later load deletes by key */
        char *qk = quote(l, l->o->key_column);
        sql.len = 0;
        sb_add(&sql, "CREATE INDEX ON %s (%s)", l->qtable, qk ? qk : "");
        st = !qk || sql.oom ? nomem(h, err)
                            : pg_run(h, l->task, l->c, "CREATE INDEX", sql.s, 0, NULL,
                                     PG_FAIL_QUERY, NULL, err);
        PQfreemem(qk);
    }
    if (st == ETL_OK && !created_meanwhile) {
        st = pg_run(h, l->task, l->c, "RELEASE SAVEPOINT", "RELEASE SAVEPOINT etlrun_create", 0,
                    NULL, PG_FAIL_QUERY, NULL, err);
        if (st == ETL_OK)
            h->log(l->task, ETL_LOG_INFO, "postgres: created table %s on %s", l->o->table,
                   l->c->label);
    }
    free(sql.s);
    return st;
}

/* The rows removed before the load, per mode. */
static etl_status clear(load *l, int64_t *deleted, etl_error *err)
{
    const etl_host *h = l->h;
    sbuf sql = {0};
    etl_status st = ETL_OK;
    *deleted = 0;
    if (l->o->mode == PG_REPLACE) {
        char *qk = quote(l, l->o->key_column);
        etl_json *arr = h->json_new_array();
        pg_params p = {0};
        bool null_key = h->json_type(l->o->key) == ETL_JSON_NULL;
        if (!qk || !arr || h->json_append(arr, h->json_incref((etl_json *)l->o->key)) != 0) {
            st = nomem(h, err);
        } else if ((st = pg_params_bind(h, arr, "key", &p, err)) == ETL_OK) {
            sb_add(&sql, "DELETE FROM %s WHERE %s %s", l->qtable, qk, null_key ? "IS NULL" : "= $1");
            st = sql.oom ? nomem(h, err)
                         : pg_run(h, l->task, l->c, "deleting the key's rows", sql.s,
                                  null_key ? 0 : 1, p.values, PG_FAIL_LOAD, deleted, err);
        }
        pg_params_free(h, &p);
        h->json_decref(arr);
        PQfreemem(qk);
    } else if (l->o->mode == PG_TRUNCATE) {
        /* TRUNCATE says nothing about what it removed: count first, under its lock */
        sb_add(&sql, "LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", l->qtable);
        if (sql.oom || (st = pg_run(h, l->task, l->c, "locking the table", sql.s, 0, NULL,
                                    PG_FAIL_QUERY, NULL, err)) != ETL_OK)
            goto out;
        sql.len = 0;
        sb_add(&sql, "SELECT count(*) FROM %s", l->qtable);
        if (sql.oom || (st = scalar(l, "counting the table's rows", sql.s, 0, NULL, deleted,
                                    err)) != ETL_OK)
            goto out;
        sql.len = 0;
        sb_add(&sql, "TRUNCATE %s", l->qtable);
        st = sql.oom ? nomem(h, err)
                     : pg_run(h, l->task, l->c, "TRUNCATE", sql.s, 0, NULL, PG_FAIL_LOAD, NULL, err);
    } else if (l->o->mode == PG_MERGE) {
        sb_add(&sql, "CREATE TEMP TABLE " MERGE_TABLE " (LIKE %s INCLUDING DEFAULTS) "
               "ON COMMIT DROP", l->qtable);
        st = sql.oom ? nomem(h, err)
                     : pg_run(h, l->task, l->c, "creating the merge table", sql.s, 0, NULL,
                              PG_FAIL_QUERY, NULL, err);
    }
out:
    if (st == ETL_OK && sql.oom)
        st = nomem(h, err);
    free(sql.s);
    return st;
}

/* The next records of a one-column file, every value quoted, appended to b until it
 * holds PG_COPY_CHUNK bytes. In CSV mode COPY takes a line holding only \. as the end
 * of the data, and the staged CSV writes the value \. unquoted; with two columns or
 * more a record always holds a comma, so only one-column files take this slower path.
 * Returns the bytes in b, 0 at the end, -1 on error. */
static long quoted_records(load *l, etl_stage_reader *r, sbuf *b, etl_error *err)
{
    const etl_host *h = l->h;
    b->len = 0;
    while (b->len < PG_COPY_CHUNK) {
        const char *const *fields;
        const size_t *lens;
        size_t n = 0;
        int got = h->stage_read_row(r, &fields, &lens, &n, err);
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        if (n != 1) {
            h->fail(err, ETL_EINVAL, "Etl.IntegrityError", false,
                    "postgres.load: a record of %s has %zu fields, its manifest 1 column",
                    l->o->file, n);
            return -1;
        }
        if (!fields[0]) {
            sb_raw(b, "\n", 1);
            continue;
        }
        sb_raw(b, "\"", 1);
        const char *p = fields[0], *end = p + lens[0], *q;
        while ((q = memchr(p, '"', (size_t)(end - p))) != NULL) {
            sb_raw(b, p, (size_t)(q - p + 1));
            sb_raw(b, "\"", 1); /* doubled */
            p = q + 1;
        }
        sb_raw(b, p, (size_t)(end - p));
        sb_raw(b, "\"\n", 2);
    }
    if (b->oom) {
        nomem(h, err);
        return -1;
    }
    return (long)b->len;
}

/* COPY the staged records into target; *out_rows gets the rows COPY loaded. */
static etl_status copy_in(load *l, etl_stage_reader *r, const char *target, int64_t *out_rows,
                          etl_error *err)
{
    const etl_host *h = l->h;
    PGconn *pg = l->c->pg;
    sbuf sql = {0}, one = {0}; /* one: the records of a one-column file, quoted */
    PGresult *res = NULL;
    char *buf = NULL;
    etl_status st;
    sb_add(&sql, "COPY %s %s FROM STDIN WITH (FORMAT csv, HEADER false)", target, l->qcols);
    if (sql.oom || !(buf = malloc(PG_COPY_CHUNK))) {
        st = nomem(h, err);
        goto out;
    }
    if ((st = pg_send(h, l->task, l->c, sql.s, 0, NULL, false, &res, err)) != ETL_OK)
        goto out;
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        st = pg_result_fail(h, l->task, l->c, res, "the COPY", PG_FAIL_LOAD, err);
        PQclear(res);
        res = NULL;
        pg_drain(l->c);
        goto out;
    }
    PQclear(res);
    res = NULL;
    const char *abandon = NULL; /* why the COPY is ended with an error */
    for (;;) {
        if (h->cancelled(l->task)) {
            abandon = "cancelled";
            st = pg_cancelled(h, err, "the load");
            break;
        }
        const char *data = buf;
        long n;
        if (l->n_cols == 1) {
            n = quoted_records(l, r, &one, err);
            data = one.s;
        } else {
            n = h->stage_read_bytes(r, buf, PG_COPY_CHUNK, err);
        }
        if (n < 0) {
            abandon = "reading the staged file failed";
            st = err->status != ETL_OK ? err->status : ETL_EIO;
            break;
        }
        if (n == 0)
            break;
        if (PQputCopyData(pg, data, (int)n) != 1)
            break; /* the server ended the COPY (an error) or the connection is gone */
        h->progress(l->task, 0, (uint64_t)n);
    }
    /* end the COPY (with an error when abandoned) and wait for the server's verdict;
     * after a cancel, wait_ready bounds the wait */
    PQputCopyEnd(pg, abandon);
    etl_error copy_err;
    etl_status cst = pg_next(h, l->task, l->c, &res, &copy_err);
    if (cst == ETL_OK && !res)
        cst = pg_result_fail(h, l->task, l->c, NULL, "the COPY", PG_FAIL_LOAD, &copy_err);
    else if (cst == ETL_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
        cst = pg_result_fail(h, l->task, l->c, res, "the COPY", PG_FAIL_LOAD, &copy_err);
    if (cst == ETL_OK) {
        const char *t = PQcmdTuples(res);
        *out_rows = t && *t ? strtoll(t, NULL, 10) : 0;
    }
    if (cst != ETL_ECANCELLED && cst != ETL_ECONNECT)
        pg_drain(l->c);
    if (!abandon) {
        st = cst;
        if (cst != ETL_OK)
            *err = copy_err;
    }
out:
    PQclear(res);
    free(buf);
    free(sql.s);
    free(one.s);
    return st;
}

static etl_status merge(load *l, int64_t *affected, etl_error *err)
{
    const etl_host *h = l->h;
    sbuf sql = {0};
    sb_add(&sql, "INSERT INTO %s %s SELECT ", l->qtable, l->qcols);
    for (size_t i = 0; i < l->n_cols; i++)
        sb_add(&sql, "%s%s", i ? ", " : "", l->qnames[i]);
    sb_add(&sql, " FROM " MERGE_TABLE " ON CONFLICT (");
    for (size_t i = 0, k = 0; i < h->json_size(l->o->primary_key); i++) {
        char *q = quote(l, h->json_string(h->json_at(l->o->primary_key, i), NULL));
        sb_add(&sql, "%s%s", k++ ? ", " : "", q ? q : "");
        if (!q)
            sql.oom = true;
        PQfreemem(q);
    }
    sb_add(&sql, ") DO ");
    size_t n_set = 0;
    for (size_t i = 0; i < l->n_cols; i++) {
        if (is_pk(l, l->names[i]))
            continue;
        sb_add(&sql, "%s%s = EXCLUDED.%s", n_set++ ? ", " : "UPDATE SET ", l->qnames[i],
               l->qnames[i]);
    }
    if (!n_set)
        sb_add(&sql, "NOTHING"); /* every column is the key: nothing to update */
    etl_status st = sql.oom ? nomem(h, err)
                            : pg_run(h, l->task, l->c, "the merge (INSERT ... ON CONFLICT)",
                                     sql.s, 0, NULL, PG_FAIL_LOAD, affected, err);
    free(sql.s);
    return st;
}

static etl_json *result_of(load *l, int64_t rows, int64_t bytes, int64_t deleted)
{
    const etl_host *h = l->h;
    etl_json *r = h->json_new_object();
    if (!r)
        return NULL;
    if (h->json_set(r, "table", h->json_new_string(l->o->table, strlen(l->o->table))) ||
        h->json_set(r, "mode", h->json_new_string(mode_names[l->o->mode],
                                                   strlen(mode_names[l->o->mode]))) ||
        h->json_set(r, "rows", h->json_new_int(rows)) ||
        h->json_set(r, "bytes", h->json_new_int(bytes)) ||
        h->json_set(r, "deleted", h->json_new_int(deleted))) {
        h->json_decref(r);
        return NULL;
    }
    return r;
}

etl_status pg_load_run(const etl_host *h, etl_task *task, etl_conn *c, const pg_opts *o,
                       etl_json **out_result, etl_error *err)
{
    load l = {.h = h, .task = task, .c = c, .o = o};
    int64_t rows = -1, deleted = 0, m_rows = -1, m_bytes = -1, merged = 0;
    etl_status st;
    /* verified against its manifest before anything touches the warehouse */
    etl_stage_reader *r = h->stage_read_open(task, o->file, err);
    if (!r)
        return err->status != ETL_OK ? err->status : ETL_EIO;
    const etl_json *manifest = h->stage_read_manifest(r);
    if (!h->json_int(h->json_get(manifest, "rows"), &m_rows) ||
        !h->json_int(h->json_get(manifest, "bytes"), &m_bytes)) {
        st = h->fail(err, ETL_EINVAL, "Etl.IntegrityError", false,
                     "postgres.load: the manifest of %s has no row or byte count", o->file);
        goto out;
    }
    if ((st = prepare(&l, manifest, err)) != ETL_OK)
        goto out;
    if (o->mode == PG_MERGE)
        for (size_t i = 0; i < h->json_size(o->primary_key); i++) {
            const char *k = h->json_string(h->json_at(o->primary_key, i), NULL);
            size_t j = 0;
            while (j < l.n_cols && strcmp(l.names[j], k) != 0)
                j++;
            if (j == l.n_cols) {
                st = invalid(h, err, "primary_key column '%s' is not a column of the staged "
                             "file %s", k, o->file);
                goto out;
            }
        }
    pg_watch(h, task, c);
    if ((st = pg_run(h, task, c, "BEGIN", "BEGIN", 0, NULL, PG_FAIL_QUERY, NULL, err)) != ETL_OK ||
        (o->create && (st = ensure_table(&l, err)) != ETL_OK) ||
        (st = clear(&l, &deleted, err)) != ETL_OK ||
        (st = copy_in(&l, r, o->mode == PG_MERGE ? MERGE_TABLE : l.qtable, &rows, err)) != ETL_OK)
        goto out;
    if (rows != m_rows) {
        st = h->fail(err, ETL_EINVAL, "Etl.IntegrityError", false,
                     "postgres.load: COPY loaded %lld rows from %s but its manifest says %lld; "
                     "rolled back, %s is unchanged", (long long)rows, o->file,
                     (long long)m_rows, o->table);
        goto out;
    }
    if (o->mode == PG_MERGE && (st = merge(&l, &merged, err)) != ETL_OK)
        goto out;
    if ((st = pg_run(h, task, c, "COMMIT", "COMMIT", 0, NULL, PG_FAIL_LOAD, NULL, err)) != ETL_OK)
        goto out;
    h->progress(task, (uint64_t)rows, 0);
    h->stage_read_close(r);
    r = NULL;
    if (!o->keep && !keep_staged(h, task)) {
        char manifest_path[4096];
        snprintf(manifest_path, sizeof manifest_path, "%s.manifest.json", o->file);
        if (unlink(o->file) != 0 || unlink(manifest_path) != 0)
            h->log(task, ETL_LOG_WARN, "postgres.load: loaded, but cannot remove the staged "
                   "file %s or its manifest", o->file);
    }
    if (!(*out_result = result_of(&l, rows, m_bytes, deleted)))
        st = nomem(h, err);
out:
    pg_abort(c, st);
    pg_unwatch(h, task);
    if (r)
        h->stage_read_close(r);
    for (size_t i = 0; l.qnames && i < l.n_cols; i++)
        PQfreemem(l.qnames[i]);
    free(l.qnames);
    free(l.names);
    free(l.types);
    free(l.qtable);
    free(l.qcols);
    return st;
}
