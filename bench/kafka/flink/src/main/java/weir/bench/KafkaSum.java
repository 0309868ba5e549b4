package weir.bench;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.PipelineOptions;
import org.apache.flink.configuration.RestOptions;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.runtime.jobgraph.JobGraph;
import org.apache.flink.runtime.minicluster.MiniCluster;
import org.apache.flink.runtime.minicluster.MiniClusterConfiguration;
import org.apache.flink.runtime.minicluster.RpcServiceSharing;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

/**
 * The Flink side of weir's Kafka benchmark: `key,value` records from a Kafka topic (read to
 * the end offsets it has at the start), a running sum per key, `key,sum` per record to another
 * topic, exactly once (Flink's KafkaSink, a transaction per checkpoint). Runs on a local
 * MiniCluster in this JVM and prints one RESULT line in the format of weir's benchmarks: the
 * job is measured from its submission to its result.
 *
 * <pre>
 * weir.bench.KafkaSum --brokers HOST:PORT --input TOPIC --output TOPIC --records N
 *     [--parallelism P] [--checkpoint-interval 5s] [--guarantee exactly-once|at-least-once|none]
 * </pre>
 */
public final class KafkaSum {
    /** Records that reached the sink, over every subtask of this JVM. */
    static final AtomicLong RECORDS = new AtomicLong();

    public static void main(String[] argv) throws Exception {
        String brokers = null;
        String input = null;
        String output = null;
        long records = -1;
        int parallelism = 1;
        long checkpointMs = 5_000;
        String guarantee = "exactly-once";
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            if (i + 1 >= argv.length) {
                fail("missing value of " + a);
            }
            String v = argv[++i];
            switch (a) {
                case "--brokers" -> brokers = v;
                case "--input" -> input = v;
                case "--output" -> output = v;
                case "--records" -> records = Long.parseLong(v.replace("_", ""));
                case "--parallelism" -> parallelism = Integer.parseInt(v);
                case "--checkpoint-interval" -> checkpointMs = seconds(v) * 1000;
                case "--guarantee" -> guarantee = v;
                default -> fail("unknown argument " + a);
            }
        }
        if (brokers == null || input == null || output == null || records < 0) {
            fail("--brokers, --input, --output and --records are required");
        }
        DeliveryGuarantee delivery =
                switch (guarantee) {
                    case "exactly-once" -> DeliveryGuarantee.EXACTLY_ONCE;
                    case "at-least-once" -> DeliveryGuarantee.AT_LEAST_ONCE;
                    case "none" -> DeliveryGuarantee.NONE;
                    default -> throw new IllegalArgumentException("unknown guarantee " + guarantee);
                };

        Path tmp = Files.createTempDirectory("flink-kafka-sum-");
        try {
            Configuration conf = new Configuration();
            conf.set(PipelineOptions.NAME, "flink-kafka-sum");
            conf.set(RestartStrategyOptions.RESTART_STRATEGY, "none");
            conf.set(PipelineOptions.GENERIC_TYPES, false);
            conf.set(PipelineOptions.OBJECT_REUSE, true);
            conf.set(StateBackendOptions.STATE_BACKEND, "hashmap");
            conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
            conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, tmp.resolve("checkpoints").toUri().toString());
            conf.setString("io.tmp.dirs", tmp.resolve("io").toString());
            StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
            env.enableCheckpointing(checkpointMs);

            KafkaSource<String> source =
                    KafkaSource.<String>builder()
                            .setBootstrapServers(brokers)
                            .setTopics(input)
                            .setGroupId("flink-kafka-sum")
                            .setStartingOffsets(OffsetsInitializer.earliest())
                            .setBounded(OffsetsInitializer.latest())
                            .setValueOnlyDeserializer(new SimpleStringSchema())
                            .setProperty("isolation.level", "read_committed")
                            .build();
            KafkaSink<String> sink =
                    KafkaSink.<String>builder()
                            .setBootstrapServers(brokers)
                            .setRecordSerializer(
                                    KafkaRecordSerializationSchema.builder()
                                            .setTopic(output)
                                            .setValueSerializationSchema(new SimpleStringSchema())
                                            .build())
                            .setDeliveryGuarantee(delivery)
                            .setTransactionalIdPrefix("flink-kafka-sum-" + System.nanoTime())
                            .setProperty("transaction.timeout.ms", "900000")
                            .build();
            env.fromSource(source, WatermarkStrategy.noWatermarks(), "records")
                    .map(KafkaSum::parse)
                    .returns(Types.TUPLE(Types.LONG, Types.LONG))
                    .keyBy(r -> r.f0, Types.LONG)
                    .reduce((acc, r) -> Tuple2.of(acc.f0, acc.f1 + r.f1))
                    .returns(Types.TUPLE(Types.LONG, Types.LONG))
                    .map(r -> {
                                RECORDS.incrementAndGet();
                                return r.f0 + "," + r.f1;
                            })
                    .returns(Types.STRING)
                    .sinkTo(sink);
            JobGraph job = env.getStreamGraph().getJobGraph();

            var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
            Configuration clusterConf = new Configuration(conf);
            clusterConf.set(RestOptions.BIND_PORT, "0");
            MiniCluster cluster =
                    new MiniCluster(
                            new MiniClusterConfiguration.Builder()
                                    .setConfiguration(clusterConf)
                                    .setNumTaskManagers(1)
                                    .setNumSlotsPerTaskManager(parallelism)
                                    .setRpcServiceSharing(RpcServiceSharing.SHARED)
                                    .build());
            JobExecutionResult result;
            double wall;
            double cpu;
            try {
                cluster.start();
                long cpu0 = os.getProcessCpuTime();
                long wall0 = System.nanoTime();
                result = cluster.executeJobBlocking(job);
                wall = (System.nanoTime() - wall0) / 1e9;
                cpu = (os.getProcessCpuTime() - cpu0) / 1e9;
            } finally {
                cluster.close();
            }
            if (RECORDS.get() != records) {
                fail("the sink saw " + RECORDS.get() + " records, expected " + records);
            }
            System.out.printf(
                    Locale.ROOT,
                    "RESULT flink-kafka-sum guarantee=%s parallelism=%d checkpoint_interval=%ds"
                            + " records=%d seconds=%.3f cpu_seconds=%.3f rps=%.0f rps_per_core=%.0f%n",
                    guarantee,
                    parallelism,
                    checkpointMs / 1000,
                    records,
                    wall,
                    cpu,
                    records / wall,
                    records / Math.max(cpu, 1e-9));
            System.out.printf(
                    Locale.ROOT,
                    "INFO flink-kafka-sum job_net_runtime_seconds=%.3f jvm=%s max_heap_mb=%d%n",
                    result.getNetRuntime() / 1e3,
                    System.getProperty("java.vm.version"),
                    Runtime.getRuntime().maxMemory() >> 20);
        } finally {
            try (Stream<Path> paths = Files.walk(tmp)) {
                paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
        // MiniCluster leaves non-daemon threads behind now and then.
        System.exit(0);
    }

    static Tuple2<Long, Long> parse(String line) {
        int comma = line.indexOf(',');
        return Tuple2.of(Long.parseLong(line, 0, comma, 10), Long.parseLong(line, comma + 1, line.length(), 10));
    }

    static long seconds(String v) {
        if (!v.endsWith("s")) {
            fail("durations are in seconds, like 5s: " + v);
        }
        return Long.parseLong(v.substring(0, v.length() - 1));
    }

    static void fail(String message) {
        System.err.println("flink-kafka-sum: " + message);
        System.exit(2);
    }
}
