/* Tests for staged files (engine/stage.c, engine/csv.c, engine/crc32c.c): CRC-32C, byte-exact
 * round trips of awkward values, the manifest, atomicity, disk-full handling, the reader's
 * integrity checks, CSV dialects and malformed input, buffer boundaries, constant memory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "stage.h"
#include "tmp_dir.h"

/* The portable CRC-32C path, compiled in here under another name so that it is checked
 * against the reference even on CPUs where stage_crc32c uses SSE4.2. */
#ifndef STAGE_CRC32C_PORTABLE
#define STAGE_CRC32C_PORTABLE
#endif
#define stage_crc32c portable_crc32c
uint32_t portable_crc32c(uint32_t crc, const void *buf, size_t len);
#include "crc32c.c"
#undef stage_crc32c

/* ------------------------------------------------------------ helpers */

/* Bitwise CRC-32C straight from the definition: the reference for the table and
 * SSE4.2 code. */
static uint32_t ref_crc(const void *buf, size_t n)
{
    const unsigned char *p = buf;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
    }
    return ~c;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    /* xorshift64*: a fixed seed gives the same cases on every machine */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static char *make_dir(void)
{
    char *t = malloc(PATH_MAX);
    assert_non_null(t);
    assert_true(tmp_dir_make(t, PATH_MAX, "test_stage"));
    return t;
}

