/* The agent's config files (ngrok-compatible YAML). See config.h.
 *
 * libyaml's event parser builds a small tree of nodes that remember their
 * line and column, so every error can point at the offending key. Building
 * our own tree (rather than yaml_document_t) lets us stop early on aliases,
 * depth and size limits, and keep only the first document, as Go's
 * yaml.Unmarshal does.
 */
#include "config.h"

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
#define MAX_TOKEN    4096

/* ---------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------- */

static void vseterr(char *err, size_t errlen, const char *file, int line, int col, const char *fmt,
                    va_list ap)
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

__attribute__((format(printf, 6, 7))) static void seterr(char *err, size_t errlen, const char *file,
                                                         int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vseterr(err, errlen, file, line, col, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------------------
 * YAML → node tree
 * ------------------------------------------------------------------------- */

typedef struct ynode ynode_t;
struct ynode {
    yaml_node_type_t kind; /* YAML_SCALAR_NODE, YAML_SEQUENCE_NODE or YAML_MAPPING_NODE */
    int plain;             /* untagged plain scalar: may resolve to null, bool or int */
    char *text;            /* scalars: NUL-terminated, no NUL inside */
    size_t len;
    int line, col;  /* 1-based */
    ynode_t **kids; /* sequence items, or mapping key, value, key, value, ... */
    size_t n, cap;
};

typedef struct yread {
    yaml_parser_t parser;
    const char *file;
    const char *buf;
    size_t len;
    size_t nodes;
    int depth;
    ynode_t *stack[BW_CONFIG_MAX_DEPTH];
    ynode_t *root;
    char *err;
    size_t errlen;
} yread_t;

static void ynode_free(ynode_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        ynode_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n);
}

static int ynode_append(ynode_t *parent, ynode_t *kid)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        ynode_t **k = realloc(parent->kids, cap * sizeof *k);
        if (!k)
            return BW_ENOMEM;
        parent->kids = k;
        parent->cap = cap;
    }
    parent->kids[parent->n++] = kid;
    return 0;
}

/* libyaml reports reader errors (bad encoding) as a byte offset. */
static void offset_to_mark(const char *buf, size_t len, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            ++*line;
            *col = 1;
        } else {
            ++*col;
        }
    }
}

static int yread_fail(yread_t *y)
{
    yaml_parser_t *p = &y->parser;
    const char *problem = p->problem ? p->problem : "unknown error";
    int line, col;

    if (p->error == YAML_MEMORY_ERROR) {
        seterr(y->err, y->errlen, y->file, 0, 0, "out of memory parsing YAML");
        return BW_ENOMEM;
    }
    if (p->error == YAML_READER_ERROR) {
        offset_to_mark(y->buf, y->len, p->problem_offset, &line, &col);
    } else {
        line = (int)p->problem_mark.line + 1;
        col = (int)p->problem_mark.column + 1;
    }
    if (p->context)
        seterr(y->err, y->errlen, y->file, 0, 0,
               "YAML parsing error: %s at line %d column %d (%s at line %d column %d)", problem,
               line, col, p->context, (int)p->context_mark.line + 1,
               (int)p->context_mark.column + 1);
    else
        seterr(y->err, y->errlen, y->file, 0, 0, "YAML parsing error: %s at line %d column %d",
               problem, line, col);
    return BW_EINVAL;
}

