/* Tests of the built-in postgres connector against the throwaway PostgreSQL server of
 * tests/servers/db.sh (ctest fixture "db"; settings from $ETL_DB_ENV, see dbenv.h).
 * Actions are called directly through etl_builtin_postgres()->actions with the host's
 * services table, as the Task state does; results are checked with SQL on a second,
 * plain libpq connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <etlrun/connector.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dbenv.h"
#include "diag.h"
#include "doc.h"
#include "host.h"
#include "ledger_cmd.h"
#include "machine.h"

const etl_connector *etl_builtin_postgres(void);

static const etl_host *H;
static const etl_connector *PG;
static PGconn *admin;          /* verification connection (plain libpq) */
static char stage_dir[64];

/* ------------------------------------------------------------ helpers */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static json_t *settings(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "host", dbenv("ETL_PG_HOST"), "port",
                     dbenv("ETL_PG_PORT"), "user", dbenv("ETL_PG_USER"), "database",
                     dbenv("ETL_PG_DB"), "password_env", "ETL_PG_PASSWORD");
}

static etl_status open_with(json_t *s, etl_conn **out, etl_error *err)
{
    atomic_int cancel = 0;
    etl_task t;
    host_task_init(&t, "Open", "", "wh", stage_dir, 1, &cancel);
    memset(err, 0, sizeof *err);
    etl_status st = PG->open(H, &t, host_wrap(s), out, err);
    pthread_mutex_destroy(&t.mu);
    json_decref(s);
    return st;
}

static etl_conn *open_conn(void)
{
    etl_conn *c = NULL;
    etl_error err;
    etl_status st = open_with(settings(), &c, &err);
    if (st != ETL_OK)
        fail_msg("open: %s: %s", err.name, err.cause);
    return c;
}

