// Tests of the blocking client (client/client.h) against a tiny fake server:
// a forked child that accepts one connection on a 127.0.0.1 port-0 socket
// (or a unix socket), reads requests with swd_decoder_t, checks them, and
// answers with canned msgpack bytes. The child's exit status carries its own
// verdict on what the client sent.
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "proto/decoder.h"
#include "proto/encoder.h"
#include "proto/errors.h"
#include "proto/params.h"
#include "tests/unit/leak_check.h"

// ---------------------------------------------------------------------------
// The fake server (runs in the child)

enum {
    SRV_EOF = 10, // the client closed before sending a request
    SRV_NOT_REQUEST = 11,
    SRV_WRONG_METHOD = 12,
    SRV_WRONG_PARAMS = 13,
    SRV_IO = 14,
};

typedef struct srv {
    int fd;
    swd_decoder_t *dec;
    swd_encoder_t enc;
    swd_msg_t msg; // the last request read
} srv_t;

typedef void (*script_fn)(srv_t *s);

// Reads the next request; exits the child with a code when it is not one
// or not `method`.
static uint64_t srv_expect(srv_t *s, const char *method) {
    for (;;) {
        int r = swd_decoder_next(s->dec, &s->msg, NULL);
        if (r < 0) {
            _exit(SRV_NOT_REQUEST);
        }
        if (r == 1) {
            break;
        }
        char buf[4096];
        ssize_t n = read(s->fd, buf, sizeof(buf));
        if (n <= 0) {
            _exit(SRV_EOF);
        }
        swd_decoder_feed(s->dec, buf, (size_t)n);
    }
    if (s->msg.kind != SWD_MSG_REQUEST) {
        _exit(SRV_NOT_REQUEST);
    }
    if (s->msg.method_len != strlen(method) ||
        memcmp(s->msg.method, method, s->msg.method_len) != 0) {
        _exit(SRV_WRONG_METHOD);
    }
    return s->msg.msgid;
}

static void srv_write(srv_t *s, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(s->fd, p, n);
        if (w <= 0) {
            _exit(SRV_IO);
        }
        p += w;
        n -= (size_t)w;
    }
}

// Sends what the encoder holds and empties it.
static void srv_flush(srv_t *s) {
    srv_write(s, s->enc.buf.data, s->enc.buf.len);
    swd_encoder_reset(&s->enc);
}

// Waits for the client to hang up, so it never sees a reset.
static void srv_linger(srv_t *s) {
    char buf[256];
    while (read(s->fd, buf, sizeof(buf)) > 0) {
    }
}

static void pack_strs(msgpack_packer *pk, const char *k1, const char *v1, const char *k2,
                      const char *v2) {
    msgpack_pack_map(pk, k2 ? 2 : 1);
    swd_pack_kv_str(pk, k1, v1);
    if (k2 != NULL) {
        swd_pack_kv_str(pk, k2, v2);
    }
}

static void pack_event(swd_encoder_t *e, const char *topic, const char *event, const char *id) {
    msgpack_packer *pk = swd_enc_notify(e, "event");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 4);
    swd_pack_kv_str(pk, "topic", topic);
    swd_pack_kv_str(pk, "event", event);
    swd_pack_kv_u64(pk, "ts", 1700000000123u);
    swd_pack_str(pk, "data");
    pack_strs(pk, "task_id", id, NULL, NULL);
}

// ---------------------------------------------------------------------------
// Starting and stopping it (in the test)

typedef struct fake {
    pid_t pid;
    char addr[160];
    char path[108];
} fake_t;

static void run_child(int lfd, script_fn script) {
    alarm(20); // a stuck test must not hang the run
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
        _exit(SRV_IO);
    }
    close(lfd);
    srv_t s = {.fd = fd, .dec = swd_decoder_new(0)};
    swd_encoder_init(&s.enc);
    script(&s);
    srv_linger(&s);
    _exit(0);
}

static void fake_fork(fake_t *f, int lfd, script_fn script) {
    cr_assert_eq(listen(lfd, 4), 0);
    fflush(NULL);
    f->pid = fork();
    cr_assert_neq(f->pid, -1);
    if (f->pid == 0) {
        run_child(lfd, script);
    }
    close(lfd);
}

static void fake_start(fake_t *f, script_fn script) {
    memset(f, 0, sizeof(*f));
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    fake_fork(f, lfd, script);
}

static void fake_start_unix(fake_t *f, script_fn script) {
    memset(f, 0, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "/tmp/swd-test-client-%d.sock", (int)getpid());
    unlink(f->path);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, f->path, strlen(f->path) + 1);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    snprintf(f->addr, sizeof(f->addr), "unix:%s", f->path);
    fake_fork(f, lfd, script);
}

