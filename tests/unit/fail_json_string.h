/* For a unit test linked with -Wl,--wrap=json_string (tests/unit/meson.build):
 * burrow's calls to json_string() return NULL while fail_json_string is
 * set, as out of memory would. Included by the one test file of a binary. */
#ifndef BW_TEST_FAIL_JSON_STRING_H
#define BW_TEST_FAIL_JSON_STRING_H

#include <jansson.h>

static int fail_json_string;

json_t *__real_json_string(const char *v);
json_t *__wrap_json_string(const char *v);
json_t *__wrap_json_string(const char *v)
{
    return fail_json_string ? NULL : __real_json_string(v);
}

#endif /* BW_TEST_FAIL_JSON_STRING_H */
