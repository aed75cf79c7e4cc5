/* postgres.load: bulk-load a staged CSV file into a table in one transaction, with its
 * row in the load ledger.
 *
 * The staged file is opened first (the host verifies its size and CRC32C against the
 * manifest), so a tampered file is refused before the warehouse is touched. Then:
 * (the ledger table, created once in its own short transaction); BEGIN; look the
 * (pipeline, run id, state, key) up in the ledger and stop there when this run already
 * committed it; (create the table); per mode nothing / DELETE the key's rows / count
 * and TRUNCATE / a temporary table for merge; COPY ... FROM STDIN (FORMAT csv) fed with
 * the staged bytes as they are (the staged format is PostgreSQL's CSV: NULL unquoted
 * empty, "" the empty string); compare the rows COPY reports with the manifest; (merge:
 * INSERT ... ON CONFLICT DO UPDATE); INSERT the ledger row; COMMIT; remove the staged
 * file and its manifest unless keep. Any failure rolls back, or leaves it to the host
 * that drops a lost or cancelled connection (which rolls back on the server). */
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
#define SKIPPED "already loaded in this run (ledger)"

/* Widths of the ledger's identity, in bytes: the same as mysql's columns, so a pipeline
 * moves between warehouses unchanged (and a btree entry stays far below its limit). */
#define LEDGER_MAX_PIPELINE 255
#define LEDGER_MAX_RUN_ID 128
#define LEDGER_MAX_STATE 255
#define LEDGER_MAX_KEY 2048

/* A member of etl_host that the host's struct_size covers (an older host lacks it). */
#define HOST_HAS(h, m) ((h)->struct_size >= offsetof(etl_host, m) + sizeof((h)->m) && (h)->m)

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
    bool ledger;             /* this load is recorded (see ledger_use) */
    const char *id[5];       /* pipeline, run id, state, key, path (borrowed from the host) */
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

/* "schema"."table" for a table name as written (see pg_split_table), malloc'd; NULL
 * with *why set when the name is malformed, or with *why NULL when out of memory. */
