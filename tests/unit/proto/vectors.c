// Hand-computed msgpack-RPC frames. Each byte is written from the msgpack
// specification; the comment beside it says which rule produced it:
//   fixarray 0x90|n, fixmap 0x80|n, fixstr 0xa0|len, positive fixint 0x00-0x7f,
//   nil 0xc0, true 0xc3, bin8 0xc4 len, uint8 0xcc, uint16 0xcd, uint32 0xce,
//   uint64 0xcf (big-endian values).
#include "tests/unit/proto/vectors.h"

// [0, 7, "task.get", [{"task_id": "t1"}]]
static const uint8_t request_bytes[] = {
    0x94,                                                 // fixarray, 4 elements
    0x00,                                                 // 0: request
    0x07,                                                 // msgid 7
    0xa8, 0x74, 0x61, 0x73, 0x6b, 0x2e, 0x67, 0x65, 0x74, // fixstr 8 "task.get"
    0x91,                                                 // params: fixarray, 1 element
    0x81,                                                 // fixmap, 1 entry
    0xa7, 0x74, 0x61, 0x73, 0x6b, 0x5f, 0x69, 0x64,       // fixstr 7 "task_id"
    0xa2, 0x74, 0x31,                                     // fixstr 2 "t1"
};
const tv_vector_t tv_request = {
    .name = "request",
    .bytes = request_bytes,
    .len = sizeof(request_bytes),
    .kind = SWD_MSG_REQUEST,
    .msgid = 7,
    .method = "task.get",
    .body_off = 12,
};

// [0, 8, bin "task.get", []]
static const uint8_t request_bin_bytes[] = {
    0x94,                                           // fixarray, 4 elements
    0x00,                                           // 0: request
    0x08,                                           // msgid 8
    0xc4, 0x08,                                     // bin8, 8 bytes
    0x74, 0x61, 0x73, 0x6b, 0x2e, 0x67, 0x65, 0x74, // "task.get"
    0x90,                                           // params: empty fixarray
};
const tv_vector_t tv_request_bin = {
    .name = "request_bin",
    .bytes = request_bin_bytes,
    .len = sizeof(request_bin_bytes),
    .kind = SWD_MSG_REQUEST,
    .msgid = 8,
    .method = "task.get",
    .method_bin = true,
    .body_off = 13,
};

// [1, 7, nil, {"task_id": "t1", "state": "queued"}]
static const uint8_t result_bytes[] = {
    0x94,                                           // fixarray, 4 elements
    0x01,                                           // 1: response
    0x07,                                           // msgid 7
    0xc0,                                           // error: nil
    0x82,                                           // result: fixmap, 2 entries
    0xa7, 0x74, 0x61, 0x73, 0x6b, 0x5f, 0x69, 0x64, // fixstr 7 "task_id"
    0xa2, 0x74, 0x31,                               // fixstr 2 "t1"
    0xa5, 0x73, 0x74, 0x61, 0x74, 0x65,             // fixstr 5 "state"
    0xa6, 0x71, 0x75, 0x65, 0x75, 0x65, 0x64,       // fixstr 6 "queued"
};
const tv_vector_t tv_result = {
    .name = "result",
    .bytes = result_bytes,
    .len = sizeof(result_bytes),
    .kind = SWD_MSG_RESPONSE,
    .msgid = 7,
    .body_off = 3,
};

// [1, 9, {"code": "not_found", "message": "no task t9"}, nil]
static const uint8_t error_bytes[] = {
    0x94,                                                             // fixarray, 4 elements
    0x01,                                                             // 1: response
    0x09,                                                             // msgid 9
    0x82,                                                             // error: fixmap, 2 entries
    0xa4, 0x63, 0x6f, 0x64, 0x65,                                     // fixstr 4 "code"
    0xa9, 0x6e, 0x6f, 0x74, 0x5f, 0x66, 0x6f, 0x75, 0x6e, 0x64,       // fixstr 9 "not_found"
    0xa7, 0x6d, 0x65, 0x73, 0x73, 0x61, 0x67, 0x65,                   // fixstr 7 "message"
    0xaa, 0x6e, 0x6f, 0x20, 0x74, 0x61, 0x73, 0x6b, 0x20, 0x74, 0x39, // fixstr 10 "no task t9"
    0xc0,                                                             // result: nil
};
const tv_vector_t tv_error = {
    .name = "error",
    .bytes = error_bytes,
    .len = sizeof(error_bytes),
    .kind = SWD_MSG_RESPONSE,
    .msgid = 9,
    .body_off = 3,
};

