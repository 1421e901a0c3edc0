/* The tls protocol plugin: public TLS connections the edge routed by SNI
 * without terminating them (BW_EDGE_TLS). See docs/tls.md.
 *
 *  - terminate_at: upstream (the default without a certificate): the bytes
 *    pass untouched, ClientHello first, and the local service terminates
 *    TLS: the host's stream_join, as the tcp plugin does.
 *  - terminate_at: agent (or crt + key): the host's TLS filter ends TLS
 *    here with the tunnel's certificate (stream_start_tls, server side),
 *    optionally requiring client certificates of mutual_tls_cas /
 *    client_cas, and the plaintext is joined with the local service.
 *
 * ip_restriction is checked on the client address the edge reports before
 * anything reaches the local service (the CIDR code is the http plugin's).
 * Public headers only, plus OpenSSL to check certificate files while
 * validating.
 *
 * The connection bookkeeping (open, dial, PROXY header, join, metrics on
 * close) repeats the tcp plugin's: plugins share only include/burrow/, and a
 * shared join-and-count helper belongs in the SDK the plugin-platform work
 * adds, where third-party plugins get it too. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <burrow/plugin.h>
#include <burrow/proxy_proto.h>

#include "policy.h"

static const bw_host_t *H;

typedef struct tls_tunnel {
    bw_tunnel_t *t;  /* NULL once the tunnel stopped */
    unsigned live;   /* connections still open */
    int terminate;   /* TLS ends in the agent */
    int proxy_proto; /* PROXY protocol version sent first, 0: none */
    char *crt, *key, *cas;
    http_cidr_t *allow, *deny;
    size_t n_allow, n_deny;
} tls_tunnel_t;

typedef struct tls_conn {
    tls_tunnel_t *tt;
    bw_stream_t *pub; /* the public stream: TLS bytes, or plaintext once terminated */
    uint64_t start_ns;
    int verified; /* TLS ended here and the client's certificate verified */
    char client[64], server[64], subject[256];
} tls_conn_t;

static const bw_option_t tls_options[] = {
    {.key = "subdomain", .type = BW_OPT_STRING, .description = "request this subdomain"},
    {.key = "hostname", .type = BW_OPT_STRING, .description = "request this full hostname"},
    {.key = "crt",
     .type = BW_OPT_STRING,
     .description = "PEM certificate chain: the agent terminates TLS with it (needs key)"},
    {.key = "key", .type = BW_OPT_STRING, .description = "PEM private key of crt"},
    {.key = "client_cas",
     .type = BW_OPT_STRING,
     .description = "PEM CAs whose client certificates are required (needs crt and key)"},
    {.key = "mutual_tls_cas",
     .type = BW_OPT_STRING,
     .description = "the same as client_cas (ngrok v3 name)"},
    {.key = "terminate_at",
     .type = BW_OPT_STRING,
     .description = "where TLS ends: upstream (default without crt) or agent (default with crt)"},
    {.key = "inspect",
     .type = BW_OPT_BOOL,
     .default_value = "false",
     .description = "tls tunnels cannot inspect traffic; accepted for compatibility"},
    {.key = "ip_restriction.allow_cidrs",
     .type = BW_OPT_STRING_LIST,
     .description = "only clients in these CIDRs may connect"},
    {.key = "ip_restriction.deny_cidrs",
     .type = BW_OPT_STRING_LIST,
     .description = "clients in these CIDRs are refused"},
    {.key = "domain", .type = BW_OPT_ANY, .description = "ngrok reserved domain; no effect"},
    {.key = BW_PROXY_PROTO_KEY,
     .type = BW_OPT_STRING,
     .description = "send a PROXY protocol header (1 or 2) with the client's address first; "
                    "v2 also carries the TLS ended here and the client certificate's CN"},
    {.key = NULL},
};

static int tls_init(const bw_host_t *host, void **state, bw_error_t *err)
{
    BW_PLUGIN_INIT_CHECK(host, err);
    H = host;
    *state = NULL;
    return 0;
}

static void tls_destroy(void *state)
{
    (void)state;
}

/* ---------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------- */

/* client_cas, or its v3 name. */
static const char *client_cas(const bw_conf_t *conf)
{
    const char *cas = H->conf_str(conf, "client_cas");
    return cas ? cas : H->conf_str(conf, "mutual_tls_cas");
}

/* Can each file be read at all? The message names the option and errno. */
static int readable(const char *file, const char *key, const char *name, bw_error_t *err)
{
    FILE *f = file ? fopen(file, "rb") : NULL;
    if (file && !f) {
        H->error_set(err, "TLS tunnel %s: cannot read '%s' %s: %s", name, key, file,
                     strerror(errno));
        return BW_EINVAL;
    }
    if (f)
        fclose(f);
    return 0;
}

