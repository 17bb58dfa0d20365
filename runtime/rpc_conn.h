// One msgpack-RPC peer on a libuv stream: a TCP or unix socket, or a pair
// of pipes (a process agent's stdin/stdout, or `swarm-agent --stdio`).
// Both sides send requests, so a connection dispatches incoming requests
// and notifications to its owner and matches incoming responses to the
// requests it sent.
//
//   read ─▶ decoder ─▶ request/notify ─▶ opts.dispatch
//                   └▶ response ─────▶ pending[msgid].cb
//   reply/request/notify ─▶ out buffer ─▶ one uv_write in flight at a time
//
// Messages written while a write is in flight accumulate and leave in one
// write, which batches replies under load. Pending output beyond
// max_write_buffer_bytes means the peer stopped reading: it is cut off.
//
// Lifetime: the connection is reference counted. Closing fails every
// pending outgoing request (its callback gets NULL), calls opts.on_close
// once, and frees the memory when the handles are closed and the last
// reference is gone. Replies to a closing connection are dropped.
#ifndef SWD_RUNTIME_RPC_CONN_H
#define SWD_RUNTIME_RPC_CONN_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proto/decoder.h"
#include "proto/errors.h"

typedef struct swd_rpc_conn swd_rpc_conn_t;

/// An incoming request or notification. A request must be answered exactly
/// once, now or later (take a reference to answer later).
typedef void (*swd_rpc_dispatch_cb)(swd_rpc_conn_t *c, const swd_msg_t *msg, void *data);
/// The answer to a request this side sent; `resp` is NULL when the
/// connection closed before it came.
typedef void (*swd_rpc_response_cb)(swd_rpc_conn_t *c, const swd_msg_t *resp, uint64_t cookie,
                                    void *data);
typedef void (*swd_rpc_close_cb)(swd_rpc_conn_t *c, void *data);
/// This side answered request `msgid`; `code` is the error code, NULL for a
/// result (for metrics).
typedef void (*swd_rpc_reply_cb)(swd_rpc_conn_t *c, uint64_t msgid, const char *code, void *data);

typedef enum swd_rpc_conn_kind {
    SWD_CONN_TCP,
    SWD_CONN_UNIX,
    SWD_CONN_PIPES, ///< separate read and write pipes
} swd_rpc_conn_kind_t;

/// Writes of many connections gathered and flushed once per loop turn,
/// just before the loop polls: whatever one turn's callbacks send to a peer
/// leaves in one write(2), tried at once with uv_try_write() (no write
/// request, no callback, no epoll re-arm); only what the socket does not
/// take waits for uv_write(). One per loop, owned by whoever owns the
/// connections (the RPC server).
typedef struct swd_rpc_batch {
    uv_prepare_t prepare;
    struct swd_rpc_conn *head; // connections with bytes to flush
    bool closed;
} swd_rpc_batch_t;

void swd_rpc_batch_init(uv_loop_t *loop, swd_rpc_batch_t *b);
/// Flushes what is queued (best effort, without waiting) and closes the
/// handle; `on_closed` runs when it is closed (may be NULL). Connections
/// that still send afterwards write at once.
void swd_rpc_batch_close(swd_rpc_batch_t *b, uv_close_cb on_closed);

typedef struct swd_rpc_conn_opts {
    size_t max_message_bytes;      ///< 0: the proto default (16 MiB)
    size_t max_write_buffer_bytes; ///< 0: 64 MiB
    swd_rpc_batch_t *batch;        ///< NULL: every send writes at once
    swd_rpc_dispatch_cb dispatch;
    swd_rpc_close_cb on_close; ///< may be NULL
    swd_rpc_reply_cb on_reply; ///< may be NULL
    void *data;                ///< passed to dispatch and on_close
} swd_rpc_conn_opts_t;

/// A connection whose handle(s) are initialised but not yet connected:
/// accept or connect into swd_rpc_conn_stream(), or open fds with
/// swd_rpc_conn_open_pipes(), then swd_rpc_conn_start().
swd_rpc_conn_t *swd_rpc_conn_new(uv_loop_t *loop, swd_rpc_conn_kind_t kind,
                                 const swd_rpc_conn_opts_t *opts);
/// The socket handle (TCP/unix), or the read pipe (pipes).
uv_stream_t *swd_rpc_conn_stream(swd_rpc_conn_t *c);
/// The write pipe (pipes), for uv_spawn's stdio; NULL for sockets.
uv_stream_t *swd_rpc_conn_out_stream(swd_rpc_conn_t *c);
/// Opens existing fds as the read and write pipes (SWD_CONN_PIPES).
int swd_rpc_conn_open_pipes(swd_rpc_conn_t *c, int in_fd, int out_fd);
/// Starts reading. If this fails the connection is closed.
int swd_rpc_conn_start(swd_rpc_conn_t *c);

/// Closes now; `reason` (static or copied) goes into the log. Idempotent.
void swd_rpc_conn_close(swd_rpc_conn_t *c, const char *reason);
/// Stops reading and closes once everything queued has been written.
void swd_rpc_conn_close_after_flush(swd_rpc_conn_t *c, const char *reason);
bool swd_rpc_conn_closing(const swd_rpc_conn_t *c);
void swd_rpc_conn_ref(swd_rpc_conn_t *c);
void swd_rpc_conn_unref(swd_rpc_conn_t *c);

/// A name for logs: the peer's address, or what swd_rpc_conn_set_name() set.
const char *swd_rpc_conn_name(const swd_rpc_conn_t *c);
void swd_rpc_conn_set_name(swd_rpc_conn_t *c, const char *name);
/// One slot for the owner's per-connection state (session, agent).
void swd_rpc_conn_set_user(swd_rpc_conn_t *c, void *user);
void *swd_rpc_conn_user(const swd_rpc_conn_t *c);
/// Replaces the close callback (e.g. when the connection becomes an agent).
void swd_rpc_conn_set_on_close(swd_rpc_conn_t *c, swd_rpc_close_cb cb, void *data);

// Writing. Each *_begin returns the packer for the one object the caller
// packs (result, params); swd_rpc_conn_send() then finishes the message.
msgpack_packer *swd_rpc_conn_reply_begin(swd_rpc_conn_t *c, uint64_t msgid);
void swd_rpc_conn_reply_error(swd_rpc_conn_t *c, uint64_t msgid, swd_rpc_error_t code,
                              const char *message);
/// An error whose `data` the caller packs, then swd_rpc_conn_send().
msgpack_packer *swd_rpc_conn_reply_error_data(swd_rpc_conn_t *c, uint64_t msgid,
                                              swd_rpc_error_t code, const char *message);
/// An error whose whole map the caller packs (e.g. task.run's
/// {code, message, retryable, retry_after_ms}), then swd_rpc_conn_send().
msgpack_packer *swd_rpc_conn_reply_error_begin(swd_rpc_conn_t *c, uint64_t msgid);
/// A request: `cb` gets the answer with `cookie` and `data`.
msgpack_packer *swd_rpc_conn_request_begin(swd_rpc_conn_t *c, const char *method,
                                           swd_rpc_response_cb cb, uint64_t cookie, void *data);
msgpack_packer *swd_rpc_conn_notify_begin(swd_rpc_conn_t *c, const char *method);
void swd_rpc_conn_send(swd_rpc_conn_t *c);

/// When the last bytes arrived (loop milliseconds, as swd_clock_now()).
int64_t swd_rpc_conn_last_read_ms(const swd_rpc_conn_t *c);

/// Bytes queued or being written.
size_t swd_rpc_conn_pending_bytes(const swd_rpc_conn_t *c);

#endif
