package weir.bench;

/** A bid (Nexmark's Bid). */
public class Bid {
    public long auction;
    public long bidder;
    /** Cents. */
    public long price;
    public String channel;
    public String url;
    /** Event time, ms since the Unix epoch. */
    public long dateTime;
    public String extra;

    public Bid() {}

    public Bid(long auction, long bidder, long price, String channel, String url, long dateTime,
            String extra) {
        this.auction = auction;
        this.bidder = bidder;
        this.price = price;
        this.channel = channel;
        this.url = url;
        this.dateTime = dateTime;
        this.extra = extra;
    }

    @Override
    public String toString() {
        return "Bid(" + auction + "," + bidder + "," + price + "," + channel + "," + url + ","
                + dateTime + ")";
    }
}
