// Streaming msgpack-RPC decoder.
//
//   bytes ──reserve/commit or feed──▶ [buffer] ──scan headers──▶ frame ends?
//                                                     │ no: wait for more
//                                                     ▼ yes
//                                     msgpack_unpack_next ──▶ swd_msg_t
//
// The scanner reads only msgpack headers, so a declared length past the
// limit, a container claiming more items than the limit could hold, or
// nesting past SWD_PROTO_MAX_DEPTH is refused from the header alone, before
// anything is buffered whole or allocated. msgpack-c's C API has no such
// limits, which is the only reason the scanner exists; the objects
// themselves are decoded by msgpack-c.
#ifndef SWD_PROTO_DECODER_H
#define SWD_PROTO_DECODER_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/errors.h"

/// Deepest container nesting accepted, the top-level array included. It is
/// msgpack-c's own unpacker stack depth, so every scanned frame unpacks.
#define SWD_PROTO_MAX_DEPTH 32
/// Default for limits.max_message_bytes.
#define SWD_PROTO_DEFAULT_MAX_MESSAGE (16u * 1024u * 1024u)

typedef enum swd_msg_kind {
    SWD_MSG_REQUEST = 0,
    SWD_MSG_RESPONSE = 1,
    SWD_MSG_NOTIFY = 2,
} swd_msg_kind_t;

/// One decoded message. Every pointer in it refers to the decoder's memory
/// and stays valid until the next call to any swd_decoder_* function.
typedef struct swd_msg {
    swd_msg_kind_t kind;
    uint64_t msgid;     ///< requests and responses
    const char *method; ///< requests and notifications; not NUL-terminated
    size_t method_len;
    const msgpack_object *params; ///< requests and notifications; any type
    const msgpack_object *error;  ///< responses; nil when the call succeeded
    const msgpack_object *result; ///< responses
} swd_msg_t;

/// Why a stream was refused. The decoder stops at the first error and
/// answers every later call with the same one.
typedef struct swd_proto_error {
    int err;             ///< SWD_EPROTO, SWD_ETOOLARGE or SWD_ETOODEEP
    swd_rpc_error_t rpc; ///< invalid_request or too_large
    bool undecodable;    ///< bytes that are not msgpack: close without reply
    bool has_msgid;      ///< a kind-0 array whose 2nd element is an unsigned int
    uint64_t msgid;
    char message[128]; ///< for the error reply and the log
} swd_proto_error_t;

typedef struct swd_decoder swd_decoder_t;

/// A decoder refusing frames over `max_message_bytes` (0: the default).
swd_decoder_t *swd_decoder_new(size_t max_message_bytes);
/// Frees the decoder; NULL is a no-op.
void swd_decoder_free(swd_decoder_t *d);

/// Space for at least `hint` bytes (never more than the limit allows) to read
/// into; pass the count written to swd_decoder_commit().
void swd_decoder_reserve(swd_decoder_t *d, size_t hint, char **buf, size_t *len);
void swd_decoder_commit(swd_decoder_t *d, size_t n);
/// Copies `n` bytes in; same as reserve, memcpy, commit.
void swd_decoder_feed(swd_decoder_t *d, const void *data, size_t n);

/// The next message: 1 when `*out` holds one, 0 when more bytes are needed,
/// a negative code when the stream is malformed (details in `*perr`, which may
/// be NULL).
int swd_decoder_next(swd_decoder_t *d, swd_msg_t *out, swd_proto_error_t *perr);

/// Bytes buffered but not yet returned as messages.
size_t swd_decoder_pending(const swd_decoder_t *d);

/// A read buffer larger than this is freed once it holds nothing pending,
/// so one big message does not keep its memory for the connection's life.
#define SWD_DECODER_KEEP_BYTES (1024u * 1024u)

/// Bytes of read buffer the decoder holds now.
size_t swd_decoder_capacity(const swd_decoder_t *d);

#endif
