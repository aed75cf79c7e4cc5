/* Tests for the `http` connector (connectors/http): requests and their results,
 * errors and their transient flags, Retry-After, timeouts, cancellation, the four
 * pagination kinds, 10,000 records streamed in bounded memory, and validate-time checks.
 * Every request goes to tests/http/http_test_server on 127.0.0.1, started here. Actions
 * are called the way the engine calls them: through the connector table, with the
 * host's services table and a task. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_server.h"
#include "diag.h"
#include "doc.h"
#include "host.h"
#include "plugins.h"
#include "tmp_dir.h"

/* ------------------------------------------------------------ the server */

static pid_t server_pid;
static int port;
static const etl_connector *http;

static int group_setup(void **state)
{
    (void)state;
    server_pid = http_server_start("test_http", &port);
    if (server_pid < 0)
        return -1;
    http = etl_builtin_http();
    etl_error err;
    etl_error_clear(&err);
    if (http->global_init(host_services(), &err) != ETL_OK) {
        fprintf(stderr, "test_http: global_init: %s\n", err.cause);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (http)
        http->global_cleanup(host_services());
    http_server_stop(server_pid);
    return 0;
}

/* http://127.0.0.1:PORT + path, in one of a few rotating buffers. */
static const char *U(const char *path)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "http://127.0.0.1:%d%s", port, path);
    return p;
}

/* ------------------------------------------------------------ fixture */

