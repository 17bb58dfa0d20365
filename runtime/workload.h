// A workload file for `swarmd run` (docs/workloads.md): the configuration
// sections of swarmd (`pools`, `scheduler`, ...) plus the workload's own
// keys, read with libyaml like runtime/config.c:
//
//   name: research-swarm          # shown in progress and the report
//   seed: 7                       # for estimated_tokens distributions
//   tasks:                        # generators, in any order
//     - type: research
//       count: 40                 # tasks made from this entry
//       key: "research-{i}"       # {i} = 1..count; keys name tasks in `after`
//       priority: high
//       estimated_tokens: {dist: lognormal, median: 3000, sigma: 0.4}
//       payload: {topic: "part {i}"}
//       timeout_ms: 60000
//       max_retries: 3
//       after: [plan]             # keys; {i} pairs tasks, * globs ("research-*")
//   tasks_file: more.jsonl        # task.submit params per line (after = keys)
//
//   file ─▶ libyaml document ─▶ generators ─▶ expanded tasks (keys resolved)
//        ─▶ topological order (a cycle is an error) ─▶ swd_workload_t
//
// Every problem is reported as "FILE:LINE: where: reason", all at once.
#ifndef SWD_RUNTIME_WORKLOAD_H
#define SWD_RUNTIME_WORKLOAD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/config.h"

/// One task to submit. Everything is owned by the workload.
typedef struct swd_workload_task {
    char *key;    ///< unique within the workload, never NULL
    char *type;   ///< never NULL
    int priority; ///< 0 critical .. 3 low (scheduler/task.h order)
    uint64_t estimated_tokens;
    int64_t timeout_ms;  ///< 0: scheduler.default_timeout_ms
    int64_t max_retries; ///< -1: scheduler.default_max_retries
    json_t *payload;     ///< NULL: nil
    json_t *labels;      ///< an object, or NULL
    uint32_t *after;     ///< indices of tasks that come earlier in the array
    uint32_t nafter;
    uint32_t source; ///< the generator's index, or UINT32_MAX for tasks_file lines
} swd_workload_task_t;

typedef struct swd_workload {
    char *path;                 ///< owned
    char *name;                 ///< owned; the file's base name when not given
    swd_workload_task_t *tasks; ///< owned, in dependency order
    size_t n;
    uint32_t ngenerators;
} swd_workload_t;

typedef struct swd_workload_opts {
    double scale;      ///< multiplies every generator's count (at least 1 stays); 0: 1
    double time_scale; ///< multiplies timeout_ms and pool arguments `--*-ms`; 0: 1
} swd_workload_opts_t;

/// Top-level keys of a workload that are not configuration sections, for
/// swd_config_load_file_ex()'s `ignore` (NULL-terminated).
extern const char *const swd_workload_keys[];

/// True when the YAML file at `path` looks like a workload (it has `tasks`
/// or `tasks_file` at the top level).
bool swd_workload_detect(const char *path);

/// Reads the workload's own keys from `path` (the configuration sections are
/// left to swd_config_load_file_ex) and checks the pools' lines too: a pool
/// kind this build cannot run, a command that cannot be found. Returns 0 or
/// SWD_ECONFIG with every problem in `d`; `w` is filled either way and must
/// be closed.
int swd_workload_load(swd_workload_t *w, const char *path, const swd_workload_opts_t *o,
                      swd_diag_t *d);
void swd_workload_close(swd_workload_t *w);

/// Multiplies the value of every `--NAME-ms V` / `--NAME-ms=V` argument of
/// the process pools' commands by `time_scale` (at least 1 ms stays).
void swd_workload_scale_pools(swd_config_t *cfg, double time_scale);

/// `swarmd run WORKLOAD [...]` (runtime/run.c); argv[0] is "run".
int swd_run_main(int argc, char **argv);
/// `swarmd check WORKLOAD`: every error of the workload and its
/// configuration; 0 or 2.
int swd_run_check(const char *path);

#endif