static void remove_dir(char *dir)
{
    tmp_dir_remove(dir);
    free(dir);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static char *join(const char *a, const char *b)
{
    char *s;
    assert_true(asprintf(&s, "%s/%s", a, b) > 0);
    return s;
}

static char *read_file(const char *path, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *out_len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A staged file written by hand: data plus a manifest with the true size and CRC. */
static char *write_raw_staged(const char *dir, const char *name, const char *data,
                              size_t len, const char *columns_json, long long rows)
{
    char *path = join(dir, name);
    write_file(path, data, len);
    char *mpath, *m;
    assert_true(asprintf(&mpath, "%s.manifest.json", path) > 0);
    assert_true(asprintf(&m,
                         "{\"format\":\"etlrun-csv-1\",\"file\":\"%s\",\"columns\":%s,"
                         "\"rows\":%lld,\"bytes\":%zu,\"crc32c\":\"%08x\"}",
                         name, columns_json, rows, len, ref_crc(data, len)) > 0);
    write_file(mpath, m, strlen(m));
    free(m);
    free(mpath);
    return path;
}

/* A value of a round trip: bytes (may contain NUL) or SQL NULL. */
typedef struct val {
    const char *p;
    size_t n;
} val;

#define V(s) ((val){(s), sizeof(s) - 1})
#define VNULL ((val){NULL, 0})

/* Write rows (row-major, n_cols each) to DIR/name, read them back, and require the
 * exact same bytes and NULLs. Returns the path of the staged file (caller frees). */
static char *roundtrip(const char *dir, const char *name, size_t n_cols, const val *vals,
                       size_t n_rows)
{
    etl_error err;
    stage_column cols[16];
    char names[16][16];
    assert_true(n_cols <= 16);
    for (size_t c = 0; c < n_cols; c++) {
        snprintf(names[c], sizeof names[c], "c%d", (int)c);
        cols[c] = (stage_column){names[c], NULL};
    }
    stage_writer *w = stage_writer_open(dir, name, cols, n_cols, &err);
    assert_non_null(w);
    for (size_t r = 0; r < n_rows; r++) {
        const char *f[16];
        size_t l[16];
        for (size_t c = 0; c < n_cols; c++) {
            f[c] = vals[r * n_cols + c].p;
            l[c] = vals[r * n_cols + c].n;
        }
        assert_int_equal(stage_writer_row(w, f, l, &err), ETL_OK);
    }
    assert_int_equal(stage_writer_rows(w), n_rows);
    json_t *m = NULL;
    if (stage_writer_finish(w, &m, &err) != ETL_OK)
        fail_msg("finish: %s", err.cause);
    char *path = strdup(json_string_value(json_object_get(m, "file")));
    json_decref(m);

    stage_reader *rd = stage_reader_open(path, &err);
    if (!rd)
        fail_msg("open: %s: %s", err.name, err.cause);
    const char *const *f;
    const size_t *l;
    size_t n;
    for (size_t r = 0; r < n_rows; r++) {
        int rc = stage_reader_row(rd, &f, &l, &n, &err);
        if (rc != 1)
            fail_msg("row %zu: rc %d: %s", r, rc, err.cause);
        assert_int_equal(n, n_cols);
        for (size_t c = 0; c < n_cols; c++) {
            const val *v = &vals[r * n_cols + c];
            if (!v->p) {
                if (f[c])
                    fail_msg("row %zu col %zu: expected NULL", r, c);
                continue;
            }
            if (!f[c])
                fail_msg("row %zu col %zu: got NULL, expected %zu bytes", r, c, v->n);
            assert_int_equal(l[c], v->n);
            assert_memory_equal(f[c], v->p, v->n);
        }
    }
    assert_int_equal(stage_reader_row(rd, &f, &l, &n, &err), 0);
    stage_reader_close(rd);
    return path;
}

static stage_writer *open_ab(const char *dir, const char *name)
{
    etl_error err;
    stage_column cols[] = {{"a", "int"}, {"b", NULL}};
    stage_writer *w = stage_writer_open(dir, name, cols, 2, &err);
    if (!w)
        fail_msg("open: %s", err.cause);
    return w;
}

static void put_ab(stage_writer *w, const char *a, const char *b)
{
    etl_error err;
    const char *f[] = {a, b};
    size_t l[] = {a ? strlen(a) : 0, b ? strlen(b) : 0};
    assert_int_equal(stage_writer_row(w, f, l, &err), ETL_OK);
}

static char *finish_ok(stage_writer *w)
{
    etl_error err;
    json_t *m = NULL;
    if (stage_writer_finish(w, &m, &err) != ETL_OK)
        fail_msg("finish: %s", err.cause);
    char *path = strdup(json_string_value(json_object_get(m, "file")));
    json_decref(m);
    return path;
}

static stage_reader *reader_fails(const char *path, const char *name, const char *needle)
{
    etl_error err;
    stage_reader *r = stage_reader_open(path, &err);
    if (r)
        fail_msg("%s: expected open to fail with %s", path, needle);
    assert_string_equal(err.name, name);
    if (!strstr(err.cause, needle))
        fail_msg("cause '%s' lacks '%s'", err.cause, needle);
    return NULL;
}

static csv_reader *csv_text(const char *dir, const char *text, size_t len, const csv_dialect *d,
                            char **out_path)
{
    char *path = join(dir, "in.csv");
    write_file(path, text, len);
    etl_error err;
    csv_reader *r = csv_reader_open(path, d, &err);
    if (!r)
        fail_msg("csv open: %s", err.cause);
    if (out_path)
        *out_path = path;
    else
        free(path);
    return r;
}

/* Next record must be exactly want[0..n) (NULL = SQL NULL; strings without NUL). */
static void expect_rec(csv_reader *r, size_t n, const char *const *want)
{
    const char *const *f;
    const size_t *l;
    size_t got;
    etl_error err;
    int rc = csv_reader_row(r, &f, &l, &got, &err);
    if (rc != 1)
        fail_msg("expected a record, rc %d: %s", rc, rc < 0 ? err.cause : "");
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++) {
        if (!want[i]) {
            if (f[i])
                fail_msg("field %zu: expected NULL, got '%.*s'", i, (int)l[i], f[i]);
            continue;
        }
        if (!f[i])
            fail_msg("field %zu: expected '%s', got NULL", i, want[i]);
        assert_int_equal(l[i], strlen(want[i]));
        assert_memory_equal(f[i], want[i], l[i]);
        assert_int_equal(f[i][l[i]], '\0'); /* fields are NUL-terminated too */
    }
}

static void expect_eof(csv_reader *r)
{
    const char *const *f;
    const size_t *l;
    size_t n;
    etl_error err;
    assert_int_equal(csv_reader_row(r, &f, &l, &n, &err), 0);
    assert_int_equal(csv_reader_row(r, &f, &l, &n, &err), 0);
}

#define REC(r, ...)                                                                  \
    do {                                                                             \
        const char *want_[] = {__VA_ARGS__};                                         \
        expect_rec((r), sizeof want_ / sizeof want_[0], want_);                      \
    } while (0)

/* Reading text must fail at line with a cause containing needle. */
static void expect_csv_error(const char *text, size_t len, const csv_dialect *d,
                             unsigned long line, const char *needle)
{
    char *dir = make_dir(), *path;
    csv_reader *r = csv_text(dir, text, len, d, &path);
    const char *const *f;
    const size_t *l;
    size_t n;
    etl_error err;
    int rc;
    while ((rc = csv_reader_row(r, &f, &l, &n, &err)) == 1)
        ;
    assert_int_equal(rc, -1);
    assert_string_equal(err.name, "Etl.IntegrityError");
    char *where;
    assert_true(asprintf(&where, "%s:%lu: ", path, line) > 0);
    if (!strstr(err.cause, where) || !strstr(err.cause, needle))
        fail_msg("cause '%s' lacks '%s' or '%s'", err.cause, where, needle);
    assert_int_equal(csv_reader_row(r, &f, &l, &n, &err), -1); /* stays failed */
    free(where);
    free(path);
    csv_reader_close(r);
    remove_dir(dir);
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* ------------------------------------------------------------ CRC-32C */

static void test_crc32c_check_value(void **state)
{
    (void)state;
    assert_int_equal(stage_crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(stage_crc32c(0, "", 0), 0);
    /* incremental: any split gives the same value */
    uint32_t c = stage_crc32c(0, "1234", 4);
    assert_int_equal(stage_crc32c(c, "56789", 5), 0xe3069283u);
    /* 32 zero bytes: RFC 3720 B.4 test vector */
    unsigned char zeros[32] = {0};
    assert_int_equal(stage_crc32c(0, zeros, 32), 0x8a9136aau);
}

static void test_crc32c_matches_reference(void **state)
{
    (void)state;
    enum { N = 4096 };
    unsigned char *buf = malloc(N + 8);
    for (size_t i = 0; i < N + 8; i++)
        buf[i] = (unsigned char)rnd();
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len < 300; len++) {
            assert_int_equal(stage_crc32c(0, buf + off, len), ref_crc(buf + off, len));
            assert_int_equal(portable_crc32c(0, buf + off, len), ref_crc(buf + off, len));
        }
    /* random splits of a long buffer, at odd alignments */
    for (int t = 0; t < 200; t++) {
        size_t a = rnd() % N, b = a + rnd() % (N - a);
        uint32_t c = stage_crc32c(0, buf, a);
        c = stage_crc32c(c, buf + a, b - a);
        c = stage_crc32c(c, buf + b, N - b);
        assert_int_equal(c, ref_crc(buf, N));
        c = portable_crc32c(0, buf, a);
        c = portable_crc32c(c, buf + a, b - a);
        assert_int_equal(portable_crc32c(c, buf + b, N - b), ref_crc(buf, N));
    }
    free(buf);
}

/* ------------------------------------------------------------ writer format */

static void test_writer_quoting_bytes(void **state)
{
    (void)state;
    char *dir = make_dir();
    etl_error err;
    stage_column cols[] = {{"id", NULL}, {"two words", NULL}, {"", NULL}, {"q\"c,", NULL},
                           {"sp ", NULL}, {"x", NULL}, {"y", NULL}, {"z", NULL}};
    stage_writer *w = stage_writer_open(dir, "fmt", cols, 8, &err);
    assert_non_null(w);
    const char *f[] = {NULL, "", "a b", " a", "a\"b", "a,b", "l1\nl2", "cr\r"};
    size_t l[8];
    for (int i = 0; i < 8; i++)
        l[i] = f[i] ? strlen(f[i]) : 0;
    assert_int_equal(stage_writer_row(w, f, l, &err), ETL_OK);
    const char *g[] = {"1", NULL, "a ", "\"", "x", "\r\n", NULL, NULL};
    for (int i = 0; i < 8; i++)
        l[i] = g[i] ? strlen(g[i]) : 0;
    assert_int_equal(stage_writer_row(w, g, l, &err), ETL_OK);
    char *path = finish_ok(w);
    size_t n;
    char *text = read_file(path, &n);
    const char *want = "id,two words,\"\",\"q\"\"c,\",\"sp \",x,y,z\n"
                       ",\"\",a b,\" a\",\"a\"\"b\",\"a,b\",\"l1\nl2\",\"cr\r\"\n"
                       "1,,\"a \",\"\"\"\",x,\"\r\n\",,\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(text, want, n);
    free(text);
    free(path);
    remove_dir(dir);
}

static void test_writer_counts(void **state)
{
    (void)state;
    char *dir = make_dir();
    stage_writer *w = open_ab(dir, "cnt");
    assert_int_equal(stage_writer_rows(w), 0);
    assert_int_equal(stage_writer_bytes(w), 4); /* "a,b\n" */
    put_ab(w, "1", "2");
    put_ab(w, NULL, "x,y");
    assert_int_equal(stage_writer_rows(w), 2);
    assert_int_equal(stage_writer_bytes(w), 4 + 4 + 7); /* "1,2\n" ",\"x,y\"\n" */
    free(finish_ok(w));
    remove_dir(dir);
}

/* ------------------------------------------------------------ round trips */

static void test_roundtrip_awkward_values(void **state)
{
    (void)state;
    char *dir = make_dir();
    static char all_bytes[256];
    for (int i = 0; i < 256; i++)
        all_bytes[i] = (char)i;
    const val awkward[] = {
        VNULL, V(""), V("\""), V("\"\""), V("a\"b"), V(","), V("a,b"), V("\r"), V("\n"),
        V("\r\n"), V("\n\r"), V("x\r"), V(" "), V("  lead"), V("trail  "), V(" both "),
        V("mid dle"), V("héllo wörld — €, 𝄞, 日本語"), V("\0"), V("a\0b"), V("\0\0\"\0"),
        V("\xff\xfe\x80"), {all_bytes, 256}, V("NULL"), V("\\N"), V("'"), V("#"),
        V(";|\t"), V("=1+2"),
    };
    size_t n = sizeof awkward / sizeof awkward[0];
    /* one column: NULL becomes a blank line, "" a quoted pair */
    free(roundtrip(dir, "one", 1, awkward, n));
    /* three columns: every value next to every position */
    val *rows = malloc(n * 3 * sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        rows[i * 3] = awkward[i];
        rows[i * 3 + 1] = awkward[(i + 7) % n];
        rows[i * 3 + 2] = awkward[(i + 13) % n];
    }
    free(roundtrip(dir, "three", 3, rows, n));
    free(rows);
    remove_dir(dir);
}

static void test_roundtrip_10mb_field(void **state)
{
    (void)state;
    char *dir = make_dir();
    size_t big = 10u << 20;
    char *p = malloc(big);
    for (size_t i = 0; i < big; i++)
        p[i] = (char)(rnd() & 0xff); /* quotes, commas, NULs, newlines throughout */
    val rows[] = {{p, big}, V("after"), VNULL, V("x"), V(""), {p, 1000}};
    free(roundtrip(dir, "big", 2, rows, 3));
    free(p);
    remove_dir(dir);
}

static void test_roundtrip_random_property(void **state)
{
    (void)state;
    char *dir = make_dir();
    static const char alphabet[] = "\"\",,\r\n  \0\xff\xc3\xa9" "ab;";
    rng_state = 42;
    for (int file = 0; file < 4; file++) {
        size_t n_cols = 1 + rnd() % 6, n_rows = 2000 + rnd() % 1000;
        val *vals = calloc(n_rows * n_cols, sizeof *vals);
        char *pool = malloc(n_rows * n_cols * 40), *at = pool;
        for (size_t i = 0; i < n_rows * n_cols; i++) {
            if (rnd() % 8 == 0) {
                vals[i] = VNULL;
                continue;
            }
            size_t len = rnd() % 5 == 0 ? 0 : rnd() % 40;
            for (size_t k = 0; k < len; k++)
                at[k] = alphabet[rnd() % (sizeof alphabet - 1)];
            vals[i] = (val){at, len};
            at += len;
        }
        char name[32];
        snprintf(name, sizeof name, "rand%d", file);
        free(roundtrip(dir, name, n_cols, vals, n_rows));
        free(pool);
        free(vals);
    }
    remove_dir(dir);
}

static void test_header_names_roundtrip(void **state)
{
    (void)state;
    char *dir = make_dir();
    etl_error err;
    stage_column cols[] = {{"", NULL}, {"a,b", "x"}, {" sp", NULL}, {"q\"", NULL},
                           {"line\nbreak", NULL}};
    stage_writer *w = stage_writer_open(dir, "hdr", cols, 5, &err);
    assert_non_null(w);
    char *path = finish_ok(w);
    stage_reader *r = stage_reader_open(path, &err);
    if (!r)
        fail_msg("%s", err.cause);
    const char *const *f;
    const size_t *l;
    size_t n;
    assert_int_equal(stage_reader_row(r, &f, &l, &n, &err), 0);
    stage_reader_close(r);
    free(path);
    remove_dir(dir);
}

/* ------------------------------------------------------------ manifest */

static void test_manifest_content(void **state)
{
    (void)state;
    char *dir = make_dir();
    etl_error err;
    stage_column cols[] = {{"id", "bigint"}, {"name", NULL}, {"note", "varchar(20)"}};
    stage_writer *w = stage_writer_open(dir, "orders", cols, 3, &err);
    assert_non_null(w);
    for (int i = 0; i < 1000; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        const char *f[] = {id, i % 3 ? "n,ame" : NULL, "\"q\""};
        size_t l[] = {strlen(id), f[1] ? 5 : 0, 3};
        assert_int_equal(stage_writer_row(w, f, l, &err), ETL_OK);
    }
    uint64_t bytes = stage_writer_bytes(w);
    json_t *out = NULL;
    assert_int_equal(stage_writer_finish(w, &out, &err), ETL_OK);

    char *csv = join(dir, "orders.csv"), *mpath = join(dir, "orders.csv.manifest.json");
    size_t n;
    char *data = read_file(csv, &n);
    assert_int_equal(n, bytes);
    json_error_t je;
    json_t *m = json_load_file(mpath, 0, &je);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "format")), "etlrun-csv-1");
    assert_string_equal(json_string_value(json_object_get(m, "file")), "orders.csv");
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), 1000);
    assert_int_equal(json_integer_value(json_object_get(m, "bytes")), (json_int_t)n);
    char crc[9];
    snprintf(crc, sizeof crc, "%08x", ref_crc(data, n));
    assert_string_equal(json_string_value(json_object_get(m, "crc32c")), crc);
    json_t *want_cols = json_loads("[{\"name\":\"id\",\"type\":\"bigint\"},"
                                   "{\"name\":\"name\",\"type\":\"text\"},"
                                   "{\"name\":\"note\",\"type\":\"varchar(20)\"}]", 0, NULL);
    assert_true(json_equal(json_object_get(m, "columns"), want_cols));

    /* the returned manifest is the same, with the absolute path */
    char *real = realpath(csv, NULL);
    assert_string_equal(json_string_value(json_object_get(out, "file")), real);
    assert_true(json_equal(json_object_get(out, "columns"), want_cols));
    assert_string_equal(json_string_value(json_object_get(out, "crc32c")), crc);
    assert_int_equal(json_integer_value(json_object_get(out, "bytes")), (json_int_t)n);

    /* the reader exposes the manifest */
    stage_reader *r = stage_reader_open(csv, &err);
    assert_non_null(r);
    assert_int_equal(json_integer_value(json_object_get(stage_reader_manifest(r), "rows")), 1000);
    stage_reader_close(r);

    struct stat sb;
    assert_int_equal(stat(csv, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    json_decref(want_cols);
    json_decref(m);
    json_decref(out);
    free(real);
    free(data);
    free(csv);
    free(mpath);
    remove_dir(dir);
}

/* ------------------------------------------------------------ atomicity and names */

static void test_atomic_before_finish(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *csv = join(dir, "t.csv"), *mpath = join(dir, "t.csv.manifest.json");
    stage_writer *w = open_ab(dir, "t");
    for (int i = 0; i < 20000; i++) /* > 256 KiB: some of it is on disk already */
        put_ab(w, "123456789", "abcdefghij");
    assert_false(exists(csv));
    assert_false(exists(mpath));
    DIR *d = opendir(dir);
    struct dirent *e;
    int tmp = 0;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".t.csv.tmp-", 11) == 0) {
            char *p = join(dir, e->d_name);
            struct stat sb;
            assert_int_equal(stat(p, &sb), 0);
            assert_int_equal(sb.st_mode & 0777, 0600);
            assert_true(sb.st_size > 0);
            free(p);
            tmp++;
        }
    }
    closedir(d);
    assert_int_equal(tmp, 1);
    assert_int_equal(count_entries(dir), 1);
    free(finish_ok(w));
    assert_true(exists(csv));
    assert_true(exists(mpath));
    assert_int_equal(count_entries(dir), 2); /* no temporary left */
    free(csv);
    free(mpath);
    remove_dir(dir);
}

