#include <burrow/plugin.h>
BW_PLUGIN_EXPORT const void *bw_plugin_entry(void); const void *bw_plugin_entry(void) { return 0; }
