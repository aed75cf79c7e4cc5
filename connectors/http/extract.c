/* `http.extract`: a paginated JSON API streamed into a staged CSV file; the result is
 * the stage manifest plus "pages".
 *
 * page URL --http_perform--> body --json_parse--> records --fields--> stage_row
 *     ^                                                                   |
 *     +---- next link / Link header / page number / offset / cursor <-----+
 *
 * Memory is bounded by one page: its body buffer (reused) and its parsed tree (freed
 * before the next request). Rows go straight to the staged file. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const extract_keys[] = {
    "method", "url", "query", "headers", "body", "connection", "key", "timeout_seconds",
    "max_body_bytes", "retry_after_max_seconds", "records", "fields", "pagination",
    "max_pages", NULL,
};

typedef enum { PG_NONE, PG_NEXT_LINK, PG_PAGE, PG_OFFSET, PG_CURSOR } pg_kind;

typedef struct extract_spec {
    http_call call;
    const char *records;     /* path to the page's array of records */
    const etl_json *fields;  /* column -> path inside a record */
    pg_kind kind;
    const char *next;        /* next_link: path to the next URL; NULL = Link header */
    const char *param;       /* page / offset / cursor query parameter */
    int64_t start;           /* first page number / offset */
    const char *size_param;  /* page size (page) or limit (offset) parameter, or NULL */
    int64_t size;
    const char *cursor;      /* cursor: path to the next cursor */
    int64_t max_pages;
} extract_spec;

static const char *const kind_names[] = {"", "next_link", "page", "offset", "cursor"};

static void parse_pagination(http_report *r, const etl_json *pg, extract_spec *s)
{
    static const char *const all_keys[] = {"type", "next", "param", "start", "size_param",
                                           "size", "limit_param", "limit", "cursor", NULL};
    static const char *const keys[][6] = {
        [PG_NEXT_LINK] = {"type", "next", NULL},
        [PG_PAGE] = {"type", "param", "start", "size_param", "size", NULL},
        [PG_OFFSET] = {"type", "param", "start", "limit_param", "limit", NULL},
        [PG_CURSOR] = {"type", "cursor", "param", NULL},
    };
    const etl_host *h = r->host;
    etl_json *v;
    if (h->json_type(pg) != ETL_JSON_OBJECT) {
        http_problem(r, "pagination", "must be an object with a 'type'");
        return;
    }
    int how = http_param(h, pg, "type", &v);
    if (how == HTTP_ABSENT) {
        http_problem(r, "pagination", "'type' is required: next_link, page, offset or cursor");
        return;
    }
    if (how == HTTP_DYNAMIC) { /* known only at run time: check what can be checked */
        http_known_keys(r, pg, "pagination", all_keys);
        return;
    }
    const char *type = h->json_string(v, NULL);
    for (int k = PG_NEXT_LINK; k <= PG_CURSOR && type; k++)
        if (strcmp(type, kind_names[k]) == 0)
            s->kind = (pg_kind)k;
    if (s->kind == PG_NONE) {
        http_problem(r, "pagination.type", "must be next_link, page, offset or cursor");
        return;
    }
    http_known_keys(r, pg, "pagination", keys[s->kind]);
    const char *size_key = s->kind == PG_OFFSET ? "limit" : "size";
    const char *size_param_key = s->kind == PG_OFFSET ? "limit_param" : "size_param";
    switch (s->kind) {
    case PG_NEXT_LINK:
        if (http_param(h, pg, "next", &v) == HTTP_LITERAL) {
            http_check_path(r, v, "pagination.next");
            s->next = h->json_string(v, NULL);
        }
        break;
    case PG_CURSOR:
        s->param = "cursor";
        http_get_string(r, pg, "pagination", "param", &s->param);
        how = http_param(h, pg, "cursor", &v);
        if (how == HTTP_ABSENT)
            http_problem(r, "pagination", "'cursor' (the path to the next cursor) is required");
        if (how == HTTP_LITERAL) {
            http_check_path(r, v, "pagination.cursor");
            s->cursor = h->json_string(v, NULL);
        }
        break;
    default: /* page, offset */
        s->param = s->kind == PG_PAGE ? "page" : "offset";
        s->start = s->kind == PG_PAGE ? 1 : 0;
        http_get_string(r, pg, "pagination", "param", &s->param);
        http_get_int(r, pg, "pagination", "start", 0, &s->start);
        http_get_string(r, pg, "pagination", size_param_key, &s->size_param);
        http_get_int(r, pg, "pagination", size_key, 1, &s->size);
        if ((http_param(h, pg, size_param_key, NULL) == HTTP_ABSENT) !=
            (http_param(h, pg, size_key, NULL) == HTTP_ABSENT))
            http_problem(r, "pagination", "'%s' and '%s' go together: give both or neither",
                         size_param_key, size_key);
        break;
    }
    if (s->param && !*s->param)
        http_problem(r, "pagination.param", "must not be empty");
}

