/* The web inspector's routes; the page itself is core/api/web/inspect.html,
 * embedded at build time. */
#include "inspect_ui.h"

#include "util.h"

extern const unsigned char bw_inspect_html[];
extern const size_t bw_inspect_html_len;

/* Replay and Clear Requests are one click away on the page: no other site
 * may frame it and steer a click onto them (old browsers read the first
 * header, current ones the second). */
#define NO_FRAMING "X-Frame-Options: DENY\r\nContent-Security-Policy: frame-ancestors 'none'\r\n"

static void redirect(bw_httpd_req_t *req, void *ud)
{
    (void)ud;
    static const char body[] = "<a href=\"/inspect/http\">Found</a>.\n";
    bw_httpd_respond(req, 302, "text/html; charset=utf-8", body, sizeof body - 1,
                     "Location: /inspect/http\r\n" NO_FRAMING);
}

static void page(bw_httpd_req_t *req, void *ud)
{
    (void)ud;
    bw_httpd_respond(req, 200, "text/html; charset=utf-8", (const char *)bw_inspect_html,
                     bw_inspect_html_len, "Cache-Control: no-cache\r\n" NO_FRAMING);
}

int bw_inspect_ui_register(bw_httpd_t *h)
{
    static const struct {
        const char *pattern;
        bw_httpd_handler_fn fn;
    } routes[] = {
        {"/", redirect},
        {"/inspect/http", page},
        {"/status", page},
    };
    for (size_t i = 0; i < BW_ARRAY_SIZE(routes); i++) {
        int rc =
            bw_httpd_route(h, "GET", routes[i].pattern, BW_HTTPD_ANY_ACCEPT, routes[i].fn, NULL);
        if (rc < 0)
            return rc;
    }
    return 0;
}
