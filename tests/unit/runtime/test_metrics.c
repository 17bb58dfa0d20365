// Tests of the metrics registry (runtime/metrics.h): the exact exposition
// text of counters, gauges and histograms with and without labels, escaping,
// number formatting, child caching and removal, collect callbacks, the
// process_* metrics, no allocation on the hot path, and `promtool check
// metrics` on a registry shaped like swarmd's.
#include <criterion/criterion.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/buf.h"
#include "runtime/metrics.h"
#include "tests/unit/leak_check.h"

// GCC ships no <sanitizer/allocator_interface.h>, so the one call used here
// is declared by hand.
#ifdef SWD_TEST_HAVE_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

// ---------------------------------------------------------------------------
// Helpers

/// Renders `m` into a fresh NUL-terminated string; the caller frees it.
static char *render(swd_metrics_t *m) {
    swd_buf_t b;
    swd_buf_init(&b);
    swd_metrics_render(m, &b);
    swd_buf_append(&b, "", 1);
    size_t len;
    return swd_buf_steal(&b, &len);
}

/// Renders `m` and compares the text with `expected`.
static void expect_render(swd_metrics_t *m, const char *expected) {
    char *text = render(m);
    cr_assert_str_eq(text, expected, "rendered:\n%s\nexpected:\n%s", text, expected);
    free(text);
}

/// Bytes currently allocated from the heap by this process.
static size_t heap_in_use(void) {
#ifdef SWD_TEST_HAVE_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

/// The full path of `prog` on PATH (caller frees), or NULL.
static char *find_in_path(const char *prog) {
    const char *path = getenv("PATH");
    char *copy = strdup(path != NULL && path[0] != '\0' ? path : "/usr/local/bin:/usr/bin:/bin");
    char *found = NULL;
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir != NULL; dir = strtok_r(NULL, ":", &save)) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", dir, prog);
        if (access(full, X_OK) == 0) {
            found = strdup(full);
            break;
        }
    }
    free(copy);
    return found;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    swd_buf_t b;
    swd_buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        swd_buf_append(&b, chunk, n);
    }
    fclose(f);
    swd_buf_append(&b, "", 1);
    size_t len;
    return swd_buf_steal(&b, &len);
}

// ---------------------------------------------------------------------------
// Counters and gauges

Test(metrics, counter_without_labels) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *f =
        swd_metrics_counter(m, "swarmd_tasks_submitted_total", "Tasks accepted.", 0, NULL);
    // The single series exists (at 0) before anything is counted.
    expect_render(m, "# HELP swarmd_tasks_submitted_total Tasks accepted.\n"
                     "# TYPE swarmd_tasks_submitted_total counter\n"
                     "swarmd_tasks_submitted_total 0\n");
    swd_metric_t *c = swd_metric_single(f);
    cr_assert_not_null(c);
    cr_assert_eq(swd_metric_child(f, NULL), c, "child() of a label-less family is single()");
    swd_counter_inc(c);
    swd_counter_add(c, 41);
    swd_counter_add(c, -5);  // counters never go down
    swd_counter_add(c, NAN); // nor become NaN
    cr_assert_eq(swd_metric_value(c), 42);
    expect_render(m, "# HELP swarmd_tasks_submitted_total Tasks accepted.\n"
                     "# TYPE swarmd_tasks_submitted_total counter\n"
                     "swarmd_tasks_submitted_total 42\n");
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

Test(metrics, counter_with_labels_in_creation_order) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *f =
        swd_metrics_counter(m, "swarmd_rpc_requests_total", "RPC requests by method and result.", 2,
                            (const char *[]){"method", "result"});
    // A labelled family with no children yet still shows HELP and TYPE.
    expect_render(m, "# HELP swarmd_rpc_requests_total RPC requests by method and result.\n"
                     "# TYPE swarmd_rpc_requests_total counter\n");
    swd_metric_t *ok = swd_metric_child(f, (const char *[]){"task.submit", "ok"});
    swd_metric_t *err = swd_metric_child(f, (const char *[]){"unknown", "unknown_method"});
    cr_assert_neq(ok, err);
    cr_assert_eq(swd_metric_child(f, (const char *[]){"task.submit", "ok"}), ok, "cached");
    cr_assert_eq(swd_metric_family_size(f), 2);
    swd_counter_add(ok, 3);
    swd_counter_inc(err);
    expect_render(m, "# HELP swarmd_rpc_requests_total RPC requests by method and result.\n"
                     "# TYPE swarmd_rpc_requests_total counter\n"
                     "swarmd_rpc_requests_total{method=\"task.submit\",result=\"ok\"} 3\n"
                     "swarmd_rpc_requests_total{method=\"unknown\",result=\"unknown_method\"} 1\n");
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

