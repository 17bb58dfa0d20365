// loadgen: drives swarmd, or a Redis work queue of the same shape, with N
// client connections submitting no-op tasks and M no-op agents (workers)
// running them, and prints one JSON line of figures.
//
//   swarmd:  client ─task.submit─▶ swarmd ─task.run─▶ agent ─{output}─▶ swarmd
//            client ◀─Task (succeeded)── task.wait ◀─┘
//   redis:   producer ─LPUSH q─▶ redis ◀─BRPOP q── worker ─LPUSH r:<p>─▶ redis
//            producer ◀──────────── BRPOP r:<p> ───────────────────────┘
//
// Both sides use the same machinery: one epoll loop per thread,
// non-blocking sockets with TCP_NODELAY, output buffered per connection
// and written once per loop iteration. msgpack-c encodes and decodes the
// swarmd protocol; hiredis's reader parses Redis replies (commands are
// formatted by hand in RESP, which is what redisFormatCommand does).
//
// A task counts when its result reached the submitter inside the
// measurement window [warmup, warmup + duration).
//
// Modes:
//   tput        closed loop: each client keeps one task (or one batch of
//               --batch tasks) in flight and starts the next when it is done
//   rate        open loop: the clients together submit --rate tasks/s on a
//               schedule, whatever the answers do (latency under load)
//   mem-tasks   (swarmd) submits --count tasks (nil payload) with no agent
//               and reports the server's RSS growth per queued task
//   mem-agents  (swarmd) registers --count idle agents and reports the
//               server's RSS growth per agent
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <msgpack.h>

#define RING 8192u         // in-flight requests tracked per client connection
#define POP_OUTSTANDING 64 // BRPOPs kept queued on a Redis pop connection (rate mode)
#define MAX_BATCH 4096
#define WAIT_TIMEOUT_MS 60000

enum { SYS_SWARMD, SYS_REDIS };
enum { ROLE_CLIENT, ROLE_AGENT, ROLE_POP };
enum { MODE_TPUT, MODE_RATE, MODE_MEM_TASKS, MODE_MEM_AGENTS };
enum { K_NONE, K_SUBMIT, K_BATCH, K_WAIT };

static struct {
    int sys;
    int mode;
    char host[64];
    int port;
    int clients, agents, batch, threads, agent_conc, payload;
    double warmup, duration, rate;
    long count[8];
    int ncount;
    int server_pid;
    char runid[32];
    char payload_bytes[4096];
    int64_t t_start, t_measure, t_end;
} G = {
    .sys = SYS_SWARMD,
    .mode = MODE_TPUT,
    .host = "127.0.0.1",
    .clients = 1,
    .agents = 1,
    .batch = 1,
    .threads = 1,
    .agent_conc = 1,
    .payload = 16,
    .warmup = 0.5,
    .duration = 2.0,
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (p == NULL) {
        die("out of memory");
    }
    return p;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        die("out of memory");
    }
    return q;
}

// ---- output buffers ----

typedef struct obuf {
    char *p;
    size_t len, cap, off; // bytes [off, len) are still to be written
} obuf_t;

