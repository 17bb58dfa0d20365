// The simulation model of an LLM-backed agent (see sim_model.h).
//
// One static table, `knobs`, holds every knob's name, type, default, bounds
// and meaning; swd_sim_params_init(), swd_sim_params_set() and
// swd_sim_params_help() all walk it, so a knob is spelled once.
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "agents/sim_model.h"
#include "proto/errors.h"

typedef enum knob_type {
    KNOB_DOUBLE,
    KNOB_U64,
} knob_type_t;

typedef union knob_value {
    double d;
    uint64_t u;
} knob_value_t;

typedef struct sim_knob {
    const char *name; ///< command-line name without dashes
    const char *arg;  ///< placeholder for the value in the help text
    size_t offset;    ///< of the field in swd_sim_params_t
    knob_type_t type;
    knob_value_t def, min, max; ///< bounds are inclusive
    const char *help;
} sim_knob_t;

// _Generic makes a knob whose field has the wrong type a compile error, so
// the table cannot write a double into a uint64_t. (A type name cannot be
// parenthesized in a _Generic association.)
#define KNOB_OFFSET(field, ctype)                                                                  \
    _Generic(((swd_sim_params_t *)0)->field, ctype : offsetof(swd_sim_params_t, field)) // NOLINT

// clang-format off
#define KNOB_D(name_, arg_, field, dflt, lo, hi, help_)                                            \
    {.name = (name_), .arg = (arg_), .offset = KNOB_OFFSET(field, double), .type = KNOB_DOUBLE, \
     .def = {.d = (dflt)}, .min = {.d = (lo)}, .max = {.d = (hi)}, .help = (help_)}

#define KNOB_U(name_, arg_, field, dflt, lo, hi, help_)                                            \
    {.name = (name_), .arg = (arg_), .offset = KNOB_OFFSET(field, uint64_t), .type = KNOB_U64,  \
     .def = {.u = (dflt)}, .min = {.u = (lo)}, .max = {.u = (hi)}, .help = (help_)}
// clang-format on

// Bounds of durations: one year in milliseconds keeps every sum of times far
// from int64_t overflow.
#define MS_MAX UINT64_C(31536000000)
#define COUNT_MAX UINT64_C(1000000000)

static const sim_knob_t knobs[] = {
    KNOB_U("seed", "N", seed, 1, 0, UINT64_MAX,
           "generator seed; the same seed replays the same outcomes"),
    KNOB_D("latency-ms", "MS", latency_ms, 800, 0, 86400000.0,
           "median task latency, log-normal; 0 answers at once"),
    KNOB_D("latency-spread", "SIGMA", latency_spread, 0.5, 0, 4,
           "sigma of log(latency); 0 = constant latency"),
    KNOB_U("tokens", "N", tokens, 600, 1, COUNT_MAX, "mean tokens per task without an estimate"),
    KNOB_D("tokens-spread", "SIGMA", tokens_spread, 0.3, 0, 4,
           "sigma of log(tokens); actual = mean or estimate x log-normal"),
    KNOB_D("fail-rate", "P", fail_rate, 0, 0, 1, "probability of a retryable error \"sim_error\""),
    KNOB_D("fatal-rate", "P", fatal_rate, 0, 0, 1,
           "probability of a non-retryable error \"sim_fatal\""),
    KNOB_U("capacity", "N", capacity, 4, 0, COUNT_MAX,
           "tasks at full speed; beyond, latency x (1 + excess/capacity); 0 = no limit"),
    KNOB_U("overload-at", "N", overload_at, 0, 0, COUNT_MAX,
           "more tasks in flight answer \"overloaded\" at once; 0 = off"),
    KNOB_U("retry-after-ms", "MS", retry_after_ms, 1000, 0, MS_MAX,
           "retry_after_ms sent with \"overloaded\""),
    KNOB_U("degrade-after-ms", "MS", degrade_after_ms, 0, 0, MS_MAX,
           "start degrading this long after start; 0 = never"),
    KNOB_U("degrade-ramp-ms", "MS", degrade_ramp_ms, 60000, 0, MS_MAX,
           "time over which degradation reaches its full effect; 0 = at once"),
    KNOB_D("degrade-fail-rate", "P", degrade_fail_rate, 0.8, 0, 1,
           "fail rate at full degradation (linear from fail-rate)"),
    KNOB_D("degrade-latency-factor", "F", degrade_latency_factor, 4, 1, 1000,
           "latency multiplier at full degradation (linear from 1)"),
    KNOB_U("crash-after-tasks", "N", crash_after_tasks, 0, 0, UINT64_MAX,
           "crash on the task that follows this many; 0 = never"),
    KNOB_U("crash-after-ms", "MS", crash_after_ms, 0, 0, MS_MAX,
           "crash this long after start; 0 = never"),
    KNOB_D("hang-rate", "P", hang_rate, 0, 0, 1,
           "probability a task is never answered (tests timeouts)"),
};