static ynode_t *ynode_new(yread_t *y, yaml_node_type_t kind, const yaml_event_t *ev)
{
    ynode_t *n;

    if (++y->nodes > BW_CONFIG_MAX_NODES) {
        seterr(y->err, y->errlen, y->file, (int)ev->start_mark.line + 1,
               (int)ev->start_mark.column + 1, "config has more than %d YAML nodes",
               BW_CONFIG_MAX_NODES);
        return NULL;
    }
    n = calloc(1, sizeof *n);
    if (!n) {
        seterr(y->err, y->errlen, y->file, 0, 0, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->line = (int)ev->start_mark.line + 1;
    n->col = (int)ev->start_mark.column + 1;
    return n;
}

static int yread_attach(yread_t *y, ynode_t *n)
{
    if (y->depth == 0) {
        y->root = n;
        return 0;
    }
    if (ynode_append(y->stack[y->depth - 1], n) != 0) {
        ynode_free(n);
        seterr(y->err, y->errlen, y->file, 0, 0, "out of memory");
        return BW_ENOMEM;
    }
    return 0;
}

static int yread_scalar(yread_t *y, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    ynode_t *n;

    /* "\0" escapes would silently cut C strings short. */
    if (memchr(v, '\0', len)) {
        seterr(y->err, y->errlen, y->file, (int)ev->start_mark.line + 1,
               (int)ev->start_mark.column + 1, "NUL characters are not allowed in values");
        return BW_EINVAL;
    }
    n = ynode_new(y, YAML_SCALAR_NODE, ev);
    if (!n)
        return y->nodes > BW_CONFIG_MAX_NODES ? BW_EINVAL : BW_ENOMEM;
    n->plain = ev->data.scalar.plain_implicit;
    n->len = len;
    n->text = malloc(len + 1);
    if (!n->text) {
        ynode_free(n);
        seterr(y->err, y->errlen, y->file, 0, 0, "out of memory");
        return BW_ENOMEM;
    }
    memcpy(n->text, v, len);
    n->text[len] = '\0';
    return yread_attach(y, n);
}

static int yread_open(yread_t *y, const yaml_event_t *ev, yaml_node_type_t kind)
{
    ynode_t *n;
    int rc;

    if (y->depth >= BW_CONFIG_MAX_DEPTH) {
        seterr(y->err, y->errlen, y->file, (int)ev->start_mark.line + 1,
               (int)ev->start_mark.column + 1, "config is nested deeper than %d levels",
               BW_CONFIG_MAX_DEPTH);
        return BW_EINVAL;
    }
    n = ynode_new(y, kind, ev);
    if (!n)
        return y->nodes > BW_CONFIG_MAX_NODES ? BW_EINVAL : BW_ENOMEM;
    rc = yread_attach(y, n);
    if (rc == 0)
        y->stack[y->depth++] = n;
    return rc;
}

static int yread_event(yread_t *y, const yaml_event_t *ev, int *done)
{
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
    case YAML_DOCUMENT_END_EVENT: /* only the first document counts */
        *done = 1;
        return 0;
    case YAML_ALIAS_EVENT:
        /* Aliases make "billion laughs" inputs possible; ngrok files never need them. */
        seterr(y->err, y->errlen, y->file, (int)ev->start_mark.line + 1,
               (int)ev->start_mark.column + 1, "YAML aliases (*%s) are not supported",
               (const char *)ev->data.alias.anchor);
        return BW_EINVAL;
    case YAML_SCALAR_EVENT:
        return yread_scalar(y, ev);
    case YAML_SEQUENCE_START_EVENT:
        return yread_open(y, ev, YAML_SEQUENCE_NODE);
    case YAML_MAPPING_START_EVENT:
        return yread_open(y, ev, YAML_MAPPING_NODE);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        y->depth--;
        return 0;
    default:
        return 0;
    }
}

/* Parse buf into a tree. *root is NULL for an empty document. Returns 0 or
 * BW_EINVAL/BW_ENOMEM with err set; *root is owned by the caller. */
static int yread(const char *buf, size_t len, const char *file, ynode_t **root, char *err,
                 size_t errlen)
{
    yread_t y = {.file = file, .buf = buf, .len = len, .err = err, .errlen = errlen};
    yaml_event_t ev;
    int done = 0, rc = 0;

    *root = NULL;
    if (!yaml_parser_initialize(&y.parser)) {
        seterr(err, errlen, file, 0, 0, "out of memory");
        return BW_ENOMEM;
    }
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)buf, len);
    while (!done && rc == 0) {
        if (!yaml_parser_parse(&y.parser, &ev)) {
            rc = yread_fail(&y);
            break;
        }
        rc = yread_event(&y, &ev, &done);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&y.parser);
    if (rc != 0)
        ynode_free(y.root);
    else
        *root = y.root;
    return rc;
}

/* ---------------------------------------------------------------------------
 * Node helpers
 * ------------------------------------------------------------------------- */

static int is_scalar(const ynode_t *n)
{
    return n->kind == YAML_SCALAR_NODE;
}

static int is_null(const ynode_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (!is_scalar(n) || !n->plain)
        return 0;
    for (size_t i = 0; i < BW_ARRAY_SIZE(nulls); i++)
        if (strcmp(n->text, nulls[i]) == 0)
            return 1;
    return 0;
}

/* A plain true/false (YAML 1.2 core schema spellings). Returns 0/1, or -1. */
static int plain_bool(const ynode_t *n)
{
    static const char *const t[] = {"true", "True", "TRUE"};
    static const char *const f[] = {"false", "False", "FALSE"};
    if (!is_scalar(n) || !n->plain)
        return -1;
    for (size_t i = 0; i < BW_ARRAY_SIZE(t); i++) {
        if (strcmp(n->text, t[i]) == 0)
            return 1;
        if (strcmp(n->text, f[i]) == 0)
            return 0;
    }
    return -1;
}

