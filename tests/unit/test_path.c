/* Unit tests for engine/path.c: JSONPath syntax (reference and query paths), lookup,
 * queries in document order, ResultPath placement, and the immutability of inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "path.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v)
        fail_msg("bad test JSON '%s': %s", text, e.text);
    return v;
}

static path *compile_ok(const char *text, path_kind kind)
{
    char err[256];
    path *p = path_compile(text, kind, err, sizeof err);
    if (!p)
        fail_msg("path '%s' did not compile: %s", text, err);
    return p;
}

/* Compile must fail with exactly this message. */
static void compile_err(const char *text, path_kind kind, const char *want)
{
    char err[256] = "untouched";
    path *p = path_compile(text, kind, err, sizeof err);
    if (p) {
        path_free(p);
        fail_msg("path '%s' compiled but should fail with: %s", text, want);
    }
    assert_string_equal(err, want);
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

/* path_get on JSON text; returns the dumped match or NULL. */
static void check_get(const char *doc, const char *pathtext, const char *want)
{
    json_t *root = J(doc);
    path *p = compile_ok(pathtext, PATH_REFERENCE);
    json_t *got = path_get(p, root);
    if (want)
        assert_json(got, want);
    else
        assert_null(got);
    path_free(p);
    json_decref(root);
}

static void check_query(const char *doc, const char *pathtext, const char *want)
{
    json_t *root = J(doc);
    path *p = compile_ok(pathtext, PATH_QUERY);
    json_t *got = path_query(p, root);
    if (want)
        assert_json(got, want);
    else
        assert_null(got);
    json_decref(got);
    path_free(p);
    json_decref(root);
}

static const char *DOC = "{\"a\": {\"b\": {\"c\": 42}}, \"arr\": [10, 20, 30, 40, 50],"
                         " \"o\": {\"z\": 1, \"y\": 2, \"x\": 3}, \"a.b\": \"dotted\"}";

/* ---- syntax and lookup ---- */

static void test_root_is_same_node(void **state)
{
    (void)state;
    json_t *root = J(DOC);
    path *p = compile_ok("$", PATH_REFERENCE);
    assert_ptr_equal(path_get(p, root), root);
    assert_true(path_is_root(p));
    assert_false(path_is_context(p));
    assert_false(path_is_indefinite(p));
    assert_string_equal(path_text(p), "$");
    path_free(p);
    json_decref(root);
}

static void test_context_root(void **state)
{
    (void)state;
    path *p = compile_ok("$$", PATH_REFERENCE);
    assert_true(path_is_context(p));
    assert_true(path_is_root(p));
    path_free(p);
    p = compile_ok("$$.Execution.Id", PATH_QUERY);
    assert_true(path_is_context(p));
    assert_false(path_is_root(p));
    json_t *ctx = J("{\"Execution\": {\"Id\": \"e-1\"}}");
    assert_json(path_get(p, ctx), "\"e-1\"");
    json_decref(ctx);
    path_free(p);
}

static void test_dot_names(void **state)
{
    (void)state;
    check_get(DOC, "$.a.b.c", "42");
    check_get(DOC, "$.a.b", "{\"c\": 42}");
    check_get(DOC, "$.a.x", NULL);
}

static void test_dot_name_unusual_characters(void **state)
{
    (void)state;
    check_get("{\"a-b:c$d\": 1}", "$.a-b:c$d", "1");
    check_get("{\"k\\u00e9y\": 2}", "$.k\xc3\xa9y", "2");
    check_get("{\"it's\": 3}", "$.it's", "3");
    check_get("{\"$\": 4}", "$.$", "4");
}

static void test_bracket_name_with_dot(void **state)
{
    (void)state;
    check_get(DOC, "$['a.b']", "\"dotted\"");
    check_get(DOC, "$['a']['b'].c", "42");
    check_get("{\"a [b] c\": 5}", "$['a [b] c']", "5");
}

static void test_bracket_escapes(void **state)
{
    (void)state;
    check_get("{\"it's\": 1}", "$['it\\'s']", "1");
    check_get("{\"back\\\\slash\": 2}", "$['back\\\\slash']", "2");
    compile_err("$['a\\n']", PATH_REFERENCE, "invalid escape (only \\' and \\\\ are allowed) at offset 5 in path '$['a\\n']'");
}

static void test_index(void **state)
{
    (void)state;
    check_get(DOC, "$.arr[0]", "10");
    check_get(DOC, "$.arr[4]", "50");
    check_get(DOC, "$.arr[5]", NULL);
    check_get("[[1, 2], [3, 4]]", "$[1][0]", "3");
    check_get(DOC, "$.arr[999999999]", NULL);
}

static void test_negative_index_query(void **state)
{
    (void)state;
    check_query(DOC, "$.arr[-1]", "50");
    check_query(DOC, "$.arr[-5]", "10");
    check_query(DOC, "$.arr[-6]", NULL);
    path *p = compile_ok("$.arr[-1]", PATH_QUERY);
    assert_false(path_is_indefinite(p)); /* one node: the result is not wrapped */
    path_free(p);
}

static void test_negative_index_rejected_in_reference(void **state)
{
    (void)state;
    compile_err("$.arr[-1]", PATH_REFERENCE,
                "negative index is not allowed in a reference path at offset 7 in path '$.arr[-1]'");
}

static void test_reference_rejects_indefinite_forms(void **state)
{
    (void)state;
    compile_err("$.a.*", PATH_REFERENCE, "wildcard '*' is not allowed in a reference path at offset 4 in path '$.a.*'");
    compile_err("$[*]", PATH_REFERENCE, "wildcard '*' is not allowed in a reference path at offset 2 in path '$[*]'");
    compile_err("$.a[1:2]", PATH_REFERENCE, "slice is not allowed in a reference path at offset 4 in path '$.a[1:2]'");
    compile_err("$..a", PATH_REFERENCE,
                "recursive descent '..' is not allowed in a reference path at offset 2 in path '$..a'");
}

static void test_header_example_error(void **state)
{
    (void)state;
    compile_err("$.a]", PATH_REFERENCE, "unexpected ']' at offset 4 in path '$.a]'");
    compile_err("$.a]", PATH_QUERY, "unexpected ']' at offset 4 in path '$.a]'");
}

static void test_syntax_errors_with_offsets(void **state)
{
    (void)state;
    compile_err("", PATH_QUERY, "a path must start with '$' at offset 1 in path ''");
    compile_err("a.b", PATH_QUERY, "a path must start with '$' at offset 1 in path 'a.b'");
    compile_err("$.", PATH_QUERY, "expected a name or '*' after '.' at offset 3 in path '$.'");
    compile_err("$[", PATH_QUERY, "unterminated '[' at offset 2 in path '$['");
    compile_err("$[1", PATH_QUERY, "unterminated '[' at offset 2 in path '$[1'");
    compile_err("$.a[1:", PATH_QUERY, "unterminated '[' at offset 4 in path '$.a[1:'");
    compile_err("$['a", PATH_QUERY, "unterminated quoted name at offset 3 in path '$['a'");
    compile_err("$['a'", PATH_QUERY, "unterminated '[' at offset 2 in path '$['a''");
    compile_err("$..", PATH_QUERY, "expected a name, '*' or '[' after '..' at offset 4 in path '$..'");
    compile_err("$.a..", PATH_QUERY, "expected a name, '*' or '[' after '..' at offset 6 in path '$.a..'");
    compile_err("$.a.", PATH_QUERY, "expected a name or '*' after '.' at offset 5 in path '$.a.'");
    compile_err("$.a..b.", PATH_QUERY, "expected a name or '*' after '.' at offset 8 in path '$.a..b.'");
    compile_err("$...a", PATH_QUERY, "expected a name, '*' or '[' after '..' at offset 4 in path '$...a'");
}

static void test_trailing_garbage(void **state)
{
    (void)state;
    compile_err("$a", PATH_QUERY, "unexpected 'a' at offset 2 in path '$a'");
    compile_err("$$$", PATH_QUERY, "unexpected '$' at offset 3 in path '$$$'");
    compile_err("$[0]x", PATH_QUERY, "unexpected 'x' at offset 5 in path '$[0]x'");
    compile_err("$['a']b", PATH_QUERY, "unexpected 'b' at offset 7 in path '$['a']b'");
    compile_err("$[0]]", PATH_QUERY, "unexpected ']' at offset 5 in path '$[0]]'");
}

static void test_bracket_content_errors(void **state)
{
    (void)state;
    compile_err("$[a]", PATH_QUERY, "expected an index, '*', a slice or a quoted name at offset 3 in path '$[a]'");
    compile_err("$[]", PATH_QUERY, "expected an index, '*', a slice or a quoted name at offset 3 in path '$[]'");
    compile_err("$[1x]", PATH_QUERY, "expected ']' at offset 4 in path '$[1x]'");
    compile_err("$[-]", PATH_QUERY, "expected a digit after '-' at offset 4 in path '$[-]'");
    compile_err("$[1:2:1]", PATH_QUERY, "slice steps are not supported at offset 6 in path '$[1:2:1]'");
    compile_err("$[?(@.a)]", PATH_QUERY,
                "filter and script expressions are not supported at offset 3 in path '$[?(@.a)]'");
    compile_err("$[99999999999999999999]", PATH_QUERY,
                "index too large at offset 3 in path '$[99999999999999999999]'");
}

static void test_whitespace_rejected(void **state)
{
    (void)state;
    compile_err("$ .a", PATH_QUERY, "whitespace is not allowed at offset 2 in path '$ .a'");
    compile_err("$.a b", PATH_QUERY,
                "whitespace is not allowed (write ['a name'] for keys with spaces) at offset 4 in path '$.a b'");
    compile_err("$[ 1]", PATH_QUERY, "whitespace is not allowed at offset 3 in path '$[ 1]'");
    compile_err("$[1 ]", PATH_QUERY, "whitespace is not allowed at offset 4 in path '$[1 ]'");
    compile_err("$.a ", PATH_QUERY,
                "whitespace is not allowed (write ['a name'] for keys with spaces) at offset 4 in path '$.a '");
    /* inside quotes a space is part of the name */
    check_get("{\"a b\": 1}", "$['a b']", "1");
}

static void test_small_errbuf_is_truncated_safely(void **state)
{
    (void)state;
    char err[8];
    memset(err, 'x', sizeof err);
    assert_null(path_compile("$.a]", PATH_QUERY, err, sizeof err));
    assert_int_equal(strlen(err), 7);
    assert_null(path_compile("$.a]", PATH_QUERY, NULL, 0)); /* no buffer: still fails cleanly */
}

static void test_path_text_kept(void **state)
{
    (void)state;
    path *p = compile_ok("$['a.b'][3]..x", PATH_QUERY);
    assert_string_equal(path_text(p), "$['a.b'][3]..x");
    path_free(p);
}

static void test_indefinite_flags(void **state)
{
    (void)state;
    const char *definite[] = { "$", "$.a", "$['a']", "$[0]", "$[-1]", "$$.a[2]" };
    const char *indefinite[] = { "$.*", "$[*]", "$[1:2]", "$[:]", "$..a", "$..[0]", "$.a[*].b" };
    for (size_t i = 0; i < sizeof definite / sizeof *definite; i++) {
        path *p = compile_ok(definite[i], PATH_QUERY);
        assert_false(path_is_indefinite(p));
        path_free(p);
    }
    json_t *root = J("{\"a\": [{\"b\": 1}], \"b\": 2}");
    for (size_t i = 0; i < sizeof indefinite / sizeof *indefinite; i++) {
        path *p = compile_ok(indefinite[i], PATH_QUERY);
        assert_true(path_is_indefinite(p));
        assert_null(path_get(p, root)); /* names no single node */
        path_free(p);
    }
    json_decref(root);
}

static void test_get_type_mismatches_are_missing(void **state)
{
    (void)state;
    check_get(DOC, "$.arr.x", NULL);   /* name on an array */
    check_get(DOC, "$.o[0]", NULL);    /* index on an object */
    check_get(DOC, "$.a.b.c.d", NULL); /* name on a number */
    check_get("\"s\"", "$.a", NULL);   /* name on a scalar root */
    check_get("null", "$[0]", NULL);
}

static void test_falsy_values_are_found(void **state)
{
    (void)state;
    const char *doc = "{\"zero\": 0, \"f\": false, \"e\": \"\", \"n\": null, \"ea\": [], \"eo\": {}}";
    check_get(doc, "$.zero", "0");
    check_get(doc, "$.f", "false");
    check_get(doc, "$.e", "\"\"");
    check_get(doc, "$.n", "null");
    check_get(doc, "$.ea", "[]");
    check_get(doc, "$.eo", "{}");
    check_query(doc, "$.n", "null");
    check_query(doc, "$.f", "false");
    check_query(doc, "$.*", "[0, false, \"\", null, [], {}]");
}

static void test_int64_exact(void **state)
{
    (void)state;
    json_t *root = J("{\"big\": 9223372036854775807, \"small\": -9223372036854775808,"
                     " \"odd\": 9007199254740993}");
    path *p = compile_ok("$.big", PATH_REFERENCE);
    assert_true(json_is_integer(path_get(p, root)));
    assert_true(json_integer_value(path_get(p, root)) == INT64_MAX);
    path_free(p);
    p = compile_ok("$.small", PATH_QUERY);
    json_t *v = path_query(p, root);
    assert_true(json_integer_value(v) == INT64_MIN);
    json_decref(v);
    path_free(p);
    p = compile_ok("$.copy", PATH_REFERENCE);
    json_t *out = path_set(p, root, json_object_get(root, "odd"), NULL);
    assert_true(json_integer_value(json_object_get(out, "copy")) == 9007199254740993LL);
    json_decref(out);
    path_free(p);
    json_decref(root);
}

/* ---- queries ---- */

static void test_query_definite_returns_new_reference(void **state)
{
    (void)state;
    json_t *root = J(DOC);
    json_t *node = json_object_get(root, "a");
    size_t before = node->refcount;
    path *p = compile_ok("$.a", PATH_QUERY);
    json_t *got = path_query(p, root);
    assert_ptr_equal(got, node); /* the node itself, not a copy */
    assert_int_equal(node->refcount, before + 1);
    json_decref(got);
    assert_int_equal(node->refcount, before);
    path_free(p);
    json_decref(root);
}

static void test_query_missing_definite_is_null_indefinite_is_empty(void **state)
{
    (void)state;
    check_query(DOC, "$.nope", NULL);
    check_query(DOC, "$.nope[*]", "[]");
    check_query(DOC, "$.arr[7:9]", "[]");
    check_query(DOC, "$..nope", "[]");
    path *p = compile_ok("$.a", PATH_QUERY);
    assert_null(path_query(p, NULL));
    path_free(p);
    p = compile_ok("$[*]", PATH_QUERY);
    json_t *v = path_query(p, NULL);
    assert_json(v, "[]");
    json_decref(v);
    path_free(p);
}

static void test_wildcard_object_in_order(void **state)
{
    (void)state;
    check_query(DOC, "$.o.*", "[1, 2, 3]");
    check_query(DOC, "$.o[*]", "[1, 2, 3]");
    check_query(DOC, "$.arr.*", "[10, 20, 30, 40, 50]");
    check_query(DOC, "$.arr[*]", "[10, 20, 30, 40, 50]");
    check_query(DOC, "$.a.b.c[*]", "[]"); /* wildcard on a scalar */
}

static void test_wildcard_then_name(void **state)
{
    (void)state;
    check_query("{\"items\": [{\"id\": 1}, {\"x\": 0}, {\"id\": 3}, 7]}", "$.items[*].id", "[1, 3]");
    check_query("{\"m\": {\"p\": {\"v\": [1, 2]}, \"q\": {\"v\": [3]}}}", "$.m.*.v[0]", "[1, 3]");
}

static void test_slice_basic(void **state)
{
    (void)state;
    check_query(DOC, "$.arr[1:3]", "[20, 30]");
    check_query(DOC, "$.arr[0:5]", "[10, 20, 30, 40, 50]");
    check_query(DOC, "$.arr[3:1]", "[]");
    check_query(DOC, "$.arr[2:2]", "[]");
}

static void test_slice_open_bounds(void **state)
{
    (void)state;
    check_query(DOC, "$.arr[:2]", "[10, 20]");
    check_query(DOC, "$.arr[3:]", "[40, 50]");
    check_query(DOC, "$.arr[:]", "[10, 20, 30, 40, 50]");
}

static void test_slice_negative_and_clamped(void **state)
{
    (void)state;
    check_query(DOC, "$.arr[-2:]", "[40, 50]");
    check_query(DOC, "$.arr[:-1]", "[10, 20, 30, 40]");
    check_query(DOC, "$.arr[-3:-1]", "[30, 40]");
    check_query(DOC, "$.arr[-100:100]", "[10, 20, 30, 40, 50]");
    check_query(DOC, "$.arr[10:]", "[]");
    check_query(DOC, "$.o[0:2]", "[]"); /* slices select array items only */
}

static void test_recursive_descent_document_order(void **state)
{
    (void)state;
    /* Matches come out in the order they are written, at any depth, including the
     * members of objects that are array items. */
    const char *doc = "{\"list\": [{\"id\": 1}, {\"x\": {\"id\": 2}}], \"id\": 3,"
                      " \"tail\": {\"id\": {\"id\": 4}}}";
    check_query(doc, "$..id", "[1, 2, 3, {\"id\": 4}, 4]");
    /* a deeper match written first comes first */
    check_query("{\"x\": {\"a\": 1}, \"a\": 2}", "$..a", "[1, 2]");
}

static void test_recursive_descent_below_subtree(void **state)
{
    (void)state;
    /* $.a..b looks below a, never at a itself or its siblings */
    const char *doc = "{\"b\": 0, \"a\": {\"b\": 1, \"c\": [{\"b\": 2}]}}";
    check_query(doc, "$.a..b", "[1, 2]");
    check_query(doc, "$..a..b", "[1, 2]");
    check_query(doc, "$..b", "[0, 1, 2]");
}

static void test_recursive_descent_index_and_wildcard(void **state)
{
    (void)state;
    const char *doc = "{\"a\": [1, [2, 3]], \"b\": {\"c\": [4]}}";
    check_query(doc, "$..[0]", "[1, 2, 4]");
    check_query(doc, "$..[-1]", "[[2, 3], 3, 4]");
    check_query(doc, "$..*", "[[1, [2, 3]], 1, [2, 3], 2, 3, {\"c\": [4]}, [4], 4]");
    check_query(doc, "$..[*]", "[[1, [2, 3]], 1, [2, 3], 2, 3, {\"c\": [4]}, [4], 4]");
    check_query(doc, "$..[1:]", "[[2, 3], 3]");
}

static void test_recursive_descent_then_steps(void **state)
{
    (void)state;
    const char *doc = "{\"x\": {\"a\": {\"b\": 1}}, \"y\": [{\"a\": {\"b\": 2, \"c\": 0}}], \"a\": 5}";
    check_query(doc, "$..a.b", "[1, 2]");
    check_query("{\"p\": {\"a.b\": 7}}", "$..['a.b']", "[7]");
}

static void test_query_results_share_nodes(void **state)
{
    (void)state;
    json_t *root = J(DOC);
    path *p = compile_ok("$.*", PATH_QUERY);
    json_t *got = path_query(p, root);
    assert_int_equal(json_array_size(got), 4);
    assert_ptr_equal(json_array_get(got, 0), json_object_get(root, "a"));
    json_decref(got);
    path_free(p);
    json_decref(root);
}

/* ---- ResultPath ---- */

static json_t *set_ok(const char *doc, const char *pathtext, const char *value, const char *want)
{
    json_t *root = J(doc), *snapshot = json_deep_copy(root), *v = J(value);
    path *p = compile_ok(pathtext, PATH_REFERENCE);
    etl_error err;
    etl_error_clear(&err);
    json_t *out = path_set(p, root, v, &err);
    if (!out)
        fail_msg("path_set '%s' failed: %s: %s", pathtext, err.name, err.cause);
    assert_json(out, want);
    assert_true(json_equal(root, snapshot)); /* the input is never mutated */
    path_free(p);
    json_decref(v);
    json_decref(snapshot);
    json_decref(root);
    return out;
}

static void set_err(const char *doc, const char *pathtext, const char *cause)
{
    json_t *root = J(doc), *snapshot = json_deep_copy(root), *v = J("1");
    path *p = compile_ok(pathtext, PATH_REFERENCE);
    etl_error err;
    etl_error_clear(&err);
    assert_null(path_set(p, root, v, &err));
    assert_int_equal(err.status, ETL_ERUNTIME);
    assert_string_equal(err.name, "States.ResultPathMatchFailure");
    assert_string_equal(err.cause, cause);
    assert_true(json_equal(root, snapshot));
    path_free(p);
    json_decref(v);
    json_decref(snapshot);
    json_decref(root);
}

static void test_set_root_replaces(void **state)
{
    (void)state;
    json_t *root = J("{\"a\": 1}"), *v = J("[1, 2]");
    path *p = compile_ok("$", PATH_REFERENCE);
    json_t *out = path_set(p, root, v, NULL);
    assert_ptr_equal(out, v);
    assert_int_equal(v->refcount, 2);
    json_decref(out);
    /* "$" also replaces a scalar root */
    json_t *s = J("\"text\"");
    out = path_set(p, s, v, NULL);
    assert_ptr_equal(out, v);
    json_decref(out);
    json_decref(s);
    path_free(p);
    json_decref(v);
    json_decref(root);
}

static void test_set_member(void **state)
{
    (void)state;
    json_decref(set_ok("{\"a\": 1}", "$.r", "{\"x\": true}", "{\"a\": 1, \"r\": {\"x\": true}}"));
    json_decref(set_ok("{\"a\": 1, \"b\": 2}", "$.a", "\"new\"", "{\"a\": \"new\", \"b\": 2}"));
    json_decref(set_ok("{}", "$['a.b']", "null", "{\"a.b\": null}"));
}

static void test_set_creates_intermediates(void **state)
{
    (void)state;
    json_decref(set_ok("{}", "$.a.b.c", "7", "{\"a\": {\"b\": {\"c\": 7}}}"));
    json_decref(set_ok("{\"a\": {\"k\": 1}}", "$.a.b.c", "7", "{\"a\": {\"k\": 1, \"b\": {\"c\": 7}}}"));
}

static void test_set_shares_unchanged_and_value(void **state)
{
    (void)state;
    json_t *root = J("{\"keep\": {\"big\": [1, 2, 3]}, \"a\": {\"b\": 1}}"), *v = J("{\"r\": 1}");
    path *p = compile_ok("$.a.c", PATH_REFERENCE);
    json_t *out = path_set(p, root, v, NULL);
    assert_non_null(out);
    assert_ptr_not_equal(out, root);
    assert_ptr_not_equal(json_object_get(out, "a"), json_object_get(root, "a"));
    /* siblings are shared, not copied; the value is placed as is */
    assert_ptr_equal(json_object_get(out, "keep"), json_object_get(root, "keep"));
    assert_ptr_equal(json_object_get(json_object_get(out, "a"), "c"), v);
    assert_null(json_object_get(json_object_get(root, "a"), "c"));
    json_decref(out);
    path_free(p);
    json_decref(v);
    json_decref(root);
}

static void test_set_inputs_never_mutated_repeatedly(void **state)
{
    (void)state;
    json_t *root = J("{\"a\": {\"b\": [{\"c\": 1}]}}"), *snapshot = json_deep_copy(root);
    json_t *v = J("{\"v\": [1]}"), *vsnap = json_deep_copy(v);
    const char *paths[] = { "$.a.b[0].c", "$.a.x", "$.a.b[0].d.e", "$.n", "$" };
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        path *p = compile_ok(paths[i], PATH_REFERENCE);
        json_t *out = path_set(p, root, v, NULL);
        assert_non_null(out);
        assert_ptr_equal(path_get(p, out), v);
        json_decref(out);
        path_free(p);
        assert_true(json_equal(root, snapshot));
        assert_true(json_equal(v, vsnap));
    }
    assert_int_equal(root->refcount, 1);
    assert_int_equal(v->refcount, 1);
    json_decref(vsnap);
    json_decref(v);
    json_decref(snapshot);
    json_decref(root);
}

