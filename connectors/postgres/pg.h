/* Internals of the built-in `postgres` connector (libpq), shared by its files:
 *   pg.c       the connector and action tables, Parameters checks
 *   settings.c connection settings and the password
 *   conn.c     connect (keyword arrays, never a conninfo string), cancel, statement
 *              execution and error classification
 *   query.c    postgres.query and postgres.exec
 *   extract.c  postgres.extract: a cursor streamed into a staged CSV file
 *   load.c     postgres.load: COPY FROM STDIN of a staged file, one transaction, and
 *              its row in the load ledger
 *   types.c    value text per type, format_type cache, MySQL -> PostgreSQL types
 * Only the public plugin interface is used (include/etlrun/connector.h). */
#ifndef ETL_PG_CONNECTOR_H
#define ETL_PG_CONNECTOR_H

#include <etlrun/connector.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PG_FETCH_MAX 10000             /* rows per FETCH at most */
#define PG_FETCH_TARGET ((size_t)8 << 20) /* bytes a FETCH batch should hold at most */
#define PG_COPY_CHUNK ((size_t)256 << 10) /* bytes per PQputCopyData */
#define PG_CANCEL_GRACE_S 10.0         /* after a cancel, how long the server may take */

/* A cached format_type() name of one (type oid, typmod). */
typedef struct pg_typename {
    Oid oid;
    int typmod;
    char *name;
} pg_typename;

/* One connection. Used by one thread at a time (the host lends it to one task), except
 * `cancel`, which the cancel callback uses from another thread (PQcancel is
 * thread-safe on a PGcancel that is not freed meanwhile: it lives as long as pg). */
struct etl_conn {
    PGconn *pg;
    PGcancel *cancel;           /* made right after connect */
    char label[300];            /* "user@host:port/db", for causes; never a password */
    pg_typename *types;         /* format_type cache */
    size_t n_types, cap_types;
    /* the load ledger (load.c): settings `ledger` and `ledger_table` */
    bool ledger;                /* false: ledger: false */
    char *ledger_table;         /* as written (malloc); NULL = PG_LEDGER_DEFAULT */
    char *ledger_q;             /* quoted for SQL, made at the first load (malloc) */
    bool ledger_ready;          /* this connection saw the table exist, or created it */
};

/* What a statement's failure is. */
typedef enum pg_fail_kind {
    PG_FAIL_QUERY = 0, /* Etl.QueryFailed */
    PG_FAIL_LOAD,      /* during a bulk load: data errors (22xxx, 23xxx, 21000) are Etl.LoadFailed */
} pg_fail_kind;

/* ---------- settings.c ---------- */

/* A connection's settings (strings borrowed from the settings object). */
typedef struct pg_settings {
    const char *url, *host, *user, *database, *socket, *password_env, *password_file;
    const char *sslmode, *sslrootcert, *sslcert, *sslkey, *application_name, *init_sql;
    const char *ledger_table;/* NULL = PG_LEDGER_DEFAULT */
    char port[16];           /* "" = libpq's default */
    int connect_timeout;     /* seconds, default 10 */
    bool ledger;             /* default true */
} pg_settings;

/* The load ledger's table when the connection names none (in its search_path). */
#define PG_LEDGER_DEFAULT "etlrun_load_ledger"

bool pg_check_settings(const etl_host *h, const etl_json *settings, etl_checker *chk);
/* Check and read settings at open time; a problem is Etl.ConnectionFailed (ETL_EINVAL,
 * not transient). */
etl_status pg_settings_read(const etl_host *h, const etl_json *settings, pg_settings *out,
                            etl_error *err);
/* The password from password_env / password_file into buf (*out NULL when neither is
 * set, so libpq's own conventions apply: PGPASSWORD, ~/.pgpass, PGSERVICE). A
 * password_file readable by group or others is refused. */
etl_status pg_password(const etl_host *h, const pg_settings *s, char *buf, size_t cap,
                       const char **out, etl_error *err);

/* ---------- conn.c ---------- */

