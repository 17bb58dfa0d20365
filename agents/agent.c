#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agent.h"
#include "proto/alloc.h"
#include "proto/encoder.h"
#include "runtime/ids.h"
#include "runtime/log.h"

// Health weights and the neutral value of a part without history (§5).
#define W_SUCCESS 0.4
#define W_LATENCY 0.3
#define W_LOAD 0.2
#define W_AFFINITY 0.1
#define NEUTRAL 0.5

static const char *const state_names[SWD_AGENT_STATE_COUNT] = {
    "idle", "busy", "draining", "ejected", "dead",
};
static const char *const circuit_names[] = {"closed", "open", "half_open"};

const char *swd_agent_state_name(swd_agent_state_t s) {
    return (unsigned)s < SWD_AGENT_STATE_COUNT ? state_names[s] : "?";
}

#define SLOT_OF(n) ((swd_agent_slot_t *)((char *)(n)-offsetof(swd_agent_slot_t, node)))

// The rank of an agent for one type, as a heap key (least first): higher
// health first, then fewer tasks in flight, then the older agent. Health is
// a non-negative double, whose bits sort as the value does; in-flight
// counts past 2^24 and agent numbers past 2^40 only tie.
static swd_heap_key_t rank_key(const swd_agent_t *a, double health) {
    if (!(health > 0)) {
        health = 0; // also NaN
    }
    uint64_t bits;
    memcpy(&bits, &health, sizeof(bits));
    uint64_t inflight = a->inflight < (1u << 24) ? a->inflight : (1u << 24) - 1;
    uint64_t seq = a->seq < ((uint64_t)1 << 40) ? a->seq : ((uint64_t)1 << 40) - 1;
    return (swd_heap_key_t){.hi = ~bits, .lo = inflight << 40 | seq};
}

void swd_agents_init(swd_agents_t *r, swd_clock_t *clock, swd_bus_t *bus,
                     const swd_agents_config_t *cfg, const swd_agents_cbs_t *cbs) {
    memset(r, 0, sizeof(*r));
    r->clock = clock;
    r->bus = bus;
    r->cfg = *cfg;
    if (r->cfg.window == 0) {
        r->cfg.window = 50;
    }
    if (r->cfg.max_types == 0) {
        r->cfg.max_types = 4096;
    }
    r->cbs = *cbs;
    r->next_seq = 1;
    swd_u64map_init(&r->by_seq);
    swd_strmap_init(&r->type_ids);
}

static void agent_free(swd_agent_t *a) {
    for (uint32_t i = 0; i < a->ncaps; i++) {
        free(a->caps[i]);
    }
    free(a->caps);
    free(a->name);
    free(a->pool);
    free(a->labels);
    free(a->metrics);
    free(a->win_ok);
    free(a->win_latency);
    free(a->slots);
    free(a);
}

void swd_agents_close(swd_agents_t *r) {
    while (r->head != NULL) {
        swd_agent_t *a = r->head;
        r->head = a->next;
        swd_timer_stop(&a->cooldown_timer);
        swd_timer_stop(&a->retention_timer);
        if (a->ops->release != NULL) {
            a->ops->release(a);
        }
        agent_free(a);
    }
    r->tail = NULL;
    for (uint32_t i = 0; i < r->ntypes; i++) {
        free(r->types[i].name);
        swd_heap_close(&r->types[i].agents);
    }
    free(r->types);
    swd_u64map_close(&r->by_seq);
    swd_strmap_close(&r->type_ids);
}

// ---- health ----

static double clamp01(double x) {
    return x < 0 ? 0 : (x > 1 ? 1 : x);
}

static const swd_agent_slot_t *slot_for(const swd_agent_t *a, int type) {
    for (uint32_t i = 0; i < a->nslots; i++) {
        if ((int)a->slots[i].type == type) {
            return &a->slots[i];
        }
    }
    return NULL;
}

