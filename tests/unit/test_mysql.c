/* The `mysql` connector against the throwaway MariaDB of tests/servers/db.sh: settings
 * and connect errors, value mapping of every type, bound parameters, caps, exec
 * transactions, extract -> load round trips checked with SQL checksums, load modes,
 * integrity, cancellation (KILL QUERY) and concurrent use from several threads.
 * Actions are called through etl_builtin_mysql()->actions with host_services(), as the
 * engine does; checks use a separate raw libmariadb connection. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <mysql.h>

#include "dbenv.h"
#include "doc.h"
#include "host.h"
#include "ledger_cmd.h"
#include "machine.h"

extern const etl_connector *etl_builtin_mysql(void);

static const etl_connector *C;
static const etl_host *H;
static char stage_dir[256];
static const char *ledger_run; /* when set, tasks belong to this run of "ledger_pl" */

/* ---------- helpers ---------- */

static json_t *settings_json(void)
{
    return json_pack("{s:s, s:s}", "url", dbenv("ETL_MY_URL"), "password_env", "ETL_MY_PASSWORD");
}

static etl_conn *open_conn(void)
{
    json_t *s = settings_json();
    etl_conn *c = NULL;
    etl_error err = {0};
    etl_status st = C->open(H, NULL, host_wrap(s), &c, &err);
    if (st != ETL_OK)
        fail_msg("open failed: %s: %s", err.name, err.cause);
    json_decref(s);
    return c;
}

static const etl_action *action(const char *name)
{
    for (const etl_action *a = C->actions; a->name; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    fail_msg("no action %s", name);
    return NULL;
}

typedef struct call {
    etl_task task;
    atomic_int cancel;
    etl_error err;
    json_t *result;
    etl_status st;
} call;

/* Run action name with params (JSON text, printf-formatted) on c. */
static etl_status run_v(call *k, etl_conn *c, const char *name, const char *fmt, va_list ap)
{
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        fail();
    json_error_t je;
    json_t *params = json_loads(text, 0, &je);
    if (!params)
        fail_msg("bad test params %s: %s", text, je.text);
    free(text);
    memset(&k->err, 0, sizeof k->err);
    k->result = NULL;
    atomic_init(&k->cancel, 0);
    const char *key = json_string_value(json_object_get(params, "key"));
    host_task_init(&k->task, "T", key ? key : "", "my", stage_dir, 1, &k->cancel);
    if (ledger_run) {
        k->task.run_id = ledger_run;
        k->task.pipeline = "ledger_pl";
    }
    etl_json *res = NULL;
    k->st = action(name)->run(H, &k->task, c, host_wrap(params), &res, &k->err);
    host_task_done(&k->task);
    pthread_mutex_destroy(&k->task.mu);
    k->result = host_json(res);
    json_decref(params);
    return k->st;
}

static etl_status run(call *k, etl_conn *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static etl_status run(call *k, etl_conn *c, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    etl_status st = run_v(k, c, name, fmt, ap);
    va_end(ap);
    return st;
}

/* Run, expect success, return the result (caller decrefs). */
static json_t *ok(etl_conn *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static json_t *ok(etl_conn *c, const char *name, const char *fmt, ...)
{
    call k;
    va_list ap;
    va_start(ap, fmt);
    etl_status st = run_v(&k, c, name, fmt, ap);
    va_end(ap);
    if (st != ETL_OK)
        fail_msg("%s failed: %s: %s", name, k.err.name, k.err.cause);
    return k.result;
}

/* A raw connection for setup and checks, independent of the connector. */
static MYSQL *raw(void)
{
    MYSQL *m = mysql_init(NULL);
    unsigned one = 1;
    mysql_options(m, MYSQL_OPT_LOCAL_INFILE, &one);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (!mysql_real_connect(m, dbenv("ETL_MY_HOST"), dbenv("ETL_MY_USER"),
                            dbenv("ETL_MY_PASSWORD"), dbenv("ETL_MY_DB"),
                            (unsigned)atoi(dbenv("ETL_MY_PORT")), NULL, CLIENT_MULTI_STATEMENTS))
        fail_msg("raw connect: %s", mysql_error(m));
    if (mysql_query(m, "SET time_zone = '+00:00'"))
        fail_msg("raw: %s", mysql_error(m));
    return m;
}

static void sql(MYSQL *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sql(MYSQL *m, const char *fmt, ...)
{
    char *text;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        fail();
    va_end(ap);
    if (mysql_query(m, text))
        fail_msg("SQL failed: %s: %s", text, mysql_error(m));
    do {
        MYSQL_RES *r = mysql_store_result(m);
        mysql_free_result(r);
    } while (mysql_next_result(m) == 0);
    free(text);
}

/* First column of the first row as a new string ("NULL" for NULL). */
static char *value(MYSQL *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *value(MYSQL *m, const char *fmt, ...)
{
    char *text;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        fail();
    va_end(ap);
    if (mysql_query(m, text))
        fail_msg("SQL failed: %s: %s", text, mysql_error(m));
    MYSQL_RES *r = mysql_store_result(m);
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    char *v = strdup(row ? (row[0] ? row[0] : "NULL") : "(no row)");
    mysql_free_result(r);
    free(text);
    return v;
}

static long long count(MYSQL *m, const char *table)
{
    char *v = value(m, "SELECT COUNT(*) FROM %s", table);
    long long n = atoll(v);
    free(v);
    return n;
}

static void assert_json(json_t *v, const char *expected_json)
{
    json_error_t je;
    json_t *e = json_loads(expected_json, JSON_DECODE_ANY, &je);
    assert_non_null(e);
    if (!json_equal(v, e)) {
        char *got = json_dumps(v, JSON_ENCODE_ANY);
        fail_msg("got %s, expected %s", got, expected_json);
    }
    json_decref(e);
}

static int setup(void **state)
{
    (void)state;
    C = etl_builtin_mysql();
    H = host_services();
    etl_error err = {0};
    if (C->global_init(H, &err) != ETL_OK)
        return -1;
    snprintf(stage_dir, sizeof stage_dir, "/tmp/etl-test-mysql-%d", (int)getpid());
    MYSQL *m = raw();
    mysql_close(m);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", stage_dir);
    if (system(cmd) != 0)
        return -1;
    C->global_cleanup(H);
    return 0;
}

/* ---------- settings and connecting ---------- */

static void test_connect_wrong_port_is_transient(void **state)
{
    (void)state;
    json_t *s = json_pack("{s:s, s:s, s:i}", "url", "mysql://etl@127.0.0.1:1/etl",
                          "password_env", "ETL_MY_PASSWORD", "connect_timeout", 2);
    etl_conn *c = NULL;
    etl_error err = {0};
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_ECONNECT);
    assert_null(c);
    assert_string_equal(err.name, "Etl.ConnectionFailed");
    assert_true(err.transient);
    assert_non_null(strstr(err.cause, "127.0.0.1:1"));
    json_decref(s);
    /* the test server has no TLS: ssl_mode required must not fall back to plain TCP */
    s = json_pack("{s:s, s:s, s:s}", "url", dbenv("ETL_MY_URL"), "password_env",
                  "ETL_MY_PASSWORD", "ssl_mode", "required");
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_ECONNECT);
    assert_string_equal(err.name, "Etl.ConnectionFailed");
    assert_non_null(strstr(err.cause, "TLS"));
    json_decref(s);
    /* preferred: TLS when offered, else plain */
    s = json_pack("{s:s, s:s, s:s}", "url", dbenv("ETL_MY_URL"), "password_env",
                  "ETL_MY_PASSWORD", "ssl_mode", "preferred");
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_OK);
    C->close(H, c);
    json_decref(s);
}

static void test_connect_wrong_password_not_transient(void **state)
{
    (void)state;
    setenv("ETL_TEST_WRONG_PW", "Wr0ng-S3cret-Pw", 1);
    json_t *s = json_pack("{s:s, s:s}", "url", dbenv("ETL_MY_URL"), "password_env",
                          "ETL_TEST_WRONG_PW");
    etl_conn *c = NULL;
    etl_error err = {0};
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_ECONNECT);
    assert_string_equal(err.name, "Etl.ConnectionFailed");
    assert_false(err.transient);
    assert_non_null(strstr(err.cause, "1045"));
    assert_null(strstr(err.cause, "Wr0ng-S3cret-Pw"));
    json_decref(s);
}

/* check_settings against a real checker: the messages a user would see. */
static size_t check_settings_text(const char *json, char *out, size_t n)
{
    diag *d = diag_new("p.json");
    doc *dc = doc_load_string(json, strlen(json), "p.json", true, d);
    assert_non_null(dc);
    etl_checker chk = {d, dc->root, "connection 'src'", 0};
    C->check_settings(H, host_wrap(dc->root->json), &chk);
    size_t k = diag_count(d);
    out[0] = '\0';
    for (size_t i = 0; i < k; i++) {
        strncat(out, diag_message(d, i), n - strlen(out) - 2);
        strncat(out, "\n", n - strlen(out) - 1);
    }
    doc_free(dc);
    diag_free(d);
    return k;
}

static void test_settings_checks(void **state)
{
    (void)state;
    char msg[4096];
    MYSQL *raw_conn = raw();
    /* a password in the URL is refused, and not echoed */
    assert_int_equal(check_settings_text("{\"url\": \"mysql://etl:hunter2@db:3306/shop\"}", msg,
                                         sizeof msg), 1);
    assert_non_null(strstr(msg, "password"));
    assert_null(strstr(msg, "hunter2"));
    assert_int_equal(check_settings_text("{\"url\": \"mysql://etl@db:3306/shop?ssl=1\"}", msg,
                                         sizeof msg), 1);
    assert_int_equal(check_settings_text("{\"url\": \"postgres://etl@db/shop\"}", msg, sizeof msg),
                     1);
    assert_int_equal(check_settings_text("{\"url\": \"mysql://etl@db:99999/shop\"}", msg,
                                         sizeof msg), 1);
    assert_int_equal(check_settings_text("{\"url\": \"mariadb://etl@[::1]:3307/shop\", "
                                         "\"ssl_mode\": \"verify_identity\", "
                                         "\"connect_timeout\": 5, \"init_sql\": \"SET x=1\"}",
                                         msg, sizeof msg), 0);
    assert_int_equal(check_settings_text("{\"host\": \"db\", \"ssl_mode\": \"sometimes\", "
                                         "\"colour\": \"red\", \"password\": \"x\"}",
                                         msg, sizeof msg), 3);
    assert_non_null(strstr(msg, "colour"));
    assert_non_null(strstr(msg, "ssl_mode"));
    assert_non_null(strstr(msg, "password_env"));
    /* a password file others can read is refused */
    char path[300];
    snprintf(path, sizeof path, "%s-pw", stage_dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s\n", dbenv("ETL_MY_PASSWORD"));
    fclose(f);
    chmod(path, 0644);
    char json[600];
    snprintf(json, sizeof json, "{\"url\": \"%s\", \"password_file\": \"%s\"}",
             dbenv("ETL_MY_URL"), path);
    assert_int_equal(check_settings_text(json, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "0644"));
    json_t *s = json_loads(json, 0, NULL);
    etl_conn *c = NULL;
    etl_error err = {0};
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_ECONNECT);
    assert_string_equal(err.name, "Etl.ConnectionFailed");
    assert_false(err.transient);
    assert_non_null(strstr(err.cause, "chmod 600"));
    /* mode 0600: accepted, and the first line is the password */
    chmod(path, 0600);
    assert_int_equal(check_settings_text(json, msg, sizeof msg), 0);
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_OK);
    assert_true(C->alive(H, c));
    char version[128];
    C->server_version(H, c, version, sizeof version);
    char *server = value(raw_conn, "SELECT VERSION()");
    assert_true(strncmp(version, "MariaDB ", 8) == 0 || strncmp(version, "MySQL ", 6) == 0);
    assert_non_null(strstr(server, strchr(version, ' ') + 1));
    free(server);
    C->close(H, c);
    json_decref(s);
    unlink(path);
    /* an unset password_env: not transient either */
    s = json_pack("{s:s, s:s}", "url", dbenv("ETL_MY_URL"), "password_env", "ETL_TEST_UNSET_PW");
    unsetenv("ETL_TEST_UNSET_PW");
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_ECONNECT);
    assert_false(err.transient);
    assert_non_null(strstr(err.cause, "ETL_TEST_UNSET_PW"));
    json_decref(s);
    /* port as a string of digits (port: ${env:PORT}) overrides the URL's */
    s = json_pack("{s:s, s:s, s:s}", "url", "mysql://etl@127.0.0.1:1/etl", "port",
                  dbenv("ETL_MY_PORT"), "password_env", "ETL_MY_PASSWORD");
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_OK);
    C->close(H, c);
    json_decref(s);
    assert_int_equal(check_settings_text("{\"host\": \"db\", \"port\": \"33a\"}", msg,
                                         sizeof msg), 1);
    /* separate fields and a unix socket instead of the URL */
    s = json_pack("{s:s, s:s, s:s, s:s}", "socket", dbenv("ETL_MY_SOCKET"), "user",
                  dbenv("ETL_MY_USER"), "database", dbenv("ETL_MY_DB"), "password_env",
                  "ETL_MY_PASSWORD");
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_OK);
    json_t *r = ok(c, "query", "{\"sql\": \"SELECT DATABASE() AS db, @@session.time_zone AS tz, "
                                "@@character_set_client AS cs\"}");
    assert_json(json_object_get(r, "rows"), "[{\"db\": \"etl\", \"tz\": \"+00:00\", \"cs\": "
                                            "\"utf8mb4\"}]");
    json_decref(r);
    C->close(H, c);
    json_decref(s);
    /* init_sql: several statements, run after etlrun's own session settings */
    s = json_pack("{s:s, s:s, s:s}", "url", dbenv("ETL_MY_URL"), "password_env",
                  "ETL_MY_PASSWORD", "init_sql", "SET @a = 40; SET @b = 2; SELECT 1");
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_OK);
    r = ok(c, "query", "{\"sql\": \"SELECT @a + @b AS s\"}");
    assert_json(json_object_get(r, "rows"), "[{\"s\": 42}]");
    json_decref(r);
    /* ...and multi-statements are off again for everything else */
    call k;
    assert_int_equal(run(&k, c, "exec", "{\"sql\": \"CREATE TABLE IF NOT EXISTS ms_t (i INT); "
                                        "DROP TABLE ms_t\"}"), ETL_EQUERY);
    C->close(H, c);
    json_decref(s);
    s = json_pack("{s:s, s:s, s:s}", "url", dbenv("ETL_MY_URL"), "password_env",
                  "ETL_MY_PASSWORD", "init_sql", "SET @a = 1; SET nonsense");
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_ECONNECT);
    assert_non_null(strstr(err.cause, "init_sql"));
    assert_false(err.transient);
    json_decref(s);
    mysql_close(raw_conn);
}

