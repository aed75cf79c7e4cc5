/* Unit tests for engine/choice.c: every operator (literal and *Path forms), type
 * mismatches, missing values vs IsPresent, falsy values, exact numeric comparison,
 * StringMatches, And/Or/Not, the context object, and every compile error with its
 * line:col. Rules are written as JSON text and loaded with doc_load_string. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "choice.h"
#include "diag.h"
#include "doc.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* Compile rule text as a nested rule (no Next needed) or a top-level one. */
typedef struct compiled {
    diag *d;
    doc *dc;
    choice_rule *r;
} compiled;

static compiled compile_named(const char *rule, const char *name, bool top_level)
{
    compiled c = {0};
    c.d = diag_new(name);
    assert_non_null(c.d);
    c.dc = doc_load_string(rule, strlen(rule), name, false, c.d);
    if (!c.dc)
        fail_msg("rule text does not load: %s", diag_count(c.d) ? diag_message(c.d, 0) : rule);
    c.r = choice_compile(c.dc->root, top_level, c.d);
    return c;
}

static compiled compile_text(const char *rule, bool top_level)
{
    return compile_named(rule, "rule.json", top_level);
}

static void compiled_free(compiled *c)
{
    choice_free(c->r);
    doc_free(c->dc);
    diag_free(c->d);
}

static json_t *load_json(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v)
        fail_msg("bad test JSON '%s': %s", text, je.text);
    return v;
}

/* Build counter for the context provider: proves $$ is built lazily. */
typedef struct ctx_arg {
    json_t *value;
    int builds;
} ctx_arg;

static json_t *build_ctx(void *arg)
{
    ctx_arg *a = arg;
    a->builds++;
    return json_incref(a->value);
}

/* Evaluate a nested rule against input; ctx_text may be NULL (no context provider). */
static bool eval_ctx(const char *rule, const char *input, const char *ctx_text, int *out_builds)
{
    compiled c = compile_text(rule, false);
    if (!c.r)
        fail_msg("rule does not compile: %s: %s", rule,
                 diag_count(c.d) ? diag_message(c.d, 0) : "(no message)");
    json_t *in = load_json(input);
    ctx_arg arg = {ctx_text ? load_json(ctx_text) : NULL, 0};
    ctx_provider cp = {build_ctx, &arg, NULL};
    bool result = choice_eval(c.r, in, ctx_text ? &cp : NULL);
    ctx_release(&cp);
    if (out_builds)
        *out_builds = arg.builds;
    json_decref(arg.value);
    json_decref(in);
    compiled_free(&c);
    return result;
}

static bool eval(const char *rule, const char *input)
{
    return eval_ctx(rule, input, NULL, NULL);
}

/* The rule must fail to compile with exactly these messages (sorted by position). */
static void expect_errors(const char *rule, bool top_level, const char *const *want, size_t n)
{
    compiled c = compile_text(rule, top_level);
    assert_null(c.r);
    size_t got = diag_count(c.d);
    bool same = got == n;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(diag_message(c.d, i), want[i]) == 0;
    for (size_t i = 0; !same && i < got; i++)
        print_message("  got: %s\n", diag_message(c.d, i));
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(diag_message(c.d, i), want[i]);
    compiled_free(&c);
}

#define EXPECT_ERRORS(rule, top, ...)                                                       \
    do {                                                                                    \
        const char *const want_[] = {__VA_ARGS__};                                          \
        expect_errors(rule, top, want_, sizeof want_ / sizeof want_[0]);                    \
    } while (0)

/* ---- String* ------------------------------------------------------------------------ */

static void test_string_equals(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$.s\",\"StringEquals\":\"abc\"}", "{\"s\":\"abc\"}"));
    assert_false(eval("{\"Variable\":\"$.s\",\"StringEquals\":\"abc\"}", "{\"s\":\"abcd\"}"));
    assert_false(eval("{\"Variable\":\"$.s\",\"StringEquals\":\"abc\"}", "{\"s\":\"ABC\"}"));
    /* An embedded U+0000 is part of the value, not its end. */
    assert_false(eval("{\"Variable\":\"$.s\",\"StringEquals\":\"ab\"}", "{\"s\":\"ab\\u0000c\"}"));
}

static void test_string_ordering(void **state)
{
    (void)state;
    const char *lt = "{\"Variable\":\"$.s\",\"StringLessThan\":\"b\"}";
    const char *gt = "{\"Variable\":\"$.s\",\"StringGreaterThan\":\"b\"}";
    const char *le = "{\"Variable\":\"$.s\",\"StringLessThanEquals\":\"b\"}";
    const char *ge = "{\"Variable\":\"$.s\",\"StringGreaterThanEquals\":\"b\"}";
    assert_true(eval(lt, "{\"s\":\"a\"}"));
    assert_false(eval(lt, "{\"s\":\"b\"}"));
    assert_true(eval(gt, "{\"s\":\"c\"}"));
    assert_false(eval(gt, "{\"s\":\"b\"}"));
    assert_true(eval(le, "{\"s\":\"b\"}"));
    assert_false(eval(le, "{\"s\":\"ba\"}"));
    assert_true(eval(ge, "{\"s\":\"b\"}"));
    assert_false(eval(ge, "{\"s\":\"B\"}")); /* 'B' < 'b' in code-unit order */
}

static void test_string_prefix_and_utf8_order(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$.s\",\"StringLessThan\":\"abc\"}", "{\"s\":\"ab\"}"));
    assert_false(eval("{\"Variable\":\"$.s\",\"StringLessThan\":\"ab\"}", "{\"s\":\"ab\"}"));
    /* U+00E9 (0xC3 0xA9) sorts after 'z' bytewise. */
    assert_true(eval("{\"Variable\":\"$.s\",\"StringGreaterThan\":\"z\"}", "{\"s\":\"\\u00e9\"}"));
    /* U+FF21 (EF BC A1) sorts after U+1F600 in UTF-16 order, before it in UTF-8 order. */
    assert_true(eval("{\"Variable\":\"$.s\",\"StringLessThan\":\"\\ud83d\\ude00\"}",
                     "{\"s\":\"\\uff21\"}"));
}

