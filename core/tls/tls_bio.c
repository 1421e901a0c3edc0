/* The BIO between SSL and libuv (why it is ours: see tls.c), and the SSL
 * object created over it. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "burrow/error.h"
#include "tls_int.h"

/* ---- the BIO between SSL and libuv ---- */

static int bio_read(BIO *b, char *out, int outl)
{
    bw_tls_t *t = BIO_get_data(b);
    size_t n = t->in_len < (size_t)outl ? t->in_len : (size_t)outl;

    BIO_clear_retry_flags(b);
    if (n == 0) {
        BIO_set_retry_read(b); /* "no data yet", never EOF: we track FIN */
        return -1;
    }
    memcpy(out, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

/* Make room for `extra` more bytes of output. Returns 0 or BW_ENOMEM. */
int bw__tls_reserve(bw_tls_t *t, size_t extra)
{
    size_t need = t->out_len + extra, cap = t->out_cap * 2;
    struct write_req *w;

    if (need <= t->out_cap)
        return 0;
    if (cap < need)
        cap = need;
    w = realloc(t->out, sizeof(*w) + cap);
    if (w == NULL)
        return BW_ENOMEM;
    t->out = w;
    t->out_cap = cap;
    return 0;
}

static int bio_write(BIO *b, const char *data, int len)
{
    bw_tls_t *t = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    if (len <= 0 || bw__tls_reserve(t, (size_t)len) < 0)
        return -1;
    memcpy(t->out->data + t->out_len, data, (size_t)len);
    t->out_len += (size_t)len;
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    bw_tls_t *t = BIO_get_data(b);

    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* flush() runs after every SSL call */
    case BIO_CTRL_PENDING:
        return t ? (long)t->in_len : 0;
    case BIO_CTRL_WPENDING:
        return t ? (long)t->out_len : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "burrow-uv");

    if (m == NULL)
        return;
    if (!BIO_meth_set_read(m, bio_read) || !BIO_meth_set_write(m, bio_write) ||
        !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create)) {
        BIO_meth_free(m);
        return;
    }
    bio_method = m; /* lives as long as the process, like OpenSSL's own */
}

static int is_ip_literal(const char *name)
{
    unsigned char a[16];

    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

/* Client side: SNI for DNS names, and what the certificate must match. */
static int set_peer_name(SSL *ssl, const char *name)
{
    if (is_ip_literal(name))
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set_tlsext_host_name(ssl, name) == 1 && SSL_set1_host(ssl, name) == 1;
}

SSL *bw__tls_ssl_new(bw_tls_t *t, SSL_CTX *ctx, int is_server, const char *server_name)
{
    SSL *ssl;
    BIO *bio;

    if (pthread_once(&bio_once, bio_method_init) != 0 || bio_method == NULL)
        return NULL;
    ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    bio = BIO_new(bio_method);
    if (bio == NULL)
        goto err;
    BIO_set_data(bio, t);
    SSL_set_bio(ssl, bio, bio); /* one reference, now owned by ssl */
    SSL_set_app_data(ssl, t);   /* for callbacks of the context (ALPN) */
    if (is_server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        if (!set_peer_name(ssl, server_name))
            goto err;
    }
    return ssl;

err:
    SSL_free(ssl);
    return NULL;
}
