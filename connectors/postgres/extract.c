/* postgres.extract: stream a query's rows into a staged CSV file with bounded memory.
 *
 * BEGIN READ ONLY; DECLARE a NO SCROLL cursor for the query (bound parameters); FETCH
 * batches until one comes back short; COMMIT; then the staged file is completed and
 * its manifest is the result. Each FETCH is sent before the previous batch is written,
 * and read from the socket while it is written, so the server produces the next batch
 * while this thread writes the current one.
 * Batches hold up to PG_FETCH_MAX rows, fewer when rows are wide, so a batch stays near
 * PG_FETCH_TARGET bytes (two batches are alive at once at most). Values are staged as
 * text exactly as postgres.query shows them (types.c). */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CURSOR "etlrun_extract"
#define FIRST_FETCH 256 /* rows in the first batch, before row sizes are known */
#define PG_READ_EVERY 4096 /* fields written between reads of the next batch */

typedef struct extract {
    const etl_host *h;
    etl_task *task;
    etl_conn *c;
    int n_cols;
    pg_kind *kinds;
    const char **fields;
    size_t *lens;
    char *scratch;            /* n_cols * PG_SCRATCH */
    etl_stage_writer *w;
    uint64_t rows;
    bool in_flight;           /* the next FETCH is on its way */
} extract;

/* The complete result of the FETCH in flight (its status checked). */
static etl_status fetch_wait(extract *x, PGresult **out, etl_error *err)
{
    const etl_host *h = x->h;
    PGresult *res = NULL, *tail = NULL;
    etl_status st = pg_next(h, x->task, x->c, &res, err);
    if (st == ETL_OK && !res)
        st = pg_result_fail(h, x->task, x->c, NULL, "the FETCH", PG_FAIL_QUERY, err);
    if (st != ETL_OK)
        return st;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        st = pg_result_fail(h, x->task, x->c, res, "the query", PG_FAIL_QUERY, err);
        PQclear(res);
        pg_abort(x->c, st);
        return st;
    }
    while ((st = pg_next(h, x->task, x->c, &tail, err)) == ETL_OK && tail)
        PQclear(tail);
    if (st != ETL_OK) {
        PQclear(res);
        return st;
    }
    *out = res;
    return ETL_OK;
}

static etl_status send_fetch(extract *x, int n, etl_error *err)
{
    char sql[64];
    snprintf(sql, sizeof sql, "FETCH %d FROM " CURSOR, n);
    return pg_dispatch(x->h, x->task, x->c, sql, 0, NULL, false, err);
}

/* Rows for the next FETCH: as many as fit PG_FETCH_TARGET at this batch's row size,
 * estimated from up to 64 rows spread over it (libpq keeps about 16 bytes per field
 * besides the text). */
static int next_batch(const PGresult *res, int n_rows, int n_cols)
{
    if (n_rows == 0)
        return PG_FETCH_MAX;
    size_t bytes = 0, sampled = 0;
    int step = n_rows > 64 ? n_rows / 64 : 1;
    for (int r = 0; r < n_rows; r += step, sampled++)
        for (int i = 0; i < n_cols; i++)
            bytes += (size_t)PQgetlength(res, r, i) + 17;
    size_t per_row = bytes / sampled + 1;
    size_t n = PG_FETCH_TARGET / per_row;
    return n < 100 ? 100 : n > PG_FETCH_MAX ? PG_FETCH_MAX : (int)n;
}

/* Set up columns and open the staged file from the first batch's description. */
static etl_status start(extract *x, const PGresult *res, etl_error *err)
{
    const etl_host *h = x->h;
    x->n_cols = PQnfields(res);
    size_t n = (size_t)x->n_cols + 1;
    etl_column *cols = calloc(n, sizeof *cols);
    const char **types = calloc(n, sizeof *types);
    x->kinds = calloc(n, sizeof *x->kinds);
    x->fields = calloc(n, sizeof *x->fields);
    x->lens = calloc(n, sizeof *x->lens);
    x->scratch = malloc(n * PG_SCRATCH);
    etl_status st = ETL_OK;
    if (!cols || !types || !x->kinds || !x->fields || !x->lens || !x->scratch) {
        st = h->fail(err, ETL_ENOMEM, "Etl.StagingFailed", false, "postgres: out of memory");
        goto out;
    }
    if (x->n_cols == 0) {
        st = h->fail(err, ETL_EINVAL, "Etl.QueryFailed", false,
                     "postgres: the extract query returns no columns; select the columns to "
                     "stage");
        goto out;
    }
    if ((st = pg_column_types(h, x->task, x->c, res, types, err)) != ETL_OK)
        goto out;
    for (int i = 0; i < x->n_cols; i++) {
        cols[i].name = PQfname(res, i);
        cols[i].type = types[i];
        x->kinds[i] = pg_kind_of(PQftype(res, i));
    }
    if (!(x->w = h->stage_open(x->task, cols, (size_t)x->n_cols, NULL, err)))
        st = err->status != ETL_OK ? err->status : ETL_EIO;
out:
    free(cols);
    free(types);
    return st;
}

