/* Tunnel definitions against a plugin's declared options: the conf builder
 * (types checked and normalised), the core's own keys, and the keys a
 * definition may not use. See host.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "log.h"
#include "util.h"

/* ---------------------------------------------------------------------------
 * Tunnel definitions
 * ------------------------------------------------------------------------- */

/* The declaration of `key` in `opts`, or NULL. */
const bw_option_t *bw__conf_find_option(const bw_option_t *opts, const char *key)
{
    for (size_t i = 0; opts && opts[i].key; i++)
        if (strcmp(opts[i].key, key) == 0)
            return &opts[i];
    return NULL;
}

/* Is `prefix` the first component of a dotted option key? */
static int is_option_group(const bw_option_t *opts, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; opts && opts[i].key; i++)
        if (strncmp(opts[i].key, prefix, n) == 0 && opts[i].key[n] == '.')
            return 1;
    return 0;
}

static json_t *scalar_text(const json_t *v)
{
    char buf[64];
    if (json_is_string(v))
        return json_string(json_string_value(v));
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return json_string(buf);
    }
    if (json_is_real(v)) {
        /* The shortest text that reads back as the same double: 0.1, not
         * 0.10000000000000001. */
        double d = json_real_value(v);
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        return json_string(buf);
    }
    if (json_is_boolean(v))
        return json_string(json_is_true(v) ? "true" : "false");
    return NULL;
}

static json_t *coerce_bool(const json_t *v)
{
    if (json_is_boolean(v))
        return json_boolean(json_is_true(v));
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "true") == 0)
            return json_true();
        if (strcmp(s, "false") == 0)
            return json_false();
    }
    return NULL;
}

static json_t *coerce_int(const json_t *v)
{
    long long n;
    if (json_is_integer(v))
        return json_integer(json_integer_value(v));
    if (json_is_string(v) && bw_parse_int(json_string_value(v), INT64_MIN, INT64_MAX, &n) == 0)
        return json_integer(n);
    return NULL;
}