static const etl_action *action(const char *name)
{
    for (const etl_action *a = PG->actions; a->name; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    fail_msg("no action %s", name);
    return NULL;
}

/* A task run by one action call; cancellable from another thread. */
typedef struct call {
    etl_task task;
    atomic_int cancel;
} call;

static void call_init(call *k, const char *key)
{
    atomic_init(&k->cancel, 0);
    host_task_init(&k->task, "S", key, "wh", stage_dir, 1, &k->cancel);
}

static etl_status call_run(call *k, const char *name, etl_conn *c, json_t *params, json_t **out,
                           etl_error *err)
{
    etl_json *res = NULL;
    memset(err, 0, sizeof *err);
    etl_status st = action(name)->run(H, &k->task, c, host_wrap(params), &res, err);
    host_task_done(&k->task);
    json_decref(params);
    if (out)
        *out = host_json(res);
    else
        json_decref(host_json(res));
    if (st == ETL_OK)
        assert_int_equal(err->status, ETL_OK);
    else
        assert_true(err->name[0] != '\0');
    return st;
}

/* Run an action; params steals; the result (new reference) in *out when out. */
static etl_status act(const char *name, etl_conn *c, const char *key, json_t *params, json_t **out,
                      etl_error *err)
{
    call k;
    call_init(&k, key);
    etl_status st = call_run(&k, name, c, params, out, err);
    pthread_mutex_destroy(&k.task.mu);
    return st;
}

static json_t *must(const char *name, etl_conn *c, const char *key, json_t *params)
{
    json_t *out = NULL;
    etl_error err;
    if (act(name, c, key, params, &out, &err) != ETL_OK)
        fail_msg("%s: %s: %s", name, err.name, err.cause);
    return out;
}

static void sql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sql(const char *fmt, ...)
{
    char q[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(admin, q);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        fail_msg("%s: %s", q, PQerrorMessage(admin));
    PQclear(r);
}

/* The first value of a query as text (caller frees; NULL for SQL NULL). */
static char *sql_text(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sql_text(const char *fmt, ...)
{
    char q[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(admin, q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
        fail_msg("%s: %s", q, PQerrorMessage(admin));
    char *v = PQgetisnull(r, 0, 0) ? NULL : strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static long long sql_int(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long sql_int(const char *fmt, ...)
{
    char q[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    char *v = sql_text("%s", q);
    long long n = v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

/* md5 over every row of a table in id order (row text keeps NULL and "" apart). */
static char *table_md5(const char *table)
{
    return sql_text("SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM %s t", table);
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* True when the staging directory holds a file (finished or temporary) whose name
 * starts with prefix or "." prefix. */
static bool staged(const char *prefix)
{
    DIR *d = opendir(stage_dir);
    struct dirent *e;
    bool found = false;
    size_t n = strlen(prefix);
    while (d && (e = readdir(d)) != NULL)
        found |= strncmp(e->d_name, prefix, n) == 0 ||
                 (e->d_name[0] == '.' && strncmp(e->d_name + 1, prefix, n) == 0);
    if (d)
        closedir(d);
    return found;
}

static json_t *extract(etl_conn *c, const char *key, const char *query)
{
    return must("extract", c, key, json_pack("{s:s}", "sql", query));
}

static const char *file_of(json_t *manifest)
{
    return json_string_value(json_object_get(manifest, "file"));
}

/* ------------------------------------------------------------ setup */

static int group_setup(void **state)
{
    (void)state;
    H = host_services();
    PG = etl_builtin_postgres();
    etl_error err;
    if (PG->global_init && PG->global_init(H, &err) != ETL_OK)
        return -1;
    const char *kw[] = {"host", "port", "user", "dbname", "password", NULL};
    const char *val[] = {dbenv("ETL_PG_HOST"), dbenv("ETL_PG_PORT"), dbenv("ETL_PG_USER"),
                         dbenv("ETL_PG_DB"), dbenv("ETL_PG_PASSWORD"), NULL};
    admin = PQconnectdbParams(kw, val, 0);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "admin connection: %s", PQerrorMessage(admin));
        return -1;
    }
    PQclear(PQexec(admin, "SET client_min_messages = warning"));
    snprintf(stage_dir, sizeof stage_dir, "/tmp/etl-test-pg-XXXXXX");
    return mkdtemp(stage_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    PQfinish(admin);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", stage_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ connections */

static void test_connect_refused_is_transient(void **state)
{
    (void)state;
    json_t *s = settings();
    json_object_set_new(s, "port", json_integer(1)); /* nothing listens on port 1 */
    etl_conn *c = NULL;
    etl_error err;
    assert_int_equal(open_with(s, &c, &err), ETL_ECONNECT);
    assert_null(c);
    assert_string_equal(err.name, "Etl.ConnectionFailed");
    assert_true(err.transient);
    assert_non_null(strstr(err.cause, "etl@127.0.0.1:1/etl"));
}

static void test_connect_bad_password_not_transient(void **state)
{
    (void)state;
    setenv("ETL_TEST_BAD_PW", "Wr0ng-Secret-7731", 1);
    json_t *s = settings();
    json_object_set_new(s, "password_env", json_string("ETL_TEST_BAD_PW"));
    etl_conn *c = NULL;
    etl_error err;
    assert_int_equal(open_with(s, &c, &err), ETL_ECONNECT);
    assert_string_equal(err.name, "Etl.ConnectionFailed");
    assert_false(err.transient);
    assert_null(strstr(err.cause, "Wr0ng-Secret-7731"));
    assert_non_null(strstr(err.cause, "password authentication failed"));
    assert_non_null(strstr(err.cause, "etl@127.0.0.1:"));
    /* an unknown user is an authentication failure too */
    s = settings();
    json_object_set_new(s, "user", json_string("nobody_here"));
    assert_int_equal(open_with(s, &c, &err), ETL_ECONNECT);
    assert_false(err.transient);
}

static void test_password_file_mode(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/pw", stage_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\nsecond line ignored\n", dbenv("ETL_PG_PASSWORD"));
    fclose(f);
    chmod(path, 0644);
    json_t *s = settings();
    json_object_del(s, "password_env");
    json_object_set_new(s, "password_file", json_string(path));
    etl_conn *c = NULL;
    etl_error err;
    assert_int_not_equal(open_with(json_incref(s), &c, &err), ETL_OK);
    assert_non_null(strstr(err.cause, "readable by others"));
    assert_null(strstr(err.cause, dbenv("ETL_PG_PASSWORD")));
    chmod(path, 0600);
    assert_int_equal(open_with(s, &c, &err), ETL_OK);
    assert_true(PG->alive(H, c));
    PG->close(H, c);
    unlink(path);
}

static void test_connect_url_socket_and_session(void **state)
{
    (void)state;
    /* the URL (no password in it) with the password from the environment */
    etl_conn *c = NULL;
    etl_error err;
    json_t *s = json_pack("{s:s, s:s, s:s}", "url", dbenv("ETL_PG_URL"), "password_env",
                          "ETL_PG_PASSWORD", "application_name", "etl-test-app");
    if (open_with(s, &c, &err) != ETL_OK)
        fail_msg("%s", err.cause);
    json_t *r = must("query", c, "", json_pack("{s:s}", "sql",
                                               "SELECT current_setting('application_name') AS a, "
                                               "current_setting('TimeZone') AS tz, "
                                               "current_database() AS db"));
    json_t *row = json_array_get(json_object_get(r, "rows"), 0);
    assert_string_equal(json_string_value(json_object_get(row, "a")), "etl-test-app");
    assert_string_equal(json_string_value(json_object_get(row, "tz")), "UTC");
    assert_string_equal(json_string_value(json_object_get(row, "db")), dbenv("ETL_PG_DB"));
    json_decref(r);
    PG->close(H, c);
    /* the Unix socket directory, a default application_name and init_sql */
    s = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "socket", dbenv("ETL_PG_SOCKET"), "port",
                  dbenv("ETL_PG_PORT"), "user", dbenv("ETL_PG_USER"), "database",
                  dbenv("ETL_PG_DB"), "password_env", "ETL_PG_PASSWORD", "init_sql",
                  "SET search_path = pg_catalog; SET work_mem = '7MB'");
    if (open_with(s, &c, &err) != ETL_OK)
        fail_msg("%s", err.cause);
    r = must("query", c, "", json_pack("{s:s}", "sql",
                                       "SELECT current_setting('application_name') AS a, "
                                       "current_setting('work_mem') AS w, "
                                       "inet_server_addr() IS NULL AS unix_socket"));
    row = json_array_get(json_object_get(r, "rows"), 0);
    assert_true(json_is_true(json_object_get(row, "unix_socket")));
    assert_string_equal(json_string_value(json_object_get(row, "a")), "etlrun");
    assert_string_equal(json_string_value(json_object_get(row, "w")), "7MB");
    json_decref(r);
    PG->close(H, c);
    /* a failing init_sql fails the open */
    s = settings();
    json_object_set_new(s, "init_sql", json_string("SET no_such_setting = 1"));
    assert_int_equal(open_with(s, &c, &err), ETL_EQUERY);
    assert_non_null(strstr(err.cause, "init_sql"));
}

/* Validate-time check of settings written as YAML; the messages joined (caller frees). */
static char *check_settings(const char *yaml)
{
    diag *d = diag_new("p.yaml");
    doc *dc = doc_load_string(yaml, strlen(yaml), "p.yaml", false, d);
    assert_non_null(dc);
    etl_checker chk = {.d = d, .node = dc->root, .what = "connection 'wh'"};
    bool ok = PG->check_settings(H, host_wrap(dc->root->json), &chk);
    assert_int_equal(ok, diag_count(d) == 0);
    char *out = calloc(1, 8192);
    for (size_t i = 0; i < diag_count(d); i++)
        snprintf(out + strlen(out), 8192 - strlen(out), "%s\n", diag_message(d, i));
    doc_free(dc);
    diag_free(d);
    return out;
}

static void test_check_settings(void **state)
{
    (void)state;
    char *m = check_settings("url: postgresql://etl:Hunter2Pw@db:5432/w\n");
    assert_non_null(strstr(m, "'url'"));
    assert_non_null(strstr(m, "password in the url is refused"));
    assert_null(strstr(m, "Hunter2Pw"));
    free(m);
    m = check_settings("url: postgresql://etl@db:5432/w\nsslmode: verify-full\nport: 5433\n"
                       "connect_timeout: 5\napplication_name: nightly\n");
    assert_string_equal(m, "");
    free(m);
    m = check_settings("url: mysql://etl@db/w\nsslmode: sometimes\nport: 70000\npasswd: x\n"
                       "password_env: A\npassword_file: /nonexistent/pw\n");
    assert_non_null(strstr(m, "must start with postgresql://"));
    assert_non_null(strstr(m, "'sometimes' is not one of"));
    assert_non_null(strstr(m, "'port': must be an integer from 1 to 65535"));
    assert_non_null(strstr(m, "unknown setting"));
    assert_non_null(strstr(m, "not both"));
    free(m);
    m = check_settings("url: postgresql://etl@db/w?sslmode=disable\n");
    assert_non_null(strstr(m, "query parameters are not accepted"));
    free(m);
}

static void test_alive_detects_terminated_backend(void **state)
{
    (void)state;
    etl_conn *c = open_conn();
    assert_true(PG->alive(H, c));
    json_t *r = must("query", c, "", json_pack("{s:s}", "sql", "SELECT pg_backend_pid() AS pid"));
    long long pid = json_integer_value(json_object_get(json_array_get(json_object_get(r, "rows"), 0), "pid"));
    json_decref(r);
    assert_int_equal(sql_int("SELECT pg_terminate_backend(%lld)::int", pid), 1);
    usleep(200 * 1000);
    assert_false(PG->alive(H, c));
    PG->close(H, c);
}

/* ------------------------------------------------------------ query and exec */

static void test_query_value_mapping(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS vmap");
    sql("CREATE TABLE vmap (id int, i2 smallint, i4 integer, i8 bigint, num numeric(30,10), "
        "f4 real, f8 double precision, fnan double precision, b boolean, d date, "
        "ts timestamp(6), tstz timestamptz, tm time, js json, jb jsonb, ba bytea, t text, "
        "vc varchar(10), u uuid, iv interval)");
    sql("INSERT INTO vmap VALUES (1, 32767, -2147483648, 9223372036854775807, "
        "'12345678901234567890.0123456789', 1.5, 0.1, 'NaN', true, '2026-11-22', "
        "'2026-11-22 03:00:00.123456', '2026-11-22 03:00:00+02', '03:00:00', "
        "'{\"a\": [1, 2]}', '{\"b\": null}', '\\x00ff10', 'h\u00e9llo \"q\"', '', "
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:00:00')");
    sql("INSERT INTO vmap (id) VALUES (2)");
    etl_conn *c = open_conn();
    json_t *r = must("query", c, "", json_pack("{s:s}", "sql", "SELECT * FROM vmap ORDER BY id"));
    assert_int_equal(json_integer_value(json_object_get(r, "count")), 2);
    json_t *row = json_array_get(json_object_get(r, "rows"), 0);
    /* keys in column order */
    assert_string_equal(json_object_iter_key(json_object_iter(row)), "id");
    assert_true(json_is_integer(json_object_get(row, "i2")));
    assert_int_equal(json_integer_value(json_object_get(row, "i2")), 32767);
    assert_int_equal(json_integer_value(json_object_get(row, "i4")), -2147483648LL);
    assert_true(json_integer_value(json_object_get(row, "i8")) == 9223372036854775807LL);
    assert_string_equal(json_string_value(json_object_get(row, "num")),
                        "12345678901234567890.0123456789");
    assert_true(json_is_real(json_object_get(row, "f4")));
    assert_true(json_real_value(json_object_get(row, "f4")) == 1.5);
    assert_true(json_real_value(json_object_get(row, "f8")) == 0.1);
    assert_string_equal(json_string_value(json_object_get(row, "fnan")), "NaN");
    assert_true(json_is_true(json_object_get(row, "b")));
    assert_string_equal(json_string_value(json_object_get(row, "d")), "2026-11-22");
    assert_string_equal(json_string_value(json_object_get(row, "ts")), "2026-11-22T03:00:00.123456");
    assert_string_equal(json_string_value(json_object_get(row, "tstz")), "2026-11-22T01:00:00+00:00");
    assert_string_equal(json_string_value(json_object_get(row, "tm")), "03:00:00");
    json_t *js = json_object_get(row, "js");
    assert_true(json_is_object(js));
    assert_int_equal(json_integer_value(json_array_get(json_object_get(js, "a"), 1)), 2);
    assert_true(json_is_null(json_object_get(json_object_get(row, "jb"), "b")));
    assert_string_equal(json_string_value(json_object_get(row, "ba")), "\\x00ff10");
    assert_string_equal(json_string_value(json_object_get(row, "t")), "h\u00e9llo \"q\"");
    assert_string_equal(json_string_value(json_object_get(row, "vc")), "");
    assert_string_equal(json_string_value(json_object_get(row, "u")),
                        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_string_equal(json_string_value(json_object_get(row, "iv")), "1 day 02:00:00");
    /* NULL is null, for every type */
    row = json_array_get(json_object_get(r, "rows"), 1);
    assert_int_equal(json_object_size(row), 20);
    const char *k;
    json_t *v;
    json_object_foreach(row, k, v) if (strcmp(k, "id") != 0) assert_true(json_is_null(v));
    json_decref(r);
    PG->close(H, c);
}

static void test_params_bound_never_spliced(void **state)
{
    (void)state;
    const char *evil = "x'; DROP TABLE inj; --";
    sql("DROP TABLE IF EXISTS inj");
    sql("CREATE TABLE inj (k text, n int)");
    etl_conn *c = open_conn();
    json_t *r = must("exec", c, "", json_pack("{s:s, s:[s, i]}", "sql",
                                              "INSERT INTO inj VALUES ($1, $2)", "params", evil, 7));
    assert_int_equal(json_integer_value(json_object_get(r, "affected")), 1);
    json_decref(r);
    r = must("query", c, "", json_pack("{s:s, s:[s]}", "sql",
                                       "SELECT k, n FROM inj WHERE k = $1", "params", evil));
    assert_int_equal(json_integer_value(json_object_get(r, "count")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(r, "rows"), 0), "k")), evil);
    json_decref(r);
    assert_int_equal(sql_int("SELECT count(*) FROM inj"), 1);
    /* every JSON type binds as its text: integers, reals, booleans, null, objects */
    r = must("query", c, "", json_pack("{s:s, s:[I, f, b, n, {s:i}]}", "sql",
                                       "SELECT $1::bigint + 1 AS a, $2::float8 AS b, "
                                       "$3::boolean AS c, $4::text IS NULL AS d, "
                                       "($5::jsonb)->'x' AS e",
                                       "params", (json_int_t)9007199254740993LL, 0.1, 1, "x", 5));
    json_t *row = json_array_get(json_object_get(r, "rows"), 0);
    assert_true(json_integer_value(json_object_get(row, "a")) == 9007199254740994LL);
    assert_true(json_real_value(json_object_get(row, "b")) == 0.1);
    assert_true(json_is_true(json_object_get(row, "c")));
    assert_true(json_is_true(json_object_get(row, "d")));
    assert_int_equal(json_integer_value(json_object_get(row, "e")), 5);
    json_decref(r);
    PG->close(H, c);
}

static void test_query_caps(void **state)
{
    (void)state;
    etl_conn *c = open_conn();
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(act("query", c, "", json_pack("{s:s, s:i}", "sql",
                                                  "SELECT g FROM generate_series(1, 1000000) g",
                                                  "max_rows", 10), &out, &err), ETL_EQUERY);
    assert_string_equal(err.name, "Etl.QueryFailed");
    assert_non_null(strstr(err.cause, "max_rows"));
    assert_non_null(strstr(err.cause, "extract"));
    assert_null(out);
    /* exactly at the cap is fine, and the connection is usable after a cap error */
    json_t *r = must("query", c, "", json_pack("{s:s, s:i}", "sql",
                                               "SELECT g FROM generate_series(1, 10) g",
                                               "max_rows", 10));
    assert_int_equal(json_integer_value(json_object_get(r, "count")), 10);
    json_decref(r);
    assert_int_equal(act("query", c, "", json_pack("{s:s, s:i}", "sql",
                                                  "SELECT repeat('x', 1000) FROM generate_series(1, 100)",
                                                  "max_bytes", 5000), &out, &err), ETL_EQUERY);
    assert_non_null(strstr(err.cause, "max_bytes"));
    assert_true(PG->alive(H, c));
    PG->close(H, c);
}

static void test_query_errors(void **state)
{
    (void)state;
    etl_conn *c = open_conn();
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(act("query", c, "", json_pack("{s:s}", "sql", "SELECT * FROM no_such_table"),
                         &out, &err), ETL_EQUERY);
    assert_string_equal(err.name, "Etl.QueryFailed");
    assert_non_null(strstr(err.cause, "SQLSTATE 42P01"));
    assert_non_null(strstr(err.cause, "no_such_table"));
    assert_false(err.transient);
    /* serialization failures and deadlocks are worth a retry */
    assert_int_equal(act("exec", c, "", json_pack("{s:s}", "sql",
                                                 "DO $$BEGIN RAISE EXCEPTION 'conflict' USING "
                                                 "ERRCODE = '40001'; END$$"), &out, &err), ETL_EQUERY);
    assert_true(err.transient);
    assert_non_null(strstr(err.cause, "40001"));
    /* two statements in one string are refused: one statement per call */
    assert_int_equal(act("exec", c, "", json_pack("{s:s}", "sql", "SELECT 1; SELECT 2"),
                         &out, &err), ETL_EQUERY);
    /* COPY to or from the client belongs to extract and load; the connection survives */
    assert_int_equal(act("exec", c, "", json_pack("{s:s}", "sql", "COPY (SELECT 1) TO STDOUT"),
                         &out, &err), ETL_EQUERY);
    assert_non_null(strstr(err.cause, "use extract"));
    assert_int_equal(act("query", c, "", json_pack("{s:s}", "sql", "COPY (SELECT 1) TO STDOUT"),
                         &out, &err), ETL_EQUERY);
    sql("DROP TABLE IF EXISTS cp_in");
    sql("CREATE TABLE cp_in (a int)");
    assert_int_equal(act("exec", c, "", json_pack("{s:s}", "sql", "COPY cp_in FROM STDIN"),
                         &out, &err), ETL_EQUERY);
    assert_true(PG->alive(H, c));
    json_t *one = must("query", c, "", json_pack("{s:s}", "sql", "SELECT 1 AS x"));
    assert_int_equal(json_integer_value(json_object_get(one, "count")), 1);
    json_decref(one);
    /* a bad parameter known only at run time */
    assert_int_equal(act("query", c, "", json_pack("{s:s, s:s}", "sql", "SELECT 1", "params", "x"),
                         &out, &err), ETL_EINVAL);
    assert_string_equal(err.name, "Etl.InvalidInput");
    assert_true(PG->alive(H, c));
    PG->close(H, c);
}

static void test_exec_list_is_one_transaction(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS ex");
    etl_conn *c = open_conn();
    json_t *r = must("exec", c, "", json_pack("{s:s}", "sql", "CREATE TABLE ex (id int PRIMARY KEY)"));
    assert_int_equal(json_integer_value(json_object_get(r, "affected")), 0);
    json_decref(r);
    r = must("exec", c, "", json_pack("{s:[s, s], s:[[i, i], n]}", "sql",
                                      "INSERT INTO ex VALUES ($1), ($2)",
                                      "UPDATE ex SET id = id + 10", "params", 1, 2));
    json_t *aff = json_object_get(r, "affected");
    assert_int_equal(json_array_size(aff), 2);
    assert_int_equal(json_integer_value(json_array_get(aff, 0)), 2);
    assert_int_equal(json_integer_value(json_array_get(aff, 1)), 2);
    json_decref(r);
    /* the second statement fails: the first is rolled back */
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(act("exec", c, "", json_pack("{s:[s, s]}", "sql", "DELETE FROM ex",
                                                 "INSERT INTO ex VALUES (1), (1)"), &out, &err),
                     ETL_EQUERY);
    assert_non_null(strstr(err.cause, "sql[1]"));
    assert_non_null(strstr(err.cause, "23505"));
    assert_int_equal(sql_int("SELECT count(*) FROM ex"), 2);
    assert_true(PG->alive(H, c)); /* idle again: rolled back */
    PG->close(H, c);
}

/* ------------------------------------------------------------ extract and load */

/* 50,000 rows whose values cover what CSV and COPY get wrong. */
static void make_awkward(const char *table, int n)
{
    sql("DROP TABLE IF EXISTS %s", table);
    sql("CREATE TABLE %s (id int PRIMARY KEY, t text, b bytea, n numeric(20,4), "
        "ts timestamptz, f float8, j jsonb, flag boolean, d date)", table);
    sql("INSERT INTO %s SELECT g, "
        "CASE g %% 12 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'a,\"b\"' || E'\\n' || 'c' "
        "WHEN 3 THEN '\u00fc\u20ac\U0001F600 ' || g WHEN 4 THEN E'cr\\r\\nlf' WHEN 5 THEN ' lead' "
        "WHEN 6 THEN 'trail ' WHEN 7 THEN E'back\\\\slash' WHEN 8 THEN '\"' WHEN 9 THEN ',' "
        "WHEN 10 THEN 'NULL' ELSE md5(g::text) END, "
        "CASE g %% 7 WHEN 0 THEN NULL WHEN 1 THEN ''::bytea ELSE decode(md5(g::text), 'hex') || '\\x2c0a22'::bytea END, "
        "CASE WHEN g %% 9 = 0 THEN NULL ELSE (g * 1.2345)::numeric(20,4) END, "
        "CASE WHEN g %% 11 = 0 THEN NULL ELSE '2026-01-01 00:00:00+00'::timestamptz + g * interval '1.5 second' END, "
        "CASE WHEN g %% 13 = 0 THEN NULL ELSE g / 7.0 END, "
        "CASE WHEN g %% 5 = 0 THEN NULL ELSE jsonb_build_object('g', g, 's', 'x,\"y\"') END, "
        "CASE WHEN g %% 3 = 0 THEN NULL ELSE g %% 2 = 0 END, "
        "DATE '2020-01-01' + g %% 1000 "
        "FROM generate_series(1, %d) g", table, n);
}

static void test_extract_load_roundtrip(void **state)
{
    (void)state;
    make_awkward("rt_src", 50000);
    sql("DROP TABLE IF EXISTS rt_dst");
    sql("CREATE TABLE rt_dst (LIKE rt_src)");
    etl_conn *c = open_conn();
    call k;
    call_init(&k, "k1");
    json_t *m = NULL;
    etl_error err;
    assert_int_equal(call_run(&k, "extract", c, json_pack("{s:s}", "sql",
                                                          "SELECT * FROM rt_src ORDER BY id"),
                              &m, &err), ETL_OK);
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), 50000);
    assert_int_equal(atomic_load(&k.task.rows), 50000);
    pthread_mutex_destroy(&k.task.mu);
    json_t *cols = json_object_get(m, "columns");
    assert_int_equal(json_array_size(cols), 9);
    assert_string_equal(json_string_value(json_object_get(json_array_get(cols, 0), "type")), "integer");
    assert_string_equal(json_string_value(json_object_get(json_array_get(cols, 3), "type")), "numeric(20,4)");
    assert_string_equal(json_string_value(json_object_get(json_array_get(cols, 4), "type")),
                        "timestamp with time zone");
    const char *file = file_of(m);
    assert_non_null(strstr(file, "S-k1-a1"));
    char manifest_path[512];
    snprintf(manifest_path, sizeof manifest_path, "%s.manifest.json", file);
    assert_true(file_exists(file) && file_exists(manifest_path));
    json_t *r = must("load", c, "k1", json_pack("{s:s, s:s}", "file", file, "table", "rt_dst"));
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 50000);
    assert_int_equal(json_integer_value(json_object_get(r, "deleted")), 0);
    assert_string_equal(json_string_value(json_object_get(r, "mode")), "append");
    assert_int_equal(json_integer_value(json_object_get(r, "bytes")),
                     json_integer_value(json_object_get(m, "bytes")));
    json_decref(r);
    /* identical both ways, and byte for byte by checksum */
    assert_int_equal(sql_int("SELECT count(*) FROM ((SELECT * FROM rt_src EXCEPT ALL SELECT * FROM rt_dst) "
                             "UNION ALL (SELECT * FROM rt_dst EXCEPT ALL SELECT * FROM rt_src)) x"), 0);
    char *a = table_md5("rt_src"), *b = table_md5("rt_dst");
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_int_equal(sql_int("SELECT count(*) FROM rt_dst WHERE t = ''"),
                     sql_int("SELECT count(*) FROM rt_src WHERE t = ''"));
    assert_int_equal(sql_int("SELECT count(*) FROM rt_dst WHERE t IS NULL"), 50000 / 12);
    /* removed after the load (keep is false) */
    assert_false(file_exists(file));
    assert_false(file_exists(manifest_path));
    json_decref(m);
    PG->close(H, c);
}

static void test_extract_text_forms_and_lone_backslash_dot(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS bd_src");
    sql("DROP TABLE IF EXISTS bd_dst");
    sql("CREATE TABLE bd_src (t text)");
    sql("CREATE TABLE bd_dst (t text)");
    /* "\." alone on a line ends COPY data in CSV mode unless it is quoted */
    sql("INSERT INTO bd_src VALUES ('\\.'), ('a'), (NULL), ('')");
    etl_conn *c = open_conn();
    json_t *m = extract(c, "bd", "SELECT t FROM bd_src");
    json_t *r = must("load", c, "bd", json_pack("{s:s, s:s}", "file", file_of(m), "table", "bd_dst"));
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 4);
    assert_int_equal(sql_int("SELECT count(*) FROM bd_dst WHERE t = '\\.'"), 1);
    assert_int_equal(sql_int("SELECT count(*) FROM bd_dst WHERE t IS NULL"), 1);
    json_decref(r);
    json_decref(m);
    /* values are staged exactly as sql.query shows them */
    m = extract(c, "forms", "SELECT true AS b, TIMESTAMPTZ '2026-11-22 03:00:00+00' AS tz, "
                            "TIMESTAMP '2026-11-22 03:00:00.5' AS ts, 0.1::float8 AS f, "
                            "'\\x0aff'::bytea AS ba, NULL::text AS n, ''::text AS e");
    FILE *f = fopen(file_of(m), "r");
    char line[512];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "b,tz,ts,f,ba,n,e\n");
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "true,2026-11-22T03:00:00+00:00,2026-11-22T03:00:00.5,0.1,\\x0aff,,\"\"\n");
    fclose(f);
    json_decref(m);
    PG->close(H, c);
}

static void test_extract_empty_and_failing(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS em_dst");
    sql("CREATE TABLE em_dst (a int, b text)");
    sql("INSERT INTO em_dst VALUES (1, 'x')");
    etl_conn *c = open_conn();
    /* no rows: a staged file with the header only, which loads as nothing */
    json_t *m = extract(c, "none", "SELECT 1 AS a, 'b'::text AS b WHERE false");
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), 0);
    json_t *r = must("load", c, "none", json_pack("{s:s, s:s, s:s, s:s, s:i}", "file", file_of(m),
                                                  "table", "em_dst", "mode", "replace",
                                                  "key_column", "a", "key", 1));
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 0);
    assert_int_equal(json_integer_value(json_object_get(r, "deleted")), 1);
    json_decref(r);
    json_decref(m);
    assert_int_equal(sql_int("SELECT count(*) FROM em_dst"), 0);
    /* a failing query: QueryFailed, no staged file, the connection idle and usable */
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(act("extract", c, "bad", json_pack("{s:s}", "sql", "SELECT 1/0 AS x"),
                         &out, &err), ETL_EQUERY);
    assert_string_equal(err.name, "Etl.QueryFailed");
    assert_non_null(strstr(err.cause, "22012"));
    assert_true(PG->alive(H, c));
    assert_false(staged("S-bad-"));
    /* extract runs read-only */
    assert_int_equal(act("extract", c, "w", json_pack("{s:s}", "sql",
                                                     "SELECT * FROM (INSERT INTO em_dst VALUES (2, 'y') "
                                                     "RETURNING a) x"), &out, &err), ETL_EQUERY);
    assert_int_equal(sql_int("SELECT count(*) FROM em_dst"), 0);
    PG->close(H, c);
}

