/* A small scripted HTTP/1.1 server for the http connector's tests: listens on
 * 127.0.0.1 on a free port, prints the port on stdout, and serves the routes below.
 * It exits after --idle SECONDS without a request (default 30) or when its parent
 * exits, so a crashed test never leaves it behind.
 *
 * DESIGN: one detached thread per connection, keep-alive supported, requests with a
 * Content-Length body (no chunked uploads: libcurl sends a length for POSTFIELDS).
 * Shared state (the Retry-After counters) is guarded by `mu`.
 *
 * Routes (query parameters in brackets):
 *   /echo                 200 JSON {method, path, raw_query, query, headers, body}, and
 *                         two X-Multi response headers ("one", "two")
 *   /status/N             status N, text/plain body "status N: ..."
 *   /retry [key,times,status,after]  the first `times` requests of `key` get `status`
 *                         (default 429) with "Retry-After: after" (a number of seconds, or
 *                         "date" for an HTTP date 2 s ahead; no header when absent), then
 *                         200 {"ok":true,"attempts":n}
 *   /slow [ms]            200 text/plain, one byte every 100 ms for ms milliseconds
 *   /sleep [ms]           waits ms, then 200 {"slept":ms}
 *   /text                 text/plain UTF-8; /binary: bytes 0..255; /badjson: invalid JSON
 *                         as application/json; /problem: application/problem+json
 *   /big [bytes]          text/plain of that many 'x'
 *   /redirect [to]        302 to `to`
 *   /pages/next  [n,per,pad,page]        {"data":[..],"links":{"next":"/pages/next?..."|null}}
 *   /pages/link  [n,per,pad,page]        {"data":[..]} + Link: <...>; rel="next"
 *   /pages/page  [n,per_page,pad,page]   {"data":[..]} (page from 1; empty past the end)
 *   /pages/offset [n,limit,pad,offset]   {"items":[..]}
 *   /pages/cursor [n,per,pad,cursor]     {"data":[..],"meta":{"next_cursor":"c<i>"|null}}
 *   /pages/evil                          a next link to another host
 *   /pages/loop [cursor]                 always returns the same cursor
 *   /ping/...             (notify's tests) records {method, path, raw_query,
 *                         content_type, body} and answers 200 "OK"; a path containing
 *                         "/hang" first waits 10 s (or until the client hangs up)
 *   /pings                the recorded pings, a JSON array, oldest first
 * Record i (from 0): {"id":i, "name":"item-i", "big":9007199254740993+i, "score":i+0.5,
 * "active":i%2==0, "tags":["t",i], "note":null when i%3==0 else "say \"hi\", ok",
 * "pad":"x"*pad}. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD (64 * 1024)
#define MAX_BODY (16 * 1024 * 1024)

static atomic_llong last_activity; /* CLOCK_MONOTONIC seconds */
static int server_port;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *retry_counts; /* key -> count; guarded by mu */
static json_t *pings;        /* the /ping/ requests received; guarded by mu */

static long long now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct request {
    char method[16];
    char path[5200];
    char raw_query[5200];
    json_t *query;   /* name -> string, or array of strings when repeated */
    json_t *headers; /* lower-case name -> string */
    char *body;
    size_t body_len;
    bool close;
} request;

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

static char *decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static void parse_query(request *rq)
{
    rq->query = json_object();
    const char *p = rq->raw_query;
    while (*p) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        size_t kn = eq ? (size_t)(eq - p) : n;
        char *k = decode(p, kn);
        char *v = eq ? decode(eq + 1, n - kn - 1) : strdup("");
        json_t *old = json_object_get(rq->query, k);
        json_t *val = json_stringn(v, strlen(v));
        if (!val)
            val = json_string("<not utf-8>");
        if (!old) {
            json_object_set_new(rq->query, k, val);
        } else if (json_is_array(old)) {
            json_array_append_new(old, val);
        } else {
            json_t *arr = json_pack("[O]", old);
            json_array_append_new(arr, val);
            json_object_set_new(rq->query, k, arr);
        }
        free(k);
        free(v);
        p += n;
        if (*p == '&')
            p++;
    }
}

static const char *qget(const request *rq, const char *name, const char *dflt)
{
    json_t *v = json_object_get(rq->query, name);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static long qint(const request *rq, const char *name, long dflt)
{
    const char *v = qget(rq, name, NULL);
    return v ? strtol(v, NULL, 10) : dflt;
}

static bool send_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 302: return "Found";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

/* status line, headers (extra: full "Name: value\r\n" lines), body */
static bool respond(int fd, int status, const char *type, const char *extra, const void *body,
                    size_t len)
{
    char head[8192];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
                     status, reason(status), type, len, extra ? extra : "");
    return send_all(fd, head, (size_t)n) && send_all(fd, body, len);
}

