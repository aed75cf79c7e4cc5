/* The built-in `postgres` connector (libpq): its connector and action tables, and the
 * Parameters checks shared by validate time (reported with host->check_error at the
 * field) and run time (the evaluated Parameters; the first problem is
 * Etl.InvalidInput), so what validates also runs. The work is in conn.c, query.c,
 * extract.c and load.c; the specification is docs/connectors/sql.md. */
#include "pg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---------- Parameters ---------- */

typedef enum ptype {
    T_ANY,
    T_STRING,     /* non-empty */
    T_SQL,        /* non-empty string; exec: or a non-empty list of them */
    T_LIST,       /* a list (params) */
    T_NAMES,      /* a non-empty list of distinct non-empty strings */
    T_POSINT,
    T_BOOL,
    T_MODE,
} ptype;

typedef struct param {
    const char *name;
    ptype type;
    bool required;
} param;

static const param query_params[] = {
    {"sql", T_SQL, true}, {"params", T_LIST, false}, {"max_rows", T_POSINT, false},
    {"max_bytes", T_POSINT, false}, {"connection", T_ANY, false}, {"key", T_ANY, false},
    {NULL, T_ANY, false}};
static const param exec_params[] = {
    {"sql", T_SQL, true}, {"params", T_LIST, false}, {"connection", T_ANY, false},
    {"key", T_ANY, false}, {NULL, T_ANY, false}};
static const param extract_params[] = {
    {"sql", T_SQL, true}, {"params", T_LIST, false}, {"connection", T_ANY, false},
    {"key", T_ANY, false}, {NULL, T_ANY, false}};
static const param load_params[] = {
    {"file", T_STRING, true}, {"table", T_STRING, true}, {"mode", T_MODE, false},
    {"key_column", T_STRING, false}, {"key", T_ANY, false}, {"primary_key", T_NAMES, false},
    {"create", T_BOOL, false}, {"columns", T_NAMES, false}, {"keep", T_BOOL, false},
    {"connection", T_ANY, false}, {NULL, T_ANY, false}};

static const char *const modes[] = {"append", "replace", "truncate", "merge", NULL};

typedef struct report {
    const etl_host *h;
    etl_checker *chk;     /* validate time; NULL at run time */
    etl_error *err;       /* run time */
    const char *action;   /* "postgres.load" */
    bool list_sql;        /* exec: sql may be a list */
    int problems;
} report;

static void problem(report *rp, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(report *rp, const char *field, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (rp->chk)
        rp->h->check_error(rp->chk, field, "%s", msg);
    else if (rp->problems == 0)
        rp->h->fail(rp->err, ETL_EINVAL, "Etl.InvalidInput", false, "%s: Parameters: '%s': %s",
                    rp->action, field, msg);
    rp->problems++;
}

static const char *type_name(etl_json_type t)
{
    static const char *const names[] = {"null", "a boolean", "an integer", "a number",
                                        "a string", "an array", "an object"};
    return (unsigned)t <= ETL_JSON_OBJECT ? names[t] : "a value";
}

/* The literal value of name (NULL when absent or written "name.$"). */
static const etl_json *lit(const etl_host *h, const etl_json *params, const char *name)
{
    return params ? h->json_get(params, name) : NULL;
}

static bool given(const etl_host *h, const etl_json *params, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "%s.$", name);
    return params && (h->json_get(params, name) || h->json_get(params, key));
}

static void check_names(report *rp, const char *field, const etl_json *v)
{
    const etl_host *h = rp->h;
    size_t n = h->json_size(v);
    if (h->json_type(v) != ETL_JSON_ARRAY || n == 0) {
        problem(rp, field, "must be a non-empty list of column names, not %s",
                h->json_type(v) == ETL_JSON_ARRAY ? "an empty list" : type_name(h->json_type(v)));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *s = h->json_string(h->json_at(v, i), &len);
        if (!s || !len || strlen(s) != len) {
            problem(rp, field, "item %zu must be a non-empty column name", i + 1);
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            const char *o = h->json_string(h->json_at(v, j), NULL);
            if (o && strcmp(o, s) == 0) {
                problem(rp, field, "column '%s' is listed twice", s);
                break;
            }
        }
    }
}

