// Tests of the simulated LLM agent model (agents/sim_model.h): determinism,
// the latency, token, capacity, overload, degradation, crash and hang models,
// knob parsing and help text. Every run uses a fixed seed, so the statistical
// checks are deterministic; their bounds are still wide enough to hold for
// any reasonable seed.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/sim_model.h"
#include "proto/errors.h"
#include "tests/unit/leak_check.h"

#define N_SAMPLES 20001

static swd_sim_params_t params_with(const char *name, const char *value) {
    swd_sim_params_t p;
    swd_sim_params_init(&p);
    char err[256] = "";
    int rc = swd_sim_params_set(&p, name, value, err, sizeof(err));
    cr_assert_eq(rc, 0, "set %s=%s: %s", name, value, err);
    return p;
}

static void set_ok(swd_sim_params_t *p, const char *name, const char *value) {
    char err[256] = "";
    int rc = swd_sim_params_set(p, name, value, err, sizeof(err));
    cr_assert_eq(rc, 0, "set %s=%s: %s", name, value, err);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t median_i64(int64_t *v, size_t n) {
    qsort(v, n, sizeof(*v), cmp_i64);
    return v[n / 2];
}

static bool outcome_eq(const swd_sim_outcome_t *a, const swd_sim_outcome_t *b) {
    return a->kind == b->kind && a->latency_ms == b->latency_ms &&
           a->tokens_used == b->tokens_used && a->error == b->error &&
           a->retryable == b->retryable && a->retry_after_ms == b->retry_after_ms;
}

// A mix of every feature, so determinism covers each branch.
static void busy_params(swd_sim_params_t *p, const char *seed) {
    swd_sim_params_init(p);
    set_ok(p, "seed", seed);
    set_ok(p, "fail-rate", "0.1");
    set_ok(p, "fatal-rate", "0.05");
    set_ok(p, "hang-rate", "0.02");
    set_ok(p, "overload-at", "9");
    set_ok(p, "degrade-after-ms", "200000");
    set_ok(p, "degrade-ramp-ms", "100000");
}

static void plan_sequence(const swd_sim_params_t *p, swd_sim_outcome_t *out, size_t n) {
    swd_sim_t s;
    swd_sim_init(&s, p, 1000);
    for (size_t i = 0; i < n; i++) {
        int64_t now = 1000 + (int64_t)i * 37;
        uint32_t inflight = 1 + (uint32_t)(i % 11);
        uint64_t estimate = (i % 3 == 0) ? 0 : 100 + i;
        swd_sim_plan(&s, now, inflight, estimate, &out[i]);
    }
}

Test(sim_model, same_seed_same_outcomes) {
    enum { N = 10000 };
    static swd_sim_outcome_t a[N], b[N], c[N];
    swd_sim_params_t p;
    busy_params(&p, "42");
    plan_sequence(&p, a, N);
    plan_sequence(&p, b, N);
    size_t kinds[5] = {0};
    for (size_t i = 0; i < N; i++) {
        cr_assert(outcome_eq(&a[i], &b[i]), "outcome %zu differs between identical runs", i);
        kinds[a[i].kind]++;
    }
    // The mix really exercised every kind but CRASH.
    cr_assert_gt(kinds[SWD_SIM_OK], 0);
    cr_assert_gt(kinds[SWD_SIM_ERROR], 0);
    cr_assert_gt(kinds[SWD_SIM_OVERLOADED], 0);
    cr_assert_gt(kinds[SWD_SIM_HANG], 0);

    busy_params(&p, "43");
    plan_sequence(&p, c, N);
    size_t differ = 0;
    for (size_t i = 0; i < N; i++) {
        differ += !outcome_eq(&a[i], &c[i]);
    }
    cr_assert_gt(differ, N / 2, "another seed should change most outcomes, changed %zu", differ);
}

Test(sim_model, median_latency_matches_knob) {
    static int64_t lat[N_SAMPLES];
    swd_sim_params_t p;
    swd_sim_params_init(&p);
    swd_sim_t s;
    swd_sim_init(&s, &p, 0);
    for (size_t i = 0; i < N_SAMPLES; i++) {
        swd_sim_outcome_t o;
        swd_sim_plan(&s, (int64_t)i, 1, 0, &o);
        cr_assert_eq(o.kind, SWD_SIM_OK);
        lat[i] = o.latency_ms;
    }
    int64_t med = median_i64(lat, N_SAMPLES);
    cr_assert(med >= 776 && med <= 824, "median latency %lld, want 800 ± 3%%", (long long)med);
    // Log-normal with sigma 0.5: about 16% above median × e^0.5.
    size_t above = 0;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        above += lat[i] > (int64_t)(800 * exp(0.5));
    }
    double frac = (double)above / N_SAMPLES;
    cr_assert(frac > 0.13 && frac < 0.19, "fraction above one sigma %.3f, want ~0.159", frac);

    // Another median, no spread: constant.
    p = params_with("latency-ms", "250");
    set_ok(&p, "latency-spread", "0");
    swd_sim_init(&s, &p, 0);
    for (int i = 0; i < 100; i++) {
        swd_sim_outcome_t o;
        swd_sim_plan(&s, i, 2, 0, &o);
        cr_assert_eq(o.latency_ms, 250);
    }
}

