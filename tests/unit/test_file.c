/* Tests for the `file` connector (connectors/file): CSV and JSON-lines extraction to
 * staged files, loads written and appended atomically, errors that name the line,
 * cancellation, validate-time Parameters checks, and bounded memory on a big file.
 * Actions are called exactly as the engine calls them: through the connector table,
 * with the host's services table and a task. */
#include <dirent.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "diag.h"
#include "doc.h"
#include "host.h"
#include "plugins.h"
#include "stage.h"
#include "tmp_dir.h"

/* ------------------------------------------------------------ fixture */

typedef struct fx {
    char dir[200];       /* a fresh directory per test */
    char stage[224];     /* DIR/stage: the task's staging directory */
    atomic_int cancel;
    etl_task task;
    etl_error err;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_true(tmp_dir_make(f->dir, sizeof f->dir, "test_file"));
    snprintf(f->stage, sizeof f->stage, "%s/stage", f->dir);
    host_task_init(&f->task, "Extract", "", "", f->stage, 1, &f->cancel);
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

static char *path_in(fx *f, const char *name)
{
    static char buf[4][512];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 512, "%s/%s", f->dir, name);
    return p;
}

static void write_bytes(const char *path, const char *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

/* The whole file, NUL-terminated (caller frees); NULL when it does not exist. */
static char *slurp(const char *path, size_t *out_len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    b[n] = '\0';
    fclose(fp);
    if (out_len)
        *out_len = (size_t)n;
    return b;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* True when dir holds a name containing needle. */
static bool dir_has(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, needle))
            found = true;
    closedir(d);
    return found;
}

static const etl_action *action(const char *name)
{
    const etl_connector *c = etl_builtin_file();
    for (const etl_action *a = c->actions; a->name; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    fail_msg("no action %s", name);
    return NULL;
}

/* Run file.<name> with Parameters given as JSON text (printf-style). */
static etl_status run(fx *f, const char *name, json_t **out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static etl_status run(fx *f, const char *name, json_t **out, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_error_t je;
    json_t *params = json_loads(text, 0, &je);
    if (!params)
        fail_msg("bad test params %s: %s", text, je.text);
    etl_error_clear(&f->err);
    etl_json *res = NULL;
    etl_status st = action(name)->run(host_services(), &f->task, NULL, host_wrap(params), &res,
                                      &f->err);
    host_task_done(&f->task);
    json_decref(params);
    if (out)
        *out = host_json(res);
    else
        json_decref(host_json(res));
    if (st == ETL_OK)
        assert_non_null(res);
    else
        assert_null(res);
    return st;
}

/* Extract, expecting success: the manifest (caller frees). */
static json_t *extract_ok(fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *extract_ok(fx *f, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_t *m = NULL;
    etl_status st = run(f, "extract", &m, "%s", text);
    if (st != ETL_OK)
        fail_msg("extract failed: %s: %s", f->err.name, f->err.cause);
    return m;
}

/* The rows of a staged file as JSON: [[field or null, ...], ...], read with the
 * engine's verifying reader. The header is checked against want_cols (JSON text). */
static json_t *staged_rows(const json_t *manifest, const char *want_cols)
{
    const char *file = json_string_value(json_object_get(manifest, "file"));
    assert_non_null(file);
    etl_error err = {0};
    stage_reader *r = stage_reader_open(file, &err);
    if (!r)
        fail_msg("%s: %s", err.name, err.cause);
    json_t *cols = json_array();
    json_t *mcols = json_object_get(stage_reader_manifest(r), "columns");
    for (size_t i = 0; i < json_array_size(mcols); i++)
        json_array_append(cols, json_object_get(json_array_get(mcols, i), "name"));
    json_t *want = json_loads(want_cols, 0, NULL);
    assert_non_null(want);
    if (!json_equal(cols, want)) {
        char *got = json_dumps(cols, JSON_COMPACT);
        fail_msg("columns %s, expected %s", got, want_cols);
    }
    json_decref(want);
    json_decref(cols);
    json_t *rows = json_array();
    const char *const *fl;
    const size_t *ln;
    size_t n;
    int rc;
    while ((rc = stage_reader_row(r, &fl, &ln, &n, &err)) > 0) {
        json_t *row = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(row, fl[i] ? json_stringn(fl[i], ln[i]) : json_null());
        json_array_append_new(rows, row);
    }
    if (rc < 0)
        fail_msg("%s: %s", err.name, err.cause);
    stage_reader_close(r);
    return rows;
}

static void expect_rows(const json_t *manifest, const char *cols, const char *rows_text)
{
    json_t *rows = staged_rows(manifest, cols);
    json_t *want = json_loads(rows_text, 0, NULL);
    assert_non_null(want);
    if (!json_equal(rows, want)) {
        char *got = json_dumps(rows, JSON_COMPACT);
        fail_msg("rows %s\nexpected %s", got, rows_text);
    }
    assert_int_equal(json_integer_value(json_object_get(manifest, "rows")),
                     json_array_size(want));
    json_decref(want);
    json_decref(rows);
}

static void expect_error(fx *f, etl_status st, etl_status want_st, const char *name,
                         const char *needle)
{
    assert_int_equal(st, want_st);
    assert_string_equal(f->err.name, name);
    if (!strstr(f->err.cause, needle))
        fail_msg("cause '%s' lacks '%s'", f->err.cause, needle);
}

/* ------------------------------------------------------------ CSV sources */

static void test_csv_quotes_newlines_crlf(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "a.csv"),
               "id,name,note\r\n"
               "1,\"Smith, J\",\"said \"\"hi\"\"\"\r\n"
               "2,\"two\r\nlines\",plain\r\n"
               "3,,\" padded \"\r\n");
    json_t *m = extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "a.csv"));
    expect_rows(m, "[\"id\",\"name\",\"note\"]",
                "[[\"1\",\"Smith, J\",\"said \\\"hi\\\"\"],"
                " [\"2\",\"two\\r\\nlines\",\"plain\"],"
                " [\"3\",\"\",\" padded \"]]");
    /* progress reached the task */
    assert_int_equal(atomic_load(&f->task.rows), 3);
    json_decref(m);
}

