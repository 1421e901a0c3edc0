/* The host table as plugins see it: which table a plugin of each ABI minor
 * gets, and what its slots promise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <uv.h>

#include "host.h"
#include "log.h"
#include "stream.h"

/* Write to a stream whose peer never reads until the host says pause;
 * returns that code. */
static int write_until_pause(const bw_host_t *h)
{
    int fds[2];
    static char chunk[64 * 1024];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    bw_stream_t *s = bw_stream_pipe_open(fds[0], "test");
    assert_non_null(s);
    int rc = 0;
    for (size_t sent = 0; rc == 0 && sent < 64u * 1024u * 1024u; sent += sizeof chunk)
        rc = h->stream_write(s, chunk, sizeof chunk);
    h->stream_close(s, 1);
    close(fds[1]);
    uv_run(bw_stream_loop(), UV_RUN_NOWAIT);
    return rc;
}

static void stream_write_pause_code_follows_plugin_minor(void **state)
{
    assert_ptr_equal(bw_host_table_for(BW_PLUGIN_ABI_MINOR), bw_host_table());
    /* 1.2: accepted-but-pause is a positive success code. */
    assert_int_equal(write_until_pause(bw_host_table_for(2)), BW_PAUSE);
    /* Built for 1.0 or 1.1: the code those versions defined. */
    assert_int_equal(write_until_pause(bw_host_table_for(1)), BW_EAGAIN);
    assert_int_equal(write_until_pause(bw_host_table_for(0)), BW_EAGAIN);
}

static void tables_differ_only_in_stream_write(void **state)
{
    bw_host_t a = *bw_host_table_for(2), b = *bw_host_table_for(1);
    assert_ptr_not_equal(a.stream_write, b.stream_write);
    a.stream_write = b.stream_write = NULL;
    assert_memory_equal(&a, &b, sizeof a);
}

int main(void)
{
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_CRIT);
    bw_stream_loop_init(uv_default_loop());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stream_write_pause_code_follows_plugin_minor),
        cmocka_unit_test(tables_differ_only_in_stream_write),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bw_stream_loop_done();
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    return rc;
}
