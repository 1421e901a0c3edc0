/* Fixture plugins for the loader tests. One source, built once per case with
 * -DFIXTURE_<CASE> (tests/plugins/meson.build):
 *   GOOD            a minimal valid plugin, proto "fixture"
 *   ABI_TOO_NEW     abi_major one past the host's
 *   MISSING_ENTRY   exports no bw_plugin_entry
 *   MISSING_SLOT    lacks the mandatory conn_open slot
 *   DUPLICATE_PROTO claims proto "fixture" again (load it after GOOD)
 *   INIT_FAILS      init() fails with a message; destroy() must still run
 *   SIBLINGS        one object, two protos: "fixture-a" and its sibling
 *                   "fixture-b" (ABI 1.2)
 *   SIBLING_FAILS   "fixture-c" whose sibling "fixture-d" fails to init:
 *                   the whole object is refused
 *   EXTRA_EXPORT    a valid plugin that also exports another symbol (built
 *                   without the version script)
 *   STRUCT_SIZE_ZERO a descriptor whose struct_size was never filled in
 *   CALLS_CORE      calls bw_strerror() directly instead of host->strerror:
 *                   the agent exports no symbols, so dlopen must fail
 */
#include <stdio.h>
#include <stdlib.h>

#include <burrow/plugin.h>

static const bw_host_t *H;

static int f_init(const bw_host_t *host, void **state, bw_error_t *err)
{
    H = host;
#ifdef FIXTURE_CALLS_CORE
    /* The mistake this fixture makes on purpose: error.h declares
     * bw_strerror, but only the agent's own code may call it. */
    host->log(BW_LOG_DEBUG, "fixture", "err", bw_strerror(BW_EINVAL), NULL);
#endif
    int *counter = calloc(1, sizeof *counter);
    *state = counter;
#if defined(FIXTURE_INIT_FAILS)
    host->error_set(err, "fixture refuses to start: %s", "no license");
    return BW_EINVAL;
#else
    return counter ? 0 : BW_ENOMEM;
#endif
}

/* Frees what init allocated; the loader must call it even after a failed
 * init, or LeakSanitizer reports the counter. */
static void f_destroy(void *state)
{
    free(state);
}

static int f_tunnel_start(void *state, bw_tunnel_t *t, void **tstate, bw_error_t *err)
{
    *tstate = state;
    return 0;
}

static void f_tunnel_stop(void *tstate)
{
}

__attribute__((unused)) static void f_conn_open(void *tstate, bw_stream_t *pub,
                                                const bw_conn_info_t *info)
{
    H->stream_close(pub, 1);
}

static const bw_option_t f_options[] = {
    {.key = "greeting", .type = BW_OPT_STRING, .default_value = "hello", .description = "text"},
    {.key = "loud", .type = BW_OPT_BOOL, .default_value = "false", .description = "shout"},
    {.key = "limits.max", .type = BW_OPT_INT, .description = "a nested option"},
    {.key = "tags", .type = BW_OPT_STRING_LIST, .description = "a list"},
    {.key = NULL},
};

__attribute__((unused)) static int f_init_fails(const bw_host_t *host, void **state,
                                                bw_error_t *err)
{
    *state = calloc(1, sizeof(int));
    host->error_set(err, "sibling refuses to start");
    return BW_EINVAL;
}

__attribute__((unused)) static const bw_plugin_t sibling = {
    BW_PLUGIN_HEADER,
#ifdef FIXTURE_SIBLING_FAILS
    .name = "fixture-d",      .init = f_init_fails,
#else
    .name = "fixture-b",
    .init = f_init,
#endif
    .public_scheme = "tcp",   .edge_type = BW_EDGE_TCP,       .options = f_options,
    .destroy = f_destroy,     .tunnel_start = f_tunnel_start, .tunnel_stop = f_tunnel_stop,
    .conn_open = f_conn_open,
};

__attribute__((unused)) static const bw_plugin_t *const siblings[] = {&sibling, NULL};

static const bw_plugin_t fixture = {
#ifdef FIXTURE_ABI_TOO_NEW
    .abi_major = BW_PLUGIN_ABI_MAJOR + 1,
#else
    .abi_major = BW_PLUGIN_ABI_MAJOR,
#endif
    .abi_minor = BW_PLUGIN_ABI_MINOR,
#ifdef FIXTURE_STRUCT_SIZE_ZERO
    .struct_size = 0,
#else
    .struct_size = sizeof(bw_plugin_t),
#endif
#if defined(FIXTURE_SIBLINGS)
    .name = "fixture-a",
    .siblings = siblings,
#elif defined(FIXTURE_SIBLING_FAILS)
    .name = "fixture-c",
    .siblings = siblings,
#else
    .name = "fixture",
#endif
    .version = "0.0.1",
    .description = "loader test fixture",
    .public_scheme = "tcp",
    .edge_type = BW_EDGE_TCP,
    .options = f_options,
    .init = f_init,
    .destroy = f_destroy,
    .tunnel_start = f_tunnel_start,
    .tunnel_stop = f_tunnel_stop,
#ifndef FIXTURE_MISSING_SLOT
    .conn_open = f_conn_open,
#endif
};

#ifndef FIXTURE_MISSING_ENTRY
BW_PLUGIN_EXPORT const bw_plugin_t *bw_plugin_entry(void);

const bw_plugin_t *bw_plugin_entry(void)
{
    return &fixture;
}
#ifdef FIXTURE_EXTRA_EXPORT
BW_PLUGIN_EXPORT int fixture_helper(void);

int fixture_helper(void)
{
    return 42;
}
#endif
#else
/* Something else is exported so the object is otherwise a normal plugin. */
BW_PLUGIN_EXPORT const bw_plugin_t *not_the_entry(void);

const bw_plugin_t *not_the_entry(void)
{
    return &fixture;
}
#endif
