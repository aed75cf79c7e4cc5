/* mysql result columns and types: how each column of a prepared statement's result is
 * bound (binary protocol), turned into text (extract) and JSON (query), and named in
 * the manifest; and, for loads, how a staged column of a source type is converted and
 * which MySQL type create: true gives it.
 *
 * Binding: integers as LONGLONG (is_unsigned from the field), FLOAT/DOUBLE natively,
 * dates and times as MYSQL_TIME (formatted here, so zero dates become NULL), and
 * everything else as bytes in a per-column buffer that grows when a value is truncated
 * (MYSQL_DATA_TRUNCATED: the column is fetched again with mysql_stmt_fetch_column). */
#include "myc.h"

#include <ctype.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_BUF 4096ul /* string columns start with min(field length + 1, this) */

/* ---------- numbers ---------- */

/* Integral values below 10^15 (10^6 for floats) print as %g would, without its cost.
 * Everything else: the shortest decimal that reads back (dtoa.c), in the notation
 * printf("%.*g") gives it at precision max(15, its digits) (6 for floats), which is what
 * the earlier snprintf search for the first of %.15g, %.16g, %.17g that reads back
 * printed, at a fraction of its cost. */
static size_t fmt_i64(long long v, char *buf);

/* -0, inf and nan, as %g prints them: "-0", "inf", "-inf", "nan", "-nan" */
static size_t fmt_special(double d, char *buf)
{
    return (size_t)snprintf(buf, 32, "%g", d);
}

size_t myc_fmt_double(double d, char *buf)
{
    if (d > -1e15 && d < 1e15 && d == (double)(long long)d && !(d == 0 && signbit(d))) {
        size_t n = fmt_i64((long long)d, buf);
        buf[n] = '\0';
        return n;
    }
    if (d == 0 || !isfinite(d))
        return fmt_special(d, buf);
    return myc_decimal_text(myc_shortest_double(d), signbit(d) != 0, 15, buf);
}

size_t myc_fmt_float(float f, char *buf)
{
    if (f > -1e6f && f < 1e6f && f == (float)(long)f && !(f == 0 && signbit(f))) {
        size_t n = fmt_i64((long)f, buf);
        buf[n] = '\0';
        return n;
    }
    if (f == 0 || !isfinite(f))
        return fmt_special((double)f, buf);
    return myc_decimal_text(myc_shortest_float(f), signbit(f) != 0, 6, buf);
}

static size_t fmt_u64(uint64_t v, char *buf)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static size_t fmt_i64(long long v, char *buf)
{
    if (v >= 0)
        return fmt_u64((uint64_t)v, buf);
    buf[0] = '-';
    return 1 + fmt_u64((uint64_t)0 - (uint64_t)v, buf + 1);
}

/* ---------- times ---------- */