Test(sim_model, tokens_follow_mean_or_estimate) {
    swd_sim_params_t p;
    swd_sim_params_init(&p);
    swd_sim_t s;
    swd_sim_init(&s, &p, 0);
    double sum = 0, sum_est = 0;
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        swd_sim_outcome_t o;
        swd_sim_plan(&s, i, 1, 0, &o);
        cr_assert_geq(o.tokens_used, 1);
        sum += (double)o.tokens_used;
        swd_sim_plan(&s, i, 1, 5000, &o);
        sum_est += (double)o.tokens_used;
    }
    double mean = sum / N, mean_est = sum_est / N;
    cr_assert(fabs(mean - 600) < 0.03 * 600, "mean tokens %.1f, want ~600", mean);
    cr_assert(fabs(mean_est - 5000) < 0.03 * 5000, "mean tokens %.1f, want ~5000", mean_est);

    // Tiny means with a wide spread still use at least one token.
    p = params_with("tokens", "1");
    set_ok(&p, "tokens-spread", "3");
    swd_sim_init(&s, &p, 0);
    for (int i = 0; i < 1000; i++) {
        swd_sim_outcome_t o;
        swd_sim_plan(&s, i, 1, 0, &o);
        cr_assert_geq(o.tokens_used, 1);
    }
}

Test(sim_model, fail_rate_gives_retryable_errors) {
    swd_sim_params_t p = params_with("fail-rate", "0.2");
    swd_sim_t s;
    swd_sim_init(&s, &p, 0);
    enum { N = 10000 };
    int errors = 0;
    for (int i = 0; i < N; i++) {
        swd_sim_outcome_t o;
        swd_sim_plan(&s, i, 1, 0, &o);
        if (o.kind == SWD_SIM_ERROR) {
            errors++;
            cr_assert_str_eq(o.error, "sim_error");
            cr_assert_not_null(o.message);
            cr_assert(o.retryable);
            cr_assert_eq(o.tokens_used, 0);
            cr_assert_gt(o.latency_ms, 0, "an error still takes time");
        } else {
            cr_assert_eq(o.kind, SWD_SIM_OK);
            cr_assert_null(o.error);
        }
    }
    // Binomial sd is 40; ±300 is 7.5 sd.
    cr_assert(errors > 1700 && errors < 2300, "%d errors in %d, want ~2000", errors, N);
}

