/* mysql connections: settings (url or fields, password_env/password_file or the
 * library's option files, TLS), connect with the session the actions rely on, and the
 * cancel callback.
 *
 * DESIGN (cancellation). MySQL has no out-of-band cancel: a running statement is stopped
 * by KILL QUERY <id> sent over another connection. The task's cancel callback runs on a
 * foreign thread while the host holds the task's lock, so it must not block on a
 * network: it copies what it needs (settings, the busy connection's id) into a job and
 * starts a detached thread that connects, sends KILL QUERY and exits. The action sees
 * its statement fail (or return early) and returns States.Cancelled; the host then
 * discards the connection. The job owns its copy, so it may outlive the connection.
 * Trap: a KILL that lands between two statements of the action hits nothing; the
 * action checks host->cancelled before each statement, so only a statement sent in the
 * instant between that check and the KILL's arrival can run to its end. */
#include "myc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------- settings ---------- */

/* "password" is listed so that it gets its own message (use password_env...), not
 * "unknown field" */
static const char *const setting_keys[] = {
    "url", "host", "port", "user", "database", "socket", "password_env", "password_file",
    "connect_timeout", "ssl_mode", "ssl_ca", "ssl_cert", "ssl_key", "init_sql", "password",
    "ledger", "ledger_table", NULL,
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decoded copy of s[0..n) into a new string; NULL on a bad escape or a NUL. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int a = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
        int b = a >= 0 && i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
        if (a < 0 || b < 0 || a * 16 + b == 0) {
            free(out);
            return NULL;
        }
        *o++ = (char)(a * 16 + b);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* The parts of mysql://[user@]host[:port][/database]. */
typedef struct url_parts {
    char *user, *host, *database;
    unsigned port;
} url_parts;

static void url_free(url_parts *u)
{
    free(u->user);
    free(u->host);
    free(u->database);
    memset(u, 0, sizeof *u);
}

static bool parse_url(myc_report *r, const char *url, url_parts *out)
{
    memset(out, 0, sizeof *out);
    const char *p;
    if (strncasecmp(url, "mysql://", 8) == 0)
        p = url + 8;
    else if (strncasecmp(url, "mariadb://", 10) == 0)
        p = url + 10;
    else {
        myc_problem(r, "url", "must start with mysql:// or mariadb://, e.g. "
                              "mysql://etl@db1.internal:3306/shop");
        return false;
    }
    if (strpbrk(p, "?#")) {
        myc_problem(r, "url", "query parameters are not accepted; use the separate settings "
                              "(ssl_mode, connect_timeout, ...)");
        return false;
    }
    const char *slash = strchr(p, '/');
    const char *auth_end = slash ? slash : p + strlen(p);
    const char *at = NULL;
    for (const char *q = p; q < auth_end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        if (memchr(p, ':', (size_t)(at - p))) {
            /* the text after ':' is never echoed: it is a password */
            myc_problem(r, "url", "must not contain a password (user:password@...); use "
                                  "password_env or password_file, or the MySQL option files");
            return false;
        }
        if (at > p && !(out->user = pct_decode(p, (size_t)(at - p)))) {
            myc_problem(r, "url", "has an invalid %%-escape in the user name");
            return false;
        }
        p = at + 1;
    }
    const char *host_end;
    const char *port_at = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(auth_end - p));
        if (!close) {
            myc_problem(r, "url", "has an unterminated '[' in the host");
            url_free(out);
            return false;
        }
        if (close > p + 1)
            out->host = strndup(p + 1, (size_t)(close - p - 1));
        host_end = close + 1;
        if (host_end < auth_end && *host_end == ':')
            port_at = host_end + 1;
        else if (host_end != auth_end) {
            myc_problem(r, "url", "has text after the ']' of the host");
            url_free(out);
            return false;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        host_end = colon ? colon : auth_end;
        if (host_end > p)
            out->host = strndup(p, (size_t)(host_end - p));
        if (colon)
            port_at = colon + 1;
    }
    if (port_at) {
        unsigned long v = 0;
        const char *q = port_at;
        for (; q < auth_end && *q >= '0' && *q <= '9' && v <= 65535; q++)
            v = v * 10 + (unsigned long)(*q - '0');
        if (q != auth_end || q == port_at || v == 0 || v > 65535) {
            myc_problem(r, "url", "has an invalid port (1 to 65535)");
            url_free(out);
            return false;
        }
        out->port = (unsigned)v;
    }
    if (slash && slash[1]) {
        if (strchr(slash + 1, '/') || !(out->database = pct_decode(slash + 1, strlen(slash + 1)))) {
            myc_problem(r, "url", "has an invalid database name after the host");
            url_free(out);
            return false;
        }
    }
    return true;
}

