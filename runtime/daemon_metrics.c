#include <stdlib.h>

#include "proto/alloc.h"
#include "runtime/daemon_metrics.h"

struct swd_daemon_metrics {
    swd_metrics_t *m;
    swd_bus_t *bus;
    swd_bus_sub_t *sub;
    const swd_sched_t *sched;
    const swd_agents_t *agents;
    swd_rpc_server_t *rpc;
    // Counters mirrored from the scheduler's totals at scrape time.
    swd_metric_t *submitted, *retries, *timeouts, *stale, *tokens;
    swd_metric_t *finished[3];
    swd_sched_stats_t seen; // the totals already added to the counters
    swd_metric_family_t *queue_depth, *agents_by_state, *health, *inflight, *rpc_requests;
    swd_metric_t *duration, *queue_wait, *connections;
};

static const char *const finished_states[3] = {"succeeded", "failed", "cancelled"};

static void add_delta(swd_metric_t *c, uint64_t now, uint64_t *seen) {
    if (now > *seen) {
        swd_counter_add(c, (double)(now - *seen));
        *seen = now;
    }
}

static void collect(swd_metrics_t *m, void *data) {
    swd_daemon_metrics_t *dm = data;
    const swd_sched_stats_t *st = &dm->sched->stats;
    add_delta(dm->submitted, st->submitted, &dm->seen.submitted);
    add_delta(dm->retries, st->retries, &dm->seen.retries);
    add_delta(dm->timeouts, st->timeouts, &dm->seen.timeouts);
    add_delta(dm->stale, st->stale, &dm->seen.stale);
    add_delta(dm->tokens, st->tokens_consumed, &dm->seen.tokens_consumed);
    add_delta(dm->finished[0], st->succeeded, &dm->seen.succeeded);
    add_delta(dm->finished[1], st->failed, &dm->seen.failed);
    add_delta(dm->finished[2], st->cancelled, &dm->seen.cancelled);
    for (int s = SWD_TASK_QUEUED; s <= SWD_TASK_RUNNING; s++) {
        const char *v[] = {swd_task_state_names[s]};
        swd_gauge_set(swd_metric_child(dm->queue_depth, v), (double)dm->sched->count[s]);
    }
    for (int s = 0; s < SWD_AGENT_STATE_COUNT; s++) {
        const char *v[] = {swd_agent_state_name((swd_agent_state_t)s)};
        swd_gauge_set(swd_metric_child(dm->agents_by_state, v), dm->agents->count[s]);
    }
    // Per-agent series follow the live registry: departed agents vanish.
    swd_metric_family_clear(dm->health);
    swd_metric_family_clear(dm->inflight);
    for (const swd_agent_t *a = dm->agents->head; a != NULL; a = a->next) {
        const char *v[] = {a->id};
        double parts[4];
        swd_gauge_set(swd_metric_child(dm->health, v),
                      swd_agent_health(a, a->has_last_type ? (int)a->last_type : -1, parts));
        swd_gauge_set(swd_metric_child(dm->inflight, v), a->inflight);
    }
    swd_gauge_set(dm->connections, swd_rpc_server_connections(dm->rpc));
}

static void on_task(const swd_event_t *ev, void *data) {
    swd_daemon_metrics_t *dm = data;
    const swd_task_t *t = ev->subject;
    if (t->state == SWD_TASK_RUNNING && t->attempts == 1) {
        swd_histogram_observe(dm->queue_wait, (double)(t->started_ms - t->submitted_ms) / 1000.0);
    } else if (t->state == SWD_TASK_SUCCEEDED || t->state == SWD_TASK_FAILED) {
        if (t->started_ms > 0) {
            swd_histogram_observe(dm->duration, (double)(t->finished_ms - t->started_ms) / 1000.0);
        }
    }
}

static void on_rpc(const char *method, const char *code, void *data) {
    swd_daemon_metrics_t *dm = data;
    const char *v[] = {method, code ? code : "ok"};
    swd_counter_inc(swd_metric_child(dm->rpc_requests, v));
}

static swd_metric_t *counter(swd_metrics_t *m, const char *name, const char *help) {
    return swd_metric_single(swd_metrics_counter(m, name, help, 0, NULL));
}

static void register_families(swd_daemon_metrics_t *dm) {
    swd_metrics_t *m = dm->m;
    static const char *const state[] = {"state"};
    static const char *const agent[] = {"agent"};
    static const char *const rpc[] = {"method", "result"};
    dm->submitted = counter(m, "swarmd_tasks_submitted_total", "Tasks accepted by task.submit.");
    swd_metric_family_t *fin = swd_metrics_counter(m, "swarmd_tasks_finished_total",
                                                   "Tasks that ended, by final state.", 1, state);
    for (int i = 0; i < 3; i++) {
        dm->finished[i] = swd_metric_child(fin, &finished_states[i]);
    }
    dm->retries = counter(m, "swarmd_task_retries_total", "Attempts retried after a failure.");
    dm->timeouts = counter(m, "swarmd_task_timeouts_total", "Attempts that hit their timeout.");
    dm->stale = counter(m, "swarmd_stale_results_total",
                        "Answers from an attempt that was no longer current, ignored.");
    dm->queue_depth =
        swd_metrics_gauge(m, "swarmd_queue_depth", "Tasks waiting or running, by state.", 1, state);
    dm->duration = swd_metric_single(swd_metrics_histogram(
        m, "swarmd_task_duration_seconds", "Run time of a task's last attempt.", 0, NULL, 0, NULL));
    dm->queue_wait = swd_metric_single(
        swd_metrics_histogram(m, "swarmd_task_queue_wait_seconds",
                              "Time from submit to the first attempt's start.", 0, NULL, 0, NULL));
    dm->agents_by_state =
        swd_metrics_gauge(m, "swarmd_agents", "Registered agents, by state.", 1, state);
    dm->health =
        swd_metrics_gauge(m, "swarmd_agent_health", "Health score of an agent (0..1).", 1, agent);
    dm->inflight =
        swd_metrics_gauge(m, "swarmd_agent_inflight", "Attempts running on an agent.", 1, agent);
    dm->tokens = counter(m, "swarmd_tokens_consumed_total", "Tokens agents reported as used.");
    dm->rpc_requests =
        swd_metrics_counter(m, "swarmd_rpc_requests_total",
                            "RPC requests, by method and result (ok or error code).", 2, rpc);
    dm->connections = swd_metric_single(
        swd_metrics_gauge(m, "swarmd_rpc_connections", "Open RPC connections.", 0, NULL));
    swd_metrics_add_process(m);
}

swd_daemon_metrics_t *swd_daemon_metrics_new(swd_metrics_t *m, swd_bus_t *bus,
                                             const swd_sched_t *sched, const swd_agents_t *agents,
                                             swd_rpc_server_t *rpc) {
    swd_daemon_metrics_t *dm = swd_xcalloc(1, sizeof(*dm));
    dm->m = m;
    dm->bus = bus;
    dm->sched = sched;
    dm->agents = agents;
    dm->rpc = rpc;
    register_families(dm);
    swd_metrics_on_collect(m, collect, dm);
    dm->sub = swd_bus_subscribe(bus, SWD_TOPIC_BIT(SWD_TOPIC_TASK), on_task, dm);
    swd_rpc_server_set_observer(rpc, on_rpc, dm);
    return dm;
}

void swd_daemon_metrics_free(swd_daemon_metrics_t *dm) {
    if (dm == NULL) {
        return;
    }
    swd_metrics_off_collect(dm->m, collect, dm);
    swd_bus_unsubscribe(dm->bus, dm->sub);
    free(dm);
}
