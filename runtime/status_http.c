#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/encoder.h"
#include "proto/json.h"
#include "runtime/dashboard.h"
#include "runtime/http_server.h"
#include "runtime/log.h"
#include "runtime/status_http.h"

#define LOGS_DEFAULT 200
#define LOGS_MAX 100000

typedef struct follower {
    struct swd_status *status;
    swd_http_res_t *res;
    swd_log_sink_t *sink;
    struct follower *prev, *next;
} follower_t;

struct swd_status {
    swd_http_server_t *http;
    const swd_api_t *api;
    const bool *ready;
    swd_metrics_t *metrics;
    follower_t *followers;
};

// ---- JSON from the same msgpack objects the RPC API sends ----

static void respond_packed(swd_http_res_t *res, int status, const swd_buf_t *packed) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    json_t *j = NULL;
    if (msgpack_unpack_next(&u, packed->data, packed->len, &off) == MSGPACK_UNPACK_SUCCESS) {
        j = swd_json_from_msgpack(&u.data);
    }
    msgpack_unpacked_destroy(&u);
    char *text = j ? json_dumps(j, JSON_COMPACT | swd_json_real_flags(j)) : NULL;
    json_decref(j);
    if (text == NULL) {
        const char *err = "{\"error\":\"internal\"}";
        swd_http_respond(res, 500, "application/json", err, strlen(err));
        return;
    }
    swd_http_respond(res, status, "application/json", text, strlen(text));
    free(text);
}

typedef void (*pack_fn)(const swd_status_t *s, msgpack_packer *pk, const void *arg);

static void respond_json(swd_http_res_t *res, const swd_status_t *s, pack_fn fn, const void *arg) {
    swd_buf_t b;
    swd_buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, swd_buf_write_cb);
    fn(s, &pk, arg);
    respond_packed(res, 200, &b);
    swd_buf_close(&b);
}