static void test_string_path_forms(void **state)
{
    (void)state;
    const char *in = "{\"a\":\"m\",\"b\":\"m\",\"c\":\"z\"}";
    assert_true(eval("{\"Variable\":\"$.a\",\"StringEqualsPath\":\"$.b\"}", in));
    assert_false(eval("{\"Variable\":\"$.a\",\"StringEqualsPath\":\"$.c\"}", in));
    assert_true(eval("{\"Variable\":\"$.a\",\"StringLessThanPath\":\"$.c\"}", in));
    assert_false(eval("{\"Variable\":\"$.c\",\"StringLessThanPath\":\"$.a\"}", in));
    assert_true(eval("{\"Variable\":\"$.c\",\"StringGreaterThanPath\":\"$.a\"}", in));
    assert_true(eval("{\"Variable\":\"$.a\",\"StringLessThanEqualsPath\":\"$.b\"}", in));
    assert_false(eval("{\"Variable\":\"$.c\",\"StringLessThanEqualsPath\":\"$.b\"}", in));
    assert_true(eval("{\"Variable\":\"$.a\",\"StringGreaterThanEqualsPath\":\"$.b\"}", in));
    assert_false(eval("{\"Variable\":\"$.a\",\"StringGreaterThanEqualsPath\":\"$.c\"}", in));
    /* The other side of the path must be a string too. */
    assert_false(eval("{\"Variable\":\"$.a\",\"StringEqualsPath\":\"$.n\"}", "{\"a\":\"1\",\"n\":1}"));
}

/* ---- StringMatches ------------------------------------------------------------------ */

static void test_matches_wildcards(void **state)
{
    (void)state;
    assert_true(choice_string_matches("log-2026.txt", "log-*.txt"));
    assert_true(choice_string_matches("log-.txt", "log-*.txt"));   /* empty run */
    assert_false(choice_string_matches("log-2026.csv", "log-*.txt"));
    assert_true(choice_string_matches("anything", "*"));
    assert_true(choice_string_matches("", "*"));
    assert_true(choice_string_matches("", ""));
    assert_false(choice_string_matches("a", ""));
    assert_false(choice_string_matches("", "a"));
    assert_true(choice_string_matches("abcabd", "*abd"));          /* needs backtracking */
    assert_true(choice_string_matches("a-b-c", "a*b*c"));
    assert_false(choice_string_matches("a-b-", "a*b*c"));
    assert_true(choice_string_matches("xaaay", "x**y"));
    assert_false(choice_string_matches("abc", "ab"));
    assert_false(choice_string_matches("ab", "abc"));
}

static void test_matches_escapes(void **state)
{
    (void)state;
    /* C strings: "\\*" is the two characters backslash, star. */
    assert_true(choice_string_matches("a*b", "a\\*b"));
    assert_false(choice_string_matches("axb", "a\\*b"));
    assert_true(choice_string_matches("a\\b", "a\\\\b"));
    assert_false(choice_string_matches("ab", "a\\\\b"));
    /* "\\\\*": a literal backslash, then a wildcard. */
    assert_true(choice_string_matches("a\\xyz", "a\\\\*"));
    assert_false(choice_string_matches("axyz", "a\\\\*"));
    /* literal star followed by wildcard */
    assert_true(choice_string_matches("**tail", "\\**"));
    assert_false(choice_string_matches("x*tail", "\\**"));
    /* A trailing lone backslash (rejected by the compiler) stands for itself. */
    assert_true(choice_string_matches("a\\", "a\\"));
}

static void test_matches_no_blowup(void **state)
{
    (void)state;
    /* 20000 'a's against "*a*a*...*a*b": exponential for naive recursion. */
    size_t n = 20000;
    char *s = malloc(n + 1);
    char *p = malloc(2 * 30 + 3);
    assert_non_null(s);
    assert_non_null(p);
    memset(s, 'a', n);
    s[n] = '\0';
    size_t k = 0;
    for (int i = 0; i < 30; i++) {
        p[k++] = '*';
        p[k++] = 'a';
    }
    p[k++] = '*';
    p[k++] = 'b';
    p[k] = '\0';
    clock_t t0 = clock();
    assert_false(choice_string_matches(s, p));
    s[n - 1] = 'b';
    assert_true(choice_string_matches(s, p));
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(secs < 2.0);
    free(s);
    free(p);
}

static void test_matches_rule(void **state)
{
    (void)state;
    /* JSON "\\*" is the pattern backslash-star: a literal '*'. */
    const char *lit = "{\"Variable\":\"$.s\",\"StringMatches\":\"*\\\\*\"}";
    assert_true(eval(lit, "{\"s\":\"price*\"}"));
    assert_false(eval(lit, "{\"s\":\"price\"}"));
    const char *wild = "{\"Variable\":\"$.f\",\"StringMatches\":\"*.csv\"}";
    assert_true(eval(wild, "{\"f\":\"x.csv\"}"));
    assert_true(eval(wild, "{\"f\":\".csv\"}"));
    assert_false(eval(wild, "{\"f\":\"x.csv.gz\"}"));
    assert_false(eval(wild, "{\"f\":5}"));
    assert_true(eval("{\"Variable\":\"$.f\",\"StringMatches\":\"\"}", "{\"f\":\"\"}"));
}

/* ---- Numeric* ----------------------------------------------------------------------- */

static void test_numeric_equals(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericEquals\":42}", "{\"n\":42}"));
    assert_false(eval("{\"Variable\":\"$.n\",\"NumericEquals\":42}", "{\"n\":43}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericEquals\":-0.5}", "{\"n\":-0.5}"));
}

static void test_numeric_int_vs_real(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericEquals\":1}", "{\"n\":1.0}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericEquals\":1.0}", "{\"n\":1}"));
    assert_false(eval("{\"Variable\":\"$.n\",\"NumericEquals\":1}", "{\"n\":1.5}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericLessThan\":2}", "{\"n\":1.5}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericGreaterThan\":1.5}", "{\"n\":2}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericGreaterThan\":-2}", "{\"n\":-1.5}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericLessThan\":-1}", "{\"n\":-1.5}"));
}

