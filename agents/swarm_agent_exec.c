#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agents/swarm_agent_exec.h"
#include "proto/alloc.h"
#include "proto/buf.h"

// Enough of stderr's end to hold a `tokens_used=N` line and a short reason.
#define STDERR_TAIL 4096
// Longest piece of stderr quoted in an error message.
#define QUOTE_MAX 200

struct swd_exec {
    uv_loop_t *loop;
    uv_process_t proc;
    uv_pipe_t in, out, err;
    uv_write_t wreq;
    char *input; // our copy: the payload's message is gone once task.run returns
    size_t input_len;
    swd_buf_t output;
    char tail[STDERR_TAIL]; // the last bytes the child wrote to stderr
    size_t tail_len;
    swd_timer_t deadline;
    swd_timer_t kill_timer;
    int timeout_ms;
    int open_handles;
    bool exited, out_done, err_done, reported;
    bool timed_out, too_large, cancelled;
    bool term_sent, kill_sent;
    int64_t exit_status;
    int term_signal;
    swd_exec_done_cb cb;
    void *data;
    char code[32];
    char message[320];
};

// One read buffer for every pipe: the loop is single-threaded and each read
// callback consumes its bytes before the next allocation.
static char g_read_buf[65536];

static void swd_exec_maybe_free(swd_exec_t *x) {
    if (x->open_handles > 0 || !x->reported) {
        return;
    }
    free(x->input);
    swd_buf_close(&x->output);
    free(x);
}

static void swd_exec_on_close(uv_handle_t *h) {
    swd_exec_t *x = h->data;
    x->open_handles--;
    swd_exec_maybe_free(x);
}

static void swd_exec_close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) {
        uv_close(h, swd_exec_on_close);
    }
}

// Signals the whole process group, so the shell's own children go too (the
// child leads its group: UV_PROCESS_DETACHED). Right after the fork the child
// may not have called setsid() yet; then the pid alone is signalled.
static void swd_exec_signal(swd_exec_t *x, int sig) {
    if (x->exited) {
        return;
    }
    if (kill(-x->proc.pid, sig) != 0) {
        uv_process_kill(&x->proc, sig);
    }
}

static void swd_exec_on_kill_timer(swd_timer_t *t) {
    swd_exec_t *x = t->data;
    x->kill_sent = true;
    swd_exec_signal(x, SIGKILL);
}

// SIGTERM first, SIGKILL after a grace period for a child that ignores it.
static void swd_exec_terminate(swd_exec_t *x, bool force) {
    if (x->exited) {
        return;
    }
    if (force) {
        swd_timer_stop(&x->kill_timer);
        if (!x->kill_sent) {
            x->kill_sent = true;
            swd_exec_signal(x, SIGKILL);
        }
        return;
    }
    if (!x->term_sent) {
        x->term_sent = true;
        swd_exec_signal(x, SIGTERM);
        swd_timer_start(&x->kill_timer, SWD_EXEC_KILL_GRACE_MS);
    }
}

// The last non-empty line of stderr's tail, without its line end.
static const char *swd_exec_last_line(swd_exec_t *x, size_t *len) {
    size_t end = x->tail_len;
    while (end > 0 && (x->tail[end - 1] == '\n' || x->tail[end - 1] == '\r')) {
        end--;
    }
    size_t start = end;
    while (start > 0 && x->tail[start - 1] != '\n') {
        start--;
    }
    *len = end - start;
    return x->tail + start;
}

// `tokens_used=N` as the last stderr line reports N; anything else is 0.
static uint64_t swd_exec_tokens(swd_exec_t *x) {
    size_t len;
    const char *line = swd_exec_last_line(x, &len);
    static const char key[] = "tokens_used=";
    size_t klen = sizeof(key) - 1;
    if (len <= klen || len > klen + 20 || memcmp(line, key, klen) != 0) {
        return 0;
    }
    char digits[24];
    memcpy(digits, line + klen, len - klen);
    digits[len - klen] = '\0';
    if (digits[0] < '0' || digits[0] > '9') {
        return 0;
    }
    char *endp;
    errno = 0;
    unsigned long long n = strtoull(digits, &endp, 10);
    while (*endp == ' ' || *endp == '\t') {
        endp++;
    }
    return (errno != 0 || *endp != '\0') ? 0 : (uint64_t)n;
}

