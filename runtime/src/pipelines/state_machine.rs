//! `state-machine`: Flink's intrusion-detection example. Every address runs through a
//! small state machine; an event that the machine does not allow raises an alert.
//!
//! The machine (event → next state):
//!
//! ```text
//! Initial --a--> W    Initial --c--> X
//! W --b--> Y          W --d--> Z
//! X --b--> Y          X --d--> Z
//! Y --e--> Z          Z --g--> Terminal
//! ```
//!
//! The generator keeps a set of addresses in flight per split of the source and,
//! from a seeded generator, either starts a new address or moves one along a valid
//! transition; with probability `--error-rate` it emits an invalid event instead
//! (and forgets the address). Its whole state is checkpointed per split, so a
//! replay after a restore (at any parallelism) emits exactly the same events, and
//! each address belongs to one split, so its events stay in order through the key
//! exchange. With `--error-rate 0` no alert can ever be raised, whatever fails.
//!
//! With `--input-topic` the events are the `address,letter` lines of a Kafka topic
//! instead (`weir kafka-load --workload state-machine` writes them, keyed by
//! address, so each address's events stay in order in one partition), or its
//! JSON or Avro records with `--input-format` ([`EventRecord`]);
//! `--output-format` writes the alerts as JSON or Avro ([`AlertRecord`]).

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::api::{JobBuilder, JobGraph};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::kafka::KafkaMessage;
use crate::keys::mix;
use crate::operators::{KeyedProcess, ValueState};
use crate::pipelines::generator::{Generator, GeneratorSource};
use crate::pipelines::kafka_formats::{decode_value, sink_records};
use crate::pipelines::kafka_records::{AlertRecord, EventRecord};
use crate::pipelines::GeneratorArgs;
use crate::rng::Rng;
use crate::state::Timers;

const STATE_NAMES: [&str; 6] = ["Initial", "W", "X", "Y", "Z", "Terminal"];
const INITIAL: u8 = 0;
const TERMINAL: u8 = 5;
const EVENTS: u8 = 7;
/// Addresses in flight per split of the source.
const IN_FLIGHT: usize = 64;

/// The next state after `event` in `state`, or `None` if the transition is invalid.
pub fn transition(state: u8, event: u8) -> Option<u8> {
    match (state, event) {
        (0, 0) => Some(1),
        (0, 2) => Some(2),
        (1, 1) | (2, 1) => Some(3),
        (1, 3) | (2, 3) => Some(4),
        (3, 4) => Some(4),
        (4, 6) => Some(TERMINAL),
        _ => None,
    }
}

/// An event of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The address (its high bits are the split that owns it).
    pub address: u64,
    /// The event, `a` = 0 through `g` = 6.
    pub event: u8,
}

/// An invalid transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The address.
    pub address: u64,
    /// Its state when the event came.
    pub state: u8,
    /// The event.
    pub event: u8,
}

/// The generator's whole state: what a restore needs to continue identically.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct GeneratorState {
    rng: u64,
    next_address: u64,
    in_flight: Vec<(u64, u8)>,
}

/// Generates valid event sequences per address, with invalid events at `error_rate`.
#[derive(Clone)]
pub struct Events {
    seed: u64,
    error_rate: f64,
    split: u64,
    state: GeneratorState,
}

impl Events {
    /// A generator from `seed` with invalid events at `error_rate`; [`Generator::open`]
    /// it with its split before generating.
    pub fn new(seed: u64, error_rate: f64) -> Self {
        Events {
            seed,
            error_rate,
            split: 0,
            state: GeneratorState::default(),
        }
    }

    /// A random event from `state` that is valid (or, with `valid` false, invalid).
    fn pick(rng: &mut Rng, state: u8, valid: bool) -> u8 {
        let fits = move |e: &u8| transition(state, *e).is_some() == valid;
        let n = (0..EVENTS).filter(fits).count() as u64;
        (0..EVENTS)
            .filter(fits)
            .nth(rng.below(n) as usize)
            .unwrap_or(0)
    }
}

impl Generator for Events {
    type Out = Event;

    fn open(&mut self, split: u32, _splits: u32, state: Option<&[u8]>) -> Result<()> {
        self.split = u64::from(split);
        self.state = match state {
            Some(bytes) => bincode::deserialize(bytes).map_err(|e| Error::State {
                uid: "events".into(),
                reason: format!("generator state of split {split}: {e}"),
            })?,
            None => GeneratorState {
                rng: mix(self.seed ^ mix(self.split + 1)),
                ..Default::default()
            },
        };
        Ok(())
    }

