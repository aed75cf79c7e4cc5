/* What people see of a run, built from the scheduler's events (report_observe): the
 * per-key table, the live progress line on stderr, the operator's log lines for task
 * failures, retries and catches, and the end-of-run summary (JSON and printed).
 *
 * DESIGN: everything here runs on the scheduler thread (the observer) or after
 * sched_run returned (summary), so the report needs no lock. Keys are kept in
 * first-seen order in an array, found through a jansson object used as a hash index.
 * The progress line is one write(2) starting with "\r" + erase-line, redrawn at most
 * every PROGRESS_INTERVAL_NS; log lines on a terminal erase it too (log.c). */
#include "report.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "timestamp.h"

#define PROGRESS_INTERVAL_NS 250000000LL /* at most 4 redraws a second */
#define PRINT_MAX_KEYS 50
#define SLOWEST_N 5

typedef struct key_stat {
    char *key;
    bool failed;                /* the key's last task failed (or timed out) */
    json_int_t rows, bytes;     /* the largest seen for the key */
    int64_t duration_ms;        /* the sum of its tasks' durations, every attempt */
    int attempts;               /* the largest "attempt" seen */
    char *err_name, *err_cause; /* the last task's error; NULL after a success */
} key_stat;

/* A Map state's instance (state name + the iteration index it runs in): its
 * iteration failures count as caught unless the Map itself fails afterwards. */
typedef struct map_inst {
    char *state;
    json_int_t item;            /* the Map's own mapItemIndex, -1 at the top level */
    int pending;                /* failed iterations not (yet) fatal to the Map */
} map_inst;

struct report {
    bool progress;
    bool drawn;                 /* a progress line is on the screen */
    bool ended;                 /* an Execution{Succeeded,Failed,Aborted} was seen */
    bool logged;                /* this event printed a log line (which erased the line) */
    int64_t t0_ns, t1_ns;       /* monotonic: execution start, end (0 = not seen) */
    int64_t last_draw_ns;
    char started[40], ended_at[40];

    key_stat *keys;
    size_t n_keys, cap_keys;
    json_t *index;              /* key -> integer position in keys */
    size_t n_failed;            /* keys whose status is failed */
    json_int_t rows, bytes;     /* sums of the keys' rows, bytes */
    json_int_t expected;        /* items of top-level Maps (MapStarted), when known */

    long tasks_scheduled, tasks_finished;
    int caught;                 /* StateCaught events */
    map_inst *maps;
    size_t n_maps, cap_maps;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

report *report_new(bool progress)
{
    report *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->index = json_object();
    if (!r->index) {
        free(r);
        return NULL;
    }
    r->progress = progress;
    r->t0_ns = mono_ns();
    ts_format(ts_now(), r->started, sizeof r->started);
    return r;
}

void report_free(report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_keys; i++) {
        free(r->keys[i].key);
        free(r->keys[i].err_name);
        free(r->keys[i].err_cause);
    }
    free(r->keys);
    for (size_t i = 0; i < r->n_maps; i++)
        free(r->maps[i].state);
    free(r->maps);
    json_decref(r->index);
    free(r);
}

/* ---------- event helpers ---------- */

static const char *str_of(const json_t *ev, const char *name)
{
    return json_string_value(json_object_get(ev, name));
}