static void respond_text(swd_http_res_t *res, int status, const char *text) {
    swd_http_respond(res, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void respond_error(swd_http_res_t *res, int status, const char *message) {
    json_t *j = json_pack("{s:s}", "error", message);
    char *text = json_dumps(j, JSON_COMPACT);
    swd_http_respond(res, status, "application/json", text, strlen(text));
    free(text);
    json_decref(j);
}

// ---- routes ----

static void pack_stats(const swd_status_t *s, msgpack_packer *pk, const void *arg) {
    swd_api_pack_stats(s->api, pk);
}

static void pack_agents(const swd_status_t *s, msgpack_packer *pk, const void *arg) {
    swd_api_pack_agents(s->api, pk);
}

static void pack_task(const swd_status_t *s, msgpack_packer *pk, const void *arg) {
    swd_sched_pack_task(s->api->sched, arg, SWD_TASK_VIEW_FULL, pk);
}

// /tuner, /healing, /scaling: the controller's mode, and what it knows.
static void pack_controller(const swd_status_t *s, msgpack_packer *pk, const void *arg) {
    const char *which = arg;
    swd_mode_t mode = strcmp(which, "tuner") == 0 ? s->api->cfg->tuner.mode : SWD_MODE_OFF;
    msgpack_pack_map(pk, 2);
    swd_pack_kv_str(pk, "mode", swd_mode_name(mode));
    swd_pack_kv_bool(pk, "available", false); // the controllers are later issues
}

static void on_status(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    respond_json(res, data, pack_stats, NULL);
}

static void on_agents(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    respond_json(res, data, pack_agents, NULL);
}

static void on_task(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    swd_status_t *s = data;
    const char *id = req->path + strlen("/tasks/");
    const swd_task_t *t = swd_sched_find(s->api->sched, id, strlen(id));
    if (t == NULL) {
        respond_error(res, 404, "no such task");
        return;
    }
    respond_json(res, s, pack_task, t);
}

static void on_controller(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    respond_json(res, data, pack_controller, req->path + 1);
}

static void on_healthz(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    respond_text(res, 200, "ok\n");
}

static void on_readyz(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    swd_status_t *s = data;
    if (*s->ready) {
        respond_text(res, 200, "ok\n");
    } else {
        respond_text(res, 503, "not ready\n");
    }
}

static void on_metrics(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    swd_status_t *s = data;
    swd_buf_t b;
    swd_buf_init(&b);
    swd_metrics_render(s->metrics, &b);
    swd_http_respond(res, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    swd_buf_close(&b);
}

static void on_dashboard(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    swd_http_respond(res, 200, "text/html; charset=utf-8", swd_dashboard_html,
                     swd_dashboard_html_len);
}

// ---- logs ----

static void append_line(const char *line, void *data) {
    swd_buf_t *b = data;
    swd_buf_append(b, line, strlen(line));
    swd_buf_append(b, "\n", 1);
}

static void follower_drop(follower_t *f) {
    swd_status_t *s = f->status;
    if (f->sink != NULL) {
        swd_log_remove_sink(f->sink);
        f->sink = NULL;
    }
    if (s != NULL) { // NULL once the endpoint closed and let go of it
        if (f->prev) {
            f->prev->next = f->next;
        } else {
            s->followers = f->next;
        }
        if (f->next) {
            f->next->prev = f->prev;
        }
    }
    free(f);
}

static void on_follower_gone(swd_http_res_t *res, void *data) {
    follower_drop(data);
}

static void on_follow_record(const json_t *record, const char *line, void *data) {
    follower_t *f = data;
    swd_buf_t b;
    swd_buf_init(&b);
    swd_buf_append(&b, "data: ", 6);
    swd_buf_append(&b, line, strlen(line));
    swd_buf_append(&b, "\n\n", 2);
    // A follower that stops reading is cut off by the server (false); its
    // close callback then drops it, outside this log call.
    if (!swd_http_stream_write(f->res, b.data, b.len) && f->sink != NULL) {
        swd_log_remove_sink(f->sink);
        f->sink = NULL;
    }
    swd_buf_close(&b);
}

static void on_logs(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    swd_status_t *s = data;
    char val[32];
    if (swd_http_query_get(req, "follow", val, sizeof(val)) != NULL && strcmp(val, "0") != 0) {
        follower_t *f = swd_xcalloc(1, sizeof(*f));
        f->status = s;
        f->res = res;
        f->next = s->followers;
        if (s->followers) {
            s->followers->prev = f;
        }
        s->followers = f;
        swd_http_stream_begin(res, 200, "text/event-stream");
        swd_http_stream_on_close(res, on_follower_gone, f);
        f->sink = swd_log_add_sink(on_follow_record, f);
        return;
    }
    long n = LOGS_DEFAULT;
    if (swd_http_query_get(req, "n", val, sizeof(val)) != NULL && val[0] != '\0') {
        char *end;
        n = strtol(val, &end, 10);
        if (*end != '\0' || n < 0) {
            respond_error(res, 400, "n must be a non-negative integer");
            return;
        }
        n = n > LOGS_MAX ? LOGS_MAX : n;
    }
    swd_buf_t b;
    swd_buf_init(&b);
    swd_log_ring_last((size_t)n, append_line, &b);
    swd_http_respond(res, 200, "application/x-ndjson", b.data ? b.data : "", b.len);
    swd_buf_close(&b);
}

// ---- life ----

swd_status_t *swd_status_new(uv_loop_t *loop, const swd_api_t *api, const bool *ready,
                             swd_metrics_t *metrics) {
    swd_status_t *s = swd_xcalloc(1, sizeof(*s));
    s->api = api;
    s->ready = ready;
    s->metrics = metrics;
    swd_http_server_opts_t o = {0};
    s->http = swd_http_server_new(loop, &o);
    static const struct {
        const char *path;
        bool prefix;
        swd_http_handler_fn fn;
    } routes[] = {
        {"/", false, on_dashboard},         {"/metrics", false, on_metrics},
        {"/status", false, on_status},      {"/agents", false, on_agents},
        {"/tasks/", true, on_task},         {"/tuner", false, on_controller},
        {"/healing", false, on_controller}, {"/scaling", false, on_controller},
        {"/logs", false, on_logs},          {"/healthz", false, on_healthz},
        {"/readyz", false, on_readyz},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        swd_http_server_route(s->http, routes[i].path, routes[i].prefix, routes[i].fn, s);
    }
    return s;
}

int swd_status_listen(swd_status_t *s, const char *addr, char *bound, size_t cap, char *err,
                      size_t errlen) {
    return swd_http_server_listen(s->http, addr, bound, cap, err, errlen);
}

void swd_status_close(swd_status_t *s) {
    if (s == NULL) {
        return;
    }
    // Closing the server runs each follower's close callback later, from the
    // loop; detach them from the log now, and from `s`, which goes away.
    for (follower_t *f = s->followers; f != NULL; f = f->next) {
        if (f->sink != NULL) {
            swd_log_remove_sink(f->sink);
            f->sink = NULL;
        }
        f->status = NULL;
    }
    s->followers = NULL;
    swd_http_server_close(s->http);
    free(s);
}