static void test_set_into_existing_array(void **state)
{
    (void)state;
    json_t *out = set_ok("{\"a\": [{\"x\": 1}, {\"x\": 2}]}", "$.a[1].y", "9",
                         "{\"a\": [{\"x\": 1}, {\"x\": 2, \"y\": 9}]}");
    json_decref(out);
    json_decref(set_ok("{\"a\": [1, 2, 3]}", "$.a[0]", "\"z\"", "{\"a\": [\"z\", 2, 3]}"));
}

static void test_set_fails_through_array(void **state)
{
    (void)state;
    set_err("{\"a\": [1, 2]}", "$.a.b", "ResultPath '$.a.b' cannot be applied: '$.a' is an array");
    set_err("{\"a\": {\"b\": [1]}}", "$.a.b.c.d",
            "ResultPath '$.a.b.c.d' cannot be applied: '$.a.b' is an array");
}

static void test_set_fails_through_scalars(void **state)
{
    (void)state;
    set_err("{\"a\": \"s\"}", "$.a.b", "ResultPath '$.a.b' cannot be applied: '$.a' is a string");
    set_err("{\"a\": 0}", "$.a.b", "ResultPath '$.a.b' cannot be applied: '$.a' is a number");
    set_err("{\"a\": 1.5}", "$.a.b", "ResultPath '$.a.b' cannot be applied: '$.a' is a number");
    set_err("{\"a\": null}", "$.a.b", "ResultPath '$.a.b' cannot be applied: '$.a' is null");
    set_err("{\"a\": false}", "$['a'].b", "ResultPath '$['a'].b' cannot be applied: '$['a']' is a boolean");
}