static json_int_t int_of(const json_t *ev, const char *name, json_int_t dflt)
{
    json_t *v = json_object_get(ev, name);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static key_stat *key_find_or_add(report *r, const char *key)
{
    json_t *pos = json_object_get(r->index, key);
    if (pos)
        return &r->keys[json_integer_value(pos)];
    if (r->n_keys == r->cap_keys) {
        size_t cap = r->cap_keys ? r->cap_keys * 2 : 64;
        key_stat *k = realloc(r->keys, cap * sizeof *k);
        if (!k)
            return NULL;
        r->keys = k;
        r->cap_keys = cap;
    }
    key_stat *k = &r->keys[r->n_keys];
    memset(k, 0, sizeof *k);
    if (!(k->key = strdup(key)) ||
        json_object_set_new(r->index, key, json_integer((json_int_t)r->n_keys)) != 0) {
        free(k->key);
        return NULL;
    }
    r->n_keys++;
    return k;
}

static map_inst *map_find(report *r, const char *state, json_int_t item, bool add)
{
    for (size_t i = 0; i < r->n_maps; i++)
        if (r->maps[i].item == item && strcmp(r->maps[i].state, state) == 0)
            return &r->maps[i];
    if (!add)
        return NULL;
    if (r->n_maps == r->cap_maps) {
        size_t cap = r->cap_maps ? r->cap_maps * 2 : 8;
        map_inst *m = realloc(r->maps, cap * sizeof *m);
        if (!m)
            return NULL;
        r->maps = m;
        r->cap_maps = cap;
    }
    map_inst *m = &r->maps[r->n_maps];
    if (!(m->state = strdup(state)))
        return NULL;
    m->item = item;
    m->pending = 0;
    r->n_maps++;
    return m;
}

/* A task attempt finished: fold it into its key. */
static void task_finished(report *r, const json_t *ev, bool ok)
{
    r->tasks_finished++;
    const char *key = str_of(ev, "key");
    if (!key)
        return;
    key_stat *k = key_find_or_add(r, key);
    if (!k)
        return; /* out of memory: the summary loses this key, the run goes on */
    json_int_t rows = int_of(ev, "rows", 0), bytes = int_of(ev, "bytes", 0);
    if (rows > k->rows) {
        r->rows += rows - k->rows;
        k->rows = rows;
    }
    if (bytes > k->bytes) {
        r->bytes += bytes - k->bytes;
        k->bytes = bytes;
    }
    k->duration_ms += int_of(ev, "durationMs", 0);
    json_int_t att = int_of(ev, "attempt", 1);
    if (att > k->attempts)
        k->attempts = (int)att;
    if (k->failed)
        r->n_failed--;
    k->failed = !ok;
    if (k->failed)
        r->n_failed++;
    free(k->err_name);
    free(k->err_cause);
    k->err_name = k->err_cause = NULL;
    if (!ok) {
        const char *name = str_of(ev, "error"), *cause = str_of(ev, "cause");
        k->err_name = strdup(name ? name : "States.TaskFailed");
        k->err_cause = strdup(cause ? cause : "");
    }
}

/* ---------- numbers for people ---------- */

/* 1234567 -> "1,234,567" */
static void fmt_count(char *buf, size_t len, long long v)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", v < 0 ? -v : v);
    size_t o = 0;
    if (v < 0 && o + 1 < len)
        buf[o++] = '-';
    for (int i = 0; i < n && o + 1 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0 && o + 2 < len)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
}

/* 12345 -> "12.3 KB" (powers of 1000) */
static void fmt_bytes(char *buf, size_t len, double v)
{
    static const char *const units[] = {"B", "KB", "MB", "GB", "TB", "PB"};
    int u = 0;
    while (v >= 1000 && u < 5) {
        v /= 1000;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%.0f B", v);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
}

/* 1234567 -> "1.23M" */
static void fmt_short(char *buf, size_t len, double v)
{
    if (v >= 1e9)
        snprintf(buf, len, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, len, "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, len, "%.1fk", v / 1e3);
    else
        snprintf(buf, len, "%.0f", v);
}

/* seconds -> "0.8s", "4m05s", "2h03m" */
static void fmt_duration(char *buf, size_t len, double s)
{
    if (s < 60)
        snprintf(buf, len, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)s / 60 % 60);
}

/* ---------- the progress line ---------- */

static void write_err(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0)
            return; /* a progress line is not worth a retry loop on EAGAIN */
        p += w;
        n -= (size_t)w;
    }
}

