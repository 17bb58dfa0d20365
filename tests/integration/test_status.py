#!/usr/bin/python3
"""HTTP status endpoint integration tests (DESIGN.md §3, §4, issue 4):
/metrics checked by promtool and scraped by a real Prometheus, the JSON
endpoints against their RPC twins, /readyz while draining, HTTP errors,
/logs and its follow stream, slow and malformed HTTP clients next to RPC
clients, the dashboard in headless Chromium, and `swarmctl status` / `logs`.

    SWD_BUILD_DIR=build /usr/bin/python3 tests/integration/test_status.py [-k NAME]

External programs (Debian packages, installed by scripts/setup): promtool
and prometheus (`prometheus`), chromium (`chromium`). A missing one fails
its test with the package to install. The dashboard screenshot is kept at
$SWD_BUILD_DIR/artifacts/dashboard.png.
"""

import collections
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
import urllib.parse
import urllib.request
from html.parser import HTMLParser

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import swarmtest  # noqa: E402
from swarmtest import (  # noqa: E402
    Daemon, approx, build_dir, check, eq, free_port, main, note,
    parse_prometheus, run_swarmctl, test, wait_terminal, wait_until,
)

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
CHROMIUM = "/usr/bin/chromium"

# DESIGN.md §4 families that exist now, and the standard process ones.
REQUIRED_FAMILIES = [
    "swarmd_tasks_submitted_total", "swarmd_tasks_finished_total",
    "swarmd_task_retries_total", "swarmd_task_timeouts_total",
    "swarmd_stale_results_total", "swarmd_queue_depth",
    "swarmd_task_duration_seconds", "swarmd_task_queue_wait_seconds",
    "swarmd_agents", "swarmd_agent_health", "swarmd_agent_inflight",
    "swarmd_tokens_consumed_total", "swarmd_rpc_requests_total",
    "swarmd_rpc_connections",
    "process_resident_memory_bytes", "process_cpu_seconds_total",
    "process_open_fds", "process_start_time_seconds",
]
HISTOGRAMS = ["swarmd_task_duration_seconds", "swarmd_task_queue_wait_seconds"]


def need(path, package):
    """Fails the test clearly when an external program is missing."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise AssertionError("%s is missing: install the Debian package %r "
                             "(scripts/setup does)" % (path, package))


def sim_agents(d, names, *args):
    agents = [d.agent("--latency-ms", 5, "--latency-spread", 0.1, *args, name=n)
              for n in names]
    return d.wait_agents(agents)


def submit_and_finish(c, n, type_="echo", **extra):
    ids = []
    for i in range(n):
        p = {"type": type_, "payload": {"i": i}}
        p.update(extra)
        ids.append(c.call("task.submit", p)["task_id"])
    done = wait_terminal(c, ids, timeout=60)
    return ids, done


def get_json(d, path):
    status, headers, body = d.http_get(path)
    eq(status, 200, "GET %s status (body %.300r)" % (path, body))
    check(headers.get("content-type", "").startswith("application/json"),
          "GET %s Content-Type: %r" % (path, headers.get("content-type")))
    try:
        return json.loads(body)
    except ValueError:
        raise AssertionError("GET %s is not JSON: %.500r" % (path, body)) from None


def raw_http(addr, data, timeout=10.0):
    """Sends raw bytes on a new connection and reads until the server closes
    (or `timeout`): the bytes received."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def status_line(resp):
    """(status code, the response's first line) of raw response bytes."""
    line = resp.split(b"\r\n", 1)[0].decode("latin-1")
    m = re.match(r"HTTP/1\.[01] (\d{3})", line)
    check(m is not None, "not an HTTP response: %.300r" % resp)
    return int(m.group(1)), line


