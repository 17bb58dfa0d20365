// The `sim` transport: an in-process simulated agent driven by the clock,
// with the same model as `swarm-agent --sim`. On a virtual clock it lets
// the scheduler and its controllers run with no sockets, seeded and
// deterministic, far faster than real time (tests, benchmarks, what-ifs).
#ifndef SWD_AGENTS_SIM_AGENT_H
#define SWD_AGENTS_SIM_AGENT_H

#include "agents/agent.h"
#include "agents/sim_model.h"

/// Registers a simulated agent answering through `clock`'s timers.
swd_agent_t *swd_sim_agent_add(swd_agents_t *reg, swd_clock_t *clock, const swd_agent_spec_t *spec,
                               const swd_sim_params_t *params);

#endif
