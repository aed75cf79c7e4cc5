/* Compact JSON text, the one serializer of etlrun's outputs (final output, history,
 * task input, States.JsonToString, States.Format). Unlike json_dumps, reals print in
 * the shortest form that reads back to the same double (0.1, not 0.10000000000000001)
 * and stay reals (2.0, not 2); integers are exact; keys keep insertion order. */
#ifndef ETL_JSONTEXT_H
#define ETL_JSONTEXT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* A value whose text is made already: jt_value copies the text instead of walking the
 * value again (a run's input goes into its size, meta.json and the history; its output
 * into the history and onto stdout). Whoever sets it up keeps v alive, so that no other
 * value can have its address; values are never changed once made. */
typedef struct jt_known {
    const json_t *v;
    const char *text;
    size_t len;
} jt_known;

typedef struct jt_buf {
    char *p;      /* not NUL-terminated until jt_finish */
    size_t len, cap;
    bool oom;     /* sticky: checked once at the end */
    const jt_known *known; /* optional: values whose text jt_value copies */
    size_t nknown;
} jt_buf;

void jt_put(jt_buf *b, const char *s, size_t n);
void jt_putc(jt_buf *b, char c);
/* Append the n bytes at s as a JSON string (quoted, escaped), or only its escaped
 * text (no quotes: for a string made of parts). */
void jt_string(jt_buf *b, const char *s, size_t n);
void jt_string_body(jt_buf *b, const char *s, size_t n);
/* Append v in decimal. */
void jt_int(jt_buf *b, json_int_t v);
/* Append v as compact JSON (the text of a value in b->known is copied). */
void jt_value(jt_buf *b, const json_t *v);
/* NUL-terminate and hand over the text (caller frees); NULL after an allocation failure
 * (the buffer is then freed). */
char *jt_finish(jt_buf *b, size_t *out_len);

/* v as compact JSON text, malloc'd (caller frees); NULL on allocation failure. */
char *jsontext_dumps(const json_t *v, size_t *out_len);
/* Write v as compact JSON to f; 0 on success, -1 on a write or allocation error. */
int jsontext_dumpf(const json_t *v, FILE *f);

#endif
