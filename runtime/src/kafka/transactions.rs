//! A subtask's exactly-once writes to Kafka: a transaction per checkpoint,
//! pre-committed at the barrier and committed when the checkpoint completes,
//! with the pending ones in the checkpoint so that a restore commits them.
//! The Kafka sink writes its output through it, the Kafka source its dead
//! letters; [`super::sink`] walks through the protocol.

use crate::data::Barrier;
use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::kafka::producer::Producer;
use crate::kafka::record_batch::Writer;
use crate::kafka::recovery::{self, Committable};
use crate::kafka::txn::{self, Ended, Transaction};
use crate::operator::OperatorContext;
use crate::state::RestoredState;

/// Transactional ids per subtask: a transaction per checkpoint in flight
/// (pre-committed, not yet committed) and the one being written.
pub const SLOTS: u32 = 8;

/// Bytes a partition's batch holds before it is sent within a transaction.
const TRANSACTION_BATCH_BYTES: usize = 256 << 10;

/// The chaos suite's test hook: a process with `WEIR_CRASH_BEFORE_COMMIT=<n>` in
/// its environment aborts when checkpoint `n` or a later one completes, before
/// its Kafka sinks commit (a crash between a checkpoint's completion and the
/// commit). Never set it in production.
pub const CRASH_BEFORE_COMMIT: &str = "WEIR_CRASH_BEFORE_COMMIT";

/// One subtask's transactions on the ids `{prefix}-{subtask}-{slot}`.
pub(crate) struct Transactions {
    producer: Producer,
    /// `{prefix}-{subtask}`, the ids' common start.
    ids: String,
    /// What the records are, for errors ("the sink of topic t").
    what: String,
    timeout_ms: i32,
    open: Option<(u32, Transaction)>,
    pending: Vec<Committable>,
    /// [`CRASH_BEFORE_COMMIT`], read at open.
    crash_at: Option<u64>,
}

impl Transactions {
    /// Takes over the subtask's transactions on ids starting with `prefix`:
    /// commits those the restored checkpoint pre-committed and aborts the
    /// others still open (see [`recovery::settle`]).
    pub fn open(
        mut producer: Producer,
        prefix: &str,
        what: &str,
        timeout_ms: i32,
        ctx: &OperatorContext,
        restored: Option<RestoredState>,
    ) -> Result<Self> {
        let inherited = recovery::inherited(ctx, restored)?;
        recovery::settle(producer.cluster(), prefix, ctx, &inherited, timeout_ms)?;
        let ids = format!("{prefix}-{}", ctx.subtask.index);
        // The broker refuses a timeout above its transaction.max.timeout.ms:
        // better now, with the reason, than at the first record.
        txn::init_producer(producer.cluster(), &format!("{ids}-0"), timeout_ms)?;
        Ok(Transactions {
            producer,
            ids,
            what: what.to_string(),
            timeout_ms,
            open: None,
            pending: Vec::new(),
            crash_at: std::env::var(CRASH_BEFORE_COMMIT)
                .ok()
                .and_then(|v| v.parse().ok()),
        })
    }

    /// The producer, within an open transaction (opened now if none is).
    pub fn writing(&mut self) -> Result<&mut Producer> {
        if self.open.is_none() {
            self.begin()?;
        }
        Ok(&mut self.producer)
    }

    /// Opens a transaction on the lowest free slot.
    fn begin(&mut self) -> Result<()> {
        let busy: Vec<u32> = self.pending.iter().map(|c| c.slot).collect();
        let Some(slot) = (0..SLOTS).find(|s| !busy.contains(s)) else {
            return Err(Error::Kafka(format!(
                "{SLOTS} transactions of {} wait for their checkpoints to complete; \
                 checkpoints are failing",
                self.what
            )));
        };
        let id = format!("{}-{slot}", self.ids);
        let txn = txn::init_producer(self.producer.cluster(), &id, self.timeout_ms)?;
        let partitions: Vec<i32> = (0..self.producer.partitions()).collect();
        let topic = self.producer.topic().to_string();
        txn::add_partitions(self.producer.cluster(), &txn, &topic, &partitions)?;
        let writer = Writer {
            producer_id: txn.producer_id,
            epoch: txn.epoch,
            transactional: true,
        };
        self.producer.start(writer, Some(&id))?;
        self.open = Some((slot, txn));
        Ok(())
    }

    /// Pre-commits at `barrier`: flushes the open transaction, if any, and
    /// returns the pending transactions, for the snapshot.
    pub fn precommit(&mut self, barrier: &Barrier) -> Result<Vec<u8>> {
        if let Some((slot, txn)) = self.open.take() {
            self.producer.flush()?;
            self.pending.push(Committable {
                checkpoint: barrier.id,
                slot,
                txn,
            });
        }
        bincode::serialize(&self.pending)
            .map_err(|e| Error::Internal(format!("encoding Kafka transactions: {e}")))
    }

    /// Commits every transaction pre-committed at checkpoint `id` or before.
    pub fn commit(&mut self, id: CheckpointId) -> Result<()> {
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
        // The open transaction's records may be in flight to the coordinator.
        self.producer.acknowledge()?;
        for c in done {
            if let Ended::Superseded(why) = txn::end(self.producer.cluster(), &c.txn, true)? {
                return Err(Error::Kafka(format!(
                    "transaction {} of checkpoint {} ({}) was ended by another producer of \
                     its id or by the broker's transaction timeout ({why}) before it could \
                     commit: its records are lost. Is another deployment of this job running?",
                    c.txn.transactional_id, c.checkpoint, self.what
                )));
            }
        }
        Ok(())
    }
}

/// Where a subtask's records go: in transactions, or straight to the partitions.
pub(crate) enum Delivery {
    /// Exactly once.
    Transactional(Transactions),
    /// Straight to the partitions; at least once if flushed at every barrier.
    Plain {
        /// The producer.
        producer: Producer,
        /// Whether a barrier waits until every record sent is acknowledged.
        flush_at_barriers: bool,
    },
}

impl Delivery {
    /// The producer to push records to, and the bytes a partition's batch
    /// holds before it is sent (transactions batch more: nobody reads their
    /// records before the commit).
    pub fn writing(&mut self) -> Result<(&mut Producer, usize)> {
        match self {
            Delivery::Transactional(txns) => Ok((txns.writing()?, TRANSACTION_BATCH_BYTES)),
            Delivery::Plain { producer, .. } => Ok((producer, 0)),
        }
    }

    /// At `barrier`: the pending transactions for the snapshot, or (plain)
    /// nothing, after a flush if it promises at least once.
    pub fn precommit(&mut self, barrier: &Barrier) -> Result<Option<Vec<u8>>> {
        match self {
            Delivery::Transactional(txns) => txns.precommit(barrier).map(Some),
            Delivery::Plain {
                producer,
                flush_at_barriers,
            } => {
                if *flush_at_barriers {
                    producer.flush()?;
                }
                Ok(None)
            }
        }
    }

    /// Checkpoint `id` completed: commits its transactions.
    pub fn commit(&mut self, id: CheckpointId) -> Result<()> {
        match self {
            Delivery::Transactional(txns) => txns.commit(id),
            Delivery::Plain { .. } => Ok(()),
        }
    }

    /// The input ended: flushes what goes straight to the partitions
    /// (transactions wait for the final checkpoint).
    pub fn finish(&mut self) -> Result<()> {
        match self {
            Delivery::Transactional(_) => Ok(()),
            Delivery::Plain { producer, .. } => producer.flush(),
        }
    }
}
