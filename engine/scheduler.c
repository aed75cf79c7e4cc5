/* The scheduler: one execution, driven from one thread.
 *
 * DESIGN
 * An execution is a tree of frames. A frame is one "path" of the ASL model: the top
 * level, one Parallel branch or one Map iteration, positioned at one state with one
 * input. The scheduler loop takes runnable frames from a FIFO ready queue and enters
 * their state; a state either finishes at once (Pass, Choice, Succeed, Fail: the frame
 * moves to its next state and is queued again) or blocks the frame on one of:
 *   - a timer (Wait, a retry delay, a Task timeout check): an entry in a min-heap;
 *   - a work item on the pool (Task): its completion arrives through done_q + eventfd;
 *   - child frames (Parallel, Map): the parent holds no worker and no thread.
 * So 10,000 concurrent Waits are 10,000 heap entries, and any nesting of Map and
 * Parallel runs on a fixed pool without deadlock.
 *
 * Cancellation marks a frame and its subtree; work in flight gets its cancel word set
 * and completes (exactly once) as cancelled; idle frames are finalized from the ready
 * queue. A frame's parent hears about a finished child only through ops->on_child,
 * never re-entrantly from inside a cancel call. Finished frames are freed at the top of
 * the loop (the graveyard), so no state code runs on a freed frame.
 *
 * Lock order: done_mu is the only lock here and a leaf; worker threads touch only
 * done_q (and the work items they own until they hand them over). */
#include "scheduler.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "connpool.h"
#include "jsontext.h"
#include "plugins.h"
#include "pool.h"
#include "state.h"
#include "timestamp.h"

typedef enum timer_kind { TK_STATE, TK_RETRY, TK_TIMEOUT } timer_kind;

typedef struct run run;

struct frame {
    run *r;
    frame *parent;
    int64_t index;             /* slot in the parent (branch number or item index) */
    machine *m;
    state *cur;
    json_t *input;             /* raw input of cur (owned) */
    json_t *effective;         /* effective input of cur (owned), NULL before enter */
    int64_t item_index;        /* $$.Map.Item.Index, -1 outside a Map iteration */
    json_t *item;              /* $$.Map.Item.Value (owned), NULL outside */
    int attempts[16];          /* per retrier of cur; ASL caps nothing, we cap at 16 */
    int *attempts_big;         /* when cur has more than 16 retriers */
    int retry_count;           /* $$.State.RetryCount */
    ts_instant entered;
    ctx_provider ctx;

    work *work;                /* in flight, or NULL */
    double work_timeout_s;
    int heap_idx;              /* -1 when no timer */
    int64_t timer_when;
    timer_kind timer_kind;

    frame *first_child, *next_sibling, *prev_sibling;
    size_t n_children;

    void *scratch;
    void (*scratch_free)(void *);

    bool queued, cancelled, finished;
    bool in_state;             /* between enter and leave of cur */
    frame *ready_next;
    json_t *path;              /* checkpoint path, a string ("" = top): made by frame_path
                                  when first needed (at once in a resumed run) */
    char key[128];             /* the key of the frame's last task ("" = none) */
    bool caught;               /* a Catch handled an error in this frame or below */
    json_t *replayed;          /* output recorded by an earlier attempt: finish with it */
    state *resumed_at;         /* where replay_position put the frame, until entered */
};

struct run {
    const pipeline *pl;
    const sched_options *opt;
    json_t *exec_input;
    char exec_name[96];
    char start_time[40];
    uint64_t transitions;
    uint64_t event_id;

    frame *ready_head, *ready_tail;
    frame **heap;
    size_t heap_n, heap_cap;
    frame *graveyard;          /* finished frames, freed at the top of the loop */

    pool *pool;
    int efd;
    pthread_mutex_t done_mu;
    work *done_q;              /* guarded by done_mu */
    size_t in_flight;          /* work submitted and not yet completed */

    connpool *conns;           /* pools of the pipeline's connections */
    int *slot_used;            /* per connection: works running (scheduler thread) */
    work **slot_head, **slot_tail; /* per connection: works waiting for a slot (FIFO) */
    char stage_dir[1024];

    frame *root;
    bool finished;
    etl_status status;
    json_t *output;
    etl_error err;
    int64_t deadline_ns;       /* top-level TimeoutSeconds, 0 = none */
    bool timed_out;
    bool cancel_set;
    etl_error cancel_err;      /* why the whole run was cancelled (timeout, signal) */
    char leaf_state[128], leaf_key[128], leaf_error[ETL_ERROR_NAME_MAX]; /* last leaf failure */
};

int64_t sched_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------- history ---------- */

/* Events are built only when someone reads them: the history file or an observer. */
static bool history_on(run *r) { return r->opt->history != NULL || r->opt->observe != NULL; }
/* StateEntered/StateExited, one per transition: only when asked for. */
static bool state_events_on(run *r)
{
    return r->opt->history != NULL || (r->opt->observe && r->opt->observe_states);
}

static void history_emit(run *r, frame *f, const char *type, json_t *details)
{
    if (!history_on(r)) {
        json_decref(details);
        return;
    }
    char ts[40];
    ts_format(ts_now(), ts, sizeof ts);
    json_t *ev = json_object();
    json_object_set_new(ev, "id", json_integer((json_int_t)++r->event_id));
    json_object_set_new(ev, "timestamp", json_string(ts));
    json_object_set_new(ev, "type", json_string(type));
    if (f && f->cur)
        json_object_set_new(ev, "state", json_string(f->cur->name));
    if (f && f->item_index >= 0)
        json_object_set_new(ev, "mapItemIndex", json_integer(f->item_index));
    if (details)
        json_object_update(ev, details);
    json_decref(details);
    if (r->opt->history) {
        jsontext_dumpf(ev, r->opt->history);
        fputc('\n', r->opt->history);
    }
    if (r->opt->observe &&
        (r->opt->observe_states ||
         (strcmp(type, "StateEntered") != 0 && strcmp(type, "StateExited") != 0 &&
          strcmp(type, "MapIterationStarted") != 0 &&
          strcmp(type, "MapIterationSucceeded") != 0)))
        r->opt->observe(r->opt->observe_arg, ev);
    json_decref(ev);
}

