/* Unit tests for the definition loader (doc.c) and diagnostics (diag.c): positions,
 * YAML 1.2 core-schema typing, JSON strictness, aliases and merge keys, and the error
 * messages with their FILE:LINE:COL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "diag.h"
#include "doc.h"

/* Loads text that must load cleanly. */
static doc *load_ok(const char *text, const char *name)
{
    diag *d = diag_new(name);
    assert_non_null(d);
    doc *dc = doc_load_string(text, strlen(text), name, false, d);
    if (!dc || diag_count(d) != 0) {
        diag_print(d, stderr);
        fail_msg("expected %s to load", name);
    }
    diag_free(d);
    return dc;
}

/* Loads text that must fail; returns the diag (caller frees) for its messages. */
static diag *load_err_len(const char *text, size_t len, const char *name)
{
    diag *d = diag_new(name);
    assert_non_null(d);
    doc *dc = doc_load_string(text, len, name, false, d);
    if (dc) {
        doc_free(dc);
        fail_msg("expected %s to be rejected", name);
    }
    assert_true(diag_count(d) > 0);
    return d;
}

static diag *load_err(const char *text, const char *name)
{
    return load_err_len(text, strlen(text), name);
}

/* The single error a bad text produces, compared in full. */
static void expect_error(const char *text, const char *name, const char *message)
{
    diag *d = load_err(text, name);
    assert_string_equal(diag_message(d, 0), message);
    assert_int_equal(diag_count(d), 1);
    diag_free(d);
}

static void assert_pos(doc_pos p, int line, int col)
{
    if (p.line != line || p.col != col)
        fail_msg("position %d:%d, expected %d:%d", p.line, p.col, line, col);
}

static const doc_node *path2(const doc_node *n, const char *a, const char *b)
{
    const doc_node *x = doc_get(n, a);
    assert_non_null(x);
    if (!b)
        return x;
    x = doc_get(x, b);
    assert_non_null(x);
    return x;
}

/* ---- diag --------------------------------------------------------------------------- */

static void test_diag_sorts_stably_and_dedupes(void **state)
{
    (void)state;
    diag *d = diag_new("p.yaml");
    diag_add(d, (doc_pos){3, 2}, "third %s", "a");
    diag_add(d, (doc_pos){1, 9}, "first");
    diag_add(d, (doc_pos){3, 2}, "third b");
    diag_add(d, (doc_pos){3, 2}, "third a"); /* exact duplicate: dropped */
    diag_add(d, (doc_pos){3, 1}, "second");
    diag_add(d, (doc_pos){0, 0}, "no position");
    diag_add(d, (doc_pos){1, 9}, "first but other text");
    assert_int_equal(diag_count(d), 6);
    assert_string_equal(diag_message(d, 0), "p.yaml: no position");
    assert_string_equal(diag_message(d, 1), "p.yaml:1:9: first");
    assert_string_equal(diag_message(d, 2), "p.yaml:1:9: first but other text");
    assert_string_equal(diag_message(d, 3), "p.yaml:3:1: second");
    assert_string_equal(diag_message(d, 4), "p.yaml:3:2: third a");
    assert_string_equal(diag_message(d, 5), "p.yaml:3:2: third b");
    assert_null(diag_message(d, 6));
    assert_string_equal(diag_file(d), "p.yaml");

    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    diag_print(d, out);
    fclose(out);
    assert_string_equal(buf, "p.yaml: no position\n"
                             "p.yaml:1:9: first\n"
                             "p.yaml:1:9: first but other text\n"
                             "p.yaml:3:1: second\n"
                             "p.yaml:3:2: third a\n"
                             "p.yaml:3:2: third b\n");
    free(buf);
    diag_free(d);
}

/* ---- positions ------------------------------------------------------------------------ */

