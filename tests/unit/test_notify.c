/* Tests for cron-monitor pings (engine/notify.c) against tests/http/http_test_server on
 * 127.0.0.1: the server records every /ping/... request, and the test reads them back
 * from /pings. Start, success and fail (with its JSON body, capped at 100 KB), a URL
 * with a query, an endpoint that hangs (bounded by the timeout), and failures that are
 * logged as warnings naming only scheme://host, never the URL's secret path. */
#include <libgen.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "http_server.h"
#include "log.h"
#include "notify.h"

/* ---------- the server ---------- */

static pid_t server_pid;
static int port;

static int group_setup(void **state)
{
    (void)state;
    server_pid = http_server_start("test_notify", &port);
    if (server_pid < 0)
        return -1;
    notify_init();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    http_server_stop(server_pid);
    return 0;
}

static const char *U(const char *path)
{
    static char buf[4][512];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 512, "http://127.0.0.1:%d%s", port, path);
    return p;
}

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    FILE *f = arg;
    return fwrite(p, size, n, f);
}

/* The request the server recorded with this path (the last one), or NULL. New ref. */
static json_t *recorded(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, U("/pings"));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    fclose(f);
    assert_int_equal(rc, CURLE_OK);
    json_t *all = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(all);
    json_t *found = NULL;
    for (size_t i = json_array_size(all); i-- > 0;) {
        json_t *p = json_array_get(all, i);
        if (strcmp(json_string_value(json_object_get(p, "path")), path) == 0) {
            found = json_incref(p);
            break;
        }
    }
    json_decref(all);
    return found;
}

static const char *field(const json_t *rec, const char *name)
{
    return json_string_value(json_object_get(rec, name));
}

/* ---------- capturing the warnings on fd 2 ---------- */

static int saved_fd = -1, read_fd = -1;

static void cap_begin(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    saved_fd = dup(STDERR_FILENO);
    dup2(p[1], STDERR_FILENO);
    close(p[1]);
    read_fd = p[0];
}

static char *cap_end(void)
{
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    saved_fd = -1;
    char *buf = calloc(1, 1 << 16);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < (1 << 16) && (r = read(read_fd, buf + n, (1 << 16) - 1 - n)) > 0)
        n += (size_t)r;
    close(read_fd);
    return buf;
}

static int teardown(void **state)
{
    (void)state;
    if (saved_fd >= 0)
        free(cap_end());
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------- tests ---------- */

static void test_start(void **state)
{
    (void)state;
    notify_ping(U("/ping/tok-start"), NOTIFY_START, NULL, 5);
    json_t *rec = recorded("/ping/tok-start/start");
    assert_non_null(rec);
    assert_string_equal(field(rec, "method"), "GET");
    assert_string_equal(field(rec, "body"), "");
    json_decref(rec);
    assert_null(recorded("/ping/tok-start")); /* only the /start URL was hit */
}

static void test_success(void **state)
{
    (void)state;
    notify_ping(U("/ping/tok-ok"), NOTIFY_SUCCESS, NULL, 5);
    json_t *rec = recorded("/ping/tok-ok");
    assert_non_null(rec);
    assert_string_equal(field(rec, "method"), "GET");
    json_decref(rec);
}

static void test_fail_with_body(void **state)
{
    (void)state;
    const char *body = "{\"status\":\"failed\",\"error\":{\"name\":\"Etl.Boom\",\"cause\":\"x\"}}";
    notify_ping(U("/ping/tok-fail"), NOTIFY_FAIL, body, 5);
    json_t *rec = recorded("/ping/tok-fail/fail");
    assert_non_null(rec);
    assert_string_equal(field(rec, "method"), "POST");
    assert_string_equal(field(rec, "content_type"), "application/json");
    assert_string_equal(field(rec, "body"), body);
    json_decref(rec);
}

static void test_body_capped(void **state)
{
    (void)state;
    size_t n = 300 * 1024;
    char *body = malloc(n + 1);
    memset(body, 'y', n);
    body[n] = '\0';
    notify_ping(U("/ping/tok-big"), NOTIFY_FAIL, body, 5);
    free(body);
    json_t *rec = recorded("/ping/tok-big/fail");
    assert_non_null(rec);
    assert_int_equal(strlen(field(rec, "body")), 100 * 1024);
    json_decref(rec);
}

static void test_suffix_before_query(void **state)
{
    (void)state;
    /* the suffix goes on the path, before the query; a trailing slash is not doubled */
    notify_ping(U("/ping/tok-q?rid=7&create=1"), NOTIFY_START, NULL, 5);
    json_t *rec = recorded("/ping/tok-q/start");
    assert_non_null(rec);
    assert_string_equal(field(rec, "raw_query"), "rid=7&create=1");
    json_decref(rec);
    notify_ping(U("/ping/tok-slash/"), NOTIFY_FAIL, "{}", 5);
    rec = recorded("/ping/tok-slash/fail");
    assert_non_null(rec);
    json_decref(rec);
}

static void test_hanging_endpoint(void **state)
{
    (void)state;
    cap_begin();
    double t0 = now_s();
    notify_ping(U("/ping/hang/secret-token"), NOTIFY_SUCCESS, NULL, 1.0);
    double el = now_s() - t0;
    char *err = cap_end();
    /* it reached the server, waited for its timeout, and no longer */
    json_t *rec = recorded("/ping/hang/secret-token");
    assert_non_null(rec);
    json_decref(rec);
    if (el < 0.9 || el > 1.5)
        fail_msg("the ping took %.3f s with a 1 s timeout", el);
    assert_non_null(strstr(err, "WARN"));
    assert_non_null(strstr(err, "success ping to http://127.0.0.1:"));
    assert_null(strstr(err, "secret"));
    free(err);
}

static void test_unreachable_never_logs_secrets(void **state)
{
    (void)state;
    cap_begin();
    double t0 = now_s();
    /* nothing listens on port 1 */
    notify_ping("http://user:hunter2@127.0.0.1:1/ping/s3cr3t-uuid?token=s3cr3t-q", NOTIFY_FAIL,
                "{}", 2);
    double el = now_s() - t0;
    char *err = cap_end();
    assert_true(el < 2.5);
    assert_non_null(strstr(err, "WARN  notify: fail ping to http://127.0.0.1:1 failed: "));
    assert_null(strstr(err, "s3cr3t"));
    assert_null(strstr(err, "hunter2"));
    assert_null(strstr(err, "user"));
    free(err);
}

static void test_http_error_is_a_warning(void **state)
{
    (void)state;
    cap_begin();
    notify_ping(U("/status/503"), NOTIFY_SUCCESS, NULL, 5);
    char *err = cap_end();
    assert_non_null(strstr(err, "WARN  notify: success ping to http://127.0.0.1:"));
    assert_non_null(strstr(err, "answered HTTP 503"));
    assert_null(strstr(err, "/status"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start),
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_fail_with_body),
        cmocka_unit_test(test_body_capped),
        cmocka_unit_test(test_suffix_before_query),
        cmocka_unit_test_teardown(test_hanging_endpoint, teardown),
        cmocka_unit_test_teardown(test_unreachable_never_logs_secrets, teardown),
        cmocka_unit_test_teardown(test_http_error_is_a_warning, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
