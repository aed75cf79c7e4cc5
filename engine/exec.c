/* The `exec` Task resource: spawn a program in its own process group, feed it the
 * task input on stdin, collect stdout (the result) and a tail of stderr (for causes),
 * and turn its exit status into a result or an ASL error. Called by Task states.
 *
 * DESIGN. Everything lives on the calling worker's stack: no globals, no locks, so
 * any number of workers may run programs at once. The child is started with vfork
 * (no copy of a multi-threaded, sanitized address space; posix_spawn cannot set
 * PR_SET_PDEATHSIG) in its own process group, with an empty signal mask, default
 * dispositions for the signals the CLI may handle or ignore, only fds 0-2 open, and
 * SIGKILL as its parent-death signal: a kill -9 of etlrun takes the program along
 * (what the program started itself is engine/orphans.c's business, at the next run).
 * One poll() loop then writes stdin, reads stdout and stderr, and wakes at least every
 * 50 ms to look at the cancel word and at the child (a pidfd, when the kernel has
 * them, wakes it as soon as the child exits). The child's group is killed while the
 * child is still an unreaped zombie, so its pid -- the group id -- cannot have been
 * reused by then; only then is the child reaped. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Live process groups, for exec_kill_all() from a signal handler: a slot holds a
 * child's pid (= its group id) from the spawn until just before the child is reaped,
 * while the zombie still reserves the id, so the handler never signals a reused id. */
#define LIVE_MAX 4096
static _Atomic pid_t live_groups[LIVE_MAX];

static void live_add(pid_t pid)
{
    for (int i = 0; i < LIVE_MAX; i++) {
        pid_t expect = 0;
        if (atomic_compare_exchange_strong(&live_groups[i], &expect, pid))
            return;
    }
    /* more than LIVE_MAX programs at once: the last resort below just misses this one */
}

static void live_remove(pid_t pid)
{
    for (int i = 0; i < LIVE_MAX; i++) {
        pid_t expect = pid;
        if (atomic_compare_exchange_strong(&live_groups[i], &expect, 0))
            return;
    }
}

void exec_kill_all(void)
{
    for (int i = 0; i < LIVE_MAX; i++) {
        pid_t pid = atomic_load(&live_groups[i]);
        if (pid > 0)
            kill(-pid, SIGKILL);
    }
}

#define DEFAULT_MAX_STDOUT ((size_t)64 << 20)
#define DEFAULT_GRACE_MS 2000
#define TICK_MS 50             /* longest sleep between two looks at *cancel */
#define ERR_RING 4096          /* bytes of stderr kept (the most recent ones) */
#define ERR_CAUSE_MAX 1024     /* bytes of stderr quoted in a cause */
#define WRITE_CHUNK (64 << 10) /* one pipe's worth; larger writes only return partial */

