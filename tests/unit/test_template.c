/* Unit tests for engine/template.c: compiling payload templates from loaded documents
 * (errors with positions), evaluating them against inputs and the context object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "template.h"

typedef struct fixture {
    doc *dc;
    diag *d;
    tmpl *t;
} fixture;

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v)
        fail_msg("bad test JSON '%s': %s", text, e.text);
    return v;
}

static void assert_json(json_t *got, const char *want)
{
    json_t *w = J(want);
    if (!got || !json_equal(got, w)) {
        char *s = got ? json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        json_decref(w);
        fail_msg("got %s, want %s", s ? s : "(null)", want);
    }
    json_decref(w);
}

/* Load text (JSON when name ends in ".json", YAML otherwise) and compile its root. */
static fixture load(const char *name, const char *text)
{
    fixture f = { 0 };
    f.d = diag_new(name);
    assert_non_null(f.d);
    f.dc = doc_load_string(text, strlen(text), name, false, f.d);
    if (!f.dc) {
        diag_print(f.d, stderr);
        fail_msg("test document did not load");
    }
    f.t = tmpl_compile(f.dc->root, f.d);
    return f;
}

static fixture compile_ok(const char *json)
{
    fixture f = load("t.json", json);
    if (!f.t) {
        diag_print(f.d, stderr);
        fail_msg("template did not compile: %s", json);
    }
    assert_int_equal(diag_count(f.d), 0);
    return f;
}

static void release(fixture *f)
{
    tmpl_free(f->t);
    doc_free(f->dc);
    diag_free(f->d);
}

/* Compile json (must succeed), evaluate against input, compare with want. */
static void check_eval(const char *json, const char *input, const char *want)
{
    fixture f = compile_ok(json);
    json_t *in = J(input), *snapshot = json_deep_copy(in);
    etl_error err;
    etl_error_clear(&err);
    json_t *out = tmpl_eval(f.t, in, NULL, &err);
    if (!out)
        fail_msg("eval failed: %s: %s", err.name, err.cause);
    assert_json(out, want);
    assert_true(json_equal(in, snapshot)); /* the input is never mutated */
    json_decref(out);
    json_decref(snapshot);
    json_decref(in);
    release(&f);
}

/* Compile must fail; diag message i (sorted by position) must equal want. */
static void check_compile_errors(const char *name, const char *text, size_t n, const char *const *want)
{
    fixture f = load(name, text);
    assert_null(f.t);
    if (diag_count(f.d) != n) {
        diag_print(f.d, stderr);
        fail_msg("want %zu errors, got %zu", n, diag_count(f.d));
    }
    for (size_t i = 0; i < n; i++)
        assert_string_equal(diag_message(f.d, i), want[i]);
    release(&f);
}

static void check_eval_error(const char *json, const char *input, const char *name, const char *cause)
{
    fixture f = compile_ok(json);
    json_t *in = J(input);
    etl_error err;
    etl_error_clear(&err);
    assert_null(tmpl_eval(f.t, in, NULL, &err));
    assert_int_equal(err.status, ETL_ERUNTIME);
    assert_string_equal(err.name, name);
    if (cause)
        assert_string_equal(err.cause, cause);
    json_decref(in);
    release(&f);
}

/* ---- evaluation ---- */

static void test_plain_template_is_shared_constant(void **state)
{
    (void)state;
    fixture f = compile_ok("{\"a\": 1, \"b\": {\"c\": [1, \"$.x\"]}, \"d\": \"$.y\"}");
    assert_false(tmpl_uses_context(f.t));
    json_t *out = tmpl_eval(f.t, NULL, NULL, NULL);
    /* no ".$" anywhere: the loaded value itself, not a copy, and strings starting with
     * '$' are plain text */
    assert_ptr_equal(out, f.dc->root->json);
    doc_free(f.dc); /* the template keeps its own reference */
    f.dc = NULL;
    assert_json(out, "{\"a\": 1, \"b\": {\"c\": [1, \"$.x\"]}, \"d\": \"$.y\"}");
    json_t *again = tmpl_eval(f.t, NULL, NULL, NULL);
    assert_ptr_equal(again, out);
    json_decref(again);
    json_decref(out);
    release(&f);
}