Test(sim_model, fatal_and_hang_rates) {
    swd_sim_params_t p = params_with("fatal-rate", "0.1");
    set_ok(&p, "hang-rate", "0.1");
    swd_sim_t s;
    swd_sim_init(&s, &p, 0);
    enum { N = 10000 };
    int fatal = 0, hang = 0;
    for (int i = 0; i < N; i++) {
        swd_sim_outcome_t o;
        swd_sim_plan(&s, i, 1, 0, &o);
        if (o.kind == SWD_SIM_ERROR) {
            fatal++;
            cr_assert_str_eq(o.error, "sim_fatal");
            cr_assert_not(o.retryable);
        } else if (o.kind == SWD_SIM_HANG) {
            hang++;
            cr_assert_null(o.error);
            cr_assert_eq(o.tokens_used, 0);
        }
    }
    cr_assert(fatal > 800 && fatal < 1200, "%d fatal errors, want ~1000", fatal);
    cr_assert(hang > 800 && hang < 1200, "%d hangs, want ~1000", hang);

    p = params_with("hang-rate", "1");
    swd_sim_init(&s, &p, 0);
    for (int i = 0; i < 100; i++) {
        swd_sim_outcome_t o;
        swd_sim_plan(&s, i, 1, 0, &o);
        cr_assert_eq(o.kind, SWD_SIM_HANG);
    }
}

// Same seed, different load: the draws line up task by task, so each
// latency is the unloaded one times the load factor.
Test(sim_model, capacity_slows_tasks_down) {
    swd_sim_params_t p;
    swd_sim_params_init(&p); // capacity 4
    swd_sim_t at_cap, over, far_over;
    swd_sim_init(&at_cap, &p, 0);
    swd_sim_init(&over, &p, 0);
    swd_sim_init(&far_over, &p, 0);
    for (int i = 0; i < 1000; i++) {
        swd_sim_outcome_t a, b, c;
        swd_sim_plan(&at_cap, i, 4, 0, &a);
        swd_sim_plan(&over, i, 8, 0, &b);
        swd_sim_plan(&far_over, i, 12, 0, &c);
        cr_assert_leq(llabs(b.latency_ms - 2 * a.latency_ms), 2, "8 in flight: %lld vs %lld",
                      (long long)b.latency_ms, (long long)a.latency_ms);
        cr_assert_leq(llabs(c.latency_ms - 3 * a.latency_ms), 3, "12 in flight: %lld vs %lld",
                      (long long)c.latency_ms, (long long)a.latency_ms);
    }

    // capacity 0 means no limit.
    p = params_with("capacity", "0");
    set_ok(&p, "latency-spread", "0");
    swd_sim_t s;
    swd_sim_init(&s, &p, 0);
    swd_sim_outcome_t o;
    swd_sim_plan(&s, 0, 1000, 0, &o);
    cr_assert_eq(o.latency_ms, 800);
}

Test(sim_model, overload_answers_at_once) {
    swd_sim_params_t p = params_with("overload-at", "3");
    set_ok(&p, "retry-after-ms", "2500");
    swd_sim_t s;
    swd_sim_init(&s, &p, 0);
    swd_sim_outcome_t o;
    swd_sim_plan(&s, 0, 3, 0, &o);
    cr_assert_eq(o.kind, SWD_SIM_OK, "3 in flight is not over 3");
    swd_sim_plan(&s, 0, 4, 0, &o);
    cr_assert_eq(o.kind, SWD_SIM_OVERLOADED);
    cr_assert_str_eq(o.error, "overloaded");
    cr_assert(o.retryable);
    cr_assert_eq(o.retry_after_ms, 2500);
    cr_assert_eq(o.latency_ms, 0);
    cr_assert_eq(o.tokens_used, 0);
    cr_assert_str_eq(swd_sim_kind_name(o.kind), "overloaded");

    // The default retry_after_ms is 1000.
    p = params_with("overload-at", "1");
    swd_sim_init(&s, &p, 0);
    swd_sim_plan(&s, 0, 2, 0, &o);
    cr_assert_eq(o.kind, SWD_SIM_OVERLOADED);
    cr_assert_eq(o.retry_after_ms, 1000);
}

