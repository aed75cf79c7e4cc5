/* JSONPath for ASL: compile text once into a step array, then walk it per call.
 * path_get (Reference Paths, every state transition) walks without allocating;
 * path_query collects indefinite matches in document order; path_set copies only
 * the objects and arrays along the path (values are shared and immutable). */
#include "path.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum step_kind {
    STEP_NAME,     /* .name or ['name'] */
    STEP_INDEX,    /* [n] or [-n] */
    STEP_WILDCARD, /* .* or [*] */
    STEP_SLICE,    /* [a:b] */
} step_kind;

typedef struct step {
    step_kind kind;
    bool deep;       /* written after "..": applies to every descendant, not the children */
    const char *key; /* STEP_NAME: points into path.keys, NUL-terminated */
    size_t keylen;
    long long index; /* STEP_INDEX: negative counts from the end */
    long long lo, hi;
    bool has_lo, has_hi;
    size_t off;      /* offset in text where the step starts: text[0..off) is its parent */
} step;

struct path {
    char *text;
    size_t root_len; /* 1 for "$", 2 for "$$" */
    bool context;
    bool indefinite;
    size_t n;
    step *steps;
    char *keys;      /* unescaped names, each NUL-terminated */
};

/* Indices are bounded well below SIZE_MAX so that negation and addition never overflow. */
#define INDEX_MAX 999999999999LL

typedef struct parser {
    const char *text;
    size_t len;
    size_t pos;
    path_kind kind;
    char *errbuf;
    size_t errlen;
    step *steps;
    size_t n, cap;
    char *keys;     /* sized len + 1: unescaped names never outgrow the text */
    size_t keys_used;
} parser;

/* Offsets in messages are 1-based columns, so "$.a]" reports the ']' at offset 4. */
static void *fail(parser *ps, size_t at, const char *what)
{
    if (ps->errbuf && ps->errlen)
        snprintf(ps->errbuf, ps->errlen, "%s at offset %zu in path '%s'", what, at + 1, ps->text);
    return NULL;
}

