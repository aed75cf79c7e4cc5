/* mysql.load: a staged file bulk-loaded into a table in one transaction, with its row in
 * the load ledger.
 *
 * staged CSV --host->stage_read_open (size + CRC32C checked)--> rows
 *   --infile_read: MySQL's escaped text (tab-separated, \N = NULL)-->
 *   LOAD DATA LOCAL INFILE ... (cols | @vars) SET col = UNHEX(...) --> table
 *
 * Steps: open and verify the staged file; (the ledger table and, with create, the target:
 * CREATE TABLE IF NOT EXISTS, before the transaction, because DDL commits implicitly in
 * MySQL); START TRANSACTION; look (pipeline, run id, state, key) up in the ledger and
 * stop there when this run already committed it; delete per mode (DELETE, never
 * TRUNCATE, which commits); LOAD DATA into the table (merge: into a temporary table,
 * then INSERT ... SELECT ... ON DUPLICATE KEY UPDATE); the server's warnings must be
 * none (LOCAL turns bad values and duplicate keys into warnings and skipped rows) and
 * the rows loaded must be the manifest's; INSERT the ledger row; COMMIT. Any failure
 * rolls back. The staged file and its manifest are removed after the COMMIT (or the
 * skip) unless keep.
 *
 * Trap: the connection's LOCAL INFILE handler is ours for its whole life and refuses
 * every request unless a load is running: with the library's default handler a
 * malicious server could ask for any local file in reply to any query. */
#include "myc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#define PENDING_TARGET ((size_t)64 << 10) /* encode rows until this much is pending */
#define SKIPPED "already loaded in this run (ledger)"

/* Widths of the ledger's identity columns, in bytes (VARBINARY: compared byte for byte,
 * no collation folds 'A' into 'a' or ignores trailing spaces); their sum stays within
 * InnoDB's 3072-byte index key. */
#define LEDGER_MAX_PIPELINE 255
#define LEDGER_MAX_RUN_ID 128
#define LEDGER_MAX_STATE 255
#define LEDGER_MAX_KEY 2048
#define STR(x) STR_(x)
#define STR_(x) #x

/* A member of etl_host that the host's struct_size covers (an older host lacks it). */
#define HOST_HAS(h, m) ((h)->struct_size >= offsetof(etl_host, m) + sizeof((h)->m) && (h)->m)

typedef enum load_mode { MODE_APPEND = 0, MODE_REPLACE, MODE_TRUNCATE, MODE_MERGE } load_mode;
static const char *const mode_names[] = {"append", "replace", "truncate", "merge"};

/* ---------- the LOCAL INFILE feeder ---------- */

struct myc_infile {
    const etl_host *h;
    etl_task *task;
    etl_stage_reader *reader;
    size_t n_cols;
    char *pending;            /* encoded rows not yet handed to the library */
    size_t len, pos, cap;
    uint64_t rows;            /* rows encoded */
    uint64_t progress_bytes;
    bool eof;
    bool failed;
    etl_error err;            /* why the feed failed (the library only sees a message) */
};

static bool reserve(myc_infile *f, size_t n)
{
    if (f->cap - f->len >= n)
        return true;
    size_t cap = f->cap ? f->cap : PENDING_TARGET * 2;
    while (cap - f->len < n)
        cap *= 2;
    char *p = realloc(f->pending, cap);
    if (!p)
        return false;
    f->pending = p;
    f->cap = cap;
    return true;
}

/* The escape letter of each byte LOAD DATA would misread, 0 for the others. */
static const char escape_of[256] = {['\\'] = '\\', ['\t'] = 't', ['\n'] = 'n', ['\r'] = 'r',
                                    [0] = '0'};

/* One row in LOAD DATA's default text format: fields separated by tab, lines ended by
 * newline, NULL as \N, and backslash, tab, newline, CR and NUL escaped, so every value,
 * the empty string included, comes back exactly. Runs of plain bytes are copied whole. */
static bool encode_row(myc_infile *f, const char *const *fields, const size_t *lens, size_t n)
{
    size_t need = n + 1;
    for (size_t i = 0; i < n; i++)
        need += fields[i] ? 2 * lens[i] : 2;
    if (!reserve(f, need))
        return false;
    char *o = f->pending + f->len;
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = '\t';
        if (!fields[i]) {
            *o++ = '\\';
            *o++ = 'N';
            continue;
        }
        const unsigned char *s = (const unsigned char *)fields[i], *end = s + lens[i];
        while (s < end) {
            const unsigned char *run = s;
            while (s < end && !escape_of[*s])
                s++;
            memcpy(o, run, (size_t)(s - run));
            o += s - run;
            if (s < end) {
                *o++ = '\\';
                *o++ = escape_of[*s++];
            }
        }
    }
    *o++ = '\n';
    f->len = (size_t)(o - f->pending);
    return true;
}

