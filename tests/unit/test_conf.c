/* The conf builder (host.c: bw_conf_build) against a hand-written option
 * table, read back through the conf slots plugins use (bw_host_table()). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "host.h"
#include "log.h"

static const bw_option_t opts[] = {
    {.key = "s", .type = BW_OPT_STRING, .default_value = "dflt", .description = "a string"},
    {.key = "b", .type = BW_OPT_BOOL, .default_value = "true", .description = "a boolean"},
    {.key = "n", .type = BW_OPT_INT, .default_value = "42", .description = "an integer"},
    {.key = "l", .type = BW_OPT_STRING_LIST, .description = "a list"},
    {.key = "bs", .type = BW_OPT_BOOL_OR_STRING, .description = "true, false or a word"},
    {.key = "s0", .type = BW_OPT_STRING, .description = "a string without default"},
    {.key = "b0", .type = BW_OPT_BOOL, .description = "a boolean without default"},
    {.key = "n0", .type = BW_OPT_INT, .description = "an integer without default"},
    {.key = "request_header.add", .type = BW_OPT_STRING_LIST, .description = "headers to add"},
    {.key = "request_header.remove", .type = BW_OPT_STRING_LIST, .description = "to remove"},
    {.key = "limits.max", .type = BW_OPT_INT, .default_value = "7", .description = "a limit"},
    {.key = "rules.inbound.deny", .type = BW_OPT_STRING_LIST, .description = "three parts"},
    {.key = "policy.deny", .type = BW_OPT_STRING_LIST, .description = "under a core key"},
    {.key = NULL},
};

static const bw_option_t required_opts[] = {
    {.key = "token", .type = BW_OPT_STRING, .description = "needed", .flags = BW_OPT_F_REQUIRED},
    {.key = "port", .type = BW_OPT_INT, .description = "needed too", .flags = BW_OPT_F_REQUIRED},
    {.key = "note", .type = BW_OPT_STRING, .description = "optional"},
    {.key = NULL},
};

static char err[512];
static const bw_host_t *H;

/* Build `json` against `table`; the conf is left in *c (freed by the
 * builder itself on failure). */
static int build_with(const bw_option_t *table, const char *json, int strict, bw_conf_t *c)
{
    json_error_t jerr;
    json_t *in = json_loads(json, 0, &jerr);
    if (!in)
        fail_msg("bad test JSON %s: %s", json, jerr.text);
    err[0] = '\0';
    *c = (bw_conf_t){0};
    int rc = bw_conf_build(table, in, strict, c, err, sizeof err);
    json_decref(in);
    return rc;
}

static int build(const char *json, int strict, bw_conf_t *c)
{
    return build_with(opts, json, strict, c);
}

/* The text option `key` reads as `want` after building `json`, and is kept
 * as a JSON string (not as the number or boolean it was given as). */
static void expect_text(const char *json, const char *key, const char *want)
{
    bw_conf_t c;
    assert_int_equal(build(json, 1, &c), 0);
    assert_true(json_is_string(json_object_get(c.obj, key)));
    assert_string_equal(H->conf_str(&c, key), want);
    bw_conf_free(&c);
}

/* Building `json` fails with BW_EINVAL and exactly `msg`, leaving no conf. */
static void expect_refused(const char *json, int strict, const char *msg)
{
    bw_conf_t c;
    assert_int_equal(build(json, strict, &c), BW_EINVAL);
    assert_string_equal(err, msg);
    assert_null(c.obj);
}

static void numbers_and_booleans_become_text(void **state)
{
    expect_text("{\"s\": \"plain\"}", "s", "plain");
    expect_text("{\"s\": 80}", "s", "80");
    expect_text("{\"s\": -3}", "s", "-3");
    expect_text("{\"s\": 1.5}", "s", "1.5");
    expect_text("{\"s\": 0.1}", "s", "0.1"); /* the shortest text that reads back */
    expect_text("{\"s\": true}", "s", "true");
    expect_text("{\"s\": false}", "s", "false");
    expect_text("{\"s\": \"\"}", "s", "");
}