// Runs 4000 plans at `now` and reports the error fraction and median latency.
static void sample_at(swd_sim_t *s, int64_t now, double *err_frac, int64_t *median) {
    enum { N = 4000 };
    static int64_t lat[N];
    int errors = 0;
    for (int i = 0; i < N; i++) {
        swd_sim_outcome_t o;
        swd_sim_plan(s, now, 1, 0, &o);
        errors += o.kind == SWD_SIM_ERROR;
        lat[i] = o.latency_ms;
    }
    *err_frac = (double)errors / N;
    *median = median_i64(lat, N);
}

Test(sim_model, degradation_ramps_failures_and_latency) {
    swd_sim_params_t p = params_with("degrade-after-ms", "10000");
    set_ok(&p, "degrade-ramp-ms", "10000");
    swd_sim_t s;
    swd_sim_init(&s, &p, 5000); // degradation starts at 15000, full at 25000
    double frac;
    int64_t med;

    sample_at(&s, 14000, &frac, &med);
    cr_assert_eq(frac, 0.0, "no failure before degradation, got %.3f", frac);
    cr_assert(med > 740 && med < 860, "median %lld before degradation", (long long)med);

    sample_at(&s, 20000, &frac, &med); // halfway: fail 0.4, latency x2.5
    cr_assert(frac > 0.35 && frac < 0.45, "halfway failure rate %.3f, want ~0.4", frac);
    cr_assert(med > 1850 && med < 2150, "halfway median %lld, want ~2000", (long long)med);

    sample_at(&s, 40000, &frac, &med); // full: fail 0.8, latency x4
    cr_assert(frac > 0.75 && frac < 0.85, "full failure rate %.3f, want ~0.8", frac);
    cr_assert(med > 2950 && med < 3450, "full median %lld, want ~3200", (long long)med);
}

Test(sim_model, crash_after_tasks) {
    swd_sim_params_t p = params_with("crash-after-tasks", "5");
    swd_sim_t s;
    swd_sim_init(&s, &p, 0);
    swd_sim_outcome_t o;
    for (int i = 1; i <= 5; i++) {
        swd_sim_plan(&s, i, 1, 0, &o);
        cr_assert_eq(o.kind, SWD_SIM_OK, "task %d should run", i);
    }
    swd_sim_plan(&s, 6, 1, 0, &o);
    cr_assert_eq(o.kind, SWD_SIM_CRASH, "task 6 should crash");
    cr_assert_eq(o.latency_ms, 0);
    cr_assert_null(o.error);
    swd_sim_plan(&s, 7, 1, 0, &o);
    cr_assert_eq(o.kind, SWD_SIM_CRASH, "a crashed agent stays crashed");
    int64_t at;
    cr_assert_not(swd_sim_crash_time(&s, &at));
}

Test(sim_model, crash_after_ms) {
    swd_sim_params_t p = params_with("crash-after-ms", "3000");
    swd_sim_t s;
    swd_sim_init(&s, &p, 10000);
    int64_t at = 0;
    cr_assert(swd_sim_crash_time(&s, &at));
    cr_assert_eq(at, 13000);
    swd_sim_outcome_t o;
    swd_sim_plan(&s, 12999, 1, 0, &o);
    cr_assert_eq(o.kind, SWD_SIM_OK);
    swd_sim_plan(&s, 13000, 1, 0, &o);
    cr_assert_eq(o.kind, SWD_SIM_CRASH);
    cr_assert_str_eq(swd_sim_kind_name(o.kind), "crash");
}

Test(sim_model, defaults) {
    swd_sim_params_t p;
    swd_sim_params_init(&p);
    cr_assert_eq(p.seed, 1);
    cr_assert_eq(p.latency_ms, 800);
    cr_assert_eq(p.latency_spread, 0.5);
    cr_assert_eq(p.tokens, 600);
    cr_assert_eq(p.tokens_spread, 0.3);
    cr_assert_eq(p.fail_rate, 0);
    cr_assert_eq(p.fatal_rate, 0);
    cr_assert_eq(p.capacity, 4);
    cr_assert_eq(p.overload_at, 0);
    cr_assert_eq(p.retry_after_ms, 1000);
    cr_assert_eq(p.degrade_after_ms, 0);
    cr_assert_eq(p.degrade_ramp_ms, 60000);
    cr_assert_eq(p.degrade_fail_rate, 0.8);
    cr_assert_eq(p.degrade_latency_factor, 4);
    cr_assert_eq(p.crash_after_tasks, 0);
    cr_assert_eq(p.crash_after_ms, 0);
    cr_assert_eq(p.hang_rate, 0);
}

