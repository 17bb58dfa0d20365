// Agents: the registry, each agent's health score, eligibility, and the
// per-task-type rankings the dispatcher reads.
//
//   transport (rpc, sim, later process/http)
//      │ swd_agents_add / swd_agent_complete / swd_agent_kill
//      ▼
//   registry ──▶ per-type heap of eligible agents with a free slot, best
//      │         health first (swd_agents_best is O(1), updates O(log n))
//      └──▶ callbacks to the scheduler: ready (a slot opened), complete,
//           lost (the agent died holding attempts)
//
// Eligibility is recomputed in one place, swd_agent_refresh(), from the
// agent's live fields (state, inflight vs max_concurrency, cooldown, circuit,
// ejection), so anything that changes one of them (healing, a retry_after
// cooldown, agent.configure) takes effect at the next dispatch.
#ifndef SWD_AGENTS_AGENT_H
#define SWD_AGENTS_AGENT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/bus.h"
#include "runtime/clock.h"
#include "runtime/heap.h"
#include "runtime/map.h"

typedef enum swd_agent_state {
    SWD_AGENT_IDLE,
    SWD_AGENT_BUSY,
    SWD_AGENT_DRAINING,
    SWD_AGENT_EJECTED,
    SWD_AGENT_DEAD,
    SWD_AGENT_STATE_COUNT
} swd_agent_state_t;

typedef enum swd_circuit {
    SWD_CIRCUIT_CLOSED,
    SWD_CIRCUIT_OPEN,
    SWD_CIRCUIT_HALF_OPEN,
} swd_circuit_t;

const char *swd_agent_state_name(swd_agent_state_t s);

typedef struct swd_agent swd_agent_t;
typedef struct swd_agents swd_agents_t;

/// One attempt handed to a transport.
typedef struct swd_run {
    uint64_t cookie; ///< echoed in swd_agent_complete(): names task and attempt
    const char *task_id;
    uint32_t attempt;
    const char *type;
    const char *payload; ///< msgpack bytes of the payload (nil when none)
    size_t payload_len;
    int64_t timeout_ms;
    uint64_t estimated_tokens;
} swd_run_t;

/// How an attempt ended, as the transport reports it.
typedef struct swd_outcome {
    bool ok;
    const char *output; ///< msgpack bytes of `output` (success)
    size_t output_len;
    uint64_t tokens_used;
    const char *code; ///< error code (failure)
    const char *message;
    bool retryable;
    int64_t retry_after_ms; ///< 0: none
} swd_outcome_t;

/// A transport: how swarmd reaches one kind of agent (Redis-style
/// connection types). `link` in the agent is the transport's own state.
typedef struct swd_transport_ops {
    const char *name; ///< "rpc", "sim", "process", "http"
    void (*run)(swd_agent_t *a, const swd_run_t *run);
    void (*cancel)(swd_agent_t *a, const char *task_id, uint32_t attempt);
    void (*configure)(swd_agent_t *a, uint32_t max_concurrency);
    /// A draining agent has no attempt left (deferred work only: the
    /// agent is mid-update when this runs). May be NULL.
    void (*drained)(swd_agent_t *a);
    /// The registry is done with the agent; drop the link. May be NULL.
    void (*release)(swd_agent_t *a);
} swd_transport_ops_t;

/// Per task type: the agent's ranking node and its record on that type.
typedef struct swd_agent_slot {
    swd_heap_node_t node;
    swd_agent_t *agent;
    uint32_t type;
    double ok_ewma;
    double latency_ewma_ms;
    uint32_t samples;
} swd_agent_slot_t;

struct swd_agent {
    uint64_t seq;
    char id[24];
    char *name;
    char *pool;
    char *labels; ///< msgpack bytes of the labels map, or NULL
    size_t labels_len;
    char **caps; ///< capability names; "*" means every type
    uint32_t ncaps;
    bool wildcard;
    const swd_transport_ops_t *ops;
    void *link;
    swd_agents_t *reg;

    uint32_t max_concurrency;
    uint32_t inflight;
    bool draining;
    bool dead;
    bool degraded; ///< missed heartbeats: no new tasks until it speaks again
    swd_circuit_t circuit;
    int64_t ejected_until_ms;  ///< wall ms, 0 when not ejected
    int64_t cooldown_until_ms; ///< wall ms, 0 when no retry_after cooldown
    const char *reason;        ///< static: why it is unavailable, or NULL
    swd_agent_state_t state;   ///< as last published

    uint64_t completed, failed;
    // The health window: the last `window` outcomes and latencies.
    uint8_t *win_ok;
    uint32_t *win_latency;
    uint32_t win_len, win_head, win_ok_sum;
    uint64_t win_latency_sum;
    double latency_ewma_ms;
    uint32_t last_type; ///< for health_parts in agent.list
    bool has_last_type;

    swd_agent_slot_t *slots; ///< one per type the agent can run
    uint32_t nslots;
    bool eligible; ///< in its type heaps
    bool drained_told;

