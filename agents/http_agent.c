#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "agents/http_agent.h"
#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/encoder.h"
#include "proto/errors.h"
#include "proto/json.h"
#include "runtime/curl_loop.h"
#include "runtime/log.h"

// The agent's `reason` while it waits for its rpm/tpm quota. Compared by
// address: only a cooldown this file set carries this very string.
static const char quota_reason[] = "quota";

// Longest Retry-After honoured, and the longest server message kept.
#define RETRY_AFTER_MAX_MS INT64_C(3600000)
#define MESSAGE_MAX 1024
#define CONNECT_TIMEOUT_MS 10000

// A per-minute quota as a token bucket refilled continuously. It holds at
// most a tenth of a second's worth (at least 1) and starts full, so a
// minute-long window sees at most the quota plus that small burst, and
// requests go out paced rather than in one rush that a server's own
// limiter would answer with 429s. Token charges may take it below zero (a
// request's cost is known only roughly before it runs); it refills first.
typedef struct bucket {
    bool on;
    double level, cap, per_ms;
    int64_t last_ms;
} bucket_t;

typedef struct http_call http_call_t;

// The pool and its one agent. Two references: the daemon's (the pool
// handle) and the registry's (the agent's link); the last one frees it.
struct swd_http_pool {
    swd_http_pool_opts_t o;
    const swd_pool_config_t *cfg;
    swd_agent_t *agent; // NULL once the registry released it
    swd_curl_loop_t *curl;
    char *url;                  // expanded: never logged
    char *model;                // expanded, or NULL
    struct curl_slist *headers; // expanded: never logged
    char **secrets;             // header values and the variables in them, to scrub
    size_t nsecrets;
    CURL **idle; // easy handles kept for reuse
    uint32_t nidle, idle_cap;
    http_call_t *calls;
    bool https;
    bool stopped;
    bool unreachable;  // the last transport error is not yet followed by an answer
    bool warned_usage; // the missing-usage warning was logged
    int refs;
    bucket_t rpm, tpm;
    swd_timer_t quota_timer;      // clears the quota reason once the cooldown ended
    int64_t quota_since_ms;       // when the current quota wait began (mono), or -1
    int64_t retry_after_until_ms; // wall: the server asked us to wait until then
    swd_http_pool_stats_t stats;
};

// One request in flight.
struct http_call {
    swd_http_pool_t *hp;
    CURL *easy;
    uint64_t cookie;
    char task_id[24];
    uint32_t attempt;
    uint64_t estimated; // the task's estimate
    uint64_t charged;   // tokens taken from the tpm bucket
    swd_buf_t req, resp;
    char retry_after[64];    // the last Retry-After header's value
    char retry_after_ms[32]; // the last retry-after-ms header's value
    int64_t timeout_ms;
    bool too_large;
    const char *early_code; // failed before it was sent: `later` reports it
    char *early_message;
    bool early_retryable;
    swd_timer_t later;
    http_call_t *prev, *next;
};

// ---------------------------------------------------------------------------
// ${VAR} and ${VAR:-default}

// Strings never to show: header values and the environment values in them.
typedef struct secrets {
    char **v;
    size_t n;
} secrets_t;

// Shorter strings are not scrubbed: they would match ordinary words.
#define SECRET_MIN 8

static void secret_add(secrets_t *sv, const char *v, size_t len) {
    if (sv != NULL && len >= SECRET_MIN) {
        sv->v = swd_xrealloc(sv->v, (sv->n + 1) * sizeof(char *));
        sv->v[sv->n++] = swd_xstrndup(v, len);
    }
}

// Expands `in` into `*out` (owned by the caller); each value taken from the
// environment is also added to `sv` (may be NULL). SWD_ECONFIG when a
// variable without a default is unset (its name in `bad`) or a `${` is not
// closed; `*out` is then NULL.
static int expand_env(const char *in, char **out, char *bad, size_t badcap, secrets_t *sv) {
    swd_buf_t b;
    swd_buf_init(&b);
    *out = NULL;
    for (const char *p = in; *p != '\0';) {
        if (p[0] != '$' || p[1] != '{') {
            swd_buf_append(&b, p++, 1);
            continue;
        }
        const char *end = strchr(p + 2, '}');
        const char *name = p + 2;
        size_t nl = 0;
        while (name[nl] == '_' || isalnum((unsigned char)name[nl])) {
            nl++;
        }
        bool has_default = end != NULL && name[nl] == ':' && name[nl + 1] == '-';
        if (end == NULL || nl == 0 || (name + nl != end && !has_default)) {
            snprintf(bad, badcap, "a \"${\" without a variable name and \"}\"");
            swd_buf_close(&b);
            return SWD_ECONFIG;
        }
        char var[256];
        snprintf(var, sizeof(var), "%.*s", (int)nl, name);
        const char *v = getenv(var);
        if (has_default && (v == NULL || *v == '\0')) {
            v = name + nl + 2;
            swd_buf_append(&b, v, (size_t)(end - v));
        } else if (v != NULL) {
            swd_buf_append(&b, v, strlen(v));
            secret_add(sv, v, strlen(v));
        } else {
            snprintf(bad, badcap, "environment variable %s is not set", var);
            swd_buf_close(&b);
            return SWD_ECONFIG;
        }
        p = end + 1;
    }
    swd_buf_append(&b, "", 1);
    size_t len;
    *out = swd_buf_steal(&b, &len);
    return 0;
}

