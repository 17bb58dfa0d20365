// The configuration table and everything that walks it.
//
//   text (env, flag, get/set) ──▶ parse_text ─┐
//   YAML node (file)          ──▶ parse_node ─┼─▶ check (bounds, validator)
//                                             ▼
//                     change(): store, record source, run apply hooks,
//                               restore the old value if a hook fails
//
// One file on purpose: the table, the value parsers and the YAML loader share
// private types that no other module should see. Sections are separated by
// banner comments.
#include "runtime/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <yaml.h>

#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/errors.h"

// Enum fields are written through an `int`: the enums must have its size and
// the name tables below must follow the enumerators' order.
_Static_assert(sizeof(swd_log_level_t) == sizeof(int), "enum size");
_Static_assert(sizeof(swd_mode_t) == sizeof(int), "enum size");
_Static_assert(sizeof(swd_pool_kind_t) == sizeof(int), "enum size");
_Static_assert(sizeof(swd_pool_restart_t) == sizeof(int), "enum size");
_Static_assert(sizeof(swd_http_format_t) == sizeof(int), "enum size");
_Static_assert(SWD_LOG_DEBUG == 0 && SWD_LOG_INFO == 1 && SWD_LOG_WARN == 2 && SWD_LOG_ERROR == 3,
               "log level order");

#define WHY_CAP 256

// ===========================================================================
// Diagnostics

void swd_diag_init(swd_diag_t *d) {
    memset(d, 0, sizeof *d);
}

void swd_diag_close(swd_diag_t *d) {
    for (size_t i = 0; i < d->n; i++) {
        free(d->msgs[i].text);
    }
    free(d->msgs);
    memset(d, 0, sizeof *d);
}

static char *vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *vformat(const char *fmt, va_list ap) {
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    if (n < 0) {
        return swd_xstrdup("(unprintable message)");
    }
    char *s = swd_xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static void diag_vadd(swd_diag_t *d, swd_diag_level_t level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void diag_vadd(swd_diag_t *d, swd_diag_level_t level, const char *fmt, va_list ap) {
    if (d == NULL) {
        return;
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->msgs = swd_xrealloc(d->msgs, d->cap * sizeof *d->msgs);
    }
    d->msgs[d->n].level = level;
    d->msgs[d->n].text = vformat(fmt, ap);
    d->n++;
    if (level == SWD_DIAG_ERROR) {
        d->errors++;
    } else {
        d->warnings++;
    }
}

void swd_diag_add(swd_diag_t *d, swd_diag_level_t level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_vadd(d, level, fmt, ap);
    va_end(ap);
}

void swd_diag_print(const swd_diag_t *d, FILE *out) {
    for (size_t i = 0; i < d->n; i++) {
        fprintf(out, "%s%s\n", d->msgs[i].level == SWD_DIAG_WARNING ? "warning: " : "",
                d->msgs[i].text);
    }
}

// ===========================================================================
// Small string helpers

static void buf_puts(swd_buf_t *b, const char *s) {
    swd_buf_append(b, s, strlen(s));
}

static void buf_printf(swd_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(swd_buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    buf_puts(b, s);
    free(s);
}

/// The buffer's bytes as a C string (a NUL is kept past `len`).
static const char *buf_cstr(swd_buf_t *b) {
    swd_buf_append(b, "", 1);
    b->len--;
    return b->data;
}

/// Appends `s` as a YAML double-quoted scalar.
static void buf_quoted(swd_buf_t *b, const char *s) {
    buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            buf_puts(b, "\\\"");
            break;
        case '\\':
            buf_puts(b, "\\\\");
            break;
        case '\n':
            buf_puts(b, "\\n");
            break;
        case '\t':
            buf_puts(b, "\\t");
            break;
        case '\r':
            buf_puts(b, "\\r");
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                buf_printf(b, "\\x%02x", *p);
            } else {
                swd_buf_append(b, p, 1);
            }
        }
    }
    buf_puts(b, "\"");
}

static void set_why(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

/// `s` for a message: quoted and cut short, or "(secret)" for secret keys.
static void shown(const swd_config_key_t *k, const char *s, char *out, size_t cap) {
    if (k->flags & SWD_CONFIG_SECRET) {
        snprintf(out, cap, "(secret)");
    } else if (strlen(s) > 40) {
        snprintf(out, cap, "\"%.37s...\"", s);
    } else {
        snprintf(out, cap, "\"%s\"", s);
    }
}

// ===========================================================================
// Validators

static int validate_unix_path(const swd_config_key_t *k, const void *value, char *why, size_t cap) {
    const char *s = *(char *const *)value;
    size_t max = sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1;
    if (s != NULL && strlen(s) > max) {
        set_why(why, cap, "path too long for a unix socket (at most %zu bytes)", max);
        return SWD_ECONFIG;
    }
    return 0;
}

static int validate_pool_name(const swd_config_key_t *k, const void *value, char *why, size_t cap) {
    const char *s = *(char *const *)value;
    size_t n = strlen(s);
    if (n > 64) {
        set_why(why, cap, "at most 64 characters");
        return SWD_ECONFIG;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.') {
            set_why(why, cap, "only letters, digits, '_', '-' and '.' are allowed");
            return SWD_ECONFIG;
        }
    }
    return 0;
}

static int validate_nonempty_items(const swd_config_key_t *k, const void *value, char *why,
                                   size_t cap) {
    const swd_config_list_t *l = value;
    if (l->n == 0) {
        set_why(why, cap, "must not be empty");
        return SWD_ECONFIG;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i][0] == '\0') {
            set_why(why, cap, "item %zu is empty", i + 1);
            return SWD_ECONFIG;
        }
    }
    return 0;
}

static int validate_env_map(const swd_config_key_t *k, const void *value, char *why, size_t cap) {
    const swd_config_map_t *m = value;
    for (size_t i = 0; i < m->n; i++) {
        const char *name = m->keys[i];
        bool ok = name[0] != '\0' && !isdigit((unsigned char)name[0]);
        for (const char *p = name; ok && *p; p++) {
            ok = isalnum((unsigned char)*p) || *p == '_';
        }
        if (!ok) {
            set_why(why, cap, "\"%.40s\" is not a valid variable name", name);
            return SWD_ECONFIG;
        }
    }
    return 0;
}

static int validate_headers(const swd_config_key_t *k, const void *value, char *why, size_t cap) {
    const swd_config_map_t *m = value;
    // Header names are RFC 9110 tokens; values must not smuggle in a new line.
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    for (size_t i = 0; i < m->n; i++) {
        const char *name = m->keys[i];
        bool ok = name[0] != '\0';
        for (const char *p = name; ok && *p; p++) {
            ok = isalnum((unsigned char)*p) || strchr(tchar, *p) != NULL;
        }
        if (!ok) {
            set_why(why, cap, "\"%.40s\" is not a valid header name", name);
            return SWD_ECONFIG;
        }
        if (strpbrk(m->values[i], "\r\n") != NULL) {
            set_why(why, cap, "the value of header \"%.40s\" contains a line break", name);
            return SWD_ECONFIG;
        }
    }
    return 0;
}

static int validate_url(const swd_config_key_t *k, const void *value, char *why, size_t cap) {
    const char *s = *(char *const *)value;
    const char *host = NULL;
    if (strncmp(s, "http://", 7) == 0) {
        host = s + 7;
    } else if (strncmp(s, "https://", 8) == 0) {
        host = s + 8;
    }
    if (host == NULL || *host == '\0' || *host == '/') {
        set_why(why, cap, "expected an http:// or https:// URL");
        return SWD_ECONFIG;
    }
    return 0;
}

// ===========================================================================
// The tables

static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const mode_names[] = {"off", "monitor", "enforce", NULL};
static const char *const kind_names[] = {"process", "remote", "http", NULL};
static const char *const restart_names[] = {"always", "on-failure", "never", NULL};
static const char *const format_names[] = {"openai", "raw", NULL};

#define CFG_OFF(field) offsetof(swd_config_t, field)
#define POOL_OFF(field) offsetof(swd_pool_config_t, field)
#define NUM(n_, t_, off_, def_, lo_, hi_)                                                          \
    { .name = (n_), .type = (t_), .offset = (off_), .def = (def_), .min = (lo_), .max = (hi_) }
#define MS_DAY INT64_C(86400000)
#define S_YEAR INT64_C(31536000)
#define GIB (INT64_C(1) << 30)

