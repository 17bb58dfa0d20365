// The metrics registry (runtime/metrics.h): families in registration order,
// each with its children in a creation-ordered list and a chained hash table
// keyed by the label values. Rendering is the only place that formats text;
// updates touch one double (and a bucket count for histograms).
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/buf.h"
#include "runtime/metrics.h"

const double swd_metrics_seconds_buckets[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
};
const size_t swd_metrics_seconds_buckets_len =
    sizeof(swd_metrics_seconds_buckets) / sizeof(swd_metrics_seconds_buckets[0]);

/// Longest text a number renders to ("-1.2345678901234567e-308" and the like).
#define NUM_MAX 32

struct swd_metric {
    swd_metric_family_t *fam; ///< the owner
    swd_metric_t *prev;       ///< creation order
    swd_metric_t *next;
    swd_metric_t *hnext; ///< hash chain
    uint64_t hash;
    char *values[SWD_METRICS_MAX_LABELS]; ///< owned, valid UTF-8
    char *labels_text;                    ///< owned: `a="x",b="y"` escaped; NULL without labels
    size_t labels_len;
    double value;       ///< counter, gauge; a histogram's sum
    uint64_t count;     ///< histogram observations
    uint64_t buckets[]; ///< histogram: per-bucket (not cumulative) counts, nbounds + 1
};

struct swd_metric_family {
    swd_metrics_t *reg;
    swd_metric_family_t *next; ///< registration order
    char *name;                ///< owned
    char *help;                ///< owned, raw (escaped when rendered)
    swd_metric_type_t type;
    size_t nlabels;
    char *label_names[SWD_METRICS_MAX_LABELS]; ///< owned
    size_t nbounds;
    double *bounds;           ///< owned; histogram upper bounds without +Inf
    char (*le_text)[NUM_MAX]; ///< owned; bounds as rendered in `le`
    swd_metric_t *head;       ///< children, creation order
    swd_metric_t *tail;
    swd_metric_t **table; ///< owned; hash buckets (chains through hnext)
    size_t table_cap;     ///< a power of two, or 0
    size_t nchildren;
};

typedef struct collector {
    swd_metrics_collect_cb cb; ///< NULL once removed during a collect pass
    void *data;
} collector_t;

struct swd_metrics {
    swd_metric_family_t *head;
    swd_metric_family_t *tail;
    collector_t *collectors; ///< owned array
    size_t ncollectors;
    size_t collectors_cap;
    int collecting; ///< >0 while collect callbacks run
};

// ---------------------------------------------------------------------------
// Helpers

static _Noreturn void misuse(const char *name, const char *why) {
    fprintf(stderr, "swarmd: metrics: %s: %s\n", name ? name : "(null)", why);
    abort();
}

static bool is_name_char(char ch, bool first, bool colon) {
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_') {
        return true;
    }
    if (colon && ch == ':') {
        return true;
    }
    return !first && ch >= '0' && ch <= '9';
}

/// Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
/// [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__" (reserved).
static bool valid_name(const char *s, bool metric) {
    if (s == NULL || s[0] == '\0') {
        return false;
    }
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (!is_name_char(s[i], i == 0, metric)) {
            return false;
        }
    }
    return metric || strncmp(s, "__", 2) != 0;
}

/// Length of the valid UTF-8 sequence at `s` (at most `n` bytes), or 0 when
/// the bytes there are not one (overlong forms, surrogates and code points
/// past U+10FFFF included).
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) {
        return 1;
    }
    size_t len;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return len;
}

static bool utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            return false;
        }
        i += k;
    }
    return true;
}

/// A copy of `s` with every invalid byte replaced by U+FFFD; the caller frees it.
static char *utf8_sanitize(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    swd_buf_t b;
    swd_buf_init(&b);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            swd_buf_append(&b, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            swd_buf_append(&b, p + i, k);
            i += k;
        }
    }
    swd_buf_append(&b, "", 1);
    size_t len;
    return swd_buf_steal(&b, &len);
}

static void append_str(swd_buf_t *b, const char *s) {
    swd_buf_append(b, s, strlen(s));
}