/* Encode rows until PENDING_TARGET bytes are pending or the file ends. */
static int refill(myc_infile *f)
{
    const etl_host *h = f->h;
    if (f->pos) {
        memmove(f->pending, f->pending + f->pos, f->len - f->pos);
        f->len -= f->pos;
        f->pos = 0;
    }
    while (!f->eof && f->len < PENDING_TARGET) {
        const char *const *fields;
        const size_t *lens;
        size_t n;
        int rc = h->stage_read_row(f->reader, &fields, &lens, &n, &f->err);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            f->eof = true;
            break;
        }
        if (n != f->n_cols) {
            h->fail(&f->err, ETL_EINVAL, "Etl.IntegrityError", false,
                    "staged file: row %llu has %zu fields, the manifest has %zu columns",
                    (unsigned long long)f->rows + 1, n, f->n_cols);
            return -1;
        }
        if (!encode_row(f, fields, lens, n)) {
            h->fail(&f->err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
            return -1;
        }
        f->rows++;
        if (f->rows % MYC_PROGRESS_ROWS == 0) {
            h->progress(f->task, MYC_PROGRESS_ROWS, f->progress_bytes);
            f->progress_bytes = 0;
            if (h->cancelled(f->task)) {
                h->fail(&f->err, ETL_ECANCELLED, "States.Cancelled", false,
                        "mysql: the load was cancelled");
                return -1;
            }
        }
    }
    return 0;
}

static int infile_init(void **ptr, const char *filename, void *userdata)
{
    (void)filename; /* the file is the one the load named; the name is only a token */
    etl_conn *c = userdata;
    *ptr = c->infile;
    return c->infile ? 0 : 1;
}

static int infile_read(void *ptr, char *buf, unsigned int buf_len)
{
    myc_infile *f = ptr;
    if (f->failed)
        return -1;
    if (f->pos == f->len && !f->eof && refill(f) != 0) {
        f->failed = true;
        return -1;
    }
    size_t n = f->len - f->pos;
    if (n > buf_len)
        n = buf_len;
    memcpy(buf, f->pending + f->pos, n);
    f->pos += n;
    f->progress_bytes += n;
    return (int)n;
}

static void infile_end(void *ptr) { (void)ptr; }

static int infile_error(void *ptr, char *buf, unsigned int buf_len)
{
    myc_infile *f = ptr;
    snprintf(buf, buf_len, "%s", f ? f->err.cause
                                   : "LOCAL INFILE request refused: etlrun sends local data "
                                     "only for its own loads");
    return 2000; /* CR_UNKNOWN_ERROR */
}

void myc_infile_install(etl_conn *c)
{
    mysql_set_local_infile_handler(c->my, infile_init, infile_read, infile_end, infile_error, c);
}

/* ---------- SQL text ---------- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->s && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* Append a quoted identifier (table: dotted). */
static void sb_ident(sbuf *b, const char *name, bool dotted)
{
    size_t n = 2 * strlen(name) + 8;
    char *q = malloc(n);
    if (!q) {
        b->oom = true;
        return;
    }
    q[0] = '\0';
    if (myc_quote_ident(name, dotted, q, n))
        sb_add(b, "%s", q);
    else
        b->oom = true;
    free(q);
}

/* ---------- Parameters ---------- */

typedef struct load_opts {
    const char *file;
    const char *table;
    load_mode mode;
    const char *key_column;
    etl_json *key;            /* borrowed */
    etl_json *primary_key;    /* array of strings, borrowed */
    etl_json *columns;        /* array of strings, borrowed */
    bool create, keep;
} load_opts;

static const char *const load_keys[] = {"connection", "file", "table", "mode", "key_column",
                                        "key", "primary_key", "create", "columns", "keep",
                                        NULL};

static void check_names(myc_report *r, etl_json *v, const char *field)
{
    const etl_host *h = r->host;
    if (h->json_type(v) != ETL_JSON_ARRAY || h->json_size(v) == 0) {
        myc_problem(r, field, "must be a non-empty list of column names");
        return;
    }
    for (size_t i = 0; i < h->json_size(v); i++) {
        const char *s = h->json_string(h->json_at(v, i), NULL);
        if (!s || !*s) {
            char f[64];
            snprintf(f, sizeof f, "%s.%zu", field, i);
            myc_problem(r, f, "must be a column name");
        }
    }
}

