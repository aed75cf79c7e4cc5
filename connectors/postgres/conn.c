/* postgres connections: the connect (PQconnectStartParams with keyword arrays from
 * settings.c, so no conninfo string ever holds the password), the cancel hook,
 * statement execution that honours cancellation, and the mapping of libpq failures onto
 * etlrun's error names.
 *
 * DESIGN: statements are sent asynchronously (PQsendQueryParams) and awaited with
 * poll() in short slices, so a cancel is noticed even when it raced with the start of
 * the statement (a PQcancel that reaches an idle backend is lost): the cancel callback
 * calls PQcancel at once, and the waiting thread repeats it every second until the
 * server answers, for at most PG_CANCEL_GRACE_S. The connect loop (PQconnectPoll) is
 * cancellable the same way and implements connect_timeout itself. */
#include "pg.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Session settings every connection gets, so values have one text form: ISO times in
 * UTC, shortest exact floats (PostgreSQL 12+; 17 digits on 11), hex bytea. */
static const char session_sql[] =
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
    "SET extra_float_digits = 3; SET bytea_output = 'hex'";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------- messages ---------- */

/* libpq's multi-line message as one line, without LOCATION lines (verbose mode) and
 * with every occurrence of the password replaced, in out. */
static void one_line(const char *msg, const char *password, char *out, size_t cap)
{
    size_t o = 0;
    const char *p = msg ? msg : "";
    while (*p && o + 1 < cap) {
        size_t line = strcspn(p, "\n");
        if (strncmp(p, "LOCATION:", 9) != 0) {
            const char *q = p;
            while (q < p + line && (*q == ' ' || *q == '\t'))
                q++;
            if (q < p + line && o > 0 && o + 2 < cap) {
                out[o++] = ';';
                out[o++] = ' ';
            }
            for (; q < p + line && o + 1 < cap; q++)
                out[o++] = *q == '\t' || *q == '\r' ? ' ' : *q;
        }
        p += line;
        if (*p == '\n')
            p++;
    }
    out[o] = '\0';
    size_t pl = password ? strlen(password) : 0;
    if (pl < 3) /* a one- or two-character password would mask ordinary text */
        return;
    char *hit;
    while ((hit = strstr(out, password)) != NULL) {
        memset(hit, '*', 3);
        memmove(hit + 3, hit + pl, strlen(hit + pl) + 1);
    }
}

/* The SQLSTATE in a verbose libpq message ("FATAL:  28P01: ..."), or "" */
static void verbose_sqlstate(const char *msg, char out[6])
{
    out[0] = '\0';
    for (const char *p = msg ? strstr(msg, ":  ") : NULL; p; p = strstr(p + 1, ":  ")) {
        const char *s = p + 3;
        size_t k = 0;
        while (k < 5 && ((s[k] >= '0' && s[k] <= '9') || (s[k] >= 'A' && s[k] <= 'Z')))
            k++;
        if (k == 5 && s[5] == ':') {
            memcpy(out, s, 5);
            out[5] = '\0';
            return;
        }
    }
}

static void make_label(PGconn *pg, char *out, size_t cap)
{
    const char *user = PQuser(pg), *host = PQhost(pg), *port = PQport(pg), *db = PQdb(pg);
    snprintf(out, cap, "%s@%s:%s/%s", user && *user ? user : "?", host && *host ? host : "?",
             port && *port ? port : "5432", db && *db ? db : "?");
}

/* Server WARNINGs go to the log; NOTICE and below ("table does not exist, skipping") are
 * dropped rather than printed on stderr by libpq's default receiver. */
static void notice_receiver(void *arg, const PGresult *res)
{
    const etl_host *h = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (sev && strcmp(sev, "WARNING") == 0)
        h->log(NULL, ETL_LOG_WARN, "postgres: %s",
               PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
}

/* ---------- open / close ---------- */

etl_status pg_cancelled(const etl_host *h, etl_error *err, const char *what)
{
    return h->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                   "postgres: %s was cancelled", what);
}

