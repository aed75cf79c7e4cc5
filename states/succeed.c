/* Succeed: ends its branch (or the execution) successfully; inline. */
#include "state.h"

static bool compile(state *st, const doc_node *def, compile_ctx *cc)
{
    (void)st, (void)def, (void)cc;
    return true;
}

static void enter(state *st, frame *f, json_t *effective)
{
    (void)st;
    sched_succeed(f, json_incref(effective));
}

const state_ops succeed_ops = {
    .type_name = "Succeed",
    .type = ST_SUCCEED,
    .flags = SF_INPUT_PATH | SF_OUTPUT_PATH | SF_TERMINAL,
    .compile = compile,
    .enter = enter,
};
