/* Internals of the `http` connector (libcurl), shared by its files. Everything goes
 * through the public plugin interface (etlrun/connector.h): no engine headers.
 *
 * Parameters --http_parse_call--> http_call --http_perform (retries)--> http_response
 *            --request.c--> {"status","headers","body"}
 *            --extract.c--> one page at a time --> staged CSV --> manifest
 *
 * Files: http.c (connector table, settings, connections, parameter helpers),
 * transfer.c (URLs, one exchange over a multi handle, Retry-After, error mapping),
 * request.c (http.request), extract.c (http.extract and pagination). */
#ifndef ETL_HTTP_CONNECTOR_H
#define ETL_HTTP_CONNECTOR_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <etlrun/connector.h>

#define HTTP_DEFAULT_TIMEOUT_S 30.0
#define HTTP_DEFAULT_CONNECT_TIMEOUT_S 10.0
#define HTTP_DEFAULT_MAX_BODY ((uint64_t)16 << 20)  /* bytes of one response body */
#define HTTP_DEFAULT_RETRY_AFTER_MAX_S 60.0
#define HTTP_RETRY_AFTER_TRIES 3                    /* extra requests after a 429/503 */
#define HTTP_MAX_HEADER_BYTES (256u << 10)          /* all response header lines */
#define HTTP_DEFAULT_MAX_PAGES 100000

/* Connection settings, copied out of the settings object at open. */
typedef struct http_settings {
    char *base_url;          /* NULL = none: every url must then be absolute */
    char **header_names;     /* n_headers each; values may be secrets: never logged */
    char **header_values;
    size_t n_headers;
    double timeout_s;
    double connect_timeout_s;
    bool verify_tls;
    char *ca_file;           /* NULL = the system store */
    char *user_agent;        /* NULL = "etlrun/<host version>" */
} http_settings;

/* A connection: settings plus one easy and one multi handle, kept between calls so
 * keep-alive connections and the DNS cache are reused. One thread at a time (the host
 * lends a conn to one task at a time). */
struct etl_conn {
    http_settings set;
    CURL *easy;              /* created on first use */
    CURLM *multi;
};

/* --- parameter and settings checking, shared by validate time and run time --- */

/* Problems go to a checker (validate time: every problem, at its position) or to an
 * etl_error (run time: the first problem fails the task with Etl.InvalidParameters). */
typedef struct http_report {
    const etl_host *host;
    etl_checker *chk;        /* validate time, or NULL */
    etl_error *err;          /* run time, or NULL */
    const char *what;        /* "http.request", "connection settings": run-time causes */
    int problems;
} http_report;