static char *quote_table(load *l, const char *table, const char **why)
{
    char schema[256], name[256];
    *why = NULL;
    if (!pg_split_table(table, schema, name, sizeof schema, why))
        return NULL;
    char *qs = schema[0] ? quote(l, schema) : NULL, *qn = quote(l, name);
    sbuf t = {0};
    if ((schema[0] && !qs) || !qn)
        t.oom = true;
    sb_add(&t, "%s%s%s", qs ? qs : "", qs ? "." : "", qn);
    PQfreemem(qs);
    PQfreemem(qn);
    if (t.oom) {
        free(t.s);
        return NULL;
    }
    return t.s;
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
    const char *why = NULL;
    if (!(l->qtable = quote_table(l, l->o->table, &why)))
        return why ? invalid(h, err, "'table' %s", why) : nomem(h, err);
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
 * transaction created the table meanwhile (42P07, or 23505 from pg_type; the failed
 * CREATE also refreshed this session's catalog cache, which the first check may have
 * left stale). The savepoint stays open when the table was created: release it. */
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
    } else if (state && (strcmp(state, "42P07") == 0 || strcmp(state, "23505") == 0)) {
        /* 23505: a racing CREATE that got as far as pg_type's unique index */
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

/* ---------- the load ledger ----------
 *
 * One row per committed load, written in the load's transaction: (pipeline, run id,
 * state, path, key) is UNIQUE (path: the Map item or Parallel branch the load ran in),
 * so a load is committed at most once per run. A load first looks
 * its identity up and, when this run already committed it (etlrun died after the COMMIT
 * and before its checkpoint, or the COMMIT's answer was lost and the load retried),
 * loads nothing. Two loads of one identity at once: the second's INSERT waits for the
 * first's transaction and fails with 23505 when it commits; the second then rolls back
 * and reports the load as skipped, like the lookup would have. */

/* Whether this load is recorded, and its identity. The ledger needs the run's id: with
 * a host too old to give it, or a task outside a run (run id ""), loads go unrecorded. */
static etl_status ledger_use(load *l, etl_error *err)
{
    const etl_host *h = l->h;
    l->ledger = false;
    if (!l->c->ledger)
        return ETL_OK;
    const char *run_id = HOST_HAS(h, task_run_id) ? h->task_run_id(l->task) : NULL;
    const char *pipeline = HOST_HAS(h, task_pipeline) ? h->task_pipeline(l->task) : NULL;
    if (!run_id || !*run_id) {
        h->log(l->task, ETL_LOG_DEBUG, "postgres.load: the host gives no run id; this load "
               "is not recorded in the load ledger");
        return ETL_OK;
    }
    const char *state = h->task_state(l->task), *key = h->task_key(l->task);
    l->id[0] = pipeline ? pipeline : "";
    l->id[1] = run_id;
    l->id[2] = state ? state : "";
    l->id[3] = key ? key : "";
    /* the place in the execution: Map items and Parallel branches stay distinct even
     * when their keys repeat or are absent */
    l->id[4] = HOST_HAS(h, task_path) && h->task_path(l->task) ? h->task_path(l->task) : "";
    static const char *const what[] = {"pipeline name", "run id", "state name", "key"};
    static const size_t max[] = {LEDGER_MAX_PIPELINE, LEDGER_MAX_RUN_ID, LEDGER_MAX_STATE,
                                 LEDGER_MAX_KEY};
    for (int i = 0; i < 4; i++)
        if (strlen(l->id[i]) > max[i])
            return invalid(h, err, "the load ledger holds a %s of at most %zu bytes, and this "
                           "one has %zu; shorten it, or set ledger: false on the connection",
                           what[i], max[i], strlen(l->id[i]));
    if (!l->c->ledger_q) {
        const char *why = NULL;
        l->c->ledger_q = quote_table(l, l->c->ledger_table ? l->c->ledger_table
                                                           : PG_LEDGER_DEFAULT, &why);
        if (!l->c->ledger_q) /* a bad name is refused by the settings checks */
            return why ? invalid(h, err, "ledger_table %s", why) : nomem(h, err);
    }
    l->ledger = true;
    return ETL_OK;
}

/* Notices during the ledger's CREATE TABLE IF NOT EXISTS: 42P07 says it already existed
 * (created by another load since the check), so this load did not create it. */
static void exists_notice(void *arg, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state && strcmp(state, "42P07") == 0)
        *(bool *)arg = true;
}

/* Create the ledger table when missing, in a short transaction of its own (before the
 * load's: its lock must not be held for a whole load). Concurrent creators serialise
 * on the advisory lock of create: true; CREATE TABLE IF NOT EXISTS in a savepoint
 * covers a creator that is not etlrun. Once seen, a connection does not look again. */
static etl_status ledger_ensure(load *l, etl_error *err)
{
    const etl_host *h = l->h;
    etl_conn *c = l->c;
    if (!l->ledger || c->ledger_ready)
        return ETL_OK;
    const char *vals[] = {c->ledger_q};
    int64_t exists = 0, ignored;
    bool meanwhile = false, existed = false;
    sbuf ddl = {0};
    etl_status st = pg_run(h, l->task, c, "BEGIN", "BEGIN", 0, NULL, PG_FAIL_QUERY, NULL, err);
    if (st == ETL_OK)
        st = scalar(l, "checking that the load ledger exists",
                    "SELECT pg_catalog.to_regclass($1) IS NOT NULL", 1, vals, &exists, err);
    if (st == ETL_OK && !exists) {
        sb_add(&ddl, "CREATE TABLE IF NOT EXISTS %s (pipeline text NOT NULL, run_id text NOT "
               "NULL, state text NOT NULL, key text NOT NULL, target_table text NOT NULL, "
               "mode text NOT NULL, rows bigint NOT NULL, bytes bigint NOT NULL, crc32c text, "
               "loaded_at timestamptz NOT NULL DEFAULT pg_catalog.now(), "
               "path text NOT NULL DEFAULT '', "
               "UNIQUE (pipeline, run_id, state, path, key))", c->ledger_q);
        st = scalar(l, "locking the load ledger's creation",
                    "SELECT 1 FROM pg_catalog.pg_advisory_xact_lock("
                    "pg_catalog.hashtext('etlrun create ' || $1))", 1, vals, &ignored, err);
        if (st == ETL_OK && ddl.oom)
            st = nomem(h, err);
        if (st == ETL_OK) {
            /* conn.c's receiver (which logs WARNINGs) takes the host table as its arg */
            PQnoticeReceiver prev = PQsetNoticeReceiver(c->pg, exists_notice, &existed);
            st = create_table(l, ddl.s, &meanwhile, err);
            PQsetNoticeReceiver(c->pg, prev, (void *)h);
        }
        if (st == ETL_OK && !meanwhile)
            st = pg_run(h, l->task, c, "RELEASE SAVEPOINT", "RELEASE SAVEPOINT etlrun_create",
                        0, NULL, PG_FAIL_QUERY, NULL, err);
    }
    if (st == ETL_OK)
        st = pg_run(h, l->task, c, "COMMIT", "COMMIT", 0, NULL, PG_FAIL_QUERY, NULL, err);
    if (st == ETL_OK && !exists && !meanwhile && !existed)
        h->log(l->task, ETL_LOG_INFO, "postgres: created the load ledger %s on %s",
               c->ledger_table ? c->ledger_table : PG_LEDGER_DEFAULT, c->label);
    free(ddl.s);
    c->ledger_ready = st == ETL_OK;
    return st;
}