Test(metrics, gauges_set_add_and_special_values) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *depth = swd_metrics_gauge(m, "swarmd_queue_depth", "Tasks by queue state.",
                                                   1, (const char *[]){"state"});
    swd_metric_family_t *health = swd_metrics_gauge(
        m, "swarmd_agent_health", "Health score per agent.", 1, (const char *[]){"agent"});
    swd_metric_family_t *mode =
        swd_metrics_gauge(m, "swarmd_auto_tuning_mode", "Tuner mode.", 0, NULL);
    swd_metric_t *queued = swd_metric_child(depth, (const char *[]){"queued"});
    swd_metric_t *running = swd_metric_child(depth, (const char *[]){"running"});
    swd_gauge_set(queued, 10);
    swd_gauge_add(queued, -3);
    swd_gauge_add(running, 2.5);
    swd_gauge_set(swd_metric_child(health, (const char *[]){"a1"}), 0.6);
    swd_gauge_set(swd_metric_child(health, (const char *[]){"a2"}), INFINITY);
    swd_gauge_set(swd_metric_child(health, (const char *[]){"a3"}), -INFINITY);
    swd_gauge_set(swd_metric_child(health, (const char *[]){"a4"}), NAN);
    swd_gauge_set(swd_metric_single(mode), -2);
    cr_assert_eq(swd_metric_value(queued), 7);
    expect_render(m, "# HELP swarmd_queue_depth Tasks by queue state.\n"
                     "# TYPE swarmd_queue_depth gauge\n"
                     "swarmd_queue_depth{state=\"queued\"} 7\n"
                     "swarmd_queue_depth{state=\"running\"} 2.5\n"
                     "# HELP swarmd_agent_health Health score per agent.\n"
                     "# TYPE swarmd_agent_health gauge\n"
                     "swarmd_agent_health{agent=\"a1\"} 0.6\n"
                     "swarmd_agent_health{agent=\"a2\"} +Inf\n"
                     "swarmd_agent_health{agent=\"a3\"} -Inf\n"
                     "swarmd_agent_health{agent=\"a4\"} NaN\n"
                     "# HELP swarmd_auto_tuning_mode Tuner mode.\n"
                     "# TYPE swarmd_auto_tuning_mode gauge\n"
                     "swarmd_auto_tuning_mode -2\n");
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

Test(metrics, number_formatting) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *f = swd_metrics_gauge(m, "g", "Numbers.", 1, (const char *[]){"n"});
    const struct {
        double v;
        const char *text;
    } cases[] = {
        {0.0, "0"},
        {-0.0, "0"},
        {1e15, "1000000000000000"},
        {123456789012.0, "123456789012"},
        {0.1, "0.1"},
        {1.0 / 3.0, "0.3333333333333333"},
        {1e-05, "1e-05"},
        {-2.75, "-2.75"},
        {1e300, "1e+300"},
        {0.1 + 0.2, "0.30000000000000004"},
    };
    const size_t n = sizeof cases / sizeof cases[0];
    swd_buf_t want;
    swd_buf_init(&want);
    const char *head = "# HELP g Numbers.\n# TYPE g gauge\n";
    swd_buf_append(&want, head, strlen(head));
    for (size_t i = 0; i < n; i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%zu", i);
        swd_gauge_set(swd_metric_child(f, (const char *[]){idx}), cases[i].v);
        char line[128];
        int k = snprintf(line, sizeof line, "g{n=\"%zu\"} %s\n", i, cases[i].text);
        swd_buf_append(&want, line, (size_t)k);
    }
    swd_buf_append(&want, "", 1);
    char *text = render(m);
    cr_assert_str_eq(text, want.data);
    // Every value parses back to the same double.
    for (size_t i = 0; i < n; i++) {
        char needle[32];
        snprintf(needle, sizeof needle, "g{n=\"%zu\"} ", i);
        const char *p = strstr(text, needle);
        cr_assert_not_null(p);
        double back = strtod(p + strlen(needle), NULL);
        cr_assert(back == cases[i].v, "case %zu: %.17g != %.17g", i, back, cases[i].v);
    }
    free(text);
    swd_buf_close(&want);
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Histograms

