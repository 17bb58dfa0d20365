#!/usr/bin/python3
"""Review tests: each one demonstrates a suspected core bug (see the review
report). They fail while the bug is there.

    SWD_BUILD_DIR=build /usr/bin/python3 tests/integration/test_review.py [-k NAME]
"""

import os
import socket
import sys
import time

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import msgpack  # noqa: E402

from swarmtest import (  # noqa: E402
    Client, ConnectionClosed, Daemon, RpcError, check, eq, main, note, test, wait_until,
)


def alive(d, what):
    """The daemon still runs and answers (a crash shows here)."""
    rc = d.proc.poll()
    check(rc is None, "swarmd died (%s) with status %s; stderr tail:\n%s"
          % (what, rc, "\n".join(d.stderr_text().splitlines()[-30:])))
    c = d.client()
    c.call("swarm.stats", timeout=10)
    c.close()


# ---------------------------------------------------------------------------
# rpc_server.c: a reply to a connection whose session is gone


@test
def wait_reply_after_client_left():
    # task.wait holds a reference to the connection; the client hangs up;
    # the wait then times out and replies on the closed connection.
    # swd_rpc_conn_reply_begin() calls on_reply() with the session that
    # session_closed() already freed (heap-use-after-free).
    with Daemon() as d:
        for _ in range(20):
            c = d.client()
            tid = c.submit("nobody-runs-this")["task_id"]
            c.request("task.wait", {"task_id": tid, "timeout_ms": 300})
            c.call("swarm.stats")  # the wait is registered
            c.close()
        time.sleep(0.8)  # let the 20 waits time out (nothing to poll: the bug is silent)
        alive(d, "after task.wait replies to departed clients")


# ---------------------------------------------------------------------------
# api.c: task.submit_batch begins its reply before the submits publish events


@test
def batch_reply_with_own_task_events():
    # A connection subscribed to `task` submits a batch: every submit
    # publishes `queued` on the bus while the reply is half packed in the
    # same connection's buffer, so the event notifications land inside the
    # reply (and send() may even write the half reply out).
    with Daemon() as d:
        c = d.client()
        c.subscribe(["task"])
        msgid = c.request("task.submit_batch",
                          {"tasks": [{"type": "x", "payload": i} for i in range(3)]})
        try:
            err, res = c.response_raw(msgid, timeout=10)
        except AssertionError as e:  # the harness: "swarmd sent bytes that are not msgpack"
            raise AssertionError("batch reply corrupted by the events: %s" % e)
        check(err is None, "error %r" % (err,))
        check(isinstance(res, dict) and len(res.get("task_ids", [])) == 3,
              "batch result %r; stray messages: %r" % (res, c.garbage[:5]))
        eq(c.garbage, [], "messages that are not msgpack-RPC")


# ---------------------------------------------------------------------------
# api.c: after_keys of earlier batch elements assume one new seq per element


@test
def batch_after_keys_with_duplicate_element():
    with Daemon() as d:
        c = d.client()
        c.submit("x", key="K0")  # exists before the batch
        r = c.call("task.submit_batch", {"tasks": [
            {"type": "x", "key": "K0"},                # duplicate: creates no task
            {"type": "x", "key": "A"},                 # the new task A
            {"type": "x", "after_keys": ["A"]},        # must wait on A
        ]})
        ids = r["task_ids"]
        t2 = c.get(ids[2])
        eq(t2["after"], [ids[1]], "after of the element that names key A (ids %r)" % ids)


# ---------------------------------------------------------------------------
# rpc_conn.c: the write-bound cut-off logs while the peer is still open


