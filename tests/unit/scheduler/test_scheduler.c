// Tests of the scheduler (scheduler/scheduler.h) with the agent registry
// (agents/agent.h): priority order, aging, health-scored agent choice,
// retries with backoff and jitter, retry_after cooldowns, fencing, agent
// loss, cancellation, dependencies, admission, retention, transports that
// answer or die inside the scheduler's own calls, and seeded simulations
// (10,000 tasks on 20 simulated agents; 5,000 with faults injected).
//
// Nothing here opens a socket or sleeps: the scheduler runs on a virtual
// clock that the tests move by hand (swd_clock_advance) or timer by timer
// (swd_clock_step). Agents are either the scripted fake transport
// (fake_agent.h), which records what it was asked and answers when the test
// says so, or the in-process simulated agent (agents/sim_agent.h).
// What a test observes is what a user would: task events on the bus
// (decoded from their wire form), a task's fields, an agent's fields.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agent.h"
#include "agents/sim_agent.h"
#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/encoder.h"
#include "proto/params.h"
#include "runtime/bus.h"
#include "runtime/clock.h"
#include "runtime/log.h"
#include "runtime/rng.h"
#include "scheduler/scheduler.h"
#include "tests/unit/scheduler/fake_agent.h"
#include "tests/unit/leak_check.h"

#define START_WALL INT64_C(1700000000000)
#define EPS 1e-9

// ---- harness ----

/// A task's id ("t-7") and its last attempt's agent's id ("" before any),
/// from a small ring of buffers so one assertion may use several.
static const char *tid(const swd_task_t *t) {
    static char ring[8][SWD_ID_MAX];
    static unsigned next;
    return swd_task_id(t, ring[next++ % 8]);
}

static const char *aid(const swd_task_t *t) {
    static char ring[8][SWD_ID_MAX];
    static unsigned next;
    const char *id = swd_task_agent_id(t, ring[next % 8]);
    next++;
    return id != NULL ? id : "";
}

/// One task event as a subscriber outside the process would see it.
typedef struct ev_rec {
    char event[16];
    char task_id[24];
    char agent_id[24];
    char error[32];
    char deferred_reason[32];
    uint32_t attempts;
    int64_t now; ///< monotonic virtual time of the event
} ev_rec_t;

static struct {
    swd_clock_t clock;
    swd_bus_t bus;
    swd_agents_t agents;
    swd_sched_t sched;
    swd_bus_sub_t *sub;
    bool record; ///< keep every event in `ev`
    ev_rec_t *ev;
    size_t nev, cap;
    // Simulation counters (record == false).
    uint8_t *succeeded; ///< per task seq: how many `succeeded` events
    uint8_t *terminal;  ///< per task seq: how many terminal events
    size_t nsucceeded;
    uint64_t run_hash; ///< FNV-1a over (task, agent, time) of `running` events
    uint64_t nrunning;
    swd_buf_t buf;
} H;

static void copy_str(char *dst, size_t cap, const msgpack_object *o) {
    dst[0] = '\0';
    if (o->type == MSGPACK_OBJECT_STR) {
        size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
        memcpy(dst, o->via.str.ptr, n);
        dst[n] = '\0';
    }
}

static bool key_is(const msgpack_object *k, const char *name) {
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name) &&
           memcmp(k->via.str.ptr, name, k->via.str.size) == 0;
}

