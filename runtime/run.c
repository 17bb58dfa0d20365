// `swarmd run WORKLOAD`: the daemon in-process, the workload's pools, every
// task submitted in dependency order straight to the scheduler, a progress
// line while it runs, and a report at the end (DESIGN.md §7, issue 5).
//
//   load config + workload (exit 2 on any error, nothing started)
//     ─▶ swd_daemon_start (listeners, process pools)
//     ─▶ submit all tasks (after = seqs of earlier tasks)
//     ─▶ bus: task/agent events ─▶ per-task and per-agent records
//     ─▶ all terminal ─▶ drain ─▶ daemon teardown: `stopping` hook writes
//        the summary, --report and --results while every module is alive
//
//   Ctrl-C: queued and deferred tasks cancelled, running ones get
//   scheduler.shutdown_grace_ms, then the report; a second Ctrl-C exits
//   at once (children SIGKILLed first).
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agents/http_agent.h"
#include "agents/process_pool.h"
#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/json.h"
#include "runtime/daemon.h"
#include "runtime/log.h"
#include "runtime/process.h"
#include "runtime/workload.h"

extern char **environ;

#define PROGRESS_TTY_MS 250
#define PROGRESS_PLAIN_MS 5000
// tasks/s is measured over this window.
#define RATE_WINDOW 40
#define MAX_CONTROLLER_EVENTS 1000

/// What happened to one task of the workload.
typedef struct task_rec {
    uint32_t index; ///< in the workload
    uint64_t seq;
    char task_id[24];
    uint8_t state;
    bool terminal;
    uint32_t attempts;
    uint64_t tokens;
    int64_t submitted_ms, first_started_ms, started_ms, finished_ms;
    char agent_id[24];
    char *error_code, *error_message; ///< owned, NULL when none
    char *result;                     ///< owned msgpack bytes (--results only)
    uint32_t result_len;
} task_rec_t;

/// One agent seen during the run (registered or ran an attempt).
typedef struct agent_rec {
    char id[24];
    char *name, *pool;
    uint64_t attempts, ok, failures, retries, tokens;
    int64_t *lat; ///< latencies of its successful attempts
    size_t nlat, caplat;
    struct agent_rec *next; ///< in registration order
} agent_rec_t;

typedef struct run_opts {
    const char *workload;
    const char *report;
    const char *results;
    const char *ready_file;
    double scale, time_scale;
    swd_config_overrides_t flags; ///< applied after the file and env
} run_opts_t;

typedef struct run {
    run_opts_t o;
    swd_config_t cfg;
    swd_workload_t w;
    swd_daemon_t *d;
    task_rec_t *recs;
    swd_u64map_t by_seq;    ///< task seq → rec
    swd_strmap_t agent_ids; ///< agent id → agent_rec
    agent_rec_t *agents, *agents_tail;
    size_t nagents;
    size_t done, ok, failed, cancelled;
    uint64_t retries, tokens, estimated;
    int64_t start_wall, start_mono, end_wall;
    swd_bus_sub_t *sub;
    swd_log_sink_t *sink;
    swd_timer_t progress, finish;
    bool tty;
    bool progress_shown; ///< a live line is on the terminal
    bool interrupted;
    bool finishing;
    bool stopped; ///< the report is out: only errors still reach the terminal
    int signals;
    int64_t rate_mono[RATE_WINDOW];
    size_t rate_done[RATE_WINDOW];
    size_t rate_n;
    json_t *controller_events; ///< tuner, healing, scaling events
    int exit_code;
} run_t;

static void usage(FILE *out) {
    fprintf(out, "usage: swarmd run WORKLOAD.yaml [--report FILE.json] [--results FILE.jsonl]\n"
                 "                  [--listen HOST:PORT] [--http HOST:PORT] [--scale F]\n"
                 "                  [--time-scale F] [--log-level LEVEL] [--ready-file FILE]\n"
                 "\n"
                 "Runs a workload to completion on the workload's agent pools and reports.\n"
                 "  --scale F        multiply every task generator's count (SWARMD_RUN_SCALE)\n"
                 "  --time-scale F   multiply task timeouts and pool arguments --*-ms\n"
                 "                   (SWARMD_RUN_TIME_SCALE)\n"
                 "Exit status: 0 every task succeeded, 1 some did not, 2 bad workload or usage.\n");
}

// ---------------------------------------------------------------------------
// Options and configuration

static int parse_scale(const char *s, const char *what, double *out) {
    char *end;
    double v = s ? strtod(s, &end) : 0;
    if (s == NULL || *s == '\0' || *end != '\0' || !(v > 0) || v > 1000) {
        fprintf(stderr, "swarmd run: %s: expected a number in (0, 1000], got '%s'\n", what,
                s ? s : "");
        return 2;
    }
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, run_opts_t *o) {
    static const struct option longopts[] = {
        {"report", required_argument, NULL, 'r'},
        {"results", required_argument, NULL, 'R'},
        {"listen", required_argument, NULL, 'l'},
        {"http", required_argument, NULL, 'H'},
        {"scale", required_argument, NULL, 's'},
        {"time-scale", required_argument, NULL, 't'},
        {"log-level", required_argument, NULL, 'L'},
        {"ready-file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *scale = getenv("SWARMD_RUN_SCALE"), *tscale = getenv("SWARMD_RUN_TIME_SCALE");
    int ch, idx, r = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, &idx)) != -1 && r == 0) {
        switch (ch) {
        case 'r':
            o->report = optarg;
            break;
        case 'R':
            o->results = optarg;
            break;
        case 'l':
        case 'H':
        case 'L':
            // Cannot fail: each of these sets a key.
            (void)swd_config_overrides_add(&o->flags, longopts[idx].name, optarg);
            break;
        case 's':
            scale = optarg;
            break;
        case 't':
            tscale = optarg;
            break;
        case 'f':
            o->ready_file = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (r == 0 && optind + 1 != argc) {
        fprintf(stderr, "swarmd run: %s\n",
                optind < argc ? "one workload file, please" : "which workload? (a YAML file)");
        usage(stderr);
        return 2;
    }
    o->workload = argv[optind];
    o->scale = o->time_scale = 1.0;
    if ((scale != NULL && parse_scale(scale, "--scale", &o->scale) != 0) ||
        (tscale != NULL && parse_scale(tscale, "--time-scale", &o->time_scale) != 0)) {
        return 2;
    }
    return r;
}

// The environment without swarmd run's own variables, which are not
// configuration keys.
static char **config_env(void) {
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    char **out = swd_xcalloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "SWARMD_RUN_", 11) != 0) {
            out[k++] = environ[i];
        }
    }
    return out;
}

