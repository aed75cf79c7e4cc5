/* One HTTP exchange for the http connector: URL building, request headers, a transfer
 * driven through a multi handle, Retry-After handling, and the mapping of libcurl
 * results and HTTP statuses to etlrun errors.
 *
 * DESIGN: a transfer runs in curl_multi_perform / curl_multi_poll steps on the task's
 * thread. The task's cancel callback (registered by http_client_begin, called on
 * another thread) does only curl_multi_wakeup, which libcurl documents as callable
 * from any thread; the poll returns, the loop sees host->cancelled and stops at once,
 * whatever the server is doing. The progress callback checks the flag as well. A
 * Retry-After wait is the same poll with no transfer, so a cancel interrupts it too.
 * Header values (Authorization...) and query strings never reach a cause or a log line:
 * URLs in messages go through http_redact_url. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---------- buffers ---------- */

bool http_buf_add(http_buf *b, const void *data, size_t n)
{
    if (n > SIZE_MAX / 4 - b->len)
        return false;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return false;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

bool http_buf_addstr(http_buf *b, const char *s) { return http_buf_add(b, s, strlen(s)); }

void http_buf_free(http_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---------- responses ---------- */

const char *http_header(const http_response *r, const char *lname)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->names[i], lname) == 0)
            return r->values[i];
    return NULL;
}

static void clear_headers(http_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
    r->n_headers = 0;
}

/* Ready for another request; buffers keep their capacity. */
static void reset_response(http_response *r)
{
    clear_headers(r);
    r->status = 0;
    r->body.len = 0;
    if (r->body.p)
        r->body.p[0] = '\0';
    r->header_bytes = 0;
    r->too_large = r->headers_too_large = false;
}

void http_response_free(http_response *r)
{
    clear_headers(r);
    free(r->names);
    free(r->values);
    http_buf_free(&r->body);
    memset(r, 0, sizeof *r);
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    http_response *r = arg;
    size_t n = size * nmemb;
    if ((uint64_t)r->body.len + n > (uint64_t)r->max_body) {
        r->too_large = true;
        return 0; /* != n: libcurl stops with CURLE_WRITE_ERROR */
    }
    return http_buf_add(&r->body, data, n) ? n : 0;
}

static bool add_header(http_response *r, const char *name, size_t nlen, const char *val,
                       size_t vlen)
{
    char lname[256];
    if (nlen >= sizeof lname)
        return true; /* no header name is that long: ignore it */
    for (size_t i = 0; i < nlen; i++)
        lname[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] + 32) : name[i];
    lname[nlen] = '\0';
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcmp(r->names[i], lname) != 0)
            continue;
        /* repeated: join with ", " as RFC 9110 section 5.3 allows */
        size_t old = strlen(r->values[i]);
        char *v = realloc(r->values[i], old + 2 + vlen + 1);
        if (!v)
            return false;
        memcpy(v + old, ", ", 2);
        memcpy(v + old + 2, val, vlen);
        v[old + 2 + vlen] = '\0';
        r->values[i] = v;
        return true;
    }
    if (r->n_headers == r->cap_headers) {
        size_t cap = r->cap_headers ? r->cap_headers * 2 : 16;
        char **n = realloc(r->names, cap * sizeof *n);
        if (!n)
            return false;
        r->names = n;
        char **v = realloc(r->values, cap * sizeof *v);
        if (!v)
            return false;
        r->values = v;
        r->cap_headers = cap;
    }
    char *n = strdup(lname);
    char *v = malloc(vlen + 1);
    if (!n || !v) {
        free(n);
        free(v);
        return false;
    }
    memcpy(v, val, vlen);
    v[vlen] = '\0';
    r->names[r->n_headers] = n;
    r->values[r->n_headers] = v;
    r->n_headers++;
    return true;
}

