#!/usr/bin/env python3
"""Kafka -> keyed sum -> Kafka, weir against Apache Flink 2.3.0 (flink-connector-kafka
5.0.0-2.2) in one run, on one real Kafka broker on 127.0.0.1.

It starts the broker (e2e/chaos/kafka_broker.py: Java 17, the jars .ci/setup.sh
copies into $WEIR_KAFKA_LIBS), fills topic `in` with `weir kafka-load` (keyed-sum's
records, `key,i` lines), then for each parallelism runs `weir bench keyed-sum
--input-topic in --output-topic ...` and the Flink job (bench/kafka/flink, a local
MiniCluster in one JVM) on the same topic, each writing its own output topic with
the same guarantee and checkpoint interval. It prints their RESULT lines (records
per CPU-second of the engine's process, `rps_per_core`), the broker's CPU-seconds
during each run (measured apart), and a table side by side.

  bench/kafka/run.py [--records N] [--parallelism "1 2"] [--checkpoint-interval 5s]
                     [--guarantee exactly-once] [--partitions 4] [--keys 10000]

Environment: WEIR (the weir binary, default `weir`), JAVA, MVN, FLINK_JAVA_OPTS
(default "-Xmx2g"), WEIR_KAFKA_LIBS.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "e2e", "chaos"))
from kafka_broker import Broker  # noqa: E402


def flink_classpath(mvn):
    """The Flink job's jar and class path, built once per version of its sources."""
    src = os.path.join(HERE, "flink")
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(src)):
        for name in sorted(files):
            path = os.path.join(root, name)
            if "/target" in path:
                continue
            digest.update(path[len(src):].encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    out = os.path.join(os.path.expanduser("~/.cache/weir/flink-kafka-sum"), digest.hexdigest()[:16])
    jar, cp = os.path.join(out, "flink-kafka-sum-0.1.jar"), os.path.join(out, "classpath.txt")
    if not (os.path.exists(jar) and os.path.exists(cp)):
        print(f"building the Flink job into {out}", file=sys.stderr)
        os.makedirs(out, exist_ok=True)
        args = ["-B", "-q", "-f", os.path.join(src, "pom.xml"), f"-Dbench.build.dir={out}/target", "package",
                "dependency:build-classpath", f"-Dmdep.outputFile={cp}", "-Dmdep.includeScope=runtime"]
        if subprocess.run([mvn, "-o"] + args, capture_output=True).returncode != 0:
            subprocess.run([mvn] + args, check=True)
        os.replace(os.path.join(out, "target", "flink-kafka-sum-0.1.jar"), jar)
    with open(cp) as f:
        return jar + ":" + f.read().strip()


def cpu_seconds(pid):
    """User + system CPU-seconds of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def field(line, key):
    for word in line.split():
        if word.startswith(key + "="):
            return word.split("=", 1)[1]
    return None


def measured(broker, cmd):
    """Runs `cmd`; returns its RESULT line with the broker's CPU-seconds meanwhile."""
    before = cpu_seconds(broker.process.pid)
    out = subprocess.run(cmd, capture_output=True, text=True)
    broker_cpu = cpu_seconds(broker.process.pid) - before
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        print(out.stdout + out.stderr[-2000:], file=sys.stderr)
        return None
    line = f"{lines[0]} broker_cpu_seconds={broker_cpu:.3f}"
    print(line, flush=True)
    return line


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=10_000_000)
    p.add_argument("--parallelism", default="1 2")
    p.add_argument("--checkpoint-interval", default="5s")
    p.add_argument("--guarantee", default="exactly-once")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--keys", type=int, default=10_000)
    args = p.parse_args()
    weir = os.environ.get("WEIR", "weir")
    java = os.environ.get("JAVA", "java")
    java_opts = os.environ.get("FLINK_JAVA_OPTS", "-Xmx2g").split()
    classpath = flink_classpath(os.environ.get("MVN", "mvn"))
    work = tempfile.mkdtemp(prefix="weir-kafka-bench-")
    broker = Broker(work)
    results = {}
    try:
        broker.create_topic("in", args.partitions)
        subprocess.run([weir, "kafka-load", "--kafka-brokers", broker.bootstrap, "--topic", "in",
                        "--records", str(args.records), "--keys", str(args.keys)],
                       check=True, stderr=subprocess.DEVNULL)
        for parallelism in args.parallelism.split():
            for engine in ("flink", "weir"):
                topic = f"out-{engine}-p{parallelism}"
                broker.create_topic(topic, args.partitions)
                if engine == "weir":
                    cmd = [weir, "bench", "keyed-sum", "--kafka-brokers", broker.bootstrap,
                           "--input-topic", "in", "--output-topic", topic, "--kafka-guarantee", args.guarantee,
                           "--records", str(args.records), "--parallelism", parallelism,
                           "--checkpoint-interval", args.checkpoint_interval, "--keys", str(args.keys)]
                else:
                    cmd = [java, *java_opts, "-cp", classpath, "weir.bench.KafkaSum", "--brokers", broker.bootstrap,
                           "--input", "in", "--output", topic, "--records", str(args.records),
                           "--parallelism", parallelism, "--checkpoint-interval", args.checkpoint_interval,
                           "--guarantee", args.guarantee]
                line = measured(broker, cmd)
                if line:
                    results[(engine, parallelism)] = line
    finally:
        broker.kill()
    print()
    print(f"Kafka -> keyed sum -> Kafka, {args.records} records, {args.guarantee}, "
          f"checkpoints every {args.checkpoint_interval}, {args.partitions} partitions")
    print(f"{'parallelism':>11} {'weir_rps_per_core':>18} {'flink_rps_per_core':>19} {'weir/flink':>10}"
          f" {'broker_cpu_weir':>16} {'broker_cpu_flink':>17}")
    for parallelism in args.parallelism.split():
        w, f = results.get(("weir", parallelism)), results.get(("flink", parallelism))
        wr, fr = (field(w, "rps_per_core") if w else None), (field(f, "rps_per_core") if f else None)
        ratio = f"{float(wr) / float(fr):.2f}" if wr and fr and float(fr) > 0 else "-"
        print(f"{parallelism:>11} {wr or '-':>18} {fr or '-':>19} {ratio:>10}"
              f" {(field(w, 'broker_cpu_seconds') if w else '-'):>16}"
              f" {(field(f, 'broker_cpu_seconds') if f else '-'):>17}")


if __name__ == "__main__":
    main()