/* Read the first line of a password file that only its owner may read. */
static bool read_password_file(myc_report *r, const char *path, char **out)
{
    char eb[160];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        /* GNU strerror_r (_GNU_SOURCE): thread-safe, returns the text */
        myc_problem(r, "password_file", "cannot open '%s': %s", path,
                    strerror_r(errno, eb, sizeof eb));
        return false;
    }
    struct stat st;
    bool ok = false;
    char buf[1024];
    if (fstat(fd, &st) != 0) {
        myc_problem(r, "password_file", "cannot stat '%s'", path);
    } else if (st.st_mode & 077) {
        myc_problem(r, "password_file", "'%s' can be read by others (mode %04o): make it mode "
                                        "0600 (chmod 600) or stricter", path,
                    (unsigned)(st.st_mode & 07777));
    } else {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n < 0) {
            myc_problem(r, "password_file", "cannot read '%s'", path);
        } else {
            buf[n] = '\0';
            buf[strcspn(buf, "\r\n")] = '\0';
            ok = (*out = strdup(buf)) != NULL;
            if (!ok)
                myc_problem(r, "password_file", "out of memory");
        }
    }
    memset(buf, 0, sizeof buf);
    close(fd);
    return ok;
}

static char *dup_opt(const char *s) { return s ? strdup(s) : NULL; }

static void free_settings(myc_settings *s)
{
    free(s->host);
    free(s->user);
    free(s->database);
    free(s->socket);
    if (s->password) {
        memset(s->password, 0, strlen(s->password));
        free(s->password);
    }
    free(s->ssl_ca);
    free(s->ssl_cert);
    free(s->ssl_key);
    free(s->init_sql);
    free(s->ledger_table);
    memset(s, 0, sizeof *s);
}

