/* The etl_host services table: what every connector, built-in or plugin, may call.
 * Thin adapters over the engine's own modules (jansson values, paths, staging), so a
 * plugin links against nothing of the engine's. */
#include "host.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "jsontext.h"
#include "log.h"
#include "path.h"
#include "stage.h"
#include "version.h"

/* ---------- errors and logging ---------- */

static etl_status h_fail(etl_error *err, etl_status status, const char *name, bool transient,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    etl_vfail(err, status, name, fmt, ap);
    va_end(ap);
    if (err)
        err->transient = transient;
    return status;
}

static void h_log(etl_task *task, etl_log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return; /* skip the formatting */
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (task)
        log_msg(level, task->state, task->key, task->conn_name, "%s", msg);
    else
        log_msg(level, NULL, NULL, NULL, "%s", msg);
}

/* ---------- validate-time checks ---------- */

/* The node at a dotted field path inside node; "x" also finds "x.$". NULL if absent. */
static const doc_node *find_field(const doc_node *node, const char *field, bool *out_exact)
{
    char part[256];
    *out_exact = true;
    while (node && *field) {
        const char *dot = strchr(field, '.');
        size_t n = dot ? (size_t)(dot - field) : strlen(field);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, field, n);
        part[n] = '\0';
        const doc_node *next = doc_get(node, part);
        if (!next && n + 2 < sizeof part) {
            memcpy(part + n, ".$", 3);
            next = doc_get(node, part);
        }
        if (!next) {
            *out_exact = false;
            return node;
        }
        node = next;
        field = dot ? dot + 1 : field + n;
    }
    return node;
}

static void h_check_error(etl_checker *chk, const char *field, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bool exact;
    const doc_node *n = find_field(chk->node, field ? field : "", &exact);
    doc_pos pos = n ? n->pos : (doc_pos){0, 0};
    chk->errors++;
    if (field && *field)
        diag_add(chk->d, pos, "%s: '%s': %s", chk->what, field, msg);
    else
        diag_add(chk->d, pos, "%s: %s", chk->what, msg);
}

/* ---------- cancellation and progress ---------- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void host_task_init(etl_task *t, const char *state, const char *key, const char *conn_name,
                    const char *stage_dir, int attempt, atomic_int *cancel)
{
    memset(t, 0, sizeof *t);
    t->state = state ? state : "";
    t->key = key ? key : "";
    t->conn_name = conn_name ? conn_name : "";
    t->stage_dir = stage_dir ? stage_dir : ".";
    t->base_dir = ".";
    t->run_id = "";
    t->pipeline = "";
    t->attempt = attempt;
    t->cancel = cancel;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
}

/* The plugin's cancel callback may block (PQcancel connects to the server), so it never
 * runs on the scheduler thread: a short-lived thread runs it under t->mu, and
 * host_task_done waits for such a thread before the task may be freed. */
static void *canceller(void *arg)
{
    etl_task *t = arg;
    pthread_mutex_lock(&t->mu);
    void (*fn)(void *) = t->cancel_fn;
    t->cancel_fn = NULL; /* called once */
    if (fn)
        fn(t->cancel_arg); /* under mu: on_cancel(NULL) cannot return while fn runs */
    t->cancellers--;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu); /* the last touch of t */
    return NULL;
}

void host_task_cancel(etl_task *t)
{
    atomic_store(t->cancel, 1);
    pthread_mutex_lock(&t->mu);
    if (t->cancel_fn) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        t->cancellers++;
        if (pthread_create(&th, &at, canceller, t) != 0) {
            /* no thread to be had: run it here rather than not at all */
            void (*fn)(void *) = t->cancel_fn;
            t->cancel_fn = NULL;
            t->cancellers--;
            fn(t->cancel_arg);
        }
        pthread_attr_destroy(&at);
    }
    pthread_mutex_unlock(&t->mu);
}

