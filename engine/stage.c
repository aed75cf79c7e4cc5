/* Staged files: the writer that turns an extract's rows into DIR/NAME.csv plus its
 * manifest, and the reader that verifies both before a load sees a single row.
 * The format, the quoting rules and the atomicity protocol are defined in stage.h.
 *
 * DESIGN: the writer encodes rows into one 256 KiB buffer; each flush updates the CRC-32C
 * and the byte count, so finishing needs no second pass. The first write error is
 * sticky: the temporary file is removed at once and every later call (finish included)
 * reports that same error, so a failed extract never leaves a file behind. The reader
 * streams the whole file once to check size and CRC against the manifest, then parses
 * it with a csv_reader (empty_is_null, 64 MiB record limit). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stage.h"

#define WRITE_BUF (256 * 1024)
#define VERIFY_BUF (256 * 1024)
#define NAME_MAX_BYTES 120
#define FORMAT "etlrun-csv-1"
#define MANIFEST_SUFFIX ".manifest.json"

#define FAIL_IO "Etl.StagingFailed"
#define FAIL_INTEGRITY "Etl.IntegrityError"

/* ---------------------------------------------------------------- writer */

struct stage_writer {
    int fd;                   /* -1 once closed */
    char *dir;
    char *tmp_path;           /* DIR/.NAME.csv.tmp-XXXXXX; NULL once gone or renamed */
    char *final_path;         /* DIR/NAME.csv */
    char *manifest_path;      /* DIR/NAME.csv.manifest.json */
    char *abs_path;           /* realpath(DIR)/NAME.csv, for the returned manifest */
    char *file_name;          /* NAME.csv */
    json_t *columns;          /* [{"name","type"}], owned */
    size_t n_cols;
    unsigned char *buf;       /* WRITE_BUF bytes, buf[0..used) not yet written */
    size_t used;
    uint64_t flushed;         /* bytes written to the file so far */
    uint64_t rows;            /* data rows, the header excluded */
    uint32_t crc;             /* over the flushed bytes */
    bool failed;
    etl_error fail;           /* the first error, reported by every later call */
};

/* Bytes that force quoting anywhere in a field (a space only at either end). */
static const unsigned char quote_byte[256] = {['"'] = 1, [','] = 1, ['\r'] = 1, ['\n'] = 1};

static void sanitize_name(const char *name, char out[NAME_MAX_BYTES + 1])
{
    size_t n = 0;
    for (const char *p = name ? name : ""; *p && n < NAME_MAX_BYTES; p++) {
        char c = *p;
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        out[n++] = ok ? c : '_';
    }
    out[n] = '\0';
    if (n == 0)
        strcpy(out, "stage");
    else if (out[0] == '.') /* no hidden files, no "." or ".." */
        out[0] = '_';
}

/* mkdir -p with mode 0700 for every directory created. */
static int make_dirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            rc = -1;
            break;
        }
        *s = saved;
        if (!saved)
            break;
    }
    int e = errno;
    free(p);
    errno = e;
    return rc;
}

