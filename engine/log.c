/* Operator logging: one line per message on stderr (and the --log-file), text or JSON
 * lines, each carrying time, level, run id and, where known, state, key, connection.
 *
 * DESIGN: a line is built in a stack buffer and written with one write(2), so lines
 * from worker threads never interleave (atomic on pipes up to PIPE_BUF; longer lines
 * are truncated at LINE_MAX_BYTES). The configuration is set on the main thread before
 * any worker starts and only read afterwards, so it needs no lock. On a terminal every
 * line starts with "\r" + erase-line: it wipes the live progress line (report.c), which
 * is redrawn on the next event. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "timestamp.h"

#define LINE_MAX_BYTES 8192
#define MSG_MAX_BYTES 4096

static struct {
    log_format format;
    bool quiet, verbose;
    bool tty;          /* stderr is a terminal */
    bool color;        /* tty and NO_COLOR unset or empty */
    int file_fd;       /* --log-file, or -1 */
    char run_id[128];
} cfg = {.file_fd = -1};

static pthread_once_t defaults_once = PTHREAD_ONCE_INIT;

static void detect_terminal(void)
{
    cfg.tty = isatty(STDERR_FILENO) == 1;
    const char *nc = getenv("NO_COLOR"); /* no-color.org: any non-empty value */
    cfg.color = cfg.tty && !(nc && *nc);
}

bool log_open(const log_config *c, char *errbuf, size_t len)
{
    pthread_once(&defaults_once, detect_terminal);
    detect_terminal(); /* again: the environment or fd 2 may have changed since */
    int fd = -1;
    if (c->file) {
        fd = open(c->file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(errbuf, len, "cannot open the log file %s: %s", c->file, strerror(errno));
            return false;
        }
    }
    if (cfg.file_fd >= 0)
        close(cfg.file_fd);
    cfg.file_fd = fd;
    cfg.format = c->format;
    cfg.quiet = c->quiet;
    cfg.verbose = c->verbose;
    return true;
}

void log_close(void)
{
    if (cfg.file_fd >= 0)
        close(cfg.file_fd);
    cfg.file_fd = -1;
    cfg.format = LOG_TEXT;
    cfg.quiet = cfg.verbose = false;
    cfg.run_id[0] = '\0';
}

void log_set_run_id(const char *run_id)
{
    snprintf(cfg.run_id, sizeof cfg.run_id, "%s", run_id ? run_id : "");
}

bool log_enabled(etl_log_level level)
{
    if (cfg.quiet)
        return level == ETL_LOG_ERROR;
    return level <= (cfg.verbose ? ETL_LOG_DEBUG : ETL_LOG_INFO);
}

/* ---------- a bounded line buffer ---------- */

typedef struct line {
    char buf[LINE_MAX_BYTES];
    size_t n;
    size_t cap;     /* bytes usable for content: room is kept for the line's ending */
    bool full;
} line;

static void put(line *l, const char *s, size_t n)
{
    if (l->full)
        return;
    if (n > l->cap - l->n) {
        n = l->cap - l->n;
        l->full = true;
    }
    memcpy(l->buf + l->n, s, n);
    l->n += n;
}

static void puts_(line *l, const char *s) { put(l, s, strlen(s)); }

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not valid. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        n = 2, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        n = 3, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
        n = 4, min = 0x10000;
    else
        return 0;
    if (n > left)
        return 0;
    unsigned cp = c & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* A JSON string's contents: invalid UTF-8 becomes U+FFFD, so the line stays JSON. */
static void put_json_str(line *l, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left && !l->full) {
        unsigned c = *p;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(l, esc, 2);
        } else if (c == '\n') {
            put(l, "\\n", 2);
        } else if (c == '\t') {
            put(l, "\\t", 2);
        } else if (c < 0x20 || c == 0x7F) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(l, esc, 6);
        } else {
            size_t n = utf8_len(p, left);
            if (n == 0) {
                put(l, "\xEF\xBF\xBD", 3);
                n = 1;
            } else if (l->cap - l->n < n) {
                l->full = true; /* never cut a character in two */
                break;
            } else {
                put(l, (const char *)p, n);
            }
            p += n;
            left -= n;
            continue;
        }
        p++;
        left--;
    }
}

/* Text: one physical line whatever the message holds: newlines become "\n", other
 * control characters a space (a stray ESC could rewrite the operator's terminal). */
