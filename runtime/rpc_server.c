#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/alloc.h"
#include "proto/encoder.h"
#include "runtime/log.h"
#include "runtime/map.h"
#include "runtime/net.h"
#include "runtime/rpc_server.h"

typedef struct method {
    char *name;
    size_t len;
    swd_method_class_t cls;
    swd_rpc_handler_fn fn;
    void *data;
} method_t;

struct swd_close_hook {
    void (*cb)(swd_rpc_conn_t *, void *);
    void *data;
    swd_close_hook_t *next;
};

// Per-connection state, the connection's user slot.
typedef struct session {
    swd_rpc_server_t *server;
    swd_rpc_conn_t *conn;
    bool client_ok; // a hello with the right auth.token
    void *agent;
    swd_close_hook_t *hooks;
    swd_u64map_t calls; // msgid -> method name, until answered (for metrics)
    struct session *prev, *next;
} session_t;

struct swd_rpc_server {
    uv_loop_t *loop;
    swd_rpc_server_opts_t opts;
    char *token;
    char *agent_token;
    method_t *methods;
    size_t nmethods;
    uv_tcp_t tcp;
    uv_pipe_t unix_sock;
    bool tcp_open, unix_open;
    char *unix_path;
    int open_handles;
    bool closing;
    session_t *sessions;
    uint32_t nconns;
    swd_rpc_batch_t batch; // every session's writes, flushed once per loop turn
    swd_rpc_observe_cb observe;
    void *observe_data;
};

static void hello(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data);

swd_rpc_server_t *swd_rpc_server_new(uv_loop_t *loop, const swd_rpc_server_opts_t *opts) {
    swd_rpc_server_t *s = swd_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->opts = *opts;
    s->token = opts->token && *opts->token ? swd_xstrdup(opts->token) : NULL;
    s->agent_token =
        opts->agent_token && *opts->agent_token ? swd_xstrdup(opts->agent_token) : NULL;
    s->opts.token = s->token;
    s->opts.agent_token = s->agent_token;
    swd_rpc_server_add_method(s, "swarm.hello", SWD_METHOD_OPEN, hello, s);
    swd_rpc_batch_init(loop, &s->batch);
    s->open_handles++; // the batch's handle
    return s;
}

void swd_rpc_server_set_observer(swd_rpc_server_t *s, swd_rpc_observe_cb cb, void *data) {
    s->observe = cb;
    s->observe_data = data;
}

void swd_rpc_server_add_method(swd_rpc_server_t *s, const char *name, swd_method_class_t cls,
                               swd_rpc_handler_fn fn, void *data) {
    s->methods = swd_xrealloc(s->methods, (s->nmethods + 1) * sizeof(*s->methods));
    s->methods[s->nmethods++] = (method_t){swd_xstrdup(name), strlen(name), cls, fn, data};
}

uint32_t swd_rpc_server_connections(const swd_rpc_server_t *s) {
    return s->nconns;
}

bool swd_rpc_server_auth_enabled(const swd_rpc_server_t *s) {
    return s->token != NULL || s->agent_token != NULL;
}

bool swd_rpc_server_agent_token_ok(const swd_rpc_server_t *s, const char *token) {
    if (s->agent_token != NULL) {
        return swd_secret_eq(token, s->agent_token);
    }
    if (s->token != NULL) {
        return swd_secret_eq(token, s->token);
    }
    return true;
}

static void maybe_free(swd_rpc_server_t *s) {
    if (!s->closing || s->open_handles > 0 || s->sessions != NULL) {
        return;
    }
    for (size_t i = 0; i < s->nmethods; i++) {
        free(s->methods[i].name);
    }
    free(s->methods);
    free(s->token);
    free(s->agent_token);
    free(s->unix_path);
    free(s);
}

static void on_listener_close(uv_handle_t *h) {
    swd_rpc_server_t *s = h->data;
    s->open_handles--;
    maybe_free(s);
}