// Frees a string that may hold a secret, wiping it first.
static void free_secret(char *s) {
    if (s != NULL) {
        volatile char *v = s;
        while (*v != '\0') {
            *v++ = '\0';
        }
        free(s);
    }
}

int swd_http_pool_check(const swd_pool_config_t *cfg, char *err, size_t errlen) {
    char bad[300];
    char *x;
    if (cfg->http.endpoint == NULL) {
        snprintf(err, errlen, "pool %s: endpoint: required for http pools", cfg->name);
        return SWD_ECONFIG;
    }
    if (expand_env(cfg->http.endpoint, &x, bad, sizeof(bad), NULL) != 0) {
        snprintf(err, errlen, "pool %s: endpoint: %s", cfg->name, bad);
        return SWD_ECONFIG;
    }
    free(x);
    x = NULL;
    if (cfg->http.model != NULL && expand_env(cfg->http.model, &x, bad, sizeof(bad), NULL) != 0) {
        snprintf(err, errlen, "pool %s: model: %s", cfg->name, bad);
        return SWD_ECONFIG;
    }
    free(x);
    for (size_t i = 0; i < cfg->http.headers.n; i++) {
        if (expand_env(cfg->http.headers.values[i], &x, bad, sizeof(bad), NULL) != 0) {
            snprintf(err, errlen, "pool %s: headers.%s: %s", cfg->name, cfg->http.headers.keys[i],
                     bad);
            return SWD_ECONFIG;
        }
        free_secret(x);
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Quotas

static void bucket_init(bucket_t *b, int64_t per_minute, int64_t now) {
    b->on = per_minute > 0;
    b->per_ms = (double)per_minute / 60000.0;
    b->cap = fmax(1.0, (double)per_minute / 600.0);
    b->level = b->cap;
    b->last_ms = now;
}

static void bucket_fill(bucket_t *b, int64_t now) {
    if (b->on && now > b->last_ms) {
        b->level = fmin(b->cap, b->level + (double)(now - b->last_ms) * b->per_ms);
    }
    b->last_ms = now;
}

// Milliseconds until the bucket holds one token again.
static int64_t bucket_wait(const bucket_t *b) {
    if (!b->on || b->level >= 1.0) {
        return 0;
    }
    return (int64_t)ceil((1.0 - b->level) / b->per_ms);
}

static void bucket_take(bucket_t *b, double n) {
    if (b->on) {
        b->level -= n;
    }
}

static void bucket_give(bucket_t *b, double n) {
    if (b->on) {
        b->level = fmin(b->cap, b->level + n);
    }
}

// Puts the agent in (or keeps it in, or takes it out of) a cooldown that
// lasts until both buckets can pay for one more request. A task waiting
// for quota therefore stays queued, and the agent shows reason "quota".
static void quota_check(swd_http_pool_t *hp) {
    swd_agent_t *a = hp->agent;
    if (a == NULL || a->dead || (!hp->rpm.on && !hp->tpm.on)) {
        return;
    }
    int64_t now = swd_clock_now(hp->o.clock), wall = swd_clock_wall(hp->o.clock);
    bucket_fill(&hp->rpm, now);
    bucket_fill(&hp->tpm, now);
    int64_t rw = bucket_wait(&hp->rpm), tw = bucket_wait(&hp->tpm);
    int64_t wait = rw > tw ? rw : tw;
    bool ours = a->reason == quota_reason && a->cooldown_until_ms > 0;
    if (wait > 0 && hp->quota_since_ms < 0) {
        hp->quota_since_ms = now;
        hp->stats.quota_waits++;
    }
    if (wait <= 0 && hp->quota_since_ms >= 0) {
        hp->stats.quota_wait_ms += now - hp->quota_since_ms;
        hp->quota_since_ms = -1;
    }
    int64_t until = wait > 0 ? wall + wait : 0;
    if (ours && hp->retry_after_until_ms <= wall && until != a->cooldown_until_ms) {
        // Our own cooldown, and usage below the estimate (or above it) moved
        // the refill: shorten or stretch it in place.
        a->cooldown_until_ms = until;
        if (until == 0) {
            swd_timer_stop(&a->cooldown_timer);
            swd_timer_stop(&hp->quota_timer);
            a->reason = NULL;
        } else {
            swd_timer_start(&a->cooldown_timer, wait);
            swd_timer_start(&hp->quota_timer, wait);
        }
        swd_agent_refresh(a);
        return;
    }
    if (wait > 0 && until > a->cooldown_until_ms) {
        swd_agent_cooldown(a, until);
        // Ejection and draining keep their own reason (§2.1).
        if (a->cooldown_until_ms == until && a->ejected_until_ms == 0 && !a->draining) {
            a->reason = quota_reason;
        }
        swd_timer_start(&hp->quota_timer, wait);
    }
}

// Runs right after the registry's own cooldown timer (started earlier for
// the same deadline): the cooldown is over, and so is the reason.
static void on_quota_timer(swd_timer_t *t) {
    swd_http_pool_t *hp = t->data;
    swd_agent_t *a = hp->agent;
    if (a != NULL && a->reason == quota_reason && a->cooldown_until_ms == 0) {
        a->reason = NULL;
    }
    quota_check(hp);
}

// ---------------------------------------------------------------------------
// Requests

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
    http_call_t *c = ud;
    size_t len = size * n;
    if (c->resp.len + len > (size_t)c->hp->o.max_body_bytes) {
        c->too_large = true;
        return 0; // curl stops the transfer with CURLE_WRITE_ERROR
    }
    swd_buf_append(&c->resp, data, len);
    return len;
}

static bool header_is(const char *line, size_t len, const char *name, const char **value,
                      size_t *vlen) {
    size_t nl = strlen(name);
    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0) {
        return false;
    }
    const char *v = line + nl + 1;
    const char *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) {
        e--;
    }
    *value = v;
    *vlen = (size_t)(e - v);
    return true;
}

