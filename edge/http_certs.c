/* Certificates of the HTTPS listener, chosen by SNI: a --host-cert whose
 * SAN names the host exactly, else one whose wildcard covers it, else the
 * dev wildcard certificate for "*.<domain>" (docs/edge.md, "Certificates"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/x509v3.h>

#include "edge_int.h"
#include "hostnames.h"
#include "log.h"
#include "tls.h"

#define MAX_NAMES 64

typedef struct host_cert {
    SSL_CTX *ctx;
    char *names[MAX_NAMES]; /* lowercased SAN DNS names, "*.x" for wildcards */
    size_t n_names;
} host_cert_t;

struct bw_certs {
    SSL_CTX *dflt;
    host_cert_t *hc;
    size_t n;
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

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    const bw_certs_t *c = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    SSL_CTX *ctx = sni ? pick(c, sni) : NULL;
    if (ctx)
        SSL_set_SSL_CTX(ssl, ctx);
    return SSL_TLSEXT_ERR_OK;
}

/* The SAN DNS names of ctx's certificate. */
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
    if (!c->dflt)
        goto fail;
    SSL_CTX_set_tlsext_servername_callback(c->dflt, on_servername);
    SSL_CTX_set_tlsext_servername_arg(c->dflt, c);
    return c;
fail:
    bw_certs_free(c);
    return NULL;
}

SSL_CTX *bw_certs_ctx(const bw_certs_t *c)
{
    return c->dflt;
}

void bw_certs_free(bw_certs_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        SSL_CTX_free(c->hc[i].ctx);
        for (size_t j = 0; j < c->hc[i].n_names; j++)
            free(c->hc[i].names[j]);
    }
    free(c->hc);
    SSL_CTX_free(c->dflt);
    free(c);
}
