/* Fail: ends its branch (or the execution) with an error; inline.
 * Error/Cause are literal strings; ErrorPath/CausePath take a Reference Path or an
 * intrinsic function, evaluated on the state's input. */
#include <stdlib.h>
#include <string.h>

#include "intrinsic.h"
#include "state.h"

static const char *const fields[] = {"Error", "Cause", "ErrorPath", "CausePath", NULL};

typedef struct dyn {       /* a dynamic ErrorPath or CausePath */
    path *p;
    intrinsic *fn;
    const char *field;
} dyn;

typedef struct fail_impl {
    char *error, *cause;
    dyn error_dyn, cause_dyn;
} fail_impl;

static bool compile_dyn(compile_ctx *cc, const doc_node *n, const char *field, dyn *out)
{
    const char *text;
    if (!compile_string(cc, n, field, &text))
        return false;
    char msg[256];
    out->field = field;
    if (intrinsic_is_call(text)) {
        out->fn = intrinsic_compile(text, msg, sizeof msg);
        if (!out->fn) {
            diag_add(compile_diag(cc), n->pos, "invalid intrinsic function in '%s': %s", field,
                     msg);
            return false;
        }
        return true;
    }
    return compile_refpath(cc, n, field, &out->p);
}

static bool compile(state *st, const doc_node *def, compile_ctx *cc)
{
    fail_impl *im = calloc(1, sizeof *im);
    st->impl = im;
    if (!im)
        return false;
    bool ok = true;
    const doc_member *e = doc_member_get(def, "Error"), *ep = doc_member_get(def, "ErrorPath");
    const doc_member *c = doc_member_get(def, "Cause"), *cp = doc_member_get(def, "CausePath");
    const char *s;
    if (e && ep) {
        diag_add(compile_diag(cc), ep->key_pos, "a Fail state takes 'Error' or 'ErrorPath', not both");
        ok = false;
    }
    if (c && cp) {
        diag_add(compile_diag(cc), cp->key_pos, "a Fail state takes 'Cause' or 'CausePath', not both");
        ok = false;
    }
    if (e && compile_string(cc, e->value, "Error", &s))
        im->error = strdup(s);
    if (c && compile_string(cc, c->value, "Cause", &s))
        im->cause = strdup(s);
    if (ep)
        ok &= compile_dyn(cc, ep->value, "ErrorPath", &im->error_dyn);
    if (cp)
        ok &= compile_dyn(cc, cp->value, "CausePath", &im->cause_dyn);
    return ok;
}

/* Evaluates d into buf; false with *err filled on failure. */
static bool eval_dyn(frame *f, const dyn *d, char *buf, size_t len, etl_error *err)
{
    json_t *v = NULL;
    if (d->fn) {
        v = intrinsic_eval(d->fn, sched_input(f), sched_ctx(f), err);
        if (!v)
            return false;
    } else {
        json_t *root = path_is_context(d->p) ? ctx_get(sched_ctx(f)) : sched_input(f);
        json_t *x = root ? path_get(d->p, root) : NULL;
        if (!x) {
            etl_fail(err, ETL_ERUNTIME, "States.Runtime", "%s '%s' matched nothing in the input",
                     d->field, path_text(d->p));
            return false;
        }
        v = json_incref(x);
    }
    bool ok = json_is_string(v);
    if (ok)
        snprintf(buf, len, "%s", json_string_value(v));
    else
        etl_fail(err, ETL_ERUNTIME, "States.Runtime", "%s must select a string", d->field);
    json_decref(v);
    return ok;
}

static void enter(state *st, frame *f, json_t *effective)
{
    (void)effective;
    fail_impl *im = st->impl;
    etl_error err;
    etl_error_clear(&err);
    char name[ETL_ERROR_NAME_MAX] = "", cause[ETL_ERROR_CAUSE_MAX] = "";
    etl_error perr;
    if (im->error)
        snprintf(name, sizeof name, "%s", im->error);
    else if ((im->error_dyn.p || im->error_dyn.fn) &&
             !eval_dyn(f, &im->error_dyn, name, sizeof name, &perr)) {
        sched_fail(f, &perr);
        return;
    }
    if (im->cause)
        snprintf(cause, sizeof cause, "%s", im->cause);
    else if ((im->cause_dyn.p || im->cause_dyn.fn) &&
             !eval_dyn(f, &im->cause_dyn, cause, sizeof cause, &perr)) {
        sched_fail(f, &perr);
        return;
    }
    etl_fail(&err, ETL_ETASK, name, "%s", cause);
    sched_fail(f, &err);
}

static void destroy(state *st)
{
    fail_impl *im = st->impl;
    if (!im)
        return;
    free(im->error);
    free(im->cause);
    path_free(im->error_dyn.p);
    path_free(im->cause_dyn.p);
    intrinsic_free(im->error_dyn.fn);
    intrinsic_free(im->cause_dyn.fn);
    free(im);
}

const state_ops fail_ops = {
    .type_name = "Fail",
    .type = ST_FAIL,
    .flags = SF_TERMINAL,
    .fields = fields,
    .compile = compile,
    .enter = enter,
    .free = destroy,
};
