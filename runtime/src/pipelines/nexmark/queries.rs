//! The Nexmark queries as jobs of the typed API, each from the stream of
//! events to the lines it writes, and what they share; the joins are in
//! [`super::joins`].

use std::time::Duration;

use crate::api::Stream;
use crate::data::{EventTime, Tagged};
use crate::error::Result;
use crate::operators::{Aggregate, KeyedProcess, ValueState, Windows};
use crate::pipelines::nexmark::model::{Auction, Bid, Event, Person};
use crate::pipelines::{sink_lines, Target};
use crate::state::{TimeDomain, Timers};

pub(super) const TEN_SECONDS: Duration = Duration::from_secs(10);

pub(super) fn bids(events: Stream<Event>) -> Stream<Bid> {
    events.flat_map("bids", |e, out| {
        if let Event::Bid(b) = e {
            out.push(b);
        }
    })
}

/// Persons and auctions as two streams: picked out of the events by one
/// operator, so that only they (not the bids too) are copied for the second
/// consumer.
pub(super) fn persons_and_auctions(events: Stream<Event>) -> (Stream<Person>, Stream<Auction>) {
    events
        .flat_map("persons-and-auctions", |e, out| match e {
            Event::Person(p) => out.push(Tagged::Main(*p)),
            Event::Auction(a) => out.push(Tagged::Side(*a)),
            Event::Bid(_) => {}
        })
        .split("by-kind")
}

pub(super) fn auctions(events: Stream<Event>) -> Stream<Auction> {
    events.flat_map("auctions", |e, out| {
        if let Event::Auction(a) = e {
            out.push(*a);
        }
    })
}

pub(super) fn line(out: &mut Vec<u8>, fields: &[&dyn std::fmt::Display]) {
    use std::io::Write;
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(out, "{f}");
    }
}

fn bid_line(b: &Bid, out: &mut Vec<u8>) {
    line(
        out,
        &[
            &b.auction,
            &b.bidder,
            &b.price,
            &b.channel,
            &b.url,
            &b.date_time,
        ],
    );
}

/// q0: every bid, unchanged (the cost of moving events through).
pub fn q0(events: Stream<Event>, target: &Target) {
    sink_lines(bids(events), target, bid_line);
}

/// q1: every bid with its price in euro (`price * 908 / 1000`).
pub fn q1(events: Stream<Event>, target: &Target) {
    let euro = bids(events).map("euro", |mut b: Bid| {
        b.price = b.price * 908 / 1000;
        b
    });
    sink_lines(euro, target, bid_line);
}

/// q2: `(auction, price)` of the bids on every 123rd auction.
pub fn q2(events: Stream<Event>, target: &Target) {
    let picked = bids(events).flat_map("select", |b: Bid, out| {
        if b.auction.is_multiple_of(123) {
            out.push((b.auction, b.price));
        }
    });
    sink_lines(picked, target, |r: &(u64, u64), out| {
        line(out, &[&r.0, &r.1])
    });
}

/// The records of one window with the largest value, found once the window is
/// complete: keyed by window end, a timer at the end fires when every upstream
/// result of the window has arrived (they precede the watermark that passes it).
struct WindowMax<T>(std::marker::PhantomData<fn(T)>);

/// A window's candidates: the largest value so far and the records that have it.
type Leaders<T> = ValueState<(u64, Vec<T>)>;

impl<T: crate::data::Data> KeyedProcess for WindowMax<T> {
    type Key = EventTime;
    type In = (EventTime, u64, T);
    type Out = (EventTime, u64, T);
    type State = Leaders<T>;

    fn process(
        &self,
        end: &EventTime,
        state: &mut Self::State,
        (_, value, record): Self::In,
        timers: &mut Timers<'_, EventTime>,
        _: &mut Vec<Self::Out>,
    ) -> Result<()> {
        if state.get().is_none() {
            timers.register_event_time(end - 1);
        }
        let (best, leaders) = state.get_or_insert_with(|| (0, Vec::new()));
        if value > *best {
            *best = value;
            leaders.clear();
        }
        if value == *best {
            leaders.push(record);
        }
        Ok(())
    }

