#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/encoder.h"
#include "runtime/log.h"
#include "runtime/map.h"
#include "runtime/rpc_conn.h"

#define DEFAULT_MAX_WRITE (64u * 1024u * 1024u)
#define READ_CHUNK 65536
#define KEEP_WRITE_BUFFER 65536 // a connection's write buffer kept for reuse
#define WRITE_PIECE (1u << 30)  // bytes per uv_buf_t
#define MAX_WRITE_PIECES 80     // limits.max_write_buffer_bytes (64 GiB) and a message

typedef struct pending_call {
    swd_rpc_response_cb cb;
    uint64_t cookie;
    void *data;
} pending_call_t;

struct swd_rpc_conn {
    uv_loop_t *loop;
    swd_rpc_conn_kind_t kind;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
        uv_stream_t stream;
    } in;
    uv_pipe_t out; // SWD_CONN_PIPES only
    int open_handles;
    int refs;
    bool closing;
    bool close_after_flush;
    const char *close_reason;

    swd_rpc_conn_opts_t opts;
    swd_decoder_t *decoder;
    swd_encoder_t enc;     // messages waiting for the next write
    swd_encoder_t scratch; // where writes to a closing connection go to die
    bool error_data_open;  // a reply_error_data() message awaits its nil result

    uv_write_t wreq;
    char *wbuf; // the bytes of the write in flight, NULL when none
    size_t wlen;

    swd_u64map_t pending; // msgid -> pending_call_t*
    uint64_t next_msgid;
    char name[80];
    void *user;
    int64_t last_read_ms;
    bool batched; // in opts.batch's list (holding a reference)
    swd_rpc_conn_t *batch_next;
};

static void on_handle_close(uv_handle_t *h);
static void write_before_close(swd_rpc_conn_t *c);

static uv_stream_t *out_stream(swd_rpc_conn_t *c) {
    return c->kind == SWD_CONN_PIPES ? (uv_stream_t *)&c->out : &c->in.stream;
}

swd_rpc_conn_t *swd_rpc_conn_new(uv_loop_t *loop, swd_rpc_conn_kind_t kind,
                                 const swd_rpc_conn_opts_t *opts) {
    swd_rpc_conn_t *c = swd_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->kind = kind;
    c->opts = *opts;
    if (c->opts.max_write_buffer_bytes == 0) {
        c->opts.max_write_buffer_bytes = DEFAULT_MAX_WRITE;
    }
    c->decoder = swd_decoder_new(opts->max_message_bytes);
    swd_encoder_init(&c->enc);
    swd_encoder_init(&c->scratch);
    swd_u64map_init(&c->pending);
    c->next_msgid = 1;
    c->last_read_ms = (int64_t)uv_now(loop);
    snprintf(c->name, sizeof(c->name), "%s", kind == SWD_CONN_PIPES ? "pipes" : "peer");
    if (kind == SWD_CONN_TCP) {
        uv_tcp_init(loop, &c->in.tcp);
    } else {
        uv_pipe_init(loop, &c->in.pipe, 0);
    }
    c->in.handle.data = c;
    c->open_handles = 1;
    if (kind == SWD_CONN_PIPES) {
        uv_pipe_init(loop, &c->out, 0);
        c->out.data = c;
        c->open_handles = 2;
    }
    return c;
}

uv_stream_t *swd_rpc_conn_stream(swd_rpc_conn_t *c) {
    return &c->in.stream;
}

uv_stream_t *swd_rpc_conn_out_stream(swd_rpc_conn_t *c) {
    return c->kind == SWD_CONN_PIPES ? (uv_stream_t *)&c->out : NULL;
}

int swd_rpc_conn_open_pipes(swd_rpc_conn_t *c, int in_fd, int out_fd) {
    int r = uv_pipe_open(&c->in.pipe, in_fd);
    if (r == 0) {
        r = uv_pipe_open(&c->out, out_fd);
    }
    return r;
}

static void maybe_free(swd_rpc_conn_t *c) {
    if (c->open_handles > 0 || c->refs > 0) {
        return;
    }
    swd_decoder_free(c->decoder);
    swd_encoder_close(&c->enc);
    swd_encoder_close(&c->scratch);
    swd_u64map_close(&c->pending);
    free(c->wbuf);
    free(c);
}

static void on_handle_close(uv_handle_t *h) {
    swd_rpc_conn_t *c = h->data;
    c->open_handles--;
    maybe_free(c);
}

void swd_rpc_conn_ref(swd_rpc_conn_t *c) {
    c->refs++;
}

