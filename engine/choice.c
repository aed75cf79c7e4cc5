/* Choice rules: compile a rule tree from the loaded definition once, then evaluate it
 * for every transition through a Choice state.
 *
 * Evaluation runs at transition rate (> 1M/s), so it never allocates and never formats:
 * operands are checked and pre-parsed at compile time (literal timestamps become
 * instants, patterns are validated), paths are compiled, and values are borrowed from
 * the input. Only the context object ($$) may be built, once, by its provider. */
#include "choice.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"
#include "timestamp.h"

typedef enum op_family {
    F_STRING,    /* String{Equals,LessThan,...}[Path] */
    F_MATCH,     /* StringMatches */
    F_NUMERIC,   /* Numeric*[Path] */
    F_BOOLEAN,   /* BooleanEquals[Path] */
    F_TIMESTAMP, /* Timestamp*[Path] */
    F_TYPE,      /* Is* */
} op_family;

typedef enum op_rel { R_EQ, R_LT, R_GT, R_LE, R_GE } op_rel;

typedef enum type_test { T_NULL, T_PRESENT, T_NUMERIC, T_STRING, T_BOOLEAN, T_TIMESTAMP } type_test;

typedef struct op_def {
    const char *name;
    unsigned char family; /* op_family */
    unsigned char rel;    /* op_rel, or type_test for F_TYPE */
    bool is_path;         /* the operand is a Reference Path to the other value */
} op_def;

#define REL_OPS(prefix, fam)                                                               \
    {prefix "Equals", fam, R_EQ, false}, {prefix "LessThan", fam, R_LT, false},             \
    {prefix "GreaterThan", fam, R_GT, false}, {prefix "LessThanEquals", fam, R_LE, false},  \
    {prefix "GreaterThanEquals", fam, R_GE, false}, {prefix "EqualsPath", fam, R_EQ, true}, \
    {prefix "LessThanPath", fam, R_LT, true}, {prefix "GreaterThanPath", fam, R_GT, true},  \
    {prefix "LessThanEqualsPath", fam, R_LE, true},                                         \
    {prefix "GreaterThanEqualsPath", fam, R_GE, true}

static const op_def ops[] = {
    REL_OPS("String", F_STRING),
    REL_OPS("Numeric", F_NUMERIC),
    REL_OPS("Timestamp", F_TIMESTAMP),
    {"StringMatches", F_MATCH, R_EQ, false},
    {"BooleanEquals", F_BOOLEAN, R_EQ, false},
    {"BooleanEqualsPath", F_BOOLEAN, R_EQ, true},
    {"IsNull", F_TYPE, T_NULL, false},
    {"IsPresent", F_TYPE, T_PRESENT, false},
    {"IsNumeric", F_TYPE, T_NUMERIC, false},
    {"IsString", F_TYPE, T_STRING, false},
    {"IsBoolean", F_TYPE, T_BOOLEAN, false},
    {"IsTimestamp", F_TYPE, T_TIMESTAMP, false},
};

typedef enum rule_kind { K_CMP, K_AND, K_OR, K_NOT } rule_kind;

struct choice_rule {
    rule_kind kind;
    const op_def *op;    /* K_CMP */
    path *var;           /* K_CMP: the Variable */
    path *rhs_path;      /* *Path operators */
    json_t *rhs;         /* String*, StringMatches, Numeric* literal (own reference) */
    ts_instant rhs_ts;   /* Timestamp* literal, parsed at compile time */
    bool rhs_bool;       /* BooleanEquals, Is* */
    size_t n_sub;        /* K_AND, K_OR: >= 1; K_NOT: 1 */
    choice_rule **sub;
    char *next;          /* top-level rules only */
    doc_pos next_pos;
    bool uses_ctx;       /* some path in this subtree is rooted at $$ */
};

static const op_def *find_op(const char *name)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(ops[i].name, name) == 0)
            return &ops[i];
    return NULL;
}

static rule_kind logic_kind(const char *name)
{
    if (strcmp(name, "And") == 0)
        return K_AND;
    if (strcmp(name, "Or") == 0)
        return K_OR;
    if (strcmp(name, "Not") == 0)
        return K_NOT;
    return K_CMP;
}

