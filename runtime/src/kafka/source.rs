//! The Kafka source: each partition of its topics is a split in a key group
//! ([`partition_key_group`]); a subtask reads the partitions of its key-group
//! range, and every checkpoint holds each partition's next offset, so a restore
//! at any parallelism resumes every partition exactly where the checkpoint left
//! it. Reads are `read_committed`. When a checkpoint completes, its offsets are
//! committed to the consumer group (the `group.id` property, else
//! `weir-<operator uid>`) for lag tools; they play no part in recovery.
//!
//! A partition no checkpoint holds starts where [`StartFrom`] says; one found
//! while the job runs (partition discovery, every five minutes unless set
//! otherwise) starts at its earliest offset. A bounded source ([`StopAt`])
//! stops at offsets resolved when the job first reads a partition; those ends
//! are checkpointed too, so a restore stops at the same records. With a
//! watermark strategy the source makes event time per partition
//! ([`super::event_time`]). A record the decoder refuses fails the job or goes
//! to a dead-letter topic ([`BadRecords`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::TopicPartitionList;

use crate::data::{Barrier, Batch, Data, EventTime};
use crate::error::{Error, Result};
use crate::exec::watermarks::Progress;
use crate::ids::CheckpointId;
use crate::kafka::dead_letter::{BadRecords, DeadLetters};
use crate::kafka::event_time::{Pace, PartitionClocks};
use crate::kafka::fetch::{Fetch, Fetcher};
use crate::kafka::message::{Decode, KafkaMessage};
use crate::kafka::offsets::{StartFrom, StopAt};
use crate::kafka::partitions::Partitions;
use crate::kafka::subscription::Subscription;
use crate::kafka::{kafka_error, KafkaConfig};
use crate::operator::{OperatorContext, Source, SourceStatus};
use crate::operators::WatermarkStrategy;
use crate::state::{OperatorSnapshot, RestoredState};

mod discovery;

/// How often a source looks for new partitions unless told otherwise
/// (Flink's KafkaSource default).
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(300);
/// How often the partitions' lags are published.
const LAG_INTERVAL: Duration = Duration::from_secs(1);
/// How long a source with nothing to read waits before it asks again.
const IDLE_WAIT: Duration = Duration::from_millis(1);
/// How long dead letters' transactions may stay open (the brokers' default limit).
const DEAD_LETTER_TRANSACTION_TIMEOUT_MS: i32 = 15 * 60 * 1000;

/// Reads topics of a Kafka cluster; see the module docs.
pub struct KafkaSource<T> {
    config: KafkaConfig,
    subscription: Subscription,
    start: StartFrom,
    stop: StopAt,
    discovery: Option<Duration>,
    watermarks: Option<WatermarkStrategy<T>>,
    bad_records: BadRecords,
    decode: Decode<T>,
    ctx: Option<OperatorContext>,
    /// Reads the consumer's records; declared first so that it is dropped
    /// before the consumer.
    fetcher: Option<Fetcher>,
    consumer: Option<BaseConsumer>,
    partitions: Partitions,
    clocks: Option<PartitionClocks>,
    dead_letters: Option<DeadLetters>,
    /// The offsets each checkpoint in flight holds, to commit to the group
    /// when it completes.
    pending: Vec<(CheckpointId, TopicPartitionList)>,
    next_discovery: Instant,
    next_lag: Instant,
}

