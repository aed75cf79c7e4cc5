/* libFuzzer target for engine/intrinsic.c: compiles arbitrary text as an intrinsic call
 * and, when it compiles, evaluates it against a fixed input and context object.
 * Build: clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined
 *   -Iinclude -iquote engine engine/error.c engine/path.c engine/intrinsic.c
 *   tests/fuzz/fuzz_intrinsic.c -ljansson -lcrypto -lm -o fuzz_intrinsic */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "intrinsic.h"

static const char *const INPUT =
    "{\"s\": \"a,b.c\", \"t\": \"x {} y {}\", \"n\": 0, \"i\": 9223372036854775807,"
    " \"r\": 1.5, \"b\": false, \"z\": null, \"e\": \"\", \"a\": [1, 1.0, \"1\", [2], {\"k\": 3}],"
    " \"o\": {\"k\": {\"d\": [true]}}, \"j\": \"{\\\"x\\\": [1, 2]}\", \"b64\": \"YWJj\"}";

static json_t *build_ctx(void *arg)
{
    (void)arg;
    return json_pack("{s:{s:s},s:{s:{s:i,s:s}}}", "Execution", "Id", "arn:exec",
                     "Map", "Item", "Index", 3, "Value", "v");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *input;
    if (!input && !(input = json_loads(INPUT, 0, NULL)))
        abort();
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    char msg[256];
    intrinsic *fn = intrinsic_compile(text, msg, sizeof msg);
    if (!fn) {
        if (msg[0] == '\0') /* every rejection says why */
            abort();
        free(text);
        return 0;
    }
    ctx_provider cp = {.build = build_ctx};
    etl_error err = {0};
    json_t *r = intrinsic_eval(fn, input, &cp, &err);
    if (!r && strcmp(err.name, "States.IntrinsicFailure") != 0)
        abort();
    if (r && err.name[0] != '\0') /* success leaves the error record alone */
        abort();
    json_decref(r);
    ctx_release(&cp);
    intrinsic_free(fn);
    free(text);
    return 0;
}