/// Appends `s` escaped: backslash and newline always, the double quote too
/// when `quote` (label values; HELP text leaves it alone).
static void append_escaped(swd_buf_t *b, const char *s, bool quote) {
    const char *run = s;
    for (const char *p = s; *p != '\0'; p++) {
        const char *esc = NULL;
        if (*p == '\\') {
            esc = "\\\\";
        } else if (*p == '\n') {
            esc = "\\n";
        } else if (*p == '"' && quote) {
            esc = "\\\"";
        }
        if (esc != NULL) {
            swd_buf_append(b, run, (size_t)(p - run));
            swd_buf_append(b, esc, 2);
            run = p + 1;
        }
    }
    append_str(b, run);
}

/// Formats `v` so Prometheus parses it back to the same double: integers
/// without exponent or point, `+Inf`, `-Inf`, `NaN`, and otherwise the
/// shortest %g form that round-trips. Returns the length written to `out`.
static size_t format_double(double v, char out[NUM_MAX]) {
    int n;
    if (isnan(v)) {
        n = snprintf(out, NUM_MAX, "NaN");
    } else if (isinf(v)) {
        n = snprintf(out, NUM_MAX, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        n = snprintf(out, NUM_MAX, "0"); // -0 too
    } else if (v == trunc(v) && fabs(v) < 1e17) {
        n = snprintf(out, NUM_MAX, "%.0f", v);
    } else {
        n = 0;
        for (int prec = 15; prec <= 17; prec++) {
            n = snprintf(out, NUM_MAX, "%.*g", prec, v);
            if (strtod(out, NULL) == v) {
                break;
            }
        }
    }
    assert(n > 0 && n < NUM_MAX);
    return (size_t)n;
}

static void append_double(swd_buf_t *b, double v) {
    char num[NUM_MAX];
    swd_buf_append(b, num, format_double(v, num));
}

static void append_u64(swd_buf_t *b, uint64_t v) {
    char num[NUM_MAX];
    int n = snprintf(num, sizeof num, "%" PRIu64, v);
    swd_buf_append(b, num, (size_t)n);
}

// ---------------------------------------------------------------------------
// Children

/// FNV-1a over the values, with a 0xFF byte (never in UTF-8) between them.
static uint64_t values_hash(const char *const *values, size_t n) {
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p != '\0'; p++) {
            h = (h ^ *p) * 1099511628211ULL;
        }
        h = (h ^ 0xFFu) * 1099511628211ULL;
    }
    return h;
}

static bool values_equal(const swd_metric_t *c, const char *const *values, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c->values[i], values[i]) != 0) {
            return false;
        }
    }
    return true;
}

static swd_metric_t *child_alloc(swd_metric_family_t *fam) {
    size_t nb = fam->type == SWD_METRIC_HISTOGRAM ? fam->nbounds + 1 : 0;
    swd_metric_t *c = swd_xcalloc(1, sizeof *c + nb * sizeof c->buckets[0]);
    c->fam = fam;
    return c;
}

/// Builds the child's pre-escaped label text `a="x",b="y"` once, so
/// rendering only copies it.
static void child_set_labels(swd_metric_t *c, const char *const *values) {
    swd_metric_family_t *fam = c->fam;
    swd_buf_t b;
    swd_buf_init(&b);
    for (size_t i = 0; i < fam->nlabels; i++) {
        c->values[i] = swd_xstrdup(values[i]);
        if (i > 0) {
            swd_buf_append(&b, ",", 1);
        }
        append_str(&b, fam->label_names[i]);
        swd_buf_append(&b, "=\"", 2);
        append_escaped(&b, values[i], true);
        swd_buf_append(&b, "\"", 1);
    }
    c->labels_len = b.len;
    swd_buf_append(&b, "", 1);
    size_t len;
    c->labels_text = swd_buf_steal(&b, &len);
}

static void child_free(swd_metric_t *c) {
    for (size_t i = 0; i < SWD_METRICS_MAX_LABELS; i++) {
        free(c->values[i]);
    }
    free(c->labels_text);
    free(c);
}

static void table_grow(swd_metric_family_t *fam) {
    size_t cap = fam->table_cap ? fam->table_cap * 2 : 8;
    swd_metric_t **table = swd_xcalloc(cap, sizeof(swd_metric_t *));
    for (swd_metric_t *c = fam->head; c != NULL; c = c->next) {
        size_t i = (size_t)(c->hash & (cap - 1));
        c->hnext = table[i];
        table[i] = c;
    }
    free(fam->table);
    fam->table = table;
    fam->table_cap = cap;
}

