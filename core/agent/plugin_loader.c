/* Plugin loading and validation. See plugin_loader.h. */
#include "plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#ifndef BW_PLUGINDIR
#define BW_PLUGINDIR "/usr/local/lib/burrow/plugins"
#endif

#define MAX_PLUGINS 64

struct bw_registry {
    const bw_host_t *host;
    bw_loaded_plugin_t *plugins[MAX_PLUGINS];
    size_t n;
};

/* The size of a 1.0 descriptor: everything up to the last 1.0 slot. */
#define DESC_V1_0_SIZE (offsetof(bw_plugin_t, replay) + sizeof(((bw_plugin_t *)0)->replay))

bw_registry_t *bw_registry_new(const bw_host_t *host)
{
    bw_registry_t *r = calloc(1, sizeof *r);
    if (r)
        r->host = host;
    return r;
}

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

static int valid_proto_name(const char *s)
{
    if (!s || !*s || strlen(s) > 32)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int check_options(const bw_option_t *opts, char *err, size_t errlen)
{
    for (size_t i = 0; opts && opts[i].key; i++) {
        if (opts[i].type < BW_OPT_STRING || opts[i].type > BW_OPT_BOOL_OR_STRING)
            return fail(err, errlen, BW_EINVAL, "option '%s' has unknown type %d", opts[i].key,
                        (int)opts[i].type);
        if (i > 256)
            return fail(err, errlen, BW_EINVAL, "option list is not terminated by a NULL key");
    }
    return 0;
}

/* Check a copied descriptor; mandatory slots are named in the message. */
static int check_descriptor(const bw_plugin_t *d, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        size_t off;
    } mandatory[] = {
        {"init", offsetof(bw_plugin_t, init)},
        {"destroy", offsetof(bw_plugin_t, destroy)},
        {"tunnel_start", offsetof(bw_plugin_t, tunnel_start)},
        {"tunnel_stop", offsetof(bw_plugin_t, tunnel_stop)},
        {"conn_open", offsetof(bw_plugin_t, conn_open)},
    };
    if (!valid_proto_name(d->name))
        return fail(err, errlen, BW_EINVAL,
                    "descriptor has no valid 'name' (lowercase letters, digits, '-', '_')");
    if (!d->public_scheme || !*d->public_scheme)
        return fail(err, errlen, BW_EINVAL, "plugin '%s' lacks mandatory field 'public_scheme'",
                    d->name);
    if (d->edge_type < BW_EDGE_TCP || d->edge_type > BW_EDGE_TLS)
        return fail(err, errlen, BW_EINVAL, "plugin '%s' declares unknown edge_type %d", d->name,
                    (int)d->edge_type);
    for (size_t i = 0; i < BW_ARRAY_SIZE(mandatory); i++) {
        void *slot;
        memcpy(&slot, (const char *)d + mandatory[i].off, sizeof slot);
        if (!slot)
            return fail(err, errlen, BW_EINVAL, "plugin '%s' lacks mandatory slot '%s'", d->name,
                        mandatory[i].name);
    }
    return check_options(d->options, err, errlen);
}

/* Read the descriptor out of an opened object into p->desc. */
static int read_descriptor(void *dl, const char *path, bw_plugin_t *out, char *err, size_t errlen)
{
    bw_plugin_entry_fn entry;
    void *sym = dlsym(dl, BW_PLUGIN_ENTRY_SYMBOL);
    if (!sym)
        return fail(err, errlen, BW_ENOENT,
                    "%s does not export %s (hint: build it against include/burrow/plugin.h and "
                    "export only that symbol)",
                    path, BW_PLUGIN_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof entry);
    const bw_plugin_t *d = entry();
    if (!d)
        return fail(err, errlen, BW_EINVAL, "%s: %s() returned NULL", path, BW_PLUGIN_ENTRY_SYMBOL);
    if (d->abi_major != BW_PLUGIN_ABI_MAJOR)
        return fail(err, errlen, BW_EABI,
                    "%s was built for plugin ABI %u.%u; this agent speaks %d.%d (hint: rebuild "
                    "the plugin against this agent's headers)",
                    path, d->abi_major, d->abi_minor, BW_PLUGIN_ABI_MAJOR, BW_PLUGIN_ABI_MINOR);
    if (d->abi_minor > BW_PLUGIN_ABI_MINOR)
        return fail(err, errlen, BW_EABI,
                    "%s needs plugin ABI %u.%u, newer than this agent's %d.%d (hint: upgrade "
                    "burrow)",
                    path, d->abi_major, d->abi_minor, BW_PLUGIN_ABI_MAJOR, BW_PLUGIN_ABI_MINOR);
    if (d->struct_size < DESC_V1_0_SIZE)
        return fail(err, errlen, BW_EABI, "%s: descriptor struct_size %u is smaller than ABI 1.0's",
                    path, d->struct_size);
    /* Zero-extend: slots an older plugin lacks read as NULL. */
    memset(out, 0, sizeof *out);
    memcpy(out, d, d->struct_size < sizeof *out ? d->struct_size : sizeof *out);
    return check_descriptor(out, err, errlen);
}

