/* file.extract: a CSV or JSON-lines file streamed into the task's staged file.
 *
 * source file --(host csv reader | line reader)--> records --host->stage_row--> staged CSV
 *
 * Memory is one record whatever the file size: quoted CSV is read by the host's CSV
 * reader, JSON lines and CSV without quoting by the line reader below (64 KiB of
 * buffer plus the longest line). Every field is checked to be UTF-8 (JSON text is
 * checked by the parser), so a staged file from here is always text. */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_BUF ((size_t)64 << 10)

static const char BOM[3] = {'\xEF', '\xBB', '\xBF'};

static etl_status fail_errno(const etl_host *h, etl_error *err, const char *what,
                             const char *path, int e)
{
    char eb[128];
    return h->fail(err, ETL_EIO, "Etl.FileFailed", false, "cannot %s '%s': %s", what, path,
                   file_strerror(e, eb, sizeof eb));
}

static etl_status fail_nomem(const etl_host *h, etl_error *err, const char *path)
{
    return h->fail(err, ETL_ENOMEM, "Etl.FileFailed", true, "out of memory reading '%s'", path);
}

/* Errors of the host's CSV reader: I/O becomes Etl.FileFailed, a malformed record
 * Etl.InvalidInput; the cause (which names the file and the line) is kept. */
static etl_status retag(const etl_host *h, etl_error *err)
{
    char cause[ETL_ERROR_CAUSE_MAX];
    if (err->status != ETL_EIO && err->status != ETL_EINVAL)
        return err->status;
    snprintf(cause, sizeof cause, "%s", err->cause);
    bool io = err->status == ETL_EIO;
    return h->fail(err, err->status, io ? "Etl.FileFailed" : "Etl.InvalidInput", false, "%s",
                   cause);
}

/* Open path for reading, with a cause a person can act on. -1 with err filled. */
static int open_source(const etl_host *h, const char *path, etl_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail_errno(h, err, "open", path, errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        fail_errno(h, err, "stat", path, errno);
        close(fd);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        h->fail(err, ETL_EIO, "Etl.FileFailed", false, "cannot read '%s': it is a directory",
                path);
        close(fd);
        return -1;
    }
    return fd;
}

/* ---------- lines (JSON lines, and CSV without quoting) ---------- */

typedef struct line_reader {
    int fd;                /* -1 = closed */
    const char *path;
    char *buf;             /* READ_BUF bytes */
    size_t pos, end;       /* unread bytes: buf[pos, end) */
    char *acc;             /* a line spanning reads, up to FILE_MAX_LINE bytes */
    size_t acc_len, acc_cap;
    uint64_t line;         /* number of the line last returned, from 1 */
    bool eof;
} line_reader;

static etl_status lr_open(const etl_host *h, line_reader *r, const char *path, etl_error *err)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    r->fd = open_source(h, path, err);
    if (r->fd < 0)
        return err->status;
    r->buf = malloc(READ_BUF);
    if (!r->buf)
        return fail_nomem(h, err, path);
    return ETL_OK;
}

static void lr_close(line_reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    free(r->buf);
    free(r->acc);
    r->buf = r->acc = NULL;
}

static etl_status lr_keep(const etl_host *h, line_reader *r, const char *s, size_t n,
                          etl_error *err)
{
    if (n == 0)
        return ETL_OK;
    if (n > FILE_MAX_LINE - r->acc_len)
        return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                       "%s:%" PRIu64 ": the line is longer than %zu MiB", r->path, r->line + 1,
                       FILE_MAX_LINE >> 20);
    if (r->acc_len + n > r->acc_cap) {
        size_t cap = r->acc_cap ? r->acc_cap : READ_BUF;
        while (cap < r->acc_len + n)
            cap *= 2;
        char *p = realloc(r->acc, cap);
        if (!p)
            return fail_nomem(h, err, r->path);
        r->acc = p;
        r->acc_cap = cap;
    }
    memcpy(r->acc + r->acc_len, s, n);
    r->acc_len += n;
    return ETL_OK;
}

