// dispatch: an in-process microbenchmark of the scheduler's dispatch
// decision (choose the agent, pop the task, record the attempt) on the
// virtual clock, with a fake transport that only records what it is handed.
//
//   submit Q tasks, register M agents (1 slot each)
//   repeat:  [timed]   swd_clock_advance(0): one dispatch pass, M decisions
//            [untimed] advance(1): finished tasks' retention timers fire
//            [untimed] every attempt answered ok, M tasks submitted again
//
// so the queue holds Q tasks whenever a decision is made (Q - M when M > Q
// is as deep as it gets) and every agent is free at the start of a pass.
// The timed part is the whole pass divided by the decisions it made:
// the ready-queue heap, queue_best, swd_agents_best, dequeue, start_attempt
// (task state change, timeout timer, agent refresh and re-ranking) and the
// transport's run().
//
// Every configuration is built first and kept alive; the repetitions then
// go round all of them, so a noisy spell on a shared machine hits every
// configuration alike instead of one. Prints one JSON line per (tasks,
// agents) pair with the median over the repetitions.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agents/agent.h"
#include "runtime/bus.h"
#include "runtime/clock.h"
#include "runtime/log.h"
#include "scheduler/scheduler.h"

typedef struct pending_run {
    swd_agent_t *agent;
    uint64_t cookie;
} pending_run_t;

static pending_run_t *g_runs;
static size_t g_nruns, g_caprun;

static void bench_run(swd_agent_t *a, const swd_run_t *run) {
    if (g_nruns == g_caprun) {
        g_caprun = g_caprun ? g_caprun * 2 : 1024;
        g_runs = realloc(g_runs, g_caprun * sizeof(*g_runs));
        if (g_runs == NULL) {
            abort();
        }
    }
    g_runs[g_nruns++] = (pending_run_t){a, run->cookie};
}

static const swd_transport_ops_t bench_ops = {.name = "bench", .run = bench_run};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void submit(swd_sched_t *s, long n) {
    swd_task_spec_t spec = {
        .type = "noop",
        .type_len = 4,
        .priority = 2, // medium
        .estimated_tokens = 1000,
        .max_retries = 3,
    };
    for (long i = 0; i < n; i++) {
        swd_task_t *t;
        if (swd_sched_submit(s, &spec, &t) != SWD_SUBMIT_OK) {
            fprintf(stderr, "dispatch: submit refused\n");
            exit(1);
        }
    }
}

static void complete_all(void) {
    swd_outcome_t ok = {.ok = true};
    for (size_t i = 0; i < g_nruns; i++) {
        swd_agent_complete(g_runs[i].agent, g_runs[i].cookie, &ok);
    }
    g_nruns = 0;
}

#define MAX_REPS 64

// One scheduler with its agents and queue, kept alive for the whole run so
// the configurations can be measured in turns (noise on a shared machine
// then hits them all alike).
typedef struct inst {
    long Q, M;
    swd_clock_t clock;
    swd_bus_t bus;
    swd_sched_t sched;
    swd_agents_t agents;
    double fill_ns;
    double dec[MAX_REPS], sub[MAX_REPS], fin[MAX_REPS];
    long decisions;
} inst_t;

static inst_t *inst_new(long Q, long M) {
    inst_t *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        abort();
    }
    x->Q = Q;
    x->M = M;
    swd_clock_init_virtual(&x->clock, 1700000000000);
    swd_bus_init(&x->bus);
    swd_sched_config_t sc = {
        .max_queued = (uint64_t)(Q + M + 16),
        .default_timeout_ms = 600000,
        .default_max_retries = 3,
        .backoff_base_ms = 200,
        .backoff_max_ms = 30000,
        .aging_ms = 10000,
        .retain_finished_ms = 1,
        .seed = 1,
    };
    swd_sched_init(&x->sched, &x->clock, &x->bus, &x->agents, &sc);
    swd_agents_config_t ac = {.window = 50, .target_latency_ms = 3000, .dead_retention_ms = 300000};
    swd_agents_cbs_t cbs = swd_sched_agent_callbacks(&x->sched);
    swd_agents_init(&x->agents, &x->clock, &x->bus, &ac, &cbs);
    const char *caps[] = {"noop"};
    for (long i = 0; i < M; i++) {
        char name[32];
        snprintf(name, sizeof(name), "agent-%ld", i);
        swd_agent_spec_t spec = {.name = name, .caps = caps, .ncaps = 1, .max_concurrency = 1};
        swd_agents_add(&x->agents, &spec, &bench_ops, NULL);
    }
    int64_t t0 = now_ns();
    submit(&x->sched, Q);
    x->fill_ns = (double)(now_ns() - t0) / (double)Q;
    return x;
}