static void ob_put(obuf_t *b, const void *d, size_t n) {
    if (b->cap - b->len < n) {
        if (b->off > 0) {
            memmove(b->p, b->p + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n) {
            cap *= 2;
        }
        if (cap != b->cap) {
            b->p = xrealloc(b->p, cap);
            b->cap = cap;
        }
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static int ob_write_cb(void *data, const char *buf, size_t len) {
    ob_put(data, buf, len);
    return 0;
}

// ---- connections and threads ----

typedef struct pend {
    uint8_t kind;
    int64_t t0;
} pend_t;

typedef struct worker worker_t;

typedef struct conn {
    int fd;
    int role;
    int id; // producer id (Redis result list), agent index
    worker_t *w;
    obuf_t out;
    bool dirty;
    bool epollout;
    msgpack_packer pk;
    msgpack_unpacker up; // swarmd
    msgpack_unpacked res;
    redisReader *rr; // redis
    // client state
    uint64_t next_msgid;
    pend_t *ring;            // swarmd: by msgid; redis: t0 by task seq
    uint64_t seq;            // redis: next task number
    uint32_t waiting;        // answers still expected for the current task or batch
    int phase;               // redis closed loop: 0 pushing, 1 popping
    int64_t t0;              // start of the current task or batch
    uint64_t sent, finished; // rate mode
    double per_ns;           // rate mode: tasks per nanosecond for this client
    struct conn *pop;        // redis rate mode: this producer's pop connection
    struct conn *owner;      // redis pop connection: its producer
    char rkey[64];           // redis: this producer's result list
    size_t rkey_len;
} conn_t;

struct worker {
    int ep;
    conn_t **conns;
    int nconns;
    conn_t **dirty;
    int ndirty, capdirty;
    uint64_t done, errors, overrun;
    int64_t *lat;
    size_t nlat, caplat;
    pthread_t th;
};

static void mark_dirty(conn_t *c) {
    if (c->dirty || c->w == NULL) { // no worker: a set-up phase writes by itself
        return;
    }
    worker_t *w = c->w;
    if (w->ndirty == w->capdirty) {
        w->capdirty = w->capdirty ? w->capdirty * 2 : 64;
        w->dirty = xrealloc(w->dirty, (size_t)w->capdirty * sizeof(conn_t *));
    }
    w->dirty[w->ndirty++] = c;
    c->dirty = true;
}

// A task finished (its result reached the submitter) at `t`.
static void task_done(worker_t *w, int64_t t0, bool ok) {
    int64_t t = now_ns();
    if (t < G.t_measure || t >= G.t_end) {
        return;
    }
    if (!ok) {
        w->errors++;
        return;
    }
    w->done++;
    if (w->nlat == w->caplat) {
        w->caplat = w->caplat ? w->caplat * 2 : 65536;
        w->lat = xrealloc(w->lat, w->caplat * sizeof(*w->lat));
    }
    w->lat[w->nlat++] = t - t0;
}

static int connect_tcp(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        die("socket: %s", strerror(errno));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)G.port)};
    if (inet_pton(AF_INET, G.host, &sa.sin_addr) != 1) {
        die("bad address %s", G.host);
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        die("connect %s:%d: %s", G.host, G.port, strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void set_nonblock(int fd) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static conn_t *conn_new(int role, int id) {
    conn_t *c = xcalloc(1, sizeof(*c));
    c->fd = connect_tcp();
    c->role = role;
    c->id = id;
    c->next_msgid = 1;
    msgpack_packer_init(&c->pk, &c->out, ob_write_cb);
    if (G.sys == SYS_SWARMD) {
        if (!msgpack_unpacker_init(&c->up, 65536)) {
            die("msgpack_unpacker_init");
        }
        msgpack_unpacked_init(&c->res);
    } else {
        c->rr = redisReaderCreate();
    }
    if (role == ROLE_CLIENT) {
        c->ring = xcalloc(RING, sizeof(*c->ring));
        c->rkey_len = (size_t)snprintf(c->rkey, sizeof(c->rkey), "r:%s:%d", G.runid, id);
    }
    return c;
}

static void conn_free(conn_t *c) {
    close(c->fd);
    free(c->out.p);
    if (G.sys == SYS_SWARMD) {
        msgpack_unpacked_destroy(&c->res);
        msgpack_unpacker_destroy(&c->up);
    } else {
        redisReaderFree(c->rr);
    }
    free(c->ring);
    free(c);
}

// Writes what is buffered; registers for EPOLLOUT when the socket is full.
static void flush_conn(conn_t *c) {
    while (c->out.off < c->out.len) {
        ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                break;
            }
            die("write: %s", strerror(errno));
        }
        c->out.off += (size_t)n;
    }
    if (c->out.off == c->out.len) {
        c->out.off = c->out.len = 0;
    }
    bool want = c->out.len > 0;
    if (c->w != NULL && want != c->epollout) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->epollout = want;
    }
}

// ---- swarmd protocol ----

static void mp_str(msgpack_packer *pk, const char *s, size_t n) {
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

#define MP_LIT(pk, s) mp_str((pk), (s), sizeof(s) - 1)

static const msgpack_object *mp_find(const msgpack_object *map, const char *key) {
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP) {
        return NULL;
    }
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0) {
            return &map->via.map.ptr[i].val;
        }
    }
    return NULL;
}