static void test_yaml_positions(void **state)
{
    (void)state;
    const char *text = "# pipeline\n"
                       "StartAt: First\n"
                       "States:\n"
                       "  First:\n"
                       "    Type: Pass\n"
                       "    Result: [1, {k: v}]\n"
                       "    Next:   Second\n";
    doc *dc = load_ok(text, "p.yaml");
    assert_string_equal(dc->file, "p.yaml");
    const doc_node *root = dc->root;
    assert_pos(root->pos, 2, 1);
    assert_int_equal(root->n, 2);
    assert_string_equal(root->members[0].key, "StartAt");
    assert_pos(root->members[0].key_pos, 2, 1);
    assert_pos(root->members[0].value->pos, 2, 10);
    assert_pos(doc_member_get(root, "States")->key_pos, 3, 1);
    const doc_node *first = path2(root, "States", "First");
    assert_pos(first->pos, 5, 5);
    assert_pos(doc_member_get(first, "Type")->key_pos, 5, 5);
    assert_pos(doc_get(first, "Type")->pos, 5, 11);
    assert_pos(doc_get(first, "Next")->pos, 7, 13);
    const doc_node *res = doc_get(first, "Result");
    assert_pos(res->pos, 6, 13);
    assert_int_equal(res->n, 2);
    assert_pos(res->items[0]->pos, 6, 14);
    assert_pos(res->items[1]->pos, 6, 17);
    assert_pos(doc_member_get(res->items[1], "k")->key_pos, 6, 18);
    assert_pos(doc_get(res->items[1], "k")->pos, 6, 21);
    doc_free(dc);
}

static void test_json_positions(void **state)
{
    (void)state;
    /* "é" is two bytes but one column, as editors (and jansson) count it. */
    const char *text = "{\n"
                       "  \"é\": 1, \"States\": {\n"
                       "    \"A\" : [true, null, \"x\\\"y\"],\n"
                       "\t\"B\": -1.5e3}\n"
                       "}\n";
    doc *dc = load_ok(text, "p.json");
    const doc_node *root = dc->root;
    assert_pos(root->pos, 1, 1);
    assert_pos(root->members[0].key_pos, 2, 3);
    assert_pos(root->members[0].value->pos, 2, 8);
    assert_pos(root->members[1].key_pos, 2, 11);
    assert_pos(root->members[1].value->pos, 2, 21);
    const doc_node *a = path2(root, "States", "A");
    assert_pos(doc_member_get(doc_get(root, "States"), "A")->key_pos, 3, 5);
    assert_pos(a->pos, 3, 11);
    assert_pos(a->items[1]->pos, 3, 18);
    assert_pos(a->items[2]->pos, 3, 24);
    assert_string_equal(json_string_value(a->items[2]->json), "x\"y");
    assert_pos(doc_member_get(doc_get(root, "States"), "B")->key_pos, 4, 2);
    assert_pos(path2(root, "States", "B")->pos, 4, 7);
    doc_free(dc);
}

/* ---- scalar typing -------------------------------------------------------------------- */

static void expect_typed(const char *value, json_t *want)
{
    char text[256];
    snprintf(text, sizeof text, "v: %s\n", value);
    doc *dc = load_ok(text, "t.yaml");
    const json_t *got = doc_get(dc->root, "v")->json;
    if (!json_equal(got, want) || json_typeof(got) != json_typeof(want)) {
        char *g = json_dumps(got, JSON_ENCODE_ANY);
        char *w = json_dumps(want, JSON_ENCODE_ANY);
        fail_msg("'%s' loaded as %s, expected %s", value, g, w);
    }
    json_decref(want);
    doc_free(dc);
}

static void test_core_schema_table(void **state)
{
    (void)state;
    const char *nulls[] = {"null", "Null", "NULL", "~", ""};
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++)
        expect_typed(nulls[i], json_null());
    const char *trues[] = {"true", "True", "TRUE"};
    const char *falses[] = {"false", "False", "FALSE"};
    for (size_t i = 0; i < 3; i++) {
        expect_typed(trues[i], json_true());
        expect_typed(falses[i], json_false());
    }
    expect_typed("0", json_integer(0));
    expect_typed("-17", json_integer(-17));
    expect_typed("+42", json_integer(42));
    expect_typed("0x10", json_integer(16));
    expect_typed("0xfF", json_integer(255));
    expect_typed("0o17", json_integer(15));
    expect_typed("0123", json_integer(123)); /* 1.2: decimal, not 1.1 octal */
    expect_typed("1.0", json_real(1.0));
    expect_typed("1e3", json_real(1000.0));
    expect_typed("-2.5E-3", json_real(-2.5e-3));
    expect_typed(".5", json_real(0.5));
    expect_typed("1.", json_real(1.0));
    /* YAML 1.1 words and near-numbers stay strings */
    const char *strings[] = {"yes", "no", "on", "off", "y", "n", "Yes", "tRue", "nul",
                             "0x", "0xG", "0o8", "1_000", "1e", "e3", ".", "-x", "+.nan",
                             "1.2.3", "12:30", "0b101", "1x"};
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++)
        expect_typed(strings[i], json_string(strings[i]));
}

