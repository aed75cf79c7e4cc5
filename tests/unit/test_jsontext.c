/* Tests of the compact JSON text (engine/jsontext.c): the text of every kind of value,
 * and the known texts (jt_known) that stand in for a value written more than once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "jsontext.h"

static char *text_of(const json_t *v, const jt_known *known, size_t nknown)
{
    jt_buf b = {.known = known, .nknown = nknown};
    jt_value(&b, v);
    char *s = jt_finish(&b, NULL);
    assert_non_null(s);
    return s;
}

/* Keys keep their order, strings are escaped, reals stay reals in their shortest form,
 * integers are exact. */
static void test_values(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:[i,I,f,f,s,b,b,n],s:{}}", "z", 1, (json_int_t)INT64_MIN, 0.1,
                          2.0, "a\"b\\c\n\x01", 1, 0, "a");
    char *s = text_of(v, NULL, 0);
    assert_string_equal(s, "{\"z\":[1,-9223372036854775808,0.1,2.0,\"a\\\"b\\\\c\\n\\u0001\","
                           "true,false,null],\"a\":{}}");
    free(s);
    json_decref(v);
}

/* A known value's text is copied in place of the value, wherever it appears; an equal
 * value at another address is written out. The stand-in text shows which happened. */
static void test_known_text_stands_in(void **state)
{
    (void)state;
    json_t *input = json_pack("{s:[i,i]}", "items", 1, 2);
    json_t *twin = json_deep_copy(input);
    json_t *event = json_pack("{s:s,s:O,s:[O,O]}", "type", "ExecutionStarted", "input", input,
                              "again", input, twin);
    jt_known known[] = {{input, "KNOWN", 5}};
    char *s = text_of(event, known, 1);
    assert_string_equal(s, "{\"type\":\"ExecutionStarted\",\"input\":KNOWN,\"again\":[KNOWN,"
                           "{\"items\":[1,2]}]}");
    free(s);
    /* the value itself is known: only its text */
    s = text_of(input, known, 1);
    assert_string_equal(s, "KNOWN");
    free(s);
    /* without the table, the value is walked as always */
    s = text_of(event, NULL, 0);
    assert_string_equal(s, "{\"type\":\"ExecutionStarted\",\"input\":{\"items\":[1,2]},"
                           "\"again\":[{\"items\":[1,2]},{\"items\":[1,2]}]}");
    free(s);
    json_decref(event);
    json_decref(twin);
    json_decref(input);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_known_text_stands_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
