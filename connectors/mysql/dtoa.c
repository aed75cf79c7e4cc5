/* Shortest round-trip decimals of doubles and floats, and their text in the style of
 * printf's %g: how myc_fmt_double/myc_fmt_float (types.c) print FLOAT and DOUBLE values
 * into extracts, query results and bound parameters.
 *
 * DESIGN. The algorithm is Schubfach (R. Giulietti, "The Schubfach way to render
 * doubles", 2020), written here from its description. A value v = c * 2^q rounds back
 * from every decimal in its rounding interval R = [v - u/2, v + u/2] (u: the spacing of
 * the values around v; the lower half is u/4 at a power of two, the "asymmetric" case),
 * endpoints included when c is even (round half to even). Pick k with 10^k <= |R| <
 * 10^(k+1): then R holds at least one multiple of 10^k and at most one of 10^(k+1), and
 * the shortest decimal in R is that multiple of 10^(k+1) if there is one, else the
 * multiple of 10^k in R nearest v. Everything is decided by comparing 4 v 10^-k and the
 * interval's ends, scaled the same way, with integers; each of those three numbers is
 * x = cb * 2^q * 10^-k, computed as (cb << h) * g / 2^128 with g a 128-bit upper
 * approximation of a power of ten (dtoa_pow10.h, generated exactly), and kept as
 * "round to odd" (floor(x), bit 0 set when x is not an integer), which compares with
 * even integers exactly as x does.
 *
 * Exactness: the product overshoots x by less than cp / 2^128 (< 2^-68), so floor(x) and
 * whether x is an integer follow from the product unless its fraction is below that
 * bound. Then (rop_near): for k in [DTOA_EXACT_K_MIN, 0] g has no error at all; for k in
 * [1, 27] x is an integer divided by 5^k, so it is either that integer or farther from it
 * than the error; otherwise x is compared with the integer exactly with big integers.
 * None of the ~20 million products checked while writing this took that last path (the
 * published analysis bounds how near these products come to integers); it is there so
 * that the result never rests on that bound, and the tests drive it directly.
 * Hot path: three 64x128-bit multiplications, no division but by constants, no table
 * but the powers of ten and the digit pairs; no allocation; any thread. */
#include "myc.h"

#include <string.h>

#include "dtoa_pow10.h"

__extension__ typedef unsigned __int128 u128;

/* ---------- exponents ---------- */

/* floor(q log10(2)), floor(log10(3/4 2^q)) and floor(e log2(10)) for every exponent of a
 * double (q in [-1074, 971], e in [-292, 324]); the generator proves these same lines
 * exactly over those ranges, so keep the two copies in step. Biased positive before the
 * shift, so that nothing depends on how >> treats negative numbers. */
static inline int floor_log10_pow2(int q)
{
    return (int)((unsigned)(q * DTOA_LOG10_2_MUL + (400 << 20)) >> 20) - 400;
}

static inline int floor_log10_3q_pow2(int q)
{
    return (int)((unsigned)(q * DTOA_LOG10_2_MUL - DTOA_LOG10_3Q_SUB + (400 << 20)) >> 20) - 400;
}

static inline int floor_log2_pow10(int e)
{
    return (int)((unsigned)(e * DTOA_LOG2_10_MUL + (1000 << 19)) >> 19) - 1000;
}

/* ---------- exact comparison (the rare path) ---------- */

#define BIG_LIMBS 40 /* 1280 bits; the comparisons below need at most ~830 */

typedef struct big {
    uint32_t w[BIG_LIMBS]; /* little-endian */
    int n;                 /* limbs in use */
} big;

static void big_from(big *b, uint64_t v)
{
    b->w[0] = (uint32_t)v;
    b->w[1] = (uint32_t)(v >> 32);
    b->n = b->w[1] ? 2 : b->w[0] ? 1 : 0;
}

static void big_mul_pow5(big *b, int e)
{
    while (e > 0) {
        int s = e < 13 ? e : 13; /* 5^13 < 2^32 */
        uint32_t m = 1;
        for (int i = 0; i < s; i++)
            m *= 5;
        e -= s;
        uint64_t carry = 0;
        for (int i = 0; i < b->n; i++) {
            uint64_t t = (uint64_t)b->w[i] * m + carry;
            b->w[i] = (uint32_t)t;
            carry = t >> 32;
        }
        if (carry && b->n < BIG_LIMBS)
            b->w[b->n++] = (uint32_t)carry;
    }
}

