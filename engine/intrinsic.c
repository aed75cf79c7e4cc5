/* ASL intrinsic functions: a recursive-descent parser turns "States.Name(args)" into a
 * tree once, when the template is compiled; intrinsic_eval walks that tree per call.
 * Literal arguments become json_t constants at compile time, so evaluating them costs
 * an incref; only an error formats a string.
 *
 * Values are immutable and may be shared (see path.h): every function here builds new
 * containers and only increfs the values it places in them. */
#include "intrinsic.h"
#include "jsontext.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/evp.h>

#include "path.h"

#define FAILURE_NAME "States.IntrinsicFailure"
/* AWS allows 10 nested intrinsics in a field; the limit also bounds parser recursion. */
#define MAX_NESTING 10
#define ARRAY_RANGE_MAX 1000 /* AWS: "The newly generated array can't contain more than 1000 items" */
#define STACK_ARGS 8         /* most calls have fewer arguments: no allocation for them */

typedef enum arg_kind { ARG_CONST, ARG_PATH, ARG_CALL } arg_kind;

typedef struct arg {
    arg_kind kind;
    json_t *value;   /* ARG_CONST: owned */
    path *path;      /* ARG_PATH: owned */
    intrinsic *call; /* ARG_CALL: owned */
    /* ARG_CONST string literal: byte offsets, in the unescaped value, of each "{}" that
     * was written unescaped. Only these are States.Format placeholders: '\{\}' is text. */
    size_t *holes;
    size_t n_holes;
} arg;

typedef json_t *(*fn_impl)(const intrinsic *fn, json_t **v, size_t n, etl_error *err);

typedef struct fn_def {
    const char *name; /* full name, "States.Format" */
    size_t min_args;
    size_t max_args; /* SIZE_MAX: any number */
    fn_impl impl;
} fn_def;

struct intrinsic {
    const fn_def *def;
    arg *args;
    size_t n_args;
    bool uses_ctx; /* this call or a nested one has a $$ path argument */
};

/* ---- errors ------------------------------------------------------------------------ */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* Fill err with States.IntrinsicFailure, the cause starting with the function name.
 * Always returns NULL so call sites read "return fail(...)". */
__attribute__((format(printf, 3, 4)))
static json_t *fail(etl_error *err, const intrinsic *fn, const char *fmt, ...)
{
    char msg[ETL_ERROR_CAUSE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    etl_fail(err, ETL_ERUNTIME, FAILURE_NAME, "%s: %s", fn->def->name, msg);
    return NULL;
}

static json_t *fail_oom(etl_error *err, const intrinsic *fn)
{
    etl_fail(err, ETL_ENOMEM, FAILURE_NAME, "%s: out of memory", fn->def->name);
    return NULL;
}

/* ---- value equality and hashing (ArrayContains, ArrayUnique) -------------------------
 * Numbers compare by value: 1 equals 1.0, as in Choice's Numeric comparisons. The hash
 * agrees with that equality: an integral real hashes as the integer it equals. */

/* Exact comparison of an int64 and a double, without the rounding of (double)i. */
static bool int_equals_real(json_int_t i, double d)
{
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || floor(d) != d)
        return false;
    return (json_int_t)d == i;
}

static bool value_equal(const json_t *a, const json_t *b)
{
    if (a == b)
        return true;
    json_type ta = json_typeof(a), tb = json_typeof(b);
    if (ta == JSON_INTEGER && tb == JSON_REAL)
        return int_equals_real(json_integer_value(a), json_real_value(b));
    if (ta == JSON_REAL && tb == JSON_INTEGER)
        return int_equals_real(json_integer_value(b), json_real_value(a));
    if (ta != tb)
        return false;
    switch (ta) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *key;
        size_t klen;
        json_t *va;
        json_object_keylen_foreach((json_t *)a, key, klen, va) {
            json_t *vb = json_object_getn(b, key, klen);
            if (!vb || !value_equal(va, vb))
                return false;
        }
        return true;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!value_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_INTEGER: return json_integer_value(a) == json_integer_value(b);
    case JSON_REAL: return json_real_value(a) == json_real_value(b);
    default: return true; /* true, false, null: same type is same value */
    }
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t hash_value(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        /* Key order does not matter to equality, so combine the members with a sum. */
        uint64_t h = 0x51ed270b27e4a1c3ULL;
        const char *key;
        size_t klen;
        json_t *val;
        json_object_keylen_foreach((json_t *)v, key, klen, val)
            h += mix64(hash_bytes(key, klen) ^ (hash_value(val) * 31));
        return mix64(h);
    }
    case JSON_ARRAY: {
        uint64_t h = 0x2545f4914f6cdd1dULL;
        for (size_t i = 0; i < json_array_size(v); i++)
            h = mix64(h ^ hash_value(json_array_get(v, i)));
        return h;
    }
    case JSON_STRING: return hash_bytes(json_string_value(v), json_string_length(v));
    case JSON_INTEGER: return mix64((uint64_t)json_integer_value(v));
    case JSON_REAL: {
        double d = json_real_value(v);
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && floor(d) == d)
            return mix64((uint64_t)(json_int_t)d);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return mix64(bits);
    }
    case JSON_TRUE: return 1;
    case JSON_FALSE: return 2;
    case JSON_NULL: return 3;
    }
    return 0;
}

