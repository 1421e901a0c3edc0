/* Feeds bw_replay_modify (core/agent/replay_mod.c) a captured request and a
 * modifications object from the input: the first NUL byte splits them; the
 * part before is the JSON when it parses, else one of a few fixed
 * modification sets picked by its first byte, so both the request parser
 * and the JSON validation see arbitrary bytes. When a rebuild succeeds it
 * must parse again with no modifications and come back unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "replay.h"

static const char *const fixed[] = {
    "{}",
    "{\"method\":\"PUT\",\"uri\":\"/x?y\"}",
    "{\"headers\":{\"Host\":null,\"X-A\":[\"1\",\"2\"],\"content-length\":\"7\"}}",
    "{\"body\":\"hello\"}",
    "{\"body_base64\":\"AAEC\",\"headers\":{\"Transfer-Encoding\":\"chunked\"}}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t head = nul ? (size_t)(nul - data) : 0;
    const char *raw = (const char *)data + (nul ? head + 1 : 0);
    size_t raw_len = size - (nul ? head + 1 : 0);
    json_error_t jerr;
    json_t *mods = head ? json_loadb((const char *)data, head, 0, &jerr) : NULL;
    if (!mods)
        mods = json_loads(fixed[(size ? data[0] : 0) % (sizeof fixed / sizeof *fixed)], 0, &jerr);
    void *out = NULL, *again = NULL;
    size_t out_len = 0, again_len = 0;
    char err[256];
    if (bw_replay_modify(raw, raw_len, mods, &out, &out_len, err, sizeof err) == 0) {
        json_t *none = json_object();
        if (bw_replay_modify(out, out_len, none, &again, &again_len, err, sizeof err) != 0 ||
            again_len != out_len || memcmp(again, out, out_len) != 0)
            abort();
        json_decref(none);
    }
    free(out);
    free(again);
    json_decref(mods);
    return 0;
}
