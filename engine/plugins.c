/* The connector registry: built-ins plus plugins loaded with dlopen, each checked
 * against the interface (ABI version, struct sizes, names, action table) before any of
 * its code beyond the entry function runs. */
#include "plugins.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"

#ifndef ETLRUN_PLUGIN_DIR
#define ETLRUN_PLUGIN_DIR "/usr/local/lib/etlrun/plugins"
#endif

/* The smallest sizes a v1 plugin may report: every member of the first release. */
#define CONNECTOR_V1_SIZE (offsetof(etl_connector, actions) + sizeof(const etl_action *))
#define ACTION_V1_SIZE (offsetof(etl_action, run) + sizeof(void *))

/* The action table is walked with the plugin's own sizeof(etl_action) (its first
 * entry's struct_size), so a plugin built with a longer or shorter etl_action than
 * this host's is read correctly: only the members the host knows are used. */
static size_t action_stride(const etl_connector *c)
{
    uint32_t sz = c->actions ? c->actions[0].struct_size : 0;
    return sz >= ACTION_V1_SIZE ? sz : sizeof(etl_action);
}

static const etl_action *action_next(const etl_connector *c, const etl_action *a)
{
    return (const etl_action *)((const char *)a + action_stride(c));
}

typedef struct entry {
    const etl_connector *c;
    char *path;    /* NULL for built-ins */
    void *handle;  /* dlopen handle */
    bool inited;   /* global_init ran */
} entry;

struct registry {
    entry *e;
    size_t n, cap;
};

static bool add(registry *r, const etl_connector *c, const char *path, void *handle)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        entry *e = realloc(r->e, cap * sizeof *e);
        if (!e)
            return false;
        r->e = e;
        r->cap = cap;
    }
    r->e[r->n++] = (entry){c, path ? strdup(path) : NULL, handle, false};
    return true;
}

registry *registry_new(void)
{
    registry *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    add(r, etl_builtin_file(), NULL, NULL);
    add(r, etl_builtin_http(), NULL, NULL);
    add(r, etl_builtin_postgres(), NULL, NULL);
    add(r, etl_builtin_mysql(), NULL, NULL);
    return r;
}

void registry_free(registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->e[i].path);
        if (r->e[i].handle)
            dlclose(r->e[i].handle);
    }
    free(r->e);
    free(r);
}

static bool valid_name(const char *s)
{
    if (!s || !islower((unsigned char)*s))
        return false;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
            return false;
    return true;
}

/* Every problem of c, reported through report(arg, message). Returns the count. */
static int check_connector(const etl_connector *c, void (*report)(void *, const char *),
                           void *arg)
{
    char msg[512];
    int errors = 0;
#define REPORT(...)                                                                    \
    do {                                                                               \
        snprintf(msg, sizeof msg, __VA_ARGS__);                                        \
        report(arg, msg);                                                              \
        errors++;                                                                      \
    } while (0)
    if (!c) {
        REPORT("%s() returned NULL", ETL_CONNECTOR_ENTRY);
        return errors;
    }
    if (c->abi_version != ETL_CONNECTOR_ABI_VERSION) {
        REPORT("built for connector ABI version %u, but this etlrun (%s) speaks version %d; "
               "rebuild the plugin against etlrun %s's include/etlrun/connector.h",
               c->abi_version, host_services()->host_version, ETL_CONNECTOR_ABI_VERSION,
               host_services()->host_version);
        return errors; /* nothing else of the struct can be trusted */
    }
    if (c->struct_size < CONNECTOR_V1_SIZE) {
        REPORT("struct_size %u is smaller than etl_connector version 1 (%zu bytes); set "
               "it to sizeof(etl_connector)",
               c->struct_size, (size_t)CONNECTOR_V1_SIZE);
        return errors;
    }
    if (!valid_name(c->name))
        REPORT("connector name '%s' is invalid: use [a-z][a-z0-9_]*", c->name ? c->name : "(null)");
    if ((c->open == NULL) != (c->close == NULL))
        REPORT("open and close must both be set, or both be NULL");
    if (!c->actions) {
        REPORT("the action table is NULL; a connector needs at least one action");
        return errors;
    }
    size_t n = 0;
    /* the table ends at the first entry whose name is NULL, as the header says */
    for (const etl_action *a = c->actions; a->name; a = action_next(c, a), n++) {
        if (n > 1000) {
            REPORT("the action table has no end: its last entry must have name NULL");
            return errors;
        }
        if (a->struct_size < ACTION_V1_SIZE) {
            REPORT("action %zu ('%s'): struct_size %u is smaller than etl_action version 1 "
                   "(%zu bytes)", n + 1, a->name ? a->name : "(null)", a->struct_size,
                   (size_t)ACTION_V1_SIZE);
            continue;
        }
        if (a->struct_size != c->actions[0].struct_size)
            REPORT("action '%s': struct_size %u differs from the first action's %u; every "
                   "entry is one etl_action of the same build", a->name, a->struct_size,
                   c->actions[0].struct_size);
        if (!valid_name(a->name))
            REPORT("action '%s': invalid name: use [a-z][a-z0-9_]*", a->name);
        if (!a->run)
            REPORT("action '%s' has no run function", a->name);
        if ((a->flags & ETL_ACTION_NEEDS_CONNECTION) && !c->open)
            REPORT("action '%s' needs a connection, but the connector has no open function",
                   a->name);
        for (const etl_action *b = c->actions; b < a; b = action_next(c, b))
            if (b->name && strcmp(b->name, a->name) == 0)
                REPORT("action '%s' is defined twice", a->name);
    }
    if (n == 0)
        REPORT("the action table is empty; a connector needs at least one action");
    return errors;
#undef REPORT
}

