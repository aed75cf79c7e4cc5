/* Checkpoint batches: see checkpoint.h for the format and the DESIGN. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jsontext.h"

/* A batch file every 100 ms while records come: what a kill -9 can lose at most. Not
 * more often: each batch costs two fsyncs, whose kernel work competes with the run for
 * the CPU (on a 2-core VM, a 10,000-item Map of Pass written in 1 ms batches spent more
 * CPU in the kernel than in the run). Records wait as references until their batch is
 * due, and the writer makes their lines then, in one go: waking it for every few
 * records cost the scheduler more (context switches, and the values' cache lines going
 * back and forth between the cores) than the lines themselves. */
#define BATCH_MS 100.0
/* records in a block: the scheduler fills one, then queues it with one lock */
#define BLOCK_ITEMS 64

/* a string literal into a jt_buf, without its NUL */
#define PUT_LIT(b, lit) jt_put((b), (lit), sizeof(lit) - 1)

/* A done record's parent path, copied once for the records of the parent's children:
 * the writer reads text, which never changes; refs is the scheduler thread's alone, and
 * lives apart from text so that counting does not take text's cache line from the
 * writer's core. */
typedef struct pathref {
    char *text;
    size_t len;
    long refs;
} pathref;

typedef struct item {
    unsigned char kind;  /* CKPT_AT, CKPT_FAIL or DONE */
    bool caught;         /* DONE */
    const char *state;   /* the Map or Parallel state's name (the machine's) */
    long long index;     /* DONE: the iteration or branch */
    pathref *parent;     /* DONE: the parent frame's path */
    json_t *path;        /* CKPT_AT, CKPT_FAIL: the frame's path */
    json_t *value;       /* DONE: the output; else the state's input */
} item;
enum { DONE = 2 };

/* Records go in blocks, which move between the scheduler and the writer whole (no
 * copying, and no vector growing by reallocation) and are used again once emptied. */
typedef struct block {
    struct block *next;
    size_t len;
    item v[BLOCK_ITEMS];
} block;

typedef struct blist {
    block *head, *tail;
} blist;