/* Next line without its "\n" or "\r\n": 1, 0 at the end, -1 with err filled. The
 * line is valid until the next call. A last line without "\n" is a line. */
static int lr_next(const etl_host *h, line_reader *r, const char **out, size_t *out_len,
                   etl_error *err)
{
    r->acc_len = 0;
    bool partial = false;
    for (;;) {
        if (r->pos < r->end) {
            char *s = r->buf + r->pos;
            char *nl = memchr(s, '\n', r->end - r->pos);
            size_t n = nl ? (size_t)(nl - s) : r->end - r->pos;
            if (nl && !partial) {
                *out = s; /* the common case: the whole line is in the buffer */
                *out_len = n;
            } else if (lr_keep(h, r, s, n, err) != ETL_OK) {
                return -1;
            }
            r->pos += n + (nl ? 1 : 0);
            if (nl)
                goto line;
            partial = true;
        }
        if (r->eof) {
            if (!partial)
                return 0;
            goto line;
        }
        ssize_t k;
        while ((k = read(r->fd, r->buf, READ_BUF)) < 0 && errno == EINTR)
            ;
        if (k < 0) {
            fail_errno(h, err, "read", r->path, errno);
            return -1;
        }
        r->pos = 0;
        r->end = (size_t)k;
        r->eof = k == 0;
    }
line:
    if (partial) {
        *out = r->acc;
        *out_len = r->acc_len;
    }
    if (*out_len && (*out)[*out_len - 1] == '\r')
        (*out_len)--;
    r->line++;
    return 1;
}

/* ---------- CSV records ---------- */

typedef struct source {
    const etl_host *h;
    const char *path;
    etl_csv_reader *csv;    /* quoted CSV: the host's reader */
    line_reader lines;      /* CSV without quoting: one record per line */
    char delimiter;
    bool empty_is_null;
    const char **fields;    /* a split line */
    size_t *lens;
    size_t cap;
} source;

static etl_status source_open(const etl_host *h, source *src, const file_extract_opts *o,
                              etl_error *err)
{
    memset(src, 0, sizeof *src);
    src->h = h;
    src->path = o->path;
    src->lines.fd = -1;
    src->delimiter = o->delimiter;
    src->empty_is_null = o->empty_is_null;
    if (!o->quote)
        return lr_open(h, &src->lines, o->path, err);
    /* open it ourselves first: the cause then says exactly what is wrong */
    int fd = open_source(h, o->path, err);
    if (fd < 0)
        return err->status;
    close(fd);
    src->csv = h->csv_open(o->path, o->delimiter, o->quote, o->empty_is_null, err);
    return src->csv ? ETL_OK : retag(h, err);
}

static void source_close(source *src)
{
    if (src->csv)
        src->h->csv_close(src->csv);
    src->csv = NULL;
    lr_close(&src->lines);
    free(src->fields);
    free(src->lens);
    src->fields = NULL;
    src->lens = NULL;
}

static uint64_t source_line(const source *src)
{
    return src->csv ? src->h->csv_line(src->csv) : src->lines.line;
}

/* As host->csv_row. */
static int source_next(source *src, const char *const **out_fields, const size_t **out_lens,
                       size_t *out_n, etl_error *err)
{
    if (src->csv) {
        int rc = src->h->csv_row(src->csv, out_fields, out_lens, out_n, err);
        if (rc < 0)
            retag(src->h, err);
        return rc;
    }
    const char *s;
    size_t len;
    int rc = lr_next(src->h, &src->lines, &s, &len, err);
    if (rc <= 0)
        return rc;
    size_t n = 0;
    for (size_t i = 0;; n++) {
        const char *d = memchr(s + i, src->delimiter, len - i);
        size_t flen = d ? (size_t)(d - (s + i)) : len - i;
        if (n == src->cap) {
            size_t cap = src->cap ? src->cap * 2 : 16;
            const char **f = realloc(src->fields, cap * sizeof *f);
            if (f)
                src->fields = f;
            size_t *l = realloc(src->lens, cap * sizeof *l);
            if (l)
                src->lens = l;
            if (!f || !l) {
                fail_nomem(src->h, err, src->path);
                return -1;
            }
            src->cap = cap;
        }
        src->fields[n] = flen == 0 && src->empty_is_null ? NULL : s + i;
        src->lens[n] = flen;
        if (!d) {
            n++;
            break;
        }
        i += flen + 1;
    }
    *out_fields = src->fields;
    *out_lens = src->lens;
    *out_n = n;
    return 1;
}

