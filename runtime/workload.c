#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "proto/alloc.h"
#include "proto/errors.h"
#include "runtime/map.h"
#include "runtime/process.h"
#include "runtime/rng.h"
#include "runtime/workload.h"
#include "scheduler/task.h"

// Bounds that keep a typo from asking for a billion tasks or a year-long
// timeout.
#define MAX_COUNT 1000000
#define MAX_TOKENS INT64_C(100000000)
#define MAX_TIMEOUT_MS INT64_C(86400000)
#define MAX_RETRIES 1000
#define MAX_KEY_BYTES 256
#define MAX_TYPE_BYTES 128
#define MAX_LINE_BYTES (16 * 1024 * 1024)

const char *const swd_workload_keys[] = {"name",       "description", "seed", "tasks",
                                         "tasks_file", "budget",      NULL};

// ---------------------------------------------------------------------------
// Loading state

/// One task before its dependencies are resolved.
typedef struct raw {
    swd_workload_task_t t;
    char **pats; // `after` entries, {i} already replaced
    size_t npats;
    const char *file; // for messages: the workload or the tasks file
    size_t line;      // of its `after` (or the entry / JSON line)
} raw_t;

typedef struct wload {
    swd_workload_t *w;
    const swd_workload_opts_t *o;
    const char *path;
    yaml_document_t *doc;
    swd_diag_t *d;
    size_t errors;
    swd_rng_t rng;
    raw_t *raws;
    size_t n, cap;
    char *tasks_file; // as written, resolved against the workload's directory
    size_t tasks_file_line;
} wload_t;

static void vadd_err(wload_t *y, const char *file, size_t line, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void vadd_err(wload_t *y, const char *file, size_t line, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    swd_diag_add(y->d, SWD_DIAG_ERROR, "%s:%zu: %s", file, line, msg);
    y->errors++;
}

static void werr(wload_t *y, const char *file, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void werr(wload_t *y, const char *file, size_t line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vadd_err(y, file, line, fmt, ap);
    va_end(ap);
}

static size_t line_of(const yaml_node_t *n) {
    return (size_t)n->start_mark.line + 1;
}

static void nerr(wload_t *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void nerr(wload_t *y, const yaml_node_t *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vadd_err(y, y->path, line_of(n), fmt, ap);
    va_end(ap);
}

static const char *kind_of(const yaml_node_t *n) {
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}

static const char *scalar(const yaml_node_t *n) {
    return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool is_plain(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool parse_int(const char *s, int64_t *out) {
    if (s == NULL || *s == '\0') {
        return false;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_num(const char *s, double *out) {
    if (s == NULL || *s == '\0') {
        return false;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v)) {
        return false;
    }
    *out = v;
    return true;
}

/// An integer in [lo, hi] from a scalar node, or false after reporting it.
static bool get_int(wload_t *y, const yaml_node_t *n, const char *where, int64_t lo, int64_t hi,
                    int64_t *out) {
    int64_t v;
    if (!parse_int(scalar(n), &v) || v < lo || v > hi) {
        if (n->type != YAML_SCALAR_NODE) {
            nerr(y, n, "%s: expected an integer %lld..%lld, got %s", where, (long long)lo,
                 (long long)hi, kind_of(n));
        } else {
            nerr(y, n, "%s: expected an integer %lld..%lld, got \"%.60s\"", where, (long long)lo,
                 (long long)hi, scalar(n));
        }
        return false;
    }
    *out = v;
    return true;
}

static const char *get_str(wload_t *y, const yaml_node_t *n, const char *where) {
    const char *s = scalar(n);
    if (s == NULL || s[0] == '\0') {
        nerr(y, n, "%s: expected a non-empty string, got %s", where, s ? "\"\"" : kind_of(n));
        return NULL;
    }
    return s;
}

static yaml_node_t *node(wload_t *y, int id) {
    return yaml_document_get_node(y->doc, id);
}

// ---------------------------------------------------------------------------
// Templates: {i} and {count}

typedef struct subst {
    int64_t i, count;
} subst_t;

static char *expand(const char *s, const subst_t *sb) {
    size_t cap = strlen(s) + 32, len = 0;
    char *out = swd_xmalloc(cap);
    for (const char *p = s; *p != '\0';) {
        char num[32] = "";
        size_t skip = 0;
        if (strncmp(p, "{i}", 3) == 0) {
            snprintf(num, sizeof(num), "%lld", (long long)sb->i);
            skip = 3;
        } else if (strncmp(p, "{count}", 7) == 0) {
            snprintf(num, sizeof(num), "%lld", (long long)sb->count);
            skip = 7;
        }
        size_t add = skip ? strlen(num) : 1;
        if (len + add + 1 > cap) {
            cap = (len + add + 1) * 2;
            out = swd_xrealloc(out, cap);
        }
        memcpy(out + len, skip ? num : p, add);
        len += add;
        p += skip ? skip : 1;
    }
    out[len] = '\0';
    return out;
}

// A plain scalar is typed as YAML 1.2's core schema says; a quoted one is a
// string. A string that is exactly "{i}" becomes the number.
static json_t *scalar_json(const yaml_node_t *n, const subst_t *sb) {
    const char *s = (const char *)n->data.scalar.value;
    if (strcmp(s, "{i}") == 0) {
        return json_integer(sb->i);
    }
    if (is_plain(n)) {
        int64_t iv;
        double dv;
        if (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0) {
            return json_null();
        }
        if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
            return json_boolean(s[0] == 't');
        }
        if (parse_int(s, &iv)) {
            return json_integer(iv);
        }
        if (parse_num(s, &dv)) {
            return json_real(dv);
        }
    }
    char *e = expand(s, sb);
    json_t *j = json_string(e);
    free(e);
    return j ? j : json_string("");
}

static json_t *to_json(wload_t *y, yaml_node_t *n, const subst_t *sb, int depth) {
    if (n == NULL || depth > 64) {
        return json_null();
    }
    if (n->type == YAML_SCALAR_NODE) {
        return scalar_json(n, sb);
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            json_array_append_new(a, to_json(y, node(y, *it), sb, depth + 1));
        }
        return a;
    }
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(y, p->key));
        if (k != NULL) {
            char *ek = expand(k, sb);
            json_object_set_new(o, ek, to_json(y, node(y, p->value), sb, depth + 1));
            free(ek);
        }
    }
    return o;
}

// ---------------------------------------------------------------------------
// estimated_tokens: a number or a distribution

typedef enum dist_kind { DIST_FIXED, DIST_UNIFORM, DIST_NORMAL, DIST_LOGNORMAL } dist_kind_t;

typedef struct dist {
    dist_kind_t kind;
    double a, b;   // fixed: a; uniform: min, max; normal: mean, stddev; lognormal: median, sigma
    double lo, hi; // clamp
} dist_t;

static const char *const dist_names[] = {"fixed", "uniform", "normal", "lognormal", NULL};
// The two parameters each kind needs, by name.
static const char *const dist_params[][2] = {
    {"value", NULL}, {"min", "max"}, {"mean", "stddev"}, {"median", "sigma"}};

static bool dist_param(wload_t *y, yaml_node_t *m, const char *where, const char *name, double *out,
                       bool required) {
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(y, p->key));
        if (k != NULL && strcmp(k, name) == 0) {
            yaml_node_t *v = node(y, p->value);
            if (!parse_num(scalar(v), out) || *out < 0) {
                nerr(y, v, "%s.%s: expected a number >= 0", where, name);
                return false;
            }
            return true;
        }
    }
    if (required) {
        nerr(y, m, "%s.%s: required", where, name);
    }
    return !required;
}

