/* The loaded definition: a tree that mirrors the YAML/JSON text, with the
 * line:column of every node and key, and the equivalent jansson value.
 *
 * pipeline text --doc_load--> doc (this) --machine_compile--> machine
 *
 * The whole tree is owned by the doc; node pointers and json values stay valid until
 * doc_free(). Callers that keep a json value beyond that take a reference (json_incref). */
#ifndef ETL_DOC_H
#define ETL_DOC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "diag.h"

typedef struct doc_node doc_node;

typedef struct doc_member {
    const char *key;  /* object key, UTF-8, NUL-terminated */
    doc_pos key_pos;  /* where the key is written */
    doc_node *value;
} doc_member;

struct doc_node {
    json_t *json;         /* this subtree as a jansson value (owned by the doc) */
    doc_pos pos;          /* where the value starts */
    size_t n;             /* number of members (object) or items (array); 0 for scalars */
    doc_member *members;  /* objects only, in document order */
    doc_node **items;     /* arrays only */
};

typedef struct doc {
    char *file;     /* path as given by the caller, for messages */
    doc_node *root;
    void *arena;    /* private */
} doc;

/* Load a pipeline file. A name ending in ".json" is parsed as strict JSON; anything
 * else as YAML (1.2 core schema: only true/false, null/~, and numbers are untyped
 * scalars; "yes", "on" and friends stay strings). Integers keep 64-bit precision.
 * YAML anchors/aliases and merge keys ("<<: *base", "<<: [*a, *b]"; keys written in
 * the mapping win) are supported; an alias node has the alias's position and shares
 * the anchored node's children. Rejected: more than one document, tags other than
 * !!str/!!int/!!float/!!bool/!!null, .inf/.nan, non-scalar keys.
 * Errors (syntax, duplicate keys, unsupported YAML features) go to d with positions;
 * returns NULL when any was found. The caller frees the result with doc_free(). */
doc *doc_load_file(const char *path, diag *d);
/* Same, from memory; name is used in messages and to pick JSON (".json" suffix) when
 * force_json is false. */
doc *doc_load_string(const char *text, size_t len, const char *name, bool force_json, diag *d);
void doc_free(doc *dc);

/* Member lookup in an object node: NULL when node is not an object or key is absent. */
const doc_member *doc_member_get(const doc_node *obj, const char *key);
const doc_node *doc_get(const doc_node *obj, const char *key);
/* "object", "array", "string", "integer", "number", "boolean" or "null" ("absent" for a
 * NULL node): for messages. */
const char *doc_type_name(const doc_node *node);

#endif