static void test_scalar_templates(void **state)
{
    (void)state;
    check_eval("\"text\"", "{}", "\"text\"");
    check_eval("5", "{}", "5");
    check_eval("null", "{}", "null");
    check_eval("[]", "{}", "[]");
}

static void test_path_field(void **state)
{
    (void)state;
    check_eval("{\"a.$\": \"$.x\", \"b\": 1}", "{\"x\": {\"y\": 2}}", "{\"a\": {\"y\": 2}, \"b\": 1}");
    check_eval("{\"all.$\": \"$\"}", "[1, 2]", "{\"all\": [1, 2]}");
    check_eval("{\"v.$\": \"$.list[-1]\", \"w.$\": \"$['a.b']\"}", "{\"list\": [1, 2, 3], \"a.b\": true}",
               "{\"v\": 3, \"w\": true}");
}

static void test_path_value_is_shared(void **state)
{
    (void)state;
    fixture f = compile_ok("{\"a.$\": \"$.x\"}");
    json_t *in = J("{\"x\": {\"big\": [1, 2, 3]}}");
    json_t *out = tmpl_eval(f.t, in, NULL, NULL);
    assert_ptr_equal(json_object_get(out, "a"), json_object_get(in, "x"));
    json_decref(out);
    assert_int_equal(json_object_get(in, "x")->refcount, 1);
    json_decref(in);
    release(&f);
}

static void test_nesting(void **state)
{
    (void)state;
    check_eval("{\"outer\": {\"in.$\": \"$.v\", \"k\": \"lit\", \"deep\": {\"d.$\": \"$.w.z\"}}, \"c\": {\"p\": 1}}",
               "{\"v\": 1, \"w\": {\"z\": \"zz\"}}",
               "{\"outer\": {\"in\": 1, \"k\": \"lit\", \"deep\": {\"d\": \"zz\"}}, \"c\": {\"p\": 1}}");
}

static void test_key_order_kept(void **state)
{
    (void)state;
    fixture f = compile_ok("{\"z\": 0, \"y.$\": \"$.a\", \"x\": 2}");
    json_t *in = J("{\"a\": 1}");
    json_t *out = tmpl_eval(f.t, in, NULL, NULL);
    char *s = json_dumps(out, JSON_COMPACT);
    assert_string_equal(s, "{\"z\":0,\"y\":1,\"x\":2}");
    free(s);
    json_decref(out);
    json_decref(in);
    release(&f);
}

static void test_arrays_of_templates(void **state)
{
    (void)state;
    check_eval("{\"list\": [{\"id.$\": \"$.id\"}, \"$.id\", 3, [{\"n.$\": \"$.n\"}]]}", "{\"id\": 7, \"n\": 8}",
               "{\"list\": [{\"id\": 7}, \"$.id\", 3, [{\"n\": 8}]]}");
    check_eval("[{\"a.$\": \"$.x\"}, {\"b\": 2}]", "{\"x\": \"X\"}", "[{\"a\": \"X\"}, {\"b\": 2}]");
}

static void test_query_paths(void **state)
{
    (void)state;
    const char *in = "{\"items\": [{\"id\": 1}, {\"id\": 2}, {}], \"m\": {\"a\": {\"id\": 3}}}";
    check_eval("{\"ids.$\": \"$.items[*].id\"}", in, "{\"ids\": [1, 2]}");
    check_eval("{\"ids.$\": \"$..id\"}", in, "{\"ids\": [1, 2, 3]}");
    check_eval("{\"first.$\": \"$.items[0:1]\"}", in, "{\"first\": [{\"id\": 1}]}");
    /* an indefinite path that matches nothing is an empty array, not an error */
    check_eval("{\"none.$\": \"$.items[*].nope\"}", in, "{\"none\": []}");
}

