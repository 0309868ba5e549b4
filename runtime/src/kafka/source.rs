//! The Kafka source: each partition of its topics is a split in a key group
//! ([`partition_key_group`]); a subtask reads the partitions of its key-group
//! range, and every checkpoint holds each partition's next offset, so a restore
//! at any parallelism resumes every partition exactly where the checkpoint left
//! it. Reads are `read_committed`. When a checkpoint completes, its offsets are
//! committed to the consumer group (the `group.id` property, else
//! `weir-<operator uid>`) for lag tools; they play no part in recovery.
//!
//! A bounded source stops at the end offsets its partitions had when the job
//! first opened them; those ends are checkpointed too, so a restore stops at the
//! same records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::data::{Barrier, Batch, Data};
use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::kafka::{kafka_error, partition_key_group, KafkaConfig, REQUEST_TIMEOUT};
use crate::keys::KeyGroup;
use crate::operator::{OperatorContext, Source, SourceStatus};
use crate::state::{OperatorSnapshot, RestoredState};

/// A record as the broker handed it, borrowed for decoding.
#[derive(Debug, Clone, Copy)]
pub struct KafkaMessage<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp, ms since the Unix epoch, if it has one.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value (`None`: a tombstone).
    pub value: Option<&'a [u8]>,
}

/// Turns a broker's record into the job's record.
pub type Decode<T> = Arc<dyn Fn(&KafkaMessage<'_>) -> Result<T> + Send + Sync>;

/// Where one partition stands, as checkpointed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PartitionState {
    topic: String,
    partition: i32,
    /// The offset of the next record to read.
    next: i64,
    /// Where a bounded read stops (exclusive).
    end: Option<i64>,
}

/// Reads topics of a Kafka cluster; see the module docs.
pub struct KafkaSource<T> {
    config: KafkaConfig,
    topics: Vec<String>,
    bounded: bool,
    decode: Decode<T>,
    uid: String,
    consumer: Option<BaseConsumer>,
    partitions: Vec<(KeyGroup, PartitionState)>,
    /// The partition of the last record read.
    last: usize,
    /// The offsets each checkpoint in flight holds, to commit to the group
    /// when it completes.
    pending: Vec<(CheckpointId, TopicPartitionList)>,
}

impl<T: Data> KafkaSource<T> {
    /// A source of `topics`, each record made by `decode`. It runs until
    /// cancelled, from the earliest offsets on a fresh start.
    pub fn new(
        config: KafkaConfig,
        topics: &[&str],
        decode: impl Fn(&KafkaMessage<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> Self {
        KafkaSource {
            config,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            bounded: false,
            decode: Arc::new(decode),
            uid: String::new(),
            consumer: None,
            partitions: Vec::new(),
            last: 0,
            pending: Vec::new(),
        }
    }

    /// Stops at the end offsets the partitions have when the job first reads
    /// them (a backfill, a test).
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    fn bad_state(&self, reason: String) -> Error {
        Error::State {
            uid: self.uid.clone(),
            reason,
        }
    }

    /// The partitions of `topic` the brokers know.
    fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| kafka_error(&format!("listing the partitions of topic {topic}"), e))?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty());
        match found {
            Some(t) => Ok(t.partitions().iter().map(|p| p.id()).collect()),
            None => Err(kafka_error(
                &format!("topic {topic}"),
                "it does not exist or has no partitions",
            )),
        }
    }

    /// Whether every partition has reached its end (never, unbounded).
    fn finished(&self) -> bool {
        self.bounded
            && self
                .partitions
                .iter()
                .all(|(_, p)| p.end.is_some_and(|end| p.next >= end))
    }
}

