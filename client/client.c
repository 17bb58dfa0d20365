#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "proto/alloc.h"
#include "proto/decoder.h"
#include "proto/encoder.h"
#include "proto/errors.h"

// An event copied out of the decoder's memory, in its own zone.
typedef struct event_node {
    struct event_node *next;
    msgpack_zone *zone;
    msgpack_object body;
} event_node_t;

struct swd_client {
    int fd;
    swd_decoder_t *dec;
    swd_encoder_t enc;
    uint32_t next_msgid;
    int dead; // 0, or the code every call answers once the stream is unusable
    char errmsg[256];

    // The call in flight and its response, copied into reply_zone.
    bool waiting;
    bool answered;
    uint64_t waiting_msgid;
    msgpack_zone *reply_zone;
    msgpack_object reply_error;
    msgpack_object reply_result;

    event_node_t *head;
    event_node_t *tail;
    size_t queued;
    uint64_t dropped;
    event_node_t *current; // handed out by the last swd_client_next_event()
};

__attribute__((format(printf, 2, 3))) static void set_err(swd_client_t *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
}

// Marks the connection unusable: every later call answers `code`.
static int kill_conn(swd_client_t *c, int code) {
    c->dead = code;
    return code;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_of(int timeout_ms) {
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

// Waits for `events` on `fd` until `deadline` (-1: forever): the revents,
// 0 at the deadline, or -errno (-EINTR included, for the caller to decide).
static int wait_fd(int fd, short events, int64_t deadline) {
    int timeout = -1;
    if (deadline >= 0) {
        int64_t left = deadline - now_ms();
        timeout = left <= 0 ? 0 : (left > INT32_MAX ? INT32_MAX : (int)left);
    }
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, timeout);
    if (r < 0) {
        return -errno;
    }
    return r == 0 ? 0 : p.revents;
}

// ---------------------------------------------------------------------------
// Copying decoded objects out of the decoder

static void zone_free(msgpack_zone *z) {
    if (z != NULL) {
        msgpack_zone_free(z);
    }
}

static void *zalloc(msgpack_zone *z, size_t n) {
    void *p = msgpack_zone_malloc(z, n ? n : 1);
    if (p == NULL) {
        abort(); // CONVENTIONS.md: allocation failure aborts
    }
    return p;
}

static void clone_obj(msgpack_zone *z, msgpack_object *dst, const msgpack_object *src) {
    *dst = *src;
    switch (src->type) {
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN: {
        char *p = zalloc(z, src->via.str.size + 1);
        if (src->via.str.size > 0) {
            memcpy(p, src->via.str.ptr, src->via.str.size);
        }
        p[src->via.str.size] = '\0';
        dst->via.str.ptr = p;
        break;
    }
    case MSGPACK_OBJECT_EXT: {
        char *p = zalloc(z, src->via.ext.size);
        if (src->via.ext.size > 0) {
            memcpy(p, src->via.ext.ptr, src->via.ext.size);
        }
        dst->via.ext.ptr = p;
        break;
    }
    case MSGPACK_OBJECT_ARRAY: {
        uint32_t n = src->via.array.size;
        dst->via.array.ptr = zalloc(z, (size_t)n * sizeof(msgpack_object));
        for (uint32_t i = 0; i < n; i++) {
            clone_obj(z, &dst->via.array.ptr[i], &src->via.array.ptr[i]);
        }
        break;
    }
    case MSGPACK_OBJECT_MAP: {
        uint32_t n = src->via.map.size;
        dst->via.map.ptr = zalloc(z, (size_t)n * sizeof(msgpack_object_kv));
        for (uint32_t i = 0; i < n; i++) {
            clone_obj(z, &dst->via.map.ptr[i].key, &src->via.map.ptr[i].key);
            clone_obj(z, &dst->via.map.ptr[i].val, &src->via.map.ptr[i].val);
        }
        break;
    }
    default:
        break;
    }
}

// Bytes clone_obj() takes from a zone for `o`, alignment padding included,
// so that each copy fits one allocation.
static size_t clone_size(const msgpack_object *o) {
    const size_t pad = 2 * sizeof(void *);
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
        return o->via.str.size + 1 + pad;
    case MSGPACK_OBJECT_EXT:
        return o->via.ext.size + pad;
    case MSGPACK_OBJECT_ARRAY: {
        size_t n = (size_t)o->via.array.size * sizeof(msgpack_object) + pad;
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            n += clone_size(&o->via.array.ptr[i]);
        }
        return n;
    }
    case MSGPACK_OBJECT_MAP: {
        size_t n = (size_t)o->via.map.size * sizeof(msgpack_object_kv) + pad;
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            n += clone_size(&o->via.map.ptr[i].key) + clone_size(&o->via.map.ptr[i].val);
        }
        return n;
    }
    default:
        return 0;
    }
}

