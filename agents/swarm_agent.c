// swarm-agent: the reference agent (DESIGN.md §7). It connects to swarmd
// (TCP, or its own stdin/stdout when started by a process pool), registers,
// heartbeats, and serves task.run either from the simulation model (--sim)
// or by running a shell command per task (--exec).
//
//   connect ─▶ agent.register ─▶ RUNNING ──heartbeat_ms──▶ agent.heartbeat
//                                   │
//            task.run ─▶ slot free? ─┼─ no ─▶ error overloaded (retry_after_ms)
//                                   ▼ yes
//                  --sim: swd_sim_plan ─▶ timer ─▶ answer (or hang / crash)
//                  --exec: swd_exec_start ─▶ child done ─▶ answer
//
//   SIGINT/SIGTERM ─▶ DEREGISTERING (new tasks refused, in-flight ones go on)
//                  ─▶ agent.deregister answered or timed out ─▶ STOPPING
//   STOPPING: children killed, timers stopped, handles closed, loop ends.
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agents/sim_model.h"
#include "agents/swarm_agent_exec.h"
#include "proto/alloc.h"
#include "proto/encoder.h"
#include "proto/json.h"
#include "proto/params.h"
#include "runtime/clock.h"
#include "runtime/log.h"
#include "runtime/net.h"
#include "runtime/rpc_conn.h"

#define COMPONENT "agent"
// Most concurrency a flag or agent.configure may ask for.
#define MAX_CONCURRENCY 100000
// Heartbeat period when neither the flag nor the server names one.
#define DEFAULT_HEARTBEAT_MS 5000
// How long a stopping agent waits for agent.deregister's answer.
#define DEREGISTER_WAIT_MS 5000
// What an agent at its concurrency limit asks swarmd to wait.
#define OVERLOADED_RETRY_AFTER_MS 500
// Exit statuses: usage errors, and a simulated crash.
#define EXIT_USAGE 2
#define EXIT_CRASH 3

typedef enum swd_agent_mode {
    SWD_AGENT_MODE_NONE,
    SWD_AGENT_MODE_SIM,
    SWD_AGENT_MODE_EXEC,
} swd_agent_mode_t;

/// The command line, parsed. Strings are borrowed from argv unless noted.
typedef struct swd_agent_opts {
    const char *connect; ///< HOST:PORT; NULL with --stdio
    bool use_stdio;
    struct sockaddr_storage addr; ///< `connect`, resolved
    const char *name;
    char default_name[48];
    const char *pool; ///< NULL: the server's default pool
    char **caps;      ///< owned array of owned strings
    size_t ncaps;
    uint32_t concurrency;
    const char *token;   ///< NULL: none
    const char **labels; ///< owned array of "k=v" strings
    size_t nlabels;
    int64_t heartbeat_ms; ///< 0: what agent.register answers
    swd_log_level_t log_level;
    swd_agent_mode_t mode;
    const char *exec_cmd;
    swd_sim_params_t sim;
    const char *sim_knob; ///< the first simulation knob given, to refuse it without --sim
} swd_agent_opts_t;

typedef enum swd_agent_state {
    SWD_AGENT_CONNECTING,
    SWD_AGENT_REGISTERING,
    SWD_AGENT_RUNNING,
    SWD_AGENT_DEREGISTERING,
    SWD_AGENT_STOPPING,
} swd_agent_state_t;

typedef struct swd_agent_task swd_agent_task_t;

typedef struct swd_agent {
    uv_loop_t loop;
    swd_clock_t clock;
    bool clock_closed;
    swd_agent_opts_t opts;
    swd_rpc_conn_t *conn; ///< NULL once closed (it frees itself)
    uv_connect_t connect_req;
    uv_signal_t sigint, sigterm;
    swd_timer_t heartbeat, deregister_deadline, crash_timer;
    swd_agent_state_t state;
    char agent_id[128];
    int64_t heartbeat_ms;
    uint32_t max_concurrency;
    uint32_t inflight; ///< tasks holding a slot
    uint64_t completed, failed, rejected;
    swd_agent_task_t *tasks; ///< every task not yet freed, slot or not
    size_t ntasks;
    swd_sim_t sim;
    int exit_code;
} swd_agent_t;

/// One task.run being served. It holds a slot until answered or cancelled;
/// an --exec task stays listed (without a slot) until its child is reaped.
struct swd_agent_task {
    swd_agent_task_t *prev, *next;
    swd_agent_t *agent;
    uint64_t msgid;
    char *task_id; ///< owned
    char *type;    ///< owned
    size_t type_len;
    uint64_t attempt;
    int64_t timeout_ms;
    bool has_slot;
    bool cancelled;    ///< task.cancel arrived: answer nothing more
    swd_timer_t timer; ///< --sim: when to answer, or when a hung task lets go
    swd_sim_outcome_t outcome;
    swd_exec_t *exec; ///< --exec: the running child, NULL once reported
};

static void swd_agent_stop(swd_agent_t *a, int exit_code);

// ---------------------------------------------------------------------------
// Answers

static void swd_agent_reply_ok(swd_agent_t *a, uint64_t msgid, const char *output, size_t len,
                               uint64_t tokens_used) {
    if (a->conn == NULL) {
        return;
    }
    msgpack_packer *pk = swd_rpc_conn_reply_begin(a->conn, msgid);
    msgpack_pack_map(pk, 2);
    swd_pack_str(pk, "output");
    swd_pack_strn(pk, output, len);
    swd_pack_kv_u64(pk, "tokens_used", tokens_used);
    swd_rpc_conn_send(a->conn);
}