static int write_all(int fd, const void *src, size_t n)
{
    const char *p = src;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0) { /* should not happen for a regular file; do not spin */
            errno = ENOSPC;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void drop_tmp(stage_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    if (w->tmp_path)
        unlink(w->tmp_path);
    free(w->tmp_path);
    w->tmp_path = NULL;
}

/* Record the first error (errno e), remove the temporary file; returns -1. */
static int fail_io(stage_writer *w, int e, const char *what)
{
    if (!w->failed)
        etl_fail(&w->fail, ETL_EIO, FAIL_IO, "cannot %s staged file %s: %s", what,
                 w->final_path, strerror(e));
    w->failed = true;
    drop_tmp(w);
    return -1;
}

static etl_status report(const stage_writer *w, etl_error *err)
{
    if (err)
        *err = w->fail;
    return w->fail.status;
}

static int flush(stage_writer *w)
{
    if (!w->used)
        return 0;
    w->crc = stage_crc32c(w->crc, w->buf, w->used);
    if (write_all(w->fd, w->buf, w->used) < 0)
        return fail_io(w, errno, "write");
    w->flushed += w->used;
    w->used = 0;
    return 0;
}

static int put(stage_writer *w, const void *src, size_t n)
{
    if (n <= WRITE_BUF - w->used) {
        memcpy(w->buf + w->used, src, n);
        w->used += n;
        return 0;
    }
    const char *p = src;
    while (n) {
        size_t k = WRITE_BUF - w->used;
        if (k > n)
            k = n;
        memcpy(w->buf + w->used, p, k);
        w->used += k;
        p += k;
        n -= k;
        if (w->used == WRITE_BUF && flush(w) < 0)
            return -1;
    }
    return 0;
}

static inline int put_byte(stage_writer *w, char c)
{
    if (w->used == WRITE_BUF && flush(w) < 0)
        return -1;
    w->buf[w->used++] = (unsigned char)c;
    return 0;
}

static bool needs_quotes(const unsigned char *p, size_t n)
{
    if (n == 0 || p[0] == ' ' || p[n - 1] == ' ')
        return true;
    /* a record that is exactly \. ends the data for PostgreSQL's COPY, which reads the
     * staged file as it is; quoted, it is the two characters */
    if (n == 2 && p[0] == '\\' && p[1] == '.')
        return true;
    for (size_t i = 0; i < n; i++)
        if (quote_byte[p[i]])
            return true;
    return false;
}

/* One field; NULL (SQL NULL) writes nothing. */
static int put_field(stage_writer *w, const char *p, size_t n)
{
    if (!p)
        return 0;
    if (!needs_quotes((const unsigned char *)p, n))
        return put(w, p, n);
    if (put_byte(w, '"') < 0)
        return -1;
    const char *q;
    while ((q = memchr(p, '"', n)) != NULL) {
        size_t k = (size_t)(q - p) + 1;
        if (put(w, p, k) < 0 || put_byte(w, '"') < 0)
            return -1;
        p += k;
        n -= k;
    }
    if (put(w, p, n) < 0 || put_byte(w, '"') < 0)
        return -1;
    return 0;
}

static int put_record(stage_writer *w, const char *const *fields, const size_t *lens)
{
    for (size_t i = 0; i < w->n_cols; i++) {
        if (i && put_byte(w, ',') < 0)
            return -1;
        const char *f = fields[i];
        if (put_field(w, f, f ? (lens ? lens[i] : strlen(f)) : 0) < 0)
            return -1;
    }
    return put_byte(w, '\n');
}

/* asprintf that returns NULL on failure (asprintf leaves its pointer undefined). */
__attribute__((format(printf, 1, 2))) static char *str_fmt(const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

static void writer_free(stage_writer *w)
{
    drop_tmp(w);
    free(w->dir);
    free(w->final_path);
    free(w->manifest_path);
    free(w->abs_path);
    free(w->file_name);
    json_decref(w->columns);
    free(w->buf);
    free(w);
}

stage_writer *stage_writer_open(const char *dir, const char *name, const stage_column *cols,
                                size_t n_cols, etl_error *err)
{
    stage_writer *w = NULL;
    if (!dir || !*dir || !cols || n_cols == 0) {
        etl_fail(err, ETL_EINVAL, FAIL_IO,
                 "cannot stage '%s': a staged file needs a directory and at least one column",
                 name ? name : "");
        return NULL;
    }
    char clean[NAME_MAX_BYTES + 1];
    sanitize_name(name, clean);
    w = calloc(1, sizeof *w);
    if (!w)
        goto nomem;
    w->fd = -1;
    w->n_cols = n_cols;
    if (!(w->dir = strdup(dir)) || !(w->file_name = str_fmt("%s.csv", clean)) ||
        !(w->final_path = str_fmt("%s/%s", dir, w->file_name)) ||
        !(w->manifest_path = str_fmt("%s%s", w->final_path, MANIFEST_SUFFIX)) ||
        !(w->tmp_path = str_fmt("%s/.%s.tmp-XXXXXX", dir, w->file_name)) ||
        !(w->buf = malloc(WRITE_BUF)) || !(w->columns = json_array()))
        goto nomem;
    for (size_t i = 0; i < n_cols; i++) {
        const char *type = cols[i].type ? cols[i].type : "text";
        json_t *name_j = cols[i].name ? json_string(cols[i].name) : NULL;
        json_t *type_j = json_string(type);
        json_t *col = json_object();
        if (!name_j || !type_j || !col) {
            json_decref(name_j);
            json_decref(type_j);
            json_decref(col);
            etl_fail(err, ETL_EINVAL, FAIL_IO,
                     "cannot stage %s: column %zu needs a name and a type in UTF-8",
                     w->final_path, i + 1);
            goto fail;
        }
        json_object_set_new(col, "name", name_j);
        json_object_set_new(col, "type", type_j);
        json_array_append_new(w->columns, col);
    }
    if (make_dirs(dir) < 0) {
        etl_fail(err, ETL_EIO, FAIL_IO, "cannot create staging directory %s: %s", dir,
                 strerror(errno));
        goto fail;
    }
    char *real = realpath(dir, NULL);
    if (!real) {
        etl_fail(err, ETL_EIO, FAIL_IO, "cannot resolve staging directory %s: %s", dir,
                 strerror(errno));
        goto fail;
    }
    w->abs_path = str_fmt("%s/%s", real, w->file_name);
    free(real);
    if (!w->abs_path)
        goto nomem;
    w->fd = mkostemp(w->tmp_path, O_CLOEXEC); /* mode 0600 */
    if (w->fd < 0) {
        etl_fail(err, ETL_EIO, FAIL_IO, "cannot create staged file %s: %s", w->final_path,
                 strerror(errno));
        free(w->tmp_path);
        w->tmp_path = NULL;
        goto fail;
    }
    /* The header record: column names, quoted by the same rules as data. */
    for (size_t i = 0; i < n_cols; i++) {
        if ((i && put_byte(w, ',') < 0) ||
            put_field(w, cols[i].name, strlen(cols[i].name)) < 0) {
            report(w, err);
            goto fail;
        }
    }
    if (put_byte(w, '\n') < 0) {
        report(w, err);
        goto fail;
    }
    return w;
nomem:
    etl_fail(err, ETL_ENOMEM, FAIL_IO, "out of memory opening staged file '%s'", clean);
fail:
    if (w)
        writer_free(w);
    return NULL;
}

etl_status stage_writer_row(stage_writer *w, const char *const *fields, const size_t *lens,
                            etl_error *err)
{
    if (w->failed)
        return report(w, err);
    if (put_record(w, fields, lens) < 0)
        return report(w, err);
    w->rows++;
    return ETL_OK;
}

uint64_t stage_writer_rows(const stage_writer *w)
{
    return w->rows;
}

uint64_t stage_writer_bytes(const stage_writer *w)
{
    return w->flushed + w->used;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* Some file systems cannot fsync a directory; that is not a failed write. */
    if (rc < 0 && (e == EINVAL || e == ENOTSUP))
        rc = 0;
    errno = e;
    return rc;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Write text to path (in dir) through a temporary file: temp, fsync, rename. */
static int write_atomic(const char *dir, const char *path, const char *text)
{
    int fd = -1, rc = -1, e = 0;
    char *tmp = str_fmt("%s/.%s.tmp-XXXXXX", dir, base_name(path));
    if (!tmp) {
        e = ENOMEM;
        goto out;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if (write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0) {
        e = errno;
        goto out;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) < 0 || rename(tmp, path) < 0) {
        e = errno;
        goto out;
    }
    free(tmp);
    tmp = NULL;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    errno = e;
    return rc;
}

etl_status stage_writer_finish(stage_writer *w, json_t **out_manifest, etl_error *err)
{
    etl_status st = ETL_OK;
    json_t *m = NULL;
    char *text = NULL;
    char crc_hex[9];
    if (out_manifest)
        *out_manifest = NULL;
    if (w->failed || flush(w) < 0)
        goto failed;
    if (fsync(w->fd) < 0) {
        fail_io(w, errno, "fsync");
        goto failed;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) < 0) {
        fail_io(w, errno, "close");
        goto failed;
    }
    /* An old manifest must never pair with the new file, not even for a moment. */
    if (unlink(w->manifest_path) < 0 && errno != ENOENT) {
        fail_io(w, errno, "replace the manifest of");
        goto failed;
    }
    if (rename(w->tmp_path, w->final_path) < 0) {
        fail_io(w, errno, "rename into place");
        goto failed;
    }
    free(w->tmp_path);
    w->tmp_path = NULL;

    snprintf(crc_hex, sizeof crc_hex, "%08" PRIx32, w->crc);
    m = json_pack("{s:s, s:s, s:O, s:I, s:I, s:s}", "format", FORMAT, "file", w->file_name,
                  "columns", w->columns, "rows", (json_int_t)w->rows, "bytes",
                  (json_int_t)w->flushed, "crc32c", crc_hex);
    text = m ? json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    char *with_nl = text ? str_fmt("%s\n", text) : NULL;
    if (!with_nl) {
        unlink(w->final_path);
        st = etl_fail(err, ETL_ENOMEM, FAIL_IO, "out of memory writing the manifest of %s",
                      w->final_path);
        goto out;
    }
    int rc = write_atomic(w->dir, w->manifest_path, with_nl);
    free(with_nl);
    if (rc < 0) {
        int e = errno;
        unlink(w->final_path); /* a staged file without its manifest is useless */
        st = etl_fail(err, ETL_EIO, FAIL_IO, "cannot write manifest %s: %s", w->manifest_path,
                      strerror(e));
        goto out;
    }
    if (fsync_dir(w->dir) < 0) {
        int e = errno;
        unlink(w->manifest_path);
        unlink(w->final_path);
        st = etl_fail(err, ETL_EIO, FAIL_IO, "cannot fsync staging directory %s: %s", w->dir,
                      strerror(e));
        goto out;
    }
    if (out_manifest) {
        json_object_set_new(m, "file", json_string(w->abs_path));
        *out_manifest = m;
        m = NULL;
    }
    goto out;
failed:
    st = report(w, err);
out:
    json_decref(m);
    free(text);
    writer_free(w);
    return st;
}

void stage_writer_abort(stage_writer *w)
{
    if (w)
        writer_free(w);
}

/* ---------------------------------------------------------------- reader */

struct stage_reader {
    csv_reader *csv;
    json_t *manifest;
    char *path;
    size_t n_cols;
    uint64_t rows_expected, rows_read;
    int mode;                 /* MODE_*: rows and raw bytes do not mix */
};

enum { MODE_ANY, MODE_ROWS, MODE_RAW };

static bool set_mode(stage_reader *r, int mode, etl_error *err)
{
    if (r->mode != MODE_ANY && r->mode != mode) {
        etl_fail(err, ETL_EINVAL, FAIL_IO,
                 "%s: stage_reader_row and stage_reader_read cannot be mixed on one reader",
                 r->path);
        return false;
    }
    r->mode = mode;
    return true;
}

static bool is_count(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0;
}

/* NULL when m is a well-formed manifest for the file named file_name. */
static const char *manifest_problem(const json_t *m, const char *file_name)
{
    if (!json_is_object(m))
        return "not a JSON object";
    const json_t *format = json_object_get(m, "format");
    if (!json_is_string(format) || strcmp(json_string_value(format), FORMAT) != 0)
        return "\"format\" is not \"" FORMAT "\"";
    const json_t *file = json_object_get(m, "file");
    if (!json_is_string(file))
        return "\"file\" is not a string";
    if (strcmp(json_string_value(file), file_name) != 0)
        return "\"file\" names another file";
    const json_t *cols = json_object_get(m, "columns");
    if (!json_is_array(cols) || json_array_size(cols) == 0)
        return "\"columns\" is not a non-empty array";
    size_t i;
    const json_t *col;
    json_array_foreach(cols, i, col) {
        if (!json_is_object(col) || !json_is_string(json_object_get(col, "name")) ||
            !json_is_string(json_object_get(col, "type")))
            return "a column is not {\"name\": string, \"type\": string}";
    }
    if (!is_count(json_object_get(m, "rows")))
        return "\"rows\" is not a non-negative integer";
    if (!is_count(json_object_get(m, "bytes")))
        return "\"bytes\" is not a non-negative integer";
    const json_t *crc = json_object_get(m, "crc32c");
    const char *s = json_string_value(crc);
    if (!s || strlen(s) != 8 || strspn(s, "0123456789abcdef") != 8)
        return "\"crc32c\" is not 8 lowercase hex digits";
    return NULL;
}

/* Stream the whole file once: its size and CRC-32C must be the manifest's. */
static etl_status verify_file(const char *path, const json_t *m, etl_error *err)
{
    etl_status st = ETL_OK;
    unsigned char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return etl_fail(err, e == ENOENT ? ETL_EINVAL : ETL_EIO,
                        e == ENOENT ? FAIL_INTEGRITY : FAIL_IO, "cannot open staged file %s: %s",
                        path, strerror(e));
    }
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    uint64_t want_bytes = (uint64_t)json_integer_value(json_object_get(m, "bytes"));
    const char *want_crc = json_string_value(json_object_get(m, "crc32c"));
    uint64_t bytes = 0;
    uint32_t crc = 0;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && (uint64_t)sb.st_size != want_bytes) {
        bytes = (uint64_t)sb.st_size; /* no need to read a file of the wrong size */
        goto size_mismatch;
    }
    buf = malloc(VERIFY_BUF);
    if (!buf) {
        st = etl_fail(err, ETL_ENOMEM, FAIL_IO, "out of memory verifying %s", path);
        goto out;
    }
    for (;;) {
        ssize_t k = read(fd, buf, VERIFY_BUF);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            st = etl_fail(err, ETL_EIO, FAIL_IO, "cannot read staged file %s: %s", path,
                          strerror(errno));
            goto out;
        }
        if (k == 0)
            break;
        crc = stage_crc32c(crc, buf, (size_t)k);
        bytes += (uint64_t)k;
    }
    if (bytes != want_bytes)
        goto size_mismatch;
    char got[9];
    snprintf(got, sizeof got, "%08" PRIx32, crc);
    if (strcmp(got, want_crc) != 0)
        st = etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY,
                      "staged file %s is corrupt: CRC-32C is %s, the manifest says %s", path,
                      got, want_crc);
    goto out;
