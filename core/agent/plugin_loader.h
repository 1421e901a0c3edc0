/* Loading protocol plugins (docs/plugin-abi.md).
 *
 * The registry dlopen()s plugin objects, checks each descriptor (ABI
 * version, mandatory slots, unique proto name, option declarations), calls
 * init() with the host table, and later finds the plugin for a tunnel's
 * proto. Every refusal is logged with the file, the reason and a hint.
 */
#ifndef BW_CORE_PLUGIN_LOADER_H
#define BW_CORE_PLUGIN_LOADER_H

#include <stddef.h>

#include <burrow/plugin.h>

typedef struct bw_registry bw_registry_t;

/* What bw_registry_find returns: the loader's zero-extended copy of the
 * descriptor and the state its init() produced. */
typedef struct bw_loaded_plugin {
    bw_plugin_t desc;     /* desc.options points at `options` */
    bw_option_t *options; /* the plugin's options in this host's layout */
    void *state;
    void *dl; /* one reference per proto of the object */
    char *path;
} bw_loaded_plugin_t;

struct bw_error {
    char msg[512];
};

/* Picks the host table for a plugin built for ABI 1.`abi_minor`. */
typedef const bw_host_t *(*bw_host_select_fn)(uint16_t abi_minor);

/* A new, empty registry; each plugin's init gets host_for(its abi_minor)
 * (bw_host_table_for). NULL on ENOMEM. */
bw_registry_t *bw_registry_new(bw_host_select_fn host_for);

/* Load one plugin object and every proto it provides (its entry's and, ABI
 * 1.2, the siblings). Returns 0, or < 0 with the reason in err[errlen]
 * (also logged): BW_ENOENT (dlopen failed / no entry symbol), BW_EABI
 * (version), BW_EINVAL (bad descriptor, or exports beyond the entry point),
 * BW_EEXIST (duplicate proto), or the code an init() returned. All of an
 * object or nothing: a refused object is fully unloaded. */
int bw_registry_load(bw_registry_t *r, const char *path, char *err, size_t errlen);

/* Load every "*.so" directly in `dir`, and in its immediate subdirectories
 * (the build tree keeps each plugin in plugins/<name>/). Refusals are logged
 * and skipped. Returns the number of plugins loaded, or < 0 when `dir`
 * cannot be read. */
int bw_registry_load_dir(bw_registry_t *r, const char *dir);

/* The plugin serving `proto`, or NULL. */
const bw_loaded_plugin_t *bw_registry_find(const bw_registry_t *r, const char *proto);

size_t bw_registry_count(const bw_registry_t *r);
const bw_loaded_plugin_t *bw_registry_at(const bw_registry_t *r, size_t i);

/* destroy() every plugin, then dlclose() them (skipped when the environment
 * sets BURROW_NO_DLCLOSE, so leak reports keep plugin symbols). NULL-safe. */
void bw_registry_free(bw_registry_t *r);

/* Count the defined, globally visible dynamic symbols of the 64-bit ELF
 * object at `path`, their names space-separated into names[len]. Returns
 * the count, or -1 when the file is not a readable 64-bit ELF object. */
int bw_elf_exports(const char *path, char *names, size_t len);

/* Default plugin search: the directories of $BURROW_PLUGIN_PATH (colon-
 * separated) first, then the build tree next to the executable (<exe
 * dir>/../plugins) or else the installed plugin directory; each directory
 * once, its objects in name order. A proto found again later is refused
 * with a warning naming both files, so the earlier copy wins. Returns the
 * count of protos loaded. */
int bw_registry_load_default(bw_registry_t *r);

/* The directories bw_registry_load_default searched, in order and as
 * named (missing ones too), ", "-separated; "" before it ran. Borrowed from
 * `r`. */
const char *bw_registry_searched(const bw_registry_t *r);

#endif /* BW_CORE_PLUGIN_LOADER_H */