typedef struct fx {
    char dir[256];       /* the task's staging directory */
    atomic_int cancel;
    etl_task task;
    etl_error err;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_true(tmp_dir_make(f->dir, sizeof f->dir, "test_http"));
    host_task_init(&f->task, "Fetch", "", "", f->dir, 1, &f->cancel);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    tmp_dir_remove(f->dir);
    pthread_mutex_destroy(&f->task.mu);
    free(f);
    return 0;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ms(void) { return mono_ns() / 1000000; }

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const etl_action *action(const char *name)
{
    for (const etl_action *a = http->actions; a->name; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    fail_msg("no action %s", name);
    return NULL;
}

/* Run an action with params (stolen); *out gets the result (NULL on failure). */
static etl_status run(fx *f, const char *name, etl_conn *conn, json_t *params, json_t **out)
{
    assert_non_null(params);
    etl_error_clear(&f->err);
    etl_json *res = NULL;
    etl_status st = action(name)->run(host_services(), &f->task, conn, host_wrap(params), &res,
                                      &f->err);
    host_task_done(&f->task);
    json_decref(params);
    if (st == ETL_OK)
        assert_int_equal(f->err.status, ETL_OK);
    else
        assert_null(res);
    *out = host_json(res);
    return st;
}

static json_t *run_ok(fx *f, const char *name, etl_conn *conn, json_t *params)
{
    json_t *out = NULL;
    etl_status st = run(f, name, conn, params, &out);
    if (st != ETL_OK)
        fail_msg("%s failed: %s: %s", name, f->err.name, f->err.cause);
    return out;
}

static void run_fails(fx *f, const char *name, etl_conn *conn, json_t *params,
                      etl_status want, const char *want_name)
{
    json_t *out = NULL;
    etl_status st = run(f, name, conn, params, &out);
    if (st != want || strcmp(f->err.name, want_name) != 0)
        fail_msg("want %d %s, got %d %s: %s", want, want_name, st, f->err.name, f->err.cause);
}

static etl_conn *open_conn(fx *f, json_t *settings)
{
    etl_conn *c = NULL;
    etl_error_clear(&f->err);
    etl_status st = http->open(host_services(), &f->task, host_wrap(settings), &c, &f->err);
    json_decref(settings);
    if (st != ETL_OK)
        fail_msg("open: %s", f->err.cause);
    return c;
}

static const char *sget(const json_t *obj, const char *path)
{
    /* "a.b.c" through objects */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *v = obj;
    for (char *save, *p = strtok_r(buf, ".", &save); p && v; p = strtok_r(NULL, ".", &save))
        v = json_object_get(v, p);
    return json_string_value(v);
}

#define assert_str(a, b) assert_string_equal((a) ? (a) : "(null)", b)

/* ------------------------------------------------------------ http.request */

static void test_get_query_headers(void **state)
{
    fx *f = *state;
    json_t *res = run_ok(f, "request", NULL,
        json_pack("{s:s, s:{s:s, s:i, s:f, s:b, s:[s,s], s:n}, s:{s:s, s:i}}",
                  "url", U("/echo?fixed=1"),
                  "query", "q", "a b&c/\xc3\xa9", "n", 42, "r", 1.5, "flag", 1, "list", "x", "y",
                  "skip",
                  "headers", "X-Token", "abc", "X-Num", 7));
    assert_int_equal(json_integer_value(json_object_get(res, "status")), 200);
    json_t *hdrs = json_object_get(res, "headers");
    assert_str(sget(hdrs, "content-type"), "application/json");
    assert_str(sget(hdrs, "x-multi"), "one, two"); /* repeated headers joined */
    assert_null(json_object_get(hdrs, "X-Multi")); /* names are lower-case */
    json_t *echo = json_object_get(res, "body");
    assert_true(json_is_object(echo));
    assert_str(sget(echo, "method"), "GET");
    assert_str(sget(echo, "path"), "/echo");
    json_t *q = json_object_get(echo, "query");
    assert_str(sget(q, "fixed"), "1");
    assert_str(sget(q, "q"), "a b&c/\xc3\xa9");
    assert_str(sget(q, "n"), "42");
    assert_str(sget(q, "r"), "1.5");
    assert_str(sget(q, "flag"), "true");
    json_t *list = json_object_get(q, "list");
    assert_int_equal(json_array_size(list), 2);
    assert_str(json_string_value(json_array_get(list, 1)), "y");
    assert_null(json_object_get(q, "skip")); /* null: left out */
    assert_non_null(strstr(sget(echo, "raw_query"), "q=a%20b%26c%2F%C3%A9"));
    json_t *sent = json_object_get(echo, "headers");
    assert_str(sget(sent, "x-token"), "abc");
    assert_str(sget(sent, "x-num"), "7");
    assert_int_equal(strncmp(sget(sent, "user-agent"), "etlrun/", 7), 0);
    assert_null(json_object_get(sent, "expect"));
    assert_true(atomic_load(&f->task.bytes) > 0);
    json_decref(res);
}

static void test_post_json_body(void **state)
{
    fx *f = *state;
    json_t *body = json_pack("{s:[i,f,n], s:I, s:s}", "a", 1, 2.5, "big",
                             (json_int_t)9007199254740993LL, "s", "\xc3\xa9");
    json_t *res = run_ok(f, "request", NULL,
                         json_pack("{s:s, s:s, s:O}", "method", "POST", "url", U("/echo"),
                                   "body", body));
    json_t *echo = json_object_get(res, "body");
    assert_str(sget(echo, "method"), "POST");
    assert_str(sget(echo, "headers.content-type"), "application/json");
    assert_true(json_equal(json_object_get(echo, "body"), body)); /* 2^53+1 stays exact */
    json_decref(res);
    json_decref(body);

    res = run_ok(f, "request", NULL,
                 json_pack("{s:s, s:s, s:[i,i]}", "method", "PUT", "url", U("/echo"), "body", 1, 2));
    assert_str(sget(json_object_get(res, "body"), "method"), "PUT");
    assert_int_equal(json_array_size(json_object_get(json_object_get(res, "body"), "body")), 2);
    json_decref(res);

    res = run_ok(f, "request", NULL,
                 json_pack("{s:s, s:s, s:n}", "method", "DELETE", "url", U("/echo"), "body"));
    assert_str(sget(json_object_get(res, "body"), "method"), "DELETE");
    assert_str(sget(json_object_get(res, "body"), "body"), ""); /* null body: none sent */
    json_decref(res);
}

static void test_connection_settings(void **state)
{
    fx *f = *state;
    etl_conn *c = open_conn(f, json_pack("{s:s, s:{s:s, s:s, s:s}, s:s, s:i, s:b}",
                                         "base_url", U("/"), "headers", "Authorization",
                                         "Bearer T0P", "X-Conn", "c", "X-Over", "conn",
                                         "user_agent", "ua-test/1", "timeout_seconds", 5,
                                         "verify_tls", 1));
    for (int i = 0; i < 3; i++) { /* the same handles, reused */
        json_t *res = run_ok(f, "request", c,
                             json_pack("{s:s, s:{s:i}, s:{s:s}}", "url", "echo?k=v", "query", "z",
                                       i, "headers", "x-over", "call"));
        json_t *echo = json_object_get(res, "body");
        assert_str(sget(echo, "path"), "/echo");
        char want[32];
        snprintf(want, sizeof want, "k=v&z=%d", i);
        assert_str(sget(echo, "raw_query"), want);
        assert_str(sget(echo, "headers.authorization"), "Bearer T0P");
        assert_str(sget(echo, "headers.x-conn"), "c");
        assert_str(sget(echo, "headers.x-over"), "call"); /* the call's header wins */
        assert_str(sget(echo, "headers.user-agent"), "ua-test/1");
        json_decref(res);
    }
    http->close(host_services(), c);

    /* base_url with a path keeps it: /pages + page -> /pages/page */
    c = open_conn(f, json_pack("{s:s}", "base_url", U("/pages/")));
    json_t *res = run_ok(f, "request", c, json_pack("{s:s, s:{s:i}}", "url", "/page", "query",
                                                    "n", 3));
    assert_int_equal(json_array_size(json_object_get(json_object_get(res, "body"), "data")), 3);
    json_decref(res);
    http->close(host_services(), c);
}

static void test_non_json_bodies(void **state)
{
    fx *f = *state;
    json_t *res = run_ok(f, "request", NULL, json_pack("{s:s}", "url", U("/text")));
    assert_str(sget(res, "body"), "h\xc3\xa9llo, w\xc3\xb6rld\n");
    assert_null(json_object_get(res, "body_base64"));
    json_decref(res);

    res = run_ok(f, "request", NULL, json_pack("{s:s}", "url", U("/binary")));
    assert_true(json_is_true(json_object_get(res, "body_base64")));
    const char *b64 = sget(res, "body");
    assert_int_equal(strlen(b64), 344); /* 256 bytes */
    assert_int_equal(strncmp(b64, "AAECAwQF", 8), 0);
    assert_string_equal(b64 + 344 - 12, "+fr7/P3+/w==");
    json_decref(res);

    /* +json is JSON too; integers stay exact */
    res = run_ok(f, "request", NULL, json_pack("{s:s}", "url", U("/problem")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "body"), "n")),
                     12345678901234567LL);
    json_decref(res);

    /* HEAD: a JSON content type with no body is null */
    res = run_ok(f, "request", NULL, json_pack("{s:s, s:s}", "method", "HEAD", "url", U("/echo")));
    assert_int_equal(json_integer_value(json_object_get(res, "status")), 200);
    assert_true(json_is_null(json_object_get(res, "body")));
    json_decref(res);

    run_fails(f, "request", NULL, json_pack("{s:s}", "url", U("/badjson")), ETL_ETASK,
              "Etl.HttpInvalidResponse");
    assert_false(f->err.transient);
}

