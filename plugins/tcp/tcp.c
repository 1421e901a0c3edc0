#include <burrow/plugin.h>
BW_PLUGIN_EXPORT const bw_plugin_t *bw_plugin_entry(void);
const bw_plugin_t *bw_plugin_entry(void) { return 0; }
