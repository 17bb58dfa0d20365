// The `http` transport (DESIGN.md §6): a pool of kind `http` is one agent,
// named after the pool, whose tasks are HTTP POSTs to the pool's endpoint —
// an OpenAI-compatible chat completions server (llama.cpp, vLLM, Ollama, a
// hosted API) or any JSON endpoint. Requests run on libcurl's multi
// interface on the daemon's loop (runtime/curl_loop.h): no threads, kept-
// alive connections reused across tasks, HTTP/2 where an https server
// offers it. The agent has `max_concurrency` slots, so the scheduler never
// has more requests in flight than that.
//
//   scheduler ─run─▶ request body (format openai | raw) ─▶ easy handle
//       ▲            └─▶ rpm/tpm buckets charged; empty ─▶ agent cooldown
//       │                (reason "quota"): tasks stay queued until refill
//       │                                   │
//       └─complete─ outcome ◀─ status, body ◀┘ curl multi on the loop
//            2xx: output + usage.total_tokens (tpm corrected by usage)
//            429/503: retryable, retry_after_ms from Retry-After
//            other 5xx, refused/reset, timeout: retryable
//            other 4xx: not retryable, the server's error message
//            body over limits.max_message_bytes: too_large
//
// Header values (and the endpoint and model) may name `${VAR}` or
// `${VAR:-default}`; they are expanded from the environment when the pool
// starts and kept only in memory: never logged, printed or reported (the
// agent's labels carry the configured, unexpanded text).
#ifndef SWD_AGENTS_HTTP_AGENT_H
#define SWD_AGENTS_HTTP_AGENT_H

#include <stdint.h>
#include <uv.h>

#include "agents/agent.h"
#include "runtime/clock.h"
#include "runtime/config.h"

typedef struct swd_http_pool swd_http_pool_t;

typedef struct swd_http_pool_opts {
    uv_loop_t *loop;
    swd_clock_t *clock; ///< a real clock on `loop`
    swd_agents_t *agents;
    const swd_pool_config_t *cfg; ///< borrowed: must outlive the pool
    int64_t max_body_bytes;       ///< limits.max_message_bytes: larger answers are too_large
} swd_http_pool_opts_t;

/// What one http pool did since it started.
typedef struct swd_http_pool_stats {
    uint64_t requests;         ///< requests handed to curl
    uint64_t succeeded;        ///< 2xx answers turned into an output
    uint64_t rate_limited;     ///< 429 answers
    uint64_t unavailable;      ///< 503 answers
    uint64_t server_errors;    ///< other 5xx answers
    uint64_t client_errors;    ///< other 4xx answers (not retried)
    uint64_t timeouts;         ///< requests past the pool's timeout_ms
    uint64_t transport_errors; ///< refused, reset, DNS, ... (no answer)
    uint64_t bad_responses;    ///< 2xx answers that could not be read
    uint64_t too_large;        ///< answers over limits.max_message_bytes
    uint64_t cancelled;        ///< requests stopped by the scheduler
    uint64_t connections;      ///< connections opened; the other requests reused one
    uint64_t usage_missing;    ///< openai answers without usage: tokens_used = estimate
    uint64_t quota_waits;      ///< times the pool paused for its rpm/tpm quota
    int64_t quota_wait_ms;     ///< time paused, summed
} swd_http_pool_stats_t;

/// Checks what only the environment at start can tell: every `${VAR}` in
/// the pool's endpoint, model and header values is set or has a default.
/// 0, or SWD_ECONFIG with the reason (a variable's name, never a value) in
/// `err`.
int swd_http_pool_check(const swd_pool_config_t *cfg, char *err, size_t errlen);
/// Starts the pool: expands its settings, registers its agent. NULL with
/// the reason in `err` when swd_http_pool_check() fails.
swd_http_pool_t *swd_http_pool_new(const swd_http_pool_opts_t *o, char *err, size_t errlen);
const char *swd_http_pool_name(const swd_http_pool_t *hp);
void swd_http_pool_stats(const swd_http_pool_t *hp, swd_http_pool_stats_t *out);
/// Stops every request (the attempts stay the scheduler's to settle),
/// closes the connections and releases the pool; its agent stays listed
/// until the registry is closed and answers nothing more. Call before the
/// registry and the clock are closed; the loop must run on for the socket
/// handles to close. NULL is a no-op.
void swd_http_pool_free(swd_http_pool_t *hp);

#endif