double swd_agent_health(const swd_agent_t *a, int type, double parts[4]) {
    const swd_agents_t *r = a->reg;
    const swd_agent_slot_t *s = type >= 0 ? slot_for(a, type) : NULL;
    double success = a->win_len ? (double)a->win_ok_sum / a->win_len : NEUTRAL;
    // Latency against the target, on this type's record when it has one.
    double latency = NEUTRAL;
    double target = (double)r->cfg.target_latency_ms;
    if (s != NULL && s->samples > 0) {
        latency = clamp01(1.0 - s->latency_ewma_ms / target);
    } else if (a->win_len > 0) {
        latency = clamp01(1.0 - ((double)a->win_latency_sum / a->win_len) / target);
    }
    // A dead agent has no capacity left: its load part is 0, not "all free".
    double load =
        a->max_concurrency && !a->dead ? 1.0 - (double)a->inflight / a->max_concurrency : 0.0;
    double affinity = s != NULL && s->samples > 0 ? s->ok_ewma : NEUTRAL;
    parts[0] = W_SUCCESS * success;
    parts[1] = W_LATENCY * latency;
    parts[2] = W_LOAD * clamp01(load);
    parts[3] = W_AFFINITY * affinity;
    return parts[0] + parts[1] + parts[2] + parts[3];
}

// ---- state and eligibility ----

swd_agent_state_t swd_agent_state(const swd_agent_t *a) {
    if (a->dead) {
        return SWD_AGENT_DEAD;
    }
    if (a->draining) {
        return SWD_AGENT_DRAINING;
    }
    if (a->ejected_until_ms > 0) {
        return SWD_AGENT_EJECTED;
    }
    return a->inflight > 0 ? SWD_AGENT_BUSY : SWD_AGENT_IDLE;
}

static bool can_take(const swd_agent_t *a) {
    return !a->dead && !a->draining && !a->degraded && a->ejected_until_ms == 0 &&
           a->cooldown_until_ms == 0 && a->circuit != SWD_CIRCUIT_OPEN &&
           a->inflight < a->max_concurrency;
}

static void pack_agent_cb(const swd_event_t *ev, msgpack_packer *pk) {
    swd_agent_pack(ev->subject, pk);
}

static void publish(swd_agent_t *a, const char *event, const char *prev) {
    swd_event_t ev = {
        .topic = SWD_TOPIC_AGENT,
        .event = event,
        .ts = swd_clock_wall(a->reg->clock),
        .subject = a,
        .pack = pack_agent_cb,
        .prev = prev,
    };
    swd_bus_publish(a->reg->bus, &ev);
}

static void update_rankings(swd_agent_t *a, bool eligible) {
    swd_agents_t *r = a->reg;
    for (uint32_t i = 0; i < a->nslots; i++) {
        swd_agent_slot_t *s = &a->slots[i];
        swd_heap_t *h = &r->types[s->type].agents;
        if (!eligible) {
            swd_heap_remove(h, &s->node);
            continue;
        }
        double parts[4];
        swd_heap_update(h, &s->node, rank_key(a, swd_agent_health(a, (int)s->type, parts)));
    }
    a->eligible = eligible;
}

void swd_agent_refresh(swd_agent_t *a) {
    swd_agents_t *r = a->reg;
    bool eligible = can_take(a);
    update_rankings(a, eligible);
    swd_agent_state_t st = swd_agent_state(a);
    if (st != a->state) {
        swd_agent_state_t prev = a->state;
        r->count[prev]--;
        r->count[st]++;
        a->state = st;
        publish(a, state_names[st], state_names[prev]);
    }
    if (eligible && r->cbs.ready != NULL) {
        r->cbs.ready(a, r->cbs.data);
    }
    if (a->draining && !a->dead && a->inflight == 0 && !a->drained_told) {
        a->drained_told = true;
        if (a->ops->drained != NULL) {
            a->ops->drained(a);
        }
    }
}

// ---- types ----

static void add_slot(swd_agent_t *a, uint32_t type) {
    a->slots = swd_xrealloc(a->slots, (a->nslots + 1) * sizeof(*a->slots));
    // The array moved: heap entries point at nodes inside it, so re-seat them.
    for (uint32_t i = 0; i < a->nslots; i++) {
        swd_agent_slot_t *s = &a->slots[i];
        if (swd_heap_contains(&s->node)) {
            swd_heap_moved(&a->reg->types[s->type].agents, &s->node);
        }
    }
    swd_agent_slot_t *s = &a->slots[a->nslots++];
    memset(s, 0, sizeof(*s));
    swd_heap_node_init(&s->node);
    s->agent = a;
    s->type = type;
}

