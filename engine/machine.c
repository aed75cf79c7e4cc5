/* Compilation and validation of a pipeline: doc tree -> machine.
 *
 * Three passes, each reporting every problem it finds with FILE:LINE:COL:
 *   1. build: every machine, state and common field (types, paths, templates,
 *      Retry/Catch), the type's own fields through its ops->compile, and the
 *      pipeline-wide uniqueness of state names;
 *   2. link: transitions (Next, Default, Choice rules, Catch) resolved inside the
 *      state's own machine, which keeps branches closed worlds;
 *   3. reachability from each machine's StartAt. */
#include "machine.h"

#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugins.h"
#include "sections.h"
#include "state.h"

struct compile_ctx {
    diag *d;
    pipeline *pl;
    const char *dir;
    json_t *names;      /* state name -> integer index into all[] */
    state **all;        /* every state of the pipeline, in creation order */
    size_t n_all, cap_all;
    machine **machines; /* every machine, top first */
    size_t n_machines, cap_machines;
    /* link info collected in pass 1, consumed in pass 2 */
    struct pending_link {
        state *st;
        const char *name;
        doc_pos pos;
        state **slot;
    } *links;
    size_t n_links, cap_links;
};

static const char *const top_fields[] = {"StartAt", "States", "Comment", "Version",
                                         "TimeoutSeconds", "name", "connections",
                                         "plugins", "staging", "retention", "notify",
                                         NULL};
static const char *const machine_fields[] = {"StartAt", "States", "Comment", "Version",
                                             "ProcessorConfig", NULL};

diag *compile_diag(compile_ctx *cc) { return cc->d; }
pipeline *compile_pipeline(compile_ctx *cc) { return cc->pl; }
const char *compile_dir(compile_ctx *cc) { return cc->dir; }

