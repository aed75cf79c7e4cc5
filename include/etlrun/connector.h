/* etlrun connector plugin interface.
 *
 * A connector moves data between etlrun and one kind of system (files, HTTP APIs,
 * databases). It is a shared object that exports one function,
 *
 *     const etl_connector *etl_connector_entry(void);
 *
 * returning a static, immutable table: the ABI version and struct size it was built
 * with, its name, a settings check, open/close of a connection and a table of actions.
 * Built-in connectors (file, http, and the database connectors) are compiled into
 * etlrun but use exactly this interface.
 *
 * The plugin links against nothing of etlrun's: everything it needs from the host
 * (JSON values, errors, logging, cancellation, progress, staged CSV files, paths) comes
 * through the etl_host table passed to every call. Include only this header (and
 * error.h, which it includes); build with
 *
 *     cc $(pkg-config --cflags etlrun-connector) -shared -fPIC -o my.so my.c
 *
 * VERSIONING
 * - ETL_CONNECTOR_ABI_VERSION changes only when an incompatible change is made; the host
 *   refuses a plugin whose abi_version differs from its own, with a message naming the
 *   plugin and both versions.
 * - Within one ABI version, members are only ever appended to etl_connector, etl_action
 *   and etl_host. Each struct starts with its size as the other side built it: the host
 *   reads only the members that the plugin's struct_size covers (a newer host runs an
 *   older plugin), and a plugin must check host->struct_size before using a member
 *   newer than the first release (an older host runs a newer plugin's older features).
 * - NULL in any function pointer of etl_connector or etl_action means "not supported".
 *
 * THREADS
 * - etl_connector_entry, global_init and global_cleanup run on the main thread, before
 *   any worker starts and after every worker has stopped. The CLI runs them once per
 *   process; a program that runs several pipelines (the test suite) calls them in pairs,
 *   possibly more than once. check_settings and action checks may run before
 *   global_init.
 * - thread_init/thread_end run on each worker thread, before its first and after its
 *   last call into the plugin (MySQL's mysql_thread_init is the model).
 * - check_settings and action check functions run at validate time, on the main thread.
 * - open, close and action run functions run on worker threads, concurrently with each
 *   other, but one etl_conn is used by one thread at a time: the host pools
 *   connections, lends each to one task at a time and enforces max_connections.
 * - A cancel callback (etl_host.on_cancel) runs on a thread of its own, while the task
 *   runs: it must only do thread-safe things (PQcancel, a KILL QUERY on another
 *   connection, setting a flag). It may block for a while (a network round trip); it
 *   must not call on_cancel itself.
 *
 * RESULTS AND FAILURES OF AN ACTION
 * - On failure, leave *out_result NULL (or a reference the host may drop): the host
 *   drops whatever it holds.
 * - Return ETL_ECANCELLED only when host->cancelled(task) is true. A connection whose
 *   action returned ETL_ECANCELLED, ETL_ETIMEOUT or ETL_ECONNECT is closed by the host;
 *   after any other failure it goes back to the pool, so leave it usable (roll back an
 *   open transaction).
 * - etl_error.transient is recorded in the history and shown to operators; a pipeline's
 *   Retry decides on error names (ErrorEquals), so give transient failures names a
 *   Retry can match (Etl.ConnectionFailed).
 *
 * OWNERSHIP
 * - Every etl_json* handed to a plugin is borrowed for the duration of the call unless a
 *   comment says otherwise. Values a plugin creates (json_new_*) are owned by it until
 *   handed over: json_set/json_append and *out_result steal the reference.
 * - Strings returned by the host (json_string, json_dump...) live as documented at each
 *   function; json_dump's result is freed with host->free.
 *
 * ERRORS
 * Functions return ETL_OK or a status from error.h, after filling the etl_error with
 * host->fail (an ASL error name such as "Etl.ConnectionFailed", a one-line cause that
 * names what failed and what to do, and whether a Retry may succeed). Never put a
 * password or a full connection string in a cause or a log line. */
#ifndef ETLRUN_CONNECTOR_H
#define ETLRUN_CONNECTOR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <etlrun/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ETL_CONNECTOR_ABI_VERSION 1

/* Opaque handles. */
typedef struct etl_json etl_json;       /* a JSON value (host-owned implementation) */
typedef struct etl_task etl_task;       /* one running action call (host-owned) */
typedef struct etl_conn etl_conn;       /* a connection (plugin-defined) */
typedef struct etl_checker etl_checker; /* collects validate-time problems (host-owned) */
typedef struct etl_stage_writer etl_stage_writer;
typedef struct etl_stage_reader etl_stage_reader;
typedef struct etl_csv_reader etl_csv_reader;
typedef struct etl_path etl_path;       /* a compiled JSONPath */

