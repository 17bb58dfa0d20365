// The metrics registry: counters, gauges and histograms, with up to three
// labels, rendered in the Prometheus text exposition format 0.0.4 for
// `/metrics` (DESIGN.md §3, names in §4).
//
//   module ──register once──▶ family (name, help, type, label names)
//   module ──first use──────▶ child (one label-value tuple), pointer cached
//   hot path ───────────────▶ swd_counter_add(child, 1)   (no alloc, no format)
//   scrape ─▶ collect callbacks (read live state into gauges) ─▶ render text
//
// Every family shows `# HELP` and `# TYPE` from the moment it is registered,
// before it has any sample; a family without labels has its one series (at
// 0) from the start. Families render in registration order, children in the
// order they were created.
//
// Ownership: the registry owns its families, families own their children.
// Family pointers stay valid until swd_metrics_free(); a child pointer stays
// valid until that child is removed (swd_metric_child_remove(),
// swd_metric_family_clear()) or the registry is freed. Whoever removes a
// child must drop the pointers cached for it.
//
// The registry is not thread-safe: like all coordination state it belongs to
// the loop thread.
//
// NULL is a no-op everywhere on the way to a sample: registering into a NULL
// registry returns a NULL family, a NULL family gives NULL children, and
// updating a NULL child does nothing. So a module can run (in tests, say)
// without a registry and without checking for one.
//
// Registration mistakes (a bad metric or label name, more than
// SWD_METRICS_MAX_LABELS labels, the same name registered again with another
// type, help or labels, bucket bounds that do not increase) are programming
// errors: they print the reason and abort.
#ifndef SWD_RUNTIME_METRICS_H
#define SWD_RUNTIME_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "proto/buf.h"

/// The Content-Type of swd_metrics_render()'s output.
#define SWD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/// Most label names a family may have.
#define SWD_METRICS_MAX_LABELS 3

typedef enum swd_metric_type {
    SWD_METRIC_COUNTER,
    SWD_METRIC_GAUGE,
    SWD_METRIC_HISTOGRAM,
} swd_metric_type_t;

typedef struct swd_metrics swd_metrics_t;
typedef struct swd_metric_family swd_metric_family_t;
/// One series (a family's child for one label-value tuple).
typedef struct swd_metric swd_metric_t;

/// Runs before each render to bring gauges up to date from live state (with
/// swd_gauge_set() and friends; it may also create and remove children).
/// `m` is the registry being rendered.
typedef void (*swd_metrics_collect_cb)(swd_metrics_t *m, void *data);

/// The default histogram buckets, in seconds: 0.005 .. 300 (15 bounds).
extern const double swd_metrics_seconds_buckets[];
extern const size_t swd_metrics_seconds_buckets_len;

// ---------------------------------------------------------------------------
// Registry

/// A new, empty registry; the caller owns it and frees it with
/// swd_metrics_free().
swd_metrics_t *swd_metrics_new(void);
/// Frees the registry, its families and children. NULL is a no-op.
void swd_metrics_free(swd_metrics_t *m);

/// Registers a counter family. `name` and `help` are copied; `labels` holds
/// `nlabels` (0..SWD_METRICS_MAX_LABELS) label names, copied, and may be NULL
/// when `nlabels` is 0. Registering a name that exists with the same type,
/// help and labels returns the existing family (so two modules can share
/// one); anything else under that name aborts. The registry owns the family.
/// Returns NULL only when `m` is NULL.
swd_metric_family_t *swd_metrics_counter(swd_metrics_t *m, const char *name, const char *help,
                                         size_t nlabels, const char *const *labels);
/// Registers a gauge family; as swd_metrics_counter().
swd_metric_family_t *swd_metrics_gauge(swd_metrics_t *m, const char *name, const char *help,
                                       size_t nlabels, const char *const *labels);
/// Registers a histogram family; as swd_metrics_counter(), plus `nbounds`
/// finite, strictly increasing upper bounds (copied; `+Inf` is implied and
/// must not be listed). `bounds` NULL picks swd_metrics_seconds_buckets. A
/// histogram may not have a label named `le`.
swd_metric_family_t *swd_metrics_histogram(swd_metrics_t *m, const char *name, const char *help,
                                           size_t nlabels, const char *const *labels,
                                           size_t nbounds, const double *bounds);

