/* General CSV reader (RFC 4180 plus a delimiter/quote dialect): streams records from a
 * file in bounded memory. The staged-file reader (stage.c) is built on it; connectors
 * reach it through host->csv_*.
 *
 * DESIGN: a byte-level state machine that may stop at any byte, so quoted fields, CRLF
 * pairs and "" escapes can straddle the fixed 64 KiB read buffer. Unquoted runs are
 * scanned with a class table and quoted runs with memchr, then copied into the record
 * buffer in one go. The record buffer and the field arrays grow as needed, but what one
 * record holds (field bytes + a NUL after each non-NULL field + FIELD_COST per field) is
 * bounded by max_record, so a hostile file cannot make the reader allocate more.
 * A bare CR (not followed by LF) outside quotes is data; CR LF and LF end a record. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stage.h"

#define READ_BUF (64 * 1024)
#define DEFAULT_MAX_RECORD ((size_t)64 << 20)
#define FIELD_COST (sizeof(const char *) + sizeof(size_t)) /* fields[] + lens[] */
#define NULL_LEN SIZE_MAX /* lens[i] marker for a NULL field while parsing */

#define FAIL_IO "Etl.StagingFailed"
#define FAIL_CSV "Etl.IntegrityError"

struct csv_reader {
    int fd;
    char *path;               /* for messages */
    unsigned char delim, quote;
    bool has_quote, empty_is_null;
    size_t max_record;
    unsigned char special[256]; /* bytes that end an unquoted run */
    unsigned char *buf;       /* READ_BUF bytes; buf[pos..len) unread */
    size_t pos, len;
    bool eof, failed;
    char *rec;                /* field bytes of the current record, each non-NULL one
                                 followed by a NUL */
    size_t rec_len, rec_cap;
    const char **fields;      /* handed out; NULL = SQL NULL */
    size_t *lens;
    size_t n_fields, cap_fields;
    uint64_t line;            /* physical line of the next unread byte, from 1 */
    uint64_t last_line;       /* where the last returned record started */
};

enum { S_START, S_UNQ, S_QUO, S_QQ, S_CR, S_QCR };

static int malformed(csv_reader *r, etl_error *err, uint64_t line, const char *what)
{
    r->failed = true;
    etl_fail(err, ETL_EINVAL, FAIL_CSV, "%s:%" PRIu64 ": %s", r->path, line, what);
    return -1;
}

static int too_long(csv_reader *r, etl_error *err, uint64_t rec_line)
{
    r->failed = true;
    etl_fail(err, ETL_EINVAL, FAIL_CSV,
             "%s:%" PRIu64 ": record longer than the limit of %zu bytes (max_record)",
             r->path, rec_line, r->max_record);
    return -1;
}

static int no_memory(csv_reader *r, etl_error *err)
{
    r->failed = true;
    etl_fail(err, ETL_ENOMEM, FAIL_IO, "%s: out of memory reading a record", r->path);
    return -1;
}

static int append_slow(csv_reader *r, const void *src, size_t n, uint64_t rec_line,
                       etl_error *err)
{
    if (n > r->max_record || r->rec_len + n + r->n_fields * FIELD_COST > r->max_record)
        return too_long(r, err, rec_line);
    if (r->rec_len + n > r->rec_cap) {
        size_t cap = r->rec_cap ? r->rec_cap : 256;
        while (cap < r->rec_len + n)
            cap *= 2;
        char *p = realloc(r->rec, cap);
        if (!p)
            return no_memory(r, err);
        r->rec = p;
        r->rec_cap = cap;
    }
    memcpy(r->rec + r->rec_len, src, n);
    r->rec_len += n;
    return 0;
}

/* The hot path: room in the buffer and within the limit (n is at most READ_BUF). */
static inline int append(csv_reader *r, const void *src, size_t n, uint64_t rec_line,
                         etl_error *err)
{
    size_t end = r->rec_len + n;
    if (end > r->rec_cap || end + r->n_fields * FIELD_COST > r->max_record)
        return append_slow(r, src, n, rec_line, err);
    memcpy(r->rec + r->rec_len, src, n);
    r->rec_len = end;
    return 0;
}

