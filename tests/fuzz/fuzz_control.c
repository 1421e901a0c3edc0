/* Fuzz target for the control-protocol codec (core/session/control.c).
 *
 * Input layout: the first two bytes seed the chunk sizes, the rest is a byte
 * stream fed through one bw_frame_reader in pieces of pseudo-random size, so
 * the same frames are explored under many split patterns. Every decoded
 * message is validated, its members read, and re-encoded; the re-encoding
 * must decode back to an equal message. Any violated invariant aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <burrow/error.h>

#include "control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const members[] = {
    "type",      "version", "token",     "client_id", "req_id",      "proto",
    "edge_type", "name",    "subdomain", "hostname",  "remote_addr", "tunnel_id",
    "url",       "error",   "level",     "msg",       "client_addr", "server_name",
};

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_control: invariant failed at line %d: %s\n", __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* xorshift32: deterministic per input, so crashes reproduce. */
static uint32_t next_rand(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* Mostly small pieces (splits inside the length prefix and body), sometimes
 * all that is left (a frame and its trailing bytes in one feed). */
static size_t chunk_size(uint32_t *s, size_t left)
{
    uint32_t r = next_rand(s);
    size_t n;

    switch (r & 3) {
    case 0:
        n = 1;
        break;
    case 1:
        n = 1 + (r >> 8) % 7;
        break;
    case 2:
        n = 1 + (r >> 8) % 300;
        break;
    default:
        n = left;
        break;
    }
    return n < left ? n : left;
}

/* Re-encode and decode in one feed: must round-trip exactly. */
static void check_reencode(const json_t *msg)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    bw_frame_reader_t r;
    json_t *back = NULL;
    char err[256];
    int rc = bw_frame_encode(msg, &buf, &len);

    /* compact output can still be longer than the input (1e5 → 100000.0) */
    if (rc == BW_EMSGSIZE || rc == BW_ENOMEM)
        return;
    CHECK(rc == 0);
    CHECK(len > 4 && len <= 4 + BW_PROTO_MAX_MSG);
    bw_frame_reader_init(&r, 0);
    CHECK(bw_frame_reader_feed(&r, buf, len, &back, err, sizeof err) == (ssize_t)len);
    CHECK(back != NULL);
    CHECK(json_equal((json_t *)msg, back));
    CHECK(bw_msg_type(back) == bw_msg_type(msg));
    json_decref(back);
    bw_frame_reader_free(&r);
    free(buf);
}

static void check_message(json_t *msg)
{
    char err[256] = "";
    bw_msg_type_t t = bw_msg_type(msg);
    int rc;

    CHECK(json_is_object(msg));
    CHECK(json_is_string(json_object_get(msg, "type")));
    CHECK(bw_msg_type_name(t) != NULL);
    rc = bw_msg_validate(msg, err, sizeof err);
    CHECK(rc == 0 || rc == BW_EPROTO);
    CHECK(rc == 0 || err[0] != '\0');
    if (t == BW_MSG_UNKNOWN)
        CHECK(rc == 0);
    if (rc == 0)
        for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
            CHECK(bw_msg_str(msg, members[i]) != NULL);
    check_reencode(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t seed = 0x9e3779b9u;
    bw_frame_reader_t r;
    size_t pos;

    if (size >= 2)
        seed ^= (uint32_t)data[0] << 8 | data[1];
    pos = size >= 2 ? 2 : size;
    bw_frame_reader_init(&r, 0);
    while (pos < size) {
        size_t n = chunk_size(&seed, size - pos);
        json_t *msg = NULL;
        char err[256] = "";
        ssize_t used = bw_frame_reader_feed(&r, data + pos, n, &msg, err, sizeof err);

        if (used < 0) {
            CHECK(used == BW_EMSGSIZE || used == BW_EPROTO || used == BW_ENOMEM);
            CHECK(msg == NULL && err[0] != '\0' && memchr(err, '\0', sizeof err));
            /* a failed reader must stay failed */
            CHECK(bw_frame_reader_feed(&r, data + pos, n, &msg, err, sizeof err) < 0);
            break;
        }
        /* progress, no overrun, and it only stops early at a frame end */
        CHECK(used > 0 && (size_t)used <= n);
        CHECK((size_t)used == n || msg != NULL);
        pos += (size_t)used;
        if (msg) {
            check_message(msg);
            json_decref(msg);
        }
    }
    bw_frame_reader_free(&r);
    return 0;
}