/* ---- argument helpers ---------------------------------------------------------------- */

/* Java's Math.round (AWS runs on the JVM): halves round toward positive infinity. */
static double round_half_up(double d)
{
    double f = floor(d);
    return d - f >= 0.5 ? f + 1 : f;
}

/* An integer argument. With round (MathAdd, MathRandom), a real is rounded to the
 * nearest integer as AWS does; otherwise a real must have no fraction (2.0 is 2). */
static bool int_arg(const intrinsic *fn, json_t **v, size_t i, const char *what, bool round,
                    json_int_t *out, etl_error *err)
{
    const json_t *x = v[i];
    if (json_is_integer(x)) {
        *out = json_integer_value(x);
        return true;
    }
    if (json_is_real(x)) {
        double d = json_real_value(x);
        double r = round ? round_half_up(d) : d;
        if (r != floor(r)) {
            fail(err, fn, "%s (argument %zu) must be an integer, got %.17g", what, i + 1, d);
            return false;
        }
        if (!(r >= -9223372036854775808.0 && r < 9223372036854775808.0)) {
            fail(err, fn, "%s (argument %zu) is out of the 64-bit integer range: %.17g", what,
                 i + 1, d);
            return false;
        }
        *out = (json_int_t)r;
        return true;
    }
    fail(err, fn, "%s (argument %zu) must be an integer, got %s", what, i + 1, type_name(x));
    return false;
}

static bool type_arg(const intrinsic *fn, json_t **v, size_t i, json_type type, const char *what,
                     etl_error *err)
{
    if (json_typeof(v[i]) == type)
        return true;
    static const char *const names[] = {
        [JSON_OBJECT] = "an object", [JSON_ARRAY] = "an array", [JSON_STRING] = "a string",
    };
    if (what)
        fail(err, fn, "%s (argument %zu) must be %s, got %s", what, i + 1, names[type],
             type_name(v[i]));
    else
        fail(err, fn, "argument %zu must be %s, got %s", i + 1, names[type], type_name(v[i]));
    return false;
}

/* A new string from bytes known to be valid UTF-8 (pieces of valid strings cut at
 * ASCII characters or code point boundaries, or text this file produced). */
static json_t *string_from(const intrinsic *fn, jt_buf *sb, etl_error *err)
{
    if (sb->oom) {
        free(sb->p);
        return fail_oom(err, fn);
    }
    json_t *s = json_stringn_nocheck(sb->p ? sb->p : "", sb->len);
    free(sb->p);
    return s ? s : fail_oom(err, fn);
}

/* ---- the functions ------------------------------------------------------------------ */

static void put_format_value(jt_buf *sb, const json_t *x)
{
    if (json_is_string(x))
        jt_put(sb, json_string_value(x), json_string_length(x));
    else
        jt_value(sb, x);
}

static json_t *fn_format(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    if (!type_arg(fn, v, 0, JSON_STRING, "the template", err))
        return NULL;
    const char *t = json_string_value(v[0]);
    size_t tlen = json_string_length(v[0]);
    const arg *a0 = &fn->args[0];
    size_t n_values = n - 1;
    jt_buf sb = {0};

    if (a0->kind == ARG_CONST) {
        /* A literal template: the placeholders were found while unescaping it. */
        if (a0->n_holes != n_values)
            return fail(err, fn, "the template has %zu placeholder(s) '{}' but %zu value(s) follow it",
                        a0->n_holes, n_values);
        size_t at = 0;
        for (size_t i = 0; i < a0->n_holes; i++) {
            jt_put(&sb, t + at, a0->holes[i] - at);
            put_format_value(&sb, v[i + 1]);
            at = a0->holes[i] + 2;
        }
        jt_put(&sb, t + at, tlen - at);
        return string_from(fn, &sb, err);
    }

    /* A template read from the input: every "{}" is a placeholder. */
    size_t holes = 0;
    for (size_t i = 0; i + 1 < tlen; i++)
        if (t[i] == '{' && t[i + 1] == '}')
            holes++, i++;
    if (holes != n_values)
        return fail(err, fn, "the template has %zu placeholder(s) '{}' but %zu value(s) follow it",
                    holes, n_values);
    size_t at = 0, k = 1;
    for (size_t i = 0; i + 1 < tlen; i++) {
        if (t[i] == '{' && t[i + 1] == '}') {
            jt_put(&sb, t + at, i - at);
            put_format_value(&sb, v[k++]);
            at = i + 2;
            i++;
        }
    }
    jt_put(&sb, t + at, tlen - at);
    return string_from(fn, &sb, err);
}

static json_t *fn_string_to_json(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    if (!type_arg(fn, v, 0, JSON_STRING, NULL, err))
        return NULL;
    json_error_t jerr;
    json_t *r = json_loadb(json_string_value(v[0]), json_string_length(v[0]), JSON_DECODE_ANY,
                           &jerr);
    if (!r)
        return fail(err, fn, "the string is not valid JSON: %s (line %d, column %d)", jerr.text,
                    jerr.line, jerr.column);
    return r;
}

