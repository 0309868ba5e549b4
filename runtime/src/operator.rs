//! The operator and source traits: the hooks the task runner calls, and what it guarantees then.
//!
//! Operators see whole batches, never single records, and never see barriers:
//! the runner aligns barriers across input channels and then calls
//! [`Operator::snapshot`] at a point where every record before the barrier has
//! been processed and none after it has been delivered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::data::{Barrier, Batch, Data, Watermark};
use crate::error::Result;
use crate::exec::watermarks::Progress;
use crate::ids::{CheckpointId, OperatorUid, Subtask};
use crate::keys::KeyGroupRange;
use crate::metrics::OperatorMetrics;
use crate::state::{OperatorSnapshot, RestoredState, StateConfig};

/// Where an operator subtask runs: its identity and the key groups it owns.
#[derive(Debug, Clone)]
pub struct OperatorContext {
    /// The job's name.
    pub job: String,
    /// The operator's stable uid.
    pub uid: OperatorUid,
    /// Its display name.
    pub name: String,
    /// Which parallel instance this is.
    pub subtask: Subtask,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// Key groups this subtask owns (all of them for non-keyed operators at parallelism 1).
    pub key_groups: KeyGroupRange,
    /// The deployment attempt: unique per deployment, also across coordinator
    /// restarts, so files an attempt writes never collide with another's.
    pub attempt: u64,
    /// The job's state backend, for operators with keyed state.
    pub state: StateConfig,
    /// Time between the job's checkpoints (`None`: only a final one), for
    /// operators whose settings must fit it (a transaction timeout).
    pub checkpoint_interval: Option<Duration>,
    /// The subtask's counters, for operators that report more than records in
    /// and out (a source's bytes read and split lags).
    pub metrics: Arc<OperatorMetrics>,
}

/// A transformation from batches of `In` to batches of `Out`, possibly with state.
///
/// Every hook but [`Operator::process`] has a no-op default. Within one subtask
/// the runner calls the hooks from one thread, one at a time.
pub trait Operator: Send + 'static {
    /// Record type consumed.
    type In: Data;
    /// Record type produced.
    type Out: Data;

    /// Called once before any other hook, with the state this subtask owns in the
    /// checkpoint being restored (`None` on a fresh start): the key groups of its
    /// range, and its non-keyed state (or, at another parallelism than the
    /// checkpoint's, every old subtask's in [`RestoredState::union`]).
    fn open(&mut self, _ctx: &OperatorContext, _restored: Option<RestoredState>) -> Result<()> {
        Ok(())
    }

    /// Processes one batch. The operator must take every record out of `input`
    /// (leaving it empty) and append what it emits to `output`.
    fn process(&mut self, input: &mut Batch<Self::In>, output: &mut Batch<Self::Out>)
        -> Result<()>;

    /// Snapshots the state for the checkpoint or savepoint of `barrier`. The runner
    /// guarantees that all records before the barrier have been processed and none
    /// after it. A savepoint's snapshot is in the format its barrier's kind names
    /// (RocksDB files, or canonical key-group blobs).
    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        Ok(OperatorSnapshot::default())
    }

    /// Called when checkpoint `id` is complete (its `_metadata` is written).
    /// Exactly-once sinks commit what they pre-committed at `id` and before.
    fn checkpoint_complete(&mut self, _id: CheckpointId) -> Result<()> {
        Ok(())
    }

    /// The next instant at which [`Operator::on_time`] should be called, if any.
    fn next_wakeup(&self) -> Option<Instant> {
        None
    }

    /// Called when the processing time has reached [`Operator::next_wakeup`].
    fn on_time(&mut self, _now: Instant, _output: &mut Batch<Self::Out>) -> Result<()> {
        Ok(())
    }

    /// Called once when every input has ended; emit what is still buffered.
    /// A snapshot for the job's final checkpoint may follow. The last watermark,
    /// [`Watermark::MAX`], comes before it.
    fn end_of_input(&mut self, _output: &mut Batch<Self::Out>) -> Result<()> {
        Ok(())
    }

    /// Whether the watermarks that reach this operator pass on downstream after
    /// [`Operator::on_watermark`]. An operator that generates watermarks itself
    /// (see [`Operator::progress_due`]) sets it false: then only the final
    /// [`Watermark::MAX`] of upstream passes.
    const FORWARDS_WATERMARKS: bool = true;

    /// Called when event time reached `watermark` on every input of the task
    /// (the minimum over them), after every record before it was processed. An
    /// event-time operator fires what is due (windows, timers) into `output`.
    fn on_watermark(
        &mut self,
        _watermark: Watermark,
        _output: &mut Batch<Self::Out>,
    ) -> Result<()> {
        Ok(())
    }

    /// A watermark or idleness this operator generates itself (a watermark
    /// assigner), polled after every batch and timer; `None` when nothing is due.
    fn progress_due(&mut self) -> Option<Progress> {
        None
    }
}

/// What [`Source::poll`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// More records may be available at once.
    Ready,
    /// Nothing to emit before the given instant (rate limit or no data yet).
    Idle(Instant),
    /// The input is exhausted; `poll` will not be called again.
    Finished,
}

/// A parallel source of records whose position is part of every checkpoint.
pub trait Source: Send + 'static {
    /// Record type produced.
    type Out: Data;

    /// Called once before polling, with the position to resume from (`None` on a fresh start).
    fn open(&mut self, _ctx: &OperatorContext, _restored: Option<RestoredState>) -> Result<()> {
        Ok(())
    }

    /// Appends at most `max` records to `output`.
    fn poll(&mut self, output: &mut Batch<Self::Out>, max: usize) -> Result<SourceStatus>;

    /// Snapshots the position after the last record returned by `poll`.
    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot>;

    /// A watermark or idleness the source generates itself (per split, say),
    /// polled after every `poll`; `None` when nothing is due.
    fn progress_due(&mut self) -> Option<Progress> {
        None
    }

    /// Called when checkpoint `id` is complete: a source may tell an outside
    /// system how far it has read (never to be relied on for recovery).
    fn checkpoint_complete(&mut self, _id: CheckpointId) -> Result<()> {
        Ok(())
    }
}