static bool mp_streq(const msgpack_object *o, const char *s) {
    size_t n = strlen(s);
    return o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

// `[0, msgid, method, ` — the caller packs the params array.
static uint64_t sw_request(conn_t *c, const char *method, uint8_t kind, int64_t t0) {
    uint64_t id = c->next_msgid++;
    if (c->next_msgid > UINT32_MAX) {
        c->next_msgid = 1;
    }
    if (c->ring != NULL) {
        c->ring[id & (RING - 1)] = (pend_t){kind, t0};
    }
    msgpack_pack_array(&c->pk, 4);
    msgpack_pack_uint8(&c->pk, 0);
    msgpack_pack_uint64(&c->pk, id);
    mp_str(&c->pk, method, strlen(method));
    return id;
}

static void pack_task_spec(conn_t *c) {
    msgpack_pack_map(&c->pk, G.payload > 0 ? 2 : 1);
    MP_LIT(&c->pk, "type");
    MP_LIT(&c->pk, "noop");
    if (G.payload > 0) {
        MP_LIT(&c->pk, "payload");
        mp_str(&c->pk, G.payload_bytes, (size_t)G.payload);
    }
}

static void sw_submit(conn_t *c, int64_t t0) {
    sw_request(c, "task.submit", K_SUBMIT, t0);
    msgpack_pack_array(&c->pk, 1);
    pack_task_spec(c);
    mark_dirty(c);
}

static void sw_submit_batch(conn_t *c, int n, int64_t t0) {
    sw_request(c, "task.submit_batch", K_BATCH, t0);
    msgpack_pack_array(&c->pk, 1);
    msgpack_pack_map(&c->pk, 1);
    MP_LIT(&c->pk, "tasks");
    msgpack_pack_array(&c->pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        pack_task_spec(c);
    }
    mark_dirty(c);
}

static void sw_wait(conn_t *c, const msgpack_object *id, int64_t t0) {
    sw_request(c, "task.wait", K_WAIT, t0);
    msgpack_pack_array(&c->pk, 1);
    msgpack_pack_map(&c->pk, 2);
    MP_LIT(&c->pk, "task_id");
    mp_str(&c->pk, id->via.str.ptr, id->via.str.size);
    MP_LIT(&c->pk, "timeout_ms");
    msgpack_pack_uint32(&c->pk, WAIT_TIMEOUT_MS);
    mark_dirty(c);
}

static void client_next(conn_t *c);

static void sw_client_response(conn_t *c, uint64_t msgid, const msgpack_object *err,
                               const msgpack_object *result) {
    pend_t p = c->ring[msgid & (RING - 1)];
    c->ring[msgid & (RING - 1)].kind = K_NONE;
    worker_t *w = c->w;
    bool failed = err->type != MSGPACK_OBJECT_NIL;
    switch (p.kind) {
    case K_SUBMIT: {
        const msgpack_object *id = failed ? NULL : mp_find(result, "task_id");
        if (id == NULL || id->type != MSGPACK_OBJECT_STR) {
            task_done(w, p.t0, false);
            c->finished++;
            client_next(c);
            return;
        }
        sw_wait(c, id, p.t0);
        return;
    }
    case K_BATCH: {
        const msgpack_object *ids = failed ? NULL : mp_find(result, "task_ids");
        if (ids == NULL || ids->type != MSGPACK_OBJECT_ARRAY) {
            task_done(w, p.t0, false);
            c->waiting = 0;
            client_next(c);
            return;
        }
        c->waiting = ids->via.array.size;
        for (uint32_t i = 0; i < ids->via.array.size; i++) {
            sw_wait(c, &ids->via.array.ptr[i], p.t0);
        }
        return;
    }
    case K_WAIT: {
        const msgpack_object *st = failed ? NULL : mp_find(result, "state");
        if (mp_streq(st, "queued") || mp_streq(st, "running") || mp_streq(st, "deferred")) {
            sw_wait(c, mp_find(result, "task_id"), p.t0); // the wait timed out: wait again
            return;
        }
        task_done(w, p.t0, mp_streq(st, "succeeded"));
        c->finished++;
        if (c->waiting > 0) {
            c->waiting--;
        }
        if (c->waiting == 0) {
            client_next(c);
        }
        return;
    }
    default:
        return;
    }
}

static void sw_agent_request(conn_t *c, uint64_t msgid, const char *method, size_t mlen) {
    msgpack_pack_array(&c->pk, 4);
    msgpack_pack_uint8(&c->pk, 1);
    msgpack_pack_uint64(&c->pk, msgid);
    if (mlen == 8 && memcmp(method, "task.run", 8) == 0) {
        msgpack_pack_nil(&c->pk);
        msgpack_pack_map(&c->pk, 2);
        MP_LIT(&c->pk, "output");
        msgpack_pack_nil(&c->pk);
        MP_LIT(&c->pk, "tokens_used");
        msgpack_pack_uint8(&c->pk, 0);
    } else {
        msgpack_pack_map(&c->pk, 2);
        MP_LIT(&c->pk, "code");
        MP_LIT(&c->pk, "unknown_method");
        MP_LIT(&c->pk, "message");
        MP_LIT(&c->pk, "no-op agent");
        msgpack_pack_nil(&c->pk);
    }
    mark_dirty(c);
}

static void sw_message(conn_t *c, const msgpack_object *o) {
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3) {
        die("not a msgpack-RPC message");
    }
    const msgpack_object *e = o->via.array.ptr;
    uint64_t kind = e[0].via.u64;
    if (kind == 1 && o->via.array.size == 4) {
        if (c->role == ROLE_CLIENT) {
            sw_client_response(c, e[1].via.u64, &e[2], &e[3]);
        }
    } else if (kind == 0 && o->via.array.size == 4 && c->role == ROLE_AGENT) {
        sw_agent_request(c, e[1].via.u64, e[2].via.str.ptr, e[2].via.str.size);
    }
    // Notifications (task.cancel, agent.configure) need nothing from a no-op agent.
}

