/* The connector registry: built-in connectors and plugins loaded from shared objects,
 * checked against the interface before use.
 *
 * Plugins are found, in this order, through the pipeline's `plugins:` list (files or
 * directories, relative to the pipeline file), $ETLRUN_PLUGIN_PATH (directories,
 * ':'-separated) and the installed plugin directory (ETLRUN_PLUGIN_DIR). A connector
 * named X is looked for as X.so or etlrun-X.so in each directory. */
#ifndef ETL_PLUGINS_H
#define ETL_PLUGINS_H

#include <etlrun/connector.h>
#include <stdio.h>

#include "diag.h"

/* Built-in connectors, each defined in its connectors/NAME/ folder. */
const etl_connector *etl_builtin_file(void);
const etl_connector *etl_builtin_http(void);
const etl_connector *etl_builtin_postgres(void);
const etl_connector *etl_builtin_mysql(void);

typedef struct registry registry;

registry *registry_new(void);         /* with the built-ins */
void registry_free(registry *r);      /* dlclose()s the plugins */
/* Load the plugin at path (a .so). Problems go to d at pos, naming the file. */
bool registry_load(registry *r, const char *path, diag *d, doc_pos pos);
/* Add every plugin of a `plugins:` entry (a file, or a directory of *.so). */
bool registry_load_path(registry *r, const char *path, diag *d, doc_pos pos);
/* Find a connector by name, searching $ETLRUN_PLUGIN_PATH and the installed directory
 * when it is not loaded yet. NULL when not found (a load problem goes to d at pos). */
const etl_connector *registry_find(registry *r, const char *name, diag *d, doc_pos pos);
/* The action of c named name, or NULL. Reads only what c's struct_size covers. */
const etl_action *registry_action(const etl_connector *c, const char *name);
/* For `etlrun plugins`: every built-in and every plugin in the search path. */
void registry_list(registry *r, FILE *out);
/* Run every global_init once / global_cleanup once (main thread). */
etl_status registry_global_init(registry *r, etl_error *err);
void registry_global_cleanup(registry *r);
/* Per worker thread. */
void registry_thread_init(registry *r);
void registry_thread_end(registry *r);

/* `etlrun plugin check FILE.so`: load and check a plugin the way a compiler reports:
 * "FILE: error: ..." lines on out. Returns the number of errors. */
int plugin_check(const char *file, FILE *out);

#endif