static void child_link(swd_metric_family_t *fam, swd_metric_t *c) {
    c->prev = fam->tail;
    if (fam->tail != NULL) {
        fam->tail->next = c;
    } else {
        fam->head = c;
    }
    fam->tail = c;
    fam->nchildren++;
    if (fam->nlabels == 0) {
        return; // the single child is found through fam->head
    }
    if (fam->nchildren > fam->table_cap) {
        table_grow(fam); // rehashes every child, `c` included
        return;
    }
    size_t i = (size_t)(c->hash & (fam->table_cap - 1));
    c->hnext = fam->table[i];
    fam->table[i] = c;
}

static void child_unlink(swd_metric_family_t *fam, swd_metric_t *c) {
    swd_metric_t **pp = &fam->table[c->hash & (fam->table_cap - 1)];
    while (*pp != c) {
        pp = &(*pp)->hnext;
    }
    *pp = c->hnext;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        fam->head = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    } else {
        fam->tail = c->prev;
    }
    fam->nchildren--;
}

static swd_metric_t *child_find(const swd_metric_family_t *fam, const char *const *values,
                                uint64_t hash) {
    if (fam->table_cap == 0) {
        return NULL;
    }
    for (swd_metric_t *c = fam->table[hash & (fam->table_cap - 1)]; c != NULL; c = c->hnext) {
        if (c->hash == hash && values_equal(c, values, fam->nlabels)) {
            return c;
        }
    }
    return NULL;
}

/// Points `vals` at the lookup form of `values`: NULL as "", invalid UTF-8
/// sanitized into `tmp` (freed by the caller; entries stay NULL otherwise).
static void values_normalize(const swd_metric_family_t *fam, const char *const *values,
                             const char *vals[], char *tmp[]) {
    for (size_t i = 0; i < fam->nlabels; i++) {
        const char *v = values != NULL && values[i] != NULL ? values[i] : "";
        tmp[i] = NULL;
        if (!utf8_valid(v)) {
            tmp[i] = utf8_sanitize(v);
            v = tmp[i];
        }
        vals[i] = v;
    }
}

swd_metric_t *swd_metric_single(swd_metric_family_t *fam) {
    if (fam == NULL) {
        return NULL;
    }
    assert(fam->nlabels == 0 && "swd_metric_single on a labelled family");
    return fam->nlabels == 0 ? fam->head : NULL;
}

swd_metric_t *swd_metric_child(swd_metric_family_t *fam, const char *const *values) {
    if (fam == NULL || fam->nlabels == 0) {
        return fam != NULL ? fam->head : NULL;
    }
    const char *vals[SWD_METRICS_MAX_LABELS] = {NULL};
    char *tmp[SWD_METRICS_MAX_LABELS] = {NULL};
    values_normalize(fam, values, vals, tmp);
    uint64_t hash = values_hash(vals, fam->nlabels);
    swd_metric_t *c = child_find(fam, vals, hash);
    if (c == NULL) {
        c = child_alloc(fam);
        c->hash = hash;
        child_set_labels(c, vals);
        child_link(fam, c);
    }
    for (size_t i = 0; i < fam->nlabels; i++) {
        free(tmp[i]);
    }
    return c;
}

void swd_metric_child_remove(swd_metric_family_t *fam, const char *const *values) {
    if (fam == NULL || fam->nlabels == 0) {
        return;
    }
    const char *vals[SWD_METRICS_MAX_LABELS] = {NULL};
    char *tmp[SWD_METRICS_MAX_LABELS] = {NULL};
    values_normalize(fam, values, vals, tmp);
    swd_metric_t *c = child_find(fam, vals, values_hash(vals, fam->nlabels));
    if (c != NULL) {
        child_unlink(fam, c);
        child_free(c);
    }
    for (size_t i = 0; i < fam->nlabels; i++) {
        free(tmp[i]);
    }
}

void swd_metric_family_clear(swd_metric_family_t *fam) {
    if (fam == NULL || fam->nlabels == 0) {
        return;
    }
    swd_metric_t *c = fam->head;
    while (c != NULL) {
        swd_metric_t *next = c->next;
        child_free(c);
        c = next;
    }
    fam->head = fam->tail = NULL;
    fam->nchildren = 0;
    if (fam->table != NULL) {
        memset(fam->table, 0, fam->table_cap * sizeof(swd_metric_t *));
    }
}