static void big_shl(big *b, int bits)
{
    if (b->n == 0 || bits <= 0)
        return;
    int limbs = bits / 32, r = bits % 32;
    int n = b->n + limbs + 1 < BIG_LIMBS ? b->n + limbs + 1 : BIG_LIMBS;
    for (int i = n - 1; i >= 0; i--) {
        int j = i - limbs; /* source limb of the high half */
        uint64_t hi = j >= 0 && j < b->n ? b->w[j] : 0;
        uint64_t lo = j - 1 >= 0 && j - 1 < b->n ? b->w[j - 1] : 0;
        b->w[i] = (uint32_t)((hi << 32 | lo) << r >> 32);
    }
    b->n = n;
    while (b->n > 0 && b->w[b->n - 1] == 0)
        b->n--;
}

static int big_cmp(const big *a, const big *b)
{
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    for (int i = a->n - 1; i >= 0; i--)
        if (a->w[i] != b->w[i])
            return a->w[i] < b->w[i] ? -1 : 1;
    return 0;
}

/* Sign of m * 2^a * 10^-k - f, exactly. For |a| <= 1100, |k| <= 350 (the sizes fit). */
static int cmp_exact(uint64_t m, int a, int k, uint64_t f)
{
    big l, r;
    big_from(&l, m);
    big_from(&r, f);
    a -= k; /* 10^-k = 5^-k 2^-k */
    if (k < 0)
        big_mul_pow5(&l, -k);
    else
        big_mul_pow5(&r, k);
    if (a >= 0)
        big_shl(&l, a);
    else
        big_shl(&r, -a);
    return big_cmp(&l, &r);
}

/* ---------- the scaled interval ---------- */

/* rop() when the product's fraction is below cp: x = cp * 2^a * 10^-k is within 2^-68
 * of f, on either side. */
static __attribute__((noinline, cold)) uint64_t rop_near(uint64_t cp, int a, int k, uint64_t f,
                                                         uint64_t frac)
{
    if (k >= DTOA_EXACT_K_MIN && k <= 0) /* g exact: the product is x itself */
        return frac == 0 ? f : f | 1;
    if (k >= 1 && k <= 27) /* 5^27 < 2^63: a non-integer would be >= 2^-63 off f */
        return f;
    int s = cmp_exact(cp, a, k, f);
    return s > 0 ? f | 1 : s == 0 ? f : (f - 1) | 1;
}

/* x = cp * g / 2^128 = cp * 2^a * 10^-k, g = dtoa_pow10[k - DTOA_K_MIN], cp < 2^60:
 * floor(x) | (x is not an integer). */
static inline uint64_t rop(uint64_t cp, const uint64_t g[2], int a, int k)
{
    u128 lo = (u128)cp * g[1];
    u128 mid = (u128)cp * g[0] + (uint64_t)(lo >> 64);
    uint64_t f = (uint64_t)(mid >> 64);
    if ((uint64_t)mid != 0 || (uint64_t)lo >= cp)
        return f | 1;
    return rop_near(cp, a, k, f, (uint64_t)lo);
}

static myc_decimal strip_zeros(uint64_t d, int e)
{
    while (d % 10000 == 0) {
        d /= 10000;
        e += 4;
    }
    while (d % 10 == 0) {
        d /= 10;
        e++;
    }
    return (myc_decimal){d, e};
}

/* v = c * 2^q, c > 0 (c < 2^53); asym: the value below v is u/2 away, not u (c is a
 * power of two above the subnormals). */