static size_t on_header(char *line, size_t size, size_t n, void *ud) {
    http_call_t *c = ud;
    size_t len = size * n;
    const char *v;
    size_t vl;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        // A new response (after a 100 Continue, say): forget the last one's.
        c->retry_after[0] = c->retry_after_ms[0] = '\0';
    } else if (header_is(line, len, "Retry-After", &v, &vl)) {
        snprintf(c->retry_after, sizeof(c->retry_after), "%.*s", (int)vl, v);
    } else if (header_is(line, len, "retry-after-ms", &v, &vl)) {
        snprintf(c->retry_after_ms, sizeof(c->retry_after_ms), "%.*s", (int)vl, v);
    }
    return len;
}

// An easy handle with the options every request of the pool shares.
static CURL *easy_get(swd_http_pool_t *hp) {
    if (hp->nidle > 0) {
        return hp->idle[--hp->nidle];
    }
    CURL *e = curl_easy_init();
    if (e == NULL) {
        abort(); // only out of memory makes curl_easy_init fail
    }
    curl_easy_setopt(e, CURLOPT_URL, hp->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hp->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "swarmd/" SWD_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (hp->https) {
        // Wait for an HTTP/2 connection to multiplex on rather than open more.
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    }
    return e;
}

static void easy_put(swd_http_pool_t *hp, CURL *e) {
    if (hp->stopped || hp->nidle >= hp->idle_cap) {
        curl_easy_cleanup(e);
        return;
    }
    hp->idle[hp->nidle++] = e;
}

static void call_unlink(swd_http_pool_t *hp, http_call_t *c) {
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        hp->calls = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
}

static void call_free(http_call_t *c) {
    swd_timer_stop(&c->later);
    swd_buf_close(&c->req);
    swd_buf_close(&c->resp);
    free(c->early_message);
    free(c);
}

static void pool_unref(swd_http_pool_t *hp);

// ---- request bodies ----

static int dump_cb(const char *bytes, size_t n, void *data) {
    swd_buf_append(data, bytes, n);
    return 0;
}

// The task's payload as JSON (null when it has none); NULL when it is not
// valid msgpack.
static json_t *payload_json(const swd_run_t *run) {
    if (run->payload == NULL || run->payload_len == 0) {
        return json_null();
    }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    json_t *j = NULL;
    if (msgpack_unpack_next(&up, run->payload, run->payload_len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        j = swd_json_from_msgpack(&up.data);
    }
    msgpack_unpacked_destroy(&up);
    return j;
}

static json_t *user_message(json_t *content) {
    json_t *arr = json_array();
    json_array_append_new(arr, json_pack("{s:s,s:o}", "role", "user", "content", content));
    return arr;
}

// `prompt` (and `system`) of a payload map turned into `messages`.
static int prompt_to_messages(json_t *req, char *why, size_t cap) {
    json_t *prompt = json_object_get(req, "prompt");
    json_t *system = json_object_get(req, "system");
    if (!json_is_string(prompt) || (system != NULL && !json_is_string(system))) {
        snprintf(why, cap, "payload: prompt and system must be strings");
        return SWD_EPARAMS;
    }
    json_t *msgs = json_array();
    if (system != NULL) {
        json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "system", "content", system));
    }
    json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "user", "content", prompt));
    json_object_del(req, "prompt");
    json_object_del(req, "system");
    json_object_set_new(req, "messages", msgs);
    return 0;
}