@test(timeout=180)
def log_subscriber_that_stops_reading():
    # A `log` subscriber that stops reading passes the write bound; the
    # cut-off logs a warning before it closes the connection, the warning is
    # published to the same subscriber, whose send() passes the bound again
    # and logs again: unbounded recursion.
    env = {"SWARMD_LIMITS_MAX_MESSAGE_BYTES": "65536",
           "SWARMD_LIMITS_MAX_WRITE_BUFFER_BYTES": "65536"}
    with Daemon(args=["--log-level", "debug"], env=env) as d:
        sub = socket.socket()
        sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sub.connect(d.rpc_addr)
        sub.sendall(msgpack.packb([0, 1, "subscribe", [{"topics": ["log"]}]]))
        time.sleep(0.3)
        c = d.client()
        # Debug records ("task submitted") for every task; never read by `sub`.
        for i in range(400):
            try:
                c.call("task.submit_batch",
                       {"tasks": [{"type": "x", "payload": "p" * 200} for _ in range(100)]})
            except (ConnectionClosed, OSError):
                break
            if d.proc.poll() is not None:
                break
        alive(d, "after a log subscriber stopped reading")
        sub.close()


# ---------------------------------------------------------------------------
# rpc_agent.c: a second agent.deregister is never answered


@test
def deregister_twice_both_answered():
    with Daemon() as d:
        fa = d.client()
        fa.call("agent.register", {"name": "fake", "capabilities": ["x"]})
        c = d.client()
        tid = c.submit("x")["task_id"]
        run = fa.next_request(10, method="task.run")
        m1 = fa.request("agent.deregister", {})
        m2 = fa.request("agent.deregister", {})
        fa.reply(run.msgid, result={"output": "ok", "tokens_used": 1})
        eq(c.wait(tid, 10)["state"], "succeeded", "task")
        fa.response_raw(m1, timeout=5)
        try:
            fa.response_raw(m2, timeout=3)
        except AssertionError:
            raise AssertionError("the second agent.deregister request got no answer")


# ---------------------------------------------------------------------------
# rpc_agent.c: a degraded agent that speaks again stays out until dead_at


@test
def degraded_agent_recovers_when_it_speaks():
    env = {"SWARMD_AGENTS_HEARTBEAT_MS": "300", "SWARMD_AGENTS_DEGRADED_AFTER": "2",
           "SWARMD_AGENTS_DEAD_AFTER": "30"}  # degraded at 0.6 s silent, dead at 9 s
    with Daemon(env=env) as d:
        fa = d.client()
        aid = fa.call("agent.register", {"name": "quiet", "capabilities": ["x"]})["agent_id"]
        c = d.client()

        def reason():
            for a in c.agents():
                if a["agent_id"] == aid:
                    return a.get("reason")
            return None

        wait_until(lambda: reason() == "missed_heartbeats", 5, 0.05, "degraded")
        fa.call("agent.heartbeat", {"inflight": 0})
        t0 = time.monotonic()
        tid = c.submit("x")["task_id"]
        # The agent is talking now; it should get the task within a couple
        # of heartbeat intervals, not when the lease's dead_at check runs.
        try:
            while True:
                fa.call("agent.heartbeat", {"inflight": 0})
                if fa.requests:
                    break
                if time.monotonic() - t0 > 2.0:
                    raise AssertionError(
                        "agent heartbeating again for %.1f s is still degraded (reason %r, "
                        "task %s)" % (time.monotonic() - t0, reason(), c.get(tid)["state"]))
                fa.pump(0.1)
        finally:
            note("waited %.2f s" % (time.monotonic() - t0))


# ---------------------------------------------------------------------------
# rpc_agent.c: agent.register leaks its capabilities on a bad max_concurrency


@test
def register_bad_concurrency_no_leak():
    # Only an ASan/valgrind build shows it: LeakSanitizer fails the exit.
    with Daemon() as d:
        fa = d.client()
        for _ in range(5):
            try:
                fa.call("agent.register", {"name": "bad", "capabilities": ["a", "b"],
                                           "max_concurrency": 0})
            except RpcError as e:
                eq(e.code, "invalid_params", "code")
    # Daemon.stop() asserts exit status 0 (LeakSanitizer makes it non-zero).


# ---------------------------------------------------------------------------
# rpc_server.c: hello as a notification with a bad token gets a response


