/* burrowd: the reservations file's text to the addresses it holds, with no
 * I/O and no edge (edge_state_parse.h). edge_state.c reads the file and
 * applies the entries; tests/fuzz/fuzz_edge_state.c feeds it directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "burrow/error.h"
#include "edge_state_parse.h"
#include "hostnames.h"

static int is_hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return 0;
    return strspn(s, "0123456789abcdef") == 64;
}

/* A port listed twice is malformed: loading both would leave each owner
 * refused by the other's reservation until the grace ran out (names get
 * the same answer from bw_hosts_hold). The first entry keeps it. */
static int parse_port(bw_edge_hold_t *h, json_t *port, uint8_t *seen)
{
    json_int_t p = json_integer_value(port);
    if (!json_is_integer(port) || p < 1 || p > 65535 || seen[p / 8] & (1u << (p % 8)))
        return BW_EINVAL;
    seen[p / 8] |= (uint8_t)(1u << (p % 8));
    h->port = (int)p;
    return 0;
}

static int parse_name(bw_edge_hold_t *h, json_t *name, char low[BW_HOSTNAME_MAX + 1])
{
    const char *host = json_string_value(json_object_get(name, "host"));
    const char *scheme = json_string_value(json_object_get(name, "scheme"));
    char why[96];
    int sc = 0;
    while (scheme && sc < BW_SCHEMES && strcmp(scheme, bw_scheme_name(sc)) != 0)
        sc++;
    if (!host || sc == BW_SCHEMES || bw_hostname_check(host, low, why, sizeof why) != 0)
        return BW_EINVAL;
    h->host = low;
    h->scheme = sc;
    return 0;
}

/* How long an entry expiring at `exp` stays held from now_ms: 0 when it
 * expired while the edge was down, BW_EINVAL when exp is not a time. */
static int64_t hold_left(json_t *exp, uint64_t now_ms, uint64_t grace_ms)
{
    /* A live tunnel's grace starts now: the edge cannot know when it died. */
    if (json_is_null(exp))
        return (int64_t)grace_ms;
    if (!json_is_integer(exp))
        return BW_EINVAL;
    json_int_t at = json_integer_value(exp);
    if (at <= 0 || (uint64_t)at <= now_ms)
        return 0;
    uint64_t left = (uint64_t)at - now_ms;
    /* a clock set back never extends a hold */
    return (int64_t)(left > grace_ms ? grace_ms : left);
}

/* One entry: 0 (reported through cb, or expired) or BW_EINVAL. */
static int parse_entry(json_t *o, uint64_t now_ms, uint64_t grace_ms, bw_edge_hold_cb cb, void *arg,
                       uint8_t *seen, int *used)
{
    char low[BW_HOSTNAME_MAX + 1];
    bw_edge_hold_t h = {.client_id = json_string_value(json_object_get(o, "client_id")),
                        .token_sha256 = json_string_value(json_object_get(o, "token_sha256"))};
    json_t *port = json_object_get(o, "port"), *name = json_object_get(o, "name");
    if (!json_is_object(o) || !h.client_id || !*h.client_id || strlen(h.client_id) > 32 ||
        !is_hex64(h.token_sha256))
        return BW_EINVAL;
    int64_t left = hold_left(json_object_get(o, "expires"), now_ms, grace_ms);
    if (left < 0)
        return BW_EINVAL;
    int rc = BW_EINVAL;
    if (port)
        rc = parse_port(&h, port, seen);
    else if (json_is_object(name))
        rc = parse_name(&h, name, low);
    if (rc != 0 || left == 0)
        return rc;
    h.left_ms = (uint64_t)left;
    *used = 1;
    return cb(arg, &h) != 0 ? BW_EINVAL : 0;
}

int bw_edge_state_parse(const char *buf, size_t len, uint64_t now_ms, uint64_t grace_ms,
                        bw_edge_hold_cb cb, void *arg, size_t *n_ok, size_t *n_bad, char *why,
                        size_t whylen)
{
    json_error_t jerr;
    *n_ok = *n_bad = 0;
    if (len > BW_EDGE_STATE_MAX) {
        snprintf(why, whylen, "longer than %u bytes", BW_EDGE_STATE_MAX);
        return BW_EINVAL;
    }
    json_t *root = json_loadb(buf, len, 0, &jerr);
    if (!root) {
        snprintf(why, whylen, "line %d: %s", jerr.line, jerr.text);
        return BW_EINVAL;
    }
    json_t *list = json_object_get(root, "reservations");
    if (!json_is_integer(json_object_get(root, "version")) ||
        json_integer_value(json_object_get(root, "version")) != BW_EDGE_STATE_VERSION ||
        !json_is_array(list)) {
        snprintf(why, whylen, "not a version %d reservations file", BW_EDGE_STATE_VERSION);
        json_decref(root);
        return BW_EINVAL;
    }
    uint8_t *seen = calloc(65536 / 8, 1); /* ports listed so far */
    if (!seen) {
        snprintf(why, whylen, "out of memory");
        json_decref(root);
        return BW_ENOMEM;
    }
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        int used = 0;
        int rc = parse_entry(o, now_ms, grace_ms, cb, arg, seen, &used);
        *n_bad += rc != 0;
        *n_ok += rc == 0 && used;
    }
    free(seen);
    json_decref(root);
    return 0;
}