// Decodes the event's wire form (the Task object of DESIGN.md §2).
static void decode_task_event(const swd_event_t *ev, ev_rec_t *out) {
    memset(out, 0, sizeof(*out));
    snprintf(out->event, sizeof(out->event), "%s", ev->event);
    out->now = swd_clock_now(&H.clock);
    swd_buf_reset(&H.buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &H.buf, swd_buf_write_cb);
    cr_assert_not_null(ev->pack);
    ev->pack(ev, &pk);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    cr_assert_eq(msgpack_unpack_next(&u, H.buf.data, H.buf.len, &off), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(u.data.type, MSGPACK_OBJECT_MAP);
    const msgpack_object_map *m = &u.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        const msgpack_object *v = &m->ptr[i].val;
        if (key_is(k, "task_id")) {
            copy_str(out->task_id, sizeof(out->task_id), v);
        } else if (key_is(k, "agent_id")) {
            copy_str(out->agent_id, sizeof(out->agent_id), v);
        } else if (key_is(k, "deferred_reason")) {
            copy_str(out->deferred_reason, sizeof(out->deferred_reason), v);
        } else if (key_is(k, "attempts") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            out->attempts = (uint32_t)v->via.u64;
        } else if (key_is(k, "error") && v->type == MSGPACK_OBJECT_MAP) {
            for (uint32_t j = 0; j < v->via.map.size; j++) {
                if (key_is(&v->via.map.ptr[j].key, "code")) {
                    copy_str(out->error, sizeof(out->error), &v->via.map.ptr[j].val);
                }
            }
        }
    }
    msgpack_unpacked_destroy(&u);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static uint64_t seq_of(const char *task_id) {
    cr_assert(task_id[0] == 't' && task_id[1] == '-', "task id %s", task_id);
    return strtoull(task_id + 2, NULL, 10);
}

static void on_task_event(const swd_event_t *ev, void *data) {
    ev_rec_t r;
    decode_task_event(ev, &r);
    if (H.record) {
        if (H.nev == H.cap) {
            H.cap = H.cap ? H.cap * 2 : 64;
            H.ev = swd_xrealloc(H.ev, H.cap * sizeof(*H.ev));
        }
        H.ev[H.nev++] = r;
        return;
    }
    if (strcmp(r.event, "running") == 0) {
        H.nrunning++;
        H.run_hash = fnv(H.run_hash, r.task_id, strlen(r.task_id) + 1);
        H.run_hash = fnv(H.run_hash, r.agent_id, strlen(r.agent_id) + 1);
        H.run_hash = fnv(H.run_hash, &r.now, sizeof(r.now));
    } else if (strcmp(r.event, "succeeded") == 0 || strcmp(r.event, "failed") == 0 ||
               strcmp(r.event, "cancelled") == 0) {
        uint64_t seq = seq_of(r.task_id);
        cr_assert_lt(seq, H.nsucceeded);
        H.terminal[seq]++;
        H.succeeded[seq] += r.event[0] == 's';
        H.run_hash = fnv(H.run_hash, r.event, strlen(r.event) + 1);
        H.run_hash = fnv(H.run_hash, r.task_id, strlen(r.task_id) + 1);
        H.run_hash = fnv(H.run_hash, &r.now, sizeof(r.now));
    }
}

static swd_sched_config_t default_cfg(void) {
    return (swd_sched_config_t){
        .max_queued = 100000,
        .default_timeout_ms = 60000,
        .default_max_retries = 3,
        .backoff_base_ms = 200,
        .backoff_max_ms = 30000,
        .aging_ms = 10000,
        .retain_finished_ms = 60000,
        .seed = 42,
    };
}

static void setup_with(const swd_sched_config_t *cfg, bool record) {
    memset(&H, 0, sizeof(H));
    swd_log_setup(SWD_LOG_ERROR, 0, NULL, 0);
    swd_log_set_stderr(false);
    swd_buf_init(&H.buf);
    swd_clock_init_virtual(&H.clock, START_WALL);
    swd_bus_init(&H.bus);
    // The two only store each other's pointers: scheduler first (it needs
    // the registry's address), then the registry with its callbacks.
    swd_sched_init(&H.sched, &H.clock, &H.bus, &H.agents, cfg);
    swd_agents_cbs_t cbs = swd_sched_agent_callbacks(&H.sched);
    swd_agents_config_t acfg = {
        .window = 50,
        .target_latency_ms = 3000,
        .dead_retention_ms = 300000,
    };
    swd_agents_init(&H.agents, &H.clock, &H.bus, &acfg, &cbs);
    H.record = record;
    H.run_hash = UINT64_C(0xcbf29ce484222325);
    H.sub = swd_bus_subscribe(&H.bus, SWD_TOPIC_BIT(SWD_TOPIC_TASK), on_task_event, NULL);
}

static void setup(void) {
    swd_sched_config_t cfg = default_cfg();
    setup_with(&cfg, true);
}

static void teardown(void) {
    swd_bus_unsubscribe(&H.bus, H.sub);
    swd_sched_close(&H.sched);
    swd_agents_close(&H.agents);
    // Closing the scheduler and the registry stops every timer they own:
    // none may be left pointing into freed memory.
    cr_assert_eq(swd_clock_next_due(&H.clock), -1, "a timer outlived its owner");
    swd_bus_close(&H.bus);
    swd_clock_close(&H.clock);
    swd_buf_close(&H.buf);
    free(H.ev);
    free(H.succeeded);
    free(H.terminal);
    swd_log_shutdown();
    memset(&H, 0, sizeof(H));
}

static swd_task_spec_t spec_of(const char *type, int prio) {
    return (swd_task_spec_t){
        .type = type,
        .type_len = strlen(type),
        .priority = prio,
        .estimated_tokens = 1000,
        .max_retries = 3,
    };
}

static swd_task_t *submit_spec(const swd_task_spec_t *spec) {
    swd_task_t *t = NULL;
    swd_submit_result_t r = swd_sched_submit(&H.sched, spec, &t);
    cr_assert_eq(r, SWD_SUBMIT_OK, "submit: %d", (int)r);
    cr_assert_not_null(t);
    return t;
}

static swd_task_t *submit(const char *type, int prio) {
    swd_task_spec_t spec = spec_of(type, prio);
    return submit_spec(&spec);
}

/// Submits a task that waits for the `nafter` tasks whose seqs are `after`.
static swd_task_t *submit_after(const char *type, int prio, const uint64_t *after,
                                uint32_t nafter) {
    swd_task_spec_t spec = spec_of(type, prio);
    spec.after = after;
    spec.nafter = nafter;
    return submit_spec(&spec);
}

/// Runs everything due now (dispatch passes included), time unchanged.
static void turn(void) {
    swd_clock_advance(&H.clock, 0);
}

static int64_t now(void) {
    return swd_clock_now(&H.clock);
}

/// Steps timer by timer until `l` has been handed `n` runs in all.
static void step_until_runs(fake_link_t *l, size_t n, int64_t limit_ms) {
    turn();
    while (l->nruns < n) {
        cr_assert(swd_clock_step(&H.clock), "no timer left with %zu of %zu runs", l->nruns, n);
        cr_assert_leq(now(), limit_ms, "run %zu not started by %lld ms", n, (long long)limit_ms);
    }
}

static int type_index(const char *name) {
    int t = swd_agents_type(&H.agents, name, strlen(name));
    cr_assert_geq(t, 0);
    return t;
}

static const char *state_of(const swd_task_t *t) {
    return swd_task_state_names[t->state];
}

/// Index of the first recorded event `event` of `task_id` at or after
/// `from`, or -1.
static long find_event(const char *task_id, const char *event, size_t from) {
    for (size_t i = from; i < H.nev; i++) {
        if (strcmp(H.ev[i].task_id, task_id) == 0 && strcmp(H.ev[i].event, event) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static size_t count_events(const char *task_id, const char *event) {
    size_t n = 0;
    for (size_t i = 0; i < H.nev; i++) {
        if (strcmp(H.ev[i].task_id, task_id) == 0 && strcmp(H.ev[i].event, event) == 0) {
            n++;
        }
    }
    return n;
}

static void assert_result_is(const swd_task_t *t, const char *output) {
    swd_buf_t b;
    swd_buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, swd_buf_write_cb);
    swd_pack_str(&pk, output);
    cr_assert_not_null(t->more->result, "task %s has no result", tid(t));
    cr_assert_eq(t->more->result_len, b.len);
    cr_assert_eq(memcmp(t->more->result, b.data, b.len), 0, "task %s: result is not \"%s\"", tid(t),
                 output);
    swd_buf_close(&b);
}

// ---- priority and aging ----

Test(scheduler, priority_order_then_fifo_within_a_level) {
    setup();
    swd_task_t *low = submit("work", SWD_PRIO_LOW);
    swd_task_t *med1 = submit("work", SWD_PRIO_MEDIUM);
    swd_task_t *high = submit("work", SWD_PRIO_HIGH);
    swd_task_t *crit = submit("work", SWD_PRIO_CRITICAL);
    swd_task_t *med2 = submit("work", SWD_PRIO_MEDIUM);
    swd_task_t *med3 = submit("work", SWD_PRIO_MEDIUM);
    turn();
    // No agent: everything waits, nothing is lost.
    cr_assert_eq(H.sched.count[SWD_TASK_QUEUED], 6);
    cr_assert_eq(H.sched.count[SWD_TASK_RUNNING], 0);

    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 1);
    for (size_t i = 1; i <= 6; i++) {
        step_until_runs(l, i, 10000);
        cr_assert_eq(H.sched.count[SWD_TASK_RUNNING], 1, "max_concurrency 1 is respected");
        swd_clock_advance(&H.clock, 100);
        fake_ok(l, &l->runs[i - 1], "done");
    }
    turn();

    const swd_task_t *want[] = {crit, high, med1, med2, med3, low};
    size_t k = 0;
    for (size_t i = 0; i < H.nev; i++) {
        if (strcmp(H.ev[i].event, "running") == 0) {
            cr_assert_lt(k, 6);
            cr_assert_str_eq(H.ev[i].task_id, tid(want[k]), "start #%zu: got %s, want %s (%s)", k,
                             H.ev[i].task_id, tid(want[k]), swd_priority_names[want[k]->priority]);
            k++;
        }
    }
    cr_assert_eq(k, 6);
    for (size_t i = 0; i < 6; i++) {
        cr_assert_str_eq(state_of(want[i]), "succeeded");
    }
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, aging_keeps_a_low_task_from_starving) {
    swd_sched_config_t cfg = default_cfg();
    cfg.aging_ms = 1000;
    setup_with(&cfg, true);
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 1);

    enum { MAXC = 64 };
    swd_task_t *crit[MAXC];
    int64_t crit_at[MAXC];
    size_t ncrit = 0;
    crit_at[ncrit] = now();
    crit[ncrit++] = submit("work", SWD_PRIO_CRITICAL);
    swd_task_t *low = submit("work", SWD_PRIO_LOW);
    // Criticals arrive every 250 ms, twice as fast as the one slot serves
    // them (500 ms each): without aging the low task would wait forever.
    for (int64_t t = 0; t < 12000; t += 250) {
        if (t > 0) {
            cr_assert_lt(ncrit, MAXC);
            crit_at[ncrit] = now();
            crit[ncrit++] = submit("work", SWD_PRIO_CRITICAL);
        }
        fake_run_t *r = fake_pending(l);
        if (r != NULL && now() - r->at_ms >= 500) {
            fake_ok(l, r, "done");
        }
        swd_clock_advance(&H.clock, 250);
    }

    long low_start = find_event(tid(low), "running", 0);
    cr_assert_geq(low_start, 0, "the low task never started");
    size_t later_started = 0;
    for (size_t i = 0; i < ncrit; i++) {
        long s = find_event(tid(crit[i]), "running", 0);
        if (crit_at[i] > 3 * cfg.aging_ms) {
            // Submitted more than 3 × aging_ms after the low task: it must
            // not overtake it.
            cr_assert(s < 0 || s > low_start,
                      "critical submitted at %lld ms started before the low",
                      (long long)crit_at[i]);
            later_started += s >= 0;
        } else if (crit_at[i] < 3 * cfg.aging_ms) {
            // Submitted within 3 × aging_ms of the low task: priority wins.
            cr_assert(s >= 0 && s < low_start, "critical submitted at %lld ms should precede low",
                      (long long)crit_at[i]);
        }
    }
    cr_assert_gt(later_started, 0, "the scenario must keep criticals competing after the low");
    teardown();
    ASSERT_NO_LEAKS();
}

// ---- health ----

Test(scheduler, health_of_a_new_idle_agent_is_neutral) {
    setup();
    int type = type_index("work");
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 2);
    double parts[4];
    const double want[4] = {0.2, 0.15, 0.2, 0.05};
    double h = swd_agent_health(l->agent, type, parts);
    cr_assert_float_eq(h, 0.6, EPS);
    for (int i = 0; i < 4; i++) {
        cr_assert_float_eq(parts[i], want[i], EPS, "part %d: %f", i, parts[i]);
    }
    // With no type at all (agent.list before any task) the same.
    h = swd_agent_health(l->agent, -1, parts);
    cr_assert_float_eq(h, 0.6, EPS);
    cr_assert_float_eq(parts[0] + parts[1] + parts[2] + parts[3], h, EPS);
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, health_latency_part_after_successes_at_half_target) {
    setup();
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 1);
    for (size_t i = 1; i <= 3; i++) {
        submit("work", SWD_PRIO_MEDIUM);
        step_until_runs(l, i, now() + 1000);
        swd_clock_advance(&H.clock, 1500);
        fake_ok(l, &l->runs[i - 1], "done");
    }
    turn();
    double parts[4];
    double h = swd_agent_health(l->agent, type_index("work"), parts);
    cr_assert_float_eq(parts[0], 0.4, EPS, "success part %f", parts[0]);
    cr_assert_float_eq(parts[1], 0.15, EPS, "latency part %f", parts[1]);
    cr_assert_float_eq(parts[2], 0.2, EPS, "load part %f", parts[2]);
    cr_assert_float_eq(parts[3], 0.1, EPS, "affinity part %f", parts[3]);
    cr_assert_float_eq(h, 0.85, EPS);
    cr_assert_float_eq(l->agent->latency_ewma_ms, 1500, EPS);
    cr_assert_eq(l->agent->completed, 3);
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, health_load_part_falls_as_inflight_grows) {
    setup();
    int type = type_index("work");
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 4);
    double parts[4];
    swd_agent_health(l->agent, type, parts);
    cr_assert_float_eq(parts[2], 0.2, EPS);
    double prev = parts[2];
    for (uint32_t k = 1; k <= 4; k++) {
        submit("work", SWD_PRIO_MEDIUM);
        step_until_runs(l, k, now() + 1000);
        cr_assert_eq(l->agent->inflight, k);
        swd_agent_health(l->agent, type, parts);
        cr_assert_float_eq(parts[2], 0.2 * (1.0 - k / 4.0), EPS, "load part at %u: %f", k,
                           parts[2]);
        cr_assert_lt(parts[2], prev);
        prev = parts[2];
    }
    cr_assert_str_eq(swd_agent_state_name(swd_agent_state(l->agent)), "busy");
    teardown();
    ASSERT_NO_LEAKS();
}

