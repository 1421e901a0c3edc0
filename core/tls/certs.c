/* Dev-mode certificates: a private CA and a server certificate signed by it.
 *
 * The CA is made once and kept, so agents that trust ca.pem keep trusting
 * the edge across restarts; only the server certificate is re-issued when
 * the names asked for change or it nears expiry. Keys are EC P-256, files are
 * written to a temporary name and renamed so a crash never leaves half a PEM.
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "burrow/error.h"

#define CA_DAYS     3650
#define SERVER_DAYS 825 /* the longest validity Apple clients accept */
#define RENEW_DAYS  30  /* re-issue when less than this is left */

struct certs_ctx {
    const char *dir;
    char *err;
    size_t errlen;
};

static int cfail(struct certs_ctx *c, int code, const char *fmt, ...)
{
    va_list ap;

    if (c->err != NULL && c->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    return r ? r : "unknown OpenSSL error";
}

static int path_join(struct certs_ctx *c, char *out, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", c->dir, name);

    if (n < 0 || n >= PATH_MAX)
        return cfail(c, -ENAMETOOLONG, "%s/%s: path too long", c->dir, name);
    return 0;
}

/* mkdir -p with mode 0700 for every directory it creates. */
static int mkdir_p(struct certs_ctx *c)
{
    char path[PATH_MAX];
    size_t len = strlen(c->dir), i;
    struct stat st;

    if (len == 0 || len >= sizeof(path))
        return cfail(c, BW_EINVAL, "invalid certificate directory '%s'", c->dir);
    memcpy(path, c->dir, len + 1);
    for (i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        path[i] = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return cfail(c, -errno, "mkdir %s: %s", path, strerror(errno));
        path[i] = i < len ? '/' : '\0';
    }
    if (stat(c->dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return cfail(c, -ENOTDIR, "%s: not a directory", c->dir);
    return 0;
}

typedef int (*pem_writer)(FILE *f, void *obj);

static int write_key(FILE *f, void *key)
{
    return PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
}

static int write_cert(FILE *f, void *x)
{
    return PEM_write_X509(f, x);
}

/* Write obj to dir/name through a temporary file and rename(2). */
static int write_atomic(struct certs_ctx *c, const char *name, mode_t mode, pem_writer w, void *obj)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    FILE *f = NULL;
    int fd, r, n;

    if ((r = path_join(c, path, name)) < 0)
        return r;
    n = snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", c->dir, name);
    if (n < 0 || n >= (int)sizeof(tmp))
        return cfail(c, -ENAMETOOLONG, "%s: path too long", path);
    fd = mkstemp(tmp);
    if (fd < 0)
        return cfail(c, -errno, "create %s: %s", tmp, strerror(errno));
    if (fchmod(fd, mode) < 0 || (f = fdopen(fd, "w")) == NULL) {
        r = cfail(c, -errno, "%s: %s", tmp, strerror(errno));
        close(fd);
        goto err;
    }
    if (w(f, obj) != 1) {
        r = cfail(c, BW_EINVAL, "write %s: %s", tmp, ssl_reason());
        fclose(f);
        goto err;
    }
    if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
        r = cfail(c, -errno, "write %s: %s", tmp, strerror(errno));
        fclose(f);
        goto err;
    }
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        r = cfail(c, -errno, "write %s: %s", path, strerror(errno));
        goto err;
    }
    return 0;

err:
    unlink(tmp);
    return r;
}

static X509 *load_cert(struct certs_ctx *c, const char *name)
{
    char path[PATH_MAX];
    X509 *x = NULL;
    FILE *f;

    if (path_join(c, path, name) < 0 || (f = fopen(path, "r")) == NULL)
        return NULL;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *load_key(struct certs_ctx *c, const char *name)
{
    char path[PATH_MAX];
    EVP_PKEY *k = NULL;
    FILE *f;

    if (path_join(c, path, name) < 0 || (f = fopen(path, "r")) == NULL)
        return NULL;
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

/* Days until x expires (negative when expired); INT_MIN when unreadable. */
static int days_left(const X509 *x)
{
    int days = 0, secs = 0;

    if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)))
        return INT_MIN;
    return days;
}

static int san_has_dns(const GENERAL_NAMES *gens, const char *name)
{
    int i;

    for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const unsigned char *s;

        if (g->type != GEN_DNS)
            continue;
        s = ASN1_STRING_get0_data(g->d.dNSName);
        if ((size_t)ASN1_STRING_length(g->d.dNSName) == strlen(name) &&
            strncasecmp((const char *)s, name, strlen(name)) == 0)
            return 1;
    }
    return 0;
}

