#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/process_pool.h"
#include "proto/alloc.h"
#include "runtime/log.h"
#include "runtime/process.h"
#include "runtime/rpc_conn.h"

extern char **environ;

// Restart backoff: the first restart waits BASE, each further crash in a
// row doubles it up to MAX. A child that lived STABLE_MS counts as healthy
// again, so a crash after a long run restarts quickly.
#define RESTART_BASE_MS 250
#define RESTART_MAX_MS 30000
#define STABLE_MS 10000
#define DEFAULT_STOP_GRACE_MS 5000

typedef struct child {
    swd_process_pool_t *pool;
    uint32_t index; // 0-based; the name uses index + 1
    char name[160];
    swd_process_t *proc;  // NULL when not running
    swd_rpc_conn_t *conn; // a reference, while the child runs
    int pid;
    uint32_t crashes; // exits in a row without a stable run
    int64_t started_mono;
    bool ever_started;
    uint32_t runs; // processes started in this slot, the current one included
    swd_timer_t restart;
    char agent_id[32]; // the agent it registered as, "" before
    bool configure_pending;
} child_t;

struct swd_process_pool {
    swd_process_pool_opts_t o;
    char *agent_token;
    child_t *children;
    uint32_t n;
    swd_bus_sub_t *sub;
    swd_timer_t configure; // applies the pool's settings outside the bus callback
    swd_process_pool_stats_t stats;
    bool stopping;
};

// ---- the child's command line and environment ----

static void caps_text(const swd_pool_config_t *cfg, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < cfg->capabilities.n && len < cap; i++) {
        int w = snprintf(out + len, cap - len, "%s%s", i ? "," : "", cfg->capabilities.items[i]);
        len += w > 0 ? (size_t)w : 0;
    }
}

// `arg` with {name}, {pool}, {index}, {run}, {concurrency}, {capabilities}
// replaced.
static char *expand_arg(const child_t *c, const char *arg) {
    const swd_pool_config_t *cfg = c->pool->o.cfg;
    char caps[1024], num[32], idx[32], run[32];
    caps_text(cfg, caps, sizeof(caps));
    snprintf(num, sizeof(num), "%lld", (long long)cfg->max_concurrency);
    snprintf(idx, sizeof(idx), "%u", c->index + 1);
    snprintf(run, sizeof(run), "%u", c->runs + 1);
    const char *names[] = {"{name}", "{pool}",        "{index}",
                           "{run}",  "{concurrency}", "{capabilities}"};
    const char *values[] = {c->name, cfg->name, idx, run, num, caps};
    size_t cap = strlen(arg) + 1, len = 0;
    char *out = swd_xmalloc(cap);
    for (const char *p = arg; *p != '\0';) {
        const char *v = NULL;
        size_t skip = 1;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && *p == '{'; i++) {
            if (strncmp(p, names[i], strlen(names[i])) == 0) {
                v = values[i];
                skip = strlen(names[i]);
            }
        }
        size_t vl = v ? strlen(v) : 1;
        if (len + vl + 1 > cap) {
            cap = (len + vl + 1) * 2;
            out = swd_xrealloc(out, cap);
        }
        memcpy(out + len, v ? v : p, vl);
        len += vl;
        p += skip;
    }
    out[len] = '\0';
    return out;
}

static void strv_free(char **v) {
    for (size_t i = 0; v != NULL && v[i] != NULL; i++) {
        free(v[i]);
    }
    free(v);
}

static bool env_overridden(const char *entry, const swd_config_map_t *env) {
    static const char *const ours[] = {"SWARMD_POOL=", "SWARMD_AGENT_NAME=", "SWARMD_AGENT_TOKEN="};
    for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
        if (strncmp(entry, ours[i], strlen(ours[i])) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < env->n; i++) {
        size_t kl = strlen(env->keys[i]);
        if (strncmp(entry, env->keys[i], kl) == 0 && entry[kl] == '=') {
            return true;
        }
    }
    return false;
}