typedef struct run {
    const char *prog;       /* argv[0], for causes */
    pid_t pid;              /* child and process group id; 0 = not started */
    int pidfd;              /* readable when the child exits; -1 = unsupported */
    int in_fd, out_fd, err_fd; /* our ends of the pipes; -1 = closed */
    const char *in;
    size_t in_len, in_off;
    char *out;              /* stdout so far, malloc'd */
    size_t out_len, out_cap, out_max;
    char err_ring[ERR_RING];
    size_t err_total;       /* bytes of stderr ever read; ring index = total % ERR_RING */
    bool exited;            /* child terminated (a zombie until reaped) */
    bool group_killed;      /* SIGKILL sent to the group after the child exited */
    bool status_lost;       /* someone else reaped the child (SIGCHLD ignored?) */
    bool sigpipe_was_pending; /* a SIGPIPE not ours was pending on entry: leave it */
} run;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *errstr(int e, char *buf, size_t n)
{
    return strerror_r(e, buf, n); /* GNU variant: thread-safe, returns the text */
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Pipe ends must not be 0-2, or one dup2 file action could clobber another pipe's end
 * (possible when etlrun runs with a standard descriptor closed). */
static int lift_fd(int *fd)
{
    if (*fd > 2)
        return 0;
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        return -1;
    close(*fd);
    *fd = nfd;
    return 0;
}

static int make_pipe(int p[2])
{
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    if (lift_fd(&p[0]) < 0 || lift_fd(&p[1]) < 0) {
        int e = errno;
        close_fd(&p[0]);
        close_fd(&p[1]);
        errno = e;
        return -1;
    }
    return 0;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static bool transient_errno(int e)
{
    return e == EAGAIN || e == EMFILE || e == ENFILE || e == ENOMEM;
}

static etl_status fail_errno(etl_error *err, const char *prog, const char *what, int e)
{
    char eb[128];
    etl_status st = etl_fail(err, ETL_EIO, "States.TaskFailed", "cannot run '%s': %s: %s",
                             prog, what, errstr(e, eb, sizeof eb));
    if (err)
        err->transient = transient_errno(e);
    return st;
}

/* ---- starting the child ---------------------------------------------------------
 * Between vfork() and execve() the child borrows our memory, our stack below the
 * caller's frame and the calling thread's TLS, while that thread waits. It may therefore
 * only make system calls, on data the parent prepared: no malloc, no locks, no libc
 * function that keeps state, and no sanitizer interceptor (under TSan, dup2 and
 * sigaction update the runtime's tables, _exit runs its exit hooks; under ASan, _exit
 * runs the leak check). So child_exec is built without sanitizers and goes through
 * syscall() alone. (TSan turns vfork into fork: the same code then runs in a copy,
 * which is why the outcome comes back through a pipe rather than through memory.) */

/* The kernel's struct sigaction for rt_sigaction: the handler first on x86_64, arm64
 * and riscv64 (riscv64 has no restorer: it reads our zero restorer as the mask, still
 * empty). MIPS orders it differently and is not supported. */
struct ksigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long long mask;
};
#define KSIGSET_SIZE 8 /* the kernel's sigset_t: 64 signals */

typedef struct child_plan {
    char *const *argv;
    char *const *envp;
    char *const *paths;          /* files to execve in turn (the PATH search), NULL-ended */
    const char *dir;             /* chdir here first, or NULL */
    int fd_in, fd_out, fd_err;   /* become 0, 1, 2; all > 2 */
    int fd_report;               /* O_CLOEXEC pipe: the errno of a failed step; > 2 */
    pid_t parent;                /* getpid() of etlrun */
    unsigned long long dfl_sigs; /* bit sig-1: reset to SIG_DFL even when ignored */
    long max_fd;                 /* bound of the close loop when close_range is missing */
} child_plan;

__attribute__((no_sanitize("address", "thread", "undefined"), noinline, noreturn))
static void child_exec(const child_plan *p)
{
    int e = 0;

    if (syscall(SYS_setpgid, 0, 0) < 0)
        goto fail;
    /* Dispositions: the listed signals (the CLI handles or ignores them) to SIG_DFL,
     * every other handled one too -- a handler must not run in this borrowed memory, and
     * all signals stay blocked (the parent blocked them) until just before execve. */
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        struct ksigaction old;
        old.handler = SIG_DFL;
        if (syscall(SYS_rt_sigaction, sig, NULL, &old, KSIGSET_SIZE) < 0)
            continue;
        if (!(p->dfl_sigs & (1ull << (sig - 1))) &&
            (old.handler == SIG_DFL || old.handler == SIG_IGN))
            continue;
        struct ksigaction dfl;
        dfl.handler = SIG_DFL;
        dfl.flags = 0;
        dfl.restorer = NULL;
        dfl.mask = 0;
        syscall(SYS_rt_sigaction, sig, &dfl, NULL, KSIGSET_SIZE);
    }
    /* dup3 clears FD_CLOEXEC on 0-2; every other descriptor, ours (all O_CLOEXEC) or
     * one another thread opened without it, is closed here, except the report pipe,
     * which execve closes. */
    if (syscall(SYS_dup3, p->fd_in, 0, 0) < 0 || syscall(SYS_dup3, p->fd_out, 1, 0) < 0 ||
        syscall(SYS_dup3, p->fd_err, 2, 0) < 0)
        goto fail;
#ifdef SYS_close_range
    if ((p->fd_report == 3 || syscall(SYS_close_range, 3, p->fd_report - 1, 0) == 0) &&
        syscall(SYS_close_range, p->fd_report + 1, ~0U, 0) == 0)
        goto closed;
#endif
    for (long fd = 3; fd < p->max_fd; fd++)
        if (fd != p->fd_report)
            syscall(SYS_close, fd);
#ifdef SYS_close_range
closed:
#endif
    if (p->dir && syscall(SYS_chdir, p->dir) < 0)
        goto fail;
    /* Die with etlrun. The signal comes when the *thread* that started us exits, not
     * the process: exec_run waits for this child, so that thread outlives it (and
     * worker pool threads live for the whole run anyway). etlrun may have died before
     * the prctl: then we were reparented and nothing would ever come. */
    if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        goto fail;
    if ((pid_t)syscall(SYS_getppid) != p->parent)
        syscall(SYS_exit_group, 127);
    unsigned long long empty = 0;
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, KSIGSET_SIZE) < 0)
        goto fail;

    /* execvp's rules (glibc's, without its /bin/sh retry, like posix_spawnp): go on
     * past a file that is not there or not executable; report EACCES if any was seen. */
    bool eacces = false;
    for (char *const *f = p->paths; *f; f++) {
        syscall(SYS_execve, *f, p->argv, p->envp);
        e = errno;
        if (e == EACCES)
            eacces = true;
        else if (e != ENOENT && e != ESTALE && e != ENOTDIR && e != ENODEV && e != ETIMEDOUT)
            goto report;
    }
    if (eacces)
        e = EACCES;
    goto report;
