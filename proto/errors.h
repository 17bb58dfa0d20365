// Error codes of swarmd, in two spaces kept apart on purpose:
//
// - internal codes (`int`, negative, libuv's and errno's pass through) that
//   functions return, named by swd_err_name() and described by swd_strerror();
// - RPC error codes, the `code` strings of DESIGN.md §2 that go on the wire.
//
// Each space is one X-macro table, so the enum and its strings cannot drift.
#ifndef SWD_PROTO_ERRORS_H
#define SWD_PROTO_ERRORS_H

// Internal codes live below libuv's range (libuv ends at -4095 for UV_EOF).
#define SWD_ERRNO_MAP(X)                                                                           \
    X(PROTO, -5001, "malformed msgpack-RPC stream")                                                \
    X(TOOLARGE, -5002, "message larger than the configured limit")                                 \
    X(TOODEEP, -5003, "message nested deeper than the limit")                                      \
    X(PARAMS, -5004, "invalid parameters")                                                         \
    X(CONFIG, -5005, "invalid configuration")                                                      \
    X(STATE, -5006, "operation not allowed in this state")                                         \
    X(NOTFOUND, -5007, "not found")                                                                \
    X(EXISTS, -5008, "already exists")                                                             \
    X(CLOSED, -5009, "closed")                                                                     \
    X(OVERFLOW, -5010, "limit reached")

enum {
#define SWD_ERRNO_ENUM(name, value, text) SWD_E##name = (value),
    SWD_ERRNO_MAP(SWD_ERRNO_ENUM)
#undef SWD_ERRNO_ENUM
};

/// A static description of `err` (a swarmd code, or a negative errno).
const char *swd_strerror(int err);
/// A static short name of `err` ("SWD_EPROTO", "ENOENT", ...).
const char *swd_err_name(int err);

// RPC error codes of DESIGN.md §2, in wire order of the table there.
#define SWD_RPC_ERROR_MAP(X)                                                                       \
    X(INVALID_REQUEST, "invalid_request")                                                          \
    X(INVALID_PARAMS, "invalid_params")                                                            \
    X(UNKNOWN_METHOD, "unknown_method")                                                            \
    X(NOT_FOUND, "not_found")                                                                      \
    X(UNAUTHORIZED, "unauthorized")                                                                \
    X(CONFLICT, "conflict")                                                                        \
    X(OVERLOADED, "overloaded")                                                                    \
    X(BUDGET_EXHAUSTED, "budget_exhausted")                                                        \
    X(TOO_LARGE, "too_large")                                                                      \
    X(TIMEOUT, "timeout")                                                                          \
    X(CANCELLED, "cancelled")                                                                      \
    X(SHUTTING_DOWN, "shutting_down")                                                              \
    X(INTERNAL, "internal")

typedef enum swd_rpc_error {
    SWD_RPC_OK = 0,
#define SWD_RPC_ERROR_ENUM(name, code) SWD_RPC_##name,
    SWD_RPC_ERROR_MAP(SWD_RPC_ERROR_ENUM)
#undef SWD_RPC_ERROR_ENUM
        SWD_RPC_ERROR_COUNT
} swd_rpc_error_t;

/// The wire `code` string of `e` ("invalid_params"); NULL for SWD_RPC_OK.
const char *swd_rpc_error_code(swd_rpc_error_t e);
/// The error whose code is `code` (`len` bytes); SWD_RPC_INTERNAL if unknown.
swd_rpc_error_t swd_rpc_error_parse(const char *code, size_t len);

#endif