static void on_batch_close(uv_handle_t *h) {
    // The handle's data is the batch (for its flush); the server holds it.
    swd_rpc_server_t *s = (swd_rpc_server_t *)((char *)h->data - offsetof(swd_rpc_server_t, batch));
    s->open_handles--;
    maybe_free(s);
}

void swd_rpc_server_stop_listening(swd_rpc_server_t *s) {
    if (s->tcp_open) {
        s->tcp_open = false;
        uv_close((uv_handle_t *)&s->tcp, on_listener_close);
    }
    if (s->unix_open) {
        s->unix_open = false;
        uv_close((uv_handle_t *)&s->unix_sock, on_listener_close);
        unlink(s->unix_path);
    }
}

void swd_rpc_server_close(swd_rpc_server_t *s) {
    s->closing = true;
    swd_rpc_server_stop_listening(s);
    // Closing a connection frees its session at once: walk with care.
    s->open_handles++; // keeps `s` alive while its sessions go
    while (s->sessions != NULL) {
        swd_rpc_conn_close(s->sessions->conn, "server closing");
    }
    swd_rpc_batch_close(&s->batch, on_batch_close);
    s->open_handles--;
    maybe_free(s);
}

// ---- sessions ----

static void session_closed(swd_rpc_conn_t *c, void *data) {
    session_t *x = data;
    swd_rpc_server_t *s = x->server;
    while (x->hooks != NULL) {
        swd_close_hook_t *h = x->hooks;
        x->hooks = h->next;
        h->cb(c, h->data);
        free(h);
    }
    if (x->prev) {
        x->prev->next = x->next;
    } else {
        s->sessions = x->next;
    }
    if (x->next) {
        x->next->prev = x->prev;
    }
    s->nconns--;
    swd_rpc_conn_set_user(c, NULL);
    swd_u64map_close(&x->calls);
    free(x);
    maybe_free(s);
}

void swd_rpc_session_set_agent(swd_rpc_conn_t *c, void *agent) {
    session_t *x = swd_rpc_conn_user(c);
    if (x != NULL) {
        x->agent = agent;
    }
}

void *swd_rpc_session_agent(const swd_rpc_conn_t *c) {
    session_t *x = swd_rpc_conn_user(c);
    return x ? x->agent : NULL;
}

swd_close_hook_t *swd_rpc_session_on_close(swd_rpc_conn_t *c, void (*cb)(swd_rpc_conn_t *, void *),
                                           void *data) {
    session_t *x = swd_rpc_conn_user(c);
    if (x == NULL) {
        return NULL;
    }
    swd_close_hook_t *h = swd_xmalloc(sizeof(*h));
    h->cb = cb;
    h->data = data;
    h->next = x->hooks;
    x->hooks = h;
    return h;
}

void swd_rpc_session_cancel_hook(swd_rpc_conn_t *c, swd_close_hook_t *h) {
    session_t *x = swd_rpc_conn_user(c);
    if (x == NULL || h == NULL) {
        return;
    }
    for (swd_close_hook_t **pp = &x->hooks; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            free(h);
            return;
        }
    }
}

void swd_rpc_reply_params_error(swd_rpc_conn_t *c, const swd_msg_t *m, const swd_params_t *p) {
    if (m->kind == SWD_MSG_REQUEST) {
        swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_INVALID_PARAMS, p->error);
    }
}

// ---- dispatch ----

static const method_t *find_method(const swd_rpc_server_t *s, const char *name, size_t len) {
    for (size_t i = 0; i < s->nmethods; i++) {
        if (s->methods[i].len == len && memcmp(s->methods[i].name, name, len) == 0) {
            return &s->methods[i];
        }
    }
    return NULL;
}

// Requests are counted when answered, with the answer's code; notifications
// when they arrive.
static void note_call(swd_rpc_server_t *s, session_t *x, const swd_msg_t *m, const char *method) {
    if (s->observe == NULL) {
        return;
    }
    if (m->kind == SWD_MSG_REQUEST) {
        swd_u64map_put(&x->calls, m->msgid, (void *)method);
    } else {
        s->observe(method, NULL, s->observe_data);
    }
}

