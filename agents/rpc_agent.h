// The `rpc` transport: agents that connect over TCP, a unix socket or
// pipes and speak the agent methods of DESIGN.md §2 (agent.register,
// agent.heartbeat, agent.deregister; swarmd sends task.run, task.cancel,
// agent.configure). It also keeps each agent's lease: an agent silent for
// heartbeat_ms × degraded_after takes no new tasks, and for × dead_after
// is dead.
#ifndef SWD_AGENTS_RPC_AGENT_H
#define SWD_AGENTS_RPC_AGENT_H

#include "agents/agent.h"
#include "runtime/rpc_server.h"

typedef struct swd_rpc_agents_opts {
    int64_t heartbeat_ms;
    uint32_t degraded_after;
    uint32_t dead_after;
} swd_rpc_agents_opts_t;

typedef struct swd_rpc_agents swd_rpc_agents_t;

/// Registers the agent methods on `server`.
swd_rpc_agents_t *swd_rpc_agents_new(swd_agents_t *reg, swd_rpc_server_t *server,
                                     swd_clock_t *clock, const swd_rpc_agents_opts_t *opts);
/// Call after the server and the registry are closed. NULL is a no-op.
void swd_rpc_agents_free(swd_rpc_agents_t *ra);
/// Refuses new registrations (shutdown).
void swd_rpc_agents_refuse(swd_rpc_agents_t *ra);

#endif