Test(metrics, histogram_without_labels) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *f =
        swd_metrics_histogram(m, "swarmd_task_duration_seconds", "Task run time.", 0, NULL, 3,
                              (const double[]){0.1, 1, 2.5});
    swd_metric_t *h = swd_metric_single(f);
    expect_render(m, "# HELP swarmd_task_duration_seconds Task run time.\n"
                     "# TYPE swarmd_task_duration_seconds histogram\n"
                     "swarmd_task_duration_seconds_bucket{le=\"0.1\"} 0\n"
                     "swarmd_task_duration_seconds_bucket{le=\"1\"} 0\n"
                     "swarmd_task_duration_seconds_bucket{le=\"2.5\"} 0\n"
                     "swarmd_task_duration_seconds_bucket{le=\"+Inf\"} 0\n"
                     "swarmd_task_duration_seconds_sum 0\n"
                     "swarmd_task_duration_seconds_count 0\n");
    swd_histogram_observe(h, 0.05);
    swd_histogram_observe(h, 0.1); // on the bound: counts in le="0.1"
    swd_histogram_observe(h, 0.5);
    swd_histogram_observe(h, 2.5);
    swd_histogram_observe(h, 100);
    swd_histogram_observe(h, NAN); // ignored
    cr_assert_eq(swd_histogram_count(h), 5);
    expect_render(m, "# HELP swarmd_task_duration_seconds Task run time.\n"
                     "# TYPE swarmd_task_duration_seconds histogram\n"
                     "swarmd_task_duration_seconds_bucket{le=\"0.1\"} 2\n"
                     "swarmd_task_duration_seconds_bucket{le=\"1\"} 3\n"
                     "swarmd_task_duration_seconds_bucket{le=\"2.5\"} 4\n"
                     "swarmd_task_duration_seconds_bucket{le=\"+Inf\"} 5\n"
                     "swarmd_task_duration_seconds_sum 103.15\n"
                     "swarmd_task_duration_seconds_count 5\n");
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

Test(metrics, histogram_with_labels_and_default_buckets) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *f =
        swd_metrics_histogram(m, "swarmd_task_queue_wait_seconds", "Time from submit to dispatch.",
                              1, (const char *[]){"pool"}, 0, NULL);
    expect_render(m, "# HELP swarmd_task_queue_wait_seconds Time from submit to dispatch.\n"
                     "# TYPE swarmd_task_queue_wait_seconds histogram\n");
    swd_metric_t *h = swd_metric_child(f, (const char *[]){"default"});
    swd_histogram_observe(h, 0.003);
    swd_histogram_observe(h, 7);
    swd_histogram_observe(h, 301);
    const char *p = "swarmd_task_queue_wait_seconds_bucket{pool=\"default\",le=";
    char want[4096];
    snprintf(want, sizeof want,
             "# HELP swarmd_task_queue_wait_seconds Time from submit to dispatch.\n"
             "# TYPE swarmd_task_queue_wait_seconds histogram\n"
             "%s\"0.005\"} 1\n%s\"0.01\"} 1\n%s\"0.025\"} 1\n%s\"0.05\"} 1\n%s\"0.1\"} 1\n"
             "%s\"0.25\"} 1\n%s\"0.5\"} 1\n%s\"1\"} 1\n%s\"2.5\"} 1\n%s\"5\"} 1\n"
             "%s\"10\"} 2\n%s\"30\"} 2\n%s\"60\"} 2\n%s\"120\"} 2\n%s\"300\"} 2\n"
             "%s\"+Inf\"} 3\n"
             "swarmd_task_queue_wait_seconds_sum{pool=\"default\"} 308.003\n"
             "swarmd_task_queue_wait_seconds_count{pool=\"default\"} 3\n",
             p, p, p, p, p, p, p, p, p, p, p, p, p, p, p, p);
    expect_render(m, want);
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Escaping, order, registration