const char *swd_metric_family_name(const swd_metric_family_t *fam) {
    return fam->name;
}

swd_metric_type_t swd_metric_family_type(const swd_metric_family_t *fam) {
    return fam->type;
}

size_t swd_metric_family_size(const swd_metric_family_t *fam) {
    return fam != NULL ? fam->nchildren : 0;
}

// ---------------------------------------------------------------------------
// Hot path

void swd_counter_add(swd_metric_t *c, double v) {
    if (c == NULL) {
        return;
    }
    assert(c->fam->type == SWD_METRIC_COUNTER);
    if (v > 0) { // false for NaN too
        c->value += v;
    }
}

void swd_counter_inc(swd_metric_t *c) {
    swd_counter_add(c, 1);
}

void swd_gauge_set(swd_metric_t *g, double v) {
    if (g == NULL) {
        return;
    }
    assert(g->fam->type == SWD_METRIC_GAUGE);
    g->value = v;
}

void swd_gauge_add(swd_metric_t *g, double v) {
    if (g == NULL) {
        return;
    }
    assert(g->fam->type == SWD_METRIC_GAUGE);
    g->value += v;
}

void swd_histogram_observe(swd_metric_t *h, double v) {
    if (h == NULL || isnan(v)) {
        return;
    }
    const swd_metric_family_t *fam = h->fam;
    assert(fam->type == SWD_METRIC_HISTOGRAM);
    // The first bound >= v, by binary search; nbounds means +Inf.
    size_t lo = 0;
    size_t hi = fam->nbounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (fam->bounds[mid] < v) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    h->buckets[lo]++;
    h->count++;
    h->value += v;
}

double swd_metric_value(const swd_metric_t *c) {
    return c != NULL ? c->value : 0;
}

uint64_t swd_histogram_count(const swd_metric_t *h) {
    return h != NULL && h->fam->type == SWD_METRIC_HISTOGRAM ? h->count : 0;
}

// ---------------------------------------------------------------------------
// Registration

swd_metrics_t *swd_metrics_new(void) {
    return swd_xcalloc(1, sizeof(swd_metrics_t));
}

static void family_free(swd_metric_family_t *fam) {
    swd_metric_t *c = fam->head;
    while (c != NULL) {
        swd_metric_t *next = c->next;
        child_free(c);
        c = next;
    }
    for (size_t i = 0; i < fam->nlabels; i++) {
        free(fam->label_names[i]);
    }
    free(fam->table);
    free(fam->bounds);
    free(fam->le_text);
    free(fam->name);
    free(fam->help);
    free(fam);
}

void swd_metrics_free(swd_metrics_t *m) {
    if (m == NULL) {
        return;
    }
    swd_metric_family_t *fam = m->head;
    while (fam != NULL) {
        swd_metric_family_t *next = fam->next;
        family_free(fam);
        fam = next;
    }
    free(m->collectors);
    free(m);
}

swd_metric_family_t *swd_metrics_find(const swd_metrics_t *m, const char *name) {
    if (m == NULL || name == NULL) {
        return NULL;
    }
    for (swd_metric_family_t *fam = m->head; fam != NULL; fam = fam->next) {
        if (strcmp(fam->name, name) == 0) {
            return fam;
        }
    }
    return NULL;
}

/// What a registration asks for, checked and compared as one.
typedef struct family_spec {
    swd_metric_type_t type;
    const char *name;
    const char *help;
    size_t nlabels;
    const char *const *labels;
    size_t nbounds;
    const double *bounds;
} family_spec_t;

static void spec_check(const family_spec_t *s) {
    if (!valid_name(s->name, true)) {
        misuse(s->name, "invalid metric name");
    }
    if (s->help == NULL || !utf8_valid(s->help)) {
        misuse(s->name, "help text missing or not UTF-8");
    }
    if (s->nlabels > SWD_METRICS_MAX_LABELS || (s->nlabels > 0 && s->labels == NULL)) {
        misuse(s->name, "too many labels, or label names missing");
    }
    for (size_t i = 0; i < s->nlabels; i++) {
        if (!valid_name(s->labels[i], false)) {
            misuse(s->name, "invalid label name");
        }
        if (s->type == SWD_METRIC_HISTOGRAM && strcmp(s->labels[i], "le") == 0) {
            misuse(s->name, "a histogram may not have a label named le");
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(s->labels[i], s->labels[j]) == 0) {
                misuse(s->name, "duplicate label name");
            }
        }
    }
    for (size_t i = 0; i < s->nbounds; i++) {
        if (!isfinite(s->bounds[i]) || (i > 0 && !(s->bounds[i] > s->bounds[i - 1]))) {
            misuse(s->name, "histogram bounds must be finite and strictly increasing");
        }
    }
}

