/* `http.request`: one HTTP request; the result is {"status","headers","body"}.
 *
 * Parameters --http_parse_call--> http_perform --> result, with the body parsed as JSON
 * when the response's Content-Type is application/json or +json, a string when it is
 * UTF-8 text, and base64 (with "body_base64": true) otherwise. */
#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const request_keys[] = {
    "method", "url", "query", "headers", "body", "connection", "key", "timeout_seconds",
    "max_body_bytes", "retry_after_max_seconds", NULL,
};

bool http_request_check(const etl_host *host, const etl_json *params, etl_checker *chk)
{
    http_report r = {.host = host, .chk = chk, .what = "http.request"};
    http_call call;
    http_parse_call(&r, params, request_keys, &call);
    return r.problems == 0;
}

/* application/json, or any type with the +json suffix (application/problem+json),
 * parameters after ';' ignored. */
static bool is_json_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, "; \t");
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
           (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0 && memchr(ct, '/', n));
}

/* Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

/* Standard base64 with padding, malloc'd, length in *out_len. */
static char *base64(const unsigned char *s, size_t n, size_t *out_len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = (n + 2) / 3 * 4;
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* A JSON string of header text; bytes that are not UTF-8 (obsolete Latin-1 values)
 * become '?'. */
static etl_json *header_string(const etl_host *h, const char *v)
{
    size_t n = strlen(v);
    if (utf8_valid((const unsigned char *)v, n))
        return h->json_new_string(v, n);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)v[i] < 0x80 ? v[i] : '?';
    copy[n] = '\0';
    etl_json *s = h->json_new_string(copy, n);
    free(copy);
    return s;
}

static etl_status make_result(const etl_host *h, const http_call *call, const char *shown,
                              const http_response *resp, etl_json **out, etl_error *err)
{
    etl_status st = ETL_OK;
    etl_json *res = h->json_new_object();
    etl_json *hdrs = h->json_new_object();
    etl_json *body = NULL;
    bool b64 = false;
    bool ok = res && hdrs;
    for (size_t i = 0; i < resp->n_headers && ok; i++)
        ok = h->json_set(hdrs, resp->names[i], header_string(h, resp->values[i])) == 0;
    if (!ok)
        goto oom;
    const char *ct = http_header(resp, "content-type");
    const unsigned char *bytes = (const unsigned char *)(resp->body.p ? resp->body.p : "");
    size_t n = resp->body.len;
    if (is_json_type(ct)) {
        if (n == 0) {
            body = h->json_new_null();
        } else {
            etl_error perr;
            memset(&perr, 0, sizeof perr);
            body = h->json_parse((const char *)bytes, n, &perr);
            if (!body) {
                st = h->fail(err, ETL_ETASK, "Etl.HttpInvalidResponse", false,
                             "%s %s: the response says Content-Type %s but its body is not "
                             "JSON: %s", call->method, shown, ct, perr.cause);
                goto out;
            }
        }
    } else if (utf8_valid(bytes, n)) {
        body = h->json_new_string((const char *)bytes, n);
    } else {
        size_t len;
        char *enc = base64(bytes, n, &len);
        body = enc ? h->json_new_string(enc, len) : NULL;
        free(enc);
        b64 = true;
    }
    if (!body)
        goto oom;
    ok = h->json_set(res, "status", h->json_new_int(resp->status)) == 0 &&
         h->json_set(res, "headers", hdrs) == 0;
    hdrs = NULL; /* stolen, even on failure */
    ok = ok && h->json_set(res, "body", body) == 0;
    body = NULL;
    if (ok && b64)
        ok = h->json_set(res, "body_base64", h->json_new_bool(true)) == 0;
    if (!ok)
        goto oom;
    *out = res;
    return ETL_OK;
oom:
    st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "http: out of memory");
out:
    if (res)
        h->json_decref(res);
    if (hdrs)
        h->json_decref(hdrs);
    if (body)
        h->json_decref(body);
    return st;
}

etl_status http_request_run(const etl_host *host, etl_task *task, etl_conn *conn,
                            const etl_json *params, etl_json **out_result, etl_error *err)
{
    http_report r = {.host = host, .err = err, .what = "http.request"};
    http_call call;
    http_client cl;
    http_response resp;
    char *url = NULL;
    char shown[512];
    memset(&resp, 0, sizeof resp);
    *out_result = NULL;
    http_parse_call(&r, params, request_keys, &call);
    if (r.problems)
        return err->status;
    etl_status st = http_client_begin(&cl, host, task, conn, &call, false, err);
    if (st != ETL_OK)
        return st;
    st = http_build_url(&cl, &call, NULL, 0, &url, err);
    if (st == ETL_OK)
        st = http_perform(&cl, &call, url, &resp, err);
    if (st == ETL_OK) {
        http_redact_url(url, shown, sizeof shown);
        st = make_result(host, &call, shown, &resp, out_result, err);
    }
    if (st == ETL_OK)
        host->progress(task, 0, resp.body.len);
    http_client_end(&cl);
    http_response_free(&resp);
    free(url);
    return st;
}
