/* Plugin loading and validation. See plugin_loader.h. */
#include "plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
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

#define MAX_PLUGINS           64
#define MAX_PROTOS_PER_OBJECT 16
#define MAX_OPTIONS           256

struct bw_registry {
    bw_host_select_fn host_for;
    bw_loaded_plugin_t *plugins[MAX_PLUGINS];
    size_t n;
    char searched[2048]; /* the default search's directories, ", "-separated */
};

/* The size of a 1.0 descriptor: everything up to the last 1.0 slot. */
#define DESC_V1_0_SIZE (offsetof(bw_plugin_t, replay) + sizeof(((bw_plugin_t *)0)->replay))
/* bw_option_t as ABI 1.0 laid it out; arrays of a plugin that does not say
 * otherwise (option_size 0) have this stride. */
typedef struct option_v1_0 {
    const char *key;
    bw_option_type_t type;
    const char *default_value;
    const char *description;
    uint32_t flags;
} option_v1_0_t;
#define DESC_OPTION_V1_0_SIZE sizeof(option_v1_0_t)

bw_registry_t *bw_registry_new(bw_host_select_fn host_for)
{
    bw_registry_t *r = calloc(1, sizeof *r);
    if (r)
        r->host_for = host_for;
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

/* Called on the host's copy of the options (copy_options). */
static int check_options(const bw_option_t *opts, char *err, size_t errlen)
{
    for (size_t i = 0; opts && opts[i].key; i++)
        if (opts[i].type < BW_OPT_STRING || opts[i].type > BW_OPT_ANY)
            return fail(err, errlen, BW_EINVAL, "option '%s' has unknown type %d", opts[i].key,
                        (int)opts[i].type);
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
    return 0;
}

/* Copy descriptor `d` of `path` into out: version checked, zero-extended
 * (slots an older plugin lacks read as NULL), mandatory slots present. */
static int copy_descriptor(const bw_plugin_t *d, const char *path, bw_plugin_t *out, char *err,
                           size_t errlen)
{
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
    if (d->struct_size == 0)
        return fail(err, errlen, BW_EABI,
                    "%s: descriptor struct_size is 0 (hint: set it to sizeof(bw_plugin_t), "
                    "e.g. with BW_PLUGIN_HEADER)",
                    path);
    if (d->struct_size < DESC_V1_0_SIZE)
        return fail(err, errlen, BW_EABI, "%s: descriptor struct_size %u is smaller than ABI 1.0's",
                    path, d->struct_size);
    memset(out, 0, sizeof *out);
    memcpy(out, d, d->struct_size < sizeof *out ? d->struct_size : sizeof *out);
    out->siblings = NULL; /* read from the original, first descriptor only */
    return check_descriptor(out, err, errlen);
}

/* The plugin's options as this host's bw_option_t array: elements of an
 * older (smaller) layout are zero-extended, so the rest of the agent indexes
 * one layout. Returns 0 or BW_ENOMEM/BW_EINVAL. */
static int copy_options(bw_loaded_plugin_t *p, char *err, size_t errlen)
{
    const bw_option_t *src = p->desc.options;
    size_t stride = p->desc.option_size ? p->desc.option_size : DESC_OPTION_V1_0_SIZE, n = 0;
    if (!src)
        return 0;
    if (stride < DESC_OPTION_V1_0_SIZE)
        return fail(err, errlen, BW_EINVAL, "plugin '%s' declares option_size %zu, below 1.0's %zu",
                    p->desc.name, stride, (size_t)DESC_OPTION_V1_0_SIZE);
    for (const char *at = (const char *)src; ((const bw_option_t *)at)->key; at += stride)
        if (++n > MAX_OPTIONS)
            return fail(err, errlen, BW_EINVAL,
                        "plugin '%s': option list is not terminated by a "
                        "NULL key",
                        p->desc.name);
    if (!(p->options = calloc(n + 1, sizeof *p->options)))
        return fail(err, errlen, BW_ENOMEM, "out of memory");
    size_t each = stride < sizeof *p->options ? stride : sizeof *p->options;
    for (size_t i = 0; i < n; i++)
        memcpy(&p->options[i], (const char *)src + i * stride, each);
    p->desc.options = p->options;
    return 0;
}

static void unload(bw_loaded_plugin_t *p)
{
    if (!p)
        return;
    if (p->dl && !getenv("BURROW_NO_DLCLOSE"))
        dlclose(p->dl);
    free(p->options);
    free(p->path);
    free(p);
}

/* The descriptors an object provides: its entry's, then its siblings (1.2).
 * Returns how many, or < 0 with err. */
static int object_descriptors(void *dl, const char *path, const bw_plugin_t **out, size_t max,
                              char *err, size_t errlen)
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
    size_t n = 0;
    out[n++] = d;
    int has_siblings = d->abi_major == BW_PLUGIN_ABI_MAJOR && d->abi_minor >= 2 &&
                       d->struct_size >= offsetof(bw_plugin_t, siblings) + sizeof d->siblings;
    for (size_t i = 0; has_siblings && d->siblings && d->siblings[i]; i++) {
        if (n == max)
            return fail(err, errlen, BW_EINVAL, "%s provides more than %zu protos", path, max);
        out[n++] = d->siblings[i];
    }
    return (int)n;
}