static myc_decimal to_decimal(uint64_t c, int q, bool asym)
{
    int k = asym ? floor_log10_3q_pow2(q) : floor_log10_pow2(q);
    int h = q + 1 + floor_log2_pow10(-k); /* 1..4, so that (cb << h) * g / 2^128 = cb 2^q 10^-k */
    const uint64_t *g = dtoa_pow10[k - DTOA_K_MIN];
    /* 4 v, 4 (v - lower half), 4 (v + upper half), in units of 2^q */
    uint64_t cb = c << 2, cbl = cb - (asym ? 1 : 2), cbr = cb + 2;
    uint64_t vb = rop(cb << h, g, q - h, k);
    uint64_t vbl = rop(cbl << h, g, q - h, k);
    uint64_t vbr = rop(cbr << h, g, q - h, k);
    /* an endpoint reads back as v only when c is even (ties to even): "+ odd" turns
     * <= into < for the odd ones */
    uint64_t odd = c & 1;
    uint64_t s = vb >> 2; /* floor(v 10^-k) */

    /* the multiple of 10^(k+1) on either side of v, if R holds one */
    uint64_t sp10 = s / 10 * 10, tp10 = sp10 + 10;
    bool up_in = vbl + odd <= sp10 << 2;
    bool wp_in = (tp10 << 2) + odd <= vbr;
    if (up_in != wp_in) /* never both: |R| < 10^(k+1) */
        return strip_zeros(up_in ? sp10 : tp10, k);

    /* the multiples of 10^k on either side: at least one is in R (|R| >= 10^k) */
    uint64_t t = s + 1;
    bool u_in = vbl + odd <= s << 2;
    bool w_in = (t << 2) + odd <= vbr;
    if (u_in != w_in)
        return (myc_decimal){u_in ? s : t, k};
    /* both: the nearer, the even one on a tie; neither ends in 0 (that was above) */
    uint64_t mid = (s << 2) + 2;
    return (myc_decimal){vb < mid || (vb == mid && !(s & 1)) ? s : t, k};
}

myc_decimal myc_shortest_double(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint64_t m = bits & (((uint64_t)1 << 52) - 1);
    int e = (int)(bits >> 52) & 0x7ff;
    if (e == 0)
        return to_decimal(m, -1074, false);
    return to_decimal(m | (uint64_t)1 << 52, e - 1075, m == 0 && e > 1);
}

myc_decimal myc_shortest_float(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t m = bits & ((1u << 23) - 1);
    int e = (int)(bits >> 23) & 0xff;
    if (e == 0)
        return to_decimal(m, -149, false);
    return to_decimal(m | 1u << 23, e - 150, m == 0 && e > 1);
}

/* ---------- text ---------- */

static const char digit_pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static const uint64_t pow10_u64[20] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
    100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
    10000000000000ull, 100000000000000ull, 1000000000000000ull, 10000000000000000ull,
    100000000000000000ull, 1000000000000000000ull, 10000000000000000000ull,
};

/* Decimal digits of d > 0 into out (no NUL); returns how many. */
static int write_digits(uint64_t d, char *out)
{
    int bits = 64 - __builtin_clzll(d);
    int n = (bits * 1233 >> 12) + 1; /* 1233 / 4096 ~ log10(2): n or n - 1 digits */
    if (d < pow10_u64[n - 1])
        n--;
    char *p = out + n;
    while (d >= 100) {
        uint64_t r = d % 100;
        d /= 100;
        p -= 2;
        memcpy(p, digit_pairs + 2 * r, 2);
    }
    if (d >= 10) {
        p -= 2;
        memcpy(p, digit_pairs + 2 * d, 2);
    } else {
        *--p = (char)('0' + d);
    }
    return n;
}

size_t myc_decimal_text(myc_decimal d, bool neg, int min_prec, char *buf)
{
    char dig[20];
    int n = write_digits(d.digits, dig);
    int x = d.exp10 + n - 1; /* the exponent of the leading digit */
    int p = n > min_prec ? n : min_prec;
    char *o = buf;
    if (neg)
        *o++ = '-';
    if (x < -4 || x >= p) { /* d.ddde+XX */
        *o++ = dig[0];
        if (n > 1) {
            *o++ = '.';
            memcpy(o, dig + 1, (size_t)n - 1);
            o += n - 1;
        }
        *o++ = 'e';
        *o++ = x < 0 ? '-' : '+';
        unsigned ax = (unsigned)(x < 0 ? -x : x);
        if (ax >= 100) {
            *o++ = (char)('0' + ax / 100);
            ax %= 100;
        }
        memcpy(o, digit_pairs + 2 * ax, 2);
        o += 2;
    } else if (x < 0) { /* 0.000ddd */
        *o++ = '0';
        *o++ = '.';
        memset(o, '0', (size_t)(-x - 1));
        o += -x - 1;
        memcpy(o, dig, (size_t)n);
        o += n;
    } else if (n <= x + 1) { /* ddd000 */
        memcpy(o, dig, (size_t)n);
        o += n;
        memset(o, '0', (size_t)(x + 1 - n));
        o += x + 1 - n;
    } else { /* dd.ddd */
        memcpy(o, dig, (size_t)x + 1);
        o += x + 1;
        *o++ = '.';
        memcpy(o, dig + x + 1, (size_t)(n - x - 1));
        o += n - x - 1;
    }
    *o = '\0';
    return (size_t)(o - buf);
}
