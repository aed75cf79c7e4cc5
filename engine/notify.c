/* Cron-monitor pings (healthchecks.io convention) with libcurl: URL/start, URL, and
 * URL/fail with the summary as the body. Called on the main thread around the run.
 *
 * A ping never fails the run and never outlasts its timeout: the whole transfer, DNS
 * and connect included, is bounded by CURLOPT_TIMEOUT_MS (with NOSIGNAL, so the
 * resolver's timeout is not a SIGALRM). Such URLs usually embed a secret token in the
 * path or query: messages name only scheme://host[:port]. */
#include "notify.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "version.h"

#define BODY_MAX (100 * 1024) /* healthchecks.io keeps at most 100 KB of a ping body */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void notify_init(void) { pthread_once(&init_once, global_init); }

/* "scheme://host[:port]" of url, without user info, path, query or fragment. */
static void url_origin(const char *url, char *buf, size_t len)
{
    const char *sep = strstr(url, "://");
    if (!sep) {
        snprintf(buf, len, "(a URL without a scheme)");
        return;
    }
    const char *host = sep + 3;
    size_t n = strcspn(host, "/?#");
    /* user:password@host: the last '@' before the path ends the user info */
    for (size_t i = n; i > 0; i--)
        if (host[i - 1] == '@') {
            n -= i;
            host += i;
            break;
        }
    snprintf(buf, len, "%.*s://%.*s", (int)(sep - url), url, (int)n, host);
}

/* url with suffix appended to its path (before any query or fragment). malloc'd. */
static char *ping_url(const char *url, const char *suffix)
{
    const char *sep = strstr(url, "://");
    const char *path = sep ? sep + 3 + strcspn(sep + 3, "/?#") : url;
    size_t at = (size_t)(path - url) + strcspn(path, "?#");
    size_t slen = strlen(suffix), ulen = strlen(url);
    /* "https://hc-ping.com/uuid/" + "/start" would double the slash */
    size_t cut = at;
    if (slen && cut > 0 && url[cut - 1] == '/')
        cut--;
    char *out = malloc(ulen + slen + 1);
    if (!out)
        return NULL;
    memcpy(out, url, cut);
    memcpy(out + cut, suffix, slen);
    memcpy(out + cut + slen, url + at, ulen - at + 1);
    return out;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

void notify_ping(const char *url, notify_event ev, const char *body, double timeout_s)
{
    static const char *const suffixes[] = {"/start", "", "/fail"};
    static const char *const names[] = {"start", "success", "fail"};
    if (!url || !*url || (int)ev < 0 || ev > NOTIFY_FAIL)
        return;
    if (timeout_s <= 0)
        timeout_s = 10;
    long ms = (long)(timeout_s * 1000);
    if (ms < 1)
        ms = 1;
    char origin[256];
    url_origin(url, origin, sizeof origin);
    CURL *c = NULL;
    struct curl_slist *hdr = NULL;
    char *full = ping_url(url, suffixes[ev]);
    if (!full) {
        log_msg(ETL_LOG_WARN, NULL, NULL, NULL, "notify: %s ping to %s not sent: out of memory",
                names[ev], origin);
        goto out;
    }
    c = curl_easy_init();
    if (!c) {
        log_msg(ETL_LOG_WARN, NULL, NULL, NULL,
                "notify: %s ping to %s not sent: cannot create a curl handle", names[ev], origin);
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "etlrun/" ETLRUN_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (body) {
        size_t n = strlen(body);
        hdr = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(n > BODY_MAX ? BODY_MAX : n));
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    /* curl's own messages may quote the URL; only its generic code text is logged */
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        log_msg(ETL_LOG_WARN, NULL, NULL, NULL, "notify: %s ping to %s failed: %s", names[ev],
                origin, curl_easy_strerror(rc));
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 400)
        log_msg(ETL_LOG_WARN, NULL, NULL, NULL, "notify: %s ping to %s answered HTTP %ld",
                names[ev], origin, status);
    else
        log_msg(ETL_LOG_DEBUG, NULL, NULL, NULL, "notify: %s ping to %s: HTTP %ld", names[ev],
                origin, status);
out:
    curl_slist_free_all(hdr);
    if (c)
        curl_easy_cleanup(c);
    free(full);
}