    fn on_timer(
        &self,
        end: &EventTime,
        state: &mut Self::State,
        _: EventTime,
        _: TimeDomain,
        _: &mut Timers<'_, EventTime>,
        out: &mut Vec<Self::Out>,
    ) -> Result<()> {
        if let Some((best, leaders)) = state.get_mut() {
            for record in leaders.drain(..) {
                out.push((*end, *best, record));
            }
        }
        state.clear();
        Ok(())
    }
}

fn window_max<T: crate::data::Data>(
    candidates: Stream<(EventTime, u64, T)>,
    name: &str,
) -> Stream<(EventTime, u64, T)> {
    candidates
        .key_by(|c: &(EventTime, u64, T)| c.0)
        .process(name, WindowMax(std::marker::PhantomData))
}

/// q5: per 10 s window sliding every 2 s, the auctions with the most bids.
pub fn q5(events: Stream<Event>, target: &Target) {
    let counts = bids(events)
        .key_by(|b: &Bid| b.auction)
        .window(Windows::sliding(
            TEN_SECONDS,
            Duration::from_secs(2),
            |b: &Bid| b.date_time,
        ))
        .count("bids-per-auction")
        .map("by-window", |w| (w.end_ms, w.value, w.key));
    let hot = window_max(counts, "hottest");
    sink_lines(hot, target, |r: &(EventTime, u64, u64), out| {
        line(out, &[&r.0, &r.2, &r.1])
    });
}

/// The highest price of a window and the bids that bid it.
struct HighestBids;

impl Aggregate<Bid> for HighestBids {
    type Acc = (u64, Vec<Bid>);
    type Out = (u64, Vec<Bid>);
    fn add(&self, acc: &mut Self::Acc, bid: &Bid) {
        if bid.price > acc.0 {
            acc.0 = bid.price;
            acc.1.clear();
        }
        if bid.price == acc.0 {
            acc.1.push(bid.clone());
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        if other.0 > acc.0 {
            *acc = other;
        } else if other.0 == acc.0 {
            acc.1.extend(other.1);
        }
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        acc.clone()
    }
    fn result_last(&self, acc: Self::Acc) -> Self::Out {
        acc
    }
}

/// q7: per 10 s tumbling window, the bids with the highest price: the highest
/// per auction first (in parallel), then the highest of those per window.
pub fn q7(events: Stream<Event>, target: &Target) {
    let per_auction = bids(events)
        .key_by(|b: &Bid| b.auction)
        .window(Windows::tumbling(TEN_SECONDS, |b: &Bid| b.date_time))
        .aggregate("highest-per-auction", HighestBids)
        .flat_map("candidates", |w, out| {
            for bid in w.value.1 {
                out.push((w.end_ms, w.value.0, bid));
            }
        });
    let highest = window_max(per_auction, "highest");
    sink_lines(highest, target, |r: &(EventTime, u64, Bid), out| {
        line(
            out,
            &[&r.0, &r.2.auction, &r.2.bidder, &r.1, &r.2.date_time],
        )
    });
}

/// q11: the number of bids of each bidder's sessions (10 s gap).
pub fn q11(events: Stream<Event>, target: &Target) {
    let sessions = bids(events)
        .key_by(|b: &Bid| b.bidder)
        .window(Windows::session(TEN_SECONDS, |b: &Bid| b.date_time))
        .count("bids-per-session");
    sink_lines(sessions, target, |w, out| {
        line(out, &[&w.key, &w.start_ms, &w.end_ms, &w.value])
    });
}

/// q12: the number of bids of each bidder per 10 s of processing time.
pub fn q12(events: Stream<Event>, target: &Target) {
    let counts = bids(events)
        .key_by(|b: &Bid| b.bidder)
        .window(Windows::tumbling_processing_time(TEN_SECONDS))
        .count("bids-per-bidder");
    sink_lines(counts, target, |w, out| {
        line(out, &[&w.key, &w.start_ms, &w.end_ms, &w.value])
    });
}