    int64_t registered_ms, last_seen_ms, dead_ms;
    swd_timer_t cooldown_timer;
    swd_timer_t retention_timer;
    void *sched;   ///< the scheduler's: its list of this agent's running attempts
    char *metrics; ///< msgpack bytes of the last heartbeat's metrics map
    size_t metrics_len;
    swd_agent_t *prev, *next; ///< registration order
};

typedef struct swd_agents_config {
    uint32_t window;           ///< health.window
    int64_t target_latency_ms; ///< health.target_latency_ms
    int64_t dead_retention_ms; ///< agents.dead_retention_s × 1000
    uint32_t max_types;        ///< distinct task types tracked
} swd_agents_config_t;

typedef struct swd_agents_cbs {
    /// An agent may take a task now (registered, slot freed, cooldown over).
    void (*ready)(swd_agent_t *a, void *data);
    /// A transport finished an attempt (fencing is the scheduler's job).
    void (*complete)(swd_agent_t *a, uint64_t cookie, const swd_outcome_t *o, void *data);
    /// The agent died; every attempt it holds is lost.
    void (*lost)(swd_agent_t *a, void *data);
    void *data;
} swd_agents_cbs_t;

typedef struct swd_type {
    char *name;
    swd_heap_t agents; ///< eligible agents with a free slot, best first
} swd_type_t;

struct swd_agents {
    swd_clock_t *clock;
    swd_bus_t *bus;
    swd_agents_config_t cfg;
    swd_agents_cbs_t cbs;
    swd_u64map_t by_seq;
    swd_agent_t *head, *tail;
    uint64_t next_seq;
    uint32_t count[SWD_AGENT_STATE_COUNT];
    uint32_t total;
    swd_type_t *types;
    uint32_t ntypes;
    swd_strmap_t type_ids; ///< name -> type index + 1
};

/// What a transport knows of a new agent.
typedef struct swd_agent_spec {
    const char *name;
    const char *pool;        ///< NULL: "default"
    const char *const *caps; ///< NULL: {"*"}
    uint32_t ncaps;
    uint32_t max_concurrency;
    const char *labels; ///< msgpack bytes of a map, or NULL
    size_t labels_len;
} swd_agent_spec_t;

void swd_agents_init(swd_agents_t *r, swd_clock_t *clock, swd_bus_t *bus,
                     const swd_agents_config_t *cfg, const swd_agents_cbs_t *cbs);
/// Releases every agent (transports' release hooks run) and frees all.
void swd_agents_close(swd_agents_t *r);

/// Registers an agent reached through `ops`/`link`; publishes `registered`.
swd_agent_t *swd_agents_add(swd_agents_t *r, const swd_agent_spec_t *spec,
                            const swd_transport_ops_t *ops, void *link);
/// Forgets an agent at once (after agent.deregister); publishes
/// `deregistered`. It must hold no attempts.
void swd_agents_remove(swd_agents_t *r, swd_agent_t *a);
swd_agent_t *swd_agents_find(const swd_agents_t *r, const char *id, size_t len);

/// The index of task type `name`, interned on first use; -1 when the type
/// table is full.
int swd_agents_type(swd_agents_t *r, const char *name, size_t len);
/// The best eligible agent with a free slot for `type`, preferring one
/// other than `avoid` (may be NULL); NULL when none.
swd_agent_t *swd_agents_best(const swd_agents_t *r, uint32_t type, const swd_agent_t *avoid);
/// True when some agent (eligible or not, not dead) could run `type`.
bool swd_agents_can_run(const swd_agents_t *r, uint32_t type);

/// The dispatcher gave `a` an attempt of `type`.
void swd_agent_started(swd_agent_t *a, uint32_t type);
/// An attempt of `type` on `a` ended; `latency_ms` < 0 when it never ran
/// to an answer (lost, cancelled), which leaves the health window alone.
void swd_agent_finished(swd_agent_t *a, uint32_t type, bool ok, int64_t latency_ms);
/// Re-derives state and eligibility from the live fields; publishes a state
/// change; calls `ready` when the agent can take a task.
void swd_agent_refresh(swd_agent_t *a);
/// No new tasks; the agent shows `draining`.
void swd_agent_drain(swd_agent_t *a);
/// Marks the agent dead (lost connection, missed lease): its attempts are
/// failed through `lost`, and it is forgotten after dead_retention.
void swd_agent_kill(swd_agent_t *a, const char *reason);
/// Keeps the agent from new tasks until `until_wall_ms` (retry_after).
void swd_agent_cooldown(swd_agent_t *a, int64_t until_wall_ms);
void swd_agent_set_max_concurrency(swd_agent_t *a, uint32_t n);
/// A transport's report of an attempt's end; forwards to `complete`.
void swd_agent_complete(swd_agent_t *a, uint64_t cookie, const swd_outcome_t *o);

/// The health score for `type` and its four weighted parts
/// {success, latency, load, affinity}, which sum to it.
double swd_agent_health(const swd_agent_t *a, int type, double parts[4]);
swd_agent_state_t swd_agent_state(const swd_agent_t *a);
/// Packs the Agent object of DESIGN.md §2.
void swd_agent_pack(const swd_agent_t *a, msgpack_packer *pk);

#endif