static void parse_extract(http_report *r, const etl_json *params, extract_spec *s)
{
    const etl_host *h = r->host;
    etl_json *v;
    memset(s, 0, sizeof *s);
    s->records = "$";
    s->max_pages = HTTP_DEFAULT_MAX_PAGES;
    http_parse_call(r, params, extract_keys, &s->call);
    if (h->json_type(params) != ETL_JSON_OBJECT)
        return;
    if (http_param(h, params, "records", &v) == HTTP_LITERAL) {
        http_check_path(r, v, "records");
        s->records = h->json_string(v, NULL);
    }
    int how = http_param(h, params, "fields", &v);
    if (how == HTTP_ABSENT)
        http_problem(r, "", "'fields' is required: an object of column name -> path in a record");
    if (how == HTTP_LITERAL) {
        if (h->json_type(v) != ETL_JSON_OBJECT || h->json_size(v) == 0) {
            http_problem(r, "fields", "must be a non-empty object of column name -> path");
        } else {
            s->fields = v;
            for (size_t i = 0; i < h->json_size(v); i++) {
                etl_json *p;
                const char *col = h->json_key_at(v, i, &p);
                size_t len = strlen(col);
                char f[320];
                snprintf(f, sizeof f, "fields.%s", col);
                if (len > 2 && strcmp(col + len - 2, ".$") == 0)
                    continue; /* the path itself comes from the input */
                http_check_path(r, p, f);
            }
        }
    }
    if (http_param(h, params, "pagination", &v) == HTTP_LITERAL)
        parse_pagination(r, v, s);
    http_get_int(r, params, "", "max_pages", 1, &s->max_pages);
}

bool http_extract_check(const etl_host *host, const etl_json *params, etl_checker *chk)
{
    http_report r = {.host = host, .chk = chk, .what = "http.extract"};
    extract_spec s;
    parse_extract(&r, params, &s);
    return r.problems == 0;
}

/* ---------- links ---------- */

/* The URL of the rel="next" link in a Link header (RFC 8288), malloc'd; NULL if none. */
static char *link_next(const char *v)
{
    const char *p = v;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p != '<') {
            p = strchr(p, ',');
            continue;
        }
        const char *url = p + 1, *end = strchr(url, '>');
        if (!end)
            return NULL;
        p = end + 1;
        bool next = false;
        while (*p && *p != ',') {
            if (*p != ';') {
                p++;
                continue;
            }
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            size_t nlen = strcspn(p, "=;, \t");
            bool rel = nlen == 3 && strncasecmp(p, "rel", 3) == 0;
            p += nlen;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p != '=')
                continue;
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            const char *val = p;
            size_t vlen;
            if (*p == '"') {
                val = ++p;
                const char *q = strchr(p, '"');
                vlen = q ? (size_t)(q - p) : strlen(p);
                p = q ? q + 1 : p + vlen;
            } else {
                vlen = strcspn(p, ";,");
                p += vlen;
            }
            /* rel may list several space-separated relation types */
            for (size_t i = 0; rel && i < vlen;) {
                size_t t = i;
                while (t < vlen && val[t] != ' ')
                    t++;
                if (t - i == 4 && strncasecmp(val + i, "next", 4) == 0)
                    next = true;
                i = t + 1;
            }
        }
        if (next)
            return strndup(url, (size_t)(end - url));
    }
    return NULL;
}

/* ref resolved against base (RFC 3986), malloc'd; NULL when either is not a URL. */
static char *resolve_url(const char *base, const char *ref)
{
    CURLU *u = curl_url();
    char *got = NULL, *out = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, ref, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &got, 0) == CURLUE_OK)
        out = strdup(got);
    curl_free(got);
    curl_url_cleanup(u);
    return out;
}