Test(metrics, escaping_of_label_values_and_help) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *f =
        swd_metrics_gauge(m, "swarmd_agent_inflight", "Tasks \"in flight\" per agent\\pool,\nnow.",
                          1, (const char *[]){"agent"});
    swd_gauge_set(swd_metric_child(f, (const char *[]){"a\"b\\c\nd"}), 1);
    swd_gauge_set(swd_metric_child(f, (const char *[]){"caf\xc3\xa9 {x=1}"}), 2);
    swd_gauge_set(swd_metric_child(f, (const char *[]){"bad\xff\xc3"}), 3);
    swd_gauge_set(swd_metric_child(f, (const char *[]){NULL}), 4);
    // Help keeps its quotes (only backslash and newline are escaped there).
    expect_render(m, "# HELP swarmd_agent_inflight Tasks \"in flight\" per agent\\\\pool,\\nnow.\n"
                     "# TYPE swarmd_agent_inflight gauge\n"
                     "swarmd_agent_inflight{agent=\"a\\\"b\\\\c\\nd\"} 1\n"
                     "swarmd_agent_inflight{agent=\"caf\xc3\xa9 {x=1}\"} 2\n"
                     "swarmd_agent_inflight{agent=\"bad\xef\xbf\xbd\xef\xbf\xbd\"} 3\n"
                     "swarmd_agent_inflight{agent=\"\"} 4\n");
    // The invalid value finds its sanitized child again.
    swd_metric_t *bad = swd_metric_child(f, (const char *[]){"bad\xff\xc3"});
    cr_assert_eq(swd_metric_value(bad), 3);
    cr_assert_eq(swd_metric_child(f, (const char *[]){""}),
                 swd_metric_child(f, (const char *[]){NULL}));
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

Test(metrics, families_in_registration_order_and_shared) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *b = swd_metrics_gauge(m, "b_gauge", "B.", 0, NULL);
    swd_metric_family_t *a = swd_metrics_counter(m, "a_total", "A.", 1, (const char *[]){"x"});
    swd_metric_family_t *c =
        swd_metrics_histogram(m, "c_seconds", "C.", 0, NULL, 1, (const double[]){1});
    // The same registration again returns the same family.
    cr_assert_eq(swd_metrics_counter(m, "a_total", "A.", 1, (const char *[]){"x"}), a);
    cr_assert_eq(swd_metrics_find(m, "b_gauge"), b);
    cr_assert_eq(swd_metrics_find(m, "c_seconds"), c);
    cr_assert_null(swd_metrics_find(m, "nope"));
    cr_assert_str_eq(swd_metric_family_name(c), "c_seconds");
    cr_assert_eq(swd_metric_family_type(c), SWD_METRIC_HISTOGRAM);
    expect_render(m, "# HELP b_gauge B.\n# TYPE b_gauge gauge\nb_gauge 0\n"
                     "# HELP a_total A.\n# TYPE a_total counter\n"
                     "# HELP c_seconds C.\n# TYPE c_seconds histogram\n"
                     "c_seconds_bucket{le=\"1\"} 0\nc_seconds_bucket{le=\"+Inf\"} 0\n"
                     "c_seconds_sum 0\nc_seconds_count 0\n");
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

Test(metrics, conflicting_registration_aborts, .signal = SIGABRT) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metrics_counter(m, "x_total", "X.", 0, NULL);
    swd_metrics_gauge(m, "x_total", "X.", 0, NULL);
}

Test(metrics, bad_metric_name_aborts, .signal = SIGABRT) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metrics_counter(m, "bad-name_total", "X.", 0, NULL);
}

Test(metrics, reserved_label_name_aborts, .signal = SIGABRT) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metrics_histogram(m, "h_seconds", "H.", 1, (const char *[]){"le"}, 0, NULL);
}

Test(metrics, unsorted_buckets_abort, .signal = SIGABRT) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metrics_histogram(m, "h_seconds", "H.", 0, NULL, 2, (const double[]){2, 1});
}

Test(metrics, null_is_a_no_op) {
    swd_metric_family_t *f = swd_metrics_counter(NULL, "x_total", "X.", 0, NULL);
    cr_assert_null(f);
    cr_assert_null(swd_metric_single(f));
    cr_assert_null(swd_metric_child(f, (const char *[]){"v"}));
    swd_counter_inc(NULL);
    swd_gauge_set(NULL, 1);
    swd_gauge_add(NULL, 1);
    swd_histogram_observe(NULL, 1);
    swd_metric_child_remove(NULL, NULL);
    swd_metric_family_clear(NULL);
    swd_metrics_on_collect(NULL, NULL, NULL);
    swd_metrics_off_collect(NULL, NULL, NULL);
    swd_metrics_add_process(NULL);
    cr_assert_eq(swd_metric_value(NULL), 0);
    cr_assert_eq(swd_histogram_count(NULL), 0);
    cr_assert_eq(swd_metric_family_size(NULL), 0);
    swd_buf_t b;
    swd_buf_init(&b);
    swd_metrics_render(NULL, &b);
    cr_assert_eq(b.len, 0);
    swd_metrics_free(NULL);
}

