/* Drives one public connection of the http plugin (plugins/http/conn.c)
 * through a fake host with a script read from the input: client bytes,
 * local-service bytes, connect outcomes, EOFs, errors and backpressure, in
 * any order the host could produce them (reads only while reading is on, no
 * callbacks after close or error). The fake host aborts on any call on a
 * closed stream; ASan/LSan catch the rest at the end of each input.
 *
 * Input: byte 0 = option flags, then ops of (op, len[, len bytes]). */
#include <stddef.h>
#include <stdint.h>

#include "http_fake_host.h"

const bw_plugin_t *bw_plugin_entry(void);

static int open_for_read(const bw_stream_t *s, int eof_sent, int dead)
{
    return s->cbs && !s->closed && s->reading && !eof_sent && !dead;
}

static void reset(void)
{
    h1_buf_free(&g_pub.written);
    h1_buf_free(&g_up.written);
    for (int i = 0; i < 3; i++)
        h1_buf_free(&g_cap.raw[i]);
    memset(&g_pub, 0, sizeof g_pub);
    memset(&g_up, 0, sizeof g_up);
    memset(&g_cap, 0, sizeof g_cap);
    g_connect_cb = NULL;
}

static void finish_connect(int status)
{
    bw_connect_cb cb = g_connect_cb;
    g_connect_cb = NULL;
    if (status == 0) {
        h1_buf_free(&g_up.written);
        memset(&g_up, 0, sizeof g_up);
        cb(g_connect_ud, &g_up, 0);
    } else {
        cb(g_connect_ud, NULL, status);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void *state, *tstate;
    if (size < 1)
        return 0;
    reset();
    g_auth = data[0] & 1 ? "u:p" : NULL;
    g_host_header = data[0] & 2 ? "rewrite" : NULL;
    g_inspect = !(data[0] & 4);
    g_addr = data[0] & 8 ? "file:///nonexistent-burrow-fuzz-root" : "http://localhost:8080";
    const bw_plugin_t *P = bw_plugin_entry();
    if (P->init(&fake_host, &state, NULL) < 0 ||
        P->tunnel_start(state, &g_tunnel, &tstate, NULL) < 0)
        abort();
    bw_conn_info_t info = {.struct_size = sizeof info,
                           .client_addr = "127.0.0.1:1",
                           .client_ip = "127.0.0.1",
                           .edge_type = BW_EDGE_HTTP,
                           .server_name = "h"};
    P->conn_open(tstate, &g_pub, &info);
    int pub_eof = 0, up_eof = 0, up_dead = 0;
    for (size_t i = 1; i + 1 < size;) {
        uint8_t op = data[i] % 9;
        size_t len = data[i + 1];
        i += 2;
        if (len > size - i)
            len = size - i;
        switch (op) {
        case 0:
            if (open_for_read(&g_pub, pub_eof, 0) && len)
                g_pub.cbs->on_read(&g_pub, g_pub.ud, data + i, len);
            i += len;
            break;
        case 1:
            if (open_for_read(&g_up, up_eof, up_dead) && len)
                g_up.cbs->on_read(&g_up, g_up.ud, data + i, len);
            i += len;
            break;
        case 2:
        case 3:
            if (g_connect_cb) {
                up_eof = up_dead = 0;
                finish_connect(op == 2 ? 0 : BW_ECONNREFUSED);
            }
            break;
        case 4:
            if (open_for_read(&g_pub, pub_eof, 0)) {
                pub_eof = 1;
                g_pub.cbs->on_eof(&g_pub, g_pub.ud);
            }
            break;
        case 5:
            if (open_for_read(&g_up, up_eof, up_dead)) {
                up_eof = 1;
                g_up.cbs->on_eof(&g_up, g_up.ud);
            }
            break;
        case 6:
            g_pub.paused = !g_pub.paused;
            if (!g_pub.paused && g_pub.cbs && !g_pub.closed)
                g_pub.cbs->on_drain(&g_pub, g_pub.ud);
            break;
        case 7:
            g_up.paused = !g_up.paused;
            if (!g_up.paused && g_up.cbs && !g_up.closed && !up_dead)
                g_up.cbs->on_drain(&g_up, g_up.ud);
            break;
        default:
            if (g_up.cbs && !g_up.closed && !up_dead) {
                up_dead = 1;
                g_up.cbs->on_error(&g_up, g_up.ud, BW_ECONNRESET);
            }
            break;
        }
    }
    if (g_pub.cbs && !g_pub.closed)
        g_pub.cbs->on_error(&g_pub, g_pub.ud, BW_ECONNRESET);
    if (g_connect_cb)
        finish_connect(BW_ECANCELED);
    P->tunnel_stop(tstate);
    P->destroy(state);
    reset();
    return 0;
}