static bool dist_keys_ok(wload_t *y, yaml_node_t *m, const char *where, int kind) {
    bool ok = true;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node(y, p->key);
        const char *k = scalar(kn);
        bool known =
            k && (strcmp(k, "dist") == 0 || strcmp(k, "min") == 0 || strcmp(k, "max") == 0);
        for (int j = 0; j < 2 && k && !known; j++) {
            known = dist_params[kind][j] && strcmp(k, dist_params[kind][j]) == 0;
        }
        if (!known) {
            nerr(y, kn, "%s.%s: unknown key for dist %s", where, k ? k : "?", dist_names[kind]);
            ok = false;
        }
    }
    return ok;
}

static bool parse_dist(wload_t *y, yaml_node_t *n, const char *where, dist_t *out) {
    *out = (dist_t){.kind = DIST_FIXED, .lo = 1, .hi = (double)MAX_TOKENS};
    if (n->type == YAML_SCALAR_NODE) {
        int64_t v;
        if (!get_int(y, n, where, 0, MAX_TOKENS, &v)) {
            return false;
        }
        out->a = (double)v;
        out->lo = 0;
        return true;
    }
    if (n->type != YAML_MAPPING_NODE) {
        nerr(y, n, "%s: expected a number or {dist: uniform|normal|lognormal, ...}", where);
        return false;
    }
    const char *kind = NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(y, p->key));
        if (k && strcmp(k, "dist") == 0) {
            kind = scalar(node(y, p->value));
        }
    }
    int kd = -1;
    for (int i = 0; kind && dist_names[i]; i++) {
        kd = strcmp(kind, dist_names[i]) == 0 ? i : kd;
    }
    if (kd < 0) {
        nerr(y, n, "%s.dist: expected fixed, uniform, normal or lognormal", where);
        return false;
    }
    out->kind = (dist_kind_t)kd;
    bool ok = dist_keys_ok(y, n, where, kd);
    ok &= dist_param(y, n, where, dist_params[kd][0], &out->a, true);
    if (dist_params[kd][1] != NULL) {
        ok &= dist_param(y, n, where, dist_params[kd][1], &out->b, true);
    }
    ok &= dist_param(y, n, where, "min", &out->lo, false);
    ok &= dist_param(y, n, where, "max", &out->hi, false);
    if (ok && kd == DIST_UNIFORM && out->b < out->a) {
        nerr(y, n, "%s: max is below min", where);
        ok = false;
    }
    return ok;
}

