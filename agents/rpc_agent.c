#include <stdlib.h>
#include <string.h>

#include "agents/rpc_agent.h"
#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/encoder.h"
#include "runtime/log.h"

struct swd_rpc_agents {
    swd_agents_t *reg;
    swd_clock_t *clock;
    swd_rpc_server_t *server;
    swd_rpc_agents_opts_t opts;
    bool refusing;
};

// The transport's state for one agent (swd_agent_t.link).
typedef struct link {
    swd_rpc_agents_t *ra;
    swd_agent_t *agent;
    swd_rpc_conn_t *conn; // NULL once the connection closed
    swd_close_hook_t *hook;
    swd_timer_t lease;
    swd_timer_t leave; // finishes agent.deregister outside the agent's update
    bool leaving;
    uint64_t leave_msgid;
} link_t;

// ---- transport ops ----

static void on_run_answer(swd_rpc_conn_t *c, const swd_msg_t *resp, uint64_t cookie, void *data);

static void rpc_run(swd_agent_t *a, const swd_run_t *run) {
    link_t *l = a->link;
    if (l->conn == NULL) {
        return; // dead: the scheduler learns through `lost`
    }
    msgpack_packer *pk =
        swd_rpc_conn_request_begin(l->conn, "task.run", on_run_answer, run->cookie, l->ra);
    msgpack_pack_array(pk, 1);
    // estimated_tokens goes beyond DESIGN.md's task.run params (agents ignore
    // unknown keys): a simulated agent sizes its answer after it.
    msgpack_pack_map(pk, 6);
    swd_pack_kv_u64(pk, "estimated_tokens", run->estimated_tokens);
    swd_pack_kv_str(pk, "task_id", run->task_id);
    swd_pack_kv_u64(pk, "attempt", run->attempt);
    swd_pack_kv_str(pk, "type", run->type);
    swd_pack_str(pk, "payload");
    if (run->payload != NULL) {
        swd_pack_raw(pk, run->payload, run->payload_len);
    } else {
        msgpack_pack_nil(pk);
    }
    swd_pack_kv_i64(pk, "timeout_ms", run->timeout_ms);
    swd_rpc_conn_send(l->conn);
}

static void rpc_cancel(swd_agent_t *a, const char *task_id, uint32_t attempt) {
    link_t *l = a->link;
    if (l->conn == NULL) {
        return;
    }
    msgpack_packer *pk = swd_rpc_conn_notify_begin(l->conn, "task.cancel");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    swd_pack_kv_str(pk, "task_id", task_id);
    swd_pack_kv_u64(pk, "attempt", attempt);
    swd_rpc_conn_send(l->conn);
}

static void rpc_configure(swd_agent_t *a, uint32_t max_concurrency) {
    link_t *l = a->link;
    if (l->conn == NULL) {
        return;
    }
    msgpack_packer *pk = swd_rpc_conn_notify_begin(l->conn, "agent.configure");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1);
    swd_pack_kv_u64(pk, "max_concurrency", max_concurrency);
    swd_rpc_conn_send(l->conn);
}

static void rpc_drained(swd_agent_t *a) {
    link_t *l = a->link;
    if (l->leaving) {
        swd_timer_start(&l->leave, 0);
    }
}

static void rpc_release(swd_agent_t *a) {
    link_t *l = a->link;
    swd_timer_stop(&l->lease);
    swd_timer_stop(&l->leave);
    if (l->conn != NULL) {
        swd_rpc_session_cancel_hook(l->conn, l->hook);
        swd_rpc_session_set_agent(l->conn, NULL);
    }
    free(l);
}

static const swd_transport_ops_t rpc_ops = {
    .name = "rpc",
    .run = rpc_run,
    .cancel = rpc_cancel,
    .configure = rpc_configure,
    .drained = rpc_drained,
    .release = rpc_release,
};

// ---- answers to task.run ----

static void copy_object(const msgpack_object *o, swd_buf_t *out) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, swd_buf_write_cb);
    msgpack_pack_object(&pk, *o);
}

