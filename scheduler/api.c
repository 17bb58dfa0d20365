#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/encoder.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "scheduler/api.h"

#define WAIT_DEFAULT_MS 30000
#define WAIT_MAX_MS 300000
#define LIST_MAX 1000
#define MAX_RETRIES_LIMIT 1000
#define MAX_TYPE_BYTES 128
#define MAX_KEY_BYTES 256
// An `after` entry naming element K of the same batch, resolved to K's task
// only once K exists (an earlier duplicate key creates no new task).
#define BATCH_REF (UINT64_C(1) << 63)

// ---- task specs ----

typedef struct spec_buf {
    swd_task_spec_t spec;
    uint64_t *after; // owned, resolved seqs
} spec_buf_t;

// Earlier elements of the same batch, for after_keys (§2.1).
typedef struct batch_keys {
    const swd_task_spec_t *specs;
    uint32_t n;
} batch_keys_t;

static void spec_buf_free(spec_buf_t *b) {
    free(b->after);
    b->after = NULL;
}

static int add_after(swd_params_t *p, spec_buf_t *b, uint64_t seq) {
    b->after = swd_xrealloc(b->after, (b->spec.nafter + 1) * sizeof(uint64_t));
    b->after[b->spec.nafter++] = seq;
    return 0;
}

// Resolves `after` (ids) and `after_keys`; an unknown name is not_found.
// A key of an earlier batch element resolves to that element's future seq.
static int resolve_after(const swd_api_t *api, swd_params_t *p, spec_buf_t *b,
                         const batch_keys_t *batch, swd_rpc_error_t *code) {
    const msgpack_object_array *ids = NULL, *keys = NULL;
    if (swd_params_array(p, "after", false, &ids) < 0 ||
        swd_params_array(p, "after_keys", false, &keys) < 0) {
        return SWD_EPARAMS;
    }
    for (uint32_t i = 0; ids != NULL && i < ids->size; i++) {
        const msgpack_object *o = &ids->ptr[i];
        swd_task_t *t = o->type == MSGPACK_OBJECT_STR
                            ? swd_sched_find(api->sched, o->via.str.ptr, o->via.str.size)
                            : NULL;
        if (t == NULL) {
            *code = SWD_RPC_NOT_FOUND;
            snprintf(p->error, sizeof(p->error), "'after' names no task: %.*s",
                     o->type == MSGPACK_OBJECT_STR
                         ? (int)(o->via.str.size > 64 ? 64 : o->via.str.size)
                         : 1,
                     o->type == MSGPACK_OBJECT_STR ? o->via.str.ptr : "?");
            return SWD_ENOTFOUND;
        }
        add_after(p, b, t->seq);
    }
    for (uint32_t i = 0; keys != NULL && i < keys->size; i++) {
        const msgpack_object *o = &keys->ptr[i];
        if (o->type != MSGPACK_OBJECT_STR) {
            snprintf(p->error, sizeof(p->error), "parameter 'after_keys' must hold strings");
            return SWD_EPARAMS;
        }
        swd_task_t *t = swd_sched_find_key(api->sched, o->via.str.ptr, o->via.str.size);
        if (t != NULL) {
            add_after(p, b, t->seq);
            continue;
        }
        bool found = false;
        for (uint32_t j = 0; batch != NULL && j < batch->n && !found; j++) {
            const swd_task_spec_t *e = &batch->specs[j];
            found = e->key != NULL && e->key_len == o->via.str.size &&
                    memcmp(e->key, o->via.str.ptr, e->key_len) == 0;
            if (found) {
                add_after(p, b, BATCH_REF | j);
            }
        }
        if (!found) {
            *code = SWD_RPC_NOT_FOUND;
            snprintf(p->error, sizeof(p->error), "'after_keys' names no task: %.*s",
                     (int)(o->via.str.size > 64 ? 64 : o->via.str.size), o->via.str.ptr);
            return SWD_ENOTFOUND;
        }
    }
    return 0;
}

