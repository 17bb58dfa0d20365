// The scheduler: the task table, per-type priority queues, dispatch onto
// the best agent, attempts with timeouts and fencing, retries with backoff,
// cancellation, waiters, and graceful drain.
//
//   submit ─▶ [type queue: 4 FIFO levels + aging] ─▶ ready-type heap
//                                                        │ dispatch pass
//   agents' per-type heaps (best health first) ◀─────────┘
//        │ transport->run(attempt, cookie = seq|attempt)
//        ▼
//   complete(cookie) ─ fencing ─▶ succeeded | retry (backoff) | failed
//
// A dispatch pass runs on the next loop turn after anything that may let a
// task start (a submit, a freed slot, a new agent, a retry delay ending), so
// a burst of changes costs one pass. Choosing costs O(log) in agents and
// O(1) in tasks per decision.
#ifndef SWD_SCHEDULER_SCHEDULER_H
#define SWD_SCHEDULER_SCHEDULER_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "agents/agent.h"
#include "runtime/bus.h"
#include "runtime/clock.h"
#include "runtime/heap.h"
#include "runtime/map.h"
#include "runtime/rng.h"
#include "scheduler/task.h"

typedef struct swd_sched_config {
    uint64_t max_queued;        ///< limits.max_queued
    int64_t default_timeout_ms; ///< scheduler.default_timeout_ms
    uint32_t default_max_retries;
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    int64_t aging_ms;             ///< a queued task rises one level per aging_ms
    int64_t retain_finished_ms;   ///< terminal tasks stay queryable this long
    uint64_t retain_finished_max; ///< and at most this many (oldest go first); 0: no limit
    uint64_t seed;                ///< for retry jitter
} swd_sched_config_t;

/// What task.submit asks for, validated.
typedef struct swd_task_spec {
    const char *type;
    size_t type_len;
    const msgpack_object *payload; ///< NULL: nil
    int priority;
    uint64_t estimated_tokens;
    int64_t timeout_ms; ///< 0: the default
    uint32_t max_retries;
    const char *key; ///< NULL: none
    size_t key_len;
    const msgpack_object *labels; ///< a map, or NULL
    const uint64_t *after;        ///< resolved task seqs
    uint32_t nafter;
} swd_task_spec_t;

typedef struct swd_sched_stats {
    uint64_t submitted, succeeded, failed, cancelled, retries, timeouts, stale;
    uint64_t tokens_consumed;
} swd_sched_stats_t;

typedef struct swd_type_queue swd_type_queue_t;

typedef struct swd_sched {
    swd_clock_t *clock;
    swd_bus_t *bus;
    swd_agents_t *agents;
    swd_sched_config_t cfg;
    swd_rng_t rng;
    swd_u64map_t tasks;       ///< seq -> task
    swd_strmap_t keys;        ///< idempotency key -> task
    swd_u64map_t dependents;  ///< seq -> swd_deps_t (tasks waiting on it)
    swd_task_t *first, *last; ///< every task, in submission order
    uint64_t next_seq;
    uint64_t count[SWD_TASK_STATE_COUNT];
    swd_sched_stats_t stats;
    swd_type_queue_t *queues; ///< indexed by agent type index
    uint32_t nqueues;
    swd_heap_t ready; ///< type queues with tasks and a possible agent
    swd_timer_t dispatch_timer;
    // Terminal tasks, oldest first: one retention time for all, so this is
    // deadline order and one timer for the oldest serves them all.
    swd_task_t *retired_head, *retired_tail;
    swd_timer_t retention_timer;
    bool in_pass;
    swd_task_t **release; ///< tasks whose dependents are being released
    size_t nrelease, release_cap;
    bool releasing;
    bool draining; ///< shutting down: no submits, no new dispatches
    void (*drained_cb)(void *data);
    void *drained_data;
} swd_sched_t;

void swd_sched_init(swd_sched_t *s, swd_clock_t *clock, swd_bus_t *bus, swd_agents_t *agents,
                    const swd_sched_config_t *cfg);
/// Frees every task (answering waiters is the caller's business first).
void swd_sched_close(swd_sched_t *s);
/// The callbacks to give swd_agents_init(), with `s` as their data.
swd_agents_cbs_t swd_sched_agent_callbacks(swd_sched_t *s);

typedef enum swd_submit_result {
    SWD_SUBMIT_OK,
    SWD_SUBMIT_DUPLICATE,  ///< the key named an existing task: `*out` is it
    SWD_SUBMIT_OVERLOADED, ///< limits.max_queued reached
    SWD_SUBMIT_TOO_MANY_TYPES,
    SWD_SUBMIT_SHUTTING_DOWN,
} swd_submit_result_t;

/// Creates a task (or finds the one with the same key).
swd_submit_result_t swd_sched_submit(swd_sched_t *s, const swd_task_spec_t *spec, swd_task_t **out);
/// Room for `n` more queued tasks?
bool swd_sched_has_room(const swd_sched_t *s, uint64_t n);
swd_task_t *swd_sched_find(const swd_sched_t *s, const char *id, size_t len);
swd_task_t *swd_sched_find_key(const swd_sched_t *s, const char *key, size_t len);
/// Cancels a task that is not terminal; false when it already was.
bool swd_sched_cancel(swd_sched_t *s, swd_task_t *t);
void swd_sched_pack_task(const swd_sched_t *s, const swd_task_t *t, swd_task_view_t view,
                         msgpack_packer *pk);

/// Waits for `t` to end: `cb` runs once, when it is terminal or after
/// `timeout_ms`, with the task (alive for the call).
typedef void (*swd_wait_cb)(swd_task_t *t, bool timed_out, void *data);
void swd_sched_wait(swd_sched_t *s, swd_task_t *t, int64_t timeout_ms, swd_wait_cb cb, void *data);

/// Graceful drain: no new dispatches or submits; `cb` runs once no attempt
/// is running (at once when none is).
void swd_sched_drain(swd_sched_t *s, void (*cb)(void *data), void *data);
/// Ends the drain at the grace deadline: running attempts are cancelled,
/// and every task still waiting is logged as abandoned.
void swd_sched_abandon(swd_sched_t *s);

/// Tasks counted against limits.max_queued (queued + deferred).
uint64_t swd_sched_backlog(const swd_sched_t *s);

#endif