static void test_numeric_big_ints(void **state)
{
    (void)state;
    /* 2^53 + 1 and 2^53 are the same double: they must not compare equal. */
    assert_false(eval("{\"Variable\":\"$.n\",\"NumericEquals\":9007199254740993}",
                      "{\"n\":9007199254740992}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericGreaterThan\":9007199254740992}",
                     "{\"n\":9007199254740993}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericEquals\":9223372036854775807}",
                     "{\"n\":9223372036854775807}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericLessThan\":-9223372036854775807}",
                     "{\"n\":-9223372036854775808}"));
    /* int vs real at the 2^53 boundary. */
    assert_false(eval("{\"Variable\":\"$.n\",\"NumericEquals\":9007199254740992.0}",
                      "{\"n\":9007199254740993}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericGreaterThan\":9007199254740992.0}",
                     "{\"n\":9007199254740993}"));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericEquals\":9007199254740992.0}",
                     "{\"n\":9007199254740992}"));
}

static void test_numeric_compare_direct(void **state)
{
    (void)state;
    json_t *imax = json_integer(INT64_MAX);
    json_t *imin = json_integer(INT64_MIN);
    json_t *two63 = json_real(9223372036854775808.0);
    json_t *neg63 = json_real(-9223372036854775808.0);
    json_t *big = json_real(1e300);
    json_t *m15 = json_real(-1.5);
    json_t *m1 = json_integer(-1);
    json_t *m2 = json_integer(-2);
    json_t *one = json_integer(1);
    json_t *oner = json_real(1.0);
    assert_int_equal(choice_numeric_compare(imax, two63), -1); /* 2^63-1 < 2^63 */
    assert_int_equal(choice_numeric_compare(two63, imax), 1);
    assert_int_equal(choice_numeric_compare(imin, neg63), 0);  /* -2^63 is exact */
    assert_int_equal(choice_numeric_compare(imax, big), -1);
    assert_int_equal(choice_numeric_compare(m1, m15), 1);
    assert_int_equal(choice_numeric_compare(m2, m15), -1);
    assert_int_equal(choice_numeric_compare(m15, m1), -1);
    assert_int_equal(choice_numeric_compare(one, oner), 0);
    assert_int_equal(choice_numeric_compare(oner, one), 0);
    assert_int_equal(choice_numeric_compare(m15, oner), -1);
    assert_int_equal(choice_numeric_compare(imin, imax), -1);
    json_t *all[] = {imax, imin, two63, neg63, big, m15, m1, m2, one, oner};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        json_decref(all[i]);
}

static void test_numeric_ordering(void **state)
{
    (void)state;
    const char *in = "{\"n\":10}";
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericLessThan\":11}", in));
    assert_false(eval("{\"Variable\":\"$.n\",\"NumericLessThan\":10}", in));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericGreaterThan\":9.99}", in));
    assert_false(eval("{\"Variable\":\"$.n\",\"NumericGreaterThan\":10}", in));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericLessThanEquals\":10.0}", in));
    assert_false(eval("{\"Variable\":\"$.n\",\"NumericLessThanEquals\":9}", in));
    assert_true(eval("{\"Variable\":\"$.n\",\"NumericGreaterThanEquals\":10}", in));
    assert_false(eval("{\"Variable\":\"$.n\",\"NumericGreaterThanEquals\":10.01}", in));
}

static void test_numeric_path_forms(void **state)
{
    (void)state;
    const char *in = "{\"a\":5,\"b\":5.0,\"c\":7}";
    assert_true(eval("{\"Variable\":\"$.a\",\"NumericEqualsPath\":\"$.b\"}", in));
    assert_false(eval("{\"Variable\":\"$.a\",\"NumericEqualsPath\":\"$.c\"}", in));
    assert_true(eval("{\"Variable\":\"$.a\",\"NumericLessThanPath\":\"$.c\"}", in));
    assert_true(eval("{\"Variable\":\"$.c\",\"NumericGreaterThanPath\":\"$.b\"}", in));
    assert_true(eval("{\"Variable\":\"$.a\",\"NumericLessThanEqualsPath\":\"$.b\"}", in));
    assert_false(eval("{\"Variable\":\"$.c\",\"NumericLessThanEqualsPath\":\"$.a\"}", in));
    assert_true(eval("{\"Variable\":\"$.b\",\"NumericGreaterThanEqualsPath\":\"$.a\"}", in));
    assert_false(eval("{\"Variable\":\"$.a\",\"NumericEqualsPath\":\"$.s\"}", "{\"a\":5,\"s\":\"5\"}"));
}

/* ---- BooleanEquals ------------------------------------------------------------------ */

static void test_boolean_equals(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$.b\",\"BooleanEquals\":true}", "{\"b\":true}"));
    assert_false(eval("{\"Variable\":\"$.b\",\"BooleanEquals\":true}", "{\"b\":false}"));
    assert_true(eval("{\"Variable\":\"$.b\",\"BooleanEquals\":false}", "{\"b\":false}"));
    assert_false(eval("{\"Variable\":\"$.b\",\"BooleanEquals\":false}", "{\"b\":0}"));
    assert_false(eval("{\"Variable\":\"$.b\",\"BooleanEquals\":false}", "{\"b\":null}"));
}

static void test_boolean_path(void **state)
{
    (void)state;
    const char *r = "{\"Variable\":\"$.a\",\"BooleanEqualsPath\":\"$.b\"}";
    assert_true(eval(r, "{\"a\":false,\"b\":false}"));
    assert_true(eval(r, "{\"a\":true,\"b\":true}"));
    assert_false(eval(r, "{\"a\":true,\"b\":false}"));
    assert_false(eval(r, "{\"a\":true,\"b\":\"true\"}"));
    assert_false(eval(r, "{\"a\":true}"));
}

/* ---- Timestamp* --------------------------------------------------------------------- */

static void test_timestamp_equals_offsets(void **state)
{
    (void)state;
    const char *r = "{\"Variable\":\"$.t\",\"TimestampEquals\":\"2026-11-22T03:00:00Z\"}";
    assert_true(eval(r, "{\"t\":\"2026-11-22T03:00:00Z\"}"));
    assert_true(eval(r, "{\"t\":\"2026-11-22T04:00:00+01:00\"}"));
    assert_true(eval(r, "{\"t\":\"2026-11-22T03:00:00.000Z\"}"));
    assert_false(eval(r, "{\"t\":\"2026-11-22T03:00:00.001Z\"}"));
    assert_false(eval(r, "{\"t\":\"2026-11-22T03:00:00+01:00\"}"));
}