// ---------------------------------------------------------------------------
// Children come and go

Test(metrics, child_removal) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *f =
        swd_metrics_gauge(m, "swarmd_agent_health", "Health.", 1, (const char *[]){"agent"});
    // Enough children to grow the hash table a few times.
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof id, "a%d", i);
        swd_gauge_set(swd_metric_child(f, (const char *[]){id}), i);
    }
    cr_assert_eq(swd_metric_family_size(f), 100);
    for (int i = 0; i < 100; i++) {
        if (i != 7 && i != 42) {
            char id[16];
            snprintf(id, sizeof id, "a%d", i);
            swd_metric_child_remove(f, (const char *[]){id});
        }
    }
    swd_metric_child_remove(f, (const char *[]){"never-there"});
    cr_assert_eq(swd_metric_family_size(f), 2);
    expect_render(m, "# HELP swarmd_agent_health Health.\n# TYPE swarmd_agent_health gauge\n"
                     "swarmd_agent_health{agent=\"a7\"} 7\n"
                     "swarmd_agent_health{agent=\"a42\"} 42\n");
    // A removed child comes back new, at 0, after the others.
    swd_metric_t *c = swd_metric_child(f, (const char *[]){"a3"});
    cr_assert_eq(swd_metric_value(c), 0);
    swd_metric_child_remove(f, (const char *[]){"a7"});
    expect_render(m, "# HELP swarmd_agent_health Health.\n# TYPE swarmd_agent_health gauge\n"
                     "swarmd_agent_health{agent=\"a42\"} 42\n"
                     "swarmd_agent_health{agent=\"a3\"} 0\n");
    swd_metric_family_clear(f);
    cr_assert_eq(swd_metric_family_size(f), 0);
    expect_render(m, "# HELP swarmd_agent_health Health.\n# TYPE swarmd_agent_health gauge\n");
    swd_gauge_set(swd_metric_child(f, (const char *[]){"a9"}), 9);
    expect_render(m, "# HELP swarmd_agent_health Health.\n# TYPE swarmd_agent_health gauge\n"
                     "swarmd_agent_health{agent=\"a9\"} 9\n");
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

Test(metrics, three_labels) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *f =
        swd_metrics_counter(m, "t_total", "T.", 3, (const char *[]){"a", "b", "c"});
    // Values that concatenate alike stay apart.
    swd_counter_inc(swd_metric_child(f, (const char *[]){"ab", "", "c"}));
    swd_counter_add(swd_metric_child(f, (const char *[]){"a", "b", "c"}), 2);
    swd_counter_add(swd_metric_child(f, (const char *[]){"a", "bc", ""}), 3);
    cr_assert_eq(swd_metric_family_size(f), 3);
    expect_render(m, "# HELP t_total T.\n# TYPE t_total counter\n"
                     "t_total{a=\"ab\",b=\"\",c=\"c\"} 1\n"
                     "t_total{a=\"a\",b=\"b\",c=\"c\"} 2\n"
                     "t_total{a=\"a\",b=\"bc\",c=\"\"} 3\n");
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Collect callbacks

typedef struct live_state {
    int queued;
    int calls;
    swd_metric_t *depth;
    swd_metrics_t *m;
} live_state_t;

static void collect_depth(swd_metrics_t *m, void *data) {
    live_state_t *s = data;
    cr_assert_eq(m, s->m);
    s->calls++;
    swd_gauge_set(s->depth, s->queued);
}

static int order_log[8];
static int order_len;

static void collect_first(swd_metrics_t *m, void *data) {
    order_log[order_len++] = 1;
}

static void collect_once(swd_metrics_t *m, void *data) {
    order_log[order_len++] = 2;
    swd_metrics_off_collect(m, collect_once, data); // removes itself mid-pass
}

static void collect_last(swd_metrics_t *m, void *data) {
    order_log[order_len++] = 3;
}

