/* Choice: picks the next state from rules tried in order (first match wins), else
 * Default, else fails with States.NoChoiceMatched; inline. The rules themselves live
 * in engine/choice.c. */
#include <stdlib.h>
#include <string.h>

#include "choice.h"
#include "state.h"

static const char *const fields[] = {"Choices", "Default", NULL};

typedef struct choice_impl {
    choice_rule **rules;
    state **targets;
    size_t n;
    const char *default_name; /* points into the doc only during compile/link */
    char *default_copy;
    doc_pos default_pos;
    state *default_state;
} choice_impl;

static bool compile(state *st, const doc_node *def, compile_ctx *cc)
{
    choice_impl *im = calloc(1, sizeof *im);
    st->impl = im;
    if (!im)
        return false;
    diag *d = compile_diag(cc);
    bool ok = true;
    const doc_node *ch = doc_get(def, "Choices");
    if (!ch) {
        diag_add(d, st->pos, "Choice state '%s' needs 'Choices'", st->name);
        ok = false;
    } else if (!json_is_array(ch->json) || ch->n == 0) {
        diag_add(d, ch->pos, "'Choices' must be a non-empty list of rules");
        ok = false;
    } else {
        im->rules = calloc(ch->n, sizeof *im->rules);
        im->targets = calloc(ch->n, sizeof *im->targets);
        im->n = ch->n;
        for (size_t i = 0; i < ch->n; i++) {
            im->rules[i] = choice_compile(ch->items[i], true, d);
            ok &= im->rules[i] != NULL;
        }
    }
    const doc_node *df = doc_get(def, "Default");
    const char *name;
    if (df && compile_string(cc, df, "Default", &name)) {
        im->default_copy = strdup(name);
        im->default_pos = df->pos;
    } else if (df) {
        ok = false;
    }
    return ok;
}

static bool link(state *st, compile_ctx *cc)
{
    choice_impl *im = st->impl;
    bool ok = true;
    for (size_t i = 0; i < im->n; i++) {
        if (!im->rules[i])
            continue;
        im->targets[i] = compile_resolve(cc, st, choice_next_name(im->rules[i]),
                                         choice_next_pos(im->rules[i]));
        ok &= im->targets[i] != NULL;
    }
    if (im->default_copy) {
        im->default_state = compile_resolve(cc, st, im->default_copy, im->default_pos);
        ok &= im->default_state != NULL;
    }
    return ok;
}

static void targets(const state *st, void (*visit)(state *, const char *, void *), void *arg)
{
    const choice_impl *im = st->impl;
    if (!im)
        return;
    for (size_t i = 0; i < im->n; i++)
        if (im->targets && im->targets[i])
            visit(im->targets[i], "rule", arg);
    if (im->default_state)
        visit(im->default_state, "Default", arg);
}

static void enter(state *st, frame *f, json_t *effective)
{
    choice_impl *im = st->impl;
    for (size_t i = 0; i < im->n; i++) {
        if (choice_eval(im->rules[i], effective, sched_ctx(f))) {
            sched_goto(f, im->targets[i], json_incref(effective));
            return;
        }
    }
    if (im->default_state) {
        sched_goto(f, im->default_state, json_incref(effective));
        return;
    }
    etl_error err;
    etl_fail(&err, ETL_ETASK, "States.NoChoiceMatched",
             "no rule of Choice state '%s' matched its input, and it has no Default",
             st->name);
    sched_fail(f, &err);
}

static void destroy(state *st)
{
    choice_impl *im = st->impl;
    if (!im)
        return;
    for (size_t i = 0; i < im->n; i++)
        choice_free(im->rules[i]);
    free(im->rules);
    free(im->targets);
    free(im->default_copy);
    free(im);
}

const state_ops choice_ops = {
    .type_name = "Choice",
    .type = ST_CHOICE,
    .flags = SF_INPUT_PATH | SF_OUTPUT_PATH,
    .fields = fields,
    .compile = compile,
    .link = link,
    .enter = enter,
    .targets = targets,
    .free = destroy,
};