static void test_timestamp_ordering(void **state)
{
    (void)state;
    const char *in = "{\"t\":\"2026-11-22T12:00:00+09:00\"}"; /* 03:00Z */
    assert_true(eval("{\"Variable\":\"$.t\",\"TimestampLessThan\":\"2026-11-22T03:00:01Z\"}", in));
    assert_false(eval("{\"Variable\":\"$.t\",\"TimestampLessThan\":\"2026-11-22T03:00:00Z\"}", in));
    assert_true(eval("{\"Variable\":\"$.t\",\"TimestampGreaterThan\":\"2026-11-22T11:00:00+09:00\"}", in));
    assert_false(eval("{\"Variable\":\"$.t\",\"TimestampGreaterThan\":\"2026-11-22T10:00:00Z\"}", in));
    assert_true(eval("{\"Variable\":\"$.t\",\"TimestampLessThanEquals\":\"2026-11-22T03:00:00Z\"}", in));
    assert_false(eval("{\"Variable\":\"$.t\",\"TimestampLessThanEquals\":\"2026-11-22T02:59:59.9Z\"}", in));
    assert_true(eval("{\"Variable\":\"$.t\",\"TimestampGreaterThanEquals\":\"2026-11-21T22:00:00-05:00\"}", in));
    assert_false(eval("{\"Variable\":\"$.t\",\"TimestampGreaterThanEquals\":\"2026-11-23T00:00:00Z\"}", in));
}

static void test_timestamp_path_forms(void **state)
{
    (void)state;
    const char *in = "{\"a\":\"2026-01-01T00:00:00Z\",\"b\":\"2026-01-01T01:00:00+01:00\","
                     "\"c\":\"2027-01-01T00:00:00Z\",\"bad\":\"2026-01-01\",\"n\":5}";
    assert_true(eval("{\"Variable\":\"$.a\",\"TimestampEqualsPath\":\"$.b\"}", in));
    assert_true(eval("{\"Variable\":\"$.a\",\"TimestampLessThanPath\":\"$.c\"}", in));
    assert_true(eval("{\"Variable\":\"$.c\",\"TimestampGreaterThanPath\":\"$.b\"}", in));
    assert_true(eval("{\"Variable\":\"$.a\",\"TimestampLessThanEqualsPath\":\"$.b\"}", in));
    assert_false(eval("{\"Variable\":\"$.c\",\"TimestampLessThanEqualsPath\":\"$.a\"}", in));
    assert_true(eval("{\"Variable\":\"$.b\",\"TimestampGreaterThanEqualsPath\":\"$.a\"}", in));
    /* An operand that does not parse, or is no string, makes the rule false. */
    assert_false(eval("{\"Variable\":\"$.a\",\"TimestampEqualsPath\":\"$.bad\"}", in));
    assert_false(eval("{\"Variable\":\"$.a\",\"TimestampLessThanPath\":\"$.n\"}", in));
}

static void test_timestamp_unparseable_input(void **state)
{
    (void)state;
    const char *r = "{\"Variable\":\"$.t\",\"TimestampLessThan\":\"2030-01-01T00:00:00Z\"}";
    assert_false(eval(r, "{\"t\":\"2026-11-22\"}"));
    assert_false(eval(r, "{\"t\":\"yesterday\"}"));
    assert_false(eval(r, "{\"t\":1795316400}"));
    assert_false(eval(r, "{\"t\":\"2026-11-22T03:00:00Z\\u0000junk\"}"));
    assert_true(eval(r, "{\"t\":\"2026-11-22T03:00:00Z\"}"));
}

/* ---- Is* ---------------------------------------------------------------------------- */

static void test_is_null(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$.v\",\"IsNull\":true}", "{\"v\":null}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsNull\":true}", "{\"v\":0}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsNull\":false}", "{\"v\":\"\"}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsNull\":false}", "{\"v\":null}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsNull\":true}", "{}"));
}

static void test_is_present(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$.v\",\"IsPresent\":true}", "{\"v\":null}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsPresent\":true}", "{}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsPresent\":false}", "{}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsPresent\":false}", "{\"v\":false}"));
    /* Missing through a non-object, and past the end of an array. */
    assert_true(eval("{\"Variable\":\"$.v.w\",\"IsPresent\":false}", "{\"v\":3}"));
    assert_true(eval("{\"Variable\":\"$.v[2]\",\"IsPresent\":false}", "{\"v\":[1,2]}"));
    assert_true(eval("{\"Variable\":\"$.v[1]\",\"IsPresent\":true}", "{\"v\":[1,0]}"));
}

static void test_is_numeric_string_boolean(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$.v\",\"IsNumeric\":true}", "{\"v\":0}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsNumeric\":true}", "{\"v\":0.5}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsNumeric\":true}", "{\"v\":\"1\"}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsNumeric\":false}", "{\"v\":\"1\"}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsString\":true}", "{\"v\":\"\"}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsString\":true}", "{\"v\":null}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsString\":false}", "{\"v\":[]}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsBoolean\":true}", "{\"v\":false}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsBoolean\":true}", "{\"v\":\"true\"}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsBoolean\":false}", "{\"v\":true}"));
}

static void test_is_timestamp(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$.v\",\"IsTimestamp\":true}", "{\"v\":\"2026-11-22T03:00:00Z\"}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsTimestamp\":true}", "{\"v\":\"2026-11-22T03:00:00.5-07:00\"}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsTimestamp\":true}", "{\"v\":\"2026-02-30T03:00:00Z\"}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsTimestamp\":true}", "{\"v\":17}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsTimestamp\":false}", "{\"v\":\"soon\"}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"IsTimestamp\":false}", "{\"v\":\"2026-11-22T03:00:00Z\"}"));
}

/* ---- missing, mismatched and falsy values ------------------------------------------ */

static void test_type_mismatch_is_false(void **state)
{
    (void)state;
    assert_false(eval("{\"Variable\":\"$.v\",\"StringEquals\":\"1\"}", "{\"v\":1}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"StringLessThan\":\"z\"}", "{\"v\":null}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"NumericEquals\":1}", "{\"v\":\"1\"}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"NumericEquals\":1}", "{\"v\":true}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"NumericLessThan\":1}", "{\"v\":[0]}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"BooleanEquals\":true}", "{\"v\":1}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"BooleanEquals\":true}", "{\"v\":\"true\"}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"TimestampEquals\":\"2026-11-22T03:00:00Z\"}",
                      "{\"v\":{}}"));
    assert_false(eval("{\"Variable\":\"$.v\",\"StringMatches\":\"*\"}", "{\"v\":{}}"));
}

