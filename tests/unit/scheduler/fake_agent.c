#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/encoder.h"
#include "tests/unit/scheduler/fake_agent.h"

static void fake_run(swd_agent_t *a, const swd_run_t *run) {
    fake_link_t *l = a->link;
    if (l->nruns == l->cap_runs) {
        l->cap_runs = l->cap_runs ? l->cap_runs * 2 : 8;
        l->runs = swd_xrealloc(l->runs, l->cap_runs * sizeof(*l->runs));
    }
    fake_run_t *r = &l->runs[l->nruns++];
    memset(r, 0, sizeof(*r));
    r->cookie = run->cookie;
    snprintf(r->task_id, sizeof(r->task_id), "%s", run->task_id);
    r->attempt = run->attempt;
    snprintf(r->type, sizeof(r->type), "%s", run->type);
    r->timeout_ms = run->timeout_ms;
    r->at_ms = swd_clock_now(l->clock);
    switch (l->mode) {
    case FAKE_ASYNC:
        break;
    case FAKE_SYNC_OK:
        fake_ok(l, r, "sync");
        break;
    case FAKE_SYNC_FAIL:
        fake_fail(l, r, "refused", true, 0);
        break;
    case FAKE_SYNC_FAIL_HARD:
        fake_fail(l, r, "refused", false, 0);
        break;
    case FAKE_SYNC_KILL:
        swd_agent_kill(a, "connection lost");
        break;
    }
}

static void fake_cancel(swd_agent_t *a, const char *task_id, uint32_t attempt) {
    fake_link_t *l = a->link;
    if (l->ncancels == l->cap_cancels) {
        l->cap_cancels = l->cap_cancels ? l->cap_cancels * 2 : 4;
        l->cancels = swd_xrealloc(l->cancels, l->cap_cancels * sizeof(*l->cancels));
    }
    fake_cancel_t *c = &l->cancels[l->ncancels++];
    snprintf(c->task_id, sizeof(c->task_id), "%s", task_id);
    c->attempt = attempt;
    if (l->cancel_kills) {
        // As the rpc transport does when the task.cancel write fails at once:
        // the connection closes, and its close hook kills the agent.
        swd_agent_kill(a, "disconnected");
    }
}

static void fake_configure(swd_agent_t *a, uint32_t max_concurrency) {
    fake_link_t *l = a->link;
    l->configured = max_concurrency;
}

static void fake_release(swd_agent_t *a) {
    fake_link_t *l = a->link;
    free(l->runs);
    free(l->cancels);
    free(l);
    a->link = NULL;
}

const swd_transport_ops_t fake_ops = {
    .name = "fake",
    .run = fake_run,
    .cancel = fake_cancel,
    .configure = fake_configure,
    .release = fake_release,
};

static void bare_run(swd_agent_t *a, const swd_run_t *run) {
}

static void bare_cancel(swd_agent_t *a, const char *task_id, uint32_t attempt) {
}

static const swd_transport_ops_t fake_bare_ops = {
    .name = "fake",
    .run = bare_run,
    .cancel = bare_cancel,
};

static swd_agent_t *add_with(swd_agents_t *reg, const char *name, const char *cap,
                             uint32_t max_concurrency, const swd_transport_ops_t *ops, void *link) {
    const char *caps[1] = {cap};
    swd_agent_spec_t spec = {
        .name = name,
        .caps = cap ? caps : NULL,
        .ncaps = cap ? 1 : 0,
        .max_concurrency = max_concurrency,
    };
    return swd_agents_add(reg, &spec, ops, link);
}

fake_link_t *fake_agent_add(swd_agents_t *reg, const swd_clock_t *clock, const char *name,
                            const char *cap, uint32_t max_concurrency) {
    fake_link_t *l = swd_xcalloc(1, sizeof(*l));
    l->clock = clock;
    // swd_agents_add may already dispatch (on the next turn, never inside),
    // so the link is complete before the agent exists.
    l->agent = add_with(reg, name, cap, max_concurrency, &fake_ops, l);
    return l;
}

swd_agent_t *fake_agent_add_bare(swd_agents_t *reg, const char *name, const char *cap,
                                 uint32_t max_concurrency) {
    return add_with(reg, name, cap, max_concurrency, &fake_bare_ops, NULL);
}

fake_link_t *fake_link_of(const swd_agent_t *a) {
    return a->link;
}

fake_run_t *fake_pending(fake_link_t *l) {
    for (size_t i = l->nruns; i > 0; i--) {
        if (!l->runs[i - 1].answered) {
            return &l->runs[i - 1];
        }
    }
    return NULL;
}

fake_run_t *fake_find(fake_link_t *l, const char *task_id, uint32_t attempt) {
    for (size_t i = 0; i < l->nruns; i++) {
        if (l->runs[i].attempt == attempt && strcmp(l->runs[i].task_id, task_id) == 0) {
            return &l->runs[i];
        }
    }
    return NULL;
}

void fake_ok_cookie(fake_link_t *l, uint64_t cookie, const char *output, uint64_t tokens) {
    swd_buf_t out;
    swd_buf_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, swd_buf_write_cb);
    swd_pack_str(&pk, output);
    swd_outcome_t o = {
        .ok = true,
        .output = out.data,
        .output_len = out.len,
        .tokens_used = tokens,
    };
    swd_agent_complete(l->agent, cookie, &o);
    swd_buf_close(&out);
}

void fake_ok(fake_link_t *l, fake_run_t *r, const char *output) {
    // The answer may free or move nothing of ours, but mark first anyway:
    // completing can start the next attempt, which grows `runs`.
    r->answered = true;
    fake_ok_cookie(l, r->cookie, output, 10);
}

void fake_fail(fake_link_t *l, fake_run_t *r, const char *code, bool retryable,
               int64_t retry_after_ms) {
    r->answered = true;
    uint64_t cookie = r->cookie;
    swd_outcome_t o = {
        .ok = false,
        .code = code,
        .message = "scripted failure",
        .retryable = retryable,
        .retry_after_ms = retry_after_ms,
    };
    swd_agent_complete(l->agent, cookie, &o);
}
