/* burrow — protocol plugin ABI, version 1.2.
 *
 * A protocol plugin is a shared object exporting exactly one symbol,
 * BW_PLUGIN_ENTRY_SYMBOL, a function returning a pointer to a constant
 * bw_plugin_t. The agent dlopen()s the object, checks the descriptor's ABI
 * version, calls init() with the host services table, and from then on drives
 * the plugin through the descriptor's slots. The plugin reaches the agent only
 * through the bw_host_t table it was given: it never calls symbols of the
 * executable and never sees the agent's own structures.
 *
 * Versioning (see docs/plugin-abi.md):
 *  - Both bw_plugin_t and bw_host_t begin with abi_major, abi_minor and
 *    struct_size. Fields are only ever appended; a new field raises the minor.
 *  - The loader accepts a plugin whose abi_major equals BW_PLUGIN_ABI_MAJOR and
 *    whose abi_minor is not newer than the host's, copies
 *    min(struct_size, sizeof(bw_plugin_t)) bytes over a zeroed descriptor, and
 *    only calls a slot beyond version 1.0 after checking it is inside the
 *    plugin's struct_size and not NULL. Plugins do the same with bw_host_t
 *    (BW_HOST_HAS()).
 *
 * Conventions for every function in this header:
 *  - Functions returning int return 0 on success or a negative BW_E* code
 *    (include/burrow/error.h); stream_write alone may also return the
 *    positive BW_PAUSE, so `rc < 0` always means failure.
 *  - Pointers passed in are borrowed for the duration of the call unless the
 *    comment says otherwise. Strings returned by the host are owned by the host
 *    and stay valid for the lifetime of the object they were read from.
 *  - Error text crosses the boundary only through host->error_set(); plugins
 *    never return a char* for the host to free.
 *  - Every callback runs on the agent's single event loop thread. No function
 *    of the host table may be called from another thread, including the
 *    work function of host->work_queue, which runs on a pool thread.
 */
#ifndef BURROW_PLUGIN_H
#define BURROW_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <burrow/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BW_PLUGIN_ABI_MAJOR 1
#define BW_PLUGIN_ABI_MINOR 2

/* The one symbol a plugin exports: const bw_plugin_t *bw_plugin_entry(void). */
#define BW_PLUGIN_ENTRY_SYMBOL "bw_plugin_entry"

#if defined(__GNUC__)
#define BW_PLUGIN_EXPORT           __attribute__((visibility("default")))
#define BW_PRINTF_ATTR(fmt, first) __attribute__((format(printf, fmt, first)))
#define BW_SENTINEL_ATTR           __attribute__((sentinel))
#else
#define BW_PLUGIN_EXPORT
#define BW_PRINTF_ATTR(fmt, first)
#define BW_SENTINEL_ATTR
#endif

/* True when the host table `h` is new enough to hold member `field` and that
 * member is set. Use it before calling any slot added after ABI 1.0. */
#define BW_HOST_HAS(h, field)                                                                      \
    ((h)->struct_size >= offsetof(bw_host_t, field) + sizeof((h)->field) && (h)->field != NULL)

/* ----- opaque host objects ------------------------------------------------ */

typedef struct bw_stream bw_stream_t;   /* a byte stream: public or local connection */
typedef struct bw_tunnel bw_tunnel_t;   /* a running tunnel */
typedef struct bw_conf bw_conf_t;       /* a validated tunnel definition */
typedef struct bw_error bw_error_t;     /* where a failing call puts its message */
typedef struct bw_capture bw_capture_t; /* one captured request/response exchange */
typedef struct bw_timer bw_timer_t;     /* a one-shot or repeating timer */

/* ----- static description --------------------------------------------------- */

/* How the edge reaches the tunnel; chosen by the plugin, used when binding. */
typedef enum bw_edge_type {
    BW_EDGE_TCP = 1,   /* a public TCP port */
    BW_EDGE_HTTP = 2,  /* public plain HTTP, routed by Host */
    BW_EDGE_HTTPS = 3, /* public HTTPS terminated at the edge, routed by Host/SNI */
    BW_EDGE_TLS = 4    /* public TLS routed by SNI, not terminated at the edge */
} bw_edge_type_t;

