#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "proto/json.h"
#include "agents/http_agent.h"
#include "agents/process_pool.h"
#include "runtime/daemon.h"
#include "runtime/process.h"
#include "runtime/log.h"

// Log records reach `subscribe` clients as events on the bus's log topic.
static void pack_log_record(const swd_event_t *ev, msgpack_packer *pk) {
    swd_json_pack(pk, ev->subject);
}

static void on_log_record(const json_t *record, const char *line, void *data) {
    swd_daemon_t *d = data;
    swd_event_t ev = {
        .topic = SWD_TOPIC_LOG,
        .event = "record",
        .ts = json_integer_value(json_object_get(record, "ts")),
        .subject = record,
        .pack = pack_log_record,
    };
    swd_bus_publish(&d->bus, &ev);
}

static void stop(swd_daemon_t *d);

static void on_grace_over(swd_timer_t *t) {
    swd_daemon_t *d = t->data;
    swd_log_warn("daemon", "shutdown grace period over", "{s:I}", "grace_ms",
                 (json_int_t)d->cfg->scheduler.shutdown_grace_ms);
    stop(d);
}

static void on_stop_timer(swd_timer_t *t) {
    stop(t->data);
}

// Runs inside the scheduler's own event delivery, so the teardown waits for
// the next loop turn instead of freeing what the caller still uses.
static void on_drained(void *data) {
    swd_daemon_t *d = data;
    swd_log_info("daemon", "no task running; stopping", NULL);
    swd_timer_start(&d->stop_timer, 0);
}

void swd_daemon_drain(swd_daemon_t *d) {
    if (d->draining) {
        return;
    }
    d->draining = true;
    d->ready = false;
    swd_log_info("daemon", "draining", "{s:I,s:I}", "running",
                 (json_int_t)d->sched.count[SWD_TASK_RUNNING], "grace_ms",
                 (json_int_t)d->cfg->scheduler.shutdown_grace_ms);
    swd_rpc_server_stop_listening(d->rpc);
    swd_rpc_agents_refuse(d->rpc_agents);
    swd_timer_start(&d->grace_timer, d->cfg->scheduler.shutdown_grace_ms);
    swd_sched_drain(&d->sched, on_drained, d);
}

static void on_signal(uv_signal_t *h, int signum) {
    swd_daemon_t *d = h->data;
    if (d->hooks.signal != NULL) {
        d->hooks.signal(d, signum, d->hooks.data);
        return;
    }
    if (++d->signals > 1) {
        // A second signal: the operator wants out now.
        swd_log_warn("daemon", "second signal: exiting at once", "{s:i}", "signal", signum);
        swd_process_kill_all(); // no child outlives us
        _exit(1);
    }
    swd_log_info("daemon", "signal received", "{s:i}", "signal", signum);
    swd_daemon_drain(d);
}

static void close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

// Children are asked to stop (SIGTERM, SIGKILL after the grace) before the
// modules their connections reach are closed; the loop runs on until every
// one of them is reaped.
// Http pools stop their requests and close their connections; their
// agents stay registered (answering nothing) until the registry closes.
static void stop_pools(swd_daemon_t *d) {
    for (size_t i = 0; i < d->npools; i++) {
        swd_process_pool_free(d->pools[i]);
    }
    free(d->pools);
    d->pools = NULL;
    d->npools = 0;
    for (size_t i = 0; i < d->nhttp_pools; i++) {
        swd_http_pool_free(d->http_pools[i]);
    }
    free(d->http_pools);
    d->http_pools = NULL;
    d->nhttp_pools = 0;
}

static int start_http_pool(swd_daemon_t *d, const swd_pool_config_t *pc, char *err, size_t errlen) {
    if (d->http_pools == NULL) {
        d->http_pools = calloc(d->cfg->n_pools, sizeof(swd_http_pool_t *));
    }
    swd_http_pool_opts_t ho = {
        .loop = &d->loop,
        .clock = &d->clock,
        .agents = &d->agents,
        .cfg = pc,
        .max_body_bytes = d->cfg->limits.max_message_bytes,
    };
    swd_http_pool_t *hp = swd_http_pool_new(&ho, err, errlen);
    if (hp == NULL) {
        return 2;
    }
    d->http_pools[d->nhttp_pools++] = hp;
    return 0;
}