static void test_csv_semicolon_and_no_quote(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "semi.txt"), "a;b\n\"x;y\";1,5\n");
    json_t *m = extract_ok(f, "{\"path\": \"%s\", \"format\": \"csv\", \"delimiter\": \";\"}",
                           path_in(f, "semi.txt"));
    expect_rows(m, "[\"a\",\"b\"]", "[[\"x;y\",\"1,5\"]]");
    json_decref(m);

    /* quote "": quotes are data, records are lines */
    write_text(path_in(f, "raw.csv"), "a|b\r\n\"q|\"x\"\n|\nlast|row");
    m = extract_ok(f, "{\"path\": \"%s\", \"delimiter\": \"|\", \"quote\": \"\"}",
                   path_in(f, "raw.csv"));
    expect_rows(m, "[\"a\",\"b\"]",
                "[[\"\\\"q\",\"\\\"x\\\"\"],[\"\",\"\"],[\"last\",\"row\"]]");
    json_decref(m);
    /* ...with empty_is_null, and a record of the wrong width names its line */
    m = extract_ok(f, "{\"path\": \"%s\", \"delimiter\": \"|\", \"quote\": \"\", "
                      "\"empty_is_null\": true}", path_in(f, "raw.csv"));
    expect_rows(m, "[\"a\",\"b\"]",
                "[[\"\\\"q\",\"\\\"x\\\"\"],[null,null],[\"last\",\"row\"]]");
    write_text(path_in(f, "raw2.csv"), "a|b\n1|2\n1|2|3\n");
    etl_status st = run(f, "extract", NULL, "{\"path\": \"%s\", \"delimiter\": \"|\", "
                        "\"quote\": \"\"}", path_in(f, "raw2.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "raw2.csv:3: the record has 3 fields");
    json_decref(m);
}

static void test_csv_null_vs_empty(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "n.csv"), "a,b,c\n,\"\",x\n");
    /* default: an empty field is the empty string, quoted or not */
    json_t *m = extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "n.csv"));
    expect_rows(m, "[\"a\",\"b\",\"c\"]", "[[\"\",\"\",\"x\"]]");
    json_decref(m);
    /* empty_is_null: the unquoted empty field is NULL, "" stays the empty string */
    m = extract_ok(f, "{\"path\": \"%s\", \"empty_is_null\": true}", path_in(f, "n.csv"));
    expect_rows(m, "[\"a\",\"b\",\"c\"]", "[[null,\"\",\"x\"]]");
    json_decref(m);
}

