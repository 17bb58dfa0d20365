#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/encoder.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "scheduler/scheduler.h"

// A cookie names one attempt: the task's seq above, the attempt below.
#define ATTEMPT_BITS 20
#define MAX_PASS 4096 // dispatches per pass, so a huge backlog never stalls the loop

const char *const swd_task_state_names[SWD_TASK_STATE_COUNT + 1] = {
    "queued", "deferred", "running", "succeeded", "failed", "cancelled", NULL,
};
const char *const swd_priority_names[SWD_PRIO_COUNT + 1] = {
    "critical", "high", "medium", "low", NULL,
};

// One task type's queue: a FIFO per priority level. With aging, a task's
// rank is enqueued_mono + level × aging_ms (lower first), so the best task
// of the type is always one of the four heads.
struct swd_type_queue {
    swd_task_t *head[SWD_PRIO_COUNT], *tail[SWD_PRIO_COUNT];
    uint64_t len;
    swd_heap_node_t node; // in the scheduler's ready heap
    int64_t rank;         // the best head's rank
    bool blocked;         // has tasks but no agent could take one
    uint32_t type;
};

struct swd_waiter {
    swd_sched_t *sched;
    swd_task_t *task;
    swd_timer_t timer;
    swd_wait_cb cb;
    void *data;
    swd_waiter_t *prev, *next;
};

// The tasks waiting on one task (DESIGN.md §2.1 `after`).
typedef struct deps {
    swd_task_t **tasks;
    uint32_t len, cap;
} deps_t;

const swd_task_more_t swd_task_no_more;

bool swd_task_terminal(const swd_task_t *t) {
    return t->state >= SWD_TASK_SUCCEEDED;
}

const char *swd_task_id(const swd_task_t *t, char buf[SWD_ID_MAX]) {
    swd_id_format('t', t->seq, buf);
    return buf;
}

const char *swd_task_agent_id(const swd_task_t *t, char buf[SWD_ID_MAX]) {
    if (t->last_agent_seq == 0) {
        return NULL;
    }
    swd_id_format('a', t->last_agent_seq, buf);
    return buf;
}

// The task's rarely used part, allocated on the first write.
static swd_task_more_t *more_of(swd_task_t *t) {
    if (t->more == &swd_task_no_more) {
        t->more = swd_xcalloc(1, sizeof(swd_task_more_t));
    }
    return (swd_task_more_t *)t->more; // allocated here, so writable
}

#define TASK_OF_TIMER(tm) ((swd_task_t *)((char *)(tm)-offsetof(swd_task_t, timer)))

#define QUEUE_OF(n) ((swd_type_queue_t *)((char *)(n)-offsetof(swd_type_queue_t, node)))

// Ready queues come out by their best head's rank, then by type.
static swd_heap_key_t queue_key(const swd_type_queue_t *q) {
    return (swd_heap_key_t){.hi = swd_heap_key_i64(q->rank), .lo = q->type};
}

static void on_dispatch_timer(swd_timer_t *t);
static void on_retention_timer(swd_timer_t *t);

void swd_sched_init(swd_sched_t *s, swd_clock_t *clock, swd_bus_t *bus, swd_agents_t *agents,
                    const swd_sched_config_t *cfg) {
    memset(s, 0, sizeof(*s));
    s->clock = clock;
    s->bus = bus;
    s->agents = agents;
    s->cfg = *cfg;
    if (s->cfg.retain_finished_max == 0) {
        s->cfg.retain_finished_max = UINT64_MAX;
    }
    if (s->cfg.aging_ms <= 0) {
        s->cfg.aging_ms = 10000;
    }
    swd_rng_seed(&s->rng, cfg->seed);
    swd_u64map_init(&s->tasks);
    swd_strmap_init(&s->keys);
    swd_u64map_init(&s->dependents);
    swd_heap_init(&s->ready);
    swd_timer_init(clock, &s->dispatch_timer, on_dispatch_timer, s);
    swd_timer_init(clock, &s->retention_timer, on_retention_timer, s);
    s->next_seq = 1;
}

static void task_free(swd_task_t *t) {
    free(t->payload);
    if (t->more != &swd_task_no_more) {
        swd_task_more_t *m = (swd_task_more_t *)t->more;
        free(m->key);
        free(m->labels);
        free(m->result);
        free(m->error_code);
        free(m->error_message);
        free(m->after);
        free(m);
    }
    free(t);
}

static void free_waiters(swd_task_t *t) {
    while (t->more->waiters != NULL) {
        swd_task_more_t *m = more_of(t);
        swd_waiter_t *w = m->waiters;
        m->waiters = w->next;
        swd_timer_stop(&w->timer);
        free(w);
    }
}

