/* libFuzzer target for engine/path.c: compiles arbitrary text as a Reference Path and
 * as a query path, evaluates both against a fixed document and checks invariants.
 * Build: clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined -Iinclude
 *        -Iengine engine/error.c engine/path.c tests/fuzz/fuzz_path.c -ljansson */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"

static const char *DOC =
    "{\"a\": {\"b\": [1, {\"c\": null, \"a\": [true, false]}, \"x\"], \"a.b\": 0},"
    " \"arr\": [[0, 1], [2, [3, {\"a\": {}}]], [], 9223372036854775807],"
    " \"\": {\"'\": \"q\", \"\\\\\": -1.5}, \"s\": \"str\", \"n\": null, \"e\": {}}";

static json_t *doc;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    doc = json_loads(DOC, 0, NULL);
    if (!doc)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char err[256];

    path *q = path_compile(text, PATH_QUERY, err, sizeof err);
    if (q) {
        if (strcmp(path_text(q), text) != 0)
            abort();
        json_t *r = path_query(q, doc);
        if (path_is_indefinite(q) && !json_is_array(r))
            abort();
        if (!path_is_indefinite(q) && r != path_get(q, doc))
            abort();
        json_decref(r);
        path_free(q);
    } else if (!strstr(err, " at offset ")) {
        abort(); /* every syntax error names its offset */
    }

    path *p = path_compile(text, PATH_REFERENCE, err, sizeof err);
    if (p) {
        if (!q || path_is_indefinite(p)) /* a reference path is always a valid definite query */
            abort();
        (void)path_get(p, doc);
        if (!path_is_context(p)) {
            json_t *snapshot = json_deep_copy(doc), *value = json_string("v");
            etl_error e;
            json_t *out = path_set(p, doc, value, &e);
            if (out && path_get(p, out) != value) /* the value lands where the path points */
                abort();
            if (!out && strcmp(e.name, "States.ResultPathMatchFailure") != 0)
                abort();
            if (!json_equal(doc, snapshot)) /* inputs are never mutated */
                abort();
            json_decref(out);
            json_decref(value);
            json_decref(snapshot);
        }
        path_free(p);
    }
    free(text);
    return 0;
}