static void test_falsy_values_selected(void **state)
{
    (void)state;
    check_eval("{\"z.$\": \"$.z\", \"f.$\": \"$.f\", \"e.$\": \"$.e\", \"n.$\": \"$.n\", \"a.$\": \"$.a\", \"o.$\": \"$.o\"}",
               "{\"z\": 0, \"f\": false, \"e\": \"\", \"n\": null, \"a\": [], \"o\": {}}",
               "{\"z\": 0, \"f\": false, \"e\": \"\", \"n\": null, \"a\": [], \"o\": {}}");
}

static void test_int64_exact(void **state)
{
    (void)state;
    fixture f = compile_ok("{\"big.$\": \"$.v\", \"lit\": -9223372036854775808}");
    json_t *in = J("{\"v\": 9223372036854775807}");
    json_t *out = tmpl_eval(f.t, in, NULL, NULL);
    assert_true(json_integer_value(json_object_get(out, "big")) == INT64_MAX);
    assert_true(json_integer_value(json_object_get(out, "lit")) == INT64_MIN);
    json_decref(out);
    json_decref(in);
    release(&f);
}

static void test_missing_path_fails(void **state)
{
    (void)state;
    check_eval_error("{\"x.$\": \"$.x\"}", "{\"y\": 1}", "States.ParameterPathFailure",
                     "the JSONPath '$.x' specified for the field 'x.$' could not be found in the input");
    check_eval_error("{\"ok\": 1, \"in\": {\"deep.$\": \"$.a[3]\"}}", "{\"a\": [1]}", "States.ParameterPathFailure",
                     "the JSONPath '$.a[3]' specified for the field 'deep.$' could not be found in the input");
    /* inside an array of templates, after a field that did evaluate */
    check_eval_error("[{\"a.$\": \"$.a\"}, {\"b.$\": \"$.b\"}]", "{\"a\": 1}", "States.ParameterPathFailure",
                     "the JSONPath '$.b' specified for the field 'b.$' could not be found in the input");
}

static json_t *build_ctx(void *arg)
{
    int *calls = arg;
    (*calls)++;
    return J("{\"Execution\": {\"Name\": \"run-1\"}, \"Map\": {\"Item\": {\"Index\": 4, \"Value\": {\"k\": 1}}}}");
}

static void test_context_paths(void **state)
{
    (void)state;
    fixture f = compile_ok("{\"name.$\": \"$$.Execution.Name\", \"i.$\": \"$$.Map.Item.Index\", \"v.$\": \"$.v\","
                           " \"ctx.$\": \"$$\"}");
    assert_true(tmpl_uses_context(f.t));
    int calls = 0;
    ctx_provider cp = { .build = build_ctx, .arg = &calls };
    json_t *in = J("{\"v\": \"input\"}");
    json_t *out = tmpl_eval(f.t, in, &cp, NULL);
    assert_non_null(out);
    assert_json(json_object_get(out, "name"), "\"run-1\"");
    assert_json(json_object_get(out, "i"), "4");
    assert_json(json_object_get(out, "v"), "\"input\"");
    assert_ptr_equal(json_object_get(out, "ctx"), cp.cache);
    assert_int_equal(calls, 1); /* built once, on first use */
    json_decref(out);
    json_decref(in);
    ctx_release(&cp);
    release(&f);
}

static void test_context_not_built_when_unused(void **state)
{
    (void)state;
    fixture f = compile_ok("{\"v.$\": \"$.v\", \"n\": {\"lit\": \"$$.x\"}}");
    assert_false(tmpl_uses_context(f.t));
    int calls = 0;
    ctx_provider cp = { .build = build_ctx, .arg = &calls };
    json_t *in = J("{\"v\": 1}");
    json_t *out = tmpl_eval(f.t, in, &cp, NULL);
    assert_json(out, "{\"v\": 1, \"n\": {\"lit\": \"$$.x\"}}");
    assert_int_equal(calls, 0);
    json_decref(out);
    json_decref(in);
    release(&f);
}