void swd_sched_close(swd_sched_t *s) {
    swd_timer_stop(&s->dispatch_timer);
    swd_timer_stop(&s->retention_timer);
    for (swd_task_t *t = s->first; t != NULL;) {
        swd_task_t *next = t->lnext;
        swd_timer_stop(&t->timer);
        free_waiters(t);
        task_free(t);
        t = next;
    }
    for (size_t i = 0; i < s->dependents.cap; i++) {
        deps_t *d = s->dependents.slots[i].value;
        if (d != NULL) {
            free(d->tasks);
            free(d);
        }
    }
    swd_u64map_close(&s->dependents);
    swd_u64map_close(&s->tasks);
    swd_strmap_close(&s->keys);
    swd_heap_close(&s->ready);
    free(s->queues);
    free(s->release);
}

// ---- events ----

static void pack_task_event(const swd_event_t *ev, msgpack_packer *pk) {
    swd_sched_pack_task(ev->owner, ev->subject, SWD_TASK_VIEW_EVENT, pk);
}

// The one place a task changes state: counts it and publishes it.
static void transition(swd_sched_t *s, swd_task_t *t, swd_task_state_t to, bool created) {
    swd_task_state_t from = t->state;
    if (!created) {
        s->count[from]--;
    }
    s->count[to]++;
    t->state = (uint8_t)to;
    swd_event_t ev = {
        .topic = SWD_TOPIC_TASK,
        .event = swd_task_state_names[to],
        .ts = swd_clock_wall(s->clock),
        .subject = t, // a swd_task_t
        .owner = s,
        .pack = pack_task_event,
        .prev = created ? NULL : swd_task_state_names[from],
    };
    swd_bus_publish(s->bus, &ev);
    if (swd_log_enabled(SWD_LOG_DEBUG)) {
        char id[SWD_ID_MAX];
        swd_log_debug("scheduler", created ? "task submitted" : "task state", "{s:s,s:s,s:s,s:i}",
                      "task", swd_task_id(t, id), "state", swd_task_state_names[to], "type",
                      s->agents->types[t->type].name, "attempts", (int)t->attempts);
    }
}

// ---- queues ----

static swd_type_queue_t *queue_for(swd_sched_t *s, uint32_t type) {
    if (type >= s->nqueues) {
        uint32_t n = type + 1;
        // The ready heap points into this array: take the queues out while
        // it moves, then put them back.
        swd_heap_close(&s->ready);
        swd_heap_init(&s->ready);
        s->queues = swd_xrealloc(s->queues, n * sizeof(*s->queues));
        memset(&s->queues[s->nqueues], 0, (n - s->nqueues) * sizeof(*s->queues));
        for (uint32_t i = 0; i < n; i++) {
            swd_heap_node_init(&s->queues[i].node);
            s->queues[i].type = i;
        }
        s->nqueues = n;
        for (uint32_t i = 0; i < n; i++) {
            if (s->queues[i].len > 0 && !s->queues[i].blocked) {
                swd_heap_push(&s->ready, &s->queues[i].node, queue_key(&s->queues[i]));
            }
        }
    }
    return &s->queues[type];
}

static void queue_rerank(swd_sched_t *s, swd_type_queue_t *q) {
    if (q->len == 0) {
        swd_heap_remove(&s->ready, &q->node);
        q->blocked = false;
        return;
    }
    int64_t best = INT64_MAX;
    for (int l = 0; l < SWD_PRIO_COUNT; l++) {
        if (q->head[l] != NULL) {
            int64_t r = q->head[l]->enqueued_mono + l * s->cfg.aging_ms;
            best = r < best ? r : best;
        }
    }
    q->rank = best;
    if (!q->blocked) {
        swd_heap_update(&s->ready, &q->node, queue_key(q));
    }
}

static void schedule_pass(swd_sched_t *s) {
    if (!s->in_pass && !swd_timer_active(&s->dispatch_timer)) {
        swd_timer_start(&s->dispatch_timer, 0);
    }
}

static void enqueue(swd_sched_t *s, swd_task_t *t) {
    swd_type_queue_t *q = queue_for(s, t->type);
    int l = t->priority;
    t->enqueued_mono = swd_clock_now(s->clock);
    t->qnext = NULL;
    t->qprev = q->tail[l];
    if (q->tail[l]) {
        q->tail[l]->qnext = t;
    } else {
        q->head[l] = t;
    }
    q->tail[l] = t;
    q->len++;
    t->in_queue = true;
    queue_rerank(s, q);
    schedule_pass(s);
}

static void dequeue(swd_sched_t *s, swd_task_t *t) {
    swd_type_queue_t *q = &s->queues[t->type];
    int l = t->priority;
    if (t->qprev) {
        t->qprev->qnext = t->qnext;
    } else {
        q->head[l] = t->qnext;
    }
    if (t->qnext) {
        t->qnext->qprev = t->qprev;
    } else {
        q->tail[l] = t->qprev;
    }
    t->qprev = t->qnext = NULL;
    t->in_queue = false;
    q->len--;
    queue_rerank(s, q);
}

