/* The http and https protocol plugins: one object providing two protos
 * (http's descriptor lists https as its sibling), and an http definition
 * expands to the twin tunnels ngrok 2 gives (expand slot). The test-only
 * "httptcp" variant reached through a tcp edge is built with
 * HTTP_PLUGIN_TCP_TEST. This file holds the descriptors, the options and the
 * tunnel state; conn.c forwards requests, files.c serves file:// tunnels,
 * upstream.c normalises local addresses.
 *
 * Built like any third-party plugin: public headers only, one exported
 * symbol. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "http_int.h"

const bw_host_t *bw__http_host;

static const bw_option_t http_options[] = {
    {.key = "inspect",
     .type = BW_OPT_BOOL,
     .default_value = "true",
     .description = "capture requests and responses for the inspection API"},
    {.key = "auth",
     .type = BW_OPT_STRING,
     .description = "require HTTP Basic authentication with this \"user:password\""},
    {.key = "basic_auth",
     .type = BW_OPT_STRING_LIST,
     .description = "accepted \"user:password\" pairs for HTTP Basic authentication"},
    {.key = "host_header",
     .type = BW_OPT_STRING,
     .description = "Host sent to the local service: rewrite, preserve or a literal value"},
    {.key = "bind_tls",
     .type = BW_OPT_BOOL_OR_STRING,
     .description = "public schemes: true (https), false (http) or both"},
    {.key = "schemes",
     .type = BW_OPT_STRING_LIST,
     .description = "public schemes of the endpoint: http, https"},
    {.key = "subdomain", .type = BW_OPT_STRING, .description = "request this subdomain"},
    {.key = "hostname", .type = BW_OPT_STRING, .description = "request this full hostname"},
    {.key = "request_header.add",
     .type = BW_OPT_STRING_LIST,
     .description = "headers (\"Name: value\") added to every request"},
    {.key = "request_header.remove",
     .type = BW_OPT_STRING_LIST,
     .description = "header names removed from every request"},
    {.key = "response_header.add",
     .type = BW_OPT_STRING_LIST,
     .description = "headers (\"Name: value\") added to every response"},
    {.key = "response_header.remove",
     .type = BW_OPT_STRING_LIST,
     .description = "header names removed from every response"},
    {.key = "ip_restriction.allow_cidrs",
     .type = BW_OPT_STRING_LIST,
     .description = "only clients in these CIDRs may connect"},
    {.key = "ip_restriction.deny_cidrs",
     .type = BW_OPT_STRING_LIST,
     .description = "clients in these CIDRs are refused"},
    {.key = BW_PROXY_PROTO_KEY,
     .type = BW_OPT_STRING,
     .description = "start every local connection with a PROXY protocol header (1 or 2) "
                    "carrying the client's address"},
    /* ngrok's keys that burrow accepts in config files but does not act on
     * (the agent warns when one is set). */
    {.key = "domain", .type = BW_OPT_ANY, .description = "ngrok reserved domain; no effect"},
    {.key = "compression", .type = BW_OPT_ANY, .description = "ngrok option; no effect"},
    {.key = "circuit_breaker", .type = BW_OPT_ANY, .description = "ngrok option; no effect"},
    {.key = "oauth", .type = BW_OPT_ANY, .description = "ngrok option; no effect"},
    {.key = "oidc", .type = BW_OPT_ANY, .description = "ngrok option; no effect"},
    {.key = "verify_webhook", .type = BW_OPT_ANY, .description = "ngrok option; no effect"},
    {.key = "websocket_tcp_converter",
     .type = BW_OPT_ANY,
     .description = "ngrok option; no effect"},
    {.key = "mutual_tls_cas", .type = BW_OPT_ANY, .description = "ngrok option; no effect"},
    {.key = "user_agent_filter", .type = BW_OPT_ANY, .description = "ngrok option; no effect"},
    {.key = NULL},
};

static int http_init(const bw_host_t *host, void **state, bw_error_t *err)
{
    BW_PLUGIN_INIT_CHECK(host, err);
    H = host;
    *state = NULL;
    return 0;
}

static void http_destroy(void *state)
{
    (void)state;
}

/* ---- validation -------------------------------------------------------------- */

static int check_header_add(const char *item)
{
    const char *colon = strchr(item, ':');
    if (!colon || colon == item || strpbrk(item, "\r\n"))
        return 0;
    for (const char *p = item; p < colon; p++)
        if (!isgraph((unsigned char)*p))
            return 0;
    return 1;
}