impl<T: Data> KafkaSource<T> {
    /// A source of `topics`, each record made by `decode`. It runs until
    /// cancelled, from the earliest offsets on a fresh start.
    pub fn new(
        config: KafkaConfig,
        topics: &[&str],
        decode: impl Fn(&KafkaMessage<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> Self {
        let topics = topics.iter().map(|t| t.to_string()).collect();
        Self::subscribed(config, Subscription::Topics(topics), decode)
    }

    /// A source of every topic whose name matches `pattern`, now or later.
    pub fn pattern(
        config: KafkaConfig,
        pattern: &str,
        decode: impl Fn(&KafkaMessage<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> Result<Self> {
        Ok(Self::subscribed(
            config,
            Subscription::pattern(pattern)?,
            decode,
        ))
    }

    fn subscribed(
        config: KafkaConfig,
        subscription: Subscription,
        decode: impl Fn(&KafkaMessage<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> Self {
        KafkaSource {
            config,
            subscription,
            start: StartFrom::Earliest,
            stop: StopAt::Never,
            discovery: Some(DISCOVERY_INTERVAL),
            watermarks: None,
            bad_records: BadRecords::Fail,
            decode: Arc::new(decode),
            ctx: None,
            fetcher: None,
            consumer: None,
            partitions: Partitions::default(),
            clocks: None,
            dead_letters: None,
            pending: Vec::new(),
            next_discovery: Instant::now(),
            next_lag: Instant::now(),
        }
    }

    /// Stops at the end offsets the partitions have when the job first reads
    /// them (a backfill, a test): `stop_at(StopAt::Latest)`.
    pub fn bounded(self) -> Self {
        self.stop_at(StopAt::Latest)
    }

    /// Where partitions no checkpoint holds start (default: earliest).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Where the source stops (default: never). A bounded source looks for no
    /// new partitions.
    pub fn stop_at(mut self, stop: StopAt) -> Self {
        self.stop = stop;
        if stop != StopAt::Never {
            self.discovery = None;
        }
        self
    }

    /// How often to look for new partitions (`None`: never).
    pub fn partition_discovery(mut self, every: Option<Duration>) -> Self {
        self.discovery = every;
        self
    }

    /// Makes event time per partition with `strategy`.
    pub fn watermarks(mut self, strategy: WatermarkStrategy<T>) -> Self {
        self.watermarks = Some(strategy);
        self
    }

    /// What to do with a record the decoder refuses (default: fail the job).
    pub fn bad_records(mut self, policy: BadRecords) -> Self {
        self.bad_records = policy;
        self
    }

    fn ctx(&self) -> Result<&OperatorContext> {
        self.ctx
            .as_ref()
            .ok_or_else(|| Error::Internal("the Kafka source used before open".into()))
    }

    fn bad_state(&self, reason: String) -> Error {
        Error::State {
            uid: self
                .ctx
                .as_ref()
                .map(|c| c.uid.0.clone())
                .unwrap_or_default(),
            reason,
        }
    }
}

impl<T: Data> Source for KafkaSource<T> {
    type Out = T;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.ctx = Some(ctx.clone());
        let consumer = self.config.consumer(&format!("weir-{}", ctx.uid.0))?;
        let mut restored = restored;
        let keyed = restored
            .as_mut()
            .map(|r| std::mem::take(&mut r.keyed))
            .unwrap_or_default();
        let mut inherited = Partitions::decode(keyed).map_err(|e| self.bad_state(e.to_string()))?;
        if let Some((_, stray)) = inherited
            .iter()
            .find(|(group, _)| !ctx.key_groups.contains(*group))
        {
            return Err(self.bad_state(format!(
                "restored partition {} lies outside this subtask's {:?}",
                stray.name(),
                ctx.key_groups
            )));
        }
        self.clocks = self
            .watermarks
            .as_ref()
            .map(|w| PartitionClocks::new(Pace::of(w), 0));
        self.adopt(&consumer, &mut inherited, self.start)?;
        if let Some((_, lost)) = inherited.first() {
            return Err(self.bad_state(format!(
                "the checkpoint reads partition {}, which the brokers no longer list",
                lost.name()
            )));
        }
        consumer
            .assign(&self.partitions.offsets()?)
            .map_err(|e| kafka_error("assigning partitions", e))?;
        self.fetcher = Some(Fetcher::new(&consumer)?);
        self.consumer = Some(consumer);
        self.dead_letters = Some(DeadLetters::open(
            &self.bad_records,
            &self.config,
            DEAD_LETTER_TRANSACTION_TIMEOUT_MS,
            ctx,
            restored,
        )?);
        let now = Instant::now();
        self.next_discovery = now + self.discovery.unwrap_or_default();
        self.next_lag = now;
        Ok(())
    }

    fn poll(&mut self, output: &mut Batch<T>, max: usize) -> Result<SourceStatus> {
        let now = Instant::now();
        self.discover(now)?;
        let metrics = self.ctx()?.metrics.clone();
        let (Some(consumer), Some(fetcher), Some(dead_letters)) = (
            self.consumer.as_ref(),
            self.fetcher.as_mut(),
            self.dead_letters.as_mut(),
        ) else {
            return Err(Error::Internal(
                "the Kafka source polled before open".into(),
            ));
        };
        if self.stop != StopAt::Never && self.partitions.all_ended() {
            dead_letters.finish()?;
            return Ok(SourceStatus::Finished);
        }
        let mut bytes = 0;
        let (partitions, decode, clocks, watermarks) = (
            &mut self.partitions,
            &self.decode,
            &mut self.clocks,
            &self.watermarks,
        );
        let fetched = fetcher.fetch(max, |message| {
            let Some(index) = partitions.find(message.topic, message.partition) else {
                return Ok(());
            };
            let Some(state) = partitions.state(index) else {
                return Ok(());
            };
            // Past a bounded read's end (records written since it began): not ours.
            if state.end.is_some_and(|end| message.offset >= end) {
                return Ok(());
            }
            bytes += message.key.map_or(0, <[u8]>::len) + message.value.map_or(0, <[u8]>::len);
            state.next = message.offset + 1;
            match decode(message) {
                Ok(record) => {
                    if let (Some(clocks), Some(strategy)) = (clocks.as_mut(), watermarks) {
                        // A record without event time (EventTime::MIN) moves no clock.
                        let time = strategy.event_time(&record);
                        if time != EventTime::MIN {
                            clocks.observe(index, time);
                        }
                    }
                    output.push(record);
                    Ok(())
                }
                Err(error) => dead_letters.refuse(message, error),
            }
        })?;
        if fetched == Fetch::OutOfRange {
            return Err(self.partitions.out_of_range(consumer));
        }
        metrics
            .bytes_read
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let ended = self.stop != StopAt::Never && self.partitions.all_ended();
        if now >= self.next_lag || ended {
            self.next_lag = now + LAG_INTERVAL;
            metrics.set_split_lags(self.partitions.lags(consumer));
        }
        if ended {
            return Ok(if output.is_empty() {
                dead_letters.finish()?;
                SourceStatus::Finished
            } else {
                SourceStatus::Ready
            });
        }
        if output.is_empty() {
            return Ok(SourceStatus::Idle(now + IDLE_WAIT));
        }
        Ok(SourceStatus::Ready)
    }

    fn progress_due(&mut self) -> Option<Progress> {
        let clocks = self.clocks.as_mut()?;
        for (index, state) in self.partitions.iter().enumerate() {
            if state.ended() {
                clocks.end(index);
            }
        }
        clocks.due(Instant::now())
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        if let Some(dead_letters) = &mut self.dead_letters {
            dead_letters.commit(id)?;
        }
        let Some(at) = self.pending.iter().rposition(|(c, _)| *c <= id) else {
            return Ok(());
        };
        let offsets = self.pending.swap_remove(at).1;
        self.pending.retain(|(c, _)| *c > id);
        if let Some(consumer) = &self.consumer {
            // For lag tools only: a commit that fails is logged, not retried.
            if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
                tracing::warn!(source = %self.ctx()?.uid.0, %error, "committing offsets to the consumer group");
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.pending.push((barrier.id, self.partitions.offsets()?));
        let operator_state = match &mut self.dead_letters {
            Some(dead_letters) => dead_letters.precommit(barrier)?,
            None => None,
        };
        Ok(OperatorSnapshot {
            keyed: self.partitions.snapshot()?,
            operator_state,
            ..Default::default()
        })
    }
}
