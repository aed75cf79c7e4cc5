/* Unit tests for engine/timestamp.c: RFC 3339 parsing (valid and invalid forms, leap
 * years, offsets, fractions, leap seconds), instant comparison and formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "timestamp.h"

static ts_instant parse_ok(const char *s)
{
    ts_instant t = {-1, -1};
    if (!ts_parse(s, &t))
        fail_msg("expected '%s' to parse", s);
    return t;
}

static void parse_bad(const char *s)
{
    ts_instant t = {12345, 678};
    if (ts_parse(s, &t))
        fail_msg("expected '%s' to be rejected", s);
}

static void test_epoch(void **state)
{
    (void)state;
    ts_instant t = parse_ok("1970-01-01T00:00:00Z");
    assert_int_equal(t.sec, 0);
    assert_int_equal(t.nsec, 0);
}

static void test_known_instants(void **state)
{
    (void)state;
    /* Values checked against `date -u -d ... +%s`. */
    assert_int_equal(parse_ok("2026-11-22T03:00:00Z").sec, 1795316400LL);
    assert_int_equal(parse_ok("2000-02-29T12:34:56Z").sec, 951827696LL);
    assert_int_equal(parse_ok("2038-01-19T03:14:08Z").sec, 2147483648LL);
    assert_int_equal(parse_ok("9999-12-31T23:59:59Z").sec, 253402300799LL);
}

static void test_before_epoch(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1969-12-31T23:59:59Z").sec, -1);
    assert_int_equal(parse_ok("1900-01-01T00:00:00Z").sec, -2208988800LL);
    assert_int_equal(parse_ok("0000-01-01T00:00:00Z").sec, -62167219200LL);
}

static void test_lower_case_t_and_z(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("2026-11-22t03:00:00z").sec, 1795316400LL);
}

static void test_offsets_are_instants(void **state)
{
    (void)state;
    ts_instant z = parse_ok("2026-11-22T03:00:00Z");
    ts_instant plus = parse_ok("2026-11-22T05:30:00+02:30");
    ts_instant minus = parse_ok("2026-11-21T22:00:00-05:00");
    ts_instant zero = parse_ok("2026-11-22T03:00:00-00:00");
    assert_int_equal(ts_compare(z, plus), 0);
    assert_int_equal(ts_compare(z, minus), 0);
    assert_int_equal(ts_compare(z, zero), 0);
    assert_int_equal(plus.sec, z.sec);
    /* The extreme offsets cross the date line. */
    assert_int_equal(parse_ok("2026-01-01T23:59:00+23:59").sec,
                     parse_ok("2026-01-01T00:00:00Z").sec);
    assert_int_equal(parse_ok("2025-12-31T00:01:00-23:59").sec,
                     parse_ok("2026-01-01T00:00:00Z").sec);
}

static void test_offset_range(void **state)
{
    (void)state;
    parse_bad("2026-11-22T03:00:00+24:00");
    parse_bad("2026-11-22T03:00:00+01:60");
    parse_bad("2026-11-22T03:00:00+0100");
    parse_bad("2026-11-22T03:00:00+1:00");
    parse_bad("2026-11-22T03:00:00+01");
}

static void test_leap_years(void **state)
{
    (void)state;
    parse_ok("2024-02-29T00:00:00Z");
    parse_ok("2000-02-29T00:00:00Z");
    parse_ok("2400-02-29T00:00:00Z");
    parse_bad("2023-02-29T00:00:00Z");
    parse_bad("1900-02-29T00:00:00Z");
    parse_bad("2100-02-29T00:00:00Z");
    parse_bad("2024-02-30T00:00:00Z");
    /* Feb 29 to Mar 1 is exactly one day. */
    assert_int_equal(parse_ok("2024-03-01T00:00:00Z").sec - parse_ok("2024-02-29T00:00:00Z").sec,
                     86400);
}

static void test_field_ranges(void **state)
{
    (void)state;
    parse_bad("2026-00-10T00:00:00Z");
    parse_bad("2026-13-10T00:00:00Z");
    parse_bad("2026-04-31T00:00:00Z");
    parse_bad("2026-04-00T00:00:00Z");
    parse_bad("2026-04-10T24:00:00Z");
    parse_bad("2026-04-10T23:60:00Z");
    parse_bad("2026-04-10T23:59:61Z");
    parse_ok("2026-04-30T23:59:59Z");
    parse_ok("2026-12-31T00:00:00Z");
}

static void test_malformed(void **state)
{
    (void)state;
    parse_bad("");
    parse_bad("2026-11-22");
    parse_bad("2026-11-22T03:00:00");       /* offset is mandatory */
    parse_bad("2026-11-22 03:00:00Z");      /* space separator is not RFC 3339 here */
    parse_bad("2026-11-22T03:00Z");         /* seconds are mandatory */
    parse_bad("26-11-22T03:00:00Z");
    parse_bad("2026-1-22T03:00:00Z");
    parse_bad("2026/11/22T03:00:00Z");
    parse_bad("2026-11-22T03:00:00ZZ");     /* trailing garbage */
    parse_bad("2026-11-22T03:00:00Z ");
    parse_bad(" 2026-11-22T03:00:00Z");
    parse_bad("2026-11-22T03:00:00.Z");     /* empty fraction */
    parse_bad("2026-11-22T03:00:00,5Z");
    parse_bad("+2026-11-22T03:00:00Z");
    parse_bad("2026-11-22T03:00:0aZ");
    assert_false(ts_parse(NULL, NULL));
}