// ---- Redis ----

static void resp_cmd(conn_t *c, int argc, const char *const *argv, const size_t *lens) {
    char hdr[32];
    int n = snprintf(hdr, sizeof(hdr), "*%d\r\n", argc);
    ob_put(&c->out, hdr, (size_t)n);
    for (int i = 0; i < argc; i++) {
        n = snprintf(hdr, sizeof(hdr), "$%zu\r\n", lens[i]);
        ob_put(&c->out, hdr, (size_t)n);
        ob_put(&c->out, argv[i], lens[i]);
        ob_put(&c->out, "\r\n", 2);
    }
    mark_dirty(c);
}

static char g_qkey[64];
static size_t g_qkey_len;

// LPUSH q "<producer>:<seq>:<payload>"
static void rd_push(conn_t *c) {
    char val[4200];
    int n = snprintf(val, sizeof(val), "%d:%" PRIu64 ":", c->id, c->seq++);
    memcpy(val + n, G.payload_bytes, (size_t)G.payload);
    const char *argv[3] = {"LPUSH", g_qkey, val};
    size_t lens[3] = {5, g_qkey_len, (size_t)n + (size_t)G.payload};
    resp_cmd(c, 3, argv, lens);
}

static void rd_brpop(conn_t *c, const char *key, size_t klen) {
    const char *argv[3] = {"BRPOP", key, "0"};
    size_t lens[3] = {5, klen, 1};
    resp_cmd(c, 3, argv, lens);
}

// A worker got a task: result to the producer's list, and the next BRPOP,
// in one write.
static void rd_worker_task(conn_t *c, const char *val, size_t len) {
    const char *colon = memchr(val, ':', len);
    if (colon == NULL) {
        die("bad task %.*s", (int)len, val);
    }
    char key[64];
    int kn = snprintf(key, sizeof(key), "r:%s:%.*s", G.runid, (int)(colon - val), val);
    const char *argv[3] = {"LPUSH", key, val};
    size_t lens[3] = {5, (size_t)kn, len};
    resp_cmd(c, 3, argv, lens);
    rd_brpop(c, g_qkey, g_qkey_len);
}

static uint64_t seq_of(const char *val, size_t len) {
    const char *p = memchr(val, ':', len);
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void rd_reply(conn_t *c, const redisReply *r) {
    worker_t *w = c->w;
    if (r->type == REDIS_REPLY_ERROR) {
        die("redis: %.*s", (int)r->len, r->str);
    }
    switch (c->role) {
    case ROLE_AGENT:
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
            rd_worker_task(c, r->element[1]->str, r->element[1]->len);
        }
        return; // the LPUSH's integer needs nothing
    case ROLE_POP: {
        conn_t *p = c->owner;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
            uint64_t seq = seq_of(r->element[1]->str, r->element[1]->len);
            task_done(w, p->ring[seq & (RING - 1)].t0, true);
            p->finished++;
        }
        rd_brpop(c, p->rkey, p->rkey_len);
        return;
    }
    case ROLE_CLIENT:
    default:
        break;
    }
    if (G.mode == MODE_RATE) {
        return; // the push connection's LPUSH answers
    }
    if (c->phase == 0 && r->type == REDIS_REPLY_INTEGER) {
        if (--c->waiting == 0) {
            c->phase = 1;
            c->waiting = (uint32_t)G.batch;
            for (int i = 0; i < G.batch; i++) {
                rd_brpop(c, c->rkey, c->rkey_len);
            }
        }
        return;
    }
    if (c->phase == 1 && r->type == REDIS_REPLY_ARRAY) {
        task_done(w, c->t0, true);
        if (--c->waiting == 0) {
            client_next(c);
        }
    }
}