Test(metrics, collect_callbacks_run_before_render) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_family_t *f =
        swd_metrics_gauge(m, "swarmd_queue_depth", "Depth.", 1, (const char *[]){"state"});
    live_state_t s = {
        .queued = 5, .depth = swd_metric_child(f, (const char *[]){"queued"}), .m = m};
    swd_metrics_on_collect(m, collect_depth, &s);
    expect_render(m, "# HELP swarmd_queue_depth Depth.\n# TYPE swarmd_queue_depth gauge\n"
                     "swarmd_queue_depth{state=\"queued\"} 5\n");
    s.queued = 8;
    expect_render(m, "# HELP swarmd_queue_depth Depth.\n# TYPE swarmd_queue_depth gauge\n"
                     "swarmd_queue_depth{state=\"queued\"} 8\n");
    cr_assert_eq(s.calls, 2);
    swd_metrics_off_collect(m, collect_depth, &s);
    s.queued = 100;
    expect_render(m, "# HELP swarmd_queue_depth Depth.\n# TYPE swarmd_queue_depth gauge\n"
                     "swarmd_queue_depth{state=\"queued\"} 8\n");
    cr_assert_eq(s.calls, 2, "a removed callback no longer runs");

    swd_metrics_on_collect(m, collect_first, NULL);
    swd_metrics_on_collect(m, collect_once, NULL);
    swd_metrics_on_collect(m, collect_last, NULL);
    char *text = render(m);
    free(text);
    text = render(m);
    free(text);
    cr_assert_eq(order_len, 5);
    const int want[] = {1, 2, 3, 1, 3};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(order_log[i], want[i], "call %d", i);
    }
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Process metrics

/// The value of the label-less sample `name` in `text`; fails when absent.
static double sample_value(const char *text, const char *name) {
    char needle[128];
    snprintf(needle, sizeof needle, "\n%s ", name);
    const char *p = strstr(text, needle);
    cr_assert_not_null(p, "no sample %s in:\n%s", name, text);
    return strtod(p + strlen(needle), NULL);
}

Test(metrics, process_metrics_present_and_sane) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metrics_add_process(m);
    swd_metrics_add_process(m); // harmless twice
    char *text = render(m);
    const char *types[] = {
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE process_open_fds gauge\n",
        "# TYPE process_max_fds gauge\n",
        "# TYPE process_virtual_memory_bytes gauge\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_start_time_seconds gauge\n",
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        cr_assert_not_null(strstr(text, types[i]), "missing %s", types[i]);
    }
    double rss = sample_value(text, "process_resident_memory_bytes");
    double vsz = sample_value(text, "process_virtual_memory_bytes");
    double fds = sample_value(text, "process_open_fds");
    double max_fds = sample_value(text, "process_max_fds");
    double cpu = sample_value(text, "process_cpu_seconds_total");
    double start = sample_value(text, "process_start_time_seconds");
    cr_assert_gt(rss, 0);
    cr_assert_geq(vsz, rss);
    cr_assert_geq(fds, 3, "stdin, stdout, stderr at least");
    cr_assert_geq(max_fds, fds);
    cr_assert_geq(cpu, 0);
    // Started within the last day, and not in the future.
    double now = (double)time(NULL);
    cr_assert(start > now - 86400 && start <= now + 2, "start %f now %f", start, now);
    free(text);

    // The collector follows live state: more open descriptors, more fds.
    int extra[4];
    for (int i = 0; i < 4; i++) {
        extra[i] = dup(0);
        cr_assert_geq(extra[i], 0);
    }
    text = render(m);
    cr_assert_geq(sample_value(text, "process_open_fds"), fds + 4);
    free(text);
    for (int i = 0; i < 4; i++) {
        close(extra[i]);
    }
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// The hot path allocates nothing