static bool pool_serves(const swd_pool_config_t *p, const char *type) {
    for (size_t i = 0; i < p->capabilities.n; i++) {
        if (strcmp(p->capabilities.items[i], "*") == 0 ||
            strcmp(p->capabilities.items[i], type) == 0) {
            return true;
        }
    }
    return false;
}

// A task type no pool can ever run would leave the run waiting forever; with
// a remote pool, agents may still come and bring it.
static void check_types(run_t *r, swd_diag_t *d) {
    for (size_t i = 0; i < r->cfg.n_pools; i++) {
        if (r->cfg.pools[i].kind == SWD_POOL_REMOTE) {
            return;
        }
    }
    swd_strmap_t seen;
    swd_strmap_init(&seen);
    for (size_t t = 0; t < r->w.n; t++) {
        const char *type = r->w.tasks[t].type;
        bool ok = swd_strmap_get(&seen, type, strlen(type)) != NULL;
        for (size_t i = 0; i < r->cfg.n_pools && !ok; i++) {
            const swd_pool_config_t *p = &r->cfg.pools[i];
            ok = ((p->kind == SWD_POOL_PROCESS && p->min > 0) || p->kind == SWD_POOL_HTTP) &&
                 pool_serves(p, type);
        }
        if (!ok) {
            swd_diag_add(d, SWD_DIAG_ERROR,
                         "%s: tasks of type \"%s\" (%s, ...): no pool can run them; list the "
                         "type in a process pool's capabilities (with min > 0) or an http "
                         "pool's, or add a remote pool",
                         r->w.path, type, r->w.tasks[t].key);
        }
        swd_strmap_put(&seen, type, strlen(type), r);
    }
    swd_strmap_close(&seen);
}

// Workload and configuration, every problem reported; 0 or 2.
static int load_all(run_t *r) {
    swd_config_init(&r->cfg);
    if (access(r->o.workload, R_OK) != 0) {
        fprintf(stderr, "%s: cannot read: %s\nswarmd: nothing started\n", r->o.workload,
                strerror(errno));
        return 2;
    }
    swd_diag_t d;
    swd_diag_init(&d);
    swd_config_load_file_ex(&r->cfg, r->o.workload, swd_workload_keys, &d);
    char **envp = config_env();
    swd_config_load_env(&r->cfg, envp, &d);
    free(envp);
    swd_config_overrides_apply(&r->o.flags, &r->cfg, &d);
    swd_workload_opts_t wo = {r->o.scale, r->o.time_scale};
    swd_workload_load(&r->w, r->o.workload, &wo, &d);
    if (d.errors == 0) {
        swd_config_validate(&r->cfg, &d);
    }
    if (d.errors == 0) {
        check_types(r, &d);
    }
    swd_diag_print(&d, stderr);
    int code = d.errors > 0 ? 2 : 0;
    if (code != 0) {
        fprintf(stderr, "swarmd: %zu error%s in %s; nothing started\n", d.errors,
                d.errors == 1 ? "" : "s", r->o.workload);
    }
    swd_diag_close(&d);
    swd_workload_scale_pools(&r->cfg, r->o.time_scale);
    return code;
}

int swd_run_check(const char *path) {
    run_t *r = swd_xcalloc(1, sizeof(*r));
    r->o.workload = path;
    r->o.scale = r->o.time_scale = 1.0;
    int code = load_all(r);
    if (code == 0) {
        printf("%s: ok (workload %s, %zu tasks)\n", path, r->w.name, r->w.n);
    }
    swd_workload_close(&r->w);
    swd_config_close(&r->cfg);
    free(r);
    return code;
}

// ---------------------------------------------------------------------------
// Formatting helpers

static void fmt_count(char *buf, size_t cap, double v) {
    if (v >= 1e9) {
        snprintf(buf, cap, "%.2fG", v / 1e9);
    } else if (v >= 1e6) {
        snprintf(buf, cap, "%.2fM", v / 1e6);
    } else if (v >= 1e4) {
        snprintf(buf, cap, "%.1fk", v / 1e3);
    } else {
        snprintf(buf, cap, "%.0f", v);
    }
}