static void parse_load(myc_report *r, const etl_json *params, load_opts *o)
{
    const etl_host *h = r->host;
    memset(o, 0, sizeof *o);
    if (h->json_type(params) != ETL_JSON_OBJECT) {
        myc_problem(r, "", "Parameters must be an object");
        return;
    }
    myc_known_keys(r, params, load_keys);
    if (!myc_param(h, params, "file", NULL))
        myc_problem(r, "", "'file' is required: the staged .csv (e.g. file.$: $.extract.file)");
    if (!myc_param(h, params, "table", NULL))
        myc_problem(r, "", "'table' is required: the target table, optionally schema.table");
    myc_get_string(r, params, "file", &o->file);
    myc_get_string(r, params, "table", &o->table);
    const char *mode = NULL;
    myc_get_string(r, params, "mode", &mode);
    bool mode_known = myc_param(h, params, "mode", NULL) != MYC_DYNAMIC;
    if (mode) {
        mode_known = false;
        for (int i = 0; i < 4; i++)
            if (strcmp(mode, mode_names[i]) == 0) {
                o->mode = (load_mode)i;
                mode_known = true;
            }
        if (!mode_known)
            myc_problem(r, "mode", "must be append, replace, truncate or merge");
    }
    myc_get_string(r, params, "key_column", &o->key_column);
    int key = myc_param(h, params, "key", &o->key);
    if (key == MYC_LITERAL && o->mode == MODE_REPLACE) {
        etl_json_type t = h->json_type(o->key);
        if (t == ETL_JSON_ARRAY || t == ETL_JSON_OBJECT || t == ETL_JSON_NULL)
            myc_problem(r, "key", "must be a string or a number");
    }
    int pk = myc_param(h, params, "primary_key", &o->primary_key);
    if (pk == MYC_LITERAL)
        check_names(r, o->primary_key, "primary_key");
    /* relations, when the mode is known (a "mode.$" is checked at run time) */
    if (mode_known) {
        const char *name = mode_names[o->mode];
        bool replace = o->mode == MODE_REPLACE, merge = o->mode == MODE_MERGE;
        bool has_kc = myc_param(h, params, "key_column", NULL) != MYC_ABSENT;
        if (replace && !has_kc)
            myc_problem(r, "key_column", "mode replace needs key_column: the column whose rows "
                                         "equal key are replaced");
        if (replace && key == MYC_ABSENT)
            myc_problem(r, "key", "mode replace needs key: the value of key_column to replace");
        if (!replace && has_kc)
            myc_problem(r, "key_column", "applies to mode replace only (mode is %s)", name);
        if (merge && pk == MYC_ABSENT)
            myc_problem(r, "primary_key", "mode merge needs primary_key: the list of columns "
                                          "that identify a row (a unique key of the table)");
        if (!merge && pk != MYC_ABSENT)
            myc_problem(r, "primary_key", "applies to mode merge only (mode is %s)", name);
    }
    if (o->table) {
        const char *dot = strchr(o->table, '.');
        if (o->table[0] == '.' || (dot && (!dot[1] || strchr(dot + 1, '.'))))
            myc_problem(r, "table", "'%s' must be table or schema.table", o->table);
    }
    if (myc_param(h, params, "columns", &o->columns) == MYC_LITERAL)
        check_names(r, o->columns, "columns");
    myc_get_bool(r, params, "create", &o->create);
    myc_get_bool(r, params, "keep", &o->keep);
}

bool myc_load_check(const etl_host *h, const etl_json *params, etl_checker *chk)
{
    myc_report r = {.host = h, .chk = chk, .what = "mysql.load"};
    load_opts o;
    parse_load(&r, params, &o);
    return r.problems == 0;
}

/* ---------- the load ---------- */

static bool is_texty(const char *ddl)
{
    size_t n = strlen(ddl);
    return (n >= 4 && strcmp(ddl + n - 4, "text") == 0) ||
           (n >= 4 && strcmp(ddl + n - 4, "blob") == 0) || strcmp(ddl, "json") == 0 ||
           strcmp(ddl, "geometry") == 0;
}

static bool in_list(const etl_host *h, etl_json *list, const char *name)
{
    for (size_t i = 0; list && i < h->json_size(list); i++)
        if (strcmp(h->json_string(h->json_at(list, i), NULL), name) == 0)
            return true;
    return false;
}

static void build_create(const etl_host *h, sbuf *b, const load_opts *o, const char *const *names,
                         const char *const *types, size_t n)
{
    sb_add(b, "CREATE TABLE IF NOT EXISTS ");
    sb_ident(b, o->table, true);
    sb_add(b, " (");
    for (size_t i = 0; i < n; i++) {
        char ddl[64];
        myc_ddl_type(types[i], ddl, sizeof ddl);
        bool pk = o->mode == MODE_MERGE && in_list(h, o->primary_key, names[i]);
        /* a key cannot be a TEXT/BLOB without a prefix: bound it to the index limit
         * (3072 bytes in InnoDB) */
        if (pk && is_texty(ddl))
            snprintf(ddl, sizeof ddl, strstr(ddl, "blob") ? "varbinary(3072)" : "varchar(768)");
        sb_add(b, "%s", i ? ", " : "");
        sb_ident(b, names[i], false);
        sb_add(b, " %s%s", ddl, pk ? " NOT NULL" : "");
        if (o->mode == MODE_REPLACE && o->key_column && strcmp(names[i], o->key_column) == 0 &&
            !is_texty(ddl)) {
            /* replace deletes by this column on every load: index it */
            sb_add(b, ", KEY ");
            sb_ident(b, names[i], false);
            sb_add(b, " (");
            sb_ident(b, names[i], false);
            sb_add(b, ")");
        }
    }
    if (o->mode == MODE_MERGE) {
        sb_add(b, ", PRIMARY KEY (");
        for (size_t i = 0; i < h->json_size(o->primary_key); i++) {
            sb_add(b, "%s", i ? ", " : "");
            sb_ident(b, h->json_string(h->json_at(o->primary_key, i), NULL), false);
        }
        sb_add(b, ")");
    }
    sb_add(b, ") DEFAULT CHARACTER SET utf8mb4");
}