struct ckpt {
    char dir[PATH_MAX];
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* CLOCK_MONOTONIC */
    blist queued;       /* guarded by mu: records for the writer */
    blist made;         /* guarded by mu: records the writer is done with, whose
                           references the scheduler thread drops (see ckpt_done) */
    bool writer_asleep; /* guarded by mu: waiting with no record queued, no deadline */
    bool stopping;      /* guarded by mu */
    bool write_rest;    /* guarded by mu: at the stop, the queued records are written
                           (else dropped: see ckpt_end) */
    bool failed;        /* guarded by mu */
    char err[PATH_MAX + 256]; /* guarded by mu */
    double opened;      /* ms, CLOCK_MONOTONIC: the first batch is due 100 ms after */
    json_t *last_parent; /* scheduler thread: the path last_ref was copied from; held, so
                            that its address cannot come back as another path's */
    pathref *last_ref;  /* scheduler thread: holds one reference while it is last */
    block *cur;         /* scheduler thread only: records not queued yet */
    block *spare;       /* scheduler thread only: emptied blocks, to be filled again */
    jt_buf batch;       /* writer thread only: the lines of the batch being written */
    unsigned seq;       /* writer thread only: next batch number */
    bool dir_made;      /* writer thread only: c->dir exists (made or found) */
    pthread_t thread;
    /* scheduler thread only: the writer is started when it has something to do (see
     * ckpt_flush and ckpt_tick), so that a run that ends before its first batch is due
     * never starts it */
    bool started;
    bool start_failed;  /* records are dropped at once: nothing can write them */
    bool queued_any;    /* records were queued since the open */
    bool ended;         /* ckpt_end was called */
    int64_t due_ns;     /* CLOCK_MONOTONIC: when the first batch is due */
};

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One batch file: temp name, fsync, rename, fsync the directory. */
/* fsync the folder at path (its entries); errors are ignored: the batch is written */
static void sync_dir(const char *path)
{
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

static int write_batch(ckpt *c, const char *data, size_t len)
{
    if (!c->dir_made) {
        /* the folder, and its entry in the run folder, before the first batch */
        if (mkdir(c->dir, 0700) != 0 && errno != EEXIST)
            return -1;
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", c->dir);
        char *slash = strrchr(parent, '/');
        if (slash)
            *slash = '\0';
        sync_dir(parent);
        c->dir_made = true;
    }
    char tmp[PATH_MAX + 32], final[PATH_MAX + 32];
    snprintf(final, sizeof final, "%s/%08u.jsonl", c->dir, c->seq);
    snprintf(tmp, sizeof tmp, "%s/.%08u.jsonl.tmp", c->dir, c->seq);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    close(fd);
    if (rename(tmp, final) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    sync_dir(c->dir);
    c->seq++;
    return 0;
}

/* An "at" or "fail" record as one JSON line (see checkpoint.h), appended to b. Reads
 * the values, never their reference counts: those are the scheduler thread's. */
static void put_state_record(jt_buf *b, const item *it)
{
    if (it->kind == CKPT_AT)
        PUT_LIT(b, "{\"k\":\"at\",\"path\":");
    else
        PUT_LIT(b, "{\"k\":\"fail\",\"path\":");
    jt_value(b, it->path);
    PUT_LIT(b, ",\"state\":");
    jt_string(b, it->state, strlen(it->state));
    PUT_LIT(b, ",\"input\":");
    jt_value(b, it->value);
    PUT_LIT(b, "}\n");
}

/* The records of v as JSON lines appended to b: consecutive "done" records of children
 * of the same parent, state and caught flag make one "dones" line (a 10,000-item Map
 * of small outputs: about 16 bytes a child instead of 65). */
static void put_records(jt_buf *b, const block *blocks)
{
    const item *group = NULL; /* the first record of the open "dones" line */
    for (const block *bl = blocks; bl; bl = bl->next) {
        for (size_t i = 0; i < bl->len; i++) {
            const item *it = &bl->v[i];
            if (it->kind != DONE) {
                if (group)
                    PUT_LIT(b, "}}\n");
                group = NULL;
                put_state_record(b, it);
                continue;
            }
            if (group && group->parent == it->parent && group->state == it->state &&
                group->caught == it->caught) {
                jt_putc(b, ',');
            } else {
                if (group)
                    PUT_LIT(b, "}}\n");
                group = it;
                PUT_LIT(b, "{\"k\":\"dones\",\"path\":");
                jt_string(b, it->parent->text, it->parent->len);
                PUT_LIT(b, ",\"state\":");
                jt_string(b, it->state, strlen(it->state));
                if (it->caught)
                    PUT_LIT(b, ",\"caught\":true,\"items\":{");
                else
                    PUT_LIT(b, ",\"caught\":false,\"items\":{");
            }
            jt_putc(b, '"');
            jt_int(b, it->index);
            PUT_LIT(b, "\":");
            jt_value(b, it->value);
        }
    }
    if (group)
        PUT_LIT(b, "}}\n");
}

static void pathref_drop(pathref *p)
{
    if (p && --p->refs == 0) {
        free(p->text);
        free(p);
    }
}

static void blist_append(blist *l, block *first, block *last)
{
    if (l->tail)
        l->tail->next = first;
    else
        l->head = first;
    l->tail = last;
}

/* Drop the references of the records in the blocks (scheduler thread) and keep the
 * emptied blocks for new records. */
static void drop_refs(ckpt *c, block *bl)
{
    while (bl) {
        block *next = bl->next;
        for (size_t i = 0; i < bl->len; i++) {
            pathref_drop(bl->v[i].parent);
            json_decref(bl->v[i].path);
            json_decref(bl->v[i].value);
        }
        bl->len = 0;
        bl->next = c->spare;
        c->spare = bl;
        bl = next;
    }
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void wait_until(ckpt *c, double ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1e3)};
    ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1e3) * 1e6);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&c->cv, &c->mu, &ts);
}

/* Make the lines of what is queued and write them as the next batch file, then hand the
 * records back for their references to be dropped. Called and returns with c->mu held.
 * After a failure nothing more is written: the batch files must stay a prefix of the
 * run's records (a hole could hide the "at" that makes earlier children stale). */
static void write_queued(ckpt *c)
{
    blist got = c->queued;
    c->queued = (blist){0};
    bool failed = c->failed;
    pthread_mutex_unlock(&c->mu);
    int rc = 0, e = 0;
    if (!failed) {
        c->batch.len = 0;
        c->batch.oom = false;
        put_records(&c->batch, got.head);
        /* a batch whose lines ran out of memory is a failure to write, not nothing */
        rc = c->batch.oom ? (errno = ENOMEM, -1) : write_batch(c, c->batch.p, c->batch.len);
        e = errno;
    }
    pthread_mutex_lock(&c->mu);
    if (rc != 0 && !c->failed) {
        c->failed = true;
        snprintf(c->err, sizeof c->err, "cannot write a checkpoint in %s: %s", c->dir,
                 strerror(e));
    }
    /* back to the scheduler: after what it has not dropped yet */
    blist_append(&c->made, got.head, got.tail);
}