struct diag_report {
    diag *d;
    doc_pos pos;
    const char *file;
};

static void report_diag(void *arg, const char *msg)
{
    struct diag_report *dr = arg;
    diag_add(dr->d, dr->pos, "plugin %s: %s", dr->file, msg);
}

/* dlopen + entry + checks. On success returns the connector and the handle. */
static const etl_connector *open_plugin(const char *path, void **out_handle,
                                        void (*report)(void *, const char *), void *arg)
{
    char msg[PATH_MAX + 256];
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(msg, sizeof msg, "cannot load it: %s", dlerror());
        report(arg, msg);
        return NULL;
    }
    etl_connector_entry_fn entry_fn;
    *(void **)(&entry_fn) = dlsym(h, ETL_CONNECTOR_ENTRY);
    if (!entry_fn) {
        snprintf(msg, sizeof msg,
                 "it does not export %s(); a plugin defines "
                 "'const etl_connector *%s(void)'",
                 ETL_CONNECTOR_ENTRY, ETL_CONNECTOR_ENTRY);
        report(arg, msg);
        dlclose(h);
        return NULL;
    }
    const etl_connector *c = entry_fn();
    if (check_connector(c, report, arg) > 0) {
        dlclose(h);
        return NULL;
    }
    *out_handle = h;
    return c;
}

static entry *find_loaded(registry *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->e[i].c->name, name) == 0)
            return &r->e[i];
    return NULL;
}

bool registry_load(registry *r, const char *path, diag *d, doc_pos pos)
{
    char *abs = realpath(path, NULL);
    const char *p = abs ? abs : path;
    for (size_t i = 0; i < r->n; i++)
        if (r->e[i].path && strcmp(r->e[i].path, p) == 0) {
            free(abs);
            return true; /* the same file twice is harmless */
        }
    struct diag_report dr = {d, pos, path};
    void *h = NULL;
    const etl_connector *c = open_plugin(p, &h, report_diag, &dr);
    if (!c) {
        free(abs);
        return false;
    }
    entry *dup = find_loaded(r, c->name);
    if (dup) {
        diag_add(d, pos, "plugin %s: a connector named '%s' is already %s%s; connector "
                         "names must be unique",
                 path, c->name, dup->path ? "loaded from " : "built in",
                 dup->path ? dup->path : "");
        dlclose(h);
        free(abs);
        return false;
    }
    bool ok = add(r, c, p, h);
    if (!ok) {
        diag_add(d, pos, "plugin %s: out of memory", path);
        dlclose(h);
    }
    free(abs);
    return ok;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

bool registry_load_path(registry *r, const char *path, diag *d, doc_pos pos)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        diag_add(d, pos, "plugin path %s does not exist", path);
        return false;
    }
    if (!S_ISDIR(st.st_mode))
        return registry_load(r, path, d, pos);
    DIR *dir = opendir(path);
    if (!dir) {
        diag_add(d, pos, "cannot read plugin directory %s", path);
        return false;
    }
    bool ok = true;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (!has_suffix(de->d_name, ".so"))
            continue;
        char full[PATH_MAX];
        snprintf(full, sizeof full, "%s/%s", path, de->d_name);
        ok &= registry_load(r, full, d, pos);
    }
    closedir(dir);
    return ok;
}

/* Calls fn(dir, arg) for each directory of the search path; stops when fn returns true. */
static bool for_each_dir(bool (*fn)(const char *dir, void *arg), void *arg)
{
    const char *env = getenv("ETLRUN_PLUGIN_PATH");
    if (env && *env) {
        char *copy = strdup(env), *save = NULL;
        for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save))
            if (*dir && fn(dir, arg)) {
                free(copy);
                return true;
            }
        free(copy);
    }
    return fn(ETLRUN_PLUGIN_DIR, arg);
}

struct find_arg {
    registry *r;
    const char *name;
    diag *d;
    doc_pos pos;
    const etl_connector *found;
};

