/* The `file` connector: CSV and JSON-lines files as sources (file.extract, to a staged
 * CSV file) and as targets (file.load, a staged file written or appended to a path,
 * atomically). It needs no connection, so a pipeline can run with no server at all.
 *
 * This file holds the connector table and the Parameters checks, shared by validate
 * time (action check, reporting with host->check_error at the field's position) and
 * run time (the evaluated Parameters, reporting the first problem as
 * Etl.InvalidInput): one set of rules, so what validates also runs. The work itself is
 * in file_extract.c and file_load.c. Only the public plugin interface is used. */
#include "file.h"

#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/* ---------- small shared helpers ---------- */

const char *file_strerror(int e, char *buf, size_t n)
{
    return strerror_r(e, buf, n); /* GNU variant (_GNU_SOURCE): returns the text */
}

static bool ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

file_format file_format_of(const char *path)
{
    if (ends_with_ci(path, ".csv"))
        return FILE_FMT_CSV;
    if (ends_with_ci(path, ".jsonl") || ends_with_ci(path, ".ndjson"))
        return FILE_FMT_JSONL;
    return FILE_FMT_UNKNOWN;
}

size_t file_utf8_invalid_at(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        /* ASCII runs are the common case: eight bytes per step */
        while (i + 8 <= len) {
            uint64_t x;
            memcpy(&x, s + i, 8);
            if (x & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c == 0xE0)
            n = 2, lo = 0xA0; /* no overlong 3-byte forms */
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
            n = 2;
        else if (c == 0xED)
            n = 2, hi = 0x9F; /* no UTF-16 surrogates */
        else if (c == 0xF0)
            n = 3, lo = 0x90; /* no overlong 4-byte forms */
        else if (c >= 0xF1 && c <= 0xF3)
            n = 3;
        else if (c == 0xF4)
            n = 3, hi = 0x8F; /* nothing above U+10FFFF */
        else
            return i;
        if (len - i - 1 < n || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += n + 1;
    }
    return len;
}

/* ---------- Parameters ---------- */

typedef enum ptype {
    T_STRING,
    T_BOOL,
    T_CHAR,          /* one ASCII character, not a line break */
    T_CHAR_OR_EMPTY, /* the same, or "" */
    T_COLUMNS,       /* a list of names, or an object name -> JSONPath */
    T_ANY,           /* the host's: `key` names the task (and its staged file) */
} ptype;

typedef struct param {
    const char *name;
    ptype type;
    bool required;
    const char *const *choices; /* T_STRING: the accepted values (any case), or NULL */
} param;

static const char *const formats[] = {"csv", "jsonl", NULL};
static const char *const encodings[] = {"utf-8", "utf8", NULL};
static const char *const modes[] = {"write", "append", NULL};

static const param extract_params[] = {
    {"path", T_STRING, true, NULL},
    {"format", T_STRING, false, formats},
    {"header", T_BOOL, false, NULL},
    {"columns", T_COLUMNS, false, NULL},
    {"delimiter", T_CHAR, false, NULL},
    {"quote", T_CHAR_OR_EMPTY, false, NULL},
    {"empty_is_null", T_BOOL, false, NULL},
    {"encoding", T_STRING, false, encodings},
    {"key", T_ANY, false, NULL},
    {NULL, T_STRING, false, NULL},
};

static const param load_params[] = {
    {"file", T_STRING, true, NULL},
    {"path", T_STRING, true, NULL},
    {"mode", T_STRING, false, modes},
    {"format", T_STRING, false, formats},
    {"key", T_ANY, false, NULL},
    {NULL, T_STRING, false, NULL},
};

/* Where problems go: the checker at validate time, else the error (first problem). */
typedef struct report {
    const etl_host *h;
    etl_checker *chk;    /* validate time; NULL at run time */
    etl_error *err;      /* run time */
    const char *action;  /* "file.extract" */
    int problems;
} report;

static void problem(report *rp, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(report *rp, const char *field, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (rp->chk)
        rp->h->check_error(rp->chk, field, "%s", msg);
    else if (rp->problems == 0)
        rp->h->fail(rp->err, ETL_EINVAL, "Etl.InvalidInput", false, "%s: Parameters: '%s': %s",
                    rp->action, field, msg);
    rp->problems++;
}

/* The literal value of name (NULL when absent or given as "name.$"). */
static const etl_json *lit(const etl_host *h, const etl_json *params, const char *name)
{
    return h->json_get(params, name);
}

/* True when name is given either way ("name" or "name.$"). */
static bool given(const etl_host *h, const etl_json *params, const char *name)
{
    char key[64];
    if (h->json_get(params, name))
        return true;
    snprintf(key, sizeof key, "%s.$", name);
    return h->json_get(params, key) != NULL;
}

static const char *type_name(etl_json_type t)
{
    static const char *const names[] = {"null", "a boolean", "an integer", "a number",
                                        "a string", "an array", "an object"};
    return (unsigned)t <= ETL_JSON_OBJECT ? names[t] : "a value";
}

static void check_columns(report *rp, const etl_json *v)
{
    const etl_host *h = rp->h;
    etl_json_type t = h->json_type(v);
    size_t n = h->json_size(v);
    if (t != ETL_JSON_ARRAY && t != ETL_JSON_OBJECT) {
        problem(rp, "columns", "must be a list of column names (or, for jsonl, an object "
                "column -> JSONPath), not %s", type_name(t));
        return;
    }
    if (n == 0) {
        problem(rp, "columns", "must name at least one column");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        etl_json *item = NULL;
        const char *name = NULL;
        if (t == ETL_JSON_ARRAY) {
            item = h->json_at(v, i);
            name = h->json_string(item, NULL);
            if (!name) {
                problem(rp, "columns", "item %zu must be a column name (a string), not %s",
                        i + 1, type_name(h->json_type(item)));
                continue;
            }
        } else {
            name = h->json_key_at(v, i, &item);
            const char *text = h->json_string(item, NULL);
            if (!text) {
                problem(rp, "columns", "column '%s' must map to a JSONPath string such as "
                        "\"$.a.b\", not %s", name, type_name(h->json_type(item)));
                continue;
            }
            etl_error perr = {0};
            etl_path *p = h->path_compile(text, &perr);
            if (!p)
                problem(rp, "columns", "column '%s': bad JSONPath '%s': %s", name, text,
                        perr.cause);
            h->path_free(p);
        }
        if (!name[0])
            problem(rp, "columns", "item %zu: a column name cannot be empty", i + 1);
        /* duplicates: quadratic, but column lists are short and this runs once */
        for (size_t j = 0; t == ETL_JSON_ARRAY && j < i; j++) {
            const char *other = h->json_string(h->json_at(v, j), NULL);
            if (other && strcmp(other, name) == 0) {
                problem(rp, "columns", "column '%s' is listed twice", name);
                break;
            }
        }
    }
}

/* The checks every action shares: an object; known names; types of literal values;
 * choices; required fields present one way or the other. */
static void check_common(report *rp, const etl_json *params, const param *spec)
{
    const etl_host *h = rp->h;
    if (!params) {
        problem(rp, "", "%s needs Parameters (at least '%s')", rp->action, spec->name);
        return;
    }
    if (h->json_type(params) != ETL_JSON_OBJECT) {
        problem(rp, "", "Parameters must be an object, not %s", type_name(h->json_type(params)));
        return;
    }
    size_t n = h->json_size(params);
    for (size_t i = 0; i < n; i++) {
        etl_json *v = NULL;
        const char *key = h->json_key_at(params, i, &v);
        size_t klen = strlen(key);
        bool dynamic = klen >= 2 && strcmp(key + klen - 2, ".$") == 0;
        size_t base = dynamic ? klen - 2 : klen; /* the name without ".$" */
        const param *p = spec;
        while (p->name && !(strlen(p->name) == base && memcmp(p->name, key, base) == 0))
            p++;
        if (!p->name) {
            char known[256] = "";
            for (const param *q = spec; q->name; q++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         q == spec ? "" : ", ", q->name);
            problem(rp, key, "unknown parameter of %s (known: %s)", rp->action, known);
            continue;
        }
        if (dynamic)
            continue; /* a path: its value is known only at run time */
        etl_json_type t = h->json_type(v);
        switch (p->type) {
        case T_STRING: {
            const char *s = h->json_string(v, NULL);
            if (!s) {
                problem(rp, p->name, "must be a string, not %s", type_name(t));
                break;
            }
            if (p->required && !s[0])
                problem(rp, p->name, "must not be empty");
            if (!p->choices)
                break;
            const char *const *c = p->choices;
            while (*c && strcasecmp(*c, s) != 0)
                c++;
            if (*c)
                break;
            if (p->choices == encodings)
                problem(rp, p->name, "'%s' is not supported: only utf-8 files are read; "
                        "convert the file first (iconv -f %s -t utf-8)", s, s);
            else
                problem(rp, p->name, "'%s' is not one of %s%s%s", s, p->choices[0],
                        p->choices[1] ? ", " : "", p->choices[1] ? p->choices[1] : "");
            break;
        }
        case T_BOOL:
            if (t != ETL_JSON_BOOL)
                problem(rp, p->name, "must be true or false, not %s", type_name(t));
            break;
        case T_CHAR:
        case T_CHAR_OR_EMPTY: {
            size_t len = 0;
            const char *s = h->json_string(v, &len);
            if (!s) {
                problem(rp, p->name, "must be a string of one character, not %s", type_name(t));
            } else if (len == 0 && p->type == T_CHAR_OR_EMPTY) {
                /* "" = no quoting */
            } else if (len != 1 || (unsigned char)s[0] >= 0x80 || s[0] == '\n' || s[0] == '\r'
                       || s[0] == '\0') {
                problem(rp, p->name, "must be one ASCII character other than a line break%s, "
                        "not \"%s\"", p->type == T_CHAR_OR_EMPTY ? " (or \"\" for none)" : "",
                        s);
            }
            break;
        }
        case T_COLUMNS:
            check_columns(rp, v);
            break;
        case T_ANY:
            break;
        }
    }
    for (const param *p = spec; p->name; p++)
        if (p->required && !given(h, params, p->name))
            problem(rp, p->name, "%s needs '%s' (or '%s.$')", rp->action, p->name, p->name);
}

static file_format format_param(const etl_host *h, const etl_json *params)
{
    const char *s = h->json_string(lit(h, params, "format"), NULL);
    if (s && strcasecmp(s, "csv") == 0)
        return FILE_FMT_CSV;
    if (s && strcasecmp(s, "jsonl") == 0)
        return FILE_FMT_JSONL;
    return FILE_FMT_UNKNOWN;
}

static bool bool_param(const etl_host *h, const etl_json *params, const char *name, bool dflt)
{
    bool b;
    return h->json_bool(lit(h, params, name), &b) ? b : dflt;
}

/* Check file.extract's Parameters; with o, also fill it (run time: all values known). */
static void check_extract_params(report *rp, const etl_json *params, file_extract_opts *o)
{
    const etl_host *h = rp->h;
    check_common(rp, params, extract_params);
    if (!params || h->json_type(params) != ETL_JSON_OBJECT)
        return;
    const char *path = h->json_string(lit(h, params, "path"), NULL);
    file_format fmt = format_param(h, params);
    if (!fmt && !given(h, params, "format") && path) {
        fmt = file_format_of(path);
        if (!fmt)
            problem(rp, "path", "cannot tell the format of '%s' from its name: add format: "
                    "csv or format: jsonl", path);
    }
    const etl_json *cols = lit(h, params, "columns");
    bool has_cols = given(h, params, "columns");
    if (fmt == FILE_FMT_JSONL) {
        static const char *const csv_only[] = {"header", "delimiter", "quote", "empty_is_null"};
        for (size_t i = 0; i < sizeof csv_only / sizeof *csv_only; i++)
            if (given(h, params, csv_only[i]))
                problem(rp, csv_only[i], "applies to csv files only (this file is jsonl)");
    }
    if (fmt == FILE_FMT_CSV) {
        if (cols && h->json_type(cols) == ETL_JSON_OBJECT)
            problem(rp, "columns", "csv columns are a list of names; the column -> JSONPath "
                    "form is for jsonl files");
        if (given(h, params, "header") && !given(h, params, "header.$") &&
            !bool_param(h, params, "header", true) && !has_cols)
            problem(rp, "header", "header: false needs columns: the list of column names, "
                    "in the order of the fields");
        size_t dl = 0, ql = 0;
        const char *d = h->json_string(lit(h, params, "delimiter"), &dl);
        const char *q = h->json_string(lit(h, params, "quote"), &ql);
        char dc = d && dl == 1 ? d[0] : ',';
        if (q && ql == 1 && q[0] == dc)
            problem(rp, "quote", "the quote and the delimiter must differ (both '%c')", dc);
    }
    if (!o || rp->problems)
        return;
    size_t len = 0;
    const char *s;
    o->path = path;
    o->format = fmt;
    o->columns = cols;
    o->header = bool_param(h, params, "header", !cols);
    o->delimiter = (s = h->json_string(lit(h, params, "delimiter"), &len)) && len == 1 ? s[0] : ',';
    o->quote = (s = h->json_string(lit(h, params, "quote"), &len)) ? (len ? s[0] : '\0') : '"';
    o->empty_is_null = bool_param(h, params, "empty_is_null", false);
}

static void check_load_params(report *rp, const etl_json *params, file_load_opts *o)
{
    const etl_host *h = rp->h;
    check_common(rp, params, load_params);
    if (!o || rp->problems)
        return;
    const char *mode = h->json_string(lit(h, params, "mode"), NULL);
    o->file = h->json_string(lit(h, params, "file"), NULL);
    o->path = h->json_string(lit(h, params, "path"), NULL);
    o->append = mode && strcasecmp(mode, "append") == 0;
    o->format = format_param(h, params);
    if (!o->format)
        o->format = file_format_of(o->path) == FILE_FMT_JSONL ? FILE_FMT_JSONL : FILE_FMT_CSV;
}

/* A relative path is relative to the pipeline file's directory, as the pipeline's
 * author sees it, whatever the current directory of etlrun. */
static const char *resolve(const etl_host *h, etl_task *task, const char *path, char *buf,
                           size_t len)
{
    const char *base = h->struct_size > offsetof(etl_host, task_base_dir) && h->task_base_dir
                           ? h->task_base_dir(task)
                           : NULL;
    if (!path || path[0] == '/' || !base || !*base)
        return path;
    if ((size_t)snprintf(buf, len, "%s/%s", base, path) >= len)
        return path; /* too long to join: open() will report the relative name */
    return buf;
}

/* ---------- actions ---------- */

static bool extract_check(const etl_host *h, const etl_json *params, etl_checker *chk)
{
    report rp = {.h = h, .chk = chk, .action = "file.extract"};
    check_extract_params(&rp, params, NULL);
    return rp.problems == 0;
}

static etl_status extract_run(const etl_host *h, etl_task *task, etl_conn *conn,
                              const etl_json *params, etl_json **out_result, etl_error *err)
{
    (void)conn;
    *out_result = NULL;
    file_extract_opts o = {0};
    report rp = {.h = h, .err = err, .action = "file.extract"};
    check_extract_params(&rp, params, &o);
    if (rp.problems)
        return err->status;
    char buf[4096];
    o.path = resolve(h, task, o.path, buf, sizeof buf);
    return file_extract_run(h, task, &o, out_result, err);
}

static bool load_check(const etl_host *h, const etl_json *params, etl_checker *chk)
{
    report rp = {.h = h, .chk = chk, .action = "file.load"};
    check_load_params(&rp, params, NULL);
    return rp.problems == 0;
}

static etl_status load_run(const etl_host *h, etl_task *task, etl_conn *conn,
                           const etl_json *params, etl_json **out_result, etl_error *err)
{
    (void)conn;
    *out_result = NULL;
    file_load_opts o = {0};
    report rp = {.h = h, .err = err, .action = "file.load"};
    check_load_params(&rp, params, &o);
    if (rp.problems)
        return err->status;
    char buf[4096];
    o.path = resolve(h, task, o.path, buf, sizeof buf);
    return file_load_run(h, task, &o, out_result, err);
}

static const etl_action actions[] = {
    {sizeof(etl_action), "extract", "read a CSV or JSON-lines file into a staged file", 0,
     extract_check, extract_run},
    {sizeof(etl_action), "load", "write or append a staged file to a path, atomically", 0,
     load_check, load_run},
    {0, NULL, NULL, 0, NULL, NULL},
};

/* Every host member used here is in the first release of ABI 1, so host->struct_size
 * needs no check. No connection: open is NULL and actions get conn == NULL. */
static const etl_connector connector = {
    .abi_version = ETL_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(etl_connector),
    .name = "file",
    .version = "1.0.0",
    .description = "CSV and JSON-lines files: extract to a staged file, load a staged file",
    .actions = actions,
};

const etl_connector *etl_builtin_file(void);

const etl_connector *etl_builtin_file(void) { return &connector; }
