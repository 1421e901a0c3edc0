/* Tunnel definitions into tunnels (tunnel_def.c) through the real http and
 * tcp plugins: the http plugin's expand slot makes the twins. The agent is
 * never started, so nothing connects and no tunnel is ever bound; each test
 * looks at the tunnels the agent keeps for later. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>
#include <uv.h>

#include "agent.h"
#include "control.h"
#include "host.h"
#include "log.h"
#include "stream.h"
#include "tunnel_def.h"

typedef struct env {
    bw_io_t *io;
    bw_registry_t *reg;
    bw_agent_t *a;
} env_t;

/* What the bind callback saw. */
typedef struct calls {
    int n;
    int status;
    char err[256];
    bw_tunnel_t *t;
} calls_t;

static char err[512];

static void on_bound(void *ud, int status, const char *msg, bw_tunnel_t *t)
{
    calls_t *c = ud;
    c->n++;
    c->status = status;
    snprintf(c->err, sizeof c->err, "%s", msg ? msg : "");
    c->t = t;
}

static int setup(void **state)
{
    env_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->reg = bw_registry_new(bw_host_table_for);
    assert_non_null(e->reg);
    assert_int_equal(bw_registry_load(e->reg, BW_HTTP_PLUGIN, err, sizeof err), 0);
    assert_int_equal(bw_registry_load(e->reg, BW_TCP_PLUGIN, err, sizeof err), 0);
    /* Port 9 on loopback: nothing listens, and the agent is never started. */
    bw_agent_config_t cfg = {.server_addr = "127.0.0.1:9"};
    e->io = bw_io_new(uv_default_loop());
    assert_non_null(e->io);
    e->a = bw_agent_new(e->io, e->reg, &cfg, err, sizeof err);
    assert_non_null(e->a);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env_t *e = *state;
    uv_loop_t *loop = uv_default_loop();
    bw_agent_stop(e->a);
    /* Only the agent's retry timer is closing; a few turns are plenty. */
    for (int i = 0; i < 10 && uv_loop_alive(loop); i++)
        uv_run(loop, UV_RUN_NOWAIT);
    assert_false(uv_loop_alive(loop));
    bw_agent_free(e->a);
    bw_io_free(e->io);
    uv_run(loop, UV_RUN_NOWAIT); /* the context's handles close */
    bw_registry_free(e->reg);
    free(e);
    return 0;
}

/* bw_agent_add_definition of `json` named `name`, with the callback when
 * `c` is given. Returns its result; the message is in `err`. */
static int add(env_t *e, const char *name, const char *json, calls_t *c)
{
    json_error_t jerr;
    json_t *def = json_loads(json, 0, &jerr);
    if (!def)
        fail_msg("bad test JSON %s: %s", json, jerr.text);
    err[0] = '\0';
    int rc = bw_agent_add_definition(e->a, name, def, c ? on_bound : NULL, c, err, sizeof err);
    json_decref(def);
    return rc;
}

/* bw_definition_check as `config check` runs it for a version "2" file
 * (strict); *bad gets the offending key, or "" when none is named. */
static int check_strict(env_t *e, const char *name, const char *json, int strict, char *bad,
                        size_t badlen)
{
    const char *key = NULL;
    json_t *def = json_loads(json, 0, NULL);
    assert_non_null(def);
    err[0] = '\0';
    int rc = bw_definition_check(e->reg, name, def, strict, &key, err, sizeof err);
    snprintf(bad, badlen, "%s", key ? key : "");
    json_decref(def);
    return rc;
}

static int check(env_t *e, const char *name, const char *json)
{
    char bad[64];
    return check_strict(e, name, json, 0, bad, sizeof bad);
}

/* Tunnel number `i` is `name` of proto `proto` forwarding to `addr`, not
 * bound yet. */