static void draw(report *r, int64_t now)
{
    r->last_draw_ns = now;
    double el = (double)(now - r->t0_ns) / 1e9;
    long running = r->tasks_scheduled - r->tasks_finished;
    json_int_t total = (json_int_t)r->n_keys > r->expected ? (json_int_t)r->n_keys : r->expected;
    char e[32], rows[32], rate[32], line[512];
    fmt_duration(e, sizeof e, el);
    fmt_short(rows, sizeof rows, (double)r->rows);
    fmt_short(rate, sizeof rate, el > 0 ? (double)r->rows / el : 0);
    int n = snprintf(line, sizeof line,
                     "\r\033[K[%s] tasks: %ld running | keys: %zu/%lld done, %zu failed | "
                     "rows: %s (%s/s)",
                     e, running < 0 ? 0 : running, r->n_keys - r->n_failed, (long long)total,
                     r->n_failed, rows, rate);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    /* wider than the terminal, it would wrap and "\r" could no longer erase it */
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 &&
        len > (size_t)ws.ws_col - 1 + 4)
        len = (size_t)ws.ws_col - 1 + 4; /* + the 4 bytes of "\r\033[K" */
    write_err(line, len);
    r->drawn = true;
}

void report_clear_progress(report *r)
{
    if (!r || !r->drawn)
        return;
    write_err("\r\033[K", 4);
    r->drawn = false;
}

/* ---------- the observer ---------- */

static void log_task(report *r, const json_t *ev, const char *type, bool ok)
{
    const char *state = str_of(ev, "state"), *key = str_of(ev, "key"),
               *conn = str_of(ev, "connection");
    if (ok) {
        /* a line per key at info; key-less tasks (a 10,000-item Map of commands) at debug */
        etl_log_level lv = key ? ETL_LOG_INFO : ETL_LOG_DEBUG;
        if (!log_enabled(lv))
            return;
        r->logged = true;
        char rows[32], bytes[32];
        fmt_count(rows, sizeof rows, int_of(ev, "rows", 0));
        fmt_bytes(bytes, sizeof bytes, (double)int_of(ev, "bytes", 0));
        log_msg(lv, state, key, conn, "done: %s rows, %s in %.1fs", rows, bytes,
                (double)int_of(ev, "durationMs", 0) / 1000);
        return;
    }
    r->logged |= log_enabled(ETL_LOG_WARN);
    log_msg(ETL_LOG_WARN, state, key, conn, "%s (attempt %lld): %s: %s",
            strcmp(type, "TaskTimedOut") == 0 ? "timed out" : "failed",
            (long long)int_of(ev, "attempt", 1), str_of(ev, "error") ? str_of(ev, "error") : "",
            str_of(ev, "cause") ? str_of(ev, "cause") : "");
}

static void map_failed_itself(report *r, const json_t *ev)
{
    const char *state = str_of(ev, "state");
    if (!state)
        return;
    map_inst *m = map_find(r, state, int_of(ev, "mapItemIndex", -1), false);
    if (m)
        m->pending = 0; /* its failed iterations made it fail: not tolerated */
}

