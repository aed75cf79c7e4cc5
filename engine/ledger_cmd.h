/* `etlrun ledger PIPELINE [--key K] [--limit N]`: the recent loads of a pipeline, read
 * from the load ledger of each of its postgres and mysql connections.
 *
 * main.c --> ledger_cmd --(open, the connector's `query` action, close)--> warehouses */
#ifndef ETL_LEDGER_CMD_H
#define ETL_LEDGER_CMD_H

#include <stdio.h>

#include "machine.h"

/* The newest `limit` loads (limit <= 0: LEDGER_CMD_LIMIT) of pipeline pl->name, for
 * key only when key is not NULL, over every connection of pl whose connector is
 * postgres or mysql and whose ledger is on (setting `ledger`, not false; table
 * `ledger_table` or etlrun_load_ledger), printed on out as a table, newest first:
 * CONNECTION LOADED_AT RUN_ID STATE KEY TABLE MODE ROWS BYTES (LOADED_AT in UTC, to the
 * second). A connection whose ledger table does not exist yet has no loads. Problems
 * (no such connection, a connection or query that fails) are printed on stderr, naming
 * the connection. Returns 0 when every ledger was read, 1 otherwise. Runs the
 * connectors' global and thread init itself: main thread, with no run in progress. */
int ledger_cmd(const pipeline *pl, const char *key, int limit, FILE *out);

#define LEDGER_CMD_LIMIT 20

#endif
