/* bw_strerror: names for the codes of include/burrow/error.h. */
#include <string.h>

#include <burrow/error.h>
#include <uv.h>

const char *bw_strerror(int err)
{
    switch (err) {
    case BW_OK:
        return "success";
    case BW_PAUSE:
        return "accepted, pause the source";
    case BW_EABI:
        return "plugin ABI mismatch";
    case BW_EAGAIN:
        return "queue full, pause the source";
    case BW_EPROTO:
        return "protocol error";
    case BW_ECONNABORTED:
        return "session closed";
    default:
        break;
    }
    /* Every other code is -errno; libuv's table covers them all and, unlike
     * strerror(), is thread-safe and returns static text. */
    if (err < 0 && err > -4000)
        return uv_strerror(err);
    return "unknown error";
}
