/* JSONPath for ASL: Reference Paths (InputPath, OutputPath, ResultPath, Variable,
 * ItemsPath, *Path comparisons) and the full query paths of payload templates.
 *
 * Grammar: root "$" (state input) or "$$" (context object), then any of
 *   .name   ['name'] (with \' and \\ escapes)   [n]   [-n] (from the end)
 *   [*]  .*  [a:b] (either bound optional, negatives from the end)   ..name  ..[n]
 * A Reference Path allows only .name, ['name'] and [n] (n >= 0): it names one node.
 *
 * VALUES ARE IMMUTABLE. A json_t reachable from a state's input or output may be shared
 * by other paths of the execution (Map items, Parallel branches). Nothing here mutates
 * its arguments: path_set copies the objects it changes. */
#ifndef ETL_PATH_H
#define ETL_PATH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include <etlrun/error.h>

typedef struct path path;

typedef enum path_kind {
    PATH_REFERENCE, /* selects exactly one node; no wildcards, slices, negative or deep */
    PATH_QUERY,     /* full JSONPath for ".$" template values */
} path_kind;

/* Compile text. On a syntax error returns NULL and writes a message naming the column
 * within the path (e.g. "unexpected ']' at offset 4 in path '$.a]'") to errbuf. */
path *path_compile(const char *text, path_kind kind, char *errbuf, size_t errlen);
void path_free(path *p);
const char *path_text(const path *p);
bool path_is_context(const path *p); /* rooted at $$ */
bool path_is_root(const path *p);    /* exactly "$" (or "$$") */
/* True when the path can match more than one node ([*], .*, slices, ..): its query
 * result is then always an array. */
bool path_is_indefinite(const path *p);

/* Reference lookup: borrowed reference to the one node, or NULL when it is missing. */
json_t *path_get(const path *p, json_t *root);

/* Query: NEW reference. A definite path returns the node itself; an indefinite path
 * returns an array of every match in document order (possibly empty). Returns NULL
 * when a definite path matches nothing. */
json_t *path_query(const path *p, json_t *root);

/* ResultPath: a NEW root equal to root with value placed at p (value is not stolen).
 * Missing intermediate objects are created. When an intermediate node is an array
 * or a scalar, or root itself is not an object while p is not "$", returns NULL and
 * fills err with States.ResultPathMatchFailure naming the path. p must be a Reference
 * Path rooted at $. Neither root nor value is modified. */
json_t *path_set(const path *p, json_t *root, json_t *value, etl_error *err);

#endif
