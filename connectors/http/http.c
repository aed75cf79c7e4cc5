/* The `http` connector: its table (etl_builtin_http), libcurl's global init, connection
 * settings (check, open, close) and the parameter checks both actions share.
 * See docs/connectors/http.md for what a pipeline author writes. */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- reporting ---------- */

void http_problem(http_report *r, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->chk)
        r->host->check_error(r->chk, field, "%s", msg);
    else if (r->problems == 0 && r->err)
        r->host->fail(r->err, ETL_EINVAL, "Etl.InvalidParameters", false, "%s: '%s': %s",
                      r->what, field, msg);
    r->problems++;
}

/* prefix.key, or key at the top level. */
static const char *field_name(char *buf, size_t n, const char *prefix, const char *key)
{
    if (prefix && *prefix)
        snprintf(buf, n, "%s.%s", prefix, key);
    else
        snprintf(buf, n, "%s", key);
    return buf;
}

int http_param(const etl_host *h, const etl_json *obj, const char *key, etl_json **out)
{
    etl_json *v = h->json_get(obj, key);
    if (v) {
        if (out)
            *out = v;
        return HTTP_LITERAL;
    }
    char k[256];
    snprintf(k, sizeof k, "%s.$", key);
    return h->json_get(obj, k) ? HTTP_DYNAMIC : HTTP_ABSENT;
}

/* key without a trailing ".$" into buf; true when it had one. */
static bool strip_dynamic(const char *key, char *buf, size_t n)
{
    size_t len = strlen(key);
    bool dyn = len > 2 && strcmp(key + len - 2, ".$") == 0;
    if (dyn)
        len -= 2;
    if (len >= n)
        len = n - 1;
    memcpy(buf, key, len);
    buf[len] = '\0';
    return dyn;
}

void http_known_keys(http_report *r, const etl_json *obj, const char *prefix,
                     const char *const *keys)
{
    const etl_host *h = r->host;
    size_t n = h->json_size(obj);
    for (size_t i = 0; i < n; i++) {
        const char *key = h->json_key_at(obj, i, NULL);
        char bare[256], f[320];
        strip_dynamic(key, bare, sizeof bare);
        bool known = false;
        for (const char *const *k = keys; *k && !known; k++)
            known = strcmp(*k, bare) == 0;
        if (!known) {
            char list[512] = "";
            size_t used = 0;
            for (const char *const *k = keys; *k; k++) {
                int w = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", *k);
                if (w < 0 || (size_t)w >= sizeof list - used)
                    break;
                used += (size_t)w;
            }
            http_problem(r, field_name(f, sizeof f, prefix, bare),
                         "unknown field; expected one of: %s", list);
        }
    }
}

void http_get_string(http_report *r, const etl_json *obj, const char *prefix, const char *key,
                     const char **out)
{
    etl_json *v;
    char f[320];
    if (http_param(r->host, obj, key, &v) != HTTP_LITERAL)
        return;
    const char *s = r->host->json_string(v, NULL);
    if (!s) {
        http_problem(r, field_name(f, sizeof f, prefix, key), "must be a string");
        return;
    }
    *out = s;
}

/* A string holding a number ("${env:TIMEOUT}" interpolates to a string). */
static bool number_text(const etl_host *h, const etl_json *v, double *out)
{
    const char *s = h->json_string(v, NULL);
    char *end;
    if (!s || !*s)
        return false;
    *out = strtod(s, &end);
    return *end == '\0';
}

void http_get_seconds(http_report *r, const etl_json *obj, const char *prefix,
                      const char *key, double *out)
{
    etl_json *v;
    char f[320];
    double d;
    if (http_param(r->host, obj, key, &v) != HTTP_LITERAL)
        return;
    if (!(r->host->json_real(v, &d) || number_text(r->host, v, &d)) || !(d > 0) || d > 1e6) {
        http_problem(r, field_name(f, sizeof f, prefix, key),
                     "must be a number of seconds > 0 (and at most 1000000)");
        return;
    }
    *out = d;
}

void http_get_int(http_report *r, const etl_json *obj, const char *prefix, const char *key,
                  int64_t min, int64_t *out)
{
    etl_json *v;
    char f[320];
    int64_t i;
    if (http_param(r->host, obj, key, &v) != HTTP_LITERAL)
        return;
    if (!r->host->json_int(v, &i) || i < min) {
        http_problem(r, field_name(f, sizeof f, prefix, key), "must be an integer >= %lld",
                     (long long)min);
        return;
    }
    *out = i;
}