// task.run's error is the RPC error map with extra keys, so the whole map is
// packed here: {code, message, retryable, retry_after_ms?}. A negative
// `retry_after_ms` leaves the key out.
static void swd_agent_reply_error(swd_agent_t *a, uint64_t msgid, const char *code,
                                  const char *message, bool retryable, int64_t retry_after_ms) {
    if (a->conn == NULL) {
        return;
    }
    msgpack_packer *pk = swd_rpc_conn_reply_error_begin(a->conn, msgid);
    msgpack_pack_map(pk, retry_after_ms >= 0 ? 4 : 3);
    swd_pack_kv_str(pk, "code", code);
    swd_pack_kv_str(pk, "message", message);
    swd_pack_kv_bool(pk, "retryable", retryable);
    if (retry_after_ms >= 0) {
        swd_pack_kv_u64(pk, "retry_after_ms", (uint64_t)retry_after_ms);
    }
    swd_rpc_conn_send(a->conn);
}

// ---------------------------------------------------------------------------
// Tasks

static void swd_agent_task_release_slot(swd_agent_task_t *t) {
    if (t->has_slot) {
        t->has_slot = false;
        t->agent->inflight--;
    }
}

// Once a stopping agent has no task left, the clock's handle can go: it is
// the last thing (besides the connection) that keeps the loop running.
static void swd_agent_maybe_finish(swd_agent_t *a) {
    if (a->state == SWD_AGENT_STOPPING && a->ntasks == 0 && !a->clock_closed) {
        a->clock_closed = true;
        swd_clock_close(&a->clock);
    }
}

static void swd_agent_task_free(swd_agent_task_t *t) {
    swd_agent_t *a = t->agent;
    swd_agent_task_release_slot(t);
    swd_timer_stop(&t->timer);
    if (t->prev != NULL) {
        t->prev->next = t->next;
    } else {
        a->tasks = t->next;
    }
    if (t->next != NULL) {
        t->next->prev = t->prev;
    }
    a->ntasks--;
    free(t->task_id);
    free(t->type);
    free(t);
    swd_agent_maybe_finish(a);
}

static void swd_agent_on_task_timer(swd_timer_t *timer);

static swd_agent_task_t *swd_agent_task_new(swd_agent_t *a, uint64_t msgid, const char *task_id,
                                            size_t id_len, const char *type, size_t type_len) {
    swd_agent_task_t *t = swd_xcalloc(1, sizeof(*t));
    t->agent = a;
    t->msgid = msgid;
    t->task_id = swd_xstrndup(task_id, id_len);
    t->type = swd_xstrndup(type, type_len);
    t->type_len = type_len;
    t->has_slot = true;
    swd_timer_init(&a->clock, &t->timer, swd_agent_on_task_timer, t);
    t->next = a->tasks;
    if (a->tasks != NULL) {
        a->tasks->prev = t;
    }
    a->tasks = t;
    a->ntasks++;
    a->inflight++;
    return t;
}

// ---------------------------------------------------------------------------
// --sim

// A simulated crash is a crash: no deregister, no flush, no cleanup.
static void swd_agent_crash(swd_agent_t *a) {
    swd_log_error(COMPONENT, "simulated crash", "{s:s,s:I}", "agent_id", a->agent_id, "tasks",
                  (json_int_t)a->sim.planned);
    fflush(stderr);
    _exit(EXIT_CRASH);
}

static void swd_agent_on_crash_timer(swd_timer_t *timer) {
    swd_agent_crash(timer->data);
}

// Fires when a planned answer is due, or when a hung task's timeout has
// passed: swarmd has given up on it by then, so its slot is freed silently.
static void swd_agent_on_task_timer(swd_timer_t *timer) {
    swd_agent_task_t *t = timer->data;
    swd_agent_t *a = t->agent;
    const swd_sim_outcome_t *o = &t->outcome;
    if (o->kind == SWD_SIM_OK) {
        char out[256];
        swd_sim_output(&a->sim, t->type, t->type_len, o->tokens_used, out, sizeof(out));
        swd_agent_reply_ok(a, t->msgid, out, strlen(out), o->tokens_used);
        a->completed++;
    } else if (o->kind == SWD_SIM_ERROR) {
        swd_agent_reply_error(a, t->msgid, o->error, o->message, o->retryable, -1);
        a->failed++;
    } else {
        swd_log_debug(COMPONENT, "hung task released", "{s:s}", "task_id", t->task_id);
    }
    swd_agent_task_free(t);
}

static void swd_agent_sim_start(swd_agent_task_t *t, uint64_t estimated_tokens) {
    swd_agent_t *a = t->agent;
    swd_sim_outcome_t *o = &t->outcome;
    swd_sim_plan(&a->sim, swd_clock_now(&a->clock), a->inflight, estimated_tokens, o);
    swd_log_debug(COMPONENT, "task planned", "{s:s,s:I,s:s,s:I}", "task_id", t->task_id, "attempt",
                  (json_int_t)t->attempt, "outcome", swd_sim_kind_name(o->kind), "latency_ms",
                  (json_int_t)o->latency_ms);
    switch (o->kind) {
    case SWD_SIM_OK:
    case SWD_SIM_ERROR:
        swd_timer_start(&t->timer, o->latency_ms);
        break;
    case SWD_SIM_OVERLOADED:
        swd_agent_reply_error(a, t->msgid, o->error, o->message, o->retryable,
                              (int64_t)o->retry_after_ms);
        a->rejected++;
        swd_agent_task_free(t);
        break;
    case SWD_SIM_HANG:
        if (t->timeout_ms > 0) {
            swd_timer_start(&t->timer, t->timeout_ms);
        }
        break;
    case SWD_SIM_CRASH:
        swd_agent_crash(a);
        break;
    }
}

