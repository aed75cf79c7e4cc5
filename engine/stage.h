/* Staged files: the RFC 4180 CSV files (plus a JSON manifest) that carry rows from an
 * extract to a load, with bounded memory whatever the row count.
 *
 * extract --stage_writer--> DIR/NAME.csv + DIR/NAME.csv.manifest.json --stage_reader--> load
 *
 * Format: UTF-8 (or any bytes for binary columns), fields separated by ',', records
 * ended by "\n" (the reader accepts "\r\n" too, as RFC 4180 has it). A field is quoted with '"' when it is empty (the empty string is written ""), or
 * contains '"', ',', '\r' or '\n', or starts/ends with a space; quotes inside are
 * doubled. SQL NULL is an unquoted empty field. So NULL and "" stay distinct. The first
 * record is the header (column names). Binary bytes are written as they are (quoted
 * when needed): the reader returns exactly the bytes written.
 *
 * Atomicity: the writer writes DIR/.NAME.csv.tmp-XXXXXX, fsyncs it, renames it to
 * DIR/NAME.csv, then writes the manifest the same way (temp + fsync + rename) and fsyncs
 * DIR. A staged file without a manifest is incomplete and never read.
 *
 * Manifest (NAME.csv.manifest.json): {"format":"etlrun-csv-1","file":"NAME.csv",
 * "columns":[{"name","type"}],"rows":N,"bytes":B,"crc32c":"xxxxxxxx"} where bytes and
 * crc32c (CRC-32C/Castagnoli, lowercase hex of 8 digits) cover the whole CSV file,
 * header included.
 *
 * Threads: a writer or reader is used by one thread at a time; different ones are
 * independent. Memory: a writer buffers at most 256 KiB; a reader holds one record
 * (bounded by max_record, default 64 MiB: a longer record is an error). */
#ifndef ETL_STAGE_H
#define ETL_STAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <etlrun/error.h>

typedef struct stage_writer stage_writer;
typedef struct stage_reader stage_reader;

typedef struct stage_column {
    const char *name;
    const char *type; /* NULL = "text" */
} stage_column;

/* CRC-32C (Castagnoli), incremental: crc = stage_crc32c(crc, buf, len), starting at 0. */
uint32_t stage_crc32c(uint32_t crc, const void *buf, size_t len);

/* Create DIR/NAME.csv (dir is created with mode 0700 if missing). Errors:
 * Etl.StagingFailed (ETL_EIO) naming the path and errno text, e.g. disk full. */
stage_writer *stage_writer_open(const char *dir, const char *name, const stage_column *cols,
                                size_t n_cols, etl_error *err);
/* One record of n_cols fields; fields[i] == NULL is SQL NULL. */
etl_status stage_writer_row(stage_writer *w, const char *const *fields, const size_t *lens,
                            etl_error *err);
uint64_t stage_writer_rows(const stage_writer *w);
uint64_t stage_writer_bytes(const stage_writer *w);
/* Complete the file (see Atomicity) and free w. *out_manifest (may be NULL) gets a new
 * reference to the manifest object with "file" set to the absolute path. */
etl_status stage_writer_finish(stage_writer *w, json_t **out_manifest, etl_error *err);
/* Remove the temporary file and free w. NULL is fine. */
void stage_writer_abort(stage_writer *w);

/* Open path (the .csv) after reading its manifest and verifying size and CRC32C of the
 * file (one streaming pass). Errors: Etl.IntegrityError (ETL_EINVAL) for a missing or
 * malformed manifest, or a size/CRC mismatch, naming the file and both values;
 * Etl.StagingFailed for I/O errors. */
/* Remove from dir the temporary files of writers that were killed (a run killed by
 * SIGKILL or a crash): only what a live writer of dir could own, so call it only when
 * none can be writing there. Returns how many were removed, -1 when dir cannot be
 * read. */
int stage_remove_partial(const char *dir);

stage_reader *stage_reader_open(const char *path, etl_error *err);
const json_t *stage_reader_manifest(const stage_reader *r);
/* 1 = a record in *out_fields, *out_lens and *out_n (valid until the next call; NULL field
 * = SQL NULL), 0 = end (the row count is then checked against the manifest: a
 * mismatch is Etl.IntegrityError), -1 = error (malformed CSV: Etl.IntegrityError with
 * the line number). The header record is consumed by open and checked against the
 * manifest's columns. */
int stage_reader_row(stage_reader *r, const char *const **out_fields, const size_t **out_lens,
                     size_t *out_n, etl_error *err);
/* Raw bytes of the records (everything after the header line), for loaders whose bulk
 * format is the staged CSV itself (PostgreSQL COPY ... FORMAT csv). Returns the number
 * of bytes read, 0 at the end, -1 on an I/O error. Do not mix with stage_reader_row on
 * one reader. (The whole file's size and CRC were verified by open.) */
ssize_t stage_reader_read(stage_reader *r, char *buf, size_t cap, etl_error *err);
void stage_reader_close(stage_reader *r);

/* --- general CSV reading (the staged-file reader is built on it; the host offers it to
 * connectors as host->csv_*, e.g. for the file connector's CSV sources) --- */
typedef struct csv_reader csv_reader;

typedef struct csv_dialect {
    char delimiter;         /* default ',' */
    char quote;             /* default '"'; '\0' = no quoting at all */
    bool empty_is_null;     /* an unquoted empty field is NULL (staged files: true) */
    size_t max_record;      /* bytes; 0 = 64 MiB */
} csv_dialect;

/* Stream records from path ("-" is not special). Errors: Etl.StagingFailed (ETL_EIO)
 * naming the file for I/O errors. */
csv_reader *csv_reader_open(const char *path, const csv_dialect *d, etl_error *err);
/* 1 = a record (fields valid until the next call), 0 = end of file, -1 = malformed
 * (an unterminated quote, a quote inside an unquoted field, text after a closing quote,
 * a record over max_record): err names the file, the line and the problem. A final
 * record without a newline is a record. Blank lines are records with one empty field.
 * Each non-NULL field is also followed by a NUL byte (not counted in its length). */
int csv_reader_row(csv_reader *r, const char *const **out_fields, const size_t **out_lens,
                   size_t *out_n, etl_error *err);
/* Line number (from 1) where the last returned record started. */
uint64_t csv_reader_line(const csv_reader *r);
/* The file's bytes after the last record returned, unparsed (stage_reader_read is built
 * on it): up to cap bytes into buf, 0 at the end, -1 on a read error (Etl.StagingFailed).
 * csv_reader_row must not be called after it. */
ssize_t csv_reader_read(csv_reader *r, char *buf, size_t cap, etl_error *err);
void csv_reader_close(csv_reader *r);

#endif