static json_t *error_details(const etl_error *err)
{
    return json_pack("{s:s,s:s}", "error", err->name, "cause", err->cause);
}

bool sched_tracing(frame *f) { return history_on(f->r); }
bool sched_tracing_all(frame *f) { return state_events_on(f->r); }

void sched_event(frame *f, const char *type, json_t *details)
{
    history_emit(f->r, f, type, details);
}

/* ---------- context object ---------- */

static json_t *build_ctx(void *arg)
{
    frame *f = arg;
    run *r = f->r;
    char entered[40];
    ts_format(f->entered, entered, sizeof entered);
    json_t *ctx = json_pack(
        "{s:{s:s+,s:O,s:s,s:s,s:i},s:{s:s+,s:s},s:{s:s,s:s,s:i}}",
        "Execution", "Id", "etlrun:", r->exec_name, "Input", r->exec_input, "Name",
        r->exec_name, "StartTime", r->start_time, "RedriveCount", r->opt->redrive_count,
        "StateMachine", "Id", "etlrun:", r->pl->name, "Name", r->pl->name,
        "State", "Name", f->cur ? f->cur->name : "", "EnteredTime", entered, "RetryCount",
        f->retry_count);
    if (ctx && f->item_index >= 0)
        json_object_set_new(ctx, "Map",
                            json_pack("{s:{s:I,s:O}}", "Item", "Index",
                                      (json_int_t)f->item_index, "Value",
                                      f->item ? f->item : json_null()));
    return ctx;
}

ctx_provider *sched_ctx(frame *f) { return &f->ctx; }
json_t *sched_effective(frame *f) { return f->effective; }

json_t *sched_item_ctx(frame *f, int64_t index, json_t *item)
{
    json_t *ctx = build_ctx(f);
    if (ctx)
        json_object_set_new(ctx, "Map", json_pack("{s:{s:I,s:O}}", "Item", "Index",
                                                  (json_int_t)index, "Value", item));
    return ctx;
}
json_t *sched_input(frame *f) { return f->input; }
bool sched_cancelled(frame *f) { return f->cancelled; }
const char *sched_pipeline_dir(frame *f) { return f->r->pl->dir; }
const pipeline *sched_pipeline(frame *f) { return f->r->pl; }
connpool *sched_connpool(frame *f) { return f->r->conns; }
const char *sched_stage_dir(frame *f) { return f->r->stage_dir; }
const char *sched_run_id(frame *f) { return f->r->exec_name; }

void sched_frame_path(frame *f, char *buf, size_t len)
{
    if (f->path) {
        snprintf(buf, len, "%s", json_string_value(f->path));
        return;
    }
    if (!f->parent) {
        snprintf(buf, len, "%s", "");
        return;
    }
    char up[512];
    sched_frame_path(f->parent, up, sizeof up);
    snprintf(buf, len, "%s/%s[%lld]", up, f->parent->cur->name, (long long)f->index);
}
int sched_attempt(frame *f) { return f->retry_count + 1; }
void *sched_scratch(frame *f) { return f->scratch; }

void sched_set_scratch(frame *f, void *p, void (*free_fn)(void *))
{
    if (f->scratch && f->scratch_free)
        f->scratch_free(f->scratch);
    f->scratch = p;
    f->scratch_free = free_fn;
}

/* ---------- ready queue ---------- */

static void make_ready(frame *f)
{
    if (f->queued || f->finished)
        return;
    f->queued = true;
    f->ready_next = NULL;
    run *r = f->r;
    if (r->ready_tail)
        r->ready_tail->ready_next = f;
    else
        r->ready_head = f;
    r->ready_tail = f;
}

static frame *pop_ready(run *r)
{
    frame *f = r->ready_head;
    if (f) {
        r->ready_head = f->ready_next;
        if (!r->ready_head)
            r->ready_tail = NULL;
        f->queued = false;
    }
    return f;
}

/* ---------- timer heap (min-heap on timer_when, indexed by frame->heap_idx) ---------- */

static void heap_swap(run *r, size_t a, size_t b)
{
    frame *t = r->heap[a];
    r->heap[a] = r->heap[b];
    r->heap[b] = t;
    r->heap[a]->heap_idx = (int)a;
    r->heap[b]->heap_idx = (int)b;
}

static void heap_up(run *r, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (r->heap[p]->timer_when <= r->heap[i]->timer_when)
            break;
        heap_swap(r, p, i);
        i = p;
    }
}

static void heap_down(run *r, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, rr = l + 1, m = i;
        if (l < r->heap_n && r->heap[l]->timer_when < r->heap[m]->timer_when)
            m = l;
        if (rr < r->heap_n && r->heap[rr]->timer_when < r->heap[m]->timer_when)
            m = rr;
        if (m == i)
            return;
        heap_swap(r, i, m);
        i = m;
    }
}

static void timer_clear(frame *f)
{
    run *r = f->r;
    if (f->heap_idx < 0)
        return;
    size_t i = (size_t)f->heap_idx;
    f->heap_idx = -1;
    r->heap_n--;
    if (i != r->heap_n) {
        r->heap[i] = r->heap[r->heap_n];
        r->heap[i]->heap_idx = (int)i;
        heap_down(r, i);
        heap_up(r, i);
    }
}