// ---------------------------------------------------------------------------
// --exec

static void swd_agent_on_exec_done(swd_exec_t *x, const swd_exec_result_t *r, void *data) {
    swd_agent_task_t *t = data;
    swd_agent_t *a = t->agent;
    t->exec = NULL;
    if (!r->cancelled && !t->cancelled) {
        if (r->ok) {
            swd_agent_reply_ok(a, t->msgid, r->output, r->output_len, r->tokens_used);
            a->completed++;
        } else {
            swd_agent_reply_error(a, t->msgid, r->code, r->message, r->retryable, -1);
            a->failed++;
        }
        swd_log_debug(COMPONENT, "task finished", "{s:s,s:s}", "task_id", t->task_id, "result",
                      r->ok ? "ok" : r->code);
    }
    swd_agent_task_free(t);
}

// The child's stdin: a string payload as its raw bytes, anything else as
// compact JSON text, nothing at all when there is no payload. `*owned` is set
// when the bytes were allocated here. -1 when the payload cannot be JSON.
static int swd_agent_exec_input(const msgpack_object *payload, const char **bytes, size_t *len,
                                char **owned) {
    *owned = NULL;
    *bytes = NULL;
    *len = 0;
    if (payload == NULL) {
        return 0;
    }
    if (payload->type == MSGPACK_OBJECT_STR || payload->type == MSGPACK_OBJECT_BIN) {
        *bytes = payload->via.str.ptr; // str and bin share their layout in msgpack-c
        *len = payload->via.str.size;
        return 0;
    }
    json_t *j = swd_json_from_msgpack(payload);
    if (j == NULL) {
        return -1;
    }
    *owned = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | swd_json_real_flags(j));
    json_decref(j);
    if (*owned == NULL) {
        return -1;
    }
    *bytes = *owned;
    *len = strlen(*owned);
    return 0;
}

static void swd_agent_exec_start(swd_agent_task_t *t, const msgpack_object *payload) {
    swd_agent_t *a = t->agent;
    swd_exec_spec_t spec = {
        .command = a->opts.exec_cmd,
        .task_id = t->task_id,
        .type = t->type,
        .attempt = t->attempt,
        .timeout_ms = t->timeout_ms,
    };
    char *owned;
    if (swd_agent_exec_input(payload, &spec.input, &spec.input_len, &owned) != 0) {
        swd_agent_reply_error(a, t->msgid, "invalid_payload", "payload cannot be written as JSON",
                              false, -1);
        a->failed++;
        swd_agent_task_free(t);
        return;
    }
    int r = swd_exec_start(&a->loop, &a->clock, &spec, swd_agent_on_exec_done, t, &t->exec);
    free(owned);
    if (r != 0) {
        swd_log_warn(COMPONENT, "cannot start command", "{s:s,s:s}", "task_id", t->task_id, "error",
                     uv_strerror(r));
        swd_agent_reply_error(a, t->msgid, "spawn_failed", uv_strerror(r), true, -1);
        a->failed++;
        swd_agent_task_free(t);
    }
}

// ---------------------------------------------------------------------------
// Incoming calls

static bool swd_method_is(const swd_msg_t *m, const char *name) {
    size_t n = strlen(name);
    return m->method_len == n && memcmp(m->method, name, n) == 0;
}

// Refuses a task.run that cannot be admitted now; true when it did.
static bool swd_agent_refuse(swd_agent_t *a, uint64_t msgid) {
    if (a->state != SWD_AGENT_RUNNING) {
        swd_agent_reply_error(a, msgid, "shutting_down", "agent is shutting down", true, -1);
    } else if (a->inflight >= a->max_concurrency) {
        char msg[96];
        snprintf(msg, sizeof(msg), "agent is at its concurrency limit (%" PRIu32 ")",
                 a->max_concurrency);
        swd_agent_reply_error(a, msgid, "overloaded", msg, true, OVERLOADED_RETRY_AFTER_MS);
    } else {
        return false;
    }
    a->rejected++;
    return true;
}

static void swd_agent_on_task_run(swd_agent_t *a, const swd_msg_t *m) {
    swd_params_t p;
    const char *id = NULL, *type = "";
    size_t id_len = 0, type_len = 0;
    uint64_t attempt = 1, timeout_ms = 0, estimated = 0;
    const msgpack_object *payload = NULL;
    if (swd_params_open(&p, m->params) < 0 ||
        swd_params_str(&p, "task_id", true, &id, &id_len) < 0 ||
        swd_params_uint(&p, "attempt", false, &attempt) < 0 ||
        swd_params_str(&p, "type", false, &type, &type_len) < 0 ||
        swd_params_any(&p, "payload", false, &payload) < 0 ||
        swd_params_uint(&p, "timeout_ms", false, &timeout_ms) < 0 ||
        swd_params_uint(&p, "estimated_tokens", false, &estimated) < 0) {
        swd_agent_reply_error(a, m->msgid, "invalid_params", p.error, false, -1);
        return;
    }
    if (swd_agent_refuse(a, m->msgid)) {
        return;
    }
    swd_agent_task_t *t = swd_agent_task_new(a, m->msgid, id, id_len, type, type_len);
    t->attempt = attempt;
    t->timeout_ms = timeout_ms > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)timeout_ms;
    swd_log_debug(COMPONENT, "task received", "{s:s,s:I,s:s,s:I}", "task_id", t->task_id, "attempt",
                  (json_int_t)attempt, "type", t->type, "inflight", (json_int_t)a->inflight);
    if (a->opts.mode == SWD_AGENT_MODE_SIM) {
        swd_agent_sim_start(t, estimated);
    } else {
        swd_agent_exec_start(t, payload);
    }
}

