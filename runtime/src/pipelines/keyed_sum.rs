//! `keyed-sum`: generated (key, value) records and a running sum per key.
//!
//! Record `i` is `key = (mix(i) >> 1) % keys`, `value = i`. The job hashes records
//! to the subtask owning the key's key group, adds each value to its key's sum and
//! emits `(key, sum)` for every record. With `--input-topic` the records are
//! the `key,value` lines of a Kafka topic instead, or its JSON or Avro
//! records with `--input-format` ([`KeyValue`]); `--output-format` writes
//! the sums as JSON or Avro ([`KeySum`]). On a Kafka topic each sum is keyed
//! by its key ([`KeyRecord`], digits unless `--output-key-format` says otherwise).

use std::time::Duration;

use clap::Parser;

use crate::api::{JobBuilder, JobGraph, Stream};
use crate::data::{Batch, Data};
use crate::error::{Error, Result};
use crate::formats::{Format, Record};
use crate::kafka::{KafkaMessage, KafkaSink};
use crate::keys::mix;
use crate::operators::{now_nanos, LatencySink};
use crate::pipelines::generator::{block_share, generate_blocks, Generator, GeneratorSource};
use crate::pipelines::kafka_formats::{decode_value, encode_value, sink_records};
use crate::pipelines::kafka_io::{KafkaInput, KafkaOutput};
use crate::pipelines::kafka_records::{KeyRecord, KeySum, KeyValue};
use crate::pipelines::simulated_work::SimulatedWork;
use crate::pipelines::{GeneratorArgs, Target};

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
    /// From this many records on (over the job), generate `--then-rate`
    /// records per second instead of `--rate`: a load that changes at a
    /// point of the input.
    #[arg(long, value_name = "RECORDS", requires = "then_rate")]
    pub rate_change_at: Option<u64>,
    /// The rate (records per second over all subtasks) after `--rate-change-at`.
    #[arg(long, requires = "rate_change_at", value_parser = crate::pipelines::positive_rate)]
    pub then_rate: Option<f64>,
    /// Microseconds each sum's task waits per record, as a call to an external
    /// service would: a load that one subtask cannot take (for trying the
    /// autoscaler).
    #[arg(long, value_name = "MICROSECONDS")]
    pub work_per_record_us: Option<u64>,
    /// Forget a key's sum this long after its last record (processing time,
    /// such as 30d or 1h): its next record starts a new sum.
    #[arg(long, value_parser = crate::cli::parse_duration)]
    pub state_ttl: Option<Duration>,
}

impl KeyedSumArgs {
    /// Refuses the options of generated records for `what` (another input).
    fn refuse_generator_options(&self, what: &str) -> Result<()> {
        if self.rate_change_at.is_some() {
            return Err(Error::Usage(format!(
                "pipeline keyed-sum: --rate-change-at and --then-rate apply to generated \
                 records, not to {what}"
            )));
        }
        Ok(())
    }

    /// The simulated work per record, if any.
    fn work(&self) -> Option<Duration> {
        self.work_per_record_us.map(Duration::from_micros)
    }
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
    if let Some(path) = args.latency_file.clone() {
        args.refuse_generator_options("--latency-file")?;
        if args.work_per_record_us.is_some() {
            return Err(Error::Usage(
                "pipeline keyed-sum: --work-per-record-us does not go with --latency-file".into(),
            ));
        }
        args.common.refuse_input_topic("keyed-sum --latency-file")?;
        args.common
            .kafka
            .formats
            .refuse("keyed-sum --latency-file")?;
        return latency_job(&args.common, args.keys, parallelism, path, args.state_ttl);
    }
    let target = args.common.target()?;
    match args.common.kafka.input()? {
        Some(input) => {
            args.refuse_generator_options("a Kafka topic")?;
            topic_job(&args, input, parallelism, &target)
        }
        None => job(&args, parallelism, &target),
    }
}

