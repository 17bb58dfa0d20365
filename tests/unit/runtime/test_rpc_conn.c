// The RPC connection's write path (runtime/rpc_conn.h): what is sent
// reaches the peer in order, also right before a close_after_flush; a peer
// that is gone closes the connection once, on a later loop turn and never
// inside the send, with or without the server's per-turn write batch; and
// nothing is left open or allocated afterwards.
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "runtime/rpc_conn.h"
#include "tests/unit/leak_check.h"

static int g_closes;

static void on_dispatch(swd_rpc_conn_t *c, const swd_msg_t *m, void *data) {
}

static void on_close(swd_rpc_conn_t *c, void *data) {
    g_closes++;
}

typedef struct harness {
    uv_loop_t loop;
    swd_rpc_batch_t batch;
    bool batched;
    int peer; // the other end of the connection's socket
    swd_rpc_conn_t *conn;
} harness_t;

static void setup(harness_t *h, bool batched) {
    signal(SIGPIPE, SIG_IGN); // as swarmd does: a write to a gone peer is EPIPE
    g_closes = 0;
    memset(h, 0, sizeof(*h));
    cr_assert_eq(uv_loop_init(&h->loop), 0);
    swd_rpc_batch_init(&h->loop, &h->batch);
    h->batched = batched;
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    swd_rpc_conn_opts_t o = {
        .dispatch = on_dispatch, .on_close = on_close, .batch = batched ? &h->batch : NULL};
    h->conn = swd_rpc_conn_new(&h->loop, SWD_CONN_UNIX, &o);
    cr_assert_eq(uv_pipe_open((uv_pipe_t *)swd_rpc_conn_stream(h->conn), sv[0]), 0);
    swd_rpc_conn_ref(h->conn); // the test looks at it after it closed
    h->peer = sv[1];
}

static void teardown(harness_t *h) {
    swd_rpc_conn_close(h->conn, "test over");
    swd_rpc_conn_unref(h->conn);
    swd_rpc_batch_close(&h->batch, NULL);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&h->loop), 0, "handles left open");
    if (h->peer >= 0) {
        close(h->peer);
    }
}

static void send_heartbeat(harness_t *h, uint64_t n) {
    msgpack_packer *pk = swd_rpc_conn_notify_begin(h->conn, "agent.heartbeat");
    msgpack_pack_array(pk, 1);
    msgpack_pack_uint64(pk, n);
    swd_rpc_conn_send(h->conn);
}

// Reads what has arrived at the peer (without waiting) after `*got`; true
// at EOF.
static bool read_peer(harness_t *h, char *out, size_t cap, size_t *got) {
    for (;;) {
        ssize_t r = recv(h->peer, out + *got, cap - *got, MSG_DONTWAIT);
        if (r == 0) {
            return true;
        }
        if (r < 0) {
            cr_assert(errno == EAGAIN, "recv: %s", strerror(errno));
            return false;
        }
        *got += (size_t)r;
    }
}

static void gone_peer_closes_once_later(bool batched) {
    harness_t h;
    setup(&h, batched);
    close(h.peer);
    h.peer = -1;
    for (uint64_t i = 0; i < 100; i++) {
        send_heartbeat(&h, i);
    }
    cr_assert_eq(g_closes, 0, "closed inside the send");
    for (int i = 0; i < 10 && g_closes == 0; i++) {
        uv_run(&h.loop, UV_RUN_NOWAIT);
    }
    cr_assert_eq(g_closes, 1, "the connection to a gone peer closed %d times", g_closes);
    cr_assert(swd_rpc_conn_closing(h.conn));
    send_heartbeat(&h, 100); // sending to a closed connection is harmless
    teardown(&h);
    cr_assert_eq(g_closes, 1);
    ASSERT_NO_LEAKS();
}

Test(rpc_conn, gone_peer_closes_once_on_a_later_turn) {
    gone_peer_closes_once_later(false);
}

Test(rpc_conn, gone_peer_closes_once_on_a_later_turn_batched) {
    gone_peer_closes_once_later(true);
}

static void sent_then_close_after_flush_arrives(bool batched) {
    harness_t h;
    setup(&h, batched);
    enum { N = 2000 };
    for (uint64_t i = 0; i < N; i++) {
        send_heartbeat(&h, i);
    }
    swd_rpc_conn_close_after_flush(h.conn, "done");
    // The peer reads as the loop turns: the socket fills and the rest of the
    // bytes go out in pieces, partly at once and partly through uv_write().
    static char got[1 << 20];
    size_t n = 0;
    bool eof = false;
    for (int i = 0; i < 100000 && !eof; i++) {
        uv_run(&h.loop, UV_RUN_NOWAIT);
        eof = read_peer(&h, got, sizeof(got), &n);
    }
    cr_assert(eof, "no EOF after %zu bytes", n);
    cr_assert_eq(g_closes, 1, "closed after the flush");
    // Every notification, whole and in order, then EOF.
    size_t off = 0;
    for (uint64_t i = 0; i < N; i++) {
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        cr_assert_eq(msgpack_unpack_next(&up, got, n, &off), MSGPACK_UNPACK_SUCCESS,
                     "message %llu of %d missing (%zu bytes arrived)", (unsigned long long)i, N, n);
        msgpack_object *params = &up.data.via.array.ptr[2];
        cr_assert_eq(params->via.array.ptr[0].via.u64, i, "message %llu out of order",
                     (unsigned long long)i);
        msgpack_unpacked_destroy(&up);
    }
    cr_assert_eq(off, n, "bytes after the last message");
    teardown(&h);
    ASSERT_NO_LEAKS();
}

Test(rpc_conn, sent_bytes_arrive_before_close_after_flush) {
    sent_then_close_after_flush_arrives(false);
}

Test(rpc_conn, sent_bytes_arrive_before_close_after_flush_batched) {
    sent_then_close_after_flush_arrives(true);
}
