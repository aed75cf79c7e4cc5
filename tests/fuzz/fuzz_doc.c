/* libFuzzer target for the definition loader: every input is loaded as YAML and as
 * strict JSON. Beyond the sanitizers it checks that the node tree agrees with its own
 * jansson values, and that the JSON path accepts exactly what jansson accepts, with
 * equal values. Build:
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iengine \
 *     engine/diag.c engine/doc.c tests/fuzz/fuzz_doc.c -ljansson -lyaml -o fuzz_doc */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "doc.h"

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* Aliases make the tree a DAG that can stand for millions of values: bound the walk. */
static void check_node(const doc_node *n, int depth, long *budget)
{
    if (--*budget < 0)
        return;
    CHECK(n && n->json);
    CHECK(n->pos.line >= 1 && n->pos.col >= 1);
    CHECK(depth <= JSON_PARSER_MAX_DEPTH + 1);
    if (json_is_object(n->json)) {
        CHECK(n->n == json_object_size(n->json));
        CHECK(n->items == NULL);
        for (size_t i = 0; i < n->n; i++) {
            const doc_member *m = &n->members[i];
            CHECK(m->key_pos.line >= 1 && m->key_pos.col >= 1);
            CHECK(json_object_get(n->json, m->key) == m->value->json);
            CHECK(doc_member_get(n, m->key) != NULL);
            check_node(m->value, depth + 1, budget);
        }
    } else if (json_is_array(n->json)) {
        CHECK(n->n == json_array_size(n->json));
        CHECK(n->members == NULL);
        for (size_t i = 0; i < n->n; i++) {
            CHECK(json_array_get(n->json, i) == n->items[i]->json);
            check_node(n->items[i], depth + 1, budget);
        }
    } else {
        CHECK(n->n == 0);
    }
}

static void check_diag(diag *d, bool loaded)
{
    /* a failed load always says why; a successful one says nothing */
    CHECK(loaded == (diag_count(d) == 0));
    for (size_t i = 0; i < diag_count(d); i++)
        CHECK(diag_message(d, i) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;

    diag *d = diag_new("fuzz.yaml");
    if (!d)
        return 0;
    doc *dc = doc_load_string(text, size, "fuzz.yaml", false, d);
    check_diag(d, dc != NULL);
    if (dc) {
        long budget = 100000;
        check_node(dc->root, 0, &budget);
    }
    doc_free(dc);
    diag_free(d);

    d = diag_new("fuzz.json");
    if (!d)
        return 0;
    dc = doc_load_string(text, size, "fuzz.yaml", true, d);
    check_diag(d, dc != NULL);
    json_t *want = json_loadb(text, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    /* jansson skips a raw NUL between tokens; the loader rejects it, as RFC 8259 does */
    CHECK((dc != NULL) == (want != NULL && !memchr(text, '\0', size)));
    if (dc) {
        CHECK(json_equal(dc->root->json, want));
        long budget = 100000;
        check_node(dc->root, 0, &budget);
    }
    json_decref(want);
    doc_free(dc);
    diag_free(d);
    return 0;
}