// Fills the error part of `r` for a command that did not succeed.
static void swd_exec_describe_failure(swd_exec_t *x, swd_exec_result_t *r) {
    size_t qlen;
    const char *quote = swd_exec_last_line(x, &qlen);
    int q = (int)(qlen > QUOTE_MAX ? QUOTE_MAX : qlen);
    r->retryable = true;
    if (x->timed_out) {
        snprintf(x->code, sizeof(x->code), "timeout");
        snprintf(x->message, sizeof(x->message), "command timed out after %d ms", x->timeout_ms);
    } else if (x->too_large) {
        snprintf(x->code, sizeof(x->code), "too_large");
        snprintf(x->message, sizeof(x->message), "command output exceeds %zu bytes",
                 SWD_EXEC_MAX_OUTPUT);
        r->retryable = false;
    } else if (x->term_signal != 0) {
        snprintf(x->code, sizeof(x->code), "signal_%d", x->term_signal);
        snprintf(x->message, sizeof(x->message), "command killed by signal %d%s%.*s",
                 x->term_signal, q > 0 ? ": " : "", q, quote);
    } else {
        snprintf(x->code, sizeof(x->code), "exit_%" PRId64, x->exit_status);
        snprintf(x->message, sizeof(x->message), "command exited with status %" PRId64 "%s%.*s",
                 x->exit_status, q > 0 ? ": " : "", q, quote);
    }
    r->code = x->code;
    r->message = x->message;
}

// Reports once the child is reaped and both output pipes are finished.
static void swd_exec_maybe_report(swd_exec_t *x) {
    if (x->reported || !x->exited || !x->out_done || !x->err_done) {
        return;
    }
    x->reported = true;
    swd_timer_stop(&x->deadline);
    swd_timer_stop(&x->kill_timer);
    swd_exec_result_t r = {.cancelled = x->cancelled};
    if (!x->cancelled) {
        if (!x->timed_out && !x->too_large && x->term_signal == 0 && x->exit_status == 0) {
            r.ok = true;
            r.output = x->output.data != NULL ? x->output.data : "";
            r.output_len = x->output.len;
            r.tokens_used = swd_exec_tokens(x);
        } else {
            swd_exec_describe_failure(x, &r);
        }
    }
    x->cb(x, &r, x->data);
    swd_exec_maybe_free(x);
}

static void swd_exec_on_exit(uv_process_t *p, int64_t exit_status, int term_signal) {
    swd_exec_t *x = p->data;
    // Whatever the shell left running in its group would hold our pipes open
    // and outlive the task: a task's processes end with the task.
    kill(-p->pid, SIGKILL);
    x->exited = true;
    x->exit_status = exit_status;
    x->term_signal = term_signal;
    swd_exec_close_handle((uv_handle_t *)p);
    swd_exec_maybe_report(x);
}

static void swd_exec_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    buf->base = g_read_buf;
    buf->len = sizeof(g_read_buf);
}

static void swd_exec_on_stdout(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    swd_exec_t *x = s->data;
    if (nread < 0) {
        x->out_done = true;
        swd_exec_close_handle((uv_handle_t *)s);
        swd_exec_maybe_report(x);
        return;
    }
    if (x->too_large) {
        return; // keep draining so the child is never stuck on a full pipe
    }
    if (x->output.len + (size_t)nread > SWD_EXEC_MAX_OUTPUT) {
        x->too_large = true;
        swd_buf_close(&x->output);
        swd_exec_terminate(x, false);
        return;
    }
    swd_buf_append(&x->output, buf->base, (size_t)nread);
}

static void swd_exec_on_stderr(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    swd_exec_t *x = s->data;
    if (nread < 0) {
        x->err_done = true;
        swd_exec_close_handle((uv_handle_t *)s);
        swd_exec_maybe_report(x);
        return;
    }
    size_t n = (size_t)nread;
    if (n >= sizeof(x->tail)) {
        memcpy(x->tail, buf->base + n - sizeof(x->tail), sizeof(x->tail));
        x->tail_len = sizeof(x->tail);
        return;
    }
    if (x->tail_len + n > sizeof(x->tail)) {
        size_t drop = x->tail_len + n - sizeof(x->tail);
        memmove(x->tail, x->tail + drop, x->tail_len - drop);
        x->tail_len -= drop;
    }
    memcpy(x->tail + x->tail_len, buf->base, n);
    x->tail_len += n;
}

// Closing stdin after the payload is how the child learns it has it all. A
// child that exits without reading makes the write fail (EPIPE): harmless.
static void swd_exec_on_stdin_written(uv_write_t *req, int status) {
    swd_exec_t *x = req->data;
    swd_exec_close_handle((uv_handle_t *)&x->in);
}

static void swd_exec_on_deadline(swd_timer_t *t) {
    swd_exec_t *x = t->data;
    x->timed_out = true;
    swd_exec_terminate(x, false);
}