static char *digits(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

/* ".ffffff" cut to the column's fractional digits; decimals > 6 (an expression whose
 * precision the server does not know) shows all six when any is non-zero. */
static char *fraction(char *p, unsigned long us, unsigned decimals)
{
    if (decimals > 6)
        decimals = us ? 6 : 0;
    if (!decimals)
        return p;
    *p++ = '.';
    char six[6];
    digits(six, (unsigned)us, 6);
    memcpy(p, six, decimals);
    return p + decimals;
}

/* Zero dates ('0000-00-00') and dates with a zero month or day, which some sql_modes
 * allow, have no ISO 8601 form: they are NULL. */
static bool zero_date(const MYSQL_TIME *t) { return t->month == 0 || t->day == 0; }

/* Text of a date/datetime/time column into p (>= 40 bytes); -1 = NULL. */
static long fmt_time(const myc_col *c, char *p0)
{
    const MYSQL_TIME *t = &c->v.t;
    char *p = p0;
    if (c->kind == MYC_TIME) {
        if (t->neg)
            *p++ = '-';
        unsigned long hours = (unsigned long)t->day * 24 + t->hour;
        if (hours >= 100)
            p += fmt_u64(hours, p);
        else
            p = digits(p, (unsigned)hours, 2);
        *p++ = ':';
        p = digits(p, t->minute, 2);
        *p++ = ':';
        p = digits(p, t->second, 2);
        p = fraction(p, t->second_part, c->decimals);
        return p - p0;
    }
    if (zero_date(t))
        return -1;
    p = digits(p, t->year, 4);
    *p++ = '-';
    p = digits(p, t->month, 2);
    *p++ = '-';
    p = digits(p, t->day, 2);
    if (c->kind == MYC_DATETIME) {
        *p++ = 'T';
        p = digits(p, t->hour, 2);
        *p++ = ':';
        p = digits(p, t->minute, 2);
        *p++ = ':';
        p = digits(p, t->second, 2);
        p = fraction(p, t->second_part, c->decimals);
    }
    return p - p0;
}

/* ---------- classifying and naming columns ---------- */

static unsigned mbmaxlen(unsigned charsetnr)
{
    const MARIADB_CHARSET_INFO *cs = mariadb_get_charset_by_nr(charsetnr);
    return cs && cs->char_maxlen ? cs->char_maxlen : 1;
}

/* An extended metadata attribute of the field (MariaDB 10.5+), into buf; "" if none. */
static void field_attr(const MYSQL_FIELD *f, enum mariadb_field_attr_t which, char *buf,
                       size_t n)
{
    MARIADB_CONST_STRING a = {0};
    buf[0] = '\0';
    if (mariadb_field_attr(&a, f, which) == 0 && a.str && a.length && a.length < n) {
        memcpy(buf, a.str, a.length);
        buf[a.length] = '\0';
    }
}

static const char *size_prefix(unsigned long len)
{
    return len <= 255 ? "tiny" : len <= 65535 ? "" : len <= 16777215 ? "medium" : "long";
}

/* Kind, binding and manifest type of one field. */
static void classify(const MYSQL_FIELD *f, myc_col *c, MYSQL_BIND *b)
{
    bool uns = (f->flags & UNSIGNED_FLAG) != 0;
    const char *u = uns ? " unsigned" : "";
    char fmt[32], dtype[32];
    field_attr(f, MARIADB_FIELD_ATTR_FORMAT_NAME, fmt, sizeof fmt);
    field_attr(f, MARIADB_FIELD_ATTR_DATA_TYPE_NAME, dtype, sizeof dtype);
    c->name = f->name;
    c->decimals = f->decimals;
    b->is_null = &c->is_null;
    b->error = &c->error;
    b->length = &c->length;
    switch (f->type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR: {
        static const char *const names[] = {[MYSQL_TYPE_TINY] = "tinyint",
                                            [MYSQL_TYPE_SHORT] = "smallint",
                                            [MYSQL_TYPE_INT24] = "mediumint",
                                            [MYSQL_TYPE_LONG] = "int",
                                            [MYSQL_TYPE_LONGLONG] = "bigint",
                                            [MYSQL_TYPE_YEAR] = "year"};
        c->kind = uns && f->type != MYSQL_TYPE_YEAR ? MYC_UINT : MYC_INT;
        b->buffer_type = MYSQL_TYPE_LONGLONG;
        b->buffer = &c->v.i;
        b->is_unsigned = c->kind == MYC_UINT;
        if (f->type == MYSQL_TYPE_YEAR)
            snprintf(c->type, sizeof c->type, "year");
        else if (f->type == MYSQL_TYPE_TINY && f->length == 1)
            snprintf(c->type, sizeof c->type, "tinyint(1)%s", u); /* MySQL's boolean */
        else
            snprintf(c->type, sizeof c->type, "%s%s", names[f->type], u);
        return;
    }
    case MYSQL_TYPE_FLOAT:
        c->kind = MYC_FLOAT;
        b->buffer_type = MYSQL_TYPE_FLOAT;
        b->buffer = &c->v.f;
        snprintf(c->type, sizeof c->type, "float");
        return;
    case MYSQL_TYPE_DOUBLE:
        c->kind = MYC_DOUBLE;
        b->buffer_type = MYSQL_TYPE_DOUBLE;
        b->buffer = &c->v.d;
        snprintf(c->type, sizeof c->type, "double");
        return;
    case MYSQL_TYPE_DATE:
    case MYSQL_TYPE_NEWDATE:
        c->kind = MYC_DATE;
        b->buffer_type = MYSQL_TYPE_DATE;
        b->buffer = &c->v.t;
        snprintf(c->type, sizeof c->type, "date");
        return;
    case MYSQL_TYPE_DATETIME:
    case MYSQL_TYPE_TIMESTAMP:
    case MYSQL_TYPE_TIME: {
        bool tm = f->type == MYSQL_TYPE_TIME;
        c->kind = tm ? MYC_TIME : MYC_DATETIME;
        b->buffer_type = f->type;
        b->buffer = &c->v.t;
        const char *base = tm ? "time" : f->type == MYSQL_TYPE_DATETIME ? "datetime" : "timestamp";
        if (f->decimals > 0 && f->decimals <= 6)
            snprintf(c->type, sizeof c->type, "%s(%u)", base, f->decimals);
        else
            snprintf(c->type, sizeof c->type, "%s", base);
        return;
    }
    case MYSQL_TYPE_BIT:
        c->kind = MYC_BIT;
        c->bits = f->length ? (unsigned)f->length : 1;
        snprintf(c->type, sizeof c->type, "bit(%u)", c->bits);
        break;
    case MYSQL_TYPE_DECIMAL:
    case MYSQL_TYPE_NEWDECIMAL: {
        unsigned long prec = f->length - (f->decimals ? 1 : 0) - (uns ? 0 : 1);
        c->kind = MYC_TEXT;
        snprintf(c->type, sizeof c->type, "decimal(%lu,%u)%s", prec, f->decimals, u);
        break;
    }
    case MYSQL_TYPE_JSON:
        c->kind = MYC_JSON;
        snprintf(c->type, sizeof c->type, "json");
        break;
    case MYSQL_TYPE_GEOMETRY:
        c->kind = MYC_BINARY;
        snprintf(c->type, sizeof c->type, "%s", dtype[0] ? dtype : "geometry");
        break;
    case MYSQL_TYPE_NULL:
        c->kind = MYC_TEXT;
        snprintf(c->type, sizeof c->type, "text");
        break;
    default: { /* strings, blobs, ENUM, SET */
        bool bin = f->charsetnr == 63;
        unsigned long chars = f->length / (bin ? 1 : mbmaxlen(f->charsetnr));
        c->kind = bin ? MYC_BINARY : MYC_TEXT;
        if (strcmp(fmt, "json") == 0) {
            c->kind = MYC_JSON; /* MariaDB: LONGTEXT with a JSON check */
            snprintf(c->type, sizeof c->type, "json");
        } else if (f->flags & ENUM_FLAG || f->type == MYSQL_TYPE_ENUM) {
            c->kind = MYC_TEXT;
            snprintf(c->type, sizeof c->type, "enum");
        } else if (f->flags & SET_FLAG || f->type == MYSQL_TYPE_SET) {
            c->kind = MYC_TEXT;
            snprintf(c->type, sizeof c->type, "set");
        } else if (dtype[0]) {
            /* a MariaDB data type plugin (uuid, inet6, inet4): its text form */
            c->kind = MYC_TEXT;
            snprintf(c->type, sizeof c->type, "%s", dtype);
        } else if (f->type == MYSQL_TYPE_STRING) {
            snprintf(c->type, sizeof c->type, "%s(%lu)", bin ? "binary" : "char", chars);
        } else if (f->type == MYSQL_TYPE_VAR_STRING || f->type == MYSQL_TYPE_VARCHAR) {
            snprintf(c->type, sizeof c->type, "%s(%lu)", bin ? "varbinary" : "varchar", chars);
        } else {
            snprintf(c->type, sizeof c->type, "%s%s", size_prefix(chars), bin ? "blob" : "text");
        }
        break;
    }
    }
    /* the byte kinds: a buffer sized for typical values, grown on truncation */
    unsigned long want = f->length < INITIAL_BUF ? f->length + 1 : INITIAL_BUF;
    c->cap = want < 16 ? 16 : want;
    b->buffer_type = MYSQL_TYPE_BLOB;
    b->buffer_length = c->cap;
    /* buffer is set by the caller once allocated */
}

etl_status myc_result_open(const etl_host *h, MYSQL_STMT *stmt, myc_result *r, etl_error *err)
{
    memset(r, 0, sizeof *r);
    r->stmt = stmt;
    r->meta = mysql_stmt_result_metadata(stmt);
    if (!r->meta)
        return ETL_OK; /* no result set */
    r->n = mysql_num_fields(r->meta);
    MYSQL_FIELD *fields = mysql_fetch_fields(r->meta);
    r->cols = calloc(r->n ? r->n : 1, sizeof *r->cols);
    r->binds = calloc(r->n ? r->n : 1, sizeof *r->binds);
    r->scratch_cap = 4096;
    r->scratch = malloc(r->scratch_cap);
    if (!r->cols || !r->binds || !r->scratch)
        goto oom;
    for (unsigned i = 0; i < r->n; i++) {
        myc_col *c = &r->cols[i];
        classify(&fields[i], c, &r->binds[i]);
        if (r->binds[i].buffer_type == MYSQL_TYPE_BLOB) {
            if (!(c->buf = malloc(c->cap)))
                goto oom;
            r->binds[i].buffer = c->buf;
        }
    }
    if (mysql_stmt_bind_result(stmt, r->binds))
        return h->fail(err, ETL_EQUERY, "Etl.QueryFailed", false,
                       "mysql: cannot bind the result columns: %s", mysql_stmt_error(stmt));
    return ETL_OK;
oom:
    return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory binding a result");
}

void myc_result_close(myc_result *r)
{
    if (r->cols)
        for (unsigned i = 0; i < r->n; i++)
            free(r->cols[i].buf);
    free(r->cols);
    free(r->binds);
    free(r->scratch);
    if (r->meta)
        mysql_free_result(r->meta);
    memset(r, 0, sizeof *r);
}

int myc_result_fetch(const etl_host *h, myc_result *r, etl_error *err)
{
    int rc = mysql_stmt_fetch(r->stmt);
    if (rc == MYSQL_NO_DATA)
        return 0;
    if (rc == 1)
        return -1;
    if (rc == MYSQL_DATA_TRUNCATED) {
        bool rebind = false;
        for (unsigned i = 0; i < r->n; i++) {
            myc_col *c = &r->cols[i];
            MYSQL_BIND *b = &r->binds[i];
            if (c->is_null)
                continue;
            if (!c->buf) {
                if (c->error) {
                    h->fail(err, ETL_EQUERY, "Etl.QueryFailed", false,
                            "mysql: the value of column '%s' (%s) does not fit its binding",
                            c->name, c->type);
                    return -2;
                }
                continue;
            }
            if (c->length <= c->cap)
                continue;
            unsigned long cap = c->cap;
            while (cap <= c->length)
                cap = cap < (1ul << 30) ? cap * 2 : c->length + 1;
            char *nb = realloc(c->buf, cap);
            if (!nb) {
                h->fail(err, ETL_ENOMEM, "States.Runtime", false,
                        "out of memory for a %lu-byte value of column '%s'", c->length, c->name);
                return -2;
            }
            c->buf = nb;
            c->cap = cap;
            b->buffer = nb;
            b->buffer_length = cap;
            if (mysql_stmt_fetch_column(r->stmt, b, i, 0))
                return -1;
            rebind = true;
        }
        if (rebind && mysql_stmt_bind_result(r->stmt, r->binds))
            return -1;
    }
    return 1;
}

/* Bytes column c's formatted text may need (for the kinds not shown as they are). */
static size_t need(const myc_col *c)
{
    switch (c->kind) {
    case MYC_BINARY: return 2 + 2 * (size_t)c->length;
    case MYC_BIT: return (size_t)c->bits + 1;
    default: return 48;
    }
}

static const char hexdig[] = "0123456789abcdef";

/* Text of c (a non-NULL value of a formatted kind) into p; -1 = NULL (zero dates). */
static long fmt_col(const myc_col *c, char *p)
{
    switch (c->kind) {
    case MYC_INT: return (long)fmt_i64(c->v.i, p);
    case MYC_UINT: return (long)fmt_u64((uint64_t)c->v.i, p);
    case MYC_DOUBLE: return (long)myc_fmt_double(c->v.d, p);
    case MYC_FLOAT: return (long)myc_fmt_float(c->v.f, p);
    case MYC_DATE:
    case MYC_DATETIME:
    case MYC_TIME: return fmt_time(c, p);
    case MYC_BIT: {
        uint64_t v = 0;
        for (unsigned long i = 0; i < c->length && i < 8; i++)
            v = v << 8 | (unsigned char)c->buf[i];
        for (unsigned i = 0; i < c->bits; i++)
            p[i] = (char)('0' + (c->bits - 1 - i < 64 ? (v >> (c->bits - 1 - i)) & 1 : 0));
        return (long)c->bits;
    }
    case MYC_BINARY: {
        p[0] = '\\';
        p[1] = 'x';
        const unsigned char *s = (const unsigned char *)c->buf;
        for (unsigned long i = 0; i < c->length; i++) {
            p[2 + 2 * i] = hexdig[s[i] >> 4];
            p[3 + 2 * i] = hexdig[s[i] & 15];
        }
        return (long)(2 + 2 * c->length);
    }
    default: return -1;
    }
}

static bool scratch_reserve(myc_result *r, size_t n)
{
    if (r->scratch_cap - r->scratch_len >= n)
        return true;
    size_t cap = r->scratch_cap ? r->scratch_cap : 4096;
    while (cap - r->scratch_len < n)
        cap *= 2;
    char *s = realloc(r->scratch, cap);
    if (!s)
        return false;
    r->scratch = s;
    r->scratch_cap = cap;
    return true;
}

int myc_result_text(myc_result *r, const char **fields, size_t *lens)
{
    r->scratch_len = 0;
    for (unsigned i = 0; i < r->n; i++) {
        myc_col *c = &r->cols[i];
        fields[i] = NULL;
        lens[i] = 0;
        c->off = (size_t)-1;
        if (c->is_null)
            continue;
        if (c->kind == MYC_TEXT || c->kind == MYC_JSON) {
            fields[i] = c->buf;
            lens[i] = c->length;
            continue;
        }
        if (!scratch_reserve(r, need(c)))
            return -1;
        long n = fmt_col(c, r->scratch + r->scratch_len);
        if (n < 0)
            continue;
        c->off = r->scratch_len;
        lens[i] = (size_t)n;
        r->scratch_len += (size_t)n;
    }
    /* the scratch may have moved while it grew: point into it only now */
    for (unsigned i = 0; i < r->n; i++)
        if (r->cols[i].off != (size_t)-1)
            fields[i] = r->scratch + r->cols[i].off;
    return 0;
}

etl_json *myc_result_json(const etl_host *h, myc_result *r, unsigned i, bool *out_bad)
{
    myc_col *c = &r->cols[i];
    *out_bad = false;
    if (c->is_null)
        return h->json_new_null();
    switch (c->kind) {
    case MYC_INT: return h->json_new_int(c->v.i);
    case MYC_UINT:
        if ((uint64_t)c->v.i <= (uint64_t)INT64_MAX)
            return h->json_new_int(c->v.i);
        break; /* above 2^63-1: a string with the exact digits */
    case MYC_DOUBLE: return h->json_new_real(c->v.d);
    case MYC_FLOAT: {
        /* the float's shortest text read as a double: 0.1f is 0.1, not 0.100000001... */
        char buf[32];
        myc_fmt_float(c->v.f, buf);
        return h->json_new_real(strtod(buf, NULL));
    }
    case MYC_JSON: {
        etl_error e;
        etl_json *v = h->json_parse(c->buf, c->length, &e);
        if (v)
            return v;
        break; /* not JSON after all (a JSON-typed expression may hold any text) */
    }
    default: break;
    }
    if (c->kind == MYC_TEXT || c->kind == MYC_JSON) {
        etl_json *v = h->json_new_string(c->buf, c->length);
        *out_bad = v == NULL;
        return v;
    }
    r->scratch_len = 0;
    if (!scratch_reserve(r, need(c)))
        return NULL;
    long n = fmt_col(c, r->scratch);
    if (n < 0)
        return h->json_new_null();
    return h->json_new_string(r->scratch, (size_t)n);
}

/* ---------- loads: conversions and create: true ---------- */

/* Lower-case copy of s without leading/trailing spaces. */
static void lower(const char *s, char *buf, size_t n)
{
    while (*s == ' ')
        s++;
    size_t k = 0;
    for (; *s && k + 1 < n; s++)
        buf[k++] = (char)tolower((unsigned char)*s);
    while (k && buf[k - 1] == ' ')
        k--;
    buf[k] = '\0';
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

myc_conv myc_load_conv(const char *src_type)
{
    char t[128];
    if (!src_type)
        return MYC_CONV_NONE;
    lower(src_type, t, sizeof t);
    if (starts(t, "binary") || starts(t, "varbinary") || ends(t, "blob") ||
        strcmp(t, "bytea") == 0 || strcmp(t, "geometry") == 0)
        return MYC_CONV_HEX;
    if (strcmp(t, "bit") == 0 || starts(t, "bit(") || starts(t, "bit varying"))
        return MYC_CONV_BIT;
    if (strcmp(t, "boolean") == 0 || strcmp(t, "bool") == 0)
        return MYC_CONV_BOOL;
    if (starts(t, "timestamp") && (ends(t, "with time zone") || ends(t, "tz")))
        return MYC_CONV_TZ;
    return MYC_CONV_NONE;
}

/* The "(a)" or "(a,b)" right after a type name: count of numbers read (0..2). */
static int args(const char *p, unsigned long *a, unsigned long *b)
{
    if (*p != '(')
        return 0;
    char *end;
    *a = strtoul(p + 1, &end, 10);
    if (end == p + 1)
        return 0;
    if (*end == ')')
        return 1;
    if (*end != ',')
        return 0;
    const char *q = end + 1;
    while (*q == ' ')
        q++;
    *b = strtoul(q, &end, 10);
    return end > q && *end == ')' ? 2 : 0;
}

/* Text after the "(...)" of a type, or after its name when it has none. */
static const char *after_args(const char *p)
{
    if (*p == '(') {
        const char *close = strchr(p, ')');
        return close ? close + 1 : p + strlen(p);
    }
    return p;
}

void myc_ddl_type(const char *src_type, char *buf, size_t n)
{
    char t[128];
    unsigned long a = 0, b = 0;
    lower(src_type ? src_type : "", t, sizeof t);
    bool uns = strstr(t, " unsigned") != NULL;
    const char *u = uns ? " unsigned" : "";
    static const char *const ints[] = {"tinyint", "smallint", "mediumint", "bigint", "int",
                                       "integer", NULL};
    for (const char *const *i = ints; *i; i++) {
        size_t k = strlen(*i);
        if (strncmp(t, *i, k) != 0 || (t[k] && t[k] != '(' && t[k] != ' '))
            continue;
        if (strcmp(*i, "tinyint") == 0 && args(t + k, &a, &b) == 1 && a == 1) {
            snprintf(buf, n, "tinyint(1)%s", u);
            return;
        }
        snprintf(buf, n, "%s%s", strcmp(*i, "integer") == 0 ? "int" : *i, u);
        return;
    }
    if (strcmp(t, "serial") == 0) {
        snprintf(buf, n, "int");
    } else if (strcmp(t, "bigserial") == 0) {
        snprintf(buf, n, "bigint");
    } else if (strcmp(t, "smallserial") == 0) {
        snprintf(buf, n, "smallint");
    } else if (starts(t, "decimal") || starts(t, "numeric")) {
        int k = args(t + 7, &a, &b);
        if (k == 0)
            snprintf(buf, n, "decimal(65,30)"); /* unconstrained numeric */
        else if (a > 65 || (k == 2 && b > 30))
            snprintf(buf, n, "longtext");       /* beyond DECIMAL: keep the exact digits */
        else
            snprintf(buf, n, "decimal(%lu,%lu)%s", a, k == 2 ? b : 0ul, u);
    } else if (strcmp(t, "float") == 0 || strcmp(t, "real") == 0 || strcmp(t, "float4") == 0) {
        snprintf(buf, n, "float");
    } else if (starts(t, "double") || strcmp(t, "float8") == 0) {
        snprintf(buf, n, "double");
    } else if (strcmp(t, "date") == 0 || strcmp(t, "year") == 0) {
        snprintf(buf, n, "%s", t);
    } else if (starts(t, "datetime") || starts(t, "timestamp")) {
        const char *p = t + (starts(t, "datetime") ? 8 : 9);
        bool pg = strstr(t, "time zone") != NULL || strcmp(t, "timestamptz") == 0;
        int k = args(p, &a, &b);
        if (k == 1 && a <= 6)
            snprintf(buf, n, "datetime(%lu)", a);
        else
            snprintf(buf, n, pg ? "datetime(6)" : "datetime"); /* PostgreSQL's default is 6 */
    } else if (starts(t, "time")) {
        bool pg = strstr(t, "time zone") != NULL;
        int k = args(t + 4, &a, &b);
        if (strstr(t, "with time zone"))
            snprintf(buf, n, "varchar(40)");
        else if (k == 1 && a <= 6)
            snprintf(buf, n, "time(%lu)", a);
        else
            snprintf(buf, n, pg ? "time(6)" : "time");
    } else if (strcmp(t, "interval") == 0 || starts(t, "interval")) {
        snprintf(buf, n, "varchar(64)");
    } else if (starts(t, "character varying") || starts(t, "varchar")) {
        const char *p = t + (starts(t, "varchar") ? 7 : 17);
        if (args(p, &a, &b) == 1 && a <= 16383)
            snprintf(buf, n, "varchar(%lu)", a);
        else
            snprintf(buf, n, "longtext");
    } else if (starts(t, "character") || starts(t, "char")) {
        const char *p = t + (starts(t, "character") ? 9 : 4);
        int k = args(p, &a, &b);
        if (*after_args(p) != '\0')
            snprintf(buf, n, "longtext");
        else if (k == 0)
            snprintf(buf, n, "char(1)");
        else if (a <= 255)
            snprintf(buf, n, "char(%lu)", a);
        else
            snprintf(buf, n, a <= 16383 ? "varchar(%lu)" : "longtext", a);
    } else if (strcmp(t, "tinytext") == 0 || strcmp(t, "mediumtext") == 0 ||
               strcmp(t, "longtext") == 0) {
        snprintf(buf, n, "%s", t);
    } else if (starts(t, "binary") || starts(t, "varbinary")) {
        const char *p = t + (starts(t, "binary") ? 6 : 9);
        int k = args(p, &a, &b);
        if (k == 1 && a <= (starts(t, "binary") ? 255ul : 65532ul))
            snprintf(buf, n, "%s(%lu)", starts(t, "binary") ? "binary" : "varbinary", a);
        else
            snprintf(buf, n, "longblob");
    } else if (strcmp(t, "tinyblob") == 0 || strcmp(t, "blob") == 0 ||
               strcmp(t, "mediumblob") == 0 || strcmp(t, "longblob") == 0) {
        snprintf(buf, n, "%s", t);
    } else if (strcmp(t, "bytea") == 0) {
        snprintf(buf, n, "longblob");
    } else if (strcmp(t, "json") == 0 || strcmp(t, "jsonb") == 0) {
        snprintf(buf, n, "json");
    } else if (strcmp(t, "enum") == 0 || strcmp(t, "set") == 0) {
        snprintf(buf, n, "text");
    } else if (starts(t, "bit")) {
        const char *p = t + (starts(t, "bit varying") ? 11 : 3);
        int k = args(p, &a, &b);
        if (k == 0)
            snprintf(buf, n, starts(t, "bit varying") ? "longtext" : "bit(1)");
        else if (a >= 1 && a <= 64)
            snprintf(buf, n, "bit(%lu)", a);
        else
            snprintf(buf, n, a <= 16383 ? "varchar(%lu)" : "longtext", a);
    } else if (strcmp(t, "boolean") == 0 || strcmp(t, "bool") == 0) {
        snprintf(buf, n, "tinyint(1)");
    } else if (strcmp(t, "uuid") == 0) {
        snprintf(buf, n, "char(36)");
    } else if (strcmp(t, "inet") == 0 || strcmp(t, "cidr") == 0 || strcmp(t, "inet6") == 0 ||
               strcmp(t, "inet4") == 0) {
        snprintf(buf, n, "varchar(43)");
    } else if (strcmp(t, "geometry") == 0) {
        snprintf(buf, n, "geometry");
    } else {
        /* text (which PostgreSQL does not bound at 64 KiB), strings of other connectors,
         * arrays, and anything unknown: the exact text */
        snprintf(buf, n, "longtext");
    }
}

bool myc_quote_ident(const char *name, bool dotted, char *buf, size_t n)
{
    size_t k = strlen(buf);
    if (k + 1 >= n)
        return false;
    buf[k++] = '`';
    for (const char *p = name; *p; p++) {
        if (dotted && *p == '.') {
            if (k + 3 >= n)
                return false;
            buf[k++] = '`';
            buf[k++] = '.';
            buf[k++] = '`';
            continue;
        }
        if (k + 3 >= n)
            return false;
        if (*p == '`')
            buf[k++] = '`';
        buf[k++] = *p;
    }
    if (k + 2 > n)
        return false;
    buf[k++] = '`';
    buf[k] = '\0';
    return true;
}
