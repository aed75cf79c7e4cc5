/* Payload templates: Parameters, ItemSelector, ResultSelector (and Pass Result is a
 * plain value). A key ending ".$" takes a path (query path, "$..." on the input,
 * "$$..." on the context) or an intrinsic call; the suffix is stripped in the output.
 * Other values are copied as written, recursively (nested objects and arrays are
 * templates too). */
#ifndef ETL_TEMPLATE_H
#define ETL_TEMPLATE_H

#include <jansson.h>
#include <stdbool.h>

#include <etlrun/error.h>

#include "ctx.h"
#include "diag.h"
#include "doc.h"

typedef struct tmpl tmpl;

/* Compile a template written at node (any JSON value). Reports every problem to d with
 * its position: a ".$" value that is not a string, a bad path or intrinsic, and keys
 * that collide once ".$" is stripped. Returns NULL when any error was reported. */
tmpl *tmpl_compile(const doc_node *node, diag *d);
void tmpl_free(tmpl *t);
bool tmpl_uses_context(const tmpl *t);

/* Evaluate. Returns a NEW reference, or NULL with err filled:
 * States.ParameterPathFailure when a path matches nothing (the cause names the key and
 * the path), States.IntrinsicFailure from an intrinsic. */
json_t *tmpl_eval(const tmpl *t, json_t *input, ctx_provider *ctx, etl_error *err);

#endif
