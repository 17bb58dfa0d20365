// The `process` pool (DESIGN.md §6): swarmd starts the pool's `command` as
// local child processes, each speaking the agent side of the RPC API on its
// stdin/stdout (`swarm-agent --stdio`). A child registers itself with
// agent.register over those pipes like any agent, so it is an `rpc` agent
// whose connection happens to be a pipe pair: dispatch, leases, health and
// the agent-loss path (its attempts retried elsewhere) are the same.
//
//   start: `min` children ─▶ uv_spawn (runtime/process) ─▶ pipes adopted by
//          the RPC server ─▶ child: agent.register {name, pool}
//   child exits ─▶ its connection closes ─▶ agent dead, attempts retried
//              └─▶ restart policy: always / on-failure ─▶ respawn after an
//                  exponential backoff (reset once a child lived long enough)
//   free: no more restarts; SIGTERM each child (it deregisters), SIGKILL
//         after the grace; each is reaped, every handle closed
//
// Children find themselves in the environment: SWARMD_POOL and
// SWARMD_AGENT_NAME (swarm-agent's defaults for --pool and --name),
// SWARMD_AGENT_TOKEN when agent auth is on, plus the pool's `env`. The
// command's arguments may use {name}, {pool}, {index} (1..min), {run} (1 for
// a slot's first process, 2 after its first restart, ...), {concurrency} and
// {capabilities} (comma-separated), replaced per child.
#ifndef SWD_AGENTS_PROCESS_POOL_H
#define SWD_AGENTS_PROCESS_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agents/agent.h"
#include "runtime/bus.h"
#include "runtime/clock.h"
#include "runtime/config.h"
#include "runtime/rpc_server.h"

typedef struct swd_process_pool swd_process_pool_t;

typedef struct swd_process_pool_opts {
    uv_loop_t *loop;
    swd_clock_t *clock;
    swd_bus_t *bus;
    swd_agents_t *agents;
    swd_rpc_server_t *server;
    const swd_pool_config_t *cfg; ///< borrowed: must outlive the pool
    /// The pool's max_concurrency was given: each child gets it with
    /// agent.configure once it registered.
    bool apply_concurrency;
    /// The pool's capabilities were given: a child registering other ones
    /// is logged as a warning.
    bool check_capabilities;
    const char *agent_token; ///< copied; NULL when agents need none
    int64_t stop_grace_ms;   ///< SIGTERM → SIGKILL; 0: the default (5000)
} swd_process_pool_opts_t;

typedef struct swd_process_pool_stats {
    uint32_t running;  ///< children alive now
    uint64_t started;  ///< spawns that succeeded, restarts included
    uint64_t restarts; ///< spawns after a child exited
    uint64_t exits;    ///< children that exited while the pool ran
} swd_process_pool_stats_t;

/// A pool of `cfg->kind == SWD_POOL_PROCESS`; nothing starts yet.
swd_process_pool_t *swd_process_pool_new(const swd_process_pool_opts_t *o);
/// Spawns `min` children. 0, or the first spawn's negative libuv code with
/// the reason in `err` (children already started keep running).
int swd_process_pool_start(swd_process_pool_t *pp, char *err, size_t errlen);
const char *swd_process_pool_name(const swd_process_pool_t *pp);
void swd_process_pool_stats(const swd_process_pool_t *pp, swd_process_pool_stats_t *out);
/// The pid of child `index` (0-based), or 0 when it is not running.
int swd_process_pool_pid(const swd_process_pool_t *pp, uint32_t index);
/// Stops restarting, asks every child to stop (SIGTERM, then SIGKILL after
/// the grace), and frees the pool. The children are reaped and their
/// handles closed while the loop runs on (runtime/process.h). Call before
/// the bus, registry, server and clock are closed. NULL is a no-op.
void swd_process_pool_free(swd_process_pool_t *pp);

#endif
