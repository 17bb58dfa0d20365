#include <stddef.h>
#include <string.h>

#include "proto/errors.h"

const char *swd_strerror(int err) {
    switch (err) {
#define SWD_ERRNO_TEXT(name, value, text)                                                          \
    case SWD_E##name:                                                                              \
        return text;
        SWD_ERRNO_MAP(SWD_ERRNO_TEXT)
#undef SWD_ERRNO_TEXT
    case -4095:
        return "end of file";
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        return strerror(-err);
    }
    return "unknown error";
}

const char *swd_err_name(int err) {
    switch (err) {
#define SWD_ERRNO_NAME(name, value, text)                                                          \
    case SWD_E##name:                                                                              \
        return "SWD_E" #name;
        SWD_ERRNO_MAP(SWD_ERRNO_NAME)
#undef SWD_ERRNO_NAME
    case -4095:
        return "EOF";
    default:
        break;
    }
    if (err < 0 && err > -4096) {
#ifdef _GNU_SOURCE
        const char *n = strerrorname_np(-err);
        if (n != NULL) {
            return n;
        }
#endif
        return "ERRNO";
    }
    return "UNKNOWN";
}

static const char *const rpc_codes[SWD_RPC_ERROR_COUNT] = {[SWD_RPC_OK] = NULL,
#define SWD_RPC_ERROR_STR(name, code) [SWD_RPC_##name] = code,
                                                           SWD_RPC_ERROR_MAP(SWD_RPC_ERROR_STR)
#undef SWD_RPC_ERROR_STR
};

const char *swd_rpc_error_code(swd_rpc_error_t e) {
    if ((int)e <= 0 || e >= SWD_RPC_ERROR_COUNT) {
        return NULL;
    }
    return rpc_codes[e];
}

swd_rpc_error_t swd_rpc_error_parse(const char *code, size_t len) {
    for (int e = 1; e < SWD_RPC_ERROR_COUNT; e++) {
        if (strlen(rpc_codes[e]) == len && memcmp(rpc_codes[e], code, len) == 0) {
            return (swd_rpc_error_t)e;
        }
    }
    return SWD_RPC_INTERNAL;
}