void host_task_done(etl_task *t)
{
    pthread_mutex_lock(&t->mu);
    t->cancel_fn = NULL;
    while (t->cancellers > 0)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

void host_task_destroy(etl_task *t)
{
    host_task_done(t);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
}

static bool h_cancelled(etl_task *t) { return atomic_load(t->cancel) != 0; }

static void h_on_cancel(etl_task *t, void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&t->mu);
    if (fn && atomic_load(t->cancel)) {
        fn(arg);
        fn = NULL;
    }
    t->cancel_fn = fn;
    t->cancel_arg = arg;
    pthread_mutex_unlock(&t->mu);
}

static void h_progress(etl_task *t, uint64_t rows, uint64_t bytes)
{
    atomic_fetch_add(&t->rows, rows);
    atomic_fetch_add(&t->bytes, bytes);
}

static const char *h_task_state(etl_task *t) { return t->state; }
static const char *h_task_key(etl_task *t) { return t->key; }
static int h_task_attempt(etl_task *t) { return t->attempt; }
static const char *h_task_base_dir(etl_task *t) { return t->base_dir; }
static bool h_task_keep_staged(etl_task *t) { return t->keep_staged; }
static const char *h_task_run_id(etl_task *t) { return t->run_id; }
static const char *h_task_pipeline(etl_task *t) { return t->pipeline; }
static const char *h_task_path(etl_task *t) { return t->path; }

static double h_task_time_left(etl_task *t)
{
    if (!t->deadline_ns)
        return -1;
    double left = (double)(t->deadline_ns - mono_ns()) / 1e9;
    return left > 0 ? left : 0;
}

/* ---------- JSON ---------- */

static etl_json_type h_json_type(const etl_json *v)
{
    switch (json_typeof(host_json(v))) {
    case JSON_OBJECT: return ETL_JSON_OBJECT;
    case JSON_ARRAY: return ETL_JSON_ARRAY;
    case JSON_STRING: return ETL_JSON_STRING;
    case JSON_INTEGER: return ETL_JSON_INT;
    case JSON_REAL: return ETL_JSON_REAL;
    case JSON_TRUE:
    case JSON_FALSE: return ETL_JSON_BOOL;
    default: return ETL_JSON_NULL;
    }
}

static etl_json *h_json_get(const etl_json *obj, const char *key)
{
    return host_wrap(json_object_get(host_json(obj), key));
}

static size_t h_json_size(const etl_json *v)
{
    json_t *j = host_json(v);
    return json_is_array(j) ? json_array_size(j) : json_is_object(j) ? json_object_size(j) : 0;
}

static etl_json *h_json_at(const etl_json *arr, size_t i)
{
    return host_wrap(json_array_get(host_json(arr), i));
}

/* Objects keep insertion order (jansson >= 2.8), so member i is well defined; walking
 * from the start makes a full iteration O(n^2), acceptable for parameter objects. */
static const char *h_json_key_at(const etl_json *obj, size_t i, etl_json **out_value)
{
    json_t *o = host_json(obj);
    if (!json_is_object(o))
        return NULL;
    const char *key;
    json_t *val;
    size_t k = 0;
    json_object_foreach(o, key, val) {
        if (k++ == i) {
            if (out_value)
                *out_value = host_wrap(val);
            return key;
        }
    }
    return NULL;
}

static const char *h_json_string(const etl_json *v, size_t *out_len)
{
    json_t *j = host_json(v);
    if (!json_is_string(j))
        return NULL;
    if (out_len)
        *out_len = json_string_length(j);
    return json_string_value(j);
}

static bool h_json_int(const etl_json *v, int64_t *out)
{
    if (!json_is_integer(host_json(v)))
        return false;
    *out = json_integer_value(host_json(v));
    return true;
}

static bool h_json_real(const etl_json *v, double *out)
{
    if (!json_is_number(host_json(v)))
        return false;
    *out = json_number_value(host_json(v));
    return true;
}

static bool h_json_bool(const etl_json *v, bool *out)
{
    if (!json_is_boolean(host_json(v)))
        return false;
    *out = json_is_true(host_json(v));
    return true;
}

static etl_json *h_new_null(void) { return host_wrap(json_null()); }
static etl_json *h_new_bool(bool b) { return host_wrap(json_boolean(b)); }
static etl_json *h_new_int(int64_t i) { return host_wrap(json_integer(i)); }
static etl_json *h_new_real(double d) { return host_wrap(json_real(d)); }
static etl_json *h_new_string(const char *s, size_t len) { return host_wrap(json_stringn(s, len)); }
static etl_json *h_new_array(void) { return host_wrap(json_array()); }
static etl_json *h_new_object(void) { return host_wrap(json_object()); }

