/* Hostname registry of the edge's http/https tunnels. See hostnames.h.
 *
 * A short list: an edge holds as many names as it has http tunnels, and
 * lookups happen once per request head, so a list keeps this simple. */
#include "hostnames.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "burrow/error.h"
#include "util.h"

typedef struct entry {
    char host[BW_HOSTNAME_MAX + 1];
    int scheme;
    const void *sess; /* NULL once only reserved */
    void *tunnel;
    char *client, *token;
    uint64_t expires;
    struct entry *next;
} entry_t;

struct bw_hosts {
    entry_t *head;
    bw_hosts_gone_cb gone;
    void *gone_arg;
};

const char *bw_scheme_name(int scheme)
{
    return scheme == BW_SCHEME_TLS ? "tls" : scheme == BW_SCHEME_HTTPS ? "https" : "http";
}

int bw_hostname_check(const char *in, char *out, char *why, size_t whylen)
{
    size_t n = strlen(in), label = 0;
    if (n == 0 || n > BW_HOSTNAME_MAX) {
        snprintf(why, whylen, "must be 1 to %d characters long", BW_HOSTNAME_MAX);
        return BW_EINVAL;
    }
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '.' || c == '\0') {
            if (label == 0) {
                snprintf(why, whylen, "empty label");
                return BW_EINVAL;
            }
            label = 0;
        } else if (isalnum(c) || c == '-') {
            if (++label > 63) {
                snprintf(why, whylen, "a label is longer than 63 characters");
                return BW_EINVAL;
            }
        } else {
            snprintf(why, whylen, "only letters, digits, hyphens and dots are allowed");
            return BW_EINVAL;
        }
        out[i] = (char)tolower(c);
    }
    return 0;
}

bw_hosts_t *bw_hosts_new(void)
{
    return calloc(1, sizeof(bw_hosts_t));
}

static void entry_free(entry_t *e)
{
    free(e->client);
    free(e->token);
    free(e);
}

void bw_hosts_on_gone(bw_hosts_t *h, bw_hosts_gone_cb cb, void *arg)
{
    h->gone = cb;
    h->gone_arg = arg;
}

/* Unlinked already: tell the owner, then free. */
static void drop(bw_hosts_t *h, entry_t *e)
{
    if (h->gone)
        h->gone(h->gone_arg, e->host, e->scheme);
    entry_free(e);
}

void bw_hosts_free(bw_hosts_t *h)
{
    if (!h)
        return;
    while (h->head) {
        entry_t *e = h->head;
        h->head = e->next;
        entry_free(e);
    }
    free(h);
}

static void expire(bw_hosts_t *h, uint64_t now)
{
    for (entry_t **ep = &h->head; *ep;) {
        entry_t *e = *ep;
        if (!e->sess && e->expires <= now) {
            *ep = e->next;
            drop(h, e);
        } else {
            ep = &e->next;
        }
    }
}

static int same_client(const entry_t *e, const char *client, const char *token)
{
    return strcmp(e->client, client) == 0 && strcmp(e->token, token) == 0;
}

int bw_hosts_taken(bw_hosts_t *h, const char *host, const char *client, const char *token,
                   uint64_t now)
{
    expire(h, now);
    for (entry_t *e = h->head; e; e = e->next)
        if (strcmp(e->host, host) == 0 && !same_client(e, client, token))
            return 1;
    return 0;
}

/* A new entry for host/scheme owned by client/token, at the head of the
 * list. NULL on ENOMEM (nothing added). */
static entry_t *entry_push(bw_hosts_t *h, const char *host, int scheme, const char *client,
                           const char *token)
{
    entry_t *e = calloc(1, sizeof *e);
    if (!e || !(e->client = strdup(client)) || !(e->token = strdup(token))) {
        if (e)
            entry_free(e);
        return NULL;
    }
    snprintf(e->host, sizeof e->host, "%s", host);
    e->scheme = scheme;
    e->next = h->head;
    h->head = e;
    return e;
}

/* https and tls share the HTTPS port: one name cannot be both. */
static int clash(int a, int b)
{
    return (a == BW_SCHEME_HTTPS && b == BW_SCHEME_TLS) ||
           (a == BW_SCHEME_TLS && b == BW_SCHEME_HTTPS);
}

/* bw_hosts_claim; *holder is the scheme of the entry that refused it. */
static int claim(bw_hosts_t *h, const char *host, int scheme, const void *sess, const char *client,
                 const char *token, void *tunnel, uint64_t now, int *holder)
{
    expire(h, now);
    for (entry_t **ep = &h->head; *ep;) {
        entry_t *e = *ep;
        if (strcmp(e->host, host) != 0) {
            ep = &e->next;
            continue;
        }
        *holder = e->scheme;
        if (clash(e->scheme, scheme) ||
            (e->sess ? e->sess != sess || e->scheme == scheme : !same_client(e, client, token)))
            return BW_EEXIST;
        if (!e->sess && e->scheme == scheme) { /* our own reservation: take it */
            *ep = e->next;
            drop(h, e);
            continue;
        }
        ep = &e->next;
    }
    entry_t *e = entry_push(h, host, scheme, client, token);
    if (!e)
        return BW_ENOMEM;
    e->sess = sess;
    e->tunnel = tunnel;
    return 0;
}