/* Check settings; with out != NULL (run time) also copy them and read the password. */
static void parse_settings(myc_report *r, const etl_json *s, myc_settings *out)
{
    const etl_host *h = r->host;
    if (h->json_type(s) != ETL_JSON_OBJECT) {
        myc_problem(r, "", "settings must be an object");
        return;
    }
    myc_known_keys(r, s, setting_keys);
    const char *url = NULL, *host = NULL, *user = NULL, *db = NULL, *sock = NULL;
    const char *pw_env = NULL, *pw_file = NULL, *ssl_mode = NULL, *ca = NULL, *cert = NULL,
               *key = NULL, *init = NULL, *ledger_table = NULL;
    bool ledger = true;
    int64_t port = 0, timeout = MYC_DEFAULT_CONNECT_TIMEOUT;
    etl_json *pv = NULL;
    const char *ps = myc_param(h, s, "port", &pv) == MYC_LITERAL ? h->json_string(pv, NULL) : NULL;
    myc_get_string(r, s, "url", &url);
    myc_get_string(r, s, "host", &host);
    myc_get_string(r, s, "user", &user);
    myc_get_string(r, s, "database", &db);
    myc_get_string(r, s, "socket", &sock);
    myc_get_string(r, s, "password_env", &pw_env);
    myc_get_string(r, s, "password_file", &pw_file);
    myc_get_string(r, s, "ssl_mode", &ssl_mode);
    myc_get_string(r, s, "ssl_ca", &ca);
    myc_get_string(r, s, "ssl_cert", &cert);
    myc_get_string(r, s, "ssl_key", &key);
    myc_get_string(r, s, "init_sql", &init);
    myc_get_bool(r, s, "ledger", &ledger);
    myc_get_string(r, s, "ledger_table", &ledger_table);
    if (ledger_table) {
        const char *dot = strchr(ledger_table, '.');
        if (ledger_table[0] == '.' || (dot && (!dot[1] || strchr(dot + 1, '.'))))
            myc_problem(r, "ledger_table", "'%s' must be table or database.table", ledger_table);
    }
    if (ps) {
        /* a string of digits, so that port: ${env:DB_PORT} works */
        char *end;
        port = strtol(ps, &end, 10);
        if (!*ps || *end || port < 1)
            port = 65536;
    } else {
        myc_get_int(r, s, "port", 1, &port);
    }
    if (port > 65535)
        myc_problem(r, "port", "must be a port number from 1 to 65535");
    myc_get_int(r, s, "connect_timeout", 1, &timeout);
    if (timeout > 3600)
        myc_problem(r, "connect_timeout", "must be a number of seconds from 1 to 3600");
    if (pw_env && pw_file)
        myc_problem(r, "password_file", "give either password_env or password_file, not both");
    if (h->json_get(s, "password"))
        myc_problem(r, "password", "passwords are not written in pipelines; use password_env "
                                   "or password_file");
    myc_ssl_mode mode = MYC_SSL_DEFAULT;
    if (ssl_mode) {
        static const char *const names[] = {"disabled", "preferred", "required", "verify_ca",
                                            "verify_identity"};
        for (int i = 0; i < 5; i++)
            if (strcasecmp(ssl_mode, names[i]) == 0)
                mode = (myc_ssl_mode)(MYC_SSL_DISABLED + i);
        if (mode == MYC_SSL_DEFAULT)
            myc_problem(r, "ssl_mode", "must be one of disabled, preferred, required, "
                                       "verify_ca, verify_identity");
    }
    if (mode == MYC_SSL_DISABLED && (ca || cert || key))
        myc_problem(r, "ssl_mode", "is disabled, but ssl_ca/ssl_cert/ssl_key are given");
    if (pw_file && !out) {
        /* validate time: a file that exists must already be private (it may be mounted
         * only where the pipeline runs, so a missing one is checked at connect) */
        struct stat st;
        if (stat(pw_file, &st) == 0 && (st.st_mode & 077))
            myc_problem(r, "password_file", "'%s' can be read by others (mode %04o): make it "
                                            "mode 0600 (chmod 600) or stricter", pw_file,
                        (unsigned)(st.st_mode & 07777));
    }
    url_parts u = {0};
    if (url && !parse_url(r, url, &u))
        return;
    if (!out || r->problems) {
        url_free(&u);
        return;
    }

    out->host = host ? strdup(host) : u.host;
    out->user = user ? strdup(user) : u.user;
    out->database = db ? strdup(db) : u.database;
    if (host)
        free(u.host);
    if (user)
        free(u.user);
    if (db)
        free(u.database);
    out->port = port ? (unsigned)port : u.port;
    out->socket = dup_opt(sock);
    out->connect_timeout = (unsigned)timeout;
    out->ssl_mode = mode;
    out->ssl_ca = dup_opt(ca);
    out->ssl_cert = dup_opt(cert);
    out->ssl_key = dup_opt(key);
    out->init_sql = dup_opt(init);
    out->ledger_off = !ledger;
    out->ledger_table = dup_opt(ledger_table);
    if ((host && !out->host) || (user && !out->user) || (db && !out->database) ||
        (sock && !out->socket) || (ca && !out->ssl_ca) || (cert && !out->ssl_cert) ||
        (key && !out->ssl_key) || (init && !out->init_sql) ||
        (ledger_table && !out->ledger_table)) {
        myc_problem(r, "", "out of memory");
        return;
    }
    if (pw_env) {
        const char *pw = getenv(pw_env);
        if (!pw)
            myc_problem(r, "password_env", "the environment variable %s is not set", pw_env);
        else if (!(out->password = strdup(pw)))
            myc_problem(r, "password_env", "out of memory");
    } else if (pw_file) {
        read_password_file(r, pw_file, &out->password);
    }
    if (out->socket && !out->host)
        snprintf(out->label, sizeof out->label, "%s@%s%s%s", out->user ? out->user : "(default user)",
                 out->socket, out->database ? "/" : "", out->database ? out->database : "");
    else
        snprintf(out->label, sizeof out->label, "%s@%s:%u%s%s",
                 out->user ? out->user : "(default user)", out->host ? out->host : "localhost",
                 out->port ? out->port : 3306, out->database ? "/" : "",
                 out->database ? out->database : "");
}

