/* etlrun ledger: the recent loads recorded in the load ledgers of a pipeline's postgres
 * and mysql connections (docs/connectors/sql.md "Load ledger"). Each ledger is read with
 * its connector's own `query` action through the host services, as a Task would (so
 * the command needs nothing of libpq or libmariadb); the rows of all connections are
 * merged, newest first. */
#include "ledger_cmd.h"

#include <etlrun/connector.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "plugins.h"

#define DEFAULT_TABLE "etlrun_load_ledger" /* as both connectors name it */

typedef enum dialect { D_POSTGRES, D_MYSQL } dialect;

/* ---------- table names, quoted as the connectors quote them ---------- */

/* postgres (pg_split_table): up to two parts split on an unquoted '.'; a "quoted" part
 * stays as written, a bare part is quoted exactly as written (case kept). */
static bool quote_pg(const char *t, char *out, size_t cap)
{
    size_t o = 0;
    const char *p = t;
    for (int part = 0; part < 2; part++) {
        if (*p == '"') {
            const char *s = p++;
            while (*p && !(*p == '"' && p[1] != '"'))
                p += *p == '"' ? 2 : 1;
            if (!*p++)
                return false;
            if ((size_t)(p - s) + o + 2 > cap)
                return false;
            memcpy(out + o, s, (size_t)(p - s));
            o += (size_t)(p - s);
        } else {
            if (*p == '.' || !*p || o + 3 > cap)
                return false;
            out[o++] = '"';
            for (; *p && *p != '.'; p++) {
                if (o + 4 > cap)
                    return false;
                if (*p == '"')
                    out[o++] = '"';
                out[o++] = *p;
            }
            out[o++] = '"';
        }
        if (*p != '.')
            break;
        out[o++] = *p++;
    }
    out[o] = '\0';
    return *p == '\0';
}

/* mysql (myc_quote_ident, dotted): `db`.`table`, backticks doubled; the raw parts go to
 * schema ("" without one) and name for the information_schema lookup. */
static bool quote_my(const char *t, char *out, size_t cap, char *schema, char *name, size_t n)
{
    const char *dot = strchr(t, '.');
    size_t sl = dot ? (size_t)(dot - t) : 0;
    const char *nm = dot ? dot + 1 : t;
    if (sl >= n || strlen(nm) >= n || !*nm)
        return false;
    memcpy(schema, t, sl);
    schema[sl] = '\0';
    strcpy(name, nm);
    size_t o = 0;
    const char *parts[2] = {schema, name};
    for (int i = dot ? 0 : 1; i < 2; i++) {
        if (o + 2 > cap)
            return false;
        out[o++] = '`';
        for (const char *p = parts[i]; *p; p++) {
            if (o + 4 > cap)
                return false;
            if (*p == '`')
                out[o++] = '`';
            out[o++] = *p;
        }
        out[o++] = '`';
        if (i == 0)
            out[o++] = '.';
    }
    out[o] = '\0';
    return true;
}

/* ---------- reading one connection's ledger ---------- */

typedef struct source {
    const conn_def *cd;
    dialect d;
    const etl_action *query;
    etl_conn *conn;
} source;

/* The connector's query action: sql with params (stolen); the result's "rows" (a new
 * reference), or NULL with err filled. */
static json_t *run_query(source *s, const char *sql, json_t *params, int max_rows,
                         etl_error *err)
{
    json_t *p = json_pack("{s:s, s:o, s:i}", "sql", sql, "params", params, "max_rows", max_rows);
    if (!p)
        return etl_fail(err, ETL_ENOMEM, "States.Runtime", "out of memory"), NULL;
    atomic_int cancel = 0;
    etl_task task;
    host_task_init(&task, "ledger", "", s->cd->name, ".", 1, &cancel);
    etl_json *res = NULL;
    etl_error_clear(err);
    etl_status st = s->query->run(host_services(), &task, s->conn, host_wrap(p), &res, err);
    host_task_done(&task);
    pthread_mutex_destroy(&task.mu);
    json_decref(p);
    json_t *rows = st == ETL_OK ? json_incref(json_object_get(host_json(res), "rows")) : NULL;
    json_decref(host_json(res));
    if (st == ETL_OK && !json_is_array(rows)) {
        json_decref(rows);
        return etl_fail(err, ETL_EQUERY, "Etl.QueryFailed", "the query returned no rows list"),
               NULL;
    }
    return rows;
}