static void timer_set(frame *f, int64_t when, timer_kind kind)
{
    run *r = f->r;
    timer_clear(f);
    if (r->heap_n == r->heap_cap) {
        size_t cap = r->heap_cap ? r->heap_cap * 2 : 64;
        frame **h = realloc(r->heap, cap * sizeof *h);
        if (!h)
            abort(); /* out of memory with no way to keep the run's promises */
        r->heap = h;
        r->heap_cap = cap;
    }
    f->timer_when = when;
    f->timer_kind = kind;
    f->heap_idx = (int)r->heap_n;
    r->heap[r->heap_n++] = f;
    heap_up(r, (size_t)f->heap_idx);
}

void sched_timer(frame *f, int64_t when_ns) { timer_set(f, when_ns, TK_STATE); }

/* ---------- frames ---------- */

static void replay_position(frame *f);

/* f's checkpoint path ("" for the top frame, P/S[i] for the i-th child of the frame at
 * path P in state S), made once and kept: a string the checkpoint writer can hold. */
static json_t *frame_path(frame *f)
{
    if (f->path)
        return f->path;
    if (!f->parent) {
        f->path = json_string("");
    } else {
        const char *up = json_string_value(frame_path(f->parent));
        const char *name = f->parent->cur->name;
        size_t n = strlen(up) + strlen(name) + 32;
        char *p = malloc(n);
        if (p) {
            int len = snprintf(p, n, "%s/%s[%lld]", up, name, (long long)f->index);
            f->path = json_stringn_nocheck(p, (size_t)len);
            free(p);
        }
    }
    if (!f->path)
        abort(); /* out of memory: checkpoints could no longer be trusted */
    return f->path;
}

static frame *frame_new(run *r, frame *parent, machine *m, json_t *input, int64_t index)
{
    frame *f = calloc(1, sizeof *f);
    if (!f)
        abort();
    f->r = r;
    f->parent = parent;
    f->m = m;
    f->cur = m->start;
    f->index = index;
    f->input = json_incref(input);
    f->heap_idx = -1;
    f->item_index = parent ? parent->item_index : -1;
    f->item = parent ? json_incref(parent->item) : NULL;
    f->ctx.build = build_ctx;
    f->ctx.arg = f;
    if (parent) {
        f->next_sibling = parent->first_child;
        if (parent->first_child)
            parent->first_child->prev_sibling = f;
        parent->first_child = f;
        parent->n_children++;
    }
    if (r->opt->replay) {
        frame_path(f);
        replay_position(f);
    }
    return f;
}

/* A frame of a resumed run starts where its path stopped: with the output of a
 * completed iteration or branch, or at the state it last fanned out from or failed at,
 * with that state's recorded input. sched_check_replay made sure the names fit. */
static void replay_position(frame *f)
{
    const ckpt_replay *rp = f->r->opt->replay;
    if (!rp)
        return;
    json_t *out = json_object_get(rp->done, json_string_value(f->path));
    if (out) {
        f->replayed = json_incref(out);
        return;
    }
    json_t *at = json_object_get(rp->resume, json_string_value(f->path));
    state *st = at ? machine_find(f->m, json_string_value(json_object_get(at, "state"))) : NULL;
    if (st) {
        f->cur = st;
        f->resumed_at = st;
        json_decref(f->input);
        f->input = json_incref(json_object_get(at, "input"));
    }
}

static int *attempts_of(frame *f)
{
    return f->attempts_big ? f->attempts_big : f->attempts;
}

/* Leave the current state: drop what belongs to it. */
static void leave_state(frame *f)
{
    timer_clear(f);
    sched_set_scratch(f, NULL, NULL);
    json_decref(f->effective);
    f->effective = NULL;
    free(f->attempts_big);
    f->attempts_big = NULL;
    memset(f->attempts, 0, sizeof f->attempts);
    f->retry_count = 0;
    ctx_release(&f->ctx);
    f->in_state = false;
}

static void frame_unlink(frame *f)
{
    frame *p = f->parent;
    if (!p)
        return;
    if (f->prev_sibling)
        f->prev_sibling->next_sibling = f->next_sibling;
    else
        p->first_child = f->next_sibling;
    if (f->next_sibling)
        f->next_sibling->prev_sibling = f->prev_sibling;
    p->n_children--;
    f->prev_sibling = f->next_sibling = NULL;
}

static void frame_cancel(frame *f);
static void frame_try_finalize_cancelled(frame *f);
static void unqueue_cancelled(run *r, work *w);
static void work_done(work *w, void *arg);

static void work_cancel(work *w)
{
    atomic_store(&w->cancel, 1);
    if (w->on_cancel)
        w->on_cancel(w);
}

/* The frame is over: tell the parent (or the run), then bury it. output is stolen;
 * err is NULL on success. */
static void frame_finish(frame *f, json_t *output, const etl_error *err)
{
    run *r = f->r;
    if (f->finished) {
        json_decref(output);
        return;
    }
    f->finished = true;
    if (f->in_state)
        leave_state(f);
    timer_clear(f);
    frame *parent = f->parent;
    frame_unlink(f);
    f->ready_next = r->graveyard;
    r->graveyard = f;
    f->queued = true; /* never queued again */

    if (!parent) {
        r->finished = true;
        if (err) {
            r->status = err->status ? err->status : ETL_ETASK;
            r->err = *err;
            json_decref(output);
        } else {
            r->status = ETL_OK;
            r->output = output;
        }
        return;
    }
    if (parent->cancelled) {
        json_decref(output);
        frame_try_finalize_cancelled(parent);
        return;
    }
    if (!err && r->opt->ckpt && !f->replayed)
        ckpt_done(r->opt->ckpt, frame_path(parent), parent->cur->name, f->index, output,
                  f->caught);
    if (!err && f->caught)
        parent->caught = true;
    state *pst = parent->cur;
    pst->ops->on_child(pst, parent, f->index, err ? NULL : output, err);
    json_decref(output);
}

