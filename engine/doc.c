/* Definition loader: pipeline text (YAML or JSON) -> doc, a tree of nodes that carry
 * their line:column and the equivalent jansson value. First step of
 * pipeline text --doc_load--> doc --machine_compile--> machine.
 *
 * DESIGN
 * YAML is read event by event with libyaml; an explicit stack of open collections
 * (never recursion) builds each node's jansson value bottom-up, so deep input cannot
 * overflow the C stack, and nesting is capped at JSON_PARSER_MAX_DEPTH like jansson's.
 * Plain scalars are typed by the YAML 1.2 core schema; quoted and block scalars are
 * strings. Anchors and aliases are supported: an alias node has its own position and
 * shares the anchored node's children and jansson value, and the number of values the
 * document stands for (aliases expanded) is capped at MAX_VALUES against alias bombs.
 * Merge keys ("<<: *base" or "<<: [*a, *b]", plain and untagged) are supported with
 * the YAML 1.1 rules: keys written in the mapping win over merged ones wherever they
 * appear, earlier sources win over later ones, and merged members take the place of
 * the "<<" key, keeping their order and the position where they were written.
 * Syntax errors stop the load; meaning errors (duplicate keys, bad tags, numbers out of
 * range) are reported and the load goes on, so one run shows all of them.
 *
 * JSON is parsed by jansson (strict RFC 8259, duplicate keys rejected, 64-bit
 * integers), so the values are exactly jansson's. A small scanner then walks the text in
 * step with the jansson tree to record positions; jansson keeps object members in
 * insertion (document) order, which is what lets the two be walked together.
 *
 * Memory: nodes, member and item arrays, keys and the file name live in one arena; the
 * doc owns one reference to the root jansson value, and every node's json is borrowed
 * from that tree. */
#include "doc.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define MAX_VALUES 10000000u          /* values a document may stand for, aliases expanded */
#define MAX_DEPTH JSON_PARSER_MAX_DEPTH /* same nesting limit for YAML as jansson's for JSON */
#define TAG_PREFIX "tag:yaml.org,2002:"

/* ---- arena ---------------------------------------------------------------------- */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
} chunk;

typedef struct arena {
    chunk *head;
} arena;