// Our environment, minus what the pool sets, plus the pool's env and the
// child's identity.
static char **child_env(const child_t *c) {
    const swd_process_pool_t *pp = c->pool;
    const swd_config_map_t *env = &pp->o.cfg->process.env;
    size_t n = 0;
    while (environ != NULL && environ[n] != NULL) {
        n++;
    }
    char **out = swd_xcalloc(n + env->n + 4, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!env_overridden(environ[i], env)) {
            out[k++] = swd_xstrdup(environ[i]);
        }
    }
    for (size_t i = 0; i < env->n; i++) {
        out[k++] = swd_xasprintf("%s=%s", env->keys[i], env->values[i]);
    }
    out[k++] = swd_xasprintf("SWARMD_POOL=%s", pp->o.cfg->name);
    out[k++] = swd_xasprintf("SWARMD_AGENT_NAME=%s", c->name);
    if (pp->agent_token != NULL) {
        out[k++] = swd_xasprintf("SWARMD_AGENT_TOKEN=%s", pp->agent_token);
    }
    return out;
}

// ---- spawning and restarting ----

static void on_child_exit(swd_process_t *p, int64_t status, int term_signal, void *data);

static int spawn_child(child_t *c, char *err, size_t errlen) {
    swd_process_pool_t *pp = c->pool;
    const swd_config_list_t *cmd = &pp->o.cfg->process.command;
    char exe[4096];
    int r = swd_process_find_exe(cmd->items[0], exe, sizeof(exe));
    if (r < 0) {
        snprintf(err, errlen, "pool %s: cannot run '%s': %s", pp->o.cfg->name, cmd->items[0],
                 uv_strerror(r));
        return r;
    }
    char **argv = swd_xcalloc(cmd->n + 1, sizeof(char *));
    for (size_t i = 0; i < cmd->n; i++) {
        argv[i] = expand_arg(c, cmd->items[i]);
    }
    char **envp = child_env(c);
    swd_rpc_conn_t *conn = swd_rpc_server_adopt_pipes(pp->o.server);
    swd_rpc_conn_set_name(conn, c->name);
    swd_process_opts_t po = {
        .file = exe,
        .argv = argv,
        .env = envp,
        .stdin_pipe = swd_rpc_conn_out_stream(conn),
        .stdout_pipe = swd_rpc_conn_stream(conn),
        .name = c->name,
        .detach = true,
        .on_exit = on_child_exit,
        .data = c,
    };
    r = swd_process_spawn(pp->o.loop, &po, &c->proc);
    strv_free(argv);
    strv_free(envp);
    if (r < 0) {
        swd_rpc_conn_close(conn, "spawn failed");
        snprintf(err, errlen, "pool %s: cannot start '%s': %s", pp->o.cfg->name, exe,
                 uv_strerror(r));
        c->proc = NULL;
        return r;
    }
    swd_rpc_conn_ref(conn);
    c->conn = conn;
    c->pid = swd_process_pid(c->proc);
    c->started_mono = swd_clock_now(pp->o.clock);
    c->agent_id[0] = '\0';
    pp->stats.started++;
    pp->stats.running++;
    if (c->ever_started) {
        pp->stats.restarts++;
    }
    c->ever_started = true;
    c->runs++;
    swd_log_info("pool", "agent process started", "{s:s,s:s,s:i}", "pool", pp->o.cfg->name, "agent",
                 c->name, "pid", c->pid);
    if (swd_rpc_server_start_conn(pp->o.server, conn) < 0) {
        // The connection closed itself; the child sees EOF and exits.
        swd_log_warn("pool", "cannot read the agent's stdout", "{s:s}", "agent", c->name);
    }
    return 0;
}

