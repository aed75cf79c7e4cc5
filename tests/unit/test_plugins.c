/* Tests of the connector registry and plugin loader against real shared objects built
 * from tests/plugins/testplugin.c: a good plugin and broken variants (wrong ABI, short
 * struct, missing entry symbol, an action without run, a duplicate name), settings and
 * Parameters checks reported at FILE:LINE:COL, discovery through ETLRUN_PLUGIN_PATH,
 * and a pipeline running a plugin action with max_connections enforced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "machine.h"
#include "plugins.h"
#include "scheduler.h"

static char dir[1024];

static const char *so(const char *variant)
{
    static char buf[8][1200];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/tp_%s.so", dir, variant);
    return b;
}

/* Load variant into a fresh registry; returns the diagnostics joined by '\n'. */
static char *load_msgs(registry *r, const char *variant, bool *out_ok)
{
    diag *d = diag_new("test");
    *out_ok = registry_load(r, so(variant), d, (doc_pos){3, 5});
    size_t cap = 4096, len = 0;
    char *all = calloc(1, cap);
    for (size_t i = 0; i < diag_count(d); i++)
        len += (size_t)snprintf(all + len, cap - len, "%s\n", diag_message(d, i));
    diag_free(d);
    return all;
}

static void test_good_plugin_loads(void **state)
{
    (void)state;
    registry *r = registry_new();
    bool ok;
    char *msgs = load_msgs(r, "good", &ok);
    assert_true(ok);
    assert_string_equal(msgs, "");
    const etl_connector *c = registry_find(r, "tp", NULL, (doc_pos){0, 0});
    assert_non_null(c);
    assert_string_equal(c->version, "1.0-test");
    assert_non_null(registry_action(c, "echo"));
    assert_null(registry_action(c, "nope"));
    free(msgs);
    registry_free(r);
}

static void expect_refused(const char *variant, const char *const *needles)
{
    registry *r = registry_new();
    bool ok;
    char *msgs = load_msgs(r, variant, &ok);
    assert_false(ok);
    for (; *needles; needles++) {
        if (!strstr(msgs, *needles))
            fail_msg("'%s' not in: %s", *needles, msgs);
    }
    /* the message names the plugin file and the place that asked for it */
    assert_non_null(strstr(msgs, so(variant)));
    assert_non_null(strstr(msgs, "test:3:5:"));
    assert_null(registry_find(r, "tp", NULL, (doc_pos){0, 0}));
    free(msgs);
    registry_free(r);
}

static void test_abi_mismatch_refused(void **state)
{
    (void)state;
    expect_refused("abi", (const char *const[]){"ABI version 99", "speaks version 1",
                                                "rebuild the plugin", NULL});
}

static void test_struct_size_refused(void **state)
{
    (void)state;
    expect_refused("size", (const char *const[]){"struct_size 8 is smaller", NULL});
}

static void test_missing_symbol_refused(void **state)
{
    (void)state;
    expect_refused("noentry", (const char *const[]){"does not export etl_connector_entry()",
                                                    NULL});
}

static void test_null_run_refused(void **state)
{
    (void)state;
    expect_refused("nullrun", (const char *const[]){"action 'broken' has no run function",
                                                    NULL});
}

static void test_missing_file_refused(void **state)
{
    (void)state;
    expect_refused("doesnotexist", (const char *const[]){"cannot load it", NULL});
}

static void test_duplicate_name_refused(void **state)
{
    (void)state;
    registry *r = registry_new();
    bool ok;
    char *m1 = load_msgs(r, "good", &ok);
    assert_true(ok);
    char *m2 = load_msgs(r, "twin", &ok);
    assert_false(ok);
    assert_non_null(strstr(m2, "a connector named 'tp' is already loaded from"));
    /* loading the same file twice is not a conflict */
    char *m3 = load_msgs(r, "good", &ok);
    assert_true(ok);
    free(m1);
    free(m2);
    free(m3);
    registry_free(r);
}