static swd_task_t *queue_best(const swd_sched_t *s, const swd_type_queue_t *q) {
    swd_task_t *best = NULL;
    int64_t rank = INT64_MAX;
    for (int l = 0; l < SWD_PRIO_COUNT; l++) {
        swd_task_t *t = q->head[l];
        if (t != NULL && t->enqueued_mono + l * s->cfg.aging_ms < rank) {
            rank = t->enqueued_mono + l * s->cfg.aging_ms;
            best = t;
        }
    }
    return best;
}

// ---- attempts ----

static void on_task_timer(swd_timer_t *timer);

static void running_add(swd_agent_t *a, swd_task_t *t) {
    swd_task_t *head = a->sched;
    t->qprev = NULL;
    t->qnext = head;
    if (head) {
        head->qprev = t;
    }
    a->sched = t;
}

static void running_del(swd_agent_t *a, swd_task_t *t) {
    if (t->qprev) {
        t->qprev->qnext = t->qnext;
    } else {
        a->sched = t->qnext;
    }
    if (t->qnext) {
        t->qnext->qprev = t->qprev;
    }
    t->qprev = t->qnext = NULL;
}

static uint64_t cookie_of(const swd_task_t *t) {
    return (t->seq << ATTEMPT_BITS) | (t->attempts & ((1u << ATTEMPT_BITS) - 1));
}

static void start_attempt(swd_sched_t *s, swd_task_t *t, swd_agent_t *a) {
    t->attempts++;
    t->agent = a;
    t->last_agent_seq = a->seq;
    t->started_ms = swd_clock_wall(s->clock);
    t->attempt_mono = swd_clock_now(s->clock);
    running_add(a, t);
    swd_timer_start(&t->timer, t->timeout_ms);
    transition(s, t, SWD_TASK_RUNNING, false);
    swd_agent_started(a, t->type);
    char id[SWD_ID_MAX];
    swd_run_t run = {
        .cookie = cookie_of(t),
        .task_id = swd_task_id(t, id),
        .attempt = t->attempts,
        .type = s->agents->types[t->type].name,
        .payload = t->payload,
        .payload_len = t->payload_len,
        .timeout_ms = t->timeout_ms,
        .estimated_tokens = t->estimated_tokens,
    };
    a->ops->run(a, &run);
}

// Ends the current attempt's bookkeeping; `latency_ms` < 0 keeps it out of
// the agent's health window (lost or cancelled, not the agent's answer).
static void end_attempt(swd_sched_t *s, swd_task_t *t, bool ok, int64_t latency_ms) {
    swd_agent_t *a = t->agent;
    swd_timer_stop(&t->timer);
    t->agent = NULL;
    if (a != NULL) {
        running_del(a, t);
        if (!a->dead) {
            swd_agent_finished(a, t->type, ok, latency_ms);
        }
    }
}

static void set_error(swd_task_t *t, const char *code, const char *message) {
    if (code == NULL && t->more->error_code == NULL) {
        return; // nothing to clear: a task that never failed stays small
    }
    swd_task_more_t *m = more_of(t);
    free(m->error_code);
    free(m->error_message);
    m->error_code = code ? swd_xstrdup(code) : NULL;
    m->error_message = message ? swd_xstrdup(message) : NULL;
}

static void release_dependents(swd_sched_t *s, swd_task_t *t);
static void retire(swd_sched_t *s, swd_task_t *t);

static void notify_waiters(swd_task_t *t, bool timed_out) {
    while (t->more->waiters != NULL) {
        swd_task_more_t *m = more_of(t);
        swd_waiter_t *w = m->waiters;
        m->waiters = w->next;
        swd_timer_stop(&w->timer);
        w->cb(t, timed_out, w->data);
        free(w);
    }
}

static void finish(swd_sched_t *s, swd_task_t *t, swd_task_state_t st) {
    t->finished_ms = swd_clock_wall(s->clock);
    if (st == SWD_TASK_SUCCEEDED) {
        s->stats.succeeded++;
    } else if (st == SWD_TASK_FAILED) {
        s->stats.failed++;
    } else {
        s->stats.cancelled++;
    }
    transition(s, t, st, false);
    notify_waiters(t, false);
    release_dependents(s, t);
    retire(s, t);
}

static int64_t backoff_ms(swd_sched_t *s, uint32_t attempts) {
    int64_t cap = s->cfg.backoff_base_ms;
    for (uint32_t i = 1; i < attempts && cap < s->cfg.backoff_max_ms; i++) {
        cap *= 2;
    }
    if (cap > s->cfg.backoff_max_ms) {
        cap = s->cfg.backoff_max_ms;
    }
    // Full jitter: uniform in [0, cap].
    return cap > 0 ? (int64_t)swd_rng_below(&s->rng, (uint64_t)cap + 1) : 0;
}