static json_t *fn_json_to_string(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    jt_buf sb = {0};
    jt_value(&sb, v[0]);
    return string_from(fn, &sb, err);
}

static json_t *fn_array(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    json_t *r = json_array();
    for (size_t i = 0; r && i < n; i++) {
        if (json_array_append(r, v[i]) != 0) {
            json_decref(r);
            r = NULL;
        }
    }
    return r ? r : fail_oom(err, fn);
}

static json_t *fn_array_partition(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    json_int_t size;
    if (!type_arg(fn, v, 0, JSON_ARRAY, "the array", err) ||
        !int_arg(fn, v, 1, "the chunk size", false, &size, err))
        return NULL;
    if (size <= 0)
        return fail(err, fn, "the chunk size (argument 2) must be greater than 0, got %" JSON_INTEGER_FORMAT,
                    size);
    size_t len = json_array_size(v[0]);
    json_t *r = json_array(), *chunk = NULL;
    if (!r)
        goto oom;
    for (size_t i = 0; i < len; i++) {
        if (!chunk && !(chunk = json_array()))
            goto oom;
        if (json_array_append(chunk, json_array_get(v[0], i)) != 0)
            goto oom;
        if (json_array_size(chunk) == (size_t)size || i + 1 == len) {
            if (json_array_append_new(r, chunk) != 0) {
                chunk = NULL; /* append_new consumed it even on failure */
                goto oom;
            }
            chunk = NULL;
        }
    }
    return r;
oom:
    json_decref(chunk);
    json_decref(r);
    return fail_oom(err, fn);
}

static json_t *fn_array_contains(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    if (!type_arg(fn, v, 0, JSON_ARRAY, "the array", err))
        return NULL;
    for (size_t i = 0; i < json_array_size(v[0]); i++)
        if (value_equal(json_array_get(v[0], i), v[1]))
            return json_true();
    return json_false();
}

static json_t *fn_array_range(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    json_int_t start, end, step;
    if (!int_arg(fn, v, 0, "the start", false, &start, err) ||
        !int_arg(fn, v, 1, "the end", false, &end, err) ||
        !int_arg(fn, v, 2, "the step", false, &step, err))
        return NULL;
    if (step == 0)
        return fail(err, fn, "the step (argument 3) must not be 0");
    /* Unsigned arithmetic: end - start may not fit in int64. */
    uint64_t count = 0;
    uint64_t ustep = step > 0 ? (uint64_t)step : -(uint64_t)step;
    if (step > 0 && start <= end)
        count = ((uint64_t)end - (uint64_t)start) / ustep + 1;
    else if (step < 0 && start >= end)
        count = ((uint64_t)start - (uint64_t)end) / ustep + 1;
    if (count > ARRAY_RANGE_MAX)
        return fail(err, fn, "the range would have %llu items; at most %d are allowed",
                    (unsigned long long)count, ARRAY_RANGE_MAX);
    json_t *r = json_array();
    for (uint64_t i = 0; r && i < count; i++) {
        /* Every value lies between start and end, so the wrapping sum is exact. */
        json_int_t x = (json_int_t)((uint64_t)start + i * (uint64_t)step);
        if (json_array_append_new(r, json_integer(x)) != 0) {
            json_decref(r);
            r = NULL;
        }
    }
    return r ? r : fail_oom(err, fn);
}

static json_t *fn_array_get_item(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    json_int_t index;
    if (!type_arg(fn, v, 0, JSON_ARRAY, "the array", err) ||
        !int_arg(fn, v, 1, "the index", false, &index, err))
        return NULL;
    size_t len = json_array_size(v[0]);
    if (index < 0 || (uint64_t)index >= len)
        return fail(err, fn, "index %" JSON_INTEGER_FORMAT " is out of range for an array of %zu item(s)",
                    index, len);
    return json_incref(json_array_get(v[0], (size_t)index));
}

static json_t *fn_array_length(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    if (!type_arg(fn, v, 0, JSON_ARRAY, NULL, err))
        return NULL;
    json_t *r = json_integer((json_int_t)json_array_size(v[0]));
    return r ? r : fail_oom(err, fn);
}

/* Keeps the first occurrence of each value, in order. A hash table of indices into the
 * result keeps it linear: arrays of tens of thousands of items are ordinary payloads. */
static json_t *fn_array_unique(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    if (!type_arg(fn, v, 0, JSON_ARRAY, NULL, err))
        return NULL;
    size_t len = json_array_size(v[0]);
    size_t cap = 16;
    while (cap < 2 * len)
        cap *= 2;
    size_t *slots = malloc(cap * sizeof *slots); /* SIZE_MAX = empty; else index in r */
    json_t *r = json_array();
    if (!slots || !r)
        goto oom;
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t i = 0; i < len; i++) {
        json_t *x = json_array_get(v[0], i);
        size_t s = (size_t)hash_value(x) & (cap - 1);
        bool seen = false;
        while (slots[s] != SIZE_MAX) {
            if (value_equal(json_array_get(r, slots[s]), x)) {
                seen = true;
                break;
            }
            s = (s + 1) & (cap - 1);
        }
        if (seen)
            continue;
        slots[s] = json_array_size(r);
        if (json_array_append(r, x) != 0)
            goto oom;
    }
    free(slots);
    return r;