void http_problem(http_report *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* How a key is written in obj: 0 absent, 1 a literal (*out = the value), 2 as "key.$"
 * (a template: the value exists only at run time). */
enum { HTTP_ABSENT = 0, HTTP_LITERAL = 1, HTTP_DYNAMIC = 2 };
int http_param(const etl_host *h, const etl_json *obj, const char *key, etl_json **out);
/* Report every member of obj (an object) whose key, minus a ".$" suffix, is not in
 * keys (NULL-terminated). prefix names obj in field paths ("" = top level). */
void http_known_keys(http_report *r, const etl_json *obj, const char *prefix,
                     const char *const *keys);
/* Typed readers: check the type of a literal (reporting at prefix.key) and store it;
 * leave *out untouched when the key is absent or dynamic. */
void http_get_string(http_report *r, const etl_json *obj, const char *prefix, const char *key,
                     const char **out);
void http_get_seconds(http_report *r, const etl_json *obj, const char *prefix,
                      const char *key, double *out);  /* a number > 0 */
void http_get_int(http_report *r, const etl_json *obj, const char *prefix, const char *key,
                  int64_t min, int64_t *out);
void http_get_bool(http_report *r, const etl_json *obj, const char *prefix, const char *key,
                   bool *out);
/* headers: an object of header name -> string (or number). */
void http_check_headers(http_report *r, const etl_json *obj, const char *field);
/* query: an object of name -> string, number, boolean, null (omitted) or an array of
 * those (the name repeated). */
void http_check_query(http_report *r, const etl_json *obj, const char *field);
/* A JSONPath that must compile (reference path: one node). */
void http_check_path(http_report *r, const etl_json *v, const char *field);

/* What one request is made of, as the Parameters give it. Pointers are borrowed from
 * the parameters object. */
typedef struct http_call {
    const char *method;      /* default "GET" */
    const char *url;         /* absolute, or relative to the connection's base_url */
    const etl_json *query;   /* object or NULL */
    const etl_json *headers; /* object or NULL */
    const etl_json *body;    /* NULL = no body; any JSON value, sent as application/json */
    double timeout_s;        /* 0 = the connection's */
    int64_t max_body;        /* bytes */
    double retry_after_max_s;
} http_call;

/* Parse (run time) or check (validate time) the parameters common to both actions.
 * keys: the action's full key list, for the unknown-key check. */
void http_parse_call(http_report *r, const etl_json *params, const char *const *keys,
                     http_call *out);

/* --- one exchange (transfer.c) --- */

typedef struct http_buf {
    char *p;                 /* NUL-terminated when not NULL */
    size_t len, cap;
} http_buf;

bool http_buf_add(http_buf *b, const void *data, size_t n);
bool http_buf_addstr(http_buf *b, const char *s);
void http_buf_free(http_buf *b);

typedef struct http_response {
    long status;
    http_buf body;
    char **names;            /* lower-case header names, unique; values joined ", " */
    char **values;
    size_t n_headers, cap_headers;
    size_t header_bytes;
    bool too_large;          /* the body passed max_body */
    bool headers_too_large;
    int64_t max_body;        /* set by http_perform */
} http_response;

/* Value of the (lower-case) header, or NULL. */
const char *http_header(const http_response *r, const char *lname);
void http_response_free(http_response *r);

/* The handles and headers of one action call. */
typedef struct http_client {
    const etl_host *host;
    etl_task *task;
    const http_settings *set;  /* the connection's, or defaults */
    etl_conn *conn;          /* NULL: easy/multi are this call's own */
    CURL *easy;
    CURLM *multi;
    struct curl_slist *headers; /* connection + call headers, built by begin */
    char *body;              /* the call's body as JSON text (host->free) */
    size_t body_len;
    double timeout_s;        /* of the last transfer, for messages */
    char errbuf[CURL_ERROR_SIZE];
} http_client;

/* Set up handles and headers for call. accept_json adds "Accept: application/json"
 * unless the headers set Accept. Errors: Etl.InvalidParameters, ETL_ENOMEM. */
etl_status http_client_begin(http_client *cl, const etl_host *host, etl_task *task,
                             etl_conn *conn, const http_call *call, bool accept_json,
                             etl_error *err);
void http_client_end(http_client *cl);

/* Build the URL of call: base_url joined with a relative url, then the query object
 * and the extra (name, value) pairs (n_extra of them, overriding query members of the
 * same name), percent-encoded. *out is malloc'd. */
etl_status http_build_url(http_client *cl, const http_call *call, const char *const *extra,
                          size_t n_extra, char **out, etl_error *err);

/* One request with the call's method, headers and body to url, retried after a
 * 429/503 with a Retry-After the task has time for. OK with resp filled when the final
 * status is < 400; otherwise Etl.HttpStatus, Etl.ConnectionFailed, States.Timeout,
 * States.Cancelled, Etl.HttpBodyTooLarge or Etl.HttpFailed. resp is reset first (its
 * buffers are reused: pass the same one for every page). */
etl_status http_perform(http_client *cl, const http_call *call, const char *url,
                        http_response *resp, etl_error *err);

/* True for an http:// or https:// URL (scheme in any case). */
bool http_url_is_http(const char *s);

/* url for messages: scheme://host[:port]/path, without credentials, query or
 * fragment. Writes at most n bytes into out. */
void http_redact_url(const char *url, char *out, size_t n);

/* The connector table (defined in http.c; declared for the engine in plugins.h). */
const etl_connector *etl_builtin_http(void);

/* --- the actions (request.c, extract.c) --- */
bool http_request_check(const etl_host *host, const etl_json *params, etl_checker *chk);
etl_status http_request_run(const etl_host *host, etl_task *task, etl_conn *conn,
                            const etl_json *params, etl_json **out_result, etl_error *err);
bool http_extract_check(const etl_host *host, const etl_json *params, etl_checker *chk);
etl_status http_extract_run(const etl_host *host, etl_task *task, etl_conn *conn,
                            const etl_json *params, etl_json **out_result, etl_error *err);

#endif
