package weir.bench;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.sink.DynamicTableSink;
import org.apache.flink.table.connector.sink.SinkV2Provider;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DynamicTableSinkFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.RowType;

/**
 * The {@code weir-json-lines} sink: every change the table receives, one line of {@link
 * WeirJson} each, into one file shared by the sink's subtasks (they all run in this JVM's
 * MiniCluster). NexmarkSql {@code --output} puts it in place of a script's sink tables. It
 * accepts any changelog, so an updating query's retractions and updates reach it as such.
 */
public final class JsonLinesTableFactory implements DynamicTableSinkFactory {
    static final ConfigOption<String> PATH = ConfigOptions.key("path").stringType().noDefaultValue();

    /** Rows written, in all. */
    static final AtomicLong ROWS = new AtomicLong();

    /** The open files, by path: opened by {@link #open}, closed by {@link #closeAll}. */
    private static final Map<String, BufferedWriter> FILES = new ConcurrentHashMap<>();

    @Override
    public String factoryIdentifier() {
        return "weir-json-lines";
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(PATH);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Set.of();
    }

    @Override
    public DynamicTableSink createDynamicTableSink(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        helper.validate();
        RowType row = (RowType) context.getPhysicalRowDataType().getLogicalType();
        return new TableSink(
                helper.getOptions().get(PATH),
                new ArrayList<>(row.getFieldNames()),
                new ArrayList<>(row.getChildren()));
    }

    /** Creates (or empties) {@code path} for the sink's rows. */
    static void open(String path) throws IOException {
        Path p = Path.of(path).toAbsolutePath();
        if (p.getParent() != null) {
            Files.createDirectories(p.getParent());
        }
        FILES.put(path, Files.newBufferedWriter(p, StandardCharsets.UTF_8));
    }

    /** Closes every file. */
    static void closeAll() throws IOException {
        for (BufferedWriter w : FILES.values()) {
            w.close();
        }
        FILES.clear();
    }

    private static void write(String path, List<String> lines) {
        BufferedWriter w = FILES.get(path);
        if (w == null) {
            throw new IllegalStateException(path + " is not open (only NexmarkSql writes it)");
        }
        synchronized (w) {
            try {
                for (String line : lines) {
                    w.write(line);
                    w.write('\n');
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        ROWS.addAndGet(lines.size());
    }

    static final class TableSink implements DynamicTableSink {
        private final String path;
        private final List<String> names;
        private final List<LogicalType> types;

        TableSink(String path, List<String> names, List<LogicalType> types) {
            this.path = path;
            this.names = names;
            this.types = types;
        }

        @Override
        public ChangelogMode getChangelogMode(ChangelogMode requestedMode) {
            return ChangelogMode.all();
        }

        @Override
        public SinkRuntimeProvider getSinkRuntimeProvider(Context context) {
            return SinkV2Provider.of(new LinesSink(path, new WeirJson(names, types)));
        }

        @Override
        public DynamicTableSink copy() {
            return new TableSink(path, names, types);
        }

        @Override
        public String asSummaryString() {
            return "weir-json-lines(" + path + ")";
        }
    }

    /** Writes each row's line, in batches of up to 1024, to the shared file. */
    static final class LinesSink implements Sink<RowData> {
        private static final long serialVersionUID = 1L;

        private final String path;
        private final WeirJson json;

        LinesSink(String path, WeirJson json) {
            this.path = path;
            this.json = json;
        }

        @Override
        public SinkWriter<RowData> createWriter(WriterInitContext context) {
            return new SinkWriter<RowData>() {
                private final List<String> buffer = new ArrayList<>();

                @Override
                public void write(RowData row, Context context) {
                    buffer.add(json.line(row));
                    if (buffer.size() >= 1024) {
                        flush(false);
                    }
                }

                @Override
                public void flush(boolean endOfInput) {
                    if (!buffer.isEmpty()) {
                        JsonLinesTableFactory.write(path, buffer);
                        buffer.clear();
                    }
                }

                @Override
                public void close() {
                    flush(true);
                }
            };
        }
    }
}