/* Close the field that started at rec offset start. */
static inline int end_field(csv_reader *r, size_t start, bool quoted, uint64_t rec_line,
                     etl_error *err)
{
    size_t len = r->rec_len - start;
    bool is_null = len == 0 && !quoted && r->empty_is_null;
    if (r->rec_len + !is_null + (r->n_fields + 1) * FIELD_COST > r->max_record)
        return too_long(r, err, rec_line);
    if (r->n_fields == r->cap_fields) {
        size_t cap = r->cap_fields ? r->cap_fields * 2 : 16;
        size_t *lens = realloc(r->lens, cap * sizeof *lens);
        if (!lens)
            return no_memory(r, err);
        r->lens = lens;
        const char **fields = realloc(r->fields, cap * sizeof *fields);
        if (!fields)
            return no_memory(r, err);
        r->fields = fields;
        r->cap_fields = cap;
    }
    r->lens[r->n_fields++] = is_null ? NULL_LEN : len;
    if (is_null)
        return 0;
    if (r->rec_len < r->rec_cap) { /* the limit was checked above */
        r->rec[r->rec_len++] = '\0';
        return 0;
    }
    return append_slow(r, "", 1, rec_line, err);
}

static int fill(csv_reader *r, etl_error *err)
{
    ssize_t k;
    do
        k = read(r->fd, r->buf, READ_BUF);
    while (k < 0 && errno == EINTR);
    if (k < 0) {
        r->failed = true;
        etl_fail(err, ETL_EIO, FAIL_IO, "%s: read failed: %s", r->path, strerror(errno));
        return -1;
    }
    r->pos = 0;
    r->len = (size_t)k;
    if (k == 0)
        r->eof = true;
    return 0;
}

static void count_lines(csv_reader *r, const unsigned char *p, size_t n)
{
    const unsigned char *end = p + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        r->line++;
        p++;
    }
}

csv_reader *csv_reader_open(const char *path, const csv_dialect *d, etl_error *err)
{
    csv_dialect dd = d ? *d : (csv_dialect){',', '"', false, 0};
    if (!dd.delimiter)
        dd.delimiter = ',';
    if (!path || dd.delimiter == '\r' || dd.delimiter == '\n' || dd.quote == '\r' ||
        dd.quote == '\n' || dd.quote == dd.delimiter) {
        etl_fail(err, ETL_EINVAL, FAIL_IO,
                 "CSV reader for %s: the delimiter and quote must differ and be neither CR "
                 "nor LF", path ? path : "(null)");
        return NULL;
    }
    csv_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path)) || !(r->buf = malloc(READ_BUF))) {
        etl_fail(err, ETL_ENOMEM, FAIL_IO, "%s: out of memory opening a CSV reader", path);
        goto fail;
    }
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        etl_fail(err, ETL_EIO, FAIL_IO, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    r->delim = (unsigned char)dd.delimiter;
    r->quote = (unsigned char)dd.quote;
    r->has_quote = dd.quote != '\0';
    r->empty_is_null = dd.empty_is_null;
    /* Clamped so that the limit arithmetic in append/end_field cannot overflow. */
    r->max_record = dd.max_record ? dd.max_record : DEFAULT_MAX_RECORD;
    if (r->max_record > SIZE_MAX / 4)
        r->max_record = SIZE_MAX / 4;
    r->special[r->delim] = r->special['\r'] = r->special['\n'] = 1;
    if (r->has_quote)
        r->special[r->quote] = 1;
    r->line = 1;
    return r;
fail:
    if (r) {
        free(r->buf);
        free(r->path);
        free(r);
    }
    return NULL;
}