static void str_of(const msgpack_object *map, const char *key, char *dst, size_t cap) {
    const msgpack_object *v = swd_map_find(map, key);
    dst[0] = '\0';
    if (v != NULL && (v->type == MSGPACK_OBJECT_STR || v->type == MSGPACK_OBJECT_BIN)) {
        size_t n = v->via.str.size < cap - 1 ? v->via.str.size : cap - 1;
        memcpy(dst, v->via.str.ptr, n);
        dst[n] = '\0';
    }
}

static void fill_error(const msgpack_object *err, swd_outcome_t *o, char *code, size_t ccap,
                       char *msg, size_t mcap) {
    o->ok = false;
    o->retryable = true; // an agent that does not say may be tried again
    str_of(err, "code", code, ccap);
    str_of(err, "message", msg, mcap);
    if (code[0] == '\0') {
        snprintf(code, ccap, "agent_error");
    }
    const msgpack_object *v = swd_map_find(err, "retryable");
    if (v != NULL && v->type == MSGPACK_OBJECT_BOOLEAN) {
        o->retryable = v->via.boolean;
    }
    v = swd_map_find(err, "retry_after_ms");
    if (v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        o->retry_after_ms = v->via.u64 > INT32_MAX ? INT32_MAX : (int64_t)v->via.u64;
    }
    o->code = code;
    o->message = msg;
}

static void on_run_answer(swd_rpc_conn_t *c, const swd_msg_t *resp, uint64_t cookie, void *data) {
    if (resp == NULL) {
        return; // connection gone: the close hook fails the agent's attempts
    }
    link_t *l = swd_rpc_session_agent(c);
    if (l == NULL) {
        return; // the agent left; a late answer has nobody to go to
    }
    swd_outcome_t o = {0};
    swd_buf_t out;
    swd_buf_init(&out);
    char code[64], msg[512];
    if (resp->error->type != MSGPACK_OBJECT_NIL) {
        fill_error(resp->error, &o, code, sizeof(code), msg, sizeof(msg));
    } else {
        const msgpack_object *r = resp->result;
        const msgpack_object *output = swd_map_find(r, "output");
        const msgpack_object *tokens = swd_map_find(r, "tokens_used");
        o.ok = true;
        if (output != NULL) {
            copy_object(output, &out);
        } else {
            msgpack_packer pk;
            msgpack_packer_init(&pk, &out, swd_buf_write_cb);
            msgpack_pack_nil(&pk);
        }
        o.output = out.data;
        o.output_len = out.len;
        if (tokens != NULL && tokens->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            o.tokens_used = tokens->via.u64;
        }
    }
    swd_agent_complete(l->agent, cookie, &o);
    swd_buf_close(&out);
}

// ---- lease ----

static void on_lease(swd_timer_t *t) {
    link_t *l = t->data;
    swd_rpc_agents_t *ra = l->ra;
    swd_agent_t *a = l->agent;
    if (l->conn == NULL || a->dead) {
        return;
    }
    int64_t hb = ra->opts.heartbeat_ms;
    int64_t silent = swd_clock_now(ra->clock) - swd_rpc_conn_last_read_ms(l->conn);
    int64_t dead_at = hb * ra->opts.dead_after;
    int64_t degraded_at = hb * ra->opts.degraded_after;
    if (silent >= dead_at) {
        swd_agent_kill(a, "lease_expired");
        swd_rpc_conn_close(l->conn, "lease expired");
        return;
    }
    bool degraded = silent >= degraded_at;
    if (degraded != a->degraded) {
        a->degraded = degraded;
        if (degraded) {
            a->reason = "missed_heartbeats";
            swd_log_warn("agents", "agent missed heartbeats", "{s:s,s:I}", "agent", a->id,
                         "silent_ms", (json_int_t)silent);
        } else if (a->reason != NULL && strcmp(a->reason, "missed_heartbeats") == 0) {
            a->reason = NULL;
        }
        swd_agent_refresh(a);
    }
    // While degraded, look again every heartbeat: an agent that speaks again
    // takes tasks again within one heartbeat, not only at the dead line.
    int64_t next = degraded ? dead_at - silent : degraded_at - silent;
    swd_timer_start(t, degraded && hb < next ? hb : next);
}

