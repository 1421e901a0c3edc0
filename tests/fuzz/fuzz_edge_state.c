/* Feeds arbitrary bytes as the edge's reservations file through its parser
 * (edge/edge_state_parse.c) and loads the names into a hostname registry as
 * burrowd does at start (edge/edge_state.c). Checks what the parser
 * promises of every entry it reports (edge_state_parse.h), that no port is
 * reported twice, that the counts add up, and that the names it accepted
 * are then held in the registry. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edge_state_parse.h"
#include "hostnames.h"

/* Inputs are capped: each entry is parsed on its own and the longest
 * meaningful one (a 253-byte name, ids and a hash) is well under 1 KiB, so
 * 64 KiB holds every shape of file, with room for many entries. */
#define MAX_INPUT 65536
#define GRACE_MS  60000
#define NOW_MS    1796550000000ull

typedef struct run {
    bw_hosts_t *hosts;
    size_t calls, names;
    uint8_t ports[65536 / 8]; /* reported so far: a port is held once */
} run_t;

static void check(const bw_edge_hold_t *h)
{
    size_t cid = strlen(h->client_id);
    if (cid < 1 || cid > 32 || strlen(h->token_sha256) != 64 ||
        strspn(h->token_sha256, "0123456789abcdef") != 64 || h->left_ms < 1 ||
        h->left_ms > GRACE_MS)
        abort();
    if (h->host) {
        char low[BW_HOSTNAME_MAX + 1], why[96];
        if (h->port != 0 || bw_hostname_check(h->host, low, why, sizeof why) != 0 ||
            strcmp(low, h->host) != 0 || (h->scheme < 0 || h->scheme >= BW_SCHEMES))
            abort();
    } else if (h->port < 1 || h->port > 65535) {
        abort();
    }
}

static int on_hold(void *arg, const bw_edge_hold_t *h)
{
    run_t *r = arg;
    check(h);
    r->calls++;
    if (!h->host) {
        if (r->ports[h->port / 8] & (1u << (h->port % 8)))
            abort();
        r->ports[h->port / 8] |= (uint8_t)(1u << (h->port % 8));
        return r->calls % 7 == 0; /* a refusal counts as malformed */
    }
    int rc = bw_hosts_hold(r->hosts, h->host, h->scheme, h->client_id, h->token_sha256,
                           NOW_MS + h->left_ms);
    r->names += rc == 0;
    return rc;
}

static void count_name(void *arg, const char *host, int scheme, const char *client,
                       const char *token, int live, uint64_t expires)
{
    (void)host;
    (void)scheme;
    (void)client;
    (void)token;
    if (live || expires <= NOW_MS || expires > NOW_MS + GRACE_MS)
        abort();
    (*(size_t *)arg)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static run_t r;
    size_t ok, bad, held = 0;
    char why[256] = "";
    if (size > MAX_INPUT)
        return 0;
    memset(&r, 0, sizeof r);
    if (!(r.hosts = bw_hosts_new()))
        return 0;
    int rc = bw_edge_state_parse((const char *)data, size, NOW_MS, GRACE_MS, on_hold, &r, &ok, &bad,
                                 why, sizeof why);
    if (rc != 0 ? (!why[0] || r.calls || ok || bad) : (ok > r.calls))
        abort();
    bw_hosts_each(r.hosts, NOW_MS, count_name, &held);
    if (held != r.names)
        abort();
    bw_hosts_free(r.hosts);
    return 0;
}