static int check_list(const bw_conf_t *conf, const char *key, const char *name, bw_error_t *err)
{
    size_t n = H->conf_list_len(conf, key);
    int add = strstr(key, ".add") != NULL, cidr = strstr(key, "cidrs") != NULL;
    for (size_t i = 0; i < n; i++) {
        const char *item = H->conf_list_at(conf, key, i);
        http_cidr_t c;
        if (cidr && http_cidr_parse(item, &c) < 0) {
            H->error_set(err, "Tunnel %s specifies an invalid CIDR in '%s': %s", name, key, item);
            return BW_EINVAL;
        }
        if (!cidr && add && !check_header_add(item)) {
            H->error_set(err,
                         "Tunnel %s specifies an invalid header in '%s': %s (want \"Name: value\")",
                         name, key, item);
            return BW_EINVAL;
        }
        if (!cidr && !add && (!*item || strpbrk(item, ": \r\n"))) {
            H->error_set(err, "Tunnel %s specifies an invalid header name in '%s': %s", name, key,
                         item);
            return BW_EINVAL;
        }
    }
    return 0;
}

static int check_auth(const bw_conf_t *conf, const char *name, bw_error_t *err)
{
    const char *a = H->conf_str(conf, "auth");
    if (a && !strchr(a, ':')) {
        H->error_set(err, "Tunnel %s specifies invalid 'auth': want \"user:password\"", name);
        return BW_EINVAL;
    }
    size_t n = H->conf_list_len(conf, "basic_auth");
    for (size_t i = 0; i < n; i++) {
        if (!strchr(H->conf_list_at(conf, "basic_auth", i), ':')) {
            H->error_set(err,
                         "Tunnel %s specifies invalid 'basic_auth' item %s: want "
                         "\"user:password\"",
                         name, H->conf_list_at(conf, "basic_auth", i));
            return BW_EINVAL;
        }
    }
    return 0;
}

enum { SCHEME_HTTP = 0x1, SCHEME_HTTPS = 0x2 };

/* Which public schemes a definition asks for: `schemes` (v3) wins over
 * `bind_tls` (v2: true, false or both, the default); 0 with err when a
 * value is not understood. */
static unsigned wanted_schemes(const bw_conf_t *conf, const char *name, bw_error_t *err)
{
    size_t n = H->conf_list_len(conf, "schemes");
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = H->conf_list_at(conf, "schemes", i);
        unsigned b = strcasecmp(s, "http") == 0    ? SCHEME_HTTP
                     : strcasecmp(s, "https") == 0 ? SCHEME_HTTPS
                                                   : 0;
        if (!b) {
            H->error_set(err, "HTTP tunnel %s specifies an invalid scheme: %s", name, s);
            return 0;
        }
        bits |= b;
    }
    if (bits)
        return bits;
    const char *bt = H->conf_str(conf, "bind_tls");
    if (!bt || !*bt || strcasecmp(bt, "both") == 0)
        return SCHEME_HTTP | SCHEME_HTTPS;
    if (strcasecmp(bt, "true") == 0)
        return SCHEME_HTTPS;
    if (strcasecmp(bt, "false") == 0)
        return SCHEME_HTTP;
    H->error_set(err, "HTTP tunnel %s specifies invalid 'bind_tls': %s", name, bt);
    return 0;
}

static int http_validate(void *state, const bw_conf_t *conf, const char *name, bw_error_t *err)
{
    static const char *const lists[] = {"request_header.add",         "request_header.remove",
                                        "response_header.add",        "response_header.remove",
                                        "ip_restriction.allow_cidrs", "ip_restriction.deny_cidrs"};
    /* One rule, one text for both checks: here and in expand. */
    if (!wanted_schemes(conf, name, err))
        return BW_EINVAL;
    if (H->conf_str(conf, "subdomain") && H->conf_str(conf, "hostname")) {
        H->error_set(err, "Tunnel %s must not specify both hostname and subdomain.", name);
        return BW_EINVAL;
    }
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (check_list(conf, lists[i], name, err) < 0)
            return BW_EINVAL;
    if (bw_proxy_proto_conf(H, conf, name, err) < 0)
        return BW_EINVAL;
    return check_auth(conf, name, err);
}

/* ---- tunnels ------------------------------------------------------------------ */

static void list_free(http_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    *l = (http_list_t){0};
}