/* Do crt and key load, belong together, and does the CA file load? */
static int check_files(const char *crt, const char *key, const char *cas, const char *name,
                       bw_error_t *err)
{
    if (readable(crt, "crt", name, err) || readable(key, "key", name, err) ||
        readable(cas, "client_cas", name, err))
        return BW_EINVAL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *what = NULL, *file = NULL;
    if (!ctx)
        what = "out of memory", file = crt;
    else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        what = "cannot load the private key 'key'", file = key;
    else if (SSL_CTX_use_certificate_chain_file(ctx, crt) != 1)
        what = "cannot load the certificate 'crt'", file = crt;
    else if (SSL_CTX_check_private_key(ctx) != 1)
        what = "the private key 'key' does not match the certificate 'crt'", file = key;
    else if (cas && SSL_CTX_load_verify_locations(ctx, cas, NULL) != 1)
        what = "cannot load the client CAs 'client_cas'", file = cas;
    unsigned long e = ERR_peek_last_error();
    if (what)
        H->error_set(err, "TLS tunnel %s: %s %s%s%s", name, what, file, e ? ": " : "",
                     e ? ERR_reason_error_string(e) : "");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return what ? BW_EINVAL : 0;
}

static int check_cidrs(const bw_conf_t *conf, const char *key, const char *name, bw_error_t *err)
{
    http_cidr_t c;
    for (size_t i = 0; i < H->conf_list_len(conf, key); i++) {
        const char *v = H->conf_list_at(conf, key, i);
        if (http_cidr_parse(v, &c) != 0) {
            H->error_set(err, "TLS tunnel %s: invalid CIDR '%s' in '%s'", name, v, key);
            return BW_EINVAL;
        }
    }
    return 0;
}

static int tls_validate(void *state, const bw_conf_t *conf, const char *name, bw_error_t *err)
{
    const char *crt = H->conf_str(conf, "crt"), *key = H->conf_str(conf, "key");
    const char *cas = client_cas(conf), *at = H->conf_str(conf, "terminate_at");
    if (H->conf_str(conf, "subdomain") && H->conf_str(conf, "hostname")) {
        H->error_set(err, "Tunnel %s must not specify both hostname and subdomain.", name);
        return BW_EINVAL;
    }
    if (!crt != !key) {
        H->error_set(err, "TLS tunnel %s must supply both 'crt' and 'key' or neither", name);
        return BW_EINVAL;
    }
    if (cas && !crt) {
        H->error_set(err,
                     "TLS tunnel %s specified client CA roots but no crt and key for TLS "
                     "termination",
                     name);
        return BW_EINVAL;
    }
    if (at && strcmp(at, "agent") != 0 && strcmp(at, "upstream") != 0) {
        H->error_set(err,
                     "TLS tunnel %s specifies invalid 'terminate_at': '%s' (use agent or "
                     "upstream; for TLS ended at the edge use an http tunnel)",
                     name, at);
        return BW_EINVAL;
    }
    if (at && strcmp(at, "agent") == 0 && !crt) {
        H->error_set(err,
                     "TLS tunnel %s terminates at the agent ('terminate_at') but has no "
                     "'crt' and 'key'",
                     name);
        return BW_EINVAL;
    }
    if (at && strcmp(at, "upstream") == 0 && crt) {
        H->error_set(err,
                     "TLS tunnel %s passes TLS upstream ('terminate_at') but gives 'crt' "
                     "and 'key' to terminate it",
                     name);
        return BW_EINVAL;
    }
    if (check_cidrs(conf, "ip_restriction.allow_cidrs", name, err) ||
        check_cidrs(conf, "ip_restriction.deny_cidrs", name, err))
        return BW_EINVAL;
    if (bw_proxy_proto_conf(H, conf, name, err) < 0)
        return BW_EINVAL;
    return crt ? check_files(crt, key, cas, name, err) : 0;
}

/* ---------------------------------------------------------------------------
 * Tunnels
 * ------------------------------------------------------------------------- */

static void tunnel_free(tls_tunnel_t *tt)
{
    free(tt->crt);
    free(tt->key);
    free(tt->cas);
    free(tt->allow);
    free(tt->deny);
    free(tt);
}

static void tunnel_unref(tls_tunnel_t *tt)
{
    if (!tt->t && tt->live == 0)
        tunnel_free(tt);
}

static char *dup_or_null(const char *s, int *oom)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *oom = 1;
    return d;
}