int bw_hosts_claim(bw_hosts_t *h, const char *host, int scheme, const void *sess,
                   const char *client, const char *token, void *tunnel, uint64_t now)
{
    int holder;
    return claim(h, host, scheme, sess, client, token, tunnel, now, &holder);
}

int bw_hosts_reserved_for(bw_hosts_t *h, const char *client, const char *token, uint64_t now)
{
    expire(h, now);
    for (entry_t *e = h->head; e; e = e->next)
        if (!e->sess && same_client(e, client, token))
            return 1;
    return 0;
}

void bw_hosts_release(bw_hosts_t *h, const void *tunnel)
{
    for (entry_t **ep = &h->head; *ep; ep = &(*ep)->next)
        if ((*ep)->tunnel == tunnel) {
            entry_t *e = *ep;
            *ep = e->next;
            drop(h, e);
            return;
        }
}

void bw_hosts_reserve(bw_hosts_t *h, const void *tunnel, uint64_t expires)
{
    for (entry_t *e = h->head; e; e = e->next)
        if (e->tunnel == tunnel) {
            e->sess = NULL;
            e->tunnel = NULL;
            e->expires = expires;
            return;
        }
}

int bw_hosts_hold(bw_hosts_t *h, const char *host, int scheme, const char *client,
                  const char *token, uint64_t expires)
{
    for (entry_t *e = h->head; e; e = e->next)
        if (strcmp(e->host, host) == 0 && e->scheme == scheme)
            return BW_EEXIST;
    entry_t *e = entry_push(h, host, scheme, client, token);
    if (!e)
        return BW_ENOMEM;
    e->expires = expires;
    return 0;
}

void bw_hosts_each(bw_hosts_t *h, uint64_t now, bw_hosts_each_cb cb, void *arg)
{
    expire(h, now);
    for (entry_t *e = h->head; e; e = e->next)
        cb(arg, e->host, e->scheme, e->client, e->token, e->sess != NULL, e->expires);
}

void *bw_hosts_find(bw_hosts_t *h, const char *host, int scheme, uint64_t now, int *held)
{
    *held = 0;
    expire(h, now);
    for (entry_t *e = h->head; e; e = e->next)
        if (e->scheme == scheme && strcmp(e->host, host) == 0) {
            if (e->sess)
                return e->tunnel;
            *held = 1;
        }
    return NULL;
}

static int random_name(bw_hosts_t *h, const bw_host_req_t *q, char *host)
{
    for (int tries = 0; tries < 16; tries++) {
        uint8_t b[8];
        char hex[17];
        if (bw_random_bytes(b, sizeof b) != 0)
            return BW_EINVAL;
        for (size_t i = 0; i < sizeof b; i++)
            snprintf(hex + 2 * i, 3, "%02x", b[i]);
        snprintf(host, BW_HOSTNAME_MAX + 1, "%s.%s", hex, q->domain);
        if (!bw_hosts_taken(h, host, "", "\n", q->now))
            return 0;
    }
    return BW_EEXIST;
}

/* The name a Bind asks for, checked; "" when it asks for none. */
static int wanted_name(const bw_host_req_t *q, char *host, char *err, size_t errlen)
{
    char why[96], full[2 * BW_HOSTNAME_MAX + 2];
    host[0] = '\0';
    if (*q->subdomain && *q->hostname) {
        snprintf(err, errlen, "both subdomain and hostname given; use one of them");
        return BW_EINVAL;
    }
    if (*q->hostname && bw_hostname_check(q->hostname, host, why, sizeof why) != 0) {
        snprintf(err, errlen, "invalid hostname \"%.253s\": %s", q->hostname, why);
        return BW_EINVAL;
    }
    if (!*q->subdomain)
        return 0;
    snprintf(full, sizeof full, "%s.%s", q->subdomain, q->domain);
    if (strlen(q->subdomain) > 63 || strchr(q->subdomain, '.') ||
        bw_hostname_check(full, host, why, sizeof why) != 0) {
        if (strchr(q->subdomain, '.') || strlen(q->subdomain) > 63)
            snprintf(why, sizeof why, "must be one label of 1 to 63 letters, digits or hyphens");
        snprintf(err, errlen, "invalid subdomain \"%.63s\": %s", q->subdomain, why);
        return BW_EINVAL;
    }
    return 0;
}

int bw_hosts_bind(bw_hosts_t *h, const bw_host_req_t *q, char *host, char *err, size_t errlen)
{
    int rc = wanted_name(q, host, err, errlen);
    if (rc != 0)
        return rc;
    if (!host[0] && (rc = random_name(h, q, host)) != 0) {
        snprintf(err, errlen, "cannot pick a random subdomain");
        return rc;
    }
    int holder = q->scheme;
    rc = claim(h, host, q->scheme, q->sess, q->client, q->token, q->tunnel, q->now, &holder);
    if (rc == BW_EEXIST && clash(holder, q->scheme))
        snprintf(err, errlen,
                 "hostname \"%s\" is already in use by %s tunnel (https and tls tunnels "
                 "share the HTTPS port, so a name is one or the other)",
                 host, holder == BW_SCHEME_TLS ? "a tls" : "an https");
    else if (rc == BW_EEXIST && *q->subdomain)
        snprintf(err, errlen, "subdomain \"%s\" is already in use", q->subdomain);
    else if (rc == BW_EEXIST)
        snprintf(err, errlen, "hostname \"%s\" is already in use", host);
    else if (rc != 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}
