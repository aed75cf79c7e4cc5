/* Logging for operators: every line on stderr (and/or --log-file) carries time, level,
 * run id and, where relevant, state, key and connection. Text on a terminal (colour
 * unless NO_COLOR is set or the stream is not a terminal), JSON lines with
 * --log-format json; --quiet keeps errors only (for cron mail).
 *
 * Text:  2026-11-22T03:00:00.123Z INFO  run=ID state=X key=K conn=C: msg
 *        (absent fields left out; "INFO  msg" when there are none; a value with a space,
 *        '"' or '=' is quoted; a newline in msg is written as "\n": one line per call)
 * JSON:  {"time","level":"error|warn|info|debug","run_id","state","key","connection",
 *        "msg"} (absent fields left out; invalid UTF-8 becomes U+FFFD)
 * On a terminal each line starts with "\r" + erase-line, wiping report.c's progress line.
 *
 * Thread-safe: lines are formatted into a buffer and written with one write(2) (lines
 * over 8 KB are cut, ending "..."). */
#ifndef ETL_LOG_H
#define ETL_LOG_H

#include <etlrun/connector.h>
#include <stdbool.h>

typedef enum log_format { LOG_TEXT = 0, LOG_JSON = 1 } log_format;

typedef struct log_config {
    log_format format;
    bool quiet;            /* errors only */
    bool verbose;          /* debug lines too */
    const char *file;      /* also append every line to this file (no colour), or NULL */
} log_config;

/* Configure (main thread, before any worker starts). Returns false with a message in
 * errbuf when the log file cannot be opened. Without log_open, lines go to stderr as
 * text, info level. */
bool log_open(const log_config *c, char *errbuf, size_t len);
void log_close(void);
/* The run id printed on every line from now on (copied). Main thread, like log_open. */
void log_set_run_id(const char *run_id);
/* One line. state, key, conn may be NULL or "" (absent). Never pass a secret. */
void log_msg(etl_log_level level, const char *state, const char *key, const char *conn,
             const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* True when level would be printed (to skip formatting work). */
bool log_enabled(etl_log_level level);

#endif