Test(metrics, hot_path_does_not_allocate) {
    swd_metrics_t *m = swd_metrics_new();
    swd_metric_t *c = swd_metric_child(
        swd_metrics_counter(m, "c_total", "C.", 1, (const char *[]){"k"}), (const char *[]){"v"});
    swd_metric_t *g = swd_metric_single(swd_metrics_gauge(m, "g", "G.", 0, NULL));
    swd_metric_t *h = swd_metric_child(
        swd_metrics_histogram(m, "h_seconds", "H.", 1, (const char *[]){"k"}, 0, NULL),
        (const char *[]){"v"});
    size_t before = heap_in_use();
    for (int i = 0; i < 1000000; i++) {
        swd_counter_inc(c);
        swd_gauge_set(g, i);
        swd_gauge_add(g, 1);
        swd_histogram_observe(h, (double)(i % 400));
    }
    size_t after = heap_in_use();
    cr_assert_eq(after, before, "heap grew by %zu bytes", after - before);
    cr_assert_eq(swd_metric_value(c), 1e6);
    cr_assert_eq(swd_histogram_count(h), 1000000);
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// promtool

/// A registry shaped like swarmd's (DESIGN.md §4), with samples of every
/// kind, awkward label values and the process metrics.
static swd_metrics_t *sample_registry(void) {
    swd_metrics_t *m = swd_metrics_new();
    swd_counter_add(
        swd_metric_single(swd_metrics_counter(m, "swarmd_tasks_submitted_total",
                                              "Tasks accepted by task.submit.", 0, NULL)),
        12);
    swd_metric_family_t *fin =
        swd_metrics_counter(m, "swarmd_tasks_finished_total",
                            "Tasks that reached a terminal state.", 1, (const char *[]){"state"});
    swd_counter_add(swd_metric_child(fin, (const char *[]){"succeeded"}), 10);
    swd_counter_add(swd_metric_child(fin, (const char *[]){"failed"}), 2);
    swd_metrics_counter(m, "swarmd_stale_results_total", "Late answers ignored.", 0, NULL);
    swd_metric_family_t *depth = swd_metrics_gauge(
        m, "swarmd_queue_depth", "Tasks per queue state.", 1, (const char *[]){"state"});
    swd_gauge_set(swd_metric_child(depth, (const char *[]){"queued"}), 3);
    swd_metric_family_t *health = swd_metrics_gauge(
        m, "swarmd_agent_health", "Health score (0..1) per agent,\nby \"agent_id\" \\ id.", 1,
        (const char *[]){"agent"});
    swd_gauge_set(swd_metric_child(health, (const char *[]){"ag\"ent\\1\nx"}), 0.6);
    swd_gauge_set(swd_metric_child(health, (const char *[]){"caf\xc3\xa9\xff"}), NAN);
    swd_metrics_gauge(m, "swarmd_agent_inflight", "Tasks in flight per agent.", 1,
                      (const char *[]){"agent"});
    swd_metric_family_t *dur = swd_metrics_histogram(m, "swarmd_task_duration_seconds",
                                                     "Task run time in seconds.", 0, NULL, 0, NULL);
    swd_histogram_observe(swd_metric_single(dur), 0.2);
    swd_histogram_observe(swd_metric_single(dur), 1e-7);
    swd_metric_family_t *wait =
        swd_metrics_histogram(m, "swarmd_task_queue_wait_seconds", "Queue wait in seconds.", 1,
                              (const char *[]){"priority"}, 0, NULL);
    swd_histogram_observe(swd_metric_child(wait, (const char *[]){"high"}), 1000);
    swd_metric_family_t *rpc = swd_metrics_counter(m, "swarmd_rpc_requests_total", "RPC requests.",
                                                   2, (const char *[]){"method", "result"});
    swd_counter_inc(swd_metric_child(rpc, (const char *[]){"unknown", "unknown_method"}));
    swd_gauge_set(swd_metric_single(swd_metrics_gauge(m, "swarmd_token_budget_remaining_tokens",
                                                      "Tokens left.", 0, NULL)),
                  INFINITY);
    swd_metrics_add_process(m);
    return m;
}

Test(metrics, promtool_check_metrics) {
    char *promtool = find_in_path("promtool");
    cr_assert_not_null(promtool,
                       "promtool is not installed: `apt-get install prometheus` (scripts/setup "
                       "installs it); /metrics must pass `promtool check metrics`");
    swd_metrics_t *m = sample_registry();
    char *text = render(m);
    char in[] = "/tmp/swd-metrics-in-XXXXXX";
    char out[] = "/tmp/swd-metrics-out-XXXXXX";
    int fd = mkstemp(in);
    cr_assert_geq(fd, 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    fd = mkstemp(out);
    cr_assert_geq(fd, 0);
    close(fd);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' check metrics < '%s' > '%s' 2>&1", promtool, in, out);
    int status = system(cmd);
    char *report = read_file(out);
    unlink(in);
    unlink(out);
    cr_assert_eq(status, 0, "promtool check metrics failed (status %d):\n%s\non:\n%s", status,
                 report, text);
    free(report);
    free(text);
    free(promtool);
    swd_metrics_free(m);
    ASSERT_NO_LEAKS();
}
