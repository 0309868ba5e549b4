//! Nexmark's events and their generator, as `bench/nexmark/SPEC.md` defines
//! them: persons, auctions and bids in proportion 1:3:46, each a pure function
//! of its event number and the seed, so that any split of the numbers yields the
//! same events and a restore at another parallelism replays them exactly.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::data::{Batch, EventTime};
use crate::error::Result;
use crate::keys::mix;
use crate::pipelines::generator::{block_share, generate_blocks, generate_blocks_where, Generator};

/// A person who can sell and bid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Person id (from 1000).
    pub id: u64,
    /// First and last name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Credit card number, four groups of four digits.
    pub credit_card: String,
    /// City.
    pub city: String,
    /// US state code.
    pub state: String,
    /// Event time, ms since the Unix epoch.
    pub date_time: EventTime,
}

/// An item put up for auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// Auction id (from 1000).
    pub id: u64,
    /// Item name.
    pub item_name: String,
    /// Starting price, cents.
    pub initial_bid: u64,
    /// Reserve price, cents.
    pub reserve: u64,
    /// Event time, ms since the Unix epoch.
    pub date_time: EventTime,
    /// When the auction closes, ms since the Unix epoch.
    pub expires: EventTime,
    /// The selling person's id.
    pub seller: u64,
    /// Category id (10..15).
    pub category: u64,
}

/// A bid on an auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The auction's id.
    pub auction: u64,
    /// The bidding person's id.
    pub bidder: u64,
    /// Price, cents.
    pub price: u64,
    /// Where the bid came from: one of four names, which the generator lends
    /// (as Java shares a string constant) rather than allocating per bid.
    pub channel: Cow<'static, str>,
    /// The page it was made on.
    pub url: String,
    /// Event time, ms since the Unix epoch.
    pub date_time: EventTime,
}

/// One Nexmark event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new person (boxed, as auctions: bids are 46 of 50 events, and a
    /// smaller event is cheaper to move).
    Person(Box<Person>),
    /// A new auction.
    Auction(Box<Auction>),
    /// A bid.
    Bid(Bid),
}

/// The kinds of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Persons.
    Person,
    /// Auctions.
    Auction,
    /// Bids.
    Bid,
}

impl Kind {
    /// The kind of event number `n`: of every 50, the first is a person, the
    /// next three are auctions and the rest bids.
    pub fn of(n: u64) -> Kind {
        match n % 50 {
            0 => Kind::Person,
            1..=3 => Kind::Auction,
            _ => Kind::Bid,
        }
    }

    /// How many of the events numbered `0 .. events` are of this kind.
    pub fn count(self, events: u64) -> u64 {
        let (full, rest) = (events / 50, events % 50);
        match self {
            Kind::Person => full + u64::from(rest > 0),
            Kind::Auction => full * 3 + rest.saturating_sub(1).min(3),
            Kind::Bid => full * 46 + rest.saturating_sub(4),
        }
    }
}

impl Event {
    /// The event's time, ms since the Unix epoch.
    pub fn date_time(&self) -> EventTime {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }
}

/// How events are made (see SPEC.md's configuration table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NexmarkConfig {
    /// Seed of every event's random numbers.
    pub seed: u64,
    /// Events per second of event time.
    pub rate: u64,
    /// Event time of event 0, ms since the Unix epoch.
    pub base_time: EventTime,
    /// Events in a thousand whose event time is set back.
    pub delayed_per_mille: u64,
    /// The most such an event is set back, ms.
    pub max_delay_ms: u64,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        NexmarkConfig {
            seed: 0,
            rate: 100_000,
            base_time: 1_577_836_800_000,
            delayed_per_mille: 0,
            max_delay_ms: 2000,
        }
    }
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const FIRST: [&str; 10] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter",
];
const LAST: [&str; 10] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris", "Cohen",
];
const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const URL: &str = "https://www.nexmark.com/item.htm?channel=";

/// One event's SplitMix64 stream.
struct Draws(u64);

