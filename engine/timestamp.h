/* RFC 3339 timestamps, as used by Choice Timestamp* rules and Wait Timestamp. */
#ifndef ETL_TIMESTAMP_H
#define ETL_TIMESTAMP_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

typedef struct ts_instant {
    int64_t sec;  /* seconds since 1970-01-01T00:00:00Z (may be negative) */
    int32_t nsec; /* 0..999999999 */
} ts_instant;

/* Parse "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)". 'T' and 'Z' may be lower
 * case. Field ranges are checked (month, day in month incl. leap years, hour < 24,
 * minute < 60, second <= 60 with 60 folded into the next second). Returns false when s
 * is not such a timestamp. */
bool ts_parse(const char *s, ts_instant *out);
/* -1, 0 or 1. */
int ts_compare(ts_instant a, ts_instant b);
/* Current wall-clock time. */
ts_instant ts_now(void);
/* Format as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC, milliseconds) into buf (>= 32 bytes). */
void ts_format(ts_instant t, char *buf, size_t len);

#endif
