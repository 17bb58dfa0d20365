// The one source of time. Everything that reads the time or waits for it
// goes through a swd_clock_t, so a test or a simulation can drive time
// itself (swd_clock_advance) instead of sleeping.
//
//   real clock:    uv_timer_t ──fires──▶ run due swd_timer_t's ──▶ rearm
//   virtual clock: swd_clock_advance(ms) ──▶ run due timers in order
//
// Timers are plain structs in a heap, not libuv handles: starting one is
// cheap (a task's timeout, a lease), and stopping needs no close callback.
#ifndef SWD_RUNTIME_CLOCK_H
#define SWD_RUNTIME_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/heap.h"

typedef struct swd_clock swd_clock_t;
typedef struct swd_timer swd_timer_t;
typedef void (*swd_timer_cb)(swd_timer_t *t);

struct swd_timer {
    swd_heap_node_t node;
    int64_t due_ms;
    uint64_t seq; ///< start order, so equal deadlines fire first-started first
    swd_clock_t *clock;
    swd_timer_cb cb;
    void *data; ///< the owner's, untouched by the clock
};

struct swd_clock {
    swd_heap_t timers;
    uint64_t next_seq;
    bool is_virtual;
    int64_t now_ms;     ///< virtual: the current time
    int64_t wall_delta; ///< wall time = monotonic time + wall_delta
    uv_loop_t *loop;    ///< real clock only
    uv_timer_t uv_timer;
    uv_idle_t uv_idle; ///< runs timers that are due now on the next loop turn
    bool closing;
};

/// A clock on the libuv loop's time. Close it with swd_clock_close() before
/// the loop is closed.
int swd_clock_init_real(swd_clock_t *c, uv_loop_t *loop);
/// A clock that only moves by swd_clock_advance(); wall time starts at
/// `start_wall_ms` (monotonic time starts at 0).
void swd_clock_init_virtual(swd_clock_t *c, int64_t start_wall_ms);
/// Stops every timer and releases the libuv handle (closed asynchronously).
void swd_clock_close(swd_clock_t *c);

/// Monotonic milliseconds (the loop's cached time for the real clock).
int64_t swd_clock_now(const swd_clock_t *c);
/// Milliseconds since the Unix epoch, consistent with swd_clock_now().
int64_t swd_clock_wall(const swd_clock_t *c);

/// Virtual clock: moves time forward by `ms`, firing due timers in order.
void swd_clock_advance(swd_clock_t *c, int64_t ms);
/// Virtual clock: jumps to the next timer and fires it; false when none.
bool swd_clock_step(swd_clock_t *c);
/// The earliest deadline, or -1 when no timer is running.
int64_t swd_clock_next_due(const swd_clock_t *c);

void swd_timer_init(swd_clock_t *c, swd_timer_t *t, swd_timer_cb cb, void *data);
/// (Re)starts `t` to fire once after `timeout_ms` (0: on the next turn).
void swd_timer_start(swd_timer_t *t, int64_t timeout_ms);
void swd_timer_stop(swd_timer_t *t);
bool swd_timer_active(const swd_timer_t *t);

#endif