/* Option value types. Nested YAML maps use dotted keys ("request_header.add"). */
typedef enum bw_option_type {
    BW_OPT_STRING = 1,         /* a scalar, kept as text */
    BW_OPT_BOOL = 2,           /* true/false (YAML and JSON forms) */
    BW_OPT_INT = 3,            /* a signed 64-bit integer */
    BW_OPT_STRING_LIST = 4,    /* a sequence of scalars */
    BW_OPT_BOOL_OR_STRING = 5, /* a bool or a word, e.g. bind_tls: true|false|both */
    BW_OPT_ANY = 6 /* 1.2: any value, kept as given and not interpreted: a key the plugin
                      accepts for compatibility but does not act on (the agent warns
                      when it is set) */
} bw_option_type_t;

#define BW_OPT_F_REQUIRED 0x1u /* definition is invalid without it */

/* One declared tunnel option. Arrays of these end with an entry whose key is
 * NULL. The host validates config files and API input against the array and
 * serves it to API clients, so descriptions are user-facing text. The array
 * is the only schema of the plugin's keys: the host knows only its own
 * (name, proto, addr, inspect, metadata, and the binding keys of the edge
 * type; docs/plugin-abi.md) and refuses any other key the array lacks.
 * Entries may grow: a 1.2 plugin sets bw_plugin_t.option_size. */
typedef struct bw_option {
    const char *key; /* YAML/JSON key, dotted for nested maps */
    bw_option_type_t type;
    const char *default_value; /* textual default, or NULL for none */
    const char *description;
    uint32_t flags; /* BW_OPT_F_* */
} bw_option_t;

/* Who is on the other end of a public connection. */
typedef struct bw_conn_info {
    uint32_t struct_size;
    const char *client_addr; /* "ip:port" as the edge saw it */
    const char *client_ip;   /* "ip" alone */
    bw_edge_type_t edge_type;
    const char *server_name; /* SNI or Host the edge routed on, or "" */
    /* Appended after ABI 1.2 shipped; reach it with BW_CONN_INFO_HAS(info,
     * server_addr). The edge's own address of the public connection, the
     * listener socket the client reached ("ip:port"), or "" when the edge
     * did not say (older edges, replays). */
    const char *server_addr;
} bw_conn_info_t;

/* True when the host's bw_conn_info_t `i` holds member `field` and it is
 * set; older hosts pass a shorter struct. */
#define BW_CONN_INFO_HAS(i, field)                                                                 \
    ((i)->struct_size >= offsetof(bw_conn_info_t, field) + sizeof((i)->field) && (i)->field != NULL)

/* ----- streams ----------------------------------------------------------------- */

/* Callbacks a plugin installs on a stream with host->stream_set_callbacks.
 * None is called after host->stream_close() on that stream. */
typedef struct bw_stream_cbs {
    uint32_t struct_size;
    /* Bytes arrived. `data` is valid only during the call. */
    void (*on_read)(bw_stream_t *s, void *ud, const void *data, size_t len);
    /* The peer will send no more bytes (half-close). Optional. */
    void (*on_eof)(bw_stream_t *s, void *ud);
    /* The bytes queued by writes fell below the low-water mark after a write
     * returned BW_PAUSE (BW_EAGAIN for 1.0/1.1 plugins): resume the source.
     * Optional. */
    void (*on_drain)(bw_stream_t *s, void *ud);
    /* The stream failed (reset, connection error, session gone) with `err`.
     * No further on_read/on_eof follow; the plugin still calls stream_close. */
    void (*on_error)(bw_stream_t *s, void *ud, int err);
} bw_stream_cbs_t;

/* Completion of host->connect: exactly one call per successful connect().
 * On failure `s` is NULL and `status` < 0 (BW_ECONNREFUSED, BW_ECANCELED when
 * the tunnel stopped first, ...). On success the plugin owns `s`. */
typedef void (*bw_connect_cb)(void *ud, bw_stream_t *s, int status);

/* Completion of host->stream_join: both streams are closed and freed by the
 * host before this runs. `err` is 0 for a clean end, else the first error. */
typedef void (*bw_join_cb)(void *ud, int err, uint64_t bytes_in, uint64_t bytes_out);

/* host->work_queue (ABI 1.2): the blocking part, run on a pool thread. It
 * may touch only what `ud` holds: no host slot, no stream, no plugin state
 * the loop thread uses meanwhile. */
typedef void (*bw_work_fn)(void *ud);
/* Its completion, on the loop thread: `status` 0 when the work ran, or
 * BW_ECANCELED when it never ran because the tunnel stopped first. */
typedef void (*bw_work_done_cb)(void *ud, int status);

