/* Responses the plugin writes itself: the 400/401/403/431 pages, the 502
 * page of spec §4.4, and what the file server sends. Each is captured like a
 * response of the local service. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_int.h"

void bw__http_capture_local_head(http_conn_t *c, const char *head, size_t len)
{
    if (!c->cap)
        return;
    h1_t p;
    h1_ev_t ev;
    h1_init(&p, H1_RESPONSE);
    p.skip_body = 1;
    h1_feed(&p, head, len, &ev);
    if (ev == H1_EV_HEAD) {
        bw_http_head_t v;
        h1_capture_view(&p.head, &v);
        H->capture_head(c->cap, BW_CAPTURE_RESPONSE, &v);
    }
    h1_free(&p);
}

void bw__http_local_done(http_conn_t *c)
{
    c->sstate = S_DONE;
    bw__http_finish_exchange(c);
}

void bw__http_local_reply(http_conn_t *c, int status, const char *extra, const char *ctype,
                          const void *body, size_t len, int close_now)
{
    h1_buf_t out = {0};
    c->mode = X_LOCAL;
    /* A client that asked for 100-continue may never send the body we
     * would have to skip: end the connection instead of waiting for it. */
    if (c->rstate == R_BODY && !(c->req.done_pending && !c->req.in_head) &&
        h1_find(&c->req.head, "Expect", 0) >= 0)
        close_now = 1;
    if (close_now)
        c->close_after = 1;
    if (h1_response(&out, status, NULL, ctype, extra, body, len, c->close_after) == 0) {
        if (c->is_head)
            out.len -= len; /* HEAD: the same head (Content-Length included), no body */
        bw__http_capture_local_head(c, out.data, out.len);
        if (c->cap)
            H->capture_raw(c->cap, BW_CAPTURE_RESPONSE, out.data, out.len);
        bw__http_pub_write(c, out.data, out.len);
    }
    h1_buf_free(&out);
    c->sstate = S_DONE;
    if (close_now) {
        bw__http_end_capture(c, c->rstate == R_BODY ? BW_ECONNRESET : 0);
        bw__http_conn_close(c, 0);
    }
}

void bw__http_reply_page(http_conn_t *c, int status, const char *title, const char *text,
                         const char *extra, int close_now)
{
    h1_buf_t b = {0};
    h1_buf_addf(&b, "<!DOCTYPE html>\n<html>\n<head><title>%d %s</title></head>\n<body>\n<h2>",
                status, h1_reason(status));
    h1_html_escape(&b, title);
    h1_buf_adds(&b, "</h2>\n<p>");
    h1_html_escape(&b, text);
    h1_buf_adds(&b, "</p>\n</body>\n</html>\n");
    bw__http_local_reply(c, status, extra, "text/html; charset=utf-8", b.data, b.len, close_now);
    h1_buf_free(&b);
}

/* The §4.4 page: the local service could not be reached. */
void bw__http_reply_502(http_conn_t *c, const char *error)
{
    const char *url = c->tt->t ? H->tunnel_public_url(c->tt->t) : "";
    h1_buf_t b = {0};
    h1_buf_adds(&b, "<!DOCTYPE html>\n<html>\n<head><title>Failed to complete tunnel "
                    "connection</title></head>\n<body>\n<h2>Failed to complete tunnel "
                    "connection</h2>\n<p>The connection to <a href=\"");
    h1_html_escape(&b, url);
    h1_buf_adds(&b, "\">");
    h1_html_escape(&b, url);
    h1_buf_adds(&b, "</a> was successfully tunneled to your burrow client, but the client "
                    "failed to establish a connection to the local address ");
    h1_html_escape(&b, c->tt->shown_addr);
    h1_buf_adds(&b, ".</p>\n<p>Make sure that a web service is running on ");
    h1_html_escape(&b, c->tt->shown_addr);
    h1_buf_adds(&b, " and that it is a valid address.</p>\n<p>The error encountered was: <strong>");
    h1_html_escape(&b, error);
    h1_buf_adds(&b, "</strong></p>\n</body>\n</html>\n");
    c->close_after = 1;
    bw__http_local_reply(c, 502, NULL, "text/html; charset=utf-8", b.data, b.len, 0);
    h1_buf_free(&b);
    bw__http_finish_exchange(c);
}
