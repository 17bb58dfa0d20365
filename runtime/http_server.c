// The HTTP/1.1 server of runtime/http_server.h. A connection goes through
// these phases:
//
//   reading ──request──▶ waiting (res in the owner's hands) ──answer──▶ reading
//      │                    └─stream_begin─▶ streaming ──end/cut──┐
//      └─error (400/408/413/431), Connection: close ─▶ finishing ─┴─▶
//   flushed ─▶ shutdown(write side) ─▶ lingering (drain input, ≤ 2 s) ─▶ closed
//
// http-parser pauses itself at the end of each request (on_message_complete),
// so bytes of pipelined requests wait in `in` until the answer is queued.
// Reading goes on meanwhile (a client that leaves is noticed at once), but
// stops when `in` holds more than a request's worth of bytes.
#include <assert.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/errors.h"
#include "runtime/http_server.h"
#include "runtime/log.h"
#include "runtime/net.h"

enum {
    DEFAULT_MAX_CONNECTIONS = 256,
    DEFAULT_MAX_HEADER_BYTES = 32 * 1024,
    DEFAULT_IDLE_TIMEOUT_MS = 30000,
    DEFAULT_MAX_BODY_BYTES = 64 * 1024,
    DEFAULT_STREAM_PENDING = 1024 * 1024,
    READ_CHUNK = 64 * 1024,
    LINGER_MS = 2000,
    // http_parser_parse_url() keeps offsets in uint16_t.
    MAX_URL_BYTES = 65535,
    // What a header line costs beyond its name and value (": " and CRLF),
    // so a flood of empty headers still counts against max_header_bytes.
    HEADER_OVERHEAD = 4,
};

typedef struct route {
    char *path;
    size_t len;
    bool prefix;
    swd_http_handler_fn fn;
    void *data;
} route_t;

// Where a header's name and value sit in conn.hdrs (offsets: the buffer
// grows while headers arrive).
typedef struct hdr_span {
    size_t name_off, val_off;
} hdr_span_t;

typedef enum hdr_state { HS_NONE, HS_FIELD, HS_VALUE } hdr_state_t;

typedef struct conn conn_t;

struct swd_http_res {
    conn_t *conn;
    bool head;        // HEAD: headers only
    bool keep_alive;  // the request allows another one on this connection
    bool http10;      // HTTP/1.0 client: keep-alive must be said explicitly
    bool streaming;   // swd_http_stream_begin() was called
    bool gone;        // the stream was cut off or the connection is closing
    bool in_close_cb; // the close callback runs: finishing is a no-op
    swd_http_close_cb on_close;
    void *close_data;
};

struct conn {
    swd_http_server_t *server;
    conn_t *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int open_handles;
    bool closing;    // uv_close() was called
    bool refused;    // over max_connections: 503, then close
    bool reading;    // uv_read_start() is in effect
    bool read_eof;   // the client shut down its side
    bool finishing;  // the last answer is queued: no more requests
    bool lingering;  // our side is shut down; input is drained and dropped
    bool processing; // inside conn_process(): answers given now continue there
    http_parser parser;
    swd_buf_t in; // received, not yet parsed
    size_t in_off;
    swd_buf_t out; // queued, not yet handed to uv_write
    char *wbuf;    // the one write in flight
    size_t wlen;
    // The request being parsed.
    swd_buf_t url;
    swd_buf_t hdrs; // "name\0value\0" pairs
    hdr_span_t *spans;
    size_t nspans, cap_spans;
    hdr_state_t hstate;
    size_t header_bytes;
    uint64_t body_bytes;
    bool in_message;
    bool keep_alive;
    int error_status; // set by a parser callback that stops the parser
    swd_http_res_t *res;
};

