/* Choice rules: compile a rule tree from the definition, evaluate it against an input.
 *
 * A rule is a comparison (Variable + exactly one operator), or And/Or (non-empty arrays
 * of rules) or Not (one rule). Comparisons against a value of another type are false,
 * never errors; a missing Variable makes every operator false except IsPresent: false.
 * Operators: String{Equals,LessThan,GreaterThan,LessThanEquals,GreaterThanEquals,Matches},
 * Numeric*, BooleanEquals, Timestamp* (each but Matches also as ...Path, whose value is
 * a Reference Path), IsNull, IsPresent, IsNumeric, IsString, IsBoolean, IsTimestamp. */
#ifndef ETL_CHOICE_H
#define ETL_CHOICE_H

#include <jansson.h>
#include <stdbool.h>

#include "ctx.h"
#include "diag.h"
#include "doc.h"

typedef struct choice_rule choice_rule;

/* Compile the rule at node. top_level rules must carry "Next" (a string; the caller
 * resolves it via choice_next_name/choice_next_pos); nested rules (inside And/Or/Not)
 * must not. Reports every problem to d: unknown fields, no or two operators, wrong
 * operand types, bad paths, a bad StringMatches pattern. Returns NULL on any error. */
choice_rule *choice_compile(const doc_node *node, bool top_level, diag *d);
void choice_free(choice_rule *r);
const char *choice_next_name(const choice_rule *r); /* top-level only, else NULL */
doc_pos choice_next_pos(const choice_rule *r);
bool choice_uses_context(const choice_rule *r);

/* Evaluate against input (and the context for $$ paths). Never fails. */
bool choice_eval(const choice_rule *r, json_t *input, ctx_provider *ctx);

/* Building blocks, exposed for tests and reuse. */
/* ASL StringMatches: '*' matches any run (also empty), "\*" a literal '*', "\\" a '\'. */
bool choice_string_matches(const char *s, const char *pattern);
/* Numeric compare: -1/0/1, exact for int64 vs int64, 1 == 1.0. Both must be numbers. */
int choice_numeric_compare(const json_t *a, const json_t *b);

#endif