/* A plain decimal integer; leading zeros stay text (YAML 1.1 would read octal). */
static int plain_int(const ynode_t *n, long long *v)
{
    const char *s = n->text;
    if (!is_scalar(n) || !n->plain)
        return 0;
    if (*s == '-' || *s == '+')
        s++;
    if (s[0] == '0' && s[1] != '\0')
        return 0;
    return bw_parse_int(n->text, LLONG_MIN, LLONG_MAX, v) == 0;
}

static const char *node_desc(const ynode_t *n)
{
    if (n->kind == YAML_SEQUENCE_NODE)
        return "a sequence";
    if (n->kind == YAML_MAPPING_NODE)
        return "a mapping";
    return n->text;
}

/* The key node of `key` in a mapping, or NULL. */
static const ynode_t *map_key(const ynode_t *map, const char *key)
{
    for (size_t i = 0; i + 1 < map->n; i += 2)
        if (is_scalar(map->kids[i]) && strcmp(map->kids[i]->text, key) == 0)
            return map->kids[i];
    return NULL;
}

static const ynode_t *map_value(const ynode_t *map, const char *key)
{
    for (size_t i = 0; i + 1 < map->n; i += 2)
        if (is_scalar(map->kids[i]) && strcmp(map->kids[i]->text, key) == 0)
            return map->kids[i + 1];
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Applying a file to a config
 * ------------------------------------------------------------------------- */

typedef struct ctx {
    bw_config_t *cfg;
    const char *file;
    int version;
    char *err;
    size_t errlen;
} ctx_t;

__attribute__((format(printf, 3, 4))) static int fail(const ctx_t *c, const ynode_t *at,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vseterr(c->err, c->errlen, c->file, at ? at->line : 0, at ? at->col : 0, fmt, ap);
    va_end(ap);
    return BW_EINVAL;
}

static int nomem(const ctx_t *c)
{
    seterr(c->err, c->errlen, c->file, 0, 0, "out of memory");
    return BW_ENOMEM;
}

static int set_str(const ctx_t *c, const ynode_t *k, const ynode_t *v, char **dst)
{
    char *s;

    if (!is_scalar(v))
        return fail(c, v, "'%s' must be a string, not %s", k->text, node_desc(v));
    if (is_null(v))
        return 0; /* an empty value does not override an earlier file */
    s = strdup(v->text);
    if (!s)
        return nomem(c);
    free(*dst);
    *dst = s;
    return 0;
}

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

    if (is_null(v))
        return 0;
    if (!is_scalar(v) || !duration_ok(v->text) || bw_parse_duration_ms(v->text, &ms) != 0)
        return fail(c, v, "'%s' is not a valid duration: '%s' (use e.g. 10s, 1m30s, 250ms)",
                    k->text, node_desc(v));
    *dst = ms;
    return 0;
}