/* ---- building blocks ---------------------------------------------------------------- */

/* Pattern token at p (p < pe): a star, or one literal byte. "\x" escapes any x (the
 * compiler only lets '*' and '\' through); a trailing lone '\' stands for itself. */
static bool token_is_star(const char *p)
{
    return *p == '*';
}

static size_t token_literal(const char *p, const char *pe, char *out_c)
{
    if (*p == '\\' && p + 1 < pe) {
        *out_c = p[1];
        return 2;
    }
    *out_c = *p;
    return 1;
}

/* Greedy match with one backtrack point (the last star): when a later literal fails,
 * the last star absorbs one more byte and matching resumes from just after it. Earlier
 * stars never need revisiting, so the cost is O(len(s) * len(pattern)) without
 * recursion. Byte-wise on UTF-8 is exact: a literal sequence from a valid pattern can
 * only match at character boundaries. */
static bool matches(const char *s, size_t slen, const char *pat, size_t plen)
{
    const char *sp = s, *se = s + slen;
    const char *pp = pat, *pe = pat + plen;
    const char *star_p = NULL; /* pattern position just after the last star */
    const char *star_s = NULL; /* subject position that star is matched up to */

    while (sp < se) {
        if (pp < pe && token_is_star(pp)) {
            star_p = ++pp;
            star_s = sp;
            continue;
        }
        if (pp < pe) {
            char c;
            size_t n = token_literal(pp, pe, &c);
            if (c == *sp) {
                pp += n;
                sp++;
                continue;
            }
        }
        if (!star_p)
            return false;
        pp = star_p;
        sp = ++star_s;
    }
    while (pp < pe && token_is_star(pp))
        pp++;
    return pp == pe;
}

bool choice_string_matches(const char *s, const char *pattern)
{
    return matches(s, strlen(s), pattern, strlen(pattern));
}

/* Exact comparison of an int64 with a double: no conversion of i to double, which
 * would round beyond 2^53 (9007199254740993 must compare above 9007199254740992.0). */
static int int_real_compare(json_int_t i, double d)
{
    if (d != d) /* NaN cannot come from JSON text; order it after everything */
        return -1;
    if (d >= 9223372036854775808.0) /* 2^63: above every int64 */
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    /* d is now in [-2^63, 2^63): its integer part converts exactly. */
    json_int_t whole = (json_int_t)d;
    if (i != whole)
        return i < whole ? -1 : 1;
    /* Exact: beyond 2^52 every double is an integer (frac is 0), and below it both
     * d and whole are representable with room for the difference. */
    double frac = d - (double)whole;
    if (frac > 0)
        return -1;
    if (frac < 0)
        return 1;
    return 0;
}

int choice_numeric_compare(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    if (json_is_integer(a))
        return int_real_compare(json_integer_value(a), json_real_value(b));
    if (json_is_integer(b))
        return -int_real_compare(json_integer_value(b), json_real_value(a));
    double x = json_real_value(a), y = json_real_value(b);
    return x < y ? -1 : x > y;
}

/* Byte-wise, length-aware (JSON strings may hold U+0000): UTF-8 code-unit order. */
static int string_compare(const json_t *a, const json_t *b)
{
    size_t la = json_string_length(a), lb = json_string_length(b);
    int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return la < lb ? -1 : la > lb;
}

/* The value is a string holding exactly one RFC 3339 timestamp. */
static bool json_timestamp(const json_t *v, ts_instant *out)
{
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) /* an embedded NUL would hide a tail */
        return false;
    return ts_parse(s, out);
}

static bool rel_holds(op_rel rel, int c)
{
    switch (rel) {
    case R_EQ: return c == 0;
    case R_LT: return c < 0;
    case R_GT: return c > 0;
    case R_LE: return c <= 0;
    case R_GE: return c >= 0;
    }
    return false;
}

/* ---- evaluation --------------------------------------------------------------------- */

static json_t *resolve(const path *p, json_t *input, ctx_provider *ctx)
{
    json_t *root = path_is_context(p) ? ctx_get(ctx) : input;
    return root ? path_get(p, root) : NULL;
}