static void feed(swd_agent_t *a, uint32_t type, bool ok, int64_t latency_ms) {
    swd_agent_started(a, type);
    swd_agent_finished(a, type, ok, latency_ms);
}

Test(scheduler, best_agent_is_the_one_with_successes) {
    setup();
    int type = type_index("work");
    // The failing agent registers first, so a tie would go to it.
    fake_link_t *bad = fake_agent_add(&H.agents, &H.clock, "bad", "work", 1);
    fake_link_t *good = fake_agent_add(&H.agents, &H.clock, "good", "work", 1);
    for (int i = 0; i < 5; i++) {
        feed(bad->agent, (uint32_t)type, false, 200);
        feed(good->agent, (uint32_t)type, true, 200);
    }
    double pb[4], pg[4];
    cr_assert_lt(swd_agent_health(bad->agent, type, pb), swd_agent_health(good->agent, type, pg));
    cr_assert_eq(swd_agents_best(&H.agents, (uint32_t)type, NULL), good->agent);
    // And the live dispatch path uses that choice.
    swd_task_t *t = submit("work", SWD_PRIO_MEDIUM);
    turn();
    cr_assert_eq(good->nruns, 1);
    cr_assert_eq(bad->nruns, 0);
    cr_assert_str_eq(aid(t), good->agent->id);
    // With the good one full, the other is still better than nothing.
    cr_assert_eq(swd_agents_best(&H.agents, (uint32_t)type, NULL), bad->agent);
    teardown();
    ASSERT_NO_LEAKS();
}

// The argmax of health over agents that can take a task now, by brute force.
static double best_health(uint32_t type, const swd_agent_t *skip, const swd_agent_t **who) {
    double best = -1;
    *who = NULL;
    for (swd_agent_t *a = H.agents.head; a != NULL; a = a->next) {
        if (a == skip || a->dead || a->draining || a->inflight >= a->max_concurrency ||
            a->cooldown_until_ms != 0) {
            continue;
        }
        double parts[4];
        double h = swd_agent_health(a, (int)type, parts);
        if (h > best) {
            best = h;
            *who = a;
        }
    }
    return best;
}

static void assert_best_is_max(uint32_t type) {
    const swd_agent_t *who;
    double max = best_health(type, NULL, &who);
    swd_agent_t *b = swd_agents_best(&H.agents, type, NULL);
    cr_assert_not_null(b);
    cr_assert(!b->draining && !b->dead && b->inflight < b->max_concurrency);
    double parts[4];
    cr_assert_float_eq(swd_agent_health(b, (int)type, parts), max, 1e-12,
                       "best %s has %f, %s has %f", b->id, swd_agent_health(b, (int)type, parts),
                       who->id, max);
    // The runner-up, when the best is to be avoided (a retry).
    double second = best_health(type, b, &who);
    swd_agent_t *r = swd_agents_best(&H.agents, type, b);
    cr_assert_neq(r, b);
    cr_assert_float_eq(swd_agent_health(r, (int)type, parts), second, 1e-12,
                       "runner-up %s has %f, %s has %f", r->id,
                       swd_agent_health(r, (int)type, parts), who->id, second);
}

Test(scheduler, best_agent_stays_correct_with_10000_agents) {
    setup();
    enum { N = 10000 };
    uint32_t type = (uint32_t)type_index("work");
    swd_agent_t **all = swd_xcalloc(N, sizeof(*all));
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof(name), "w%d", i);
        all[i] = fake_agent_add_bare(&H.agents, name, "work", 2);
    }
    cr_assert_eq(H.agents.total, N);
    // All new and idle: equal scores, the oldest wins the tie.
    cr_assert_eq(swd_agents_best(&H.agents, type, NULL), all[0]);
    assert_best_is_max(type);

    swd_rng_t rng;
    swd_rng_seed(&rng, 7);
    for (int i = 0; i < N; i++) {
        uint64_t k = swd_rng_below(&rng, 6);
        for (uint64_t j = 0; j < k; j++) {
            feed(all[i], type, swd_rng_double(&rng) < 0.8, (int64_t)swd_rng_below(&rng, 4000));
        }
    }
    assert_best_is_max(type);
    // Keep changing the leader: it fails, takes a slot, or drains.
    for (int round = 0; round < 300; round++) {
        swd_agent_t *b = swd_agents_best(&H.agents, type, NULL);
        switch (round % 3) {
        case 0:
            feed(b, type, false, 5000);
            break;
        case 1:
            swd_agent_started(b, type);
            break;
        default:
            swd_agent_drain(b);
            break;
        }
        // Someone at random gets better or worse.
        swd_agent_t *x = all[swd_rng_below(&rng, N)];
        if (!x->draining && x->inflight < x->max_concurrency) {
            feed(x, type, swd_rng_double(&rng) < 0.5, (int64_t)swd_rng_below(&rng, 3000));
        }
        assert_best_is_max(type);
    }
    free(all);
    teardown();
    ASSERT_NO_LEAKS();
}

// ---- retries, backoff, jitter ----

Test(scheduler, retryable_failures_back_off_with_full_jitter) {
    setup();
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 1);
    swd_task_spec_t spec = spec_of("work", SWD_PRIO_MEDIUM);
    spec.max_retries = 4;
    swd_task_t *t = submit_spec(&spec);
    int64_t failed_at = 0;
    for (uint32_t n = 1; n <= 5; n++) {
        step_until_runs(l, n, now() + 60000);
        fake_run_t *r = &l->runs[n - 1];
        cr_assert_eq(r->attempt, n);
        cr_assert_str_eq(r->task_id, tid(t));
        if (n > 1) {
            // The delay after attempt n-1 failed: [0, min(max, base × 2^(n-2))].
            int64_t cap = 200LL << (n - 2);
            cap = cap < 30000 ? cap : 30000;
            int64_t delay = r->at_ms - failed_at;
            cr_assert(delay >= 0 && delay <= cap, "delay before attempt %u: %lld, cap %lld", n,
                      (long long)delay, (long long)cap);
        }
        failed_at = now();
        fake_fail(l, r, "flaky", true, 0);
        if (n < 5) {
            cr_assert_str_eq(state_of(t), "queued", "after attempt %u", n);
            cr_assert_str_eq(t->more->error_code, "flaky");
        }
    }
    turn();
    cr_assert_str_eq(state_of(t), "failed");
    cr_assert_eq(t->attempts, 5);
    cr_assert_str_eq(t->more->error_code, "flaky");
    cr_assert_eq(H.sched.stats.retries, 4);
    cr_assert_eq(H.sched.stats.failed, 1);
    cr_assert_eq(count_events(tid(t), "failed"), 1);
    swd_clock_advance(&H.clock, 30000);
    cr_assert_eq(l->nruns, 5, "no attempt after the task failed");
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, retry_delays_are_spread_not_synchronized) {
    setup();
    enum { N = 200 };
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, N);
    for (int i = 0; i < N; i++) {
        swd_task_spec_t spec = spec_of("work", SWD_PRIO_MEDIUM);
        spec.max_retries = 1;
        submit_spec(&spec);
    }
    step_until_runs(l, N, now() + 1000);
    int64_t failed_at = now();
    for (int i = 0; i < N; i++) {
        fake_fail(l, &l->runs[i], "flaky", true, 0);
    }
    step_until_runs(l, 2 * N, now() + 1000);
    int64_t lo = INT64_MAX, hi = -1;
    bool seen[201] = {false};
    int distinct = 0;
    for (int i = N; i < 2 * N; i++) {
        int64_t d = l->runs[i].at_ms - failed_at;
        cr_assert(d >= 0 && d <= 200, "delay %lld outside [0, 200]", (long long)d);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        if (!seen[d]) {
            seen[d] = true;
            distinct++;
        }
    }
    // Full jitter: the retries of a burst of failures spread over the window.
    cr_assert_leq(lo, 20, "shortest delay %lld", (long long)lo);
    cr_assert_geq(hi, 180, "longest delay %lld", (long long)hi);
    cr_assert_geq(distinct, 60, "only %d distinct delays", distinct);
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, retry_after_delays_the_retry_and_cools_the_agent_down) {
    setup();
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 2);
    swd_agent_t *a = l->agent;
    swd_task_t *t = submit("work", SWD_PRIO_MEDIUM);
    step_until_runs(l, 1, 1000);
    int64_t failed_at = now();
    fake_fail(l, &l->runs[0], "rate_limited", true, 5000);
    turn();
    cr_assert_str_eq(state_of(t), "queued");
    cr_assert_eq(a->cooldown_until_ms, swd_clock_wall(&H.clock) + 5000);
    cr_assert_str_eq(a->reason, "retry_after");
    cr_assert_str_eq(swd_agent_state_name(swd_agent_state(a)), "idle", "state unchanged");
    // Meanwhile the agent takes no new task either.
    swd_task_t *other = submit("work", SWD_PRIO_CRITICAL);
    swd_clock_advance(&H.clock, 4999);
    cr_assert_eq(l->nruns, 1, "nothing ran during the cooldown");
    cr_assert_str_eq(state_of(other), "queued");
    cr_assert_neq(a->cooldown_until_ms, 0);
    cr_assert_str_eq(a->reason, "retry_after");

    step_until_runs(l, 3, failed_at + 6000);
    cr_assert_eq(a->cooldown_until_ms, 0, "cooldown cleared");
    cr_assert_null(a->reason, "reason cleared");
    fake_run_t *r2 = fake_find(l, tid(t), 2);
    cr_assert_not_null(r2);
    cr_assert_geq(r2->at_ms - failed_at, 5000);
    cr_assert_str_eq(state_of(other), "running");
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, non_retryable_error_fails_at_once) {
    setup();
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 1);
    swd_task_t *t = submit("work", SWD_PRIO_MEDIUM);
    step_until_runs(l, 1, 1000);
    fake_fail(l, &l->runs[0], "bad_input", false, 0);
    turn();
    cr_assert_str_eq(state_of(t), "failed");
    cr_assert_eq(t->attempts, 1);
    cr_assert_str_eq(t->more->error_code, "bad_input");
    cr_assert_eq(H.sched.stats.retries, 0);
    swd_clock_advance(&H.clock, 30000);
    cr_assert_eq(l->nruns, 1);
    teardown();
    ASSERT_NO_LEAKS();
}