int csv_reader_row(csv_reader *r, const char *const **out_fields, const size_t **out_lens,
                   size_t *out_n, etl_error *err)
{
    if (r->failed) {
        etl_fail(err, ETL_EINVAL, FAIL_CSV, "%s: reading stopped at an earlier error", r->path);
        return -1;
    }
    r->rec_len = 0;
    r->n_fields = 0;
    const uint64_t rec_line = r->line;
    uint64_t quote_line = 0;  /* where the open quoted field started */
    int st = S_START;
    size_t start = 0;         /* rec offset of the current field */
    bool started = false;
    const unsigned char q = r->quote, delim = r->delim;

    for (;;) {
        if (r->pos == r->len) {
            if (!r->eof && fill(r, err) < 0)
                return -1;
            if (r->eof)
                break;
        }
        started = true;
        const unsigned char *b = r->buf;
        size_t i = r->pos, n = r->len;
        while (i < n) {
            unsigned char c = b[i];
            switch (st) {
            case S_START:
                start = r->rec_len;
                if (r->has_quote && c == q) {
                    i++;
                    quote_line = r->line;
                    st = S_QUO;
                    continue;
                }
                st = S_UNQ;
                /* fall through */
            case S_UNQ: {
                size_t j = i;
                while (j < n && !r->special[b[j]])
                    j++;
                if (j > i && append(r, b + i, j - i, rec_line, err) < 0)
                    return -1;
                i = j;
                if (i == n)
                    continue;
                c = b[i++];
                if (c == delim) {
                    if (end_field(r, start, false, rec_line, err) < 0)
                        return -1;
                    st = S_START;
                } else if (c == '\n') {
                    r->line++;
                    r->pos = i;
                    if (end_field(r, start, false, rec_line, err) < 0)
                        return -1;
                    goto record_done;
                } else if (c == '\r') {
                    st = S_CR;
                } else {
                    return malformed(r, err, r->line, "quote inside an unquoted field");
                }
                continue;
            }
            case S_CR:
                if (c == '\n') {
                    r->line++;
                    r->pos = i + 1;
                    if (end_field(r, start, false, rec_line, err) < 0)
                        return -1;
                    goto record_done;
                }
                /* A bare CR is data; c is looked at again as part of the field. */
                if (append(r, "\r", 1, rec_line, err) < 0)
                    return -1;
                st = S_UNQ;
                continue;
            case S_QUO: {
                const unsigned char *qp = memchr(b + i, q, n - i);
                size_t j = qp ? (size_t)(qp - b) : n;
                count_lines(r, b + i, j - i);
                if (j > i && append(r, b + i, j - i, rec_line, err) < 0)
                    return -1;
                i = qp ? j + 1 : n;
                if (qp)
                    st = S_QQ;
                continue;
            }
            case S_QQ:
                i++;
                if (c == q) {
                    if (append(r, &q, 1, rec_line, err) < 0)
                        return -1;
                    st = S_QUO;
                } else if (c == delim) {
                    if (end_field(r, start, true, rec_line, err) < 0)
                        return -1;
                    st = S_START;
                } else if (c == '\n') {
                    r->line++;
                    r->pos = i;
                    if (end_field(r, start, true, rec_line, err) < 0)
                        return -1;
                    goto record_done;
                } else if (c == '\r') {
                    st = S_QCR;
                } else {
                    return malformed(r, err, r->line, "text after a closing quote");
                }
                continue;
            case S_QCR:
                if (c != '\n')
                    return malformed(r, err, r->line, "text after a closing quote");
                r->line++;
                r->pos = i + 1;
                if (end_field(r, start, true, rec_line, err) < 0)
                    return -1;
                goto record_done;
            }
        }
        r->pos = i;
    }

    /* End of file. */
    if (!started)
        return 0;
    switch (st) {
    case S_QUO:
        return malformed(r, err, quote_line,
                         "unterminated quoted field (the quote opened here is never closed)");
    case S_QCR:
        return malformed(r, err, r->line, "text after a closing quote");
    case S_CR:
        if (append(r, "\r", 1, rec_line, err) < 0)
            return -1;
        /* fall through */
    default:
        if (st == S_START)
            start = r->rec_len; /* "a," at EOF: a last, empty field */
        if (end_field(r, start, st == S_QQ, rec_line, err) < 0)
            return -1;
    }

record_done: {
    size_t off = 0;
    for (size_t k = 0; k < r->n_fields; k++) {
        if (r->lens[k] == NULL_LEN) {
            r->fields[k] = NULL;
            r->lens[k] = 0;
        } else {
            r->fields[k] = r->rec + off;
            off += r->lens[k] + 1;
        }
    }
}
    r->last_line = rec_line;
    *out_fields = r->fields;
    *out_lens = r->lens;
    *out_n = r->n_fields;
    return 1;
}

uint64_t csv_reader_line(const csv_reader *r)
{
    return r->last_line;
}

ssize_t csv_reader_read(csv_reader *r, char *buf, size_t cap, etl_error *err)
{
    if (r->failed) {
        etl_fail(err, ETL_EINVAL, FAIL_CSV, "%s: reading stopped at an earlier error", r->path);
        return -1;
    }
    if (r->pos < r->len) { /* what the parser read ahead comes first */
        size_t n = r->len - r->pos < cap ? r->len - r->pos : cap;
        memcpy(buf, r->buf + r->pos, n);
        r->pos += n;
        return (ssize_t)n;
    }
    if (r->eof || cap == 0)
        return 0;
    ssize_t k;
    do
        k = read(r->fd, buf, cap); /* straight into the caller's buffer */
    while (k < 0 && errno == EINTR);
    if (k < 0) {
        r->failed = true;
        etl_fail(err, ETL_EIO, FAIL_IO, "%s: read failed: %s", r->path, strerror(errno));
        return -1;
    }
    if (k == 0)
        r->eof = true;
    return k;
}

void csv_reader_close(csv_reader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    free(r->rec);
    free(r->fields);
    free(r->lens);
    free(r->path);
    free(r);
}