static void on_restart(swd_timer_t *t) {
    child_t *c = t->data;
    char err[256];
    if (c->pool->stopping || c->proc != NULL) {
        return;
    }
    if (spawn_child(c, err, sizeof(err)) < 0) {
        // Could not even start: try again later, as after a crash.
        int64_t delay = RESTART_BASE_MS << (c->crashes < 7 ? c->crashes : 7);
        delay = delay > RESTART_MAX_MS ? RESTART_MAX_MS : delay;
        c->crashes++;
        swd_log_error("pool", "restart failed", "{s:s,s:s,s:I}", "agent", c->name, "error", err,
                      "retry_in_ms", (json_int_t)delay);
        swd_timer_start(&c->restart, delay);
    }
}

static bool wants_restart(const swd_pool_config_t *cfg, int64_t status, int term_signal) {
    switch (cfg->process.restart) {
    case SWD_RESTART_ALWAYS:
        return true;
    case SWD_RESTART_ON_FAILURE:
        return status != 0 || term_signal != 0;
    case SWD_RESTART_NEVER:
    default:
        return false;
    }
}

static void on_child_exit(swd_process_t *p, int64_t status, int term_signal, void *data) {
    child_t *c = data;
    swd_process_pool_t *pp = c->pool;
    int64_t lived = swd_clock_now(pp->o.clock) - c->started_mono;
    swd_process_release(c->proc, 0);
    c->proc = NULL;
    if (c->conn != NULL) {
        // Its stdout reaches EOF and the connection closes: the agent dies
        // and its attempts are retried elsewhere (the agent-loss path).
        swd_rpc_conn_unref(c->conn);
        c->conn = NULL;
    }
    pp->stats.running--;
    pp->stats.exits++;
    if (lived >= STABLE_MS) {
        c->crashes = 0;
    }
    bool restart = !pp->stopping && wants_restart(pp->o.cfg, status, term_signal);
    int64_t delay = RESTART_BASE_MS << (c->crashes < 7 ? c->crashes : 7);
    delay = delay > RESTART_MAX_MS ? RESTART_MAX_MS : delay;
    swd_log(term_signal != 0 || status != 0 ? SWD_LOG_WARN : SWD_LOG_INFO, "pool",
            "agent process exited", "{s:s,s:s,s:i,s:I,s:i,s:I,s:o?}", "pool", pp->o.cfg->name,
            "agent", c->name, "pid", c->pid, "status", (json_int_t)status, "signal", term_signal,
            "lived_ms", (json_int_t)lived, "restart_in_ms", restart ? json_integer(delay) : NULL);
    c->pid = 0;
    if (restart) {
        c->crashes++;
        swd_timer_start(&c->restart, delay);
    }
}

// ---- the pool's settings, applied once a child registered ----

static bool caps_match(const swd_agent_t *a, const swd_pool_config_t *cfg) {
    if (a->ncaps != cfg->capabilities.n) {
        return false;
    }
    for (uint32_t i = 0; i < a->ncaps; i++) {
        if (strcmp(a->caps[i], cfg->capabilities.items[i]) != 0) {
            return false;
        }
    }
    return true;
}

static void on_configure(swd_timer_t *t) {
    swd_process_pool_t *pp = t->data;
    for (uint32_t i = 0; i < pp->n; i++) {
        child_t *c = &pp->children[i];
        if (!c->configure_pending) {
            continue;
        }
        c->configure_pending = false;
        swd_agent_t *a = swd_agents_find(pp->o.agents, c->agent_id, strlen(c->agent_id));
        if (a == NULL || a->dead) {
            continue;
        }
        if (pp->o.apply_concurrency) {
            swd_agent_set_max_concurrency(a, (uint32_t)pp->o.cfg->max_concurrency);
        }
        if (pp->o.check_capabilities && !caps_match(a, pp->o.cfg)) {
            char caps[1024];
            caps_text(pp->o.cfg, caps, sizeof(caps));
            swd_log_warn("pool",
                         "agent registered other capabilities than its pool's; pass "
                         "--capabilities {capabilities} in the pool's command",
                         "{s:s,s:s,s:s}", "pool", pp->o.cfg->name, "agent", c->name,
                         "pool_capabilities", caps);
        }
    }
}

