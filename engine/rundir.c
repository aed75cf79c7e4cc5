/* The state directory (see rundir.h): the per-pipeline lock, run folders with ids that
 * sort by time, atomic JSON files, pruning of old runs, and reading runs back for
 * `etlrun runs` and `etlrun show`.
 *
 * DESIGN: the lock is flock() on STATE_DIR/PIPELINE/lock, so the kernel releases it when
 * its holder dies, however it dies; the pid and start time written into the file are
 * only for the message a second run prints. Files a reader may see (meta.json,
 * summary.json) are written to a temp file, fsync()ed and renamed, so a kill -9 leaves
 * either the old or the new version. A new run folder is made as "runs/.ID.new", given
 * its meta.json there, and renamed to "runs/ID" (rundir_publish), so a run
 * folder without its meta.json never exists, whenever a kill comes. A pruned run is
 * first renamed to ".trash-ID" and then removed, so a half-removed run never looks like
 * a run. Hidden folders (".") are never runs; leftovers are removed by rundir_prune. */
#include "rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "timestamp.h"

struct rundir {
    char *pipeline;     /* the pipeline's name */
    char *dir;          /* ROOT/PIPELINE */
    int lock_fd;        /* flock()ed, O_CLOEXEC */
    bool locked;        /* the flock is ours */
    bool holder_died;   /* the lock file named a holder when we took it */
    char *run_id;       /* NULL until rundir_new_run */
    char *run_path;     /* ROOT/PIPELINE/runs/RUN_ID */
    char *new_path;     /* ROOT/PIPELINE/runs/.RUN_ID.new until rundir_publish, else NULL */
    char *unsynced[4];  /* files written into new_path, fsynced by the keeper */
    size_t n_unsynced;
    /* the keeper thread: the run folder's writes after publication, in order */
    pthread_t keeper;
    bool keeper_on;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail; /* guarded by mu */
    bool busy, stop;         /* guarded by mu */
    char err[PATH_MAX + 256]; /* guarded by mu: the first failure, "" when none */
    /* guarded by mu: the files whose last write failed (rundir_wrote) */
    char *write_failed[4];
    size_t n_write_failed;
    unsigned long appends_queued; /* the caller's thread */
    unsigned long appends_done;   /* guarded by mu */
    size_t append_bytes;          /* guarded by mu: queued, not written yet */
    char append_err[PATH_MAX + 256]; /* guarded by mu: the first failed append's */
};

typedef enum { JOB_SYNC, JOB_WRITE, JOB_APPEND, JOB_PRUNE } job_kind;
typedef struct job {
    struct job *next;
    job_kind kind;
    char *name, *text; /* JOB_WRITE, JOB_APPEND */
    size_t len;
    int fd;            /* JOB_APPEND */
    char *path;        /* JOB_SYNC, JOB_WRITE: the run folder; JOB_PRUNE: the current
                          run's id (never pruned) */
    char *names[4];    /* JOB_SYNC: what was written into it before */
    size_t n_names;
    int keep;          /* JOB_PRUNE */
    double max_age_s;
} job;

/* --- small helpers ------------------------------------------------------------- */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

/* mkdir -p; directories it creates get mode 0700 (runs hold inputs and staged rows). */
static int mkdir_p(const char *path)
{
    char *buf = strdup(path);
    int rc = -1;
    if (!buf)
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            goto out;
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        goto out;
    rc = 0;
out:
    free(buf);
    return rc;
}

static json_t *load_json(const char *dir, const char *name)
{
    char *p = join(dir, name);
    json_t *v = p ? json_load_file(p, JSON_DECODE_ANY, NULL) : NULL;
    free(p);
    return v;
}

static bool pid_alive(long pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* --- the root -------------------------------------------------------------------- */

char *rundir_root(const char *state_dir_opt)
{
    if (state_dir_opt && *state_dir_opt)
        return strdup(state_dir_opt);
    const char *e = getenv("ETLRUN_STATE_DIR");
    if (e && *e)
        return strdup(e);
    /* the XDG spec says a relative $XDG_STATE_HOME is invalid and must be ignored */
    e = getenv("XDG_STATE_HOME");
    if (e && e[0] == '/')
        return join(e, "etlrun");
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home || !*home)
        return NULL;
    return join(home, ".local/state/etlrun");
}

bool rundir_valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 100 || name[0] == '.')
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* --- the lock -------------------------------------------------------------------- */