def request(d, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(d.http_addr[0], d.http_addr[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class EventStream:
    """A raw-socket client of a text/event-stream answer (GET `path`)."""

    def __init__(self, addr, path, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the advertised window stays small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(addr)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n"
                           % (path, addr[0], addr[1])).encode())
        self.buf = b""
        self.closed = False
        self.received = 0  # body and header bytes read so far
        self.status = None
        self.headers = {}

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv(self, timeout):
        """Reads what arrives within `timeout` s into buf; False at EOF/reset."""
        if self.closed:
            return False
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return True
        try:
            chunk = self.sock.recv(1 << 20)
        except (ConnectionResetError, ConnectionAbortedError):
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.received += len(chunk)
        self.buf += chunk
        return True

    def read_headers(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            left = deadline - time.monotonic()
            check(left > 0, "no response headers within %.0f s: %.300r" % (timeout, self.buf))
            check(self._recv(min(left, 0.5)), "closed before the headers: %.300r" % self.buf)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        return self.status

    def events(self, timeout=0.5):
        """The `data` of every complete event received within `timeout` s."""
        self._recv(timeout)
        out = []
        while True:
            self.buf = self.buf.replace(b"\r\n", b"\n")
            if b"\n\n" not in self.buf:
                return out
            ev, self.buf = self.buf.split(b"\n\n", 1)
            data = [line[5:].lstrip(b" ") if line.startswith(b"data:") else None
                    for line in ev.split(b"\n")]
            data = [x for x in data if x is not None]
            if data:
                out.append(b"\n".join(data).decode("utf-8", "replace"))

    def drain_until_closed(self, timeout):
        """Reads (and drops) until the server closes: True, or False when it
        is still open after `timeout` s of reading."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._recv(min(left, 0.5))
            self.buf = b""
        return True


class _DomRows(HTMLParser):
    """Collects <tr class="agent" data-agent-id> rows of table#agents and the
    text of their td.name cells."""

    def __init__(self):
        super().__init__()
        self.in_agents = False
        self.depth = 0
        self.rows = []        # [{"id":..., "name": ...}]
        self._row = None
        self._in_name = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "table" and a.get("id") == "agents":
            self.in_agents = True
        if not self.in_agents:
            return
        if tag == "table":
            self.depth += 1
        if tag == "tr" and "agent" in classes:
            self._row = {"id": a.get("data-agent-id"), "name": ""}
            self.rows.append(self._row)
        if tag == "td" and "name" in classes and self._row is not None:
            self._in_name = True

    def handle_endtag(self, tag):
        if not self.in_agents:
            return
        if tag == "td":
            self._in_name = False
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self.depth -= 1
            if self.depth == 0:
                self.in_agents = False

    def handle_data(self, data):
        if self._in_name and self._row is not None:
            self._row["name"] += data


def run_bounded(argv, timeout, env=None, cwd=None):
    """Runs an external program in its own process group, killing the whole
    group at the end (chromium leaves helpers behind) or at `timeout`.
    Returns (status, stdout bytes, stderr text)."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, cwd=cwd, start_new_session=True,
                         preexec_fn=swarmtest._preexec_factory())
    swarmtest._live_procs.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        out, err = p.communicate()
        raise AssertionError("%s did not finish within %.0f s; stderr tail:\n%s"
                             % (os.path.basename(argv[0]), timeout,
                                err.decode("utf-8", "replace")[-3000:]))
    finally:
        _kill_group(p)
    return p.returncode, out, err.decode("utf-8", "replace")


def _kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)  # the group we started (its id is p.pid)
    except (ProcessLookupError, PermissionError):
        pass
    if p.poll() is None:
        p.wait(10)


# ---------------------------------------------------------------------------
# /metrics


@test(timeout=180)
def metrics_promtool_and_contents():
    need(PROMTOOL, "prometheus")
    with Daemon() as d:
        recs = sim_agents(d, ["met-1"])
        c = d.client()
        _, done = submit_and_finish(c, 5)
        check(all(t["state"] == "succeeded" for t in done.values()), "tasks: %r" % done)
        c.expect_error("unknown_method", "no.such.method", {})
        c.expect_error("not_found", "task.get", {"task_id": "no-such-task"})

        status, headers, body = d.http_get("/metrics")
        eq(status, 200, "/metrics status")
        check(headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
              "/metrics Content-Type: %r" % headers.get("content-type"))
        text = body.decode("utf-8")

        r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                           timeout=60)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        eq(r.returncode, 0, "promtool check metrics status; its report:\n%s" % out)

        helps, types = {}, {}
        for line in text.splitlines():
            m = re.match(r"# (HELP|TYPE) (\S+) ?(.*)$", line)
            if m:
                (helps if m.group(1) == "HELP" else types)[m.group(2)] = m.group(3)
        check(set(helps) == set(types), "HELP without TYPE or the reverse: %s"
              % sorted(set(helps) ^ set(types)))
        samples = parse_prometheus(text)

        def family(name):
            for suffix in ("_bucket", "_sum", "_count"):
                base = name[:-len(suffix)]
                if name.endswith(suffix) and types.get(base) == "histogram":
                    return base
            return name

        undeclared = sorted({n for n, _, _ in samples if family(n) not in types})
        check(not undeclared, "samples without HELP/TYPE: %s" % undeclared)
        missing = [f for f in REQUIRED_FAMILIES if f not in types]
        check(not missing, "families missing from /metrics: %s" % missing)
        for f in REQUIRED_FAMILIES:
            check(helps[f].strip(), "%s has an empty HELP" % f)
        for f in HISTOGRAMS:
            eq(types[f], "histogram", "TYPE of %s" % f)
            buckets = [(lab["le"], v) for n, lab, v in samples if n == f + "_bucket"]
            check(buckets and buckets[-1][0] == "+Inf", "%s: last bucket %r" % (f, buckets[-1:]))
            values = [v for _, v in buckets]
            check(values == sorted(values), "%s buckets not cumulative: %r" % (f, buckets))
            count = [v for n, _, v in samples if n == f + "_count"]
            total = [v for n, _, v in samples if n == f + "_sum"]
            check(len(count) == 1 and len(total) == 1, "%s: _count %r, _sum %r"
                  % (f, count, total))
            eq(buckets[-1][1], count[0], "%s +Inf bucket vs _count" % f)
            check(count[0] >= 5, "%s_count %r after 5 finished tasks" % (f, count[0]))

        def value(name, **labels):
            got = [v for n, lab, v in samples
                   if n == name and all(lab.get(k) == x for k, x in labels.items())]
            check(len(got) == 1, "%s%r: samples %r" % (name, labels, got))
            return got[0]

        eq(value("swarmd_tasks_submitted_total"), 5, "swarmd_tasks_submitted_total")
        eq(value("swarmd_tasks_finished_total", state="succeeded"), 5,
           'swarmd_tasks_finished_total{state="succeeded"}')
        eq(value("swarmd_rpc_requests_total", method="unknown", result="unknown_method"), 1,
           'swarmd_rpc_requests_total{method="unknown",result="unknown_method"}')
        eq(value("swarmd_rpc_requests_total", method="task.get", result="not_found"), 1,
           'swarmd_rpc_requests_total{method="task.get",result="not_found"}')
        check(value("swarmd_rpc_requests_total", method="task.submit", result="ok") >= 5,
              "task.submit ok count")
        check(value("swarmd_rpc_connections") >= 1, "swarmd_rpc_connections with one open")
        eq(value("swarmd_agents", state="idle"), 1, 'swarmd_agents{state="idle"}')
        check(value("process_resident_memory_bytes") > 0, "process_resident_memory_bytes")
        check(value("process_open_fds") > 0, "process_open_fds")

        # The health gauge is the score agent.list shows, for the same agent.
        agent_id = recs["met-1"]["agent_id"]
        eq(agent_id, "a-1", "the first agent's id")
        listed = c.agent_by_name("met-1")["health"]
        gauge = d.metric("swarmd_agent_health", agent=agent_id)
        check(gauge is not None, 'no swarmd_agent_health{agent="%s"}' % agent_id)
        approx(gauge, listed, 'swarmd_agent_health{agent="%s"} vs agent.list health'
               % agent_id, tol=1e-9)
        eq(d.metric("swarmd_agent_inflight", agent=agent_id), 0.0,
           'swarmd_agent_inflight{agent="%s"}' % agent_id)