/* Speak TLS to the local service (https:// upstream): SNI = the host unless
 * it is an IP literal, ALPN http/1.1, no certificate check. The connect
 * callback runs after the handshake; a failed handshake is a failed connect. */
#define BW_CONNECT_TLS 0x1u
/* With BW_CONNECT_TLS: verify the certificate (system store + host name). */
#define BW_CONNECT_TLS_VERIFY 0x2u

/* What host->stream_start_tls (ABI 1.2) sets up. Paths name PEM files. */
typedef struct bw_tls_opts {
    uint32_t struct_size; /* sizeof(bw_tls_opts_t) */
    uint32_t flags;       /* BW_TLS_F_* */
    /* Client, required: sent as SNI (not for IP literals) and, with
     * BW_TLS_F_VERIFY, the name the certificate must match. */
    const char *server_name;
    /* ALPN, NULL-terminated, or NULL: a client offers these in order; a
     * server picks the first of its own it was offered (none: no ALPN). */
    const char *const *alpn;
    /* Server, required: the certificate chain and key it presents. Client:
     * a certificate for mutual TLS, or NULL. */
    const char *cert_file;
    const char *key_file;
    /* Client with BW_TLS_F_VERIFY: the CAs trusted (NULL: the system store).
     * Server: ask clients for a certificate of these CAs and verify it
     * (NULL: ask none). */
    const char *ca_file;
} bw_tls_opts_t;

#define BW_TLS_F_SERVER              0x1u /* take the server side of the handshake */
#define BW_TLS_F_VERIFY              0x2u /* client: verify the server's certificate */
#define BW_TLS_F_REQUIRE_CLIENT_CERT 0x4u /* server with ca_file: refuse clients without one */

/* What the handshake settled; valid during the bw_tls_done_cb call only. */
typedef struct bw_tls_info {
    uint32_t struct_size;
    const char *alpn;         /* the protocol chosen, or "" */
    const char *server_name;  /* the SNI the client sent, or "" */
    int peer_verified;        /* 1: the peer showed a certificate and it verified */
    const char *peer_subject; /* that certificate's subject, or "" */
} bw_tls_info_t;

/* Completion of host->stream_start_tls: exactly one call. On success `s` is
 * the new plaintext stream, owned by the plugin, status 0 and `info` set; on
 * failure s and info are NULL and status < 0 (BW_EACCES: the peer's
 * certificate was refused; the reason is logged). */
typedef void (*bw_tls_done_cb)(void *ud, bw_stream_t *s, int status, const bw_tls_info_t *info);

/* ----- capture (inspection) ------------------------------------------------------ */

typedef enum bw_capture_dir { BW_CAPTURE_REQUEST = 1, BW_CAPTURE_RESPONSE = 2 } bw_capture_dir_t;

typedef struct bw_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} bw_http_header_t;

/* A parsed HTTP/1.x head, passed to host->capture_head. */
typedef struct bw_http_head {
    uint32_t struct_size;
    const char *method; /* request only, else NULL */
    const char *uri;    /* request only, else NULL */
    const char *proto;  /* "HTTP/1.1" */
    int status;         /* response only, else 0 */
    const char *reason; /* response only, else NULL */
    const bw_http_header_t *headers;
    size_t n_headers;
} bw_http_head_t;

/* ----- the host services table ------------------------------------------------- */

typedef enum bw_log_level {
    BW_LOG_CRIT = 0,
    BW_LOG_ERROR = 1,
    BW_LOG_WARN = 2,
    BW_LOG_INFO = 3,
    BW_LOG_DEBUG = 4
} bw_log_level_t;

