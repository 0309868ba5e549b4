//! `weir kafka-latency`: reads a topic from its end for a while and prints one
//! RESULT line with the end-to-end latency of what arrives: the time each
//! record is read minus its Kafka timestamp. A job that stamps its output with
//! its input's timestamp (keyed-sum from a topic does) and an input written
//! with producer timestamps (`weir kafka-load`) give the latency from the
//! producer to this consumer. Kafka timestamps are milliseconds, so each
//! sample is exact to within 1 ms.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::histogram::Histogram;
use crate::kafka::REQUEST_TIMEOUT;
use crate::pipelines::kafka_io::KafkaClientArgs;

/// Arguments of `weir kafka-latency`.
#[derive(Debug, clap::Args)]
pub struct KafkaLatencyArgs {
    /// Brokers and client properties.
    #[command(flatten)]
    pub kafka: KafkaClientArgs,
    /// The topic to read.
    #[arg(long)]
    pub topic: String,
    /// How long to measure.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Records read in this first stretch are left out (warm-up).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// read_committed (what exactly-once output shows) or read_uncommitted.
    #[arg(long, default_value = "read_committed", value_parser = ["read_committed", "read_uncommitted"])]
    pub isolation: String,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Runs `weir kafka-latency`.
pub fn kafka_latency(args: &KafkaLatencyArgs) -> Result<()> {
    let mut client = args.kafka.config()?.client();
    client
        .set("group.id", format!("weir-latency-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", &args.isolation);
    // Fetches answered at once rather than after up to 500 ms (unless set).
    if client.get("fetch.wait.max.ms").is_none() {
        client.set("fetch.wait.max.ms", "1");
    }
    let consumer: BaseConsumer = client
        .create()
        .map_err(|e| Error::Kafka(format!("creating a consumer: {e}")))?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), REQUEST_TIMEOUT)
        .map_err(|e| Error::Kafka(format!("looking up topic {}: {e}", args.topic)))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == args.topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(Error::Kafka(format!(
            "topic {} has no partitions",
            args.topic
        )));
    }
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        assignment
            .add_partition_offset(&args.topic, p, Offset::End)
            .map_err(|e| Error::Kafka(format!("assigning {}/{p}: {e}", args.topic)))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| Error::Kafka(format!("assigning {}: {e}", args.topic)))?;
    let started = Instant::now();
    let mut histogram = Histogram::default();
    let mut max_us = 0i64;
    while started.elapsed() < args.duration {
        let message = match consumer.poll(Duration::from_millis(50)) {
            None => continue,
            Some(Ok(message)) => message,
            Some(Err(KafkaError::PartitionEOF(_))) => continue,
            Some(Err(e)) => return Err(Error::Kafka(format!("reading {}: {e}", args.topic))),
        };
        let (Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms)) = message.timestamp() else {
            continue;
        };
        if started.elapsed() < args.warmup {
            continue;
        }
        let micros = (now_micros() - ms * 1000).max(0);
        max_us = max_us.max(micros);
        histogram.record(micros as u64 * 1000);
    }
    if histogram.count() == 0 {
        return Err(Error::Kafka(format!(
            "no record arrived on topic {} after the warm-up",
            args.topic
        )));
    }
    let ms = |q: f64| histogram.quantile(q) as f64 / 1e6;
    println!(
        "RESULT scenario=kafka-latency topic={} isolation={} samples={} p50_ms={:.2} p99_ms={:.2} \
         p999_ms={:.2} max_ms={:.2}",
        args.topic,
        args.isolation,
        histogram.count(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        max_us as f64 / 1e3
    );
    Ok(())
}