struct swd_http_server {
    uv_loop_t *loop;
    swd_http_server_opts_t opts;
    uv_tcp_t *listener; // NULL when not listening
    int open_handles;   // listeners not yet closed
    bool closing;
    conn_t *conns;
    uint32_t nactive;
    uint32_t nrefused;
    route_t *routes;
    size_t nroutes;
    char rbuf[READ_CHUNK]; // every read lands here, then goes to a conn's `in`
};

static const http_parser_settings parser_settings;

static void conn_close(conn_t *c);
static void conn_process(conn_t *c);
static void conn_finish(conn_t *c);
static void conn_flush(conn_t *c);
static void conn_fail(conn_t *c, int status);
static void read_start(conn_t *c);

// ---- small helpers ----

static void buf_puts(swd_buf_t *b, const char *s) {
    swd_buf_append(b, s, strlen(s));
}

static void buf_putu(swd_buf_t *b, unsigned long long v) {
    char num[32];
    int n = snprintf(num, sizeof(num), "%llu", v);
    swd_buf_append(b, num, (size_t)n);
}

static size_t pending_out(const conn_t *c) {
    return c->out.len + c->wlen;
}

static size_t buffered_in(const conn_t *c) {
    return c->in.len - c->in_off;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

// Percent-decodes `len` bytes of `in` into `out` (room for `cap` bytes and
// the NUL). Returns the decoded length, or -1 for a bad escape (when
// `strict`), a decoded NUL byte, or too little room.
static long pct_decode(const char *in, size_t len, bool plus_space, bool strict, char *out,
                       size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '%' && i + 2 < len && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            ch = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
        } else if (ch == '%' && strict) {
            return -1;
        } else if (ch == '+' && plus_space) {
            ch = ' ';
        }
        if (ch == '\0' || o + 1 >= cap) {
            return -1;
        }
        out[o++] = ch;
    }
    if (cap == 0) {
        return -1;
    }
    out[o] = '\0';
    return (long)o;
}

static bool valid_field_text(const char *s) {
    return s != NULL && strpbrk(s, "\r\n") == NULL;
}

// ---- server ----

swd_http_server_t *swd_http_server_new(uv_loop_t *loop, const swd_http_server_opts_t *opts) {
    swd_http_server_t *s = swd_xcalloc(1, sizeof(*s));
    s->loop = loop;
    if (opts != NULL) {
        s->opts = *opts;
    }
    if (s->opts.max_connections == 0) {
        s->opts.max_connections = DEFAULT_MAX_CONNECTIONS;
    }
    if (s->opts.max_header_bytes == 0) {
        s->opts.max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
    }
    if (s->opts.idle_timeout_ms == 0) {
        s->opts.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
    }
    if (s->opts.max_body_bytes == 0) {
        s->opts.max_body_bytes = DEFAULT_MAX_BODY_BYTES;
    }
    if (s->opts.max_stream_pending_bytes == 0) {
        s->opts.max_stream_pending_bytes = DEFAULT_STREAM_PENDING;
    }
    return s;
}

void swd_http_server_route(swd_http_server_t *s, const char *path, bool prefix,
                           swd_http_handler_fn fn, void *data) {
    for (size_t i = 0; i < s->nroutes; i++) {
        route_t *r = &s->routes[i];
        if (r->prefix == prefix && strcmp(r->path, path) == 0) {
            r->fn = fn;
            r->data = data;
            return;
        }
    }
    s->routes = swd_xrealloc(s->routes, (s->nroutes + 1) * sizeof(*s->routes));
    s->routes[s->nroutes++] = (route_t){swd_xstrdup(path), strlen(path), prefix, fn, data};
}

uint32_t swd_http_server_connections(const swd_http_server_t *s) {
    return s->nactive;
}

static const route_t *route_find(const swd_http_server_t *s, const char *path) {
    const route_t *best = NULL;
    for (size_t i = 0; i < s->nroutes; i++) {
        const route_t *r = &s->routes[i];
        if (!r->prefix) {
            if (strcmp(r->path, path) == 0) {
                return r;
            }
        } else if (strncmp(r->path, path, r->len) == 0 && (best == NULL || r->len > best->len)) {
            best = r;
        }
    }
    return best;
}