static uint64_t dist_draw(const dist_t *d, swd_rng_t *rng) {
    double v = d->a;
    switch (d->kind) {
    case DIST_UNIFORM:
        v = d->a + (d->b - d->a) * swd_rng_double(rng);
        break;
    case DIST_NORMAL:
        v = d->a + d->b * swd_rng_normal(rng);
        break;
    case DIST_LOGNORMAL:
        v = d->a * exp(d->b * swd_rng_normal(rng));
        break;
    case DIST_FIXED:
    default:
        break;
    }
    v = v < d->lo ? d->lo : (v > d->hi ? d->hi : v);
    return (uint64_t)llround(v);
}

// ---------------------------------------------------------------------------
// Generators

typedef struct gen {
    const char *type;
    const char *key; // template, NULL: the default
    int64_t count;
    int priority;
    dist_t tokens;
    int64_t timeout_ms, max_retries;
    yaml_node_t *payload, *labels, *after;
    size_t line; // of the entry
} gen_t;

static raw_t *raw_push(wload_t *y) {
    if (y->n == y->cap) {
        y->cap = y->cap ? y->cap * 2 : 64;
        y->raws = swd_xrealloc(y->raws, y->cap * sizeof(raw_t));
    }
    raw_t *r = &y->raws[y->n++];
    memset(r, 0, sizeof(*r));
    r->t.max_retries = -1;
    r->t.estimated_tokens = 1000;
    r->t.priority = SWD_PRIO_MEDIUM;
    return r;
}

static bool parse_priority(const char *s, int *out) {
    for (int i = 0; s && swd_priority_names[i]; i++) {
        if (strcmp(s, swd_priority_names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    return false;
}

static bool parse_after(wload_t *y, yaml_node_t *n, const char *where) {
    if (n->type != YAML_SEQUENCE_NODE) {
        nerr(y, n, "%s.after: expected a list of task keys, got %s", where, kind_of(n));
        return false;
    }
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        if (get_str(y, node(y, *it), "after[]") == NULL) {
            return false;
        }
    }
    return true;
}

// One `key: value` of a generator; false after reporting a problem.
static bool gen_field(wload_t *y, gen_t *g, const char *k, yaml_node_t *v, const char *where) {
    char w[96];
    snprintf(w, sizeof(w), "%s.%s", where, k);
    if (strcmp(k, "type") == 0) {
        g->type = get_str(y, v, w);
        if (g->type && strlen(g->type) > MAX_TYPE_BYTES) {
            nerr(y, v, "%s: longer than %d bytes", w, MAX_TYPE_BYTES);
            g->type = NULL;
        }
        return g->type != NULL;
    }
    if (strcmp(k, "count") == 0) {
        return get_int(y, v, w, 1, MAX_COUNT, &g->count);
    }
    if (strcmp(k, "priority") == 0) {
        if (!parse_priority(scalar(v), &g->priority)) {
            nerr(y, v, "%s: expected critical, high, medium or low", w);
            return false;
        }
        return true;
    }
    if (strcmp(k, "estimated_tokens") == 0) {
        return parse_dist(y, v, w, &g->tokens);
    }
    if (strcmp(k, "timeout_ms") == 0) {
        return get_int(y, v, w, 1, MAX_TIMEOUT_MS, &g->timeout_ms);
    }
    if (strcmp(k, "max_retries") == 0) {
        return get_int(y, v, w, 0, MAX_RETRIES, &g->max_retries);
    }
    if (strcmp(k, "key") == 0) {
        return (g->key = get_str(y, v, w)) != NULL;
    }
    if (strcmp(k, "payload") == 0) {
        g->payload = v;
        return true;
    }
    if (strcmp(k, "labels") == 0) {
        if (v->type != YAML_MAPPING_NODE) {
            nerr(y, v, "%s: expected a mapping, got %s", w, kind_of(v));
            return false;
        }
        g->labels = v;
        return true;
    }
    if (strcmp(k, "after") == 0) {
        g->after = v;
        return parse_after(y, v, where);
    }
    nerr(y, v,
         "%s: unknown key (type, count, key, priority, estimated_tokens, payload, "
         "timeout_ms, max_retries, after, labels)",
         w);
    return false;
}

static void gen_expand(wload_t *y, const gen_t *g, uint32_t gi, int64_t count) {
    char deftmpl[MAX_TYPE_BYTES + 8];
    snprintf(deftmpl, sizeof(deftmpl), "%s%s", g->type, count > 1 ? "-{i}" : "");
    const char *tmpl = g->key ? g->key : deftmpl;
    for (int64_t i = 1; i <= count; i++) {
        subst_t sb = {i, count};
        raw_t *r = raw_push(y);
        r->t.key = expand(tmpl, &sb);
        r->t.type = swd_xstrdup(g->type);
        r->t.priority = g->priority;
        r->t.estimated_tokens = dist_draw(&g->tokens, &y->rng);
        r->t.timeout_ms = g->timeout_ms;
        if (r->t.timeout_ms > 0 && y->o->time_scale > 0) {
            r->t.timeout_ms = (int64_t)llround((double)r->t.timeout_ms * y->o->time_scale);
            r->t.timeout_ms = r->t.timeout_ms < 1 ? 1 : r->t.timeout_ms;
        }
        r->t.max_retries = g->max_retries;
        r->t.payload = g->payload ? to_json(y, g->payload, &sb, 0) : NULL;
        r->t.labels = g->labels ? to_json(y, g->labels, &sb, 0) : NULL;
        r->t.source = gi;
        r->file = y->path;
        r->line = g->after ? line_of(g->after) : g->line;
        size_t np =
            g->after
                ? (size_t)(g->after->data.sequence.items.top - g->after->data.sequence.items.start)
                : 0;
        r->pats = swd_xcalloc(np ? np : 1, sizeof(char *));
        for (size_t j = 0; j < np; j++) {
            r->pats[r->npats++] =
                expand(scalar(node(y, g->after->data.sequence.items.start[j])), &sb);
        }
    }
}

static void parse_generator(wload_t *y, yaml_node_t *n, uint32_t gi) {
    char where[32];
    snprintf(where, sizeof(where), "tasks[%u]", gi);
    if (n->type != YAML_MAPPING_NODE) {
        nerr(y, n, "%s: expected a mapping (type, count, ...), got %s", where, kind_of(n));
        return;
    }
    gen_t g = {.count = 1, .priority = SWD_PRIO_MEDIUM, .max_retries = -1, .line = line_of(n)};
    g.tokens = (dist_t){.kind = DIST_FIXED, .a = 1000, .lo = 0, .hi = (double)MAX_TOKENS};
    bool ok = true;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node(y, p->key);
        const char *k = scalar(kn);
        if (k == NULL) {
            nerr(y, kn, "%s: expected a plain key", where);
            ok = false;
            continue;
        }
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            const char *prev = scalar(node(y, q->key));
            if (prev != NULL && strcmp(prev, k) == 0) {
                nerr(y, kn, "%s.%s: given twice", where, k);
                ok = false;
            }
        }
        ok &= gen_field(y, &g, k, node(y, p->value), where);
    }
    if (g.type == NULL && ok) {
        nerr(y, n, "%s.type: required", where);
        ok = false;
    }
    if (g.key != NULL && g.count > 1 && strstr(g.key, "{i}") == NULL) {
        nerr(y, n, "%s.key: \"%s\" names %lld tasks: put {i} in it", where, g.key,
             (long long)g.count);
        ok = false;
    }
    if (!ok) {
        return;
    }
    int64_t count = g.count;
    if (y->o->scale > 0 && y->o->scale != 1.0) {
        count = (int64_t)llround((double)g.count * y->o->scale);
        count = count < 1 ? 1 : count;
    }
    gen_expand(y, &g, gi, count);
}