int swd_agents_type(swd_agents_t *r, const char *name, size_t len) {
    uintptr_t id = (uintptr_t)swd_strmap_get(&r->type_ids, name, len);
    if (id != 0) {
        return (int)(id - 1);
    }
    if (r->ntypes >= r->cfg.max_types) {
        return -1;
    }
    r->types = swd_xrealloc(r->types, (r->ntypes + 1) * sizeof(*r->types));
    swd_type_t *t = &r->types[r->ntypes];
    t->name = swd_xstrndup(name, len);
    swd_heap_init(&t->agents);
    uint32_t type = r->ntypes++;
    swd_strmap_put(&r->type_ids, name, len, (void *)(uintptr_t)(type + 1));
    // Agents that run everything can run this type too.
    for (swd_agent_t *a = r->head; a != NULL; a = a->next) {
        if (a->wildcard && !a->dead) {
            add_slot(a, type);
            update_rankings(a, a->eligible);
        }
    }
    return (int)type;
}

swd_agent_t *swd_agents_best(const swd_agents_t *r, uint32_t type, const swd_agent_t *avoid) {
    if (type >= r->ntypes) {
        return NULL;
    }
    const swd_heap_t *h = &r->types[type].agents;
    swd_heap_node_t *top = swd_heap_top(h);
    if (top == NULL) {
        return NULL;
    }
    swd_agent_t *best = SLOT_OF(top)->agent;
    if (best != avoid) {
        return best;
    }
    // The runner-up is one of the top's children.
    const swd_heap_entry_t *second = NULL;
    for (size_t i = 1; i <= SWD_HEAP_ARITY; i++) {
        const swd_heap_entry_t *c = swd_heap_at(h, i);
        if (c != NULL && (second == NULL || swd_heap_key_less(c->key, second->key))) {
            second = c;
        }
    }
    return second != NULL ? SLOT_OF(second->node)->agent : best;
}

bool swd_agents_can_run(const swd_agents_t *r, uint32_t type) {
    for (swd_agent_t *a = r->head; a != NULL; a = a->next) {
        if (!a->dead && !a->draining && slot_for(a, (int)type) != NULL) {
            return true;
        }
    }
    return false;
}

// ---- lifecycle ----

static void on_cooldown_end(swd_timer_t *t) {
    swd_agent_t *a = t->data;
    a->cooldown_until_ms = 0;
    if (a->reason != NULL && strcmp(a->reason, "retry_after") == 0) {
        a->reason = a->draining ? "draining" : a->degraded ? "missed_heartbeats" : NULL;
    }
    swd_agent_refresh(a);
}

static void on_retention_end(swd_timer_t *t) {
    swd_agent_t *a = t->data;
    swd_agents_remove(a->reg, a);
}

swd_agent_t *swd_agents_add(swd_agents_t *r, const swd_agent_spec_t *spec,
                            const swd_transport_ops_t *ops, void *link) {
    swd_agent_t *a = swd_xcalloc(1, sizeof(*a));
    a->reg = r;
    a->seq = r->next_seq++;
    swd_id_format('a', a->seq, a->id);
    a->name = swd_xstrdup(spec->name);
    a->pool = swd_xstrdup(spec->pool ? spec->pool : "default");
    if (spec->labels != NULL) {
        a->labels = swd_xmalloc(spec->labels_len);
        memcpy(a->labels, spec->labels, spec->labels_len);
        a->labels_len = spec->labels_len;
    }
    a->ops = ops;
    a->link = link;
    a->max_concurrency = spec->max_concurrency ? spec->max_concurrency : 1;
    a->win_ok = swd_xcalloc(r->cfg.window, 1);
    a->win_latency = swd_xcalloc(r->cfg.window, sizeof(uint32_t));
    a->registered_ms = a->last_seen_ms = swd_clock_wall(r->clock);
    swd_timer_init(r->clock, &a->cooldown_timer, on_cooldown_end, a);
    swd_timer_init(r->clock, &a->retention_timer, on_retention_end, a);
    uint32_t n = spec->caps ? spec->ncaps : 0;
    a->caps = swd_xcalloc(n ? n : 1, sizeof(char *));
    for (uint32_t i = 0; i < n; i++) {
        a->caps[a->ncaps++] = swd_xstrdup(spec->caps[i]);
        a->wildcard |= strcmp(spec->caps[i], "*") == 0;
    }
    if (n == 0) {
        a->caps[a->ncaps++] = swd_xstrdup("*");
        a->wildcard = true;
    }
    if (a->wildcard) {
        for (uint32_t t = 0; t < r->ntypes; t++) {
            add_slot(a, t);
        }
    } else {
        for (uint32_t i = 0; i < a->ncaps; i++) {
            int t = swd_agents_type(r, a->caps[i], strlen(a->caps[i]));
            if (t >= 0 && slot_for(a, t) == NULL) {
                add_slot(a, (uint32_t)t);
            }
        }
    }
    a->prev = r->tail;
    if (r->tail) {
        r->tail->next = a;
    } else {
        r->head = a;
    }
    r->tail = a;
    swd_u64map_put(&r->by_seq, a->seq, a);
    r->total++;
    a->state = SWD_AGENT_IDLE;
    r->count[SWD_AGENT_IDLE]++;
    publish(a, "registered", NULL);
    swd_log_info("agents", "agent registered", "{s:s,s:s,s:s,s:s,s:i}", "agent", a->id, "name",
                 a->name, "pool", a->pool, "transport", ops->name, "max_concurrency",
                 (int)a->max_concurrency);
    swd_agent_refresh(a);
    return a;
}

