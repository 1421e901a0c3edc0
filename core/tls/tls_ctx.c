/* TLS contexts: the settings every connection shares, and loading of CA
 * files, certificates and keys. */
#include <stdio.h>

#include <openssl/err.h>

#include "tls.h"

static SSL_CTX *ctx_fail(SSL_CTX *ctx, const char *what, const char *path, char *err, size_t errlen)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;

    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
                 reason ? reason : "unknown OpenSSL error");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *ctx_new(const SSL_METHOD *method)
{
    SSL_CTX *ctx = SSL_CTX_new(method);

    if (ctx == NULL)
        return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Idle connections give their 16 KiB record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* Returns a new SSL_CTX (caller frees with SSL_CTX_free) or NULL + err. */
SSL_CTX *bw_tls_client_ctx(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_client_method());
    int ok;

    ERR_clear_error();
    if (ctx == NULL)
        return ctx_fail(NULL, "cannot create TLS client context", NULL, err, errlen);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file != NULL)
        ok = SSL_CTX_load_verify_locations(ctx, ca_file, NULL);
    else
        ok = SSL_CTX_set_default_verify_paths(ctx);
    if (!ok)
        return ctx_fail(ctx, "cannot load CA certificates", ca_file, err, errlen);
    return ctx;
}

/* Returns a new SSL_CTX (caller frees with SSL_CTX_free) or NULL + err. */
SSL_CTX *bw_tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_server_method());

    ERR_clear_error();
    if (ctx == NULL)
        return ctx_fail(NULL, "cannot create TLS server context", NULL, err, errlen);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        return ctx_fail(ctx, "cannot load certificate", cert_file, err, errlen);
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        return ctx_fail(ctx, "cannot load private key", key_file, err, errlen);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return ctx_fail(ctx, "private key does not match certificate", key_file, err, errlen);
    return ctx;
}