static size_t header_cb(char *line, size_t size, size_t nitems, void *arg)
{
    http_response *r = arg;
    size_t n = size * nitems;
    r->header_bytes += n;
    if (r->header_bytes > HTTP_MAX_HEADER_BYTES) {
        r->headers_too_large = true;
        return 0;
    }
    /* a status line starts each response (redirects, 100 Continue): keep the last's */
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        clear_headers(r);
        return n;
    }
    size_t end = n;
    while (end > 0 && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' ' ||
                       line[end - 1] == '\t'))
        end--;
    if (end == 0 || line[0] == ' ' || line[0] == '\t')
        return n; /* the blank end line, or an obsolete folded line */
    const char *colon = memchr(line, ':', end);
    if (!colon || colon == line)
        return n;
    size_t nlen = (size_t)(colon - line);
    const char *val = colon + 1;
    while (val < line + end && (*val == ' ' || *val == '\t'))
        val++;
    return add_header(r, line, nlen, val, (size_t)(line + end - val)) ? n : 0;
}

/* ---------- URLs ---------- */

void http_redact_url(const char *url, char *out, size_t n)
{
    http_buf b = {0};
    const char *s = url;
    const char *sep = strstr(url, "://");
    if (sep) {
        http_buf_add(&b, url, (size_t)(sep + 3 - url));
        s = sep + 3;
        size_t auth = strcspn(s, "/?#");
        const char *at = memchr(s, '@', auth);
        if (at)
            s = at + 1; /* drop user:password@ */
    }
    size_t path = strcspn(s, "?#");
    http_buf_add(&b, s, path);
    if (s[path] == '?')
        http_buf_addstr(&b, "?...");
    snprintf(out, n, "%s", b.p ? b.p : "");
    http_buf_free(&b);
}

bool http_url_is_http(const char *s)
{
    return strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0;
}

/* RFC 3986 unreserved characters stay; every other byte becomes %XX. */
static bool add_encoded(http_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~';
        char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
        if (!(keep ? http_buf_add(b, s + i, 1) : http_buf_add(b, enc, 3)))
            return false;
    }
    return true;
}

/* name=value for a query scalar; null adds nothing. */
static bool add_pair(const etl_host *h, http_buf *b, const char *name, const etl_json *v)
{
    char num[32];
    const char *text = NULL;
    size_t len = 0;
    char *dumped = NULL;
    int64_t i;
    bool flag;
    switch (h->json_type(v)) {
    case ETL_JSON_NULL:
        return true;
    case ETL_JSON_STRING:
        text = h->json_string(v, &len);
        break;
    case ETL_JSON_INT:
        h->json_int(v, &i);
        len = (size_t)snprintf(num, sizeof num, "%lld", (long long)i);
        text = num;
        break;
    case ETL_JSON_BOOL:
        h->json_bool(v, &flag);
        text = flag ? "true" : "false";
        len = strlen(text);
        break;
    default: /* a real: its shortest round-trip JSON text */
        dumped = h->json_dump(v, &len);
        if (!dumped)
            return false;
        text = dumped;
        break;
    }
    bool ok = http_buf_addstr(b, strchr(b->p, '?') ? "&" : "?") &&
              add_encoded(b, name, strlen(name)) && http_buf_addstr(b, "=") &&
              add_encoded(b, text, len);
    h->free(dumped);
    return ok;
}