// The attempt failed: try again after a backoff, or fail the task.
static void retry_or_fail(swd_sched_t *s, swd_task_t *t, bool retryable, int64_t retry_after_ms) {
    if (!retryable || t->attempts > t->max_retries) {
        finish(s, t, SWD_TASK_FAILED);
        return;
    }
    if (s->draining) {
        // No new attempts during the drain: the task waits, and is logged as
        // abandoned at exit rather than failed for something it can retry.
        transition(s, t, SWD_TASK_QUEUED, false);
        return;
    }
    s->stats.retries++;
    int64_t delay = backoff_ms(s, t->attempts);
    if (retry_after_ms > delay) {
        delay = retry_after_ms;
    }
    transition(s, t, SWD_TASK_QUEUED, false);
    if (delay <= 0) {
        enqueue(s, t);
        return;
    }
    t->in_backoff = true;
    swd_timer_start(&t->timer, delay);
}

// Tells the agent to stop an attempt that end_attempt() already closed:
// the transport may lose the agent while doing so, and the agent's loss must
// then find no attempt of this task left to fail a second time.
static void tell_cancel(swd_agent_t *a, const swd_task_t *t) {
    if (a != NULL && !a->dead && a->ops->cancel != NULL) {
        char id[SWD_ID_MAX];
        a->ops->cancel(a, swd_task_id(t, id), t->attempts);
    }
}

static void on_attempt_timeout(swd_sched_t *s, swd_task_t *t) {
    swd_agent_t *a = t->agent;
    s->stats.timeouts++;
    char id[SWD_ID_MAX], agent_id[SWD_ID_MAX];
    swd_log_info("scheduler", "attempt timed out", "{s:s,s:i,s:s,s:I}", "task", swd_task_id(t, id),
                 "attempt", (int)t->attempts, "agent", swd_task_agent_id(t, agent_id), "timeout_ms",
                 (json_int_t)t->timeout_ms);
    end_attempt(s, t, false, swd_clock_now(s->clock) - t->attempt_mono);
    tell_cancel(a, t);
    char msg[96];
    snprintf(msg, sizeof(msg), "attempt %u timed out after %lld ms", t->attempts,
             (long long)t->timeout_ms);
    set_error(t, "timeout", msg);
    retry_or_fail(s, t, true, 0);
}

static void on_task_timer(swd_timer_t *timer) {
    swd_task_t *t = TASK_OF_TIMER(timer);
    swd_sched_t *s = timer->data;
    if (t->state == SWD_TASK_RUNNING) {
        on_attempt_timeout(s, t);
    } else if (t->in_backoff) {
        t->in_backoff = false;
        enqueue(s, t);
    }
}

// ---- completion, loss ----

static swd_task_t *attempt_of(swd_sched_t *s, const swd_agent_t *a, uint64_t cookie) {
    swd_task_t *t = swd_u64map_get(&s->tasks, cookie >> ATTEMPT_BITS);
    if (t == NULL || t->state != SWD_TASK_RUNNING || t->agent != a || cookie_of(t) != cookie) {
        return NULL;
    }
    return t;
}

static void on_complete(swd_agent_t *a, uint64_t cookie, const swd_outcome_t *o, void *data) {
    swd_sched_t *s = data;
    swd_task_t *t = attempt_of(s, a, cookie);
    if (t == NULL) {
        // Fencing: only the current attempt's holder may finish the task.
        s->stats.stale++;
        swd_log_debug("scheduler", "stale answer ignored", "{s:s,s:I}", "agent", a->id, "attempt",
                      (json_int_t)(cookie & ((1u << ATTEMPT_BITS) - 1)));
        return;
    }
    int64_t latency = swd_clock_now(s->clock) - t->attempt_mono;
    end_attempt(s, t, o->ok, latency);
    t->tokens_used += o->tokens_used;
    s->stats.tokens_consumed += o->tokens_used;
    if (o->ok) {
        // A nil output is kept as no result, which reads back as nil: a
        // task whose agent returns nothing allocates nothing for it.
        bool nil = o->output_len == 1 && (uint8_t)o->output[0] == 0xc0;
        size_t len = nil ? 0 : o->output_len;
        if (len > 0 || t->more->result != NULL) {
            swd_task_more_t *m = more_of(t);
            free(m->result);
            m->result = len ? swd_xmalloc(len) : NULL;
            if (len) {
                memcpy(m->result, o->output, len);
            }
            m->result_len = (uint32_t)len;
        }
        set_error(t, NULL, NULL);
        finish(s, t, SWD_TASK_SUCCEEDED);
        return;
    }
    set_error(t, o->code, o->message);
    if (o->retry_after_ms > 0) {
        swd_agent_cooldown(a, swd_clock_wall(s->clock) + o->retry_after_ms);
    }
    retry_or_fail(s, t, o->retryable, o->retry_after_ms);
}