static void unload(bw_loaded_plugin_t *p)
{
    if (!p)
        return;
    if (p->dl && !getenv("BURROW_NO_DLCLOSE"))
        dlclose(p->dl);
    free(p->path);
    free(p);
}

int bw_registry_load(bw_registry_t *r, const char *path, char *err, size_t errlen)
{
    bw_error_t e = {{0}};
    int rc;
    bw_loaded_plugin_t *p = calloc(1, sizeof *p);
    if (!p)
        return fail(err, errlen, BW_ENOMEM, "out of memory");
    p->path = bw_strdup(path);
    p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        rc = fail(err, errlen, BW_ENOENT,
                  "cannot load plugin: %s (hint: is it a shared object "
                  "built for this system with all its libraries installed?)",
                  dlerror());
        goto out;
    }
    rc = read_descriptor(p->dl, path, &p->desc, err, errlen);
    if (rc < 0)
        goto out;
    if (bw_registry_find(r, p->desc.name)) {
        rc = fail(err, errlen, BW_EEXIST, "%s provides proto '%s', already provided by %s", path,
                  p->desc.name, bw_registry_find(r, p->desc.name)->path);
        goto out;
    }
    if (r->n == MAX_PLUGINS) {
        rc = fail(err, errlen, BW_EINVAL, "too many plugins (at most %d)", MAX_PLUGINS);
        goto out;
    }
    rc = p->desc.init(r->host, &p->state, &e);
    if (rc < 0) {
        p->desc.destroy(p->state);
        rc = fail(err, errlen, rc, "plugin '%s' (%s) failed to initialise: %s", p->desc.name, path,
                  e.msg[0] ? e.msg : "no reason given");
        goto out;
    }
    r->plugins[r->n++] = p;
    return 0;
out:
    bw_log(BW_LOG_ERROR, "plugin refused", "obj", "plugins", "path", path, "err", err, NULL);
    unload(p);
    return rc;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

static int load_dir_level(bw_registry_t *r, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    int loaded = 0;
    struct dirent *e;
    char path[PATH_MAX], err[768];
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || bw_fmt(path, sizeof path, "%s/%s", dir, e->d_name) != 0)
            continue;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth == 0) {
            int n = load_dir_level(r, path, 1);
            loaded += n > 0 ? n : 0;
        } else if (S_ISREG(st.st_mode) && has_suffix(e->d_name, ".so")) {
            if (bw_registry_load(r, path, err, sizeof err) == 0) {
                bw_log(BW_LOG_DEBUG, "loaded plugin", "obj", "plugins", "path", path, NULL);
                loaded++;
            }
        }
    }
    closedir(d);
    return loaded;
}

int bw_registry_load_dir(bw_registry_t *r, const char *dir)
{
    return load_dir_level(r, dir, 0);
}

int bw_registry_load_default(bw_registry_t *r)
{
    const char *env = getenv("BURROW_PLUGIN_PATH");
    int total = 0;
    if (env && *env) {
        char *copy = bw_strdup(env), *save = NULL;
        for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir;
             dir = strtok_r(NULL, ":", &save)) {
            int n = bw_registry_load_dir(r, dir);
            total += n > 0 ? n : 0;
        }
        free(copy);
        return total;
    }
    /* A build tree keeps the executable in <build>/core and plugins in
     * <build>/plugins/<name>/, so tests and demos run without installing. */
    char exe[PATH_MAX], dir[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(dir, sizeof dir, "%s/../plugins", exe);
            struct stat st;
            if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
                int k = bw_registry_load_dir(r, dir);
                if (k > 0)
                    return k;
            }
        }
    }
    int k = bw_registry_load_dir(r, BW_PLUGINDIR);
    return k > 0 ? k : 0;
}

const bw_loaded_plugin_t *bw_registry_find(const bw_registry_t *r, const char *proto)
{
    for (size_t i = 0; proto && i < r->n; i++)
        if (strcmp(r->plugins[i]->desc.name, proto) == 0)
            return r->plugins[i];
    return NULL;
}

size_t bw_registry_count(const bw_registry_t *r)
{
    return r->n;
}

const bw_loaded_plugin_t *bw_registry_at(const bw_registry_t *r, size_t i)
{
    return i < r->n ? r->plugins[i] : NULL;
}

void bw_registry_free(bw_registry_t *r)
{
    if (!r)
        return;
    for (size_t i = r->n; i-- > 0;) {
        r->plugins[i]->desc.destroy(r->plugins[i]->state);
        unload(r->plugins[i]);
    }
    free(r);
}
