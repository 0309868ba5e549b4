//! The Nexmark queries that join: q3 (an incremental join of sellers and
//! their auctions), q4 (winning bids by timers, then an average per category)
//! and q8 (a window join of new persons and their auctions).

use serde::{Deserialize, Serialize};

use crate::api::Stream;
use crate::data::EventTime;
use crate::error::Result;
use crate::operators::{KeyedCoProcess, KeyedProcess, ValueState};
use crate::pipelines::nexmark::model::{Auction, Bid, Event, Person};
use crate::pipelines::nexmark::queries::{auctions, bids, line, persons_and_auctions, TEN_SECONDS};
use crate::pipelines::{sink_lines, Target};
use crate::state::{TimeDomain, Timers};

/// A seller and the auctions that waited for them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SellerState {
    seller: Option<Person>,
    waiting: Vec<u64>,
}

/// q3's incremental join: each auction with its seller, whichever came first.
struct LocalItems;

impl KeyedCoProcess for LocalItems {
    type Key = u64;
    type Left = Person;
    type Right = Auction;
    type Out = (String, String, String, u64);
    type State = ValueState<SellerState>;

    fn process_left(
        &self,
        _: &u64,
        state: &mut Self::State,
        person: Person,
        _: &mut Timers<'_, u64>,
        out: &mut Vec<Self::Out>,
    ) -> Result<()> {
        let s = state.get_or_insert_with(SellerState::default);
        for auction in s.waiting.drain(..) {
            out.push((
                person.name.clone(),
                person.city.clone(),
                person.state.clone(),
                auction,
            ));
        }
        s.seller = Some(person);
        Ok(())
    }

    fn process_right(
        &self,
        _: &u64,
        state: &mut Self::State,
        auction: Auction,
        _: &mut Timers<'_, u64>,
        out: &mut Vec<Self::Out>,
    ) -> Result<()> {
        let s = state.get_or_insert_with(SellerState::default);
        match &s.seller {
            Some(p) => out.push((p.name.clone(), p.city.clone(), p.state.clone(), auction.id)),
            None => s.waiting.push(auction.id),
        }
        Ok(())
    }
}

/// q3: `(name, city, state, auction)` for auctions of category 10 by sellers
/// in Oregon, Idaho or California: an unbounded incremental join.
pub fn q3(events: Stream<Event>, target: &Target) {
    let (persons, auctions) = persons_and_auctions(events);
    let sellers = persons
        .filter("local-persons", |p: &Person| {
            matches!(p.state.as_str(), "OR" | "ID" | "CA")
        })
        .key_by(|p: &Person| p.id);
    let items = auctions
        .filter("category-10", |a: &Auction| a.category == 10)
        .key_by(|a: &Auction| a.seller);
    let joined = sellers.connect(items).process("local-items", LocalItems);
    sink_lines(joined, target, |r: &(String, String, String, u64), out| {
        line(out, &[&r.0, &r.1, &r.2, &r.3])
    });
}

/// An auction's state while it is open: the auction once seen, and the
/// highest valid bid so far (bids may come before their auction).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct OpenAuction {
    auction: Option<Auction>,
    early_bids: Vec<(EventTime, u64)>,
    best: Option<u64>,
}

/// q4's first step: the winning bid of each auction, emitted when it closes
/// (a bid wins if it is the highest made between the auction's start and end).
struct WinningBids;

impl KeyedCoProcess for WinningBids {
    type Key = u64;
    type Left = Auction;
    type Right = Bid;
    type Out = (u64, u64);
    type State = ValueState<OpenAuction>;

    fn process_left(
        &self,
        _: &u64,
        state: &mut Self::State,
        auction: Auction,
        timers: &mut Timers<'_, u64>,
        _: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        let open = state.get_or_insert_with(OpenAuction::default);
        for (t, price) in open.early_bids.drain(..) {
            if (auction.date_time..=auction.expires).contains(&t) {
                open.best = open.best.max(Some(price));
            }
        }
        timers.register_event_time(auction.expires);
        open.auction = Some(auction);
        Ok(())
    }

    fn process_right(
        &self,
        _: &u64,
        state: &mut Self::State,
        bid: Bid,
        timers: &mut Timers<'_, u64>,
        _: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        if bid.date_time <= timers.watermark() && state.get().is_none() {
            return Ok(());
        }
        let open = state.get_or_insert_with(OpenAuction::default);
        match &open.auction {
            Some(a) if (a.date_time..=a.expires).contains(&bid.date_time) => {
                open.best = open.best.max(Some(bid.price));
            }
            Some(_) => {}
            None => {
                // A bid before its auction: kept until the auction comes (or
                // dropped once no auction made after the bid can still be open).
                open.early_bids.push((bid.date_time, bid.price));
                timers.register_event_time(bid.date_time + 21_000);
            }
        }
        Ok(())
    }

    fn on_timer(
        &self,
        _: &u64,
        state: &mut Self::State,
        time: EventTime,
        _: TimeDomain,
        _: &mut Timers<'_, u64>,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        let Some(open) = state.get_mut() else {
            return Ok(());
        };
        match &open.auction {
            Some(a) if a.expires <= time => {
                if let Some(price) = open.best {
                    out.push((a.category, price));
                }
                state.clear();
            }
            Some(_) => {}
            None => {
                open.early_bids.retain(|(t, _)| t + 21_000 > time);
                if open.early_bids.is_empty() {
                    state.clear();
                }
            }
        }
        Ok(())
    }
}

/// q4's second step: the running average of winning prices per category.
struct CategoryAverage;

impl KeyedProcess for CategoryAverage {
    type Key = u64;
    type In = (u64, u64);
    type Out = (u64, u64);
    type State = ValueState<(u64, u64)>;

    fn process(
        &self,
        category: &u64,
        state: &mut Self::State,
        (_, price): (u64, u64),
        _: &mut Timers<'_, u64>,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        let (sum, count) = state.get_or_insert_with(|| (0, 0));
        *sum += price;
        *count += 1;
        out.push((*category, *sum / *count));
        Ok(())
    }
}

/// q4: the average winning price per category, updated as auctions close.
pub fn q4(events: Stream<Event>, target: &Target) {
    let open = auctions(events.clone()).key_by(|a: &Auction| a.id);
    let bids = bids(events).key_by(|b: &Bid| b.auction);
    let averages = open
        .connect(bids)
        .process("winning-bids", WinningBids)
        .key_by(|w: &(u64, u64)| w.0)
        .process("category-average", CategoryAverage);
    sink_lines(averages, target, |r: &(u64, u64), out| {
        line(out, &[&r.0, &r.1])
    });
}

/// q8: per 10 s tumbling window, the persons who opened an auction in it:
/// `(id, name, window start)` per auction, by a window join.
pub fn q8(events: Stream<Event>, target: &Target) {
    let (persons, auctions) = persons_and_auctions(events);
    let people = persons.key_by(|p: &Person| p.id);
    let sellers = auctions.key_by(|a: &Auction| a.seller);
    let joined = people.connect(sellers).window_join(
        "new-sellers",
        TEN_SECONDS,
        None,
        |p: &Person| p.date_time,
        |a: &Auction| a.date_time,
        |id, window, p, _| (*id, p.name.clone(), window.start),
    );
    sink_lines(joined, target, |r: &(u64, String, EventTime), out| {
        line(out, &[&r.0, &r.1, &r.2])
    });
}