fail:
    e = errno;
report:
    if (e == 0)
        e = ENOENT; /* defensive: the parent must not take a failure for a start */
    syscall(SYS_write, p->fd_report, &e, sizeof e);
    syscall(SYS_exit_group, 127);
    __builtin_unreachable();
}

/* Apart from the parent's frame, so that the vfork's second return clobbers nothing
 * the parent keeps in registers. */
__attribute__((noinline)) static pid_t start_child(const child_plan *p)
{
    pid_t pid = vfork();
    if (pid == 0)
        child_exec(p);
    return pid;
}

/* The files execvp would try for prog, in order: prog itself when it holds a '/', else
 * each directory of PATH (an empty one is the working directory) joined with prog.
 * One malloc'd block, array then strings; NULL when out of memory. */
static char **search_list(const char *prog)
{
    const char *path = strchr(prog, '/') ? "" : getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin"; /* glibc's default, as posix_spawnp uses */
    size_t n_dirs = 1, plen = strlen(prog);
    for (const char *c = path; *c; c++)
        n_dirs += *c == ':';
    size_t size = (n_dirs + 1) * sizeof(char *) + strlen(path) + n_dirs * (plen + 2);
    char **list = malloc(size);
    if (!list)
        return NULL;
    char *s = (char *)(list + n_dirs + 1);
    size_t k = 0;
    for (const char *d = path;; d++) {
        size_t dl = strcspn(d, ":");
        list[k++] = s;
        if (dl > 0) {
            memcpy(s, d, dl);
            s[dl] = '/';
            s += dl + 1;
        }
        memcpy(s, prog, plen + 1);
        s += plen + 1;
        d += dl;
        if (!*d)
            break;
    }
    list[k] = NULL;
    return list;
}

/* environ without the entries whose names extra sets, then extra: a malloc'd array of
 * borrowed pointers (NULL when out of memory). Read while no other thread changes
 * the environment (main.c sets it before the run starts). */