// The Task as task.get packs it carries `result: nil`.
static void assert_packed_result_nil(const swd_task_t *t) {
    swd_buf_t b;
    swd_buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, swd_buf_write_cb);
    swd_sched_pack_task(&H.sched, t, SWD_TASK_VIEW_FULL, &pk);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    cr_assert_eq(msgpack_unpack_next(&up, b.data, b.len, NULL), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *r = swd_map_find(&up.data, "result");
    cr_assert_null(r, "result is not nil"); // swd_map_find: nil reads as absent
    bool has_key = false;
    for (uint32_t i = 0; i < up.data.via.map.size; i++) {
        has_key = has_key || swd_obj_streq(&up.data.via.map.ptr[i].key, "result");
    }
    cr_assert(has_key, "the Task has no result key");
    msgpack_unpacked_destroy(&up);
    swd_buf_close(&b);
}

Test(scheduler, a_nil_output_reads_back_as_nil_and_allocates_nothing) {
    setup();
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 1);
    swd_task_t *t = submit("work", SWD_PRIO_MEDIUM);
    step_until_runs(l, 1, 1000);
    const char nil = (char)0xc0;
    swd_outcome_t o = {.ok = true, .output = &nil, .output_len = 1, .tokens_used = 3};
    l->runs[0].answered = true;
    swd_agent_complete(l->agent, l->runs[0].cookie, &o);
    turn();
    cr_assert_str_eq(state_of(t), "succeeded");
    cr_assert_eq(t->tokens_used, 3);
    cr_assert_eq(t->more, &swd_task_no_more, "a nil output needs no record of its own");
    assert_packed_result_nil(t);
    teardown();
    ASSERT_NO_LEAKS();
}

// ---- fencing ----

Test(scheduler, a_late_answer_from_a_timed_out_attempt_is_ignored) {
    setup();
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 1);
    swd_task_spec_t spec = spec_of("work", SWD_PRIO_MEDIUM);
    spec.timeout_ms = 100;
    swd_task_t *t = submit_spec(&spec);
    step_until_runs(l, 1, 1000);
    uint64_t cookie1 = l->runs[0].cookie;
    cr_assert_eq(l->runs[0].timeout_ms, 100);

    swd_clock_advance(&H.clock, 100);
    cr_assert_eq(H.sched.stats.timeouts, 1);
    cr_assert_eq(l->ncancels, 1, "the timed-out attempt is cancelled at the agent");
    cr_assert_str_eq(l->cancels[0].task_id, tid(t));
    cr_assert_eq(l->cancels[0].attempt, 1);
    long q = find_event(tid(t), "queued", 1);
    cr_assert_geq(q, 0);
    cr_assert_str_eq(H.ev[q].error, "timeout");

    step_until_runs(l, 2, now() + 1000);
    uint64_t cookie2 = l->runs[1].cookie;
    cr_assert_eq(l->runs[1].attempt, 2);
    cr_assert_neq(cookie1, cookie2);
    cr_assert_str_eq(state_of(t), "running");

    fake_ok_cookie(l, cookie1, "from attempt 1", 5);
    turn();
    cr_assert_eq(H.sched.stats.stale, 1);
    cr_assert_str_eq(state_of(t), "running", "the old attempt's answer must not finish the task");
    cr_assert_eq(t->attempts, 2);
    cr_assert_eq(l->agent->inflight, 1, "the stale answer frees no slot");

    l->runs[1].answered = true;
    fake_ok_cookie(l, cookie2, "from attempt 2", 7);
    turn();
    cr_assert_str_eq(state_of(t), "succeeded");
    assert_result_is(t, "from attempt 2");
    cr_assert_eq(t->tokens_used, 7);
    cr_assert_eq(count_events(tid(t), "succeeded"), 1);
    // And once more, after the end: still stale.
    fake_ok_cookie(l, cookie1, "again", 1);
    cr_assert_eq(H.sched.stats.stale, 2);
    assert_result_is(t, "from attempt 2");
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, a_retry_goes_to_another_agent) {
    setup();
    int type = type_index("work");
    fake_link_t *la = fake_agent_add(&H.agents, &H.clock, "A", "work", 1);
    fake_link_t *lb = fake_agent_add(&H.agents, &H.clock, "B", "work", 1);
    // A has a good record, so on health alone it would get the retry too.
    for (int i = 0; i < 3; i++) {
        feed(la->agent, (uint32_t)type, true, 100);
    }
    swd_task_t *t = submit("work", SWD_PRIO_MEDIUM);
    step_until_runs(la, 1, 1000);
    cr_assert_eq(lb->nruns, 0);
    fake_fail(la, &la->runs[0], "flaky", true, 0);
    double pa[4], pb[4];
    cr_assert_gt(swd_agent_health(la->agent, type, pa), swd_agent_health(lb->agent, type, pb));

    step_until_runs(lb, 1, now() + 1000);
    cr_assert_eq(la->nruns, 1, "the retry avoided the agent that failed it");
    cr_assert_eq(lb->runs[0].attempt, 2);
    fake_ok(lb, &lb->runs[0], "ok");
    turn();
    cr_assert_str_eq(state_of(t), "succeeded");
    cr_assert_str_eq(aid(t), lb->agent->id);
    teardown();
    ASSERT_NO_LEAKS();
}

// ---- agent loss ----

