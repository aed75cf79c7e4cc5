/* postgres types: the text and JSON form of each value (docs/connectors/sql.md "Value
 * mapping"), the per-connection cache of format_type() names for manifests, and the
 * source type -> PostgreSQL type mapping used by load's create: true.
 *
 * Values arrive in libpq's text format with the session settings of conn.c (ISO
 * DateStyle, TimeZone UTC, shortest exact floats, hex bytea), so most need no work:
 * only booleans, timestamps (the 'T') and time zone offsets ("+00" -> "+00:00") are
 * rewritten, into a small scratch buffer, never the heap. */
#include "pg.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Built-in type OIDs (catalog/pg_type_d.h, stable since forever; the server headers
 * are not needed for eight numbers). */
enum {
    OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_OID = 26, OID_JSON = 114,
    OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_TIME = 1083, OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184, OID_TIMETZ = 1266, OID_JSONB = 3802,
};

pg_kind pg_kind_of(Oid type)
{
    switch (type) {
    case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID:
        return PG_K_INT;
    case OID_FLOAT4: case OID_FLOAT8:
        return PG_K_FLOAT;
    case OID_BOOL:
        return PG_K_BOOL;
    case OID_TIMESTAMP:
        return PG_K_TIMESTAMP;
    case OID_TIMESTAMPTZ:
        return PG_K_TIMESTAMPTZ;
    case OID_TIMETZ:
        return PG_K_TIMETZ;
    case OID_JSON: case OID_JSONB:
        return PG_K_JSON;
    default:
        return PG_K_TEXT; /* numeric (exact digits), date, time, bytea (\x..), others */
    }
}

/* "+HH" at the end of an offset -> "+HH:MM": insert ":00" after the two hour digits of
 * the sign at s[at] (the text has room: len + 3 < PG_SCRATCH). */
static size_t fix_offset(char *s, size_t len, size_t at)
{
    size_t k = at + 1;
    while (k < len && s[k] >= '0' && s[k] <= '9')
        k++;
    if (k != at + 3 || (k < len && s[k] == ':'))
        return len; /* already +HH:MM[:SS] */
    memmove(s + k + 3, s + k, len - k);
    memcpy(s + k, ":00", 3);
    return len + 3;
}

const char *pg_text(pg_kind k, const char *val, size_t len, char *scratch, size_t *out_len)
{
    *out_len = len;
    switch (k) {
    case PG_K_BOOL:
        if (len == 1 && (val[0] == 't' || val[0] == 'f')) {
            *out_len = val[0] == 't' ? 4 : 5;
            return val[0] == 't' ? "true" : "false";
        }
        return val;
    case PG_K_TIMESTAMP:
    case PG_K_TIMESTAMPTZ:
    case PG_K_TIMETZ: {
        if (len + 4 > PG_SCRATCH || len == 0 || !isdigit((unsigned char)val[0]))
            return val; /* infinity, -infinity */
        memcpy(scratch, val, len);
        size_t t = 0; /* where the time starts */
        if (k != PG_K_TIMETZ) {
            char *sp = memchr(scratch, ' ', len);
            if (!sp)
                return val;
            *sp = 'T';
            t = (size_t)(sp - scratch) + 1;
        }
        if (k != PG_K_TIMESTAMP) {
            size_t at = 0;
            for (size_t i = t; i < len; i++)
                if (scratch[i] == '+' || scratch[i] == '-')
                    at = i;
            if (at)
                len = fix_offset(scratch, len, at);
        }
        *out_len = len;
        return scratch;
    }
    default:
        return val;
    }
}

etl_json *pg_json_value(const etl_host *h, pg_kind k, const char *val, size_t len)
{
    switch (k) {
    case PG_K_INT: {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (!errno && end == val + len)
            return h->json_new_int(v);
        break;
    }
    case PG_K_FLOAT: {
        char *end = NULL;
        /* NaN and +-Infinity have no JSON number: they stay strings */
        if (len && (isdigit((unsigned char)val[0]) ||
                    (val[0] == '-' && len > 1 && isdigit((unsigned char)val[1])))) {
            double d = strtod(val, &end);
            if (end == val + len)
                return h->json_new_real(d);
        }
        break;
    }
    case PG_K_BOOL:
        if (len == 1 && (val[0] == 't' || val[0] == 'f'))
            return h->json_new_bool(val[0] == 't');
        break;
    case PG_K_JSON: {
        etl_error e;
        etl_json *j = h->json_parse(val, len, &e);
        if (j)
            return j;
        break; /* beyond what the JSON library holds (huge numbers): keep the text */
    }
    default:
        break;
    }
    char scratch[PG_SCRATCH];
    size_t n;
    const char *t = pg_text(k, val, len, scratch, &n);
    return h->json_new_string(t, n);
}

/* ---------- format_type cache ---------- */