static void frame_free(frame *f)
{
    json_decref(f->path);
    json_decref(f->replayed);
    json_decref(f->input);
    json_decref(f->effective);
    json_decref(f->item);
    free(f->attempts_big);
    ctx_release(&f->ctx);
    if (f->scratch && f->scratch_free)
        f->scratch_free(f->scratch);
    free(f);
}

static void cancelled_error(etl_error *err)
{
    etl_fail(err, ETL_ECANCELLED, "States.Cancelled", "cancelled");
}

/* A cancelled frame finishes once nothing of it is still running. */
static void frame_try_finalize_cancelled(frame *f)
{
    if (!f->cancelled || f->finished || f->work || f->n_children > 0)
        return;
    make_ready(f); /* finalized from the loop, never re-entrantly */
}

static void frame_cancel(frame *f)
{
    if (f->finished || f->cancelled)
        return;
    f->cancelled = true;
    timer_clear(f);
    if (f->work) {
        work_cancel(f->work);
        if (f->work->waiting_slot)
            unqueue_cancelled(f->r, f->work);
    }
    for (frame *c = f->first_child; c; c = c->next_sibling)
        frame_cancel(c);
    frame_try_finalize_cancelled(f);
}

void sched_cancel_children(frame *f)
{
    for (frame *c = f->first_child; c; c = c->next_sibling)
        frame_cancel(c);
}

void sched_spawn(frame *f, machine *m, json_t *input, int64_t index, json_t *item)
{
    frame *c = frame_new(f->r, f, m, input, index);
    if (item) {
        json_decref(c->item);
        c->item = json_incref(item);
        c->item_index = index;
    }
    make_ready(c);
}

/* ---------- payload processing ---------- */

static json_t *apply_input_path(frame *f, etl_error *err)
{
    const opt_path *ip = &f->cur->input_path;
    if (ip->is_null)
        return json_object();
    if (!ip->p)
        return json_incref(f->input);
    json_t *root = path_is_context(ip->p) ? ctx_get(&f->ctx) : f->input;
    json_t *v = root ? path_get(ip->p, root) : NULL;
    if (!v) {
        etl_fail(err, ETL_ERUNTIME, "States.Runtime",
                 "InputPath '%s' of state '%s' matched nothing in the state's input",
                 path_text(ip->p), f->cur->name);
        return NULL;
    }
    return json_incref(v);
}

static json_t *apply_output_path(frame *f, json_t *v, etl_error *err)
{
    const opt_path *op = &f->cur->output_path;
    if (op->is_null)
        return json_object();
    if (!op->p)
        return json_incref(v);
    json_t *root = path_is_context(op->p) ? ctx_get(&f->ctx) : v;
    json_t *x = root ? path_get(op->p, root) : NULL;
    if (!x) {
        etl_fail(err, ETL_ERUNTIME, "States.Runtime",
                 "OutputPath '%s' of state '%s' matched nothing in the state's output",
                 path_text(op->p), f->cur->name);
        return NULL;
    }
    return json_incref(x);
}

/* result goes to ResultPath on the raw input (rp may be a catcher's). Borrowed. */
static json_t *apply_result_path(frame *f, const opt_path *rp, json_t *result, etl_error *err)
{
    if (rp->is_null)
        return json_incref(f->input);
    if (!rp->p)
        return json_incref(result);
    return path_set(rp->p, f->input, result, err);
}

/* Move f to next (NULL: the frame ends) with output (stolen). */
static void transition(frame *f, state *next, json_t *output)
{
    run *r = f->r;
    if (state_events_on(r))
        history_emit(r, f, "StateExited", json_pack("{s:O}", "output", output));
    leave_state(f);
    if (!next) {
        frame_finish(f, output, NULL);
        return;
    }
    json_decref(f->input);
    f->input = output;
    f->cur = next;
    make_ready(f);
}

static void frame_fail(frame *f, const etl_error *err)
{
    if (f->cur && f->cur->type != ST_MAP && f->cur->type != ST_PARALLEL) {
        run *r = f->r;
        snprintf(r->leaf_state, sizeof r->leaf_state, "%s", f->cur->name);
        snprintf(r->leaf_key, sizeof r->leaf_key, "%s", f->key);
        snprintf(r->leaf_error, sizeof r->leaf_error, "%s", err->name);
    }
    if (f->r->opt->ckpt && f->cur)
        ckpt_state(f->r->opt->ckpt, CKPT_FAIL, frame_path(f), f->cur->name, f->input);
    if (history_on(f->r))
        history_emit(f->r, f, "StateFailed", error_details(err));
    frame_finish(f, NULL, err);
}

void sched_result(frame *f, json_t *result)
{
    etl_error err;
    state *st = f->cur;
    if (st->result_selector) {
        json_t *sel = tmpl_eval(st->result_selector, result, &f->ctx, &err);
        json_decref(result);
        if (!sel) {
            sched_fail(f, &err);
            return;
        }
        result = sel;
    }
    json_t *out = apply_result_path(f, &st->result_path, result, &err);
    json_decref(result);
    if (!out) {
        sched_fail(f, &err);
        return;
    }
    json_t *fin = apply_output_path(f, out, &err);
    json_decref(out);
    if (!fin) {
        sched_fail(f, &err);
        return;
    }
    transition(f, st->next, fin);
}

void sched_goto(frame *f, state *next, json_t *output)
{
    etl_error err;
    json_t *fin = apply_output_path(f, output, &err);
    json_decref(output);
    if (!fin) {
        sched_fail(f, &err);
        return;
    }
    transition(f, next, fin);
}

void sched_succeed(frame *f, json_t *output) { sched_goto(f, NULL, output); }

/* ---------- Retry and Catch ---------- */