static void inst_free(inst_t *x) {
    complete_all();
    swd_agents_close(&x->agents);
    swd_sched_close(&x->sched);
    swd_bus_close(&x->bus);
    swd_clock_close(&x->clock);
    free(x);
}

// Runs rounds until `target` decisions; with `r` >= 0 the times go to rep r.
static void measure(inst_t *x, long target, int r) {
    long decisions = 0, completions = 0;
    int64_t t_dec = 0, t_sub = 0, t_fin = 0;
    while (decisions < target) {
        int64_t a = now_ns();
        swd_clock_advance(&x->clock, 0);
        int64_t b = now_ns();
        long n = (long)g_nruns;
        t_dec += b - a;
        decisions += n;
        swd_clock_advance(&x->clock, 1);
        a = now_ns();
        complete_all();
        b = now_ns();
        submit(&x->sched, n);
        int64_t c = now_ns();
        t_fin += b - a;
        t_sub += c - b;
        completions += n;
        if (n == 0) {
            fprintf(stderr, "dispatch: a pass made no decision\n");
            exit(1);
        }
    }
    if (r >= 0) {
        x->dec[r] = (double)t_dec / (double)decisions;
        x->sub[r] = (double)t_sub / (double)completions;
        x->fin[r] = (double)t_fin / (double)completions;
        x->decisions += decisions;
    }
}

static void report(inst_t *x, int reps) {
    printf("{\"tasks\":%ld,\"agents\":%ld,\"reps\":%d,\"decisions\":%ld,"
           "\"ns_per_decision\":%.1f,\"ns_per_submit\":%.1f,\"ns_per_complete\":%.1f,"
           "\"ns_per_fill_submit\":%.1f,\"queued_at_end\":%" PRIu64 ",\"reps_ns\":[",
           x->Q, x->M, reps, x->decisions, median(x->dec, reps), median(x->sub, reps),
           median(x->fin, reps), x->fill_ns, x->sched.count[SWD_TASK_QUEUED]);
    for (int i = 0; i < reps; i++) {
        printf("%s%.1f", i ? "," : "", x->dec[i]);
    }
    printf("]}\n");
    fflush(stdout);
}

static int parse_list(const char *s, long *out, int cap) {
    int n = 0;
    char *end = (char *)s;
    while (*end && n < cap) {
        out[n++] = (long)strtod(end, &end); // accepts 1e6
        if (*end == ',') {
            end++;
        } else if (*end) {
            return -1;
        }
    }
    return n;
}

int main(int argc, char **argv) {
    long tasks[16] = {1000, 10000, 100000, 1000000};
    long agents[16] = {10, 100, 1000, 10000};
    int ntasks = 4, nagents = 4, reps = 5;
    long target = 200000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--tasks") == 0) {
            ntasks = parse_list(argv[i + 1], tasks, 16);
        } else if (strcmp(argv[i], "--agents") == 0) {
            nagents = parse_list(argv[i + 1], agents, 16);
        } else if (strcmp(argv[i], "--reps") == 0) {
            reps = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--decisions") == 0) {
            target = (long)strtod(argv[i + 1], NULL);
        } else {
            ntasks = -1;
        }
    }
    if ((argc - 1) % 2 != 0 || ntasks <= 0 || nagents <= 0 || reps < 1 || reps > MAX_REPS ||
        target < 1) {
        fprintf(stderr, "usage: dispatch [--tasks 1000,1e4,...] [--agents 10,100,...] "
                        "[--reps 5] [--decisions 200000]\n");
        return 2;
    }
    swd_log_setup(SWD_LOG_ERROR, 0, NULL, 0);
    int n = ntasks * nagents;
    inst_t **xs = calloc((size_t)n, sizeof(inst_t *));
    if (xs == NULL) {
        abort();
    }
    for (int i = 0; i < ntasks; i++) {
        for (int j = 0; j < nagents; j++) {
            xs[i * nagents + j] = inst_new(tasks[i], agents[j]);
        }
    }
    // Repetitions go round the configurations; each starts with one untimed
    // warm-up pass of its own (its data left the caches meanwhile).
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < n; k++) {
            measure(xs[k], xs[k]->M, -1);
            measure(xs[k], target, r);
        }
    }
    for (int k = 0; k < n; k++) {
        report(xs[k], reps);
        inst_free(xs[k]);
    }
    free(xs);
    swd_log_shutdown();
    return 0;
}
