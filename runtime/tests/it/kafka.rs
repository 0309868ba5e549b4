//! The Kafka source against a real broker: keyed sums over a topic's records are
//! exactly once through injected failures, and a savepoint taken at one
//! parallelism restores at another with every partition's offset.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir_runtime::api::{JobBuilder, JobGraph};
use weir_runtime::data::SavepointFormat;
use weir_runtime::error::Error;
use weir_runtime::exec::runner::{Ending, LocalRunner, RestoreFrom, RunConfig};
use weir_runtime::kafka::{KafkaConfig, KafkaMessage, KafkaSource};
use weir_runtime::keys::mix;
use weir_runtime::operators::{FileSink, LineFormat};

use crate::engine::{config, PacedSource};
use crate::kafka_broker::KafkaBroker;
use crate::support::{check_keyed_sum, committed_lines};

pub(crate) const RECORDS: u64 = 20_000;
pub(crate) const KEYS: u64 = 50;
pub(crate) const PARTITIONS: i32 = 6;

/// Creates `topic` with `partitions` partitions.
pub(crate) fn create_topic(broker: &KafkaBroker, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

/// Writes record `i` as `key,i` for `i` in `0..records`, keys as the keyed-sum
/// oracle expects them, spread over the partitions by Kafka's own partitioner.
pub(crate) fn produce(broker: &KafkaBroker, topic: &str, records: u64) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in 0..records {
        let key = (mix(i) >> 1) % KEYS;
        let value = format!("{key},{i}");
        let key_bytes = key.to_string();
        loop {
            match producer.send(BaseRecord::to(topic).key(&key_bytes).payload(&value)) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(
                        format!("{e}").contains("Queue full"),
                        "producing failed: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// `key,value` text to a pair; anything else is a bad record.
pub(crate) fn pair(message: &KafkaMessage<'_>) -> weir_runtime::error::Result<(u64, u64)> {
    let bad = || Error::BadRecord {
        operator: "kafka source".into(),
        reason: "not `key,value`".into(),
    };
    let text = std::str::from_utf8(message.value.unwrap_or_default()).map_err(|_| bad())?;
    let (k, v) = text.split_once(',').ok_or_else(bad)?;
    Ok((k.parse().map_err(|_| bad())?, v.parse().map_err(|_| bad())?))
}

fn sum_line(r: &(u64, i64), out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{},{}", r.0, r.1).as_bytes());
}

/// The topic's records, summed per key at `parallelism`, into files in `out`.
fn keyed_sum(broker: &KafkaBroker, topic: &str, parallelism: u32, out: &Path) -> JobGraph {
    let mut job = JobBuilder::new("kafka-sum");
    job.parallelism(parallelism);
    let (kafka, topic, out) = (
        KafkaConfig::new(&broker.bootstrap()),
        topic.to_string(),
        out.to_path_buf(),
    );
    job.source("numbers", move |_| {
        PacedSource::new(
            KafkaSource::new(kafka.clone(), &[&topic], pair).bounded(),
            Duration::from_millis(2),
        )
    })
    .key_by(|r: &(u64, u64)| r.0)
    .sum("sums", |r: &(u64, u64)| r.1 as i64)
    .sink("out", move |_| {
        FileSink::new(out.clone(), sum_line as LineFormat<(u64, i64)>)
    });
    job.build().unwrap()
}

#[test]
fn keyed_sums_over_a_topic_are_exactly_once_through_failures() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", PARTITIONS);
    produce(&broker, "numbers", RECORDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cfg = config(&dir.path().join("chk"));
    cfg.inject_failures = 3;
    cfg.exec.batch_size = 16;
    let summary = LocalRunner::new(keyed_sum(&broker, "numbers", 2, &out), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.restarts, 3);
    check_keyed_sum(&committed_lines(&out), RECORDS, KEYS).unwrap();
    // The consumer group shows the whole topic read, for lag tools.
    let deadline = Instant::now() + Duration::from_secs(10);
    while group_offsets(&broker, "weir-numbers", "numbers") != RECORDS as i64 {
        assert!(
            Instant::now() < deadline,
            "the group's offsets add up to {}, not {RECORDS}",
            group_offsets(&broker, "weir-numbers", "numbers")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum over `topic`'s partitions of `group`'s committed offsets.
fn group_offsets(broker: &KafkaBroker, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        partitions.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// Runs `job` until two checkpoints completed, stops it with a savepoint and
/// returns the savepoint's directory.
pub(crate) fn stop_with_savepoint(job: JobGraph, cfg: RunConfig) -> String {
    let runner = LocalRunner::new(job, cfg).unwrap();
    let (handle, metrics) = (runner.handle(), runner.metrics());
    let running = std::thread::spawn(move || runner.run());
    while metrics.checkpoints_completed.load(Ordering::Relaxed) < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.trigger_savepoint(None, true, SavepointFormat::Native);
    let summary = running.join().unwrap().unwrap();
    let Ending::Stopped { savepoint } = summary.ending else {
        panic!("stopped with a savepoint: {:?}", summary.ending);
    };
    savepoint
}

#[test]
fn a_savepoint_at_two_restores_at_three_with_every_partition_where_it_was() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", PARTITIONS);
    produce(&broker, "numbers", RECORDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cfg = config(&dir.path().join("chk"));
    cfg.exec.batch_size = 16;
    let savepoint = stop_with_savepoint(keyed_sum(&broker, "numbers", 2, &out), cfg.clone());
    let partial = committed_lines(&out);
    assert!(
        !partial.is_empty() && check_keyed_sum(&partial, RECORDS, KEYS).is_err(),
        "the savepoint was taken mid-topic"
    );
    cfg.restore = RestoreFrom::Path(savepoint);
    LocalRunner::new(keyed_sum(&broker, "numbers", 3, &out), cfg)
        .unwrap()
        .run()
        .unwrap();
    check_keyed_sum(&committed_lines(&out), RECORDS, KEYS).unwrap();
}

#[test]
fn records_deleted_before_a_restore_fail_the_job_and_name_the_partition() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", 1);
    produce(&broker, "numbers", RECORDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cfg = config(&dir.path().join("chk"));
    cfg.exec.batch_size = 16;
    let savepoint = stop_with_savepoint(keyed_sum(&broker, "numbers", 1, &out), cfg.clone());
    // Retention (here, a deletion) takes every record, read or not.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    let mut everything = TopicPartitionList::new();
    everything
        .add_partition_offset("numbers", 0, Offset::End)
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(admin.delete_records(&everything, &AdminOptions::new()))
        .unwrap();
    cfg.restore = RestoreFrom::Path(savepoint);
    cfg.max_restarts = 1;
    let error = LocalRunner::new(keyed_sum(&broker, "numbers", 1, &out), cfg)
        .unwrap()
        .run()
        .expect_err("the unread records are gone")
        .to_string();
    assert!(error.contains("numbers"), "{error}");
}