static void on_lost(swd_agent_t *a, void *data) {
    swd_sched_t *s = data;
    while (a->sched != NULL) {
        swd_task_t *t = a->sched;
        end_attempt(s, t, false, -1);
        set_error(t, "agent_lost", a->reason ? a->reason : "agent lost");
        retry_or_fail(s, t, true, 0);
    }
}

static void unblock(swd_sched_t *s, uint32_t type) {
    if (type < s->nqueues) {
        swd_type_queue_t *q = &s->queues[type];
        if (q->blocked) {
            q->blocked = false;
            swd_heap_update(&s->ready, &q->node, queue_key(q));
        }
    }
}

static void on_ready(swd_agent_t *a, void *data) {
    swd_sched_t *s = data;
    for (uint32_t i = 0; i < a->nslots; i++) {
        unblock(s, a->slots[i].type);
    }
    if (s->ready.len > 0) {
        schedule_pass(s);
    }
}

swd_agents_cbs_t swd_sched_agent_callbacks(swd_sched_t *s) {
    return (swd_agents_cbs_t){
        .ready = on_ready, .complete = on_complete, .lost = on_lost, .data = s};
}

// ---- dispatch ----

static void dispatch_pass(swd_sched_t *s) {
    s->in_pass = true;
    for (int n = 0; n < MAX_PASS && !s->draining; n++) {
        swd_heap_node_t *top = swd_heap_top(&s->ready);
        if (top == NULL) {
            break;
        }
        swd_type_queue_t *q = QUEUE_OF(top);
        swd_task_t *t = queue_best(s, q);
        const swd_agent_t *avoid =
            t->last_agent_seq ? swd_u64map_get(&s->agents->by_seq, t->last_agent_seq) : NULL;
        swd_agent_t *a = swd_agents_best(s->agents, q->type, avoid);
        if (a == NULL) {
            q->blocked = true;
            swd_heap_remove(&s->ready, &q->node);
            continue;
        }
        dequeue(s, t);
        start_attempt(s, t, a);
    }
    s->in_pass = false;
    if (s->ready.len > 0 && !s->draining) {
        schedule_pass(s);
    }
}

static void on_dispatch_timer(swd_timer_t *timer) {
    dispatch_pass(timer->data);
}

// ---- dependencies ----

static void add_dependent(swd_sched_t *s, uint64_t on, swd_task_t *t) {
    deps_t *d = swd_u64map_get(&s->dependents, on);
    if (d == NULL) {
        d = swd_xcalloc(1, sizeof(*d));
        swd_u64map_put(&s->dependents, on, d);
    }
    if (d->len == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 4;
        d->tasks = swd_xrealloc(d->tasks, d->cap * sizeof(*d->tasks));
    }
    d->tasks[d->len++] = t;
}

// `t` reached a terminal state: its dependents go on or fail with it.
static void release_one(swd_sched_t *s, swd_task_t *t) {
    deps_t *d = swd_u64map_del(&s->dependents, t->seq);
    if (d == NULL) {
        return;
    }
    for (uint32_t i = 0; i < d->len; i++) {
        swd_task_t *w = d->tasks[i];
        if (w->state != SWD_TASK_DEFERRED) {
            continue;
        }
        if (t->state != SWD_TASK_SUCCEEDED) {
            char msg[96], id[SWD_ID_MAX];
            snprintf(msg, sizeof(msg), "dependency %s %s", swd_task_id(t, id),
                     swd_task_state_names[t->state]);
            set_error(w, "dependency_failed", msg);
            finish(s, w, SWD_TASK_FAILED);
        } else if (--more_of(w)->unmet == 0) {
            more_of(w)->deferred_reason = NULL;
            transition(s, w, SWD_TASK_QUEUED, false);
            enqueue(s, w);
        }
    }
    free(d->tasks);
    free(d);
}

// Failing a dependent finishes it, which releases its own dependents: a
// work list instead of recursion keeps a long chain off the stack.
static void release_dependents(swd_sched_t *s, swd_task_t *t) {
    if (s->nrelease == s->release_cap) {
        s->release_cap = s->release_cap ? s->release_cap * 2 : 16;
        s->release = swd_xrealloc(s->release, s->release_cap * sizeof(*s->release));
    }
    s->release[s->nrelease++] = t;
    if (s->releasing) {
        return;
    }
    s->releasing = true;
    while (s->nrelease > 0) {
        release_one(s, s->release[--s->nrelease]);
    }
    s->releasing = false;
}

// ---- submit, find, cancel ----

