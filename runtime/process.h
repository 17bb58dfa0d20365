// Child processes: the one wrapper around uv_spawn (CONVENTIONS.md: wrap
// libuv once, in runtime/). A process pool starts its agents through it.
//
//   swd_process_spawn ─▶ child: stdin/stdout are the caller's pipes (an RPC
//                        connection), stderr is read here line by line into
//                        the log under the process's name
//   child exits ─▶ on_exit(status, signal) once ─▶ handles closed
//   swd_process_stop: SIGTERM now, SIGKILL after the grace if still alive
//   swd_process_release: the owner is done; a live child is stopped the same
//                        way and reaped, and the memory goes when it exited
//
// The process handle stays open until the child has exited and been reaped
// (libuv reaps on SIGCHLD), so no zombie is left and the loop keeps running
// while a released child is still on its way out.
#ifndef SWD_RUNTIME_PROCESS_H
#define SWD_RUNTIME_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct swd_process swd_process_t;

/// The child exited: `exit_status` is its status when it exited, and
/// `term_signal` the signal that killed it (0 when none). Runs once, and
/// never after swd_process_release().
typedef void (*swd_process_exit_cb)(swd_process_t *p, int64_t exit_status, int term_signal,
                                    void *data);

typedef struct swd_process_opts {
    const char *file;  ///< the executable (a path; see swd_process_find_exe)
    char *const *argv; ///< NULL-terminated, borrowed for the call
    char *const *env;  ///< NULL-terminated "K=V" strings; NULL: inherit ours
    uv_stream_t
        *stdin_pipe; ///< an initialised, unopened uv_pipe_t the child reads; NULL: /dev/null
    uv_stream_t
        *stdout_pipe; ///< an initialised, unopened uv_pipe_t the child writes; NULL: /dev/null
    const char *name; ///< names the child's stderr lines in the log (copied)
    /// A new session: a Ctrl-C on the terminal reaches swarmd only, which
    /// then decides what happens to its children.
    bool detach;
    swd_process_exit_cb on_exit; ///< may be NULL
    void *data;
} swd_process_opts_t;

/// Starts a child. On success `*out` is owned by the caller until
/// swd_process_release(). On failure (a negative libuv code: the file does not
/// exist, is not executable, ...) nothing is left behind and `on_exit` never
/// runs; the caller still owns (and must close) the pipes it passed.
int swd_process_spawn(uv_loop_t *loop, const swd_process_opts_t *o, swd_process_t **out);

int swd_process_pid(const swd_process_t *p);
bool swd_process_exited(const swd_process_t *p);

/// Sends `signum` to a live child: 0, or a negative code (UV_ESRCH once exited).
int swd_process_signal(swd_process_t *p, int signum);

/// Asks the child to stop: SIGTERM now, SIGKILL once `grace_ms` passed and
/// it is still alive. A no-op once it exited.
void swd_process_stop(swd_process_t *p, int64_t grace_ms);

/// The owner lets go of `p` (NULL is a no-op): no callback runs after this.
/// A live child is stopped as by swd_process_stop(p, grace_ms) and reaped;
/// the memory is freed once it exited and every handle closed. Its stderr
/// lines still go to the log, at debug level (its goodbye is not news).
void swd_process_release(swd_process_t *p, int64_t grace_ms);

/// SIGKILLs every live child started here (an operator's second Ctrl-C,
/// just before the process exits at once).
void swd_process_kill_all(void);

/// Finds an executable named `name`: a name with a slash is taken as it is;
/// otherwise it is looked for next to the running binary, in its `agents/`
/// subdirectory (the build tree's layout), then in $PATH. The path goes to
/// `out`. 0, or UV_ENOENT / UV_EACCES / UV_ENAMETOOLONG.
int swd_process_find_exe(const char *name, char *out, size_t cap);

#endif
