//! `weir kafka-load`: writes a pipeline's generated input into a Kafka topic at
//! a given rate, for demos and benchmarks, as the pipelines read it back with
//! `--input-topic`:
//! - `keyed-sum`: record `i` is the line `key,i` with `key = (mix(i) >> 1) % keys`
//!   (the generator's records), keyed by `key`;
//! - `state-machine`: the generator's events as `address,letter` lines, keyed by
//!   address, so each address's events stay in order in one partition.
//!
//! `--format json|avro` writes the values as the pipelines' `--input-format`
//! reads them instead (Avro with the writer schema `--schema`); keys stay text.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Error, Result};
use crate::formats::{Format, FormatName};
use crate::kafka::REQUEST_TIMEOUT;
use crate::keys::mix;
use crate::pipelines::generator::Generator;
use crate::pipelines::kafka_io::KafkaClientArgs;
use crate::pipelines::kafka_records::{EventRecord, KeyValue};
use crate::pipelines::state_machine::{Event, Events};

/// Arguments of `weir kafka-load`.
#[derive(Debug, clap::Args)]
pub struct KafkaLoadArgs {
    /// Brokers and client properties.
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// The topic to write.
    #[arg(long)]
    pub topic: String,
    /// Whose input to write: keyed-sum or state-machine.
    #[arg(long, default_value = "keyed-sum", value_parser = ["keyed-sum", "state-machine"])]
    pub workload: String,
    /// Records to write.
    #[arg(long)]
    pub records: u64,
    /// keyed-sum: the index of the first record (to append to an earlier load).
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Records per second (as fast as possible if not given).
    #[arg(long, value_parser = crate::pipelines::positive_rate)]
    pub rate: Option<f64>,
    /// keyed-sum: number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// state-machine: probability that an event is an invalid transition.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// state-machine: seed of the generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How long the producer waits to fill a batch (0 for latency runs).
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    pub linger: Duration,
    /// How the values are encoded: text (the pipelines' lines), json, or avro
    /// (a plain binary datum written with --schema).
    #[arg(long, value_enum, default_value_t = FormatName::Text)]
    pub format: FormatName,
    /// The Avro writer schema (`.avsc`) of --format avro.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
}

/// Makes the load's records one at a time: key and value bytes.
enum Workload {
    KeyedSum {
        keys: u64,
        next: u64,
        format: Format,
    },
    StateMachine {
        format: Format,
        events: Events,
        buffered: Vec<Event>,
        at: usize,
        position: u64,
    },
}

impl Workload {
    fn new(args: &KafkaLoadArgs) -> Result<Self> {
        if args.workload == "state-machine" {
            if !(0.0..=1.0).contains(&args.error_rate) {
                return Err(Error::Usage(format!(
                    "--error-rate {} must be between 0 and 1",
                    args.error_rate
                )));
            }
            let mut events = Events::new(args.seed, args.error_rate);
            events.open(0, 1, None)?;
            return Ok(Workload::StateMachine {
                format: Format::new::<EventRecord>(
                    args.format,
                    args.schema.as_deref(),
                    "--format",
                    "--schema",
                )?,
                events,
                buffered: Vec::new(),
                at: 0,
                position: 0,
            });
        }
        if args.keys == 0 {
            return Err(Error::Usage("--keys must be at least 1".into()));
        }
        Ok(Workload::KeyedSum {
            keys: args.keys,
            next: args.first,
            format: Format::new::<KeyValue>(
                args.format,
                args.schema.as_deref(),
                "--format",
                "--schema",
            )?,
        })
    }

    /// Writes the next record's key and value; fails on a value the format
    /// cannot carry.
    fn next(&mut self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<()> {
        key.clear();
        value.clear();
        match self {
            Workload::KeyedSum { keys, next, format } => {
                let i = *next;
                *next += 1;
                let record = KeyValue {
                    key: (mix(i) >> 1) % *keys,
                    value: i,
                };
                key.extend_from_slice(itoa::Buffer::new().format(record.key).as_bytes());
                format.encode("kafka-load", &record, value)
            }
            Workload::StateMachine {
                format,
                events,
                buffered,
                at,
                position,
            } => {
                if *at == buffered.len() {
                    buffered.clear();
                    events.generate(*position, 1024, buffered);
                    *position += 1024;
                    *at = 0;
                }
                let event = buffered[*at];
                *at += 1;
                key.extend_from_slice(itoa::Buffer::new().format(event.address).as_bytes());
                format.encode("kafka-load", &EventRecord::from(&event), value)
            }
        }
    }
}

/// Runs `weir kafka-load`.
pub fn kafka_load(args: &KafkaLoadArgs) -> Result<()> {
    let mut workload = Workload::new(args)?;
    let mut client = args.kafka.config()?.client();
    client
        .set("linger.ms", args.linger.as_millis().to_string())
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", "true");
    let producer: ThreadedProducer<DefaultProducerContext> = client
        .create()
        .map_err(|e| Error::Kafka(format!("creating a producer: {e}")))?;
    let started = Instant::now();
    let mut last_report = started;
    let (mut key, mut value) = (Vec::with_capacity(24), Vec::with_capacity(48));
    for n in 0..args.records {
        workload.next(&mut key, &mut value)?;
        let mut record = BaseRecord::to(&args.topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    return Err(Error::Kafka(format!(
                        "writing to topic {}: {e}",
                        args.topic
                    )))
                }
            }
        }
        // Paced every 256 records: sleeping per record costs more than it writes.
        if let Some(rate) = args.rate.filter(|_| (n + 1) % 256 == 0) {
            let due = Duration::from_secs_f64((n + 1) as f64 / rate);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let rate = (n + 1) as f64 / started.elapsed().as_secs_f64();
            eprintln!(
                "kafka-load: {} of {} records written ({rate:.0}/s)",
                n + 1,
                args.records
            );
        }
    }
    producer
        .flush(REQUEST_TIMEOUT * 6)
        .map_err(|e| Error::Kafka(format!("flushing to topic {}: {e}", args.topic)))?;
    println!(
        "wrote {} records to topic {} in {:.1}s",
        args.records,
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
