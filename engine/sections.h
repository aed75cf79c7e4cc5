/* The etlrun sections of a pipeline beside the ASL machine: `plugins:` (extra
 * connector shared objects), `connections:` (named connections, their connector type,
 * max_connections and settings), `staging:` (where staged files go), `retention:` (how
 * many runs the state directory keeps) and `notify:` (cron-monitor pings). */
#ifndef ETL_SECTIONS_H
#define ETL_SECTIONS_H

#include "diag.h"
#include "doc.h"
#include "machine.h"

/* Compile the sections found in root into pl (pl->reg must exist). Reports every
 * problem to d with its position. */
void pipeline_compile_sections(pipeline *pl, const doc_node *root, diag *d);

/* Replace every "${env:NAME}" in the strings of v (recursively) with the variable's
 * value. Returns a NEW value, or NULL after reporting each missing variable to d at
 * the position of the string that names it (node mirrors v). "$${" escapes a literal
 * "${". */
json_t *sections_interpolate_env(const doc_node *node, diag *d);

#endif