size_mismatch:
    st = etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY,
                  "staged file %s has %" PRIu64 " bytes, the manifest says %" PRIu64
                  " (truncated or changed after staging)",
                  path, bytes, want_bytes);
out:
    free(buf);
    close(fd);
    return st;
}

/* The header record must be exactly the manifest's column names. */
static etl_status check_header(stage_reader *r, etl_error *err)
{
    const char *const *f;
    const size_t *lens;
    size_t n;
    int rc = csv_reader_row(r->csv, &f, &lens, &n, err);
    if (rc < 0)
        return err ? err->status : ETL_EINVAL;
    if (rc == 0)
        return etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY, "%s: no header record", r->path);
    if (n != r->n_cols)
        return etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY,
                        "%s:1: the header has %zu fields, the manifest %zu columns", r->path, n,
                        r->n_cols);
    const json_t *cols = json_object_get(r->manifest, "columns");
    for (size_t i = 0; i < n; i++) {
        const json_t *name = json_object_get(json_array_get(cols, i), "name");
        const char *want = json_string_value(name);
        size_t want_len = json_string_length(name);
        if (!f[i] || lens[i] != want_len || memcmp(f[i], want, want_len) != 0)
            return etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY,
                            "%s:1: header field %zu is \"%.*s\", the manifest says \"%s\"",
                            r->path, i + 1, f[i] ? (int)(lens[i] < 100 ? lens[i] : 100) : 0,
                            f[i] ? f[i] : "", want);
    }
    return ETL_OK;
}

