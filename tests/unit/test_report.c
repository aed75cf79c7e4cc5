/* Tests for run reports (engine/report.c): the observer fed with hand-built events in
 * the scheduler's shapes (several keys, a retry, a caught timeout, Map iteration
 * failures tolerated or not) gives the documented summary JSON; the printed summary;
 * the progress line's content and rate limit; the operator log lines it writes. */
#include <jansson.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "report.h"

/* ---------- helpers ---------- */

static void feed(report *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_error_t e;
    json_t *ev = json_vpack_ex(&e, 0, fmt, ap);
    va_end(ap);
    if (!ev)
        fail_msg("bad event pack: %s", e.text);
    report_observe(r, ev);
    json_decref(ev);
}

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
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (n + 1 < cap && (r = read(read_fd, buf + n, cap - n - 1)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(read_fd);
    return buf;
}

static int setup(void **state)
{
    (void)state;
    /* the observer logs; these tests look at summaries, so only errors show */
    log_config c = {.format = LOG_TEXT, .quiet = true};
    char err[128];
    return log_open(&c, err, sizeof err) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (saved_fd >= 0)
        free(cap_end());
    log_close();
    return 0;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* The scenario: a and b succeed (b after a retry), c times out and is caught, d fails
 * inside a tolerant Map, and a nested Map "Inner" fails itself (not tolerated). */
static void scenario(report *r)
{
    feed(r, "{s:i,s:s,s:s,s:{},s:s,s:s}", "id", 1, "timestamp", "2026-11-22T03:00:00.000Z",
         "type", "ExecutionStarted", "input", "name", "R1", "pipeline", "P");
    feed(r, "{s:s,s:s,s:{s:s}}", "type", "TaskScheduled", "state", "Extract", "parameters",
         "key", "a");
    feed(r, "{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:i}", "type", "TaskSucceeded", "state",
         "Extract", "key", "a", "connection", "src", "rows", 100, "bytes", 1000, "durationMs",
         200, "attempt", 1, "output", 0);
    feed(r, "{s:s,s:s}", "type", "TaskScheduled", "state", "Load");
    feed(r, "{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:i}", "type", "TaskSucceeded", "state", "Load",
         "key", "a", "connection", "wh", "rows", 100, "bytes", 1500, "durationMs", 300,
         "attempt", 1);
    /* b: a failed first attempt, then a retry that succeeds */
    feed(r, "{s:s,s:s}", "type", "TaskScheduled", "state", "Extract");
    feed(r, "{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:i}", "type", "TaskFailed", "state", "Extract",
         "key", "b", "connection", "src", "error", "Etl.ConnectionFailed", "cause", "reset",
         "durationMs", 50, "attempt", 1);
    feed(r, "{s:s,s:s,s:s,s:s,s:i,s:f}", "type", "StateRetryScheduled", "state", "Extract",
         "error", "Etl.ConnectionFailed", "cause", "reset", "attempt", 1, "delaySeconds", 1.0);
    feed(r, "{s:s,s:s,s:i}", "type", "StateRetried", "state", "Extract", "retryCount", 1);
    feed(r, "{s:s,s:s}", "type", "TaskScheduled", "state", "Extract");
    feed(r, "{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:i}", "type", "TaskSucceeded", "state", "Extract",
         "key", "b", "connection", "src", "rows", 7, "bytes", 70, "durationMs", 150,
         "attempt", 2);
    /* c: times out, caught */
    feed(r, "{s:s,s:s}", "type", "TaskScheduled", "state", "Extract");
    feed(r, "{s:s,s:s,s:s,s:s,s:s,s:i,s:i}", "type", "TaskTimedOut", "state", "Extract", "key",
         "c", "error", "States.Timeout", "cause", "state 'Extract' timed out after 1 seconds",
         "durationMs", 1000, "attempt", 1);
    feed(r, "{s:s,s:s,s:s,s:s,s:s}", "type", "StateCaught", "state", "Extract", "error",
         "States.Timeout", "cause", "state 'Extract' timed out after 1 seconds", "next",
         "Skip");
    /* d: fails in iteration 3 of the top-level Map "Each", which tolerates it */
    feed(r, "{s:s,s:s,s:i}", "type", "TaskScheduled", "state", "Work", "mapItemIndex", 3);
    feed(r, "{s:s,s:s,s:i,s:s,s:s,s:s,s:i,s:i}", "type", "TaskFailed", "state", "Work",
         "mapItemIndex", 3, "key", "d", "error", "Bad", "cause", "two", "durationMs", 10,
         "attempt", 1);
    feed(r, "{s:s,s:s,s:i,s:s,s:s}", "type", "StateFailed", "state", "Work", "mapItemIndex", 3,
         "error", "Bad", "cause", "two");
    feed(r, "{s:s,s:s,s:i,s:s,s:s}", "type", "MapIterationFailed", "state", "Each", "index", 3,
         "error", "Bad", "cause", "two");
    /* "Inner", a Map inside iteration 0: one iteration fails, then the Map itself */
    feed(r, "{s:s,s:s,s:i,s:i,s:s,s:s}", "type", "MapIterationFailed", "state", "Inner",
         "mapItemIndex", 0, "index", 1, "error", "Oops", "cause", "x");
    feed(r, "{s:s,s:s,s:i,s:s,s:s}", "type", "StateFailed", "state", "Inner", "mapItemIndex", 0,
         "error", "Oops", "cause", "x");
    feed(r, "{s:s,s:s,s:n,s:i}", "type", "ExecutionSucceeded", "timestamp",
         "2026-11-22T03:00:05.000Z", "output", "transitions", 42);
}

static const char *const expected_keys =
    "[{\"key\":\"a\",\"status\":\"ok\",\"rows\":100,\"bytes\":1500,\"duration_s\":0.5,"
    "\"attempts\":1,\"error\":null},"
    "{\"key\":\"b\",\"status\":\"ok\",\"rows\":7,\"bytes\":70,\"duration_s\":0.2,"
    "\"attempts\":2,\"error\":null},"
    "{\"key\":\"c\",\"status\":\"failed\",\"rows\":0,\"bytes\":0,\"duration_s\":1.0,"
    "\"attempts\":1,\"error\":{\"name\":\"States.Timeout\","
    "\"cause\":\"state 'Extract' timed out after 1 seconds\"}},"
    "{\"key\":\"d\",\"status\":\"failed\",\"rows\":0,\"bytes\":0,\"duration_s\":0.01,"
    "\"attempts\":1,\"error\":{\"name\":\"Bad\",\"cause\":\"two\"}}]";

static void assert_json(const json_t *got, const char *want_text)
{
    json_error_t e;
    json_t *want = json_loads(want_text, JSON_DECODE_ANY, &e);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        fail_msg("got  %s\nwant %s", g, want_text);
    }
    json_decref(want);
}

/* ---------- the summary ---------- */

static void test_summary_succeeded(void **state)
{
    (void)state;
    report *r = report_new(false);
    scenario(r);
    sched_outcome out = {.status = ETL_OK, .transitions = 42};
    json_t *s = report_summary(r, "P", "R1", &out);
    assert_non_null(s);

    /* exactly the documented fields */
    const char *fields[] = {"pipeline", "run_id", "status", "started", "ended", "duration_s",
                            "transitions", "error", "errors_caught", "keys", "totals",
                            "slowest"};
    assert_int_equal(json_object_size(s), 12);
    for (size_t i = 0; i < 12; i++)
        assert_non_null(json_object_get(s, fields[i]));

    assert_string_equal(json_string_value(json_object_get(s, "pipeline")), "P");
    assert_string_equal(json_string_value(json_object_get(s, "run_id")), "R1");
    assert_string_equal(json_string_value(json_object_get(s, "status")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(s, "started")),
                        "2026-11-22T03:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(s, "ended")),
                        "2026-11-22T03:00:05.000Z");
    assert_true(json_is_real(json_object_get(s, "duration_s")));
    assert_true(json_real_value(json_object_get(s, "duration_s")) >= 0);
    assert_int_equal(json_integer_value(json_object_get(s, "transitions")), 42);
    assert_true(json_is_null(json_object_get(s, "error")));
    /* the caught timeout + the one failure "Each" tolerated; not Inner's */
    assert_int_equal(json_integer_value(json_object_get(s, "errors_caught")), 2);
    assert_int_equal(report_errors_caught(r), 2);
    assert_json(json_object_get(s, "keys"), expected_keys);
    assert_json(json_object_get(s, "totals"),
                "{\"keys\":4,\"ok\":2,\"failed\":2,\"rows\":107,\"bytes\":1570}");
    assert_json(json_object_get(s, "slowest"),
                "[{\"key\":\"c\",\"duration_s\":1.0},{\"key\":\"a\",\"duration_s\":0.5},"
                "{\"key\":\"b\",\"duration_s\":0.2},{\"key\":\"d\",\"duration_s\":0.01}]");
    json_decref(s);
    report_free(r);
}

static void test_summary_failed_and_cancelled(void **state)
{
    (void)state;
    report *r = report_new(false);
    feed(r, "{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:i}", "type", "TaskSucceeded", "state", "Extract",
         "key", "e", "connection", "src", "rows", 5, "bytes", 50, "durationMs", 20, "attempt", 1);
    /* its last task fails: the key is failed, and keeps the rows it extracted */
    feed(r, "{s:s,s:s,s:s,s:s,s:s,s:i,s:i}", "type", "TaskFailed", "state", "Load", "key", "e",
         "error", "Etl.QueryFailed", "cause", "no table", "durationMs", 30, "attempt", 3);
    sched_outcome out = {.status = ETL_EQUERY, .transitions = 3};
    snprintf(out.err.name, sizeof out.err.name, "Etl.QueryFailed");
    snprintf(out.err.cause, sizeof out.err.cause, "no table");
    json_t *s = report_summary(r, "P", "R2", &out);
    assert_string_equal(json_string_value(json_object_get(s, "status")), "failed");
    assert_json(json_object_get(s, "error"), "{\"name\":\"Etl.QueryFailed\",\"cause\":\"no table\"}");
    assert_json(json_object_get(s, "keys"),
                "[{\"key\":\"e\",\"status\":\"failed\",\"rows\":5,\"bytes\":50,"
                "\"duration_s\":0.05,\"attempts\":3,"
                "\"error\":{\"name\":\"Etl.QueryFailed\",\"cause\":\"no table\"}}]");
    assert_int_equal(json_integer_value(json_object_get(s, "errors_caught")), 0);
    json_decref(s);

    sched_outcome sig = {.status = ETL_ECANCELLED, .signal = 15};
    snprintf(sig.err.name, sizeof sig.err.name, "States.Cancelled");
    s = report_summary(r, "P", "R2", &sig);
    assert_string_equal(json_string_value(json_object_get(s, "status")), "cancelled");
    /* no end event was seen: the end is now, after the start */
    assert_true(strcmp(json_string_value(json_object_get(s, "ended")),
                       json_string_value(json_object_get(s, "started"))) >= 0);
    json_decref(s);
    report_free(r);
}

static void test_errors_caught_maps(void **state)
{
    (void)state;
    report *r = report_new(false);
    /* M1 tolerates 2 failures: +2 */
    for (int i = 0; i < 2; i++)
        feed(r, "{s:s,s:s,s:i,s:s,s:s}", "type", "MapIterationFailed", "state", "M1", "index", i,
             "error", "E", "cause", "c");
    /* M2 fails and a Catch handles it: +1 (the catch), its iteration does not count */
    feed(r, "{s:s,s:s,s:i,s:s,s:s}", "type", "MapIterationFailed", "state", "M2", "index", 0,
         "error", "E", "cause", "c");
    feed(r, "{s:s,s:s,s:s,s:s,s:s}", "type", "StateCaught", "state", "M2", "error",
         "States.ExceedToleratedFailureThreshold", "cause", "c", "next", "N");
    /* M3 in item 5 fails, is retried, then tolerates one failure: +1 */
    feed(r, "{s:s,s:s,s:i,s:i,s:s,s:s}", "type", "MapIterationFailed", "state", "M3",
         "mapItemIndex", 5, "index", 0, "error", "E", "cause", "c");
    feed(r, "{s:s,s:s,s:i,s:s,s:s,s:i,s:f}", "type", "StateRetryScheduled", "state", "M3",
         "mapItemIndex", 5, "error", "E", "cause", "c", "attempt", 1, "delaySeconds", 0.0);
    feed(r, "{s:s,s:s,s:i,s:i,s:s,s:s}", "type", "MapIterationFailed", "state", "M3",
         "mapItemIndex", 5, "index", 1, "error", "E", "cause", "c");
    /* the same Map in item 6 fails for good: +0 */
    feed(r, "{s:s,s:s,s:i,s:i,s:s,s:s}", "type", "MapIterationFailed", "state", "M3",
         "mapItemIndex", 6, "index", 0, "error", "E", "cause", "c");
    feed(r, "{s:s,s:s,s:i,s:s,s:s}", "type", "StateFailed", "state", "M3", "mapItemIndex", 6,
         "error", "E", "cause", "c");
    assert_int_equal(report_errors_caught(r), 4);
    report_free(r);
}

/* ---------- the printed summary ---------- */

static char *print(const json_t *s, bool color)
{
    /* static: GCC 12 otherwise takes the memstream's buffer for a pointer into this
     * frame (-Wdangling-pointer false positive at -O2) */
    static char *buf;
    static size_t len;
    buf = NULL;
    len = 0;
    FILE *f = open_memstream(&buf, &len);
    report_print(s, f, color);
    fclose(f);
    return buf;
}

static void test_print(void **state)
{
    (void)state;
    report *r = report_new(false);
    scenario(r);
    sched_outcome out = {.status = ETL_ETASK, .transitions = 42};
    snprintf(out.err.name, sizeof out.err.name, "Etl.Boom");
    snprintf(out.err.cause, sizeof out.err.cause, "it broke");
    json_t *s = report_summary(r, "P", "R1", &out);
    char *text = print(s, false);
    assert_non_null(strstr(text, "Run R1 of P: FAILED"));
    assert_non_null(strstr(text, "Error: Etl.Boom: it broke"));
    assert_non_null(strstr(text, "KEY"));
    /* failed keys first */
    char *ra = strstr(text, "\n  a "), *rb = strstr(text, "\n  b "), *rc = strstr(text, "\n  c "),
         *rd = strstr(text, "\n  d ");
    assert_true(ra && rb && rc && rd);
    assert_true(rc < rd && rd < ra && ra < rb);
    assert_true(strchr(rc + 1, '\n') > strstr(rc, "States.Timeout: state 'Extract' timed out"));
    assert_non_null(strstr(ra, "1.5 KB"));
    assert_non_null(strstr(text, "Totals: 4 keys, 2 ok, 2 failed; 107 rows, 1.6 KB; 42 transitions"));
    assert_non_null(strstr(text, "Slowest: c (1.0s), a (0.5s), b (0.2s), d (0.0s)"));
    assert_non_null(strstr(text, "Errors caught: 2"));
    assert_null(strstr(text, "\033"));
    free(text);
    text = print(s, true);
    assert_non_null(strstr(text, "\033[31mfailed"));
    assert_non_null(strstr(text, "\033[32mok"));
    free(text);
    json_decref(s);
    report_free(r);
}

static void test_print_many_keys(void **state)
{
    (void)state;
    report *r = report_new(false);
    for (int i = 0; i < 60; i++) {
        char key[32];
        snprintf(key, sizeof key, "table_%02d", i);
        feed(r, "{s:s,s:s,s:s,s:s,s:i,s:i,s:i}", "type", i == 59 ? "TaskFailed" : "TaskSucceeded",
             "state", "Copy", "key", key, "error", "E.Last", "rows", 1000, "durationMs", i,
             "attempt", 1);
    }
    sched_outcome out = {.status = ETL_OK};
    json_t *s = report_summary(r, "P", "R3", &out);
    assert_int_equal(json_array_size(json_object_get(s, "slowest")), 5);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(s, "slowest"), 0), "key")),
                        "table_59");
    char *text = print(s, false);
    assert_int_equal(count(text, "\n  table_"), 50);
    /* the failed key, last seen, still makes the table: failed keys come first */
    assert_non_null(strstr(text, "\n  table_59  failed"));
    assert_null(strstr(text, "\n  table_49 ")); /* 1 failed + 49 ok: table_00..table_48 */
    assert_non_null(strstr(text, "\n  table_48 "));
    assert_non_null(strstr(text, "... and 10 more keys"));
    assert_non_null(strstr(text, "Totals: 60 keys, 59 ok, 1 failed; 60,000 rows"));
    free(text);
    json_decref(s);
    report_free(r);
}

