//! The Kafka sink against a real broker. Keyed sums over a topic go to another
//! topic, and a `read_committed` consumer reads back every record of it: each
//! key's sums step up by exactly its values, each once. It holds through
//! injected failures, through a crash between a checkpoint's completion and the
//! sink's commit, through a restore at a lower parallelism, and through a stop
//! with a savepoint and a restore at a higher one. Afterwards Kafka's own
//! `kafka-transactions list` shows no transaction of the job left open.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir_runtime::api::{JobBuilder, JobGraph};
use weir_runtime::data::{Barrier, Batch};
use weir_runtime::error::{Error, Result};
use weir_runtime::exec::runner::{LocalRunner, RestoreFrom, RunConfig};
use weir_runtime::ids::{CheckpointId, OperatorUid, Subtask};
use weir_runtime::kafka::{Guarantee, KafkaConfig, KafkaSink, KafkaSource};
use weir_runtime::keys::KeyGroupRange;
use weir_runtime::operator::{Operator, OperatorContext};
use weir_runtime::state::{OperatorSnapshot, RestoredState};

use crate::engine::{config, PacedSource};
use crate::kafka::{create_topic, pair, produce, stop_with_savepoint, KEYS, PARTITIONS, RECORDS};
use crate::kafka_broker::KafkaBroker;
use crate::support::{check_keyed_sum, check_keyed_sum_prefix};

pub(crate) const OUT_PARTITIONS: i32 = 4;
/// The transactional ids of the jobs below start with this.
pub(crate) const PREFIX: &str = "weir-kafka-sums-out-";

/// A fault between a checkpoint's completion and the sink's commit: subtask 0
/// fails, once in the test, when told that checkpoint `at` or a later one
/// completed, before its sink commits.
struct CrashBeforeCommit<S> {
    inner: S,
    at: u64,
    subtask: u32,
    crashed: Arc<AtomicBool>,
}

impl<S: Operator<Out = ()>> Operator for CrashBeforeCommit<S> {
    type In = S::In;
    type Out = ();
    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.subtask = ctx.subtask.index;
        self.inner.open(ctx, restored)
    }
    fn process(&mut self, input: &mut Batch<S::In>, output: &mut Batch<()>) -> Result<()> {
        self.inner.process(input, output)
    }
    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.inner.snapshot(barrier)
    }
    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        if self.subtask == 0 && id.0 >= self.at && !self.crashed.swap(true, Ordering::SeqCst) {
            return Err(Error::Kafka(format!(
                "injected crash after checkpoint {id} completed, before the commit"
            )));
        }
        self.inner.checkpoint_complete(id)
    }
    fn end_of_input(&mut self, output: &mut Batch<()>) -> Result<()> {
        self.inner.end_of_input(output)
    }
}

/// How the job below writes.
#[derive(Clone)]
pub(crate) struct Output {
    guarantee: Guarantee,
    transaction_timeout: Duration,
    /// Crash subtask 0 before its commit of this checkpoint (once).
    crash_at: Option<u64>,
    crashed: Arc<AtomicBool>,
}