static char **child_env(const char *const *extra)
{
    size_t n_env = 0, n_extra = 0;
    while (environ && environ[n_env])
        n_env++;
    while (extra[n_extra])
        n_extra++;
    char **envp = malloc((n_env + n_extra + 1) * sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        bool replaced = false;
        for (size_t j = 0; j < n_extra && !replaced; j++) {
            size_t nl = strcspn(extra[j], "=");
            replaced = strncmp(environ[i], extra[j], nl) == 0 && environ[i][nl] == '=';
        }
        if (!replaced)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++)
        envp[k++] = (char *)extra[j];
    envp[k] = NULL;
    return envp;
}

/* Start the child. On success r->pid and our pipe ends are set. */
static etl_status spawn_child(run *r, const exec_spec *spec, etl_error *err)
{
    int in_p[2] = {-1, -1}, out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, rep_p[2] = {-1, -1};
    char **paths = NULL, **envp = NULL;
    etl_status st = ETL_OK;
    char eb[128];

    if (make_pipe(in_p) < 0 || make_pipe(out_p) < 0 || make_pipe(err_p) < 0 ||
        make_pipe(rep_p) < 0) {
        st = fail_errno(err, r->prog, "pipe", errno);
        goto out;
    }
    if (!(paths = search_list(r->prog)) ||
        (spec->env_extra && !(envp = child_env(spec->env_extra)))) {
        st = fail_errno(err, r->prog, "preparing its start", ENOMEM);
        goto out;
    }
    child_plan plan = {.argv = (char *const *)spec->argv,
                       .envp = envp ? envp : environ,
                       .paths = paths,
                       .dir = spec->dir,
                       .fd_in = in_p[0],
                       .fd_out = out_p[1],
                       .fd_err = err_p[1],
                       .fd_report = rep_p[1],
                       .parent = getpid(),
                       .max_fd = sysconf(_SC_OPEN_MAX)};
    if (plan.max_fd < 0 || plan.max_fd > 65536)
        plan.max_fd = 65536;
    /* The program must start as if from a plain shell: our own thread has SIGPIPE
     * blocked (see exec_run) and the CLI may block or ignore more. Ignored dispositions
     * survive exec, so these go back to SIG_DFL explicitly. */
    const int dfl[] = {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP, SIGQUIT,
                       SIGXFSZ /* etlrun ignores it (to get EFBIG); programs must not */};
    for (size_t i = 0; i < sizeof dfl / sizeof dfl[0]; i++)
        plan.dfl_sigs |= 1ull << (dfl[i] - 1);

    /* Every signal blocked across the vfork: no handler of ours may run in the child. */
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t pid = start_child(&plan);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close_fd(&rep_p[1]);

    int e = pid < 0 ? fork_errno : 0;
    if (pid > 0) {
        /* EOF when execve succeeded (the pipe is O_CLOEXEC), else the child's errno */
        ssize_t n;
        while ((n = read(rep_p[0], &e, sizeof e)) < 0 && errno == EINTR)
            ;
        if (n != (ssize_t)sizeof e)
            e = 0;
        if (e != 0)
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
    }
    if (e != 0) {
        if (spec->dir)
            st = etl_fail(err, ETL_EIO, "States.TaskFailed", "cannot run '%s' in '%s': %s",
                          r->prog, spec->dir, errstr(e, eb, sizeof eb));
        else
            st = etl_fail(err, ETL_EIO, "States.TaskFailed", "cannot run '%s': %s", r->prog,
                          errstr(e, eb, sizeof eb));
        if (err)
            err->transient = transient_errno(e);
        goto out;
    }
    r->pid = pid;
    live_add(pid);
#ifdef SYS_pidfd_open
    r->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (r->pidfd >= 0)
        fcntl(r->pidfd, F_SETFD, FD_CLOEXEC); /* pidfd_open sets it; be explicit */
#endif
    r->in_fd = in_p[1];
    in_p[1] = -1;
    r->out_fd = out_p[0];
    out_p[0] = -1;
    r->err_fd = err_p[0];
    err_p[0] = -1;
    set_nonblock(r->in_fd);
    set_nonblock(r->out_fd);
    set_nonblock(r->err_fd);

out:
    free(paths);
    free(envp);
    close_fd(&in_p[0]);
    close_fd(&in_p[1]);
    close_fd(&out_p[0]);
    close_fd(&out_p[1]);
    close_fd(&err_p[0]);
    close_fd(&err_p[1]);
    close_fd(&rep_p[0]);
    close_fd(&rep_p[1]);
    return st;
}