static void check_value(report *rp, const param *p, const etl_json *v)
{
    const etl_host *h = rp->h;
    etl_json_type t = h->json_type(v);
    size_t len = 0;
    const char *s = h->json_string(v, &len);
    int64_t iv;
    switch (p->type) {
    case T_ANY:
        break;
    case T_STRING:
        if (!s || !len || strlen(s) != len)
            problem(rp, p->name, "must be a non-empty string, not %s", s ? "\"\"" : type_name(t));
        break;
    case T_SQL:
        if (s && len && strlen(s) == len)
            break;
        if (rp->list_sql && t == ETL_JSON_ARRAY && h->json_size(v) > 0) {
            for (size_t i = 0; i < h->json_size(v); i++) {
                const char *item = h->json_string(h->json_at(v, i), &len);
                if (!item || !len || strlen(item) != len)
                    problem(rp, p->name, "item %zu must be a non-empty SQL statement", i + 1);
            }
            break;
        }
        problem(rp, p->name, "must be a non-empty SQL statement%s", rp->list_sql
                ? " or a non-empty list of statements (run in one transaction)" : "");
        break;
    case T_LIST:
        if (t != ETL_JSON_ARRAY && t != ETL_JSON_NULL)
            problem(rp, p->name, "must be a list of values bound to $1, $2, ..., not %s "
                    "(e.g. params.$: States.Array($.key))", type_name(t));
        break;
    case T_NAMES:
        check_names(rp, p->name, v);
        break;
    case T_POSINT:
        if (!h->json_int(v, &iv) || iv < 1)
            problem(rp, p->name, "must be a positive integer");
        break;
    case T_BOOL:
        if (t != ETL_JSON_BOOL)
            problem(rp, p->name, "must be true or false, not %s", type_name(t));
        break;
    case T_MODE: {
        const char *const *m = modes;
        while (s && *m && strcmp(*m, s) != 0)
            m++;
        if (!s || !*m)
            problem(rp, p->name, "must be append, replace, truncate or merge");
        break;
    }
    }
}

/* Check Parameters against spec; with o, also fill it (run time: all values known). */
static void check(report *rp, const etl_json *params, const param *spec, pg_opts *o)
{
    const etl_host *h = rp->h;
    if (!params || h->json_type(params) != ETL_JSON_OBJECT) {
        problem(rp, "", "%s needs Parameters, an object (at least '%s')", rp->action, spec->name);
        return;
    }
    size_t n = h->json_size(params);
    for (size_t i = 0; i < n; i++) {
        etl_json *v = NULL;
        const char *key = h->json_key_at(params, i, &v);
        size_t klen = strlen(key);
        bool dynamic = klen >= 2 && strcmp(key + klen - 2, ".$") == 0;
        size_t base = dynamic ? klen - 2 : klen;
        const param *p = spec;
        while (p->name && !(strlen(p->name) == base && memcmp(p->name, key, base) == 0))
            p++;
        if (!p->name) {
            char known[256] = "";
            for (const param *q = spec; q->name; q++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         q == spec ? "" : ", ", q->name);
            problem(rp, key, "unknown parameter of %s (known: %s)", rp->action, known);
        } else if (!dynamic) {
            check_value(rp, p, v);
        }
    }
    for (const param *p = spec; p->name; p++)
        if (p->required && !given(h, params, p->name))
            problem(rp, p->name, "%s needs '%s' (or '%s.$')", rp->action, p->name, p->name);
    if (rp->problems)
        return;

    /* relations between parameters, where their values are known */
    const etl_json *sql = lit(h, params, "sql"), *pv = lit(h, params, "params");
    if (rp->list_sql && sql && h->json_type(sql) == ETL_JSON_ARRAY && pv &&
        h->json_type(pv) == ETL_JSON_ARRAY) {
        if (h->json_size(pv) != h->json_size(sql))
            problem(rp, "params", "with a list of statements, params is one list of values "
                    "per statement: %zu statements, %zu lists", h->json_size(sql),
                    h->json_size(pv));
        for (size_t i = 0; i < h->json_size(pv); i++) {
            etl_json_type t = h->json_type(h->json_at(pv, i));
            if (t != ETL_JSON_ARRAY && t != ETL_JSON_NULL)
                problem(rp, "params", "item %zu must be the list of values of statement %zu "
                        "(or null), not %s", i + 1, i + 1, type_name(t));
        }
    }
    const char *mode = h->json_string(lit(h, params, "mode"), NULL);
    bool mode_known = spec == load_params && !given(h, params, "mode.$");
    if (!mode && mode_known)
        mode = "append";
    if (mode) {
        bool replace = strcmp(mode, "replace") == 0, merge = strcmp(mode, "merge") == 0;
        if (replace && !given(h, params, "key_column"))
            problem(rp, "key_column", "mode replace needs key_column: the column whose "
                    "rows equal to key are replaced");
        if (replace && !given(h, params, "key"))
            problem(rp, "key", "mode replace needs key: the value of key_column to replace");
        if (!replace && given(h, params, "key_column"))
            problem(rp, "key_column", "applies to mode replace only (mode is %s)", mode);
        if (merge && !given(h, params, "primary_key"))
            problem(rp, "primary_key", "mode merge needs primary_key: the list of columns "
                    "that identify a row (a unique key of the table)");
        if (!merge && given(h, params, "primary_key"))
            problem(rp, "primary_key", "applies to mode merge only (mode is %s)", mode);
    }
    const char *table = h->json_string(lit(h, params, "table"), NULL);
    if (table) {
        char a[256], b[256];
        const char *why = NULL;
        if (!pg_split_table(table, a, b, sizeof a, &why))
            problem(rp, "table", "'%s' %s", table, why);
    }
    if (!o || rp->problems)
        return;
    memset(o, 0, sizeof *o);
    if (sql && h->json_type(sql) == ETL_JSON_ARRAY)
        o->sql_list = sql;
    else
        o->sql = h->json_string(sql, NULL);
    o->params = pv;
    o->max_rows = 10000;
    o->max_bytes = (int64_t)16 << 20;
    h->json_int(lit(h, params, "max_rows"), &o->max_rows);
    h->json_int(lit(h, params, "max_bytes"), &o->max_bytes);
    o->file = h->json_string(lit(h, params, "file"), NULL);
    o->table = table;
    o->key_column = h->json_string(lit(h, params, "key_column"), NULL);
    o->key = lit(h, params, "key");
    o->primary_key = lit(h, params, "primary_key");
    o->columns = lit(h, params, "columns");
    for (int m = 0; mode && modes[m]; m++)
        if (strcmp(modes[m], mode) == 0)
            o->mode = (pg_mode)m;
    h->json_bool(lit(h, params, "create"), &o->create);
    h->json_bool(lit(h, params, "keep"), &o->keep);
}

