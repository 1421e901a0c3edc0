/* The control-protocol codec: length-prefixed JSON frames, message
 * validation and builders. docs/protocol.md is the specification; this file
 * only decides bytes and shapes, never session policy (what a peer does with
 * a valid message is link.c's business). */
#include "control.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <burrow/error.h>

/* len_have takes this value once the reader failed; no real frame state can
 * reach it, so a later feed can refuse instead of resynchronising on bytes
 * that are no longer frame-aligned. */
#define READER_FAILED ((size_t)-1)

#define LEN_BYTES  4
#define ID_HEX_LEN 32

static const char *const type_names[] = {
    [BW_MSG_UNKNOWN] = "unknown",
    [BW_MSG_AUTH] = "Auth",
    [BW_MSG_AUTH_RESP] = "AuthResp",
    [BW_MSG_BIND] = "Bind",
    [BW_MSG_BIND_RESP] = "BindResp",
    [BW_MSG_UNBIND] = "Unbind",
    [BW_MSG_UNBIND_RESP] = "UnbindResp",
    [BW_MSG_NOTICE] = "Notice",
    [BW_MSG_CONN] = "Conn",
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- frame reader ---------------------------------------------------- */

/* The protocol never allows more than BW_PROTO_MAX_MSG, so a larger limit
 * is clamped: a reader must not accept what a conforming peer cannot send. */
void bw_frame_reader_init(bw_frame_reader_t *r, size_t max)
{
    memset(r, 0, sizeof *r);
    r->max = (max == 0 || max > BW_PROTO_MAX_MSG) ? BW_PROTO_MAX_MSG : max;
}

void bw_frame_reader_free(bw_frame_reader_t *r)
{
    if (!r)
        return;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    r->body_have = 0;
    if (r->len_have != READER_FAILED)
        r->len_have = 0;
}

static ssize_t reader_fail(bw_frame_reader_t *r, ssize_t rc)
{
    bw_frame_reader_free(r);
    r->len_have = READER_FAILED;
    return rc;
}

/* Validate the declared length before allocating anything for it, so a
 * peer cannot make us reserve memory by announcing a huge frame. */
static ssize_t reader_start_body(bw_frame_reader_t *r, char *err, size_t errlen)
{
    uint32_t n = (uint32_t)r->len_buf[0] << 24 | (uint32_t)r->len_buf[1] << 16 |
                 (uint32_t)r->len_buf[2] << 8 | (uint32_t)r->len_buf[3];

    if (n == 0 || n > r->max) {
        set_err(err, errlen, "frame length %lu is out of range (1..%zu)", (unsigned long)n, r->max);
        return reader_fail(r, BW_EMSGSIZE);
    }
    r->body = malloc(n);
    if (!r->body) {
        set_err(err, errlen, "out of memory for a %lu-byte frame", (unsigned long)n);
        return reader_fail(r, BW_ENOMEM);
    }
    r->body_len = n;
    r->body_have = 0;
    return 0;
}

/* Parse a complete body. Returns 0 with a new reference in *msg, or
 * BW_EPROTO. jansson checks UTF-8 (and rejects \u0000 and lone surrogates)
 * itself; duplicates are refused so two readers can never disagree about
 * which value of a member counts. */
static int parse_body(const uint8_t *body, size_t len, json_t **msg, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *v = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (!v) {
        set_err(err, errlen, "invalid JSON at byte %d: %s", jerr.position, jerr.text);
        return BW_EPROTO;
    }
    if (!json_is_object(v)) {
        set_err(err, errlen, "message is not a JSON object");
        goto fail;
    }
    if (!json_is_string(json_object_get(v, "type"))) {
        set_err(err, errlen, "message: member \"type\" %s",
                json_object_get(v, "type") ? "must be a string" : "is missing");
        goto fail;
    }
    *msg = v;
    return 0;
fail:
    json_decref(v);
    return BW_EPROTO;
}

static ssize_t reader_finish(bw_frame_reader_t *r, size_t used, json_t **msg, char *err,
                             size_t errlen)
{
    int rc = parse_body(r->body, r->body_len, msg, err, errlen);

    if (rc < 0)
        return reader_fail(r, rc);
    bw_frame_reader_free(r); /* ready for the next frame */
    return (ssize_t)used;
}

ssize_t bw_frame_reader_feed(bw_frame_reader_t *r, const uint8_t *data, size_t len, json_t **msg,
                             char *err, size_t errlen)
{
    size_t used = 0;

    *msg = NULL;
    if (r->len_have == READER_FAILED) {
        set_err(err, errlen, "frame reader already failed");
        return BW_EPROTO;
    }
    while (r->len_have < LEN_BYTES && used < len)
        r->len_buf[r->len_have++] = data[used++];
    if (r->len_have < LEN_BYTES)
        return (ssize_t)used;
    if (!r->body) {
        ssize_t rc = reader_start_body(r, err, errlen);
        if (rc < 0)
            return rc;
    }
    size_t take = r->body_len - r->body_have;
    if (take > len - used)
        take = len - used;
    if (take > 0)
        memcpy(r->body + r->body_have, data + used, take);
    r->body_have += take;
    used += take;
    if (r->body_have < r->body_len)
        return (ssize_t)used;
    return reader_finish(r, used, msg, err, errlen);
}

/* ---- encoder --------------------------------------------------------- */

/* Only objects with a string "type" are encoded: anything else would be a
 * frame our own reader rejects, i.e. a bug on our side, not the peer's. */
int bw_frame_encode(const json_t *msg, uint8_t **out, size_t *outlen)
{
    const size_t flags = JSON_COMPACT;
    uint8_t *buf;
    size_t n;

    *out = NULL;
    *outlen = 0;
    if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "type")))
        return BW_EINVAL;
    n = json_dumpb(msg, NULL, 0, flags);
    if (n == 0)
        return BW_EINVAL;
    if (n > BW_PROTO_MAX_MSG)
        return BW_EMSGSIZE;
    buf = malloc(LEN_BYTES + n);
    if (!buf)
        return BW_ENOMEM;
    if (json_dumpb(msg, (char *)buf + LEN_BYTES, n, flags) != n) {
        free(buf);
        return BW_ENOMEM; /* the only way a second identical dump can differ */
    }
    buf[0] = (uint8_t)(n >> 24);
    buf[1] = (uint8_t)(n >> 16);
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    *out = buf;
    *outlen = LEN_BYTES + n;
    return 0;
}