bool swd_sched_has_room(const swd_sched_t *s, uint64_t n) {
    return swd_sched_backlog(s) + n <= s->cfg.max_queued;
}

uint64_t swd_sched_backlog(const swd_sched_t *s) {
    return s->count[SWD_TASK_QUEUED] + s->count[SWD_TASK_DEFERRED];
}

static void copy_object(const msgpack_object *o, char **bytes, uint32_t *len) {
    swd_buf_t b;
    swd_buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, swd_buf_write_cb);
    msgpack_pack_object(&pk, *o);
    size_t n;
    *bytes = swd_buf_steal(&b, &n);
    *len = (uint32_t)n;
}

static swd_task_t *task_new(swd_sched_t *s, const swd_task_spec_t *spec, uint32_t type) {
    swd_task_t *t = swd_xcalloc(1, sizeof(*t));
    t->seq = s->next_seq++;
    t->more = &swd_task_no_more;
    t->type = type;
    t->priority = (uint8_t)spec->priority;
    t->estimated_tokens = spec->estimated_tokens;
    t->timeout_ms = spec->timeout_ms > 0 ? spec->timeout_ms : s->cfg.default_timeout_ms;
    t->max_retries = spec->max_retries;
    t->submitted_ms = swd_clock_wall(s->clock);
    if (spec->key != NULL) {
        more_of(t)->key = swd_xstrndup(spec->key, spec->key_len);
        swd_strmap_put(&s->keys, spec->key, spec->key_len, t);
    }
    if (spec->payload != NULL) {
        copy_object(spec->payload, &t->payload, &t->payload_len);
    }
    if (spec->labels != NULL) {
        swd_task_more_t *m = more_of(t);
        copy_object(spec->labels, &m->labels, &m->labels_len);
    }
    // The timer's data is the scheduler; the task is the timer's container.
    swd_timer_init(s->clock, &t->timer, on_task_timer, s);
    t->lprev = s->last;
    if (s->last) {
        s->last->lnext = t;
    } else {
        s->first = t;
    }
    s->last = t;
    swd_u64map_put(&s->tasks, t->seq, t);
    return t;
}

// Links `t` to the unfinished tasks it must wait for; true when some are.
static bool wire_dependencies(swd_sched_t *s, swd_task_t *t, const swd_task_spec_t *spec) {
    if (spec->nafter == 0) {
        return false;
    }
    swd_task_more_t *m = more_of(t);
    m->after = swd_xmalloc(spec->nafter * sizeof(uint64_t));
    bool failed = false;
    for (uint32_t i = 0; i < spec->nafter; i++) {
        m->after[m->nafter++] = spec->after[i];
        swd_task_t *d = swd_u64map_get(&s->tasks, spec->after[i]);
        if (d == NULL || d->state == SWD_TASK_SUCCEEDED) {
            continue; // gone tasks were retained only after they finished
        }
        if (swd_task_terminal(d)) {
            failed = true;
            continue;
        }
        m->unmet++;
        add_dependent(s, d->seq, t);
    }
    if (failed) {
        m->unmet = UINT32_MAX; // released below as failed
    }
    return m->unmet > 0;
}

swd_submit_result_t swd_sched_submit(swd_sched_t *s, const swd_task_spec_t *spec,
                                     swd_task_t **out) {
    if (s->draining) {
        return SWD_SUBMIT_SHUTTING_DOWN;
    }
    if (spec->key != NULL) {
        swd_task_t *dup = swd_strmap_get(&s->keys, spec->key, spec->key_len);
        if (dup != NULL) {
            *out = dup;
            return SWD_SUBMIT_DUPLICATE;
        }
    }
    if (!swd_sched_has_room(s, 1)) {
        return SWD_SUBMIT_OVERLOADED;
    }
    int type = swd_agents_type(s->agents, spec->type, spec->type_len);
    if (type < 0) {
        return SWD_SUBMIT_TOO_MANY_TYPES;
    }
    swd_task_t *t = task_new(s, spec, (uint32_t)type);
    s->stats.submitted++;
    bool waits = wire_dependencies(s, t, spec);
    if (t->more->unmet == UINT32_MAX) {
        transition(s, t, SWD_TASK_DEFERRED, true);
        set_error(t, "dependency_failed", "a dependency had already failed");
        finish(s, t, SWD_TASK_FAILED);
    } else if (waits) {
        more_of(t)->deferred_reason = "dependencies";
        transition(s, t, SWD_TASK_DEFERRED, true);
    } else {
        transition(s, t, SWD_TASK_QUEUED, true);
        enqueue(s, t);
    }
    *out = t;
    return SWD_SUBMIT_OK;
}

swd_task_t *swd_sched_find(const swd_sched_t *s, const char *id, size_t len) {
    uint64_t seq;
    return swd_id_parse('t', id, len, &seq) ? swd_u64map_get(&s->tasks, seq) : NULL;
}

