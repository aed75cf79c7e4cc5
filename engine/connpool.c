/* Connection pools (see connpool.h). Lock order: each pool's mu is a leaf; connector
 * open/close/alive run without it. */
#include "connpool.h"

#include <pthread.h>
#include <stdlib.h>

#include "host.h"

typedef struct pool1 {
    pthread_mutex_t mu;
    etl_conn **idle;          /* guarded by mu */
    size_t n_idle;            /* guarded by mu */
    int open;                 /* guarded by mu: idle + lent */
    int peak;                 /* guarded by mu */
    const conn_def *def;
} pool1;

struct connpool {
    pool1 *p;
    size_t n;
};

connpool *connpool_new(const pipeline *pl)
{
    connpool *cp = calloc(1, sizeof *cp);
    if (!cp)
        return NULL;
    cp->n = pl->n_conns;
    cp->p = calloc(cp->n ? cp->n : 1, sizeof *cp->p);
    if (!cp->p) {
        free(cp);
        return NULL;
    }
    for (size_t i = 0; i < cp->n; i++) {
        pthread_mutex_init(&cp->p[i].mu, NULL);
        cp->p[i].def = &pl->conns[i];
        cp->p[i].idle = calloc((size_t)pl->conns[i].max_connections, sizeof(etl_conn *));
        if (!cp->p[i].idle) {
            cp->n = i + 1; /* release would store into a NULL idle array */
            connpool_free(cp);
            return NULL;
        }
    }
    return cp;
}

void connpool_free(connpool *cp)
{
    if (!cp)
        return;
    for (size_t i = 0; i < cp->n; i++) {
        pool1 *p = &cp->p[i];
        for (size_t k = 0; k < p->n_idle; k++)
            p->def->connector->close(host_services(), p->idle[k]);
        free(p->idle);
        pthread_mutex_destroy(&p->mu);
    }
    free(cp->p);
    free(cp);
}

etl_status connpool_acquire(connpool *cp, int idx, etl_task *task, etl_conn **out,
                            etl_error *err)
{
    pool1 *p = &cp->p[idx];
    const etl_connector *c = p->def->connector;
    for (;;) {
        etl_conn *conn = NULL;
        pthread_mutex_lock(&p->mu);
        if (p->n_idle > 0)
            conn = p->idle[--p->n_idle];
        else
            p->open++; /* reserve the slot before opening, outside the lock */
        if (p->open > p->peak)
            p->peak = p->open;
        pthread_mutex_unlock(&p->mu);
        if (conn) {
            if (!c->alive || c->alive(host_services(), conn)) {
                *out = conn;
                return ETL_OK;
            }
            connpool_release(cp, idx, conn, true); /* dead: close, then try again */
            continue;
        }
        etl_status st = c->open(host_services(), task, host_wrap(p->def->settings), &conn, err);
        if (st != ETL_OK || !conn) {
            pthread_mutex_lock(&p->mu);
            p->open--;
            pthread_mutex_unlock(&p->mu);
            if (st == ETL_OK)
                st = etl_fail(err, ETL_ECONNECT, "Etl.ConnectionFailed",
                              "connector '%s' returned no connection for '%s'", c->name,
                              p->def->name);
            return st;
        }
        *out = conn;
        return ETL_OK;
    }
}

void connpool_release(connpool *cp, int idx, etl_conn *conn, bool discard)
{
    pool1 *p = &cp->p[idx];
    if (!discard) {
        pthread_mutex_lock(&p->mu);
        if (p->n_idle < (size_t)p->def->max_connections) {
            p->idle[p->n_idle++] = conn;
            conn = NULL;
        }
        pthread_mutex_unlock(&p->mu);
        if (!conn)
            return;
    }
    p->def->connector->close(host_services(), conn);
    pthread_mutex_lock(&p->mu);
    p->open--;
    pthread_mutex_unlock(&p->mu);
}

int connpool_peak(const connpool *cp, int idx)
{
    pool1 *p = &cp->p[idx];
    pthread_mutex_lock(&p->mu);
    int peak = p->peak;
    pthread_mutex_unlock(&p->mu);
    return peak;
}
