/* etlrun public error record: a status whose numbers never change, plus the ASL
 * error name and a one-line cause. Shared by the engine and connector plugins. */
#ifndef ETLRUN_ERROR_H
#define ETLRUN_ERROR_H

#include <stdarg.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Numbers are part of the ABI: append only, never renumber. */
typedef enum etl_status {
    ETL_OK = 0,
    ETL_ENOMEM = 1,      /* allocation failed */
    ETL_EINVAL = 2,      /* invalid argument or definition */
    ETL_EIO = 3,         /* local I/O failed (files, pipes, processes) */
    ETL_ETASK = 4,       /* the task's own work failed */
    ETL_ETIMEOUT = 5,    /* a deadline passed (States.Timeout) */
    ETL_ECANCELLED = 6,  /* the work was cancelled */
    ETL_ERUNTIME = 7,    /* payload processing failed (paths, templates, intrinsics) */
    ETL_ECONNECT = 8,    /* a connection could not be made or was lost */
    ETL_EQUERY = 9,      /* a query failed on the server */
} etl_status;

#define ETL_ERROR_NAME_MAX 64
#define ETL_ERROR_CAUSE_MAX 2048 /* longer causes are truncated with "..." */

typedef struct etl_error {
    etl_status status;
    char name[ETL_ERROR_NAME_MAX];   /* ASL error name, e.g. "States.Timeout" */
    char cause[ETL_ERROR_CAUSE_MAX]; /* one line a person can act on */
    bool transient;                  /* a Retry may succeed */
} etl_error;

#ifdef ETLRUN_INTERNAL
/* Inside etlrun only (plugins fill errors with host->fail, see connector.h). */

/* Fill *err (when err is not NULL) and return status. The cause is printf-formatted;
 * an over-long cause is truncated. Never put a secret in a cause. */
etl_status etl_fail(etl_error *err, etl_status status, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
etl_status etl_vfail(etl_error *err, etl_status status, const char *name, const char *fmt,
                     va_list ap);
/* Reset *err to ETL_OK with empty name and cause. */
void etl_error_clear(etl_error *err);
#endif

#ifdef __cplusplus
}
#endif
#endif
