/* mysql.extract: a query's rows streamed into a staged CSV file with bounded memory.
 *
 * params --bind--> prepared statement, executed without a cursor and never stored
 * (mysql_stmt_fetch pulls one row at a time off the wire) --myc_result_text--> fields
 * --host->stage_row--> DIR/NAME.csv --host->stage_finish--> manifest (the result)
 *
 * Memory: one row per column buffer (grown to the largest value seen) plus the stage
 * writer's buffer, whatever the row count. The server keeps the result open while we
 * read, so the loop does nothing slow per row. */
#include "myc.h"

#include <stdlib.h>
#include <string.h>

etl_status myc_extract_run(const etl_host *h, etl_task *task, etl_conn *c,
                           const etl_json *params, etl_json **out_result, etl_error *err)
{
    static const char *const keys[] = {"connection", "sql", "params", "key", NULL};
    myc_report rep = {.host = h, .err = err, .what = "mysql.extract"};
    myc_params p = {0};
    myc_result r = {0};
    MYSQL_STMT *stmt = NULL;
    etl_stage_writer *w = NULL;
    etl_column *cols = NULL;
    const char **fields = NULL;
    size_t *lens = NULL;
    etl_status st = ETL_OK;
    const char *sql = NULL;
    myc_known_keys(&rep, params, keys);
    myc_check_sql(&rep, params, false);
    myc_get_string(&rep, params, "sql", &sql);
    if (rep.problems)
        return err->status;
    myc_watch(h, task, c);
    if ((st = myc_params_bind(h, h->json_get(params, "params"), "params", &p, err)) != ETL_OK)
        goto out;
    if ((st = myc_stmt_run(h, task, c, sql, &p, "the extract query", &stmt, err)) != ETL_OK)
        goto out;
    if ((st = myc_result_open(h, stmt, &r, err)) != ETL_OK)
        goto out;
    if (r.n == 0) {
        st = h->fail(err, ETL_EQUERY, "Etl.QueryFailed", false,
                     "mysql.extract: the statement returns no rows (it is not a query); use "
                     "sql.exec for statements");
        goto out;
    }
    cols = calloc(r.n, sizeof *cols);
    fields = calloc(r.n, sizeof *fields);
    lens = calloc(r.n, sizeof *lens);
    if (!cols || !fields || !lens) {
        st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < r.n; i++)
        cols[i] = (etl_column){.name = r.cols[i].name, .type = r.cols[i].type};
    if (!(w = h->stage_open(task, cols, r.n, NULL, err))) {
        st = err->status ? err->status : ETL_EIO;
        goto out;
    }
    uint64_t rows = 0, bytes = 0;
    int rc;
    while ((rc = myc_result_fetch(h, &r, err)) > 0) {
        if (myc_result_text(&r, fields, lens) != 0) {
            st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
            goto out;
        }
        if ((st = h->stage_row(w, fields, lens, err)) != ETL_OK)
            goto out;
        for (unsigned i = 0; i < r.n; i++)
            bytes += lens[i];
        if (++rows % MYC_PROGRESS_ROWS == 0) {
            h->progress(task, MYC_PROGRESS_ROWS, bytes);
            bytes = 0;
            if (h->cancelled(task)) {
                st = myc_cancelled(h, c, err, "the extract query");
                goto out;
            }
        }
    }
    if (rc < 0) {
        st = rc == -2 ? err->status
                      : myc_fail(h, task, c, stmt, "Etl.QueryFailed", "the extract query", err);
        goto out;
    }
    /* a KILL that came while the last rows were read ends the result early, cleanly */
    if (h->cancelled(task)) {
        st = myc_cancelled(h, c, err, "the extract query");
        goto out;
    }
    h->progress(task, rows % MYC_PROGRESS_ROWS, bytes);
    etl_stage_writer *done = w;
    w = NULL;
    st = h->stage_finish(done, out_result, err);
out:
    if (w)
        h->stage_abort(w);
    free(cols);
    free(fields);
    free(lens);
    myc_result_close(&r);
    /* closing mid-result reads the rest off the wire; after a KILL there is none */
    if (stmt && mysql_stmt_close(stmt) && st == ETL_OK)
        c->broken = true;
    myc_params_free(&p);
    return st;
}
