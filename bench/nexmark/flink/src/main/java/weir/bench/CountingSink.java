package weir.bench;

import java.util.concurrent.atomic.AtomicLong;

import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;

/**
 * Flink's DiscardingSink plus a count: each writer counts what it drops and adds its count to
 * a static total when it closes (the job runs in this JVM's MiniCluster).
 */
public final class CountingSink<T> implements Sink<T> {
    private static final long serialVersionUID = 1L;

    static final AtomicLong RECORDS = new AtomicLong();

    /** Print every record to stdout too (a check of the results, not for measuring). */
    private final boolean print;

    public CountingSink() {
        this(false);
    }

    public CountingSink(boolean print) {
        this.print = print;
    }

    @Override
    public SinkWriter<T> createWriter(WriterInitContext context) {
        return new SinkWriter<T>() {
            private long count;

            @Override
            public void write(T element, Context context) {
                count++;
                if (print) {
                    System.out.println("OUT " + element);
                }
            }

            @Override
            public void flush(boolean endOfInput) {}

            @Override
            public void close() {
                RECORDS.addAndGet(count);
                count = 0;
            }
        };
    }
}