static etl_status connect_fail(const etl_host *h, PGconn *pg, const char *password,
                               etl_error *err)
{
    char label[300], msg[1200], state[6];
    make_label(pg, label, sizeof label);
    const char *raw = PQerrorMessage(pg);
    verbose_sqlstate(raw, state);
    one_line(raw, password, msg, sizeof msg);
    /* authentication (28xxx), a missing database (3D000), a missing password or a server
     * certificate that does not verify will not get better by retrying; refused, reset,
     * timeouts, other TLS failures and too many clients may */
    bool auth = strncmp(state, "28", 2) == 0 || strcmp(state, "3D000") == 0 ||
                strstr(raw, "no password supplied") || strstr(raw, "SCRAM authentication");
    bool cert = strstr(raw, "certificate verify failed") ||
                strstr(raw, "does not match host name") || strstr(raw, "root certificate file");
    return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", !auth && !cert,
                   "cannot connect to postgres as %s: %s", label, msg);
}

etl_status pg_open(const etl_host *h, etl_task *task, const etl_json *settings_obj,
                   etl_conn **out_conn, etl_error *err)
{
    *out_conn = NULL;
    pg_settings s;
    etl_status st = pg_settings_read(h, settings_obj, &s, err);
    if (st != ETL_OK)
        return st;
    char pwbuf[1024];
    const char *password = NULL;
    if ((st = pg_password(h, &s, pwbuf, sizeof pwbuf, &password, err)) != ETL_OK)
        return st;

    const char *kw[24], *val[24];
    int n = 0;
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", s.connect_timeout);
    /* The URL first and expanded (libpq parses it: percent-escapes, [v6] hosts, host
     * lists); the separate fields after it override it. Only the first dbname is ever
     * expanded, so a database name holding '=' stays a name. */
#define KV(k, v) do { const char *v_ = (v); if (v_) { kw[n] = (k); val[n] = v_; n++; } } while (0)
    KV("dbname", s.url);
    KV("host", s.socket ? s.socket : s.host);
    KV("port", s.port[0] ? s.port : NULL);
    KV("user", s.user);
    KV("dbname", s.database);
    KV("password", password);
    KV("connect_timeout", timeout);
    KV("sslmode", s.sslmode);
    KV("sslrootcert", s.sslrootcert);
    KV("sslcert", s.sslcert);
    KV("sslkey", s.sslkey);
    KV("application_name", s.application_name);
    KV("fallback_application_name", "etlrun");
    KV("client_encoding", "UTF8");
#undef KV
    kw[n] = val[n] = NULL;

    etl_conn *c = calloc(1, sizeof *c);
    if (!c) {
        st = h->fail(err, ETL_ENOMEM, "Etl.ConnectionFailed", true, "postgres: out of memory");
        goto out;
    }
    c->ledger = s.ledger;
    if (s.ledger_table && !(c->ledger_table = strdup(s.ledger_table))) {
        st = h->fail(err, ETL_ENOMEM, "Etl.ConnectionFailed", true, "postgres: out of memory");
        goto out;
    }
    c->pg = PQconnectStartParams(kw, val, s.url ? 1 : 0);
    if (!c->pg) {
        st = h->fail(err, ETL_ENOMEM, "Etl.ConnectionFailed", true, "postgres: out of memory");
        goto out;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        st = connect_fail(h, c->pg, password, err);
        goto out;
    }
    /* verbose during the handshake: the server's message then carries its SQLSTATE */
    PQsetErrorVerbosity(c->pg, PQERRORS_VERBOSE);
    double deadline = now_s() + s.connect_timeout;
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    while (ps != PGRES_POLLING_OK) {
        if (ps == PGRES_POLLING_FAILED) {
            st = connect_fail(h, c->pg, password, err);
            goto out;
        }
        struct pollfd pfd = {PQsocket(c->pg), ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        int r = pfd.fd < 0 ? 1 : poll(&pfd, 1, 100); /* no socket: let libpq move on */
        if (task && h->cancelled(task)) {
            st = pg_cancelled(h, err, "connecting");
            goto out;
        }
        if (now_s() > deadline) {
            char label[300];
            make_label(c->pg, label, sizeof label);
            st = h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", true,
                         "cannot connect to postgres as %s: no answer in %d s (connect_timeout)",
                         label, s.connect_timeout);
            goto out;
        }
        if (r > 0 || (r < 0 && errno != EINTR))
            ps = PQconnectPoll(c->pg);
    }
    PQsetErrorVerbosity(c->pg, PQERRORS_DEFAULT);
    PQsetNoticeReceiver(c->pg, notice_receiver, (void *)h);
    make_label(c->pg, c->label, sizeof c->label);
    c->cancel = PQgetCancel(c->pg);
    if (!c->cancel) {
        st = h->fail(err, ETL_ENOMEM, "Etl.ConnectionFailed", true, "postgres: out of memory");
        goto out;
    }
    st = pg_run(h, task, c, "setting up the session", session_sql, -1, NULL, PG_FAIL_QUERY,
                NULL, err);
    if (st == ETL_OK && s.init_sql)
        st = pg_run(h, task, c, "init_sql", s.init_sql, -1, NULL, PG_FAIL_QUERY, NULL, err);
out:
    if (password)
        explicit_bzero(pwbuf, sizeof pwbuf); /* libpq keeps its own copy */
    if (st != ETL_OK) {
        pg_close(h, c);
        return st;
    }
    *out_conn = c;
    return ETL_OK;
}

