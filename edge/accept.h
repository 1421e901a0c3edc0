/* Accepting on a public listener (the http/https listeners and tcp tunnel
 * ports) with a pause when descriptors run out.
 *
 * libuv's own accept (uv__server_io) hides EMFILE: it closes a spare
 * descriptor, accepts and closes every pending connection, and reopens the
 * spare, so the edge can neither count nor pace it; without the spare it
 * calls back with EMFILE in a loop that never returns. And a listening
 * handle cannot be paused. So the edge polls the listening socket itself
 * and accepts with accept4(): when a connection cannot be kept (EMFILE,
 * ENFILE, or a descriptor reaching into the agents' reserve), the pending
 * connections are refused (accepted and closed while that works), polling
 * stops, and a timer resumes it after 50 ms, doubling to 1 s while it
 * keeps failing; one log line per pause with the count. Connections that
 * arrive meanwhile wait in the kernel's backlog, costing nothing. The first
 * connection kept resets the backoff (docs/edge.md, "Descriptors and public
 * connections"). */
#ifndef BW_EDGE_ACCEPT_H
#define BW_EDGE_ACCEPT_H

#include <stdint.h>

#include <uv.h>

#define BW_ACCEPT_PAUSE_MIN_MS 50
#define BW_ACCEPT_PAUSE_MAX_MS 1000

typedef struct bw_acceptor bw_acceptor_t;

/* A connection is pending: take it with bw_acceptor_take (else it is
 * closed when the callback returns). */
typedef void (*bw_accept_cb)(bw_acceptor_t *a, void *ud);

/* Accept on `fd`, a listening, non-blocking socket (owned from now on,
 * closed with the acceptor; also on failure). `name` names the listener in
 * logs ("127.0.0.1:8080"). A connection whose descriptor is `fd_max` or
 * above is refused (0: no bound). Returns a new acceptor, polling, or NULL
 * when out of memory or the loop refuses the socket. */
bw_acceptor_t *bw_acceptor_new(uv_loop_t *loop, int fd, const char *name, unsigned fd_max,
                               bw_accept_cb cb, void *ud);
/* Inside the callback: open the pending connection into `h` (initialised on
 * the acceptor's loop, not yet open). Returns 0 or a negative libuv error
 * (the connection is then closed). */
int bw_acceptor_take(bw_acceptor_t *a, uv_tcp_t *h);
/* The last pause in ms: 0 until one, and again once a connection was
 * kept. */
uint64_t bw_acceptor_pause_ms(const bw_acceptor_t *a);
/* Stop and free (from the loop, once its handles closed); no callback
 * follows. NULL-safe. */
void bw_acceptor_close(bw_acceptor_t *a);

#endif /* BW_EDGE_ACCEPT_H */
