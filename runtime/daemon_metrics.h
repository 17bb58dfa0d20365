// The metric families of DESIGN.md §4 that exist so far, fed from the
// scheduler's counters and the event bus. Counters are brought up to date
// at scrape time from the scheduler's own totals, so the dispatch path pays
// nothing for them; histograms are observed from task events.
#ifndef SWD_RUNTIME_DAEMON_METRICS_H
#define SWD_RUNTIME_DAEMON_METRICS_H

#include "runtime/metrics.h"
#include "runtime/rpc_server.h"
#include "scheduler/scheduler.h"

typedef struct swd_daemon_metrics swd_daemon_metrics_t;

/// Registers every family in `m` and starts following `bus`.
swd_daemon_metrics_t *swd_daemon_metrics_new(swd_metrics_t *m, swd_bus_t *bus,
                                             const swd_sched_t *sched, const swd_agents_t *agents,
                                             swd_rpc_server_t *rpc);
/// Stops following the bus; the families stay in `m`. NULL is a no-op.
void swd_daemon_metrics_free(swd_daemon_metrics_t *dm);

#endif