static void test_404_not_transient(void **state)
{
    fx *f = *state;
    run_fails(f, "request", NULL,
              json_pack("{s:s, s:{s:s}}", "url", U("/status/404?token=SECRET123"), "headers",
                        "X-Key", "hdrsecret"),
              ETL_ETASK, "Etl.HttpStatus");
    assert_false(f->err.transient);
    char want[128];
    snprintf(want, sizeof want, "GET http://127.0.0.1:%d/status/404?...: HTTP 404", port);
    assert_non_null(strstr(f->err.cause, want));
    assert_non_null(strstr(f->err.cause, "status 404: the test server was asked for it line 2"));
    assert_null(strstr(f->err.cause, "SECRET123"));
    assert_null(strstr(f->err.cause, "hdrsecret"));
    assert_null(strchr(f->err.cause, '\n'));

    /* credentials in the URL never show either */
    char url[128];
    snprintf(url, sizeof url, "http://user:pw0rd@127.0.0.1:%d/status/403", port);
    run_fails(f, "request", NULL, json_pack("{s:s}", "url", url), ETL_ETASK, "Etl.HttpStatus");
    assert_null(strstr(f->err.cause, "pw0rd"));
}

static void test_5xx_transient_flags(void **state)
{
    fx *f = *state;
    /* 500 is transient by design, but not retried inside the task, even with a
     * Retry-After: one request, then the state's Retry decides */
    run_fails(f, "request", NULL,
              json_pack("{s:s}", "url", U("/retry?key=k500&status=500&times=1&after=0")),
              ETL_ETASK, "Etl.HttpStatus");
    assert_true(f->err.transient);
    assert_non_null(strstr(f->err.cause, "HTTP 500"));
    json_t *res = run_ok(f, "request", NULL,
                         json_pack("{s:s}", "url", U("/retry?key=k500&status=500&times=1")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "body"), "attempts")),
                     2);
    json_decref(res);

    static const struct { const char *path; bool transient; } cases[] = {
        {"/status/502", true}, {"/status/504", true}, {"/status/408", true},
        {"/status/501", false}, {"/status/400", false}, {"/status/403", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_fails(f, "request", NULL, json_pack("{s:s}", "url", U(cases[i].path)), ETL_ETASK,
                  "Etl.HttpStatus");
        if (f->err.transient != cases[i].transient)
            fail_msg("%s: transient %d", cases[i].path, f->err.transient);
    }
}

static void test_429_retry_after_then_success(void **state)
{
    fx *f = *state;
    int64_t t0 = now_ms();
    json_t *res = run_ok(f, "request", NULL,
                         json_pack("{s:s}", "url", U("/retry?key=k429&times=1&after=1")));
    int64_t took = now_ms() - t0;
    assert_int_equal(json_integer_value(json_object_get(res, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "body"), "attempts")),
                     2);
    if (took < 1000 || took > 5000)
        fail_msg("took %lld ms; Retry-After: 1 asks for 1 s", (long long)took);
    json_decref(res);
}

static void test_503_retry_after_http_date(void **state)
{
    fx *f = *state;
    int64_t t0 = now_ms();
    json_t *res = run_ok(f, "request", NULL,
                         json_pack("{s:s}", "url",
                                   U("/retry?key=k503&status=503&times=1&after=date")));
    int64_t took = now_ms() - t0;
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "body"), "attempts")),
                     2);
    /* the date is 2 s ahead in whole seconds: the wait is 1 to 2 s */
    if (took < 900 || took > 5000)
        fail_msg("took %lld ms", (long long)took);
    json_decref(res);
}