Test(sim_model, params_set_accepts_every_knob) {
    static const char *const names[] = {
        "latency-ms",
        "latency-spread",
        "tokens",
        "tokens-spread",
        "fail-rate",
        "fatal-rate",
        "capacity",
        "overload-at",
        "retry-after-ms",
        "degrade-after-ms",
        "degrade-ramp-ms",
        "degrade-fail-rate",
        "degrade-latency-factor",
        "crash-after-tasks",
        "crash-after-ms",
        "hang-rate",
        "seed",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        swd_sim_params_t p;
        swd_sim_params_init(&p);
        set_ok(&p, names[i], "1");
    }
    swd_sim_params_t p;
    swd_sim_params_init(&p);
    set_ok(&p, "latency-ms", "12.5");
    cr_assert_eq(p.latency_ms, 12.5);
    set_ok(&p, "seed", "18446744073709551615");
    cr_assert_eq(p.seed, UINT64_MAX);
    set_ok(&p, "fail-rate", "1");
    cr_assert_eq(p.fail_rate, 1.0);
    set_ok(&p, "capacity", "16");
    cr_assert_eq(p.capacity, 16);
    set_ok(&p, "degrade-latency-factor", "2.5");
    cr_assert_eq(p.degrade_latency_factor, 2.5);
}

static bool params_eq(const swd_sim_params_t *a, const swd_sim_params_t *b) {
    return a->seed == b->seed && a->latency_ms == b->latency_ms &&
           a->latency_spread == b->latency_spread && a->tokens == b->tokens &&
           a->tokens_spread == b->tokens_spread && a->fail_rate == b->fail_rate &&
           a->fatal_rate == b->fatal_rate && a->capacity == b->capacity &&
           a->overload_at == b->overload_at && a->retry_after_ms == b->retry_after_ms &&
           a->degrade_after_ms == b->degrade_after_ms && a->degrade_ramp_ms == b->degrade_ramp_ms &&
           a->degrade_fail_rate == b->degrade_fail_rate &&
           a->degrade_latency_factor == b->degrade_latency_factor &&
           a->crash_after_tasks == b->crash_after_tasks && a->crash_after_ms == b->crash_after_ms &&
           a->hang_rate == b->hang_rate;
}

static void set_bad(const char *name, const char *value, int want_rc, const char *want_in_msg) {
    swd_sim_params_t p, before;
    swd_sim_params_init(&p);
    before = p;
    char err[256] = "";
    int rc = swd_sim_params_set(&p, name, value, err, sizeof(err));
    cr_assert_eq(rc, want_rc, "set %s=%s returned %d (%s)", name, value ? value : "(null)", rc,
                 err);
    cr_assert(params_eq(&p, &before), "a refused value changed the params");
    cr_assert_not_null(strstr(err, name), "message '%s' does not name '%s'", err, name);
    if (want_in_msg != NULL) {
        cr_assert_not_null(strstr(err, want_in_msg), "message '%s' lacks '%s'", err, want_in_msg);
    }
}