static void test_csv_header_vs_columns(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "h.csv"), "p,q\n1,2\n");
    /* columns alone: no header, the first record is data */
    json_t *m = extract_ok(f, "{\"path\": \"%s\", \"columns\": [\"x\", \"y\"]}",
                           path_in(f, "h.csv"));
    expect_rows(m, "[\"x\",\"y\"]", "[[\"p\",\"q\"],[\"1\",\"2\"]]");
    json_decref(m);
    /* columns and header: true: the header is skipped, the columns renamed */
    m = extract_ok(f, "{\"path\": \"%s\", \"columns\": [\"x\", \"y\"], \"header\": true}",
                   path_in(f, "h.csv"));
    expect_rows(m, "[\"x\",\"y\"]", "[[\"1\",\"2\"]]");
    json_decref(m);
    /* a header of another width than columns */
    etl_status st = run(f, "extract", NULL,
                        "{\"path\": \"%s\", \"columns\": [\"x\"], \"header\": true}",
                        path_in(f, "h.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "h.csv:1: the header has 2 fields");
    /* a header with a duplicate name */
    write_text(path_in(f, "dup.csv"), "a,b,a\n1,2,3\n");
    st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "dup.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "columns 1 and 3 are both named 'a'");
}

static void test_csv_bom_and_blank_lines(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "bom.csv"), "\xEF\xBB\xBFid,v\n1,a\n\n2,b\n\n");
    json_t *m = extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "bom.csv"));
    expect_rows(m, "[\"id\",\"v\"]", "[[\"1\",\"a\"],[\"2\",\"b\"]]");
    json_decref(m);
    /* one column: a blank line is a value, not nothing */
    write_text(path_in(f, "one.csv"), "v\nx\n\ny\n");
    m = extract_ok(f, "{\"path\": \"%s\", \"empty_is_null\": true}", path_in(f, "one.csv"));
    expect_rows(m, "[\"v\"]", "[[\"x\"],[null],[\"y\"]]");
    json_decref(m);
}

static void test_csv_malformed_names_line(void **state)
{
    fx *f = *state;
    /* an unterminated quote: the record starts on line 3 */
    write_text(path_in(f, "q.csv"), "a,b\n1,2\n3,\"open\n4,5\n");
    etl_status st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "q.csv"));
    assert_int_equal(st, ETL_EINVAL);
    assert_string_equal(f->err.name, "Etl.InvalidInput");
    if (!strstr(f->err.cause, "q.csv:3"))
        fail_msg("cause lacks the line: %s", f->err.cause);
    /* the partial staged file is gone */
    assert_false(dir_has(f->stage, ".csv"));

    /* a record of the wrong width */
    write_text(path_in(f, "w.csv"), "a,b\n1,2\n3,4\n5,6,7\n");
    st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "w.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput",
                 "w.csv:4: the record has 3 fields, expected 2");
    assert_false(dir_has(f->stage, ".csv"));

    /* text after a closing quote */
    write_text(path_in(f, "t.csv"), "a\n\"x\"y\n");
    st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "t.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "t.csv:2");
}

static void test_csv_invalid_utf8(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "l1.csv"), "name\nok\nM\xFCller\n");
    etl_status st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "l1.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput",
                 "l1.csv:3: column 'name' is not valid UTF-8 (byte 0xfc at offset 1)");
    /* overlong forms and surrogates are not UTF-8 either */
    write_text(path_in(f, "l2.csv"), "name\n\xC0\xAF\n");
    st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "l2.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "l2.csv:2");
    write_text(path_in(f, "l3.csv"), "name\n\xED\xA0\x80\n");
    st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "l3.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "l3.csv:2");
    /* while real multi-byte text passes */
    write_text(path_in(f, "ok.csv"), "name\nM\xC3\xBCller \xF0\x9F\x98\x80\n");
    json_t *m = extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "ok.csv"));
    expect_rows(m, "[\"name\"]", "[[\"M\xC3\xBCller \xF0\x9F\x98\x80\"]]");
    json_decref(m);
}

static void test_file_errors(void **state)
{
    fx *f = *state;
    etl_status st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "missing.csv"));
    expect_error(f, st, ETL_EIO, "Etl.FileFailed", "No such file or directory");
    assert_non_null(strstr(f->err.cause, "missing.csv"));
    assert_false(f->err.transient);
    st = run(f, "extract", NULL, "{\"path\": \"%s\", \"format\": \"csv\"}", f->dir);
    expect_error(f, st, ETL_EIO, "Etl.FileFailed", "is a directory");
    /* an empty file has no header to name the columns */
    write_text(path_in(f, "empty.csv"), "");
    st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "empty.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "is empty");
    /* ...but with columns it is zero rows */
    json_t *m = extract_ok(f, "{\"path\": \"%s\", \"columns\": [\"a\"]}", path_in(f, "empty.csv"));
    expect_rows(m, "[\"a\"]", "[]");
    json_decref(m);
    /* a parameter known only at run time is checked at run time */
    st = run(f, "extract", NULL, "{\"path\": \"%s\", \"delimiter\": \"ab\"}",
             path_in(f, "empty.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "'delimiter'");
}

/* ------------------------------------------------------------ JSON lines */

static void test_jsonl_nested_and_missing(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "d.jsonl"),
               "{\"id\": 1, \"name\": \"a\", \"tags\": [\"x\", {\"y\": 2}], \"ok\": true, \"score\": 2.50}\n"
               "\n"
               "{\"id\": 9223372036854775807, \"name\": null, \"ok\": false, \"score\": 1e3, "
               "\"extra\": 1}\r\n"
               "{\"name\": \"line\\nbreak\", \"tags\": {}, \"score\": -0.1}");
    json_t *m = extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "d.jsonl"));
    /* columns: the first object's keys; missing keys and null are NULL; extra keys
     * are not columns */
    expect_rows(m, "[\"id\",\"name\",\"tags\",\"ok\",\"score\"]",
                "[[\"1\",\"a\",\"[\\\"x\\\",{\\\"y\\\":2}]\",\"true\",\"2.5\"],"
                " [\"9223372036854775807\",null,null,\"false\",\"1000.0\"],"
                " [null,\"line\\nbreak\",\"{}\",null,\"-0.1\"]]");
    json_decref(m);
}