// Reaps the child and fails the test with its complaint, if any.
static void fake_wait(fake_t *f) {
    int status = 0;
    cr_assert_eq(waitpid(f->pid, &status, 0), f->pid);
    if (f->path[0]) {
        unlink(f->path);
    }
    cr_assert(WIFEXITED(status), "fake server died (signal %d)", WTERMSIG(status));
    cr_assert_eq(WEXITSTATUS(status), 0,
                 "fake server: %d (10 eof, 11 not a request, 12 method, 13 params, 14 io)",
                 WEXITSTATUS(status));
}

static swd_client_t *connect_to(const fake_t *f) {
    swd_client_t *c = NULL;
    char err[256] = "";
    int r = swd_client_connect(f->addr, 2000, &c, err, sizeof(err));
    cr_assert_eq(r, 0, "connect %s: %s", f->addr, err);
    return c;
}

/// Calls `method` with no params; the call must succeed (a reply, which may
/// still be an error reply).
static void call_ok(swd_client_t *c, const char *method, swd_reply_t *reply) {
    cr_assert_eq(swd_client_call(c, method, NULL, NULL, reply, 5000), 0, "%s: %s", method,
                 swd_client_errmsg(c));
}

/// The client's message about its last failure must contain `part`.
static void expect_errmsg(swd_client_t *c, const char *part) {
    cr_assert(strstr(swd_client_errmsg(c), part) != NULL, "\"%s\" lacks \"%s\"",
              swd_client_errmsg(c), part);
}

