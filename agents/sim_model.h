// The simulation model of an LLM-backed agent: latency, tokens, capacity and
// faults, drawn from a seeded generator. A pure library: no libuv, no I/O, no
// clock reads (the caller passes the time in), no allocation. Both
// `swarm-agent --sim` (a real process) and the in-process simulated transport
// (on a virtual clock) drive it the same way:
//
//     task.run arrives ──> swd_sim_plan(now, inflight, estimate) ──> outcome
//                                                                     │
//     OK / ERROR ........ answer after outcome.latency_ms ◄───────────┤
//     OVERLOADED ........ answer at once (retry_after_ms)  ◄──────────┤
//     HANG .............. never answer                     ◄──────────┤
//     CRASH ............. exit / drop the connection now   ◄──────────┘
//
// Determinism: the same seed, parameters and sequence of calls give the same
// outcomes. Every plan consumes the same number of random draws whatever its
// outcome, so two runs that differ in one knob see the same random numbers
// task by task (a fair A/B comparison).
#ifndef SWD_AGENTS_SIM_MODEL_H
#define SWD_AGENTS_SIM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/rng.h"

/// Latencies are capped here (one week), whatever the draw.
#define SWD_SIM_MAX_LATENCY_MS INT64_C(604800000)

/// The knobs of the model. Every field has a command-line name (the field
/// name with dashes: `latency_ms` is `--latency-ms`); the defaults, bounds
/// and meanings live in one table in sim_model.c, printed by
/// swd_sim_params_help(). Set fields with swd_sim_params_set() to get the
/// bounds checked; a struct filled by hand must respect them too.
typedef struct swd_sim_params {
    uint64_t seed;             ///< generator seed (default 1)
    double latency_ms;         ///< median latency, log-normal (default 800; 0 answers at once)
    double latency_spread;     ///< sigma of the latency's log (default 0.5; 0 = constant)
    uint64_t tokens;           ///< mean tokens per task when no estimate (default 600)
    double tokens_spread;      ///< sigma of the tokens' log (default 0.3)
    double fail_rate;          ///< P(retryable "sim_error") (default 0)
    double fatal_rate;         ///< P(non-retryable "sim_fatal") (default 0)
    uint64_t capacity;         ///< in-flight tasks served at full speed (default 4; 0 = no limit)
    uint64_t overload_at;      ///< in-flight above this → "overloaded" (default 0 = off)
    uint64_t retry_after_ms;   ///< retry_after_ms of "overloaded" (default 1000)
    uint64_t degrade_after_ms; ///< degradation starts this long after start (0 = off)
    uint64_t degrade_ramp_ms;  ///< ... and reaches its full effect over this (default 60000)
    double degrade_fail_rate;  ///< fail rate at full degradation (default 0.8)
    double degrade_latency_factor; ///< latency multiplier at full degradation (default 4)
    uint64_t crash_after_tasks;    ///< plans after this many return CRASH (0 = off)
    uint64_t crash_after_ms;       ///< plans this long after start return CRASH (0 = off)
    double hang_rate;              ///< P(the task is never answered) (default 0)
} swd_sim_params_t;

typedef enum swd_sim_kind {
    SWD_SIM_OK,         ///< answer `{output, tokens_used}` after latency_ms
    SWD_SIM_ERROR,      ///< answer the error after latency_ms
    SWD_SIM_OVERLOADED, ///< answer the "overloaded" error at once
    SWD_SIM_HANG,       ///< never answer this task
    SWD_SIM_CRASH,      ///< exit the process or drop the connection now
} swd_sim_kind_t;

/// What to do with one task. Strings are static; never free them.
typedef struct swd_sim_outcome {
    swd_sim_kind_t kind;
    int64_t latency_ms;      ///< delay before answering; 0 for OVERLOADED, HANG, CRASH
    uint64_t tokens_used;    ///< ≥ 1 for OK; 0 otherwise
    const char *error;       ///< "sim_error", "sim_fatal", "overloaded"; NULL otherwise
    const char *message;     ///< human text for the error's message; NULL when error is NULL
    bool retryable;          ///< meaningful when error is set
    uint64_t retry_after_ms; ///< set for OVERLOADED; 0 otherwise
} swd_sim_outcome_t;

/// One simulated agent's state. Owns no memory: there is nothing to close.
/// The fields are the model's own; read them, do not write them.
typedef struct swd_sim {
    swd_sim_params_t p; ///< a copy of the parameters given to swd_sim_init()
    swd_rng_t rng;
    int64_t start_ms; ///< the model's time origin (degradation, crash_after_ms)
    uint64_t planned; ///< swd_sim_plan() calls so far
    bool crashed;     ///< a CRASH was planned; every later plan crashes too
} swd_sim_t;

/// Fills `p` with the defaults.
void swd_sim_params_init(swd_sim_params_t *p);

/// Sets the knob `name` (its command-line name without dashes, e.g.
/// "fail-rate") from the text `value`. Returns 0; SWD_ENOTFOUND for an
/// unknown name; SWD_ECONFIG for a value that does not parse or is out of
/// bounds (`p` is then unchanged). On error a message naming the knob and the
/// value is written to `err` (`errlen` bytes, NUL-terminated, truncated if
/// need be); `err` may be NULL when `errlen` is 0.
int swd_sim_params_set(swd_sim_params_t *p, const char *name, const char *value, char *err,
                       size_t errlen);

/// Writes one line per knob to `out`: `  --name ARG  meaning (default D)`.
void swd_sim_params_help(FILE *out);

/// Starts a model with a copy of `p` (which must respect the knobs' bounds),
/// seeded from `p->seed`, with its time origin at `start_ms`.
void swd_sim_init(swd_sim_t *s, const swd_sim_params_t *p, int64_t start_ms);

/// Plans the task that starts at `now_ms`. `inflight` counts the agent's
/// tasks in flight, this one included. `estimated_tokens` is the task's
/// estimate, or 0 for none (then the `tokens` knob is the mean). Fills `out`.
///
/// Order of decisions: CRASH (once crash_after_tasks plans have been made,
/// or crash_after_ms has passed; from then on always), then OVERLOADED
/// (inflight > overload_at), then one uniform draw decides HANG (hang_rate),
/// a fatal error (fatal_rate), a retryable error (fail_rate, raised by the
/// degradation ramp) or OK, in that order; when the rates sum past 1 the later
/// ones get what is left. Every call counts as a task for crash_after_tasks.
void swd_sim_plan(swd_sim_t *s, int64_t now_ms, uint32_t inflight, uint64_t estimated_tokens,
                  swd_sim_outcome_t *out);

/// When crash_after_ms is set, stores the absolute time of the crash in
/// `*at_ms` and returns true, so a caller can crash on time even with no task
/// arriving; false when no timed crash is configured.
bool swd_sim_crash_time(const swd_sim_t *s, int64_t *at_ms);

/// A short deterministic output for a task of type `type` (`type_len` bytes,
/// need not be NUL-terminated): "sim:<type> ok (<tokens> tokens)". Written to
/// `buf` (`cap` bytes, always NUL-terminated when cap > 0); a long type is
/// cut so the suffix stays whole when it fits.
void swd_sim_output(const swd_sim_t *s, const char *type, size_t type_len, uint64_t tokens,
                    char *buf, size_t cap);

/// A static lower-case name of `kind` ("ok", "error", "overloaded", "hang",
/// "crash"), for logs.
const char *swd_sim_kind_name(swd_sim_kind_t kind);

#endif
