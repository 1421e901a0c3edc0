/* Certificates of the HTTPS listener, chosen by SNI: a --host-cert whose
 * SAN names the host exactly, else one whose wildcard covers it, else the
 * dev certificate minted for that host while an https tunnel holds it, else
 * the dev wildcard certificate for "*.<domain>" (docs/edge.md,
 * "Certificates").
 *
 * Minted certificates exist because OpenSSL-based clients refuse a wildcard
 * directly under a single label ("*.localhost"), the default domain. They
 * live in memory only, as long as the name is held or reserved, and are
 * swapped into the connection in the SNI callback rather than given an
 * SSL_CTX each: a key and a certificate cost far less than a context. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "edge_int.h"
#include "hostnames.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#define MAX_NAMES  64
#define MAX_MINTED 4096 /* bounds memory; past it names get the wildcard */

typedef struct host_cert {
    SSL_CTX *ctx;
    char *names[MAX_NAMES]; /* lowercased SAN DNS names, "*.x" for wildcards */
    size_t n_names;
} host_cert_t;

/* A dev certificate minted for one host name. */
typedef struct minted {
    char *host; /* lowercased */
    X509 *x;
    EVP_PKEY *key;
    struct minted *next;
} minted_t;

struct bw_certs {
    SSL_CTX *dflt;
    host_cert_t *hc;
    size_t n;
    X509 *ca; /* the dev CA, to mint with */
    EVP_PKEY *ca_key;
    minted_t *minted;
    size_t n_minted;
};

/* Exact names first, then a wildcard covering exactly one more label. */
static SSL_CTX *pick(const bw_certs_t *c, const char *sni)
{
    for (size_t i = 0; i < c->n; i++)
        for (size_t j = 0; j < c->hc[i].n_names; j++)
            if (strcasecmp(c->hc[i].names[j], sni) == 0)
                return c->hc[i].ctx;
    const char *dot = strchr(sni, '.');
    if (!dot || dot == sni)
        return NULL;
    for (size_t i = 0; i < c->n; i++)
        for (size_t j = 0; j < c->hc[i].n_names; j++) {
            const char *n = c->hc[i].names[j];
            if (n[0] == '*' && n[1] == '.' && strcasecmp(n + 1, dot) == 0)
                return c->hc[i].ctx;
        }
    return NULL;
}

static minted_t **find_minted(bw_certs_t *c, const char *host)
{
    minted_t **mp = &c->minted;
    while (*mp && strcasecmp((*mp)->host, host) != 0)
        mp = &(*mp)->next;
    return mp;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    bw_certs_t *c = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    SSL_CTX *ctx = sni ? pick(c, sni) : NULL;
    minted_t *m = sni && !ctx ? *find_minted(c, sni) : NULL;
    if (ctx)
        SSL_set_SSL_CTX(ssl, ctx);
    else if (m && SSL_use_cert_and_key(ssl, m->x, m->key, NULL, 1) != 1)
        ERR_clear_error(); /* keeps the wildcard */
    return SSL_TLSEXT_ERR_OK;
}

/* The SAN DNS names of ctx's certificate. */
/* gcc 12 -fanalyzer false positive: each name is stored in h->names (freed
 * with the certificate), which it reports as a leak of `n`. */
BW_ANALYZER_IGNORE("-Wanalyzer-malloc-leak")
static int load_names(host_cert_t *h, const char *path, char *err, size_t errlen)
{
    X509 *x = SSL_CTX_get0_certificate(h->ctx);
    GENERAL_NAMES *gens = x ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS || h->n_names == MAX_NAMES)
            continue;
        const char *s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
        char *n = strndup(s, (size_t)ASN1_STRING_length(g->d.dNSName));
        if (!n)
            break;
        for (char *p = n; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        h->names[h->n_names++] = n;
    }
    GENERAL_NAMES_free(gens);
    if (h->n_names == 0) {
        snprintf(err, errlen,
                 "--host-cert %s: the certificate names no DNS host "
                 "(subjectAltName)",
                 path);
        return BW_EINVAL;
    }
    return 0;
}
BW_ANALYZER_END

static int load_host_cert(host_cert_t *h, const char *spec, char *err, size_t errlen)
{
    char buf[2048], why[256];
    const char *colon = strchr(spec, ':');
    if (!colon || colon == spec || !colon[1] || strlen(spec) >= sizeof buf) {
        snprintf(err, errlen, "invalid --host-cert '%s' (expected CERT.pem:KEY.pem)", spec);
        return BW_EINVAL;
    }
    memcpy(buf, spec, (size_t)(colon - spec));
    buf[colon - spec] = '\0';
    h->ctx = bw_tls_server_ctx(buf, colon + 1, why, sizeof why);
    if (!h->ctx) {
        snprintf(err, errlen, "--host-cert %s: %s", spec, why);
        return BW_EINVAL;
    }
    return load_names(h, buf, err, errlen);
}