/* ---------- sql.query: values ---------- */

static void make_types_table(MYSQL *m)
{
    sql(m, "SET SESSION sql_mode = ''");
    sql(m, "DROP TABLE IF EXISTS types_t");
    sql(m, "CREATE TABLE types_t (id INT PRIMARY KEY, ti TINYINT, b TINYINT(1), si SMALLINT, "
           "mi MEDIUMINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED, ui INT UNSIGNED, "
           "d DECIMAL(30,10), f FLOAT, dbl DOUBLE, dt DATE, dtm DATETIME, dtm3 DATETIME(3), "
           "ts TIMESTAMP(6) NULL, tm TIME, tm2 TIME(2), y YEAR, c CHAR(3), vc VARCHAR(40), "
           "tx TEXT, bn BINARY(4), vb VARBINARY(300), bl BLOB, lb LONGBLOB, j JSON, "
           "bt BIT(8), bt3 BIT(3), e ENUM('small','large'), st SET('a','b','c'))");
    sql(m, "INSERT INTO types_t VALUES (1, -128, 1, -32768, -8388608, -2147483648, "
           "-9223372036854775808, 18446744073709551615, 4294967295, "
           "-12345678901234567890.0123456789, 0.1, 0.1, '2026-11-22', '2026-11-22 03:00:00', "
           "'2026-11-22 03:00:00.120', '2026-11-22 03:00:00.000001', '-838:59:59', '12:34:56.78',"
           " 2026, 'ab', 'héllo, \"wörld\"\\n🎉', REPEAT('x', 10000), 0x00ff0a5c, "
           "UNHEX(REPEAT('00', 300)), NULL, NULL, '{\"a\": [1, 2.5, null], \"b\": \"c\"}', "
           "b'00000101', b'101', 'large', 'a,c')");
    sql(m, "INSERT INTO types_t (id, ubi, d, dt, dtm, dtm3, ts, tm, c, vc, tx, j) VALUES "
           "(2, 9223372036854775807, 0, '0000-00-00', '0000-00-00 00:00:00', "
           "'2026-00-10 00:00:00', '0000-00-00 00:00:00', '00:00:00', '', '', '', 'null')");
    /* a blob with all 256 byte values, and a longblob larger than the first buffer */
    char hex[513];
    for (int i = 0; i < 256; i++)
        snprintf(hex + 2 * i, 3, "%02x", i);
    sql(m, "UPDATE types_t SET bl = UNHEX('%s'), lb = UNHEX(REPEAT('%s', 64)) WHERE id = 1", hex,
        hex);
}

static void test_query_value_mapping(void **state)
{
    (void)state;
    MYSQL *m = raw();
    make_types_table(m);
    etl_conn *c = open_conn();
    json_t *r = ok(c, "query", "{\"sql\": \"SELECT * FROM types_t ORDER BY id\"}");
    assert_int_equal(json_integer_value(json_object_get(r, "count")), 2);
    json_t *row = json_array_get(json_object_get(r, "rows"), 0);
    /* keys in column order */
    const char *first_key = json_object_iter_key(json_object_iter(row));
    assert_string_equal(first_key, "id");
    assert_json(json_object_get(row, "ti"), "-128");
    assert_json(json_object_get(row, "b"), "1");
    assert_json(json_object_get(row, "si"), "-32768");
    assert_json(json_object_get(row, "mi"), "-8388608");
    assert_json(json_object_get(row, "i"), "-2147483648");
    assert_true(json_is_integer(json_object_get(row, "bi")));
    assert_true(json_integer_value(json_object_get(row, "bi")) == INT64_MIN);
    assert_json(json_object_get(row, "ubi"), "\"18446744073709551615\"");
    assert_json(json_object_get(row, "ui"), "4294967295");
    assert_json(json_object_get(row, "d"), "\"-12345678901234567890.0123456789\"");
    assert_true(json_is_real(json_object_get(row, "f")));
    assert_true(json_real_value(json_object_get(row, "f")) == 0.1); /* float's shortest */
    assert_true(json_real_value(json_object_get(row, "dbl")) == 0.1);
    assert_json(json_object_get(row, "dt"), "\"2026-11-22\"");
    assert_json(json_object_get(row, "dtm"), "\"2026-11-22T03:00:00\"");
    assert_json(json_object_get(row, "dtm3"), "\"2026-11-22T03:00:00.120\"");
    assert_json(json_object_get(row, "ts"), "\"2026-11-22T03:00:00.000001\"");
    assert_json(json_object_get(row, "tm"), "\"-838:59:59\"");
    assert_json(json_object_get(row, "tm2"), "\"12:34:56.78\"");
    assert_json(json_object_get(row, "y"), "2026");
    assert_json(json_object_get(row, "c"), "\"ab\"");
    assert_json(json_object_get(row, "vc"), "\"héllo, \\\"wörld\\\"\\n🎉\"");
    assert_int_equal(json_string_length(json_object_get(row, "tx")), 10000);
    assert_json(json_object_get(row, "bn"), "\"\\\\x00ff0a5c\"");
    assert_int_equal(json_string_length(json_object_get(row, "vb")), 2 + 600);
    assert_json(json_object_get(row, "j"), "{\"a\": [1, 2.5, null], \"b\": \"c\"}");
    assert_json(json_object_get(row, "bt"), "\"00000101\"");
    assert_json(json_object_get(row, "bt3"), "\"101\"");
    assert_json(json_object_get(row, "e"), "\"large\"");
    assert_json(json_object_get(row, "st"), "\"a,c\"");
    const char *bl = json_string_value(json_object_get(row, "bl"));
    assert_int_equal(strlen(bl), 2 + 512);
    assert_memory_equal(bl, "\\x000102", 8);
    assert_string_equal(bl + 2 + 510, "ff");
    assert_int_equal(json_string_length(json_object_get(row, "lb")), 2 + 512 * 64);
    /* row 2: zero dates are null; the empty string is not; JSON null is JSON null;
     * unsigned up to 2^63-1 is an integer; NULLs are null */
    row = json_array_get(json_object_get(r, "rows"), 1);
    assert_json(json_object_get(row, "dt"), "null");
    assert_json(json_object_get(row, "dtm"), "null");
    assert_json(json_object_get(row, "dtm3"), "null");
    assert_json(json_object_get(row, "ts"), "null");
    assert_json(json_object_get(row, "tm"), "\"00:00:00\"");
    assert_json(json_object_get(row, "c"), "\"\"");
    assert_json(json_object_get(row, "vc"), "\"\"");
    assert_json(json_object_get(row, "j"), "null");
    assert_true(json_is_integer(json_object_get(row, "ubi")));
    assert_true(json_integer_value(json_object_get(row, "ubi")) == INT64_MAX);
    assert_json(json_object_get(row, "d"), "\"0.0000000000\"");
    assert_json(json_object_get(row, "ti"), "null");
    assert_json(json_object_get(row, "bl"), "null");
    json_decref(r);
    /* expressions: computed columns get the same mapping */
    r = ok(c, "query", "{\"sql\": \"SELECT 1+1 AS two, 1.5 AS dec_, CAST(1e300 AS DOUBLE) AS big, "
                       "NULL AS nothing, CAST('x' AS BINARY) AS bin, 'true' = 'true' AS t\"}");
    assert_json(json_object_get(r, "rows"), "[{\"two\": 2, \"dec_\": \"1.5\", \"big\": 1e300, "
                                            "\"nothing\": null, \"bin\": \"\\\\x78\", \"t\": 1}]");
    json_decref(r);
    C->close(H, c);
    mysql_close(m);
}

