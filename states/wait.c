/* Wait: a timer in the scheduler, never a sleeping thread. Exactly one of Seconds,
 * SecondsPath, Timestamp, TimestampPath. A Timestamp in the past does not wait. */
#include <stdlib.h>
#include <string.h>

#include "state.h"
#include "timestamp.h"

static const char *const fields[] = {"Seconds", "SecondsPath", "Timestamp", "TimestampPath",
                                     NULL};

typedef struct wait_impl {
    int64_t seconds;      /* Seconds, or -1 */
    bool has_ts;
    ts_instant ts;        /* Timestamp */
    path *seconds_path;
    path *ts_path;
} wait_impl;

static bool compile(state *st, const doc_node *def, compile_ctx *cc)
{
    wait_impl *im = calloc(1, sizeof *im);
    st->impl = im;
    if (!im)
        return false;
    im->seconds = -1;
    diag *d = compile_diag(cc);
    int count = 0;
    const doc_member *first = NULL;
    for (const char *const *f = fields; *f; f++) {
        const doc_member *m = doc_member_get(def, *f);
        if (!m)
            continue;
        if (count++ && first)
            diag_add(d, m->key_pos, "a Wait state takes exactly one of Seconds, SecondsPath, "
                                    "Timestamp and TimestampPath; '%s' and '%s' are both set",
                     first->key, m->key);
        if (!first)
            first = m;
    }
    if (count == 0) {
        diag_add(d, st->pos, "Wait state '%s' needs one of Seconds, SecondsPath, Timestamp "
                             "or TimestampPath", st->name);
        return false;
    }
    bool ok = count == 1;
    const doc_node *n;
    if ((n = doc_get(def, "Seconds")))
        ok &= compile_int(cc, n, "Seconds", 0, 99999999, &im->seconds);
    if ((n = doc_get(def, "SecondsPath")))
        ok &= compile_refpath(cc, n, "SecondsPath", &im->seconds_path);
    if ((n = doc_get(def, "TimestampPath")))
        ok &= compile_refpath(cc, n, "TimestampPath", &im->ts_path);
    if ((n = doc_get(def, "Timestamp"))) {
        const char *s;
        if (!compile_string(cc, n, "Timestamp", &s))
            ok = false;
        else if (!ts_parse(s, &im->ts)) {
            diag_add(d, n->pos, "'Timestamp' must be an RFC 3339 time such as "
                                "2026-11-22T03:00:00Z, not '%s'", s);
            ok = false;
        } else
            im->has_ts = true;
    }
    return ok;
}

static json_t *lookup(frame *f, path *p, json_t *effective)
{
    json_t *root = path_is_context(p) ? ctx_get(sched_ctx(f)) : effective;
    return root ? path_get(p, root) : NULL;
}

static void wait_until_wall(frame *f, ts_instant when)
{
    ts_instant now = ts_now();
    double delta = (double)(when.sec - now.sec) + (when.nsec - now.nsec) / 1e9;
    /* Capped at ~31 years: past ~292 years the conversion to int64 nanoseconds
     * overflows, and a Wait until year 9999 ended at once. */
    int64_t ns = delta <= 0 ? 0 : delta < 1e9 ? (int64_t)(delta * 1e9) : 1000000000000000000LL;
    sched_timer(f, sched_now_ns() + ns);
}

static void enter(state *st, frame *f, json_t *effective)
{
    wait_impl *im = st->impl;
    etl_error err;
    if (im->seconds >= 0) {
        sched_timer(f, sched_now_ns() + im->seconds * 1000000000LL);
    } else if (im->has_ts) {
        wait_until_wall(f, im->ts);
    } else if (im->seconds_path) {
        json_t *v = lookup(f, im->seconds_path, effective);
        if (!v || !json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > 99999999) {
            etl_fail(&err, ETL_ERUNTIME, "States.Runtime",
                     "SecondsPath '%s' of Wait state '%s' must select a non-negative integer "
                     "(got %s)", path_text(im->seconds_path), st->name,
                     !v ? "nothing" : json_is_integer(v) ? "an out-of-range integer"
                                                         : "another type");
            sched_fail(f, &err);
            return;
        }
        sched_timer(f, sched_now_ns() + json_integer_value(v) * 1000000000LL);
    } else {
        json_t *v = lookup(f, im->ts_path, effective);
        ts_instant t;
        if (!v || !json_is_string(v) || !ts_parse(json_string_value(v), &t)) {
            etl_fail(&err, ETL_ERUNTIME, "States.Runtime",
                     "TimestampPath '%s' of Wait state '%s' must select an RFC 3339 timestamp",
                     path_text(im->ts_path), st->name);
            sched_fail(f, &err);
            return;
        }
        wait_until_wall(f, t);
    }
}

static void on_timer(state *st, frame *f)
{
    sched_goto(f, st->next, json_incref(sched_effective(f)));
}

static void destroy(state *st)
{
    wait_impl *im = st->impl;
    if (!im)
        return;
    path_free(im->seconds_path);
    path_free(im->ts_path);
    free(im);
}

const state_ops wait_ops = {
    .type_name = "Wait",
    .type = ST_WAIT,
    .flags = SF_INPUT_PATH | SF_OUTPUT_PATH | SF_TRANSITION,
    .fields = fields,
    .compile = compile,
    .enter = enter,
    .on_timer = on_timer,
    .free = destroy,
};