static void *writer(void *arg)
{
    pthread_setname_np(pthread_self(), "etlrun-ckpt"); /* for top -H, perf, gdb */
    ckpt *c = arg;
    double last = c->opened; /* when the last batch was written */
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (c->stopping && !c->write_rest)
            break; /* ckpt_close drops what is queued */
        if (c->queued.head && (c->stopping || mono_ms() >= last + BATCH_MS)) {
            /* the queue may grow meanwhile: what comes later goes into the next batch */
            write_queued(c);
            last = mono_ms();
            continue;
        }
        if (c->stopping)
            break;
        if (c->queued.head) {
            wait_until(c, last + BATCH_MS);
        } else {
            c->writer_asleep = true; /* the next flush_local wakes it */
            pthread_cond_wait(&c->cv, &c->mu);
            c->writer_asleep = false;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

ckpt *ckpt_open(const char *run_path, char *msg, size_t len)
{
    ckpt *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(msg, len, "out of memory");
        return NULL;
    }
    snprintf(c->dir, sizeof c->dir, "%s/checkpoints", run_path);
    /* a resumed run adds batches after the earlier ones; a new run's folder is made
     * with its first batch (a run that writes none has none) */
    DIR *d = opendir(c->dir);
    if (!d && errno != ENOENT) {
        snprintf(msg, len, "cannot read %s: %s", c->dir, strerror(errno));
        free(c);
        return NULL;
    }
    if (d) {
        c->dir_made = true;
        struct dirent *de;
        while ((de = readdir(d))) {
            unsigned n;
            char tail[16];
            if (sscanf(de->d_name, "%8u.%15s", &n, tail) == 2 && strcmp(tail, "jsonl") == 0 &&
                n >= c->seq)
                c->seq = n + 1;
        }
        closedir(d);
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->opened = mono_ms();
    c->due_ns = (int64_t)((c->opened + BATCH_MS) * 1e6);
    return c;
}

/* Start the writer (scheduler thread). On failure nothing more can be written: the
 * records queued so far are dropped at ckpt_close, later ones at once. */
static void start_writer(ckpt *c)
{
    /* signals are the main thread's business */
    sigset_t block, old;
    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(&c->thread, NULL, writer, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0) {
        c->started = true;
        return;
    }
    c->start_failed = true;
    pthread_mutex_lock(&c->mu);
    if (!c->failed) {
        c->failed = true;
        snprintf(c->err, sizeof c->err, "cannot start the checkpoint writer: %s",
                 strerror(rc));
    }
    pthread_mutex_unlock(&c->mu);
}

/* Queue the block of records being filled (scheduler thread): its references become
 * the queue's, and come back to this thread to be dropped (see checkpoint.h), taken
 * here too. */
static void flush_local(ckpt *c)
{
    block *bl = c->cur;
    c->cur = NULL;
    c->queued_any = true;
    pthread_mutex_lock(&c->mu);
    blist_append(&c->queued, bl, bl);
    block *drop = c->made.head;
    c->made = (blist){0};
    if (c->writer_asleep) {
        /* the first records since the last batch: their batch is due 100 ms after it */
        c->writer_asleep = false;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    drop_refs(c, drop);
}

/* Out of memory for a record: a lost record takes the order of what follows with it,
 * so nothing more is written. */
static void lost_record(ckpt *c)
{
    pthread_mutex_lock(&c->mu);
    if (!c->failed) {
        c->failed = true;
        snprintf(c->err, sizeof c->err, "cannot queue a checkpoint record for %s: out of "
                 "memory", c->dir);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Where the next record goes (scheduler thread), filled in place and then counted by
 * commit(): records are queued a block at a time, one lock for BLOCK_ITEMS of them. NULL
 * when the record cannot be kept. The scheduler calls ckpt_flush before it waits, so no
 * record stays here while it idles. */
static item *next_slot(ckpt *c)
{
    if (c->start_failed)
        return NULL;
    if (!c->cur) {
        block *bl = c->spare;
        if (bl) {
            c->spare = bl->next;
        } else if (!(bl = malloc(sizeof *bl))) {
            lost_record(c);
            return NULL;
        }
        bl->next = NULL;
        bl->len = 0;
        c->cur = bl;
    }
    return &c->cur->v[c->cur->len];
}

static void commit(ckpt *c)
{
    if (++c->cur->len == BLOCK_ITEMS)
        flush_local(c);
}

void ckpt_flush(ckpt *c)
{
    if (c->cur && c->cur->len) {
        flush_local(c);
    } else if (c->started) {
        /* nothing to queue: still, what the writer is done with is let go before the
         * scheduler waits (its values would otherwise stay alive until more records) */
        pthread_mutex_lock(&c->mu);
        block *drop = c->made.head;
        c->made = (blist){0};
        pthread_mutex_unlock(&c->mu);
        drop_refs(c, drop);
    }
    if (c->queued_any && !c->started && !c->start_failed)
        start_writer(c);
}

void ckpt_tick(ckpt *c, int64_t now_ns)
{
    bool pending = c->cur && c->cur->len;
    /* once the writer runs, records do not wait here longer than a round of work; until
     * then, they wait for the first batch to be due */
    if (c->started ? pending : (pending || c->queued_any) && now_ns >= c->due_ns)
        ckpt_flush(c);
}

void ckpt_done(ckpt *c, json_t *parent_path, const char *state, long long index,
               json_t *output, bool caught)
{
    if (parent_path != c->last_parent) {
        /* the children of another parent (a frame's path never changes) */
        pathref *p = malloc(sizeof *p);
        char *text = p ? malloc(json_string_length(parent_path) + 1) : NULL;
        if (!text) {
            free(p);
            lost_record(c);
            return;
        }
        p->len = json_string_length(parent_path);
        memcpy(text, json_string_value(parent_path), p->len + 1);
        p->text = text;
        p->refs = 1;
        pathref_drop(c->last_ref);
        c->last_ref = p;
        json_decref(c->last_parent);
        c->last_parent = json_incref(parent_path);
    }
    item *it = next_slot(c);
    if (!it)
        return;
    it->kind = DONE;
    it->caught = caught;
    it->state = state;
    it->index = index;
    it->parent = c->last_ref;
    it->path = NULL;
    it->value = json_incref(output);
    c->last_ref->refs++;
    commit(c);
}

void ckpt_state(ckpt *c, ckpt_kind kind, json_t *path, const char *state, json_t *input)
{
    item *it = next_slot(c);
    if (!it)
        return;
    *it = (item){.kind = (unsigned char)kind, .state = state, .path = json_incref(path),
                 .value = json_incref(input)};
    commit(c);
}

void ckpt_end(ckpt *c, bool write_rest)
{
    if (!c || c->ended)
        return;
    c->ended = true;
    if (write_rest)
        ckpt_flush(c); /* starts the writer if need be */
    if (!c->started)
        return; /* nobody to stop */
    pthread_mutex_lock(&c->mu);
    if (!c->stopping) {
        c->stopping = true;
        c->write_rest = write_rest;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

bool ckpt_close(ckpt *c, char *msg, size_t len)
{
    if (!c)
        return true;
    ckpt_end(c, true);
    if (c->started)
        pthread_join(c->thread, NULL);
    bool ok = !c->failed;
    if (!ok)
        snprintf(msg, len, "%s", c->err);
    drop_refs(c, c->made.head);
    drop_refs(c, c->queued.head);
    drop_refs(c, c->cur);
    while (c->spare) {
        block *next = c->spare->next;
        free(c->spare);
        c->spare = next;
    }
    pathref_drop(c->last_ref);
    json_decref(c->last_parent);
    free(c->batch.p);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    return ok;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int batch_file(const struct dirent *de)
{
    size_t n = strlen(de->d_name);
    return de->d_name[0] != '.' && n > 6 && strcmp(de->d_name + n - 6, ".jsonl") == 0;
}

/* Whether the record number seq of path q belongs to an earlier visit of one of q's
 * ancestors: an "at" of the Map or Parallel state that made an ancestor came after it
 * (the state was entered again, by a loop or a retry, and its children start over).
 * lastat: child path prefix "P/S[" -> the number of the last "at" of path P at S. */
static bool stale(const char *q, json_int_t seq, json_t *lastat)
{
    char prefix[4096];
    const char *p = q;
    while (*p == '/') {
        const char *open = strchr(p, '[');
        const char *close = open ? strchr(open, ']') : NULL;
        if (!close || (size_t)(open - q) + 2 > sizeof prefix)
            return false; /* malformed: sched_check_replay refuses it */
        memcpy(prefix, q, (size_t)(open - q) + 1);
        prefix[open - q + 1] = 0;
        json_t *at = json_object_get(lastat, prefix);
        if (at && json_integer_value(at) > seq)
            return true;
        p = close + 1;
    }
    return false;
}

/* Drop from table the entries that stale() says belong to an earlier visit. */
static void drop_stale(json_t *table, json_t *seqs, json_t *lastat)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(table, tmp, k, v) {
        if (stale(k, json_integer_value(json_object_get(seqs, k)), lastat))
            json_object_del(table, k);
    }
}

/* The children of a "dones" record: P/S[i] -> output, each with the record's number. */
static void load_dones(json_t *done, json_t *done_seq, const char *p, const char *st,
                       json_t *items, json_int_t seq)
{
    const char *idx;
    json_t *v;
    json_object_foreach(items, idx, v) {
        size_t n = strlen(p) + strlen(st) + strlen(idx) + 4;
        char *child = malloc(n);
        if (!child)
            continue; /* out of memory: that child only runs again */
        snprintf(child, n, "%s/%s[%s]", p, st, idx);
        json_object_set(done, child, v);
        json_object_set_new(done_seq, child, json_integer(seq));
        free(child);
    }
}

bool ckpt_load(const char *run_path, ckpt_replay *out, char *msg, size_t len)
{
    out->done = json_object();
    out->resume = json_object();
    /* record numbers: of each entry of done and resume, and of the last "at" per child
     * path prefix (see stale) */
    json_t *done_seq = json_object(), *resume_seq = json_object(), *lastat = json_object();
    json_int_t seq = 0;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_path);
    struct dirent **names = NULL;
    int n = scandir(dir, &names, batch_file, by_name);
    bool ok = true;
    if (n < 0) {
        ok = errno == ENOENT; /* no checkpoints: nothing to replay */
        if (!ok)
            snprintf(msg, len, "cannot read %s: %s", dir, strerror(errno));
        n = 0;
    }
    for (int i = 0; i < n && ok; i++) {
        char file[PATH_MAX + 300];
        snprintf(file, sizeof file, "%s/%s", dir, names[i]->d_name);
        FILE *f = fopen(file, "re");
        if (!f) {
            snprintf(msg, len, "cannot read %s: %s", file, strerror(errno));
            ok = false;
            break;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;
        int lineno = 0;
        while ((got = getline(&line, &cap, f)) > 0) {
            lineno++;
            json_error_t je;
            json_t *rec = json_loadb(line, (size_t)got, 0, &je);
            const char *k = json_string_value(json_object_get(rec, "k"));
            const char *p = json_string_value(json_object_get(rec, "path"));
            if (!rec || !k || !p) {
                /* batches are renamed into place whole: a bad line is damage, not a
                 * torn write, and replaying past it could skip work wrongly */
                snprintf(msg, len, "%s:%d: not a checkpoint record", file, lineno);
                json_decref(rec);
                ok = false;
                break;
            }
            seq++;
            if (strcmp(k, "dones") == 0) {
                const char *st = json_string_value(json_object_get(rec, "state"));
                json_t *items = json_object_get(rec, "items");
                if (!st || !json_is_object(items)) {
                    snprintf(msg, len, "%s:%d: not a checkpoint record", file, lineno);
                    json_decref(rec);
                    ok = false;
                    break;
                }
                if (!json_is_true(json_object_get(rec, "caught")))
                    load_dones(out->done, done_seq, p, st, items, seq);
            } else if (strcmp(k, "done") == 0 && json_is_true(json_object_get(rec, "caught"))) {
                /* completed only thanks to a Catch: a resume runs it again (the cause may
                 * be fixed by now), so it is not replayed */
            } else if (strcmp(k, "done") == 0) {
                json_object_set(out->done, p, json_object_get(rec, "output"));
                json_object_set_new(done_seq, p, json_integer(seq));
            } else if (strcmp(k, "at") == 0 || strcmp(k, "fail") == 0) {
                json_object_set_new(out->resume, p,
                                    json_pack("{s:O,s:O}", "state",
                                              json_object_get(rec, "state"), "input",
                                              json_object_get(rec, "input")));
                json_object_set_new(resume_seq, p, json_integer(seq));
                const char *st = json_string_value(json_object_get(rec, "state"));
                if (strcmp(k, "at") == 0 && st) {
                    size_t n = strlen(p) + strlen(st) + 3;
                    char *prefix = malloc(n);
                    if (prefix) {
                        snprintf(prefix, n, "%s/%s[", p, st);
                        json_object_set_new(lastat, prefix, json_integer(seq));
                        free(prefix);
                    }
                }
            }
            json_decref(rec);
        }
        free(line);
        fclose(f);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (ok) {
        drop_stale(out->done, done_seq, lastat);
        drop_stale(out->resume, resume_seq, lastat);
    }
    json_decref(done_seq);
    json_decref(resume_seq);
    json_decref(lastat);
    if (!ok)
        ckpt_replay_free(out);
    return ok;
}

void ckpt_replay_free(ckpt_replay *r)
{
    json_decref(r->done);
    json_decref(r->resume);
    r->done = r->resume = NULL;
}
