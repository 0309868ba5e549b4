//! `keyed-sum`: generated (key, value) records and a running sum per key.
//!
//! Record `i` is `key = (mix(i) >> 1) % keys`, `value = i`. The job hashes records
//! to the subtask owning the key's key group, adds each value to its key's sum and
//! emits `(key, sum)` for every record. With `--input-topic` the records are
//! the `key,value` lines of a Kafka topic instead.

use std::time::Duration;

use clap::Parser;

use crate::api::{JobBuilder, JobGraph, Stream};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::kafka::{KafkaMessage, KafkaSink};
use crate::keys::mix;
use crate::operators::{now_nanos, LatencySink};
use crate::pipelines::generator::{block_share, generate_blocks, Generator, GeneratorSource};
use crate::pipelines::kafka_io::KafkaInput;
use crate::pipelines::{sink_lines, GeneratorArgs, Target};

/// Arguments of `keyed-sum`.
#[derive(Debug, Parser)]
#[command(
    name = "keyed-sum",
    about = "Generated (key, value) records and a running sum per key"
)]
pub struct KeyedSumArgs {
    /// Generator options.
    #[command(flatten)]
    pub common: GeneratorArgs,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Stamp records at the source and write a latency histogram per sink subtask
    /// to FILE.<subtask> instead of the sums (for `weir bench`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["output", "discard"])]
    pub latency_file: Option<std::path::PathBuf>,
}

/// Generates record `i` as `((mix(i) >> 1) % keys, i)`.
#[derive(Clone)]
pub struct KeyedRecords {
    keys: u64,
    split: u32,
    splits: u32,
}

impl Generator for KeyedRecords {
    type Out = (u64, u64);

    fn open(&mut self, split: u32, splits: u32, _state: Option<&[u8]>) -> Result<()> {
        (self.split, self.splits) = (split, splits);
        Ok(())
    }

    fn generate(&mut self, position: u64, count: usize, out: &mut Batch<(u64, u64)>) {
        let keys = self.keys;
        generate_blocks(position, count, self.split, self.splits, out, |i| {
            ((mix(i) >> 1) % keys, i)
        });
    }

    fn share(&self, total: u64, split: u32, splits: u32) -> u64 {
        block_share(total, split, splits)
    }
}

/// Builds the `keyed-sum` job from its command-line arguments.
pub fn build(args: &[String], parallelism: u32) -> Result<JobGraph> {
    let args = crate::pipelines::parse::<KeyedSumArgs>("keyed-sum", args)?;
    if let Some(path) = args.latency_file {
        args.common.refuse_input_topic("keyed-sum --latency-file")?;
        return latency_job(&args.common, args.keys, parallelism, path);
    }
    let target = args.common.target()?;
    match args.common.kafka.input()? {
        Some(input) => topic_job(input, parallelism, &target),
        None => job(&args.common, args.keys, parallelism, &target),
    }
}

/// The `keyed-sum` job over the `key,value` records of a Kafka topic (as
/// `weir kafka-load` writes them) instead of generated ones. Each sum carries
/// the Kafka timestamp of the record that updated it last; written to a topic,
/// it is keyed by its key and stamped with that timestamp, so a consumer
/// measures the end-to-end latency (`weir kafka-latency`).
pub fn topic_job(input: KafkaInput, parallelism: u32, target: &Target) -> Result<JobGraph> {
    let mut job = JobBuilder::new("keyed-sum");
    job.parallelism(parallelism);
    let sums = job
        .source("records", move |_| input.source(stamped_key_value))
        .key_by(|r: &(u64, u64, i64)| r.0)
        .reduce("sum", |acc: &mut (u64, u64, i64), r: (u64, u64, i64)| {
            acc.1 += r.1;
            acc.2 = r.2;
        });
    let line = |r: &(u64, u64, i64), out: &mut Vec<u8>| sum_line(r.0, r.1, out);
    match target {
        Target::Kafka(output) => {
            let output = output.clone();
            sums.sink("sink", move |_| {
                KafkaSink::new(output.config.clone(), &output.topic, line)
                    .key(|r: &(u64, u64, i64), out| {
                        out.extend_from_slice(itoa_buf().format(r.0).as_bytes())
                    })
                    .timestamp(|r: &(u64, u64, i64)| r.2)
                    .guarantee(output.guarantee)
                    .transaction_timeout(output.transaction_timeout)
            });
        }
        other => sink_lines(sums, other, line),
    }
    job.build()
}

