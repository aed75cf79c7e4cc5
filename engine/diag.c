/* Diagnostics: definition errors collected with their position and printed as
 * FILE:LINE:COL: message. The loader, the compiler and the states all write here, so
 * that `etlrun validate` reports every problem of a pipeline in one run.
 *
 * Entries are kept sorted by (line, col) from the moment they are added: insertion goes
 * after every entry of the same position (a stable sort), and the run of entries at
 * the same position is exactly where an identical message would be, so duplicates are
 * dropped on the way in. diag_count, diag_message and diag_print therefore all see the
 * same sorted, de-duplicated list. Not thread-safe: one diag per validating thread. */
#include "diag.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    doc_pos pos;
    char *text; /* the full "FILE:LINE:COL: message", owned */
} entry;

struct diag {
    char *file;
    entry *v;
    size_t n, cap;
    /* An error that could not be recorded for lack of memory must still make the
     * count non-zero, or a broken definition would pass validation. */
    bool lost;
    char *lost_text; /* preallocated "FILE: out of memory..." */
};

diag *diag_new(const char *file)
{
    diag *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    const char *f = file ? file : "";
    d->file = strdup(f);
    size_t lost_len = strlen(f) + 64;
    d->lost_text = malloc(lost_len);
    if (!d->file || !d->lost_text) {
        diag_free(d);
        return NULL;
    }
    snprintf(d->lost_text, lost_len, "%s: out of memory while recording an error", f);
    return d;
}

void diag_free(diag *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i].text);
    free(d->v);
    free(d->file);
    free(d->lost_text);
    free(d);
}

static int pos_cmp(doc_pos a, doc_pos b)
{
    if (a.line != b.line)
        return a.line < b.line ? -1 : 1;
    if (a.col != b.col)
        return a.col < b.col ? -1 : 1;
    return 0;
}

void diag_add(diag *d, doc_pos pos, const char *fmt, ...)
{
    if (!d)
        return;
    if (pos.line < 0)
        pos.line = 0;
    if (pos.col < 0 || pos.line == 0)
        pos.col = 0;

    char prefix[48];
    if (pos.line == 0)
        prefix[0] = '\0';
    else if (pos.col == 0)
        snprintf(prefix, sizeof prefix, "%d:", pos.line);
    else
        snprintf(prefix, sizeof prefix, "%d:%d:", pos.line, pos.col);

    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int mlen = vasprintf(&msg, fmt, ap);
    va_end(ap);
    char *text = NULL;
    if (mlen < 0 || asprintf(&text, "%s:%s %s", d->file, prefix, msg) < 0) {
        free(msg);
        d->lost = true;
        return;
    }
    free(msg);

    /* Upper bound: the first entry that sorts after pos. */
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pos_cmp(d->v[mid].pos, pos) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i > 0 && pos_cmp(d->v[i - 1].pos, pos) == 0; i--) {
        if (strcmp(d->v[i - 1].text, text) == 0) {
            free(text);
            return;
        }
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        entry *v = realloc(d->v, cap * sizeof *v);
        if (!v) {
            free(text);
            d->lost = true;
            return;
        }
        d->v = v;
        d->cap = cap;
    }
    memmove(d->v + lo + 1, d->v + lo, (d->n - lo) * sizeof *d->v);
    d->v[lo].pos = pos;
    d->v[lo].text = text;
    d->n++;
}

size_t diag_count(const diag *d)
{
    return d ? d->n + (d->lost ? 1 : 0) : 0;
}

const char *diag_file(const diag *d)
{
    return d ? d->file : "";
}

/* The out-of-memory note has no position, so it sorts first. */
static const char *message_at(const diag *d, size_t i)
{
    if (d->lost) {
        if (i == 0)
            return d->lost_text;
        i--;
    }
    return i < d->n ? d->v[i].text : NULL;
}

void diag_print(const diag *d, FILE *out)
{
    size_t n = diag_count(d);
    for (size_t i = 0; i < n; i++) {
        fputs(message_at(d, i), out);
        fputc('\n', out);
    }
}

const char *diag_message(diag *d, size_t i)
{
    return d ? message_at(d, i) : NULL;
}
