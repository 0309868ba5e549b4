//! What a Kafka source does with a record it cannot decode: fail the job, or
//! write the record as it came (key, value, timestamp) to a dead-letter topic
//! with headers saying where it came from and why it was refused. Either way
//! it is counted and logged with its topic, partition and offset; never
//! silently skipped.
//!
//! Dead letters are written exactly once when the job checkpoints (in
//! transactions committed with the checkpoint, as the Kafka sink's output),
//! and at least once otherwise (flushed at every barrier and at the end).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::data::Barrier;
use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::kafka::cluster::Cluster;
use crate::kafka::message::KafkaMessage;
use crate::kafka::producer::Producer;
use crate::kafka::security::Security;
use crate::kafka::transactions::{Delivery, Transactions};
use crate::kafka::wire::Dialer;
use crate::kafka::KafkaConfig;
use crate::metrics::OperatorMetrics;
use crate::operator::OperatorContext;
use crate::state::RestoredState;

/// Headers a dead letter carries: the reason, and where the record was read.
pub const ERROR_HEADER: &str = "weir.error";
/// The record's topic.
pub const TOPIC_HEADER: &str = "weir.topic";
/// The record's partition (decimal).
pub const PARTITION_HEADER: &str = "weir.partition";
/// The record's offset (decimal).
pub const OFFSET_HEADER: &str = "weir.offset";

/// Bad records logged one by one before only every [`LOG_EVERY`]th is.
const LOG_FIRST: u64 = 20;
/// After [`LOG_FIRST`], one bad record in this many is logged, with the count.
const LOG_EVERY: u64 = 1_000;

/// What a Kafka source does with a record its decoder refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRecords {
    /// Fail the job, naming the record (the default).
    Fail,
    /// Write it to this topic (of the same cluster) and go on.
    DeadLetter(String),
}

/// A source subtask's handling of bad records; see the module docs.
pub(crate) struct DeadLetters {
    source: String,
    metrics: Arc<OperatorMetrics>,
    output: Option<(String, Delivery)>,
    transaction_timeout_ms: i32,
}

impl DeadLetters {
    /// Sets up `policy` for the source subtask of `ctx`, committing the dead
    /// letters the restored checkpoint pre-committed.
    pub fn open(
        policy: &BadRecords,
        config: &KafkaConfig,
        transaction_timeout_ms: i32,
        ctx: &OperatorContext,
        restored: Option<RestoredState>,
    ) -> Result<Self> {
        let mut letters = DeadLetters {
            source: ctx.uid.0.clone(),
            metrics: ctx.metrics.clone(),
            output: None,
            transaction_timeout_ms,
        };
        let BadRecords::DeadLetter(topic) = policy else {
            return Ok(letters);
        };
        let security = Security::from_properties(&config.properties)
            .map_err(|e| Error::Usage(format!("the dead letters of source {}: {e}", ctx.uid.0)))?;
        let cluster = Cluster::new(&config.bootstrap_servers, Dialer::new(&security)?);
        let producer = Producer::new(cluster, topic)?;
        let delivery = match ctx.checkpoint_interval {
            Some(_) => Delivery::Transactional(Transactions::open(
                producer,
                &format!("weir-{}-{}-dead-letters", ctx.job, ctx.uid.0),
                &format!("the dead letters of source {} (topic {topic})", ctx.uid.0),
                letters.transaction_timeout_ms,
                ctx,
                restored,
            )?),
            None => Delivery::Plain {
                producer,
                flush_at_barriers: true,
            },
        };
        letters.output = Some((topic.clone(), delivery));
        Ok(letters)
    }

    /// Handles `message`, which the decoder refused with `error`: counts and
    /// logs it, then fails (returns the error, naming the record) or writes it
    /// to the dead-letter topic.
    pub fn refuse(&mut self, message: &KafkaMessage<'_>, error: Error) -> Result<()> {
        let reason = match error {
            Error::BadRecord { reason, .. } => reason,
            other => return Err(other),
        };
        let count = self.metrics.bad_records.fetch_add(1, Ordering::Relaxed) + 1;
        let place = format!(
            "{}/{} at offset {}",
            message.topic, message.partition, message.offset
        );
        let Some((topic, delivery)) = self.output.as_mut() else {
            return Err(Error::BadRecord {
                operator: self.source.clone(),
                reason: format!("{place}: {reason}"),
            });
        };
        if count <= LOG_FIRST || count.is_multiple_of(LOG_EVERY) {
            tracing::warn!(
                source = %self.source, record = %place, %reason, dead_letters = %topic,
                bad_records = count, "a record that cannot be decoded goes to the dead-letter topic"
            );
        }
        let (producer, min_bytes) = delivery.writing()?;
        let partition = message.partition.rem_euclid(producer.partitions());
        let (mut partition_text, mut offset_text) = (itoa::Buffer::new(), itoa::Buffer::new());
        let headers: [(&str, &[u8]); 4] = [
            (ERROR_HEADER, reason.as_bytes()),
            (TOPIC_HEADER, message.topic.as_bytes()),
            (
                PARTITION_HEADER,
                partition_text.format(message.partition).as_bytes(),
            ),
            (OFFSET_HEADER, offset_text.format(message.offset).as_bytes()),
        ];
        let timestamp = message.timestamp.unwrap_or_else(now_ms);
        producer.push(partition, message.key, message.value, timestamp, &headers);
        producer.send(min_bytes)
    }

    /// At `barrier`: the dead letters' pending transactions, for the source's
    /// snapshot (none without a dead-letter topic or checkpoints).
    pub fn precommit(&mut self, barrier: &Barrier) -> Result<Option<Vec<u8>>> {
        match self.output.as_mut() {
            Some((_, delivery)) => delivery.precommit(barrier),
            None => Ok(None),
        }
    }

    /// Checkpoint `id` completed: commits the dead letters written before it.
    pub fn commit(&mut self, id: CheckpointId) -> Result<()> {
        match self.output.as_mut() {
            Some((_, delivery)) => delivery.commit(id),
            None => Ok(()),
        }
    }

    /// The source finished: flushes dead letters written outside transactions.
    pub fn finish(&mut self) -> Result<()> {
        match self.output.as_mut() {
            Some((_, delivery)) => delivery.finish(),
            None => Ok(()),
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