static etl_status write_batch(extract *x, const PGresult *res, int n_rows, uint64_t *out_bytes,
                              etl_error *err)
{
    const etl_host *h = x->h;
    uint64_t bytes = 0;
    int since_read = 0; /* fields written since the socket was last read */
    for (int r = 0; r < n_rows; r++) {
        /* Keep reading the next batch while this one is written: otherwise the server
         * stops once the socket buffer is full and the two sides take turns. Both calls
         * return at once (libpq's socket is non-blocking underneath). */
        if (x->in_flight && (since_read += x->n_cols) >= PG_READ_EVERY) {
            since_read = 0;
            if (PQconsumeInput(x->c->pg))
                (void)PQisBusy(x->c->pg); /* parses what arrived into the next result */
        }
        for (int i = 0; i < x->n_cols; i++) {
            size_t len = (size_t)PQgetlength(res, r, i);
            if (len == 0 && PQgetisnull(res, r, i)) { /* only an empty value can be NULL */
                x->fields[i] = NULL;
                x->lens[i] = 0;
                continue;
            }
            x->fields[i] = x->kinds[i] == PG_K_TEXT || x->kinds[i] == PG_K_INT ||
                                   x->kinds[i] == PG_K_FLOAT || x->kinds[i] == PG_K_JSON
                               ? PQgetvalue(res, r, i)
                               : pg_text(x->kinds[i], PQgetvalue(res, r, i), len,
                                         x->scratch + (size_t)i * PG_SCRATCH, &len);
            x->lens[i] = len;
            bytes += len;
        }
        etl_status st = h->stage_row(x->w, x->fields, x->lens, err);
        if (st != ETL_OK)
            return st;
    }
    x->rows += (uint64_t)n_rows;
    *out_bytes = bytes;
    return ETL_OK;
}

etl_status pg_extract_run(const etl_host *h, etl_task *task, etl_conn *c, const pg_opts *o,
                          etl_json **out_result, etl_error *err)
{
    extract x = {.h = h, .task = task, .c = c};
    pg_params p;
    PGresult *res = NULL;
    char *declare = NULL;
    etl_status st = pg_params_bind(h, o->params, "params", &p, err);
    if (st != ETL_OK)
        return st;
    pg_watch(h, task, c);
    size_t len = strlen(o->sql);
    if (!(declare = malloc(len + 64))) {
        st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
        goto out;
    }
    snprintf(declare, len + 64, "DECLARE " CURSOR " NO SCROLL CURSOR FOR %s", o->sql);
    if ((st = pg_run(h, task, c, "BEGIN READ ONLY", "BEGIN READ ONLY", 0, NULL, PG_FAIL_QUERY,
                     NULL, err)) != ETL_OK ||
        (st = pg_run(h, task, c, "the extract query", declare, p.n, p.values, PG_FAIL_QUERY,
                     NULL, err)) != ETL_OK)
        goto out;
    int want = FIRST_FETCH;
    if ((st = send_fetch(&x, want, err)) != ETL_OK)
        goto out;
    x.in_flight = true;
    for (;;) {
        if ((st = fetch_wait(&x, &res, err)) != ETL_OK)
            goto out;
        x.in_flight = false;
        if (!x.w && (st = start(&x, res, err)) != ETL_OK)
            goto out;
        int n_rows = PQntuples(res);
        /* a short batch is the last: no FETCH that would return nothing */
        if (n_rows == want) {
            want = next_batch(res, n_rows, x.n_cols);
            if ((st = send_fetch(&x, want, err)) != ETL_OK)
                goto out;
            x.in_flight = true;
        }
        uint64_t bytes = 0;
        if ((st = write_batch(&x, res, n_rows, &bytes, err)) != ETL_OK)
            goto out;
        PQclear(res);
        res = NULL;
        h->progress(task, (uint64_t)n_rows, bytes);
        if (!x.in_flight)
            break;
        if (h->cancelled(task)) {
            st = pg_cancelled(h, err, "the extract");
            goto out;
        }
    }
    if ((st = pg_run(h, task, c, "COMMIT", "COMMIT", 0, NULL, PG_FAIL_QUERY, NULL, err)) != ETL_OK)
        goto out;
    etl_stage_writer *w = x.w;
    x.w = NULL;
    st = h->stage_finish(w, out_result, err);
out:
    PQclear(res);
    if (st != ETL_OK) {
        h->stage_abort(x.w);
        pg_abort(c, st); /* drains a FETCH in flight, unless c is to be dropped */
    }
    pg_unwatch(h, task);
    pg_params_free(h, &p);
    free(declare);
    free(x.kinds);
    free(x.fields);
    free(x.lens);
    free(x.scratch);
    return st;
}