@test
def hello_notification_gets_no_reply():
    with Daemon(env={"SWARMD_TOKEN": "s3cret"}) as d:
        c = d.client()
        c.notify("swarm.hello", {"token": "wrong"})
        c.call("swarm.hello", {"token": "s3cret"}, timeout=10)  # msgid 1
        c.pump(0.3)
        check(0 not in c.responses,
              "a notification was answered: response %r" % (c.responses.get(0),))


@test
def hello_token_with_nul_is_refused():
    # hello() compares swd_xstrndup(token, tlen), which stops at a NUL: any
    # string that starts with the token and a NUL passes.
    with Daemon(env={"SWARMD_TOKEN": "s3cret"}) as d:
        c = d.client()
        c.expect_error("unauthorized", "swarm.hello", {"token": "s3cret\x00garbage"})


# ---------------------------------------------------------------------------
# scheduler.c: a failing dependency chain is released by recursion


@test(timeout=600)
def long_dependency_chain_cancelled():
    # finish() -> release_dependents() -> finish() ... one C stack frame pair
    # per task of the chain: a long pipeline whose head is cancelled
    # overflows the stack.
    n = 100000
    batch = 10000
    with Daemon(env={"SWARMD_SCHEDULER_MAX_BATCH": str(batch)}) as d:
        c = d.client()
        head = c.submit("x", key="k0")["task_id"]
        for start in range(1, n, batch):
            tasks = [{"type": "x", "key": "k%d" % i, "after_keys": ["k%d" % (i - 1)]}
                     for i in range(start, min(n, start + batch))]
            c.call("task.submit_batch", {"tasks": tasks}, timeout=120)
        try:
            r = c.call("task.cancel", {"task_id": head}, timeout=120)
            eq(r["cancelled"], True, "cancelled")
        except ConnectionClosed:
            pass
        alive(d, "after cancelling the head of a %d-task chain" % n)


# ---------------------------------------------------------------------------
# api.c: a batch element's unknown `after` is not_found, §2.1 says invalid_params


@test
def batch_unknown_after_is_invalid_params():
    # §2.1: "a bad element is invalid_params with data: {index: K} ...
    # (whatever the element's fault, an unknown after too)". test_core's
    # batch_all_or_none asserts not_found, against the contract.
    with Daemon() as d:
        c = d.client()
        e = c.expect_error("invalid_params", "task.submit_batch",
                           {"tasks": [{"type": "x"}, {"type": "x", "after": ["t-999999"]}]})
        eq((e.data or {}).get("index"), 1, "data.index")


# ---------------------------------------------------------------------------
# scheduler.c: during the drain a lost attempt fails the task outright


@test
def drain_agent_loss_keeps_task_retryable():
    # retry_or_fail() fails the task when s->draining, though it has retries
    # left: an acknowledged task ends `failed` (agent_lost) instead of being
    # left queued and logged as abandoned at exit (§2.1 Shutdown).
    with Daemon(env={"SWARMD_SCHEDULER_SHUTDOWN_GRACE_MS": "5000"}, check_exit=False) as d:
        fa = d.client()
        fa.call("agent.register", {"name": "fake", "capabilities": ["x"]})
        fb = d.client()  # keeps a second task running, so the drain goes on
        fb.call("agent.register", {"name": "other", "capabilities": ["y"]})
        c = d.client()
        tid = c.submit("x", max_retries=3)["task_id"]
        c.submit("y")
        fa.next_request(10, method="task.run")
        fb.next_request(10, method="task.run")
        d.signal(15)
        wait_until(lambda: d.http_get("/readyz")[0] == 503, 5, 0.05, "draining")
        fa.close()  # the agent goes away during the drain
        t = wait_until(lambda: (lambda x: x if x["state"] != "running" else None)(c.get(tid)),
                       5, 0.05, "attempt ended")
        eq((t["state"], (t.get("error") or {}).get("code")), ("queued", "agent_lost"),
           "task with 3 retries left after its agent was lost during the drain")


if __name__ == "__main__":
    main()
