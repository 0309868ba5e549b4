package weir.bench;

import java.io.Serializable;

/**
 * Nexmark events as bench/nexmark/SPEC.md defines them: event {@code n} is a pure function
 * of {@code n} and the configuration, drawn from its own SplitMix64 stream. All arithmetic on
 * the stream is wrapping u64: Java's long multiplication and addition wrap the same way, shifts
 * are {@code >>>}, and {@code pick} is an unsigned remainder.
 */
public final class Generator implements Serializable {
    private static final long serialVersionUID = 1L;

    static final long GOLDEN = 0x9E3779B97F4A7C15L;

    static final String[] FIRST = {
        "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter"
    };
    static final String[] LAST = {
        "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
        "Cohen"
    };
    static final String[] CITIES = {
        "Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond",
        "Seattle", "Kent", "Cheyenne"
    };
    static final String[] STATES = {"AZ", "CA", "ID", "OR", "WA", "WY"};
    static final String[] CHANNELS = {"Google", "Facebook", "Baidu", "Apple"};

    private static final String[] FIRST_LOWER = lower(FIRST);
    private static final String[] LAST_LOWER = lower(LAST);

    public final long seed;
    /** Events per second of event time. */
    public final long rate;
    /** Event time of event 0, ms since the Unix epoch. */
    public final long baseTime;
    public final long delayedPerMille;
    public final long maxDelayMs;

    public Generator(long seed, long rate, long baseTime, long delayedPerMille, long maxDelayMs) {
        if (rate <= 0) {
            throw new IllegalArgumentException("rate must be positive");
        }
        this.seed = seed;
        this.rate = rate;
        this.baseTime = baseTime;
        this.delayedPerMille = delayedPerMille;
        this.maxDelayMs = maxDelayMs;
    }

    /** The defaults of SPEC.md. */
    public static Generator defaults() {
        return new Generator(0, 100_000, 1_577_836_800_000L, 0, 2000);
    }

    /** The bounded out-of-orderness event-time queries allow: max_delay_ms plus one second. */
    public long outOfOrdernessMs() {
        return maxDelayMs + 1000;
    }

    private static String[] lower(String[] names) {
        String[] out = new String[names.length];
        for (int i = 0; i < names.length; i++) {
            out[i] = names[i].toLowerCase(java.util.Locale.ROOT);
        }
        return out;
    }

    /** Powers of ten, exact. */
    static final double[] POW10 = {1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0};

    /** One event's SplitMix64 stream. */
    static final class Rng {
        long s;

        Rng(long seed, long n) {
            s = mix(seed + n * GOLDEN);
        }

        static long mix(long z) {
            z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
            z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
            return z ^ (z >>> 31);
        }

        long draw() {
            s += GOLDEN;
            return mix(s);
        }

        /** {@code draw() % k}, unsigned; a draw that yields 0 when {@code k} is 0 (as weir's). */
        long pick(long k) {
            long d = draw();
            return k == 0 ? 0 : Long.remainderUnsigned(d, k);
        }

        /** {@code (draw() >> 11) / 2^53}, in [0, 1). */
        double unit() {
            return (draw() >>> 11) * 0x1.0p-53;
        }

        /** {@code round(10^(unit() * 6) * 100)} cents. */
        long price() {
            double x = unit() * 6.0;
            int i = (int) x;
            double y = (x - i) * 2.302585092994046 / 8.0;
            double y2 = y * y;
            double y4 = y2 * y2;
            double e = ((1.0 + y) + y2 * (1.0 / 2.0 + y * (1.0 / 6.0)))
                    + y4 * ((1.0 / 24.0 + y * (1.0 / 120.0)) + y2 * (1.0 / 720.0 + y * (1.0 / 5040.0)));
            e = e * e;
            e = e * e;
            e = e * e;
            return (long) (e * POW10[i] * 100.0 + 0.5);
        }
    }

    /** The type of event number {@code n}: of every 50, a person, three auctions, then bids. */
    public static Event.Type typeOf(long n) {
        int r = (int) (n % 50);
        return r == 0 ? Event.Type.PERSON : r <= 3 ? Event.Type.AUCTION : Event.Type.BID;
    }