/* Same scheme, host and port: the connection's headers (credentials) may follow. */
static bool same_origin(const char *a, const char *b)
{
    static const CURLUPart parts[] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
    CURLU *ua = curl_url(), *ub = curl_url();
    bool same = ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
                curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK;
    for (size_t i = 0; i < 3 && same; i++) {
        char *x = NULL, *y = NULL;
        same = curl_url_get(ua, parts[i], &x, CURLU_DEFAULT_PORT) == CURLUE_OK &&
               curl_url_get(ub, parts[i], &y, CURLU_DEFAULT_PORT) == CURLUE_OK &&
               strcasecmp(x, y) == 0;
        curl_free(x);
        curl_free(y);
    }
    curl_url_cleanup(ua);
    curl_url_cleanup(ub);
    return same;
}

/* ---------- the run ---------- */

typedef struct extract_run {
    const etl_host *host;
    etl_task *task;
    extract_spec spec;
    http_client cl;
    http_response resp;
    etl_path *records;
    etl_path **fields;       /* n_cols */
    etl_column *cols;
    size_t n_cols;
    etl_path *next;
    etl_path *cursor;
    const char **vals;       /* one row being written, n_cols each */
    size_t *lens;
    char **owned;            /* texts made by json_dump, freed after the row */
    char (*nums)[24];        /* integer texts */
    etl_stage_writer *w;
    char *first_url;
    char *url;               /* this page's */
    char *prev_cursor;
    uint64_t rows;
    int64_t pages;
} extract_run;

static etl_status oom(const etl_host *h, etl_error *err)
{
    return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "http: out of memory");
}

static etl_status compile(extract_run *x, const char *text, etl_path **out, etl_error *err)
{
    *out = x->host->path_compile(text, err);
    return *out ? ETL_OK : err->status;
}

static etl_status prepare(extract_run *x, etl_error *err)
{
    const etl_host *h = x->host;
    extract_spec *s = &x->spec;
    x->n_cols = h->json_size(s->fields);
    x->fields = calloc(x->n_cols, sizeof *x->fields);
    x->cols = calloc(x->n_cols, sizeof *x->cols);
    x->vals = calloc(x->n_cols, sizeof *x->vals);
    x->lens = calloc(x->n_cols, sizeof *x->lens);
    x->owned = calloc(x->n_cols, sizeof *x->owned);
    x->nums = calloc(x->n_cols, sizeof *x->nums);
    if (!x->fields || !x->cols || !x->vals || !x->lens || !x->owned || !x->nums)
        return oom(h, err);
    etl_status st = compile(x, s->records, &x->records, err);
    for (size_t i = 0; i < x->n_cols && st == ETL_OK; i++) {
        etl_json *p;
        x->cols[i].name = h->json_key_at(s->fields, i, &p);
        x->cols[i].type = NULL;
        st = compile(x, h->json_string(p, NULL), &x->fields[i], err);
    }
    if (st == ETL_OK && s->next)
        st = compile(x, s->next, &x->next, err);
    if (st == ETL_OK && s->cursor)
        st = compile(x, s->cursor, &x->cursor, err);
    return st;
}

/* The URL of a page addressed by number, offset or cursor (NULL cursor: the first). */
static etl_status page_url(extract_run *x, int64_t at, const char *cursor, char **out,
                           etl_error *err)
{
    extract_spec *s = &x->spec;
    char at_text[24], size_text[24];
    const char *extra[4];
    size_t n = 0;
    snprintf(at_text, sizeof at_text, "%lld", (long long)at);
    snprintf(size_text, sizeof size_text, "%lld", (long long)s->size);
    if (s->kind == PG_PAGE || s->kind == PG_OFFSET) {
        extra[n * 2] = s->param;
        extra[n * 2 + 1] = at_text;
        n++;
        if (s->size_param) {
            extra[n * 2] = s->size_param;
            extra[n * 2 + 1] = size_text;
            n++;
        }
    } else if (s->kind == PG_CURSOR && cursor) {
        extra[0] = s->param;
        extra[1] = cursor;
        n = 1;
    }
    return http_build_url(&x->cl, &s->call, extra, n, out, err);
}