static void server_maybe_free(swd_http_server_t *s) {
    if (!s->closing || s->open_handles > 0 || s->conns != NULL) {
        return;
    }
    for (size_t i = 0; i < s->nroutes; i++) {
        free(s->routes[i].path);
    }
    free(s->routes);
    free(s);
}

static void on_listener_close(uv_handle_t *h) {
    swd_http_server_t *s = h->data;
    free(h);
    s->open_handles--;
    server_maybe_free(s);
}

static void listener_close(swd_http_server_t *s) {
    if (s->listener != NULL) {
        uv_close((uv_handle_t *)s->listener, on_listener_close);
        s->listener = NULL;
    }
}

void swd_http_server_close(swd_http_server_t *s) {
    if (s == NULL || s->closing) {
        return;
    }
    s->closing = true;
    listener_close(s);
    // conn_close() only starts closing: nothing leaves the list here.
    for (conn_t *c = s->conns; c != NULL; c = c->next) {
        conn_close(c);
    }
    server_maybe_free(s);
}

static void on_connection(uv_stream_t *l, int status);

int swd_http_server_listen(swd_http_server_t *s, const char *addr, char *bound, size_t cap,
                           char *err, size_t errlen) {
    if (s->closing || s->listener != NULL) {
        snprintf(err, errlen, "HTTP server is %s", s->closing ? "closing" : "already listening");
        return SWD_ESTATE;
    }
    struct sockaddr_storage ss;
    int r = swd_net_parse(addr, &ss, err, errlen);
    if (r < 0) {
        return r;
    }
    uv_tcp_t *l = swd_xcalloc(1, sizeof(*l));
    r = uv_tcp_init(s->loop, l);
    if (r < 0) {
        free(l);
        snprintf(err, errlen, "cannot listen on %s: %s", addr, uv_strerror(r));
        return r;
    }
    l->data = s;
    s->open_handles++;
    s->listener = l;
    r = uv_tcp_bind(l, (const struct sockaddr *)&ss, 0);
    if (r == 0) {
        r = uv_listen((uv_stream_t *)l, 128, on_connection);
    }
    if (r == 0 && bound != NULL) {
        r = swd_net_tcp_local(l, bound, cap);
    }
    if (r < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, uv_strerror(r));
        listener_close(s);
    }
    return r;
}

// ---- connection lifetime ----

static void conn_free(conn_t *c) {
    swd_http_server_t *s = c->server;
    swd_http_res_t *res = c->res;
    if (res != NULL) {
        // The owner still holds `res`: this is its last word on it.
        res->gone = true;
        res->in_close_cb = true;
        if (res->on_close != NULL) {
            res->on_close(res, res->close_data);
        }
        free(res);
        c->res = NULL;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    if (c->refused) {
        s->nrefused--;
    } else {
        s->nactive--;
    }
    swd_buf_close(&c->in);
    swd_buf_close(&c->out);
    swd_buf_close(&c->url);
    swd_buf_close(&c->hdrs);
    free(c->spans);
    free(c);
    server_maybe_free(s);
}

static void on_conn_handle_close(uv_handle_t *h) {
    conn_t *c = h->data;
    if (--c->open_handles == 0) {
        conn_free(c);
    }
}

// Closes now (what is queued is dropped). Idempotent; the memory goes in
// the close callbacks, so the caller may go on touching `c`.
static void conn_close(conn_t *c) {
    if (c->closing) {
        return;
    }
    c->closing = true;
    if (c->res != NULL) {
        c->res->gone = true;
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_close);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_close);
}

static void timer_start(conn_t *c, uint64_t ms);

static void on_shutdown(uv_shutdown_t *req, int status) {
    conn_t *c = req->data;
    if (status < 0) {
        conn_close(c);
    }
}