/// The `keyed-sum` job over the records of a Kafka topic (as `weir
/// kafka-load` writes them) instead of generated ones. Each sum carries
/// the Kafka timestamp of the record that updated it last; written to a topic,
/// it is keyed by its key and stamped with that timestamp, so a consumer
/// measures the end-to-end latency (`weir kafka-latency`).
pub fn topic_job(
    args: &KeyedSumArgs,
    kafka: KafkaInput,
    parallelism: u32,
    target: &Target,
) -> Result<JobGraph> {
    let (common, work) = (&args.common, args.work());
    let input = common.kafka.formats.input::<KeyValue>()?;
    let output = SumFormats::of(common)?;
    let mut job = JobBuilder::new("keyed-sum");
    job.parallelism(parallelism);
    let keyed = job
        .source("records", move |_| {
            let input = input.clone();
            kafka.source(move |message: &KafkaMessage<'_>| stamped_key_value(&input, message))
        })
        .key_by(|r: &(u64, u64, i64)| r.0);
    let mut sums = crate::pipelines::expiring(keyed, args.state_ttl).reduce(
        "sum",
        |acc: &mut (u64, u64, i64), r: (u64, u64, i64)| {
            acc.1 += r.1;
            acc.2 = r.2;
        },
    );
    if let Some(work) = work {
        sums = sums.transform("work", move |_| SimulatedWork::new(work));
    }
    sink_sums(sums, target, output, Some(|r: &(u64, u64, i64)| r.2));
    job.build()
}

/// The formats of keyed-sum's output: its sums, and on a Kafka topic their keys.
#[derive(Clone)]
struct SumFormats {
    value: Format,
    key: Format,
}

impl SumFormats {
    /// The formats the command line names, their schemas checked.
    fn of(common: &GeneratorArgs) -> Result<Self> {
        Ok(SumFormats {
            value: common.kafka.formats.output::<KeySum>()?,
            key: common.kafka.formats.output_key::<KeyRecord>()?,
        })
    }
}

/// Writes `sums` to `target`. On a Kafka topic each sum is a record keyed by
/// its key, stamped by `stamp` where the job has one (the Kafka timestamp of
/// the input that updated it last) and else with the time it is written.
fn sink_sums<T>(sums: Stream<T>, target: &Target, formats: SumFormats, stamp: Option<fn(&T) -> i64>)
where
    T: Data,
    KeySum: for<'a> From<&'a T>,
{
    let Target::Kafka(kafka) = target else {
        return sink_records::<_, KeySum>(sums, target, formats.value);
    };
    if formats.value.is_text() && formats.key.is_text() {
        let value = |r: &T, out: &mut Vec<u8>| KeySum::from(r).write_text(out);
        let key = |r: &T, out: &mut Vec<u8>| KeyRecord::from(&KeySum::from(r)).write_text(out);
        sums.sink("sink", kafka_sink(kafka, key, value, stamp));
        return;
    }
    // Encoded in a step of its own, which can fail the job: the sink's
    // closures cannot.
    let encoded = sums.try_map("encode", move |r: T| {
        let sum = KeySum::from(&r);
        let key = encode_value(&formats.key, &KeyRecord::from(&sum))?;
        let value = encode_value(&formats.value, &sum)?;
        Ok((key, value, stamp.map_or(0, |stamp| stamp(&r))))
    });
    let key = |r: &Encoded, out: &mut Vec<u8>| out.extend_from_slice(&r.0);
    let value = |r: &Encoded, out: &mut Vec<u8>| out.extend_from_slice(&r.1);
    let stamp = stamp.map(|_| (|r: &Encoded| r.2) as fn(&Encoded) -> i64);
    encoded.sink("sink", kafka_sink(kafka, key, value, stamp));
}

/// A sum encoded for Kafka: its key, its value and its timestamp.
type Encoded = (Vec<u8>, Vec<u8>, i64);

/// A Kafka sink factory writing each record's `key` and `value`, stamped by
/// `stamp` if given.
fn kafka_sink<T: Data>(
    output: &KafkaOutput,
    key: fn(&T, &mut Vec<u8>),
    value: fn(&T, &mut Vec<u8>),
    stamp: Option<fn(&T) -> i64>,
) -> impl Fn(&crate::operator::OperatorContext) -> KafkaSink<T> + Send + Sync + 'static {
    let output = output.clone();
    move |_| {
        let sink = KafkaSink::new(output.config.clone(), &output.topic, value)
            .key(key)
            .guarantee(output.guarantee)
            .transaction_timeout(output.transaction_timeout);
        match stamp {
            Some(stamp) => sink.timestamp(stamp),
            None => sink,
        }
    }
}

