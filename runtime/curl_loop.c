#include <stdbool.h>
#include <stdlib.h>

#include "proto/alloc.h"
#include "proto/errors.h"
#include "runtime/curl_loop.h"
#include "runtime/log.h"

// One socket curl asked us to watch. Freed in its poll handle's close
// callback, never before.
typedef struct sock_rec {
    uv_poll_t poll;
    swd_curl_loop_t *cl;
    curl_socket_t fd;
    struct sock_rec *prev, *next; // the loop's live list (not closing)
} sock_rec_t;

struct swd_curl_loop {
    uv_loop_t *loop;
    CURLM *multi;
    swd_timer_t timer;
    swd_curl_done_cb done;
    void *data;
    sock_rec_t *socks; // watched sockets
    unsigned closing;  // poll handles whose close callback is pending
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

static void on_sock_closed(uv_handle_t *h) {
    sock_rec_t *s = h->data;
    swd_curl_loop_t *cl = s->cl;
    free(s);
    if (--cl->closing == 0 && cl->cleaned) {
        free(cl);
    }
}

static void sock_close(swd_curl_loop_t *cl, sock_rec_t *s) {
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        cl->socks = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    cl->closing++;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
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

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    swd_curl_loop_t *cl = userp;
    sock_rec_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            sock_close(cl, s);
            if (!cl->cleaned && !cl->freeing) {
                curl_multi_assign(cl->multi, fd, NULL);
            }
        }
        return 0;
    }
    if (s == NULL) {
        s = swd_xcalloc(1, sizeof(*s));
        s->cl = cl;
        s->fd = fd;
        int r = uv_poll_init_socket(cl->loop, &s->poll, fd);
        if (r < 0) {
            swd_log_warn("http", "cannot watch a socket", "{s:s}", "error", uv_strerror(r));
            free(s);
            return -1; // curl fails this transfer
        }
        s->poll.data = s;
        s->next = cl->socks;
        if (cl->socks) {
            cl->socks->prev = s;
        }
        cl->socks = s;
        curl_multi_assign(cl->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
        events |= UV_READABLE;
    }
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
        events |= UV_WRITABLE;
    }
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

// ---- the timer ----

static void on_timer(swd_timer_t *t) {
    swd_curl_loop_t *cl = t->data;
    int running;
    enter(cl);
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(cl);
    leave(cl);
}

// curl asks for one timeout at a time: -1 removes it, 0 means "as soon as
// possible", which is the next loop turn (calling back into curl from here
// is not allowed).
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
    swd_curl_loop_t *cl = userp;
    if (timeout_ms < 0) {
        swd_timer_stop(&cl->timer);
    } else if (!cl->cleaned) {
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
    while (cl->socks != NULL) {
        sock_rec_t *s = cl->socks;
        uv_poll_stop(&s->poll);
        sock_close(cl, s);
    }
    if (cl->closing == 0) {
        free(cl);
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
