"""A real Apache Kafka broker for the chaos suite: one KRaft node (broker and
controller) on free ports of 127.0.0.1, run by Java 17 from the jars that
.ci/setup.sh copies into $WEIR_KAFKA_LIBS, and Kafka's own tools (topics,
console consumer, transactions, consumer groups) run against it."""

import os
import socket
import subprocess
import time

CLUSTER_ID = "MkU3OEVBNTcwNTJENDM2Qg"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A formatted and started broker. It listens on `listen` and tells clients to
    reach it at `advertised` (another host's view of this one, for pods)."""

    def __init__(self, workdir, listen="127.0.0.1", advertised="127.0.0.1"):
        libs = os.environ.get("WEIR_KAFKA_LIBS")
        if not libs or not os.path.isdir(libs):
            raise RuntimeError("WEIR_KAFKA_LIBS must name the Kafka jars (.ci/setup.sh copies them)")
        self.dir = os.path.join(workdir, "kafka")
        os.makedirs(self.dir, exist_ok=True)
        self.classpath = os.path.join(libs, "*")
        self.port, controller = _free_port(), _free_port()
        self.advertised = advertised
        self.config = os.path.join(self.dir, "server.properties")
        with open(self.config, "w") as f:
            f.write(
                "process.roles=broker,controller\nnode.id=1\n"
                f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}\n"
                f"listeners=PLAINTEXT://{listen}:{self.port},CONTROLLER://127.0.0.1:{controller}\n"
                f"advertised.listeners=PLAINTEXT://{advertised}:{self.port}\n"
                "controller.listener.names=CONTROLLER\n"
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
                f"log.dirs={os.path.join(self.dir, 'data')}\n"
                "offsets.topic.replication.factor=1\noffsets.topic.num.partitions=1\n"
                "transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n"
                "transaction.state.log.num.partitions=1\ngroup.initial.rebalance.delay.ms=0\n")
        with open(os.path.join(self.dir, "log4j2.properties"), "w") as f:
            f.write("rootLogger.level=info\nrootLogger.appenderRef.file.ref=file\n"
                    "appender.file.type=File\nappender.file.name=file\n"
                    "appender.file.fileName=${sys:kafka.logs.dir}/broker.log\n"
                    "appender.file.layout.type=PatternLayout\n"
                    "appender.file.layout.pattern=%d %p %c{1} %m%n\n")
        self.process = None
        subprocess.run(self._java("kafka.tools.StorageTool", "format", "--standalone",
                                  "--cluster-id", CLUSTER_ID, "--config", self.config),
                       check=True, stdout=subprocess.DEVNULL)
        self.start()

    @property
    def bootstrap(self):
        return f"{self.advertised}:{self.port}"

    def _java(self, main, *args):
        return ["java", "-Xmx384m", "-XX:+UseSerialGC", "-cp", self.classpath,
                f"-Dkafka.logs.dir={self.dir}",
                f"-Dlog4j2.configurationFile={os.path.join(self.dir, 'log4j2.properties')}",
                main, *args]

    def start(self, limit=60):
        """Starts the broker on its ports and data; returns once it listens."""
        self.process = subprocess.Popen(self._java("kafka.Kafka", self.config),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the Kafka broker did not listen within {limit} s")

    def kill(self):
        """SIGKILLs the broker (an outage); its data stays."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def tool(self, main, *args, timeout=120):
        """Runs one of Kafka's tools; returns its standard output."""
        return subprocess.run(self._java(main, "--bootstrap-server", self.bootstrap, *args),
                              check=True, capture_output=True, text=True, timeout=timeout).stdout

    def create_topic(self, name, partitions):
        self.tool("org.apache.kafka.tools.TopicCommand", "--create", "--topic", name,
                  "--partitions", str(partitions), "--replication-factor", "1")

    def read_committed(self, topic, idle_ms=10_000):
        """Every committed record of `topic`, read until none came for `idle_ms`."""
        out = subprocess.run(self._java("org.apache.kafka.tools.consumer.ConsoleConsumer",
                                        "--bootstrap-server", self.bootstrap, "--topic", topic,
                                        "--from-beginning", "--isolation-level", "read_committed",
                                        "--timeout-ms", str(idle_ms)),
                             capture_output=True, text=True, timeout=600).stdout
        return [line for line in out.splitlines() if line]

    def open_transactions(self, prefix):
        """The transactions of ids starting with `prefix` that are not complete."""
        rows = [r.split() for r in self.tool("org.apache.kafka.tools.TransactionsCommand", "list").splitlines()[1:]]
        done = {"CompleteCommit", "CompleteAbort", "Empty", "Dead"}
        return [r for r in rows if len(r) >= 4 and r[0].startswith(prefix) and r[3] not in done]

    def group_lag(self, group):
        """The consumer group's lag summed over its partitions (None: not known yet)."""
        try:
            out = self.tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                            "--describe", "--group", group, timeout=60)
        except subprocess.SubprocessError:
            return None
        lines = [l.split() for l in out.splitlines() if l.strip()]
        headers = [i for i, row in enumerate(lines) if "LAG" in row]
        if not headers:
            return None
        at = lines[headers[0]].index("LAG")
        lags = [row[at] for row in lines[headers[0] + 1:] if len(row) > at]
        if not lags or any(not lag.isdigit() for lag in lags):
            return None
        return sum(int(lag) for lag in lags)