static bool eval_type(const choice_rule *r, const json_t *v)
{
    bool is = false;
    if (r->op->rel == T_PRESENT)
        return (v != NULL) == r->rhs_bool;
    if (!v)
        return false; /* missing: false whatever the expected answer */
    switch ((type_test)r->op->rel) {
    case T_NULL: is = json_is_null(v); break;
    case T_NUMERIC: is = json_is_number(v); break;
    case T_STRING: is = json_is_string(v); break;
    case T_BOOLEAN: is = json_is_boolean(v); break;
    case T_TIMESTAMP: is = json_timestamp(v, NULL); break;
    case T_PRESENT: break;
    }
    return is == r->rhs_bool;
}

static bool eval_cmp(const choice_rule *r, json_t *input, ctx_provider *ctx)
{
    const op_def *op = r->op;
    json_t *v = resolve(r->var, input, ctx);
    if (op->family == F_TYPE)
        return eval_type(r, v);
    if (!v)
        return false;
    const json_t *rhs = r->rhs;
    if (op->is_path) {
        rhs = resolve(r->rhs_path, input, ctx);
        if (!rhs)
            return false;
    }

    switch ((op_family)op->family) {
    case F_STRING:
        if (!json_is_string(v) || !json_is_string(rhs))
            return false;
        return rel_holds(op->rel, string_compare(v, rhs));
    case F_MATCH:
        if (!json_is_string(v))
            return false;
        return matches(json_string_value(v), json_string_length(v), json_string_value(rhs),
                       json_string_length(rhs));
    case F_NUMERIC:
        if (!json_is_number(v) || !json_is_number(rhs))
            return false;
        return rel_holds(op->rel, choice_numeric_compare(v, rhs));
    case F_BOOLEAN: {
        if (!json_is_boolean(v))
            return false;
        bool want = r->rhs_bool;
        if (op->is_path) {
            if (!json_is_boolean(rhs))
                return false;
            want = json_is_true(rhs);
        }
        return json_is_true(v) == want;
    }
    case F_TIMESTAMP: {
        ts_instant a, b = r->rhs_ts;
        if (!json_timestamp(v, &a))
            return false;
        if (op->is_path && !json_timestamp(rhs, &b))
            return false;
        return rel_holds(op->rel, ts_compare(a, b));
    }
    case F_TYPE:
        break;
    }
    return false;
}

bool choice_eval(const choice_rule *r, json_t *input, ctx_provider *ctx)
{
    switch (r->kind) {
    case K_CMP:
        return eval_cmp(r, input, ctx);
    case K_AND:
        for (size_t i = 0; i < r->n_sub; i++)
            if (!choice_eval(r->sub[i], input, ctx))
                return false;
        return true;
    case K_OR:
        for (size_t i = 0; i < r->n_sub; i++)
            if (choice_eval(r->sub[i], input, ctx))
                return true;
        return false;
    case K_NOT:
        return !choice_eval(r->sub[0], input, ctx);
    }
    return false;
}

/* ---- compilation -------------------------------------------------------------------- */

static const char *kind_name(rule_kind k)
{
    return k == K_AND ? "And" : k == K_OR ? "Or" : "Not";
}

/* Compile the string at node as a Reference Path; what names the field in messages. */
static path *compile_ref(const doc_node *node, const char *what, diag *d)
{
    char errbuf[256];
    if (!json_is_string(node->json)) {
        diag_add(d, node->pos, "'%s' needs a Reference Path string like \"$.field\", not %s",
                 what, doc_type_name(node));
        return NULL;
    }
    errbuf[0] = '\0';
    path *p = path_compile(json_string_value(node->json), PATH_REFERENCE, errbuf, sizeof errbuf);
    if (!p)
        diag_add(d, node->pos, "'%s' is not a valid Reference Path: %s", what,
                 errbuf[0] ? errbuf : json_string_value(node->json));
    return p;
}

/* Only "\*" and "\\" are escapes in StringMatches; anything else after a backslash is
 * almost certainly a mistake (an unintended "\d" regex habit, or a lost '*'). */
