#!/usr/bin/env python3
"""Chaos suite: a coordinator and three workers as processes on 127.0.0.1, killed
and stalled while a job runs, checked for exactly-once output after each case.

Cases:
  workers-kill-sum       SIGKILL a random worker about every 10 s (a replacement
                         starts each time) while keyed-sum runs: every key's sums
                         step up by exactly its values, each once.
  workers-kill-0.01      the same on state-machine at error rate 0.01: alerts
                         identical to a failure-free `weir run` of the same job.
  coordinator-kill       SIGKILL the coordinator mid-run and start a new one of the
                         same deployment (--job-id): it resumes from storage.
  coordinator-stall      SIGSTOP the coordinator past the heartbeat timeout, then
                         SIGCONT: the workers notice it went silent and stop
                         their tasks; the job recovers when it is back.
  coordinator-fenced     SIGSTOP the coordinator, start a successor of the same
                         deployment on another port with its own workers, then
                         SIGCONT the first: it must find itself superseded and stop
                         without committing or deleting anything.
  worker-stall           SIGSTOP a worker past the heartbeat timeout, then SIGCONT:
                         its attempt is fenced off (its session is dropped and it
                         stops its tasks), and the output stays exact.
  kafka-state-machine    state-machine from a Kafka topic filled at 100,000
                         events/s to a topic, exactly once, through a crash
                         between a checkpoint's completion and the commit, worker
                         kills, a coordinator kill and a broker outage
                         (kafka_chaos.py).

Every case prints its recovery times (fault -> first checkpoint completed after
it). The last line is "N passed, N failed".

Usage: chaos.py --weir PATH [--seconds 60] [--case NAME ...]  (WEIR_CHAOS_SECONDS overrides)
"""

import argparse
import glob
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict

RATE = 100_000
PARALLELISM = 2
HEARTBEAT_TIMEOUT = "2s"
JOB_ID = "chaos"
KEYS = 1000
MASK = (1 << 64) - 1


def free_port():
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as t:
            try:
                t.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def mix(z):
    """weir's stable 64-bit mix (runtime/src/keys.rs)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class Job:
    """What runs: a pipeline, its arguments, and how its output is checked."""

    def __init__(self, pipeline, args, check):
        self.pipeline, self.args, self.check = pipeline, args, check


def keyed_sum(records):
    args = ["--records", str(records), "--rate", str(RATE), "--keys", str(KEYS), "--output", "out"]

    def check(lines, _workdir, _weir):
        """Every key's emitted sums, sorted, step up by exactly its values, once each."""
        sums = defaultdict(list)
        for line in lines:
            k, s = line.split(",")
            sums[int(k)].append(int(s))
        values = defaultdict(list)
        for i in range(records):
            values[(mix(i) >> 1) % KEYS].append(i)
        for key, expected in values.items():
            got = sorted(sums.pop(key, []))
            steps = sorted(b - a for a, b in zip([0] + got, got))
            if steps != sorted(expected):
                return [f"key {key}: {len(got)} sums for {len(expected)} records (lost or repeated)"]
        return [f"sums for key {k}, which has no records" for k in list(sums)[:1]]

    return Job("keyed-sum", args, check)


def state_machine(records, error_rate, seed=7):
    args = ["--records", str(records), "--rate", str(RATE), "--error-rate", str(error_rate),
            "--seed", str(seed), "--output", "out"]

    def check(lines, workdir, weir):
        """Alerts identical to a failure-free run of the same job, in one process."""
        out = os.path.join(workdir, "reference")
        subprocess.run([weir, "run", "state-machine", "--parallelism", str(PARALLELISM),
                        "--checkpoint-interval", "off", "--checkpoint-dir", os.path.join(workdir, "reference-chk"),
                        "--", "--records", str(records), "--error-rate", str(error_rate), "--seed", str(seed),
                        "--output", out], check=True, stderr=subprocess.DEVNULL)
        expected = sorted(read_lines(out))
        if not expected:
            return ["the reference run raised no alerts"]
        if lines != expected:
            return [f"{len(lines)} alerts, a failure-free run has {len(expected)}"
                    f" ({len(set(lines) - set(expected))} extra, {len(set(expected) - set(lines))} missing)"]
        return []

    return Job("state-machine", args, check)


def read_lines(out_dir):
    lines = []
    for path in glob.glob(os.path.join(out_dir, "part-*")):
        with open(path) as f:
            lines.extend(l.rstrip("\n") for l in f)
    return lines


