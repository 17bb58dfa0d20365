#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/alloc.h"
#include "runtime/log.h"
#include "runtime/process.h"

// The longest stderr line kept whole; a longer one is logged in pieces.
#define LINE_MAX_BYTES 4096
// After the child exited, its stderr gets this long to reach EOF (the last
// lines may still be in the pipe); a grandchild holding it open must not
// keep the loop alive.
#define STDERR_DRAIN_MS 500

struct swd_process {
    uv_process_t proc;
    uv_pipe_t err;
    uv_timer_t timer; // SIGKILL after the grace, then the stderr drain limit
    int open_handles;
    bool exited;
    bool released;
    bool err_reading;
    bool killed; // SIGKILL sent
    bool quiet;  // released while alive: its goodbye lines go to debug
    int pid;
    char *name;
    swd_process_exit_cb on_exit;
    void *data;
    char line[LINE_MAX_BYTES];
    size_t line_len;
    swd_process_t *prev, *next; // every live process, for swd_process_kill_all
};

// Every child not yet freed. The core is single-threaded, like the logger.
static swd_process_t *all_processes;

static void list_del(swd_process_t *p) {
    if (p->prev != NULL) {
        p->prev->next = p->next;
    } else if (all_processes == p) {
        all_processes = p->next;
    }
    if (p->next != NULL) {
        p->next->prev = p->prev;
    }
    p->prev = p->next = NULL;
}

static void maybe_free(swd_process_t *p) {
    if (p->open_handles > 0 || !p->released) {
        return;
    }
    list_del(p);
    free(p->name);
    free(p);
}

static void on_handle_closed(uv_handle_t *h) {
    swd_process_t *p = h->data;
    p->open_handles--;
    maybe_free(p);
}

static void close_handle(swd_process_t *p, uv_handle_t *h) {
    if (!uv_is_closing(h)) {
        h->data = p;
        uv_close(h, on_handle_closed);
    }
}

// ---- stderr, line by line ----

static void log_line(swd_process_t *p, const char *s, size_t n) {
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n')) {
        n--;
    }
    if (n == 0) {
        return;
    }
    // Our own agents write JSON records when stderr is not a terminal: keep
    // their level and message, and nest their fields.
    json_t *rec = json_loadb(s, n, 0, NULL);
    const char *msg = rec ? json_string_value(json_object_get(rec, "msg")) : NULL;
    const char *lvl = rec ? json_string_value(json_object_get(rec, "level")) : NULL;
    swd_log_level_t level = SWD_LOG_INFO;
    if (msg != NULL && lvl != NULL && swd_log_level_parse(lvl, &level) == 0) {
        // The message outlives its key's removal from the record.
        char *text = swd_xstrdup(msg);
        json_object_del(rec, "ts");
        json_object_del(rec, "msg");
        json_object_del(rec, "level");
        swd_log(p->quiet ? SWD_LOG_DEBUG : level, "agent", text, "{s:s,s:i,s:O}", "agent", p->name,
                "pid", p->pid, "fields", rec);
        free(text);
    } else {
        swd_log(p->quiet ? SWD_LOG_DEBUG : SWD_LOG_INFO, "agent", "stderr", "{s:s,s:i,s:s%}",
                "agent", p->name, "pid", p->pid, "line", s, n);
    }
    json_decref(rec);
}

static void on_err_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    swd_process_t *p = h->data;
    if (p->line_len == sizeof(p->line)) {
        log_line(p, p->line, p->line_len); // an over-long line goes out in pieces
        p->line_len = 0;
    }
    buf->base = p->line + p->line_len;
    buf->len = sizeof(p->line) - p->line_len;
}

static void stop_reading(swd_process_t *p) {
    if (p->err_reading) {
        p->err_reading = false;
        if (p->line_len > 0) {
            log_line(p, p->line, p->line_len);
            p->line_len = 0;
        }
        close_handle(p, (uv_handle_t *)&p->err);
    }
}

static void on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    swd_process_t *p = s->data;
    if (n < 0) {
        stop_reading(p);
        return;
    }
    p->line_len += (size_t)n;
    size_t start = 0;
    for (size_t i = 0; i < p->line_len; i++) {
        if (p->line[i] == '\n') {
            log_line(p, p->line + start, i - start);
            start = i + 1;
        }
    }
    memmove(p->line, p->line + start, p->line_len - start);
    p->line_len -= start;
}

// ---- exit and kill ----

static void on_timer(uv_timer_t *t) {
    swd_process_t *p = t->data;
    if (!p->exited) {
        swd_log_warn("process", "child did not stop within its grace period: killing it",
                     "{s:s,s:i}", "agent", p->name, "pid", p->pid);
        p->killed = true;
        uv_process_kill(&p->proc, SIGKILL);
        return;
    }
    stop_reading(p);
    close_handle(p, (uv_handle_t *)&p->timer);
}

static void on_child_exit(uv_process_t *h, int64_t status, int term_signal) {
    swd_process_t *p = h->data;
    p->exited = true;
    close_handle(p, (uv_handle_t *)&p->proc);
    uv_timer_stop(&p->timer);
    if (p->err_reading) {
        uv_timer_start(&p->timer, on_timer, STDERR_DRAIN_MS, 0);
    } else {
        close_handle(p, (uv_handle_t *)&p->timer);
    }
    if (!p->released && p->on_exit != NULL) {
        p->on_exit(p, status, term_signal, p->data);
    } else {
        swd_log(status != 0 && !p->killed ? SWD_LOG_INFO : SWD_LOG_DEBUG, "process", "child exited",
                "{s:s,s:i,s:I,s:i}", "agent", p->name, "pid", p->pid, "status", (json_int_t)status,
                "signal", term_signal);
    }
}