static msgpack_zone *zone_new(size_t size) {
    msgpack_zone *z = msgpack_zone_new(size < 64 ? 64 : size);
    if (z == NULL) {
        abort();
    }
    return z;
}

// ---------------------------------------------------------------------------
// Dispatching what the server sends

static bool name_is(const swd_msg_t *m, const char *s) {
    size_t n = strlen(s);
    return m->method_len == n && memcmp(m->method, s, n) == 0;
}

static void queue_event(swd_client_t *c, const msgpack_object *params) {
    // params is [{topic, event, ts, data}]; anything else is not an event.
    if (params->type != MSGPACK_OBJECT_ARRAY || params->via.array.size < 1 ||
        params->via.array.ptr[0].type != MSGPACK_OBJECT_MAP) {
        return;
    }
    if (c->queued >= SWD_CLIENT_MAX_QUEUED_EVENTS) {
        c->dropped++;
        return;
    }
    event_node_t *e = swd_xcalloc(1, sizeof(*e));
    e->zone = zone_new(clone_size(&params->via.array.ptr[0]));
    clone_obj(e->zone, &e->body, &params->via.array.ptr[0]);
    if (c->tail) {
        c->tail->next = e;
    } else {
        c->head = e;
    }
    c->tail = e;
    c->queued++;
}

static void take_response(swd_client_t *c, const swd_msg_t *m) {
    if (!c->waiting || m->msgid != c->waiting_msgid) {
        return; // the answer to a call that already timed out
    }
    zone_free(c->reply_zone);
    c->reply_zone = zone_new(clone_size(m->error) + clone_size(m->result));
    clone_obj(c->reply_zone, &c->reply_error, m->error);
    clone_obj(c->reply_zone, &c->reply_result, m->result);
    c->waiting = false;
    c->answered = true;
}

static void dispatch(swd_client_t *c, const swd_msg_t *m) {
    switch (m->kind) {
    case SWD_MSG_RESPONSE:
        take_response(c, m);
        break;
    case SWD_MSG_NOTIFY:
        if (name_is(m, "event")) {
            queue_event(c, m->params);
        }
        break;
    case SWD_MSG_REQUEST:
    default:
        // swarmd sends requests only to registered agents; a client has no
        // methods, and unknown messages are ignored (DESIGN.md §2).
        break;
    }
}

// Decodes and dispatches every complete message buffered.
static int drain(swd_client_t *c) {
    for (;;) {
        swd_msg_t m;
        swd_proto_error_t pe;
        int r = swd_decoder_next(c->dec, &m, &pe);
        if (r == 0) {
            return 0;
        }
        if (r < 0) {
            set_err(c, "bad data from server: %s", pe.message);
            return kill_conn(c, r);
        }
        dispatch(c, &m);
    }
}

// Reads what the socket holds into the decoder: 0 (maybe nothing read), or
// a code that has killed the connection.
static int read_some(swd_client_t *c) {
    char *buf;
    size_t len;
    swd_decoder_reserve(c->dec, (size_t)64 * 1024, &buf, &len);
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n > 0) {
        swd_decoder_commit(c->dec, (size_t)n);
        return 0;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return 0;
    }
    if (n == 0) {
        if (swd_decoder_pending(c->dec) > 0) {
            set_err(c, "server closed the connection in the middle of a message");
        } else {
            set_err(c, "server closed the connection");
        }
        return kill_conn(c, SWD_ECLOSED);
    }
    int e = errno;
    set_err(c, "read from server: %s", strerror(e));
    return kill_conn(c, -e);
}