static void test_replace_mode_replaces_only_the_key(void **state)
{
    (void)state;
    const char *evil = "x'; DROP TABLE rp_dst; --";
    sql("DROP TABLE IF EXISTS rp_src");
    sql("DROP TABLE IF EXISTS rp_dst");
    sql("CREATE TABLE rp_src (k text, v int)");
    sql("CREATE TABLE rp_dst (k text, v int)");
    sql("INSERT INTO rp_src SELECT 'x''; DROP TABLE rp_dst; --', g FROM generate_series(100, 104) g");
    sql("INSERT INTO rp_dst SELECT 'x''; DROP TABLE rp_dst; --', g FROM generate_series(1, 3) g");
    sql("INSERT INTO rp_dst SELECT 'other', g FROM generate_series(1, 4) g");
    etl_conn *c = open_conn();
    json_t *m = must("extract", c, evil, json_pack("{s:s, s:[s]}", "sql",
                                                   "SELECT k, v FROM rp_src WHERE k = $1",
                                                   "params", evil));
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), 5);
    json_t *r = must("load", c, evil, json_pack("{s:s, s:s, s:s, s:s, s:s}", "file", file_of(m),
                                                "table", "public.rp_dst", "mode", "replace",
                                                "key_column", "k", "key", evil));
    assert_int_equal(json_integer_value(json_object_get(r, "deleted")), 3);
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 5);
    json_decref(r);
    assert_int_equal(sql_int("SELECT count(*) FROM rp_dst WHERE k = 'other'"), 4);
    assert_int_equal(sql_int("SELECT count(*) FROM rp_dst WHERE k <> 'other'"), 5);
    assert_int_equal(sql_int("SELECT min(v) FROM rp_dst WHERE k <> 'other'"), 100);
    json_decref(m);
    PG->close(H, c);
}

