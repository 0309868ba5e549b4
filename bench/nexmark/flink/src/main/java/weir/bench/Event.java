package weir.bench;

/**
 * One Nexmark event: a type tag and exactly one non-null member, as nexmark-flink's
 * {@code Event} has it.
 */
public class Event {
    public enum Type {
        PERSON,
        AUCTION,
        BID
    }

    public Type type;
    public Person newPerson;
    public Auction newAuction;
    public Bid bid;

    public Event() {}

    public static Event of(Person p) {
        Event e = new Event();
        e.type = Type.PERSON;
        e.newPerson = p;
        return e;
    }

    public static Event of(Auction a) {
        Event e = new Event();
        e.type = Type.AUCTION;
        e.newAuction = a;
        return e;
    }

    public static Event of(Bid b) {
        Event e = new Event();
        e.type = Type.BID;
        e.bid = b;
        return e;
    }

    /** The event time, ms since the Unix epoch. */
    public long dateTime() {
        switch (type) {
            case PERSON:
                return newPerson.dateTime;
            case AUCTION:
                return newAuction.dateTime;
            default:
                return bid.dateTime;
        }
    }
}
