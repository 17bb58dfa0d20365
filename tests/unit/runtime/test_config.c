// Tests of the configuration table (runtime/config.h): the defaults of
// DESIGN.md §6, loading YAML files with every kind of mistake reported as
// "FILE:LINE: KEY: reason", the environment and its aliases, flags, printing
// (round trip, secrets hidden), and set/backup/restore with apply hooks.
#include <criterion/criterion.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/errors.h"
#include "runtime/config.h"
#include "tests/unit/leak_check.h"

// ---------------------------------------------------------------------------
// Helpers

/// Writes `text` to a fresh temporary file; the caller unlinks and frees it.
static char *write_temp(const char *text) {
    char *path = strdup("/tmp/swd-config-test-XXXXXX");
    cr_assert_not_null(path);
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp failed");
    size_t n = strlen(text);
    cr_assert_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static void drop_temp(char *path) {
    unlink(path);
    free(path);
}

/// Loads `yaml` into `c` (initialised) and returns the load's result.
static int load_text(swd_config_t *c, const char *yaml, swd_diag_t *d, char **path_out) {
    char *path = write_temp(yaml);
    int rc = swd_config_load_file(c, path, d);
    *path_out = path;
    return rc;
}

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void dump_diag(const swd_diag_t *d) {
    for (size_t i = 0; i < d->n; i++) {
        fprintf(stderr, "  diag[%zu]: %s\n", i, d->msgs[i].text);
    }
}

/// Asserts message `i` of `d` is an error starting "PATH:LINE: prefix".
static void assert_msg(const swd_diag_t *d, size_t i, const char *path, int line,
                       const char *prefix) {
    cr_assert_lt(i, d->n, "only %zu messages", d->n);
    char want[512];
    snprintf(want, sizeof want, "%s:%d: %s", path, line, prefix);
    if (!starts_with(d->msgs[i].text, want)) {
        dump_diag(d);
    }
    cr_assert(starts_with(d->msgs[i].text, want), "message \"%s\" lacks \"%s\"", d->msgs[i].text,
              want);
    cr_assert_eq(d->msgs[i].level, SWD_DIAG_ERROR);
}

/// A file with exactly one mistake gives exactly one message, at `line`,
/// starting with `prefix` (after "FILE:LINE: "), and the load fails.
static void check_bad(const char *yaml, int line, const char *prefix) {
    swd_config_t c;
    swd_diag_t d;
    char *path;
    swd_config_init(&c);
    swd_diag_init(&d);
    int rc = load_text(&c, yaml, &d, &path);
    cr_assert_eq(rc, SWD_ECONFIG, "a bad file loaded:\n%s", yaml);
    if (d.n != 1) {
        dump_diag(&d);
    }
    cr_assert_eq(d.n, 1, "expected one message, got %zu", d.n);
    cr_assert_eq(d.errors, 1);
    assert_msg(&d, 0, path, line, prefix);
    drop_temp(path);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

static char *print_to_string(const swd_config_t *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    swd_config_print(c, f);
    fclose(f);
    return text;
}

static void assert_get(const swd_config_t *c, const char *key, const char *want) {
    char buf[512];
    cr_assert_eq(swd_config_get(c, key, buf, sizeof buf), 0, "get %s", key);
    cr_assert_str_eq(buf, want, "%s is \"%s\", want \"%s\"", key, buf, want);
}

/// Every key of `a` and `b`, pools included, has the same text.
static void assert_same_config(const swd_config_t *a, const swd_config_t *b) {
    size_t n;
    const swd_config_key_t *keys = swd_config_keys(&n);
    char va[1024];
    char vb[1024];
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(swd_config_get(a, keys[i].name, va, sizeof va), 0);
        cr_assert_eq(swd_config_get(b, keys[i].name, vb, sizeof vb), 0);
        cr_assert_str_eq(va, vb, "%s: \"%s\" vs \"%s\"", keys[i].name, va, vb);
    }
    cr_assert_eq(a->n_pools, b->n_pools);
    size_t np;
    const swd_config_key_t *pk = swd_pool_config_keys(&np);
    for (size_t p = 0; p < a->n_pools; p++) {
        cr_assert_str_eq(a->pools[p].name, b->pools[p].name);
        cr_assert_eq(a->pools[p].kind, b->pools[p].kind);
        for (size_t i = 0; i < np; i++) {
            if (pk[i].kinds != 0 && !(pk[i].kinds & (1u << a->pools[p].kind))) {
                continue;
            }
            char key[128];
            snprintf(key, sizeof key, "pools.%s.%s", a->pools[p].name, pk[i].name);
            cr_assert_eq(swd_config_get(a, key, va, sizeof va), 0, "get %s", key);
            cr_assert_eq(swd_config_get(b, key, vb, sizeof vb), 0, "get %s", key);
            cr_assert_str_eq(va, vb, "%s: \"%s\" vs \"%s\"", key, va, vb);
        }
    }
}

// ---------------------------------------------------------------------------
// Defaults

Test(config, defaults_match_design) {
    swd_config_t c;
    swd_config_init(&c);
    cr_assert_str_eq(c.listen.rpc, "127.0.0.1:7420");
    cr_assert_str_eq(c.listen.http, "127.0.0.1:7421");
    cr_assert_null(c.listen.unix_path);
    cr_assert_null(c.auth.token);
    cr_assert_null(c.auth.agent_token);
    cr_assert_eq(c.limits.max_message_bytes, 16777216);
    cr_assert_eq(c.limits.max_write_buffer_bytes, 67108864);
    cr_assert_eq(c.limits.max_connections, 1024);
    cr_assert_eq(c.limits.max_queued, 1000000);
    cr_assert_eq(c.agents.heartbeat_ms, 5000);
    cr_assert_eq(c.agents.degraded_after, 2);
    cr_assert_eq(c.agents.dead_after, 3);
    cr_assert_eq(c.agents.dead_retention_s, 300);
    cr_assert_eq(c.scheduler.default_timeout_ms, 600000);
    cr_assert_eq(c.scheduler.default_max_retries, 3);
    cr_assert_eq(c.scheduler.backoff_base_ms, 200);
    cr_assert_eq(c.scheduler.backoff_max_ms, 30000);
    cr_assert_eq(c.scheduler.shutdown_grace_ms, 30000);
    cr_assert_eq(c.scheduler.aging_ms, 10000);
    cr_assert_eq(c.scheduler.retain_finished_s, 3600);
    cr_assert_eq(c.scheduler.max_batch, 10000);
    cr_assert_eq(c.health.window, 50);
    cr_assert_eq(c.health.target_latency_ms, 3000);
    cr_assert_eq(c.log.level, SWD_LOG_INFO);
    cr_assert_eq(c.log.ring, 10000);
    cr_assert_eq(c.tuner.mode, SWD_MODE_OFF);
    cr_assert_eq(c.n_pools, 0);
    cr_assert_str_eq(swd_config_source(&c, "agents.heartbeat_ms"), "default");
    cr_assert_eq(swd_config_validate(&c, NULL), 0, "the defaults are consistent");
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, pool_defaults) {
    swd_pool_config_t p;
    swd_pool_config_init(&p);
    cr_assert_eq(p.capabilities.n, 1);
    cr_assert_str_eq(p.capabilities.items[0], "*");
    cr_assert_eq(p.max_concurrency, 1);
    cr_assert_eq(p.min, 0);
    cr_assert_eq(p.max, 50);
    cr_assert_eq(p.process.restart, SWD_RESTART_ALWAYS);
    cr_assert_eq(p.http.format, SWD_HTTP_FORMAT_OPENAI);
    cr_assert(isnan(p.http.temperature));
    swd_pool_config_close(&p);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Good files

static const char good_yaml[] = "# a full configuration\n"
                                "listen:\n"
                                "  rpc: 0.0.0.0:9000\n"
                                "  http: \"[::1]:9001\"\n"
                                "  unix: /tmp/swarmd.sock\n"
                                "auth:\n"
                                "  token: s3cret-client\n"
                                "  agent_token: s3cret-agent\n"
                                "limits:\n"
                                "  max_message_bytes: 8MiB\n"
                                "  max_connections: 64\n"
                                "agents:\n"
                                "  heartbeat_ms: 250\n"
                                "  dead_after: 5\n"
                                "scheduler:\n"
                                "  aging_ms: 500\n"
                                "  max_batch: 100\n"
                                "health:\n"
                                "  window: 20\n"
                                "log:\n"
                                "  level: debug\n"
                                "tuner:\n"
                                "  mode: monitor\n"
                                "pools:\n"
                                "  - name: local\n"
                                "    kind: process\n"
                                "    command: [swarm-agent, --stdio, --sim]\n"
                                "    env: {SIM_SEED: \"7\"}\n"
                                "    restart: on-failure\n"
                                "    max: 8\n"
                                "  - name: remote-a\n"
                                "    kind: remote\n"
                                "    capabilities: [code, review]\n"
                                "    max_concurrency: 4\n"
                                "  - name: llm\n"
                                "    kind: http\n"
                                "    endpoint: https://api.example.com/v1/chat/completions\n"
                                "    model: gpt-test\n"
                                "    headers:\n"
                                "      Authorization: \"Bearer ${OPENAI_API_KEY}\"\n"
                                "    rpm: 60\n"
                                "    tpm: 100000\n"
                                "    temperature: 0.2\n"
                                "    max_concurrency: 16\n";

Test(config, good_file_loads) {
    swd_config_t c;
    swd_diag_t d;
    char *path;
    swd_config_init(&c);
    swd_diag_init(&d);
    int rc = load_text(&c, good_yaml, &d, &path);
    dump_diag(&d);
    cr_assert_eq(rc, 0);
    cr_assert_eq(d.n, 0);
    cr_assert_str_eq(c.listen.rpc, "0.0.0.0:9000");
    cr_assert_str_eq(c.listen.http, "[::1]:9001");
    cr_assert_str_eq(c.listen.unix_path, "/tmp/swarmd.sock");
    cr_assert_str_eq(c.auth.token, "s3cret-client");
    cr_assert_str_eq(c.auth.agent_token, "s3cret-agent");
    cr_assert_eq(c.limits.max_message_bytes, INT64_C(8) * 1024 * 1024);
    cr_assert_eq(c.limits.max_connections, 64);
    cr_assert_eq(c.limits.max_queued, 1000000, "untouched keys keep their default");
    cr_assert_eq(c.agents.heartbeat_ms, 250);
    cr_assert_eq(c.agents.dead_after, 5);
    cr_assert_eq(c.scheduler.aging_ms, 500);
    cr_assert_eq(c.scheduler.max_batch, 100);
    cr_assert_eq(c.health.window, 20);
    cr_assert_eq(c.log.level, SWD_LOG_DEBUG);
    cr_assert_eq(c.tuner.mode, SWD_MODE_MONITOR);
    cr_assert_str_eq(swd_config_source(&c, "agents.heartbeat_ms"), "file");
    cr_assert_str_eq(swd_config_source(&c, "agents.degraded_after"), "default");

    cr_assert_eq(c.n_pools, 3);
    const swd_pool_config_t *p = swd_config_find_pool(&c, "local");
    cr_assert_not_null(p);
    cr_assert_eq(p->kind, SWD_POOL_PROCESS);
    cr_assert_eq(p->process.command.n, 3);
    cr_assert_str_eq(p->process.command.items[0], "swarm-agent");
    cr_assert_str_eq(p->process.command.items[2], "--sim");
    cr_assert_eq(p->process.env.n, 1);
    cr_assert_str_eq(p->process.env.keys[0], "SIM_SEED");
    cr_assert_str_eq(p->process.env.values[0], "7");
    cr_assert_eq(p->process.restart, SWD_RESTART_ON_FAILURE);
    cr_assert_eq(p->max, 8);
    cr_assert_str_eq(p->capabilities.items[0], "*");

    p = swd_config_find_pool(&c, "remote-a");
    cr_assert_eq(p->kind, SWD_POOL_REMOTE);
    cr_assert_eq(p->capabilities.n, 2);
    cr_assert_str_eq(p->capabilities.items[1], "review");
    cr_assert_eq(p->max_concurrency, 4);

    p = swd_config_find_pool(&c, "llm");
    cr_assert_eq(p->kind, SWD_POOL_HTTP);
    cr_assert_str_eq(p->http.endpoint, "https://api.example.com/v1/chat/completions");
    cr_assert_str_eq(p->http.model, "gpt-test");
    cr_assert_eq(p->http.format, SWD_HTTP_FORMAT_OPENAI);
    cr_assert_eq(p->http.headers.n, 1);
    cr_assert_str_eq(p->http.headers.values[0], "Bearer ${OPENAI_API_KEY}",
                     "${ENV_VAR} is kept unexpanded");
    cr_assert_eq(p->http.rpm, 60);
    cr_assert_eq(p->http.tpm, 100000);
    cr_assert_float_eq(p->http.temperature, 0.2, 1e-12);
    cr_assert_eq(p->max_concurrency, 16);
    cr_assert_eq(swd_config_validate(&c, &d), 0);

    drop_temp(path);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, empty_file_and_null_sections_keep_defaults) {
    swd_config_t c;
    swd_diag_t d;
    char *path;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(load_text(&c, "", &d, &path), 0);
    drop_temp(path);
    cr_assert_eq(load_text(&c, "# only a comment\nagents:\nlisten:\n  unix: ~\n", &d, &path), 0);
    drop_temp(path);
    cr_assert_eq(d.n, 0);
    cr_assert_eq(c.agents.heartbeat_ms, 5000);
    cr_assert_null(c.listen.unix_path);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, ignored_sections_of_a_workload) {
    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    char *path = write_temp("tasks:\n  - type: x\npools:\n  - {name: p, kind: remote}\n");
    static const char *const ignore[] = {"tasks", NULL};
    cr_assert_eq(swd_config_load_file_ex(&c, path, ignore, &d), 0);
    cr_assert_eq(c.n_pools, 1);
    cr_assert_eq(swd_config_load_file(&c, path, &d), SWD_ECONFIG);
    assert_msg(&d, 0, path, 1, "tasks: unknown section");
    drop_temp(path);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Bad files: one mistake, one message with FILE:LINE: KEY:

Test(config, unknown_key) {
    check_bad("agents:\n  heartbeat_ms: 100\n  heartbeat: 5\n", 3, "agents.heartbeat: unknown key");
}

Test(config, unknown_section) {
    check_bad("listen:\n  rpc: 127.0.0.1:1\nbogus:\n  a: 1\n", 3, "bogus: unknown section");
}

Test(config, wrong_type_scalar) {
    check_bad("agents:\n  heartbeat_ms: fast\n", 2,
              "agents.heartbeat_ms: expected an integer, got \"fast\"");
}

Test(config, wrong_type_list_for_scalar) {
    check_bad("limits:\n  max_queued: [1, 2]\n", 2,
              "limits.max_queued: expected an integer, got a list");
}

Test(config, wrong_type_section_not_mapping) {
    check_bad("agents: 5\n", 1, "agents: expected a mapping of keys");
}

Test(config, out_of_range) {
    check_bad("agents:\n  heartbeat_ms: 5\n", 2,
              "agents.heartbeat_ms: must be between 10 and 3600000, got 5");
    check_bad("limits:\n  max_connections: 99999999999999999999999\n", 2,
              "limits.max_connections: \"99999999999999999999999\" is out of range");
}

Test(config, bad_enum) {
    check_bad("log:\n  level: verbose\n", 2,
              "log.level: must be one of debug, info, warn, error; got \"verbose\"");
    check_bad("tuner:\n  mode: sometimes\n", 2, "tuner.mode: must be one of off, monitor, enforce");
}

Test(config, bad_address) {
    check_bad("listen:\n  rpc: localhost:99999\n", 2,
              "listen.rpc: the port must be a number from 0 to 65535");
    check_bad("listen:\n  http: \"::1:80\"\n", 2, "listen.http: an IPv6 host needs brackets");
    check_bad("listen:\n  rpc: localhost\n", 2, "listen.rpc: expected HOST:PORT");
    check_bad("listen:\n  rpc: \"[::zz]:1\"\n", 2, "listen.rpc: \"::zz\" is not an IPv6 address");
    check_bad("listen:\n  rpc: 300.1.1.1:80\n", 2, "listen.rpc: \"300.1.1.1\" is not an IPv4");
    check_bad("listen:\n  rpc: \":80\"\n", 2, "listen.rpc: expected HOST:PORT");
}

Test(config, good_addresses) {
    static const char *const ok[] = {"127.0.0.1:0", "[::1]:7420", "localhost:65535",
                                     "my-host.example.com:80", "[fe80::1]:1"};
    swd_config_t c;
    swd_config_init(&c);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        cr_assert_eq(swd_config_set(&c, "listen.rpc", ok[i], SWD_CONFIG_RUNTIME, NULL), 0, "%s",
                     ok[i]);
        cr_assert_str_eq(c.listen.rpc, ok[i]);
    }
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, pool_without_name) {
    check_bad("pools:\n  - kind: remote\n    max: 3\n", 2, "pools[0].name: required");
}

Test(config, process_pool_without_command) {
    check_bad("pools:\n  - name: a\n    kind: process\n", 2,
              "pools[0].command: required for process pools");
}

Test(config, pool_without_kind) {
    check_bad("pools:\n  - name: a\n", 2, "pools[0].kind: required");
}

Test(config, http_pool_without_endpoint) {
    check_bad("pools:\n  - name: a\n    kind: http\n", 2,
              "pools[0].endpoint: required for http pools");
}

Test(config, key_of_another_pool_kind) {
    check_bad("pools:\n  - name: a\n    kind: process\n    command: [x]\n"
              "    endpoint: http://h/\n",
              5, "pools[0].endpoint: a key of http pools, not of process pools");
    check_bad("pools:\n  - name: a\n    kind: http\n    endpoint: http://h/\n"
              "    restart: never\n",
              5, "pools[0].restart: a key of process pools, not of http pools");
}

Test(config, bad_pool_values) {
    check_bad("pools:\n  - name: a\n    kind: remote\n    min: 9\n    max: 3\n", 2,
              "pools[0].min: greater than max");
    check_bad("pools:\n  - {name: a, kind: remote}\n  - {name: a, kind: remote}\n", 3,
              "pools[1].name: another pool is called \"a\"");
    check_bad("pools:\n  - name: a\n    kind: http\n    endpoint: ftp://x\n", 4,
              "pools[0].endpoint: expected an http:// or https:// URL");
    check_bad("pools:\n  - name: a\n    kind: process\n    command: \"swarm-agent --stdio\"\n", 4,
              "pools[0].command: expected a list of strings, got a scalar");
    check_bad("pools:\n  - name: a\n    kind: process\n    command: []\n", 4,
              "pools[0].command: must not be empty");
    check_bad("pools:\n  - name: a\n    kind: cloud\n", 3, "pools[0].kind: must be one of");
    check_bad("pools:\n  name: a\n", 2, "pools: expected a list of pools, got a mapping");
    check_bad("pools:\n  - name: a b\n    kind: remote\n", 2, "pools[0].name: only letters");
}

Test(config, duplicate_key) {
    check_bad("agents:\n  heartbeat_ms: 100\n  heartbeat_ms: 200\n", 3,
              "agents.heartbeat_ms: given twice");
}

Test(config, not_yaml) {
    check_bad("listen:\n  rpc: [1, 2\nagents:\n  x: 1\n", 3, "not valid YAML:");
    check_bad("agents:\n  heartbeat_ms: 100\n bad indentation: 1\n", 3, "not valid YAML:");
}

Test(config, not_a_mapping) {
    check_bad("- just\n- a list\n", 1, "expected a mapping of sections");
}

Test(config, missing_file) {
    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(swd_config_load_file(&c, "/nonexistent/swarmd.yaml", &d), SWD_ECONFIG);
    cr_assert_eq(d.errors, 1);
    cr_assert(strstr(d.msgs[0].text, "/nonexistent/swarmd.yaml: cannot read") != NULL);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, every_error_is_reported) {
    static const char yaml[] = "listen:\n"                  // 1
                               "  rpc: nowhere\n"           // 2
                               "agents:\n"                  // 3
                               "  heartbeat_ms: 1\n"        // 4
                               "  dead_after: 3\n"          // 5
                               "  lives: 9\n"               // 6
                               "log:\n"                     // 7
                               "  level: loud\n"            // 8
                               "weather:\n"                 // 9
                               "  sunny: true\n"            // 10
                               "pools:\n"                   // 11
                               "  - kind: process\n"        // 12
                               "    endpoint: http://x/\n"; // 13
    swd_config_t c;
    swd_diag_t d;
    char *path;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(load_text(&c, yaml, &d, &path), SWD_ECONFIG);
    cr_assert_eq(d.errors, 8, "got %zu errors", d.errors);
    assert_msg(&d, 0, path, 2, "listen.rpc: expected HOST:PORT");
    assert_msg(&d, 1, path, 4, "agents.heartbeat_ms: must be between");
    assert_msg(&d, 2, path, 6, "agents.lives: unknown key");
    assert_msg(&d, 3, path, 8, "log.level: must be one of");
    assert_msg(&d, 4, path, 9, "weather: unknown section");
    assert_msg(&d, 5, path, 13, "pools[0].endpoint: a key of http pools");
    assert_msg(&d, 6, path, 12, "pools[0].name: required");
    assert_msg(&d, 7, path, 12, "pools[0].command: required for process pools");
    cr_assert_eq(c.agents.heartbeat_ms, 5000, "a bad value leaves the old one");
    cr_assert_eq(c.agents.dead_after, 3);
    cr_assert_eq(c.n_pools, 0, "a pool with errors is dropped");
    drop_temp(path);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Environment

Test(config, env_overrides_and_aliases) {
    char *envp[] = {"HOME=/root",
                    "SWARMD_AGENTS_HEARTBEAT_MS=500",
                    "SWARMD_LISTEN=127.0.0.1:0",
                    "SWARMD_HTTP=[::1]:0",
                    "SWARMD_TOKEN=tok",
                    "SWARMD_AUTH_AGENT_TOKEN=atok",
                    "SWARMD_TUNER_MODE=off",
                    "SWARMD_LOG_LEVEL=WARN",
                    "SWARMD_LIMITS_MAX_MESSAGE_BYTES=1MiB",
                    NULL};
    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(swd_config_load_env(&c, envp, &d), 0);
    dump_diag(&d);
    cr_assert_eq(d.n, 0);
    cr_assert_eq(c.agents.heartbeat_ms, 500);
    cr_assert_str_eq(c.listen.rpc, "127.0.0.1:0");
    cr_assert_str_eq(c.listen.http, "[::1]:0");
    cr_assert_str_eq(c.auth.token, "tok");
    cr_assert_str_eq(c.auth.agent_token, "atok");
    cr_assert_eq(c.tuner.mode, SWD_MODE_OFF);
    cr_assert_eq(c.log.level, SWD_LOG_WARN);
    cr_assert_eq(c.limits.max_message_bytes, 1048576);
    cr_assert_str_eq(swd_config_source(&c, "listen.rpc"), "env");
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, env_overrides_file) {
    swd_config_t c;
    swd_diag_t d;
    char *path;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(load_text(&c, "agents:\n  heartbeat_ms: 100\n  dead_after: 4\n", &d, &path), 0);
    char *envp[] = {"SWARMD_AGENTS_HEARTBEAT_MS=700", NULL};
    cr_assert_eq(swd_config_load_env(&c, envp, &d), 0);
    cr_assert_eq(c.agents.heartbeat_ms, 700);
    cr_assert_eq(c.agents.dead_after, 4);
    drop_temp(path);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, env_alias_same_value_is_fine) {
    char *envp[] = {"SWARMD_LISTEN=127.0.0.1:1", "SWARMD_LISTEN_RPC=127.0.0.1:1", NULL};
    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(swd_config_load_env(&c, envp, &d), 0);
    cr_assert_eq(d.n, 0);
    cr_assert_str_eq(c.listen.rpc, "127.0.0.1:1");
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, env_alias_conflict_is_an_error) {
    char *envp[] = {"SWARMD_TOKEN=one", "SWARMD_AUTH_TOKEN=two", NULL};
    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(swd_config_load_env(&c, envp, &d), SWD_ECONFIG);
    cr_assert_eq(d.errors, 1);
    cr_assert(
        starts_with(d.msgs[0].text, "environment: SWARMD_TOKEN: conflicts with SWARMD_AUTH_TOKEN"),
        "%s", d.msgs[0].text);
    cr_assert_null(strstr(d.msgs[0].text, "one"), "a secret is never in a message");
    cr_assert_null(strstr(d.msgs[0].text, "two"));
    cr_assert_null(c.auth.token);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, env_unknown_variable_is_a_warning) {
    char *envp[] = {"SWARMD_BOGUS=1", "SWARMD_POOLS_X=1", "SWARMDX=1", "SWARMD_HEALTH_WINDOW=10",
                    NULL};
    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(swd_config_load_env(&c, envp, &d), 0);
    cr_assert_eq(d.errors, 0);
    cr_assert_eq(d.warnings, 2);
    cr_assert_eq(d.msgs[0].level, SWD_DIAG_WARNING);
    cr_assert(starts_with(d.msgs[0].text, "environment: SWARMD_BOGUS: unknown variable"), "%s",
              d.msgs[0].text);
    cr_assert(starts_with(d.msgs[1].text, "environment: SWARMD_POOLS_X: pools cannot"), "%s",
              d.msgs[1].text);
    cr_assert_eq(c.health.window, 10);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, env_bad_values) {
    char *envp[] = {"SWARMD_AGENTS_HEARTBEAT_MS=soon", "SWARMD_LISTEN=nowhere",
                    "SWARMD_LOG_RING=-1", NULL};
    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(swd_config_load_env(&c, envp, &d), SWD_ECONFIG);
    cr_assert_eq(d.errors, 3);
    cr_assert_str_eq(d.msgs[0].text, "environment: SWARMD_LISTEN: expected HOST:PORT");
    cr_assert_str_eq(d.msgs[1].text,
                     "environment: SWARMD_AGENTS_HEARTBEAT_MS: expected an integer, got \"soon\"");
    cr_assert_str_eq(d.msgs[2].text,
                     "environment: SWARMD_LOG_RING: must be between 0 and 10000000, got -1");
    cr_assert_eq(c.agents.heartbeat_ms, 5000);
    cr_assert_str_eq(c.listen.rpc, "127.0.0.1:7420");
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Flags

Test(config, flags) {
    cr_assert_str_eq(swd_config_flag_key("--listen"), "listen.rpc");
    cr_assert_str_eq(swd_config_flag_key("http"), "listen.http");
    cr_assert_str_eq(swd_config_flag_key("--unix"), "listen.unix");
    cr_assert_str_eq(swd_config_flag_key("--log-level"), "log.level");
    cr_assert_null(swd_config_flag_key("--config"));

    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(swd_config_set(&c, "listen.rpc", "127.0.0.1:0", SWD_CONFIG_FLAG, &d), 0);
    cr_assert_str_eq(swd_config_source(&c, "listen.rpc"), "flag");
    cr_assert_eq(swd_config_set(&c, "listen.rpc", "bad", SWD_CONFIG_FLAG, &d), SWD_ECONFIG);
    cr_assert_eq(swd_config_set(&c, "log.level", "chatty", SWD_CONFIG_FLAG, &d), SWD_ECONFIG);
    cr_assert_eq(d.errors, 2);
    cr_assert_str_eq(d.msgs[0].text, "--listen: expected HOST:PORT");
    cr_assert(starts_with(d.msgs[1].text, "--log-level: must be one of"), "%s", d.msgs[1].text);
    cr_assert_str_eq(c.listen.rpc, "127.0.0.1:0", "a failed set keeps the old value");
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Printing

Test(config, print_round_trip) {
    swd_config_t a;
    swd_config_t b;
    swd_diag_t d;
    char *path;
    swd_config_init(&a);
    swd_config_init(&b);
    swd_diag_init(&d);
    // The good file without its secrets (they print as "***").
    const char *cut = strstr(good_yaml, "auth:");
    const char *resume = strstr(good_yaml, "limits:");
    const char *headers = strstr(good_yaml, "    headers:");
    const char *after_headers = strstr(good_yaml, "    rpm:");
    char *yaml = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&yaml, &len);
    fprintf(f, "%.*s%.*s%s", (int)(cut - good_yaml), good_yaml, (int)(headers - resume), resume,
            after_headers);
    fclose(f);
    cr_assert_eq(load_text(&a, yaml, &d, &path), 0);
    drop_temp(path);
    free(yaml);
    cr_assert_eq(swd_config_set(&a, "listen.unix", "/tmp/odd \"name\"\t\\x", SWD_CONFIG_FLAG, &d),
                 0);
    cr_assert_eq(swd_config_set(&a, "listen.http", "", SWD_CONFIG_FLAG, &d), 0);
    cr_assert_null(a.listen.http);

    char *text = print_to_string(&a);
    cr_assert_eq(load_text(&b, text, &d, &path), 0, "printed config does not load:\n%s", text);
    dump_diag(&d);
    cr_assert_eq(d.n, 0);
    assert_same_config(&a, &b);
    drop_temp(path);
    free(text);

    // An empty pool list and default config round-trip too.
    swd_config_t e;
    swd_config_t e2;
    swd_config_init(&e);
    swd_config_init(&e2);
    text = print_to_string(&e);
    cr_assert(strstr(text, "pools: []") != NULL);
    cr_assert_eq(load_text(&e2, text, &d, &path), 0);
    assert_same_config(&e, &e2);
    drop_temp(path);
    free(text);
    swd_config_close(&e);
    swd_config_close(&e2);

    swd_diag_close(&d);
    swd_config_close(&a);
    swd_config_close(&b);
    ASSERT_NO_LEAKS();
}

Test(config, print_hides_secrets) {
    swd_config_t c;
    swd_diag_t d;
    char *path;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(load_text(&c, good_yaml, &d, &path), 0);
    char *envp[] = {"SWARMD_AGENT_TOKEN=env-agent-secret", NULL};
    cr_assert_eq(swd_config_load_env(&c, envp, &d), 0);
    char *text = print_to_string(&c);
    cr_assert_null(strstr(text, "s3cret-client"), "%s", text);
    cr_assert_null(strstr(text, "env-agent-secret"), "%s", text);
    cr_assert_null(strstr(text, "OPENAI_API_KEY"), "%s", text);
    cr_assert_null(strstr(text, "Bearer"), "%s", text);
    cr_assert(strstr(text, "token: \"***\"") != NULL, "%s", text);
    cr_assert(strstr(text, "agent_token: \"***\"") != NULL, "%s", text);
    cr_assert(strstr(text, "{\"Authorization\": \"***\"}") != NULL, "%s", text);
    // The printed form still loads: the daemon can be given it back.
    swd_config_t c2;
    char *path2;
    swd_config_init(&c2);
    cr_assert_eq(load_text(&c2, text, &d, &path2), 0);
    cr_assert_str_eq(c2.auth.token, "***");
    // get gives the real value: it serves backup and restore.
    assert_get(&c, "auth.token", "s3cret-client");
    drop_temp(path);
    drop_temp(path2);
    free(text);
    swd_diag_close(&d);
    swd_config_close(&c);
    swd_config_close(&c2);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// set, get, backup, restore, hooks

Test(config, set_and_get) {
    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert(swd_config_has_key("agents.heartbeat_ms"));
    cr_assert_not(swd_config_has_key("agents.heartbeat"));
    cr_assert_eq(swd_config_set(&c, "limits.max_message_bytes", "2 MiB", SWD_CONFIG_RUNTIME, &d),
                 0);
    cr_assert_eq(c.limits.max_message_bytes, 2097152);
    assert_get(&c, "limits.max_message_bytes", "2097152");
    assert_get(&c, "log.level", "info");
    assert_get(&c, "listen.unix", "");
    cr_assert_eq(swd_config_set(&c, "nope.key", "1", SWD_CONFIG_RUNTIME, &d), SWD_ENOTFOUND);
    cr_assert_str_eq(d.msgs[0].text, "nope.key: unknown key");
    char small[4];
    cr_assert_eq(swd_config_get(&c, "listen.rpc", small, sizeof small), SWD_EOVERFLOW);
    cr_assert_eq(swd_config_get(&c, "nope", small, sizeof small), SWD_ENOTFOUND);
    cr_assert_null(swd_config_source(&c, "nope"));
    cr_assert_str_eq(swd_config_source(&c, "limits.max_message_bytes"), "runtime");
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, pool_keys_by_path) {
    swd_config_t c;
    swd_diag_t d;
    char *path;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(load_text(&c, good_yaml, &d, &path), 0);
    assert_get(&c, "pools.llm.max_concurrency", "16");
    cr_assert_str_eq(swd_config_source(&c, "pools.llm.max_concurrency"), "file");
    cr_assert_str_eq(swd_config_source(&c, "pools.llm.timeout_ms"), "default");
    cr_assert_eq(swd_config_set(&c, "pools.llm.max_concurrency", "24", SWD_CONFIG_RUNTIME, &d), 0);
    cr_assert_eq(swd_config_find_pool(&c, "llm")->max_concurrency, 24);
    assert_get(&c, "pools.local.command", "[\"swarm-agent\", \"--stdio\", \"--sim\"]");
    cr_assert_eq(
        swd_config_set(&c, "pools.remote-a.capabilities", "[a, \"b c\"]", SWD_CONFIG_RUNTIME, &d),
        0);
    const swd_pool_config_t *p = swd_config_find_pool(&c, "remote-a");
    cr_assert_eq(p->capabilities.n, 2);
    cr_assert_str_eq(p->capabilities.items[1], "b c");
    assert_get(&c, "pools.llm.temperature", "0.2");
    cr_assert_eq(swd_config_set(&c, "pools.llm.temperature", "", SWD_CONFIG_RUNTIME, &d), 0);
    cr_assert(isnan(swd_config_find_pool(&c, "llm")->http.temperature));
    cr_assert_eq(d.n, 0);
    cr_assert_eq(swd_config_set(&c, "pools.llm.max_concurrency", "0", SWD_CONFIG_RUNTIME, &d),
                 SWD_ECONFIG);
    cr_assert_eq(swd_config_set(&c, "pools.local.endpoint", "http://x/", SWD_CONFIG_RUNTIME, &d),
                 SWD_ENOTFOUND);
    cr_assert_eq(swd_config_set(&c, "pools.nope.max", "3", SWD_CONFIG_RUNTIME, &d), SWD_ENOTFOUND);
    cr_assert_eq(swd_config_set(&c, "pools.llm.name", "x", SWD_CONFIG_RUNTIME, &d), SWD_ECONFIG);
    cr_assert_eq(swd_config_set(&c, "pools.local.command", "[", SWD_CONFIG_RUNTIME, &d),
                 SWD_ECONFIG);
    cr_assert_eq(d.errors, 5);
    cr_assert_eq(swd_config_find_pool(&c, "llm")->max_concurrency, 24);
    drop_temp(path);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

typedef struct hook_log {
    int calls;
    char old_value[64];
    char new_value[64];
    int fail_with;
} hook_log_t;

static int record_hook(swd_config_t *c, const char *key, const char *old_value,
                       const char *new_value, void *data) {
    hook_log_t *h = data;
    h->calls++;
    snprintf(h->old_value, sizeof h->old_value, "%s", old_value);
    snprintf(h->new_value, sizeof h->new_value, "%s", new_value);
    return h->fail_with;
}

Test(config, backup_set_restore) {
    swd_config_t c;
    swd_config_init(&c);
    swd_config_value_t saved;
    cr_assert_eq(swd_config_backup(&c, "agents.heartbeat_ms", &saved), 0);
    cr_assert_str_eq(saved.text, "5000");
    cr_assert_eq(saved.source, SWD_CONFIG_DEFAULT);
    cr_assert_eq(swd_config_set(&c, "agents.heartbeat_ms", "1000", SWD_CONFIG_RUNTIME, NULL), 0);
    cr_assert_eq(c.agents.heartbeat_ms, 1000);
    cr_assert_eq(swd_config_restore(&c, "agents.heartbeat_ms", &saved), 0);
    cr_assert_eq(c.agents.heartbeat_ms, 5000);
    cr_assert_str_eq(swd_config_source(&c, "agents.heartbeat_ms"), "default");
    swd_config_value_free(&saved);
    cr_assert_eq(swd_config_backup(&c, "nope", &saved), SWD_ENOTFOUND);

    // A secret and a none value survive the trip.
    cr_assert_eq(swd_config_set(&c, "auth.token", "t0k\"en", SWD_CONFIG_RUNTIME, NULL), 0);
    cr_assert_eq(swd_config_backup(&c, "auth.token", &saved), 0);
    cr_assert_eq(swd_config_set(&c, "auth.token", "", SWD_CONFIG_RUNTIME, NULL), 0);
    cr_assert_null(c.auth.token);
    cr_assert_eq(swd_config_restore(&c, "auth.token", &saved), 0);
    cr_assert_str_eq(c.auth.token, "t0k\"en");
    swd_config_value_free(&saved);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, apply_hook_sees_old_and_new) {
    swd_config_t c;
    swd_config_init(&c);
    hook_log_t h = {0};
    hook_log_t all = {0};
    cr_assert_eq(swd_config_on_change(&c, "scheduler.aging_ms", record_hook, &h), 0);
    cr_assert_eq(swd_config_on_change(&c, NULL, record_hook, &all), 0);
    cr_assert_eq(swd_config_on_change(&c, "no.such", record_hook, &h), SWD_ENOTFOUND);
    cr_assert_eq(swd_config_set(&c, "scheduler.aging_ms", "2000", SWD_CONFIG_RUNTIME, NULL), 0);
    cr_assert_eq(h.calls, 1);
    cr_assert_str_eq(h.old_value, "10000");
    cr_assert_str_eq(h.new_value, "2000");
    cr_assert_eq(swd_config_set(&c, "scheduler.aging_ms", "2000", SWD_CONFIG_RUNTIME, NULL), 0);
    cr_assert_eq(h.calls, 1, "an unchanged value runs no hook");
    cr_assert_eq(swd_config_set(&c, "health.window", "7", SWD_CONFIG_RUNTIME, NULL), 0);
    cr_assert_eq(h.calls, 1);
    cr_assert_eq(all.calls, 2, "a NULL key hook sees every key");
    cr_assert_eq(swd_config_off_change(&c, "scheduler.aging_ms", record_hook, &h), 0);
    cr_assert_eq(swd_config_off_change(&c, "scheduler.aging_ms", record_hook, &h), SWD_ENOTFOUND);
    cr_assert_eq(swd_config_set(&c, "scheduler.aging_ms", "3000", SWD_CONFIG_RUNTIME, NULL), 0);
    cr_assert_eq(h.calls, 1);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, failing_hook_restores_old_value) {
    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    hook_log_t first = {0};
    hook_log_t failing = {.fail_with = SWD_ESTATE};
    cr_assert_eq(swd_config_on_change(&c, "scheduler.backoff_max_ms", record_hook, &first), 0);
    cr_assert_eq(swd_config_on_change(&c, "scheduler.backoff_max_ms", record_hook, &failing), 0);
    int rc = swd_config_set(&c, "scheduler.backoff_max_ms", "9000", SWD_CONFIG_RUNTIME, &d);
    cr_assert_eq(rc, SWD_ESTATE);
    cr_assert_eq(c.scheduler.backoff_max_ms, 30000, "the old value is back");
    cr_assert_str_eq(swd_config_source(&c, "scheduler.backoff_max_ms"), "default");
    cr_assert_eq(failing.calls, 1);
    cr_assert_eq(first.calls, 2, "the hook that took the change is told to undo it");
    cr_assert_str_eq(first.old_value, "9000");
    cr_assert_str_eq(first.new_value, "30000");
    cr_assert_eq(d.errors, 1);
    cr_assert(starts_with(d.msgs[0].text, "scheduler.backoff_max_ms: the new value could not"),
              "%s", d.msgs[0].text);

    // Rollback through restore takes the same path: a failing hook keeps the
    // value that was there before the restore.
    swd_config_value_t saved;
    failing.fail_with = 0;
    cr_assert_eq(swd_config_backup(&c, "scheduler.backoff_max_ms", &saved), 0);
    cr_assert_eq(swd_config_set(&c, "scheduler.backoff_max_ms", "9000", SWD_CONFIG_RUNTIME, &d), 0);
    failing.fail_with = SWD_ESTATE;
    cr_assert_eq(swd_config_restore(&c, "scheduler.backoff_max_ms", &saved), SWD_ESTATE);
    cr_assert_eq(c.scheduler.backoff_max_ms, 9000);
    failing.fail_with = 0;
    cr_assert_eq(swd_config_restore(&c, "scheduler.backoff_max_ms", &saved), 0);
    cr_assert_eq(c.scheduler.backoff_max_ms, 30000);
    swd_config_value_free(&saved);
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Relations between keys

Test(config, validate_relations) {
    swd_config_t c;
    swd_diag_t d;
    swd_config_init(&c);
    swd_diag_init(&d);
    cr_assert_eq(swd_config_set(&c, "agents.degraded_after", "5", SWD_CONFIG_RUNTIME, &d), 0);
    cr_assert_eq(swd_config_set(&c, "scheduler.backoff_base_ms", "60000", SWD_CONFIG_RUNTIME, &d),
                 0);
    cr_assert_eq(swd_config_set(&c, "listen.http", "127.0.0.1:7420", SWD_CONFIG_RUNTIME, &d), 0);
    cr_assert_eq(swd_config_validate(&c, &d), SWD_ECONFIG);
    cr_assert_eq(d.errors, 3);
    cr_assert(starts_with(d.msgs[0].text, "agents.degraded_after: must not exceed"));
    cr_assert(starts_with(d.msgs[1].text, "scheduler.backoff_base_ms: must not exceed"));
    cr_assert(starts_with(d.msgs[2].text, "listen.http: the same address"));
    swd_diag_close(&d);
    swd_config_close(&c);
    ASSERT_NO_LEAKS();
}

Test(config, diag_print) {
    swd_diag_t d;
    swd_diag_init(&d);
    swd_diag_add(&d, SWD_DIAG_ERROR, "f.yaml:3: agents.x: %s", "unknown key");
    swd_diag_add(&d, SWD_DIAG_WARNING, "environment: SWARMD_Y: unknown variable, ignored");
    swd_diag_add(NULL, SWD_DIAG_ERROR, "dropped");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    swd_diag_print(&d, f);
    fclose(f);
    cr_assert_str_eq(text, "f.yaml:3: agents.x: unknown key\n"
                           "warning: environment: SWARMD_Y: unknown variable, ignored\n");
    cr_assert_eq(d.errors, 1);
    cr_assert_eq(d.warnings, 1);
    free(text);
    swd_diag_close(&d);
    ASSERT_NO_LEAKS();
}
