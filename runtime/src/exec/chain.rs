//! A chain of operators inside one task: each link calls the next directly, batch by batch.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::data::{Barrier, Batch, Data, Watermark};
use crate::error::Result;
use crate::exec::watermarks::Progress;
use crate::ids::{CheckpointId, OperatorUid, Subtask};
use crate::keys::KeyGroupRange;
use crate::metrics::{add, OperatorMetrics};
use crate::operator::Operator;
use crate::state::OperatorSnapshot;

/// One operator subtask's snapshot, tagged with where it belongs in `_metadata`.
#[derive(Debug)]
pub struct SnapshotPart {
    /// The operator.
    pub uid: OperatorUid,
    /// Which subtask of it.
    pub subtask: Subtask,
    /// The key groups it owned.
    pub key_groups: KeyGroupRange,
    /// What it produced.
    pub snapshot: OperatorSnapshot,
}

/// Where records of type `T` go next inside a task: the next chained operator,
/// the task's output exchange, or nowhere.
pub trait Downstream<T>: Send {
    /// Takes every record of `batch`, leaving it empty (its capacity is reused).
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()>;
    /// Snapshots every operator from here on and forwards `barrier` downstream.
    fn barrier(&mut self, barrier: Barrier, parts: &mut Vec<SnapshotPart>) -> Result<()>;
    /// Snapshots every operator from here on without forwarding anything
    /// (used once the input has ended, when no barrier can flow).
    fn snapshot(&mut self, barrier: Barrier, parts: &mut Vec<SnapshotPart>) -> Result<()>;
    /// Tells every operator from here on that checkpoint `id` is complete.
    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()>;
    /// The earliest instant at which something from here on wants [`Downstream::on_time`].
    fn next_wakeup(&self) -> Option<Instant>;
    /// Fires timers and flushes buffers that are due at `now`.
    fn on_time(&mut self, now: Instant) -> Result<()>;
    /// Flushes everything and signals the end of input downstream.
    fn end_of_input(&mut self) -> Result<()>;
    /// Event time reached `watermark` on every input of the task: each operator
    /// from here on sees it in order, after every record before it, and it goes
    /// downstream (unless an operator generates its own watermarks).
    fn watermark(&mut self, watermark: Watermark) -> Result<()>;
    /// Every input of the task is idle: downstream stops waiting on this task's
    /// event time until its next watermark.
    fn idle(&mut self) -> Result<()>;
}

/// An operator linked to the next step of its chain.
pub struct Link<O: Operator> {
    op: O,
    uid: OperatorUid,
    subtask: Subtask,
    key_groups: KeyGroupRange,
    out: Batch<O::Out>,
    next: Box<dyn Downstream<O::Out>>,
    metrics: Arc<OperatorMetrics>,
}

impl<O: Operator> Link<O> {
    /// Links an opened operator to `next`.
    pub fn new(
        op: O,
        ctx: &crate::operator::OperatorContext,
        next: Box<dyn Downstream<O::Out>>,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        Link {
            op,
            uid: ctx.uid.clone(),
            subtask: ctx.subtask,
            key_groups: ctx.key_groups,
            out: Vec::new(),
            next,
            metrics,
        }
    }

    fn flush_out(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            add(&self.metrics.records_out, self.out.len() as u64);
            self.next.push(&mut self.out)?;
        }
        Ok(())
    }

    /// Passes on a watermark or idleness the operator generates itself, once due.
    fn emit_progress(&mut self) -> Result<()> {
        match self.op.progress_due() {
            Some(Progress::Advanced(w)) => {
                self.flush_out()?;
                self.next.watermark(w)
            }
            Some(Progress::Idle) => {
                self.flush_out()?;
                self.next.idle()
            }
            None => Ok(()),
        }
    }

    fn snapshot_self(&mut self, barrier: &Barrier, parts: &mut Vec<SnapshotPart>) -> Result<()> {
        let started = Instant::now();
        let snapshot = self.op.snapshot(barrier)?;
        let took = started.elapsed().as_nanos() as u64;
        self.metrics.snapshot_sync_ns.store(took, Ordering::Relaxed);
        self.metrics
            .snapshot_sync_max_ns
            .fetch_max(took, Ordering::Relaxed);
        if !snapshot.is_empty() {
            parts.push(SnapshotPart {
                uid: self.uid.clone(),
                subtask: self.subtask,
                key_groups: self.key_groups,
                snapshot,
            });
        }
        Ok(())
    }
}

impl<O: Operator> Downstream<O::In> for Link<O> {
    fn push(&mut self, batch: &mut Batch<O::In>) -> Result<()> {
        add(&self.metrics.records_in, batch.len() as u64);
        self.op.process(batch, &mut self.out)?;
        batch.clear();
        self.flush_out()?;
        self.emit_progress()
    }

    fn barrier(&mut self, barrier: Barrier, parts: &mut Vec<SnapshotPart>) -> Result<()> {
        self.snapshot_self(&barrier, parts)?;
        self.next.barrier(barrier, parts)
    }

    fn snapshot(&mut self, barrier: Barrier, parts: &mut Vec<SnapshotPart>) -> Result<()> {
        self.snapshot_self(&barrier, parts)?;
        self.next.snapshot(barrier, parts)
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.op.checkpoint_complete(id)?;
        self.next.checkpoint_complete(id)
    }

    fn next_wakeup(&self) -> Option<Instant> {
        match (self.op.next_wakeup(), self.next.next_wakeup()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_time(&mut self, now: Instant) -> Result<()> {
        // Compare with a fresh clock: an operator may compute its wakeup from the
        // current time, which is later than `now`.
        if self
            .op
            .next_wakeup()
            .is_some_and(|t| t <= now.max(Instant::now()))
        {
            self.op.on_time(now, &mut self.out)?;
            self.flush_out()?;
            self.emit_progress()?;
        }
        self.next.on_time(now)
    }

    fn end_of_input(&mut self) -> Result<()> {
        self.op.end_of_input(&mut self.out)?;
        self.flush_out()?;
        self.next.end_of_input()
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.metrics
            .watermark
            .store(watermark.0, std::sync::atomic::Ordering::Relaxed);
        self.op.on_watermark(watermark, &mut self.out)?;
        self.flush_out()?;
        // The end of event time always passes, even a generator's.
        if O::FORWARDS_WATERMARKS || watermark == Watermark::MAX {
            self.next.watermark(watermark)
        } else {
            Ok(())
        }
    }

    fn idle(&mut self) -> Result<()> {
        if O::FORWARDS_WATERMARKS {
            self.next.idle()
        } else {
            Ok(())
        }
    }
}

/// The end of a chain whose records nobody consumes (after a sink).
pub struct Discard;

impl<T: Data> Downstream<T> for Discard {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        batch.clear();
        Ok(())
    }
    fn barrier(&mut self, _: Barrier, _: &mut Vec<SnapshotPart>) -> Result<()> {
        Ok(())
    }
    fn snapshot(&mut self, _: Barrier, _: &mut Vec<SnapshotPart>) -> Result<()> {
        Ok(())
    }
    fn checkpoint_complete(&mut self, _: CheckpointId) -> Result<()> {
        Ok(())
    }
    fn next_wakeup(&self) -> Option<Instant> {
        None
    }
    fn on_time(&mut self, _: Instant) -> Result<()> {
        Ok(())
    }
    fn end_of_input(&mut self) -> Result<()> {
        Ok(())
    }
    fn watermark(&mut self, _: Watermark) -> Result<()> {
        Ok(())
    }
    fn idle(&mut self) -> Result<()> {
        Ok(())
    }
}
