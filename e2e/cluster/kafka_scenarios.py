"""The operator's Kafka scenarios: a StreamJob that reads a topic and writes a
topic, rescaled from 2 to 3 with a savepoint while the topic fills, its output
exactly once as a read_committed consumer sees it; once as a pipeline, once as
SQL over StreamTables.

The broker is a real Apache Kafka on this machine (e2e/chaos/kafka_broker.py,
the jars .ci/setup.sh copies into $WEIR_KAFKA_LIBS). Pods reach it where they
reach the S3 server: 127.0.0.1 with the node agent, else the host of
--s3-endpoint (the broker then listens on every address).
"""

import json
import os
import subprocess
import sys
import time
from urllib.parse import urlparse

from harness import NS, mix, render, sql_job, stream_job, stream_table, wait_for

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


SUMS_IN = """CREATE TABLE sums_in (`key` BIGINT, `value` BIGINT)
COMMENT 'keyed-sum records, as weir kafka-load --format json writes them'
WITH ('connector' = 'kafka', 'topic' = 'sums-in', 'properties.bootstrap.servers' = '{bootstrap}',
  'properties.group.id' = 'weir-sums', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json')"""
SUMS_OUT = """CREATE TABLE sums_out (`key` BIGINT, n BIGINT, total BIGINT, PRIMARY KEY (`key`) NOT ENFORCED)
WITH ('connector' = 'upsert-kafka', 'topic' = 'sums-out', 'properties.bootstrap.servers' = '{bootstrap}',
  'key.format' = 'json', 'value.format' = 'json')"""
SUMS_JOB = "INSERT INTO sums_out SELECT `key`, COUNT(*), SUM(`value`) FROM sums_in GROUP BY `key`;"


def check_updating_sums(rows, records, keys):
    """Each key's updates, in topic order, count up through its values in the
    order they were written, each once: update (n, total) has total = the sum of
    the key's first n values, n only grows, and the last has them all."""
    values = {}
    for i in range(records):
        values.setdefault((mix(i) >> 1) % keys, []).append(i)
    prefix = {k: [sum(v[:n]) for n in range(len(v) + 1)] for k, v in values.items()}
    seen = {}
    for row in rows:
        key, n, total = row["key"], row["n"], row["total"]
        assert key in prefix, f"an update of key {key}, which has no records"
        assert n > seen.get(key, 0), f"key {key}: update n={n} after n={seen.get(key)} (repeated or back)"
        assert n < len(prefix[key]) and prefix[key][n] == total, \
            f"key {key}: total {total} after {n} records is not the sum of its first {n} values"
        seen[key] = n
    short = [k for k, v in values.items() if seen.get(k) != len(v)]
    assert not short, f"{len(short)} keys lack their last update, e.g. {short[0]}"


def sql_stream_tables_on_kafka(env):
    """A SQL StreamJob over two StreamTables (a Kafka topic in, an upsert-kafka
    topic out) applied before the tables: it waits, saying which tables it lacks,
    starts once they exist, and is rescaled 2 -> 3 with a savepoint while
    `weir kafka-load` fills the topic; each key's updates step up by exactly its
    values, each once (read_committed)."""
    name, records, keys = "sql-sums", 300_000, 100
    host = urlparse(env.s3_endpoint).hostname or "127.0.0.1"
    work = os.path.join(env.out_root, name)
    os.makedirs(work, exist_ok=True)
    broker = Broker(work, listen="127.0.0.1" if host == "127.0.0.1" else "0.0.0.0", advertised=host)
    loader = None
    try:
        broker.create_topic("sums-in", 4)
        broker.create_topic("sums-out", 2)
        env.apply(render(env, sql_job(name, SUMS_JOB, [])))
        wait_for(lambda: env.condition(name, "Stalled").get("reason") == "TableNotFound", 60,
                 f"{name} waiting for its tables")
        message = env.condition(name, "Stalled")["message"]
        assert "`sums_in`" in message and "`sums_out`" in message, message
        assert env.get("deployment", f"{name}-coordinator") is None, "nothing deployed without its tables"
        for table, sql in (("sums-in", SUMS_IN), ("sums-out", SUMS_OUT)):
            env.apply(stream_table(table, sql.replace("{bootstrap}", broker.bootstrap)))
        loader = subprocess.Popen(
            [env.weir, "kafka-load", "--kafka-brokers", broker.bootstrap, "--topic", "sums-in",
             "--workload", "keyed-sum", "--format", "json", "--records", str(records), "--keys", str(keys),
             "--rate", "15000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
        assert env.status(name).get("tables") == ["sums-in", "sums-out"], env.status(name)
        wait_for(lambda: broker.group_lag("weir-sums") is not None, 60, "the job reading the topic")
        env.patch(name, {"spec": {"parallelism": 3}})
        wait_for(lambda: (env.status(name).get("lastSavepoint") or {}).get("reason") == "upgrade", 120,
                 "the upgrade savepoint")
        wait_for(lambda: (env.coordinator_status(name) or {}).get("parallelism") == 3 and
                 (env.coordinator_status(name) or {}).get("state") == "running", 120, "the rescaled job running")
        assert loader.wait(timeout=120) == 0, "kafka-load failed"
        wait_for(lambda: broker.group_lag("weir-sums") == 0, 180, "the job caught up with the topic")
        # The last updates commit with the checkpoint after them: wait until
        # every key's last update (its count of records) is there.
        counts = {}
        for i in range(records):
            counts[(mix(i) >> 1) % keys] = counts.get((mix(i) >> 1) % keys, 0) + 1
        rows = []

        def complete():
            rows[:] = [json.loads(line) for line in broker.read_committed("sums-out", idle_ms=5_000)]
            last = {}
            for row in rows:
                last[row["key"]] = max(last.get(row["key"], 0), row["n"])
            return last == counts
        wait_for(complete, 120, "every key's last update committed")
        check_updating_sums(rows, records, keys)
        env.kubectl("delete", "streamjob", name, "-n", NS)
        env.kubectl("delete", "streamtable", "-n", NS, "sums-in", "sums-out")
    finally:
        if loader and loader.poll() is None:
            loader.kill()
        broker.kill()


SCENARIOS = [kafka_rescale_with_savepoint, sql_stream_tables_on_kafka]