/// A [`KeyValue`] in `format` with its Kafka timestamp (0 if it has none);
/// anything else is a bad record (the source names where it is).
fn stamped_key_value(format: &Format, message: &KafkaMessage<'_>) -> Result<(u64, u64, i64)> {
    let record: KeyValue = decode_value(format, "records", message)?;
    Ok((record.key, record.value, message.timestamp.unwrap_or(0)))
}

impl From<&KeySum> for KeyRecord {
    fn from(sum: &KeySum) -> Self {
        KeyRecord { key: sum.key }
    }
}

impl From<&(u64, u64)> for KeySum {
    fn from(&(key, sum): &(u64, u64)) -> Self {
        KeySum { key, sum }
    }
}

impl From<&(u64, u64, i64)> for KeySum {
    fn from(&(key, sum, _): &(u64, u64, i64)) -> Self {
        KeySum { key, sum }
    }
}

/// Sums the values per key, waiting `work` per record after the sum if
/// given, and writes the sums to `target` in `formats`.
fn sum_into(
    records: Stream<(u64, u64)>,
    target: &Target,
    formats: SumFormats,
    work: Option<Duration>,
    ttl: Option<Duration>,
) {
    let mut sums = crate::pipelines::expiring(records.key_by(|r: &(u64, u64)| r.0), ttl)
        .reduce("sum", |acc: &mut (u64, u64), r: (u64, u64)| acc.1 += r.1);
    if let Some(work) = work {
        sums = sums.transform("work", move |_| SimulatedWork::new(work));
    }
    sink_sums(sums, target, formats, None);
}

/// The `keyed-sum` job of generated records writing to `target`.
pub fn job(args: &KeyedSumArgs, parallelism: u32, target: &Target) -> Result<JobGraph> {
    let (common, keys) = (&args.common, args.keys);
    if keys == 0 {
        return Err(Error::Usage(
            "pipeline keyed-sum: --keys must be at least 1".into(),
        ));
    }
    let output = SumFormats::of(common)?;
    let mut job = JobBuilder::new("keyed-sum");
    job.parallelism(parallelism);
    let (total, rate) = (common.records, common.rate);
    let later = args.rate_change_at.zip(args.then_rate);
    let records = job.source("records", move |_| {
        let generator = KeyedRecords {
            keys,
            split: 0,
            splits: 1,
        };
        let source = GeneratorSource::new(generator, total, rate);
        match later {
            Some((records, rate)) => source.with_later_rate(records, rate),
            None => source,
        }
    });
    sum_into(
        records,
        target,
        output,
        args.work_per_record_us.map(Duration::from_micros),
        args.state_ttl,
    );
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
    ttl: Option<Duration>,
) -> Result<JobGraph> {
    if keys == 0 {
        return Err(Error::Usage(
            "pipeline keyed-sum: --keys must be at least 1".into(),
        ));
    }
    let mut job = JobBuilder::new("keyed-sum");
    job.parallelism(parallelism);
    let (total, rate) = (common.records, common.rate);
    let keyed = job
        .source("records", move |_| {
            let generator = StampedRecords {
                keys,
                split: 0,
                splits: 1,
            };
            GeneratorSource::new(generator, total, rate)
        })
        .key_by(|r: &(u64, u64, u64)| r.0);
    crate::pipelines::expiring(keyed, ttl)
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