static void build_load(sbuf *b, etl_conn *c, const char *into, const char *const *names,
                       const char *const *types, size_t n)
{
    /* the literals depend on whether backslash is an escape in the session's sql_mode */
    bool nbe = (c->my->server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES) != 0;
    sb_add(b, "LOAD DATA LOCAL INFILE 'etlrun-staged-file' INTO TABLE %s CHARACTER SET utf8mb4 "
              "FIELDS TERMINATED BY '%s' ESCAPED BY '%s' LINES TERMINATED BY '%s' (",
           into, nbe ? "\t" : "\\t", nbe ? "\\" : "\\\\", nbe ? "\n" : "\\n");
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        sb_add(b, "%s", i ? ", " : "");
        if (myc_load_conv(types[i]) == MYC_CONV_NONE)
            sb_ident(b, names[i], false);
        else {
            sb_add(b, "@v%zu", i);
            any = true;
        }
    }
    sb_add(b, ")");
    if (!any)
        return;
    sb_add(b, " SET ");
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        myc_conv cv = myc_load_conv(types[i]);
        if (cv == MYC_CONV_NONE)
            continue;
        sb_add(b, "%s", first ? "" : ", ");
        first = false;
        sb_ident(b, names[i], false);
        switch (cv) {
        case MYC_CONV_HEX: sb_add(b, " = UNHEX(SUBSTRING(@v%zu, 3))", i); break;
        case MYC_CONV_BIT: sb_add(b, " = CAST(CONV(@v%zu, 2, 10) AS UNSIGNED)", i); break;
        case MYC_CONV_BOOL:
            sb_add(b, " = IF(@v%zu IS NULL, NULL, @v%zu IN ('true', 't', '1'))", i, i);
            break;
        case MYC_CONV_TZ:
            sb_add(b, " = CONVERT_TZ(SUBSTRING(@v%zu, 1, CHAR_LENGTH(@v%zu) - 6), "
                      "SUBSTRING(@v%zu, -6), '+00:00')", i, i, i);
            break;
        default: break;
        }
    }
}

/* The first of the server's warnings, as "Warning 1366: ..." into buf. */
static void first_warning(etl_conn *c, char *buf, size_t n)
{
    static const char sql[] = "SHOW WARNINGS LIMIT 1";
    snprintf(buf, n, "(the warning could not be read)");
    if (mysql_real_query(c->my, sql, sizeof sql - 1) != 0)
        return;
    MYSQL_RES *res = mysql_store_result(c->my);
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    if (row && mysql_num_fields(res) >= 3)
        snprintf(buf, n, "%s %s: %s", row[0] ? row[0] : "", row[1] ? row[1] : "",
                 row[2] ? row[2] : "");
    mysql_free_result(res);
}

/* Run sql (built) as a plain statement. */
static etl_status run_sb(const etl_host *h, etl_task *task, etl_conn *c, sbuf *b,
                         const char *what, uint64_t *out_affected, etl_error *err)
{
    if (b->oom)
        return h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory building %s",
                       what);
    return myc_simple(h, task, c, b->s, what, out_affected, err);
}

/* ---------- the load ledger ----------
 *
 * One row per committed load, written in the load's transaction: (pipeline, run id,
 * state, key) is UNIQUE, so a key is committed at most once per run. A load first looks
 * its identity up and, when this run already committed it (etlrun died after the COMMIT
 * and before its checkpoint, or the COMMIT's answer was lost and the load retried),
 * loads nothing. Two loads of one identity at once: the second's INSERT waits for the
 * first's transaction and fails with 1062 (duplicate entry) when it commits; the second
 * then rolls back and reports the load as skipped, like the lookup would have. */

typedef struct ledger {
    bool on;                  /* this load is recorded */
    const char *id[5];        /* pipeline, run id, state, key, path (borrowed from the host) */
    char table[600];          /* quoted */
} ledger;

/* Whether this load is recorded, and its identity. The ledger needs the run's id: with
 * a host too old to give it, or a task outside a run (run id ""), loads go unrecorded. */
static etl_status ledger_use(const etl_host *h, etl_task *task, etl_conn *c, ledger *lg,
                             etl_error *err)
{
    lg->on = false;
    if (c->set.ledger_off)
        return ETL_OK;
    const char *run_id = HOST_HAS(h, task_run_id) ? h->task_run_id(task) : NULL;
    const char *pipeline = HOST_HAS(h, task_pipeline) ? h->task_pipeline(task) : NULL;
    if (!run_id || !*run_id) {
        h->log(task, ETL_LOG_DEBUG, "mysql.load: the host gives no run id; this load is not "
                                    "recorded in the load ledger");
        return ETL_OK;
    }
    const char *state = h->task_state(task), *key = h->task_key(task);
    lg->id[0] = pipeline ? pipeline : "";
    lg->id[1] = run_id;
    lg->id[2] = state ? state : "";
    lg->id[3] = key ? key : "";
    /* the place in the execution: Map items and Parallel branches stay distinct even
     * when their keys repeat or are absent */
    lg->id[4] = HOST_HAS(h, task_path) && h->task_path(task) ? h->task_path(task) : "";
    if (strlen(lg->id[4]) > 256)
        return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                       "mysql.load: the load ledger holds a path of at most 256 bytes; this "
                       "load is nested too deep for it: set ledger: false on the connection");
    static const char *const what[] = {"pipeline name", "run id", "state name", "key"};
    static const size_t max[] = {LEDGER_MAX_PIPELINE, LEDGER_MAX_RUN_ID, LEDGER_MAX_STATE,
                                 LEDGER_MAX_KEY};
    for (int i = 0; i < 4; i++)
        if (strlen(lg->id[i]) > max[i])
            return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                           "mysql.load: the load ledger holds a %s of at most %zu bytes, and "
                           "this one has %zu; shorten it, or set ledger: false on the "
                           "connection", what[i], max[i], strlen(lg->id[i]));
    lg->table[0] = '\0';
    if (!myc_quote_ident(c->set.ledger_table ? c->set.ledger_table : MYC_LEDGER_DEFAULT, true,
                         lg->table, sizeof lg->table))
        return h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                       "mysql.load: ledger_table is too long");
    lg->on = true;
    return ETL_OK;
}

