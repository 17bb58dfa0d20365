// Review tests of the scheduler and the agent registry: each `review` test
// demonstrates a suspected bug (it fails while the bug is there) or, where
// marked "holds", pins down behaviour the review checked and found right.
// Virtual clock, fake transport, no sockets (as test_scheduler.c).
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agent.h"
#include "runtime/bus.h"
#include "runtime/clock.h"
#include "runtime/log.h"
#include "scheduler/scheduler.h"
#include "tests/unit/scheduler/fake_agent.h"
#include "tests/unit/leak_check.h"

static struct {
    swd_clock_t clock;
    swd_bus_t bus;
    swd_agents_t agents;
    swd_sched_t sched;
} R;

static void rv_setup(void) {
    memset(&R, 0, sizeof(R));
    swd_log_setup(SWD_LOG_ERROR, 0, NULL, 0);
    swd_log_set_stderr(false);
    swd_clock_init_virtual(&R.clock, INT64_C(1700000000000));
    swd_bus_init(&R.bus);
    swd_sched_config_t cfg = {
        .max_queued = 1000000,
        .default_timeout_ms = 60000,
        .default_max_retries = 3,
        .backoff_base_ms = 200,
        .backoff_max_ms = 30000,
        .aging_ms = 10000,
        .retain_finished_ms = 60000,
        .seed = 7,
    };
    swd_sched_init(&R.sched, &R.clock, &R.bus, &R.agents, &cfg);
    swd_agents_cbs_t cbs = swd_sched_agent_callbacks(&R.sched);
    swd_agents_config_t acfg = {
        .window = 50, .target_latency_ms = 3000, .dead_retention_ms = 300000};
    swd_agents_init(&R.agents, &R.clock, &R.bus, &acfg, &cbs);
}

static void rv_teardown(void) {
    swd_sched_close(&R.sched);
    swd_agents_close(&R.agents);
    swd_bus_close(&R.bus);
    swd_clock_close(&R.clock);
    swd_log_shutdown();
}

static swd_task_t *rv_submit(const char *type, const uint64_t *after, uint32_t nafter) {
    swd_task_spec_t spec = {
        .type = type,
        .type_len = strlen(type),
        .priority = 2,
        .estimated_tokens = 1000,
        .max_retries = 3,
        .after = after,
        .nafter = nafter,
    };
    swd_task_t *t = NULL;
    cr_assert_eq(swd_sched_submit(&R.sched, &spec, &t), SWD_SUBMIT_OK);
    return t;
}

static void rv_turn(void) {
    swd_clock_advance(&R.clock, 0);
}

// finish() -> release_dependents() -> finish() recurses once per task of a
// failing chain: a long pipeline whose head is cancelled overflows the
// stack (the worker crashes with SIGSEGV).
Test(review, cancelling_the_head_of_a_long_chain, .init = rv_setup, .fini = rv_teardown) {
    const uint32_t n = 300000;
    swd_task_t *head = rv_submit("x", NULL, 0);
    uint64_t prev = head->seq;
    swd_task_t *last = head;
    for (uint32_t i = 1; i < n; i++) {
        last = rv_submit("x", &prev, 1);
        prev = last->seq;
    }
    cr_assert_eq(last->state, SWD_TASK_DEFERRED);
    cr_assert(swd_sched_cancel(&R.sched, head));
    cr_assert_eq(last->state, SWD_TASK_FAILED, "the chain's last task failed with it");
}

// A dead agent keeps the cooldown_until_ms of a cooldown whose timer
// swd_agent_kill() stopped: agent.list shows a cooldown that is not on
// (§2.1: nil when no cooldown is on), for the whole dead retention.
Test(review, dead_agent_shows_no_cooldown, .init = rv_setup, .fini = rv_teardown) {
    fake_link_t *l = fake_agent_add(&R.agents, &R.clock, "w1", NULL, 1);
    rv_submit("x", NULL, 0);
    rv_turn();
    fake_run_t *r = fake_pending(l);
    cr_assert_not_null(r);
    fake_fail(l, r, "rate_limited", true, 5000);
    cr_assert_neq(l->agent->cooldown_until_ms, 0);
    swd_agent_kill(l->agent, "disconnected");
    swd_clock_advance(&R.clock, 10000); // well past the cooldown's end
    cr_assert_eq(l->agent->cooldown_until_ms, 0, "dead agent still shows cooldown_until_ms %lld",
                 (long long)l->agent->cooldown_until_ms);
}

// A retry_after cooldown on a draining agent replaces its reason, and the
// cooldown's end clears it: the agent stays `draining` with reason nil.
Test(review, cooldown_end_keeps_draining_reason, .init = rv_setup, .fini = rv_teardown) {
    fake_link_t *l = fake_agent_add(&R.agents, &R.clock, "w1", NULL, 2);
    rv_submit("x", NULL, 0);
    rv_submit("x", NULL, 0);
    rv_turn();
    cr_assert_eq(l->agent->inflight, 2);
    swd_agent_drain(l->agent);
    cr_assert_str_eq(l->agent->reason, "draining");
    fake_fail(l, &l->runs[0], "rate_limited", true, 500);
    swd_clock_advance(&R.clock, 1000);
    cr_assert_eq(swd_agent_state(l->agent), SWD_AGENT_DRAINING);
    cr_assert_not_null(l->agent->reason, "a draining agent lost its reason");
    cr_assert_str_eq(l->agent->reason, "draining");
}

// Holds: add_slot() re-seats the type heaps when a wildcard agent's slots
// array moves (a new task type per submit), and dispatch still finds every
// agent; ASan would flag a stale node pointer.
Test(review, holds_wildcard_slots_move_with_new_types, .init = rv_setup, .fini = rv_teardown) {
    fake_link_t *ls[8];
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof(name), "w%d", i);
        ls[i] = fake_agent_add(&R.agents, &R.clock, name, NULL, 4);
    }
    char type[32];
    for (int t = 0; t < 200; t++) {
        snprintf(type, sizeof(type), "type-%d", t);
        rv_submit(type, NULL, 0);
    }
    rv_turn();
    size_t runs = 0;
    for (int i = 0; i < 8; i++) {
        runs += ls[i]->nruns;
    }
    cr_assert_eq(runs, 8 * 4, "every slot of every agent got a task (%zu)", runs);
    for (int i = 0; i < 8; i += 2) {
        swd_agent_kill(ls[i]->agent, "disconnected");
    }
    for (int t = 200; t < 400; t++) {
        snprintf(type, sizeof(type), "type-%d", t);
        rv_submit(type, NULL, 0);
    }
    for (int i = 1; i < 8; i += 2) {
        while (fake_pending(ls[i]) != NULL) {
            fake_ok(ls[i], fake_pending(ls[i]), "ok");
        }
    }
    rv_turn();
    for (int i = 1; i < 8; i += 2) {
        cr_assert_eq(ls[i]->agent->inflight, 4);
    }
    ASSERT_NO_LEAKS();
}