// ---------------------------------------------------------------------------
// tasks_file: one task.submit params object per line

static bool json_key_ok(const char *k) {
    static const char *const known[] = {"type",       "payload",     "priority", "estimated_tokens",
                                        "timeout_ms", "max_retries", "key",      "after",
                                        "after_keys", "labels",      NULL};
    for (size_t i = 0; known[i]; i++) {
        if (strcmp(known[i], k) == 0) {
            return true;
        }
    }
    return false;
}

static bool json_uint(const json_t *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static bool json_after(raw_t *r, const json_t *arr) {
    if (arr == NULL) {
        return true;
    }
    if (!json_is_array(arr)) {
        return false;
    }
    size_t i;
    json_t *v;
    r->pats = swd_xrealloc(r->pats, (r->npats + json_array_size(arr) + 1) * sizeof(char *));
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            return false;
        }
        r->pats[r->npats++] = swd_xstrdup(json_string_value(v));
    }
    return true;
}

// Fills `r` from one line's object; the reason of a problem goes to `why`.
static bool json_task(raw_t *r, json_t *o, size_t lineno, const char *base, char *why, size_t cap) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (!json_key_ok(k)) {
            snprintf(why, cap, "unknown key '%.60s'", k);
            return false;
        }
    }
    const char *type = json_string_value(json_object_get(o, "type"));
    if (type == NULL || type[0] == '\0' || strlen(type) > MAX_TYPE_BYTES) {
        snprintf(why, cap, "type: required, a string of 1-%d bytes", MAX_TYPE_BYTES);
        return false;
    }
    r->t.type = swd_xstrdup(type);
    const char *key = json_string_value(json_object_get(o, "key"));
    r->t.key = key ? swd_xstrdup(key) : swd_xasprintf("%s:%zu", base, lineno);
    json_t *pr = json_object_get(o, "priority");
    int64_t tok = 1000, tmo = 0, ret = -1;
    if ((pr && !parse_priority(json_string_value(pr), &r->t.priority)) ||
        (json_object_get(o, "estimated_tokens") &&
         !json_uint(json_object_get(o, "estimated_tokens"), 0, MAX_TOKENS, &tok)) ||
        (json_object_get(o, "timeout_ms") &&
         !json_uint(json_object_get(o, "timeout_ms"), 1, MAX_TIMEOUT_MS, &tmo)) ||
        (json_object_get(o, "max_retries") &&
         !json_uint(json_object_get(o, "max_retries"), 0, MAX_RETRIES, &ret))) {
        snprintf(why, cap,
                 "priority, estimated_tokens, timeout_ms or max_retries: wrong type or "
                 "out of range");
        return false;
    }
    json_t *labels = json_object_get(o, "labels");
    if ((labels && !json_is_object(labels)) || (key && key[0] == '\0') ||
        !json_after(r, json_object_get(o, "after")) ||
        !json_after(r, json_object_get(o, "after_keys"))) {
        snprintf(why, cap,
                 "labels must be an object, key a non-empty string, after and "
                 "after_keys lists of task keys");
        return false;
    }
    r->t.estimated_tokens = (uint64_t)tok;
    r->t.timeout_ms = tmo;
    r->t.max_retries = ret;
    r->t.payload = json_incref(json_object_get(o, "payload"));
    r->t.labels = json_incref(labels);
    return true;
}