static int start_pools(swd_daemon_t *d, char *err, size_t errlen) {
    const swd_config_t *cfg = d->cfg;
    d->pools = calloc(cfg->n_pools ? cfg->n_pools : 1, sizeof(swd_process_pool_t *));
    for (size_t i = 0; i < cfg->n_pools; i++) {
        const swd_pool_config_t *pc = &cfg->pools[i];
        if (pc->kind == SWD_POOL_HTTP) {
            if (start_http_pool(d, pc, err, errlen) != 0) {
                return 1;
            }
            continue;
        }
        if (pc->kind != SWD_POOL_PROCESS) {
            continue; // remote agents connect by themselves
        }
        char key[200];
        snprintf(key, sizeof(key), "pools.%s.max_concurrency", pc->name);
        const char *conc_src = swd_config_source(cfg, key);
        snprintf(key, sizeof(key), "pools.%s.capabilities", pc->name);
        const char *caps_src = swd_config_source(cfg, key);
        swd_process_pool_opts_t po = {
            .loop = &d->loop,
            .clock = &d->clock,
            .bus = &d->bus,
            .agents = &d->agents,
            .server = d->rpc,
            .cfg = pc,
            .apply_concurrency = conc_src != NULL && strcmp(conc_src, "default") != 0,
            .check_capabilities = caps_src != NULL && strcmp(caps_src, "default") != 0,
            .agent_token = cfg->auth.agent_token ? cfg->auth.agent_token : cfg->auth.token,
        };
        d->pools[d->npools] = swd_process_pool_new(&po);
        if (swd_process_pool_start(d->pools[d->npools++], err, errlen) != 0) {
            return 1;
        }
    }
    return 0;
}

int swd_daemon_check_pools(const swd_config_t *cfg, char *err, size_t errlen) {
    for (size_t i = 0; i < cfg->n_pools; i++) {
        if (cfg->pools[i].kind == SWD_POOL_HTTP &&
            swd_http_pool_check(&cfg->pools[i], err, errlen) != 0) {
            return 2;
        }
    }
    return 0;
}

// Tears everything down; the loop then runs dry and closes.
static void stop(swd_daemon_t *d) {
    if (d->stopped) {
        return;
    }
    d->stopped = true;
    if (d->hooks.stopping != NULL) {
        d->hooks.stopping(d, d->hooks.data);
    }
    stop_pools(d);
    swd_timer_stop(&d->grace_timer);
    swd_timer_stop(&d->stop_timer);
    swd_sched_abandon(&d->sched);
    swd_status_close(d->status);
    d->status = NULL;
    if (d->rpc != NULL) {
        swd_rpc_server_close(d->rpc);
        d->rpc = NULL;
    }
    swd_daemon_metrics_free(d->daemon_metrics);
    d->daemon_metrics = NULL;
    if (d->log_sink != NULL) {
        swd_log_remove_sink(d->log_sink);
        d->log_sink = NULL;
    }
    swd_agents_close(&d->agents);
    swd_sched_close(&d->sched);
    swd_rpc_agents_free(d->rpc_agents);
    d->rpc_agents = NULL;
    swd_bus_close(&d->bus);
    swd_metrics_free(d->metrics);
    d->metrics = NULL;
    swd_clock_close(&d->clock);
    close_handle((uv_handle_t *)&d->sigint);
    close_handle((uv_handle_t *)&d->sigterm);
}

static void build(swd_daemon_t *d, swd_config_t *cfg) {
    swd_clock_init_real(&d->clock, &d->loop);
    swd_log_setup(cfg->log.level, (size_t)cfg->log.ring, &d->clock, -1);
    swd_bus_init(&d->bus);
    swd_sched_config_t sc = {
        .max_queued = (uint64_t)cfg->limits.max_queued,
        .default_timeout_ms = cfg->scheduler.default_timeout_ms,
        .default_max_retries = (uint32_t)cfg->scheduler.default_max_retries,
        .backoff_base_ms = cfg->scheduler.backoff_base_ms,
        .backoff_max_ms = cfg->scheduler.backoff_max_ms,
        .aging_ms = cfg->scheduler.aging_ms,
        .retain_finished_ms = cfg->scheduler.retain_finished_s * 1000,
        .retain_finished_max = (uint64_t)cfg->scheduler.retain_finished_max,
        .seed = (uint64_t)getpid() ^ (uint64_t)swd_clock_wall(&d->clock),
    };
    swd_sched_init(&d->sched, &d->clock, &d->bus, &d->agents, &sc);
    swd_agents_config_t ac = {
        .window = (uint32_t)cfg->health.window,
        .target_latency_ms = cfg->health.target_latency_ms,
        .dead_retention_ms = cfg->agents.dead_retention_s * 1000,
    };
    swd_agents_cbs_t cbs = swd_sched_agent_callbacks(&d->sched);
    swd_agents_init(&d->agents, &d->clock, &d->bus, &ac, &cbs);
    swd_rpc_server_opts_t ro = {
        .max_message_bytes = (size_t)cfg->limits.max_message_bytes,
        .max_write_buffer_bytes = (size_t)cfg->limits.max_write_buffer_bytes,
        .max_connections = (uint32_t)cfg->limits.max_connections,
        .token = cfg->auth.token,
        .agent_token = cfg->auth.agent_token,
    };
    d->rpc = swd_rpc_server_new(&d->loop, &ro);
    swd_rpc_agents_opts_t rao = {
        .heartbeat_ms = cfg->agents.heartbeat_ms,
        .degraded_after = (uint32_t)cfg->agents.degraded_after,
        .dead_after = (uint32_t)cfg->agents.dead_after,
    };
    d->rpc_agents = swd_rpc_agents_new(&d->agents, d->rpc, &d->clock, &rao);
    d->api = (swd_api_t){&d->sched, &d->agents, &d->bus, cfg};
    swd_api_register(&d->api, d->rpc);
    d->log_sink = swd_log_add_sink(on_log_record, d);
    d->metrics = swd_metrics_new();
    d->daemon_metrics = swd_daemon_metrics_new(d->metrics, &d->bus, &d->sched, &d->agents, d->rpc);
    d->status = swd_status_new(&d->loop, &d->api, &d->ready, d->metrics);
    swd_timer_init(&d->clock, &d->grace_timer, on_grace_over, d);
    swd_timer_init(&d->clock, &d->stop_timer, on_stop_timer, d);
}

