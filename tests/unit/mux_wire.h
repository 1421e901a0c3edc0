/* Two yamux engines wired back to back in memory, for the tests of what
 * runs over yamux streams (test_stream, test_tls_filter): each engine's
 * frames wait on a wire until pump hands them to the other. Include
 * after cmocka.h. */
#ifndef BW_TESTS_MUX_WIRE_H
#define BW_TESTS_MUX_WIRE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "yamux.h"

typedef struct wire {
    bw_mux_t *peer; /* the engine that reads this wire */
    uint8_t *buf;
    size_t len, cap;
} wire_t;

/* bw_mux_callbacks_t.send: keep the frames for the peer. */
static int wire_send(void *ud, const void *const *bufs, const size_t *lens, unsigned n)
{
    wire_t *w = ud;
    for (unsigned i = 0; i < n; i++) {
        if (w->len + lens[i] > w->cap) {
            w->cap = (w->len + lens[i]) * 2;
            w->buf = realloc(w->buf, w->cap);
            assert_non_null(w->buf);
        }
        memcpy(w->buf + w->len, bufs[i], lens[i]);
        w->len += lens[i];
    }
    return 0;
}

/* bw_mux_callbacks_t.send_queued: a wire never pushes back. */
static size_t wire_queued(void *ud)
{
    return 0;
}

/* Deliver what both wires hold, and what that makes the engines send,
 * until both are empty. */
static void pump(wire_t *a, wire_t *b)
{
    while (a->len || b->len) {
        wire_t *w = a->len ? a : b;
        uint8_t *data = w->buf;
        size_t len = w->len;
        w->buf = NULL;
        w->len = w->cap = 0;
        assert_int_equal(bw_mux_input(w->peer, data, len), 0);
        free(data);
    }
}

/* A client engine and a server engine on two wires. */
typedef struct wire_pair {
    wire_t to_srv, to_cli;
    bw_mux_t *cli, *srv;
} wire_pair_t;

/* Start both engines; the server's streams go to on_stream. */
static void wire_pair_open(wire_pair_t *p, void (*on_stream)(void *ud, bw_mux_stream_t *s))
{
    bw_mux_config_t cc, sc;
    bw_mux_config_default(&cc, 1);
    bw_mux_config_default(&sc, 0);
    bw_mux_callbacks_t ccb = {.send = wire_send, .send_queued = wire_queued};
    bw_mux_callbacks_t scb = {
        .send = wire_send, .send_queued = wire_queued, .on_stream = on_stream};
    memset(p, 0, sizeof *p);
    p->cli = bw_mux_new(&cc, &ccb, &p->to_srv);
    p->srv = bw_mux_new(&sc, &scb, &p->to_cli);
    assert_non_null(p->cli);
    assert_non_null(p->srv);
    p->to_srv.peer = p->srv;
    p->to_cli.peer = p->cli;
}

/* Prove no stream is left, then free the engines and the wires. */
static void wire_pair_free(wire_pair_t *p)
{
    assert_int_equal(bw_mux_stream_count(p->srv), 0);
    assert_int_equal(bw_mux_stream_count(p->cli), 0);
    bw_mux_free(p->cli);
    bw_mux_free(p->srv);
    free(p->to_srv.buf);
    free(p->to_cli.buf);
}

#endif /* BW_TESTS_MUX_WIRE_H */