/* ---------- columns ---------- */

typedef struct colset {
    etl_column *cols;
    size_t n;
    char *store;            /* names copied from the file */
    etl_path **paths;       /* jsonl `columns: {name: path}`: one per column */
} colset;

static void colset_free(const etl_host *h, colset *cs)
{
    if (cs->paths)
        for (size_t i = 0; i < cs->n; i++)
            h->path_free(cs->paths[i]);
    free(cs->paths);
    free(cs->cols);
    free(cs->store);
    memset(cs, 0, sizeof *cs);
}

/* Names from the file (a CSV header or the keys of the first JSON object): copied,
 * and checked, since a staged header needs distinct, non-empty UTF-8 names. */
static etl_status colset_copy(const etl_host *h, colset *cs, const char *const *names,
                              const size_t *lens, size_t n, const char *path, uint64_t line,
                              etl_error *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = names[i] ? names[i] : "";
        size_t len = names[i] ? lens[i] : 0;
        if (len == 0 || memchr(name, '\0', len) || file_utf8_invalid_at(name, len) < len)
            return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                           "%s:%" PRIu64 ": column %zu has %s name: give columns to "
                           "name the columns", path, line, i + 1,
                           len == 0 ? "no" : "an invalid (not UTF-8 text)");
        for (size_t j = 0; j < i; j++)
            if (lens[j] == len && memcmp(names[j], name, len) == 0)
                return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                               "%s:%" PRIu64 ": columns %zu and %zu are both named "
                               "'%.*s': give columns to rename them", path, line, j + 1, i + 1,
                               (int)len, name);
        total += len + 1;
    }
    cs->cols = calloc(n ? n : 1, sizeof *cs->cols);
    cs->store = malloc(total ? total : 1);
    if (!cs->cols || !cs->store)
        return fail_nomem(h, err, path);
    char *p = cs->store;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, names[i], lens[i]);
        p[lens[i]] = '\0';
        cs->cols[i].name = p;
        p += lens[i] + 1;
    }
    cs->n = n;
    return ETL_OK;
}

/* Names from Parameters.columns (checked by file.c): a list, or an object name -> path. */
static etl_status colset_params(const etl_host *h, colset *cs, const etl_json *columns,
                                const char *path, etl_error *err)
{
    size_t n = h->json_size(columns);
    bool paths = h->json_type(columns) == ETL_JSON_OBJECT;
    cs->cols = calloc(n ? n : 1, sizeof *cs->cols);
    cs->paths = paths ? calloc(n ? n : 1, sizeof *cs->paths) : NULL;
    if (!cs->cols || (paths && !cs->paths))
        return fail_nomem(h, err, path);
    cs->n = n;
    for (size_t i = 0; i < n; i++) {
        if (!paths) {
            cs->cols[i].name = h->json_string(h->json_at(columns, i), NULL);
            continue;
        }
        etl_json *v = NULL;
        cs->cols[i].name = h->json_key_at(columns, i, &v);
        etl_error perr = {0};
        cs->paths[i] = h->path_compile(h->json_string(v, NULL), &perr);
        if (!cs->paths[i])
            return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                           "file.extract: Parameters: 'columns': column '%s': %s",
                           cs->cols[i].name, perr.cause);
    }
    return ETL_OK;
}

/* ---------- the run ---------- */

typedef struct counter {
    const etl_host *h;
    etl_task *task;
    const char *path;
    uint64_t rows;          /* staged so far */
    uint64_t bytes;         /* field bytes not yet reported */
} counter;

