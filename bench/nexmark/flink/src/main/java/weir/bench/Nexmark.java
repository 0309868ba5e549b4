package weir.bench;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.common.functions.JoinFunction;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.MemorySize;
import org.apache.flink.configuration.PipelineOptions;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.configuration.TaskManagerOptions;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

/**
 * The Flink side of weir's Nexmark comparison: q0, q1, q2, q5, q7 and q8 in the DataStream API
 * on a local MiniCluster in this JVM, over events generated as bench/nexmark/SPEC.md defines
 * them. Prints one RESULT line in the format of weir's benchmarks.
 *
 * <pre>
 * java -cp ... weir.bench.Nexmark --query q5 --events 10000000 --parallelism 2 \
 *     --checkpoint-interval 10s --state-backend hashmap|rocksdb
 * java -cp ... weir.bench.Nexmark --dump 60      # the first 60 events, one a line
 * </pre>
 */
public final class Nexmark {
    static final long WINDOW_MS = 10_000;
    static final long SLIDE_MS = 2_000;

    /** --print: the sinks print what they receive. */
    static boolean printOutput;

    static <T> CountingSink<T> sink() {
        return new CountingSink<>(printOutput);
    }

    public static void main(String[] argv) throws Exception {
        String query = "q0";
        long events = 10_000_000;
        int parallelism = 1;
        Long checkpointMs = 10_000L;
        String backend = "hashmap";
        String checkpointDir = null;
        MemorySize managed = MemorySize.parse("512m");
        boolean objectReuse = true;
        long dump = -1;
        long seed = 0;
        long rate = 100_000;
        long baseTime = 1_577_836_800_000L;
        long delayedPerMille = 0;
        long maxDelayMs = 2000;
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            switch (a) {
                case "--query":
                    query = value(argv, ++i, a).toLowerCase(Locale.ROOT);
                    break;
                case "--events":
                    events = Long.parseLong(value(argv, ++i, a).replace("_", "").replace(",", ""));
                    break;
                case "--parallelism":
                    parallelism = Integer.parseInt(value(argv, ++i, a));
                    break;
                case "--checkpoint-interval":
                    checkpointMs = parseDuration(value(argv, ++i, a));
                    break;
                case "--state-backend":
                    backend = value(argv, ++i, a);
                    break;
                case "--checkpoint-dir":
                    checkpointDir = value(argv, ++i, a);
                    break;
                case "--managed-memory":
                    managed = MemorySize.parse(value(argv, ++i, a));
                    break;
                case "--print":
                    printOutput = true;
                    break;
                case "--no-object-reuse":
                    objectReuse = false;
                    break;
                case "--dump":
                    dump = Long.parseLong(value(argv, ++i, a));
                    break;
                case "--seed":
                    seed = Long.parseUnsignedLong(value(argv, ++i, a));
                    break;
                case "--rate":
                    rate = Long.parseLong(value(argv, ++i, a));
                    break;
                case "--base-time":
                    baseTime = Long.parseLong(value(argv, ++i, a));
                    break;
                case "--delayed-per-mille":
                    delayedPerMille = Long.parseLong(value(argv, ++i, a));
                    break;
                case "--max-delay-ms":
                    maxDelayMs = Long.parseLong(value(argv, ++i, a));
                    break;
                case "-h":
                case "--help":
                    System.out.println(USAGE);
                    return;
                default:
                    fail("unknown argument " + a);
            }
        }
        Generator generator = new Generator(seed, rate, baseTime, delayedPerMille, maxDelayMs);
        if (dump >= 0) {
            StringBuilder out = new StringBuilder();
            for (long n = 0; n < dump; n++) {
                out.append(Generator.dumpLine(n, generator.event(n))).append('\n');
            }
            System.out.print(out);
            System.out.flush();
            return;
        }
        if (!backend.equals("hashmap") && !backend.equals("rocksdb")) {
            fail("--state-backend is hashmap or rocksdb, not " + backend);
        }
        if (!List.of("q0", "q1", "q2", "q5", "q7", "q8").contains(query)) {
            fail("unknown query " + query + " (q0 q1 q2 q5 q7 q8)");
        }
        if (parallelism < 1 || events < 0) {
            fail("--parallelism must be positive and --events not negative");
        }