static void test_abort_leaves_nothing(void **state)
{
    (void)state;
    char *dir = make_dir();
    stage_writer *w = open_ab(dir, "t");
    for (int i = 0; i < 30000; i++)
        put_ab(w, "1", "some text");
    assert_int_equal(count_entries(dir), 1);
    stage_writer_abort(w);
    assert_int_equal(count_entries(dir), 0);
    stage_writer_abort(NULL);
    remove_dir(dir);
}

/* What a killed writer leaves (its temporary file) is removed by stage_remove_partial;
 * finished staged files and their manifests stay. */
static void test_remove_partial(void **state)
{
    (void)state;
    char *dir = make_dir();
    stage_writer *done = open_ab(dir, "kept");
    put_ab(done, "1", "x");
    free(finish_ok(done));
    stage_writer *w = open_ab(dir, "killed");
    for (int i = 0; i < 30000; i++) /* > 256 KiB: on disk already */
        put_ab(w, "1", "some text");
    assert_int_equal(count_entries(dir), 3);
    assert_int_equal(stage_remove_partial(dir), 1);
    assert_int_equal(count_entries(dir), 2);
    char *csv = join(dir, "kept.csv"), *mpath = join(dir, "kept.csv.manifest.json");
    assert_true(exists(csv));
    assert_true(exists(mpath));
    stage_writer_abort(w); /* its file is gone already */
    assert_int_equal(stage_remove_partial(dir), 0);
    char *missing = join(dir, "no-such-dir");
    assert_int_equal(stage_remove_partial(missing), 0);
    free(missing);
    free(csv);
    free(mpath);
    remove_dir(dir);
}