static pg_typename *cached(etl_conn *c, Oid oid, int typmod)
{
    for (size_t i = 0; i < c->n_types; i++)
        if (c->types[i].oid == oid && c->types[i].typmod == typmod)
            return &c->types[i];
    return NULL;
}

/* "{a,b,...}" of n integers into a new buffer. */
static char *int_array(const long long *v, size_t n)
{
    char *s = malloc(n * 24 + 3), *p = s;
    if (!s)
        return NULL;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%lld", i ? "," : "", v[i]);
    *p++ = '}';
    *p = '\0';
    return s;
}

etl_status pg_column_types(const etl_host *h, etl_task *task, etl_conn *c, const PGresult *res,
                           const char **out_names, etl_error *err)
{
    int n = PQnfields(res);
    long long *oids = malloc(((size_t)n + 1) * sizeof *oids);
    long long *mods = malloc(((size_t)n + 1) * sizeof *mods);
    char *oid_text = NULL, *mod_text = NULL;
    PGresult *r = NULL;
    etl_status st = ETL_OK;
    size_t miss = 0;
    if (!oids || !mods) {
        st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        Oid o = PQftype(res, i);
        int m = PQfmod(res, i);
        bool seen = cached(c, o, m) != NULL;
        for (size_t j = 0; !seen && j < miss; j++)
            seen = oids[j] == (long long)o && mods[j] == m;
        if (!seen) {
            oids[miss] = o;
            mods[miss] = m;
            miss++;
        }
    }
    if (miss) {
        oid_text = int_array(oids, miss);
        mod_text = int_array(mods, miss);
        if (!oid_text || !mod_text) {
            st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
            goto out;
        }
        /* one round trip for all the new types */
        const char *vals[] = {oid_text, mod_text};
        st = pg_send(h, task, c,
                     "SELECT pg_catalog.format_type(t.o, t.m) "
                     "FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS t(o, m, i) "
                     "ORDER BY t.i",
                     2, vals, false, &r, err);
        if (st != ETL_OK)
            goto out;
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != (int)miss) {
            st = pg_result_fail(h, task, c, r, "looking up column types", PG_FAIL_QUERY, err);
            pg_drain(c);
            goto out;
        }
        pg_drain(c);
        if (c->n_types + miss > c->cap_types) {
            size_t cap = (c->n_types + miss) * 2;
            pg_typename *t = realloc(c->types, cap * sizeof *t);
            if (!t) {
                st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
                goto out;
            }
            c->types = t;
            c->cap_types = cap;
        }
        for (size_t j = 0; j < miss; j++) {
            char *name = strdup(PQgetisnull(r, (int)j, 0) ? "text" : PQgetvalue(r, (int)j, 0));
            if (!name) {
                st = h->fail(err, ETL_ENOMEM, "Etl.QueryFailed", false, "postgres: out of memory");
                goto out;
            }
            c->types[c->n_types++] = (pg_typename){(Oid)oids[j], (int)mods[j], name};
        }
    }
    for (int i = 0; i < n; i++)
        out_names[i] = cached(c, PQftype(res, i), PQfmod(res, i))->name;
out:
    PQclear(r);
    free(oids);
    free(mods);
    free(oid_text);
    free(mod_text);
    return st;
}

void pg_types_free(etl_conn *c)
{
    for (size_t i = 0; i < c->n_types; i++)
        free(c->types[i].name);
    free(c->types);
    c->types = NULL;
    c->n_types = c->cap_types = 0;
}

/* ---------- source type -> PostgreSQL type (load, create: true) ---------- */

/* PostgreSQL's own names (format_type() output and common aliases) pass through. */
static const char *const pg_names[] = {
    "smallint", "integer", "bigint", "numeric", "real", "double precision", "boolean", "bool",
    "text", "character varying", "character", "varchar", "bytea", "date", "interval", "uuid",
    "inet", "cidr", "macaddr", "macaddr8", "money", "bit varying", "varbit", "xml",
    "tsvector", "tsquery", "point", "line", "lseg", "box", "path", "polygon", "circle",
    "jsonb", "int2", "int4", "int8", "float4", "float8", "timestamptz", "timetz", "oid",
    "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange", "name",
    "timestamp with time zone", "timestamp without time zone", "time with time zone",
    "time without time zone", NULL};

static bool is_pg_name(const char *base)
{
    for (const char *const *p = pg_names; *p; p++)
        if (strcmp(*p, base) == 0)
            return true;
    return false;
}

