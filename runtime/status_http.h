// The HTTP status endpoint of DESIGN.md §3: /metrics, /status, /agents,
// /tasks/ID, /tuner, /healing, /scaling, /logs (tail and live follow),
// /healthz, /readyz and the dashboard at /. Read-only, on the daemon's loop.
#ifndef SWD_RUNTIME_STATUS_HTTP_H
#define SWD_RUNTIME_STATUS_HTTP_H

#include <stdbool.h>
#include <uv.h>

#include "runtime/metrics.h"
#include "scheduler/api.h"

typedef struct swd_status swd_status_t;

/// Serves the status of `api`'s scheduler and agents; `ready` (borrowed)
/// says whether /readyz answers 200; `metrics` (borrowed) is rendered at
/// /metrics.
swd_status_t *swd_status_new(uv_loop_t *loop, const swd_api_t *api, const bool *ready,
                             swd_metrics_t *metrics);
/// Binds `addr`; the bound address goes to `bound`. 0, or an error with the
/// reason in `err`.
int swd_status_listen(swd_status_t *s, const char *addr, char *bound, size_t cap, char *err,
                      size_t errlen);
/// Closes the listener, every connection and every log follower.
void swd_status_close(swd_status_t *s);

#endif
