#!/usr/bin/env python3
"""End-to-end latency of Kafka -> keyed sum -> Kafka at a fixed rate, from the
producer's timestamp to a consumer of the output topic.

It starts one real Kafka broker on 127.0.0.1 (e2e/chaos/kafka_broker.py), runs
`weir run keyed-sum` from topic `in` to topic `out` (each sum is stamped with the
Kafka timestamp of the input record that updated it last), writes `in` at
--rate records/s with `weir kafka-load --linger 0ms`, and reads `out` with
`weir kafka-latency` (read_uncommitted for at-least-once, read_committed for
exactly-once, where output becomes visible when its checkpoint completes).
Beside it a second `weir kafka-latency` reads `in`: the producer -> broker ->
consumer latency without weir, Kafka's own share. It prints both RESULT lines
per guarantee (topic=out-... first).

  bench/kafka/latency.py [--rate 100000] [--seconds 30] [--parallelism 2]
                         [--buffer-timeout 0ms] [--checkpoint-interval 5s]
                         [--guarantees "at-least-once exactly-once"]

Environment: WEIR (the weir binary, default `weir`), WEIR_KAFKA_LIBS.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "e2e", "chaos"))
from kafka_broker import Broker  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=int, default=100_000)
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--parallelism", default="2")
    p.add_argument("--buffer-timeout", default="0ms")
    p.add_argument("--checkpoint-interval", default="5s")
    p.add_argument("--guarantees", default="at-least-once exactly-once")
    args = p.parse_args()
    weir = os.environ.get("WEIR", "weir")
    work = tempfile.mkdtemp(prefix="weir-kafka-latency-")
    broker = Broker(work)
    try:
        for guarantee in args.guarantees.split():
            source, sink = f"in-{guarantee}", f"out-{guarantee}"
            broker.create_topic(source, 4)
            broker.create_topic(sink, 4)
            job = subprocess.Popen(
                [weir, "run", "keyed-sum", "--parallelism", args.parallelism,
                 "--buffer-timeout", args.buffer_timeout, "--checkpoint-interval", args.checkpoint_interval,
                 "--checkpoint-dir", os.path.join(work, f"chk-{guarantee}"), "--",
                 "--kafka-brokers", broker.bootstrap, "--input-topic", source, "--output-topic", sink,
                 "--kafka-guarantee", guarantee],
                cwd=work, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"job-{guarantee}.log"), "ab"))
            time.sleep(3)
            isolation = "read_committed" if guarantee == "exactly-once" else "read_uncommitted"
            # The job's output, and beside it its input: Kafka's own share of the latency.
            latency, baseline = (subprocess.Popen(
                [weir, "kafka-latency", "--kafka-brokers", broker.bootstrap, "--topic", topic,
                 "--duration", f"{args.seconds}s", "--warmup", "5s", "--isolation", isolation],
                stdout=subprocess.PIPE, text=True) for topic in (sink, source))
            load = subprocess.run(
                [weir, "kafka-load", "--kafka-brokers", broker.bootstrap, "--topic", source,
                 "--records", str(args.rate * (args.seconds + 5)), "--rate", str(args.rate), "--linger", "0ms"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out, _ = latency.communicate(timeout=args.seconds + 120)
            base, _ = baseline.communicate(timeout=args.seconds + 120)
            job.kill()
            job.wait()
            result = [l for l in out.splitlines() if l.startswith("RESULT ")]
            result += [l for l in base.splitlines() if l.startswith("RESULT ")]
            if load.returncode != 0 or not result:
                print(f"{guarantee}: no result (logs in {work})", file=sys.stderr)
                continue
            for line in result:
                print(f"{line} guarantee={guarantee} rate={args.rate} parallelism={args.parallelism}"
                      f" buffer_timeout={args.buffer_timeout} checkpoint_interval={args.checkpoint_interval}",
                      flush=True)
    finally:
        broker.kill()


if __name__ == "__main__":
    main()