static void strings_refuse_lists_maps_and_null(void **state)
{
    expect_refused("{\"s\": [\"a\"]}", 0, "option 's' must be a string");
    expect_refused("{\"s\": {\"a\": 1}}", 0, "option 's' must be a string");
    expect_refused("{\"s\": null}", 0, "option 's' must be a string");
}

static void booleans_from_true_false_strings(void **state)
{
    bw_conf_t c;
    assert_int_equal(build("{\"b\": \"false\"}", 1, &c), 0);
    assert_true(json_is_false(json_object_get(c.obj, "b")));
    assert_int_equal(H->conf_bool(&c, "b", 1), 0); /* not the declared "true" */
    bw_conf_free(&c);

    assert_int_equal(build("{\"b0\": \"true\"}", 1, &c), 0);
    assert_true(json_is_true(json_object_get(c.obj, "b0")));
    assert_int_equal(H->conf_bool(&c, "b0", 0), 1);
    bw_conf_free(&c);

    assert_int_equal(build("{\"b\": false, \"b0\": true}", 1, &c), 0);
    assert_int_equal(H->conf_bool(&c, "b", 1), 0);
    assert_int_equal(H->conf_bool(&c, "b0", 0), 1);
    bw_conf_free(&c);

    expect_refused("{\"b\": \"yes\"}", 0, "option 'b' must be a boolean");
    expect_refused("{\"b\": 1}", 0, "option 'b' must be a boolean");
    expect_refused("{\"b\": [true]}", 0, "option 'b' must be a boolean");
}

static void integers_from_numbers_and_digit_strings(void **state)
{
    bw_conf_t c;
    assert_int_equal(build("{\"n\": 0, \"n0\": \"-12\"}", 1, &c), 0);
    assert_int_equal(H->conf_int(&c, "n", 99), 0); /* set to 0: not the default 42 */
    assert_true(json_is_integer(json_object_get(c.obj, "n0")));
    assert_int_equal(H->conf_int(&c, "n0", 99), -12);
    bw_conf_free(&c);

    /* 2^53 + 1: kept exactly, as a 64-bit integer. */
    assert_int_equal(build("{\"n\": \"9007199254740993\"}", 1, &c), 0);
    assert_true(H->conf_int(&c, "n", 0) == INT64_C(9007199254740993));
    bw_conf_free(&c);

    expect_refused("{\"n\": \"12x\"}", 0, "option 'n' must be an integer");
    expect_refused("{\"n\": \"\"}", 0, "option 'n' must be an integer");
    expect_refused("{\"n\": 1.5}", 0, "option 'n' must be an integer");
    expect_refused("{\"n\": true}", 0, "option 'n' must be an integer");
    expect_refused("{\"n\": [1]}", 0, "option 'n' must be an integer");
}

static void scalar_for_list_is_one_item(void **state)
{
    bw_conf_t c;
    assert_int_equal(build("{\"l\": \"one\"}", 1, &c), 0);
    assert_int_equal(H->conf_list_len(&c, "l"), 1);
    assert_string_equal(H->conf_list_at(&c, "l", 0), "one");
    assert_null(H->conf_list_at(&c, "l", 1));
    bw_conf_free(&c);

    assert_int_equal(build("{\"l\": 8080}", 1, &c), 0);
    assert_int_equal(H->conf_list_len(&c, "l"), 1);
    assert_string_equal(H->conf_list_at(&c, "l", 0), "8080");
    bw_conf_free(&c);
}

