// A small HTTP/1.1 server on the libuv loop, for the read-only status
// endpoint (DESIGN.md §3). Requests are parsed by Node's http-parser; this
// file only decides what to answer and when.
//
//   accept ─▶ conn ─read─▶ input buffer ─▶ http_parser ─▶ request (url,
//   headers; body counted and dropped) ─▶ GET/HEAD? ─▶ route ─▶ handler
//                                               └─ else 405 / 404
//   handler ─▶ swd_http_respond() now or later ─▶ out buffer ─▶ uv_write
//          └─▶ swd_http_stream_begin/write/end (server-sent events)
//
// One request per connection is in the handler's hands at a time: the
// parser pauses after each complete request, so pipelined requests are
// answered in order. Errors (400, 408, 413, 431) are answered with
// `Connection: close`; the connection then shuts down its side, drains what
// the client still sends for a moment (so the client sees the answer
// instead of a reset), and closes.
//
// Lifetime: a response object (swd_http_res_t) stays valid until the owner
// finishes it (swd_http_respond(), swd_http_stream_end()) or, when the
// connection closes first, until its close callback has run; the server
// frees it. Connections and the server are freed only in libuv close
// callbacks, so after swd_http_server_close() the loop runs dry and
// uv_loop_close() returns 0.
//
// libuv writes with write(2): the process must ignore SIGPIPE, or a client
// that leaves mid-answer kills it.
#ifndef SWD_RUNTIME_HTTP_SERVER_H
#define SWD_RUNTIME_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct swd_http_server swd_http_server_t;
typedef struct swd_http_res swd_http_res_t;

/// Limits of a server; 0 in any field means the default.
typedef struct swd_http_server_opts {
    uint32_t max_connections;        ///< default 256; more are answered 503 and closed
    size_t max_header_bytes;         ///< request line and headers; default 32 KiB, beyond: 431
    uint64_t idle_timeout_ms;        ///< default 30000: idle connections close; a
                                     ///< request whose headers do not complete in
                                     ///< time gets 408
    size_t max_body_bytes;           ///< default 64 KiB (bodies are read and dropped), beyond: 413
    size_t max_stream_pending_bytes; ///< default 1 MiB: a stream whose unsent
                                     ///< output passes this is cut off
} swd_http_server_opts_t;

/// One request header, as received (value without surrounding blanks).
typedef struct swd_http_header {
    const char *name;
    const char *value;
} swd_http_header_t;

/// A request as a handler sees it. Everything is borrowed from the server
/// and valid only during the handler call: copy what a later answer needs.
typedef struct swd_http_req {
    const char *method;  ///< "GET" or "HEAD" (handlers see no others)
    const char *path;    ///< percent-decoded path, without query; never NULL
    const char *query;   ///< raw query string after '?', NULL when there is none
    const char *url;     ///< the request target as received
    unsigned http_major; ///< 1
    unsigned http_minor; ///< 0 or 1
    const swd_http_header_t *headers;
    size_t nheaders;
} swd_http_req_t;

/// Handles a request: answer `res` exactly once, now or later. A handler
/// that keeps `res` to answer later must call swd_http_stream_on_close() to
/// learn when the client leaves first (after that callback `res` is gone).
typedef void (*swd_http_handler_fn)(swd_http_res_t *res, const swd_http_req_t *req, void *data);
/// The client left (or the server closed) before `res` was finished; `res`
/// is freed when this returns. Finishing `res` inside is allowed (a no-op).
typedef void (*swd_http_close_cb)(swd_http_res_t *res, void *data);

/// A server on `loop`; `opts` may be NULL (all defaults) and is copied.
/// Nothing listens until swd_http_server_listen().
swd_http_server_t *swd_http_server_new(uv_loop_t *loop, const swd_http_server_opts_t *opts);
/// Listens on TCP `addr` ("HOST:PORT", "[::1]:0"; port 0 picks one) and
/// writes the bound address as "HOST:PORT" to `bound` (may be NULL). 0, or a
/// negative code (libuv's, or SWD_ECONFIG/SWD_ESTATE) with the reason in
/// `err`. One listener per server; after a failure it may be called again.
int swd_http_server_listen(swd_http_server_t *s, const char *addr, char *bound, size_t cap,
                           char *err, size_t errlen);
/// Routes GET/HEAD requests for `path` (copied) to `fn` with `data`
/// (borrowed). `prefix`: every path starting with `path` ("/tasks/"). An
/// exact route wins over prefixes, the longest prefix over shorter ones; a
/// route registered again replaces the earlier one.
void swd_http_server_route(swd_http_server_t *s, const char *path, bool prefix,
                           swd_http_handler_fn fn, void *data);
/// Open connections (those being refused with 503 not counted).
uint32_t swd_http_server_connections(const swd_http_server_t *s);
/// Closes the listener and every connection: unfinished responses get their
/// close callback (from the loop, not from inside this call). The server's
/// memory is freed once every handle has closed; `s` must not be used after
/// this call. NULL is a no-op.
void swd_http_server_close(swd_http_server_t *s);

/// Header `name` (any case) of `req`: the first one's value, or NULL.
const char *swd_http_req_header(const swd_http_req_t *req, const char *name);
/// Query parameter `name` of `req` ("?n=200&follow=1"), percent-decoded
/// ('+' is a space) into `buf` (`cap` bytes, NUL-terminated): `buf`, "" for
/// a name without a value, or NULL when it is absent, does not fit or holds
/// a NUL byte.
const char *swd_http_query_get(const swd_http_req_t *req, const char *name, char *buf, size_t cap);

/// Answers with `status`, `content_type` (may be NULL: no Content-Type)
/// and `len` bytes of `body` (borrowed, copied; may be NULL when len is 0).
/// Adds Content-Length and `Cache-Control: no-store`; for HEAD the body is
/// left out. Finishes `res`: it must not be used afterwards. If the client
/// has left already, the answer is dropped.
void swd_http_respond(swd_http_res_t *res, int status, const char *content_type, const char *body,
                      size_t len);

/// Starts a streamed answer (server-sent events: "text/event-stream"): the
/// headers go out now, without Content-Length, with `Connection: keep-alive`;
/// the body lasts until swd_http_stream_end() or until the client leaves.
/// For HEAD only the headers are sent and the stream counts as gone.
void swd_http_stream_begin(swd_http_res_t *res, int status, const char *content_type);
/// Queues `len` bytes of `data` (copied). False when the client is gone or
/// has let more than max_stream_pending_bytes pile up (it is then cut off,
/// and the close callback follows from the loop). Never blocks.
bool swd_http_stream_write(swd_http_res_t *res, const char *data, size_t len);
/// `cb` (may be NULL to cancel) runs with `data` if the connection closes
/// before `res` is finished. Works for any response kept for later, not only
/// streams.
void swd_http_stream_on_close(swd_http_res_t *res, swd_http_close_cb cb, void *data);
/// Ends a stream: what is queued is sent, then the connection closes (the
/// body of a stream is delimited by the close). Finishes `res`; the close
/// callback does not run.
void swd_http_stream_end(swd_http_res_t *res);
/// True once the client has gone (or the server is closing): writes are
/// dropped and the close callback is coming.
bool swd_http_res_gone(const swd_http_res_t *res);

#endif
