package weir.bench;

import java.util.List;
import java.util.Set;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.DataStreamSource;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.ProviderContext;
import org.apache.flink.table.connector.source.DataStreamScanProvider;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.connector.source.ScanTableSource;
import org.apache.flink.table.connector.source.abilities.SupportsWatermarkPushDown;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DynamicTableSourceFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeRoot;
import org.apache.flink.table.types.logical.RowType;

/**
 * The {@code nexmark} connector of Flink SQL, with the options of weir's: a table of the
 * Nexmark generator's persons, auctions or bids ({@code 'kind'}), columns by weir's names in
 * any order, {@code 'events.num'} (events of every kind; unbounded without it), {@code
 * 'seed'}, {@code 'events.per-second'} (of event time), {@code 'delayed.per-mille'} and {@code
 * 'delayed.max-ms'}. The table's watermark is pushed into its source ({@link NexmarkRowSource}),
 * where it runs per split.
 */
public final class NexmarkTableFactory implements DynamicTableSourceFactory {
    static final ConfigOption<String> KIND =
            ConfigOptions.key("kind").stringType().noDefaultValue()
                    .withDescription("person, auction or bid");
    static final ConfigOption<Long> EVENTS =
            ConfigOptions.key("events.num").longType().noDefaultValue()
                    .withDescription("events to generate, of every kind (unbounded without)");
    static final ConfigOption<String> SEED =
            ConfigOptions.key("seed").stringType().defaultValue("0");
    static final ConfigOption<Long> RATE =
            ConfigOptions.key("events.per-second").longType().defaultValue(100_000L);
    static final ConfigOption<Long> DELAYED =
            ConfigOptions.key("delayed.per-mille").longType().defaultValue(0L);
    static final ConfigOption<Long> MAX_DELAY =
            ConfigOptions.key("delayed.max-ms").longType().defaultValue(2000L);

    @Override
    public String factoryIdentifier() {
        return "nexmark";
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(KIND);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Set.of(EVENTS, SEED, RATE, DELAYED, MAX_DELAY);
    }

    @Override
    public DynamicTableSource createDynamicTableSource(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        helper.validate();
        ReadableConfig options = helper.getOptions();
        String table = context.getObjectIdentifier().getObjectName();
        NexmarkRowSource.Kind kind;
        try {
            kind = NexmarkRowSource.Kind.of(options.get(KIND));
        } catch (IllegalArgumentException e) {
            throw new ValidationException("table `" + table + "`: " + e.getMessage());
        }
        Generator g = Generator.defaults();
        Generator generator =
                new Generator(
                        Long.parseUnsignedLong(options.get(SEED)),
                        Math.max(1, options.get(RATE)),
                        g.baseTime,
                        Math.min(1000, options.get(DELAYED)),
                        options.get(MAX_DELAY));
        DataType rowType = context.getPhysicalRowDataType();
        RowType row = (RowType) rowType.getLogicalType();
        List<RowType.RowField> columns = row.getFields();
        int[] fields = new int[columns.size()];
        for (int i = 0; i < fields.length; i++) {
            String name = columns.get(i).getName();
            int field = kind.column(name);
            if (field < 0) {
                throw new ValidationException(
                        "table `" + table + "`: a nexmark " + kind.table() + " has no column `"
                                + name + "`; its columns are " + String.join(", ", kind.columns));
            }
            LogicalType type = columns.get(i).getType();
            char wanted = kind.type(field);
            boolean fits;
            switch (wanted) {
                case 'L':
                    fits = type.getTypeRoot() == LogicalTypeRoot.BIGINT;
                    break;
                case 'S':
                    fits = type.getTypeRoot() == LogicalTypeRoot.VARCHAR;
                    break;
                default:
                    fits = type.getTypeRoot() == LogicalTypeRoot.TIMESTAMP_WITHOUT_TIME_ZONE
                            || type.getTypeRoot()
                                    == LogicalTypeRoot.TIMESTAMP_WITH_LOCAL_TIME_ZONE;
            }
            if (!fits) {
                String sql = wanted == 'L' ? "BIGINT" : wanted == 'S' ? "STRING" : "TIMESTAMP(3)";
                throw new ValidationException(
                        "table `" + table + "`: column `" + name + "` is " + sql
                                + " in a nexmark table, not " + type);
            }
            fields[i] = field;
        }
        long events = options.getOptional(EVENTS).orElse(Long.MAX_VALUE);
        return new TableSource(table, kind, generator, events, fields, rowType, null);
    }

    /** A nexmark table's source. */
    static final class TableSource implements ScanTableSource, SupportsWatermarkPushDown {
        private final String table;
        private final NexmarkRowSource.Kind kind;
        private final Generator generator;
        private final long events;
        private final int[] fields;
        private final DataType rowType;
        private WatermarkStrategy<RowData> watermarks;

        TableSource(
                String table,
                NexmarkRowSource.Kind kind,
                Generator generator,
                long events,
                int[] fields,
                DataType rowType,
                WatermarkStrategy<RowData> watermarks) {
            this.table = table;
            this.kind = kind;
            this.generator = generator;
            this.events = events;
            this.fields = fields;
            this.rowType = rowType;
            this.watermarks = watermarks;
        }

        @Override
        public ChangelogMode getChangelogMode() {
            return ChangelogMode.insertOnly();
        }

        @Override
        public ScanRuntimeProvider getScanRuntimeProvider(ScanContext context) {
            TypeInformation<RowData> type = context.createTypeInformation(rowType);
            NexmarkRowSource source = new NexmarkRowSource(generator, events, kind, fields);
            WatermarkStrategy<RowData> strategy =
                    watermarks != null ? watermarks : WatermarkStrategy.noWatermarks();
            String name = "nexmark-" + table;
            boolean bounded = events != Long.MAX_VALUE;
            return new DataStreamScanProvider() {
                @Override
                public DataStream<RowData> produceDataStream(
                        ProviderContext provider, StreamExecutionEnvironment env) {
                    DataStreamSource<RowData> stream = env.fromSource(source, strategy, name, type);
                    provider.generateUid("nexmark-source").ifPresent(stream::uid);
                    return stream;
                }

                @Override
                public boolean isBounded() {
                    return bounded;
                }
            };
        }

        @Override
        public void applyWatermark(WatermarkStrategy<RowData> watermarkStrategy) {
            this.watermarks = watermarkStrategy;
        }

        @Override
        public DynamicTableSource copy() {
            return new TableSource(table, kind, generator, events, fields, rowType, watermarks);
        }

        @Override
        public String asSummaryString() {
            return "nexmark(" + kind.table() + ")";
        }
    }
}
