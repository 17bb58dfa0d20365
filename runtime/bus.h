// The in-process event bus: every state change (task, agent, log, and later
// tuner, healing, scaling) is published here once, and everything that
// reacts to it (metrics, subscribers over RPC, controllers, the store)
// subscribes instead of being called by the code that made the change.
#ifndef SWD_RUNTIME_BUS_H
#define SWD_RUNTIME_BUS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum swd_topic {
    SWD_TOPIC_TASK,
    SWD_TOPIC_AGENT,
    SWD_TOPIC_LOG,
    SWD_TOPIC_TUNER,
    SWD_TOPIC_HEALING,
    SWD_TOPIC_SCALING,
    SWD_TOPIC_COUNT
} swd_topic_t;

#define SWD_TOPIC_BIT(t) (1u << (t))
#define SWD_TOPIC_ALL ((1u << SWD_TOPIC_COUNT) - 1)

/// The topic's wire name ("task").
const char *swd_topic_name(swd_topic_t t);
/// The topic named `name` (`len` bytes), or -1.
int swd_topic_parse(const char *name, size_t len);

/// One published change. `subject` is the changed object (a task, an agent,
/// a log record), borrowed for the duration of the callback; `pack` writes
/// it as the event's `data` for subscribers outside the process.
typedef struct swd_event {
    swd_topic_t topic;
    const char *event; ///< the new state ("running"), "registered", "record"
    int64_t ts;        ///< wall milliseconds
    const void *subject;
    const void *owner; ///< what publishes it (the scheduler for tasks), for pack
    void (*pack)(const struct swd_event *ev, msgpack_packer *pk);
    const char *prev; ///< the previous state for transitions, else NULL
} swd_event_t;

typedef void (*swd_bus_cb)(const swd_event_t *ev, void *data);
typedef struct swd_bus_sub swd_bus_sub_t;

typedef struct swd_bus {
    swd_bus_sub_t *subs;
    int publishing;
    uint64_t published[SWD_TOPIC_COUNT];
} swd_bus_t;

void swd_bus_init(swd_bus_t *b);
void swd_bus_close(swd_bus_t *b);
/// Subscribes `cb` to the topics in `mask`; safe to call from a callback.
swd_bus_sub_t *swd_bus_subscribe(swd_bus_t *b, unsigned mask, swd_bus_cb cb, void *data);
/// Ends a subscription; safe from inside a callback (it sees no further event).
void swd_bus_unsubscribe(swd_bus_t *b, swd_bus_sub_t *s);
void swd_bus_publish(swd_bus_t *b, const swd_event_t *ev);

/// Packs `{topic, event, ts, data}` for the wire.
void swd_event_pack(const swd_event_t *ev, msgpack_packer *pk);

#endif
