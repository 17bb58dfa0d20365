// Tests of the HTTP/1.1 server (runtime/http_server.h). The server runs on
// its own loop in a thread; the tests talk to it over plain blocking
// sockets, the way curl or a browser would. What the server thread observes
// (close callbacks, a cut-off stream) comes back through atomics.
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "runtime/http_server.h"
#include "tests/unit/leak_check.h"

// ---------------------------------------------------------------------------
// The server under test, on a loop in a thread.

typedef struct fixture {
    uv_loop_t loop;
    uv_async_t stop;
    uv_timer_t big_timer;   // feeds /big
    uv_timer_t later_timer; // answers /later
    swd_http_server_t *srv;
    pthread_t thread;
    int port;
    int loop_close_rc;
    // Server thread only.
    swd_http_res_t *big_res;
    swd_http_res_t *later_res;
    // Seen by the test thread.
    atomic_int sse_closed;
    atomic_int big_cut;
    atomic_int big_closed;
    atomic_long big_bytes;
} fixture_t;

static fixture_t F;

static void h_hello(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    static const char body[] = "hello world\n";
    swd_http_respond(res, 200, "text/plain", body, sizeof(body) - 1);
}

static void h_task(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    char body[512];
    int n = snprintf(body, sizeof(body), "task:%s", req->path);
    swd_http_respond(res, 200, "text/plain", body, (size_t)n);
}

static void h_query(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    char n[64], msg[64], flag[8], tiny[4], body[512];
    const char *vn = swd_http_query_get(req, "n", n, sizeof(n));
    const char *vm = swd_http_query_get(req, "msg", msg, sizeof(msg));
    const char *vf = swd_http_query_get(req, "flag", flag, sizeof(flag));
    const char *vx = swd_http_query_get(req, "missing", flag, sizeof(flag));
    const char *vt = swd_http_query_get(req, "msg", tiny, sizeof(tiny));
    int len = snprintf(body, sizeof(body), "n=%s|msg=%s|flag=%s|missing=%s|tiny=%s|raw=%s",
                       vn ? vn : "NULL", vm ? vm : "NULL", vf ? vf : "NULL", vx ? vx : "NULL",
                       vt ? vt : "NULL", req->query ? req->query : "NULL");
    swd_http_respond(res, 200, "text/plain", body, (size_t)len);
}

static void h_header(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    const char *v = swd_http_req_header(req, "x-test");
    const char *none = swd_http_req_header(req, "x-absent");
    const char *empty = swd_http_req_header(req, "X-EMPTY");
    char body[256];
    int n = snprintf(body, sizeof(body), "[%s] %s [%s] %s", v ? v : "NULL", none ? "?" : "NULL",
                     empty ? empty : "NULL", req->method);
    swd_http_respond(res, 200, "text/plain", body, (size_t)n);
}

static void sse_closed(swd_http_res_t *res, void *data) {
    atomic_store(&F.sse_closed, 1);
}

static void h_sse(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    swd_http_stream_on_close(res, sse_closed, NULL);
    swd_http_stream_begin(res, 200, "text/event-stream");
    swd_http_stream_write(res, "data: one\n\n", 11);
    swd_http_stream_write(res, "data: two\n\n", 11);
}

static void big_closed(swd_http_res_t *res, void *data) {
    atomic_store(&F.big_closed, 1);
    F.big_res = NULL;
    uv_timer_stop(&F.big_timer);
}

static void big_tick(uv_timer_t *t) {
    static char chunk[64 * 1024];
    if (F.big_res == NULL) {
        return;
    }
    memset(chunk, 'x', sizeof(chunk));
    if (!swd_http_stream_write(F.big_res, chunk, sizeof(chunk))) {
        atomic_store(&F.big_cut, 1);
        uv_timer_stop(t);
        return;
    }
    atomic_fetch_add(&F.big_bytes, (long)sizeof(chunk));
}

static void h_big(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    F.big_res = res;
    swd_http_stream_on_close(res, big_closed, NULL);
    swd_http_stream_begin(res, 200, "application/octet-stream");
    uv_timer_start(&F.big_timer, big_tick, 1, 1);
}

static void later_closed(swd_http_res_t *res, void *data) {
    F.later_res = NULL;
}

static void later_tick(uv_timer_t *t) {
    if (F.later_res != NULL) {
        swd_http_respond(F.later_res, 200, "text/plain", "later", 5);
        F.later_res = NULL;
    }
}