int swd_process_spawn(uv_loop_t *loop, const swd_process_opts_t *o, swd_process_t **out) {
    swd_process_t *p = swd_xcalloc(1, sizeof(*p));
    p->name = swd_xstrdup(o->name ? o->name : o->argv[0]);
    p->on_exit = o->on_exit;
    p->data = o->data;
    uv_pipe_init(loop, &p->err, 0);
    p->err.data = p;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->err},
    };
    if (o->stdin_pipe != NULL) {
        stdio[0] = (uv_stdio_container_t){.flags = UV_CREATE_PIPE | UV_READABLE_PIPE,
                                          .data.stream = o->stdin_pipe};
    }
    if (o->stdout_pipe != NULL) {
        stdio[1] = (uv_stdio_container_t){.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
                                          .data.stream = o->stdout_pipe};
    }
    uv_process_options_t po = {
        .exit_cb = on_child_exit,
        .file = o->file,
        .args = (char **)o->argv,
        .env = (char **)o->env,
        .flags = o->detach ? UV_PROCESS_DETACHED : 0,
        .stdio_count = 3,
        .stdio = stdio,
    };
    p->proc.data = p;
    int r = uv_spawn(loop, &p->proc, &po);
    // Whether or not it started, the handles are initialised and must be
    // closed; `released` lets the last close free the struct on failure.
    p->open_handles = 2;
    if (r < 0) {
        p->released = true;
        p->exited = true;
        uv_close((uv_handle_t *)&p->proc, on_handle_closed);
        uv_close((uv_handle_t *)&p->err, on_handle_closed);
        return r;
    }
    p->pid = p->proc.pid;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->open_handles = 3;
    if (uv_read_start((uv_stream_t *)&p->err, on_err_alloc, on_err_read) == 0) {
        p->err_reading = true;
    } else {
        close_handle(p, (uv_handle_t *)&p->err);
    }
    p->next = all_processes;
    if (all_processes != NULL) {
        all_processes->prev = p;
    }
    all_processes = p;
    *out = p;
    return 0;
}

int swd_process_pid(const swd_process_t *p) {
    return p->pid;
}

bool swd_process_exited(const swd_process_t *p) {
    return p->exited;
}

int swd_process_signal(swd_process_t *p, int signum) {
    if (p->exited) {
        return UV_ESRCH;
    }
    return uv_process_kill(&p->proc, signum);
}

void swd_process_stop(swd_process_t *p, int64_t grace_ms) {
    if (p->exited) {
        return;
    }
    uv_process_kill(&p->proc, SIGTERM);
    if (!uv_is_active((uv_handle_t *)&p->timer) && !p->killed) {
        uv_timer_start(&p->timer, on_timer, grace_ms > 0 ? (uint64_t)grace_ms : 0, 0);
    }
}

void swd_process_release(swd_process_t *p, int64_t grace_ms) {
    if (p == NULL) {
        return;
    }
    p->released = true;
    p->on_exit = NULL;
    p->quiet = !p->exited;
    if (!p->exited) {
        swd_process_stop(p, grace_ms);
    }
    maybe_free(p);
}

void swd_process_kill_all(void) {
    for (swd_process_t *p = all_processes; p != NULL; p = p->next) {
        if (!p->exited) {
            kill(p->pid, SIGKILL);
        }
    }
}

// ---- finding the executable ----

static int try_exe(const char *dir, size_t dlen, const char *name, char *out, size_t cap) {
    int n = snprintf(out, cap, "%.*s%s%s", (int)dlen, dir, dlen > 0 ? "/" : "", name);
    if (n < 0 || (size_t)n >= cap) {
        return UV_ENAMETOOLONG;
    }
    return access(out, X_OK) == 0 ? 0 : UV_ENOENT;
}

int swd_process_find_exe(const char *name, char *out, size_t cap) {
    if (name == NULL || name[0] == '\0') {
        return UV_ENOENT;
    }
    if (strchr(name, '/') != NULL) {
        int n = snprintf(out, cap, "%s", name);
        if (n < 0 || (size_t)n >= cap) {
            return UV_ENAMETOOLONG;
        }
        if (access(out, F_OK) != 0) {
            return UV_ENOENT;
        }
        return access(out, X_OK) == 0 ? 0 : UV_EACCES;
    }
    // Next to the running binary first: `swarmd run` in a build tree finds
    // the swarm-agent it was built with, not an older one on $PATH.
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len > 0) {
        self[len] = '\0';
        char *slash = strrchr(self, '/');
        size_t dlen = slash ? (size_t)(slash - self) : 0;
        char sub[PATH_MAX + 8];
        snprintf(sub, sizeof(sub), "%.*s/agents", (int)dlen, self);
        if (try_exe(self, dlen, name, out, cap) == 0 ||
            try_exe(sub, strlen(sub), name, out, cap) == 0) {
            return 0;
        }
    }
    const char *path = getenv("PATH");
    for (const char *d = path ? path : "/usr/local/bin:/usr/bin:/bin"; *d != '\0';) {
        size_t n = strcspn(d, ":");
        if (n > 0 && try_exe(d, n, name, out, cap) == 0) {
            return 0;
        }
        d += n + (d[n] == ':');
    }
    return UV_ENOENT;
}
