/* From a tunnel definition (config file, command line or API body, all as
 * JSON in config-file keys) to the tunnels the agent runs.
 *
 * A definition is one tunnel of its proto, unless the proto's plugin has an
 * expand slot (ABI 1.2): then the plugin says which tunnels it becomes. The
 * first of them binds the public name and the others bind after it, on the
 * name it got; the last, whose name suffix is "", reports to the caller, and
 * if it is refused the others that bound are removed, so a definition runs
 * whole or leaves nothing behind. The core knows no proto by name here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "control.h"
#include "host.h"
#include "tunnel_def.h"
#include "util.h"

/* JSON gives `addr` as a number or a string; keep its text. */
static const char *scalar_text(json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return NULL;
}

/* Text of a definition's scalars, kept for the spec's lifetime: a number
 * given for `addr`, `subdomain`, ... (YAML `subdomain: 123`, API JSON)
 * binds as its text, as the plugin's options read it. */
typedef struct spec_text {
    char addr[32], remote_addr[32], subdomain[32], hostname[32];
} spec_text_t;

static void spec_from_def(bw_tunnel_spec_t *spec, const char *name, const char *proto, json_t *def,
                          spec_text_t *text)
{
    *spec = (bw_tunnel_spec_t){
        .name = name,
        .proto = proto,
        .addr = scalar_text(json_object_get(def, "addr"), text->addr, sizeof text->addr),
        .remote_addr = scalar_text(json_object_get(def, "remote_addr"), text->remote_addr,
                                   sizeof text->remote_addr),
        .subdomain =
            scalar_text(json_object_get(def, "subdomain"), text->subdomain, sizeof text->subdomain),
        .hostname =
            scalar_text(json_object_get(def, "hostname"), text->hostname, sizeof text->hostname),
        .options = def,
    };
}

/* The members of a definition that travel in a Bind, checked against the
 * protocol's string limit here, before anything is sent: the edge refuses
 * a Bind that breaks it, and the agent would otherwise learn that only
 * after it connected (protocol.md §5, §8). Returns 0, or BW_EINVAL with
 * err naming the member and *key the definition's key when it has one. */
static int check_limits(const bw_tunnel_spec_t *spec, const char **key, char *err, size_t errlen)
{
    const struct {
        const char *key, *what, *value;
    } f[] = {
        {NULL, "name", spec->name},
        {"proto", "proto", spec->proto},
        {"subdomain", "subdomain", spec->subdomain},
        {"hostname", "hostname", spec->hostname},
        {"remote_addr", "remote_addr", spec->remote_addr},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        size_t len = f[i].value ? strlen(f[i].value) : 0;
        if (len <= BW_PROTO_MAX_STR)
            continue;
        *key = f[i].key;
        /* A name this long is not worth echoing whole. */
        snprintf(
            err, errlen,
            "tunnel \"%.40s%s\": %s is %zu bytes, longer than the protocol's limit of %d bytes",
            spec->name ? spec->name : "", spec->name && strlen(spec->name) > 40 ? "..." : "",
            f[i].what, len, BW_PROTO_MAX_STR);
        return BW_EINVAL;
    }
    *key = NULL;
    return 0;
}

static int check_def_limits(const char *name, json_t *def, const char **key, char *err,
                            size_t errlen)
{
    spec_text_t text;
    bw_tunnel_spec_t spec;
    spec_from_def(&spec, name, json_string_value(json_object_get(def, "proto")), def, &text);
    return check_limits(&spec, key, err, errlen);
}

int bw__tunnel_addr(const bw_loaded_plugin_t *p, const char *addr, const char *label, char *out,
                    size_t outlen, char *err, size_t errlen)
{
    bw_error_t e = {{0}};
    if (!addr || !*addr) {
        snprintf(err, errlen, "Tunnel %s must specify 'addr' to tunnel to", label);
        return BW_EINVAL;
    }
    if (p->desc.normalize_addr) {
        int rc = p->desc.normalize_addr(p->state, addr, out, outlen, label, &e);
        if (rc < 0)
            snprintf(err, errlen, "%s", e.msg);
        return rc;
    }
    /* ngrok's host:port rules (§1.3); URL forms are the plugin's. */
    return bw_addr_normalize(addr, out, outlen, label, err, errlen);
}

/* A tunnel of a group other than the one that reports: a refusal of one
 * that binds first reaches the caller through the reporting tunnel, which
 * cannot bind without it. */
static void member_bound(void *ud, int status, const char *err, bw_tunnel_t *t)
{
    (void)ud;
    (void)status;
    (void)err;
    (void)t;
}

/* The caller's callback for the reporting tunnel of a group started
 * together: when that one is refused, the rest of the group goes too. */
typedef struct group {
    bw_agent_t *a;
    bw_agent_bind_cb cb;
    void *ud;
    size_t n;
    char names[BW_EXPAND_MAX][512];
} group_t;

static void group_bound(void *ud, int status, const char *err, bw_tunnel_t *t)
{
    group_t *g = ud;
    for (size_t i = 0; status < 0 && i < g->n; i++) {
        /* Only a member that did bind is removed here: a refused one is
         * already on its way out (and may be the tunnel being handled). */
        bw_tunnel_t *m = bw_agent_find_tunnel(g->a, g->names[i]);
        if (m && m != t && m->public_url && *m->public_url)
            bw_agent_remove_tunnel(g->a, g->names[i]);
    }
    g->cb(g->ud, status, err, t);
    free(g);
}

