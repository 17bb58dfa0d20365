#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/alloc.h"
#include "proto/errors.h"
#include "runtime/curl_loop.h"
#include "runtime/log.h"

// One socket curl asked us to watch. Freed in its poll handle's close
// callback, never before.
//
// A kept-alive connection going back to curl's cache is "removed" by curl
// after every request and "added" again for the next one. Closing and
// re-creating its poll handle each time would cost a descriptor lookup, an
// ioctl and two epoll_ctl calls per request, so the record of a socket
// curl opened through us stays, parked, still polled for input, until curl
// closes that socket (which it does through us too): the next request on
// the connection finds it as it was and changes nothing.
typedef struct sock_rec {
    uv_poll_t poll;
    swd_curl_loop_t *cl;
    curl_socket_t fd;
    int events;                   // UV_READABLE | UV_WRITABLE polled for now
    bool parked;                  // curl let go of it; the connection is idle in its cache
    struct sock_rec *prev, *next; // the loop's live list (not closing)
} sock_rec_t;

struct swd_curl_loop {
    uv_loop_t *loop;
    CURLM *multi;
    swd_timer_t timer;
    uv_idle_t now; // curl's "time out at once", after the loop's next I/O poll
    swd_curl_done_cb done;
    void *data;
    sock_rec_t *socks; // watched sockets
    sock_rec_t **byfd; // the live record of each descriptor, or NULL
    uint8_t *ours;     // 1: a socket curl opened through us and has not closed
    size_t nfd;        // entries of byfd and ours
    unsigned closing;  // handles whose close callback is pending
    unsigned active;   // transfers added, not yet done or removed
    int depth;         // > 0 while curl or a `done` callback runs
    bool freeing;      // swd_curl_loop_free() was called
    bool cleaned;      // the multi handle is gone
};

static void finish_free(swd_curl_loop_t *cl);

// Entered before calling into curl or the owner, left after: a free asked
// for in between happens on the way out, once nothing on the stack uses
// the loop any more.
static void enter(swd_curl_loop_t *cl) {
    cl->depth++;
}

static void leave(swd_curl_loop_t *cl) {
    if (--cl->depth == 0 && cl->freeing && !cl->cleaned) {
        finish_free(cl);
    }
}

// ---- sockets ----

static void closed_one(swd_curl_loop_t *cl) {
    if (--cl->closing == 0 && cl->cleaned) {
        free(cl->byfd);
        free(cl->ours);
        free(cl);
    }
}

static void on_sock_closed(uv_handle_t *h) {
    sock_rec_t *s = h->data;
    swd_curl_loop_t *cl = s->cl;
    free(s);
    closed_one(cl);
}

static void on_now_closed(uv_handle_t *h) {
    closed_one(h->data);
}

static void fd_room(swd_curl_loop_t *cl, curl_socket_t fd) {
    if ((size_t)fd < cl->nfd) {
        return;
    }
    size_t n = cl->nfd ? cl->nfd : 64;
    while (n <= (size_t)fd) {
        n *= 2;
    }
    cl->byfd = swd_xrealloc(cl->byfd, n * sizeof(sock_rec_t *));
    cl->ours = swd_xrealloc(cl->ours, n);
    memset(cl->byfd + cl->nfd, 0, (n - cl->nfd) * sizeof(sock_rec_t *));
    memset(cl->ours + cl->nfd, 0, n - cl->nfd);
    cl->nfd = n;
}

// Stops watching (epoll forgets the descriptor now, while it is still
// open) and frees the record once its handle has closed.
static void sock_close(swd_curl_loop_t *cl, sock_rec_t *s) {
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        cl->socks = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    if ((size_t)s->fd < cl->nfd && cl->byfd[s->fd] == s) {
        cl->byfd[s->fd] = NULL;
    }
    cl->closing++;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *addr) {
    swd_curl_loop_t *cl = clientp;
    // Close-on-exec: agent processes swarmd spawns must not inherit them.
    curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd != CURL_SOCKET_BAD) {
        fd_room(cl, fd);
        cl->ours[fd] = 1;
    }
    return fd;
}

static int on_close_socket(void *clientp, curl_socket_t fd) {
    swd_curl_loop_t *cl = clientp;
    if ((size_t)fd < cl->nfd) {
        cl->ours[fd] = 0;
        if (cl->byfd[fd] != NULL) {
            sock_close(cl, cl->byfd[fd]);
        }
    }
    return close(fd);
}