/* 1 when every name is in x's subjectAltName, literally ("*.a" needs "*.a"). */
static int covers(X509 *x, const char *const *names)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int ok = gens != NULL;

    for (; ok && *names != NULL; names++) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(*names);

        if (ip != NULL)
            ok = X509_check_ip(x, ASN1_STRING_get0_data(ip), ASN1_STRING_length(ip), 0) == 1;
        else
            ok = san_has_dns(gens, *names);
        ASN1_OCTET_STRING_free(ip);
    }
    GENERAL_NAMES_free(gens);
    ERR_clear_error(); /* a2i_IPADDRESS queues an error for every DNS name */
    return ok;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return 0;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* Build the SAN list as objects, not a config string: names may contain
 * the config syntax's separators. */
static int add_sans(X509 *x, const char *const *names)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int ok = gens != NULL;

    for (; ok && *names != NULL; names++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(*names);
        ASN1_IA5STRING *dns = NULL;

        if (g != NULL && ip != NULL) {
            GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
            ip = NULL;
        } else if (g != NULL && (dns = ASN1_IA5STRING_new()) != NULL &&
                   ASN1_STRING_set(dns, *names, -1)) {
            GENERAL_NAME_set0_value(g, GEN_DNS, dns);
        } else {
            ASN1_IA5STRING_free(dns);
            GENERAL_NAME_free(g);
            g = NULL;
        }
        ASN1_OCTET_STRING_free(ip);
        ok = g != NULL && sk_GENERAL_NAME_push(gens, g) > 0;
        if (!ok)
            GENERAL_NAME_free(g);
    }
    ERR_clear_error();
    ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(gens);
    return ok;
}

static int set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn != NULL && BN_rand(bn, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;

    BN_free(bn);
    return ok;
}

static int set_name(X509 *x, const char *cn)
{
    X509_NAME *n = X509_get_subject_name(x);

    return X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"burrow dev",
                                      -1, -1, 0) &&
           X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
}

/* Fields shared by the CA and the server certificate. */
static int cert_base(X509 *x, EVP_PKEY *key, const char *cn, long days)
{
    return X509_set_version(x, 2) && set_serial(x) && set_name(x, cn) &&
           X509_gmtime_adj(X509_getm_notBefore(x), -3600) && /* tolerate clock skew */
           X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L) && X509_set_pubkey(x, key);
}