static void test_truncate_mode(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS tr_dst");
    sql("CREATE TABLE tr_dst (id int, v text)");
    sql("INSERT INTO tr_dst SELECT g, 'old' FROM generate_series(1, 5) g");
    etl_conn *c = open_conn();
    json_t *m = extract(c, "tr", "SELECT g AS id, 'new' AS v FROM generate_series(1, 3) g");
    json_t *r = must("load", c, "tr", json_pack("{s:s, s:s, s:s, s:b}", "file", file_of(m),
                                                "table", "tr_dst", "mode", "truncate", "keep", 1));
    assert_int_equal(json_integer_value(json_object_get(r, "deleted")), 5);
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 3);
    assert_int_equal(sql_int("SELECT count(*) FROM tr_dst"), 3);
    assert_int_equal(sql_int("SELECT count(*) FROM tr_dst WHERE v = 'new'"), 3);
    assert_true(file_exists(file_of(m))); /* keep: true */
    assert_true(staged("S-tr-"));
    json_decref(r);
    json_decref(m);
    PG->close(H, c);
}

static void test_merge_mode_upserts(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS mg_dst");
    sql("CREATE TABLE mg_dst (id int PRIMARY KEY, v text, extra text DEFAULT 'kept')");
    sql("INSERT INTO mg_dst (id, v) VALUES (1, 'one'), (2, 'two'), (3, 'three')");
    etl_conn *c = open_conn();
    json_t *m = extract(c, "mg", "SELECT * FROM (VALUES (2, 'TWO'), (4, 'four')) AS t(ident, val)");
    json_t *r = must("load", c, "mg", json_pack("{s:s, s:s, s:s, s:[s], s:[s, s]}", "file",
                                                file_of(m), "table", "mg_dst", "mode", "merge",
                                                "primary_key", "id", "columns", "id", "v"));
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 2);
    json_decref(r);
    char *v = sql_text("SELECT string_agg(id || '=' || v || '/' || extra, ',' ORDER BY id) FROM mg_dst");
    assert_string_equal(v, "1=one/kept,2=TWO/kept,3=three/kept,4=four/kept");
    free(v);
    json_decref(m);
    PG->close(H, c);
}

/* A staged file written through the host, as the mysql connector would. */
static json_t *stage_by_hand(const char *key, const etl_column *cols, size_t n,
                             const char *const *row)
{
    atomic_int cancel = 0;
    etl_task t;
    host_task_init(&t, "Hand", key, "src", stage_dir, 1, &cancel);
    etl_error err;
    etl_stage_writer *w = H->stage_open(&t, cols, n, NULL, &err);
    assert_non_null(w);
    size_t lens[32];
    for (size_t i = 0; i < n; i++)
        lens[i] = row[i] ? strlen(row[i]) : 0;
    assert_int_equal(H->stage_row(w, row, lens, &err), ETL_OK);
    etl_json *m = NULL;
    assert_int_equal(H->stage_finish(w, &m, &err), ETL_OK);
    pthread_mutex_destroy(&t.mu);
    return host_json(m);
}