/* CREATE TABLE IF NOT EXISTS for the ledger, outside any transaction (DDL commits).
 * MySQL serialises concurrent creators on the name's metadata lock. ENGINE=InnoDB: the
 * row must commit and roll back with the load. Once seen, a connection does not ask
 * again. */
static etl_status ledger_ensure(const etl_host *h, etl_task *task, etl_conn *c,
                                const ledger *lg, etl_error *err)
{
    if (!lg->on || c->ledger_ready)
        return ETL_OK;
    sbuf b = {0};
    sb_add(&b, "CREATE TABLE IF NOT EXISTS %s (pipeline VARBINARY(" STR(LEDGER_MAX_PIPELINE)
               ") NOT NULL, run_id VARBINARY(" STR(LEDGER_MAX_RUN_ID) ") NOT NULL, state "
               "VARBINARY(" STR(LEDGER_MAX_STATE) ") NOT NULL, `key` VARBINARY("
               STR(LEDGER_MAX_KEY) ") NOT NULL, target_table VARCHAR(512) NOT NULL, mode "
               "VARCHAR(16) NOT NULL, `rows` BIGINT NOT NULL, bytes BIGINT NOT NULL, crc32c "
               "CHAR(8), loaded_at DATETIME(6) NOT NULL, path VARBINARY(256) NOT NULL "
               "DEFAULT '', UNIQUE KEY etlrun_load_identity "
               "(pipeline, run_id, state, path, `key`)) "
               "ENGINE=InnoDB DEFAULT CHARACTER SET utf8mb4", lg->table);
    etl_status st = run_sb(h, task, c, &b, "creating the load ledger", NULL, err);
    /* "already exists" is a note (a warning) of IF NOT EXISTS */
    if (st == ETL_OK && mysql_warning_count(c->my) == 0)
        h->log(task, ETL_LOG_INFO, "mysql: created the load ledger %s on %s",
               c->set.ledger_table ? c->set.ledger_table : MYC_LEDGER_DEFAULT, c->set.label);
    c->ledger_ready = st == ETL_OK;
    free(b.s);
    return st;
}

/* Bind the identity, then the strings of more (NULL-terminated), then ints, as
 * parameters. The binds point into *out_arr: decref it after the statement ran. */
static etl_status ledger_bind(const etl_host *h, const ledger *lg, const char *const *more,
                              const int64_t *ints, size_t n_ints, myc_params *out,
                              etl_json **out_arr, etl_error *err)
{
    etl_json *arr = *out_arr = h->json_new_array();
    bool bad = !arr;
    for (int i = 0; i < 5 && !bad; i++)
        bad = h->json_append(arr, h->json_new_string(lg->id[i], strlen(lg->id[i]))) != 0;
    for (size_t i = 0; more && more[i] && !bad; i++)
        bad = h->json_append(arr, h->json_new_string(more[i], strlen(more[i]))) != 0;
    for (size_t i = 0; i < n_ints && !bad; i++)
        bad = h->json_append(arr, h->json_new_int(ints[i])) != 0;
    return bad ? h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory")
               : myc_params_bind(h, arr, "the ledger row", out, err);
}

/* This load's identity in the ledger: *out_found, and the rows and bytes recorded. */
static etl_status ledger_find(const etl_host *h, etl_task *task, etl_conn *c, const ledger *lg,
                              bool *out_found, int64_t *out_rows, int64_t *out_bytes,
                              etl_error *err)
{
    sbuf b = {0};
    myc_params p = {0};
    MYSQL_STMT *stmt = NULL;
    *out_found = false;
    sb_add(&b, "SELECT `rows`, bytes FROM %s WHERE pipeline = ? AND run_id = ? AND state = ? "
               "AND `key` = ? AND path = ?", lg->table);
    etl_json *vals = NULL;
    etl_status st = b.oom ? h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory")
                          : ledger_bind(h, lg, NULL, NULL, 0, &p, &vals, err);
    if (st == ETL_OK)
        st = myc_stmt_run(h, task, c, b.s, &p, "looking the load up in the load ledger", &stmt,
                          err);
    if (st == ETL_OK) {
        long long v[2] = {0, 0};
        MYSQL_BIND rb[2];
        memset(rb, 0, sizeof rb);
        for (int i = 0; i < 2; i++) {
            rb[i].buffer_type = MYSQL_TYPE_LONGLONG;
            rb[i].buffer = &v[i];
        }
        int rc = mysql_stmt_bind_result(stmt, rb) ? 1 : mysql_stmt_fetch(stmt);
        if (rc == 0) {
            *out_found = true;
            *out_rows = v[0];
            *out_bytes = v[1];
        } else if (rc != MYSQL_NO_DATA) {
            st = myc_fail(h, task, c, stmt, "Etl.QueryFailed",
                          "reading the load ledger", err);
        }
    } else if (c->last_errno == 1146) {
        c->ledger_ready = false; /* dropped meanwhile: the next load creates it again */
    }
    if (stmt)
        mysql_stmt_close(stmt);
    myc_params_free(&p);
    if (vals)
        h->json_decref(vals);
    free(b.s);
    return st;
}

/* The ledger row of this load, in its transaction. *out_dup: the identity is already
 * committed (a concurrent load of it won). */