static bool error_matches(char *const *names, size_t n, const char *err)
{
    for (size_t i = 0; i < n; i++) {
        const char *e = names[i];
        if (strcmp(e, err) == 0)
            return true;
        if (strcmp(e, "States.ALL") == 0 && strcmp(err, "States.Runtime") != 0)
            return true;
        if (strcmp(e, "States.TaskFailed") == 0 && strcmp(err, "States.Timeout") != 0 &&
            strcmp(err, "States.Runtime") != 0)
            return true;
    }
    return false;
}

/* The delay before retry number attempt+1 (attempt counts from 0), in seconds. */
double sched_retry_delay(const retrier *rt, int attempt, double unit_random)
{
    double d = rt->interval_s * pow(rt->backoff, attempt);
    if (rt->max_delay_s > 0 && d > rt->max_delay_s)
        d = rt->max_delay_s;
    if (rt->jitter_full)
        d *= unit_random;
    return d;
}

static double random_unit(void)
{
    uint64_t x;
    if (getrandom(&x, sizeof x, 0) != sizeof x)
        x = (uint64_t)sched_now_ns() * 6364136223846793005ULL;
    return (double)(x >> 11) / 9007199254740992.0;
}

static void run_state(frame *f);

void sched_fail(frame *f, const etl_error *err_in)
{
    etl_error err = *err_in;
    state *st = f->cur;
    run *r = f->r;
    if (f->cancelled) {
        make_ready(f);
        return;
    }
    for (size_t i = 0; i < st->n_retry; i++) {
        retrier *rt = &st->retry[i];
        if (!error_matches(rt->errors, rt->n_errors, err.name))
            continue;
        int *att = attempts_of(f);
        if (att[i] >= rt->max_attempts)
            break; /* the first matching retrier decides; it is exhausted */
        double delay = sched_retry_delay(rt, att[i], rt->jitter_full ? random_unit() : 1.0);
        att[i]++;
        f->retry_count++;
        ctx_release(&f->ctx);
        if (history_on(r))
            history_emit(r, f, "StateRetryScheduled",
                         json_pack("{s:s,s:s,s:i,s:f}", "error", err.name, "cause", err.cause,
                                   "attempt", att[i], "delaySeconds", delay));
        sched_set_scratch(f, NULL, NULL);
        /* BackoffRate is unbounded: past ~292 years (int64_t)(delay * 1e9) overflows and
         * the retry would run at once. A delay capped at ~31 years is still "never". */
        int64_t delay_ns = delay < 1e9 ? (int64_t)(delay * 1e9) : 1000000000000000000LL;
        timer_set(f, sched_now_ns() + delay_ns, TK_RETRY);
        return;
    }
    for (size_t i = 0; i < st->n_catch; i++) {
        catcher *c = &st->catch_[i];
        if (!error_matches(c->errors, c->n_errors, err.name))
            continue;
        json_t *eo = json_pack("{s:s,s:s}", "Error", err.name, "Cause", err.cause);
        etl_error perr;
        json_t *out = apply_result_path(f, &c->result_path, eo, &perr);
        json_decref(eo);
        if (!out) {
            frame_fail(f, &perr);
            return;
        }
        if (history_on(r))
            history_emit(r, f, "StateCaught",
                         json_pack("{s:s,s:s,s:s}", "error", err.name, "cause", err.cause,
                                   "next", c->next->name));
        f->caught = true; /* a resume runs this path again: the error may be fixed */
        transition(f, c->next, out);
        return;
    }
    frame_fail(f, &err);
}

/* ---------- entering a state ---------- */

static void run_state(frame *f)
{
    state *st = f->cur;
    etl_error err;
    ctx_release(&f->ctx);
    json_decref(f->effective);
    f->effective = NULL;
    json_t *eff = apply_input_path(f, &err);
    if (!eff) {
        sched_fail(f, &err);
        return;
    }
    if (st->parameters && (st->ops->flags & SF_PARAMETERS)) {
        json_t *p = tmpl_eval(st->parameters, eff, &f->ctx, &err);
        json_decref(eff);
        if (!p) {
            sched_fail(f, &err);
            return;
        }
        eff = p;
    }
    f->effective = eff;
    st->ops->enter(st, f, eff);
}

static void enter_state(frame *f)
{
    run *r = f->r;
    state *st = f->cur;
    r->transitions++;
    f->in_state = true;
    f->entered = ts_now();
    size_t nr = st->n_retry;
    if (nr > sizeof f->attempts / sizeof f->attempts[0] &&
        !(f->attempts_big = calloc(nr, sizeof(int))))
        abort(); /* attempts_of() would index the 16-slot array past its end */
    /* not when re-entering the state a resume put the frame in: that is the same visit,
     * and a new "at" would make its recorded children look stale (ckpt_load) */
    if (r->opt->ckpt && (st->type == ST_MAP || st->type == ST_PARALLEL) &&
        st != f->resumed_at)
        ckpt_state(r->opt->ckpt, CKPT_AT, frame_path(f), st->name, f->input);
    f->resumed_at = NULL;
    if (state_events_on(r))
        history_emit(r, f, "StateEntered", json_pack("{s:s,s:O}", "stateType",
                                                     st->ops->type_name, "input", f->input));
    run_state(f);
}

/* ---------- work ---------- */

static void work_done(work *w, void *arg)
{
    run *r = arg;
    pthread_mutex_lock(&r->done_mu);
    w->next = r->done_q;
    r->done_q = w;
    pthread_mutex_unlock(&r->done_mu);
    uint64_t one = 1;
    ssize_t n = write(r->efd, &one, sizeof one);
    (void)n; /* the counter cannot overflow in practice; a failed wake is retried by poll timeouts */
}