bool myc_check_settings(const etl_host *h, const etl_json *settings, etl_checker *chk)
{
    myc_report r = {.host = h, .chk = chk, .what = "mysql connection settings"};
    parse_settings(&r, settings, NULL);
    return r.problems == 0;
}

/* ---------- connecting ---------- */

/* Client errors that mean the server could not be reached or the link broke. */
static bool lost(unsigned e)
{
    return e == 2002 || e == 2003 || e == 2005 || e == 2006 || e == 2013 || e == 2055 ||
           e == 2026; /* CR_SSL_CONNECTION_ERROR */
}

/* Connect m with settings s; on failure *out_errno and msg (the library's message,
 * which never holds the password) are set. */
static bool connect_with(MYSQL *m, const myc_settings *s, bool local_infile, unsigned *out_errno,
                         char *msg, size_t n)
{
    unsigned timeout = s->connect_timeout;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    unsigned infile = local_infile;
    mysql_options(m, MYSQL_OPT_LOCAL_INFILE, &infile);
    if (!s->password)
        mysql_options(m, MYSQL_READ_DEFAULT_GROUP, "client");
    if (s->socket && !s->host) {
        unsigned proto = MYSQL_PROTOCOL_SOCKET;
        mysql_options(m, MYSQL_OPT_PROTOCOL, &proto);
    }
    my_bool yes = 1, no = 0;
    switch (s->ssl_mode) {
    case MYC_SSL_DEFAULT:
    case MYC_SSL_DISABLED:
        break;
    case MYC_SSL_PREFERRED:
    case MYC_SSL_REQUIRED:
        /* use_ssl: TLS when the server offers it. Connector/C 3.3 then falls back to
         * plain TCP silently, so "required" is checked after the connect, below */
        mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &yes);
        mysql_options(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &no);
        break;
    case MYC_SSL_VERIFY_CA:
    case MYC_SSL_VERIFY_IDENTITY:
        /* Connector/C verifies the chain and the host name together: verify_ca is as
         * strict as verify_identity */
        mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &yes);
        mysql_options(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &yes);
        break;
    }
    if (s->ssl_mode != MYC_SSL_DISABLED && (s->ssl_ca || s->ssl_cert || s->ssl_key))
        mysql_ssl_set(m, s->ssl_key, s->ssl_cert, s->ssl_ca, NULL, NULL);
    if (!mysql_real_connect(m, s->host, s->user, s->password, s->database, s->port, s->socket, 0)) {
        *out_errno = mysql_errno(m);
        snprintf(msg, n, "%s", mysql_error(m));
        return false;
    }
    /* a unix socket never leaves the machine: it satisfies every ssl_mode */
    const char *via = mysql_get_host_info(m);
    if (s->ssl_mode >= MYC_SSL_REQUIRED && !mysql_get_ssl_cipher(m) &&
        !(via && strstr(via, "socket"))) {
        *out_errno = 2026; /* CR_SSL_CONNECTION_ERROR */
        snprintf(msg, n, "the server did not accept TLS, but ssl_mode is %s",
                 s->ssl_mode == MYC_SSL_REQUIRED ? "required" : "verify_ca/verify_identity");
        return false;
    }
    return true;
}

