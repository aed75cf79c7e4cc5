/* Tests of checkpoint batches (engine/checkpoint.c): the records the scheduler queues
 * come back from ckpt_load as written, whatever the names, values and batching; a
 * damaged batch is refused; a later "at" of a state makes the earlier children stale.
 * Each test works in its own fresh temp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "tmp_dir.h"

static char run[256];

static int setup(void **state)
{
    (void)state;
    return tmp_dir_make(run, sizeof run, "test_checkpoint") ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tmp_dir_remove(run);
    return 0;
}

static int batch_files(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/checkpoints", run);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static ckpt *open_ok(void)
{
    char msg[512];
    ckpt *c = ckpt_open(run, msg, sizeof msg);
    if (!c)
        fail_msg("ckpt_open: %s", msg);
    return c;
}

static void load_ok(ckpt_replay *r)
{
    char msg[512];
    if (!ckpt_load(run, r, msg, sizeof msg))
        fail_msg("ckpt_load: %s", msg);
}

/* Names and values that need escaping come back unchanged: the "done" path is made of
 * the parent's path, the state's name and the index, written without a JSON object. */
static void test_records_round_trip(void **state)
{
    (void)state;
    ckpt *c = open_ok();
    json_t *top = json_string("");
    const char *odd = "Fan \"out\"\\ ü\x01/[x]";
    json_t *in = json_pack("{s:[i,s,f,n,b]}", "items", 1, "two\n", 0.1, 1);
    ckpt_state(c, CKPT_AT, top, odd, in);
    char parent_s[256];
    snprintf(parent_s, sizeof parent_s, "/%s[7]", odd);
    json_t *parent = json_string(parent_s);
    json_t *out0 = json_pack("{s:i,s:s}", "v", -9223372036854775807LL - 1, "s", "é\t\"");
    json_t *out1 = json_real(2.0);
    ckpt_done(c, top, odd, 0, out0, false);
    ckpt_done(c, parent, "Inner", 123456789012LL, out1, false);
    ckpt_done(c, top, odd, 1, out1, true); /* caught: not replayed */
    ckpt_state(c, CKPT_FAIL, parent, "Load", out0);
    char msg[512];
    assert_true(ckpt_close(c, msg, sizeof msg));

    ckpt_replay r;
    load_ok(&r);
    char p0[256], p1[300];
    snprintf(p0, sizeof p0, "/%s[0]", odd);
    snprintf(p1, sizeof p1, "%s/Inner[123456789012]", parent_s);
    assert_int_equal(json_object_size(r.done), 2);
    assert_true(json_equal(json_object_get(r.done, p0), out0));
    json_t *back1 = json_object_get(r.done, p1);
    assert_true(json_is_real(back1) && json_real_value(back1) == 2.0);
    assert_int_equal(json_object_size(r.resume), 2);
    json_t *at = json_object_get(r.resume, "");
    assert_string_equal(json_string_value(json_object_get(at, "state")), odd);
    assert_true(json_equal(json_object_get(at, "input"), in));
    json_t *fail = json_object_get(r.resume, parent_s);
    assert_string_equal(json_string_value(json_object_get(fail, "state")), "Load");
    assert_true(json_equal(json_object_get(fail, "input"), out0));
    ckpt_replay_free(&r);
    json_decref(top);
    json_decref(parent);
    json_decref(in);
    json_decref(out0);
    json_decref(out1);
}

/* Records queued over a while land in several batch files (one at least every 100 ms),
 * and every one of them is read back, in order. */
