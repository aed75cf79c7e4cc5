/* Tests for operator logging (engine/log.c): the text and JSON line formats with and
 * without fields, level filtering (--quiet, --verbose), NO_COLOR on a real terminal
 * (a pty), the log file, truncation of long lines, and whole lines under concurrency.
 * stderr (fd 2) is redirected to a pipe or a pty for the duration of each capture. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* ---------- capturing fd 2 ---------- */

static int saved_fd = -1;
static int read_fd = -1;

static void cap_pipe(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    saved_fd = dup(STDERR_FILENO);
    dup2(p[1], STDERR_FILENO);
    close(p[1]);
    read_fd = p[0];
}

/* a pty: isatty(2) is true, as on an operator's terminal */
static void cap_pty(void)
{
    int master, slave;
    assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
    saved_fd = dup(STDERR_FILENO);
    dup2(slave, STDERR_FILENO);
    close(slave);
    read_fd = master;
}

/* Restore fd 2 and return what was written (malloc'd). */
static char *cap_end(void)
{
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    saved_fd = -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        /* a pty's master does not see EOF reliably: stop when nothing is pending */
        struct pollfd pfd = {.fd = read_fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            break;
        if (n + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = read(read_fd, buf + n, cap - n - 1);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(read_fd);
    read_fd = -1;
    return buf;
}

static int teardown(void **state)
{
    (void)state;
    if (saved_fd >= 0)
        free(cap_end());
    log_close();
    unsetenv("NO_COLOR");
    return 0;
}

static void open_log(log_format f, bool quiet, bool verbose, const char *file)
{
    log_config c = {.format = f, .quiet = quiet, .verbose = verbose, .file = file};
    char err[256];
    assert_true(log_open(&c, err, sizeof err));
}

static bool matches(const char *s, const char *ere)
{
    regex_t re;
    assert_int_equal(regcomp(&re, ere, REG_EXTENDED | REG_NOSUB), 0);
    bool m = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return m;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

#define TS "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

/* ---------- text ---------- */

static void test_text_all_fields(void **state)
{
    (void)state;
    cap_pipe();
    open_log(LOG_TEXT, false, false, NULL);
    log_set_run_id("20261122T030000Z-1a2b3c");
    log_msg(ETL_LOG_INFO, "Load", "orders/2026-11-20", "wh", "loaded %d rows", 1234);
    log_msg(ETL_LOG_ERROR, "Load", NULL, "wh", "failed: %s", "boom");
    char *out = cap_end();
    assert_true(matches(out, "^" TS " INFO  run=20261122T030000Z-1a2b3c state=Load "
                             "key=orders/2026-11-20 conn=wh: loaded 1234 rows\n"));
    assert_true(matches(out, "\n" TS " ERROR run=20261122T030000Z-1a2b3c state=Load "
                             "conn=wh: failed: boom\n$"));
    assert_null(strstr(out, "\033")); /* a pipe is not a terminal: no escapes at all */
    free(out);
}

static void test_text_no_fields(void **state)
{
    (void)state;
    cap_pipe();
    open_log(LOG_TEXT, false, false, NULL);
    log_msg(ETL_LOG_WARN, NULL, "", NULL, "plain %s", "message");
    log_set_run_id("R1");
    log_msg(ETL_LOG_INFO, NULL, NULL, NULL, "with run");
    char *out = cap_end();
    /* absent and empty fields are both left out */
    assert_true(matches(out, "^" TS " WARN  plain message\n" TS " INFO  run=R1: with run\n$"));
    free(out);
}

static void test_text_quoting_and_one_line(void **state)
{
    (void)state;
    cap_pipe();
    open_log(LOG_TEXT, false, false, NULL);
    log_msg(ETL_LOG_INFO, "My State", "a=b", NULL, "line 1\nline 2\033[31m");
    char *out = cap_end();
    assert_true(matches(out, "^" TS " INFO  state=\"My State\" key=\"a=b\": "
                             "line 1\\\\nline 2 \\[31m\n$"));
    assert_int_equal(count(out, "\n"), 1);
    free(out);
}

/* ---------- JSON ---------- */

static json_t *parse_line(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DISABLE_EOF_CHECK, &e);
    if (!v)
        fail_msg("not JSON (%s): %s", e.text, s);
    return v;
}

static void test_json_fields(void **state)
{
    (void)state;
    cap_pipe();
    open_log(LOG_JSON, false, false, NULL);
    log_set_run_id("R7");
    log_msg(ETL_LOG_WARN, "Extract", "k1", "src", "slow: %.1fs", 2.5);
    log_msg(ETL_LOG_INFO, NULL, "", NULL, "bare");
    char *out = cap_end();
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    json_t *a = parse_line(out), *b = parse_line(nl + 1);
    assert_true(matches(json_string_value(json_object_get(a, "time")), "^" TS "$"));
    assert_string_equal(json_string_value(json_object_get(a, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(a, "run_id")), "R7");
    assert_string_equal(json_string_value(json_object_get(a, "state")), "Extract");
    assert_string_equal(json_string_value(json_object_get(a, "key")), "k1");
    assert_string_equal(json_string_value(json_object_get(a, "connection")), "src");
    assert_string_equal(json_string_value(json_object_get(a, "msg")), "slow: 2.5s");
    assert_int_equal(json_object_size(a), 7);
    assert_string_equal(json_string_value(json_object_get(b, "level")), "info");
    assert_null(json_object_get(b, "state"));
    assert_null(json_object_get(b, "key"));
    assert_null(json_object_get(b, "connection"));
    assert_string_equal(json_string_value(json_object_get(b, "msg")), "bare");
    assert_int_equal(count(out, "\n"), 2);
    json_decref(a);
    json_decref(b);
    free(out);
}

static void test_json_escaping(void **state)
{
    (void)state;
    cap_pipe();
    open_log(LOG_JSON, false, false, NULL);
    /* quotes, backslash, newline, a control byte, valid UTF-8 and an invalid byte */
    log_msg(ETL_LOG_ERROR, "S\"q", NULL, NULL, "a\"b\\c\nd\001e h\xc3\xa9 \xff!");
    char *out = cap_end();
    assert_int_equal(count(out, "\n"), 1);
    json_t *v = parse_line(out);
    assert_string_equal(json_string_value(json_object_get(v, "state")), "S\"q");
    assert_string_equal(json_string_value(json_object_get(v, "msg")),
                        "a\"b\\c\nd\001e h\xc3\xa9 \xef\xbf\xbd!");
    json_decref(v);
    free(out);
}

/* ---------- levels ---------- */

static void test_levels(void **state)
{
    (void)state;
    cap_pipe();
    open_log(LOG_TEXT, false, false, NULL);
    assert_true(log_enabled(ETL_LOG_INFO));
    assert_false(log_enabled(ETL_LOG_DEBUG));
    log_msg(ETL_LOG_DEBUG, NULL, NULL, NULL, "d-default");
    log_msg(ETL_LOG_INFO, NULL, NULL, NULL, "i-default");
    open_log(LOG_TEXT, true, false, NULL);
    assert_false(log_enabled(ETL_LOG_WARN));
    assert_true(log_enabled(ETL_LOG_ERROR));
    log_msg(ETL_LOG_INFO, NULL, NULL, NULL, "i-quiet");
    log_msg(ETL_LOG_WARN, NULL, NULL, NULL, "w-quiet");
    log_msg(ETL_LOG_ERROR, NULL, NULL, NULL, "e-quiet");
    open_log(LOG_TEXT, false, true, NULL);
    assert_true(log_enabled(ETL_LOG_DEBUG));
    log_msg(ETL_LOG_DEBUG, NULL, NULL, NULL, "d-verbose");
    char *out = cap_end();
    assert_null(strstr(out, "d-default"));
    assert_non_null(strstr(out, "i-default"));
    assert_null(strstr(out, "i-quiet"));
    assert_null(strstr(out, "w-quiet"));
    assert_non_null(strstr(out, "ERROR e-quiet"));
    assert_non_null(strstr(out, "DEBUG d-verbose"));
    free(out);
}

/* ---------- colour on a terminal ---------- */

static char *log_on_pty(const char *no_color)
{
    if (no_color)
        setenv("NO_COLOR", no_color, 1);
    else
        unsetenv("NO_COLOR");
    cap_pty();
    open_log(LOG_TEXT, false, false, NULL);
    log_msg(ETL_LOG_ERROR, "S", NULL, NULL, "red?");
    log_close();
    return cap_end();
}

static void test_color_and_no_color(void **state)
{
    (void)state;
    char *plain = log_on_pty(NULL), *nc = log_on_pty("1"), *empty = log_on_pty("");
    assert_non_null(strstr(plain, "\033[1;31mERROR\033[0m"));
    assert_non_null(strstr(plain, "red?"));
    /* NO_COLOR: no colour at all (the erase-line before the line is not a colour) */
    assert_non_null(strstr(nc, "ERROR state=S: red?"));
    assert_null(strstr(nc, "\033[1;31m"));
    assert_int_equal(count(nc, "\033["), 1);
    /* no-color.org: an empty value does not count */
    assert_non_null(strstr(empty, "\033[1;31mERROR"));
    free(plain);
    free(nc);
    free(empty);
}

/* ---------- the log file ---------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_log_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "earlier\n", 8), 8); /* appended to, never truncated */
    close(fd);
    unsetenv("NO_COLOR");
    cap_pty();
    open_log(LOG_TEXT, false, false, path);
    log_set_run_id("RF");
    log_msg(ETL_LOG_WARN, "S", "k", NULL, "to both");
    log_msg(ETL_LOG_DEBUG, NULL, NULL, NULL, "filtered");
    log_close();
    char *term = cap_end();
    char *file = slurp(path);
    unlink(path);
    assert_non_null(strstr(term, "\033[33mWARN"));
    assert_true(matches(file, "^earlier\n" TS " WARN  run=RF state=S key=k: to both\n$"));
    assert_null(strstr(file, "\033"));
    free(term);
    free(file);
}

static void test_log_file_unwritable(void **state)
{
    (void)state;
    log_config c = {.format = LOG_TEXT, .file = "/nonexistent-dir/etlrun.log"};
    char err[256] = "";
    assert_false(log_open(&c, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent-dir/etlrun.log"));
}

/* ---------- long lines and threads ---------- */

static void test_long_message_truncated(void **state)
{
    (void)state;
    size_t n = 20000;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    cap_pipe();
    open_log(LOG_JSON, false, false, NULL);
    log_msg(ETL_LOG_INFO, "S", NULL, NULL, "%s", big);
    open_log(LOG_TEXT, false, false, NULL);
    log_msg(ETL_LOG_INFO, "S", NULL, NULL, "%s", big);
    char *out = cap_end();
    free(big);
    assert_int_equal(count(out, "\n"), 2);
    char *nl = strchr(out, '\n');
    assert_true(nl - out < 8192);
    json_t *v = parse_line(out); /* still one valid JSON object */
    const char *msg = json_string_value(json_object_get(v, "msg"));
    assert_true(strlen(msg) > 3000);
    assert_string_equal(msg + strlen(msg) - 3, "...");
    json_decref(v);
    assert_true(strlen(nl + 1) < 8192);
    assert_string_equal(nl + 1 + strlen(nl + 1) - 4, "...\n");
    free(out);
}

typedef struct drain_arg {
    int fd;
    char *buf;
    size_t n, cap;
} drain_arg;

static void *drain(void *arg)
{
    drain_arg *d = arg;
    for (;;) {
        if (d->n + 65536 > d->cap)
            d->buf = realloc(d->buf, d->cap = d->cap * 2 + 65536);
        ssize_t r = read(d->fd, d->buf + d->n, d->cap - d->n - 1);
        if (r <= 0)
            break;
        d->n += (size_t)r;
    }
    d->buf[d->n] = '\0';
    return NULL;
}

#define THREADS 8
#define LINES 400

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char pad[600];
    memset(pad, 'a' + id, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < LINES; i++)
        log_msg(ETL_LOG_INFO, "Par", "key", "conn", "t%d n%d %s end", id, i, pad);
    return NULL;
}

static void test_threads_whole_lines(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    saved_fd = dup(STDERR_FILENO);
    dup2(p[1], STDERR_FILENO);
    close(p[1]);
    drain_arg d = {.fd = p[0]};
    pthread_t rd, w[THREADS];
    pthread_create(&rd, NULL, drain, &d);
    open_log(LOG_TEXT, false, false, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&w[i], NULL, writer, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(w[i], NULL);
    dup2(saved_fd, STDERR_FILENO); /* the last write end closes: the reader sees EOF */
    close(saved_fd);
    saved_fd = -1;
    pthread_join(rd, NULL);
    close(p[0]);

    int seen[THREADS] = {0};
    int lines = 0;
    regex_t re;
    assert_int_equal(regcomp(&re, "^" TS " INFO  state=Par key=key conn=conn: t([0-7]) n([0-9]+) "
                                  "([a-h]+) end$", REG_EXTENDED), 0);
    for (char *line = strtok(d.buf, "\n"); line; line = strtok(NULL, "\n")) {
        regmatch_t m[4];
        if (regexec(&re, line, 4, m, 0) != 0)
            fail_msg("a torn line: %.120s", line);
        int id = line[m[1].rm_so] - '0';
        int seq = atoi(line + m[2].rm_so);
        assert_int_equal(seq, seen[id]); /* each thread's lines in its own order */
        assert_int_equal(m[3].rm_eo - m[3].rm_so, 599);
        assert_int_equal(line[m[3].rm_so], 'a' + id);
        seen[id]++;
        lines++;
    }
    regfree(&re);
    assert_int_equal(lines, THREADS * LINES);
    free(d.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_text_all_fields, teardown),
        cmocka_unit_test_teardown(test_text_no_fields, teardown),
        cmocka_unit_test_teardown(test_text_quoting_and_one_line, teardown),
        cmocka_unit_test_teardown(test_json_fields, teardown),
        cmocka_unit_test_teardown(test_json_escaping, teardown),
        cmocka_unit_test_teardown(test_levels, teardown),
        cmocka_unit_test_teardown(test_color_and_no_color, teardown),
        cmocka_unit_test_teardown(test_log_file, teardown),
        cmocka_unit_test_teardown(test_log_file_unwritable, teardown),
        cmocka_unit_test_teardown(test_long_message_truncated, teardown),
        cmocka_unit_test_teardown(test_threads_whole_lines, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