impl Output {
    pub(crate) fn exactly_once() -> Self {
        Output {
            guarantee: Guarantee::ExactlyOnce,
            transaction_timeout: Duration::from_secs(60),
            crash_at: None,
            crashed: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Keyed sums of the records of topic `input` into topic `sums` as `key,sum`,
/// keyed by the key.
fn sums_to_topic(broker: &KafkaBroker, parallelism: u32, output: Output) -> JobGraph {
    sums_through(KafkaConfig::new(&broker.bootstrap()), parallelism, output)
}

/// [`sums_to_topic`] with the brokers and client settings of `kafka`.
pub(crate) fn sums_through(kafka: KafkaConfig, parallelism: u32, output: Output) -> JobGraph {
    let mut job = JobBuilder::new("kafka-sums");
    job.parallelism(parallelism);
    let source_kafka = kafka.clone();
    job.source("numbers", move |_| {
        PacedSource::new(
            KafkaSource::new(source_kafka.clone(), &["numbers"], pair).bounded(),
            Duration::from_millis(2),
        )
    })
    .key_by(|r: &(u64, u64)| r.0)
    .sum("sums", |r: &(u64, u64)| r.1 as i64)
    .sink("out", move |_| {
        let sink = KafkaSink::new(kafka.clone(), "sums", |r: &(u64, i64), out| {
            out.extend_from_slice(format!("{},{}", r.0, r.1).as_bytes())
        })
        .key(|r: &(u64, i64), out| out.extend_from_slice(r.0.to_string().as_bytes()))
        .guarantee(output.guarantee)
        .transaction_timeout(output.transaction_timeout);
        CrashBeforeCommit {
            inner: sink,
            at: output.crash_at.unwrap_or(u64::MAX),
            subtask: 0,
            crashed: output.crashed.clone(),
        }
    });
    job.build().unwrap()
}

/// A record read back from a topic.
pub(crate) struct ReadRecord {
    /// Its key's bytes (empty if it has none).
    pub key: Vec<u8>,
    /// Its value, as text.
    pub value: String,
    /// Its value's bytes.
    pub payload: Vec<u8>,
    /// Whether its value is null (a tombstone).
    pub tombstone: bool,
    /// Its Kafka timestamp, ms since the Unix epoch.
    pub timestamp: i64,
    /// Its partition.
    pub partition: i32,
}

/// Every record of `topic`, as a consumer at `isolation` reads them.
pub(crate) fn read_messages(broker: &KafkaBroker, topic: &str, isolation: &str) -> Vec<ReadRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for p in 0..OUT_PARTITIONS {
        partitions
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&partitions).unwrap();
    let (mut records, mut ended) = (Vec::new(), HashSet::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while ended.len() < OUT_PARTITIONS as usize {
        assert!(Instant::now() < deadline, "{topic} was not read to its end");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => records.push(ReadRecord {
                key: m.key().unwrap_or_default().to_vec(),
                value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                payload: m.payload().unwrap_or_default().to_vec(),
                tombstone: m.payload().is_none(),
                timestamp: m.timestamp().to_millis().unwrap_or(0),
                partition: m.partition(),
            }),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    records
}

/// The values and timestamps of every record of `topic`, as a consumer at
/// `isolation` reads them.
pub(crate) fn read_records(
    broker: &KafkaBroker,
    topic: &str,
    isolation: &str,
) -> Vec<(String, i64)> {
    read_messages(broker, topic, isolation)
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect()
}

/// The values of every record of `topic`, as a consumer at `isolation` reads them.
pub(crate) fn read_topic(broker: &KafkaBroker, topic: &str, isolation: &str) -> Vec<String> {
    read_records(broker, topic, isolation)
        .into_iter()
        .map(|(value, _)| value)
        .collect()
}

/// The transactions of ids starting with `prefix` the broker still lists as open.
pub(crate) fn open_transactions(broker: &KafkaBroker, prefix: &str) -> Vec<(String, String)> {
    broker
        .open_transactions()
        .into_iter()
        .filter(|(id, _)| id.starts_with(prefix))
        .collect()
}

/// Every committed record of topic `sums` is a step of the keyed sums, each
/// input record counted once, and no transaction of the jobs below is open.
pub(crate) fn assert_sums_exactly_once(broker: &KafkaBroker) {
    check_keyed_sum(&read_topic(broker, "sums", "read_committed"), RECORDS, KEYS).unwrap();
    assert_eq!(open_transactions(broker, PREFIX), []);
}

pub(crate) fn broker_with_numbers() -> KafkaBroker {
    with_numbers(KafkaBroker::start())
}

/// `broker` with topic `numbers` filled and an empty `sums`.
pub(crate) fn with_numbers(broker: KafkaBroker) -> KafkaBroker {
    create_topic(&broker, "numbers", PARTITIONS);
    create_topic(&broker, "sums", OUT_PARTITIONS);
    produce(&broker, "numbers", RECORDS);
    broker
}

pub(crate) fn run_config(dir: &std::path::Path) -> RunConfig {
    let mut cfg = config(&dir.join("chk"));
    cfg.exec.batch_size = 16;
    cfg
}

#[test]
fn keyed_sums_written_to_a_topic_are_exactly_once_through_failures() {
    let broker = broker_with_numbers();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path());
    cfg.inject_failures = 3;
    let summary = LocalRunner::new(sums_to_topic(&broker, 2, Output::exactly_once()), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.restarts, 3);
    assert_sums_exactly_once(&broker);
}

#[test]
fn a_crash_between_a_checkpoints_completion_and_its_commit_is_committed_by_the_restart() {
    let broker = broker_with_numbers();
    let dir = tempfile::tempdir().unwrap();
    let output = Output {
        crash_at: Some(3),
        ..Output::exactly_once()
    };
    let crashed = output.crashed.clone();
    let summary = LocalRunner::new(sums_to_topic(&broker, 2, output), run_config(dir.path()))
        .unwrap()
        .run()
        .unwrap();
    assert!(crashed.load(Ordering::SeqCst) && summary.restarts == 1);
    assert_sums_exactly_once(&broker);
}

#[test]
fn restored_at_a_lower_parallelism_the_transactions_of_every_old_subtask_are_settled() {
    let broker = broker_with_numbers();
    let dir = tempfile::tempdir().unwrap();
    // At parallelism 3 subtask 0 dies between checkpoint 3's completion and its
    // commit, and the job fails for good: the others have transactions open.
    let output = Output {
        crash_at: Some(3),
        ..Output::exactly_once()
    };
    let mut cfg = run_config(dir.path());
    cfg.max_restarts = 0;
    LocalRunner::new(sums_to_topic(&broker, 3, output), cfg.clone())
        .unwrap()
        .run()
        .expect_err("the crash fails the job");
    cfg.restore = RestoreFrom::Latest;
    cfg.max_restarts = 10;
    LocalRunner::new(sums_to_topic(&broker, 2, Output::exactly_once()), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_sums_exactly_once(&broker);
}

#[test]
fn at_least_once_output_loses_nothing_through_failures() {
    let broker = broker_with_numbers();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path());
    cfg.inject_failures = 2;
    let output = Output {
        guarantee: Guarantee::AtLeastOnce,
        ..Output::exactly_once()
    };
    LocalRunner::new(sums_to_topic(&broker, 2, output), cfg)
        .unwrap()
        .run()
        .unwrap();
    // Repeats are allowed; without them the sums must be complete.
    let mut lines = read_topic(&broker, "sums", "read_uncommitted");
    lines.sort();
    lines.dedup();
    check_keyed_sum(&lines, RECORDS, KEYS).unwrap();
}

#[test]
fn transaction_timeouts_that_cannot_work_are_refused_with_the_reason() {
    let broker = broker_with_numbers();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path());
    cfg.max_restarts = 0;
    cfg.checkpoint_interval = Some(Duration::from_secs(1));
    let short = Output {
        transaction_timeout: Duration::from_secs(1),
        ..Output::exactly_once()
    };
    let error = LocalRunner::new(sums_to_topic(&broker, 1, short), cfg.clone())
        .unwrap()
        .run()
        .expect_err("a timeout under two checkpoint intervals")
        .to_string();
    assert!(
        error.contains("at least twice the checkpoint interval"),
        "{error}"
    );
    // The broker's transaction.max.timeout.ms is 15 minutes by default.
    let long = Output {
        transaction_timeout: Duration::from_secs(3600),
        ..Output::exactly_once()
    };
    let error = LocalRunner::new(sums_to_topic(&broker, 1, long), cfg)
        .unwrap()
        .run()
        .expect_err("a timeout over the broker's limit")
        .to_string();
    assert!(error.contains("transaction.max.timeout.ms"), "{error}");
}

#[test]
fn a_stop_with_savepoint_commits_its_output_and_the_job_rescaled_from_it_finishes_once() {
    let broker = broker_with_numbers();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path());
    let savepoint = stop_with_savepoint(
        sums_to_topic(&broker, 2, Output::exactly_once()),
        cfg.clone(),
    );
    // Stopped: what it wrote up to the savepoint is committed, nothing is open.
    assert_eq!(open_transactions(&broker, PREFIX), []);
    let before = read_topic(&broker, "sums", "read_committed");
    assert!(!before.is_empty(), "the savepoint was taken mid-topic");
    check_keyed_sum_prefix(&before, RECORDS, KEYS).unwrap();
    cfg.restore = RestoreFrom::Path(savepoint);
    LocalRunner::new(sums_to_topic(&broker, 3, Output::exactly_once()), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_sums_exactly_once(&broker);
}

/// The sink driven by hand, as the runner would: a checkpoint completes while
/// the next transaction's records are still in flight to the broker. The sink
/// commits the finished transaction, keeps the open one, and every record is
/// committed once. (Committing used to fail on the unread produce replies and
/// restart the job.)
#[test]
fn a_checkpoint_completing_while_records_are_in_flight_commits_without_a_restart() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "lines", OUT_PARTITIONS);
    let ctx = sink_context("in-flight");
    let mut sink = KafkaSink::new(
        KafkaConfig::new(&broker.bootstrap()),
        "lines",
        |line: &String, out: &mut Vec<u8>| out.extend_from_slice(line.as_bytes()),
    );
    sink.open(&ctx, None).unwrap();
    let mut written = Vec::new();
    let mut write = |sink: &mut KafkaSink<String>, records: usize| {
        let mut batch: Vec<String> = (written.len()..written.len() + records)
            .map(|i| format!("{i:0>100}"))
            .collect();
        written.extend(batch.iter().cloned());
        sink.process(&mut batch, &mut Vec::new()).unwrap();
    };
    write(&mut sink, 10);
    sink.snapshot(&Barrier::checkpoint(CheckpointId(1), None))
        .unwrap();
    // Half a megabyte: more than the sink buffers, so it is sent at once.
    write(&mut sink, 5_000);
    sink.checkpoint_complete(CheckpointId(1)).unwrap();
    write(&mut sink, 10);
    sink.snapshot(&Barrier::checkpoint(CheckpointId(2), Some(CheckpointId(1))))
        .unwrap();
    sink.checkpoint_complete(CheckpointId(2)).unwrap();

    let mut committed = read_topic(&broker, "lines", "read_committed");
    committed.sort();
    assert_eq!(committed, written);
    assert_eq!(open_transactions(&broker, "weir-in-flight-"), []);
}

/// The context of a sink's only subtask in job `job`, opened by hand.
pub(crate) fn sink_context(job: &str) -> OperatorContext {
    OperatorContext {
        job: job.into(),
        uid: OperatorUid("sink".into()),
        name: "sink".into(),
        subtask: Subtask {
            index: 0,
            parallelism: 1,
        },
        max_parallelism: 128,
        key_groups: KeyGroupRange { start: 0, end: 128 },
        attempt: 1,
        state: Default::default(),
        checkpoint_interval: Some(Duration::from_secs(1)),
        metrics: Default::default(),
    }
}
