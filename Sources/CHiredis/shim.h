#ifndef VOICECORE_CHIREDIS_SHIM_H
#define VOICECORE_CHIREDIS_SHIM_H

// hiredis 0.14.1 (Debian 12 libhiredis-dev). The header lives in /usr/include, so no pkg-config
// search path is needed (pkg-config's -D_FILE_OFFSET_BITS=64 would only produce a SwiftPM warning).
#include <hiredis/hiredis.h>
#include <string.h>

// `redisContext.errstr` imports as a 128-element tuple; copy it out as a C string instead.
static inline void vc_redis_errstr(const redisContext *c, char *out, size_t outlen) {
    if (outlen == 0) return;
    strncpy(out, c->errstr, outlen - 1);
    out[outlen - 1] = '\0';
}

#endif