static void test_builtin_name_clash_refused(void **state)
{
    (void)state;
    registry *r = registry_new();
    bool ok;
    char *m = load_msgs(r, "clash", &ok); /* a plugin that calls itself "file" */
    assert_false(ok);
    assert_non_null(strstr(m, "a connector named 'file' is already built in"));
    free(m);
    registry_free(r);
}

static void test_plugin_path_discovery(void **state)
{
    (void)state;
    /* tp.so is found as NAME.so or etlrun-NAME.so in $ETLRUN_PLUGIN_PATH */
    char link_dir[] = "/tmp/etl-plugin-path-XXXXXX";
    assert_non_null(mkdtemp(link_dir));
    char target[1200];
    snprintf(target, sizeof target, "%s/etlrun-tp.so", link_dir);
    assert_int_equal(symlink(so("good"), target), 0);
    char env[2400];
    snprintf(env, sizeof env, "/nonexistent:%s", link_dir);
    setenv("ETLRUN_PLUGIN_PATH", env, 1);
    registry *r = registry_new();
    diag *d = diag_new("test");
    const etl_connector *c = registry_find(r, "tp", d, (doc_pos){1, 1});
    assert_non_null(c);
    assert_int_equal(diag_count(d), 0);
    assert_null(registry_find(r, "absent", d, (doc_pos){1, 1}));
    diag_free(d);
    registry_free(r);
    unsetenv("ETLRUN_PLUGIN_PATH");
    unlink(target);
    rmdir(link_dir);
}

static char *write_pipeline(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/etl-plugin-test-XXXXXX.yaml");
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static char *compile_msgs(const char *yaml, pipeline **out)
{
    char *file = write_pipeline(yaml);
    diag *d = diag_new(file);
    pipeline *pl = pipeline_load(file, d);
    size_t cap = 8192, len = 0;
    char *all = calloc(1, cap);
    for (size_t i = 0; i < diag_count(d); i++) {
        const char *m = diag_message(d, i);
        const char *colon = strchr(m, ':'); /* drop the temp file name */
        len += (size_t)snprintf(all + len, cap - len, "%s\n", colon ? colon + 1 : m);
    }
    diag_free(d);
    unlink(file);
    if (out)
        *out = pl;
    else
        pipeline_free(pl);
    return all;
}

static void test_settings_and_parameters_checked_at_positions(void **state)
{
    (void)state;
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "plugins: [%s]\n"
             "connections:\n"
             "  src:\n"
             "    type: tp\n"
             "    urll: x\n"
             "StartAt: A\n"
             "States:\n"
             "  A:\n"
             "    Type: Task\n"
             "    Resource: tp.echo\n"
             "    Parameters:\n"
             "      forbidden: 1\n"
             "    Next: B\n"
             "  B:\n"
             "    Type: Task\n"
             "    Resource: tp.sleep\n"
             "    End: true\n",
             so("good"));
    char *msgs = compile_msgs(yaml, NULL);
    /* the settings check reports at the connection object */
    assert_non_null(strstr(msgs, "4:5: connection 'src': needs 'url'"));
    /* the action check reports at the offending parameter */
    assert_non_null(strstr(msgs, "12:18: Parameters of state 'A': 'forbidden': is not allowed"));
    /* an action that needs a connection without one */
    assert_non_null(strstr(msgs, "needs Parameters.connection naming a 'tp' connection"));
    free(msgs);
}

static void test_unknown_connector_and_action(void **state)
{
    (void)state;
    char *msgs = compile_msgs("StartAt: A\n"
                              "States:\n"
                              "  A: {Type: Task, Resource: nosuch.thing, Next: B}\n"
                              "  B: {Type: Task, Resource: extract, End: true}\n",
                              NULL);
    if (!strstr(msgs, "3:29: unknown Resource 'nosuch.thing': no connector named 'nosuch'"))
        fail_msg("got: %s", msgs);
    assert_non_null(strstr(msgs, "Resource 'extract' needs Parameters.connection"));
    free(msgs);
}