static void host_cert_clear(host_cert_t *h)
{
    SSL_CTX_free(h->ctx);
    for (size_t j = 0; j < h->n_names; j++)
        free(h->names[j]);
}

/* gcc 12 -fanalyzer false positive, as for load_names: the names it stores
 * in h.names are freed by host_cert_clear, which it reports as leaked. */
BW_ANALYZER_IGNORE("-Wanalyzer-malloc-leak")
int bw_certs_check(const char *const *host_certs, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        host_cert_t h = {0};
        int rc = load_host_cert(&h, host_certs[i], err, errlen);
        host_cert_clear(&h);
        if (rc != 0)
            return rc;
    }
    return 0;
}
BW_ANALYZER_END

/* The dev wildcard certificate: made, or reused while valid. */
static SSL_CTX *dev_wildcard(const char *dir, const char *domain, char *err, size_t errlen)
{
    char wildcard[300], cert[1024], key[1024];
    const char *names[] = {wildcard, domain, NULL};
    int created = 0;
    snprintf(wildcard, sizeof wildcard, "*.%s", domain);
    if (bw_tls_dev_cert(dir, "wildcard", names, &created, err, errlen) != 0)
        return NULL;
    snprintf(cert, sizeof cert, "%s/wildcard.pem", dir);
    snprintf(key, sizeof key, "%s/wildcard.key", dir);
    bw_log(BW_LOG_INFO, "using dev wildcard certificate", "obj", "edge", "names", wildcard, "cert",
           cert, NULL);
    return bw_tls_server_ctx(cert, key, err, errlen);
}

bw_certs_t *bw_certs_new(const char *state_dir, const char *domain, const char *const *host_certs,
                         size_t n, char *err, size_t errlen)
{
    bw_certs_t *c = calloc(1, sizeof *c);
    if (!c || (n && !(c->hc = calloc(n, sizeof *c->hc)))) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        c->n++;
        if (load_host_cert(&c->hc[i], host_certs[i], err, errlen) != 0)
            goto fail;
        bw_log(BW_LOG_INFO, "using host certificate", "obj", "edge", "names", c->hc[i].names[0],
               NULL);
    }
    c->dflt = dev_wildcard(state_dir, domain, err, errlen);
    if (!c->dflt || bw_tls_dev_ca(state_dir, &c->ca, &c->ca_key, err, errlen) != 0)
        goto fail;
    SSL_CTX_set_tlsext_servername_callback(c->dflt, on_servername);
    SSL_CTX_set_tlsext_servername_arg(c->dflt, c);
    return c;
fail:
    bw_certs_free(c);
    return NULL;
}

static void minted_free(minted_t **mp)
{
    minted_t *m = *mp;
    *mp = m->next;
    X509_free(m->x);
    EVP_PKEY_free(m->key);
    free(m->host);
    free(m);
}

static void mint(bw_certs_t *c, const char *host)
{
    const char *names[] = {host, NULL};
    minted_t *m = calloc(1, sizeof *m);
    if (!m || !(m->host = strdup(host)) ||
        bw_tls_dev_issue(c->ca, c->ca_key, names, &m->x, &m->key) != 0) {
        unsigned long e = ERR_get_error();
        bw_log(BW_LOG_ERROR, "cannot mint a dev certificate; using the wildcard", "obj", "edge",
               "host", host, "err", e ? ERR_reason_error_string(e) : "out of memory", NULL);
        ERR_clear_error();
        if (m)
            free(m->host);
        free(m);
        return;
    }
    m->next = c->minted;
    c->minted = m;
    c->n_minted++;
    bw_log(BW_LOG_DEBUG, "minted dev certificate", "obj", "edge", "host", host, NULL);
}

void bw_certs_host_add(bw_certs_t *c, const char *host)
{
    if (!c || pick(c, host) || *find_minted(c, host))
        return;
    if (c->n_minted >= MAX_MINTED) {
        char max[16];
        snprintf(max, sizeof max, "%d", MAX_MINTED);
        bw_log(BW_LOG_WARN, "too many dev certificates; using the wildcard", "obj", "edge", "host",
               host, "max", max, NULL);
        return;
    }
    mint(c, host);
}

void bw_certs_host_remove(bw_certs_t *c, const char *host)
{
    minted_t **mp = c ? find_minted(c, host) : NULL;
    if (mp && *mp) {
        bw_log(BW_LOG_DEBUG, "dropped dev certificate", "obj", "edge", "host", host, NULL);
        minted_free(mp);
        c->n_minted--;
    }
}

SSL_CTX *bw_certs_ctx(const bw_certs_t *c)
{
    return c->dflt;
}

void bw_certs_free(bw_certs_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        host_cert_clear(&c->hc[i]);
    free(c->hc);
    while (c->minted)
        minted_free(&c->minted);
    X509_free(c->ca);
    EVP_PKEY_free(c->ca_key);
    SSL_CTX_free(c->dflt);
    free(c);
}