static void fmt_ms(char *buf, size_t cap, int64_t ms) {
    if (ms < 0) {
        snprintf(buf, cap, "-");
    } else if (ms < 1000) {
        snprintf(buf, cap, "%lldms", (long long)ms);
    } else if (ms < 600000) {
        snprintf(buf, cap, "%.2fs", (double)ms / 1000.0);
    } else {
        snprintf(buf, cap, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    }
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/// Nearest-rank percentile of a sorted array; -1 when empty.
static int64_t pct(const int64_t *v, size_t n, double p) {
    if (n == 0) {
        return -1;
    }
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    return v[k == 0 ? 0 : k - 1];
}

static json_t *pct_json(int64_t *v, size_t n) {
    if (n == 0) {
        return json_pack("{s:n,s:n,s:n,s:n,s:n}", "p50", "p95", "p99", "max", "mean");
    }
    qsort(v, n, sizeof(int64_t), cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += (double)v[i];
    }
    return json_pack("{s:I,s:I,s:I,s:I,s:I}", "p50", (json_int_t)pct(v, n, 50), "p95",
                     (json_int_t)pct(v, n, 95), "p99", (json_int_t)pct(v, n, 99), "max",
                     (json_int_t)v[n - 1], "mean", (json_int_t)llround(sum / (double)n));
}

static int64_t json_ms(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

// ---------------------------------------------------------------------------
// Records, from the event bus

static agent_rec_t *agent_rec(run_t *r, const char *id) {
    agent_rec_t *a = swd_strmap_get(&r->agent_ids, id, strlen(id));
    if (a != NULL) {
        return a;
    }
    a = swd_xcalloc(1, sizeof(*a));
    snprintf(a->id, sizeof(a->id), "%s", id);
    const swd_agent_t *ag = swd_agents_find(&r->d->agents, id, strlen(id));
    a->name = swd_xstrdup(ag ? ag->name : id);
    a->pool = swd_xstrdup(ag && ag->pool ? ag->pool : "default");
    swd_strmap_put(&r->agent_ids, id, strlen(id), a);
    if (r->agents_tail != NULL) {
        r->agents_tail->next = a;
    } else {
        r->agents = a;
    }
    r->agents_tail = a;
    r->nagents++;
    return a;
}

static void lat_push(agent_rec_t *a, int64_t ms) {
    if (a->nlat == a->caplat) {
        a->caplat = a->caplat ? a->caplat * 2 : 16;
        a->lat = swd_xrealloc(a->lat, a->caplat * sizeof(int64_t));
    }
    a->lat[a->nlat++] = ms;
}

// An attempt ended: running → succeeded, queued (a retry), failed, cancelled.
static void attempt_ended(run_t *r, const swd_task_t *t, const char *to) {
    char agent_id[SWD_ID_MAX];
    if (swd_task_agent_id(t, agent_id) == NULL) {
        return;
    }
    agent_rec_t *a = agent_rec(r, agent_id);
    int64_t now = swd_clock_wall(&r->d->clock);
    if (strcmp(to, "cancelled") == 0) {
        return; // not the agent's doing
    }
    a->attempts++;
    if (strcmp(to, "succeeded") == 0) {
        a->ok++;
        lat_push(a, now - t->started_ms);
        a->tokens += t->tokens_used;
    } else {
        a->failures++;
        if (strcmp(to, "queued") == 0) {
            a->retries++;
        }
    }
}

static void task_terminal(run_t *r, task_rec_t *rec, const swd_task_t *t) {
    rec->terminal = true;
    rec->state = t->state;
    rec->finished_ms = t->finished_ms;
    rec->tokens = t->tokens_used;
    rec->attempts = t->attempts;
    const swd_task_more_t *m = t->more;
    if (swd_task_agent_id(t, rec->agent_id) == NULL) {
        rec->agent_id[0] = '\0';
    }
    rec->error_code = m->error_code ? swd_xstrdup(m->error_code) : NULL;
    rec->error_message = m->error_message ? swd_xstrdup(m->error_message) : NULL;
    if (r->o.results != NULL && m->result != NULL) {
        rec->result = swd_xmalloc(m->result_len);
        memcpy(rec->result, m->result, m->result_len);
        rec->result_len = m->result_len;
    }
    r->done++;
    r->tokens += t->tokens_used;
    if (t->state == SWD_TASK_SUCCEEDED) {
        r->ok++;
    } else if (t->state == SWD_TASK_FAILED) {
        r->failed++;
    } else {
        r->cancelled++;
    }
    if (r->done == r->w.n && !r->finishing) {
        r->finishing = true;
        swd_timer_start(&r->finish, 0); // outside the scheduler's own event
    }
}

static void on_task_event(const swd_event_t *ev, run_t *r) {
    const swd_task_t *t = ev->subject;
    task_rec_t *rec = swd_u64map_get(&r->by_seq, t->seq);
    if (rec == NULL) {
        return; // not ours (a client submitted it over RPC)
    }
    if (ev->prev == NULL) {
        swd_task_id(t, rec->task_id);
        rec->submitted_ms = t->submitted_ms;
    }
    if (ev->prev != NULL && strcmp(ev->prev, "running") == 0) {
        attempt_ended(r, t, ev->event);
        if (strcmp(ev->event, "queued") == 0) {
            r->retries++;
        }
    }
    if (t->state == SWD_TASK_RUNNING) {
        rec->started_ms = t->started_ms;
        if (rec->first_started_ms == 0) {
            rec->first_started_ms = t->started_ms;
        }
        rec->attempts = t->attempts;
    } else if (swd_task_terminal(t) && !rec->terminal) {
        task_terminal(r, rec, t);
    }
}

// Tuner, healing and scaling events, kept for the report as JSON.
static void keep_controller_event(run_t *r, const swd_event_t *ev) {
    if (json_array_size(r->controller_events) >= MAX_CONTROLLER_EVENTS) {
        return;
    }
    json_t *data = NULL;
    if (ev->pack != NULL) {
        swd_buf_t b;
        swd_buf_init(&b);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &b, swd_buf_write_cb);
        ev->pack(ev, &pk);
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        if (msgpack_unpack_next(&up, b.data, b.len, NULL) == MSGPACK_UNPACK_SUCCESS) {
            data = swd_json_from_msgpack(&up.data);
        }
        msgpack_unpacked_destroy(&up);
        swd_buf_close(&b);
    }
    json_array_append_new(r->controller_events,
                          json_pack("{s:s,s:s,s:I,s:o*}", "topic", swd_topic_name(ev->topic),
                                    "event", ev->event, "ts", (json_int_t)ev->ts, "data", data));
}

static void on_event(const swd_event_t *ev, void *data) {
    run_t *r = data;
    if (ev->topic == SWD_TOPIC_TASK) {
        on_task_event(ev, r);
    } else if (ev->topic == SWD_TOPIC_AGENT) {
        if (strcmp(ev->event, "registered") == 0) {
            agent_rec(r, ((const swd_agent_t *)ev->subject)->id);
        }
    } else if (ev->topic != SWD_TOPIC_LOG) {
        keep_controller_event(r, ev);
    }
}

// ---------------------------------------------------------------------------
// Progress

static void clear_line(run_t *r) {
    if (r->progress_shown) {
        fputs("\r\033[K", stderr);
        r->progress_shown = false;
    }
}

static double rate_now(run_t *r, int64_t now) {
    size_t k = r->rate_n % RATE_WINDOW;
    r->rate_mono[k] = now;
    r->rate_done[k] = r->done;
    r->rate_n++;
    size_t oldest = r->rate_n > RATE_WINDOW ? r->rate_n % RATE_WINDOW : 0;
    int64_t dt = now - r->rate_mono[oldest];
    if (dt <= 0) {
        dt = now - r->start_mono;
        return dt > 0 ? (double)r->done * 1000.0 / (double)dt : 0;
    }
    return (double)(r->done - r->rate_done[oldest]) * 1000.0 / (double)dt;
}

// The terminal gets a short line with a bar; a log file a spelled-out one.
static void progress_text(run_t *r, char *buf, size_t cap) {
    int64_t now = swd_clock_now(&r->d->clock);
    double rate = rate_now(r, now);
    uint32_t busy = 0, alive = 0;
    for (const swd_agent_t *a = r->d->agents.head; a != NULL; a = a->next) {
        alive += !a->dead;
        busy += !a->dead && a->inflight > 0;
    }
    char tok[32], eta[32] = "--", el[32];
    fmt_count(tok, sizeof(tok), (double)r->tokens);
    if (rate > 0 && r->done < r->w.n) {
        fmt_ms(eta, sizeof(eta), (int64_t)((double)(r->w.n - r->done) / rate * 1000.0));
    }
    fmt_ms(el, sizeof(el), now - r->start_mono);
    size_t notok = r->failed + r->cancelled;
    if (r->tty) {
        char bar[21];
        size_t fill = r->w.n ? r->done * 20 / r->w.n : 20;
        for (size_t i = 0; i < 20; i++) {
            bar[i] = i < fill ? '#' : '.';
        }
        bar[20] = '\0';
        snprintf(buf, cap, "[%s] %zu/%zu  ok %zu  fail %zu  %.1f/s  %s tok  busy %u/%u  %s  ETA %s",
                 bar, r->done, r->w.n, r->ok, notok, rate, tok, busy, alive, el, eta);
        return;
    }
    snprintf(buf, cap,
             "%zu/%zu done (ok %zu, failed %zu%s), %.1f tasks/s, %s tokens, %u/%u agents busy, "
             "%s elapsed, ETA %s",
             r->done, r->w.n, r->ok, notok, r->cancelled ? " incl. cancelled" : "", rate, tok, busy,
             alive, el, eta);
}

static void show_progress(run_t *r, bool final) {
    char line[320];
    progress_text(r, line, sizeof(line));
    if (r->tty) {
        fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
        r->progress_shown = !final;
    } else {
        fprintf(stderr, "progress: %s\n", line);
    }
    fflush(stderr);
}

static void on_progress(swd_timer_t *t) {
    run_t *r = t->data;
    show_progress(r, false);
    swd_timer_start(t, r->tty ? PROGRESS_TTY_MS : PROGRESS_PLAIN_MS);
}

// Warnings and errors still reach the terminal, above the progress line.
static void on_log_record(const json_t *rec, const char *line, void *data) {
    run_t *r = data;
    swd_log_level_t lvl = SWD_LOG_INFO, min = r->cfg.log.level;
    const char *src = swd_config_source(&r->cfg, "log.level");
    swd_log_level_parse(json_string_value(json_object_get(rec, "level")), &lvl);
    if (src == NULL || (strcmp(src, "flag") != 0 && strcmp(src, "env") != 0)) {
        min = min < SWD_LOG_WARN ? SWD_LOG_WARN : min;
        if (r->stopped) {
            // The teardown disconnects every agent on purpose: not news.
            min = SWD_LOG_ERROR;
        }
    }
    if (lvl < min) {
        return;
    }
    json_t *fields = json_deep_copy(rec);
    json_object_del(fields, "ts");
    json_object_del(fields, "level");
    json_object_del(fields, "component");
    json_object_del(fields, "msg");
    char *ftext = json_object_size(fields) ? json_dumps(fields, JSON_COMPACT) : NULL;
    clear_line(r);
    fprintf(stderr, "swarmd: %s: %s: %s%s%s\n", swd_log_level_name(lvl),
            json_string_value(json_object_get(rec, "component")),
            json_string_value(json_object_get(rec, "msg")), ftext ? " " : "", ftext ? ftext : "");
    free(ftext);
    json_decref(fields);
}

// ---------------------------------------------------------------------------
// Submitting

// Packs `j` and unpacks it as the msgpack object the scheduler copies.
static const msgpack_object *as_msgpack(const json_t *j, swd_buf_t *b, msgpack_unpacked *up) {
    if (j == NULL) {
        return NULL;
    }
    swd_buf_reset(b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, swd_buf_write_cb);
    if (swd_json_pack(&pk, j) != 0 ||
        msgpack_unpack_next(up, b->data, b->len, NULL) != MSGPACK_UNPACK_SUCCESS) {
        return NULL;
    }
    return &up->data;
}

static int submit_one(run_t *r, size_t i, swd_buf_t *pb, swd_buf_t *lb, uint64_t *after) {
    const swd_workload_task_t *wt = &r->w.tasks[i];
    msgpack_unpacked pu, lu;
    msgpack_unpacked_init(&pu);
    msgpack_unpacked_init(&lu);
    for (uint32_t k = 0; k < wt->nafter; k++) {
        after[k] = r->recs[wt->after[k]].seq;
    }
    swd_task_spec_t spec = {
        .type = wt->type,
        .type_len = strlen(wt->type),
        .payload = as_msgpack(wt->payload, pb, &pu),
        .priority = wt->priority,
        .estimated_tokens = wt->estimated_tokens,
        .timeout_ms = wt->timeout_ms,
        .max_retries = wt->max_retries >= 0 ? (uint32_t)wt->max_retries
                                            : (uint32_t)r->cfg.scheduler.default_max_retries,
        .key = wt->key,
        .key_len = strlen(wt->key),
        .labels = as_msgpack(wt->labels, lb, &lu),
        .after = after,
        .nafter = wt->nafter,
    };
    task_rec_t *rec = &r->recs[i];
    rec->index = (uint32_t)i;
    rec->seq = r->d->sched.next_seq;
    // Events about the task fire inside the submit: the record must be found.
    swd_u64map_put(&r->by_seq, rec->seq, rec);
    swd_task_t *t = NULL;
    swd_submit_result_t res = swd_sched_submit(&r->d->sched, &spec, &t);
    msgpack_unpacked_destroy(&pu);
    msgpack_unpacked_destroy(&lu);
    if (res != SWD_SUBMIT_OK) {
        swd_u64map_del(&r->by_seq, rec->seq);
        fprintf(stderr, "swarmd run: task %s refused by the scheduler (%s)\n", wt->key,
                res == SWD_SUBMIT_OVERLOADED ? "limits.max_queued reached" : "refused");
        return -1;
    }
    r->estimated += wt->estimated_tokens;
    return 0;
}

static int submit_all(run_t *r) {
    swd_buf_t pb, lb;
    swd_buf_init(&pb);
    swd_buf_init(&lb);
    uint32_t maxafter = 1;
    for (size_t i = 0; i < r->w.n; i++) {
        maxafter = r->w.tasks[i].nafter > maxafter ? r->w.tasks[i].nafter : maxafter;
    }
    uint64_t *after = swd_xcalloc(maxafter, sizeof(uint64_t));
    int rc = 0;
    for (size_t i = 0; i < r->w.n && rc == 0; i++) {
        rc = submit_one(r, i, &pb, &lb, after);
    }
    free(after);
    swd_buf_close(&pb);
    swd_buf_close(&lb);
    return rc;
}

// ---------------------------------------------------------------------------
// Ctrl-C and the end

static size_t cancel_waiting(run_t *r) {
    size_t n = 0;
    // Newest first: dependents go before what they wait for, so they end
    // `cancelled` rather than failing with dependency_failed.
    for (swd_task_t *t = r->d->sched.last; t != NULL; t = t->lprev) {
        if (!swd_task_terminal(t) && t->state != SWD_TASK_RUNNING &&
            swd_u64map_get(&r->by_seq, t->seq) != NULL) {
            swd_sched_cancel(&r->d->sched, t);
            n++;
        }
    }
    return n;
}

static void on_signal(swd_daemon_t *d, int signum, void *data) {
    run_t *r = data;
    clear_line(r);
    if (++r->signals > 1) {
        fprintf(stderr, "swarmd run: second interrupt: exiting at once\n");
        swd_process_kill_all();
        _exit(1);
    }
    r->interrupted = true;
    uint64_t running = d->sched.count[SWD_TASK_RUNNING];
    size_t n = cancel_waiting(r);
    char grace[32];
    fmt_ms(grace, sizeof(grace), r->cfg.scheduler.shutdown_grace_ms);
    fprintf(stderr,
            "swarmd run: interrupted: %zu waiting task%s cancelled; %llu running may finish "
            "within %s (interrupt again to exit at once)\n",
            n, n == 1 ? "" : "s", (unsigned long long)running, grace);
    swd_daemon_drain(d);
}

static void on_finish(swd_timer_t *t) {
    run_t *r = t->data;
    swd_timer_stop(&r->progress);
    show_progress(r, true);
    swd_daemon_drain(r->d);
}

// ---------------------------------------------------------------------------
// The report

typedef struct lat_set {
    int64_t *v;
    size_t n;
} lat_set_t;

static void lat_add(lat_set_t *s, const int64_t *v, size_t n) {
    s->v = swd_xrealloc(s->v, (s->n + n + 1) * sizeof(int64_t));
    if (n > 0) {
        memcpy(s->v + s->n, v, n * sizeof(int64_t));
    }
    s->n += n;
}

static json_t *report_agents(run_t *r) {
    json_t *arr = json_array();
    for (agent_rec_t *a = r->agents; a != NULL; a = a->next) {
        const swd_agent_t *ag = swd_agents_find(&r->d->agents, a->id, strlen(a->id));
        double parts[4];
        lat_set_t copy = {0};
        lat_add(&copy, a->lat, a->nlat);
        json_t *lat = pct_json(copy.v, copy.n);
        free(copy.v);
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:s}", "agent_id", a->id,
                           "name", a->name, "pool", a->pool, "tasks", (json_int_t)a->attempts,
                           "succeeded", (json_int_t)a->ok, "failures", (json_int_t)a->failures,
                           "retries", (json_int_t)a->retries, "tokens", (json_int_t)a->tokens,
                           "latency_ms", lat, "health",
                           ag ? json_real(round(swd_agent_health(ag, -1, parts) * 1000) / 1000)
                              : json_null(),
                           "state", ag ? swd_agent_state_name(swd_agent_state(ag)) : "gone"));
    }
    return arr;
}

