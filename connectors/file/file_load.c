/* file.load: a staged file written to a path as CSV or JSON lines, or appended to it.
 *
 * staged file --host->stage_read_row--> rows --> DIR/.NAME.tmp-XXXXXXXX --rename--> DIR/NAME
 *
 * Atomicity: the target is only ever replaced by rename(2) of a complete, fsynced
 * temporary file in the same directory, so a reader sees the old content or the new,
 * never a part, and a failed or cancelled load leaves the target as it was (the
 * temporary file is removed). Append copies the old content into the temporary file
 * first: it costs a copy, but an append that fails halfway can never leave half a
 * record behind. Two loads of the same target at the same time: the last rename wins. */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WRITE_BUF ((size_t)256 << 10)
#define COPY_BUF ((size_t)64 << 10)

/* The output: the temporary file behind a write buffer, or (fd < 0) a growing
 * buffer in memory (for the CSV header line an append compares). */
typedef struct out_file {
    const etl_host *h;
    const char *path;      /* the target, for messages */
    char *tmp;             /* the temporary file's path; NULL when none */
    int fd;                /* -1 = memory */
    char *buf;
    size_t len, cap;
    uint64_t bytes;        /* written by this run (an append's copied content excluded) */
    int error;             /* errno of the first failed write; sticky */
} out_file;

static etl_status fail_errno(const etl_host *h, etl_error *err, const char *what,
                             const char *path, int e)
{
    char eb[128];
    return h->fail(err, ETL_EIO, "Etl.FileFailed", false, "cannot %s '%s': %s", what, path,
                   file_strerror(e, eb, sizeof eb));
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void flush(out_file *o)
{
    if (o->fd >= 0 && o->len && !o->error)
        o->error = write_all(o->fd, o->buf, o->len);
    o->len = 0;
}

static void put(out_file *o, const char *p, size_t n)
{
    if (o->error || n == 0)
        return;
    if (n > o->cap - o->len) {
        if (o->fd >= 0) {
            flush(o);
            if (n >= o->cap) {
                o->error = o->error ? o->error : write_all(o->fd, p, n);
                o->bytes += n;
                return;
            }
        } else {
            size_t cap = o->cap ? o->cap : 256;
            while (cap - o->len < n)
                cap *= 2;
            char *b = realloc(o->buf, cap);
            if (!b) {
                o->error = ENOMEM;
                return;
            }
            o->buf = b;
            o->cap = cap;
        }
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    o->bytes += n;
}

/* One CSV field as staged files write it (engine/stage.h): quoted when empty, or when
 * it holds '"', ',', CR or LF or starts or ends with a space; inner quotes doubled. A
 * NULL field is written as nothing, so NULL and "" stay distinct. */
static void put_csv_field(out_file *o, const char *s, size_t n)
{
    if (!s)
        return;
    bool quote = n == 0 || s[0] == ' ' || s[n - 1] == ' ';
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == '"' || s[i] == ',' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        put(o, s, n);
        return;
    }
    put(o, "\"", 1);
    const char *q;
    while ((q = memchr(s, '"', n))) {
        size_t k = (size_t)(q - s) + 1;
        put(o, s, k); /* through the quote, then one more */
        put(o, "\"", 1);
        s += k;
        n -= k;
    }
    put(o, s, n);
    put(o, "\"", 1);
}

static void put_csv_record(out_file *o, const char *const *f, const size_t *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            put(o, ",", 1);
        put_csv_field(o, f[i], l[i]);
    }
    put(o, "\n", 1);
}

/* Create the missing directories of path's parent, like `mkdir -p` (0777 less the
 * umask). Returns 0, or an errno with at naming the directory that failed. */