static bool grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static bool in_list(const char *const *list, const char *s)
{
    for (; list && *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

bool compile_string(compile_ctx *cc, const doc_node *node, const char *field, const char **out)
{
    if (!json_is_string(node->json)) {
        diag_add(cc->d, node->pos, "'%s' must be a string, not %s", field, doc_type_name(node));
        return false;
    }
    *out = json_string_value(node->json);
    return true;
}

bool compile_int(compile_ctx *cc, const doc_node *node, const char *field, int64_t min,
                 int64_t max, int64_t *out)
{
    if (!json_is_integer(node->json) || json_integer_value(node->json) < min ||
        json_integer_value(node->json) > max) {
        diag_add(cc->d, node->pos, "'%s' must be an integer from %lld to %lld", field,
                 (long long)min, (long long)max);
        return false;
    }
    *out = json_integer_value(node->json);
    return true;
}

bool compile_number(compile_ctx *cc, const doc_node *node, const char *field, double min,
                    double *out)
{
    if (!json_is_number(node->json) || json_number_value(node->json) < min) {
        diag_add(cc->d, node->pos, "'%s' must be a number >= %g", field, min);
        return false;
    }
    *out = json_number_value(node->json);
    return true;
}

bool compile_refpath(compile_ctx *cc, const doc_node *node, const char *field, path **out)
{
    const char *text;
    if (!compile_string(cc, node, field, &text))
        return false;
    char msg[256];
    *out = path_compile(text, PATH_REFERENCE, msg, sizeof msg);
    if (!*out) {
        diag_add(cc->d, node->pos, "invalid path in '%s': %s", field, msg);
        return false;
    }
    return true;
}

/* InputPath/OutputPath/ResultPath: absent, null, or a Reference Path. ResultPath may
 * not be rooted at $$ (it writes into the state's data). */
static bool compile_opt_path(compile_ctx *cc, const doc_node *def, const char *field,
                             opt_path *out)
{
    const doc_node *n = doc_get(def, field);
    if (!n)
        return true;
    if (json_is_null(n->json)) {
        out->is_null = true;
        return true;
    }
    if (!compile_refpath(cc, n, field, &out->p))
        return false;
    if (path_is_context(out->p) && strcmp(field, "ResultPath") == 0) {
        diag_add(cc->d, n->pos, "'ResultPath' must start with '$', not '$$'");
        return false;
    }
    return true;
}

static void add_link(compile_ctx *cc, state *st, const char *name, doc_pos pos, state **slot)
{
    if (!grow((void **)&cc->links, &cc->cap_links, cc->n_links + 1, sizeof *cc->links))
        return;
    cc->links[cc->n_links++] = (struct pending_link){st, name, pos, slot};
}

static bool compile_errors_list(compile_ctx *cc, const doc_node *n, const char *what,
                                bool is_last, char ***out, size_t *out_n)
{
    if (!n) {
        diag_add(cc->d, (doc_pos){0, 0}, "%s needs 'ErrorEquals'", what);
        return false;
    }
    if (!json_is_array(n->json) || n->n == 0) {
        diag_add(cc->d, n->pos, "'ErrorEquals' must be a non-empty list of error names");
        return false;
    }
    bool ok = true;
    char **list = calloc(n->n, sizeof *list);
    if (!list)
        return false;
    for (size_t i = 0; i < n->n; i++) {
        const doc_node *e = n->items[i];
        if (!json_is_string(e->json) || json_string_length(e->json) == 0) {
            diag_add(cc->d, e->pos, "error names in 'ErrorEquals' must be non-empty strings");
            ok = false;
            continue;
        }
        const char *name = json_string_value(e->json);
        list[i] = strdup(name);
        if (strcmp(name, "States.ALL") == 0) {
            if (n->n != 1) {
                diag_add(cc->d, e->pos, "'States.ALL' must be the only error name in its "
                                        "'ErrorEquals'");
                ok = false;
            } else if (!is_last) {
                diag_add(cc->d, e->pos, "a %s with 'States.ALL' must be the last one", what);
                ok = false;
            }
        }
    }
    *out = list;
    *out_n = n->n;
    return ok;
}

static bool check_fields(compile_ctx *cc, const doc_node *obj, const char *const *allowed,
                         const char *where)
{
    bool ok = true;
    for (size_t i = 0; i < obj->n; i++)
        if (!in_list(allowed, obj->members[i].key)) {
            diag_add(cc->d, obj->members[i].key_pos, "unknown field '%s' in %s",
                     obj->members[i].key, where);
            ok = false;
        }
    return ok;
}

static bool compile_retry(compile_ctx *cc, state *st, const doc_node *n)
{
    static const char *const fields[] = {"ErrorEquals", "IntervalSeconds", "MaxAttempts",
                                         "BackoffRate", "MaxDelaySeconds", "JitterStrategy",
                                         "Comment", NULL};
    if (!json_is_array(n->json)) {
        diag_add(cc->d, n->pos, "'Retry' must be a list of retriers");
        return false;
    }
    st->retry = calloc(n->n ? n->n : 1, sizeof *st->retry);
    st->n_retry = n->n;
    bool ok = true;
    for (size_t i = 0; i < n->n; i++) {
        const doc_node *r = n->items[i];
        retrier *rt = &st->retry[i];
        rt->interval_s = 1;
        rt->max_attempts = 3;
        rt->backoff = 2.0;
        if (!json_is_object(r->json)) {
            diag_add(cc->d, r->pos, "a retrier must be an object with 'ErrorEquals'");
            ok = false;
            continue;
        }
        ok &= check_fields(cc, r, fields, "a retrier");
        const doc_node *ee = doc_get(r, "ErrorEquals");
        if (!ee) {
            diag_add(cc->d, r->pos, "a retrier needs 'ErrorEquals'");
            ok = false;
        } else {
            ok &= compile_errors_list(cc, ee, "retrier", i + 1 == n->n, &rt->errors,
                                      &rt->n_errors);
        }
        const doc_node *f;
        int64_t iv;
        if ((f = doc_get(r, "IntervalSeconds"))) {
            if (compile_int(cc, f, "IntervalSeconds", 1, 99999999, &iv))
                rt->interval_s = (double)iv;
            else
                ok = false;
        }
        if ((f = doc_get(r, "MaxAttempts"))) {
            if (compile_int(cc, f, "MaxAttempts", 0, 99999999, &iv))
                rt->max_attempts = (int)iv;
            else
                ok = false;
        }
        if ((f = doc_get(r, "BackoffRate"))) {
            ok &= compile_number(cc, f, "BackoffRate", 1.0, &rt->backoff);
        }
        if ((f = doc_get(r, "MaxDelaySeconds"))) {
            if (compile_int(cc, f, "MaxDelaySeconds", 1, 31622400, &iv))
                rt->max_delay_s = (double)iv;
            else
                ok = false;
        }
        if ((f = doc_get(r, "JitterStrategy"))) {
            const char *js;
            if (!compile_string(cc, f, "JitterStrategy", &js))
                ok = false;
            else if (strcmp(js, "FULL") == 0)
                rt->jitter_full = true;
            else if (strcmp(js, "NONE") != 0) {
                diag_add(cc->d, f->pos, "'JitterStrategy' must be FULL or NONE, not '%s'", js);
                ok = false;
            }
        }
    }
    return ok;
}

static bool compile_catch(compile_ctx *cc, state *st, const doc_node *n)
{
    static const char *const fields[] = {"ErrorEquals", "Next", "ResultPath", "Comment", NULL};
    if (!json_is_array(n->json)) {
        diag_add(cc->d, n->pos, "'Catch' must be a list of catchers");
        return false;
    }
    st->catch_ = calloc(n->n ? n->n : 1, sizeof *st->catch_);
    st->n_catch = n->n;
    bool ok = true;
    for (size_t i = 0; i < n->n; i++) {
        const doc_node *c = n->items[i];
        catcher *ct = &st->catch_[i];
        if (!json_is_object(c->json)) {
            diag_add(cc->d, c->pos, "a catcher must be an object with 'ErrorEquals' and 'Next'");
            ok = false;
            continue;
        }
        ok &= check_fields(cc, c, fields, "a catcher");
        const doc_node *ee = doc_get(c, "ErrorEquals");
        if (!ee) {
            diag_add(cc->d, c->pos, "a catcher needs 'ErrorEquals'");
            ok = false;
        } else {
            ok &= compile_errors_list(cc, ee, "catcher", i + 1 == n->n, &ct->errors,
                                      &ct->n_errors);
        }
        const doc_node *nx = doc_get(c, "Next");
        const char *name;
        if (!nx) {
            diag_add(cc->d, c->pos, "a catcher needs 'Next'");
            ok = false;
        } else if (compile_string(cc, nx, "Next", &name)) {
            add_link(cc, st, name, nx->pos, &ct->next);
        } else {
            ok = false;
        }
        ok &= compile_opt_path(cc, c, "ResultPath", &ct->result_path);
    }
    return ok;
}

static const char *const common_fields[] = {"Type", "Comment", NULL};

/* The fields a state of type ops may have. */
static bool field_allowed(const state_ops *ops, const char *f)
{
    if (in_list(common_fields, f) || in_list(ops->fields, f))
        return true;
    unsigned fl = ops->flags;
    if (strcmp(f, "InputPath") == 0)
        return fl & SF_INPUT_PATH;
    if (strcmp(f, "OutputPath") == 0)
        return fl & SF_OUTPUT_PATH;
    if (strcmp(f, "ResultPath") == 0)
        return fl & SF_RESULT_PATH;
    if (strcmp(f, "Parameters") == 0)
        return fl & SF_PARAMETERS;
    if (strcmp(f, "ResultSelector") == 0)
        return fl & SF_RESULT_SELECTOR;
    if (strcmp(f, "Retry") == 0 || strcmp(f, "Catch") == 0)
        return fl & SF_RETRY_CATCH;
    if (strcmp(f, "Next") == 0 || strcmp(f, "End") == 0)
        return fl & SF_TRANSITION;
    return false;
}

static state *compile_state(compile_ctx *cc, machine *m, const doc_member *mem)
{
    const doc_node *def = mem->value;
    state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->name = strdup(mem->key);
    st->pos = mem->key_pos;
    st->owner = m;
    if (!json_is_object(def->json)) {
        diag_add(cc->d, def->pos, "state '%s' must be an object with a 'Type'", mem->key);
        return st;
    }
    const doc_node *tn = doc_get(def, "Type");
    if (!tn) {
        diag_add(cc->d, mem->key_pos, "state '%s' has no 'Type'", mem->key);
        return st;
    }
    if (!json_is_string(tn->json) || !(st->ops = state_ops_find(json_string_value(tn->json)))) {
        diag_add(cc->d, tn->pos,
                 "unknown state type %s%s%s in state '%s' (expected Pass, Task, Choice, Wait, "
                 "Parallel, Map, Succeed or Fail)",
                 json_is_string(tn->json) ? "'" : "",
                 json_is_string(tn->json) ? json_string_value(tn->json) : doc_type_name(tn),
                 json_is_string(tn->json) ? "'" : "", mem->key);
        return st;
    }
    st->type = st->ops->type;
    const state_ops *ops = st->ops;

    for (size_t i = 0; i < def->n; i++) {
        const doc_member *f = &def->members[i];
        if (st->type == ST_CHOICE && strcmp(f->key, "End") == 0)
            diag_add(cc->d, f->key_pos,
                     "a Choice state cannot have 'End'; use 'Default' or a Succeed state");
        else if (!field_allowed(ops, f->key))
            diag_add(cc->d, f->key_pos, "field '%s' is not valid in a %s state ('%s')", f->key,
                     ops->type_name, st->name);
    }
    const doc_node *n;
    if ((n = doc_get(def, "Comment")) && !json_is_string(n->json))
        diag_add(cc->d, n->pos, "'Comment' must be a string");

    if (ops->flags & SF_INPUT_PATH)
        compile_opt_path(cc, def, "InputPath", &st->input_path);
    if (ops->flags & SF_OUTPUT_PATH)
        compile_opt_path(cc, def, "OutputPath", &st->output_path);
    if (ops->flags & SF_RESULT_PATH)
        compile_opt_path(cc, def, "ResultPath", &st->result_path);
    if ((ops->flags & SF_PARAMETERS) && (n = doc_get(def, "Parameters")))
        st->parameters = tmpl_compile(n, cc->d);
    if ((ops->flags & SF_RESULT_SELECTOR) && (n = doc_get(def, "ResultSelector"))) {
        if (!json_is_object(n->json))
            diag_add(cc->d, n->pos, "'ResultSelector' must be an object");
        else
            st->result_selector = tmpl_compile(n, cc->d);
    }
    if (ops->flags & SF_RETRY_CATCH) {
        if ((n = doc_get(def, "Retry")))
            compile_retry(cc, st, n);
        if ((n = doc_get(def, "Catch")))
            compile_catch(cc, st, n);
    }
    if (ops->flags & SF_TRANSITION) {
        const doc_node *nx = doc_get(def, "Next");
        const doc_member *end = doc_member_get(def, "End");
        if (end && !json_is_boolean(end->value->json)) {
            diag_add(cc->d, end->value->pos, "'End' must be true or false");
        } else if (end && json_is_true(end->value->json)) {
            st->end = true;
        }
        if (nx && st->end) {
            diag_add(cc->d, end->key_pos, "state '%s' has both 'Next' and 'End: true'; keep one",
                     st->name);
        } else if (nx) {
            const char *name;
            if (compile_string(cc, nx, "Next", &name))
                add_link(cc, st, name, nx->pos, &st->next);
        } else if (!st->end) {
            diag_add(cc->d, st->pos, "state '%s' needs 'Next' or 'End: true'", st->name);
        }
    }
    ops->compile(st, def, cc);
    return st;
}

static bool register_state(compile_ctx *cc, state *st)
{
    json_t *prev = json_object_get(cc->names, st->name);
    if (prev) {
        state *first = cc->all[json_integer_value(prev)];
        diag_add(cc->d, st->pos,
                 "duplicate state name '%s' (first defined at line %d); state names must be "
                 "unique in the whole pipeline, branches included",
                 st->name, first->pos.line);
    }
    if (!grow((void **)&cc->all, &cc->cap_all, cc->n_all + 1, sizeof *cc->all))
        return false;
    if (!prev)
        json_object_set_new(cc->names, st->name, json_integer((json_int_t)cc->n_all));
    cc->all[cc->n_all++] = st;
    return true;
}

static machine *compile_machine(compile_ctx *cc, const doc_node *node, machine *parent,
                                state *parent_state, const char *label, bool top)
{
    machine *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->parent = parent;
    m->parent_state = parent_state;
    m->label = strdup(label);
    if (grow((void **)&cc->machines, &cc->cap_machines, cc->n_machines + 1,
             sizeof *cc->machines))
        cc->machines[cc->n_machines++] = m;
    if (!json_is_object(node->json)) {
        diag_add(cc->d, node->pos, "%s must be an object with 'StartAt' and 'States'", label);
        return m;
    }
    check_fields(cc, node, top ? top_fields : machine_fields, label);
    const doc_node *n;
    if ((n = doc_get(node, "Comment")) && !json_is_string(n->json))
        diag_add(cc->d, n->pos, "'Comment' must be a string");
    if ((n = doc_get(node, "Version")) &&
        !(json_is_string(n->json) && strcmp(json_string_value(n->json), "1.0") == 0))
        diag_add(cc->d, n->pos, "'Version' must be \"1.0\" (the only ASL version)");
    if ((n = doc_get(node, "ProcessorConfig")) &&
        !(parent_state && parent_state->type == ST_MAP))
        diag_add(cc->d, doc_member_get(node, "ProcessorConfig")->key_pos,
                 "'ProcessorConfig' belongs in a Map state's ItemProcessor only");
    const doc_node *states = doc_get(node, "States");
    const doc_node *start = doc_get(node, "StartAt");
    if (!states) {
        diag_add(cc->d, node->pos, "%s has no 'States'", label);
    } else if (!json_is_object(states->json) || states->n == 0) {
        diag_add(cc->d, states->pos, "'States' must be an object with at least one state");
    } else {
        m->states = calloc(states->n, sizeof *m->states);
        for (size_t i = 0; i < states->n; i++) {
            const doc_member *mem = &states->members[i];
            state *st = compile_state(cc, m, mem);
            if (!st)
                continue;
            st->index = (int)m->n_states;
            m->states[m->n_states++] = st;
            register_state(cc, st);
        }
    }
    if (!start) {
        diag_add(cc->d, node->pos, "%s has no 'StartAt'", label);
    } else if (json_is_string(start->json)) {
        m->start = machine_find(m, json_string_value(start->json));
        if (!m->start && states && json_is_object(states->json))
            diag_add(cc->d, start->pos, "'StartAt' names '%s', which is not a state of %s",
                     json_string_value(start->json), label);
    } else {
        diag_add(cc->d, start->pos, "'StartAt' must be a state name");
    }
    return m;
}

machine *compile_submachine(compile_ctx *cc, const doc_node *node, state *parent,
                            const char *label)
{
    return compile_machine(cc, node, parent->owner, parent, label, false);
}

state *machine_find(const machine *m, const char *name)
{
    for (size_t i = 0; i < m->n_states; i++)
        if (strcmp(m->states[i]->name, name) == 0)
            return m->states[i];
    return NULL;
}

state *compile_resolve(compile_ctx *cc, state *st, const char *name, doc_pos pos)
{
    state *t = machine_find(st->owner, name);
    if (t)
        return t;
    json_t *idx = json_object_get(cc->names, name);
    if (idx) {
        state *other = cc->all[json_integer_value(idx)];
        diag_add(cc->d, pos,
                 "state '%s' cannot go to '%s': it is in %s, and branches and Map "
                 "processors are closed (no transition into or out of them)",
                 st->name, name, other->owner->label);
    } else {
        diag_add(cc->d, pos, "state '%s' goes to '%s', which is not a state", st->name, name);
    }
    return NULL;
}

/* --- reachability --- */
struct reach {
    unsigned char *seen;
    state **stack;
    size_t n;
};

static void reach_push(state *t, const char *label, void *arg)
{
    (void)label;
    struct reach *r = arg;
    if (t && !r->seen[t->index]) {
        r->seen[t->index] = 1;
        r->stack[r->n++] = t;
    }
}

static void check_reachable(compile_ctx *cc, machine *m)
{
    if (!m->start || m->n_states == 0)
        return;
    struct reach r = {calloc(m->n_states, 1), calloc(m->n_states, sizeof(state *)), 0};
    if (!r.seen || !r.stack)
        goto out;
    reach_push(m->start, NULL, &r);
    while (r.n) {
        state *s = r.stack[--r.n];
        if (s->owner != m)
            continue;
        reach_push(s->next, NULL, &r);
        for (size_t i = 0; i < s->n_catch; i++)
            reach_push(s->catch_[i].next, NULL, &r);
        if (s->ops && s->ops->targets)
            s->ops->targets(s, reach_push, &r);
    }
    for (size_t i = 0; i < m->n_states; i++)
        if (!r.seen[i])
            diag_add(cc->d, m->states[i]->pos,
                     "state '%s' is unreachable: no transition leads to it from '%s'",
                     m->states[i]->name, m->start->name);
out:
    free(r.seen);
    free(r.stack);
}

static char *dir_of(const char *file)
{
    char *abs = realpath(file, NULL);
    char *copy = strdup(abs ? abs : file);
    free(abs);
    if (!copy)
        return NULL;
    char *d = strdup(dirname(copy));
    free(copy);
    return d;
}

static char *name_of(const char *file)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char *n = strdup(base);
    if (!n)
        return NULL;
    char *dot = strrchr(n, '.');
    if (dot && dot != n)
        *dot = '\0';
    return n;
}

pipeline *pipeline_compile(const doc *dc, diag *d)
{
    pipeline *pl = calloc(1, sizeof *pl);
    compile_ctx cc = {.d = d, .pl = pl};
    size_t errors_before = diag_count(d);
    if (!pl)
        return NULL;
    pl->file = strdup(dc->file);
    pl->dir = dir_of(dc->file);
    cc.dir = pl->dir;
    cc.names = json_object();
    const doc_node *root = dc->root;
    const doc_node *n;
    if ((n = doc_get(root, "name")) && json_is_string(n->json))
        pl->name = strdup(json_string_value(n->json));
    else {
        if (n)
            diag_add(d, n->pos, "'name' must be a string");
        pl->name = name_of(dc->file);
    }
    if ((n = doc_get(root, "TimeoutSeconds"))) {
        int64_t v;
        if (compile_int(&cc, n, "TimeoutSeconds", 1, 99999999, &v))
            pl->timeout_s = (double)v;
    }
    if ((n = doc_get(root, "Comment")) && json_is_string(n->json))
        pl->comment = strdup(json_string_value(n->json));
    pl->reg = registry_new();
    if (!pl->reg)
        diag_add(d, root->pos, "out of memory");
    else
        pipeline_compile_sections(pl, root, d);
    pl->top = compile_machine(&cc, root, NULL, NULL, "the pipeline", true);

    for (size_t i = 0; i < cc.n_links; i++) {
        struct pending_link *l = &cc.links[i];
        *l->slot = compile_resolve(&cc, l->st, l->name, l->pos);
    }
    for (size_t i = 0; i < cc.n_all; i++) {
        state *st = cc.all[i];
        if (st->ops && st->ops->link)
            st->ops->link(st, &cc);
    }
    for (size_t i = 0; i < cc.n_machines; i++)
        check_reachable(&cc, cc.machines[i]);
    pl->n_states_total = cc.n_all;

    json_decref(cc.names);
    free(cc.all);
    free(cc.machines);
    free(cc.links);
    if (diag_count(d) > errors_before) {
        pipeline_free(pl);
        return NULL;
    }
    return pl;
}

pipeline *pipeline_load(const char *file, diag *d)
{
    doc *dc = doc_load_file(file, d);
    if (!dc)
        return NULL;
    pipeline *pl = NULL;
    if (!json_is_object(dc->root->json))
        diag_add(d, dc->root->pos, "a pipeline must be an object with 'StartAt' and 'States'");
    else
        pl = pipeline_compile(dc, d);
    doc_free(dc);
    return pl;
}

static void free_errors(char **list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static void machine_free(machine *m);

static void state_free(state *st)
{
    if (!st)
        return;
    if (st->ops && st->ops->free)
        st->ops->free(st);
    path_free(st->input_path.p);
    path_free(st->output_path.p);
    path_free(st->result_path.p);
    tmpl_free(st->parameters);
    tmpl_free(st->result_selector);
    for (size_t i = 0; i < st->n_retry; i++)
        free_errors(st->retry[i].errors, st->retry[i].n_errors);
    free(st->retry);
    for (size_t i = 0; i < st->n_catch; i++) {
        free_errors(st->catch_[i].errors, st->catch_[i].n_errors);
        path_free(st->catch_[i].result_path.p);
    }
    free(st->catch_);
    free(st->name);
    free(st);
}

static void machine_free(machine *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_states; i++)
        state_free(m->states[i]);
    free(m->states);
    free(m->label);
    free(m);
}

/* Sub-machines are owned by their parent state's impl and freed by its ops->free
 * through pipeline_free_machine. */
void pipeline_free_machine(machine *m) { machine_free(m); }

void pipeline_free(pipeline *pl)
{
    if (!pl)
        return;
    machine_free(pl->top);
    for (size_t i = 0; i < pl->n_conns; i++) {
        free(pl->conns[i].name);
        json_decref(pl->conns[i].settings);
    }
    free(pl->conns);
    free(pl->stage_dir);
    free(pl->notify_url);
    registry_free(pl->reg); /* after the states: plugin code may run in their free */
    free(pl->file);
    free(pl->dir);
    free(pl->name);
    free(pl->comment);
    free(pl);
}