@test(timeout=240)
def prometheus_scrapes_swarmd():
    need(PROMETHEUS, "prometheus")
    n = 37
    with Daemon() as d:
        tmp = tempfile.mkdtemp(prefix="swarmtest-prom-")
        prom = None
        log = None
        try:
            port = free_port()
            cfg = os.path.join(tmp, "prometheus.yml")
            with open(cfg, "w") as f:
                f.write("global:\n"
                        "  scrape_interval: 1s\n"
                        "  scrape_timeout: 1s\n"
                        "  evaluation_interval: 1s\n"
                        "scrape_configs:\n"
                        "  - job_name: swarmd\n"
                        "    static_configs:\n"
                        "      - targets: ['%s']\n" % d.http)
            log = open(os.path.join(tmp, "prometheus.log"), "wb")
            prom = swarmtest._spawn(
                [PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + tmp + "/data",
                 "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                env=dict(os.environ, HOME=tmp), stdout=log, stderr=log)

            sim_agents(d, ["prom-1", "prom-2"])
            c = d.client()
            ids = c.call("task.submit_batch", {"tasks": [
                {"type": "echo", "payload": {"i": i}} for i in range(n)]})["task_ids"]
            eq(len(ids), n, "task ids")
            wait_terminal(c, ids, timeout=60)

            def query(expr):
                if prom.poll() is not None:
                    log.flush()
                    raise AssertionError("prometheus exited with %s; log:\n%s"
                                         % (prom.returncode, swarmtest._read_file(log.name)[-3000:]))
                url = "http://127.0.0.1:%d/api/v1/query?%s" % (
                    port, urllib.parse.urlencode({"query": expr}))
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        doc = json.load(r)
                except OSError:
                    return None  # not up yet
                if doc.get("status") != "success":
                    return None
                res = doc["data"]["result"]
                return [(s["metric"], float(s["value"][1])) for s in res]

            def submitted():
                res = query("swarmd_tasks_submitted_total")
                if res and len(res) == 1 and res[0][1] == n:
                    return res
                return None

            res = wait_until(submitted, 90, 0.5,
                             "Prometheus to report swarmd_tasks_submitted_total == %d" % n)
            eq(res[0][0].get("job"), "swarmd", "job label of the scraped series")
            up = query('up{job="swarmd"}')
            eq([v for _, v in up or []], [1.0], "up{job=\"swarmd\"}")
            fin = query('swarmd_tasks_finished_total{state="succeeded"}')
            eq([v for _, v in fin or []], [float(n)], "finished (succeeded) per Prometheus")
        finally:
            if prom is not None:
                swarmtest._kill_proc(prom, signal.SIGKILL)
            if log is not None:
                log.close()
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# JSON endpoints, health, errors


@test
def json_endpoints_match_rpc():
    with Daemon() as d:
        sim_agents(d, ["js-1", "js-2"])
        c = d.client()
        payload = {"text": "héllo", "n": [1, 2.5, None, True], "deep": {"a": {"b": "c"}}}
        tid = c.call("task.submit", {"type": "echo", "payload": payload,
                                     "labels": {"team": "x"}})["task_id"]
        t = c.wait(tid, 20)
        eq(t["state"], "succeeded", "task state")

        # A quiet daemon: the HTTP view and the RPC answer are the same object.
        eq(get_json(d, "/status"), c.call("swarm.stats"), "/status vs swarm.stats")
        eq(get_json(d, "/agents"), c.call("agent.list"), "/agents vs agent.list")
        task = get_json(d, "/tasks/" + tid)
        eq(task, c.get(tid), "/tasks/%s vs task.get" % tid)
        eq(task.get("payload"), payload, "/tasks/ID payload")

        status, _, body = d.http_get("/tasks/nope")
        eq(status, 404, "/tasks/nope status (body %.200r)" % body)
        for path in ("/tuner", "/healing", "/scaling"):
            j = get_json(d, path)
            check(isinstance(j.get("mode"), str), "%s has no mode: %r" % (path, j))


@test
def health_errors_and_limits():
    with Daemon() as d:
        status, headers, body = d.http_get("/healthz")
        eq((status, body.strip()), (200, b"ok"), "/healthz")
        status, _, body = d.http_get("/readyz")
        eq((status, body.strip()), (200, b"ok"), "/readyz while running")

        status, _, _ = d.http_get("/no/such/path")
        eq(status, 404, "unknown path")
        status, headers, _ = request(d, "POST", "/status", body=b"{}",
                                     headers={"Content-Type": "application/json"})
        eq(status, 405, "POST /status")
        check("GET" in headers.get("allow", ""), "405 without Allow: GET: %r" % headers)
        status, headers, body = request(d, "HEAD", "/status")
        eq((status, body), (200, b""), "HEAD /status")

        resp = raw_http(d.http_addr, b"THIS IS NOT HTTP\r\n\r\n")
        eq(status_line(resp)[0], 400, "malformed request line (%.200r)" % resp)
        resp = raw_http(d.http_addr, b"GET /status HTTP/1.1\r\nHost: x\r\n"
                        + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(40))
                        + b"\r\n")
        eq(status_line(resp)[0], 431, "40 KiB of headers (%.200r)" % resp[:200])

        # Keep-alive: two requests on one connection, both answered.
        conn = http.client.HTTPConnection(*d.http_addr, timeout=10)
        try:
            for path in ("/healthz", "/status"):
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                eq(r.status, 200, "keep-alive GET %s" % path)
        finally:
            conn.close()
        # Connections are capped (256): the ones past the cap get 503.
        held = [socket.create_connection(d.http_addr, timeout=10) for _ in range(256)]
        try:
            extra = [socket.create_connection(d.http_addr, timeout=10) for _ in range(5)]
            held += extra
            for s in extra:
                s.settimeout(10)
                resp = b""
                while b"\r\n" not in resp:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    resp += chunk
                eq(status_line(resp)[0], 503, "a connection past the cap (%.200r)" % resp)
        finally:
            for s in held:
                s.close()

        # The endpoint still answers after all that.
        wait_until(lambda: d.http_get("/healthz")[0] == 200, 10, 0.1, "/healthz afterwards")


@test(timeout=120)
def readyz_503_while_draining():
    with Daemon(stop_timeout=40) as d:
        a = d.agent("--latency-ms", 3000, "--latency-spread", 0.01, name="slow-1")
        d.wait_agents([a])
        c = d.client()
        tid = c.submit("echo", {"long": True})["task_id"]
        wait_until(lambda: c.get(tid)["state"] == "running", 10, what="task running")
        eq(d.http_get("/readyz")[0], 200, "/readyz before SIGTERM")
        d.signal(signal.SIGTERM)

        def not_ready():
            status, _, body = d.http_get("/readyz")
            return (status, body) if status == 503 else None

        status, body = wait_until(not_ready, 10, 0.05, "/readyz 503 after SIGTERM")
        check(body.strip(), "/readyz 503 has an empty body")
        # While the task drains, the rest of the endpoint keeps answering.
        eq(d.http_get("/healthz")[0], 200, "/healthz while draining")
        st = get_json(d, "/status")
        eq(st["queue"]["running"], 1, "/status while draining: running")
        eq(d.http_get("/readyz")[0], 503, "/readyz still 503")
        t = c.wait(tid, 30)
        eq(t["state"], "succeeded", "the running task finishes during the drain")
        eq(d.wait_exit(30), 0, "exit status after the drain")
        try:
            socket.create_connection(d.http_addr, timeout=2).close()
            raise AssertionError("the HTTP endpoint still accepts after exit")
        except ConnectionRefusedError:
            pass


# ---------------------------------------------------------------------------
# /logs


@test
def logs_tail_and_listening_record():
    with Daemon(args=["--log-level", "debug"]) as d:
        sim_agents(d, ["log-1"])
        c = d.client()
        submit_and_finish(c, 5)

        status, headers, body = d.http_get("/logs?n=5")
        eq(status, 200, "/logs?n=5 status")
        check(headers.get("content-type", "").startswith("application/x-ndjson"),
              "/logs Content-Type: %r" % headers.get("content-type"))
        lines = body.decode("utf-8").splitlines()
        eq(len(lines), 5, "records in /logs?n=5 (a daemon that logged more than 5)")
        recs = [json.loads(x) for x in lines]
        for r in recs:
            check(isinstance(r, dict) and {"ts", "level", "component", "msg"} <= set(r),
                  "log record lacks ts/level/component/msg: %r" % r)
        everything = d.http_get("/logs?n=100000")[2].decode("utf-8").splitlines()
        # The last 5, oldest first (a record may have been logged since).
        at = everything.index(lines[0]) if lines[0] in everything else -1
        eq(everything[at:at + 5], lines, "/logs?n=5 vs the tail of /logs?n=100000")
        check(len(everything) - at - 5 <= 2, "/logs?n=5 is not the newest records: %d follow"
              % (len(everything) - at - 5))
        ts = [r["ts"] for r in map(json.loads, everything)]
        check(ts == sorted(ts), "records out of order")

        status, _, body = d.http_get("/logs?n=0")
        eq((status, body), (200, b""), "/logs?n=0")
        eq(d.http_get("/logs?n=abc")[0], 400, "/logs?n=abc")

        listening = [r for r in map(json.loads, everything) if r.get("msg") == "listening"]
        check(listening, "no 'listening' record in /logs: %r" % everything[:5])
        first = listening[0]
        eq(first.get("rpc"), d.ready["rpc"], "listening record's rpc vs the ready file")
        eq(first.get("http"), d.ready["http"], "listening record's http vs the ready file")
        eq(json.loads(everything[0]).get("msg"), "listening",
           "the first record after binding")


@test
def logs_follow_gets_new_task_records():
    with Daemon(args=["--log-level", "debug"]) as d:
        c = d.client()
        before = c.submit("echo")["task_id"]  # logged before the follower connects
        stream = EventStream(d.http_addr, "/logs?follow=1")
        try:
            eq(stream.read_headers(), 200, "follow status")
            check(stream.headers.get("content-type", "").startswith("text/event-stream"),
                  "follow Content-Type: %r" % stream.headers)
            ids = [c.submit("echo", {"i": i})["task_id"] for i in range(10)]
            want = set(ids)
            seen = collections.Counter()
            records = []
            deadline = time.monotonic() + 20
            while want - set(seen) and time.monotonic() < deadline:
                for data in stream.events(0.5):
                    r = json.loads(data)
                    records.append(r)
                    if r.get("msg") == "task submitted":
                        seen[r.get("task")] += 1
            check(not (want - set(seen)), "follower missed 'task submitted' for %s; got %d "
                  "records, e.g. %.500r" % (sorted(want - set(seen)), len(records), records[:3]))
            check(all(seen[t] == 1 for t in want), "records seen more than once: %r" % seen)
            check(before not in seen, "a record logged before the follower connected was sent")
            check(not stream.closed, "the server closed the stream")
        finally:
            stream.close()
        # The daemon noticed the follower leave and keeps serving.
        eq(d.http_get("/healthz")[0], 200, "/healthz after the follower left")


@test(timeout=300)
def slow_clients_do_not_disturb_rpc():
    long_type = "flood-" + "x" * 120  # records carry the type: more log per task
    # A small ASan quarantine, so RSS reflects live memory under ASan too.
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16").lstrip(":")
    with Daemon(args=["--log-level", "debug"], env={"ASAN_OPTIONS": asan},
                stop_timeout=60) as d:
        agents = [d.agent("--concurrency", 32, "--latency-ms", 1, "--latency-spread", 0.1,
                          name="flood-%d" % i) for i in range(4)]
        d.wait_agents(agents)
        c = d.client()
        submit_and_finish(c, 200, long_type)  # warm up allocator and tables
        rss0 = vm_rss_kib(d.pid)

        # 50 clients that send half a request and stall.
        stalled = []
        for _ in range(50):
            s = socket.create_connection(d.http_addr, timeout=10)
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            stalled.append(s)
        # A follower that never reads, with a tiny receive window.
        follower = EventStream(d.http_addr, "/logs?follow=1", rcvbuf=4096)
        eq(follower.read_headers(), 200, "follower status")  # subscribed from here on

        log_before = os.path.getsize(d.stderr_path)
        t0 = time.monotonic()
        n, per_batch = 16000, 1000
        ids = []
        worst = 0.0
        for b in range(n // per_batch):
            ids += c.call("task.submit_batch", {"tasks": [
                {"type": long_type, "payload": {"i": b * per_batch + i}, "estimated_tokens": 10}
                for i in range(per_batch)]}, timeout=60)["task_ids"]
            # A separate RPC client is served promptly while this goes on.
            t1 = time.monotonic()
            probe = d.client()
            tid = probe.submit("echo", {"probe": b})["task_id"]
            eq(probe.wait(tid, 20)["state"], "succeeded", "probe task")
            probe.close()
            worst = max(worst, time.monotonic() - t1)
        wait_terminal(c, ids, timeout=120)
        log_bytes = os.path.getsize(d.stderr_path) - log_before
        note("%d tasks in %.1f s, %.1f MiB of log; slowest probe submit+wait %.2f s"
             % (n, time.monotonic() - t0, log_bytes / 2**20, worst))
        check(worst < 10.0, "an RPC submit+wait took %.1f s during the flood" % worst)
        check(log_bytes > 8 * 2**20, "the flood logged only %d bytes: too little to prove "
              "anything about a stalled follower" % log_bytes)

        # The stalled follower was cut off: reading now finds the end of the
        # stream after what was buffered, far less than what was logged.
        check(follower.drain_until_closed(20), "the stalled follower is still connected after "
              "%.1f MiB of log" % (log_bytes / 2**20))
        note("the stalled follower got %.2f MiB before the cut-off" % (follower.received / 2**20))
        check(follower.received < log_bytes / 2,
              "the stalled follower received %d of %d log bytes: nothing was cut off"
              % (follower.received, log_bytes))
        follower.close()

        rss1 = vm_rss_kib(d.pid)
        note("RSS %d KiB -> %d KiB" % (rss0, rss1))
        check(rss1 - rss0 < 256 * 1024, "RSS grew by %d KiB during the flood" % (rss1 - rss0))

        # Other HTTP clients are served meanwhile, and the stalled ones get
        # 408 when their headers do not come in time (30 s).
        eq(get_json(d, "/status")["tasks"]["submitted"], n + 200 + n // per_batch,
           "/status tasks.submitted")
        got = {}
        deadline = time.monotonic() + 45
        while len(got) < len(stalled) and time.monotonic() < deadline:
            r, _, _ = select.select([s for s in stalled if s not in got], [], [], 1.0)
            for s in r:
                try:
                    got[s] = s.recv(4096)
                except ConnectionResetError:
                    got[s] = b"<reset>"
        eq(len(got), len(stalled), "stalled clients answered or closed within 45 s")
        codes = collections.Counter(status_line(v)[0] if v.startswith(b"HTTP/") else v[:20]
                                    for v in got.values())
        eq(dict(codes), {408: len(stalled)}, "answers to the stalled half requests")
        for s in stalled:
            s.close()
        probe = d.client()
        tid = probe.submit("echo")["task_id"]
        eq(probe.wait(tid, 20)["state"], "succeeded", "RPC after the slow clients left")


# ---------------------------------------------------------------------------
# Dashboard


@test(timeout=240)
def dashboard_in_headless_chromium():
    need(CHROMIUM, "chromium")
    with Daemon() as d:
        recs = sim_agents(d, ["dash-1", "dash-2", "dash-3"])
        c = d.client()
        submit_and_finish(c, 30)
        tmp = tempfile.mkdtemp(prefix="swarmtest-chromium-")
        try:
            url = "http://%s/" % d.http
            base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--user-data-dir=" + os.path.join(tmp, "profile"),
                    "--virtual-time-budget=5000"]
            env = dict(os.environ, HOME=tmp)
            rc, out, err = run_bounded(base + ["--dump-dom", url], 90, env=env)
            eq(rc, 0, "chromium --dump-dom status; stderr:\n%s" % err[-3000:])
            dom = out.decode("utf-8", "replace")
            parser = _DomRows()
            parser.feed(dom)
            rows = parser.rows
            check(rows, "no <tr class=\"agent\"> in table#agents; DOM excerpt:\n%s"
                  % dom[dom.find('id="agents"'):][:2000])
            by_id = {r["id"]: r["name"].strip() for r in rows}
            want = {rec["agent_id"]: name for name, rec in recs.items()}
            eq(by_id, want, "agents table rows (data-agent-id -> td.name)")

            art = os.path.join(build_dir(), "artifacts")
            os.makedirs(art, exist_ok=True)
            png = os.path.join(art, "dashboard.png")
            if os.path.exists(png):
                os.unlink(png)
            rc, out, err = run_bounded(base + ["--screenshot=" + png, "--window-size=1400,1000",
                                               "--hide-scrollbars", url], 90, env=env, cwd=tmp)
            eq(rc, 0, "chromium --screenshot status; stderr:\n%s" % err[-3000:])
            check(os.path.isfile(png) and os.path.getsize(png) > 1000,
                  "no screenshot at %s" % png)
            with open(png, "rb") as f:
                eq(f.read(8), b"\x89PNG\r\n\x1a\n", "screenshot PNG signature")
            note("dashboard screenshot: %s (%d bytes)" % (png, os.path.getsize(png)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# swarmctl status / logs


@test
def swarmctl_status_and_logs():
    with Daemon(args=["--log-level", "debug"]) as d:
        recs = sim_agents(d, ["ctl-a", "ctl-b"])
        c = d.client()
        submit_and_finish(c, 3)

        r = run_swarmctl(["--addr", d.rpc, "--http", d.http, "status"])
        eq(r.returncode, 0, "swarmctl status (stderr: %s)" % r.stderr[-500:])
        for name, rec in recs.items():
            check(name in r.stdout and rec["agent_id"] in r.stdout,
                  "swarmctl status lacks agent %s:\n%s" % (name, r.stdout))
        check(re.search(r"submitted\s+3\b", r.stdout), "status lacks 'submitted 3':\n%s"
              % r.stdout)
        check(len(r.stdout.splitlines()) <= 40, "status is longer than a screen:\n%s" % r.stdout)
        r = run_swarmctl(["--addr", d.rpc, "status", "--json"])
        eq(r.returncode, 0, "swarmctl status --json")
        eq(json.loads(r.stdout), c.call("swarm.stats"), "status --json vs swarm.stats")

        r = run_swarmctl(["--http", d.http, "logs", "-n", "3", "--json"])
        eq(r.returncode, 0, "swarmctl logs -n 3 --json (stderr: %s)" % r.stderr[-500:])
        lines = r.stdout.splitlines()
        check(1 <= len(lines) <= 3, "logs -n 3 printed %d lines:\n%s" % (len(lines), r.stdout))
        for line in lines:
            check(isinstance(json.loads(line), dict), "not a JSON record: %r" % line)

        r = run_swarmctl(["--http", d.http, "logs", "-n", "1000"])
        eq(r.returncode, 0, "swarmctl logs (stderr: %s)" % r.stderr[-500:])
        first = r.stdout.splitlines()[0]
        check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO\s+daemon: listening ",
                       first), "human form of the first record: %r" % first)
        check("rpc=%s" % d.rpc in first and "http=%s" % d.http in first,
              "listening fields in %r" % first)

        # logs -f: new records arrive live; ^C ends it with status 0.
        p = subprocess.Popen([swarmtest.binary("swarmctl"), "--http", d.http, "--json",
                              "logs", "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=swarmtest._child_env(), preexec_fn=swarmtest._preexec_factory())
        swarmtest._live_procs.append(p)
        try:
            seen = set()
            buf = b""
            ids = set()
            deadline = time.monotonic() + 20
            # Submit until the follower shows one of them: it may still be connecting.
            while not (ids & seen) and time.monotonic() < deadline:
                ids.add(c.submit("echo")["task_id"])
                r_, _, _ = select.select([p.stdout], [], [], 0.3)
                if r_:
                    chunk = os.read(p.stdout.fileno(), 65536)
                    if not chunk:
                        raise AssertionError("swarmctl logs -f ended (status %s): %s"
                                             % (p.wait(5), p.stderr.read()[-500:]))
                    buf += chunk
                    *done, buf = buf.split(b"\n")
                    for line in done:
                        rec = json.loads(line)
                        if rec.get("msg") == "task submitted":
                            seen.add(rec.get("task"))
            check(ids & seen, "swarmctl logs -f showed none of %d submitted tasks" % len(ids))
            p.send_signal(signal.SIGINT)
            eq(p.wait(10), 0, "swarmctl logs -f status after SIGINT")
        finally:
            swarmtest._kill_proc(p)

        r = run_swarmctl(["--http", "127.0.0.1:1", "logs"])
        eq(r.returncode, 2, "swarmctl logs on a connection error (stderr: %s)" % r.stderr)
        check("127.0.0.1:1" in r.stderr, "the error names the address: %r" % r.stderr)
        r = run_swarmctl(["--http", d.http, "logs", "-n", "x"])
        eq(r.returncode, 2, "swarmctl logs -n x")


if __name__ == "__main__":
    main()