// ---- the client loop ----

// Starts the next task or batch (closed loop).
static void client_next(conn_t *c) {
    if (G.mode == MODE_RATE || now_ns() >= G.t_end) {
        return;
    }
    c->t0 = now_ns();
    if (G.sys == SYS_SWARMD) {
        if (G.batch > 1) {
            sw_submit_batch(c, G.batch, c->t0);
        } else {
            c->waiting = 0;
            sw_submit(c, c->t0);
        }
        return;
    }
    c->phase = 0;
    c->waiting = (uint32_t)G.batch;
    for (int i = 0; i < G.batch; i++) {
        rd_push(c);
    }
}

// Open loop: sends what the schedule says is due by `t`.
static void rate_tick(conn_t *c, int64_t t) {
    uint64_t due = (uint64_t)((double)(t - G.t_start) * c->per_ns);
    while (c->sent < due) {
        c->sent++;
        if (c->sent - c->finished >= RING / 2) {
            c->w->overrun++; // too far behind: skip rather than overwrite the ring
            c->finished++;
            continue;
        }
        if (G.sys == SYS_SWARMD) {
            sw_submit(c, t);
        } else {
            c->ring[c->seq & (RING - 1)].t0 = t;
            rd_push(c);
        }
    }
}

// Handles every whole message buffered on `c`.
static void sw_drain(conn_t *c) {
    msgpack_unpack_return r;
    while ((r = msgpack_unpacker_next(&c->up, &c->res)) == MSGPACK_UNPACK_SUCCESS) {
        sw_message(c, &c->res.data);
    }
    if (r == MSGPACK_UNPACK_PARSE_ERROR) {
        die("undecodable bytes from swarmd");
    }
}

static void conn_read(conn_t *c) {
    if (G.sys == SYS_SWARMD) {
        if (msgpack_unpacker_buffer_capacity(&c->up) < 16384 &&
            !msgpack_unpacker_reserve_buffer(&c->up, 65536)) {
            die("unpacker buffer");
        }
        ssize_t n =
            read(c->fd, msgpack_unpacker_buffer(&c->up), msgpack_unpacker_buffer_capacity(&c->up));
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                return;
            }
            die("server closed the connection (%s)", n == 0 ? "eof" : strerror(errno));
        }
        msgpack_unpacker_buffer_consumed(&c->up, (size_t)n);
        sw_drain(c);
        return;
    }
    char buf[65536];
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        die("redis closed the connection (%s)", n == 0 ? "eof" : strerror(errno));
    }
    redisReaderFeed(c->rr, buf, (size_t)n);
    void *reply = NULL;
    while (redisReaderGetReply(c->rr, &reply) == REDIS_OK && reply != NULL) {
        rd_reply(c, reply);
        freeReplyObject(reply);
        reply = NULL;
    }
}

static void flush_dirty(worker_t *w) {
    for (int i = 0; i < w->ndirty; i++) {
        conn_t *c = w->dirty[i];
        c->dirty = false;
        flush_conn(c);
    }
    w->ndirty = 0;
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    for (int i = 0; i < w->nconns; i++) {
        conn_t *c = w->conns[i];
        if (c->role == ROLE_POP) {
            for (int k = 0; k < POP_OUTSTANDING; k++) {
                rd_brpop(c, c->owner->rkey, c->owner->rkey_len);
            }
        } else if (c->role == ROLE_CLIENT && G.mode == MODE_TPUT) {
            client_next(c);
        } else if (c->role == ROLE_AGENT && G.sys == SYS_REDIS) {
            rd_brpop(c, g_qkey, g_qkey_len);
        } else if (c->role == ROLE_AGENT) {
            sw_drain(c); // a task.run may have come in with agent.register's answer
        }
    }
    flush_dirty(w);
    struct epoll_event evs[256];
    for (;;) {
        int64_t t = now_ns();
        if (t >= G.t_end) {
            break;
        }
        int n = epoll_wait(w->ep, evs, 256, G.mode == MODE_RATE ? 1 : 50);
        if (n < 0 && errno != EINTR) {
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                conn_read(c);
            }
            if (evs[i].events & EPOLLOUT) {
                mark_dirty(c);
            }
        }
        if (G.mode == MODE_RATE) {
            t = now_ns();
            for (int i = 0; i < w->nconns; i++) {
                if (w->conns[i]->role == ROLE_CLIENT) {
                    rate_tick(w->conns[i], t);
                }
            }
        }
        flush_dirty(w);
    }
    return NULL;
}