// Drops one task on task.cancel: its slot is free at once; a child may take
// a moment to die, and its task stays listed until it is reaped.
static void swd_agent_cancel_task(swd_agent_task_t *t) {
    swd_log_info(COMPONENT, "task cancelled", "{s:s,s:I}", "task_id", t->task_id, "attempt",
                 (json_int_t)t->attempt);
    t->cancelled = true;
    swd_agent_task_release_slot(t);
    if (t->exec != NULL) {
        swd_exec_cancel(t->exec, false); // last use of `t`: it may be freed inside
    } else {
        swd_agent_task_free(t);
    }
}

static void swd_agent_on_cancel(swd_agent_t *a, const swd_msg_t *m) {
    swd_params_t p;
    const char *id;
    size_t id_len;
    uint64_t attempt = 0; // 0: whichever attempt of the task runs here
    if (swd_params_open(&p, m->params) < 0 ||
        swd_params_str(&p, "task_id", true, &id, &id_len) < 0 ||
        swd_params_uint(&p, "attempt", false, &attempt) < 0) {
        swd_log_warn(COMPONENT, "bad task.cancel ignored", "{s:s}", "error", p.error);
        return;
    }
    swd_agent_task_t *next;
    for (swd_agent_task_t *t = a->tasks; t != NULL; t = next) {
        next = t->next;
        if (!t->cancelled && strlen(t->task_id) == id_len && memcmp(t->task_id, id, id_len) == 0 &&
            (attempt == 0 || t->attempt == attempt)) {
            swd_agent_cancel_task(t);
        }
    }
}

static void swd_agent_on_configure(swd_agent_t *a, const swd_msg_t *m) {
    swd_params_t p;
    uint64_t n = 0;
    if (swd_params_open(&p, m->params) < 0 ||
        swd_params_uint(&p, "max_concurrency", false, &n) < 0) {
        swd_log_warn(COMPONENT, "bad agent.configure ignored", "{s:s}", "error", p.error);
        return;
    }
    if (n == 0 || n > MAX_CONCURRENCY) {
        swd_log_warn(COMPONENT, "agent.configure: max_concurrency out of range, ignored", "{s:I}",
                     "max_concurrency", (json_int_t)n);
        return;
    }
    swd_log_info(COMPONENT, "max_concurrency changed", "{s:I,s:I}", "from",
                 (json_int_t)a->max_concurrency, "to", (json_int_t)n);
    a->max_concurrency = (uint32_t)n;
}

static void swd_agent_dispatch(swd_rpc_conn_t *c, const swd_msg_t *m, void *data) {
    swd_agent_t *a = data;
    if (m->kind == SWD_MSG_REQUEST) {
        if (swd_method_is(m, "task.run")) {
            swd_agent_on_task_run(a, m);
        } else {
            swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_UNKNOWN_METHOD, "unknown method");
        }
        return;
    }
    // Unknown notifications are ignored (DESIGN.md §2).
    if (swd_method_is(m, "task.cancel")) {
        swd_agent_on_cancel(a, m);
    } else if (swd_method_is(m, "agent.configure")) {
        swd_agent_on_configure(a, m);
    }
}

// ---------------------------------------------------------------------------
// Session: register, heartbeat, deregister

static void swd_agent_on_heartbeat(swd_timer_t *timer) {
    swd_agent_t *a = timer->data;
    if (a->conn == NULL) {
        return;
    }
    msgpack_packer *pk = swd_rpc_conn_notify_begin(a->conn, "agent.heartbeat");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    swd_pack_kv_u64(pk, "inflight", a->inflight);
    swd_pack_str(pk, "metrics");
    msgpack_pack_map(pk, 3);
    swd_pack_kv_u64(pk, "completed", a->completed);
    swd_pack_kv_u64(pk, "failed", a->failed);
    swd_pack_kv_u64(pk, "rejected", a->rejected);
    swd_rpc_conn_send(a->conn);
    swd_timer_start(&a->heartbeat, a->heartbeat_ms);
}

static void swd_agent_log_refusal(const char *msg, const msgpack_object *err) {
    json_t *j = swd_json_from_msgpack(err);
    swd_log_error(COMPONENT, msg, "{s:o?}", "error", j);
}

static void swd_agent_on_registered(swd_rpc_conn_t *c, const swd_msg_t *resp, uint64_t cookie,
                                    void *data) {
    swd_agent_t *a = data;
    if (resp == NULL || a->state != SWD_AGENT_REGISTERING) {
        return; // the connection closed: on_close decides what follows
    }
    if (resp->error->type != MSGPACK_OBJECT_NIL) {
        swd_agent_log_refusal("registration refused", resp->error);
        swd_agent_stop(a, 1);
        return;
    }
    swd_params_t p;
    uint64_t hb = 0, lease = 0;
    if (swd_params_open_map(&p, resp->result) < 0 ||
        swd_params_strbuf(&p, "agent_id", true, a->agent_id, sizeof(a->agent_id)) < 0 ||
        swd_params_uint(&p, "heartbeat_ms", false, &hb) < 0 ||
        swd_params_uint(&p, "lease_ms", false, &lease) < 0) {
        swd_log_error(COMPONENT, "bad agent.register answer", "{s:s}", "error", p.error);
        swd_agent_stop(a, 1);
        return;
    }
    a->heartbeat_ms = a->opts.heartbeat_ms > 0 ? a->opts.heartbeat_ms
                      : hb > 0                 ? (int64_t)(hb > 86400000 ? 86400000 : hb)
                                               : DEFAULT_HEARTBEAT_MS;
    a->state = SWD_AGENT_RUNNING;
    swd_log_info(COMPONENT, "registered", "{s:s,s:s,s:I,s:I,s:I}", "agent_id", a->agent_id, "name",
                 a->opts.name, "heartbeat_ms", (json_int_t)a->heartbeat_ms, "lease_ms",
                 (json_int_t)lease, "max_concurrency", (json_int_t)a->max_concurrency);
    swd_timer_start(&a->heartbeat, a->heartbeat_ms);
}

