/* The work_queue slot of the host table (ABI 1.2): a plugin's blocking
 * function on libuv's thread pool, its completion back on the loop thread.
 *
 * Each request is listed on its tunnel so that stopping the tunnel cancels
 * the ones no thread has picked up yet; the tunnel record outlives its last
 * request (tunnel_release waits for pending_works, as for connects). */
#include <stdlib.h>

#include <uv.h>

#include "host.h"
#include "stream.h"
#include "util.h"

struct bw_host_work {
    uv_work_t req;
    bw_tunnel_t *t;
    bw_work_fn work;
    bw_work_done_cb done;
    void *ud;
    struct bw_host_work *prev, *next; /* the tunnel's list */
};

static void work_run(uv_work_t *req)
{
    bw_host_work_t *w = BW_CONTAINER_OF(req, bw_host_work_t, req);
    w->work(w->ud);
}

static void work_unlink(bw_host_work_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        w->t->works = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

/* Loop thread: libuv calls this once per request, with UV_ECANCELED when
 * uv_cancel took it off the queue before a thread ran it. */
static void work_after(uv_work_t *req, int status)
{
    bw_host_work_t *w = BW_CONTAINER_OF(req, bw_host_work_t, req);
    bw_tunnel_t *t = w->t;
    work_unlink(w);
    t->pending_works--;
    w->done(w->ud, status == UV_ECANCELED ? BW_ECANCELED : 0);
    free(w);
    if (t->stopping)
        bw__tunnel_release(t);
}

int bw__host_work_queue(bw_tunnel_t *t, bw_work_fn work, bw_work_done_cb done, void *ud)
{
    if (!t || !work || !done)
        return BW_EINVAL;
    if (t->stopping)
        return BW_ECANCELED;
    bw_host_work_t *w = calloc(1, sizeof *w);
    if (!w)
        return BW_ENOMEM;
    w->t = t;
    w->work = work;
    w->done = done;
    w->ud = ud;
    int rc = uv_queue_work(bw_io_loop(bw_host_io()), &w->req, work_run, work_after);
    if (rc < 0) {
        free(w);
        return rc;
    }
    w->next = t->works;
    if (w->next)
        w->next->prev = w;
    t->works = w;
    t->pending_works++;
    return 0;
}

void bw__host_work_cancel_all(bw_tunnel_t *t)
{
    /* uv_cancel fails (harmlessly) for a request a thread already runs: it
     * completes with status 0 and the plugin releases what it produced. */
    for (bw_host_work_t *w = t->works; w; w = w->next)
        uv_cancel((uv_req_t *)&w->req);
}