static void *arena_alloc(arena *a, size_t n)
{
    const size_t align = sizeof(max_align_t);
    n = (n + align - 1) / align * align;
    if (n == 0)
        n = align;
    chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 32768 ? n : 32768;
        chunk *nc = malloc(sizeof *nc + cap);
        if (!nc)
            return NULL;
        nc->used = 0;
        nc->cap = cap;
        /* A big block gets its own chunk behind the current one, so the current
         * chunk's free space is not wasted. */
        if (c && n > 4096) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        c = nc;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static char *arena_strndup(arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void arena_free(arena *a)
{
    if (!a)
        return;
    for (chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

/* ---- nodes and the public lookups ---------------------------------------------- */

/* Every doc_node is the head of one of these; the extra field is used while loading. */
typedef struct node {
    doc_node pub;
    uint64_t size; /* values this node stands for, aliases expanded (alias-bomb guard) */
} node;

static node *node_new(arena *a, doc_pos pos, json_t *json)
{
    node *nd = arena_alloc(a, sizeof *nd);
    if (!nd)
        return NULL;
    memset(nd, 0, sizeof *nd);
    nd->pub.pos = pos;
    nd->pub.json = json;
    nd->size = 1;
    return nd;
}

void doc_free(doc *dc)
{
    if (!dc)
        return;
    if (dc->root)
        json_decref(dc->root->json);
    arena_free(dc->arena);
    free(dc);
}

/* Linear: objects in a definition are small, and this runs at compile time only. */
const doc_member *doc_member_get(const doc_node *obj, const char *key)
{
    if (!obj || !key || !json_is_object(obj->json))
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->members[i].key, key) == 0)
            return &obj->members[i];
    return NULL;
}

const doc_node *doc_get(const doc_node *obj, const char *key)
{
    const doc_member *m = doc_member_get(obj, key);
    return m ? m->value : NULL;
}

const char *doc_type_name(const doc_node *node)
{
    if (!node || !node->json)
        return "absent";
    switch (json_typeof(node->json)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "null";
}

/* ---- positions ------------------------------------------------------------------ */

static int clamp_int(size_t v)
{
    return v >= (size_t)INT_MAX ? INT_MAX : (int)v;
}

static doc_pos mark_pos(yaml_mark_t m)
{
    return (doc_pos){clamp_int(m.line + 1), clamp_int(m.column + 1)};
}

/* Columns count characters, not bytes, as both libyaml and jansson do. */
static doc_pos offset_pos(const char *s, size_t len, size_t off)
{
    doc_pos p = {1, 1};
    for (size_t i = 0; i < off && i < len; i++) {
        if (s[i] == '\n') {
            p.line++;
            p.col = 1;
        } else if (((unsigned char)s[i] & 0xC0) != 0x80) {
            p.col++;
        }
    }
    return p;
}

/* Byte offset of 0-based (line, column); len when past the end. */
static size_t pos_offset(const char *s, size_t len, size_t line, size_t col)
{
    size_t i = 0;
    for (; i < len && line > 0; i++)
        if (s[i] == '\n')
            line--;
    for (; i < len && col > 0; i++)
        if (i + 1 >= len || ((unsigned char)s[i + 1] & 0xC0) != 0x80)
            col--;
    return i;
}

/* ---- YAML scalars (1.2 core schema) ---------------------------------------------- */

static bool is_null_word(const char *s, size_t n)
{
    return n == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

/* 1 true, 0 false, -1 not a boolean */
static int bool_word(const char *s)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return 0;
    return -1;
}

static int digit_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return 99;
}

/* [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+. Returns 1 with *out set, 0 when s is not an
 * integer, -1 when it is one outside int64. */
static int parse_int(const char *s, size_t n, int64_t *out)
{
    int base = 10;
    bool neg = false;
    size_t i = 0;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        base = s[1] == 'x' ? 16 : 8;
        i = 2;
    } else if (n > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n)
        return 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    bool over = false;
    for (; i < n; i++) {
        int d = digit_val(s[i]);
        if (d >= base)
            return 0;
        if (v > (limit - (uint64_t)d) / (uint64_t)base)
            over = true;
        else
            v = v * (uint64_t)base + (uint64_t)d;
    }
    if (over)
        return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v; /* 0 - 2^63 wraps to INT64_MIN */
    return 1;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool is_float(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < n && s[i] == '.') {
        i++;
        size_t frac = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, frac++;
        if (digits == 0 && frac == 0)
            return false;
    } else if (digits == 0) {
        return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t exp = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, exp++;
        if (exp == 0)
            return false;
    }
    return i == n;
}

/* [-+]?\.(inf|Inf|INF) | \.(nan|NaN|NAN): valid YAML, not representable in JSON. */
static bool is_inf_nan(const char *s)
{
    const char *t = (*s == '-' || *s == '+') ? s + 1 : s;
    if (!strcmp(t, ".inf") || !strcmp(t, ".Inf") || !strcmp(t, ".INF"))
        return true;
    return !strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN");
}

/* strtod in the C locale whatever the process locale is; s matched is_float. */
static bool parse_real(const char *s, size_t n, double *out)
{
    const char *point = localeconv()->decimal_point;
    char *copy = NULL;
    if (point && strcmp(point, ".") != 0 && strlen(point) == 1 && memchr(s, '.', n)) {
        copy = strndup(s, n);
        if (!copy)
            return false;
        *strchr(copy, '.') = point[0];
        s = copy;
    }
    errno = 0;
    double v = strtod(s, NULL);
    bool ok = !(errno == ERANGE && (v > 1.0 || v < -1.0)); /* underflow to 0 is fine */
    free(copy);
    *out = v;
    return ok;
}

/* ---- YAML loader ------------------------------------------------------------------ */

typedef struct mentry {
    const char *key;
    doc_pos key_pos;
    node *value;
    bool merge; /* a "<<" entry: value->pub.json is a reference owned by the entry */
} mentry;

enum { KEY_NONE, KEY_HAVE, KEY_SKIP };

typedef struct frame {
    node *nd;     /* the collection being built; nd->pub.json is owned by the frame */
    bool is_map;
    char *anchor; /* owned copy, or NULL */
    void *v;      /* node * items, or mentry entries */
    size_t n, cap;
    /* maps only: the key waiting for its value */
    int key_state;
    const char *key;
    doc_pos key_pos;
    bool key_merge;
    bool has_merge;
} frame;

typedef struct yl {
    yaml_parser_t parser;
    const char *text;
    size_t len;
    diag *d;
    arena *a;
    frame *stack;
    size_t depth, stack_cap;
    json_t *anchor_index; /* anchor name -> json integer index into anchors */
    node **anchors;       /* each holds a reference to its json */
    size_t n_anchors, anchors_cap;
    uint64_t total;
    bool failed; /* an error was reported */
    bool fatal;  /* stop reading */
    node *root;  /* root->pub.json is owned */
    int docs;
} yl;

static void fail(yl *l, doc_pos pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(yl *l, doc_pos pos, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    diag_add(l->d, pos, "%s", msg);
    l->failed = true;
}

static void oom(yl *l)
{
    if (!l->fatal)
        fail(l, (doc_pos){0, 0}, "out of memory while loading the file");
    l->fatal = true;
}

static bool grow(void **v, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : 8;
    void *p = realloc(*v, nc * elem);
    if (!p)
        return false;
    *v = p;
    *cap = nc;
    return true;
}

static bool count_values(yl *l, uint64_t n, doc_pos pos)
{
    l->total += n;
    if (l->total <= MAX_VALUES)
        return true;
    fail(l, pos,
         "the document stands for more than %u values once aliases are expanded; "
         "use fewer nested aliases",
         MAX_VALUES);
    l->fatal = true;
    return false;
}

static frame *top(yl *l)
{
    return l->depth ? &l->stack[l->depth - 1] : NULL;
}

static bool expecting_key(yl *l)
{
    frame *f = top(l);
    return f && f->is_map && f->key_state == KEY_NONE;
}

static const mentry *find_entry(const frame *f, const char *key)
{
    const mentry *e = f->v;
    for (size_t i = 0; i < f->n; i++)
        if (!e[i].merge && strcmp(e[i].key, key) == 0)
            return &e[i];
    return NULL;
}

static void register_anchor(yl *l, const char *name, node *nd)
{
    if (!grow((void **)&l->anchors, &l->anchors_cap, l->n_anchors, sizeof *l->anchors)) {
        oom(l);
        return;
    }
    json_t *idx = json_integer((json_int_t)l->n_anchors);
    if (!idx || json_object_set_new(l->anchor_index, name, idx) != 0) {
        oom(l);
        return;
    }
    l->anchors[l->n_anchors++] = nd;
    json_incref(nd->pub.json);
}

static node *find_anchor(yl *l, const char *name)
{
    json_t *idx = json_object_get(l->anchor_index, name);
    return idx ? l->anchors[json_integer_value(idx)] : NULL;
}

/* A merge source must be a mapping, or a sequence of mappings. */
static bool merge_source_ok(const node *v)
{
    if (json_is_object(v->pub.json))
        return true;
    if (!json_is_array(v->pub.json))
        return false;
    for (size_t i = 0; i < v->pub.n; i++)
        if (!json_is_object(v->pub.items[i]->json))
            return false;
    return true;
}

/* A value is complete: hand it (and the reference to its json the caller owns) to
 * the collection that holds it, or make it the root. */
static void finish(yl *l, node *nd, const char *anchor)
{
    if (anchor)
        register_anchor(l, anchor, nd);
    frame *f = top(l);
    if (!f) {
        l->root = nd;
        return;
    }
    f->nd->size += nd->size;
    if (!f->is_map) {
        if (!grow(&f->v, &f->cap, f->n, sizeof(node *))) {
            json_decref(nd->pub.json);
            oom(l);
            return;
        }
        ((node **)f->v)[f->n++] = nd;
        if (json_array_append_new(f->nd->pub.json, nd->pub.json) != 0)
            oom(l);
        return;
    }
    if (f->key_state != KEY_HAVE) {
        /* A collection used as a key (reported at its start), or the value of a key
         * that was rejected: drop it. */
        json_decref(nd->pub.json);
        f->key_state = f->key_state == KEY_NONE ? KEY_SKIP : KEY_NONE;
        return;
    }
    f->key_state = KEY_NONE;
    if (f->key_merge && !merge_source_ok(nd)) {
        fail(l, nd->pub.pos,
             "the value of a merge key '<<' must be a mapping or a list of mappings, "
             "usually aliases such as *defaults");
        json_decref(nd->pub.json);
        return;
    }
    if (!grow(&f->v, &f->cap, f->n, sizeof(mentry))) {
        json_decref(nd->pub.json);
        oom(l);
        return;
    }
    ((mentry *)f->v)[f->n++] = (mentry){f->key, f->key_pos, nd, f->key_merge};
    if (!f->key_merge && json_object_set_new(f->nd->pub.json, f->key, nd->pub.json) != 0)
        oom(l);
}

static bool tag_is(const char *tag, const char *name)
{
    return strncmp(tag, TAG_PREFIX, sizeof TAG_PREFIX - 1) == 0 &&
           strcmp(tag + sizeof TAG_PREFIX - 1, name) == 0;
}

/* "!!int" for the core tags, the tag as written otherwise; for messages. */
static const char *short_tag(const char *tag, char *buf, size_t size)
{
    if (strncmp(tag, TAG_PREFIX, sizeof TAG_PREFIX - 1) != 0)
        return tag;
    snprintf(buf, size, "!!%s", tag + sizeof TAG_PREFIX - 1);
    return buf;
}

/* The jansson value of a scalar; reports errors and returns null in their place, so
 * the load can go on. NULL only when out of memory. */
static json_t *scalar_json(yl *l, const yaml_event_t *e, doc_pos pos)
{
    const char *s = (const char *)e->data.scalar.value;
    size_t n = e->data.scalar.length;
    const char *tag = (const char *)e->data.scalar.tag;
    bool plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    int shown = n > 40 ? 40 : (int)n;
    const char *more = n > 40 ? "..." : "";
    int64_t iv = 0;
    double rv = 0;
    int b, r;
    char tbuf[128];

    if (tag && strcmp(tag, "!") == 0)
        tag = NULL, plain = false; /* the non-specific tag "!" means string */
    if (!tag && !plain)
        return json_stringn(s, n);
    if (tag && tag_is(tag, "str"))
        return json_stringn(s, n);
    bool typed = tag != NULL;
    if (!typed || tag_is(tag, "null")) {
        if (is_null_word(s, n))
            return json_null();
        if (typed)
            goto mismatch;
    }
    if (!typed || tag_is(tag, "bool")) {
        if ((b = bool_word(s)) >= 0)
            return json_boolean(b);
        if (typed)
            goto mismatch;
    }
    if (!typed || tag_is(tag, "int") || tag_is(tag, "float")) {
        r = parse_int(s, n, &iv);
        if (r < 0 && !(typed && tag_is(tag, "float"))) {
            fail(l, pos,
                 "integer %.*s%s is out of the 64-bit range; quote it to keep it as a string",
                 shown, s, more);
            return json_null();
        }
        if (r > 0)
            return typed && tag_is(tag, "float") ? json_real((double)iv) : json_integer(iv);
        if (typed && tag_is(tag, "int"))
            goto mismatch;
    }
    if (!typed || tag_is(tag, "float")) {
        if (is_inf_nan(s)) {
            fail(l, pos, "'%s' has no JSON equivalent; quote it to keep it as a string", s);
            return json_null();
        }
        if (is_float(s, n)) {
            if (!parse_real(s, n, &rv)) {
                fail(l, pos, "number %.*s%s is too large; quote it to keep it as a string",
                     shown, s, more);
                return json_null();
            }
            return json_real(rv);
        }
        if (typed)
            goto mismatch;
    }
    if (!typed)
        return json_stringn(s, n);
    fail(l, pos, "unsupported tag %s; only !!str, !!int, !!float, !!bool and !!null are allowed",
         short_tag(tag, tbuf, sizeof tbuf));
    return json_null();
mismatch:
    fail(l, pos, "'%.*s%s' is not a valid %s value", shown, s, more,
         short_tag(tag, tbuf, sizeof tbuf));
    return json_null();
}

static bool scalar_tag_ok(const char *tag)
{
    return !tag || !strcmp(tag, "!") || tag_is(tag, "str") || tag_is(tag, "int") ||
           tag_is(tag, "float") || tag_is(tag, "bool") || tag_is(tag, "null");
}

static void on_key_scalar(yl *l, const yaml_event_t *e, doc_pos pos)
{
    frame *f = top(l);
    const char *s = (const char *)e->data.scalar.value;
    size_t n = e->data.scalar.length;
    const char *tag = (const char *)e->data.scalar.tag;
    const char *anchor = (const char *)e->data.scalar.anchor;

    f->key_state = KEY_SKIP;
    if (!scalar_tag_ok(tag)) {
        char tbuf[128];
        fail(l, pos, "unsupported tag %s on a mapping key", short_tag(tag, tbuf, sizeof tbuf));
        return;
    }
    if (memchr(s, '\0', n)) {
        fail(l, pos, "mapping keys cannot contain NUL characters");
        return;
    }
    if (anchor) {
        /* An anchored key can be used as a value elsewhere: give it a typed node. */
        json_t *j = scalar_json(l, e, pos);
        node *nd = j ? node_new(l->a, pos, j) : NULL;
        if (!nd) {
            json_decref(j);
            oom(l);
            return;
        }
        if (!count_values(l, 1, pos)) {
            json_decref(j);
            return;
        }
        register_anchor(l, anchor, nd);
        json_decref(j);
    }
    bool merge = !tag && e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strcmp(s, "<<") == 0;
    /* The jansson object answers "seen before?" in constant time; the entries are
     * searched only to say where. */
    const mentry *first =
        merge || !json_object_get(f->nd->pub.json, s) ? NULL : find_entry(f, s);
    if (merge && f->has_merge) {
        fail(l, pos, "duplicate merge key '<<'; list the sources in one: <<: [*a, *b]");
        return;
    }
    if (first) {
        fail(l, pos, "duplicate key \"%s\" (first defined at %d:%d); remove one of them", s,
             first->key_pos.line, first->key_pos.col);
        return;
    }
    f->key = arena_strndup(l->a, s, n);
    if (!f->key) {
        oom(l);
        return;
    }
    f->key_pos = pos;
    f->key_merge = merge;
    f->has_merge = f->has_merge || merge;
    f->key_state = KEY_HAVE;
}

static void on_scalar(yl *l, const yaml_event_t *e)
{
    doc_pos pos = mark_pos(e->start_mark);
    if (expecting_key(l)) {
        on_key_scalar(l, e, pos);
        return;
    }
    json_t *j = scalar_json(l, e, pos);
    node *nd = j ? node_new(l->a, pos, j) : NULL;
    if (!nd) {
        json_decref(j);
        oom(l);
        return;
    }
    if (!count_values(l, 1, pos)) {
        json_decref(j);
        return;
    }
    finish(l, nd, (const char *)e->data.scalar.anchor);
}

static void on_alias(yl *l, const yaml_event_t *e)
{
    doc_pos pos = mark_pos(e->start_mark);
    const char *name = (const char *)e->data.alias.anchor;
    node *target = find_anchor(l, name);
    if (expecting_key(l)) {
        frame *f = top(l);
        f->key_state = KEY_SKIP;
        if (!target) {
            fail(l, pos, "unknown alias *%s; define &%s before using it", name, name);
        } else if (!json_is_string(target->pub.json) ||
                   strlen(json_string_value(target->pub.json)) !=
                       json_string_length(target->pub.json)) {
            fail(l, pos, "alias *%s is used as a mapping key but is not a string", name);
        } else {
            /* Reuse the scalar-key path so duplicates are checked the same way. */
            yaml_event_t fake = {0};
            fake.type = YAML_SCALAR_EVENT;
            fake.start_mark = e->start_mark;
            fake.data.scalar.value = (yaml_char_t *)json_string_value(target->pub.json);
            fake.data.scalar.length = json_string_length(target->pub.json);
            fake.data.scalar.style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
            f->key_state = KEY_NONE;
            on_key_scalar(l, &fake, pos);
        }
        return;
    }
    node *nd = node_new(l->a, pos, json_null());
    if (!nd) {
        oom(l);
        return;
    }
    if (!target) {
        fail(l, pos, "unknown alias *%s; define &%s before using it", name, name);
    } else {
        *nd = *target;
        nd->pub.pos = pos;
        json_incref(nd->pub.json);
        if (!count_values(l, nd->size, pos)) {
            json_decref(nd->pub.json);
            return;
        }
    }
    finish(l, nd, NULL);
}

static void on_start(yl *l, const yaml_event_t *e, bool is_map)
{
    doc_pos pos = mark_pos(e->start_mark);
    const char *tag = (const char *)(is_map ? e->data.mapping_start.tag
                                            : e->data.sequence_start.tag);
    const char *anchor = (const char *)(is_map ? e->data.mapping_start.anchor
                                               : e->data.sequence_start.anchor);
    if (l->depth >= MAX_DEPTH) {
        fail(l, pos, "nesting is deeper than %d levels", MAX_DEPTH);
        l->fatal = true;
        return;
    }
    if (expecting_key(l))
        fail(l, pos, "a mapping key must be a scalar, not a %s", is_map ? "mapping" : "list");
    if (tag && strcmp(tag, "!") != 0 && !tag_is(tag, is_map ? "map" : "seq")) {
        char tbuf[128];
        fail(l, pos, "unsupported tag %s on a %s", short_tag(tag, tbuf, sizeof tbuf),
             is_map ? "mapping" : "list");
    }
    if (!count_values(l, 1, pos))
        return;
    if (!grow((void **)&l->stack, &l->stack_cap, l->depth, sizeof *l->stack)) {
        oom(l);
        return;
    }
    json_t *j = is_map ? json_object() : json_array();
    node *nd = j ? node_new(l->a, pos, j) : NULL;
    char *acopy = anchor ? strdup(anchor) : NULL;
    if (!nd || (anchor && !acopy)) {
        json_decref(j);
        free(acopy);
        oom(l);
        return;
    }
    l->stack[l->depth++] = (frame){.nd = nd, .is_map = is_map, .anchor = acopy};
}

static void frame_release(frame *f)
{
    if (f->is_map) {
        mentry *e = f->v;
        for (size_t i = 0; i < f->n; i++)
            if (e[i].merge)
                json_decref(e[i].value->pub.json);
    }
    json_decref(f->nd->pub.json);
    free(f->v);
    free(f->anchor);
}

/* Rebuild a mapping that has a "<<" entry: merged members take the merge key's place,
 * and are skipped when the mapping writes the key itself or an earlier source has it. */
static bool apply_merge(yl *l, frame *f, mentry **out, size_t *out_n)
{
    json_t *explicit_keys = f->nd->pub.json;
    json_t *obj = json_object();
    mentry *res = NULL;
    size_t n = 0, cap = 0;
    bool ok = false;
    if (!obj)
        goto out;
    mentry *e = f->v;
    for (size_t i = 0; i < f->n; i++) {
        if (!e[i].merge) {
            if (!grow((void **)&res, &cap, n, sizeof *res) ||
                json_object_set(obj, e[i].key, e[i].value->pub.json) != 0)
                goto out;
            res[n++] = e[i];
            continue;
        }
        const doc_node *src = &e[i].value->pub;
        size_t n_src = json_is_object(src->json) ? 1 : src->n;
        for (size_t s = 0; s < n_src; s++) {
            const doc_node *m = json_is_object(src->json) ? src : src->items[s];
            for (size_t k = 0; k < m->n; k++) {
                const doc_member *mm = &m->members[k];
                if (json_object_get(explicit_keys, mm->key) || json_object_get(obj, mm->key))
                    continue;
                if (!grow((void **)&res, &cap, n, sizeof *res) ||
                    json_object_set(obj, mm->key, mm->value->json) != 0)
                    goto out;
                res[n++] = (mentry){mm->key, mm->key_pos, (node *)mm->value, false};
            }
        }
    }
    ok = true;
out:
    if (!ok) {
        json_decref(obj);
        free(res);
        oom(l);
        return false;
    }
    /* Sizes: the merge source was counted whole when its entry was added. */
    json_decref(f->nd->pub.json);
    f->nd->pub.json = obj;
    for (size_t i = 0; i < f->n; i++)
        if (e[i].merge)
            json_decref(e[i].value->pub.json);
    free(f->v);
    f->v = res;
    f->n = f->cap = n;
    f->has_merge = false;
    *out = res;
    *out_n = n;
    return true;
}

static void on_end(yl *l)
{
    frame *f = top(l);
    if (!f)
        return;
    node *nd = f->nd;
    if (f->is_map) {
        mentry *e = f->v;
        size_t n = f->n;
        if (f->has_merge && !apply_merge(l, f, &e, &n))
            return;
        doc_member *m = n ? arena_alloc(l->a, n * sizeof *m) : NULL;
        if (n && !m) {
            oom(l);
            return;
        }
        for (size_t i = 0; i < n; i++)
            m[i] = (doc_member){e[i].key, e[i].key_pos, &e[i].value->pub};
        nd->pub.members = m;
        nd->pub.n = n;
    } else {
        node **it = f->v;
        doc_node **items = f->n ? arena_alloc(l->a, f->n * sizeof *items) : NULL;
        if (f->n && !items) {
            oom(l);
            return;
        }
        for (size_t i = 0; i < f->n; i++)
            items[i] = &it[i]->pub;
        nd->pub.items = items;
        nd->pub.n = f->n;
    }
    char *anchor = f->anchor;
    free(f->v);
    l->depth--;
    finish(l, nd, anchor);
    free(anchor);
}

static void syntax_error(yl *l)
{
    yaml_parser_t *p = &l->parser;
    const char *problem = p->problem ? p->problem : "syntax error";
    if (p->error == YAML_MEMORY_ERROR) {
        oom(l);
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        /* libyaml gives reader errors as a byte offset, not a mark; for a bad trailing
         * octet, that of the octet: point at the character it breaks instead. */
        size_t off = p->problem_offset;
        if (strstr(problem, "trailing")) {
            for (size_t back = 1; back <= 3 && back <= off; back++) {
                if (((unsigned char)l->text[off - back] & 0xC0) == 0xC0) {
                    off -= back;
                    break;
                }
            }
        }
        doc_pos pos = offset_pos(l->text, l->len, off);
        if (p->problem_value >= 0 && strstr(problem, "UTF-8"))
            fail(l, pos, "%s (byte 0x%02X); the file must be UTF-8", problem,
                 (unsigned)p->problem_value & 0xFF);
        else if (strstr(problem, "UTF-8"))
            fail(l, pos, "%s; the file must be UTF-8", problem);
        else
            fail(l, pos, "%s", problem);
        return;
    }
    doc_pos pos = mark_pos(p->problem_mark);
    size_t off = pos_offset(l->text, l->len, p->problem_mark.line, p->problem_mark.column);
    const char *hint = "";
    if (off < l->len && l->text[off] == '\t')
        hint = "; indent with spaces, YAML does not allow tabs";
    if (p->context && (p->context_mark.line != p->problem_mark.line ||
                       p->context_mark.column != p->problem_mark.column)) {
        doc_pos cp = mark_pos(p->context_mark);
        fail(l, pos, "%s (%s started at %d:%d)%s", problem, p->context, cp.line, cp.col, hint);
    } else {
        fail(l, pos, "%s%s", problem, hint);
    }
}

static void on_event(yl *l, const yaml_event_t *e)
{
    switch (e->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++l->docs > 1) {
            fail(l, mark_pos(e->start_mark),
                 "a second document starts here; a pipeline file holds one document, "
                 "remove this '---' and what follows");
            l->fatal = true;
        }
        break;
    case YAML_SCALAR_EVENT:
        on_scalar(l, e);
        break;
    case YAML_ALIAS_EVENT:
        on_alias(l, e);
        break;
    case YAML_SEQUENCE_START_EVENT:
        on_start(l, e, false);
        break;
    case YAML_MAPPING_START_EVENT:
        on_start(l, e, true);
        break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        on_end(l);
        break;
    default:
        break;
    }
}

static node *load_yaml(const char *text, size_t len, arena *a, diag *d)
{
    yl l = {.text = text, .len = len, .d = d, .a = a};
    node *result = NULL;
    if (!yaml_parser_initialize(&l.parser)) {
        oom(&l);
        return NULL;
    }
    l.anchor_index = json_object();
    if (!l.anchor_index) {
        oom(&l);
        goto out;
    }
    yaml_parser_set_encoding(&l.parser, YAML_UTF8_ENCODING);
    yaml_parser_set_input_string(&l.parser, (const unsigned char *)text, len);
    for (bool done = false; !done && !l.fatal;) {
        yaml_event_t e;
        if (!yaml_parser_parse(&l.parser, &e)) {
            syntax_error(&l);
            break;
        }
        done = e.type == YAML_STREAM_END_EVENT;
        on_event(&l, &e);
        yaml_event_delete(&e);
    }
    if (!l.failed && !l.root)
        fail(&l, (doc_pos){0, 0}, "the file is empty");
    if (!l.failed && l.root)
        result = l.root;
out:
    while (l.depth)
        frame_release(&l.stack[--l.depth]);
    free(l.stack);
    for (size_t i = 0; i < l.n_anchors; i++)
        json_decref(l.anchors[i]->pub.json);
    free(l.anchors);
    json_decref(l.anchor_index);
    if (!result && l.root)
        json_decref(l.root->pub.json);
    yaml_parser_delete(&l.parser);
    return result;
}

/* ---- JSON positions ----------------------------------------------------------------- */

/* Walks JSON text that jansson accepted (up to the point where it stopped), tracking
 * line and column (in characters, lines split at '\n' only, as jansson counts). */
typedef struct jw {
    const char *s;
    size_t len, i;
    int line, col;
    arena *a;
    diag *d;
} jw;

static void jw_adv(jw *w)
{
    char c = w->s[w->i++];
    if (c == '\n') {
        w->line++;
        w->col = 1;
    } else if (w->i >= w->len || ((unsigned char)w->s[w->i] & 0xC0) != 0x80) {
        w->col++;
    }
}

static void jw_ws(jw *w)
{
    while (w->i < w->len && strchr(" \t\r\n", w->s[w->i]) && w->s[w->i])
        jw_adv(w);
}

static bool jw_at(jw *w, char c)
{
    jw_ws(w);
    return w->i < w->len && w->s[w->i] == c;
}

/* At the opening quote; stops after the closing one. */
static bool jw_string(jw *w)
{
    jw_adv(w);
    while (w->i < w->len && w->s[w->i] != '"') {
        if (w->s[w->i] == '\\' && w->i + 1 < w->len)
            jw_adv(w);
        jw_adv(w);
    }
    if (w->i >= w->len)
        return false;
    jw_adv(w);
    return true;
}

/* Numbers and literals: everything up to the next delimiter. */
static void jw_atom(jw *w)
{
    while (w->i < w->len && !strchr(",]} \t\r\n", w->s[w->i]))
        jw_adv(w);
}

/* Builds the node for v, which starts at the scanner's position. */
static node *jw_node(jw *w, json_t *v, int depth)
{
    jw_ws(w);
    if (w->i >= w->len || depth > MAX_DEPTH)
        return NULL;
    node *nd = node_new(w->a, (doc_pos){w->line, w->col}, v);
    if (!nd)
        return NULL;
    char c = w->s[w->i];
    if (json_is_object(v)) {
        if (c != '{')
            return NULL;
        jw_adv(w);
        size_t n = json_object_size(v);
        doc_member *m = n ? arena_alloc(w->a, n * sizeof *m) : NULL;
        if (n && !m)
            return NULL;
        void *it = json_object_iter(v);
        for (size_t k = 0; k < n; k++, it = json_object_iter_next(v, it)) {
            if ((k > 0 && !jw_at(w, ',')) || !it)
                return NULL;
            if (k > 0)
                jw_adv(w);
            if (!jw_at(w, '"'))
                return NULL;
            m[k].key_pos = (doc_pos){w->line, w->col};
            m[k].key = json_object_iter_key(it);
            if (!jw_string(w) || !jw_at(w, ':'))
                return NULL;
            jw_adv(w);
            node *child = jw_node(w, json_object_iter_value(it), depth + 1);
            if (!child)
                return NULL;
            m[k].value = &child->pub;
        }
        if (!jw_at(w, '}'))
            return NULL;
        jw_adv(w);
        nd->pub.members = m;
        nd->pub.n = n;
    } else if (json_is_array(v)) {
        if (c != '[')
            return NULL;
        jw_adv(w);
        size_t n = json_array_size(v);
        doc_node **items = n ? arena_alloc(w->a, n * sizeof *items) : NULL;
        if (n && !items)
            return NULL;
        for (size_t k = 0; k < n; k++) {
            if (k > 0) {
                if (!jw_at(w, ','))
                    return NULL;
                jw_adv(w);
            }
            node *child = jw_node(w, json_array_get(v, k), depth + 1);
            if (!child)
                return NULL;
            items[k] = &child->pub;
        }
        if (!jw_at(w, ']'))
            return NULL;
        jw_adv(w);
        nd->pub.items = items;
        nd->pub.n = n;
    } else if (json_is_string(v)) {
        if (c != '"' || !jw_string(w))
            return NULL;
    } else {
        /* a number or a literal: check it is the kind of token jansson saw */
        bool number = c == '-' || (c >= '0' && c <= '9');
        if (json_is_number(v) != number || (json_is_true(v) && c != 't') ||
            (json_is_false(v) && c != 'f') || (json_is_null(v) && c != 'n'))
            return NULL;
        jw_atom(w);
    }
    return nd;
}

/* Finds the first duplicate key in text that jansson rejected for one, and reports it
 * at the second key. Returns true when reported. Keys are decoded by jansson itself so
 * that "a" and "\u0061" are the same key. */
static bool find_dup(jw *w, int depth)
{
    jw_ws(w);
    if (w->i >= w->len || depth > MAX_DEPTH)
        return false;
    char c = w->s[w->i];
    if (c == '"') {
        jw_string(w);
        return false;
    }
    if (c != '{' && c != '[') {
        jw_atom(w);
        return false;
    }
    bool is_obj = c == '{';
    json_t *seen = is_obj ? json_object() : NULL;
    bool found = false;
    jw_adv(w);
    for (size_t k = 0; !found; k++) {
        if (jw_at(w, is_obj ? '}' : ']') || w->i >= w->len)
            break;
        if (k > 0) {
            if (!jw_at(w, ','))
                break;
            jw_adv(w);
        }
        if (is_obj) {
            if (!seen || !jw_at(w, '"'))
                break;
            doc_pos kp = {w->line, w->col};
            size_t start = w->i;
            if (!jw_string(w))
                break;
            json_t *key = json_loadb(w->s + start, w->i - start, JSON_DECODE_ANY, NULL);
            const char *ks = json_string_value(key);
            json_t *first = ks ? json_object_get(seen, ks) : NULL;
            if (first) {
                json_int_t packed = json_integer_value(first);
                diag_add(w->d, kp, "duplicate key \"%s\" (first defined at %d:%d); remove one of them",
                         ks, (int)(packed >> 32), (int)(packed & 0xFFFFFFFF));
                found = true;
            } else if (ks) {
                json_object_set_new(seen, ks,
                                    json_integer(((json_int_t)kp.line << 32) | (json_int_t)kp.col));
            }
            json_decref(key);
            if (found || !jw_at(w, ':'))
                break;
            jw_adv(w);
        }
        found = find_dup(w, depth + 1);
    }
    json_decref(seen);
    if (!found && jw_at(w, is_obj ? '}' : ']'))
        jw_adv(w);
    return found;
}

static node *load_json(const char *text, size_t len, arena *a, diag *d)
{
    json_error_t err;
    jw w = {.s = text, .len = len, .line = 1, .col = 1, .a = a, .d = d};
    /* jansson skips a raw NUL between tokens; JSON allows it nowhere. */
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        diag_add(d, offset_pos(text, len, (size_t)(nul - text)),
                 "NUL byte in the file; JSON does not allow it (write \\u0000 inside a string)");
        return NULL;
    }
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!root) {
        if (strncmp(err.text, "duplicate object key", 20) == 0 && find_dup(&w, 0))
            return NULL;
        doc_pos pos = {err.line > 0 ? err.line : 0, err.column > 0 ? err.column : 0};
        diag_add(d, pos, "%s", err.text);
        return NULL;
    }
    node *nd = jw_node(&w, root, 0);
    if (!nd) {
        /* The scanner and jansson disagree about text jansson accepted: a bug here,
         * or memory ran out. */
        diag_add(d, (doc_pos){w.line, w.col}, "internal error: cannot locate JSON values");
        json_decref(root);
        return NULL;
    }
    return nd;
}