static const swd_config_key_t main_keys[] = {
    {.name = "listen.rpc",
     .type = SWD_CONFIG_ADDRESS,
     .offset = CFG_OFF(listen.rpc),
     .def = "127.0.0.1:7420",
     .flags = SWD_CONFIG_NULLABLE,
     .env_alias = "SWARMD_LISTEN",
     .flag = "listen"},
    {.name = "listen.http",
     .type = SWD_CONFIG_ADDRESS,
     .offset = CFG_OFF(listen.http),
     .def = "127.0.0.1:7421",
     .flags = SWD_CONFIG_NULLABLE,
     .env_alias = "SWARMD_HTTP",
     .flag = "http"},
    {.name = "listen.unix",
     .type = SWD_CONFIG_STRING,
     .offset = CFG_OFF(listen.unix_path),
     .flags = SWD_CONFIG_NULLABLE,
     .flag = "unix",
     .validate = validate_unix_path},
    {.name = "auth.token",
     .type = SWD_CONFIG_STRING,
     .offset = CFG_OFF(auth.token),
     .flags = SWD_CONFIG_NULLABLE | SWD_CONFIG_SECRET,
     .env_alias = "SWARMD_TOKEN"},
    {.name = "auth.agent_token",
     .type = SWD_CONFIG_STRING,
     .offset = CFG_OFF(auth.agent_token),
     .flags = SWD_CONFIG_NULLABLE | SWD_CONFIG_SECRET,
     .env_alias = "SWARMD_AGENT_TOKEN"},
    NUM("limits.max_message_bytes", SWD_CONFIG_SIZE, CFG_OFF(limits.max_message_bytes), "16777216",
        1024, GIB),
    NUM("limits.max_write_buffer_bytes", SWD_CONFIG_SIZE, CFG_OFF(limits.max_write_buffer_bytes),
        "67108864", 65536, 64 * GIB),
    NUM("limits.max_connections", SWD_CONFIG_INT, CFG_OFF(limits.max_connections), "1024", 1,
        1000000),
    NUM("limits.max_queued", SWD_CONFIG_INT, CFG_OFF(limits.max_queued), "1000000", 1, 1000000000),
    NUM("agents.heartbeat_ms", SWD_CONFIG_INT, CFG_OFF(agents.heartbeat_ms), "5000", 10, 3600000),
    NUM("agents.degraded_after", SWD_CONFIG_INT, CFG_OFF(agents.degraded_after), "2", 1, 1000),
    NUM("agents.dead_after", SWD_CONFIG_INT, CFG_OFF(agents.dead_after), "3", 1, 1000),
    NUM("agents.dead_retention_s", SWD_CONFIG_INT, CFG_OFF(agents.dead_retention_s), "300", 0,
        S_YEAR),
    NUM("scheduler.default_timeout_ms", SWD_CONFIG_INT, CFG_OFF(scheduler.default_timeout_ms),
        "600000", 1, 7 * MS_DAY),
    NUM("scheduler.default_max_retries", SWD_CONFIG_INT, CFG_OFF(scheduler.default_max_retries),
        "3", 0, 1000),
    NUM("scheduler.backoff_base_ms", SWD_CONFIG_INT, CFG_OFF(scheduler.backoff_base_ms), "200", 0,
        MS_DAY),
    NUM("scheduler.backoff_max_ms", SWD_CONFIG_INT, CFG_OFF(scheduler.backoff_max_ms), "30000", 0,
        MS_DAY),
    NUM("scheduler.shutdown_grace_ms", SWD_CONFIG_INT, CFG_OFF(scheduler.shutdown_grace_ms),
        "30000", 0, MS_DAY),
    NUM("scheduler.aging_ms", SWD_CONFIG_INT, CFG_OFF(scheduler.aging_ms), "10000", 1, MS_DAY),
    NUM("scheduler.retain_finished_s", SWD_CONFIG_INT, CFG_OFF(scheduler.retain_finished_s), "3600",
        0, S_YEAR),
    NUM("scheduler.retain_finished_max", SWD_CONFIG_INT, CFG_OFF(scheduler.retain_finished_max),
        "1000000", 0, 1000000000),
    NUM("scheduler.max_batch", SWD_CONFIG_INT, CFG_OFF(scheduler.max_batch), "10000", 1, 1000000),
    NUM("health.window", SWD_CONFIG_INT, CFG_OFF(health.window), "50", 1, 100000),
    NUM("health.target_latency_ms", SWD_CONFIG_INT, CFG_OFF(health.target_latency_ms), "3000", 1,
        MS_DAY),
    {.name = "log.level",
     .type = SWD_CONFIG_ENUM,
     .offset = CFG_OFF(log.level),
     .def = "info",
     .enum_names = log_level_names,
     .flag = "log-level"},
    NUM("log.ring", SWD_CONFIG_INT, CFG_OFF(log.ring), "10000", 0, 10000000),
    // `off` until the tuner exists; DESIGN.md §6 makes it `enforce` then.
    {.name = "tuner.mode",
     .type = SWD_CONFIG_ENUM,
     .offset = CFG_OFF(tuner.mode),
     .def = "off",
     .enum_names = mode_names},
};

#define KIND(k) (1u << (k))

static const swd_config_key_t pool_keys[] = {
    {.name = "name",
     .type = SWD_CONFIG_STRING,
     .offset = POOL_OFF(name),
     .flags = SWD_CONFIG_REQUIRED | SWD_CONFIG_FIXED,
     .validate = validate_pool_name},
    {.name = "kind",
     .type = SWD_CONFIG_ENUM,
     .offset = POOL_OFF(kind),
     .def = "process",
     .enum_names = kind_names,
     .flags = SWD_CONFIG_REQUIRED | SWD_CONFIG_FIXED},
    {.name = "capabilities",
     .type = SWD_CONFIG_LIST,
     .offset = POOL_OFF(capabilities),
     .def = "*",
     .validate = validate_nonempty_items},
    NUM("max_concurrency", SWD_CONFIG_INT, POOL_OFF(max_concurrency), "1", 1, 100000),
    NUM("min", SWD_CONFIG_INT, POOL_OFF(min), "0", 0, 100000),
    NUM("max", SWD_CONFIG_INT, POOL_OFF(max), "50", 1, 100000),
    {.name = "command",
     .type = SWD_CONFIG_LIST,
     .offset = POOL_OFF(process.command),
     .kinds = KIND(SWD_POOL_PROCESS),
     .flags = SWD_CONFIG_REQUIRED,
     .validate = validate_nonempty_items},
    {.name = "env",
     .type = SWD_CONFIG_MAP,
     .offset = POOL_OFF(process.env),
     .kinds = KIND(SWD_POOL_PROCESS),
     .validate = validate_env_map},
    {.name = "restart",
     .type = SWD_CONFIG_ENUM,
     .offset = POOL_OFF(process.restart),
     .def = "always",
     .enum_names = restart_names,
     .kinds = KIND(SWD_POOL_PROCESS)},
    {.name = "endpoint",
     .type = SWD_CONFIG_STRING,
     .offset = POOL_OFF(http.endpoint),
     .kinds = KIND(SWD_POOL_HTTP),
     .flags = SWD_CONFIG_REQUIRED,
     .validate = validate_url},
    {.name = "format",
     .type = SWD_CONFIG_ENUM,
     .offset = POOL_OFF(http.format),
     .def = "openai",
     .enum_names = format_names,
     .kinds = KIND(SWD_POOL_HTTP)},
    {.name = "model",
     .type = SWD_CONFIG_STRING,
     .offset = POOL_OFF(http.model),
     .kinds = KIND(SWD_POOL_HTTP),
     .flags = SWD_CONFIG_NULLABLE},
    {.name = "headers",
     .type = SWD_CONFIG_MAP,
     .offset = POOL_OFF(http.headers),
     .kinds = KIND(SWD_POOL_HTTP),
     .flags = SWD_CONFIG_SECRET,
     .validate = validate_headers},
    {.name = "timeout_ms",
     .type = SWD_CONFIG_INT,
     .offset = POOL_OFF(http.timeout_ms),
     .def = "120000",
     .min = 1,
     .max = 3600000,
     .kinds = KIND(SWD_POOL_HTTP)},
    {.name = "rpm",
     .type = SWD_CONFIG_INT,
     .offset = POOL_OFF(http.rpm),
     .def = "0",
     .min = 0,
     .max = 100000000,
     .kinds = KIND(SWD_POOL_HTTP)},
    {.name = "tpm",
     .type = SWD_CONFIG_INT,
     .offset = POOL_OFF(http.tpm),
     .def = "0",
     .min = 0,
     .max = INT64_C(1000000000000),
     .kinds = KIND(SWD_POOL_HTTP)},
    {.name = "max_tokens",
     .type = SWD_CONFIG_INT,
     .offset = POOL_OFF(http.max_tokens),
     .def = "0",
     .min = 0,
     .max = 100000000,
     .kinds = KIND(SWD_POOL_HTTP)},
    {.name = "temperature",
     .type = SWD_CONFIG_FLOAT,
     .offset = POOL_OFF(http.temperature),
     .fmin = 0.0,
     .fmax = 2.0,
     .kinds = KIND(SWD_POOL_HTTP),
     .flags = SWD_CONFIG_NULLABLE},
};

#define N_MAIN_KEYS (sizeof main_keys / sizeof main_keys[0])
#define N_POOL_KEYS (sizeof pool_keys / sizeof pool_keys[0])
// The YAML loader tracks the pool keys it saw in one 32-bit mask.
_Static_assert(N_POOL_KEYS <= 32, "pool key mask");

const swd_config_key_t *swd_config_keys(size_t *n) {
    *n = N_MAIN_KEYS;
    return main_keys;
}

const swd_config_key_t *swd_pool_config_keys(size_t *n) {
    *n = N_POOL_KEYS;
    return pool_keys;
}

