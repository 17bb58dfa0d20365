// A scripted agent transport for the scheduler's unit tests: run() only
// records the attempt it was handed (cookie, task, attempt, when), and the
// test answers later through fake_ok()/fake_fail() with any cookie it likes,
// an old attempt's included. cancel() and configure() are recorded too.
// No sockets, no timers: the test drives everything on a virtual clock.
#ifndef SWD_TESTS_FAKE_AGENT_H
#define SWD_TESTS_FAKE_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agents/agent.h"

/// One attempt handed to the fake agent.
typedef struct fake_run {
    uint64_t cookie;
    char task_id[24];
    uint32_t attempt;
    char type[32];
    int64_t timeout_ms;
    int64_t at_ms; ///< the clock's monotonic time when run() was called
    bool answered; ///< set by fake_ok()/fake_fail()
} fake_run_t;

/// One task.cancel the scheduler sent.
typedef struct fake_cancel {
    char task_id[24];
    uint32_t attempt;
} fake_cancel_t;

/// What run() does besides recording: by default nothing (the test answers
/// later); the others answer or die inside run() itself, as a transport
/// whose write fails at once would.
typedef enum fake_mode {
    FAKE_ASYNC,
    FAKE_SYNC_OK,        ///< answers success inside run()
    FAKE_SYNC_FAIL,      ///< answers a retryable "refused" inside run()
    FAKE_SYNC_FAIL_HARD, ///< answers a non-retryable "refused" inside run()
    FAKE_SYNC_KILL,      ///< the agent dies inside run() (connection lost)
} fake_mode_t;

/// The transport's link: owned by the registry once fake_agent_add()
/// returns, freed by the transport's release hook (agent removed or registry
/// closed). Valid exactly as long as its agent.
typedef struct fake_link {
    swd_agent_t *agent;
    const swd_clock_t *clock;
    fake_run_t *runs; ///< every run() call, in order
    size_t nruns, cap_runs;
    fake_cancel_t *cancels;
    size_t ncancels, cap_cancels;
    uint32_t configured; ///< the last configure() value, 0 when none
    fake_mode_t mode;
    bool cancel_kills; ///< the agent dies inside cancel() (its write fails)
} fake_link_t;

/// The fake transport's operations (name "fake").
extern const swd_transport_ops_t fake_ops;

/// Registers a fake agent named `name` running `cap` (NULL: every type)
/// with `max_concurrency` slots. Returns its link; `link->agent` is the agent.
fake_link_t *fake_agent_add(swd_agents_t *reg, const swd_clock_t *clock, const char *name,
                            const char *cap, uint32_t max_concurrency);

/// The link of agent `a` (which must be a fake agent).
fake_link_t *fake_link_of(const swd_agent_t *a);

/// The last run not answered yet, or NULL.
fake_run_t *fake_pending(fake_link_t *l);
/// The run of `task_id`'s attempt `attempt`, or NULL.
fake_run_t *fake_find(fake_link_t *l, const char *task_id, uint32_t attempt);

/// Answers with success: `output` (a string, packed as msgpack) and `tokens`.
/// `cookie` may be any value, an old attempt's or a made-up one.
void fake_ok_cookie(fake_link_t *l, uint64_t cookie, const char *output, uint64_t tokens);
/// Answers `r` with success and marks it answered.
void fake_ok(fake_link_t *l, fake_run_t *r, const char *output);
/// Answers `r` with the error `code`, marks it answered.
void fake_fail(fake_link_t *l, fake_run_t *r, const char *code, bool retryable,
               int64_t retry_after_ms);

/// Registers an agent with no-op fake operations and no link (for registry
/// tests with thousands of agents).
swd_agent_t *fake_agent_add_bare(swd_agents_t *reg, const char *name, const char *cap,
                                 uint32_t max_concurrency);

#endif