static void test_missing_context_fails(void **state)
{
    (void)state;
    const char *cause = "the JSONPath '$$.Execution.Name' specified for the field 'n.$' could not be found in the "
                        "context object";
    fixture f = compile_ok("{\"n.$\": \"$$.Execution.Name\", \"all.$\": \"$$..Name\"}");
    json_t *in = J("{}");
    etl_error err;
    etl_error_clear(&err);
    assert_null(tmpl_eval(f.t, in, NULL, &err)); /* no provider at all */
    assert_string_equal(err.name, "States.ParameterPathFailure");
    assert_string_equal(err.cause, cause);
    int calls = 0;
    ctx_provider cp = { .build = build_ctx, .arg = &calls };
    json_t *out = tmpl_eval(f.t, in, &cp, &err);
    assert_json(out, "{\"n\": \"run-1\", \"all\": [\"run-1\"]}");
    json_decref(out);
    ctx_release(&cp);
    json_decref(in);
    release(&f);
}

static void test_yaml_template(void **state)
{
    (void)state;
    fixture f = load("t.yaml", "id.$: $.order.id\n"
                               "tags: [a, b]\n"
                               "lines:\n"
                               "  - sku.$: $.order.sku\n"
                               "    qty: 1\n");
    assert_non_null(f.t);
    json_t *in = J("{\"order\": {\"id\": 12345678901234, \"sku\": \"X-1\"}}");
    json_t *out = tmpl_eval(f.t, in, NULL, NULL);
    assert_json(out, "{\"id\": 12345678901234, \"tags\": [\"a\", \"b\"], \"lines\": [{\"sku\": \"X-1\", \"qty\": 1}]}");
    json_decref(out);
    json_decref(in);
    release(&f);
}

static void test_eval_twice_independent(void **state)
{
    (void)state;
    fixture f = compile_ok("{\"a.$\": \"$.x\", \"k\": {\"c\": 1}}");
    json_t *in1 = J("{\"x\": 1}"), *in2 = J("{\"x\": 2}");
    json_t *o1 = tmpl_eval(f.t, in1, NULL, NULL), *o2 = tmpl_eval(f.t, in2, NULL, NULL);
    assert_ptr_not_equal(o1, o2);
    assert_json(o1, "{\"a\": 1, \"k\": {\"c\": 1}}");
    assert_json(o2, "{\"a\": 2, \"k\": {\"c\": 1}}");
    /* the constant part is shared between results */
    assert_ptr_equal(json_object_get(o1, "k"), json_object_get(o2, "k"));
    json_decref(o1);
    json_decref(o2);
    json_decref(in1);
    json_decref(in2);
    release(&f);
}

/* ---- compile errors ---- */

static void test_collision_reported_at_second_key(void **state)
{
    (void)state;
    const char *want1[] = { "t.json:3:3: key 'a.$' collides with 'a': keys must stay unique once '.$' is removed" };
    check_compile_errors("t.json", "{\n  \"a\": 1,\n  \"a.$\": \"$.x\"\n}", 1, want1);
    const char *want2[] = { "t.json:3:3: key 'a' collides with 'a.$': keys must stay unique once '.$' is removed" };
    check_compile_errors("t.json", "{\n  \"a.$\": \"$.x\",\n  \"a\": 1\n}", 1, want2);
    /* nested objects are checked too */
    const char *want3[] = { "t.json:2:21: key 'b.$' collides with 'b': keys must stay unique once '.$' is removed" };
    check_compile_errors("t.json", "{\n  \"o\": {\"b\": \"lit\", \"b.$\": \"$.b\"}\n}", 1, want3);
}

static void test_dynamic_value_must_be_string(void **state)
{
    (void)state;
    const char *want[] = {
        "t.json:1:10: the value of 'id.$' must be a string: a path starting with '$' or an intrinsic function "
        "(found integer)",
        "t.json:2:9: the value of 'o.$' must be a string: a path starting with '$' or an intrinsic function "
        "(found object)",
    };
    check_compile_errors("t.json", "{\"id.$\": 42,\n \"o.$\": {\"p.$\": \"$.p\"}}", 2, want);
}

static void test_dynamic_value_must_be_path_or_intrinsic(void **state)
{
    (void)state;
    const char *want[] = {
        "t.json:1:10: the value of 'id.$' must be a path starting with '$' or an intrinsic function",
    };
    check_compile_errors("t.json", "{\"id.$\": \"hello\"}", 1, want);
}