static void list_items_become_text(void **state)
{
    bw_conf_t c;
    assert_int_equal(build("{\"l\": [\"a\", 2, false, true]}", 1, &c), 0);
    assert_int_equal(H->conf_list_len(&c, "l"), 4);
    assert_string_equal(H->conf_list_at(&c, "l", 0), "a");
    assert_string_equal(H->conf_list_at(&c, "l", 1), "2");
    assert_string_equal(H->conf_list_at(&c, "l", 2), "false");
    assert_string_equal(H->conf_list_at(&c, "l", 3), "true");
    assert_null(H->conf_list_at(&c, "l", 4));
    bw_conf_free(&c);

    assert_int_equal(build("{\"l\": []}", 1, &c), 0);
    assert_true(json_is_array(json_object_get(c.obj, "l")));
    assert_int_equal(H->conf_list_len(&c, "l"), 0);
    bw_conf_free(&c);

    expect_refused("{\"l\": [[\"a\"]]}", 0, "option 'l' must be a list of strings");
    expect_refused("{\"l\": [\"a\", null]}", 0, "option 'l' must be a list of strings");
    expect_refused("{\"l\": {\"a\": \"b\"}}", 0, "option 'l' must be a list of strings");
}

static void bool_or_string_keeps_text(void **state)
{
    expect_text("{\"bs\": true}", "bs", "true");
    expect_text("{\"bs\": false}", "bs", "false");
    expect_text("{\"bs\": \"both\"}", "bs", "both");
    expect_text("{\"bs\": \"true\"}", "bs", "true");
    expect_refused("{\"bs\": [\"both\"]}", 0, "option 'bs' must be a boolean or a string");
    expect_refused("{\"bs\": {}}", 0, "option 'bs' must be a boolean or a string");
}

static void nested_objects_give_dotted_keys(void **state)
{
    bw_conf_t c;
    assert_int_equal(build("{\"request_header\": {\"add\": [\"X-A: 1\", \"X-B: 2\"],"
                           " \"remove\": \"X-C\"}, \"limits\": {\"max\": \"9\"}}",
                           1, &c),
                     0);
    assert_int_equal(H->conf_list_len(&c, "request_header.add"), 2);
    assert_string_equal(H->conf_list_at(&c, "request_header.add", 0), "X-A: 1");
    assert_string_equal(H->conf_list_at(&c, "request_header.add", 1), "X-B: 2");
    assert_int_equal(H->conf_list_len(&c, "request_header.remove"), 1);
    assert_string_equal(H->conf_list_at(&c, "request_header.remove", 0), "X-C");
    assert_int_equal(H->conf_int(&c, "limits.max", 0), 9);
    /* Stored under the dotted key only, not as the nested object. */
    assert_null(json_object_get(c.obj, "request_header"));
    bw_conf_free(&c);

    /* The dotted key itself is accepted too. */
    assert_int_equal(build("{\"request_header.add\": \"X-D: 4\"}", 1, &c), 0);
    assert_int_equal(H->conf_list_len(&c, "request_header.add"), 1);
    assert_string_equal(H->conf_list_at(&c, "request_header.add", 0), "X-D: 4");
    bw_conf_free(&c);
}

static void nested_errors_name_the_dotted_key(void **state)
{
    expect_refused("{\"limits\": {\"max\": \"lots\"}}", 0,
                   "option 'limits.max' must be an integer");
    expect_refused("{\"request_header\": {\"add\": [{}]}}", 0,
                   "option 'request_header.add' must be a list of strings");
    expect_refused("{\"request_header\": [\"X-A: 1\"]}", 0,
                   "option 'request_header' must be a map");
    expect_refused("{\"request_header\": {\"replace\": []}}", 1,
                   "unknown option 'request_header.replace'");

    bw_conf_t c;
    assert_int_equal(build("{\"request_header\": {\"replace\": [], \"add\": \"X: y\"}}", 0, &c), 0);
    assert_null(json_object_get(c.obj, "request_header.replace"));
    assert_string_equal(H->conf_list_at(&c, "request_header.add", 0), "X: y");
    bw_conf_free(&c);
}

