// Hand-computed msgpack-RPC byte vectors for the proto/ unit tests, and the
// helpers the three test files share.
//
// Every vector in vectors.c was written byte by byte from the msgpack
// specification (https://github.com/msgpack/msgpack/blob/master/spec.md),
// never produced by the encoder under test, so the encoder tests compare
// against an independent reference and the decoder tests read bytes that
// another implementation would send.
#ifndef SWD_TESTS_UNIT_PROTO_VECTORS_H
#define SWD_TESTS_UNIT_PROTO_VECTORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/decoder.h"

/// One complete msgpack-RPC frame and what a decoder must make of it.
typedef struct tv_vector {
    const char *name;
    const uint8_t *bytes; ///< static storage
    size_t len;
    swd_msg_kind_t kind;
    uint64_t msgid;     ///< requests and responses
    const char *method; ///< requests and notifications; NULL for responses
    bool method_bin;    ///< the method is sent as bin rather than str
    /// Offset in `bytes` where params (requests, notifications) or the error
    /// object (responses) starts; these tails are minimal encodings, so
    /// re-packing the decoded object reproduces them.
    size_t body_off;
} tv_vector_t;

/// `[0, 7, "task.get", [{"task_id": "t1"}]]`
extern const tv_vector_t tv_request;
/// `[0, 8, bin "task.get", []]`
extern const tv_vector_t tv_request_bin;
/// `[1, 7, nil, {"task_id": "t1", "state": "queued"}]`
extern const tv_vector_t tv_result;
/// `[1, 9, {"code": "not_found", "message": "no task t9"}, nil]`
extern const tv_vector_t tv_error;
/// `[1, 10, {"code": "invalid_params", "message": "bad index 2", "data": {"index": 2}}, nil]`
extern const tv_vector_t tv_error_data;
/// `[1, 3, {"code": "timeout", "message": "timeout"}, nil]` (a NULL message)
extern const tv_vector_t tv_error_default_message;
/// `[2, "event", [{"topic": "task", "event": "queued", "ts": 1700000000000}]]`
extern const tv_vector_t tv_notify;
/// `[1, 200, nil, true]`: msgid as uint8
extern const tv_vector_t tv_result_msgid8;
/// `[0, 300, "ping", []]`: msgid as uint16
extern const tv_vector_t tv_request_msgid16;
/// `[1, 70000, nil, nil]`: msgid as uint32
extern const tv_vector_t tv_result_msgid32;
/// `[0, 4294967295, "ping", []]`: the largest msgid
extern const tv_vector_t tv_request_msgid_max;
/// `[0, 7, "ping", []]` with msgid sent as a non-minimal uint32 (ce 00 00 00 07)
extern const tv_vector_t tv_request_msgid_wide;

/// Every vector above, in that order.
extern const tv_vector_t *const tv_all[];
extern const size_t tv_all_count;

/// A tiny deterministic generator (64-bit LCG, Knuth's MMIX constants), so
/// the randomised tests repeat exactly and depend on nothing else.
typedef struct tv_lcg {
    uint64_t state;
} tv_lcg_t;

void tv_lcg_seed(tv_lcg_t *g, uint64_t seed);
/// The next 32 random bits (the high half of the state).
uint32_t tv_lcg_next(tv_lcg_t *g);
/// Uniform-ish in [0, n); n > 0.
uint32_t tv_lcg_below(tv_lcg_t *g, uint32_t n);

#endif