static void test_missing_variable(void **state)
{
    (void)state;
    const char *rules[] = {
        "{\"Variable\":\"$.x\",\"StringEquals\":\"\"}",
        "{\"Variable\":\"$.x\",\"StringMatches\":\"*\"}",
        "{\"Variable\":\"$.x\",\"NumericEquals\":0}",
        "{\"Variable\":\"$.x\",\"NumericLessThan\":1}",
        "{\"Variable\":\"$.x\",\"BooleanEquals\":false}",
        "{\"Variable\":\"$.x\",\"TimestampLessThan\":\"2099-01-01T00:00:00Z\"}",
        "{\"Variable\":\"$.x\",\"IsNull\":true}",
        "{\"Variable\":\"$.x\",\"IsNull\":false}",
        "{\"Variable\":\"$.x\",\"IsNumeric\":false}",
        "{\"Variable\":\"$.x\",\"IsString\":false}",
        "{\"Variable\":\"$.x\",\"IsBoolean\":false}",
        "{\"Variable\":\"$.x\",\"IsTimestamp\":false}",
        "{\"Variable\":\"$.x\",\"IsPresent\":true}",
        "{\"Variable\":\"$.x\",\"StringEqualsPath\":\"$.y\"}",
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (eval(rules[i], "{\"y\":\"\"}"))
            fail_msg("missing variable matched: %s", rules[i]);
    assert_true(eval("{\"Variable\":\"$.x\",\"IsPresent\":false}", "{\"y\":\"\"}"));
}

static void test_missing_path_operand(void **state)
{
    (void)state;
    assert_false(eval("{\"Variable\":\"$.a\",\"StringEqualsPath\":\"$.nope\"}", "{\"a\":\"\"}"));
    assert_false(eval("{\"Variable\":\"$.a\",\"NumericGreaterThanEqualsPath\":\"$.nope\"}", "{\"a\":0}"));
    assert_false(eval("{\"Variable\":\"$.a\",\"BooleanEqualsPath\":\"$.nope\"}", "{\"a\":false}"));
    assert_false(eval("{\"Variable\":\"$.a\",\"TimestampEqualsPath\":\"$.nope\"}",
                      "{\"a\":\"2026-11-22T03:00:00Z\"}"));
}

static void test_falsy_values_are_values(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$.v\",\"NumericEquals\":0}", "{\"v\":0}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"StringEquals\":\"\"}", "{\"v\":\"\"}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"BooleanEquals\":false}", "{\"v\":false}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsPresent\":true}", "{\"v\":[]}"));
    assert_true(eval("{\"Variable\":\"$.v\",\"IsPresent\":true}", "{\"v\":{}}"));
    /* $ itself may be a scalar. */
    assert_true(eval("{\"Variable\":\"$\",\"NumericEquals\":0}", "0"));
    assert_true(eval("{\"Variable\":\"$\",\"IsNull\":true}", "null"));
    assert_true(eval("{\"Variable\":\"$[0]\",\"BooleanEquals\":false}", "[false]"));
}

static void test_variable_path_syntax(void **state)
{
    (void)state;
    assert_true(eval("{\"Variable\":\"$['a b'].c[1]\",\"StringEquals\":\"y\"}",
                     "{\"a b\":{\"c\":[\"x\",\"y\"]}}"));
    assert_true(eval("{\"Variable\":\"$.a.b.c\",\"NumericEquals\":3}", "{\"a\":{\"b\":{\"c\":3}}}"));
}

/* ---- And / Or / Not ----------------------------------------------------------------- */

static void test_and(void **state)
{
    (void)state;
    const char *r = "{\"And\":[{\"Variable\":\"$.a\",\"NumericGreaterThan\":1},"
                    "{\"Variable\":\"$.b\",\"StringEquals\":\"x\"}]}";
    assert_true(eval(r, "{\"a\":2,\"b\":\"x\"}"));
    assert_false(eval(r, "{\"a\":1,\"b\":\"x\"}"));
    assert_false(eval(r, "{\"a\":2,\"b\":\"y\"}"));
    assert_false(eval(r, "{\"a\":2}"));
}

static void test_or(void **state)
{
    (void)state;
    const char *r = "{\"Or\":[{\"Variable\":\"$.a\",\"NumericEquals\":1},"
                    "{\"Variable\":\"$.a\",\"NumericEquals\":2},"
                    "{\"Variable\":\"$.b\",\"IsPresent\":true}]}";
    assert_true(eval(r, "{\"a\":1}"));
    assert_true(eval(r, "{\"a\":2}"));
    assert_true(eval(r, "{\"a\":3,\"b\":null}"));
    assert_false(eval(r, "{\"a\":3}"));
}

static void test_not(void **state)
{
    (void)state;
    const char *r = "{\"Not\":{\"Variable\":\"$.s\",\"StringEquals\":\"x\"}}";
    assert_false(eval(r, "{\"s\":\"x\"}"));
    assert_true(eval(r, "{\"s\":\"y\"}"));
    /* Not of a comparison on a missing field is true: the comparison is false. */
    assert_true(eval(r, "{}"));
}

static void test_nesting(void **state)
{
    (void)state;
    /* a > 0 and (s matches "x*" or not b == true) */
    const char *r =
        "{\"And\":[{\"Variable\":\"$.a\",\"NumericGreaterThan\":0},"
        "{\"Or\":[{\"Variable\":\"$.s\",\"StringMatches\":\"x*\"},"
        "{\"Not\":{\"Variable\":\"$.b\",\"BooleanEquals\":true}}]}]}";
    assert_true(eval(r, "{\"a\":1,\"s\":\"xy\",\"b\":true}"));
    assert_true(eval(r, "{\"a\":1,\"s\":\"yy\",\"b\":false}"));
    assert_false(eval(r, "{\"a\":1,\"s\":\"yy\",\"b\":true}"));
    assert_false(eval(r, "{\"a\":0,\"s\":\"xy\",\"b\":false}"));
    assert_true(eval("{\"Not\":{\"Not\":{\"Variable\":\"$\",\"IsNull\":true}}}", "null"));
}