static int parse_spec(const swd_api_t *api, swd_params_t *p, spec_buf_t *b,
                      const batch_keys_t *batch, swd_rpc_error_t *code) {
    swd_task_spec_t *s = &b->spec;
    memset(b, 0, sizeof(*b));
    *code = SWD_RPC_INVALID_PARAMS;
    s->priority = SWD_PRIO_MEDIUM;
    s->estimated_tokens = 1000;
    s->max_retries = (uint32_t)api->cfg->scheduler.default_max_retries;
    uint64_t retries = s->max_retries, timeout = 0;
    if (swd_params_str(p, "type", true, &s->type, &s->type_len) < 0 ||
        swd_params_any(p, "payload", false, &s->payload) < 0 ||
        swd_params_enum(p, "priority", false, swd_priority_names, &s->priority) < 0 ||
        swd_params_uint(p, "estimated_tokens", false, &s->estimated_tokens) < 0 ||
        swd_params_uint(p, "timeout_ms", false, &timeout) < 0 ||
        swd_params_uint(p, "max_retries", false, &retries) < 0 ||
        swd_params_str(p, "key", false, &s->key, &s->key_len) < 0 ||
        swd_params_map(p, "labels", false, &s->labels) < 0) {
        return SWD_EPARAMS;
    }
    if (s->type_len == 0 || s->type_len > MAX_TYPE_BYTES || memchr(s->type, 0, s->type_len)) {
        snprintf(p->error, sizeof(p->error), "parameter 'type' must be 1-%d bytes without NUL",
                 MAX_TYPE_BYTES);
        return SWD_EPARAMS;
    }
    if (s->key != NULL && (s->key_len == 0 || s->key_len > MAX_KEY_BYTES)) {
        snprintf(p->error, sizeof(p->error), "parameter 'key' must be 1-%d bytes", MAX_KEY_BYTES);
        return SWD_EPARAMS;
    }
    if (retries > MAX_RETRIES_LIMIT || timeout > INT32_MAX) {
        snprintf(p->error, sizeof(p->error), "parameter '%s' is out of range",
                 retries > MAX_RETRIES_LIMIT ? "max_retries" : "timeout_ms");
        return SWD_EPARAMS;
    }
    s->max_retries = (uint32_t)retries;
    s->timeout_ms = (int64_t)timeout;
    int r = resolve_after(api, p, b, batch, code);
    s->after = b->after;
    return r;
}

static void reply_submit_refusal(swd_rpc_conn_t *c, uint64_t msgid, swd_submit_result_t r) {
    switch (r) {
    case SWD_SUBMIT_OVERLOADED:
        swd_rpc_conn_reply_error(c, msgid, SWD_RPC_OVERLOADED,
                                 "queue full (limits.max_queued); try again later");
        break;
    case SWD_SUBMIT_SHUTTING_DOWN:
        swd_rpc_conn_reply_error(c, msgid, SWD_RPC_SHUTTING_DOWN, "swarmd is shutting down");
        break;
    case SWD_SUBMIT_TOO_MANY_TYPES:
    default:
        swd_rpc_conn_reply_error(c, msgid, SWD_RPC_INVALID_PARAMS, "too many distinct task types");
        break;
    }
}

static void task_submit(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    swd_api_t *api = data;
    spec_buf_t b;
    swd_rpc_error_t code;
    if (parse_spec(api, p, &b, NULL, &code) < 0) {
        if (m->kind == SWD_MSG_REQUEST) {
            swd_rpc_conn_reply_error(c, m->msgid, code, p->error);
        }
        spec_buf_free(&b);
        return;
    }
    swd_task_t *t = NULL;
    swd_submit_result_t r = swd_sched_submit(api->sched, &b.spec, &t);
    spec_buf_free(&b);
    if (m->kind != SWD_MSG_REQUEST) {
        return;
    }
    if (r != SWD_SUBMIT_OK && r != SWD_SUBMIT_DUPLICATE) {
        reply_submit_refusal(c, m->msgid, r);
        return;
    }
    msgpack_packer *pk = swd_rpc_conn_reply_begin(c, m->msgid);
    char id[SWD_ID_MAX];
    msgpack_pack_map(pk, 2);
    swd_pack_kv_str(pk, "task_id", swd_task_id(t, id));
    swd_pack_kv_str(pk, "state", swd_task_state_names[t->state]);
    swd_rpc_conn_send(c);
}

