/* Killing what a dead etlrun attempt left running: processes whose environment carries
 * the attempt's ETLRUN_RUN_ID (states/task.c gives it to every exec program; children
 * inherit it). Runs once per run start, on the main thread, and finds nothing unless a
 * run was killed: clarity over speed.
 *
 * Races. A pid read from /proc may die and be reused before it is signalled: a pidfd,
 * opened before the environment is read, pins the process that is checked and then
 * killed. A group is killed only while its leader -- whose environment matched -- is
 * alive, so the group id cannot have been reused. A shell being killed may fork in
 * between: the scan repeats until it finds nothing. */
#include "orphans.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 50           /* scans at most; ~0.5 s with the sleeps */
#define ROUND_SLEEP_MS 10

typedef struct match {
    pid_t pid, pgid;
    int pidfd;              /* pins the process; -1 when the kernel has no pidfds */
    char comm[64];
} match;

typedef struct scan {
    char **want_ids;        /* "ETLRUN_RUN_ID=<id>", n_ids of them */
    size_t n_ids;
    char *want_pipeline;    /* "ETLRUN_PIPELINE=<name>", or NULL: any pipeline */
    char *buf;              /* the file being looked at, NUL-terminated */
    size_t cap;
    match *found;           /* this round's matches, all found before any is killed */
    size_t n_found, cap_found;
    pid_t *hit;             /* processes signalled so far (each counted once) */
    size_t n_hit, cap_hit;
    char *msg;              /* "PID (COMMAND), ..." */
    size_t len, used;
    bool cut;
} scan;

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

