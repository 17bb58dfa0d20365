#!/usr/bin/python3
"""`swarmd run WORKLOAD`: the example workloads end to end (scaled down to
run in seconds), process pools (a killed agent is restarted and its task
retried), Ctrl-C, no leftover processes, and bad workloads refused with
file:line before anything starts (issue 5; DESIGN.md §6, §7).

    SWD_BUILD_DIR=build /usr/bin/python3 tests/integration/test_run.py [-k NAME]
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import swarmtest  # noqa: E402
from swarmtest import (  # noqa: E402
    Client, binary, check, eq, main, note, test, wait_until,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "examples")
# Counts x0.25 and every duration x0.05: each example runs in a few seconds.
SCALE, TIME_SCALE = "0.25", "0.05"


# ---------------------------------------------------------------------------
# Helpers

_tmpdirs = []
atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _tmpdirs])


def mkdtemp(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def processes_with(marker):
    """Pids of live (non-zombie) processes whose environment holds `marker`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = f.read()
            with open("/proc/%s/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in env and state != "Z":
            found.append(int(pid))
    return found


def children_of(pid):
    """{pid: (state, environ dict)} of the direct children of `pid`."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if int(rest[1]) != pid:
                continue
            with open("/proc/%s/environ" % p, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        except (OSError, ValueError, IndexError):
            continue
        out[int(p)] = (rest[0], {k.decode(): v.decode("utf-8", "replace")
                                 for k, v in env.items()})
    return out


class Run:
    """One `swarmd run` process with a report, results, a ready file and an
    environment marker that finds every process it started."""

    def __init__(self, workload, *extra, scale=SCALE, time_scale=TIME_SCALE, env=None):
        self.dir = mkdtemp(prefix="swd-run-")
        self.report_path = os.path.join(self.dir, "report.json")
        self.results_path = os.path.join(self.dir, "results.jsonl")
        self.ready_path = os.path.join(self.dir, "ready.json")
        self.marker = "swdtest-" + uuid.uuid4().hex
        argv = [binary("swarmd"), "run", workload, "--listen", "127.0.0.1:0",
                "--http", "127.0.0.1:0", "--report", self.report_path,
                "--results", self.results_path, "--ready-file", self.ready_path]
        if scale is not None:
            argv += ["--scale", scale]
        if time_scale is not None:
            argv += ["--time-scale", time_scale]
        argv += list(extra)
        e = dict(env or {})
        e["SWD_TEST_MARKER"] = self.marker
        self.out_path = os.path.join(self.dir, "stdout")
        self.err_path = os.path.join(self.dir, "stderr")
        self.out = open(self.out_path, "w")
        self.err = open(self.err_path, "w")
        self.proc = swarmtest._spawn(argv, swarmtest._child_env(e), self.out, self.err)
        self.code = None

    def wait(self, timeout=90.0):
        try:
            self.code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("swarmd run did not finish in %.0f s; stderr:\n%s"
                                 % (timeout, self.stderr()[-4000:]))
        finally:
            self.out.close()
            self.err.close()
        return self.code

    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def report(self):
        with open(self.report_path) as f:
            return json.load(f)

    def results(self):
        with open(self.results_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def ready(self):
        def read():
            try:
                with open(self.ready_path) as f:
                    return json.load(f)
            except (OSError, ValueError):
                return None
        return wait_until(read, timeout=20, what="the ready file")

    def check_no_leftovers(self):
        # swarmd reaped its children before it exited: none may remain,
        # neither alive nor re-parented.
        left = processes_with(self.marker)
        check(not left, "processes left after swarmd run exited: %r" % left)


def run_example(name, *extra, timeout=90.0):
    r = Run(os.path.join(EXAMPLES, name), *extra)
    code = r.wait(timeout)
    if code not in (0, 1):
        raise AssertionError("exit %r; stderr:\n%s" % (code, r.stderr()[-4000:]))
    r.check_no_leftovers()
    return r, code


def check_accounting(r, rep, res):
    """Every task is in the report and in the results, exactly once, terminal."""
    t = rep["tasks"]
    eq(len(res), t["total"], "results lines vs report total")
    eq(len({x["key"] for x in res}), len(res), "distinct keys in results")
    eq(len({x["task_id"] for x in res}), len(res), "distinct task ids in results")
    eq(t["succeeded"] + t["failed"] + t["cancelled"], t["total"], "terminal tasks")
    eq(t["unfinished"], 0, "unfinished tasks")
    for x in res:
        check(x["state"] in ("succeeded", "failed", "cancelled"), "not terminal: %r" % x)
    eq(sum(1 for x in res if x["state"] == "succeeded"), t["succeeded"], "succeeded count")
    # Every attempt past the first of a task was a retry, unless the task
    # was cancelled or failed while that attempt ran.
    check(t["retries"] <= t["attempts"] - sum(1 for x in res if x["attempts"] > 0),
          "retries within attempts")
    eq(t["retries"], sum(a["retries"] for a in rep["agents"]), "retries per agent add up")
    eq(sum(p["tasks"] for p in rep["pools"]), sum(a["tasks"] for a in rep["agents"]),
       "pool attempts add up")


def check_dependencies(res):
    """A task started only after everything it waits for finished."""
    by_key = {x["key"]: x for x in res}
    checked = 0
    for x in res:
        for dep in x["after"]:
            d = by_key[dep]
            if x["state"] == "succeeded":
                eq(d["state"], "succeeded", "dependency %s of %s" % (dep, x["key"]))
                check(x["started_ms"] >= d["finished_ms"],
                      "%s started at %s before its dependency %s finished at %s"
                      % (x["key"], x["started_ms"], dep, d["finished_ms"]))
                checked += 1
    return checked


# ---------------------------------------------------------------------------
# The examples


@test
def research_swarm_example():
    r, code = run_example("research-swarm.yaml")
    eq(code, 0, "exit status (stderr: %s)" % r.stderr()[-2000:])
    rep, res = r.report(), r.results()
    check_accounting(r, rep, res)
    # plan, 24 x 0.25 = 6 research tasks, synthesis, review.
    eq(rep["tasks"]["total"], 9, "tasks")
    eq(rep["tasks"]["succeeded"], 9, "succeeded")
    keys = [x["key"] for x in res]
    check("plan" in keys and "synthesis" in keys and "review" in keys, keys)
    synth = next(x for x in res if x["key"] == "synthesis")
    eq(sorted(synth["after"]), sorted(k for k in keys if k.startswith("research-")),
       "synthesis waits for every research task")
    check(check_dependencies(res) >= 8, "dependencies checked")
    eq({p["name"] for p in rep["pools"]}, {"leads", "researchers"}, "pools")
    eq(sum(p["agents"] for p in rep["pools"]), 8, "agents started")
    for a in rep["agents"]:
        check(a["name"].startswith(a["pool"] + "-"), "agent named after its pool: %r" % a)
    check(rep["tokens"]["used"] > 0, "tokens used")
    check(rep["latency_ms"]["p50"] is not None, "latency percentiles")
    out = r.stdout()
    check("research-swarm: 9 tasks" in out and "p95" in out, "summary on stdout:\n" + out)
    check(re.search(r"rpc 127\.0\.0\.1:\d+", r.stderr()), "rpc address printed")


@test
def batch_example():
    r, code = run_example("batch-mixed-priority.yaml")
    eq(code, 0, "exit status (stderr: %s)" % r.stderr()[-2000:])
    rep, res = r.report(), r.results()
    check_accounting(r, rep, res)
    # 150, 1200, 1000, 600, 300, 750 x 0.25, each rounded: 38 + 300 + 250 +
    # 150 + 75 + 188.
    eq(rep["tasks"]["total"], 1001, "4000 tasks x 0.25")
    check(check_dependencies(res) == 150, "each summary after its extraction")
    types = {t["type"]: t for t in rep["types"]}
    eq(set(types), {"classify", "extract", "summarize", "translate", "embed"}, "types")
    # Critical incidents were queued with everything else but ran first.
    crit = [x for x in res if x["key"].startswith("incident-")]
    low = [x for x in res if x["key"].startswith("embed-")]
    crit_start = sorted(x["started_ms"] for x in crit)
    low_start = sorted(x["started_ms"] for x in low)
    check(crit_start[len(crit_start) // 2] <= low_start[len(low_start) // 2],
          "critical tasks start before low ones (medians %s, %s)"
          % (crit_start[len(crit_start) // 2], low_start[len(low_start) // 2]))


@test
def flaky_example_retries_counted_nothing_lost():
    r, code = run_example("flaky-agents.yaml")
    rep, res = r.report(), r.results()
    check_accounting(r, rep, res)
    eq(rep["tasks"]["total"], 151, "600 x 0.25 + the report")
    eq(code, 0 if rep["tasks"]["succeeded"] == 151 else 1, "exit status")
    check(rep["tasks"]["succeeded"] >= 149, "nearly everything succeeds: %r" % rep["tasks"])
    flaky = next(a for a in rep["agents"] if a["name"] == "flaky-1")
    check(flaky["failures"] > 0 and flaky["retries"] > 0, "flaky agent's retries: %r" % flaky)
    check(rep["tasks"]["retries"] >= flaky["retries"], "retries counted")
    retried = [x for x in res if x["attempts"] > 1]
    check(len(retried) >= flaky["retries"] // 2, "retried tasks in the results")
    for x in retried:
        if x["state"] == "succeeded":
            eq(x["error"], None, "a retried success carries no error")
    report = next(x for x in res if x["key"] == "report")
    eq(len(report["after"]), 150, "the report waits for every extraction")
    check_dependencies(res)


# ---------------------------------------------------------------------------
# Process pools


def write(dirpath, name, text):
    path = os.path.join(dirpath, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


@test
def killed_agent_restarted_and_task_retried():
    d = mkdtemp(prefix="swd-wl-")
    wl = write(d, "kill.yaml", """\
        name: kill-test
        pools:
          - name: workers
            kind: process
            command: [swarm-agent, --stdio, --sim, --latency-ms, "1500", --latency-spread, "0"]
            min: 2
            max_concurrency: 1
            restart: always
        tasks:
          - key: "job-{i}"
            type: work
            count: 6
            max_retries: 3
        """)
    r = Run(wl, scale=None, time_scale=None)
    ready = r.ready()
    pid = ready["pid"]
    with Client(ready["rpc"]) as c:
        busy = wait_until(lambda: [a for a in c.agents() if a["inflight"] > 0 and
                                   a["state"] != "dead"], timeout=20, what="a busy agent")
        victim = busy[0]
        kids = children_of(pid)
        pids = [p for p, (st, env) in kids.items()
                if env.get("SWARMD_AGENT_NAME") == victim["name"]]
        eq(len(pids), 1, "one child named %s among %r" % (victim["name"], kids))
        note("killing %s (pid %d) mid-task" % (victim["name"], pids[0]))
        os.kill(pids[0], signal.SIGKILL)
        # The pool starts a new process under the same name.
        wait_until(lambda: [p for p, (st, env) in children_of(pid).items()
                            if env.get("SWARMD_AGENT_NAME") == victim["name"]
                            and p != pids[0] and st != "Z"],
                   timeout=15, what="the restarted child")
        # The killed child was reaped, not left a zombie.
        wait_until(lambda: pids[0] not in children_of(pid), timeout=5,
                   what="the killed child reaped")
    eq(r.wait(60), 0, "exit status; stderr:\n%s" % r.stderr()[-3000:])
    rep, res = r.report(), r.results()
    check_accounting(r, rep, res)
    eq(rep["tasks"]["succeeded"], 6, "every task succeeded")
    eq(rep["pools"][0]["restarts"], 1, "one restart")
    lost = [x for x in res if x["attempts"] > 1]
    check(lost, "the killed agent's task was retried: %r" % res)
    names = [a["name"] for a in rep["agents"]]
    eq(names.count(victim["name"]), 2, "the restarted agent registered anew: %r" % names)
    dead = next(a for a in rep["agents"] if a["agent_id"] == victim["agent_id"])
    check(dead["state"] in ("dead", "gone"), "the killed agent is dead: %r" % dead)
    check(dead["retries"] >= 1, "its lost attempt counts as a retry: %r" % dead)
    r.check_no_leftovers()


@test
def interrupt_cancels_queued_and_reports():
    d = mkdtemp(prefix="swd-wl-")
    wl = write(d, "long.yaml", """\
        name: long
        pools:
          - name: w
            kind: process
            command: [swarm-agent, --stdio, --sim, --latency-ms, "800", --latency-spread, "0"]
            min: 2
        tasks:
          - key: "t-{i}"
            type: work
            count: 40
        """)
    r = Run(wl, scale=None, time_scale=None)
    ready = r.ready()
    with Client(ready["rpc"]) as c:
        wait_until(lambda: c.stats()["tasks"]["succeeded"] >= 2, timeout=20,
                   what="two tasks done")
    r.proc.send_signal(signal.SIGINT)
    eq(r.wait(30), 1, "exit status after an interrupt; stderr:\n%s" % r.stderr()[-3000:])
    rep, res = r.report(), r.results()
    check(rep["interrupted"], "interrupted in the report")
    check_accounting(r, rep, res)
    check(rep["tasks"]["cancelled"] >= 30, "queued tasks cancelled: %r" % rep["tasks"])
    # Running tasks were let finish: none failed.
    eq(rep["tasks"]["failed"], 0, "no task failed")
    check("interrupted" in r.stderr(), "the interrupt is acknowledged")
    r.check_no_leftovers()


# ---------------------------------------------------------------------------
# Bad workloads: exit 2, FILE:LINE, nothing started


GOOD_POOL = """\
pools:
  - name: w
    kind: process
    command: [swarm-agent, --stdio, --sim]
    min: 1
"""

BAD = {
    "unknown_key": (GOOD_POOL + """\
tasks:
  - type: work
    colour: blue
""", 8, "colour: unknown key"),
    "wrong_type": (GOOD_POOL + """\
tasks:
  - type: work
    count: many
""", 8, "count: expected an integer"),
    "cycle": (GOOD_POOL + """\
tasks:
  - key: a
    type: work
    after: [c]
  - key: b
    type: work
    after: [a]
  - key: c
    type: work
    after: [b]
""", -1, "after: cycle"),
    "unknown_after": (GOOD_POOL + """\
tasks:
  - key: a
    type: work
    after: [nope]
""", 9, "no task has the key \"nope\""),
    "missing_command": ("""\
pools:
  - name: w
    kind: process
    min: 1
tasks:
  - type: work
""", 2, "command: required"),
    "command_not_found": ("""\
pools:
  - name: w
    kind: process
    command: [no-such-agent-binary, --stdio]
    min: 1
tasks:
  - type: work
""", 4, "cannot run \"no-such-agent-binary\""),
    "budget": (GOOD_POOL + """\
budget:
  total_tokens: 1000
tasks:
  - type: work
""", 6, "budget: token budgets are not implemented"),
    "http_pool_bad_endpoint": ("""\
pools:
  - name: llm
    kind: http
    endpoint: ftp://127.0.0.1:9/v1/chat/completions
tasks:
  - type: work
""", 4, "endpoint: expected an http:// or https:// URL"),
    "no_pool_for_type": ("""\
pools:
  - name: w
    kind: process
    command: [swarm-agent, --stdio, --sim]
    capabilities: [write]
    min: 1
tasks:
  - type: draw
""", None, "tasks of type \"draw\""),
    "unknown_section": (GOOD_POOL + """\
shceduler:
  default_timeout_ms: 5
tasks:
  - type: work
""", 6, "unknown section"),
}


@test
def bad_workloads_exit_2_nothing_started():
    d = mkdtemp(prefix="swd-bad-")
    for name, (text, line, needle) in BAD.items():
        path = os.path.join(d, name + ".yaml")
        with open(path, "w") as f:
            f.write(text)
        r = Run(path, scale=None, time_scale=None)
        code = r.wait(30)
        err = r.stderr()
        eq(code, 2, "%s: exit status; stderr:\n%s" % (name, err))
        check(needle in err, "%s: %r not in stderr:\n%s" % (name, needle, err))
        if line == -1:
            check(re.search(re.escape(path) + r":\d+:", err), "%s: FILE:LINE in %s" % (name, err))
        elif line is not None:
            check("%s:%d:" % (path, line) in err, "%s: %s:%d: not in stderr:\n%s"
                  % (name, path, line, err))
        else:
            check(re.search(re.escape(path) + r"(:\d+)?:", err), "%s: FILE in %s" % (name, err))
        check("nothing started" in err, "%s: says nothing started" % name)
        check(not os.path.exists(r.report_path), "%s: no report written" % name)
        check(not os.path.exists(r.ready_path), "%s: nothing listened" % name)
        eq(r.stdout(), "", "%s: no summary" % name)
        eq(processes_with(r.marker), [], "%s: no process started" % name)
        # `swarmd check` says the same.
        chk = swarmtest.run_swarmd(["check", path])
        eq(chk.returncode, 2, "%s: swarmd check exit status" % name)
        check(needle in chk.stderr, "%s: swarmd check: %s" % (name, chk.stderr))


@test
def check_accepts_every_example():
    for name in sorted(os.listdir(EXAMPLES)):
        if name.endswith(".yaml"):
            r = swarmtest.run_swarmd(["check", os.path.join(EXAMPLES, name)])
            eq(r.returncode, 0, "%s: %s" % (name, r.stderr))
            check("ok" in r.stdout, r.stdout)


if __name__ == "__main__":
    main()