// An http pool's own counts: answers by kind, connections, quota waits.
static json_t *report_http(const swd_http_pool_t *hp) {
    swd_http_pool_stats_t st;
    swd_http_pool_stats(hp, &st);
    return json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "requests",
        (json_int_t)st.requests, "succeeded", (json_int_t)st.succeeded, "rate_limited",
        (json_int_t)st.rate_limited, "unavailable", (json_int_t)st.unavailable, "server_errors",
        (json_int_t)st.server_errors, "client_errors", (json_int_t)st.client_errors, "timeouts",
        (json_int_t)st.timeouts, "transport_errors", (json_int_t)st.transport_errors,
        "bad_responses", (json_int_t)st.bad_responses, "too_large", (json_int_t)st.too_large,
        "cancelled", (json_int_t)st.cancelled, "connections", (json_int_t)st.connections,
        "usage_missing", (json_int_t)st.usage_missing, "quota_waits", (json_int_t)st.quota_waits,
        "quota_wait_ms", (json_int_t)st.quota_wait_ms);
}

static json_t *report_pool(run_t *r, const char *name, const char *kind) {
    uint64_t tasks = 0, ok = 0, fail = 0, retries = 0, tokens = 0, agents = 0, restarts = 0;
    lat_set_t ls = {0};
    for (agent_rec_t *a = r->agents; a != NULL; a = a->next) {
        if (strcmp(a->pool, name) == 0) {
            agents++;
            tasks += a->attempts;
            ok += a->ok;
            fail += a->failures;
            retries += a->retries;
            tokens += a->tokens;
            lat_add(&ls, a->lat, a->nlat);
        }
    }
    for (size_t i = 0; i < r->d->npools; i++) {
        if (strcmp(swd_process_pool_name(r->d->pools[i]), name) == 0) {
            swd_process_pool_stats_t st;
            swd_process_pool_stats(r->d->pools[i], &st);
            restarts = st.restarts;
        }
    }
    json_t *lat = pct_json(ls.v, ls.n);
    free(ls.v);
    json_t *pool =
        json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "name", name, "kind", kind, "agents",
                  (json_int_t)agents, "restarts", (json_int_t)restarts, "tasks", (json_int_t)tasks,
                  "succeeded", (json_int_t)ok, "failures", (json_int_t)fail, "retries",
                  (json_int_t)retries, "tokens", (json_int_t)tokens, "latency_ms", lat);
    for (size_t i = 0; i < r->d->nhttp_pools; i++) {
        if (strcmp(swd_http_pool_name(r->d->http_pools[i]), name) == 0) {
            json_object_set_new(pool, "http", report_http(r->d->http_pools[i]));
        }
    }
    return pool;
}

