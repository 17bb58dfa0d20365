#!/usr/bin/python3
"""Integration test harness for swarmd: real binaries on loopback.

Stdlib plus msgpack only (Debian's python3-msgpack; run with /usr/bin/python3).

    from swarmtest import *

    @test
    def hello():
        with Daemon() as d:
            r = d.client().call("swarm.hello", {"client": "t"})
            eq(r["api"], 1, "api")

    if __name__ == "__main__":
        main()

Pieces:
  * binary(name)        paths of swarmd / swarm-agent / swarmctl under
                        $SWD_BUILD_DIR (default: <repo>/build).
  * Daemon              context manager: `swarmd serve` on port 0, waits for
                        the ready file, stderr captured to a file; on exit
                        closes its clients, SIGKILLs its agents, SIGTERMs the
                        daemon and (check_exit=True) asserts status 0.
  * Agent               one `swarm-agent --connect ADDR [--sim] ...` process.
  * Client              msgpack-RPC over TCP: call / pipeline / raw bytes,
                        event and notification queues, server->client
                        requests (a test can play an agent).
  * wait_until          bounded polling with a deadline; never fixed sleeps.
  * test / main         a TAP runner: `1..N`, `ok K - name`, tracebacks as
                        `# ` comments, exit 1 on any failure; `-k NAME`.

Every process started here is killed when its test ends, at interpreter
exit, on SIGTERM/SIGINT of the runner, and (PR_SET_PDEATHSIG) when the runner
dies by SIGKILL.
"""

import atexit
import collections
import ctypes
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import msgpack

__all__ = [
    "HarnessError", "RpcError", "ConnectionClosed", "WaitTimeout", "Skip",
    "binary", "build_dir", "Daemon", "Agent", "Client", "Request",
    "wait_until", "wait_terminal", "count_task_events", "free_port",
    "run_swarmd", "run_swarmctl", "parse_addr", "check", "eq", "approx",
    "test", "main", "note", "TERMINAL",
]

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


# --------------------------------------------------------------------------
# Errors and small assertion helpers


class HarnessError(Exception):
    """The harness could not set something up (binary missing, no ready file)."""


class WaitTimeout(AssertionError):
    """A bounded wait ran out."""


class ConnectionClosed(Exception):
    """The peer closed the connection while we waited for something."""


class Skip(Exception):
    """Raise inside a test to report `ok K - name # SKIP reason`."""


class RpcError(Exception):
    """An error response: `code`, `message`, `data` (None when absent)."""

    def __init__(self, code, message="", data=None, msgid=None):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.data = data
        self.msgid = msgid

    @classmethod
    def from_wire(cls, err, msgid=None):
        if isinstance(err, dict):
            return cls(err.get("code"), err.get("message", ""), err.get("data"), msgid)
        return cls("<malformed error>", repr(err), None, msgid)


def check(cond, msg="check failed"):
    """assert that survives python -O."""
    if not cond:
        raise AssertionError(msg)


def eq(actual, expected, what="value"):
    if actual != expected:
        raise AssertionError("%s: expected %r, got %r" % (what, expected, actual))


def approx(actual, expected, what="value", tol=1e-9):
    if not isinstance(actual, (int, float)) or isinstance(actual, bool) \
            or abs(actual - expected) > tol:
        raise AssertionError("%s: expected %r (±%g), got %r" % (what, expected, tol, actual))


def note(msg):
    """A TAP diagnostic line (shown in the test log, ignored by parsers)."""
    for line in str(msg).splitlines() or [""]:
        sys.stdout.write("# %s\n" % line)
    sys.stdout.flush()