static int set_web_addr(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    char host[256];
    int port, rc;

    if (plain_bool(v) == 0) {
        free(c->cfg->web_addr);
        c->cfg->web_addr = NULL;
        c->cfg->web_disabled = 1;
        return 0;
    }
    if (!is_scalar(v) || (!is_null(v) && bw_split_hostport(v->text, host, sizeof host, &port) != 0))
        return fail(c, v, "'web_addr' must be host:port or false, not '%s'", node_desc(v));
    rc = set_str(c, k, v, &c->cfg->web_addr);
    if (rc == 0 && !is_null(v))
        c->cfg->web_disabled = 0;
    return rc;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static int set_web_allow_hosts(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    char **list;

    if (is_null(v))
        return 0;
    if (v->kind != YAML_SEQUENCE_NODE)
        return fail(c, v, "'%s' must be a list of host names", k->text);
    list = calloc(v->n + 1, sizeof *list); /* NULL-terminated, as httpd takes it */
    if (!list)
        return nomem(c);
    for (size_t i = 0; i < v->n; i++) {
        if (!is_scalar(v->kids[i])) {
            free_list(list, i);
            return fail(c, v->kids[i], "'%s' must be a list of host names", k->text);
        }
        list[i] = strdup(v->kids[i]->text);
        if (!list[i]) {
            free_list(list, i);
            return nomem(c);
        }
    }
    free_list(c->cfg->web_allow_hosts, c->cfg->n_web_allow_hosts);
    c->cfg->web_allow_hosts = list;
    c->cfg->n_web_allow_hosts = v->n;
    return 0;
}

static int set_inspect_db_size(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    long long n;

    if (is_null(v))
        return 0;
    if (!is_scalar(v) || bw_parse_int(v->text, INT64_MIN, INT64_MAX, &n) != 0 || n < -1)
        return fail(c, v,
                    "inspect db size must be a positive integer, 0 for default, or -1 to "
                    "disable (got '%s')",
                    node_desc(v));
    c->cfg->inspect_db_size = n;
    return 0;
}

static int set_console_ui(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (is_null(v))
        return 0;
    if (is_scalar(v) && strcmp(v->text, "iftty") == 0)
        c->cfg->console_ui = BW_CONSOLE_UI_IFTTY;
    else if (is_scalar(v) && strcmp(v->text, "true") == 0)
        c->cfg->console_ui = BW_CONSOLE_UI_TRUE;
    else if (is_scalar(v) && strcmp(v->text, "false") == 0)
        c->cfg->console_ui = BW_CONSOLE_UI_FALSE;
    else
        return fail(c, v, "'console_ui' must be iftty, true or false, not '%s'", node_desc(v));
    return 0;
}

static int set_log_level(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (is_scalar(v) && !is_null(v) && bw_log_parse_level(v->text) < 0)
        return fail(c, v, "invalid 'log_level' '%s': must be crit, error, warn, info or debug",
                    v->text);
    return set_str(c, k, v, &c->cfg->log_level);
}

static int set_log_format(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (is_scalar(v) && !is_null(v) && bw_log_parse_format(v->text) < 0)
        return fail(c, v, "invalid 'log_format' '%s': must be term, logfmt or json", v->text);
    return set_str(c, k, v, &c->cfg->log_format);
}

static int set_metadata(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (is_scalar(v) && v->len > MAX_METADATA)
        return fail(c, v, "'metadata' is longer than %d characters", MAX_METADATA);
    return set_str(c, k, v, &c->cfg->metadata);
}

static int apply_tunnels(ctx_t *c, const ynode_t *k, const ynode_t *v);

enum { K_STR, K_DUR, K_FN, K_IGNORE };

typedef int (*key_fn)(ctx_t *c, const ynode_t *k, const ynode_t *v);

static const struct topkey {
    const char *key;
    int kind;
    size_t off; /* K_STR, K_DUR: the field in bw_config_t */
    key_fn fn;  /* K_FN */
} topkeys[] = {
    {"authtoken", K_STR, offsetof(bw_config_t, authtoken), NULL},
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
    {"tunnels", K_FN, 0, apply_tunnels},
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
 * Tunnels
 * ------------------------------------------------------------------------- */

static int node_to_json(const ctx_t *c, const ynode_t *n, json_t **out);

static json_t *scalar_to_json(const ynode_t *n)
{
    long long v;
    int b;

    if (is_null(n))
        return json_null();
    b = plain_bool(n);
    if (b >= 0)
        return json_boolean(b);
    if (plain_int(n, &v))
        return json_integer((json_int_t)v);
    return json_stringn(n->text, n->len);
}

static int seq_to_json(const ctx_t *c, const ynode_t *n, json_t *arr)
{
    for (size_t i = 0; i < n->n; i++) {
        json_t *item;
        int rc = node_to_json(c, n->kids[i], &item);
        if (rc != 0)
            return rc;
        if (json_array_append_new(arr, item) != 0)
            return nomem(c);
    }
    return 0;
}

static int map_to_json(const ctx_t *c, const ynode_t *n, json_t *obj)
{
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const ynode_t *k = n->kids[i];
        json_t *val;
        int rc;

        if (!is_scalar(k))
            return fail(c, k, "mapping keys must be strings, not %s", node_desc(k));
        if (json_object_get(obj, k->text))
            return fail(c, k, "key '%s' is defined twice", k->text);
        rc = node_to_json(c, n->kids[i + 1], &val);
        if (rc != 0)
            return rc;
        if (json_object_set_new(obj, k->text, val) != 0)
            return nomem(c);
    }
    return 0;
}

/* Scalars keep their YAML type (plain ints and booleans), sequences become
 * arrays and mappings objects. Returns 0 with a new reference in *out. */
static int node_to_json(const ctx_t *c, const ynode_t *n, json_t **out)
{
    json_t *j;
    int rc = 0;

    if (is_scalar(n)) {
        j = scalar_to_json(n);
    } else {
        j = n->kind == YAML_SEQUENCE_NODE ? json_array() : json_object();
        if (j)
            rc = n->kind == YAML_SEQUENCE_NODE ? seq_to_json(c, n, j) : map_to_json(c, n, j);
    }
    if (!j)
        return nomem(c);
    if (rc != 0) {
        json_decref(j);
        return rc;
    }
    *out = j;
    return 0;
}

static int has(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v);
}