static etl_status ledger_record(const etl_host *h, etl_task *task, etl_conn *c,
                                const ledger *lg, const char *table, const char *mode,
                                int64_t rows, int64_t bytes, const char *crc, bool *out_dup,
                                etl_error *err)
{
    sbuf b = {0};
    myc_params p = {0};
    MYSQL_STMT *stmt = NULL;
    *out_dup = false;
    sb_add(&b, "INSERT INTO %s (pipeline, run_id, state, `key`, path, target_table, mode, "
               "crc32c, `rows`, bytes, loaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
               "UTC_TIMESTAMP(6))",
           lg->table);
    const char *more[] = {table, mode, crc, NULL};
    const int64_t ints[] = {rows, bytes};
    etl_json *vals = NULL;
    etl_status st = b.oom ? h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory")
                          : ledger_bind(h, lg, more, ints, 2, &p, &vals, err);
    if (st == ETL_OK) {
        c->last_errno = 0;
        st = myc_stmt_run(h, task, c, b.s, &p, "recording the load in the load ledger", &stmt,
                          err);
        if (st == ETL_EQUERY && c->last_errno == 1062) { /* ER_DUP_ENTRY */
            *out_dup = true;
            st = ETL_OK;
            memset(err, 0, sizeof *err);
        } else if (st != ETL_OK && c->last_errno == 1146) {
            c->ledger_ready = false; /* dropped meanwhile: the next load creates it again */
        }
    }
    if (stmt)
        mysql_stmt_close(stmt);
    myc_params_free(&p);
    if (vals)
        h->json_decref(vals);
    free(b.s);
    return st;
}

static etl_json *result_of(const etl_host *h, const load_opts *o, int64_t rows, int64_t bytes,
                           int64_t deleted)
{
    etl_json *res = h->json_new_object();
    if (!res || h->json_set(res, "table", h->json_new_string(o->table, strlen(o->table))) ||
        h->json_set(res, "mode", h->json_new_string(mode_names[o->mode],
                                                    strlen(mode_names[o->mode]))) ||
        h->json_set(res, "rows", h->json_new_int(rows)) ||
        h->json_set(res, "bytes", h->json_new_int(bytes)) ||
        h->json_set(res, "deleted", h->json_new_int(deleted))) {
        if (res)
            h->json_decref(res);
        return NULL;
    }
    return res;
}

