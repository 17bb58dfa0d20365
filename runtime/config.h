// swarmd's configuration: one plain struct the daemon reads directly, filled
// from one declarative table of keys (DESIGN.md §6, after Redis `config.c`).
//
//   defaults (table) ──▶ YAML file ──▶ SWARMD_* environment ──▶ flags
//                              │                 │                 │
//                              └── swd_config_set / table parsers ─┘
//                                                │
//                                 swd_diag_t: every bad value, one line each
//
// Each key has one row in the table: name, type, field, default, bounds,
// enum names, flags (secret), validator and apply hook. Defaults, the YAML
// loader, the environment, flags, printing and get/set all walk that row, so
// no key is spelled twice. The tuner changes values through the same
// mechanism: back up, set, apply (hooks), restore on failure.
//
// The config is single-threaded like the rest of the core: no locks.
#ifndef SWD_RUNTIME_CONFIG_H
#define SWD_RUNTIME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/log.h"

// ---------------------------------------------------------------------------
// Diagnostics

typedef enum swd_diag_level {
    SWD_DIAG_ERROR,
    SWD_DIAG_WARNING,
} swd_diag_level_t;

typedef struct swd_diag_msg {
    swd_diag_level_t level;
    char *text; ///< owned; "FILE:LINE: KEY: reason", "environment: SWARMD_X: reason", ...
} swd_diag_msg_t;

/// Collects every error and warning of a load, in order, so all of them can
/// be reported at once. Messages never contain the value of a secret key.
typedef struct swd_diag {
    swd_diag_msg_t *msgs; ///< owned array of `n` messages
    size_t n;
    size_t cap;
    size_t errors;
    size_t warnings;
} swd_diag_t;

