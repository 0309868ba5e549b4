//! The Kafka sink, exactly once by two-phase commit over Kafka transactions.
//!
//! Per subtask `s`, with exactly-once:
//! - the first record after a barrier opens a transaction on the id
//!   `{prefix}-{s}-{slot}`, `slot` the lowest of [`SLOTS`] ids no pending
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
use crate::kafka::record_batch::Writer;
use crate::kafka::recovery::{self, Committable};
use crate::kafka::security::Security;
use crate::kafka::txn::{self, Ended, Transaction};
use crate::kafka::wire::Dialer;
use crate::kafka::KafkaConfig;
use crate::operator::{Operator, OperatorContext};
use crate::state::{OperatorSnapshot, RestoredState};

/// Transactional ids per subtask: a transaction per checkpoint in flight
/// (pre-committed, not yet committed) and the one being written.
pub const SLOTS: u32 = 8;
/// Bytes a partition's batch holds before it is sent within a transaction.
const BATCH_BYTES: usize = 256 << 10;
/// The chaos suite's test hook: a process with `WEIR_CRASH_BEFORE_COMMIT=<n>` in
/// its environment aborts when checkpoint `n` or a later one completes, before
/// its Kafka sinks commit (a crash between a checkpoint's completion and the
/// commit). Never set it in production.
pub const CRASH_BEFORE_COMMIT: &str = "WEIR_CRASH_BEFORE_COMMIT";

/// Writes a record's key or value bytes into a buffer.
pub type Serializer<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// A record's Kafka timestamp, ms since the Unix epoch.
pub type Stamp<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

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
    partitioning: Partitioning,
    transaction_timeout: Duration,
    prefix: Option<String>,
    subtask: u32,
    producer: Option<Producer>,
    open: Option<(u32, Transaction)>,
    pending: Vec<Committable>,
    next_partition: i32,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
    /// [`CRASH_BEFORE_COMMIT`], read at open.
    crash_at: Option<u64>,
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
            partitioning: Partitioning::RoundRobin,
            transaction_timeout: Duration::from_secs(15 * 60),
            prefix: None,
            subtask: 0,
            producer: None,
            open: None,
            pending: Vec::new(),
            next_partition: 0,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
            crash_at: None,
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

    fn producer(&mut self) -> Result<&mut Producer> {
        self.producer
            .as_mut()
            .ok_or_else(|| Error::Internal("the Kafka sink used before open".into()))
    }

    fn prefix(&self) -> Result<&str> {
        self.prefix
            .as_deref()
            .ok_or_else(|| Error::Internal("the Kafka sink used before open".into()))
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

    /// Opens a transaction on the lowest free slot.
    fn begin(&mut self) -> Result<()> {
        let busy: Vec<u32> = self.pending.iter().map(|c| c.slot).collect();
        let Some(slot) = (0..SLOTS).find(|s| !busy.contains(s)) else {
            return Err(Error::Kafka(format!(
                "{SLOTS} transactions of the sink of topic {} wait for their checkpoints to \
                 complete; checkpoints are failing",
                self.topic
            )));
        };
        let id = format!("{}-{}-{slot}", self.prefix()?, self.subtask);
        let (timeout, topic) = (self.timeout_ms(), self.topic.clone());
        let producer = self.producer()?;
        let txn = txn::init_producer(producer.cluster(), &id, timeout)?;
        let partitions: Vec<i32> = (0..producer.partitions()).collect();
        txn::add_partitions(producer.cluster(), &txn, &topic, &partitions)?;
        let writer = Writer {
            producer_id: txn.producer_id,
            epoch: txn.epoch,
            transactional: true,
        };
        producer.start(writer, Some(&id))?;
        self.open = Some((slot, txn));
        Ok(())
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
        self.subtask = ctx.subtask.index;
        self.crash_at = std::env::var(CRASH_BEFORE_COMMIT)
            .ok()
            .and_then(|v| v.parse().ok());
        if self.prefix.is_none() {
            self.prefix = Some(format!("weir-{}-{}", ctx.job, ctx.uid.0));
        }
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
        self.producer = Some(producer);
        if self.guarantee == Guarantee::ExactlyOnce {
            let inherited = recovery::inherited(ctx, restored)?;
            let prefix = self.prefix()?.to_string();
            let timeout = self.timeout_ms();
            recovery::settle(
                self.producer()?.cluster(),
                &prefix,
                ctx,
                &inherited,
                timeout,
            )?;
        }
        Ok(())
    }

    fn process(&mut self, input: &mut Batch<T>, _output: &mut Batch<()>) -> Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        if self.guarantee == Guarantee::ExactlyOnce && self.open.is_none() {
            self.begin()?;
        }
        let now = now_ms();
        let Some(producer) = self.producer.as_mut() else {
            return Err(Error::Internal("the Kafka sink used before open".into()));
        };
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
            producer.push(partition, key, &self.value_buf, timestamp);
        }
        self.next_partition = (self.next_partition + 1) % partitions;
        match self.guarantee {
            Guarantee::ExactlyOnce => producer.send(BATCH_BYTES),
            Guarantee::AtLeastOnce | Guarantee::None => producer.send(0),
        }
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        match self.guarantee {
            Guarantee::ExactlyOnce => {
                if let Some((slot, txn)) = self.open.take() {
                    self.producer()?.flush()?;
                    self.pending.push(Committable {
                        checkpoint: barrier.id,
                        slot,
                        txn,
                    });
                }
                let state = bincode::serialize(&self.pending)
                    .map_err(|e| Error::Internal(format!("encoding Kafka transactions: {e}")))?;
                Ok(OperatorSnapshot {
                    operator_state: Some(state),
                    ..Default::default()
                })
            }
            Guarantee::AtLeastOnce => {
                self.producer()?.flush()?;
                Ok(OperatorSnapshot::default())
            }
            Guarantee::None => Ok(OperatorSnapshot::default()),
        }
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let (done, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|c| c.checkpoint <= id);
        self.pending = later;
        if done.is_empty() {
            return Ok(());
        }
        if self.crash_at.is_some_and(|n| id.0 >= n) {
            tracing::error!(
                checkpoint = id.0,
                "{CRASH_BEFORE_COMMIT} is set: aborting after the checkpoint completed, before the commit"
            );
            std::process::abort();
        }
        let topic = self.topic.clone();
        let producer = self.producer()?;
        // The open transaction's records may be in flight to the coordinator.
        producer.acknowledge()?;
        let cluster = producer.cluster();
        for c in done {
            if let Ended::Superseded(why) = txn::end(cluster, &c.txn, true)? {
                return Err(Error::Kafka(format!(
                    "transaction {} of checkpoint {} (topic {topic}) was ended by another \
                     producer of its id or by the broker's transaction timeout ({why}) before \
                     it could commit: its records are lost. Is another deployment of this job \
                     running?",
                    c.txn.transactional_id, c.checkpoint
                )));
            }
        }
        Ok(())
    }

    fn end_of_input(&mut self, _output: &mut Batch<()>) -> Result<()> {
        if self.guarantee != Guarantee::ExactlyOnce {
            self.producer()?.flush()?;
        }
        Ok(())
    }
}
