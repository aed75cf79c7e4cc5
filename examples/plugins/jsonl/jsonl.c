/* jsonl: an example etlrun connector plugin, moving JSON-lines files in and out of staging.
 *   jsonl.read   FILE.jsonl --one object per line--> staged CSV + manifest
 *   jsonl.write  staged CSV --one object per row--> FILE.jsonl (temp file + rename)
 * It uses nothing but the etl_host table, so it builds out of tree with
 *   cc $(pkg-config --cflags etlrun-connector) -shared -fPIC -o jsonl.so jsonl.c
 * Every host member used here is in the first release of ABI 1, so no check of
 * host->struct_size is needed (see docs/plugins.md, "Versioning"). */
#define _POSIX_C_SOURCE 200809L /* getline, mkstemp, fsync, fchmod */

#include <etlrun/connector.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Rows between two looks at the cancel flag and two progress reports: often enough to
 * stop within milliseconds, rarely enough to cost nothing. */
#define BATCH 1000

/* ---------- Parameters ---------- */

static etl_status oom(const etl_host *host, etl_error *err)
{
    return host->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
}

/* obj[key] = v, where v may be NULL: a constructor whose allocation failed. */
static bool set(const etl_host *host, etl_json *obj, const char *key, etl_json *v)
{
    return v && host->json_set(obj, key, v) == 0;
}

/* A required parameter, written either as a value or as "key.$" (known at run time). */
static bool require(const etl_host *host, const etl_json *params, etl_checker *chk,
                    const char *key)
{
    char dynamic[64];
    snprintf(dynamic, sizeof dynamic, "%s.$", key);
    if (host->json_get(params, key) || host->json_get(params, dynamic))
        return true;
    host->check_error(chk, "", "'%s' is required", key);
    return false;
}

/* A non-empty list of strings (the column names). */
static bool string_list(const etl_host *host, const etl_json *v)
{
    if (!v || host->json_type(v) != ETL_JSON_ARRAY || host->json_size(v) == 0)
        return false;
    for (size_t i = 0; i < host->json_size(v); i++)
        if (host->json_type(host->json_at(v, i)) != ETL_JSON_STRING)
            return false;
    return true;
}

static bool is_object(const etl_host *host, const etl_json *v)
{
    return v && host->json_type(v) == ETL_JSON_OBJECT;
}

/* Validate time: params are the Parameters as written, where "key.$" is a path whose
 * value is known only at run time: only literal values can be checked. Every problem
 * is reported, not just the first. */
static bool check_file_params(const etl_host *host, const etl_json *params, etl_checker *chk,
                              const char *other_key)
{
    if (!is_object(host, params)) {
        host->check_error(chk, "", "Parameters with 'path' and '%s' are required", other_key);
        return false;
    }
    bool ok = require(host, params, chk, "path");
    ok = require(host, params, chk, other_key) && ok;
    const etl_json *path = host->json_get(params, "path");
    if (path && host->json_type(path) != ETL_JSON_STRING) {
        host->check_error(chk, "path", "must be a string (a file path)");
        ok = false;
    }
    return ok;
}

static bool read_check(const etl_host *host, const etl_json *params, etl_checker *chk)
{
    bool ok = check_file_params(host, params, chk, "columns");
    const etl_json *cols = is_object(host, params) ? host->json_get(params, "columns") : NULL;
    if (cols && !string_list(host, cols)) {
        host->check_error(chk, "columns", "must be a non-empty list of column names");
        ok = false;
    }
    return ok;
}

static bool write_check(const etl_host *host, const etl_json *params, etl_checker *chk)
{
    return check_file_params(host, params, chk, "file");
}

/* Run time: params are evaluated, but a "key.$" path may have produced any type. */
static const char *string_param(const etl_host *host, const etl_json *params, const char *key,
                                etl_error *err)
{
    const char *s = host->json_string(host->json_get(params, key), NULL);
    if (!s || !*s)
        host->fail(err, ETL_EINVAL, "Etl.InvalidParameters", false,
                   "Parameters.%s must be a non-empty string", key);
    return s && *s ? s : NULL;
}

/* A path as written in the pipeline: a relative one is relative to the pipeline file,
 * so the pipeline runs the same from any directory. Free with host->free. */
static char *resolve(const etl_host *host, etl_task *task, const char *path)
{
    const char *base = path[0] == '/' ? "" : host->task_base_dir(task);
    size_t size = strlen(base) + strlen(path) + 2;
    char *full = host->alloc(size);
    if (full)
        snprintf(full, size, "%s%s%s", base, *base ? "/" : "", path);
    return full;
}

/* ---------- jsonl.read ---------- */

static bool blank(const char *s, size_t len)
{
    while (len && memchr(" \t\r\n", s[len - 1], 4))
        len--;
    return len == 0;
}