swd_task_t *swd_sched_find_key(const swd_sched_t *s, const char *key, size_t len) {
    return swd_strmap_get(&s->keys, key, len);
}

// Takes `t` out of the waiting lists of the tasks it depended on, so a
// dependency finishing later never reaches a forgotten task.
static void forget_dependencies(swd_sched_t *s, swd_task_t *t) {
    for (uint32_t i = 0; i < t->more->nafter; i++) {
        deps_t *d = swd_u64map_get(&s->dependents, t->more->after[i]);
        for (uint32_t j = 0; d != NULL && j < d->len; j++) {
            if (d->tasks[j] == t) {
                d->tasks[j] = d->tasks[--d->len];
                break;
            }
        }
    }
}

static uint64_t retained(const swd_sched_t *s) {
    return s->count[SWD_TASK_SUCCEEDED] + s->count[SWD_TASK_FAILED] + s->count[SWD_TASK_CANCELLED];
}

// Terminal tasks stay queryable for a while, then go; past the count limit
// the oldest go on the next turn, not here: whoever finished this task may
// still hold the older ones (a cascade of failed dependents does).
static void retire(swd_sched_t *s, swd_task_t *t) {
    swd_timer_stop(&t->timer);
    t->finished_mono = swd_clock_now(s->clock);
    t->qnext = NULL;
    t->qprev = s->retired_tail;
    if (s->retired_tail) {
        s->retired_tail->qnext = t;
    } else {
        s->retired_head = t;
        swd_timer_start(&s->retention_timer, s->cfg.retain_finished_ms);
    }
    s->retired_tail = t;
    if (retained(s) > s->cfg.retain_finished_max) {
        swd_timer_start(&s->retention_timer, 0);
    }
}

static void forget(swd_sched_t *s, swd_task_t *t) {
    forget_dependencies(s, t);
    swd_u64map_del(&s->tasks, t->seq);
    const char *key = t->more->key;
    if (key != NULL && swd_strmap_get(&s->keys, key, strlen(key)) == t) {
        swd_strmap_del(&s->keys, key, strlen(key));
    }
    if (t->lprev) {
        t->lprev->lnext = t->lnext;
    } else {
        s->first = t->lnext;
    }
    if (t->lnext) {
        t->lnext->lprev = t->lprev;
    } else {
        s->last = t->lprev;
    }
    s->count[t->state]--;
    task_free(t);
}

static void on_retention_timer(swd_timer_t *timer) {
    swd_sched_t *s = timer->data;
    int64_t now = swd_clock_now(s->clock);
    swd_task_t *t;
    while ((t = s->retired_head) != NULL && (now - t->finished_mono >= s->cfg.retain_finished_ms ||
                                             retained(s) > s->cfg.retain_finished_max)) {
        s->retired_head = t->qnext;
        if (s->retired_head) {
            s->retired_head->qprev = NULL;
        } else {
            s->retired_tail = NULL;
        }
        forget(s, t);
    }
    if (t != NULL) {
        swd_timer_start(&s->retention_timer, t->finished_mono + s->cfg.retain_finished_ms - now);
    }
}

bool swd_sched_cancel(swd_sched_t *s, swd_task_t *t) {
    if (swd_task_terminal(t)) {
        return false;
    }
    if (t->in_queue) {
        dequeue(s, t);
    }
    t->in_backoff = false;
    if (t->state == SWD_TASK_RUNNING) {
        swd_agent_t *a = t->agent;
        end_attempt(s, t, false, -1);
        tell_cancel(a, t);
    }
    swd_timer_stop(&t->timer);
    set_error(t, "cancelled", "cancelled by request");
    finish(s, t, SWD_TASK_CANCELLED);
    return true;
}

// ---- waiting ----

static void on_wait_timeout(swd_timer_t *timer) {
    swd_waiter_t *w = timer->data;
    swd_task_t *t = w->task;
    if (w->prev) {
        w->prev->next = w->next;
    } else {
        more_of(t)->waiters = w->next;
    }
    if (w->next) {
        w->next->prev = w->prev;
    }
    w->cb(t, true, w->data);
    free(w);
}

void swd_sched_wait(swd_sched_t *s, swd_task_t *t, int64_t timeout_ms, swd_wait_cb cb, void *data) {
    if (swd_task_terminal(t)) {
        cb(t, false, data);
        return;
    }
    swd_waiter_t *w = swd_xcalloc(1, sizeof(*w));
    w->sched = s;
    w->task = t;
    w->cb = cb;
    w->data = data;
    swd_task_more_t *m = more_of(t);
    w->next = m->waiters;
    if (m->waiters) {
        m->waiters->prev = w;
    }
    m->waiters = w;
    swd_timer_init(s->clock, &w->timer, on_wait_timeout, w);
    swd_timer_start(&w->timer, timeout_ms);
}

