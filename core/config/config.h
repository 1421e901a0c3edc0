/* The agent's config files: ngrok-compatible YAML (classic unversioned v2 and
 * `version: "2"`), loaded and merged in order.
 *
 *   bw_config_t cfg;
 *   bw_config_init(&cfg);
 *   if (bw_config_load(&cfg, paths, n, err, sizeof err) != 0) { log err; ... }
 *   ... use cfg.authtoken, cfg.tunnels[i].def ...
 *   bw_config_free(&cfg);
 *
 * Every error message starts with "FILE:LINE:COL: " (1-based) when it is
 * about a place in a file, or "FILE: " when it is about the whole file.
 *
 * The loader checks only what every tunnel needs whatever its plugin (proto
 * and addr present, hostname vs subdomain): it knows no proto. The caller
 * checks that the proto names a loaded plugin and validates the definition
 * against that plugin's declared options and validate slot
 * (bw_definition_check), strictly for `version: "2"` files, and reports at
 * the positions bw_config_tunnel_mark gives.
 */
#ifndef BW_CORE_CONFIG_H
#define BW_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define BW_CONFIG_DEFAULT_WEB_ADDR        "127.0.0.1:4040"
#define BW_CONFIG_DEFAULT_INSPECT_DB_SIZE 52428800 /* 50 MiB, ngrok's default */
#define BW_CONFIG_MAX_FILE_SIZE           (1024 * 1024)
#define BW_CONFIG_MAX_DEPTH               32 /* nested sequences/mappings */
#define BW_CONFIG_MAX_NODES               100000
#define BW_CONFIG_MAX_TUNNELS             4096
#define BW_CONFIG_MAX_AUTHTOKEN           4096 /* = the protocol's BW_PROTO_MAX_STR */

typedef enum bw_console_ui {
    BW_CONSOLE_UI_IFTTY = 0, /* the default */
    BW_CONSOLE_UI_TRUE = 1,
    BW_CONSOLE_UI_FALSE = 2
} bw_console_ui_t;

/* One tunnel definition, in file order. */
typedef struct bw_config_tunnel {
    char *name;
    json_t *def;   /* owned: a JSON object, YAML keys as written (proto, addr, ...) */
    char *file;    /* the file that defined it last */
    int line;      /* line of the tunnel's name in that file */
    int strict;    /* from a `version: "2"` file: unknown keys are errors (ngrok 3) */
    json_t *marks; /* owned: where each key and value stands (bw_config_tunnel_mark) */
} bw_config_tunnel_t;

/* Agent settings. Strings are owned and NULL when no file set them; numbers
 * are 0 when unset (the caller applies defaults). Keys ngrok accepts but
 * burrow does not use (update, update_channel, dns_resolver_ips, ...) are
 * accepted and dropped. */
typedef struct bw_config {
    int version; /* 0: nothing loaded, 1: unversioned (classic v2), 2: version "2" */
    char *authtoken;
    char *server_addr;
    char *root_cas;         /* "trusted", "host" or a PEM path */
    char *web_addr;         /* NULL: BW_CONFIG_DEFAULT_WEB_ADDR */
    int web_disabled;       /* web_addr: false */
    char **web_allow_hosts; /* NULL-terminated */
    size_t n_web_allow_hosts;
    int64_t inspect_db_size; /* 0: default, -1: inspection disabled */
    char *log;               /* "stdout", "stderr", "false" or a path */
    char *log_level;         /* validated with bw_log_parse_level */
    char *log_format;        /* validated with bw_log_parse_format */
    bw_console_ui_t console_ui;
    char *region;
    char *metadata;
    char *api_key;
    char *proxy_url;
    uint64_t heartbeat_interval_ms;  /* 0: default */
    uint64_t heartbeat_tolerance_ms; /* 0: default */
    uint64_t connect_timeout_ms;     /* 0: default */
    bw_config_tunnel_t *tunnels;
    size_t n_tunnels;
    char **files; /* every file loaded, in order ("Config files read: ...") */
    size_t n_files;
} bw_config_t;

/* Zero a config (nothing set). */
void bw_config_init(bw_config_t *cfg);

/* Free everything a config owns and re-initialise it. NULL-safe. */
void bw_config_free(bw_config_t *cfg);

/* Parse the files in order, each merged on top of what came before:
 * top-level settings a later file sets replace earlier ones; a tunnel whose
 * name is already defined is replaced in place, new names are appended.
 * Returns 0, a negative errno when a file cannot be read (BW_ENOENT when it
 * is missing), BW_EMSGSIZE (a file over BW_CONFIG_MAX_FILE_SIZE), BW_EINVAL
 * (bad YAML or settings) or BW_ENOMEM, with err set. On failure cfg may hold part of the files:
 * free it. */
int bw_config_load(bw_config_t *cfg, const char *const *paths, size_t n, char *err, size_t errlen);

/* As bw_config_load for one file already in memory; `name` is used in error
 * messages and as the tunnels' file. `buf` need not be NUL-terminated.
 * Same return values. */
int bw_config_parse(bw_config_t *cfg, const char *buf, size_t len, const char *name, char *err,
                    size_t errlen);

/* The default path: $XDG_CONFIG_HOME/burrow/burrow.yml, else
 * $HOME/.config/burrow/burrow.yml. Returns 0, BW_ENOENT (neither variable
 * set) or BW_EMSGSIZE. */
int bw_config_default_path(char *out, size_t outlen);

/* Load the default file when it exists. Returns 0 when loaded, BW_ENOENT
 * when there is no default file (not an error: the caller logs "ignoring
 * default config path, could not stat it"), or bw_config_load's errors.
 * The path tried is written to path[pathlen] either way (may be ""). */
int bw_config_load_default(bw_config_t *cfg, char *path, size_t pathlen, char *err, size_t errlen);

/* Where key `key` of tunnel `t` (value != 0: its value) stands in t->file:
 * 1-based *line and *col. Returns 0, or BW_ENOENT for a key the file did
 * not give. */
int bw_config_tunnel_mark(const bw_config_tunnel_t *t, const char *key, int value, int *line,
                          int *col);

/* The tunnel called `name`, or NULL. The pointer stays valid until the next
 * load into or free of cfg. */
const bw_config_tunnel_t *bw_config_find_tunnel(const bw_config_t *cfg, const char *name);

/* Save `token` as the top-level authtoken of the file at `path` (for
 * `burrow config add-authtoken` / `burrow authtoken`). A missing file is
 * created with its parent directories (0700) as mode 0600 holding
 * `version: "2"` and the token; otherwise the top-level `authtoken:` line is
 * replaced, or one appended, and every other byte kept. The file is
 * replaced atomically. Returns 0, BW_EINVAL (bad token, or a file the edit
 * cannot be done safely on), BW_EMSGSIZE or a negative errno, with err set. */
int bw_config_add_authtoken(const char *path, const char *token, char *err, size_t errlen);

#endif /* BW_CORE_CONFIG_H */