void sched_submit(frame *f, work *w, double timeout_s)
{
    run *r = f->r;
    w->owner = f;
    w->timed_out = false;
    atomic_store(&w->cancel, 0);
    atomic_store(&w->started_ns, 0);
    f->work = w;
    f->work_timeout_s = timeout_s;
    r->in_flight++;
    if (history_on(r))
        history_emit(r, f, "TaskScheduled", json_pack("{s:O}", "parameters", f->effective));
    if (timeout_s > 0)
        timer_set(f, sched_now_ns() + (int64_t)(timeout_s * 1e9), TK_TIMEOUT);
    if (w->conn_slot > 0) {
        int i = w->conn_slot - 1;
        if (r->slot_used[i] >= r->pl->conns[i].max_connections) {
            /* limits queue, they do not fail: wait here, holding no worker */
            w->waiting_slot = true;
            w->next = NULL;
            if (r->slot_tail[i])
                r->slot_tail[i]->next = w;
            else
                r->slot_head[i] = w;
            r->slot_tail[i] = w;
            return;
        }
        r->slot_used[i]++;
        w->holds_slot = true;
    }
    pool_submit(r->pool, w);
}

/* A cancelled work still waiting for a connection slot completes at once (as
 * cancelled) instead of waiting for a slot it no longer needs. */
