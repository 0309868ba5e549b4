//! The Kafka sink, exactly once by two-phase commit over Kafka transactions.
//!
//! Per subtask `s`, with exactly-once:
//! - the first record after a barrier opens a transaction on the id
//!   `{prefix}-{s}-{slot}`, `slot` the lowest of [`super::SLOTS`] ids no pending
//!   transaction holds. `InitProducerId` on it bumps the epoch (and aborts
//!   whatever a dead predecessor left open on that id), so each transaction
//!   has a producer id and epoch of its own;
//! - at the barrier of checkpoint `n` (pre-commit) every record is flushed and
//!   acknowledged, and the transaction (id, producer id, epoch) joins the
//!   pending list that the snapshot holds;
//! - when `n` completes (commit), every pending transaction up to `n` is
//!   committed with `EndTxn`;
//! - on restore from checkpoint `c`, the pending transactions in `c` are
//!   committed from their producer id and epoch, by whichever process restores
//!   (librdkafka cannot, so the sink speaks the protocol itself: [`super::txn`]).
//!   Committing one committed already is harmless. Then every transaction of
//!   the job still open on the brokers whose id belongs to this subtask (or, at
//!   another parallelism, to an old subtask `j` with `j % parallelism == s`) is
//!   aborted: it holds records after `c`, which the sources replay.
//!
//! The prefix is `weir-{job}-{operator uid}` unless set: two deployments of one
//! job fence each other's transactions, so only one may run at a time.
//! At-least-once flushes at each barrier; none only sends.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::data::{Barrier, Batch, Data};
use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::kafka::cluster::Cluster;
use crate::kafka::partitioner::{key_partition, Partitioning};
use crate::kafka::producer::Producer;
use crate::kafka::security::Security;
use crate::kafka::transactions::{Delivery, Transactions};
use crate::kafka::wire::Dialer;
use crate::kafka::KafkaConfig;
use crate::operator::{Operator, OperatorContext};
use crate::state::{OperatorSnapshot, RestoredState};

/// Writes a record's key or value bytes into a buffer.
pub type Serializer<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// A record's Kafka timestamp, ms since the Unix epoch.
pub type Stamp<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// Whether a record is a tombstone: written with a null value.
pub type Tombstone<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// What the sink promises about its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// Each record once, visible to `read_committed` readers when its
    /// checkpoint completes.
    ExactlyOnce,
    /// Each record at least once: flushed at every barrier.
    AtLeastOnce,
    /// Sent, never waited for.
    None,
}