static int make_parents(const char *path, char *at, size_t at_cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return 0;
    size_t n = (size_t)(slash - path);
    if (n >= at_cap)
        return ENAMETOOLONG;
    memcpy(at, path, n);
    at[n] = '\0';
    struct stat st;
    if (stat(at, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
    /* walk down from the top: each component is created unless it exists */
    for (char *p = at + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(at, 0777) < 0 && errno != EEXIST) {
            int e = errno;
            return e;
        }
        if (stat(at, &st) < 0 || !S_ISDIR(st.st_mode))
            return ENOTDIR;
        *p = c;
        if (!c)
            return 0;
    }
}

/* A random name next to the target, created with O_EXCL and mode 0666 (less the
 * umask, as for any new file) or the existing target's permissions. */
static etl_status tmp_create(out_file *o, const struct stat *target, etl_error *err)
{
    static atomic_uint serial;
    const char *slash = strrchr(o->path, '/');
    size_t dir_len = slash ? (size_t)(slash - o->path) + 1 : 0;
    const char *base = o->path + dir_len;
    size_t cap = strlen(o->path) + 32;
    if (!base[0])
        return o->h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                          "file.load: '%s' names a directory: give a file name", o->path);
    o->tmp = malloc(cap);
    if (!o->tmp)
        return o->h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory");
    for (int attempt = 0; attempt < 100; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid() << 32 ^
                     atomic_fetch_add(&serial, 1) * 0xBF58476D1CE4E5B9ULL;
        char sfx[9];
        for (int i = 0; i < 8; i++, x >>= 5)
            sfx[i] = "abcdefghijklmnopqrstuvwxyz234567"[x & 31];
        sfx[8] = '\0';
        snprintf(o->tmp, cap, "%.*s.%s.tmp-%s", (int)dir_len, o->path, base, sfx);
        o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (o->fd >= 0)
            break;
        if (errno != EEXIST) {
            int e = errno;
            free(o->tmp);
            o->tmp = NULL;
            char dir[4096];
            snprintf(dir, sizeof dir, "%.*s", dir_len ? (int)dir_len : 1,
                     dir_len ? o->path : ".");
            return fail_errno(o->h, err, "create a temporary file in", dir, e);
        }
    }
    if (o->fd < 0) {
        free(o->tmp);
        o->tmp = NULL;
        return o->h->fail(err, ETL_EIO, "Etl.FileFailed", false,
                          "cannot create a temporary file next to '%s': too many exist",
                          o->path);
    }
    if (target && fchmod(o->fd, target->st_mode & 07777) < 0)
        return fail_errno(o->h, err, "set the permissions of", o->tmp, errno);
    o->buf = malloc(WRITE_BUF);
    if (!o->buf)
        return o->h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory");
    o->cap = WRITE_BUF;
    return ETL_OK;
}

/* Complete the temporary file and rename it over the target. */
static etl_status tmp_commit(out_file *o, etl_error *err)
{
    flush(o);
    if (o->error)
        return fail_errno(o->h, err, "write", o->tmp, o->error);
    if (fsync(o->fd) < 0)
        return fail_errno(o->h, err, "fsync", o->tmp, errno);
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) < 0)
        return fail_errno(o->h, err, "write", o->tmp, errno);
    if (rename(o->tmp, o->path) < 0)
        return fail_errno(o->h, err, "rename the temporary file to", o->path, errno);
    free(o->tmp);
    o->tmp = NULL; /* in place: nothing to remove any more */
    /* the rename is durable once the directory is synced */
    const char *slash = strrchr(o->path, '/');
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - o->path) + 1 : 1,
             slash ? o->path : ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        int rc = fsync(dfd);
        int e = errno;
        close(dfd);
        if (rc < 0 && e != EINVAL)
            return fail_errno(o->h, err, "fsync the directory of", o->path, e);
    }
    return ETL_OK;
}

static void tmp_discard(out_file *o)
{
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    if (o->tmp)
        unlink(o->tmp);
    free(o->tmp);
    free(o->buf);
    o->tmp = NULL;
    o->buf = NULL;
}

/* Append: copy the old content into the temporary file. A CSV target must start with
 * the header the staged columns would have. A last line without "\n" gets one. */