/* The holder's "PID START" from the lock file. The holder writes it just after taking
 * the lock, and a former holder's line may still be there for that instant: retry for
 * a moment while the file is empty or names a dead process. */
static void read_holder(int fd, long *out_pid, char *since, size_t len)
{
    *out_pid = 0;
    snprintf(since, len, "an unknown time");
    for (int i = 0; i < 50; i++) {
        char buf[128];
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = '\0';
            long pid;
            char when[64];
            if (sscanf(buf, "%ld %63s", &pid, when) == 2 && pid_alive(pid)) {
                *out_pid = pid;
                snprintf(since, len, "%s", when);
                return;
            }
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

rundir *rundir_open(const char *root, const char *pipeline, double wait_s, bool *out_locked,
                    char *msg, size_t len)
{
    rundir *rd = NULL;
    char *lock_path = NULL;
    *out_locked = false;
    if (!rundir_valid_name(pipeline)) {
        snprintf(msg, len, "the pipeline name '%s' cannot name a folder of the state "
                 "directory (1 to 100 characters, no '/', not starting with '.'); set "
                 "'name:' in the pipeline", pipeline);
        return NULL;
    }
    rd = calloc(1, sizeof *rd);
    if (!rd)
        goto oom;
    rd->lock_fd = -1;
    pthread_mutex_init(&rd->mu, NULL);
    pthread_cond_init(&rd->cv, NULL);
    rd->pipeline = strdup(pipeline);
    rd->dir = join(root, pipeline);
    lock_path = rd->dir ? join(rd->dir, "lock") : NULL;
    if (!rd->pipeline || !lock_path)
        goto oom;
    if (mkdir_p(rd->dir) != 0) {
        snprintf(msg, len, "cannot create the state directory %s: %s (set --state-dir or "
                 "$ETLRUN_STATE_DIR to a writable directory)", rd->dir, strerror(errno));
        goto fail;
    }
    rd->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (rd->lock_fd < 0) {
        snprintf(msg, len, "cannot open the lock file %s: %s", lock_path, strerror(errno));
        goto fail;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (flock(rd->lock_fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK) {
            snprintf(msg, len, "cannot lock %s: %s", lock_path, strerror(errno));
            goto fail;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
        if (wait_s < 0 || waited >= wait_s) {
            long pid;
            char since[64];
            read_holder(rd->lock_fd, &pid, since, sizeof since);
            char who[96];
            if (pid > 0)
                snprintf(who, sizeof who, "pid %ld", pid);
            else
                snprintf(who, sizeof who, "another process");
            if (wait_s < 0)
                snprintf(msg, len, "%s is locked by %s (running since %s); try again later, "
                         "or --wait-lock SECONDS", pipeline, who, since);
            else
                snprintf(msg, len, "%s is still locked by %s (running since %s) after "
                         "waiting %g s (--wait-lock)", pipeline, who, since, wait_s);
            *out_locked = true;
            goto fail;
        }
        /* short sleeps: the lock is taken within 50 ms of its release */
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* the lock is ours. A holder that ended normally emptied the file (rundir_close):
     * a line still there is a holder that died (kill -9, a crash, the power) */
    rd->locked = true;
    char old[128];
    ssize_t got = pread(rd->lock_fd, old, sizeof old - 1, 0);
    long old_pid = 0;
    if (got > 0) {
        old[got] = '\0';
        rd->holder_died = sscanf(old, "%ld", &old_pid) == 1 && old_pid > 0;
    }
    /* say who holds it, for a second run's message */
    char line[96], when[40];
    ts_format(ts_now(), when, sizeof when);
    int n = snprintf(line, sizeof line, "%ld %s\n", (long)getpid(), when);
    if (ftruncate(rd->lock_fd, 0) != 0 || pwrite(rd->lock_fd, line, (size_t)n, 0) != n) {
        /* only the message of a second run would suffer; the lock holds */
    }
    free(lock_path);
    return rd;
oom:
    snprintf(msg, len, "out of memory");
fail:
    free(lock_path);
    rundir_close(rd);
    return NULL;
}

/* --- runs ------------------------------------------------------------------------ */

/* Generated ids start with "YYYYMMDDTHHMMSS.mmmZ-": 20 bytes of time, then randomness. */
enum { ID_TIME_LEN = 20 };

static bool generated_id(const char *s)
{
    if (strlen(s) != ID_TIME_LEN + 7 || s[8] != 'T' || s[ID_TIME_LEN - 1] != 'Z' ||
        s[ID_TIME_LEN] != '-')
        return false;
    for (int i = 0; i < 8; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* The greatest generated id among the pipeline's runs ("" when none). */
static void newest_id(const char *runs, char *out, size_t len)
{
    out[0] = '\0';
    DIR *d = opendir(runs);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (generated_id(e->d_name) && strcmp(e->d_name, out) > 0)
            snprintf(out, len, "%s", e->d_name);
    closedir(d);
}

static void remove_tree(const char *path);
struct job;
static void enqueue(rundir *rd, struct job *j);

static void generate_id(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    unsigned rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        rnd = (unsigned)ts.tv_nsec ^ (unsigned)getpid();
    snprintf(buf, len, "%04d%02d%02dT%02d%02d%02d.%03ldZ-%06x", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000, rnd & 0xffffff);
}

/* A new id greater than newest. We hold the pipeline's lock, so no other run of it is
 * choosing one: within the millisecond of the newest run, wait for the next one. When
 * the clock is behind the newest id (it stepped back), time order cannot be had, and
 * the id is only unique. */
static void next_id(const char *newest, char *id, size_t len)
{
    for (int i = 0; i < 100; i++) {
        generate_id(id, len);
        if (strcmp(id, newest) > 0 || strncmp(id, newest, ID_TIME_LEN) < 0)
            return;
        struct timespec ts = {0, 200000L};
        nanosleep(&ts, NULL);
    }
}

void rundir_new_id(char *buf, size_t len) { generate_id(buf, len); }

bool rundir_new_run(rundir *rd, const char *name, char *msg, size_t len)
{
    char id[128], newest[256], hidden[160];
    char *runs = join(rd->dir, "runs");
    bool ok = false;
    if (!runs || (mkdir(runs, 0700) != 0 && errno != EEXIST)) {
        snprintf(msg, len, "cannot create %s/runs: %s", rd->dir, runs ? strerror(errno)
                                                                      : "out of memory");
        goto out;
    }
    if (name && !rundir_valid_name(name)) {
        snprintf(msg, len, "the run name '%s' cannot name a folder (1 to 100 characters, "
                 "no '/', not starting with '.')", name);
        goto out;
    }
    if (!name)
        newest_id(runs, newest, sizeof newest);
    for (size_t i = 0; i < rd->n_unsynced; i++)
        free(rd->unsynced[i]); /* an earlier run of this rundir never published */
    rd->n_unsynced = 0;
    for (int attempt = 0;; attempt++) {
        if (name)
            snprintf(id, sizeof id, "%s", name);
        else
            next_id(newest, id, sizeof id);
        snprintf(hidden, sizeof hidden, ".%s.new", id);
        free(rd->run_path);
        free(rd->new_path);
        rd->run_path = join(runs, id);
        rd->new_path = join(runs, hidden);
        if (!rd->run_path || !rd->new_path) {
            snprintf(msg, len, "out of memory");
            goto out;
        }
        /* we hold the lock: no other process makes runs of this pipeline, and a
         * .ID.new left by a killed attempt is ours to remove */
        struct stat st;
        int e = lstat(rd->run_path, &st) == 0 ? EEXIST : 0;
        if (!e) {
            remove_tree(rd->new_path);
            if (mkdir(rd->new_path, 0700) == 0)
                break;
            e = errno;
        }
        if (e == EEXIST && !name && attempt < 10)
            continue; /* the same millisecond and the same 24 random bits */
        if (e == EEXIST)
            snprintf(msg, len, "a run named %s already exists in %s; choose another "
                     "--name", id, runs);
        else
            snprintf(msg, len, "cannot create the run folder %s/%s: %s", runs, hidden,
                     strerror(e));
        goto out;
    }
    free(rd->run_id);
    rd->run_id = strdup(id);
    ok = rd->run_id != NULL;
    if (!ok)
        snprintf(msg, len, "out of memory");
out:
    if (!ok) {
        free(rd->new_path);
        rd->new_path = NULL;
    }
    free(runs);
    return ok;
}

static void fsync_dir(const char *path)
{
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

bool rundir_publish(rundir *rd, char *msg, size_t len)
{
    if (!rd->new_path)
        return true;
    /* atomic against a kill at once; durable (fsyncs) shortly after, by the keeper,
     * so that the run does not wait for the disk to start */
    int r = renameat2(AT_FDCWD, rd->new_path, AT_FDCWD, rd->run_path, RENAME_NOREPLACE);
    if (r != 0 && (errno == EINVAL || errno == ENOSYS)) {
        /* a filesystem without RENAME_NOREPLACE: we hold the lock, and rundir_new_run
         * saw no folder of that name */
        struct stat st;
        r = lstat(rd->run_path, &st) == 0 ? (errno = EEXIST, -1)
                                           : rename(rd->new_path, rd->run_path);
    }
    if (r != 0) {
        snprintf(msg, len, "cannot rename %s to %s: %s", rd->new_path, rd->run_path,
                 strerror(errno));
        return false;
    }
    free(rd->new_path);
    rd->new_path = NULL;
    job *j = calloc(1, sizeof *j);
    if (j && (j->path = strdup(rd->run_path))) {
        j->kind = JOB_SYNC;
        memcpy(j->names, rd->unsynced, sizeof j->names);
        j->n_names = rd->n_unsynced;
        rd->n_unsynced = 0;
        enqueue(rd, j);
    } else {
        free(j); /* out of memory: the files are complete, only not yet on the disk */
    }
    return true;
}

bool rundir_reuse_run(rundir *rd, const char *run_id, char *msg, size_t len)
{
    char *runs = join(rd->dir, "runs");
    char *path = runs && rundir_valid_name(run_id) ? join(runs, run_id) : NULL;
    free(runs);
    struct stat st;
    if (!path || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(msg, len, "pipeline %s has no run %s", rd->pipeline, run_id);
        free(path);
        return false;
    }
    free(rd->run_path);
    free(rd->run_id);
    rd->run_path = path;
    rd->run_id = strdup(run_id);
    if (!rd->run_id) {
        snprintf(msg, len, "out of memory");
        return false;
    }
    return true;
}

const char *rundir_run_id(const rundir *rd) { return rd->run_id; }
bool rundir_holder_died(const rundir *rd) { return rd->holder_died; }
const char *rundir_run_path(const rundir *rd) { return rd->run_path; }

/* Write text (len bytes) as NAME in folder: temp file, then (durable) fsync, rename,
 * and (durable) fsync of the folder. */
static bool write_text(const char *folder, const char *name, const char *text, size_t len,
                       bool durable)
{
    bool ok = false;
    int fd = -1;
    char *path = NULL, *tmp = NULL;
    if (!folder)
        return false;
    path = join(folder, name);
    size_t n = path ? strlen(path) + 32 : 0;
    tmp = n ? malloc(n) : NULL;
    if (!path || !tmp)
        goto out;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto out;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto out;
        off += (size_t)w;
    }
    if (durable && fsync(fd) != 0)
        goto out;
    if (close(fd) != 0) {
        fd = -1;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto out;
    if (durable)
        fsync_dir(folder); /* the rename itself reaches the disk with the folder */
    ok = true;
out:
    if (fd >= 0)
        close(fd);
    if (!ok && tmp)
        unlink(tmp);
    free(path);
    free(tmp);
    return ok;
}

/* --- the keeper: the run folder's writes, off the run's path ------------------------ */

static void prune_now(rundir *rd, const char *current, int keep, double max_age_s);

static void job_free(job *j)
{
    for (size_t i = 0; i < j->n_names; i++)
        free(j->names[i]);
    free(j->path);
    free(j->name);
    free(j->text);
    free(j);
}

static void keeper_failed(rundir *rd, const char *fmt, const char *a, int e)
{
    pthread_mutex_lock(&rd->mu);
    if (!rd->err[0])
        snprintf(rd->err, sizeof rd->err, fmt, a, strerror(e));
    pthread_mutex_unlock(&rd->mu);
}

/* Remember whether the last write of name failed (rundir_wrote). */
static void note_write(rundir *rd, const char *name, bool ok)
{
    pthread_mutex_lock(&rd->mu);
    size_t i = 0;
    while (i < rd->n_write_failed && strcmp(rd->write_failed[i], name) != 0)
        i++;
    if (ok && i < rd->n_write_failed) {
        free(rd->write_failed[i]);
        rd->write_failed[i] = rd->write_failed[--rd->n_write_failed];
    } else if (!ok && i == rd->n_write_failed &&
               i < sizeof rd->write_failed / sizeof rd->write_failed[0]) {
        char *copy = strdup(name);
        if (copy)
            rd->write_failed[rd->n_write_failed++] = copy;
    }
    pthread_mutex_unlock(&rd->mu);
}

static void run_job(rundir *rd, job *j)
{
    switch (j->kind) {
    case JOB_SYNC:
        /* what was written into the folder before its publication: its data, then the
         * folder's entries, then the folder's own name in runs/ */
        for (size_t i = 0; i < j->n_names; i++) {
            char *p = join(j->path, j->names[i]);
            int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
            if (fd < 0 || fsync(fd) != 0)
                keeper_failed(rd, "cannot sync %s: %s", p ? p : j->names[i], errno);
            if (fd >= 0)
                close(fd);
            free(p);
        }
        fsync_dir(j->path);
        char *runs = join(rd->dir, "runs");
        if (runs)
            fsync_dir(runs);
        free(runs);
        break;
    case JOB_WRITE: {
        bool ok = write_text(j->path, j->name, j->text, j->len, true);
        if (!ok)
            keeper_failed(rd, "cannot write %s in the run folder: %s", j->name, errno);
        note_write(rd, j->name, ok);
        break;
    }
    case JOB_APPEND: {
        /* reported by rundir_appends_done only (rd->err is the other writes') */
        pthread_mutex_lock(&rd->mu);
        bool skip = rd->append_err[0] != 0; /* no hole after a failed append */
        pthread_mutex_unlock(&rd->mu);
        int e = 0;
        off_t before = skip ? 0 : lseek(j->fd, 0, SEEK_END);
        for (size_t off = 0; !skip && off < j->len;) {
            ssize_t w = write(j->fd, j->text + off, j->len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                e = w < 0 ? errno : EIO;
                break;
            }
            off += (size_t)w;
        }
        /* no line cut short either: what was written of the failed lines goes */
        if (e && before >= 0 && ftruncate(j->fd, before) != 0) {
            /* a file that cannot be written may not be truncated either: left as is */
        }
        pthread_mutex_lock(&rd->mu);
        if (e && !rd->append_err[0])
            snprintf(rd->append_err, sizeof rd->append_err, "cannot write %s: %s", j->name,
                     strerror(e));
        rd->appends_done++;
        rd->append_bytes -= j->len;
        pthread_mutex_unlock(&rd->mu);
        break;
    }
    case JOB_PRUNE:
        prune_now(rd, j->path, j->keep, j->max_age_s);
        break;
    }
}

static void *keeper(void *arg)
{
    pthread_setname_np(pthread_self(), "etlrun-keeper"); /* for top -H, perf, gdb */
    rundir *rd = arg;
    pthread_mutex_lock(&rd->mu);
    for (;;) {
        while (!rd->head && !rd->stop)
            pthread_cond_wait(&rd->cv, &rd->mu);
        job *j = rd->head;
        if (!j)
            break; /* stopping, and every job is done */
        rd->head = j->next;
        if (!rd->head)
            rd->tail = NULL;
        rd->busy = true;
        pthread_mutex_unlock(&rd->mu);
        run_job(rd, j);
        job_free(j);
        pthread_mutex_lock(&rd->mu);
        rd->busy = false;
        pthread_cond_broadcast(&rd->cv); /* rundir_flush */
    }
    pthread_mutex_unlock(&rd->mu);
    return NULL;
}

/* Give j to the keeper (started on first use); without a thread, run it here. */
static void enqueue(rundir *rd, job *j)
{
    pthread_mutex_lock(&rd->mu);
    bool finished = rd->stop;
    pthread_mutex_unlock(&rd->mu);
    if (finished && rd->keeper_on) {
        /* a write after rundir_finish: done here, after the keeper's */
        pthread_join(rd->keeper, NULL);
        rd->keeper_on = false;
    }
    if (finished) {
        run_job(rd, j);
        job_free(j);
        return;
    }
    if (!rd->keeper_on) {
        sigset_t block, old;
        sigfillset(&block); /* signals are the main thread's business */
        pthread_sigmask(SIG_BLOCK, &block, &old);
        rd->keeper_on = pthread_create(&rd->keeper, NULL, keeper, rd) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!rd->keeper_on) {
            run_job(rd, j);
            job_free(j);
            return;
        }
    }
    pthread_mutex_lock(&rd->mu);
    if (rd->tail)
        rd->tail->next = j;
    else
        rd->head = j;
    rd->tail = j;
    pthread_cond_broadcast(&rd->cv);
    pthread_mutex_unlock(&rd->mu);
}

void rundir_finish(rundir *rd)
{
    if (!rd)
        return;
    pthread_mutex_lock(&rd->mu);
    rd->stop = true;
    pthread_cond_broadcast(&rd->cv);
    pthread_mutex_unlock(&rd->mu);
}

bool rundir_wrote(rundir *rd, const char *name)
{
    pthread_mutex_lock(&rd->mu);
    bool ok = true;
    for (size_t i = 0; i < rd->n_write_failed; i++)
        ok = ok && strcmp(rd->write_failed[i], name) != 0;
    pthread_mutex_unlock(&rd->mu);
    return ok;
}

bool rundir_flush(rundir *rd, char *msg, size_t len)
{
    if (!rd->keeper_on)
        return !rd->err[0] || (snprintf(msg, len, "%s", rd->err), false);
    pthread_mutex_lock(&rd->mu);
    while (rd->head || rd->busy)
        pthread_cond_wait(&rd->cv, &rd->mu);
    bool ok = !rd->err[0];
    if (!ok)
        snprintf(msg, len, "%s", rd->err);
    pthread_mutex_unlock(&rd->mu);
    return ok;
}

bool rundir_write_text(rundir *rd, const char *name, const char *text, size_t len)
{
    if (rd->new_path) {
        /* not visible yet: made durable by the keeper once published */
        if (rd->n_unsynced == sizeof rd->unsynced / sizeof rd->unsynced[0])
            return false;
        char *n = strdup(name);
        if (!n || !write_text(rd->new_path, name, text, len, false)) {
            free(n);
            return false;
        }
        rd->unsynced[rd->n_unsynced++] = n;
        return true;
    }
    if (!rd->run_path)
        return false;
    job *j = calloc(1, sizeof *j);
    char *copy = malloc(len ? len : 1);
    char *n = strdup(name);
    /* the job's own copy: the rundir may move on to another run before it is done */
    char *folder = strdup(rd->run_path);
    if (!j || !copy || !n || !folder) {
        free(j);
        free(copy);
        free(n);
        free(folder);
        return false;
    }
    j->path = folder;
    memcpy(copy, text, len);
    j->kind = JOB_WRITE;
    j->name = n;
    j->text = copy;
    j->len = len;
    enqueue(rd, j);
    return true;
}

/* bytes of appends queued at most (one append may be bigger alone) */
#define APPEND_MAX (8u << 20)

bool rundir_append(rundir *rd, int fd, const char *name, char *text, size_t len)
{
    job *j = calloc(1, sizeof *j);
    char *n = strdup(name);
    if (!j || !n) {
        free(j);
        free(n);
        free(text);
        return false;
    }
    j->kind = JOB_APPEND;
    j->fd = fd;
    j->name = n;
    j->text = text;
    j->len = len;
    /* a disk slower than the run holds the run back, rather than its memory growing */
    pthread_mutex_lock(&rd->mu);
    while (rd->append_bytes > 0 && rd->append_bytes + len > APPEND_MAX)
        pthread_cond_wait(&rd->cv, &rd->mu);
    rd->append_bytes += len;
    pthread_mutex_unlock(&rd->mu);
    rd->appends_queued++;
    enqueue(rd, j);
    return true;
}

bool rundir_appends_done(rundir *rd, char *msg, size_t len)
{
    pthread_mutex_lock(&rd->mu);
    while (rd->appends_done < rd->appends_queued)
        pthread_cond_wait(&rd->cv, &rd->mu);
    bool ok = !rd->append_err[0];
    if (!ok)
        snprintf(msg, len, "%s", rd->append_err);
    pthread_mutex_unlock(&rd->mu);
    return ok;
}

bool rundir_write_json(rundir *rd, const char *name, const json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (!text)
        return false;
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps leaves room: we overwrite the NUL, writing len+1 */
    bool ok = rundir_write_text(rd, name, text, len + 1);
    free(text);
    return ok;
}

/* --- listing and pruning ----------------------------------------------------------- */

typedef struct run_entry {
    char *id;
    char started[64];  /* meta.json's "started" (RFC 3339, UTC, ms), or from mtime */
    double epoch;      /* the same, in seconds */
} run_entry;

static int entry_cmp(const void *a, const void *b)
{
    const run_entry *x = a, *y = b;
    int c = strcmp(x->started, y->started);
    return c ? c : strcmp(x->id, y->id);
}

/* The runs in dir/runs (not the trash), unsorted; NULL with *n = 0 when none. */
static run_entry *scan_runs(const char *runs, size_t *out_n, bool *out_err)
{
    run_entry *v = NULL;
    size_t n = 0, cap = 0;
    *out_err = false;
    DIR *d = opendir(runs);
    if (!d) {
        *out_err = errno != ENOENT;
        *out_n = 0;
        return NULL;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = join(runs, e->d_name);
        struct stat st;
        if (!p || stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
            free(p);
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            run_entry *nv = realloc(v, ncap * sizeof *v);
            if (!nv) {
                free(p);
                break;
            }
            v = nv;
            cap = ncap;
        }
        run_entry *r = &v[n];
        memset(r, 0, sizeof *r);
        r->id = strdup(e->d_name);
        if (!r->id) {
            free(p);
            break;
        }
        /* a generated id holds its start time (to the millisecond): no file to read,
         * which keeps pruning and listing cheap; other names have it in meta.json */
        char from_id[32];
        json_t *meta = NULL;
        const char *s = from_id;
        if (generated_id(e->d_name)) {
            const char *i = e->d_name;
            snprintf(from_id, sizeof from_id, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2s.%.3sZ", i, i + 4,
                     i + 6, i + 9, i + 11, i + 13, i + 16);
        } else {
            meta = load_json(p, "meta.json");
            s = json_string_value(json_object_get(meta, "started"));
        }
        ts_instant t;
        if (s && ts_parse(s, &t)) {
            ts_format(t, r->started, sizeof r->started);
            r->epoch = (double)t.sec + t.nsec / 1e9;
        } else {
            t.sec = st.st_mtim.tv_sec;
            t.nsec = (int32_t)st.st_mtim.tv_nsec;
            ts_format(t, r->started, sizeof r->started);
            r->epoch = (double)t.sec + t.nsec / 1e9;
        }
        json_decref(meta);
        free(p);
        n++;
    }
    closedir(d);
    *out_n = n;
    return v;
}

static void free_entries(run_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].id);
    free(v);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void rundir_remove_tree(const char *path) { remove_tree(path); }

static void prune_now(rundir *rd, const char *current, int keep, double max_age_s)
{
    char *runs = join(rd->dir, "runs");
    size_t n = 0;
    bool err;
    run_entry *v = runs ? scan_runs(runs, &n, &err) : NULL;
    if (!v)
        goto out;
    qsort(v, n, sizeof *v, entry_cmp);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double t_now = (double)now.tv_sec + now.tv_nsec / 1e9;
    size_t n_old = keep < 0 ? 0 : (size_t)keep < n ? n - (size_t)keep : 0;
    for (size_t i = 0; i < n_old; i++) {
        if (current && strcmp(v[i].id, current) == 0)
            continue;
        if (max_age_s > 0 && t_now - v[i].epoch < max_age_s)
            continue;
        char trash_name[300];
        snprintf(trash_name, sizeof trash_name, ".trash-%s", v[i].id);
        char *from = join(runs, v[i].id), *to = join(runs, trash_name);
        if (from && to && rename(from, to) == 0)
            remove_tree(to);
        free(from);
        free(to);
    }
    /* trash left by a prune that was killed halfway, and the unpublished folders of runs
     * killed before they started (we hold the lock: no run of ours is being made) */
    DIR *d = opendir(runs);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            /* (the keeper runs this after the current run was published; one rundir
             * makes one run at a time, so no unpublished folder is being made now) */
            size_t nl = strlen(e->d_name);
            bool unpublished = e->d_name[0] == '.' && nl > 5 &&
                               strcmp(e->d_name + nl - 4, ".new") == 0;
            if (strncmp(e->d_name, ".trash-", 7) != 0 && !unpublished)
                continue;
            char *p = join(runs, e->d_name);
            if (p)
                remove_tree(p);
            free(p);
        }
        closedir(d);
    }
out:
    free_entries(v, n);
    free(runs);
}

void rundir_prune(rundir *rd, int keep, double max_age_s)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return; /* out of memory: the next run prunes */
    j->kind = JOB_PRUNE;
    j->path = rd->run_id ? strdup(rd->run_id) : NULL;
    if (rd->run_id && !j->path) {
        free(j);
        return;
    }
    j->keep = keep;
    j->max_age_s = max_age_s;
    enqueue(rd, j);
}

void rundir_close(rundir *rd)
{
    if (!rd)
        return;
    if (rd->keeper_on) {
        pthread_mutex_lock(&rd->mu);
        rd->stop = true;
        pthread_cond_broadcast(&rd->cv);
        pthread_mutex_unlock(&rd->mu);
        pthread_join(rd->keeper, NULL);
    }
    for (size_t i = 0; i < rd->n_unsynced; i++)
        free(rd->unsynced[i]);
    for (size_t i = 0; i < rd->n_write_failed; i++)
        free(rd->write_failed[i]);
    pthread_mutex_destroy(&rd->mu);
    pthread_cond_destroy(&rd->cv);
    if (rd->locked && ftruncate(rd->lock_fd, 0) != 0) {
        /* the next holder will look for leftovers of a dead run, and find none */
    }
    if (rd->lock_fd >= 0)
        close(rd->lock_fd); /* releases the flock */
    free(rd->pipeline);
    free(rd->dir);
    free(rd->run_id);
    free(rd->run_path);
    if (rd->new_path)
        remove_tree(rd->new_path); /* a run that never started: nothing to keep */
    free(rd->new_path);
    free(rd);
}

json_t *rundir_list(const char *root, const char *pipeline, char *msg, size_t len)
{
    if (!rundir_valid_name(pipeline)) {
        snprintf(msg, len, "'%s' is not a pipeline name", pipeline);
        return NULL;
    }
    char *dir = join(root, pipeline);
    char *runs = dir ? join(dir, "runs") : NULL;
    json_t *out = NULL;
    size_t n = 0;
    bool err = false;
    run_entry *v = runs ? scan_runs(runs, &n, &err) : NULL;
    if (err) {
        snprintf(msg, len, "cannot read %s: %s", runs, strerror(errno));
        goto out;
    }
    if (n)
        qsort(v, n, sizeof *v, entry_cmp);
    out = json_array();
    for (size_t i = 0; out && i < n; i++) {
        char *p = join(runs, v[i].id);
        if (!p)
            continue;
        json_t *meta = load_json(p, "meta.json"), *sum = load_json(p, "summary.json");
        json_array_append_new(out, json_pack("{s:s,s:s,s:o,s:o}", "id", v[i].id, "path", p,
                                             "meta", meta ? meta : json_null(), "summary",
                                             sum ? sum : json_null()));
        free(p);
    }
out:
    free_entries(v, n);
    free(runs);
    free(dir);
    return out;
}

char *rundir_find(const char *root, const char *run_id, char **out_pipeline)
{
    if (out_pipeline)
        *out_pipeline = NULL;
    if (!rundir_valid_name(run_id))
        return NULL;
    DIR *d = opendir(root);
    if (!d)
        return NULL;
    char *found = NULL;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        size_t n = strlen(root) + strlen(e->d_name) + strlen(run_id) + 8;
        char *p = malloc(n);
        if (!p)
            break;
        snprintf(p, n, "%s/%s/runs/%s", root, e->d_name, run_id);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            found = p;
            if (out_pipeline)
                *out_pipeline = strdup(e->d_name);
        } else {
            free(p);
        }
    }
    closedir(d);
    return found;
}

/* Whether /proc/locks shows a flock on the file (dev, ino); -1 when it cannot tell. */
static int proc_locks_has(dev_t dev, ino_t ino)
{
    FILE *f = fopen("/proc/locks", "re");
    if (!f)
        return -1;
    char line[256];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char kind[16];
        unsigned maj, min;
        unsigned long long inode;
        /* "1: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF" */
        if (sscanf(line, "%*s %15s %*s %*s %*d %x:%x:%llu", kind, &maj, &min, &inode) == 4 &&
            strcmp(kind, "FLOCK") == 0 && inode == (unsigned long long)ino &&
            maj == major(dev) && min == minor(dev)) {
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

bool rundir_is_running(const char *root, const char *pipeline, const json_t *meta)
{
    long pid = (long)json_integer_value(json_object_get(meta, "pid"));
    if (!rundir_valid_name(pipeline) || !pid_alive(pid))
        return false;
    char *dir = join(root, pipeline);
    char *lock = dir ? join(dir, "lock") : NULL;
    bool running = false;
    int fd = lock ? open(lock, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        char buf[128];
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        long holder = 0;
        if (n > 0) {
            buf[n] = '\0';
            holder = strtol(buf, NULL, 10);
        }
        struct stat st;
        if (holder == pid && fstat(fd, &st) == 0) {
            /* the lock file keeps a dead holder's pid: ask the kernel whether the lock
             * is held (a pid can be reused); without /proc, trust the pid */
            int held = proc_locks_has(st.st_dev, st.st_ino);
            running = held != 0;
        }
        close(fd);
    }
    free(lock);
    free(dir);
    return running;
}
