/* The `mysql` connector (MySQL 5.7+/8, MariaDB 10.3+ through MariaDB Connector/C): its
 * table (etl_builtin_mysql), the library's process and thread initialisation, and the
 * Parameters helpers and checks the actions share. See docs/connectors/sql.md. */
#include "myc.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- reporting and Parameters ---------- */

void myc_problem(myc_report *r, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->chk)
        r->host->check_error(r->chk, field, "%s", msg);
    else if (r->problems == 0 && r->err)
        r->host->fail(r->err, ETL_EINVAL, "Etl.InvalidInput", false, "%s: '%s': %s",
                      r->what, field, msg);
    r->problems++;
}

int myc_param(const etl_host *h, const etl_json *obj, const char *key, etl_json **out)
{
    etl_json *v = h->json_get(obj, key);
    if (v) {
        if (out)
            *out = v;
        return MYC_LITERAL;
    }
    char k[256];
    snprintf(k, sizeof k, "%s.$", key);
    return h->json_get(obj, k) ? MYC_DYNAMIC : MYC_ABSENT;
}

void myc_known_keys(myc_report *r, const etl_json *obj, const char *const *keys)
{
    const etl_host *h = r->host;
    size_t n = h->json_size(obj);
    for (size_t i = 0; i < n; i++) {
        const char *key = h->json_key_at(obj, i, NULL);
        char bare[256];
        size_t len = strlen(key);
        if (len > 2 && strcmp(key + len - 2, ".$") == 0)
            len -= 2;
        if (len >= sizeof bare)
            len = sizeof bare - 1;
        memcpy(bare, key, len);
        bare[len] = '\0';
        bool known = false;
        for (const char *const *k = keys; *k && !known; k++)
            known = strcmp(*k, bare) == 0;
        if (!known) {
            char list[512] = "";
            size_t used = 0;
            for (const char *const *k = keys; *k; k++) {
                int w = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", *k);
                if (w < 0 || (size_t)w >= sizeof list - used)
                    break;
                used += (size_t)w;
            }
            myc_problem(r, bare, "unknown field; expected one of: %s", list);
        }
    }
}

void myc_get_string(myc_report *r, const etl_json *obj, const char *key, const char **out)
{
    etl_json *v;
    if (myc_param(r->host, obj, key, &v) != MYC_LITERAL)
        return;
    const char *s = r->host->json_string(v, NULL);
    if (!s || !*s) {
        myc_problem(r, key, "must be a non-empty string");
        return;
    }
    *out = s;
}

void myc_get_int(myc_report *r, const etl_json *obj, const char *key, int64_t min, int64_t *out)
{
    etl_json *v;
    int64_t i;
    if (myc_param(r->host, obj, key, &v) != MYC_LITERAL)
        return;
    if (!r->host->json_int(v, &i) || i < min) {
        myc_problem(r, key, "must be an integer >= %lld", (long long)min);
        return;
    }
    *out = i;
}

void myc_get_bool(myc_report *r, const etl_json *obj, const char *key, bool *out)
{
    etl_json *v;
    bool b;
    if (myc_param(r->host, obj, key, &v) != MYC_LITERAL)
        return;
    if (!r->host->json_bool(v, &b)) {
        myc_problem(r, key, "must be true or false");
        return;
    }
    *out = b;
}

static bool scalar(const etl_host *h, const etl_json *v)
{
    etl_json_type t = h->json_type(v);
    return t != ETL_JSON_ARRAY && t != ETL_JSON_OBJECT;
}

/* One statement's params: null or an array of values. Arrays and objects are bound as
 * their JSON text (for JSON columns), so any value is accepted. */
static void check_params(myc_report *r, const etl_json *v, const char *field)
{
    etl_json_type t = r->host->json_type(v);
    if (t != ETL_JSON_NULL && t != ETL_JSON_ARRAY)
        myc_problem(r, field, "must be a list of values bound to the '?' placeholders");
}

void myc_check_sql(myc_report *r, const etl_json *params, bool allow_list)
{
    const etl_host *h = r->host;
    etl_json *v = NULL, *p = NULL;
    int sql = myc_param(h, params, "sql", &v);
    int prm = myc_param(h, params, "params", &p);
    if (sql == MYC_ABSENT) {
        myc_problem(r, "", "'sql' is required: the statement to run");
        return;
    }
    size_t n_sql = 0; /* statements in a list; 0 = one statement */
    if (sql == MYC_LITERAL) {
        etl_json_type t = h->json_type(v);
        if (t == ETL_JSON_ARRAY && allow_list) {
            n_sql = h->json_size(v);
            if (n_sql == 0)
                myc_problem(r, "sql", "must not be an empty list");
            for (size_t i = 0; i < n_sql; i++) {
                const char *s = h->json_string(h->json_at(v, i), NULL);
                if (!s || !*s) {
                    char f[64];
                    snprintf(f, sizeof f, "sql.%zu", i);
                    myc_problem(r, f, "must be a non-empty string (one SQL statement)");
                }
            }
        } else {
            const char *s = h->json_string(v, NULL);
            if (!s || !*s)
                myc_problem(r, "sql", allow_list ? "must be a SQL statement or a list of them"
                                                 : "must be a SQL statement (a string)");
        }
    }
    if (prm != MYC_LITERAL)
        return;
    if (n_sql == 0 || h->json_type(p) == ETL_JSON_NULL) {
        check_params(r, p, "params");
        /* a flat list with a list of statements would bind the same values to each:
         * ambiguous, so each statement's params is its own list */
        if (n_sql && h->json_type(p) == ETL_JSON_ARRAY)
            for (size_t i = 0; i < h->json_size(p); i++)
                if (scalar(h, h->json_at(p, i)) &&
                    h->json_type(h->json_at(p, i)) != ETL_JSON_NULL) {
                    myc_problem(r, "params", "with a list of statements, must be a list of "
                                             "lists: the params of each statement");
                    break;
                }
        return;
    }
    if (h->json_type(p) != ETL_JSON_ARRAY) {
        myc_problem(r, "params", "must be a list: the params of each statement");
        return;
    }
    if (h->json_size(p) != n_sql)
        myc_problem(r, "params", "has %zu entries but sql has %zu statements; give one list "
                                 "(or null) per statement", h->json_size(p), n_sql);
    for (size_t i = 0; i < h->json_size(p); i++) {
        char f[64];
        snprintf(f, sizeof f, "params.%zu", i);
        check_params(r, h->json_at(p, i), f);
    }
}