/* A key of three parts is a map in a map, or any mix of dots and maps. */
static void three_part_keys_nest_twice(void **state)
{
    static const char *forms[] = {
        "{\"rules\": {\"inbound\": {\"deny\": [\"GET\", \"SET\"]}}}",
        "{\"rules.inbound\": {\"deny\": [\"GET\", \"SET\"]}}",
        "{\"rules\": {\"inbound.deny\": [\"GET\", \"SET\"]}}",
        "{\"rules.inbound.deny\": [\"GET\", \"SET\"]}",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        bw_conf_t c;
        json_t *in = json_loads(forms[i], 0, NULL);
        assert_non_null(in);
        assert_null(bw_conf_unknown_key(opts, in));
        json_decref(in);
        assert_int_equal(build(forms[i], 1, &c), 0);
        assert_int_equal(H->conf_list_len(&c, "rules.inbound.deny"), 2);
        assert_string_equal(H->conf_list_at(&c, "rules.inbound.deny", 1), "SET");
        bw_conf_free(&c);
    }
    expect_refused("{\"rules\": {\"inbound\": {\"denny\": []}}}", 1,
                   "unknown option 'rules.inbound.denny'");
    expect_refused("{\"rules\": {\"inbound\": []}}", 0, "option 'rules.inbound' must be a map");
    json_t *in = json_loads("{\"rules\": {\"inbound\": {\"denny\": []}}}", 0, NULL);
    assert_non_null(in);
    assert_string_equal(bw_conf_unknown_key(opts, in), "rules");
    json_decref(in);
}

/* `policy` is one of the core's keys accepted without effect; a plugin that
 * declares options under it gets them. */
static void plugin_group_under_a_core_key(void **state)
{
    bw_conf_t c;
    assert_int_equal(build("{\"policy\": {\"deny\": \"FLUSHALL\"}}", 1, &c), 0);
    assert_string_equal(H->conf_list_at(&c, "policy.deny", 0), "FLUSHALL");
    bw_conf_free(&c);
    expect_refused("{\"policy\": {\"denny\": \"FLUSHALL\"}}", 1, "unknown option 'policy.denny'");
}

static void unknown_keys_ignored_unless_strict(void **state)
{
    bw_conf_t c;
    assert_int_equal(build("{\"x\": 1, \"s\": \"kept\"}", 0, &c), 0);
    assert_null(json_object_get(c.obj, "x"));
    assert_string_equal(H->conf_str(&c, "s"), "kept");
    bw_conf_free(&c);

    expect_refused("{\"s\": \"kept\", \"x\": 1}", 1, "unknown option 'x'");

    /* Keys every definition has are the agent's, even when strict. */
    assert_int_equal(build("{\"proto\": \"p\", \"addr\": 80, \"name\": \"t\", \"metadata\": \"m\","
                           " \"s\": \"v\"}",
                           1, &c),
                     0);
    assert_null(json_object_get(c.obj, "proto"));
    assert_null(json_object_get(c.obj, "addr"));
    assert_string_equal(H->conf_str(&c, "s"), "v");
    bw_conf_free(&c);
}

static void required_options(void **state)
{
    bw_conf_t c;
    assert_int_equal(build_with(required_opts, "{\"note\": \"n\", \"port\": 1}", 0, &c), BW_EINVAL);
    assert_string_equal(err, "missing required option 'token'");
    assert_null(c.obj);

    assert_int_equal(build_with(required_opts, "{\"token\": \"t\"}", 0, &c), BW_EINVAL);
    assert_string_equal(err, "missing required option 'port'");
    assert_null(c.obj);

    assert_int_equal(build_with(required_opts, "{\"token\": 5, \"port\": \"443\"}", 1, &c), 0);
    assert_string_equal(H->conf_str(&c, "token"), "5");
    assert_int_equal(H->conf_int(&c, "port", 0), 443);
    assert_null(H->conf_str(&c, "note"));
    bw_conf_free(&c);
}

