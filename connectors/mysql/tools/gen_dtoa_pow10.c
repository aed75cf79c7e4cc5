/* Generator of connectors/mysql/dtoa_pow10.h, the table of 128-bit powers of ten that
 * dtoa.c (shortest round-trip decimals, Schubfach) multiplies by. Not part of the build:
 * the CMake glob takes only the .c files directly in a connector's folder. Rerun from the
 * repository root with
 *   gcc -std=c11 -O2 -Wall -Wextra -o /tmp/gen_dtoa_pow10 connectors/mysql/tools/gen_dtoa_pow10.c \
 *     && /tmp/gen_dtoa_pow10 > /tmp/dtoa_pow10.h && mv /tmp/dtoa_pow10.h connectors/mysql/
 *
 * Everything is computed with exact big integers: for each k in the range a double or a
 * float needs, g(k) = ceil(10^-k * 2^beta) with beta = 127 - floor(log2(10^-k)), so that
 * 2^127 <= g < 2^128. The generator also proves, for every exponent dtoa.c can meet,
 * the integer formulas dtoa.c uses for floor(log10(2^q)), floor(log10(3/4 * 2^q)) and
 * floor(log2(10^e)), and the range of k for which g is exact; it exits non-zero and
 * prints nothing useful if any of that fails. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- big natural numbers: little-endian 32-bit limbs ---------- */

#define NLIMB 80 /* 2560 bits: 2^1230 and 10^350 are the largest values met */

typedef struct big {
    uint32_t w[NLIMB];
    int n; /* limbs in use; w[n-1] != 0 unless n == 0 */
} big;

static void die(const char *what)
{
    fprintf(stderr, "gen_dtoa_pow10: %s\n", what);
    exit(1);
}

static void big_trim(big *b)
{
    while (b->n > 0 && b->w[b->n - 1] == 0)
        b->n--;
}

static void big_set(big *b, uint64_t v)
{
    memset(b, 0, sizeof *b);
    b->w[0] = (uint32_t)v;
    b->w[1] = (uint32_t)(v >> 32);
    b->n = 2;
    big_trim(b);
}

static void big_mul_small(big *b, uint32_t m)
{
    uint64_t carry = 0;
    for (int i = 0; i < b->n; i++) {
        uint64_t t = (uint64_t)b->w[i] * m + carry;
        b->w[i] = (uint32_t)t;
        carry = t >> 32;
    }
    if (carry) {
        if (b->n == NLIMB)
            die("big number overflow");
        b->w[b->n++] = (uint32_t)carry;
    }
    big_trim(b);
}

