/* What people see of a run: the live progress line (terminal only) and the summary at
 * the end, both built from the scheduler's events (sched_options.observe).
 *
 * Keys: a task's Parameters.key (see the TaskSucceeded/TaskFailed/TaskTimedOut events'
 * "key"). A key's status is that of its last task: ok, or failed (even when a Catch
 * then handled it). Rows and bytes are the largest seen for the key (an extract and its
 * load move the same rows); its duration is the sum of its tasks' durations (every
 * attempt); attempts, the highest "attempt" seen. Tasks without a key are in no total.
 *
 * The observer also writes the operator's log lines (log.h): the start and end of the
 * execution (a failure at error level), each task with a key done (info; key-less at
 * debug), task failures and timeouts, Map iteration failures and catches (warn),
 * retries (info). The progress total of keys is the number seen, or the items of the
 * top-level Maps when a "MapStarted" event ({"items": n}) reports them.
 *
 * Threads: the report is used on sched_run's thread, during the run and after it. */
#ifndef ETL_REPORT_H
#define ETL_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "scheduler.h"

typedef struct report report;

/* progress: draw the live line on stderr (the caller decides: a terminal, not --quiet). */
report *report_new(bool progress);
void report_free(report *r);
/* The observer to put in sched_options.observe (arg = the report). Scheduler thread. */
void report_observe(void *arg, const json_t *event);
/* Clear the progress line (before printing anything else on stderr). */
void report_clear_progress(report *r);
/* The summary (NEW reference):
 * {"pipeline", "run_id", "status": "succeeded|failed|cancelled", "started", "ended",
 *  "duration_s", "transitions", "error": {"name","cause"} | null, "errors_caught": n,
 *  "keys": [{"key","status","rows","bytes","duration_s","attempts","error"}...] (in
 *  first-seen order), "totals": {"keys","ok","failed","rows","bytes"},
 *  "slowest": [up to 5 {"key","duration_s"} by duration, longest first]}
 * Errors are {"name","cause"} or null; "started"/"ended" come from the execution's
 * events (else the report's creation and now); duration_s is in seconds (ms precision).
 * errors_caught: StateCaught events + Map iteration failures that did not fail the Map. */
json_t *report_summary(report *r, const char *pipeline, const char *run_id,
                       const sched_outcome *out);
/* Print a summary for a person: a table of keys (failed first, at most 50 rows, then
 * a count of the rest), totals, the slowest keys, the error. */
void report_print(const json_t *summary, FILE *out, bool color);
/* Errors that a Catch or a Map tolerance handled (for --strict, exit code 3). */
int report_errors_caught(const report *r);

#endif
