/* Tunnel definitions (JSON in config-file keys) into running tunnels; a
 * plugin may expand one definition into several (http's twins, spec §2.2). */
#ifndef BW_CORE_TUNNEL_DEF_H
#define BW_CORE_TUNNEL_DEF_H

#include <jansson.h>

#include "agent.h"

/* Start the tunnel(s) of definition `def` named `name`. `cb` (may be NULL;
 * see bw_agent_add_tunnel) reports the bind of the tunnel named `name`; when
 * the plugin expands the definition (an http definition with both schemes)
 * the others bind first ("name (http)"). Returns 0, or < 0 with err[errlen]. */
int bw_agent_add_definition(bw_agent_t *a, const char *name, json_t *def, bw_agent_bind_cb cb,
                            void *ud, char *err, size_t errlen);

/* Check definition `def` named `name` with its protocol plugin from `reg`
 * without starting anything: with `strict` (a `version: "2"` file) every key
 * must be the core's or declared by the plugin ("field X not found in
 * tunnel ..."), then the declared option types, then the plugin's own
 * validate slot. Returns 0 (also when no plugin of that proto is loaded) or
 * < 0 with the message in err[errlen]; *key is then the offending key when
 * one is known (a key of `def` or "addr"), else NULL. The address is
 * normalised as `burrow start` does (a port of 70000 is refused). */
int bw_definition_check(bw_registry_t *reg, const char *name, json_t *def, int strict,
                        const char **key, char *err, size_t errlen);

/* Normalise `addr` of a tunnel of `p`'s proto into out[outlen]: the plugin's
 * normalize_addr slot, else ngrok's host:port rules. Messages name the
 * tunnel `label` (as the user wrote it). Returns 0 or < 0 with err[errlen]. */
int bw__tunnel_addr(const bw_loaded_plugin_t *p, const char *addr, const char *label, char *out,
                    size_t outlen, char *err, size_t errlen);

#endif /* BW_CORE_TUNNEL_DEF_H */