etl_status pg_open(const etl_host *h, etl_task *task, const etl_json *settings,
                   etl_conn **out_conn, etl_error *err);
void pg_close(const etl_host *h, etl_conn *c);
bool pg_alive(const etl_host *h, etl_conn *c);
void pg_server_version(const etl_host *h, etl_conn *c, char *buf, size_t len);

/* Register the task's cancel callback (PQcancel on c). Call once at the start of an
 * action; pg_unwatch at its end. */
void pg_watch(const etl_host *h, etl_task *task, etl_conn *c);
void pg_unwatch(const etl_host *h, etl_task *task);

/* Send one statement (PQsendQueryParams: the extended protocol, one statement; params
 * as text, NULL = SQL NULL; n_params -1: PQsendQuery, the simple protocol, for internal
 * batches and init_sql, which may hold several statements) and wait for
 * its first result while honouring cancellation: *out gets the result (PQclear it). A
 * result with an error status is returned as is (ETL_OK): classify it with
 * pg_result_fail. ETL_OK with *out NULL cannot happen here. Errors (err filled):
 * cancelled before the statement was sent or the server did not answer a cancel in
 * PG_CANCEL_GRACE_S, connection lost while sending. With single_row, rows come one
 * PGRES_SINGLE_TUPLE result at a time. */
etl_status pg_send(const etl_host *h, etl_task *task, etl_conn *c, const char *sql,
                   int n_params, const char *const *values, bool single_row, PGresult **out,
                   etl_error *err);
/* Only send the statement (as pg_send); its results come with pg_next. */
etl_status pg_dispatch(const etl_host *h, etl_task *task, etl_conn *c, const char *sql,
                       int n_params, const char *const *values, bool single_row, etl_error *err);
/* The next result of the statement in flight; *out NULL at its end. */
etl_status pg_next(const etl_host *h, etl_task *task, etl_conn *c, PGresult **out,
                   etl_error *err);
/* Discard every remaining result of the statement in flight (ending a COPY IN that is
 * still open). */
void pg_drain(etl_conn *c);
/* Run a statement that returns no rows or rows nobody reads (BEGIN, DDL, ...), with
 * what = a short label for causes ("BEGIN", "the DELETE"). ETL_OK or err filled. When
 * out_affected is not NULL it gets PQcmdTuples (0 when empty). */
etl_status pg_run(const etl_host *h, etl_task *task, etl_conn *c, const char *what,
                  const char *sql, int n_params, const char *const *values, pg_fail_kind kind,
                  int64_t *out_affected, etl_error *err);
/* Fill err from a failed result (or, with res NULL, from the connection's state) and
 * return the status: Etl.ConnectionFailed (transient) for a lost connection, 08xxx and
 * 57P01..57P03; States.Cancelled when the task was cancelled; Etl.LoadFailed per kind;
 * else Etl.QueryFailed (transient for 40001 and 40P01), naming what, the SQLSTATE and
 * the server's message. */
etl_status pg_result_fail(const etl_host *h, etl_task *task, etl_conn *c, const PGresult *res,
                          const char *what, pg_fail_kind kind, etl_error *err);
/* After a failure with status st: ROLLBACK when a transaction is open, unless st says
 * the connection is lost or was cancelled (then the host discards it, which rolls back,
 * and waiting on the server could block). */
void pg_abort(etl_conn *c, etl_status st);
/* Status for a cancelled task. */
etl_status pg_cancelled(const etl_host *h, etl_error *err, const char *what);

/* ---------- pg.c: the Parameters, checked ---------- */

typedef enum pg_mode { PG_APPEND = 0, PG_REPLACE, PG_TRUNCATE, PG_MERGE } pg_mode;

/* The Parameters of any action after the checks of pg.c (values borrowed from the
 * Parameters object; absent = NULL / default). */
