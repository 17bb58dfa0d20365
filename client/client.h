// A small blocking msgpack-RPC client for swarmd (DESIGN.md §2), for
// swarmctl, tests and embedding programs. Plain POSIX sockets, no event
// loop; one call in flight at a time; not thread-safe (one client per
// thread).
//
//   swd_client_call ──request──▶ socket ──▶ swarmd
//        ▲                                    │
//        └── response with our msgid ◀── swd_decoder ◀── bytes
//                                             │
//             [2,"event",[{...}]] ──▶ event queue ──▶ swd_client_next_event
//
// Everything the server sends is read through swd_decoder_t, so bytes that
// are not msgpack-RPC end the connection with a clear error, never a crash.
// Responses carrying an msgid nobody waits for any more (a call that timed
// out earlier) are dropped.
#ifndef SWD_CLIENT_CLIENT_H
#define SWD_CLIENT_CLIENT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/// Largest server message accepted (a task.get may carry a 16 MiB payload
/// and a 16 MiB result).
#define SWD_CLIENT_MAX_MESSAGE ((size_t)64 * 1024 * 1024)
/// Events buffered while nobody calls swd_client_next_event(); past this the
/// newest are dropped and counted (swd_client_events_dropped()).
#define SWD_CLIENT_MAX_QUEUED_EVENTS 100000u

typedef struct swd_client swd_client_t;

/// Packs the call's params map, exactly one msgpack object (normally a map).
/// A non-zero return aborts the call before anything is sent and becomes
/// swd_client_call()'s return value; use a negative code.
typedef int (*swd_client_pack_cb)(msgpack_packer *pk, void *data);

/// A response. Every pointer refers to memory of the client and stays valid
/// until the next swd_client_call() or swd_client_free() on that client.
typedef struct swd_reply {
    bool is_error;
    const char *code;             ///< is_error: the error's `code` ("not_found"); else NULL
    const char *message;          ///< is_error: the error's `message` ("" if none); else NULL
    const msgpack_object *data;   ///< is_error: the error's `data`, NULL if absent
    const msgpack_object *result; ///< the result object (nil on errors); never NULL
} swd_reply_t;

/// One `subscribe` event, `[2, "event", [{topic, event, ts, data}]]`. Valid
/// until the next swd_client_next_event() or swd_client_free().
typedef struct swd_event {
    const char *topic;          ///< "task", "agent", ...; "" when missing
    const char *event;          ///< "running", "registered", "record", ...; "" when missing
    int64_t ts;                 ///< ms since the Unix epoch; 0 when missing
    const msgpack_object *data; ///< the Task, Agent, record...; nil when missing
    const msgpack_object *body; ///< the whole event map
} swd_event_t;

/// Connects to `addr`: "HOST:PORT" (IPv4 literal or host name, resolved
/// with getaddrinfo, every address tried in turn), "[IPv6]:PORT", or
/// "unix:/path". `timeout_ms` bounds the connecting, not the name lookup
/// (< 0: no limit). Returns 0 with `*out` set, or a negative code with a message
/// naming the address in `err` (NULL allowed when `errlen` is 0):
/// SWD_EPARAMS for a malformed address, SWD_ENOTFOUND when the host name
/// does not resolve, -ETIMEDOUT, or the negative errno of the last failed
/// connect.
int swd_client_connect(const char *addr, int timeout_ms, swd_client_t **out, char *err,
                       size_t errlen);

/// Calls `method` with params `[{...}]`, where `pack` packs the map (NULL:
/// an empty map), and waits up to `timeout_ms` (< 0: forever) for its
/// response; notifications that arrive meanwhile are queued as events.
/// Returns 0 when a response arrived (check `reply->is_error`), else a
/// negative code, with the reason in swd_client_errmsg():
///   - the callback's own non-zero return (nothing was sent);
///   - -ETIMEDOUT: no response in time; the connection stays usable and a
///     late response is dropped (unless the request itself could not be
///     sent whole in time: then the connection is dead);
///   - SWD_EPROTO: the server sent bytes that are not msgpack-RPC;
///   - SWD_ETOOLARGE / SWD_ETOODEEP: a server message past the limits;
///   - SWD_ECLOSED: the server closed the connection;
///   - a negative errno from the socket.
/// After any code but the first two the connection is dead and every later
/// call fails the same way.
int swd_client_call(swd_client_t *c, const char *method, swd_client_pack_cb pack, void *data,
                    swd_reply_t *reply, int timeout_ms);

/// The next queued or arriving `event` notification, waiting up to
/// `timeout_ms` (< 0: forever; 0: only what is already here). 1 with `*ev`
/// filled, 0 on timeout, or a negative code as for swd_client_call().
/// Other notifications are skipped. A signal interrupting the wait returns
/// -EINTR, so a CLI can notice Ctrl-C.
int swd_client_next_event(swd_client_t *c, int timeout_ms, swd_event_t *ev);

/// Why the last call failed ("" before any failure). Owned by the client.
const char *swd_client_errmsg(const swd_client_t *c);

/// Events dropped because the queue was full.
uint64_t swd_client_events_dropped(const swd_client_t *c);

/// The socket, for poll(2) in callers that multiplex; do not read from it.
int swd_client_fd(const swd_client_t *c);

/// Closes the connection and frees everything; NULL is a no-op.
void swd_client_free(swd_client_t *c);

#endif