const swd_config_key_t *swd_config_key_find(const char *key) {
    for (size_t i = 0; i < N_MAIN_KEYS; i++) {
        if (strcmp(main_keys[i].name, key) == 0) {
            return &main_keys[i];
        }
    }
    return NULL;
}

static const swd_config_key_t *pool_key_find(const char *key) {
    for (size_t i = 0; i < N_POOL_KEYS; i++) {
        if (strcmp(pool_keys[i].name, key) == 0) {
            return &pool_keys[i];
        }
    }
    return NULL;
}

bool swd_config_has_key(const char *key) {
    return swd_config_key_find(key) != NULL;
}

const char *swd_config_flag_key(const char *flag) {
    if (strncmp(flag, "--", 2) == 0) {
        flag += 2;
    }
    for (size_t i = 0; i < N_MAIN_KEYS; i++) {
        if (main_keys[i].flag != NULL && strcmp(main_keys[i].flag, flag) == 0) {
            return main_keys[i].name;
        }
    }
    return NULL;
}

int swd_config_overrides_add(swd_config_overrides_t *o, const char *flag, const char *value) {
    const char *key = swd_config_flag_key(flag);
    if (key == NULL) {
        return SWD_ENOTFOUND;
    }
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 4;
        o->keys = swd_xrealloc(o->keys, o->cap * sizeof(*o->keys));
        o->values = swd_xrealloc(o->values, o->cap * sizeof(*o->values));
    }
    o->keys[o->n] = key;
    o->values[o->n++] = value;
    return 0;
}

int swd_config_overrides_apply(const swd_config_overrides_t *o, swd_config_t *c, swd_diag_t *d) {
    int first = 0;
    for (size_t i = 0; i < o->n; i++) {
        int r = swd_config_set(c, o->keys[i], o->values[i], SWD_CONFIG_FLAG, d);
        if (first == 0) {
            first = r;
        }
    }
    return first;
}

void swd_config_overrides_close(swd_config_overrides_t *o) {
    free(o->keys);
    free(o->values);
    memset(o, 0, sizeof(*o));
}

const char *swd_config_source_name(swd_config_source_t s) {
    static const char *const names[] = {"default", "file", "env", "flag", "runtime"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

const char *swd_mode_name(swd_mode_t m) {
    return (unsigned)m < 3 ? mode_names[m] : "?";
}

const char *swd_pool_kind_name(swd_pool_kind_t k) {
    return (unsigned)k < 3 ? kind_names[k] : "?";
}

static bool key_for_kind(const swd_config_key_t *k, swd_pool_kind_t kind) {
    return k->kinds == 0 || (k->kinds & KIND(kind)) != 0;
}

/// "http pools" or "process pools": the kinds a pool key belongs to.
static void kinds_text(const swd_config_key_t *k, char *out, size_t cap) {
    out[0] = '\0';
    for (int i = 0; kind_names[i] != NULL; i++) {
        if (k->kinds & KIND(i)) {
            size_t len = strlen(out);
            snprintf(out + len, cap - len, "%s%s", len ? "/" : "", kind_names[i]);
        }
    }
}

// ===========================================================================
// Values: one union for every type, moved in and out of struct fields

typedef union cfg_val {
    int64_t i;
    bool b;
    double f;
    char *s;
    int e;
    swd_config_list_t l;
    swd_config_map_t m;
} cfg_val_t;

static void list_free(swd_config_list_t *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i]);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}

static void map_free(swd_config_map_t *m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

static void list_push(swd_config_list_t *l, const char *s) {
    l->items = swd_xrealloc(l->items, (l->n + 1) * sizeof *l->items);
    l->items[l->n++] = swd_xstrdup(s);
}

static void map_push(swd_config_map_t *m, const char *k, const char *v) {
    m->keys = swd_xrealloc(m->keys, (m->n + 1) * sizeof *m->keys);
    m->values = swd_xrealloc(m->values, (m->n + 1) * sizeof *m->values);
    m->keys[m->n] = swd_xstrdup(k);
    m->values[m->n] = swd_xstrdup(v);
    m->n++;
}

static void val_free(const swd_config_key_t *k, cfg_val_t *v) {
    switch (k->type) {
    case SWD_CONFIG_STRING:
    case SWD_CONFIG_ADDRESS:
        free(v->s);
        v->s = NULL;
        break;
    case SWD_CONFIG_LIST:
        list_free(&v->l);
        break;
    case SWD_CONFIG_MAP:
        map_free(&v->m);
        break;
    default:
        break;
    }
}

static size_t val_size(const swd_config_key_t *k) {
    switch (k->type) {
    case SWD_CONFIG_INT:
    case SWD_CONFIG_SIZE:
        return sizeof(int64_t);
    case SWD_CONFIG_BOOL:
        return sizeof(bool);
    case SWD_CONFIG_STRING:
    case SWD_CONFIG_ADDRESS:
        return sizeof(char *);
    case SWD_CONFIG_ENUM:
        return sizeof(int);
    case SWD_CONFIG_FLOAT:
        return sizeof(double);
    case SWD_CONFIG_LIST:
        return sizeof(swd_config_list_t);
    case SWD_CONFIG_MAP:
        return sizeof(swd_config_map_t);
    }
    return 0;
}

/// A borrowed view of the field (pointers still owned by the struct).
static cfg_val_t val_peek(const swd_config_key_t *k, const void *base) {
    cfg_val_t v;
    memset(&v, 0, sizeof v);
    memcpy(&v, (const char *)base + k->offset, val_size(k));
    return v;
}

/// Frees the field's old content and moves `v` in (`v` is left empty).
static void val_store(const swd_config_key_t *k, void *base, cfg_val_t *v) {
    cfg_val_t old = val_peek(k, base);
    val_free(k, &old);
    memcpy((char *)base + k->offset, v, val_size(k));
    memset(v, 0, sizeof *v);
}

static cfg_val_t val_copy(const swd_config_key_t *k, const cfg_val_t *src) {
    cfg_val_t v = *src;
    switch (k->type) {
    case SWD_CONFIG_STRING:
    case SWD_CONFIG_ADDRESS:
        v.s = src->s ? swd_xstrdup(src->s) : NULL;
        break;
    case SWD_CONFIG_LIST:
        memset(&v.l, 0, sizeof v.l);
        for (size_t i = 0; i < src->l.n; i++) {
            list_push(&v.l, src->l.items[i]);
        }
        break;
    case SWD_CONFIG_MAP:
        memset(&v.m, 0, sizeof v.m);
        for (size_t i = 0; i < src->m.n; i++) {
            map_push(&v.m, src->m.keys[i], src->m.values[i]);
        }
        break;
    default:
        break;
    }
    return v;
}

// ---------------------------------------------------------------------------
// Parsing scalars from text

/// Strict decimal: optional '-', digits. 0, -1 (not a number), -2 (overflow).
static int parse_i64(const char *s, size_t n, int64_t *out) {
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '-' || s[i] == '+')) {
        neg = s[i] == '-';
        i++;
    }
    if (i == n) {
        return -1;
    }
    uint64_t acc = 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -1;
        }
        unsigned dig = (unsigned)(s[i] - '0');
        if (acc > (limit - dig) / 10) {
            return -2;
        }
        acc = acc * 10 + dig;
    }
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}

/// Bytes with an optional binary suffix: K, KB, KiB, M, MB, MiB, G, GB, GiB.
static int parse_size(const char *s, int64_t *out) {
    size_t n = 0;
    while (s[n] == '-' || s[n] == '+' || isdigit((unsigned char)s[n])) {
        n++;
    }
    int64_t v;
    int rc = parse_i64(s, n, &v);
    if (rc != 0) {
        return rc;
    }
    const char *suf = s + n;
    while (*suf == ' ') {
        suf++;
    }
    static const struct {
        const char *name;
        int shift;
    } units[] = {{"", 0},    {"b", 0},    {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20},
                 {"mb", 20}, {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(suf, units[i].name) == 0) {
            if (v > (INT64_MAX >> units[i].shift) || v < (INT64_MIN >> units[i].shift)) {
                return -2;
            }
            *out = (int64_t)((uint64_t)v << units[i].shift);
            return 0;
        }
    }
    return -1;
}