/* Has the child terminated? Leaves it a zombie (WNOWAIT) so the group id stays ours. */
static void check_exited(run *r)
{
    if (r->exited)
        return;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)r->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0) {
        if (si.si_pid == r->pid)
            r->exited = true;
    } else if (errno == ECHILD) {
        r->exited = true;
        r->status_lost = true;
    }
}

/* The program is gone: whatever it left in its group goes too. */
static void kill_group_after_exit(run *r)
{
    if (r->group_killed)
        return;
    r->group_killed = true;
    kill(-r->pid, SIGKILL); /* ESRCH: the group is already empty */
    close_fd(&r->in_fd);
    close_fd(&r->pidfd);
}

/* SIGPIPE: write() on a pipe whose reader is gone raises SIGPIPE on the writing
 * thread, and its default action kills etlrun. Ignoring it process-wide is not ours to
 * do (the CLI owns dispositions), and MSG_NOSIGNAL exists only for sockets. So
 * exec_run blocks SIGPIPE in its own thread for the whole call (a thread-directed
 * signal stays pending while blocked), and after a write fails with EPIPE it removes
 * the one pending SIGPIPE with a zero-timeout sigtimedwait -- unless a SIGPIPE was
 * already pending on entry, which is someone else's and is left alone. Standard
 * signals do not queue, so one EPIPE leaves at most one pending SIGPIPE; stdin is
 * closed after it, so there is no second. The old mask is restored on return. */
static void consume_sigpipe(run *r)
{
    if (r->sigpipe_was_pending)
        return;
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
        ;
}