static bool spec_matches(const swd_metric_family_t *fam, const family_spec_t *s) {
    if (fam->type != s->type || strcmp(fam->help, s->help) != 0 || fam->nlabels != s->nlabels ||
        fam->nbounds != s->nbounds) {
        return false;
    }
    for (size_t i = 0; i < s->nlabels; i++) {
        if (strcmp(fam->label_names[i], s->labels[i]) != 0) {
            return false;
        }
    }
    for (size_t i = 0; i < s->nbounds; i++) {
        if (fam->bounds[i] != s->bounds[i]) {
            return false;
        }
    }
    return true;
}

static swd_metric_family_t *family_register(swd_metrics_t *m, const family_spec_t *s) {
    if (m == NULL) {
        return NULL;
    }
    spec_check(s);
    swd_metric_family_t *fam = swd_metrics_find(m, s->name);
    if (fam != NULL) {
        if (!spec_matches(fam, s)) {
            misuse(s->name, "registered again with another type, help, labels or buckets");
        }
        return fam;
    }
    fam = swd_xcalloc(1, sizeof *fam);
    fam->reg = m;
    fam->name = swd_xstrdup(s->name);
    fam->help = swd_xstrdup(s->help);
    fam->type = s->type;
    fam->nlabels = s->nlabels;
    for (size_t i = 0; i < s->nlabels; i++) {
        fam->label_names[i] = swd_xstrdup(s->labels[i]);
    }
    if (s->type == SWD_METRIC_HISTOGRAM) {
        fam->nbounds = s->nbounds;
        fam->bounds = swd_xcalloc(s->nbounds, sizeof fam->bounds[0]);
        fam->le_text = swd_xcalloc(s->nbounds, sizeof fam->le_text[0]);
        for (size_t i = 0; i < s->nbounds; i++) {
            fam->bounds[i] = s->bounds[i];
            format_double(s->bounds[i], fam->le_text[i]);
        }
    }
    if (s->nlabels == 0) {
        child_link(fam, child_alloc(fam)); // the one series exists from the start
    }
    if (m->tail != NULL) {
        m->tail->next = fam;
    } else {
        m->head = fam;
    }
    m->tail = fam;
    return fam;
}

swd_metric_family_t *swd_metrics_counter(swd_metrics_t *m, const char *name, const char *help,
                                         size_t nlabels, const char *const *labels) {
    family_spec_t s = {SWD_METRIC_COUNTER, name, help, nlabels, labels, 0, NULL};
    return family_register(m, &s);
}

swd_metric_family_t *swd_metrics_gauge(swd_metrics_t *m, const char *name, const char *help,
                                       size_t nlabels, const char *const *labels) {
    family_spec_t s = {SWD_METRIC_GAUGE, name, help, nlabels, labels, 0, NULL};
    return family_register(m, &s);
}

swd_metric_family_t *swd_metrics_histogram(swd_metrics_t *m, const char *name, const char *help,
                                           size_t nlabels, const char *const *labels,
                                           size_t nbounds, const double *bounds) {
    if (bounds == NULL) {
        bounds = swd_metrics_seconds_buckets;
        nbounds = swd_metrics_seconds_buckets_len;
    }
    family_spec_t s = {SWD_METRIC_HISTOGRAM, name, help, nlabels, labels, nbounds, bounds};
    return family_register(m, &s);
}

// ---------------------------------------------------------------------------
// Collect callbacks

void swd_metrics_on_collect(swd_metrics_t *m, swd_metrics_collect_cb cb, void *data) {
    if (m == NULL || cb == NULL) {
        return;
    }
    if (m->ncollectors == m->collectors_cap) {
        m->collectors_cap = m->collectors_cap ? m->collectors_cap * 2 : 4;
        m->collectors = swd_xrealloc(m->collectors, m->collectors_cap * sizeof m->collectors[0]);
    }
    m->collectors[m->ncollectors++] = (collector_t){cb, data};
}

