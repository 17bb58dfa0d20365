#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/alloc.h"
#include "proto/errors.h"
#include "runtime/log.h"

struct swd_log_sink {
    swd_log_sink_cb cb;
    void *data;
    bool removed;
    swd_log_sink_t *next;
};

static struct {
    swd_log_level_t level;
    const swd_clock_t *clock;
    bool human;
    bool to_stderr;
    char **ring;
    size_t ring_cap;
    size_t ring_len;
    size_t ring_head; // index of the oldest record
    swd_log_sink_t *sinks;
    int publishing; // depth of sink calls, so removal during them is deferred
} g_log = {.level = SWD_LOG_INFO, .to_stderr = true, .human = true};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *swd_log_level_name(swd_log_level_t l) {
    return (unsigned)l < 4 ? level_names[l] : "?";
}

int swd_log_level_parse(const char *name, swd_log_level_t *out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (swd_log_level_t)i;
            return 0;
        }
    }
    return SWD_ECONFIG;
}

static void ring_free(void) {
    for (size_t i = 0; i < g_log.ring_len; i++) {
        free(g_log.ring[(g_log.ring_head + i) % g_log.ring_cap]);
    }
    free(g_log.ring);
    g_log.ring = NULL;
    g_log.ring_cap = g_log.ring_len = g_log.ring_head = 0;
}

void swd_log_setup(swd_log_level_t level, size_t ring, const swd_clock_t *clock, int human) {
    ring_free();
    g_log.level = level;
    g_log.clock = clock;
    g_log.human = human < 0 ? isatty(STDERR_FILENO) == 1 : human == 1;
    g_log.ring_cap = ring;
    g_log.ring = ring ? swd_xcalloc(ring, sizeof(char *)) : NULL;
}

static void sweep_sinks(void) {
    swd_log_sink_t **pp = &g_log.sinks;
    while (*pp != NULL) {
        swd_log_sink_t *s = *pp;
        if (s->removed) {
            *pp = s->next;
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

void swd_log_shutdown(void) {
    ring_free();
    for (swd_log_sink_t *s = g_log.sinks; s != NULL; s = s->next) {
        s->removed = true;
    }
    sweep_sinks();
    g_log.clock = NULL;
}

void swd_log_set_level(swd_log_level_t level) {
    g_log.level = level;
}

bool swd_log_enabled(swd_log_level_t level) {
    return level >= g_log.level;
}

void swd_log_set_stderr(bool on) {
    g_log.to_stderr = on;
}

swd_log_sink_t *swd_log_add_sink(swd_log_sink_cb cb, void *data) {
    swd_log_sink_t *s = swd_xcalloc(1, sizeof(*s));
    s->cb = cb;
    s->data = data;
    s->next = g_log.sinks;
    g_log.sinks = s;
    return s;
}

void swd_log_remove_sink(swd_log_sink_t *s) {
    s->removed = true;
    if (g_log.publishing == 0) {
        sweep_sinks();
    }
}

void swd_log_ring_last(size_t n, void (*cb)(const char *line, void *data), void *data) {
    size_t skip = g_log.ring_len > n ? g_log.ring_len - n : 0;
    for (size_t i = skip; i < g_log.ring_len; i++) {
        cb(g_log.ring[(g_log.ring_head + i) % g_log.ring_cap], data);
    }
}

static void ring_push(char *line) {
    if (g_log.ring_cap == 0) {
        free(line);
        return;
    }
    if (g_log.ring_len == g_log.ring_cap) {
        free(g_log.ring[g_log.ring_head]);
        g_log.ring[g_log.ring_head] = line;
        g_log.ring_head = (g_log.ring_head + 1) % g_log.ring_cap;
        return;
    }
    g_log.ring[(g_log.ring_head + g_log.ring_len++) % g_log.ring_cap] = line;
}

static int64_t now_wall(void) {
    if (g_log.clock != NULL) {
        return swd_clock_wall(g_log.clock);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// "2026-11-24 07:31:09.123 INFO  rpc: listening rpc=127.0.0.1:7420"
static void print_human(const json_t *rec, int64_t ts, swd_log_level_t level, const char *component,
                        const char *msg) {
    time_t secs = (time_t)(ts / 1000);
    struct tm tm;
    char when[32];
    localtime_r(&secs, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(stderr, "%s.%03d %-5s %s: %s", when, (int)(ts % 1000), swd_log_level_name(level),
            component, msg);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)rec, key, v) {
        if (strcmp(key, "ts") == 0 || strcmp(key, "level") == 0 || strcmp(key, "component") == 0 ||
            strcmp(key, "msg") == 0) {
            continue;
        }
        char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        fprintf(stderr, " %s=%s", key, s ? s : json_string_value(v));
        free(s);
    }
    fputc('\n', stderr);
}

static json_t *make_record(int64_t ts, swd_log_level_t level, const char *component,
                           const char *msg, json_t *fields) {
    json_t *rec = json_object();
    json_object_set_new(rec, "ts", json_integer(ts));
    json_object_set_new(rec, "level", json_string(swd_log_level_name(level)));
    json_object_set_new(rec, "component", json_string(component));
    json_object_set_new(rec, "msg", json_string(msg));
    if (fields != NULL) {
        const char *key;
        json_t *v;
        json_object_foreach(fields, key, v) {
            if (json_object_get(rec, key) == NULL) {
                json_object_set(rec, key, v);
            }
        }
    }
    return rec;
}

void swd_log(swd_log_level_t level, const char *component, const char *msg, const char *fields_fmt,
             ...) {
    if (!swd_log_enabled(level)) {
        return;
    }
    json_t *fields = NULL;
    if (fields_fmt != NULL) {
        va_list ap;
        va_start(ap, fields_fmt);
        json_error_t jerr;
        fields = json_vpack_ex(&jerr, 0, fields_fmt, ap);
        va_end(ap);
    }
    int64_t ts = now_wall();
    json_t *rec = make_record(ts, level, component, msg, fields);
    json_decref(fields);
    char *line = json_dumps(rec, JSON_COMPACT);
    if (g_log.to_stderr) {
        if (g_log.human) {
            print_human(rec, ts, level, component, msg);
        } else {
            fprintf(stderr, "%s\n", line);
        }
    }
    g_log.publishing++;
    for (swd_log_sink_t *s = g_log.sinks; s != NULL; s = s->next) {
        if (!s->removed) {
            s->cb(rec, line, s->data);
        }
    }
    g_log.publishing--;
    if (g_log.publishing == 0) {
        sweep_sinks();
    }
    ring_push(line);
    json_decref(rec);
}