static void write_stdin(run *r)
{
    while (r->in_off < r->in_len) {
        size_t n = r->in_len - r->in_off;
        if (n > WRITE_CHUNK)
            n = WRITE_CHUNK;
        ssize_t w = write(r->in_fd, r->in + r->in_off, n);
        if (w > 0) {
            r->in_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return;
        /* EPIPE: the program does not read (all of) its input. That is its right. */
        if (w < 0 && errno == EPIPE)
            consume_sigpipe(r);
        break;
    }
    close_fd(&r->in_fd);
}

/* Read what stdout has now. Returns false when the output exceeds the maximum or
 * memory runs out (*out_nomem tells which). */
static bool read_stdout(run *r, bool *out_nomem)
{
    for (;;) {
        if (r->out_len == r->out_cap) {
            if (r->out_cap > r->out_max) /* holds out_max + 1 bytes: too many */
                return false;
            size_t limit = r->out_max < SIZE_MAX ? r->out_max + 1 : SIZE_MAX;
            size_t ncap = r->out_cap ? r->out_cap * 2 : 16384;
            if (ncap > limit || ncap < r->out_cap)
                ncap = limit;
            char *nb = realloc(r->out, ncap);
            if (!nb) {
                *out_nomem = true;
                return false;
            }
            r->out = nb;
            r->out_cap = ncap;
        }
        ssize_t n = read(r->out_fd, r->out + r->out_len, r->out_cap - r->out_len);
        if (n > 0) {
            r->out_len += (size_t)n;
            if (r->out_len > r->out_max)
                return false;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true;
        close_fd(&r->out_fd); /* EOF, or an error that will not go away */
        return true;
    }
}

static void read_stderr(run *r)
{
    char buf[ERR_RING];
    for (;;) {
        ssize_t n = read(r->err_fd, buf, sizeof buf);
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                r->err_ring[(r->err_total + (size_t)i) % ERR_RING] = buf[i];
            r->err_total += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        close_fd(&r->err_fd);
        return;
    }
}

/* Kill the group and reap the child, for the paths that give up on it. */
static void abort_child(run *r)
{
    if (r->pid <= 0)
        return;
    if (!r->group_killed)
        kill(-r->pid, SIGKILL); /* before the reap: the group id is still ours */
    r->group_killed = true;
    live_remove(r->pid);
    if (!r->status_lost)
        while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    r->pid = 0;
}

typedef enum { PUMP_DONE, PUMP_CANCELLED, PUMP_OVERFLOW, PUMP_NOMEM, PUMP_POLLERR } pump_end;

/* The poll loop. Returns when the child has exited (still unreaped) and its output is
 * drained, or the run was cancelled or overflowed and the child has exited. */
static pump_end pump(run *r, atomic_int *cancel, int grace_ms, int *out_errno)
{
    bool cancelled = false, killed = false;
    pump_end end = PUMP_DONE;
    int64_t term_at = 0;

    if (r->in_len == 0)
        close_fd(&r->in_fd);
    for (;;) {
        check_exited(r);
        if (r->exited)
            kill_group_after_exit(r);
        if (!cancelled && end == PUMP_DONE && atomic_load(cancel) != EXEC_RUN) {
            cancelled = true;
            end = PUMP_CANCELLED;
            if (!r->exited)
                kill(-r->pid, SIGTERM);
            term_at = now_ms();
            close_fd(&r->in_fd);
        }
        if (end != PUMP_DONE && r->exited)
            return end;
        if (cancelled && !killed && now_ms() - term_at >= grace_ms) {
            kill(-r->pid, SIGKILL);
            killed = true;
        }
        if (r->exited && r->out_fd < 0 && r->err_fd < 0)
            return end;

        struct pollfd pfd[4];
        int n = 0, i_in = -1, i_out = -1, i_err = -1;
        if (r->in_fd >= 0) {
            i_in = n;
            pfd[n++] = (struct pollfd){.fd = r->in_fd, .events = POLLOUT};
        }
        if (r->out_fd >= 0) {
            i_out = n;
            pfd[n++] = (struct pollfd){.fd = r->out_fd, .events = POLLIN};
        }
        if (r->err_fd >= 0) {
            i_err = n;
            pfd[n++] = (struct pollfd){.fd = r->err_fd, .events = POLLIN};
        }
        if (r->pidfd >= 0)
            pfd[n++] = (struct pollfd){.fd = r->pidfd, .events = POLLIN};
        int timeout = TICK_MS;
        if (cancelled && !killed) {
            int64_t left = term_at + grace_ms - now_ms();
            timeout = left < 0 ? 0 : left < TICK_MS ? (int)left : TICK_MS;
        }

        int rc = poll(pfd, (nfds_t)n, timeout);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            *out_errno = errno;
            return PUMP_POLLERR;
        }
        if (rc == 0 && r->group_killed) {
            /* The child is dead and its group killed, yet a pipe is still open and
             * quiet: a process that left the group holds it. What it wrote is read. */
            return end;
        }
        if (i_in >= 0 && (pfd[i_in].revents & (POLLOUT | POLLERR | POLLHUP)))
            write_stdin(r);
        if (i_out >= 0 && (pfd[i_out].revents & (POLLIN | POLLERR | POLLHUP))) {
            bool nomem = false;
            if (!read_stdout(r, &nomem)) {
                if (end == PUMP_DONE)
                    end = nomem ? PUMP_NOMEM : PUMP_OVERFLOW;
                if (!r->exited)
                    kill(-r->pid, SIGKILL);
                killed = true;
                close_fd(&r->in_fd);
                close_fd(&r->out_fd);
                close_fd(&r->err_fd);
            }
        }
        if (i_err >= 0 && r->err_fd >= 0 && (pfd[i_err].revents & (POLLIN | POLLERR | POLLHUP)))
            read_stderr(r);
    }
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* The last lines of stderr as one line of valid UTF-8, at most ~ERR_CAUSE_MAX bytes:
 * newlines become " | ", other control bytes spaces, invalid bytes '?'. */
static const char *stderr_tail(const run *r, char *dst, size_t dst_size)
{
    unsigned char lin[ERR_RING];
    size_t n = r->err_total < ERR_RING ? r->err_total : ERR_RING;
    size_t start = r->err_total - n;
    for (size_t i = 0; i < n; i++)
        lin[i] = (unsigned char)r->err_ring[(start + i) % ERR_RING];
    while (n > 0 && (lin[n - 1] == '\n' || lin[n - 1] == '\r' || lin[n - 1] == ' ' ||
                     lin[n - 1] == '\t'))
        n--;

    /* Sanitize all of it (<= 3 bytes out per byte in), then cut from the end. */
    char san[ERR_RING * 3 + 1];
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = lin[i];
        if (c == '\n') {
            if (m > 0 && !(m >= 3 && memcmp(san + m - 3, " | ", 3) == 0)) {
                memcpy(san + m, " | ", 3);
                m += 3;
            }
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            if (!(c == '\r' && i + 1 < n && lin[i + 1] == '\n'))
                san[m++] = ' ';
            i++;
        } else {
            size_t l = utf8_len(lin + i, n - i);
            if (l == 0) {
                san[m++] = '?';
                i++;
            } else {
                memcpy(san + m, lin + i, l);
                m += l;
                i += l;
            }
        }
    }
    size_t from = 0;
    bool cut = false;
    if (m > ERR_CAUSE_MAX) {
        cut = true;
        from = m - ERR_CAUSE_MAX;
        /* Start on a line when one begins in the window, else on a character. */
        const char *sep = memmem(san + from, m - from, " | ", 3);
        if (sep && (size_t)(sep + 3 - san) < m)
            from = (size_t)(sep + 3 - san);
        else
            while (from < m && ((unsigned char)san[from] & 0xC0) == 0x80)
                from++;
    }
    snprintf(dst, dst_size, "%s%.*s", cut ? "..." : "", (int)(m - from), san + from);
    return dst;
}

/* "exited with status 3" / "was killed by signal 9 (SIGKILL)" */
static void describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status)) {
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(status)); /* thread-safe, unlike strsignal */
        snprintf(buf, n, "was killed by signal %d (SIG%s)%s", WTERMSIG(status),
                 abbrev ? abbrev : "?", WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        snprintf(buf, n, "ended with wait status %d", status);
    }
}

