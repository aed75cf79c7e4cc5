/* Payload templates (Parameters, ItemSelector, ResultSelector): compiled once from the
 * loaded definition into a tree whose leaves are constants, paths or intrinsic calls,
 * then evaluated per state execution against the effective input and the context.
 *
 * Subtrees without any ".$" key collapse into one constant json value at compile time;
 * evaluation hands out a new reference to it (values are immutable, so no copy). */
#include "template.h"

#include <stdlib.h>
#include <string.h>

#include "intrinsic.h"
#include "path.h"

typedef enum tmpl_kind {
    T_CONST,     /* json value, returned with json_incref */
    T_OBJECT,    /* fields, at least one of them not constant */
    T_ARRAY,     /* items, at least one of them not constant */
    T_PATH,      /* "key.$": "$..." or "$$..." */
    T_INTRINSIC, /* "key.$": "States.X(...)" */
} tmpl_kind;

typedef struct tmpl_field {
    char *key;      /* output key, ".$" stripped */
    size_t keylen;
    tmpl *value;
} tmpl_field;

struct tmpl {
    tmpl_kind kind;
    bool uses_context; /* anywhere in this subtree */
    size_t n;          /* T_OBJECT fields / T_ARRAY items */
    union {
        json_t *value;
        tmpl_field *fields;
        tmpl **items;
        path *path;
        intrinsic *fn;
    } u;
    char *field;       /* T_PATH, T_INTRINSIC: the key as written (with ".$"), for messages */
};

void tmpl_free(tmpl *t)
{
    if (!t)
        return;
    switch (t->kind) {
    case T_CONST:
        json_decref(t->u.value);
        break;
    case T_OBJECT:
        for (size_t i = 0; i < t->n; i++) {
            free(t->u.fields[i].key);
            tmpl_free(t->u.fields[i].value);
        }
        free(t->u.fields);
        break;
    case T_ARRAY:
        for (size_t i = 0; i < t->n; i++)
            tmpl_free(t->u.items[i]);
        free(t->u.items);
        break;
    case T_PATH:
        path_free(t->u.path);
        break;
    case T_INTRINSIC:
        intrinsic_free(t->u.fn);
        break;
    }
    free(t->field);
    free(t);
}

bool tmpl_uses_context(const tmpl *t)
{
    return t && t->uses_context;
}

static tmpl *new_const(json_t *value)
{
    tmpl *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->kind = T_CONST;
    t->u.value = json_incref(value);
    return t;
}

/* The value of a ".$" key. Returns NULL after reporting to d. */
static tmpl *compile_dynamic(const doc_member *m, diag *d)
{
    const doc_node *v = m->value;
    if (!json_is_string(v->json)) {
        diag_add(d, v->pos,
                 "the value of '%s' must be a string: a path starting with '$' or an intrinsic function (found %s)",
                 m->key, doc_type_name(v));
        return NULL;
    }
    const char *text = json_string_value(v->json);
    char msg[512];
    tmpl *t = calloc(1, sizeof *t);
    if (!t || !(t->field = strdup(m->key))) {
        diag_add(d, v->pos, "out of memory compiling '%s'", m->key);
        goto fail;
    }
    if (text[0] == '$') {
        t->kind = T_PATH;
        if (!(t->u.path = path_compile(text, PATH_QUERY, msg, sizeof msg))) {
            diag_add(d, v->pos, "invalid path in '%s': %s", m->key, msg);
            goto fail;
        }
        t->uses_context = path_is_context(t->u.path);
    } else if (intrinsic_is_call(text)) {
        t->kind = T_INTRINSIC;
        if (!(t->u.fn = intrinsic_compile(text, msg, sizeof msg))) {
            diag_add(d, v->pos, "invalid intrinsic function in '%s': %s", m->key, msg);
            goto fail;
        }
        t->uses_context = intrinsic_uses_context(t->u.fn);
    } else {
        diag_add(d, v->pos, "the value of '%s' must be a path starting with '$' or an intrinsic function",
                 m->key);
        goto fail;
    }
    return t;
fail:
    if (t)
        t->kind = T_CONST; /* nothing compiled yet: free only the name */
    tmpl_free(t);
    return NULL;
}

static tmpl *compile_node(const doc_node *node, diag *d);

