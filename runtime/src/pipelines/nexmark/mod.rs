//! `nexmark`: the Nexmark benchmark's events and queries (see `bench/nexmark/SPEC.md`).
//!
//! The source generates persons, auctions and bids per split, with watermarks
//! per split (bounded out-of-orderness of the delay option plus one second), so
//! event-time results are the same at any parallelism, batch size and after
//! any failure.

pub mod joins;
pub mod model;
pub mod queries;

use std::time::Duration;

use clap::Parser;

use crate::api::{JobBuilder, JobGraph, Stream};
use crate::error::{Error, Result};
use crate::pipelines::generator::{GeneratorSource, SplitWatermarks};
use crate::pipelines::{GeneratorArgs, Target};

use model::{Event, NexmarkConfig, NexmarkEvents};

/// The queries `nexmark` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Query {
    /// Every bid, unchanged.
    Q0,
    /// Bids in euro.
    Q1,
    /// Bids on every 123rd auction.
    Q2,
    /// Local items: auctions of category 10 joined with their sellers in OR, ID, CA.
    Q3,
    /// Average winning price per category.
    Q4,
    /// Hot items: the most-bid auctions per sliding window.
    Q5,
    /// Highest bids per tumbling window.
    Q7,
    /// New sellers: persons joined with their auctions per tumbling window.
    Q8,
    /// Bids per bidder session.
    Q11,
    /// Bids per bidder per processing-time window.
    Q12,
}

impl Query {
    /// Its name on the command line (`q5`).
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// Arguments of `nexmark`.
#[derive(Debug, Parser)]
#[command(name = "nexmark", about = "The Nexmark events and one of its queries")]
pub struct NexmarkArgs {
    /// Generator options (`--records` is the number of events).
    #[command(flatten)]
    pub common: GeneratorArgs,
    /// The query to run.
    #[arg(long, value_enum)]
    pub query: Query,
    /// Events per second of event time (how fast event time moves; not a rate limit).
    #[arg(long, default_value_t = 100_000)]
    pub event_rate: u64,
    /// Events in a thousand whose event time is set back (out-of-order input).
    #[arg(long, default_value_t = 0)]
    pub delayed_per_mille: u64,
    /// The most a delayed event is set back, ms.
    #[arg(long, default_value_t = 2000)]
    pub max_delay_ms: u64,
}

/// Builds the `nexmark` job from its command-line arguments.
pub fn build(args: &[String], parallelism: u32) -> Result<JobGraph> {
    let args = crate::pipelines::parse::<NexmarkArgs>("nexmark", args)?;
    args.common.refuse_input_topic("nexmark")?;
    args.common.kafka.formats.refuse("nexmark")?;
    job(&args, parallelism, &args.common.target()?)
}

/// The `nexmark` job for `args` writing to `target`.
pub fn job(args: &NexmarkArgs, parallelism: u32, target: &Target) -> Result<JobGraph> {
    if args.event_rate == 0 || args.delayed_per_mille > 1000 {
        return Err(Error::Usage(
            "pipeline nexmark: --event-rate must be at least 1 and --delayed-per-mille at most 1000"
                .into(),
        ));
    }
    let config = NexmarkConfig {
        seed: args.common.seed,
        rate: args.event_rate,
        delayed_per_mille: args.delayed_per_mille,
        max_delay_ms: args.max_delay_ms,
        ..NexmarkConfig::default()
    };
    let mut job = JobBuilder::new(&format!("nexmark-{}", args.query.name()));
    job.parallelism(parallelism);
    let (total, rate) = (args.common.records, args.common.rate);
    let max_delay = config.max_delay_ms as i64 + 1000;
    let events: Stream<Event> = job.source("events", move |_| {
        GeneratorSource::new(NexmarkEvents::new(config), total, rate).with_watermarks(
            SplitWatermarks {
                timestamp: std::sync::Arc::new(Event::date_time),
                max_delay,
                interval: Duration::from_millis(200),
            },
        )
    });
    match args.query {
        Query::Q0 => queries::q0(events, target),
        Query::Q1 => queries::q1(events, target),
        Query::Q2 => queries::q2(events, target),
        Query::Q3 => joins::q3(events, target),
        Query::Q4 => joins::q4(events, target),
        Query::Q5 => queries::q5(events, target),
        Query::Q7 => queries::q7(events, target),
        Query::Q8 => joins::q8(events, target),
        Query::Q11 => queries::q11(events, target),
        Query::Q12 => queries::q12(events, target),
    }
    job.build()
}