/* Register one descriptor of the object at `path` (opened as `dl`, whose
 * reference the new entry takes over). Returns 0 or < 0 with err. */
static int register_one(bw_registry_t *r, const bw_plugin_t *d, const char *path, void *dl,
                        char *err, size_t errlen)
{
    bw_error_t e = {{0}};
    int rc;
    bw_loaded_plugin_t *p = calloc(1, sizeof *p);
    if (!p) {
        if (dl && !getenv("BURROW_NO_DLCLOSE"))
            dlclose(dl);
        return fail(err, errlen, BW_ENOMEM, "out of memory");
    }
    p->dl = dl;
    if (!(p->path = bw_strdup(path))) {
        rc = fail(err, errlen, BW_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = copy_descriptor(d, path, &p->desc, err, errlen)) < 0 ||
        (rc = copy_options(p, err, errlen)) < 0 ||
        (rc = check_options(p->desc.options, err, errlen)) < 0)
        goto out;
    const bw_loaded_plugin_t *dup = bw_registry_find(r, p->desc.name);
    if (dup) {
        rc = fail(err, errlen, BW_EEXIST, "%s provides proto '%s', already provided by %s", path,
                  p->desc.name, dup->path);
        goto out;
    }
    if (r->n == MAX_PLUGINS) {
        rc = fail(err, errlen, BW_EINVAL, "too many plugins (at most %d)", MAX_PLUGINS);
        goto out;
    }
    /* A plugin built for an older minor gets that minor's semantics
     * (stream_write's pause code); see bw_host_table_for. */
    rc = p->desc.init(r->host_for(p->desc.abi_minor), &p->state, &e);
    if (rc < 0) {
        p->desc.destroy(p->state);
        rc = fail(err, errlen, rc, "plugin '%s' (%s) failed to initialise: %s", p->desc.name, path,
                  e.msg[0] ? e.msg : "no reason given");
        goto out;
    }
    r->plugins[r->n++] = p;
    return 0;
out:
    unload(p);
    return rc;
}

int bw_registry_load(bw_registry_t *r, const char *path, char *err, size_t errlen)
{
    const bw_plugin_t *descs[MAX_PROTOS_PER_OBJECT];
    char names[256];
    size_t first = r->n;
    int rc, n = 0;
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *why = dlerror();
        /* The agent exports nothing, so a plugin calling one of its
         * functions (bw_strerror, ...) fails here rather than at run time. */
        rc = fail(err, errlen, BW_ENOENT, "cannot load plugin: %s (hint: %s)", why,
                  strstr(why, "undefined symbol")
                      ? "a plugin reaches the agent only through the bw_host_t table "
                        "(e.g. host->strerror), never through its symbols; link with "
                        "-Wl,-z,defs to catch this when building"
                      : "is it a shared object built for this system with all its "
                        "libraries installed?");
        goto out;
    }
    if ((n = object_descriptors(dl, path, descs, BW_ARRAY_SIZE(descs), err, errlen)) < 0) {
        rc = n;
        goto out;
    }
    rc = bw_elf_exports(path, names, sizeof names);
    if (rc != 1 || strcmp(names, BW_PLUGIN_ENTRY_SYMBOL) != 0) {
        rc = rc < 0 ? fail(err, errlen, BW_EINVAL, "%s is not a readable ELF object", path)
                    : fail(err, errlen, BW_EINVAL,
                           "%s exports %d symbols (%s), not just %s (hint: link it with a "
                           "version script that keeps only %s global)",
                           path, rc, names, BW_PLUGIN_ENTRY_SYMBOL, BW_PLUGIN_ENTRY_SYMBOL);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        /* Each proto holds its own reference, so the object stays loaded
         * while any of them is. */
        void *ref = i == 0 ? dl : dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (i == 0)
            dl = NULL;
        if ((rc = register_one(r, descs[i], path, ref, err, errlen)) < 0)
            goto out;
    }
    names[0] = '\0';
    for (size_t i = first; i < r->n; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i > first ? "," : "",
                 r->plugins[i]->desc.name);
    bw_log(BW_LOG_INFO, "loaded plugin", "obj", "plugins", "path", path, "protos", names, NULL);
    return 0;