static bool obj_str_is(const msgpack_object *o, const char *s) {
    return o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// ---------------------------------------------------------------------------
// Calls and replies

static int pack_submit(msgpack_packer *pk, void *data) {
    pack_strs(pk, "type", data, "priority", "high");
    return 0;
}

static void script_submit(srv_t *s) {
    uint64_t id = srv_expect(s, "task.submit");
    swd_params_t p;
    char type[32];
    if (swd_params_open(&p, s->msg.params) != 0 || p.n != 2 ||
        swd_params_strbuf(&p, "type", true, type, sizeof(type)) != 0 || strcmp(type, "echo") != 0) {
        _exit(SRV_WRONG_PARAMS);
    }
    pack_strs(swd_enc_result(&s->enc, id), "task_id", "t1", "state", "queued");
    srv_flush(s);
}

Test(client, call_returns_result) {
    fake_t f;
    fake_start(&f, script_submit);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    cr_assert_eq(swd_client_call(c, "task.submit", pack_submit, "echo", &reply, 5000), 0, "%s",
                 swd_client_errmsg(c));
    cr_assert(!reply.is_error);
    cr_assert_null(reply.code);
    cr_assert_eq(reply.result->type, MSGPACK_OBJECT_MAP);
    cr_assert(obj_str_is(swd_map_find(reply.result, "task_id"), "t1"));
    cr_assert(obj_str_is(swd_map_find(reply.result, "state"), "queued"));
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

static void script_empty_params(srv_t *s) {
    uint64_t id = srv_expect(s, "swarm.stats");
    const msgpack_object *p = s->msg.params;
    if (p->type != MSGPACK_OBJECT_ARRAY || p->via.array.size != 1 ||
        p->via.array.ptr[0].type != MSGPACK_OBJECT_MAP || p->via.array.ptr[0].via.map.size != 0) {
        _exit(SRV_WRONG_PARAMS);
    }
    msgpack_pack_map(swd_enc_result(&s->enc, id), 0);
    srv_flush(s);
}

Test(client, null_callback_sends_empty_map) {
    fake_t f;
    fake_start(&f, script_empty_params);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    call_ok(c, "swarm.stats", &reply);
    cr_assert(!reply.is_error);
    cr_assert_eq(reply.result->type, MSGPACK_OBJECT_MAP);
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

static void script_error(srv_t *s) {
    uint64_t id = srv_expect(s, "task.submit_batch");
    msgpack_packer *pk = swd_enc_error_data(&s->enc, id, SWD_RPC_INVALID_PARAMS, "tasks[3]: bad");
    msgpack_pack_map(pk, 1);
    swd_pack_kv_u64(pk, "index", 3);
    swd_enc_error_data_end(&s->enc);
    srv_flush(s);
    // A second call gets a bare-string error, as non-swarmd peers send.
    id = srv_expect(s, "task.get");
    msgpack_pack_array(&s->enc.pk, 4);
    msgpack_pack_uint8(&s->enc.pk, 1);
    msgpack_pack_uint64(&s->enc.pk, id);
    swd_pack_str(&s->enc.pk, "something broke");
    msgpack_pack_nil(&s->enc.pk);
    srv_flush(s);
}

Test(client, error_response_fills_reply) {
    fake_t f;
    fake_start(&f, script_error);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    call_ok(c, "task.submit_batch", &reply);
    cr_assert(reply.is_error);
    cr_assert_str_eq(reply.code, "invalid_params");
    cr_assert_str_eq(reply.message, "tasks[3]: bad");
    cr_assert_not_null(reply.data);
    const msgpack_object *idx = swd_map_find(reply.data, "index");
    cr_assert(idx != NULL && idx->via.u64 == 3);
    cr_assert_eq(reply.result->type, MSGPACK_OBJECT_NIL);

    call_ok(c, "task.get", &reply);
    cr_assert(reply.is_error);
    cr_assert_str_eq(reply.code, "internal");
    cr_assert_str_eq(reply.message, "something broke");
    cr_assert_null(reply.data);
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Pipelining and events

static void script_pipelined(srv_t *s) {
    uint64_t id = srv_expect(s, "subscribe");
    // One write: an event, an unknown notification, then the response.
    pack_event(&s->enc, "task", "running", "t7");
    msgpack_packer *pk = swd_enc_notify(&s->enc, "something.else");
    msgpack_pack_array(pk, 0);
    msgpack_pack_map(swd_enc_result(&s->enc, id), 0);
    pack_event(&s->enc, "agent", "registered", "t8");
    srv_flush(s);
}

Test(client, notification_before_response_is_queued) {
    fake_t f;
    fake_start(&f, script_pipelined);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    call_ok(c, "subscribe", &reply);
    cr_assert(!reply.is_error);
    swd_event_t ev;
    cr_assert_eq(swd_client_next_event(c, 2000, &ev), 1, "%s", swd_client_errmsg(c));
    cr_assert_str_eq(ev.topic, "task");
    cr_assert_str_eq(ev.event, "running");
    cr_assert_eq(ev.ts, 1700000000123);
    cr_assert(obj_str_is(swd_map_find(ev.data, "task_id"), "t7"));
    cr_assert_eq(ev.body->type, MSGPACK_OBJECT_MAP);
    // The unknown notification is skipped; the event after the response comes.
    cr_assert_eq(swd_client_next_event(c, 2000, &ev), 1);
    cr_assert_str_eq(ev.topic, "agent");
    cr_assert_str_eq(ev.event, "registered");
    cr_assert_eq(swd_client_next_event(c, 0, &ev), 0);
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

static void script_dribble(srv_t *s) {
    uint64_t id = srv_expect(s, "task.get");
    pack_event(&s->enc, "task", "queued", "t1");
    pack_strs(swd_enc_result(&s->enc, id), "task_id", "t1", "state", "queued");
    // A byte per write: the client must assemble frames across reads.
    for (size_t i = 0; i < s->enc.buf.len; i++) {
        srv_write(s, s->enc.buf.data + i, 1);
        usleep(200);
    }
    swd_encoder_reset(&s->enc);
    usleep(100 * 1000);
    pack_event(&s->enc, "task", "running", "t1");
    srv_flush(s);
}

Test(client, frames_split_across_reads) {
    fake_t f;
    fake_start(&f, script_dribble);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    call_ok(c, "task.get", &reply);
    cr_assert(obj_str_is(swd_map_find(reply.result, "state"), "queued"));
    swd_event_t ev;
    cr_assert_eq(swd_client_next_event(c, 2000, &ev), 1);
    cr_assert_str_eq(ev.event, "queued");
    // This one is sent 100 ms later: next_event waits for it.
    cr_assert_eq(swd_client_next_event(c, 5000, &ev), 1, "%s", swd_client_errmsg(c));
    cr_assert_str_eq(ev.event, "running");
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

static void script_stale(srv_t *s) {
    uint64_t first = srv_expect(s, "task.wait");
    uint64_t second = srv_expect(s, "task.get");
    if (first == second) {
        _exit(SRV_WRONG_PARAMS);
    }
    // The late answer to the call that timed out, then the one awaited.
    pack_strs(swd_enc_result(&s->enc, first), "which", "first", NULL, NULL);
    pack_strs(swd_enc_result(&s->enc, second), "which", "second", NULL, NULL);
    srv_flush(s);
}

Test(client, timeout_then_late_response_is_dropped) {
    fake_t f;
    fake_start(&f, script_stale);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    int64_t t0 = mono_ms();
    cr_assert_eq(swd_client_call(c, "task.wait", NULL, NULL, &reply, 150), -ETIMEDOUT);
    cr_assert_geq(mono_ms() - t0, 140);
    expect_errmsg(c, "no answer");
    call_ok(c, "task.get", &reply);
    cr_assert(obj_str_is(swd_map_find(reply.result, "which"), "second"));
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

static void script_big(srv_t *s) {
    uint64_t id = srv_expect(s, "task.get");
    size_t n = (size_t)3 * 1024 * 1024;
    char *big = malloc(n);
    memset(big, 'x', n);
    msgpack_packer *pk = swd_enc_result(&s->enc, id);
    msgpack_pack_map(pk, 1);
    swd_pack_str(pk, "result");
    swd_pack_strn(pk, big, n);
    free(big);
    srv_flush(s);
}

Test(client, large_response) {
    fake_t f;
    fake_start(&f, script_big);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    call_ok(c, "task.get", &reply);
    const msgpack_object *r = swd_map_find(reply.result, "result");
    cr_assert(r != NULL && r->type == MSGPACK_OBJECT_STR);
    cr_assert_eq(r->via.str.size, (size_t)3 * 1024 * 1024);
    cr_assert_eq(r->via.str.ptr[r->via.str.size - 1], 'x');
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Bad servers

static void script_garbage(srv_t *s) {
    srv_expect(s, "task.get");
    srv_write(s, "\xc1\xc1 garbage", 10);
}

Test(client, garbage_is_an_error_not_a_crash) {
    fake_t f;
    fake_start(&f, script_garbage);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    cr_assert_eq(swd_client_call(c, "task.get", NULL, NULL, &reply, 5000), SWD_EPROTO);
    expect_errmsg(c, "bad data from server");
    expect_errmsg(c, "not msgpack");
    // The connection is dead from now on, with the same answer.
    cr_assert_eq(swd_client_call(c, "task.get", NULL, NULL, &reply, 5000), SWD_EPROTO);
    swd_event_t ev;
    cr_assert_eq(swd_client_next_event(c, 0, &ev), SWD_EPROTO);
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

static void script_not_rpc(srv_t *s) {
    srv_expect(s, "task.get");
    msgpack_pack_map(&s->enc.pk, 1);
    swd_pack_kv_u64(&s->enc.pk, "a", 1);
    srv_flush(s);
}

Test(client, msgpack_that_is_not_rpc_is_an_error) {
    fake_t f;
    fake_start(&f, script_not_rpc);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    cr_assert_eq(swd_client_call(c, "task.get", NULL, NULL, &reply, 5000), SWD_EPROTO);
    expect_errmsg(c, "not a msgpack-RPC");
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

static void script_hangup(srv_t *s) {
    srv_expect(s, "task.get");
    // Half a response, then gone.
    pack_strs(swd_enc_result(&s->enc, s->msg.msgid), "task_id", "t1", NULL, NULL);
    srv_write(s, s->enc.buf.data, s->enc.buf.len / 2);
    close(s->fd);
    _exit(0);
}

Test(client, server_closing_is_an_error) {
    fake_t f;
    fake_start(&f, script_hangup);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    cr_assert_eq(swd_client_call(c, "task.get", NULL, NULL, &reply, 5000), SWD_ECLOSED);
    expect_errmsg(c, "middle of a message");
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

static int pack_fails(msgpack_packer *pk, void *data) {
    (void)pk;
    (void)data;
    return SWD_EPARAMS;
}

static int pack_two(msgpack_packer *pk, void *data) {
    (void)data;
    msgpack_pack_map(pk, 0);
    msgpack_pack_map(pk, 0);
    return 0;
}

static void script_after_refusals(srv_t *s) {
    // Refused calls send nothing: the first request to arrive is the good one.
    uint64_t id = srv_expect(s, "swarm.stats");
    msgpack_pack_map(swd_enc_result(&s->enc, id), 0);
    srv_flush(s);
}

Test(client, refused_params_send_nothing) {
    fake_t f;
    fake_start(&f, script_after_refusals);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    cr_assert_eq(swd_client_call(c, "task.submit", pack_fails, NULL, &reply, 5000), SWD_EPARAMS);
    cr_assert_eq(swd_client_call(c, "task.submit", pack_two, NULL, &reply, 5000), SWD_EPARAMS);
    expect_errmsg(c, "exactly one");
    call_ok(c, "swarm.stats", &reply);
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

static void script_silent_close(srv_t *s) {
    uint64_t id = srv_expect(s, "subscribe");
    msgpack_pack_map(swd_enc_result(&s->enc, id), 0);
    srv_flush(s);
    usleep(150 * 1000);
    close(s->fd);
    _exit(0);
}

Test(client, next_event_times_out_then_sees_close) {
    fake_t f;
    fake_start(&f, script_silent_close);
    swd_client_t *c = connect_to(&f);
    swd_reply_t reply;
    call_ok(c, "subscribe", &reply);
    swd_event_t ev;
    int64_t t0 = mono_ms();
    cr_assert_eq(swd_client_next_event(c, 50, &ev), 0);
    cr_assert_geq(mono_ms() - t0, 45);
    cr_assert_eq(swd_client_next_event(c, 5000, &ev), SWD_ECLOSED);
    expect_errmsg(c, "closed");
    swd_client_free(c);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Addresses

static void script_one_get(srv_t *s) {
    uint64_t id = srv_expect(s, "task.get");
    pack_strs(swd_enc_result(&s->enc, id), "ok", "yes", NULL, NULL);
    srv_flush(s);
}

static void call_one_get(const char *addr) {
    swd_client_t *c = NULL;
    char err[256] = "";
    cr_assert_eq(swd_client_connect(addr, 2000, &c, err, sizeof(err)), 0, "%s: %s", addr, err);
    swd_reply_t reply;
    call_ok(c, "task.get", &reply);
    cr_assert(obj_str_is(swd_map_find(reply.result, "ok"), "yes"));
    swd_client_free(c);
}

Test(client, unix_socket) {
    fake_t f;
    fake_start_unix(&f, script_one_get);
    call_one_get(f.addr);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

Test(client, localhost_by_name) {
    // "localhost" may resolve to ::1 first, where nothing listens: the
    // client must go on to 127.0.0.1.
    fake_t f;
    fake_start(&f, script_one_get);
    char addr[64];
    snprintf(addr, sizeof(addr), "localhost%s", strchr(f.addr, ':'));
    call_one_get(addr);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

Test(client, ipv6_literal) {
    int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin6, sizeof(sin6)) != 0) {
        if (lfd >= 0) {
            close(lfd);
        }
        cr_skip_test("no IPv6 loopback here");
    }
    socklen_t len = sizeof(sin6);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sin6, &len), 0);
    fake_t f;
    memset(&f, 0, sizeof(f));
    snprintf(f.addr, sizeof(f.addr), "[::1]:%u", (unsigned)ntohs(sin6.sin6_port));
    fake_fork(&f, lfd, script_one_get);
    call_one_get(f.addr);
    fake_wait(&f);
    ASSERT_NO_LEAKS();
}

static void assert_bad_addr(const char *addr, int want, const char *needle) {
    swd_client_t *c = (swd_client_t *)&c; // must be reset to NULL
    char err[256] = "";
    int r = swd_client_connect(addr, 2000, &c, err, sizeof(err));
    cr_assert_eq(r, want, "%s: got %d (%s)", addr, r, err);
    cr_assert_null(c);
    cr_assert(strstr(err, needle) != NULL, "%s: message '%s' lacks '%s'", addr, err, needle);
}

Test(client, bad_addresses_are_reported) {
    assert_bad_addr("", SWD_EPARAMS, "no address");
    assert_bad_addr("localhost", SWD_EPARAMS, "HOST:PORT");
    assert_bad_addr("127.0.0.1:", SWD_EPARAMS, "port");
    assert_bad_addr("127.0.0.1:0", SWD_EPARAMS, "port");
    assert_bad_addr("127.0.0.1:65536", SWD_EPARAMS, "port");
    assert_bad_addr("127.0.0.1:80x", SWD_EPARAMS, "port");
    assert_bad_addr(":7420", SWD_EPARAMS, "HOST:PORT");
    assert_bad_addr("::1:7420", SWD_EPARAMS, "HOST:PORT");
    assert_bad_addr("[::1:7420", SWD_EPARAMS, "[IPV6]:PORT");
    assert_bad_addr("unix:", SWD_EPARAMS, "unix socket path");
    assert_bad_addr("no-such-host.invalid:7420", SWD_ENOTFOUND, "no-such-host.invalid");
    assert_bad_addr("unix:/nonexistent/swd.sock", -ENOENT, "unix:/nonexistent/swd.sock");

    // A port nobody listens on.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    close(fd);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    assert_bad_addr(addr, -ECONNREFUSED, "refused");
    ASSERT_NO_LEAKS();
}

Test(client, free_null_is_noop) {
    swd_client_free(NULL);
}