static void load_tasks_file(wload_t *y, const char *file) {
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        werr(y, y->path, y->tasks_file_line, "tasks_file: cannot read %s: %s", file,
             strerror(errno));
        return;
    }
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)len;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) {
            n--;
        }
        if (n == 0 || line[0] == '#') {
            continue;
        }
        json_error_t je;
        json_t *o = json_loadb(line, n, 0, &je);
        char why[256];
        if (o == NULL || !json_is_object(o)) {
            werr(y, file, lineno, "%s",
                 o ? "expected a JSON object (task.submit params)" : je.text);
            json_decref(o);
            continue;
        }
        raw_t *r = raw_push(y);
        r->file = file;
        r->line = lineno;
        r->t.source = UINT32_MAX;
        if (!json_task(r, o, lineno, base, why, sizeof(why))) {
            werr(y, file, lineno, "%s", why);
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
}

// ---------------------------------------------------------------------------
// The pools, as far as the workload must check them before anything starts

static yaml_node_t *map_get(wload_t *y, yaml_node_t *m, const char *key) {
    if (m == NULL || m->type != YAML_MAPPING_NODE) {
        return NULL;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(y, p->key));
        if (k != NULL && strcmp(k, key) == 0) {
            return node(y, p->value);
        }
    }
    return NULL;
}

static void check_pools(wload_t *y, yaml_node_t *n) {
    if (n->type != YAML_SEQUENCE_NODE) {
        return; // runtime/config.c reports it
    }
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *pn = node(y, *it);
        size_t i = (size_t)(it - n->data.sequence.items.start);
        yaml_node_t *kind = map_get(y, pn, "kind");
        const char *ks = scalar(kind);
        yaml_node_t *cmd = map_get(y, pn, "command");
        if ((ks != NULL && strcmp(ks, "process") != 0) || cmd == NULL ||
            cmd->type != YAML_SEQUENCE_NODE ||
            cmd->data.sequence.items.start == cmd->data.sequence.items.top) {
            continue; // a missing command is runtime/config.c's error
        }
        const char *exe = scalar(node(y, cmd->data.sequence.items.start[0]));
        char path[4096];
        int r = exe ? swd_process_find_exe(exe, path, sizeof(path)) : 0;
        if (r < 0) {
            nerr(y, cmd,
                 "pools[%zu].command: cannot run \"%s\": %s (looked next to swarmd, "
                 "in its agents/ directory and in $PATH)",
                 i, exe, uv_strerror(r));
        }
    }
}

// ---------------------------------------------------------------------------
// The top level

static void parse_root(wload_t *y, yaml_node_t *root) {
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(node(y, p->key));
        yaml_node_t *v = node(y, p->value);
        int64_t seed;
        if (k == NULL || v == NULL) {
            continue;
        }
        if (strcmp(k, "name") == 0) {
            const char *s = get_str(y, v, "name");
            if (s != NULL) {
                free(y->w->name);
                y->w->name = swd_xstrdup(s);
            }
        } else if (strcmp(k, "description") == 0) {
            (void)get_str(y, v, "description");
        } else if (strcmp(k, "seed") == 0) {
            if (get_int(y, v, "seed", 0, INT64_MAX, &seed)) {
                swd_rng_seed(&y->rng, (uint64_t)seed);
            }
        } else if (strcmp(k, "budget") == 0) {
            nerr(y, node(y, p->key),
                 "budget: token budgets are not implemented yet; remove the "
                 "section");
        } else if (strcmp(k, "tasks_file") == 0) {
            const char *s = get_str(y, v, "tasks_file");
            y->tasks_file_line = line_of(v);
            if (s != NULL) {
                free(y->tasks_file);
                y->tasks_file = swd_xstrdup(s);
            }
        } else if (strcmp(k, "pools") == 0) {
            check_pools(y, v);
        }
    }
}