static json_t *report_pools(run_t *r) {
    json_t *arr = json_array();
    bool other = false;
    for (size_t i = 0; i < r->cfg.n_pools; i++) {
        const swd_pool_config_t *p = &r->cfg.pools[i];
        json_array_append_new(arr, report_pool(r, p->name, swd_pool_kind_name(p->kind)));
    }
    for (agent_rec_t *a = r->agents; a != NULL && !other; a = a->next) {
        other = swd_config_find_pool(&r->cfg, a->pool) == NULL;
    }
    if (other) {
        json_array_append_new(arr, report_pool(r, "default", "remote"));
    }
    return arr;
}

typedef struct type_rec {
    uint64_t tasks, ok, failed;
    lat_set_t lat;
} type_rec_t;

static void type_json(const char *key, void *value, void *data) {
    type_rec_t *t = value;
    json_array_append_new(data, json_pack("{s:s,s:I,s:I,s:I,s:o}", "type", key, "tasks",
                                          (json_int_t)t->tasks, "succeeded", (json_int_t)t->ok,
                                          "failed", (json_int_t)t->failed, "latency_ms",
                                          pct_json(t->lat.v, t->lat.n)));
    free(t->lat.v);
    free(t);
}

// Per task type, plus the whole run's latency and turnaround sets.
static json_t *report_types(run_t *r, lat_set_t *lat, lat_set_t *turn, json_t *errors) {
    swd_strmap_t types;
    swd_strmap_init(&types);
    for (size_t i = 0; i < r->w.n; i++) {
        const task_rec_t *rec = &r->recs[i];
        const char *ty = r->w.tasks[i].type;
        type_rec_t *t = swd_strmap_get(&types, ty, strlen(ty));
        if (t == NULL) {
            t = swd_xcalloc(1, sizeof(*t));
            swd_strmap_put(&types, ty, strlen(ty), t);
        }
        t->tasks++;
        if (rec->terminal && rec->state == SWD_TASK_SUCCEEDED) {
            int64_t ms = rec->finished_ms - rec->started_ms;
            int64_t tt = rec->finished_ms - rec->submitted_ms;
            t->ok++;
            lat_add(&t->lat, &ms, 1);
            lat_add(lat, &ms, 1);
            lat_add(turn, &tt, 1);
        } else if (rec->terminal && rec->state == SWD_TASK_FAILED) {
            t->failed++;
        }
        if (rec->error_code != NULL) {
            json_t *c = json_object_get(errors, rec->error_code);
            json_object_set_new(errors, rec->error_code,
                                json_integer(c ? json_integer_value(c) + 1 : 1));
        }
    }
    json_t *arr = json_array();
    swd_strmap_foreach(&types, type_json, arr);
    swd_strmap_close(&types);
    return arr;
}

