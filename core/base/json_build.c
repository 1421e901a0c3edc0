/* Whole-or-nothing JSON building. See json_build.h. */
#include "json_build.h"

void bw_json_put(json_t *o, const char *key, json_t *v, int *bad)
{
    if (json_object_set_new(o, key, v) != 0)
        *bad = 1;
}

void bw_json_push(json_t *a, json_t *v, int *bad)
{
    if (json_array_append_new(a, v) != 0)
        *bad = 1;
}

json_t *bw_json_whole(json_t *o, int bad)
{
    if (!bad)
        return o;
    json_decref(o);
    return NULL;
}