Test(scheduler, a_dead_agents_tasks_are_retried_elsewhere) {
    setup();
    fake_link_t *la = fake_agent_add(&H.agents, &H.clock, "A", NULL, 3);
    swd_task_t *t[3];
    for (int i = 0; i < 3; i++) {
        t[i] = submit("work", SWD_PRIO_MEDIUM);
    }
    step_until_runs(la, 3, 1000);
    cr_assert_eq(la->agent->inflight, 3);
    fake_link_t *lb = fake_agent_add(&H.agents, &H.clock, "B", NULL, 3);
    turn();
    cr_assert_eq(lb->nruns, 0);

    swd_agent_t *a = la->agent;
    swd_agent_kill(a, "connection lost");
    cr_assert_str_eq(swd_agent_state_name(swd_agent_state(a)), "dead");
    cr_assert_eq(a->state, SWD_AGENT_DEAD);
    cr_assert_eq(H.agents.count[SWD_AGENT_DEAD], 1);
    cr_assert_eq(H.sched.count[SWD_TASK_RUNNING], 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(state_of(t[i]), "queued");
        cr_assert_str_eq(t[i]->more->error_code, "agent_lost");
    }

    step_until_runs(lb, 3, now() + 2000);
    cr_assert_eq(la->nruns, 3, "nothing more went to the dead agent");
    for (int i = 0; i < 3; i++) {
        fake_ok(lb, &lb->runs[i], "ok");
    }
    turn();
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(state_of(t[i]), "succeeded", "task %d", i);
        cr_assert_eq(t[i]->attempts, 2);
        cr_assert_str_eq(aid(t[i]), lb->agent->id);
        long r1 = find_event(tid(t[i]), "running", 0);
        long lost = find_event(tid(t[i]), "queued", (size_t)r1 + 1);
        long r2 = find_event(tid(t[i]), "running", (size_t)r1 + 1);
        cr_assert(r1 >= 0 && lost > r1 && r2 > lost);
        cr_assert_str_eq(H.ev[lost].error, "agent_lost");
        cr_assert_eq(count_events(tid(t[i]), "succeeded"), 1);
    }
    cr_assert_eq(H.sched.stats.retries, 3);
    cr_assert_eq(H.sched.stats.succeeded, 3);
    cr_assert_eq(a->state, SWD_AGENT_DEAD, "still listed as dead");
    teardown();
    ASSERT_NO_LEAKS();
}

// ---- cancel ----

Test(scheduler, cancel_queued_running_and_terminal_tasks) {
    setup();
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 1);
    swd_task_t *running = submit("work", SWD_PRIO_MEDIUM);
    swd_task_t *queued = submit("work", SWD_PRIO_MEDIUM);
    step_until_runs(l, 1, 1000);
    cr_assert_str_eq(state_of(running), "running");
    cr_assert_str_eq(state_of(queued), "queued");

    // A queued task: cancelled at once.
    cr_assert(swd_sched_cancel(&H.sched, queued));
    cr_assert_str_eq(state_of(queued), "cancelled");
    cr_assert_str_eq(queued->more->error_code, "cancelled");
    cr_assert_eq(queued->attempts, 0);

    // A running one: cancelled, and the agent is told.
    uint64_t cookie = l->runs[0].cookie;
    cr_assert(swd_sched_cancel(&H.sched, running));
    cr_assert_str_eq(state_of(running), "cancelled");
    cr_assert_str_eq(running->more->error_code, "cancelled");
    cr_assert_eq(l->ncancels, 1);
    cr_assert_str_eq(l->cancels[0].task_id, tid(running));
    cr_assert_eq(l->cancels[0].attempt, 1);
    cr_assert_eq(l->agent->inflight, 0, "the slot is free again");
    // Its late answer is stale.
    l->runs[0].answered = true;
    fake_ok_cookie(l, cookie, "too late", 3);
    cr_assert_eq(H.sched.stats.stale, 1);
    cr_assert_str_eq(state_of(running), "cancelled");
    cr_assert_null(running->more->result);

    // Terminal: false, nothing changes.
    cr_assert_not(swd_sched_cancel(&H.sched, running));
    cr_assert_not(swd_sched_cancel(&H.sched, queued));
    cr_assert_eq(H.sched.stats.cancelled, 2);
    cr_assert_eq(count_events(tid(running), "cancelled"), 1);
    cr_assert_eq(count_events(tid(queued), "cancelled"), 1);

    // A task waiting out a retry delay: cancelled, and never retried.
    swd_task_t *backoff = submit("work", SWD_PRIO_MEDIUM);
    step_until_runs(l, 2, now() + 1000);
    fake_fail(l, &l->runs[1], "flaky", true, 10000);
    cr_assert_str_eq(state_of(backoff), "queued");
    cr_assert(swd_sched_cancel(&H.sched, backoff));
    cr_assert_str_eq(state_of(backoff), "cancelled");
    swd_clock_advance(&H.clock, 20000);
    cr_assert_eq(l->nruns, 2, "a cancelled task is not retried");
    cr_assert_eq(count_events(tid(queued), "running"), 0, "the cancelled queued task never ran");
    teardown();
    ASSERT_NO_LEAKS();
}

// ---- dependencies ----

Test(scheduler, a_dependent_waits_for_success) {
    setup();
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 2);
    swd_task_t *a = submit("work", SWD_PRIO_MEDIUM);
    swd_task_t *b = submit_after("work", SWD_PRIO_CRITICAL, &a->seq, 1);
    cr_assert_str_eq(state_of(b), "deferred");
    cr_assert_str_eq(b->more->deferred_reason, "dependencies");
    long d = find_event(tid(b), "deferred", 0);
    cr_assert_geq(d, 0);
    cr_assert_str_eq(H.ev[d].deferred_reason, "dependencies");
    cr_assert_eq(b->more->nafter, 1);
    cr_assert_eq(b->more->after[0], a->seq);

    step_until_runs(l, 1, 1000);
    swd_clock_advance(&H.clock, 5000);
    cr_assert_eq(l->nruns, 1, "B waits although a slot is free");
    cr_assert_str_eq(state_of(b), "deferred");

    fake_ok(l, &l->runs[0], "a done");
    step_until_runs(l, 2, now() + 1000);
    cr_assert_str_eq(l->runs[1].task_id, tid(b));
    cr_assert_gt(find_event(tid(b), "running", 0), find_event(tid(a), "succeeded", 0));
    fake_ok(l, &l->runs[1], "b done");
    turn();
    cr_assert_str_eq(state_of(b), "succeeded");
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, a_dependent_of_a_failed_task_fails) {
    setup();
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 1);
    swd_task_t *a = submit("work", SWD_PRIO_MEDIUM);
    swd_task_t *c = submit_after("work", SWD_PRIO_MEDIUM, &a->seq, 1);
    cr_assert_str_eq(state_of(c), "deferred");
    step_until_runs(l, 1, 1000);
    fake_fail(l, &l->runs[0], "bad_input", false, 0);
    turn();
    cr_assert_str_eq(state_of(a), "failed");
    cr_assert_str_eq(state_of(c), "failed");
    cr_assert_str_eq(c->more->error_code, "dependency_failed");
    cr_assert_eq(c->attempts, 0);
    cr_assert_eq(count_events(tid(c), "running"), 0);

    // Submitted after its dependency already failed: fails at once.
    swd_task_t *e = submit_after("work", SWD_PRIO_MEDIUM, &a->seq, 1);
    cr_assert_str_eq(state_of(e), "failed");
    cr_assert_str_eq(e->more->error_code, "dependency_failed");
    swd_clock_advance(&H.clock, 10000);
    cr_assert_eq(l->nruns, 1);
    teardown();
    ASSERT_NO_LEAKS();
}

// Finished tasks stay findable for retain_finished_ms after they end, each
// counted from its own end, then go.
Test(scheduler, finished_tasks_go_after_their_own_retention) {
    swd_sched_config_t cfg = default_cfg();
    cfg.retain_finished_ms = 1000;
    setup_with(&cfg, true);
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", "work", 2);
    char a_id[SWD_ID_MAX], b_id[SWD_ID_MAX];
    snprintf(a_id, sizeof(a_id), "%s", tid(submit("work", SWD_PRIO_MEDIUM)));
    snprintf(b_id, sizeof(b_id), "%s", tid(submit("work", SWD_PRIO_MEDIUM)));
    step_until_runs(l, 2, 1000);
    fake_ok(l, &l->runs[0], "a done");
    swd_clock_advance(&H.clock, 600);
    fake_ok(l, &l->runs[1], "b done");
    cr_assert_eq(H.sched.count[SWD_TASK_SUCCEEDED], 2);

    swd_clock_advance(&H.clock, 399); // A ended 999 ms ago
    cr_assert_not_null(swd_sched_find(&H.sched, a_id, strlen(a_id)));
    swd_clock_advance(&H.clock, 1); // 1000 ms
    cr_assert_null(swd_sched_find(&H.sched, a_id, strlen(a_id)), "A is gone");
    cr_assert_not_null(swd_sched_find(&H.sched, b_id, strlen(b_id)), "B ended 400 ms ago");
    swd_clock_advance(&H.clock, 599);
    cr_assert_not_null(swd_sched_find(&H.sched, b_id, strlen(b_id)), "B ended 999 ms ago");
    swd_clock_advance(&H.clock, 1);
    cr_assert_null(swd_sched_find(&H.sched, b_id, strlen(b_id)), "B is gone");
    cr_assert_eq(H.sched.count[SWD_TASK_SUCCEEDED], 0);
    teardown();
    ASSERT_NO_LEAKS();
}

static bool findable(const char *id) {
    return swd_sched_find(&H.sched, id, strlen(id)) != NULL;
}