static void test_jsonl_column_paths(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "p.ndjson"),
               "{\"id\": \"u1\", \"address\": {\"city\": \"Oslo\"}}\n"
               "{\"id\": \"u2\"}\n");
    json_t *m = extract_ok(f, "{\"path\": \"%s\", \"columns\": {\"id\": \"$.id\", "
                              "\"city\": \"$.address.city\"}}", path_in(f, "p.ndjson"));
    expect_rows(m, "[\"id\",\"city\"]", "[[\"u1\",\"Oslo\"],[\"u2\",null]]");
    json_decref(m);
    /* a list of names picks and orders keys */
    m = extract_ok(f, "{\"path\": \"%s\", \"columns\": [\"address\", \"id\"]}",
                   path_in(f, "p.ndjson"));
    expect_rows(m, "[\"address\",\"id\"]", "[[\"{\\\"city\\\":\\\"Oslo\\\"}\",\"u1\"],[null,\"u2\"]]");
    json_decref(m);
}

static void test_jsonl_bad_line(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "bad.jsonl"), "{\"a\": 1}\n{\"a\": 2}\n{\"a\": 3,}\n{\"a\": 4}\n");
    etl_status st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "bad.jsonl"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "bad.jsonl:3: invalid JSON");
    assert_false(dir_has(f->stage, ".csv"));
    write_text(path_in(f, "arr.jsonl"), "{\"a\": 1}\n[1, 2]\n");
    st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "arr.jsonl"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput",
                 "arr.jsonl:2: expected a JSON object, found an array");
    /* invalid UTF-8 inside a JSON string is invalid JSON, with its line */
    write_text(path_in(f, "u.jsonl"), "{\"a\": \"x\"}\n{\"a\": \"\xFF\"}\n");
    st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "u.jsonl"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "u.jsonl:2:");
}

/* Lines longer than the read buffer, and lines that straddle its edge, in both line
 * readers (JSON lines, and CSV without quoting); CRLF on every other line; no final
 * newline. */
static size_t long_len(int i) { return (size_t)(i * 7919) % 150000; }

static void test_long_lines_across_buffers(void **state)
{
    fx *f = *state;
    enum { N = 200 };
    char *big = malloc(150000);
    assert_non_null(big);
    memset(big, 'v', 150000);
    FILE *js = fopen(path_in(f, "long.jsonl"), "w");
    FILE *cs = fopen(path_in(f, "long.csv"), "w");
    assert_non_null(js);
    assert_non_null(cs);
    fputs("i;v\n", cs);
    for (int i = 0; i < N; i++) {
        const char *eol = i == N - 1 ? "" : i % 2 ? "\r\n" : "\n";
        fprintf(js, "{\"i\": %d, \"v\": \"%.*s\"}%s", i, (int)long_len(i), big, eol);
        fprintf(cs, "%d;%.*s%s", i, (int)long_len(i), big, eol);
    }
    fclose(js);
    fclose(cs);
    free(big);
    for (int k = 0; k < 2; k++) {
        json_t *m = k ? extract_ok(f, "{\"path\": \"%s\", \"delimiter\": \";\", \"quote\": \"\"}",
                                   path_in(f, "long.csv"))
                      : extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "long.jsonl"));
        json_t *rows = staged_rows(m, "[\"i\",\"v\"]");
        assert_int_equal(json_array_size(rows), N);
        for (int i = 0; i < N; i++) {
            json_t *row = json_array_get(rows, (size_t)i);
            char want[16];
            snprintf(want, sizeof want, "%d", i);
            assert_string_equal(json_string_value(json_array_get(row, 0)), want);
            const char *v = json_string_value(json_array_get(row, 1));
            assert_int_equal(strlen(v), long_len(i));
            assert_true(strspn(v, "v") == long_len(i));
        }
        json_decref(rows);
        json_decref(m);
    }
}

