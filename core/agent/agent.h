/* The agent runtime: one session to the edge (connect, authenticate, bind
 * every tunnel, reconnect with backoff and resume), public connections handed
 * to the tunnels' plugins. */
#ifndef BW_CORE_AGENT_H
#define BW_CORE_AGENT_H

#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "plugin_loader.h"
#include "stream.h"

typedef struct bw_agent bw_agent_t;

typedef struct bw_agent_config {
    const char *server_addr; /* edge "host:port" */
    const char *authtoken;
    const char *root_cas;        /* PEM file, "trusted"/"host"/NULL for the system store */
    uint64_t heartbeat_ms;       /* 10 s */
    uint64_t tolerance_ms;       /* 15 s */
    uint64_t connect_timeout_ms; /* 10 s: TLS + auth must finish within it */
    uint32_t max_window;         /* yamux receive window ceiling; 0 = default */
    int64_t inspect_db_size;     /* capture store budget: 0 default, -1 disabled */
    void (*on_stop)(void *ud);   /* called once when the agent stops, for any reason */
    void *stop_ud;
} bw_agent_config_t;

/* A tunnel to start once the session is up. */
typedef struct bw_tunnel_spec {
    const char *name;
    const char *proto;       /* plugin name */
    const char *addr;        /* as the user wrote it; normalised by the plugin */
    const char *remote_addr; /* tcp: requested public address */
    const char *subdomain;
    const char *hostname;
    json_t *options;     /* the definition as JSON (borrowed) */
    const char *follows; /* twin: bind after this tunnel, on its host name */
    const char *label;   /* the name errors use: the definition's, for a twin
                            ("web", not "web (http)"); NULL for `name` */
} bw_tunnel_spec_t;

/* Create an agent on `io` (its loop and streams). Returns NULL with
 * err[errlen] on failure (bad CA file, bad server address). The registry and
 * the I/O context stay owned by the caller. */
bw_agent_t *bw_agent_new(bw_io_t *io, bw_registry_t *reg, const bw_agent_config_t *cfg, char *err,
                         size_t errlen);

/* Load `root_cas` as bw_agent_new would (a PEM file, or "trusted"/"host"/
 * ""/NULL for the system store), for `config check`. Returns 0, or
 * BW_EINVAL with the same message bw_agent_new would give. */
int bw_agent_check_root_cas(const char *root_cas, char *err, size_t errlen);

/* Outcome of binding a tunnel started with a callback: status 0 and the
 * tunnel, or < 0 with the edge's (or the session's) reason in `err`; the
 * tunnel is then already removed. */
typedef void (*bw_agent_bind_cb)(void *ud, int status, const char *err, bw_tunnel_t *t);

/* Add a tunnel: validates the definition against the plugin's options and
 * starts it in the plugin; it is bound now if the session is up, else as
 * soon as it is. Without `cb`, a tunnel the edge refuses at its first bind
 * makes the agent exit with status 1 (the command-line behaviour); with
 * `cb`, the first bind's outcome is reported once and a refused tunnel is
 * removed. Returns 0, BW_EEXIST for a duplicate name, or < 0 with err. */
int bw_agent_add_tunnel(bw_agent_t *a, const bw_tunnel_spec_t *spec, bw_agent_bind_cb cb, void *ud,
                        char *err, size_t errlen);

/* Stop a tunnel by name: unbinds it at the edge and stops its plugin side.
 * Returns 0 or BW_ENOENT. */
int bw_agent_remove_tunnel(bw_agent_t *a, const char *name);

/* The plugin registry the agent was created with. */
bw_registry_t *bw_agent_registry(bw_agent_t *a);

/* The tunnel named `name`, or NULL. */
bw_tunnel_t *bw_agent_find_tunnel(bw_agent_t *a, const char *name);

/* Tunnels in creation order: index 0 .. count-1 (NULL past the end). */
size_t bw_agent_tunnel_count(const bw_agent_t *a);
bw_tunnel_t *bw_agent_tunnel_at(bw_agent_t *a, size_t i);

/* The agent's capture store (never NULL; a disabled one when
 * inspect_db_size is -1). Owned by the agent. */
struct bw_capture_store *bw_agent_captures(bw_agent_t *a);

/* Is the session to the edge established (authenticated)? */
int bw_agent_ready(const bw_agent_t *a);

/* Start connecting. Returns 0. */
int bw_agent_start(bw_agent_t *a);

/* Close the session and every tunnel; the loop then runs dry. */
void bw_agent_stop(bw_agent_t *a);

/* Exit status the process should end with (1 after an auth refusal). */
int bw_agent_exit_code(const bw_agent_t *a);

/* Free after the loop has finished. NULL-safe. */
void bw_agent_free(bw_agent_t *a);

#endif /* BW_CORE_AGENT_H */