etl_status http_build_url(http_client *cl, const http_call *call, const char *const *extra,
                          size_t n_extra, char **out, etl_error *err)
{
    const etl_host *h = cl->host;
    http_buf b = {0};
    bool ok = true;
    *out = NULL;
    const char *url = call->url;
    if (!http_url_is_http(url)) {
        if (strstr(url, "://"))
            return h->fail(err, ETL_EINVAL, "Etl.InvalidParameters", false,
                           "http: 'url': only http:// and https:// URLs are supported");
        if (!cl->set->base_url) {
            char shown[256];
            http_redact_url(url, shown, sizeof shown);
            return h->fail(err, ETL_EINVAL, "Etl.InvalidParameters", false,
                           "http: 'url' '%s' is relative: give an absolute URL, or a "
                           "'connection' whose settings have a base_url", shown);
        }
        /* base_url and url joined by exactly one '/' (not RFC 3986 resolution, which
         * would drop the base's last path segment: "https://h/v1" + "users" must stay
         * under /v1) */
        const char *base = cl->set->base_url;
        size_t blen = strlen(base);
        while (blen > 0 && base[blen - 1] == '/')
            blen--;
        while (*url == '/')
            url++;
        ok = http_buf_add(&b, base, blen) && http_buf_addstr(&b, *url == '?' ? "" : "/");
    }
    /* a fragment is never sent; cut it so the query goes where it belongs */
    ok = ok && http_buf_add(&b, url, strcspn(url, "#"));
    const etl_json *q = call->query;
    size_t nq = q ? h->json_size(q) : 0;
    for (size_t i = 0; i < nq && ok; i++) {
        etl_json *v;
        const char *name = h->json_key_at(q, i, &v);
        bool overridden = false;
        for (size_t k = 0; k < n_extra && !overridden; k++)
            overridden = strcmp(extra[2 * k], name) == 0;
        if (overridden)
            continue;
        if (h->json_type(v) == ETL_JSON_ARRAY) {
            for (size_t j = 0; j < h->json_size(v) && ok; j++)
                ok = add_pair(h, &b, name, h->json_at(v, j));
        } else {
            ok = add_pair(h, &b, name, v);
        }
    }
    for (size_t k = 0; k < n_extra && ok; k++) {
        etl_json *s = h->json_new_string(extra[2 * k + 1], strlen(extra[2 * k + 1]));
        ok = s && add_pair(h, &b, extra[2 * k], s);
        if (s)
            h->json_decref(s);
    }
    if (!ok) {
        http_buf_free(&b);
        return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "http: out of memory");
    }
    *out = b.p;
    return ETL_OK;
}

/* ---------- clients ---------- */

static const http_settings default_settings = {
    .timeout_s = HTTP_DEFAULT_TIMEOUT_S,
    .connect_timeout_s = HTTP_DEFAULT_CONNECT_TIMEOUT_S,
    .verify_tls = true,
};

/* The cancel callback: another thread; only the thread-safe wakeup. */
static void wake(void *arg) { curl_multi_wakeup((CURLM *)arg); }

static bool call_has_header(const etl_host *h, const http_call *call, const char *name)
{
    size_t n = call->headers ? h->json_size(call->headers) : 0;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h->json_key_at(call->headers, i, NULL), name) == 0)
            return true;
    return false;
}

/* "Name: value" into the list; an empty value needs curl's "Name;" form. */
static bool append_header(http_client *cl, const char *name, const char *value)
{
    http_buf line = {0};
    bool ok = http_buf_addstr(&line, name) &&
              (*value ? http_buf_addstr(&line, ": ") && http_buf_addstr(&line, value)
                      : http_buf_addstr(&line, ";"));
    struct curl_slist *l = ok ? curl_slist_append(cl->headers, line.p) : NULL;
    http_buf_free(&line);
    if (!l)
        return false;
    cl->headers = l;
    return true;
}