// ---- the server's process figures ----

static long rss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    long kb = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
        }
    }
    fclose(f);
    return kb;
}

// utime + stime of `pid` in seconds, or -1.
static double cpu_s(int pid) {
    if (pid <= 0) {
        return -1;
    }
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); // the command name may hold spaces
    unsigned long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void sleep_until(int64_t t) {
    for (;;) {
        int64_t d = t - now_ns();
        if (d <= 0) {
            return;
        }
        struct timespec ts = {d / 1000000000, d % 1000000000};
        nanosleep(&ts, NULL);
    }
}

// ---- blocking helpers for set-up phases ----

static void write_all(conn_t *c) {
    while (c->out.off < c->out.len) {
        ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("write: %s", strerror(errno));
        }
        c->out.off += (size_t)n;
    }
    c->out.off = c->out.len = 0;
    c->dirty = false;
}

// Reads until one swarmd response arrives; returns its error (nil when
// none) through `res`, which stays valid until the next read on `c`.
static const msgpack_object *sw_read_response(conn_t *c) {
    for (;;) {
        msgpack_unpack_return r = msgpack_unpacker_next(&c->up, &c->res);
        if (r == MSGPACK_UNPACK_SUCCESS) {
            const msgpack_object *o = &c->res.data;
            if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 4 &&
                o->via.array.ptr[0].via.u64 == 1) {
                return o;
            }
            continue;
        }
        if (r == MSGPACK_UNPACK_PARSE_ERROR) {
            die("undecodable bytes from swarmd");
        }
        if (msgpack_unpacker_buffer_capacity(&c->up) < 16384) {
            msgpack_unpacker_reserve_buffer(&c->up, 65536);
        }
        ssize_t n =
            read(c->fd, msgpack_unpacker_buffer(&c->up), msgpack_unpacker_buffer_capacity(&c->up));
        if (n <= 0) {
            die("swarmd closed the connection during set-up");
        }
        msgpack_unpacker_buffer_consumed(&c->up, (size_t)n);
    }
}

static void sw_register(conn_t *c, int i) {
    char name[32];
    int n = snprintf(name, sizeof(name), "noop-%d", i);
    sw_request(c, "agent.register", K_NONE, 0);
    msgpack_pack_array(&c->pk, 1);
    msgpack_pack_map(&c->pk, 3);
    MP_LIT(&c->pk, "name");
    mp_str(&c->pk, name, (size_t)n);
    MP_LIT(&c->pk, "capabilities");
    msgpack_pack_array(&c->pk, 1);
    MP_LIT(&c->pk, "noop");
    MP_LIT(&c->pk, "max_concurrency");
    msgpack_pack_uint32(&c->pk, (uint32_t)G.agent_conc);
    write_all(c);
}

static void sw_expect_ok(conn_t *c, const char *what) {
    const msgpack_object *o = sw_read_response(c);
    if (o->via.array.ptr[2].type != MSGPACK_OBJECT_NIL) {
        const msgpack_object *m = mp_find(&o->via.array.ptr[2], "message");
        die("%s refused: %.*s", what, m ? (int)m->via.str.size : 1, m ? m->via.str.ptr : "?");
    }
}

// Connects and registers `n` agents (all requests first, then the answers).
static conn_t **register_agents(int n) {
    conn_t **a = xcalloc((size_t)n + 1, sizeof(conn_t *));
    for (int i = 0; i < n; i++) {
        a[i] = conn_new(ROLE_AGENT, i);
        sw_register(a[i], i);
    }
    for (int i = 0; i < n; i++) {
        sw_expect_ok(a[i], "agent.register");
    }
    return a;
}

// ---- modes ----

static void mem_agents(void) {
    if (G.server_pid <= 0) {
        die("mem-agents needs --server-pid");
    }
    long n = G.ncount ? G.count[0] : 1000;
    long before = rss_kb(G.server_pid);
    conn_t **a = register_agents((int)n);
    usleep(100000);
    long after = rss_kb(G.server_pid);
    printf("{\"mode\":\"mem-agents\",\"agents\":%ld,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
           "\"bytes_per_agent\":%.1f}\n",
           n, before, after, (double)(after - before) * 1024.0 / (double)n);
    for (long i = 0; i < n; i++) {
        conn_free(a[i]);
    }
    free(a);
}