        Path tmp = Files.createTempDirectory("flink-nexmark-");
        try {
            Configuration conf = new Configuration();
            conf.set(PipelineOptions.NAME, "flink-nexmark-" + query);
            conf.set(RestartStrategyOptions.RESTART_STRATEGY, "none");
            conf.set(PipelineOptions.GENERIC_TYPES, false);
            conf.set(PipelineOptions.OBJECT_REUSE, objectReuse);
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
            build(env, query, new NexmarkSource(generator, events), generator);

            MeasuredRun run =
                    MeasuredRun.of(conf, env.getStreamGraph().getJobGraph(), parallelism);
            System.out.printf(
                    Locale.ROOT,
                    "RESULT flink-nexmark-%s parallelism=%d checkpoint_interval=%s events=%d"
                            + " seconds=%.3f cpu_seconds=%.3f rps=%.0f rps_per_core=%.0f%n",
                    query,
                    parallelism,
                    checkpointMs == null ? "off" : formatDuration(checkpointMs),
                    events,
                    run.seconds,
                    run.cpuSeconds,
                    events / run.seconds,
                    events / Math.max(run.cpuSeconds, 1e-9));
            System.out.printf(
                    Locale.ROOT,
                    "INFO flink-nexmark-%s state_backend=%s output_records=%d checkpoints=%d"
                            + " job_net_runtime_seconds=%.3f with_minicluster_seconds=%.3f"
                            + " with_minicluster_cpu_seconds=%.3f object_reuse=%s jvm=%s"
                            + " max_heap_mb=%d%n",
                    query,
                    backend,
                    CountingSink.RECORDS.get(),
                    NexmarkSource.CHECKPOINTS_COMPLETED.get(),
                    run.result.getNetRuntime() / 1e3,
                    run.totalSeconds,
                    run.totalCpuSeconds,
                    objectReuse,
                    System.getProperty("java.vm.version"),
                    Runtime.getRuntime().maxMemory() >> 20);
        } finally {
            deleteTree(tmp);
        }
        // MiniCluster leaves non-daemon threads behind now and then.
        System.exit(0);
    }

    static final String USAGE =
            "weir.bench.Nexmark --query q0|q1|q2|q5|q7|q8 [--events N] [--parallelism P]\n"
                    + "    [--checkpoint-interval 10s|off] [--state-backend hashmap|rocksdb]\n"
                    + "    [--checkpoint-dir URI] [--managed-memory 512m] [--no-object-reuse] [--print]\n"
                    + "    [--seed S] [--rate R] [--base-time MS] [--delayed-per-mille D]"
                    + " [--max-delay-ms MS]\n"
                    + "weir.bench.Nexmark --dump N   (the first N events, tab-separated)";

    /** Adds query {@code query}'s pipeline, source to sink, to {@code env}. */
    static void build(
            StreamExecutionEnvironment env, String query, NexmarkSource source, Generator g) {
        boolean eventTime = query.equals("q5") || query.equals("q7") || query.equals("q8");
        WatermarkStrategy<Event> watermarks =
                eventTime
                        ? WatermarkStrategy.<Event>forBoundedOutOfOrderness(
                                        Duration.ofMillis(g.outOfOrdernessMs()))
                                .withTimestampAssigner((e, ts) -> e.dateTime())
                        : WatermarkStrategy.noWatermarks();
        DataStream<Event> events = env.fromSource(source, watermarks, "nexmark-source");
        TypeInformation<Bid> bidType = Types.POJO(Bid.class);
        DataStream<Bid> bids =
                events.flatMap(
                                (FlatMapFunction<Event, Bid>)
                                        (e, out) -> {
                                            if (e.type == Event.Type.BID) out.collect(e.bid);
                                        })
                        .returns(bidType)
                        .name("bids");
        switch (query) {
            case "q0":
                bids.sinkTo(sink()).name("sink");
                break;
            case "q1":
                bids.map(
                                b ->
                                        new Bid(
                                                b.auction,
                                                b.bidder,
                                                b.price * 908 / 1000,
                                                b.channel,
                                                b.url,
                                                b.dateTime,
                                                b.extra))
                        .returns(bidType)
                        .name("q1-euros")
                        .sinkTo(sink())
                        .name("sink");
                break;
            case "q2":
                bids.flatMap(
                                (FlatMapFunction<Bid, Tuple2<Long, Long>>)
                                        (b, out) -> {
                                            if (b.auction % 123 == 0) {
                                                out.collect(Tuple2.of(b.auction, b.price));
                                            }
                                        })
                        .returns(Types.TUPLE(Types.LONG, Types.LONG))
                        .name("q2-select")
                        .sinkTo(sink())
                        .name("sink");
                break;
            case "q5":
                q5(bids);
                break;
            case "q7":
                q7(bids);
                break;
            case "q8":
                q8(events);
                break;
            default:
                fail("unknown query " + query + " (q0 q1 q2 q5 q7 q8)");
        }
    }

    // ---- q5: hot items ---------------------------------------------------------------------

    /**
     * Bids per auction in 10 s windows sliding by 2 s; then, per window, the auctions with the
     * most bids: (auction, count, window end).
     */
    static void q5(DataStream<Bid> bids) {
        TypeInformation<Tuple3<Long, Long, Long>> counted =
                Types.TUPLE(Types.LONG, Types.LONG, Types.LONG);
        bids.keyBy(b -> b.auction, Types.LONG)
                .window(
                        SlidingEventTimeWindows.of(
                                Duration.ofMillis(WINDOW_MS), Duration.ofMillis(SLIDE_MS)))
                .aggregate(new Count(), new AuctionWindowEnd(), Types.LONG, Types.LONG, counted)
                .name("q5-count")
                .keyBy(t -> t.f2, Types.LONG)
                .process(new HotItems())
                .returns(counted)
                .name("q5-max")
                .sinkTo(sink())
                .name("sink");
    }

    static final class Count implements AggregateFunction<Bid, Long, Long> {
        @Override
        public Long createAccumulator() {
            return 0L;
        }

        @Override
        public Long add(Bid value, Long acc) {
            return acc + 1;
        }

        @Override
        public Long getResult(Long acc) {
            return acc;
        }

        @Override
        public Long merge(Long a, Long b) {
            return a + b;
        }
    }

    /** (auction, count, window end). */
    static final class AuctionWindowEnd
            extends ProcessWindowFunction<Long, Tuple3<Long, Long, Long>, Long, TimeWindow> {
        @Override
        public void process(
                Long auction,
                Context ctx,
                Iterable<Long> counts,
                Collector<Tuple3<Long, Long, Long>> out) {
            out.collect(Tuple3.of(auction, counts.iterator().next(), ctx.window().getEnd()));
        }
    }

    /**
     * Keyed by window end: keeps the highest count and the auctions that have it, and emits them
     * when the watermark passes the window (the window results carry timestamp end - 1 and come
     * before the watermark that closed the window).
     */
    static final class HotItems
            extends KeyedProcessFunction<Long, Tuple3<Long, Long, Long>, Tuple3<Long, Long, Long>> {
        private transient ValueState<Long> max;
        private transient ListState<Long> auctions;

        @Override
        public void open(org.apache.flink.api.common.functions.OpenContext context) {
            max = getRuntimeContext().getState(new ValueStateDescriptor<>("max", Types.LONG));
            auctions =
                    getRuntimeContext()
                            .getListState(new ListStateDescriptor<>("auctions", Types.LONG));
        }

        @Override
        public void processElement(
                Tuple3<Long, Long, Long> t, Context ctx, Collector<Tuple3<Long, Long, Long>> out)
                throws Exception {
            Long best = max.value();
            if (best == null) {
                ctx.timerService().registerEventTimeTimer(t.f2 - 1);
            }
            if (best == null || t.f1 > best) {
                max.update(t.f1);
                auctions.update(List.of(t.f0));
            } else if (t.f1.equals(best)) {
                auctions.add(t.f0);
            }
        }

        @Override
        public void onTimer(
                long timestamp, OnTimerContext ctx, Collector<Tuple3<Long, Long, Long>> out)
                throws Exception {
            Long best = max.value();
            for (Long auction : auctions.get()) {
                out.collect(Tuple3.of(auction, best, ctx.getCurrentKey()));
            }
            max.clear();
            auctions.clear();
        }
    }

    // ---- q7: highest bid -------------------------------------------------------------------

    /**
     * The bids with the highest price of each 10 s tumbling window, in two phases: the highest
     * bids per auction and window (in parallel), then per window the highest of those. (weir's
     * q7 has the same plan; Nexmark's SQL q7 joins the bids with their window's maximum.)
     */
    static void q7(DataStream<Bid> bids) {
        TypeInformation<Bid> bidType = Types.POJO(Bid.class);
        TypeInformation<List<Bid>> listType = Types.LIST(bidType);
        bids.keyBy(b -> b.auction, Types.LONG)
                .window(TumblingEventTimeWindows.of(Duration.ofMillis(WINDOW_MS)))
                .aggregate(new MaxBids(), new EmitBids(), listType, listType, bidType)
                .name("q7-highest-per-auction")
                .keyBy(b -> windowStart(b.dateTime), Types.LONG)
                .process(new GlobalMaxBids())
                .returns(bidType)
                .name("q7-highest")
                .sinkTo(sink())
                .name("sink");
    }

    static long windowStart(long ts) {
        return TimeWindow.getWindowStartWithOffset(ts, 0, WINDOW_MS);
    }

    /** The bids with the highest price so far (all of the same price). */
    static final class MaxBids implements AggregateFunction<Bid, List<Bid>, List<Bid>> {
        @Override
        public List<Bid> createAccumulator() {
            return new ArrayList<>(1);
        }

        @Override
        public List<Bid> add(Bid b, List<Bid> acc) {
            if (acc.isEmpty() || b.price > acc.get(0).price) {
                acc.clear();
                acc.add(b);
            } else if (b.price == acc.get(0).price) {
                acc.add(b);
            }
            return acc;
        }

        @Override
        public List<Bid> getResult(List<Bid> acc) {
            return acc;
        }

        @Override
        public List<Bid> merge(List<Bid> a, List<Bid> b) {
            for (Bid x : b) {
                add(x, a);
            }
            return a;
        }
    }

    static final class EmitBids extends ProcessWindowFunction<List<Bid>, Bid, Long, TimeWindow> {
        @Override
        public void process(
                Long auction, Context ctx, Iterable<List<Bid>> results, Collector<Bid> out) {
            for (List<Bid> bids : results) {
                for (Bid b : bids) {
                    out.collect(b);
                }
            }
        }
    }

    /** Keyed by window start: merges the auctions' highest bids and emits them at window end. */
    static final class GlobalMaxBids extends KeyedProcessFunction<Long, Bid, Bid> {
        private transient ValueState<Long> max;
        private transient ListState<Bid> best;

        @Override
        public void open(org.apache.flink.api.common.functions.OpenContext context) {
            max = getRuntimeContext().getState(new ValueStateDescriptor<>("max", Types.LONG));
            best =
                    getRuntimeContext()
                            .getListState(new ListStateDescriptor<>("best", Types.POJO(Bid.class)));
        }

        @Override
        public void processElement(Bid b, Context ctx, Collector<Bid> out) throws Exception {
            Long price = max.value();
            if (price == null) {
                ctx.timerService().registerEventTimeTimer(ctx.getCurrentKey() + WINDOW_MS - 1);
            }
            if (price == null || b.price > price) {
                max.update(b.price);
                best.update(List.of(b));
            } else if (b.price == price) {
                best.add(b);
            }
        }

        @Override
        public void onTimer(long timestamp, OnTimerContext ctx, Collector<Bid> out)
                throws Exception {
            for (Bid b : best.get()) {
                out.collect(b);
            }
            max.clear();
            best.clear();
        }
    }

    // ---- q8: monitor new users ---------------------------------------------------------------

    /**
     * Persons who opened an auction in the same 10 s tumbling window: (id, name, window start)
     * per such auction, by a windowed join on person.id == auction.seller (as weir's q8 does;
     * Nexmark's SQL q8 joins the distinct persons with the distinct sellers of each window, so
     * it has one row per person where this has one per auction).
     */
    static void q8(DataStream<Event> events) {
        DataStream<Person> persons =
                events.flatMap(
                                (FlatMapFunction<Event, Person>)
                                        (e, out) -> {
                                            if (e.type == Event.Type.PERSON) {
                                                out.collect(e.newPerson);
                                            }
                                        })
                        .returns(Types.POJO(Person.class))
                        .name("persons");
        DataStream<Auction> auctions =
                events.flatMap(
                                (FlatMapFunction<Event, Auction>)
                                        (e, out) -> {
                                            if (e.type == Event.Type.AUCTION) {
                                                out.collect(e.newAuction);
                                            }
                                        })
                        .returns(Types.POJO(Auction.class))
                        .name("auctions");
        persons.join(auctions)
                .where(p -> p.id, Types.LONG)
                .equalTo(a -> a.seller, Types.LONG)
                .window(TumblingEventTimeWindows.of(Duration.ofMillis(WINDOW_MS)))
                .apply(
                        (JoinFunction<Person, Auction, Tuple3<Long, String, Long>>)
                                (p, a) -> Tuple3.of(p.id, p.name, windowStart(p.dateTime)),
                        Types.TUPLE(Types.LONG, Types.STRING, Types.LONG))
                .name("q8-join")
                .sinkTo(sink())
                .name("sink");
    }

    // ---- arguments ---------------------------------------------------------------------------

    static String value(String[] argv, int i, String flag) {
        if (i >= argv.length) {
            fail(flag + " needs a value");
        }
        return argv[i];
    }

    static void fail(String message) {
        System.err.println("error: " + message + "\n" + USAGE);
        System.exit(2);
    }

    /** "10s", "500ms", "1m", "1h", "2s 500ms", a bare number of seconds, or "off"/"0": ms. */
    static Long parseDuration(String s) {
        s = s.trim().toLowerCase(Locale.ROOT);
        if (s.equals("off") || s.equals("none") || s.equals("0")) {
            return null;
        }
        long total = 0;
        for (String part : s.split("\\s+")) {
            int i = 0;
            while (i < part.length() && (Character.isDigit(part.charAt(i)) || part.charAt(i) == '.')) {
                i++;
            }
            double v = Double.parseDouble(part.substring(0, i));
            String unit = part.substring(i);
            double ms;
            switch (unit) {
                case "ms":
                    ms = v;
                    break;
                case "":
                case "s":
                    ms = v * 1000;
                    break;
                case "m":
                case "min":
                    ms = v * 60_000;
                    break;
                case "h":
                    ms = v * 3_600_000;
                    break;
                default:
                    throw new IllegalArgumentException("bad duration " + s);
            }
            total += Math.round(ms);
        }
        return total == 0 ? null : total;
    }

    /** As weir prints durations (humantime): "10s", "1m 30s", "500ms". */
    static String formatDuration(long ms) {
        long h = ms / 3_600_000, m = ms / 60_000 % 60, s = ms / 1000 % 60, rest = ms % 1000;
        List<String> parts = new ArrayList<>();
        if (h > 0) parts.add(h + "h");
        if (m > 0) parts.add(m + "m");
        if (s > 0) parts.add(s + "s");
        if (rest > 0) parts.add(rest + "ms");
        return parts.isEmpty() ? "0s" : String.join(" ", parts);
    }

    static void deleteTree(Path root) {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
        } catch (IOException e) {
            System.err.println("warning: could not delete " + root + ": " + e);
        }
    }
}
