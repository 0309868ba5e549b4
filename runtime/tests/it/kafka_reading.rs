//! How the Kafka source reads, against a real broker: from and to a time,
//! from the consumer group's offsets, new partitions and topics found while it
//! runs, event time per partition with idleness, and records it cannot decode
//! sent to a dead-letter topic, each once, through failures.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir_runtime::api::{JobBuilder, JobGraph};
use weir_runtime::data::{SavepointFormat, Watermark};
use weir_runtime::exec::runner::LocalRunner;
use weir_runtime::kafka::{
    BadRecords, KafkaConfig, KafkaMessage, KafkaSource, NoCommit, StartFrom, StopAt, ERROR_HEADER,
    OFFSET_HEADER, PARTITION_HEADER, TOPIC_HEADER,
};
use weir_runtime::operators::{FileSink, LineFormat, WatermarkStrategy};

use crate::engine::{config, PacedSource};
use crate::event_time::{Probe, Seen};
use crate::kafka::{create_topic, pair, produce, KEYS, RECORDS};
use crate::kafka_broker::KafkaBroker;
use crate::support::{check_keyed_sum, committed_lines};

/// Event times of the stamped topics start here (ms since the Unix epoch).
const BASE: i64 = 1_700_000_000_000;

/// Writes `(partition, value, timestamp)` records to `topic`.
fn produce_stamped(broker: &KafkaBroker, topic: &str, records: &[(i32, String, i64)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (partition, value, timestamp) in records {
        let record = BaseRecord::<(), _>::to(topic)
            .partition(*partition)
            .payload(value)
            .timestamp(*timestamp);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// A record as where it was: `topic/partition/offset`.
fn place(message: &KafkaMessage<'_>) -> weir_runtime::Result<String> {
    Ok(format!(
        "{}/{}/{}",
        message.topic, message.partition, message.offset
    ))
}

fn text_line(line: &String, out: &mut Vec<u8>) {
    out.extend_from_slice(line.as_bytes());
}

/// What the sources `source` makes read, written to files in `out`.
fn places(
    source: impl Fn() -> KafkaSource<String> + Send + Sync + 'static,
    out: &Path,
) -> JobGraph {
    let job = JobBuilder::new("places");
    let out = out.to_path_buf();
    job.source("records", move |_| {
        PacedSource::new(source(), Duration::from_millis(1))
    })
    .sink("out", move |_| {
        FileSink::new(out.clone(), text_line as LineFormat<String>)
    });
    job.build().unwrap()
}

#[test]
fn a_run_between_two_times_reads_exactly_the_records_stamped_between_them() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "stamped", 3);
    let records: Vec<(i32, String, i64)> = (0..3_000)
        .map(|i| ((i % 3) as i32, i.to_string(), BASE + i))
        .collect();
    produce_stamped(&broker, "stamped", &records);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let kafka = KafkaConfig::new(&broker.bootstrap());
    let source = move || {
        KafkaSource::new(kafka.clone(), &["stamped"], |m: &KafkaMessage<'_>| {
            Ok(String::from_utf8_lossy(m.value.unwrap_or_default()).into())
        })
        .start_from(StartFrom::Timestamp(BASE + 1_000))
        .stop_at(StopAt::Timestamp(BASE + 2_000))
    };
    let mut cfg = config(&dir.path().join("chk"));
    cfg.inject_failures = 2;
    cfg.exec.batch_size = 16;
    let runner = LocalRunner::new(places(source, &out), cfg).unwrap();
    let metrics = runner.metrics();
    let summary = runner.run().unwrap();
    assert_eq!(summary.restarts, 2);
    let mut read: Vec<i64> = committed_lines(&out)
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    read.sort_unstable();
    assert_eq!(
        read,
        (1_000..2_000).collect::<Vec<i64>>(),
        "each once, no other"
    );
    let source = metrics
        .operators()
        .into_iter()
        .find(|o| o.is_source)
        .unwrap();
    assert!(source.metrics.bytes_read.load(Ordering::Relaxed) >= 4_000);
    let lags: BTreeSet<String> = source
        .metrics
        .split_lags()
        .into_iter()
        .map(|(name, lag)| {
            assert!(lag > 0, "{name} stopped before its end");
            name
        })
        .collect();
    assert_eq!(
        lags,
        ["stamped/0", "stamped/1", "stamped/2"]
            .map(String::from)
            .into()
    );
}