    /** Event number {@code n} (0-based). */
    public Event event(long n) {
        Rng rng = new Rng(seed, n);
        long epoch = n / 50;
        int r = (int) (n % 50);
        long persons = epoch + 1;
        long dateTime = baseTime + n * 1000 / rate;
        if (rng.pick(1000) < delayedPerMille) {
            dateTime -= rng.pick(maxDelayMs);
        }
        if (r == 0) {
            return Event.of(person(rng, 1000 + epoch, dateTime));
        } else if (r <= 3) {
            return Event.of(auction(rng, 1000 + epoch * 3 + (r - 1), persons, dateTime));
        } else {
            long auctions = epoch * 3 + 3;
            return Event.of(bid(rng, auctions, persons, dateTime));
        }
    }

    private static Person person(Rng rng, long id, long dateTime) {
        int first = (int) rng.pick(10);
        int last = (int) rng.pick(10);
        String name = FIRST[first] + " " + LAST[last];
        String email = FIRST_LOWER[first] + "@" + LAST_LOWER[last] + ".com";
        StringBuilder card = new StringBuilder(19);
        for (int i = 0; i < 4; i++) {
            if (i > 0) {
                card.append(' ');
            }
            long g = rng.pick(10000);
            if (g < 1000) card.append('0');
            if (g < 100) card.append('0');
            if (g < 10) card.append('0');
            card.append(g);
        }
        String city = CITIES[(int) rng.pick(10)];
        String state = STATES[(int) rng.pick(6)];
        return new Person(id, name, email, card.toString(), city, state, dateTime, "");
    }

    /** The hot id among {@code count} ids: {@code 1000 + ((count - 1) / 100) * 100}. */
    private static long hot(long count) {
        return 1000 + ((count - 1) / 100) * 100;
    }

    /** One of the {@code min(count, window)} most recent ids. */
    private static long recent(Rng rng, long count, long window) {
        return 1000 + (count - 1) - rng.pick(Math.min(count, window));
    }

    private static Auction auction(Rng rng, long id, long persons, long dateTime) {
        long initialBid = rng.price();
        long reserve = initialBid + rng.price();
        long seller = rng.pick(4) == 0 ? hot(persons) : recent(rng, persons, 1000);
        long category = 10 + rng.pick(5);
        long expires = dateTime + 1000 + rng.pick(20000);
        return new Auction(
                id, "item-" + id, "", initialBid, reserve, dateTime, expires, seller, category, "");
    }

    private static Bid bid(Rng rng, long auctions, long persons, long dateTime) {
        long auction = rng.pick(2) == 0 ? hot(auctions) : recent(rng, auctions, 100);
        long bidder = rng.pick(4) != 0 ? hot(persons) : recent(rng, persons, 1000);
        long price = rng.price();
        String channel = CHANNELS[(int) rng.pick(4)];
        String url = "https://www.nexmark.com/item.htm?channel=" + channel + "&id=" + rng.pick(1000);
        return new Bid(auction, bidder, price, channel, url, dateTime, "");
    }

    /** The line {@code --dump} prints for event {@code n} (tab-separated). */
    public static String dumpLine(long n, Event e) {
        StringBuilder b = new StringBuilder();
        b.append(n).append('\t');
        switch (e.type) {
            case PERSON: {
                Person p = e.newPerson;
                b.append("P\t").append(p.id).append('\t').append(p.name).append('\t')
                        .append(p.emailAddress).append('\t').append(p.creditCard).append('\t')
                        .append(p.city).append('\t').append(p.state).append('\t')
                        .append(p.dateTime);
                break;
            }
            case AUCTION: {
                Auction a = e.newAuction;
                b.append("A\t").append(a.id).append('\t').append(a.itemName).append('\t')
                        .append(a.initialBid).append('\t').append(a.reserve).append('\t')
                        .append(a.dateTime).append('\t').append(a.expires).append('\t')
                        .append(a.seller).append('\t').append(a.category);
                break;
            }
            default: {
                Bid x = e.bid;
                b.append("B\t").append(x.auction).append('\t').append(x.bidder).append('\t')
                        .append(x.price).append('\t').append(x.channel).append('\t')
                        .append(x.url).append('\t').append(x.dateTime);
            }
        }
        return b.toString();
    }
}