/* ---------- the progress line ---------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_progress(void **state)
{
    (void)state;
    char *out;
    cap_begin();
    report *r = report_new(true);
    feed(r, "{s:s,s:s,s:s}", "type", "ExecutionStarted", "timestamp", "2026-11-22T03:00:00.000Z",
         "pipeline", "P");
    feed(r, "{s:s,s:s,s:i}", "type", "MapStarted", "state", "Each", "items", 10);
    for (int i = 0; i < 4; i++)
        feed(r, "{s:s,s:s}", "type", "TaskScheduled", "state", "Copy");
    feed(r, "{s:s,s:s,s:s,s:i,s:i,s:i}", "type", "TaskSucceeded", "state", "Copy", "key", "k1",
         "rows", 1000, "durationMs", 5, "attempt", 1);
    feed(r, "{s:s,s:s,s:s,s:s,s:s,s:i}", "type", "TaskFailed", "state", "Copy", "key", "k2",
         "error", "E", "cause", "c", "attempt", 1);
    sleep_ms(300);
    feed(r, "{s:s,s:s,s:i}", "type", "MapIterationSucceeded", "state", "Each", "index", 0);
    report_clear_progress(r);
    report_clear_progress(r); /* nothing drawn: writes nothing */
    feed(r, "{s:s,s:n,s:i}", "type", "ExecutionSucceeded", "output", "transitions", 9);
    out = cap_end();
    /* 8 events in under 250 ms: one draw; one more after the pause; one clear */
    assert_int_equal(count(out, "\r\033[K"), 3);
    assert_int_equal(count(out, "\r\033[K["), 2);
    assert_non_null(strstr(out, "tasks: 2 running | keys: 1/10 done, 1 failed | rows: 1000 ("));
    assert_null(strchr(out, '\n')); /* quiet log: no lines, and the progress never ends one */
    free(out);
    report_free(r);

    /* a log line (which erases the progress line on a terminal) is followed by a
     * redraw at once, whatever the rate limit */
    log_config c = {.format = LOG_TEXT};
    char err[128];
    assert_true(log_open(&c, err, sizeof err));
    cap_begin();
    r = report_new(true);
    feed(r, "{s:s,s:s}", "type", "TaskScheduled", "state", "Copy");
    feed(r, "{s:s,s:s,s:s,s:i,s:i}", "type", "TaskSucceeded", "state", "Copy", "key", "k1",
         "rows", 5, "attempt", 1);
    feed(r, "{s:s,s:s}", "type", "TaskScheduled", "state", "Copy");
    out = cap_end();
    report_free(r);
    assert_int_equal(count(out, "\r\033[K["), 2);
    char *logline = strstr(out, "INFO  state=Copy key=k1: done: 5 rows");
    assert_non_null(logline);
    assert_non_null(strstr(logline, "\r\033[K[")); /* redrawn after the line */
    free(out);
    log_open(&(log_config){.format = LOG_TEXT, .quiet = true}, err, sizeof err);

    /* without progress nothing at all is written */
    cap_begin();
    r = report_new(false);
    feed(r, "{s:s,s:s}", "type", "TaskScheduled", "state", "Copy");
    report_clear_progress(r);
    out = cap_end();
    assert_string_equal(out, "");
    free(out);
    report_free(r);
}