/// Commits `offsets` (partition, offset) of `topic` for consumer group `group`.
fn commit_group(broker: &KafkaBroker, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .unwrap();
    }
    consumer.commit(&list, CommitMode::Sync).unwrap();
}

/// Bounded sources of `numbers`' record places for consumer group `group`,
/// starting as `start` says.
fn from_group(
    broker: &KafkaBroker,
    group: &str,
    start: StartFrom,
) -> impl Fn() -> KafkaSource<String> + Send + Sync + 'static {
    let config = KafkaConfig::new(&broker.bootstrap()).property("group.id", group);
    move || {
        KafkaSource::new(config.clone(), &["numbers"], place)
            .start_from(start)
            .bounded()
    }
}

#[test]
fn a_start_from_the_group_resumes_at_its_commits_and_without_them_fails_or_falls_back() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", 2);
    produce(&broker, "numbers", 1_000);
    let ends = high_watermarks(&broker, "numbers", 2);
    commit_group(&broker, "migrated", "numbers", &[(0, 100), (1, 200)]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cfg = config(&dir.path().join("chk"));
    let source = from_group(&broker, "migrated", StartFrom::Committed(NoCommit::Fail));
    LocalRunner::new(places(source, &out), cfg.clone())
        .unwrap()
        .run()
        .unwrap();
    let read: BTreeSet<String> = committed_lines(&out).into_iter().collect();
    let expected: BTreeSet<String> = (100..ends[0])
        .map(|o| format!("numbers/0/{o}"))
        .chain((200..ends[1]).map(|o| format!("numbers/1/{o}")))
        .collect();
    assert_eq!(read.len(), expected.len());
    assert_eq!(read, expected);

    let fresh = from_group(&broker, "new-group", StartFrom::Committed(NoCommit::Fail));
    let error = LocalRunner::new(places(fresh, &dir.path().join("none")), cfg.clone())
        .unwrap()
        .run()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no committed offset for numbers/"),
        "{error}"
    );
    let latest = from_group(&broker, "new-group", StartFrom::Committed(NoCommit::Latest));
    let out = dir.path().join("latest");
    LocalRunner::new(places(latest, &out), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(
        committed_lines(&out),
        Vec::<String>::new(),
        "nothing after the end"
    );
}

/// Each partition's end offset.
fn high_watermarks(broker: &KafkaBroker, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

#[test]
fn partitions_and_topics_that_appear_while_the_job_runs_are_read_from_their_start() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "grow-a", 1);
    let numbered = |p: i32, n: i64| -> Vec<(i32, String, i64)> {
        (0..n).map(|i| (p, i.to_string(), BASE + i)).collect()
    };
    produce_stamped(&broker, "grow-a", &numbered(0, 100));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let kafka = KafkaConfig::new(&broker.bootstrap());
    let source = move || {
        KafkaSource::pattern(kafka.clone(), "grow-.*", place)
            .unwrap()
            .partition_discovery(Some(Duration::from_millis(200)))
    };
    let runner = LocalRunner::new(places(source, &out), config(&dir.path().join("chk"))).unwrap();
    let handle = runner.handle();
    let running = std::thread::spawn(move || runner.run());
    wait_for_lines(&out, 100);
    create_topic(&broker, "grow-b", 2);
    produce_stamped(&broker, "grow-b", &numbered(0, 30));
    produce_stamped(&broker, "grow-b", &numbered(1, 20));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    let grown = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(admin.create_partitions(&[NewPartitions::new("grow-a", 2)], &AdminOptions::new()))
        .unwrap();
    grown.into_iter().for_each(|r| {
        r.unwrap();
    });
    produce_stamped(&broker, "grow-a", &numbered(1, 40));
    wait_for_lines(&out, 190);
    handle.trigger_savepoint(None, true, SavepointFormat::Native);
    running.join().unwrap().unwrap();
    let read = committed_lines(&out);
    let expected: BTreeSet<String> = (0..100)
        .map(|o| format!("grow-a/0/{o}"))
        .chain((0..40).map(|o| format!("grow-a/1/{o}")))
        .chain((0..30).map(|o| format!("grow-b/0/{o}")))
        .chain((0..20).map(|o| format!("grow-b/1/{o}")))
        .collect();
    assert_eq!(read.len(), expected.len(), "each record once");
    assert_eq!(read.into_iter().collect::<BTreeSet<_>>(), expected);
}

