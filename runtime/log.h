// Structured log. A record is one JSON object
//   {ts, level, component, msg, ...fields}
// and goes, in this order, to stderr (human form on a terminal, JSON lines
// otherwise), to a ring of the last N records (for /logs), and to sinks (the
// event bus's `log` topic, live followers).
//
// There is one logger per process; the core is single-threaded, so it takes
// no locks. Before swd_log_setup() records go to stderr at level info.
#ifndef SWD_RUNTIME_LOG_H
#define SWD_RUNTIME_LOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "runtime/clock.h"

typedef enum swd_log_level {
    SWD_LOG_DEBUG,
    SWD_LOG_INFO,
    SWD_LOG_WARN,
    SWD_LOG_ERROR,
} swd_log_level_t;

/// The level's name ("info"); NULL-safe for bad values ("?").
const char *swd_log_level_name(swd_log_level_t l);
/// Parses a level name: 0, or SWD_ECONFIG.
int swd_log_level_parse(const char *name, swd_log_level_t *out);

/// Sets the threshold and the ring size (records), and where time comes
/// from (`clock` may be NULL: the system clock). `human` picks the stderr
/// form: 1 human, 0 JSON lines, -1 human exactly when stderr is a terminal.
void swd_log_setup(swd_log_level_t level, size_t ring, const swd_clock_t *clock, int human);
/// Frees the ring and drops every sink.
void swd_log_shutdown(void);
void swd_log_set_level(swd_log_level_t level);
bool swd_log_enabled(swd_log_level_t level);
/// Silences stderr output (tests, `swarmd run`'s progress line owns it).
void swd_log_set_stderr(bool on);

/// Logs `msg` with fields built by jansson's json_pack from `fields_fmt`
/// (an object format such as "{s:s, s:I}"; NULL for no fields).
void swd_log(swd_log_level_t level, const char *component, const char *msg, const char *fields_fmt,
             ...);

#define swd_log_debug(...) swd_log(SWD_LOG_DEBUG, __VA_ARGS__)
#define swd_log_info(...) swd_log(SWD_LOG_INFO, __VA_ARGS__)
#define swd_log_warn(...) swd_log(SWD_LOG_WARN, __VA_ARGS__)
#define swd_log_error(...) swd_log(SWD_LOG_ERROR, __VA_ARGS__)

/// A sink sees each record (borrowed) and its JSON line (borrowed, no newline).
typedef void (*swd_log_sink_cb)(const json_t *record, const char *line, void *data);
typedef struct swd_log_sink swd_log_sink_t;
/// Adds a sink; remove it with swd_log_remove_sink() (safe inside a sink).
swd_log_sink_t *swd_log_add_sink(swd_log_sink_cb cb, void *data);
void swd_log_remove_sink(swd_log_sink_t *s);

/// Calls `cb` on the last `n` records of the ring, oldest first.
void swd_log_ring_last(size_t n, void (*cb)(const char *line, void *data), void *data);

#endif