typedef struct bw_host {
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t struct_size;

    /* Log one line: `msg` then NULL-terminated pairs of const char* key/value,
     * e.g. log(BW_LOG_INFO, "join connections", "l", local, "r", remote, NULL). */
    void (*log)(bw_log_level_t level, const char *msg, ...) BW_SENTINEL_ATTR;
    /* Record why a call failed; printf-style. Safe with err == NULL. */
    void (*error_set)(bw_error_t *err, const char *fmt, ...) BW_PRINTF_ATTR(2, 3);
    /* Static, human-readable text for a BW_E* code (never NULL). */
    const char *(*strerror)(int err);

    /* Monotonic clock, nanoseconds. */
    uint64_t (*now_ns)(void);

    /* ---- tunnel definitions (validated against the plugin's options) ---- */
    /* Returns the option's text, the declared default when unset, or NULL. */
    const char *(*conf_str)(const bw_conf_t *c, const char *key);
    /* Returns 1/0, or `dflt` when unset. */
    int (*conf_bool)(const bw_conf_t *c, const char *key, int dflt);
    /* Returns the integer, or `dflt` when unset. */
    int64_t (*conf_int)(const bw_conf_t *c, const char *key, int64_t dflt);
    /* Number of items of a list option (0 when unset). */
    size_t (*conf_list_len)(const bw_conf_t *c, const char *key);
    /* Item `i` of a list option, or NULL when out of range. */
    const char *(*conf_list_at)(const bw_conf_t *c, const char *key, size_t i);

    /* ---- tunnels ---- */
    const bw_conf_t *(*tunnel_conf)(bw_tunnel_t *t);
    const char *(*tunnel_name)(bw_tunnel_t *t);
    const char *(*tunnel_addr)(bw_tunnel_t *t); /* normalised local address */
    const char *(*tunnel_public_url)(bw_tunnel_t *t);

    /* ---- streams ---- */
    /* Open a connection to `addr` ("host:port"); BW_CONNECT_* flags. Returns 0
     * and later calls `cb` exactly once, or returns < 0 and never calls it. */
    int (*connect)(bw_tunnel_t *t, const char *addr, uint32_t flags, bw_connect_cb cb, void *ud);
    /* Install callbacks; reading starts with the first call. */
    void (*stream_set_callbacks)(bw_stream_t *s, const bw_stream_cbs_t *cbs, void *ud);
    /* Queue bytes. The host copies whatever it cannot send at once; the caller
     * keeps ownership of `data`. Returns 0; BW_PAUSE (> 0) when the bytes
     * were accepted but the queue is past its high-water mark (stop reading
     * the source until on_drain); or BW_EPIPE after shutdown/close/error.
     * A plugin whose descriptor says abi_minor 0 or 1 gets BW_EAGAIN instead
     * of BW_PAUSE, as those versions defined: the loader hands each plugin
     * the host table of the minor it was built for, and the tables differ
     * only in this slot. */
    int (*stream_write)(bw_stream_t *s, const void *data, size_t len);
    /* Bytes accepted by stream_write and not yet handed to the kernel/peer. */
    size_t (*stream_queued)(bw_stream_t *s);
    /* Half-close: send EOF after the queued bytes. */
    int (*stream_shutdown)(bw_stream_t *s);
    /* Pause/resume on_read (backpressure towards the peer). */
    void (*stream_read_stop)(bw_stream_t *s);
    void (*stream_read_start)(bw_stream_t *s);
    /* Done with the stream: flushes queued bytes then closes (abort != 0:
     * discard them and reset). No callbacks after this call; the host frees. */
    void (*stream_close)(bw_stream_t *s, int abort);
    /* Forward bytes both ways between `a` and `b` with backpressure and
     * half-close until both directions end, then close both and call `cb`.
     * Takes ownership of both streams (do not close them yourself). */
    int (*stream_join)(bw_stream_t *a, bw_stream_t *b, bw_join_cb cb, void *ud);
    /* Peer address of a stream as "ip:port" (local streams: the service). */
    const char *(*stream_peer)(bw_stream_t *s);

    /* ---- timers ---- */
    /* Call cb(ud) after `ms` and then every `repeat_ms` (0: once). Returns a
     * new timer owned by the caller (stop it with timer_stop), or NULL. */
    bw_timer_t *(*timer_start)(uint64_t ms, uint64_t repeat_ms, void (*cb)(void *ud), void *ud);
    /* Stop and free a timer; safe from within its own callback. */
    void (*timer_stop)(bw_timer_t *tm);

    /* ---- metrics (ngrok semantics: counts, gauge, EWMA rates, percentiles) ---- */
    void (*metric_conn_open)(bw_tunnel_t *t);
    void (*metric_conn_close)(bw_tunnel_t *t, uint64_t duration_ns);
    void (*metric_http)(bw_tunnel_t *t, uint64_t duration_ns);

    /* ---- capture ---- */
    /* Begin capturing one exchange on `t`. Returns a new capture owned by the
     * plugin until capture_end, or NULL when inspection is off for this
     * tunnel (store disabled, plugin without BW_PLUGIN_F_INSPECTS, or the
     * tunnel's `inspect` option false). The handle stays valid until
     * capture_end even if the entry is evicted or the tunnel stops. */
    bw_capture_t *(*capture_begin)(bw_tunnel_t *t, const bw_conn_info_t *info);
    /* Parsed head of the request or response. */
    int (*capture_head)(bw_capture_t *c, bw_capture_dir_t dir, const bw_http_head_t *head);
    /* Append exact wire bytes (head and body) of one direction; the host may
     * truncate long bodies and records that it did. */
    int (*capture_raw)(bw_capture_t *c, bw_capture_dir_t dir, const void *data, size_t len);
    /* Finish the exchange; `duration_ns` is request start to response end.
     * The capture is released; the plugin must not use it again. */
    void (*capture_end)(bw_capture_t *c, uint64_t duration_ns);

    /* ---- ABI 1.1 (check with BW_HOST_HAS) ---- */
    /* Say how reading the request body ended: `err` 0 when the body was read
     * completely, a negative BW_E* code when reading it failed (client went
     * away, malformed framing). Until this is called the request counts as
     * still being read; the API refuses to replay such an entry (error 110)
     * or a failed one (111). capture_end() without it implies success. */
    void (*capture_request_done)(bw_capture_t *c, int err);

    /* ---- ABI 1.2 (check with BW_HOST_HAS) ---- */
    /* Run work(ud) on a thread of the host's pool (blocking file or name
     * lookups), then done(ud, status) on the loop thread. Returns 0 and
     * calls `done` exactly once, or returns < 0 (BW_EINVAL, BW_ENOMEM,
     * BW_ECANCELED when `t` is stopping) and calls neither. When the tunnel
     * stops, requests no thread has started are cancelled: `done` follows
     * with BW_ECANCELED on a later loop turn. One already running cannot be
     * interrupted; it finishes and `done` gets 0, so release what the work
     * produced either way. `ud` must stay valid until `done`. Requests do
     * not keep `t` usable: after tunnel_stop, do not pass it to the host. */
    int (*work_queue)(bw_tunnel_t *t, bw_work_fn work, bw_work_done_cb done, void *ud);

    /* Start TLS on stream `s` the plugin owns (STARTTLS, or ending TLS in
     * the plugin), as o->flags say. Returns 0 and takes `s` over: do not use
     * or close it again; bytes it already holds are read as the first TLS
     * bytes. `cb` then runs exactly once, after the handshake and never
     * before this returns. Returns < 0 (BW_EINVAL: bad options or files
     * that do not load, message in `err`; BW_ENOMEM) without taking `s`
     * and never calls `cb`. */
    int (*stream_start_tls)(bw_stream_t *s, const bw_tls_opts_t *o, bw_tls_done_cb cb, void *ud,
                            bw_error_t *err);
} bw_host_t;