// Reads and dispatches once input is there: 0 (progress or none), -ETIMEDOUT
// at the deadline, -EINTR if `intr` and a signal came, or a fatal code.
static int pump(swd_client_t *c, int64_t deadline, bool intr) {
    for (;;) {
        int ev = wait_fd(c->fd, POLLIN, deadline);
        if (ev == -EINTR && !intr) {
            continue;
        }
        if (ev < 0) {
            if (ev != -EINTR) {
                set_err(c, "poll: %s", strerror(-ev));
                return kill_conn(c, ev);
            }
            return ev;
        }
        if (ev == 0) {
            return -ETIMEDOUT;
        }
        int r = read_some(c);
        return r != 0 ? r : drain(c);
    }
}

// ---------------------------------------------------------------------------
// Calls

// Packs the request; nonzero when the callback refused or packed other than
// exactly one object.
static int encode_request(swd_client_t *c, uint64_t msgid, const char *method,
                          swd_client_pack_cb pack, void *data) {
    swd_encoder_reset(&c->enc);
    msgpack_packer *pk = swd_enc_request(&c->enc, msgid, method);
    msgpack_pack_array(pk, 1);
    if (pack == NULL) {
        msgpack_pack_map(pk, 0);
        return 0;
    }
    size_t start = c->enc.buf.len;
    int r = pack(pk, data);
    if (r != 0) {
        set_err(c, "%s: packing the parameters failed (%s)", method, swd_strerror(r));
        return r;
    }
    // A callback that packed nothing or two objects would desynchronise the
    // stream for good, so check before anything leaves.
    size_t off = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    msgpack_unpack_return ur =
        msgpack_unpack_next(&u, c->enc.buf.data + start, c->enc.buf.len - start, &off);
    msgpack_unpacked_destroy(&u);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != c->enc.buf.len - start) {
        set_err(c, "%s: the params callback must pack exactly one object", method);
        return SWD_EPARAMS;
    }
    return 0;
}

// Sends the encoded request whole, reading meanwhile so that a server busy
// writing events to us never deadlocks against our write.
static int send_request(swd_client_t *c, int64_t deadline) {
    const char *p = c->enc.buf.data;
    size_t left = c->enc.buf.len;
    while (left > 0) {
        int ev = wait_fd(c->fd, POLLIN | POLLOUT, deadline);
        if (ev == -EINTR) {
            continue;
        }
        if (ev == 0) {
            set_err(c, "timed out sending the request");
            // Half a request would desynchronise the stream; none is harmless.
            return left < c->enc.buf.len ? kill_conn(c, -ETIMEDOUT) : -ETIMEDOUT;
        }
        if (ev < 0) {
            set_err(c, "poll: %s", strerror(-ev));
            return kill_conn(c, ev);
        }
        if (ev & (POLLIN | POLLHUP | POLLERR)) {
            int r = read_some(c);
            r = r != 0 ? r : drain(c);
            if (r != 0) {
                return r;
            }
        }
        if (ev & POLLOUT) {
            ssize_t n = send(c->fd, p, left, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                int e = errno;
                set_err(c, "write to server: %s", strerror(e));
                return kill_conn(c, -e);
            }
            if (n > 0) {
                p += n;
                left -= (size_t)n;
            }
        }
    }
    return 0;
}

static const char *str_or(const msgpack_object *o, const char *dflt) {
    if (o != NULL && (o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_BIN)) {
        return o->via.str.ptr; // NUL-terminated by clone_obj
    }
    return dflt;
}

static const msgpack_object *find_key(const msgpack_object *map, const char *key) {
    if (map->type != MSGPACK_OBJECT_MAP) {
        return NULL;
    }
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if ((k->type == MSGPACK_OBJECT_STR || k->type == MSGPACK_OBJECT_BIN) &&
            k->via.str.size == n && memcmp(k->via.str.ptr, key, n) == 0) {
            return &map->via.map.ptr[i].val;
        }
    }
    return NULL;
}