static void on_conn_closed(swd_rpc_conn_t *c, void *data) {
    link_t *l = data;
    l->conn = NULL;
    l->hook = NULL;
    swd_timer_stop(&l->lease);
    if (l->leaving) {
        // It asked to leave and then hung up: nothing to answer any more.
        swd_timer_start(&l->leave, 0);
    }
    swd_agent_kill(l->agent, "disconnected");
}

// ---- agent methods ----

static void free_caps(const char **caps, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        free((char *)caps[i]);
    }
    free(caps);
}

static int parse_caps(swd_params_t *p, const char ***caps, uint32_t *n) {
    const msgpack_object_array *arr = NULL;
    int r = swd_params_array(p, "capabilities", false, &arr);
    if (r < 0) {
        return r;
    }
    *caps = NULL;
    *n = 0;
    if (arr == NULL || arr->size == 0) {
        return 0;
    }
    *caps = swd_xcalloc(arr->size, sizeof(char *));
    for (uint32_t i = 0; i < arr->size; i++) {
        const msgpack_object *o = &arr->ptr[i];
        if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 || o->via.str.size > 128) {
            for (uint32_t j = 0; j < *n; j++) {
                free((char *)(*caps)[j]);
            }
            free(*caps);
            snprintf(p->error, sizeof(p->error),
                     "parameter 'capabilities' must be an array of task type names (1-128 bytes)");
            return SWD_EPARAMS;
        }
        (*caps)[(*n)++] = swd_xstrndup(o->via.str.ptr, o->via.str.size);
    }
    return 0;
}

static void reply_registered(swd_rpc_conn_t *c, uint64_t msgid, const link_t *l) {
    msgpack_packer *pk = swd_rpc_conn_reply_begin(c, msgid);
    msgpack_pack_map(pk, 3);
    swd_pack_kv_str(pk, "agent_id", l->agent->id);
    swd_pack_kv_i64(pk, "heartbeat_ms", l->ra->opts.heartbeat_ms);
    swd_pack_kv_i64(pk, "lease_ms", l->ra->opts.heartbeat_ms * l->ra->opts.dead_after);
    swd_rpc_conn_send(c);
}

static void on_leave(swd_timer_t *t);

static link_t *link_new(swd_rpc_agents_t *ra, swd_rpc_conn_t *c) {
    link_t *l = swd_xcalloc(1, sizeof(*l));
    l->ra = ra;
    l->conn = c;
    swd_timer_init(ra->clock, &l->lease, on_lease, l);
    swd_timer_init(ra->clock, &l->leave, on_leave, l);
    return l;
}

static bool register_allowed(swd_rpc_agents_t *ra, swd_rpc_conn_t *c, const swd_msg_t *m,
                             swd_params_t *p) {
    char token[512] = "";
    if (swd_params_strbuf(p, "token", false, token, sizeof(token)) < 0) {
        swd_rpc_reply_params_error(c, m, p);
        return false;
    }
    if (swd_rpc_server_auth_enabled(ra->server) &&
        !swd_rpc_server_agent_token_ok(ra->server, token[0] ? token : NULL)) {
        swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_UNAUTHORIZED, "bad or missing agent token");
        return false;
    }
    if (ra->refusing) {
        swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_SHUTTING_DOWN, "swarmd is shutting down");
        return false;
    }
    if (swd_rpc_session_agent(c) != NULL) {
        swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_CONFLICT,
                                 "this connection already registered an agent");
        return false;
    }
    return true;
}