class Cluster:
    """One deployment: its coordinators, its workers and its directory."""

    def __init__(self, weir, workdir, job):
        self.weir, self.dir, self.job = weir, workdir, job
        self.port = free_port()
        self.workers = []
        self.coordinator = None
        self.logs = []

    def log(self, name):
        f = open(os.path.join(self.dir, f"{name}.log"), "ab")
        self.logs.append(f)
        return f

    def log_text(self, name):
        with open(os.path.join(self.dir, f"{name}.log"), errors="replace") as f:
            return f.read()

    def start_coordinator(self, port=None, name="coordinator"):
        port = port or self.port
        cmd = [self.weir, "coordinator", self.job.pipeline, "--parallelism", str(PARALLELISM),
               "--job-id", JOB_ID, "--checkpoint-interval", "2s", "--heartbeat-interval", "500ms",
               "--heartbeat-timeout", HEARTBEAT_TIMEOUT, "--listen", f"127.0.0.1:{port}",
               "--http", f"127.0.0.1:{port + 1}", "--log-level", "info", "--"] + self.job.args
        process = subprocess.Popen(cmd, cwd=self.dir, stderr=self.log(name))
        if port == self.port:
            self.coordinator = process
        return process

    def start_worker(self, port=None, env=None):
        port = port or self.port
        name = f"worker-{len(self.workers)}"
        cmd = [self.weir, "worker", "--coordinator", f"127.0.0.1:{port}", "--log-level", "info"]
        w = subprocess.Popen(cmd, cwd=self.dir, stderr=self.log(name), env={**os.environ, **(env or {})})
        self.workers.append(w)
        return w

    def status(self, port=None):
        port = port or self.port
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/v1/status", timeout=1) as r:
                return json.load(r)
        except Exception:
            return None

    def latest_checkpoint(self, port=None):
        s = self.status(port)
        return (s or {}).get("latest_checkpoint") or {}

    def wait_for_checkpoint_after(self, since, limit=60, port=None):
        """Seconds from `since` until a checkpoint triggered after it completed."""
        deadline = time.time() + limit
        while time.time() < deadline:
            c = self.latest_checkpoint(port)
            if c and c.get("time_unix_ms", 0) / 1000 > since:
                return time.time() - since
            time.sleep(0.05)
        return None

    def finish(self, coordinator=None, limit=600):
        code = (coordinator or self.coordinator).wait(timeout=limit)
        for w in self.workers:
            try:
                w.wait(timeout=15)
            except subprocess.TimeoutExpired:
                w.kill()
        for f in self.logs:
            f.flush()
        return code

    def kill_all(self):
        for p in [self.coordinator] + self.workers:
            if p and p.poll() is None:
                p.kill()
        for f in self.logs:
            f.close()

    def output(self):
        out = os.path.join(self.dir, "out")
        hidden = [h for h in os.listdir(out) if h.startswith(".")] if os.path.isdir(out) else []
        return sorted(read_lines(out)), hidden


def summary(times):
    if not times:
        return "no recoveries measured"
    return f"recovery p50 {statistics.median(times):.2f} s, max {max(times):.2f} s ({len(times)} faults: " + \
        ", ".join(f"{t:.2f}" for t in times) + ")"


def run_case(name, weir, seconds, job, chaos):
    """Runs one case; `chaos(cluster, seconds)` returns (recovery times, problems)."""
    workdir = tempfile.mkdtemp(prefix=f"weir-chaos-{name}-")
    cluster = Cluster(weir, workdir, job)
    try:
        cluster.start_coordinator()
        for _ in range(3):
            cluster.start_worker()
        times, problems = chaos(cluster, seconds)
        code = cluster.finish(getattr(cluster, "successor", None))
        if code != 0:
            problems.append(f"coordinator exited {code}")
        lines, hidden = cluster.output()
        if hidden:
            problems.append(f"uncommitted files left: {hidden[:3]}")
        if not lines:
            problems.append("no output at all")
        problems += job.check(lines, workdir, weir)
        if None in times:
            problems.append("a fault was not followed by a completed checkpoint")
        print(f"{name}: {summary([t for t in times if t is not None])}; {len(lines)} output lines", flush=True)
        if problems:
            print(f"{name}: FAILED: " + "; ".join(problems) + f" (logs in {workdir})", flush=True)
            return False
        print(f"{name}: passed", flush=True)
        shutil.rmtree(workdir, ignore_errors=True)
        return True
    finally:
        cluster.kill_all()


def wait_running(cluster, limit=60, port=None):
    deadline = time.time() + limit
    while time.time() < deadline:
        if cluster.latest_checkpoint(port):
            return
        time.sleep(0.1)
    raise RuntimeError("the job did not complete a first checkpoint")


def kill_workers(cluster, seconds):
    wait_running(cluster)
    rng = random.Random(1)
    times = []
    end = time.time() + seconds
    while time.time() + 10 <= end:
        time.sleep(rng.uniform(8, 12))
        alive = [w for w in cluster.workers if w.poll() is None]
        victim = rng.choice(alive)
        killed_at = time.time()
        victim.kill()
        victim.wait()
        cluster.start_worker()
        times.append(cluster.wait_for_checkpoint_after(killed_at))
    return times, []


def kill_coordinator(cluster, seconds):
    wait_running(cluster)
    time.sleep(min(10, seconds / 3))
    killed_at = time.time()
    cluster.coordinator.kill()
    cluster.coordinator.wait()
    cluster.start_coordinator()
    return [cluster.wait_for_checkpoint_after(killed_at)], []


def worker_logs(cluster):
    return [cluster.log_text(f"worker-{i}") for i in range(len(cluster.workers))]