// Past scheduler.retain_finished_max finished tasks, the oldest go (on the
// next turn), whatever their age: memory stays bounded at any throughput.
// A failure that fails a cascade of dependents in one go is the case where
// freeing at once would free tasks the cascade still walks (ASan in CI).
Test(scheduler, finished_tasks_past_the_count_limit_go_oldest_first) {
    swd_sched_config_t cfg = default_cfg();
    cfg.retain_finished_max = 2;
    setup_with(&cfg, true);
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", "work", 1);
    char ids[3][SWD_ID_MAX];
    for (int i = 0; i < 3; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%s", tid(submit("work", SWD_PRIO_MEDIUM)));
        step_until_runs(l, (size_t)i + 1, now() + 1000);
        fake_ok(l, &l->runs[i], "done");
    }
    turn();
    cr_assert_eq(H.sched.count[SWD_TASK_SUCCEEDED], 2);
    cr_assert(!findable(ids[0]), "the oldest finished task is gone");
    cr_assert(findable(ids[1]) && findable(ids[2]), "the two newest stay");

    uint64_t d_seq = submit("work", SWD_PRIO_MEDIUM)->seq;
    enum { NDEP = 6 };
    char dep_ids[NDEP][SWD_ID_MAX];
    for (int i = 0; i < NDEP; i++) {
        snprintf(dep_ids[i], sizeof(dep_ids[i]), "%s",
                 tid(submit_after("work", SWD_PRIO_MEDIUM, &d_seq, 1)));
    }
    step_until_runs(l, 4, now() + 1000);
    fake_fail(l, &l->runs[3], "bad_input", false, 0); // D and its six dependents end
    cr_assert_eq(H.sched.count[SWD_TASK_FAILED], NDEP + 1, "all ended in one go");
    turn();
    cr_assert_eq(H.sched.count[SWD_TASK_SUCCEEDED] + H.sched.count[SWD_TASK_FAILED], 2);
    // D retires after the dependents its failure ended, so it is the newest.
    char d_id[SWD_ID_MAX];
    swd_id_format('t', d_seq, d_id);
    cr_assert(findable(d_id), "the newest finished task stays");
    int deps_left = 0;
    for (int i = 0; i < NDEP; i++) {
        deps_left += findable(dep_ids[i]);
    }
    cr_assert_eq(deps_left, 1, "one dependent stays with it");
    cr_assert(!findable(ids[1]) && !findable(ids[2]), "the older successes are gone");
    teardown();
    ASSERT_NO_LEAKS();
}

// A dependent that ended early (cancelled, or failed through another of its
// dependencies) and then passed its retention must not be touched when the
// dependency it was still listed under finishes later.
Test(scheduler, a_cancelled_dependent_is_forgotten_by_its_dependency) {
    swd_sched_config_t cfg = default_cfg();
    cfg.retain_finished_ms = 1000;
    setup_with(&cfg, true);
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", "work", 1);
    swd_task_t *a = submit("work", SWD_PRIO_MEDIUM);
    swd_task_t *b = submit("work", SWD_PRIO_MEDIUM); // waits for the one slot
    uint64_t a_seq = a->seq, b_seq = b->seq;
    step_until_runs(l, 1, 1000);
    // Several dependents of A, cancelled (enough of them that the memory
    // allocator hands one's block to the next task allocated).
    enum { NC = 16 };
    char c_id[NC][24];
    for (int i = 0; i < NC; i++) {
        swd_task_t *c = submit_after("work", SWD_PRIO_MEDIUM, &a_seq, 1);
        cr_assert_str_eq(state_of(c), "deferred");
        snprintf(c_id[i], sizeof(c_id[i]), "%s", tid(c));
        cr_assert(swd_sched_cancel(&H.sched, c));
    }
    // Their retention passes while A still runs: they are freed.
    swd_clock_advance(&H.clock, 2000);
    for (int i = 0; i < NC; i++) {
        cr_assert_null(swd_sched_find(&H.sched, c_id[i], strlen(c_id[i])));
    }
    // A new task waiting on B (which has not even started) may get the
    // memory of one of them.
    swd_task_t *w = submit_after("work", SWD_PRIO_MEDIUM, &b_seq, 1);
    cr_assert_str_eq(state_of(w), "deferred");
    // A finishes: B may start now, W may not.
    fake_ok(l, &l->runs[0], "a done");
    step_until_runs(l, 2, now() + 1000);
    cr_assert_str_eq(state_of(a), "succeeded");
    cr_assert_str_eq(l->runs[1].task_id, tid(b));
    cr_assert_str_eq(state_of(w), "deferred", "W was released by A's end, not B's");
    swd_clock_advance(&H.clock, 1000);
    cr_assert_eq(l->nruns, 2);
    fake_ok(l, &l->runs[1], "b done");
    step_until_runs(l, 3, now() + 1000);
    cr_assert_str_eq(l->runs[2].task_id, tid(w));
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, a_dependent_failed_by_another_dependency_is_forgotten) {
    swd_sched_config_t cfg = default_cfg();
    cfg.retain_finished_ms = 1000;
    setup_with(&cfg, true);
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", "work", 2);
    swd_task_t *a = submit("work", SWD_PRIO_MEDIUM);
    swd_task_t *b = submit("work", SWD_PRIO_MEDIUM);
    swd_task_t *d = submit("work", SWD_PRIO_MEDIUM); // waits for a slot
    uint64_t deps[2] = {a->seq, b->seq};
    uint64_t d_seq = d->seq;
    step_until_runs(l, 2, 1000);
    // Dependents of A and B; B's failure fails them at once.
    enum { NC = 16 };
    swd_task_t *c[NC];
    for (int i = 0; i < NC; i++) {
        c[i] = submit_after("work", SWD_PRIO_MEDIUM, deps, 2);
        cr_assert_str_eq(state_of(c[i]), "deferred");
    }
    fake_fail(l, fake_find(l, tid(b), 1), "bad_input", false, 0);
    for (int i = 0; i < NC; i++) {
        cr_assert_str_eq(state_of(c[i]), "failed");
        cr_assert_str_eq(c[i]->more->error_code, "dependency_failed");
    }
    step_until_runs(l, 3, now() + 1000); // D takes B's slot
    cr_assert_str_eq(l->runs[2].task_id, tid(d));
    swd_clock_advance(&H.clock, 2000); // B and the dependents are gone
    cr_assert_eq(H.sched.count[SWD_TASK_FAILED], 0);
    swd_task_t *w = submit_after("work", SWD_PRIO_MEDIUM, &d_seq, 1);
    cr_assert_str_eq(state_of(w), "deferred");
    // A finishes: nothing else may change.
    fake_ok(l, fake_find(l, tid(a), 1), "a done");
    turn();
    cr_assert_str_eq(state_of(a), "succeeded");
    cr_assert_str_eq(state_of(w), "deferred", "W was released by A's end, not D's");
    cr_assert_eq(H.sched.stats.failed, 1 + NC);
    fake_ok(l, fake_find(l, tid(d), 1), "d done");
    step_until_runs(l, 4, now() + 1000);
    cr_assert_str_eq(l->runs[3].task_id, tid(w));
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, a_dependent_failed_at_submit_is_forgotten) {
    swd_sched_config_t cfg = default_cfg();
    cfg.retain_finished_ms = 1000;
    setup_with(&cfg, true);
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", "work", 1);
    swd_task_t *x = submit("work", SWD_PRIO_MEDIUM);
    uint64_t x_seq = x->seq;
    step_until_runs(l, 1, 1000);
    fake_fail(l, &l->runs[0], "bad_input", false, 0); // X failed, kept 1 s
    swd_task_t *a = submit("work", SWD_PRIO_MEDIUM);
    swd_task_t *b = submit("work", SWD_PRIO_MEDIUM); // waits for the one slot
    uint64_t deps[2] = {a->seq, x_seq};
    uint64_t b_seq = b->seq;
    step_until_runs(l, 2, now() + 1000);
    cr_assert_str_eq(l->runs[1].task_id, tid(a));
    // After {A (running), X (failed)}: failed at submit.
    enum { NC = 16 };
    for (int i = 0; i < NC; i++) {
        swd_task_t *c = submit_after("work", SWD_PRIO_MEDIUM, deps, 2);
        cr_assert_str_eq(state_of(c), "failed");
        cr_assert_str_eq(c->more->error_code, "dependency_failed");
    }
    swd_clock_advance(&H.clock, 2000); // they are gone
    cr_assert_eq(H.sched.count[SWD_TASK_FAILED], 0);
    swd_task_t *w = submit_after("work", SWD_PRIO_MEDIUM, &b_seq, 1);
    fake_ok(l, &l->runs[1], "a done");
    turn();
    cr_assert_str_eq(state_of(a), "succeeded");
    cr_assert_str_eq(state_of(w), "deferred", "W was released by A's end, not B's");
    teardown();
    ASSERT_NO_LEAKS();
}

// ---- admission ----