static etl_status connect_fail(const etl_host *h, const myc_settings *s, unsigned e,
                               const char *msg, etl_error *err)
{
    /* wrong credentials, a missing database or a server certificate that does not verify
     * (a TLS error, 2026, about the certificate): a retry cannot help */
    bool transient = !(e == 1044 || e == 1045 || e == 1049 || e == 1698 ||
                       (e == 2026 && strstr(msg, "certificate")));
    return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", transient,
                   "cannot connect to MySQL %s: %s (error %u)%s", s->label, msg, e,
                   e == 1045 ? "; check the user and password_env/password_file" : "");
}

etl_status myc_open(const etl_host *h, etl_task *task, const etl_json *settings,
                    etl_conn **out_conn, etl_error *err)
{
    (void)task;
    *out_conn = NULL;
    etl_status st = ETL_OK;
    etl_conn *c = calloc(1, sizeof *c);
    if (!c)
        return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
    myc_report r = {.host = h, .err = err, .what = "mysql connection settings"};
    parse_settings(&r, settings, &c->set);
    if (r.problems) {
        /* settings that pass validation but not the run (a variable unset, a password
         * file that changed): no retry can help */
        char cause[ETL_ERROR_CAUSE_MAX];
        snprintf(cause, sizeof cause, "%s", err->cause);
        st = h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", false, "%s", cause);
        goto out;
    }
    if (!(c->my = mysql_init(NULL))) {
        st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory (mysql_init)");
        goto out;
    }
    myc_infile_install(c);
    unsigned e = 0;
    char msg[512];
    if (!connect_with(c->my, &c->set, true, &e, msg, sizeof msg)) {
        st = connect_fail(h, &c->set, e, msg, err);
        goto out;
    }
    /* An option file may have chosen another character set: values must be UTF-8. */
    const char *cs = mysql_character_set_name(c->my);
    if ((!cs || strcmp(cs, "utf8mb4") != 0) && mysql_set_character_set(c->my, "utf8mb4") != 0) {
        st = connect_fail(h, &c->set, mysql_errno(c->my), mysql_error(c->my), err);
        goto out;
    }
    /* Times are read and written as UTC: TIMESTAMP columns convert through the session
     * time zone. */
    static const char tz[] = "SET time_zone = '+00:00'";
    if (mysql_real_query(c->my, tz, sizeof tz - 1) != 0) {
        st = connect_fail(h, &c->set, mysql_errno(c->my), mysql_error(c->my), err);
        goto out;
    }
    if (c->set.init_sql) {
        /* init_sql may hold several statements separated by ';': allowed for it alone */
        mysql_set_server_option(c->my, MYSQL_OPTION_MULTI_STATEMENTS_ON);
        if (mysql_real_query(c->my, c->set.init_sql, strlen(c->set.init_sql)) != 0) {
            e = mysql_errno(c->my);
            st = h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", lost(e),
                         "MySQL %s: init_sql failed: %s (error %u, SQLSTATE %s)", c->set.label,
                         mysql_error(c->my), e, mysql_sqlstate(c->my));
            goto out;
        }
        /* a statement with a result set (or several) must be read to the end */
        int more;
        do {
            MYSQL_RES *res = mysql_store_result(c->my);
            mysql_free_result(res);
        } while ((more = mysql_next_result(c->my)) == 0);
        if (more > 0) {
            e = mysql_errno(c->my);
            st = h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", lost(e),
                         "MySQL %s: init_sql failed: %s (error %u, SQLSTATE %s)", c->set.label,
                         mysql_error(c->my), e, mysql_sqlstate(c->my));
            goto out;
        }
        if (mysql_set_server_option(c->my, MYSQL_OPTION_MULTI_STATEMENTS_OFF) != 0) {
            st = connect_fail(h, &c->set, mysql_errno(c->my), mysql_error(c->my), err);
            goto out;
        }
    }
    c->thread_id = mysql_thread_id(c->my);
    c->host = h;
    *out_conn = c;
    c = NULL;
out:
    if (c) {
        if (c->my)
            mysql_close(c->my);
        free_settings(&c->set);
        free(c);
    }
    return st;
}

void myc_close(const etl_host *h, etl_conn *c)
{
    (void)h;
    if (!c)
        return;
    if (c->my)
        mysql_close(c->my);
    free_settings(&c->set);
    free(c);
}