static void reply_batch_error(swd_rpc_conn_t *c, uint64_t msgid, swd_rpc_error_t code,
                              uint32_t index, const char *why) {
    char msg[320];
    snprintf(msg, sizeof(msg), "tasks[%u]: %s", index, why);
    msgpack_packer *pk = swd_rpc_conn_reply_error_data(c, msgid, code, msg);
    msgpack_pack_map(pk, 1);
    swd_pack_kv_u64(pk, "index", index);
    swd_rpc_conn_send(c);
}

// Validates every element first: the batch is created all or none.
static int parse_batch(const swd_api_t *api, swd_rpc_conn_t *c, uint64_t msgid,
                       const msgpack_object_array *arr, spec_buf_t *bufs) {
    swd_task_spec_t *specs = swd_xcalloc(arr->size ? arr->size : 1, sizeof(*specs));
    int r = 0;
    for (uint32_t i = 0; i < arr->size; i++) {
        swd_params_t ep;
        swd_rpc_error_t code = SWD_RPC_INVALID_PARAMS;
        batch_keys_t earlier = {specs, i};
        if (swd_params_open_map(&ep, &arr->ptr[i]) < 0 ||
            parse_spec(api, &ep, &bufs[i], &earlier, &code) < 0) {
            // §2.1: whatever the element's fault, an unknown `after` too.
            (void)code;
            reply_batch_error(c, msgid, SWD_RPC_INVALID_PARAMS, i, ep.error);
            for (uint32_t j = 0; j <= i; j++) {
                spec_buf_free(&bufs[j]);
            }
            r = SWD_EPARAMS;
            break;
        }
        specs[i] = bufs[i].spec;
    }
    free(specs);
    return r;
}

static void task_submit_batch(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    swd_api_t *api = data;
    const msgpack_object_array *arr = NULL;
    if (m->kind != SWD_MSG_REQUEST) {
        return;
    }
    if (swd_params_array(p, "tasks", true, &arr) < 0) {
        swd_rpc_reply_params_error(c, m, p);
        return;
    }
    if (arr->size > (uint64_t)api->cfg->scheduler.max_batch) {
        char msg[128];
        snprintf(msg, sizeof(msg), "batch of %u tasks; the limit is %lld (scheduler.max_batch)",
                 arr->size, (long long)api->cfg->scheduler.max_batch);
        swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_TOO_LARGE, msg);
        return;
    }
    if (api->sched->draining) {
        reply_submit_refusal(c, m->msgid, SWD_SUBMIT_SHUTTING_DOWN);
        return;
    }
    if (!swd_sched_has_room(api->sched, arr->size)) {
        reply_submit_refusal(c, m->msgid, SWD_SUBMIT_OVERLOADED);
        return;
    }
    spec_buf_t *bufs = swd_xcalloc(arr->size ? arr->size : 1, sizeof(*bufs));
    if (parse_batch(api, c, m->msgid, arr, bufs) < 0) {
        free(bufs);
        return;
    }
    // Create everything before the reply starts: each submit publishes
    // events, which a subscribed caller receives on this same connection.
    swd_task_t **created = swd_xcalloc(arr->size ? arr->size : 1, sizeof(*created));
    for (uint32_t i = 0; i < arr->size; i++) {
        for (uint32_t k = 0; k < bufs[i].spec.nafter; k++) {
            if (bufs[i].after[k] & BATCH_REF) {
                swd_task_t *dep = created[bufs[i].after[k] & ~BATCH_REF];
                bufs[i].after[k] = dep != NULL ? dep->seq : 0;
            }
        }
        swd_submit_result_t r = swd_sched_submit(api->sched, &bufs[i].spec, &created[i]);
        if (r != SWD_SUBMIT_OK && r != SWD_SUBMIT_DUPLICATE) {
            created[i] = NULL; // room and types were checked above
        }
        spec_buf_free(&bufs[i]);
    }
    free(bufs);
    msgpack_packer *pk = swd_rpc_conn_reply_begin(c, m->msgid);
    msgpack_pack_map(pk, 1);
    swd_pack_str(pk, "task_ids");
    msgpack_pack_array(pk, arr->size);
    for (uint32_t i = 0; i < arr->size; i++) {
        char id[SWD_ID_MAX];
        swd_pack_str_or_nil(pk, created[i] != NULL ? swd_task_id(created[i], id) : NULL);
    }
    free(created);
    swd_rpc_conn_send(c);
}