// [1, 10, {"code": "invalid_params", "message": "bad index 2", "data": {"index": 2}}, nil]
static const uint8_t error_data_bytes[] = {
    0x94,                                           // fixarray, 4 elements
    0x01,                                           // 1: response
    0x0a,                                           // msgid 10
    0x83,                                           // error: fixmap, 3 entries
    0xa4, 0x63, 0x6f, 0x64, 0x65,                   // fixstr 4 "code"
    0xae, 0x69, 0x6e, 0x76, 0x61, 0x6c, 0x69, 0x64, // fixstr 14 "invalid_
    0x5f, 0x70, 0x61, 0x72, 0x61, 0x6d, 0x73,       //                 params"
    0xa7, 0x6d, 0x65, 0x73, 0x73, 0x61, 0x67, 0x65, // fixstr 7 "message"
    0xab, 0x62, 0x61, 0x64, 0x20, 0x69, 0x6e,       // fixstr 11 "bad in
    0x64, 0x65, 0x78, 0x20, 0x32,                   //               dex 2"
    0xa4, 0x64, 0x61, 0x74, 0x61,                   // fixstr 4 "data"
    0x81,                                           // fixmap, 1 entry
    0xa5, 0x69, 0x6e, 0x64, 0x65, 0x78,             // fixstr 5 "index"
    0x02,                                           // 2
    0xc0,                                           // result: nil
};
const tv_vector_t tv_error_data = {
    .name = "error_data",
    .bytes = error_data_bytes,
    .len = sizeof(error_data_bytes),
    .kind = SWD_MSG_RESPONSE,
    .msgid = 10,
    .body_off = 3,
};

// [1, 3, {"code": "timeout", "message": "timeout"}, nil]
static const uint8_t error_default_message_bytes[] = {
    0x94,                                           // fixarray, 4 elements
    0x01,                                           // 1: response
    0x03,                                           // msgid 3
    0x82,                                           // error: fixmap, 2 entries
    0xa4, 0x63, 0x6f, 0x64, 0x65,                   // fixstr 4 "code"
    0xa7, 0x74, 0x69, 0x6d, 0x65, 0x6f, 0x75, 0x74, // fixstr 7 "timeout"
    0xa7, 0x6d, 0x65, 0x73, 0x73, 0x61, 0x67, 0x65, // fixstr 7 "message"
    0xa7, 0x74, 0x69, 0x6d, 0x65, 0x6f, 0x75, 0x74, // fixstr 7 "timeout"
    0xc0,                                           // result: nil
};
const tv_vector_t tv_error_default_message = {
    .name = "error_default_message",
    .bytes = error_default_message_bytes,
    .len = sizeof(error_default_message_bytes),
    .kind = SWD_MSG_RESPONSE,
    .msgid = 3,
    .body_off = 3,
};

// [2, "event", [{"topic": "task", "event": "queued", "ts": 1700000000000}]]
// 1700000000000 = 0x0000018bcfe56800 (395 * 2^32 + 3487918080), past
// UINT32_MAX, so it takes uint64.
static const uint8_t notify_bytes[] = {
    0x93,                                     // fixarray, 3 elements
    0x02,                                     // 2: notification
    0xa5, 0x65, 0x76, 0x65, 0x6e, 0x74,       // fixstr 5 "event"
    0x91,                                     // params: fixarray, 1 element
    0x83,                                     // fixmap, 3 entries
    0xa5, 0x74, 0x6f, 0x70, 0x69, 0x63,       // fixstr 5 "topic"
    0xa4, 0x74, 0x61, 0x73, 0x6b,             // fixstr 4 "task"
    0xa5, 0x65, 0x76, 0x65, 0x6e, 0x74,       // fixstr 5 "event"
    0xa6, 0x71, 0x75, 0x65, 0x75, 0x65, 0x64, // fixstr 6 "queued"
    0xa2, 0x74, 0x73,                         // fixstr 2 "ts"
    0xcf, 0x00, 0x00, 0x01, 0x8b,             // uint64 0x0000018b
    0xcf, 0xe5, 0x68, 0x00,                   //             cfe56800
};
const tv_vector_t tv_notify = {
    .name = "notify",
    .bytes = notify_bytes,
    .len = sizeof(notify_bytes),
    .kind = SWD_MSG_NOTIFY,
    .method = "event",
    .body_off = 8,
};