/* The staged text of every type: what extract writes, checked field by field. */
static void test_extract_value_text(void **state)
{
    (void)state;
    MYSQL *m = raw();
    make_types_table(m);
    etl_conn *c = open_conn();
    json_t *man = ok(c, "extract", "{\"sql\": \"SELECT * FROM types_t ORDER BY id\", "
                                   "\"key\": \"types\"}");
    assert_int_equal(json_integer_value(json_object_get(man, "rows")), 2);
    /* manifest types */
    static const char *const types[] = {
        "int", "tinyint", "tinyint(1)", "smallint", "mediumint", "int", "bigint",
        "bigint unsigned", "int unsigned", "decimal(30,10)", "float", "double", "date",
        "datetime", "datetime(3)", "timestamp(6)", "time", "time(2)", "year", "char(3)",
        "varchar(40)", "text", "binary(4)", "varbinary(300)", "blob", "longblob", "json",
        "bit(8)", "bit(3)", "enum", "set"};
    json_t *cols = json_object_get(man, "columns");
    assert_int_equal(json_array_size(cols), sizeof types / sizeof types[0]);
    for (size_t i = 0; i < json_array_size(cols); i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(cols, i), "type")),
                            types[i]);
    etl_error err = {0};
    etl_stage_reader *rd = H->stage_read_open(NULL, json_string_value(json_object_get(man,
                                                                                      "file")),
                                              &err);
    assert_non_null(rd);
    const char *const *f;
    const size_t *l;
    size_t n;
    assert_int_equal(H->stage_read_row(rd, &f, &l, &n, &err), 1);
    assert_int_equal(n, sizeof types / sizeof types[0]);
#define FIELD(i, text)                                                                     \
    do {                                                                                   \
        assert_non_null(f[i]);                                                             \
        assert_int_equal(l[i], strlen(text));                                              \
        assert_memory_equal(f[i], text, strlen(text));                                     \
    } while (0)
    FIELD(7, "18446744073709551615");
    FIELD(9, "-12345678901234567890.0123456789");
    FIELD(10, "0.1");
    FIELD(11, "0.1");
    FIELD(13, "2026-11-22T03:00:00");
    FIELD(15, "2026-11-22T03:00:00.000001");
    FIELD(16, "-838:59:59");
    FIELD(20, "héllo, \"wörld\"\n🎉");
    FIELD(22, "\\x00ff0a5c");
    FIELD(26, "{\"a\": [1, 2.5, null], \"b\": \"c\"}");
    FIELD(27, "00000101");
    FIELD(30, "a,c");
    assert_int_equal(l[24], 2 + 512); /* all 256 byte values */
    assert_memory_equal(f[24], "\\x000102", 8);
    assert_int_equal(H->stage_read_row(rd, &f, &l, &n, &err), 1);
    assert_null(f[12]); /* zero date: NULL */
    assert_null(f[13]);
    assert_null(f[1]);  /* NULL */
    FIELD(19, "");      /* the empty string is not NULL */
    FIELD(26, "null");
    FIELD(7, "9223372036854775807");
    assert_int_equal(H->stage_read_row(rd, &f, &l, &n, &err), 0);
    H->stage_read_close(rd);
#undef FIELD
    json_decref(man);
    C->close(H, c);
    mysql_close(m);
}

/* Floats and doubles in the shortest text that reads back to the same value. */
extern size_t myc_fmt_double(double d, char *buf);
extern size_t myc_fmt_float(float f, char *buf);

static void test_shortest_reals(void **state)
{
    (void)state;
    static const struct {
        double d;
        const char *text;
    } doubles[] = {
        {0.1, "0.1"}, {1.0 / 3, "0.3333333333333333"}, {2.0 / 3, "0.6666666666666666"},
        {100, "100"}, {-7, "-7"}, {-0.0, "-0"}, {1e300, "1e+300"}, {5e-324, "5e-324"},
        {0.1 + 0.2, "0.30000000000000004"}, {123456789012345680.0, "1.2345678901234568e+17"},
        {1e15, "1e+15"}, {999999999999999.0, "999999999999999"}, {2.5e-308, "2.5e-308"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof doubles / sizeof doubles[0]; i++) {
        size_t n = myc_fmt_double(doubles[i].d, buf);
        assert_int_equal(n, strlen(buf));
        assert_string_equal(buf, doubles[i].text);
    }
    static const struct {
        float f;
        const char *text;
    } floats[] = {
        {0.1f, "0.1"}, {1.0f / 3, "0.33333334"}, {16777216.0f, "16777216"}, {3.0f, "3"},
        {1e-45f, "1e-45"}, {3.4028235e38f, "3.4028235e+38"}, {-2.5f, "-2.5"},
    };
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        size_t n = myc_fmt_float(floats[i].f, buf);
        assert_int_equal(n, strlen(buf));
        assert_string_equal(buf, floats[i].text);
    }
}

/* ---------- parameters, caps, exec ---------- */

static void test_params_are_bound(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS params_t");
    sql(m, "CREATE TABLE params_t (k VARCHAR(64), n BIGINT, v TEXT)");
    sql(m, "INSERT INTO params_t VALUES ('x''; DROP TABLE params_t; --', 9007199254740993, 'evil'),"
           " ('plain', 1, 'ok')");
    etl_conn *c = open_conn();
    json_t *r = ok(c, "query", "{\"sql\": \"SELECT v FROM params_t WHERE k = ? AND n = ?\", "
                               "\"params\": [\"x'; DROP TABLE params_t; --\", 9007199254740993]}");
    assert_json(r, "{\"rows\": [{\"v\": \"evil\"}], \"count\": 1}");
    json_decref(r);
    assert_int_equal(count(m, "params_t"), 2);
    /* integers bind as integers (LIMIT ? works), booleans as 1/0, null as NULL, reals and
     * JSON values as text */
    r = ok(c, "query", "{\"sql\": \"SELECT ? AS a, ? AS b, ? IS NULL AS c, ? AS d, ? AS e "
                       "FROM params_t ORDER BY k LIMIT ?\", "
                       "\"params\": [true, false, null, 2.5, {\"x\": [1]}, 1]}");
    assert_json(json_object_get(r, "rows"),
                "[{\"a\": 1, \"b\": 0, \"c\": 1, \"d\": \"2.5\", \"e\": \"{\\\"x\\\":[1]}\"}]");
    json_decref(r);
    /* placeholder count mismatch */
    call k;
    assert_int_equal(run(&k, c, "query", "{\"sql\": \"SELECT ?\", \"params\": []}"), ETL_EINVAL);
    assert_string_equal(k.err.name, "Etl.QueryFailed");
    assert_non_null(strstr(k.err.cause, "placeholder"));
    /* a server error carries errno, SQLSTATE and the message */
    assert_int_equal(run(&k, c, "query", "{\"sql\": \"SELEC 1\"}"), ETL_EQUERY);
    assert_string_equal(k.err.name, "Etl.QueryFailed");
    assert_non_null(strstr(k.err.cause, "1064"));
    assert_non_null(strstr(k.err.cause, "42000"));
    assert_false(k.err.transient);
    /* unknown Parameters are refused at run time too */
    assert_int_equal(run(&k, c, "query", "{\"sql\": \"SELECT 1\", \"max_rowz\": 3}"), ETL_EINVAL);
    assert_non_null(strstr(k.err.cause, "max_rowz"));
    C->close(H, c);
    mysql_close(m);
}

static void test_query_caps(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS caps_t");
    sql(m, "CREATE TABLE caps_t (i INT, s TEXT)");
    sql(m, "INSERT INTO caps_t SELECT seq, REPEAT('y', 1000) FROM seq_1_to_11");
    etl_conn *c = open_conn();
    call k;
    assert_int_equal(run(&k, c, "query", "{\"sql\": \"SELECT i FROM caps_t\", \"max_rows\": 10}"),
                     ETL_EQUERY);
    assert_string_equal(k.err.name, "Etl.QueryFailed");
    assert_non_null(strstr(k.err.cause, "max_rows"));
    assert_non_null(strstr(k.err.cause, "extract"));
    /* the connection stays usable after a capped query */
    json_t *r = ok(c, "query", "{\"sql\": \"SELECT i FROM caps_t\", \"max_rows\": 11}");
    assert_int_equal(json_integer_value(json_object_get(r, "count")), 11);
    json_decref(r);
    assert_int_equal(run(&k, c, "query", "{\"sql\": \"SELECT s FROM caps_t\", \"max_bytes\": 5000}"),
                     ETL_EQUERY);
    assert_non_null(strstr(k.err.cause, "max_bytes"));
    r = ok(c, "query", "{\"sql\": \"SELECT s FROM caps_t LIMIT 4\", \"max_bytes\": 5000}");
    assert_int_equal(json_integer_value(json_object_get(r, "count")), 4);
    json_decref(r);
    C->close(H, c);
    mysql_close(m);
}