/* gcc 12 -fanalyzer false positive (scripts/test's analyzer suite): the copy
 * is stored in l->items (freed by list_free), which it reports as a leak. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
static int list_push(http_list_t *l, const char *s)
{
    char **items = realloc(l->items, (l->n + 1) * sizeof *items);
    if (!items)
        return BW_ENOMEM;
    l->items = items;
    if (!(l->items[l->n] = strdup(s)))
        return BW_ENOMEM;
    l->n++;
    return 0;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

static int list_load(http_list_t *l, const bw_conf_t *conf, const char *key)
{
    size_t n = H->conf_list_len(conf, key);
    for (size_t i = 0; i < n; i++)
        if (list_push(l, H->conf_list_at(conf, key, i)) < 0)
            return BW_ENOMEM;
    return 0;
}

static int cidrs_load(http_cidr_t **out, size_t *n_out, const bw_conf_t *conf, const char *key)
{
    size_t n = H->conf_list_len(conf, key);
    *n_out = 0;
    if (n == 0)
        return 0;
    if (!(*out = calloc(n, sizeof **out)))
        return BW_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (http_cidr_parse(H->conf_list_at(conf, key, i), &(*out)[i]) < 0)
            return BW_EINVAL;
    *n_out = n;
    return 0;
}

void bw__http_tunnel_unref(http_tunnel_t *tt)
{
    if (tt->t || tt->live)
        return;
    free(tt->root);
    free(tt->host_header);
    list_free(&tt->creds);
    list_free(&tt->req_add);
    list_free(&tt->req_remove);
    list_free(&tt->res_add);
    list_free(&tt->res_remove);
    free(tt->allow);
    free(tt->deny);
    free(tt);
}

/* Split the normalised address: http://h:p, https://h:p, file:///dir; a bare
 * host:port (the tcp normalisation of the test variant) is http. */
static int parse_addr(http_tunnel_t *tt, const char *addr)
{
    const char *rest = addr;
    int dflt = 80;
    tt->kind = UP_HTTP;
    if (strncasecmp(addr, "file://", 7) == 0) {
        tt->kind = UP_FILE;
        tt->root = strdup(addr + 7);
        snprintf(tt->shown_addr, sizeof tt->shown_addr, "%s", addr);
        return tt->root ? 0 : BW_ENOMEM;
    }
    if (strncasecmp(addr, "https://", 8) == 0) {
        tt->kind = UP_HTTPS;
        rest = addr + 8;
        dflt = 443;
    } else if (strncasecmp(addr, "http://", 7) == 0) {
        rest = addr + 7;
    }
    size_t hl = strcspn(rest, "/?#");
    if (hl == 0 || hl >= sizeof tt->host_port)
        return BW_EINVAL;
    memcpy(tt->host_port, rest, hl);
    tt->host_port[hl] = '\0';
    const char *close = strrchr(tt->host_port, ']');
    const char *colon = strrchr(tt->host_port, ':');
    int has_port = colon && (!close || colon > close);
    if (has_port) {
        snprintf(tt->addr, sizeof tt->addr, "%s", tt->host_port);
        char dp[16];
        snprintf(dp, sizeof dp, ":%d", dflt);
        if (strcmp(colon, dp) == 0)
            tt->host_port[colon - tt->host_port] = '\0'; /* Host omits the default port */
    } else {
        snprintf(tt->addr, sizeof tt->addr, "%s:%d", tt->host_port, dflt);
    }
    snprintf(tt->shown_addr, sizeof tt->shown_addr, "%s", tt->addr);
    return 0;
}

static int load_options(http_tunnel_t *tt, const bw_conf_t *conf)
{
    const char *hh = H->conf_str(conf, "host_header");
    const char *auth = H->conf_str(conf, "auth");
    if (hh && strcmp(hh, "preserve") != 0 && !(tt->host_header = strdup(hh)))
        return BW_ENOMEM;
    if (auth && list_push(&tt->creds, auth) < 0)
        return BW_ENOMEM;
    if (list_load(&tt->creds, conf, "basic_auth") < 0 ||
        list_load(&tt->req_add, conf, "request_header.add") < 0 ||
        list_load(&tt->req_remove, conf, "request_header.remove") < 0 ||
        list_load(&tt->res_add, conf, "response_header.add") < 0 ||
        list_load(&tt->res_remove, conf, "response_header.remove") < 0)
        return BW_ENOMEM;
    int rc = cidrs_load(&tt->allow, &tt->n_allow, conf, "ip_restriction.allow_cidrs");
    return rc ? rc : cidrs_load(&tt->deny, &tt->n_deny, conf, "ip_restriction.deny_cidrs");
}