oom:
    free(slots);
    json_decref(r);
    return fail_oom(err, fn);
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *fn_base64_encode(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    if (!type_arg(fn, v, 0, JSON_STRING, NULL, err))
        return NULL;
    const unsigned char *s = (const unsigned char *)json_string_value(v[0]);
    size_t len = json_string_length(v[0]);
    jt_buf sb = {0};
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)s[i] << 16;
        if (i + 1 < len)
            w |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < len)
            w |= s[i + 2];
        char q[4] = {b64_alphabet[w >> 18], b64_alphabet[(w >> 12) & 63],
                     i + 1 < len ? b64_alphabet[(w >> 6) & 63] : '=',
                     i + 2 < len ? b64_alphabet[w & 63] : '='};
        jt_put(&sb, q, 4);
    }
    return string_from(fn, &sb, err);
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard alphabet. Line breaks are skipped (MIME wraps lines); padding is optional
 * but, when present, must complete the last quantum. Anything else is invalid. */
static json_t *fn_base64_decode(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    if (!type_arg(fn, v, 0, JSON_STRING, NULL, err))
        return NULL;
    const unsigned char *s = (const unsigned char *)json_string_value(v[0]);
    size_t len = json_string_length(v[0]);
    jt_buf sb = {0};
    uint32_t w = 0;
    size_t k = 0, pad = 0; /* k: sextets in the current quantum */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int x = b64_value(c);
        if (x < 0 || pad) {
            free(sb.p);
            if (c > 0x20 && c < 0x7f)
                return fail(err, fn, "the argument is not valid base64: unexpected '%c' at offset %zu",
                            c, i);
            return fail(err, fn, "the argument is not valid base64: unexpected byte 0x%02x at offset %zu",
                        c, i);
        }
        w = (w << 6) | (uint32_t)x;
        if (++k == 4) {
            char out[3] = {(char)(w >> 16), (char)(w >> 8), (char)w};
            jt_put(&sb, out, 3);
            k = 0;
            w = 0;
        }
    }
    if (k == 1 || (pad && (k == 0 || k + pad != 4))) {
        free(sb.p);
        return fail(err, fn, "the argument is not valid base64: bad length or padding");
    }
    if (k == 2) {
        char out = (char)(w >> 4);
        jt_put(&sb, &out, 1);
    } else if (k == 3) {
        char out[2] = {(char)(w >> 10), (char)(w >> 2)};
        jt_put(&sb, out, 2);
    }
    if (sb.oom) {
        free(sb.p);
        return fail_oom(err, fn);
    }
    json_t *r = json_stringn(sb.p ? sb.p : "", sb.len); /* NULL: not UTF-8 */
    free(sb.p);
    if (!r)
        return fail(err, fn, "the decoded data is not valid UTF-8 text");
    return r;
}

static json_t *fn_hash(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    static const struct {
        const char *name;
        const EVP_MD *(*md)(void);
    } algs[] = {
        {"MD5", EVP_md5}, {"SHA-1", EVP_sha1}, {"SHA-256", EVP_sha256},
        {"SHA-384", EVP_sha384}, {"SHA-512", EVP_sha512},
    };
    if (!type_arg(fn, v, 0, JSON_STRING, "the data", err) ||
        !type_arg(fn, v, 1, JSON_STRING, "the algorithm", err))
        return NULL;
    const EVP_MD *md = NULL;
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        if (strcmp(json_string_value(v[1]), algs[i].name) == 0)
            md = algs[i].md();
    if (!md)
        return fail(err, fn, "unknown algorithm '%s' (argument 2): use MD5, SHA-1, SHA-256, SHA-384 or SHA-512",
                    json_string_value(v[1]));
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (!EVP_Digest(json_string_value(v[0]), json_string_length(v[0]), digest, &dlen, md, NULL))
        return fail(err, fn, "the %s digest failed in libcrypto", json_string_value(v[1]));
    static const char hex[] = "0123456789abcdef";
    char out[2 * EVP_MAX_MD_SIZE];
    for (unsigned int i = 0; i < dlen; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    json_t *r = json_stringn_nocheck(out, 2 * (size_t)dlen);
    return r ? r : fail_oom(err, fn);
}

static json_t *fn_json_merge(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    if (!type_arg(fn, v, 0, JSON_OBJECT, "the first object", err) ||
        !type_arg(fn, v, 1, JSON_OBJECT, "the second object", err))
        return NULL;
    if (!json_is_boolean(v[2]))
        return fail(err, fn, "the deep-merge flag (argument 3) must be false, got %s",
                    type_name(v[2]));
    if (json_is_true(v[2]))
        return fail(err, fn, "deep merging (true as argument 3) is not supported, as on AWS: pass false for a shallow merge");
    json_t *r = json_copy(v[0]); /* shallow: members are shared, never modified */
    if (!r || json_object_update(r, v[1]) != 0) {
        json_decref(r);
        return fail_oom(err, fn);
    }
    return r;
}

/* splitmix64: small, fast, and good enough for a function AWS itself documents as not
 * cryptographically secure. Seeded runs start from the seed, so they repeat. */
static uint64_t splitmix_next(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return mix64(*state);
}

static _Thread_local uint64_t rng_state;
static _Thread_local bool rng_ready;

static uint64_t unseeded_next(void)
{
    if (!rng_ready) {
        uint64_t seed;
        if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&seed;
        }
        rng_state = seed;
        rng_ready = true;
    }
    return splitmix_next(&rng_state);
}