static void test_short_circuit(void **state)
{
    (void)state;
    /* The $$ rule comes second: when the first decides, the context is never built. */
    int builds = -1;
    const char *and_r = "{\"And\":[{\"Variable\":\"$.a\",\"IsPresent\":true},"
                        "{\"Variable\":\"$$.Execution.Id\",\"IsPresent\":true}]}";
    assert_false(eval_ctx(and_r, "{}", "{\"Execution\":{\"Id\":\"e1\"}}", &builds));
    assert_int_equal(builds, 0);
    assert_true(eval_ctx(and_r, "{\"a\":1}", "{\"Execution\":{\"Id\":\"e1\"}}", &builds));
    assert_int_equal(builds, 1);
    const char *or_r = "{\"Or\":[{\"Variable\":\"$.a\",\"IsPresent\":true},"
                       "{\"Variable\":\"$$.Execution.Id\",\"IsPresent\":true}]}";
    assert_true(eval_ctx(or_r, "{\"a\":1}", "{\"Execution\":{\"Id\":\"e1\"}}", &builds));
    assert_int_equal(builds, 0);
}

/* ---- context ----------------------------------------------------------------------- */

static void test_context_paths(void **state)
{
    (void)state;
    const char *ctx = "{\"Map\":{\"Item\":{\"Index\":0,\"Value\":\"v\"}}}";
    int builds = -1;
    assert_true(eval_ctx("{\"Variable\":\"$$.Map.Item.Index\",\"NumericEquals\":0}", "{}", ctx,
                         &builds));
    assert_int_equal(builds, 1);
    assert_true(eval_ctx("{\"Variable\":\"$.v\",\"StringEqualsPath\":\"$$.Map.Item.Value\"}",
                         "{\"v\":\"v\"}", ctx, NULL));
    assert_false(eval_ctx("{\"Variable\":\"$.v\",\"StringEqualsPath\":\"$$.Map.Item.Value\"}",
                          "{\"v\":\"w\"}", ctx, NULL));
    /* A rule on $ alone never builds the context. */
    assert_true(eval_ctx("{\"Variable\":\"$.v\",\"IsString\":true}", "{\"v\":\"\"}", ctx, &builds));
    assert_int_equal(builds, 0);
    /* No provider: $$ paths are missing. */
    assert_true(eval_ctx("{\"Variable\":\"$$.Map\",\"IsPresent\":false}", "{}", NULL, NULL));
}

static void test_uses_context(void **state)
{
    (void)state;
    struct { const char *rule; bool uses; } cases[] = {
        {"{\"Variable\":\"$.a\",\"IsNull\":true}", false},
        {"{\"Variable\":\"$$.a\",\"IsNull\":true}", true},
        {"{\"Variable\":\"$.a\",\"NumericEqualsPath\":\"$$.b\"}", true},
        {"{\"Variable\":\"$.a\",\"NumericEqualsPath\":\"$.b\"}", false},
        {"{\"Not\":{\"Or\":[{\"Variable\":\"$.a\",\"IsNull\":true},"
         "{\"And\":[{\"Variable\":\"$$.x\",\"IsNull\":true}]}]}}", true},
        {"{\"Not\":{\"Or\":[{\"Variable\":\"$.a\",\"IsNull\":true}]}}", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        compiled c = compile_text(cases[i].rule, false);
        assert_non_null(c.r);
        if (choice_uses_context(c.r) != cases[i].uses)
            fail_msg("choice_uses_context wrong for %s", cases[i].rule);
        compiled_free(&c);
    }
    assert_false(choice_uses_context(NULL));
}

static void test_next(void **state)
{
    (void)state;
    const char *r = "{\n"
                    "  \"Variable\": \"$.a\",\n"
                    "  \"IsNull\": true,\n"
                    "  \"Next\": \"Done\"\n"
                    "}";
    compiled c = compile_text(r, true);
    assert_non_null(c.r);
    assert_string_equal(choice_next_name(c.r), "Done");
    assert_int_equal(choice_next_pos(c.r).line, 4);
    assert_int_equal(choice_next_pos(c.r).col, 11);
    compiled_free(&c);
    /* Nested rules have no Next. */
    c = compile_text("{\"Variable\":\"$.a\",\"IsNull\":true,\"Comment\":\"why\"}", false);
    assert_non_null(c.r);
    assert_null(choice_next_name(c.r));
    assert_int_equal(choice_next_pos(c.r).line, 0);
    compiled_free(&c);
    /* The compiled rule outlives the document. */
    c = compile_text("{\"Variable\":\"$.s\",\"StringMatches\":\"a*\",\"Next\":\"N\"}", true);
    assert_non_null(c.r);
    doc_free(c.dc);
    c.dc = NULL;
    json_t *in = load_json("{\"s\":\"abc\"}");
    assert_true(choice_eval(c.r, in, NULL));
    assert_string_equal(choice_next_name(c.r), "N");
    json_decref(in);
    compiled_free(&c);
}

/* Jansson allocations during evaluation: the hot path must make none. */
static size_t n_json_allocs;
static void *count_malloc(size_t n)
{
    n_json_allocs++;
    return malloc(n);
}

static void test_eval_does_not_allocate(void **state)
{
    (void)state;
    const char *r =
        "{\"Or\":[{\"Variable\":\"$.t\",\"TimestampGreaterThanPath\":\"$.u\"},"
        "{\"And\":[{\"Variable\":\"$.s\",\"StringMatches\":\"*x*y\"},"
        "{\"Variable\":\"$.n\",\"NumericLessThanEquals\":9007199254740992.0},"
        "{\"Variable\":\"$$.Id\",\"StringGreaterThan\":\"a\"},"
        "{\"Not\":{\"Variable\":\"$.missing\",\"IsPresent\":true}}]}]}";
    compiled c = compile_text(r, false);
    assert_non_null(c.r);
    json_t *in = load_json("{\"t\":\"2026-01-01T00:00:00Z\",\"u\":\"2027-01-01T00:00:00Z\","
                           "\"s\":\"aaxbbxy\",\"n\":12}");
    ctx_arg arg = {load_json("{\"Id\":\"b\"}"), 0};
    ctx_provider cp = {build_ctx, &arg, NULL};
    (void)ctx_get(&cp); /* the context is built once per state, not per rule */
    size_t before = n_json_allocs;
    for (int i = 0; i < 1000; i++)
        assert_true(choice_eval(c.r, in, &cp));
    assert_int_equal(n_json_allocs, before);
    ctx_release(&cp);
    json_decref(arg.value);
    json_decref(in);
    compiled_free(&c);
}

/* ---- compile errors ----------------------------------------------------------------- */

static void test_err_unknown_field(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\n"
                  "  \"Variable\": \"$.a\",\n"
                  "  \"Foo\": 1,\n"
                  "  \"StringEquals\": \"x\",\n"
                  "  \"Default\": \"B\"\n"
                  "}",
                  false,
                  "rule.json:3:3: unknown field 'Foo' in a Choice rule",
                  "rule.json:5:3: unknown field 'Default' in a Choice rule");
}