/// Writes records to one Kafka topic; see the module docs.
pub struct KafkaSink<T> {
    config: KafkaConfig,
    topic: String,
    guarantee: Guarantee,
    value: Serializer<T>,
    key: Option<Serializer<T>>,
    timestamp: Option<Stamp<T>>,
    tombstone: Option<Tombstone<T>>,
    partitioning: Partitioning,
    transaction_timeout: Duration,
    prefix: Option<String>,
    output: Option<Delivery>,
    next_partition: i32,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl<T: Data> KafkaSink<T> {
    /// A sink writing each record's `value` bytes to `topic`, exactly once,
    /// round-robin over the partitions, with no key.
    pub fn new(
        config: KafkaConfig,
        topic: &str,
        value: impl Fn(&T, &mut Vec<u8>) + Send + Sync + 'static,
    ) -> Self {
        KafkaSink {
            config,
            topic: topic.to_string(),
            guarantee: Guarantee::ExactlyOnce,
            value: Arc::new(value),
            key: None,
            timestamp: None,
            tombstone: None,
            partitioning: Partitioning::RoundRobin,
            transaction_timeout: Duration::from_secs(15 * 60),
            prefix: None,
            output: None,
            next_partition: 0,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Gives records a key, written by `key`, and partitions by it.
    pub fn key(mut self, key: impl Fn(&T, &mut Vec<u8>) + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self.partitioning = Partitioning::ByKey;
        self
    }

    /// Stamps each record with `timestamp` (ms since the Unix epoch), say the
    /// timestamp of the input it comes from, instead of the time it is written.
    pub fn timestamp(mut self, timestamp: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        self.timestamp = Some(Arc::new(timestamp));
        self
    }

    /// Writes the records `tombstone` picks with a null value (a
    /// tombstone: the key's deletion, in a compacted topic) instead of theirs.
    pub fn tombstones(mut self, tombstone: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.tombstone = Some(Arc::new(tombstone));
        self
    }

    /// Spreads records over partitions this way.
    pub fn partitioning(mut self, partitioning: Partitioning) -> Self {
        self.partitioning = partitioning;
        self
    }

    /// Promises this instead of exactly once.
    pub fn guarantee(mut self, guarantee: Guarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// How long the brokers keep a transaction open before aborting it
    /// (default 15 minutes, the brokers' default limit).
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout;
        self
    }

    /// Starts transactional ids with `prefix` instead of `weir-{job}-{uid}`.
    pub fn transactional_id_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.to_string());
        self
    }

    fn timeout_ms(&self) -> i32 {
        self.transaction_timeout.as_millis().min(i32::MAX as u128) as i32
    }

    /// Refuses settings that cannot work, naming them; returns the client's
    /// security settings.
    fn check(&self, ctx: &OperatorContext) -> Result<Security> {
        let security = Security::from_properties(&self.config.properties)
            .map_err(|e| Error::Usage(format!("the Kafka sink of topic {}: {e}", self.topic)))?;
        if self.key.is_none() && self.partitioning == Partitioning::ByKey {
            return Err(Error::Usage(format!(
                "the Kafka sink of topic {} partitions by key but has no key format",
                self.topic
            )));
        }
        if self.guarantee != Guarantee::ExactlyOnce {
            return Ok(security);
        }
        match ctx.checkpoint_interval {
            None => Err(Error::Usage(format!(
                "the exactly-once Kafka sink of topic {} commits at checkpoints: give the job \
                 a checkpoint interval, or choose at-least-once",
                self.topic
            ))),
            Some(interval) if self.transaction_timeout < interval * 2 => {
                Err(Error::Usage(format!(
                    "the Kafka sink's transaction timeout ({}) must be at least twice the \
                 checkpoint interval ({}): a transaction stays open from one barrier until \
                 the next checkpoint completes, and the broker aborts it at the timeout",
                    humantime::format_duration(self.transaction_timeout),
                    humantime::format_duration(interval)
                )))
            }
            Some(_) => Ok(security),
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

impl<T: Data> Operator for KafkaSink<T> {
    type In = T;
    type Out = ();

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        let security = self.check(ctx)?;
        let prefix = self
            .prefix
            .get_or_insert_with(|| format!("weir-{}-{}", ctx.job, ctx.uid.0))
            .clone();
        let cluster = Cluster::new(&self.config.bootstrap_servers, Dialer::new(&security)?);
        let producer = Producer::new(cluster, &self.topic)?;
        if let Partitioning::Fixed(p) = self.partitioning {
            if !(0..producer.partitions()).contains(&p) {
                return Err(Error::Usage(format!(
                    "partition {p} of topic {} does not exist (it has {})",
                    self.topic,
                    producer.partitions()
                )));
            }
        }
        self.next_partition = (ctx.subtask.index as i32) % producer.partitions();
        self.output = Some(match self.guarantee {
            Guarantee::ExactlyOnce => Delivery::Transactional(Transactions::open(
                producer,
                &prefix,
                &format!("the sink of topic {}", self.topic),
                self.timeout_ms(),
                ctx,
                restored,
            )?),
            Guarantee::AtLeastOnce | Guarantee::None => Delivery::Plain {
                producer,
                flush_at_barriers: self.guarantee == Guarantee::AtLeastOnce,
            },
        });
        Ok(())
    }

    fn process(&mut self, input: &mut Batch<T>, _output: &mut Batch<()>) -> Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let Some(output) = self.output.as_mut() else {
            return Err(unopened());
        };
        let (producer, min_bytes) = output.writing()?;
        let partitions = producer.partitions();
        for record in input.drain(..) {
            self.value_buf.clear();
            (self.value)(&record, &mut self.value_buf);
            let key = match &self.key {
                Some(write) => {
                    self.key_buf.clear();
                    write(&record, &mut self.key_buf);
                    Some(&self.key_buf[..])
                }
                None => None,
            };
            let partition = match self.partitioning {
                Partitioning::ByKey => key_partition(key.unwrap_or_default(), partitions),
                Partitioning::RoundRobin => self.next_partition,
                Partitioning::Fixed(p) => p,
            };
            let timestamp = self.timestamp.as_ref().map_or(now, |stamp| stamp(&record));
            let value = match &self.tombstone {
                Some(tombstone) if tombstone(&record) => None,
                _ => Some(&self.value_buf[..]),
            };
            producer.push(partition, key, value, timestamp, &[]);
        }
        self.next_partition = (self.next_partition + 1) % partitions;
        producer.send(min_bytes)
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        let output = self.output.as_mut().ok_or_else(unopened)?;
        Ok(OperatorSnapshot {
            operator_state: output.precommit(barrier)?,
            ..Default::default()
        })
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.output.as_mut().ok_or_else(unopened)?.commit(id)
    }

    fn end_of_input(&mut self, _output: &mut Batch<()>) -> Result<()> {
        self.output.as_mut().ok_or_else(unopened)?.finish()
    }
}

fn unopened() -> Error {
    Error::Internal("the Kafka sink used before open".into())
}
