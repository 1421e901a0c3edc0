/* bw_stream_join: forward two streams into each other with backpressure
 * and half-close (see stream.h). */
#include "stream.h"
#include "stream_impl.h"

#include <stdlib.h>

typedef struct join join_t;

typedef struct join_side {
    join_t *j;
    int idx;
} join_side_t;

struct join {
    bw_stream_t *s[2];
    join_side_t side[2];
    uint64_t bytes[2]; /* bytes read from s[i] */
    int eof[2];        /* s[i] sent EOF, forwarded as shutdown */
    bw_join_cb cb;
    void *ud;
};

static void join_finish(join_t *j, int err)
{
    bw_stream_close(j->s[0], err != 0);
    bw_stream_close(j->s[1], err != 0);
    if (j->cb)
        j->cb(j->ud, err, j->bytes[0], j->bytes[1]);
    free(j);
}

static void join_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    join_side_t *side = ud;
    join_t *j = side->j;
    j->bytes[side->idx] += len;
    int rc = bw_stream_write(j->s[!side->idx], data, len);
    if (rc == BW_EAGAIN)
        bw_stream_read_stop(s);
    else if (rc < 0)
        join_finish(j, rc);
}

static void join_eof(bw_stream_t *s, void *ud)
{
    join_side_t *side = ud;
    join_t *j = side->j;
    j->eof[side->idx] = 1;
    if (j->eof[!side->idx]) {
        join_finish(j, 0);
        return;
    }
    int rc = bw_stream_shutdown(j->s[!side->idx]);
    if (rc < 0)
        join_finish(j, rc);
}

static void join_drain(bw_stream_t *s, void *ud)
{
    join_side_t *side = ud;
    join_t *j = side->j;
    /* s can take more: resume the stream that feeds it. */
    if (!j->eof[!side->idx])
        bw_stream_read_start(j->s[!side->idx]);
}

static void join_error(bw_stream_t *s, void *ud, int err)
{
    join_side_t *side = ud;
    join_finish(side->j, err);
}

static const bw_stream_cbs_t join_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = join_read,
    .on_eof = join_eof,
    .on_drain = join_drain,
    .on_error = join_error,
};

int bw_stream_join(bw_stream_t *a, bw_stream_t *b, bw_join_cb cb, void *ud)
{
    join_t *j = calloc(1, sizeof *j);
    if (!j) {
        bw_stream_close(a, 1);
        bw_stream_close(b, 1);
        return BW_ENOMEM;
    }
    j->s[0] = a;
    j->s[1] = b;
    j->cb = cb;
    j->ud = ud;
    for (int i = 0; i < 2; i++) {
        j->side[i].j = j;
        j->side[i].idx = i;
        bw_stream_set_callbacks(j->s[i], &join_cbs, &j->side[i]);
    }
    /* A stream that failed before the join still reports through err_held
     * (delivered on a later turn), so no special case is needed here. */
    return 0;
}