void report_observe(void *arg, const json_t *event)
{
    report *r = arg;
    const char *type = str_of(event, "type");
    if (!r || !type)
        return;
    const char *state = str_of(event, "state");
    const char *err = str_of(event, "error"), *cause = str_of(event, "cause");
    if (!err)
        err = "";
    if (!cause)
        cause = "";
    r->logged = false;

    switch (type[0]) {
    case 'T':
        if (strcmp(type, "TaskScheduled") == 0) {
            r->tasks_scheduled++;
        } else if (strcmp(type, "TaskSucceeded") == 0) {
            task_finished(r, event, true);
            log_task(r, event, type, true);
        } else if (strcmp(type, "TaskFailed") == 0 || strcmp(type, "TaskTimedOut") == 0) {
            task_finished(r, event, false);
            log_task(r, event, type, false);
        }
        break;
    case 'S':
        if (strcmp(type, "StateCaught") == 0) {
            r->caught++;
            map_failed_itself(r, event);
            r->logged |= log_enabled(ETL_LOG_WARN);
            log_msg(ETL_LOG_WARN, state, NULL, NULL, "caught %s, continuing at '%s': %s",
                    err, str_of(event, "next") ? str_of(event, "next") : "", cause);
        } else if (strcmp(type, "StateRetryScheduled") == 0) {
            map_failed_itself(r, event);
            json_t *d = json_object_get(event, "delaySeconds");
            r->logged |= log_enabled(ETL_LOG_INFO);
            log_msg(ETL_LOG_INFO, state, NULL, NULL, "retry %lld in %.1fs after %s",
                    (long long)int_of(event, "attempt", 1),
                    json_is_number(d) ? json_number_value(d) : 0.0, err);
        } else if (strcmp(type, "StateFailed") == 0) {
            /* logged where it lands: MapIterationFailed or the execution's end */
            map_failed_itself(r, event);
        }
        break;
    case 'M':
        if (strcmp(type, "MapIterationFailed") == 0) {
            if (state) {
                map_inst *m = map_find(r, state, int_of(event, "mapItemIndex", -1), true);
                if (m)
                    m->pending++;
            }
            r->logged |= log_enabled(ETL_LOG_WARN);
            log_msg(ETL_LOG_WARN, state, NULL, NULL, "item %lld failed: %s: %s",
                    (long long)int_of(event, "index", -1), err, cause);
        } else if (strcmp(type, "MapStarted") == 0) {
            /* Only outermost Maps: nested ones multiply items, not keys. */
            if (!json_object_get(event, "mapItemIndex"))
                r->expected += int_of(event, "items", 0);
        }
        break;
    case 'E':
        if (strcmp(type, "ExecutionStarted") == 0) {
            r->t0_ns = mono_ns();
            const char *ts = str_of(event, "timestamp");
            if (ts)
                snprintf(r->started, sizeof r->started, "%s", ts);
            /* the CLI logs the start itself, with the run id and input size */
            break;
        }
        bool ok = strcmp(type, "ExecutionSucceeded") == 0;
        if (!ok && strcmp(type, "ExecutionFailed") != 0 && strcmp(type, "ExecutionAborted") != 0)
            break;
        r->ended = true;
        r->t1_ns = mono_ns();
        const char *ts = str_of(event, "timestamp");
        if (ts)
            snprintf(r->ended_at, sizeof r->ended_at, "%s", ts);
        report_clear_progress(r);
        double el = (double)(r->t1_ns - r->t0_ns) / 1e9;
        if (ok)
            log_msg(ETL_LOG_INFO, NULL, NULL, NULL, "succeeded in %.1fs: %zu keys, %zu failed",
                    el, r->n_keys, r->n_failed);
        else
            log_msg(ETL_LOG_ERROR, NULL, NULL, NULL, "%s after %.1fs: %s: %s",
                    type[9] == 'A' ? "aborted" : "failed", el, err, cause);
        return;
    default:
        break;
    }
    /* A log line on the terminal erased the progress line: put it back at once. */
    if (r->progress && !r->ended) {
        int64_t now = mono_ns();
        if (!r->drawn || r->logged || now - r->last_draw_ns >= PROGRESS_INTERVAL_NS)
            draw(r, now);
    }
}

int report_errors_caught(const report *r)
{
    int n = r->caught;
    for (size_t i = 0; i < r->n_maps; i++)
        n += r->maps[i].pending;
    return n;
}

/* ---------- the summary ---------- */

static json_t *key_json(const key_stat *k)
{
    json_t *e = k->err_name ? json_pack("{s:s,s:s}", "name", k->err_name, "cause",
                                        k->err_cause ? k->err_cause : "")
                            : json_null();
    return json_pack("{s:s,s:s,s:I,s:I,s:f,s:i,s:o}", "key", k->key, "status",
                     k->failed ? "failed" : "ok", "rows", k->rows, "bytes", k->bytes,
                     "duration_s", (double)k->duration_ms / 1000, "attempts",
                     k->attempts ? k->attempts : 1, "error", e);
}

static int by_duration_desc(const void *a, const void *b)
{
    const key_stat *x = *(key_stat *const *)a, *y = *(key_stat *const *)b;
    if (x->duration_ms != y->duration_ms)
        return x->duration_ms < y->duration_ms ? 1 : -1;
    return x < y ? -1 : x > y; /* stable: first seen first */
}