/* Returns a new self-signed CA certificate for key, or NULL. */
static X509 *make_ca(EVP_PKEY *key)
{
    unsigned char rnd[4];
    char cn[64];
    X509 *x = X509_new();

    if (x == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto err;
    /* A unique name keeps two dev CAs apart in a trust store. */
    snprintf(cn, sizeof(cn), "burrow dev CA %02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    if (!cert_base(x, key, cn, CA_DAYS) || !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
        !add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        !add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(x, x, NID_subject_key_identifier, "hash") ||
        !add_ext(x, x, NID_authority_key_identifier, "keyid:always") ||
        !X509_sign(x, key, EVP_sha256()))
        goto err;
    return x;

err:
    X509_free(x);
    return NULL;
}

/* Returns a new server certificate for key signed by the CA, or NULL. */
static X509 *make_server(EVP_PKEY *key, X509 *ca, EVP_PKEY *ca_key, const char *const *names)
{
    X509 *x = X509_new();
    const char *cn = strlen(names[0]) <= 64 ? names[0] : "burrow dev server";

    if (x == NULL || !cert_base(x, key, cn, SERVER_DAYS) ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca)) ||
        !add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(x, ca, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(x, ca, NID_ext_key_usage, "serverAuth") ||
        !add_ext(x, ca, NID_subject_key_identifier, "hash") ||
        !add_ext(x, ca, NID_authority_key_identifier, "keyid:always") || !add_sans(x, names) ||
        !X509_sign(x, ca_key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int ca_usable(X509 *ca, EVP_PKEY *key)
{
    return ca != NULL && key != NULL && X509_check_private_key(ca, key) == 1 &&
           X509_check_ca(ca) > 0 && days_left(ca) >= SERVER_DAYS / 2;
}

static int server_usable(X509 *x, EVP_PKEY *key, X509 *ca, const char *const *names)
{
    return x != NULL && key != NULL && X509_check_private_key(x, key) == 1 &&
           X509_check_issued(ca, x) == X509_V_OK && X509_verify(x, X509_get0_pubkey(ca)) == 1 &&
           days_left(x) >= RENEW_DAYS && covers(x, names);
}

/* Load the CA, or make and store a new one. Returns 0 with new references in
 * *ca and *key, or < 0. */
static int ensure_ca(struct certs_ctx *c, X509 **ca, EVP_PKEY **key, int *created)
{
    int r;

    *ca = load_cert(c, "ca.pem");
    *key = load_key(c, "ca.key");
    if (ca_usable(*ca, *key)) {
        ERR_clear_error();
        return 0;
    }
    X509_free(*ca);
    EVP_PKEY_free(*key);
    ERR_clear_error();
    *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    *ca = *key ? make_ca(*key) : NULL;
    if (*ca == NULL) {
        r = cfail(c, BW_ENOMEM, "cannot generate the dev CA: %s", ssl_reason());
        goto err;
    }
    if ((r = write_atomic(c, "ca.key", 0600, write_key, *key)) < 0 ||
        (r = write_atomic(c, "ca.pem", 0644, write_cert, *ca)) < 0)
        goto err;
    *created = 1;
    return 0;

err:
    X509_free(*ca);
    EVP_PKEY_free(*key);
    *ca = NULL;
    *key = NULL;
    return r;
}

static int ensure_server(struct certs_ctx *c, X509 *ca, EVP_PKEY *ca_key, const char *base,
                         const char *const *names)
{
    char pem[64], keyf[64];
    snprintf(pem, sizeof pem, "%s.pem", base);
    snprintf(keyf, sizeof keyf, "%s.key", base);
    X509 *x = load_cert(c, pem);
    EVP_PKEY *key = load_key(c, keyf);
    int r = 0;

    if (server_usable(x, key, ca, names))
        goto out;
    X509_free(x);
    EVP_PKEY_free(key);
    ERR_clear_error();
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    x = key ? make_server(key, ca, ca_key, names) : NULL;
    if (x == NULL) {
        r = cfail(c, BW_ENOMEM, "cannot generate the dev server certificate: %s", ssl_reason());
        goto out;
    }
    /* Key first: a reader between the renames sees a mismatch, which the
     * next call repairs, never a certificate without its key. */
    if ((r = write_atomic(c, keyf, 0600, write_key, key)) < 0)
        goto out;
    r = write_atomic(c, pem, 0644, write_cert, x);

out:
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(key);
    return r;
}

/* Returns 0 with new references to dir's dev CA (made when missing or
 * unusable), or < 0 with a message in err. */
int bw_tls_dev_ca(const char *dir, X509 **ca, EVP_PKEY **key, char *err, size_t errlen)
{
    struct certs_ctx c = {.dir = dir, .err = err, .errlen = errlen};
    int made = 0, r;

    *ca = NULL;
    *key = NULL;
    if (dir == NULL)
        return cfail(&c, BW_EINVAL, "the dev CA needs a directory");
    if ((r = mkdir_p(&c)) < 0)
        return r;
    return ensure_ca(&c, ca, key, &made);
}

/* Returns 0 with a new leaf certificate and its new key, kept in memory
 * only, or BW_ENOMEM. */
int bw_tls_dev_issue(X509 *ca, EVP_PKEY *ca_key, const char *const *names, X509 **cert,
                     EVP_PKEY **key)
{
    *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    *cert = *key ? make_server(*key, ca, ca_key, names) : NULL;
    if (*cert == NULL) {
        EVP_PKEY_free(*key);
        *key = NULL;
        return BW_ENOMEM;
    }
    return 0;
}

/* Returns 0 once dir holds a usable CA and server certificate for names, or
 * < 0 with a message in err. *created (may be NULL) is 1 when the CA is new. */
int bw_tls_dev_certs(const char *dir, const char *const *names, int *created, char *err,
                     size_t errlen)
{
    return bw_tls_dev_cert(dir, "server", names, created, err, errlen);
}

/* As bw_tls_dev_certs, for the certificate <base>.pem/<base>.key. */
int bw_tls_dev_cert(const char *dir, const char *base, const char *const *names, int *created,
                    char *err, size_t errlen)
{
    struct certs_ctx c = {.dir = dir, .err = err, .errlen = errlen};
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    int made = 0, r;

    if (created != NULL)
        *created = 0;
    if (dir == NULL || names == NULL || names[0] == NULL)
        return cfail(&c, BW_EINVAL, "dev certificates need a directory and at least one name");
    if ((r = mkdir_p(&c)) < 0)
        return r;
    if ((r = ensure_ca(&c, &ca, &ca_key, &made)) < 0)
        return r;
    r = ensure_server(&c, ca, ca_key, base, names);
    if (created != NULL)
        *created = made;
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return r;
}