/* What every tunnel needs, whatever plugin serves it (ngrok's texts). */
static int check_tunnel(const ctx_t *c, const ynode_t *kname, const ynode_t *def, const json_t *obj)
{
    const char *name = kname->text;
    const json_t *proto = json_object_get(obj, "proto"), *addr = json_object_get(obj, "addr");

    if (!has(obj, "proto") && !has(obj, "labels"))
        return fail(c, kname, "Tunnel %s does not specify a protocol ('proto')", name);
    if (has(obj, "proto") && !json_is_string(proto))
        return fail(c, map_value(def, "proto"), "Tunnel %s: 'proto' must be a string", name);
    if (!has(obj, "addr"))
        return fail(c, kname, "Tunnel %s must specify 'addr' to tunnel to", name);
    if (!json_is_string(addr) && !json_is_integer(addr))
        return fail(c, map_value(def, "addr"), "Tunnel %s: 'addr' must be a port or an address",
                    name);
    /* Binding keys are the core's (it sends them to the edge), whatever
     * plugin serves the tunnel. */
    if (has(obj, "hostname") && has(obj, "subdomain"))
        return fail(c, map_key(def, "hostname"),
                    "Tunnel %s must not specify both hostname and subdomain.", name);
    return 0;
}

/* Where each key of the tunnel mapping `def` and its value stand:
 * {key: [key line, key col, value line, value col]}. NULL on ENOMEM. */
static json_t *key_marks(const ynode_t *def)
{
    json_t *marks = json_object();
    for (size_t i = 0; marks && i + 1 < def->n; i += 2) {
        const ynode_t *k = def->kids[i], *v = def->kids[i + 1];
        json_t *m = json_pack("[iiii]", k->line, k->col, v->line, v->col);
        if (!m || json_object_set_new(marks, k->text, m) != 0) {
            json_decref(marks);
            return NULL;
        }
    }
    return marks;
}

static bw_config_tunnel_t *find_tunnel(bw_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_tunnels; i++)
        if (strcmp(cfg->tunnels[i].name, name) == 0)
            return &cfg->tunnels[i];
    return NULL;
}

/* Replace the tunnel called `name` or append it. Takes the references of
 * `def` and `marks`. */
static int upsert_tunnel(const ctx_t *c, const ynode_t *kname, json_t *def, json_t *marks)
{
    bw_config_t *cfg = c->cfg;
    bw_config_tunnel_t *t = find_tunnel(cfg, kname->text), *arr;
    char *file = strdup(c->file), *name = NULL;

    if (!file || !marks)
        goto err_nomem;
    if (!t) {
        if (cfg->n_tunnels >= BW_CONFIG_MAX_TUNNELS) {
            free(file);
            json_decref(def);
            json_decref(marks);
            return fail(c, kname, "more than %d tunnels", BW_CONFIG_MAX_TUNNELS);
        }
        name = strdup(kname->text);
        arr = realloc(cfg->tunnels, (cfg->n_tunnels + 1) * sizeof *arr);
        if (!name || !arr)
            goto err_nomem;
        cfg->tunnels = arr;
        t = &arr[cfg->n_tunnels++];
        *t = (bw_config_tunnel_t){.name = name};
    }
    json_decref(t->def);
    json_decref(t->marks);
    free(t->file);
    t->def = def;
    t->marks = marks;
    t->file = file;
    t->line = kname->line;
    t->strict = c->version == 2;
    return 0;

err_nomem:
    free(name);
    free(file);
    json_decref(def);
    json_decref(marks);
    return nomem(c);
}

static int apply_tunnel(ctx_t *c, const ynode_t *kname, const ynode_t *def)
{
    json_t *obj = NULL;
    int rc;

    if (!is_scalar(kname) || is_null(kname) || kname->len == 0)
        return fail(c, kname, "tunnel names must be non-empty strings");
    if (def->kind != YAML_MAPPING_NODE)
        return fail(c, def, "tunnel \"%s\" must be a mapping of options, not %s", kname->text,
                    is_null(def) ? "empty" : node_desc(def));
    rc = node_to_json(c, def, &obj);
    if (rc == 0)
        rc = check_tunnel(c, kname, def, obj);
    if (rc != 0) {
        json_decref(obj);
        return rc;
    }
    return upsert_tunnel(c, kname, obj, key_marks(def));
}