static void test_create_from_mysql_types(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS my_new");
    sql("DROP TABLE IF EXISTS victim");
    sql("CREATE TABLE victim (x int)");
    static const etl_column cols[] = {
        {"i", "int"}, {"u", "bigint unsigned"}, {"dc", "decimal(12,2)"}, {"vc", "varchar(40)"},
        {"dt", "datetime(3)"}, {"flag", "tinyint(1)"}, {"e", "enum('a','b')"}, {"j", "json"},
        {"bl", "blob"}, {"bt", "bit(8)"}, {"tm", "time"}, {"db", "double"}, {"y", "year"},
        {"mt", "mediumtext"}, {"iu", "int(10) unsigned"}, {"evil", "int); DROP TABLE victim; --"},
        {"pgt", "timestamp(3) with time zone"}, {"unk", "geometry"}};
    static const char *const row[] = {
        "-5", "18446744073709551615", "12.34", "h\u00e9", "2026-11-22T03:00:00.123", "1", "a",
        "{\"x\": 1}", "\\x00ff", "101", "838:59:59", "0.1", "2026", "long", "4294967295", "7",
        "2026-11-22T03:00:00+00:00", "POINT(1 2)"};
    size_t n = sizeof cols / sizeof cols[0];
    json_t *m = stage_by_hand("my", cols, n, row);
    etl_conn *c = open_conn();
    json_t *r = must("load", c, "my", json_pack("{s:s, s:s, s:b}", "file", file_of(m), "table",
                                                "my_new", "create", 1));
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 1);
    json_decref(r);
    char *types = sql_text("SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) "
                           "FROM pg_attribute WHERE attrelid = 'my_new'::regclass AND attnum > 0");
    assert_string_equal(types, "integer,numeric(20,0),numeric(12,2),character varying(40),"
                               "timestamp(3) without time zone,smallint,text,jsonb,bytea,"
                               "bit varying(8),interval,double precision,smallint,text,bigint,"
                               "text,timestamp(3) with time zone,text");
    free(types);
    assert_int_equal(sql_int("SELECT count(*) FROM victim"), 0); /* still there */
    char *v = sql_text("SELECT u || '|' || encode(bl, 'hex') || '|' || tm || '|' || (j->>'x') || "
                       "'|' || bt::text || '|' || dt FROM my_new");
    assert_string_equal(v, "18446744073709551615|00ff|838:59:59|1|101|2026-11-22 03:00:00.123");
    free(v);
    json_decref(m);
    PG->close(H, c);
}

typedef struct loader {
    const char *key;
    const char *file;
    etl_status st;
    etl_error err;
} loader;

static void *load_key(void *arg)
{
    loader *ld = arg;
    etl_conn *c = NULL;
    ld->st = open_with(settings(), &c, &ld->err);
    if (ld->st == ETL_OK)
        ld->st = act("load", c, ld->key, json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "file",
                                                   ld->file, "table", "cc_new", "mode", "replace",
                                                   "key_column", "k", "key", ld->key, "create", 1),
                     NULL, &ld->err);
    if (c)
        PG->close(H, c);
    return NULL;
}

/* A Map over keys whose loads all find the table missing: one creates it, the others
 * wait for it and load into it. */
static void test_create_concurrent_loads(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS cc_new");
    etl_conn *c = open_conn();
    enum { N = 4 };
    loader ld[N];
    json_t *m[N];
    static const char *const keys[N] = {"k0", "k1", "k2", "k3"};
    for (int i = 0; i < N; i++) {
        char q[256];
        snprintf(q, sizeof q, "SELECT '%s'::varchar(10) AS k, g AS v FROM generate_series(1, %d) g",
                 keys[i], 1000 * (i + 1));
        m[i] = extract(c, keys[i], q);
        ld[i] = (loader){.key = keys[i], .file = file_of(m[i])};
    }
    PG->close(H, c);
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, load_key, &ld[i]);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++)
        if (ld[i].st != ETL_OK)
            fail_msg("load %s: %s: %s", keys[i], ld[i].err.name, ld[i].err.cause);
    assert_int_equal(sql_int("SELECT count(*) FROM cc_new"), 10000);
    assert_int_equal(sql_int("SELECT count(DISTINCT k) FROM cc_new"), 4);
    /* replace-mode tables get an index on key_column */
    assert_int_equal(sql_int("SELECT count(*) FROM pg_indexes WHERE tablename = 'cc_new' AND "
                             "indexdef LIKE '%%(k)%%'"), 1);
    char *t = sql_text("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                       "attrelid = 'cc_new'::regclass AND attname = 'k'");
    assert_string_equal(t, "character varying(10)"); /* PostgreSQL names pass through */
    free(t);
    for (int i = 0; i < N; i++)
        json_decref(m[i]);
}

static void test_tampered_file_refused_before_any_change(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS tp_dst");
    sql("CREATE TABLE tp_dst (id int, v text)");
    sql("INSERT INTO tp_dst VALUES (1, 'keep')");
    etl_conn *c = open_conn();
    json_t *m = extract(c, "tp", "SELECT g AS id, 'v' || g AS v FROM generate_series(1, 100) g");
    /* flip one byte, same size: the CRC32C no longer matches */
    FILE *f = fopen(file_of(m), "r+");
    assert_non_null(f);
    fseek(f, 20, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 20, SEEK_SET);
    fputc(ch == '7' ? '8' : '7', f);
    fclose(f);
    json_t *out = NULL;
    etl_error err;
    assert_int_not_equal(act("load", c, "tp", json_pack("{s:s, s:s, s:s}", "file", file_of(m),
                                                        "table", "tp_dst", "mode", "truncate"),
                             &out, &err), ETL_OK);
    assert_string_equal(err.name, "Etl.IntegrityError");
    assert_false(err.transient);
    assert_int_equal(sql_int("SELECT count(*) FROM tp_dst"), 1);
    assert_true(file_exists(file_of(m))); /* a refused file stays for inspection */
    json_decref(m);
    PG->close(H, c);
}

static void test_row_count_mismatch_rolls_back(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS rc_dst");
    sql("CREATE TABLE rc_dst (k text, v int)");
    sql("INSERT INTO rc_dst SELECT 'a', g FROM generate_series(1, 10) g");
    etl_conn *c = open_conn();
    json_t *m = extract(c, "a", "SELECT 'a' AS k, g AS v FROM generate_series(1, 20) g");
    /* the manifest claims one row more than the file holds (size and CRC still match) */
    char mp[512];
    snprintf(mp, sizeof mp, "%s.manifest.json", file_of(m));
    json_t *man = json_load_file(mp, 0, NULL);
    assert_non_null(man);
    json_object_set_new(man, "rows", json_integer(21));
    assert_int_equal(json_dump_file(man, mp, 0), 0);
    json_decref(man);
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(act("load", c, "a", json_pack("{s:s, s:s, s:s, s:s, s:s}", "file", file_of(m),
                                                  "table", "rc_dst", "mode", "replace",
                                                  "key_column", "k", "key", "a"), &out, &err),
                     ETL_EINVAL);
    assert_string_equal(err.name, "Etl.IntegrityError");
    assert_non_null(strstr(err.cause, "21"));
    /* the DELETE of key 'a' was rolled back with the COPY */
    assert_int_equal(sql_int("SELECT count(*) FROM rc_dst"), 10);
    assert_int_equal(sql_int("SELECT max(v) FROM rc_dst"), 10);
    assert_true(PG->alive(H, c));
    json_decref(m);
    PG->close(H, c);
}

static void test_load_data_error_is_load_failed(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS le_dst");
    sql("CREATE TABLE le_dst (id int NOT NULL, v text)");
    sql("INSERT INTO le_dst VALUES (1, 'x')");
    etl_conn *c = open_conn();
    json_t *m = extract(c, "le", "SELECT CASE WHEN g = 50 THEN NULL ELSE g END AS id, 'v' AS v "
                                 "FROM generate_series(1, 100) g");
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(act("load", c, "le", json_pack("{s:s, s:s}", "file", file_of(m), "table", "le_dst"),
                         &out, &err), ETL_EQUERY);
    assert_string_equal(err.name, "Etl.LoadFailed");
    assert_non_null(strstr(err.cause, "23502"));
    assert_non_null(strstr(err.cause, "line 50"));
    assert_int_equal(sql_int("SELECT count(*) FROM le_dst"), 1);
    assert_true(PG->alive(H, c));
    json_decref(m);
    PG->close(H, c);
}

/* ------------------------------------------------------------ cancellation */

typedef struct canceller {
    call *k;
    double delay_s;
} canceller;

static void *cancel_later(void *arg)
{
    canceller *cl = arg;
    usleep((useconds_t)(cl->delay_s * 1e6));
    host_task_cancel(&cl->k->task);
    return NULL;
}

static void test_cancel_long_query(void **state)
{
    (void)state;
    etl_conn *c = open_conn();
    call k;
    call_init(&k, "");
    canceller cl = {&k, 0.3};
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, &cl);
    double t0 = now_s();
    json_t *out = NULL;
    etl_error err;
    etl_status st = call_run(&k, "query", c, json_pack("{s:s}", "sql", "SELECT pg_sleep(30)"),
                             &out, &err);
    double took = now_s() - t0;
    pthread_join(th, NULL);
    pthread_mutex_destroy(&k.task.mu);
    assert_int_equal(st, ETL_ECANCELLED);
    assert_true(took < 2.0);
    /* the server stopped it: no pg_sleep is running any more */
    long long active = 1;
    for (int i = 0; i < 20 && active; i++) {
        active = sql_int("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                         "query = 'SELECT pg_sleep(30)'");
        if (active)
            usleep(50 * 1000);
    }
    assert_int_equal(active, 0);
    PG->close(H, c); /* the host discards a cancelled connection */
}