/// Waits until `out` holds at least `n` committed lines.
fn wait_for_lines(out: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.is_dir() || committed_lines(out).len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} lines after a minute",
            if out.is_dir() {
                committed_lines(out).len()
            } else {
                0
            }
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Event times (the records' values, ms) of `topic`, read with watermarks
/// per partition (idle after `idle_after`) by `parallelism` subtasks, into
/// one probe.
fn probed(
    broker: &KafkaBroker,
    topic: &str,
    parallelism: u32,
    idle_after: Option<Duration>,
) -> (JobGraph, Arc<Mutex<Seen>>) {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let mut job = JobBuilder::new("probed");
    job.parallelism(parallelism);
    let (config, topic, probe) = (
        KafkaConfig::new(&broker.bootstrap()),
        topic.to_string(),
        seen.clone(),
    );
    job.source("times", move |_| {
        let mut strategy =
            WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |t: &u64| *t as i64)
                .with_interval(Duration::ZERO);
        if let Some(after) = idle_after {
            strategy = strategy.with_idleness(after);
        }
        KafkaSource::new(config.clone(), &[&topic], |m: &KafkaMessage<'_>| {
            Ok(std::str::from_utf8(m.value.unwrap_or_default())
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0))
        })
        .watermarks(strategy)
    })
    .rebalance()
    .sink("probe", move |_| Probe {
        seen: probe.clone(),
        current: Watermark::MIN,
    })
    .parallelism(1);
    (job.build().unwrap(), seen)
}

/// Runs `job` in the background until `done` holds for what its probe saw
/// (failing after 30 s), doing `meanwhile` once `ready` holds; then cancels it.
fn run_until(
    job: JobGraph,
    dir: &Path,
    seen: &Arc<Mutex<Seen>>,
    ready: impl Fn(&Seen) -> bool,
    meanwhile: impl FnOnce(),
    done: impl Fn(&Seen) -> bool,
) {
    let runner = LocalRunner::new(job, config(&dir.join("chk"))).unwrap();
    let handle = runner.handle();
    let running = std::thread::spawn(move || runner.run());
    let wait = |what: &dyn Fn(&Seen) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !what(&seen.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "waited 30 s: {:?}",
                seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(&ready);
    meanwhile();
    wait(&done);
    handle.cancel();
    let _ = running.join().unwrap();
}

/// `(partition, event time, Kafka timestamp)` records for each time of `times`.
fn timed(partition: i32, times: std::ops::Range<u64>) -> Vec<(i32, String, i64)> {
    times.map(|t| (partition, t.to_string(), BASE)).collect()
}

/// The newest watermark a probe saw.
fn newest(seen: &Seen) -> Option<Watermark> {
    seen.watermarks.last().map(|(_, w)| *w)
}

#[test]
fn a_partition_read_behind_another_makes_none_of_its_records_late() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "times", 2);
    produce_stamped(&broker, "times", &timed(0, 0..5_000));
    produce_stamped(&broker, "times", &timed(1, 0..10));
    let dir = tempfile::tempdir().unwrap();
    let (job, seen) = probed(&broker, "times", 1, None);
    // Partition 1 goes on once the job has read what there was and event
    // time has had half a second to move on (as it would, were it per subtask).
    let catch_up = || {
        std::thread::sleep(Duration::from_millis(500));
        produce_stamped(&broker, "times", &timed(1, 10..5_000));
    };
    run_until(
        job,
        dir.path(),
        &seen,
        |s| s.records >= 5_010,
        catch_up,
        |s| s.records >= 10_000 && newest(s) >= Some(Watermark(4_998)),
    );
    let seen = seen.lock().unwrap();
    assert!(
        seen.late.is_empty(),
        "{} records behind the watermark, say {:?}",
        seen.late.len(),
        &seen.late[..seen.late.len().min(5)]
    );
}