static void test_retry_after_limits(void **state)
{
    fx *f = *state;
    /* three retries at most: 4 requests, all 429, then a transient failure */
    run_fails(f, "request", NULL, json_pack("{s:s}", "url", U("/retry?key=k4&times=4&after=0")),
              ETL_ETASK, "Etl.HttpStatus");
    assert_true(f->err.transient);
    assert_non_null(strstr(f->err.cause, "after 3 retries"));
    json_t *res = run_ok(f, "request", NULL,
                         json_pack("{s:s}", "url", U("/retry?key=k4&times=4&after=0")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "body"), "attempts")),
                     5);
    json_decref(res);

    /* no Retry-After: fail at once; a wait past retry_after_max_seconds: fail at once;
     * a wait past the task's time left: fail at once */
    int64_t t0 = now_ms();
    run_fails(f, "request", NULL, json_pack("{s:s}", "url", U("/retry?key=kn&times=9")),
              ETL_ETASK, "Etl.HttpStatus");
    assert_true(f->err.transient);
    run_fails(f, "request", NULL,
              json_pack("{s:s, s:i}", "url", U("/retry?key=km&times=9&after=5"),
                        "retry_after_max_seconds", 2),
              ETL_ETASK, "Etl.HttpStatus");
    f->task.deadline_ns = mono_ns() + 3000000000LL;
    run_fails(f, "request", NULL, json_pack("{s:s}", "url", U("/retry?key=kt&times=9&after=5")),
              ETL_ETASK, "Etl.HttpStatus");
    f->task.deadline_ns = 0;
    assert_true(now_ms() - t0 < 1500);
}

static void test_timeout(void **state)
{
    fx *f = *state;
    int64_t t0 = now_ms();
    run_fails(f, "request", NULL,
              json_pack("{s:s, s:f}", "url", U("/slow?ms=5000"), "timeout_seconds", 0.5),
              ETL_ETIMEOUT, "States.Timeout");
    int64_t took = now_ms() - t0;
    if (took < 450 || took > 2000)
        fail_msg("timeout after %lld ms", (long long)took);

    /* the task's TimeoutSeconds caps the request's own timeout */
    f->task.deadline_ns = mono_ns() + 400000000LL;
    t0 = now_ms();
    run_fails(f, "request", NULL, json_pack("{s:s}", "url", U("/sleep?ms=3000")), ETL_ETIMEOUT,
              "States.Timeout");
    took = now_ms() - t0;
    f->task.deadline_ns = 0;
    if (took > 1500)
        fail_msg("timeout after %lld ms", (long long)took);
}

typedef struct canceller {
    etl_task *task;
    int after_ms;
} canceller;

static void *cancel_later(void *arg)
{
    canceller *c = arg;
    sleep_ms(c->after_ms);
    host_task_cancel(c->task);
    return NULL;
}

static void test_cancel_mid_transfer(void **state)
{
    fx *f = *state;
    canceller c = {&f->task, 200};
    pthread_t t;
    int64_t t0 = now_ms();
    assert_int_equal(pthread_create(&t, NULL, cancel_later, &c), 0);
    run_fails(f, "request", NULL, json_pack("{s:s}", "url", U("/slow?ms=10000")), ETL_ECANCELLED,
              "States.Cancelled");
    int64_t took = now_ms() - t0;
    pthread_join(t, NULL);
    if (took > 1200)
        fail_msg("cancelled after %lld ms; the cancel came at 200 ms", (long long)took);
}

static void test_cancel_during_retry_wait(void **state)
{
    fx *f = *state;
    canceller c = {&f->task, 200};
    pthread_t t;
    int64_t t0 = now_ms();
    assert_int_equal(pthread_create(&t, NULL, cancel_later, &c), 0);
    run_fails(f, "request", NULL, json_pack("{s:s}", "url", U("/retry?key=kc&times=1&after=30")),
              ETL_ECANCELLED, "States.Cancelled");
    int64_t took = now_ms() - t0;
    pthread_join(t, NULL);
    if (took > 1200)
        fail_msg("cancelled after %lld ms", (long long)took);
}

static void test_connection_refused(void **state)
{
    fx *f = *state;
    /* a bound socket that never listens: connecting to it is refused */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", ntohs(sa.sin_port));
    run_fails(f, "request", NULL, json_pack("{s:s}", "url", url), ETL_ECONNECT,
              "Etl.ConnectionFailed");
    assert_true(f->err.transient);
    close(s);
}

static void test_body_cap_and_redirect(void **state)
{
    fx *f = *state;
    run_fails(f, "request", NULL,
              json_pack("{s:s, s:i}", "url", U("/big?bytes=5000"), "max_body_bytes", 1000),
              ETL_ETASK, "Etl.HttpBodyTooLarge");
    assert_false(f->err.transient);
    json_t *res = run_ok(f, "request", NULL,
                         json_pack("{s:s, s:i}", "url", U("/big?bytes=1000"), "max_body_bytes",
                                   1000));
    assert_int_equal(strlen(sget(res, "body")), 1000);
    json_decref(res);

    res = run_ok(f, "request", NULL, json_pack("{s:s}", "url", U("/redirect?to=/echo")));
    assert_int_equal(json_integer_value(json_object_get(res, "status")), 200);
    assert_str(sget(json_object_get(res, "body"), "path"), "/echo");
    json_decref(res);
}

