/* Internals of the built-in `mysql` connector (MariaDB Connector/C), shared by its files:
 *   mysql.c    the connector and action tables, library and thread init, Parameters
 *              checks
 *   conn.c     settings (url, fields, secrets, TLS), connect, alive, close, and the
 *              cancel callback (KILL QUERY from a second connection)
 *   query.c    statements: bound parameters, execution, error classification;
 *              mysql.query and mysql.exec
 *   types.c    result columns: binding by type, values as text and as JSON, manifest
 *              type names, and the types and conversions of a load (create: true)
 *   dtoa.c     shortest round-trip decimals of doubles and floats (Schubfach), for types.c
 *   extract.c  mysql.extract: an unbuffered prepared statement into a staged CSV file
 *   load.c     mysql.load: LOAD DATA LOCAL INFILE fed from a staged file, one transaction,
 *              and its row in the load ledger
 * Only the public plugin interface is used (include/etlrun/connector.h). */
#ifndef ETL_MYSQL_CONNECTOR_H
#define ETL_MYSQL_CONNECTOR_H

#include <etlrun/connector.h>
#include <mysql.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MYC_PROGRESS_ROWS 10000          /* progress and cancellation every this many rows */
#define MYC_DEFAULT_MAX_ROWS 10000       /* mysql.query caps */
#define MYC_DEFAULT_MAX_BYTES ((int64_t)16 << 20)
#define MYC_DEFAULT_CONNECT_TIMEOUT 10   /* seconds */

typedef enum myc_ssl_mode {
    MYC_SSL_DEFAULT = 0,   /* the library's default: TLS when ssl_* files are given */
    MYC_SSL_DISABLED,
    MYC_SSL_PREFERRED,
    MYC_SSL_REQUIRED,
    MYC_SSL_VERIFY_CA,
    MYC_SSL_VERIFY_IDENTITY,
} myc_ssl_mode;

/* Connection settings after parsing (owned strings; NULL = not given). */
typedef struct myc_settings {
    char *host, *user, *database, *socket;
    unsigned port;             /* 0 = the library's default */
    char *password;            /* from password_env/password_file; NULL = option files.
                                * A secret: never in a cause or a log line */
    unsigned connect_timeout;  /* seconds */
    myc_ssl_mode ssl_mode;
    char *ssl_ca, *ssl_cert, *ssl_key;
    char *init_sql;
    char label[300];           /* "user@host:port/db" for causes; never a password */
    bool ledger_off;           /* ledger: false */
    char *ledger_table;        /* ledger_table; NULL = MYC_LEDGER_DEFAULT */
} myc_settings;

/* The load ledger's table when the connection names none (in its database). */
#define MYC_LEDGER_DEFAULT "etlrun_load_ledger"

typedef struct myc_infile myc_infile; /* a running load's feeder (load.c) */

/* One connection. Used by one thread at a time (the host lends it to one task); the
 * cancel callback reads only `set` and `thread_id`, which do not change after open. */
struct etl_conn {
    MYSQL *my;
    const etl_host *host;      /* for the kill thread's log line */
    myc_settings set;
    unsigned long thread_id;   /* the server's connection id, for KILL QUERY */
    bool broken;               /* protocol state unknown: alive() refuses it */
    unsigned last_errno;       /* of the last failure myc_fail classified */
    myc_infile *infile;        /* set only while LOAD DATA LOCAL runs: any other
                                * LOCAL INFILE request from the server is refused */
    bool ledger_ready;         /* the load ledger's table was seen or created (load.c) */
};

/* Problems go to a checker (validate time: every problem, at its position) or to an
 * etl_error (run time: the first problem fails the task with Etl.InvalidInput). */
typedef struct myc_report {
    const etl_host *host;
    etl_checker *chk;
    etl_error *err;
    const char *what;          /* "mysql.load", "connection settings" */
    int problems;
} myc_report;

/* ---------- mysql.c: Parameters helpers ---------- */