// ---- reading tasks ----

static swd_task_t *task_param(swd_api_t *api, swd_rpc_conn_t *c, const swd_msg_t *m,
                              swd_params_t *p) {
    const char *id;
    size_t len;
    if (swd_params_str(p, "task_id", true, &id, &len) < 0) {
        swd_rpc_reply_params_error(c, m, p);
        return NULL;
    }
    swd_task_t *t = swd_sched_find(api->sched, id, len);
    if (t == NULL && m->kind == SWD_MSG_REQUEST) {
        char msg[128];
        snprintf(msg, sizeof(msg), "no task %.*s", (int)(len > 64 ? 64 : len), id);
        swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_NOT_FOUND, msg);
    }
    return t;
}

static void reply_task(swd_api_t *api, swd_rpc_conn_t *c, uint64_t msgid, const swd_task_t *t) {
    swd_sched_pack_task(api->sched, t, SWD_TASK_VIEW_FULL, swd_rpc_conn_reply_begin(c, msgid));
    swd_rpc_conn_send(c);
}

static void task_get(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    swd_task_t *t = task_param(data, c, m, p);
    if (t != NULL && m->kind == SWD_MSG_REQUEST) {
        reply_task(data, c, m->msgid, t);
    }
}

typedef struct wait_call {
    swd_api_t *api;
    swd_rpc_conn_t *conn;
    uint64_t msgid;
} wait_call_t;

static void on_wait_done(swd_task_t *t, bool timed_out, void *data) {
    wait_call_t *w = data;
    reply_task(w->api, w->conn, w->msgid, t);
    swd_rpc_conn_unref(w->conn);
    free(w);
}

static void task_wait(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    swd_api_t *api = data;
    uint64_t timeout = WAIT_DEFAULT_MS;
    if (m->kind != SWD_MSG_REQUEST) {
        return;
    }
    if (swd_params_uint(p, "timeout_ms", false, &timeout) < 0) {
        swd_rpc_reply_params_error(c, m, p);
        return;
    }
    swd_task_t *t = task_param(api, c, m, p);
    if (t == NULL) {
        return;
    }
    wait_call_t *w = swd_xmalloc(sizeof(*w));
    w->api = api;
    w->conn = c;
    w->msgid = m->msgid;
    swd_rpc_conn_ref(c);
    swd_sched_wait(api->sched, t, timeout > WAIT_MAX_MS ? WAIT_MAX_MS : (int64_t)timeout,
                   on_wait_done, w);
}

static void task_cancel(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    swd_api_t *api = data;
    swd_task_t *t = task_param(api, c, m, p);
    if (t == NULL) {
        return;
    }
    bool cancelled = swd_sched_cancel(api->sched, t);
    if (m->kind != SWD_MSG_REQUEST) {
        return;
    }
    msgpack_packer *pk = swd_rpc_conn_reply_begin(c, m->msgid);
    msgpack_pack_map(pk, 2);
    swd_pack_kv_bool(pk, "cancelled", cancelled);
    swd_pack_kv_str(pk, "state", swd_task_state_names[t->state]);
    swd_rpc_conn_send(c);
}

// The first task of the page: the cursor's task, or the first one after it
// when that one has since been forgotten.
static const swd_task_t *list_start(const swd_sched_t *s, const char *cursor, size_t len) {
    if (cursor == NULL) {
        return s->first;
    }
    const swd_task_t *t = swd_sched_find(s, cursor, len);
    if (t != NULL) {
        return t;
    }
    uint64_t seq = 0;
    swd_id_parse('t', cursor, len, &seq);
    for (t = s->first; t != NULL && t->seq < seq; t = t->lnext) {
    }
    return t;
}

static bool valid_cursor(const char *c, size_t len) {
    uint64_t seq;
    return swd_id_parse('t', c, len, &seq);
}