// The chat completions request for a payload: a string is one user
// message; a map with `messages` (or `prompt`, `system`) is the request
// itself, its other keys sent as they are; any other value becomes one
// user message holding its JSON text. Pool defaults fill in `model`,
// `max_tokens` and `temperature` where the payload has none.
static json_t *openai_request(const swd_http_pool_t *hp, json_t *p, char *why, size_t cap) {
    json_t *req;
    if (json_is_string(p)) {
        req = json_pack("{s:o}", "messages", user_message(json_incref(p)));
    } else if (json_is_object(p) &&
               (json_object_get(p, "messages") != NULL || json_object_get(p, "prompt") != NULL)) {
        req = json_deep_copy(p);
        if (json_object_get(req, "messages") == NULL && prompt_to_messages(req, why, cap) != 0) {
            json_decref(req);
            return NULL;
        }
        if (!json_is_array(json_object_get(req, "messages"))) {
            snprintf(why, cap, "payload: messages must be a list of messages");
            json_decref(req);
            return NULL;
        }
        json_object_del(req, "stream"); // one JSON answer, not server-sent events
    } else if (json_is_null(p)) {
        snprintf(why, cap,
                 "the task has no payload: an openai pool needs a prompt string, "
                 "or a map with messages or prompt");
        return NULL;
    } else {
        char *text = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY | swd_json_real_flags(p));
        req = json_pack("{s:o}", "messages", user_message(json_string(text ? text : "")));
        free(text);
    }
    const swd_pool_config_t *cfg = hp->cfg;
    if (hp->model != NULL && json_object_get(req, "model") == NULL) {
        json_object_set_new(req, "model", json_string(hp->model));
    }
    if (cfg->http.max_tokens > 0 && json_object_get(req, "max_tokens") == NULL) {
        json_object_set_new(req, "max_tokens", json_integer(cfg->http.max_tokens));
    }
    if (!isnan(cfg->http.temperature) && json_object_get(req, "temperature") == NULL) {
        json_object_set_new(req, "temperature", json_real(cfg->http.temperature));
    }
    return req;
}

// Fills c->req; SWD_EPARAMS with the reason in `why` when the payload
// cannot make a request.
static int build_body(const swd_http_pool_t *hp, http_call_t *c, const swd_run_t *run, char *why,
                      size_t cap) {
    json_t *p = payload_json(run);
    if (p == NULL) {
        snprintf(why, cap, "payload: not readable as JSON");
        return SWD_EPARAMS;
    }
    json_t *body = p;
    if (hp->cfg->http.format == SWD_HTTP_FORMAT_OPENAI) {
        body = openai_request(hp, p, why, cap);
        json_decref(p);
        if (body == NULL) {
            return SWD_EPARAMS;
        }
    }
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | swd_json_real_flags(body);
    int r = json_dump_callback(body, dump_cb, &c->req, flags);
    json_decref(body);
    if (r != 0) {
        snprintf(why, cap, "payload: cannot be written as JSON");
        return SWD_EPARAMS;
    }
    return 0;
}

// ---- answers ----

// Text of a server's error: OpenAI's {"error": {"message"}}, or {"error":
// "..."}, {"message"}, {"detail"}; else the body itself, cut short.
static void server_message(const swd_buf_t *body, char *out, size_t cap) {
    json_t *j = body->len ? json_loadb(body->data, body->len, JSON_DECODE_ANY, NULL) : NULL;
    const char *m = NULL;
    json_t *e = json_object_get(j, "error");
    if (json_is_string(json_object_get(e, "message"))) {
        m = json_string_value(json_object_get(e, "message"));
    } else if (json_is_string(e)) {
        m = json_string_value(e);
    } else if (json_is_string(json_object_get(j, "message"))) {
        m = json_string_value(json_object_get(j, "message"));
    } else if (json_is_string(json_object_get(j, "detail"))) {
        m = json_string_value(json_object_get(j, "detail"));
    }
    if (m != NULL) {
        snprintf(out, cap, "%s", m);
    } else {
        size_t n = body->len < cap - 1 ? body->len : cap - 1;
        memcpy(out, body->data ? body->data : "", n);
        out[n] = '\0';
        while (n > 0 && isspace((unsigned char)out[n - 1])) {
            out[--n] = '\0';
        }
    }
    json_decref(j);
}

// Retry-After as milliseconds from now: seconds or an HTTP date (and the
// retry-after-ms some servers send); 0 when absent or already past.
static int64_t retry_after(const http_call_t *c, int64_t wall) {
    char *end;
    if (c->retry_after_ms[0] != '\0') {
        double ms = strtod(c->retry_after_ms, &end);
        if (end != c->retry_after_ms && ms > 0) {
            return ms > (double)RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS : (int64_t)ceil(ms);
        }
    }
    if (c->retry_after[0] == '\0') {
        return 0;
    }
    double s = strtod(c->retry_after, &end);
    int64_t ms;
    if (end != c->retry_after && *end == '\0') {
        ms = s > 0 ? (int64_t)ceil(s * 1000.0) : 0;
    } else {
        time_t t = curl_getdate(c->retry_after, NULL);
        ms = t > 0 ? (int64_t)t * 1000 - wall : 0;
    }
    return ms < 0 ? 0 : (ms > RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS : ms);
}

static uint64_t usage_tokens(const json_t *j, bool *found) {
    const json_t *u = json_object_get(j, "usage");
    const json_t *t = json_object_get(u, "total_tokens");
    *found = true;
    if (json_is_integer(t) && json_integer_value(t) >= 0) {
        return (uint64_t)json_integer_value(t);
    }
    const json_t *pt = json_object_get(u, "prompt_tokens");
    const json_t *ct = json_object_get(u, "completion_tokens");
    if (json_is_integer(pt) && json_is_integer(ct) && json_integer_value(pt) >= 0 &&
        json_integer_value(ct) >= 0) {
        return (uint64_t)(json_integer_value(pt) + json_integer_value(ct));
    }
    *found = false;
    return 0;
}