static int parse_bool(const char *s, bool *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int parse_double(const char *s, double *out) {
    if (*s == '\0' || strspn(s, "0123456789+-.eE") != strlen(s)) {
        return -1;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0' || errno != 0 || !isfinite(v)) {
        return -1;
    }
    *out = v;
    return 0;
}

/// HOST:PORT; the host is a name, an IPv4 address, or an IPv6 one in brackets.
static int parse_address(const char *s, char *why, size_t cap) {
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        char ip6[64];
        size_t n = close ? (size_t)(close - s - 1) : 0;
        struct in6_addr a6;
        if (close == NULL || n == 0 || n >= sizeof ip6) {
            set_why(why, cap, "expected HOST:PORT, an IPv6 host in brackets ([::1]:7420)");
            return SWD_ECONFIG;
        }
        memcpy(ip6, s + 1, n);
        ip6[n] = '\0';
        if (inet_pton(AF_INET6, ip6, &a6) != 1) {
            set_why(why, cap, "\"%s\" is not an IPv6 address", ip6);
            return SWD_ECONFIG;
        }
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(s, ':');
        if (colon != NULL && memchr(s, ':', (size_t)(colon - s)) != NULL) {
            set_why(why, cap, "an IPv6 host needs brackets ([::1]:7420)");
            return SWD_ECONFIG;
        }
        size_t hn = colon ? (size_t)(colon - s) : 0;
        bool numeric = hn > 0 && strspn(s, "0123456789.") >= hn;
        for (size_t i = 0; i < hn; i++) {
            if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_') {
                set_why(why, cap, "\"%.*s\" is not a host name", (int)hn, s);
                return SWD_ECONFIG;
            }
        }
        if (numeric) {
            char ip4[16];
            struct in_addr a4;
            bool ok = hn < sizeof ip4;
            if (ok) {
                memcpy(ip4, s, hn);
                ip4[hn] = '\0';
                ok = inet_pton(AF_INET, ip4, &a4) == 1;
            }
            if (!ok) {
                set_why(why, cap, "\"%.*s\" is not an IPv4 address", (int)hn, s);
                return SWD_ECONFIG;
            }
        }
        if (colon == s) {
            colon = NULL; // an empty host: report it as a missing HOST below
        }
    }
    int64_t port;
    if (colon == NULL) {
        set_why(why, cap, "expected HOST:PORT");
        return SWD_ECONFIG;
    }
    if (strlen(colon + 1) > 5 || parse_i64(colon + 1, strlen(colon + 1), &port) != 0 ||
        colon[1] == '-' || colon[1] == '+' || port > 65535) {
        set_why(why, cap, "the port must be a number from 0 to 65535");
        return SWD_ECONFIG;
    }
    return 0;
}

static void enum_list(const swd_config_key_t *k, char *out, size_t cap) {
    out[0] = '\0';
    for (size_t i = 0; k->enum_names[i] != NULL; i++) {
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s", i ? ", " : "", k->enum_names[i]);
    }
}

static const char *type_text(const swd_config_key_t *k) {
    switch (k->type) {
    case SWD_CONFIG_INT:
        return "an integer";
    case SWD_CONFIG_SIZE:
        return "a size in bytes";
    case SWD_CONFIG_BOOL:
        return "true or false";
    case SWD_CONFIG_STRING:
        return "a string";
    case SWD_CONFIG_ENUM:
        return "a name";
    case SWD_CONFIG_ADDRESS:
        return "HOST:PORT";
    case SWD_CONFIG_FLOAT:
        return "a number";
    case SWD_CONFIG_LIST:
        return "a list of strings";
    case SWD_CONFIG_MAP:
        return "a map of strings";
    }
    return "a value";
}

/// Bounds and the key's validator on a parsed value.
static int val_check(const swd_config_key_t *k, const cfg_val_t *v, char *why, size_t cap) {
    if ((k->type == SWD_CONFIG_INT || k->type == SWD_CONFIG_SIZE) &&
        (v->i < k->min || v->i > k->max)) {
        set_why(why, cap, "must be between %lld and %lld, got %lld", (long long)k->min,
                (long long)k->max, (long long)v->i);
        return SWD_ECONFIG;
    }
    if (k->type == SWD_CONFIG_FLOAT && !isnan(v->f) && (v->f < k->fmin || v->f > k->fmax)) {
        set_why(why, cap, "must be between %g and %g, got %g", k->fmin, k->fmax, v->f);
        return SWD_ECONFIG;
    }
    bool is_null = (k->type == SWD_CONFIG_STRING || k->type == SWD_CONFIG_ADDRESS) && !v->s;
    if (k->validate != NULL && !is_null) {
        return k->validate(k, v, why, cap);
    }
    return 0;
}

static int parse_flow(const swd_config_key_t *k, const char *text, cfg_val_t *out, char *why,
                      size_t cap);

/// Parses one scalar's text (NULL or "" is null) into `out`, checked.
static int parse_text(const swd_config_key_t *k, const char *text, cfg_val_t *out, char *why,
                      size_t cap) {
    char got[64];
    memset(out, 0, sizeof *out);
    if (text != NULL && text[0] == '\0') {
        text = NULL;
    }
    if (k->type == SWD_CONFIG_LIST || k->type == SWD_CONFIG_MAP) {
        return text ? parse_flow(k, text, out, why, cap) : val_check(k, out, why, cap);
    }
    if (text == NULL) {
        if (!(k->flags & SWD_CONFIG_NULLABLE)) {
            set_why(why, cap, "expected %s, got nothing", type_text(k));
            return SWD_ECONFIG;
        }
        if (k->type == SWD_CONFIG_FLOAT) {
            out->f = NAN; // "not set"
        }
        return 0;
    }
    shown(k, text, got, sizeof got);
    int rc = 0;
    switch (k->type) {
    case SWD_CONFIG_INT:
        rc = parse_i64(text, strlen(text), &out->i);
        break;
    case SWD_CONFIG_SIZE:
        rc = parse_size(text, &out->i);
        break;
    case SWD_CONFIG_BOOL:
        rc = parse_bool(text, &out->b);
        break;
    case SWD_CONFIG_FLOAT:
        rc = parse_double(text, &out->f);
        break;
    case SWD_CONFIG_ENUM:
        rc = -3;
        for (int i = 0; k->enum_names[i] != NULL; i++) {
            if (strcasecmp(text, k->enum_names[i]) == 0) {
                out->e = i;
                rc = 0;
            }
        }
        break;
    case SWD_CONFIG_ADDRESS:
        if (parse_address(text, why, cap) != 0) {
            return SWD_ECONFIG;
        }
        out->s = swd_xstrdup(text);
        break;
    default:
        out->s = swd_xstrdup(text);
        break;
    }
    if (rc == -2) {
        set_why(why, cap, "%s is out of range", got);
        return SWD_ECONFIG;
    }
    if (rc == -3) {
        char names[128];
        enum_list(k, names, sizeof names);
        set_why(why, cap, "must be one of %s; got %s", names, got);
        return SWD_ECONFIG;
    }
    if (rc != 0) {
        set_why(why, cap, "expected %s, got %s", type_text(k), got);
        return SWD_ECONFIG;
    }
    rc = val_check(k, out, why, cap);
    if (rc != 0) {
        val_free(k, out);
    }
    return rc;
}

// ---------------------------------------------------------------------------
// Parsing from YAML nodes

static const char *node_kind(const yaml_node_t *n) {
    switch (n->type) {
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "a scalar";
    }
}

static bool node_is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return false;
    }
    const char *s = (const char *)n->data.scalar.value;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/// The scalar's text, or NULL (with a reason) when it is not a usable string.
static const char *node_text(const yaml_node_t *n, char *why, size_t cap) {
    if (n->type != YAML_SCALAR_NODE) {
        set_why(why, cap, "expected a string, got %s", node_kind(n));
        return NULL;
    }
    const char *s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length) {
        set_why(why, cap, "contains a NUL character");
        return NULL;
    }
    return s;
}

static int node_list(yaml_document_t *doc, yaml_node_t *n, swd_config_list_t *l, char *why,
                     size_t cap) {
    size_t idx = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, idx++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        const char *s = item && !node_is_null(item) ? node_text(item, why, cap) : NULL;
        if (s == NULL) {
            char inner[WHY_CAP];
            snprintf(inner, sizeof inner, "%s", item && !node_is_null(item) ? why : "is null");
            set_why(why, cap, "item %zu: %s", idx + 1, inner);
            list_free(l);
            return SWD_ECONFIG;
        }
        list_push(l, s);
    }
    return 0;
}

static int node_map(yaml_document_t *doc, yaml_node_t *n, swd_config_map_t *m, char *why,
                    size_t cap) {
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
        char inner[WHY_CAP];
        const char *key = kn ? node_text(kn, inner, sizeof inner) : NULL;
        if (key == NULL) {
            set_why(why, cap, "a key: %s", kn ? inner : "missing");
            goto fail;
        }
        const char *val = vn && !node_is_null(vn) ? node_text(vn, inner, sizeof inner) : NULL;
        if (val == NULL) {
            set_why(why, cap, "\"%.40s\": %s", key, vn && !node_is_null(vn) ? inner : "is null");
            goto fail;
        }
        for (size_t i = 0; i < m->n; i++) {
            if (strcmp(m->keys[i], key) == 0) {
                set_why(why, cap, "\"%.40s\" is given twice", key);
                goto fail;
            }
        }
        map_push(m, key, val);
    }
    return 0;
fail:
    map_free(m);
    return SWD_ECONFIG;
}