/* ---------- actions ---------- */

#define ACTION(name, spec, is_exec, runner)                                                   \
    static bool name##_check(const etl_host *h, const etl_json *params, etl_checker *chk)    \
    {                                                                                         \
        report rp = {.h = h, .chk = chk, .action = "postgres." #name, .list_sql = is_exec};   \
        check(&rp, params, spec, NULL);                                                       \
        return rp.problems == 0;                                                              \
    }                                                                                         \
    static etl_status name##_run(const etl_host *h, etl_task *task, etl_conn *conn,          \
                                 const etl_json *params, etl_json **out_result,               \
                                 etl_error *err)                                              \
    {                                                                                         \
        report rp = {.h = h, .err = err, .action = "postgres." #name, .list_sql = is_exec};   \
        pg_opts o;                                                                            \
        *out_result = NULL;                                                                   \
        check(&rp, params, spec, &o);                                                         \
        if (rp.problems)                                                                      \
            return err->status;                                                               \
        if (!conn)                                                                            \
            return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,                        \
                           "postgres." #name " needs a connection (Parameters.connection)");  \
        return runner(h, task, conn, &o, out_result, err);                                    \
    }

ACTION(query, query_params, false, pg_query_run)
ACTION(exec, exec_params, true, pg_exec_run)
ACTION(extract, extract_params, false, pg_extract_run)
ACTION(load, load_params, false, pg_load_run)

static const etl_action actions[] = {
    {sizeof(etl_action), "query",
     "run a query with bound parameters; its rows as JSON (small results, capped)",
     ETL_ACTION_NEEDS_CONNECTION, query_check, query_run},
    {sizeof(etl_action), "exec",
     "run a statement, or a list of them in one transaction; the affected row counts",
     ETL_ACTION_NEEDS_CONNECTION, exec_check, exec_run},
    {sizeof(etl_action), "extract",
     "stream a query's rows (server-side cursor) into a staged CSV file",
     ETL_ACTION_NEEDS_CONNECTION, extract_check, extract_run},
    {sizeof(etl_action), "load",
     "COPY a staged file into a table in one transaction (append, replace, truncate, merge)",
     ETL_ACTION_NEEDS_CONNECTION, load_check, load_run},
    {0, NULL, NULL, 0, NULL, NULL},
};

static etl_status global_init(const etl_host *h, etl_error *err)
{
    if (!PQisthreadsafe())
        return h->fail(err, ETL_EINVAL, "Etl.ConnectionFailed", false,
                       "postgres: this libpq was built without thread safety; etlrun's "
                       "workers need a thread-safe libpq (libpq 9.6+ packages are)");
    return ETL_OK;
}

static const etl_connector connector = {
    .abi_version = ETL_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(etl_connector),
    .name = "postgres",
    .version = "1.0",
    .description = "PostgreSQL (libpq): queries, statements, cursor extracts, COPY loads",
    .global_init = global_init,
    .check_settings = pg_check_settings,
    .open = pg_open,
    .close = pg_close,
    .alive = pg_alive,
    .server_version = pg_server_version,
    .actions = actions,
};

const etl_connector *etl_builtin_postgres(void);

const etl_connector *etl_builtin_postgres(void) { return &connector; }