// Everything queued is written and no more answers come: shut our side
// down and drain the client's input for a moment, so that a client still
// sending gets our last answer instead of a reset.
static void conn_after_flush(conn_t *c) {
    if (c->lingering) {
        return;
    }
    if (c->read_eof) {
        conn_close(c);
        return;
    }
    c->lingering = true;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    read_start(c); // drains, and sees the client's close
    uint64_t idle = c->server->opts.idle_timeout_ms;
    timer_start(c, idle < LINGER_MS ? idle : LINGER_MS);
}

// ---- timers ----

static void on_timer(uv_timer_t *t) {
    conn_t *c = t->data;
    if (c->closing) {
        return;
    }
    if (c->lingering || c->finishing || pending_out(c) > 0 || c->res != NULL) {
        // Lingering is over, or the client stopped reading our answers.
        conn_close(c);
        return;
    }
    if (!c->in_message) {
        conn_close(c); // idle
        return;
    }
    conn_fail(c, 408); // the headers did not come in time
}

static void timer_start(conn_t *c, uint64_t ms) {
    if (!c->closing) {
        uv_timer_start(&c->timer, on_timer, ms, 0);
    }
}

// ---- writing ----

static void on_write(uv_write_t *req, int status) {
    conn_t *c = req->data;
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = 0;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->closing) {
        return;
    }
    // Progress: the client reads. (While a response is outstanding the
    // timer is off; a stream is bounded by its pending output instead.)
    if (!c->lingering && c->res == NULL) {
        timer_start(c, c->server->opts.idle_timeout_ms);
    }
    conn_flush(c);
    if (c->wbuf != NULL) {
        return;
    }
    if (c->finishing) {
        conn_after_flush(c);
    } else {
        conn_process(c); // output was over the bound: go on with pipelined requests
    }
}

static void conn_flush(conn_t *c) {
    if (c->closing || c->wbuf != NULL || c->out.len == 0) {
        return;
    }
    size_t len;
    char *data = swd_buf_steal(&c->out, &len);
    if (len > UINT_MAX) {
        // Bigger than one uv_buf_t: no answer of a status endpoint is.
        free(data);
        conn_close(c);
        return;
    }
    c->wbuf = data;
    c->wlen = len;
    c->wreq.data = c;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r < 0) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wlen = 0;
        conn_close(c);
    }
}

// No more requests on this connection: send what is queued, then shut
// down (conn_after_flush).
static void conn_finish(conn_t *c) {
    if (c->closing || c->finishing) {
        return;
    }
    c->finishing = true;
    // Bounds the flush: a client that never reads is closed at the timeout.
    timer_start(c, c->server->opts.idle_timeout_ms);
    conn_flush(c);
    if (!c->closing && c->wbuf == NULL) {
        conn_after_flush(c);
    }
}

static int status_or_500(int status) {
    assert(status >= 100 && status <= 599);
    return status >= 100 && status <= 599 ? status : 500;
}

// The status line and the headers every answer has. `content_length` < 0:
// none (a stream).
static void write_head(conn_t *c, const swd_http_res_t *res, int status, const char *content_type,
                       long long content_length, const char *extra) {
    status = status_or_500(status);
    swd_buf_t *b = &c->out;
    buf_puts(b, "HTTP/1.1 ");
    buf_putu(b, (unsigned)status);
    buf_puts(b, " ");
    buf_puts(b, http_status_str((enum http_status)status));
    buf_puts(b, "\r\n");
    if (content_type != NULL) {
        assert(valid_field_text(content_type));
        buf_puts(b, "Content-Type: ");
        buf_puts(b, valid_field_text(content_type) ? content_type : "application/octet-stream");
        buf_puts(b, "\r\n");
    }
    if (content_length >= 0) {
        buf_puts(b, "Content-Length: ");
        buf_putu(b, (unsigned long long)content_length);
        buf_puts(b, "\r\n");
    }
    buf_puts(b, "Cache-Control: no-store\r\n");
    if (extra != NULL) {
        buf_puts(b, extra);
    }
    // A stream has no length: its end is the connection's close, so say so.
    if (content_length < 0) {
        buf_puts(b, "Connection: close\r\n");
    } else if (res->keep_alive && res->http10) {
        buf_puts(b, "Connection: keep-alive\r\n");
    } else if (!res->keep_alive) {
        buf_puts(b, "Connection: close\r\n");
    }
    buf_puts(b, "\r\n");
}