static void test_restage_replaces_both(void **state)
{
    (void)state;
    char *dir = make_dir();
    stage_writer *w = open_ab(dir, "t");
    put_ab(w, "old", "old");
    free(finish_ok(w));
    w = open_ab(dir, "t");
    put_ab(w, "new", "1");
    put_ab(w, "new", "2");
    char *path = finish_ok(w);
    assert_int_equal(count_entries(dir), 2);
    etl_error err;
    stage_reader *r = stage_reader_open(path, &err);
    assert_non_null(r);
    assert_int_equal(json_integer_value(json_object_get(stage_reader_manifest(r), "rows")), 2);
    stage_reader_close(r);
    free(path);
    remove_dir(dir);
}

static void test_name_sanitized(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = finish_ok(open_ab(dir, "../evil/na me*"));
    char *want = join(dir, "_._evil_na_me_.csv");
    char *real = realpath(want, NULL);
    assert_non_null(real);
    assert_string_equal(path, real);
    free(path);
    free(real);
    free(want);

    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    path = finish_ok(open_ab(dir, longname));
    const char *base = strrchr(path, '/') + 1;
    assert_int_equal(strlen(base), 120 + 4);
    assert_int_equal(strncmp(base, longname, 120), 0);
    free(path);

    path = finish_ok(open_ab(dir, ".hidden"));
    assert_string_equal(strrchr(path, '/') + 1, "_hidden.csv");
    free(path);
    path = finish_ok(open_ab(dir, "caf\xc3\xa9-1.x_y"));
    assert_string_equal(strrchr(path, '/') + 1, "caf__-1.x_y.csv");
    free(path);
    remove_dir(dir);
}

