/* The host table as plugins see it: which table a plugin of each ABI minor
 * gets, and what its slots promise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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
    bw_stream_t *s = bw_stream_pipe_open(bw_host_io(), fds[0], "test");
    assert_non_null(s);
    int rc = 0;
    for (size_t sent = 0; rc == 0 && sent < 64u * 1024u * 1024u; sent += sizeof chunk)
        rc = h->stream_write(s, chunk, sizeof chunk);
    h->stream_close(s, 1);
    close(fds[1]);
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
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

/* ---- work_queue: a fake plugin's tunnel and counted callbacks ---- */

typedef struct job {
    int ran, done, status;
    uv_thread_t thread; /* where work ran */
    uv_sem_t *started;  /* when set, work posts it first */
    uv_sem_t *gate;     /* when set, work waits for it */
} job_t;

static int stop_queue_rc;

static int t_start(void *state, bw_tunnel_t *t, void **tstate, bw_error_t *err)
{
    *tstate = t;
    return 0;
}

static void job_work(void *ud)
{
    job_t *j = ud;
    if (j->started)
        uv_sem_post(j->started);
    if (j->gate)
        uv_sem_wait(j->gate);
    j->thread = uv_thread_self();
    j->ran++;
}

static void job_done(void *ud, int status)
{
    job_t *j = ud;
    j->done++;
    j->status = status;
}

/* The tunnel is stopping here; the contract says a new request is refused. */
static void t_stop(void *tstate)
{
    static job_t late;
    stop_queue_rc = bw_host_table()->work_queue(tstate, job_work, job_done, &late);
}

static const bw_loaded_plugin_t fake_plugin = {
    .desc = {.name = "fake", .tunnel_start = t_start, .tunnel_stop = t_stop},
};

static bw_tunnel_t *fake_tunnel(void)
{
    char err[128];
    bw_conf_t conf = {0};
    bw_tunnel_t *t = bw_tunnel_new("w", "localhost:1", &fake_plugin, &conf);
    assert_non_null(t);
    assert_int_equal(bw_tunnel_start(t, err, sizeof err), 0);
    return t;
}

static void work_runs_off_loop_and_calls_back_once(void **state)
{
    const bw_host_t *h = bw_host_table();
    assert_true(BW_HOST_HAS(h, work_queue));
    bw_tunnel_t *t = fake_tunnel();
    job_t jobs[8] = {{0}};
    uv_thread_t loop_thread = uv_thread_self();
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(h->work_queue(t, job_work, job_done, &jobs[i]), 0);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(jobs[i].done, 0); /* never inside the call */
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(jobs[i].ran, 1);
        assert_int_equal(jobs[i].done, 1);
        assert_int_equal(jobs[i].status, 0);
        assert_false(uv_thread_equal(&jobs[i].thread, &loop_thread));
    }
    /* A refused request never calls back. */
    assert_int_equal(h->work_queue(t, NULL, job_done, &jobs[0]), BW_EINVAL);
    assert_int_equal(h->work_queue(t, job_work, NULL, &jobs[0]), BW_EINVAL);
    bw_tunnel_free(t);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    assert_int_equal(jobs[0].done, 1);
}

/* The pool has one thread (main): a gated request holds it, so the ones
 * behind it are still queued when the tunnel stops. */
static void stopping_tunnel_cancels_queued_work(void **state)
{
    const bw_host_t *h = bw_host_table();
    bw_tunnel_t *t = fake_tunnel();
    uv_sem_t started, gate;
    assert_int_equal(uv_sem_init(&started, 0), 0);
    assert_int_equal(uv_sem_init(&gate, 0), 0);
    job_t running = {.started = &started, .gate = &gate}, queued[3] = {{0}};
    assert_int_equal(h->work_queue(t, job_work, job_done, &running), 0);
    uv_sem_wait(&started); /* a thread holds it: too late to cancel */
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(h->work_queue(t, job_work, job_done, &queued[i]), 0);
    stop_queue_rc = 0;
    bw_tunnel_free(t); /* the record stays until the last callback */
    assert_int_equal(stop_queue_rc, BW_ECANCELED);
    uv_sem_post(&gate);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    /* The running one could not be stopped: it finished and says so. */
    assert_int_equal(running.ran, 1);
    assert_int_equal(running.done, 1);
    assert_int_equal(running.status, 0);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(queued[i].ran, 0);
        assert_int_equal(queued[i].done, 1);
        assert_int_equal(queued[i].status, BW_ECANCELED);
    }
    uv_sem_destroy(&started);
    uv_sem_destroy(&gate);
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
    /* One pool thread, so a gated request can hold the queue behind it. */
    setenv("UV_THREADPOOL_SIZE", "1", 1);
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_CRIT);
    bw_io_t *io = bw_io_new(uv_default_loop());
    if (!io)
        return 1;
    bw_host_set_io(io);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stream_write_pause_code_follows_plugin_minor),
        cmocka_unit_test(tables_differ_only_in_stream_write),
        cmocka_unit_test(work_runs_off_loop_and_calls_back_once),
        cmocka_unit_test(stopping_tunnel_cancels_queued_work),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bw_host_set_io(NULL);
    bw_io_free(io);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    return rc;
}