// The owner is done with `res`: free it and go on with the connection.
static void res_release(swd_http_res_t *res, bool end_connection) {
    conn_t *c = res->conn;
    bool keep = res->keep_alive && !end_connection;
    c->res = NULL;
    free(res);
    if (c->closing) {
        return;
    }
    if (!keep) {
        conn_finish(c);
        return;
    }
    timer_start(c, c->server->opts.idle_timeout_ms);
    conn_process(c);
}

static void respond_extra(swd_http_res_t *res, int status, const char *content_type,
                          const char *body, size_t len, const char *extra) {
    if (res == NULL || res->in_close_cb) {
        return;
    }
    conn_t *c = res->conn;
    assert(!res->streaming);
    if (res->streaming) {
        swd_http_stream_end(res);
        return;
    }
    if (!c->closing) {
        write_head(c, res, status, content_type, (long long)len, extra);
        if (!res->head && len > 0) {
            swd_buf_append(&c->out, body, len);
        }
        conn_flush(c);
    }
    res_release(res, false);
}

void swd_http_respond(swd_http_res_t *res, int status, const char *content_type, const char *body,
                      size_t len) {
    respond_extra(res, status, content_type, body, len, NULL);
}

void swd_http_stream_begin(swd_http_res_t *res, int status, const char *content_type) {
    if (res == NULL || res->in_close_cb || res->streaming) {
        return;
    }
    conn_t *c = res->conn;
    res->streaming = true;
    if (c->closing) {
        return;
    }
    write_head(c, res, status, content_type, -1, NULL);
    conn_flush(c);
    if (res->head) {
        res->gone = true;
        conn_finish(c);
    }
}

bool swd_http_stream_write(swd_http_res_t *res, const char *data, size_t len) {
    if (res == NULL || res->in_close_cb || res->gone) {
        return false;
    }
    assert(res->streaming && "swd_http_stream_write() before swd_http_stream_begin()");
    if (!res->streaming) {
        return false;
    }
    conn_t *c = res->conn;
    if (c->closing) {
        return false;
    }
    if (pending_out(c) + len > c->server->opts.max_stream_pending_bytes) {
        // A follower that stopped reading: cut it off rather than buffer.
        res->gone = true;
        conn_close(c);
        return false;
    }
    swd_buf_append(&c->out, data, len);
    conn_flush(c);
    return !c->closing;
}

void swd_http_stream_on_close(swd_http_res_t *res, swd_http_close_cb cb, void *data) {
    if (res != NULL && !res->in_close_cb) {
        res->on_close = cb;
        res->close_data = data;
    }
}

void swd_http_stream_end(swd_http_res_t *res) {
    if (res == NULL || res->in_close_cb) {
        return;
    }
    res_release(res, true);
}

bool swd_http_res_gone(const swd_http_res_t *res) {
    return res->gone || res->conn->closing;
}

// ---- requests ----

static void conn_fail(conn_t *c, int status) {
    swd_http_res_t tmp = {.conn = c, .keep_alive = false};
    const char *reason = http_status_str((enum http_status)status);
    write_head(c, &tmp, status, "text/plain", (long long)strlen(reason) + 1, NULL);
    buf_puts(&c->out, reason);
    buf_puts(&c->out, "\n");
    conn_finish(c);
}

static const char *header_find(const swd_http_header_t *h, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(h[i].name, name) == 0) {
            return h[i].value;
        }
    }
    return NULL;
}