// [1, 200, nil, true]
static const uint8_t result_msgid8_bytes[] = {
    0x94,       // fixarray, 4 elements
    0x01,       // 1: response
    0xcc, 0xc8, // uint8 200
    0xc0,       // error: nil
    0xc3,       // result: true
};
const tv_vector_t tv_result_msgid8 = {
    .name = "result_msgid8",
    .bytes = result_msgid8_bytes,
    .len = sizeof(result_msgid8_bytes),
    .kind = SWD_MSG_RESPONSE,
    .msgid = 200,
    .body_off = 4,
};

// [0, 300, "ping", []]
static const uint8_t request_msgid16_bytes[] = {
    0x94,                         // fixarray, 4 elements
    0x00,                         // 0: request
    0xcd, 0x01, 0x2c,             // uint16 300 (0x012c)
    0xa4, 0x70, 0x69, 0x6e, 0x67, // fixstr 4 "ping"
    0x90,                         // params: empty fixarray
};
const tv_vector_t tv_request_msgid16 = {
    .name = "request_msgid16",
    .bytes = request_msgid16_bytes,
    .len = sizeof(request_msgid16_bytes),
    .kind = SWD_MSG_REQUEST,
    .msgid = 300,
    .method = "ping",
    .body_off = 10,
};

// [1, 70000, nil, nil]
static const uint8_t result_msgid32_bytes[] = {
    0x94,                         // fixarray, 4 elements
    0x01,                         // 1: response
    0xce, 0x00, 0x01, 0x11, 0x70, // uint32 70000 (0x00011170)
    0xc0,                         // error: nil
    0xc0,                         // result: nil
};
const tv_vector_t tv_result_msgid32 = {
    .name = "result_msgid32",
    .bytes = result_msgid32_bytes,
    .len = sizeof(result_msgid32_bytes),
    .kind = SWD_MSG_RESPONSE,
    .msgid = 70000,
    .body_off = 7,
};

// [0, 4294967295, "ping", []]
static const uint8_t request_msgid_max_bytes[] = {
    0x94,                         // fixarray, 4 elements
    0x00,                         // 0: request
    0xce, 0xff, 0xff, 0xff, 0xff, // uint32 4294967295
    0xa4, 0x70, 0x69, 0x6e, 0x67, // fixstr 4 "ping"
    0x90,                         // params: empty fixarray
};
const tv_vector_t tv_request_msgid_max = {
    .name = "request_msgid_max",
    .bytes = request_msgid_max_bytes,
    .len = sizeof(request_msgid_max_bytes),
    .kind = SWD_MSG_REQUEST,
    .msgid = UINT32_MAX,
    .method = "ping",
    .body_off = 12,
};

// [0, 7, "ping", []], msgid in a wider encoding than needed (legal msgpack,
// and what fixed-width encoders send).
static const uint8_t request_msgid_wide_bytes[] = {
    0x94,                         // fixarray, 4 elements
    0x00,                         // 0: request
    0xce, 0x00, 0x00, 0x00, 0x07, // uint32 7
    0xa4, 0x70, 0x69, 0x6e, 0x67, // fixstr 4 "ping"
    0x90,                         // params: empty fixarray
};
const tv_vector_t tv_request_msgid_wide = {
    .name = "request_msgid_wide",
    .bytes = request_msgid_wide_bytes,
    .len = sizeof(request_msgid_wide_bytes),
    .kind = SWD_MSG_REQUEST,
    .msgid = 7,
    .method = "ping",
    .body_off = 12,
};

const tv_vector_t *const tv_all[] = {
    &tv_request,        &tv_request_bin,       &tv_result,
    &tv_error,          &tv_error_data,        &tv_error_default_message,
    &tv_notify,         &tv_result_msgid8,     &tv_request_msgid16,
    &tv_result_msgid32, &tv_request_msgid_max, &tv_request_msgid_wide,
};
const size_t tv_all_count = sizeof(tv_all) / sizeof(tv_all[0]);

void tv_lcg_seed(tv_lcg_t *g, uint64_t seed) {
    g->state = seed ^ 0x9e3779b97f4a7c15u;
}

uint32_t tv_lcg_next(tv_lcg_t *g) {
    g->state = g->state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(g->state >> 32);
}

uint32_t tv_lcg_below(tv_lcg_t *g, uint32_t n) {
    return (uint32_t)(((uint64_t)tv_lcg_next(g) * n) >> 32);
}