stage_reader *stage_reader_open(const char *path, etl_error *err)
{
    stage_reader *r = NULL;
    char *mpath = NULL;
    json_t *m = NULL;
    if (!(mpath = str_fmt("%s%s", path, MANIFEST_SUFFIX))) {
        etl_fail(err, ETL_ENOMEM, FAIL_IO, "out of memory opening %s", path);
        goto fail;
    }
    struct stat sb;
    if (stat(mpath, &sb) < 0) {
        int e = errno;
        if (e == ENOENT)
            etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY,
                     "staged file %s has no manifest (%s): it is incomplete or not a staged "
                     "file", path, mpath);
        else
            etl_fail(err, ETL_EIO, FAIL_IO, "cannot read manifest %s: %s", mpath, strerror(e));
        goto fail;
    }
    json_error_t je;
    m = json_load_file(mpath, JSON_REJECT_DUPLICATES, &je);
    if (!m) {
        etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY, "malformed manifest %s: line %d: %s", mpath,
                 je.line, je.text);
        goto fail;
    }
    const char *problem = manifest_problem(m, base_name(path));
    if (problem) {
        etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY, "malformed manifest %s: %s", mpath, problem);
        goto fail;
    }
    if (verify_file(path, m, err) != ETL_OK)
        goto fail;
    r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        etl_fail(err, ETL_ENOMEM, FAIL_IO, "out of memory opening %s", path);
        goto fail;
    }
    r->manifest = m;
    m = NULL;
    r->n_cols = json_array_size(json_object_get(r->manifest, "columns"));
    r->rows_expected = (uint64_t)json_integer_value(json_object_get(r->manifest, "rows"));
    r->csv = csv_reader_open(path, &(csv_dialect){',', '"', true, 0}, err);
    if (!r->csv || check_header(r, err) != ETL_OK)
        goto fail;
    free(mpath);
    return r;