const char *swd_http_req_header(const swd_http_req_t *req, const char *name) {
    return header_find(req->headers, req->nheaders, name);
}

const char *swd_http_query_get(const swd_http_req_t *req, const char *name, char *buf, size_t cap) {
    const char *q = req->query;
    size_t nlen = strlen(name);
    while (q != NULL && *q != '\0') {
        size_t plen = strcspn(q, "&;");
        size_t klen = strcspn(q, "=&;");
        // Compares the decoded key without allocating: decode into `buf`
        // when it fits, else it cannot be `name` unless `name` is as long.
        char key[256];
        if (klen < sizeof(key) && pct_decode(q, klen, true, false, key, sizeof(key)) >= 0 &&
            strlen(key) == nlen && memcmp(key, name, nlen) == 0) {
            if (klen == plen) {
                if (cap == 0) {
                    return NULL;
                }
                buf[0] = '\0';
                return buf;
            }
            const char *v = q + klen + 1;
            return pct_decode(v, plen - klen - 1, true, false, buf, cap) >= 0 ? buf : NULL;
        }
        q += plen;
        if (*q != '\0') {
            q++;
        }
    }
    return NULL;
}

// Splits the target into a decoded path and the raw query. `path` gets
// `cap` bytes. False for a target that is not a path (or absolute URL).
static bool target_split(conn_t *c, char *path, size_t cap, const char **query) {
    struct http_parser_url u;
    http_parser_url_init(&u);
    int is_connect = c->parser.method == HTTP_CONNECT;
    if (http_parser_parse_url(c->url.data, c->url.len, is_connect, &u) != 0) {
        return false;
    }
    *query = NULL;
    if (u.field_set & (1 << UF_QUERY)) {
        // The query ends the path part, so it can be cut out in place.
        char *qs = c->url.data + u.field_data[UF_QUERY].off;
        qs[u.field_data[UF_QUERY].len] = '\0';
        *query = qs;
    }
    if (!(u.field_set & (1 << UF_PATH))) {
        snprintf(path, cap, "/");
        return true;
    }
    const char *p = c->url.data + u.field_data[UF_PATH].off;
    return pct_decode(p, u.field_data[UF_PATH].len, false, true, path, cap) >= 0;
}

static void hdr_end(conn_t *c) {
    if (c->hstate == HS_FIELD) {
        // A header without a value.
        swd_buf_append(&c->hdrs, "", 1);
        c->spans[c->nspans - 1].val_off = c->hdrs.len;
    }
    if (c->hstate != HS_NONE) {
        swd_buf_append(&c->hdrs, "", 1);
    }
    c->hstate = HS_NONE;
}

static swd_http_header_t *headers_build(conn_t *c) {
    swd_http_header_t *h = swd_xcalloc(c->nspans ? c->nspans : 1, sizeof(*h));
    for (size_t i = 0; i < c->nspans; i++) {
        h[i].name = c->hdrs.data + c->spans[i].name_off;
        char *v = c->hdrs.data + c->spans[i].val_off;
        size_t vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
            v[--vl] = '\0';
        }
        h[i].value = v;
    }
    return h;
}

static void dispatch_route(conn_t *c, swd_http_res_t *res, swd_http_req_t *req) {
    if (c->parser.method != HTTP_GET && c->parser.method != HTTP_HEAD) {
        static const char msg[] = "Method Not Allowed\n";
        respond_extra(res, 405, "text/plain", msg, sizeof(msg) - 1, "Allow: GET, HEAD\r\n");
        return;
    }
    const route_t *r = route_find(c->server, req->path);
    if (r == NULL) {
        static const char msg[] = "Not Found\n";
        swd_http_respond(res, 404, "text/plain", msg, sizeof(msg) - 1);
        return;
    }
    r->fn(res, req, r->data);
}