/* After each staged row: progress and a look at cancellation every 10,000 rows. */
static etl_status count_row(counter *c, etl_error *err)
{
    if (++c->rows % FILE_PROGRESS_ROWS)
        return ETL_OK;
    c->h->progress(c->task, FILE_PROGRESS_ROWS, c->bytes);
    c->bytes = 0;
    if (c->h->cancelled(c->task))
        return c->h->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                          "file.extract of '%s' was cancelled after %" PRIu64 " rows", c->path,
                          c->rows);
    return ETL_OK;
}

static etl_status finish(counter *c, etl_stage_writer **w, etl_json **out_result,
                         etl_error *err)
{
    etl_status st = c->h->stage_finish(*w, out_result, err);
    *w = NULL; /* freed either way */
    c->h->progress(c->task, c->rows % FILE_PROGRESS_ROWS, c->bytes);
    return st;
}

static etl_status check_utf8(const etl_host *h, const colset *cs, const char *const *f,
                             const size_t *l, const char *path, uint64_t line, etl_error *err)
{
    for (size_t i = 0; i < cs->n; i++) {
        size_t at = f[i] ? file_utf8_invalid_at(f[i], l[i]) : l[i];
        if (f[i] && at < l[i])
            return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                           "%s:%" PRIu64 ": column '%s' is not valid UTF-8 (byte 0x%02x "
                           "at offset %zu): only utf-8 files are read; convert the file first "
                           "(e.g. iconv -f latin1 -t utf-8)", path, line, cs->cols[i].name,
                           (unsigned char)f[i][at], at);
    }
    return ETL_OK;
}

/* Cut a UTF-8 byte order mark off the first field of the file's first record: the
 * record is then a copy in copy_f and copy_l (freed by the caller). */
static etl_status cut_bom(const etl_host *h, const char *path, const char *const **f,
                          const size_t **l, size_t n, const char ***copy_f, size_t **copy_l,
                          etl_error *err)
{
    if (!n || !(*f)[0] || (*l)[0] < 3 || memcmp((*f)[0], BOM, 3) != 0)
        return ETL_OK;
    *copy_f = malloc(n * sizeof **copy_f);
    *copy_l = malloc(n * sizeof **copy_l);
    if (!*copy_f || !*copy_l)
        return fail_nomem(h, err, path);
    memcpy(*copy_f, *f, n * sizeof **f);
    memcpy(*copy_l, *l, n * sizeof **l);
    (*copy_f)[0] += 3;
    (*copy_l)[0] -= 3;
    *f = *copy_f;
    *l = *copy_l;
    return ETL_OK;
}

static etl_status extract_csv(const etl_host *h, etl_task *task, const file_extract_opts *o,
                              etl_json **out_result, etl_error *err)
{
    source src;
    colset cs = {0};
    etl_stage_writer *w = NULL;
    counter c = {h, task, o->path, 0, 0};
    const char **bom_f = NULL; /* the first record without its byte order mark */
    size_t *bom_l = NULL;
    const char *const *f;
    const size_t *l;
    size_t n;
    int rc = 1;
    bool first = true; /* the next record is the file's first */
    etl_status st = source_open(h, &src, o, err);
    if (st != ETL_OK)
        goto out;
    if (o->header) {
        rc = source_next(&src, &f, &l, &n, err);
        if (rc < 0) {
            st = err->status;
            goto out;
        }
        if (rc == 0 && !o->columns) {
            st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                         "'%s' is empty: there is no header to name the columns (give "
                         "columns, or check the file)", o->path);
            goto out;
        }
        if (rc > 0) {
            first = false;
            if ((st = cut_bom(h, o->path, &f, &l, n, &bom_f, &bom_l, err)) != ETL_OK)
                goto out;
            if (o->columns && n != h->json_size(o->columns)) {
                st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                             "%s:%" PRIu64 ": the header has %zu fields but columns "
                             "names %zu", o->path, source_line(&src), n,
                             h->json_size(o->columns));
                goto out;
            }
            if (!o->columns &&
                (st = colset_copy(h, &cs, f, l, n, o->path, source_line(&src), err)) != ETL_OK)
                goto out;
        }
    }
    if (o->columns && (st = colset_params(h, &cs, o->columns, o->path, err)) != ETL_OK)
        goto out;
    w = h->stage_open(task, cs.cols, cs.n, NULL, err);
    if (!w) {
        st = err->status;
        goto out;
    }
    /* rc == 0 here: a header was wanted and the file is empty */
    while (rc != 0 && (rc = source_next(&src, &f, &l, &n, err)) > 0) {
        uint64_t line = source_line(&src);
        if (first && (st = cut_bom(h, o->path, &f, &l, n, &bom_f, &bom_l, err)) != ETL_OK)
            goto out;
        first = false;
        if (n != cs.n) {
            if (n == 1 && cs.n > 1 && (!f[0] || l[0] == 0))
                continue; /* a blank line */
            st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                         "%s:%" PRIu64 ": the record has %zu field%s, expected %zu",
                         o->path, line, n, n == 1 ? "" : "s", cs.n);
            goto out;
        }
        if ((st = check_utf8(h, &cs, f, l, o->path, line, err)) != ETL_OK)
            goto out;
        if ((st = h->stage_row(w, f, l, err)) != ETL_OK)
            goto out;
        for (size_t i = 0; i < n; i++)
            c.bytes += l[i];
        if ((st = count_row(&c, err)) != ETL_OK)
            goto out;
    }
    if (rc < 0) {
        st = err->status;
        goto out;
    }
    st = finish(&c, &w, out_result, err);