static bool allowed_states_name(const char *name)
{
    return strncmp(name, "States.", 7) != 0 || strcmp(name, "States.TaskFailed") == 0 ||
           strcmp(name, "States.Timeout") == 0;
}

static etl_status success_result(const run *r, json_t **out_result, etl_error *err)
{
    if (r->out_len == 0) {
        *out_result = json_null();
        return ETL_OK;
    }
    json_error_t jerr;
    json_t *v = json_loadb(r->out, r->out_len, JSON_DECODE_ANY, &jerr);
    if (v) {
        *out_result = v;
        return ETL_OK;
    }
    size_t n = r->out_len;
    if (n > 0 && r->out[n - 1] == '\n') {
        n--;
        if (n > 0 && r->out[n - 1] == '\r')
            n--;
    }
    v = json_stringn(r->out, n);
    if (!v)
        return etl_fail(err, ETL_ETASK, "States.TaskFailed",
                        "'%s' wrote output that is neither JSON nor UTF-8 text (%zu bytes)",
                        r->prog, r->out_len);
    *out_result = v;
    return ETL_OK;
}

static etl_status failure_result(const run *r, int status, etl_error *err)
{
    char how[96], tail[ERR_CAUSE_MAX + 16], dflt[ERR_CAUSE_MAX + 256];
    describe_status(status, how, sizeof how);
    stderr_tail(r, tail, sizeof tail);
    if (tail[0])
        snprintf(dflt, sizeof dflt, "'%s' %s: %s", r->prog, how, tail);
    else
        snprintf(dflt, sizeof dflt, "'%s' %s (stderr was empty)", r->prog, how);

    etl_status st;
    json_t *doc = r->out_len ? json_loadb(r->out, r->out_len, JSON_DECODE_ANY, NULL) : NULL;
    const char *name = json_string_value(json_object_get(doc, "Error"));
    const char *cause = json_string_value(json_object_get(doc, "Cause"));
    if (!name || !name[0]) {
        st = etl_fail(err, ETL_ETASK, "States.TaskFailed", "%s", dflt);
    } else if (!allowed_states_name(name)) {
        st = etl_fail(err, ETL_ETASK, "States.TaskFailed",
                      "'%s' reported the reserved error name '%s': %s", r->prog, name,
                      cause ? cause : dflt);
    } else if (strlen(name) >= ETL_ERROR_NAME_MAX) {
        st = etl_fail(err, ETL_ETASK, "States.TaskFailed",
                      "'%s' reported an error name longer than %d bytes '%s': %s", r->prog,
                      ETL_ERROR_NAME_MAX - 1, name, cause ? cause : dflt);
    } else {
        st = etl_fail(err, ETL_ETASK, name, "%s", cause ? cause : dflt);
    }
    json_decref(doc);
    return st;
}