static void big_shl(big *b, int bits)
{
    if (b->n == 0 || bits == 0)
        return;
    int limbs = bits / 32, r = bits % 32;
    if (b->n + limbs + 1 > NLIMB)
        die("big number overflow");
    for (int i = b->n + limbs; i >= 0; i--) {
        uint64_t hi = i - limbs >= 0 && i - limbs < b->n ? b->w[i - limbs] : 0;
        uint64_t lo = i - limbs - 1 >= 0 && i - limbs - 1 < b->n ? b->w[i - limbs - 1] : 0;
        b->w[i] = (uint32_t)(((hi << 32 | lo) << r) >> 32);
    }
    b->n += limbs + 1;
    big_trim(b);
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

static void big_sub(big *a, const big *b) /* a -= b, a >= b */
{
    int64_t borrow = 0;
    for (int i = 0; i < a->n; i++) {
        int64_t t = (int64_t)a->w[i] - (i < b->n ? b->w[i] : 0) - borrow;
        borrow = t < 0;
        a->w[i] = (uint32_t)(t + (borrow ? ((int64_t)1 << 32) : 0));
    }
    if (borrow)
        die("big subtraction underflow");
    big_trim(a);
}

static int big_bitlen(const big *b)
{
    if (b->n == 0)
        return 0;
    int top = 32;
    while (!(b->w[b->n - 1] >> (top - 1)))
        top--;
    return (b->n - 1) * 32 + top;
}

static bool big_bit(const big *b, int i)
{
    return i / 32 < b->n && (b->w[i / 32] >> (i % 32)) & 1;
}

static void big_pow(big *b, uint32_t base, int e) /* base^e, e >= 0 */
{
    big_set(b, 1);
    for (int i = 0; i < e; i++)
        big_mul_small(b, base);
}

static void big_add_small(big *b, uint32_t v)
{
    uint64_t carry = v;
    for (int i = 0; carry; i++) {
        if (i == NLIMB)
            die("big number overflow");
        uint64_t t = (uint64_t)(i < b->n ? b->w[i] : 0) + carry;
        b->w[i] = (uint32_t)t;
        carry = t >> 32;
        if (i >= b->n)
            b->n = i + 1;
    }
}

/* b = ceil(b / 2^bits); *out_exact tells whether nothing was rounded */
static void big_shr_ceil(big *b, int bits, bool *out_exact)
{
    big r;
    memset(&r, 0, sizeof r);
    *out_exact = true;
    for (int i = 0; i < bits; i++)
        if (big_bit(b, i))
            *out_exact = false;
    int len = big_bitlen(b) - bits;
    for (int i = 0; i < len; i++)
        if (big_bit(b, i + bits)) {
            r.w[i / 32] |= 1u << (i % 32);
            r.n = i / 32 + 1;
        }
    *b = r;
    if (!*out_exact)
        big_add_small(b, 1);
}

/* sign of a * 2^x * 10^y - b * 2^z * 10^w */
static int cmp_scaled(uint32_t a, int x, int y, uint32_t b, int z, int w)
{
    int m2 = x < z ? x : z, m10 = y < w ? y : w;
    x -= m2, z -= m2, y -= m10, w -= m10;
    big A, B;
    big_set(&A, a);
    for (int i = 0; i < y; i++)
        big_mul_small(&A, 10);
    big_shl(&A, x);
    big_set(&B, b);
    for (int i = 0; i < w; i++)
        big_mul_small(&B, 10);
    big_shl(&B, z);
    return big_cmp(&A, &B);
}

/* ---------- the integer formulas dtoa.c uses (keep in step with dtoa.c) ---------- */

#define LOG10_2_MUL 315653   /* ~ log10(2) * 2^20 */
#define LOG10_3Q_SUB 131008  /* ~ -log10(3/4) * 2^20 */
#define LOG2_10_MUL 1741647  /* ~ log2(10) * 2^19 */
/* Floor division by 2^s of a possibly negative int without relying on how >> treats
 * negatives: bias it positive first (the biases keep every sum inside int). */
static int floor_log10_pow2(int q) { return (int)((unsigned)(q * LOG10_2_MUL + (400 << 20)) >> 20) - 400; }
static int floor_log10_3q_pow2(int q)
{
    return (int)((unsigned)(q * LOG10_2_MUL - LOG10_3Q_SUB + (400 << 20)) >> 20) - 400;
}
static int floor_log2_pow10(int e) { return (int)((unsigned)(e * LOG2_10_MUL + (1000 << 19)) >> 19) - 1000; }

#define Q_MIN (-1074) /* a double's 2^q: subnormals */
#define Q_MAX 971
#define Q_MIN_BOUNDARY (-1073) /* the asymmetric interval needs a biased exponent >= 2 */

int main(void)
{
    /* 1. the logarithm formulas, exactly, over every exponent met (floats' are inside) */
    for (int q = Q_MIN; q <= Q_MAX; q++) {
        int k = floor_log10_pow2(q); /* 10^k <= 2^q < 10^(k+1) */
        if (cmp_scaled(1, 0, k, 1, q, 0) > 0 || cmp_scaled(1, q, 0, 1, 0, k + 1) >= 0)
            die("floor_log10_pow2 is wrong");
        if (q >= Q_MIN_BOUNDARY) { /* 10^k <= 3 * 2^(q-2) < 10^(k+1) */
            k = floor_log10_3q_pow2(q);
            if (cmp_scaled(1, 0, k, 3, q - 2, 0) > 0 || cmp_scaled(3, q - 2, 0, 1, 0, k + 1) >= 0)
                die("floor_log10_3q_pow2 is wrong");
        }
    }
    int k_min = floor_log10_3q_pow2(Q_MIN_BOUNDARY) < floor_log10_pow2(Q_MIN)
                    ? floor_log10_3q_pow2(Q_MIN_BOUNDARY) : floor_log10_pow2(Q_MIN);
    int k_max = floor_log10_pow2(Q_MAX);
    for (int e = -k_max; e <= -k_min; e++) { /* 2^f <= 10^e < 2^(f+1) */
        int f = floor_log2_pow10(e);
        if (cmp_scaled(1, f, 0, 1, 0, e) > 0 || cmp_scaled(1, 0, e, 1, f + 1, 0) >= 0)
            die("floor_log2_pow10 is wrong");
    }

    /* 2. the table */
    printf("/* Generated by connectors/mysql/tools/gen_dtoa_pow10.c: do not edit (rerun it; the\n"
           " * command is at the top of that file). For k in [DTOA_K_MIN, DTOA_K_MAX],\n"
           " * dtoa_pow10[k - DTOA_K_MIN] = {high, low} 64 bits of g = ceil(10^-k * 2^beta),\n"
           " * beta = 127 - floor(log2(10^-k)), so 2^127 <= g < 2^128; g is exact (no rounding)\n"
           " * exactly for k in [DTOA_EXACT_K_MIN, 0]. */\n");
    printf("#define DTOA_K_MIN (%d)\n#define DTOA_K_MAX %d\n", k_min, k_max);
    int exact_min = 1;
    bool exact_seen_gap = false;
    printf("static const uint64_t dtoa_pow10[%d][2] = {\n", k_max - k_min + 1);
    for (int k = k_min; k <= k_max; k++) {
        int e = -k;
        big t, g;
        bool exact;
        big_pow(&t, 10, e < 0 ? -e : e);
        if (e >= 0) { /* g = ceil(10^e * 2^beta), beta = 127 - floor(log2(10^e)) */
            int beta = 127 - (big_bitlen(&t) - 1);
            g = t;
            if (beta >= 0) {
                big_shl(&g, beta);
                exact = true;
            } else {
                big_shr_ceil(&g, -beta, &exact);
            }
        } else { /* g = ceil(2^beta / 10^-e), beta = 127 + bitlen(10^-e): long division */
            int beta = 127 + big_bitlen(&t);
            big r;
            big_set(&r, 0);
            big_set(&g, 0);
            for (int i = beta; i >= 0; i--) {
                big_shl(&r, 1);
                if (i == beta)
                    big_add_small(&r, 1);
                if (big_cmp(&r, &t) >= 0) {
                    big_sub(&r, &t);
                    if (i >= 128)
                        die("quotient does not fit 128 bits");
                    g.w[i / 32] |= 1u << (i % 32);
                    if (g.n < i / 32 + 1)
                        g.n = i / 32 + 1;
                }
            }
            if (r.n == 0)
                die("a power of ten divides a power of two?");
            exact = false;
            big_add_small(&g, 1);
        }
        big_trim(&g);
        if (big_bitlen(&g) != 128)
            die("g is not in [2^127, 2^128)");
        if (exact) {
            if (k > 0 || exact_seen_gap)
                die("exact entries are not one run ending at k = 0");
            if (exact_min > 0)
                exact_min = k;
        } else if (exact_min <= 0) {
            exact_seen_gap = true;
        }
        uint64_t hi = (uint64_t)g.w[3] << 32 | g.w[2], lo = (uint64_t)g.w[1] << 32 | g.w[0];
        printf("    {0x%016" PRIx64 ", 0x%016" PRIx64 "}, /* %d */\n", hi, lo, k);
    }
    printf("};\n");
    if (exact_min > 0)
        die("no exact entries");
    printf("#define DTOA_EXACT_K_MIN (%d)\n", exact_min);
    printf("#define DTOA_LOG10_2_MUL %d\n#define DTOA_LOG10_3Q_SUB %d\n#define DTOA_LOG2_10_MUL %d\n",
           LOG10_2_MUL, LOG10_3Q_SUB, LOG2_10_MUL);
    return 0;
}