static bool respond_json(int fd, int status, const char *extra, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    bool ok = respond(fd, status, "application/json", extra, text, strlen(text));
    free(text);
    json_decref(v);
    return ok;
}

static json_t *record(long i, long pad)
{
    char name[32];
    snprintf(name, sizeof name, "item-%ld", i);
    char *p = malloc((size_t)pad + 1);
    memset(p, 'x', (size_t)pad);
    p[pad] = '\0';
    json_t *r = json_pack("{s:I, s:s, s:I, s:f, s:b, s:[s,I], s:o, s:s}", "id", (json_int_t)i,
                          "name", name, "big", (json_int_t)9007199254740993LL + i, "score",
                          (double)i + 0.5, "active", i % 2 == 0, "tags", "t", (json_int_t)i,
                          "note", i % 3 == 0 ? json_null() : json_string("say \"hi\", ok"),
                          "pad", p);
    free(p);
    return r;
}

static json_t *records(long from, long count, long n, long pad)
{
    json_t *a = json_array();
    for (long i = from; i < from + count && i < n; i++)
        if (i >= 0)
            json_array_append_new(a, record(i, pad));
    return a;
}

static bool route_pages(int fd, const request *rq)
{
    const char *kind = rq->path + strlen("/pages/");
    long n = qint(rq, "n", 25), pad = qint(rq, "pad", 0);
    char extra[1024] = "";
    if (strcmp(kind, "next") == 0 || strcmp(kind, "link") == 0) {
        long per = qint(rq, "per", 10), page = qint(rq, "page", 1);
        json_t *data = records((page - 1) * per, per, n, pad);
        bool more = page * per < n;
        char next[512];
        snprintf(next, sizeof next, "/pages/%s?n=%ld&per=%ld&pad=%ld&page=%ld", kind, n, per,
                 pad, page + 1);
        if (kind[0] == 'n')
            return respond_json(fd, 200, NULL,
                                json_pack("{s:o, s:{s:o}}", "data", data, "links", "next",
                                          more ? json_string(next) : json_null()));
        if (more) /* "last" first: the parser must pick rel="next" */
            snprintf(extra, sizeof extra,
                     "Link: <http://127.0.0.1:%d/pages/link?page=999>; rel=\"last\", "
                     "<http://127.0.0.1:%d%s>; rel=\"next\"\r\n",
                     server_port, server_port, next);
        return respond_json(fd, 200, extra, json_pack("{s:o}", "data", data));
    }
    if (strcmp(kind, "page") == 0) {
        long per = qint(rq, "per_page", 10), page = qint(rq, "page", 1);
        return respond_json(fd, 200, NULL,
                            json_pack("{s:o}", "data", records((page - 1) * per, per, n, pad)));
    }
    if (strcmp(kind, "offset") == 0) {
        long limit = qint(rq, "limit", 10), off = qint(rq, "offset", 0);
        return respond_json(fd, 200, NULL,
                            json_pack("{s:o}", "items", records(off, limit, n, pad)));
    }
    if (strcmp(kind, "cursor") == 0) {
        long per = qint(rq, "per", 10);
        const char *c = qget(rq, "cursor", NULL);
        long at = c && c[0] == 'c' ? strtol(c + 1, NULL, 10) : 0;
        char next[32];
        snprintf(next, sizeof next, "c%ld", at + per);
        return respond_json(fd, 200, NULL,
                            json_pack("{s:o, s:{s:o}}", "data", records(at, per, n, pad), "meta",
                                      "next_cursor", at + per < n ? json_string(next) : json_null()));
    }
    if (strcmp(kind, "evil") == 0)
        return respond_json(fd, 200, NULL,
                            json_pack("{s:o, s:{s:s}}", "data", records(0, 2, 2, 0), "links",
                                      "next", "http://127.0.0.2:9/steal"));
    if (strcmp(kind, "loop") == 0)
        return respond_json(fd, 200, NULL,
                            json_pack("{s:o, s:{s:s}}", "data", records(0, 1, 1, 0), "meta",
                                      "next_cursor", "same"));
    return respond(fd, 404, "text/plain", NULL, "no such page kind", 17);
}