etl_status myc_load_run(const etl_host *h, etl_task *task, etl_conn *c, const etl_json *params,
                        etl_json **out_result, etl_error *err)
{
    myc_report rep = {.host = h, .err = err, .what = "mysql.load"};
    load_opts o;
    parse_load(&rep, params, &o);
    if (rep.problems)
        return err->status;
    myc_infile f = {.h = h, .task = task};
    sbuf b = {0};
    const char **names = NULL, **types = NULL;
    char *tmp_name = NULL;
    etl_json *key_list = NULL;
    myc_params kp = {0};
    MYSQL_STMT *stmt = NULL;
    bool in_tx = false, done = false, dup = false;
    uint64_t deleted = 0, loaded = 0;
    int64_t done_rows = 0, done_bytes = 0; /* as the ledger recorded them */
    ledger lg = {0};
    etl_status st = ETL_OK;

    myc_watch(h, task, c);
    /* the file and its manifest are verified before anything touches the table */
    if (!(f.reader = h->stage_read_open(task, o.file, err))) {
        st = err->status ? err->status : ETL_EIO;
        goto out;
    }
    const etl_json *m = h->stage_read_manifest(f.reader);
    etl_json *mcols = h->json_get(m, "columns");
    int64_t m_rows = 0, m_bytes = 0;
    h->json_int(h->json_get(m, "rows"), &m_rows);
    h->json_int(h->json_get(m, "bytes"), &m_bytes);
    const char *crc = h->json_string(h->json_get(m, "crc32c"), NULL);
    f.n_cols = h->json_size(mcols);
    if (o.columns && h->json_size(o.columns) != f.n_cols) {
        st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                     "mysql.load: 'columns' names %zu columns but the staged file %s has %zu",
                     h->json_size(o.columns), o.file, f.n_cols);
        goto out;
    }
    names = calloc(f.n_cols ? f.n_cols : 1, sizeof *names);
    types = calloc(f.n_cols ? f.n_cols : 1, sizeof *types);
    if (!names || !types) {
        st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < f.n_cols; i++) {
        etl_json *col = h->json_at(mcols, i);
        names[i] = o.columns ? h->json_string(h->json_at(o.columns, i), NULL)
                             : h->json_string(h->json_get(col, "name"), NULL);
        types[i] = h->json_string(h->json_get(col, "type"), NULL);
        if (!names[i] || !*names[i]) {
            st = h->fail(err, ETL_EINVAL, "Etl.IntegrityError", false,
                         "staged file %s: column %zu of the manifest has no name", o.file, i + 1);
            goto out;
        }
    }
    if (o.mode == MODE_MERGE)
        for (size_t i = 0; i < h->json_size(o.primary_key); i++) {
            const char *k = h->json_string(h->json_at(o.primary_key, i), NULL);
            bool found = false;
            for (size_t j = 0; j < f.n_cols && !found; j++)
                found = strcmp(names[j], k) == 0;
            if (!found) {
                st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                             "mysql.load: primary_key column '%s' is not a column of the "
                             "staged file %s", k, o.file);
                goto out;
            }
        }

    if ((st = ledger_use(h, task, c, &lg, err)) != ETL_OK ||
        (st = ledger_ensure(h, task, c, &lg, err)) != ETL_OK)
        goto out;
    if (o.create) {
        build_create(h, &b, &o, names, types, f.n_cols);
        if ((st = run_sb(h, task, c, &b, "CREATE TABLE (create: true)", NULL, err)) != ETL_OK)
            goto out;
        b.len = 0;
    }
    /* READ COMMITTED: the DELETE of one key takes no gap locks, so loads of different
     * keys into one table run side by side instead of deadlocking */
    if ((st = myc_simple(h, task, c, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                         "SET TRANSACTION", NULL, err)) ||
        (st = myc_simple(h, task, c, "START TRANSACTION", "START TRANSACTION", NULL, err)))
        goto out;
    in_tx = true;
    if (lg.on &&
        (st = ledger_find(h, task, c, &lg, &done, &done_rows, &done_bytes, err)) != ETL_OK)
        goto out;
    if (done) /* committed by this run already: nothing is touched */
        goto skip;

    char into[1024] = "";
    if (o.mode == MODE_REPLACE) {
        sb_add(&b, "DELETE FROM ");
        sb_ident(&b, o.table, true);
        sb_add(&b, " WHERE ");
        sb_ident(&b, o.key_column, false);
        sb_add(&b, " = ?");
        if (b.oom) {
            st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
            goto out;
        }
        key_list = h->json_new_array();
        if (!key_list || h->json_append(key_list, h->json_incref(o.key)) != 0) {
            st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
            goto out;
        }
        if ((st = myc_params_bind(h, key_list, "key", &kp, err)) != ETL_OK ||
            (st = myc_stmt_run(h, task, c, b.s, &kp, "the DELETE of the key's rows", &stmt,
                               err)) != ETL_OK)
            goto out;
        deleted = mysql_stmt_affected_rows(stmt);
        mysql_stmt_close(stmt);
        stmt = NULL;
        b.len = 0;
    } else if (o.mode == MODE_TRUNCATE) {
        sb_add(&b, "DELETE FROM ");
        sb_ident(&b, o.table, true);
        if ((st = run_sb(h, task, c, &b, "the DELETE of all rows (mode truncate)", &deleted,
                         err)) != ETL_OK)
            goto out;
        b.len = 0;
    }
    if (o.mode == MODE_MERGE) {
        /* a temporary table like the target, in its schema; temporary tables neither
         * commit nor are seen by other sessions */
        const char *dot = strchr(o.table, '.');
        size_t sl = dot ? (size_t)(dot - o.table) : 0;
        if (!(tmp_name = malloc(sl + 32))) {
            st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
            goto out;
        }
        snprintf(tmp_name, sl + 32, "%.*s%setlrun_merge", (int)sl, o.table, dot ? "." : "");
        sb_add(&b, "DROP TEMPORARY TABLE IF EXISTS ");
        sb_ident(&b, tmp_name, true);
        if ((st = run_sb(h, task, c, &b, "DROP TEMPORARY TABLE", NULL, err)) != ETL_OK)
            goto out;
        b.len = 0;
        sb_add(&b, "CREATE TEMPORARY TABLE ");
        sb_ident(&b, tmp_name, true);
        sb_add(&b, " LIKE ");
        sb_ident(&b, o.table, true);
        if ((st = run_sb(h, task, c, &b, "CREATE TEMPORARY TABLE (mode merge)", NULL, err)))
            goto out;
        b.len = 0;
    }
    if (!myc_quote_ident(o.mode == MODE_MERGE ? tmp_name : o.table, true, into, sizeof into)) {
        st = h->fail(err, ETL_EINVAL, "Etl.InvalidInput", false,
                     "mysql.load: the table name is too long");
        goto out;
    }

    /* the bulk load */
    build_load(&b, c, into, names, types, f.n_cols);
    if (b.oom) {
        st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
        goto out;
    }
    if (h->cancelled(task)) {
        st = myc_cancelled(h, c, err, "the load");
        goto out;
    }
    c->infile = &f;
    int qrc = mysql_real_query(c->my, b.s, b.len);
    c->infile = NULL;
    if (qrc != 0) {
        if (f.failed && !h->cancelled(task)) {
            /* the feed failed: its own error says why (the server rolled nothing in yet
             * that the ROLLBACK below does not undo) */
            *err = f.err;
            st = f.err.status;
        } else {
            st = myc_fail(h, task, c, NULL, "Etl.LoadFailed", "LOAD DATA", err);
        }
        goto out;
    }
    loaded = mysql_affected_rows(c->my);
    h->progress(task, f.rows % MYC_PROGRESS_ROWS, f.progress_bytes);
    if (h->cancelled(task)) {
        st = myc_cancelled(h, c, err, "the load");
        goto out;
    }
    unsigned warnings = mysql_warning_count(c->my);
    if (warnings) {
        char w[1024];
        first_warning(c, w, sizeof w);
        st = h->fail(err, ETL_EQUERY, "Etl.LoadFailed", false,
                     "mysql.load into %s: the server reported %u warning%s (bad values or "
                     "duplicate keys are skipped by LOAD DATA LOCAL, so nothing was kept); the "
                     "first: %s", o.table, warnings, warnings == 1 ? "" : "s", w);
        goto out;
    }
    if (loaded != (uint64_t)m_rows || f.rows != (uint64_t)m_rows) {
        st = h->fail(err, ETL_EINVAL, "Etl.IntegrityError", false,
                     "mysql.load into %s: %llu rows were loaded but the manifest of %s says "
                     "%lld; rolled back", o.table, (unsigned long long)loaded, o.file,
                     (long long)m_rows);
        goto out;
    }
    if (o.mode == MODE_MERGE) {
        b.len = 0;
        sb_add(&b, "INSERT INTO ");
        sb_ident(&b, o.table, true);
        sb_add(&b, " (");
        for (size_t i = 0; i < f.n_cols; i++) {
            sb_add(&b, "%s", i ? ", " : "");
            sb_ident(&b, names[i], false);
        }
        sb_add(&b, ") SELECT ");
        for (size_t i = 0; i < f.n_cols; i++) {
            sb_add(&b, "%s", i ? ", " : "");
            sb_ident(&b, names[i], false);
        }
        sb_add(&b, " FROM %s ON DUPLICATE KEY UPDATE ", into);
        bool first = true;
        for (size_t i = 0; i < f.n_cols; i++) {
            if (in_list(h, o.primary_key, names[i]))
                continue;
            sb_add(&b, "%s", first ? "" : ", ");
            first = false;
            sb_ident(&b, names[i], false);
            sb_add(&b, " = VALUES(");
            sb_ident(&b, names[i], false);
            sb_add(&b, ")");
        }
        if (first) { /* every column is a key column: nothing to update */
            sb_ident(&b, names[0], false);
            sb_add(&b, " = ");
            sb_ident(&b, names[0], false);
        }
        if ((st = run_sb(h, task, c, &b, "the upsert (mode merge)", NULL, err)) != ETL_OK)
            goto out;
        b.len = 0;
        sb_add(&b, "DROP TEMPORARY TABLE ");
        sb_ident(&b, tmp_name, true);
        if ((st = run_sb(h, task, c, &b, "DROP TEMPORARY TABLE", NULL, err)) != ETL_OK)
            goto out;
    }
    if (lg.on && (st = ledger_record(h, task, c, &lg, o.table, mode_names[o.mode],
                                     (int64_t)loaded, m_bytes, crc ? crc : "", &dup, err)) != ETL_OK)
        goto out;
    if (dup) {
        /* a concurrent load of this identity committed first: what it recorded counts */
        myc_rollback(c);
        in_tx = false;
        if (c->broken) {
            st = h->fail(err, ETL_ECONNECT, "Etl.ConnectionFailed", true,
                         "MySQL %s: the connection was lost during the ROLLBACK", c->set.label);
            goto out;
        }
        if ((st = ledger_find(h, task, c, &lg, &done, &done_rows, &done_bytes, err)) != ETL_OK)
            goto out;
        if (!done) {
            done_rows = (int64_t)loaded;
            done_bytes = m_bytes;
        }
        goto skip;
    }
    if ((st = myc_simple(h, task, c, "COMMIT", "COMMIT", NULL, err)) != ETL_OK)
        goto out;
    in_tx = false;

    if (!(*out_result = result_of(h, &o, (int64_t)loaded, m_bytes, (int64_t)deleted)))
        /* committed: the load happened; only the report could not be made */
        st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
    goto out;