// A 2xx answer into the outcome: `out` gets the output's msgpack bytes.
// False when the body is not what the format promises.
static bool read_answer(swd_http_pool_t *hp, http_call_t *c, swd_buf_t *out, swd_outcome_t *o,
                        bool *usage_found) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, swd_buf_write_cb);
    json_t *j = c->resp.len ? json_loadb(c->resp.data, c->resp.len, JSON_DECODE_ANY, NULL) : NULL;
    *usage_found = false;
    if (hp->cfg->http.format == SWD_HTTP_FORMAT_RAW) {
        if (j != NULL) {
            swd_json_pack(&pk, j);
        } else {
            swd_pack_strn(&pk, c->resp.data ? c->resp.data : "", c->resp.len);
        }
        o->tokens_used = usage_tokens(j, usage_found);
        json_decref(j);
        return true;
    }
    json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    json_t *content = json_object_get(msg, "content");
    if (json_is_string(content)) {
        swd_pack_strn(&pk, json_string_value(content), json_string_length(content));
    } else if (json_is_string(json_object_get(choice, "text"))) {
        json_t *text = json_object_get(choice, "text");
        swd_pack_strn(&pk, json_string_value(text), json_string_length(text));
    } else if (json_is_object(msg)) {
        swd_json_pack(&pk, msg); // no text (tool calls, say): the whole message
    } else {
        json_decref(j);
        return false;
    }
    o->tokens_used = usage_tokens(j, usage_found);
    if (!*usage_found) {
        o->tokens_used = c->estimated;
    }
    json_decref(j);
    return true;
}