void http_get_bool(http_report *r, const etl_json *obj, const char *prefix, const char *key,
                   bool *out)
{
    etl_json *v;
    char f[320];
    bool b;
    if (http_param(r->host, obj, key, &v) != HTTP_LITERAL)
        return;
    const char *s = r->host->json_string(v, NULL);
    if (s && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0))
        b = s[0] == 't'; /* "${env:VERIFY}" interpolates to a string */
    else if (!r->host->json_bool(v, &b)) {
        http_problem(r, field_name(f, sizeof f, prefix, key), "must be true or false");
        return;
    }
    *out = b;
}

/* RFC 9110 token characters: what a header name may contain. */
static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

void http_check_headers(http_report *r, const etl_json *obj, const char *field)
{
    const etl_host *h = r->host;
    if (h->json_type(obj) != ETL_JSON_OBJECT) {
        http_problem(r, field, "must be an object of header name -> value");
        return;
    }
    size_t n = h->json_size(obj);
    for (size_t i = 0; i < n; i++) {
        etl_json *v;
        const char *key = h->json_key_at(obj, i, &v);
        char bare[256], f[320];
        bool dyn = strip_dynamic(key, bare, sizeof bare);
        field_name(f, sizeof f, field, bare);
        if (!is_token(bare)) {
            http_problem(r, f, "is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~)");
            continue;
        }
        if (dyn)
            continue;
        etl_json_type t = h->json_type(v);
        size_t len;
        const char *s = h->json_string(v, &len);
        if (s) {
            /* a CR or LF would let a value smuggle in another header */
            if (memchr(s, '\r', len) || memchr(s, '\n', len) || strlen(s) != len)
                http_problem(r, f, "must not contain CR, LF or NUL characters");
        } else if (t != ETL_JSON_INT && t != ETL_JSON_REAL) {
            http_problem(r, f, "must be a string or a number");
        }
    }
}

static bool query_scalar(const etl_host *h, const etl_json *v)
{
    etl_json_type t = h->json_type(v);
    return t == ETL_JSON_STRING || t == ETL_JSON_INT || t == ETL_JSON_REAL ||
           t == ETL_JSON_BOOL || t == ETL_JSON_NULL;
}

void http_check_query(http_report *r, const etl_json *obj, const char *field)
{
    const etl_host *h = r->host;
    if (h->json_type(obj) != ETL_JSON_OBJECT) {
        http_problem(r, field, "must be an object of parameter name -> value");
        return;
    }
    size_t n = h->json_size(obj);
    for (size_t i = 0; i < n; i++) {
        etl_json *v;
        const char *key = h->json_key_at(obj, i, &v);
        char bare[256], f[320];
        if (strip_dynamic(key, bare, sizeof bare))
            continue;
        field_name(f, sizeof f, field, bare);
        bool ok = query_scalar(h, v);
        if (h->json_type(v) == ETL_JSON_ARRAY) {
            ok = true;
            for (size_t j = 0; j < h->json_size(v) && ok; j++)
                ok = query_scalar(h, h->json_at(v, j));
        }
        if (!ok)
            http_problem(r, f, "must be a string, number, boolean, null or an array of those");
    }
}

void http_check_path(http_report *r, const etl_json *v, const char *field)
{
    const etl_host *h = r->host;
    const char *s = h->json_string(v, NULL);
    if (!s || s[0] != '$') {
        http_problem(r, field, "must be a JSONPath string starting with '$'");
        return;
    }
    etl_error e;
    memset(&e, 0, sizeof e);
    etl_path *p = h->path_compile(s, &e);
    if (!p) {
        http_problem(r, field, "invalid path: %s", e.cause);
        return;
    }
    h->path_free(p);
}