static int h_json_set(etl_json *obj, const char *key, etl_json *value)
{
    return json_object_set_new(host_json(obj), key, host_json(value));
}

static int h_json_append(etl_json *arr, etl_json *value)
{
    return json_array_append_new(host_json(arr), host_json(value));
}

static etl_json *h_incref(etl_json *v) { return host_wrap(json_incref(host_json(v))); }
static void h_decref(etl_json *v) { json_decref(host_json(v)); }

static etl_json *h_parse(const char *text, size_t len, etl_error *err)
{
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v)
        etl_fail(err, ETL_EINVAL, "Etl.InvalidJson", "invalid JSON at line %d, column %d: %s",
                 je.line, je.column, je.text);
    return host_wrap(v);
}

static char *h_dump(const etl_json *v, size_t *out_len)
{
    return jsontext_dumps(host_json(v), out_len);
}

/* ---------- paths ---------- */

static etl_path *h_path_compile(const char *text, etl_error *err)
{
    char msg[256];
    path *p = path_compile(text, PATH_REFERENCE, msg, sizeof msg);
    if (!p)
        etl_fail(err, ETL_EINVAL, "Etl.InvalidPath", "%s", msg);
    return (etl_path *)p;
}

static etl_json *h_path_get(const etl_path *p, const etl_json *root)
{
    return host_wrap(path_get((const path *)p, host_json(root)));
}

static void h_path_free(etl_path *p) { path_free((path *)p); }

/* ---------- staging ---------- */

/* mkdir -p, mode 0700 for what it creates (staged rows are the user's data). */
static int mkdir_p(const char *dir)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static etl_stage_writer *h_stage_open(etl_task *task, const etl_column *cols, size_t n_cols,
                                      const char *name_hint, etl_error *err)
{
    if (mkdir_p(task->stage_dir) != 0) {
        etl_fail(err, ETL_EIO, "Etl.StagingFailed", "cannot create the staging directory %s: %s",
                 task->stage_dir, strerror(errno));
        return NULL;
    }
    /* Named by state, key and attempt, so an operator can tell the files apart; the
     * writer keeps only [A-Za-z0-9._-] of that, so keys such as "a%" and "a_" would
     * meet in one name. A hash of the exact state, key, attempt and a per-process
     * sequence number makes every file of a run distinct (duplicate keys in a Map
     * included). The writer adds ".csv" and cuts names at 120 bytes, so state and key
     * are cut first: the hash must always end within those 120 bytes (40 + 1 + 50 +
     * "-a" + 10 digits + "-" + 8 = 112), or two keys would share one file. */
    static _Atomic uint64_t seq;
    uint64_t n = atomic_fetch_add(&seq, 1);
    uint32_t h = stage_crc32c(0, task->state, strlen(task->state) + 1);
    h = stage_crc32c(h, task->key, strlen(task->key) + 1);
    h = stage_crc32c(h, &task->attempt, sizeof task->attempt);
    h = stage_crc32c(h, &n, sizeof n);
    char name[512];
    snprintf(name, sizeof name, "%.40s%s%.50s-a%d-%08x%s%.40s", task->state,
             task->key[0] ? "-" : "", task->key, task->attempt, h, name_hint ? "-" : "",
             name_hint ? name_hint : "");
    return (etl_stage_writer *)stage_writer_open(task->stage_dir, name,
                                                 (const stage_column *)cols, n_cols, err);
}

static etl_status h_stage_row(etl_stage_writer *w, const char *const *fields,
                              const size_t *lens, etl_error *err)
{
    return stage_writer_row((stage_writer *)w, fields, lens, err);
}

static etl_status h_stage_finish(etl_stage_writer *w, etl_json **out_manifest, etl_error *err)
{
    json_t *m = NULL;
    etl_status st = stage_writer_finish((stage_writer *)w, out_manifest ? &m : NULL, err);
    if (out_manifest)
        *out_manifest = host_wrap(m);
    return st;
}

