package weir.bench;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.connector.source.lib.util.IteratorSourceEnumerator;
import org.apache.flink.api.connector.source.lib.util.IteratorSourceReader;
import org.apache.flink.api.connector.source.lib.util.IteratorSourceSplit;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.core.io.SimpleVersionedSerializer;

/**
 * A bounded, parallel FLIP-27 source of Nexmark events {@code 0 .. events}.
 *
 * <p>It makes as many splits as the source has subtasks, and split {@code i} of {@code k}
 * generates the events {@code i, i + k, i + 2k, ...}: every subtask walks through event time
 * at the same pace, so the watermarks of the subtasks advance together (contiguous ranges, as
 * Flink's NumberSequenceSource and DataGeneratorSource cut them, would leave the later halves
 * of the stream waiting in window state for the earlier ones). An event is a pure function of
 * its number, so the split changes nothing in what is generated. A split's position is its
 * checkpointed state.
 */
public final class NexmarkSource
        implements Source<Event, NexmarkSource.Split, Collection<NexmarkSource.Split>>,
                ResultTypeQueryable<Event> {
    private static final long serialVersionUID = 1L;

    /** Checkpoints completed, as the reader of subtask 0 was told (one JVM, so a static). */
    static final AtomicLong CHECKPOINTS_COMPLETED = new AtomicLong();

    private final Generator generator;
    private final long events;

    public NexmarkSource(Generator generator, long events) {
        this.generator = generator;
        this.events = events;
    }

    @Override
    public Boundedness getBoundedness() {
        return Boundedness.BOUNDED;
    }

    @Override
    public TypeInformation<Event> getProducedType() {
        return TypeInformation.of(Event.class);
    }

    @Override
    public SourceReader<Event, Split> createReader(SourceReaderContext context) {
        return new Reader(context);
    }

    @Override
    public SplitEnumerator<Split, Collection<Split>> createEnumerator(
            SplitEnumeratorContext<Split> context) {
        int k = context.currentParallelism();
        List<Split> splits = new ArrayList<>(k);
        for (int i = 0; i < k; i++) {
            splits.add(new Split(generator, i, k, i, events));
        }
        return new IteratorSourceEnumerator<>(context, splits);
    }

    @Override
    public SplitEnumerator<Split, Collection<Split>> restoreEnumerator(
            SplitEnumeratorContext<Split> context, Collection<Split> checkpoint) {
        return new IteratorSourceEnumerator<>(context, checkpoint);
    }

    @Override
    public SimpleVersionedSerializer<Split> getSplitSerializer() {
        return new SplitSerializer();
    }

    @Override
    public SimpleVersionedSerializer<Collection<Split>> getEnumeratorCheckpointSerializer() {
        return new CheckpointSerializer();
    }

    /** Events {@code next, next + stride, ...} below {@code end}. */
    public static final class Split implements IteratorSourceSplit<Event, EventIterator> {
        final Generator generator;
        final int index;
        final int stride;
        final long next;
        final long end;

        Split(Generator generator, int index, int stride, long next, long end) {
            this.generator = generator;
            this.index = index;
            this.stride = stride;
            this.next = next;
            this.end = end;
        }

        @Override
        public String splitId() {
            return Integer.toString(index);
        }

        @Override
        public EventIterator getIterator() {
            return new EventIterator(generator, next, stride, end);
        }

        @Override
        public IteratorSourceSplit<Event, EventIterator> getUpdatedSplitForIterator(
                EventIterator iterator) {
            return new Split(generator, index, stride, iterator.next, end);
        }
    }

    /** Generates a split's events. */
    public static final class EventIterator implements Iterator<Event> {
        private final Generator generator;
        private final int stride;
        private final long end;
        long next;

        EventIterator(Generator generator, long next, int stride, long end) {
            this.generator = generator;
            this.next = next;
            this.stride = stride;
            this.end = end;
        }

        @Override
        public boolean hasNext() {
            return next < end;
        }

        @Override
        public Event next() {
            if (next >= end) {
                throw new NoSuchElementException();
            }
            Event e = generator.event(next);
            next += stride;
            return e;
        }
    }

    /** The library's iterator reader, counting the checkpoints it is told of. */
    static final class Reader extends IteratorSourceReader<Event, EventIterator, Split> {
        private final boolean first;

        Reader(SourceReaderContext context) {
            super(context);
            first = context.getIndexOfSubtask() == 0;
        }

        @Override
        public void notifyCheckpointComplete(long checkpointId) throws Exception {
            super.notifyCheckpointComplete(checkpointId);
            if (first) {
                CHECKPOINTS_COMPLETED.incrementAndGet();
            }
        }
    }

    static void write(DataOutputStream out, Split s) throws IOException {
        Generator g = s.generator;
        out.writeLong(g.seed);
        out.writeLong(g.rate);
        out.writeLong(g.baseTime);
        out.writeLong(g.delayedPerMille);
        out.writeLong(g.maxDelayMs);
        out.writeInt(s.index);
        out.writeInt(s.stride);
        out.writeLong(s.next);
        out.writeLong(s.end);
    }

    static Split read(DataInputStream in) throws IOException {
        Generator g =
                new Generator(in.readLong(), in.readLong(), in.readLong(), in.readLong(), in.readLong());
        return new Split(g, in.readInt(), in.readInt(), in.readLong(), in.readLong());
    }

    static final class SplitSerializer implements SimpleVersionedSerializer<Split> {
        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(Split split) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream(64);
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
                List<Split> splits = new ArrayList<>(n);
                for (int i = 0; i < n; i++) {
                    splits.add(read(in));
                }
                return splits;
            }
        }
    }
}