static void assert_tunnel(env_t *e, size_t i, const char *name, const char *proto, const char *addr)
{
    bw_tunnel_t *t = bw_agent_tunnel_at(e->a, i);
    assert_non_null(t);
    assert_string_equal(t->name, name);
    assert_string_equal(t->plugin->desc.name, proto);
    assert_string_equal(t->addr, addr);
    assert_string_equal(t->public_url, "");
    assert_ptr_equal(bw_agent_find_tunnel(e->a, name), t);
}

static void remove_all(env_t *e, const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        assert_int_equal(bw_agent_remove_tunnel(e->a, names[i]), 0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
}

/* `json` named "web" becomes "web (http)" over http, then "web" over
 * https; removing both leaves nothing. */
static void expect_twins(env_t *e, const char *json)
{
    static const char *const names[] = {"web (http)", "web", NULL};
    assert_int_equal(add(e, "web", json, NULL), 0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 2);
    assert_tunnel(e, 0, "web (http)", "http", "http://localhost:80");
    assert_tunnel(e, 1, "web", "https", "http://localhost:80");
    assert_null(bw_agent_tunnel_at(e->a, 2));
    remove_all(e, names);
}

/* `json` named "web" becomes the one tunnel "web" of `proto`. */
static void expect_one(env_t *e, const char *json, const char *proto)
{
    static const char *const names[] = {"web", NULL};
    assert_int_equal(add(e, "web", json, NULL), 0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 1);
    assert_tunnel(e, 0, "web", proto, "http://localhost:80");
    assert_null(bw_agent_find_tunnel(e->a, "web (http)"));
    remove_all(e, names);
}

static void twins_without_bind_tls(void **state)
{
    expect_twins(*state, "{\"proto\": \"http\", \"addr\": 80}");
}

static void twins_for_bind_tls_both(void **state)
{
    expect_twins(*state, "{\"proto\": \"http\", \"addr\": \"80\", \"bind_tls\": \"both\"}");
}

static void bind_tls_true_is_https_only(void **state)
{
    expect_one(*state, "{\"proto\": \"http\", \"addr\": 80, \"bind_tls\": true}", "https");
    expect_one(*state, "{\"proto\": \"http\", \"addr\": 80, \"bind_tls\": \"true\"}", "https");
}

static void bind_tls_false_is_http_only(void **state)
{
    expect_one(*state, "{\"proto\": \"http\", \"addr\": 80, \"bind_tls\": false}", "http");
    expect_one(*state, "{\"proto\": \"http\", \"addr\": 80, \"bind_tls\": \"false\"}", "http");
}

static void schemes_choose_the_tunnels(void **state)
{
    expect_twins(*state, "{\"proto\": \"http\", \"addr\": 80, \"schemes\": [\"http\", \"https\"]}");
    expect_twins(*state, "{\"proto\": \"http\", \"addr\": 80, \"schemes\": [\"https\", \"http\"]}");
    expect_one(*state, "{\"proto\": \"http\", \"addr\": 80, \"schemes\": [\"https\"]}", "https");
    expect_one(*state, "{\"proto\": \"http\", \"addr\": 80, \"schemes\": [\"http\"]}", "http");
    expect_one(*state, "{\"proto\": \"http\", \"addr\": 80, \"schemes\": \"http\"}", "http");
    expect_one(*state, "{\"proto\": \"http\", \"addr\": 80, \"schemes\": [\"HTTPS\"]}", "https");
}

static void schemes_win_over_bind_tls(void **state)
{
    expect_one(*state,
               "{\"proto\": \"http\", \"addr\": 80, \"bind_tls\": true, \"schemes\": [\"http\"]}",
               "http");
}

static void invalid_bind_tls_is_refused(void **state)
{
    env_t *e = *state;
    calls_t c = {0};
    assert_int_equal(
        add(e, "web", "{\"proto\": \"http\", \"addr\": 80, \"bind_tls\": \"sometimes\"}", &c),
        BW_EINVAL);
    assert_string_equal(err, "HTTP tunnel web specifies invalid 'bind_tls': sometimes");
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
    assert_int_equal(c.n, 0);
}

static void invalid_scheme_is_refused(void **state)
{
    env_t *e = *state;
    calls_t c = {0};
    assert_int_equal(
        add(e, "web", "{\"proto\": \"http\", \"addr\": 80, \"schemes\": [\"https\", \"ftp\"]}", &c),
        BW_EINVAL);
    assert_string_equal(err, "HTTP tunnel web specifies an invalid scheme: ftp");
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
    assert_int_equal(c.n, 0);
    /* config check says the same as start (one rule in the plugin). */
    assert_int_equal(check(e, "web", "{\"proto\": \"http\", \"addr\": 80, \"schemes\": [\"ftp\"]}"),
                     BW_EINVAL);
    assert_string_equal(err, "HTTP tunnel web specifies an invalid scheme: ftp");
    assert_int_equal(
        check(e, "web", "{\"proto\": \"http\", \"addr\": 80, \"schemes\": [\"HTTPS\"]}"), 0);
}

/* An existing tunnel named `taken` (a tcp one) makes the twin definition
 * "web" fail whole: nothing of it is started, the callback is not called. */
static void expect_taken(env_t *e, const char *taken)
{
    calls_t c = {0};
    char want[128];
    assert_int_equal(add(e, taken, "{\"proto\": \"tcp\", \"addr\": 22}", NULL), 0);
    assert_int_equal(add(e, "web", "{\"proto\": \"http\", \"addr\": 80}", &c), BW_EEXIST);
    snprintf(want, sizeof want, "tunnel \"%s\" already exists", taken);
    assert_string_equal(err, want);
    assert_int_equal(c.n, 0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 1);
    assert_tunnel(e, 0, taken, "tcp", "localhost:22");
    assert_int_equal(bw_agent_remove_tunnel(e->a, taken), 0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
}

static void taken_name_refuses_whole_definition(void **state)
{
    expect_taken(*state, "web");
    expect_taken(*state, "web (http)");
}

static void taken_name_refuses_single_tunnel(void **state)
{
    env_t *e = *state;
    calls_t c = {0};
    assert_int_equal(add(e, "web", "{\"proto\": \"http\", \"addr\": 80, \"bind_tls\": true}", NULL),
                     0);
    assert_int_equal(add(e, "web", "{\"proto\": \"http\", \"addr\": 81, \"bind_tls\": true}", &c),
                     BW_EEXIST);
    assert_string_equal(err, "tunnel \"web\" already exists");
    assert_int_equal(c.n, 0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 1);
    assert_tunnel(e, 0, "web", "https", "http://localhost:80");
}

static void tcp_definition_is_one_tunnel(void **state)
{
    env_t *e = *state;
    static const char *const names[] = {"ssh", NULL};
    assert_int_equal(add(e, "ssh", "{\"proto\": \"tcp\", \"addr\": \"22\"}", NULL), 0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 1);
    assert_tunnel(e, 0, "ssh", "tcp", "localhost:22");
    assert_null(bw_agent_find_tunnel(e->a, "ssh (http)"));
    remove_all(e, names);
}

static void unknown_proto_is_refused(void **state)
{
    env_t *e = *state;
    calls_t c = {0};
    assert_int_equal(add(e, "web", "{\"proto\": \"x\", \"addr\": 80}", &c), BW_EINVAL);
    assert_string_equal(err, "Invalid protocol name 'x'");
    assert_int_equal(add(e, "web", "{\"addr\": 80}", &c), BW_EINVAL);
    assert_string_equal(err, "Invalid protocol name ''");
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
    assert_int_equal(c.n, 0);
}

static void refusals_of_the_first_twin_leave_nothing(void **state)
{
    env_t *e = *state;
    calls_t c = {0};
    assert_int_equal(add(e, "web", "{\"proto\": \"http\"}", &c), BW_EINVAL);
    /* The twin refused first is "web (http)", but the text names the
     * definition as the user wrote it. */
    assert_string_equal(err, "Tunnel web must specify 'addr' to tunnel to");
    assert_int_equal(add(e, "web",
                         "{\"proto\": \"http\", \"addr\": 80,"
                         " \"ip_restriction\": {\"allow_cidrs\": [\"10.0.0.0/33\"]}}",
                         &c),
                     BW_EINVAL);
    assert_string_equal(
        err, "Tunnel web specifies an invalid CIDR in 'ip_restriction.allow_cidrs': 10.0.0.0/33");
    assert_int_equal(add(e, "web", "{\"proto\": \"http\", \"addr\": 70000}", &c), BW_EINVAL);
    assert_string_equal(
        err, "Tunnel web specifies an invalid or malformed address '70000': invalid port");
    assert_int_equal(
        add(e, "web", "{\"proto\": \"http\", \"addr\": 80, \"inspect\": \"maybe\"}", &c),
        BW_EINVAL);
    assert_string_equal(err, "option 'inspect' must be a boolean");
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
    assert_int_equal(c.n, 0);
}

static void twins_share_the_definition_options(void **state)
{
    env_t *e = *state;
    const bw_host_t *h = bw_host_table();
    static const char *const names[] = {"web", "web (http)", NULL};
    assert_int_equal(add(e, "web",
                         "{\"proto\": \"http\", \"addr\": \"8080\", \"inspect\": false,"
                         " \"ip_restriction\": {\"allow_cidrs\": \"10.0.0.0/8\"}}",
                         NULL),
                     0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 2);
    for (size_t i = 0; i < 2; i++) {
        bw_tunnel_t *t = bw_agent_tunnel_at(e->a, i);
        assert_string_equal(t->addr, "http://localhost:8080");
        assert_int_equal(t->inspect, 0);
        assert_int_equal(h->conf_bool(&t->conf, "inspect", 1), 0);
        assert_int_equal(h->conf_list_len(&t->conf, "ip_restriction.allow_cidrs"), 1);
        assert_string_equal(h->conf_list_at(&t->conf, "ip_restriction.allow_cidrs", 0),
                            "10.0.0.0/8");
    }
    remove_all(e, names);
}

static void callback_not_called_before_bind(void **state)
{
    env_t *e = *state;
    calls_t c = {0};
    assert_int_equal(add(e, "web", "{\"proto\": \"http\", \"addr\": 80}", &c), 0);
    assert_int_equal(add(e, "ssh", "{\"proto\": \"tcp\", \"addr\": 22}", &c), 0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 3);
    assert_int_equal(c.n, 0);
    assert_false(bw_agent_ready(e->a));
    /* Each reports once, when removed (c must not outlive this test). */
    assert_int_equal(bw_agent_remove_tunnel(e->a, "ssh"), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(bw_agent_remove_tunnel(e->a, "web"), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(bw_agent_remove_tunnel(e->a, "web (http)"), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
}

static void removing_unbound_group_reports_cancel_once(void **state)
{
    env_t *e = *state;
    calls_t c = {0};
    assert_int_equal(add(e, "web", "{\"proto\": \"http\", \"addr\": 80}", &c), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(bw_agent_remove_tunnel(e->a, "web"), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.status, BW_ECANCELED);
    assert_string_equal(c.err, "tunnel stopped before it was bound");
    assert_null(c.t);
    assert_null(bw_agent_find_tunnel(e->a, "web"));
    assert_int_equal(bw_agent_remove_tunnel(e->a, "web"), BW_ENOENT);
    /* Removing one tunnel by name removes only it: the unbound twin was
     * not refused, so the group does not take it along. */
    assert_int_equal(bw_agent_tunnel_count(e->a), 1);
    assert_tunnel(e, 0, "web (http)", "http", "http://localhost:80");
    assert_int_equal(bw_agent_remove_tunnel(e->a, "web (http)"), 0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
    assert_int_equal(c.n, 1);
}

static void removing_first_twin_does_not_report(void **state)
{
    env_t *e = *state;
    calls_t c = {0};
    assert_int_equal(add(e, "web", "{\"proto\": \"http\", \"addr\": 80}", &c), 0);
    assert_int_equal(bw_agent_remove_tunnel(e->a, "web (http)"), 0);
    assert_int_equal(c.n, 0); /* the caller waits on "web", still there */
    assert_int_equal(bw_agent_tunnel_count(e->a), 1);
    assert_tunnel(e, 0, "web", "https", "http://localhost:80");
    assert_int_equal(bw_agent_remove_tunnel(e->a, "web"), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.status, BW_ECANCELED);
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
}

static void removing_unbound_single_reports_cancel_once(void **state)
{
    env_t *e = *state;
    calls_t c = {0};
    assert_int_equal(add(e, "web", "{\"proto\": \"http\", \"addr\": 80, \"bind_tls\": true}", &c),
                     0);
    assert_int_equal(bw_agent_remove_tunnel(e->a, "web"), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.status, BW_ECANCELED);
    assert_null(c.t);
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
}

static void stopping_reports_pending_group_once(void **state)
{
    env_t *e = *state;
    calls_t c = {0};
    assert_int_equal(add(e, "web", "{\"proto\": \"http\", \"addr\": 80}", &c), 0);
    bw_agent_stop(e->a);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.status, BW_ECONNABORTED);
    assert_null(c.t);
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
    bw_agent_stop(e->a); /* teardown stops again: no second report */
    assert_int_equal(c.n, 1);
}

static void definition_check_runs_plugin_rules(void **state)
{
    env_t *e = *state;
    assert_int_equal(
        check(e, "web",
              "{\"proto\": \"http\", \"addr\": 80,"
              " \"ip_restriction\": {\"allow_cidrs\": [\"10.0.0.0/8\", \"::1/128\"]}}"),
        0);
    assert_string_equal(err, "");
    assert_int_equal(check(e, "web",
                           "{\"proto\": \"http\", \"addr\": 80,"
                           " \"ip_restriction\": {\"allow_cidrs\": [\"10.0.0.0/8\", \"10.1/x\"]}}"),
                     BW_EINVAL);
    assert_string_equal(
        err, "Tunnel web specifies an invalid CIDR in 'ip_restriction.allow_cidrs': 10.1/x");
    assert_int_equal(check(e, "web", "{\"proto\": \"http\", \"addr\": 80, \"inspect\": 3}"),
                     BW_EINVAL);
    assert_string_equal(err, "option 'inspect' must be a boolean");
    /* The address as `burrow start` reads it. */
    char bad_addr[64];
    assert_int_equal(check_strict(e, "db", "{\"proto\": \"tcp\", \"addr\": 70000}", 0, bad_addr,
                                  sizeof bad_addr),
                     BW_EINVAL);
    assert_string_equal(
        err, "Tunnel db specifies an invalid or malformed address '70000': invalid port");
    assert_string_equal(bad_addr, "addr");
    /* No plugin for the proto here: `burrow start` reports it. */
    assert_int_equal(check(e, "web", "{\"proto\": \"x\", \"addr\": 80}"), 0);
    /* Strict (version "2" files): the plugin's declarations and the core's
     * own keys are the whole schema; the offending key is named. */
    char bad[64];
    const char *def = "{\"proto\": \"http\", \"addr\": 80, \"labels\": [\"a=b\"],"
                      " \"oauth\": {\"provider\": \"x\"}, \"optionz\": 1}";
    assert_int_equal(check(e, "web", def), 0);
    assert_int_equal(check_strict(e, "web", def, 1, bad, sizeof bad), BW_EINVAL);
    assert_string_equal(err, "field optionz not found in tunnel \"web\" (proto http)");
    assert_string_equal(bad, "optionz");
    assert_int_equal(check_strict(e, "db",
                                  "{\"proto\": \"tcp\", \"addr\": 22, \"subdomain\": \"a\"}", 1,
                                  bad, sizeof bad),
                     BW_EINVAL);
    assert_string_equal(err, "field subdomain not found in tunnel \"db\" (proto tcp)");
    assert_int_equal(check_strict(e, "web",
                                  "{\"proto\": \"http\", \"addr\": 80,"
                                  " \"request_header\": {\"addd\": [\"X: 1\"]}}",
                                  1, bad, sizeof bad),
                     BW_EINVAL);
    assert_string_equal(bad, "request_header");
    /* Nothing was started. */
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
}

/* Every member that travels in a Bind is held to the protocol's string
 * limit before anything is started or sent: a tunnel name, subdomain or
 * remote_addr over 4096 bytes is refused by add (the API's 400) and by the
 * check `config check` and `start` run, naming the member and its key. */
static void definition_over_protocol_limits_is_refused(void **state)
{
    env_t *e = *state;
    char bad[64];
    size_t n = BW_PROTO_MAX_STR + 1;
    char *big = malloc(n + 1), *json = malloc(n + 128);
    assert_non_null(big);
    assert_non_null(json);
    memset(big, 'a', n);
    big[n] = '\0';

    assert_int_equal(add(e, big, "{\"proto\": \"tcp\", \"addr\": 22}", NULL), BW_EINVAL);
    assert_non_null(strstr(err, "name is 4097 bytes, longer than the protocol's limit of 4096"));
    assert_int_equal(check_strict(e, big, "{\"proto\": \"tcp\", \"addr\": 22}", 1, bad, sizeof bad),
                     BW_EINVAL);
    assert_string_equal(bad, "");

    snprintf(json, n + 128, "{\"proto\": \"http\", \"addr\": 80, \"subdomain\": \"%s\"}", big);
    assert_int_equal(add(e, "web", json, NULL), BW_EINVAL);
    assert_non_null(strstr(err, "tunnel \"web\": subdomain is 4097 bytes"));
    assert_int_equal(check_strict(e, "web", json, 1, bad, sizeof bad), BW_EINVAL);
    assert_string_equal(bad, "subdomain");

    snprintf(json, n + 128, "{\"proto\": \"tcp\", \"addr\": 22, \"remote_addr\": \"%s\"}", big);
    assert_int_equal(add(e, "ssh", json, NULL), BW_EINVAL);
    assert_non_null(strstr(err, "remote_addr is 4097 bytes"));
    assert_int_equal(check_strict(e, "ssh", json, 1, bad, sizeof bad), BW_EINVAL);
    assert_string_equal(bad, "remote_addr");

    /* Exactly at the limit is fine as far as the protocol goes. */
    big[BW_PROTO_MAX_STR] = '\0';
    assert_int_equal(check_strict(e, big, "{\"proto\": \"tcp\", \"addr\": 22}", 1, bad, sizeof bad),
                     0);
    assert_int_equal(bw_agent_tunnel_count(e->a), 0);
    free(big);
    free(json);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_CRIT);
    const struct CMUnitTest tests[] = {
        T(twins_without_bind_tls),
        T(twins_for_bind_tls_both),
        T(bind_tls_true_is_https_only),
        T(bind_tls_false_is_http_only),
        T(schemes_choose_the_tunnels),
        T(schemes_win_over_bind_tls),
        T(invalid_bind_tls_is_refused),
        T(invalid_scheme_is_refused),
        T(taken_name_refuses_whole_definition),
        T(taken_name_refuses_single_tunnel),
        T(tcp_definition_is_one_tunnel),
        T(unknown_proto_is_refused),
        T(refusals_of_the_first_twin_leave_nothing),
        T(twins_share_the_definition_options),
        T(callback_not_called_before_bind),
        T(removing_unbound_group_reports_cancel_once),
        T(removing_first_twin_does_not_report),
        T(removing_unbound_single_reports_cancel_once),
        T(stopping_reports_pending_group_once),
        T(definition_check_runs_plugin_rules),
        T(definition_over_protocol_limits_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