/* ------------------------------------------------------------ loads */

static json_t *load_ok(fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *load_ok(fx *f, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_t *res = NULL;
    if (run(f, "load", &res, "%s", text) != ETL_OK)
        fail_msg("load failed: %s: %s", f->err.name, f->err.cause);
    return res;
}

static void test_roundtrip_csv_byte_exact(void **state)
{
    fx *f = *state;
    /* written the way the loader writes: minimal quoting, NULL unquoted, "" quoted */
    static const char src[] = "id,text,maybe\n"
                              "1,plain,\n"
                              "2,\"with, comma\",\"\"\n"
                              "3,\"quote \"\" inside\",x\n"
                              "4,\"multi\nline\",\" lead\"\n"
                              "5,\xC3\xA9t\xC3\xA9,\"trail \"\n";
    write_text(path_in(f, "src.csv"), src);
    json_t *m = extract_ok(f, "{\"path\": \"%s\", \"empty_is_null\": true}", path_in(f, "src.csv"));
    json_t *res = load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\"}",
                          json_string_value(json_object_get(m, "file")), path_in(f, "out.csv"));
    size_t n;
    char *out = slurp(path_in(f, "out.csv"), &n);
    assert_non_null(out);
    assert_int_equal(n, sizeof src - 1);
    assert_memory_equal(out, src, n);
    assert_int_equal(json_integer_value(json_object_get(res, "rows")), 5);
    assert_int_equal(json_integer_value(json_object_get(res, "bytes")), n);
    assert_string_equal(json_string_value(json_object_get(res, "path")), path_in(f, "out.csv"));
    free(out);
    json_decref(res);
    json_decref(m);
}

static void test_roundtrip_jsonl_byte_exact(void **state)
{
    fx *f = *state;
    /* string and null values, keys in column order: what the loader writes */
    static const char src[] = "{\"id\":\"1\",\"name\":\"a \\\"b\\\"\",\"note\":null}\n"
                              "{\"id\":\"2\",\"name\":\"tab\\there\\nnl\",\"note\":\"\"}\n"
                              "{\"id\":\"3\",\"name\":\"\xE2\x82\xAC\",\"note\":\"x\"}\n";
    write_text(path_in(f, "src.jsonl"), src);
    json_t *m = extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "src.jsonl"));
    json_t *res = load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\", \"format\": \"jsonl\"}",
                          json_string_value(json_object_get(m, "file")), path_in(f, "out.txt"));
    size_t n;
    char *out = slurp(path_in(f, "out.txt"), &n);
    assert_non_null(out);
    assert_int_equal(n, sizeof src - 1);
    assert_memory_equal(out, src, n);
    free(out);
    json_decref(res);
    /* the format follows the target's name when not given */
    res = load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\"}",
                  json_string_value(json_object_get(m, "file")), path_in(f, "out.jsonl"));
    out = slurp(path_in(f, "out.jsonl"), &n);
    assert_string_equal(out, src);
    free(out);
    json_decref(res);
    json_decref(m);
}

