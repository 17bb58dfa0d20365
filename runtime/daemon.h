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
#include "runtime/daemon_metrics.h"
#include "runtime/metrics.h"
#include "runtime/status_http.h"
#include "runtime/rpc_server.h"
#include "scheduler/api.h"
#include "scheduler/scheduler.h"

struct swd_process_pool;
struct swd_http_pool;
typedef struct swd_daemon swd_daemon_t;

/// What `swarmd run` changes in the daemon's behaviour. Set after
/// swd_daemon_start() (it clears the struct); every callback may be NULL.
typedef struct swd_daemon_hooks {
    /// Replaces the default SIGINT/SIGTERM handling (drain; a second signal
    /// exits at once).
    void (*signal)(swd_daemon_t *d, int signum, void *data);
    /// Runs once when the teardown begins, while every module is still alive.
    void (*stopping)(swd_daemon_t *d, void *data);
    void *data;
} swd_daemon_hooks_t;

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
    swd_metrics_t *metrics;
    swd_daemon_metrics_t *daemon_metrics;
    swd_status_t *status;
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
    struct swd_process_pool **pools; ///< owned: one per `process` pool of cfg->pools
    size_t npools;
    struct swd_http_pool **http_pools; ///< owned: one per `http` pool of cfg->pools
    size_t nhttp_pools;
    swd_daemon_hooks_t hooks;
} swd_daemon_t;

/// Builds the daemon from `cfg`, binds every listener and starts the
/// process and http pools. On failure the reason is in `err` and everything
/// is torn down: 1 for a bind (or spawn) failure, 2 for pools it cannot run
/// (an http pool naming an unset `${VAR}`), refused before anything starts.
int swd_daemon_start(swd_daemon_t *d, swd_config_t *cfg, char *err, size_t errlen);
/// Runs the loop until the daemon stopped; returns the exit code.
int swd_daemon_run(swd_daemon_t *d);
/// Starts the graceful drain (what the first SIGTERM does).
void swd_daemon_drain(swd_daemon_t *d);
/// 0 when every pool of `cfg` can be started, else 2 with the reason in
/// `err` (an http pool's `${VAR}` that the environment does not set).
int swd_daemon_check_pools(const swd_config_t *cfg, char *err, size_t errlen);
/// Writes the ready file (atomically, by rename): {"rpc","http","pid"}.
int swd_daemon_write_ready_file(const swd_daemon_t *d, const char *path);

#endif
