/* Diagnostics: definition errors collected with their source position, so that
 * validation reports every problem at once as FILE:LINE:COL: message. */
#ifndef ETL_DIAG_H
#define ETL_DIAG_H

#include <stddef.h>
#include <stdio.h>

typedef struct doc_pos {
    int line; /* 1-based; 0 when unknown */
    int col;  /* 1-based */
} doc_pos;

typedef struct diag diag;

/* file is copied. Returns NULL on allocation failure. Free with diag_free(). */
diag *diag_new(const char *file);
void diag_free(diag *d);
/* Record an error at pos. Messages are short, lower-case, and say what to do. */
void diag_add(diag *d, doc_pos pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
size_t diag_count(const diag *d);
const char *diag_file(const diag *d);
/* Print every error as "FILE:LINE:COL: message\n", sorted by position, duplicates removed. */
void diag_print(const diag *d, FILE *out);
/* The i-th message, formatted as above without newline; valid until diag_free. Sorted. */
const char *diag_message(diag *d, size_t i);

#endif