out:
    /* All of an object or nothing: protos registered before the refusal go. */
    while (r->n > first) {
        bw_loaded_plugin_t *p = r->plugins[--r->n];
        p->desc.destroy(p->state);
        unload(p);
    }
    if (dl && !getenv("BURROW_NO_DLCLOSE"))
        dlclose(dl);
    /* A proto already served from an earlier directory is a shadowed copy,
     * not a broken plugin. */
    bw_log(rc == BW_EEXIST ? BW_LOG_WARN : BW_LOG_ERROR, "plugin refused", "obj", "plugins", "path",
           path, "err", err, NULL);
    return rc;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

/* Objects load in name order, so which of two copies wins never depends
 * on the file system. */
static int load_dir_level(bw_registry_t *r, const char *dir, int depth)
{
    struct dirent **list;
    int count = scandir(dir, &list, NULL, alphasort);
    if (count < 0)
        return -errno;
    int loaded = 0;
    char path[PATH_MAX], err[768];
    for (int i = 0; i < count; i++) {
        struct stat st;
        const char *name = list[i]->d_name;
        if (name[0] != '.' && bw_fmt(path, sizeof path, "%s/%s", dir, name) == 0 &&
            stat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode) && depth == 0) {
                int n = load_dir_level(r, path, 1);
                loaded += n > 0 ? n : 0;
            } else if (S_ISREG(st.st_mode) && has_suffix(name, ".so")) {
                size_t before = r->n;
                if (bw_registry_load(r, path, err, sizeof err) == 0)
                    loaded += (int)(r->n - before);
            }
        }
        free(list[i]);
    }
    free(list);
    return loaded;
}

int bw_registry_load_dir(bw_registry_t *r, const char *dir)
{
    return load_dir_level(r, dir, 0);
}

/* Load `dir` unless a directory already searched is the same one. */
static int load_dir_once(bw_registry_t *r, const char *dir, char seen[][PATH_MAX], size_t *nseen,
                         size_t max)
{
    char real[PATH_MAX];
    size_t used = strlen(r->searched);
    /* Named as given, missing ones too: they are where a plugin was looked for. */
    snprintf(r->searched + used, sizeof r->searched - used, "%s%s", used ? ", " : "", dir);
    if (!realpath(dir, real))
        return 0;
    for (size_t i = 0; i < *nseen; i++)
        if (strcmp(seen[i], real) == 0)
            return 0;
    if (*nseen < max)
        memcpy(seen[(*nseen)++], real, sizeof real);
    int n = bw_registry_load_dir(r, real);
    return n > 0 ? n : 0;
}

int bw_registry_load_default(bw_registry_t *r)
{
    static char seen[16][PATH_MAX];
    size_t nseen = 0;
    const char *env = getenv("BURROW_PLUGIN_PATH");
    int total = 0;
    /* BURROW_PLUGIN_PATH comes first (its copy of a proto wins), then the
     * standard place: it adds plugins, it never hides the bundled ones. */
    if (env && *env) {
        char *copy = bw_strdup(env), *save = NULL;
        for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir;
             dir = strtok_r(NULL, ":", &save))
            total += load_dir_once(r, dir, seen, &nseen, BW_ARRAY_SIZE(seen));
        free(copy);
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
                int k = load_dir_once(r, dir, seen, &nseen, BW_ARRAY_SIZE(seen));
                if (k > 0)
                    return total + k;
            }
        }
    }
    return total + load_dir_once(r, BW_PLUGINDIR, seen, &nseen, BW_ARRAY_SIZE(seen));
}

const char *bw_registry_searched(const bw_registry_t *r)
{
    return r->searched;
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