/* Whole file into sc->buf (NUL added); bytes read, or -1 when unreadable. */
static ssize_t read_all(scan *sc, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    for (;;) {
        if (sc->cap - n < 2) {
            size_t ncap = sc->cap ? sc->cap * 2 : 65536;
            char *nb = realloc(sc->buf, ncap);
            if (!nb) {
                close(fd);
                return -1;
            }
            sc->buf = nb;
            sc->cap = ncap;
        }
        ssize_t r = read(fd, sc->buf + n, sc->cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    sc->buf[n] = '\0';
    return (ssize_t)n;
}

/* Does the environment in sc->buf (n bytes of NUL-terminated entries) hold one of
 * the wanted ids and, when asked, the pipeline? Whole entries only:
 * ETLRUN_RUN_ID=x matches neither ETLRUN_RUN_ID=xy nor ETLRUN_RUN_IDX=x. */
static bool env_matches(const scan *sc, size_t n)
{
    bool id = false, pipeline = sc->want_pipeline == NULL;
    for (size_t off = 0; off < n;) {
        const char *e = sc->buf + off;
        size_t el = strlen(e); /* the last entry may lack its NUL: read_all added one */
        for (size_t i = 0; i < sc->n_ids && !id; i++)
            id = strcmp(e, sc->want_ids[i]) == 0;
        if (!pipeline)
            pipeline = strcmp(e, sc->want_pipeline) == 0;
        off += el + 1;
    }
    return id && pipeline;
}

/* State, process group and command from /proc/PID/stat; false when it is gone. */
static bool read_stat(scan *sc, pid_t pid, char *out_state, pid_t *out_pgid, char *comm,
                      size_t comm_len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    ssize_t n = read_all(sc, path);
    if (n <= 0)
        return false;
    /* "PID (COMM) S PPID PGRP ...": COMM may hold ") ", the last ')' ends it */
    char *open = strchr(sc->buf, '('), *close_p = strrchr(sc->buf, ')');
    int ppid, pgid;
    if (!open || !close_p || close_p < open ||
        sscanf(close_p + 1, " %c %d %d", out_state, &ppid, &pgid) != 3)
        return false;
    snprintf(comm, comm_len, "%.*s", (int)(close_p - open - 1), open + 1);
    *out_pgid = (pid_t)pgid;
    return true;
}

static bool already_hit(const scan *sc, pid_t pid)
{
    for (size_t i = 0; i < sc->n_hit; i++)
        if (sc->hit[i] == pid)
            return true;
    return false;
}

static void note_hit(scan *sc, pid_t pid, const char *comm)
{
    if (sc->n_hit == sc->cap_hit) {
        size_t ncap = sc->cap_hit ? sc->cap_hit * 2 : 16;
        pid_t *nh = realloc(sc->hit, ncap * sizeof *nh);
        if (!nh)
            return; /* it was signalled all the same; only the count misses it */
        sc->hit = nh;
        sc->cap_hit = ncap;
    }
    sc->hit[sc->n_hit++] = pid;
    if (!sc->msg || sc->len == 0 || sc->cut)
        return;
    char item[96];
    int il = snprintf(item, sizeof item, "%s%d (%s)", sc->used ? ", " : "", (int)pid, comm);
    if (il > 0 && sc->used + (size_t)il + 4 <= sc->len) { /* room left for "..." */
        memcpy(sc->msg + sc->used, item, (size_t)il + 1);
        sc->used += (size_t)il;
    } else {
        sc->cut = true;
        snprintf(sc->msg + sc->used, sc->len - sc->used, "...");
    }
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    return -1;
#endif
}

/* Signal one process: through its pidfd when there is one (it cannot be another
 * process by now), else by pid. */
static int send_kill(int pidfd, pid_t pid, int sig)
{
#ifdef SYS_pidfd_send_signal
    if (pidfd >= 0)
        return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#else
    (void)pidfd;
#endif
    return kill(pid, sig);
}

/* Note pid in this round's matches when its environment matches (not ourselves). */
static void collect(scan *sc, pid_t pid, pid_t self)
{
    char path[64];
    if (pid == self)
        return;
    match m = {.pid = pid, .pidfd = pidfd_open_(pid)}; /* before reading: see the top */
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    ssize_t n = read_all(sc, path); /* someone else's process: EACCES, skipped */
    char state;
    if (n <= 0 || !env_matches(sc, (size_t)n) ||
        !read_stat(sc, pid, &state, &m.pgid, m.comm, sizeof m.comm) || state == 'Z' ||
        state == 'X')
        goto skip;
    if (sc->n_found == sc->cap_found) {
        size_t ncap = sc->cap_found ? sc->cap_found * 2 : 16;
        match *nf = realloc(sc->found, ncap * sizeof *nf);
        if (!nf)
            goto skip;
        sc->found = nf;
        sc->cap_found = ncap;
    }
    sc->found[sc->n_found++] = m;
    return;
skip:
    if (m.pidfd >= 0)
        close(m.pidfd);
}

/* Kill this round's matches; how many were killed (or died meanwhile: ESRCH). */
static size_t kill_found(scan *sc, pid_t own_pgid)
{
    size_t killed = 0;
    for (size_t i = 0; i < sc->n_found; i++) {
        match *m = &sc->found[i];
        /* the leader matched: the group is the program's, even members that cleared
         * their environment. Ours is spared (this etlrun started by a leftover?): its
         * matching members are killed one by one. */
        if (m->pgid == m->pid && m->pgid != own_pgid && send_kill(m->pidfd, m->pid, 0) == 0)
            kill(-m->pgid, SIGKILL);
        /* ESRCH: a group kill above took it down already (or it exited); EPERM: not
         * ours to kill after all */
        if (send_kill(m->pidfd, m->pid, SIGKILL) == 0 || errno == ESRCH) {
            killed++;
            if (!already_hit(sc, m->pid))
                note_hit(sc, m->pid, m->comm);
        }
        if (m->pidfd >= 0)
            close(m->pidfd);
    }
    sc->n_found = 0;
    return killed;
}

int orphans_kill(const char *pipeline, const char *const *run_ids, size_t n, char *msg,
                 size_t len)
{
    scan sc = {.msg = msg, .len = len};
    int rc = -1;
    if (msg && len)
        msg[0] = '\0';
    if (n == 0)
        return 0;
    sc.want_ids = calloc(n, sizeof *sc.want_ids);
    if (!sc.want_ids)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        if (!(sc.want_ids[sc.n_ids++] = concat("ETLRUN_RUN_ID=", run_ids[i])))
            goto nomem;
    if (pipeline && !(sc.want_pipeline = concat("ETLRUN_PIPELINE=", pipeline)))
        goto nomem;

    pid_t self = getpid(), own_pgid = getpgrp();
    for (int round = 0; round < ROUNDS; round++) {
        DIR *d = opendir("/proc");
        if (!d) {
            if (round == 0) {
                if (msg && len)
                    snprintf(msg, len, "cannot read /proc: %s", strerror(errno));
                goto out;
            }
            break;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            char *end;
            long pid = strtol(de->d_name, &end, 10);
            if (de->d_name[0] < '1' || de->d_name[0] > '9' || *end || pid <= 0)
                continue;
            collect(&sc, (pid_t)pid, self);
        }
        closedir(d);
        /* all found first, then all killed: a match is counted even when a group kill
         * of an earlier one took it down before its turn */
        if (kill_found(&sc, own_pgid) == 0)
            break;
        struct timespec ts = {0, ROUND_SLEEP_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    rc = (int)sc.n_hit;
    goto out;
nomem:
    if (msg && len)
        snprintf(msg, len, "out of memory");
out:
    for (size_t i = 0; i < sc.n_ids; i++)
        free(sc.want_ids[i]);
    free(sc.want_ids);
    free(sc.want_pipeline);
    free(sc.buf);
    free(sc.hit);
    free(sc.found);
    return rc;
}