static void fill_reply(swd_client_t *c, swd_reply_t *reply) {
    memset(reply, 0, sizeof(*reply));
    reply->result = &c->reply_result;
    const msgpack_object *err = &c->reply_error;
    if (err->type == MSGPACK_OBJECT_NIL) {
        return;
    }
    reply->is_error = true;
    if (err->type != MSGPACK_OBJECT_MAP) {
        // msgpack-RPC peers that are not swarmd put a bare string here.
        reply->code = "internal";
        reply->message = str_or(err, "the server sent a malformed error");
        return;
    }
    reply->code = str_or(find_key(err, "code"), "internal");
    reply->message = str_or(find_key(err, "message"), "");
    const msgpack_object *data = find_key(err, "data");
    reply->data = data != NULL && data->type != MSGPACK_OBJECT_NIL ? data : NULL;
}

int swd_client_call(swd_client_t *c, const char *method, swd_client_pack_cb pack, void *data,
                    swd_reply_t *reply, int timeout_ms) {
    if (c->dead != 0) {
        return c->dead;
    }
    int64_t deadline = deadline_of(timeout_ms);
    uint64_t msgid = c->next_msgid;
    c->next_msgid = c->next_msgid == UINT32_MAX ? 1 : c->next_msgid + 1;
    int r = encode_request(c, msgid, method, pack, data);
    if (r != 0) {
        return r;
    }
    zone_free(c->reply_zone);
    c->reply_zone = NULL;
    c->waiting = true;
    c->answered = false;
    c->waiting_msgid = msgid;
    r = send_request(c, deadline);
    while (r == 0 && !c->answered) {
        r = pump(c, deadline, false);
    }
    c->waiting = false;
    if (c->answered) {
        fill_reply(c, reply);
        return 0;
    }
    if (r == -ETIMEDOUT && c->dead == 0) {
        set_err(c, "%s: no answer within %d ms", method, timeout_ms);
    }
    return r;
}

// ---------------------------------------------------------------------------
// Events

static void fill_event(const event_node_t *e, swd_event_t *ev) {
    static const msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    memset(ev, 0, sizeof(*ev));
    ev->body = &e->body;
    ev->topic = str_or(find_key(&e->body, "topic"), "");
    ev->event = str_or(find_key(&e->body, "event"), "");
    const msgpack_object *ts = find_key(&e->body, "ts");
    if (ts != NULL && ts->type == MSGPACK_OBJECT_POSITIVE_INTEGER && ts->via.u64 <= INT64_MAX) {
        ev->ts = (int64_t)ts->via.u64;
    } else if (ts != NULL && ts->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        ev->ts = ts->via.i64;
    }
    const msgpack_object *data = find_key(&e->body, "data");
    ev->data = data != NULL ? data : &nil;
}

static void free_event(event_node_t *e) {
    if (e != NULL) {
        zone_free(e->zone);
        free(e);
    }
}

static bool pop_event(swd_client_t *c, swd_event_t *ev) {
    event_node_t *e = c->head;
    if (e == NULL) {
        return false;
    }
    c->head = e->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    c->queued--;
    e->next = NULL;
    c->current = e;
    fill_event(e, ev);
    return true;
}

int swd_client_next_event(swd_client_t *c, int timeout_ms, swd_event_t *ev) {
    free_event(c->current);
    c->current = NULL;
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        if (pop_event(c, ev)) {
            return 1;
        }
        if (c->dead != 0) {
            return c->dead;
        }
        int r = pump(c, deadline, true);
        if (r == -ETIMEDOUT) {
            return 0;
        }
        if (r != 0 && !pop_event(c, ev)) {
            return r;
        }
        if (r != 0) {
            return 1; // deliver what came before the failure first
        }
    }
}

// ---------------------------------------------------------------------------
// Connecting

// Splits "HOST:PORT", "[V6]:PORT" into host and port (copies in `buf`).
static int split_hostport(const char *addr, char *buf, size_t cap, const char **host,
                          const char **port, char *err, size_t errlen) {
    if (strlen(addr) >= cap) {
        snprintf(err, errlen, "address too long: %.64s...", addr);
        return SWD_EPARAMS;
    }
    memcpy(buf, addr, strlen(addr) + 1);
    char *colon;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "bad address '%s': expected [IPV6]:PORT", addr);
            return SWD_EPARAMS;
        }
        *close = '\0';
        colon = close + 1;
        *host = buf + 1;
    } else {
        colon = strrchr(buf, ':');
        if (colon == NULL || memchr(buf, ':', (size_t)(colon - buf)) != NULL) {
            snprintf(err, errlen, "bad address '%s': expected HOST:PORT, [IPV6]:PORT or unix:PATH",
                     addr);
            return SWD_EPARAMS;
        }
        *colon = '\0';
        *host = buf;
    }
    *port = colon + 1;
    char *end = NULL;
    errno = 0;
    unsigned long p = strtoul(*port, &end, 10);
    if (**host == '\0' || **port < '0' || **port > '9' || *end != '\0' || errno != 0 || p == 0 ||
        p > 65535) {
        snprintf(err, errlen, "bad address '%s': expected HOST:PORT with a port in 1..65535", addr);
        return SWD_EPARAMS;
    }
    return 0;
}