static void put_text(line *l, const char *s)
{
    for (const char *p = s; *p && !l->full; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n')
            put(l, "\\n", 2);
        else if (c == '\r')
            continue;
        else if (c < 0x20 || c == 0x7F)
            put(l, " ", 1);
        else
            put(l, p, 1);
    }
}

/* A field value in text: bare when it has no space, quote or '=', else quoted. */
static void put_text_field(line *l, const char *name, const char *v)
{
    puts_(l, " ");
    puts_(l, name);
    puts_(l, "=");
    if (!v[strcspn(v, " \"=\t")] ) {
        put_text(l, v);
        return;
    }
    puts_(l, "\"");
    for (const char *p = v; *p && !l->full; p++) {
        if (*p == '"' || *p == '\\')
            put(l, "\\", 1);
        char one[2] = {*p, 0};
        put_text(l, one);
    }
    puts_(l, "\"");
}

static const char *const text_names[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};
static const char *const json_names[] = {"error", "warn", "info", "debug"};
static const char *const colors[] = {"\033[1;31m", "\033[33m", "\033[32m", "\033[2m"};

static bool present(const char *s) { return s && *s; }

static void format_line(line *l, bool tty, bool color, int lv, const char *ts,
                        const char *state, const char *key, const char *conn, const char *msg)
{
    l->n = 0;
    l->full = false;
    l->cap = sizeof l->buf - 8; /* room for "...", "\"}" and "\n" */
    if (tty)
        puts_(l, "\r\033[K");
    if (cfg.format == LOG_JSON) {
        puts_(l, "{\"time\":\"");
        puts_(l, ts);
        puts_(l, "\",\"level\":\"");
        puts_(l, json_names[lv]);
        puts_(l, "\"");
        const char *names[] = {"run_id", "state", "key", "connection"};
        const char *vals[] = {cfg.run_id, state, key, conn};
        for (int i = 0; i < 4; i++) {
            if (!present(vals[i]))
                continue;
            puts_(l, ",\"");
            puts_(l, names[i]);
            puts_(l, "\":\"");
            put_json_str(l, vals[i]);
            puts_(l, "\"");
        }
        puts_(l, ",\"msg\":\"");
        put_json_str(l, msg);
        if (l->full)
            memcpy(l->buf + l->n, "...", 3), l->n += 3;
        memcpy(l->buf + l->n, "\"}\n", 3);
        l->n += 3;
        return;
    }
    puts_(l, ts);
    puts_(l, " ");
    if (color)
        puts_(l, colors[lv]);
    puts_(l, text_names[lv]);
    if (color)
        puts_(l, "\033[0m");
    if (present(cfg.run_id))
        put_text_field(l, "run", cfg.run_id);
    if (present(state))
        put_text_field(l, "state", state);
    if (present(key))
        put_text_field(l, "key", key);
    if (present(conn))
        put_text_field(l, "conn", conn);
    /* "INFO  run=R: msg", but "INFO  msg" when there are no fields */
    puts_(l, present(cfg.run_id) || present(state) || present(key) || present(conn) ? ": " : " ");
    put_text(l, msg);
    if (l->full)
        memcpy(l->buf + l->n, "...", 3), l->n += 3;
    l->buf[l->n++] = '\n';
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere left to complain to */
        p += w;
        n -= (size_t)w;
    }
}

void log_msg(etl_log_level level, const char *state, const char *key, const char *conn,
             const char *fmt, ...)
{
    pthread_once(&defaults_once, detect_terminal);
    if (!log_enabled(level))
        return;
    int lv = (int)level < 0 ? 0 : level > ETL_LOG_DEBUG ? ETL_LOG_DEBUG : (int)level;
    char msg[MSG_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (need >= (int)sizeof msg) {
        size_t e = sizeof msg - 4; /* cut on a character boundary, and say so */
        while (e > 0 && ((unsigned char)msg[e] & 0xC0) == 0x80)
            e--;
        memcpy(msg + e, "...", 4);
    }
    char ts[40];
    ts_format(ts_now(), ts, sizeof ts);

    /* static storage would race between threads; 8 KB of stack is fine on a worker */
    line l;
    format_line(&l, cfg.tty, cfg.color, lv, ts, state, key, conn, msg);
    write_all(STDERR_FILENO, l.buf, l.n);
    if (cfg.file_fd >= 0) {
        if (cfg.tty || cfg.color)
            format_line(&l, false, false, lv, ts, state, key, conn, msg);
        write_all(cfg.file_fd, l.buf, l.n);
    }
}