static bool route(int fd, request *rq)
{
    const char *p = rq->path;
    if (strcmp(p, "/echo") == 0) {
        json_t *body;
        json_t *ct = json_object_get(rq->headers, "content-type");
        if (rq->body_len && ct && strstr(json_string_value(ct), "json"))
            body = json_loadb(rq->body, rq->body_len, JSON_DECODE_ANY, NULL);
        else
            body = json_stringn(rq->body ? rq->body : "", rq->body_len);
        if (!body)
            body = json_string("<undecodable>");
        json_t *v = json_pack("{s:s, s:s, s:s, s:O, s:O, s:o}", "method", rq->method, "path",
                              rq->path, "raw_query", rq->raw_query, "query", rq->query,
                              "headers", rq->headers, "body", body);
        return respond_json(fd, 200, "X-Multi: one\r\nX-Multi: two\r\n", v);
    }
    if (strncmp(p, "/status/", 8) == 0) {
        int st = atoi(p + 8);
        char body[128];
        int n = snprintf(body, sizeof body, "status %d: the test server was asked for it\nline 2",
                         st);
        return respond(fd, st, "text/plain", NULL, body, (size_t)n);
    }
    if (strcmp(p, "/retry") == 0) {
        const char *key = qget(rq, "key", "default");
        long times = qint(rq, "times", 1), status = qint(rq, "status", 429);
        const char *after = qget(rq, "after", NULL);
        pthread_mutex_lock(&mu);
        json_int_t count = json_integer_value(json_object_get(retry_counts, key));
        json_object_set_new(retry_counts, key, json_integer(count + 1));
        pthread_mutex_unlock(&mu);
        if (count >= times)
            return respond_json(fd, 200, NULL,
                                json_pack("{s:b, s:I}", "ok", 1, "attempts", count + 1));
        char extra[128] = "";
        if (after && strcmp(after, "date") == 0) {
            time_t t = time(NULL) + 2;
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(extra, sizeof extra, "Retry-After: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        } else if (after) {
            snprintf(extra, sizeof extra, "Retry-After: %s\r\n", after);
        }
        return respond(fd, (int)status, "text/plain", extra, "slow down", 9);
    }
    if (strcmp(p, "/slow") == 0) {
        long ms = qint(rq, "ms", 5000);
        char head[256];
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %ld\r\n\r\n",
                         ms / 100);
        if (!send_all(fd, head, (size_t)n))
            return false;
        for (long i = 0; i < ms / 100; i++) {
            sleep_ms(100);
            atomic_store(&last_activity, now_s());
            if (!send_all(fd, ".", 1))
                return false;
        }
        return true;
    }
    if (strcmp(p, "/sleep") == 0) {
        long ms = qint(rq, "ms", 5000);
        /* wait, but give up when the client hangs up */
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)ms) > 0)
            return false;
        return respond_json(fd, 200, NULL, json_pack("{s:I}", "slept", (json_int_t)ms));
    }
    if (strcmp(p, "/text") == 0) {
        const char *t = "h\xc3\xa9llo, w\xc3\xb6rld\n";
        return respond(fd, 200, "text/plain; charset=utf-8", NULL, t, strlen(t));
    }
    if (strcmp(p, "/binary") == 0) {
        unsigned char b[256];
        for (int i = 0; i < 256; i++)
            b[i] = (unsigned char)i;
        return respond(fd, 200, "application/octet-stream", NULL, b, sizeof b);
    }
    if (strcmp(p, "/badjson") == 0)
        return respond(fd, 200, "application/json", NULL, "{not json", 9);
    if (strcmp(p, "/problem") == 0)
        return respond(fd, 200, "application/problem+json; charset=utf-8", NULL,
                       "{\"title\":\"x\",\"n\":12345678901234567}",
                       strlen("{\"title\":\"x\",\"n\":12345678901234567}"));
    if (strcmp(p, "/big") == 0) {
        long n = qint(rq, "bytes", 1000);
        char *b = malloc((size_t)n + 1);
        memset(b, 'x', (size_t)n);
        bool ok = respond(fd, 200, "text/plain", NULL, b, (size_t)n);
        free(b);
        return ok;
    }
    if (strcmp(p, "/redirect") == 0) {
        char extra[1200];
        snprintf(extra, sizeof extra, "Location: %s\r\n", qget(rq, "to", "/echo"));
        return respond(fd, 302, "text/plain", extra, "moved", 5);
    }
    if (strncmp(p, "/pages/", 7) == 0)
        return route_pages(fd, rq);
    if (strncmp(p, "/ping/", 6) == 0) {
        json_t *ct = json_object_get(rq->headers, "content-type");
        json_t *body = json_stringn(rq->body ? rq->body : "", rq->body_len);
        json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:o}", "method", rq->method, "path",
                                rq->path, "raw_query", rq->raw_query, "content_type",
                                json_is_string(ct) ? json_string_value(ct) : "", "body",
                                body ? body : json_string("<not utf-8>"));
        pthread_mutex_lock(&mu);
        json_array_append_new(pings, rec);
        pthread_mutex_unlock(&mu);
        if (strstr(p, "/hang")) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (poll(&pfd, 1, 10000) > 0)
                return false;
        }
        return respond(fd, 200, "text/plain", NULL, "OK", 2);
    }
    if (strcmp(p, "/pings") == 0) {
        pthread_mutex_lock(&mu);
        json_t *copy = json_deep_copy(pings);
        pthread_mutex_unlock(&mu);
        return respond_json(fd, 200, NULL, copy);
    }
    return respond(fd, 404, "text/plain", NULL, "not found", 9);
}