static void test_pipeline_runs_plugin_action_within_max_connections(void **state)
{
    (void)state;
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "plugins: [%s]\n"
             "connections:\n"
             "  src: {type: tp, url: 'x://y', max_connections: 2}\n"
             "StartAt: Fan\n"
             "States:\n"
             "  Fan:\n"
             "    Type: Map\n"
             "    ItemsPath: $.items\n"
             "    ItemProcessor:\n"
             "      StartAt: Sleep\n"
             "      States:\n"
             "        Sleep:\n"
             "          Type: Task\n"
             "          Resource: tp.sleep\n"
             "          Parameters: {connection: src, ms: 60, key.$: \"States.Format('k{}', $)\"}\n"
             "          End: true\n"
             "    ResultPath: $.slept\n"
             "    Next: Peak\n"
             "  Peak:\n"
             "    Type: Task\n"
             "    Resource: tp.peak\n"
             "    ResultPath: $.peak\n"
             "    Next: Echo\n"
             "  Echo:\n"
             "    Type: Task\n"
             "    Resource: tp.echo\n"
             "    Parameters: {a.$: $.peak, 'n': 1}\n"
             "    End: true\n",
             so("good"));
    pipeline *pl = NULL;
    char *msgs = compile_msgs(yaml, &pl);
    assert_string_equal(msgs, "");
    assert_non_null(pl);
    json_t *input = json_pack("{s:[i,i,i,i,i,i,i,i,i,i]}", "items", 0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    sched_options opt = {.jobs = 8, .wake_fd = -1};
    sched_outcome out;
    if (sched_run(pl, input, &opt, &out) != ETL_OK)
        fail_msg("run failed: %s: %s", out.err.name, out.err.cause);
    /* ten tasks with 8 workers: the connection limit of 2 held, and the tasks queued */
    json_t *a = json_object_get(out.output, "a");
    assert_true(json_is_integer(a));
    assert_true(json_integer_value(a) >= 1 && json_integer_value(a) <= 2);
    assert_int_equal(json_integer_value(json_object_get(out.output, "n")), 1);
    json_decref(out.output);
    json_decref(input);
    pipeline_free(pl);
    free(msgs);
}

static void test_plugin_check_reports(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(plugin_check(so("good"), f), 0);
    assert_true(plugin_check(so("abi"), f) > 0);
    assert_true(plugin_check(so("nullrun"), f) > 0);
    fclose(f);
    assert_non_null(strstr(buf, "connector 'tp' version 1.0-test, ABI 1"));
    assert_non_null(strstr(buf, "action tp.echo (checks its Parameters)"));
    assert_non_null(strstr(buf, "check_settings on empty settings reported 1 problem"));
    char expect[1400];
    snprintf(expect, sizeof expect, "%s: error: built for connector ABI version 99", so("abi"));
    assert_non_null(strstr(buf, expect));
    snprintf(expect, sizeof expect, "%s: error: action 'broken' has no run function",
             so("nullrun"));
    assert_non_null(strstr(buf, expect));
    free(buf);
}

int main(void)
{
    const char *d = getenv("ETL_TEST_PLUGIN_DIR");
    if (!d || !*d) {
        fprintf(stderr, "ETL_TEST_PLUGIN_DIR is not set (run through ctest)\n");
        return 1;
    }
    snprintf(dir, sizeof dir, "%s", d);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_plugin_loads),
        cmocka_unit_test(test_abi_mismatch_refused),
        cmocka_unit_test(test_struct_size_refused),
        cmocka_unit_test(test_missing_symbol_refused),
        cmocka_unit_test(test_null_run_refused),
        cmocka_unit_test(test_missing_file_refused),
        cmocka_unit_test(test_duplicate_name_refused),
        cmocka_unit_test(test_builtin_name_clash_refused),
        cmocka_unit_test(test_plugin_path_discovery),
        cmocka_unit_test(test_settings_and_parameters_checked_at_positions),
        cmocka_unit_test(test_unknown_connector_and_action),
        cmocka_unit_test(test_pipeline_runs_plugin_action_within_max_connections),
        cmocka_unit_test(test_plugin_check_reports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