static etl_status copy_old(out_file *o, int old_fd, const struct stat *st, file_format fmt,
                           const char *const *names, size_t n_cols, etl_error *err)
{
    const etl_host *h = o->h;
    char *buf = malloc(COPY_BUF);
    out_file hdr = {.h = h, .fd = -1};
    etl_status st_ = ETL_OK;
    if (!buf)
        return h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory");
    if (fmt == FILE_FMT_CSV) {
        size_t *lens = calloc(n_cols ? n_cols : 1, sizeof *lens);
        if (!lens) {
            st_ = h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n_cols; i++)
            lens[i] = strlen(names[i]);
        put_csv_record(&hdr, names, lens, n_cols);
        free(lens);
        if (hdr.error) {
            st_ = h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory");
            goto out;
        }
        /* compare with the target's first record: hdr.len - 1 bytes, then "\n" or "\r\n" */
        char *head = malloc(hdr.len + 1);
        ssize_t k = head ? pread(old_fd, head, hdr.len + 1, 0) : -1;
        bool same = k >= (ssize_t)hdr.len && memcmp(head, hdr.buf, hdr.len - 1) == 0 &&
                    (head[hdr.len - 1] == '\n' ||
                     (k > (ssize_t)hdr.len && head[hdr.len - 1] == '\r' && head[hdr.len] == '\n'));
        free(head);
        if (!same) {
            st_ = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                          "file.load: cannot append to '%s': its first line is not the header "
                          "%.*s of the staged columns; write to a new file or fix the header",
                          o->path, (int)(hdr.len - 1 > 300 ? 300 : hdr.len - 1), hdr.buf);
            goto out;
        }
    }
    off_t left = st->st_size;
    char last = '\n';
    while (left > 0) {
        ssize_t k = read(old_fd, buf, COPY_BUF);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            st_ = fail_errno(h, err, "read", o->path, errno);
            goto out;
        }
        if (k == 0)
            break; /* shrank meanwhile: copy what there is */
        int e = write_all(o->fd, buf, (size_t)k);
        if (e) {
            st_ = fail_errno(h, err, "write", o->tmp, e);
            goto out;
        }
        last = buf[k - 1];
        left -= k;
    }
    if (last != '\n')
        put(o, "\n", 1);
out:
    free(hdr.buf);
    free(buf);
    return st_;
}

static etl_status put_json_record(out_file *o, const char *const *names, const char *const *f,
                                  const size_t *l, size_t n, uint64_t row, etl_error *err)
{
    const etl_host *h = o->h;
    etl_json *obj = h->json_new_object();
    if (!obj)
        return h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory");
    for (size_t i = 0; i < n; i++) {
        etl_json *v = f[i] ? h->json_new_string(f[i], l[i]) : h->json_new_null();
        if (!v || h->json_set(obj, names[i], v) < 0) {
            h->json_decref(obj);
            if (f[i] && file_utf8_invalid_at(f[i], l[i]) < l[i])
                return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                               "file.load: row %" PRIu64 ", column '%s' is not UTF-8 text and "
                               "cannot be a JSON string: load it as csv", row, names[i]);
            return h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory");
        }
    }
    size_t len = 0;
    char *text = h->json_dump(obj, &len);
    h->json_decref(obj);
    if (!text)
        return h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory");
    put(o, text, len);
    put(o, "\n", 1);
    h->free(text);
    return ETL_OK;
}