static void test_err_no_operator(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\n"
                  "  \"Variable\": \"$.a\",\n"
                  "  \"Next\": \"B\"\n"
                  "}",
                  true,
                  "rule.json:1:1: a Choice rule needs exactly one comparison operator, or And/Or/Not");
}

static void test_err_two_operators(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\n"
                  "  \"Variable\": \"$.a\",\n"
                  "  \"StringEquals\": \"x\",\n"
                  "  \"NumericEquals\": 1\n"
                  "}",
                  false,
                  "rule.json:4:3: a Choice rule has two comparison operators: StringEquals and "
                  "NumericEquals; keep one");
    EXPECT_ERRORS("{\n"
                  "  \"And\": [{\"Variable\": \"$.a\", \"IsNull\": true}],\n"
                  "  \"IsNull\": true\n"
                  "}",
                  false,
                  "rule.json:3:3: a Choice rule has two operators: And and IsNull; keep one");
}

static void test_err_variable_missing(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\n"
                  "  \"NumericEquals\": 1\n"
                  "}",
                  false,
                  "rule.json:1:1: a Choice rule with NumericEquals needs 'Variable' (the path to "
                  "test)");
}

static void test_err_variable_on_logic(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\n"
                  "  \"Variable\": \"$.a\",\n"
                  "  \"Not\": {\"Variable\": \"$.a\", \"IsNull\": true}\n"
                  "}",
                  false,
                  "rule.json:2:3: 'Variable' is not allowed on a Not rule; put it on the nested "
                  "rules");
}

static void test_err_next_nested(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\n"
                  "  \"Or\": [\n"
                  "    {\"Variable\": \"$.a\", \"IsNull\": true, \"Next\": \"X\"}\n"
                  "  ],\n"
                  "  \"Next\": \"Y\"\n"
                  "}",
                  true,
                  "rule.json:3:41: a rule nested in And/Or/Not cannot have 'Next'");
}

static void test_err_next_missing_or_bad(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\n"
                  "  \"Variable\": \"$.a\",\n"
                  "  \"IsNull\": true\n"
                  "}",
                  true,
                  "rule.json:1:1: a top-level Choice rule needs 'Next' (the state to go to)");
    EXPECT_ERRORS("{\n"
                  "  \"Variable\": \"$.a\",\n"
                  "  \"IsNull\": true,\n"
                  "  \"Next\": 3\n"
                  "}",
                  true,
                  "rule.json:4:11: 'Next' must be a state name (a string), not integer");
}

static void test_err_and_or_not_shapes(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\n"
                  "  \"And\": []\n"
                  "}",
                  false,
                  "rule.json:2:10: 'And' needs a non-empty array of rules, not an empty array");
    EXPECT_ERRORS("{\n"
                  "  \"Or\": {\"Variable\": \"$.a\", \"IsNull\": true}\n"
                  "}",
                  false,
                  "rule.json:2:9: 'Or' needs a non-empty array of rules, not object");
    EXPECT_ERRORS("{\n"
                  "  \"Not\": [{\"Variable\": \"$.a\", \"IsNull\": true}]\n"
                  "}",
                  false,
                  "rule.json:2:10: 'Not' needs one rule (an object), not array");
    EXPECT_ERRORS("{\n"
                  "  \"And\": [\"$.a\"]\n"
                  "}",
                  false,
                  "rule.json:2:11: a Choice rule must be an object, not string");
}

static void test_err_operand_types(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"StringEquals\": 5}", false,
                  "rule.json:1:37: StringEquals needs a string, not integer");
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"StringMatches\": null}", false,
                  "rule.json:1:38: StringMatches needs a string, not null");
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"NumericLessThan\": \"5\"}", false,
                  "rule.json:1:40: NumericLessThan needs a number, not string");
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"BooleanEquals\": \"true\"}", false,
                  "rule.json:1:38: BooleanEquals needs true or false, not string");
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"IsPresent\": 1}", false,
                  "rule.json:1:34: IsPresent needs true or false, not integer");
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"IsTimestamp\": \"yes\"}", false,
                  "rule.json:1:36: IsTimestamp needs true or false, not string");
}

static void test_err_timestamp_operand(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"TimestampEquals\": \"2026-02-30T00:00:00Z\"}", false,
                  "rule.json:1:40: TimestampEquals needs an RFC 3339 timestamp like "
                  "\"2026-11-22T03:00:00Z\", not \"2026-02-30T00:00:00Z\"");
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"TimestampLessThan\": 1795316400}", false,
                  "rule.json:1:42: TimestampLessThan needs an RFC 3339 timestamp string, not "
                  "integer");
}

static void test_err_paths(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\n"
                  "  \"Variable\": \"$.a[*]\",\n"
                  "  \"StringEqualsPath\": \"a.b\",\n"
                  "  \"Next\": \"X\"\n"
                  "}",
                  true,
                  "rule.json:2:15: 'Variable' is not a valid Reference Path: wildcard '*' is not "
                  "allowed in a reference path at offset 4 in path '$.a[*]'",
                  "rule.json:3:23: 'StringEqualsPath' is not a valid Reference Path: a path must "
                  "start with '$' at offset 1 in path 'a.b'");
    EXPECT_ERRORS("{\"Variable\": 7, \"NumericEqualsPath\": true}", false,
                  "rule.json:1:14: 'Variable' needs a Reference Path string like \"$.field\", "
                  "not integer",
                  "rule.json:1:38: 'NumericEqualsPath' needs a Reference Path string like "
                  "\"$.field\", not boolean");
    EXPECT_ERRORS("{\"Variable\": \"$..a\", \"IsNull\": true}", false,
                  "rule.json:1:14: 'Variable' is not a valid Reference Path: recursive descent "
                  "'..' is not allowed in a reference path at offset 2 in path '$..a'");
}