static bool transport_error(CURLcode r) {
    switch (r) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

// A server may echo a key it refused in its error message: every header
// value (and environment value in one) in `msg` becomes "***".
static void scrub_secrets(const swd_http_pool_t *hp, char *msg) {
    for (size_t i = 0; i < hp->nsecrets; i++) {
        const char *v = hp->secrets[i];
        size_t vl = strlen(v);
        for (char *p = strstr(msg, v); p != NULL; p = strstr(p + 3, v)) {
            p[0] = p[1] = p[2] = '*';
            memmove(p + 3, p + vl, strlen(p + vl) + 1);
        }
    }
}

// An answer with a status outside 2xx into the outcome.
static void status_outcome(swd_http_pool_t *hp, http_call_t *c, long status, swd_outcome_t *o,
                           char *msg, size_t cap) {
    char text[MESSAGE_MAX];
    server_message(&c->resp, text, sizeof(text));
    snprintf(msg, cap, "HTTP %ld%s%s", status, text[0] ? ": " : "", text);
    scrub_secrets(hp, msg);
    o->message = msg;
    if (status == 429 || status == 503) {
        int64_t wall = swd_clock_wall(hp->o.clock);
        o->code = status == 429 ? "rate_limited" : "unavailable";
        o->retryable = true;
        o->retry_after_ms = retry_after(c, wall);
        if (o->retry_after_ms > 0 && wall + o->retry_after_ms > hp->retry_after_until_ms) {
            hp->retry_after_until_ms = wall + o->retry_after_ms;
        }
        hp->stats.rate_limited += status == 429;
        hp->stats.unavailable += status == 503;
    } else if (status >= 500) {
        o->code = "server_error";
        o->retryable = true;
        hp->stats.server_errors++;
    } else if (status >= 400) {
        o->code = status == 401 || status == 403 ? "unauthorized"
                  : status == 404                ? "not_found"
                  : status == 413                ? "too_large"
                                                 : "bad_request";
        hp->stats.client_errors++;
    } else {
        o->code = "bad_status"; // 1xx or 3xx: redirects are not followed
        hp->stats.bad_responses++;
    }
}

// A transfer that ended without a usable HTTP answer into the outcome.
static void curl_outcome(swd_http_pool_t *hp, http_call_t *c, CURLcode r, swd_outcome_t *o,
                         char *msg, size_t cap) {
    o->message = msg;
    if (c->too_large) {
        o->code = "too_large";
        snprintf(msg, cap, "the answer is larger than limits.max_message_bytes (%lld bytes)",
                 (long long)hp->o.max_body_bytes);
        hp->stats.too_large++;
        return;
    }
    o->retryable = true;
    if (r == CURLE_OPERATION_TIMEDOUT) {
        o->code = "timeout";
        snprintf(msg, cap, "no answer within %lld ms", (long long)c->timeout_ms);
        hp->stats.timeouts++;
        return;
    }
    o->code = transport_error(r) ? "connection_failed" : "transport_error";
    snprintf(msg, cap, "%s", curl_easy_strerror(r));
    hp->stats.transport_errors++;
    if (!hp->unreachable) {
        hp->unreachable = true;
        swd_log_warn("http", "endpoint unreachable; tasks will be retried", "{s:s,s:s}", "pool",
                     hp->cfg->name, "error", curl_easy_strerror(r));
    }
}

// Usage known: the tpm bucket gets the difference to what dispatch charged.
static void correct_tokens(swd_http_pool_t *hp, http_call_t *c, uint64_t used) {
    if (used < c->charged) {
        bucket_give(&hp->tpm, (double)(c->charged - used));
    } else {
        bucket_take(&hp->tpm, (double)(used - c->charged));
    }
}

static void on_done(CURL *easy, CURLcode result, void *data) {
    swd_http_pool_t *hp = data;
    char *priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    http_call_t *c = (http_call_t *)priv;
    long status = 0, connects = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
    hp->stats.connections += (uint64_t)(connects > 0 ? connects : 0);
    swd_outcome_t o = {0};
    char msg[MESSAGE_MAX + 64];
    swd_buf_t out;
    swd_buf_init(&out);
    bool usage_found = false;
    if (result == CURLE_OK) {
        if (hp->unreachable) {
            hp->unreachable = false;
            swd_log_info("http", "endpoint answers again", "{s:s}", "pool", hp->cfg->name);
        }
        if (status >= 200 && status < 300) {
            if (read_answer(hp, c, &out, &o, &usage_found)) {
                o.ok = true;
                o.output = out.data;
                o.output_len = out.len;
                hp->stats.succeeded++;
            } else {
                o.code = "bad_response";
                o.message = "the answer has no choices[0].message (not a chat completion)";
                o.retryable = true;
                hp->stats.bad_responses++;
            }
        } else {
            status_outcome(hp, c, status, &o, msg, sizeof(msg));
        }
    } else {
        curl_outcome(hp, c, result, &o, msg, sizeof(msg));
    }
    if (usage_found) {
        correct_tokens(hp, c, o.tokens_used);
    } else if (!o.ok) {
        bucket_give(&hp->tpm, (double)c->charged); // no answer, no tokens spent
    } else if (hp->cfg->http.format == SWD_HTTP_FORMAT_OPENAI) {
        hp->stats.usage_missing++;
        if (!hp->warned_usage) {
            hp->warned_usage = true;
            swd_log_warn("http", "the server sends no usage; tokens_used is the task's estimate",
                         "{s:s}", "pool", hp->cfg->name);
        }
    }
    if (!o.ok) {
        swd_log_debug("http", "request failed", "{s:s,s:s,s:i,s:i,s:s,s:s}", "pool", hp->cfg->name,
                      "task", c->task_id, "attempt", (int)c->attempt, "status", (int)status, "code",
                      o.code, "message", o.message);
    }
    uint64_t cookie = c->cookie;
    swd_agent_t *a = hp->agent;
    call_unlink(hp, c);
    easy_put(hp, easy);
    call_free(c);
    hp->refs++; // the completion may end the run; the pool stays readable here
    if (a != NULL) {
        swd_agent_complete(a, cookie, &o);
    }
    quota_check(hp);
    swd_buf_close(&out);
    pool_unref(hp);
}

// ---- the transport ----

static void on_later(swd_timer_t *t) {
    http_call_t *c = t->data;
    swd_http_pool_t *hp = c->hp;
    swd_outcome_t o = {
        .code = c->early_code,
        .message = c->early_message,
        .retryable = c->early_retryable,
    };
    uint64_t cookie = c->cookie;
    swd_agent_t *a = hp->agent;
    call_unlink(hp, c);
    char *keep = c->early_message;
    c->early_message = NULL;
    call_free(c);
    hp->refs++;
    if (a != NULL) {
        swd_agent_complete(a, cookie, &o);
    }
    free(keep);
    pool_unref(hp);
}

// The attempt fails without a request; reported on the next loop turn,
// never from inside run().
static void fail_later(http_call_t *c, const char *code, const char *message, bool retryable) {
    c->early_code = code;
    c->early_message = swd_xstrdup(message);
    c->early_retryable = retryable;
    swd_timer_start(&c->later, 0);
}

static void http_run(swd_agent_t *a, const swd_run_t *run) {
    swd_http_pool_t *hp = a->link;
    http_call_t *c = swd_xcalloc(1, sizeof(*c));
    c->hp = hp;
    c->cookie = run->cookie;
    c->attempt = run->attempt;
    c->estimated = run->estimated_tokens;
    snprintf(c->task_id, sizeof(c->task_id), "%s", run->task_id);
    swd_buf_init(&c->req);
    swd_buf_init(&c->resp);
    swd_timer_init(hp->o.clock, &c->later, on_later, c);
    c->next = hp->calls;
    if (hp->calls) {
        hp->calls->prev = c;
    }
    hp->calls = c;
    char why[256];
    if (hp->stopped) {
        fail_later(c, "shutting_down", "the http pool is stopping", true);
        return;
    }
    if (build_body(hp, c, run, why, sizeof(why)) != 0) {
        fail_later(c, "bad_payload", why, false);
        return;
    }
    int64_t timeout = hp->cfg->http.timeout_ms;
    if (run->timeout_ms > 0 && run->timeout_ms < timeout) {
        timeout = run->timeout_ms;
    }
    c->timeout_ms = timeout;
    c->easy = easy_get(hp);
    curl_easy_setopt(c->easy, CURLOPT_PRIVATE, (char *)c);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->req.data);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->req.len);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(timeout < CONNECT_TIMEOUT_MS ? timeout : CONNECT_TIMEOUT_MS));
    if (swd_curl_loop_add(hp->curl, c->easy) != 0) {
        easy_put(hp, c->easy);
        c->easy = NULL;
        fail_later(c, "transport_error", "libcurl refused the request", true);
        return;
    }
    hp->stats.requests++;
    int64_t now = swd_clock_now(hp->o.clock);
    bucket_fill(&hp->rpm, now);
    bucket_fill(&hp->tpm, now);
    bucket_take(&hp->rpm, 1.0);
    if (hp->tpm.on) {
        c->charged = run->estimated_tokens;
        bucket_take(&hp->tpm, (double)c->charged);
    }
    hp->agent = a;
    quota_check(hp);
}