/* Append the newest loads of s to all (each row gets "connection"). */
static etl_status read_ledger(source *s, const char *pipeline_name, const char *key, int limit,
                              json_t *all, etl_error *err)
{
    const char *table = json_string_value(json_object_get(s->cd->settings, "ledger_table"));
    if (!table)
        table = DEFAULT_TABLE;
    char q[1200], schema[300], name[300], sql[2400];
    bool ok = s->d == D_POSTGRES ? quote_pg(table, q, sizeof q)
                                 : quote_my(table, q, sizeof q, schema, name, sizeof name);
    if (!ok)
        return etl_fail(err, ETL_EINVAL, "Etl.InvalidInput", "ledger_table '%s' is not a table "
                        "name (table or schema.table)", table);
    json_t *rows = s->d == D_POSTGRES
        ? run_query(s, "SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present",
                    json_pack("[s]", q), 1, err)
        : run_query(s, "SELECT COUNT(*) AS present FROM information_schema.TABLES WHERE "
                       "TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
                    json_pack("[s?, s]", schema[0] ? schema : NULL, name), 1, err);
    if (!rows)
        return err->status;
    json_t *present = json_object_get(json_array_get(rows, 0), "present");
    bool exists = json_is_true(present) || json_integer_value(present) > 0;
    json_decref(rows);
    if (!exists) /* no load has been recorded there yet */
        return ETL_OK;
    json_t *params = key ? json_pack("[s, s]", pipeline_name, key) : json_pack("[s]", pipeline_name);
    if (s->d == D_POSTGRES)
        snprintf(sql, sizeof sql,
                 "SELECT pg_catalog.to_char(loaded_at AT TIME ZONE 'UTC', "
                 "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS loaded_at, run_id, state, \"key\", "
                 "target_table, mode, \"rows\", bytes FROM %s WHERE pipeline = $1%s "
                 "ORDER BY loaded_at DESC LIMIT %d", q, key ? " AND \"key\" = $2" : "", limit);
    else /* the identity columns are VARBINARY: shown as text, not as \x hex */
        snprintf(sql, sizeof sql,
                 "SELECT DATE_FORMAT(loaded_at, '%%Y-%%m-%%dT%%H:%%i:%%s.%%fZ') AS loaded_at, "
                 "CONVERT(run_id USING utf8mb4) AS run_id, CONVERT(state USING utf8mb4) AS "
                 "state, CONVERT(`key` USING utf8mb4) AS `key`, target_table, mode, `rows`, "
                 "bytes FROM %s WHERE pipeline = ?%s ORDER BY loaded_at DESC LIMIT %d", q,
                 key ? " AND `key` = ?" : "", limit);
    if (!(rows = run_query(s, sql, params, limit, err)))
        return err->status;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        json_object_set_new(row, "connection", json_string(s->cd->name));
        json_array_append(all, row);
    }
    json_decref(rows);
    return ETL_OK;
}

/* ---------- the table ---------- */

typedef struct entry {
    json_t *row;
    size_t order; /* position in `all`: ties keep the per-connection order */
} entry;

static int newest_first(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    const char *tx = json_string_value(json_object_get(x->row, "loaded_at"));
    const char *ty = json_string_value(json_object_get(y->row, "loaded_at"));
    int c = strcmp(ty ? ty : "", tx ? tx : ""); /* ISO 8601 in UTC sorts as text */
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

enum { N_COLS = 9 };
static const char *const headers[N_COLS] = {"CONNECTION", "LOADED_AT", "RUN_ID", "STATE", "KEY",
                                            "TABLE", "MODE", "ROWS", "BYTES"};
static const char *const fields[N_COLS] = {"connection", "loaded_at", "run_id", "state", "key",
                                           "target_table", "mode", "rows", "bytes"};

/* A cell as printed, into buf: to the second for loaded_at, "-" for an empty key, and
 * control characters as spaces (a key holding a newline must not break the table). */
static const char *cell(json_t *row, int col, char *buf, size_t cap)
{
    json_t *v = json_object_get(row, fields[col]);
    if (json_is_integer(v))
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v) && col == 1 && json_string_length(v) >= 19)
        snprintf(buf, cap, "%.19sZ", json_string_value(v));
    else if (json_is_string(v))
        snprintf(buf, cap, "%s", json_string_length(v) ? json_string_value(v) : "-");
    else
        snprintf(buf, cap, "-");
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return buf;
}