/* This load's identity in the ledger: *out_found, and the rows and bytes recorded. */
static etl_status ledger_find(load *l, bool *out_found, int64_t *out_rows, int64_t *out_bytes,
                              etl_error *err)
{
    const etl_host *h = l->h;
    sbuf sql = {0};
    PGresult *res = NULL;
    *out_found = false;
    sb_add(&sql, "SELECT rows, bytes FROM %s WHERE pipeline = $1 AND run_id = $2 AND "
           "state = $3 AND key = $4 AND path = $5", l->c->ledger_q);
    etl_status st = sql.oom ? nomem(h, err)
                            : pg_send(h, l->task, l->c, sql.s, 5, l->id, false, &res, err);
    if (st == ETL_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        st = pg_result_fail(h, l->task, l->c, res, "looking the load up in the load ledger",
                            PG_FAIL_QUERY, err);
        l->c->ledger_ready = false; /* dropped meanwhile? the next load creates it again */
    } else if (st == ETL_OK && PQntuples(res) > 0) {
        *out_found = true;
        *out_rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        *out_bytes = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    }
    PQclear(res);
    if (st != ETL_ECANCELLED && st != ETL_ECONNECT)
        pg_drain(l->c);
    free(sql.s);
    return st;
}

/* The ledger row of this load, in its transaction. *out_dup: the identity is already
 * committed (a concurrent load of it won); the transaction is then aborted. */