static bool check_pattern(const doc_node *node, diag *d)
{
    const char *s = json_string_value(node->json);
    size_t n = json_string_length(node->json);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\')
            continue;
        if (i + 1 < n && (s[i + 1] == '*' || s[i + 1] == '\\')) {
            i++;
            continue;
        }
        diag_add(d, node->pos,
                 "bad StringMatches pattern: the backslash at offset %zu must be followed by "
                 "'*' (a literal star) or another backslash (a literal backslash)", i);
        return false;
    }
    return true;
}

static bool compile_operand(choice_rule *r, const doc_member *m, diag *d)
{
    const op_def *op = r->op;
    const doc_node *v = m->value;
    json_t *j = v->json;

    if (op->is_path) {
        r->rhs_path = compile_ref(v, op->name, d);
        if (!r->rhs_path)
            return false;
        if (path_is_context(r->rhs_path))
            r->uses_ctx = true;
        return true;
    }
    switch ((op_family)op->family) {
    case F_STRING:
    case F_MATCH:
        if (!json_is_string(j)) {
            diag_add(d, v->pos, "%s needs a string, not %s", op->name, doc_type_name(v));
            return false;
        }
        if (op->family == F_MATCH && !check_pattern(v, d))
            return false;
        r->rhs = json_incref(j);
        return true;
    case F_NUMERIC:
        if (!json_is_number(j)) {
            diag_add(d, v->pos, "%s needs a number, not %s", op->name, doc_type_name(v));
            return false;
        }
        r->rhs = json_incref(j);
        return true;
    case F_BOOLEAN:
    case F_TYPE:
        if (!json_is_boolean(j)) {
            diag_add(d, v->pos, "%s needs true or false, not %s", op->name, doc_type_name(v));
            return false;
        }
        r->rhs_bool = json_is_true(j);
        return true;
    case F_TIMESTAMP:
        if (!json_timestamp(j, &r->rhs_ts)) {
            if (json_is_string(j))
                diag_add(d, v->pos,
                         "%s needs an RFC 3339 timestamp like \"2026-11-22T03:00:00Z\", "
                         "not \"%s\"", op->name, json_string_value(j));
            else
                diag_add(d, v->pos, "%s needs an RFC 3339 timestamp string, not %s", op->name,
                         doc_type_name(v));
            return false;
        }
        return true;
    }
    return false;
}

static bool compile_logic(choice_rule *r, const doc_member *m, diag *d)
{
    const doc_node *v = m->value;
    bool ok = true;

    if (r->kind == K_NOT) {
        if (!json_is_object(v->json)) {
            diag_add(d, v->pos, "'Not' needs one rule (an object), not %s", doc_type_name(v));
            return false;
        }
        r->sub = calloc(1, sizeof *r->sub);
        if (!r->sub) {
            diag_add(d, v->pos, "out of memory");
            return false;
        }
        r->n_sub = 1;
        r->sub[0] = choice_compile(v, false, d);
        ok = r->sub[0] != NULL;
    } else {
        if (!json_is_array(v->json) || v->n == 0) {
            diag_add(d, v->pos, "'%s' needs a non-empty array of rules, not %s",
                     kind_name(r->kind),
                     json_is_array(v->json) ? "an empty array" : doc_type_name(v));
            return false;
        }
        r->sub = calloc(v->n, sizeof *r->sub);
        if (!r->sub) {
            diag_add(d, v->pos, "out of memory");
            return false;
        }
        r->n_sub = v->n;
        /* Compile every item, even after a failure, so all errors are reported. */
        for (size_t i = 0; i < v->n; i++) {
            r->sub[i] = choice_compile(v->items[i], false, d);
            if (!r->sub[i])
                ok = false;
        }
    }
    for (size_t i = 0; i < r->n_sub; i++)
        if (r->sub[i] && r->sub[i]->uses_ctx)
            r->uses_ctx = true;
    return ok;
}