void pg_close(const etl_host *h, etl_conn *c)
{
    (void)h;
    if (!c)
        return;
    PQfreeCancel(c->cancel);
    PQfinish(c->pg); /* the server rolls back any open transaction */
    pg_types_free(c);
    free(c->ledger_table);
    free(c->ledger_q);
    free(c);
}

void pg_server_version(const etl_host *h, etl_conn *c, char *buf, size_t len)
{
    (void)h;
    const char *v = c && c->pg ? PQparameterStatus(c->pg, "server_version") : NULL;
    snprintf(buf, len, "PostgreSQL %s", v ? v : "(version unknown)");
}

bool pg_alive(const etl_host *h, etl_conn *c)
{
    (void)h;
    if (!c || PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return false;
    /* An idle connection has nothing to read, unless the server said goodbye (a
     * restart, pg_terminate_backend: a FATAL message, which libpq treats as a notice
     * when idle, then end of file): reading notices it without a round trip. */
    struct pollfd pfd = {PQsocket(c->pg), POLLIN, 0};
    for (int i = 0; i < 4 && poll(&pfd, 1, i ? 20 : 0) > 0; i++)
        if (!PQconsumeInput(c->pg))
            return false;
    return PQstatus(c->pg) == CONNECTION_OK;
}

/* ---------- cancellation ---------- */

static void cancel_cb(void *arg)
{
    etl_conn *c = arg;
    char buf[256];
    PQcancel(c->cancel, buf, sizeof buf); /* thread-safe; failure: the waiter retries */
}

void pg_watch(const etl_host *h, etl_task *task, etl_conn *c)
{
    if (task)
        h->on_cancel(task, cancel_cb, c);
}

void pg_unwatch(const etl_host *h, etl_task *task)
{
    if (task)
        h->on_cancel(task, NULL, NULL);
}

/* ---------- statements ---------- */

/* Wait until a result can be read without blocking, re-sending the cancel request while
 * the task is cancelled. */
static etl_status wait_ready(const etl_host *h, etl_task *task, etl_conn *c, etl_error *err)
{
    double cancel_at = 0, first_cancel = 0;
    while (PQisBusy(c->pg) && PQsocket(c->pg) >= 0) {
        struct pollfd pfd = {PQsocket(c->pg), POLLIN, 0};
        int r = poll(&pfd, 1, 100);
        if (r < 0 && errno != EINTR)
            return ETL_OK; /* PQgetResult reports the broken socket */
        if (r > 0 && !PQconsumeInput(c->pg))
            return ETL_OK;
        if (task && h->cancelled(task)) {
            double t = now_s();
            if (!first_cancel)
                first_cancel = t;
            if (t - first_cancel > PG_CANCEL_GRACE_S)
                return h->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                               "postgres: cancelled, and the server did not stop the statement "
                               "within %.0f s; the connection is dropped", PG_CANCEL_GRACE_S);
            if (t >= cancel_at) {
                char buf[256];
                PQcancel(c->cancel, buf, sizeof buf);
                cancel_at = t + 1.0;
            }
        }
    }
    return ETL_OK;
}