fail:
    free(mpath);
    json_decref(m);
    stage_reader_close(r);
    return NULL;
}

const json_t *stage_reader_manifest(const stage_reader *r)
{
    return r->manifest;
}

int stage_reader_row(stage_reader *r, const char *const **out_fields, const size_t **out_lens,
                     size_t *out_n, etl_error *err)
{
    if (!set_mode(r, MODE_ROWS, err))
        return -1;
    int rc = csv_reader_row(r->csv, out_fields, out_lens, out_n, err);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        if (r->rows_read != r->rows_expected) {
            etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY,
                     "%s has %" PRIu64 " rows, the manifest says %" PRIu64, r->path,
                     r->rows_read, r->rows_expected);
            return -1;
        }
        return 0;
    }
    uint64_t line = csv_reader_line(r->csv);
    if (*out_n != r->n_cols) {
        etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY, "%s:%" PRIu64 ": %zu fields, expected %zu",
                 r->path, line, *out_n, r->n_cols);
        return -1;
    }
    if (++r->rows_read > r->rows_expected) {
        etl_fail(err, ETL_EINVAL, FAIL_INTEGRITY,
                 "%s:%" PRIu64 ": more rows than the manifest's %" PRIu64, r->path, line,
                 r->rows_expected);
        return -1;
    }
    return 1;
}

ssize_t stage_reader_read(stage_reader *r, char *buf, size_t cap, etl_error *err)
{
    if (!set_mode(r, MODE_RAW, err))
        return -1;
    return csv_reader_read(r->csv, buf, cap, err);
}

void stage_reader_close(stage_reader *r)
{
    if (!r)
        return;
    csv_reader_close(r->csv);
    json_decref(r->manifest);
    free(r->path);
    free(r);
}

int stage_remove_partial(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        /* the writers' temporary names: .NAME.csv.tmp-XXXXXX and .NAME.manifest... */
        if (e->d_name[0] != '.' || !strstr(e->d_name, ".tmp-"))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    return n;
}