choice_rule *choice_compile(const doc_node *node, bool top_level, diag *d)
{
    const doc_member *op_m = NULL, *var_m = NULL, *next_m = NULL;
    bool ok = true;

    if (!node || !json_is_object(node->json)) {
        if (node)
            diag_add(d, node->pos, "a Choice rule must be an object, not %s",
                     doc_type_name(node));
        return NULL;
    }
    choice_rule *r = calloc(1, sizeof *r);
    if (!r) {
        diag_add(d, node->pos, "out of memory");
        return NULL;
    }

    for (size_t i = 0; i < node->n; i++) {
        const doc_member *m = &node->members[i];
        const op_def *op = NULL;
        rule_kind k = K_CMP;
        if (strcmp(m->key, "Variable") == 0) {
            var_m = m;
        } else if (strcmp(m->key, "Next") == 0) {
            next_m = m;
        } else if (strcmp(m->key, "Comment") == 0) {
            if (!json_is_string(m->value->json)) {
                diag_add(d, m->value->pos, "'Comment' must be a string, not %s",
                         doc_type_name(m->value));
                ok = false;
            }
        } else if ((k = logic_kind(m->key)) != K_CMP || (op = find_op(m->key)) != NULL) {
            if (op_m) {
                bool both_cmp = logic_kind(op_m->key) == K_CMP && k == K_CMP;
                diag_add(d, m->key_pos, "a Choice rule has two %s: %s and %s; keep one",
                         both_cmp ? "comparison operators" : "operators", op_m->key, m->key);
                ok = false;
            } else {
                op_m = m;
                r->kind = k;
                r->op = op;
            }
        } else {
            diag_add(d, m->key_pos, "unknown field '%s' in a Choice rule", m->key);
            ok = false;
        }
    }

    if (!op_m) {
        diag_add(d, node->pos,
                 "a Choice rule needs exactly one comparison operator, or And/Or/Not");
        ok = false;
    }

    if (next_m && !top_level) {
        diag_add(d, next_m->key_pos, "a rule nested in And/Or/Not cannot have 'Next'");
        ok = false;
    } else if (next_m) {
        if (!json_is_string(next_m->value->json)) {
            diag_add(d, next_m->value->pos, "'Next' must be a state name (a string), not %s",
                     doc_type_name(next_m->value));
            ok = false;
        } else {
            r->next = strdup(json_string_value(next_m->value->json));
            r->next_pos = next_m->value->pos;
            if (!r->next) {
                diag_add(d, next_m->value->pos, "out of memory");
                ok = false;
            }
        }
    } else if (top_level) {
        diag_add(d, node->pos, "a top-level Choice rule needs 'Next' (the state to go to)");
        ok = false;
    }

    if (op_m && r->kind != K_CMP) {
        if (var_m) {
            diag_add(d, var_m->key_pos,
                     "'Variable' is not allowed on %s %s rule; put it on the nested rules",
                     r->kind == K_NOT ? "a" : "an", kind_name(r->kind));
            ok = false;
        }
        if (!compile_logic(r, op_m, d))
            ok = false;
    } else {
        if (var_m) {
            r->var = compile_ref(var_m->value, "Variable", d);
            if (!r->var)
                ok = false;
            else if (path_is_context(r->var))
                r->uses_ctx = true;
        } else if (op_m) {
            diag_add(d, node->pos, "a Choice rule with %s needs 'Variable' (the path to test)",
                     op_m->key);
            ok = false;
        }
        if (op_m && !compile_operand(r, op_m, d))
            ok = false;
    }

    if (!ok) {
        choice_free(r);
        return NULL;
    }
    return r;
}

void choice_free(choice_rule *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_sub; i++)
        choice_free(r->sub[i]);
    free(r->sub);
    path_free(r->var);
    path_free(r->rhs_path);
    json_decref(r->rhs);
    free(r->next);
    free(r);
}

const char *choice_next_name(const choice_rule *r)
{
    return r ? r->next : NULL;
}

doc_pos choice_next_pos(const choice_rule *r)
{
    doc_pos none = {0, 0};
    return r && r->next ? r->next_pos : none;
}

bool choice_uses_context(const choice_rule *r)
{
    return r && r->uses_ctx;
}