static void mem_tasks(void) {
    if (G.server_pid <= 0) {
        die("mem-tasks needs --server-pid");
    }
    if (G.ncount == 0) {
        G.count[G.ncount++] = 100000;
    }
    int saved_payload = G.payload;
    G.payload = 0; // the figure excludes payload
    conn_t *c = conn_new(ROLE_CLIENT, 0);
    long before = rss_kb(G.server_pid);
    long submitted = 0;
    const int per_call = 1000;
    printf("{\"mode\":\"mem-tasks\",\"rss_before_kb\":%ld,\"points\":[", before);
    for (int k = 0; k < G.ncount; k++) {
        while (submitted < G.count[k]) {
            long n = G.count[k] - submitted < per_call ? G.count[k] - submitted : per_call;
            sw_submit_batch(c, (int)n, 0);
            write_all(c);
            sw_expect_ok(c, "task.submit_batch");
            submitted += n;
        }
        usleep(100000);
        long rss = rss_kb(G.server_pid);
        printf("%s{\"tasks\":%ld,\"rss_kb\":%ld,\"bytes_per_task\":%.1f}", k ? "," : "", submitted,
               rss, (double)(rss - before) * 1024.0 / (double)submitted);
    }
    printf("]}\n");
    conn_free(c);
    G.payload = saved_payload;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct(const int64_t *v, size_t n, double p) {
    if (n == 0) {
        return 0;
    }
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0; // microseconds
}

static void redis_flush(void) {
    redisContext *rc = redisConnect(G.host, G.port);
    if (rc == NULL || rc->err) {
        die("redis connect %s:%d: %s", G.host, G.port, rc ? rc->errstr : "?");
    }
    redisReply *r = redisCommand(rc, "FLUSHALL");
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        die("redis FLUSHALL failed");
    }
    freeReplyObject(r);
    redisFree(rc);
}

