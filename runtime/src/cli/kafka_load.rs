//! `weir kafka-load`: writes `keyed-sum` records into a Kafka topic at a given
//! rate, for demos and benchmarks. Record `i` is the line `key,i` with
//! `key = (mix(i) >> 1) % keys` (the generator's records), the key also the
//! record's key, so `weir run keyed-sum --input-topic` sums what it wrote.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::error::{Error, Result};
use crate::kafka::REQUEST_TIMEOUT;
use crate::keys::mix;
use crate::pipelines::kafka_io::client_config;

/// Arguments of `weir kafka-load`.
#[derive(Debug, clap::Args)]
pub struct KafkaLoadArgs {
    /// Kafka bootstrap servers, `host:port,...`.
    #[arg(long, env = "WEIR_KAFKA_BROKERS")]
    pub kafka_brokers: String,
    /// A Kafka client property `key=value` (repeatable); `key=env:NAME` reads NAME.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
    /// The topic to write.
    #[arg(long)]
    pub topic: String,
    /// Records to write.
    #[arg(long)]
    pub records: u64,
    /// The index of the first record (to append to an earlier load).
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Records per second (as fast as possible if not given).
    #[arg(long, value_parser = crate::pipelines::positive_rate)]
    pub rate: Option<f64>,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
}

/// Runs `weir kafka-load`.
pub fn kafka_load(args: &KafkaLoadArgs) -> Result<()> {
    if args.keys == 0 {
        return Err(Error::Usage("--keys must be at least 1".into()));
    }
    let mut client = client_config(&args.kafka_brokers, &args.kafka_properties)?.client();
    client
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", "true");
    let producer: ThreadedProducer<DefaultProducerContext> = client
        .create()
        .map_err(|e| Error::Kafka(format!("creating a producer: {e}")))?;
    let started = Instant::now();
    let mut last_report = started;
    let (mut key_buf, mut index_buf) = (itoa::Buffer::new(), itoa::Buffer::new());
    let mut value = Vec::with_capacity(48);
    for n in 0..args.records {
        let i = args.first + n;
        let key = (mix(i) >> 1) % args.keys;
        let key_text = key_buf.format(key);
        value.clear();
        value.extend_from_slice(key_text.as_bytes());
        value.push(b',');
        value.extend_from_slice(index_buf.format(i).as_bytes());
        let mut record = BaseRecord::to(&args.topic).key(key_text).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
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