/// Parses a YAML node into `out`, checked; on error `why` says why.
static int parse_node(const swd_config_key_t *k, yaml_document_t *doc, yaml_node_t *n,
                      cfg_val_t *out, char *why, size_t cap) {
    memset(out, 0, sizeof *out);
    if (k->type == SWD_CONFIG_LIST || k->type == SWD_CONFIG_MAP) {
        bool list = k->type == SWD_CONFIG_LIST;
        int rc = 0;
        if (node_is_null(n)) {
            // null is the empty list or map; the validator decides if that is fine
        } else if (n->type != (list ? YAML_SEQUENCE_NODE : YAML_MAPPING_NODE)) {
            set_why(why, cap, "expected %s, got %s", type_text(k), node_kind(n));
            return SWD_ECONFIG;
        } else {
            rc = list ? node_list(doc, n, &out->l, why, cap) : node_map(doc, n, &out->m, why, cap);
        }
        if (rc == 0) {
            rc = val_check(k, out, why, cap);
            if (rc != 0) {
                val_free(k, out);
            }
        }
        return rc;
    }
    if (n->type != YAML_SCALAR_NODE) {
        set_why(why, cap, "expected %s, got %s", type_text(k), node_kind(n));
        return SWD_ECONFIG;
    }
    if (node_is_null(n)) {
        return parse_text(k, NULL, out, why, cap);
    }
    const char *s = node_text(n, why, cap);
    if (s == NULL) {
        return SWD_ECONFIG;
    }
    if (s[0] == '\0' && !(k->flags & SWD_CONFIG_NULLABLE)) {
        set_why(why, cap, "expected %s, got an empty string", type_text(k));
        return SWD_ECONFIG;
    }
    return parse_text(k, s, out, why, cap);
}

/// Lists and maps given as text: YAML flow form, parsed by libyaml.
static int parse_flow(const swd_config_key_t *k, const char *text, cfg_val_t *out, char *why,
                      size_t cap) {
    yaml_parser_t p;
    yaml_document_t doc;
    int rc = SWD_ECONFIG;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&p, &doc)) {
        set_why(why, cap, "expected %s in YAML flow form (%s), %s", type_text(k),
                k->type == SWD_CONFIG_LIST ? "[\"a\", \"b\"]" : "{\"k\": \"v\"}",
                p.problem ? p.problem : "unreadable");
        yaml_parser_delete(&p);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        rc = val_check(k, out, why, cap);
    } else {
        rc = parse_node(k, &doc, root, out, why, cap);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    return rc;
}

// ---------------------------------------------------------------------------
// Formatting

typedef enum fmt_mode {
    FMT_GET,   ///< plain text, secrets in clear; lists and maps in flow form
    FMT_PRINT, ///< YAML: quoted strings, null, secrets masked
} fmt_mode_t;

static void fmt_double(swd_buf_t *b, double v) {
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.15g", v);
    if (strtod(tmp, NULL) != v) {
        snprintf(tmp, sizeof tmp, "%.17g", v);
    }
    buf_puts(b, tmp);
}

static void fmt_string(const swd_config_key_t *k, const char *s, swd_buf_t *b, fmt_mode_t mode) {
    if (mode == FMT_GET) {
        buf_puts(b, s ? s : "");
    } else if (s == NULL) {
        buf_puts(b, "null");
    } else {
        buf_quoted(b, (k->flags & SWD_CONFIG_SECRET) ? "***" : s);
    }
}

static void fmt_value(const swd_config_key_t *k, const void *base, swd_buf_t *b, fmt_mode_t mode) {
    cfg_val_t v = val_peek(k, base);
    const char *secret = (mode == FMT_PRINT && (k->flags & SWD_CONFIG_SECRET)) ? "***" : NULL;
    switch (k->type) {
    case SWD_CONFIG_INT:
    case SWD_CONFIG_SIZE:
        buf_printf(b, "%lld", (long long)v.i);
        break;
    case SWD_CONFIG_BOOL:
        buf_puts(b, v.b ? "true" : "false");
        break;
    case SWD_CONFIG_ENUM: {
        const char *name = "?";
        for (int i = 0; k->enum_names[i] != NULL; i++) {
            name = i == v.e ? k->enum_names[i] : name;
        }
        buf_puts(b, name);
        break;
    }
    case SWD_CONFIG_FLOAT:
        if (isnan(v.f)) {
            buf_puts(b, mode == FMT_GET ? "" : "null");
        } else {
            fmt_double(b, v.f);
        }
        break;
    case SWD_CONFIG_STRING:
    case SWD_CONFIG_ADDRESS:
        fmt_string(k, v.s, b, mode);
        break;
    case SWD_CONFIG_LIST:
        buf_puts(b, "[");
        for (size_t i = 0; i < v.l.n; i++) {
            buf_puts(b, i ? ", " : "");
            buf_quoted(b, secret ? secret : v.l.items[i]);
        }
        buf_puts(b, "]");
        break;
    case SWD_CONFIG_MAP:
        buf_puts(b, "{");
        for (size_t i = 0; i < v.m.n; i++) {
            buf_puts(b, i ? ", " : "");
            buf_quoted(b, v.m.keys[i]);
            buf_puts(b, ": ");
            buf_quoted(b, secret ? secret : v.m.values[i]);
        }
        buf_puts(b, "}");
        break;
    }
}

static char *val_text(const swd_config_key_t *k, const void *base) {
    swd_buf_t b;
    swd_buf_init(&b);
    fmt_value(k, base, &b, FMT_GET);
    buf_cstr(&b);
    size_t len;
    return swd_buf_steal(&b, &len);
}

// ===========================================================================
// Private state: where values came from, and change hooks

typedef struct cfg_src {
    char *key;
    swd_config_source_t src;
} cfg_src_t;

typedef struct cfg_hook {
    char *key; ///< NULL: every key
    swd_config_change_cb cb;
    void *data;
} cfg_hook_t;

struct swd_config_state {
    cfg_src_t *srcs;
    size_t n_srcs;
    cfg_hook_t *hooks;
    size_t n_hooks;
};

static cfg_src_t *src_find(const swd_config_t *c, const char *key) {
    for (size_t i = 0; i < c->state->n_srcs; i++) {
        if (strcmp(c->state->srcs[i].key, key) == 0) {
            return &c->state->srcs[i];
        }
    }
    return NULL;
}

static swd_config_source_t src_get(const swd_config_t *c, const char *key) {
    const cfg_src_t *e = src_find(c, key);
    return e ? e->src : SWD_CONFIG_DEFAULT;
}

static void src_set(swd_config_t *c, const char *key, swd_config_source_t src) {
    cfg_src_t *e = src_find(c, key);
    if (e != NULL) {
        e->src = src;
        return;
    }
    struct swd_config_state *st = c->state;
    st->srcs = swd_xrealloc(st->srcs, (st->n_srcs + 1) * sizeof *st->srcs);
    st->srcs[st->n_srcs].key = swd_xstrdup(key);
    st->srcs[st->n_srcs].src = src;
    st->n_srcs++;
}

/// Forgets the sources of every key starting with `prefix`.
static void src_drop_prefix(swd_config_t *c, const char *prefix) {
    struct swd_config_state *st = c->state;
    size_t keep = 0;
    for (size_t i = 0; i < st->n_srcs; i++) {
        if (strncmp(st->srcs[i].key, prefix, strlen(prefix)) == 0) {
            free(st->srcs[i].key);
        } else {
            st->srcs[keep++] = st->srcs[i];
        }
    }
    st->n_srcs = keep;
}

// ===========================================================================
// Life cycle

static void defaults(const swd_config_key_t *keys, size_t n, void *base) {
    char why[WHY_CAP];
    for (size_t i = 0; i < n; i++) {
        cfg_val_t v;
        memset(&v, 0, sizeof v);
        int rc = 0;
        if (keys[i].type == SWD_CONFIG_LIST && keys[i].def != NULL) {
            list_push(&v.l, keys[i].def);
        } else if (keys[i].def != NULL || keys[i].type == SWD_CONFIG_FLOAT) {
            rc = parse_text(&keys[i], keys[i].def, &v, why, sizeof why);
        }
        // A default that fails its own key's checks is a bug in the table.
        if (rc != 0) {
            fprintf(stderr, "swarmd: bad default of %s: %s\n", keys[i].name, why);
            abort();
        }
        val_store(&keys[i], base, &v);
    }
}

void swd_pool_config_init(swd_pool_config_t *p) {
    memset(p, 0, sizeof *p);
    defaults(pool_keys, N_POOL_KEYS, p);
}

void swd_pool_config_close(swd_pool_config_t *p) {
    for (size_t i = 0; i < N_POOL_KEYS; i++) {
        cfg_val_t v = val_peek(&pool_keys[i], p);
        val_free(&pool_keys[i], &v);
    }
    memset(p, 0, sizeof *p);
}

void swd_config_init(swd_config_t *c) {
    memset(c, 0, sizeof *c);
    c->state = swd_xcalloc(1, sizeof *c->state);
    defaults(main_keys, N_MAIN_KEYS, c);
}

static void pools_free(swd_pool_config_t *pools, size_t n) {
    for (size_t i = 0; i < n; i++) {
        swd_pool_config_close(&pools[i]);
    }
    free(pools);
}

