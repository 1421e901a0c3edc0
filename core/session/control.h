/* The control protocol spoken between agent and edge over yamux streams.
 *
 * Every message is one frame: a 4-byte big-endian length N (1..BW_PROTO_MAX_MSG)
 * followed by N bytes of UTF-8 JSON, an object whose "type" member names it.
 * The agent's first stream is the control stream (Auth, Bind, Unbind and
 * their responses, Notice); every stream the edge opens starts with one Conn
 * frame and then carries raw bytes. docs/protocol.md is the full
 * specification.
 */
#ifndef BW_SESSION_CONTROL_H
#define BW_SESSION_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define BW_PROTO_MAX_MSG        65536 /* largest JSON body of a frame */
#define BW_PROTO_MAX_STR        4096  /* largest string member (tokens, names, urls) */
#define BW_PROTO_MAJOR          0     /* major of Auth.version this code speaks (§9) */
#define BW_PROTO_CONTROL_STREAM 1     /* yamux id of the control stream (§1) */

typedef enum bw_msg_type {
    BW_MSG_UNKNOWN = 0, /* a well-formed frame of a type we do not know: ignore it */
    BW_MSG_AUTH,
    BW_MSG_AUTH_RESP,
    BW_MSG_BIND,
    BW_MSG_BIND_RESP,
    BW_MSG_UNBIND,
    BW_MSG_UNBIND_RESP,
    BW_MSG_NOTICE,
    BW_MSG_CONN
} bw_msg_type_t;

/* Incremental frame decoder: survives frames split at any byte. */
typedef struct bw_frame_reader {
    uint8_t len_buf[4];
    size_t len_have;
    uint8_t *body;
    size_t body_len;
    size_t body_have;
    size_t max;
} bw_frame_reader_t;

/* Init with a body size limit (0 means BW_PROTO_MAX_MSG). */
void bw_frame_reader_init(bw_frame_reader_t *r, size_t max);
/* Release buffers. Safe to call twice. */
void bw_frame_reader_free(bw_frame_reader_t *r);

/* Feed bytes. Returns how many bytes of `data` were used (it stops right
 * after the first complete frame, so the rest may be raw stream bytes), and
 * sets *msg to a new JSON reference (caller json_decref()s it) when a frame
 * completed, else NULL. Returns BW_EMSGSIZE (zero or oversized length) or
 * BW_EPROTO (not UTF-8 JSON, not an object, "type" missing or not a string)
 * with a message in err[errlen]; the reader is then unusable. */
ssize_t bw_frame_reader_feed(bw_frame_reader_t *r, const uint8_t *data, size_t len, json_t **msg,
                             char *err, size_t errlen);

/* Feed `len` bytes holding only whole or partial frames (a control stream)
 * and call on_msg(ud, msg) for each complete one; `msg` is borrowed for the
 * call. on_msg returns 0 to go on, non-zero to stop (e.g. the session
 * ended). Returns 0, or the reader's error code with err[errlen] set. */
int bw_frame_reader_each(bw_frame_reader_t *r, const uint8_t *data, size_t len,
                         int (*on_msg)(void *ud, const json_t *msg), void *ud, char *err,
                         size_t errlen);

/* Encode `msg` compactly as one frame. Returns 0 and a new malloc()ed buffer
 * in *out (caller frees), or BW_EMSGSIZE / BW_ENOMEM. */
int bw_frame_encode(const json_t *msg, uint8_t **out, size_t *outlen);

/* The type of a decoded message. */
bw_msg_type_t bw_msg_type(const json_t *msg);
const char *bw_msg_type_name(bw_msg_type_t t);

/* Check a message's members for its type: required members present with the
 * right JSON type, strings at most BW_PROTO_MAX_STR bytes, enumerations in
 * range. Returns 0, or BW_EPROTO with err naming the member and the problem,
 * e.g. `Bind: member "proto" must be a string`. Unknown members are allowed. */
int bw_msg_validate(const json_t *msg, char *err, size_t errlen);

/* Read a string member, "" when absent (valid after bw_msg_validate). */
const char *bw_msg_str(const json_t *msg, const char *key);

/* Builders: each returns a new reference, or NULL on allocation failure.
 * String arguments may be NULL, meaning "". */
json_t *bw_msg_auth(const char *token, const char *client_id, const char *version);
json_t *bw_msg_auth_resp(const char *client_id, const char *version, const char *error);
json_t *bw_msg_bind(const char *req_id, const char *proto, const char *edge_type, const char *name,
                    const char *subdomain, const char *hostname, const char *remote_addr);
json_t *bw_msg_bind_resp(const char *req_id, const char *tunnel_id, const char *url,
                         const char *error);
json_t *bw_msg_unbind(const char *tunnel_id);
json_t *bw_msg_unbind_resp(const char *tunnel_id, const char *error);
json_t *bw_msg_notice(const char *level, const char *text);
/* server_addr: the edge's own address of the public connection ("ip:port"),
 * or NULL/"" when unknown; an optional member old agents ignore. */
json_t *bw_msg_conn(const char *tunnel_id, const char *client_addr, const char *edge_type,
                    const char *server_name, const char *server_addr);

#endif /* BW_SESSION_CONTROL_H */