void swd_rpc_conn_unref(swd_rpc_conn_t *c) {
    c->refs--;
    maybe_free(c);
}

bool swd_rpc_conn_closing(const swd_rpc_conn_t *c) {
    return c->closing;
}

const char *swd_rpc_conn_name(const swd_rpc_conn_t *c) {
    return c->name;
}

void swd_rpc_conn_set_name(swd_rpc_conn_t *c, const char *name) {
    snprintf(c->name, sizeof(c->name), "%s", name);
}

void swd_rpc_conn_set_user(swd_rpc_conn_t *c, void *user) {
    c->user = user;
}

void *swd_rpc_conn_user(const swd_rpc_conn_t *c) {
    return c->user;
}

void swd_rpc_conn_set_on_close(swd_rpc_conn_t *c, swd_rpc_close_cb cb, void *data) {
    c->opts.on_close = cb;
    c->opts.data = data;
}

int64_t swd_rpc_conn_last_read_ms(const swd_rpc_conn_t *c) {
    return c->last_read_ms;
}

size_t swd_rpc_conn_pending_bytes(const swd_rpc_conn_t *c) {
    return c->wlen + c->enc.buf.len;
}

// Answers every request still waiting for a response with NULL.
static void fail_pending(swd_rpc_conn_t *c) {
    swd_u64map_t calls = c->pending;
    swd_u64map_init(&c->pending);
    for (size_t i = 0; i < calls.cap; i++) {
        pending_call_t *p = calls.slots[i].value;
        if (p != NULL) {
            p->cb(c, NULL, p->cookie, p->data);
            free(p);
        }
    }
    swd_u64map_close(&calls);
}

void swd_rpc_conn_close(swd_rpc_conn_t *c, const char *reason) {
    if (c->closing) {
        return;
    }
    write_before_close(c);
    c->closing = true;
    c->close_reason = reason;
    swd_rpc_conn_ref(c);
    swd_log_debug("rpc", "connection closed", "{s:s,s:s}", "peer", c->name, "reason",
                  reason ? reason : "closed");
    fail_pending(c);
    if (c->opts.on_close != NULL) {
        c->opts.on_close(c, c->opts.data);
    }
    uv_close(&c->in.handle, on_handle_close);
    if (c->kind == SWD_CONN_PIPES) {
        uv_close((uv_handle_t *)&c->out, on_handle_close);
    }
    swd_rpc_conn_unref(c);
}

void swd_rpc_conn_close_after_flush(swd_rpc_conn_t *c, const char *reason) {
    if (c->closing) {
        return;
    }
    uv_read_stop(&c->in.stream);
    c->close_after_flush = true;
    c->close_reason = reason;
    if (c->wbuf == NULL && c->enc.buf.len == 0) {
        swd_rpc_conn_close(c, reason);
    }
}

// ---- writing ----

static void kick_write(swd_rpc_conn_t *c);

static void on_write(uv_write_t *req, int status) {
    swd_rpc_conn_t *c = req->data;
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = 0;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        swd_rpc_conn_close(c, uv_strerror(status));
        return;
    }
    if (c->enc.buf.len > 0) {
        kick_write(c);
    } else if (c->close_after_flush) {
        swd_rpc_conn_close(c, c->close_reason);
    }
}

// Points `bufs` at `len` bytes in pieces libuv can take (its lengths are
// unsigned int, uv_try_write() answers in an int); returns how many.
static unsigned split_bufs(char *data, size_t len, uv_buf_t *bufs, unsigned max) {
    unsigned n = 0;
    while (len > 0 && n < max) {
        size_t piece = len < WRITE_PIECE ? len : WRITE_PIECE;
        bufs[n++] = uv_buf_init(data, (unsigned)piece);
        data += piece;
        len -= piece;
    }
    return n;
}