    fn generate(&mut self, _position: u64, count: usize, out: &mut Batch<Event>) {
        let mut rng = Rng::new(self.state.rng);
        let s = &mut self.state;
        for _ in 0..count {
            let start_new =
                s.in_flight.len() < IN_FLIGHT && (s.in_flight.is_empty() || rng.below(4) == 0);
            if start_new {
                let address = (self.split << 48) | s.next_address;
                s.next_address += 1;
                let event = Self::pick(&mut rng, INITIAL, true);
                out.push(Event { address, event });
                s.in_flight
                    .push((address, transition(INITIAL, event).unwrap_or(TERMINAL)));
                continue;
            }
            let i = rng.below(s.in_flight.len() as u64) as usize;
            let (address, state) = s.in_flight[i];
            if self.error_rate > 0.0 && rng.unit() < self.error_rate {
                out.push(Event {
                    address,
                    event: Self::pick(&mut rng, state, false),
                });
                s.in_flight.swap_remove(i);
                continue;
            }
            let event = Self::pick(&mut rng, state, true);
            out.push(Event { address, event });
            match transition(state, event) {
                Some(TERMINAL) | None => {
                    s.in_flight.swap_remove(i);
                }
                Some(next) => s.in_flight[i].1 = next,
            }
        }
        // The position in the random sequence is part of the state, so the events do
        // not depend on how they were split into batches.
        s.rng = rng.state();
    }

    fn snapshot(&self) -> Result<Option<Vec<u8>>> {
        bincode::serialize(&self.state)
            .map(Some)
            .map_err(|e| Error::Internal(format!("encoding generator state: {e}")))
    }
}

/// Checks each address's events against the machine.
pub struct StateMachine;

impl KeyedProcess for StateMachine {
    type Key = u64;
    type In = Event;
    type Out = Alert;
    type State = ValueState<u8>;

    fn process(
        &self,
        key: &u64,
        state: &mut ValueState<u8>,
        event: Event,
        _timers: &mut Timers<'_, u64>,
        out: &mut Vec<Alert>,
    ) -> Result<()> {
        let current = state.get().copied().unwrap_or(INITIAL);
        match transition(current, event.event) {
            Some(TERMINAL) => state.clear(),
            Some(next) => state.set(next),
            None => {
                out.push(Alert {
                    address: *key,
                    state: current,
                    event: event.event,
                });
                state.clear();
            }
        }
        Ok(())
    }
}

/// Arguments of `state-machine`.
#[derive(Debug, Parser)]
#[command(
    name = "state-machine",
    about = "Per-address event sequences checked against a state machine"
)]
pub struct StateMachineArgs {
    /// Generator options.
    #[command(flatten)]
    pub common: GeneratorArgs,
    /// Probability that an event is an invalid transition on purpose.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Forget an address's state this long after its last event (processing
    /// time, such as 1h): its next event is checked as its first.
    #[arg(long, value_parser = crate::cli::parse_duration)]
    pub state_ttl: Option<std::time::Duration>,
}