typedef struct pg_opts {
    const char *sql;             /* query, extract, exec with one statement */
    const etl_json *sql_list;    /* exec with a list of statements */
    const etl_json *params;      /* NULL = none */
    int64_t max_rows, max_bytes; /* query */
    const char *file, *table, *key_column;   /* load */
    const etl_json *key;         /* load, replace: the key's value */
    const etl_json *primary_key; /* load, merge: an array of names */
    const etl_json *columns;     /* load: an array of names, or NULL */
    pg_mode mode;
    bool create, keep;
} pg_opts;

/* ---------- query.c ---------- */

etl_status pg_query_run(const etl_host *h, etl_task *task, etl_conn *c, const pg_opts *o,
                        etl_json **out_result, etl_error *err);
etl_status pg_exec_run(const etl_host *h, etl_task *task, etl_conn *c, const pg_opts *o,
                       etl_json **out_result, etl_error *err);

/* Bound parameters as text (see docs/connectors/sql.md "Parameters are bound"). */
typedef struct pg_params {
    int n;
    const char **values;         /* NULL = SQL NULL; borrowed from the JSON or owned */
    char **owned;                /* texts made here (numbers, JSON), freed by pg_params_free */
} pg_params;
/* params: NULL or JSON null (none) or an array. what names it in causes ("params",
 * "params[1]"). Errors: Etl.InvalidInput. */
etl_status pg_params_bind(const etl_host *h, const etl_json *params, const char *what,
                          pg_params *out, etl_error *err);
void pg_params_free(const etl_host *h, pg_params *p);

/* ---------- extract.c / load.c ---------- */

etl_status pg_extract_run(const etl_host *h, etl_task *task, etl_conn *c, const pg_opts *o,
                          etl_json **out_result, etl_error *err);
etl_status pg_load_run(const etl_host *h, etl_task *task, etl_conn *c, const pg_opts *o,
                       etl_json **out_result, etl_error *err);

/* Split a table name on its first unquoted '.' into schema (may come out "") and table,
 * unquoting "double ""quoted"" parts". False (with why) when malformed: empty parts,
 * more than two parts, an unterminated quote. */
bool pg_split_table(const char *table, char *schema, char *name, size_t cap, const char **why);

/* ---------- types.c ---------- */

/* How a column's text is turned into a JSON value and a staged field. */
typedef enum pg_kind {
    PG_K_TEXT = 0,   /* as is */
    PG_K_INT,        /* int2, int4, int8, oid: exact integer */
    PG_K_FLOAT,      /* float4, float8: number (NaN, Infinity stay strings) */
    PG_K_BOOL,       /* t/f -> true/false */
    PG_K_TIMESTAMP,  /* "YYYY-MM-DD HH:MM:SS" -> 'T' */
    PG_K_TIMESTAMPTZ,/* and the offset "+HH" -> "+HH:MM" */
    PG_K_TIMETZ,     /* the offset only */
    PG_K_JSON,       /* json, jsonb: the JSON value */
} pg_kind;

pg_kind pg_kind_of(Oid type);
/* The text of a value as sql.query returns it (without JSON quoting) and extract stages
 * it. May return val itself or scratch (at least PG_SCRATCH bytes). */
#define PG_SCRATCH 96
const char *pg_text(pg_kind k, const char *val, size_t len, char *scratch, size_t *out_len);
/* The JSON value of a non-NULL value; NULL on allocation failure or text that is not
 * UTF-8. */
etl_json *pg_json_value(const etl_host *h, pg_kind k, const char *val, size_t len);

/* The format_type() name of each column of res (borrowed from c's cache, valid while c
 * is open). One query for the types not yet cached; the caller must have no statement
 * in flight. (A domain's values keep the text form of the domain, not of its base type:
 * sql.query, which cannot look types up mid-statement, does the same.) */
etl_status pg_column_types(const etl_host *h, etl_task *task, etl_conn *c, const PGresult *res,
                           const char **out_names, etl_error *err);
void pg_types_free(etl_conn *c);

/* The PostgreSQL type for CREATE TABLE of a staged column of source type src (MySQL
 * names per the table in docs/connectors/sql.md, PostgreSQL names as they are,
 * anything else text). Writes a type that is safe to splice into DDL. */
void pg_map_type(const char *src, char *out, size_t cap);

#endif