static void h_later(swd_http_res_t *res, const swd_http_req_t *req, void *data) {
    F.later_res = res;
    swd_http_stream_on_close(res, later_closed, NULL);
    uv_timer_start(&F.later_timer, later_tick, 30, 0);
}

static void on_stop(uv_async_t *a) {
    swd_http_server_close(F.srv);
    uv_close((uv_handle_t *)&F.stop, NULL);
    uv_close((uv_handle_t *)&F.big_timer, NULL);
    uv_close((uv_handle_t *)&F.later_timer, NULL);
}

static void *server_thread(void *arg) {
    uv_run(&F.loop, UV_RUN_DEFAULT);
    F.loop_close_rc = uv_loop_close(&F.loop);
    return NULL;
}

static void server_start(const swd_http_server_opts_t *opts) {
    // A client that leaves makes the server's write fail with EPIPE, not die.
    signal(SIGPIPE, SIG_IGN);
    memset(&F, 0, sizeof(F));
    cr_assert_eq(uv_loop_init(&F.loop), 0);
    cr_assert_eq(uv_async_init(&F.loop, &F.stop, on_stop), 0);
    cr_assert_eq(uv_timer_init(&F.loop, &F.big_timer), 0);
    cr_assert_eq(uv_timer_init(&F.loop, &F.later_timer), 0);
    F.srv = swd_http_server_new(&F.loop, opts);
    swd_http_server_route(F.srv, "/hello", false, h_hello, NULL);
    swd_http_server_route(F.srv, "/tasks/", true, h_task, NULL);
    swd_http_server_route(F.srv, "/q", false, h_query, NULL);
    swd_http_server_route(F.srv, "/hdr", false, h_header, NULL);
    swd_http_server_route(F.srv, "/sse", false, h_sse, NULL);
    swd_http_server_route(F.srv, "/big", false, h_big, NULL);
    swd_http_server_route(F.srv, "/later", false, h_later, NULL);
    char bound[64], err[256];
    int r = swd_http_server_listen(F.srv, "127.0.0.1:0", bound, sizeof(bound), err, sizeof(err));
    cr_assert_eq(r, 0, "listen: %s", err);
    const char *colon = strrchr(bound, ':');
    cr_assert_not_null(colon);
    cr_assert_eq(strncmp(bound, "127.0.0.1:", 10), 0, "bound %s", bound);
    F.port = atoi(colon + 1);
    cr_assert_gt(F.port, 0);
    cr_assert_eq(pthread_create(&F.thread, NULL, server_thread, NULL), 0);
}

/// Closes the server from its own loop; the loop must then close cleanly.
static void server_stop(void) {
    uv_async_send(&F.stop);
    cr_assert_eq(pthread_join(F.thread, NULL), 0);
    cr_assert_eq(F.loop_close_rc, 0, "uv_loop_close: %d (a handle was left open)", F.loop_close_rc);
}

// ---------------------------------------------------------------------------
// A plain client.

static int cli_connect_buf(int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (rcvbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)F.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
                 strerror(errno));
    return fd;
}

static int cli_connect(void) {
    return cli_connect_buf(0);
}

static void cli_send_n(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        cr_assert_gt(w, 0, "send: %s", strerror(errno));
        s += w;
        n -= (size_t)w;
    }
}

static void cli_send(int fd, const char *s) {
    cli_send_n(fd, s, strlen(s));
}

typedef struct resp {
    int status;
    char head[4096]; // status line and headers, NUL-terminated
    char *body;      // malloc'd, NUL-terminated
    size_t body_len;
} resp_t;

/// Reads one byte; 1, 0 at EOF, -1 on error or timeout.
static int cli_byte(int fd, char *ch) {
    ssize_t r = recv(fd, ch, 1, 0);
    return r == 1 ? 1 : (r == 0 ? 0 : -1);
}