static void test_quoted_and_block_scalars_are_strings(void **state)
{
    (void)state;
    doc *dc = load_ok("a: \"1\"\nb: 'true'\nc: \"null\"\nd: |\n  12\ne: >-\n  3.5\nf: ''\n",
                      "q.yaml");
    assert_string_equal(json_string_value(doc_get(dc->root, "a")->json), "1");
    assert_string_equal(json_string_value(doc_get(dc->root, "b")->json), "true");
    assert_string_equal(json_string_value(doc_get(dc->root, "c")->json), "null");
    assert_string_equal(json_string_value(doc_get(dc->root, "d")->json), "12\n");
    assert_string_equal(json_string_value(doc_get(dc->root, "e")->json), "3.5");
    assert_string_equal(json_string_value(doc_get(dc->root, "f")->json), "");
    doc_free(dc);
}

static void test_integers_keep_64_bits(void **state)
{
    (void)state;
    doc *dc = load_ok("a: 9007199254740993\nb: -9223372036854775808\nc: 9223372036854775807\n"
                      "d: 0x7FFFFFFFFFFFFFFF\n",
                      "i.yaml");
    assert_true(json_is_integer(doc_get(dc->root, "a")->json));
    assert_true(json_integer_value(doc_get(dc->root, "a")->json) == 9007199254740993LL);
    assert_true(json_integer_value(doc_get(dc->root, "b")->json) == INT64_MIN);
    assert_true(json_integer_value(doc_get(dc->root, "c")->json) == INT64_MAX);
    assert_true(json_integer_value(doc_get(dc->root, "d")->json) == INT64_MAX);
    doc_free(dc);

    dc = load_ok("{\"a\": 9007199254740993, \"b\": -9223372036854775808}", "i.json");
    assert_true(json_integer_value(doc_get(dc->root, "a")->json) == 9007199254740993LL);
    assert_true(json_integer_value(doc_get(dc->root, "b")->json) == INT64_MIN);
    doc_free(dc);
}

static void test_integer_out_of_range_is_error(void **state)
{
    (void)state;
    expect_error("ok: 1\nbig: 9223372036854775808\n", "r.yaml",
                 "r.yaml:2:6: integer 9223372036854775808 is out of the 64-bit range; quote it "
                 "to keep it as a string");
    expect_error("- -9223372036854775809\n", "r.yaml",
                 "r.yaml:1:3: integer -9223372036854775809 is out of the 64-bit range; quote it "
                 "to keep it as a string");
    expect_error("- 0x8000000000000000\n", "r.yaml",
                 "r.yaml:1:3: integer 0x8000000000000000 is out of the 64-bit range; quote it "
                 "to keep it as a string");
    diag *d = load_err("{\"a\": 9223372036854775808}", "r.json");
    assert_non_null(strstr(diag_message(d, 0), "r.json:1:"));
    assert_non_null(strstr(diag_message(d, 0), "too big integer"));
    diag_free(d);
    /* quoting keeps it */
    doc *dc = load_ok("big: \"9223372036854775808\"\n", "r.yaml");
    assert_string_equal(json_string_value(doc_get(dc->root, "big")->json),
                        "9223372036854775808");
    doc_free(dc);
}

static void test_inf_nan_rejected(void **state)
{
    (void)state;
    expect_error("a: .inf\n", "f.yaml",
                 "f.yaml:1:4: '.inf' has no JSON equivalent; quote it to keep it as a string");
    expect_error("a:\n  - -.INF\n", "f.yaml",
                 "f.yaml:2:5: '-.INF' has no JSON equivalent; quote it to keep it as a string");
    expect_error("a: +.inf\n", "f.yaml",
                 "f.yaml:1:4: '+.inf' has no JSON equivalent; quote it to keep it as a string");
    expect_error("a: .NaN\n", "f.yaml",
                 "f.yaml:1:4: '.NaN' has no JSON equivalent; quote it to keep it as a string");
    expect_error("a: 1e999\n", "f.yaml",
                 "f.yaml:1:4: number 1e999 is too large; quote it to keep it as a string");
}