static void test_batches_over_time(void **state)
{
    (void)state;
    ckpt *c = open_ok();
    json_t *top = json_string("");
    json_t *in = json_object();
    ckpt_state(c, CKPT_AT, top, "Fan", in);
    for (int i = 0; i < 300; i++) {
        json_t *v = json_integer(i);
        ckpt_done(c, top, "Fan", i, v, false);
        json_decref(v);
        if (i % 100 == 99) {
            ckpt_flush(c); /* what the scheduler does before it waits */
            struct timespec ts = {0, 150 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* flushed and 150 ms old: every record is in a batch file before the end */
    assert_true(batch_files() >= 3);
    ckpt_replay r;
    load_ok(&r);
    assert_int_equal(json_object_size(r.done), 300);
    ckpt_replay_free(&r);
    char msg[512];
    assert_true(ckpt_close(c, msg, sizeof msg));
    load_ok(&r);
    assert_int_equal(json_object_size(r.done), 300);
    for (int i = 0; i < 300; i++) {
        char p[32];
        snprintf(p, sizeof p, "/Fan[%d]", i);
        assert_int_equal(json_integer_value(json_object_get(r.done, p)), i);
    }
    ckpt_replay_free(&r);
    /* a resumed attempt adds batches after the earlier ones */
    int before = batch_files();
    c = open_ok();
    json_t *v = json_integer(-1);
    ckpt_done(c, top, "Fan", 0, v, false);
    json_decref(v);
    assert_true(ckpt_close(c, msg, sizeof msg));
    assert_int_equal(batch_files(), before + 1);
    load_ok(&r);
    assert_int_equal(json_integer_value(json_object_get(r.done, "/Fan[0]")), -1);
    ckpt_replay_free(&r);
    json_decref(top);
    json_decref(in);
}

/* The Map entered again (a loop): the children recorded before are stale. */
static void test_reentered_state_makes_children_stale(void **state)
{
    (void)state;
    ckpt *c = open_ok();
    json_t *top = json_string(""), *in = json_object(), *v = json_true();
    ckpt_state(c, CKPT_AT, top, "Fan", in);
    ckpt_done(c, top, "Fan", 0, v, false);
    ckpt_done(c, top, "Fan", 1, v, false);
    ckpt_state(c, CKPT_AT, top, "Fan", in);
    ckpt_done(c, top, "Fan", 1, v, false);
    char msg[512];
    assert_true(ckpt_close(c, msg, sizeof msg));
    ckpt_replay r;
    load_ok(&r);
    assert_int_equal(json_object_size(r.done), 1);
    assert_non_null(json_object_get(r.done, "/Fan[1]"));
    ckpt_replay_free(&r);
    json_decref(top);
    json_decref(in);
    json_decref(v);
}

/* The end of a run that succeeded: the records not yet in a batch are dropped (nothing
 * reads the checkpoints of a run that cannot be resumed), those written before stay.
 * After a failure (ckpt_end with write_rest, or ckpt_close alone) they are written. */
static void test_end_drops_or_writes_the_rest(void **state)
{
    (void)state;
    json_t *top = json_string(""), *in = json_object();
    ckpt *c = open_ok();
    ckpt_state(c, CKPT_AT, top, "Fan", in);
    ckpt_done(c, top, "Fan", 0, in, false);
    ckpt_end(c, false);
    char msg[512];
    assert_true(ckpt_close(c, msg, sizeof msg));
    assert_int_equal(batch_files(), 0);

    c = open_ok();
    ckpt_state(c, CKPT_AT, top, "Fan", in);
    ckpt_done(c, top, "Fan", 0, in, false);
    ckpt_flush(c);
    /* due 100 ms after the open: written as a batch of its own (waited for up to 5 s,
     * for loaded machines and sanitizers) */
    for (int i = 0; i < 500 && batch_files() == 0; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(batch_files(), 1);
    ckpt_done(c, top, "Fan", 1, in, false);
    ckpt_end(c, false);
    ckpt_end(c, true); /* only the first call counts */
    assert_true(ckpt_close(c, msg, sizeof msg));
    assert_int_equal(batch_files(), 1);
    ckpt_replay r;
    load_ok(&r);
    assert_int_equal(json_object_size(r.done), 1);
    assert_non_null(json_object_get(r.done, "/Fan[0]"));
    ckpt_replay_free(&r);

    c = open_ok();
    ckpt_done(c, top, "Fan", 1, in, false);
    ckpt_end(c, true);
    assert_true(ckpt_close(c, msg, sizeof msg));
    assert_int_equal(batch_files(), 2);
    load_ok(&r);
    assert_int_equal(json_object_size(r.done), 2);
    ckpt_replay_free(&r);
    json_decref(top);
    json_decref(in);
}

/* A scheduler that never waits (no ckpt_flush between records): once the writer runs,
 * the scheduler's rounds (ckpt_tick) still get each record into a batch file, about
 * 100 ms later, rather than leaving it in the block being filled. */
static void test_tick_writes_the_records_of_a_busy_scheduler(void **state)
{
    (void)state;
    ckpt *c = open_ok();
    json_t *top = json_string(""), *in = json_object();
    ckpt_state(c, CKPT_AT, top, "Fan", in);
    ckpt_flush(c); /* the scheduler waited once: the writer runs */
    for (int i = 0; i < 3; i++) {
        json_t *v = json_integer(i);
        ckpt_done(c, top, "Fan", i, v, false);
        json_decref(v);
        /* rounds of work every 5 ms until the record is in a batch (at most 5 s) */
        bool found = false;
        for (int k = 0; k < 1000 && !found; k++) {
            struct timespec ts = {0, 5 * 1000000L};
            nanosleep(&ts, NULL);
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ckpt_tick(c, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
            ckpt_replay r;
            load_ok(&r);
            found = json_object_size(r.done) == (size_t)i + 1;
            ckpt_replay_free(&r);
        }
        assert_true(found);
    }
    char msg[512];
    assert_true(ckpt_close(c, msg, sizeof msg));
    json_decref(top);
    json_decref(in);
}

/* Once a batch is written, the scheduler lets its values go when it is about to wait
 * (ckpt_flush), not only when more records come. */
static void test_written_values_are_let_go_before_idling(void **state)
{
    (void)state;
    ckpt *c = open_ok();
    json_t *top = json_string(""), *v = json_pack("{s:i}", "v", 1);
    ckpt_done(c, top, "Fan", 0, v, false);
    assert_int_equal(v->refcount, 2); /* the record's */
    ckpt_flush(c);
    for (int i = 0; i < 500 && v->refcount > 1; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        ckpt_flush(c); /* the scheduler, idle again */
    }
    assert_int_equal(v->refcount, 1);
    assert_int_equal(batch_files(), 1);
    char msg[512];
    assert_true(ckpt_close(c, msg, sizeof msg));
    json_decref(top);
    json_decref(v);
}

/* A batch file whose line is not a record is damage: resuming past it is refused. */
static void test_damaged_batch_is_refused(void **state)
{
    (void)state;
    ckpt *c = open_ok();
    json_t *top = json_string(""), *in = json_object();
    ckpt_state(c, CKPT_AT, top, "Fan", in);
    char msg[512];
    assert_true(ckpt_close(c, msg, sizeof msg));
    char p[300];
    snprintf(p, sizeof p, "%s/checkpoints/00000001.jsonl", run);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("{\"k\":\"done\",\"path\":\"/Fan[0]\",\"out", f);
    fclose(f);
    ckpt_replay r;
    assert_false(ckpt_load(run, &r, msg, sizeof msg));
    assert_non_null(strstr(msg, "00000001.jsonl:1: not a checkpoint record"));
    json_decref(top);
    json_decref(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_records_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_over_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentered_state_makes_children_stale, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_end_drops_or_writes_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tick_writes_the_records_of_a_busy_scheduler, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_written_values_are_let_go_before_idling, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_damaged_batch_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