static void test_bad_path_reported(void **state)
{
    (void)state;
    const char *want[] = {
        "t.json:1:9: invalid path in 'a.$': unexpected ']' at offset 4 in path '$.x]'",
    };
    check_compile_errors("t.json", "{\"a.$\": \"$.x]\"}", 1, want);
}

static void test_every_error_reported(void **state)
{
    (void)state;
    /* one compile reports every problem, nested ones included, sorted by position */
    const char *want[] = {
        "t.json:2:9: the value of 'a.$' must be a path starting with '$' or an intrinsic function",
        "t.json:3:9: invalid path in 'b.$': expected a name or '*' after '.' at offset 3 in path '$.'",
        "t.json:4:2: key 'c' collides with 'c.$': keys must stay unique once '.$' is removed",
        "t.json:4:26: the value of 'd.$' must be a string: a path starting with '$' or an intrinsic function "
        "(found boolean)",
    };
    check_compile_errors("t.json",
                         "{\"c.$\": \"$.c\",\n"
                         " \"a.$\": \"nope\",\n"
                         " \"b.$\": \"$.\",\n"
                         " \"c\": [{\"x\": 1}, {\"d.$\": true}]\n"
                         "}",
                         4, want);
}

/* ---- intrinsic functions ---- */

static void test_intrinsic_field(void **state)
{
    (void)state;
    check_eval("{\"msg.$\": \"States.Format('order {} has {} lines', $.id, $.n)\", \"k\": 1}",
               "{\"id\": \"A7\", \"n\": 3}", "{\"msg\": \"order A7 has 3 lines\", \"k\": 1}");
    check_eval("{\"arr.$\": \"States.Array($.a, 2)\"}", "{\"a\": 1}", "{\"arr\": [1, 2]}");
}

static void test_intrinsic_uses_context(void **state)
{
    (void)state;
    fixture f = compile_ok("{\"s.$\": \"States.Format('{}', $$.Execution.Name)\"}");
    assert_true(tmpl_uses_context(f.t));
    int calls = 0;
    ctx_provider cp = { .build = build_ctx, .arg = &calls };
    json_t *in = J("{}");
    json_t *out = tmpl_eval(f.t, in, &cp, NULL);
    assert_json(out, "{\"s\": \"run-1\"}");
    json_decref(out);
    json_decref(in);
    ctx_release(&cp);
    release(&f);
}

static void test_intrinsic_errors(void **state)
{
    (void)state;
    fixture f = load("t.json", "{\"x.$\": \"States.NoSuchFunction(1)\"}");
    assert_null(f.t);
    assert_int_equal(diag_count(f.d), 1);
    assert_non_null(strstr(diag_message(f.d, 0), "t.json:1:9: invalid intrinsic function in 'x.$': "));
    release(&f);
    check_eval_error("{\"s.$\": \"States.Format('{} {}', $.a)\"}", "{\"a\": 1}", "States.IntrinsicFailure", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_template_is_shared_constant),
        cmocka_unit_test(test_scalar_templates),
        cmocka_unit_test(test_path_field),
        cmocka_unit_test(test_path_value_is_shared),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_key_order_kept),
        cmocka_unit_test(test_arrays_of_templates),
        cmocka_unit_test(test_query_paths),
        cmocka_unit_test(test_falsy_values_selected),
        cmocka_unit_test(test_int64_exact),
        cmocka_unit_test(test_missing_path_fails),
        cmocka_unit_test(test_context_paths),
        cmocka_unit_test(test_context_not_built_when_unused),
        cmocka_unit_test(test_missing_context_fails),
        cmocka_unit_test(test_yaml_template),
        cmocka_unit_test(test_eval_twice_independent),
        cmocka_unit_test(test_collision_reported_at_second_key),
        cmocka_unit_test(test_dynamic_value_must_be_string),
        cmocka_unit_test(test_dynamic_value_must_be_path_or_intrinsic),
        cmocka_unit_test(test_bad_path_reported),
        cmocka_unit_test(test_every_error_reported),
        cmocka_unit_test(test_intrinsic_field),
        cmocka_unit_test(test_intrinsic_uses_context),
        cmocka_unit_test(test_intrinsic_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