/* ---- message types --------------------------------------------------- */

bw_msg_type_t bw_msg_type(const json_t *msg)
{
    const char *t = json_string_value(json_object_get(msg, "type"));

    if (!t)
        return BW_MSG_UNKNOWN;
    for (size_t i = BW_MSG_AUTH; i < sizeof type_names / sizeof type_names[0]; i++)
        if (strcmp(t, type_names[i]) == 0)
            return (bw_msg_type_t)i;
    return BW_MSG_UNKNOWN;
}

/* Returns a static name ("Auth", ...), "unknown" for anything else. */
const char *bw_msg_type_name(bw_msg_type_t t)
{
    if ((size_t)t >= sizeof type_names / sizeof type_names[0])
        return type_names[BW_MSG_UNKNOWN];
    return type_names[t];
}

/* Returns the member's string, or "" when absent or not a string; the
 * pointer is borrowed from msg. */
const char *bw_msg_str(const json_t *msg, const char *key)
{
    const char *s = json_string_value(json_object_get(msg, key));

    return s ? s : "";
}

/* ---- validation ------------------------------------------------------ */

enum member_kind {
    M_STR,      /* any string */
    M_NONEMPTY, /* non-empty string */
    M_ID,       /* "" or 32 lowercase hex characters */
    M_EDGE,     /* one of edge_types */
    M_LEVEL,    /* one of levels */
};

struct member_rule {
    const char *key;
    enum member_kind kind;
    int optional; /* absent means "" */
};

#define MAX_RULES 8

static const char *const edge_types[] = {"tcp", "http", "https", "tls", NULL};
static const char *const levels[] = {"info", "warn", "error", NULL};

static const struct member_rule rules[][MAX_RULES] = {
    [BW_MSG_AUTH] = {{"version", M_STR, 0}, {"token", M_STR, 0}, {"client_id", M_ID, 0}},
    [BW_MSG_AUTH_RESP] = {{"client_id", M_STR, 0}, {"version", M_STR, 0}, {"error", M_STR, 0}},
    [BW_MSG_BIND] = {{"req_id", M_NONEMPTY, 0},
                     {"proto", M_NONEMPTY, 0},
                     {"edge_type", M_EDGE, 0},
                     {"name", M_STR, 1},
                     {"subdomain", M_STR, 1},
                     {"hostname", M_STR, 1},
                     {"remote_addr", M_STR, 1}},
    [BW_MSG_BIND_RESP] = {{"req_id", M_STR, 0},
                          {"tunnel_id", M_STR, 0},
                          {"url", M_STR, 0},
                          {"error", M_STR, 0}},
    [BW_MSG_UNBIND] = {{"tunnel_id", M_NONEMPTY, 0}},
    [BW_MSG_UNBIND_RESP] = {{"tunnel_id", M_STR, 0}, {"error", M_STR, 0}},
    [BW_MSG_NOTICE] = {{"level", M_LEVEL, 0}, {"msg", M_STR, 0}},
    [BW_MSG_CONN] = {{"tunnel_id", M_NONEMPTY, 0},
                     {"client_addr", M_STR, 0},
                     {"edge_type", M_EDGE, 0},
                     {"server_name", M_STR, 1},
                     {"server_addr", M_STR, 1}},
};

static int in_set(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return 1;
    return 0;
}