static void test_explicit_tags(void **state)
{
    (void)state;
    doc *dc = load_ok("a: !!str 1\nb: !!int \"12\"\nc: !!float 3\nd: !!bool 'true'\n"
                      "e: !!null\nf: ! 7\ng: !!str\nh: !!float 99999999999999999999\n",
                      "g.yaml");
    assert_string_equal(json_string_value(doc_get(dc->root, "a")->json), "1");
    assert_true(json_integer_value(doc_get(dc->root, "b")->json) == 12);
    assert_true(json_is_real(doc_get(dc->root, "c")->json));
    assert_true(json_real_value(doc_get(dc->root, "c")->json) == 3.0);
    assert_true(json_is_true(doc_get(dc->root, "d")->json));
    assert_true(json_is_null(doc_get(dc->root, "e")->json));
    assert_string_equal(json_string_value(doc_get(dc->root, "f")->json), "7");
    assert_string_equal(json_string_value(doc_get(dc->root, "g")->json), "");
    assert_true(json_real_value(doc_get(dc->root, "h")->json) == 1e20);
    doc_free(dc);

    expect_error("a: !!int 1.5\n", "g.yaml", "g.yaml:1:4: '1.5' is not a valid !!int value");
    expect_error("a: !!bool yes\n", "g.yaml", "g.yaml:1:4: 'yes' is not a valid !!bool value");
    expect_error("a: !!binary aGk=\n", "g.yaml",
                 "g.yaml:1:4: unsupported tag !!binary; only !!str, !!int, !!float, !!bool and "
                 "!!null are allowed");
    expect_error("a: !custom x\n", "g.yaml",
                 "g.yaml:1:4: unsupported tag !custom; only !!str, !!int, !!float, !!bool and "
                 "!!null are allowed");
    expect_error("a: !!set {x: 1}\n", "g.yaml", "g.yaml:1:4: unsupported tag !!set on a mapping");
}

static void test_null_is_not_absent(void **state)
{
    (void)state;
    doc *dc = load_ok("InputPath: null\nResultPath:\nOutputPath: ~\nResult: 0\nE: []\n", "n.yaml");
    const doc_node *root = dc->root;
    assert_int_equal(root->n, 5);
    for (int i = 0; i < 3; i++) {
        const char *k = (const char *[]){"InputPath", "ResultPath", "OutputPath"}[i];
        const doc_node *v = doc_get(root, k);
        assert_non_null(v);
        assert_non_null(v->json);
        assert_true(json_is_null(v->json));
        assert_string_equal(doc_type_name(v), "null");
    }
    assert_null(doc_get(root, "Parameters"));
    assert_null(doc_member_get(root, "Parameters"));
    assert_true(json_integer_value(doc_get(root, "Result")->json) == 0);
    assert_int_equal(doc_get(root, "E")->n, 0);
    assert_true(json_is_array(doc_get(root, "E")->json));
    /* lookups on non-objects answer NULL */
    assert_null(doc_get(doc_get(root, "Result"), "x"));
    assert_null(doc_get(doc_get(root, "E"), "x"));
    assert_null(doc_get(NULL, "x"));
    doc_free(dc);
}

static void test_type_names_and_json_tree(void **state)
{
    (void)state;
    doc *dc = load_ok("o: {a: 1}\nl: [x]\ns: str\ni: 3\nr: 1.5\nb: false\nz: null\n", "t.yaml");
    const char *want[][2] = {{"o", "object"}, {"l", "array"},   {"s", "string"}, {"i", "integer"},
                             {"r", "number"}, {"b", "boolean"}, {"z", "null"}};
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(dc->root->members[i].key, want[i][0]);
        assert_string_equal(doc_type_name(dc->root->members[i].value), want[i][1]);
        /* each member's json is the very value inside its parent's json */
        assert_ptr_equal(dc->root->members[i].value->json,
                         json_object_get(dc->root->json, want[i][0]));
    }
    /* object members keep document order in jansson too */
    char *s = json_dumps(dc->root->json, JSON_COMPACT);
    assert_string_equal(s, "{\"o\":{\"a\":1},\"l\":[\"x\"],\"s\":\"str\",\"i\":3,\"r\":1.5,"
                           "\"b\":false,\"z\":null}");
    free(s);
    doc_free(dc);
}