/* ----- the plugin descriptor --------------------------------------------------- */

/* One tunnel a definition becomes (ABI 1.2, bw_plugin_t.expand). */
typedef struct bw_expansion {
    const char *proto;       /* a loaded proto, e.g. "https"; static storage */
    const char *name_suffix; /* appended to the definition's name: "" or " (http)" */
} bw_expansion_t;

/* At most this many tunnels per definition. */
#define BW_EXPAND_MAX 4

typedef struct bw_plugin {
    uint16_t abi_major;   /* BW_PLUGIN_ABI_MAJOR */
    uint16_t abi_minor;   /* BW_PLUGIN_ABI_MINOR */
    uint32_t struct_size; /* sizeof(bw_plugin_t) */

    /* Static data. */
    const char *name;    /* the proto name, unique among loaded plugins: "tcp" */
    const char *version; /* the plugin's own version */
    const char *description;
    const char *public_scheme; /* scheme of public URLs: "tcp", "http", "https", "tls" */
    bw_edge_type_t edge_type;
    uint32_t flags;             /* BW_PLUGIN_F_* */
    const bw_option_t *options; /* terminated by a NULL key; may be NULL */

    /* Mandatory: set up plugin-wide state. `host` stays valid until destroy.
     * On failure return < 0 and explain with host->error_set(err, ...);
     * destroy() is still called. */
    int (*init)(const bw_host_t *host, void **state, bw_error_t *err);
    /* Mandatory: free plugin-wide state; called once, even after init failed
     * (with *state as init left it). */
    void (*destroy)(void *state);
    /* Mandatory: a tunnel of this proto is starting. Returns 0 and sets
     * *tstate, or < 0 with a message in err. */
    int (*tunnel_start)(void *state, bw_tunnel_t *t, void **tstate, bw_error_t *err);
    /* Mandatory: the tunnel stopped; connections already handed over stay the
     * plugin's until it closes them. Free tstate once they are gone. */
    void (*tunnel_stop)(void *tstate);
    /* Mandatory: a public connection arrived; the plugin owns `pub` and must
     * eventually close it (directly or through stream_join). */
    void (*conn_open)(void *tstate, bw_stream_t *pub, const bw_conn_info_t *info);

    /* Optional: cross-option checks the declared types cannot express. */
    int (*validate)(void *state, const bw_conf_t *conf, const char *tunnel_name, bw_error_t *err);
    /* Optional: normalise a user's `addr` (e.g. "80" -> "http://localhost:80")
     * into out[outlen]. Without it the host uses "host:port" forms. */
    int (*normalize_addr)(void *state, const char *in, char *out, size_t outlen,
                          const char *tunnel_name, bw_error_t *err);
    /* Optional: send a captured request (exact wire bytes) to the local
     * service again, capturing the exchange as a new entry. Without it the
     * host replays through a synthetic connection handed to conn_open
     * (client_addr "<original client ip>:0", server_name ""): it writes the
     * raw request, half-closes, discards the response and waits for the
     * plugin to close the stream (30 s at most); plugins then need nothing
     * replay-specific. */
    int (*replay)(void *tstate, const void *raw, size_t len, bw_error_t *err);

    /* ---- ABI 1.2 (the host reads these only when struct_size covers them) ---- */

    /* Further protos provided by the same object, NULL-terminated, or NULL.
     * Each is loaded as a plugin of its own (its own init, state and
     * destroy) and the object stays loaded while any of them is. Their own
     * `siblings` are ignored. One object may so serve e.g. http and https. */
    const struct bw_plugin *const *siblings;
    /* sizeof(bw_option_t) as the plugin was built; 0 means ABI 1.0's. */
    uint32_t option_size;
    /* Optional: the tunnels a definition of this proto becomes. Write up to
     * `max` entries to `out` and return how many (1..max), or < 0 with a
     * message in err. The first tunnel binds the public name (random or
     * requested); every later one asks for the name the first got, so they
     * all share it, and is named the definition's name plus its suffix.
     * The last entry, and only it, has the suffix "": the tunnel the
     * caller's request reports on. If any tunnel is refused the others are removed, so a
     * definition runs whole or not at all. Without the slot: one tunnel of
     * this proto. (http: "X (http)" over http, then "X" over https.) */
    int (*expand)(void *state, const bw_conf_t *conf, const char *tunnel_name, bw_expansion_t *out,
                  size_t max, bw_error_t *err);
} bw_plugin_t;