static void test_exec_and_transactions(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS exec_t");
    etl_conn *c = open_conn();
    json_t *r = ok(c, "exec", "{\"sql\": \"CREATE TABLE exec_t (i INT PRIMARY KEY, s TEXT)\"}");
    assert_json(r, "{\"affected\": 0}");
    json_decref(r);
    r = ok(c, "exec", "{\"sql\": \"INSERT INTO exec_t VALUES (?, ?), (?, ?)\", "
                      "\"params\": [1, \"a\", 2, null]}");
    assert_json(r, "{\"affected\": 2}");
    json_decref(r);
    r = ok(c, "exec", "{\"sql\": [\"UPDATE exec_t SET s = ? WHERE i = ?\", "
                      "\"DELETE FROM exec_t WHERE i = ?\", \"INSERT INTO exec_t VALUES (3, 'c')\"], "
                      "\"params\": [[\"z\", 1], [2], null]}");
    assert_json(r, "{\"affected\": [1, 1, 1]}");
    json_decref(r);
    /* a failing statement rolls the whole list back */
    call k;
    assert_int_equal(run(&k, c, "exec", "{\"sql\": [\"DELETE FROM exec_t\", "
                                        "\"INSERT INTO exec_t VALUES (1, 'dup'), (1, 'dup')\"]}"),
                     ETL_EQUERY);
    assert_non_null(strstr(k.err.cause, "1062"));
    assert_non_null(strstr(k.err.cause, "sql[1]"));
    assert_int_equal(count(m, "exec_t"), 2);
    char *v = value(m, "SELECT GROUP_CONCAT(i, ':', s ORDER BY i) FROM exec_t");
    assert_string_equal(v, "1:z,3:c");
    free(v);
    /* the connection is usable after the rollback (no transaction left open) */
    r = ok(c, "exec", "{\"sql\": \"DELETE FROM exec_t WHERE i = 3\"}");
    assert_json(r, "{\"affected\": 1}");
    json_decref(r);
    assert_int_equal(count(m, "exec_t"), 1);
    /* params must be one list per statement */
    assert_int_equal(run(&k, c, "exec", "{\"sql\": [\"SELECT ?\", \"SELECT ?\"], "
                                        "\"params\": [1, 2]}"), ETL_EINVAL);
    /* a statement that cannot be prepared runs as a plain query */
    r = ok(c, "exec", "{\"sql\": \"CREATE OR REPLACE PROCEDURE exec_p() BEGIN "
                      "UPDATE exec_t SET s = 'p'; END\"}");
    json_decref(r);
    r = ok(c, "exec", "{\"sql\": \"CALL exec_p()\"}");
    json_decref(r);
    v = value(m, "SELECT s FROM exec_t WHERE i = 1");
    assert_string_equal(v, "p");
    free(v);
    /* a procedure's result set through query and extract; the connection stays in step */
    r = ok(c, "exec", "{\"sql\": \"CREATE OR REPLACE PROCEDURE exec_q(IN n INT) BEGIN "
                      "SELECT i, s FROM exec_t WHERE i >= n; END\"}");
    json_decref(r);
    r = ok(c, "query", "{\"sql\": \"CALL exec_q(?)\", \"params\": [0]}");
    assert_json(r, "{\"rows\": [{\"i\": 1, \"s\": \"p\"}], \"count\": 1}");
    json_decref(r);
    r = ok(c, "extract", "{\"sql\": \"CALL exec_q(?)\", \"params\": [0], \"key\": \"call\"}");
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 1);
    json_decref(r);
    r = ok(c, "query", "{\"sql\": \"SELECT 7 AS x\"}");
    assert_json(json_object_get(r, "rows"), "[{\"x\": 7}]");
    json_decref(r);
    assert_true(C->alive(H, c));
    C->close(H, c);
    mysql_close(m);
}

/* ---------- extract -> load ---------- */

static const char *const awkward[] = {
    "", " ", "a,b", "\"quoted\"", "line\nbreak", "cr\rlf\r\n", "tab\there", "back\\slash",
    "\\N", "NULL", "trailing ", " leading", "ünïcødé ✓ 🎉", "x'; DROP TABLE t; --", "'",
    "\\", "\t", "\n",
};
#define N_AWKWARD (sizeof awkward / sizeof awkward[0])

static void fill_src(MYSQL *m, const char *table, int rows)
{
    sql(m, "DROP TABLE IF EXISTS %s", table);
    sql(m, "CREATE TABLE %s (id INT PRIMARY KEY, k INT, s VARCHAR(100), t MEDIUMTEXT, "
           "b BLOB, d DECIMAL(30,10), u BIGINT UNSIGNED, f DOUBLE, fl FLOAT, dt DATETIME(6), "
           "j JSON, bt BIT(8), e ENUM('a','b','c'), tm TIME(3), bo TINYINT(1))", table);
    size_t cap = 1 << 20;
    char *q = malloc(cap);
    char esc[2 * 300 + 1], blob[300];
    srand(42);
    for (int base = 0; base < rows; base += 500) {
        size_t len = (size_t)snprintf(q, cap, "INSERT INTO %s VALUES ", table);
        for (int id = base; id < base + 500 && id < rows; id++) {
            const char *s = awkward[id % N_AWKWARD];
            int bl = rand() % 40;
            for (int i = 0; i < bl; i++)
                blob[i] = (char)(rand() % 256);
            if (id % 7 == 0)
                bl = 0;
            mysql_real_escape_string(m, esc, s, (unsigned long)strlen(s));
            len += (size_t)snprintf(q + len, cap - len, "%s(%d, %d, %s%s%s, ", id > base ? "," : "",
                                    id, id % 50, id % 11 == 3 ? "NULL" : "'",
                                    id % 11 == 3 ? "" : esc, id % 11 == 3 ? "" : "'");
            if (id % 1000 == 1)
                len += (size_t)snprintf(q + len, cap - len, "REPEAT('long\\t\\n', 3000), ");
            else
                len += (size_t)snprintf(q + len, cap - len, "%s%s%s, ", id % 13 == 0 ? "NULL" : "'",
                                        id % 13 == 0 ? "" : esc, id % 13 == 0 ? "" : "'");
            char hex[100];
            for (int i = 0; i < bl; i++)
                snprintf(hex + 2 * i, 3, "%02x", (unsigned char)blob[i]);
            hex[2 * bl] = '\0';
            len += (size_t)snprintf(
                q + len, cap - len,
                "%s%s%s, %d%s.%010d, %s, %.17g, %.9g, '20%02d-%02d-%02d %02d:%02d:%02d.%06d', "
                "'{\"id\": %d, \"s\": [\"\\\\u00e9\", 1.5, null]}', %d, '%c', '%s%02d:%02d:%02d.%03d',"
                " %d)",
                id % 17 == 0 ? "NULL" : "X'", id % 17 == 0 ? "" : hex, id % 17 == 0 ? "" : "'",
                id % 2 ? -id : id, "", rand() % 1000000000,
                id % 5 == 0 ? "18446744073709551615" : id % 5 == 1 ? "0" : "9223372036854775808",
                (double)rand() / 3.0 * (id % 3 ? 1e-200 : 1e200), (double)rand() / 7.0,
                id % 100, 1 + id % 12, 1 + id % 28, id % 24, id % 60, id % 60, id % 1000000,
                id, id % 256, 'a' + id % 3, id % 2 ? "-" : "", id % 839, id % 60, id % 60,
                id % 1000, id % 3 - 1);
        }
        if (mysql_real_query(m, q, len))
            fail_msg("insert: %s", mysql_error(m));
    }
    free(q);
}

/* Checksum of every column with NULL markers, computed by the server. */
static char *checksum(MYSQL *m, const char *table)
{
    return value(m, "SELECT CONCAT(COUNT(*), ':', SUM(CRC32(CONCAT_WS('|', id, k, ISNULL(s), s, "
                    "ISNULL(t), t, ISNULL(b), HEX(b), d, u, f, fl, dt, j, HEX(bt), e, tm, bo)))) "
                    "FROM %s", table);
}

static void test_extract_load_round_trip(void **state)
{
    (void)state;
    MYSQL *m = raw();
    fill_src(m, "rt_src", 50000);
    sql(m, "DROP TABLE IF EXISTS rt_dst");
    etl_conn *c = open_conn();
    call k;
    if (run(&k, c, "extract", "{\"sql\": \"SELECT * FROM rt_src WHERE id >= ? ORDER BY id\", "
                              "\"params\": [0], \"key\": \"all\"}") != ETL_OK)
        fail_msg("%s: %s", k.err.name, k.err.cause);
    json_t *man = k.result;
    assert_int_equal(json_integer_value(json_object_get(man, "rows")), 50000);
    /* progress: every row counted, in steps of 10,000 and the rest at the end */
    assert_int_equal(atomic_load(&k.task.rows), 50000);
    assert_true(atomic_load(&k.task.bytes) > 50000 * 20);
    const char *file = json_string_value(json_object_get(man, "file"));
    assert_int_equal(access(file, R_OK), 0);
    json_t *r = ok(c, "load", "{\"file\": \"%s\", \"table\": \"%s.rt_dst\", \"create\": true, "
                              "\"keep\": true}", file, dbenv("ETL_MY_DB"));
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 50000);
    assert_string_equal(json_string_value(json_object_get(r, "mode")), "append");
    assert_int_equal(json_integer_value(json_object_get(r, "bytes")),
                     json_integer_value(json_object_get(man, "bytes")));
    json_decref(r);
    char *a = checksum(m, "rt_src"), *b = checksum(m, "rt_dst");
    assert_string_equal(a, b);
    free(a);
    free(b);
    /* every awkward value, NULL and "" included, is byte-identical, row by row */
    char *diff = value(m, "SELECT COUNT(*) FROM rt_src s JOIN rt_dst d USING (id) WHERE "
                          "NOT (s.s <=> d.s) OR NOT (s.t <=> d.t) OR NOT (s.b <=> d.b) OR "
                          "NOT (s.f <=> d.f) OR NOT (s.fl <=> d.fl) OR NOT (s.dt <=> d.dt) OR "
                          "NOT (s.bt <=> d.bt) OR NOT (s.u <=> d.u) OR NOT (s.d <=> d.d)");
    assert_string_equal(diff, "0");
    free(diff);
    char *nulls = value(m, "SELECT CONCAT(SUM(s IS NULL), '/', SUM(s = ''), '/', SUM(b IS NULL), "
                           "'/', SUM(b = '')) FROM rt_dst");
    char *src_nulls = value(m, "SELECT CONCAT(SUM(s IS NULL), '/', SUM(s = ''), '/', "
                               "SUM(b IS NULL), '/', SUM(b = '')) FROM rt_src");
    assert_string_equal(nulls, src_nulls);
    assert_string_not_equal(nulls, "0/0/0/0");
    free(nulls);
    free(src_nulls);
    /* create: true kept the source types */
    char *ty = value(m, "SELECT GROUP_CONCAT(COLUMN_TYPE ORDER BY ORDINAL_POSITION) FROM "
                        "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND "
                        "TABLE_NAME = 'rt_dst'");
    assert_string_equal(ty, "int(11),int(11),varchar(100),mediumtext,blob,decimal(30,10),"
                            "bigint(20) unsigned,double,float,datetime(6),longtext,bit(8),"
                            "text,time(3),tinyint(1)");
    free(ty);
    /* keep: the file is still there */
    assert_int_equal(access(file, R_OK), 0);
    json_decref(man);
    C->close(H, c);
    mysql_close(m);
}

