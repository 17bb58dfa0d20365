// Encoder for the three msgpack-RPC message kinds into a reusable buffer.
//
// Each *_begin call writes a message's envelope and returns the packer for
// the part the caller supplies (params, result or error data), which must be
// exactly one msgpack object. Messages accumulate back to back in `buf`
// until swd_encoder_reset().
#ifndef SWD_PROTO_ENCODER_H
#define SWD_PROTO_ENCODER_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "proto/buf.h"
#include "proto/errors.h"

typedef struct swd_encoder {
    swd_buf_t buf;
    msgpack_packer pk;
} swd_encoder_t;

void swd_encoder_init(swd_encoder_t *e);
void swd_encoder_close(swd_encoder_t *e);
void swd_encoder_reset(swd_encoder_t *e);

/// `[0, msgid, method, ` then the caller packs params (an array), then `]`.
msgpack_packer *swd_enc_request(swd_encoder_t *e, uint64_t msgid, const char *method);
/// `[2, method, ` then the caller packs params.
msgpack_packer *swd_enc_notify(swd_encoder_t *e, const char *method);
/// `[1, msgid, nil, ` then the caller packs the result.
msgpack_packer *swd_enc_result(swd_encoder_t *e, uint64_t msgid);
/// `[1, msgid, {code, message}, nil]`, complete.
void swd_enc_error(swd_encoder_t *e, uint64_t msgid, swd_rpc_error_t code, const char *message);
/// `[1, msgid, {code, message, data: `, then the caller packs data.
msgpack_packer *swd_enc_error_data(swd_encoder_t *e, uint64_t msgid, swd_rpc_error_t code,
                                   const char *message);
/// Closes swd_enc_error_data(): packs the nil result after the error map.
void swd_enc_error_data_end(swd_encoder_t *e);

// Small packing helpers shared by everything that writes maps. They are
// inline so that a literal key's strlen() is folded at compile time and a
// short string goes to the buffer in one write instead of two: a Task is
// twenty such keys (bench/README.md, profile).

/// Longest string with a one-byte msgpack header (fixstr).
#define SWD_FIXSTR_MAX 31

static inline void swd_pack_strn(msgpack_packer *pk, const char *s, size_t n) {
    if (n <= SWD_FIXSTR_MAX) {
        char b[1 + SWD_FIXSTR_MAX];
        b[0] = (char)(0xa0 | n);
        if (n > 0) {
            memcpy(b + 1, s, n);
        }
        pk->callback(pk->data, b, n + 1);
        return;
    }
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static inline void swd_pack_str(msgpack_packer *pk, const char *s) {
    swd_pack_strn(pk, s, strlen(s));
}

/// A string, or nil when `s` is NULL.
static inline void swd_pack_str_or_nil(msgpack_packer *pk, const char *s) {
    if (s == NULL) {
        msgpack_pack_nil(pk);
    } else {
        swd_pack_str(pk, s);
    }
}

static inline void swd_pack_bool(msgpack_packer *pk, bool v) {
    if (v) {
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_false(pk);
    }
}

/// Writes already-encoded msgpack bytes (one whole object) as they are.
static inline void swd_pack_raw(msgpack_packer *pk, const char *bytes, size_t n) {
    pk->callback(pk->data, bytes, n);
}

/// Packs `key` then a string value (nil when `v` is NULL).
static inline void swd_pack_kv_str(msgpack_packer *pk, const char *key, const char *v) {
    swd_pack_str(pk, key);
    swd_pack_str_or_nil(pk, v);
}

static inline void swd_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v) {
    swd_pack_str(pk, key);
    msgpack_pack_uint64(pk, v);
}

static inline void swd_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t v) {
    swd_pack_str(pk, key);
    msgpack_pack_int64(pk, v);
}

static inline void swd_pack_kv_f64(msgpack_packer *pk, const char *key, double v) {
    swd_pack_str(pk, key);
    msgpack_pack_double(pk, v);
}

static inline void swd_pack_kv_bool(msgpack_packer *pk, const char *key, bool v) {
    swd_pack_str(pk, key);
    swd_pack_bool(pk, v);
}

static inline void swd_pack_kv_nil(msgpack_packer *pk, const char *key) {
    swd_pack_str(pk, key);
    msgpack_pack_nil(pk);
}

/// Packs `key` then a millisecond stamp, or nil when `ms` is 0 or less.
static inline void swd_pack_kv_ms(msgpack_packer *pk, const char *key, int64_t ms) {
    swd_pack_str(pk, key);
    if (ms > 0) {
        msgpack_pack_int64(pk, ms);
    } else {
        msgpack_pack_nil(pk);
    }
}

#endif