static json_t *fn_math_random(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    json_int_t start, end, seed = 0;
    if (!int_arg(fn, v, 0, "the start", true, &start, err) ||
        !int_arg(fn, v, 1, "the end", true, &end, err) ||
        (n == 3 && !int_arg(fn, v, 2, "the seed", true, &seed, err)))
        return NULL;
    if (end <= start)
        return fail(err, fn, "the end (%" JSON_INTEGER_FORMAT ") must be greater than the start (%"
                    JSON_INTEGER_FORMAT "): the result lies in [start, end)", end, start);
    uint64_t width = (uint64_t)end - (uint64_t)start;
    uint64_t state = (uint64_t)seed;
    /* Rejection sampling: no modulo bias, whatever the width. */
    uint64_t threshold = -width % width, x;
    do
        x = n == 3 ? splitmix_next(&state) : unseeded_next();
    while (x < threshold);
    json_t *r = json_integer((json_int_t)((uint64_t)start + x % width));
    return r ? r : fail_oom(err, fn);
}

static json_t *fn_math_add(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    json_int_t a, b, sum;
    if (!int_arg(fn, v, 0, "the first value", true, &a, err) ||
        !int_arg(fn, v, 1, "the second value", true, &b, err))
        return NULL;
    if (__builtin_add_overflow(a, b, &sum))
        return fail(err, fn, "%" JSON_INTEGER_FORMAT " + %" JSON_INTEGER_FORMAT
                    " overflows a 64-bit integer", a, b);
    json_t *r = json_integer(sum);
    return r ? r : fail_oom(err, fn);
}

static size_t utf8_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if ((c >> 5) == 6)
        return 2;
    if ((c >> 4) == 14)
        return 3;
    if ((c >> 3) == 30)
        return 4;
    return 1;
}

/* Each character (code point) of the delimiter string separates pieces; empty pieces
 * are dropped, as AWS does ("a,,b" split on "," is ["a","b"]). */
static json_t *fn_string_split(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)n;
    if (!type_arg(fn, v, 0, JSON_STRING, "the string", err) ||
        !type_arg(fn, v, 1, JSON_STRING, "the delimiters", err))
        return NULL;
    const char *s = json_string_value(v[0]), *d = json_string_value(v[1]);
    size_t slen = json_string_length(v[0]), dlen = json_string_length(v[1]);
    bool ascii[128] = {false};
    bool multibyte = false;
    for (size_t i = 0; i < dlen; i++) {
        if ((unsigned char)d[i] < 0x80)
            ascii[(unsigned char)d[i]] = true;
        else
            multibyte = true;
    }
    json_t *r = json_array();
    if (!r)
        return fail_oom(err, fn);
    size_t piece = 0, i = 0;
    while (i <= slen) {
        size_t cl = 0; /* length of the delimiter at i, 0 when none */
        if (i < slen) {
            unsigned char c = (unsigned char)s[i];
            size_t l = utf8_len(c);
            if (l > slen - i)
                l = slen - i;
            if (c < 0x80) {
                cl = ascii[c] ? 1 : 0;
            } else if (multibyte) {
                for (size_t j = 0; j < dlen && !cl; j += utf8_len((unsigned char)d[j]))
                    if (utf8_len((unsigned char)d[j]) == l && j + l <= dlen &&
                        memcmp(d + j, s + i, l) == 0)
                        cl = l;
            }
            if (!cl) {
                i += l;
                continue;
            }
        }
        if (i > piece &&
            json_array_append_new(r, json_stringn_nocheck(s + piece, i - piece)) != 0) {
            json_decref(r);
            return fail_oom(err, fn);
        }
        if (i == slen)
            break;
        i += cl;
        piece = i;
    }
    return r;
}

static json_t *fn_uuid(const intrinsic *fn, json_t **v, size_t n, etl_error *err)
{
    (void)v;
    (void)n;
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t k = getrandom(b + got, sizeof b - got, 0);
        if (k < 0)
            return fail(err, fn, "getrandom failed: cannot draw a random UUID");
        got += (size_t)k;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    char out[36];
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    json_t *r = json_stringn_nocheck(out, sizeof out);
    return r ? r : fail_oom(err, fn);
}

static const fn_def functions[] = {
    {"States.Format", 1, SIZE_MAX, fn_format},
    {"States.StringToJson", 1, 1, fn_string_to_json},
    {"States.JsonToString", 1, 1, fn_json_to_string},
    {"States.Array", 0, SIZE_MAX, fn_array},
    {"States.ArrayPartition", 2, 2, fn_array_partition},
    {"States.ArrayContains", 2, 2, fn_array_contains},
    {"States.ArrayRange", 3, 3, fn_array_range},
    {"States.ArrayGetItem", 2, 2, fn_array_get_item},
    {"States.ArrayLength", 1, 1, fn_array_length},
    {"States.ArrayUnique", 1, 1, fn_array_unique},
    {"States.Base64Encode", 1, 1, fn_base64_encode},
    {"States.Base64Decode", 1, 1, fn_base64_decode},
    {"States.Hash", 2, 2, fn_hash},
    {"States.JsonMerge", 3, 3, fn_json_merge},
    {"States.MathRandom", 2, 3, fn_math_random},
    {"States.MathAdd", 2, 2, fn_math_add},
    {"States.StringSplit", 2, 2, fn_string_split},
    {"States.UUID", 0, 0, fn_uuid},
};

