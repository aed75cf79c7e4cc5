/* ASL intrinsic functions (States.Format, States.Array, ... ), as written in the
 * values of ".$" template keys: parse once at compile time, evaluate per call.
 *
 * Arguments: 'strings' (escapes \' \{ \} \\), numbers (integers stay int64), true,
 * false, null, paths ($... and $$...; a path argument is a query path, evaluated like
 * a template path), and nested intrinsic calls. */
#ifndef ETL_INTRINSIC_H
#define ETL_INTRINSIC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include <etlrun/error.h>

#include "ctx.h"

typedef struct intrinsic intrinsic;

/* True when text looks like an intrinsic call (starts with "States." after spaces). */
bool intrinsic_is_call(const char *text);

/* Parse text. Unknown function names and wrong argument counts (where the count is
 * fixed) are compile errors. Returns NULL and writes a message with the offset into
 * errbuf on error. */
intrinsic *intrinsic_compile(const char *text, char *errbuf, size_t errlen);
void intrinsic_free(intrinsic *fn);
bool intrinsic_uses_context(const intrinsic *fn);

/* Evaluate against the state input and the context. Returns a NEW reference, or NULL
 * with err filled: States.IntrinsicFailure for a bad call (wrong argument types, a
 * Format placeholder count that differs from the argument count, invalid JSON for
 * StringToJson, a path argument that matches nothing, ...): the cause names the function
 * and what was wrong. */
json_t *intrinsic_eval(const intrinsic *fn, json_t *input, ctx_provider *ctx, etl_error *err);

#endif