/* Stage a file with the given columns and rows through the host, as any extract would. */
static json_t *stage(const char *name, const etl_column *cols, size_t n_cols,
                     const char *const *cells, size_t n_rows)
{
    etl_task t;
    atomic_int cancel = 0;
    etl_error err = {0};
    host_task_init(&t, name, "", "", stage_dir, 1, &cancel);
    etl_stage_writer *w = H->stage_open(&t, cols, n_cols, NULL, &err);
    assert_non_null(w);
    size_t lens[16];
    for (size_t r = 0; r < n_rows; r++) {
        const char *const *row = cells + r * n_cols;
        for (size_t i = 0; i < n_cols; i++)
            lens[i] = row[i] ? strlen(row[i]) : 0;
        assert_int_equal(H->stage_row(w, row, lens, &err), ETL_OK);
    }
    etl_json *man = NULL;
    assert_int_equal(H->stage_finish(w, &man, &err), ETL_OK);
    pthread_mutex_destroy(&t.mu);
    return host_json(man);
}

static void test_load_modes(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS modes_t");
    sql(m, "CREATE TABLE modes_t (k VARCHAR(10), id INT, v VARCHAR(20), PRIMARY KEY (k, id))");
    sql(m, "INSERT INTO modes_t VALUES ('a', 1, 'old'), ('a', 2, 'old'), ('b', 1, 'keep')");
    etl_column cols[] = {{"k", "varchar(10)"}, {"id", "int"}, {"v", "varchar(20)"}};
    const char *rows_a[] = {"a", "1", "new", "a", "3", NULL, "a", "4", ""};
    json_t *man = stage("modesA", cols, 3, rows_a, 3);
    const char *file = json_string_value(json_object_get(man, "file"));
    etl_conn *c = open_conn();
    /* replace: only the key's rows go */
    json_t *r = ok(c, "load", "{\"file\": \"%s\", \"table\": \"modes_t\", \"mode\": \"replace\", "
                              "\"key_column\": \"k\", \"key\": \"a\", \"keep\": true}", file);
    json_t *want = json_pack("{s:s, s:s, s:i, s:O, s:i}", "table", "modes_t", "mode", "replace",
                             "rows", 3, "bytes", json_object_get(man, "bytes"), "deleted", 2);
    assert_true(json_equal(r, want));
    json_decref(want);
    json_decref(r);
    char *v = value(m, "SELECT GROUP_CONCAT(k, id, '=', IFNULL(v, 'NULL') ORDER BY k, id) FROM "
                       "modes_t");
    assert_string_equal(v, "a1=new,a3=NULL,a4=,b1=keep");
    free(v);
    /* NULL and "" stayed distinct */
    v = value(m, "SELECT CONCAT(SUM(v IS NULL), SUM(v = '')) FROM modes_t");
    assert_string_equal(v, "11");
    free(v);
    /* merge: upsert by primary key */
    const char *rows_m[] = {"a", "1", "merged", "c", "9", "added"};
    json_t *man2 = stage("modesM", cols, 3, rows_m, 2);
    r = ok(c, "load", "{\"file\": \"%s\", \"table\": \"modes_t\", \"mode\": \"merge\", "
                      "\"primary_key\": [\"k\", \"id\"]}",
           json_string_value(json_object_get(man2, "file")));
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 2);
    json_decref(r);
    v = value(m, "SELECT GROUP_CONCAT(k, id, '=', IFNULL(v, 'NULL') ORDER BY k, id) FROM modes_t");
    assert_string_equal(v, "a1=merged,a3=NULL,a4=,b1=keep,c9=added");
    free(v);
    /* without keep, the staged file and its manifest are gone */
    assert_int_not_equal(access(json_string_value(json_object_get(man2, "file")), F_OK), 0);
    char mpath[600];
    snprintf(mpath, sizeof mpath, "%s.manifest.json", json_string_value(json_object_get(man2,
                                                                                        "file")));
    assert_int_not_equal(access(mpath, F_OK), 0);
    /* truncate: everything replaced */
    r = ok(c, "load", "{\"file\": \"%s\", \"table\": \"modes_t\", \"mode\": \"truncate\", "
                      "\"keep\": true}", file);
    assert_int_equal(json_integer_value(json_object_get(r, "deleted")), 5);
    json_decref(r);
    v = value(m, "SELECT GROUP_CONCAT(k, id ORDER BY k, id) FROM modes_t");
    assert_string_equal(v, "a1,a3,a4");
    free(v);
    /* append into a duplicate key: LOAD DATA LOCAL would skip the rows with a warning;
     * the load fails and nothing changes */
    call k;
    assert_int_equal(run(&k, c, "load", "{\"file\": \"%s\", \"table\": \"modes_t\", "
                                        "\"keep\": true}", file), ETL_EQUERY);
    assert_string_equal(k.err.name, "Etl.LoadFailed");
    assert_non_null(strstr(k.err.cause, "Duplicate"));
    assert_int_equal(count(m, "modes_t"), 3);
    /* columns: load into differently named target columns */
    sql(m, "DROP TABLE IF EXISTS modes2_t");
    sql(m, "CREATE TABLE modes2_t (kk VARCHAR(10), ii INT, vv VARCHAR(20), extra INT DEFAULT 7)");
    r = ok(c, "load", "{\"file\": \"%s\", \"table\": \"modes2_t\", \"columns\": [\"kk\", \"ii\", "
                      "\"vv\"], \"keep\": true}", file);
    json_decref(r);
    v = value(m, "SELECT GROUP_CONCAT(kk, ii, extra ORDER BY ii) FROM modes2_t");
    assert_string_equal(v, "a17,a37,a47");
    free(v);
    json_decref(man);
    json_decref(man2);
    C->close(H, c);
    mysql_close(m);
}

static void test_load_bad_values_roll_back(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS bad_t");
    sql(m, "CREATE TABLE bad_t (k INT, n INT)");
    sql(m, "INSERT INTO bad_t VALUES (1, 1), (1, 2), (2, 3)");
    etl_column cols[] = {{"k", "int"}, {"n", "int"}};
    const char *rows[] = {"1", "10", "1", "not a number", "1", "12"};
    json_t *man = stage("bad", cols, 2, rows, 3);
    etl_conn *c = open_conn();
    call k;
    assert_int_equal(run(&k, c, "load", "{\"file\": \"%s\", \"table\": \"bad_t\", \"mode\": "
                                        "\"replace\", \"key_column\": \"k\", \"key\": 1}",
                         json_string_value(json_object_get(man, "file"))), ETL_EQUERY);
    assert_string_equal(k.err.name, "Etl.LoadFailed");
    assert_non_null(strstr(k.err.cause, "not a number"));
    assert_false(k.err.transient);
    /* rolled back: the key's old rows are still there, and the file too */
    char *v = value(m, "SELECT GROUP_CONCAT(k, ':', n ORDER BY n) FROM bad_t");
    assert_string_equal(v, "1:1,1:2,2:3");
    free(v);
    assert_int_equal(access(json_string_value(json_object_get(man, "file")), F_OK), 0);
    /* a missing table is a load failure too */
    assert_int_equal(run(&k, c, "load", "{\"file\": \"%s\", \"table\": \"no_such_t\"}",
                         json_string_value(json_object_get(man, "file"))), ETL_EQUERY);
    assert_non_null(strstr(k.err.cause, "1146"));
    assert_string_equal(k.err.name, "Etl.QueryFailed"); /* not about the data */
    /* the connection is still usable */
    json_t *r = ok(c, "query", "{\"sql\": \"SELECT @@in_transaction AS t\"}");
    assert_json(json_object_get(r, "rows"), "[{\"t\": 0}]");
    json_decref(r);
    json_decref(man);
    C->close(H, c);
    mysql_close(m);
}