impl Draws {
    fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }
    #[inline(always)]
    fn pick(&mut self, k: u64) -> u64 {
        let d = self.draw();
        if k == 0 {
            0
        } else {
            d % k
        }
    }
    fn unit(&mut self) -> f64 {
        (self.draw() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// About `10^(unit() * 6) * 100`, by SPEC.md's arithmetic (the same bits in Java).
    fn price(&mut self) -> u64 {
        const POW10: [f64; 6] = [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0];
        let x = self.unit() * 6.0;
        let i = (x as usize).min(5);
        let y = (x - i as f64) * std::f64::consts::LN_10 / 8.0;
        // Estrin's scheme: a short chain of dependent operations.
        let y2 = y * y;
        let y4 = y2 * y2;
        let mut e = ((1.0 + y) + y2 * (1.0 / 2.0 + y * (1.0 / 6.0)))
            + y4 * ((1.0 / 24.0 + y * (1.0 / 120.0)) + y2 * (1.0 / 720.0 + y * (1.0 / 5040.0)));
        e *= e;
        e *= e;
        e *= e;
        (e * POW10[i] * 100.0 + 0.5) as u64
    }
    /// A recent id: the hot one of its hundred, or one of the `window` newest.
    #[inline(always)]
    fn recent(&mut self, count: u64, window: u64) -> u64 {
        // Once there are `window` ids (soon), the modulus is the constant
        // `window`, which compiles to a multiplication, not a division.
        let back = if count >= window {
            self.pick(window)
        } else {
            self.pick(count)
        };
        1000 + (count - 1) - back
    }
}

fn hot(count: u64) -> u64 {
    1000 + ((count - 1) / 100) * 100
}

/// Event number `n`.
pub fn event(n: u64, config: &NexmarkConfig) -> Event {
    let mut d = Draws(mix(config.seed.wrapping_add(n.wrapping_mul(GOLDEN))));
    let mut date_time = config.base_time + (n.wrapping_mul(1000) / config.rate.max(1)) as EventTime;
    if d.pick(1000) < config.delayed_per_mille {
        date_time -= d.pick(config.max_delay_ms) as EventTime;
    }
    let (group, r) = (n / 50, n % 50);
    let persons = group + 1;
    if r == 0 {
        let first = FIRST[d.pick(10) as usize];
        let last = LAST[d.pick(10) as usize];
        let card: Vec<String> = (0..4).map(|_| format!("{:04}", d.pick(10_000))).collect();
        return Event::Person(Box::new(Person {
            id: 1000 + group,
            name: format!("{first} {last}"),
            email: format!("{}@{}.com", first.to_lowercase(), last.to_lowercase()),
            credit_card: card.join(" "),
            city: CITIES[d.pick(10) as usize].to_string(),
            state: STATES[d.pick(6) as usize].to_string(),
            date_time,
        }));
    }
    if r <= 3 {
        let id = 1000 + group * 3 + (r - 1);
        let initial_bid = d.price();
        let reserve = initial_bid + d.price();
        let seller = if d.pick(4) == 0 {
            hot(persons)
        } else {
            d.recent(persons, 1000)
        };
        let category = 10 + d.pick(5);
        let expires = date_time + 1000 + d.pick(20_000) as EventTime;
        return Event::Auction(Box::new(Auction {
            id,
            item_name: format!("item-{id}"),
            initial_bid,
            reserve,
            date_time,
            expires,
            seller,
            category,
        }));
    }
    let auctions = group * 3 + 3;
    let auction = if d.pick(2) == 0 {
        hot(auctions)
    } else {
        d.recent(auctions, 100)
    };
    let bidder = if d.pick(4) != 0 {
        hot(persons)
    } else {
        d.recent(persons, 1000)
    };
    let price = d.price();
    let channel = CHANNELS[d.pick(4) as usize];
    // Built by hand: `format!` was a fifth of q0's time.
    let mut url = String::with_capacity(URL.len() + channel.len() + 8);
    url.push_str(URL);
    url.push_str(channel);
    url.push_str("&id=");
    url.push_str(itoa::Buffer::new().format(d.pick(1000)));
    Event::Bid(Bid {
        auction,
        bidder,
        price,
        channel: Cow::Borrowed(channel),
        url,
        date_time,
    })
}

/// The [`Generator`] of Nexmark events: a split's events are its blocks of
/// event numbers (see [`generate_blocks`]), all of them or those of one kind.
#[derive(Clone)]
pub struct NexmarkEvents {
    config: NexmarkConfig,
    only: Option<Kind>,
    split: u32,
    splits: u32,
}

impl NexmarkEvents {
    /// Events made as `config` says.
    pub fn new(config: NexmarkConfig) -> Self {
        NexmarkEvents {
            config,
            only: None,
            split: 0,
            splits: 1,
        }
    }

    /// Only the events of `kind` among those [`NexmarkEvents::new`] makes,
    /// the others not made at all (their numbers are still counted).
    pub fn of_kind(config: NexmarkConfig, kind: Kind) -> Self {
        NexmarkEvents {
            only: Some(kind),
            ..NexmarkEvents::new(config)
        }
    }
}

impl Generator for NexmarkEvents {
    type Out = Event;

    fn open(&mut self, split: u32, splits: u32, _state: Option<&[u8]>) -> Result<()> {
        (self.split, self.splits) = (split, splits);
        Ok(())
    }

    fn generate(&mut self, position: u64, count: usize, out: &mut Batch<Event>) {
        let config = self.config;
        let (split, splits) = (self.split, self.splits);
        match self.only {
            None => generate_blocks(position, count, split, splits, out, |n| event(n, &config)),
            Some(kind) => generate_blocks_where(position, count, split, splits, out, |n| {
                (Kind::of(n) == kind).then(|| event(n, &config))
            }),
        }
    }

    fn share(&self, total: u64, split: u32, splits: u32) -> u64 {
        block_share(total, split, splits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line the Flink side's `--dump` writes for event `n`.
    fn dump(n: u64, event: &Event) -> String {
        match event {
            Event::Person(p) => format!(
                "{n}\tP\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                p.id, p.name, p.email, p.credit_card, p.city, p.state, p.date_time
            ),
            Event::Auction(a) => format!(
                "{n}\tA\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                a.id,
                a.item_name,
                a.initial_bid,
                a.reserve,
                a.date_time,
                a.expires,
                a.seller,
                a.category
            ),
            Event::Bid(b) => format!(
                "{n}\tB\t{}\t{}\t{}\t{}\t{}\t{}",
                b.auction, b.bidder, b.price, b.channel, b.url, b.date_time
            ),
        }
    }

    #[test]
    fn the_first_events_are_those_the_flink_generator_makes() {
        let expected = include_str!("../../../../bench/nexmark/flink/expected-first-60.txt");
        let config = NexmarkConfig::default();
        let ours: Vec<String> = (0..60).map(|n| dump(n, &event(n, &config))).collect();
        assert_eq!(ours, expected.lines().collect::<Vec<_>>());
    }

    #[test]
    fn kinds_come_in_proportion_one_three_forty_six() {
        let config = NexmarkConfig::default();
        let (mut p, mut a, mut b) = (0, 0, 0);
        for n in 0..5000 {
            match event(n, &config) {
                Event::Person(_) => p += 1,
                Event::Auction(_) => a += 1,
                Event::Bid(_) => b += 1,
            }
        }
        assert_eq!((p, a, b), (100, 300, 4600));
    }

    /// Each event's kind, as `Kind::of` tells it.
    fn kind(event: &Event) -> Kind {
        match event {
            Event::Person(_) => Kind::Person,
            Event::Auction(_) => Kind::Auction,
            Event::Bid(_) => Kind::Bid,
        }
    }

    #[test]
    fn the_kind_of_a_number_is_the_kind_of_its_event() {
        let config = NexmarkConfig::default();
        assert!((0..5000).all(|n| kind(&event(n, &config)) == Kind::of(n)));
    }

    #[test]
    fn each_kind_is_counted_as_the_numbers_of_that_kind() {
        for events in [0, 1, 2, 4, 5, 49, 50, 51, 53, 54, 1234] {
            for kind in [Kind::Person, Kind::Auction, Kind::Bid] {
                let numbered = (0..events).filter(|&n| Kind::of(n) == kind).count() as u64;
                assert_eq!(kind.count(events), numbered, "{kind:?} of {events}");
            }
        }
    }

    #[test]
    fn a_generator_of_one_kind_makes_the_events_of_that_kind_of_the_whole_stream() {
        let config = NexmarkConfig::default();
        for (split, splits) in [(0, 1), (1, 3)] {
            let mut all = NexmarkEvents::new(config);
            all.open(split, splits, None).unwrap();
            let mut every = Batch::new();
            // Not a multiple of the blocks, nor of 50.
            all.generate(777, 5_000, &mut every);
            for only in [Kind::Person, Kind::Auction, Kind::Bid] {
                let mut some = NexmarkEvents::of_kind(config, only);
                some.open(split, splits, None).unwrap();
                let mut kept = Batch::new();
                some.generate(777, 5_000, &mut kept);
                let expected: Vec<&Event> = every.iter().filter(|e| kind(e) == only).collect();
                assert_eq!(kept.iter().collect::<Vec<_>>(), expected, "{only:?}");
            }
        }
    }

    #[test]
    fn bids_and_auctions_refer_to_earlier_persons_and_auctions() {
        let config = NexmarkConfig::default();
        for n in 0..20_000 {
            let persons = n / 50 + 1;
            match event(n, &config) {
                Event::Bid(b) => {
                    assert!(b.bidder >= 1000 && b.bidder < 1000 + persons);
                    assert!(b.auction >= 1000 && b.auction < 1000 + (n / 50) * 3 + 3);
                    assert!((1..=100_000_000).contains(&b.price));
                }
                Event::Auction(a) => {
                    assert!(a.seller < 1000 + persons && a.expires > a.date_time);
                    assert!((10..15).contains(&a.category));
                }
                Event::Person(p) => assert_eq!(p.id, 1000 + n / 50),
            }
        }
    }

    #[test]
    fn delayed_events_are_set_back_by_at_most_the_maximum() {
        let config = NexmarkConfig {
            delayed_per_mille: 100,
            ..NexmarkConfig::default()
        };
        let on_time = |n: u64| config.base_time + (n * 1000 / config.rate) as i64;
        let delays: Vec<i64> = (0..10_000)
            .map(|n| on_time(n) - event(n, &config).date_time())
            .collect();
        assert!(delays.iter().all(|d| (0..2000).contains(d)));
        let delayed = delays.iter().filter(|d| **d > 0).count();
        assert!((800..1200).contains(&delayed), "{delayed} of 10000 delayed");
    }
}