static void test_fractions(void **state)
{
    (void)state;
    ts_instant t = parse_ok("2026-11-22T03:00:00.5Z");
    assert_int_equal(t.sec, 1795316400LL);
    assert_int_equal(t.nsec, 500000000);
    assert_int_equal(parse_ok("2026-11-22T03:00:00.123Z").nsec, 123000000);
    assert_int_equal(parse_ok("2026-11-22T03:00:00.000000001Z").nsec, 1);
    assert_int_equal(parse_ok("2026-11-22T03:00:00.999999999Z").nsec, 999999999);
    /* More than 9 digits: truncated, never rounded up into the next second. */
    t = parse_ok("2026-11-22T03:00:00.9999999999999Z");
    assert_int_equal(t.sec, 1795316400LL);
    assert_int_equal(t.nsec, 999999999);
    assert_int_equal(parse_ok("2026-11-22T03:00:00.1234567891+01:00").nsec, 123456789);
}

static void test_fraction_compare(void **state)
{
    (void)state;
    ts_instant a = parse_ok("2026-11-22T03:00:00.1Z");
    ts_instant b = parse_ok("2026-11-22T03:00:00.100000000Z");
    ts_instant c = parse_ok("2026-11-22T03:00:00.100000001Z");
    assert_int_equal(ts_compare(a, b), 0);
    assert_int_equal(ts_compare(a, c), -1);
    assert_int_equal(ts_compare(c, a), 1);
}

static void test_leap_second(void **state)
{
    (void)state;
    ts_instant leap = parse_ok("2016-12-31T23:59:60Z");
    ts_instant next = parse_ok("2017-01-01T00:00:00Z");
    assert_int_equal(ts_compare(leap, next), 0);
    ts_instant leap_frac = parse_ok("2016-12-31T23:59:60.5Z");
    assert_int_equal(leap_frac.sec, next.sec);
    assert_int_equal(leap_frac.nsec, 500000000);
}

static void test_compare_order(void **state)
{
    (void)state;
    ts_instant early = parse_ok("2026-11-22T03:00:00+01:00"); /* 02:00Z */
    ts_instant late = parse_ok("2026-11-22T02:30:00Z");
    assert_int_equal(ts_compare(early, late), -1);
    assert_int_equal(ts_compare(late, early), 1);
    ts_instant neg1 = {-1, 999999999};
    ts_instant zero = {0, 0};
    assert_int_equal(ts_compare(neg1, zero), -1);
}

static void test_parse_null_out(void **state)
{
    (void)state;
    assert_true(ts_parse("2026-11-22T03:00:00Z", NULL));
    assert_false(ts_parse("2026-11-22T03:00:00", NULL));
}

static void test_format(void **state)
{
    (void)state;
    char buf[40];
    ts_format(parse_ok("2026-11-22T05:30:00.123456+02:30"), buf, sizeof buf);
    assert_string_equal(buf, "2026-11-22T03:00:00.123Z");
    ts_format((ts_instant){0, 0}, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    ts_format((ts_instant){-1, 999000000}, buf, sizeof buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    ts_format(parse_ok("2024-02-29T23:59:59.9999Z"), buf, sizeof buf);
    assert_string_equal(buf, "2024-02-29T23:59:59.999Z"); /* truncated, not rounded */
}

static void test_format_round_trip(void **state)
{
    (void)state;
    /* Every day boundary across 800 years (covers 100- and 400-year rules) plus an odd
     * time of day: format, parse back, same instant to the millisecond. */
    char buf[40];
    int64_t start = parse_ok("1700-01-01T00:00:00Z").sec;
    int64_t end = parse_ok("2500-01-01T00:00:00Z").sec;
    for (int64_t s = start; s < end; s += 86400 * 7 + 3723) {
        ts_instant t = {s, 456000000};
        ts_format(t, buf, sizeof buf);
        ts_instant back;
        if (!ts_parse(buf, &back))
            fail_msg("formatted '%s' does not parse", buf);
        assert_int_equal(ts_compare(t, back), 0);
    }
}

static void test_format_small_buffer(void **state)
{
    (void)state;
    char buf[11];
    memset(buf, 'x', sizeof buf);
    ts_format((ts_instant){0, 0}, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01");
}

static void test_now(void **state)
{
    (void)state;
    ts_instant now = ts_now();
    time_t t = time(NULL);
    assert_true(now.sec >= (int64_t)t - 2 && now.sec <= (int64_t)t + 2);
    assert_true(now.nsec >= 0 && now.nsec < 1000000000);
    /* The clock and the parser agree about the epoch. */
    char buf[40];
    ts_format(now, buf, sizeof buf);
    ts_instant back;
    assert_true(ts_parse(buf, &back));
    assert_int_equal(back.sec, now.sec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epoch),
        cmocka_unit_test(test_known_instants),
        cmocka_unit_test(test_before_epoch),
        cmocka_unit_test(test_lower_case_t_and_z),
        cmocka_unit_test(test_offsets_are_instants),
        cmocka_unit_test(test_offset_range),
        cmocka_unit_test(test_leap_years),
        cmocka_unit_test(test_field_ranges),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_fractions),
        cmocka_unit_test(test_fraction_compare),
        cmocka_unit_test(test_leap_second),
        cmocka_unit_test(test_compare_order),
        cmocka_unit_test(test_parse_null_out),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_format_small_buffer),
        cmocka_unit_test(test_now),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