/* Read one request from fd, with *buf / *have holding bytes already received. */
static int read_request(int fd, char *buf, size_t *have, request *rq)
{
    char *end;
    while (!(end = memmem(buf, *have, "\r\n\r\n", 4))) {
        if (*have >= MAX_HEAD)
            return -1;
        ssize_t r = recv(fd, buf + *have, MAX_HEAD - *have, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        *have += (size_t)r;
    }
    atomic_store(&last_activity, now_s());
    size_t head_len = (size_t)(end - buf) + 4;
    *end = '\0';
    char target[5200];
    if (sscanf(buf, "%15s %5199s", rq->method, target) != 2)
        return -1;
    char *q = strchr(target, '?');
    snprintf(rq->raw_query, sizeof rq->raw_query, "%s", q ? q + 1 : "");
    if (q)
        *q = '\0';
    snprintf(rq->path, sizeof rq->path, "%s", target);
    rq->headers = json_object();
    size_t content_length = 0;
    for (char *line = strstr(buf, "\r\n"); line && line[2];) {
        line += 2;
        char *next = strstr(line, "\r\n");
        if (next)
            *next = '\0';
        char *colon = strchr(line, ':');
        if (colon) {
            *colon = '\0';
            for (char *c = line; *c; c++)
                *c = (char)((*c >= 'A' && *c <= 'Z') ? *c + 32 : *c);
            char *v = colon + 1;
            while (*v == ' ')
                v++;
            json_object_set_new(rq->headers, line, json_string(v));
            if (strcmp(line, "content-length") == 0)
                content_length = strtoul(v, NULL, 10);
            if (strcmp(line, "connection") == 0 && strcasecmp(v, "close") == 0)
                rq->close = true;
        }
        if (!next)
            break;
        line = next;
    }
    if (content_length > MAX_BODY)
        return -1;
    rq->body = malloc(content_length + 1);
    size_t got = *have - head_len < content_length ? *have - head_len : content_length;
    memcpy(rq->body, buf + head_len, got);
    while (got < content_length) {
        ssize_t r = recv(fd, rq->body + got, content_length - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        got += (size_t)r;
    }
    rq->body[content_length] = '\0';
    rq->body_len = content_length;
    /* keep what followed this request (a pipelined next one) */
    size_t used = head_len + (content_length < *have - head_len ? content_length : *have - head_len);
    memmove(buf, buf + used, *have - used);
    *have -= used;
    parse_query(rq);
    return 1;
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(MAX_HEAD);
    size_t have = 0;
    for (;;) {
        request rq;
        memset(&rq, 0, sizeof rq);
        int r = read_request(fd, buf, &have, &rq);
        bool ok = r == 1 && route(fd, &rq) && !rq.close;
        json_decref(rq.query);
        json_decref(rq.headers);
        free(rq.body);
        atomic_store(&last_activity, now_s());
        if (!ok)
            break;
    }
    free(buf);
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    long idle = 30;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--idle") == 0)
            idle = strtol(argv[++i], NULL, 10);
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        return 0; /* the parent died before prctl */
    signal(SIGPIPE, SIG_IGN);
    retry_counts = json_object();
    pings = json_array();

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 128) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
        perror("http_test_server");
        return 1;
    }
    server_port = ntohs(sa.sin_port);
    printf("%d\n", server_port);
    fflush(stdout);
    atomic_store(&last_activity, now_s());
    for (;;) {
        struct pollfd pfd = {.fd = ls, .events = POLLIN};
        int r = poll(&pfd, 1, 1000);
        if (getppid() != parent || now_s() - atomic_load(&last_activity) > idle)
            return 0;
        if (r <= 0)
            continue;
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        atomic_store(&last_activity, now_s());
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, serve, (void *)(intptr_t)fd) != 0)
            close(fd);
        pthread_attr_destroy(&attr);
    }
}