/* Characters (UTF-8 code points) of s, for the column widths. */
static int width(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static void print_cell(FILE *out, const char *s, int w, bool right, bool last)
{
    int pad = w - width(s);
    if (right)
        fprintf(out, "%*s%s", pad > 0 ? pad : 0, "", s);
    else
        fprintf(out, "%s%*s", s, last || pad <= 0 ? 0 : pad, "");
    fputs(last ? "\n" : "  ", out);
}

static void print_table(json_t *all, int limit, FILE *out)
{
    size_t n = json_array_size(all);
    entry *e = calloc(n ? n : 1, sizeof *e);
    if (!e)
        return;
    for (size_t i = 0; i < n; i++)
        e[i] = (entry){json_array_get(all, i), i};
    qsort(e, n, sizeof *e, newest_first);
    if (n > (size_t)limit)
        n = (size_t)limit;
    int w[N_COLS];
    char buf[4096];
    for (int c = 0; c < N_COLS; c++) {
        w[c] = width(headers[c]);
        for (size_t i = 0; i < n; i++) {
            int k = width(cell(e[i].row, c, buf, sizeof buf));
            if (k > w[c])
                w[c] = k;
        }
    }
    for (int c = 0; c < N_COLS; c++)
        print_cell(out, headers[c], w[c], c >= 7, c == N_COLS - 1);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < N_COLS; c++)
            print_cell(out, cell(e[i].row, c, buf, sizeof buf), w[c], c >= 7, c == N_COLS - 1);
    free(e);
}

/* ---------- the command ---------- */

int ledger_cmd(const pipeline *pl, const char *key, int limit, FILE *out)
{
    int failed = 0, sources = 0;
    etl_error err;
    if (limit <= 0)
        limit = LEDGER_CMD_LIMIT;
    etl_error_clear(&err);
    if (registry_global_init(pl->reg, &err) != ETL_OK) {
        fprintf(stderr, "etlrun: cannot initialise the connectors: %s: %s\n", err.name,
                err.cause);
        return 1;
    }
    registry_thread_init(pl->reg);
    json_t *all = json_array();
    for (size_t i = 0; all && i < pl->n_conns; i++) {
        const conn_def *cd = &pl->conns[i];
        const etl_connector *c = cd->connector;
        source s = {.cd = cd};
        if (strcmp(c->name, "postgres") == 0)
            s.d = D_POSTGRES;
        else if (strcmp(c->name, "mysql") == 0)
            s.d = D_MYSQL;
        else
            continue;
        if (json_is_false(json_object_get(cd->settings, "ledger")))
            continue;
        sources++;
        if (!(s.query = registry_action(c, "query"))) {
            fprintf(stderr, "etlrun: ledger of connection %s: the %s connector has no query "
                    "action\n", cd->name, c->name);
            failed++;
            continue;
        }
        atomic_int cancel = 0;
        etl_task task;
        host_task_init(&task, "ledger", "", cd->name, ".", 1, &cancel);
        etl_error_clear(&err);
        etl_status st = c->open(host_services(), &task, host_wrap(cd->settings), &s.conn, &err);
        host_task_done(&task);
        pthread_mutex_destroy(&task.mu);
        if (st == ETL_OK)
            st = read_ledger(&s, pl->name, key, limit, all, &err);
        if (st != ETL_OK) {
            fprintf(stderr, "etlrun: ledger of connection %s (%s): %s: %s\n", cd->name, c->name,
                    err.name, err.cause);
            failed++;
        }
        if (s.conn)
            c->close(host_services(), s.conn);
    }
    registry_thread_end(pl->reg);
    registry_global_cleanup(pl->reg);
    if (!all) {
        fprintf(stderr, "etlrun: out of memory\n");
        return 1;
    }
    if (!sources) {
        fprintf(stderr, "etlrun: %s has no postgres or mysql connection with a load ledger\n",
                pl->name);
        failed++;
    } else if (json_array_size(all) == 0 && !failed) {
        fprintf(stderr, "etlrun: no loads of %s%s%s%s recorded in the load ledger\n", pl->name,
                key ? " for key '" : "", key ? key : "", key ? "'" : "");
    } else {
        print_table(all, limit, out);
    }
    json_decref(all);
    return failed ? 1 : 0;
}