static void swd_agent_pack_labels(msgpack_packer *pk, const swd_agent_opts_t *o) {
    msgpack_pack_map(pk, o->nlabels);
    for (size_t i = 0; i < o->nlabels; i++) {
        const char *eq = strchr(o->labels[i], '=');
        swd_pack_strn(pk, o->labels[i], (size_t)(eq - o->labels[i]));
        swd_pack_str(pk, eq + 1);
    }
}

static void swd_agent_register(swd_agent_t *a) {
    const swd_agent_opts_t *o = &a->opts;
    a->state = SWD_AGENT_REGISTERING;
    msgpack_packer *pk =
        swd_rpc_conn_request_begin(a->conn, "agent.register", swd_agent_on_registered, 0, a);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 4 + (o->pool != NULL) + (o->token != NULL));
    swd_pack_kv_str(pk, "name", o->name);
    swd_pack_str(pk, "capabilities");
    msgpack_pack_array(pk, o->ncaps);
    for (size_t i = 0; i < o->ncaps; i++) {
        swd_pack_str(pk, o->caps[i]);
    }
    swd_pack_kv_u64(pk, "max_concurrency", a->max_concurrency);
    swd_pack_str(pk, "labels");
    swd_agent_pack_labels(pk, o);
    if (o->pool != NULL) {
        swd_pack_kv_str(pk, "pool", o->pool);
    }
    if (o->token != NULL) {
        swd_pack_kv_str(pk, "token", o->token);
    }
    swd_rpc_conn_send(a->conn);
}

static void swd_agent_on_deregistered(swd_rpc_conn_t *c, const swd_msg_t *resp, uint64_t cookie,
                                      void *data) {
    swd_agent_t *a = data;
    if (resp == NULL) {
        return; // the connection closed: on_close stops the agent
    }
    if (resp->error->type != MSGPACK_OBJECT_NIL) {
        swd_agent_log_refusal("agent.deregister failed", resp->error);
    } else {
        swd_log_info(COMPONENT, "deregistered", "{s:s}", "agent_id", a->agent_id);
    }
    swd_agent_stop(a, 0);
}

static void swd_agent_on_deregister_deadline(swd_timer_t *timer) {
    swd_agent_t *a = timer->data;
    swd_log_warn(COMPONENT, "no answer to agent.deregister; stopping anyway", "{s:I,s:I}",
                 "waited_ms", (json_int_t)DEREGISTER_WAIT_MS, "inflight", (json_int_t)a->inflight);
    swd_agent_stop(a, 0);
}

// Stops taking tasks and says goodbye; swarmd answers once the tasks still
// running here have settled, so they keep running (and heartbeats keep
// going) until then, or until the deadline.
static void swd_agent_deregister(swd_agent_t *a) {
    a->state = SWD_AGENT_DEREGISTERING;
    swd_log_info(COMPONENT, "deregistering", "{s:s,s:I}", "agent_id", a->agent_id, "inflight",
                 (json_int_t)a->inflight);
    msgpack_packer *pk =
        swd_rpc_conn_request_begin(a->conn, "agent.deregister", swd_agent_on_deregistered, 0, a);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 0);
    swd_rpc_conn_send(a->conn);
    swd_timer_start(&a->deregister_deadline, DEREGISTER_WAIT_MS);
}

static void swd_agent_on_conn_close(swd_rpc_conn_t *c, void *data) {
    swd_agent_t *a = data;
    swd_agent_state_t was = a->state;
    a->conn = NULL;
    if (was == SWD_AGENT_STOPPING) {
        return;
    }
    if (was == SWD_AGENT_DEREGISTERING) {
        swd_log_info(COMPONENT, "connection closed while deregistering", NULL);
        swd_agent_stop(a, 0);
        return;
    }
    swd_log_error(COMPONENT, "connection lost", "{s:s,s:s}", "peer", swd_rpc_conn_name(c),
                  "agent_id", a->agent_id);
    swd_agent_stop(a, 1);
}

// ---------------------------------------------------------------------------
// Start and stop

static void swd_agent_on_signal(uv_signal_t *h, int signum) {
    swd_agent_t *a = h->data;
    swd_log_info(COMPONENT, "signal received", "{s:s}", "signal", strsignal(signum));
    if (a->state == SWD_AGENT_RUNNING && a->conn != NULL) {
        swd_agent_deregister(a);
    } else if (a->state == SWD_AGENT_DEREGISTERING) {
        swd_log_warn(COMPONENT, "second signal: stopping now", NULL);
        swd_agent_stop(a, 1);
    } else {
        swd_agent_stop(a, 0); // not registered yet: nothing to say goodbye to
    }
}