static void http_cancel(swd_agent_t *a, const char *task_id, uint32_t attempt) {
    swd_http_pool_t *hp = a->link;
    for (http_call_t *c = hp->calls; c != NULL; c = c->next) {
        if (c->attempt != attempt || strcmp(c->task_id, task_id) != 0) {
            continue;
        }
        call_unlink(hp, c);
        if (c->easy != NULL) {
            swd_curl_loop_remove(hp->curl, c->easy);
            easy_put(hp, c->easy);
            hp->stats.cancelled++;
        }
        call_free(c);
        return;
    }
}

// Room for `max_concurrency` requests: a kept-alive connection and an easy
// handle for every slot.
static void set_slots(swd_http_pool_t *hp, uint32_t max_concurrency) {
    if (hp->stopped) {
        return;
    }
    long maxconn = max_concurrency > 65536 ? 65536L : (long)max_concurrency + 4;
    curl_multi_setopt(swd_curl_loop_multi(hp->curl), CURLMOPT_MAXCONNECTS, maxconn);
    if (max_concurrency > hp->idle_cap) {
        hp->idle = swd_xrealloc(hp->idle, max_concurrency * sizeof(CURL *));
        hp->idle_cap = max_concurrency;
    }
}

static void http_configure(swd_agent_t *a, uint32_t max_concurrency) {
    set_slots(a->link, max_concurrency);
}

static void http_release(swd_agent_t *a) {
    swd_http_pool_t *hp = a->link;
    hp->agent = NULL;
    pool_unref(hp);
}

static const swd_transport_ops_t http_ops = {
    .name = "http",
    .run = http_run,
    .cancel = http_cancel,
    .configure = http_configure,
    .release = http_release,
};

// ---------------------------------------------------------------------------
// The pool

static void stop_calls(swd_http_pool_t *hp) {
    while (hp->calls != NULL) {
        http_call_t *c = hp->calls;
        hp->calls = c->next;
        if (hp->calls != NULL) {
            hp->calls->prev = NULL;
        }
        if (c->easy != NULL) {
            if (hp->curl != NULL) {
                swd_curl_loop_remove(hp->curl, c->easy);
            }
            curl_easy_cleanup(c->easy);
        }
        call_free(c);
    }
}

static void pool_unref(swd_http_pool_t *hp) {
    if (--hp->refs > 0) {
        return;
    }
    stop_calls(hp);
    swd_timer_stop(&hp->quota_timer);
    free(hp->idle);
    free(hp);
}

// The agent's labels: what the pool is, in the configured (unexpanded) text.
static void pack_labels(const swd_pool_config_t *cfg, swd_buf_t *b) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, swd_buf_write_cb);
    msgpack_pack_map(&pk, cfg->http.model ? 3 : 2);
    swd_pack_kv_str(&pk, "endpoint", cfg->http.endpoint);
    swd_pack_kv_str(&pk, "format", cfg->http.format == SWD_HTTP_FORMAT_RAW ? "raw" : "openai");
    if (cfg->http.model) {
        swd_pack_kv_str(&pk, "model", cfg->http.model);
    }
}

static bool has_header(const swd_pool_config_t *cfg, const char *name) {
    for (size_t i = 0; i < cfg->http.headers.n; i++) {
        if (strcasecmp(cfg->http.headers.keys[i], name) == 0) {
            return true;
        }
    }
    return false;
}

// The expanded header list. Values are secrets: each line is wiped as soon
// as curl has its copy.
// A whole header value is scrubbed before the variable inside it.
static int longer_first(const void *a, const void *b) {
    size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
    return la < lb ? 1 : (la > lb ? -1 : 0);
}

static struct curl_slist *build_headers(const swd_pool_config_t *cfg, secrets_t *sv) {
    struct curl_slist *h = NULL;
    char bad[300];
    for (size_t i = 0; i < cfg->http.headers.n; i++) {
        char *v;
        if (expand_env(cfg->http.headers.values[i], &v, bad, sizeof(bad), sv) != 0) {
            continue; // swd_http_pool_check() refused it already
        }
        secret_add(sv, v, strlen(v));
        // "Name;" sends a header with an empty value ("Name:" would drop it).
        char *line = swd_xasprintf(*v ? "%s: %s" : "%s;%s", cfg->http.headers.keys[i], v);
        h = curl_slist_append(h, line);
        free_secret(line);
        free_secret(v);
    }
    if (!has_header(cfg, "Content-Type")) {
        h = curl_slist_append(h, "Content-Type: application/json");
    }
    if (!has_header(cfg, "Accept")) {
        h = curl_slist_append(h, "Accept: application/json");
    }
    if (!has_header(cfg, "Expect")) {
        h = curl_slist_append(h, "Expect:"); // no 100-continue round trip for larger bodies
    }
    return h;
}