Test(scheduler, overload_and_idempotency) {
    swd_sched_config_t cfg = default_cfg();
    cfg.max_queued = 5;
    setup_with(&cfg, true);
    swd_task_t *first = NULL;
    for (int i = 0; i < 5; i++) {
        swd_task_spec_t spec = spec_of("work", SWD_PRIO_MEDIUM);
        if (i == 0) {
            spec.key = "job-1";
            spec.key_len = 5;
        }
        swd_task_t *t = submit_spec(&spec);
        if (i == 0) {
            first = t;
        }
    }
    swd_task_spec_t spec = spec_of("work", SWD_PRIO_MEDIUM);
    swd_task_t *t = NULL;
    cr_assert_eq(swd_sched_submit(&H.sched, &spec, &t), SWD_SUBMIT_OVERLOADED);
    cr_assert_eq(H.sched.stats.submitted, 5);
    cr_assert_not(swd_sched_has_room(&H.sched, 1));

    // The same key: the same task, even while full.
    spec.key = "job-1";
    spec.key_len = 5;
    t = NULL;
    cr_assert_eq(swd_sched_submit(&H.sched, &spec, &t), SWD_SUBMIT_DUPLICATE);
    cr_assert_eq(t, first);
    cr_assert_eq(swd_sched_find_key(&H.sched, "job-1", 5), first);
    cr_assert_eq(H.sched.stats.submitted, 5);

    // Room again once one leaves the backlog.
    cr_assert(swd_sched_cancel(&H.sched, first));
    spec.key = "job-2";
    t = NULL;
    cr_assert_eq(swd_sched_submit(&H.sched, &spec, &t), SWD_SUBMIT_OK);
    swd_task_t *again = NULL;
    cr_assert_eq(swd_sched_submit(&H.sched, &spec, &again), SWD_SUBMIT_DUPLICATE);
    cr_assert_eq(again, t);
    cr_assert_eq(H.sched.stats.submitted, 6);
    teardown();
    ASSERT_NO_LEAKS();
}

// ---- retention ----

Test(scheduler, a_finished_task_is_kept_for_retain_finished_ms) {
    swd_sched_config_t cfg = default_cfg();
    cfg.retain_finished_ms = 30000;
    setup_with(&cfg, true);
    fake_link_t *l = fake_agent_add(&H.agents, &H.clock, "w1", NULL, 1);
    swd_task_spec_t spec = spec_of("work", SWD_PRIO_MEDIUM);
    spec.key = "k";
    spec.key_len = 1;
    swd_task_t *t = submit_spec(&spec);
    char id[24];
    snprintf(id, sizeof(id), "%s", tid(t));
    step_until_runs(l, 1, 1000);
    fake_ok(l, &l->runs[0], "done");
    turn();
    cr_assert_str_eq(state_of(t), "succeeded");
    swd_clock_advance(&H.clock, 29999);
    cr_assert_eq(swd_sched_find(&H.sched, id, strlen(id)), t, "still there just before");
    cr_assert_eq(swd_sched_find_key(&H.sched, "k", 1), t);
    swd_clock_advance(&H.clock, 2);
    cr_assert_null(swd_sched_find(&H.sched, id, strlen(id)), "gone after retain_finished_ms");
    cr_assert_null(swd_sched_find_key(&H.sched, "k", 1));
    cr_assert_eq(H.sched.count[SWD_TASK_SUCCEEDED], 0);
    // The key is free again: a new task.
    swd_task_t *n = submit_spec(&spec);
    cr_assert_str_neq(tid(n), id);
    teardown();
    ASSERT_NO_LEAKS();
}

// ---- simulation ----

enum { SIM_AGENTS = 20, SIM_TASKS = 10000 };

/// Sets up a simulation of `ntasks` tasks: counters per task, no event log.
static void sim_setup(const swd_sched_config_t *cfg, size_t ntasks) {
    setup_with(cfg, false);
    H.nsucceeded = ntasks + 1;
    H.succeeded = swd_xcalloc(H.nsucceeded, 1);
    H.terminal = swd_xcalloc(H.nsucceeded, 1);
}

/// A simulated agent answering in 50 ms (spread 0.3), four tasks at a time.
static swd_sim_params_t sim_params(uint64_t seed) {
    swd_sim_params_t p;
    swd_sim_params_init(&p);
    p.seed = seed;
    p.latency_ms = 50;
    p.latency_spread = 0.3;
    p.capacity = 4;
    return p;
}

/// Adds simulated agent "sim-<i>" with four slots.
static swd_agent_t *sim_agent_add(int i, const swd_sim_params_t *p) {
    char name[16];
    snprintf(name, sizeof(name), "sim-%d", i);
    swd_agent_spec_t spec = {.name = name, .max_concurrency = 4};
    swd_agent_t *a = swd_sim_agent_add(&H.agents, &H.clock, &spec, p);
    cr_assert_not_null(a);
    return a;
}

/// Steps timer by timer until none is left.
static void sim_run_to_end(void) {
    uint64_t steps = 0;
    while (swd_clock_step(&H.clock)) {
        cr_assert_lt(++steps, 10000000, "the simulation does not settle");
    }
}

static void sim_scenario(uint64_t seed_base, uint64_t *hash, uint64_t *nrunning) {
    swd_sched_config_t cfg = default_cfg();
    sim_setup(&cfg, SIM_TASKS);
    for (int i = 0; i < SIM_AGENTS; i++) {
        swd_sim_params_t p = sim_params(seed_base + (uint64_t)i);
        sim_agent_add(i, &p);
    }
    static const char *const types[] = {"summarize", "translate", "classify"};
    for (int i = 0; i < SIM_TASKS; i++) {
        submit(types[i % 3], i % SWD_PRIO_COUNT);
    }
    sim_run_to_end();
    for (uint64_t seq = 1; seq <= SIM_TASKS; seq++) {
        cr_assert_eq(H.succeeded[seq], 1, "task t-%llu succeeded %u times", (unsigned long long)seq,
                     H.succeeded[seq]);
    }
    cr_assert_eq(H.sched.stats.submitted, SIM_TASKS);
    cr_assert_eq(H.sched.stats.succeeded, SIM_TASKS);
    cr_assert_eq(H.sched.stats.failed, 0);
    cr_assert_eq(H.sched.stats.retries, 0);
    cr_assert_eq(H.sched.stats.stale, 0);
    cr_assert_eq(H.nrunning, SIM_TASKS);
    cr_assert_null(H.sched.first, "every finished task left after its retention");
    for (swd_agent_t *a = H.agents.head; a != NULL; a = a->next) {
        cr_assert_eq(a->inflight, 0);
        cr_assert_gt(a->completed, 0, "agent %s got no work", a->id);
    }
    *hash = H.run_hash;
    *nrunning = H.nrunning;
    teardown();
}

Test(scheduler, simulation_of_10000_tasks_is_complete_and_deterministic) {
    uint64_t h1, h2, h3, n1, n2, n3;
    sim_scenario(1000, &h1, &n1);
    sim_scenario(1000, &h2, &n2);
    cr_assert_eq(n1, n2);
    cr_assert_eq(h1, h2, "same seeds, different runs: %016llx vs %016llx", (unsigned long long)h1,
                 (unsigned long long)h2);
    // The hash does see the simulation: other seeds, other timings.
    sim_scenario(2000, &h3, &n3);
    cr_assert_neq(h1, h3);
    ASSERT_NO_LEAKS();
}

// Faults everywhere: retryable and fatal errors, hangs (caught by the
// attempt timeout), an agent that crashes, one that answers "overloaded"
// with retry_after. Every acknowledged task still ends exactly once, and
// the run replays exactly from its seeds.
enum { CHAOS_TASKS = 5000 };

static void chaos_scenario(uint64_t seed_base, uint64_t *hash) {
    swd_sched_config_t cfg = default_cfg();
    cfg.seed = seed_base;
    sim_setup(&cfg, CHAOS_TASKS);
    swd_agent_t *crasher = NULL;
    for (int i = 0; i < SIM_AGENTS; i++) {
        swd_sim_params_t p = sim_params(seed_base + (uint64_t)i);
        p.fail_rate = 0.05;
        p.fatal_rate = 0.005;
        p.hang_rate = 0.01;
        if (i == 0) {
            p.crash_after_tasks = 50;
        }
        if (i == 1) {
            p.overload_at = 2;
            p.retry_after_ms = 500;
        }
        swd_agent_t *a = sim_agent_add(i, &p);
        if (i == 0) {
            crasher = a;
        }
    }
    for (int i = 0; i < CHAOS_TASKS; i++) {
        swd_task_spec_t spec = spec_of("work", i % SWD_PRIO_COUNT);
        spec.timeout_ms = 1000;
        spec.max_retries = 5;
        submit_spec(&spec);
    }
    // Past the crash, before the dead agent is forgotten.
    swd_clock_advance(&H.clock, 20000);
    cr_assert_eq(crasher->state, SWD_AGENT_DEAD);
    sim_run_to_end();
    for (uint64_t seq = 1; seq <= CHAOS_TASKS; seq++) {
        cr_assert_eq(H.terminal[seq], 1, "task t-%llu ended %u times", (unsigned long long)seq,
                     H.terminal[seq]);
    }
    const swd_sched_stats_t *st = &H.sched.stats;
    cr_assert_eq(st->succeeded + st->failed, CHAOS_TASKS);
    cr_assert_eq(st->cancelled, 0);
    cr_assert_gt(st->retries, 0);
    cr_assert_gt(st->timeouts, 0, "hangs end in timeouts");
    cr_assert_gt(st->succeeded, CHAOS_TASKS * 95 / 100, "only %llu succeeded",
                 (unsigned long long)st->succeeded);
    cr_assert_null(H.sched.first);
    cr_assert_eq(H.agents.total, SIM_AGENTS - 1, "the dead agent is forgotten after retention");
    for (swd_agent_t *a = H.agents.head; a != NULL; a = a->next) {
        cr_assert_eq(a->inflight, 0, "agent %s", a->id);
    }
    *hash = H.run_hash;
    teardown();
}