static void test_runtime_parameter_errors(void **state)
{
    fx *f = *state;
    run_fails(f, "request", NULL, json_pack("{s:s}", "url", "relative/path"), ETL_EINVAL,
              "Etl.InvalidParameters");
    assert_non_null(strstr(f->err.cause, "base_url"));
    run_fails(f, "request", NULL, json_pack("{s:s, s:i}", "url", U("/echo"), "method", 5),
              ETL_EINVAL, "Etl.InvalidParameters");
    assert_non_null(strstr(f->err.cause, "'method'"));
    run_fails(f, "request", NULL, json_pack("{s:s}", "url", "file:///etc/passwd"), ETL_EINVAL,
              "Etl.InvalidParameters");
    run_fails(f, "request", NULL, json_pack("{s:s, s:{s:s}}", "url", U("/echo"), "headers", "X-A",
                                            "a\r\nX-Injected: 1"),
              ETL_EINVAL, "Etl.InvalidParameters");
}

typedef struct worker {
    int id;
    int ok;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    atomic_int cancel = 0;
    etl_task task;
    etl_error err;
    host_task_init(&task, "W", "", "", "/tmp", 1, &cancel);
    char base[64]; /* not U(): its buffers are not for threads */
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    json_t *set = json_pack("{s:s}", "base_url", base);
    etl_conn *c = NULL;
    if (http->open(host_services(), &task, host_wrap(set), &c, &err) == ETL_OK) {
        for (int i = 0; i < 20; i++) {
            json_t *p = json_pack("{s:s, s:{s:i, s:i}}", "url", "/echo", "query", "w", w->id, "i", i);
            etl_json *res = NULL;
            etl_error_clear(&err);
            if (action("request")->run(host_services(), &task, c, host_wrap(p), &res, &err) ==
                ETL_OK) {
                json_t *q = json_object_get(json_object_get(host_json(res), "body"), "query");
                char want[16];
                snprintf(want, sizeof want, "%d", i);
                if (json_string_value(json_object_get(q, "i")) &&
                    strcmp(json_string_value(json_object_get(q, "i")), want) == 0)
                    w->ok++;
            }
            host_task_done(&task);
            json_decref(host_json(res));
            json_decref(p);
        }
        http->close(host_services(), c);
    }
    json_decref(set);
    pthread_mutex_destroy(&task.mu);
    return NULL;
}

static void test_concurrent_connections(void **state)
{
    (void)state;
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.id = i};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].ok, 20);
    }
}

/* ------------------------------------------------------------ http.extract */

/* The staged rows of a manifest as an array of arrays (SQL NULL = JSON null). */
static json_t *staged_rows(fx *f, const json_t *manifest)
{
    const etl_host *h = host_services();
    const char *file = json_string_value(json_object_get(manifest, "file"));
    assert_non_null(file);
    etl_stage_reader *r = h->stage_read_open(&f->task, file, &f->err);
    if (!r)
        fail_msg("stage_read_open: %s", f->err.cause);
    json_t *rows = json_array();
    const char *const *fields;
    const size_t *lens;
    size_t n;
    int rc;
    while ((rc = h->stage_read_row(r, &fields, &lens, &n, &f->err)) == 1) {
        json_t *row = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(row, fields[i] ? json_stringn(fields[i], lens[i]) : json_null());
        json_array_append_new(rows, row);
    }
    assert_int_equal(rc, 0);
    h->stage_read_close(r);
    return rows;
}

/* Rows of records 0..n-1 in the columns id, name, big, score, active, tags, note, nope
 * hold the record's values as text (see the server's record()). */
static void check_full_rows(const json_t *rows, int n)
{
    assert_int_equal(json_array_size(rows), n);
    for (int i = 0; i < n; i++) {
        json_t *row = json_array_get(rows, i);
        char want[64];
        assert_int_equal(json_array_size(row), 8);
        snprintf(want, sizeof want, "%d", i);
        assert_str(json_string_value(json_array_get(row, 0)), want);
        snprintf(want, sizeof want, "item-%d", i);
        assert_str(json_string_value(json_array_get(row, 1)), want);
        snprintf(want, sizeof want, "%lld", 9007199254740993LL + i); /* exact past 2^53 */
        assert_str(json_string_value(json_array_get(row, 2)), want);
        snprintf(want, sizeof want, "%d.5", i);
        assert_str(json_string_value(json_array_get(row, 3)), want);
        assert_str(json_string_value(json_array_get(row, 4)), i % 2 == 0 ? "true" : "false");
        snprintf(want, sizeof want, "[\"t\",%d]", i);
        assert_str(json_string_value(json_array_get(row, 5)), want);
        if (i % 3 == 0)
            assert_true(json_is_null(json_array_get(row, 6)));
        else
            assert_str(json_string_value(json_array_get(row, 6)), "say \"hi\", ok");
        assert_true(json_is_null(json_array_get(row, 7))); /* a missing path */
    }
}