static void test_cancel_before_start_and_during_extract(void **state)
{
    (void)state;
    etl_conn *c = open_conn();
    call k;
    call_init(&k, "");
    host_task_cancel(&k.task);
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(call_run(&k, "query", c, json_pack("{s:s}", "sql", "SELECT 1"), &out, &err),
                     ETL_ECANCELLED);
    pthread_mutex_destroy(&k.task.mu);
    PG->close(H, c);
    /* an extract of a slow query: cancelled on the server, no staged file left */
    c = open_conn();
    call_init(&k, "slow");
    canceller cl = {&k, 0.5};
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, &cl);
    double t0 = now_s();
    etl_status st = call_run(&k, "extract", c, json_pack("{s:s}", "sql",
                                                         "SELECT g, pg_sleep(0.001) FROM "
                                                         "generate_series(1, 100000) g"),
                             &out, &err);
    pthread_join(th, NULL);
    pthread_mutex_destroy(&k.task.mu);
    assert_int_equal(st, ETL_ECANCELLED);
    assert_true(now_s() - t0 < 2.5);
    assert_false(staged("S-slow-"));
    PG->close(H, c);
}

typedef struct killer {
    atomic_int done;
    long long killed_pid;
} killer;

/* Wait for a COPY ... FROM STDIN to be running, then kill its backend. */
static void *kill_copy(void *arg)
{
    killer *kl = arg;
    const char *kw[] = {"host", "port", "user", "dbname", "password", NULL};
    const char *val[] = {dbenv("ETL_PG_HOST"), dbenv("ETL_PG_PORT"), dbenv("ETL_PG_USER"),
                         dbenv("ETL_PG_DB"), dbenv("ETL_PG_PASSWORD"), NULL};
    PGconn *k = PQconnectdbParams(kw, val, 0);
    for (int i = 0; i < 3000 && !atomic_load(&kl->done); i++) {
        PGresult *r = PQexec(k, "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE state = 'active' AND query LIKE 'COPY \"dc_dst\"%'");
        bool hit = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
        if (hit)
            kl->killed_pid = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (hit)
            break;
        usleep(2000);
    }
    PQfinish(k);
    return NULL;
}

static void test_dropped_connection_mid_copy(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS dc_dst");
    sql("CREATE TABLE dc_dst (id int, k text, v text)");
    sql("INSERT INTO dc_dst SELECT g, 'big', 'old' FROM generate_series(1, 7) g");
    etl_conn *c = open_conn();
    json_t *m = extract(c, "big", "SELECT g AS id, 'big' AS k, repeat(md5(g::text), 3) AS v "
                                  "FROM generate_series(1, 1000000) g");
    killer kl = {0};
    pthread_t th;
    pthread_create(&th, NULL, kill_copy, &kl);
    json_t *out = NULL;
    etl_error err;
    etl_status st = act("load", c, "big", json_pack("{s:s, s:s, s:s, s:s, s:s}", "file", file_of(m),
                                                    "table", "dc_dst", "mode", "replace",
                                                    "key_column", "k", "key", "big"), &out, &err);
    atomic_store(&kl.done, 1);
    pthread_join(th, NULL);
    assert_true(kl.killed_pid > 0);
    assert_int_equal(st, ETL_ECONNECT);
    assert_string_equal(err.name, "Etl.ConnectionFailed");
    assert_true(err.transient);
    assert_false(PG->alive(H, c));
    PG->close(H, c);
    /* unchanged: the key's old rows are back, nothing new */
    assert_int_equal(sql_int("SELECT count(*) FROM dc_dst"), 7);
    assert_int_equal(sql_int("SELECT count(*) FROM dc_dst WHERE v = 'old'"), 7);
    /* the retry on a new connection loads it exactly */
    c = open_conn();
    json_t *r = must("load", c, "big", json_pack("{s:s, s:s, s:s, s:s, s:s}", "file", file_of(m),
                                                 "table", "dc_dst", "mode", "replace",
                                                 "key_column", "k", "key", "big"));
    assert_int_equal(json_integer_value(json_object_get(r, "deleted")), 7);
    assert_int_equal(sql_int("SELECT count(*) FROM dc_dst"), 1000000);
    assert_int_equal(sql_int("SELECT sum(id) FROM dc_dst"), 500000500000LL);
    json_decref(r);
    json_decref(m);
    PG->close(H, c);
}

/* ------------------------------------------------------------ validate-time checks */

static char *check_params(const char *name, const char *yaml)
{
    diag *d = diag_new("p.yaml");
    doc *dc = doc_load_string(yaml, strlen(yaml), "p.yaml", false, d);
    assert_non_null(dc);
    etl_checker chk = {.d = d, .node = dc->root, .what = "Parameters of state 'S'"};
    bool ok = action(name)->check(H, host_wrap(dc->root->json), &chk);
    assert_int_equal(ok, diag_count(d) == 0);
    char *out = calloc(1, 8192);
    for (size_t i = 0; i < diag_count(d); i++)
        snprintf(out + strlen(out), 8192 - strlen(out), "%s\n", diag_message(d, i));
    doc_free(dc);
    diag_free(d);
    return out;
}

static void want(const char *name, const char *yaml, const char *needle)
{
    char *m = check_params(name, yaml);
    if (!needle[0] ? m[0] != '\0' : !strstr(m, needle))
        fail_msg("check of\n%s\ngave\n%s\nexpected '%s'", yaml, m, needle);
    free(m);
}

static void test_check_parameters(void **state)
{
    (void)state;
    want("query", "connection: wh\nsql: SELECT 1\nparams.$: States.Array($.k)\nmax_rows: 5\n", "");
    want("exec", "connection: wh\nsql: [DELETE FROM t, VACUUM]\nparams: [[1], null]\n", "");
    want("load", "connection: wh\nfile.$: $.x.file\ntable: a.b\nmode: replace\nkey_column: k\n"
                 "key.$: $.key\ncreate: true\n", "");
    want("load", "connection: wh\nfile.$: $.f\ntable: t\nmode.$: $.mode\nprimary_key: [id]\n", "");
    want("query", "connection: wh\n", "needs 'sql'");
    want("query", "sql: SELECT 1\nmax_rows: 0\n", "positive integer");
    want("query", "sql: [SELECT 1]\n", "non-empty SQL statement");
    want("extract", "sql: SELECT 1\nparams: $1\n", "must be a list");
    want("extract", "sql: SELECT 1\nfile: x\n", "unknown parameter");
    want("exec", "sql: [a, b]\nparams: [[1]]\n", "one list of values per statement");
    want("load", "file: f\ntable: t\nmode: replace\n", "needs key_column");
    want("load", "file: f\ntable: t\nmode: merge\n", "needs primary_key");
    want("load", "file: f\ntable: t\nmode: upsert\n", "append, replace, truncate or merge");
    want("load", "file: f\ntable: t\nkey_column: k\n", "mode replace only");
    want("load", "file: f\ntable: a.b.c\n", "more than two parts");
    want("load", "file: f\ntable: t\ncolumns: [a, a]\n", "listed twice");
}

/* ------------------------------------------------------------ the load ledger */

#define SKIPPED "already loaded in this run (ledger)"

/* A load as a task of run run_id of the pipeline "ledger_pl", state "S", key key;
 * params steals; the result in *out when out. */
static etl_status load_in_run(etl_conn *c, const char *run_id, const char *key, json_t *params,
                              json_t **out, etl_error *err)
{
    call k;
    call_init(&k, key);
    k.task.run_id = run_id;
    k.task.pipeline = "ledger_pl";
    etl_status st = call_run(&k, "load", c, params, out, err);
    pthread_mutex_destroy(&k.task.mu);
    return st;
}

static json_t *must_load(etl_conn *c, const char *run_id, const char *key, json_t *params)
{
    json_t *out = NULL;
    etl_error err;
    if (load_in_run(c, run_id, key, params, &out, &err) != ETL_OK)
        fail_msg("load (run %s, key %s): %s: %s", run_id, key, err.name, err.cause);
    return out;
}

static long long jint(json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }

/* Another session holding table's ACCESS EXCLUSIVE lock until PQfinish (a test that
 * fails meanwhile leaves no lock behind on the verification connection). */
static PGconn *lock_table(const char *table)
{
    const char *kw[] = {"host", "port", "user", "dbname", "password", NULL};
    const char *val[] = {dbenv("ETL_PG_HOST"), dbenv("ETL_PG_PORT"), dbenv("ETL_PG_USER"),
                         dbenv("ETL_PG_DB"), dbenv("ETL_PG_PASSWORD"), NULL};
    PGconn *locker = PQconnectdbParams(kw, val, 0);
    assert_int_equal(PQstatus(locker), CONNECTION_OK);
    char q[256];
    snprintf(q, sizeof q, "BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", table);
    PGresult *r = PQexec(locker, q);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    return locker;
}

static json_t *replace_params(json_t *manifest, const char *table, const char *key)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "file", file_of(manifest), "table", table,
                     "mode", "replace", "key_column", "k", "key", key);
}