static bool find_in_dir(const char *dir, void *arg)
{
    struct find_arg *fa = arg;
    static const char *const patterns[] = {"%s/%s.so", "%s/etlrun-%s.so"};
    for (size_t i = 0; i < 2; i++) {
        char full[PATH_MAX];
        snprintf(full, sizeof full, patterns[i], dir, fa->name);
        if (access(full, F_OK) != 0)
            continue;
        if (registry_load(fa->r, full, fa->d, fa->pos)) {
            entry *e = find_loaded(fa->r, fa->name);
            if (!e) {
                diag_add(fa->d, fa->pos, "plugin %s does not define the connector '%s' that "
                                         "its file name promises", full, fa->name);
                return true;
            }
            fa->found = e->c;
        }
        return true; /* found a file: a broken plugin is reported, not skipped */
    }
    return false;
}

const etl_connector *registry_find(registry *r, const char *name, diag *d, doc_pos pos)
{
    entry *e = find_loaded(r, name);
    if (e)
        return e->c;
    if (!valid_name(name))
        return NULL;
    struct find_arg fa = {r, name, d, pos, NULL};
    for_each_dir(find_in_dir, &fa);
    return fa.found;
}

const etl_action *registry_action(const etl_connector *c, const char *name)
{
    for (const etl_action *a = c->actions; a && a->name; a = action_next(c, a))
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

static bool list_dir(const char *dir, void *arg)
{
    registry *r = arg;
    diag *d = diag_new("plugins");
    registry_load_path(r, dir, d, (doc_pos){0, 0});
    /* a missing directory is normal; broken plugins are listed as such */
    for (size_t i = 0; i < diag_count(d); i++) {
        const char *m = diag_message(d, i);
        if (!strstr(m, "does not exist"))
            fprintf(stderr, "etlrun: %s\n", m);
    }
    diag_free(d);
    return false;
}

void registry_list(registry *r, FILE *out)
{
    for_each_dir(list_dir, r);
    for (size_t i = 0; i < r->n; i++) {
        const etl_connector *c = r->e[i].c;
        fprintf(out, "%-10s %-10s %s\n", c->name, c->version ? c->version : "-",
                r->e[i].path ? r->e[i].path : "(built in)");
        if (c->description)
            fprintf(out, "           %s\n", c->description);
        for (const etl_action *a = c->actions; a && a->name; a = action_next(c, a))
            fprintf(out, "           %s.%s%s%s\n", c->name, a->name, a->summary ? "  " : "",
                    a->summary ? a->summary : "");
    }
}

etl_status registry_global_init(registry *r, etl_error *err)
{
    for (size_t i = 0; i < r->n; i++) {
        entry *e = &r->e[i];
        if (e->inited)
            continue;
        if (e->c->global_init) {
            etl_status st = e->c->global_init(host_services(), err);
            if (st != ETL_OK)
                return st;
        }
        e->inited = true;
    }
    return ETL_OK;
}

void registry_global_cleanup(registry *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->e[i].inited && r->e[i].c->global_cleanup) {
            r->e[i].c->global_cleanup(host_services());
            r->e[i].inited = false;
        }
}

void registry_thread_init(registry *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->e[i].c->thread_init)
            r->e[i].c->thread_init(host_services());
}

void registry_thread_end(registry *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->e[i].c->thread_end)
            r->e[i].c->thread_end(host_services());
}

struct file_report {
    FILE *out;
    const char *file;
    int errors;
};

static void report_file(void *arg, const char *msg)
{
    struct file_report *fr = arg;
    fprintf(fr->out, "%s: error: %s\n", fr->file, msg);
    fr->errors++;
}

int plugin_check(const char *file, FILE *out)
{
    struct file_report fr = {out, file, 0};
    void *h = NULL;
    const etl_connector *c = open_plugin(file, &h, report_file, &fr);
    if (!c)
        return fr.errors ? fr.errors : 1;
    fprintf(out, "%s: connector '%s' version %s, ABI %u, struct_size %u\n", file, c->name,
            c->version ? c->version : "-", c->abi_version, c->struct_size);
    for (const etl_action *a = c->actions; a->name; a = action_next(c, a))
        fprintf(out, "%s:   action %s.%s%s%s%s\n", file, c->name, a->name,
                a->check ? " (checks its Parameters)" : "",
                a->flags & ETL_ACTION_NEEDS_CONNECTION ? " (needs a connection)" : "",
                a->summary ? "" : " (no summary)");
    if (!c->check_settings && c->open)
        fprintf(out, "%s: warning: connector has connections but no check_settings: "
                     "settings errors will only show at run time\n", file);
    if (c->check_settings) {
        /* the settings check must cope with an empty object without crashing */
        diag *d = diag_new(file);
        doc *dc = doc_load_string("{}", 2, "empty-settings.json", true, d);
        if (dc) {
            etl_checker chk = {d, dc->root, "empty settings", 0};
            c->check_settings(host_services(), host_wrap(dc->root->json), &chk);
            fprintf(out, "%s: check_settings on empty settings reported %d problem%s\n", file,
                    chk.errors, chk.errors == 1 ? "" : "s");
            doc_free(dc);
        }
        diag_free(d);
    }
    dlclose(h);
    return 0;
}