static void test_load_append_twice(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "a.csv"), "k,v\n1,one\n2,\"t,wo\"\n");
    json_t *m = extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "a.csv"));
    const char *staged = json_string_value(json_object_get(m, "file"));
    const char *target = path_in(f, "all.csv");
    /* first append: the target does not exist, so it gets the header */
    json_t *res = load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\", \"mode\": \"append\"}", staged,
                          target);
    assert_int_equal(json_integer_value(json_object_get(res, "rows")), 2);
    json_decref(res);
    res = load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\", \"mode\": \"append\"}", staged, target);
    /* bytes: what this run added, the copied old content excluded */
    assert_int_equal(json_integer_value(json_object_get(res, "bytes")),
                     strlen("1,one\n2,\"t,wo\"\n"));
    json_decref(res);
    char *out = slurp(target, NULL);
    assert_string_equal(out, "k,v\n1,one\n2,\"t,wo\"\n1,one\n2,\"t,wo\"\n");
    free(out);
    assert_int_equal(count_entries(f->dir), 3); /* a.csv, all.csv, stage */

    /* a target whose last line has no newline gets one before the new records */
    write_text(path_in(f, "nonl.csv"), "k,v\n0,zero");
    json_decref(load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\", \"mode\": \"append\"}", staged,
                        path_in(f, "nonl.csv")));
    out = slurp(path_in(f, "nonl.csv"), NULL);
    assert_string_equal(out, "k,v\n0,zero\n1,one\n2,\"t,wo\"\n");
    free(out);

    /* a target with another header is refused and left alone */
    write_text(path_in(f, "other.csv"), "x,y\n9,9\n");
    etl_status st = run(f, "load", NULL, "{\"file\": \"%s\", \"path\": \"%s\", \"mode\": \"append\"}",
                        staged, path_in(f, "other.csv"));
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "is not the header k,v");
    out = slurp(path_in(f, "other.csv"), NULL);
    assert_string_equal(out, "x,y\n9,9\n");
    free(out);

    /* jsonl append: no header, just more lines */
    json_decref(load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\", \"mode\": \"append\"}", staged,
                        path_in(f, "all.jsonl")));
    json_decref(load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\", \"mode\": \"append\"}", staged,
                        path_in(f, "all.jsonl")));
    out = slurp(path_in(f, "all.jsonl"), NULL);
    assert_string_equal(out, "{\"k\":\"1\",\"v\":\"one\"}\n{\"k\":\"2\",\"v\":\"t,wo\"}\n"
                             "{\"k\":\"1\",\"v\":\"one\"}\n{\"k\":\"2\",\"v\":\"t,wo\"}\n");
    free(out);
    json_decref(m);
}

static void test_load_write_atomic(void **state)
{
    fx *f = *state;
    char *sub = path_in(f, "out");
    assert_int_equal(mkdir(sub, 0755), 0);
    char target[300];
    snprintf(target, sizeof target, "%s/t.csv", sub);
    write_text(target, "old,content\n");
    assert_int_equal(chmod(target, 0640), 0);

    write_text(path_in(f, "s.csv"), "a,b\n1,2\n3,4\n");
    json_t *m = extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "s.csv"));
    json_t *res = load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\"}",
                          json_string_value(json_object_get(m, "file")), target);
    char *out = slurp(target, NULL);
    assert_string_equal(out, "a,b\n1,2\n3,4\n");
    free(out);
    /* only the target is left in its directory, with its permissions kept */
    assert_int_equal(count_entries(sub), 1);
    struct stat st;
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    json_decref(res);

    /* a directory as the target is refused without touching anything */
    etl_status rc = run(f, "load", NULL, "{\"file\": \"%s\", \"path\": \"%s\"}",
                        json_string_value(json_object_get(m, "file")), sub);
    expect_error(f, rc, ETL_EIO, "Etl.FileFailed", "is a directory");
    assert_int_equal(count_entries(sub), 1);
    /* missing directories are created */
    snprintf(target, sizeof target, "%s/new/deeper/x.csv", f->dir);
    json_decref(load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\"}",
                        json_string_value(json_object_get(m, "file")), target));
    char *out2 = slurp(target, NULL);
    assert_string_equal(out2, "a,b\n1,2\n3,4\n");
    free(out2);
    /* ...but a file in the way is FileFailed naming it */
    snprintf(target, sizeof target, "%s/s.csv/x.csv", f->dir);
    rc = run(f, "load", NULL, "{\"file\": \"%s\", \"path\": \"%s\"}",
             json_string_value(json_object_get(m, "file")), target);
    expect_error(f, rc, ETL_EIO, "Etl.FileFailed", "s.csv': Not a directory");
    json_decref(m);
}