static void test_dir_created_0700(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *sub = join(dir, "a/b/c");
    char *path = finish_ok(open_ab(sub, "t"));
    struct stat sb;
    assert_int_equal(stat(sub, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    free(path);
    free(sub);
    remove_dir(dir);
}

static void test_open_invalid_arguments(void **state)
{
    (void)state;
    char *dir = make_dir();
    etl_error err;
    stage_column none[1] = {{"a", NULL}};
    assert_null(stage_writer_open(dir, "t", none, 0, &err));
    assert_string_equal(err.name, "Etl.StagingFailed");
    stage_column bad[] = {{"ok", NULL}, {"\xff\xfe", NULL}};
    assert_null(stage_writer_open(dir, "t", bad, 2, &err));
    assert_non_null(strstr(err.cause, "column 2"));
    stage_column unnamed[] = {{NULL, NULL}};
    assert_null(stage_writer_open(dir, "t", unnamed, 1, &err));
    assert_int_equal(count_entries(dir), 0);
    /* a staging "directory" that is a file */
    char *file = join(dir, "plain");
    write_file(file, "x", 1);
    assert_null(stage_writer_open(file, "t", none, 1, &err));
    assert_string_equal(err.name, "Etl.StagingFailed");
    assert_int_equal(err.status, ETL_EIO);
    assert_non_null(strstr(err.cause, file));
    free(file);
    remove_dir(dir);
}

/* ------------------------------------------------------------ disk full */

/* Run fn(dir, expected strerror text) on a 64 KiB tmpfs, or, where mounting is not
 * allowed, under RLIMIT_FSIZE = 64 KiB with SIGXFSZ ignored (writes then fail EFBIG). */
static void with_tiny_disk(void (*fn)(const char *dir, const char *errtext))
{
    char *dir = make_dir();
    if (mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700") == 0) {
        fn(dir, strerror(ENOSPC));
        assert_int_equal(umount2(dir, MNT_DETACH), 0);
    } else {
        struct rlimit old, lim;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        lim = old;
        lim.rlim_cur = 64 * 1024;
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        fn(dir, strerror(EFBIG));
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, prev);
    }
    remove_dir(dir);
}

static void check_staging_failed(const etl_error *err, const char *dir, const char *errtext)
{
    assert_string_equal(err->name, "Etl.StagingFailed");
    assert_int_equal(err->status, ETL_EIO);
    char *path = join(dir, "full.csv");
    if (!strstr(err->cause, path) || !strstr(err->cause, errtext))
        fail_msg("cause '%s' lacks '%s' or '%s'", err->cause, path, errtext);
    free(path);
}

static void full_during_rows(const char *dir, const char *errtext)
{
    etl_error err;
    stage_writer *w = open_ab(dir, "full");
    const char *f[] = {"12345", "a value that takes up some room in the file, quoted"};
    size_t l[] = {5, strlen(f[1])};
    etl_status st = ETL_OK;
    int i;
    for (i = 0; i < 100000 && st == ETL_OK; i++)
        st = stage_writer_row(w, f, l, &err);
    assert_int_equal(st, ETL_EIO);
    check_staging_failed(&err, dir, errtext);
    assert_int_equal(count_entries(dir), 0); /* the temp file went at once */
    memset(&err, 0, sizeof err);
    assert_int_equal(stage_writer_row(w, f, l, &err), ETL_EIO); /* sticky */
    check_staging_failed(&err, dir, errtext);
    json_t *m = (json_t *)1;
    memset(&err, 0, sizeof err);
    assert_int_equal(stage_writer_finish(w, &m, &err), ETL_EIO);
    assert_null(m);
    check_staging_failed(&err, dir, errtext);
    assert_int_equal(count_entries(dir), 0);
}

static void full_at_finish(const char *dir, const char *errtext)
{
    etl_error err;
    stage_writer *w = open_ab(dir, "full");
    /* 128 KiB: fits the writer's buffer, so the disk fills during finish's flush */
    for (int i = 0; i < 128; i++) {
        char row[1024];
        memset(row, 'z', sizeof row - 1);
        row[sizeof row - 1] = '\0';
        put_ab(w, "1", row);
    }
    assert_int_equal(count_entries(dir), 1);
    json_t *m = NULL;
    assert_int_equal(stage_writer_finish(w, &m, &err), ETL_EIO);
    assert_null(m);
    check_staging_failed(&err, dir, errtext);
    assert_int_equal(count_entries(dir), 0);
}

static void test_disk_full_during_rows(void **state)
{
    (void)state;
    with_tiny_disk(full_during_rows);
}

static void test_disk_full_at_finish(void **state)
{
    (void)state;
    with_tiny_disk(full_at_finish);
}

/* ------------------------------------------------------------ reader integrity */

static char *stage_sample(const char *dir, int rows)
{
    stage_writer *w = open_ab(dir, "s");
    for (int i = 0; i < rows; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        put_ab(w, id, "value, with a comma");
    }
    return finish_ok(w);
}

static void test_reader_rejects_corrupt_byte(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = stage_sample(dir, 5000);
    size_t n;
    char *data = read_file(path, &n);
    char want[9], got[9];
    snprintf(want, sizeof want, "%08x", ref_crc(data, n));
    data[n / 2] ^= 0x01; /* same size, one bit off */
    snprintf(got, sizeof got, "%08x", ref_crc(data, n));
    write_file(path, data, n);
    reader_fails(path, "Etl.IntegrityError", "CRC-32C");
    reader_fails(path, "Etl.IntegrityError", want);
    reader_fails(path, "Etl.IntegrityError", got);
    reader_fails(path, "Etl.IntegrityError", path);
    free(data);
    free(path);
    remove_dir(dir);
}

static void test_reader_rejects_truncated(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = stage_sample(dir, 100);
    size_t n;
    char *data = read_file(path, &n);
    assert_int_equal(truncate(path, (off_t)n - 1), 0);
    char want[64];
    snprintf(want, sizeof want, "has %zu bytes, the manifest says %zu", n - 1, n);
    reader_fails(path, "Etl.IntegrityError", want);
    /* grown by a row is as wrong as truncated */
    write_file(path, data, n);
    FILE *f = fopen(path, "ab");
    fputs("1,x\n", f);
    fclose(f);
    reader_fails(path, "Etl.IntegrityError", "bytes");
    free(data);
    free(path);
    remove_dir(dir);
}

static void test_reader_missing_manifest(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = stage_sample(dir, 3);
    char *mpath;
    assert_true(asprintf(&mpath, "%s.manifest.json", path) > 0);
    assert_int_equal(unlink(mpath), 0);
    reader_fails(path, "Etl.IntegrityError", "no manifest");
    /* a manifest without its file */
    char *other = join(dir, "gone.csv");
    free(write_raw_staged(dir, "gone.csv", "a\n", 2, "[{\"name\":\"a\",\"type\":\"text\"}]", 0));
    unlink(other);
    reader_fails(other, "Etl.IntegrityError", other);
    free(other);
    free(mpath);
    free(path);
    remove_dir(dir);
}

static void test_reader_malformed_manifest(void **state)
{
    (void)state;
    char *dir = make_dir();
    const char *data = "a\n1\n";
    char *path = write_raw_staged(dir, "m.csv", data, 4, "[{\"name\":\"a\",\"type\":\"t\"}]", 1);
    char *mpath;
    assert_true(asprintf(&mpath, "%s.manifest.json", path) > 0);
    char crc[9];
    snprintf(crc, sizeof crc, "%08x", ref_crc(data, 4));
    struct {
        const char *fmt; /* %s = crc */
        const char *needle;
    } cases[] = {
        {"not json %s", "malformed manifest"},
        {"[\"%s\"]", "not a JSON object"},
        {"{\"format\":\"etlrun-csv-2\",\"file\":\"m.csv\",\"columns\":[{\"name\":\"a\","
         "\"type\":\"t\"}],\"rows\":1,\"bytes\":4,\"crc32c\":\"%s\"}", "format"},
        {"{\"format\":\"etlrun-csv-1\",\"file\":\"x.csv\",\"columns\":[{\"name\":\"a\","
         "\"type\":\"t\"}],\"rows\":1,\"bytes\":4,\"crc32c\":\"%s\"}", "\"file\""},
        {"{\"format\":\"etlrun-csv-1\",\"file\":\"m.csv\",\"columns\":[],"
         "\"rows\":1,\"bytes\":4,\"crc32c\":\"%s\"}", "columns"},
        {"{\"format\":\"etlrun-csv-1\",\"file\":\"m.csv\",\"columns\":[{\"name\":1,"
         "\"type\":\"t\"}],\"rows\":1,\"bytes\":4,\"crc32c\":\"%s\"}", "column"},
        {"{\"format\":\"etlrun-csv-1\",\"file\":\"m.csv\",\"columns\":[{\"name\":\"a\"}],"
         "\"rows\":1,\"bytes\":4,\"crc32c\":\"%s\"}", "column"},
        {"{\"format\":\"etlrun-csv-1\",\"file\":\"m.csv\",\"columns\":[{\"name\":\"a\","
         "\"type\":\"t\"}],\"rows\":-1,\"bytes\":4,\"crc32c\":\"%s\"}", "rows"},
        {"{\"format\":\"etlrun-csv-1\",\"file\":\"m.csv\",\"columns\":[{\"name\":\"a\","
         "\"type\":\"t\"}],\"rows\":\"1\",\"bytes\":4,\"crc32c\":\"%s\"}", "rows"},
        {"{\"format\":\"etlrun-csv-1\",\"file\":\"m.csv\",\"columns\":[{\"name\":\"a\","
         "\"type\":\"t\"}],\"rows\":1,\"bytes\":4.0,\"crc32c\":\"%s\"}", "bytes"},
        {"{\"format\":\"etlrun-csv-1\",\"file\":\"m.csv\",\"columns\":[{\"name\":\"a\","
         "\"type\":\"t\"}],\"rows\":1,\"crc32c\":\"%s\"}", "bytes"},
        {"{\"format\":\"etlrun-csv-1\",\"file\":\"m.csv\",\"columns\":[{\"name\":\"a\","
         "\"type\":\"t\"}],\"rows\":1,\"bytes\":4,\"crc32c\":\"%s0\"}", "crc32c"},
        {"{\"format\":\"etlrun-csv-1\",\"file\":\"m.csv\",\"columns\":[{\"name\":\"a\","
         "\"type\":\"t\"}],\"rows\":1,\"bytes\":4,\"crc32c\":\"%s\",\"rows\":1}", "duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, cases[i].fmt, crc);
        write_file(mpath, text, strlen(text));
        reader_fails(path, "Etl.IntegrityError", cases[i].needle);
    }
    /* uppercase hex is not the format */
    char up[9];
    snprintf(up, sizeof up, "%08X", ref_crc(data, 4));
    if (strcmp(up, crc) != 0) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"format\":\"etlrun-csv-1\",\"file\":\"m.csv\",\"columns\":[{\"name\":\"a\","
                 "\"type\":\"t\"}],\"rows\":1,\"bytes\":4,\"crc32c\":\"%s\"}", up);
        write_file(mpath, text, strlen(text));
        reader_fails(path, "Etl.IntegrityError", "crc32c");
    }
    free(mpath);
    free(path);
    remove_dir(dir);
}

