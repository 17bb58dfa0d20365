#include <time.h>

#include "runtime/clock.h"

#define TIMER_OF(n) ((swd_timer_t *)((char *)(n)-offsetof(swd_timer_t, node)))

static int64_t realtime_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Fires every timer due by now that was started before this run began, so
// a callback that restarts its timer with 0 runs again on the next turn
// instead of spinning here.
static void run_due(swd_clock_t *c) {
    uint64_t limit = c->next_seq;
    int64_t now = swd_clock_now(c);
    for (;;) {
        swd_heap_node_t *n = swd_heap_top(&c->timers);
        if (n == NULL) {
            break;
        }
        swd_timer_t *t = TIMER_OF(n);
        if (t->due_ms > now || t->seq >= limit) {
            break;
        }
        swd_heap_remove(&c->timers, n);
        t->cb(t);
    }
}

static void on_uv_timer(uv_timer_t *h);
static void on_uv_idle(uv_idle_t *h);

static void rearm(swd_clock_t *c) {
    if (c->is_virtual || c->closing) {
        return;
    }
    int64_t due = swd_clock_next_due(c);
    if (due < 0) {
        uv_timer_stop(&c->uv_timer);
        return;
    }
    int64_t wait = due - swd_clock_now(c);
    if (wait <= 0) {
        // Due now: libuv 1.44 would fire a 0 ms timer restarted from a timer
        // callback again in the same pass, before any I/O is polled. An idle
        // handle runs on the next loop turn, after the poll (which it makes
        // non-blocking), which is what "on the next turn" promises.
        uv_timer_stop(&c->uv_timer);
        uv_idle_start(&c->uv_idle, on_uv_idle);
        return;
    }
    uv_timer_start(&c->uv_timer, on_uv_timer, (uint64_t)wait, 0);
}

static void on_uv_timer(uv_timer_t *h) {
    swd_clock_t *c = h->data;
    run_due(c);
    rearm(c);
}

static void on_uv_idle(uv_idle_t *h) {
    swd_clock_t *c = h->data;
    uv_idle_stop(h);
    run_due(c);
    rearm(c);
}

int swd_clock_init_real(swd_clock_t *c, uv_loop_t *loop) {
    swd_heap_init(&c->timers);
    c->next_seq = 0;
    c->is_virtual = false;
    c->now_ms = 0;
    c->loop = loop;
    c->closing = false;
    uv_update_time(loop);
    c->wall_delta = realtime_ms() - (int64_t)uv_now(loop);
    int r = uv_timer_init(loop, &c->uv_timer);
    c->uv_timer.data = c;
    if (r == 0) {
        r = uv_idle_init(loop, &c->uv_idle);
        c->uv_idle.data = c;
    }
    return r;
}

void swd_clock_init_virtual(swd_clock_t *c, int64_t start_wall_ms) {
    swd_heap_init(&c->timers);
    c->next_seq = 0;
    c->is_virtual = true;
    c->now_ms = 0;
    c->wall_delta = start_wall_ms;
    c->loop = NULL;
    c->closing = false;
}

void swd_clock_close(swd_clock_t *c) {
    while (swd_heap_pop(&c->timers) != NULL) {
    }
    swd_heap_close(&c->timers);
    c->closing = true;
    if (!c->is_virtual && !uv_is_closing((uv_handle_t *)&c->uv_timer)) {
        uv_close((uv_handle_t *)&c->uv_timer, NULL);
        uv_close((uv_handle_t *)&c->uv_idle, NULL);
    }
}

int64_t swd_clock_now(const swd_clock_t *c) {
    return c->is_virtual ? c->now_ms : (int64_t)uv_now(c->loop);
}

int64_t swd_clock_wall(const swd_clock_t *c) {
    return swd_clock_now(c) + c->wall_delta;
}

int64_t swd_clock_next_due(const swd_clock_t *c) {
    swd_heap_node_t *n = swd_heap_top(&c->timers);
    return n ? TIMER_OF(n)->due_ms : -1;
}

void swd_clock_advance(swd_clock_t *c, int64_t ms) {
    int64_t target = c->now_ms + ms;
    for (;;) {
        int64_t due = swd_clock_next_due(c);
        if (due < 0 || due > target) {
            break;
        }
        if (due > c->now_ms) {
            c->now_ms = due;
        }
        run_due(c);
    }
    c->now_ms = target;
}

bool swd_clock_step(swd_clock_t *c) {
    int64_t due = swd_clock_next_due(c);
    if (due < 0) {
        return false;
    }
    if (due > c->now_ms) {
        c->now_ms = due;
    }
    run_due(c);
    return true;
}

void swd_timer_init(swd_clock_t *c, swd_timer_t *t, swd_timer_cb cb, void *data) {
    swd_heap_node_init(&t->node);
    t->due_ms = 0;
    t->seq = 0;
    t->clock = c;
    t->cb = cb;
    t->data = data;
}

void swd_timer_start(swd_timer_t *t, int64_t timeout_ms) {
    swd_clock_t *c = t->clock;
    if (c->closing) {
        return;
    }
    swd_heap_remove(&c->timers, &t->node);
    t->due_ms = swd_clock_now(c) + (timeout_ms > 0 ? timeout_ms : 0);
    t->seq = c->next_seq++;
    // Equal deadlines fire in start order.
    swd_heap_push(&c->timers, &t->node,
                  (swd_heap_key_t){.hi = swd_heap_key_i64(t->due_ms), .lo = t->seq});
    if (!c->is_virtual && swd_heap_top(&c->timers) == &t->node) {
        rearm(c);
    }
}

void swd_timer_stop(swd_timer_t *t) {
    // The uv timer may now fire early for nothing; run_due then just rearms.
    swd_heap_remove(&t->clock->timers, &t->node);
}

bool swd_timer_active(const swd_timer_t *t) {
    return swd_heap_contains(&t->node);
}