static json_t *coerce_list(const json_t *v)
{
    json_t *out = json_array(), *item;
    size_t i;
    if (!out)
        return NULL;
    if (!json_is_array(v)) {
        json_t *one = scalar_text(v);
        if (!one || json_array_append_new(out, one) != 0)
            goto fail;
        return out;
    }
    json_array_foreach(v, i, item)
    {
        json_t *s = scalar_text(item);
        if (!s || json_array_append_new(out, s) != 0)
            goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

static const char *type_word(bw_option_type_t t)
{
    switch (t) {
    case BW_OPT_BOOL:
        return "a boolean";
    case BW_OPT_INT:
        return "an integer";
    case BW_OPT_STRING_LIST:
        return "a list of strings";
    case BW_OPT_BOOL_OR_STRING:
        return "a boolean or a string";
    case BW_OPT_ANY:
        return "any value";
    default:
        return "a string";
    }
}

static int conf_put(const bw_option_t *o, const json_t *v, json_t *out, char *err, size_t errlen)
{
    json_t *c = NULL;
    switch (o->type) {
    case BW_OPT_BOOL:
        c = coerce_bool(v);
        break;
    case BW_OPT_INT:
        c = coerce_int(v);
        break;
    case BW_OPT_STRING_LIST:
        c = coerce_list(v);
        break;
    case BW_OPT_ANY:
        c = json_deep_copy(v);
        break;
    default:
        c = json_is_array(v) || json_is_object(v) || json_is_null(v) ? NULL : scalar_text(v);
        break;
    }
    if (!c) {
        snprintf(err, errlen, "option '%s' must be %s", o->key, type_word(o->type));
        return BW_EINVAL;
    }
    /* Steals c even when it fails: an option must not vanish silently. */
    if (json_object_set_new(out, o->key, c) != 0) {
        snprintf(err, errlen, "option '%s': out of memory", o->key);
        return BW_ENOMEM;
    }
    return 0;
}

/* Keys the core owns in every definition, whatever the plugin: the ones it
 * acts on (proto, addr, name, metadata, inspect) and ngrok's endpoint keys
 * it accepts without acting on them. Binding keys (remote_addr, subdomain,
 * hostname, domain) are declared by the plugins whose edge type uses them;
 * the core reads them by name when it binds (docs/plugin-abi.md). */
static int is_common_key(const char *k)
{
    static const char *const common[] = {
        "proto",        "addr",           "name",           "metadata", "inspect",
        "ip_policy",    "labels",         "policy",         "bindings", "description",
        "app_protocol", "traffic_policy", "pooling_enabled"};
    for (size_t i = 0; i < BW_ARRAY_SIZE(common); i++)
        if (strcmp(k, common[i]) == 0)
            return 1;
    return 0;
}

/* The dotted name of `key` inside `group` into full[256]; -1 when it does
 * not fit (no declared option is that long). */
static int dotted(char full[256], const char *group, const char *key)
{
    int n = snprintf(full, 256, "%s.%s", group, key);
    return n > 0 && n < 256 ? 0 : -1;
}

/* The map `v` given for `group`, a prefix of dotted option keys: each member
 * is an option (`group.key`) or, for keys of three parts and more, a group
 * again. */
static int conf_group(const bw_option_t *opts, const char *group, const json_t *v, int strict,
                      json_t *out, char *err, size_t errlen)
{
    const char *k;
    json_t *sub;
    char full[256];
    if (!json_is_object(v)) {
        snprintf(err, errlen, "option '%s' must be a map", group);
        return BW_EINVAL;
    }
    json_object_foreach((json_t *)v, k, sub)
    {
        int known = dotted(full, group, k) == 0;
        const bw_option_t *o = known ? bw__conf_find_option(opts, full) : NULL;
        int rc = 0;
        if (o)
            rc = conf_put(o, sub, out, err, errlen);
        else if (known && is_option_group(opts, full))
            rc = conf_group(opts, full, sub, strict, out, err, errlen);
        else if (strict) {
            snprintf(err, errlen, "unknown option '%s.%s'", group, k);
            rc = BW_EINVAL;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int bw_conf_build(const bw_option_t *opts, const json_t *input, int strict, bw_conf_t *out,
                  char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    int rc = 0;
    out->opts = opts;
    out->obj = json_object();
    if (!out->obj)
        return BW_ENOMEM;
    json_object_foreach((json_t *)input, k, v)
    {
        const bw_option_t *o = bw__conf_find_option(opts, k);
        if (is_common_key(k) && !o && !is_option_group(opts, k))
            continue; /* the core's, unless the plugin declares options under it */
        if (o)
            rc = conf_put(o, v, out->obj, err, errlen);
        else if (is_option_group(opts, k))
            rc = conf_group(opts, k, v, strict, out->obj, err, errlen);
        else if (strict) {
            snprintf(err, errlen, "unknown option '%s'", k);
            rc = BW_EINVAL;
        }
        if (rc < 0)
            goto fail;
    }
    for (size_t i = 0; opts && opts[i].key; i++)
        if ((opts[i].flags & BW_OPT_F_REQUIRED) && !json_object_get(out->obj, opts[i].key)) {
            snprintf(err, errlen, "missing required option '%s'", opts[i].key);
            rc = BW_EINVAL;
            goto fail;
        }
    return 0;
fail:
    bw_conf_free(out);
    return rc;
}

/* Does the map `v` given for `group` hold a key no option declares? */
static int group_has_unknown(const bw_option_t *opts, const char *group, const json_t *v)
{
    const char *sub;
    json_t *sv;
    char full[256];
    if (!json_is_object(v))
        return 0; /* bw_conf_build names the type error */
    json_object_foreach((json_t *)v, sub, sv)
    {
        if (dotted(full, group, sub) != 0)
            return 1;
        if (bw__conf_find_option(opts, full))
            continue;
        if (!is_option_group(opts, full) || group_has_unknown(opts, full, sv))
            return 1;
    }
    return 0;
}

const char *bw_conf_unknown_key(const bw_option_t *opts, const json_t *input)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)input, k, v)
    {
        if (bw__conf_find_option(opts, k) || (is_common_key(k) && !is_option_group(opts, k)))
            continue;
        if (!is_option_group(opts, k) || group_has_unknown(opts, k, v))
            return k;
    }
    return NULL;
}

void bw_conf_warn_unused(const bw_conf_t *c, const char *tunnel_name)
{
    for (size_t i = 0; c && c->opts && c->opts[i].key; i++)
        if (c->opts[i].type == BW_OPT_ANY && json_object_get(c->obj, c->opts[i].key))
            bw_log(BW_LOG_WARN, "option has no effect in burrow", "obj", "tunnels", "name",
                   tunnel_name, "option", c->opts[i].key, NULL);
}

void bw_conf_free(bw_conf_t *c)
{
    if (!c)
        return;
    json_decref(c->obj);
    c->obj = NULL;
}