static void test_err_pattern(void **state)
{
    (void)state;
    /* JSON "a\\d*" is the pattern a, backslash, d, star. */
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"StringMatches\": \"a\\\\d*\"}", false,
                  "rule.json:1:38: bad StringMatches pattern: the backslash at offset 1 must be "
                  "followed by '*' (a literal star) or another backslash (a literal backslash)");
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"StringMatches\": \"ab\\\\\"}", false,
                  "rule.json:1:38: bad StringMatches pattern: the backslash at offset 2 must be "
                  "followed by '*' (a literal star) or another backslash (a literal backslash)");
}

static void test_err_comment(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"Variable\": \"$.a\", \"IsNull\": true, \"Comment\": 1}", false,
                  "rule.json:1:48: 'Comment' must be a string, not integer");
}

static void test_err_every_error_reported(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\n"
                  "  \"Variable\": \"$.x\",\n"
                  "  \"And\": [\n"
                  "    {\"Variable\": \"$.a\", \"Bogus\": 1, \"IsNull\": true},\n"
                  "    {\"NumericEquals\": \"1\"},\n"
                  "    {\"Or\": [{\"Variable\": \"$.b\", \"IsString\": true, \"Next\": \"Z\"}]}\n"
                  "  ]\n"
                  "}",
                  true,
                  "rule.json:1:1: a top-level Choice rule needs 'Next' (the state to go to)",
                  "rule.json:2:3: 'Variable' is not allowed on an And rule; put it on the nested "
                  "rules",
                  "rule.json:4:25: unknown field 'Bogus' in a Choice rule",
                  "rule.json:5:5: a Choice rule with NumericEquals needs 'Variable' (the path to "
                  "test)",
                  "rule.json:5:23: NumericEquals needs a number, not string",
                  "rule.json:6:51: a rule nested in And/Or/Not cannot have 'Next'");
}

static void test_err_yaml_positions(void **state)
{
    (void)state;
    /* Pipelines are mostly YAML: positions point at the key or value as written. */
    const char *rule = "Variable: $.a[*]\n"
                       "Foo: 1\n"
                       "NumericEquals: '5'\n"
                       "Next: Done\n";
    compiled c = compile_named(rule, "rule.yaml", true);
    assert_null(c.r);
    assert_int_equal(diag_count(c.d), 3);
    assert_string_equal(diag_message(c.d, 0),
                        "rule.yaml:1:11: 'Variable' is not a valid Reference Path: wildcard '*' "
                        "is not allowed in a reference path at offset 4 in path '$.a[*]'");
    assert_string_equal(diag_message(c.d, 1), "rule.yaml:2:1: unknown field 'Foo' in a Choice rule");
    assert_string_equal(diag_message(c.d, 2),
                        "rule.yaml:3:16: NumericEquals needs a number, not string");
    compiled_free(&c);
    /* YAML scalars are typed by the core schema: 5 is a number, "yes" stays a string. */
    c = compile_named("Variable: $.a\nNumericEquals: 5\nNext: Done\n", "rule.yaml", true);
    assert_non_null(c.r);
    compiled_free(&c);
}

int main(void)
{
    /* Before any jansson allocation: count them for test_eval_does_not_allocate. */
    json_set_alloc_funcs(count_malloc, free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_equals),
        cmocka_unit_test(test_string_ordering),
        cmocka_unit_test(test_string_prefix_and_utf8_order),
        cmocka_unit_test(test_string_path_forms),
        cmocka_unit_test(test_matches_wildcards),
        cmocka_unit_test(test_matches_escapes),
        cmocka_unit_test(test_matches_no_blowup),
        cmocka_unit_test(test_matches_rule),
        cmocka_unit_test(test_numeric_equals),
        cmocka_unit_test(test_numeric_int_vs_real),
        cmocka_unit_test(test_numeric_big_ints),
        cmocka_unit_test(test_numeric_compare_direct),
        cmocka_unit_test(test_numeric_ordering),
        cmocka_unit_test(test_numeric_path_forms),
        cmocka_unit_test(test_boolean_equals),
        cmocka_unit_test(test_boolean_path),
        cmocka_unit_test(test_timestamp_equals_offsets),
        cmocka_unit_test(test_timestamp_ordering),
        cmocka_unit_test(test_timestamp_path_forms),
        cmocka_unit_test(test_timestamp_unparseable_input),
        cmocka_unit_test(test_is_null),
        cmocka_unit_test(test_is_present),
        cmocka_unit_test(test_is_numeric_string_boolean),
        cmocka_unit_test(test_is_timestamp),
        cmocka_unit_test(test_type_mismatch_is_false),
        cmocka_unit_test(test_missing_variable),
        cmocka_unit_test(test_missing_path_operand),
        cmocka_unit_test(test_falsy_values_are_values),
        cmocka_unit_test(test_variable_path_syntax),
        cmocka_unit_test(test_and),
        cmocka_unit_test(test_or),
        cmocka_unit_test(test_not),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_short_circuit),
        cmocka_unit_test(test_context_paths),
        cmocka_unit_test(test_uses_context),
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_eval_does_not_allocate),
        cmocka_unit_test(test_err_unknown_field),
        cmocka_unit_test(test_err_no_operator),
        cmocka_unit_test(test_err_two_operators),
        cmocka_unit_test(test_err_variable_missing),
        cmocka_unit_test(test_err_variable_on_logic),
        cmocka_unit_test(test_err_next_nested),
        cmocka_unit_test(test_err_next_missing_or_bad),
        cmocka_unit_test(test_err_and_or_not_shapes),
        cmocka_unit_test(test_err_operand_types),
        cmocka_unit_test(test_err_timestamp_operand),
        cmocka_unit_test(test_err_paths),
        cmocka_unit_test(test_err_pattern),
        cmocka_unit_test(test_err_comment),
        cmocka_unit_test(test_err_every_error_reported),
        cmocka_unit_test(test_err_yaml_positions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
