// A task and its life: queued → running → succeeded | failed | cancelled,
// with retries back through queued, and deferred while it waits on its
// dependencies. Every change of state goes through swd_sched_transition()
// in scheduler.c, which publishes it on the event bus.
#ifndef SWD_SCHEDULER_TASK_H
#define SWD_SCHEDULER_TASK_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "agents/agent.h"
#include "runtime/clock.h"
#include "runtime/ids.h"

typedef enum swd_task_state {
    SWD_TASK_QUEUED,
    SWD_TASK_DEFERRED,
    SWD_TASK_RUNNING,
    SWD_TASK_SUCCEEDED,
    SWD_TASK_FAILED,
    SWD_TASK_CANCELLED,
    SWD_TASK_STATE_COUNT
} swd_task_state_t;

typedef enum swd_priority {
    SWD_PRIO_CRITICAL,
    SWD_PRIO_HIGH,
    SWD_PRIO_MEDIUM,
    SWD_PRIO_LOW,
    SWD_PRIO_COUNT
} swd_priority_t;

extern const char *const swd_task_state_names[SWD_TASK_STATE_COUNT + 1];
extern const char *const swd_priority_names[SWD_PRIO_COUNT + 1];

typedef struct swd_waiter swd_waiter_t;

typedef struct swd_sched swd_sched_t;

/// What most tasks never need: one allocation the first time any of it is
/// set. Until then a task's `more` is the shared, empty swd_task_no_more,
/// so reading needs no NULL checks and a plain queued task pays 8 bytes
/// for all of it (bench/README.md, memory per queued task).
typedef struct swd_task_more {
    char *key;    ///< idempotency key, or NULL
    char *labels; ///< msgpack bytes of a map, or NULL
    uint32_t labels_len;
    uint32_t result_len;
    char *result;     ///< msgpack bytes of the agent's output, or NULL
    char *error_code; ///< the last attempt's error, or NULL
    char *error_message;
    const char *deferred_reason; ///< static, while deferred
    // Dependencies: `after` holds task seqs; `unmet` counts those not yet
    // succeeded; dependents are found through the scheduler's index.
    uint64_t *after;
    uint32_t nafter;
    uint32_t unmet;
    swd_waiter_t *waiters;
} swd_task_more_t;

extern const swd_task_more_t swd_task_no_more;

typedef struct swd_task {
    uint64_t seq; ///< the id is "t-<seq>" (swd_task_id())
    uint8_t state;
    uint8_t priority;
    bool in_backoff; ///< queued, waiting out a retry delay (not in a queue)
    bool in_queue;
    uint32_t type;
    uint32_t attempts;
    uint32_t max_retries;
    uint32_t payload_len;
    uint64_t estimated_tokens;
    uint64_t tokens_used;
    int64_t timeout_ms;
    int64_t submitted_ms, started_ms, finished_ms; ///< wall
    union {
        int64_t enqueued_mono; ///< queued: when it entered its queue (FIFO, aging)
        int64_t attempt_mono;  ///< running: when the current attempt started
        int64_t finished_mono; ///< terminal: when it ended (retention)
    };
    char *payload;                  ///< msgpack bytes, or NULL for nil
    swd_agent_t *agent;             ///< the current attempt's agent, while running
    uint64_t last_agent_seq;        ///< the last attempt's agent (0 before any)
    const swd_task_more_t *more;    ///< never NULL; see swd_task_more_t
    struct swd_task *qprev, *qnext; ///< a type queue, the agent's running list, or retired
    struct swd_task *lprev, *lnext; ///< every task, in submission order
    swd_timer_t timer;              ///< attempt timeout or retry delay
} swd_task_t;

typedef enum swd_task_view {
    SWD_TASK_VIEW_FULL,  ///< task.get, task.wait: payload, labels and result
    SWD_TASK_VIEW_LIST,  ///< task.list: neither payload nor result
    SWD_TASK_VIEW_EVENT, ///< events: the result, no payload
} swd_task_view_t;

/// True for succeeded, failed and cancelled.
bool swd_task_terminal(const swd_task_t *t);
/// Writes the task's id ("t-42") into `buf` and returns it.
const char *swd_task_id(const swd_task_t *t, char buf[SWD_ID_MAX]);
/// Writes the id of the last attempt's agent into `buf` and returns it;
/// NULL before the first attempt.
const char *swd_task_agent_id(const swd_task_t *t, char buf[SWD_ID_MAX]);

#endif