Test(sim_model, params_set_rejects_bad_values) {
    set_bad("fail-rate", "1.5", SWD_ECONFIG, "1.5");
    set_bad("fail-rate", "-0.1", SWD_ECONFIG, "-0.1");
    set_bad("fatal-rate", "abc", SWD_ECONFIG, "abc");
    set_bad("hang-rate", "nan", SWD_ECONFIG, "nan");
    set_bad("degrade-fail-rate", "inf", SWD_ECONFIG, "inf");
    set_bad("latency-ms", "-5", SWD_ECONFIG, "-5");
    set_bad("latency-ms", " 5", SWD_ECONFIG, NULL);
    set_bad("latency-ms", "5ms", SWD_ECONFIG, "5ms");
    set_bad("latency-spread", "1e999", SWD_ECONFIG, NULL);
    set_bad("degrade-latency-factor", "0.5", SWD_ECONFIG, "0.5");
    set_bad("tokens", "0", SWD_ECONFIG, "0");
    set_bad("capacity", "-1", SWD_ECONFIG, "-1");
    set_bad("capacity", "4x", SWD_ECONFIG, "4x");
    set_bad("capacity", "2.5", SWD_ECONFIG, "2.5");
    set_bad("seed", "99999999999999999999999", SWD_ECONFIG, "99999999999999999999999");
    set_bad("retry-after-ms", "", SWD_ECONFIG, NULL);
    set_bad("crash-after-ms", NULL, SWD_ECONFIG, NULL);
    set_bad("bogus-knob", "1", SWD_ENOTFOUND, NULL);
    set_bad("--fail-rate", "0.1", SWD_ENOTFOUND, NULL);

    // No buffer for the message is fine too.
    swd_sim_params_t p;
    swd_sim_params_init(&p);
    cr_assert_eq(swd_sim_params_set(&p, "fail-rate", "2", NULL, 0), SWD_ECONFIG);
    // A short buffer is truncated, never overrun.
    char small[8];
    memset(small, 'x', sizeof(small));
    cr_assert_eq(swd_sim_params_set(&p, "nope", "1", small, 4), SWD_ENOTFOUND);
    cr_assert_eq(strlen(small), 3);
    cr_assert_eq(small[5], 'x');
}

Test(sim_model, help_lists_every_knob_once) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    swd_sim_params_help(f);
    fclose(f);
    static const char *const flags[] = {
        "--seed ",
        "--latency-ms ",
        "--latency-spread ",
        "--tokens ",
        "--tokens-spread ",
        "--fail-rate ",
        "--fatal-rate ",
        "--capacity ",
        "--overload-at ",
        "--retry-after-ms ",
        "--degrade-after-ms ",
        "--degrade-ramp-ms ",
        "--degrade-fail-rate ",
        "--degrade-latency-factor ",
        "--crash-after-tasks ",
        "--crash-after-ms ",
        "--hang-rate ",
    };
    size_t nflags = sizeof(flags) / sizeof(flags[0]);
    size_t lines = 0;
    for (const char *c = text; *c; c++) {
        lines += *c == '\n';
    }
    cr_assert_eq(lines, nflags, "%zu help lines for %zu knobs:\n%s", lines, nflags, text);
    for (size_t i = 0; i < nflags; i++) {
        const char *at = strstr(text, flags[i]);
        cr_assert_not_null(at, "help lacks %s", flags[i]);
        cr_assert_null(strstr(at + 1, flags[i]), "help lists %s twice", flags[i]);
    }
    cr_assert_not_null(strstr(text, "(default 800)"));
    cr_assert_not_null(strstr(text, "(default 0.5)"));
    free(text);
    ASSERT_NO_LEAKS();
}

Test(sim_model, output_text) {
    swd_sim_params_t p;
    swd_sim_params_init(&p);
    swd_sim_t s;
    swd_sim_init(&s, &p, 0);
    char buf[128];
    swd_sim_output(&s, "summarize-and-more", 9, 42, buf, sizeof(buf));
    cr_assert_str_eq(buf, "sim:summarize ok (42 tokens)");

    // A long type is cut, the suffix kept.
    char small[24];
    swd_sim_output(&s, "a-very-long-task-type", 21, 7, small, sizeof(small));
    cr_assert_str_eq(small, "sim:a-ver ok (7 tokens)");

    // Too small for the suffix: still terminated.
    char tiny[6];
    swd_sim_output(&s, "x", 1, 123456, tiny, sizeof(tiny));
    cr_assert_eq(strlen(tiny), 5);
    // Nothing is written with no room at all.
    char none = 'z';
    swd_sim_output(&s, "x", 1, 1, &none, 0);
    cr_assert_eq(none, 'z');
}