void swd_agents_remove(swd_agents_t *r, swd_agent_t *a) {
    update_rankings(a, false);
    swd_timer_stop(&a->cooldown_timer);
    swd_timer_stop(&a->retention_timer);
    swd_u64map_del(&r->by_seq, a->seq);
    if (a->prev) {
        a->prev->next = a->next;
    } else {
        r->head = a->next;
    }
    if (a->next) {
        a->next->prev = a->prev;
    } else {
        r->tail = a->prev;
    }
    r->count[a->state]--;
    r->total--;
    publish(a, "deregistered", state_names[a->state]);
    if (a->ops->release != NULL) {
        a->ops->release(a);
    }
    agent_free(a);
}

swd_agent_t *swd_agents_find(const swd_agents_t *r, const char *id, size_t len) {
    uint64_t seq;
    return swd_id_parse('a', id, len, &seq) ? swd_u64map_get(&r->by_seq, seq) : NULL;
}

void swd_agent_started(swd_agent_t *a, uint32_t type) {
    a->inflight++;
    a->last_type = type;
    a->has_last_type = true;
    swd_agent_refresh(a);
}

static void window_push(swd_agent_t *a, bool ok, int64_t latency_ms) {
    uint32_t w = a->reg->cfg.window;
    uint32_t lat = latency_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)latency_ms;
    if (a->win_len == w) {
        a->win_ok_sum -= a->win_ok[a->win_head];
        a->win_latency_sum -= a->win_latency[a->win_head];
    } else {
        a->win_len++;
    }
    a->win_ok[a->win_head] = ok;
    a->win_latency[a->win_head] = lat;
    a->win_ok_sum += ok;
    a->win_latency_sum += lat;
    a->win_head = (a->win_head + 1) % w;
}

void swd_agent_finished(swd_agent_t *a, uint32_t type, bool ok, int64_t latency_ms) {
    if (a->inflight > 0) {
        a->inflight--;
    }
    if (latency_ms >= 0) {
        if (ok) {
            a->completed++;
        } else {
            a->failed++;
        }
        window_push(a, ok, latency_ms);
        double alpha = 2.0 / (a->reg->cfg.window + 1.0);
        a->latency_ewma_ms =
            a->completed + a->failed == 1
                ? (double)latency_ms
                : a->latency_ewma_ms + alpha * ((double)latency_ms - a->latency_ewma_ms);
        swd_agent_slot_t *s = (swd_agent_slot_t *)slot_for(a, (int)type);
        if (s != NULL) {
            s->ok_ewma = s->samples ? s->ok_ewma + alpha * ((ok ? 1.0 : 0.0) - s->ok_ewma)
                                    : (ok ? 1.0 : 0.0);
            s->latency_ewma_ms =
                s->samples ? s->latency_ewma_ms + alpha * ((double)latency_ms - s->latency_ewma_ms)
                           : (double)latency_ms;
            s->samples++;
        }
    }
    swd_agent_refresh(a);
}

void swd_agent_drain(swd_agent_t *a) {
    if (a->dead || a->draining) {
        return;
    }
    a->draining = true;
    a->reason = "draining";
    swd_agent_refresh(a);
}