etl_status pg_next(const etl_host *h, etl_task *task, etl_conn *c, PGresult **out,
                   etl_error *err)
{
    *out = NULL;
    etl_status st = wait_ready(h, task, c, err);
    if (st != ETL_OK)
        return st;
    *out = PQgetResult(c->pg);
    return ETL_OK;
}

etl_status pg_dispatch(const etl_host *h, etl_task *task, etl_conn *c, const char *sql,
                       int n_params, const char *const *values, bool single_row, etl_error *err)
{
    if (task && h->cancelled(task))
        return pg_cancelled(h, err, "the statement");
    int ok = n_params < 0 ? PQsendQuery(c->pg, sql)
                          : PQsendQueryParams(c->pg, sql, n_params, NULL, values, NULL, NULL, 0);
    if (!ok)
        return pg_result_fail(h, task, c, NULL, "sending the statement", PG_FAIL_QUERY, err);
    if (single_row)
        PQsetSingleRowMode(c->pg);
    return ETL_OK;
}

etl_status pg_send(const etl_host *h, etl_task *task, etl_conn *c, const char *sql,
                   int n_params, const char *const *values, bool single_row, PGresult **out,
                   etl_error *err)
{
    *out = NULL;
    etl_status st = pg_dispatch(h, task, c, sql, n_params, values, single_row, err);
    if (st == ETL_OK)
        st = pg_next(h, task, c, out, err);
    if (st == ETL_OK && !*out)
        return pg_result_fail(h, task, c, NULL, "the statement", PG_FAIL_QUERY, err);
    return st;
}

void pg_drain(etl_conn *c)
{
    PGresult *r;
    while ((r = PQgetResult(c->pg)) != NULL) {
        ExecStatusType s = PQresultStatus(r);
        PQclear(r);
        if (s == PGRES_COPY_IN) {
            PQputCopyEnd(c->pg, "abandoned by etlrun");
        } else if (s == PGRES_COPY_OUT) { /* a user's COPY ... TO STDOUT: discard it */
            char *buf;
            int n;
            while ((n = PQgetCopyData(c->pg, &buf, 0)) > 0)
                PQfreemem(buf);
            if (n == -2)
                break;
        } else if (s == PGRES_COPY_BOTH) {
            break; /* replication only: never started here */
        }
        if (PQstatus(c->pg) == CONNECTION_BAD)
            break;
    }
}

etl_status pg_run(const etl_host *h, etl_task *task, etl_conn *c, const char *what,
                  const char *sql, int n_params, const char *const *values, pg_fail_kind kind,
                  int64_t *out_affected, etl_error *err)
{
    PGresult *res = NULL;
    etl_status st = pg_send(h, task, c, sql, n_params, values, false, &res, err);
    if (st != ETL_OK)
        return st;
    /* a simple-protocol batch (no params) has one result per statement: the last
     * decides, an error stops the batch */
    PGresult *next = NULL;
    while (PQresultStatus(res) != PGRES_FATAL_ERROR && PQresultStatus(res) != PGRES_COPY_IN &&
           PQresultStatus(res) != PGRES_COPY_OUT && PQresultStatus(res) != PGRES_COPY_BOTH &&
           (st = pg_next(h, task, c, &next, err)) == ETL_OK && next) {
        PQclear(res);
        res = next;
    }
    if (st != ETL_OK) {
        PQclear(res);
        return st;
    }
    ExecStatusType rs = PQresultStatus(res);
    if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK) {
        st = pg_result_fail(h, task, c, res, what, kind, err);
        PQclear(res);
        pg_drain(c);
        return st;
    }
    if (out_affected) {
        const char *t = PQcmdTuples(res);
        *out_affected = t && *t ? strtoll(t, NULL, 10) : 0;
    }
    PQclear(res);
    return ETL_OK;
}