// Everything that keeps the loop alive goes: timers, signal handlers, the
// connection, the children (killed; their tasks leave as they are reaped)
// and, after the last task, the clock. Then uv_run returns.
static void swd_agent_stop(swd_agent_t *a, int exit_code) {
    if (a->state == SWD_AGENT_STOPPING) {
        return;
    }
    a->state = SWD_AGENT_STOPPING;
    a->exit_code = exit_code;
    swd_timer_stop(&a->heartbeat);
    swd_timer_stop(&a->deregister_deadline);
    swd_timer_stop(&a->crash_timer);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    if (a->conn != NULL) {
        swd_rpc_conn_close(a->conn, "agent stopping");
    }
    swd_agent_task_t *next;
    for (swd_agent_task_t *t = a->tasks; t != NULL; t = next) {
        next = t->next;
        t->cancelled = true;
        if (t->exec != NULL) {
            swd_exec_cancel(t->exec, true); // may free `t`
        } else {
            swd_agent_task_free(t);
        }
    }
    swd_agent_maybe_finish(a);
}

static void swd_agent_on_connect(uv_connect_t *req, int status) {
    swd_agent_t *a = req->data;
    if (a->state != SWD_AGENT_CONNECTING) {
        return; // stopped meanwhile (the close cancelled the connect)
    }
    if (status < 0) {
        swd_log_error(COMPONENT, "cannot connect", "{s:s,s:s}", "addr", a->opts.connect, "error",
                      uv_strerror(status));
        swd_agent_stop(a, 1);
        return;
    }
    // Answers are small and latency is what swarmd measures: no Nagle delay.
    uv_tcp_nodelay((uv_tcp_t *)swd_rpc_conn_stream(a->conn), 1);
    if (swd_rpc_conn_start(a->conn) < 0) {
        return; // the connection closed itself; on_close stops the agent
    }
    swd_agent_register(a);
}

// libuv polls the fds it is given and aborts the loop on one that epoll
// refuses (a regular file, /dev/null), so only pipes and sockets pass.
static int swd_agent_check_stdio(void) {
    for (int fd = 0; fd <= 1; fd++) {
        struct stat st;
        if (fstat(fd, &st) != 0) {
            return -errno;
        }
        if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode)) {
            swd_log_error(COMPONENT, "--stdio needs a pipe or socket on stdin and stdout", "{s:s}",
                          "fd", fd == 0 ? "stdin" : "stdout");
            return UV_EINVAL;
        }
    }
    return 0;
}

static int swd_agent_connect(swd_agent_t *a) {
    swd_rpc_conn_opts_t co = {
        .dispatch = swd_agent_dispatch, .on_close = swd_agent_on_conn_close, .data = a};
    a->state = SWD_AGENT_CONNECTING;
    if (a->opts.use_stdio) {
        a->conn = swd_rpc_conn_new(&a->loop, SWD_CONN_PIPES, &co);
        swd_rpc_conn_set_name(a->conn, "stdio");
        int r = swd_agent_check_stdio();
        if (r == 0) {
            r = swd_rpc_conn_open_pipes(a->conn, 0, 1);
        }
        if (r < 0) {
            swd_log_error(COMPONENT, "cannot use stdin/stdout", "{s:s}", "error", uv_strerror(r));
            return r;
        }
        if ((r = swd_rpc_conn_start(a->conn)) < 0) {
            return r;
        }
        swd_agent_register(a);
        return 0;
    }
    a->conn = swd_rpc_conn_new(&a->loop, SWD_CONN_TCP, &co);
    swd_rpc_conn_set_name(a->conn, a->opts.connect);
    a->connect_req.data = a;
    int r = uv_tcp_connect(&a->connect_req, (uv_tcp_t *)swd_rpc_conn_stream(a->conn),
                           (const struct sockaddr *)&a->opts.addr, swd_agent_on_connect);
    if (r < 0) {
        swd_log_error(COMPONENT, "cannot connect", "{s:s,s:s}", "addr", a->opts.connect, "error",
                      uv_strerror(r));
    }
    return r;
}