static step *push(parser *ps, step_kind kind, bool deep, size_t off)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 4;
        step *s = realloc(ps->steps, cap * sizeof *s);
        if (!s)
            return NULL;
        ps->steps = s;
        ps->cap = cap;
    }
    step *s = &ps->steps[ps->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->deep = deep;
    s->off = off;
    return s;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Signed integer at ps->pos. Returns false (message written) when there is none. */
static bool parse_int(parser *ps, long long *out, bool *out_negative)
{
    size_t start = ps->pos;
    bool neg = false;
    if (ps->pos < ps->len && ps->text[ps->pos] == '-') {
        neg = true;
        ps->pos++;
    }
    if (ps->pos >= ps->len || ps->text[ps->pos] < '0' || ps->text[ps->pos] > '9') {
        if (ps->pos >= ps->len)
            fail(ps, start, "unterminated '['");
        else if (is_space(ps->text[ps->pos]))
            fail(ps, ps->pos, "whitespace is not allowed");
        else
            fail(ps, ps->pos, neg ? "expected a digit after '-'" : "expected an index, '*', a slice or a quoted name");
        return false;
    }
    long long v = 0;
    while (ps->pos < ps->len && ps->text[ps->pos] >= '0' && ps->text[ps->pos] <= '9') {
        v = v * 10 + (ps->text[ps->pos] - '0');
        if (v > INDEX_MAX) {
            fail(ps, start, "index too large");
            return false;
        }
        ps->pos++;
    }
    *out = neg ? -v : v;
    if (out_negative)
        *out_negative = neg;
    return true;
}

/* ['name']: ps->pos is on the opening quote. Escapes: \' and \\ only. */
static bool parse_quoted(parser *ps, step *s)
{
    size_t open = ps->pos;
    char *dst = ps->keys + ps->keys_used;
    size_t k = 0;
    ps->pos++;
    for (;;) {
        if (ps->pos >= ps->len) {
            fail(ps, open, "unterminated quoted name");
            return false;
        }
        char c = ps->text[ps->pos];
        if (c == '\'')
            break;
        if (c == '\\') {
            char e = ps->pos + 1 < ps->len ? ps->text[ps->pos + 1] : '\0';
            if (e != '\'' && e != '\\') {
                fail(ps, ps->pos, "invalid escape (only \\' and \\\\ are allowed)");
                return false;
            }
            dst[k++] = e;
            ps->pos += 2;
            continue;
        }
        dst[k++] = c;
        ps->pos++;
    }
    ps->pos++; /* closing quote */
    dst[k] = '\0';
    s->key = dst;
    s->keylen = k;
    ps->keys_used += k + 1;
    return true;
}

/* ps->pos is just after '['. */
static bool parse_bracket(parser *ps, bool deep, size_t off)
{
    size_t open = ps->pos - 1;
    if (ps->pos >= ps->len)
        return fail(ps, open, "unterminated '['"), false;
    char c = ps->text[ps->pos];
    step *s;
    if (c == '\'') {
        if (!(s = push(ps, STEP_NAME, deep, off)))
            return fail(ps, open, "out of memory"), false;
        if (!parse_quoted(ps, s))
            return false;
    } else if (c == '*') {
        if (!(s = push(ps, STEP_WILDCARD, deep, off)))
            return fail(ps, open, "out of memory"), false;
        ps->pos++;
    } else if (c == '?' || c == '(') {
        return fail(ps, ps->pos, "filter and script expressions are not supported"), false;
    } else {
        long long lo = 0, hi = 0;
        bool has_lo = false, has_hi = false, neg = false;
        if (c != ':') {
            if (!parse_int(ps, &lo, &neg))
                return false;
            has_lo = true;
        }
        if (ps->pos < ps->len && ps->text[ps->pos] == ':') {
            ps->pos++;
            if (ps->pos < ps->len && ps->text[ps->pos] != ']') {
                if (!parse_int(ps, &hi, NULL))
                    return false;
                has_hi = true;
            }
            if (ps->pos < ps->len && ps->text[ps->pos] == ':')
                return fail(ps, ps->pos, "slice steps are not supported"), false;
            if (!(s = push(ps, STEP_SLICE, deep, off)))
                return fail(ps, open, "out of memory"), false;
            s->lo = lo;
            s->hi = hi;
            s->has_lo = has_lo;
            s->has_hi = has_hi;
        } else {
            if (ps->kind == PATH_REFERENCE && neg)
                return fail(ps, open + 1, "negative index is not allowed in a reference path"), false;
            if (!(s = push(ps, STEP_INDEX, deep, off)))
                return fail(ps, open, "out of memory"), false;
            s->index = lo;
        }
    }
    if (ps->pos >= ps->len)
        return fail(ps, open, "unterminated '['"), false;
    if (ps->text[ps->pos] != ']') {
        if (is_space(ps->text[ps->pos]))
            return fail(ps, ps->pos, "whitespace is not allowed"), false;
        return fail(ps, ps->pos, "expected ']'"), false;
    }
    ps->pos++;
    return true;
}

/* Name after '.' or '..': ps->pos is on its first character. */
static bool parse_name(parser *ps, bool deep, size_t off)
{
    size_t start = ps->pos;
    while (ps->pos < ps->len) {
        char c = ps->text[ps->pos];
        if (c == '.' || c == '[')
            break;
        if (c == ']')
            return fail(ps, ps->pos, "unexpected ']'"), false;
        if (is_space(c))
            return fail(ps, ps->pos, "whitespace is not allowed (write ['a name'] for keys with spaces)"), false;
        ps->pos++;
    }
    size_t k = ps->pos - start;
    if (k == 0)
        return fail(ps, start, deep ? "expected a name, '*' or '[' after '..'" : "expected a name or '*' after '.'"), false;
    step *s;
    if (k == 1 && ps->text[start] == '*') {
        s = push(ps, STEP_WILDCARD, deep, off);
        if (!s)
            return fail(ps, start, "out of memory"), false;
        return true;
    }
    if (!(s = push(ps, STEP_NAME, deep, off)))
        return fail(ps, start, "out of memory"), false;
    char *dst = ps->keys + ps->keys_used;
    memcpy(dst, ps->text + start, k);
    dst[k] = '\0';
    s->key = dst;
    s->keylen = k;
    ps->keys_used += k + 1;
    return true;
}

path *path_compile(const char *text, path_kind kind, char *errbuf, size_t errlen)
{
    parser ps = { .text = text ? text : "", .kind = kind, .errbuf = errbuf, .errlen = errlen };
    path *p = NULL;
    ps.len = strlen(ps.text);
    if (errbuf && errlen)
        errbuf[0] = '\0';
    ps.keys = malloc(ps.len + 1);
    if (!ps.keys) {
        fail(&ps, 0, "out of memory");
        goto out;
    }
    if (ps.len == 0 || ps.text[0] != '$') {
        fail(&ps, 0, "a path must start with '$'");
        goto out;
    }
    size_t root_len = ps.len > 1 && ps.text[1] == '$' ? 2 : 1;
    ps.pos = root_len;
    while (ps.pos < ps.len) {
        size_t off = ps.pos;
        char c = ps.text[ps.pos];
        bool ok;
        if (c == '.' && ps.pos + 1 < ps.len && ps.text[ps.pos + 1] == '.') {
            if (kind == PATH_REFERENCE) {
                fail(&ps, off, "recursive descent '..' is not allowed in a reference path");
                goto out;
            }
            ps.pos += 2;
            if (ps.pos < ps.len && ps.text[ps.pos] == '[') {
                ps.pos++;
                ok = parse_bracket(&ps, true, off);
            } else {
                ok = parse_name(&ps, true, off);
            }
        } else if (c == '.') {
            ps.pos++;
            ok = parse_name(&ps, false, off);
        } else if (c == '[') {
            ps.pos++;
            ok = parse_bracket(&ps, false, off);
        } else if (is_space(c)) {
            fail(&ps, ps.pos, "whitespace is not allowed");
            ok = false;
        } else {
            char what[32];
            unsigned char b = (unsigned char)c;
            if (b >= 0x20 && b < 0x7f)
                snprintf(what, sizeof what, "unexpected '%c'", c);
            else
                snprintf(what, sizeof what, "unexpected byte 0x%02x", b);
            fail(&ps, ps.pos, what);
            ok = false;
        }
        if (!ok)
            goto out;
        step *last = &ps.steps[ps.n - 1];
        if (kind == PATH_REFERENCE && (last->kind == STEP_WILDCARD || last->kind == STEP_SLICE)) {
            fail(&ps, off, last->kind == STEP_WILDCARD ? "wildcard '*' is not allowed in a reference path"
                                                       : "slice is not allowed in a reference path");
            goto out;
        }
    }

    p = calloc(1, sizeof *p);
    if (!p || !(p->text = strdup(ps.text))) {
        fail(&ps, 0, "out of memory");
        free(p);
        p = NULL;
        goto out;
    }
    p->root_len = root_len;
    p->context = root_len == 2;
    p->n = ps.n;
    p->steps = ps.steps;
    p->keys = ps.keys;
    for (size_t i = 0; i < ps.n; i++)
        if (ps.steps[i].deep || ps.steps[i].kind == STEP_WILDCARD || ps.steps[i].kind == STEP_SLICE)
            p->indefinite = true;
    ps.steps = NULL;
    ps.keys = NULL;
out:
    free(ps.steps);
    free(ps.keys);
    return p;
}

void path_free(path *p)
{
    if (!p)
        return;
    free(p->text);
    free(p->steps);
    free(p->keys);
    free(p);
}

const char *path_text(const path *p)
{
    return p->text;
}

bool path_is_context(const path *p)
{
    return p->context;
}

bool path_is_root(const path *p)
{
    return p->n == 0;
}

bool path_is_indefinite(const path *p)
{
    return p->indefinite;
}

/* One definite step: the child named by s, or NULL. */
static json_t *child(const step *s, json_t *node)
{
    if (s->kind == STEP_NAME)
        return json_is_object(node) ? json_object_getn(node, s->key, s->keylen) : NULL;
    /* STEP_INDEX */
    if (!json_is_array(node))
        return NULL;
    long long size = (long long)json_array_size(node);
    long long i = s->index < 0 ? size + s->index : s->index;
    if (i < 0 || i >= size)
        return NULL;
    return json_array_get(node, (size_t)i);
}

json_t *path_get(const path *p, json_t *root)
{
    if (p->indefinite) /* a query path with several possible matches names no one node */
        return NULL;
    json_t *node = root;
    for (size_t i = 0; i < p->n && node; i++)
        node = child(&p->steps[i], node);
    return node;
}

static bool in_slice(const step *s, size_t idx, size_t size)
{
    long long n = (long long)size, lo = 0, hi = n;
    if (s->has_lo)
        lo = s->lo < 0 ? (s->lo + n < 0 ? 0 : s->lo + n) : (s->lo > n ? n : s->lo);
    if (s->has_hi)
        hi = s->hi < 0 ? (s->hi + n < 0 ? 0 : s->hi + n) : (s->hi > n ? n : s->hi);
    return (long long)idx >= lo && (long long)idx < hi;
}

/* Whether the child at key/index of a parent with `size` members is selected by s. */
static bool selects(const step *s, const char *key, size_t keylen, size_t idx, size_t size)
{
    switch (s->kind) {
    case STEP_NAME:
        return key && keylen == s->keylen && memcmp(key, s->key, keylen) == 0;
    case STEP_INDEX: {
        if (key)
            return false;
        long long i = s->index < 0 ? (long long)size + s->index : s->index;
        return i == (long long)idx;
    }
    case STEP_WILDCARD:
        return true;
    case STEP_SLICE:
        return !key && in_slice(s, idx, size);
    }
    return false;
}

static bool collect(const path *p, size_t i, json_t *node, json_t *out);

/* Recursive descent: every descendant of node in document (pre-)order, each checked
 * against s as a child of its own parent; a match continues with step i + 1. */
static bool descend(const path *p, size_t i, json_t *node, json_t *out)
{
    const step *s = &p->steps[i];
    if (json_is_object(node)) {
        size_t size = json_object_size(node);
        const char *key;
        size_t keylen;
        json_t *v;
        json_object_keylen_foreach(node, key, keylen, v) {
            if (selects(s, key, keylen, 0, size) && !collect(p, i + 1, v, out))
                return false;
            if (!descend(p, i, v, out))
                return false;
        }
    } else if (json_is_array(node)) {
        size_t size = json_array_size(node);
        for (size_t k = 0; k < size; k++) {
            json_t *v = json_array_get(node, k);
            if (selects(s, NULL, 0, k, size) && !collect(p, i + 1, v, out))
                return false;
            if (!descend(p, i, v, out))
                return false;
        }
    }
    return true;
}

/* Apply steps i.. to node, appending every match to out. False on allocation failure. */
static bool collect(const path *p, size_t i, json_t *node, json_t *out)
{
    /* Definite steps in a row need no branching: walk them like path_get. */
    while (i < p->n && !p->steps[i].deep &&
           (p->steps[i].kind == STEP_NAME || p->steps[i].kind == STEP_INDEX)) {
        node = child(&p->steps[i], node);
        if (!node)
            return true;
        i++;
    }
    if (i == p->n)
        return json_array_append(out, node) == 0;
    const step *s = &p->steps[i];
    if (s->deep)
        return descend(p, i, node, out);
    if (json_is_object(node)) {
        if (s->kind != STEP_WILDCARD)
            return true;
        const char *key;
        json_t *v;
        json_object_foreach(node, key, v) {
            if (!collect(p, i + 1, v, out))
                return false;
        }
    } else if (json_is_array(node)) {
        size_t size = json_array_size(node);
        for (size_t k = 0; k < size; k++)
            if (selects(s, NULL, 0, k, size) && !collect(p, i + 1, json_array_get(node, k), out))
                return false;
    }
    return true;
}

json_t *path_query(const path *p, json_t *root)
{
    if (!p->indefinite)
        return json_incref(path_get(p, root));
    json_t *out = json_array();
    if (!out)
        return NULL;
    if (root && !collect(p, 0, root, out)) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static const char *type_phrase(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

static json_t *set_fail(const path *p, size_t i, etl_error *err, const char *what, const char *detail)
{
    size_t plen = i < p->n ? p->steps[i].off : strlen(p->text);
    etl_fail(err, ETL_ERUNTIME, "States.ResultPathMatchFailure",
             "ResultPath '%s' cannot be applied: '%.*s' %s%s", p->text, (int)plen, p->text, what,
             detail ? detail : "");
    return NULL;
}

/* NEW reference to a copy of node with value placed at steps i..; node is not modified. */
static json_t *set_at(const path *p, size_t i, json_t *node, json_t *value, etl_error *err)
{
    if (i == p->n)
        return json_incref(value);
    const step *s = &p->steps[i];
    json_t *copy = NULL, *sub = NULL, *result = NULL;
    if (s->kind == STEP_NAME) {
        if (!json_is_object(node))
            return set_fail(p, i, err, "is ", type_phrase(node));
        json_t *old = json_object_getn(node, s->key, s->keylen);
        json_t *fresh = NULL;
        if (!old) {
            if (i + 1 < p->n && p->steps[i + 1].kind == STEP_INDEX)
                return set_fail(p, i + 1, err, "does not exist", " (an index needs an existing array)");
            if (!(old = fresh = json_object()))
                goto nomem;
        }
        sub = set_at(p, i + 1, old, value, err);
        json_decref(fresh);
        if (!sub)
            goto out;
        if (!(copy = json_copy(node)))
            goto nomem;
        int rc = json_object_setn_new_nocheck(copy, s->key, s->keylen, sub);
        sub = NULL; /* consumed, even on failure */
        if (rc != 0)
            goto nomem;
    } else { /* STEP_INDEX: Reference Paths only hold non-negative indices */
        if (!json_is_array(node))
            return set_fail(p, i, err, "is ", type_phrase(node));
        size_t size = json_array_size(node);
        if (s->index < 0 || (unsigned long long)s->index >= size) {
            char detail[64];
            snprintf(detail, sizeof detail, " with %zu item%s", size, size == 1 ? "" : "s");
            return set_fail(p, i, err, "is an array", detail);
        }
        sub = set_at(p, i + 1, json_array_get(node, (size_t)s->index), value, err);
        if (!sub)
            goto out;
        if (!(copy = json_copy(node)))
            goto nomem;
        int rc = json_array_set_new(copy, (size_t)s->index, sub);
        sub = NULL; /* consumed, even on failure */
        if (rc != 0)
            goto nomem;
    }
    result = copy;
    copy = NULL;
    goto out;
nomem:
    etl_fail(err, ETL_ENOMEM, "States.Runtime", "out of memory applying ResultPath '%s'", p->text);
out:
    json_decref(sub);
    json_decref(copy);
    return result;
}

json_t *path_set(const path *p, json_t *root, json_t *value, etl_error *err)
{
    if (p->context) {
        etl_fail(err, ETL_ERUNTIME, "States.ResultPathMatchFailure",
                 "ResultPath '%s' cannot be applied: a ResultPath must start with '$', not '$$'", p->text);
        return NULL;
    }
    if (!root || !value) {
        etl_fail(err, ETL_EINVAL, "States.Runtime", "ResultPath '%s' applied without %s", p->text,
                 root ? "a value" : "an input");
        return NULL;
    }
    return set_at(p, 0, root, value, err);
}