// The parent's environment plus the task's three variables (replacing any
// inherited ones). `own` receives the three strings to free after spawning.
static char **swd_exec_env(const swd_exec_spec_t *spec, char *own[3]) {
    extern char **environ;
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    char **env = swd_xcalloc(n + 4, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = environ[i];
        if (strncmp(e, "SWARM_TASK_ID=", 14) != 0 && strncmp(e, "SWARM_TASK_TYPE=", 16) != 0 &&
            strncmp(e, "SWARM_ATTEMPT=", 14) != 0) {
            env[k++] = environ[i];
        }
    }
    own[0] = swd_xasprintf("SWARM_TASK_ID=%s", spec->task_id);
    own[1] = swd_xasprintf("SWARM_TASK_TYPE=%s", spec->type);
    own[2] = swd_xasprintf("SWARM_ATTEMPT=%" PRIu64, spec->attempt);
    env[k++] = own[0];
    env[k++] = own[1];
    env[k++] = own[2];
    return env;
}

static int swd_exec_spawn(swd_exec_t *x, const swd_exec_spec_t *spec) {
    char *own[3];
    char **env = swd_exec_env(spec, own);
    char *args[] = {"sh", "-c", (char *)spec->command, NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&x->in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&x->out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&x->err},
    };
    uv_process_options_t o = {
        .exit_cb = swd_exec_on_exit,
        .file = "/bin/sh",
        .args = args,
        .env = env,
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = 3,
        .stdio = stdio,
    };
    // uv_spawn forks before it returns, so the environment can go now.
    int r = uv_spawn(x->loop, &x->proc, &o);
    x->proc.data = x;
    for (int i = 0; i < 3; i++) {
        free(own[i]);
    }
    free(env);
    return r;
}

// Feeds stdin and starts reading; a pipe that cannot be used counts as done.
static void swd_exec_start_io(swd_exec_t *x) {
    if (x->input_len == 0) {
        swd_exec_close_handle((uv_handle_t *)&x->in);
    } else {
        uv_buf_t b = uv_buf_init(x->input, (unsigned)x->input_len);
        x->wreq.data = x;
        if (uv_write(&x->wreq, (uv_stream_t *)&x->in, &b, 1, swd_exec_on_stdin_written) != 0) {
            swd_exec_close_handle((uv_handle_t *)&x->in);
        }
    }
    if (uv_read_start((uv_stream_t *)&x->out, swd_exec_on_alloc, swd_exec_on_stdout) != 0) {
        x->out_done = true;
        swd_exec_close_handle((uv_handle_t *)&x->out);
    }
    if (uv_read_start((uv_stream_t *)&x->err, swd_exec_on_alloc, swd_exec_on_stderr) != 0) {
        x->err_done = true;
        swd_exec_close_handle((uv_handle_t *)&x->err);
    }
}

int swd_exec_start(uv_loop_t *loop, swd_clock_t *clock, const swd_exec_spec_t *spec,
                   swd_exec_done_cb cb, void *data, swd_exec_t **out) {
    swd_exec_t *x = swd_xcalloc(1, sizeof(*x));
    x->loop = loop;
    x->cb = cb;
    x->data = data;
    x->timeout_ms = (int)(spec->timeout_ms > INT32_MAX ? INT32_MAX : spec->timeout_ms);
    swd_buf_init(&x->output);
    swd_timer_init(clock, &x->deadline, swd_exec_on_deadline, x);
    swd_timer_init(clock, &x->kill_timer, swd_exec_on_kill_timer, x);
    uv_pipe_t *pipes[3] = {&x->in, &x->out, &x->err};
    for (int i = 0; i < 3; i++) {
        uv_pipe_init(loop, pipes[i], 0);
        pipes[i]->data = x;
    }
    x->open_handles = 4; // three pipes and the process
    int r = swd_exec_spawn(x, spec);
    if (r != 0) {
        // uv_spawn initialises the process handle even when it fails, so it
        // is closed like the pipes; the memory goes with the last one.
        x->reported = true;
        swd_exec_close_handle((uv_handle_t *)&x->proc);
        for (int i = 0; i < 3; i++) {
            swd_exec_close_handle((uv_handle_t *)pipes[i]);
        }
        return r;
    }
    if (spec->input_len > 0) {
        x->input = swd_xmalloc(spec->input_len);
        memcpy(x->input, spec->input, spec->input_len);
        x->input_len = spec->input_len;
    }
    swd_exec_start_io(x);
    if (spec->timeout_ms > 0) {
        swd_timer_start(&x->deadline, spec->timeout_ms);
    }
    *out = x;
    return 0;
}

void swd_exec_cancel(swd_exec_t *x, bool force) {
    if (x->reported) {
        return;
    }
    x->cancelled = true;
    swd_timer_stop(&x->deadline);
    // The output no longer matters, so the pipes go now; only the exit is
    // awaited, for the callback and so that no zombie is left behind.
    x->out_done = true;
    x->err_done = true;
    swd_exec_close_handle((uv_handle_t *)&x->in);
    swd_exec_close_handle((uv_handle_t *)&x->out);
    swd_exec_close_handle((uv_handle_t *)&x->err);
    swd_exec_terminate(x, force);
    swd_exec_maybe_report(x);
}