void pg_map_type(const char *src, char *out, size_t cap)
{
    char t[160], base[160] = "", args[64] = "";
    size_t n = 0;
    snprintf(out, cap, "text");
    if (!src)
        return;
    /* lower case, single spaces, and only characters that cannot end a type name in
     * DDL: the type text comes from a file and is spliced into CREATE TABLE */
    for (const char *p = src; *p; p++) {
        unsigned char ch = (unsigned char)tolower((unsigned char)*p);
        if (n + 1 >= sizeof t)
            return;
        if (ch == ' ' || ch == '\t') {
            if (n && t[n - 1] != ' ')
                t[n++] = ' ';
            continue;
        }
        if (!(isalnum(ch) || ch == '_' || ch == '(' || ch == ')' || ch == ',' || ch == '[' ||
              ch == ']'))
            return;
        t[n++] = (char)ch;
    }
    while (n && t[n - 1] == ' ')
        n--;
    t[n] = '\0';
    if (!n)
        return;
    /* MySQL's trailing attributes: "int(10) unsigned zerofill" */
    bool is_unsigned = false;
    for (bool more = true; more;) {
        more = false;
        static const char *const attrs[] = {" unsigned", " signed", " zerofill"};
        for (size_t i = 0; i < 3; i++) {
            size_t al = strlen(attrs[i]);
            if (n > al && strcmp(t + n - al, attrs[i]) == 0) {
                is_unsigned |= i == 0;
                n -= al;
                t[n] = '\0';
                more = true;
            }
        }
    }
    /* base name, (args), and what follows: "decimal(12,2) unsigned",
     * "timestamp(3) without time zone", "integer[]" */
    const char *paren = strchr(t, '(');
    const char *after = "";
    size_t bl = paren ? (size_t)(paren - t) : strcspn(t, "[");
    while (bl && t[bl - 1] == ' ')
        bl--;
    memcpy(base, t, bl);
    base[bl] = '\0';
    if (paren) {
        const char *close = strchr(paren, ')');
        if (!close || (size_t)(close - paren - 1) >= sizeof args)
            return;
        memcpy(args, paren + 1, (size_t)(close - paren - 1));
        args[close - paren - 1] = '\0';
        if (strspn(args, "0123456789, ") != strlen(args))
            args[0] = '\0'; /* enum('a','b') and the like: no numeric arguments */
        after = close + 1;
    } else {
        after = t + bl;
    }
    while (*after == ' ')
        after++;
    bool array = strchr(t, '[') != NULL;
    if (array) {
        char elem[160];
        snprintf(elem, sizeof elem, "%s", base);
        if (is_pg_name(elem) || strncmp(t, "timestamp", 9) == 0 || strncmp(t, "time", 4) == 0)
            snprintf(out, cap, "%s", t); /* a PostgreSQL array type */
        return;
    }
    const char *a = args[0] ? args : NULL;
#define IS(s) (strcmp(base, (s)) == 0)
    if (IS("tinyint"))
        snprintf(out, cap, "%s", is_unsigned ? "integer" : "smallint"); /* incl. tinyint(1) */
    else if (IS("smallint"))
        snprintf(out, cap, "%s", is_unsigned ? "integer" : "smallint");
    else if (IS("mediumint") || IS("int") || IS("integer"))
        snprintf(out, cap, "%s", is_unsigned ? "bigint" : "integer");
    else if (IS("bigint"))
        snprintf(out, cap, "%s", is_unsigned ? "numeric(20,0)" : "bigint");
    else if (IS("decimal") || IS("numeric") || IS("dec") || IS("fixed"))
        snprintf(out, cap, "numeric%s%s%s", a ? "(" : "", a ? a : "", a ? ")" : "");
    else if (IS("float"))
        snprintf(out, cap, "%s", a && !strchr(a, ',') && atoi(a) > 24 ? "double precision" : "real");
    else if (IS("double") || IS("double precision"))
        snprintf(out, cap, "double precision");
    else if (IS("datetime") || (IS("timestamp") && !*after))
        snprintf(out, cap, "timestamp%s%s%s", a ? "(" : "", a ? a : "", a ? ")" : "");
    else if (IS("time") && !*after)
        snprintf(out, cap, "interval"); /* MySQL's TIME spans +-838 hours */
    else if (IS("year"))
        snprintf(out, cap, "smallint");
    else if (IS("char"))
        snprintf(out, cap, "varchar(%s)", a ? a : "1"); /* MySQL's CHAR is CHAR(1) */
    else if (IS("varchar"))
        snprintf(out, cap, "varchar%s%s%s", a ? "(" : "", a ? a : "", a ? ")" : "");
    else if (IS("tinytext") || IS("mediumtext") || IS("longtext") || IS("enum") || IS("set"))
        snprintf(out, cap, "text");
    else if (IS("binary") || IS("varbinary") || IS("tinyblob") || IS("blob") ||
             IS("mediumblob") || IS("longblob"))
        snprintf(out, cap, "bytea");
    else if (IS("json"))
        snprintf(out, cap, "jsonb");
    else if (IS("bit"))
        snprintf(out, cap, "bit varying(%s)", a ? a : "1");
    else if (is_pg_name(base) ||
             ((IS("timestamp") || IS("time")) &&
              (strcmp(after, "with time zone") == 0 || strcmp(after, "without time zone") == 0)))
        snprintf(out, cap, "%s", t);
#undef IS
}