/* ---- duplicates and keys ---------------------------------------------------------------- */

static void test_yaml_duplicate_keys(void **state)
{
    (void)state;
    const char *text = "States:\n"
                       "  A:\n"
                       "    Type: Pass\n"
                       "    Type: Task\n"
                       "  A: {}\n";
    diag *d = load_err(text, "dup.yaml");
    assert_int_equal(diag_count(d), 2);
    assert_string_equal(diag_message(d, 0),
                        "dup.yaml:4:5: duplicate key \"Type\" (first defined at 3:5); remove one "
                        "of them");
    assert_string_equal(diag_message(d, 1),
                        "dup.yaml:5:3: duplicate key \"A\" (first defined at 2:3); remove one of "
                        "them");
    diag_free(d);
}

static void test_json_duplicate_keys(void **state)
{
    (void)state;
    expect_error("{\"a\": {\"x\": 1,\n  \"x\": 2}}", "dup.json",
                 "dup.json:2:3: duplicate key \"x\" (first defined at 1:8); remove one of them");
    /* the same key spelled with an escape is still the same key */
    expect_error("{\"a\": 1, \"\\u0061\": 2}", "dup.json",
                 "dup.json:1:10: duplicate key \"a\" (first defined at 1:2); remove one of them");
    /* same key in different objects is fine */
    doc *dc = load_ok("[{\"a\": 1}, {\"a\": 2}]", "ok.json");
    assert_int_equal(dc->root->n, 2);
    doc_free(dc);
}

static void test_non_scalar_keys_rejected(void **state)
{
    (void)state;
    expect_error("? [a, b]\n: 1\nc: 2\n", "k.yaml",
                 "k.yaml:1:3: a mapping key must be a scalar, not a list");
    expect_error("{? {a: 1} : 2}\n", "k.yaml",
                 "k.yaml:1:4: a mapping key must be a scalar, not a mapping");
}

/* ---- syntax errors ---------------------------------------------------------------------- */

static void test_yaml_syntax_error_positions(void **state)
{
    (void)state;
    expect_error("a: 1\nb:\n  c: d: e\n", "s.yaml",
                 "s.yaml:3:7: mapping values are not allowed in this context");
    expect_error("a:\n  b: 1\n c: 2\n", "s.yaml",
                 "s.yaml:3:2: did not find expected key (while parsing a block mapping started "
                 "at 1:1)");
    expect_error("a: [1, 2\n", "s.yaml",
                 "s.yaml:2:1: did not find expected ',' or ']' (while parsing a flow sequence "
                 "started at 1:4)");
    expect_error("a: \"open\n", "s.yaml",
                 "s.yaml:2:1: found unexpected end of stream (while scanning a quoted scalar "
                 "started at 1:4)");
}

static void test_tab_indentation(void **state)
{
    (void)state;
    expect_error("a:\n\tb: 1\n", "tab.yaml",
                 "tab.yaml:2:1: found character that cannot start any token; indent with spaces, "
                 "YAML does not allow tabs");
    expect_error("a:\n  b: 1\n\tc: 2\n", "tab.yaml",
                 "tab.yaml:3:1: found a tab character that violates indentation (while "
                 "scanning a plain scalar started at 2:6); indent with spaces, YAML does not "
                 "allow tabs");
}

static void test_json_is_strict(void **state)
{
    (void)state;
    expect_error("{\"a\": 1,}", "s.json", "s.json:1:9: string or '}' expected near '}'");
    expect_error("[1, 2,]", "s.json", "s.json:1:7: unexpected token near ']'");
    diag *d = load_err("{\n  // comment\n  \"a\": 1\n}", "s.json");
    assert_non_null(strstr(diag_message(d, 0), "s.json:2:"));
    diag_free(d);
    d = load_err("{'a': 1}", "s.json");
    assert_non_null(strstr(diag_message(d, 0), "s.json:1:"));
    diag_free(d);
    d = load_err("{\"a\": 1} {}", "s.json");
    assert_non_null(strstr(diag_message(d, 0), "end of file expected"));
    diag_free(d);
    /* YAML syntax is not JSON */
    d = load_err("a: 1\n", "s.json");
    diag_free(d);
    /* force_json applies JSON rules whatever the name */
    d = diag_new("x.yaml");
    assert_null(doc_load_string("a: 1\n", 5, "x.yaml", true, d));
    assert_int_equal(diag_count(d), 1);
    diag_free(d);
}