static void task_list(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    swd_api_t *api = data;
    int state = -1;
    uint64_t limit = 100;
    const char *cursor = NULL;
    size_t clen = 0;
    if (m->kind != SWD_MSG_REQUEST) {
        return;
    }
    if (swd_params_enum(p, "state", false, swd_task_state_names, &state) < 0 ||
        swd_params_uint(p, "limit", false, &limit) < 0 ||
        swd_params_str(p, "cursor", false, &cursor, &clen) < 0) {
        swd_rpc_reply_params_error(c, m, p);
        return;
    }
    if (cursor != NULL && !valid_cursor(cursor, clen)) {
        swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_INVALID_PARAMS,
                                 "parameter 'cursor' must be a 'next' value from task.list");
        return;
    }
    limit = limit == 0 ? 1 : (limit > LIST_MAX ? LIST_MAX : limit);
    const swd_task_t *t = list_start(api->sched, cursor, clen);
    const swd_task_t *page[LIST_MAX];
    uint32_t n = 0;
    for (; t != NULL && n < limit; t = t->lnext) {
        if (state < 0 || t->state == state) {
            page[n++] = t;
        }
    }
    while (t != NULL && state >= 0 && t->state != state) {
        t = t->lnext; // `next` is nil exactly when no task follows (§2.1)
    }
    msgpack_packer *pk = swd_rpc_conn_reply_begin(c, m->msgid);
    msgpack_pack_map(pk, 2);
    swd_pack_str(pk, "tasks");
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        swd_sched_pack_task(api->sched, page[i], SWD_TASK_VIEW_LIST, pk);
    }
    char id[SWD_ID_MAX];
    swd_pack_kv_str(pk, "next", t != NULL ? swd_task_id(t, id) : NULL);
    swd_rpc_conn_send(c);
}

// ---- agents, stats ----

void swd_api_pack_agents(const swd_api_t *api, msgpack_packer *pk) {
    msgpack_pack_map(pk, 1);
    swd_pack_str(pk, "agents");
    msgpack_pack_array(pk, api->agents->total);
    for (const swd_agent_t *a = api->agents->head; a != NULL; a = a->next) {
        swd_agent_pack(a, pk);
    }
}

static void agent_list(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    if (m->kind == SWD_MSG_REQUEST) {
        swd_api_pack_agents(data, swd_rpc_conn_reply_begin(c, m->msgid));
        swd_rpc_conn_send(c);
    }
}

static void agent_drain(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    swd_api_t *api = data;
    const char *id;
    size_t len;
    if (swd_params_str(p, "agent_id", true, &id, &len) < 0) {
        swd_rpc_reply_params_error(c, m, p);
        return;
    }
    swd_agent_t *a = swd_agents_find(api->agents, id, len);
    if (m->kind != SWD_MSG_REQUEST) {
        if (a != NULL) {
            swd_agent_drain(a);
        }
        return;
    }
    if (a == NULL) {
        swd_rpc_conn_reply_error(c, m->msgid, SWD_RPC_NOT_FOUND, "no such agent");
        return;
    }
    swd_agent_drain(a);
    msgpack_pack_map(swd_rpc_conn_reply_begin(c, m->msgid), 0);
    swd_rpc_conn_send(c);
}

static void pack_mode(msgpack_packer *pk, const char *section, swd_mode_t mode) {
    swd_pack_str(pk, section);
    msgpack_pack_map(pk, 1);
    swd_pack_kv_str(pk, "mode", swd_mode_name(mode));
}