static void free_headers(struct curl_slist *h) {
    for (struct curl_slist *s = h; s != NULL; s = s->next) {
        volatile char *p = s->data;
        while (*p != '\0') {
            *p++ = '\0';
        }
    }
    curl_slist_free_all(h);
}

swd_http_pool_t *swd_http_pool_new(const swd_http_pool_opts_t *o, char *err, size_t errlen) {
    const swd_pool_config_t *cfg = o->cfg;
    if (swd_http_pool_check(cfg, err, errlen) != 0) {
        return NULL;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    swd_http_pool_t *hp = swd_xcalloc(1, sizeof(*hp));
    hp->o = *o;
    hp->cfg = cfg;
    hp->refs = 2;
    char bad[300];
    expand_env(cfg->http.endpoint, &hp->url, bad, sizeof(bad), NULL);
    if (cfg->http.model != NULL) {
        expand_env(cfg->http.model, &hp->model, bad, sizeof(bad), NULL);
    }
    hp->https = strncmp(hp->url, "https://", 8) == 0;
    secrets_t sv = {0};
    hp->headers = build_headers(cfg, &sv);
    if (sv.n > 1) {
        qsort(sv.v, sv.n, sizeof(char *), longer_first);
    }
    hp->secrets = sv.v;
    hp->nsecrets = sv.n;
    hp->curl = swd_curl_loop_new(o->loop, o->clock, on_done, hp);
    int64_t now = swd_clock_now(o->clock);
    bucket_init(&hp->rpm, cfg->http.rpm, now);
    bucket_init(&hp->tpm, cfg->http.tpm, now);
    hp->quota_since_ms = -1;
    swd_timer_init(o->clock, &hp->quota_timer, on_quota_timer, hp);
    swd_buf_t labels;
    swd_buf_init(&labels);
    pack_labels(cfg, &labels);
    const char **caps = swd_xcalloc(cfg->capabilities.n + 1, sizeof(char *));
    for (size_t i = 0; i < cfg->capabilities.n; i++) {
        caps[i] = cfg->capabilities.items[i];
    }
    swd_agent_spec_t spec = {
        .name = cfg->name,
        .pool = cfg->name,
        .caps = caps,
        .ncaps = (uint32_t)cfg->capabilities.n,
        .max_concurrency = (uint32_t)cfg->max_concurrency,
        .labels = labels.data,
        .labels_len = labels.len,
    };
    // Slots before registering: registration may dispatch at once.
    set_slots(hp, spec.max_concurrency);
    hp->agent = swd_agents_add(o->agents, &spec, &http_ops, hp);
    free(caps);
    swd_buf_close(&labels);
    swd_log_info("http", "http pool started", "{s:s,s:s,s:s,s:s?,s:i,s:I,s:I,s:I}", "pool",
                 cfg->name, "endpoint", cfg->http.endpoint, "format",
                 cfg->http.format == SWD_HTTP_FORMAT_RAW ? "raw" : "openai", "model",
                 cfg->http.model, "max_concurrency", (int)cfg->max_concurrency, "timeout_ms",
                 (json_int_t)cfg->http.timeout_ms, "rpm", (json_int_t)cfg->http.rpm, "tpm",
                 (json_int_t)cfg->http.tpm);
    return hp;
}

const char *swd_http_pool_name(const swd_http_pool_t *hp) {
    return hp->cfg->name;
}

void swd_http_pool_stats(const swd_http_pool_t *hp, swd_http_pool_stats_t *out) {
    *out = hp->stats;
    if (hp->quota_since_ms >= 0) {
        out->quota_wait_ms += swd_clock_now(hp->o.clock) - hp->quota_since_ms;
    }
}

void swd_http_pool_free(swd_http_pool_t *hp) {
    if (hp == NULL) {
        return;
    }
    hp->stopped = true;
    swd_timer_stop(&hp->quota_timer);
    stop_calls(hp);
    while (hp->nidle > 0) {
        curl_easy_cleanup(hp->idle[--hp->nidle]);
    }
    swd_curl_loop_free(hp->curl);
    hp->curl = NULL;
    free_headers(hp->headers);
    hp->headers = NULL;
    for (size_t i = 0; i < hp->nsecrets; i++) {
        free_secret(hp->secrets[i]);
    }
    free(hp->secrets);
    hp->secrets = NULL;
    hp->nsecrets = 0;
    free_secret(hp->url);
    hp->url = NULL;
    free(hp->model);
    hp->model = NULL;
    curl_global_cleanup();
    swd_log_info("http", "http pool stopped", "{s:s,s:I,s:I,s:I}", "pool", hp->cfg->name,
                 "requests", (json_int_t)hp->stats.requests, "succeeded",
                 (json_int_t)hp->stats.succeeded, "connections", (json_int_t)hp->stats.connections);
    pool_unref(hp);
}
