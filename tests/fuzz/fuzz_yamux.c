/* Fuzz target: arbitrary bytes into a server-side yamux engine.
 *
 * The first byte picks how the input is split into bw_mux_input calls, so
 * frames straddle reads; 0xff instead says the input is compact bulk (see
 * MAX_INPUT). The application reacts to the stream data: by
 * default it echoes and consumes; a payload starting with one of the command
 * letters below makes it close, reset, half-close, flood, open a stream,
 * ping or go away from inside the callback, which exercises reentrancy. The
 * transport alternates between full and empty to drive the pending buffers.
 * The engine must never crash, and bw_mux_free must leave nothing behind. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "yamux.h"

/* Inputs are capped at MAX_INPUT: every frame is a 12-byte header and a
 * payload, and 2 KiB holds a SYN for each of the 32 streams allowed (384
 * bytes) with data, commands and control frames to spare. The paths that
 * need bulk (a full 256 KiB window, window updates after each half of it,
 * growth of the window after 256 KiB, capped at max_window: 384 KiB here)
 * are reached by compact inputs instead: first byte 0xff, a 16-bit repeat
 * count k, a 16-bit head length h, then h bytes fed once and the rest (the
 * tail) fed k times; k is at most MAX_REPEAT (each read costs callbacks and
 * frames, whatever its size) and the bytes fed at most MAX_BULK. Raw inputs
 * of 256 KiB held the target to ~1.5k execs/s. */
#define MAX_INPUT  2048
#define MAX_BULK   (320u << 10)
#define MAX_REPEAT 256

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

static const bw_mux_callbacks_t fz_cbs = {fz_send,    fz_queued,     fz_on_stream,
                                          fz_on_pong, fz_on_go_away, fz_now};

/* Small limits so the input reaches them; made once. */
static const bw_mux_config_t *config(void)
{
    static bw_mux_config_t cfg;
    static int done;
    if (!done) {
        bw_mux_config_default(&cfg, 0);
        cfg.max_streams = 32;
        cfg.max_window = 384u << 10;
        cfg.stream_hwm = 4096;
        cfg.transport_hwm = 16384;
        cfg.max_frame = 1024;
        done = 1;
    }
    return &cfg;
}

/* Feed data in reads of `step` bytes; returns < 0 once the engine failed. */
static int feed(fuzz_t *f, const uint8_t *data, size_t size, size_t step)
{
    while (size > 0) {
        size_t n = step < size ? step : size;
        if (bw_mux_input(f->m, data, n) < 0)
            return -1;
        data += n;
        size -= n;
        /* the transport drains every other read */
        if (f->sends & 1) {
            f->queued = 0;
            bw_mux_transport_drained(f->m);
        }
    }
    return 0;
}

/* k (16 bits), h (16 bits), head[h] fed once, then the tail k times. */
static void feed_bulk(fuzz_t *f, const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    size_t k = (size_t)data[0] << 8 | data[1], h = (size_t)data[2] << 8 | data[3];
    data += 4;
    size -= 4;
    if (h > size)
        h = size;
    size_t tail = size - h;
    if (feed(f, data, h, h ? h : 1) < 0 || tail == 0)
        return;
    if (k > MAX_REPEAT)
        k = MAX_REPEAT;
    if (k > MAX_BULK / tail)
        k = MAX_BULK / tail;
    for (size_t i = 0; i < k; i++)
        if (feed(f, data + h, tail, tail) < 0)
            return;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT)
        return 0;
    fuzz_t f = {0};
    f.m = bw_mux_new(config(), &fz_cbs, &f);
    if (!f.m)
        return 0;
    if (data[0] == 0xff)
        feed_bulk(&f, data + 1, size - 1);
    else
        feed(&f, data + 1, size - 1, data[0] ? data[0] : size);
    bw_mux_free(f.m);
    return 0;
}