static void unqueue_cancelled(run *r, work *w)
{
    int i = w->conn_slot - 1;
    work **pp = &r->slot_head[i], *prev = NULL;
    while (*pp && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = w->next;
    if (r->slot_tail[i] == w)
        r->slot_tail[i] = prev;
    w->next = NULL;
    w->waiting_slot = false;
    w->status = etl_fail(&w->err, ETL_ECANCELLED, "States.Cancelled",
                         "cancelled while waiting for a connection");
    work_done(w, r); /* through the completion queue, like any finished work */
}

/* A work holding a connection slot finished: hand the slot to the next waiter. */
static void release_slot(run *r, int slot)
{
    int i = slot - 1;
    work *w = r->slot_head[i];
    if (!w) {
        r->slot_used[i]--;
        return;
    }
    r->slot_head[i] = w->next;
    if (!r->slot_head[i])
        r->slot_tail[i] = NULL;
    w->next = NULL;
    w->waiting_slot = false;
    w->holds_slot = true;
    pool_submit(r->pool, w); /* the slot passes on */
}

static void handle_completion(run *r, work *w)
{
    frame *f = w->owner;
    r->in_flight--;
    f->work = NULL;
    if (w->holds_slot)
        release_slot(r, w->conn_slot);
    if (f->timer_kind == TK_TIMEOUT)
        timer_clear(f);
    if (f->cancelled) {
        /* a trace for the operator: which key's work was cut short */
        if (history_on(r))
            history_emit(r, f, "TaskAborted",
                         json_pack("{s:s*,s:s*,s:I,s:I}", "key", w->key, "connection",
                                   w->conn_name && *w->conn_name ? w->conn_name : NULL, "rows",
                                   (json_int_t)w->rows, "bytes", (json_int_t)w->bytes));
        w->destroy(w);
        frame_try_finalize_cancelled(f);
        return;
    }
    /* once the timeout cancelled the work, whatever failure the work reports (a
     * connector may name the cancelled query instead) is the state's States.Timeout */
    if (w->status != ETL_OK && w->timed_out) {
        etl_fail(&w->err, ETL_ETIMEOUT, "States.Timeout",
                 "state '%s' timed out after %g seconds (TimeoutSeconds)", f->cur->name,
                 f->work_timeout_s);
        w->status = ETL_ETIMEOUT;
    }
    snprintf(f->key, sizeof f->key, "%s", w->key ? w->key : "");
    if (history_on(r)) {
        json_t *d = w->status == ETL_OK ? json_pack("{s:O}", "output", w->result)
                                        : error_details(&w->err);
        if (w->status != ETL_OK) /* whether trying again may help, as the task said */
            json_object_set_new(d, "transient", json_boolean(w->err.transient));
        int64_t started = atomic_load(&w->started_ns);
        if (started)
            json_object_set_new(d, "durationMs",
                                json_integer((sched_now_ns() - started) / 1000000));
        json_object_set_new(d, "attempt", json_integer(f->retry_count + 1));
        if (w->key)
            json_object_set_new(d, "key", json_string(w->key));
        if (w->conn_name && *w->conn_name)
            json_object_set_new(d, "connection", json_string(w->conn_name));
        if (w->rows || w->bytes) {
            json_object_set_new(d, "rows", json_integer((json_int_t)w->rows));
            json_object_set_new(d, "bytes", json_integer((json_int_t)w->bytes));
        }
        history_emit(r, f,
                     w->status == ETL_OK ? "TaskSucceeded"
                     : w->status == ETL_ETIMEOUT ? "TaskTimedOut"
                                                  : "TaskFailed",
                     d);
    }
    f->cur->ops->on_work(f->cur, f, w);
    w->destroy(w);
}

static void drain_completions(run *r)
{
    uint64_t cnt;
    ssize_t n = read(r->efd, &cnt, sizeof cnt);
    (void)n;
    pthread_mutex_lock(&r->done_mu);
    work *list = r->done_q;
    r->done_q = NULL;
    pthread_mutex_unlock(&r->done_mu);
    /* The list is LIFO; reverse it so completions are handled in arrival order. */
    work *rev = NULL;
    while (list) {
        work *nx = list->next;
        list->next = rev;
        rev = list;
        list = nx;
    }
    while (rev) {
        work *nx = rev->next;
        handle_completion(r, rev);
        rev = nx;
    }
}

/* ---------- timers ---------- */

static void fire_timer(run *r, frame *f)
{
    timer_kind k = f->timer_kind;
    timer_clear(f);
    if (f->cancelled || f->finished)
        return;
    switch (k) {
    case TK_RETRY:
        if (history_on(r))
            history_emit(r, f, "StateRetried", json_pack("{s:i}", "retryCount", f->retry_count));
        run_state(f);
        break;
    case TK_TIMEOUT: {
        work *w = f->work;
        if (!w)
            break;
        int64_t started = atomic_load(&w->started_ns);
        int64_t limit = (int64_t)(f->work_timeout_s * 1e9);
        int64_t now = sched_now_ns();
        if (started == 0) {
            /* still queued for a worker: the timeout counts from its start */
            timer_set(f, now + limit, TK_TIMEOUT);
        } else if (started + limit > now) {
            timer_set(f, started + limit, TK_TIMEOUT);
        } else {
            w->timed_out = true;
            work_cancel(w);
        }
        break;
    }
    case TK_STATE:
        f->cur->ops->on_timer(f->cur, f);
        break;
    }
}

/* ---------- the loop ---------- */

static void bury(run *r)
{
    while (r->graveyard) {
        frame *f = r->graveyard;
        r->graveyard = f->ready_next;
        frame_free(f);
    }
}

static void cancel_run(run *r, const etl_error *why)
{
    if (!r->root || r->root->cancelled || r->root->finished)
        return;
    r->cancel_err = *why;
    r->cancel_set = true;
    frame_cancel(r->root);
}

static void step_ready(frame *f)
{
    if (f->finished)
        return;
    if (f->replayed && !f->cancelled) {
        /* completed by an earlier attempt of this run: reuse its output */
        if (history_on(f->r))
            history_emit(f->r, f, "CheckpointReplayed", json_pack("{s:O}", "path", f->path));
        frame_finish(f, json_incref(f->replayed), NULL);
        return;
    }
    if (f->cancelled) {
        if (!f->work && f->n_children == 0) {
            etl_error e;
            cancelled_error(&e);
            frame_finish(f, NULL, &e);
        }
        return;
    }
    enter_state(f);
}

/* Worker threads run each connector's per-thread set-up and tear-down. */
static void thread_hook(bool start, void *arg)
{
    if (start)
        registry_thread_init(arg);
    else
        registry_thread_end(arg);
}

static void generate_name(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    unsigned rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
        rnd = (unsigned)ts.tv_nsec;
    snprintf(buf, len, "%04d%02d%02dT%02d%02d%02d.%03ldZ-%06x", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000, rnd & 0xffffff);
}

etl_status sched_run(const pipeline *pl, json_t *input, const sched_options *opt,
                     sched_outcome *out)
{
    run r = {0};
    memset(out, 0, sizeof *out);
    r.pl = pl;
    r.opt = opt;
    r.exec_input = input;
    r.efd = -1;
    if (opt->name)
        snprintf(r.exec_name, sizeof r.exec_name, "%s", opt->name);
    else
        generate_name(r.exec_name, sizeof r.exec_name);
    ts_format(ts_now(), r.start_time, sizeof r.start_time);
    pthread_mutex_init(&r.done_mu, NULL);

    r.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r.efd < 0) {
        etl_fail(&out->err, ETL_EIO, "States.Runtime", "cannot create an eventfd: %s",
                 strerror(errno));
        out->status = ETL_EIO;
        goto out;
    }
    if (opt->stage_dir)
        snprintf(r.stage_dir, sizeof r.stage_dir, "%s", opt->stage_dir);
    else if (pl->stage_dir)
        snprintf(r.stage_dir, sizeof r.stage_dir, "%s", pl->stage_dir);
    else
        snprintf(r.stage_dir, sizeof r.stage_dir, "%s/etlrun-%u/%s/%s",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (unsigned)getuid(), pl->name,
                 r.exec_name);
    r.conns = connpool_new(pl);
    r.slot_used = calloc(pl->n_conns + 1, sizeof *r.slot_used);
    r.slot_head = calloc(pl->n_conns + 1, sizeof *r.slot_head);
    r.slot_tail = calloc(pl->n_conns + 1, sizeof *r.slot_tail);
    if (!r.conns || !r.slot_used || !r.slot_head || !r.slot_tail) {
        etl_fail(&out->err, ETL_ENOMEM, "States.Runtime", "out of memory");
        out->status = ETL_ENOMEM;
        goto out;
    }
    if (registry_global_init(pl->reg, &out->err) != ETL_OK) {
        out->status = out->err.status;
        goto out;
    }
    int jobs = opt->jobs > 0 ? opt->jobs : 8;
    r.pool = pool_start(jobs, work_done, &r, thread_hook, pl->reg);
    if (!r.pool) {
        etl_fail(&out->err, ETL_EIO, "States.Runtime", "cannot start %d worker threads: %s",
                 jobs, strerror(errno));
        out->status = ETL_EIO;
        goto out;
    }
    if (pl->timeout_s > 0)
        r.deadline_ns = sched_now_ns() + (int64_t)(pl->timeout_s * 1e9);
    if (history_on(&r))
        history_emit(&r, NULL, "ExecutionStarted",
                     json_pack("{s:O,s:s,s:s}", "input", input, "name", r.exec_name,
                               "pipeline", pl->name));

    r.root = frame_new(&r, NULL, pl->top, input, 0);
    make_ready(r.root);

    while (!r.finished) {
        /* run everything runnable, checking now and then for completions and signals */
        unsigned budget = 4096;
        frame *f;
        while (!r.finished && budget-- && (f = pop_ready(&r)))
            step_ready(f);
        bury(&r);
        if (r.finished)
            break;

        int64_t now = sched_now_ns();
        if (opt->ckpt)
            ckpt_tick(opt->ckpt, now);
        while (r.heap_n && r.heap[0]->timer_when <= now)
            fire_timer(&r, r.heap[0]);
        if (r.deadline_ns && now >= r.deadline_ns && !r.timed_out) {
            r.timed_out = true;
            etl_error e;
            etl_fail(&e, ETL_ETIMEOUT, "States.Timeout",
                     "the execution timed out after %g seconds (top-level TimeoutSeconds)",
                     pl->timeout_s);
            cancel_run(&r, &e);
        }
        if (opt->signo && *opt->signo && !out->signal) {
            out->signal = *opt->signo;
            etl_error e;
            etl_fail(&e, ETL_ECANCELLED, "States.Cancelled", "interrupted by signal %d",
                     out->signal);
            cancel_run(&r, &e);
        }
        if (r.ready_head || r.finished)
            continue;

        int64_t wait_ns = -1;
        if (r.heap_n)
            wait_ns = r.heap[0]->timer_when - now;
        if (r.deadline_ns && !r.timed_out) {
            int64_t d = r.deadline_ns - now;
            if (wait_ns < 0 || d < wait_ns)
                wait_ns = d;
        }
        struct pollfd pfd[2] = {{.fd = r.efd, .events = POLLIN},
                                {.fd = opt->wake_fd, .events = POLLIN}};
        struct timespec tmo, *ptmo = NULL;
        if (wait_ns >= 0) {
            tmo.tv_sec = wait_ns / 1000000000;
            tmo.tv_nsec = wait_ns % 1000000000;
            ptmo = &tmo;
        }
        /* Nobody drains wake_fd (the signal handler's owner does, if anyone): once the
         * signal has been taken, stop polling it, or it stays readable and this loop
         * spins while cancelled work winds down (up to exec's TERM -> KILL grace). */
        if (opt->ckpt)
            ckpt_flush(opt->ckpt); /* no record waits in the scheduler while it idles */
        int pr = ppoll(pfd, opt->wake_fd >= 0 && !out->signal ? 2 : 1, ptmo, NULL);
        if (pr < 0 && errno != EINTR)
            break;
        drain_completions(&r);
    }

    if (!r.finished) {
        /* ppoll failed: the run was never decided and must not read as a success (with
         * no output); stop the work in flight rather than wait for it */
        etl_error e;
        etl_fail(&e, ETL_EIO, "States.Runtime", "the scheduler cannot wait for work: %s",
                 strerror(errno));
        cancel_run(&r, &e);
        r.status = ETL_EIO;
        r.err = e;
    }
    /* The run is decided; make sure nothing is still running before we return. */
    while (r.in_flight > 0) {
        struct pollfd pfd = {.fd = r.efd, .events = POLLIN};
        poll(&pfd, 1, 100);
        drain_completions(&r);
    }
    bury(&r);

    out->transitions = r.transitions;
    out->status = r.status;
    if (r.status == ETL_OK) {
        out->output = r.output;
        r.output = NULL;
    } else {
        /* a cancelled root reports why it was cancelled (timeout, signal) */
        out->err = r.err;
        if (r.status == ETL_ECANCELLED && r.cancel_set) {
            out->err = r.cancel_err;
            out->status = r.cancel_err.status;
        } else if (r.leaf_state[0] && strcmp(r.leaf_error, out->err.name) == 0) {
            snprintf(out->failed_state, sizeof out->failed_state, "%s", r.leaf_state);
            snprintf(out->failed_key, sizeof out->failed_key, "%s", r.leaf_key);
        }
    }
    if (history_on(&r)) {
        if (out->status == ETL_OK)
            history_emit(&r, NULL, "ExecutionSucceeded",
                         json_pack("{s:O,s:I}", "output", out->output, "transitions",
                                   (json_int_t)r.transitions));
        else
            history_emit(&r, NULL, out->signal ? "ExecutionAborted" : "ExecutionFailed",
                         json_pack("{s:s,s:s,s:I}", "error", out->err.name, "cause",
                                   out->err.cause, "transitions", (json_int_t)r.transitions));
        fflush(opt->history);
    }
out:
    pool_stop(r.pool);
    connpool_free(r.conns);
    registry_global_cleanup(pl->reg);
    free(r.slot_used);
    free(r.slot_head);
    free(r.slot_tail);
    if (r.efd >= 0)
        close(r.efd);
    pthread_mutex_destroy(&r.done_mu);
    free(r.heap);
    json_decref(r.output);
    return out->status;
}