typedef enum etl_json_type {
    ETL_JSON_NULL = 0,
    ETL_JSON_BOOL = 1,
    ETL_JSON_INT = 2,      /* exact 64-bit integer */
    ETL_JSON_REAL = 3,
    ETL_JSON_STRING = 4,   /* UTF-8; may contain NUL bytes (use the length) */
    ETL_JSON_ARRAY = 5,
    ETL_JSON_OBJECT = 6,
} etl_json_type;

typedef enum etl_log_level {
    ETL_LOG_ERROR = 0,
    ETL_LOG_WARN = 1,
    ETL_LOG_INFO = 2,
    ETL_LOG_DEBUG = 3,
} etl_log_level;

/* Column description for a staged file. Types are the source's own names
 * ("varchar(20)", "bigint unsigned", "string"): the load maps them. */
typedef struct etl_column {
    const char *name;
    const char *type;      /* NULL = "text" */
} etl_column;

/* Services of the host. Every call takes the table itself first where it needs no
 * other context, so one table serves every thread. All functions are thread-safe unless
 * a comment says otherwise. */
typedef struct etl_host {
    uint32_t abi_version;  /* ETL_CONNECTOR_ABI_VERSION of the host */
    uint32_t struct_size;  /* sizeof(etl_host) as the host was built */
    const char *host_version; /* etlrun's version, e.g. "0.2.0" */

    /* --- errors and logging --- */
    /* Fill err (name, printf cause, transient) and return status. */
    etl_status (*fail)(etl_error *err, etl_status status, const char *name, bool transient,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
    /* Log a line, attributed to the task's state, key and connection when task is not
     * NULL. Thread-safe. */
    void (*log)(etl_task *task, etl_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* --- validate-time checks --- */
    /* Report a problem with the definition at the position of field, a dotted path
     * inside the checked object ("url", "headers.Authorization", "fields.id"; "" = the
     * object itself). The host prints FILE:LINE:COL: message. */
    void (*check_error)(etl_checker *chk, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* --- cancellation and progress (task thread unless noted) --- */
    /* True once the task has been cancelled (timeout, a failed sibling, a signal). Poll
     * it between blocking steps; return ETL_ECANCELLED promptly when it is set. */
    bool (*cancelled)(etl_task *task);
    /* Register fn(arg) to be called once, from another thread, when the task is
     * cancelled while it runs; NULL fn unregisters. At most one callback per task; it
     * is unregistered automatically when the action returns, and never called after
     * on_cancel(task, NULL, NULL) returns. If the task is already cancelled, fn runs
     * before on_cancel returns. */
    void (*on_cancel)(etl_task *task, void (*fn)(void *arg), void *arg);
    /* Add to the task's progress counters (shown to operators, kept in the history). */
    void (*progress)(etl_task *task, uint64_t rows, uint64_t bytes);
    /* The task's context: state name, key ("" when none), attempt (from 1). The strings
     * live as long as the task. */
    const char *(*task_state)(etl_task *task);
    const char *(*task_key)(etl_task *task);
    int (*task_attempt)(etl_task *task);
    /* Seconds left before the task's TimeoutSeconds, or -1 when it has none. */
    double (*task_time_left)(etl_task *task);

    /* --- JSON values --- */
    etl_json_type (*json_type)(const etl_json *v);
    /* Object member or NULL (borrowed). */
    etl_json *(*json_get)(const etl_json *obj, const char *key);
    /* Array length or number of object members; 0 for scalars. */
    size_t (*json_size)(const etl_json *v);
    /* Array item i or NULL (borrowed). */
    etl_json *(*json_at)(const etl_json *arr, size_t i);
    /* Object member i in document order: its key (borrowed) and value. */
    const char *(*json_key_at)(const etl_json *obj, size_t i, etl_json **out_value);
    /* String value and its length (NULL when v is not a string); valid while v is. */
    const char *(*json_string)(const etl_json *v, size_t *out_len);
    /* Numbers: false when v is not that type. json_real accepts integers too. */
    bool (*json_int)(const etl_json *v, int64_t *out);
    bool (*json_real)(const etl_json *v, double *out);
    bool (*json_bool)(const etl_json *v, bool *out);
    /* Constructors: a new reference, NULL on allocation failure. */
    etl_json *(*json_new_null)(void);
    etl_json *(*json_new_bool)(bool b);
    etl_json *(*json_new_int)(int64_t i);
    etl_json *(*json_new_real)(double d);
    etl_json *(*json_new_string)(const char *s, size_t len); /* copies; must be UTF-8 */
    etl_json *(*json_new_array)(void);
    etl_json *(*json_new_object)(void);
    /* Steal value into obj[key] / the end of arr; -1 on failure (value is freed), and
     * -1 for a NULL value (so json_set(o, k, json_new_x(...)) needs no NULL check). */
    int (*json_set)(etl_json *obj, const char *key, etl_json *value);
    int (*json_append)(etl_json *arr, etl_json *value);
    etl_json *(*json_incref)(etl_json *v);
    void (*json_decref)(etl_json *v);
    /* Parse JSON text (any value); NULL with err filled on invalid text. */
    etl_json *(*json_parse)(const char *text, size_t len, etl_error *err);
    /* Compact JSON text; free with host->free. */
    char *(*json_dump)(const etl_json *v, size_t *out_len);

    /* --- JSONPath: Reference Paths, as in InputPath ($.a.b, $['k'], $[0]): each selects
     * at most one node; wildcards, slices and '..' are refused by path_compile --- */
    /* Compile; NULL with err filled on a syntax error. Free with path_free. */
    etl_path *(*path_compile)(const char *text, etl_error *err);
    /* The one node the path selects in root (borrowed), or NULL when missing. */
    etl_json *(*path_get)(const etl_path *p, const etl_json *root);
    void (*path_free)(etl_path *p);

    /* --- staged CSV files (see docs/plugins.md "Staging") --- */
    /* Start the task's staged file: RFC 4180 CSV under the staging directory, written
     * under a temporary name. name_hint (may be NULL) becomes part of the file name. */
    etl_stage_writer *(*stage_open)(etl_task *task, const etl_column *cols, size_t n_cols,
                                    const char *name_hint, etl_error *err);
    /* Append one row: n_cols fields, each (ptr, len), NULL ptr = SQL NULL (written as
     * an unquoted empty field; the empty string is written as ""). */
    etl_status (*stage_row)(etl_stage_writer *w, const char *const *fields,
                            const size_t *lens, etl_error *err);
    /* Flush, fsync, rename into place and write the manifest (columns, rows, bytes,
     * CRC32C). *out_manifest (new reference, may be NULL) receives
     * {"file","rows","bytes","crc32c","columns"}; the writer is freed either way. */
    etl_status (*stage_finish)(etl_stage_writer *w, etl_json **out_manifest, etl_error *err);
    /* Drop the partial file and free the writer. */
    void (*stage_abort)(etl_stage_writer *w);
    /* Open a staged file for reading after verifying its manifest (row count, byte
     * count, CRC32C): a mismatch is Etl.IntegrityError. */
    etl_stage_reader *(*stage_read_open)(etl_task *task, const char *file, etl_error *err);
    /* The manifest of an open reader (borrowed). */
    const etl_json *(*stage_read_manifest)(etl_stage_reader *r);
    /* Next row: *out_fields and *out_lens point into reader memory valid until the next
     * call, NULL field = SQL NULL. Returns 1 for a row, 0 at the end, -1 on error. */
    int (*stage_read_row)(etl_stage_reader *r, const char *const **out_fields,
                          const size_t **out_lens, size_t *out_n, etl_error *err);
    void (*stage_read_close)(etl_stage_reader *r);

    /* --- reading any CSV file (e.g. a file source): RFC 4180 with a chosen delimiter
     * and quote; the staged-file reader above is this plus manifest checks --- */
    /* delimiter/quote 0 = ',' / '"'. An unquoted empty field is returned as NULL only
     * when empty_is_null. Errors name the file; malformed records name the line. */
    etl_csv_reader *(*csv_open)(const char *path, char delimiter, char quote,
                                bool empty_is_null, etl_error *err);
    /* As stage_read_row. */
    int (*csv_row)(etl_csv_reader *r, const char *const **out_fields, const size_t **out_lens,
                   size_t *out_n, etl_error *err);
    /* Line (from 1) where the last returned record started. */
    uint64_t (*csv_line)(const etl_csv_reader *r);
    void (*csv_close)(etl_csv_reader *r);

    /* --- memory --- */
    void *(*alloc)(size_t n);
    void (*free)(void *p);   /* free(NULL) does nothing */

    /* The raw CSV bytes of a staged file's records (after the header line), for a
     * loader whose bulk format is the staged CSV itself (PostgreSQL COPY FORMAT csv).
     * Returns bytes read (up to cap), 0 at the end, -1 on error. Not to be mixed with
     * stage_read_row on one reader. */
    long (*stage_read_bytes)(etl_stage_reader *r, char *buf, size_t cap, etl_error *err);

    /* The directory of the pipeline file (absolute), against which a connector resolves
     * relative file paths written in the pipeline. Valid as long as the task. */
    const char *(*task_base_dir)(etl_task *task);
    /* True when the pipeline says staged files are kept after a successful load
     * (staging.keep); a load's own `keep` parameter adds to it. */
    bool (*task_keep_staged)(etl_task *task);
    /* The run the task belongs to: its id ($$.Execution.Name; the same across a resume
     * of that run) and the pipeline's name. For a load ledger: a load that finds its
     * (pipeline, run id, state, key) already committed must not load again. Valid as
     * long as the task. */
    const char *(*task_run_id)(etl_task *task);
    const char *(*task_pipeline)(etl_task *task);
    /* Where in the execution the task runs: "" at the top level, "/Keys[3]" in item 3
     * of Map state Keys, "/Fan[1]/Keys[0]" nested. Stable across a resume of the run, and
     * distinct for every Map item and Parallel branch even when keys repeat or are
     * absent: with the state name, it identifies one load within a run (the ledger's
     * identity). Valid as long as the task. */
    const char *(*task_path)(etl_task *task);
} etl_host;

/* Flags of an action. */
enum {
    ETL_ACTION_NEEDS_CONNECTION = 1u << 0, /* Parameters.connection must name one */
};

typedef struct etl_action {
    uint32_t struct_size;  /* sizeof(etl_action) as the plugin was built */
    const char *name;      /* "request"; the Task Resource is "<connector>.<name>" */
    const char *summary;   /* one line, shown by `etlrun plugins` */
    uint32_t flags;        /* ETL_ACTION_* */
    /* Validate-time check of the Parameters as written (keys ending ".$" are values
     * known only at run time: check their presence, not their value). Report problems
     * with host->check_error; return false when there were any. NULL = no check. */
    bool (*check)(const etl_host *host, const etl_json *params, etl_checker *chk);
    /* Run the action on a worker thread. params: the evaluated Parameters (borrowed).
     * conn: a connection lent for this call (NULL when the action does not need one).
     * On success set *out_result (a new reference; NULL means JSON null) and return
     * ETL_OK. On failure fill err with host->fail. Required. */
    etl_status (*run)(const etl_host *host, etl_task *task, etl_conn *conn,
                      const etl_json *params, etl_json **out_result, etl_error *err);
} etl_action;

typedef struct etl_connector {
    uint32_t abi_version;  /* ETL_CONNECTOR_ABI_VERSION the plugin was built with */
    uint32_t struct_size;  /* sizeof(etl_connector) as the plugin was built */
    const char *name;      /* [a-z][a-z0-9_]*: the connection "type" and resource prefix */
    const char *version;   /* the plugin's own version, free form */
    const char *description;

    /* Once per process before any worker starts / after all stopped. May be NULL. */
    etl_status (*global_init)(const etl_host *host, etl_error *err);
    void (*global_cleanup)(const etl_host *host);
    /* Per worker thread. May be NULL. */
    void (*thread_init)(const etl_host *host);
    void (*thread_end)(const etl_host *host);

    /* Validate-time check of one connection's settings (the object under
     * connections.NAME, minus the fields the host owns: type, max_connections). Report
     * with host->check_error; return false on any problem. NULL = accept anything. */
    bool (*check_settings)(const etl_host *host, const etl_json *settings, etl_checker *chk);
    /* Open a connection from its settings (after ${env:...} interpolation). NULL when
     * the connector has no connections (then actions get conn == NULL). */
    etl_status (*open)(const etl_host *host, etl_task *task, const etl_json *settings,
                       etl_conn **out_conn, etl_error *err);
    /* Close a connection. May run on any thread (idle connections are closed by the
     * main thread at the end of the run), never concurrently with another use of it. */
    void (*close)(const etl_host *host, etl_conn *conn);
    /* True when a pooled connection is still usable (e.g. after a server restart the
     * host closes and reopens). It runs on a worker before the connection is lent and
     * cannot be cancelled: answer from local state or a bounded probe, never block.
     * NULL = always usable. */
    bool (*alive)(const etl_host *host, etl_conn *conn);
    /* Write a one-line description of the server behind conn into buf (e.g.
     * "PostgreSQL 15.4"), for `etlrun check`. NULL = not supported. */
    void (*server_version)(const etl_host *host, etl_conn *conn, char *buf, size_t len);

    const etl_action *actions; /* array ended by an entry whose name is NULL */
} etl_connector;

/* The symbol every plugin exports. */
#define ETL_CONNECTOR_ENTRY "etl_connector_entry"
typedef const etl_connector *(*etl_connector_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