static http_cidr_t *load_cidrs(const bw_conf_t *conf, const char *key, size_t *n, int *oom)
{
    size_t len = H->conf_list_len(conf, key);
    http_cidr_t *v = len ? calloc(len, sizeof *v) : NULL;
    if (len && !v)
        *oom = 1;
    for (size_t i = 0; v && i < len; i++)
        if (http_cidr_parse(H->conf_list_at(conf, key, i), &v[(*n)]) == 0)
            (*n)++;
    return v;
}

static int tls_tunnel_start(void *state, bw_tunnel_t *t, void **tstate, bw_error_t *err)
{
    const bw_conf_t *conf = H->tunnel_conf(t);
    tls_tunnel_t *tt = calloc(1, sizeof *tt);
    int oom = !tt;
    if (tt) {
        tt->crt = dup_or_null(H->conf_str(conf, "crt"), &oom);
        tt->key = dup_or_null(H->conf_str(conf, "key"), &oom);
        tt->cas = dup_or_null(client_cas(conf), &oom);
        tt->allow = load_cidrs(conf, "ip_restriction.allow_cidrs", &tt->n_allow, &oom);
        tt->deny = load_cidrs(conf, "ip_restriction.deny_cidrs", &tt->n_deny, &oom);
    }
    if (oom) {
        if (tt)
            tunnel_free(tt);
        H->error_set(err, "out of memory");
        return BW_ENOMEM;
    }
    if (tt->crt && !BW_HOST_HAS(H, stream_start_tls)) {
        tunnel_free(tt);
        H->error_set(err, "this agent cannot terminate TLS in plugins (ABI 1.2 needed)");
        return BW_ENOTSUP;
    }
    tt->terminate = tt->crt != NULL;
    tt->proxy_proto = bw_proxy_proto_conf(H, conf, H->tunnel_name(t), err);
    if (tt->proxy_proto < 0) {
        int rc = tt->proxy_proto;
        tunnel_free(tt);
        return rc;
    }
    if (H->conf_bool(conf, "inspect", 0))
        H->log(BW_LOG_WARN, "TLS tunnel cannot inspect traffic", "obj", "tunnels", "name",
               H->tunnel_name(t), NULL);
    tt->t = t;
    *tstate = tt;
    return 0;
}

static void tls_tunnel_stop(void *tstate)
{
    tls_tunnel_t *tt = tstate;
    /* Open connections keep flowing; they just stop reporting metrics. */
    tt->t = NULL;
    tunnel_unref(tt);
}

/* ---------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------- */

static void conn_done(tls_conn_t *c)
{
    tls_tunnel_t *tt = c->tt;
    if (tt->t)
        H->metric_conn_close(tt->t, H->now_ns() - c->start_ns);
    tt->live--;
    free(c);
    tunnel_unref(tt);
}

static void joined(void *ud, int err, uint64_t bytes_in, uint64_t bytes_out)
{
    tls_conn_t *c = ud;
    if (err && err != BW_ECONNRESET)
        H->log(BW_LOG_DEBUG, "connection ended with error", "obj", "join", "r", c->client, "err",
               H->strerror(err), NULL);
    conn_done(c);
}

/* The Common Name in a subject as X509_NAME_oneline writes it
 * ("/C=DE/CN=client/O=x"), into buf; "" when there is none. */
static const char *subject_cn(const char *subject, char *buf, size_t len)
{
    const char *cn = strstr(subject, "/CN=");
    buf[0] = '\0';
    if (cn) {
        cn += 4;
        snprintf(buf, len, "%.*s", (int)strcspn(cn, "/"), cn);
    }
    return buf;
}

/* proxy_proto: the header goes to the local service before the join
 * forwards anything. With v2 and TLS ended here it also says so, with the
 * verified client certificate's CN (PP2_TYPE_SSL); v1 has no room for it. */
static int send_proxy_header(tls_conn_t *c, bw_stream_t *local)
{
    uint8_t hdr[BW_PROXY_HEADER_SSL_MAX];
    char cn[256];
    size_t n = bw_proxy_header(c->tt->proxy_proto, c->client, c->server, hdr, sizeof hdr);
    if (n > 0 && c->tt->terminate && c->tt->proxy_proto == 2) {
        size_t m = bw_proxy_v2_add_ssl(hdr, n, sizeof hdr, c->verified, NULL,
                                       c->verified ? subject_cn(c->subject, cn, sizeof cn) : NULL);
        n = m ? m : n;
    }
    return n > 0 ? H->stream_write(local, hdr, n) : 0;
}

