#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/encoder.h"
#include "runtime/bus.h"

struct swd_bus_sub {
    unsigned mask;
    swd_bus_cb cb;
    void *data;
    bool removed;
    swd_bus_sub_t *next;
};

static const char *const topic_names[SWD_TOPIC_COUNT] = {
    "task", "agent", "log", "tuner", "healing", "scaling",
};

const char *swd_topic_name(swd_topic_t t) {
    return (unsigned)t < SWD_TOPIC_COUNT ? topic_names[t] : "?";
}

int swd_topic_parse(const char *name, size_t len) {
    for (int i = 0; i < SWD_TOPIC_COUNT; i++) {
        if (strlen(topic_names[i]) == len && memcmp(topic_names[i], name, len) == 0) {
            return i;
        }
    }
    return -1;
}

void swd_bus_init(swd_bus_t *b) {
    memset(b, 0, sizeof(*b));
}

static void sweep(swd_bus_t *b) {
    swd_bus_sub_t **pp = &b->subs;
    while (*pp != NULL) {
        swd_bus_sub_t *s = *pp;
        if (s->removed) {
            *pp = s->next;
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

void swd_bus_close(swd_bus_t *b) {
    for (swd_bus_sub_t *s = b->subs; s != NULL; s = s->next) {
        s->removed = true;
    }
    sweep(b);
}

swd_bus_sub_t *swd_bus_subscribe(swd_bus_t *b, unsigned mask, swd_bus_cb cb, void *data) {
    swd_bus_sub_t *s = swd_xcalloc(1, sizeof(*s));
    s->mask = mask;
    s->cb = cb;
    s->data = data;
    // Appended, so subscribers see events in the order they subscribed.
    swd_bus_sub_t **pp = &b->subs;
    while (*pp != NULL) {
        pp = &(*pp)->next;
    }
    *pp = s;
    return s;
}

void swd_bus_unsubscribe(swd_bus_t *b, swd_bus_sub_t *s) {
    if (s == NULL) {
        return;
    }
    s->removed = true;
    if (b->publishing == 0) {
        sweep(b);
    }
}

void swd_bus_publish(swd_bus_t *b, const swd_event_t *ev) {
    b->published[ev->topic]++;
    b->publishing++;
    for (swd_bus_sub_t *s = b->subs; s != NULL; s = s->next) {
        if (!s->removed && (s->mask & SWD_TOPIC_BIT(ev->topic))) {
            s->cb(ev, s->data);
        }
    }
    if (--b->publishing == 0) {
        sweep(b);
    }
}

void swd_event_pack(const swd_event_t *ev, msgpack_packer *pk) {
    msgpack_pack_map(pk, 4);
    swd_pack_kv_str(pk, "topic", swd_topic_name(ev->topic));
    swd_pack_kv_str(pk, "event", ev->event);
    swd_pack_kv_i64(pk, "ts", ev->ts);
    swd_pack_str(pk, "data");
    if (ev->pack != NULL) {
        ev->pack(ev, pk);
    } else {
        msgpack_pack_nil(pk);
    }
}