static void test_reader_wrong_row_count(void **state)
{
    (void)state;
    char *dir = make_dir();
    const char *data = "a\n1\n2\n3\n";
    const char *cols = "[{\"name\":\"a\",\"type\":\"text\"}]";
    const char *const *f;
    const size_t *l;
    size_t n;
    etl_error err;
    for (int want = 2; want <= 4; want += 2) {
        char *path = write_raw_staged(dir, "r.csv", data, strlen(data), cols, want);
        stage_reader *r = stage_reader_open(path, &err);
        assert_non_null(r);
        int rc, got = 0;
        while ((rc = stage_reader_row(r, &f, &l, &n, &err)) == 1)
            got++;
        assert_int_equal(rc, -1);
        assert_string_equal(err.name, "Etl.IntegrityError");
        assert_int_equal(got, want < 3 ? want : 3);
        assert_non_null(strstr(err.cause, want < 3 ? "more rows than the manifest's 2"
                                                   : "has 3 rows, the manifest says 4"));
        stage_reader_close(r);
        free(path);
    }
    remove_dir(dir);
}

static void test_reader_wrong_column_count(void **state)
{
    (void)state;
    char *dir = make_dir();
    const char *data = "a,b\n1,2\n\"x\ny\",2\n3\n4,5\n";
    const char *cols = "[{\"name\":\"a\",\"type\":\"t\"},{\"name\":\"b\",\"type\":\"t\"}]";
    char *path = write_raw_staged(dir, "c.csv", data, strlen(data), cols, 4);
    etl_error err;
    stage_reader *r = stage_reader_open(path, &err);
    assert_non_null(r);
    const char *const *f;
    const size_t *l;
    size_t n;
    assert_int_equal(stage_reader_row(r, &f, &l, &n, &err), 1);
    assert_int_equal(stage_reader_row(r, &f, &l, &n, &err), 1);
    assert_int_equal(stage_reader_row(r, &f, &l, &n, &err), -1);
    assert_string_equal(err.name, "Etl.IntegrityError");
    char *where;
    assert_true(asprintf(&where, "%s:5: 1 fields, expected 2", path) > 0);
    if (!strstr(err.cause, where))
        fail_msg("cause '%s' lacks '%s'", err.cause, where);
    free(where);
    stage_reader_close(r);
    free(path);
    remove_dir(dir);
}

static void test_reader_wrong_header(void **state)
{
    (void)state;
    char *dir = make_dir();
    const char *cols = "[{\"name\":\"a\",\"type\":\"t\"},{\"name\":\"b\",\"type\":\"t\"}]";
    char *p1 = write_raw_staged(dir, "h1.csv", "a,c\n1,2\n", 8, cols, 1);
    reader_fails(p1, "Etl.IntegrityError", "header field 2 is \"c\", the manifest says \"b\"");
    char *p2 = write_raw_staged(dir, "h2.csv", "a\n1\n", 4, cols, 1);
    reader_fails(p2, "Etl.IntegrityError", "header has 1 fields, the manifest 2 columns");
    char *p3 = write_raw_staged(dir, "h3.csv", "", 0, cols, 0);
    reader_fails(p3, "Etl.IntegrityError", "no header");
    /* a NULL where the manifest names an empty column */
    const char *empty = "[{\"name\":\"\",\"type\":\"t\"},{\"name\":\"b\",\"type\":\"t\"}]";
    char *p4 = write_raw_staged(dir, "h4.csv", ",b\n", 3, empty, 0);
    reader_fails(p4, "Etl.IntegrityError", "header field 1");
    char *p5 = write_raw_staged(dir, "h5.csv", "\"a,b\n", 5, cols, 0);
    reader_fails(p5, "Etl.IntegrityError", "unterminated");
    char *p6 = write_raw_staged(dir, "h6.csv", "a,bb\n", 5, cols, 0); /* a longer name */
    reader_fails(p6, "Etl.IntegrityError", "header field 2 is \"bb\"");
    free(p6);
    free(p1);
    free(p2);
    free(p3);
    free(p4);
    free(p5);
    remove_dir(dir);
}

static void test_reader_raw_bytes(void **state)
{
    (void)state;
    char *dir = make_dir();
    stage_writer *w = open_ab(dir, "raw");
    for (int i = 0; i < 30000; i++) /* several read buffers */
        put_ab(w, i % 2 ? "1" : NULL, i % 3 ? "a,\"b\"\nc" : "plain");
    char *path = finish_ok(w);
    size_t n;
    char *file = read_file(path, &n);
    const char *body = strchr(file, '\n') + 1; /* after the header line "a,b\n" */
    size_t body_len = n - (size_t)(body - file);
    etl_error err;
    for (size_t cap = 7; cap <= 1u << 20; cap *= 97) {
        stage_reader *r = stage_reader_open(path, &err);
        assert_non_null(r);
        char *got = malloc(body_len + 1), *buf = malloc(cap);
        size_t have = 0;
        ssize_t k;
        while ((k = stage_reader_read(r, buf, cap, &err)) > 0) {
            assert_true((size_t)k <= cap && have + (size_t)k <= body_len);
            memcpy(got + have, buf, (size_t)k);
            have += (size_t)k;
        }
        assert_int_equal(k, 0);
        assert_int_equal(have, body_len);
        assert_memory_equal(got, body, body_len);
        /* rows and raw bytes do not mix */
        const char *const *f;
        const size_t *l;
        size_t nf;
        assert_int_equal(stage_reader_row(r, &f, &l, &nf, &err), -1);
        assert_non_null(strstr(err.cause, "cannot be mixed"));
        stage_reader_close(r);
        free(got);
        free(buf);
    }
    free(file);
    free(path);
    remove_dir(dir);
}

/* ------------------------------------------------------------ csv_reader */

static void test_csv_basic_rfc4180(void **state)
{
    (void)state;
    char *dir = make_dir();
    const char text[] = "a,b,c\r\n"
                        "1,\"x,y\",\"say \"\"hi\"\"\"\n"
                        "\n"
                        "\"multi\r\nline\",,\"\"\r\n"
                        "bare\rcr,\" sp \",last";
    csv_reader *r = csv_text(dir, text, sizeof text - 1, NULL, NULL);
    REC(r, "a", "b", "c");
    assert_int_equal(csv_reader_line(r), 1);
    REC(r, "1", "x,y", "say \"hi\"");
    assert_int_equal(csv_reader_line(r), 2);
    REC(r, "");
    assert_int_equal(csv_reader_line(r), 3);
    REC(r, "multi\r\nline", "", "");
    assert_int_equal(csv_reader_line(r), 4);
    REC(r, "bare\rcr", " sp ", "last"); /* final record without a newline */
    assert_int_equal(csv_reader_line(r), 6);
    expect_eof(r);
    csv_reader_close(r);
    remove_dir(dir);
}