static void test_ledger_records_once_per_run(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS etlrun_load_ledger");
    sql("DROP TABLE IF EXISTS lg_dst");
    sql("CREATE TABLE lg_dst (k text, v int)");
    etl_conn *c = open_conn();
    json_t *m1 = extract(c, "a", "SELECT 'a' AS k, g AS v FROM generate_series(1, 10) g");
    json_t *r = must_load(c, "run-1", "a", replace_params(m1, "lg_dst", "a"));
    assert_null(json_object_get(r, "skipped"));
    assert_int_equal(jint(r, "rows"), 10);
    json_decref(r);
    /* exactly one row, with the load's identity and figures, in the load's time */
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger"), 1);
    char *row = sql_text("SELECT concat_ws('|', pipeline, run_id, state, key, target_table, "
                         "mode, rows, bytes, crc32c) FROM etlrun_load_ledger");
    char want[512];
    snprintf(want, sizeof want, "ledger_pl|run-1|S|a|lg_dst|replace|10|%lld|%s", jint(m1, "bytes"),
             json_string_value(json_object_get(m1, "crc32c")));
    assert_string_equal(row, want);
    free(row);
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger WHERE loaded_at BETWEEN "
                             "now() - interval '1 minute' AND clock_timestamp()"), 1);
    /* the UNIQUE constraint is there for any writer */
    assert_int_equal(sql_int("SELECT count(*) FROM pg_constraint WHERE conrelid = "
                             "'etlrun_load_ledger'::regclass AND contype = 'u'"), 1);
    assert_false(file_exists(file_of(m1)));

    /* the same (pipeline, run, state, key) again, with other data: nothing is loaded, the
     * result carries what the ledger recorded, and the staged file goes as usual */
    json_t *m2 = extract(c, "a", "SELECT 'a' AS k, g AS v FROM generate_series(100, 119) g");
    r = must_load(c, "run-1", "a", replace_params(m2, "lg_dst", "a"));
    assert_string_equal(json_string_value(json_object_get(r, "skipped")), SKIPPED);
    assert_int_equal(jint(r, "rows"), 10);
    assert_int_equal(jint(r, "bytes"), jint(m1, "bytes"));
    assert_int_equal(jint(r, "deleted"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "table")), "lg_dst");
    assert_string_equal(json_string_value(json_object_get(r, "mode")), "replace");
    json_decref(r);
    assert_int_equal(sql_int("SELECT count(*) FROM lg_dst"), 10);
    assert_int_equal(sql_int("SELECT max(v) FROM lg_dst"), 10);
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger"), 1);
    assert_false(file_exists(file_of(m2)));
    /* the lookup comes before anything touches the target: with the table locked by
     * another session, the skip does not wait for it (lock_timeout would fail it) */
    PGconn *locker = lock_table("lg_dst");
    json_t *ls = settings();
    json_object_set_new(ls, "init_sql", json_string("SET lock_timeout = '2s'"));
    etl_conn *lc = NULL;
    etl_error lerr;
    assert_int_equal(open_with(ls, &lc, &lerr), ETL_OK);
    json_t *m2b = extract(lc, "a", "SELECT 'a' AS k, g AS v FROM generate_series(100, 119) g");
    r = must_load(lc, "run-1", "a", replace_params(m2b, "lg_dst", "a"));
    assert_string_equal(json_string_value(json_object_get(r, "skipped")), SKIPPED);
    json_decref(r);
    json_decref(m2b);
    PG->close(H, lc);
    PQfinish(locker);
    /* keep: true keeps the file of a skipped load too */
    json_t *m3 = extract(c, "a", "SELECT 'a' AS k, g AS v FROM generate_series(100, 119) g");
    json_t *p = replace_params(m3, "lg_dst", "a");
    json_object_set_new(p, "keep", json_true());
    r = must_load(c, "run-1", "a", p);
    assert_non_null(json_object_get(r, "skipped"));
    json_decref(r);
    assert_true(file_exists(file_of(m3)));

    /* another run loads the key again (replace) and adds its own row */
    r = must_load(c, "run-2", "a", replace_params(m3, "lg_dst", "a"));
    assert_null(json_object_get(r, "skipped"));
    assert_int_equal(jint(r, "rows"), 20);
    assert_int_equal(jint(r, "deleted"), 10);
    json_decref(r);
    assert_int_equal(sql_int("SELECT count(*) FROM lg_dst"), 20);
    assert_int_equal(sql_int("SELECT min(v) FROM lg_dst"), 100);
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger"), 2);
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger WHERE run_id = 'run-2' "
                             "AND rows = 20"), 1);

    /* a task without a key is recorded with key '' (and is then loaded once per run) */
    sql("DROP TABLE IF EXISTS lg_all");
    sql("CREATE TABLE lg_all (k text, v int)");
    for (int i = 0; i < 2; i++) {
        json_t *m = extract(c, "", "SELECT 'x' AS k, g AS v FROM generate_series(1, 5) g");
        r = must_load(c, "run-2", "", json_pack("{s:s, s:s}", "file", file_of(m), "table",
                                                "lg_all"));
        assert_int_equal(json_object_get(r, "skipped") != NULL, i == 1);
        json_decref(r);
        json_decref(m);
    }
    assert_int_equal(sql_int("SELECT count(*) FROM lg_all"), 5);
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger WHERE key = '' AND "
                             "target_table = 'lg_all' AND mode = 'append'"), 1);
    /* outside a run (no run id) nothing is recorded or skipped */
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger"), 3);
    json_t *m4 = extract(c, "a", "SELECT 'a' AS k, 1 AS v");
    r = must("load", c, "a", replace_params(m4, "lg_dst", "a"));
    assert_null(json_object_get(r, "skipped"));
    json_decref(r);
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger"), 3);
    json_decref(m1);
    json_decref(m2);
    json_decref(m3);
    json_decref(m4);
    PG->close(H, c);
}

static void test_ledger_off_and_custom_table(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS etlrun_load_ledger");
    sql("DROP SCHEMA IF EXISTS lgs CASCADE");
    sql("CREATE SCHEMA lgs");
    sql("DROP TABLE IF EXISTS lg_off");
    sql("CREATE TABLE lg_off (k text, v int)");
    etl_conn *c = open_conn();
    json_t *m[4];
    for (int i = 0; i < 4; i++)
        m[i] = extract(c, "k", "SELECT 'k' AS k, g AS v FROM generate_series(1, 3) g");
    PG->close(H, c);

    /* ledger: false: the same identity loads twice, and no ledger table appears */
    json_t *s = settings();
    json_object_set_new(s, "ledger", json_false());
    etl_error err;
    assert_int_equal(open_with(s, &c, &err), ETL_OK);
    for (int i = 0; i < 2; i++) {
        json_t *r = must_load(c, "run-1", "k", json_pack("{s:s, s:s}", "file", file_of(m[i]),
                                                         "table", "lg_off"));
        assert_null(json_object_get(r, "skipped"));
        json_decref(r);
    }
    PG->close(H, c);
    assert_int_equal(sql_int("SELECT count(*) FROM lg_off"), 6);
    assert_int_equal(sql_int("SELECT (to_regclass('etlrun_load_ledger') IS NOT NULL)::int"), 0);

    /* ledger_table: schema-qualified, quoted as written (case kept) */
    s = settings();
    json_object_set_new(s, "ledger_table", json_string("lgs.Ledger"));
    assert_int_equal(open_with(s, &c, &err), ETL_OK);
    json_t *r = must_load(c, "run-1", "k", json_pack("{s:s, s:s}", "file", file_of(m[2]),
                                                     "table", "lg_off"));
    assert_null(json_object_get(r, "skipped"));
    json_decref(r);
    r = must_load(c, "run-1", "k", json_pack("{s:s, s:s}", "file", file_of(m[3]), "table",
                                             "lg_off"));
    assert_string_equal(json_string_value(json_object_get(r, "skipped")), SKIPPED);
    json_decref(r);
    PG->close(H, c);
    assert_int_equal(sql_int("SELECT count(*) FROM lg_off"), 9);
    assert_int_equal(sql_int("SELECT count(*) FROM lgs.\"Ledger\" WHERE run_id = 'run-1' AND "
                             "key = 'k' AND rows = 3"), 1);
    assert_int_equal(sql_int("SELECT (to_regclass('etlrun_load_ledger') IS NOT NULL)::int"), 0);
    for (int i = 0; i < 4; i++)
        json_decref(m[i]);

    /* both settings are checked at validate time */
    char *msg = check_settings("url: postgresql://etl@db/w\nledger: false\nledger_table: a.b\n");
    assert_string_equal(msg, "");
    free(msg);
    msg = check_settings("url: postgresql://etl@db/w\nledger: 'no'\nledger_table: a.b.c\n");
    assert_non_null(strstr(msg, "'ledger': must be true or false"));
    assert_non_null(strstr(msg, "'ledger_table': 'a.b.c' has more than two parts"));
    free(msg);
    msg = check_settings("url: postgresql://etl@db/w\nledger_table: ''\n");
    assert_non_null(strstr(msg, "'ledger_table'"));
    free(msg);
}

/* A load that fails writes no ledger row: the row is part of the rolled-back
 * transaction, so a retry of the key in the same run loads it. */
static void test_ledger_failed_load_writes_nothing(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS etlrun_load_ledger");
    sql("DROP TABLE IF EXISTS lgf_dst");
    sql("CREATE TABLE lgf_dst (k text, v int NOT NULL)");
    sql("INSERT INTO lgf_dst SELECT 'a', g FROM generate_series(1, 4) g");
    etl_conn *c = open_conn();
    /* a row-count mismatch */
    json_t *m = extract(c, "a", "SELECT 'a' AS k, g AS v FROM generate_series(1, 20) g");
    char mp[512];
    snprintf(mp, sizeof mp, "%s.manifest.json", file_of(m));
    json_t *man = json_load_file(mp, 0, NULL);
    assert_non_null(man);
    json_object_set_new(man, "rows", json_integer(21));
    assert_int_equal(json_dump_file(man, mp, 0), 0);
    json_decref(man);
    json_t *out = NULL;
    etl_error err;
    assert_int_equal(load_in_run(c, "run-f", "a", replace_params(m, "lgf_dst", "a"), &out, &err),
                     ETL_EINVAL);
    assert_string_equal(err.name, "Etl.IntegrityError");
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger"), 0);
    assert_int_equal(sql_int("SELECT count(*) FROM lgf_dst"), 4);
    json_decref(m);
    /* a bad value (NOT NULL) */
    m = extract(c, "a", "SELECT 'a' AS k, CASE WHEN g = 3 THEN NULL ELSE g END AS v "
                        "FROM generate_series(1, 5) g");
    assert_int_equal(load_in_run(c, "run-f", "a", replace_params(m, "lgf_dst", "a"), &out, &err),
                     ETL_EQUERY);
    assert_string_equal(err.name, "Etl.LoadFailed");
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger"), 0);
    assert_int_equal(sql_int("SELECT count(*) FROM lgf_dst"), 4);
    json_decref(m);
    /* the retry, fixed, loads and is recorded */
    m = extract(c, "a", "SELECT 'a' AS k, g AS v FROM generate_series(1, 7) g");
    json_t *r = must_load(c, "run-f", "a", replace_params(m, "lgf_dst", "a"));
    assert_null(json_object_get(r, "skipped"));
    json_decref(r);
    assert_int_equal(sql_int("SELECT count(*) FROM lgf_dst"), 7);
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger WHERE rows = 7"), 1);
    json_decref(m);
    PG->close(H, c);
}