void http_parse_call(http_report *r, const etl_json *params, const char *const *keys,
                     http_call *out)
{
    const etl_host *h = r->host;
    etl_json *v;
    memset(out, 0, sizeof *out);
    out->method = "GET";
    out->max_body = (int64_t)HTTP_DEFAULT_MAX_BODY;
    out->retry_after_max_s = HTTP_DEFAULT_RETRY_AFTER_MAX_S;
    if (h->json_type(params) != ETL_JSON_OBJECT) {
        http_problem(r, "", "Parameters must be an object");
        return;
    }
    http_known_keys(r, params, "", keys);

    const char *method = NULL;
    http_get_string(r, params, "", "method", &method);
    if (method) {
        size_t n = strlen(method);
        bool ok = n > 0 && n <= 20;
        for (size_t i = 0; i < n && ok; i++)
            ok = method[i] >= 'A' && method[i] <= 'Z';
        if (ok)
            out->method = method;
        else
            http_problem(r, "method", "must be an upper-case HTTP method such as GET or POST");
    }

    switch (http_param(h, params, "url", &v)) {
    case HTTP_ABSENT:
        http_problem(r, "", "'url' is required");
        break;
    case HTTP_LITERAL: {
        const char *url = h->json_string(v, NULL);
        if (!url || !*url)
            http_problem(r, "url", "must be a non-empty string");
        else if (strstr(url, "://") && !http_url_is_http(url))
            http_problem(r, "url", "only http:// and https:// URLs are supported");
        else if (strpbrk(url, " \t\r\n"))
            http_problem(r, "url", "must not contain spaces or line breaks (encode them)");
        else
            out->url = url;
        break;
    }
    default:
        break;
    }
    if (http_param(h, params, "query", &v) == HTTP_LITERAL) {
        http_check_query(r, v, "query");
        out->query = v;
    }
    if (http_param(h, params, "headers", &v) == HTTP_LITERAL) {
        http_check_headers(r, v, "headers");
        out->headers = v;
    }
    /* body: null sends no body, so "body.$" can select an optional value */
    if (http_param(h, params, "body", &v) == HTTP_LITERAL && h->json_type(v) != ETL_JSON_NULL)
        out->body = v;
    const char *conn = NULL;
    http_get_string(r, params, "", "connection", &conn);
    http_get_seconds(r, params, "", "timeout_seconds", &out->timeout_s);
    http_get_int(r, params, "", "max_body_bytes", 1, &out->max_body);
    if (http_param(h, params, "retry_after_max_seconds", &v) == HTTP_LITERAL) {
        double d;
        if (!h->json_real(v, &d) || !(d >= 0) || d > 86400)
            http_problem(r, "retry_after_max_seconds",
                         "must be a number of seconds between 0 and 86400");
        else
            out->retry_after_max_s = d;
    }
}

/* ---------- connection settings ---------- */

static const char *const setting_keys[] = {
    "base_url", "headers", "timeout_seconds", "connect_timeout_seconds",
    "verify_tls", "ca_file", "user_agent", NULL,
};