def stall_coordinator(cluster, seconds):
    wait_running(cluster)
    time.sleep(min(5, seconds / 4))
    stalled_at = time.time()
    cluster.coordinator.send_signal(signal.SIGSTOP)
    # Past the heartbeat timeout the workers must notice the silence by themselves.
    deadline = time.time() + 20
    while time.time() < deadline and not all("no word from the coordinator" in t for t in worker_logs(cluster)):
        time.sleep(0.1)
    problems = []
    if not all("no word from the coordinator" in t for t in worker_logs(cluster)):
        problems.append("a worker did not notice the frozen coordinator")
    cluster.coordinator.send_signal(signal.SIGCONT)
    return [cluster.wait_for_checkpoint_after(stalled_at)], problems


def fence_coordinator(cluster, seconds):
    wait_running(cluster)
    time.sleep(min(5, seconds / 4))
    first = cluster.coordinator
    stalled_at = time.time()
    first.send_signal(signal.SIGSTOP)
    # A successor of the same deployment on another port, with workers of its own
    # (as a replacement pod behind the Service would get them).
    port = free_port()
    successor = cluster.start_coordinator(port=port, name="successor")
    cluster.successor = successor
    for _ in range(3):
        cluster.start_worker(port=port)
    recovered = cluster.wait_for_checkpoint_after(stalled_at, port=port)
    first.send_signal(signal.SIGCONT)
    problems = []
    try:
        code = first.wait(timeout=60)
    except subprocess.TimeoutExpired:
        problems.append("the superseded coordinator kept running")
        first.kill()
        code = None
    log = cluster.log_text("coordinator")
    if code == 0:
        problems.append("the superseded coordinator exited 0")
    if "was superseded by epoch" not in log:
        problems.append("the superseded coordinator did not say it was fenced")
    cluster.coordinator = successor
    return [recovered], problems


def stall_worker(cluster, seconds):
    wait_running(cluster)
    time.sleep(min(5, seconds / 4))
    status = cluster.status() or {}
    victim = cluster.workers[0]
    stalled_at = time.time()
    victim.send_signal(signal.SIGSTOP)
    recovered = cluster.wait_for_checkpoint_after(stalled_at + 2.0)
    time.sleep(1)
    victim.send_signal(signal.SIGCONT)
    problems = []
    # Its attempt was fenced off: the coordinator dropped its session, and the
    # worker, back, finds its session gone and stops that attempt's tasks.
    deadline = time.time() + 20
    fenced = ("lost the coordinator", "no word from the coordinator")
    while time.time() < deadline and not any(f in cluster.log_text("worker-0") for f in fenced):
        time.sleep(0.1)
    if not any(f in cluster.log_text("worker-0") for f in fenced):
        problems.append("the stalled worker never found its attempt fenced off")
    if "worker lost" not in cluster.log_text("coordinator"):
        problems.append("the coordinator never lost the stalled worker")
    return [recovered if status else None], problems


def run_kafka_case(weir, seconds):
    """The Kafka case (kafka_chaos.py), reported as the others are."""
    import kafka_chaos  # beside this file
    name = "kafka-state-machine"
    try:
        times, problems, workdir = kafka_chaos.run(weir, seconds)
    except Exception as e:
        print(f"{name}: FAILED: {e}", flush=True)
        return False
    if None in times:
        problems.append("a fault was not followed by a completed checkpoint")
    print(f"{name}: {summary([t for t in times if t is not None])}", flush=True)
    if problems:
        print(f"{name}: FAILED: " + "; ".join(problems) + f" (logs in {workdir})", flush=True)
        return False
    print(f"{name}: passed", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weir", required=True, help="path to the weir binary (the test build or a release build)")
    p.add_argument("--seconds", type=int, default=int(os.environ.get("WEIR_CHAOS_SECONDS", "60")))
    p.add_argument("--case", action="append", help="run only these cases (default: all)")
    args = p.parse_args()
    long_run = RATE * (args.seconds + 20)
    short_run = RATE * 40
    cases = [
        ("workers-kill-sum", keyed_sum(long_run), kill_workers, args.seconds),
        ("workers-kill-0.01", state_machine(long_run, 0.01), kill_workers, args.seconds),
        ("coordinator-kill", state_machine(short_run, 0.01), kill_coordinator, 20),
        ("coordinator-stall", keyed_sum(short_run), stall_coordinator, 20),
        ("coordinator-fenced", keyed_sum(short_run), fence_coordinator, 20),
        ("worker-stall", state_machine(short_run, 0.01), stall_worker, 20),
    ]
    passed = failed = 0
    for name, job, chaos, seconds in cases:
        if args.case and name not in args.case:
            continue
        try:
            ok = run_case(name, args.weir, seconds, job, chaos)
        except Exception as e:  # a crashed case is a failed case, and the others still run
            print(f"{name}: FAILED: {e}", flush=True)
            ok = False
        passed, failed = passed + ok, failed + (not ok)
    if not args.case or "kafka-state-machine" in args.case:
        ok = run_kafka_case(args.weir, args.seconds)
        passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
