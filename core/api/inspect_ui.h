/* The web inspector at the agent's web address (spec §5): "/" redirects to
 * "/inspect/http"; that page and "/status" are one small page built on the
 * agent API (/api/requests/http, /api/tunnels), polling once a second. */
#ifndef BW_CORE_INSPECT_UI_H
#define BW_CORE_INSPECT_UI_H

#include "httpd.h"

/* Add the inspector's routes. Returns 0 or < 0 (BW_ENOMEM). */
int bw_inspect_ui_register(bw_httpd_t *h);

#endif /* BW_CORE_INSPECT_UI_H */
