/* Tunnel definitions of a config file: each a mapping turned into JSON in
 * config-file keys, checked for what every tunnel needs (no proto's own
 * keys: those are the plugin's), merged by name. See config.h. */
#include <stdlib.h>
#include <string.h>

#include <burrow/error.h>

#include "config_int.h"

/* ---------------------------------------------------------------------------
 * Tunnels
 * ------------------------------------------------------------------------- */

static int node_to_json(const ctx_t *c, const ynode_t *n, json_t **out);

static json_t *scalar_to_json(const ynode_t *n)
{
    long long v;
    int b;

    if (bw__ynode_null(n))
        return json_null();
    b = bw__ynode_bool(n);
    if (b >= 0)
        return json_boolean(b);
    if (bw__ynode_int(n, &v))
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
            return bw__config_nomem(c);
    }
    return 0;
}

static int map_to_json(const ctx_t *c, const ynode_t *n, json_t *obj)
{
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const ynode_t *k = n->kids[i];
        json_t *val;
        int rc;

        if (!bw__ynode_scalar(k))
            return bw__config_fail(c, k, "mapping keys must be strings, not %s", bw__ynode_desc(k));
        if (json_object_get(obj, k->text))
            return bw__config_fail(c, k, "key '%s' is defined twice", k->text);
        rc = node_to_json(c, n->kids[i + 1], &val);
        if (rc != 0)
            return rc;
        if (json_object_set_new(obj, k->text, val) != 0)
            return bw__config_nomem(c);
    }
    return 0;
}

/* Scalars keep their YAML type (plain ints and booleans), sequences become
 * arrays and mappings objects. Returns 0 with a new reference in *out. */
static int node_to_json(const ctx_t *c, const ynode_t *n, json_t **out)
{
    json_t *j;
    int rc = 0;

    if (bw__ynode_scalar(n)) {
        j = scalar_to_json(n);
    } else {
        j = n->kind == YAML_SEQUENCE_NODE ? json_array() : json_object();
        if (j)
            rc = n->kind == YAML_SEQUENCE_NODE ? seq_to_json(c, n, j) : map_to_json(c, n, j);
    }
    if (!j)
        return bw__config_nomem(c);
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
        return bw__config_fail(c, kname, "Tunnel %s does not specify a protocol ('proto')", name);
    if (has(obj, "proto") && !json_is_string(proto))
        return bw__config_fail(c, bw__ynode_value(def, "proto"),
                               "Tunnel %s: 'proto' must be a string", name);
    if (!has(obj, "addr"))
        return bw__config_fail(c, kname, "Tunnel %s must specify 'addr' to tunnel to", name);
    if (!json_is_string(addr) && !json_is_integer(addr))
        return bw__config_fail(c, bw__ynode_value(def, "addr"),
                               "Tunnel %s: 'addr' must be a port or an address", name);
    /* Binding keys are the core's (it sends them to the edge), whatever
     * plugin serves the tunnel. */
    if (has(obj, "hostname") && has(obj, "subdomain"))
        return bw__config_fail(c, bw__ynode_key(def, "hostname"),
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
            return bw__config_fail(c, kname, "more than %d tunnels", BW_CONFIG_MAX_TUNNELS);
        }
        /* The grown array is the config's as soon as realloc returns it:
         * the old block may be gone, whatever fails next. */
        arr = realloc(cfg->tunnels, (cfg->n_tunnels + 1) * sizeof *arr);
        if (!arr)
            goto err_nomem;
        cfg->tunnels = arr;
        name = strdup(kname->text);
        if (!name)
            goto err_nomem;
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
    return bw__config_nomem(c);
}

static int apply_tunnel(ctx_t *c, const ynode_t *kname, const ynode_t *def)
{
    json_t *obj = NULL;
    int rc;

    if (!bw__ynode_scalar(kname) || bw__ynode_null(kname) || kname->len == 0)
        return bw__config_fail(c, kname, "tunnel names must be non-empty strings");
    if (def->kind != YAML_MAPPING_NODE)
        return bw__config_fail(c, def, "tunnel \"%s\" must be a mapping of options, not %s",
                               kname->text, bw__ynode_null(def) ? "empty" : bw__ynode_desc(def));
    rc = node_to_json(c, def, &obj);
    if (rc == 0)
        rc = check_tunnel(c, kname, def, obj);
    if (rc != 0) {
        json_decref(obj);
        return rc;
    }
    return upsert_tunnel(c, kname, obj, key_marks(def));
}

int bw__config_apply_tunnels(ctx_t *c, const ynode_t *k, const ynode_t *v)
{
    if (bw__ynode_null(v))
        return 0;
    if (v->kind != YAML_MAPPING_NODE)
        return bw__config_fail(c, v,
                               "'tunnels' must be a mapping of tunnel names to definitions, not %s",
                               bw__ynode_desc(v));
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const ynode_t *kname = v->kids[i];
        int rc;

        /* Names are unique within a file; a later file may redefine one. */
        for (size_t j = 0; j < i && bw__ynode_scalar(kname); j += 2)
            if (bw__ynode_scalar(v->kids[j]) && strcmp(v->kids[j]->text, kname->text) == 0)
                return bw__config_fail(c, kname,
                                       "tunnel \"%s\" is defined twice (first at line %d)",
                                       kname->text, v->kids[j]->line);
        rc = apply_tunnel(c, kname, v->kids[i + 1]);
        if (rc != 0)
            return rc;
    }
    return 0;
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