static int add_group(bw_agent_t *a, const char *name, json_t *def, const bw_expansion_t *x,
                     size_t n, bw_agent_bind_cb cb, void *ud, char *err, size_t errlen)
{
    spec_text_t text;
    bw_tunnel_spec_t spec;
    group_t *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return BW_ENOMEM;
    }
    *g = (group_t){.a = a, .cb = cb, .ud = ud, .n = n};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *suffix = x[i].name_suffix ? x[i].name_suffix : "";
        if (bw_fmt(g->names[i], sizeof g->names[i], "%s%s", name, suffix) != 0) {
            snprintf(err, errlen, "tunnel name is too long");
            rc = BW_EINVAL;
        } else if ((i + 1 == n) != !*suffix) {
            snprintf(err, errlen,
                     "plugin for tunnel \"%s\" must expand it with the tunnel of that name last",
                     name);
            rc = BW_EINVAL;
        } else if (bw_agent_find_tunnel(a, g->names[i])) {
            snprintf(err, errlen, "tunnel \"%s\" already exists", g->names[i]);
            rc = BW_EEXIST;
        }
    }
    /* In order: the first binds the name, the others follow it; the last
     * reports to the caller, so nothing can fail once its callback is set. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        int last = i + 1 == n;
        spec_from_def(&spec, g->names[i], x[i].proto, def, &text);
        spec.follows = i > 0 ? g->names[0] : NULL;
        spec.label = name;
        rc = bw_agent_add_tunnel(a, &spec,
                                 !cb    ? NULL
                                 : last ? group_bound
                                        : member_bound,
                                 last && cb ? g : NULL, err, errlen);
        if (rc < 0)
            while (i-- > 0)
                bw_agent_remove_tunnel(a, g->names[i]);
        else if (last && cb)
            return 0; /* g is group_bound's now */
    }
    free(g);
    return rc;
}

/* The tunnels definition `def` of `p`'s proto becomes (expand slot).
 * Returns how many (>= 1) or < 0 with err. */
static int expand(const bw_loaded_plugin_t *p, const char *name, json_t *def, bw_expansion_t *x,
                  char *err, size_t errlen)
{
    bw_conf_t conf;
    bw_error_t e = {{0}};
    int rc = bw_conf_build(p->desc.options, def, 0, &conf, err, errlen);
    if (rc < 0)
        return rc;
    rc = p->desc.expand(p->state, &conf, name, x, BW_EXPAND_MAX, &e);
    bw_conf_free(&conf);
    if (rc < 0)
        snprintf(err, errlen, "%s", e.msg[0] ? e.msg : "invalid tunnel definition");
    else if (rc == 0 || rc > BW_EXPAND_MAX) {
        snprintf(err, errlen, "plugin %s expanded tunnel \"%s\" into %d tunnels", p->desc.name,
                 name, rc);
        rc = BW_EINVAL;
    }
    return rc;
}

int bw_agent_add_definition(bw_agent_t *a, const char *name, json_t *def, bw_agent_bind_cb cb,
                            void *ud, char *err, size_t errlen)
{
    spec_text_t text;
    bw_tunnel_spec_t spec;
    bw_expansion_t x[BW_EXPAND_MAX];
    const char *proto = json_string_value(json_object_get(def, "proto"));
    const bw_loaded_plugin_t *p = bw_registry_find(bw_agent_registry(a), proto);
    const char *key;
    int rc = check_def_limits(name, def, &key, err, errlen);
    if (rc < 0)
        return rc;
    if (!proto)
        proto = "";
    if (p && p->desc.expand) {
        int n = expand(p, name, def, x, err, errlen);
        if (n < 0)
            return n;
        if (n > 1)
            return add_group(a, name, def, x, (size_t)n, cb, ud, err, errlen);
        proto = x[0].proto;
    }
    spec_from_def(&spec, name, proto, def, &text);
    return bw_agent_add_tunnel(a, &spec, cb, ud, err, errlen);
}

int bw_definition_check(bw_registry_t *reg, const char *name, json_t *def, int strict,
                        const char **key, char *err, size_t errlen)
{
    const char *proto = json_string_value(json_object_get(def, "proto"));
    const bw_loaded_plugin_t *p = proto ? bw_registry_find(reg, proto) : NULL;
    bw_conf_t conf;
    int rc = check_def_limits(name, def, key, err, errlen);
    if (rc < 0)
        return rc;
    if (!p)
        return 0; /* no such plugin here: `burrow start` says so */
    /* The plugin's declarations are the only schema of its keys. */
    const char *unknown = strict ? bw_conf_unknown_key(p->desc.options, def) : NULL;
    if (unknown) {
        *key = unknown;
        snprintf(err, errlen, "field %s not found in tunnel \"%s\" (proto %s)", unknown, name,
                 proto);
        return BW_EINVAL;
    }
    char addr[1024], text[32];
    rc = bw__tunnel_addr(p, scalar_text(json_object_get(def, "addr"), text, sizeof text), name,
                         addr, sizeof addr, err, errlen);
    if (rc < 0) {
        *key = json_object_get(def, "addr") ? "addr" : NULL;
        return rc;
    }
    rc = bw_conf_build(p->desc.options, def, 0, &conf, err, errlen);
    if (rc < 0)
        return rc;
    bw_error_t e = {{0}};
    if (p->desc.validate && (rc = p->desc.validate(p->state, &conf, name, &e)) < 0)
        snprintf(err, errlen, "%s", e.msg);
    bw_conf_free(&conf);
    return rc < 0 ? rc : 0;
}