void myc_server_version(const etl_host *h, etl_conn *c, char *buf, size_t len)
{
    (void)h;
    const char *v = c && c->my ? mysql_get_server_info(c->my) : NULL;
    if (!v) {
        snprintf(buf, len, "MySQL (version unknown)");
        return;
    }
    /* MariaDB says "10.11.19-MariaDB-0+deb12u1" (older ones behind "5.5.5-") */
    const char *maria = strstr(v, "-MariaDB");
    if (strncmp(v, "5.5.5-", 6) == 0 && maria)
        v += 6;
    if (maria)
        snprintf(buf, len, "MariaDB %.*s", (int)(maria - v), v);
    else
        snprintf(buf, len, "MySQL %s", v);
}

bool myc_alive(const etl_host *h, etl_conn *c)
{
    (void)h;
    return c && c->my && !c->broken && mysql_ping(c->my) == 0;
}

etl_status myc_cancelled(const etl_host *h, etl_conn *c, etl_error *err, const char *what)
{
    if (c)
        c->broken = true;
    return h->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                   "mysql: %s cancelled (the statement was stopped with KILL QUERY)", what);
}

/* ---------- cancellation ---------- */

typedef struct kill_job {
    myc_settings set;        /* a deep copy: the connection may be gone meanwhile */
    unsigned long thread_id;
    const etl_host *h;
} kill_job;

static atomic_int kill_threads; /* detached kill threads still running */

static void *kill_main(void *arg)
{
    kill_job *j = arg;
    mysql_thread_init();
    MYSQL *m = mysql_init(NULL);
    unsigned e = 0;
    char msg[512] = "out of memory";
    bool ok = false;
    if (m && connect_with(m, &j->set, false, &e, msg, sizeof msg)) {
        char sql[64];
        int n = snprintf(sql, sizeof sql, "KILL QUERY %lu", j->thread_id);
        ok = mysql_real_query(m, sql, (unsigned long)n) == 0;
        /* 1094: the connection is already gone, which is what we wanted */
        if (!ok && mysql_errno(m) == 1094)
            ok = true;
        if (!ok)
            snprintf(msg, sizeof msg, "%s (error %u)", mysql_error(m), mysql_errno(m));
    }
    if (!ok)
        j->h->log(NULL, ETL_LOG_WARN, "mysql %s: could not stop the statement of connection "
                                      "%lu with KILL QUERY: %s", j->set.label, j->thread_id, msg);
    if (m)
        mysql_close(m);
    free_settings(&j->set);
    free(j);
    mysql_thread_end();
    atomic_fetch_sub(&kill_threads, 1);
    return NULL;
}

static void on_cancel(void *arg)
{
    etl_conn *c = arg;
    kill_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    const myc_settings *s = &c->set;
    j->h = c->host;
    j->set = *s;
    j->set.host = dup_opt(s->host);
    j->set.user = dup_opt(s->user);
    j->set.database = NULL; /* KILL needs no database; one that is dropped must not matter */
    j->set.socket = dup_opt(s->socket);
    j->set.password = dup_opt(s->password);
    j->set.ssl_ca = dup_opt(s->ssl_ca);
    j->set.ssl_cert = dup_opt(s->ssl_cert);
    j->set.ssl_key = dup_opt(s->ssl_key);
    j->set.init_sql = NULL; /* not needed to kill, and it may be slow */
    j->set.ledger_table = NULL; /* the job owns its copy: free_settings frees every field */
    j->thread_id = c->thread_id;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(&kill_threads, 1);
    if (pthread_create(&t, &attr, kill_main, j) != 0) {
        atomic_fetch_sub(&kill_threads, 1);
        free_settings(&j->set);
        free(j);
    }
    pthread_attr_destroy(&attr);
}

void myc_watch(const etl_host *h, etl_task *task, etl_conn *c)
{
    h->on_cancel(task, on_cancel, c);
}

void myc_kill_threads_wait(void)
{
    /* a kill thread lives at most about connect_timeout; wait up to 15 s */
    for (int i = 0; i < 1500 && atomic_load(&kill_threads) > 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}