static void test_json_values_match_jansson(void **state)
{
    (void)state;
    const char *text = "{\"s\": \"caf\\u00e9 \\ud83d\\ude00 \\/ \\n\", \"n\": [0, -0, 1.0, 1e2, "
                       "-12345678901234567, 0.1], \"t\": true, \"z\": null, \"e\": {}, "
                       "\"k\\u00e9y\": \"v\"}";
    doc *dc = load_ok(text, "v.json");
    json_t *want = json_loads(text, 0, NULL);
    assert_non_null(want);
    assert_true(json_equal(dc->root->json, want));
    assert_string_equal(json_string_value(doc_get(dc->root, "s")->json),
                        "caf\xc3\xa9 \xf0\x9f\x98\x80 / \n");
    assert_non_null(doc_get(dc->root, "k\xc3\xa9y"));
    assert_true(json_is_integer(doc_get(dc->root, "n")->items[1]->json));
    assert_true(json_is_real(doc_get(dc->root, "n")->items[2]->json));
    json_decref(want);
    doc_free(dc);

    /* a top-level scalar is valid JSON (RFC 8259); compile checks the shape later */
    dc = load_ok(" 42 ", "v.json");
    assert_true(json_integer_value(dc->root->json) == 42);
    assert_pos(dc->root->pos, 1, 2);
    doc_free(dc);
}

/* ---- aliases and merge keys ---------------------------------------------------------------- */

static void test_aliases_share_values(void **state)
{
    (void)state;
    const char *text = "defaults: &retry\n"
                       "  MaxAttempts: 3\n"
                       "  Interval: 2\n"
                       "A:\n"
                       "  Retry: *retry\n"
                       "list: [&x 5, *x]\n";
    doc *dc = load_ok(text, "a.yaml");
    const doc_node *def = doc_get(dc->root, "defaults");
    const doc_node *use = path2(dc->root, "A", "Retry");
    assert_true(json_equal(def->json, use->json));
    assert_int_equal(use->n, 2);
    assert_pos(use->pos, 5, 10); /* where the alias is written */
    /* inside, positions point at the anchored definition */
    assert_pos(doc_member_get(use, "MaxAttempts")->key_pos, 2, 3);
    const doc_node *list = doc_get(dc->root, "list");
    assert_true(json_integer_value(list->items[1]->json) == 5);
    assert_pos(list->items[1]->pos, 6, 14);
    doc_free(dc);

    expect_error("a: *nowhere\n", "a.yaml",
                 "a.yaml:1:4: unknown alias *nowhere; define &nowhere before using it");
    /* an anchor is not defined inside itself: no cycles */
    expect_error("a: &s [1, *s]\n", "a.yaml", "a.yaml:1:11: unknown alias *s; define &s before using it");
}

static void test_alias_and_anchor_as_keys(void **state)
{
    (void)state;
    /* an anchored key can be reused as a key or as a value; a key is its text */
    doc *dc = load_ok("&k name: 1\nother:\n  *k : 2\nv: *k\n3: three\n", "ak.yaml");
    assert_true(json_integer_value(doc_get(path2(dc->root, "other", NULL), "name")->json) == 2);
    assert_pos(doc_member_get(doc_get(dc->root, "other"), "name")->key_pos, 3, 3);
    assert_string_equal(json_string_value(doc_get(dc->root, "v")->json), "name");
    assert_string_equal(json_string_value(doc_get(dc->root, "3")->json), "three");
    doc_free(dc);
    expect_error("l: &l [1]\nm:\n  *l : x\n", "ak.yaml",
                 "ak.yaml:3:3: alias *l is used as a mapping key but is not a string");
    expect_error("&k a: 1\n*k : 2\n", "ak.yaml",
                 "ak.yaml:2:1: duplicate key \"a\" (first defined at 1:1); remove one of them");
}

static void test_alias_bomb_rejected(void **state)
{
    (void)state;
    /* 10 levels of 10 aliases each stand for 10^10 values */
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i <= 10; i++)
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, "
                              "*a%d]\n",
                              i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1,
                              i - 1);
    diag *d = load_err(text, "bomb.yaml");
    assert_int_equal(diag_count(d), 1);
    assert_non_null(strstr(diag_message(d, 0), "more than 10000000 values once aliases are expanded"));
    diag_free(d);
}

