/* Unit tests for engine/intrinsic.c: every ASL intrinsic function with good and bad
 * arguments, the argument grammar (escapes, numbers, paths, nesting) and compile errors.
 * Expected values come from the AWS documentation examples and independent vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "intrinsic.h"

/* The fixed input most cases read; falsy values on purpose. */
static const char *const INPUT =
    "{\"name\": \"Arnav\", \"template\": \"Hello, my name is {}.\","
    " \"obj\": {\"a\": 1, \"b\": [1, 2]}, \"order\": {\"z\": 1, \"a\": 2},"
    " \"arr\": [1, 2, 3, 4, 5, 6, 7, 8, 9], \"escaped\": \"{\\\"foo\\\": \\\"bar\\\"}\","
    " \"zero\": 0, \"f\": false, \"empty\": \"\", \"nul\": null, \"arr0\": [], \"obj0\": {},"
    " \"big\": 9007199254740993, \"max\": 9223372036854775807,"
    " \"items\": [{\"id\": 1}, {\"id\": 2}], \"a b\": \"spaced\", \"x,y\": \"comma\","
    " \"ImageRecipe\": {\"Arn\": \"arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/"
    "my-recipe.name/1.0.2\"}}";

static int ctx_builds;

static json_t *build_ctx(void *arg)
{
    (void)arg;
    ctx_builds++;
    return json_pack("{s:{s:s},s:{s:{s:i,s:i}}}", "Execution", "Id", "arn:exec:1", "Map", "Item",
                     "Index", 0, "Value", 0);
}

/* Compile text (which must compile) and evaluate it against input_json. */
static json_t *run_with(const char *text, const char *input_json, ctx_provider *cp,
                        etl_error *err)
{
    char msg[512];
    intrinsic *fn = intrinsic_compile(text, msg, sizeof msg);
    if (!fn)
        fail_msg("compile failed for %s: %s", text, msg);
    json_error_t jerr;
    json_t *in = json_loads(input_json, JSON_DECODE_ANY, &jerr);
    if (!in)
        fail_msg("bad test input: %s", jerr.text);
    json_t *r = intrinsic_eval(fn, in, cp, err);
    json_decref(in);
    intrinsic_free(fn);
    return r;
}

static json_t *run(const char *text, etl_error *err)
{
    ctx_provider cp = {.build = build_ctx};
    json_t *r = run_with(text, INPUT, &cp, err);
    ctx_release(&cp);
    return r;
}