static void on_reply(swd_rpc_conn_t *c, uint64_t msgid, const char *code, void *data) {
    session_t *x = data;
    const char *method = swd_u64map_del(&x->calls, msgid);
    if (method != NULL && x->server->observe != NULL) {
        x->server->observe(method, code, x->server->observe_data);
    }
}

static void refuse(swd_rpc_server_t *s, swd_rpc_conn_t *c, const swd_msg_t *m, const char *method,
                   swd_rpc_error_t code, const char *message) {
    if (m->kind == SWD_MSG_REQUEST) {
        swd_rpc_conn_reply_error(c, m->msgid, code, message);
    }
}

// The session rules of DESIGN.md §2.1; true when the call may proceed.
static bool allowed(swd_rpc_server_t *s, session_t *x, swd_rpc_conn_t *c, const swd_msg_t *m,
                    const method_t *mt) {
    switch (mt->cls) {
    case SWD_METHOD_OPEN:
        return true;
    case SWD_METHOD_AGENT:
        if (x->agent != NULL) {
            return true;
        }
        refuse(s, c, m, mt->name, SWD_RPC_UNAUTHORIZED, "register with agent.register first");
        return false;
    case SWD_METHOD_CLIENT:
    default:
        if (s->token == NULL || x->client_ok) {
            return true;
        }
        refuse(s, c, m, mt->name, SWD_RPC_UNAUTHORIZED, "authenticate with swarm.hello first");
        return false;
    }
}

static void on_dispatch(swd_rpc_conn_t *c, const swd_msg_t *m, void *data) {
    session_t *x = data;
    swd_rpc_server_t *s = x->server;
    const method_t *mt = find_method(s, m->method, m->method_len);
    note_call(s, x, m, mt != NULL ? mt->name : "unknown");
    if (mt == NULL) {
        if (m->kind == SWD_MSG_REQUEST) { // unknown notifications are ignored
            char msg[160];
            snprintf(msg, sizeof(msg), "unknown method '%.*s'",
                     (int)(m->method_len > 100 ? 100 : m->method_len), m->method);
            refuse(s, c, m, "unknown", SWD_RPC_UNKNOWN_METHOD, msg);
        }
        return;
    }
    if (!allowed(s, x, c, m, mt)) {
        return;
    }
    swd_params_t p;
    if (swd_params_open(&p, m->params) != 0) {
        refuse(s, c, m, mt->name, SWD_RPC_INVALID_PARAMS, p.error);
        return;
    }
    mt->fn(c, m, &p, mt->data);
}

static void hello(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    swd_rpc_server_t *s = data;
    session_t *x = swd_rpc_conn_user(c);
    const char *token = NULL;
    size_t tlen = 0;
    const char *client = NULL;
    size_t clen = 0;
    if (swd_params_str(p, "token", false, &token, &tlen) < 0 ||
        swd_params_str(p, "client", false, &client, &clen) < 0) {
        swd_rpc_reply_params_error(c, m, p);
        return;
    }
    if (s->token != NULL) {
        // A NUL inside the token would cut the comparison short: refuse it.
        bool clean = token != NULL && memchr(token, '\0', tlen) == NULL;
        char *t = clean ? swd_xstrndup(token, tlen) : NULL;
        bool ok = swd_secret_eq(t, s->token);
        free(t);
        if (!ok) {
            // The connection stays usable for another hello (§2.1).
            x->client_ok = false;
            if (m->kind == SWD_MSG_REQUEST) {
                swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_UNAUTHORIZED, "bad or missing token");
            }
            return;
        }
    }
    x->client_ok = true;
    if (m->kind != SWD_MSG_REQUEST) {
        return;
    }
    msgpack_packer *pk = swd_rpc_conn_reply_begin(c, m->msgid);
    msgpack_pack_map(pk, 3);
    swd_pack_kv_str(pk, "server", "swarmd");
    swd_pack_kv_str(pk, "version", SWD_VERSION);
    swd_pack_kv_u64(pk, "api", 1);
    swd_rpc_conn_send(c);
}