static json_t *full_fields(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", "$.id", "name", "$.name",
                     "big", "$.big", "score", "$.score", "active", "$.active", "tags", "$.tags",
                     "note", "$.note", "nope", "$.nope");
}

static void check_manifest(fx *f, const json_t *m, int rows, int pages)
{
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), rows);
    assert_int_equal(json_integer_value(json_object_get(m, "pages")), pages);
    assert_int_equal(atomic_load(&f->task.rows), (uint64_t)rows);
    json_t *cols = json_object_get(m, "columns");
    assert_true(json_array_size(cols) >= 1);
    assert_str(sget(json_array_get(cols, 0), "name"), "id");
}

static void test_extract_next_link(void **state)
{
    fx *f = *state;
    json_t *m = run_ok(f, "extract", NULL,
                       json_pack("{s:s, s:s, s:o, s:{s:s, s:s}}", "url",
                                 U("/pages/next?n=25&per=10"), "records", "$.data", "fields",
                                 full_fields(), "pagination", "type", "next_link", "next",
                                 "$.links.next"));
    check_manifest(f, m, 25, 3);
    json_t *rows = staged_rows(f, m);
    check_full_rows(rows, 25);
    json_decref(rows);
    json_decref(m);
}

static void test_extract_link_header(void **state)
{
    fx *f = *state;
    json_t *m = run_ok(f, "extract", NULL,
                       json_pack("{s:s, s:s, s:o, s:{s:s}}", "url", U("/pages/link?n=25&per=10"),
                                 "records", "$.data", "fields", full_fields(), "pagination",
                                 "type", "next_link"));
    check_manifest(f, m, 25, 3);
    json_t *rows = staged_rows(f, m);
    check_full_rows(rows, 25);
    json_decref(rows);
    json_decref(m);
}

static void test_extract_page_number(void **state)
{
    fx *f = *state;
    /* 25 records, 7 a page: 4 pages and the empty 5th that ends it */
    json_t *m = run_ok(f, "extract", NULL,
                       json_pack("{s:s, s:{s:i}, s:s, s:o, s:{s:s, s:s, s:i}}", "url",
                                 U("/pages/page"), "query", "n", 25, "records", "$.data",
                                 "fields", full_fields(), "pagination", "type", "page",
                                 "size_param", "per_page", "size", 7));
    check_manifest(f, m, 25, 5);
    json_t *rows = staged_rows(f, m);
    check_full_rows(rows, 25);
    json_decref(rows);
    json_decref(m);
}

static void test_extract_offset(void **state)
{
    fx *f = *state;
    json_t *m = run_ok(f, "extract", NULL,
                       json_pack("{s:s, s:s, s:o, s:{s:s, s:s, s:i}}", "url",
                                 U("/pages/offset?n=25"), "records", "$.items", "fields",
                                 full_fields(), "pagination", "type", "offset", "limit_param",
                                 "limit", "limit", 10));
    check_manifest(f, m, 25, 4);
    json_t *rows = staged_rows(f, m);
    check_full_rows(rows, 25);
    json_decref(rows);
    json_decref(m);
}

static void test_extract_cursor(void **state)
{
    fx *f = *state;
    json_t *m = run_ok(f, "extract", NULL,
                       json_pack("{s:s, s:s, s:o, s:{s:s, s:s}}", "url",
                                 U("/pages/cursor?n=25&per=10"), "records", "$.data", "fields",
                                 full_fields(), "pagination", "type", "cursor", "cursor",
                                 "$.meta.next_cursor"));
    check_manifest(f, m, 25, 3);
    json_t *rows = staged_rows(f, m);
    check_full_rows(rows, 25);
    json_decref(rows);
    json_decref(m);
}

/* True when dir holds no staged file (.csv): a failed extract leaves none. */
static bool no_csv(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return true;
    bool none = true;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".csv"))
            none = false;
    closedir(d);
    return none;
}

static void test_extract_errors(void **state)
{
    fx *f = *state;
    run_fails(f, "extract", NULL,
              json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:s}}", "url", U("/pages/evil"), "records",
                        "$.data", "fields", "id", "$.id", "pagination", "type", "next_link",
                        "next", "$.links.next"),
              ETL_ETASK, "Etl.HttpInvalidResponse");
    assert_non_null(strstr(f->err.cause, "another host"));
    assert_true(no_csv(f->dir));

    run_fails(f, "extract", NULL,
              json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:s}}", "url", U("/pages/loop"), "records",
                        "$.data", "fields", "id", "$.id", "pagination", "type", "cursor",
                        "cursor", "$.meta.next_cursor"),
              ETL_ETASK, "Etl.HttpInvalidResponse");
    assert_non_null(strstr(f->err.cause, "'same' again"));

    run_fails(f, "extract", NULL,
              json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:s}, s:i}", "url",
                        U("/pages/next?n=25&per=10"), "records", "$.data", "fields", "id", "$.id",
                        "pagination", "type", "next_link", "next", "$.links.next", "max_pages", 2),
              ETL_ETASK, "Etl.HttpTooManyPages");

    run_fails(f, "extract", NULL,
              json_pack("{s:s, s:s, s:{s:s}}", "url", U("/pages/next?n=25"), "records",
                        "$.links", "fields", "id", "$.id"),
              ETL_ETASK, "Etl.HttpInvalidResponse");
    assert_non_null(strstr(f->err.cause, "not an array"));

    run_fails(f, "extract", NULL,
              json_pack("{s:s, s:{s:s}}", "url", U("/text"), "fields", "id", "$.id"), ETL_ETASK,
              "Etl.HttpInvalidResponse");
    assert_non_null(strstr(f->err.cause, "not JSON"));

    run_fails(f, "extract", NULL,
              json_pack("{s:s, s:{s:s}}", "url", U("/status/503"), "fields", "id", "$.id"),
              ETL_ETASK, "Etl.HttpStatus");
    assert_true(f->err.transient);
    assert_true(no_csv(f->dir));
}