// Writes what is buffered: at once as far as the socket takes it, the rest
// with uv_write() (one write in flight at a time; on_write() goes on). An
// error is never acted on here, inside whatever sent: uv_write() reports it
// to on_write() on a later loop turn, which closes the connection.
static void write_now(swd_rpc_conn_t *c) {
    if (c->wbuf != NULL || c->enc.buf.len == 0 || c->closing) {
        return;
    }
    uv_buf_t first;
    split_bufs(c->enc.buf.data, c->enc.buf.len, &first, 1);
    int n = uv_try_write(out_stream(c), &first, 1);
    if (n < 0) {
        n = 0; // UV_EAGAIN, or an error that uv_write() reports below
    }
    if ((size_t)n == c->enc.buf.len) {
        if (c->enc.buf.cap > KEEP_WRITE_BUFFER) {
            swd_buf_close(&c->enc.buf); // a big answer's memory goes back
        } else {
            swd_buf_reset(&c->enc.buf);
        }
        if (c->close_after_flush) {
            swd_rpc_conn_close(c, c->close_reason);
        }
        return;
    }
    swd_buf_consume(&c->enc.buf, (size_t)n);
    if (c->enc.buf.len > (size_t)MAX_WRITE_PIECES * WRITE_PIECE) {
        swd_rpc_conn_close(c, "write buffer limit"); // past any configurable bound
        return;
    }
    c->wbuf = swd_buf_steal(&c->enc.buf, &c->wlen);
    uv_buf_t bufs[MAX_WRITE_PIECES];
    unsigned nbufs = split_bufs(c->wbuf, c->wlen, bufs, MAX_WRITE_PIECES);
    c->wreq.data = c;
    int r = uv_write(&c->wreq, out_stream(c), bufs, nbufs, on_write);
    if (r < 0) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wlen = 0;
        swd_rpc_conn_close(c, uv_strerror(r));
    }
}

// What a connection about to close was sent goes out if the socket takes it
// now; errors and leftovers go with the connection.
static void write_before_close(swd_rpc_conn_t *c) {
    if (c->wbuf == NULL && c->enc.buf.len > 0) {
        uv_buf_t first;
        split_bufs(c->enc.buf.data, c->enc.buf.len, &first, 1);
        (void)uv_try_write(out_stream(c), &first, 1);
    }
}

static void on_batch_prepare(uv_prepare_t *h) {
    swd_rpc_batch_t *b = h->data;
    while (b->head != NULL) {
        swd_rpc_conn_t *c = b->head;
        b->head = c->batch_next;
        c->batch_next = NULL;
        c->batched = false;
        write_now(c);
        swd_rpc_conn_unref(c);
    }
    uv_prepare_stop(&b->prepare);
}

void swd_rpc_batch_init(uv_loop_t *loop, swd_rpc_batch_t *b) {
    memset(b, 0, sizeof(*b));
    uv_prepare_init(loop, &b->prepare);
    b->prepare.data = b;
}

void swd_rpc_batch_close(swd_rpc_batch_t *b, uv_close_cb on_closed) {
    on_batch_prepare(&b->prepare);
    b->closed = true;
    uv_close((uv_handle_t *)&b->prepare, on_closed);
}

// Sends what is buffered: on the batch's next flush, or at once.
static void kick_write(swd_rpc_conn_t *c) {
    swd_rpc_batch_t *b = c->opts.batch;
    if (b == NULL || b->closed) {
        write_now(c);
        return;
    }
    if (c->batched || c->wbuf != NULL || c->enc.buf.len == 0 || c->closing) {
        return; // queued already, or on_write() sends the rest
    }
    if (b->head == NULL) {
        uv_prepare_start(&b->prepare, on_batch_prepare);
    }
    c->batched = true;
    swd_rpc_conn_ref(c);
    c->batch_next = b->head;
    b->head = c;
}

static swd_encoder_t *encoder_for(swd_rpc_conn_t *c) {
    if (c->closing || c->close_after_flush) {
        swd_encoder_reset(&c->scratch);
        return &c->scratch;
    }
    return &c->enc;
}

void swd_rpc_conn_send(swd_rpc_conn_t *c) {
    if (c->error_data_open) {
        c->error_data_open = false;
        bool dropped = c->closing || c->close_after_flush;
        swd_enc_error_data_end(dropped ? &c->scratch : &c->enc);
    }
    if (c->closing) {
        swd_encoder_reset(&c->scratch);
        return;
    }
    size_t pending = swd_rpc_conn_pending_bytes(c);
    if (pending > c->opts.max_write_buffer_bytes) {
        // Close first: the warning below may itself be sent to this peer (a
        // log subscriber), which must then find it closed.
        swd_rpc_conn_close(c, "write buffer limit");
        swd_log_warn("rpc", "peer stopped reading; cut off", "{s:s,s:I,s:I}", "peer", c->name,
                     "pending_bytes", (json_int_t)pending, "limit",
                     (json_int_t)c->opts.max_write_buffer_bytes);
        return;
    }
    kick_write(c);
}

static void replied(swd_rpc_conn_t *c, uint64_t msgid, const char *code) {
    // A closing connection's owner may already be gone; the reply is dropped.
    if (!c->closing && c->opts.on_reply != NULL) {
        c->opts.on_reply(c, msgid, code, c->opts.data);
    }
}