#define KNOB_COUNT (sizeof(knobs) / sizeof(knobs[0]))

static void *knob_field(swd_sim_params_t *p, const sim_knob_t *k) {
    return (char *)p + k->offset;
}

void swd_sim_params_init(swd_sim_params_t *p) {
    memset(p, 0, sizeof(*p));
    for (size_t i = 0; i < KNOB_COUNT; i++) {
        const sim_knob_t *k = &knobs[i];
        if (k->type == KNOB_DOUBLE) {
            memcpy(knob_field(p, k), &k->def.d, sizeof(double));
        } else {
            memcpy(knob_field(p, k), &k->def.u, sizeof(uint64_t));
        }
    }
}

static const sim_knob_t *knob_find(const char *name) {
    for (size_t i = 0; i < KNOB_COUNT; i++) {
        if (strcmp(knobs[i].name, name) == 0) {
            return &knobs[i];
        }
    }
    return NULL;
}

static int set_error(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_error(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

// Parses a whole decimal number: no sign, no blanks, no trailing text.
static int parse_u64(const sim_knob_t *k, const char *value, uint64_t *out, char *err,
                     size_t errlen) {
    if (value[0] < '0' || value[0] > '9') {
        return set_error(err, errlen, SWD_ECONFIG, "%s: '%s' is not a whole number (expected %s)",
                         k->name, value, k->arg);
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (*end != '\0') {
        return set_error(err, errlen, SWD_ECONFIG, "%s: '%s' is not a whole number (expected %s)",
                         k->name, value, k->arg);
    }
    if (errno == ERANGE || v < k->min.u || v > k->max.u) {
        return set_error(err, errlen, SWD_ECONFIG,
                         "%s: '%s' is out of range [%" PRIu64 ", %" PRIu64 "]", k->name, value,
                         k->min.u, k->max.u);
    }
    *out = (uint64_t)v;
    return 0;
}

// Parses a finite decimal number; strtod's own leniencies (leading blanks,
// "inf", "nan") are refused.
static int parse_double(const sim_knob_t *k, const char *value, double *out, char *err,
                        size_t errlen) {
    char first = value[0];
    bool numeric_start =
        (first >= '0' && first <= '9') || first == '-' || first == '+' || first == '.';
    char *end = NULL;
    errno = 0;
    double v = numeric_start ? strtod(value, &end) : 0.0;
    if (!numeric_start || end == value || *end != '\0' || !isfinite(v)) {
        return set_error(err, errlen, SWD_ECONFIG, "%s: '%s' is not a number (expected %s)",
                         k->name, value, k->arg);
    }
    if (errno == ERANGE || v < k->min.d || v > k->max.d) {
        return set_error(err, errlen, SWD_ECONFIG, "%s: '%s' is out of range [%g, %g]", k->name,
                         value, k->min.d, k->max.d);
    }
    *out = v;
    return 0;
}

int swd_sim_params_set(swd_sim_params_t *p, const char *name, const char *value, char *err,
                       size_t errlen) {
    if (name == NULL) {
        return set_error(err, errlen, SWD_ENOTFOUND, "missing simulation knob name");
    }
    const sim_knob_t *k = knob_find(name);
    if (k == NULL) {
        return set_error(err, errlen, SWD_ENOTFOUND, "unknown simulation knob '%s'", name);
    }
    if (value == NULL || value[0] == '\0') {
        return set_error(err, errlen, SWD_ECONFIG, "%s: missing value (expected %s)", k->name,
                         k->arg);
    }
    if (k->type == KNOB_DOUBLE) {
        double d = 0.0;
        int rc = parse_double(k, value, &d, err, errlen);
        if (rc == 0) {
            memcpy(knob_field(p, k), &d, sizeof(d));
        }
        return rc;
    }
    uint64_t u = 0;
    int rc = parse_u64(k, value, &u, err, errlen);
    if (rc == 0) {
        memcpy(knob_field(p, k), &u, sizeof(u));
    }
    return rc;
}

void swd_sim_params_help(FILE *out) {
    for (size_t i = 0; i < KNOB_COUNT; i++) {
        const sim_knob_t *k = &knobs[i];
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s %s", k->name, k->arg);
        if (k->type == KNOB_DOUBLE) {
            fprintf(out, "  %-28s %s (default %g)\n", flag, k->help, k->def.d);
        } else {
            fprintf(out, "  %-28s %s (default %" PRIu64 ")\n", flag, k->help, k->def.u);
        }
    }
}

void swd_sim_init(swd_sim_t *s, const swd_sim_params_t *p, int64_t start_ms) {
    memset(s, 0, sizeof(*s));
    s->p = *p;
    swd_rng_seed(&s->rng, p->seed);
    s->start_ms = start_ms;
}

// The random numbers of one plan, drawn together and always all of them, so
// the stream stays aligned task by task whatever each outcome turns out to be.
typedef struct sim_draws {
    double z_latency;
    double z_tokens;
    double u_outcome;
} sim_draws_t;

static void draw(swd_sim_t *s, sim_draws_t *d) {
    d->z_latency = swd_rng_normal(&s->rng);
    d->z_tokens = swd_rng_normal(&s->rng);
    d->u_outcome = swd_rng_double(&s->rng);
}

static int64_t elapsed_ms(const swd_sim_t *s, int64_t now_ms) {
    // A clock that steps back before the origin counts as the origin.
    if (now_ms <= s->start_ms) {
        return 0;
    }
    return now_ms - s->start_ms;
}

// Progress of the degradation ramp at `now_ms`, in [0, 1].
static double degrade_progress(const swd_sim_t *s, int64_t now_ms) {
    const swd_sim_params_t *p = &s->p;
    if (p->degrade_after_ms == 0) {
        return 0.0;
    }
    int64_t since = elapsed_ms(s, now_ms) - (int64_t)p->degrade_after_ms;
    if (since < 0) {
        return 0.0;
    }
    if (p->degrade_ramp_ms == 0 || since >= (int64_t)p->degrade_ramp_ms) {
        return 1.0;
    }
    return (double)since / (double)p->degrade_ramp_ms;
}

static bool crash_due(const swd_sim_t *s, int64_t now_ms) {
    const swd_sim_params_t *p = &s->p;
    if (s->crashed) {
        return true;
    }
    if (p->crash_after_tasks > 0 && s->planned > p->crash_after_tasks) {
        return true;
    }
    return p->crash_after_ms > 0 && elapsed_ms(s, now_ms) >= (int64_t)p->crash_after_ms;
}

static int64_t plan_latency(const swd_sim_t *s, const sim_draws_t *d, uint32_t inflight,
                            double degrade) {
    const swd_sim_params_t *p = &s->p;
    double ms = p->latency_ms * exp(p->latency_spread * d->z_latency);
    if (p->capacity > 0 && inflight > p->capacity) {
        double excess = (double)(inflight - p->capacity);
        ms *= 1.0 + excess / (double)p->capacity;
    }
    ms *= 1.0 + (p->degrade_latency_factor - 1.0) * degrade;
    // The cap also keeps the conversion below defined for any draw.
    if (!(ms < (double)SWD_SIM_MAX_LATENCY_MS)) {
        return SWD_SIM_MAX_LATENCY_MS;
    }
    return (int64_t)(ms + 0.5);
}

static uint64_t plan_tokens(const swd_sim_t *s, const sim_draws_t *d, uint64_t estimated_tokens) {
    const swd_sim_params_t *p = &s->p;
    double mean = estimated_tokens > 0 ? (double)estimated_tokens : (double)p->tokens;
    double sigma = p->tokens_spread;
    // exp(sigma z - sigma²/2) has mean 1, so the tokens' mean is `mean`
    // itself and actual/estimate averages 1.
    double t = mean * exp(sigma * d->z_tokens - 0.5 * sigma * sigma);
    if (!(t < 9.0e18)) {
        t = 9.0e18;
    }
    uint64_t n = (uint64_t)(t + 0.5);
    return n > 0 ? n : 1;
}

void swd_sim_plan(swd_sim_t *s, int64_t now_ms, uint32_t inflight, uint64_t estimated_tokens,
                  swd_sim_outcome_t *out) {
    const swd_sim_params_t *p = &s->p;
    sim_draws_t d;
    draw(s, &d);
    s->planned++;
    memset(out, 0, sizeof(*out));

    if (crash_due(s, now_ms)) {
        s->crashed = true;
        out->kind = SWD_SIM_CRASH;
        return;
    }
    if (p->overload_at > 0 && inflight > p->overload_at) {
        out->kind = SWD_SIM_OVERLOADED;
        out->error = "overloaded";
        out->message = "simulated agent is over its overload threshold";
        out->retryable = true;
        out->retry_after_ms = p->retry_after_ms;
        return;
    }

    double degrade = degrade_progress(s, now_ms);
    double fail = p->fail_rate + (p->degrade_fail_rate - p->fail_rate) * degrade;
    double u = d.u_outcome;
    if (u < p->hang_rate) {
        out->kind = SWD_SIM_HANG;
        return;
    }
    out->latency_ms = plan_latency(s, &d, inflight, degrade);
    if (u < p->hang_rate + p->fatal_rate) {
        out->kind = SWD_SIM_ERROR;
        out->error = "sim_fatal";
        out->message = "simulated non-retryable failure";
        out->retryable = false;
    } else if (u < p->hang_rate + p->fatal_rate + fail) {
        out->kind = SWD_SIM_ERROR;
        out->error = "sim_error";
        out->message = "simulated retryable failure";
        out->retryable = true;
    } else {
        out->kind = SWD_SIM_OK;
        out->tokens_used = plan_tokens(s, &d, estimated_tokens);
    }
}

bool swd_sim_crash_time(const swd_sim_t *s, int64_t *at_ms) {
    if (s->p.crash_after_ms == 0) {
        return false;
    }
    *at_ms = s->start_ms + (int64_t)s->p.crash_after_ms;
    return true;
}

void swd_sim_output(const swd_sim_t *s, const char *type, size_t type_len, uint64_t tokens,
                    char *buf, size_t cap) {
    (void)s;
    if (cap == 0) {
        return;
    }
    char suffix[64];
    int n = snprintf(suffix, sizeof(suffix), " ok (%" PRIu64 " tokens)", tokens);
    size_t suffix_len = n > 0 ? (size_t)n : 0;
    size_t prefix_len = sizeof("sim:") - 1;
    // Room for the type: what is left of `cap` after prefix, suffix and NUL.
    size_t room = cap > prefix_len + suffix_len + 1 ? cap - prefix_len - suffix_len - 1 : 0;
    if (type == NULL) {
        type_len = 0;
    }
    size_t shown = type_len < room ? type_len : room;
    if (shown > INT_MAX / 2) {
        shown = INT_MAX / 2;
    }
    snprintf(buf, cap, "sim:%.*s%s", (int)shown, shown > 0 ? type : "", suffix);
}

const char *swd_sim_kind_name(swd_sim_kind_t kind) {
    switch (kind) {
    case SWD_SIM_OK:
        return "ok";
    case SWD_SIM_ERROR:
        return "error";
    case SWD_SIM_OVERLOADED:
        return "overloaded";
    case SWD_SIM_HANG:
        return "hang";
    case SWD_SIM_CRASH:
        return "crash";
    }
    return "unknown";
}