/* ---- entry points ----------------------------------------------------------------- */

static bool ends_with_json(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n >= 5 && strcasecmp(name + n - 5, ".json") == 0;
}

doc *doc_load_string(const char *text, size_t len, const char *name, bool force_json, diag *d)
{
    doc *dc = calloc(1, sizeof *dc);
    arena *a = calloc(1, sizeof *a);
    if (!dc || !a) {
        free(dc);
        free(a);
        diag_add(d, (doc_pos){0, 0}, "out of memory while loading the file");
        return NULL;
    }
    dc->arena = a;
    if (!name)
        name = "<string>";
    dc->file = arena_strndup(a, name, strlen(name));
    if (!dc->file) {
        doc_free(dc);
        diag_add(d, (doc_pos){0, 0}, "out of memory while loading the file");
        return NULL;
    }
    if (!text)
        text = "", len = 0;

    node *root = NULL;
    if (force_json || ends_with_json(name)) {
        size_t i = 0;
        while (i < len && strchr(" \t\r\n", text[i]) && text[i])
            i++;
        if (i == len)
            diag_add(d, (doc_pos){0, 0}, "the file is empty");
        else
            root = load_json(text, len, a, d);
    } else {
        root = load_yaml(text, len, a, d);
    }
    if (!root) {
        doc_free(dc);
        return NULL;
    }
    dc->root = &root->pub;
    return dc;
}

doc *doc_load_file(const char *path, diag *d)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    doc *dc = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_add(d, (doc_pos){0, 0}, "cannot open the file: %s", strerror(errno));
        return NULL;
    }
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                diag_add(d, (doc_pos){0, 0}, "out of memory while reading the file");
                goto out;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                diag_add(d, (doc_pos){0, 0}, "cannot read the file: %s", strerror(errno));
                goto out;
            }
            break;
        }
    }
    dc = doc_load_string(buf, len, path, false, d);
out:
    fclose(f);
    free(buf);
    return dc;
}
