/* Internals of the `file` connector, shared by its three files: file.c (the connector
 * table and the Parameters checks), file_extract.c (file.extract) and file_load.c
 * (file.load). Only the public plugin interface is used: no engine header, no JSON
 * library. */
#ifndef ETL_FILE_CONNECTOR_H
#define ETL_FILE_CONNECTOR_H

#include <etlrun/connector.h>
#include <stdbool.h>
#include <stddef.h>

#define FILE_PROGRESS_ROWS 10000      /* progress and cancellation every this many rows */
#define FILE_MAX_LINE ((size_t)64 << 20) /* longest line read without quoting */

typedef enum file_format { FILE_FMT_UNKNOWN = 0, FILE_FMT_CSV, FILE_FMT_JSONL } file_format;

/* file.extract's Parameters, after the checks of file.c (strings borrowed from the
 * Parameters object). */
typedef struct file_extract_opts {
    const char *path;
    file_format format;
    bool header;               /* csv: the first record names the columns */
    const etl_json *columns;   /* NULL, an array of names, or (jsonl) an object name -> path */
    char delimiter;            /* csv */
    char quote;                /* csv; '\0' = no quoting */
    bool empty_is_null;        /* csv: an unquoted empty field is NULL */
} file_extract_opts;

typedef struct file_load_opts {
    const char *file;          /* the staged file */
    const char *path;          /* the target */
    bool append;
    file_format format;
} file_load_opts;

etl_status file_extract_run(const etl_host *h, etl_task *task, const file_extract_opts *o,
                            etl_json **out_result, etl_error *err);
etl_status file_load_run(const etl_host *h, etl_task *task, const file_load_opts *o,
                         etl_json **out_result, etl_error *err);

/* The format a file name implies: .csv; .jsonl or .ndjson (any case); else unknown. */
file_format file_format_of(const char *path);
/* Offset of the first byte of s that does not start a valid UTF-8 sequence (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or len when all is valid. */
size_t file_utf8_invalid_at(const char *s, size_t len);
/* strerror_r that works with either variant's return convention. */
const char *file_strerror(int e, char *buf, size_t n);

#endif
