#include <stdlib.h>
#include <string.h>

#include "agents/sim_agent.h"
#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/encoder.h"

// One attempt in progress: a timer until its answer.
typedef struct sim_call {
    struct sim_link *link;
    swd_timer_t timer;
    uint64_t cookie;
    char task_id[24];
    uint32_t attempt;
    char type[64];
    swd_sim_outcome_t outcome;
    struct sim_call *prev, *next;
} sim_call_t;

typedef struct sim_link {
    swd_sim_t sim;
    swd_clock_t *clock;
    swd_agent_t *agent;
    sim_call_t *calls;
    uint32_t inflight;
    swd_timer_t crash; // a crash happens on the next turn, not inside run()
} sim_link_t;

static void call_unlink(sim_link_t *l, sim_call_t *c) {
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        l->calls = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    swd_timer_stop(&c->timer);
    l->inflight--;
    free(c);
}

static void on_answer(swd_timer_t *t) {
    sim_call_t *c = t->data;
    sim_link_t *l = c->link;
    swd_outcome_t o = {0};
    swd_buf_t out;
    swd_buf_init(&out);
    if (c->outcome.kind == SWD_SIM_OK) {
        char text[128];
        swd_sim_output(&l->sim, c->type, strlen(c->type), c->outcome.tokens_used, text,
                       sizeof(text));
        msgpack_packer pk;
        msgpack_packer_init(&pk, &out, swd_buf_write_cb);
        swd_pack_str(&pk, text);
        o.ok = true;
        o.output = out.data;
        o.output_len = out.len;
        o.tokens_used = c->outcome.tokens_used;
    } else {
        o.code = c->outcome.error;
        o.message = c->outcome.message;
        o.retryable = c->outcome.retryable;
        o.retry_after_ms = (int64_t)c->outcome.retry_after_ms;
    }
    uint64_t cookie = c->cookie;
    swd_agent_t *a = l->agent;
    call_unlink(l, c);
    swd_agent_complete(a, cookie, &o);
    swd_buf_close(&out);
}

static void on_crash(swd_timer_t *t) {
    sim_link_t *l = t->data;
    while (l->calls != NULL) {
        call_unlink(l, l->calls);
    }
    swd_agent_kill(l->agent, "crashed");
}

static void sim_run(swd_agent_t *a, const swd_run_t *run) {
    sim_link_t *l = a->link;
    if (a->dead) {
        return;
    }
    sim_call_t *c = swd_xcalloc(1, sizeof(*c));
    c->link = l;
    c->cookie = run->cookie;
    c->attempt = run->attempt;
    snprintf(c->task_id, sizeof(c->task_id), "%s", run->task_id);
    snprintf(c->type, sizeof(c->type), "%s", run->type);
    l->inflight++;
    swd_sim_plan(&l->sim, swd_clock_now(l->clock), l->inflight, run->estimated_tokens, &c->outcome);
    c->next = l->calls;
    if (l->calls) {
        l->calls->prev = c;
    }
    l->calls = c;
    swd_timer_init(l->clock, &c->timer, on_answer, c);
    switch (c->outcome.kind) {
    case SWD_SIM_HANG:
        break; // never answers: the attempt's timeout deals with it
    case SWD_SIM_CRASH:
        swd_timer_start(&l->crash, 0);
        break;
    default:
        swd_timer_start(&c->timer, c->outcome.latency_ms);
        break;
    }
}

static void sim_cancel(swd_agent_t *a, const char *task_id, uint32_t attempt) {
    sim_link_t *l = a->link;
    for (sim_call_t *c = l->calls; c != NULL; c = c->next) {
        if (c->attempt == attempt && strcmp(c->task_id, task_id) == 0) {
            call_unlink(l, c);
            return;
        }
    }
}

static void sim_release(swd_agent_t *a) {
    sim_link_t *l = a->link;
    while (l->calls != NULL) {
        call_unlink(l, l->calls);
    }
    swd_timer_stop(&l->crash);
    free(l);
}

static const swd_transport_ops_t sim_ops = {
    .name = "sim",
    .run = sim_run,
    .cancel = sim_cancel,
    .release = sim_release,
};

swd_agent_t *swd_sim_agent_add(swd_agents_t *reg, swd_clock_t *clock, const swd_agent_spec_t *spec,
                               const swd_sim_params_t *params) {
    sim_link_t *l = swd_xcalloc(1, sizeof(*l));
    l->clock = clock;
    swd_sim_init(&l->sim, params, swd_clock_now(clock));
    swd_timer_init(clock, &l->crash, on_crash, l);
    l->agent = swd_agents_add(reg, spec, &sim_ops, l);
    return l->agent;
}