etl_status file_load_run(const etl_host *h, etl_task *task, const file_load_opts *lo,
                         etl_json **out_result, etl_error *err)
{
    out_file o = {.h = h, .path = lo->path, .fd = -1};
    etl_stage_reader *r = NULL;
    const char **names = NULL;
    int old_fd = -1;
    etl_json *res = NULL;
    etl_status st = ETL_OK;
    *out_result = NULL;

    if (h->cancelled(task))
        return h->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                       "file.load to '%s' was cancelled before it started", lo->path);
    r = h->stage_read_open(task, lo->file, err); /* verifies size and CRC32C */
    if (!r)
        return err->status;
    const etl_json *cols = h->json_get(h->stage_read_manifest(r), "columns");
    size_t n_cols = h->json_size(cols);
    names = calloc(n_cols ? n_cols : 1, sizeof *names);
    if (!names) {
        st = h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_cols; i++) {
        names[i] = h->json_string(h->json_get(h->json_at(cols, i), "name"), NULL);
        if (!names[i]) {
            st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                         "file.load: the manifest of '%s' has no name for column %zu",
                         lo->file, i + 1);
            goto out;
        }
        for (size_t j = 0; lo->format == FILE_FMT_JSONL && j < i; j++)
            if (strcmp(names[j], names[i]) == 0) {
                st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                             "file.load: columns %zu and %zu of '%s' are both named '%s': "
                             "JSON objects need distinct keys (load as csv, or rename)",
                             j + 1, i + 1, lo->file, names[i]);
                goto out;
            }
    }

    struct stat tst;
    bool exists = stat(lo->path, &tst) == 0;
    if (!exists && errno != ENOENT && errno != ENOTDIR) { /* ENOTDIR: see make_parents */
        st = fail_errno(h, err, "stat", lo->path, errno);
        goto out;
    }
    if (exists && !S_ISREG(tst.st_mode)) {
        st = h->fail(err, ETL_EIO, "Etl.FileFailed", false, "cannot write '%s': it is %s",
                     lo->path, S_ISDIR(tst.st_mode) ? "a directory" : "not a regular file");
        goto out;
    }
    if (lo->append && exists) {
        old_fd = open(lo->path, O_RDONLY | O_CLOEXEC);
        if (old_fd < 0 || fstat(old_fd, &tst) < 0) {
            st = fail_errno(h, err, "open", lo->path, errno);
            goto out;
        }
    }
    if (!exists) {
        char at[4096];
        int e = make_parents(lo->path, at, sizeof at);
        if (e) {
            st = fail_errno(h, err, "create the directory", at, e);
            goto out;
        }
    }
    if ((st = tmp_create(&o, exists ? &tst : NULL, err)) != ETL_OK)
        goto out;
    bool has_header = false;
    if (old_fd >= 0 && tst.st_size > 0) {
        if ((st = copy_old(&o, old_fd, &tst, lo->format, names, n_cols, err)) != ETL_OK)
            goto out;
        has_header = true;
    }
    if (lo->format == FILE_FMT_CSV && !has_header) {
        size_t *lens = calloc(n_cols ? n_cols : 1, sizeof *lens);
        if (!lens) {
            st = h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n_cols; i++)
            lens[i] = strlen(names[i]);
        put_csv_record(&o, names, lens, n_cols);
        free(lens);
    }

    const char *const *f;
    const size_t *l;
    size_t n;
    uint64_t rows = 0, reported = 0;
    int rc;
    while ((rc = h->stage_read_row(r, &f, &l, &n, err)) > 0) {
        if (n != n_cols) {
            st = h->fail(err, ETL_EINVAL, "Etl.IntegrityError", false,
                         "file.load: row %" PRIu64 " of '%s' has %zu fields, the manifest %zu",
                         rows + 1, lo->file, n, n_cols);
            goto out;
        }
        if (lo->format == FILE_FMT_JSONL) {
            if ((st = put_json_record(&o, names, f, l, n, rows + 1, err)) != ETL_OK)
                goto out;
        } else {
            put_csv_record(&o, f, l, n);
        }
        if (o.error) {
            st = fail_errno(h, err, "write", o.tmp, o.error);
            goto out;
        }
        if (++rows % FILE_PROGRESS_ROWS == 0) {
            h->progress(task, FILE_PROGRESS_ROWS, o.bytes - reported);
            reported = o.bytes;
            if (h->cancelled(task)) {
                st = h->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                             "file.load to '%s' was cancelled after %" PRIu64 " rows; the "
                             "target is unchanged", lo->path, rows);
                goto out;
            }
        }
    }
    if (rc < 0) {
        st = err->status;
        goto out;
    }
    if ((st = tmp_commit(&o, err)) != ETL_OK)
        goto out;
    h->progress(task, rows % FILE_PROGRESS_ROWS, o.bytes - reported);

    res = h->json_new_object();
    if (!res || h->json_set(res, "path", h->json_new_string(lo->path, strlen(lo->path))) < 0 ||
        h->json_set(res, "rows", h->json_new_int((int64_t)rows)) < 0 ||
        h->json_set(res, "bytes", h->json_new_int((int64_t)o.bytes)) < 0) {
        st = h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true,
                     "out of memory after writing '%s'", lo->path);
        goto out;
    }
    *out_result = res;
    res = NULL;
out:
    if (res)
        h->json_decref(res);
    tmp_discard(&o);
    if (old_fd >= 0)
        close(old_fd);
    free(names);
    h->stage_read_close(r);
    return st;
}