void myc_problem(myc_report *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Parameters.key: absent; literal (*out set); or "key.$" (known at run time). */
enum { MYC_ABSENT = 0, MYC_LITERAL, MYC_DYNAMIC };
int myc_param(const etl_host *h, const etl_json *obj, const char *key, etl_json **out);
/* Unknown keys (".$" stripped) are problems. keys: NULL-terminated. */
void myc_known_keys(myc_report *r, const etl_json *obj, const char *const *keys);
/* Literal values of a type, else a problem; absent/dynamic leave *out alone. */
void myc_get_string(myc_report *r, const etl_json *obj, const char *key, const char **out);
void myc_get_int(myc_report *r, const etl_json *obj, const char *key, int64_t min,
                 int64_t *out);
void myc_get_bool(myc_report *r, const etl_json *obj, const char *key, bool *out);
/* Parameters.sql (required; a string, or with allow_list a non-empty list of strings)
 * and Parameters.params (null, or an array; for a list of sql, an array of arrays or
 * nulls, one per statement). */
void myc_check_sql(myc_report *r, const etl_json *params, bool allow_list);

/* ---------- conn.c ---------- */

bool myc_check_settings(const etl_host *h, const etl_json *settings, etl_checker *chk);
etl_status myc_open(const etl_host *h, etl_task *task, const etl_json *settings,
                    etl_conn **out_conn, etl_error *err);
void myc_close(const etl_host *h, etl_conn *c);
bool myc_alive(const etl_host *h, etl_conn *c);
/* "MariaDB 10.11.19" / "MySQL 8.0.36", for etlrun check. */
void myc_server_version(const etl_host *h, etl_conn *c, char *buf, size_t len);
/* Register the task's cancel callback: it runs KILL QUERY <c's id> from a second
 * connection opened on a short detached thread. Unregistered when the action returns. */
void myc_watch(const etl_host *h, etl_task *task, etl_conn *c);
/* Wait (bounded) for detached kill threads still running; before mysql_library_end. */
void myc_kill_threads_wait(void);
/* Status for a cancelled task (States.Cancelled); marks c broken. */
etl_status myc_cancelled(const etl_host *h, etl_conn *c, etl_error *err, const char *what);

/* ---------- query.c ---------- */

/* Bound parameters: the values of one params array, as MYSQL_BINDs. */
typedef struct myc_params {
    size_t n;
    MYSQL_BIND *binds;
    long long *ints;           /* integer and boolean values */
    unsigned long *lens;
    char **owned;              /* texts made here (reals, JSON), freed by myc_params_free */
} myc_params;
/* params: NULL/null (none) or an array; what names it in causes ("params[1]"). */
etl_status myc_params_bind(const etl_host *h, const etl_json *params, const char *what,
                           myc_params *out, etl_error *err);
void myc_params_free(myc_params *p);

/* Prepare sql and execute it with p (may be NULL): *out_stmt is ready for fetching (a
 * result set is not read) or NULL with err filled. Cancellation is checked first. */
etl_status myc_stmt_run(const etl_host *h, etl_task *task, etl_conn *c, const char *sql,
                        const myc_params *p, const char *what, MYSQL_STMT **out_stmt,
                        etl_error *err);
/* Run a statement without parameters or result (START TRANSACTION, DELETE, ...) as a
 * plain query; out_affected may be NULL. */
etl_status myc_simple(const etl_host *h, etl_task *task, etl_conn *c, const char *sql,
                      const char *what, uint64_t *out_affected, etl_error *err);
/* Fill err from the connection's (stmt NULL) or the statement's last error and return
 * the status: States.Cancelled when the task was cancelled; Etl.ConnectionFailed
 * (transient) for a lost connection (2006, 2013, 2055 ...), marking c broken;
 * else `name` (Etl.QueryFailed or Etl.LoadFailed) naming what, the errno, SQLSTATE and
 * message; Etl.QueryFailed, transient, for 1213 (deadlock) and 1205 (lock wait
 * timeout), and Etl.QueryFailed for SQLSTATE classes 40 and 42 whatever `name`. */
etl_status myc_fail(const etl_host *h, etl_task *task, etl_conn *c, MYSQL_STMT *stmt,
                    const char *name, const char *what, etl_error *err);
/* ROLLBACK, best effort; a failure marks c broken. */
void myc_rollback(etl_conn *c);

etl_status myc_query_run(const etl_host *h, etl_task *task, etl_conn *c, const etl_json *params,
                         etl_json **out_result, etl_error *err);
etl_status myc_exec_run(const etl_host *h, etl_task *task, etl_conn *c, const etl_json *params,
                        etl_json **out_result, etl_error *err);

/* ---------- types.c ---------- */

/* How a column is fetched and shown. */
typedef enum myc_kind {
    MYC_INT = 0,   /* signed integers, YEAR: LONGLONG */
    MYC_UINT,      /* unsigned integers: LONGLONG with is_unsigned */
    MYC_DOUBLE,
    MYC_FLOAT,
    MYC_DATE,
    MYC_DATETIME,  /* DATETIME, TIMESTAMP */
    MYC_TIME,
    MYC_BIT,       /* raw big-endian bytes, shown as n binary digits */
    MYC_TEXT,      /* strings, DECIMAL, ENUM, SET: the bytes as they are */
    MYC_JSON,      /* JSON text: parsed by mysql.query */
    MYC_BINARY,    /* binary strings and blobs: "\x" + lowercase hex */
} myc_kind;

typedef struct myc_col {
    const char *name;          /* the field's name (lives as long as the result) */
    myc_kind kind;
    unsigned decimals;         /* fractional digits of times */
    unsigned bits;             /* BIT(n) */
    char type[64];             /* manifest type, e.g. "decimal(12,2)" */
    union {
        long long i;
        double d;
        float f;
        MYSQL_TIME t;
    } v;
    char *buf;                 /* string kinds: grown on truncation */
    unsigned long cap;
    unsigned long length;
    my_bool is_null, error;
    size_t off;                /* text of the current row in the result's scratch */
} myc_col;

/* A statement's result set bound column by column. Memory: the largest value seen
 * per string column, plus one row's formatted text. */
typedef struct myc_result {
    MYSQL_STMT *stmt;
    MYSQL_RES *meta;
    unsigned n;
    myc_col *cols;
    MYSQL_BIND *binds;
    char *scratch;
    size_t scratch_len, scratch_cap;
} myc_result;

/* Bind stmt's result columns (after mysql_stmt_execute; n == 0 when the statement has
 * no result set). ETL_OK or err filled (out of memory). */
etl_status myc_result_open(const etl_host *h, MYSQL_STMT *stmt, myc_result *r, etl_error *err);
/* 1 = a row, 0 = the end, -1 = an error of the statement (classify with myc_fail),
 * -2 = err filled (out of memory, a value that does not fit its binding). */
int myc_result_fetch(const etl_host *h, myc_result *r, etl_error *err);
/* The current row as text (NULL field = SQL NULL, and zero dates), pointing into column
 * buffers and the scratch (valid until the next fetch). -1 when out of memory. */
int myc_result_text(myc_result *r, const char **fields, size_t *lens);
/* Column i of the current row as a JSON value (new reference), or NULL when out of
 * memory or the text is not UTF-8 (*out_bad set then). */
etl_json *myc_result_json(const etl_host *h, myc_result *r, unsigned i, bool *out_bad);
void myc_result_close(myc_result *r);

/* Shortest text that reads back to the same value, NUL-terminated; returns the length
 * (buf >= 32). */
size_t myc_fmt_double(double d, char *buf);
size_t myc_fmt_float(float f, char *buf);

/* ---------- dtoa.c: shortest round-trip decimals ---------- */

/* A positive decimal digits * 10^exp10; digits has no trailing zero. */
typedef struct myc_decimal {
    uint64_t digits;
    int exp10;
} myc_decimal;
/* The shortest decimal that reads back (strtod/strtof: nearest, ties to even) as |v|,
 * and of those the nearest |v| (a tie: even digits). v finite and not zero. Any thread. */
myc_decimal myc_shortest_double(double v);
myc_decimal myc_shortest_float(float v);
/* d (from myc_shortest_*) as printf("%.*g", P, d) prints it, P = max(min_prec, digits of
 * d), min_prec <= 17: fixed notation unless the decimal exponent is < -4 or >= P (1e+15,
 * 1.5e-07, 123.25), "-" first when neg. NUL-terminated, at most 25 bytes with the NUL;
 * returns the length. */
size_t myc_decimal_text(myc_decimal d, bool neg, int min_prec, char *buf);

/* How a load converts a staged column of a source type (the manifest's) to the value
 * LOAD DATA assigns. */
typedef enum myc_conv {
    MYC_CONV_NONE = 0,
    MYC_CONV_HEX,    /* "\x" + hex -> bytes: UNHEX */
    MYC_CONV_BIT,    /* "101" -> BIT: CONV(v, 2, 10) */
    MYC_CONV_BOOL,   /* true/false (postgres boolean) -> 1/0 */
    MYC_CONV_TZ,     /* "...+hh:mm" (timestamptz) -> UTC DATETIME */
} myc_conv;
myc_conv myc_load_conv(const char *src_type);
/* The MySQL column type for create: true from a manifest type (MySQL names pass
 * through; PostgreSQL and other names map by family; NULL/unknown -> longtext). */
void myc_ddl_type(const char *src_type, char *buf, size_t n);

/* ---------- extract.c / load.c ---------- */

etl_status myc_extract_run(const etl_host *h, etl_task *task, etl_conn *c,
                           const etl_json *params, etl_json **out_result, etl_error *err);
etl_status myc_load_run(const etl_host *h, etl_task *task, etl_conn *c, const etl_json *params,
                        etl_json **out_result, etl_error *err);
bool myc_load_check(const etl_host *h, const etl_json *params, etl_checker *chk);
/* Make the connection's LOCAL INFILE handler ours (at open): it serves c->infile and
 * refuses every request when that is NULL. */
void myc_infile_install(etl_conn *c);

/* Identifier quoting: `a`.`b` for "a.b" (backticks doubled) appended to buf of cap n;
 * false when it does not fit. With dotted false the whole name is one identifier. */
bool myc_quote_ident(const char *name, bool dotted, char *buf, size_t n);

#endif