static long status_kib(const char *key)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fp && fgets(line, sizeof line, fp))
        if (strncmp(line, key, n) == 0 && sscanf(line + n, ": %ld", &v) == 1)
            break;
    if (fp)
        fclose(fp);
    return v;
}

static void test_extract_10000_records_flat_memory(void **state)
{
    fx *f = *state;
    /* 10,000 records of ~2.2 KB: 22+ MB of JSON in 100 pages (plus the empty last) */
    FILE *fp = fopen("/proc/self/clear_refs", "w"); /* reset VmHWM, the peak RSS */
    bool peak_reset = fp && fputs("5", fp) >= 0;
    if (fp)
        peak_reset = fclose(fp) == 0 && peak_reset;
    long before = status_kib("VmRSS");
    json_t *m = run_ok(f, "extract", NULL,
                       json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:i}}", "url",
                                 U("/pages/page?n=10000&pad=2000"), "records", "$.data",
                                 "fields", "id", "$.id", "name", "$.name", "pad", "$.pad",
                                 "pagination", "type", "page", "size_param", "per_page", "size",
                                 100));
    long grown = status_kib("VmHWM") - before;
    check_manifest(f, m, 10000, 101);
    assert_true(atomic_load(&f->task.bytes) > 20000000);
    assert_true(json_integer_value(json_object_get(m, "bytes")) > 20000000);
    json_t *rows = staged_rows(f, m);
    assert_int_equal(json_array_size(rows), 10000);
    assert_str(json_string_value(json_array_get(json_array_get(rows, 9999), 0)), "9999");
    json_decref(rows);
    json_decref(m);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* sanitizer allocators keep freed memory (quarantine, shadow): RSS says nothing */
    (void)grown;
    (void)peak_reset;
#else
    if (!peak_reset)
        skip();
    if (grown > 16 * 1024)
        fail_msg("peak RSS grew by %ld KiB while streaming 22 MB", grown);
#endif
}

/* ------------------------------------------------------------ validate-time checks */

/* Run a check on YAML; the messages joined by "\n" (caller frees), "" when it passed. */
static char *check_yaml(bool (*check)(const etl_host *, const etl_json *, etl_checker *),
                        const char *yaml)
{
    diag *d = diag_new("p.yaml");
    doc *dc = doc_load_string(yaml, strlen(yaml), "p.yaml", false, d);
    assert_non_null(dc);
    etl_checker chk = {.d = d, .node = dc->root, .what = "S"};
    bool ok = check(host_services(), host_wrap(dc->root->json), &chk);
    assert_int_equal(ok, diag_count(d) == 0);
    size_t total = 1;
    for (size_t i = 0; i < diag_count(d); i++)
        total += strlen(diag_message(d, i)) + 1;
    char *out = calloc(1, total);
    for (size_t i = 0; i < diag_count(d); i++) {
        strcat(out, diag_message(d, i));
        strcat(out, "\n");
    }
    doc_free(dc);
    diag_free(d);
    return out;
}

#define assert_has(hay, needle) \
    do { \
        if (!strstr(hay, needle)) \
            fail_msg("missing \"%s\" in:\n%s", needle, hay); \
    } while (0)

static void test_check_settings(void **state)
{
    (void)state;
    char *m = check_yaml(http->check_settings,
                         "base_url: ftp://x\n"
                         "headers:\n"
                         "  Good: ok\n"
                         "  Bad Name: x\n"
                         "  X-Num: [1]\n"
                         "timeout_seconds: -1\n"
                         "verify_tls: 'yes'\n"
                         "bogus: 1\n");
    assert_has(m, "p.yaml:1:11: S: 'base_url': must start with http:// or https://");
    assert_has(m, "p.yaml:4:13: S: 'headers.Bad Name': is not a valid header name");
    assert_has(m, "p.yaml:5:10: S: 'headers.X-Num': must be a string or a number");
    assert_has(m, "p.yaml:6:18: S: 'timeout_seconds': must be a number of seconds > 0");
    assert_has(m, "p.yaml:7:13: S: 'verify_tls': must be true or false");
    assert_has(m, "p.yaml:8:8: S: 'bogus': unknown field");
    assert_null(strstr(m, "Good"));
    free(m);
    m = check_yaml(http->check_settings,
                   "base_url: https://api.example.com/v1\n"
                   "headers: {Authorization: 'Bearer x', X-Page: 3}\n"
                   "timeout_seconds: 2.5\nconnect_timeout_seconds: '1'\nverify_tls: 'false'\n"
                   "ca_file: /etc/ssl/ca.pem\nuser_agent: me/1\n");
    assert_string_equal(m, "");
    free(m);
}