void swd_api_pack_stats(const swd_api_t *api, msgpack_packer *pk) {
    const swd_sched_t *s = api->sched;
    const swd_agents_t *r = api->agents;
    msgpack_pack_map(pk, 7);
    swd_pack_str(pk, "queue");
    msgpack_pack_map(pk, 3);
    swd_pack_kv_u64(pk, "queued", s->count[SWD_TASK_QUEUED]);
    swd_pack_kv_u64(pk, "deferred", s->count[SWD_TASK_DEFERRED]);
    swd_pack_kv_u64(pk, "running", s->count[SWD_TASK_RUNNING]);
    swd_pack_str(pk, "agents");
    msgpack_pack_map(pk, 1 + SWD_AGENT_STATE_COUNT);
    swd_pack_kv_u64(pk, "total", r->total);
    for (int i = 0; i < SWD_AGENT_STATE_COUNT; i++) {
        swd_pack_kv_u64(pk, swd_agent_state_name((swd_agent_state_t)i), r->count[i]);
    }
    swd_pack_str(pk, "tasks");
    msgpack_pack_map(pk, 5);
    swd_pack_kv_u64(pk, "submitted", s->stats.submitted);
    swd_pack_kv_u64(pk, "succeeded", s->stats.succeeded);
    swd_pack_kv_u64(pk, "failed", s->stats.failed);
    swd_pack_kv_u64(pk, "cancelled", s->stats.cancelled);
    swd_pack_kv_u64(pk, "retries", s->stats.retries);
    swd_pack_str(pk, "tokens");
    msgpack_pack_map(pk, 3);
    swd_pack_kv_u64(pk, "consumed", s->stats.tokens_consumed);
    swd_pack_kv_nil(pk, "budget"); // no token budget is configured in this build
    swd_pack_kv_nil(pk, "remaining");
    pack_mode(pk, "tuner", api->cfg->tuner.mode);
    pack_mode(pk, "healing", SWD_MODE_OFF);
    pack_mode(pk, "scaling", SWD_MODE_OFF);
}

static void swarm_stats(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    if (m->kind == SWD_MSG_REQUEST) {
        swd_api_pack_stats(data, swd_rpc_conn_reply_begin(c, m->msgid));
        swd_rpc_conn_send(c);
    }
}

// ---- subscribe ----

typedef struct subscription {
    swd_bus_t *bus;
    swd_bus_sub_t *sub;
    swd_rpc_conn_t *conn;
    swd_close_hook_t *hook;
} subscription_t;

static void on_event(const swd_event_t *ev, void *data) {
    subscription_t *s = data;
    msgpack_packer *pk = swd_rpc_conn_notify_begin(s->conn, "event");
    msgpack_pack_array(pk, 1);
    swd_event_pack(ev, pk);
    swd_rpc_conn_send(s->conn);
}

static void on_subscriber_gone(swd_rpc_conn_t *c, void *data) {
    subscription_t *s = data;
    swd_bus_unsubscribe(s->bus, s->sub);
    free(s);
}

static void subscribe(swd_rpc_conn_t *c, const swd_msg_t *m, swd_params_t *p, void *data) {
    swd_api_t *api = data;
    const msgpack_object_array *topics = NULL;
    if (swd_params_array(p, "topics", true, &topics) < 0) {
        swd_rpc_reply_params_error(c, m, p);
        return;
    }
    unsigned mask = 0;
    for (uint32_t i = 0; i < topics->size; i++) {
        const msgpack_object *o = &topics->ptr[i];
        int t =
            o->type == MSGPACK_OBJECT_STR ? swd_topic_parse(o->via.str.ptr, o->via.str.size) : -1;
        if (t < 0) {
            snprintf(p->error, sizeof(p->error),
                     "parameter 'topics' holds an unknown topic (task, log, tuner, healing, "
                     "agent, scaling)");
            swd_rpc_reply_params_error(c, m, p);
            return;
        }
        mask |= SWD_TOPIC_BIT(t);
    }
    subscription_t *s = swd_xcalloc(1, sizeof(*s));
    s->bus = api->bus;
    s->conn = c;
    s->sub = swd_bus_subscribe(api->bus, mask, on_event, s);
    s->hook = swd_rpc_session_on_close(c, on_subscriber_gone, s);
    if (m->kind == SWD_MSG_REQUEST) {
        msgpack_pack_map(swd_rpc_conn_reply_begin(c, m->msgid), 0);
        swd_rpc_conn_send(c);
    }
}

void swd_api_register(swd_api_t *api, swd_rpc_server_t *server) {
    static const struct {
        const char *name;
        swd_rpc_handler_fn fn;
    } methods[] = {
        {"task.submit", task_submit}, {"task.submit_batch", task_submit_batch},
        {"task.get", task_get},       {"task.wait", task_wait},
        {"task.cancel", task_cancel}, {"task.list", task_list},
        {"agent.list", agent_list},   {"agent.drain", agent_drain},
        {"swarm.stats", swarm_stats}, {"subscribe", subscribe},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        swd_rpc_server_add_method(server, methods[i].name, SWD_METHOD_CLIENT, methods[i].fn, api);
    }
}
