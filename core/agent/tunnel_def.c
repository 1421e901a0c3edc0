/* From a tunnel definition (config file, command line or API body, all as
 * JSON in config-file keys) to the tunnels the agent runs.
 *
 * Most definitions are one tunnel. An http definition is one or two
 * (spec §2.2): `bind_tls` both (the default) or `schemes: [http, https]`
 * gives the https tunnel "X" and its plain-http twin "X (http)" on one host
 * name; `bind_tls: true` / `schemes: [https]` only "X" over https, and
 * `bind_tls: false` / `schemes: [http]` only "X" over http. The twin binds
 * first (ngrok logs it first) and the https tunnel follows on its host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "tunnel_def.h"
#include "util.h"

#define SCHEME_HTTP  0x1u
#define SCHEME_HTTPS 0x2u

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

static unsigned scheme_bit(const char *s)
{
    if (s && strcasecmp(s, "http") == 0)
        return SCHEME_HTTP;
    if (s && strcasecmp(s, "https") == 0)
        return SCHEME_HTTPS;
    return 0;
}

/* Which public schemes an http definition asks for; 0 with err when the
 * value is not understood. `schemes` (v3) wins over `bind_tls` (v2). */
static unsigned http_schemes(const char *name, json_t *def, char *err, size_t errlen)
{
    json_t *schemes = json_object_get(def, "schemes"), *v;
    size_t i;
    unsigned bits = 0;
    if (json_is_array(schemes) && json_array_size(schemes) > 0) {
        json_array_foreach(schemes, i, v)
        {
            unsigned b = scheme_bit(json_string_value(v));
            if (!b) {
                snprintf(err, errlen, "HTTP tunnel %s specifies an invalid scheme: %s", name,
                         json_is_string(v) ? json_string_value(v) : "(not a string)");
                return 0;
            }
            bits |= b;
        }
        return bits;
    }
    json_t *bt = json_object_get(def, "bind_tls");
    const char *word = json_is_string(bt) ? json_string_value(bt) : NULL;
    if (!bt || json_is_null(bt) || (word && (!*word || strcasecmp(word, "both") == 0)))
        return SCHEME_HTTP | SCHEME_HTTPS;
    if (json_is_true(bt) || (word && strcasecmp(word, "true") == 0))
        return SCHEME_HTTPS;
    if (json_is_false(bt) || (word && strcasecmp(word, "false") == 0))
        return SCHEME_HTTP;
    snprintf(err, errlen, "HTTP tunnel %s specifies invalid 'bind_tls': %s", name,
             word ? word : "(not a string or bool)");
    return 0;
}

static void spec_from_def(bw_tunnel_spec_t *spec, const char *name, const char *proto, json_t *def,
                          char *addrbuf, size_t addrlen)
{
    *spec = (bw_tunnel_spec_t){
        .name = name,
        .proto = proto,
        .addr = scalar_text(json_object_get(def, "addr"), addrbuf, addrlen),
        .remote_addr = json_string_value(json_object_get(def, "remote_addr")),
        .subdomain = json_string_value(json_object_get(def, "subdomain")),
        .hostname = json_string_value(json_object_get(def, "hostname")),
        .options = def,
    };
}

/* The twin binds first; a refusal there is reported through the https
 * tunnel's own callback, so this one has nothing left to do. */
static void twin_bound(void *ud, int status, const char *err, bw_tunnel_t *t)
{
    (void)ud;
    (void)status;
    (void)err;
    (void)t;
}

/* The caller's callback for the https tunnel of a pair started together:
 * when that one is refused, its twin goes too, so the definition either
 * runs whole or leaves nothing behind (and can be started again). */
typedef struct pair {
    bw_agent_t *a;
    bw_agent_bind_cb cb;
    void *ud;
    char twin[];
} pair_t;

static void pair_bound(void *ud, int status, const char *err, bw_tunnel_t *t)
{
    pair_t *p = ud;
    /* Only a twin that did bind is removed here: a refused one is already
     * on its way out (and may be the tunnel being handled right now). */
    bw_tunnel_t *twin = status < 0 ? bw_agent_find_tunnel(p->a, p->twin) : NULL;
    if (twin && twin->public_url && *twin->public_url)
        bw_agent_remove_tunnel(p->a, p->twin);
    p->cb(p->ud, status, err, t);
    free(p);
}

static int add_twins(bw_agent_t *a, const char *name, json_t *def, bw_agent_bind_cb cb, void *ud,
                     char *err, size_t errlen)
{
    char twin[512], addrbuf[32];
    bw_tunnel_spec_t spec;
    pair_t *p = NULL;
    if (bw_fmt(twin, sizeof twin, "%s (http)", name) != 0) {
        snprintf(err, errlen, "tunnel name is too long");
        return BW_EINVAL;
    }
    if (bw_agent_find_tunnel(a, name)) {
        snprintf(err, errlen, "tunnel \"%s\" already exists", name);
        return BW_EEXIST;
    }
    if (cb) {
        size_t n = strlen(twin) + 1;
        if (!(p = malloc(sizeof *p + n))) {
            snprintf(err, errlen, "out of memory");
            return BW_ENOMEM;
        }
        *p = (pair_t){.a = a, .cb = cb, .ud = ud};
        memcpy(p->twin, twin, n);
    }
    spec_from_def(&spec, twin, "http", def, addrbuf, sizeof addrbuf);
    int rc = bw_agent_add_tunnel(a, &spec, cb ? twin_bound : NULL, NULL, err, errlen);
    if (rc < 0) {
        free(p);
        return rc;
    }
    spec_from_def(&spec, name, "https", def, addrbuf, sizeof addrbuf);
    spec.follows = twin;
    rc = bw_agent_add_tunnel(a, &spec, p ? pair_bound : NULL, p, err, errlen);
    if (rc < 0) {
        free(p);
        bw_agent_remove_tunnel(a, twin);
    }
    return rc;
}

int bw_agent_add_definition(bw_agent_t *a, const char *name, json_t *def, bw_agent_bind_cb cb,
                            void *ud, char *err, size_t errlen)
{
    char addrbuf[32];
    bw_tunnel_spec_t spec;
    const char *proto = json_string_value(json_object_get(def, "proto"));
    if (!proto)
        proto = "";
    if (strcmp(proto, "http") == 0) {
        unsigned schemes = http_schemes(name, def, err, errlen);
        if (!schemes)
            return BW_EINVAL;
        if (schemes == (SCHEME_HTTP | SCHEME_HTTPS))
            return add_twins(a, name, def, cb, ud, err, errlen);
        proto = schemes == SCHEME_HTTPS ? "https" : "http";
    }
    spec_from_def(&spec, name, proto, def, addrbuf, sizeof addrbuf);
    return bw_agent_add_tunnel(a, &spec, cb, ud, err, errlen);
}

int bw_definition_check(bw_registry_t *reg, const char *name, json_t *def, char *err, size_t errlen)
{
    const char *proto = json_string_value(json_object_get(def, "proto"));
    const bw_loaded_plugin_t *p = proto ? bw_registry_find(reg, proto) : NULL;
    bw_conf_t conf;
    if (!p)
        return 0; /* no such plugin here: `burrow start` says so */
    int rc = bw_conf_build(p->desc.options, def, 0, &conf, err, errlen);
    if (rc < 0)
        return rc;
    bw_error_t e = {{0}};
    if (p->desc.validate && (rc = p->desc.validate(p->state, &conf, name, &e)) < 0)
        snprintf(err, errlen, "%s", e.msg);
    bw_conf_free(&conf);
    return rc < 0 ? rc : 0;
}