// A complete request: hand it to its handler (or answer 400/404/405).
static void conn_dispatch(conn_t *c) {
    uv_timer_stop(&c->timer);
    hdr_end(c);
    swd_http_res_t *res = swd_xcalloc(1, sizeof(*res));
    res->conn = c;
    res->head = c->parser.method == HTTP_HEAD;
    res->http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
    res->keep_alive = c->keep_alive && !c->server->closing;
    c->res = res;
    swd_buf_append(&c->url, "", 1); // NUL-terminates, not part of url.len
    c->url.len--;
    char *path = swd_xmalloc(c->url.len + 2);
    swd_http_req_t req = {
        .method = http_method_str((enum http_method)c->parser.method),
        .path = path,
        .url = c->url.data,
        .http_major = c->parser.http_major,
        .http_minor = c->parser.http_minor,
        .nheaders = c->nspans,
    };
    if (!target_split(c, path, c->url.len + 2, &req.query)) {
        static const char msg[] = "Bad Request\n";
        res->keep_alive = false;
        swd_http_respond(res, 400, "text/plain", msg, sizeof(msg) - 1);
        free(path);
        return;
    }
    swd_http_header_t *headers = headers_build(c);
    req.headers = headers;
    dispatch_route(c, res, &req);
    free(headers);
    free(path);
}

// ---- http-parser callbacks ----