/// A `key,value` record of unsigned integers with its Kafka timestamp (0 if
/// it has none); anything else is a bad record (the source names where it is).
fn stamped_key_value(message: &KafkaMessage<'_>) -> Result<(u64, u64, i64)> {
    let parsed = message
        .value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|text| text.split_once(','))
        .and_then(|(k, v)| Some((k.trim().parse().ok()?, v.trim().parse().ok()?)));
    match parsed {
        Some((key, value)) => Ok((key, value, message.timestamp.unwrap_or(0))),
        None => Err(Error::BadRecord {
            operator: "records".into(),
            reason: "not `key,value` (two unsigned integers)".into(),
        }),
    }
}

/// Sums the values per key and writes `key,sum` lines to `target`.
fn sum_into(records: Stream<(u64, u64)>, target: &Target) {
    let sums = records
        .key_by(|r: &(u64, u64)| r.0)
        .reduce("sum", |acc: &mut (u64, u64), r: (u64, u64)| acc.1 += r.1);
    sink_lines(sums, target, |r: &(u64, u64), out| sum_line(r.0, r.1, out));
}

/// Writes the line `key,sum`.
fn sum_line(key: u64, sum: u64, out: &mut Vec<u8>) {
    let mut buf = itoa_buf();
    out.extend_from_slice(buf.format(key).as_bytes());
    out.push(b',');
    out.extend_from_slice(buf.format(sum).as_bytes());
}

/// The `keyed-sum` job writing to `target`.
pub fn job(
    common: &GeneratorArgs,
    keys: u64,
    parallelism: u32,
    target: &Target,
) -> Result<JobGraph> {
    if keys == 0 {
        return Err(Error::Usage(
            "pipeline keyed-sum: --keys must be at least 1".into(),
        ));
    }
    let mut job = JobBuilder::new("keyed-sum");
    job.parallelism(parallelism);
    let (total, rate) = (common.records, common.rate);
    let records = job.source("records", move |_| {
        let generator = KeyedRecords {
            keys,
            split: 0,
            splits: 1,
        };
        GeneratorSource::new(generator, total, rate)
    });
    sum_into(records, target);
    job.build()
}

/// Generates record `i` as `((mix(i) >> 1) % keys, i, t)` where `t` is when the
/// source emits it ([`now_nanos`], read once per batch).
#[derive(Clone)]
pub struct StampedRecords {
    keys: u64,
    split: u32,
    splits: u32,
}

impl Generator for StampedRecords {
    type Out = (u64, u64, u64);

    fn open(&mut self, split: u32, splits: u32, _state: Option<&[u8]>) -> Result<()> {
        (self.split, self.splits) = (split, splits);
        Ok(())
    }

    fn generate(&mut self, position: u64, count: usize, out: &mut Batch<(u64, u64, u64)>) {
        let (keys, now) = (self.keys, now_nanos());
        generate_blocks(position, count, self.split, self.splits, out, |i| {
            ((mix(i) >> 1) % keys, i, now)
        });
    }

    fn share(&self, total: u64, split: u32, splits: u32) -> u64 {
        block_share(total, split, splits)
    }
}

/// `keyed-sum` with source timestamps: the sum carries the stamp of the record that
/// updated it last, and a [`LatencySink`] writes `now - stamp` percentiles to
/// `path.<subtask>` (records in the sink's first second are left out as warm-up).
pub fn latency_job(
    common: &GeneratorArgs,
    keys: u64,
    parallelism: u32,
    path: std::path::PathBuf,
) -> Result<JobGraph> {
    if keys == 0 {
        return Err(Error::Usage(
            "pipeline keyed-sum: --keys must be at least 1".into(),
        ));
    }
    let mut job = JobBuilder::new("keyed-sum");
    job.parallelism(parallelism);
    let (total, rate) = (common.records, common.rate);
    job.source("records", move |_| {
        let generator = StampedRecords {
            keys,
            split: 0,
            splits: 1,
        };
        GeneratorSource::new(generator, total, rate)
    })
    .key_by(|r: &(u64, u64, u64)| r.0)
    .reduce("sum", |acc: &mut (u64, u64, u64), r: (u64, u64, u64)| {
        acc.1 += r.1;
        acc.2 = r.2;
    })
    .sink("sink", move |_| {
        LatencySink::new(
            path.clone(),
            |r: &(u64, u64, u64)| r.2,
            Duration::from_secs(1),
        )
    });
    job.build()
}

fn itoa_buf() -> itoa::Buffer {
    itoa::Buffer::new()
}
