/* A connector plugin for the loader's tests, compiled several times with different
 * TP_* macros into broken variants (wrong ABI, short struct, missing symbol, NULL run,
 * duplicate name). The good variant has:
 *   connection settings {url: required string}; open/close count live connections;
 *   tp.echo   returns its Parameters;
 *   tp.sleep  (needs a connection) sleeps Parameters.ms, checking cancellation;
 *   tp.stubborn sleeps Parameters.ms and ignores cancellation (a plugin that hangs);
 *   tp.peak   returns the most connections that were open at once. */
#include <etlrun/connector.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#ifndef TP_NAME
#define TP_NAME "tp"
#endif

struct etl_conn {
    int id;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int open_now, open_peak;

static bool check_settings(const etl_host *h, const etl_json *s, etl_checker *chk)
{
    etl_json *url = h->json_get(s, "url");
    if (!url || h->json_type(url) != ETL_JSON_STRING) {
        h->check_error(chk, "", "needs 'url' (a string)");
        return false;
    }
    return true;
}

static etl_status open_conn(const etl_host *h, etl_task *t, const etl_json *s,
                            etl_conn **out, etl_error *err)
{
    (void)t, (void)s, (void)err, (void)h;
    etl_conn *c = malloc(sizeof *c);
    pthread_mutex_lock(&mu);
    c->id = ++open_now;
    if (open_now > open_peak)
        open_peak = open_now;
    pthread_mutex_unlock(&mu);
    *out = c;
    return ETL_OK;
}

static void close_conn(const etl_host *h, etl_conn *c)
{
    (void)h;
    pthread_mutex_lock(&mu);
    open_now--;
    pthread_mutex_unlock(&mu);
    free(c);
}

static etl_status echo(const etl_host *h, etl_task *t, etl_conn *c, const etl_json *p,
                       etl_json **out, etl_error *err)
{
    (void)t, (void)c, (void)err;
    *out = h->json_incref((etl_json *)p);
    return ETL_OK;
}

static etl_status sleep_ms(const etl_host *h, etl_task *t, etl_conn *c, const etl_json *p,
                           etl_json **out, etl_error *err)
{
    (void)c;
    int64_t ms = 0;
    h->json_int(h->json_get(p, "ms"), &ms);
    for (int64_t i = 0; i < ms; i += 10) {
        if (h->cancelled(t))
            return h->fail(err, ETL_ECANCELLED, "States.Cancelled", false, "cancelled");
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    *out = h->json_new_int(ms);
    return ETL_OK;
}

static etl_status stubborn(const etl_host *h, etl_task *t, etl_conn *c, const etl_json *p,
                           etl_json **out, etl_error *err)
{
    (void)t, (void)c, (void)err;
    int64_t ms = 0;
    h->json_int(h->json_get(p, "ms"), &ms);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    *out = h->json_new_int(ms);
    return ETL_OK;
}

static etl_status peak(const etl_host *h, etl_task *t, etl_conn *c, const etl_json *p,
                       etl_json **out, etl_error *err)
{
    (void)t, (void)c, (void)p, (void)err;
    pthread_mutex_lock(&mu);
    int v = open_peak;
    pthread_mutex_unlock(&mu);
    *out = h->json_new_int(v);
    return ETL_OK;
}

static bool check_echo(const etl_host *h, const etl_json *p, etl_checker *chk)
{
    if (h->json_get(p, "forbidden")) {
        h->check_error(chk, "forbidden", "is not allowed here");
        return false;
    }
    return true;
}

static const etl_action actions[] = {
    {sizeof(etl_action), "echo", "return the Parameters", 0, check_echo, echo},
#ifdef TP_NULL_RUN
    {sizeof(etl_action), "broken", "has no run function", 0, NULL, NULL},
#endif
    {sizeof(etl_action), "sleep", "sleep ms milliseconds", ETL_ACTION_NEEDS_CONNECTION, NULL,
     sleep_ms},
    {sizeof(etl_action), "peak", "most connections open at once", 0, NULL, peak},
    {sizeof(etl_action), "stubborn", "sleep ms milliseconds, ignoring cancellation", 0, NULL,
     stubborn},
    {0, NULL, NULL, 0, NULL, NULL},
};

static const etl_connector connector = {
#ifdef TP_ABI
    .abi_version = TP_ABI,
#else
    .abi_version = ETL_CONNECTOR_ABI_VERSION,
#endif
#ifdef TP_SIZE
    .struct_size = TP_SIZE,
#else
    .struct_size = sizeof(etl_connector),
#endif
    .name = TP_NAME,
    .version = "1.0-test",
    .description = "test plugin",
    .check_settings = check_settings,
    .open = open_conn,
    .close = close_conn,
    .actions = actions,
};

#ifdef TP_NO_ENTRY
const etl_connector *etl_connector_entry_misspelled(void) { return &connector; }
#else
const etl_connector *etl_connector_entry(void) { return &connector; }
#endif