skip:
    if (in_tx) {
        myc_rollback(c);
        in_tx = false;
    }
    h->log(task, ETL_LOG_INFO, "mysql.load: %s was committed into %s by this run already "
                               "(load ledger: %lld rows, %lld bytes); not loaded again",
           o.file, o.table, (long long)done_rows, (long long)done_bytes);
    etl_json *res = result_of(h, &o, done_rows, done_bytes, 0);
    if (!res || h->json_set(res, "skipped", h->json_new_string(SKIPPED, strlen(SKIPPED))) != 0) {
        if (res)
            h->json_decref(res);
        st = h->fail(err, ETL_ENOMEM, "States.Runtime", false, "out of memory");
    } else {
        *out_result = res;
    }
out:
    c->infile = NULL;
    if (stmt)
        mysql_stmt_close(stmt);
    if (in_tx) {
        myc_rollback(c);
        if (tmp_name && !c->broken) {
            b.len = 0;
            sb_add(&b, "DROP TEMPORARY TABLE IF EXISTS ");
            sb_ident(&b, tmp_name, true);
            if (b.oom || mysql_real_query(c->my, b.s, b.len) != 0)
                c->broken = true;
        }
    }
    if (f.reader)
        h->stage_read_close(f.reader);
    if (st == ETL_OK && !o.keep &&
        !(h->struct_size > offsetof(etl_host, task_keep_staged) && h->task_keep_staged &&
          h->task_keep_staged(task))) {
        /* the manifest first: a file without one is never read */
        size_t n = strlen(o.file) + sizeof ".manifest.json";
        char *mpath = malloc(n);
        if (mpath) {
            snprintf(mpath, n, "%s.manifest.json", o.file);
            if (unlink(mpath) != 0)
                h->log(task, ETL_LOG_WARN, "cannot remove %s after the load", mpath);
            free(mpath);
        }
        if (unlink(o.file) != 0)
            h->log(task, ETL_LOG_WARN, "cannot remove %s after the load", o.file);
    }
    free(f.pending);
    free(names);
    free(types);
    free(tmp_name);
    free(b.s);
    h->json_decref(key_list);
    myc_params_free(&kp);
    return st;
}