/* ---- parser ------------------------------------------------------------------------- */

typedef struct parser {
    const char *text;
    size_t pos;
    char *errbuf;
    size_t errlen;
} parser;

__attribute__((format(printf, 3, 4)))
static void perr(parser *ps, size_t off, const char *fmt, ...)
{
    if (!ps->errbuf || ps->errlen == 0)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ps->errbuf, ps->errlen, "%s at offset %zu in intrinsic '%.200s%s'", msg, off,
             ps->text, strlen(ps->text) > 200 ? "..." : "");
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_space(parser *ps)
{
    while (is_space(ps->text[ps->pos]))
        ps->pos++;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_word(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_';
}

/* Describes the character at off for an error message. */
static const char *what_at(parser *ps, size_t off, char *buf, size_t len)
{
    unsigned char c = (unsigned char)ps->text[off];
    if (c == 0)
        snprintf(buf, len, "end of text");
    else if (c >= 0x20 && c < 0x7f)
        snprintf(buf, len, "'%c'", c);
    else
        snprintf(buf, len, "byte 0x%02x", c);
    return buf;
}

static void arg_clear(arg *a)
{
    json_decref(a->value);
    if (a->path)
        path_free(a->path);
    intrinsic_free(a->call);
    free(a->holes);
}

static intrinsic *parse_call(parser *ps, int depth);

/* 'text' with \' \{ \} \\ escapes. Records where unescaped "{}" pairs land in the value. */
static bool parse_string(parser *ps, arg *a)
{
    size_t start = ps->pos++;
    jt_buf sb = {0};
    size_t *holes = NULL, n_holes = 0, cap_holes = 0;
    bool ok = false;
    for (;;) {
        char c = ps->text[ps->pos];
        if (c == '\0') {
            perr(ps, start, "unterminated string");
            goto out;
        }
        if (c == '\'') {
            ps->pos++;
            break;
        }
        if (c == '\\') {
            char e = ps->text[ps->pos + 1];
            if (e == '\0') {
                perr(ps, start, "unterminated string");
                goto out;
            }
            if (e != '\'' && e != '{' && e != '}' && e != '\\') {
                char what[16];
                perr(ps, ps->pos, "invalid escape '\\' before %s (only \\' \\{ \\} \\\\ are allowed)",
                     what_at(ps, ps->pos + 1, what, sizeof what));
                goto out;
            }
            jt_putc(&sb, e);
            ps->pos += 2;
            continue;
        }
        if (c == '{' && ps->text[ps->pos + 1] == '}') {
            if (n_holes == cap_holes) {
                cap_holes = cap_holes ? 2 * cap_holes : 4;
                size_t *h = realloc(holes, cap_holes * sizeof *h);
                if (!h) {
                    perr(ps, start, "out of memory");
                    goto out;
                }
                holes = h;
            }
            holes[n_holes++] = sb.len;
            jt_put(&sb, "{}", 2);
            ps->pos += 2;
            continue;
        }
        jt_putc(&sb, c);
        ps->pos++;
    }
    if (sb.oom) {
        perr(ps, start, "out of memory");
        goto out;
    }
    a->kind = ARG_CONST;
    a->value = json_stringn(sb.p ? sb.p : "", sb.len);
    if (!a->value) {
        perr(ps, start, "string is not valid UTF-8");
        goto out;
    }
    a->holes = holes;
    a->n_holes = n_holes;
    holes = NULL;
    ok = true;
out:
    free(sb.p);
    free(holes);
    return ok;
}

/* JSON number syntax. Integers stay exact int64; one that does not fit is an error
 * rather than a silently rounded real. */
static bool parse_number(parser *ps, arg *a)
{
    const char *t = ps->text;
    size_t start = ps->pos, i = start;
    bool is_int = true;
    if (t[i] == '-')
        i++;
    if (!is_digit(t[i])) {
        perr(ps, start, "invalid number");
        return false;
    }
    if (t[i] == '0' && is_digit(t[i + 1])) {
        perr(ps, start, "invalid number (leading zero)");
        return false;
    }
    while (is_digit(t[i]))
        i++;
    if (t[i] == '.') {
        is_int = false;
        i++;
        if (!is_digit(t[i])) {
            perr(ps, start, "invalid number (no digit after '.')");
            return false;
        }
        while (is_digit(t[i]))
            i++;
    }
    if (t[i] == 'e' || t[i] == 'E') {
        is_int = false;
        i++;
        if (t[i] == '+' || t[i] == '-')
            i++;
        if (!is_digit(t[i])) {
            perr(ps, start, "invalid number (no digit in the exponent)");
            return false;
        }
        while (is_digit(t[i]))
            i++;
    }
    if (is_word(t[i]) || t[i] == '.') {
        perr(ps, start, "invalid number");
        return false;
    }
    char buf[512];
    size_t len = i - start;
    if (len >= sizeof buf) {
        perr(ps, start, "number too long");
        return false;
    }
    memcpy(buf, t + start, len);
    buf[len] = '\0';
    errno = 0;
    if (is_int) {
        long long x = strtoll(buf, NULL, 10);
        if (errno == ERANGE) {
            perr(ps, start, "integer %s does not fit in 64 bits", buf);
            return false;
        }
        a->value = json_integer(x);
    } else {
        double d = strtod(buf, NULL);
        if (!isfinite(d)) {
            perr(ps, start, "number %s is out of range", buf);
            return false;
        }
        a->value = json_real(d);
    }
    if (!a->value) {
        perr(ps, start, "out of memory");
        return false;
    }
    a->kind = ARG_CONST;
    ps->pos = i;
    return true;
}

/* A path runs to the first ',' ')' or space outside brackets; inside brackets a quoted
 * name may contain anything, with \' and \\ escapes. path_compile checks the rest. */
static bool parse_path(parser *ps, arg *a)
{
    const char *t = ps->text;
    size_t start = ps->pos, i = start;
    int depth = 0;
    while (t[i]) {
        char c = t[i];
        if (depth == 0 && (c == ',' || c == ')' || is_space(c)))
            break;
        if (c == '[') {
            depth++;
        } else if (c == ']') {
            if (depth > 0)
                depth--;
        } else if (c == '\'' && depth > 0) {
            for (i++; t[i] && t[i] != '\''; i++)
                if (t[i] == '\\' && t[i + 1])
                    i++;
            if (!t[i]) {
                perr(ps, start, "unterminated quoted name in path");
                return false;
            }
        }
        i++;
    }
    char *text = strndup(t + start, i - start);
    if (!text) {
        perr(ps, start, "out of memory");
        return false;
    }
    char msg[256];
    a->path = path_compile(text, PATH_QUERY, msg, sizeof msg);
    free(text);
    if (!a->path) {
        perr(ps, start, "invalid path argument: %s", msg);
        return false;
    }
    a->kind = ARG_PATH;
    ps->pos = i;
    return true;
}

static bool parse_keyword(parser *ps, const char *word, json_t *value, arg *a)
{
    size_t n = strlen(word);
    if (strncmp(ps->text + ps->pos, word, n) != 0 || is_word(ps->text[ps->pos + n]))
        return false;
    a->kind = ARG_CONST;
    a->value = value;
    ps->pos += n;
    return true;
}

static bool parse_arg(parser *ps, arg *a, int depth)
{
    char c = ps->text[ps->pos];
    if (c == '\'')
        return parse_string(ps, a);
    if (c == '$')
        return parse_path(ps, a);
    if (c == '-' || is_digit(c))
        return parse_number(ps, a);
    if (parse_keyword(ps, "true", json_true(), a) || parse_keyword(ps, "false", json_false(), a) ||
        parse_keyword(ps, "null", json_null(), a))
        return true;
    if (strncmp(ps->text + ps->pos, "States.", 7) == 0) {
        a->kind = ARG_CALL;
        a->call = parse_call(ps, depth + 1);
        return a->call != NULL;
    }
    char what[16];
    perr(ps, ps->pos, "expected an argument (a 'string', a number, true, false, null, a path or "
         "an intrinsic call), found %s", what_at(ps, ps->pos, what, sizeof what));
    return false;
}

static intrinsic *parse_call(parser *ps, int depth)
{
    size_t start = ps->pos;
    intrinsic *fn = NULL;
    if (depth > MAX_NESTING) {
        perr(ps, start, "intrinsic calls are nested more than %d deep", MAX_NESTING);
        return NULL;
    }
    if (strncmp(ps->text + start, "States.", 7) != 0) {
        perr(ps, start, "expected an intrinsic call 'States.Name(...)'");
        return NULL;
    }
    size_t end = start + 7;
    while (is_word(ps->text[end]))
        end++;
    const fn_def *def = NULL;
    for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++)
        if (strlen(functions[i].name) == end - start &&
            strncmp(functions[i].name, ps->text + start, end - start) == 0)
            def = &functions[i];
    if (!def) {
        perr(ps, start, "unknown intrinsic function '%.*s'", (int)(end - start > 64 ? 64 : end - start),
             ps->text + start);
        return NULL;
    }
    ps->pos = end;
    skip_space(ps);
    if (ps->text[ps->pos] != '(') {
        char what[16];
        perr(ps, ps->pos, "expected '(' after %s, found %s", def->name,
             what_at(ps, ps->pos, what, sizeof what));
        return NULL;
    }
    ps->pos++;
    fn = calloc(1, sizeof *fn);
    if (!fn) {
        perr(ps, start, "out of memory");
        return NULL;
    }
    fn->def = def;
    size_t cap = 0;
    skip_space(ps);
    if (ps->text[ps->pos] == ')') {
        ps->pos++;
    } else {
        for (;;) {
            skip_space(ps);
            if (fn->n_args == cap) {
                cap = cap ? 2 * cap : 4;
                arg *na = realloc(fn->args, cap * sizeof *na);
                if (!na) {
                    perr(ps, start, "out of memory");
                    goto fail;
                }
                fn->args = na;
            }
            arg *a = &fn->args[fn->n_args];
            memset(a, 0, sizeof *a);
            bool ok = parse_arg(ps, a, depth);
            fn->n_args++; /* counted even when half-built: arg_clear frees what exists */
            if (!ok)
                goto fail;
            if (a->kind == ARG_PATH && path_is_context(a->path))
                fn->uses_ctx = true;
            if (a->kind == ARG_CALL && a->call->uses_ctx)
                fn->uses_ctx = true;
            skip_space(ps);
            char c = ps->text[ps->pos];
            if (c == ',') {
                ps->pos++;
                continue;
            }
            if (c == ')') {
                ps->pos++;
                break;
            }
            char what[16];
            perr(ps, ps->pos, "expected ',' or ')' in the arguments of %s, found %s", def->name,
                 what_at(ps, ps->pos, what, sizeof what));
            goto fail;
        }
    }
    if (fn->n_args < def->min_args || fn->n_args > def->max_args) {
        char expected[64];
        if (def->max_args == SIZE_MAX)
            snprintf(expected, sizeof expected, "at least %zu argument%s", def->min_args,
                     def->min_args == 1 ? "" : "s");
        else if (def->min_args == def->max_args)
            snprintf(expected, sizeof expected, "%zu argument%s", def->min_args,
                     def->min_args == 1 ? "" : "s");
        else
            snprintf(expected, sizeof expected, "%zu to %zu arguments", def->min_args,
                     def->max_args);
        perr(ps, start, "%s takes %s, got %zu", def->name, expected, fn->n_args);
        goto fail;
    }
    return fn;
fail:
    intrinsic_free(fn);
    return NULL;
}

