/* TLS contexts: the settings every connection shares, and loading of CA
 * files, certificates and keys. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "burrow/error.h"
#include "tls_int.h"

/* strerror(e) as the middle of a sentence: "permission denied". */
static const char *errno_words(int e, char *buf, size_t len)
{
    if (e == ENOENT)
        return "no such file";
    snprintf(buf, len, "%s", strerror(e));
    buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}

/* What one queued OpenSSL error says about a file of `kind`, or NULL when
 * it is only a module passing its caller's failure on ("PEM lib"). */
static const char *error_words(unsigned long e, const char *kind, char *buf, size_t len)
{
    int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);

    if (ERR_SYSTEM_ERROR(e))
        return errno_words(reason, buf, len);
    if (lib == ERR_LIB_X509 &&
        (reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH))
        return "key does not match certificate";
    if ((lib == ERR_LIB_PEM && reason == PEM_R_NO_START_LINE) ||
        (lib == ERR_LIB_X509 && reason == X509_R_NO_CERTIFICATE_OR_CRL_FOUND) ||
        (lib == ERR_LIB_OSSL_DECODER && reason == ERR_R_UNSUPPORTED)) { /* no key decoded */
        snprintf(buf, len, "not a PEM %s", kind);
        return buf;
    }
    return NULL;
}

/* Why loading `kind` ("certificate", "private key") from `path` failed, in
 * words, taking OpenSSL's error queue. Its reason strings name modules
 * ("system lib", "PEM lib"), not what is wrong with the file, so the file is
 * looked at first, then the queue from its root cause on. */
static const char *load_reason(const char *path, const char *kind, char *buf, size_t len)
{
    struct stat st;
    unsigned long e, first = ERR_peek_error();
    const char *r;

    if (path != NULL && stat(path, &st) != 0)
        return errno_words(errno, buf, len);
    if (path != NULL && S_ISDIR(st.st_mode))
        return "is a directory";
    if (path != NULL && access(path, R_OK) != 0)
        return errno_words(errno, buf, len);
    while ((e = ERR_get_error()) != 0)
        if ((r = error_words(e, kind, buf, len)) != NULL)
            return r;
    r = first ? ERR_reason_error_string(first) : NULL;
    snprintf(buf, len, "%s%s", ERR_GET_LIB(first) == ERR_LIB_PEM ? "damaged PEM file: " : "",
             r ? r : "unknown OpenSSL error");
    return buf;
}

static SSL_CTX *ctx_fail(SSL_CTX *ctx, const char *what, const char *kind, const char *path,
                         char *err, size_t errlen)
{
    char why[256];

    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
                 load_reason(path, kind, why, sizeof why));
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
        return ctx_fail(NULL, "cannot create TLS client context", "", NULL, err, errlen);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file != NULL)
        ok = SSL_CTX_load_verify_locations(ctx, ca_file, NULL);
    else
        ok = SSL_CTX_set_default_verify_paths(ctx);
    if (!ok)
        return ctx_fail(ctx, "cannot load CA certificates", "certificate", ca_file, err, errlen);
    return ctx;
}

/* A server picks the first protocol of its connection's list (bw_tls_set_alpn)
 * the client offered; without a list or a match, no ALPN in the answer. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    const bw_tls_t *t = SSL_get_app_data(ssl);
    unsigned char *sel;

    if (t == NULL || t->alpn == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_select_next_proto(&sel, outlen, t->alpn, (unsigned)t->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int ctx_err(const char *what, const char *kind, const char *path, char *err, size_t errlen)
{
    char why[256];

    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s %s: %s", what, path ? path : "(none)",
                 path ? load_reason(path, kind, why, sizeof why) : "no file given");
    ERR_clear_error();
    return BW_EINVAL;
}

/* Returns 0, or BW_EINVAL with a message in err[errlen]. */
int bw_tls_ctx_use_cert(SSL_CTX *ctx, const char *cert_file, const char *key_file, char *err,
                        size_t errlen)
{
    ERR_clear_error();
    if (cert_file == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        return ctx_err("cannot load certificate", "certificate", cert_file, err, errlen);
    if (key_file == NULL || SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        return ctx_err("cannot load private key", "private key", key_file, err, errlen);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return ctx_err("cannot load private key", "private key", key_file, err, errlen);
    return 0;
}

/* Returns 0, or BW_EINVAL with a message in err[errlen]. */
int bw_tls_ctx_verify_clients(SSL_CTX *ctx, const char *ca_file, int require, char *err,
                              size_t errlen)
{
    STACK_OF(X509_NAME) * names;

    ERR_clear_error();
    if (ca_file == NULL || SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
        return ctx_err("cannot load CA certificates", "certificate", ca_file, err, errlen);
    /* The CA names go in the request, so clients pick the right certificate. */
    names = SSL_load_client_CA_file(ca_file);
    if (names == NULL)
        return ctx_err("cannot load CA names", "certificate", ca_file, err, errlen);
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (require ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       NULL);
    return 0;
}

/* Returns a new SSL_CTX (caller frees with SSL_CTX_free) or NULL + err. */
SSL_CTX *bw_tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_server_method());

    ERR_clear_error();
    if (ctx == NULL)
        return ctx_fail(NULL, "cannot create TLS server context", "", NULL, err, errlen);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        return ctx_fail(ctx, "cannot load certificate", "certificate", cert_file, err, errlen);
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        return ctx_fail(ctx, "cannot load private key", "private key", key_file, err, errlen);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return ctx_fail(ctx, "cannot load private key", "private key", key_file, err, errlen);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return ctx;
}
