/* libFuzzer target for engine/csv.c and engine/stage.c: parses arbitrary bytes as CSV in
 * a dialect chosen by the first byte, checks the reader's invariants, and for RFC 4180
 * input round-trips the records through a staged file, which must read back identical.
 * Build: tests/fuzz/run.sh (all engine sources). Files go under $TMPDIR or /dev/shm. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stage.h"

static char dir[256], in_path[300];

static void remove_dir(void)
{
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/fuzz_csv.XXXXXX", base);
    if (!mkdtemp(dir))
        abort();
    snprintf(in_path, sizeof in_path, "%s/in.csv", dir);
    atexit(remove_dir);
    return 0;
}

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* Copy the records of in_path that have n_cols fields into a staged file, then read
 * both again side by side: same records, same bytes, same NULLs. */
static void roundtrip(const csv_dialect *d, size_t n_cols)
{
    etl_error err;
    stage_column *cols = calloc(n_cols, sizeof *cols);
    char (*names)[16] = calloc(n_cols, sizeof *names);
    for (size_t i = 0; i < n_cols; i++) {
        snprintf(names[i], sizeof names[i], "c%zu", i % 100000);
        cols[i].name = names[i];
    }
    const char *const *f, *const *g;
    const size_t *l, *gl;
    size_t n, gn;
    stage_writer *w = stage_writer_open(dir, "rt", cols, n_cols, &err);
    check(w != NULL);
    csv_reader *r = csv_reader_open(in_path, d, &err);
    check(r != NULL);
    while (csv_reader_row(r, &f, &l, &n, &err) == 1)
        if (n == n_cols)
            check(stage_writer_row(w, f, l, &err) == ETL_OK);
    csv_reader_close(r);
    json_t *m = NULL;
    check(stage_writer_finish(w, &m, &err) == ETL_OK);
    stage_reader *sr = stage_reader_open(json_string_value(json_object_get(m, "file")), &err);
    check(sr != NULL);
    r = csv_reader_open(in_path, d, &err);
    check(r != NULL);
    for (;;) {
        int rc;
        while ((rc = csv_reader_row(r, &f, &l, &n, &err)) == 1 && n != n_cols)
            ;
        int src = stage_reader_row(sr, &g, &gl, &gn, &err);
        check(rc == src);
        if (rc != 1)
            break;
        check(gn == n);
        for (size_t i = 0; i < n; i++) {
            check(!f[i] == !g[i]);
            check(l[i] == gl[i]);
            check(!f[i] || memcmp(f[i], g[i], l[i]) == 0);
        }
    }
    csv_reader_close(r);
    stage_reader_close(sr);
    char path[400];
    snprintf(path, sizeof path, "%s/rt.csv", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/rt.csv.manifest.json", dir);
    unlink(path);
    json_decref(m);
    free(names);
    free(cols);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char delims[] = ",;\t|";
    static const char quotes[] = "\"'\0\"";
    static const size_t limits[] = {0, 64, 1000, 100000};
    uint8_t sel = data[0];
    csv_dialect d = {delims[sel & 3], quotes[(sel >> 2) & 3], (sel >> 4) & 1,
                     limits[(sel >> 5) & 3]};
    bool rfc4180 = d.delimiter == ',' && d.quote == '"' && d.empty_is_null && !d.max_record;
    data++;
    size--;
    FILE *fp = fopen(in_path, "wb");
    check(fp != NULL);
    check(fwrite(data, 1, size, fp) == size);
    check(fclose(fp) == 0);

    etl_error err;
    csv_reader *r = csv_reader_open(in_path, &d, &err);
    check(r != NULL);
    const char *const *f;
    const size_t *l;
    size_t n, first_cols = 0, total = 0;
    uint64_t last_line = 0;
    int rc, records = 0;
    while ((rc = csv_reader_row(r, &f, &l, &n, &err)) == 1) {
        check(n >= 1);
        uint64_t line = csv_reader_line(r);
        check(line > last_line); /* every record starts on a later line */
        last_line = line;
        for (size_t i = 0; i < n; i++) {
            check(f[i] || l[i] == 0);
            check(!f[i] || f[i][l[i]] == '\0');
            total += l[i];
        }
        check(total <= size); /* decoding never adds bytes */
        if (!records++)
            first_cols = n;
    }
    if (rc < 0) {
        check(strcmp(err.name, "Etl.IntegrityError") == 0 || err.status == ETL_ENOMEM);
        char prefix[320];
        snprintf(prefix, sizeof prefix, "%s:", in_path);
        check(strncmp(err.cause, prefix, strlen(prefix)) == 0);
        check(csv_reader_row(r, &f, &l, &n, &err) == -1);
    } else {
        check(rc == 0 && csv_reader_row(r, &f, &l, &n, &err) == 0);
    }
    csv_reader_close(r);

    /* unparsed, a fresh reader hands back exactly the file */
    r = csv_reader_open(in_path, &d, &err);
    check(r != NULL);
    char raw[777];
    size_t at = 0;
    ssize_t k;
    while ((k = csv_reader_read(r, raw, sizeof raw, &err)) > 0) {
        check(at + (size_t)k <= size && memcmp(raw, data + at, (size_t)k) == 0);
        at += (size_t)k;
    }
    check(k == 0 && at == size);
    csv_reader_close(r);

    if (rfc4180 && rc == 0 && records > 0 && first_cols <= 4096)
        roundtrip(&d, first_cols);
    unlink(in_path);
    return 0;
}
