// The RPC server: TCP and unix listeners, the connection list, the method
// table, and the session rules of DESIGN.md §2.1 (hello, tokens, which
// methods a connection may call). Modules register their methods here;
// the server knows nothing of tasks or agents.
#ifndef SWD_RUNTIME_RPC_SERVER_H
#define SWD_RUNTIME_RPC_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proto/params.h"
#include "runtime/rpc_conn.h"

typedef enum swd_method_class {
    SWD_METHOD_CLIENT, ///< needs a good hello when auth.token is set
    SWD_METHOD_AGENT,  ///< needs a registered agent on the connection
    SWD_METHOD_OPEN,   ///< checks its own credentials (hello, agent.register)
} swd_method_class_t;

/// Handles a request (m->kind REQUEST: must reply to m->msgid) or a
/// notification. `p` holds the opened params map.
typedef void (*swd_rpc_handler_fn)(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p,
                                   void *data);

typedef struct swd_rpc_server_opts {
    size_t max_message_bytes;
    size_t max_write_buffer_bytes;
    uint32_t max_connections;
    const char *token;       ///< auth.token, NULL for none
    const char *agent_token; ///< auth.agent_token, NULL for none
} swd_rpc_server_opts_t;

typedef struct swd_rpc_server swd_rpc_server_t;

/// Called once per request with the method name ("unknown" for an unknown
/// one) and the reply's error code (NULL for success), for metrics.
typedef void (*swd_rpc_observe_cb)(const char *method, const char *error_code, void *data);

swd_rpc_server_t *swd_rpc_server_new(uv_loop_t *loop, const swd_rpc_server_opts_t *opts);
/// Closes listeners and every connection; frees when their handles close.
void swd_rpc_server_close(swd_rpc_server_t *s);

void swd_rpc_server_add_method(swd_rpc_server_t *s, const char *name, swd_method_class_t cls,
                               swd_rpc_handler_fn fn, void *data);
/// Listens on TCP `addr` ("HOST:PORT", port 0 picks one); the bound address
/// goes to `bound`. 0, or a negative code with the reason in `err`.
int swd_rpc_server_listen_tcp(swd_rpc_server_t *s, const char *addr, char *bound, size_t cap,
                              char *err, size_t errlen);
/// Listens on a unix socket at `path` (a stale socket file is replaced).
int swd_rpc_server_listen_unix(swd_rpc_server_t *s, const char *path, char *err, size_t errlen);
/// Stops accepting; existing connections stay (graceful shutdown).
void swd_rpc_server_stop_listening(swd_rpc_server_t *s);
uint32_t swd_rpc_server_connections(const swd_rpc_server_t *s);
void swd_rpc_server_set_observer(swd_rpc_server_t *s, swd_rpc_observe_cb cb, void *data);

/// Serves an already-open pipe pair (a process agent's stdio) as one more
/// connection under the same rules. The server owns it.
swd_rpc_conn_t *swd_rpc_server_adopt_pipes(swd_rpc_server_t *s);
/// Starts a connection made by swd_rpc_server_adopt_pipes().
int swd_rpc_server_start_conn(swd_rpc_server_t *s, swd_rpc_conn_t *c);

/// True when `token` may register an agent (auth.agent_token, or auth.token
/// when only that is set; anything when no auth is configured).
bool swd_rpc_server_agent_token_ok(const swd_rpc_server_t *s, const char *token);
bool swd_rpc_server_auth_enabled(const swd_rpc_server_t *s);

/// Marks the connection as a registered agent (`agent` borrowed, NULL to
/// unmark): it may then call agent methods.
void swd_rpc_session_set_agent(swd_rpc_conn_t *c, void *agent);
void *swd_rpc_session_agent(const swd_rpc_conn_t *c);

/// Runs `cb` when the connection closes; cancel with the returned handle.
typedef struct swd_close_hook swd_close_hook_t;
swd_close_hook_t *swd_rpc_session_on_close(swd_rpc_conn_t *c, void (*cb)(swd_rpc_conn_t *, void *),
                                           void *data);
void swd_rpc_session_cancel_hook(swd_rpc_conn_t *c, swd_close_hook_t *h);

/// Replies invalid_params with the params' error message.
void swd_rpc_reply_params_error(swd_rpc_conn_t *c, const swd_msg_t *m, const swd_params_t *p);

#endif