void swd_diag_init(swd_diag_t *d);
/// Frees every message; `d` may be initialised again.
void swd_diag_close(swd_diag_t *d);
/// Appends one message. `d` may be NULL (the message is dropped).
void swd_diag_add(swd_diag_t *d, swd_diag_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/// Prints one line per message: errors as their text, warnings prefixed by
/// "warning: ".
void swd_diag_print(const swd_diag_t *d, FILE *out);

// ---------------------------------------------------------------------------
// Value types

/// Where a value came from, in increasing precedence at start-up.
typedef enum swd_config_source {
    SWD_CONFIG_DEFAULT,
    SWD_CONFIG_FILE,
    SWD_CONFIG_ENV,
    SWD_CONFIG_FLAG,
    SWD_CONFIG_RUNTIME, ///< set while running (RPC, tuner, rollback)
} swd_config_source_t;

/// The three modes every controller has (DESIGN.md §1).
typedef enum swd_mode {
    SWD_MODE_OFF,
    SWD_MODE_MONITOR,
    SWD_MODE_ENFORCE,
} swd_mode_t;

typedef enum swd_pool_kind {
    SWD_POOL_PROCESS,
    SWD_POOL_REMOTE,
    SWD_POOL_HTTP,
} swd_pool_kind_t;

typedef enum swd_pool_restart {
    SWD_RESTART_ALWAYS,
    SWD_RESTART_ON_FAILURE,
    SWD_RESTART_NEVER,
} swd_pool_restart_t;

typedef enum swd_http_format {
    SWD_HTTP_FORMAT_OPENAI,
    SWD_HTTP_FORMAT_RAW,
} swd_http_format_t;

/// A list of strings (argv, capabilities). Owns the array and each string.
typedef struct swd_config_list {
    char **items;
    size_t n;
} swd_config_list_t;

/// A string → string map in file order (env, headers). Owns everything.
typedef struct swd_config_map {
    char **keys;
    char **values;
    size_t n;
} swd_config_map_t;

/// One entry of `pools:` (DESIGN.md §6). Strings are owned; NULL means unset.
typedef struct swd_pool_config {
    char *name;
    swd_pool_kind_t kind;
    swd_config_list_t capabilities; ///< default ["*"]
    int64_t max_concurrency;        ///< default 1
    int64_t min;                    ///< default 0
    int64_t max;                    ///< default 50
    struct {
        swd_config_list_t command; ///< argv, required for process pools
        swd_config_map_t env;      ///< added to the child's environment
        swd_pool_restart_t restart;
    } process;
    struct {
        char *endpoint; ///< the full URL to POST, required for http pools
        swd_http_format_t format;
        char *model;              ///< NULL: not sent
        swd_config_map_t headers; ///< values secret, `${ENV_VAR}` left unexpanded
        int64_t timeout_ms;
        int64_t rpm;        ///< requests per minute, 0 = no quota
        int64_t tpm;        ///< tokens per minute, 0 = no quota
        int64_t max_tokens; ///< 0: not sent
        double temperature; ///< NAN: not sent
    } http;
} swd_pool_config_t;

struct swd_config_state;

/// The effective configuration. Read the fields directly; change them only
/// through swd_config_set()/swd_config_restore() once the daemon runs, so
/// hooks see the change. Strings are owned; NULL means "none".
typedef struct swd_config {
    struct {
        char *rpc;       ///< HOST:PORT, NULL = no TCP RPC listener
        char *http;      ///< HOST:PORT, NULL = no HTTP listener
        char *unix_path; ///< key `listen.unix`; NULL = none
    } listen;
    struct {
        char *token;       ///< secret; NULL = no auth
        char *agent_token; ///< secret; NULL = agents use `token`
    } auth;
    struct {
        int64_t max_message_bytes;
        int64_t max_write_buffer_bytes;
        int64_t max_connections;
        int64_t max_queued;
    } limits;
    struct {
        int64_t heartbeat_ms;
        int64_t degraded_after; ///< missed heartbeats
        int64_t dead_after;     ///< missed heartbeats
        int64_t dead_retention_s;
    } agents;
    struct {
        int64_t default_timeout_ms;
        int64_t default_max_retries;
        int64_t backoff_base_ms;
        int64_t backoff_max_ms;
        int64_t shutdown_grace_ms;
        int64_t aging_ms;            ///< queued this long, a task rises one priority level
        int64_t retain_finished_s;   ///< terminal tasks stay queryable this long
        int64_t retain_finished_max; ///< and at most this many of them (0: no limit)
        int64_t max_batch;           ///< tasks per task.submit_batch
    } scheduler;
    struct {
        int64_t window; ///< tasks
        int64_t target_latency_ms;
    } health;
    struct {
        swd_log_level_t level;
        int64_t ring; ///< records
    } log;
    struct {
        swd_mode_t mode;
    } tuner;
    swd_pool_config_t *pools; ///< owned array of `n_pools`
    size_t n_pools;
    struct swd_config_state *state; ///< private: sources and hooks
} swd_config_t;

// ---------------------------------------------------------------------------
// The key table (read-only: for the tuner's bounds, help and docs)

typedef enum swd_config_type {
    SWD_CONFIG_INT,     ///< int64_t, decimal
    SWD_CONFIG_SIZE,    ///< int64_t bytes; accepts K/KiB/M/MiB/G/GiB (binary)
    SWD_CONFIG_BOOL,    ///< bool: true/false, yes/no, on/off
    SWD_CONFIG_STRING,  ///< char *
    SWD_CONFIG_ENUM,    ///< an enum field, one of `enum_names`
    SWD_CONFIG_ADDRESS, ///< char * "HOST:PORT", port 0..65535, IPv6 as [::1]:PORT
    SWD_CONFIG_FLOAT,   ///< double
    SWD_CONFIG_LIST,    ///< swd_config_list_t
    SWD_CONFIG_MAP,     ///< swd_config_map_t
} swd_config_type_t;

enum {
    SWD_CONFIG_SECRET = 1u << 0,   ///< printed as "***", never in messages
    SWD_CONFIG_NULLABLE = 1u << 1, ///< may be null / none
    SWD_CONFIG_REQUIRED = 1u << 2, ///< pool keys: must be given
    SWD_CONFIG_FIXED = 1u << 3,    ///< pool keys: not changeable by swd_config_set
};

typedef struct swd_config_key swd_config_key_t;

/// A validator: 0, or an error with the reason written to `why`. `value`
/// points at the parsed value in the field's type (`char **` for strings,
/// `swd_config_list_t *`, ...); it is not called for a null string.
typedef int (*swd_config_validate_cb)(const swd_config_key_t *k, const void *value, char *why,
                                      size_t cap);

/// Called after a value changed (swd_config_set(), swd_config_restore(), and
/// values of later loads of a file or the environment; not for the pool list
/// itself) with the old and new values as text (secrets included, so never
/// log them for SWD_CONFIG_SECRET keys). A negative return undoes the change.
/// A hook must not register or remove hooks.
typedef int (*swd_config_change_cb)(swd_config_t *c, const char *key, const char *old_value,
                                    const char *new_value, void *data);

struct swd_config_key {
    const char *name; ///< "agents.heartbeat_ms", or a pool key "max_concurrency"
    swd_config_type_t type;
    size_t offset;                   ///< into swd_config_t, or swd_pool_config_t for pool keys
    const char *def;                 ///< the default as text (NULL: none); lists: a one-item list
    int64_t min, max;                ///< INT and SIZE bounds, inclusive
    double fmin, fmax;               ///< FLOAT bounds, inclusive
    const char *const *enum_names;   ///< ENUM: NULL-terminated, in enum order
    unsigned flags;                  ///< SWD_CONFIG_SECRET, ...
    unsigned kinds;                  ///< pool keys: bit (1 << kind) per kind; 0 = every kind
    const char *env_alias;           ///< a short SWARMD_* name, or NULL
    const char *flag;                ///< the command-line flag without "--", or NULL
    swd_config_validate_cb validate; ///< extra check after type and bounds, or NULL
    swd_config_change_cb apply;      ///< the table's own apply hook, or NULL
};

/// The key of the main table called `key`, or NULL (pool keys are not in it).
const swd_config_key_t *swd_config_key_find(const char *key);
/// The main table, `*n` rows.
const swd_config_key_t *swd_config_keys(size_t *n);
/// The pool key table, `*n` rows.
const swd_config_key_t *swd_pool_config_keys(size_t *n);

// ---------------------------------------------------------------------------
// Life cycle and loading

/// Fills `c` with the defaults of DESIGN.md §6. Free with swd_config_close().
void swd_config_init(swd_config_t *c);
/// Frees every string, pool and hook.
void swd_config_close(swd_config_t *c);

/// Loads a YAML file over the current values. Every bad value, unknown key or
/// section, and YAML syntax error is added to `d` as "FILE:LINE: KEY: reason";
/// returns 0, or SWD_ECONFIG when at least one error was found (good values
/// are still applied). A `pools:` section replaces the pool list.
int swd_config_load_file(swd_config_t *c, const char *path, swd_diag_t *d);
/// As swd_config_load_file(), but the top-level sections named in `ignore`
/// (NULL-terminated, may be NULL) are skipped: a workload file's `tasks`.
int swd_config_load_file_ex(swd_config_t *c, const char *path, const char *const *ignore,
                            swd_diag_t *d);
/// Applies SWARMD_<SECTION>_<KEY> variables of `envp` (NULL-terminated
/// "NAME=value" strings) and the aliases SWARMD_LISTEN, SWARMD_HTTP,
/// SWARMD_TOKEN, SWARMD_AGENT_TOKEN. An alias and its long name with
/// different values is an error; an unknown SWARMD_* name is a warning.
/// Returns 0 or SWD_ECONFIG.
int swd_config_load_env(swd_config_t *c, char **envp, swd_diag_t *d);
/// Checks relations between keys (degraded_after ≤ dead_after, ...) once all
/// sources are loaded: 0 or SWD_ECONFIG, each problem added to `d`.
int swd_config_validate(const swd_config_t *c, swd_diag_t *d);

// ---------------------------------------------------------------------------
// One key at a time
//
// `key` is a main-table key ("agents.heartbeat_ms") or a pool key
// "pools.NAME.KEY" ("pools.web.max_concurrency").

/// The main-table key that flag `flag` ("listen" or "--listen") sets, or NULL.
const char *swd_config_flag_key(const char *flag);
/// True when `key` is in the main table (pool keys depend on the config).
bool swd_config_has_key(const char *key);

/// The flags of one command line that set keys (--listen, --http, --unix,
/// --log-level), every one in order, to be applied after the file and the
/// environment: each value is checked, and of a flag given twice the last
/// wins. Zero-initialise it; keys are the table's names and values are
/// borrowed (argv), so both must outlive it; swd_config_overrides_close()
/// frees the list.
typedef struct swd_config_overrides {
    const char **keys;
    const char **values;
    size_t n, cap;
} swd_config_overrides_t;

/// Records `value` for the key that `flag` ("listen" or "--listen") sets.
/// Returns 0, or SWD_ENOTFOUND (nothing recorded) when the flag sets no key.
int swd_config_overrides_add(swd_config_overrides_t *o, const char *flag, const char *value);
/// swd_config_set() of every recorded value, in order, as SWD_CONFIG_FLAG;
/// each bad value is reported to `d`. Returns 0 or the first error.
int swd_config_overrides_apply(const swd_config_overrides_t *o, swd_config_t *c, swd_diag_t *d);
void swd_config_overrides_close(swd_config_overrides_t *o);

/// Parses `value` (text; lists and maps in YAML flow form, `["a", "b"]`),
/// checks type, bounds and validator, stores it, then runs the apply hooks.
/// On any failure the old value stays (hooks that already ran see it
/// restored) and the reason goes to `d`, prefixed by where the value came
/// from ("--listen: ", "environment: SWARMD_X: ", "KEY: "). Returns 0,
/// SWD_ENOTFOUND (unknown key), SWD_ECONFIG (bad value), or a hook's error.
int swd_config_set(swd_config_t *c, const char *key, const char *value, swd_config_source_t src,
                   swd_diag_t *d);
/// Writes the value of `key` as text into `buf` (secrets in clear: this is
/// for backup and restore; "" for none). Returns 0, SWD_ENOTFOUND, or
/// SWD_EOVERFLOW when `cap` is too small (buf then holds a truncated string).
int swd_config_get(const swd_config_t *c, const char *key, char *buf, size_t cap);
/// Where the value of `key` came from ("default", "file", "env", "flag",
/// "runtime"); NULL for an unknown key.
const char *swd_config_source(const swd_config_t *c, const char *key);

/// A saved value: its text and its source.
typedef struct swd_config_value {
    char *text; ///< owned
    swd_config_source_t source;
} swd_config_value_t;

/// Saves the value of `key` into `out` (free with swd_config_value_free()).
/// Returns 0 or SWD_ENOTFOUND.
int swd_config_backup(const swd_config_t *c, const char *key, swd_config_value_t *out);
/// Puts a saved value and its source back through the same path as
/// swd_config_set(): hooks run, and if one fails the value before the restore
/// stays. Returns 0, SWD_ENOTFOUND (the key or pool is gone), or the hook's
/// error.
int swd_config_restore(swd_config_t *c, const char *key, const swd_config_value_t *v);
void swd_config_value_free(swd_config_value_t *v);

/// Registers `cb` for changes of `key` (NULL: every key); `data` is passed
/// back and stays the caller's. Hooks run in registration order, after the
/// table's own `apply`. Returns 0 or SWD_ENOTFOUND for an unknown main key
/// (pool keys are not checked: pools may come later).
int swd_config_on_change(swd_config_t *c, const char *key, swd_config_change_cb cb, void *data);
/// Removes a hook registered with the same arguments; SWD_ENOTFOUND if none.
int swd_config_off_change(swd_config_t *c, const char *key, swd_config_change_cb cb, void *data);

/// Prints the effective configuration as YAML that swd_config_load_file()
/// accepts back; secrets (auth.*, pool headers) as "***".
void swd_config_print(const swd_config_t *c, FILE *out);

// ---------------------------------------------------------------------------
// Pools

/// Fills `p` with a pool's defaults (kind process, no name).
void swd_pool_config_init(swd_pool_config_t *p);
void swd_pool_config_close(swd_pool_config_t *p);
/// The pool called `name`, or NULL.
const swd_pool_config_t *swd_config_find_pool(const swd_config_t *c, const char *name);

const char *swd_config_source_name(swd_config_source_t s);
const char *swd_mode_name(swd_mode_t m);
const char *swd_pool_kind_name(swd_pool_kind_t k);

#endif