impl<T: Data> Source for KafkaSource<T> {
    type Out = T;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.uid = ctx.uid.0.clone();
        let mut client = self.config.client();
        if client.get("group.id").is_none() {
            client.set("group.id", format!("weir-{}", ctx.uid.0));
        }
        // librdkafka pauses a partition's fetches for this long once its local
        // queue is full (1 s by default), which starves a fast reader between
        // pauses: resume after 10 ms unless the user chose otherwise.
        if client.get("fetch.queue.backoff.ms").is_none() {
            client.set("fetch.queue.backoff.ms", "10");
        }
        client
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            // An offset the broker no longer has (retention deleted it) is an
            // error, never a silent jump to the earliest or latest record.
            .set("auto.offset.reset", "error");
        let consumer: BaseConsumer = client
            .create()
            .map_err(|e| kafka_error("creating a consumer", e))?;
        let mut restored_partitions = Vec::new();
        for (group, bytes) in restored.map(|r| r.keyed).unwrap_or_default() {
            let states: Vec<PartitionState> = bincode::deserialize(&bytes)
                .map_err(|e| self.bad_state(format!("key group {}: {e}", group.0)))?;
            for state in states {
                if !ctx.key_groups.contains(group) {
                    return Err(self.bad_state(format!(
                        "restored partition {}/{} lies outside this subtask's {:?}",
                        state.topic, state.partition, ctx.key_groups
                    )));
                }
                restored_partitions.push((group, state));
            }
        }
        for topic in &self.topics {
            for partition in Self::partitions_of(&consumer, topic)? {
                let group = partition_key_group(topic, partition, ctx.max_parallelism);
                if !ctx.key_groups.contains(group) {
                    continue;
                }
                let known = restored_partitions
                    .iter()
                    .position(|(_, s)| s.topic == *topic && s.partition == partition);
                let state = match known {
                    Some(i) => restored_partitions.swap_remove(i).1,
                    None => {
                        let (low, high) = consumer
                            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                            .map_err(|e| {
                                kafka_error(&format!("the offsets of {topic}/{partition}"), e)
                            })?;
                        PartitionState {
                            topic: topic.clone(),
                            partition,
                            next: low,
                            end: self.bounded.then_some(high),
                        }
                    }
                };
                self.partitions.push((group, state));
            }
        }
        if let Some((_, lost)) = restored_partitions.first() {
            return Err(self.bad_state(format!(
                "the checkpoint reads partition {}/{}, which the brokers no longer list",
                lost.topic, lost.partition
            )));
        }
        let mut assignment = TopicPartitionList::new();
        for (_, p) in &self.partitions {
            assignment
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next))
                .map_err(|e| kafka_error("assigning partitions", e))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| kafka_error("assigning partitions", e))?;
        self.consumer = Some(consumer);
        Ok(())
    }

    fn poll(&mut self, output: &mut Batch<T>, max: usize) -> Result<SourceStatus> {
        if self.finished() {
            return Ok(SourceStatus::Finished);
        }
        let Some(consumer) = self.consumer.as_ref() else {
            return Err(Error::Internal(
                "the Kafka source polled before open".into(),
            ));
        };
        for _ in 0..max {
            let Some(received) = consumer.poll(Duration::ZERO) else {
                break;
            };
            let message = match received {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
                )) => return Err(out_of_range(consumer, &self.partitions)),
                Err(e) => return Err(kafka_error("reading records", e)),
            };
            // Records come in runs per partition: try the last one read first.
            let is_it = |p: &PartitionState| {
                p.partition == message.partition() && p.topic == message.topic()
            };
            if !self
                .partitions
                .get(self.last)
                .is_some_and(|(_, p)| is_it(p))
            {
                match self.partitions.iter().position(|(_, p)| is_it(p)) {
                    Some(i) => self.last = i,
                    None => continue,
                }
            }
            let state = &mut self.partitions[self.last].1;
            // Past a bounded read's end (records written since it began): not ours.
            if state.end.is_some_and(|end| message.offset() >= end) {
                continue;
            }
            let view = KafkaMessage {
                topic: message.topic(),
                partition: message.partition(),
                offset: message.offset(),
                timestamp: match message.timestamp() {
                    Timestamp::NotAvailable => None,
                    t => t.to_millis(),
                },
                key: message.key(),
                value: message.payload(),
            };
            output.push((self.decode)(&view)?);
            state.next = message.offset() + 1;
        }
        if self.finished() {
            return Ok(SourceStatus::Finished);
        }
        if output.is_empty() {
            return Ok(SourceStatus::Idle(Instant::now() + IDLE_WAIT));
        }
        Ok(SourceStatus::Ready)
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let Some(at) = self.pending.iter().rposition(|(c, _)| *c <= id) else {
            return Ok(());
        };
        let offsets = self.pending.swap_remove(at).1;
        self.pending.retain(|(c, _)| *c > id);
        if let Some(consumer) = &self.consumer {
            // For lag tools only: a commit that fails is logged, not retried.
            if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
                tracing::warn!(source = %self.uid, %error, "committing offsets to the consumer group");
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        let mut offsets = TopicPartitionList::new();
        for (_, p) in &self.partitions {
            offsets
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next))
                .map_err(|e| kafka_error("listing offsets to commit", e))?;
        }
        self.pending.push((barrier.id, offsets));
        let mut keyed: Vec<(KeyGroup, Vec<PartitionState>)> = Vec::new();
        let mut sorted: Vec<&(KeyGroup, PartitionState)> = self.partitions.iter().collect();
        sorted.sort_by_key(|(g, p)| (g.0, p.topic.clone(), p.partition));
        for (group, state) in sorted {
            match keyed.last_mut() {
                Some((g, states)) if g == group => states.push(state.clone()),
                _ => keyed.push((*group, vec![state.clone()])),
            }
        }
        let keyed = keyed
            .into_iter()
            .map(|(group, states)| {
                bincode::serialize(&states)
                    .map(|bytes| (group, bytes))
                    .map_err(|e| self.bad_state(format!("encoding offsets: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(OperatorSnapshot {
            keyed,
            ..Default::default()
        })
    }
}

/// The error for a position the brokers no longer hold, naming the partitions
/// whose next offset lies below what the broker keeps.
fn out_of_range(consumer: &BaseConsumer, partitions: &[(KeyGroup, PartitionState)]) -> Error {
    let mut lost = Vec::new();
    for (_, p) in partitions {
        if let Ok((low, _)) = consumer.fetch_watermarks(&p.topic, p.partition, REQUEST_TIMEOUT) {
            if p.next < low {
                lost.push(format!(
                    "{}/{} resumes at offset {} but the broker keeps offsets from {low}",
                    p.topic, p.partition, p.next
                ));
            }
        }
    }
    let which = if lost.is_empty() {
        "a partition's next offset is out of range".to_string()
    } else {
        lost.join("; ")
    };
    kafka_error(
        "records the job has not read are gone (retention deleted them?)",
        which,
    )
}

/// How long a source with nothing to read waits before it asks again.
const IDLE_WAIT: Duration = Duration::from_millis(1);
