/* Fuzz target: arbitrary bytes into a server-side yamux engine.
 *
 * The first byte picks how the input is split into bw_mux_input calls, so
 * frames straddle reads. The application reacts to the stream data: by
 * default it echoes and consumes; a payload starting with one of the command
 * letters below makes it close, reset, half-close, flood, open a stream,
 * ping or go away from inside the callback, which exercises reentrancy. The
 * transport alternates between full and empty to drive the pending buffers.
 * The engine must never crash, and bw_mux_free must leave nothing behind. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "yamux.h"

typedef struct fuzz {
    bw_mux_t *m;
    size_t queued;
    uint64_t now;
    unsigned sends;
} fuzz_t;

static uint8_t flood[8192];

static int fz_send(void *ud, const void *const *bufs, const size_t *lens, unsigned n)
{
    fuzz_t *f = ud;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += lens[i];
    f->queued += total;
    f->sends++;
    return 0;
}

static size_t fz_queued(void *ud)
{
    return ((fuzz_t *)ud)->queued;
}

static uint64_t fz_now(void *ud)
{
    fuzz_t *f = ud;
    f->now += 100000;
    return f->now;
}

static void fz_on_data(bw_mux_stream_t *s, void *ud, const uint8_t *d, size_t n);

static void fz_on_eof(bw_mux_stream_t *s, void *ud)
{
    (void)ud;
    /* even ids close on EOF, odd ones answer and half-close */
    if (bw_mux_stream_id(s) & 2)
        bw_mux_stream_close(s);
    else
        bw_mux_stream_shutdown(s);
}

static void fz_on_drain(bw_mux_stream_t *s, void *ud)
{
    (void)ud;
    bw_mux_stream_write(s, "drained", 7);
}

static void fz_on_close(bw_mux_stream_t *s, void *ud, int err)
{
    (void)s;
    (void)ud;
    (void)err;
}

static const bw_mux_stream_cbs_t fz_stream_cbs = {fz_on_data, fz_on_eof, fz_on_drain, fz_on_close};

static void command(fuzz_t *f, bw_mux_stream_t *s, uint8_t c)
{
    bw_mux_stream_t *o;
    switch (c) {
    case 'C':
        bw_mux_stream_close(s);
        break;
    case 'R':
        bw_mux_stream_reset(s);
        break;
    case 'S':
        bw_mux_stream_shutdown(s);
        break;
    case 'W':
        /* a well-behaved producer: stop at the high-water mark */
        if (bw_mux_stream_pending(s) < 4096)
            bw_mux_stream_write(s, flood, sizeof flood);
        break;
    case 'O':
        o = bw_mux_stream_open(f->m);
        if (o) {
            bw_mux_stream_set_callbacks(o, &fz_stream_cbs, f);
            bw_mux_stream_write(o, "x", 1);
        }
        break;
    case 'P':
        bw_mux_ping(f->m);
        break;
    case 'G':
        bw_mux_go_away(f->m, 0);
        break;
    case 'D':
        f->queued = 0;
        bw_mux_transport_drained(f->m);
        break;
    default:
        bw_mux_stream_write(s, &c, 1);
        bw_mux_stream_consumed(s, 1);
    }
}

static void fz_on_data(bw_mux_stream_t *s, void *ud, const uint8_t *d, size_t n)
{
    fuzz_t *f = ud;
    if (n == 0)
        return;
    /* Credit everything first: a command may release the stream. */
    bw_mux_stream_consumed(s, n - 1);
    bw_mux_stream_write(s, d, n > 64 ? 64 : n);
    command(f, s, d[0]);
}

static void fz_on_stream(void *ud, bw_mux_stream_t *s)
{
    fuzz_t *f = ud;
    switch (bw_mux_stream_id(s) % 16) {
    case 3:
        bw_mux_stream_reset(s);
        break;
    case 5:
        bw_mux_stream_close(s);
        break;
    case 7:
        break; /* no callbacks: data is discarded and credited */
    default:
        bw_mux_stream_set_callbacks(s, &fz_stream_cbs, f);
    }
}

static void fz_on_pong(void *ud, uint64_t rtt)
{
    (void)ud;
    (void)rtt;
}

static void fz_on_go_away(void *ud, uint32_t code)
{
    (void)ud;
    (void)code;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_t f = {0};
    bw_mux_config_t cfg;
    bw_mux_config_default(&cfg, 0);
    cfg.max_streams = 32;
    cfg.max_window = 1u << 20;
    cfg.stream_hwm = 4096;
    cfg.transport_hwm = 16384;
    cfg.max_frame = 1024;
    bw_mux_callbacks_t cbs = {fz_send, fz_queued, fz_on_stream, fz_on_pong, fz_on_go_away, fz_now};
    f.m = bw_mux_new(&cfg, &cbs, &f);
    if (!f.m)
        return 0;
    size_t step = data[0] ? data[0] : size;
    data++;
    size--;
    while (size > 0) {
        size_t n = step < size ? step : size;
        if (bw_mux_input(f.m, data, n) < 0)
            break;
        data += n;
        size -= n;
        /* the transport drains every other read */
        if (f.sends & 1) {
            f.queued = 0;
            bw_mux_transport_drained(f.m);
        }
    }
    bw_mux_free(f.m);
    return 0;
}