#define BW_PLUGIN_F_INSPECTS 0x1u /* captures traffic; `inspect` is meaningful */

/* The entry point every plugin exports. */
typedef const bw_plugin_t *(*bw_plugin_entry_fn)(void);

/* Fill the ABI header of a descriptor and define the entry point:
 *
 *   static const bw_plugin_t my_plugin = {
 *       BW_PLUGIN_HEADER,
 *       .name = "redis", ...
 *   };
 *   BW_PLUGIN_DEFINE(my_plugin)
 */
#define BW_PLUGIN_HEADER                                                                           \
    .abi_major = BW_PLUGIN_ABI_MAJOR, .abi_minor = BW_PLUGIN_ABI_MINOR,                            \
    .struct_size = sizeof(bw_plugin_t), .option_size = sizeof(bw_option_t)
/* First line of a plugin's init: refuse a host of another major ABI, with
 * a message, as the loader refuses such plugins (SQLite's
 * SQLITE_EXTENSION_INIT2 plays this part). */
#define BW_PLUGIN_INIT_CHECK(host, err)                                                            \
    do {                                                                                           \
        if ((host)->abi_major != BW_PLUGIN_ABI_MAJOR) {                                            \
            (host)->error_set((err), "host speaks ABI %u, plugin needs %d",                        \
                              (unsigned)(host)->abi_major, BW_PLUGIN_ABI_MAJOR);                   \
            return BW_EABI;                                                                        \
        }                                                                                          \
    } while (0)
#define BW_PLUGIN_DEFINE(descriptor)                                                               \
    BW_PLUGIN_EXPORT const bw_plugin_t *bw_plugin_entry(void);                                     \
    const bw_plugin_t *bw_plugin_entry(void)                                                       \
    {                                                                                              \
        return &(descriptor);                                                                      \
    }

#ifdef __cplusplus
}
#endif

#endif /* BURROW_PLUGIN_H */