/// The family registered as `name`, or NULL (also when `m` is NULL).
/// Borrowed from the registry.
swd_metric_family_t *swd_metrics_find(const swd_metrics_t *m, const char *name);

/// Adds `cb` to the callbacks run, in the order added, at the start of each
/// swd_metrics_render(). `data` is borrowed: remove the callback with
/// swd_metrics_off_collect() before `data` goes away. NULL `m` is a no-op.
void swd_metrics_on_collect(swd_metrics_t *m, swd_metrics_collect_cb cb, void *data);
/// Removes the first callback added with this `cb` and `data`; safe from
/// inside a collect callback. A pair that is not registered is a no-op.
void swd_metrics_off_collect(swd_metrics_t *m, swd_metrics_collect_cb cb, void *data);

/// Runs the collect callbacks, then appends the whole registry to `out` in
/// the text exposition format 0.0.4. `out` is the caller's and must be
/// initialised; nothing is appended when `m` is NULL.
void swd_metrics_render(swd_metrics_t *m, swd_buf_t *out);

/// Registers the standard process metrics (process_resident_memory_bytes,
/// process_virtual_memory_bytes, process_cpu_seconds_total, process_open_fds,
/// process_max_fds, process_start_time_seconds) and a collect callback that
/// reads them from /proc/self at each render. Linux only; a value that
/// cannot be read keeps its last one. Calling it twice is harmless.
void swd_metrics_add_process(swd_metrics_t *m);

// ---------------------------------------------------------------------------
// Families and children

/// The child for the label values `values` (as many as the family has label
/// names; a NULL value counts as ""), created at 0 on first use and cached:
/// keep the pointer for the hot path. Values are copied; bytes that are not
/// valid UTF-8 are replaced by U+FFFD. For a family without labels this is
/// swd_metric_single() and `values` may be NULL. Owned by the family; NULL
/// when `fam` is NULL.
swd_metric_t *swd_metric_child(swd_metric_family_t *fam, const char *const *values);
/// The one child of a family without labels (it always exists); NULL when
/// `fam` is NULL or has labels. Owned by the family.
swd_metric_t *swd_metric_single(swd_metric_family_t *fam);
/// Removes and frees the child for `values`, if there is one; its series
/// leaves the output. Pointers to it become invalid. A family without labels
/// keeps its single child (this is a no-op for it).
void swd_metric_child_remove(swd_metric_family_t *fam, const char *const *values);
/// Removes every child of a labelled family (a no-op without labels); all
/// pointers to them become invalid.
void swd_metric_family_clear(swd_metric_family_t *fam);

/// The family's name and type (borrowed; `fam` must not be NULL).
const char *swd_metric_family_name(const swd_metric_family_t *fam);
swd_metric_type_t swd_metric_family_type(const swd_metric_family_t *fam);
/// How many children the family has now (0 for NULL).
size_t swd_metric_family_size(const swd_metric_family_t *fam);

// ---------------------------------------------------------------------------
// Hot path: no allocation, no formatting. NULL `c` is a no-op.

/// Adds `v` to a counter. A negative or NaN `v` is ignored (counters only
/// go up).
void swd_counter_add(swd_metric_t *c, double v);
/// Adds 1 to a counter.
void swd_counter_inc(swd_metric_t *c);
/// Sets a gauge.
void swd_gauge_set(swd_metric_t *g, double v);
/// Adds `v` (may be negative) to a gauge.
void swd_gauge_add(swd_metric_t *g, double v);
/// Counts `v` in a histogram: the first bucket whose bound is >= `v` (else
/// `+Inf`), the sum and the count. NaN is ignored.
void swd_histogram_observe(swd_metric_t *h, double v);

/// A counter's or gauge's value, or a histogram's sum; 0 for NULL.
double swd_metric_value(const swd_metric_t *c);
/// A histogram's observation count; 0 for NULL or another type.
uint64_t swd_histogram_count(const swd_metric_t *h);

#endif