out:
    if (w)
        h->stage_abort(w);
    source_close(&src);
    colset_free(h, &cs);
    free(bom_f);
    free(bom_l);
    return st;
}

/* A JSON value as a field: strings as they are, integers exactly, reals in the shortest
 * form that reads back the same, true/false, objects and arrays as compact JSON, null
 * (and a missing key) as SQL NULL. *dump is set when the text was allocated. */
static etl_status json_field(const etl_host *h, const etl_json *v, char num[32],
                             const char **out, size_t *out_len, char **dump)
{
    int64_t i;
    bool b;
    *dump = NULL;
    switch (v ? h->json_type(v) : ETL_JSON_NULL) {
    case ETL_JSON_NULL:
        *out = NULL;
        *out_len = 0;
        return ETL_OK;
    case ETL_JSON_BOOL:
        h->json_bool(v, &b);
        *out = b ? "true" : "false";
        *out_len = b ? 4 : 5;
        return ETL_OK;
    case ETL_JSON_INT:
        h->json_int(v, &i);
        *out_len = (size_t)snprintf(num, 32, "%" PRId64, i);
        *out = num;
        return ETL_OK;
    case ETL_JSON_STRING:
        *out = h->json_string(v, out_len);
        return ETL_OK;
    default:
        *dump = h->json_dump(v, out_len);
        *out = *dump;
        return *dump ? ETL_OK : ETL_ENOMEM;
    }
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return false;
    return true;
}