static int http_tunnel_start(void *state, bw_tunnel_t *t, void **tstate, bw_error_t *err)
{
    http_tunnel_t *tt = calloc(1, sizeof *tt);
    if (!tt) {
        H->error_set(err, "out of memory");
        return BW_ENOMEM;
    }
    int rc = parse_addr(tt, H->tunnel_addr(t));
    if (rc < 0)
        H->error_set(err, "Tunnel %s has an address the http plugin cannot use: %s",
                     H->tunnel_name(t), H->tunnel_addr(t));
    else if ((rc = load_options(tt, H->tunnel_conf(t))) < 0)
        H->error_set(err, "Tunnel %s: %s", H->tunnel_name(t), H->strerror(rc));
    else if ((rc = bw_proxy_proto_conf(H, H->tunnel_conf(t), H->tunnel_name(t), err)) >= 0) {
        tt->proxy_proto = rc; /* the version */
        rc = 0;
    }
    if (rc < 0) {
        bw__http_tunnel_unref(tt);
        return rc;
    }
    tt->t = t;
    *tstate = tt;
    return 0;
}

static void http_tunnel_stop(void *tstate)
{
    http_tunnel_t *tt = tstate;
    tt->t = NULL;
    bw__http_tunnel_unref(tt);
}

static void http_conn_open(void *tstate, bw_stream_t *pub, const bw_conn_info_t *info)
{
    bw__http_conn_open(tstate, pub, info);
}

/* ngrok's address forms for http: ports, host[:port], http(s):// URLs and
 * file:///dir (upstream.c). */
static int http_normalize_addr(void *state, const char *in, char *out, size_t outlen,
                               const char *name, bw_error_t *err)
{
    char why[512] = "";
    int rc = http_addr_normalize(in, out, outlen, name, why, sizeof why);
    if (rc < 0)
        H->error_set(err, "%s", why);
    return rc;
}

#ifdef HTTP_PLUGIN_TCP_TEST
/* The test variant sits behind a tcp edge: one tunnel, http's address
 * forms. */
static const bw_plugin_t http_plugin = {
    BW_PLUGIN_HEADER,
    .name = "httptcp",
    .version = "1.0.0",
    .description = "HTTP/1.x forwarding behind a tcp edge (tests only)",
    .public_scheme = "tcp",
    .edge_type = BW_EDGE_TCP,
    .flags = BW_PLUGIN_F_INSPECTS,
    .options = http_options,
    .init = http_init,
    .destroy = http_destroy,
    .tunnel_start = http_tunnel_start,
    .tunnel_stop = http_tunnel_stop,
    .conn_open = http_conn_open,
    .validate = http_validate,
    .normalize_addr = http_normalize_addr,
};
#else
/* An http definition is "X (http)" over http and then "X" over https on the
 * same host name, or one of them alone (spec §2.2). */
static int http_expand(void *state, const bw_conf_t *conf, const char *name, bw_expansion_t *out,
                       size_t max, bw_error_t *err)
{
    unsigned schemes = wanted_schemes(conf, name, err);
    if (!schemes)
        return BW_EINVAL;
    if (schemes == SCHEME_HTTPS) {
        out[0] = (bw_expansion_t){.proto = "https", .name_suffix = ""};
        return 1;
    }
    if (schemes == SCHEME_HTTP || max < 2) {
        out[0] = (bw_expansion_t){.proto = "http", .name_suffix = ""};
        return 1;
    }
    out[0] = (bw_expansion_t){.proto = "http", .name_suffix = " (http)"};
    out[1] = (bw_expansion_t){.proto = "https", .name_suffix = ""};
    return 2;
}

#define HTTP_DESCRIPTOR_COMMON                                                                     \
    BW_PLUGIN_HEADER, .version = "1.2.0",                                                          \
                      .description = "HTTP/1.x forwarding with inspection, auth, header rules "    \
                                     "and file serving",                                           \
                      .flags = BW_PLUGIN_F_INSPECTS, .options = http_options, .init = http_init,   \
                      .destroy = http_destroy, .tunnel_start = http_tunnel_start,                  \
                      .tunnel_stop = http_tunnel_stop, .conn_open = http_conn_open,                \
                      .validate = http_validate, .normalize_addr = http_normalize_addr

static const bw_plugin_t https_plugin = {
    HTTP_DESCRIPTOR_COMMON,
    .name = "https",
    .public_scheme = "https",
    .edge_type = BW_EDGE_HTTPS,
};

static const bw_plugin_t *const http_siblings[] = {&https_plugin, NULL};

static const bw_plugin_t http_plugin = {
    HTTP_DESCRIPTOR_COMMON,    .name = "http",
    .public_scheme = "http",   .edge_type = BW_EDGE_HTTP,
    .siblings = http_siblings, .expand = http_expand,
};
#endif

BW_PLUGIN_DEFINE(http_plugin)
