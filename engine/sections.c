/* `plugins:`, `connections:`, `staging:`, `retention:` and `notify:` (see sections.h). */
#include "sections.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "plugins.h"
#include "rundir.h"

int pipeline_conn_index(const pipeline *pl, const char *name)
{
    for (size_t i = 0; i < pl->n_conns; i++)
        if (strcmp(pl->conns[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* One string with ${env:NAME} references expanded; NULL when a variable is missing. */
static char *expand(const char *s, const doc_node *node, diag *d)
{
    size_t cap = strlen(s) + 64, len = 0;
    char *out = malloc(cap);
    bool ok = true;
    if (!out)
        return NULL;
    while (*s) {
        const char *v = NULL;
        size_t skip = 1, vlen = 1;
        if (strncmp(s, "$${", 3) == 0) {
            v = "${";
            vlen = 2;
            skip = 3;
        } else if (strncmp(s, "${env:", 6) == 0) {
            const char *end = strchr(s + 6, '}');
            if (!end) {
                diag_add(d, node->pos, "unterminated '${env:' in a connection setting; write "
                                       "${env:NAME}");
                ok = false;
                break;
            }
            char name[256];
            size_t n = (size_t)(end - (s + 6));
            if (n == 0 || n >= sizeof name) {
                diag_add(d, node->pos, "invalid environment variable name in '${env:...}'");
                ok = false;
                break;
            }
            memcpy(name, s + 6, n);
            name[n] = '\0';
            v = getenv(name);
            if (!v) {
                diag_add(d, node->pos, "environment variable %s is not set (used as "
                                       "${env:%s}); export it, or put it in the cron "
                                       "job's environment", name, name);
                ok = false;
                v = "";
            }
            vlen = strlen(v);
            skip = n + 7;
        } else {
            v = s;
        }
        if (len + vlen + 1 > cap) {
            cap = (len + vlen + 1) * 2;
            char *p = realloc(out, cap);
            if (!p) {
                ok = false;
                break;
            }
            out = p;
        }
        memcpy(out + len, v, vlen);
        len += vlen;
        s += skip;
    }
    if (!ok) {
        free(out);
        return NULL;
    }
    out[len] = '\0';
    return out;
}

json_t *sections_interpolate_env(const doc_node *node, diag *d)
{
    json_t *j = node->json;
    if (json_is_string(j)) {
        char *s = expand(json_string_value(j), node, d);
        if (!s)
            return NULL;
        json_t *r = json_string(s);
        free(s);
        return r;
    }
    if (json_is_object(j)) {
        json_t *o = json_object();
        bool ok = true;
        for (size_t i = 0; i < node->n; i++) {
            json_t *v = sections_interpolate_env(node->members[i].value, d);
            if (!v)
                ok = false;
            else
                json_object_set_new(o, node->members[i].key, v);
        }
        if (!ok) {
            json_decref(o);
            return NULL;
        }
        return o;
    }
    if (json_is_array(j)) {
        json_t *a = json_array();
        bool ok = true;
        for (size_t i = 0; i < node->n; i++) {
            json_t *v = sections_interpolate_env(node->items[i], d);
            if (!v)
                ok = false;
            else
                json_array_append_new(a, v);
        }
        if (!ok) {
            json_decref(a);
            return NULL;
        }
        return a;
    }
    return json_incref(j);
}

static char *resolve(const pipeline *pl, const char *p)
{
    if (p[0] == '/')
        return strdup(p);
    size_t n = strlen(pl->dir) + strlen(p) + 2;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%s", pl->dir, p);
    return out;
}

static void compile_plugins(pipeline *pl, const doc_node *n, diag *d)
{
    if (!json_is_array(n->json)) {
        diag_add(d, n->pos, "'plugins' must be a list of plugin files or directories");
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const doc_node *it = n->items[i];
        if (!json_is_string(it->json)) {
            diag_add(d, it->pos, "a 'plugins' entry must be a path (a .so file or a directory)");
            continue;
        }
        char *p = resolve(pl, json_string_value(it->json));
        if (p)
            registry_load_path(pl->reg, p, d, it->pos);
        free(p);
    }
}

static void compile_connections(pipeline *pl, const doc_node *n, diag *d)
{
    if (!json_is_object(n->json)) {
        diag_add(d, n->pos, "'connections' must map connection names to their settings");
        return;
    }
    pl->conns = calloc(n->n ? n->n : 1, sizeof *pl->conns);
    if (!pl->conns)
        return;
    for (size_t i = 0; i < n->n; i++) {
        const doc_member *m = &n->members[i];
        const doc_node *def = m->value;
        conn_def *cd = &pl->conns[pl->n_conns];
        if (!json_is_object(def->json)) {
            diag_add(d, def->pos, "connection '%s' must be an object with a 'type'", m->key);
            continue;
        }
        const doc_node *type = doc_get(def, "type");
        if (!type || !json_is_string(type->json)) {
            diag_add(d, type ? type->pos : m->key_pos,
                     "connection '%s' needs 'type' (a connector name, e.g. http)", m->key);
            continue;
        }
        const char *tname = json_string_value(type->json);
        const etl_connector *c = registry_find(pl->reg, tname, d, type->pos);
        if (!c) {
            diag_add(d, type->pos,
                     "connection '%s': no connector named '%s' (built in, in 'plugins:', in "
                     "$ETLRUN_PLUGIN_PATH or in the plugin directory); 'etlrun plugins' lists "
                     "them", m->key, tname);
            continue;
        }
        cd->name = strdup(m->key);
        cd->connector = c;
        cd->pos = m->key_pos;
        cd->max_connections = 4;
        const doc_node *mc = doc_get(def, "max_connections");
        if (mc) {
            if (!json_is_integer(mc->json) || json_integer_value(mc->json) < 1 ||
                json_integer_value(mc->json) > 1000)
                diag_add(d, mc->pos, "'max_connections' must be an integer from 1 to 1000");
            else
                cd->max_connections = (int)json_integer_value(mc->json);
        }
        json_t *all = sections_interpolate_env(def, d);
        if (all) {
            json_object_del(all, "type");
            json_object_del(all, "max_connections");
            cd->settings = all;
        }
        pl->n_conns++;
        if (!c->open) {
            diag_add(d, type->pos, "connection '%s': connector '%s' has no connections; use "
                                   "its actions directly", m->key, tname);
            continue;
        }
        if (c->check_settings && all) {
            char what[300];
            snprintf(what, sizeof what, "connection '%s'", m->key);
            etl_checker chk = {d, def, what, 0};
            c->check_settings(host_services(), host_wrap(all), &chk);
        }
    }
}

static void compile_staging(pipeline *pl, const doc_node *n, diag *d)
{
    if (!json_is_object(n->json)) {
        diag_add(d, n->pos, "'staging' must be an object (dir, keep)");
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const doc_member *m = &n->members[i];
        if (strcmp(m->key, "dir") == 0) {
            if (!json_is_string(m->value->json) || !json_string_length(m->value->json))
                diag_add(d, m->value->pos, "'staging.dir' must be a directory path");
            else {
                json_t *v = sections_interpolate_env(m->value, d);
                if (v)
                    pl->stage_dir = resolve(pl, json_string_value(v));
                json_decref(v);
            }
        } else if (strcmp(m->key, "keep") == 0) {
            if (!json_is_boolean(m->value->json))
                diag_add(d, m->value->pos, "'staging.keep' must be true or false");
            else
                pl->stage_keep = json_is_true(m->value->json);
        } else {
            diag_add(d, m->key_pos, "unknown field '%s' in 'staging' (dir, keep)", m->key);
        }
    }
}

static void compile_retention(pipeline *pl, const doc_node *n, diag *d)
{
    if (!json_is_object(n->json)) {
        diag_add(d, n->pos, "'retention' must be an object (keep, max_age_days)");
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const doc_member *m = &n->members[i];
        const json_t *v = m->value->json;
        if (strcmp(m->key, "keep") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > 1000000)
                diag_add(d, m->value->pos, "'retention.keep' must be an integer from 0 to "
                                           "1000000 (the number of runs kept)");
            else
                pl->keep_runs = (int)json_integer_value(v);
        } else if (strcmp(m->key, "max_age_days") == 0) {
            if (!json_is_number(v) || json_number_value(v) <= 0 ||
                json_number_value(v) > 100000)
                diag_add(d, m->value->pos, "'retention.max_age_days' must be a number of "
                                           "days greater than 0");
            else
                pl->keep_days = json_number_value(v);
        } else {
            diag_add(d, m->key_pos, "unknown field '%s' in 'retention' (keep, max_age_days)",
                     m->key);
        }
    }
}

static void compile_notify(pipeline *pl, const doc_node *n, diag *d)
{
    if (!json_is_object(n->json)) {
        diag_add(d, n->pos, "'notify' must be an object (url, timeout_seconds)");
        return;
    }
    bool has_url = false;
    for (size_t i = 0; i < n->n; i++) {
        const doc_member *m = &n->members[i];
        const json_t *v = m->value->json;
        if (strcmp(m->key, "url") == 0) {
            has_url = true;
            if (!json_is_string(v)) {
                diag_add(d, m->value->pos, "'notify.url' must be a URL (http:// or https://)");
                continue;
            }
            /* ping URLs carry a secret token: ${env:...} keeps it out of the file */
            json_t *u = sections_interpolate_env(m->value, d);
            const char *s = json_string_value(u);
            if (s && strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
                diag_add(d, m->value->pos, "'notify.url' must start with http:// or https://");
            else if (s) {
                free(pl->notify_url);
                pl->notify_url = strdup(s);
            }
            json_decref(u);
        } else if (strcmp(m->key, "timeout_seconds") == 0) {
            if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > 300)
                diag_add(d, m->value->pos, "'notify.timeout_seconds' must be a number of "
                                           "seconds from more than 0 to 300");
            else
                pl->notify_timeout_s = json_number_value(v);
        } else {
            diag_add(d, m->key_pos, "unknown field '%s' in 'notify' (url, timeout_seconds)",
                     m->key);
        }
    }
    if (!has_url)
        diag_add(d, n->pos, "'notify' needs 'url' (the endpoint to ping)");
}

void pipeline_compile_sections(pipeline *pl, const doc_node *root, diag *d)
{
    const doc_node *n;
    pl->keep_runs = 30;
    pl->notify_timeout_s = 10;
    /* The name names the pipeline's folder in the state directory (rundir.h). A name
     * taken from the file name is checked when a run starts, so that validating a
     * file named oddly keeps working. */
    if ((n = doc_get(root, "name")) && json_is_string(n->json) &&
        !rundir_valid_name(json_string_value(n->json)))
        diag_add(d, n->pos, "'name' names the pipeline's folder in the state directory: "
                            "1 to 100 characters, no '/', not starting with '.'");
    if ((n = doc_get(root, "plugins")))
        compile_plugins(pl, n, d);
    if ((n = doc_get(root, "connections")))
        compile_connections(pl, n, d);
    if ((n = doc_get(root, "staging")))
        compile_staging(pl, n, d);
    if ((n = doc_get(root, "retention")))
        compile_retention(pl, n, d);
    if ((n = doc_get(root, "notify")))
        compile_notify(pl, n, d);
}