static void test_merge_keys(void **state)
{
    (void)state;
    const char *text = "base: &base\n"
                       "  a: 1\n"
                       "  b: 2\n"
                       "more: &more\n"
                       "  b: 20\n"
                       "  c: 30\n"
                       "x:\n"
                       "  z: 0\n"
                       "  <<: [*base, *more]\n"
                       "  a: 100\n";
    doc *dc = load_ok(text, "m.yaml");
    const doc_node *x = doc_get(dc->root, "x");
    /* explicit keys win wherever written; earlier sources win; merged members take
     * the place of "<<" */
    assert_int_equal(x->n, 4);
    assert_string_equal(x->members[0].key, "z");
    assert_string_equal(x->members[1].key, "b");
    assert_string_equal(x->members[2].key, "c");
    assert_string_equal(x->members[3].key, "a");
    assert_true(json_integer_value(doc_get(x, "a")->json) == 100);
    assert_true(json_integer_value(doc_get(x, "b")->json) == 2);
    assert_true(json_integer_value(doc_get(x, "c")->json) == 30);
    assert_pos(doc_member_get(x, "b")->key_pos, 3, 3); /* where b was written */
    char *s = json_dumps(x->json, JSON_COMPACT);
    assert_string_equal(s, "{\"z\":0,\"b\":2,\"c\":30,\"a\":100}");
    free(s);
    assert_null(doc_get(x, "<<"));
    doc_free(dc);

    /* a quoted "<<" is an ordinary key */
    dc = load_ok("\"<<\": 1\n", "m.yaml");
    assert_true(json_integer_value(doc_get(dc->root, "<<")->json) == 1);
    doc_free(dc);

    expect_error("x:\n  <<: 5\n", "m.yaml",
                 "m.yaml:2:7: the value of a merge key '<<' must be a mapping or a list of "
                 "mappings, usually aliases such as *defaults");
}

/* ---- documents and encodings --------------------------------------------------------------- */

static void test_multiple_documents_rejected(void **state)
{
    (void)state;
    expect_error("a: 1\n---\nb: 2\n", "md.yaml",
                 "md.yaml:2:1: a second document starts here; a pipeline file holds one "
                 "document, remove this '---' and what follows");
    /* one explicit document is fine */
    doc *dc = load_ok("---\na: 1\n...\n", "md.yaml");
    assert_int_equal(dc->root->n, 1);
    doc_free(dc);
}

static void test_empty_file(void **state)
{
    (void)state;
    expect_error("", "e.yaml", "e.yaml: the file is empty");
    expect_error("# only a comment\n\n", "e.yaml", "e.yaml: the file is empty");
    expect_error(" \n\t\r\n", "e.json", "e.json: the file is empty");
    diag *d = diag_new("n.yaml");
    assert_null(doc_load_string(NULL, 0, "n.yaml", false, d));
    assert_string_equal(diag_message(d, 0), "n.yaml: the file is empty");
    diag_free(d);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    diag *d = load_err("a: ok\nb: caf\xe9!\n", "u.yaml");
    assert_string_equal(diag_message(d, 0),
                        "u.yaml:2:7: invalid trailing UTF-8 octet (byte 0x21); the file must be UTF-8");
    diag_free(d);
    d = load_err("a: ok\nb: caf\xc3", "u.yaml");
    assert_string_equal(diag_message(d, 0),
                        "u.yaml:2:7: incomplete UTF-8 octet sequence; the file must be UTF-8");
    diag_free(d);
    d = load_err("a: \xff\n", "u.yaml");
    assert_string_equal(diag_message(d, 0),
                        "u.yaml:1:4: invalid leading UTF-8 octet (byte 0xFF); the file must be UTF-8");
    diag_free(d);
    d = load_err_len("a: b\0c\n", 7, "u.yaml");
    assert_string_equal(diag_message(d, 0), "u.yaml:1:5: control characters are not allowed");
    diag_free(d);
    d = load_err_len("[1,\n 2\0]", 8, "u.json");
    assert_string_equal(diag_message(d, 0), "u.json:2:3: NUL byte in the file; JSON does not "
                                            "allow it (write \\u0000 inside a string)");
    diag_free(d);
    d = load_err("{\"a\": \"\xff\"}", "u.json");
    assert_non_null(strstr(diag_message(d, 0), "u.json:1:"));
    assert_non_null(strstr(diag_message(d, 0), "unable to decode byte 0xff"));
    diag_free(d);
}