#[test]
fn a_partition_without_records_turns_idle_and_holds_no_one_back() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "half-quiet", 2);
    produce_stamped(&broker, "half-quiet", &timed(0, 0..1_000));
    let dir = tempfile::tempdir().unwrap();
    let (job, seen) = probed(&broker, "half-quiet", 2, Some(Duration::from_millis(300)));
    run_until(
        job,
        dir.path(),
        &seen,
        |s| s.records >= 1_000,
        || {},
        |s| newest(s) >= Some(Watermark(998)),
    );
    let seen = seen.lock().unwrap();
    assert_eq!(
        newest(&seen),
        Some(Watermark(998)),
        "never past the last record"
    );
    assert!(seen.late.is_empty());
}

#[test]
fn records_that_cannot_be_decoded_go_to_the_dead_letter_topic_once_each() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", 3);
    create_topic(&broker, "dead", 1);
    // Bad records first, so that the restarts read them again.
    let garbage: Vec<(i32, String, i64)> = (0..30)
        .map(|i| (i % 3, format!("garbage-{i}"), BASE + i64::from(i)))
        .collect();
    produce_stamped(&broker, "numbers", &garbage);
    produce(&broker, "numbers", RECORDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut job = JobBuilder::new("dead-letters");
    job.parallelism(2);
    let (kafka, sums) = (KafkaConfig::new(&broker.bootstrap()), out.clone());
    job.source("numbers", move |_| {
        PacedSource::new(
            KafkaSource::new(kafka.clone(), &["numbers"], pair)
                .bounded()
                .bad_records(BadRecords::DeadLetter("dead".into())),
            Duration::from_millis(2),
        )
    })
    .key_by(|r: &(u64, u64)| r.0)
    .sum("sums", |r: &(u64, u64)| r.1 as i64)
    .sink("out", move |_| {
        FileSink::new(sums.clone(), |r: &(u64, i64), out: &mut Vec<u8>| {
            out.extend_from_slice(format!("{},{}", r.0, r.1).as_bytes())
        })
    });
    let mut cfg = config(&dir.path().join("chk"));
    cfg.inject_failures = 3;
    cfg.exec.batch_size = 16;
    let summary = LocalRunner::new(job.build().unwrap(), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.restarts, 3);
    check_keyed_sum(&committed_lines(&out), RECORDS, KEYS).unwrap();

    let letters = dead_letters(&broker);
    let values: BTreeSet<String> = letters.iter().map(|l| l.0.clone()).collect();
    assert_eq!(letters.len(), 30, "each once: {letters:?}");
    assert_eq!(values, garbage.iter().map(|g| g.1.clone()).collect());
    for (value, topic, partition, offset, error) in &letters {
        assert!(error.contains("not `key,value`"), "{error}");
        assert_eq!(topic, "numbers");
        let i: i32 = value.trim_start_matches("garbage-").parse().unwrap();
        assert_eq!(*partition, i % 3, "{value} came from its partition");
        assert!(*offset >= 0);
    }
    let offsets: BTreeSet<(i32, i64)> = letters.iter().map(|l| (l.2, l.3)).collect();
    assert_eq!(offsets.len(), 30, "each names its own offset");
}

/// A dead letter: its value and its headers' topic, partition, offset and error.
type Letter = (String, String, i32, i64, String);

/// The committed records of topic `dead`.
fn dead_letters(broker: &KafkaBroker) -> Vec<Letter> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "dead-reader")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("dead", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "topic dead was not read to its end"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let header = |name: &str| -> String {
                    let headers = m.headers().expect("dead letters carry headers");
                    let found = headers
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .unwrap_or_default();
                    String::from_utf8(found.to_vec()).unwrap()
                };
                letters.push((
                    String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
                    header(TOPIC_HEADER),
                    header(PARTITION_HEADER).parse().unwrap(),
                    header(OFFSET_HEADER).parse().unwrap(),
                    header(ERROR_HEADER),
                ));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("reading dead letters: {e}"),
            None => {}
        }
    }
    letters
}
