/* The stream_start_tls slot of the host table: TLS over a stream a plugin
 * owns (STARTTLS, or TLS ended in the plugin), with the settings given as
 * PEM file paths. The work is the io layer's TLS filter; this file turns
 * the plugin's options into a context and the handshake's outcome into a
 * bw_tls_info_t. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "host.h"
#include "log.h"
#include "tls.h"

typedef struct start_tls {
    bw_tls_done_cb cb;
    void *ud;
} start_tls_t;

/* A context for one connection. Returns a new SSL_CTX or NULL with err. */
static SSL_CTX *opts_ctx(const bw_tls_opts_t *o, char *err, size_t errlen)
{
    SSL_CTX *ctx;
    int server = (o->flags & BW_TLS_F_SERVER) != 0;

    if (server) {
        if (!o->cert_file || !o->key_file) {
            snprintf(err, errlen, "a TLS server needs cert_file and key_file");
            return NULL;
        }
        ctx = bw_tls_server_ctx(o->cert_file, o->key_file, err, errlen);
        if (ctx && o->ca_file &&
            bw_tls_ctx_verify_clients(
                ctx, o->ca_file, (o->flags & BW_TLS_F_REQUIRE_CLIENT_CERT) != 0, err, errlen) < 0)
            goto fail;
        return ctx;
    }
    ctx = bw_tls_client_ctx(o->flags & BW_TLS_F_VERIFY ? o->ca_file : NULL, err, errlen);
    if (!ctx)
        return NULL;
    if (!(o->flags & BW_TLS_F_VERIFY))
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if ((o->cert_file || o->key_file) &&
        bw_tls_ctx_use_cert(ctx, o->cert_file, o->key_file, err, errlen) < 0)
        goto fail;
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static void started(void *ud, bw_stream_t *s, int status, const char *why)
{
    start_tls_t *st = ud;
    if (status < 0) {
        bw_log(BW_LOG_WARN, "TLS handshake on a plugin's stream failed", "obj", "tls", "err", why,
               NULL);
        st->cb(st->ud, NULL, status, NULL);
        free(st);
        return;
    }
    SSL *ssl = bw_stream_tls_ssl(s);
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    char proto[256] = "", subject[256] = "";
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn_len > 0)
        snprintf(proto, sizeof proto, "%.*s", (int)alpn_len, (const char *)alpn);
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer)
        X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof subject);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    bw_tls_info_t info = {
        .struct_size = sizeof info,
        .alpn = proto,
        .server_name = sni ? sni : "",
        .peer_verified = peer && SSL_get_verify_result(ssl) == X509_V_OK,
        .peer_subject = subject,
    };
    st->cb(st->ud, s, 0, &info);
    free(st);
}

int bw__host_stream_start_tls(bw_stream_t *s, const bw_tls_opts_t *opts, bw_tls_done_cb cb,
                              void *ud, bw_error_t *err)
{
    bw_tls_opts_t o = {0};
    char why[256] = "";
    const bw_host_t *h = bw_host_table();

    if (!s || !opts || !cb || !bw_host_io()) {
        h->error_set(err, "stream_start_tls: missing stream, options or callback");
        return BW_EINVAL;
    }
    /* Options may grow: read what the plugin knew of, zeroes for the rest. */
    memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
    int server = (o.flags & BW_TLS_F_SERVER) != 0;
    if (!server && (!o.server_name || !*o.server_name)) {
        h->error_set(err, "stream_start_tls: a TLS client needs server_name");
        return BW_EINVAL;
    }
    SSL_CTX *ctx = opts_ctx(&o, why, sizeof why);
    if (!ctx) {
        h->error_set(err, "stream_start_tls: %s", why);
        return BW_EINVAL;
    }
    start_tls_t *st = malloc(sizeof *st);
    int rc = BW_ENOMEM;
    if (st) {
        st->cb = cb;
        st->ud = ud;
        bw_tls_filter_opts_t fo = {
            .ctx = ctx, .is_server = server, .server_name = o.server_name, .alpn = o.alpn};
        rc = bw_stream_tls_over(bw_host_io(), s, &fo, started, st);
    }
    /* The connection holds its own reference. */
    SSL_CTX_free(ctx);
    if (rc < 0) {
        free(st);
        h->error_set(err, "stream_start_tls: %s",
                     rc == BW_EINVAL ? "invalid ALPN list" : bw_strerror(rc));
    }
    return rc;
}