static void test_load_integrity(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS integ_t");
    sql(m, "CREATE TABLE integ_t (k INT, v VARCHAR(20))");
    sql(m, "INSERT INTO integ_t VALUES (1, 'old')");
    etl_column cols[] = {{"k", "int"}, {"v", "varchar(20)"}};
    const char *rows[] = {"1", "new-1", "1", "new-2"};
    json_t *man = stage("integ", cols, 2, rows, 2);
    const char *file = json_string_value(json_object_get(man, "file"));
    /* flip one byte of a value: same size, other CRC */
    int fd = open(file, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    fstat(fd, &st);
    char ch;
    assert_int_equal(pread(fd, &ch, 1, st.st_size - 2), 1);
    ch = ch == '2' ? '3' : '2';
    assert_int_equal(pwrite(fd, &ch, 1, st.st_size - 2), 1);
    close(fd);
    etl_conn *c = open_conn();
    call k;
    assert_int_equal(run(&k, c, "load", "{\"file\": \"%s\", \"table\": \"integ_t\", \"mode\": "
                                        "\"truncate\"}", file), ETL_EINVAL);
    assert_string_equal(k.err.name, "Etl.IntegrityError");
    char *v = value(m, "SELECT GROUP_CONCAT(k, v) FROM integ_t");
    assert_string_equal(v, "1old");
    free(v);
    /* a missing file is refused the same way, before the table is touched */
    assert_int_not_equal(run(&k, c, "load", "{\"file\": \"%s/nope.csv\", \"table\": \"integ_t\", "
                                            "\"mode\": \"truncate\"}", stage_dir), ETL_OK);
    assert_int_equal(count(m, "integ_t"), 1);
    json_decref(man);
    C->close(H, c);
    mysql_close(m);
}

/* PostgreSQL's type names in a manifest: created as MySQL types, values converted. */
static void test_load_create_from_postgres_types(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS pgtypes_t");
    etl_column cols[] = {{"id", "integer"},
                         {"flag", "boolean"},
                         {"amount", "numeric(12,2)"},
                         {"name", "character varying(20)"},
                         {"raw", "bytea"},
                         {"at", "timestamp with time zone"},
                         {"doc", "jsonb"},
                         {"bits", "bit varying(8)"},
                         {"big", "numeric(20,0)"},
                         {"txt", "text"}};
    const char *rows[] = {
        "1", "true", "12.50", "ünï", "\\x00ff5c0a", "2026-11-22T03:00:00.250+02:00",
        "{\"a\": 1}", "101", "18446744073709551615", "",
        "2", "false", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    };
    json_t *man = stage("pgtypes", cols, 10, rows, 2);
    etl_conn *c = open_conn();
    json_t *r = ok(c, "load", "{\"file\": \"%s\", \"table\": \"pgtypes_t\", \"create\": true, "
                              "\"mode\": \"merge\", \"primary_key\": [\"id\"]}",
                   json_string_value(json_object_get(man, "file")));
    json_decref(r);
    char *ty = value(m, "SELECT GROUP_CONCAT(COLUMN_TYPE ORDER BY ORDINAL_POSITION) FROM "
                        "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND "
                        "TABLE_NAME = 'pgtypes_t'");
    assert_string_equal(ty, "int(11),tinyint(1),decimal(12,2),varchar(20),longblob,datetime(6),"
                            "longtext,bit(8),decimal(20,0),longtext");
    free(ty);
    r = ok(c, "query", "{\"sql\": \"SELECT * FROM pgtypes_t ORDER BY id\"}");
    assert_json(json_object_get(r, "rows"),
                "[{\"id\": 1, \"flag\": 1, \"amount\": \"12.50\", \"name\": \"ünï\", "
                "\"raw\": \"\\\\x00ff5c0a\", \"at\": \"2026-11-22T01:00:00.250000\", "
                "\"doc\": {\"a\": 1}, \"bits\": \"00000101\", \"big\": \"18446744073709551615\", "
                "\"txt\": \"\"},"
                " {\"id\": 2, \"flag\": 0, \"amount\": null, \"name\": null, \"raw\": null, "
                "\"at\": null, \"doc\": null, \"bits\": null, \"big\": null, \"txt\": null}]");
    json_decref(r);
    json_decref(man);
    C->close(H, c);
    mysql_close(m);
}

/* ---------- cancellation ---------- */

typedef struct bg_call {
    call k;
    etl_conn *c;
    const char *name;
    const char *params;
    struct timespec done;
} bg_call;

static void *bg_main(void *arg)
{
    bg_call *b = arg;
    mysql_thread_init();
    json_t *params = json_loads(b->params, 0, NULL);
    etl_json *res = NULL;
    b->k.st = action(b->name)->run(H, &b->k.task, b->c, host_wrap(params), &res, &b->k.err);
    host_task_done(&b->k.task);
    clock_gettime(CLOCK_MONOTONIC, &b->done);
    b->k.result = host_json(res);
    json_decref(params);
    mysql_thread_end();
    return NULL;
}

static double since(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void test_cancel_kills_the_query(void **state)
{
    (void)state;
    MYSQL *m = raw();
    etl_conn *c = open_conn();
    bg_call b = {.c = c, .name = "query", .params = "{\"sql\": \"SELECT SLEEP(30) AS s\"}"};
    atomic_init(&b.k.cancel, 0);
    host_task_init(&b.k.task, "Slow", "", "my", stage_dir, 1, &b.k.cancel);
    pthread_t t;
    pthread_create(&t, NULL, bg_main, &b);
    /* wait until the server runs it */
    for (int i = 0; i < 100; i++) {
        char *v = value(m, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE "
                           "INFO = 'SELECT SLEEP(30) AS s'");
        bool running = strcmp(v, "1") == 0;
        free(v);
        if (running)
            break;
        usleep(20000);
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    host_task_cancel(&b.k.task);
    pthread_join(t, NULL);
    assert_true(since(&start, &b.done) < 2.0);
    assert_int_equal(b.k.st, ETL_ECANCELLED);
    assert_string_equal(b.k.err.name, "States.Cancelled");
    /* the statement is gone from the server */
    char *v = NULL;
    for (int i = 0; i < 50; i++) {
        free(v);
        v = value(m, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE "
                     "INFO = 'SELECT SLEEP(30) AS s'");
        if (strcmp(v, "0") == 0)
            break;
        usleep(20000);
    }
    assert_string_equal(v, "0");
    free(v);
    /* the host discards a cancelled connection: alive() says so */
    assert_false(C->alive(H, c));
    C->close(H, c);
    pthread_mutex_destroy(&b.k.task.mu);

    /* an extract streaming rows: stopped too, and no staged file is left behind */
    c = open_conn();
    bg_call e = {.c = c, .name = "extract",
                 .params = "{\"sql\": \"SELECT seq, SLEEP(0.002) AS z FROM seq_1_to_100000\", "
                           "\"key\": \"slow\"}"};
    atomic_init(&e.k.cancel, 0);
    host_task_init(&e.k.task, "SlowExtract", "slow", "my", stage_dir, 1, &e.k.cancel);
    pthread_create(&t, NULL, bg_main, &e);
    usleep(500000);
    clock_gettime(CLOCK_MONOTONIC, &start);
    host_task_cancel(&e.k.task);
    pthread_join(t, NULL);
    assert_true(since(&start, &e.done) < 2.0);
    assert_int_equal(e.k.st, ETL_ECANCELLED);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -q SlowExtract", stage_dir);
    assert_int_not_equal(system(cmd), 0);
    C->close(H, c);
    pthread_mutex_destroy(&e.k.task.mu);

    /* a task cancelled before it starts touches nothing */
    c = open_conn();
    call k;
    atomic_init(&k.cancel, 1);
    host_task_init(&k.task, "Pre", "", "my", stage_dir, 1, &k.cancel);
    json_t *params = json_pack("{s:s}", "sql", "SELECT SLEEP(5)");
    etl_json *res = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(action("query")->run(H, &k.task, c, host_wrap(params), &res, &k.err),
                     ETL_ECANCELLED);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(since(&t0, &t1) < 1.0);
    host_task_done(&k.task);
    pthread_mutex_destroy(&k.task.mu);
    json_decref(params);
    C->close(H, c);
    mysql_close(m);
}

/* A load cancelled while the server holds its transaction: nothing is kept. */
static void test_cancel_load_rolls_back(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS cl_src");
    sql(m, "CREATE TABLE cl_src (id INT, s VARCHAR(100))");
    sql(m, "INSERT INTO cl_src SELECT seq, REPEAT('v', 100) FROM seq_1_to_300000");
    sql(m, "DROP TABLE IF EXISTS cl_dst");
    sql(m, "CREATE TABLE cl_dst (id INT, s VARCHAR(100))");
    sql(m, "INSERT INTO cl_dst VALUES (0, 'old')");
    etl_conn *c = open_conn();
    json_t *man = ok(c, "extract", "{\"sql\": \"SELECT * FROM cl_src\", \"key\": \"cl\"}");
    /* a trigger that slows every row keeps the load running long enough to cancel it */
    sql(m, "CREATE OR REPLACE TRIGGER cl_slow BEFORE INSERT ON cl_dst FOR EACH ROW "
           "SET @cl_slept = IF(NEW.id %% 20000 = 0, SLEEP(0.2), 0)");
    char params[1024];
    snprintf(params, sizeof params, "{\"file\": \"%s\", \"table\": \"cl_dst\", \"mode\": "
                                    "\"truncate\", \"keep\": true}",
             json_string_value(json_object_get(man, "file")));
    bg_call b = {.c = c, .name = "load", .params = params};
    atomic_init(&b.k.cancel, 0);
    host_task_init(&b.k.task, "Load", "", "my", stage_dir, 1, &b.k.cancel);
    pthread_t t;
    pthread_create(&t, NULL, bg_main, &b);
    usleep(700000);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    host_task_cancel(&b.k.task);
    pthread_join(t, NULL);
    if (b.k.st != ETL_ECANCELLED)
        fail_msg("load: %s: %s", b.k.err.name, b.k.err.cause);
    assert_true(since(&start, &b.done) < 2.0);
    C->close(H, c);
    char *v = value(m, "SELECT GROUP_CONCAT(id, s) FROM cl_dst");
    assert_string_equal(v, "0old");
    free(v);
    sql(m, "DROP TRIGGER cl_slow");
    pthread_mutex_destroy(&b.k.task.mu);
    json_decref(man);
    mysql_close(m);
}

/* ---------- threads ---------- */

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    C->thread_init(H);
    etl_conn *c = open_conn();
    for (int i = 0; i < 40; i++) {
        json_t *r = ok(c, "query", "{\"sql\": \"SELECT ? + ? AS s, REPEAT('z', ?) AS z, "
                                   "CAST(? AS DATETIME(3)) AS t\", "
                                   "\"params\": [%d, %d, %d, \"2026-01-02 03:04:05.5\"]}",
                       id, i, i);
        json_t *row = json_array_get(json_object_get(r, "rows"), 0);
        if (json_integer_value(json_object_get(row, "s")) != id + i ||
            json_string_length(json_object_get(row, "z")) != (size_t)i ||
            strcmp(json_string_value(json_object_get(row, "t")), "2026-01-02T03:04:05.500") != 0)
            fail_msg("thread %d: wrong row", id);
        json_decref(r);
        if (i % 10 == 0) {
            r = ok(c, "exec", "{\"sql\": \"INSERT INTO thr_t VALUES (?, ?)\", "
                              "\"params\": [%d, %d]}", id, i);
            json_decref(r);
        }
    }
    C->close(H, c);
    C->thread_end(H);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS thr_t");
    sql(m, "CREATE TABLE thr_t (t INT, i INT)");
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(count(m, "thr_t"), 8 * 4);
    mysql_close(m);
}

/* Loads of different keys into one table at the same time (the Map of the reference
 * pipeline): each replaces its own key, none deadlocks, none sees another's rows. */
typedef struct key_load {
    const char *file;
    int key;
    etl_status st;
    etl_error err;
} key_load;

static void *key_loader(void *arg)
{
    key_load *kl = arg;
    C->thread_init(H);
    etl_conn *c = open_conn();
    for (int round = 0; round < 4 && kl->st == ETL_OK; round++) {
        call k;
        kl->st = run(&k, c, "load", "{\"file\": \"%s\", \"table\": \"ck_t\", \"mode\": "
                                    "\"replace\", \"key_column\": \"k\", \"key\": %d, "
                                    "\"keep\": true, \"create\": true}", kl->file, kl->key);
        kl->err = k.err;
        json_decref(k.result);
    }
    C->close(H, c);
    C->thread_end(H);
    return NULL;
}

static void test_concurrent_replace_loads(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS ck_src");
    sql(m, "CREATE TABLE ck_src (k INT, id INT, v VARCHAR(30))");
    sql(m, "INSERT INTO ck_src SELECT seq %% 6, seq, CONCAT('row ', seq) FROM seq_1_to_30000");
    sql(m, "DROP TABLE IF EXISTS ck_t"); /* created by the loads (create: true) */
    etl_conn *c = open_conn();
    json_t *man[6];
    key_load kl[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        man[i] = ok(c, "extract", "{\"sql\": \"SELECT * FROM ck_src WHERE k = ?\", "
                                  "\"params\": [%d], \"key\": \"k%d\"}", i, i);
        kl[i] = (key_load){.file = json_string_value(json_object_get(man[i], "file")), .key = i};
    }
    C->close(H, c);
    for (int i = 0; i < 6; i++)
        pthread_create(&th[i], NULL, key_loader, &kl[i]);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 6; i++)
        if (kl[i].st != ETL_OK)
            fail_msg("key %d: %s: %s", i, kl[i].err.name, kl[i].err.cause);
    char *a = value(m, "SELECT CONCAT(COUNT(*), ':', SUM(CRC32(CONCAT_WS('|', k, id, v)))) FROM "
                       "ck_src");
    char *b = value(m, "SELECT CONCAT(COUNT(*), ':', SUM(CRC32(CONCAT_WS('|', k, id, v)))) FROM "
                       "ck_t");
    assert_string_equal(a, b);
    free(a);
    free(b);
    for (int i = 0; i < 6; i++)
        json_decref(man[i]);
    mysql_close(m);
}

/* ---------- the load ledger ---------- */

#define SKIPPED "already loaded in this run (ledger)"

/* A staged file of n rows (k, v) = (key, first..first+n-1). */
static json_t *stage_kv(const char *key, int first, int n)
{
    etl_column cols[] = {{"k", "varchar(10)"}, {"v", "int"}};
    const char **cells = calloc((size_t)n * 2, sizeof *cells);
    char (*nums)[16] = calloc((size_t)n, sizeof *nums);
    for (int i = 0; i < n; i++) {
        snprintf(nums[i], sizeof nums[i], "%d", first + i);
        cells[2 * i] = key;
        cells[2 * i + 1] = nums[i];
    }
    json_t *man = stage("lg", cols, 2, cells, (size_t)n);
    free(cells);
    free(nums);
    return man;
}

static const char *file_of(json_t *man) { return json_string_value(json_object_get(man, "file")); }
static long long jint(json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }

static long long num(MYSQL *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static long long num(MYSQL *m, const char *fmt, ...)
{
    char *text;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        fail();
    va_end(ap);
    char *v = value(m, "%s", text);
    long long n = atoll(v);
    free(v);
    free(text);
    return n;
}

static json_t *load_replace(etl_conn *c, json_t *man, const char *table, const char *key)
{
    return ok(c, "load", "{\"file\": \"%s\", \"table\": \"%s\", \"mode\": \"replace\", "
                         "\"key_column\": \"k\", \"key\": \"%s\"}", file_of(man), table, key);
}

static void test_ledger_records_once_per_run(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS etlrun_load_ledger");
    sql(m, "DROP TABLE IF EXISTS lg_dst");
    sql(m, "CREATE TABLE lg_dst (k VARCHAR(10), v INT)");
    etl_conn *c = open_conn();
    ledger_run = "run-1";
    json_t *m1 = stage_kv("a", 1, 10);
    json_t *r = load_replace(c, m1, "lg_dst", "a");
    assert_null(json_object_get(r, "skipped"));
    assert_int_equal(jint(r, "rows"), 10);
    json_decref(r);
    /* exactly one row, with the load's identity and figures, in the load's time (UTC) */
    assert_int_equal(count(m, "etlrun_load_ledger"), 1);
    char *row = value(m, "SELECT CONCAT_WS('|', pipeline, run_id, state, `key`, target_table, "
                         "mode, `rows`, bytes, crc32c) FROM etlrun_load_ledger");
    char want[512];
    snprintf(want, sizeof want, "ledger_pl|run-1|T|a|lg_dst|replace|10|%lld|%s", jint(m1, "bytes"),
             json_string_value(json_object_get(m1, "crc32c")));
    assert_string_equal(row, want);
    free(row);
    assert_int_equal(num(m, "SELECT COUNT(*) FROM etlrun_load_ledger WHERE loaded_at BETWEEN "
                            "UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE AND UTC_TIMESTAMP(6)"), 1);
    assert_int_not_equal(access(file_of(m1), F_OK), 0);

    /* the same (pipeline, run, state, key) again, other data: skipped, unchanged */
    json_t *m2 = stage_kv("a", 100, 20);
    r = load_replace(c, m2, "lg_dst", "a");
    assert_string_equal(json_string_value(json_object_get(r, "skipped")), SKIPPED);
    assert_int_equal(jint(r, "rows"), 10);
    assert_int_equal(jint(r, "bytes"), jint(m1, "bytes"));
    assert_int_equal(jint(r, "deleted"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "mode")), "replace");
    json_decref(r);
    assert_int_equal(num(m, "SELECT CONCAT(COUNT(*), MAX(v)) FROM lg_dst"), 1010);
    assert_int_equal(count(m, "etlrun_load_ledger"), 1);
    assert_int_not_equal(access(file_of(m2), F_OK), 0); /* removed per keep rules */
    /* the lookup comes before anything touches the target: with the table locked by
     * another session, the skip does not wait for it (lock_wait_timeout would fail it) */
    MYSQL *locker = raw();
    sql(locker, "LOCK TABLES lg_dst WRITE");
    json_t *ls = settings_json();
    json_object_set_new(ls, "init_sql", json_string("SET SESSION lock_wait_timeout = 2"));
    etl_conn *lc = NULL;
    etl_error lerr = {0};
    assert_int_equal(C->open(H, NULL, host_wrap(ls), &lc, &lerr), ETL_OK);
    json_decref(ls);
    json_t *m2b = stage_kv("a", 100, 20);
    r = load_replace(lc, m2b, "lg_dst", "a");
    assert_string_equal(json_string_value(json_object_get(r, "skipped")), SKIPPED);
    json_decref(r);
    json_decref(m2b);
    C->close(H, lc);
    mysql_close(locker);
    /* keys differing only in case or a trailing space are other keys */
    json_t *m3 = stage_kv("A", 1, 2), *m4 = stage_kv("a ", 1, 3);
    r = load_replace(c, m3, "lg_dst", "A");
    assert_null(json_object_get(r, "skipped"));
    json_decref(r);
    r = load_replace(c, m4, "lg_dst", "a ");
    assert_null(json_object_get(r, "skipped"));
    json_decref(r);
    assert_int_equal(count(m, "etlrun_load_ledger"), 3);

    /* another run loads the key again (replace) and adds its own row */
    ledger_run = "run-2";
    json_t *m5 = stage_kv("a", 100, 20);
    r = load_replace(c, m5, "lg_dst", "a");
    assert_null(json_object_get(r, "skipped"));
    assert_int_equal(jint(r, "rows"), 20);
    json_decref(r);
    assert_int_equal(num(m, "SELECT COUNT(*) FROM lg_dst WHERE BINARY k = 'a'"), 20);
    assert_int_equal(num(m, "SELECT MIN(v) FROM lg_dst WHERE BINARY k = 'a'"), 100);
    assert_int_equal(num(m, "SELECT COUNT(*) FROM etlrun_load_ledger WHERE run_id = 'run-2' "
                            "AND `rows` = 20"), 1);
    assert_int_equal(count(m, "etlrun_load_ledger"), 4);

    /* outside a run nothing is recorded or skipped */
    ledger_run = NULL;
    json_t *m6 = stage_kv("a", 1, 1);
    r = load_replace(c, m6, "lg_dst", "a");
    assert_null(json_object_get(r, "skipped"));
    json_decref(r);
    assert_int_equal(count(m, "etlrun_load_ledger"), 4);
    json_t *all[] = {m1, m2, m3, m4, m5, m6};
    for (size_t i = 0; i < 6; i++)
        json_decref(all[i]);
    C->close(H, c);
    mysql_close(m);
}

static void test_ledger_off_and_custom_table(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS etlrun_load_ledger");
    sql(m, "DROP DATABASE IF EXISTS etl_lg");
    sql(m, "CREATE DATABASE etl_lg");
    sql(m, "DROP TABLE IF EXISTS lg_off");
    sql(m, "CREATE TABLE lg_off (k VARCHAR(10), v INT)");
    ledger_run = "run-1";
    /* ledger: false: the same identity loads twice, and no ledger table appears */
    json_t *s = settings_json();
    json_object_set_new(s, "ledger", json_false());
    etl_conn *c = NULL;
    etl_error err = {0};
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_OK);
    json_decref(s);
    for (int i = 0; i < 2; i++) {
        json_t *man = stage_kv("k", 1, 3);
        json_t *r = ok(c, "load", "{\"file\": \"%s\", \"table\": \"lg_off\"}", file_of(man));
        assert_null(json_object_get(r, "skipped"));
        json_decref(r);
        json_decref(man);
    }
    C->close(H, c);
    assert_int_equal(count(m, "lg_off"), 6);
    assert_int_equal(num(m, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                            "DATABASE() AND TABLE_NAME = 'etlrun_load_ledger'"), 0);
    /* ledger_table: in another database, quoted as written */
    s = settings_json();
    json_object_set_new(s, "ledger_table", json_string("etl_lg.Load-Ledger"));
    assert_int_equal(C->open(H, NULL, host_wrap(s), &c, &err), ETL_OK);
    json_decref(s);
    for (int i = 0; i < 2; i++) {
        json_t *man = stage_kv("k", 1, 3);
        json_t *r = ok(c, "load", "{\"file\": \"%s\", \"table\": \"lg_off\"}", file_of(man));
        assert_int_equal(json_object_get(r, "skipped") != NULL, i == 1);
        json_decref(r);
        json_decref(man);
    }
    C->close(H, c);
    assert_int_equal(count(m, "lg_off"), 9);
    assert_int_equal(num(m, "SELECT COUNT(*) FROM etl_lg.`Load-Ledger` WHERE `key` = '' AND "
                            "`rows` = 3"), 1);
    assert_int_equal(num(m, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                            "DATABASE() AND TABLE_NAME = 'etlrun_load_ledger'"), 0);
    /* the table is InnoDB whatever the server's default: the row commits with the load */
    char *engine = value(m, "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                            "'etl_lg' AND TABLE_NAME = 'Load-Ledger'");
    assert_string_equal(engine, "InnoDB");
    free(engine);
    ledger_run = NULL;
    sql(m, "DROP DATABASE etl_lg");
    /* both settings are checked at validate time */
    char msg[4096];
    assert_int_equal(check_settings_text("{\"url\": \"mysql://etl@db/shop\", \"ledger\": false, "
                                         "\"ledger_table\": \"a.b\"}", msg, sizeof msg), 0);
    assert_int_equal(check_settings_text("{\"url\": \"mysql://etl@db/shop\", \"ledger\": \"no\", "
                                         "\"ledger_table\": \"a.b.c\"}", msg, sizeof msg), 2);
    assert_non_null(strstr(msg, "'ledger': must be true or false"));
    assert_non_null(strstr(msg, "'a.b.c' must be table or database.table"));
    mysql_close(m);
}

/* A load that fails writes no ledger row: the row is part of the rolled-back
 * transaction, so a retry of the key in the same run loads it. */
static void test_ledger_failed_load_writes_nothing(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS etlrun_load_ledger");
    sql(m, "DROP TABLE IF EXISTS lgf_t");
    sql(m, "CREATE TABLE lgf_t (k VARCHAR(10), v INT NOT NULL)");
    sql(m, "INSERT INTO lgf_t VALUES ('a', 1), ('a', 2)");
    etl_conn *c = open_conn();
    ledger_run = "run-f";
    /* a row-count mismatch: the manifest claims a row more (size and CRC still match) */
    json_t *man = stage_kv("a", 1, 5);
    char mp[600];
    snprintf(mp, sizeof mp, "%s.manifest.json", file_of(man));
    json_t *mj = json_load_file(mp, 0, NULL);
    assert_non_null(mj);
    json_object_set_new(mj, "rows", json_integer(6));
    assert_int_equal(json_dump_file(mj, mp, 0), 0);
    json_decref(mj);
    call k;
    assert_int_equal(run(&k, c, "load", "{\"file\": \"%s\", \"table\": \"lgf_t\", \"mode\": "
                                        "\"replace\", \"key_column\": \"k\", \"key\": \"a\"}",
                         file_of(man)), ETL_EINVAL);
    assert_string_equal(k.err.name, "Etl.IntegrityError");
    assert_int_equal(count(m, "etlrun_load_ledger"), 0);
    assert_int_equal(count(m, "lgf_t"), 2);
    json_decref(man);
    /* a bad value */
    etl_column cols[] = {{"k", "varchar(10)"}, {"v", "int"}};
    const char *rows[] = {"a", "10", "a", "not a number"};
    man = stage("lgbad", cols, 2, rows, 2);
    assert_int_equal(run(&k, c, "load", "{\"file\": \"%s\", \"table\": \"lgf_t\", \"mode\": "
                                        "\"replace\", \"key_column\": \"k\", \"key\": \"a\"}",
                         file_of(man)), ETL_EQUERY);
    assert_string_equal(k.err.name, "Etl.LoadFailed");
    assert_int_equal(count(m, "etlrun_load_ledger"), 0);
    assert_int_equal(count(m, "lgf_t"), 2);
    json_decref(man);
    /* the retry, fixed, loads and is recorded */
    man = stage_kv("a", 1, 7);
    json_t *r = load_replace(c, man, "lgf_t", "a");
    assert_null(json_object_get(r, "skipped"));
    json_decref(r);
    assert_int_equal(count(m, "lgf_t"), 7);
    assert_int_equal(num(m, "SELECT COUNT(*) FROM etlrun_load_ledger WHERE `rows` = 7"), 1);
    json_decref(man);
    ledger_run = NULL;
    C->close(H, c);
    mysql_close(m);
}

typedef struct ledger_load {
    const char *file;
    etl_status st;
    etl_error err;
    json_t *result;
} ledger_load;

static void *ledger_loader(void *arg)
{
    ledger_load *ld = arg;
    C->thread_init(H);
    etl_conn *c = open_conn();
    call k;
    ld->st = run(&k, c, "load", "{\"file\": \"%s\", \"table\": \"lgc_t\"}", ld->file);
    ld->err = k.err;
    ld->result = k.result;
    C->close(H, c);
    C->thread_end(H);
    return NULL;
}

/* Two loads of one identity at once, both past their lookup (the target is locked
 * meanwhile): the UNIQUE key lets one commit; the other rolls back, skipped. */
static void test_ledger_concurrent_loads_of_one_key(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS etlrun_load_ledger");
    sql(m, "DROP TABLE IF EXISTS lgc_t");
    sql(m, "CREATE TABLE lgc_t (k VARCHAR(10), v INT)");
    ledger_run = "run-c";
    json_t *man[2];
    ledger_load ld[2];
    for (int i = 0; i < 2; i++) {
        man[i] = stage_kv("c", 1, 1000);
        ld[i] = (ledger_load){.file = file_of(man[i])};
    }
    MYSQL *locker = raw();
    sql(locker, "LOCK TABLES lgc_t WRITE");
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, ledger_loader, &ld[i]);
    /* both LOAD DATAs wait for the lock: both have looked the key up and found nothing */
    long long waiting = 0;
    for (int i = 0; i < 200 && waiting < 2; i++) {
        usleep(50 * 1000);
        waiting = num(m, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                         "'LOAD DATA%%lgc_t%%' AND STATE LIKE '%%lock%%'");
    }
    sql(locker, "UNLOCK TABLES");
    mysql_close(locker);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    ledger_run = NULL;
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
        json_decref(man[i]);
    }
    assert_int_equal(skipped, 1);
    assert_int_equal(count(m, "lgc_t"), 1000);
    assert_int_equal(count(m, "etlrun_load_ledger"), 1);
    mysql_close(m);
}