static bool build_headers(http_client *cl, const http_call *call, bool accept_json)
{
    const etl_host *h = cl->host;
    const http_settings *s = cl->set;
    for (size_t i = 0; i < s->n_headers; i++)
        if (!call_has_header(h, call, s->header_names[i]) &&
            !append_header(cl, s->header_names[i], s->header_values[i]))
            return false;
    size_t n = call->headers ? h->json_size(call->headers) : 0;
    for (size_t i = 0; i < n; i++) {
        etl_json *v;
        const char *name = h->json_key_at(call->headers, i, &v);
        const char *str = h->json_string(v, NULL);
        char *num = str ? NULL : h->json_dump(v, NULL);
        bool ok = (str || num) && append_header(cl, name, str ? str : num);
        h->free(num);
        if (!ok)
            return false;
    }
    bool has_type = false, has_accept = false, has_expect = false;
    for (size_t i = 0; i < s->n_headers; i++) {
        has_type |= strcasecmp(s->header_names[i], "Content-Type") == 0;
        has_accept |= strcasecmp(s->header_names[i], "Accept") == 0;
        has_expect |= strcasecmp(s->header_names[i], "Expect") == 0;
    }
    has_type |= call_has_header(h, call, "Content-Type");
    has_accept |= call_has_header(h, call, "Accept");
    has_expect |= call_has_header(h, call, "Expect");
    if (call->body && !has_type && !append_header(cl, "Content-Type", "application/json"))
        return false;
    if (accept_json && !has_accept && !append_header(cl, "Accept", "application/json"))
        return false;
    /* no "Expect: 100-continue" round trip before large bodies */
    if (!has_expect) {
        struct curl_slist *l = curl_slist_append(cl->headers, "Expect:");
        if (!l)
            return false;
        cl->headers = l;
    }
    return true;
}

etl_status http_client_begin(http_client *cl, const etl_host *host, etl_task *task,
                             etl_conn *conn, const http_call *call, bool accept_json,
                             etl_error *err)
{
    memset(cl, 0, sizeof *cl);
    cl->host = host;
    cl->task = task;
    cl->conn = conn;
    cl->set = conn ? &conn->set : &default_settings;
    if (conn) {
        if (!conn->easy)
            conn->easy = curl_easy_init();
        if (!conn->multi)
            conn->multi = curl_multi_init();
        cl->easy = conn->easy;
        cl->multi = conn->multi;
    } else {
        cl->easy = curl_easy_init();
        cl->multi = curl_multi_init();
    }
    bool ok = cl->easy && cl->multi && build_headers(cl, call, accept_json);
    if (ok && call->body) {
        cl->body = host->json_dump(call->body, &cl->body_len);
        ok = cl->body != NULL;
    }
    if (!ok) {
        http_client_end(cl);
        return host->fail(err, ETL_ENOMEM, "States.Runtime", false, "http: out of memory");
    }
    host->on_cancel(task, wake, cl->multi);
    return ETL_OK;
}

void http_client_end(http_client *cl)
{
    if (cl->multi)
        cl->host->on_cancel(cl->task, NULL, NULL); /* before the multi handle can go */
    curl_slist_free_all(cl->headers);
    cl->host->free(cl->body);
    if (!cl->conn) {
        if (cl->easy)
            curl_easy_cleanup(cl->easy);
        if (cl->multi)
            curl_multi_cleanup(cl->multi);
    }
    memset(cl, 0, sizeof *cl);
}

/* ---------- one transfer ---------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int xferinfo_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    http_client *cl = arg;
    return cl->host->cancelled(cl->task) ? 1 : 0;
}

/* The timeout of one request: the call's or the connection's, capped by the task's
 * time left (so a TimeoutSeconds shows as States.Timeout, not a cut-off transfer). */
static double request_timeout(const http_client *cl, const http_call *call)
{
    double t = call->timeout_s > 0 ? call->timeout_s : cl->set->timeout_s;
    double left = cl->host->task_time_left(cl->task);
    if (left >= 0 && left < t)
        t = left;
    return t;
}