/* ---------- the operator's log lines ---------- */

static void test_log_lines(void **state)
{
    (void)state;
    log_config c = {.format = LOG_TEXT};
    char err[128];
    assert_true(log_open(&c, err, sizeof err));
    cap_begin();
    report *r = report_new(false);
    scenario(r);
    char *out = cap_end();
    report_free(r);
    /* the start is logged by the CLI (with the run id), not twice */
    assert_null(strstr(out, "started"));
    assert_non_null(strstr(out, "INFO  state=Load key=a conn=wh: done: 100 rows, 1.5 KB in 0.3s\n"));
    assert_non_null(strstr(out, "WARN  state=Extract key=b conn=src: failed (attempt 1): "
                                "Etl.ConnectionFailed: reset\n"));
    assert_non_null(strstr(out, "INFO  state=Extract: retry 1 in 1.0s after Etl.ConnectionFailed\n"));
    assert_non_null(strstr(out, "WARN  state=Extract key=c: timed out (attempt 1): States.Timeout"));
    assert_non_null(strstr(out, "WARN  state=Extract: caught States.Timeout, continuing at 'Skip'"));
    assert_non_null(strstr(out, "WARN  state=Each: item 3 failed: Bad: two\n"));
    assert_non_null(strstr(out, "INFO  succeeded in "));
    assert_null(strstr(out, "StateFailed"));
    free(out);

    /* a failed execution is an error: the one line --quiet keeps */
    log_config q = {.format = LOG_TEXT, .quiet = true};
    assert_true(log_open(&q, err, sizeof err));
    cap_begin();
    r = report_new(false);
    feed(r, "{s:s,s:s,s:s,s:s,s:i,s:i,s:i}", "type", "TaskFailed", "state", "Load", "key", "x",
         "error", "E", "durationMs", 1, "attempt", 1, "transitions", 0);
    feed(r, "{s:s,s:s,s:s,s:i}", "type", "ExecutionFailed", "error", "Etl.Boom", "cause",
         "it broke", "transitions", 2);
    out = cap_end();
    report_free(r);
    assert_int_equal(count(out, "\n"), 1);
    assert_non_null(strstr(out, "ERROR failed after "));
    assert_non_null(strstr(out, "s: Etl.Boom: it broke\n"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_summary_succeeded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_summary_failed_and_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_caught_maps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_many_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_lines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
