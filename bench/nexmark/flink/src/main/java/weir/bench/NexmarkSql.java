package weir.bench;

import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.MemorySize;
import org.apache.flink.configuration.PipelineOptions;
import org.apache.flink.configuration.RestOptions;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.configuration.TaskManagerOptions;
import org.apache.flink.runtime.jobgraph.JobGraph;
import org.apache.flink.runtime.minicluster.MiniCluster;
import org.apache.flink.runtime.minicluster.MiniClusterConfiguration;
import org.apache.flink.runtime.minicluster.RpcServiceSharing;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.Schema;
import org.apache.flink.table.api.TableDescriptor;
import org.apache.flink.table.api.bridge.java.StreamStatementSet;
import org.apache.flink.table.api.bridge.java.StreamTableEnvironment;
import org.apache.flink.table.catalog.Column;
import org.apache.flink.table.catalog.ResolvedSchema;

/**
 * The Flink SQL side of weir's Nexmark-in-SQL comparison: runs one of weir's query files
 * ({@code examples/sql/nexmark/qN.sql}, unchanged) with Flink 2.3.0's SQL planner on a local
 * MiniCluster in this JVM, over the tables {@code person}, {@code auction} and {@code bid} of
 * the same generated events (declared as weir declares its built-in ones, over the {@code
 * nexmark} connector of {@link NexmarkTableFactory}). Measures it as {@link Nexmark} measures
 * the DataStream queries and prints a RESULT line, or with {@code --output FILE} writes the
 * rows its INSERTs produce to FILE as weir's JSON lines instead.
 *
 * <pre>
 * java -cp ... weir.bench.NexmarkSql --sql examples/sql/nexmark/q1.sql --events 10000000 \
 *     --parallelism 2 --checkpoint-interval 10s --state-backend hashmap|rocksdb
 * java -cp ... weir.bench.NexmarkSql --sql q1.sql --events 100000 --output q1.flink.jsonl
 * java -cp ... weir.bench.NexmarkSql --sql q1.sql --explain
 * </pre>
 */
public final class NexmarkSql {
    /** The tables every script has, as weir declares its built-in ones; %d: events.num. */
    static final String TABLES =
            "CREATE TABLE person (\n"
                    + "  id BIGINT, name STRING, email_address STRING, credit_card STRING,"
                    + " city STRING, state STRING,\n"
                    + "  date_time TIMESTAMP(3),\n"
                    + "  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND\n"
                    + ") WITH ('connector' = 'nexmark', 'kind' = 'person'%1$s);\n"
                    + "CREATE TABLE auction (\n"
                    + "  id BIGINT, item_name STRING, initial_bid BIGINT, reserve BIGINT,"
                    + " date_time TIMESTAMP(3),\n"
                    + "  expires TIMESTAMP(3), seller BIGINT, category BIGINT,\n"
                    + "  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND\n"
                    + ") WITH ('connector' = 'nexmark', 'kind' = 'auction'%1$s);\n"
                    + "CREATE TABLE bid (\n"
                    + "  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING,"
                    + " url STRING, date_time TIMESTAMP(3),\n"
                    + "  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND\n"
                    + ") WITH ('connector' = 'nexmark', 'kind' = 'bid'%1$s);\n";

    static final Set<String> BUILT_IN = Set.of("person", "auction", "bid");

    static final String USAGE =
            "weir.bench.NexmarkSql --sql FILE [--sql FILE ...] [--events N] [--parallelism P]\n"
                    + "    [--checkpoint-interval 10s|off] [--state-backend hashmap|rocksdb]\n"
                    + "    [--checkpoint-dir URI] [--managed-memory 512m] [--no-object-reuse]\n"
                    + "    [--option TABLE.KEY=VALUE ...] [--output FILE | --explain]\n"
                    + "The files are read as one script; person, auction and bid are built in\n"
                    + "(--events of every kind; a script's CREATE TABLE of the same name replaces one);\n"
                    + "--option sets a table's WITH option (ALTER TABLE ... SET), as weir's --option.";