typedef struct ledger_loader {
    const char *file;
    etl_status st;
    etl_error err;
    json_t *result;
} ledger_loader;

static void *ledger_load_main(void *arg)
{
    ledger_loader *ld = arg;
    etl_conn *c = NULL;
    ld->st = open_with(settings(), &c, &ld->err);
    if (ld->st == ETL_OK)
        ld->st = load_in_run(c, "run-c", "c", json_pack("{s:s, s:s}", "file", ld->file, "table",
                                                        "lgc_dst"), &ld->result, &ld->err);
    if (c)
        PG->close(H, c);
    return NULL;
}

/* Two loads of one identity at once, both past their lookup (the target is locked
 * meanwhile): the UNIQUE constraint lets one commit; the other rolls back, skipped. */
static void test_ledger_concurrent_loads_of_one_key(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS etlrun_load_ledger");
    sql("DROP TABLE IF EXISTS lgc_dst");
    sql("CREATE TABLE lgc_dst (k text, v int)");
    etl_conn *c = open_conn();
    json_t *m[2];
    ledger_loader ld[2];
    for (int i = 0; i < 2; i++) {
        m[i] = extract(c, "c", "SELECT 'c' AS k, g AS v FROM generate_series(1, 1000) g");
        ld[i] = (ledger_loader){.file = file_of(m[i])};
    }
    PG->close(H, c);
    PGconn *locker = lock_table("lgc_dst");
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, ledger_load_main, &ld[i]);
    /* both COPYs wait for the lock: both have looked the key up and found nothing */
    long long waiting = 0;
    for (int i = 0; i < 200 && waiting < 2; i++) {
        usleep(50 * 1000);
        waiting = sql_int("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                          "AND query LIKE 'COPY%%lgc_dst%%'");
    }
    PQclear(PQexec(locker, "COMMIT"));
    PQfinish(locker);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(waiting, 2);
    int skipped = 0;
    for (int i = 0; i < 2; i++) {
        if (ld[i].st != ETL_OK)
            fail_msg("load %d: %s: %s", i, ld[i].err.name, ld[i].err.cause);
        json_t *sk = json_object_get(ld[i].result, "skipped");
        if (sk) {
            assert_string_equal(json_string_value(sk), SKIPPED);
            skipped++;
        }
        assert_int_equal(jint(ld[i].result, "rows"), 1000);
        json_decref(ld[i].result);
        json_decref(m[i]);
    }
    assert_int_equal(skipped, 1);
    assert_int_equal(sql_int("SELECT count(*) FROM lgc_dst"), 1000);
    assert_int_equal(sql_int("SELECT count(*) FROM etlrun_load_ledger"), 1);
}

static pipeline *ledger_pipeline(const char *extra_conn)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "name: ledger_pl\n"
             "connections:\n"
             "  wh: {type: postgres, host: '%s', port: '%s', user: '%s', database: '%s', "
             "password_env: ETL_PG_PASSWORD}\n"
             "  off: {type: postgres, host: '%s', port: 1, ledger: false}\n"
             "%s"
             "StartAt: P\n"
             "States:\n"
             "  P: {Type: Pass, End: true}\n",
             dbenv("ETL_PG_HOST"), dbenv("ETL_PG_PORT"), dbenv("ETL_PG_USER"), dbenv("ETL_PG_DB"),
             dbenv("ETL_PG_HOST"), extra_conn);
    diag *d = diag_new("ledger.yaml");
    doc *dc = doc_load_string(yaml, strlen(yaml), "ledger.yaml", false, d);
    pipeline *pl = dc ? pipeline_compile(dc, d) : NULL;
    if (!pl) {
        diag_print(d, stderr);
        fail_msg("the test pipeline does not compile");
    }
    doc_free(dc);
    diag_free(d);
    return pl;
}

/* ledger_cmd's table as text, and its return code. */
static char *ledger_text(const pipeline *pl, const char *key, int limit, int *rc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    *rc = ledger_cmd(pl, key, limit, f);
    fclose(f);
    return text;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* `etlrun ledger`: the newest loads of the pipeline, over its postgres connections
 * whose ledger is on (the "off" one, which could not even connect, is not read). */
static void test_ledger_command(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS etlrun_load_ledger");
    sql("DROP TABLE IF EXISTS lgcmd");
    sql("CREATE TABLE lgcmd (k text, v int)");
    pipeline *pl = ledger_pipeline("");
    int rc = -1;
    /* no ledger table yet: no loads, not an error */
    char *t = ledger_text(pl, NULL, 0, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(t, "");
    free(t);
    etl_conn *c = open_conn();
    static const char *const keys[] = {"a", "b", ""};
    for (int i = 0; i < 3; i++) {
        json_t *m = extract(c, keys[i], "SELECT 'x' AS k, g AS v FROM generate_series(1, 4) g");
        json_decref(must_load(c, "run-1", keys[i], json_pack("{s:s, s:s}", "file", file_of(m),
                                                             "table", "lgcmd")));
        json_decref(m);
    }
    PG->close(H, c);
    /* another pipeline's row is not shown */
    sql("INSERT INTO etlrun_load_ledger VALUES ('other', 'run-9', 'S', 'a', 'x', 'append', 1, "
        "1, '00000000', now() + interval '1 hour')");
    t = ledger_text(pl, NULL, 0, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(t), 4);
    assert_non_null(strstr(t, "CONNECTION"));
    assert_null(strstr(t, "run-9"));
    /* newest first: the keyless load (shown as -) was the last */
    char *line1 = strchr(t, '\n') + 1;
    assert_true(strncmp(line1, "wh  ", 4) == 0);
    assert_non_null(strstr(line1, "run-1   S      -    lgcmd  append     4"));
    assert_non_null(strstr(strchr(line1, '\n') + 1, "run-1   S      b    lgcmd"));
    free(t);
    t = ledger_text(pl, "a", 0, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(t), 2);
    assert_non_null(strstr(t, "run-1   S      a    lgcmd  append     4"));
    free(t);
    t = ledger_text(pl, NULL, 2, &rc);
    assert_int_equal(count_lines(t), 3);
    assert_null(strstr(t, "  a  "));
    free(t);
    pipeline_free(pl);
    /* a connection that cannot be read is reported, and the others are still shown */
    pl = ledger_pipeline("  down: {type: postgres, host: '127.0.0.1', port: 1, user: x}\n");
    t = ledger_text(pl, NULL, 0, &rc);
    assert_int_equal(rc, 1);
    assert_int_equal(count_lines(t), 4);
    free(t);
    pipeline_free(pl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_refused_is_transient),
        cmocka_unit_test(test_connect_bad_password_not_transient),
        cmocka_unit_test(test_password_file_mode),
        cmocka_unit_test(test_connect_url_socket_and_session),
        cmocka_unit_test(test_check_settings),
        cmocka_unit_test(test_alive_detects_terminated_backend),
        cmocka_unit_test(test_query_value_mapping),
        cmocka_unit_test(test_params_bound_never_spliced),
        cmocka_unit_test(test_query_caps),
        cmocka_unit_test(test_query_errors),
        cmocka_unit_test(test_exec_list_is_one_transaction),
        cmocka_unit_test(test_extract_load_roundtrip),
        cmocka_unit_test(test_extract_text_forms_and_lone_backslash_dot),
        cmocka_unit_test(test_extract_empty_and_failing),
        cmocka_unit_test(test_replace_mode_replaces_only_the_key),
        cmocka_unit_test(test_truncate_mode),
        cmocka_unit_test(test_merge_mode_upserts),
        cmocka_unit_test(test_create_from_mysql_types),
        cmocka_unit_test(test_create_concurrent_loads),
        cmocka_unit_test(test_tampered_file_refused_before_any_change),
        cmocka_unit_test(test_row_count_mismatch_rolls_back),
        cmocka_unit_test(test_load_data_error_is_load_failed),
        cmocka_unit_test(test_cancel_long_query),
        cmocka_unit_test(test_cancel_before_start_and_during_extract),
        cmocka_unit_test(test_dropped_connection_mid_copy),
        cmocka_unit_test(test_check_parameters),
        cmocka_unit_test(test_ledger_records_once_per_run),
        cmocka_unit_test(test_ledger_off_and_custom_table),
        cmocka_unit_test(test_ledger_failed_load_writes_nothing),
        cmocka_unit_test(test_ledger_concurrent_loads_of_one_key),
        cmocka_unit_test(test_ledger_command),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
