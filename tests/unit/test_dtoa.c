/* Unit tests for connectors/mysql/dtoa.c (shortest round-trip decimals, Schubfach) and
 * the text myc_fmt_double/myc_fmt_float (types.c) make of them: every text reads back as
 * the value, and against the snprintf search they replaced (kept below as the
 * reference) it is never longer and almost always the same. Also proves the exponent
 * formulas and the exact path of the scaled products. dtoa.c is included so that its
 * statics can be tested; named test_dtoa, not test_mysql_*, so no database is needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../connectors/mysql/dtoa.c"

/* Random values: 10 million doubles (the reference takes ~1.5 us a value, 2 s a million
 * on one core), fewer floats; fewer still under AddressSanitizer, to stay near 20 s. */
#ifdef __SANITIZE_ADDRESS__
#define N_RANDOM 4000000L
#define N_RANDOM_FLOAT 1000000L
#else
#define N_RANDOM 10000000L
#define N_RANDOM_FLOAT 3000000L
#endif
#define N_THREADS 4

/* ---------- the reference: the formatter dtoa.c replaced ---------- */

static size_t ref_i64(long long v, char *buf)
{
    return (size_t)snprintf(buf, 32, "%lld", v);
}

static size_t ref_fmt_double(double d, char *buf)
{
    if (d > -1e15 && d < 1e15 && d == (double)(long long)d && !(d == 0 && signbit(d)))
        return ref_i64((long long)d, buf);
    int n = 0;
    for (int p = fabs(d) < DBL_MIN ? 1 : 15; p <= 17; p++) {
        n = snprintf(buf, 32, "%.*g", p, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    return (size_t)n;
}

static size_t ref_fmt_float(float f, char *buf)
{
    if (f > -1e6f && f < 1e6f && f == (float)(long)f && !(f == 0 && signbit(f)))
        return ref_i64((long)f, buf);
    int n = 0;
    for (int p = fabsf(f) < FLT_MIN ? 1 : 6; p <= 9; p++) {
        n = snprintf(buf, 32, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return (size_t)n;
}

/* ---------- comparing with it ---------- */

typedef struct stats {
    long n, equal, shorter, longer, bad;
    char first[160]; /* the first value that read back wrong or came out longer */
} stats;

static void note(stats *st, const char *what, const char *ours, const char *ref)
{
    if (!st->first[0])
        snprintf(st->first, sizeof st->first, "%s: ours '%s', reference '%s'", what, ours, ref);
}

static void check_double(double d, stats *st)
{
    char a[32], b[32];
    memset(a, 'x', sizeof a);
    size_t n = myc_fmt_double(d, a);
    size_t m = ref_fmt_double(d, b);
    st->n++;
    double back = strtod(a, NULL);
    if (n != strlen(a) || back != d || signbit(back) != signbit(d)) {
        st->bad++;
        note(st, "reads back wrong", a, b);
    }
    if (strcmp(a, b) == 0)
        st->equal++;
    else if (n < m)
        st->shorter++;
    else if (n > m) {
        st->longer++;
        note(st, "longer", a, b);
    }
}

static void check_float(float f, stats *st)
{
    char a[32], b[32];
    memset(a, 'x', sizeof a);
    size_t n = myc_fmt_float(f, a);
    size_t m = ref_fmt_float(f, b);
    st->n++;
    float back = strtof(a, NULL);
    if (n != strlen(a) || back != f || signbit(back) != signbit(f)) {
        st->bad++;
        note(st, "reads back wrong", a, b);
    }
    if (strcmp(a, b) == 0)
        st->equal++;
    else if (n < m)
        st->shorter++;
    else if (n > m) {
        st->longer++;
        note(st, "longer", a, b);
    }
}

static void assert_stats(const stats *st, const char *what, double min_equal)
{
    double rate = st->n ? (double)st->equal / (double)st->n : 0;
    print_message("%s: %ld values, %ld equal to the reference (%.6f%%), %ld shorter, %ld longer, "
                  "%ld read back wrong\n", what, st->n, st->equal, 100 * rate, st->shorter,
                  st->longer, st->bad);
    if (st->bad || st->longer)
        fail_msg("%s: %s", what, st->first);
    if (rate < min_equal)
        fail_msg("%s: only %.6f%% equal to the reference", what, 100 * rate);
}

/* xorshift64*: fixed seeds, the same values on every run */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* ---------- exponents and products, proven with exact integers ---------- */

static void test_exponent_formulas(void **state)
{
    (void)state;
    for (int q = -1074; q <= 971; q++) {
        int k = floor_log10_pow2(q); /* 1 <= 2^q 10^-k < 10 */
        assert_true(cmp_exact(1, q, k, 1) >= 0);
        assert_true(cmp_exact(1, q, k, 10) < 0);
        int h = q + 1 + floor_log2_pow10(-k);
        assert_true(h >= 1 && h <= 4);
        assert_true(k >= DTOA_K_MIN && k <= DTOA_K_MAX);
        if (q > -1074) { /* 1 <= 3 2^(q-2) 10^-k < 10 */
            k = floor_log10_3q_pow2(q);
            assert_true(cmp_exact(3, q - 2, k, 1) >= 0);
            assert_true(cmp_exact(3, q - 2, k, 10) < 0);
            h = q + 1 + floor_log2_pow10(-k);
            assert_true(h >= 1 && h <= 4);
            assert_true(k >= DTOA_K_MIN && k <= DTOA_K_MAX);
        }
    }
    for (int e = -DTOA_K_MAX; e <= -DTOA_K_MIN; e++) { /* 1 <= 2^-f 10^e < 2 */
        int f = floor_log2_pow10(e);
        assert_true(cmp_exact(1, -f, -e, 1) >= 0);
        assert_true(cmp_exact(1, -f, -e, 2) < 0);
    }
}

/* The entries said to be exact are 5^-k shifted to the top of 128 bits; the one below
 * cannot be (5^56 > 2^128). The others are checked through the products below. */
static void test_exact_powers(void **state)
{
    (void)state;
    u128 p = 1;
    for (int k = 0; k >= DTOA_EXACT_K_MIN; k--) {
        u128 g = (u128)dtoa_pow10[k - DTOA_K_MIN][0] << 64 | dtoa_pow10[k - DTOA_K_MIN][1];
        u128 x = p;
        while (!(x >> 127))
            x <<= 1;
        assert_true(x == g);
        if (k > DTOA_EXACT_K_MIN)
            p *= 5;
    }
    assert_true(p > ((u128)1 << 127) / 5 * 2); /* 5^55 * 5 overflows 128 bits */
}

/* cmp_exact on values small enough to know */
static void test_exact_compare(void **state)
{
    (void)state;
    assert_int_equal(cmp_exact(5, 1, 1, 1), 0);           /* 5 * 2 / 10 = 1 */
    assert_int_equal(cmp_exact(1, 10, 3, 1), 1);          /* 1024 / 1000 */
    assert_int_equal(cmp_exact(1, 10, 3, 2), -1);
    assert_int_equal(cmp_exact(3, -2, -1, 7), 1);         /* 3 / 4 * 10 = 7.5 */
    assert_int_equal(cmp_exact(3, -2, -1, 8), -1);
    assert_int_equal(cmp_exact(1, -1074, -324, 4), 1);    /* 2^-1074 = 4.94e-324 */
    assert_int_equal(cmp_exact(1, -1074, -324, 5), -1);
    assert_int_equal(cmp_exact((uint64_t)1 << 53, 971, 307, 17), 1); /* 2^1024 = 1.797e308 */
    assert_int_equal(cmp_exact((uint64_t)1 << 53, 971, 307, 18), -1);
    assert_int_equal(cmp_exact(UINT64_MAX, 0, 0, UINT64_MAX), 0);
}

/* rop() of the hot path (products) against a value decided by exact comparison alone,
 * for random significands at every exponent of doubles and floats. */
static uint64_t rop_reference(uint64_t cp, int a, int k)
{
    /* floor(x) is f or f - 1 for the product's f; the comparisons say which */
    const uint64_t *g = dtoa_pow10[k - DTOA_K_MIN];
    u128 lo = (u128)cp * g[1];
    uint64_t f = (uint64_t)(((u128)cp * g[0] + (uint64_t)(lo >> 64)) >> 64);
    int s = cmp_exact(cp, a, k, f);
    assert_true(cmp_exact(cp, a, k, f + 1) < 0);
    return s == 0 ? f : s > 0 ? f | 1 : (f - 1) | 1;
}

static void check_products(uint64_t c, int q, bool asym, long *near)
{
    int k = asym ? floor_log10_3q_pow2(q) : floor_log10_pow2(q);
    int h = q + 1 + floor_log2_pow10(-k);
    const uint64_t *g = dtoa_pow10[k - DTOA_K_MIN];
    uint64_t cb = c << 2, cbs[3] = {cb - (asym ? 1 : 2), cb, cb + 2};
    for (int i = 0; i < 3; i++) {
        uint64_t cp = cbs[i] << h;
        assert_true(rop(cp, g, q - h, k) == rop_reference(cp, q - h, k));
        u128 lo = (u128)cp * g[1];
        u128 mid = (u128)cp * g[0] + (uint64_t)(lo >> 64);
        if ((uint64_t)mid == 0 && (uint64_t)lo < cp)
            near[k >= DTOA_EXACT_K_MIN && k <= 0 ? 0 : 1]++;
    }
}

static void test_products(void **state)
{
    (void)state;
    uint64_t s = 42;
    long near[2] = {0, 0};
    for (int q = -1074; q <= 971; q++) {
        uint64_t top = q == -1074 ? 0 : (uint64_t)1 << 52;
        for (int j = 0; j < 24; j++) {
            /* dense significands, and sparse ones (a few high bits: decimal-friendly) */
            uint64_t c = top | next_rand(&s) >> (j % 4 == 0 ? 12 : 12 + 2 * j);
            if (q == -1074 && j < 12)
                c = (uint64_t)j + 1;
            if (c)
                check_products(c, q, false, near);
        }
        if (q > -1074)
            check_products(top, q, true, near);
    }
    for (int q = -149; q <= 104; q++)
        for (int j = 0; j < 24; j++) {
            uint64_t c = (q == -149 ? 0 : 1u << 23) | next_rand(&s) >> (41 + j % 16);
            if (c)
                check_products(c, q, false, near);
        }
    /* both shortcuts of rop_near (exact powers; k in [1, 27]) must have been taken */
    print_message("products within 2^-68 of an integer: %ld with exact powers, %ld others\n",
                  near[0], near[1]);
    assert_true(near[0] > 0);
    assert_true(near[1] > 0);
}

/* rop_near's big-integer branch (not reached by doubles in practice), given the floor
 * of x or, when x is not an integer, one above it, must agree with the products. */
static void test_exact_branch(void **state)
{
    (void)state;
    uint64_t s = 7;
    int tried = 0;
    while (tried < 20000) {
        int q = (int)(next_rand(&s) % 2046) - 1074;
        int k = floor_log10_pow2(q);
        if (k >= DTOA_EXACT_K_MIN && k <= 27)
            continue;
        tried++;
        int h = q + 1 + floor_log2_pow10(-k);
        uint64_t cp = ((uint64_t)1 << 52 | next_rand(&s) >> 12) << 2 << h;
        const uint64_t *g = dtoa_pow10[k - DTOA_K_MIN];
        u128 lo = (u128)cp * g[1];
        uint64_t f = (uint64_t)(((u128)cp * g[0] + (uint64_t)(lo >> 64)) >> 64);
        /* here x is never an integer (x * 5^k or x * 2^n would have to be one) */
        uint64_t want = rop(cp, g, q - h, k);
        assert_true(want == (f | 1));
        assert_true(rop_near(cp, q - h, k, f, 0) == want);
        assert_true(rop_near(cp, q - h, k, f + 1, 0) == want);
    }
}

/* ---------- doubles and floats against the reference ---------- */

typedef struct job {
    long from, to; /* indexes of the random values */
    bool floats;
    stats st;
} job;

/* Value i of the random sets: a random bit pattern (every finite double or float is as
 * likely, subnormals and negatives included; the non-finite are skipped). */
static void *random_job(void *arg)
{
    job *j = arg;
    for (long i = j->from; i < j->to; i++) {
        uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1); /* value i whatever the split */
        uint64_t bits = next_rand(&s);
        if (j->floats) {
            uint32_t b = (uint32_t)(bits >> 32);
            float f;
            memcpy(&f, &b, sizeof f);
            if (isfinite(f))
                check_float(f, &j->st);
        } else {
            double d;
            memcpy(&d, &bits, sizeof d);
            if (isfinite(d))
                check_double(d, &j->st);
        }
    }
    return NULL;
}

/* The random values on N_THREADS threads; cmocka's asserts stay on this thread. */
static void run_random(bool floats, stats *out)
{
    long n = floats ? N_RANDOM_FLOAT : N_RANDOM;
    job jobs[N_THREADS];
    pthread_t tids[N_THREADS];
    memset(out, 0, sizeof *out);
    for (int t = 0; t < N_THREADS; t++) {
        memset(&jobs[t], 0, sizeof jobs[t]);
        jobs[t].from = n * t / N_THREADS;
        jobs[t].to = n * (t + 1) / N_THREADS;
        jobs[t].floats = floats;
        assert_int_equal(pthread_create(&tids[t], NULL, random_job, &jobs[t]), 0);
    }
    for (int t = 0; t < N_THREADS; t++) {
        assert_int_equal(pthread_join(tids[t], NULL), 0);
        out->n += jobs[t].st.n;
        out->equal += jobs[t].st.equal;
        out->shorter += jobs[t].st.shorter;
        out->longer += jobs[t].st.longer;
        out->bad += jobs[t].st.bad;
        if (!out->first[0])
            memcpy(out->first, jobs[t].st.first, sizeof out->first);
    }
}

static void test_random_doubles(void **state)
{
    (void)state;
    stats st;
    run_random(false, &st);
    assert_true(st.n > N_RANDOM * 99 / 100);
    assert_stats(&st, "random doubles", 0.999);
}

static void test_random_floats(void **state)
{
    (void)state;
    stats st;
    run_random(true, &st);
    assert_true(st.n > N_RANDOM_FLOAT * 99 / 100);
    assert_stats(&st, "random floats", 0.999);
}

/* Values as data holds them: fractions, money, readings; both signs. */
static void test_decimal_looking(void **state)
{
    (void)state;
    stats st, sf;
    memset(&st, 0, sizeof st);
    memset(&sf, 0, sizeof sf);
    long scale = 1;
#ifdef __SANITIZE_ADDRESS__
    scale = 10;
#endif
    for (long i = 0; i < 1000000 / scale; i++) { /* i/7: repeating digits */
        check_double((double)i / 7, &st);
        check_float((float)i / 7, &sf);
    }
    /* k/10 .. k/10^9: money, readings; around 1e15..1e17, where %g changes notation;
     * tiny and negative */
    static const double divisors[] = {10, 100, 1000, 1e4, 1e5, 1e9};
    for (size_t j = 0; j < sizeof divisors / sizeof divisors[0]; j++)
        for (long i = 0; i < 50000 / scale; i++) {
            double d = (double)i / divisors[j];
            check_double(d, &st);
            check_double(-d * 1e-7, &st);
            check_double((double)i * 1e15 / divisors[j], &st);
            check_float((float)d, &sf);
        }
    assert_stats(&st, "decimal-looking doubles", 0.999);
    assert_stats(&sf, "decimal-looking floats", 0.999);
}

/* Edge cases: the extremes, every power of two and of ten, their neighbours. */
static void test_edges(void **state)
{
    (void)state;
    stats st, sf;
    memset(&st, 0, sizeof st);
    memset(&sf, 0, sizeof sf);
    static const double fixed[] = {
        DBL_MAX, DBL_MIN, DBL_TRUE_MIN, 0.1, 0.2, 0.3, 0.1 + 0.2, 1e21, 1e22, 1e23,
        9007199254740993.0, 9007199254740992.0, 1e15, 1e16, 1e17, 999999999999999.9,
        123456789012345678.0, 5e-324, 2.2250738585072009e-308, 0.0, -0.0, 1.0 / 3, 2.0 / 3,
        4.35, 0.000123, 0.0001, 0.00001, 1e-5, 1.5e-7, 299792458.0, 6.02214076e23,
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        check_double(fixed[i], &st);
        check_double(-fixed[i], &st);
        check_double(nextafter(fixed[i], 0), &st);
        check_double(nextafter(fixed[i], INFINITY), &st);
    }
    for (int e = -1074; e <= 1023; e++) {
        double p = ldexp(1, e);
        check_double(p, &st);
        check_double(-p, &st);
        check_double(nextafter(p, 0), &st);
        check_double(nextafter(p, INFINITY), &st);
    }
    for (int e = -323; e <= 308; e++) {
        char b[16];
        snprintf(b, sizeof b, "1e%d", e);
        double p = strtod(b, NULL);
        check_double(p, &st);
        check_double(nextafter(p, 0), &st);
        check_double(nextafter(p, INFINITY), &st);
    }
    for (int e = -149; e <= 127; e++) {
        float p = ldexpf(1, e);
        check_float(p, &sf);
        check_float(-p, &sf);
        check_float(nextafterf(p, 0), &sf);
        check_float(nextafterf(p, INFINITY), &sf);
    }
    for (int e = -45; e <= 38; e++) {
        char b[16];
        snprintf(b, sizeof b, "1e%d", e);
        float p = strtof(b, NULL);
        check_float(p, &sf);
        check_float(nextafterf(p, 0), &sf);
        check_float(nextafterf(p, INFINITY), &sf);
    }
    static const float ffixed[] = {FLT_MAX, FLT_MIN, FLT_TRUE_MIN, 0.1f, 0.3f, 16777217.0f,
                                   1e6f, 1e7f, 3.4028235e38f, 1.0f / 3, 0.0f, -0.0f};
    for (size_t i = 0; i < sizeof ffixed / sizeof ffixed[0]; i++) {
        check_float(ffixed[i], &sf);
        check_float(-ffixed[i], &sf);
    }
    assert_stats(&st, "edge doubles", 0.99);
    assert_stats(&sf, "edge floats", 0.99);
}

/* The text itself, as a user sees it. */
static void test_text(void **state)
{
    (void)state;
    static const struct {
        double d;
        const char *text;
    } cases[] = {
        {0.1, "0.1"}, {0.3, "0.3"}, {0.1 + 0.2, "0.30000000000000004"}, {-2.5, "-2.5"},
        {1e15, "1e+15"}, {1e21, "1e+21"}, {1e20, "1e+20"}, {1.5e-7, "1.5e-07"},
        {0.0001, "0.0001"}, {0.00001, "1e-05"}, {123.25, "123.25"}, {-0.0, "-0"},
        {9007199254740993.0, "9007199254740992"}, {1234567890123456.8, "1234567890123456.8"},
        {12345678901234567.0, "12345678901234568"}, {123456789012345678.0, "1.2345678901234568e+17"},
        {DBL_MAX, "1.7976931348623157e+308"}, {DBL_MIN, "2.2250738585072014e-308"},
        {DBL_TRUE_MIN, "5e-324"}, {1e-300, "1e-300"}, {4.35, "4.35"}, {2.0 / 3, "0.6666666666666666"},
        {INFINITY, "inf"}, {-INFINITY, "-inf"}, {NAN, "nan"}, {1e23, "1e+23"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = myc_fmt_double(cases[i].d, buf);
        assert_string_equal(buf, cases[i].text);
        assert_int_equal(n, strlen(cases[i].text));
    }
    static const struct {
        float f;
        const char *text;
    } fcases[] = {
        {0.1f, "0.1"}, {1.0f / 3, "0.33333334"}, {16777216.0f, "16777216"}, {1e6f, "1e+06"},
        {1.5e-7f, "1.5e-07"}, {FLT_TRUE_MIN, "1e-45"}, {FLT_MAX, "3.4028235e+38"}, {-0.0f, "-0"},
        {123.25f, "123.25"}, {2.5e-5f, "2.5e-05"},
    };
    for (size_t i = 0; i < sizeof fcases / sizeof fcases[0]; i++) {
        size_t n = myc_fmt_float(fcases[i].f, buf);
        assert_string_equal(buf, fcases[i].text);
        assert_int_equal(n, strlen(fcases[i].text));
    }
    /* the decimal itself: digits without trailing zeros */
    myc_decimal d = myc_shortest_double(1e23);
    assert_true(d.digits == 1 && d.exp10 == 23);
    d = myc_shortest_double(-0.3);
    assert_true(d.digits == 3 && d.exp10 == -1);
    d = myc_shortest_float(16777216.0f);
    assert_true(d.digits == 16777216 && d.exp10 == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exponent_formulas),
        cmocka_unit_test(test_exact_powers),
        cmocka_unit_test(test_exact_compare),
        cmocka_unit_test(test_products),
        cmocka_unit_test(test_exact_branch),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_decimal_looking),
        cmocka_unit_test(test_random_doubles),
        cmocka_unit_test(test_random_floats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