void swd_config_close(swd_config_t *c) {
    for (size_t i = 0; i < N_MAIN_KEYS; i++) {
        cfg_val_t v = val_peek(&main_keys[i], c);
        val_free(&main_keys[i], &v);
    }
    pools_free(c->pools, c->n_pools);
    if (c->state != NULL) {
        for (size_t i = 0; i < c->state->n_srcs; i++) {
            free(c->state->srcs[i].key);
        }
        for (size_t i = 0; i < c->state->n_hooks; i++) {
            free(c->state->hooks[i].key);
        }
        free(c->state->srcs);
        free(c->state->hooks);
        free(c->state);
    }
    memset(c, 0, sizeof *c);
}

const swd_pool_config_t *swd_config_find_pool(const swd_config_t *c, const char *name) {
    for (size_t i = 0; i < c->n_pools; i++) {
        if (strcmp(c->pools[i].name, name) == 0) {
            return &c->pools[i];
        }
    }
    return NULL;
}

// ===========================================================================
// Keys: resolving "section.key" and "pools.NAME.KEY" to a row and a struct

typedef struct cfg_ref {
    const swd_config_key_t *k;
    void *base;
} cfg_ref_t;

static int resolve(const swd_config_t *c, const char *key, cfg_ref_t *r, char *why, size_t cap) {
    r->k = swd_config_key_find(key);
    r->base = (void *)c;
    if (r->k != NULL) {
        return 0;
    }
    const char *dot = strrchr(key, '.');
    if (strncmp(key, "pools.", 6) != 0 || dot == NULL || dot < key + 7) {
        set_why(why, cap, "unknown key");
        return SWD_ENOTFOUND;
    }
    size_t nlen = (size_t)(dot - (key + 6));
    for (size_t i = 0; i < c->n_pools; i++) {
        swd_pool_config_t *p = &c->pools[i];
        if (strlen(p->name) != nlen || memcmp(p->name, key + 6, nlen) != 0) {
            continue;
        }
        r->k = pool_key_find(dot + 1);
        r->base = p;
        if (r->k == NULL || !key_for_kind(r->k, p->kind)) {
            set_why(why, cap, "unknown key for a %s pool", kind_names[p->kind]);
            return SWD_ENOTFOUND;
        }
        return 0;
    }
    set_why(why, cap, "no pool called \"%.*s\"", (int)nlen, key + 6);
    return SWD_ENOTFOUND;
}

static void env_name(const char *key, char *out, size_t cap) {
    size_t n = (size_t)snprintf(out, cap, "SWARMD_%s", key);
    for (size_t i = 7; i < n && i < cap; i++) {
        // Keys are lower-case ASCII, so this is plain ASCII upper-casing.
        if (out[i] == '.') {
            out[i] = '_';
        } else if (out[i] >= 'a' && out[i] <= 'z') {
            out[i] = (char)(out[i] - 'a' + 'A');
        }
    }
}

/// How messages about a value of `src` begin: "--listen", "environment: SWARMD_X".
static void label_for(const swd_config_key_t *k, const char *key, swd_config_source_t src,
                      char *out, size_t cap) {
    if (src == SWD_CONFIG_FLAG && k != NULL && k->flag != NULL && strcmp(key, k->name) == 0) {
        snprintf(out, cap, "--%s", k->flag);
    } else if (src == SWD_CONFIG_ENV && swd_config_key_find(key) != NULL) {
        char env[128];
        env_name(key, env, sizeof env);
        snprintf(out, cap, "environment: %s", env);
    } else {
        snprintf(out, cap, "%s", key);
    }
}

// ---------------------------------------------------------------------------
// change(): the one path every new value takes

static bool hook_matches(const cfg_hook_t *h, const char *key) {
    return h->key == NULL || strcmp(h->key, key) == 0;
}

/// Runs the table's hook then the registered ones; on a failure, calls the
/// ones that already ran again with the values swapped, and returns the error.
static int run_hooks(swd_config_t *c, const cfg_ref_t *r, const char *key, const char *old_text,
                     const char *new_text) {
    int rc = 0;
    size_t ran = 0; // hooks run so far, the table's own counted as the first
    if (r->k->apply != NULL) {
        rc = r->k->apply(c, key, old_text, new_text, NULL);
        ran = rc == 0 ? 1 : 0;
    }
    struct swd_config_state *st = c->state;
    size_t i = 0;
    for (; rc == 0 && i < st->n_hooks; i++) {
        if (hook_matches(&st->hooks[i], key)) {
            rc = st->hooks[i].cb(c, key, old_text, new_text, st->hooks[i].data);
        }
    }
    if (rc == 0) {
        return 0;
    }
    // Undo in the same order; a hook failing to take the old value back has
    // nothing better to fall back on, so its error is dropped.
    if (ran) {
        (void)r->k->apply(c, key, new_text, old_text, NULL);
    }
    for (size_t j = 0; j + 1 < i; j++) {
        if (hook_matches(&st->hooks[j], key)) {
            (void)st->hooks[j].cb(c, key, new_text, old_text, st->hooks[j].data);
        }
    }
    return rc;
}

/// Stores `nv` (taken over) as the value of `key`, records `src`, runs the
/// hooks, and puts the old value and source back if one fails.
static int change(swd_config_t *c, const cfg_ref_t *r, const char *key, cfg_val_t *nv,
                  swd_config_source_t src, const char *label, swd_diag_t *d) {
    cfg_val_t cur = val_peek(r->k, r->base);
    cfg_val_t old = val_copy(r->k, &cur);
    swd_config_source_t old_src = src_get(c, key);
    char *old_text = val_text(r->k, r->base);
    val_store(r->k, r->base, nv);
    char *new_text = val_text(r->k, r->base);
    src_set(c, key, src);
    int rc = 0;
    if (strcmp(old_text, new_text) != 0) {
        rc = run_hooks(c, r, key, old_text, new_text);
    }
    if (rc != 0) {
        val_store(r->k, r->base, &old);
        src_set(c, key, old_src);
        swd_diag_add(d, SWD_DIAG_ERROR, "%s: the new value could not be applied: %s", label,
                     swd_strerror(rc));
    }
    val_free(r->k, &old);
    free(old_text);
    free(new_text);
    return rc;
}

static int set_text(swd_config_t *c, const char *key, const char *value, swd_config_source_t src,
                    const char *label, swd_diag_t *d) {
    char why[WHY_CAP];
    cfg_ref_t r;
    int rc = resolve(c, key, &r, why, sizeof why);
    if (rc != 0) {
        swd_diag_add(d, SWD_DIAG_ERROR, "%s: %s", label, why);
        return rc;
    }
    if (r.k->flags & SWD_CONFIG_FIXED) {
        swd_diag_add(d, SWD_DIAG_ERROR, "%s: cannot be changed", label);
        return SWD_ECONFIG;
    }
    cfg_val_t v;
    rc = parse_text(r.k, value, &v, why, sizeof why);
    if (rc != 0) {
        swd_diag_add(d, SWD_DIAG_ERROR, "%s: %s", label, why);
        return rc;
    }
    return change(c, &r, key, &v, src, label, d);
}

int swd_config_set(swd_config_t *c, const char *key, const char *value, swd_config_source_t src,
                   swd_diag_t *d) {
    char label[160];
    const swd_config_key_t *k = swd_config_key_find(key);
    label_for(k, k ? k->name : key, src, label, sizeof label);
    return set_text(c, k ? k->name : key, value, src, label, d);
}

int swd_config_get(const swd_config_t *c, const char *key, char *buf, size_t cap) {
    char why[WHY_CAP];
    cfg_ref_t r;
    int rc = resolve(c, key, &r, why, sizeof why);
    if (rc != 0) {
        if (cap > 0) {
            buf[0] = '\0';
        }
        return rc;
    }
    char *text = val_text(r.k, r.base);
    size_t n = strlen(text);
    if (cap > 0) {
        snprintf(buf, cap, "%s", text);
    }
    free(text);
    return n < cap ? 0 : SWD_EOVERFLOW;
}

const char *swd_config_source(const swd_config_t *c, const char *key) {
    char why[WHY_CAP];
    cfg_ref_t r;
    if (resolve(c, key, &r, why, sizeof why) != 0) {
        return NULL;
    }
    return swd_config_source_name(src_get(c, key));
}

int swd_config_backup(const swd_config_t *c, const char *key, swd_config_value_t *out) {
    char why[WHY_CAP];
    cfg_ref_t r;
    memset(out, 0, sizeof *out);
    int rc = resolve(c, key, &r, why, sizeof why);
    if (rc != 0) {
        return rc;
    }
    out->text = val_text(r.k, r.base);
    out->source = src_get(c, key);
    return 0;
}

int swd_config_restore(swd_config_t *c, const char *key, const swd_config_value_t *v) {
    char label[160];
    snprintf(label, sizeof label, "%s", key);
    // Restoring is setting the saved text again: the same parse, store and
    // hooks, so a rollback cannot take a path a forward change did not.
    return set_text(c, key, v->text, v->source, label, NULL);
}

void swd_config_value_free(swd_config_value_t *v) {
    free(v->text);
    v->text = NULL;
}