static CURLcode transfer(http_client *cl, const http_call *call, const char *url,
                         http_response *resp)
{
    CURL *e = cl->easy;
    const http_settings *s = cl->set;
    reset_response(resp);
    curl_easy_reset(e);
    cl->errbuf[0] = '\0';

    double timeout = request_timeout(cl, call);
    cl->timeout_s = timeout;
    long timeout_ms = (long)(timeout * 1000);
    long connect_ms = (long)(s->connect_timeout_s * 1000);
    if (timeout_ms < 1)
        timeout_ms = 1;
    if (connect_ms > timeout_ms)
        connect_ms = timeout_ms;
    char ua[128];
    snprintf(ua, sizeof ua, "etlrun/%s", cl->host->host_version);

    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    if (rc == CURLE_OK) \
        rc = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, 10L);
    SET(CURLOPT_HTTPHEADER, cl->headers);
    SET(CURLOPT_USERAGENT, s->user_agent ? s->user_agent : ua);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SET(CURLOPT_SSL_VERIFYPEER, s->verify_tls ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, s->verify_tls ? 2L : 0L);
    if (s->ca_file)
        SET(CURLOPT_CAINFO, s->ca_file);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, resp);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, resp);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    SET(CURLOPT_XFERINFODATA, cl);
    SET(CURLOPT_ERRORBUFFER, cl->errbuf);
    SET(CURLOPT_ACCEPT_ENCODING, ""); /* every encoding libcurl can decode */
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)call->max_body);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    if (cl->body) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)cl->body_len);
        SET(CURLOPT_POSTFIELDS, cl->body);
        if (strcmp(call->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, call->method);
    } else if (strcmp(call->method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(call->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(call->method, "POST") == 0) {
        SET(CURLOPT_POSTFIELDSIZE, 0L);
        SET(CURLOPT_POSTFIELDS, "");
    } else {
        SET(CURLOPT_CUSTOMREQUEST, call->method);
    }
#undef SET
    if (rc != CURLE_OK)
        return rc;

    if (curl_multi_add_handle(cl->multi, e) != CURLM_OK)
        return CURLE_OUT_OF_MEMORY;
    bool done = false;
    while (!done) {
        if (cl->host->cancelled(cl->task)) {
            rc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        int running = 0;
        CURLMcode mc = curl_multi_perform(cl->multi, &running);
        CURLMsg *m;
        int queued;
        while ((m = curl_multi_info_read(cl->multi, &queued)))
            if (m->msg == CURLMSG_DONE && m->easy_handle == e) {
                rc = m->data.result;
                done = true;
            }
        if (!done && mc == CURLM_OK)
            mc = curl_multi_poll(cl->multi, NULL, 0, 1000, NULL);
        if (!done && mc != CURLM_OK) {
            rc = mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT;
            snprintf(cl->errbuf, sizeof cl->errbuf, "%s", curl_multi_strerror(mc));
            break;
        }
    }
    curl_multi_remove_handle(cl->multi, e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    resp->status = status;
    return rc;
}

/* Seconds a Retry-After header asks for (delay-seconds or an HTTP date), -1 if none. */
static double retry_after(const http_response *r)
{
    const char *v = http_header(r, "retry-after");
    if (!v || !*v)
        return -1;
    if (strspn(v, "0123456789") == strlen(v))
        return strtod(v, NULL);
    time_t when = curl_getdate(v, NULL);
    if (when == (time_t)-1)
        return -1;
    double d = difftime(when, time(NULL));
    return d > 0 ? d : 0;
}

/* Wait seconds unless the task is cancelled first (then false). */
static bool wait_cancellable(http_client *cl, double seconds)
{
    int64_t until = mono_ms() + (int64_t)(seconds * 1000);
    for (;;) {
        if (cl->host->cancelled(cl->task))
            return false;
        int64_t left = until - mono_ms();
        if (left <= 0)
            return true;
        curl_multi_poll(cl->multi, NULL, 0, left > 1000 ? 1000 : (int)left, NULL);
    }
}

/* The first bytes of a body as one printable line, cut on a UTF-8 boundary. */
static void excerpt(const http_buf *body, char *out, size_t n)
{
    size_t len = body->len < 200 ? body->len : 200;
    if (len >= n)
        len = n - 1;
    if (len < body->len)
        while (len > 0 && ((unsigned char)body->p[len] & 0xC0) == 0x80)
            len--;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)body->p[i];
        out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    out[len] = '\0';
}

static etl_status curl_failure(http_client *cl, const http_call *call, const char *shown,
                               CURLcode rc, const http_response *resp, etl_error *err)
{
    const etl_host *h = cl->host;
    const char *m = call->method;
    const char *why = cl->errbuf[0] ? cl->errbuf : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_ABORTED_BY_CALLBACK:
        return h->fail(err, ETL_ECANCELLED, "States.Cancelled", false, "%s %s: cancelled", m,
                       shown);
    case CURLE_OPERATION_TIMEDOUT:
        return h->fail(err, ETL_ETIMEOUT, "States.Timeout", true,
                       "%s %s: no complete response within %.3g s (timeout_seconds, or the "
                       "task's TimeoutSeconds): %s", m, shown, cl->timeout_s, why);
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        if (resp->too_large || rc == CURLE_FILESIZE_EXCEEDED)
            return h->fail(err, ETL_ETASK, "Etl.HttpBodyTooLarge", false,
                           "%s %s: the response body is larger than max_body_bytes (%lld); "
                           "raise max_body_bytes or fetch smaller pages", m, shown,
                           (long long)call->max_body);
        if (resp->headers_too_large)
            return h->fail(err, ETL_ETASK, "Etl.HttpFailed", false,
                           "%s %s: the response headers exceed %u bytes", m, shown,
                           HTTP_MAX_HEADER_BYTES);
        return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "%s %s: out of memory", m,
                       shown);
    case CURLE_OUT_OF_MEMORY:
        return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "%s %s: out of memory", m,
                       shown);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_PROXY:
        return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", true, "%s %s: %s", m, shown,
                       why);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CRL_BADFILE:
        return h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", false,
                       "%s %s: TLS: %s; check the server's certificate or the connection's "
                       "ca_file", m, shown, why);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return h->fail(err, ETL_EINVAL, "Etl.InvalidParameters", false, "%s %s: %s", m, shown,
                       why);
    default:
        return h->fail(err, ETL_ETASK, "Etl.HttpFailed", false, "%s %s: %s", m, shown, why);
    }
}