/* `etlrun ledger` over a mysql connection: the identity columns shown as text. */
static void test_ledger_command(void **state)
{
    (void)state;
    MYSQL *m = raw();
    sql(m, "DROP TABLE IF EXISTS etlrun_load_ledger");
    sql(m, "DROP TABLE IF EXISTS lgcmd_t");
    sql(m, "CREATE TABLE lgcmd_t (k VARCHAR(10), v INT)");
    etl_conn *c = open_conn();
    ledger_run = "run-1";
    static const char *const keys[] = {"a", "b\xc3\xa9"};
    for (int i = 0; i < 2; i++) {
        json_t *man = stage_kv(keys[i], 1, 3 + i);
        json_decref(ok(c, "load", "{\"file\": \"%s\", \"table\": \"lgcmd_t\", \"key\": \"%s\"}",
                       file_of(man), keys[i]));
        json_decref(man);
    }
    ledger_run = NULL;
    C->close(H, c);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "name: ledger_pl\n"
             "connections:\n"
             "  wh: {type: mysql, url: '%s', password_env: ETL_MY_PASSWORD}\n"
             "StartAt: P\n"
             "States:\n"
             "  P: {Type: Pass, End: true}\n", dbenv("ETL_MY_URL"));
    diag *d = diag_new("ledger.yaml");
    doc *dc = doc_load_string(yaml, strlen(yaml), "ledger.yaml", false, d);
    pipeline *pl = dc ? pipeline_compile(dc, d) : NULL;
    if (!pl) {
        diag_print(d, stderr);
        fail_msg("the test pipeline does not compile");
    }
    doc_free(dc);
    diag_free(d);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(ledger_cmd(pl, NULL, 0, f), 0);
    fclose(f);
    /* newest first; the key as text (not \x hex), its columns aligned by characters */
    char *line = strchr(text, '\n');
    assert_non_null(line);
    assert_non_null(strstr(line, "run-1   T      b\xc3\xa9   lgcmd_t  append     4"));
    assert_non_null(strstr(strchr(line + 1, '\n'), "run-1   T      a    lgcmd_t  append     3"));
    assert_true(strstr(text, "b\xc3\xa9") < strstr(text, "  a  "));
    free(text);
    f = open_memstream(&text, &len);
    assert_int_equal(ledger_cmd(pl, "a", 5, f), 0);
    fclose(f);
    assert_null(strstr(text, "b\xc3\xa9"));
    assert_non_null(strstr(text, "  a  "));
    free(text);
    pipeline_free(pl);
    mysql_close(m);
}

