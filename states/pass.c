/* Pass: hands its input (or Result, or Parameters) on; runs inline on the scheduler.
 * INTERFACE: compile (Result), enter. */
#include "state.h"

static const char *const fields[] = {"Result", NULL};

static bool compile(state *st, const doc_node *def, compile_ctx *cc)
{
    (void)cc;
    const doc_node *res = doc_get(def, "Result");
    /* Result may be any value, null and other falsy values included. */
    st->impl = res ? json_incref(res->json) : NULL;
    return true;
}

static void enter(state *st, frame *f, json_t *effective)
{
    sched_result(f, json_incref(st->impl ? (json_t *)st->impl : effective));
}

static void destroy(state *st) { json_decref(st->impl); }

const state_ops pass_ops = {
    .type_name = "Pass",
    .type = ST_PASS,
    .flags = SF_INPUT_PATH | SF_OUTPUT_PATH | SF_RESULT_PATH | SF_PARAMETERS | SF_TRANSITION,
    .fields = fields,
    .compile = compile,
    .enter = enter,
    .free = destroy,
};
