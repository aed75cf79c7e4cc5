/* Compact JSON text with shortest round-trip reals: see jsontext.h. */
#include "jsontext.h"

#include <stdlib.h>
#include <string.h>

/* ---- growable byte buffer ---------------------------------------------------------- */


void jt_put(jt_buf *sb, const char *s, size_t n)
{
    if (sb->oom || n == 0)
        return;
    if (sb->len + n > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 64;
        while (cap < sb->len + n)
            cap *= 2;
        char *p = realloc(sb->p, cap);
        if (!p) {
            sb->oom = true;
            return;
        }
        sb->p = p;
        sb->cap = cap;
    }
    memcpy(sb->p + sb->len, s, n);
    sb->len += n;
}

void jt_putc(jt_buf *sb, char c)
{
    if (sb->len < sb->cap) {
        sb->p[sb->len++] = c;
        return;
    }
    jt_put(sb, &c, 1);
}

/* Decimal digits of v, without snprintf (a JSON text of numbers is mostly this). */
void jt_int(jt_buf *sb, json_int_t v)
{
    char buf[24];
    char *end = buf + sizeof buf, *p = end;
    /* through unsigned: -LLONG_MIN does not exist as a long long */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    jt_put(sb, p, (size_t)(end - p));
}

/* ---- compact JSON text --------------------------------------------------------------
 * Written here rather than with json_dumps so that reals print in their shortest form
 * that reads back to the same double (json_dumps prints 0.1 as 0.10000000000000001),
 * and so that Format appends into one buffer. Keys keep insertion order. */

void jt_string_body(jt_buf *sb, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* start of the pending run of bytes that need no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        jt_put(sb, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        jt_put(sb, esc, elen);
    }
    jt_put(sb, s + run, n - run);
}

void jt_string(jt_buf *sb, const char *s, size_t n)
{
    jt_putc(sb, '"');
    jt_string_body(sb, s, n);
    jt_putc(sb, '"');
}

static void put_real(jt_buf *sb, double d)
{
    char buf[40];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    jt_put(sb, buf, (size_t)n);
    /* A real stays a real when read back: 2.0 prints as "2.0", not "2". */
    if (!strpbrk(buf, ".eEni"))
        jt_put(sb, ".0", 2);
}

void jt_value(jt_buf *sb, const json_t *v)
{
    for (size_t i = 0; i < sb->nknown; i++)
        if (sb->known[i].v == v) {
            jt_put(sb, sb->known[i].text, sb->known[i].len);
            return;
        }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t klen;
        json_t *val;
        bool first = true;
        jt_putc(sb, '{');
        json_object_keylen_foreach((json_t *)v, key, klen, val) {
            if (!first)
                jt_putc(sb, ',');
            first = false;
            jt_string(sb, key, klen);
            jt_putc(sb, ':');
            jt_value(sb, val);
        }
        jt_putc(sb, '}');
        break;
    }
    case JSON_ARRAY: {
        jt_putc(sb, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                jt_putc(sb, ',');
            jt_value(sb, json_array_get(v, i));
        }
        jt_putc(sb, ']');
        break;
    }
    case JSON_STRING:
        jt_string(sb, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: jt_int(sb, json_integer_value(v)); break;
    case JSON_REAL: put_real(sb, json_real_value(v)); break;
    case JSON_TRUE: jt_put(sb, "true", 4); break;
    case JSON_FALSE: jt_put(sb, "false", 5); break;
    case JSON_NULL: jt_put(sb, "null", 4); break;
    }
}


char *jt_finish(jt_buf *b, size_t *out_len)
{
    jt_putc(b, '\0');
    if (b->oom) {
        free(b->p);
        b->p = NULL;
        return NULL;
    }
    if (out_len)
        *out_len = b->len - 1;
    char *p = b->p;
    b->p = NULL;
    return p;
}

char *jsontext_dumps(const json_t *v, size_t *out_len)
{
    jt_buf b = {0};
    jt_value(&b, v);
    return jt_finish(&b, out_len);
}

int jsontext_dumpf(const json_t *v, FILE *f)
{
    size_t len;
    char *s = jsontext_dumps(v, &len);
    if (!s)
        return -1;
    int rc = fwrite(s, 1, len, f) == len ? 0 : -1;
    free(s);
    return rc;
}