static void test_set_fails_on_non_object_root(void **state)
{
    (void)state;
    set_err("[1]", "$.a", "ResultPath '$.a' cannot be applied: '$' is an array");
    set_err("\"x\"", "$.a", "ResultPath '$.a' cannot be applied: '$' is a string");
    set_err("null", "$.a", "ResultPath '$.a' cannot be applied: '$' is null");
}

static void test_set_index_rules(void **state)
{
    (void)state;
    set_err("{\"a\": [1, 2]}", "$.a[2]", "ResultPath '$.a[2]' cannot be applied: '$.a' is an array with 2 items");
    set_err("{\"a\": {}}", "$.a[0]", "ResultPath '$.a[0]' cannot be applied: '$.a' is an object");
    set_err("{}", "$.a[0]",
            "ResultPath '$.a[0]' cannot be applied: '$.a' does not exist (an index needs an existing array)");
    set_err("{\"a\": []}", "$.a[0].b", "ResultPath '$.a[0].b' cannot be applied: '$.a' is an array with 0 items");
}

static void test_set_context_path_refused(void **state)
{
    (void)state;
    json_t *root = J("{}"), *v = J("1");
    path *p = compile_ok("$$.a", PATH_REFERENCE);
    etl_error err;
    assert_null(path_set(p, root, v, &err));
    assert_string_equal(err.name, "States.ResultPathMatchFailure");
    assert_non_null(strstr(err.cause, "'$$.a'"));
    path_free(p);
    json_decref(v);
    json_decref(root);
}