static etl_status extract_jsonl(const etl_host *h, etl_task *task, const file_extract_opts *o,
                                etl_json **out_result, etl_error *err)
{
    line_reader lr;
    colset cs = {0};
    etl_stage_writer *w = NULL;
    etl_json *row = NULL;
    counter c = {h, task, o->path, 0, 0};
    const char **fields = NULL;
    size_t *lens = NULL;
    char *nums = NULL;   /* 32 bytes per column for integers */
    char **dumps = NULL; /* texts allocated for the current row */
    const char *s;
    size_t len;
    int rc = 0;
    etl_status st = lr_open(h, &lr, o->path, err);
    if (st != ETL_OK)
        goto out;
    if (o->columns && (st = colset_params(h, &cs, o->columns, o->path, err)) != ETL_OK)
        goto out;
    while ((rc = lr_next(h, &lr, &s, &len, err)) > 0) {
        if (lr.line == 1 && len >= 3 && memcmp(s, BOM, 3) == 0)
            s += 3, len -= 3;
        if (blank(s, len))
            continue;
        etl_error perr = {0};
        row = h->json_parse(s, len, &perr);
        if (!row) {
            /* the parser sees one line: its "line 1" would only mislead */
            static const char one[] = "invalid JSON at line 1, ";
            const char *why = perr.cause;
            if (strncmp(why, one, sizeof one - 1) == 0)
                why += sizeof one - 1;
            st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                         "%s:%" PRIu64 ": invalid JSON: %s", o->path, lr.line, why);
            goto out;
        }
        if (h->json_type(row) != ETL_JSON_OBJECT) {
            static const char *const names[] = {"null", "a boolean", "a number", "a number",
                                                "a string", "an array", "an object"};
            st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                         "%s:%" PRIu64 ": expected a JSON object, found %s", o->path,
                         lr.line, names[h->json_type(row)]);
            goto out;
        }
        if (!w) {
            if (!cs.n) {
                /* no columns given: the keys of the first object, in order */
                size_t n = h->json_size(row);
                fields = calloc(n ? n : 1, sizeof *fields);
                lens = calloc(n ? n : 1, sizeof *lens);
                if (!fields || !lens) {
                    st = fail_nomem(h, err, o->path);
                    goto out;
                }
                for (size_t i = 0; i < n; i++) {
                    fields[i] = h->json_key_at(row, i, NULL);
                    lens[i] = strlen(fields[i]);
                }
                if (n == 0) {
                    st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                                 "%s:%" PRIu64 ": the first object has no keys to name "
                                 "the columns: give columns", o->path, lr.line);
                    goto out;
                }
                st = colset_copy(h, &cs, fields, lens, n, o->path, lr.line, err);
                free(fields);
                free(lens);
                fields = NULL;
                lens = NULL;
                if (st != ETL_OK)
                    goto out;
            }
            fields = calloc(cs.n, sizeof *fields);
            lens = calloc(cs.n, sizeof *lens);
            nums = malloc(cs.n * 32);
            dumps = calloc(cs.n, sizeof *dumps);
            if (!fields || !lens || !nums || !dumps) {
                st = fail_nomem(h, err, o->path);
                goto out;
            }
            if (!(w = h->stage_open(task, cs.cols, cs.n, NULL, err))) {
                st = err->status;
                goto out;
            }
        }
        for (size_t i = 0; i < cs.n && st == ETL_OK; i++) {
            const etl_json *v = cs.paths ? h->path_get(cs.paths[i], row)
                                         : h->json_get(row, cs.cols[i].name);
            st = json_field(h, v, nums + 32 * i, &fields[i], &lens[i], &dumps[i]);
            c.bytes += lens[i];
        }
        if (st == ETL_OK)
            st = h->stage_row(w, fields, lens, err);
        else
            st = fail_nomem(h, err, o->path);
        for (size_t i = 0; i < cs.n; i++) {
            h->free(dumps[i]);
            dumps[i] = NULL;
        }
        h->json_decref(row);
        row = NULL;
        if (st != ETL_OK || (st = count_row(&c, err)) != ETL_OK)
            goto out;
    }
    if (rc < 0) {
        st = err->status;
        goto out;
    }
    if (!w && !cs.n) {
        st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                     "'%s' has no JSON object to name the columns: give columns", o->path);
        goto out;
    }
    if (!w && !(w = h->stage_open(task, cs.cols, cs.n, NULL, err))) {
        st = err->status;
        goto out;
    }
    st = finish(&c, &w, out_result, err);
out:
    if (row)
        h->json_decref(row);
    if (w)
        h->stage_abort(w);
    lr_close(&lr);
    colset_free(h, &cs);
    free(fields);
    free(lens);
    free(nums);
    free(dumps);
    return st;
}

etl_status file_extract_run(const etl_host *h, etl_task *task, const file_extract_opts *o,
                            etl_json **out_result, etl_error *err)
{
    *out_result = NULL;
    if (h->cancelled(task))
        return h->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                       "file.extract of '%s' was cancelled before it started", o->path);
    if (o->format == FILE_FMT_JSONL)
        return extract_jsonl(h, task, o, out_result, err);
    return extract_csv(h, task, o, out_result, err);
}
