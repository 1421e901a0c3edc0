/* The agent's config files (ngrok-compatible YAML): errors with positions,
 * the top-level settings, and loading and merging files. See config.h; the
 * YAML tree is yaml_tree.c, tunnel definitions config_tunnels.c, and
 * `config add-authtoken` authtoken.c.
 */
#include "config.h"
#include "config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include <burrow/error.h>

#include "log.h"
#include "util.h"

#define MAX_METADATA 4096 /* ngrok's documented limit */

/* ---------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------- */

void bw__config_vseterr(char *err, size_t errlen, const char *file, int line, int col,
                        const char *fmt, va_list ap)
{
    char msg[768];

    if (!err || !errlen)
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (line > 0)
        snprintf(err, errlen, "%s:%d:%d: %s", file, line, col, msg);
    else
        snprintf(err, errlen, "%s: %s", file, msg);
}

void bw__config_seterr(char *err, size_t errlen, const char *file, int line, int col,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bw__config_vseterr(err, errlen, file, line, col, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------------------
 * Applying a file to a config
 * ------------------------------------------------------------------------- */

int bw__config_fail(const ctx_t *c, const ynode_t *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bw__config_vseterr(c->err, c->errlen, c->file, at ? at->line : 0, at ? at->col : 0, fmt, ap);
    va_end(ap);
    return BW_EINVAL;
}

int bw__config_nomem(const ctx_t *c)
{
    bw__config_seterr(c->err, c->errlen, c->file, 0, 0, "out of memory");
    return BW_ENOMEM;
}

/* gcc 12 -fanalyzer false positive: it loses `s` once stored through `dst`
 * into the config (set_web_addr passes &c->cfg->web_addr), and reports a leak. */
BW_ANALYZER_IGNORE("-Wanalyzer-malloc-leak")
static int set_str(const ctx_t *c, const ynode_t *k, const ynode_t *v, char **dst)
{
    char *s;

    if (!bw__ynode_scalar(v))
        return bw__config_fail(c, v, "'%s' must be a string, not %s", k->text, bw__ynode_desc(v));
    if (bw__ynode_null(v))
        return 0; /* an empty value does not override an earlier file */
    s = strdup(v->text);
    if (!s)
        return bw__config_nomem(c);
    free(*dst);
    *dst = s;
    return 0;
}
BW_ANALYZER_END

/* Durations are checked here before bw_parse_duration_ms so that huge
 * numbers cannot overflow its double → integer conversion. */
static int duration_ok(const char *s)
{
    size_t digits = 0;
    if (strlen(s) > 32)
        return 0;
    for (; *s; s++) {
        if (*s >= '0' && *s <= '9') {
            if (++digits > 9)
                return 0;
        } else if (*s == '.') {
            continue;
        } else if (strchr("numsh", *s) || (unsigned char)*s >= 0x80) {
            digits = 0; /* a unit ("µs" is two UTF-8 bytes) */
        } else {
            return 0;
        }
    }
    return 1;
}

static int set_duration(const ctx_t *c, const ynode_t *k, const ynode_t *v, uint64_t *dst)
{
    uint64_t ms;

    if (bw__ynode_null(v))
        return 0;
    if (!bw__ynode_scalar(v) || !duration_ok(v->text) || bw_parse_duration_ms(v->text, &ms) != 0)
        return bw__config_fail(c, v,
                               "'%s' is not a valid duration: '%s' (use e.g. 10s, 1m30s, 250ms)",
                               k->text, bw__ynode_desc(v));
    *dst = ms;
    return 0;
}

static int set_web_addr(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    char host[256];
    int port, rc;

    if (bw__ynode_bool(v) == 0) {
        free(c->cfg->web_addr);
        c->cfg->web_addr = NULL;
        c->cfg->web_disabled = 1;
        return 0;
    }
    if (!bw__ynode_scalar(v) ||
        (!bw__ynode_null(v) && bw_split_hostport(v->text, host, sizeof host, &port) != 0))
        return bw__config_fail(c, v, "'web_addr' must be host:port or false, not '%s'",
                               bw__ynode_desc(v));
    rc = set_str(c, k, v, &c->cfg->web_addr);
    if (rc == 0 && !bw__ynode_null(v))
        c->cfg->web_disabled = 0;
    return rc;
}

void bw__config_free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static int set_web_allow_hosts(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    char **list;

    if (bw__ynode_null(v))
        return 0;
    if (v->kind != YAML_SEQUENCE_NODE)
        return bw__config_fail(c, v, "'%s' must be a list of host names", k->text);
    list = calloc(v->n + 1, sizeof *list); /* NULL-terminated, as httpd takes it */
    if (!list)
        return bw__config_nomem(c);
    for (size_t i = 0; i < v->n; i++) {
        if (!bw__ynode_scalar(v->kids[i])) {
            bw__config_free_list(list, i);
            return bw__config_fail(c, v->kids[i], "'%s' must be a list of host names", k->text);
        }
        list[i] = strdup(v->kids[i]->text);
        if (!list[i]) {
            bw__config_free_list(list, i);
            return bw__config_nomem(c);
        }
    }
    bw__config_free_list(c->cfg->web_allow_hosts, c->cfg->n_web_allow_hosts);
    c->cfg->web_allow_hosts = list;
    c->cfg->n_web_allow_hosts = v->n;
    return 0;
}

static int set_inspect_db_size(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    long long n;

    if (bw__ynode_null(v))
        return 0;
    if (!bw__ynode_scalar(v) || bw_parse_int(v->text, INT64_MIN, INT64_MAX, &n) != 0 || n < -1)
        return bw__config_fail(
            c, v,
            "inspect db size must be a positive integer, 0 for default, or -1 to "
            "disable (got '%s')",
            bw__ynode_desc(v));
    c->cfg->inspect_db_size = n;
    return 0;
}

static int set_console_ui(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (bw__ynode_null(v))
        return 0;
    if (bw__ynode_scalar(v) && strcmp(v->text, "iftty") == 0)
        c->cfg->console_ui = BW_CONSOLE_UI_IFTTY;
    else if (bw__ynode_scalar(v) && strcmp(v->text, "true") == 0)
        c->cfg->console_ui = BW_CONSOLE_UI_TRUE;
    else if (bw__ynode_scalar(v) && strcmp(v->text, "false") == 0)
        c->cfg->console_ui = BW_CONSOLE_UI_FALSE;
    else
        return bw__config_fail(c, v, "'console_ui' must be iftty, true or false, not '%s'",
                               bw__ynode_desc(v));
    return 0;
}

static int set_log_level(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (bw__ynode_scalar(v) && !bw__ynode_null(v) && bw_log_parse_level(v->text) < 0)
        return bw__config_fail(
            c, v, "invalid 'log_level' '%s': must be crit, error, warn, info or debug", v->text);
    return set_str(c, k, v, &c->cfg->log_level);
}

static int set_log_format(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (bw__ynode_scalar(v) && !bw__ynode_null(v) && bw_log_parse_format(v->text) < 0)
        return bw__config_fail(c, v, "invalid 'log_format' '%s': must be term, logfmt or json",
                               v->text);
    return set_str(c, k, v, &c->cfg->log_format);
}

/* The token travels in the edge protocol's Auth, whose strings are at most
 * BW_CONFIG_MAX_AUTHTOKEN bytes: a longer one could only ever be refused
 * by the edge, after connecting. */
static int set_authtoken(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (bw__ynode_scalar(v) && v->len > BW_CONFIG_MAX_AUTHTOKEN)
        return bw__config_fail(c, v,
                               "'authtoken' is %zu bytes, longer than the protocol's limit of %d "
                               "bytes",
                               v->len, BW_CONFIG_MAX_AUTHTOKEN);
    return set_str(c, k, v, &c->cfg->authtoken);
}

static int set_metadata(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (bw__ynode_scalar(v) && v->len > MAX_METADATA)
        return bw__config_fail(c, v, "'metadata' is longer than %d characters", MAX_METADATA);
    return set_str(c, k, v, &c->cfg->metadata);
}

enum { K_STR, K_DUR, K_FN, K_IGNORE };

typedef int (*key_fn)(ctx_t *c, const ynode_t *k, const ynode_t *v);

static const struct topkey {
    const char *key;
    int kind;
    size_t off; /* K_STR, K_DUR: the field in bw_config_t */
    key_fn fn;  /* K_FN */
} topkeys[] = {
    {"authtoken", K_FN, 0, set_authtoken},
    {"server_addr", K_STR, offsetof(bw_config_t, server_addr), NULL},
    {"root_cas", K_STR, offsetof(bw_config_t, root_cas), NULL},
    {"region", K_STR, offsetof(bw_config_t, region), NULL},
    {"api_key", K_STR, offsetof(bw_config_t, api_key), NULL},
    {"proxy_url", K_STR, offsetof(bw_config_t, proxy_url), NULL},
    {"log", K_STR, offsetof(bw_config_t, log), NULL},
    {"heartbeat_interval", K_DUR, offsetof(bw_config_t, heartbeat_interval_ms), NULL},
    {"heartbeat_tolerance", K_DUR, offsetof(bw_config_t, heartbeat_tolerance_ms), NULL},
    {"connect_timeout", K_DUR, offsetof(bw_config_t, connect_timeout_ms), NULL},
    {"web_addr", K_FN, 0, set_web_addr},
    {"web_allow_hosts", K_FN, 0, set_web_allow_hosts},
    {"inspect_db_size", K_FN, 0, set_inspect_db_size},
    {"console_ui", K_FN, 0, set_console_ui},
    {"log_level", K_FN, 0, set_log_level},
    {"log_format", K_FN, 0, set_log_format},
    {"metadata", K_FN, 0, set_metadata},
    {"tunnels", K_FN, 0, bw__config_apply_tunnels},
    {"version", K_IGNORE, 0, NULL}, /* read first, by read_version */
    /* ngrok keys burrow accepts and has no use for */
    {"update", K_IGNORE, 0, NULL},
    {"update_channel", K_IGNORE, 0, NULL},
    {"update_check", K_IGNORE, 0, NULL},
    {"dns_resolver_ips", K_IGNORE, 0, NULL},
    {"http_proxy", K_IGNORE, 0, NULL},
    {"socks5_proxy", K_IGNORE, 0, NULL},
    {"server_sni", K_IGNORE, 0, NULL},
    {"json_resolver_url", K_IGNORE, 0, NULL},
    {"pprof_addr", K_IGNORE, 0, NULL},
    {"crash_report_url", K_IGNORE, 0, NULL},
    {"compress_conn", K_IGNORE, 0, NULL},
    {"console_ui_color", K_IGNORE, 0, NULL},
    {"remote_management", K_IGNORE, 0, NULL},
    {"connect_interface", K_IGNORE, 0, NULL},
    {"crl_noverify", K_IGNORE, 0, NULL},
    {"crl_timeout", K_IGNORE, 0, NULL},
    {"api_base_url", K_IGNORE, 0, NULL},
};

/* ---------------------------------------------------------------------------
 * Top level
 * ------------------------------------------------------------------------- */

static int read_version(ctx_t *c, const ynode_t *root)
{
    const ynode_t *v = bw__ynode_value(root, "version");

    c->version = 1;
    if (!v || bw__ynode_null(v))
        return 0;
    if (bw__ynode_scalar(v) && strcmp(v->text, "2") == 0) {
        c->version = 2;
        return 0;
    }
    if (bw__ynode_scalar(v) && strcmp(v->text, "3") == 0)
        return bw__config_fail(
            c, v,
            "config version 3 (agent:/endpoints:) is not supported yet; use version "
            "\"2\" or an unversioned ngrok v2 file");
    return bw__config_fail(c, v,
                           "unsupported config version '%s' (supported: \"2\", or no version)",
                           bw__ynode_desc(v));
}

static int find_topkey(const char *key)
{
    for (size_t i = 0; i < BW_ARRAY_SIZE(topkeys); i++)
        if (strcmp(topkeys[i].key, key) == 0)
            return (int)i;
    return -1;
}

static int apply_known(ctx_t *c, const struct topkey *t, const ynode_t *k, const ynode_t *v)
{
    switch (t->kind) {
    case K_STR:
        return set_str(c, k, v, (char **)((char *)c->cfg + t->off));
    case K_DUR:
        return set_duration(c, k, v, (uint64_t *)((char *)c->cfg + t->off));
    case K_FN:
        return t->fn(c, k, v);
    default:
        return 0;
    }
}

/* ngrok v2 ignores unknown keys; say so rather than fail. */
static void log_unknown(const ctx_t *c, const ynode_t *k)
{
    bw_log_level_t level = c->version == 2 ? BW_LOG_WARN : BW_LOG_DEBUG;
    char line[16];

    if (!bw_log_enabled(level))
        return;
    snprintf(line, sizeof line, "%d", k->line);
    bw_log(level, "ignoring unknown config key", "key", k->text, "path", c->file, "line", line,
           NULL);
}

static int apply_root(ctx_t *c, const ynode_t *root)
{
    int first_line[BW_ARRAY_SIZE(topkeys)] = {0};
    int rc;

    if (!root || bw__ynode_null(root))
        return 0;
    if (root->kind != YAML_MAPPING_NODE)
        return bw__config_fail(c, root, "config must be a mapping of keys to values, not %s",
                               bw__ynode_desc(root));
    rc = read_version(c, root);
    for (size_t i = 0; rc == 0 && i + 1 < root->n; i += 2) {
        const ynode_t *k = root->kids[i];
        int t;

        if (!bw__ynode_scalar(k))
            return bw__config_fail(c, k, "config keys must be strings, not %s", bw__ynode_desc(k));
        t = find_topkey(k->text);
        if (t < 0) {
            log_unknown(c, k);
            continue;
        }
        if (first_line[t])
            return bw__config_fail(c, k, "'%s' is defined twice (first at line %d)", k->text,
                                   first_line[t]);
        first_line[t] = k->line;
        rc = apply_known(c, &topkeys[t], k, root->kids[i + 1]);
    }
    return rc;
}

/* ---------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------- */

void bw_config_init(bw_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
}

void bw_config_free(bw_config_t *cfg)
{
    char **strs[] = {&cfg->authtoken, &cfg->server_addr, &cfg->root_cas,   &cfg->web_addr,
                     &cfg->log,       &cfg->log_level,   &cfg->log_format, &cfg->region,
                     &cfg->metadata,  &cfg->api_key,     &cfg->proxy_url};

    if (!cfg)
        return;
    for (size_t i = 0; i < BW_ARRAY_SIZE(strs); i++)
        free(*strs[i]);
    bw__config_free_list(cfg->web_allow_hosts, cfg->n_web_allow_hosts);
    for (size_t i = 0; i < cfg->n_tunnels; i++) {
        free(cfg->tunnels[i].name);
        json_decref(cfg->tunnels[i].def);
        json_decref(cfg->tunnels[i].marks);
        free(cfg->tunnels[i].file);
    }
    free(cfg->tunnels);
    bw__config_free_list(cfg->files, cfg->n_files);
    bw_config_init(cfg);
}

/* ngrok refuses tabs up front, before YAML sees them. */
static int check_tabs(const char *buf, size_t len, const char *file, char *err, size_t errlen)
{
    int line = 1;
    size_t i = 0;

    while (i < len) {
        for (int col = 1; i < len && (buf[i] == ' ' || buf[i] == '\t'); i++, col++) {
            if (buf[i] == '\t') {
                bw__config_seterr(
                    err, errlen, file, line, col,
                    "config contains tab characters, YAML must use spaces for indentation");
                return BW_EINVAL;
            }
        }
        const char *nl = memchr(buf + i, '\n', len - i);
        if (!nl)
            break;
        i = (size_t)(nl - buf) + 1;
        line++;
    }
    return 0;
}

static int add_file(bw_config_t *cfg, const char *name)
{
    char **files = realloc(cfg->files, (cfg->n_files + 1) * sizeof *files);
    if (!files)
        return BW_ENOMEM;
    cfg->files = files;
    files[cfg->n_files] = strdup(name);
    if (!files[cfg->n_files])
        return BW_ENOMEM;
    cfg->n_files++;
    return 0;
}

int bw_config_parse(bw_config_t *cfg, const char *buf, size_t len, const char *name, char *err,
                    size_t errlen)
{
    ctx_t c = {.cfg = cfg, .file = name, .err = err, .errlen = errlen};
    ynode_t *root = NULL;
    int rc;

    if (len > BW_CONFIG_MAX_FILE_SIZE) {
        bw__config_seterr(err, errlen, name, 0, 0, "config file is larger than %d bytes",
                          BW_CONFIG_MAX_FILE_SIZE);
        return BW_EMSGSIZE;
    }
    rc = check_tabs(buf, len, name, err, errlen);
    if (rc == 0)
        rc = bw__yaml_read(buf, len, name, &root, err, errlen);
    if (rc == 0)
        rc = apply_root(&c, root);
    if (rc == 0) {
        cfg->version = c.version ? c.version : 1;
        if (add_file(cfg, name) != 0)
            rc = bw__config_nomem(&c);
    }
    bw__ynode_free(root);
    return rc;
}

/* Read a whole file of at most BW_CONFIG_MAX_FILE_SIZE bytes into a new
 * buffer. Returns 0, a negative errno, or BW_EMSGSIZE, with err set. */
int bw__config_read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        bw__config_seterr(err, errlen, path, 0, 0, "open config file: %s", strerror(errno));
        return rc;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = BW_EINVAL;
        bw__config_seterr(err, errlen, path, 0, 0, "config path is not a regular file");
        goto out;
    }
    buf = malloc(BW_CONFIG_MAX_FILE_SIZE + 1);
    if (!buf) {
        rc = BW_ENOMEM;
        goto out;
    }
    /* Read one byte past the limit to notice files that grew after fstat. */
    while (len <= BW_CONFIG_MAX_FILE_SIZE) {
        ssize_t n = read(fd, buf + len, BW_CONFIG_MAX_FILE_SIZE + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            bw__config_seterr(err, errlen, path, 0, 0, "read config file: %s", strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > BW_CONFIG_MAX_FILE_SIZE) {
        rc = BW_EMSGSIZE;
        bw__config_seterr(err, errlen, path, 0, 0, "config file is larger than %d bytes",
                          BW_CONFIG_MAX_FILE_SIZE);
    }
out:
    close(fd);
    if (rc == 0) {
        *out = buf;
        *outlen = len;
    } else {
        free(buf);
    }
    return rc;
}

int bw_config_load(bw_config_t *cfg, const char *const *paths, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char *buf;
        size_t len;
        int rc = bw__config_read_file(paths[i], &buf, &len, err, errlen);
        if (rc == 0) {
            rc = bw_config_parse(cfg, buf, len, paths[i], err, errlen);
            free(buf);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int bw_config_default_path(char *out, size_t outlen)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");

    /* The XDG spec says to ignore relative values. */
    if (xdg && xdg[0] == '/')
        return bw_fmt(out, outlen, "%s/burrow/burrow.yml", xdg);
    if (!home || !*home)
        return BW_ENOENT;
    return bw_fmt(out, outlen, "%s/.config/burrow/burrow.yml", home);
}

int bw_config_load_default(bw_config_t *cfg, char *path, size_t pathlen, char *err, size_t errlen)
{
    const char *p = path;
    struct stat st;
    int rc;

    if (pathlen)
        path[0] = '\0';
    rc = bw_config_default_path(path, pathlen);
    if (rc != 0) {
        if (err && errlen)
            snprintf(err, errlen, "no default config path: set HOME or XDG_CONFIG_HOME");
        return rc;
    }
    if (stat(path, &st) != 0 && errno == ENOENT) {
        bw__config_seterr(err, errlen, path, 0, 0,
                          "ignoring default config path, could not stat it");
        return BW_ENOENT;
    }
    return bw_config_load(cfg, &p, 1, err, errlen);
}
