// The daemon: every module wired together on one loop. Used by
// `swarmd serve`, and by `swarmd run` which drives a workload through it.
//
//   signal ─▶ drain: /readyz 503, listeners closed, submits refused,
//             running tasks finish (≤ scheduler.shutdown_grace_ms) ─▶ stop
#ifndef SWD_RUNTIME_DAEMON_H
#define SWD_RUNTIME_DAEMON_H

#include <stdbool.h>
#include <uv.h>

#include "agents/agent.h"
#include "agents/rpc_agent.h"
#include "runtime/bus.h"
#include "runtime/clock.h"
#include "runtime/config.h"
#include "runtime/rpc_server.h"
#include "scheduler/api.h"
#include "scheduler/scheduler.h"

typedef struct swd_daemon {
    uv_loop_t loop;
    swd_config_t *cfg; ///< borrowed
    swd_clock_t clock;
    swd_bus_t bus;
    swd_agents_t agents;
    swd_sched_t sched;
    swd_api_t api;
    swd_rpc_server_t *rpc;
    swd_rpc_agents_t *rpc_agents;
    swd_log_sink_t *log_sink;
    uv_signal_t sigint, sigterm;
    swd_timer_t grace_timer;
    swd_timer_t stop_timer;
    char rpc_addr[80];
    char http_addr[80];
    bool ready;
    bool draining;
    bool stopped;
    int signals;
    int exit_code;
} swd_daemon_t;

/// Builds the daemon from `cfg` and binds every listener. On failure the
/// reason is in `err` and everything is torn down: 1 for a bind failure.
int swd_daemon_start(swd_daemon_t *d, swd_config_t *cfg, char *err, size_t errlen);
/// Runs the loop until the daemon stopped; returns the exit code.
int swd_daemon_run(swd_daemon_t *d);
/// Starts the graceful drain (what the first SIGTERM does).
void swd_daemon_drain(swd_daemon_t *d);
/// Writes the ready file (atomically, by rename): {"rpc","http","pid"}.
int swd_daemon_write_ready_file(const swd_daemon_t *d, const char *path);

#endif