static void want_json_in(const char *text, const char *input_json, const char *expected)
{
    etl_error err = {0};
    ctx_provider cp = {.build = build_ctx};
    json_t *r = run_with(text, input_json, &cp, &err);
    ctx_release(&cp);
    if (!r)
        fail_msg("%s failed: %s: %s", text, err.name, err.cause);
    json_t *want = json_loads(expected, JSON_DECODE_ANY, NULL);
    assert_non_null(want);
    /* json_equal tells 1 from 1.0, so this also checks that integers stay integers. */
    if (!json_equal(r, want)) {
        char *got = json_dumps(r, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("%s: got %s, want %s", text, got, expected);
    }
    json_decref(want);
    json_decref(r);
}

static void want_json(const char *text, const char *expected)
{
    want_json_in(text, INPUT, expected);
}

static void want_string(const char *text, const char *expected)
{
    etl_error err = {0};
    json_t *r = run(text, &err);
    if (!r)
        fail_msg("%s failed: %s", text, err.cause);
    assert_true(json_is_string(r));
    assert_string_equal(json_string_value(r), expected);
    json_decref(r);
}

/* Evaluation must fail with States.IntrinsicFailure and a cause holding each part. */
static void want_fail(const char *text, const char *part1, const char *part2)
{
    etl_error err = {0};
    json_t *r = run(text, &err);
    if (r) {
        char *got = json_dumps(r, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("%s should fail, returned %s", text, got);
    }
    assert_string_equal(err.name, "States.IntrinsicFailure");
    assert_int_equal(err.status, ETL_ERUNTIME);
    if (!strstr(err.cause, part1) || (part2 && !strstr(err.cause, part2)))
        fail_msg("%s: cause '%s' lacks '%s' / '%s'", text, err.cause, part1,
                 part2 ? part2 : "");
}

static void want_compile_error(const char *text, const char *part1, const char *part2)
{
    char msg[512] = "";
    intrinsic *fn = intrinsic_compile(text, msg, sizeof msg);
    if (fn) {
        intrinsic_free(fn);
        fail_msg("%s should not compile", text);
    }
    if (!strstr(msg, part1) || (part2 && !strstr(msg, part2)))
        fail_msg("%s: message '%s' lacks '%s' / '%s'", text, msg, part1, part2 ? part2 : "");
}

/* ---- recognition and grammar ------------------------------------------------------- */

static void test_is_call(void **state)
{
    (void)state;
    assert_true(intrinsic_is_call("States.Format('x')"));
    assert_true(intrinsic_is_call("  \tStates.UUID()"));
    assert_false(intrinsic_is_call("$.States.x"));
    assert_false(intrinsic_is_call("States"));
    assert_false(intrinsic_is_call(""));
}

static void test_whitespace_around_arguments(void **state)
{
    (void)state;
    want_json("  States.Array( 1 ,\t'a' ,$.zero\n, States.Array ( ) )  ", "[1, \"a\", 0, []]");
    want_json("States.Array(1,2)", "[1, 2]");
}

static void test_literal_arguments(void **state)
{
    (void)state;
    want_json("States.Array('s', 0, -7, 2.5, -1e3, true, false, null, '')",
                "[\"s\", 0, -7, 2.5, -1000.0, true, false, null, \"\"]");
}

static void test_big_integers_exact(void **state)
{
    (void)state;
    want_json("States.Array(9223372036854775807, -9223372036854775808, $.big, $.max)",
                "[9223372036854775807, -9223372036854775808, 9007199254740993, "
                "9223372036854775807]");
    want_string("States.Format('{} {}', $.big, 9007199254740993)",
                  "9007199254740993 9007199254740993");
}

static void test_string_escapes(void **state)
{
    (void)state;
    want_json("States.Array('it\\'s', 'a\\\\b', '\\{x\\}', 'comma, (paren)')",
                "[\"it's\", \"a\\\\b\", \"{x}\", \"comma, (paren)\"]");
}

static void test_falsy_path_values(void **state)
{
    (void)state;
    want_json("States.Array($.zero, $.f, $.empty, $.nul, $.arr0, $.obj0)",
                "[0, false, \"\", null, [], {}]");
    /* A Map item that is 0 is an input like any other. */
    want_json_in("States.Array($)", "0", "[0]");
    want_json_in("States.JsonToString($)", "false", "\"false\"");
}

static void test_path_argument_forms(void **state)
{
    (void)state;
    want_json("States.Array($['a b'], $['x,y'], $.arr[0], $.items[1].id)",
                "[\"spaced\", \"comma\", 1, 2]");
    /* An indefinite path yields an array of its matches, possibly empty. */
    want_json("States.Array($.items[*].id, $.items[*].nope)", "[[1, 2], []]");
}

static void test_missing_path_fails(void **state)
{
    (void)state;
    want_fail("States.Format('{}', $.missing)", "$.missing", "States.Format");
    want_fail("States.ArrayLength($.obj.nothere)", "$.obj.nothere", "matched nothing");
}

static void test_nested_calls(void **state)
{
    (void)state;
    /* The AWS documentation's nested example (whose template there has one '{}' too many). */
    want_string("States.Format('{}.{}', States.ArrayGetItem(States.StringSplit("
                  "States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), "
                  "States.ArrayGetItem(States.StringSplit(States.ArrayGetItem("
                  "States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1))",
                  "1.0");
    want_json("States.ArrayLength(States.ArrayUnique(States.Array(1, 1, States.MathAdd(1, 1))))",
                "2");
}

static void test_nested_error_names_inner_function(void **state)
{
    (void)state;
    want_fail("States.Format('{}', States.ArrayGetItem($.arr, 99))", "States.ArrayGetItem",
                "99");
}

static void test_context_paths(void **state)
{
    (void)state;
    char msg[256];
    intrinsic *plain = intrinsic_compile("States.Array($.zero, States.Format('{}', $.name))",
                                         msg, sizeof msg);
    intrinsic *direct = intrinsic_compile("States.Format('{}', $$.Execution.Id)", msg, sizeof msg);
    intrinsic *nested = intrinsic_compile("States.Array(1, States.Array(States.Format('{}', "
                                          "$$.Map.Item.Index)))", msg, sizeof msg);
    assert_non_null(plain);
    assert_non_null(direct);
    assert_non_null(nested);
    assert_false(intrinsic_uses_context(plain));
    assert_true(intrinsic_uses_context(direct));
    assert_true(intrinsic_uses_context(nested));

    json_t *in = json_loads(INPUT, 0, NULL);
    ctx_provider cp = {.build = build_ctx};
    etl_error err = {0};
    ctx_builds = 0;
    json_t *r = intrinsic_eval(plain, in, &cp, &err);
    assert_non_null(r);
    assert_int_equal(ctx_builds, 0); /* nothing asked for $$: it is never built */
    json_decref(r);
    r = intrinsic_eval(direct, in, &cp, &err);
    assert_non_null(r);
    assert_string_equal(json_string_value(r), "arn:exec:1");
    json_decref(r);
    r = intrinsic_eval(nested, in, &cp, &err);
    assert_non_null(r);
    assert_int_equal(ctx_builds, 1); /* built once, then cached */
    json_decref(r);
    ctx_release(&cp);

    /* No context provider: a $$ argument is a failure, not null. */
    r = intrinsic_eval(direct, in, NULL, &err);
    assert_null(r);
    assert_string_equal(err.name, "States.IntrinsicFailure");
    assert_non_null(strstr(err.cause, "$$.Execution.Id"));

    json_decref(in);
    intrinsic_free(plain);
    intrinsic_free(direct);
    intrinsic_free(nested);
}

/* ---- compile errors ----------------------------------------------------------------- */

static void test_compile_unknown_function(void **state)
{
    (void)state;
    want_compile_error("States.Nope(1)", "unknown intrinsic function 'States.Nope'", "offset 0");
    want_compile_error("States.Array(States.Formatt('x'))", "'States.Formatt'", "offset 13");
    want_compile_error("Foo.Bar()", "expected an intrinsic call", "offset 0");
}

static void test_compile_argument_counts(void **state)
{
    (void)state;
    want_compile_error("States.ArrayLength($.arr, 1)", "takes 1 argument, got 2", NULL);
    want_compile_error("States.UUID(1)", "takes 0 arguments, got 1", NULL);
    want_compile_error("States.Format()", "at least 1 argument", NULL);
    want_compile_error("States.MathRandom(1)", "2 to 3 arguments, got 1", NULL);
    want_compile_error("States.JsonMerge($.obj, $.obj)", "takes 3 arguments, got 2", NULL);
    want_compile_error("States.Array(1, States.ArrayRange(1, 2))", "States.ArrayRange takes 3",
                         "offset 16");
}

static void test_compile_syntax_errors(void **state)
{
    (void)state;
    want_compile_error("States.Format('abc", "unterminated string", "offset 14");
    want_compile_error("States.Format('ab\\')", "unterminated string", NULL);
    want_compile_error("States.Array(1) x", "after the end of the call", "offset 16");
    want_compile_error("States.Array(1)(2)", "after the end of the call", "offset 15");
    want_compile_error("States.Array(1 2)", "expected ',' or ')'", "offset 15");
    want_compile_error("States.Array(1,)", "expected an argument", "offset 15");
    want_compile_error("States.Array(1", "expected ',' or ')'", "end of text");
    want_compile_error("States.Array", "expected '('", NULL);
    want_compile_error("States.Array(\"x\")", "expected an argument", "'\"'");
    want_compile_error("States.Array('a\\nb')", "invalid escape", "offset 15");
    want_compile_error("States.Array(truex)", "expected an argument", NULL);
    want_compile_error("States.Array(01)", "leading zero", NULL);
    want_compile_error("States.Array(1.)", "invalid number", NULL);
    want_compile_error("States.Array(9223372036854775808)", "does not fit in 64 bits", NULL);
    want_compile_error("States.Array($.a[)", "invalid path argument", "offset 13");
    want_compile_error("", "expected an intrinsic call", NULL);
}

static void test_compile_nesting_limit(void **state)
{
    (void)state;
    char text[1024] = "";
    for (int i = 0; i < 10; i++)
        strcat(text, "States.Array(");
    strcat(text, "1");
    for (int i = 0; i < 10; i++)
        strcat(text, ")");
    char msg[256];
    intrinsic *fn = intrinsic_compile(text, msg, sizeof msg);
    assert_non_null(fn); /* ten levels, as AWS allows */
    intrinsic_free(fn);
    char deeper[1024] = "States.Array(";
    strcat(deeper, text);
    strcat(deeper, ")");
    want_compile_error(deeper, "nested more than 10 deep", NULL);
}

/* ---- States.Format ------------------------------------------------------------------ */

static void test_format_basic(void **state)
{
    (void)state;
    want_string("States.Format('Hello, my name is {}.', $.name)", "Hello, my name is Arnav.");
    want_string("States.Format($.template, $.name)", "Hello, my name is Arnav.");
    want_string("States.Format('no placeholders')", "no placeholders");
    want_string("States.Format('{}', '')", "");
}

static void test_format_value_rendering(void **state)
{
    (void)state;
    want_string("States.Format('{}|{}|{}|{}|{}|{}', 1, 2.5, true, null, $.obj, $.zero)",
                  "1|2.5|true|null|{\"a\":1,\"b\":[1,2]}|0");
    want_string("States.Format('{} {} {}', 0.1, 2.0, -0.5e-3)", "0.1 2.0 -0.0005");
    /* A value that contains {} is inserted as is, not expanded again. */
    want_string("States.Format('{}{}', '{}', 'a')", "{}a");
}

static void test_format_escapes(void **state)
{
    (void)state;
    want_string("States.Format('\\{\\} is text, {} is not; \\\\ and \\'q\\'', 'x')",
                  "{} is text, x is not; \\ and 'q'");
    /* \{ is a literal brace even when a '}' follows it: no placeholder here. */
    want_string("States.Format('\\{}')", "{}");
    want_fail("States.Format('\\{}', 'x')", "0 placeholder", "1 value");
}

static void test_format_placeholder_mismatch(void **state)
{
    (void)state;
    want_fail("States.Format('{} and {}', 'a')", "2 placeholder", "1 value");
    want_fail("States.Format('{}', 'a', 'b')", "1 placeholder", "2 value");
    want_fail("States.Format($.template)", "1 placeholder", "0 value");
    want_fail("States.Format($.template, 1, 2)", "States.Format", "1 placeholder");
}

static void test_format_template_must_be_string(void **state)
{
    (void)state;
    want_fail("States.Format(1)", "template", "must be a string");
    want_fail("States.Format($.nul)", "template", "null");
}

static void test_format_many_arguments(void **state)
{
    (void)state;
    want_string("States.Format('{}{}{}{}{}{}{}{}{}{}{}', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 'x')",
                  "0123456789x");
}

/* ---- JSON <-> string ---------------------------------------------------------------- */

static void test_string_to_json(void **state)
{
    (void)state;
    want_json("States.StringToJson($.escaped)", "{\"foo\": \"bar\"}");
    want_json("States.StringToJson('20')", "20");
    want_json("States.StringToJson('[1, 2.5, null]')", "[1, 2.5, null]");
    want_json("States.StringToJson('9223372036854775807')", "9223372036854775807");
    want_json("States.StringToJson('\"\"')", "\"\"");
}

static void test_string_to_json_failures(void **state)
{
    (void)state;
    want_fail("States.StringToJson('\\{oops')", "States.StringToJson", "not valid JSON");
    want_fail("States.StringToJson($.empty)", "not valid JSON", NULL);
    want_fail("States.StringToJson($.obj)", "must be a string", "an object");
}

static void test_json_to_string(void **state)
{
    (void)state;
    want_string("States.JsonToString($.obj)", "{\"a\":1,\"b\":[1,2]}");
    want_string("States.JsonToString($.order)", "{\"z\":1,\"a\":2}"); /* insertion order */
    want_string("States.JsonToString($.zero)", "0");
    want_string("States.JsonToString($.empty)", "\"\"");
    want_string("States.JsonToString($.nul)", "null");
    want_string("States.JsonToString($.max)", "9223372036854775807");
    want_string("States.JsonToString('q\"\\\\\n\t')", "\"q\\\"\\\\\\n\\t\"");
    /* Round trip. */
    want_json("States.StringToJson(States.JsonToString($.obj))", "{\"a\":1,\"b\":[1,2]}");
}

/* ---- arrays ----------------------------------------------------------------------- */

static void test_array(void **state)
{
    (void)state;
    want_json_in("States.Array('Foo', 2020, $.someJson, null)",
                   "{\"someJson\": {\"random\": \"abcdefg\"}}",
                   "[\"Foo\", 2020, {\"random\": \"abcdefg\"}, null]");
    want_json("States.Array()", "[]");
}

static void test_array_partition(void **state)
{
    (void)state;
    want_json("States.ArrayPartition($.arr, 4)", "[[1,2,3,4],[5,6,7,8],[9]]");
    want_json("States.ArrayPartition($.arr, 3)", "[[1,2,3],[4,5,6],[7,8,9]]");
    want_json("States.ArrayPartition($.arr, 100)", "[[1,2,3,4,5,6,7,8,9]]");
    want_json("States.ArrayPartition($.arr0, 2)", "[]");
    want_json("States.ArrayPartition(States.Array(0, false), 1)", "[[0],[false]]");
}

static void test_array_partition_failures(void **state)
{
    (void)state;
    want_fail("States.ArrayPartition($.arr, 0)", "States.ArrayPartition", "greater than 0");
    want_fail("States.ArrayPartition($.arr, -2)", "greater than 0", NULL);
    want_fail("States.ArrayPartition($.arr, 1.5)", "must be an integer", NULL);
    want_fail("States.ArrayPartition($.obj, 2)", "must be an array", "an object");
}

static void test_array_contains(void **state)
{
    (void)state;
    want_json("States.ArrayContains($.arr, 5)", "true");
    want_json("States.ArrayContains($.arr, 10)", "false");
    want_json("States.ArrayContains($.arr, 5.0)", "true"); /* 5 equals 5.0 */
    want_json("States.ArrayContains($.arr, '5')", "false");
    want_json("States.ArrayContains($.items, States.StringToJson('{\"id\": 2}'))", "true");
    want_json_in("States.ArrayContains($.a, $.b)",
                   "{\"a\": [{\"x\": [1, {\"y\": null}], \"z\": 0}], "
                   "\"b\": {\"z\": 0.0, \"x\": [1, {\"y\": null}]}}",
                   "true");
    want_json_in("States.ArrayContains($.a, $.b)", "{\"a\": [0, \"\", []], \"b\": false}",
                   "false");
    want_json_in("States.ArrayContains($.a, $.b)", "{\"a\": [0, null], \"b\": null}", "true");
    want_fail("States.ArrayContains($.name, 'A')", "States.ArrayContains", "must be an array");
}

static void test_array_range(void **state)
{
    (void)state;
    want_json("States.ArrayRange(1, 9, 2)", "[1,3,5,7,9]");
    want_json("States.ArrayRange(1, 10, 3)", "[1,4,7,10]");
    want_json("States.ArrayRange(1, 8, 3)", "[1,4,7]");
    want_json("States.ArrayRange(10, 1, -3)", "[10,7,4,1]");
    want_json("States.ArrayRange(0, 0, 5)", "[0]");
    want_json("States.ArrayRange(1, 0, 1)", "[]");
    /* Bounds at the ends of int64 do not overflow. */
    want_json("States.ArrayRange(-9223372036854775808, 9223372036854775807, "
                "9223372036854775807)",
                "[-9223372036854775808, -1, 9223372036854775806]");
}

static void test_array_range_limits(void **state)
{
    (void)state;
    want_json("States.ArrayLength(States.ArrayRange(1, 1000, 1))", "1000");
    want_fail("States.ArrayRange(0, 1000, 1)", "1001 items", "at most 1000");
    want_fail("States.ArrayRange(1, 9, 0)", "States.ArrayRange", "must not be 0");
    want_fail("States.ArrayRange(1, 9.5, 1)", "must be an integer", NULL);
    want_fail("States.ArrayRange('1', 9, 1)", "must be an integer", "a string");
}

static void test_array_get_item(void **state)
{
    (void)state;
    want_json("States.ArrayGetItem($.arr, 5)", "6");
    want_json("States.ArrayGetItem($.arr, 0)", "1");
    want_json("States.ArrayGetItem(States.Array(0, null), 1)", "null");
    want_json("States.ArrayGetItem($.items, 1)", "{\"id\": 2}");
    want_fail("States.ArrayGetItem($.arr, 9)", "index 9 is out of range", "9 item");
    want_fail("States.ArrayGetItem($.arr, -1)", "out of range", NULL);
    want_fail("States.ArrayGetItem($.arr0, 0)", "out of range", "0 item");
    want_fail("States.ArrayGetItem($.obj, 0)", "States.ArrayGetItem", "must be an array");
}

static void test_array_length(void **state)
{
    (void)state;
    want_json("States.ArrayLength($.arr)", "9");
    want_json("States.ArrayLength($.arr0)", "0");
    want_fail("States.ArrayLength($.name)", "States.ArrayLength", "must be an array, got a string");
    want_fail("States.ArrayLength($.nul)", "must be an array, got null", NULL);
}

static void test_array_unique(void **state)
{
    (void)state;
    want_json_in("States.ArrayUnique($.a)", "{\"a\": [1,2,3,3,3,3,3,3,4]}", "[1,2,3,4]");
    want_json_in("States.ArrayUnique($.a)", "{\"a\": [3,1,3,2,1]}", "[3,1,2]");
    want_json_in("States.ArrayUnique($.a)", "{\"a\": [1, 1.0, \"1\", 0, false, null, null]}",
                   "[1, \"1\", 0, false, null]");
    want_json_in("States.ArrayUnique($.a)",
                   "{\"a\": [{\"a\": 1, \"b\": 2}, {\"b\": 2, \"a\": 1}, [1, 2], [2, 1]]}",
                   "[{\"a\": 1, \"b\": 2}, [1, 2], [2, 1]]");
    want_fail("States.ArrayUnique($.obj)", "States.ArrayUnique", "must be an array");
}

static void test_array_unique_large(void **state)
{
    (void)state;
    /* 40,000 items with 1,000 distinct values: quadratic code would take seconds. */
    json_t *in = json_object(), *a = json_array();
    for (int i = 0; i < 40000; i++)
        json_array_append_new(a, i % 2 ? json_integer(i % 1000) : json_real(i % 1000));
    json_object_set_new(in, "a", a);
    char *text = json_dumps(in, 0);
    etl_error err = {0};
    ctx_provider cp = {.build = build_ctx};
    json_t *r = run_with("States.ArrayUnique($.a)", text, &cp, &err);
    assert_non_null(r);
    assert_int_equal(json_array_size(r), 1000);
    assert_true(json_is_real(json_array_get(r, 0))); /* the first occurrence is kept */
    assert_true(json_is_integer(json_array_get(r, 999))); /* item 999 is odd: an integer */
    assert_int_equal(json_integer_value(json_array_get(r, 999)), 999);
    json_decref(r);
    free(text);
    json_decref(in);
}

static void test_inputs_not_modified(void **state)
{
    (void)state;
    json_t *in = json_loads(INPUT, 0, NULL);
    json_t *before = json_deep_copy(in);
    const char *texts[] = {
        "States.JsonMerge($.obj, $.order, false)", "States.ArrayUnique($.arr)",
        "States.ArrayPartition($.arr, 2)", "States.Array($.obj, $.obj)",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char msg[256];
        intrinsic *fn = intrinsic_compile(texts[i], msg, sizeof msg);
        assert_non_null(fn);
        etl_error err = {0};
        json_t *r = intrinsic_eval(fn, in, NULL, &err);
        assert_non_null(r);
        json_decref(r);
        intrinsic_free(fn);
    }
    assert_true(json_equal(in, before));
    json_decref(before);
    json_decref(in);
}

/* ---- encoding and hashing ----------------------------------------------------------- */

static void test_base64_encode(void **state)
{
    (void)state;
    want_string("States.Base64Encode('Data to encode')", "RGF0YSB0byBlbmNvZGU=");
    want_string("States.Base64Encode('')", "");
    want_string("States.Base64Encode('a')", "YQ==");
    want_string("States.Base64Encode('ab')", "YWI=");
    want_string("States.Base64Encode('abc')", "YWJj");
    want_fail("States.Base64Encode(12)", "States.Base64Encode", "must be a string");
}

static void test_base64_decode(void **state)
{
    (void)state;
    want_string("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", "Data to encode");
    want_string("States.Base64Decode('YQ')", "a"); /* padding is optional */
    want_string("States.Base64Decode('YWJj')", "abc");
    want_string("States.Base64Decode('')", "");
    want_string("States.Base64Decode(States.Base64Encode('h\xc3\xa9llo \xe2\x9c\x93'))",
                  "h\xc3\xa9llo \xe2\x9c\x93");
}

static void test_base64_decode_failures(void **state)
{
    (void)state;
    want_fail("States.Base64Decode('!!!!')", "States.Base64Decode", "not valid base64");
    want_fail("States.Base64Decode('YQ=a')", "not valid base64", NULL);
    want_fail("States.Base64Decode('Y')", "not valid base64", NULL);
    want_fail("States.Base64Decode('YQ=')", "not valid base64", NULL);
    want_fail("States.Base64Decode('/w==')", "not valid UTF-8", NULL); /* byte 0xff */
    want_fail("States.Base64Decode($.arr)", "must be a string", NULL);
}

static void test_hash_vectors(void **state)
{
    (void)state;
    want_string("States.Hash('input data', 'SHA-256')",
                  "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3");
    want_string("States.Hash('input data', 'SHA-1')",
                  "aaff4a450a104cd177d28d18d74485e8cae074b7");
    want_string("States.Hash('input data', 'MD5')", "812f45842bc6d66ee14572ce20db8e86");
    want_string("States.Hash($.empty, 'MD5')", "d41d8cd98f00b204e9800998ecf8427e");
    want_string("States.Hash('abc', 'SHA-384')",
                  "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                  "8086072ba1e7cc2358baeca134c825a7");
    want_string("States.Hash('abc', 'SHA-512')",
                  "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                  "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
    want_string("States.Hash('h\xc3\xa9llo', 'SHA-256')",
                  "3c48591d8d098a4538f5e013dfcf406e948eac4d3277b10bf614e295d6068179");
}

static void test_hash_failures(void **state)
{
    (void)state;
    want_fail("States.Hash('x', 'SHA-3')", "unknown algorithm 'SHA-3'", NULL);
    want_fail("States.Hash('x', 'sha-256')", "unknown algorithm", NULL);
    want_fail("States.Hash($.obj, 'MD5')", "States.Hash", "must be a string, got an object");
    want_fail("States.Hash('x', 5)", "algorithm", "must be a string");
}

/* ---- JsonMerge, math, strings, UUID ------------------------------------------------- */

static void test_json_merge(void **state)
{
    (void)state;
    want_json_in("States.JsonMerge($.json1, $.json2, false)",
                   "{\"json1\": {\"a\": {\"a1\": 1, \"a2\": 2}, \"b\": 2},"
                   " \"json2\": {\"a\": {\"a3\": 1, \"a4\": 2}, \"c\": 3}}",
                   "{\"a\": {\"a3\": 1, \"a4\": 2}, \"b\": 2, \"c\": 3}");
    want_json("States.JsonMerge($.obj0, $.obj0, false)", "{}");
    want_string("States.JsonToString(States.JsonMerge($.order, $.obj, false))",
                  "{\"z\":1,\"a\":1,\"b\":[1,2]}");
}

static void test_json_merge_failures(void **state)
{
    (void)state;
    want_fail("States.JsonMerge($.obj, $.order, true)", "deep merging", "pass false");
    want_fail("States.JsonMerge($.obj, $.order, 'false')", "must be false", "a string");
    want_fail("States.JsonMerge($.arr, $.order, false)", "first object", "must be an object");
    want_fail("States.JsonMerge($.obj, $.nul, false)", "second object", "null");
}

static void test_math_random_range(void **state)
{
    (void)state;
    char msg[256];
    intrinsic *fn = intrinsic_compile("States.MathRandom(1, 4)", msg, sizeof msg);
    assert_non_null(fn);
    json_t *in = json_object();
    int seen[5] = {0};
    for (int i = 0; i < 3000; i++) {
        etl_error err = {0};
        json_t *r = intrinsic_eval(fn, in, NULL, &err);
        assert_true(json_is_integer(r));
        json_int_t x = json_integer_value(r);
        assert_in_range(x, 1, 3); /* [start, end) */
        seen[x]++;
        json_decref(r);
    }
    assert_true(seen[1] > 0 && seen[2] > 0 && seen[3] > 0);
    json_decref(in);
    intrinsic_free(fn);
    want_json("States.MathRandom(-5, -4)", "-5");
    /* The full int64 width must not overflow. */
    etl_error err = {0};
    json_t *r = run("States.MathRandom(-9223372036854775808, 9223372036854775807)", &err);
    assert_true(json_is_integer(r));
    json_decref(r);
}

static void test_math_random_seeded(void **state)
{
    (void)state;
    etl_error err = {0};
    json_t *a = run("States.MathRandom(0, 1000000, 42)", &err);
    json_t *b = run("States.MathRandom(0, 1000000, 42)", &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(json_integer_value(a), json_integer_value(b));
    json_decref(a);
    json_decref(b);
    /* Different seeds give different draws (all ten equal would be a broken seed). */
    json_int_t first = -1;
    bool differs = false;
    for (int seed = 1; seed <= 10; seed++) {
        char text[64];
        snprintf(text, sizeof text, "States.MathRandom(0, 1000000, %d)", seed);
        json_t *r = run(text, &err);
        assert_non_null(r);
        if (first >= 0 && json_integer_value(r) != first)
            differs = true;
        first = json_integer_value(r);
        json_decref(r);
    }
    assert_true(differs);
}

static void test_math_random_failures(void **state)
{
    (void)state;
    want_fail("States.MathRandom(5, 5)", "States.MathRandom", "greater than the start");
    want_fail("States.MathRandom(9, 1)", "greater than the start", NULL);
    want_fail("States.MathRandom('1', 9)", "must be an integer", "a string");
    want_fail("States.MathRandom(1, 9, $.name)", "seed", "must be an integer");
}

static void test_math_add(void **state)
{
    (void)state;
    want_json("States.MathAdd(111, -1)", "110");
    want_json("States.MathAdd($.zero, $.zero)", "0");
    want_json("States.MathAdd($.big, 1)", "9007199254740994");
    want_json("States.MathAdd(9223372036854775806, 1)", "9223372036854775807");
    /* Non-integers are rounded as AWS (Java Math.round) does: halves toward +infinity. */
    want_json("States.MathAdd(1.5, 0)", "2");
    want_json("States.MathAdd(-1.5, 0)", "-1");
    want_json("States.MathAdd(2.4, 0.6)", "3");
}

static void test_math_add_failures(void **state)
{
    (void)state;
    want_fail("States.MathAdd($.max, 1)", "States.MathAdd", "overflows");
    want_fail("States.MathAdd(-9223372036854775808, -1)", "overflows", NULL);
    want_fail("States.MathAdd('1', 1)", "must be an integer", "a string");
    want_fail("States.MathAdd(1, $.nul)", "second value", "null");
    want_fail("States.MathAdd(1e300, 1)", "out of the 64-bit integer range", NULL);
}

static void test_string_split(void **state)
{
    (void)state;
    want_json("States.StringSplit('1,2,3,4,5', ',')", "[\"1\",\"2\",\"3\",\"4\",\"5\"]");
    want_json("States.StringSplit('This.is+a,test=string', '.+,=')",
                "[\"This\",\"is\",\"a\",\"test\",\"string\"]");
    want_json("States.StringSplit(',a,,b,', ',')", "[\"a\",\"b\"]");
    want_json("States.StringSplit('abc', ',')", "[\"abc\"]");
    want_json("States.StringSplit('abc', '')", "[\"abc\"]");
    want_json("States.StringSplit($.empty, ',')", "[]");
    want_json("States.StringSplit('a\xe2\x86\x92" "b\xc3\xa9" "c', '\xe2\x86\x92')",
                "[\"a\",\"b\xc3\xa9" "c\"]");
    /* A multi-byte delimiter never cuts a character that merely shares a byte with it. */
    want_json("States.StringSplit('x\xc3\xa9y\xc3\xa8z', '\xc3\xa8')",
                "[\"x\xc3\xa9y\",\"z\"]");
}

static void test_string_split_failures(void **state)
{
    (void)state;
    want_fail("States.StringSplit($.arr, ',')", "States.StringSplit", "must be a string");
    want_fail("States.StringSplit('a,b', 1)", "delimiters", "an integer");
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void test_uuid(void **state)
{
    (void)state;
    enum { N = 1000 };
    char(*seen)[37] = calloc(N, sizeof *seen);
    assert_non_null(seen);
    for (int i = 0; i < N; i++) {
        etl_error err = {0};
        json_t *r = run("States.UUID()", &err);
        assert_true(json_is_string(r));
        const char *u = json_string_value(r);
        assert_int_equal(strlen(u), 36);
        for (int k = 0; k < 36; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23)
                assert_int_equal(u[k], '-');
            else
                assert_true(is_hex(u[k]));
        }
        assert_int_equal(u[14], '4'); /* version 4 */
        assert_non_null(strchr("89ab", u[19])); /* RFC 4122 variant */
        for (int j = 0; j < i; j++)
            assert_string_not_equal(seen[j], u);
        memcpy(seen[i], u, 37);
        json_decref(r);
    }
    free(seen);
}

static void test_error_record(void **state)
{
    (void)state;
    etl_error err = {0};
    json_t *r = run("States.ArrayLength($.name)", &err);
    assert_null(r);
    assert_int_equal(err.status, ETL_ERUNTIME);
    assert_string_equal(err.name, "States.IntrinsicFailure");
    assert_false(err.transient);
    /* err may be NULL: the failure is still reported by the NULL result. */
    r = run("States.ArrayLength($.name)", NULL);
    assert_null(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_call),
        cmocka_unit_test(test_whitespace_around_arguments),
        cmocka_unit_test(test_literal_arguments),
        cmocka_unit_test(test_big_integers_exact),
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_falsy_path_values),
        cmocka_unit_test(test_path_argument_forms),
        cmocka_unit_test(test_missing_path_fails),
        cmocka_unit_test(test_nested_calls),
        cmocka_unit_test(test_nested_error_names_inner_function),
        cmocka_unit_test(test_context_paths),
        cmocka_unit_test(test_compile_unknown_function),
        cmocka_unit_test(test_compile_argument_counts),
        cmocka_unit_test(test_compile_syntax_errors),
        cmocka_unit_test(test_compile_nesting_limit),
        cmocka_unit_test(test_format_basic),
        cmocka_unit_test(test_format_value_rendering),
        cmocka_unit_test(test_format_escapes),
        cmocka_unit_test(test_format_placeholder_mismatch),
        cmocka_unit_test(test_format_template_must_be_string),
        cmocka_unit_test(test_format_many_arguments),
        cmocka_unit_test(test_string_to_json),
        cmocka_unit_test(test_string_to_json_failures),
        cmocka_unit_test(test_json_to_string),
        cmocka_unit_test(test_array),
        cmocka_unit_test(test_array_partition),
        cmocka_unit_test(test_array_partition_failures),
        cmocka_unit_test(test_array_contains),
        cmocka_unit_test(test_array_range),
        cmocka_unit_test(test_array_range_limits),
        cmocka_unit_test(test_array_get_item),
        cmocka_unit_test(test_array_length),
        cmocka_unit_test(test_array_unique),
        cmocka_unit_test(test_array_unique_large),
        cmocka_unit_test(test_inputs_not_modified),
        cmocka_unit_test(test_base64_encode),
        cmocka_unit_test(test_base64_decode),
        cmocka_unit_test(test_base64_decode_failures),
        cmocka_unit_test(test_hash_vectors),
        cmocka_unit_test(test_hash_failures),
        cmocka_unit_test(test_json_merge),
        cmocka_unit_test(test_json_merge_failures),
        cmocka_unit_test(test_math_random_range),
        cmocka_unit_test(test_math_random_seeded),
        cmocka_unit_test(test_math_random_failures),
        cmocka_unit_test(test_math_add),
        cmocka_unit_test(test_math_add_failures),
        cmocka_unit_test(test_string_split),
        cmocka_unit_test(test_string_split_failures),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_error_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