static int listen_all(swd_daemon_t *d, char *err, size_t errlen) {
    const swd_config_t *cfg = d->cfg;
    snprintf(d->rpc_addr, sizeof(d->rpc_addr), "%s", "");
    snprintf(d->http_addr, sizeof(d->http_addr), "%s", "");
    if (cfg->listen.rpc != NULL &&
        swd_rpc_server_listen_tcp(d->rpc, cfg->listen.rpc, d->rpc_addr, sizeof(d->rpc_addr), err,
                                  errlen) != 0) {
        return 1;
    }
    if (cfg->listen.http != NULL && swd_status_listen(d->status, cfg->listen.http, d->http_addr,
                                                      sizeof(d->http_addr), err, errlen) != 0) {
        return 1;
    }
    if (cfg->listen.unix_path != NULL &&
        swd_rpc_server_listen_unix(d->rpc, cfg->listen.unix_path, err, errlen) != 0) {
        return 1;
    }
    return 0;
}

int swd_daemon_start(swd_daemon_t *d, swd_config_t *cfg, char *err, size_t errlen) {
    memset(d, 0, sizeof(*d));
    d->cfg = cfg;
    int pr = swd_daemon_check_pools(cfg, err, errlen);
    if (pr != 0) {
        return pr;
    }
    uv_loop_init(&d->loop);
    build(d, cfg);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sigterm);
    d->sigint.data = d->sigterm.data = d;
    if (listen_all(d, err, errlen) != 0) {
        stop(d);
        uv_run(&d->loop, UV_RUN_DEFAULT);
        uv_loop_close(&d->loop);
        return 1;
    }
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    d->ready = true;
    swd_log_info("daemon", "listening", "{s:s,s:s?,s:s?,s:i}", "rpc", d->rpc_addr, "http",
                 d->http_addr[0] ? d->http_addr : NULL, "unix", cfg->listen.unix_path, "pid",
                 (int)getpid());
    if (start_pools(d, err, errlen) != 0) {
        stop(d);
        uv_run(&d->loop, UV_RUN_DEFAULT);
        uv_loop_close(&d->loop);
        return 1;
    }
    return 0;
}

int swd_daemon_run(swd_daemon_t *d) {
    uv_run(&d->loop, UV_RUN_DEFAULT);
    int r = uv_loop_close(&d->loop);
    if (r != 0) {
        fprintf(stderr, "swarmd: loop still has open handles at exit (%s)\n", uv_strerror(r));
        d->exit_code = d->exit_code ? d->exit_code : 1;
    }
    swd_log_shutdown();
    return d->exit_code;
}

int swd_daemon_write_ready_file(const swd_daemon_t *d, const char *path) {
    json_t *j = json_pack("{s:s,s:s?,s:i}", "rpc", d->rpc_addr, "http",
                          d->http_addr[0] ? d->http_addr : NULL, "pid", (int)getpid());
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    int r = json_dump_file(j, tmp, JSON_COMPACT);
    json_decref(j);
    if (r == 0 && rename(tmp, path) != 0) {
        r = -1;
    }
    if (r != 0) {
        unlink(tmp);
    }
    free(tmp);
    return r;
}
