"""The operator's Kafka scenario: a StreamJob that reads a topic and writes a topic,
rescaled from 2 to 3 with a savepoint while the topic fills, its output exactly
once as a read_committed consumer sees it.

The broker is a real Apache Kafka on this machine (e2e/chaos/kafka_broker.py,
the jars .ci/setup.sh copies into $WEIR_KAFKA_LIBS). Pods reach it where they
reach the S3 server: 127.0.0.1 with the node agent, else the host of
--s3-endpoint (the broker then listens on every address).
"""

import os
import subprocess
import sys
import time
from urllib.parse import urlparse

from harness import NS, render, stream_job, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chaos"))
from kafka_broker import Broker  # noqa: E402

PREFIX = "weir-state-machine-sink-"


def kafka_rescale_with_savepoint(env):
    """state-machine from topic `events` (filled by `weir kafka-load` at 20,000
    events/s) to topic `alerts`, exactly once, rescaled 2 -> 3 with a savepoint
    mid-stream: the alerts equal a failure-free run's, each once, and no
    transaction of the job is left open."""
    name, records, seed = "kafka-alerts", 400_000, 11
    host = urlparse(env.s3_endpoint).hostname or "127.0.0.1"
    work = os.path.join(env.out_root, name)
    os.makedirs(work, exist_ok=True)
    broker = Broker(work, listen="127.0.0.1" if host == "127.0.0.1" else "0.0.0.0", advertised=host)
    loader = None
    try:
        broker.create_topic("events", 4)
        broker.create_topic("alerts", 2)
        loader = subprocess.Popen(
            [env.weir, "kafka-load", "--kafka-brokers", broker.bootstrap, "--topic", "events",
             "--workload", "state-machine", "--records", str(records), "--rate", "20000",
             "--error-rate", "0.01", "--seed", str(seed)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        args = ["--kafka-brokers", broker.bootstrap, "--input-topic", "events", "--output-topic", "alerts"]
        env.apply(render(env, stream_job(name, "state-machine", args)))
        wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
        wait_for(lambda: broker.group_lag("weir-events") is not None, 60, "the job reading the topic")
        triggered = time.time()
        env.patch(name, {"spec": {"parallelism": 3}})
        wait_for(lambda: (env.status(name).get("lastSavepoint") or {}).get("reason") == "upgrade", 120,
                 "the upgrade savepoint")
        wait_for(lambda: (env.coordinator_status(name) or {}).get("parallelism") == 3 and
                 (env.coordinator_status(name) or {}).get("state") == "running", 120, "the rescaled job running")
        env.measured.append(f"kafka rescale 2->3: patch -> rescaled job running: {time.time() - triggered:.1f} s")
        assert loader.wait(timeout=120) == 0, "kafka-load failed"
        # Caught up: the group's offsets (committed when a checkpoint completes)
        # reach the end, and the sink has committed that checkpoint's transactions.
        wait_for(lambda: broker.group_lag("weir-events") == 0, 180, "the job caught up with the topic")
        wait_for(lambda: not broker.open_transactions(PREFIX), 60, "the job's transactions committed")
        alerts = sorted(broker.read_committed("alerts"))
        reference = os.path.join(work, "reference")
        subprocess.run([env.weir, "run", "state-machine", "--checkpoint-interval", "off",
                        "--checkpoint-dir", reference + "-chk", "--", "--kafka-brokers", broker.bootstrap,
                        "--input-topic", "events", "--input-bounded", "--output", reference],
                       check=True, stderr=subprocess.DEVNULL)
        expected = sorted(line.rstrip("\n") for part in sorted(os.listdir(reference)) if part.startswith("part-")
                          for line in open(os.path.join(reference, part)))
        assert expected, "the failure-free run raised alerts"
        assert alerts == expected, (f"{len(alerts)} alerts ({len(alerts) - len(set(alerts))} repeated), "
                                    f"a failure-free run has {len(expected)}")
        env.kubectl("delete", "streamjob", name, "-n", NS)
    finally:
        if loader and loader.poll() is None:
            loader.kill()
        broker.kill()


SCENARIOS = [kafka_rescale_with_savepoint]