static etl_status read_run(const etl_host *host, etl_task *task, etl_conn *conn,
                           const etl_json *params, etl_json **out_result, etl_error *err)
{
    (void)conn; /* the connector has no connections */
    etl_status st = ETL_OK;
    etl_column *cols = NULL;
    const char **fields = NULL;
    size_t *lens = NULL;
    char **dumped = NULL; /* per row: the JSON text of non-string values (owned) */
    etl_stage_writer *w = NULL;
    etl_json *obj = NULL;
    FILE *in = NULL;
    char *path = NULL, *line = NULL;
    size_t cap = 0;

    const char *path_param = string_param(host, params, "path", err);
    if (!path_param)
        return err->status;
    const etl_json *names = host->json_get(params, "columns");
    if (!string_list(host, names))
        return host->fail(err, ETL_EINVAL, "Etl.InvalidParameters", false,
                          "Parameters.columns must be a non-empty list of column names");
    size_t n = host->json_size(names);
    cols = host->alloc(n * sizeof *cols);
    fields = host->alloc(n * sizeof *fields);
    lens = host->alloc(n * sizeof *lens);
    dumped = host->alloc(n * sizeof *dumped);
    if (dumped)
        memset(dumped, 0, n * sizeof *dumped);
    path = resolve(host, task, path_param);
    if (!cols || !fields || !lens || !dumped || !path) {
        st = oom(host, err);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        cols[i] = (etl_column){host->json_string(host->json_at(names, i), NULL), NULL};

    in = fopen(path, "r");
    if (!in) {
        st = host->fail(err, ETL_EIO, "Etl.FileError", false, "cannot open %s: %s", path,
                        strerror(errno));
        goto out;
    }
    w = host->stage_open(task, cols, n, "jsonl", err);
    if (!w) {
        st = err->status;
        goto out;
    }

    uint64_t line_no = 0, rows = 0, bytes = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, in)) >= 0) {
        line_no++;
        bytes += (uint64_t)len;
        if (blank(line, (size_t)len))
            continue;
        etl_error perr;
        obj = host->json_parse(line, (size_t)len, &perr);
        if (!obj || host->json_type(obj) != ETL_JSON_OBJECT) {
            st = host->fail(err, ETL_EINVAL, "Etl.InvalidJson", false, "%s:%llu: %s", path,
                            (unsigned long long)line_no,
                            obj ? "not a JSON object (each line must be one)" : perr.cause);
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            const etl_json *v = host->json_get(obj, cols[i].name);
            fields[i] = NULL; /* missing or null: SQL NULL */
            lens[i] = 0;
            if (v && host->json_type(v) == ETL_JSON_STRING) {
                fields[i] = host->json_string(v, &lens[i]);
            } else if (v && host->json_type(v) != ETL_JSON_NULL) {
                /* numbers, booleans, objects and arrays: their compact JSON text */
                fields[i] = dumped[i] = host->json_dump(v, &lens[i]);
                if (!dumped[i]) {
                    st = oom(host, err);
                    goto out;
                }
            }
        }
        st = host->stage_row(w, fields, lens, err);
        for (size_t i = 0; i < n; i++) {
            host->free(dumped[i]);
            dumped[i] = NULL;
        }
        host->json_decref(obj);
        obj = NULL;
        if (st != ETL_OK)
            goto out;
        if (++rows % BATCH == 0) {
            host->progress(task, BATCH, bytes);
            bytes = 0;
            if (host->cancelled(task)) {
                st = host->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                                "cancelled while reading %s", path);
                goto out;
            }
        }
    }
    if (ferror(in)) {
        st = host->fail(err, ETL_EIO, "Etl.FileError", true, "cannot read %s", path);
        goto out;
    }
    host->progress(task, rows % BATCH, bytes);
    /* the manifest {"file","rows","bytes","crc32c","columns"} is the action's result */
    st = host->stage_finish(w, out_result, err);
    w = NULL; /* freed by stage_finish, whatever the status */

out:
    if (w)
        host->stage_abort(w);
    if (obj)
        host->json_decref(obj);
    for (size_t i = 0; dumped && i < n; i++)
        host->free(dumped[i]);
    if (in)
        fclose(in);
    free(line); /* getline's buffer comes from malloc, not host->alloc */
    host->free(path);
    host->free(dumped);
    host->free(lens);
    host->free(fields);
    host->free(cols);
    return st;
}

/* ---------- jsonl.write ---------- */

/* One row as one line, {"column": "text" or null, ...}, in the staged column order. */
static etl_status write_row(const etl_host *host, FILE *f, const char *path,
                            const etl_json *columns, const char *const *fields,
                            const size_t *lens, uint64_t row, etl_error *err)
{
    etl_status st = ETL_OK;
    char *text = NULL;
    etl_json *obj = host->json_new_object();
    if (!obj)
        return oom(host, err);
    for (size_t i = 0; i < host->json_size(columns); i++) {
        const etl_json *col = host->json_at(columns, i);
        const char *name = host->json_string(host->json_get(col, "name"), NULL);
        /* json_new_string returns NULL for text that is not UTF-8: JSON cannot hold it */
        etl_json *v = fields[i] ? host->json_new_string(fields[i], lens[i])
                                : host->json_new_null();
        if (!v) {
            st = host->fail(err, ETL_EINVAL, "Etl.InvalidData", false,
                            "staged row %llu, column '%s': not UTF-8 text, cannot be written "
                            "as JSON", (unsigned long long)row, name);
            goto out;
        }
        if (host->json_set(obj, name, v) != 0) {
            st = oom(host, err);
            goto out;
        }
    }
    size_t len;
    text = host->json_dump(obj, &len);
    if (!text)
        st = oom(host, err);
    else if (fwrite(text, 1, len, f) != len || putc('\n', f) == EOF)
        st = host->fail(err, ETL_EIO, "Etl.FileError", false, "cannot write %s: %s", path,
                        strerror(errno));
out:
    host->free(text);
    host->json_decref(obj);
    return st;
}