static json_t *build_report(run_t *r) {
    lat_set_t lat = {0}, turn = {0};
    json_t *errors = json_object();
    json_t *types = report_types(r, &lat, &turn, errors);
    int64_t wall = r->end_wall - r->start_wall;
    uint64_t attempts = 0;
    for (size_t i = 0; i < r->w.n; i++) {
        attempts += r->recs[i].attempts;
    }
    json_t *rep =
        json_pack("{s:{s:s,s:s,s:f,s:f},s:I,s:I,s:I,s:b,"
                  "s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:f,s:o,s:o,s:{s:I,s:I,s:n,s:n},s:o,s:o,s:o,s:o,"
                  "s:{s:s,s:O}}",
                  "workload", "name", r->w.name, "file", r->w.path, "scale", r->o.scale,
                  "time_scale", r->o.time_scale, "started_ms", (json_int_t)r->start_wall,
                  "finished_ms", (json_int_t)r->end_wall, "wall_ms", (json_int_t)wall,
                  "interrupted", r->interrupted, "tasks", "total", (json_int_t)r->w.n, "succeeded",
                  (json_int_t)r->ok, "failed", (json_int_t)r->failed, "cancelled",
                  (json_int_t)r->cancelled, "unfinished", (json_int_t)(r->w.n - r->done), "retries",
                  (json_int_t)r->retries, "attempts", (json_int_t)attempts, "throughput_per_s",
                  wall > 0 ? round((double)r->done * 100000.0 / (double)wall) / 100.0 : 0.0,
                  "latency_ms", pct_json(lat.v, lat.n), "turnaround_ms", pct_json(turn.v, turn.n),
                  "tokens", "used", (json_int_t)r->tokens, "estimated", (json_int_t)r->estimated,
                  "budget", "remaining", "errors", errors, "types", types, "pools", report_pools(r),
                  "agents", report_agents(r), "controllers", "tuner_mode",
                  swd_mode_name(r->cfg.tuner.mode), "events", r->controller_events);
    free(lat.v);
    free(turn.v);
    return rep;
}

// ---------------------------------------------------------------------------
// The summary on stdout, --report and --results

