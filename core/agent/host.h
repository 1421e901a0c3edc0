/* The host side of the plugin ABI: the bw_host_t table, tunnels and tunnel
 * definitions as plugins see them, and the bookkeeping behind each slot
 * (metrics, timers, connects). */
#ifndef BW_CORE_HOST_H
#define BW_CORE_HOST_H

#include <jansson.h>

#include <burrow/plugin.h>

#include "metrics.h"
#include "plugin_loader.h"
#include "stream.h"

/* A validated tunnel definition: option values as JSON, typed per the
 * plugin's declarations (strings, booleans, integers, string arrays; dotted
 * keys address nested objects). */
struct bw_conf {
    json_t *obj;             /* owned */
    const bw_option_t *opts; /* the plugin's declarations */
};

struct bw_tunnel {
    char *name;
    char *addr;           /* normalised local address */
    char *public_url;     /* "" until bound, and while a re-bind is refused */
    char bind_error[256]; /* why the edge refused the last re-bind; "" when bound */
    char tunnel_id[33];   /* the edge's id of the current binding */
    char api_id[33];      /* stable id the agent API shows as "ID" */
    bw_conf_t conf;
    const bw_loaded_plugin_t *plugin;
    void *tstate; /* the plugin's, from tunnel_start */
    bw_timer_metric_t conns;
    bw_timer_metric_t http;
    int inspect; /* the definition's `inspect` (default true) */
    int stopping;
    struct bw_capture_store *captures; /* the agent's store (borrowed), or NULL */
    struct bw_replay *replays;         /* replays in flight on this tunnel (replay.c) */
    unsigned pending_connects;         /* host->connect calls not yet called back */
    struct bw_host_work *works;        /* host->work_queue requests not yet called back */
    unsigned pending_works;
    struct bw_tunnel *next; /* the owner's list */
    void *owner;            /* the agent's per-tunnel record */
};

/* The process-wide host table of this ABI version (1.2). */
const bw_host_t *bw_host_table(void);
/* The host table for a plugin built for 1.`abi_minor`: the same slots,
 * except that stream_write says BW_EAGAIN instead of BW_PAUSE below 1.2.
 * Static storage; never NULL. Pass it to bw_registry_new. */
const bw_host_t *bw_host_table_for(uint16_t abi_minor);

/* The I/O context behind the table's connect and timer slots and replay.
 * The table is process-wide and its timer slot names no tunnel, so there is
 * one: set it before plugins run, and back to NULL before bw_io_free. The
 * context stays the caller's. */
void bw_host_set_io(bw_io_t *io);
bw_io_t *bw_host_io(void);

/* Build a conf from `input` (a JSON object with option values) against
 * `opts`: unknown keys are ignored unless `strict`; types are checked and
 * normalised (numbers and booleans given for strings become text, "true"/
 * "false" strings for booleans become booleans). Returns 0, or BW_EINVAL
 * with err naming the key and what was expected. */
int bw_conf_build(const bw_option_t *opts, const json_t *input, int strict, bw_conf_t *out,
                  char *err, size_t errlen);
void bw_conf_free(bw_conf_t *c);

/* The first top-level key of `input` that neither the core owns nor `opts`
 * declares (a dotted group counts as declared when all its members are),
 * or NULL. The pointer is into `input`. */
const char *bw_conf_unknown_key(const bw_option_t *opts, const json_t *input);

/* The declaration of `key` in `opts`, or NULL (conf.c, for the conf slots). */
const bw_option_t *bw__conf_find_option(const bw_option_t *opts, const char *key);

/* Warn (log) about each BW_OPT_ANY option set in `c`: accepted, no effect. */
void bw_conf_warn_unused(const bw_conf_t *c, const char *tunnel_name);

/* Create a tunnel record for `plugin` (not yet started). Returns NULL on
 * ENOMEM. Takes ownership of `conf`. */
bw_tunnel_t *bw_tunnel_new(const char *name, const char *addr, const bw_loaded_plugin_t *plugin,
                           bw_conf_t *conf);
/* Run the plugin's tunnel_start. Returns 0 or < 0 with err. */
int bw_tunnel_start(bw_tunnel_t *t, char *err, size_t errlen);
/* Set the public URL (after a bind). */
int bw_tunnel_set_url(bw_tunnel_t *t, const char *url);
/* Hand a public connection to the plugin. */
void bw_tunnel_conn(bw_tunnel_t *t, bw_stream_t *pub, const bw_conn_info_t *info);
/* Stop (plugin tunnel_stop) and free the record. NULL-safe. */
void bw_tunnel_free(bw_tunnel_t *t);

/* `inspect` of a tunnel definition: a boolean or "true"/"false" in
 * `options`, else the plugin's declared default, else true (ngrok's default
 * for http tunnels). Returns 1 or 0. */
int bw_tunnel_inspect_option(const bw_loaded_plugin_t *plugin, const json_t *options);

/* Capture slots of the host table (host_capture.c). */
bw_capture_t *bw__host_capture_begin(bw_tunnel_t *t, const bw_conn_info_t *info);
int bw__host_capture_head(bw_capture_t *c, bw_capture_dir_t dir, const bw_http_head_t *head);
int bw__host_capture_raw(bw_capture_t *c, bw_capture_dir_t dir, const void *data, size_t len);
void bw__host_capture_end(bw_capture_t *c, uint64_t duration_ns);
void bw__host_capture_request_done(bw_capture_t *c, int err);

/* The work_queue slot (host_work.c); see include/burrow/plugin.h. */
typedef struct bw_host_work bw_host_work_t;
int bw__host_work_queue(bw_tunnel_t *t, bw_work_fn work, bw_work_done_cb done, void *ud);
/* Stopping `t`: cancel its requests no thread has started (their callbacks
 * follow with BW_ECANCELED on a later loop turn). */
void bw__host_work_cancel_all(bw_tunnel_t *t);
/* Free a stopping tunnel's record unless connects or work requests are
 * still to be called back; the last of them calls it again. */
void bw__tunnel_release(bw_tunnel_t *t);
/* The stream_start_tls slot (host_tls.c): TLS over a plugin's stream. */
int bw__host_stream_start_tls(bw_stream_t *s, const bw_tls_opts_t *o, bw_tls_done_cb cb, void *ud,
                              bw_error_t *err);

/* Metrics across every tunnel (the API's aggregate). */
bw_timer_metric_t *bw_host_total_conns(void);
bw_timer_metric_t *bw_host_total_http(void);

#endif /* BW_CORE_HOST_H */