static void test_csv_empty_is_null(void **state)
{
    (void)state;
    char *dir = make_dir();
    const char text[] = "a,,\"\",\n\n,\r\n";
    csv_dialect on = {',', '"', true, 0}, off = {',', '"', false, 0};
    csv_reader *r = csv_text(dir, text, sizeof text - 1, &on, NULL);
    REC(r, "a", NULL, "", NULL);
    REC(r, NULL);
    REC(r, NULL, NULL);
    expect_eof(r);
    csv_reader_close(r);
    r = csv_text(dir, text, sizeof text - 1, &off, NULL);
    REC(r, "a", "", "", "");
    REC(r, "");
    REC(r, "", "");
    expect_eof(r);
    csv_reader_close(r);
    remove_dir(dir);
}

static void test_csv_semicolon_dialect(void **state)
{
    (void)state;
    char *dir = make_dir();
    const char text[] = "a;b,c;\"d;e\"\n1;2\r\n";
    csv_dialect d = {';', '"', false, 0};
    csv_reader *r = csv_text(dir, text, sizeof text - 1, &d, NULL);
    REC(r, "a", "b,c", "d;e");
    REC(r, "1", "2");
    expect_eof(r);
    csv_reader_close(r);
    /* tab and a single quote */
    const char tsv[] = "'a\tb'\tc''\n";
    csv_dialect t = {'\t', '\'', false, 0};
    expect_csv_error(tsv, sizeof tsv - 1, &t, 1, "quote inside an unquoted field");
    const char tsv2[] = "'a\tb'\t'c'''\n";
    r = csv_text(dir, tsv2, sizeof tsv2 - 1, &t, NULL);
    REC(r, "a\tb", "c'");
    expect_eof(r);
    csv_reader_close(r);
    remove_dir(dir);
}

static void test_csv_no_quote_dialect(void **state)
{
    (void)state;
    char *dir = make_dir();
    const char text[] = "\"a\",b\"\"c,\"\n\"x,y\"\n";
    csv_dialect d = {',', '\0', false, 0};
    csv_reader *r = csv_text(dir, text, sizeof text - 1, &d, NULL);
    REC(r, "\"a\"", "b\"\"c", "\"");
    REC(r, "\"x", "y\"");
    expect_eof(r);
    csv_reader_close(r);
    /* a NUL byte is data, not a quote, when there is no quote */
    const char nul[] = "a\0b,c\n";
    r = csv_text(dir, nul, sizeof nul - 1, &d, NULL);
    const char *const *f;
    const size_t *l;
    size_t n;
    etl_error err;
    assert_int_equal(csv_reader_row(r, &f, &l, &n, &err), 1);
    assert_int_equal(n, 2);
    assert_int_equal(l[0], 3);
    assert_memory_equal(f[0], "a\0b", 3);
    csv_reader_close(r);
    remove_dir(dir);
}

static void test_csv_binary_bytes(void **state)
{
    (void)state;
    char *dir = make_dir();
    const char text[] = "\x01\xff\x80,\"\0\n\0\"\"\"\n\0,\0\n";
    csv_reader *r = csv_text(dir, text, sizeof text - 1, NULL, NULL);
    const char *const *f;
    const size_t *l;
    size_t n;
    etl_error err;
    assert_int_equal(csv_reader_row(r, &f, &l, &n, &err), 1);
    assert_int_equal(n, 2);
    assert_int_equal(l[0], 3);
    assert_memory_equal(f[0], "\x01\xff\x80", 3);
    assert_int_equal(l[1], 4);
    assert_memory_equal(f[1], "\0\n\0\"", 4);
    assert_int_equal(csv_reader_row(r, &f, &l, &n, &err), 1);
    assert_int_equal(n, 2);
    assert_int_equal(l[0], 1);
    assert_int_equal(f[0][0], '\0');
    assert_int_equal(csv_reader_line(r), 3);
    expect_eof(r);
    csv_reader_close(r);
    remove_dir(dir);
}

static void test_csv_buffer_boundaries(void **state)
{
    (void)state;
    char *dir = make_dir();
    /* Slide every tricky sequence ("" escape, closing quote, CR LF, delimiter) across the
     * 64 KiB read boundary, for the first and second buffer. */
    for (size_t base = 65536; base <= 131072; base += 65536) {
        for (size_t pad = base - 12; pad <= base + 4; pad++) {
            size_t len = pad + 64;
            char *text = malloc(len);
            char *want = malloc(pad + 8);
            size_t k = 0;
            text[k++] = '"';
            memset(text + k, 'a', pad - 1);
            k += pad - 1;
            memcpy(text + k, "\"\"b\"\r\nz,\"\"\r\ny\r", 14);
            k += 14;
            memset(want, 'a', pad - 1);
            memcpy(want + pad - 1, "\"b", 3);
            csv_reader *r = csv_text(dir, text, k, NULL, NULL);
            REC(r, want);
            REC(r, "z", "");
            assert_int_equal(csv_reader_line(r), 2);
            REC(r, "y\r");
            expect_eof(r);
            csv_reader_close(r);
            free(text);
            free(want);
        }
    }
    remove_dir(dir);
}

static void test_csv_line_numbers(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *text = malloc(1 << 20);
    size_t k = 0;
    /* records of 1 to 4 lines, past several read buffers */
    for (int i = 0; i < 20000; i++) {
        int extra = i % 4;
        k += (size_t)sprintf(text + k, "%d,\"", i);
        for (int j = 0; j < extra; j++)
            k += (size_t)sprintf(text + k, "l%d\n", j);
        k += (size_t)sprintf(text + k, "\"\n");
    }
    csv_reader *r = csv_text(dir, text, k, NULL, NULL);
    uint64_t line = 1;
    for (int i = 0; i < 20000; i++) {
        const char *const *f;
        const size_t *l;
        size_t n;
        etl_error err;
        assert_int_equal(csv_reader_row(r, &f, &l, &n, &err), 1);
        assert_int_equal(atoi(f[0]), i);
        assert_int_equal(csv_reader_line(r), line);
        line += 1 + (uint64_t)(i % 4);
    }
    expect_eof(r);
    csv_reader_close(r);
    free(text);
    remove_dir(dir);
}

static void test_csv_unterminated_quote(void **state)
{
    (void)state;
    const char t[] = "a,b\n1,\"open\nstill\nopen";
    expect_csv_error(t, sizeof t - 1, NULL, 2, "unterminated quoted field");
    const char t2[] = "\"";
    expect_csv_error(t2, 1, NULL, 1, "unterminated");
}

static void test_csv_stray_quote(void **state)
{
    (void)state;
    const char t[] = "a,b\n1,2\n3,ab\"c\n";
    expect_csv_error(t, sizeof t - 1, NULL, 3, "quote inside an unquoted field");
    const char t2[] = "x\n\"ok\nok\",a\"\n";
    expect_csv_error(t2, sizeof t2 - 1, NULL, 3, "quote inside an unquoted field");
}