    public static void main(String[] argv) throws Exception {
        List<Path> files = new ArrayList<>();
        long events = 10_000_000;
        int parallelism = 1;
        Long checkpointMs = 10_000L;
        String backend = "hashmap";
        String checkpointDir = null;
        MemorySize managed = MemorySize.parse("512m");
        boolean objectReuse = true;
        String output = null;
        boolean explain = false;
        List<String[]> options = new ArrayList<>();
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            switch (a) {
                case "--sql":
                case "-f":
                    files.add(Path.of(value(argv, ++i, a)));
                    break;
                case "--events":
                    events = Long.parseLong(value(argv, ++i, a).replace("_", "").replace(",", ""));
                    break;
                case "--parallelism":
                    parallelism = Integer.parseInt(value(argv, ++i, a));
                    break;
                case "--checkpoint-interval":
                    checkpointMs = Nexmark.parseDuration(value(argv, ++i, a));
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
                case "--no-object-reuse":
                    objectReuse = false;
                    break;
                case "--output":
                    output = value(argv, ++i, a);
                    break;
                case "--explain":
                    explain = true;
                    break;
                case "--option": {
                    String o = value(argv, ++i, a);
                    int eq = o.indexOf('=');
                    int dot = o.indexOf('.');
                    if (dot < 1 || eq < dot + 2) {
                        fail("--option is TABLE.KEY=VALUE, not " + o);
                    }
                    options.add(new String[] {
                        o.substring(0, dot), o.substring(dot + 1, eq), o.substring(eq + 1)
                    });
                    break;
                }
                case "-h":
                case "--help":
                    System.out.println(USAGE);
                    return;
                default:
                    fail("unknown argument " + a);
            }
        }
        if (files.isEmpty()) {
            fail("--sql FILE is required");
        }
        if (!backend.equals("hashmap") && !backend.equals("rocksdb")) {
            fail("--state-backend is hashmap or rocksdb, not " + backend);
        }
        if (parallelism < 1 || events < 0) {
            fail("--parallelism must be positive and --events not negative");
        }
        StringBuilder script = new StringBuilder();
        for (Path f : files) {
            script.append(Files.readString(f, StandardCharsets.UTF_8)).append("\n;\n");
        }
        String last = files.get(files.size() - 1).getFileName().toString();
        String query = last.endsWith(".sql") ? last.substring(0, last.length() - 4) : last;