static void parse_tasks(wload_t *y, yaml_node_t *root) {
    yaml_node_t *tasks = map_get(y, root, "tasks");
    if (tasks == NULL || (tasks->type == YAML_SCALAR_NODE && is_plain(tasks) &&
                          (scalar(tasks)[0] == '\0' || strcmp(scalar(tasks), "null") == 0))) {
        return;
    }
    if (tasks->type != YAML_SEQUENCE_NODE) {
        nerr(y, tasks, "tasks: expected a list of task generators, got %s", kind_of(tasks));
        return;
    }
    for (yaml_node_item_t *it = tasks->data.sequence.items.start;
         it < tasks->data.sequence.items.top; it++) {
        uint32_t gi = (uint32_t)(it - tasks->data.sequence.items.start);
        parse_generator(y, node(y, *it), gi);
        y->w->ngenerators = gi + 1;
    }
}

// ---------------------------------------------------------------------------
// Dependencies: keys and globs to indices, then a topological order

static bool is_glob(const char *s) {
    return strpbrk(s, "*?[") != NULL;
}

typedef struct idx_list {
    uint32_t *v;
    size_t n;
} idx_list_t;

static idx_list_t *glob_matches(wload_t *y, swd_strmap_t *cache, const char *pat) {
    idx_list_t *l = swd_strmap_get(cache, pat, strlen(pat));
    if (l != NULL) {
        return l;
    }
    l = swd_xcalloc(1, sizeof(*l));
    for (size_t i = 0; i < y->n; i++) {
        if (y->raws[i].t.key != NULL && fnmatch(pat, y->raws[i].t.key, 0) == 0) {
            l->v = swd_xrealloc(l->v, (l->n + 1) * sizeof(uint32_t));
            l->v[l->n++] = (uint32_t)i;
        }
    }
    swd_strmap_put(cache, pat, strlen(pat), l);
    return l;
}

static void free_glob(const char *key, void *value, void *data) {
    idx_list_t *l = value;
    free(l->v);
    free(l);
}

static void add_dep(raw_t *r, uint32_t dep, uint32_t self, uint32_t *mark) {
    // `mark[dep] == self + 1` means already listed for this task.
    if (mark[dep] == self + 1) {
        return;
    }
    mark[dep] = self + 1;
    r->t.after = swd_xrealloc(r->t.after, (r->t.nafter + 1) * sizeof(uint32_t));
    r->t.after[r->t.nafter++] = dep;
}

static void resolve_one(wload_t *y, swd_strmap_t *keys, swd_strmap_t *cache, uint32_t i,
                        uint32_t *mark) {
    raw_t *r = &y->raws[i];
    for (size_t j = 0; j < r->npats; j++) {
        const char *pat = r->pats[j];
        if (is_glob(pat)) {
            idx_list_t *l = glob_matches(y, cache, pat);
            size_t used = 0;
            for (size_t k = 0; k < l->n; k++) {
                if (l->v[k] != i) {
                    add_dep(r, l->v[k], i, mark);
                    used++;
                }
            }
            if (used == 0) {
                werr(y, r->file, r->line, "after: \"%s\" matches no task (in %s)", pat, r->t.key);
            }
            continue;
        }
        uintptr_t v = (uintptr_t)swd_strmap_get(keys, pat, strlen(pat));
        if (v == 0) {
            werr(y, r->file, r->line, "after: no task has the key \"%s\" (in %s)", pat, r->t.key);
        } else if (v - 1 == i) {
            werr(y, r->file, r->line, "after: cycle: task \"%s\" waits for itself", r->t.key);
        } else {
            add_dep(r, (uint32_t)(v - 1), i, mark);
        }
    }
}

static void resolve(wload_t *y) {
    swd_strmap_t keys, cache;
    swd_strmap_init(&keys);
    swd_strmap_init(&cache);
    for (size_t i = 0; i < y->n; i++) {
        raw_t *r = &y->raws[i];
        if (r->t.key == NULL) {
            continue; // a line already reported bad
        }
        if (strlen(r->t.key) > MAX_KEY_BYTES) {
            werr(y, r->file, r->line, "key \"%.40s...\": longer than %d bytes", r->t.key,
                 MAX_KEY_BYTES);
        } else if (swd_strmap_get(&keys, r->t.key, strlen(r->t.key)) != NULL) {
            werr(y, r->file, r->line,
                 "key \"%s\" names two tasks; give each generator its own "
                 "`key` template",
                 r->t.key);
        } else {
            swd_strmap_put(&keys, r->t.key, strlen(r->t.key), (void *)(uintptr_t)(i + 1));
        }
    }
    uint32_t *mark = swd_xcalloc(y->n ? y->n : 1, sizeof(uint32_t));
    for (size_t i = 0; i < y->n && y->errors == 0; i++) {
        resolve_one(y, &keys, &cache, (uint32_t)i, mark);
    }
    free(mark);
    swd_strmap_foreach(&cache, free_glob, NULL);
    swd_strmap_close(&cache);
    swd_strmap_close(&keys);
}