static void h_stage_abort(etl_stage_writer *w) { stage_writer_abort((stage_writer *)w); }

static etl_stage_reader *h_stage_read_open(etl_task *task, const char *file, etl_error *err)
{
    (void)task;
    return (etl_stage_reader *)stage_reader_open(file, err);
}

static const etl_json *h_stage_read_manifest(etl_stage_reader *r)
{
    return host_wrap(stage_reader_manifest((stage_reader *)r));
}

static int h_stage_read_row(etl_stage_reader *r, const char *const **out_fields,
                            const size_t **out_lens, size_t *out_n, etl_error *err)
{
    return stage_reader_row((stage_reader *)r, out_fields, out_lens, out_n, err);
}

static long h_stage_read_bytes(etl_stage_reader *r, char *buf, size_t cap, etl_error *err)
{
    return (long)stage_reader_read((stage_reader *)r, buf, cap, err);
}

static void h_stage_read_close(etl_stage_reader *r) { stage_reader_close((stage_reader *)r); }

static etl_csv_reader *h_csv_open(const char *path, char delimiter, char quote,
                                  bool empty_is_null, etl_error *err)
{
    csv_dialect d = {.delimiter = delimiter ? delimiter : ',',
                     .quote = quote ? quote : '"',
                     .empty_is_null = empty_is_null};
    return (etl_csv_reader *)csv_reader_open(path, &d, err);
}

static int h_csv_row(etl_csv_reader *r, const char *const **out_fields, const size_t **out_lens,
                     size_t *out_n, etl_error *err)
{
    return csv_reader_row((csv_reader *)r, out_fields, out_lens, out_n, err);
}

static uint64_t h_csv_line(const etl_csv_reader *r) { return csv_reader_line((const csv_reader *)r); }
static void h_csv_close(etl_csv_reader *r) { csv_reader_close((csv_reader *)r); }

static const etl_host services = {
    .abi_version = ETL_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(etl_host),
    .host_version = ETLRUN_VERSION,
    .fail = h_fail,
    .log = h_log,
    .check_error = h_check_error,
    .cancelled = h_cancelled,
    .on_cancel = h_on_cancel,
    .progress = h_progress,
    .task_state = h_task_state,
    .task_key = h_task_key,
    .task_attempt = h_task_attempt,
    .task_time_left = h_task_time_left,
    .json_type = h_json_type,
    .json_get = h_json_get,
    .json_size = h_json_size,
    .json_at = h_json_at,
    .json_key_at = h_json_key_at,
    .json_string = h_json_string,
    .json_int = h_json_int,
    .json_real = h_json_real,
    .json_bool = h_json_bool,
    .json_new_null = h_new_null,
    .json_new_bool = h_new_bool,
    .json_new_int = h_new_int,
    .json_new_real = h_new_real,
    .json_new_string = h_new_string,
    .json_new_array = h_new_array,
    .json_new_object = h_new_object,
    .json_set = h_json_set,
    .json_append = h_json_append,
    .json_incref = h_incref,
    .json_decref = h_decref,
    .json_parse = h_parse,
    .json_dump = h_dump,
    .path_compile = h_path_compile,
    .path_get = h_path_get,
    .path_free = h_path_free,
    .stage_open = h_stage_open,
    .stage_row = h_stage_row,
    .stage_finish = h_stage_finish,
    .stage_abort = h_stage_abort,
    .stage_read_open = h_stage_read_open,
    .stage_read_manifest = h_stage_read_manifest,
    .stage_read_row = h_stage_read_row,
    .stage_read_close = h_stage_read_close,
    .csv_open = h_csv_open,
    .csv_row = h_csv_row,
    .csv_line = h_csv_line,
    .csv_close = h_csv_close,
    .alloc = malloc,
    .free = free,
    .stage_read_bytes = h_stage_read_bytes,
    .task_base_dir = h_task_base_dir,
    .task_keep_staged = h_task_keep_staged,
    .task_run_id = h_task_run_id,
    .task_pipeline = h_task_pipeline,
    .task_path = h_task_path,
};

const etl_host *host_services(void) { return &services; }
