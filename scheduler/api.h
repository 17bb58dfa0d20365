// The client methods of DESIGN.md §2 (task.*, agent.list, agent.drain,
// swarm.stats, subscribe), registered on the RPC server. The HTTP status
// endpoint reuses the same packing functions, so both show one object.
#ifndef SWD_SCHEDULER_API_H
#define SWD_SCHEDULER_API_H

#include "runtime/config.h"
#include "runtime/rpc_server.h"
#include "scheduler/scheduler.h"

typedef struct swd_api {
    swd_sched_t *sched;
    swd_agents_t *agents;
    swd_bus_t *bus;
    const swd_config_t *cfg;
} swd_api_t;

void swd_api_register(swd_api_t *api, swd_rpc_server_t *server);
/// `{queue, agents, tasks, tokens, tuner, healing, scaling}` (swarm.stats).
void swd_api_pack_stats(const swd_api_t *api, msgpack_packer *pk);
/// `{agents: [...]}` (agent.list).
void swd_api_pack_agents(const swd_api_t *api, msgpack_packer *pk);

#endif