// Reports the cycle that task `start` (left over by the sort) is part of or
// leads to: "a waits for b waits for a".
static void report_cycle(wload_t *y, const uint32_t *indeg, uint32_t start) {
    uint32_t *seen = swd_xcalloc(y->n, sizeof(uint32_t)); // step + 1 when visited
    uint32_t *path = swd_xcalloc(y->n + 1, sizeof(uint32_t));
    uint32_t cur = start, len = 0;
    while (seen[cur] == 0) {
        seen[cur] = ++len;
        path[len - 1] = cur;
        const raw_t *r = &y->raws[cur];
        for (uint32_t k = 0; k < r->t.nafter; k++) {
            if (indeg[r->t.after[k]] > 0) {
                cur = r->t.after[k];
                break;
            }
        }
    }
    char text[400] = "";
    size_t tl = 0;
    for (uint32_t k = seen[cur] - 1; k < len && tl < sizeof(text); k++) {
        int w = snprintf(text + tl, sizeof(text) - tl, "\"%s\" waits for ", y->raws[path[k]].t.key);
        tl += w > 0 ? (size_t)w : 0;
    }
    if (tl < sizeof(text)) {
        snprintf(text + tl, sizeof(text) - tl, "\"%s\"", y->raws[cur].t.key);
    }
    const raw_t *r = &y->raws[cur];
    werr(y, r->file, r->line, "after: cycle: %s", text);
    free(seen);
    free(path);
}

// Kahn's algorithm; the result keeps the file's order where dependencies
// allow. Fills y->w->tasks with after indices into the new order.
static void sort_tasks(wload_t *y) {
    size_t n = y->n;
    uint32_t *indeg = swd_xcalloc(n ? n : 1, sizeof(uint32_t));
    uint32_t *nout = swd_xcalloc(n + 1, sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        indeg[i] = y->raws[i].t.nafter;
        for (uint32_t k = 0; k < y->raws[i].t.nafter; k++) {
            nout[y->raws[i].t.after[k] + 1]++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        nout[i + 1] += nout[i]; // prefix sums: dependents of i at [nout[i], nout[i+1])
    }
    uint32_t *deps = swd_xcalloc(nout[n] ? nout[n] : 1, sizeof(uint32_t));
    uint32_t *fill = swd_xcalloc(n ? n : 1, sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < y->raws[i].t.nafter; k++) {
            uint32_t d = y->raws[i].t.after[k];
            deps[nout[d] + fill[d]++] = (uint32_t)i;
        }
    }
    uint32_t *order = swd_xcalloc(n ? n : 1, sizeof(uint32_t));
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < n; i++) {
        if (indeg[i] == 0) {
            order[tail++] = (uint32_t)i;
        }
    }
    while (head < tail) {
        uint32_t u = order[head++];
        for (uint32_t k = nout[u]; k < nout[u + 1]; k++) {
            if (--indeg[deps[k]] == 0) {
                order[tail++] = deps[k];
            }
        }
    }
    if (tail < n) {
        for (size_t i = 0; i < n; i++) {
            if (indeg[i] > 0) {
                report_cycle(y, indeg, (uint32_t)i);
                break;
            }
        }
    } else {
        uint32_t *pos = fill; // reused: old index -> new index
        for (size_t k = 0; k < n; k++) {
            pos[order[k]] = (uint32_t)k;
        }
        y->w->tasks = swd_xcalloc(n ? n : 1, sizeof(swd_workload_task_t));
        for (size_t k = 0; k < n; k++) {
            swd_workload_task_t *t = &y->w->tasks[k];
            *t = y->raws[order[k]].t;
            memset(&y->raws[order[k]].t, 0, sizeof(swd_workload_task_t));
            for (uint32_t j = 0; j < t->nafter; j++) {
                t->after[j] = pos[t->after[j]];
            }
        }
        y->w->n = n;
    }
    free(order);
    free(deps);
    free(fill);
    free(nout);
    free(indeg);
}

// ---------------------------------------------------------------------------
// Life cycle

static void task_free(swd_workload_task_t *t) {
    free(t->key);
    free(t->type);
    json_decref(t->payload);
    json_decref(t->labels);
    free(t->after);
}

static void raws_free(wload_t *y) {
    for (size_t i = 0; i < y->n; i++) {
        task_free(&y->raws[i].t);
        for (size_t j = 0; j < y->raws[i].npats; j++) {
            free(y->raws[i].pats[j]);
        }
        free(y->raws[i].pats);
    }
    free(y->raws);
    free(y->tasks_file);
}

static char *default_name(const char *path) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t n = strcspn(base, ".");
    return swd_xstrndup(base, n ? n : strlen(base));
}