int swd_config_on_change(swd_config_t *c, const char *key, swd_config_change_cb cb, void *data) {
    if (key != NULL && strncmp(key, "pools.", 6) != 0 && !swd_config_has_key(key)) {
        return SWD_ENOTFOUND;
    }
    struct swd_config_state *st = c->state;
    st->hooks = swd_xrealloc(st->hooks, (st->n_hooks + 1) * sizeof *st->hooks);
    st->hooks[st->n_hooks].key = key ? swd_xstrdup(key) : NULL;
    st->hooks[st->n_hooks].cb = cb;
    st->hooks[st->n_hooks].data = data;
    st->n_hooks++;
    return 0;
}

int swd_config_off_change(swd_config_t *c, const char *key, swd_config_change_cb cb, void *data) {
    struct swd_config_state *st = c->state;
    for (size_t i = 0; i < st->n_hooks; i++) {
        cfg_hook_t *h = &st->hooks[i];
        bool same_key = (h->key == NULL && key == NULL) ||
                        (h->key != NULL && key != NULL && strcmp(h->key, key) == 0);
        if (same_key && h->cb == cb && h->data == data) {
            free(h->key);
            memmove(h, h + 1, (st->n_hooks - i - 1) * sizeof *h);
            st->n_hooks--;
            return 0;
        }
    }
    return SWD_ENOTFOUND;
}

// ===========================================================================
// Environment

static const char *env_get(char **envp, const char *name) {
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') {
            return *e + n + 1;
        }
    }
    return NULL;
}

static bool env_known(const char *var, size_t n) {
    char env[128];
    for (size_t i = 0; i < N_MAIN_KEYS; i++) {
        env_name(main_keys[i].name, env, sizeof env);
        const char *alias = main_keys[i].env_alias;
        if ((strlen(env) == n && memcmp(env, var, n) == 0) ||
            (alias && strlen(alias) == n && memcmp(alias, var, n) == 0)) {
            return true;
        }
    }
    return false;
}

int swd_config_load_env(swd_config_t *c, char **envp, swd_diag_t *d) {
    bool bad = false;
    for (size_t i = 0; i < N_MAIN_KEYS; i++) {
        const swd_config_key_t *k = &main_keys[i];
        char env[128];
        char label[160];
        env_name(k->name, env, sizeof env);
        const char *lv = env_get(envp, env);
        const char *av = k->env_alias ? env_get(envp, k->env_alias) : NULL;
        if (lv != NULL && av != NULL && strcmp(lv, av) != 0) {
            swd_diag_add(d, SWD_DIAG_ERROR,
                         "environment: %s: conflicts with %s (both set, to different values)",
                         k->env_alias, env);
            bad = true;
            continue;
        }
        if (lv == NULL && av == NULL) {
            continue;
        }
        snprintf(label, sizeof label, "environment: %s", lv ? env : k->env_alias);
        bad |= set_text(c, k->name, lv ? lv : av, SWD_CONFIG_ENV, label, d) != 0;
    }
    for (char **e = envp; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        if (strncmp(*e, "SWARMD_", 7) != 0 || env_known(*e, n)) {
            continue;
        }
        swd_diag_add(d, SWD_DIAG_WARNING, "environment: %.*s: %s", (int)n, *e,
                     strncmp(*e, "SWARMD_POOLS_", 13) == 0
                         ? "pools cannot be set from the environment; ignored"
                         : "unknown variable, ignored");
    }
    return bad ? SWD_ECONFIG : 0;
}

// ===========================================================================
// Relations between keys

int swd_config_validate(const swd_config_t *c, swd_diag_t *d) {
    bool bad = false;
    if (c->agents.degraded_after > c->agents.dead_after) {
        swd_diag_add(d, SWD_DIAG_ERROR,
                     "agents.degraded_after: must not exceed agents.dead_after (%lld > %lld)",
                     (long long)c->agents.degraded_after, (long long)c->agents.dead_after);
        bad = true;
    }
    if (c->scheduler.backoff_base_ms > c->scheduler.backoff_max_ms) {
        swd_diag_add(d, SWD_DIAG_ERROR,
                     "scheduler.backoff_base_ms: must not exceed scheduler.backoff_max_ms "
                     "(%lld > %lld)",
                     (long long)c->scheduler.backoff_base_ms,
                     (long long)c->scheduler.backoff_max_ms);
        bad = true;
    }
    if (c->limits.max_write_buffer_bytes < c->limits.max_message_bytes) {
        swd_diag_add(d, SWD_DIAG_ERROR,
                     "limits.max_write_buffer_bytes: must be at least limits.max_message_bytes "
                     "(%lld < %lld)",
                     (long long)c->limits.max_write_buffer_bytes,
                     (long long)c->limits.max_message_bytes);
        bad = true;
    }
    // Port 0 picks a free port, so two listeners may both ask for it.
    const char *rpc = c->listen.rpc;
    const char *http = c->listen.http;
    size_t rl = rpc ? strlen(rpc) : 0;
    if (rpc && http && strcmp(rpc, http) == 0 && !(rl >= 2 && strcmp(rpc + rl - 2, ":0") == 0)) {
        swd_diag_add(d, SWD_DIAG_ERROR, "listen.http: the same address as listen.rpc (%s)", rpc);
        bad = true;
    }
    return bad ? SWD_ECONFIG : 0;
}

// ===========================================================================
// Printing

static void print_key(const swd_config_t *c, const swd_config_key_t *k, const void *base,
                      const char *key, const char *indent, swd_buf_t *b) {
    buf_printf(b, "%s%s: ", indent, k->name + (base == c ? strcspn(k->name, ".") + 1 : 0));
    fmt_value(k, base, b, FMT_PRINT);
    swd_config_source_t src = src_get(c, key);
    if (src != SWD_CONFIG_DEFAULT) {
        buf_printf(b, "  # %s", swd_config_source_name(src));
    }
    buf_puts(b, "\n");
}

static void print_pools(const swd_config_t *c, swd_buf_t *b) {
    if (c->n_pools == 0) {
        buf_puts(b, "pools: []\n");
        return;
    }
    buf_puts(b, "pools:\n");
    for (size_t i = 0; i < c->n_pools; i++) {
        const swd_pool_config_t *p = &c->pools[i];
        for (size_t j = 0; j < N_POOL_KEYS; j++) {
            const swd_config_key_t *k = &pool_keys[j];
            if (!key_for_kind(k, p->kind)) {
                continue;
            }
            char *key = swd_xasprintf("pools.%s.%s", p->name, k->name);
            print_key(c, k, p, key, j == 0 ? "  - " : "    ", b);
            free(key);
        }
    }
}

void swd_config_print(const swd_config_t *c, FILE *out) {
    swd_buf_t b;
    swd_buf_init(&b);
    buf_puts(&b, "# swarmd effective configuration; secrets are shown as \"***\"\n");
    size_t prev_len = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < N_MAIN_KEYS; i++) {
        const swd_config_key_t *k = &main_keys[i];
        size_t sec_len = strcspn(k->name, ".");
        if (prev == NULL || sec_len != prev_len || memcmp(prev, k->name, sec_len) != 0) {
            buf_printf(&b, "%.*s:\n", (int)sec_len, k->name);
            prev = k->name;
            prev_len = sec_len;
        }
        print_key(c, k, c, k->name, "  ", &b);
    }
    print_pools(c, &b);
    fwrite(b.data, 1, b.len, out);
    swd_buf_close(&b);
}

// ===========================================================================
// The YAML file
//
//   fopen ─▶ yaml_parser_load (document API: nodes carry line marks)
//        ─▶ root mapping: section ─▶ key ─▶ parse_node ─▶ change()
//                         pools   ─▶ one swd_pool_config_t per item

typedef struct yload {
    swd_config_t *c;
    const char *path;
    yaml_document_t *doc;
    swd_diag_t *d;
    size_t errors;
} yload_t;

static void yerr(yload_t *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void yerr(yload_t *y, const yaml_node_t *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    swd_diag_add(y->d, SWD_DIAG_ERROR, "%s:%zu: %s", y->path, (size_t)n->start_mark.line + 1, msg);
    free(msg);
    y->errors++;
}

/// The text of a mapping key, or NULL after reporting it (`where` names it).
static const char *ykey(yload_t *y, yaml_node_t *kn, const char *where) {
    if (kn == NULL || kn->type != YAML_SCALAR_NODE) {
        if (kn != NULL) {
            yerr(y, kn, "%s: expected a plain key, got %s", where, node_kind(kn));
        }
        return NULL;
    }
    return (const char *)kn->data.scalar.value;
}

/// True when an earlier pair of mapping `m` than `p` has the key `name`.
static bool ydup(yload_t *y, yaml_node_t *m, yaml_node_pair_t *p, const char *name) {
    for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, q->key);
        if (kn && kn->type == YAML_SCALAR_NODE &&
            strcmp((const char *)kn->data.scalar.value, name) == 0) {
            return true;
        }
    }
    return false;
}