/* ---------- action checks ---------- */

static const char *const query_keys[] = {"connection", "sql", "params", "max_rows",
                                         "max_bytes", "key", NULL};
static const char *const exec_keys[] = {"connection", "sql", "params", "key", NULL};
static const char *const extract_keys[] = {"connection", "sql", "params", "key", NULL};

static bool check_common(const etl_host *h, const etl_json *params, etl_checker *chk,
                         const char *what, const char *const *keys, bool allow_list)
{
    myc_report r = {.host = h, .chk = chk, .what = what};
    if (h->json_type(params) != ETL_JSON_OBJECT) {
        myc_problem(&r, "", "Parameters must be an object");
        return false;
    }
    myc_known_keys(&r, params, keys);
    myc_check_sql(&r, params, allow_list);
    int64_t cap = 0;
    myc_get_int(&r, params, "max_rows", 1, &cap);
    myc_get_int(&r, params, "max_bytes", 1, &cap);
    return r.problems == 0;
}

static bool query_check(const etl_host *h, const etl_json *params, etl_checker *chk)
{
    return check_common(h, params, chk, "mysql.query", query_keys, false);
}

static bool exec_check(const etl_host *h, const etl_json *params, etl_checker *chk)
{
    return check_common(h, params, chk, "mysql.exec", exec_keys, true);
}

static bool extract_check(const etl_host *h, const etl_json *params, etl_checker *chk)
{
    return check_common(h, params, chk, "mysql.extract", extract_keys, false);
}

/* ---------- process and threads ---------- */

/* mysql_library_init/end are not thread-safe and a process may run several pipelines
 * (each registry calls global_init/cleanup): count the users. */
static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static int lib_users; /* guarded by lib_mu */

static etl_status global_init(const etl_host *h, etl_error *err)
{
    pthread_mutex_lock(&lib_mu);
    int rc = lib_users ? 0 : mysql_library_init(0, NULL, NULL);
    if (rc == 0)
        lib_users++;
    pthread_mutex_unlock(&lib_mu);
    if (rc != 0)
        return h->fail(err, ETL_EIO, "Etl.ConnectionFailed", false,
                       "mysql: MariaDB Connector/C could not be initialised (mysql_library_init "
                       "returned %d)", rc);
    return ETL_OK;
}

static void global_cleanup(const etl_host *h)
{
    (void)h;
    /* a kill thread may still be talking to a server: let it finish first */
    myc_kill_threads_wait();
    pthread_mutex_lock(&lib_mu);
    if (lib_users > 0 && --lib_users == 0)
        mysql_library_end();
    pthread_mutex_unlock(&lib_mu);
}

static void thread_init(const etl_host *h)
{
    (void)h;
    mysql_thread_init();
}

static void thread_end(const etl_host *h)
{
    (void)h;
    mysql_thread_end();
}

static const etl_action actions[] = {
    {
        .struct_size = sizeof(etl_action),
        .name = "query",
        .summary = "a query with bound parameters; the result is {rows, count} (small results)",
        .flags = ETL_ACTION_NEEDS_CONNECTION,
        .check = query_check,
        .run = myc_query_run,
    },
    {
        .struct_size = sizeof(etl_action),
        .name = "exec",
        .summary = "statements (one, or a list in one transaction); the result is {affected}",
        .flags = ETL_ACTION_NEEDS_CONNECTION,
        .check = exec_check,
        .run = myc_exec_run,
    },
    {
        .struct_size = sizeof(etl_action),
        .name = "extract",
        .summary = "a query streamed (unbuffered) into a staged CSV file; the result is its "
                   "manifest",
        .flags = ETL_ACTION_NEEDS_CONNECTION,
        .check = extract_check,
        .run = myc_extract_run,
    },
    {
        .struct_size = sizeof(etl_action),
        .name = "load",
        .summary = "a staged file bulk-loaded (LOAD DATA LOCAL INFILE) into a table in one "
                   "transaction",
        .flags = ETL_ACTION_NEEDS_CONNECTION,
        .check = myc_load_check,
        .run = myc_load_run,
    },
    {0},
};

static const etl_connector connector = {
    .abi_version = ETL_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(etl_connector),
    .name = "mysql",
    .version = "1.0.0",
    .description = "MySQL and MariaDB (MariaDB Connector/C): query, exec, extract, load",
    .global_init = global_init,
    .global_cleanup = global_cleanup,
    .thread_init = thread_init,
    .thread_end = thread_end,
    .check_settings = myc_check_settings,
    .open = myc_open,
    .close = myc_close,
    .alive = myc_alive,
    .server_version = myc_server_version,
    .actions = actions,
};

const etl_connector *etl_builtin_mysql(void) { return &connector; }