// The tasks file, relative to the workload's directory.
static char *tasks_file_path(const char *workload, const char *file) {
    const char *slash = strrchr(workload, '/');
    if (file[0] == '/' || slash == NULL) {
        return swd_xstrdup(file);
    }
    return swd_xasprintf("%.*s/%s", (int)(slash - workload), workload, file);
}

static int load_document(wload_t *y, FILE *f) {
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        werr(y, y->path, parser.problem_mark.line + 1, "not valid YAML: %s%s%s",
             parser.problem ? parser.problem : "unreadable", parser.context ? " " : "",
             parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return SWD_ECONFIG;
    }
    y->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL || root->type != YAML_MAPPING_NODE) {
        werr(y, y->path, root ? line_of(root) : 1, "expected a mapping (name, pools, tasks, ...)");
    } else {
        parse_root(y, root);
        parse_tasks(y, root);
    }
    y->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return 0;
}

int swd_workload_load(swd_workload_t *w, const char *path, const swd_workload_opts_t *o,
                      swd_diag_t *d) {
    memset(w, 0, sizeof(*w));
    w->path = swd_xstrdup(path);
    w->name = default_name(path);
    wload_t y = {.w = w, .o = o, .path = w->path, .d = d};
    swd_rng_seed(&y.rng, 1);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        swd_diag_add(d, SWD_DIAG_ERROR, "%s: cannot read: %s", path, strerror(errno));
        return SWD_ECONFIG;
    }
    int r = load_document(&y, f);
    fclose(f);
    char *tf = NULL;
    if (r == 0 && y.tasks_file != NULL) {
        tf = tasks_file_path(path, y.tasks_file);
        load_tasks_file(&y, tf);
    }
    if (r == 0 && y.errors == 0 && y.n == 0) {
        werr(&y, path, 1, "no tasks: add `tasks:` generators or a `tasks_file:`");
    }
    if (y.errors == 0) {
        resolve(&y);
    }
    if (y.errors == 0) {
        sort_tasks(&y);
    }
    raws_free(&y);
    free(tf);
    return y.errors > 0 || r != 0 ? SWD_ECONFIG : 0;
}

void swd_workload_close(swd_workload_t *w) {
    for (size_t i = 0; i < w->n; i++) {
        task_free(&w->tasks[i]);
    }
    free(w->tasks);
    free(w->path);
    free(w->name);
    memset(w, 0, sizeof(*w));
}

bool swd_workload_detect(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return false;
    }
    bool found = false;
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (yaml_parser_load(&parser, &doc)) {
        wload_t y = {.doc = &doc};
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        found = map_get(&y, root, "tasks") != NULL || map_get(&y, root, "tasks_file") != NULL;
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return found;
}

// ---------------------------------------------------------------------------
// Time scale for the pools' commands

static char *scale_ms(const char *value, double k) {
    int64_t v;
    if (!parse_int(value, &v) || v < 0) {
        return NULL;
    }
    int64_t s = (int64_t)llround((double)v * k);
    return swd_xasprintf("%lld", (long long)(v > 0 && s < 1 ? 1 : s));
}

static bool is_ms_flag(const char *a, size_t n) {
    return n > 5 && strncmp(a, "--", 2) == 0 && strncmp(a + n - 3, "-ms", 3) == 0;
}

void swd_workload_scale_pools(swd_config_t *cfg, double time_scale) {
    if (time_scale <= 0 || time_scale == 1.0) {
        return;
    }
    for (size_t p = 0; p < cfg->n_pools; p++) {
        swd_pool_config_t *pc = &cfg->pools[p];
        if (pc->kind == SWD_POOL_HTTP) {
            // A minute of quota is a duration too: rpm and tpm per scaled
            // minute, so a quota test runs in seconds.
            pc->http.timeout_ms =
                (int64_t)fmax(1.0, ceil((double)pc->http.timeout_ms * time_scale));
            pc->http.rpm = (int64_t)fmin(1e8, ceil((double)pc->http.rpm / time_scale));
            pc->http.tpm = (int64_t)fmin(1e12, ceil((double)pc->http.tpm / time_scale));
            continue;
        }
        swd_config_list_t *cmd = &cfg->pools[p].process.command;
        for (size_t i = 1; i < cmd->n; i++) {
            char *a = cmd->items[i];
            const char *eq = strchr(a, '=');
            char *s;
            if (eq != NULL && is_ms_flag(a, (size_t)(eq - a)) &&
                (s = scale_ms(eq + 1, time_scale)) != NULL) {
                cmd->items[i] = swd_xasprintf("%.*s=%s", (int)(eq - a), a, s);
                free(s);
                free(a);
            } else if (eq == NULL && is_ms_flag(a, strlen(a)) && i + 1 < cmd->n &&
                       (s = scale_ms(cmd->items[i + 1], time_scale)) != NULL) {
                free(cmd->items[i + 1]);
                cmd->items[++i] = s;
            }
        }
    }
}