static void load_section(yload_t *y, const char *section, yaml_node_t *sn) {
    if (node_is_null(sn)) {
        return;
    }
    if (sn->type != YAML_MAPPING_NODE) {
        yerr(y, sn, "%s: expected a mapping of keys, got %s", section, node_kind(sn));
        return;
    }
    for (yaml_node_pair_t *p = sn->data.mapping.pairs.start; p < sn->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        const char *name = ykey(y, kn, section);
        if (name == NULL || vn == NULL) {
            continue;
        }
        char key[128];
        snprintf(key, sizeof key, "%s.%s", section, name);
        const swd_config_key_t *k = swd_config_key_find(key);
        char why[WHY_CAP];
        cfg_val_t v;
        if (k == NULL) {
            yerr(y, kn, "%s: unknown key", key);
        } else if (ydup(y, sn, p, name)) {
            yerr(y, kn, "%s: given twice", key);
        } else if (parse_node(k, y->doc, vn, &v, why, sizeof why) != 0) {
            yerr(y, vn, "%s: %s", key, why);
        } else {
            char label[WHY_CAP];
            cfg_ref_t r = {k, y->c};
            snprintf(label, sizeof label, "%s:%zu: %s", y->path, (size_t)vn->start_mark.line + 1,
                     key);
            if (change(y->c, &r, k->name, &v, SWD_CONFIG_FILE, label, y->d) != 0) {
                y->errors++;
            }
        }
    }
}

/// The pool's kind from its `kind:` key; -1 when missing or bad (reported).
static int pool_kind(yload_t *y, yaml_node_t *pn, const char *where) {
    const swd_config_key_t *k = pool_key_find("kind");
    for (yaml_node_pair_t *p = pn->data.mapping.pairs.start; p < pn->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        if (kn && vn && kn->type == YAML_SCALAR_NODE &&
            strcmp((const char *)kn->data.scalar.value, "kind") == 0) {
            char why[WHY_CAP];
            cfg_val_t v;
            if (parse_node(k, y->doc, vn, &v, why, sizeof why) != 0) {
                yerr(y, vn, "%s.kind: %s", where, why);
                return -1;
            }
            return v.e;
        }
    }
    yerr(y, pn, "%s.kind: required (process, remote or http)", where);
    return -1;
}

/// Fills `pool` from mapping `pn`; returns the number of errors found, and
/// in `*seen_out` one bit per pool key given.
static size_t load_pool(yload_t *y, yaml_node_t *pn, const char *where, swd_pool_config_t *pool,
                        uint32_t *seen_out) {
    size_t errors = y->errors;
    int kind = pool_kind(y, pn, where);
    uint32_t seen = 0;
    for (yaml_node_pair_t *p = pn->data.mapping.pairs.start; p < pn->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        const char *name = ykey(y, kn, where);
        if (name == NULL || vn == NULL) {
            continue;
        }
        const swd_config_key_t *k = pool_key_find(name);
        char why[WHY_CAP];
        char kinds[64];
        cfg_val_t v;
        // Given counts for `required`, even when the value turns out bad.
        seen |= k ? 1u << (k - pool_keys) : 0;
        if (k == NULL) {
            yerr(y, kn, "%s.%s: unknown key", where, name);
        } else if (ydup(y, pn, p, name)) {
            yerr(y, kn, "%s.%s: given twice", where, name);
        } else if (kind >= 0 && !key_for_kind(k, (swd_pool_kind_t)kind)) {
            kinds_text(k, kinds, sizeof kinds);
            yerr(y, kn, "%s.%s: a key of %s pools, not of %s pools", where, name, kinds,
                 kind_names[kind]);
        } else if (parse_node(k, y->doc, vn, &v, why, sizeof why) != 0) {
            if (strcmp(name, "kind") != 0) { // pool_kind() reported it already
                yerr(y, vn, "%s.%s: %s", where, name, why);
            }
        } else {
            val_store(k, pool, &v);
        }
    }
    for (size_t i = 0; i < N_POOL_KEYS; i++) {
        const swd_config_key_t *k = &pool_keys[i];
        if (!(k->flags & SWD_CONFIG_REQUIRED) || (seen & (1u << i)) ||
            strcmp(k->name, "kind") == 0) {
            continue;
        }
        if (k->kinds == 0) {
            yerr(y, pn, "%s.%s: required", where, k->name);
        } else if (kind >= 0 && key_for_kind(k, (swd_pool_kind_t)kind)) {
            yerr(y, pn, "%s.%s: required for %s pools", where, k->name, kind_names[kind]);
        }
    }
    if (pool->min > pool->max) {
        yerr(y, pn, "%s.min: greater than max (%lld > %lld)", where, (long long)pool->min,
             (long long)pool->max);
    }
    *seen_out = seen;
    return y->errors - errors;
}

static void load_pools(yload_t *y, yaml_node_t *sn) {
    if (!node_is_null(sn) && sn->type != YAML_SEQUENCE_NODE) {
        yerr(y, sn, "pools: expected a list of pools, got %s", node_kind(sn));
        return;
    }
    size_t items = node_is_null(sn)
                       ? 0
                       : (size_t)(sn->data.sequence.items.top - sn->data.sequence.items.start);
    swd_pool_config_t *pools = swd_xcalloc(items + 1, sizeof *pools);
    uint32_t *seen = swd_xcalloc(items + 1, sizeof *seen);
    size_t n = 0;
    for (yaml_node_item_t *it = node_is_null(sn) ? NULL : sn->data.sequence.items.start;
         it && it < sn->data.sequence.items.top; it++) {
        yaml_node_t *pn = yaml_document_get_node(y->doc, *it);
        char where[32];
        snprintf(where, sizeof where, "pools[%zu]", (size_t)(it - sn->data.sequence.items.start));
        if (pn == NULL || pn->type != YAML_MAPPING_NODE) {
            if (pn != NULL) {
                yerr(y, pn, "%s: expected a mapping, got %s", where, node_kind(pn));
            }
            continue;
        }
        swd_pool_config_t pool;
        swd_pool_config_init(&pool);
        size_t errs = load_pool(y, pn, where, &pool, &seen[n]);
        for (size_t i = 0; errs == 0 && i < n; i++) {
            if (strcmp(pools[i].name, pool.name) == 0) {
                yerr(y, pn, "%s.name: another pool is called \"%s\"", where, pool.name);
                errs++;
            }
        }
        // A pool with errors is dropped: every pool kept has its required keys.
        if (errs != 0) {
            swd_pool_config_close(&pool);
            continue;
        }
        pools[n++] = pool;
    }
    pools_free(y->c->pools, y->c->n_pools);
    y->c->pools = pools;
    y->c->n_pools = n;
    src_drop_prefix(y->c, "pools.");
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < N_POOL_KEYS; j++) {
            if (seen[i] & (1u << j)) {
                char *key = swd_xasprintf("pools.%s.%s", pools[i].name, pool_keys[j].name);
                src_set(y->c, key, SWD_CONFIG_FILE);
                free(key);
            }
        }
    }
    free(seen);
}

static bool section_known(const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < N_MAIN_KEYS; i++) {
        if (strncmp(main_keys[i].name, name, n) == 0 && main_keys[i].name[n] == '.') {
            return true;
        }
    }
    return false;
}

static void load_root(yload_t *y, yaml_node_t *root, const char *const *ignore) {
    if (node_is_null(root)) {
        return;
    }
    if (root->type != YAML_MAPPING_NODE) {
        yerr(y, root, "expected a mapping of sections (listen:, agents:, ...), got %s",
             node_kind(root));
        return;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        const char *name = ykey(y, kn, "section");
        bool skip = false;
        for (const char *const *ig = ignore; name && ig && *ig; ig++) {
            skip |= strcmp(*ig, name) == 0;
        }
        if (name == NULL || vn == NULL || skip) {
            continue;
        }
        if (ydup(y, root, p, name)) {
            yerr(y, kn, "%s: section given twice", name);
        } else if (strcmp(name, "pools") == 0) {
            load_pools(y, vn);
        } else if (section_known(name)) {
            load_section(y, name, vn);
        } else {
            yerr(y, kn, "%s: unknown section", name);
        }
    }
}

int swd_config_load_file_ex(swd_config_t *c, const char *path, const char *const *ignore,
                            swd_diag_t *d) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        swd_diag_add(d, SWD_DIAG_ERROR, "%s: cannot read: %s", path, strerror(errno));
        return SWD_ECONFIG;
    }
    yload_t y = {.c = c, .path = path, .d = d};
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        const char *problem = parser.problem ? parser.problem : "unreadable";
        if (parser.error == YAML_READER_ERROR) {
            swd_diag_add(d, SWD_DIAG_ERROR, "%s: not valid YAML: %s at byte %zu", path, problem,
                         parser.problem_offset);
        } else {
            swd_diag_add(d, SWD_DIAG_ERROR, "%s:%zu: not valid YAML: %s%s%s", path,
                         parser.problem_mark.line + 1, problem, parser.context ? " " : "",
                         parser.context ? parser.context : "");
        }
        y.errors++;
    } else {
        y.doc = &doc;
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root != NULL) {
            load_root(&y, root, ignore);
        }
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return y.errors ? SWD_ECONFIG : 0;
}

int swd_config_load_file(swd_config_t *c, const char *path, swd_diag_t *d) {
    return swd_config_load_file_ex(c, path, NULL, d);
}