etl_status exec_run(const exec_spec *spec, const char *input, size_t len,
                    atomic_int *cancel, json_t **out_result, etl_error *err)
{
    run r = {.pidfd = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
    etl_status st = ETL_OK;
    bool mask_set = false;
    sigset_t pipe_set, old_mask;

    atomic_int never = EXEC_RUN;
    if (!cancel)
        cancel = &never;
    *out_result = NULL;
    if (!spec || !spec->argv || !spec->argv[0] || !spec->argv[0][0])
        return etl_fail(err, ETL_EINVAL, "States.TaskFailed", "exec: no program given");
    r.prog = spec->argv[0];
    r.in = input ? input : "";
    r.in_len = input ? len : 0;
    r.out_max = spec->max_stdout ? spec->max_stdout : DEFAULT_MAX_STDOUT;
    int grace_ms = spec->grace_ms > 0 ? spec->grace_ms : DEFAULT_GRACE_MS;

    if (atomic_load(cancel) != EXEC_RUN)
        return etl_fail(err, ETL_ECANCELLED, "States.Cancelled", "'%s' was cancelled",
                        r.prog);

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigset_t pending;
    if (sigpending(&pending) == 0)
        r.sigpipe_was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
    mask_set = true;

    st = spawn_child(&r, spec, err);
    if (st != ETL_OK)
        goto out;

    int perr = 0;
    pump_end end = pump(&r, cancel, grace_ms, &perr);
    if (end == PUMP_POLLERR) {
        st = fail_errno(err, r.prog, "poll", perr);
        goto out;
    }
    kill_group_after_exit(&r);
    live_remove(r.pid);
    int status = 0;
    if (!r.status_lost) {
        pid_t w;
        while ((w = waitpid(r.pid, &status, 0)) < 0 && errno == EINTR)
            ;
        if (w < 0)
            r.status_lost = true;
    }
    r.pid = 0;

    switch (end) {
    case PUMP_CANCELLED:
        st = etl_fail(err, ETL_ECANCELLED, "States.Cancelled", "'%s' was cancelled", r.prog);
        goto out;
    case PUMP_OVERFLOW:
        st = etl_fail(err, ETL_ETASK, "States.TaskFailed",
                      "'%s': output larger than %zu bytes (max_stdout)", r.prog, r.out_max);
        goto out;
    case PUMP_NOMEM:
        st = etl_fail(err, ETL_ENOMEM, "States.TaskFailed",
                      "'%s': out of memory reading its output (%zu bytes so far)", r.prog,
                      r.out_len);
        goto out;
    default:
        break;
    }
    if (r.status_lost) {
        st = etl_fail(err, ETL_EIO, "States.TaskFailed",
                      "the exit status of '%s' was lost (is SIGCHLD ignored?)", r.prog);
        goto out;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        st = success_result(&r, out_result, err);
    else
        st = failure_result(&r, status, err);

out:
    abort_child(&r);
    close_fd(&r.in_fd);
    close_fd(&r.out_fd);
    close_fd(&r.err_fd);
    close_fd(&r.pidfd);
    free(r.out);
    if (mask_set)
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    return st;
}