static void test_nesting_limit(void **state)
{
    (void)state;
    size_t depth = 3000;
    char *text = malloc(depth * 2 + 1);
    assert_non_null(text);
    memset(text, '[', depth);
    memset(text + depth, ']', depth);
    text[depth * 2] = '\0';
    diag *d = load_err(text, "deep.yaml");
    assert_string_equal(diag_message(d, 0), "deep.yaml:1:2049: nesting is deeper than 2048 levels");
    diag_free(d);
    /* within the limit it loads */
    text[1000] = '\0';
    memset(text + 500, ']', 500);
    doc *dc = load_ok(text, "deep.yaml");
    assert_int_equal(dc->root->n, 1);
    doc_free(dc);
    free(text);
}

static void test_load_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_doc_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char yaml_path[64], json_path[64];
    snprintf(yaml_path, sizeof yaml_path, "%s/p.yaml", dir);
    snprintf(json_path, sizeof json_path, "%s/p.json", dir);
    FILE *f = fopen(yaml_path, "w");
    assert_non_null(f);
    fputs("StartAt: A\nStates:\n  A: {Type: Succeed}\n", f);
    fclose(f);
    f = fopen(json_path, "w");
    assert_non_null(f);
    fputs("{\"StartAt\": \"A\",\n \"States\": {\"A\": {\"Type\": \"Succeed\",}}}", f);
    fclose(f);

    diag *d = diag_new(yaml_path);
    doc *dc = doc_load_file(yaml_path, d);
    assert_non_null(dc);
    assert_int_equal(diag_count(d), 0);
    assert_string_equal(dc->file, yaml_path);
    assert_string_equal(json_string_value(path2(dc->root, "States", "A")->members[0].value->json),
                        "Succeed");
    assert_pos(path2(dc->root, "States", "A")->pos, 3, 6);
    doc_free(dc);
    diag_free(d);

    /* the .json name selects strict JSON: the trailing comma is an error */
    d = diag_new(json_path);
    assert_null(doc_load_file(json_path, d));
    assert_int_equal(diag_count(d), 1);
    char want[128];
    snprintf(want, sizeof want, "%s:2:37: string or '}' expected near '}'", json_path);
    assert_string_equal(diag_message(d, 0), want);
    diag_free(d);

    unlink(yaml_path);
    unlink(json_path);
    d = diag_new(yaml_path);
    assert_null(doc_load_file(yaml_path, d));
    snprintf(want, sizeof want, "%s: cannot open the file: No such file or directory", yaml_path);
    assert_string_equal(diag_message(d, 0), want);
    diag_free(d);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diag_sorts_stably_and_dedupes),
        cmocka_unit_test(test_yaml_positions),
        cmocka_unit_test(test_json_positions),
        cmocka_unit_test(test_core_schema_table),
        cmocka_unit_test(test_quoted_and_block_scalars_are_strings),
        cmocka_unit_test(test_integers_keep_64_bits),
        cmocka_unit_test(test_integer_out_of_range_is_error),
        cmocka_unit_test(test_inf_nan_rejected),
        cmocka_unit_test(test_explicit_tags),
        cmocka_unit_test(test_null_is_not_absent),
        cmocka_unit_test(test_type_names_and_json_tree),
        cmocka_unit_test(test_yaml_duplicate_keys),
        cmocka_unit_test(test_json_duplicate_keys),
        cmocka_unit_test(test_non_scalar_keys_rejected),
        cmocka_unit_test(test_yaml_syntax_error_positions),
        cmocka_unit_test(test_tab_indentation),
        cmocka_unit_test(test_json_is_strict),
        cmocka_unit_test(test_json_values_match_jansson),
        cmocka_unit_test(test_aliases_share_values),
        cmocka_unit_test(test_alias_and_anchor_as_keys),
        cmocka_unit_test(test_alias_bomb_rejected),
        cmocka_unit_test(test_merge_keys),
        cmocka_unit_test(test_multiple_documents_rejected),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