/* The machine a checkpoint path runs in, or NULL (msg says why). */
static machine *path_machine(const pipeline *pl, const char *p, char *msg, size_t len)
{
    machine *m = pl->top;
    while (*p) {
        char name[512];
        long long idx;
        int used = 0;
        if (sscanf(p, "/%511[^[][%lld]%n", name, &idx, &used) != 2 || used == 0) {
            snprintf(msg, len, "malformed checkpoint path '%s'", p);
            return NULL;
        }
        state *st = machine_find(m, name);
        if (!st || (st->type != ST_MAP && st->type != ST_PARALLEL)) {
            snprintf(msg, len, "the checkpoints name the state '%s' of %s, which the "
                               "pipeline no longer has as a Map or Parallel", name, m->label);
            return NULL;
        }
        machine **kids = NULL;
        size_t nk = st->ops->children(st, &kids);
        if (st->type == ST_MAP)
            m = nk ? kids[0] : NULL;
        else
            m = idx >= 0 && (size_t)idx < nk ? kids[idx] : NULL;
        if (!m) {
            snprintf(msg, len, "Parallel state '%s' no longer has a branch %lld", name, idx + 1);
            return NULL;
        }
        p += used;
    }
    return m;
}

bool sched_check_replay(const pipeline *pl, const ckpt_replay *replay, char *msg, size_t len)
{
    const char *p;
    json_t *v;
    json_object_foreach(replay->done, p, v) {
        if (!path_machine(pl, p, msg, len))
            return false;
    }
    json_object_foreach(replay->resume, p, v) {
        machine *m = path_machine(pl, p, msg, len);
        if (!m)
            return false;
        const char *name = json_string_value(json_object_get(v, "state"));
        if (!name || !machine_find(m, name)) {
            snprintf(msg, len, "the checkpoints resume %s at state '%s', which it no longer "
                               "has", m->label, name ? name : "(none)");
            return false;
        }
    }
    return true;
}