static void on_agent_event(const swd_event_t *ev, void *data) {
    swd_process_pool_t *pp = data;
    if (strcmp(ev->event, "registered") != 0) {
        return;
    }
    const swd_agent_t *a = ev->subject;
    if (a->pool == NULL || strcmp(a->pool, pp->o.cfg->name) != 0) {
        return;
    }
    for (uint32_t i = 0; i < pp->n; i++) {
        child_t *c = &pp->children[i];
        if (c->proc != NULL && strcmp(c->name, a->name) == 0) {
            snprintf(c->agent_id, sizeof(c->agent_id), "%s", a->id);
            // The registry is in the middle of adding the agent: change it
            // on the next turn, not from inside its own event.
            c->configure_pending = pp->o.apply_concurrency || pp->o.check_capabilities;
            if (c->configure_pending) {
                swd_timer_start(&pp->configure, 0);
            }
        }
    }
}

// ---- the pool ----

swd_process_pool_t *swd_process_pool_new(const swd_process_pool_opts_t *o) {
    swd_process_pool_t *pp = swd_xcalloc(1, sizeof(*pp));
    pp->o = *o;
    if (pp->o.stop_grace_ms <= 0) {
        pp->o.stop_grace_ms = DEFAULT_STOP_GRACE_MS;
    }
    pp->agent_token = o->agent_token ? swd_xstrdup(o->agent_token) : NULL;
    pp->o.agent_token = pp->agent_token;
    pp->n = (uint32_t)o->cfg->min;
    pp->children = swd_xcalloc(pp->n ? pp->n : 1, sizeof(child_t));
    for (uint32_t i = 0; i < pp->n; i++) {
        child_t *c = &pp->children[i];
        c->pool = pp;
        c->index = i;
        snprintf(c->name, sizeof(c->name), "%s-%u", o->cfg->name, i + 1);
        swd_timer_init(o->clock, &c->restart, on_restart, c);
    }
    swd_timer_init(o->clock, &pp->configure, on_configure, pp);
    pp->sub = swd_bus_subscribe(o->bus, SWD_TOPIC_BIT(SWD_TOPIC_AGENT), on_agent_event, pp);
    return pp;
}

int swd_process_pool_start(swd_process_pool_t *pp, char *err, size_t errlen) {
    for (uint32_t i = 0; i < pp->n; i++) {
        int r = spawn_child(&pp->children[i], err, errlen);
        if (r < 0) {
            return r;
        }
    }
    swd_log_info("pool", "process pool started", "{s:s,s:i}", "pool", pp->o.cfg->name, "agents",
                 (int)pp->n);
    return 0;
}

const char *swd_process_pool_name(const swd_process_pool_t *pp) {
    return pp->o.cfg->name;
}

void swd_process_pool_stats(const swd_process_pool_t *pp, swd_process_pool_stats_t *out) {
    *out = pp->stats;
}

int swd_process_pool_pid(const swd_process_pool_t *pp, uint32_t index) {
    return index < pp->n ? pp->children[index].pid : 0;
}

void swd_process_pool_free(swd_process_pool_t *pp) {
    if (pp == NULL) {
        return;
    }
    pp->stopping = true;
    swd_bus_unsubscribe(pp->o.bus, pp->sub);
    swd_timer_stop(&pp->configure);
    for (uint32_t i = 0; i < pp->n; i++) {
        child_t *c = &pp->children[i];
        swd_timer_stop(&c->restart);
        if (c->proc != NULL) {
            // SIGTERM: swarm-agent deregisters and exits; SIGKILL after the grace.
            swd_process_release(c->proc, pp->o.stop_grace_ms);
            c->proc = NULL;
        }
        if (c->conn != NULL) {
            swd_rpc_conn_unref(c->conn);
            c->conn = NULL;
        }
    }
    swd_log_info("pool", "process pool stopped", "{s:s}", "pool", pp->o.cfg->name);
    free(pp->children);
    free(pp->agent_token);
    free(pp);
}
