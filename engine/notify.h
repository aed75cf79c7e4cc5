/* Pings for cron-monitoring services (healthchecks.io convention): URL/start when a
 * run starts, URL on success, URL/fail on failure with the summary as the body. A ping
 * is bounded by its timeout and never fails the run: a problem is logged as a warning. */
#ifndef ETL_NOTIFY_H
#define ETL_NOTIFY_H

typedef enum notify_event { NOTIFY_START, NOTIFY_SUCCESS, NOTIFY_FAIL } notify_event;

/* POST (body != NULL, sent as application/json) or GET to url + "/start" | "" |
 * "/fail". Returns within timeout_s (default 10 when <= 0) whatever the endpoint does.
 * Call only after curl_global_init has run (the http connector's global_init, or
 * notify_init). */
void notify_ping(const char *url, notify_event ev, const char *body, double timeout_s);
/* curl_global_init once, for runs that have no http connector initialised. */
void notify_init(void);

#endif