static void test_load_failure_leaves_target(void **state)
{
    fx *f = *state;
    const char *target = path_in(f, "keep.jsonl");
    write_text(target, "{\"previous\":\"content\"}\n");

    /* a staged file whose bytes no longer match its manifest */
    write_text(path_in(f, "s.csv"), "a\nx\ny\n");
    json_t *m = extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "s.csv"));
    const char *staged = json_string_value(json_object_get(m, "file"));
    size_t n;
    char *data = slurp(staged, &n);
    data[n - 2] = 'z';
    write_bytes(staged, data, n);
    free(data);
    etl_status st = run(f, "load", NULL, "{\"file\": \"%s\", \"path\": \"%s\"}", staged, target);
    assert_int_not_equal(st, ETL_OK);
    assert_string_equal(f->err.name, "Etl.IntegrityError");
    json_decref(m);

    /* a failure after rows were written: the second row cannot be a JSON string */
    etl_error err = {0};
    etl_column cols[] = {{"a", NULL}};
    const etl_host *h = host_services();
    etl_stage_writer *w = h->stage_open(&f->task, cols, 1, "bin", &err);
    assert_non_null(w);
    for (int i = 0; i < 3; i++) {
        const char *fld[] = {i == 1 ? "\xFF\xFE" : "ok"};
        size_t len[] = {2};
        assert_int_equal(h->stage_row(w, fld, len, &err), ETL_OK);
    }
    etl_json *man = NULL;
    assert_int_equal(h->stage_finish(w, &man, &err), ETL_OK);
    const char *bin = json_string_value(json_object_get(host_json(man), "file"));
    st = run(f, "load", NULL, "{\"file\": \"%s\", \"path\": \"%s\"}", bin, target);
    expect_error(f, st, ETL_EINVAL, "Etl.InvalidInput", "row 2, column 'a' is not UTF-8");

    char *out = slurp(target, NULL);
    assert_string_equal(out, "{\"previous\":\"content\"}\n");
    free(out);
    assert_false(dir_has(f->dir, ".tmp-"));
    /* as csv the bytes pass through untouched */
    json_decref(load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\"}", bin, path_in(f, "bin.csv")));
    out = slurp(path_in(f, "bin.csv"), NULL);
    assert_string_equal(out, "a\nok\n\xFF\xFE\nok\n");
    free(out);
    h->json_decref(man);
}

static void test_cancel_before_start(void **state)
{
    fx *f = *state;
    write_text(path_in(f, "c.csv"), "a\n1\n");
    atomic_store(&f->cancel, 1);
    etl_status st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "c.csv"));
    expect_error(f, st, ETL_ECANCELLED, "States.Cancelled", "c.csv");
    assert_int_equal(count_entries(f->stage), 0);
    st = run(f, "load", NULL, "{\"file\": \"%s\", \"path\": \"%s\"}", path_in(f, "none.csv"),
             path_in(f, "t.csv"));
    expect_error(f, st, ETL_ECANCELLED, "States.Cancelled", "t.csv");
    assert_null(slurp(path_in(f, "t.csv"), NULL));
}

/* Cancellation is noticed within 10,000 rows, and leaves nothing behind. */
static void *cancel_later(void *arg)
{
    fx *f = arg;
    while (atomic_load(&f->task.rows) < 10000)
        usleep(100);
    host_task_cancel(&f->task);
    return NULL;
}

static void test_cancel_midway(void **state)
{
    fx *f = *state;
    FILE *fp = fopen(path_in(f, "big.csv"), "w");
    assert_non_null(fp);
    fputs("n,t\n", fp);
    for (int i = 0; i < 400000; i++)
        fprintf(fp, "%d,row\n", i);
    fclose(fp);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_later, f), 0);
    etl_status st = run(f, "extract", NULL, "{\"path\": \"%s\"}", path_in(f, "big.csv"));
    pthread_join(th, NULL);
    expect_error(f, st, ETL_ECANCELLED, "States.Cancelled", "cancelled after");
    assert_true(atomic_load(&f->task.rows) < 400000);
    assert_int_equal(count_entries(f->stage), 0);
}

/* Peak resident memory, in KiB, since the last reset_peak(). */
static long peak_kib(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmHWM: %ld", &v) == 1)
            break;
    if (fp)
        fclose(fp);
    return v;
}

static long rss_kib(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    if (fp)
        fclose(fp);
    return v;
}

static bool reset_peak(void)
{
    FILE *fp = fopen("/proc/self/clear_refs", "w");
    if (!fp)
        return false;
    bool ok = fputs("5", fp) >= 0;
    return fclose(fp) == 0 && ok;
}

static void test_100k_rows_bounded_memory(void **state)
{
    fx *f = *state;
    char pad[301];
    memset(pad, 'x', 300);
    pad[300] = '\0';
    FILE *fp = fopen(path_in(f, "big.csv"), "w");
    assert_non_null(fp);
    fputs("id,text,pad\n", fp);
    for (int i = 0; i < 100000; i++)
        fprintf(fp, "%d,\"row, %d\",%s\n", i, i, pad);
    assert_int_equal(fclose(fp), 0);
    struct stat sst;
    assert_int_equal(stat(path_in(f, "big.csv"), &sst), 0);
    assert_true(sst.st_size > 30 << 20);

    if (!reset_peak())
        skip();
    long before = rss_kib();
    json_t *m = extract_ok(f, "{\"path\": \"%s\"}", path_in(f, "big.csv"));
    json_t *res = load_ok(f, "{\"file\": \"%s\", \"path\": \"%s\"}",
                          json_string_value(json_object_get(m, "file")), path_in(f, "copy.csv"));
    long grown = peak_kib() - before;
    /* the file is 30+ MiB; a streaming extract and load stay far below that */
    if (grown > 12 * 1024)
        fail_msg("peak RSS grew by %ld KiB for a %lld-byte file", grown, (long long)sst.st_size);
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), 100000);
    assert_int_equal(atomic_load(&f->task.rows), 200000); /* extract + load progress */
    assert_int_equal(json_integer_value(json_object_get(res, "bytes")), sst.st_size);
    struct stat cst;
    assert_int_equal(stat(path_in(f, "copy.csv"), &cst), 0);
    assert_int_equal(cst.st_size, sst.st_size);
    json_decref(res);
    json_decref(m);
}