// Connects a fresh non-blocking socket to `sa`, waiting until `deadline`:
// the socket, or -errno.
static int connect_one(int family, const struct sockaddr *sa, socklen_t salen, int64_t deadline) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int r = connect(fd, sa, salen);
    if (r < 0 && errno != EINPROGRESS) {
        r = -errno;
        close(fd);
        return r;
    }
    if (r < 0) {
        int ev;
        do {
            ev = wait_fd(fd, POLLOUT, deadline);
        } while (ev == -EINTR);
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (ev == 0) {
            soerr = ETIMEDOUT;
        } else if (ev < 0) {
            soerr = -ev;
        } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
            soerr = errno;
        }
        if (soerr != 0) {
            close(fd);
            return -soerr;
        }
    }
    if (family != AF_UNIX) {
        int one = 1;
        // Requests are small and answered one by one: no Nagle delay.
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

static int connect_unix(const char *addr, const char *path, int64_t deadline, char *err,
                        size_t errlen) {
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (path[0] == '\0' || strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "bad address '%s': unix socket path empty or too long", addr);
        return SWD_EPARAMS;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = connect_one(AF_UNIX, (const struct sockaddr *)&sun, sizeof(sun), deadline);
    if (fd < 0) {
        snprintf(err, errlen, "connect to %s: %s", addr, strerror(-fd));
    }
    return fd;
}

static int connect_tcp(const char *addr, int64_t deadline, char *err, size_t errlen) {
    char buf[512];
    const char *host;
    const char *port;
    int r = split_hostport(addr, buf, sizeof(buf), &host, &port, err, errlen);
    if (r != 0) {
        return r;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "resolve %s: %s", host,
                 g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
        return SWD_ENOTFOUND;
    }
    int fd = -ENOENT;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline);
        if (fd >= 0 || fd == -ETIMEDOUT) {
            break;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "connect to %s: %s", addr, strerror(-fd));
    }
    return fd;
}

int swd_client_connect(const char *addr, int timeout_ms, swd_client_t **out, char *err,
                       size_t errlen) {
    char scratch[8];
    if (err == NULL || errlen == 0) {
        err = scratch; // messages are still formatted, just dropped
        errlen = sizeof(scratch);
    }
    err[0] = '\0';
    *out = NULL;
    if (addr == NULL || addr[0] == '\0') {
        snprintf(err, errlen, "no address given");
        return SWD_EPARAMS;
    }
    int64_t deadline = deadline_of(timeout_ms);
    int fd = strncmp(addr, "unix:", 5) == 0 ? connect_unix(addr, addr + 5, deadline, err, errlen)
                                            : connect_tcp(addr, deadline, err, errlen);
    if (fd < 0) {
        return fd;
    }
    swd_client_t *c = swd_xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->dec = swd_decoder_new(SWD_CLIENT_MAX_MESSAGE);
    swd_encoder_init(&c->enc);
    c->next_msgid = 1;
    *out = c;
    return 0;
}

const char *swd_client_errmsg(const swd_client_t *c) {
    return c->errmsg;
}

uint64_t swd_client_events_dropped(const swd_client_t *c) {
    return c->dropped;
}

int swd_client_fd(const swd_client_t *c) {
    return c->fd;
}

void swd_client_free(swd_client_t *c) {
    if (c == NULL) {
        return;
    }
    close(c->fd);
    swd_decoder_free(c->dec);
    swd_encoder_close(&c->enc);
    zone_free(c->reply_zone);
    free_event(c->current);
    while (c->head != NULL) {
        event_node_t *e = c->head;
        c->head = e->next;
        free_event(e);
    }
    free(c);
}