static void add_conn(worker_t *w, conn_t *c) {
    w->conns = xrealloc(w->conns, (size_t)(w->nconns + 1) * sizeof(conn_t *));
    w->conns[w->nconns++] = c;
    c->w = w;
    set_nonblock(c->fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void run_load(void) {
    if (G.sys == SYS_REDIS) {
        redis_flush();
    }
    int T = G.threads;
    worker_t *ws = xcalloc((size_t)T, sizeof(*ws));
    for (int i = 0; i < T; i++) {
        ws[i].ep = epoll_create1(0);
    }
    // Agents (workers) first, so the first tasks find all of them.
    if (G.sys == SYS_SWARMD) {
        conn_t **a = register_agents(G.agents);
        for (int i = 0; i < G.agents; i++) {
            add_conn(&ws[i % T], a[i]);
        }
        free(a);
    } else {
        for (int i = 0; i < G.agents; i++) {
            add_conn(&ws[i % T], conn_new(ROLE_AGENT, i));
        }
    }
    double per_client = G.rate / (double)G.clients / 1e9;
    for (int i = 0; i < G.clients; i++) {
        conn_t *c = conn_new(ROLE_CLIENT, i);
        c->per_ns = per_client;
        worker_t *w = &ws[i % T];
        add_conn(w, c);
        if (G.sys == SYS_REDIS && G.mode == MODE_RATE) {
            // BRPOP blocks its connection, so results come back on a second one.
            conn_t *p = conn_new(ROLE_POP, i);
            p->owner = c;
            c->pop = p;
            add_conn(w, p);
        }
    }
    G.t_start = now_ns();
    G.t_measure = G.t_start + (int64_t)(G.warmup * 1e9);
    G.t_end = G.t_measure + (int64_t)(G.duration * 1e9);
    for (int i = 0; i < T; i++) {
        pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
    }
    sleep_until(G.t_measure);
    double s0 = cpu_s(G.server_pid), l0 = self_cpu_s();
    sleep_until(G.t_end);
    double s1 = cpu_s(G.server_pid), l1 = self_cpu_s();
    uint64_t done = 0, errors = 0, overrun = 0;
    size_t nlat = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(ws[i].th, NULL);
        done += ws[i].done;
        errors += ws[i].errors;
        overrun += ws[i].overrun;
        nlat += ws[i].nlat;
    }
    int64_t *lat = xrealloc(NULL, (nlat ? nlat : 1) * sizeof(*lat));
    size_t k = 0;
    for (int i = 0; i < T; i++) {
        memcpy(lat + k, ws[i].lat, ws[i].nlat * sizeof(*lat));
        k += ws[i].nlat;
    }
    qsort(lat, nlat, sizeof(*lat), cmp_i64);
    double secs = G.duration;
    printf("{\"system\":\"%s\",\"mode\":\"%s\",\"clients\":%d,\"agents\":%d,\"batch\":%d,"
           "\"threads\":%d,\"rate\":%.0f,\"done\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"overrun\":%" PRIu64 ",\"secs\":%.3f,\"tps\":%.1f,\"p50_us\":%.1f,"
           "\"p90_us\":%.1f,\"p99_us\":%.1f,\"server_cpu\":%.3f,\"loadgen_cpu\":%.3f}\n",
           G.sys == SYS_SWARMD ? "swarmd" : "redis", G.mode == MODE_RATE ? "rate" : "tput",
           G.clients, G.agents, G.batch, T, G.rate, done, errors, overrun, secs,
           (double)done / secs, pct(lat, nlat, 0.50), pct(lat, nlat, 0.90), pct(lat, nlat, 0.99),
           s0 >= 0 && s1 >= 0 ? (s1 - s0) / secs : -1.0, (l1 - l0) / secs);
    fflush(stdout);
    free(lat);
    // Connections close with the process: nothing else runs after this.
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --system swarmd|redis --addr HOST:PORT [--mode tput|rate|mem-tasks|"
            "mem-agents]\n"
            "               [--clients N] [--agents M] [--batch B] [--threads T]\n"
            "               [--agent-concurrency C] [--payload BYTES] [--warmup S] [--duration S]\n"
            "               [--rate TASKS_PER_S] [--count K[,K...]] [--server-pid PID]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
        }
        i++;
        if (strcmp(a, "--system") == 0) {
            G.sys = strcmp(v, "redis") == 0 ? SYS_REDIS : SYS_SWARMD;
        } else if (strcmp(a, "--addr") == 0) {
            const char *colon = strrchr(v, ':');
            if (colon == NULL || (size_t)(colon - v) >= sizeof(G.host)) {
                usage();
            }
            snprintf(G.host, sizeof(G.host), "%.*s", (int)(colon - v), v);
            G.port = atoi(colon + 1);
        } else if (strcmp(a, "--mode") == 0) {
            G.mode = strcmp(v, "rate") == 0         ? MODE_RATE
                     : strcmp(v, "mem-tasks") == 0  ? MODE_MEM_TASKS
                     : strcmp(v, "mem-agents") == 0 ? MODE_MEM_AGENTS
                                                    : MODE_TPUT;
        } else if (strcmp(a, "--clients") == 0) {
            G.clients = atoi(v);
        } else if (strcmp(a, "--agents") == 0) {
            G.agents = atoi(v);
        } else if (strcmp(a, "--batch") == 0) {
            G.batch = atoi(v);
        } else if (strcmp(a, "--threads") == 0) {
            G.threads = atoi(v);
        } else if (strcmp(a, "--agent-concurrency") == 0) {
            G.agent_conc = atoi(v);
        } else if (strcmp(a, "--payload") == 0) {
            G.payload = atoi(v);
        } else if (strcmp(a, "--warmup") == 0) {
            G.warmup = atof(v);
        } else if (strcmp(a, "--duration") == 0) {
            G.duration = atof(v);
        } else if (strcmp(a, "--rate") == 0) {
            G.rate = atof(v);
        } else if (strcmp(a, "--server-pid") == 0) {
            G.server_pid = atoi(v);
        } else if (strcmp(a, "--count") == 0) {
            char *end = (char *)v;
            while (*end && G.ncount < 8) {
                G.count[G.ncount++] = strtol(end, &end, 10);
                if (*end == ',') {
                    end++;
                }
            }
        } else {
            usage();
        }
    }
    if (G.port <= 0 || G.clients < 1 || G.agents < 0 || G.batch < 1 || G.batch > MAX_BATCH ||
        G.threads < 1 || G.payload < 0 || G.payload > 4000 || G.duration <= 0 ||
        (G.mode == MODE_RATE && G.rate <= 0)) {
        usage();
    }
    memset(G.payload_bytes, 'x', sizeof(G.payload_bytes));
    snprintf(G.runid, sizeof(G.runid), "%d", (int)getpid());
    g_qkey_len = (size_t)snprintf(g_qkey, sizeof(g_qkey), "q:%s", G.runid);
    switch (G.mode) {
    case MODE_MEM_TASKS:
        mem_tasks();
        break;
    case MODE_MEM_AGENTS:
        mem_agents();
        break;
    default:
        run_load();
        break;
    }
    return 0;
}
