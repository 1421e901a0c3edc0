/* The public listeners' acceptor (edge/accept.c) on a real loop and a real
 * listening socket on 127.0.0.1. Descriptors are handed out lowest first,
 * so holding one more descriptor moves the next accepted connection past
 * fd_max: that is how a test runs the acceptor out of descriptors and
 * gives them back.
 *
 * Every wait runs the loop until a condition holds, bounded by a deadline
 * that fails the test naming the condition; the test ends with
 * uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "accept.h"

#define DEADLINE_MS 30000

typedef struct fixture {
    uv_loop_t loop;
    bw_acceptor_t *a;
    int kept;
    struct sockaddr_in addr;
} fixture_t;

static void on_conn(bw_acceptor_t *a, void *ud)
{
    fixture_t *fx = ud;
    uv_tcp_t *h = malloc(sizeof *h);
    assert_non_null(h);
    uv_tcp_init(&fx->loop, h);
    assert_int_equal(bw_acceptor_take(a, h), 0);
    fx->kept++;
    uv_close((uv_handle_t *)h, (uv_close_cb)free);
}

/* A listening, non-blocking socket on 127.0.0.1, port chosen by the kernel. */
static int listen_socket(struct sockaddr_in *addr)
{
    socklen_t len = sizeof *addr;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    uv_ip4_addr("127.0.0.1", 0, addr);
    assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof *addr), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    return fd;
}

/* The peer closed `c` (EOF): the acceptor refused it. */
static int refused(int c)
{
    char b;
    return recv(c, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static void run_until_refused(fixture_t *fx, int c, const char *what)
{
    uint64_t end = uv_hrtime() / 1000000 + DEADLINE_MS;
    while (!refused(c) && uv_hrtime() / 1000000 < end)
        uv_run(&fx->loop, UV_RUN_ONCE);
    if (!refused(c))
        fail_msg("no refusal within %d ms: %s", DEADLINE_MS, what);
}

static void run_until_kept(fixture_t *fx, int n, const char *what)
{
    uint64_t end = uv_hrtime() / 1000000 + DEADLINE_MS;
    while (fx->kept < n && uv_hrtime() / 1000000 < end)
        uv_run(&fx->loop, UV_RUN_ONCE);
    if (fx->kept < n)
        fail_msg("not accepted within %d ms: %s", DEADLINE_MS, what);
}

static int client(void)
{
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    return c;
}

static void connect_to(const fixture_t *fx, int c)
{
    assert_int_equal(connect(c, (const struct sockaddr *)&fx->addr, sizeof fx->addr), 0);
}

/* Out of descriptors, the acceptor refuses and pauses 50 ms, then 100 ms,
 * 200 ms; the first connection kept again resets the backoff. */
static void pauses_double_and_reset(void **state)
{
    fixture_t fx = {0};
    int c[4];
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    int lfd = listen_socket(&fx.addr);
    for (int i = 0; i < 4; i++)
        c[i] = client();
    /* The next descriptor is `next`: a connection accepted onto it stays,
     * one accepted past it (while `block` holds it) is refused. */
    int next = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(next >= 0);
    close(next);
    fx.a = bw_acceptor_new(&fx.loop, lfd, "test", (unsigned)next + 1, on_conn, &fx);
    assert_non_null(fx.a);
    int block = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_int_equal(block, next);

    uint64_t t0 = uv_now(&fx.loop);
    connect_to(&fx, c[0]);
    run_until_refused(&fx, c[0], "first connection, descriptors taken");
    assert_int_equal(bw_acceptor_pause_ms(fx.a), BW_ACCEPT_PAUSE_MIN_MS);
    connect_to(&fx, c[1]); /* waits in the backlog for the pause to end */
    run_until_refused(&fx, c[1], "second connection");
    assert_int_equal(bw_acceptor_pause_ms(fx.a), 2 * BW_ACCEPT_PAUSE_MIN_MS);
    assert_true(uv_now(&fx.loop) - t0 >= BW_ACCEPT_PAUSE_MIN_MS);
    connect_to(&fx, c[2]);
    run_until_refused(&fx, c[2], "third connection");
    assert_int_equal(bw_acceptor_pause_ms(fx.a), 4 * BW_ACCEPT_PAUSE_MIN_MS);
    assert_true(uv_now(&fx.loop) - t0 >= 3 * BW_ACCEPT_PAUSE_MIN_MS);
    assert_int_equal(fx.kept, 0);

    close(block); /* a descriptor is free again */
    connect_to(&fx, c[3]);
    run_until_kept(&fx, 1, "a connection once a descriptor is free");
    assert_int_equal(bw_acceptor_pause_ms(fx.a), 0);

    bw_acceptor_close(fx.a);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx.loop), 0);
    for (int i = 0; i < 4; i++)
        close(c[i]);
}

static void ignore(bw_acceptor_t *a, void *ud)
{
    (*(int *)ud)++;
}

/* A connection the callback does not take is closed, not leaked. */
static void untaken_connection_closed(void **state)
{
    fixture_t fx = {0};
    int calls = 0;
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    int lfd = listen_socket(&fx.addr);
    int c = client();
    fx.a = bw_acceptor_new(&fx.loop, lfd, "test", 0, ignore, &calls);
    assert_non_null(fx.a);
    connect_to(&fx, c);
    run_until_refused(&fx, c, "the connection nobody took");
    assert_int_equal(calls, 1);
    assert_int_equal(bw_acceptor_pause_ms(fx.a), 0);
    bw_acceptor_close(fx.a);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx.loop), 0);
    close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pauses_double_and_reset),
        cmocka_unit_test(untaken_connection_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
