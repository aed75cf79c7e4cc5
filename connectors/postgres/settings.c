/* postgres connection settings: the checks shared by validate time (check_settings,
 * reported at the field) and open (the first problem is an error), and the password
 * from password_env / password_file. A URL is only ever reported by its field name: a
 * refused one may hold a password. */
#include "pg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct report {
    const etl_host *h;
    etl_checker *chk;        /* validate time, else NULL */
    etl_error *err;          /* run time: the first problem */
    int problems;
} report;

static void problem(report *rp, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(report *rp, const char *field, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (rp->chk)
        rp->h->check_error(rp->chk, field, "%s", msg);
    else if (rp->problems == 0)
        rp->h->fail(rp->err, ETL_EINVAL, "Etl.ConnectionFailed", false,
                    "postgres connection settings: '%s': %s", field, msg);
    rp->problems++;
}

static const char *const string_fields[] = {
    "url", "host", "user", "database", "socket", "password_env", "password_file", "sslmode",
    "sslrootcert", "sslcert", "sslkey", "application_name", "init_sql", "ledger_table", NULL};
static const char *const sslmodes[] = {"disable", "allow", "prefer", "require",
                                       "verify-ca", "verify-full", NULL};

/* A URL's shape: postgresql://[user@]host[:port][/db], no password, no query. Only the
 * field name is reported, never the text: a refused URL may hold a password. */
static void check_url(report *rp, const char *url)
{
    const char *rest = NULL;
    if (strncmp(url, "postgresql://", 13) == 0)
        rest = url + 13;
    else if (strncmp(url, "postgres://", 11) == 0)
        rest = url + 11;
    if (!rest) {
        problem(rp, "url", "must start with postgresql:// (or postgres://), e.g. "
                "postgresql://loader@wh.internal:5432/warehouse");
        return;
    }
    size_t auth_len = strcspn(rest, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < auth_len; i++)
        if (rest[i] == '@')
            at = rest + i;
    if (at && memchr(rest, ':', (size_t)(at - rest))) {
        problem(rp, "url", "a password in the url is refused (it would end up in logs and "
                "history); remove it and use password_env, password_file or ~/.pgpass");
        return;
    }
    if (strpbrk(rest, "?#"))
        problem(rp, "url", "query parameters are not accepted in the url; use the separate "
                "settings (sslmode, connect_timeout, application_name, ...)");
}

/* Check settings; with s, also fill it (run time). */
static void read_settings(report *rp, const etl_json *obj, pg_settings *s)
{
    const etl_host *h = rp->h;
    if (!obj || h->json_type(obj) != ETL_JSON_OBJECT) {
        problem(rp, "", "connection settings must be an object");
        return;
    }
    if (s) {
        memset(s, 0, sizeof *s);
        s->connect_timeout = 10;
        s->ledger = true;
    }
    size_t n = h->json_size(obj);
    for (size_t i = 0; i < n; i++) {
        etl_json *v = NULL;
        const char *key = h->json_key_at(obj, i, &v);
        const char *const *f = string_fields;
        while (*f && strcmp(*f, key) != 0)
            f++;
        if (*f) {
            size_t len = 0;
            const char *str = h->json_string(v, &len);
            if (!str) {
                problem(rp, key, "must be a string");
                continue;
            }
            if (!len || strlen(str) != len) {
                problem(rp, key, "must be a non-empty string without NUL bytes");
                continue;
            }
            if (strcmp(key, "url") == 0)
                check_url(rp, str);
            if (strcmp(key, "sslmode") == 0) {
                const char *const *m = sslmodes;
                while (*m && strcmp(*m, str) != 0)
                    m++;
                if (!*m)
                    problem(rp, key, "'%s' is not one of disable, allow, prefer, require, "
                            "verify-ca, verify-full", str);
            }
            if (strcmp(key, "ledger_table") == 0) {
                char a[256], b[256];
                const char *why = NULL;
                if (!pg_split_table(str, a, b, sizeof a, &why)) {
                    problem(rp, key, "'%s' %s (write table or schema.table)", str, why);
                    continue;
                }
            }
            if (!s)
                continue;
            const char **dst[] = {&s->url, &s->host, &s->user, &s->database, &s->socket,
                                  &s->password_env, &s->password_file, &s->sslmode,
                                  &s->sslrootcert, &s->sslcert, &s->sslkey,
                                  &s->application_name, &s->init_sql, &s->ledger_table};
            *dst[f - string_fields] = str;
        } else if (strcmp(key, "port") == 0 || strcmp(key, "connect_timeout") == 0) {
            bool port = key[0] == 'p';
            int64_t iv = -1;
            const char *str = h->json_string(v, NULL);
            if (str) {
                char *end = NULL;
                errno = 0;
                long long x = strtoll(str, &end, 10);
                if (end != str && !*end && !errno && str[0] != '-' && str[0] != '+')
                    iv = x;
            } else if (!h->json_int(v, &iv)) {
                iv = -1;
            }
            int64_t max = port ? 65535 : 86400;
            if (iv < 1 || iv > max) {
                problem(rp, key, "must be an integer from 1 to %lld%s", (long long)max,
                        port ? "" : " (seconds)");
                continue;
            }
            if (s && port)
                snprintf(s->port, sizeof s->port, "%lld", (long long)iv);
            else if (s)
                s->connect_timeout = (int)iv;
        } else if (strcmp(key, "ledger") == 0) {
            bool on = true;
            if (!h->json_bool(v, &on)) {
                problem(rp, key, "must be true or false (false: loads write no row in the "
                        "load ledger)");
                continue;
            }
            if (s)
                s->ledger = on;
        } else {
            problem(rp, key, "unknown setting of a postgres connection (known: url, host, "
                    "port, user, database, socket, password_env, password_file, "
                    "connect_timeout, sslmode, sslrootcert, sslcert, sslkey, "
                    "application_name, init_sql, ledger, ledger_table)");
        }
    }
    const etl_json *pe = h->json_get(obj, "password_env");
    const etl_json *pf = h->json_get(obj, "password_file");
    if (pe && pf)
        problem(rp, "password_file", "give password_env or password_file, not both");
    if (h->json_get(obj, "socket") && h->json_get(obj, "host"))
        problem(rp, "socket", "give host or socket, not both (socket is the directory of the "
                "server's Unix socket)");
    /* The secret's source must exist; its value is read at open time only. */
    const char *env = h->json_string(pe, NULL);
    if (env && *env && !getenv(env))
        problem(rp, "password_env", "the environment variable %s is not set", env);
    const char *file = h->json_string(pf, NULL);
    struct stat st;
    if (file && *file) {
        if (stat(file, &st) != 0)
            problem(rp, "password_file", "cannot read %s: %s", file, strerror(errno));
        else if (st.st_mode & 077)
            problem(rp, "password_file", "%s is readable by others (mode %03o); chmod 600 it",
                    file, (unsigned)(st.st_mode & 0777));
    }
}

bool pg_check_settings(const etl_host *h, const etl_json *settings_obj, etl_checker *chk)
{
    report rp = {.h = h, .chk = chk};
    read_settings(&rp, settings_obj, NULL);
    return rp.problems == 0;
}

etl_status pg_settings_read(const etl_host *h, const etl_json *settings_obj, pg_settings *out,
                            etl_error *err)
{
    report rp = {.h = h, .err = err};
    read_settings(&rp, settings_obj, out);
    return rp.problems ? err->status : ETL_OK;
}

etl_status pg_password(const etl_host *h, const pg_settings *s, char *buf, size_t cap,
                       const char **out, etl_error *err)
{
    *out = NULL;
    if (s->password_env) {
        const char *v = getenv(s->password_env);
        if (!v)
            return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", false,
                           "postgres: the environment variable %s (password_env) is not set",
                           s->password_env);
        if (strlen(v) >= cap)
            return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", false,
                           "postgres: the password in %s is too long", s->password_env);
        memcpy(buf, v, strlen(v) + 1);
        *out = buf;
        return ETL_OK;
    }
    if (!s->password_file)
        return ETL_OK;
    int fd = open(s->password_file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", false,
                       "postgres: cannot read password_file %s: %s", s->password_file,
                       strerror(e));
    }
    if (st.st_mode & 077) {
        close(fd);
        return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", false,
                       "postgres: password_file %s is readable by others (mode %03o); chmod "
                       "600 it", s->password_file, (unsigned)(st.st_mode & 0777));
    }
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", false,
                       "postgres: cannot read password_file %s: %s", s->password_file,
                       strerror(errno));
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0'; /* the first line */
    *out = buf;
    return ETL_OK;
}