static void test_csv_text_after_quote(void **state)
{
    (void)state;
    const char t[] = "a\n\"x\"y,z\n";
    expect_csv_error(t, sizeof t - 1, NULL, 2, "text after a closing quote");
    const char t2[] = "a\n\"x\" ,z\n";
    expect_csv_error(t2, sizeof t2 - 1, NULL, 2, "text after a closing quote");
    const char t3[] = "a\n\"x\"\rz\n";
    expect_csv_error(t3, sizeof t3 - 1, NULL, 2, "text after a closing quote");
}

static void test_csv_record_too_long(void **state)
{
    (void)state;
    csv_dialect d = {',', '"', false, 4096};
    char *t = malloc(20000);
    size_t k = (size_t)sprintf(t, "short,row\nfine\n");
    memset(t + k, 'x', 5000);
    k += 5000;
    t[k++] = '\n';
    expect_csv_error(t, k, &d, 3, "record longer than the limit of 4096 bytes");
    /* many empty fields cost memory too: bounded as well */
    k = (size_t)sprintf(t, "ok\n\n");
    memset(t + k, ',', 10000);
    k += 10000;
    expect_csv_error(t, k, &d, 3, "record longer");
    /* the limit holds while a field grows, not only when it ends */
    k = (size_t)sprintf(t, "a\n\"");
    memset(t + k, 'q', 10000);
    k += 10000;
    expect_csv_error(t, k, &d, 2, "record longer");
    /* a long quoted field that spans buffers */
    d.max_record = 100000;
    k = (size_t)sprintf(t, "\"");
    memset(t + k, 'q', 19000);
    k += 19000;
    t[k++] = '"';
    char *dir = make_dir();
    csv_reader *r = csv_text(dir, t, k, &d, NULL);
    const char *const *f;
    const size_t *l;
    size_t n;
    etl_error err;
    assert_int_equal(csv_reader_row(r, &f, &l, &n, &err), 1);
    assert_int_equal(l[0], 19000);
    csv_reader_close(r);
    remove_dir(dir);
    free(t);
}

static void test_csv_open_errors(void **state)
{
    (void)state;
    etl_error err;
    char *dir = make_dir();
    char *missing = join(dir, "nope.csv");
    assert_null(csv_reader_open(missing, NULL, &err));
    assert_string_equal(err.name, "Etl.StagingFailed");
    assert_int_equal(err.status, ETL_EIO);
    assert_non_null(strstr(err.cause, missing));
    assert_non_null(strstr(err.cause, strerror(ENOENT)));
    csv_dialect same = {';', ';', false, 0};
    assert_null(csv_reader_open(missing, &same, &err));
    assert_int_equal(err.status, ETL_EINVAL);
    csv_dialect nl = {'\n', '"', false, 0};
    assert_null(csv_reader_open(missing, &nl, &err));
    /* a directory opens but cannot be read */
    csv_reader *r = csv_reader_open(dir, NULL, &err);
    if (r) {
        const char *const *f;
        const size_t *l;
        size_t n;
        assert_int_equal(csv_reader_row(r, &f, &l, &n, &err), -1);
        assert_string_equal(err.name, "Etl.StagingFailed");
        assert_non_null(strstr(err.cause, strerror(EISDIR)));
        csv_reader_close(r);
    }
    free(missing);
    remove_dir(dir);
}

/* ------------------------------------------------------------ memory */

static void test_constant_memory(void **state)
{
    (void)state;
    char *dir = make_dir();
    /* Measure from the current RSS, not an earlier peak (Linux: "5" resets VmHWM). */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (cr) {
        fputs("5", cr);
        fclose(cr);
    }
    long before = max_rss_kb();
    etl_error err;
    stage_column cols[] = {{"id", "int"}, {"name", NULL}, {"note", NULL}, {"n", NULL}};
    stage_writer *w = stage_writer_open(dir, "mem", cols, 4, &err);
    assert_non_null(w);
    enum { ROWS = 200000 };
    for (int i = 0; i < ROWS; i++) {
        char id[16], note[64];
        int nid = snprintf(id, sizeof id, "%d", i);
        int nn = snprintf(note, sizeof note, "note \"%d\", with\nnewline", i * 7);
        const char *f[] = {id, "some name with spaces ", note, i % 5 ? NULL : ""};
        size_t l[] = {(size_t)nid, 22, (size_t)nn, 0};
        assert_int_equal(stage_writer_row(w, f, l, &err), ETL_OK);
    }
    char *path = finish_ok(w);
    stage_reader *r = stage_reader_open(path, &err);
    assert_non_null(r);
    const char *const *f;
    const size_t *l;
    size_t n;
    int rows = 0, rc;
    while ((rc = stage_reader_row(r, &f, &l, &n, &err)) == 1) {
        if (atoi(f[0]) != rows)
            fail_msg("row %d: id %s", rows, f[0]);
        rows++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rows, ROWS);
    stage_reader_close(r);
    long growth = max_rss_kb() - before;
    if (growth > 8 * 1024)
        fail_msg("peak RSS grew by %ld KiB streaming %d rows", growth, ROWS);
    free(path);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* first, while the process is small */
        cmocka_unit_test(test_constant_memory),
        cmocka_unit_test(test_crc32c_check_value),
        cmocka_unit_test(test_crc32c_matches_reference),
        cmocka_unit_test(test_writer_quoting_bytes),
        cmocka_unit_test(test_writer_counts),
        cmocka_unit_test(test_roundtrip_awkward_values),
        cmocka_unit_test(test_roundtrip_10mb_field),
        cmocka_unit_test(test_roundtrip_random_property),
        cmocka_unit_test(test_header_names_roundtrip),
        cmocka_unit_test(test_manifest_content),
        cmocka_unit_test(test_atomic_before_finish),
        cmocka_unit_test(test_abort_leaves_nothing),
        cmocka_unit_test(test_remove_partial),
        cmocka_unit_test(test_restage_replaces_both),
        cmocka_unit_test(test_name_sanitized),
        cmocka_unit_test(test_dir_created_0700),
        cmocka_unit_test(test_open_invalid_arguments),
        cmocka_unit_test(test_disk_full_during_rows),
        cmocka_unit_test(test_disk_full_at_finish),
        cmocka_unit_test(test_reader_rejects_corrupt_byte),
        cmocka_unit_test(test_reader_rejects_truncated),
        cmocka_unit_test(test_reader_missing_manifest),
        cmocka_unit_test(test_reader_malformed_manifest),
        cmocka_unit_test(test_reader_wrong_row_count),
        cmocka_unit_test(test_reader_wrong_column_count),
        cmocka_unit_test(test_reader_wrong_header),
        cmocka_unit_test(test_reader_raw_bytes),
        cmocka_unit_test(test_csv_basic_rfc4180),
        cmocka_unit_test(test_csv_empty_is_null),
        cmocka_unit_test(test_csv_semicolon_dialect),
        cmocka_unit_test(test_csv_no_quote_dialect),
        cmocka_unit_test(test_csv_binary_bytes),
        cmocka_unit_test(test_csv_buffer_boundaries),
        cmocka_unit_test(test_csv_line_numbers),
        cmocka_unit_test(test_csv_unterminated_quote),
        cmocka_unit_test(test_csv_stray_quote),
        cmocka_unit_test(test_csv_text_after_quote),
        cmocka_unit_test(test_csv_record_too_long),
        cmocka_unit_test(test_csv_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