json_t *report_summary(report *r, const char *pipeline, const char *run_id,
                       const sched_outcome *out)
{
    int64_t end_ns = r->t1_ns ? r->t1_ns : mono_ns();
    char ended[40];
    if (r->ended_at[0])
        snprintf(ended, sizeof ended, "%s", r->ended_at);
    else
        ts_format(ts_now(), ended, sizeof ended);
    const char *status = out->status == ETL_OK ? "succeeded"
                         : (out->signal || out->status == ETL_ECANCELLED) ? "cancelled"
                                                                          : "failed";
    json_t *err = out->status == ETL_OK
                      ? json_null()
                      : json_pack("{s:s,s:s,s:s*,s:s*}", "name", out->err.name, "cause",
                                  out->err.cause, "state",
                                  out->failed_state[0] ? out->failed_state : NULL, "key",
                                  out->failed_key[0] ? out->failed_key : NULL);

    json_t *keys = json_array();
    for (size_t i = 0; i < r->n_keys; i++)
        json_array_append_new(keys, key_json(&r->keys[i]));

    json_t *slowest = json_array();
    key_stat **order = r->n_keys ? malloc(r->n_keys * sizeof *order) : NULL;
    if (order) {
        for (size_t i = 0; i < r->n_keys; i++)
            order[i] = &r->keys[i];
        qsort(order, r->n_keys, sizeof *order, by_duration_desc);
        for (size_t i = 0; i < r->n_keys && i < SLOWEST_N; i++)
            json_array_append_new(slowest,
                                  json_pack("{s:s,s:f}", "key", order[i]->key, "duration_s",
                                            (double)order[i]->duration_ms / 1000));
        free(order);
    }

    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:f,s:I,s:o,s:i,s:o,s:{s:I,s:I,s:I,s:I,s:I},s:o}",
                     "pipeline", pipeline ? pipeline : "", "run_id", run_id ? run_id : "",
                     "status", status, "started", r->started, "ended", ended, "duration_s",
                     (double)((end_ns - r->t0_ns) / 1000000) / 1000, "transitions",
                     (json_int_t)out->transitions, "error", err, "errors_caught",
                     report_errors_caught(r), "keys", keys, "totals", "keys",
                     (json_int_t)r->n_keys, "ok", (json_int_t)(r->n_keys - r->n_failed),
                     "failed", (json_int_t)r->n_failed, "rows", r->rows, "bytes", r->bytes,
                     "slowest", slowest);
}

/* ---------- the summary for a person ---------- */

static const char *jstr(const json_t *o, const char *name, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s ? s : dflt;
}

static double jnum(const json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_number(v) ? json_number_value(v) : 0;
}

/* s on one line, at most max code points, "..." when cut; len bounds the bytes. */
static void clip(char *buf, size_t len, const char *s, size_t max)
{
    size_t o = 0, w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool lead = (*p & 0xC0) != 0x80;
        if (lead && (w == max || o + 8 > len)) {
            memcpy(buf + o, "...", 4);
            return;
        }
        w += lead;
        buf[o++] = *p < 0x20 || *p == 0x7F ? ' ' : (char)*p;
    }
    buf[o] = '\0';
}

/* Display width of UTF-8 text (code points; good enough for key names). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void print_key(FILE *out, const json_t *k, int kw, bool color)
{
    char key[256], rows[32], bytes[32], dur[32], errs[160] = "";
    clip(key, sizeof key, jstr(k, "key", ""), 40);
    fmt_count(rows, sizeof rows, (long long)jnum(k, "rows"));
    fmt_bytes(bytes, sizeof bytes, jnum(k, "bytes"));
    fmt_duration(dur, sizeof dur, jnum(k, "duration_s"));
    const json_t *e = json_object_get(k, "error");
    if (json_is_object(e)) {
        char both[1200];
        snprintf(both, sizeof both, "%s: %s", jstr(e, "name", ""), jstr(e, "cause", ""));
        clip(errs, sizeof errs, both, 100);
    }
    bool failed = strcmp(jstr(k, "status", ""), "failed") == 0;
    /* pad by display width, not bytes, so non-ASCII keys line up */
    int pad = kw - (int)width(key);
    fprintf(out, "  %s%*s  %s%-6s%s  %12s  %10s  %7s  %5lld%s%s\n", key, pad > 0 ? pad : 0, "",
            color ? (failed ? "\033[31m" : "\033[32m") : "", jstr(k, "status", "?"),
            color ? "\033[0m" : "", rows, bytes, dur, (long long)jnum(k, "attempts"),
            errs[0] ? "  " : "", errs);
}