/* ---- public interface --------------------------------------------------------------- */

bool intrinsic_is_call(const char *text)
{
    if (!text)
        return false;
    while (is_space(*text))
        text++;
    return strncmp(text, "States.", 7) == 0;
}

intrinsic *intrinsic_compile(const char *text, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!text) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "no intrinsic text");
        return NULL;
    }
    parser ps = {.text = text, .pos = 0, .errbuf = errbuf, .errlen = errlen};
    skip_space(&ps);
    intrinsic *fn = parse_call(&ps, 1);
    if (!fn)
        return NULL;
    skip_space(&ps);
    if (text[ps.pos] != '\0') {
        char what[16];
        perr(&ps, ps.pos, "unexpected %s after the end of the call", what_at(&ps, ps.pos, what, sizeof what));
        intrinsic_free(fn);
        return NULL;
    }
    return fn;
}

void intrinsic_free(intrinsic *fn)
{
    if (!fn)
        return;
    for (size_t i = 0; i < fn->n_args; i++)
        arg_clear(&fn->args[i]);
    free(fn->args);
    free(fn);
}

bool intrinsic_uses_context(const intrinsic *fn)
{
    return fn && fn->uses_ctx;
}

static json_t *eval_call(const intrinsic *fn, json_t *input, ctx_provider *ctx, etl_error *err);