/// Builds the `state-machine` job from its command-line arguments.
pub fn build(args: &[String], parallelism: u32) -> Result<JobGraph> {
    let args = crate::pipelines::parse::<StateMachineArgs>("state-machine", args)?;
    if !(0.0..=1.0).contains(&args.error_rate) {
        return Err(Error::Usage(format!(
            "pipeline state-machine: --error-rate {} must be between 0 and 1",
            args.error_rate
        )));
    }
    let target = args.common.target()?;
    let output = args.common.kafka.formats.output::<AlertRecord>()?;
    args.common
        .kafka
        .formats
        .refuse_output_key("state-machine")?;
    let mut job = JobBuilder::new("state-machine");
    job.parallelism(parallelism);
    let (total, rate, seed, error_rate) = (
        args.common.records,
        args.common.rate,
        args.common.seed,
        args.error_rate,
    );
    let events = match args.common.kafka.input()? {
        Some(kafka) => {
            let input = args.common.kafka.formats.input::<EventRecord>()?;
            job.source("events", move |_| {
                let input = input.clone();
                kafka.source(move |message: &KafkaMessage<'_>| parse_event(&input, message))
            })
        }
        None => job.source("events", move |_| {
            GeneratorSource::new(Events::new(seed, error_rate), total, rate)
        }),
    };
    let alerts = crate::pipelines::expiring(events.key_by(|e: &Event| e.address), args.state_ttl)
        .process("machine", StateMachine);
    sink_records::<_, AlertRecord>(alerts, &target, output);
    job.build()
}

/// The letter of event `event`: `a` to `g`.
fn letter(event: u8) -> char {
    char::from(b'a' + event.min(EVENTS - 1))
}

impl From<&Event> for EventRecord {
    fn from(event: &Event) -> Self {
        EventRecord {
            address: event.address,
            letter: letter(event.event),
        }
    }
}

impl TryFrom<EventRecord> for Event {
    type Error = String;

    fn try_from(record: EventRecord) -> std::result::Result<Event, String> {
        match record.letter {
            l @ 'a'..='g' => Ok(Event {
                address: record.address,
                event: l as u8 - b'a',
            }),
            other => Err(format!("event {other:?} is not a letter a-g")),
        }
    }
}

impl From<&Alert> for AlertRecord {
    fn from(alert: &Alert) -> Self {
        AlertRecord {
            address: alert.address,
            state: STATE_NAMES[usize::from(alert.state.min(TERMINAL))].to_string(),
            event: letter(alert.event),
        }
    }
}

/// An event from its record in `format`; anything else is a bad record (the
/// source names where it is).
fn parse_event(format: &Format, message: &KafkaMessage<'_>) -> Result<Event> {
    let record: EventRecord = decode_value(format, "events", message)?;
    Event::try_from(record).map_err(|reason| Error::BadRecord {
        operator: "events".into(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(error_rate: f64) -> Events {
        Events::new(7, error_rate)
    }

    #[test]
    fn events_read_back_from_their_lines() {
        let event = Event {
            address: (3 << 48) | 17,
            event: 6,
        };
        let mut line = Vec::new();
        Format::Text
            .encode("load", &EventRecord::from(&event), &mut line)
            .unwrap();
        assert_eq!(line, b"844424930131985,g");
        let message = |value: &'static [u8]| KafkaMessage {
            topic: "events",
            partition: 2,
            offset: 9,
            timestamp: None,
            key: None,
            value: Some(value),
        };
        let parse = |value| parse_event(&Format::Text, &message(value));
        assert_eq!(parse(b"844424930131985,g").unwrap(), event);
        for bad in [&b"17"[..], b"x,a", b"17,ab"] {
            let error = parse(bad).unwrap_err().to_string();
            assert_eq!(
                error,
                "bad record in events: not `address,event` \
                 (an unsigned integer and a letter a-g)"
            );
        }
        let error = parse(b"17,h").unwrap_err().to_string();
        assert_eq!(error, "bad record in events: event 'h' is not a letter a-g");
        let json = parse_event(
            &Format::Json,
            &message(br#"{"address": 17, "letter": "h"}"#),
        );
        assert!(json
            .unwrap_err()
            .to_string()
            .ends_with("event 'h' is not a letter a-g"));
    }

    #[test]
    fn alerts_are_written_with_their_state_names() {
        let alert = Alert {
            address: 17,
            state: 3,
            event: 0,
        };
        let mut line = Vec::new();
        Format::Text
            .encode("encode", &AlertRecord::from(&alert), &mut line)
            .unwrap();
        assert_eq!(line, b"alert address=17 state=Y event=a");
    }

    #[test]
    fn valid_sequences_raise_no_alert() {
        let mut g = events(0.0);
        g.open(1, 128, None).unwrap();
        let mut out = Vec::new();
        g.generate(0, 50_000, &mut out);
        let mut states = std::collections::HashMap::new();
        for e in &out {
            assert_eq!(e.address >> 48, 1, "addresses belong to their split");
            let s = states.entry(e.address).or_insert(INITIAL);
            let next = transition(*s, e.event).expect("generated transitions are valid");
            *s = next;
        }
    }

    #[test]
    fn a_restored_generator_continues_identically() {
        let mut g = events(0.05);
        g.open(1, 128, None).unwrap();
        let mut first = Vec::new();
        g.generate(0, 1000, &mut first);
        let snapshot = g.snapshot().unwrap().unwrap();
        let mut rest = Vec::new();
        g.generate(1000, 1000, &mut rest);
        let mut h = events(0.05);
        h.open(1, 128, Some(&snapshot)).unwrap();
        let mut again = Vec::new();
        h.generate(1000, 1000, &mut again);
        assert_eq!(rest, again);
        let invalid = first
            .iter()
            .chain(&rest)
            .filter(|e| e.event >= EVENTS)
            .count();
        assert_eq!(invalid, 0);
    }
}
