// `swarm-agent --exec CMD`: one `/bin/sh -c CMD` child per task.
//
//   swd_exec_start ──uv_spawn──▶ child (own process group)
//        payload ──▶ stdin (then EOF)
//        stdout ───▶ output (bounded)          ┐
//        stderr ───▶ last bytes (tokens_used=N) ├─▶ all done ──▶ cb(result)
//        exit ─────▶ status; strays killed      ┘
//   timeout / cancel ──▶ SIGTERM to the group ──grace──▶ SIGKILL
//
// The runner knows nothing of RPC: it reports one result through a callback
// and the agent turns it into a task.run answer.
#ifndef SWD_AGENTS_SWARM_AGENT_EXEC_H
#define SWD_AGENTS_SWARM_AGENT_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/clock.h"

/// Output beyond this many bytes fails the task with `too_large`.
#define SWD_EXEC_MAX_OUTPUT ((size_t)16 * 1024 * 1024)
/// How long a signalled child gets before SIGKILL.
#define SWD_EXEC_KILL_GRACE_MS 2000

typedef struct swd_exec swd_exec_t;

/// What to run. Every pointer is borrowed for the duration of swd_exec_start().
typedef struct swd_exec_spec {
    const char *command; ///< handed to `/bin/sh -c`
    const char *task_id; ///< SWARM_TASK_ID
    const char *type;    ///< SWARM_TASK_TYPE
    uint64_t attempt;    ///< SWARM_ATTEMPT
    const char *input;   ///< bytes for the child's stdin; may be NULL when input_len is 0
    size_t input_len;
    int64_t timeout_ms; ///< kill the child after this long; 0: no limit
} swd_exec_spec_t;

/// How a command ended. Everything is borrowed for the callback's duration.
typedef struct swd_exec_result {
    bool cancelled;     ///< swd_exec_cancel() was called: answer nothing
    bool ok;            ///< exit status 0 and output within bounds
    const char *output; ///< stdout (ok only), `output_len` bytes, not NUL-terminated
    size_t output_len;
    uint64_t tokens_used; ///< from a last stderr line `tokens_used=N`, else 0
    const char *code;     ///< the task error code when !ok ("exit_3", "timeout", ...)
    const char *message;  ///< human text when !ok
    bool retryable;
} swd_exec_result_t;

/// Called exactly once per started command, after the child has been reaped.
/// `x` stays valid only during the call; it frees itself afterwards.
typedef void (*swd_exec_done_cb)(swd_exec_t *x, const swd_exec_result_t *r, void *data);

/// Starts the command. On success `*out` is the runner and `cb` will run
/// once. On failure (a negative libuv code) `cb` never runs and nothing is
/// left for the caller to free. `clock` must outlive the callback.
int swd_exec_start(uv_loop_t *loop, swd_clock_t *clock, const swd_exec_spec_t *spec,
                   swd_exec_done_cb cb, void *data, swd_exec_t **out);

/// Stops the command: SIGTERM to its process group (SIGKILL at once when
/// `force`, else after SWD_EXEC_KILL_GRACE_MS). The callback still runs once
/// the child is reaped, with `cancelled` set; when the child is already
/// reaped that happens before this returns, so `x` may be gone afterwards.
/// Call it only before the callback has run; calling it again escalates to
/// `force`.
void swd_exec_cancel(swd_exec_t *x, bool force);

#endif
