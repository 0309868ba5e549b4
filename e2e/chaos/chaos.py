#!/usr/bin/env python3
"""Chaos suite: a coordinator and three workers as processes on 127.0.0.1, killed
and stalled while the state-machine job runs, checked for exactly-once output.

Cases:
  workers-kill-0     SIGKILL a random worker about every 10 s (a replacement
                     starts each time), error rate 0: there must be no alert.
  workers-kill-0.01  the same at error rate 0.01: alerts identical to a
                     failure-free `weir run` of the same job.
  coordinator-kill   SIGKILL the coordinator mid-run and start a new one: the
                     job resumes from storage, alerts identical.
  worker-stall       SIGSTOP a worker past the heartbeat timeout, then SIGCONT:
                     the stale worker must not corrupt the output.

Every case prints its recovery times (kill -> first checkpoint completed after
it). The last line is "N passed, N failed".

Usage: chaos.py --weir PATH [--seconds 60]   (WEIR_CHAOS_SECONDS overrides)
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

RATE = 100_000
PARALLELISM = 2
HEARTBEAT_TIMEOUT = "2s"


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


class Cluster:
    """One job: its coordinator, its workers and its directory."""

    def __init__(self, weir, workdir, error_rate, records, seed):
        self.weir, self.dir = weir, workdir
        self.port = free_port()
        self.args = ["--", "--records", str(records), "--rate", str(RATE), "--error-rate", str(error_rate),
                     "--seed", str(seed), "--output", "out"]
        self.workers = []
        self.coordinator = None
        self.logs = []

    def log(self, name):
        f = open(os.path.join(self.dir, f"{name}.log"), "ab")
        self.logs.append(f)
        return f

    def start_coordinator(self):
        cmd = [self.weir, "coordinator", "state-machine", "--parallelism", str(PARALLELISM),
               "--checkpoint-interval", "2s", "--heartbeat-interval", "500ms",
               "--heartbeat-timeout", HEARTBEAT_TIMEOUT, "--listen", f"127.0.0.1:{self.port}",
               "--http", f"127.0.0.1:{self.port + 1}"] + self.args
        self.coordinator = subprocess.Popen(cmd, cwd=self.dir, stderr=self.log("coordinator"))

    def start_worker(self):
        cmd = [self.weir, "worker", "--coordinator", f"127.0.0.1:{self.port}"]
        w = subprocess.Popen(cmd, cwd=self.dir, stderr=self.log(f"worker-{len(self.workers)}"))
        self.workers.append(w)
        return w

    def status(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port + 1}/v1/status", timeout=1) as r:
                return json.load(r)
        except Exception:
            return None

    def latest_checkpoint(self):
        s = self.status()
        return (s or {}).get("latest_checkpoint") or {}

    def wait_for_checkpoint_after(self, since, limit=60):
        """Seconds from `since` until a checkpoint triggered after it completed."""
        deadline = time.time() + limit
        while time.time() < deadline:
            c = self.latest_checkpoint()
            if c and c.get("time_unix_ms", 0) / 1000 > since:
                return time.time() - since
            time.sleep(0.05)
        return None

    def finish(self, limit=600):
        code = self.coordinator.wait(timeout=limit)
        for w in self.workers:
            try:
                w.wait(timeout=15)
            except subprocess.TimeoutExpired:
                w.kill()
        for f in self.logs:
            f.close()
        return code

    def kill_all(self):
        for p in [self.coordinator] + self.workers:
            if p and p.poll() is None:
                p.kill()

    def alerts(self):
        lines = []
        for path in glob.glob(os.path.join(self.dir, "out", "part-*")):
            with open(path) as f:
                lines.extend(l.rstrip("\n") for l in f)
        hidden = [p for p in os.listdir(os.path.join(self.dir, "out"))] if os.path.isdir(os.path.join(self.dir, "out")) else []
        return sorted(lines), [h for h in hidden if h.startswith(".")]


def reference_alerts(weir, workdir, error_rate, records, seed):
    """Alerts of a failure-free run of the same job, in one process."""
    out = os.path.join(workdir, "reference")
    subprocess.run([weir, "run", "state-machine", "--parallelism", str(PARALLELISM), "--checkpoint-interval", "off",
                    "--checkpoint-dir", os.path.join(workdir, "reference-chk"), "--", "--records", str(records),
                    "--error-rate", str(error_rate), "--seed", str(seed), "--output", out],
                   check=True, stderr=subprocess.DEVNULL)
    lines = []
    for path in glob.glob(os.path.join(out, "part-*")):
        with open(path) as f:
            lines.extend(l.rstrip("\n") for l in f)
    return sorted(lines)


def summary(times):
    if not times:
        return "no recoveries measured"
    return f"recovery p50 {statistics.median(times):.2f} s, max {max(times):.2f} s ({len(times)} kills: " + \
        ", ".join(f"{t:.2f}" for t in times) + ")"


def run_case(name, weir, seconds, error_rate, chaos):
    """Runs one case; `chaos(cluster, seconds)` returns recovery times."""
    workdir = tempfile.mkdtemp(prefix=f"weir-chaos-{name}-")
    seed = 7
    records = RATE * (seconds + 20)
    cluster = Cluster(weir, workdir, error_rate, records, seed)
    try:
        cluster.start_coordinator()
        for _ in range(3):
            cluster.start_worker()
        times = chaos(cluster, seconds)
        code = cluster.finish()
        problems = []
        if code != 0:
            problems.append(f"coordinator exited {code}")
        alerts, hidden = cluster.alerts()
        if hidden:
            problems.append(f"uncommitted files left: {hidden[:3]}")
        if error_rate == 0:
            if alerts:
                problems.append(f"{len(alerts)} alerts at error rate 0, first {alerts[0]!r}")
        else:
            expected = reference_alerts(weir, workdir, error_rate, records, seed)
            if not expected:
                problems.append("the reference run raised no alerts")
            elif alerts != expected:
                problems.append(f"{len(alerts)} alerts, a failure-free run has {len(expected)}"
                                f" ({len(set(alerts) - set(expected))} extra, {len(set(expected) - set(alerts))} missing)")
        if None in times:
            problems.append("a kill was not followed by a completed checkpoint")
        print(f"{name}: {summary([t for t in times if t is not None])}; {len(alerts)} alerts", flush=True)
        if problems:
            print(f"{name}: FAILED: " + "; ".join(problems) + f" (logs in {workdir})", flush=True)
            return False
        print(f"{name}: passed", flush=True)
        shutil.rmtree(workdir, ignore_errors=True)
        return True
    finally:
        cluster.kill_all()


def wait_running(cluster, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if cluster.latest_checkpoint():
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
    return times


def kill_coordinator(cluster, seconds):
    wait_running(cluster)
    time.sleep(min(10, seconds / 3))
    killed_at = time.time()
    cluster.coordinator.kill()
    cluster.coordinator.wait()
    cluster.start_coordinator()
    return [cluster.wait_for_checkpoint_after(killed_at)]


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
    return [recovered if status else None]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weir", required=True, help="path to the weir binary (a release build)")
    p.add_argument("--seconds", type=int, default=int(os.environ.get("WEIR_CHAOS_SECONDS", "60")))
    p.add_argument("--case", action="append", help="run only these cases (default: all)")
    args = p.parse_args()
    cases = [
        ("workers-kill-0", 0, kill_workers, args.seconds),
        ("workers-kill-0.01", 0.01, kill_workers, args.seconds),
        ("coordinator-kill", 0.01, kill_coordinator, 20),
        ("worker-stall", 0.01, stall_worker, 20),
    ]
    passed = failed = 0
    for name, error_rate, chaos, seconds in cases:
        if args.case and name not in args.case:
            continue
        try:
            ok = run_case(name, args.weir, seconds, error_rate, chaos)
        except Exception as e:  # a crashed case is a failed case, and the others still run
            print(f"{name}: FAILED: {e}", flush=True)
            ok = False
        passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
