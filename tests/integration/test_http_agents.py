#!/usr/bin/python3
"""HTTP agents (issue 11; DESIGN.md §2, §6): swarmd drives an OpenAI-compatible
endpoint directly, as a pool of kind `http`, against the mock server in
tests/fixtures/mock_llm.py.

    SWD_BUILD_DIR=build /usr/bin/python3 tests/integration/test_http_agents.py [-k NAME]

Covered: output and usage of N tasks, the raw format, the agent in agent.list;
the Authorization secret expanded from the environment and absent from
/logs, /status, /agents, --print-config and the report; 429 + Retry-After
(seconds and HTTP date) retried after the delay with the agent in cooldown;
400 failing at once with the server's message; a hanging endpoint timed
out, cancelled and retried; a killed server (connection refused) retried
with the health falling, then recovered; max_concurrency 8 exactly;
keep-alive reuse; rpm and tpm quotas on a scaled minute (tasks wait queued,
the agent shows reason "quota"); an oversized answer refused as too_large;
an unset ${VAR} refused at start; examples/llm-http.yaml end to end.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import swarmtest  # noqa: E402
from swarmtest import (  # noqa: E402
    Daemon, binary, check, eq, free_port, main, note, test, wait_terminal, wait_until,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOCK = os.path.join(REPO, "tests", "fixtures", "mock_llm.py")
EXAMPLE = os.path.join(REPO, "examples", "llm-http.yaml")
PY = "/usr/bin/python3"


class Mock:
    """tests/fixtures/mock_llm.py on a free (or given) loopback port."""

    def __init__(self, *args, port=0):
        self.dir = tempfile.mkdtemp(prefix="swd-mock-")
        self.args = [str(a) for a in args]
        self.port = port
        self.proc = None
        self.start()

    def start(self):
        port_file = os.path.join(self.dir, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.err = open(os.path.join(self.dir, "stderr"), "ab")
        self.proc = swarmtest._spawn([PY, MOCK, "--port", str(self.port), "--port-file",
                                      port_file] + self.args, swarmtest._child_env(),
                                     subprocess.DEVNULL, self.err)

        def read_port():
            if self.proc.poll() is not None:
                raise AssertionError("mock_llm exited with %s" % self.proc.returncode)
            try:
                with open(port_file) as f:
                    return int(f.read().strip() or 0)
            except (OSError, ValueError):
                return None
        self.port = wait_until(read_port, 20, what="the mock's port file")
        self.host = "127.0.0.1:%d" % self.port
        self.url = "http://%s/v1/chat/completions" % self.host

    def kill(self):
        swarmtest._kill_proc(self.proc, signal.SIGKILL)
        self.err.close()

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def stats(self):
        with urllib.request.urlopen("http://%s/stats" % self.host, timeout=10) as r:
            return json.loads(r.read())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def pool_config(url, *, name="llm", extra="", caps="[chat]", conc=4, top=""):
    """A swarmd config with one http pool (`extra`: more pool keys, YAML)."""
    text = textwrap.dedent("""\
        scheduler:
          backoff_base_ms: 50
          backoff_max_ms: 500
        log:
          level: debug
        pools:
          - name: %s
            kind: http
            endpoint: "%s"
            capabilities: %s
            max_concurrency: %d
        """) % (name, url, caps, conc)
    text += "".join("    " + line + "\n" for line in textwrap.dedent(extra).splitlines() if line)
    return top + text


def submit_many(c, n, payload=lambda i: "hello %d" % i, type_="chat", **kw):
    return [c.submit(type_, payload(i), **kw)["task_id"] for i in range(n)]


def agent(d, name="llm"):
    a = d.ctl.agent_by_name(name)
    check(a is not None, "agent %s not listed" % name)
    return a


# ---------------------------------------------------------------------------
# Answers


@test
def tasks_succeed_with_content_and_usage():
    with Mock("--latency-ms", 5, "--completion-tokens", 10) as m, \
            Daemon(config=pool_config(m.url, extra="model: gpt-mock")) as d:
        a = agent(d)
        eq(a["transport"], "http", "transport")
        eq(a["pool"], "llm", "pool")
        eq(a["max_concurrency"], 4, "max_concurrency")
        eq(a["capabilities"], ["chat"], "capabilities")
        eq(a["labels"].get("endpoint"), m.url, "labels.endpoint")
        c = d.client()
        ids = submit_many(c, 30, estimated_tokens=500)
        done = wait_terminal(c, ids, 60)
        for i, t in enumerate(ids):
            task = done[t]
            eq(task["state"], "succeeded", "task %d: %r" % (i, task.get("error")))
            prompt = "hello %d" % i
            eq(task["result"], "mock reply to: " + prompt, "output of task %d" % i)
            eq(task["tokens_used"], max(1, len(prompt) // 4) + 10, "tokens_used of task %d" % i)
            eq(task["attempts"], 1, "attempts")
        s = m.stats()
        eq(s["requests"], 30, "requests the mock saw")
        eq(s["models"], ["gpt-mock"], "the pool's model was sent")
        a = agent(d)
        eq(a["completed"], 30, "agent completed")
        check(a["health"] > 0.6, "health after 30 successes: %r" % a["health"])
        # Payload maps: messages as given, prompt + system, and the payload's
        # own model and max_tokens over the pool's defaults.
        t1 = c.submit("chat", {"messages": [{"role": "user", "content": "from messages"}],
                               "model": "other", "max_tokens": 7})["task_id"]
        r1 = c.wait(t1)
        eq(r1["result"], "mock reply to: from messages", "messages payload")
        body = m.stats()["last_body"]
        eq(body.get("model"), "other", "payload model wins")
        eq(body.get("max_tokens"), 7, "payload max_tokens")
        t2 = c.submit("chat", {"system": "be brief", "prompt": "from prompt"})["task_id"]
        eq(c.wait(t2)["result"], "mock reply to: from prompt", "prompt payload")
        eq(m.stats()["last_body"]["messages"][0], {"role": "system", "content": "be brief"},
           "system message")


@test
def raw_format_posts_the_payload():
    with Mock("--latency-ms", 1) as m, \
            Daemon(config=pool_config("http://%s/echo" % m.host, extra="format: raw")) as d:
        c = d.client()
        t = c.submit("chat", {"question": "why", "n": [1, 2]})["task_id"]
        task = c.wait(t)
        eq(task["state"], "succeeded", "raw task: %r" % task.get("error"))
        eq(task["result"]["echo"], {"question": "why", "n": [1, 2]}, "raw output")
        eq(task["tokens_used"], task["result"]["usage"]["total_tokens"], "raw usage")


@test
def too_large_answer_is_refused():
    top = "limits:\n  max_message_bytes: 4096\n"
    with Mock("--latency-ms", 1, "--big-reply", 20000) as m, \
            Daemon(config=pool_config(m.url, top=top)) as d:
        c = d.client()
        task = c.wait(c.submit("chat", "big", max_retries=3)["task_id"])
        eq(task["state"], "failed", "state")
        eq(task["error"]["code"], "too_large", "error code")
        eq(task["attempts"], 1, "not retried")


# ---------------------------------------------------------------------------
# Secrets


@test
def secret_header_expanded_and_never_shown():
    secret = "sk-test-%d-DO-NOT-LEAK" % os.getpid()
    env = {"SWD_TEST_LLM_KEY": secret}
    extra = 'headers:\n  Authorization: "Bearer ${SWD_TEST_LLM_KEY}"\n  X-Static: "plain-${SWD_TEST_LLM_KEY}"\n'
    with Mock("--latency-ms", 1, "--require-auth", "Bearer " + secret) as m:
        cfg = pool_config(m.url, extra=extra)
        with Daemon(config=cfg, env=env) as d:
            c = d.client()
            ids = submit_many(c, 5)
            done = wait_terminal(c, ids, 30)
            for t in ids:
                eq(done[t]["state"], "succeeded", "authorized request: %r" % done[t].get("error"))
            eq(m.stats()["auth"], ["Bearer " + secret], "Authorization the mock saw")
            for path in ("/logs?n=10000", "/status", "/agents", "/metrics", "/tasks/" + ids[0]):
                status, _, body = d.http_get(path)
                eq(status, 200, path)
                check(secret.encode() not in body, "the secret is in %s" % path)
            for rec in c.call("agent.list")["agents"]:
                check(secret not in json.dumps(rec), "the secret is in agent.list")
            config_path = d.config_path
            pc = swarmtest.run_swarmd(["--print-config", "--config", config_path], env=env)
            eq(pc.returncode, 0, "--print-config: %s" % pc.stderr)
            check(secret not in pc.stdout + pc.stderr, "the secret is in --print-config")
            check("***" in pc.stdout, "headers masked in --print-config:\n%s" % pc.stdout)
        check(secret not in d.stderr_text(), "the secret is in swarmd's log (stderr)")
        # swarmd run: the report, the results, the summary and the log.
        tmp = tempfile.mkdtemp(prefix="swd-secret-")
        try:
            wl = os.path.join(tmp, "w.yaml")
            with open(wl, "w") as f:
                f.write(cfg + "tasks:\n  - type: chat\n    count: 3\n    payload: \"q {i}\"\n")
            rep, res = os.path.join(tmp, "r.json"), os.path.join(tmp, "r.jsonl")
            r = swarmtest.run_swarmd(["run", wl, "--listen", "127.0.0.1:0", "--http",
                                      "127.0.0.1:0", "--report", rep, "--results", res,
                                      "--log-level", "debug"], env=env, timeout=60)
            eq(r.returncode, 0, "swarmd run: %s" % r.stderr[-3000:])
            for path in (rep, res):
                with open(path) as f:
                    check(secret not in f.read(), "the secret is in %s" % path)
            check(secret not in r.stdout + r.stderr, "the secret is in swarmd run's output")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@test
def secret_echoed_by_the_server_is_scrubbed():
    secret = "sk-echo-%d-DO-NOT-LEAK" % os.getpid()
    extra = 'headers:\n  Authorization: "Bearer ${SWD_TEST_LLM_KEY}"\n'
    with Mock("--always-400", "Incorrect API key provided: {auth}") as m, \
            Daemon(config=pool_config(m.url, extra=extra),
                   env={"SWD_TEST_LLM_KEY": secret}) as d:
        c = d.client()
        task = c.wait(c.submit("chat", "hi")["task_id"])
        eq(task["state"], "failed", "state")
        msg = task["error"]["message"]
        check(secret not in msg, "the echoed key is in the task's error: %r" % msg)
        check("Incorrect API key provided: ***" in msg, "scrubbed message: %r" % msg)
        status, _, body = d.http_get("/logs?n=10000")
        check(secret.encode() not in body, "the echoed key is in /logs")


@test
def unset_variable_refused_at_start():
    cfg = pool_config("http://127.0.0.1:9/v1/chat/completions",
                      extra='headers:\n  Authorization: "Bearer ${SWD_TEST_UNSET_VAR}"\n')
    tmp = tempfile.mkdtemp(prefix="swd-unset-")
    try:
        path = os.path.join(tmp, "c.yaml")
        with open(path, "w") as f:
            f.write(cfg)
        r = swarmtest.run_swarmd(["serve", "--config", path, "--listen", "127.0.0.1:0",
                                  "--http", "127.0.0.1:0"], env={"SWD_TEST_UNSET_VAR": None})
        eq(r.returncode, 2, "exit status; stderr: %s" % r.stderr)
        check("SWD_TEST_UNSET_VAR is not set" in r.stderr, r.stderr)
        check("listening" not in r.stderr, "nothing listened: %s" % r.stderr)
        with open(os.path.join(tmp, "w.yaml"), "w") as f:
            f.write(cfg + "tasks:\n  - type: chat\n")
        r = swarmtest.run_swarmd(["run", os.path.join(tmp, "w.yaml"), "--listen", "127.0.0.1:0",
                                  "--http", "127.0.0.1:0"], env={"SWD_TEST_UNSET_VAR": None})
        eq(r.returncode, 2, "swarmd run exit status; stderr: %s" % r.stderr)
        check("SWD_TEST_UNSET_VAR is not set" in r.stderr, r.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# Errors and retries


def retry_after_case(spec, min_gap_ms):
    with Mock("--latency-ms", 1, "--fail-429-first", 1, "--retry-after", spec) as m, \
            Daemon(config=pool_config(m.url)) as d:
        c = d.client()
        t = c.submit("chat", "limited", max_retries=3)["task_id"]

        def cooling():
            a = agent(d)
            return a if a["reason"] == "retry_after" else None
        a = wait_until(cooling, 10, what="the agent in a retry_after cooldown")
        check(a["cooldown_until_ms"] is not None, "cooldown_until_ms: %r" % a)
        eq(c.get(t)["state"], "queued", "the task waits queued")
        task = c.wait(t, 20)
        eq(task["state"], "succeeded", "state: %r" % task.get("error"))
        eq(task["attempts"], 2, "attempts")
        ts = m.stats()["timestamps"]
        eq(len(ts), 2, "requests")
        gap = ts[1] - ts[0]
        note("Retry-After %s: second request %d ms after the first" % (spec, gap))
        check(gap >= min_gap_ms, "retried after %d ms, before the asked %d ms" % (gap, min_gap_ms))
        eq(m.stats()["statuses"].get("429"), 1, "one 429")
        a = agent(d)
        eq(a["reason"], None, "cooldown over")
        eq(a["failed"], 1, "the 429 counts as a failure")


@test
def retry_after_seconds():
    retry_after_case("2", 2000)


@test
def retry_after_http_date():
    # An HTTP date has whole seconds: 3 s ahead is at least 2 s away.
    retry_after_case("date:3", 2000)


@test
def bad_request_fails_at_once_with_the_servers_message():
    msg = "The model `nope` does not exist"
    with Mock("--always-400", msg) as m, Daemon(config=pool_config(m.url)) as d:
        c = d.client()
        task = c.wait(c.submit("chat", "hi", max_retries=5)["task_id"])
        eq(task["state"], "failed", "state")
        eq(task["attempts"], 1, "not retried")
        eq(task["error"]["code"], "bad_request", "code")
        check(msg in task["error"]["message"], "server message in %r" % task["error"])
        check("400" in task["error"]["message"], "status in %r" % task["error"])
        eq(m.stats()["requests"], 1, "one request")


@test
def hanging_endpoint_times_out_and_is_retried():
    with Mock("--latency-ms", 1, "--hang-first", 1) as m, \
            Daemon(config=pool_config(m.url)) as d:
        c = d.client()
        t0 = time.monotonic()
        task = c.wait(c.submit("chat", "slow", timeout_ms=1000, max_retries=2)["task_id"], 30)
        eq(task["state"], "succeeded", "state: %r" % task.get("error"))
        eq(task["attempts"], 2, "attempts")
        check(time.monotonic() - t0 >= 1.0, "the first attempt waited for its timeout")
        eq(m.stats()["requests"], 2, "requests")
        # The timed-out request was cancelled: its connection closed, and the
        # mock's hanging handler saw it go.
        wait_until(lambda: m.stats()["inflight"] == 0, 10, what="the hung request to end")
        a = agent(d)
        eq(a["failed"], 1, "the timeout counts as a failure")
        eq(a["inflight"], 0, "agent inflight")


@test
def killed_server_retries_and_recovers():
    port = free_port()
    m = Mock("--latency-ms", 1, port=port)
    try:
        with Daemon(config=pool_config(m.url)) as d:
            c = d.client()
            ids = submit_many(c, 5)
            for t, task in wait_terminal(c, ids, 30).items():
                eq(task["state"], "succeeded", "warm-up")
            healthy = agent(d)["health"]
            m.kill()
            ids = submit_many(c, 6, max_retries=30)

            def unhealthy():
                a = agent(d)
                return a if a["failed"] >= 6 else None
            a = wait_until(unhealthy, 20, what="connection failures")
            note("health %.3f with the server up, %.3f after %d refused connections"
                 % (healthy, a["health"], a["failed"]))
            check(a["health"] < healthy - 0.05, "health fell: %r -> %r" % (healthy, a["health"]))
            for t in ids:
                check(c.get(t)["state"] in ("queued", "running"), "still being retried")
            errs = [c.get(t).get("error") for t in ids]
            check(any(e and e["code"] == "connection_failed" for e in errs),
                  "a connection_failed error: %r" % errs)
            m.start()  # the same port
            for t, task in wait_terminal(c, ids, 60).items():
                eq(task["state"], "succeeded", "after recovery: %r" % task.get("error"))
                check(task["attempts"] >= 2, "retried")
    finally:
        m.stop()


# ---------------------------------------------------------------------------
# Concurrency and quotas


@test
def max_concurrency_is_the_in_flight_limit():
    with Mock("--latency-ms", 150) as m, Daemon(config=pool_config(m.url, conc=8)) as d:
        c = d.client()
        ids = submit_many(c, 64)

        def busy():
            a = agent(d)
            return a if a["inflight"] == 8 else None
        a = wait_until(busy, 10, what="8 requests in flight")
        eq(a["state"], "busy", "state")
        for t, task in wait_terminal(c, ids, 60).items():
            eq(task["state"], "succeeded", "state")
        s = m.stats()
        eq(s["max_inflight"], 8, "most requests the mock saw at once")
        eq(s["requests"], 64, "requests")
        note("64 requests over %d connections" % s["connections"])
        check(s["connections"] <= 8, "kept-alive connections reused: %d" % s["connections"])


def windows(ts, width_ms):
    """The most timestamps in any window [t, t + width)."""
    best, j = 0, 0
    for i in range(len(ts)):
        while ts[i] - ts[j] >= width_ms:
            j += 1
        best = max(best, i - j + 1)
    return best


@test
def rpm_quota_on_a_scaled_minute():
    # rpm: 60 under `swarmd run --time-scale 0.05`: a minute lasts 3 s, so 20
    # requests a second at most, with a burst of a tenth of a second's: 2.
    with Mock("--latency-ms", 1) as m:
        tmp = tempfile.mkdtemp(prefix="swd-rpm-")
        try:
            wl = os.path.join(tmp, "w.yaml")
            with open(wl, "w") as f:
                f.write(pool_config(m.url, conc=16, extra="rpm: 60")
                        + "tasks:\n  - type: chat\n    count: 120\n    payload: \"q {i}\"\n")
            rep, ready = os.path.join(tmp, "r.json"), os.path.join(tmp, "ready.json")
            argv = [binary("swarmd"), "run", wl, "--listen", "127.0.0.1:0", "--http",
                    "127.0.0.1:0", "--time-scale", "0.05", "--report", rep, "--ready-file", ready]
            err = open(os.path.join(tmp, "stderr"), "wb")
            p = swarmtest._spawn(argv, swarmtest._child_env(), subprocess.DEVNULL, err)
            saw = watch_run_for_quota(p, ready)
            eq(p.wait(60), 0, "swarmd run exit status")
            err.close()
            check(saw, "while it ran, the agent showed reason quota with tasks queued")
            ts = sorted(m.stats()["timestamps"])
            eq(len(ts), 120, "requests")
            span = ts[-1] - ts[0]
            w1, w3 = windows(ts, 1000), windows(ts, 3000)
            note("120 requests in %d ms; most in 1 s: %d, in one scaled minute (3 s): %d"
                 % (span, w1, w3))
            # (120 - a burst of 2) at 20 a second: 5.9 s at the least. Arrival
            # times at the mock jitter a little: 2 requests of slack.
            check(span >= 5800, "the quota held requests back: %d ms" % span)
            check(w3 <= 60 + 2 + 2, "at most rpm (+ the burst) per scaled minute: %d" % w3)
            check(w1 <= 20 + 2 + 2, "at most 20/s (+ the burst): %d" % w1)
            with open(rep) as f:
                pool = json.load(f)["pools"][0]
            check(pool["http"]["quota_waits"] > 0, "quota waits counted: %r" % pool["http"])
            eq(pool["failures"], 0, "no attempt failed for quota")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def watch_run_for_quota(p, ready_path):
    """Polls a running `swarmd run`'s status endpoint until it exits; True
    when the agent was seen in a quota cooldown while tasks were queued."""
    addr = None
    seen = False
    deadline = time.monotonic() + 60
    while p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            if addr is None:
                with open(ready_path) as f:
                    addr = json.load(f)["http"]
            with urllib.request.urlopen("http://%s/agents" % addr, timeout=5) as r:
                agents = json.loads(r.read())["agents"]
            with urllib.request.urlopen("http://%s/status" % addr, timeout=5) as r:
                queued = json.loads(r.read())["queue"]["queued"]
        except (OSError, ValueError, KeyError):
            continue
        if any(a["reason"] == "quota" and a["cooldown_until_ms"] for a in agents) and queued > 0:
            seen = True
    return seen


@test
def tpm_quota_charged_by_estimate_corrected_by_usage():
    # tpm 60000: 1000 tokens a second, a bucket of 100. Each task is
    # estimated at 1000 tokens but uses ~12 (the mock's usage). Charged by its
    # estimate at dispatch, one request empties the bucket: never two in
    # flight, though max_concurrency is 4. Charged by the estimate alone, 60
    # tasks would need a minute; corrected by the usage, a few seconds.
    with Mock("--latency-ms", 1, "--completion-tokens", 10) as m, \
            Daemon(config=pool_config(m.url, conc=4, extra="tpm: 60000")) as d:
        c = d.client()
        t0 = time.monotonic()
        ids = submit_many(c, 60, estimated_tokens=1000)
        saw = {"quota": False, "queued": False}

        def watch():
            a = agent(d)
            if a["reason"] == "quota":
                saw["quota"] = True
                check(a["cooldown_until_ms"] is not None, "quota cooldown has an expiry")
                if c.call("task.list", {"state": "queued", "limit": 1})["tasks"]:
                    saw["queued"] = True
            return sum(1 for t in ids if c.get(t)["state"] == "succeeded") == len(ids) or None
        wait_until(watch, 60, 0.02, "60 tasks done")
        took = time.monotonic() - t0
        note("60 tasks estimated at 1000 tokens under tpm 60000: %.1f s" % took)
        check(saw["quota"], "the agent showed reason quota")
        check(saw["queued"], "tasks waited queued, not failed")
        check(took < 20, "usage corrected the estimates: %.1f s" % took)
        eq(m.stats()["max_inflight"], 1, "estimates charged at dispatch: requests at once")
        tasks = [c.get(t) for t in ids]
        for t in tasks:
            eq(t["attempts"], 1, "no attempt failed for quota")
        wait_until(lambda: agent(d)["reason"] is None, 10, what="the quota wait to end")


# ---------------------------------------------------------------------------
# The example


@test
def example_llm_http_runs_against_the_mock():
    with Mock("--latency-ms", 20, "--latency-spread", 0.5) as m:
        tmp = tempfile.mkdtemp(prefix="swd-example-")
        try:
            rep, res = os.path.join(tmp, "r.json"), os.path.join(tmp, "r.jsonl")
            r = swarmtest.run_swarmd(["run", EXAMPLE, "--listen", "127.0.0.1:0", "--http",
                                      "127.0.0.1:0", "--report", rep, "--results", res],
                                     env={"LLM_HOST": m.host}, timeout=120)
            eq(r.returncode, 0, "swarmd run: %s\n%s" % (r.stdout[-2000:], r.stderr[-3000:]))
            with open(rep) as f:
                report = json.load(f)
            eq(report["tasks"]["succeeded"], 14, "tasks")
            eq(sorted(p["kind"] for p in report["pools"]), ["http", "http"], "pool kinds")
            with open(res) as f:
                lines = [json.loads(x) for x in f if x.strip()]
            for x in lines:
                check(x["output"].startswith("mock reply to: "), "output %r" % x["output"])
                check(x["tokens_used"] > 0, "tokens")
            eq(sorted(m.stats()["models"]), ["mock-large", "mock-small"], "models per pool")
            by = {x["key"]: x for x in lines}
            check(by["synthesis"]["started_ms"] >= max(by["research-%d" % i]["finished_ms"]
                                                       for i in range(1, 13)),
                  "synthesis after research")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