/* ---------- action checks ---------- */

static size_t check_params_text(const char *action_name, const char *json, char *out, size_t n)
{
    diag *d = diag_new("p.json");
    doc *dc = doc_load_string(json, strlen(json), "p.json", true, d);
    assert_non_null(dc);
    etl_checker chk = {d, dc->root, "Parameters of state 'S'", 0};
    action(action_name)->check(H, host_wrap(dc->root->json), &chk);
    size_t k = diag_count(d);
    out[0] = '\0';
    for (size_t i = 0; i < k; i++) {
        strncat(out, diag_message(d, i), n - strlen(out) - 2);
        strncat(out, "\n", n - strlen(out) - 1);
    }
    doc_free(dc);
    diag_free(d);
    return k;
}

static void test_action_checks(void **state)
{
    (void)state;
    char msg[4096];
    assert_int_equal(check_params_text("query", "{\"connection\": \"src\", \"sql\": \"SELECT 1\", "
                                                "\"params.$\": \"$.p\", \"max_rows\": 5}",
                                       msg, sizeof msg), 0);
    assert_int_equal(check_params_text("query", "{\"connection\": \"src\"}", msg, sizeof msg), 1);
    assert_int_equal(check_params_text("query", "{\"sql\": [\"SELECT 1\"]}", msg, sizeof msg), 1);
    assert_int_equal(check_params_text("exec", "{\"sql\": [\"SELECT 1\", \"SELECT 2\"], "
                                               "\"params\": [[1], null, [3]]}",
                                       msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "one list"));
    assert_int_equal(check_params_text("load", "{\"file.$\": \"$.f\", \"table\": \"t\", "
                                               "\"mode\": \"replace\", \"key_column\": \"k\", "
                                               "\"key.$\": \"$.key\", \"create\": true}",
                                       msg, sizeof msg), 0);
    assert_int_equal(check_params_text("load", "{\"file.$\": \"$.f\", \"table\": \"t\", "
                                               "\"mode\": \"replace\"}", msg, sizeof msg), 2);
    assert_int_equal(check_params_text("load", "{\"file\": \"f.csv\", \"table\": \"t\", "
                                               "\"mode\": \"merge\", \"keep\": \"yes\"}",
                                       msg, sizeof msg), 2);
    assert_int_equal(check_params_text("load", "{\"table\": \"t\", \"mode\": \"upsert\"}", msg,
                                       sizeof msg), 2);
    /* options of another mode, and a table name with two dots */
    assert_int_equal(check_params_text("load", "{\"file\": \"f.csv\", \"table\": \"a.b.c\", "
                                               "\"key_column\": \"k\", \"primary_key\": [\"k\"]}",
                                       msg, sizeof msg), 3);
    assert_non_null(strstr(msg, "applies to mode replace only"));
    /* a mode known only at run time: its relations are checked then */
    assert_int_equal(check_params_text("load", "{\"file\": \"f.csv\", \"table\": \"s.t\", "
                                               "\"mode.$\": \"$.mode\"}", msg, sizeof msg), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_wrong_port_is_transient),
        cmocka_unit_test(test_connect_wrong_password_not_transient),
        cmocka_unit_test(test_settings_checks),
        cmocka_unit_test(test_query_value_mapping),
        cmocka_unit_test(test_extract_value_text),
        cmocka_unit_test(test_shortest_reals),
        cmocka_unit_test(test_params_are_bound),
        cmocka_unit_test(test_query_caps),
        cmocka_unit_test(test_exec_and_transactions),
        cmocka_unit_test(test_extract_load_round_trip),
        cmocka_unit_test(test_load_modes),
        cmocka_unit_test(test_load_bad_values_roll_back),
        cmocka_unit_test(test_load_integrity),
        cmocka_unit_test(test_load_create_from_postgres_types),
        cmocka_unit_test(test_cancel_kills_the_query),
        cmocka_unit_test(test_cancel_load_rolls_back),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_concurrent_replace_loads),
        cmocka_unit_test(test_action_checks),
        cmocka_unit_test(test_ledger_records_once_per_run),
        cmocka_unit_test(test_ledger_off_and_custom_table),
        cmocka_unit_test(test_ledger_failed_load_writes_nothing),
        cmocka_unit_test(test_ledger_concurrent_loads_of_one_key),
        cmocka_unit_test(test_ledger_command),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