static int apply_tunnels(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (is_null(v))
        return 0;
    if (v->kind != YAML_MAPPING_NODE)
        return fail(c, v, "'tunnels' must be a mapping of tunnel names to definitions, not %s",
                    node_desc(v));
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const ynode_t *kname = v->kids[i];
        int rc;

        /* Names are unique within a file; a later file may redefine one. */
        for (size_t j = 0; j < i && is_scalar(kname); j += 2)
            if (is_scalar(v->kids[j]) && strcmp(v->kids[j]->text, kname->text) == 0)
                return fail(c, kname, "tunnel \"%s\" is defined twice (first at line %d)",
                            kname->text, v->kids[j]->line);
        rc = apply_tunnel(c, kname, v->kids[i + 1]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Top level
 * ------------------------------------------------------------------------- */

static int read_version(ctx_t *c, const ynode_t *root)
{
    const ynode_t *v = map_value(root, "version");

    c->version = 1;
    if (!v || is_null(v))
        return 0;
    if (is_scalar(v) && strcmp(v->text, "2") == 0) {
        c->version = 2;
        return 0;
    }
    if (is_scalar(v) && strcmp(v->text, "3") == 0)
        return fail(c, v,
                    "config version 3 (agent:/endpoints:) is not supported yet; use version "
                    "\"2\" or an unversioned ngrok v2 file");
    return fail(c, v, "unsupported config version '%s' (supported: \"2\", or no version)",
                node_desc(v));
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

    if (!root || is_null(root))
        return 0;
    if (root->kind != YAML_MAPPING_NODE)
        return fail(c, root, "config must be a mapping of keys to values, not %s", node_desc(root));
    rc = read_version(c, root);
    for (size_t i = 0; rc == 0 && i + 1 < root->n; i += 2) {
        const ynode_t *k = root->kids[i];
        int t;

        if (!is_scalar(k))
            return fail(c, k, "config keys must be strings, not %s", node_desc(k));
        t = find_topkey(k->text);
        if (t < 0) {
            log_unknown(c, k);
            continue;
        }
        if (first_line[t])
            return fail(c, k, "'%s' is defined twice (first at line %d)", k->text, first_line[t]);
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
    free_list(cfg->web_allow_hosts, cfg->n_web_allow_hosts);
    for (size_t i = 0; i < cfg->n_tunnels; i++) {
        free(cfg->tunnels[i].name);
        json_decref(cfg->tunnels[i].def);
        json_decref(cfg->tunnels[i].marks);
        free(cfg->tunnels[i].file);
    }
    free(cfg->tunnels);
    free_list(cfg->files, cfg->n_files);
    bw_config_init(cfg);
}

int bw_config_tunnel_mark(const bw_config_tunnel_t *t, const char *key, int value, int *line,
                          int *col)
{
    json_t *m = t->marks ? json_object_get(t->marks, key) : NULL;
    if (!json_is_array(m) || json_array_size(m) != 4)
        return BW_ENOENT;
    *line = (int)json_integer_value(json_array_get(m, value ? 2 : 0));
    *col = (int)json_integer_value(json_array_get(m, value ? 3 : 1));
    return 0;
}

const bw_config_tunnel_t *bw_config_find_tunnel(const bw_config_t *cfg, const char *name)
{
    return find_tunnel((bw_config_t *)cfg, name);
}

/* ngrok refuses tabs up front, before YAML sees them. */
static int check_tabs(const char *buf, size_t len, const char *file, char *err, size_t errlen)
{
    int line = 1;
    size_t i = 0;

    while (i < len) {
        for (int col = 1; i < len && (buf[i] == ' ' || buf[i] == '\t'); i++, col++) {
            if (buf[i] == '\t') {
                seterr(err, errlen, file, line, col,
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
        seterr(err, errlen, name, 0, 0, "config file is larger than %d bytes",
               BW_CONFIG_MAX_FILE_SIZE);
        return BW_EMSGSIZE;
    }
    rc = check_tabs(buf, len, name, err, errlen);
    if (rc == 0)
        rc = yread(buf, len, name, &root, err, errlen);
    if (rc == 0)
        rc = apply_root(&c, root);
    if (rc == 0) {
        cfg->version = c.version ? c.version : 1;
        if (add_file(cfg, name) != 0)
            rc = nomem(&c);
    }
    ynode_free(root);
    return rc;
}

/* Read a whole file of at most BW_CONFIG_MAX_FILE_SIZE bytes into a new
 * buffer. Returns 0, a negative errno, or BW_EMSGSIZE, with err set. */
static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        seterr(err, errlen, path, 0, 0, "open config file: %s", strerror(errno));
        return rc;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = BW_EINVAL;
        seterr(err, errlen, path, 0, 0, "config path is not a regular file");
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
            seterr(err, errlen, path, 0, 0, "read config file: %s", strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > BW_CONFIG_MAX_FILE_SIZE) {
        rc = BW_EMSGSIZE;
        seterr(err, errlen, path, 0, 0, "config file is larger than %d bytes",
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
        int rc = read_file(paths[i], &buf, &len, err, errlen);
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
        seterr(err, errlen, path, 0, 0, "ignoring default config path, could not stat it");
        return BW_ENOENT;
    }
    return bw_config_load(cfg, &p, 1, err, errlen);
}

/* ---------------------------------------------------------------------------
 * add-authtoken
 * ------------------------------------------------------------------------- */

/* Plain YAML unless the token would read as something else or needs
 * escaping. Returns 0 with a new "authtoken: ..." string in *out. */
static int token_line(const char *token, char **out)
{
    static const char safe[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789_.~+/=-";
    size_t len = strlen(token), o;
    int plain = strspn(token, safe) == len && token[0] != '-' && strspn(token, "0123456789") != len;
    static const char *const words[] = {"true", "false", "null", "yes", "no", "on", "off", "~"};
    char *s;

    for (size_t i = 0; i < BW_ARRAY_SIZE(words); i++)
        if (strcasecmp(token, words[i]) == 0)
            plain = 0;
    s = malloc(16 + 2 * len);
    if (!s)
        return BW_ENOMEM;
    o = (size_t)snprintf(s, 16, "authtoken: %s", plain ? "" : "\"");
    for (size_t i = 0; i < len; i++) {
        if (!plain && (token[i] == '"' || token[i] == '\\'))
            s[o++] = '\\';
        s[o++] = token[i];
    }
    if (!plain)
        s[o++] = '"';
    s[o] = '\0';
    *out = s;
    return 0;
}

static int token_ok(const char *token)
{
    size_t len = token ? strlen(token) : 0;
    if (len == 0 || len > MAX_TOKEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)token[i] < 0x20 || token[i] == 0x7f)
            return 0;
    return 1;
}

static size_t line_end(const char *buf, size_t len, size_t pos)
{
    const char *nl = memchr(buf + pos, '\n', len - pos);
    return nl ? (size_t)(nl - buf) : len;
}

/* Where a top-level `authtoken:` line starts, or len when there is none. */
static size_t find_token_line(const char *buf, size_t len)
{
    static const char key[] = "authtoken";
    for (size_t pos = 0; pos < len; pos = line_end(buf, len, pos) + 1) {
        size_t i = pos + sizeof key - 1;
        if (len - pos < sizeof key - 1 || memcmp(buf + pos, key, sizeof key - 1) != 0)
            continue;
        while (i < len && buf[i] == ' ')
            i++;
        if (i < len && buf[i] == ':' && (i + 1 == len || strchr(" \r\n", buf[i + 1])))
            return pos;
    }
    return len;
}

/* The end of a quoted scalar starting at buf[i] on this line, or 0 when it
 * does not close on it. */
static size_t quoted_end(const char *buf, size_t i, size_t eol)
{
    char q = buf[i];
    for (i++; i < eol; i++) {
        if (q == '"' && buf[i] == '\\')
            i++;
        else if (buf[i] == q && !(q == '\'' && i + 1 < eol && buf[i + 1] == '\''))
            return i + 1;
        else if (q == '\'' && buf[i] == q)
            i++;
    }
    return 0;
}

/* The part of the authtoken line to keep after the new value (a trailing
 * comment), and where the old value's last line ends: block scalars and
 * continued plain scalars span the indented lines that follow. */
static void old_value_span(const char *buf, size_t len, size_t pos, size_t *tail, size_t *end)
{
    size_t eol = line_end(buf, len, pos), v = pos;
    int block = 0;

    while (buf[v] != ':') /* find_token_line saw the colon */
        v++;
    v++;

    while (v < eol && buf[v] == ' ')
        v++;
    *tail = eol;
    if (v == eol || buf[v] == '\r' || buf[v] == '#' || strchr("|>&!", buf[v])) {
        block = 1;
    } else if (buf[v] == '"' || buf[v] == '\'') {
        size_t q = quoted_end(buf, v, eol);
        if (q)
            *tail = q;
        else
            block = 1;
    } else {
        for (size_t i = v; i < eol; i++)
            if (buf[i] == '#' && buf[i - 1] == ' ') {
                *tail = i - 1;
                break;
            }
    }
    if (block)
        *tail = eol;
    /* Drop indented continuation lines, keeping indented comments unless the
     * value is a block (where '#' is content) and any blank lines after. */
    *end = eol;
    for (size_t p = eol + 1; p < len && buf[p] == ' ';) {
        size_t e = line_end(buf, len, p), s = p;
        while (s < e && buf[s] == ' ')
            s++;
        if (!block && (s == e || buf[s] == '#' || buf[s] == '\r'))
            break;
        if (s < e && buf[s] != '\r')
            *end = e;
        p = e + 1;
    }
}

/* The new file content: `old` with its authtoken replaced or appended. */
static int edit_token(const char *old, size_t len, const char *line, char **out, size_t *outlen)
{
    size_t pos = find_token_line(old, len), tail = len, end = len, n;
    size_t ll = strlen(line);
    char *buf;

    if (pos < len)
        old_value_span(old, len, pos, &tail, &end);
    buf = malloc(len + ll + 2);
    if (!buf)
        return BW_ENOMEM;
    if (pos < len) {
        /* old[..pos] + line + old[tail..eol(pos)] + old[end..] */
        size_t eol = line_end(old, len, pos);
        memcpy(buf, old, pos);
        n = pos;
        memcpy(buf + n, line, ll);
        n += ll;
        memcpy(buf + n, old + tail, eol - tail);
        n += eol - tail;
        memcpy(buf + n, old + end, len - end);
        n += len - end;
    } else {
        memcpy(buf, old, len);
        n = len;
        if (n && buf[n - 1] != '\n')
            buf[n++] = '\n';
        memcpy(buf + n, line, ll);
        n += ll;
        buf[n++] = '\n';
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* Does the edited text really hold the token at the top level? Guards
 * against layouts the line edit does not understand (flow maps, several
 * documents...). */
static int token_verified(const char *buf, size_t len, const char *token)
{
    ynode_t *root = NULL;
    const ynode_t *v;
    int ok = 0;

    if (yread(buf, len, "", &root, NULL, 0) == 0 && root && root->kind == YAML_MAPPING_NODE) {
        v = map_value(root, "authtoken");
        ok = v && is_scalar(v) && strcmp(v->text, token) == 0;
    }
    ynode_free(root);
    return ok;
}

static int mkdir_parents(const char *path)
{
    char *dir = strdup(path);
    int rc = 0;

    if (!dir)
        return BW_ENOMEM;
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *p = '/';
    }
    free(dir);
    return rc;
}

/* Write to a temporary file next to `path`, then rename it over `path`. */
static int write_atomic(const char *path, const char *buf, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t off = 0;
    int fd, rc = bw_fmt(tmp, sizeof tmp, "%s.tmpXXXXXX", path);

    if (rc != 0)
        return rc;
    fd = mkstemp(tmp);
    if (fd < 0)
        return -errno;
    if (fchmod(fd, mode) != 0)
        goto err_errno;
    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto err_errno;
        off += (size_t)n;
    }
    if (fsync(fd) != 0)
        goto err_errno;
    if (close(fd) != 0) {
        fd = -1;
        goto err_errno;
    }
    if (rename(tmp, path) != 0) {
        fd = -1;
        goto err_errno;
    }
    return 0;

err_errno:
    rc = -errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

/* The new content for an existing file, or for a new one when `target`
 * does not exist. */
static int token_content(const char *target, const char *token, const char *line, char **out,
                         size_t *outlen, mode_t *mode, char *err, size_t errlen)
{
    struct stat st;
    char *old = NULL;
    size_t len;
    int rc;

    if (stat(target, &st) != 0 && errno == ENOENT) {
        size_t cap = strlen(line) + 16;
        *mode = 0600;
        *out = malloc(cap);
        if (!*out)
            return BW_ENOMEM;
        *outlen = (size_t)snprintf(*out, cap, "version: \"2\"\n%s\n", line);
        return 0;
    }
    *mode = st.st_mode & 07777;
    rc = read_file(target, &old, &len, err, errlen);
    if (rc == 0)
        rc = edit_token(old, len, line, out, outlen);
    free(old);
    if (rc == 0 && !token_verified(*out, *outlen, token)) {
        free(*out);
        *out = NULL;
        seterr(err, errlen, target, 0, 0,
               "cannot update the authtoken in this file's layout; edit it by hand");
        rc = BW_EINVAL;
    }
    return rc;
}

int bw_config_add_authtoken(const char *path, const char *token, char *err, size_t errlen)
{
    char *line = NULL, *content = NULL, *real = NULL;
    const char *target = path;
    size_t len = 0;
    mode_t mode;
    int rc;

    if (!token_ok(token)) {
        seterr(err, errlen, path, 0, 0,
               "the authtoken must be 1 to %d characters without control characters", MAX_TOKEN);
        return BW_EINVAL;
    }
    /* Edit through a symlink rather than replacing it. */
    real = realpath(path, NULL);
    if (real)
        target = real;
    rc = token_line(token, &line);
    if (rc == 0)
        rc = token_content(target, token, line, &content, &len, &mode, err, errlen);
    if (rc == 0 && !real)
        rc = mkdir_parents(target);
    if (rc == 0)
        rc = write_atomic(target, content, len, mode);
    if (rc != 0 && rc != BW_EINVAL && rc != BW_EMSGSIZE)
        seterr(err, errlen, target, 0, 0, "could not save the authtoken: %s", strerror(-rc));
    free(line);
    free(content);
    free(real);
    return rc;
}