/// Drops the entries removed during a collect pass.
static void collectors_compact(swd_metrics_t *m) {
    size_t j = 0;
    for (size_t i = 0; i < m->ncollectors; i++) {
        if (m->collectors[i].cb != NULL) {
            m->collectors[j++] = m->collectors[i];
        }
    }
    m->ncollectors = j;
}

void swd_metrics_off_collect(swd_metrics_t *m, swd_metrics_collect_cb cb, void *data) {
    if (m == NULL) {
        return;
    }
    for (size_t i = 0; i < m->ncollectors; i++) {
        if (m->collectors[i].cb == cb && m->collectors[i].data == data) {
            // During a pass the array is being walked: mark now, compact after.
            m->collectors[i].cb = NULL;
            if (m->collecting == 0) {
                collectors_compact(m);
            }
            return;
        }
    }
}

static void collect(swd_metrics_t *m) {
    m->collecting++;
    // Index, not pointer: a callback may add collectors and move the array.
    for (size_t i = 0; i < m->ncollectors; i++) {
        collector_t c = m->collectors[i];
        if (c.cb != NULL) {
            c.cb(m, c.data);
        }
    }
    if (--m->collecting == 0) {
        collectors_compact(m);
    }
}

// ---------------------------------------------------------------------------
// Rendering

static const char *type_name(swd_metric_type_t t) {
    switch (t) {
    case SWD_METRIC_COUNTER:
        return "counter";
    case SWD_METRIC_GAUGE:
        return "gauge";
    case SWD_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

/// `NAME[SUFFIX][{LABELS}] ` — the part of a sample line before the value.
static void append_series(swd_buf_t *b, const swd_metric_t *c, const char *suffix) {
    append_str(b, c->fam->name);
    append_str(b, suffix);
    if (c->labels_len > 0) {
        swd_buf_append(b, "{", 1);
        swd_buf_append(b, c->labels_text, c->labels_len);
        swd_buf_append(b, "}", 1);
    }
    swd_buf_append(b, " ", 1);
}

static void append_bucket(swd_buf_t *b, const swd_metric_t *c, const char *le, uint64_t cum) {
    append_str(b, c->fam->name);
    swd_buf_append(b, "_bucket{", 8);
    if (c->labels_len > 0) {
        swd_buf_append(b, c->labels_text, c->labels_len);
        swd_buf_append(b, ",", 1);
    }
    swd_buf_append(b, "le=\"", 4);
    append_str(b, le);
    swd_buf_append(b, "\"} ", 3);
    append_u64(b, cum);
    swd_buf_append(b, "\n", 1);
}

static void render_histogram(swd_buf_t *b, const swd_metric_t *c) {
    const swd_metric_family_t *fam = c->fam;
    uint64_t cum = 0;
    for (size_t i = 0; i < fam->nbounds; i++) {
        cum += c->buckets[i];
        append_bucket(b, c, fam->le_text[i], cum);
    }
    cum += c->buckets[fam->nbounds];
    append_bucket(b, c, "+Inf", cum);
    append_series(b, c, "_sum");
    append_double(b, c->value);
    swd_buf_append(b, "\n", 1);
    append_series(b, c, "_count");
    append_u64(b, c->count);
    swd_buf_append(b, "\n", 1);
}

static void render_family(swd_buf_t *b, const swd_metric_family_t *fam) {
    swd_buf_append(b, "# HELP ", 7);
    append_str(b, fam->name);
    swd_buf_append(b, " ", 1);
    append_escaped(b, fam->help, false);
    swd_buf_append(b, "\n# TYPE ", 8);
    append_str(b, fam->name);
    swd_buf_append(b, " ", 1);
    append_str(b, type_name(fam->type));
    swd_buf_append(b, "\n", 1);
    for (const swd_metric_t *c = fam->head; c != NULL; c = c->next) {
        if (fam->type == SWD_METRIC_HISTOGRAM) {
            render_histogram(b, c);
        } else {
            append_series(b, c, "");
            append_double(b, c->value);
            swd_buf_append(b, "\n", 1);
        }
    }
}

void swd_metrics_render(swd_metrics_t *m, swd_buf_t *out) {
    if (m == NULL) {
        return;
    }
    collect(m);
    for (const swd_metric_family_t *fam = m->head; fam != NULL; fam = fam->next) {
        render_family(out, fam);
    }
}