etl_status http_perform(http_client *cl, const http_call *call, const char *url,
                        http_response *resp, etl_error *err)
{
    const etl_host *h = cl->host;
    char shown[512];
    http_redact_url(url, shown, sizeof shown);
    resp->max_body = call->max_body;
    int retries = 0;
    for (;;) {
        CURLcode rc = transfer(cl, call, url, resp);
        if (rc != CURLE_OK)
            return curl_failure(cl, call, shown, rc, resp, err);
        if ((resp->status != 429 && resp->status != 503) || retries == HTTP_RETRY_AFTER_TRIES)
            break;
        double wait = retry_after(resp);
        double left = h->task_time_left(cl->task);
        if (wait < 0 || wait > call->retry_after_max_s || (left >= 0 && wait >= left))
            break;
        retries++;
        h->log(cl->task, ETL_LOG_INFO, "%s %s: HTTP %ld, retry %d of %d in %.0f s (Retry-After)",
               call->method, shown, resp->status, retries, HTTP_RETRY_AFTER_TRIES, wait);
        if (!wait_cancellable(cl, wait))
            return h->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                           "%s %s: cancelled while waiting to retry", call->method, shown);
    }
    if (resp->status < 400)
        return ETL_OK;
    long st = resp->status;
    bool transient = st == 408 || st == 429 || st == 500 || st == 502 || st == 503 || st == 504;
    char text[256], note[96] = "";
    excerpt(&resp->body, text, sizeof text);
    if (retries)
        snprintf(note, sizeof note, " (after %d retr%s honouring Retry-After)", retries,
                 retries == 1 ? "y" : "ies");
    return h->fail(err, ETL_ETASK, "Etl.HttpStatus", transient, "%s %s: HTTP %ld%s%s%s",
                   call->method, shown, st, note, text[0] ? ": " : "", text);
}
