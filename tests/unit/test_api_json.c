/* The agent API's JSON shapes and escaping (ngrok-compat.md §2.1, §2.9). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api_json.h"
#include "fail_json_string.h"
#include "log.h"

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

static void path_escape_matches_go(void **state)
{
    char out[128];
    assert_int_equal(bw_path_escape("command_line (http)", out, sizeof out), 25);
    assert_string_equal(out, "command_line%20%28http%29");
    bw_path_escape("a/b?c;d,e", out, sizeof out);
    assert_string_equal(out, "a%2Fb%3Fc%3Bd%2Ce");
    bw_path_escape("keep:@&=+$-_.~", out, sizeof out);
    assert_string_equal(out, "keep:@&=+$-_.~");
    bw_path_escape("\xc3\xa9", out, sizeof out); /* UTF-8 bytes escaped one by one */
    assert_string_equal(out, "%C3%A9");
    assert_int_equal(bw_path_escape("  ", out, 6), (size_t)-1); /* needs 7 */
}

static void numbers_print_like_go(void **state)
{
    char *s = dump(bw_api_number(0));
    assert_string_equal(s, "0");
    free(s);
    s = dump(bw_api_number(90286831083.0));
    assert_string_equal(s, "90286831083");
    free(s);
    json_t *r = bw_api_number(90635994164.2);
    assert_true(json_is_real(r));
    assert_true(json_real_value(r) == 90635994164.2);
    json_decref(r);
}

/* Out of memory for one member fails the whole document: a 500, never an
 * error answer without its "msg" (found by the allocation-failure torture). */
static void error_without_memory_is_null(void **state)
{
    (void)state;
    fail_json_string = 1;
    json_t *o = bw_api_error(100, 404, "tunnel not found", NULL);
    fail_json_string = 0;
    assert_null(o);
}

static void error_shape_and_key_order(void **state)
{
    char *s = dump(bw_api_error(100, 404, "tunnel not found", json_pack("{s:s}", "name", "x")));
    assert_string_equal(s, "{\"error_code\":100,\"status_code\":404,\"msg\":\"tunnel not found\","
                           "\"details\":{\"name\":\"x\"}}");
    free(s);
    s = dump(bw_api_error(0, 404, "Not Found", NULL));
    assert_string_equal(s, "{\"status_code\":404,\"msg\":\"Not Found\",\"details\":{}}");
    free(s);
}

/* A tcp tunnel `name` to localhost:22 with default options; *r holds the
 * registry to free after the tunnel. */
static bw_tunnel_t *tcp_tunnel(const char *name, bw_registry_t **r)
{
    char err[256];
    *r = bw_registry_new(bw_host_table_for);
    assert_non_null(*r);
    assert_int_equal(bw_registry_load(*r, BW_TCP_PLUGIN, err, sizeof err), 0);
    const bw_loaded_plugin_t *p = bw_registry_find(*r, "tcp");
    bw_conf_t conf;
    json_t *empty = json_object();
    assert_non_null(empty);
    assert_int_equal(bw_conf_build(p->desc.options, empty, 0, &conf, err, sizeof err), 0);
    json_decref(empty);
    bw_tunnel_t *t = bw_tunnel_new(name, "localhost:22", p, &conf);
    assert_non_null(t);
    return t;
}

static void tunnel_resource_shape(void **state)
{
    bw_registry_t *r;
    bw_tunnel_t *t = tcp_tunnel("ssh (x)", &r);
    bw_tunnel_set_url(t, "tcp://localhost:10001");
    char *s = dump(bw_api_tunnel(t, 1000));
    char expect[1024];
    snprintf(expect, sizeof expect,
             "{\"name\":\"ssh (x)\",\"ID\":\"%s\",\"uri\":\"/api/tunnels/ssh%%20%%28x%%29\","
             "\"public_url\":\"tcp://localhost:10001\",\"proto\":\"tcp\","
             "\"config\":{\"addr\":\"localhost:22\",\"inspect\":false},\"metrics\":{\"conns\":"
             "{\"count\":0,\"gauge\":0,\"rate1\":0,\"rate5\":0,\"rate15\":0,\"p50\":0,\"p90\":0,"
             "\"p95\":0,\"p99\":0},\"http\":{\"count\":0,\"rate1\":0,\"rate5\":0,\"rate15\":0,"
             "\"p50\":0,\"p90\":0,\"p95\":0,\"p99\":0}}}",
             t->api_id);
    assert_string_equal(s, expect);
    assert_int_equal(strlen(t->api_id), 32);
    free(s);
    bw_tunnel_free(t);
    bw_registry_free(r);
}

/* docs/api.md "Failed tunnels": no stale URL, the edge's reason appended
 * after ngrok's members, and gone again once bound. */
static void failed_tunnel_shape(void **state)
{
    bw_registry_t *r;
    bw_tunnel_t *t = tcp_tunnel("t", &r);
    bw_tunnel_set_url(t, "");
    snprintf(t->bind_error, sizeof t->bind_error, "remote address localhost:1 is already bound");
    json_t *o = bw_api_tunnel(t, 1000);
    assert_string_equal(json_string_value(json_object_get(o, "public_url")), "");
    assert_string_equal(json_string_value(json_object_get(o, "error")),
                        "remote address localhost:1 is already bound");
    const char *last = NULL;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) last = key;
    assert_string_equal(last, "error");
    json_decref(o);
    t->bind_error[0] = '\0';
    bw_tunnel_set_url(t, "tcp://localhost:1");
    o = bw_api_tunnel(t, 1000);
    assert_null(json_object_get(o, "error"));
    json_decref(o);
    bw_tunnel_free(t);
    bw_registry_free(r);
}

int main(void)
{
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_CRIT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(path_escape_matches_go),    cmocka_unit_test(numbers_print_like_go),
        cmocka_unit_test(error_shape_and_key_order), cmocka_unit_test(error_without_memory_is_null),
        cmocka_unit_test(tunnel_resource_shape),     cmocka_unit_test(failed_tunnel_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
