/* Connection pools: one per named connection, opened lazily, lent to one task at a
 * time and kept for the rest of the run.
 *
 * The scheduler guarantees that at most max_connections tasks of one connection run at
 * once (extra tasks wait in the scheduler, holding no worker), so a pool never opens
 * more than max_connections connections. Thread-safe: acquire/release run on workers. */
#ifndef ETL_CONNPOOL_H
#define ETL_CONNPOOL_H

#include <etlrun/connector.h>

#include "machine.h"

typedef struct connpool connpool;

connpool *connpool_new(const pipeline *pl);
/* Free every idle connection (closing it) and the pools. Main thread, after the run. */
void connpool_free(connpool *cp);
/* Lend a connection of pl->conns[idx]: an idle one still alive, else a new one. */
etl_status connpool_acquire(connpool *cp, int idx, etl_task *task, etl_conn **out,
                            etl_error *err);
/* Give it back; discard closes it (after a connection error, or a cancelled action
 * that may have left it mid-protocol). */
void connpool_release(connpool *cp, int idx, etl_conn *c, bool discard);
/* The most connections of pl->conns[idx] that were open at the same time. */
int connpool_peak(const connpool *cp, int idx);

#endif