static json_t *eval_arg(const intrinsic *fn, size_t i, json_t *input, ctx_provider *ctx,
                        etl_error *err)
{
    const arg *a = &fn->args[i];
    switch (a->kind) {
    case ARG_CONST: return json_incref(a->value);
    case ARG_CALL: return eval_call(a->call, input, ctx, err);
    case ARG_PATH: break;
    }
    json_t *root = input;
    if (path_is_context(a->path)) {
        root = ctx_get(ctx);
        if (!root)
            return fail(err, fn, "argument %zu reads the context object with '%s', but no context object is available",
                        i + 1, path_text(a->path));
    }
    if (!root)
        return fail(err, fn, "argument %zu: path '%s' has no input to read", i + 1,
                    path_text(a->path));
    json_t *v = path_query(a->path, root);
    if (!v)
        return fail(err, fn, "argument %zu: path '%s' matched nothing in the %s", i + 1,
                    path_text(a->path), root == input ? "input" : "context object");
    return v;
}

static json_t *eval_call(const intrinsic *fn, json_t *input, ctx_provider *ctx, etl_error *err)
{
    json_t *stackv[STACK_ARGS];
    json_t **v = stackv;
    json_t *result = NULL;
    size_t done = 0;
    if (fn->n_args > STACK_ARGS && !(v = malloc(fn->n_args * sizeof *v)))
        return fail_oom(err, fn);
    for (; done < fn->n_args; done++)
        if (!(v[done] = eval_arg(fn, done, input, ctx, err)))
            goto out;
    result = fn->def->impl(fn, v, fn->n_args, err);
out:
    for (size_t i = 0; i < done; i++)
        json_decref(v[i]);
    if (v != stackv)
        free(v);
    return result;
}

json_t *intrinsic_eval(const intrinsic *fn, json_t *input, ctx_provider *ctx, etl_error *err)
{
    if (!fn) {
        etl_fail(err, ETL_EINVAL, FAILURE_NAME, "no intrinsic function to evaluate");
        return NULL;
    }
    return eval_call(fn, input, ctx, err);
}