Test(scheduler, simulation_with_faults_loses_nothing_and_replays) {
    uint64_t h1, h2;
    chaos_scenario(77, &h1);
    chaos_scenario(77, &h2);
    cr_assert_eq(h1, h2, "same seeds, different runs");
    ASSERT_NO_LEAKS();
}

// ---- transports that answer inside run() ----

Test(scheduler, answers_given_inside_run_are_handled) {
    setup();
    fake_link_t *ok = fake_agent_add(&H.agents, &H.clock, "ok", "ok", 1);
    fake_link_t *hard = fake_agent_add(&H.agents, &H.clock, "hard", "hard", 1);
    fake_link_t *soft = fake_agent_add(&H.agents, &H.clock, "soft", "soft", 1);
    ok->mode = FAKE_SYNC_OK;
    hard->mode = FAKE_SYNC_FAIL_HARD;
    soft->mode = FAKE_SYNC_FAIL;
    swd_task_t *t_ok[3];
    for (int i = 0; i < 3; i++) {
        t_ok[i] = submit("ok", SWD_PRIO_MEDIUM);
    }
    swd_task_t *t_hard = submit("hard", SWD_PRIO_MEDIUM);
    swd_task_spec_t spec = spec_of("soft", SWD_PRIO_MEDIUM);
    spec.max_retries = 2;
    swd_task_t *t_soft = submit_spec(&spec);
    swd_clock_advance(&H.clock, 10000);
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(state_of(t_ok[i]), "succeeded");
        cr_assert_eq(t_ok[i]->attempts, 1);
        assert_result_is(t_ok[i], "sync");
    }
    cr_assert_eq(ok->nruns, 3);
    cr_assert_eq(ok->agent->inflight, 0);
    cr_assert_str_eq(state_of(t_hard), "failed");
    cr_assert_eq(t_hard->attempts, 1);
    cr_assert_str_eq(t_hard->more->error_code, "refused");
    cr_assert_str_eq(state_of(t_soft), "failed");
    cr_assert_eq(t_soft->attempts, 3);
    cr_assert_eq(soft->nruns, 3);
    cr_assert_eq(H.sched.stats.retries, 2);
    cr_assert_eq(H.sched.stats.stale, 0);
    teardown();
    ASSERT_NO_LEAKS();
}

Test(scheduler, an_agent_dying_inside_run_loses_nothing) {
    setup();
    fake_link_t *k = fake_agent_add(&H.agents, &H.clock, "dies", NULL, 2);
    k->mode = FAKE_SYNC_KILL;
    swd_task_t *t = submit("work", SWD_PRIO_MEDIUM);
    turn();
    cr_assert_eq(k->nruns, 1);
    cr_assert_eq(k->agent->state, SWD_AGENT_DEAD);
    cr_assert_str_eq(state_of(t), "queued");
    cr_assert_str_eq(t->more->error_code, "agent_lost");
    cr_assert_eq(k->agent->inflight, 0);
    fake_link_t *b = fake_agent_add(&H.agents, &H.clock, "B", NULL, 1);
    step_until_runs(b, 1, now() + 1000);
    fake_ok(b, &b->runs[0], "ok");
    turn();
    cr_assert_str_eq(state_of(t), "succeeded");
    cr_assert_eq(t->attempts, 2);
    cr_assert_eq(k->nruns, 1);
    cr_assert_eq(H.sched.count[SWD_TASK_RUNNING], 0);
    teardown();
    ASSERT_NO_LEAKS();
}

// The agent's connection may close while it is being told to cancel (the
// rpc transport's write fails at once and its close hook kills the agent):
// the scheduler must not treat the task as still running afterwards.
static void cancel_while_agent_drops(int64_t backoff_base_ms) {
    swd_sched_config_t cfg = default_cfg();
    cfg.backoff_base_ms = backoff_base_ms;
    setup_with(&cfg, true);
    fake_link_t *la = fake_agent_add(&H.agents, &H.clock, "A", NULL, 1);
    la->cancel_kills = true;
    swd_task_t *t = submit("work", SWD_PRIO_MEDIUM);
    char id[24];
    snprintf(id, sizeof(id), "%s", tid(t));
    step_until_runs(la, 1, 1000);
    cr_assert(swd_sched_cancel(&H.sched, t));
    cr_assert_eq(la->agent->state, SWD_AGENT_DEAD);
    cr_assert_str_eq(state_of(t), "cancelled");
    cr_assert_str_eq(t->more->error_code, "cancelled");
    cr_assert_eq(swd_sched_backlog(&H.sched), 0, "a cancelled task is in no queue");
    fake_link_t *lb = fake_agent_add(&H.agents, &H.clock, "B", NULL, 1);
    for (int i = 0; i < 240; i++) {
        swd_clock_advance(&H.clock, 500); // past the retention too
    }
    cr_assert_eq(lb->nruns, 0, "the cancelled task ran again (backoff_base_ms %lld)",
                 (long long)backoff_base_ms);
    cr_assert_eq(count_events(id, "running"), 1);
    cr_assert_eq(count_events(id, "cancelled"), 1);
    cr_assert_eq(H.sched.stats.cancelled, 1);
    cr_assert_eq(H.sched.count[SWD_TASK_QUEUED] + H.sched.count[SWD_TASK_RUNNING], 0);
    teardown();
}

Test(scheduler, cancel_while_the_agent_drops_keeps_the_task_cancelled) {
    cancel_while_agent_drops(200);
    ASSERT_NO_LEAKS();
}

Test(scheduler, cancel_while_the_agent_drops_keeps_the_task_cancelled_no_backoff) {
    cancel_while_agent_drops(0);
    ASSERT_NO_LEAKS();
}

static void timeout_while_agent_drops(int64_t backoff_base_ms) {
    swd_sched_config_t cfg = default_cfg();
    cfg.backoff_base_ms = backoff_base_ms;
    setup_with(&cfg, true);
    fake_link_t *la = fake_agent_add(&H.agents, &H.clock, "A", NULL, 1);
    la->cancel_kills = true;
    swd_task_spec_t spec = spec_of("work", SWD_PRIO_MEDIUM);
    spec.timeout_ms = 100;
    swd_task_t *t = submit_spec(&spec);
    step_until_runs(la, 1, 1000);
    fake_link_t *lb = fake_agent_add(&H.agents, &H.clock, "B", NULL, 4);
    swd_clock_advance(&H.clock, 100); // times out; telling A kills it
    cr_assert_eq(la->agent->state, SWD_AGENT_DEAD);
    step_until_runs(lb, 1, now() + 1000);
    turn();
    cr_assert_eq(lb->nruns, 1, "attempt 2 started %zu times", lb->nruns);
    cr_assert_eq(lb->runs[0].attempt, 2);
    cr_assert_str_eq(state_of(t), "running");
    cr_assert_eq(H.sched.count[SWD_TASK_RUNNING], 1);
    cr_assert_eq(H.sched.count[SWD_TASK_QUEUED], 0);
    fake_ok(lb, &lb->runs[0], "ok");
    for (int i = 0; i < 100; i++) {
        swd_clock_advance(&H.clock, 10);
    }
    cr_assert_str_eq(state_of(t), "succeeded");
    cr_assert_eq(lb->nruns, 1, "the task ran again after it succeeded");
    cr_assert_eq(t->attempts, 2);
    cr_assert_eq(H.sched.stats.retries, 1, "one failed attempt, %llu retries counted",
                 (unsigned long long)H.sched.stats.retries);
    cr_assert_eq(count_events(tid(t), "queued"), 2, "submitted, then retried once");
    teardown();
}

Test(scheduler, timeout_while_the_agent_drops_retries_once) {
    timeout_while_agent_drops(200);
    ASSERT_NO_LEAKS();
}

Test(scheduler, timeout_while_the_agent_drops_retries_once_no_backoff) {
    timeout_while_agent_drops(0);
    ASSERT_NO_LEAKS();
}