static etl_status ledger_record(load *l, int64_t rows, int64_t bytes, const char *crc,
                                bool *out_dup, etl_error *err)
{
    const etl_host *h = l->h;
    char r[24], b[24];
    snprintf(r, sizeof r, "%lld", (long long)rows);
    snprintf(b, sizeof b, "%lld", (long long)bytes);
    const char *vals[] = {l->id[0], l->id[1], l->id[2], l->id[3], l->o->table,
                          mode_names[l->o->mode], r, b, crc, l->id[4]};
    sbuf sql = {0};
    PGresult *res = NULL;
    *out_dup = false;
    sb_add(&sql, "INSERT INTO %s (pipeline, run_id, state, key, target_table, mode, rows, "
           "bytes, crc32c, path, loaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
           "pg_catalog.clock_timestamp())", l->c->ledger_q);
    etl_status st = sql.oom ? nomem(h, err)
                            : pg_send(h, l->task, l->c, sql.s, 10, vals, false, &res, err);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (st == ETL_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
        if (state && strcmp(state, "23505") == 0 && !h->cancelled(l->task)) {
            *out_dup = true;
        } else {
            st = pg_result_fail(h, l->task, l->c, res, "recording the load in the load ledger",
                                PG_FAIL_QUERY, err);
            l->c->ledger_ready = false;
        }
    }
    PQclear(res);
    if (st != ETL_ECANCELLED && st != ETL_ECONNECT)
        pg_drain(l->c);
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

/* The staged file and its manifest, after a load that needs them no more, unless kept
 * (the load's keep, or the pipeline's staging.keep). */
static void remove_staged(const etl_host *h, etl_task *task, const pg_opts *o)
{
    if (o->keep || keep_staged(h, task))
        return;
    char manifest_path[4096];
    snprintf(manifest_path, sizeof manifest_path, "%s.manifest.json", o->file);
    if (unlink(o->file) != 0 || unlink(manifest_path) != 0)
        h->log(task, ETL_LOG_WARN, "postgres.load: cannot remove the staged file %s or its "
               "manifest", o->file);
}

etl_status pg_load_run(const etl_host *h, etl_task *task, etl_conn *c, const pg_opts *o,
                       etl_json **out_result, etl_error *err)
{
    load l = {.h = h, .task = task, .c = c, .o = o};
    int64_t rows = -1, deleted = 0, m_rows = -1, m_bytes = -1, merged = 0;
    int64_t done_rows = 0, done_bytes = 0; /* as the ledger recorded them */
    bool done = false, dup = false;
    etl_status st;
    /* verified against its manifest before anything touches the warehouse */
    etl_stage_reader *r = h->stage_read_open(task, o->file, err);
    if (!r)
        return err->status != ETL_OK ? err->status : ETL_EIO;
    const etl_json *manifest = h->stage_read_manifest(r);
    const char *crc = h->json_string(h->json_get(manifest, "crc32c"), NULL);
    if (!h->json_int(h->json_get(manifest, "rows"), &m_rows) ||
        !h->json_int(h->json_get(manifest, "bytes"), &m_bytes)) {
        st = h->fail(err, ETL_EINVAL, "Etl.IntegrityError", false,
                     "postgres.load: the manifest of %s has no row or byte count", o->file);
        goto out;
    }
    if ((st = prepare(&l, manifest, err)) != ETL_OK || (st = ledger_use(&l, err)) != ETL_OK)
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
    if ((st = ledger_ensure(&l, err)) != ETL_OK ||
        (st = pg_run(h, task, c, "BEGIN", "BEGIN", 0, NULL, PG_FAIL_QUERY, NULL, err)) != ETL_OK ||
        (l.ledger && (st = ledger_find(&l, &done, &done_rows, &done_bytes, err)) != ETL_OK))
        goto out;
    if (done) /* committed by this run already: nothing is touched */
        goto skip;
    if ((o->create && (st = ensure_table(&l, err)) != ETL_OK) ||
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
    if (l.ledger && (st = ledger_record(&l, rows, m_bytes, crc ? crc : "", &dup, err)) != ETL_OK)
        goto out;
    if (dup) {
        /* a concurrent load of this identity committed first: what it recorded counts */
        if ((st = pg_run(h, task, c, "ROLLBACK", "ROLLBACK", 0, NULL, PG_FAIL_QUERY, NULL,
                         err)) != ETL_OK ||
            (st = ledger_find(&l, &done, &done_rows, &done_bytes, err)) != ETL_OK)
            goto out;
        if (!done) {
            done_rows = rows;
            done_bytes = m_bytes;
        }
        goto skip;
    }
    if ((st = pg_run(h, task, c, "COMMIT", "COMMIT", 0, NULL, PG_FAIL_LOAD, NULL, err)) != ETL_OK)
        goto out;
    h->progress(task, (uint64_t)rows, 0);
    h->stage_read_close(r);
    r = NULL;
    remove_staged(h, task, o);
    if (!(*out_result = result_of(&l, rows, m_bytes, deleted)))
        st = nomem(h, err);
    goto out;
skip:
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE &&
        (st = pg_run(h, task, c, "ROLLBACK", "ROLLBACK", 0, NULL, PG_FAIL_QUERY, NULL,
                     err)) != ETL_OK)
        goto out;
    h->log(task, ETL_LOG_INFO, "postgres.load: %s was committed into %s by this run already "
           "(load ledger: %lld rows, %lld bytes); not loaded again", o->file, o->table,
           (long long)done_rows, (long long)done_bytes);
    h->stage_read_close(r);
    r = NULL;
    remove_staged(h, task, o);
    etl_json *res = result_of(&l, done_rows, done_bytes, 0);
    if (!res || h->json_set(res, "skipped", h->json_new_string(SKIPPED, strlen(SKIPPED))) != 0) {
        if (res)
            h->json_decref(res);
        st = nomem(h, err);
    } else {
        *out_result = res;
    }
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
