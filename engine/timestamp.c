/* RFC 3339 timestamps: parse to an instant, compare, format, read the clock.
 * Used by Choice Timestamp* rules (per evaluation, so parsing never allocates) and by
 * Wait Timestamp. Civil dates are converted with days-from-civil arithmetic, so the
 * result never depends on TZ or on timegm(). */
#include "timestamp.h"

#include <stdio.h>
#include <time.h>

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm):
 * exact for every year, no tables, no library calls. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                     /* [0, 399] */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;   /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;             /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *out_y, int *out_m, int *out_d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *out_y = yoe + era * 400 + (m <= 2);
    *out_m = m;
    *out_d = d;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Reads exactly n decimal digits at *p; advances *p. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool expect(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

bool ts_parse(const char *s, ts_instant *out)
{
    int year, mon, day, hour, min, sec, off_h = 0, off_m = 0, sign = 0;
    int32_t nsec = 0;
    const char *p = s;

    if (!s)
        return false;
    if (!digits(&p, 4, &year) || !expect(&p, '-') || !digits(&p, 2, &mon) ||
        !expect(&p, '-') || !digits(&p, 2, &day))
        return false;
    if (*p != 'T' && *p != 't')
        return false;
    p++;
    if (!digits(&p, 2, &hour) || !expect(&p, ':') || !digits(&p, 2, &min) ||
        !expect(&p, ':') || !digits(&p, 2, &sec))
        return false;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false; /* "12:00:00.Z" has an empty fraction */
        /* Keep nanoseconds; further digits are valid but truncated. */
        int n = 0;
        for (; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 9)
                nsec = nsec * 10 + (*p - '0');
        for (; n < 9; n++)
            nsec *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        p++;
        if (!digits(&p, 2, &off_h) || !expect(&p, ':') || !digits(&p, 2, &off_m))
            return false;
        if (off_h > 23 || off_m > 59)
            return false;
    } else {
        return false; /* the offset is mandatory in RFC 3339 */
    }
    if (*p != '\0')
        return false;

    if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon))
        return false;
    if (hour > 23 || min > 59 || sec > 60)
        return false;

    /* A leap second (:60) folds into the next second: the arithmetic below does it. */
    int64_t t = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
    t -= (int64_t)sign * (off_h * 3600 + off_m * 60);
    if (out) {
        out->sec = t;
        out->nsec = nsec;
    }
    return true;
}

int ts_compare(ts_instant a, ts_instant b)
{
    if (a.sec != b.sec)
        return a.sec < b.sec ? -1 : 1;
    if (a.nsec != b.nsec)
        return a.nsec < b.nsec ? -1 : 1;
    return 0;
}

ts_instant ts_now(void)
{
    struct timespec now;
    ts_instant t = {0, 0};
    if (clock_gettime(CLOCK_REALTIME, &now) == 0) {
        t.sec = (int64_t)now.tv_sec;
        t.nsec = (int32_t)now.tv_nsec;
    }
    return t;
}

void ts_format(ts_instant t, char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    /* Floor division, so instants before 1970 land on the right day. */
    int64_t days = t.sec / 86400;
    int64_t rem = t.sec % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int ms = (t.nsec >= 0 && t.nsec < 1000000000) ? t.nsec / 1000000 : 0;
    snprintf(buf, len, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", (long long)y, m, d,
             (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), ms);
}