msgpack_packer *swd_rpc_conn_reply_begin(swd_rpc_conn_t *c, uint64_t msgid) {
    replied(c, msgid, NULL);
    return swd_enc_result(encoder_for(c), msgid);
}

void swd_rpc_conn_reply_error(swd_rpc_conn_t *c, uint64_t msgid, swd_rpc_error_t code,
                              const char *message) {
    replied(c, msgid, swd_rpc_error_code(code));
    swd_enc_error(encoder_for(c), msgid, code, message);
    swd_rpc_conn_send(c);
}

msgpack_packer *swd_rpc_conn_reply_error_data(swd_rpc_conn_t *c, uint64_t msgid,
                                              swd_rpc_error_t code, const char *message) {
    c->error_data_open = true;
    replied(c, msgid, swd_rpc_error_code(code));
    return swd_enc_error_data(encoder_for(c), msgid, code, message);
}

msgpack_packer *swd_rpc_conn_reply_error_begin(swd_rpc_conn_t *c, uint64_t msgid) {
    swd_encoder_t *e = encoder_for(c);
    replied(c, msgid, "error");
    msgpack_pack_array(&e->pk, 4);
    msgpack_pack_uint8(&e->pk, 1);
    msgpack_pack_uint64(&e->pk, msgid);
    c->error_data_open = true; // send() packs the nil result after the map
    return &e->pk;
}

msgpack_packer *swd_rpc_conn_request_begin(swd_rpc_conn_t *c, const char *method,
                                           swd_rpc_response_cb cb, uint64_t cookie, void *data) {
    uint64_t msgid = c->next_msgid++;
    if (c->next_msgid > UINT32_MAX) {
        c->next_msgid = 1; // msgpack-RPC msgids are 32-bit
    }
    swd_encoder_t *e = encoder_for(c);
    if (e == &c->enc && cb != NULL) {
        pending_call_t *p = swd_xmalloc(sizeof(*p));
        p->cb = cb;
        p->cookie = cookie;
        p->data = data;
        swd_u64map_put(&c->pending, msgid, p);
    }
    return swd_enc_request(e, msgid, method);
}

msgpack_packer *swd_rpc_conn_notify_begin(swd_rpc_conn_t *c, const char *method) {
    return swd_enc_notify(encoder_for(c), method);
}

// ---- reading ----

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    swd_rpc_conn_t *c = h->data;
    char *p;
    size_t n;
    swd_decoder_reserve(c->decoder, READ_CHUNK, &p, &n);
    buf->base = p;
    buf->len = n;
}

static void on_response(swd_rpc_conn_t *c, const swd_msg_t *m) {
    pending_call_t *p = swd_u64map_del(&c->pending, m->msgid);
    if (p == NULL) {
        swd_log_debug("rpc", "response to no request", "{s:s,s:I}", "peer", c->name, "msgid",
                      (json_int_t)m->msgid);
        return;
    }
    p->cb(c, m, p->cookie, p->data);
    free(p);
}

static void on_proto_error(swd_rpc_conn_t *c, const swd_proto_error_t *e) {
    swd_log_warn("rpc", "malformed message", "{s:s,s:s,s:s}", "peer", c->name, "code",
                 swd_rpc_error_code(e->rpc), "error", e->message);
    if (e->undecodable || !e->has_msgid) {
        swd_rpc_conn_close(c, e->message);
        return;
    }
    swd_rpc_conn_reply_error(c, e->msgid, e->rpc, e->message);
    swd_rpc_conn_close_after_flush(c, e->message);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    swd_rpc_conn_t *c = s->data;
    if (nread < 0) {
        swd_rpc_conn_close(c, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
        return;
    }
    c->last_read_ms = (int64_t)uv_now(c->loop);
    swd_decoder_commit(c->decoder, (size_t)nread);
    swd_rpc_conn_ref(c);
    while (!c->closing && !c->close_after_flush) {
        swd_msg_t m;
        swd_proto_error_t perr;
        int r = swd_decoder_next(c->decoder, &m, &perr);
        if (r == 0) {
            break;
        }
        if (r < 0) {
            on_proto_error(c, &perr);
            break;
        }
        if (m.kind == SWD_MSG_RESPONSE) {
            on_response(c, &m);
        } else {
            c->opts.dispatch(c, &m, c->opts.data);
        }
    }
    swd_rpc_conn_unref(c);
}

int swd_rpc_conn_start(swd_rpc_conn_t *c) {
    int r = uv_read_start(&c->in.stream, on_alloc, on_read);
    if (r < 0) {
        swd_rpc_conn_close(c, uv_strerror(r));
    }
    return r;
}