static etl_status write_run(const etl_host *host, etl_task *task, etl_conn *conn,
                            const etl_json *params, etl_json **out_result, etl_error *err)
{
    (void)conn;
    etl_status st = ETL_OK;
    etl_stage_reader *r = NULL;
    char *file = NULL, *path = NULL, *tmp = NULL;
    bool tmp_exists = false;
    FILE *f = NULL;
    etl_json *result = NULL;

    const char *file_param = string_param(host, params, "file", err);
    const char *path_param = file_param ? string_param(host, params, "path", err) : NULL;
    if (!path_param)
        return err->status;
    file = resolve(host, task, file_param);
    path = resolve(host, task, path_param);
    size_t tmp_size = path ? strlen(path) + sizeof ".tmp-XXXXXX" : 0;
    if (!file || !path || !(tmp = host->alloc(tmp_size))) {
        st = oom(host, err);
        goto out;
    }
    /* verifies the manifest (rows, bytes, CRC32C) before a row is read */
    r = host->stage_read_open(task, file, err);
    if (!r) {
        st = err->status;
        goto out;
    }
    const etl_json *columns = host->json_get(host->stage_read_manifest(r), "columns");

    /* Write a temporary file beside the target and rename it over the target once
     * complete: readers of path see the old file or the new one, never a partial one. */
    snprintf(tmp, tmp_size, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    tmp_exists = fd >= 0;
    /* mkstemp creates mode 0600; the result is an ordinary output file */
    if (fd < 0 || fchmod(fd, 0644) != 0 || !(f = fdopen(fd, "w"))) {
        st = host->fail(err, ETL_EIO, "Etl.FileError", false, "cannot create %s: %s", tmp,
                        strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }

    const char *const *fields;
    const size_t *lens;
    size_t n_fields;
    uint64_t rows = 0;
    int got;
    while ((got = host->stage_read_row(r, &fields, &lens, &n_fields, err)) == 1) {
        if (n_fields != host->json_size(columns)) {
            st = host->fail(err, ETL_EINVAL, "Etl.IntegrityError", false,
                            "%s: row %llu has %zu fields, the manifest %zu columns", file,
                            (unsigned long long)rows + 1, n_fields, host->json_size(columns));
            goto out;
        }
        st = write_row(host, f, path, columns, fields, lens, rows + 1, err);
        if (st != ETL_OK)
            goto out;
        if (++rows % BATCH == 0) {
            host->progress(task, BATCH, 0);
            if (host->cancelled(task)) {
                st = host->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                                "cancelled while writing %s", path);
                goto out;
            }
        }
    }
    if (got < 0) {
        st = err->status;
        goto out;
    }
    host->progress(task, rows % BATCH, 0);
    /* on disk before the rename makes it visible */
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    f = NULL;
    if (!ok || rename(tmp, path) != 0) {
        st = host->fail(err, ETL_EIO, "Etl.FileError", false, "cannot write %s: %s", path,
                        strerror(errno));
        goto out;
    }
    tmp_exists = false;

    result = host->json_new_object();
    if (!result || !set(host, result, "path", host->json_new_string(path, strlen(path))) ||
        !set(host, result, "rows", host->json_new_int((int64_t)rows))) {
        st = oom(host, err);
        goto out;
    }
    *out_result = result;
    result = NULL;

out:
    if (result)
        host->json_decref(result);
    if (f)
        fclose(f);
    if (tmp_exists)
        unlink(tmp);
    if (r)
        host->stage_read_close(r);
    host->free(tmp);
    host->free(path);
    host->free(file);
    return st;
}

/* ---------- the connector ---------- */

static const etl_action actions[] = {
    {.struct_size = sizeof(etl_action),
     .name = "read",
     .summary = "JSON-lines file -> staged CSV (Parameters: path, columns)",
     .check = read_check,
     .run = read_run},
    {.struct_size = sizeof(etl_action),
     .name = "write",
     .summary = "staged CSV -> JSON-lines file, atomically (Parameters: file, path)",
     .check = write_check,
     .run = write_run},
    {0}, /* the end of the table: name NULL */
};

static const etl_connector connector = {
    .abi_version = ETL_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(etl_connector),
    .name = "jsonl",
    .version = "1.0.0",
    .description = "JSON-lines files (one JSON object per line) as sources and sinks",
    .actions = actions, /* no connections: open is NULL, actions get conn == NULL */
};

const etl_connector *etl_connector_entry(void) { return &connector; }