/* Check settings; with out != NULL also copy them (run time). */
static void parse_settings(http_report *r, const etl_json *s, http_settings *out)
{
    const etl_host *h = r->host;
    if (h->json_type(s) != ETL_JSON_OBJECT) {
        http_problem(r, "", "settings must be an object");
        return;
    }
    http_known_keys(r, s, "", setting_keys);
    const char *base = NULL, *ca = NULL, *ua = NULL;
    double timeout = HTTP_DEFAULT_TIMEOUT_S, connect = HTTP_DEFAULT_CONNECT_TIMEOUT_S;
    bool verify = true;
    etl_json *hdrs = NULL;
    http_get_string(r, s, "", "base_url", &base);
    if (base && !http_url_is_http(base)) {
        http_problem(r, "base_url", "must start with http:// or https://");
        base = NULL;
    }
    if (http_param(h, s, "headers", &hdrs) == HTTP_LITERAL)
        http_check_headers(r, hdrs, "headers");
    else
        hdrs = NULL;
    http_get_seconds(r, s, "", "timeout_seconds", &timeout);
    http_get_seconds(r, s, "", "connect_timeout_seconds", &connect);
    http_get_bool(r, s, "", "verify_tls", &verify);
    http_get_string(r, s, "", "ca_file", &ca);
    if (ca && !*ca)
        http_problem(r, "ca_file", "must be a file name");
    http_get_string(r, s, "", "user_agent", &ua);
    if (ua && strpbrk(ua, "\r\n"))
        http_problem(r, "user_agent", "must not contain CR or LF characters");
    if (!out || r->problems)
        return;

    out->timeout_s = timeout;
    out->connect_timeout_s = connect;
    out->verify_tls = verify;
    bool oom = (base && !(out->base_url = strdup(base))) || (ca && !(out->ca_file = strdup(ca))) ||
               (ua && !(out->user_agent = strdup(ua)));
    size_t n = hdrs ? h->json_size(hdrs) : 0;
    if (!oom && n) {
        out->header_names = calloc(n, sizeof(char *));
        out->header_values = calloc(n, sizeof(char *));
        oom = !out->header_names || !out->header_values;
    }
    for (size_t i = 0; i < n && !oom; i++) {
        etl_json *v;
        const char *name = h->json_key_at(hdrs, i, &v);
        const char *str = h->json_string(v, NULL);
        char *copy = NULL;
        if (str) {
            copy = strdup(str);
        } else { /* a number: its JSON text */
            char *text = h->json_dump(v, NULL);
            copy = text ? strdup(text) : NULL;
            h->free(text);
        }
        out->header_names[i] = strdup(name);
        out->header_values[i] = copy;
        out->n_headers = i + 1;
        oom = !out->header_names[i] || !copy;
    }
    if (oom) {
        r->host->fail(r->err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
        r->problems++;
    }
}

static void free_settings(http_settings *s)
{
    for (size_t i = 0; i < s->n_headers; i++) {
        free(s->header_names[i]);
        free(s->header_values[i]);
    }
    free(s->header_names);
    free(s->header_values);
    free(s->base_url);
    free(s->ca_file);
    free(s->user_agent);
    memset(s, 0, sizeof *s);
}

static bool check_settings(const etl_host *host, const etl_json *settings, etl_checker *chk)
{
    http_report r = {.host = host, .chk = chk, .what = "http connection settings"};
    parse_settings(&r, settings, NULL);
    return r.problems == 0;
}

static etl_status open_conn(const etl_host *host, etl_task *task, const etl_json *settings,
                            etl_conn **out_conn, etl_error *err)
{
    (void)task;
    *out_conn = NULL;
    etl_conn *c = calloc(1, sizeof *c);
    if (!c)
        return host->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
    http_report r = {.host = host, .err = err, .what = "http connection settings"};
    parse_settings(&r, settings, &c->set);
    if (r.problems) {
        free_settings(&c->set);
        free(c);
        return err->status;
    }
    /* the handles are made on first use, on the thread that uses them */
    *out_conn = c;
    return ETL_OK;
}

static void close_conn(const etl_host *host, etl_conn *c)
{
    (void)host;
    if (!c)
        return;
    if (c->multi && c->easy)
        curl_multi_remove_handle(c->multi, c->easy);
    if (c->easy)
        curl_easy_cleanup(c->easy);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    free_settings(&c->set);
    free(c);
}

/* ---------- process-wide ---------- */

static etl_status global_init(const etl_host *host, etl_error *err)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK)
        return host->fail(err, ETL_EIO, "Etl.HttpFailed", false,
                          "http: libcurl initialisation failed: %s", curl_easy_strerror(rc));
    /* curl_multi_poll/wakeup (7.68) and the *_PROTOCOLS_STR options (7.85) */
    const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
    if (vi->version_num < 0x075500) {
        curl_global_cleanup();
        return host->fail(err, ETL_EIO, "Etl.HttpFailed", false,
                          "http: libcurl %s is too old; 7.85.0 or newer is needed", vi->version);
    }
    return ETL_OK;
}

static void global_cleanup(const etl_host *host)
{
    (void)host;
    curl_global_cleanup();
}

static const etl_action actions[] = {
    {
        .struct_size = sizeof(etl_action),
        .name = "request",
        .summary = "one HTTP request; the result is {status, headers, body}",
        .check = http_request_check,
        .run = http_request_run,
    },
    {
        .struct_size = sizeof(etl_action),
        .name = "extract",
        .summary = "a paginated JSON API streamed into a staged CSV file",
        .check = http_extract_check,
        .run = http_extract_run,
    },
    {0},
};

static const etl_connector connector = {
    .abi_version = ETL_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(etl_connector),
    .name = "http",
    .version = "1.0.0",
    .description = "HTTP(S) requests and paginated JSON APIs (libcurl)",
    .global_init = global_init,
    .global_cleanup = global_cleanup,
    .check_settings = check_settings,
    .open = open_conn,
    .close = close_conn,
    .actions = actions,
};

const etl_connector *etl_builtin_http(void) { return &connector; }