/* s with newlines flattened, appended to out at *o. */
static void append_flat(char *out, size_t cap, size_t *o, const char *prefix, const char *s)
{
    if (!s || !*s)
        return;
    for (const char *p = prefix; *p && *o + 1 < cap; p++)
        out[(*o)++] = *p;
    for (; *s && *o + 1 < cap; s++)
        out[(*o)++] = *s == '\n' || *s == '\t' || *s == '\r' ? ' ' : *s;
    out[*o] = '\0';
}

etl_status pg_result_fail(const etl_host *h, etl_task *task, etl_conn *c, const PGresult *res,
                          const char *what, pg_fail_kind kind, etl_error *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char msg[1500];
    size_t o = 0;
    msg[0] = '\0';
    if (res && PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)) {
        append_flat(msg, sizeof msg, &o, "", PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
        append_flat(msg, sizeof msg, &o, " (", PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
        if (PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL))
            append_flat(msg, sizeof msg, &o, "", ")");
        append_flat(msg, sizeof msg, &o, "; hint: ", PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
        if (kind == PG_FAIL_LOAD)
            append_flat(msg, sizeof msg, &o, "; at ", PQresultErrorField(res, PG_DIAG_CONTEXT));
    } else {
        char line[1200];
        one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg), NULL, line,
                 sizeof line);
        append_flat(msg, sizeof msg, &o, "", line[0] ? line : "no message from libpq");
    }
    ExecStatusType rs = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (rs == PGRES_COPY_IN || rs == PGRES_COPY_OUT || rs == PGRES_COPY_BOTH)
        return h->fail(err, ETL_EQUERY, "Etl.QueryFailed", false,
                       "postgres: %s on %s: COPY from or to the client cannot run here; use "
                       "extract (COPY TO) or load (COPY FROM) instead", what, c->label);
    bool bad = PQstatus(c->pg) == CONNECTION_BAD;
    if (task && h->cancelled(task))
        return h->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                       "postgres: %s on %s was cancelled (%s)", what, c->label, msg);
    if (bad || (state && (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
                          strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0)))
        return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", true,
                       "postgres: connection to %s lost during %s%s%s: %s", c->label, what,
                       state ? ": SQLSTATE " : "", state ? state : "", msg);
    if (kind == PG_FAIL_LOAD && state && (strncmp(state, "22", 2) == 0 ||
                                          strncmp(state, "23", 2) == 0 ||
                                          strcmp(state, "21000") == 0))
        return h->fail(err, ETL_EQUERY, "Etl.LoadFailed", false,
                       "postgres: %s on %s failed, nothing was loaded: SQLSTATE %s: %s", what,
                       c->label, state, msg);
    bool transient = state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0);
    return h->fail(err, ETL_EQUERY, "Etl.QueryFailed", transient,
                   "postgres: %s on %s failed: SQLSTATE %s: %s", what, c->label,
                   state ? state : "none", msg);
}

void pg_abort(etl_conn *c, etl_status st)
{
    if (!c || st == ETL_OK || st == ETL_ECANCELLED || st == ETL_ECONNECT ||
        PQstatus(c->pg) != CONNECTION_OK)
        return;
    if (PQtransactionStatus(c->pg) == PQTRANS_ACTIVE)
        pg_drain(c);
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(c->pg, "ROLLBACK"));
}
