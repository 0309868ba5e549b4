"""The chaos suite's Kafka case, `kafka-state-machine`.

`weir kafka-load` writes state-machine events into topic `events` at RATE
events/s while the state-machine job (a coordinator and three workers) reads
them and writes its alerts to topic `alerts` exactly once. Meanwhile:
- the workers start with WEIR_CRASH_BEFORE_COMMIT, so each one running a sink
  aborts after checkpoint CRASH_AT completes, before its commit;
- a random worker is SIGKILLed four times (a replacement starts each time);
- the coordinator is SIGKILLed once and a new one of the deployment started;
- the broker is SIGKILLed once and started again 5 s later.
When the load is written and the job's consumer group has no lag left, the job
stops with a savepoint. Oracle: a read_committed consumer reads `alerts`, and
they equal, each once, the alerts of a failure-free `weir run` over the same
topic; Kafka's transaction listing shows none of the job's transactions open.

WEIR_CHAOS_KAFKA_GUARANTEE=at-least-once runs the same case with an
at-least-once sink, to see the oracle fail (repeated alerts, no abort before a
commit since nothing is committed).
"""

import os
import random
import subprocess
import tempfile
import time

import chaos
from kafka_broker import Broker

CRASH_AT = 3
PREFIX = "weir-state-machine-sink-"


def replace_dead(cluster):
    """Starts a replacement for every worker that died on its own; returns their exit codes."""
    codes = []
    for i, w in enumerate(list(cluster.workers)):
        if w.poll() is not None and not getattr(w, "replaced", False):
            w.replaced = True
            codes.append(w.returncode)
            cluster.start_worker()
    return codes


def wait_idle(cluster, seconds):
    """Sleeps `seconds`, replacing dead workers meanwhile; returns their exit codes."""
    codes, end = [], time.time() + seconds
    while time.time() < end:
        codes += replace_dead(cluster)
        time.sleep(0.2)
    return codes


def run(weir, seconds):
    """Runs the case; returns (recovery times, problems, workdir)."""
    workdir = tempfile.mkdtemp(prefix="weir-chaos-kafka-")
    broker = Broker(workdir)
    cluster = None
    loader = None
    try:
        broker.create_topic("events", 4)
        broker.create_topic("alerts", 2)
        # The load outlasts the faults, so every fault hits the job mid-stream.
        records = chaos.RATE * (seconds + 30)
        loader = subprocess.Popen(
            [weir, "kafka-load", "--kafka-brokers", broker.bootstrap, "--topic", "events",
             "--workload", "state-machine", "--records", str(records), "--rate", str(chaos.RATE),
             "--error-rate", "0.01", "--seed", "7"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "load.log"), "ab"))
        args = ["--kafka-brokers", broker.bootstrap, "--input-topic", "events", "--output-topic", "alerts",
                "--kafka-guarantee", os.environ.get("WEIR_CHAOS_KAFKA_GUARANTEE", "exactly-once")]
        cluster = chaos.Cluster(weir, workdir, chaos.Job("state-machine", args, None))
        cluster.start_coordinator()
        for _ in range(3):
            cluster.start_worker(env={"WEIR_CRASH_BEFORE_COMMIT": str(CRASH_AT)})
        chaos.wait_running(cluster)
        times, problems, rng = [], [], random.Random(3)
        # The crash between checkpoint CRASH_AT's completion and the commit.
        started = time.time()
        codes = []
        while not codes and time.time() < started + 20:
            codes += wait_idle(cluster, 0.2)
        if not any(code == -6 for code in codes):
            problems.append(f"no worker aborted before its commit (exit codes {codes})")
        times.append(cluster.wait_for_checkpoint_after(time.time()))
        # Worker kills, the coordinator kill and the broker outage.
        faults = ["worker", "coordinator", "worker", "broker", "worker", "worker"]
        for fault in faults:
            wait_idle(cluster, rng.uniform(0.6, 1.0) * seconds / len(faults))
            at = time.time()
            if fault == "worker":
                victim = rng.choice([w for w in cluster.workers if w.poll() is None])
                victim.replaced = True
                victim.kill()
                victim.wait()
                cluster.start_worker()
            elif fault == "coordinator":
                cluster.coordinator.kill()
                cluster.coordinator.wait()
                cluster.start_coordinator()
            else:
                broker.kill()
                wait_idle(cluster, 5)
                broker.start()
            times.append(cluster.wait_for_checkpoint_after(at, limit=120))
            replace_dead(cluster)
        if loader.wait(timeout=600) != 0:
            problems.append("kafka-load failed")
        deadline = time.time() + 300
        while broker.group_lag("weir-events") != 0:
            if time.time() > deadline:
                problems.append("the job never caught up with the topic")
                break
            wait_idle(cluster, 2)
        stop = subprocess.run([weir, "savepoint", "--coordinator", f"127.0.0.1:{cluster.port}", "--stop"],
                              cwd=workdir, capture_output=True, text=True, timeout=300)
        if stop.returncode != 0:
            problems.append(f"stop with a savepoint failed: {stop.stderr.strip()[-300:]}")
        code = cluster.finish()
        if code != 0:
            problems.append(f"coordinator exited {code}")
        alerts = sorted(broker.read_committed("alerts"))
        reference = os.path.join(workdir, "reference")
        subprocess.run([weir, "run", "state-machine", "--parallelism", str(chaos.PARALLELISM),
                        "--checkpoint-interval", "off", "--checkpoint-dir", os.path.join(workdir, "reference-chk"),
                        "--", "--kafka-brokers", broker.bootstrap, "--input-topic", "events", "--input-bounded",
                        "--output", reference], check=True, stderr=subprocess.DEVNULL)
        expected = sorted(chaos.read_lines(reference))
        if not expected:
            problems.append("the reference run raised no alerts")
        if alerts != expected:
            problems.append(f"{len(alerts)} alerts, a failure-free run has {len(expected)}"
                            f" ({len(set(alerts) - set(expected))} extra, {len(set(expected) - set(alerts))} missing,"
                            f" {len(alerts) - len(set(alerts))} repeated)")
        still_open = broker.open_transactions(PREFIX)
        if still_open:
            problems.append(f"transactions left open: {still_open[:3]}")
        print(f"kafka-state-machine: {len(alerts)} alerts over {records} events", flush=True)
        return times, problems, workdir
    finally:
        if loader and loader.poll() is None:
            loader.kill()
        if cluster:
            cluster.kill_all()
        broker.kill()