static void print_lat(FILE *out, const char *label, const json_t *l) {
    char a[32], b[32], c[32];
    fmt_ms(a, sizeof(a), json_ms(l, "p50"));
    fmt_ms(b, sizeof(b), json_ms(l, "p95"));
    fmt_ms(c, sizeof(c), json_ms(l, "p99"));
    fprintf(out, "  %-12s p50 %-9s p95 %-9s p99 %s\n", label, a, b, c);
}

static void print_table_rows(FILE *out, const json_t *arr, bool agents) {
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        char p50[32], tok[32], tail[96];
        fmt_ms(p50, sizeof(p50), json_ms(json_object_get(e, "latency_ms"), "p50"));
        fmt_count(tok, sizeof(tok), (double)json_ms(e, "tokens"));
        const json_t *h = json_object_get(e, "health");
        if (agents) {
            snprintf(tail, sizeof(tail), "%-12s %-5.2f %s",
                     json_string_value(json_object_get(e, "pool")),
                     json_is_number(h) ? json_number_value(h) : 0.0,
                     json_string_value(json_object_get(e, "state")));
        } else {
            snprintf(tail, sizeof(tail), "%-6lld %lld", (long long)json_ms(e, "agents"),
                     (long long)json_ms(e, "restarts"));
        }
        fprintf(out, "  %-18s %-8s %6lld %6lld %7lld %9s %8s  %s\n",
                json_string_value(json_object_get(e, "name")),
                json_string_value(json_object_get(e, agents ? "agent_id" : "kind")),
                (long long)json_ms(e, "tasks"), (long long)json_ms(e, "failures"),
                (long long)json_ms(e, "retries"), p50, tok, tail);
    }
}

static void print_summary(run_t *r, const json_t *rep, FILE *out) {
    const json_t *t = json_object_get(rep, "tasks");
    char wall[32], used[32], est[32];
    fmt_ms(wall, sizeof(wall), json_ms(rep, "wall_ms"));
    fmt_count(used, sizeof(used), (double)r->tokens);
    fmt_count(est, sizeof(est), (double)r->estimated);
    fprintf(out, "\n%s: %lld tasks in %s%s\n", r->w.name, (long long)json_ms(t, "total"), wall,
            r->interrupted ? " (interrupted)" : "");
    fprintf(out,
            "  %-12s %lld succeeded, %lld failed, %lld cancelled, %lld unfinished; "
            "%lld retries, %lld attempts\n",
            "tasks", (long long)json_ms(t, "succeeded"), (long long)json_ms(t, "failed"),
            (long long)json_ms(t, "cancelled"), (long long)json_ms(t, "unfinished"),
            (long long)json_ms(t, "retries"), (long long)json_ms(t, "attempts"));
    fprintf(out, "  %-12s %.2f tasks/s\n", "throughput",
            json_real_value(json_object_get(rep, "throughput_per_s")));
    print_lat(out, "latency", json_object_get(rep, "latency_ms"));
    print_lat(out, "turnaround", json_object_get(rep, "turnaround_ms"));
    fprintf(out, "  %-12s %s used, %s estimated; no budget set\n", "tokens", used, est);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(rep, "errors"), k, v) {
        fprintf(out, "  %-12s %s x%lld\n", "errors", k, (long long)json_integer_value(v));
    }
    fprintf(out, "\n  %-18s %-8s %6s %6s %7s %9s %8s  %-6s %s\n", "pool", "kind", "tasks", "fail",
            "retries", "p50", "tokens", "agents", "restarts");
    print_table_rows(out, json_object_get(rep, "pools"), false);
    fprintf(out, "\n  %-18s %-8s %6s %6s %7s %9s %8s  %-12s %-5s %s\n", "agent", "id", "tasks",
            "fail", "retries", "p50", "tokens", "pool", "health", "state");
    print_table_rows(out, json_object_get(rep, "agents"), true);
    fflush(out);
}

static json_t *result_json(const task_rec_t *rec) {
    if (rec->result == NULL) {
        return json_null();
    }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    json_t *j = NULL;
    if (msgpack_unpack_next(&up, rec->result, rec->result_len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        j = swd_json_from_msgpack(&up.data);
    }
    msgpack_unpacked_destroy(&up);
    return j ? j : json_null();
}

static json_t *task_line(run_t *r, size_t i) {
    const task_rec_t *rec = &r->recs[i];
    const swd_workload_task_t *wt = &r->w.tasks[i];
    json_t *after = json_array();
    for (uint32_t k = 0; k < wt->nafter; k++) {
        json_array_append_new(after, json_string(r->w.tasks[wt->after[k]].key));
    }
    const agent_rec_t *a = rec->agent_id[0]
                               ? swd_strmap_get(&r->agent_ids, rec->agent_id, strlen(rec->agent_id))
                               : NULL;
    json_t *err = rec->error_code ? json_pack("{s:s,s:s?}", "code", rec->error_code, "message",
                                              rec->error_message)
                                  : json_null();
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:I,s:s?,s:s?,s:I,s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:o}", "key", wt->key,
        "task_id", rec->task_id, "type", wt->type, "state",
        rec->terminal ? swd_task_state_names[rec->state] : "unfinished", "attempts",
        (json_int_t)rec->attempts, "agent_id", rec->agent_id[0] ? rec->agent_id : NULL, "agent",
        a ? a->name : NULL, "tokens_used", (json_int_t)rec->tokens, "estimated_tokens",
        (json_int_t)wt->estimated_tokens, "submitted_ms", (json_int_t)rec->submitted_ms,
        "started_ms", rec->first_started_ms ? json_integer(rec->first_started_ms) : json_null(),
        "finished_ms", rec->finished_ms ? json_integer(rec->finished_ms) : json_null(),
        "latency_ms",
        rec->finished_ms && rec->started_ms ? json_integer(rec->finished_ms - rec->started_ms)
                                            : json_null(),
        "after", after, "output", result_json(rec), "error", err);
}