static int swd_agent_init(swd_agent_t *a) {
    int r = uv_loop_init(&a->loop);
    if (r < 0) {
        return r;
    }
    swd_clock_init_real(&a->clock, &a->loop);
    swd_log_setup(a->opts.log_level, 0, &a->clock, -1);
    a->max_concurrency = a->opts.concurrency;
    swd_timer_init(&a->clock, &a->heartbeat, swd_agent_on_heartbeat, a);
    swd_timer_init(&a->clock, &a->deregister_deadline, swd_agent_on_deregister_deadline, a);
    swd_timer_init(&a->clock, &a->crash_timer, swd_agent_on_crash_timer, a);
    uv_signal_init(&a->loop, &a->sigint);
    uv_signal_init(&a->loop, &a->sigterm);
    a->sigint.data = a;
    a->sigterm.data = a;
    uv_signal_start(&a->sigint, swd_agent_on_signal, SIGINT);
    uv_signal_start(&a->sigterm, swd_agent_on_signal, SIGTERM);
    if (a->opts.mode == SWD_AGENT_MODE_SIM) {
        int64_t now = swd_clock_now(&a->clock);
        int64_t at;
        swd_sim_init(&a->sim, &a->opts.sim, now);
        if (swd_sim_crash_time(&a->sim, &at)) {
            swd_timer_start(&a->crash_timer, at > now ? at - now : 0);
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Command line

static void swd_agent_usage(FILE *out) {
    static const char *const lines[][2] = {
        {"--connect HOST:PORT", "connect to swarmd's RPC listener over TCP"},
        {"--stdio", "speak the RPC protocol on stdin/stdout (process pools)"},
        {"--name NAME", "agent name (default $SWARMD_AGENT_NAME, else swarm-agent-<pid>)"},
        {"--pool POOL", "pool to join (default $SWARMD_POOL, else swarmd's \"default\")"},
        {"--capabilities a,b", "task types served; * serves all (default *)"},
        {"--concurrency N", "tasks run at once, sent as max_concurrency (default 1)"},
        {"--token T", "agent token (default $SWARMD_AGENT_TOKEN, else $SWARMD_TOKEN)"},
        {"--label k=v", "a label; repeatable"},
        {"--heartbeat-ms MS", "heartbeat period (default: what agent.register answers)"},
        {"--log-level LEVEL", "debug, info, warn or error (default info)"},
        {"--exec CMD", "run `/bin/sh -c CMD` per task: the payload on stdin (a string"},
        {"", "as is, else JSON), the output from stdout; SWARM_TASK_ID,"},
        {"", "SWARM_TASK_TYPE, SWARM_ATTEMPT set; a last stderr line"},
        {"", "`tokens_used=N` reports tokens; exit status N != 0 fails"},
        {"", "the task with the retryable code exit_N"},
        {"--sim", "simulate an LLM agent; its knobs follow"},
    };
    fprintf(out, "usage: swarm-agent (--connect HOST:PORT | --stdio) (--exec CMD | --sim [KNOBS])\n"
                 "                   [--name NAME] [--pool POOL] [--capabilities a,b]\n"
                 "                   [--concurrency N] [--token T] [--label k=v ...]\n"
                 "                   [--heartbeat-ms MS] [--log-level LEVEL]\n\n"
                 "The reference swarmd agent: registers with swarmd and runs its tasks.\n\n");
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        fprintf(out, "  %-28s %s\n", lines[i][0], lines[i][1]);
    }
    fprintf(out, "\nSimulation knobs (with --sim):\n");
    swd_sim_params_help(out);
    fprintf(out, "\nExit status: 0 after SIGINT/SIGTERM, 1 on a lost connection or a refused\n"
                 "registration, 2 on bad usage, 3 on a simulated crash.\n");
}

static int swd_agent_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    char *end;
    if (s[0] < '0' || s[0] > '9') {
        return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

// Splits "a, b,,c" into owned, trimmed, non-empty names.
static void swd_agent_split_caps(swd_agent_opts_t *o, const char *list) {
    for (size_t i = 0; i < o->ncaps; i++) {
        free(o->caps[i]);
    }
    free(o->caps);
    o->ncaps = 0;
    o->caps = swd_xcalloc(strlen(list) + 1, sizeof(char *));
    const char *p = list;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        const char *s = p, *e = p + n;
        while (s < e && (*s == ' ' || *s == '\t')) {
            s++;
        }
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        if (e > s) {
            o->caps[o->ncaps++] = swd_xstrndup(s, (size_t)(e - s));
        }
        p += n + (p[n] == ',');
    }
}

// Applies one option that takes a value; 1 when `name` is not one of them.
static int swd_agent_apply_opt(swd_agent_opts_t *o, const char *name, const char *v, char *err,
                               size_t errlen) {
    uint64_t n = 0;
    int bad = 0;
    if (strcmp(name, "connect") == 0) {
        o->connect = v;
    } else if (strcmp(name, "name") == 0) {
        o->name = v;
        bad = v[0] == '\0';
    } else if (strcmp(name, "pool") == 0) {
        o->pool = v;
        bad = v[0] == '\0';
    } else if (strcmp(name, "capabilities") == 0) {
        swd_agent_split_caps(o, v);
        bad = o->ncaps == 0;
    } else if (strcmp(name, "concurrency") == 0) {
        bad = swd_agent_parse_uint(v, 1, MAX_CONCURRENCY, &n) != 0;
        o->concurrency = (uint32_t)n;
    } else if (strcmp(name, "token") == 0) {
        o->token = v;
    } else if (strcmp(name, "label") == 0) {
        const char *eq = strchr(v, '=');
        bad = eq == NULL || eq == v;
        o->labels[o->nlabels++] = v;
    } else if (strcmp(name, "heartbeat-ms") == 0) {
        bad = swd_agent_parse_uint(v, 1, 86400000, &n) != 0;
        o->heartbeat_ms = (int64_t)n;
    } else if (strcmp(name, "log-level") == 0) {
        bad = swd_log_level_parse(v, &o->log_level) != 0;
    } else if (strcmp(name, "exec") == 0) {
        if (o->mode != SWD_AGENT_MODE_NONE) {
            snprintf(err, errlen, "give exactly one of --exec and --sim");
            return -1;
        }
        bad = v[0] == '\0';
        o->mode = SWD_AGENT_MODE_EXEC;
        o->exec_cmd = v;
    } else {
        return 1;
    }
    if (bad) {
        snprintf(err, errlen, "bad value for --%s: '%s'", name, v);
        return -1;
    }
    return 0;
}

// One `--name VALUE` (or `--name=VALUE`) option; `*i` moves past what it used.
static int swd_agent_parse_one(swd_agent_opts_t *o, int argc, char **argv, int *i, char *err,
                               size_t errlen) {
    const char *arg = argv[*i];
    char name[64];
    const char *eq = strchr(arg, '=');
    size_t nlen = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    if (strncmp(arg, "--", 2) != 0 || nlen == 0 || nlen >= sizeof(name)) {
        snprintf(err, errlen, "unexpected argument '%s'", arg);
        return -1;
    }
    memcpy(name, arg + 2, nlen);
    name[nlen] = '\0';
    if (eq == NULL && (strcmp(name, "stdio") == 0 || strcmp(name, "sim") == 0)) {
        if (strcmp(name, "stdio") == 0) {
            o->use_stdio = true;
        } else if (o->mode != SWD_AGENT_MODE_NONE) {
            snprintf(err, errlen, "give exactly one of --exec and --sim");
            return -1;
        } else {
            o->mode = SWD_AGENT_MODE_SIM;
        }
        return 0;
    }
    const char *v = eq != NULL ? eq + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
    if (v == NULL) {
        snprintf(err, errlen, "--%s needs a value", name);
        return -1;
    }
    int r = swd_agent_apply_opt(o, name, v, err, errlen);
    if (r <= 0) {
        return r;
    }
    r = swd_sim_params_set(&o->sim, name, v, err, errlen);
    if (r == SWD_ENOTFOUND) {
        snprintf(err, errlen, "unknown option --%s", name);
    }
    if (r == 0 && o->sim_knob == NULL) {
        o->sim_knob = arg;
    }
    return r == 0 ? 0 : -1;
}

// The checks that need the whole command line.
static int swd_agent_check_opts(swd_agent_opts_t *o, char *err, size_t errlen) {
    if ((o->connect != NULL) == o->use_stdio) {
        snprintf(err, errlen, "give exactly one of --connect HOST:PORT and --stdio");
        return -1;
    }
    if (o->mode == SWD_AGENT_MODE_NONE) {
        snprintf(err, errlen, "give exactly one of --exec CMD and --sim");
        return -1;
    }
    if (o->mode != SWD_AGENT_MODE_SIM && o->sim_knob != NULL) {
        snprintf(err, errlen, "%s is a simulation knob: it needs --sim", o->sim_knob);
        return -1;
    }
    if (o->connect != NULL) {
        char why[160];
        if (swd_net_parse(o->connect, &o->addr, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "--connect: %s", why);
            return -1;
        }
    }
    if (o->token == NULL) {
        const char *env = getenv("SWARMD_AGENT_TOKEN");
        o->token = env != NULL && env[0] != '\0' ? env : getenv("SWARMD_TOKEN");
    }
    if (o->token != NULL && o->token[0] == '\0') {
        o->token = NULL;
    }
    return 0;
}

static void swd_agent_opts_init(swd_agent_opts_t *o, int argc) {
    memset(o, 0, sizeof(*o));
    snprintf(o->default_name, sizeof(o->default_name), "swarm-agent-%ld", (long)getpid());
    o->name = o->default_name;
    // A process pool names its children through the environment; the flags
    // still win.
    const char *env_name = getenv("SWARMD_AGENT_NAME");
    const char *env_pool = getenv("SWARMD_POOL");
    if (env_name != NULL && env_name[0] != '\0') {
        o->name = env_name;
    }
    if (env_pool != NULL && env_pool[0] != '\0') {
        o->pool = env_pool;
    }
    o->concurrency = 1;
    o->log_level = SWD_LOG_INFO;
    o->labels = swd_xcalloc((size_t)argc + 1, sizeof(char *));
    swd_sim_params_init(&o->sim);
    swd_agent_split_caps(o, "*");
}

static void swd_agent_opts_free(swd_agent_opts_t *o) {
    for (size_t i = 0; i < o->ncaps; i++) {
        free(o->caps[i]);
    }
    free(o->caps);
    free(o->labels);
}

// 0: run; 1: --help was printed; -1: bad usage (reported on stderr).
static int swd_agent_parse_args(swd_agent_opts_t *o, int argc, char **argv) {
    char err[256] = "";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            swd_agent_usage(stdout);
            return 1;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (swd_agent_parse_one(o, argc, argv, &i, err, sizeof(err)) != 0) {
            goto fail;
        }
    }
    if (swd_agent_check_opts(o, err, sizeof(err)) != 0) {
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "swarm-agent: %s\nTry 'swarm-agent --help'.\n", err);
    return -1;
}

int main(int argc, char **argv) {
    swd_agent_t *a = swd_xcalloc(1, sizeof(*a));
    swd_agent_opts_init(&a->opts, argc);
    int r = swd_agent_parse_args(&a->opts, argc, argv);
    if (r != 0) {
        swd_agent_opts_free(&a->opts);
        free(a);
        return r > 0 ? 0 : EXIT_USAGE;
    }
    // A peer that goes away must show up as a write error, not kill us.
    signal(SIGPIPE, SIG_IGN);
    if (swd_agent_init(a) < 0) {
        swd_log_error(COMPONENT, "cannot start the event loop", NULL);
        swd_agent_opts_free(&a->opts);
        free(a);
        return 1;
    }
    if (swd_agent_connect(a) < 0) {
        swd_agent_stop(a, 1);
    }
    uv_run(&a->loop, UV_RUN_DEFAULT);
    // The log must not read the clock of a loop that is about to close.
    swd_log_setup(a->opts.log_level, 0, NULL, -1);
    r = uv_loop_close(&a->loop);
    if (r != 0) {
        swd_log_error(COMPONENT, "event loop closed with live handles", "{s:s}", "error",
                      uv_strerror(r));
    }
    int code = a->exit_code;
    swd_log_shutdown();
    swd_agent_opts_free(&a->opts);
    free(a);
    return code != 0 ? code : (r != 0 ? 1 : 0);
}
