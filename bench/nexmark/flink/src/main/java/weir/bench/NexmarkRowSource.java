package weir.bench;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.Serializable;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceOutput;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SourceSplit;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.connector.source.SplitsAssignment;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.TimestampData;

/**
 * A parallel FLIP-27 source of one kind of Nexmark event (persons, auctions or bids) as table
 * rows: the source of NexmarkSql's tables {@code person}, {@code auction} and {@code bid}.
 *
 * <p>Events {@code 0 .. events} are dealt to the splits in blocks of 1024, round-robin, as
 * weir's generator source deals them; there is one split per source subtask. A split generates
 * the events of its table's kind among its blocks' numbers and skips the others without
 * generating them, as weir's {@code nexmark} tables do. Blocks rather than
 * NexmarkSource's stride: with a stride {@code k} that divides 50, every person would fall to
 * split 0, and the other splits of the person table would hold the watermark back to the end.
 * Each split's rows go through their own {@link SourceOutput}, so the watermark strategy the
 * planner pushes into the source runs per split.
 */
public final class NexmarkRowSource
        implements Source<RowData, NexmarkRowSource.Split, Collection<NexmarkRowSource.Split>> {
    private static final long serialVersionUID = 1L;

    /** Events are dealt to splits in blocks of this many. */
    static final long BLOCK = 1024;

    /** Checkpoints completed, as the readers of subtask 0 were told (one JVM, so a static). */
    static final AtomicLong CHECKPOINTS_COMPLETED = new AtomicLong();

    /** The three tables: which events each holds, and its columns (weir's names). */
    public enum Kind {
        PERSON(Event.Type.PERSON,
                "id", "name", "email_address", "credit_card", "city", "state", "date_time"),
        AUCTION(Event.Type.AUCTION,
                "id", "item_name", "initial_bid", "reserve", "date_time", "expires", "seller",
                "category"),
        BID(Event.Type.BID, "auction", "bidder", "price", "channel", "url", "date_time");

        final Event.Type type;
        final List<String> columns;

        Kind(Event.Type type, String... columns) {
            this.type = type;
            this.columns = List.of(columns);
        }

        static Kind of(String name) {
            for (Kind k : values()) {
                if (k.name().equalsIgnoreCase(name)) {
                    return k;
                }
            }
            throw new IllegalArgumentException(
                    "'kind' = '" + name + "': person, auction or bid");
        }

        /** The index of column {@code name} (any case), or -1. */
        int column(String name) {
            for (int i = 0; i < columns.size(); i++) {
                if (columns.get(i).equalsIgnoreCase(name)) {
                    return i;
                }
            }
            return -1;
        }

        /** What column {@code i} holds: 'L' a BIGINT, 'S' a STRING, 'T' a TIMESTAMP(3). */
        char type(int i) {
            String c = columns.get(i);
            if (c.equals("date_time") || c.equals("expires")) {
                return 'T';
            }
            switch (c) {
                case "name":
                case "email_address":
                case "credit_card":
                case "city":
                case "state":
                case "item_name":
                case "channel":
                case "url":
                    return 'S';
                default:
                    return 'L';
            }
        }

        /** The lower-case name, as the tables call it. */
        String table() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    private final Generator generator;
    /** Events to generate in all (of every kind); Long.MAX_VALUE: unbounded. */
    private final long events;
    private final Kind kind;
    /** The table's columns, as column indexes of its kind. */
    private final int[] fields;

    public NexmarkRowSource(Generator generator, long events, Kind kind, int[] fields) {
        this.generator = generator;
        this.events = events;
        this.kind = kind;
        this.fields = fields.clone();
    }

    @Override
    public Boundedness getBoundedness() {
        return events == Long.MAX_VALUE
                ? Boundedness.CONTINUOUS_UNBOUNDED
                : Boundedness.BOUNDED;
    }

    @Override
    public SourceReader<RowData, Split> createReader(SourceReaderContext context) {
        return new Reader(context, this);
    }

    @Override
    public SplitEnumerator<Split, Collection<Split>> createEnumerator(
            SplitEnumeratorContext<Split> context) {
        int k = context.currentParallelism();
        List<Split> splits = new ArrayList<>(k);
        for (int i = 0; i < k; i++) {
            splits.add(new Split(i, k, 0, share(events, i, k)));
        }
        return new Enumerator(context, splits);
    }

    @Override
    public SplitEnumerator<Split, Collection<Split>> restoreEnumerator(
            SplitEnumeratorContext<Split> context, Collection<Split> checkpoint) {
        return new Enumerator(context, checkpoint);
    }

    @Override
    public SimpleVersionedSerializer<Split> getSplitSerializer() {
        return new SplitSerializer();
    }

    @Override
    public SimpleVersionedSerializer<Collection<Split>> getEnumeratorCheckpointSerializer() {
        return new CheckpointSerializer();
    }

    /** The global number of split {@code split}'s event {@code k}, blocks dealt round-robin. */
    static long global(long k, int split, int splits) {
        return ((k / BLOCK) * splits + split) * BLOCK + k % BLOCK;
    }

    /** How many of the events {@code 0 .. total} split {@code split} of {@code splits} has. */
    static long share(long total, int split, int splits) {
        if (total == Long.MAX_VALUE) {
            return Long.MAX_VALUE;
        }
        long full = total / BLOCK;
        long mine = full / splits + (split < full % splits ? 1 : 0);
        long rest = full % splits == split ? total % BLOCK : 0;
        return mine * BLOCK + rest;
    }

    /** The row of event {@code e} (of this source's kind). */
    RowData row(Event e) {
        GenericRowData row = new GenericRowData(fields.length);
        switch (kind) {
            case PERSON: {
                Person p = e.newPerson;
                for (int i = 0; i < fields.length; i++) {
                    row.setField(i, person(p, fields[i]));
                }
                break;
            }
            case AUCTION: {
                Auction a = e.newAuction;
                for (int i = 0; i < fields.length; i++) {
                    row.setField(i, auction(a, fields[i]));
                }
                break;
            }
            default: {
                Bid b = e.bid;
                for (int i = 0; i < fields.length; i++) {
                    row.setField(i, bid(b, fields[i]));
                }
            }
        }
        return row;
    }

    private static Object person(Person p, int field) {
        switch (field) {
            case 0:
                return p.id;
            case 1:
                return StringData.fromString(p.name);
            case 2:
                return StringData.fromString(p.emailAddress);
            case 3:
                return StringData.fromString(p.creditCard);
            case 4:
                return StringData.fromString(p.city);
            case 5:
                return StringData.fromString(p.state);
            default:
                return TimestampData.fromEpochMillis(p.dateTime);
        }
    }

    private static Object auction(Auction a, int field) {
        switch (field) {
            case 0:
                return a.id;
            case 1:
                return StringData.fromString(a.itemName);
            case 2:
                return a.initialBid;
            case 3:
                return a.reserve;
            case 4:
                return TimestampData.fromEpochMillis(a.dateTime);
            case 5:
                return TimestampData.fromEpochMillis(a.expires);
            case 6:
                return a.seller;
            default:
                return a.category;
        }
    }

    private static Object bid(Bid b, int field) {
        switch (field) {
            case 0:
                return b.auction;
            case 1:
                return b.bidder;
            case 2:
                return b.price;
            case 3:
                return StringData.fromString(b.channel);
            case 4:
                return StringData.fromString(b.url);
            default:
                return TimestampData.fromEpochMillis(b.dateTime);
        }
    }

    /** Split {@code index} of {@code splits}: its events {@code position .. end}. */
    public static final class Split implements SourceSplit, Serializable {
        private static final long serialVersionUID = 1L;

        final int index;
        final int splits;
        final long position;
        final long end;

        Split(int index, int splits, long position, long end) {
            this.index = index;
            this.splits = splits;
            this.position = position;
            this.end = end;
        }

        @Override
        public String splitId() {
            return Integer.toString(index);
        }

        @Override
        public String toString() {
            return "Split(" + index + "/" + splits + " at " + position + " of " + end + ")";
        }
    }

    /** Hands split {@code i} to subtask {@code i % parallelism} when its reader registers. */
    static final class Enumerator implements SplitEnumerator<Split, Collection<Split>> {
        private final SplitEnumeratorContext<Split> context;
        private final List<Split> remaining;

        Enumerator(SplitEnumeratorContext<Split> context, Collection<Split> splits) {
            this.context = context;
            this.remaining = new ArrayList<>(splits);
        }

        @Override
        public void start() {}

        @Override
        public void handleSplitRequest(int subtask, String requesterHostname) {}

        @Override
        public void addSplitsBack(List<Split> splits, int subtask) {
            remaining.addAll(splits);
        }

        @Override
        public void addReader(int subtask) {
            int parallelism = context.currentParallelism();
            List<Split> mine = new ArrayList<>();
            for (Iterator<Split> it = remaining.iterator(); it.hasNext(); ) {
                Split s = it.next();
                if (s.index % parallelism == subtask) {
                    mine.add(s);
                    it.remove();
                }
            }
            if (!mine.isEmpty()) {
                context.assignSplits(new SplitsAssignment<>(Map.of(subtask, mine)));
            }
            context.signalNoMoreSplits(subtask);
        }

        @Override
        public Collection<Split> snapshotState(long checkpointId) {
            return new ArrayList<>(remaining);
        }

        @Override
        public void close() {}
    }

    /** Generates its splits' events one after the other, emitting those of its kind. */
    static final class Reader implements SourceReader<RowData, Split> {
        private final SourceReaderContext context;
        private final NexmarkRowSource source;
        private final Generator generator;
        private final Event.Type type;
        private final boolean first;
        private final ArrayDeque<Split> pending = new ArrayDeque<>();
        private Split current;
        private long position;
        private SourceOutput<RowData> out;
        private boolean noMoreSplits;
        private CompletableFuture<Void> available = new CompletableFuture<>();

        Reader(SourceReaderContext context, NexmarkRowSource source) {
            this.context = context;
            this.source = source;
            this.generator = source.generator;
            this.type = source.kind.type;
            this.first = context.getIndexOfSubtask() == 0;
        }

        @Override
        public void start() {}

        @Override
        public InputStatus pollNext(ReaderOutput<RowData> output) {
            if (current == null) {
                current = pending.poll();
                if (current == null) {
                    return noMoreSplits ? InputStatus.END_OF_INPUT : InputStatus.NOTHING_AVAILABLE;
                }
                position = current.position;
                out = output.createOutputForSplit(current.splitId());
            }
            // One row a call: the next event of the table's kind (the
            // numbers of other kinds are skipped without generating them).
            final long end = current.end;
            final int index = current.index;
            final int splits = current.splits;
            while (position < end) {
                long n = global(position, index, splits);
                position++;
                if (Generator.typeOf(n) == type) {
                    Event e = generator.event(n);
                    out.collect(source.row(e), e.dateTime());
                    return InputStatus.MORE_AVAILABLE;
                }
            }
            output.releaseOutputForSplit(current.splitId());
            current = null;
            out = null;
            return InputStatus.MORE_AVAILABLE;
        }

        @Override
        public List<Split> snapshotState(long checkpointId) {
            List<Split> state = new ArrayList<>(pending.size() + 1);
            if (current != null) {
                state.add(new Split(current.index, current.splits, position, current.end));
            }
            state.addAll(pending);
            return state;
        }

        @Override
        public CompletableFuture<Void> isAvailable() {
            if (current != null || !pending.isEmpty() || noMoreSplits) {
                return CompletableFuture.completedFuture(null);
            }
            if (available.isDone()) {
                available = new CompletableFuture<>();
            }
            return available;
        }

        @Override
        public void addSplits(List<Split> splits) {
            pending.addAll(splits);
            available.complete(null);
        }

        @Override
        public void notifyNoMoreSplits() {
            noMoreSplits = true;
            available.complete(null);
        }

        @Override
        public void notifyCheckpointComplete(long checkpointId) {
            if (first) {
                CHECKPOINTS_COMPLETED.incrementAndGet();
            }
        }

        @Override
        public void close() {}
    }

    static void write(DataOutputStream out, Split s) throws IOException {
        out.writeInt(s.index);
        out.writeInt(s.splits);
        out.writeLong(s.position);
        out.writeLong(s.end);
    }

    static Split read(DataInputStream in) throws IOException {
        return new Split(in.readInt(), in.readInt(), in.readLong(), in.readLong());
    }

    static final class SplitSerializer implements SimpleVersionedSerializer<Split> {
        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(Split split) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream(24);
            try (DataOutputStream out = new DataOutputStream(bytes)) {
                write(out, split);
            }
            return bytes.toByteArray();
        }

        @Override
        public Split deserialize(int version, byte[] serialized) throws IOException {
            try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(serialized))) {
                return read(in);
            }
        }
    }

    static final class CheckpointSerializer implements SimpleVersionedSerializer<Collection<Split>> {
        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(Collection<Split> splits) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            try (DataOutputStream out = new DataOutputStream(bytes)) {
                out.writeInt(splits.size());
                for (Split s : splits) {
                    write(out, s);
                }
            }
            return bytes.toByteArray();
        }

        @Override
        public Collection<Split> deserialize(int version, byte[] serialized) throws IOException {
            try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(serialized))) {
                int n = in.readInt();
                Split[] splits = new Split[n];
                for (int i = 0; i < n; i++) {
                    splits[i] = read(in);
                }
                return new ArrayList<>(Arrays.asList(splits));
            }
        }
    }
}