        Path tmp = Files.createTempDirectory("flink-nexmark-sql-");
        try {
            Configuration conf = new Configuration();
            conf.set(PipelineOptions.NAME, "flink-sql-nexmark-" + query);
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
            StreamTableEnvironment tEnv =
                    StreamTableEnvironment.create(env, EnvironmentSettings.inStreamingMode());
            // TIMESTAMP(3) is zone-less either way; this makes TIMESTAMP_LTZ and PROCTIME() UTC.
            tEnv.getConfig().set("table.local-time-zone", "UTC");

            for (String ddl : statements(String.format(Locale.ROOT, TABLES,
                    ", 'events.num' = '" + events + "'"))) {
                tEnv.executeSql(ddl);
            }
            StreamStatementSet inserts = tEnv.createStatementSet();
            Set<String> sinks = new LinkedHashSet<>();
            List<String> insertSql = new ArrayList<>();
            for (String statement : statements(script.toString())) {
                String head = statement.toUpperCase(Locale.ROOT);
                Matcher create = CREATE_TABLE.matcher(statement);
                Matcher insert = INSERT.matcher(statement);
                Matcher set = SET.matcher(statement);
                if (insert.lookingAt()) {
                    sinks.add(insert.group(1));
                    insertSql.add(statement);
                } else if (set.matches()) {
                    tEnv.getConfig().set(set.group(1), set.group(2));
                } else {
                    boolean builtIn = create.lookingAt()
                            && BUILT_IN.contains(unquote(create.group(1)).toLowerCase(Locale.ROOT));
                    if (builtIn) {
                        tEnv.executeSql("DROP TABLE IF EXISTS " + create.group(1));
                    }
                    if (head.startsWith("SELECT") || head.startsWith("WITH")) {
                        fail("a script holds CREATE TABLEs and INSERT INTOs; run a query"
                                + " with INSERT INTO");
                    }
                    tEnv.executeSql(statement);
                    // A built-in table the script declares again still holds --events
                    // events, as weir bench's --option TABLE.events.num gives it.
                    if (builtIn && !statement.contains("'events.num'")) {
                        tEnv.executeSql("ALTER TABLE " + create.group(1)
                                + " SET ('events.num' = '" + events + "')");
                    }
                }
            }
            // --option TABLE.KEY=VALUE: over the table's own options, as weir's --option.
            for (String[] o : options) {
                tEnv.executeSql(
                        "ALTER TABLE " + o[0] + " SET ('" + o[1].replace("'", "''") + "' = '"
                                + o[2].replace("'", "''") + "')");
            }
            if (insertSql.isEmpty()) {
                fail("the script has no INSERT INTO: nothing would run");
            }
            if (output != null) {
                // Each sink table in turn is shadowed by a temporary table of the same schema
                // writing weir's JSON lines: the INSERTs keep their casts to its column types.
                JsonLinesTableFactory.open(output);
                for (String sink : sinks) {
                    ResolvedSchema schema = tEnv.from(sink).getResolvedSchema();
                    Schema.Builder columns = Schema.newBuilder();
                    for (Column c : schema.getColumns()) {
                        if (c.isPhysical()) {
                            columns.column(c.getName(), c.getDataType());
                        }
                    }
                    tEnv.createTemporaryTable(
                            sink,
                            TableDescriptor.forConnector("weir-json-lines")
                                    .schema(columns.build())
                                    .option(JsonLinesTableFactory.PATH, output)
                                    .build());
                }
            }
            for (String statement : insertSql) {
                inserts.addInsertSql(statement);
            }
            if (explain) {
                System.out.println(inserts.explain());
                return;
            }
            inserts.attachAsDataStream();
            JobGraph job = env.getStreamGraph().getJobGraph();

            // Measured as Nexmark measures the DataStream jobs: the MiniCluster is started
            // before the clock and closed after it; planning and translation happened above.
            var os =
                    (com.sun.management.OperatingSystemMXBean)
                            ManagementFactory.getOperatingSystemMXBean();
            long cpuStart = os.getProcessCpuTime();
            long wallStart = System.nanoTime();
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
                if (output != null) {
                    JsonLinesTableFactory.closeAll();
                }
            }
            double totalWall = (System.nanoTime() - wallStart) / 1e9;
            double totalCpu = (os.getProcessCpuTime() - cpuStart) / 1e9;
            String interval = checkpointMs == null ? "off" : Nexmark.formatDuration(checkpointMs);
            if (output == null) {
                System.out.printf(
                        Locale.ROOT,
                        "RESULT flink-sql-nexmark-%s parallelism=%d checkpoint_interval=%s"
                                + " events=%d seconds=%.3f cpu_seconds=%.3f rps=%.0f"
                                + " rps_per_core=%.0f%n",
                        query,
                        parallelism,
                        interval,
                        events,
                        wall,
                        cpu,
                        events / wall,
                        events / Math.max(cpu, 1e-9));
            }
            System.out.printf(
                    Locale.ROOT,
                    "INFO flink-sql-nexmark-%s state_backend=%s checkpoints=%d"
                            + " job_net_runtime_seconds=%.3f with_minicluster_seconds=%.3f"
                            + " with_minicluster_cpu_seconds=%.3f object_reuse=%s jvm=%s"
                            + " max_heap_mb=%d%s%n",
                    query,
                    backend,
                    NexmarkRowSource.CHECKPOINTS_COMPLETED.get(),
                    result.getNetRuntime() / 1e3,
                    totalWall,
                    totalCpu,
                    objectReuse,
                    System.getProperty("java.vm.version"),
                    Runtime.getRuntime().maxMemory() >> 20,
                    output == null
                            ? ""
                            : " output_rows=" + JsonLinesTableFactory.ROWS.get()
                                    + " output=" + output);
        } finally {
            Nexmark.deleteTree(tmp);
        }
        // MiniCluster leaves non-daemon threads behind now and then.
        System.exit(0);
    }

    static final String NAME = "((?:`[^`]*`|[\\w$]+)(?:\\s*\\.\\s*(?:`[^`]*`|[\\w$]+))*)";
    static final Pattern CREATE_TABLE =
            Pattern.compile(
                    "CREATE\\s+(?:TEMPORARY\\s+)?TABLE\\s+(?:IF\\s+NOT\\s+EXISTS\\s+)?" + NAME,
                    Pattern.CASE_INSENSITIVE);
    static final Pattern INSERT =
            Pattern.compile("INSERT\\s+(?:INTO|OVERWRITE)\\s+(?:TABLE\\s+)?" + NAME,
                    Pattern.CASE_INSENSITIVE);
    static final Pattern SET =
            Pattern.compile("SET\\s+'([^']*)'\\s*=\\s*'([^']*)'", Pattern.CASE_INSENSITIVE);

    static String unquote(String name) {
        String last = name.substring(name.lastIndexOf('.') + 1).trim();
        return last.startsWith("`") ? last.substring(1, last.length() - 1) : last;
    }

    /**
     * The statements of {@code script}: split at semicolons outside quotes ('...', "...",
     * `...`) and comments (-- to the end of the line, /* ... *&#47;), comments removed, empty
     * statements dropped.
     */
    static List<String> statements(String script) {
        List<String> out = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        int n = script.length();
        for (int i = 0; i < n; i++) {
            char c = script.charAt(i);
            if (c == '\'' || c == '"' || c == '`') {
                int j = i + 1;
                while (j < n) {
                    if (script.charAt(j) == c) {
                        // A doubled quote is one quote character inside.
                        if (j + 1 < n && script.charAt(j + 1) == c) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j++;
                }
                int end = Math.min(j, n - 1);
                cur.append(script, i, end + 1);
                i = end;
            } else if (c == '-' && i + 1 < n && script.charAt(i + 1) == '-') {
                while (i < n && script.charAt(i) != '\n') {
                    i++;
                }
                cur.append('\n');
            } else if (c == '/' && i + 1 < n && script.charAt(i + 1) == '*') {
                int end = script.indexOf("*/", i + 2);
                i = end < 0 ? n : end + 1;
                cur.append(' ');
            } else if (c == ';') {
                add(out, cur);
            } else {
                cur.append(c);
            }
        }
        add(out, cur);
        return out;
    }

    private static void add(List<String> out, StringBuilder cur) {
        String s = cur.toString().trim();
        if (!s.isEmpty()) {
            out.add(s);
        }
        cur.setLength(0);
    }

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
}