/* One record as one row: each field's value as text (see the contract in the docs). */
static etl_status write_row(extract_run *x, const etl_json *rec, etl_error *err)
{
    const etl_host *h = x->host;
    etl_status st = ETL_OK;
    for (size_t i = 0; i < x->n_cols && st == ETL_OK; i++) {
        etl_json *v = h->path_get(x->fields[i], rec);
        int64_t num;
        bool b;
        x->vals[i] = NULL;
        x->lens[i] = 0;
        switch (v ? h->json_type(v) : ETL_JSON_NULL) {
        case ETL_JSON_NULL:
            break; /* missing or null: SQL NULL */
        case ETL_JSON_STRING:
            x->vals[i] = h->json_string(v, &x->lens[i]);
            break;
        case ETL_JSON_INT:
            h->json_int(v, &num);
            x->lens[i] = (size_t)snprintf(x->nums[i], sizeof x->nums[i], "%lld", (long long)num);
            x->vals[i] = x->nums[i];
            break;
        case ETL_JSON_BOOL:
            h->json_bool(v, &b);
            x->vals[i] = b ? "true" : "false";
            x->lens[i] = b ? 4 : 5;
            break;
        default: /* reals (shortest round-trip text), objects and arrays (compact JSON) */
            x->owned[i] = h->json_dump(v, &x->lens[i]);
            x->vals[i] = x->owned[i];
            if (!x->owned[i])
                st = oom(h, err);
            break;
        }
    }
    if (st == ETL_OK)
        st = h->stage_row(x->w, x->vals, x->lens, err);
    for (size_t i = 0; i < x->n_cols; i++) {
        h->free(x->owned[i]);
        x->owned[i] = NULL;
    }
    return st;
}

static etl_status bad_page(extract_run *x, etl_error *err, const char *fmt, const char *a,
                           const char *b)
{
    char shown[512], msg[1024];
    http_redact_url(x->url, shown, sizeof shown);
    if (snprintf(msg, sizeof msg, fmt, a, b) >= (int)sizeof msg)
        memcpy(msg + sizeof msg - 4, "...", 4); /* a cause is one line; cut it visibly */
    return x->host->fail(err, ETL_ETASK, "Etl.HttpInvalidResponse", false,
                         "%s %s: page %lld: %s", x->spec.call.method, shown,
                         (long long)x->pages, msg);
}

static const char *type_name(etl_json_type t)
{
    static const char *const names[] = {"null", "a boolean", "an integer", "a number",
                                        "a string", "an array", "an object"};
    return (unsigned)t < 7 ? names[t] : "value";
}

/* After a page: the next page's URL in *out (NULL = that was the last page). */
static etl_status next_page(extract_run *x, const etl_json *doc, size_t n_recs,
                            int64_t *at, char **out, etl_error *err)
{
    const etl_host *h = x->host;
    extract_spec *s = &x->spec;
    *out = NULL;
    switch (s->kind) {
    case PG_NONE:
        return ETL_OK;
    case PG_PAGE:
    case PG_OFFSET:
        if (n_recs == 0)
            return ETL_OK;
        *at += s->kind == PG_PAGE ? 1 : (int64_t)n_recs;
        return page_url(x, *at, NULL, out, err);
    case PG_CURSOR: {
        etl_json *v = h->path_get(x->cursor, doc);
        char num[24];
        const char *text = NULL;
        int64_t i;
        if (!v || h->json_type(v) == ETL_JSON_NULL)
            return ETL_OK;
        if (h->json_int(v, &i)) {
            snprintf(num, sizeof num, "%lld", (long long)i);
            text = num;
        } else if (!(text = h->json_string(v, NULL))) {
            return bad_page(x, err, "the cursor at %s is %s, not a string or an integer",
                            s->cursor, type_name(h->json_type(v)));
        }
        if (!*text)
            return ETL_OK;
        if (x->prev_cursor && strcmp(x->prev_cursor, text) == 0)
            return bad_page(x, err, "the API returned the cursor '%s' again%s: stopping rather "
                            "than looping", text, "");
        free(x->prev_cursor);
        if (!(x->prev_cursor = strdup(text)))
            return oom(h, err);
        return page_url(x, 0, text, out, err);
    }
    case PG_NEXT_LINK: {
        char *link = NULL;
        if (x->next) {
            etl_json *v = h->path_get(x->next, doc);
            if (!v || h->json_type(v) == ETL_JSON_NULL)
                return ETL_OK;
            const char *str = h->json_string(v, NULL);
            if (!str)
                return bad_page(x, err, "the next link at %s is %s, not a string", s->next,
                                type_name(h->json_type(v)));
            if (!*str)
                return ETL_OK;
            link = strdup(str);
            if (!link)
                return oom(h, err);
        } else {
            const char *hv = http_header(&x->resp, "link");
            if (!hv || !(link = link_next(hv)))
                return ETL_OK;
        }
        char *url = resolve_url(x->url, link);
        free(link);
        if (!url)
            return bad_page(x, err, "the next link is not a valid URL%s%s", "", "");
        if (!same_origin(x->first_url, url)) {
            free(url);
            return bad_page(x, err, "the next link leads to another host, scheme or port; "
                            "the connection's headers are not sent there%s%s", "", "");
        }
        *out = url;
        return ETL_OK;
    }
    }
    return ETL_OK;
}