static void test_check_request_params(void **state)
{
    (void)state;
    char *m = check_yaml(action("request")->check,
                         "method: get\n"
                         "url: ftp://h/x\n"
                         "query: {a: {b: 1}}\n"
                         "headers: {X-A: {x: 1}}\n"
                         "timeout_seconds: 0\n"
                         "max_body_bytes: 0\n"
                         "extra: 1\n");
    assert_has(m, "p.yaml:1:9: S: 'method': must be an upper-case HTTP method");
    assert_has(m, "p.yaml:2:6: S: 'url': only http:// and https:// URLs are supported");
    assert_has(m, "p.yaml:3:12: S: 'query.a': must be a string, number, boolean, null");
    assert_has(m, "p.yaml:4:16: S: 'headers.X-A': must be a string or a number");
    assert_has(m, "p.yaml:5:18: S: 'timeout_seconds'");
    assert_has(m, "p.yaml:6:17: S: 'max_body_bytes': must be an integer >= 1");
    assert_has(m, "p.yaml:7:8: S: 'extra': unknown field");
    free(m);
    m = check_yaml(action("request")->check, "method: GET\n");
    assert_has(m, "S: 'url' is required");
    free(m);
    /* values known only at run time pass, and so does a full literal request */
    m = check_yaml(action("request")->check,
                   "url.$: $.u\nheaders: {Authorization.$: $.tok, X-B: b}\nbody.$: $.doc\n"
                   "query.$: $.q\nconnection: api\nkey.$: $.k\n");
    assert_string_equal(m, "");
    free(m);
    m = check_yaml(action("request")->check,
                   "method: PATCH\nurl: /v1/items\nquery: {a: 1, b: [x, 2], c: null}\n"
                   "body: {k: [1, 2]}\ntimeout_seconds: 3\nmax_body_bytes: 100\n"
                   "retry_after_max_seconds: 0\n");
    assert_string_equal(m, "");
    free(m);
}

static void test_check_extract_params(void **state)
{
    (void)state;
    char *m = check_yaml(action("extract")->check,
                         "url: https://h/x\n"
                         "records: data\n"
                         "fields: {id: $.id, bad: '$[', n: 3}\n"
                         "pagination: {type: pages}\n");
    assert_has(m, "p.yaml:2:10: S: 'records': must be a JSONPath string starting with '$'");
    assert_has(m, "p.yaml:3:25: S: 'fields.bad': invalid path");
    assert_has(m, "p.yaml:3:34: S: 'fields.n': must be a JSONPath string");
    assert_has(m, "p.yaml:4:20: S: 'pagination.type': must be next_link, page, offset or cursor");
    free(m);
    m = check_yaml(action("extract")->check,
                   "url: https://h/x\n"
                   "pagination: {type: page, size: 10, limit: 3}\n"
                   "max_pages: 0\n");
    assert_has(m, "S: 'fields' is required");
    assert_has(m, "'size_param' and 'size' go together");
    assert_has(m, "S: 'pagination.limit': unknown field");
    assert_has(m, "p.yaml:3:12: S: 'max_pages': must be an integer >= 1");
    free(m);
    m = check_yaml(action("extract")->check,
                   "url: https://h/x\nfields: {id: $.id}\npagination: {type: cursor}\n");
    assert_has(m, "'cursor' (the path to the next cursor) is required");
    free(m);
    m = check_yaml(action("extract")->check,
                   "url: https://h/x\nrecords: $.data\nfields: {id: $.id, raw: $}\n"
                   "pagination: {type: offset, param: skip, start: 0, limit_param: take, "
                   "limit: 50}\nmax_pages: 10\n");
    assert_string_equal(m, "");
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_get_query_headers),
        T(test_post_json_body),
        T(test_connection_settings),
        T(test_non_json_bodies),
        T(test_404_not_transient),
        T(test_5xx_transient_flags),
        T(test_429_retry_after_then_success),
        T(test_503_retry_after_http_date),
        T(test_retry_after_limits),
        T(test_timeout),
        T(test_cancel_mid_transfer),
        T(test_cancel_during_retry_wait),
        T(test_connection_refused),
        T(test_body_cap_and_redirect),
        T(test_runtime_parameter_errors),
        T(test_concurrent_connections),
        T(test_extract_next_link),
        T(test_extract_link_header),
        T(test_extract_page_number),
        T(test_extract_offset),
        T(test_extract_cursor),
        T(test_extract_errors),
        T(test_extract_10000_records_flat_memory),
        T(test_check_settings),
        T(test_check_request_params),
        T(test_check_extract_params),
#undef T
    };
    return cmocka_run_group_tests_name("http", tests, group_setup, group_teardown);
}