static void connected(void *ud, bw_stream_t *local, int status)
{
    tls_conn_t *c = ud;
    if (status < 0) {
        if (c->tt->t)
            H->log(BW_LOG_WARN, "failed to dial local service", "obj", "join", "addr",
                   H->tunnel_addr(c->tt->t), "r", c->client, "err", H->strerror(status), NULL);
        H->stream_close(c->pub, 1);
        conn_done(c);
        return;
    }
    if (c->tt->proxy_proto > 0 && send_proxy_header(c, local) < 0) {
        H->stream_close(local, 1);
        H->stream_close(c->pub, 1);
        conn_done(c);
        return;
    }
    H->log(BW_LOG_DEBUG, "join connections", "obj", "join", "l", H->stream_peer(local), "r",
           c->client, NULL);
    if (H->stream_join(c->pub, local, joined, c) < 0)
        conn_done(c);
}

static void dial(tls_conn_t *c)
{
    if (!c->tt->t) { /* stopped while the handshake ran */
        H->stream_close(c->pub, 1);
        conn_done(c);
        return;
    }
    int rc = H->connect(c->tt->t, H->tunnel_addr(c->tt->t), 0, connected, c);
    if (rc < 0)
        connected(c, NULL, rc);
}

static void handshaken(void *ud, bw_stream_t *s, int status, const bw_tls_info_t *info)
{
    tls_conn_t *c = ud;
    if (status < 0) {
        /* The host logged OpenSSL's reason; the stream is gone. */
        H->log(BW_LOG_INFO, "TLS handshake with public client failed", "obj", "tls", "r", c->client,
               "err", H->strerror(status), NULL);
        conn_done(c);
        return;
    }
    c->pub = s;
    if (info->peer_verified) {
        c->verified = 1;
        snprintf(c->subject, sizeof c->subject, "%s", info->peer_subject);
        H->log(BW_LOG_INFO, "client certificate verified", "obj", "tls", "r", c->client, "subject",
               c->subject, NULL);
    }
    dial(c);
}

static void terminate(tls_conn_t *c)
{
    tls_tunnel_t *tt = c->tt;
    bw_tls_opts_t o = {
        .struct_size = sizeof o,
        .flags = BW_TLS_F_SERVER | (tt->cas ? BW_TLS_F_REQUIRE_CLIENT_CERT : 0),
        .cert_file = tt->crt,
        .key_file = tt->key,
        .ca_file = tt->cas,
    };
    if (H->stream_start_tls(c->pub, &o, handshaken, c, NULL) < 0) {
        H->log(BW_LOG_ERROR, "cannot terminate TLS", "obj", "tls", "r", c->client, "crt", tt->crt,
               NULL);
        H->stream_close(c->pub, 1);
        conn_done(c);
    }
}

static void tls_conn_open(void *tstate, bw_stream_t *pub, const bw_conn_info_t *info)
{
    tls_tunnel_t *tt = tstate;
    const char *ip = info->client_ip ? info->client_ip : "";
    if (!tt->t) {
        H->stream_close(pub, 1);
        return;
    }
    if (!http_ip_allowed(tt->allow, tt->n_allow, tt->deny, tt->n_deny, ip)) {
        H->log(BW_LOG_INFO, "refused client by ip_restriction", "obj", "tls", "r",
               info->client_addr ? info->client_addr : "", NULL);
        H->stream_close(pub, 1);
        return;
    }
    tls_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        H->stream_close(pub, 1);
        return;
    }
    c->tt = tt;
    c->pub = pub;
    c->start_ns = H->now_ns();
    snprintf(c->client, sizeof c->client, "%s", info->client_addr ? info->client_addr : "");
    if (BW_CONN_INFO_HAS(info, server_addr) && info->server_addr)
        snprintf(c->server, sizeof c->server, "%s", info->server_addr);
    tt->live++;
    H->metric_conn_open(tt->t);
    if (tt->terminate)
        terminate(c);
    else
        dial(c); /* the ClientHello waits in the host meanwhile */
}

static const bw_plugin_t tls_plugin = {
    BW_PLUGIN_HEADER,
    .name = "tls",
    .version = "1.0.0",
    .description = "TLS routed by SNI: passed through to the local service, or ended in the agent",
    .public_scheme = "tls",
    .edge_type = BW_EDGE_TLS,
    .flags = 0,
    .options = tls_options,
    .init = tls_init,
    .destroy = tls_destroy,
    .tunnel_start = tls_tunnel_start,
    .tunnel_stop = tls_tunnel_stop,
    .conn_open = tls_conn_open,
    .validate = tls_validate,
};

BW_PLUGIN_DEFINE(tls_plugin)