/// Reads one response (Content-Length bodies; `head_only` for HEAD).
/// False when the connection ended or timed out first.
static bool cli_response(int fd, resp_t *r, bool head_only) {
    memset(r, 0, sizeof(*r));
    size_t n = 0;
    while (n < sizeof(r->head) - 1) {
        if (cli_byte(fd, &r->head[n]) != 1) {
            return false;
        }
        n++;
        if (n >= 4 && memcmp(r->head + n - 4, "\r\n\r\n", 4) == 0) {
            break;
        }
    }
    r->head[n] = '\0';
    cr_assert_eq(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1, "bad status line: %s", r->head);
    const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
    size_t len = cl && !head_only ? strtoul(cl + 18, NULL, 10) : 0;
    r->body = calloc(1, len + 1);
    for (size_t i = 0; i < len; i++) {
        if (cli_byte(fd, &r->body[i]) != 1) {
            return false;
        }
    }
    r->body_len = len;
    return true;
}

static void resp_free(resp_t *r) {
    free(r->body);
    r->body = NULL;
}

/// True when the server closes the connection (EOF, or a reset) with no
/// more bytes, before the receive timeout.
static bool cli_eof(int fd) {
    char ch;
    ssize_t r = recv(fd, &ch, 1, 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

/// Reads everything until the server closes; malloc'd, NUL-terminated.
static char *cli_read_all(int fd, bool *closed) {
    size_t cap = 1024, len = 0;
    char *buf = malloc(cap);
    *closed = false;
    for (;;) {
        if (len + 512 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0) {
            *closed = r == 0 || errno == ECONNRESET;
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    return buf;
}

static void wait_flag(atomic_int *flag, int ms, const char *what) {
    for (int i = 0; i < ms / 10 && !atomic_load(flag); i++) {
        struct timespec ts = {.tv_nsec = 10000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert(atomic_load(flag), "%s did not happen", what);
}

/// Sends `req` and reads the answer into `r` (free it with resp_free()); an
/// answer must come, with `status`.
static void request_expect(int fd, const char *req, int status, resp_t *r) {
    cli_send(fd, req);
    cr_assert(cli_response(fd, r, false), "no response to %s", req);
    cr_assert_eq(r->status, status, "%s: %d", req, r->status);
}

static void get_ok(int fd, const char *path, const char *want_body) {
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    resp_t r;
    request_expect(fd, req, 200, &r);
    cr_assert_str_eq(r.body, want_body);
    resp_free(&r);
}

/// Reads everything the server sends; it must then close the connection
/// (before the receive timeout), and the text must begin with `status_line`
/// ("HTTP/1.1 400 "). Returns the text, malloc'd and NUL-terminated.
static char *read_until_closed(int fd, const char *status_line) {
    bool closed;
    char *all = cli_read_all(fd, &closed);
    cr_assert(closed, "connection left open");
    cr_assert_eq(strncmp(all, status_line, strlen(status_line)), 0, "%s", all);
    return all;
}

/// The server answers with `status_line` and closes the connection.
static void expect_answer_then_close(int fd, const char *status_line) {
    free(read_until_closed(fd, status_line));
}

// ---------------------------------------------------------------------------
// Tests

Test(http_server, get_200_with_body) {
    server_start(NULL);
    int fd = cli_connect();
    resp_t r;
    request_expect(fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    cr_assert_not_null(strstr(r.head, "\r\nContent-Length: 12\r\n"), "%s", r.head);
    cr_assert_not_null(strstr(r.head, "\r\nContent-Type: text/plain\r\n"));
    cr_assert_not_null(strstr(r.head, "\r\nCache-Control: no-store\r\n"));
    cr_assert_null(strstr(r.head, "Connection: close"));
    cr_assert_str_eq(r.body, "hello world\n");
    resp_free(&r);
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, head_has_headers_but_no_body) {
    server_start(NULL);
    int fd = cli_connect();
    cli_send(fd, "HEAD /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    char *all = read_until_closed(fd, "HTTP/1.1 200 OK\r\n");
    cr_assert_not_null(strstr(all, "\r\nContent-Length: 12\r\n"), "%s", all);
    const char *end = strstr(all, "\r\n\r\n");
    cr_assert_not_null(end);
    cr_assert_str_eq(end, "\r\n\r\n", "HEAD answer carries a body");
    free(all);
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, head_then_get_on_one_connection) {
    server_start(NULL);
    int fd = cli_connect();
    cli_send(fd, "HEAD /hdr HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_t r;
    cr_assert(cli_response(fd, &r, true));
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    get_ok(fd, "/hello", "hello world\n");
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, post_is_405_with_allow) {
    server_start(NULL);
    int fd = cli_connect();
    resp_t r;
    request_expect(fd, "POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde", 405,
                   &r);
    cr_assert_not_null(strstr(r.head, "\r\nAllow: GET, HEAD\r\n"), "%s", r.head);
    resp_free(&r);
    // The body was read and dropped: the connection goes on.
    get_ok(fd, "/hello", "hello world\n");
    // A chunked body too.
    request_expect(fd,
                   "PUT /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n0\r\n\r\n",
                   405, &r);
    resp_free(&r);
    get_ok(fd, "/hello", "hello world\n");
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, body_over_limit_is_413_and_close) {
    server_start(NULL);
    int fd = cli_connect();
    resp_t r;
    request_expect(fd, "POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nabc", 413,
                   &r);
    cr_assert_not_null(strstr(r.head, "Connection: close"));
    cr_assert(cli_eof(fd));
    resp_free(&r);
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, unknown_path_is_404) {
    server_start(NULL);
    int fd = cli_connect();
    resp_t r;
    request_expect(fd, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404, &r);
    resp_free(&r);
    // A prefix route does not match the bare prefix without its slash.
    request_expect(fd, "GET /tasks HTTP/1.1\r\nHost: t\r\n\r\n", 404, &r);
    resp_free(&r);
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, malformed_request_line_is_400_and_close) {
    server_start(NULL);
    int fd = cli_connect();
    cli_send(fd, "GARBAGE\r\n\r\n");
    char *all = read_until_closed(fd, "HTTP/1.1 400 ");
    cr_assert_not_null(strstr(all, "Connection: close"));
    free(all);
    close(fd);
    // A bad escape in the path is malformed too.
    fd = cli_connect();
    cli_send(fd, "GET /tasks/%zz HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_answer_then_close(fd, "HTTP/1.1 400 ");
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, headers_over_32k_are_431) {
    server_start(NULL);
    int fd = cli_connect();
    size_t cap = (size_t)48 * 1024;
    char *req = malloc(cap);
    size_t n = (size_t)snprintf(req, cap, "GET /hello HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 42; i++) {
        n += (size_t)snprintf(req + n, cap - n, "X-Pad-%02d: ", i);
        memset(req + n, 'a', 1000);
        n += 1000;
        req[n] = '\r';
        req[n + 1] = '\n';
        n += 2;
    }
    req[n] = '\r';
    req[n + 1] = '\n';
    n += 2;
    cr_assert_gt(n, (size_t)40 * 1024);
    cli_send_n(fd, req, n);
    free(req);
    expect_answer_then_close(fd, "HTTP/1.1 431 ");
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, keep_alive_two_requests_one_connection) {
    server_start(NULL);
    int fd = cli_connect();
    get_ok(fd, "/hello", "hello world\n");
    get_ok(fd, "/tasks/abc", "task:/tasks/abc");
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, pipelined_requests_answered_in_order) {
    server_start(NULL);
    int fd = cli_connect();
    cli_send(fd, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /tasks/second HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    // The first is answered later (from a timer), yet comes first.
    resp_t r;
    cr_assert(cli_response(fd, &r, false));
    cr_assert_str_eq(r.body, "later");
    resp_free(&r);
    cr_assert(cli_response(fd, &r, false));
    cr_assert_str_eq(r.body, "task:/tasks/second");
    resp_free(&r);
    cr_assert(cli_response(fd, &r, false));
    cr_assert_str_eq(r.body, "hello world\n");
    resp_free(&r);
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, connection_close_is_honoured) {
    server_start(NULL);
    int fd = cli_connect();
    resp_t r;
    request_expect(fd, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 200, &r);
    cr_assert_not_null(strstr(r.head, "\r\nConnection: close\r\n"));
    cr_assert(cli_eof(fd), "connection left open");
    resp_free(&r);
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, http10_closes_unless_keep_alive) {
    server_start(NULL);
    int fd = cli_connect();
    resp_t r;
    request_expect(fd, "GET /hello HTTP/1.0\r\n\r\n", 200, &r);
    cr_assert(cli_eof(fd));
    resp_free(&r);
    close(fd);
    fd = cli_connect();
    cli_send(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cr_assert(cli_response(fd, &r, false));
    cr_assert_not_null(strstr(r.head, "\r\nConnection: keep-alive\r\n"), "%s", r.head);
    resp_free(&r);
    request_expect(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, &r);
    resp_free(&r);
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, prefix_route_gets_full_decoded_path) {
    server_start(NULL);
    int fd = cli_connect();
    get_ok(fd, "/tasks/t-1", "task:/tasks/t-1");
    get_ok(fd, "/tasks/t%2D2?x=1", "task:/tasks/t-2");
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, query_parameters_are_percent_decoded) {
    server_start(NULL);
    int fd = cli_connect();
    get_ok(fd, "/q?n=200&msg=hello%20world+x%26y&flag",
           "n=200|msg=hello world x&y|flag=|missing=NULL|tiny=NULL"
           "|raw=n=200&msg=hello%20world+x%26y&flag");
    get_ok(fd, "/q", "n=NULL|msg=NULL|flag=NULL|missing=NULL|tiny=NULL|raw=NULL");
    get_ok(fd, "/q?m%73g=ok&n=%00",
           "n=NULL|msg=ok|flag=NULL|missing=NULL|tiny=ok|raw=m%73g=ok&n=%00");
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, header_lookup_ignores_case) {
    server_start(NULL);
    int fd = cli_connect();
    cli_send(fd, "GET /hdr HTTP/1.1\r\nHost: t\r\nX-TeSt:   some value  \r\nX-Empty:\r\n\r\n");
    resp_t r;
    cr_assert(cli_response(fd, &r, false));
    cr_assert_str_eq(r.body, "[some value] NULL [] GET");
    resp_free(&r);
    // Headers split across writes are put together again.
    cli_send(fd, "GET /hdr HTTP/1.1\r\nHost: t\r\nX-T");
    struct timespec ts = {.tv_nsec = 20000000L};
    nanosleep(&ts, NULL);
    cli_send(fd, "est: spl");
    nanosleep(&ts, NULL);
    cli_send(fd, "it\r\n\r\n");
    cr_assert(cli_response(fd, &r, false));
    cr_assert_str_eq(r.body, "[split] NULL [NULL] GET");
    resp_free(&r);
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, answer_given_later_keeps_connection) {
    server_start(NULL);
    int fd = cli_connect();
    get_ok(fd, "/later", "later");
    get_ok(fd, "/later", "later");
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, sse_stream_and_client_close) {
    server_start(NULL);
    int fd = cli_connect();
    cli_send(fd, "GET /sse HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
    char buf[1024] = "";
    size_t len = 0;
    while (strstr(buf, "data: two\n\n") == NULL) {
        ssize_t r = recv(fd, buf + len, sizeof(buf) - len - 1, 0);
        cr_assert_gt(r, 0, "stream ended early");
        len += (size_t)r;
        buf[len] = '\0';
    }
    cr_assert_eq(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17), 0);
    cr_assert_not_null(strstr(buf, "\r\nContent-Type: text/event-stream\r\n"));
    cr_assert_not_null(strstr(buf, "\r\nConnection: close\r\n"));
    cr_assert_null(strstr(buf, "Content-Length"));
    cr_assert_not_null(strstr(buf, "\r\n\r\ndata: one\n\ndata: two\n\n"));
    cr_assert_eq(atomic_load(&F.sse_closed), 0);
    close(fd);
    wait_flag(&F.sse_closed, 5000, "the stream's close callback");
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, head_of_a_stream_sends_headers_then_closes) {
    server_start(NULL);
    int fd = cli_connect();
    cli_send(fd, "HEAD /sse HTTP/1.1\r\nHost: t\r\n\r\n");
    char *all = read_until_closed(fd, "HTTP/1.1 200 OK\r\n");
    cr_assert_str_eq(strstr(all, "\r\n\r\n"), "\r\n\r\n", "HEAD answer carries a body");
    free(all);
    close(fd);
    wait_flag(&F.sse_closed, 5000, "the stream's close callback");
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, upgrade_request_is_answered_then_closed) {
    server_start(NULL);
    int fd = cli_connect();
    resp_t r;
    request_expect(fd,
                   "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                   "Upgrade: websocket\r\n\r\n",
                   200, &r);
    cr_assert_not_null(strstr(r.head, "Connection: close"));
    cr_assert(cli_eof(fd));
    resp_free(&r);
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, slow_stream_client_is_cut_off_others_served) {
    server_start(NULL);
    int slow = cli_connect_buf(4096);
    cli_send(slow, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    // The stream is running; another client is served meanwhile.
    while (atomic_load(&F.big_bytes) < 256L * 1024 && !atomic_load(&F.big_cut)) {
        struct timespec ts = {.tv_nsec = 1000000L};
        nanosleep(&ts, NULL);
    }
    int fd = cli_connect();
    get_ok(fd, "/hello", "hello world\n");
    wait_flag(&F.big_cut, 20000, "cutting off the slow client");
    wait_flag(&F.big_closed, 5000, "the slow stream's close callback");
    get_ok(fd, "/hello", "hello world\n");
    close(fd);
    close(slow);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, close_with_open_stream_and_connections) {
    server_start(NULL);
    int sse = cli_connect();
    cli_send(sse, "GET /sse HTTP/1.1\r\nHost: t\r\n\r\n");
    char buf[512];
    cr_assert_gt(recv(sse, buf, sizeof(buf), 0), 0);
    int idle = cli_connect();
    get_ok(idle, "/hello", "hello world\n");
    int partial = cli_connect();
    cli_send(partial, "GET /hello HTTP/1.1\r\nHo");
    int pending = cli_connect();
    cli_send(pending, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    server_stop(); // asserts uv_loop_close() == 0
    cr_assert_eq(atomic_load(&F.sse_closed), 1, "stream close callback did not run");
    cr_assert(cli_eof(idle));
    close(sse);
    close(idle);
    close(partial);
    close(pending);
    ASSERT_NO_LEAKS();
}

Test(http_server, incomplete_headers_get_408_idle_connection_closes) {
    swd_http_server_opts_t opts = {.idle_timeout_ms = 200};
    server_start(&opts);
    int fd = cli_connect();
    cli_send(fd, "GET /hello HTTP/1.1\r\nHost: t\r\n");
    expect_answer_then_close(fd, "HTTP/1.1 408 ");
    close(fd);
    // Nothing sent: closed without a word.
    fd = cli_connect();
    char *all = read_until_closed(fd, "");
    cr_assert_str_eq(all, "");
    free(all);
    close(fd);
    // After an answer, the idle clock starts again.
    fd = cli_connect();
    get_ok(fd, "/hello", "hello world\n");
    cr_assert(cli_eof(fd));
    close(fd);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, connections_over_limit_get_503) {
    swd_http_server_opts_t opts = {.max_connections = 2};
    server_start(&opts);
    int a = cli_connect();
    get_ok(a, "/hello", "hello world\n");
    int b = cli_connect();
    get_ok(b, "/hello", "hello world\n");
    int c = cli_connect();
    expect_answer_then_close(c, "HTTP/1.1 503 ");
    close(c);
    close(a);
    // A slot is free again once a connection has gone.
    int d = -1;
    for (int i = 0; i < 100; i++) {
        d = cli_connect();
        cli_send(d, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        resp_t r;
        cr_assert(cli_response(d, &r, false));
        int status = r.status;
        resp_free(&r);
        if (status == 200) {
            break;
        }
        close(d);
        d = -1;
        struct timespec ts = {.tv_nsec = 20000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_geq(d, 0, "no slot came free");
    close(d);
    close(b);
    server_stop();
    ASSERT_NO_LEAKS();
}

Test(http_server, listen_errors) {
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    swd_http_server_t *s = swd_http_server_new(&loop, NULL);
    char bound[64], err[256];
    cr_assert_lt(swd_http_server_listen(s, "nonsense", bound, sizeof(bound), err, sizeof(err)), 0);
    cr_assert_neq(err[0], '\0');
    cr_assert_eq(swd_http_server_listen(s, "127.0.0.1:0", bound, sizeof(bound), err, sizeof(err)),
                 0, "%s", err);
    int port = atoi(strrchr(bound, ':') + 1);
    // The port is taken now: a second server cannot have it.
    swd_http_server_t *s2 = swd_http_server_new(&loop, NULL);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    cr_assert_lt(swd_http_server_listen(s2, addr, NULL, 0, err, sizeof(err)), 0);
    cr_assert_not_null(strstr(err, "address already in use"), "%s", err);
    // And may try again elsewhere.
    cr_assert_eq(swd_http_server_listen(s2, "127.0.0.1:0", NULL, 0, err, sizeof(err)), 0);
    cr_assert_lt(swd_http_server_listen(s, "127.0.0.1:0", NULL, 0, err, sizeof(err)), 0);
    swd_http_server_close(s);
    swd_http_server_close(s2);
    swd_http_server_close(NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
    ASSERT_NO_LEAKS();
}