static int count_header_bytes(conn_t *c, size_t n) {
    c->header_bytes += n;
    if (c->header_bytes > c->server->opts.max_header_bytes) {
        c->error_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p) {
    conn_t *c = p->data;
    swd_buf_reset(&c->url);
    swd_buf_reset(&c->hdrs);
    c->nspans = 0;
    c->hstate = HS_NONE;
    c->header_bytes = 0;
    c->body_bytes = 0;
    c->in_message = true;
    c->keep_alive = false;
    c->error_status = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    if (c->url.len + len > MAX_URL_BYTES) {
        c->error_status = 414;
        return -1;
    }
    if (count_header_bytes(c, len) < 0) {
        return -1;
    }
    swd_buf_append(&c->url, at, len);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    if (count_header_bytes(c, len + (c->hstate != HS_FIELD ? HEADER_OVERHEAD : 0)) < 0) {
        return -1;
    }
    if (c->hstate != HS_FIELD) {
        hdr_end(c);
        if (c->nspans == c->cap_spans) {
            c->cap_spans = c->cap_spans ? c->cap_spans * 2 : 16;
            c->spans = swd_xrealloc(c->spans, c->cap_spans * sizeof(*c->spans));
        }
        c->spans[c->nspans++] = (hdr_span_t){c->hdrs.len, 0};
        c->hstate = HS_FIELD;
    }
    swd_buf_append(&c->hdrs, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    if (c->hstate == HS_NONE || count_header_bytes(c, len) < 0) {
        return -1;
    }
    if (c->hstate == HS_FIELD) {
        swd_buf_append(&c->hdrs, "", 1);
        c->spans[c->nspans - 1].val_off = c->hdrs.len;
        c->hstate = HS_VALUE;
    }
    swd_buf_append(&c->hdrs, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p) {
    conn_t *c = p->data;
    hdr_end(c);
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->server->opts.max_body_bytes) {
        c->error_status = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    (void)at; // read and dropped: the status endpoint takes no bodies
    c->body_bytes += len;
    if (c->body_bytes > c->server->opts.max_body_bytes) {
        c->error_status = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p) {
    conn_t *c = p->data;
    c->in_message = false;
    // Stops the parser right after this request; conn_process() answers it
    // before parsing the next one.
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

// ---- reading ----

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn_t *c = h->data;
    (void)suggested;
    // One buffer for all: each read is consumed before the next alloc.
    *buf = uv_buf_init(c->server->rbuf, sizeof(c->server->rbuf));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void read_start(conn_t *c) {
    if (c->reading || c->read_eof || c->closing) {
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    c->reading = true;
}

static void read_stop(conn_t *c) {
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static size_t in_limit(const conn_t *c) {
    return c->server->opts.max_header_bytes + READ_CHUNK;
}

static void in_compact(conn_t *c) {
    size_t left = buffered_in(c);
    if (left == 0) {
        // An idle connection keeps no big buffer.
        if (c->in.cap > READ_CHUNK) {
            swd_buf_close(&c->in);
        }
        swd_buf_reset(&c->in);
    } else if (c->in_off > 0) {
        memmove(c->in.data, c->in.data + c->in_off, left);
        c->in.len = left;
    }
    c->in_off = 0;
}

static int parse_error_status(const conn_t *c, enum http_errno e) {
    if (c->error_status != 0) {
        return c->error_status;
    }
    return e == HPE_HEADER_OVERFLOW ? 431 : 400;
}

// Parses and answers what `in` holds, one request at a time, while no
// answer is outstanding and the client keeps up with reading.
static void conn_process(conn_t *c) {
    if (c->processing) {
        return;
    }
    c->processing = true;
    size_t out_limit = c->server->opts.max_stream_pending_bytes;
    while (!c->closing && !c->finishing && c->res == NULL && pending_out(c) < out_limit &&
           buffered_in(c) > 0) {
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->in.data + c->in_off,
                                       buffered_in(c));
        c->in_off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            conn_dispatch(c);
        } else if (e != HPE_OK) {
            conn_fail(c, parse_error_status(c, e));
        } else if (n == 0) {
            break; // no progress: wait for more
        }
    }
    c->processing = false;
    if (c->closing) {
        return;
    }
    in_compact(c);
    if (c->finishing || c->res != NULL) {
        return;
    }
    if (c->read_eof && buffered_in(c) == 0) {
        conn_finish(c); // the client is done sending and every request answered
    } else if (buffered_in(c) < in_limit(c)) {
        read_start(c);
    }
}

static void conn_on_eof(conn_t *c) {
    c->read_eof = true;
    c->reading = false; // libuv stops reading at EOF
    if (c->lingering || (c->res != NULL && c->res->streaming)) {
        conn_close(c);
    } else if (!c->finishing) {
        conn_process(c);
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = st->data;
    if (c->closing || nread == 0) {
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF) {
            conn_on_eof(c);
        } else {
            conn_close(c);
        }
        return;
    }
    if (c->finishing || c->lingering || (c->res != NULL && c->res->streaming)) {
        return; // no request can follow: drop what comes
    }
    swd_buf_append(&c->in, buf->base, (size_t)nread);
    if (buffered_in(c) >= in_limit(c)) {
        read_stop(c); // requests pile up while one is outstanding
    }
    conn_process(c);
}

// ---- accepting ----

static conn_t *conn_new(swd_http_server_t *s) {
    conn_t *c = swd_xcalloc(1, sizeof(*c));
    c->server = s;
    if (uv_tcp_init(s->loop, &c->tcp) < 0) {
        free(c);
        return NULL;
    }
    (void)uv_timer_init(s->loop, &c->timer); // cannot fail
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    swd_buf_init(&c->in);
    swd_buf_init(&c->out);
    swd_buf_init(&c->url);
    swd_buf_init(&c->hdrs);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    return c;
}

static void on_connection(uv_stream_t *l, int status) {
    swd_http_server_t *s = l->data;
    if (status < 0) {
        swd_log_warn("http", "accept failed", "{s:s}", "error", uv_strerror(status));
        return;
    }
    conn_t *c = conn_new(s);
    if (c == NULL) {
        return;
    }
    bool over = s->nactive >= s->opts.max_connections;
    c->refused = over;
    if (over) {
        s->nrefused++;
    } else {
        s->nactive++;
    }
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (!over) {
        read_start(c);
        timer_start(c, s->opts.idle_timeout_ms);
        return;
    }
    if (s->nrefused > s->opts.max_connections) {
        conn_close(c); // a flood: not even a 503
        return;
    }
    conn_fail(c, 503);
}