// ---- drain ----

static void check_drained(swd_sched_t *s) {
    if (s->draining && s->drained_cb != NULL && s->count[SWD_TASK_RUNNING] == 0) {
        void (*cb)(void *) = s->drained_cb;
        s->drained_cb = NULL;
        cb(s->drained_data);
    }
}

static void on_task_event_for_drain(const swd_event_t *ev, void *data) {
    check_drained(data);
}

void swd_sched_drain(swd_sched_t *s, void (*cb)(void *data), void *data) {
    s->draining = true;
    s->drained_cb = cb;
    s->drained_data = data;
    swd_timer_stop(&s->dispatch_timer);
    swd_bus_subscribe(s->bus, SWD_TOPIC_BIT(SWD_TOPIC_TASK), on_task_event_for_drain, s);
    check_drained(s);
}

void swd_sched_abandon(swd_sched_t *s) {
    for (swd_task_t *t = s->first; t != NULL; t = t->lnext) {
        char id[SWD_ID_MAX], agent_id[SWD_ID_MAX];
        if (t->state == SWD_TASK_RUNNING) {
            swd_log_warn("scheduler", "running task abandoned at shutdown", "{s:s,s:s}", "task",
                         swd_task_id(t, id), "agent", swd_task_agent_id(t, agent_id));
        } else if (!swd_task_terminal(t)) {
            swd_log_warn("scheduler", "abandoned", "{s:s,s:s}", "task", swd_task_id(t, id), "state",
                         swd_task_state_names[t->state]);
        }
        notify_waiters(t, true); // their connections are about to close
    }
}

// ---- wire form ----

static void pack_bytes_or_nil(msgpack_packer *pk, const char *key, const char *b, uint32_t n) {
    swd_pack_str(pk, key);
    if (b != NULL) {
        swd_pack_raw(pk, b, n);
    } else {
        msgpack_pack_nil(pk);
    }
}

static void pack_error(msgpack_packer *pk, const swd_task_more_t *m) {
    swd_pack_str(pk, "error");
    if (m->error_code == NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_map(pk, 2);
    swd_pack_kv_str(pk, "code", m->error_code);
    swd_pack_kv_str(pk, "message", m->error_message ? m->error_message : m->error_code);
}

void swd_sched_pack_task(const swd_sched_t *s, const swd_task_t *t, swd_task_view_t view,
                         msgpack_packer *pk) {
    uint32_t n = 17 + (view == SWD_TASK_VIEW_FULL ? 3 : 0) + (view == SWD_TASK_VIEW_EVENT ? 1 : 0);
    const swd_task_more_t *m = t->more;
    char id[SWD_ID_MAX];
    msgpack_pack_map(pk, n);
    swd_pack_kv_str(pk, "task_id", swd_task_id(t, id));
    swd_pack_kv_str(pk, "type", s->agents->types[t->type].name);
    swd_pack_kv_str(pk, "state", swd_task_state_names[t->state]);
    swd_pack_kv_str(pk, "priority", swd_priority_names[t->priority]);
    swd_pack_kv_u64(pk, "estimated_tokens", t->estimated_tokens);
    swd_pack_kv_u64(pk, "tokens_used", t->tokens_used);
    swd_pack_kv_u64(pk, "attempts", t->attempts);
    swd_pack_kv_u64(pk, "max_retries", t->max_retries);
    swd_pack_kv_str(pk, "agent_id", swd_task_agent_id(t, id));
    pack_error(pk, m);
    swd_pack_kv_str(pk, "deferred_reason",
                    t->state == SWD_TASK_DEFERRED ? m->deferred_reason : NULL);
    swd_pack_str(pk, "after");
    msgpack_pack_array(pk, m->nafter);
    for (uint32_t i = 0; i < m->nafter; i++) {
        swd_id_format('t', m->after[i], id);
        swd_pack_str(pk, id);
    }
    swd_pack_kv_i64(pk, "submitted_ms", t->submitted_ms);
    swd_pack_kv_ms(pk, "started_ms", t->started_ms);
    swd_pack_kv_ms(pk, "finished_ms", t->finished_ms);
    swd_pack_kv_str(pk, "key", m->key);
    swd_pack_kv_i64(pk, "timeout_ms", t->timeout_ms);
    if (view != SWD_TASK_VIEW_LIST) {
        pack_bytes_or_nil(pk, "result", m->result, m->result_len);
    }
    if (view == SWD_TASK_VIEW_FULL) {
        pack_bytes_or_nil(pk, "payload", t->payload, t->payload_len);
        swd_pack_str(pk, "labels");
        if (m->labels != NULL) {
            swd_pack_raw(pk, m->labels, m->labels_len);
        } else {
            msgpack_pack_map(pk, 0);
        }
    }
}