def wait_until(pred, timeout=10.0, interval=0.02, what=None):
    """Calls pred() until it returns something truthy and returns that.

    Raises WaitTimeout after `timeout` seconds, naming `what` and pred's last
    value. Exceptions from pred propagate (a wait must not hide an error)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeout("timed out after %.1f s waiting for %s; last value: %.2000r"
                              % (timeout, what or getattr(pred, "__name__", "condition"), last))
        time.sleep(interval)


# --------------------------------------------------------------------------
# Binaries and processes

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))

# name -> (environment override, places under the build dir, first found wins)
_BINARIES = {
    "swarmd": ("SWD_SWARMD", ["runtime/swarmd", "swarmd"]),
    "swarm-agent": ("SWD_SWARM_AGENT", ["agents/swarm-agent", "swarm-agent"]),
    "swarmctl": ("SWD_SWARMCTL", ["client/swarmctl", "swarmctl"]),
}


def build_dir():
    d = os.environ.get("SWD_BUILD_DIR") or os.path.join(_REPO, "build")
    return os.path.abspath(d)


def _executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def binary(name):
    """Absolute path of a built binary: $SWD_SWARMD / $SWD_SWARM_AGENT /
    $SWD_SWARMCTL when set (meson passes the targets' paths), else the first
    of the known places under $SWD_BUILD_DIR; HarnessError when missing."""
    var, rels = _BINARIES[name]
    tried = []
    if os.environ.get(var):
        tried.append(os.environ[var])
    tried += [os.path.join(build_dir(), r) for r in rels]
    for path in tried:
        if _executable(path):
            return os.path.abspath(path)
    raise HarnessError("%s not found (tried %s; set SWD_BUILD_DIR to the meson build dir "
                       "and build it)" % (name, ", ".join(tried)))


def parse_addr(addr):
    """"HOST:PORT" or "[V6]:PORT" -> (host, port)."""
    host, _, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def free_port():
    """A port that was free a moment ago (for tests that need a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env(env=None, defaults=None):
    """os.environ without SWARMD_* (a developer's shell must not leak into
    tests), then `defaults`, then `env`; a value of None removes the key."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("SWARMD_")}
    for layer in (defaults or {}, env or {}):
        for k, v in layer.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = str(v)
    return out


try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None
_PR_SET_PDEATHSIG = 1


def _preexec_factory():
    parent = os.getpid()

    def preexec():
        # The child dies with the runner even when the runner is SIGKILLed
        # (meson's timeout); a parent that died before prctl is caught too.
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


_live_procs = []      # every Popen started, pruned lazily
_test_daemons = []    # Daemons started by the current test (for diagnostics)
_test_agents = []     # Agents started by the current test
_test_clients = []    # Clients opened by the current test


def _spawn(argv, env, stdout, stderr, stdin=subprocess.DEVNULL):
    p = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                         preexec_fn=_preexec_factory(), close_fds=True)
    _live_procs.append(p)
    return p


def _kill_proc(p, sig=signal.SIGKILL, timeout=10.0):
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _kill_everything():
    for p in list(_live_procs):
        try:
            _kill_proc(p, signal.SIGKILL, 5.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
    _live_procs.clear()


atexit.register(_kill_everything)


def _tail(text, lines=40, limit=65536):
    text = text[-limit:]
    return "\n".join(text.splitlines()[-lines:])


def _read_file(path, limit=1 << 20):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_swarmd(args, env=None, timeout=30.0):
    """Runs `swarmd ARGS` to completion: CompletedProcess with text output."""
    return subprocess.run([binary("swarmd")] + list(args), env=_child_env(env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=timeout, preexec_fn=_preexec_factory())


def run_swarmctl(args, env=None, timeout=30.0):
    """Runs `swarmctl ARGS` to completion: CompletedProcess with text output."""
    return subprocess.run([binary("swarmctl")] + list(args), env=_child_env(env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=timeout, preexec_fn=_preexec_factory())


# --------------------------------------------------------------------------
# msgpack-RPC client


class Request:
    """A request the server sent us ([0, msgid, method, params])."""

    def __init__(self, msgid, method, params):
        self.msgid = msgid
        self.method = method
        self.raw_params = params
        # params is an array holding one map of named parameters.
        if isinstance(params, list) and params and isinstance(params[0], dict):
            self.params = params[0]
        else:
            self.params = params

    def __repr__(self):
        return "Request(%r, %r, %.300r)" % (self.msgid, self.method, self.params)


_MISSING = object()


def _method_name(m):
    return m.decode("utf-8", "replace") if isinstance(m, (bytes, bytearray)) else m


class Client:
    """One msgpack-RPC connection to swarmd.

    Everything read from the socket is sorted as it arrives: responses by
    msgid, `event` notifications (flattened) into `events`, other
    notifications into `notifications`, server requests into `requests`,
    anything else into `garbage`. Any blocking read is bounded."""

    def __init__(self, addr, timeout=30.0, first_msgid=1):
        if isinstance(addr, str):
            addr = parse_addr(addr)
        self.addr = addr
        self.timeout = timeout
        self.sock = socket.create_connection(addr, timeout=10.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)  # bounds sendall
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                         unicode_errors="surrogateescape",
                                         max_buffer_size=256 << 20)
        self._next_msgid = first_msgid
        self.responses = {}   # msgid -> (error, result)
        self.events = collections.deque()
        self.notifications = collections.deque()
        self.requests = collections.deque()
        self.garbage = []
        self.skipped_requests = []
        self.closed = False       # the peer closed (EOF or reset)
        self._closed_local = False
        _test_clients.append(self)

    # -- lifecycle

    def close(self):
        if not self._closed_local:
            self._closed_local = True
            try:
                self.sock.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- writing

    def send_raw(self, data):
        """Sends bytes as they are."""
        self.sock.sendall(data)

    def send(self, obj):
        """Packs any object and sends it."""
        self.send_raw(msgpack.packb(obj, use_bin_type=True))

    def new_msgid(self):
        m = self._next_msgid
        self._next_msgid = (self._next_msgid + 1) & 0xFFFFFFFF
        return m

    def request(self, method, params=None, raw_params=_MISSING, msgid=None):
        """Sends a request and returns its msgid. `params` is the map of
        named parameters (wrapped in the one-element array); `raw_params`
        replaces the whole params element verbatim."""
        if msgid is None:
            msgid = self.new_msgid()
        if raw_params is _MISSING:
            raw_params = [params if params is not None else {}]
        self.send([0, msgid, method, raw_params])
        return msgid

    def notify(self, method, params=None):
        self.send([2, method, [params if params is not None else {}]])

    def reply(self, msgid, result=None, error=None):
        """Answers a server request ([1, msgid, error, result])."""
        self.send([1, msgid, error, result])

    # -- reading

    def _dispatch(self, msg):
        if not isinstance(msg, list) or not msg:
            self.garbage.append(msg)
            return
        kind = msg[0]
        if kind == 1 and len(msg) == 4:
            self.responses[msg[1]] = (msg[2], msg[3])
        elif kind == 2 and len(msg) == 3:
            method = _method_name(msg[1])
            if method == "event" and isinstance(msg[2], list):
                for ev in msg[2]:
                    self.events.append(ev)
            else:
                self.notifications.append((method, msg[2]))
        elif kind == 0 and len(msg) == 4:
            self.requests.append(Request(msg[1], _method_name(msg[2]), msg[3]))
        else:
            self.garbage.append(msg)

    def pump(self, timeout=0.0):
        """Waits up to `timeout` s for data, then reads what is already
        there (bounded) and sorts the messages. Returns False when the peer
        has closed the connection (EOF or reset)."""
        if self.closed:
            return False
        got_any = False
        for _ in range(256):  # bounded: a busy stream must not starve the caller
            wait = timeout if not got_any else 0.0
            r, _, _ = select.select([self.sock], [], [], max(0.0, wait))
            if not r:
                return True
            try:
                data = self.sock.recv(1 << 20)
            except (ConnectionResetError, ConnectionAbortedError):
                data = b""
            except BlockingIOError:
                return True
            if not data:
                self.closed = True
                return False
            got_any = True
            self.unpacker.feed(data)
            try:
                for msg in self.unpacker:
                    self._dispatch(msg)
            except (ValueError, msgpack.UnpackException) as e:
                raise AssertionError("swarmd sent bytes that are not msgpack: %r" % (e,))
        return True

    def _wait_for(self, have, timeout, what):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            v = have()
            if v is not None:
                return v
            if self.closed:
                raise ConnectionClosed("connection closed while waiting for %s" % what)
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout("no %s within %.1f s" % (what, timeout))
            self.pump(min(left, 0.5))

    def response_raw(self, msgid, timeout=None):
        """(error, result) of the response with this msgid."""
        return self._wait_for(lambda: self.responses.pop(msgid, None), timeout,
                              "response to msgid %r" % (msgid,))

    def response(self, msgid, timeout=None):
        """The result for msgid; RpcError on an error response."""
        err, res = self.response_raw(msgid, timeout)
        if err is not None:
            raise RpcError.from_wire(err, msgid)
        return res

    def call(self, method, params=None, timeout=None, raw_params=_MISSING):
        """Request + response: the result, or RpcError."""
        return self.response(self.request(method, params, raw_params), timeout)

    def expect_error(self, code, method, params=None, timeout=None, raw_params=_MISSING):
        """Calls and asserts an error response with this code; returns it."""
        try:
            res = self.call(method, params, timeout, raw_params)
        except RpcError as e:
            if e.code != code:
                raise AssertionError("%s: expected error %r, got %r (%s)"
                                     % (method, code, e.code, e.message))
            return e
        raise AssertionError("%s: expected error %r, got result %.500r" % (method, code, res))

    def pipeline(self, calls, timeout=None):
        """Sends every (method, params) first, then reads all answers.
        Returns results in order; an error answer is an RpcError in place."""
        ids = [self.request(m, p) for m, p in calls]
        out = []
        for i in ids:
            err, res = self.response_raw(i, timeout)
            out.append(RpcError.from_wire(err, i) if err is not None else res)
        return out

    def next_event(self, timeout=None):
        """The next `event` notification's event map ({topic, event, ts, data})."""
        return self._wait_for(lambda: self.events.popleft() if self.events else None,
                              timeout, "event")

    def drain_events(self):
        """Every event already received (reads what the socket has now)."""
        self.pump(0.0)
        out = list(self.events)
        self.events.clear()
        return out

    def next_notification(self, timeout=None):
        """The next non-event notification as (method, params)."""
        return self._wait_for(
            lambda: self.notifications.popleft() if self.notifications else None,
            timeout, "notification")

    def next_request(self, timeout=None, method=None):
        """The next server->client request (a Request); with `method`,
        requests of other methods are skipped (and kept in `skipped`)."""
        def have():
            while self.requests:
                r = self.requests.popleft()
                if method is None or r.method == method:
                    return r
                self.skipped_requests.append(r)
            return None
        return self._wait_for(have, timeout, "request %s" % (method or ""))

    def wait_closed(self, timeout=5.0):
        """True when the peer closes the connection within `timeout` s;
        messages that arrive meanwhile are sorted as usual."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.pump(min(left, 0.5))
        return True

    # -- conveniences

    def hello(self, token=None, client="swarmtest"):
        p = {"client": client}
        if token is not None:
            p["token"] = token
        return self.call("swarm.hello", p)

    def subscribe(self, topics):
        return self.call("subscribe", {"topics": list(topics)})

    def agents(self):
        return self.call("agent.list")["agents"]

    def agent_by_name(self, name):
        for a in self.agents():
            if a.get("name") == name:
                return a
        return None

    def stats(self):
        return self.call("swarm.stats")

    def submit(self, type_="echo", payload=None, **kw):
        p = {"type": type_}
        if payload is not None:
            p["payload"] = payload
        p.update(kw)
        return self.call("task.submit", p)

    def get(self, task_id):
        return self.call("task.get", {"task_id": task_id})

    def wait(self, task_id, timeout=30.0):
        """task.wait with a bounded socket wait; returns the Task (terminal
        or not: the caller checks)."""
        ms = int(timeout * 1000)
        return self.call("task.wait", {"task_id": task_id, "timeout_ms": ms},
                         timeout=timeout + 15.0)

    def list_all(self, state=None, limit=1000, max_pages=100000):
        """Follows task.list cursors to the end; returns (entries, pages)."""
        out, pages, cursor = [], 0, None
        while True:
            p = {"limit": limit}
            if state is not None:
                p["state"] = state
            if cursor is not None:
                p["cursor"] = cursor
            r = self.call("task.list", p)
            pages += 1
            out.extend(r["tasks"])
            cursor = r.get("next")
            if cursor is None:
                return out, pages
            check(r["tasks"], "task.list page %d is empty but next=%r" % (pages, cursor))
            check(pages < max_pages, "task.list paging does not end")


def wait_terminal(client, task_ids, timeout=60.0):
    """Waits until every task is terminal: {task_id: Task}. Pipelines
    task.wait calls, re-issuing them until the overall deadline."""
    deadline = time.monotonic() + timeout
    pending = list(dict.fromkeys(task_ids))
    done = {}
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            states = collections.Counter(client.get(t)["state"] for t in pending[:1000])
            raise WaitTimeout("%d tasks not terminal after %.1f s; states of the first "
                              "1000: %s" % (len(pending), timeout, dict(states)))
        ms = max(1, int(min(left, 10.0) * 1000))
        chunk = pending[:2000]
        res = client.pipeline([("task.wait", {"task_id": t, "timeout_ms": ms}) for t in chunk],
                              timeout=ms / 1000.0 + 30.0)
        still = []
        for t, r in zip(chunk, res):
            if isinstance(r, RpcError):
                raise r
            if r.get("state") in TERMINAL:
                done[t] = r
            else:
                still.append(t)
        pending = still + pending[len(chunk):]
    return done


def count_task_events(sub, task_ids, event="succeeded", timeout=60.0):
    """Reads `task` events on the subscribed client `sub` until each of
    `task_ids` has had at least one `event`; then flushes (a swarm.stats
    call on the same connection: events published before it arrive before
    its answer) and returns ({task_id: count of `event`}, [all events])."""
    want = set(task_ids)
    counts = collections.Counter()
    seen = []
    missing = set(want)
    deadline = time.monotonic() + timeout

    def take(evs):
        for ev in evs:
            seen.append(ev)
            if not isinstance(ev, dict) or ev.get("topic") != "task":
                continue
            data = ev.get("data") or {}
            tid = data.get("task_id") if isinstance(data, dict) else None
            if tid in want and ev.get("event") == event:
                counts[tid] += 1
                missing.discard(tid)

    while missing:
        take(sub.drain_events())
        if not missing:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout("%d of %d tasks had no %r event after %.1f s (e.g. %r)"
                              % (len(missing), len(want), event, timeout,
                                 sorted(missing)[:5]))
        if sub.closed:
            raise ConnectionClosed("subscriber connection closed")
        sub.pump(min(left, 0.5))
    sub.call("swarm.stats")
    take(sub.drain_events())
    return {t: counts[t] for t in want}, seen


# --------------------------------------------------------------------------
# Daemon and agents

_agent_seq = [0]


class Agent:
    """A `swarm-agent --connect ADDR --name NAME ...` process.

    With sim=True (default) `--sim` is added when absent, and a distinct
    `--seed` when none is given. stderr/stdout go to files in `logdir`."""

    def __init__(self, addr, *args, name=None, sim=True, token=None, env=None,
                 logdir=None):
        _agent_seq[0] += 1
        self.seq = _agent_seq[0]
        self.name = name or "agent-%d" % self.seq
        args = [str(a) for a in args]
        argv = [binary("swarm-agent"), "--connect", addr, "--name", self.name]
        if token is not None:
            argv += ["--token", token]
        if sim and "--sim" not in args and "--exec" not in args:
            argv.append("--sim")
        if sim and "--seed" not in args:
            argv += ["--seed", str(self.seq)]
        argv += args
        self.argv = argv
        self._own_dir = logdir is None
        self.logdir = logdir or tempfile.mkdtemp(prefix="swarmtest-agent-")
        self.stderr_path = os.path.join(self.logdir, "%s.stderr" % self.name)
        self._err = open(self.stderr_path, "wb")
        self._stderr_cache = None
        self.proc = _spawn(argv, _child_env(env), stdout=self._err, stderr=self._err)
        self.killed = False
        _test_agents.append(self)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def alive(self):
        return self.proc.poll() is None

    @property
    def returncode(self):
        return self.proc.poll()

    def kill(self, sig=signal.SIGKILL):
        """Sends `sig` (default SIGKILL) and, for SIGKILL, reaps it."""
        if self.proc.poll() is None:
            self.killed = True
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait(10)

    def wait(self, timeout=10.0):
        return self.proc.wait(timeout)

    def stop(self):
        _kill_proc(self.proc, signal.SIGKILL)
        self.killed = True
        try:
            self._err.close()
        except OSError:
            pass
        if self._stderr_cache is None:
            self._stderr_cache = _read_file(self.stderr_path, 65536)
        if self._own_dir and not os.environ.get("SWD_KEEP_TMP"):
            shutil.rmtree(self.logdir, ignore_errors=True)

    def stderr_text(self):
        if self._stderr_cache is not None:
            return self._stderr_cache
        return _read_file(self.stderr_path)


class Daemon:
    """`swarmd serve --listen 127.0.0.1:0 --http 127.0.0.1:0 --ready-file F`.

    Arguments: `args` (extra command-line arguments), `env` (added to a
    clean environment; None removes a key), `config` (YAML text written to
    a file and passed with --config), `check_exit` (assert exit status 0
    after SIGTERM at the end), `ready_timeout`, `stop_timeout` (seconds).
    The environment defaults to SWARMD_TUNER_MODE=off so the tuner cannot
    move parameters under a core test; pass env={"SWARMD_TUNER_MODE": None}
    to get the daemon's default.

    After start: `rpc` / `http` ("HOST:PORT" strings from the ready file),
    `rpc_addr` / `http_addr` ((host, port)), `pid`, `proc`, `tmpdir`."""

    DEFAULT_ENV = {"SWARMD_TUNER_MODE": "off"}

    def __init__(self, args=(), env=None, config=None, check_exit=True,
                 ready_timeout=30.0, stop_timeout=30.0):
        self.args = [str(a) for a in args]
        self.env = dict(env or {})
        self.config = config
        self.check_exit = check_exit
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.proc = None
        self.tmpdir = None
        self._clients = []
        self._agents = []
        self._ctl = None
        self._stderr_cache = None
        self.exit_status = None
        self.killed = False

    # -- start / stop

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def __exit__(self, et, ev, tb):
        self.stop(check=self.check_exit and et is None)
        return False

    def start(self):
        exe = binary("swarmd")
        self.tmpdir = tempfile.mkdtemp(prefix="swarmtest-")
        self.ready_path = os.path.join(self.tmpdir, "ready.json")
        self.stderr_path = os.path.join(self.tmpdir, "swarmd.stderr")
        self.stdout_path = os.path.join(self.tmpdir, "swarmd.stdout")
        argv = [exe, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                "--ready-file", self.ready_path]
        if self.config is not None:
            self.config_path = os.path.join(self.tmpdir, "swarmd.yaml")
            with open(self.config_path, "w") as f:
                f.write(self.config)
            argv += ["--config", self.config_path]
        argv += self.args
        self.argv = argv
        self.full_env = _child_env(self.env, self.DEFAULT_ENV)
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        _test_daemons.append(self)
        self.proc = _spawn(argv, self.full_env, stdout=self._out, stderr=self._err)
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if os.path.exists(self.ready_path):
                try:
                    with open(self.ready_path) as f:
                        info = json.load(f)
                    break
                except (OSError, ValueError):
                    pass  # written by rename, so this should not happen; retry
            rc = self.proc.poll()
            if rc is not None:
                raise HarnessError("swarmd exited with status %s before it was ready; "
                                   "stderr:\n%s" % (rc, "\n".join(_excerpt(self.stderr_text()))))
            if time.monotonic() >= deadline:
                raise HarnessError("swarmd wrote no ready file within %.0f s; stderr:\n%s"
                                   % (self.ready_timeout, "\n".join(_excerpt(self.stderr_text()))))
            time.sleep(0.02)
        check(isinstance(info, dict), "ready file is not a JSON object: %r" % (info,))
        for k in ("rpc", "http", "pid"):
            check(k in info, "ready file lacks %r: %r" % (k, info))
        eq(info["pid"], self.proc.pid, "ready file pid")
        self.ready = info
        self.rpc = info["rpc"]
        self.http = info["http"]
        self.rpc_addr = parse_addr(self.rpc)
        # Tolerated while the HTTP server is not built: HTTP helpers then fail.
        self.http_addr = parse_addr(self.http) if self.http else None
        self.pid = info["pid"]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=30.0):
        """Waits for the daemon to exit by itself; its status (negative for
        a signal). WaitTimeout when it is still running."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout("swarmd still running %.1f s later" % timeout) from None
        self.exit_status = rc
        return rc

    def stop(self, check=True):
        """Closes clients, SIGKILLs agents, SIGTERMs swarmd (SIGKILL after
        stop_timeout) and removes the temporary directory. With check,
        asserts that swarmd exited 0 by itself."""
        problems = []
        # After a failure, do not wait out a long drain.
        stop_timeout = self.stop_timeout if check else min(self.stop_timeout, 10.0)
        for c in self._clients:
            c.close()
        for a in self._agents:
            a.stop()
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(stop_timeout)
                except subprocess.TimeoutExpired:
                    self.killed = True
                    self.proc.kill()
                    self.proc.wait()
                    problems.append("swarmd did not exit within %.0f s of SIGTERM (killed)"
                                    % stop_timeout)
            self.exit_status = self.proc.returncode
            if not self.killed and self.exit_status != 0:
                problems.append("swarmd exited with status %s" % self.exit_status)
        for fh in ("_err", "_out"):
            f = getattr(self, fh, None)
            if f is not None:
                f.close()
        if self.tmpdir is not None:
            self._stderr_cache = _read_file(self.stderr_path)
            if not os.environ.get("SWD_KEEP_TMP"):
                shutil.rmtree(self.tmpdir, ignore_errors=True)
        if check and problems:
            raise AssertionError("; ".join(problems) + "; stderr tail:\n"
                                 + "\n".join(_excerpt(self.stderr_text())))

    # -- diagnostics

    def stderr_text(self):
        if self._stderr_cache is not None:
            return self._stderr_cache
        return _read_file(self.stderr_path) if self.tmpdir else ""

    def log_records(self):
        """stderr parsed as JSON lines (non-JSON lines skipped)."""
        out = []
        for line in self.stderr_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict):
                out.append(r)
        return out

    # -- clients and agents

    def client(self, hello=None, timeout=30.0):
        """A new connection; with hello=TOKEN (or hello=True: no token) it
        says swarm.hello first. Closed when the daemon stops."""
        c = Client(self.rpc_addr, timeout=timeout)
        self._clients.append(c)
        if hello is not None and hello is not False:
            c.hello(None if hello is True else hello)
        return c

    @property
    def ctl(self):
        """A shared control connection (says hello with SWARMD_TOKEN when the
        daemon has one)."""
        if self._ctl is None or self._ctl.closed:
            tok = self.full_env.get("SWARMD_TOKEN")
            self._ctl = self.client(hello=tok if tok else None)
        return self._ctl

    def agent(self, *args, **kw):
        """Starts one swarm-agent connected to this daemon (see Agent)."""
        kw.setdefault("logdir", self.tmpdir)
        a = Agent(self.rpc, *args, **kw)
        self._agents.append(a)
        return a

    def agents(self, n, *args, prefix="agent", **kw):
        return [self.agent(*args, name="%s-%d" % (prefix, i), **kw) for i in range(n)]

    def wait_agents(self, names, states=("idle",), timeout=30.0):
        """Waits until agent.list shows every name in one of `states`;
        returns {name: Agent record}."""
        names = [a.name if isinstance(a, Agent) else a for a in names]

        def ready():
            by = {}
            for rec in self.ctl.agents():
                if rec.get("state") in states:
                    by[rec.get("name")] = rec
            if all(n in by for n in names):
                return {n: by[n] for n in names}
            for a in self._agents:
                if a.name in names and not a.alive:
                    raise AssertionError("agent %s exited with %s before registering; "
                                         "stderr:\n%s" % (a.name, a.returncode,
                                                          _tail(a.stderr_text(), 20)))
            return None

        return wait_until(ready, timeout, 0.05, "agents %s in %s" % (names, states))

    # -- HTTP

    def http_get(self, path, timeout=10.0):
        """(status, headers dict lower-cased, body bytes)."""
        if self.http_addr is None:
            raise HarnessError("the ready file names no HTTP address: %r" % (self.ready,))
        conn = http.client.HTTPConnection(self.http_addr[0], self.http_addr[1],
                                          timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def metrics(self):
        """/metrics parsed: [(name, {label: value}, float)]."""
        status, _, body = self.http_get("/metrics")
        eq(status, 200, "/metrics status")
        return parse_prometheus(body.decode("utf-8", "replace"))

    def try_metric(self, name, **labels):
        """metric(), or None when /metrics cannot be read at all (no HTTP
        server yet, not 200)."""
        try:
            return self.metric(name, **labels)
        except (OSError, AssertionError, HarnessError, http.client.HTTPException):
            return None

    def metric(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`; None
        when no such sample is exposed."""
        total, found = 0.0, False
        for n, lab, v in self.metrics():
            if n == name and all(lab.get(k) == str(x) for k, x in labels.items()):
                total += v
                found = True
        return total if found else None


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                  for k, v in _LABEL.findall(m.group(3) or "")}
        try:
            val = float(m.group(4))
        except ValueError:
            continue
        out.append((m.group(1), labels, val))
    return out


# --------------------------------------------------------------------------
# TAP runner

_tests = []


class _Test:
    def __init__(self, fn, name, timeout):
        self.fn = fn
        self.name = name
        self.timeout = timeout


def test(fn=None, *, name=None, timeout=120):
    """Registers a test: `@test` or `@test(timeout=300)`. The name is the
    function's, without a `test_` prefix."""
    def reg(f):
        n = name or (f.__name__[5:] if f.__name__.startswith("test_") else f.__name__)
        _tests.append(_Test(f, n, timeout))
        return f
    return reg(fn) if fn is not None else reg


class _TestTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _TestTimeout("test exceeded its time limit")


def _on_term(signum, frame):
    _kill_everything()
    if not os.environ.get("SWD_KEEP_TMP"):
        for d in _test_daemons:
            if d.tmpdir:
                shutil.rmtree(d.tmpdir, ignore_errors=True)
    sys.stdout.write("Bail out! runner got signal %d\n" % signum)
    sys.stdout.flush()
    os._exit(1)


def _cleanup_test():
    for c in _test_clients:
        c.close()
    for a in _test_agents:
        try:
            a.stop()
        except Exception:  # noqa: BLE001 - best effort
            pass
    for d in _test_daemons:
        if d.proc is not None and d.proc.poll() is None:
            try:
                d.stop(check=False)
            except Exception:  # noqa: BLE001
                pass
    _kill_everything()


_SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                    "WARNING: ThreadSanitizer")


def _excerpt(text, tail=40, window=60):
    """A sanitizer report from its first line when there is one (its end is
    mostly shadow bytes), else the last lines."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(m in line for m in _SANITIZER_MARKS):
            start = max(0, i - 5)
            return lines[start:start + window]
    return lines[-tail:]


def _diagnostics():
    lines = []
    for i, d in enumerate(_test_daemons):
        txt = d.stderr_text()
        lines.append("--- swarmd #%d (status %s) stderr:" % (i, d.exit_status))
        lines.extend(_excerpt(txt) or ["(empty)"])
    shown = 0
    for a in _test_agents:
        rc = a.proc.poll()
        if rc is not None and not a.killed and rc != 0 and shown < 5:
            shown += 1
            lines.append("--- agent %s exited %s by itself, stderr:" % (a.name, rc))
            lines.extend(_excerpt(a.stderr_text(), tail=10, window=40))
    return lines


def main(argv=None):
    """Runs the registered tests as TAP. `-k NAME` (repeatable) selects tests
    whose name contains NAME; `--list` prints the names."""
    argv = sys.argv[1:] if argv is None else argv
    keys, listing = [], False
    it = iter(argv)
    for a in it:
        if a == "-k":
            try:
                keys.append(next(it))
            except StopIteration:
                sys.stderr.write("-k needs a NAME\n")
                sys.exit(2)
        elif a.startswith("-k") and len(a) > 2:
            keys.append(a[2:])
        elif a in ("--list", "-l"):
            listing = True
        elif a in ("-h", "--help"):
            sys.stdout.write("usage: %s [-k NAME]... [--list]\n" % sys.argv[0])
            sys.exit(0)
        else:
            sys.stderr.write("unknown argument %r\n" % a)
            sys.exit(2)
    selected = [t for t in _tests if not keys or any(k in t.name for k in keys)]
    if listing:
        for t in selected:
            print(t.name)
        sys.exit(0)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    signal.signal(signal.SIGALRM, _on_alarm)
    print("1..%d" % len(selected))
    sys.stdout.flush()
    if not selected:
        note("no test matches %r" % keys)
        sys.exit(1)
    failed = 0
    for k, t in enumerate(selected, 1):
        del _test_daemons[:], _test_agents[:], _test_clients[:]
        t0 = time.monotonic()
        status, detail = "ok", []
        skip = None
        try:
            signal.setitimer(signal.ITIMER_REAL, t.timeout)
            try:
                t.fn()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Skip as e:
            skip = str(e)
        except (Exception, _TestTimeout):
            status = "not ok"
            detail = traceback.format_exc().splitlines()
        finally:
            try:
                _cleanup_test()
            except Exception:  # noqa: BLE001
                detail += ["cleanup failed:"] + traceback.format_exc().splitlines()
        if status != "ok":
            failed += 1
            detail += _diagnostics()
        line = "%s %d - %s" % (status, k, t.name)
        if skip is not None:
            line += " # SKIP %s" % skip
        print(line)
        for d in detail:
            print("# " + d)
        print("# %s took %.1f s" % (t.name, time.monotonic() - t0))
        sys.stdout.flush()
    _kill_everything()
    sys.exit(1 if failed else 0)