static int write_results(run_t *r, const char *path) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < r->w.n && rc == 0; i++) {
        json_t *j = task_line(r, i);
        char *s = json_dumps(j, JSON_COMPACT | swd_json_real_flags(j));
        rc = s != NULL && fprintf(f, "%s\n", s) > 0 ? 0 : -1;
        free(s);
        json_decref(j);
    }
    return fclose(f) != 0 || rc != 0 ? -1 : 0;
}

static int write_report(const json_t *rep, const char *path) {
    char *tmp = swd_xasprintf("%s.tmp", path);
    int rc = json_dump_file(rep, tmp, JSON_INDENT(2) | swd_json_real_flags(rep));
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
    }
    if (rc != 0) {
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

// The daemon begins its teardown: everything is still alive, so this is
// where the report is made.
static void on_stopping(swd_daemon_t *d, void *data) {
    run_t *r = data;
    swd_timer_stop(&r->progress);
    swd_timer_stop(&r->finish);
    clear_line(r);
    swd_bus_unsubscribe(&d->bus, r->sub);
    r->sub = NULL;
    r->stopped = true;
    r->end_wall = swd_clock_wall(&d->clock);
    json_t *rep = build_report(r);
    print_summary(r, rep, stdout);
    if (r->o.report != NULL && write_report(rep, r->o.report) != 0) {
        fprintf(stderr, "swarmd run: cannot write the report to %s\n", r->o.report);
        r->exit_code = 1;
    }
    if (r->o.results != NULL && write_results(r, r->o.results) != 0) {
        fprintf(stderr, "swarmd run: cannot write the results to %s\n", r->o.results);
        r->exit_code = 1;
    }
    if (r->o.report != NULL || r->o.results != NULL) {
        printf("\n%s%s%s%s\n", r->o.report ? "report: " : "", r->o.report ? r->o.report : "",
               r->o.report && r->o.results ? ", results: " : (r->o.results ? "results: " : ""),
               r->o.results ? r->o.results : "");
    }
    json_decref(rep);
    if (r->ok != r->w.n) {
        r->exit_code = 1;
    }
    fflush(stdout);
}

// ---------------------------------------------------------------------------
// Entry

static void print_header(run_t *r) {
    size_t agents = 0;
    for (size_t i = 0; i < r->cfg.n_pools; i++) {
        agents += r->cfg.pools[i].kind == SWD_POOL_PROCESS ? (size_t)r->cfg.pools[i].min : 0;
    }
    fprintf(stderr, "swarmd run: %s (%s): %zu tasks, %zu pool%s, %zu agent process%s\n", r->w.name,
            r->w.path, r->w.n, r->cfg.n_pools, r->cfg.n_pools == 1 ? "" : "s", agents,
            agents == 1 ? "" : "es");
    fprintf(stderr, "swarmd run: rpc %s", r->d->rpc_addr[0] ? r->d->rpc_addr : "(off)");
    if (r->d->http_addr[0]) {
        fprintf(stderr, ", status http://%s/", r->d->http_addr);
    }
    fprintf(stderr, "\n");
}

static void run_free(run_t *r) {
    swd_config_overrides_close(&r->o.flags);
    for (size_t i = 0; r->recs != NULL && i < r->w.n; i++) {
        free(r->recs[i].error_code);
        free(r->recs[i].error_message);
        free(r->recs[i].result);
    }
    free(r->recs);
    for (agent_rec_t *a = r->agents, *next; a != NULL; a = next) {
        next = a->next;
        free(a->name);
        free(a->pool);
        free(a->lat);
        free(a);
    }
    swd_u64map_close(&r->by_seq);
    swd_strmap_close(&r->agent_ids);
    json_decref(r->controller_events);
    swd_workload_close(&r->w);
    swd_config_close(&r->cfg);
    free(r->d);
    free(r);
}

static void wire(run_t *r) {
    swd_daemon_t *d = r->d;
    r->recs = swd_xcalloc(r->w.n ? r->w.n : 1, sizeof(task_rec_t));
    r->controller_events = json_array();
    r->start_wall = swd_clock_wall(&d->clock);
    r->start_mono = swd_clock_now(&d->clock);
    unsigned mask = SWD_TOPIC_ALL & ~SWD_TOPIC_BIT(SWD_TOPIC_LOG);
    r->sub = swd_bus_subscribe(&d->bus, mask, on_event, r);
    r->sink = swd_log_add_sink(on_log_record, r);
    swd_timer_init(&d->clock, &r->progress, on_progress, r);
    swd_timer_init(&d->clock, &r->finish, on_finish, r);
    d->hooks = (swd_daemon_hooks_t){.signal = on_signal, .stopping = on_stopping, .data = r};
}

int swd_run_main(int argc, char **argv) {
    run_t *r = swd_xcalloc(1, sizeof(*r));
    swd_u64map_init(&r->by_seq);
    swd_strmap_init(&r->agent_ids);
    int code = parse_opts(argc, argv, &r->o);
    if (code == 0) {
        code = load_all(r);
    }
    if (code != 0) {
        run_free(r);
        return code;
    }
    r->tty = isatty(STDERR_FILENO) == 1;
    // The progress line owns the terminal; warnings come through our sink.
    swd_log_set_stderr(false);
    r->d = swd_xcalloc(1, sizeof(*r->d));
    char err[512] = "";
    code = swd_daemon_start(r->d, &r->cfg, err, sizeof(err));
    if (code != 0) {
        fprintf(stderr, "swarmd run: %s\n", err);
        swd_log_shutdown();
        run_free(r);
        return code;
    }
    wire(r);
    print_header(r);
    if (r->o.ready_file != NULL && swd_daemon_write_ready_file(r->d, r->o.ready_file) != 0) {
        fprintf(stderr, "swarmd run: cannot write %s\n", r->o.ready_file);
    }
    if (submit_all(r) != 0) {
        r->exit_code = 1;
        swd_daemon_drain(r->d);
    } else {
        swd_timer_start(&r->progress, r->tty ? PROGRESS_TTY_MS : PROGRESS_PLAIN_MS);
    }
    int loop_code = swd_daemon_run(r->d);
    code = r->exit_code != 0 ? r->exit_code : loop_code;
    run_free(r);
    return code;
}