static etl_status run_pages(extract_run *x, etl_error *err)
{
    const etl_host *h = x->host;
    extract_spec *s = &x->spec;
    int64_t at = s->start;
    etl_status st = page_url(x, at, NULL, &x->url, err);
    if (st != ETL_OK)
        return st;
    if (!(x->first_url = strdup(x->url)))
        return oom(h, err);
    while (x->url) {
        char shown[512];
        if (x->pages == s->max_pages) {
            http_redact_url(x->url, shown, sizeof shown);
            return h->fail(err, ETL_ETASK, "Etl.HttpTooManyPages", false,
                           "%s %s: more than max_pages (%lld) pages; raise max_pages if the "
                           "API really has that many", s->call.method, shown,
                           (long long)s->max_pages);
        }
        if (h->cancelled(x->task))
            return h->fail(err, ETL_ECANCELLED, "States.Cancelled", false,
                           "http.extract: cancelled after %lld pages", (long long)x->pages);
        st = http_perform(&x->cl, &s->call, x->url, &x->resp, err);
        if (st != ETL_OK)
            return st;
        x->pages++;
        etl_error perr;
        memset(&perr, 0, sizeof perr);
        etl_json *doc = x->resp.body.len
                            ? h->json_parse(x->resp.body.p, x->resp.body.len, &perr)
                            : NULL;
        if (!doc) {
            const char *ct = http_header(&x->resp, "content-type");
            return bad_page(x, err, "the body is not JSON (Content-Type %s): %s",
                            ct ? ct : "none", x->resp.body.len ? perr.cause : "empty body");
        }
        etl_json *recs = h->path_get(x->records, doc);
        size_t n = 0;
        if (recs && h->json_type(recs) != ETL_JSON_NULL) {
            if (h->json_type(recs) != ETL_JSON_ARRAY)
                st = bad_page(x, err, "records (%s) selects %s, not an array", s->records,
                              type_name(h->json_type(recs)));
            else
                n = h->json_size(recs);
        }
        for (size_t i = 0; i < n && st == ETL_OK; i++)
            st = write_row(x, h->json_at(recs, i), err);
        char *next = NULL;
        if (st == ETL_OK) {
            x->rows += n;
            h->progress(x->task, n, x->resp.body.len);
            st = next_page(x, doc, n, &at, &next, err);
        }
        h->json_decref(doc);
        if (st != ETL_OK)
            return st;
        free(x->url);
        x->url = next;
    }
    return ETL_OK;
}

etl_status http_extract_run(const etl_host *host, etl_task *task, etl_conn *conn,
                            const etl_json *params, etl_json **out_result, etl_error *err)
{
    extract_run x;
    memset(&x, 0, sizeof x);
    x.host = host;
    x.task = task;
    *out_result = NULL;
    http_report r = {.host = host, .err = err, .what = "http.extract"};
    parse_extract(&r, params, &x.spec);
    if (r.problems)
        return err->status;
    bool client = false;
    etl_json *manifest = NULL;
    etl_status st = prepare(&x, err);
    if (st == ETL_OK)
        st = http_client_begin(&x.cl, host, task, conn, &x.spec.call, true, err);
    client = st == ETL_OK;
    if (st == ETL_OK) {
        x.w = host->stage_open(task, x.cols, x.n_cols, NULL, err);
        st = x.w ? ETL_OK : err->status;
    }
    if (st == ETL_OK)
        st = run_pages(&x, err);
    if (st == ETL_OK) {
        st = host->stage_finish(x.w, &manifest, err);
        x.w = NULL;
    }
    if (st == ETL_OK && manifest &&
        host->json_set(manifest, "pages", host->json_new_int(x.pages)) != 0)
        st = oom(host, err);
    if (st == ETL_OK) {
        *out_result = manifest;
        manifest = NULL;
    }
    if (manifest)
        host->json_decref(manifest);
    if (x.w)
        host->stage_abort(x.w);
    if (client)
        http_client_end(&x.cl);
    http_response_free(&x.resp);
    host->path_free(x.records);
    host->path_free(x.next);
    host->path_free(x.cursor);
    for (size_t i = 0; x.fields && i < x.n_cols; i++)
        host->path_free(x.fields[i]);
    free(x.fields);
    free(x.cols);
    free(x.vals);
    free(x.lens);
    free(x.owned);
    free(x.nums);
    free(x.first_url);
    free(x.url);
    free(x.prev_cursor);
    return st;
}
