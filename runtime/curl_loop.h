// libcurl's multi interface driven by the libuv loop: no threads of ours,
// no blocking call, every transfer advanced by socket readiness and one
// timer (the pattern of libcurl's multi-uv example; CONVENTIONS.md keeps the
// libuv wrapping here, in runtime/).
//
//   curl ──socket cb──▶ one uv_poll_t per socket, started for IN and/or OUT
//        ──timer cb───▶ one swd_timer_t (the clock's), or for "at once" a
//                       uv_idle_t (the next idle phase, then a non-blocking poll)
//   poll event / timer ─▶ curl_multi_socket_action ─▶ curl_multi_info_read
//                                                   ─▶ done(easy, result)
//
// The multi handle keeps a connection cache, so consecutive transfers to the
// same host reuse a kept-alive connection (or one HTTP/2 connection).
//
// A poll handle lives in a small record that is freed in the handle's close
// callback; the loop object itself is freed once its last poll handle has
// closed, so swd_curl_loop_free() may return before the memory goes (the
// libuv loop must run on for the closes, as it does at daemon shutdown).
#ifndef SWD_RUNTIME_CURL_LOOP_H
#define SWD_RUNTIME_CURL_LOOP_H

#include <curl/curl.h>
#include <uv.h>

#include "runtime/clock.h"

typedef struct swd_curl_loop swd_curl_loop_t;

/// A transfer ended with `result` (CURLE_OK: an HTTP response arrived,
/// whatever its status). The easy handle has been removed from the multi
/// handle and is the caller's again; `data` is swd_curl_loop_new()'s. The
/// callback may add, remove and free transfers, and may free the loop.
typedef void (*swd_curl_done_cb)(CURL *easy, CURLcode result, void *data);

/// A multi handle on `loop`, with its timer on `clock` (a real clock on the
/// same loop). Aborts when libcurl cannot make a multi handle (out of memory).
swd_curl_loop_t *swd_curl_loop_new(uv_loop_t *loop, swd_clock_t *clock, swd_curl_done_cb done,
                                   void *data);
/// The multi handle, for options (CURLMOPT_MAXCONNECTS, ...). Borrowed.
CURLM *swd_curl_loop_multi(swd_curl_loop_t *cl);
/// Starts a configured easy handle (still owned by the caller, who must not
/// free it before it is done or removed). 0, or SWD_ESTATE when the loop is
/// closing, or SWD_EOVERFLOW when libcurl refused the handle; on an error
/// `done` never runs for it.
int swd_curl_loop_add(swd_curl_loop_t *cl, CURL *easy);
/// Stops a transfer that has not finished: `done` does not run for it. A
/// handle that is not in the loop is ignored.
void swd_curl_loop_remove(swd_curl_loop_t *cl, CURL *easy);
/// Transfers added and not yet done or removed.
unsigned swd_curl_loop_active(const swd_curl_loop_t *cl);
/// Stops every transfer (no `done` calls), closes every connection and poll
/// handle, and frees the loop once they are closed. Safe inside `done`.
/// NULL is a no-op.
void swd_curl_loop_free(swd_curl_loop_t *cl);

#endif