// ---- connections ----

static session_t *session_new(swd_rpc_server_t *s, swd_rpc_conn_kind_t kind) {
    session_t *x = swd_xcalloc(1, sizeof(*x));
    x->server = s;
    swd_u64map_init(&x->calls);
    swd_rpc_conn_opts_t o = {
        .max_message_bytes = s->opts.max_message_bytes,
        .max_write_buffer_bytes = s->opts.max_write_buffer_bytes,
        .batch = &s->batch,
        .dispatch = on_dispatch,
        .on_close = session_closed,
        .on_reply = on_reply,
        .data = x,
    };
    x->conn = swd_rpc_conn_new(s->loop, kind, &o);
    swd_rpc_conn_set_user(x->conn, x);
    x->next = s->sessions;
    if (s->sessions) {
        s->sessions->prev = x;
    }
    s->sessions = x;
    s->nconns++;
    return x;
}

swd_rpc_conn_t *swd_rpc_server_adopt_pipes(swd_rpc_server_t *s) {
    return session_new(s, SWD_CONN_PIPES)->conn;
}

int swd_rpc_server_start_conn(swd_rpc_server_t *s, swd_rpc_conn_t *c) {
    return swd_rpc_conn_start(c);
}

static void on_connection(uv_stream_t *listener, int status) {
    swd_rpc_server_t *s = listener->data;
    if (status < 0 || s->closing) {
        return;
    }
    bool is_tcp = listener == (uv_stream_t *)&s->tcp;
    session_t *x = session_new(s, is_tcp ? SWD_CONN_TCP : SWD_CONN_UNIX);
    swd_rpc_conn_t *c = x->conn;
    if (uv_accept(listener, swd_rpc_conn_stream(c)) != 0) {
        swd_rpc_conn_close(c, "accept failed");
        return;
    }
    char name[80] = "unix";
    if (is_tcp) {
        swd_net_tcp_peer((uv_tcp_t *)swd_rpc_conn_stream(c), name, sizeof(name));
        uv_tcp_nodelay((uv_tcp_t *)swd_rpc_conn_stream(c), 1);
    }
    swd_rpc_conn_set_name(c, name);
    if (s->nconns > s->opts.max_connections) {
        swd_log_warn("rpc", "connection refused: limits.max_connections reached", "{s:s,s:i}",
                     "peer", name, "limit", (int)s->opts.max_connections);
        swd_rpc_conn_close(c, "too many connections");
        return;
    }
    swd_rpc_conn_start(c);
}

int swd_rpc_server_listen_tcp(swd_rpc_server_t *s, const char *addr, char *bound, size_t cap,
                              char *err, size_t errlen) {
    struct sockaddr_storage ss;
    int r = swd_net_parse(addr, &ss, err, errlen);
    if (r != 0) {
        return r;
    }
    uv_tcp_init(s->loop, &s->tcp);
    s->tcp.data = s;
    s->tcp_open = true;
    s->open_handles++;
    r = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0);
    if (r == 0) {
        r = uv_listen((uv_stream_t *)&s->tcp, 511, on_connection);
    }
    if (r != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, uv_strerror(r));
        return r;
    }
    swd_net_tcp_local(&s->tcp, bound, cap);
    return 0;
}

int swd_rpc_server_listen_unix(swd_rpc_server_t *s, const char *path, char *err, size_t errlen) {
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(path); // a socket left by a previous run that did not exit cleanly
    }
    uv_pipe_init(s->loop, &s->unix_sock, 0);
    s->unix_sock.data = s;
    s->unix_open = true;
    s->open_handles++;
    s->unix_path = swd_xstrdup(path);
    int r = uv_pipe_bind(&s->unix_sock, path);
    if (r == 0) {
        r = uv_listen((uv_stream_t *)&s->unix_sock, 511, on_connection);
    }
    if (r != 0) {
        snprintf(err, errlen, "cannot listen on unix socket %s: %s", path, uv_strerror(r));
    }
    return r;
}