void swd_agent_kill(swd_agent_t *a, const char *reason) {
    if (a->dead) {
        return;
    }
    swd_agents_t *r = a->reg;
    a->dead = true;
    a->reason = reason;
    a->dead_ms = swd_clock_wall(r->clock);
    swd_timer_stop(&a->cooldown_timer);
    a->cooldown_until_ms = 0;
    swd_log_warn("agents", "agent dead", "{s:s,s:s,s:s,s:i}", "agent", a->id, "name", a->name,
                 "reason", reason, "inflight", (int)a->inflight);
    swd_agent_refresh(a);
    if (r->cbs.lost != NULL) {
        r->cbs.lost(a, r->cbs.data);
    }
    a->inflight = 0;
    swd_timer_start(&a->retention_timer, r->cfg.dead_retention_ms);
}

void swd_agent_cooldown(swd_agent_t *a, int64_t until_wall_ms) {
    if (a->dead || until_wall_ms <= a->cooldown_until_ms) {
        return;
    }
    a->cooldown_until_ms = until_wall_ms;
    if (a->ejected_until_ms == 0 && !a->draining) {
        a->reason = "retry_after"; // an ejection's reason wins (§2.1)
    }
    swd_timer_start(&a->cooldown_timer, until_wall_ms - swd_clock_wall(a->reg->clock));
    swd_agent_refresh(a);
}

void swd_agent_set_max_concurrency(swd_agent_t *a, uint32_t n) {
    if (n == 0 || n == a->max_concurrency) {
        return;
    }
    a->max_concurrency = n;
    if (a->ops->configure != NULL) {
        a->ops->configure(a, n);
    }
    swd_agent_refresh(a);
}

void swd_agent_complete(swd_agent_t *a, uint64_t cookie, const swd_outcome_t *o) {
    swd_agents_t *r = a->reg;
    a->last_seen_ms = swd_clock_wall(r->clock);
    if (r->cbs.complete != NULL) {
        r->cbs.complete(a, cookie, o, r->cbs.data);
    }
}

// ---- wire form ----

void swd_agent_pack(const swd_agent_t *a, msgpack_packer *pk) {
    double parts[4];
    double health = swd_agent_health(a, a->has_last_type ? (int)a->last_type : -1, parts);
    msgpack_pack_map(pk, 19);
    swd_pack_kv_str(pk, "agent_id", a->id);
    swd_pack_kv_str(pk, "name", a->name);
    swd_pack_kv_str(pk, "transport", a->ops->name);
    swd_pack_kv_str(pk, "pool", a->pool);
    swd_pack_kv_str(pk, "state", state_names[swd_agent_state(a)]);
    swd_pack_str(pk, "capabilities");
    msgpack_pack_array(pk, a->ncaps);
    for (uint32_t i = 0; i < a->ncaps; i++) {
        swd_pack_str(pk, a->caps[i]);
    }
    swd_pack_kv_u64(pk, "max_concurrency", a->max_concurrency);
    swd_pack_kv_u64(pk, "inflight", a->inflight);
    swd_pack_kv_f64(pk, "health", health);
    swd_pack_str(pk, "health_parts");
    msgpack_pack_map(pk, 4);
    swd_pack_kv_f64(pk, "success", parts[0]);
    swd_pack_kv_f64(pk, "latency", parts[1]);
    swd_pack_kv_f64(pk, "load", parts[2]);
    swd_pack_kv_f64(pk, "affinity", parts[3]);
    swd_pack_kv_str(pk, "circuit", circuit_names[a->circuit]);
    swd_pack_kv_u64(pk, "completed", a->completed);
    swd_pack_kv_u64(pk, "failed", a->failed);
    swd_pack_kv_f64(pk, "latency_ewma_ms", a->latency_ewma_ms);
    swd_pack_kv_ms(pk, "ejected_until_ms", a->ejected_until_ms);
    swd_pack_kv_ms(pk, "cooldown_until_ms", a->cooldown_until_ms);
    swd_pack_kv_str(pk, "reason", a->reason);
    swd_pack_str(pk, "labels");
    if (a->labels != NULL) {
        swd_pack_raw(pk, a->labels, a->labels_len);
    } else {
        msgpack_pack_map(pk, 0);
    }
    swd_pack_kv_i64(pk, "registered_ms", a->registered_ms);
}