/* ------------------------------------------------------------ validate-time checks */

/* Run the action's check on Parameters written as YAML; returns the messages joined
 * by "\n" (caller frees), "" when the check passed. */
static char *run_check(const char *name, const char *yaml)
{
    diag *d = diag_new("p.yaml");
    doc *dc = doc_load_string(yaml, strlen(yaml), "p.yaml", false, d);
    assert_non_null(dc);
    etl_checker chk = {.d = d, .node = dc->root, .what = "Parameters of state 'S'"};
    bool ok = action(name)->check(host_services(), host_wrap(dc->root->json), &chk);
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

static void want_check(const char *name, const char *yaml, const char *needle)
{
    char *msgs = run_check(name, yaml);
    if (!needle[0] ? msgs[0] != '\0' : !strstr(msgs, needle))
        fail_msg("check of\n%s\ngave\n%s\nexpected '%s'", yaml, msgs, needle);
    free(msgs);
}

static void test_check_parameters(void **state)
{
    (void)state;
    /* good ones, literal and templated */
    want_check("extract", "path: in.csv\n", "");
    want_check("extract", "path.$: $.file\nformat: jsonl\ncolumns: {a: $.x.y}\n", "");
    want_check("extract", "path: in.txt\nformat: CSV\ndelimiter: \"\\t\"\nquote: \"\"\n"
                            "header: false\ncolumns: [a, b]\nencoding: UTF-8\n", "");
    want_check("load", "file.$: $.extract.file\npath: out.jsonl\nmode: append\n", "");
    want_check("load", "file: s.csv\npath: out.csv\nkey.$: $.day\n", "");
    /* each problem at its field's line */
    want_check("extract", "format: csv\n", "p.yaml:1:1: Parameters of state 'S': 'path': "
                                             "file.extract needs 'path' (or 'path.$')");
    want_check("extract", "path: a.csv\ndelim: \";\"\n",
                 "p.yaml:2:8: Parameters of state 'S': 'delim': unknown parameter");
    want_check("extract", "path: a.csv\ndelimiter: \";;\"\n", "p.yaml:2:12:");
    want_check("extract", "path: a.csv\nquote: 5\n", "'quote': must be a string of one");
    want_check("extract", "path: a.csv\nformat: xml\n", "'xml' is not one of csv, jsonl");
    want_check("extract", "path: a.csv\nheader: \"no\"\n", "must be true or false");
    want_check("extract", "path: a.csv\nheader: false\n", "header: false needs columns");
    want_check("extract", "path: a.csv\nencoding: latin1\n", "only utf-8 files are read");
    want_check("extract", "path: a.xlsx\n", "cannot tell the format of 'a.xlsx'");
    want_check("extract", "path: a.csv\ncolumns: {a: $.a}\n", "the column -> JSONPath form is "
                                                                "for jsonl");
    want_check("extract", "path: a.jsonl\ncolumns: {a: \"$..[\"}\n", "bad JSONPath");
    want_check("extract", "path: a.jsonl\ncolumns: [a, a]\n", "column 'a' is listed twice");
    want_check("extract", "path: a.jsonl\ndelimiter: \";\"\n", "applies to csv files only");
    want_check("extract", "path: a.csv\nquote: \";\"\ndelimiter: \";\"\n", "must differ");
    want_check("load", "path: out.csv\nmode: replace\n", "needs 'file'");
    want_check("load", "file: s.csv\npath: out.csv\nmode: replace\n",
                 "'replace' is not one of write, append");
    want_check("load", "file: s.csv\npath: \"\"\n", "'path': must not be empty");
    want_check("load", "- 1\n", "Parameters must be an object");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_csv_quotes_newlines_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_semicolon_and_no_quote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_null_vs_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_header_vs_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_bom_and_blank_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_malformed_names_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jsonl_nested_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jsonl_column_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jsonl_bad_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_lines_across_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_csv_byte_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_jsonl_byte_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_append_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_write_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_failure_leaves_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_before_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_midway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_100k_rows_bounded_memory, setup, teardown),
        cmocka_unit_test(test_check_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