static void unset_options_read_as_declared_defaults(void **state)
{
    bw_conf_t c;
    assert_int_equal(build("{}", 1, &c), 0);
    assert_string_equal(H->conf_str(&c, "s"), "dflt");
    assert_int_equal(H->conf_bool(&c, "b", 0), 1);
    assert_int_equal(H->conf_int(&c, "n", 0), 42);
    assert_int_equal(H->conf_int(&c, "limits.max", 0), 7);
    assert_int_equal(H->conf_list_len(&c, "l"), 0);
    assert_null(H->conf_list_at(&c, "l", 0));
    /* No declared default: the caller's. */
    assert_null(H->conf_str(&c, "s0"));
    assert_int_equal(H->conf_bool(&c, "b0", 1), 1);
    assert_int_equal(H->conf_bool(&c, "b0", 0), 0);
    assert_int_equal(H->conf_int(&c, "n0", -5), -5);
    /* Not declared at all. */
    assert_null(H->conf_str(&c, "nope"));
    assert_int_equal(H->conf_int(&c, "nope", 3), 3);
    bw_conf_free(&c);

    /* Set values win over the defaults. */
    assert_int_equal(build("{\"s\": \"mine\", \"n\": 1, \"b\": false}", 1, &c), 0);
    assert_string_equal(H->conf_str(&c, "s"), "mine");
    assert_int_equal(H->conf_int(&c, "n", 0), 1);
    assert_int_equal(H->conf_bool(&c, "b", 1), 0);
    bw_conf_free(&c);
}

static void slots_accept_null_conf(void **state)
{
    assert_null(H->conf_str(NULL, "s"));
    assert_int_equal(H->conf_bool(NULL, "b", 1), 1);
    assert_int_equal(H->conf_bool(NULL, "b", 0), 0);
    assert_int_equal(H->conf_int(NULL, "n", 17), 17);
    assert_int_equal(H->conf_list_len(NULL, "l"), 0);
    assert_null(H->conf_list_at(NULL, "l", 0));
}

static void no_declared_options(void **state)
{
    bw_conf_t c;
    assert_int_equal(build_with(NULL, "{\"x\": 1}", 0, &c), 0);
    assert_null(H->conf_str(&c, "x"));
    bw_conf_free(&c);
    assert_int_equal(build_with(NULL, "{\"x\": 1}", 1, &c), BW_EINVAL);
    assert_string_equal(err, "unknown option 'x'");
}

static void conf_free_is_null_safe(void **state)
{
    bw_conf_free(NULL);
    bw_conf_t c = {0};
    bw_conf_free(&c);
    assert_int_equal(build("{\"s\": \"v\"}", 1, &c), 0);
    assert_non_null(c.obj);
    bw_conf_free(&c);
    assert_null(c.obj);
    bw_conf_free(&c); /* twice */
    assert_null(c.obj);
}

int main(void)
{
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_CRIT);
    H = bw_host_table();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(numbers_and_booleans_become_text),
        cmocka_unit_test(strings_refuse_lists_maps_and_null),
        cmocka_unit_test(booleans_from_true_false_strings),
        cmocka_unit_test(integers_from_numbers_and_digit_strings),
        cmocka_unit_test(scalar_for_list_is_one_item),
        cmocka_unit_test(list_items_become_text),
        cmocka_unit_test(bool_or_string_keeps_text),
        cmocka_unit_test(nested_objects_give_dotted_keys),
        cmocka_unit_test(nested_errors_name_the_dotted_key),
        cmocka_unit_test(three_part_keys_nest_twice),
        cmocka_unit_test(plugin_group_under_a_core_key),
        cmocka_unit_test(unknown_keys_ignored_unless_strict),
        cmocka_unit_test(required_options),
        cmocka_unit_test(unset_options_read_as_declared_defaults),
        cmocka_unit_test(slots_accept_null_conf),
        cmocka_unit_test(no_declared_options),
        cmocka_unit_test(conf_free_is_null_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