static void agent_register(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    swd_rpc_agents_t *ra = data;
    if (m->kind != SWD_MSG_REQUEST || !register_allowed(ra, c, m, p)) {
        return;
    }
    char name[256], pool[128] = "default";
    uint64_t maxc = 1;
    const msgpack_object *labels = NULL;
    const char **caps = NULL;
    uint32_t ncaps = 0;
    if (swd_params_strbuf(p, "name", true, name, sizeof(name)) < 0 ||
        swd_params_strbuf(p, "pool", false, pool, sizeof(pool)) < 0 ||
        swd_params_uint(p, "max_concurrency", false, &maxc) < 0 ||
        swd_params_map(p, "labels", false, &labels) < 0 || parse_caps(p, &caps, &ncaps) < 0) {
        swd_rpc_reply_params_error(c, m, p);
        return;
    }
    if (maxc == 0 || maxc > 100000) {
        swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_INVALID_PARAMS,
                                 "parameter 'max_concurrency' must be 1..100000");
        free_caps(caps, ncaps);
        return;
    }
    swd_buf_t lb;
    swd_buf_init(&lb);
    if (labels != NULL) {
        copy_object(labels, &lb);
    }
    link_t *l = link_new(ra, c);
    swd_agent_spec_t spec = {name, pool, caps, ncaps, (uint32_t)maxc, lb.data, lb.len};
    swd_rpc_session_set_agent(c, l);
    l->hook = swd_rpc_session_on_close(c, on_conn_closed, l);
    l->agent = swd_agents_add(ra->reg, &spec, &rpc_ops, l);
    free_caps(caps, ncaps);
    swd_buf_close(&lb);
    swd_timer_start(&l->lease, ra->opts.heartbeat_ms * ra->opts.degraded_after);
    reply_registered(c, m->msgid, l);
}

static void agent_heartbeat(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    link_t *l = swd_rpc_session_agent(c);
    const msgpack_object *metrics = NULL;
    uint64_t inflight = 0;
    if (swd_params_map(p, "metrics", false, &metrics) < 0 ||
        swd_params_uint(p, "inflight", false, &inflight) < 0) {
        swd_rpc_reply_params_error(c, m, p);
        return;
    }
    swd_agent_t *a = l->agent;
    a->last_seen_ms = swd_clock_wall(l->ra->clock);
    if (metrics != NULL) {
        swd_buf_t b;
        swd_buf_init(&b);
        copy_object(metrics, &b);
        free(a->metrics);
        a->metrics = swd_buf_steal(&b, &a->metrics_len);
    }
    if (m->kind == SWD_MSG_REQUEST) {
        msgpack_pack_map(swd_rpc_conn_reply_begin(c, m->msgid), 0);
        swd_rpc_conn_send(c);
    }
}

static void on_leave(swd_timer_t *t) {
    link_t *l = t->data;
    swd_rpc_conn_t *c = l->conn;
    uint64_t msgid = l->leave_msgid;
    swd_agent_t *a = l->agent;
    if (c != NULL) {
        msgpack_pack_map(swd_rpc_conn_reply_begin(c, msgid), 0);
        swd_rpc_conn_send(c);
    }
    swd_log_info("agents", "agent deregistered", "{s:s,s:s}", "agent", a->id, "name", a->name);
    swd_agents_remove(a->reg, a); // releases `l`
}

static void agent_deregister(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    link_t *l = swd_rpc_session_agent(c);
    if (m->kind != SWD_MSG_REQUEST) {
        return;
    }
    if (l->leaving) {
        swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_CONFLICT, "already deregistering");
        return;
    }
    l->leaving = true;
    l->leave_msgid = m->msgid;
    swd_agent_drain(l->agent);
    if (l->agent->inflight == 0) {
        swd_timer_start(&l->leave, 0);
    }
}

swd_rpc_agents_t *swd_rpc_agents_new(swd_agents_t *reg, swd_rpc_server_t *server,
                                     swd_clock_t *clock, const swd_rpc_agents_opts_t *opts) {
    swd_rpc_agents_t *ra = swd_xcalloc(1, sizeof(*ra));
    ra->reg = reg;
    ra->clock = clock;
    ra->server = server;
    ra->opts = *opts;
    swd_rpc_server_add_method(server, "agent.register", SWD_METHOD_OPEN, agent_register, ra);
    swd_rpc_server_add_method(server, "agent.heartbeat", SWD_METHOD_AGENT, agent_heartbeat, ra);
    swd_rpc_server_add_method(server, "agent.deregister", SWD_METHOD_AGENT, agent_deregister, ra);
    return ra;
}

void swd_rpc_agents_refuse(swd_rpc_agents_t *ra) {
    ra->refusing = true;
}

void swd_rpc_agents_free(swd_rpc_agents_t *ra) {
    free(ra);
}