static void check_done(swd_curl_loop_t *cl) {
    CURLMsg *m;
    int left;
    while (!cl->freeing && (m = curl_multi_info_read(cl->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        // The message dies with the removal: copy what it says first.
        CURL *easy = m->easy_handle;
        CURLcode result = m->data.result;
        curl_multi_remove_handle(cl->multi, easy);
        cl->active--;
        cl->done(easy, result, cl->data);
    }
}

static void on_poll(uv_poll_t *h, int status, int events) {
    sock_rec_t *s = h->data;
    swd_curl_loop_t *cl = s->cl;
    if (s->parked) {
        // An idle connection's peer closed it (or spoke out of turn): stop
        // watching; curl finds out when it next wants the connection.
        uv_poll_stop(&s->poll);
        s->events = 0;
        return;
    }
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    }
    if (events & UV_READABLE) {
        flags |= CURL_CSELECT_IN;
    }
    if (events & UV_WRITABLE) {
        flags |= CURL_CSELECT_OUT;
    }
    int running;
    enter(cl);
    // `s` may be closed by curl inside this call; only `cl` is used after.
    curl_multi_socket_action(cl->multi, s->fd, flags, &running);
    check_done(cl);
    leave(cl);
}

// The record for a socket curl asks about without one assigned: a parked
// one of ours (the same open socket, as it was), or a new one.
static sock_rec_t *sock_find(swd_curl_loop_t *cl, curl_socket_t fd, bool *same) {
    fd_room(cl, fd);
    sock_rec_t *s = cl->byfd[fd];
    *same = s != NULL && s->parked && cl->ours[fd];
    if (s != NULL) {
        s->parked = false;
        return s;
    }
    s = swd_xcalloc(1, sizeof(*s));
    s->cl = cl;
    s->fd = fd;
    int r = uv_poll_init_socket(cl->loop, &s->poll, fd);
    if (r < 0) {
        swd_log_warn("http", "cannot watch a socket", "{s:s}", "error", uv_strerror(r));
        free(s);
        return NULL;
    }
    s->poll.data = s;
    s->next = cl->socks;
    if (cl->socks) {
        cl->socks->prev = s;
    }
    cl->socks = s;
    cl->byfd[fd] = s;
    return s;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    swd_curl_loop_t *cl = userp;
    sock_rec_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s == NULL) {
            return 0;
        }
        if (!cl->cleaned && !cl->freeing) {
            curl_multi_assign(cl->multi, fd, NULL);
        }
        if ((size_t)fd < cl->nfd && cl->ours[fd] && !cl->freeing) {
            s->parked = true; // kept for the connection's next request
            if (s->events != UV_READABLE) {
                uv_poll_stop(&s->poll);
                s->events = 0;
            }
        } else {
            sock_close(cl, s);
        }
        return 0;
    }
    // Without an assigned record the descriptor may be a new socket reusing
    // a number: only a parked socket of ours is known to be the same one.
    bool same = true;
    if (s == NULL) {
        s = sock_find(cl, fd, &same);
        if (s == NULL) {
            return -1; // curl fails this transfer
        }
        curl_multi_assign(cl->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
        events |= UV_READABLE;
    }
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
        events |= UV_WRITABLE;
    }
    if (!same || events != s->events) {
        uv_poll_start(&s->poll, events, on_poll);
        s->events = events;
    }
    return 0;
}

// ---- the timer ----

static void time_out(swd_curl_loop_t *cl) {
    int running;
    enter(cl);
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(cl);
    leave(cl);
}

static void on_timer(swd_timer_t *t) {
    time_out(t->data);
}

static void on_now(uv_idle_t *h) {
    uv_idle_stop(h);
    time_out(h->data);
}

// curl asks for one timeout at a time: -1 removes it; calling back into
// curl from here is not allowed. 0 means "as soon as possible": that runs
// in the loop's idle phase, not as a 0 ms timer, because a timer restarted
// from a timer callback fires again in the same pass (libuv 1.44), so a
// completion that starts the next request would chain request after
// request there and never let the loop poll the other sockets; the idle
// phase runs once per turn, and the poll after it does not block.
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
    swd_curl_loop_t *cl = userp;
    if (timeout_ms < 0 || cl->cleaned) {
        swd_timer_stop(&cl->timer);
        uv_idle_stop(&cl->now);
    } else if (timeout_ms == 0) {
        swd_timer_stop(&cl->timer);
        uv_idle_start(&cl->now, on_now);
    } else {
        uv_idle_stop(&cl->now);
        swd_timer_start(&cl->timer, timeout_ms);
    }
    return 0;
}

// ---- the loop ----

swd_curl_loop_t *swd_curl_loop_new(uv_loop_t *loop, swd_clock_t *clock, swd_curl_done_cb done,
                                   void *data) {
    swd_curl_loop_t *cl = swd_xcalloc(1, sizeof(*cl));
    cl->loop = loop;
    cl->done = done;
    cl->data = data;
    cl->multi = curl_multi_init();
    if (cl->multi == NULL) {
        abort(); // only out of memory makes curl_multi_init fail
    }
    swd_timer_init(clock, &cl->timer, on_timer, cl);
    uv_idle_init(loop, &cl->now);
    cl->now.data = cl;
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
    return cl;
}

CURLM *swd_curl_loop_multi(swd_curl_loop_t *cl) {
    return cl->multi;
}

int swd_curl_loop_add(swd_curl_loop_t *cl, CURL *easy) {
    if (cl->freeing) {
        return SWD_ESTATE;
    }
    // Every connection remembers the close callback of the handle that
    // opened it, so each of our sockets is closed through on_close_socket.
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, cl);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, cl);
    enter(cl);
    CURLMcode mc = curl_multi_add_handle(cl->multi, easy);
    if (mc == CURLM_OK) {
        cl->active++;
    }
    leave(cl);
    return mc == CURLM_OK ? 0 : SWD_EOVERFLOW;
}

void swd_curl_loop_remove(swd_curl_loop_t *cl, CURL *easy) {
    if (cl->cleaned) {
        return;
    }
    enter(cl);
    if (curl_multi_remove_handle(cl->multi, easy) == CURLM_OK && cl->active > 0) {
        cl->active--;
    }
    leave(cl);
}

unsigned swd_curl_loop_active(const swd_curl_loop_t *cl) {
    return cl->active;
}

static void finish_free(swd_curl_loop_t *cl) {
    swd_timer_stop(&cl->timer);
    // Closing the cached connections may still report their sockets.
    curl_multi_cleanup(cl->multi);
    cl->multi = NULL;
    cl->cleaned = true;
    swd_timer_stop(&cl->timer);
    uv_idle_stop(&cl->now);
    cl->closing++;
    uv_close((uv_handle_t *)&cl->now, on_now_closed);
    while (cl->socks != NULL) {
        sock_close(cl, cl->socks);
    }
}

void swd_curl_loop_free(swd_curl_loop_t *cl) {
    if (cl == NULL || cl->freeing) {
        return;
    }
    cl->freeing = true;
    if (cl->depth == 0) {
        finish_free(cl);
    }
}