static tmpl *compile_object(const doc_node *node, diag *d)
{
    tmpl *t = NULL;
    bool ok = true, dynamic = false;
    /* stripped key -> index of the member that produced it, to report collisions */
    json_t *seen = json_object();
    tmpl_field *fields = calloc(node->n ? node->n : 1, sizeof *fields);
    if (!seen || !fields) {
        diag_add(d, node->pos, "out of memory compiling a template");
        ok = false;
        goto out;
    }
    for (size_t i = 0; i < node->n; i++) {
        const doc_member *m = &node->members[i];
        size_t len = strlen(m->key);
        bool dyn = len >= 2 && m->key[len - 2] == '.' && m->key[len - 1] == '$';
        size_t outlen = dyn ? len - 2 : len;
        json_t *prev = json_object_getn(seen, m->key, outlen);
        if (prev) {
            diag_add(d, m->key_pos, "key '%s' collides with '%s': keys must stay unique once '.$' is removed",
                     m->key, node->members[json_integer_value(prev)].key);
            ok = false;
        } else if (json_object_setn_new_nocheck(seen, m->key, outlen, json_integer((json_int_t)i)) != 0) {
            diag_add(d, m->key_pos, "out of memory compiling a template");
            ok = false;
        }
        fields[i].value = dyn ? compile_dynamic(m, d) : compile_node(m->value, d);
        if (!fields[i].value) {
            ok = false;
            continue;
        }
        if (!(fields[i].key = strndup(m->key, outlen))) {
            diag_add(d, m->key_pos, "out of memory compiling a template");
            ok = false;
            continue;
        }
        fields[i].keylen = outlen;
        if (fields[i].value->kind != T_CONST)
            dynamic = true;
    }
    if (!ok)
        goto out;
    if (!dynamic) {
        if (!(t = new_const(node->json)))
            diag_add(d, node->pos, "out of memory compiling a template");
        goto out;
    }
    if (!(t = calloc(1, sizeof *t))) {
        diag_add(d, node->pos, "out of memory compiling a template");
        goto out;
    }
    t->kind = T_OBJECT;
    t->n = node->n;
    t->u.fields = fields;
    for (size_t i = 0; i < node->n; i++)
        t->uses_context |= fields[i].value->uses_context;
    fields = NULL;
out:
    if (fields) {
        for (size_t i = 0; i < node->n; i++) {
            free(fields[i].key);
            tmpl_free(fields[i].value);
        }
        free(fields);
    }
    json_decref(seen);
    return t;
}

static tmpl *compile_array(const doc_node *node, diag *d)
{
    tmpl *t = NULL;
    bool ok = true, dynamic = false;
    tmpl **items = calloc(node->n ? node->n : 1, sizeof *items);
    if (!items) {
        diag_add(d, node->pos, "out of memory compiling a template");
        return NULL;
    }
    for (size_t i = 0; i < node->n; i++) {
        if (!(items[i] = compile_node(node->items[i], d)))
            ok = false;
        else if (items[i]->kind != T_CONST)
            dynamic = true;
    }
    if (!ok)
        goto out;
    if (!dynamic) {
        if (!(t = new_const(node->json)))
            diag_add(d, node->pos, "out of memory compiling a template");
        goto out;
    }
    if (!(t = calloc(1, sizeof *t))) {
        diag_add(d, node->pos, "out of memory compiling a template");
        goto out;
    }
    t->kind = T_ARRAY;
    t->n = node->n;
    t->u.items = items;
    for (size_t i = 0; i < node->n; i++)
        t->uses_context |= items[i]->uses_context;
    items = NULL;
out:
    if (items) {
        for (size_t i = 0; i < node->n; i++)
            tmpl_free(items[i]);
        free(items);
    }
    return t;
}

static tmpl *compile_node(const doc_node *node, diag *d)
{
    if (json_is_object(node->json))
        return compile_object(node, d);
    if (json_is_array(node->json))
        return compile_array(node, d);
    tmpl *t = new_const(node->json);
    if (!t)
        diag_add(d, node->pos, "out of memory compiling a template");
    return t;
}

tmpl *tmpl_compile(const doc_node *node, diag *d)
{
    size_t before = diag_count(d);
    tmpl *t = compile_node(node, d);
    if (t && diag_count(d) != before) { /* belt and braces: never hand out a half-checked template */
        tmpl_free(t);
        t = NULL;
    }
    return t;
}

static json_t *nomem(etl_error *err)
{
    etl_fail(err, ETL_ENOMEM, "States.Runtime", "out of memory evaluating a payload template");
    return NULL;
}

static json_t *eval(const tmpl *t, json_t *input, ctx_provider *ctx, etl_error *err)
{
    switch (t->kind) {
    case T_CONST:
        return json_incref(t->u.value);
    case T_PATH: {
        const path *p = t->u.path;
        bool context = path_is_context(p);
        json_t *root = context ? ctx_get(ctx) : input;
        json_t *v;
        if (!path_is_indefinite(p)) {
            v = json_incref(root ? path_get(p, root) : NULL);
            if (!v)
                etl_fail(err, ETL_ERUNTIME, "States.ParameterPathFailure",
                         "the JSONPath '%s' specified for the field '%s' could not be found in the %s",
                         path_text(p), t->field, context ? "context object" : "input");
            return v;
        }
        if (!(v = path_query(p, root)))
            return nomem(err);
        return v;
    }
    case T_INTRINSIC:
        return intrinsic_eval(t->u.fn, input, ctx, err);
    case T_OBJECT: {
        json_t *obj = json_object();
        if (!obj)
            return nomem(err);
        for (size_t i = 0; i < t->n; i++) {
            const tmpl_field *f = &t->u.fields[i];
            json_t *v = eval(f->value, input, ctx, err);
            if (!v) {
                json_decref(obj);
                return NULL;
            }
            if (json_object_setn_new_nocheck(obj, f->key, f->keylen, v) != 0) {
                json_decref(obj);
                return nomem(err);
            }
        }
        return obj;
    }
    case T_ARRAY: {
        json_t *arr = json_array();
        if (!arr)
            return nomem(err);
        for (size_t i = 0; i < t->n; i++) {
            json_t *v = eval(t->u.items[i], input, ctx, err);
            if (!v) {
                json_decref(arr);
                return NULL;
            }
            if (json_array_append_new(arr, v) != 0) {
                json_decref(arr);
                return nomem(err);
            }
        }
        return arr;
    }
    }
    return nomem(err);
}

json_t *tmpl_eval(const tmpl *t, json_t *input, ctx_provider *ctx, etl_error *err)
{
    return eval(t, input, ctx, err);
}