void report_print(const json_t *summary, FILE *out, bool color)
{
    const char *status = jstr(summary, "status", "unknown");
    bool ok = strcmp(status, "succeeded") == 0;
    char dur[32], upper[16];
    fmt_duration(dur, sizeof dur, jnum(summary, "duration_s"));
    size_t i;
    for (i = 0; status[i] && i < sizeof upper - 1; i++)
        upper[i] = (char)(status[i] >= 'a' && status[i] <= 'z' ? status[i] - 32 : status[i]);
    upper[i] = '\0';
    fprintf(out, "\nRun %s of %s: %s%s%s in %s (started %s)\n", jstr(summary, "run_id", "?"),
            jstr(summary, "pipeline", "?"), color ? (ok ? "\033[1;32m" : "\033[1;31m") : "",
            upper, color ? "\033[0m" : "", dur, jstr(summary, "started", "?"));
    const json_t *err = json_object_get(summary, "error");
    if (json_is_object(err)) {
        fprintf(out, "Error: %s: %s\n", jstr(err, "name", ""), jstr(err, "cause", ""));
        if (json_object_get(err, "state"))
            fprintf(out, "       in state '%s'%s%s%s\n", jstr(err, "state", ""),
                    json_object_get(err, "key") ? ", key '" : "", jstr(err, "key", ""),
                    json_object_get(err, "key") ? "'" : "");
    }

    const json_t *keys = json_object_get(summary, "keys");
    size_t n = json_array_size(keys);
    if (n > 0) {
        int kw = 3;
        for (i = 0; i < n; i++) {
            size_t w = width(jstr(json_array_get(keys, i), "key", ""));
            if (w > (size_t)kw)
                kw = w > 43 ? 43 : (int)w; /* 40 + "..." */
        }
        fprintf(out, "\n  %-*s  %-6s  %12s  %10s  %7s  %5s  %s\n", kw, "KEY", "STATUS", "ROWS",
                "BYTES", "TIME", "TRIES", "ERROR");
        size_t shown = 0;
        /* failed keys first, then the others, each in first-seen order */
        for (int pass = 0; pass < 2; pass++)
            for (i = 0; i < n && shown < PRINT_MAX_KEYS; i++) {
                const json_t *k = json_array_get(keys, i);
                bool failed = strcmp(jstr(k, "status", ""), "failed") == 0;
                if (failed != (pass == 0))
                    continue;
                print_key(out, k, kw, color);
                shown++;
            }
        if (shown < n)
            fprintf(out, "  ... and %zu more keys (all of them are in summary.json)\n", n - shown);
    }

    const json_t *t = json_object_get(summary, "totals");
    char rows[32], bytes[32];
    fmt_count(rows, sizeof rows, (long long)jnum(t, "rows"));
    fmt_bytes(bytes, sizeof bytes, jnum(t, "bytes"));
    fprintf(out, "\nTotals: %lld keys, %lld ok, %lld failed; %s rows, %s; %lld transitions\n",
            (long long)jnum(t, "keys"), (long long)jnum(t, "ok"), (long long)jnum(t, "failed"),
            rows, bytes, (long long)jnum(summary, "transitions"));
    const json_t *slow = json_object_get(summary, "slowest");
    if (json_array_size(slow) > 0) {
        fprintf(out, "Slowest:");
        for (i = 0; i < json_array_size(slow); i++) {
            const json_t *s = json_array_get(slow, i);
            char key[256];
            clip(key, sizeof key, jstr(s, "key", ""), 40);
            fmt_duration(dur, sizeof dur, jnum(s, "duration_s"));
            fprintf(out, "%s %s (%s)", i ? "," : "", key, dur);
        }
        fputc('\n', out);
    }
    long long caught = (long long)jnum(summary, "errors_caught");
    if (caught > 0)
        fprintf(out, "Errors caught: %lld (handled by a Catch or a Map's tolerance)\n", caught);
}