static void test_compile_and_free_many(void **state)
{
    (void)state;
    /* long paths exercise step-array growth; every step must resolve */
    char text[4096] = "$";
    json_t *root = json_object(), *node = root;
    for (int i = 0; i < 200; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        strcat(text, i % 2 ? "." : "['");
        strcat(text, key);
        if (i % 2 == 0)
            strcat(text, "']");
        json_t *next = json_object();
        json_object_set_new(node, key, next);
        node = next;
    }
    path *p = compile_ok(text, PATH_REFERENCE);
    assert_ptr_equal(path_get(p, root), node);
    path_free(p);
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root_is_same_node),
        cmocka_unit_test(test_context_root),
        cmocka_unit_test(test_dot_names),
        cmocka_unit_test(test_dot_name_unusual_characters),
        cmocka_unit_test(test_bracket_name_with_dot),
        cmocka_unit_test(test_bracket_escapes),
        cmocka_unit_test(test_index),
        cmocka_unit_test(test_negative_index_query),
        cmocka_unit_test(test_negative_index_rejected_in_reference),
        cmocka_unit_test(test_reference_rejects_indefinite_forms),
        cmocka_unit_test(test_header_example_error),
        cmocka_unit_test(test_syntax_errors_with_offsets),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_bracket_content_errors),
        cmocka_unit_test(test_whitespace_rejected),
        cmocka_unit_test(test_small_errbuf_is_truncated_safely),
        cmocka_unit_test(test_path_text_kept),
        cmocka_unit_test(test_indefinite_flags),
        cmocka_unit_test(test_get_type_mismatches_are_missing),
        cmocka_unit_test(test_falsy_values_are_found),
        cmocka_unit_test(test_int64_exact),
        cmocka_unit_test(test_query_definite_returns_new_reference),
        cmocka_unit_test(test_query_missing_definite_is_null_indefinite_is_empty),
        cmocka_unit_test(test_wildcard_object_in_order),
        cmocka_unit_test(test_wildcard_then_name),
        cmocka_unit_test(test_slice_basic),
        cmocka_unit_test(test_slice_open_bounds),
        cmocka_unit_test(test_slice_negative_and_clamped),
        cmocka_unit_test(test_recursive_descent_document_order),
        cmocka_unit_test(test_recursive_descent_below_subtree),
        cmocka_unit_test(test_recursive_descent_index_and_wildcard),
        cmocka_unit_test(test_recursive_descent_then_steps),
        cmocka_unit_test(test_query_results_share_nodes),
        cmocka_unit_test(test_set_root_replaces),
        cmocka_unit_test(test_set_member),
        cmocka_unit_test(test_set_creates_intermediates),
        cmocka_unit_test(test_set_shares_unchanged_and_value),
        cmocka_unit_test(test_set_inputs_never_mutated_repeatedly),
        cmocka_unit_test(test_set_into_existing_array),
        cmocka_unit_test(test_set_fails_through_array),
        cmocka_unit_test(test_set_fails_through_scalars),
        cmocka_unit_test(test_set_fails_on_non_object_root),
        cmocka_unit_test(test_set_index_rules),
        cmocka_unit_test(test_set_context_path_refused),
        cmocka_unit_test(test_compile_and_free_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
