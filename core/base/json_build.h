/* Building JSON documents that are whole or nothing. jansson's setters
 * report out of memory (and a NULL value from a constructor that could not
 * allocate) through a return code; a builder that ignores it serves or
 * writes a document with a member missing as if it were whole. These
 * helpers remember the first failure so a builder can return NULL instead. */
#ifndef BW_CORE_JSON_BUILD_H
#define BW_CORE_JSON_BUILD_H

#include <jansson.h>

/* json_object_set_new(o, key, v): steals `v` (NULL-safe, as is `o`); sets
 * *bad on failure. */
void bw_json_put(json_t *o, const char *key, json_t *v, int *bad);

/* json_array_append_new(a, v), with the same contract as bw_json_put. */
void bw_json_push(json_t *a, json_t *v, int *bad);

/* Returns `o` when `bad` is 0, else drops `o` and returns NULL. */
json_t *bw_json_whole(json_t *o, int bad);

#endif /* BW_CORE_JSON_BUILD_H */
