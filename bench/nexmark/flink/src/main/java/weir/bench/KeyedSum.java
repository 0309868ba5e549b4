package weir.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.MemorySize;
import org.apache.flink.configuration.PipelineOptions;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.configuration.TaskManagerOptions;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

/**
 * weir's {@code keyed-sum} on Flink: record {@code i} of {@code 0 .. records} is
 * {@code ((mix(i) >> 1) % keys, i)} (weir's {@code mix}, so both engines see the same keys in
 * the same order), keyed by its key; a ValueState keeps each key's running sum, and every record
 * emits {@code (key, sum)} into a discarding sink. Prints one RESULT line in the format of
 * weir's benchmarks (records per CPU-second of the whole process, compactions included).
 */
public final class KeyedSum {
    static final String USAGE =
            "weir.bench.KeyedSum [--records N] [--keys K] [--parallelism P]\n"
                    + "    [--checkpoint-interval 5s|off] [--state-backend hashmap|rocksdb]\n"
                    + "    [--managed-memory 128m] [--checkpoint-dir URI]";

    /** The 64-bit finalizer of SplitMix64, as weir's {@code keys::mix}. */
    static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    /** Adds each value to its key's sum and emits the sum. */
    static final class Sum
            extends KeyedProcessFunction<Long, Tuple2<Long, Long>, Tuple2<Long, Long>> {
        private transient ValueState<Long> sum;

        @Override
        public void open(OpenContext context) {
            sum = getRuntimeContext().getState(new ValueStateDescriptor<>("sum", Types.LONG));
        }

        @Override
        public void processElement(
                Tuple2<Long, Long> record, Context context, Collector<Tuple2<Long, Long>> out)
                throws Exception {
            Long old = sum.value();
            long next = (old == null ? 0 : old) + record.f1;
            sum.update(next);
            record.f1 = next;
            out.collect(record);
        }
    }

    public static void main(String[] argv) throws Exception {
        long records = 10_000_000;
        long keys = 10_000;
        int parallelism = 1;
        Long checkpointMs = 5_000L;
        String backend = "rocksdb";
        String checkpointDir = null;
        MemorySize managed = MemorySize.parse("128m");
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            switch (a) {
                case "--records":
                    records = Long.parseLong(Nexmark.value(argv, ++i, a).replace("_", ""));
                    break;
                case "--keys":
                    keys = Long.parseLong(Nexmark.value(argv, ++i, a).replace("_", ""));
                    break;
                case "--parallelism":
                    parallelism = Integer.parseInt(Nexmark.value(argv, ++i, a));
                    break;
                case "--checkpoint-interval":
                    checkpointMs = Nexmark.parseDuration(Nexmark.value(argv, ++i, a));
                    break;
                case "--state-backend":
                    backend = Nexmark.value(argv, ++i, a);
                    break;
                case "--checkpoint-dir":
                    checkpointDir = Nexmark.value(argv, ++i, a);
                    break;
                case "--managed-memory":
                    managed = MemorySize.parse(Nexmark.value(argv, ++i, a));
                    break;
                case "-h":
                case "--help":
                    System.out.println(USAGE);
                    return;
                default:
                    fail("unknown argument " + a);
            }
        }
        if (!backend.equals("hashmap") && !backend.equals("rocksdb")) {
            fail("--state-backend is hashmap or rocksdb, not " + backend);
        }
        if (parallelism < 1 || records < 1 || keys < 1) {
            fail("--parallelism, --records and --keys must be positive");
        }
        Path tmp = Files.createTempDirectory("flink-keyed-sum-");
        try {
            Configuration conf = new Configuration();
            conf.set(PipelineOptions.NAME, "flink-keyed-sum");
            conf.set(RestartStrategyOptions.RESTART_STRATEGY, "none");
            conf.set(PipelineOptions.GENERIC_TYPES, false);
            conf.set(PipelineOptions.OBJECT_REUSE, true);
            conf.set(StateBackendOptions.STATE_BACKEND, backend);
            conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
            conf.set(
                    CheckpointingOptions.CHECKPOINTS_DIRECTORY,
                    checkpointDir != null
                            ? checkpointDir
                            : tmp.resolve("checkpoints").toUri().toString());
            conf.set(CheckpointingOptions.INCREMENTAL_CHECKPOINTS, backend.equals("rocksdb"));
            conf.set(TaskManagerOptions.MANAGED_MEMORY_SIZE, managed);
            conf.setString("io.tmp.dirs", tmp.resolve("io").toString());
            StreamExecutionEnvironment env =
                    StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
            if (checkpointMs != null) {
                env.enableCheckpointing(checkpointMs);
            }
            final long k = keys;
            env.fromSequence(0, records - 1)
                    .name("records")
                    .map(i -> Tuple2.of((mix(i) >>> 1) % k, i))
                    .returns(Types.TUPLE(Types.LONG, Types.LONG))
                    .keyBy(r -> r.f0, Types.LONG)
                    .process(new Sum())
                    .returns(Types.TUPLE(Types.LONG, Types.LONG))
                    .name("sum")
                    .sinkTo(new CountingSink<>())
                    .name("sink");
            MeasuredRun run = MeasuredRun.of(conf, env.getStreamGraph().getJobGraph(), parallelism);
            System.out.printf(
                    Locale.ROOT,
                    "RESULT flink-keyed-sum parallelism=%d keys=%d state=%s checkpoint_interval=%s"
                            + " records=%d seconds=%.3f cpu_seconds=%.3f rps=%.0f"
                            + " rps_per_core=%.0f%n",
                    parallelism,
                    keys,
                    backend,
                    checkpointMs == null ? "off" : Nexmark.formatDuration(checkpointMs),
                    records,
                    run.seconds,
                    run.cpuSeconds,
                    records / run.seconds,
                    records / Math.max(run.cpuSeconds, 1e-9));
            System.out.printf(
                    Locale.ROOT,
                    "INFO flink-keyed-sum output_records=%d managed_memory=%s"
                            + " with_minicluster_cpu_seconds=%.3f jvm=%s max_heap_mb=%d%n",
                    CountingSink.RECORDS.get(),
                    managed,
                    run.totalCpuSeconds,
                    System.getProperty("java.vm.version"),
                    Runtime.getRuntime().maxMemory() >> 20);
        } finally {
            Nexmark.deleteTree(tmp);
        }
        // MiniCluster leaves non-daemon threads behind now and then.
        System.exit(0);
    }

    static void fail(String message) {
        System.err.println("error: " + message + "\n" + USAGE);
        System.exit(2);
    }
}
