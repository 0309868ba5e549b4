package weir.bench;

/** A new person (Nexmark's Person). A POJO, so Flink serializes it without Kryo. */
public class Person {
    public long id;
    public String name;
    public String emailAddress;
    public String creditCard;
    public String city;
    public String state;
    /** Event time, ms since the Unix epoch. */
    public long dateTime;
    public String extra;

    public Person() {}

    public Person(long id, String name, String emailAddress, String creditCard, String city,
            String state, long dateTime, String extra) {
        this.id = id;
        this.name = name;
        this.emailAddress = emailAddress;
        this.creditCard = creditCard;
        this.city = city;
        this.state = state;
        this.dateTime = dateTime;
        this.extra = extra;
    }
}