static int is_id(const char *s, size_t len)
{
    if (len == 0)
        return 1;
    if (len != ID_HEX_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Returns NULL when the string satisfies the kind, else the problem. */
static const char *check_kind(enum member_kind kind, const char *s, size_t len)
{
    switch (kind) {
    case M_STR:
        return NULL;
    case M_NONEMPTY:
        return len ? NULL : "must not be empty";
    case M_ID:
        return is_id(s, len) ? NULL : "must be empty or 32 lowercase hex characters";
    case M_EDGE:
        return in_set(s, edge_types) ? NULL : "must be one of tcp, http, https, tls";
    case M_LEVEL:
        return in_set(s, levels) ? NULL : "must be one of info, warn, error";
    }
    return "has an unknown rule";
}

static const char *check_member(const json_t *msg, const struct member_rule *rule)
{
    const json_t *v = json_object_get(msg, rule->key);
    const char *s;
    size_t len;

    if (!v)
        return rule->optional ? NULL : "is missing";
    if (!json_is_string(v))
        return "must be a string";
    s = json_string_value(v);
    len = json_string_length(v);
    /* Only a locally built message can hold a NUL (the reader refuses
     * \u0000); C consumers would silently see a shorter string. */
    if (strlen(s) != len)
        return "must not contain NUL";
    if (len > BW_PROTO_MAX_STR)
        return "is longer than 4096 bytes";
    if (rule->optional && len == 0)
        return NULL;
    return check_kind(rule->kind, s, len);
}

int bw_msg_validate(const json_t *msg, char *err, size_t errlen)
{
    const json_t *type = json_object_get(msg, "type");
    bw_msg_type_t t;

    if (!json_is_object(msg)) {
        set_err(err, errlen, "message is not a JSON object");
        return BW_EPROTO;
    }
    if (!json_is_string(type)) {
        set_err(err, errlen, "message: member \"type\" %s",
                type ? "must be a string" : "is missing");
        return BW_EPROTO;
    }
    t = bw_msg_type(msg);
    if (t == BW_MSG_UNKNOWN)
        return 0; /* forward compatibility: the caller ignores it */
    for (const struct member_rule *rule = rules[t]; rule < rules[t] + MAX_RULES && rule->key;
         rule++) {
        const char *problem = check_member(msg, rule);
        if (problem) {
            set_err(err, errlen, "%s: member \"%s\" %s", type_names[t], rule->key, problem);
            return BW_EPROTO;
        }
    }
    return 0;
}

/* ---- builders -------------------------------------------------------- */

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

/* json_pack refuses invalid UTF-8, so the builders also return NULL for a
 * non-UTF-8 argument, not only on allocation failure. */
json_t *bw_msg_auth(const char *token, const char *client_id, const char *version)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "type", "Auth", "version", or_empty(version), "token",
                     or_empty(token), "client_id", or_empty(client_id));
}

json_t *bw_msg_auth_resp(const char *client_id, const char *version, const char *error)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "type", "AuthResp", "client_id", or_empty(client_id),
                     "version", or_empty(version), "error", or_empty(error));
}

json_t *bw_msg_bind(const char *req_id, const char *proto, const char *edge_type, const char *name,
                    const char *subdomain, const char *hostname, const char *remote_addr)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type", "Bind", "req_id",
                     or_empty(req_id), "proto", or_empty(proto), "edge_type", or_empty(edge_type),
                     "name", or_empty(name), "subdomain", or_empty(subdomain), "hostname",
                     or_empty(hostname), "remote_addr", or_empty(remote_addr));
}

json_t *bw_msg_bind_resp(const char *req_id, const char *tunnel_id, const char *url,
                         const char *error)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "BindResp", "req_id", or_empty(req_id),
                     "tunnel_id", or_empty(tunnel_id), "url", or_empty(url), "error",
                     or_empty(error));
}

json_t *bw_msg_unbind(const char *tunnel_id)
{
    return json_pack("{s:s, s:s}", "type", "Unbind", "tunnel_id", or_empty(tunnel_id));
}

json_t *bw_msg_unbind_resp(const char *tunnel_id, const char *error)
{
    return json_pack("{s:s, s:s, s:s}", "type", "UnbindResp", "tunnel_id", or_empty(tunnel_id),
                     "error", or_empty(error));
}

json_t *bw_msg_notice(const char *level, const char *text)
{
    return json_pack("{s:s, s:s, s:s}", "type", "Notice", "level", or_empty(level), "msg",
                     or_empty(text));
}

json_t *bw_msg_conn(const char *tunnel_id, const char *client_addr, const char *edge_type,
                    const char *server_name, const char *server_addr)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "Conn", "tunnel_id",
                     or_empty(tunnel_id), "client_addr", or_empty(client_addr), "edge_type",
                     or_empty(edge_type), "server_name", or_empty(server_name), "server_addr",
                     or_empty(server_addr));
}

int bw_frame_reader_each(bw_frame_reader_t *r, const uint8_t *data, size_t len,
                         int (*on_msg)(void *ud, const json_t *msg), void *ud, char *err,
                         size_t errlen)
{
    size_t off = 0;
    while (off < len) {
        json_t *m = NULL;
        ssize_t used = bw_frame_reader_feed(r, data + off, len - off, &m, err, errlen);
        if (used < 0)
            return (int)used;
        off += (size_t)used;
        if (m) {
            int stop = on_msg(ud, m);
            json_decref(m);
            if (stop)
                break;
        }
    }
    return 0;
}
