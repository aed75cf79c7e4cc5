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

#define BATCH_MS 100

struct ckpt {
    char dir[PATH_MAX];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;          /* guarded by mu: queued lines */
    size_t len, cap;    /* guarded by mu */
    bool stopping;      /* guarded by mu */
    bool failed;        /* guarded by mu */
    char err[PATH_MAX + 256]; /* guarded by mu */
    unsigned seq;       /* writer thread only: next batch number */
    pthread_t thread;
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
static int write_batch(ckpt *c, const char *data, size_t len)
{
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
    int dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    c->seq++;
    return 0;
}

static void *writer(void *arg)
{
    ckpt *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (!c->stopping) {
            /* gather records for one batch period (or until told to stop) */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += BATCH_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            while (!c->stopping && pthread_cond_timedwait(&c->cv, &c->mu, &ts) != ETIMEDOUT)
                ;
        }
        if (c->len == 0) {
            if (c->stopping)
                break;
            continue;
        }
        char *data = c->buf;
        size_t len = c->len;
        c->buf = NULL;
        c->len = c->cap = 0;
        pthread_mutex_unlock(&c->mu);
        int rc = write_batch(c, data, len);
        int e = errno;
        free(data);
        pthread_mutex_lock(&c->mu);
        if (rc != 0 && !c->failed) {
            c->failed = true;
            snprintf(c->err, sizeof c->err, "cannot write a checkpoint in %s: %s", c->dir,
                     strerror(e));
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
    if (mkdir(c->dir, 0700) != 0 && errno != EEXIST) {
        snprintf(msg, len, "cannot create %s: %s", c->dir, strerror(errno));
        free(c);
        return NULL;
    }
    /* a resumed run adds batches after the earlier ones */
    DIR *d = opendir(c->dir);
    if (d) {
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
    pthread_cond_init(&c->cv, NULL);
    /* signals are the main thread's business */
    sigset_t block, old;
    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(&c->thread, NULL, writer, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        errno = rc;
        snprintf(msg, len, "cannot start the checkpoint writer: %s", strerror(errno));
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return NULL;
    }
    return c;
}

void ckpt_record(ckpt *c, const json_t *rec)
{
    size_t n;
    char *line = jsontext_dumps(rec, &n);
    if (!line)
        return; /* out of memory: this record is lost, which costs only re-running */
    pthread_mutex_lock(&c->mu);
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 65536;
        while (cap < c->len + n + 1)
            cap *= 2;
        char *b = realloc(c->buf, cap);
        if (!b) {
            pthread_mutex_unlock(&c->mu);
            free(line);
            return;
        }
        c->buf = b;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, line, n);
    c->buf[c->len + n] = '\n';
    c->len += n + 1;
    pthread_mutex_unlock(&c->mu);
    free(line);
}

bool ckpt_close(ckpt *c, char *msg, size_t len)
{
    if (!c)
        return true;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    bool ok = !c->failed;
    if (!ok)
        snprintf(msg, len, "%s", c->err);
    free(c->buf);
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
    if (n < 0)
        return errno == ENOENT ? true : (snprintf(msg, len, "cannot read %s: %s", dir,
                                                  strerror(errno)),
                                         false);
    bool ok = true;
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
            if (strcmp(k, "done") == 0 && json_is_true(json_object_get(rec, "caught"))) {
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
