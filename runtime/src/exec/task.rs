//! The task runner: the loop every task thread runs, for sources and for tasks with inputs.
//!
//! A task is a chain of operators fed either by a [`Source`] or by input channels.
//! Step by step, for a task with inputs:
//! 1. Read the next message from any input channel that the [`Aligner`] has not
//!    blocked, or a control message, or wake up for a timer or the buffer timeout.
//! 2. A batch goes down the chain ([`Downstream::push`]).
//! 3. A barrier blocks its channel; once every live channel has delivered it, the
//!    chain snapshots and forwards it ([`Downstream::barrier`]), the snapshot goes
//!    to the uploader, and every channel opens again.
//! 4. A watermark, an idle mark or an end of input updates the task's event time
//!    ([`WatermarkTracker`]: the minimum over its channels); when that advances
//!    the chain sees the new watermark ([`Downstream::watermark`]).
//! 5. When every channel has ended, the chain gets [`Watermark::MAX`] and flushes
//!    ([`Downstream::end_of_input`]), the coordinator is told, and from then on
//!    the task only answers control messages: direct snapshots, completion
//!    notices, finish or cancel.
//!
//! A source task polls its source for a batch at a time and checks its control
//! channel between batches; a trigger makes it snapshot its position and emit the
//! barrier right after the last batch it pushed.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TryRecvError};

use crate::data::{Barrier, Batch, Data, Message, Watermark};
use crate::error::{Error, Result};
use crate::exec::align::{Aligner, Alignment};
use crate::exec::chain::{Downstream, SnapshotPart};
use crate::exec::channel::CreditReturn;
use crate::exec::pool::BatchPool;
use crate::exec::watermarks::{Progress, WatermarkTracker};
use crate::ids::{CheckpointId, TaskId};
use crate::ids::{OperatorUid, Subtask};
use crate::keys::KeyGroupRange;
use crate::metrics::{add, OperatorMetrics, TaskMetrics};
use crate::operator::{Source, SourceStatus};

/// What the coordinator tells a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Take the checkpoint or savepoint of this barrier: sources emit it; ended
    /// tasks snapshot directly.
    Trigger(Barrier),
    /// Take the savepoint of this barrier and stop: sources emit it and then nothing
    /// more until the job is finished or cancelled; ended tasks snapshot directly.
    Stop(Barrier),
    /// Checkpoint `id` is complete.
    Complete(CheckpointId),
    /// Fail now (failure injection).
    Fail,
    /// Stop at once; the job is being torn down.
    Cancel,
    /// The job has finished and its final checkpoint is complete: exit.
    Finish,
}

/// What a task (or the uploader on its behalf) tells the coordinator.
#[derive(Debug)]
pub enum TaskEvent {
    /// The task's state for a checkpoint is stored.
    Ack(crate::checkpoint::coordinator::Ack),
    /// The task's state for a checkpoint could not be stored.
    Decline {
        /// The task.
        task: TaskId,
        /// The checkpoint.
        id: CheckpointId,
        /// Why.
        reason: String,
    },
    /// Every input of the task has ended and its chain has flushed.
    Ended(TaskId),
    /// A task whose input had ended committed checkpoint `id`'s side effects
    /// (what confirms the final commit of a bounded job).
    Committed(TaskId, CheckpointId),
    /// The task failed.
    Failed(TaskId, Error),
    /// The task exited after `Finish` or `Cancel`.
    Exited(TaskId),
}

/// A task's snapshot on its way to storage.
#[derive(Debug)]
pub struct Upload {
    /// The task.
    pub task: TaskId,
    /// The checkpoint.
    pub id: CheckpointId,
    /// One part per operator subtask with state.
    pub parts: Vec<SnapshotPart>,
}

/// The task's links to the rest of the job.
pub struct TaskRuntime {
    /// This task.
    pub id: TaskId,
    /// Control messages from the coordinator.
    pub control: Receiver<Control>,
    /// Events to the coordinator.
    pub events: Sender<TaskEvent>,
    /// Snapshots to the uploader.
    pub uploads: Sender<Upload>,
    /// Wait-time counters.
    pub metrics: Arc<TaskMetrics>,
    last_snapshot: Option<CheckpointId>,
}

/// Whether the task loop goes on after a control message.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

impl TaskRuntime {
    /// The runtime of task `id`.
    pub fn new(
        id: TaskId,
        control: Receiver<Control>,
        events: Sender<TaskEvent>,
        uploads: Sender<Upload>,
        metrics: Arc<TaskMetrics>,
    ) -> Self {
        TaskRuntime {
            id,
            control,
            events,
            uploads,
            metrics,
            last_snapshot: None,
        }
    }

    fn already_snapshotted(&self, id: CheckpointId) -> bool {
        self.last_snapshot.is_some_and(|last| id <= last)
    }

    fn upload(&mut self, id: CheckpointId, parts: Vec<SnapshotPart>) -> Result<()> {
        self.last_snapshot = Some(id);
        self.uploads
            .send(Upload {
                task: self.id,
                id,
                parts,
            })
            .map_err(|_| Error::ChannelClosed)
    }

    /// Handles a control message that needs no barrier; `Trigger` snapshots the chain directly.
    fn on_control<T>(
        &mut self,
        control: Control,
        head: &mut dyn Downstream<T>,
        ended: bool,
    ) -> Result<Flow> {
        match control {
            Control::Trigger(barrier) | Control::Stop(barrier)
                if ended && !self.already_snapshotted(barrier.id) =>
            {
                let mut parts = Vec::new();
                head.snapshot(barrier, &mut parts)?;
                self.upload(barrier.id, parts)?;
            }
            Control::Trigger(_) | Control::Stop(_) => {}
            Control::Complete(id) => {
                head.checkpoint_complete(id)?;
                if ended {
                    // The final checkpoint's side effects are done: the job may end.
                    self.events
                        .send(TaskEvent::Committed(self.id, id))
                        .map_err(|_| Error::ChannelClosed)?;
                }
            }
            Control::Fail => return Err(Error::InjectedFailure(self.id)),
            Control::Cancel | Control::Finish => return Ok(Flow::Exit),
        }
        Ok(Flow::Continue)
    }

    fn ended(&self) -> Result<()> {
        self.events
            .send(TaskEvent::Ended(self.id))
            .map_err(|_| Error::ChannelClosed)
    }

    /// After the input ended: answer control messages until told to exit.
    fn serve_control<T>(&mut self, head: &mut dyn Downstream<T>) -> Result<()> {
        loop {
            let control = self.control.recv().map_err(|_| Error::ChannelClosed)?;
            if self.on_control(control, head, true)? == Flow::Exit {
                return Ok(());
            }
        }
    }
}

/// What a task runs on its thread.
pub trait TaskBody: Send {
    /// Runs the task to its end: `Ok` after `Finish` or `Cancel`, `Err` on failure.
    fn run(self: Box<Self>, rt: &mut TaskRuntime) -> Result<()>;
}

/// A task whose chain is fed by input channels.
pub struct InputTask<T> {
    inputs: Vec<Receiver<Message<T>>>,
    /// Per input, how to tell a remote sender that a message was taken.
    credits: Vec<Option<CreditReturn>>,
    /// Per input, where its emptied batches go back (`None`: remote; those
    /// are decoded into `spare`, this task's own).
    pools: Vec<Option<BatchPool<T>>>,
    batch_size: usize,
    head: Box<dyn Downstream<T>>,
}

impl<T: Data> InputTask<T> {
    /// A task reading `inputs` (one per upstream subtask) into `head`.
    pub fn new(inputs: Vec<Receiver<Message<T>>>, head: Box<dyn Downstream<T>>) -> Self {
        let credits = inputs.iter().map(|_| None).collect();
        let pools = inputs.iter().map(|_| None).collect();
        InputTask {
            inputs,
            credits,
            pools,
            batch_size: 0,
            head,
        }
    }

    /// Sets, per input, the pool its emptied batches go back to (`None` for
    /// remote ones), and the batch size they are made for.
    pub fn with_pools(mut self, pools: Vec<Option<BatchPool<T>>>, batch_size: usize) -> Self {
        self.pools = pools;
        self.batch_size = batch_size;
        self
    }

    /// Sets, per input, the credit return of a remote channel (`None` for local ones).
    pub fn with_credits(mut self, credits: Vec<Option<CreditReturn>>) -> Self {
        self.credits = credits;
        self
    }
}

impl<T: Data> TaskBody for InputTask<T> {
    fn run(self: Box<Self>, rt: &mut TaskRuntime) -> Result<()> {
        let InputTask {
            inputs,
            mut credits,
            pools,
            batch_size,
            mut head,
        } = *self;
        let mut spare: Batch<T> = Vec::new();
        let mut aligner = Aligner::new(inputs.len());
        let mut clock = WatermarkTracker::new(inputs.len());
        let mut align_started: Option<Instant> = None;
        // The barrier being aligned: what the chain snapshots once every channel has it.
        let mut aligning: Option<Barrier> = None;
        // The select over the readable channels and the control channel is built
        // again only when the readable set changes (a barrier blocks a channel,
        // alignment ends, a channel ends), not for every message.
        let control = rt.control.clone();
        let mut readable: Vec<usize> = Vec::with_capacity(inputs.len());
        let mut select = Select::new();
        let mut control_index = 0;
        let mut stale = true;
        while !aligner.all_ended() {
            let wakeup = head.next_wakeup();
            if wakeup.is_some_and(|t| t <= Instant::now()) {
                head.on_time(Instant::now())?;
                continue;
            }
            if stale {
                select = Select::new();
                readable.clear();
                for (channel, input) in inputs.iter().enumerate() {
                    if !aligner.is_blocked(channel) {
                        readable.push(channel);
                        select.recv(input);
                    }
                }
                control_index = select.recv(&control);
                stale = false;
            }
            // The wait for input is idle time (a batch ready at once costs
            // no clock reads).
            let op = match select.try_select() {
                Ok(op) => op,
                Err(_) => {
                    let waiting = Instant::now();
                    let op = match wakeup {
                        Some(deadline) => select.select_deadline(deadline).ok(),
                        None => Some(select.select()),
                    };
                    add(&rt.metrics.idle_ns, waiting.elapsed().as_nanos() as u64);
                    match op {
                        Some(op) => op,
                        None => continue,
                    }
                }
            };
            if op.index() == control_index {
                let control = op.recv(&control).map_err(|_| Error::ChannelClosed)?;
                if rt.on_control(control, head.as_mut(), false)? == Flow::Exit {
                    return Ok(());
                }
                continue;
            }
            let channel = readable[op.index()];
            let message = op
                .recv(&inputs[channel])
                .map_err(|_| Error::ChannelClosed)?;
            if let Some(Some(credit)) = credits.get_mut(channel) {
                credit();
            }
            let alignment = match message {
                Message::Batch(mut batch) => {
                    head.push(&mut batch)?;
                    if let Some(Some(pool)) = pools.get(channel) {
                        pool.give(batch, batch_size);
                    }
                    Alignment::Wait
                }
                Message::Encoded(bytes) => {
                    crate::net::decode_batch_into(&bytes, &mut spare)?;
                    head.push(&mut spare)?;
                    spare.clear();
                    Alignment::Wait
                }
                Message::Barrier(barrier) => {
                    align_started.get_or_insert_with(Instant::now);
                    aligning = Some(barrier);
                    stale = true;
                    aligner.on_barrier(channel, barrier.id)?
                }
                Message::Watermark(watermark) => {
                    advance(head.as_mut(), clock.on_watermark(channel, watermark))?;
                    Alignment::Wait
                }
                Message::Idle => {
                    advance(head.as_mut(), clock.on_idle(channel))?;
                    Alignment::Wait
                }
                Message::EndOfInput => {
                    advance(head.as_mut(), clock.on_end(channel))?;
                    stale = true;
                    aligner.on_end(channel)
                }
            };
            if let Alignment::Aligned(id) = alignment {
                stale = true;
                let barrier = aligning
                    .take()
                    .filter(|b| b.id == id)
                    .ok_or_else(|| Error::Internal(format!("barrier {id} aligned unseen")))?;
                if let Some(started) = align_started.take() {
                    add(
                        &rt.metrics.alignment_ns,
                        started.elapsed().as_nanos() as u64,
                    );
                }
                let mut parts = Vec::new();
                if aligner.all_ended() {
                    head.snapshot(barrier, &mut parts)?;
                } else {
                    head.barrier(barrier, &mut parts)?;
                }
                rt.upload(id, parts)?;
            }
        }
        head.end_of_input()?;
        rt.ended()?;
        rt.serve_control(head.as_mut())
    }
}

/// Tells the chain what a channel's news did to the task's event time.
fn advance<T>(head: &mut dyn Downstream<T>, progress: Option<Progress>) -> Result<()> {
    match progress {
        Some(Progress::Advanced(watermark)) => head.watermark(watermark),
        Some(Progress::Idle) => head.idle(),
        None => Ok(()),
    }
}

/// A task whose chain is fed by a source.
pub struct SourceTask<S: Source> {
    source: S,
    uid: OperatorUid,
    subtask: Subtask,
    key_groups: KeyGroupRange,
    head: Box<dyn Downstream<S::Out>>,
    metrics: Arc<OperatorMetrics>,
    batch_size: usize,
}

impl<S: Source> SourceTask<S> {
    /// A task polling `source` (already opened) into `head`.
    pub fn new(
        source: S,
        ctx: &crate::operator::OperatorContext,
        head: Box<dyn Downstream<S::Out>>,
        metrics: Arc<OperatorMetrics>,
        batch_size: usize,
    ) -> Self {
        SourceTask {
            source,
            uid: ctx.uid.clone(),
            subtask: ctx.subtask,
            key_groups: ctx.key_groups,
            head,
            metrics,
            batch_size: batch_size.max(1),
        }
    }

    fn checkpoint(&mut self, rt: &mut TaskRuntime, barrier: Barrier, ended: bool) -> Result<()> {
        if rt.already_snapshotted(barrier.id) {
            return Ok(());
        }
        let snapshot = self.source.snapshot(&barrier)?;
        let mut parts = vec![SnapshotPart {
            uid: self.uid.clone(),
            subtask: self.subtask,
            key_groups: self.key_groups,
            snapshot,
        }];
        if ended {
            self.head.snapshot(barrier, &mut parts)?;
        } else {
            self.head.barrier(barrier, &mut parts)?;
        }
        rt.upload(barrier.id, parts)
    }

    fn handle(&mut self, rt: &mut TaskRuntime, control: Control, ended: bool) -> Result<Flow> {
        match control {
            Control::Trigger(barrier) => {
                self.checkpoint(rt, barrier, ended)?;
                Ok(Flow::Continue)
            }
            Control::Stop(barrier) => {
                self.checkpoint(rt, barrier, ended)?;
                if ended {
                    return Ok(Flow::Continue);
                }
                // Nothing may follow the savepoint's barrier, not even a timer's output:
                // wait until the job is finished (after the savepoint) or cancelled.
                loop {
                    let control = rt.control.recv().map_err(|_| Error::ChannelClosed)?;
                    if rt.on_control(control, self.head.as_mut(), false)? == Flow::Exit {
                        return Ok(Flow::Exit);
                    }
                }
            }
            Control::Complete(id) => {
                self.source.checkpoint_complete(id)?;
                rt.on_control(control, self.head.as_mut(), ended)
            }
            other => rt.on_control(other, self.head.as_mut(), ended),
        }
    }

    /// Waits for a control message until `deadline`, handling it if one comes.
    fn wait(&mut self, rt: &mut TaskRuntime, deadline: Instant) -> Result<Flow> {
        let waiting = Instant::now();
        let control = rt.control.recv_deadline(deadline);
        add(&rt.metrics.idle_ns, waiting.elapsed().as_nanos() as u64);
        match control {
            Ok(control) => self.handle(rt, control, false),
            Err(RecvTimeoutError::Timeout) => Ok(Flow::Continue),
            Err(RecvTimeoutError::Disconnected) => Err(Error::ChannelClosed),
        }
    }
}

impl<S: Source> TaskBody for SourceTask<S> {
    fn run(mut self: Box<Self>, rt: &mut TaskRuntime) -> Result<()> {
        let mut batch: Batch<S::Out> = Vec::with_capacity(self.batch_size);
        loop {
            loop {
                match rt.control.try_recv() {
                    Ok(control) => {
                        if self.handle(rt, control, false)? == Flow::Exit {
                            return Ok(());
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Err(Error::ChannelClosed),
                }
            }
            let now = Instant::now();
            let wakeup = self.head.next_wakeup();
            if wakeup.is_some_and(|t| t <= now) {
                self.head.on_time(now)?;
            }
            let status = self.source.poll(&mut batch, self.batch_size)?;
            if !batch.is_empty() {
                add(&self.metrics.records_out, batch.len() as u64);
                self.head.push(&mut batch)?;
            }
            match self.source.progress_due() {
                Some(Progress::Advanced(watermark)) => self.head.watermark(watermark)?,
                Some(Progress::Idle) => self.head.idle()?,
                None => {}
            }
            match status {
                SourceStatus::Ready => {}
                SourceStatus::Idle(until) => {
                    let deadline = wakeup.map_or(until, |w| w.min(until));
                    if self.wait(rt, deadline)? == Flow::Exit {
                        return Ok(());
                    }
                }
                SourceStatus::Finished => break,
            }
        }
        // The end of the input is the end of event time.
        self.head.watermark(Watermark::MAX)?;
        self.head.end_of_input()?;
        rt.ended()?;
        loop {
            let control = rt.control.recv().map_err(|_| Error::ChannelClosed)?;
            if self.handle(rt, control, true)? == Flow::Exit {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::chain::{Discard, Link};
    use crate::ids::OperatorUid;
    use crate::metrics::OperatorMetrics;
    use crate::operator::{Operator, OperatorContext};
    use crate::state::OperatorSnapshot;
    use crossbeam_channel::{bounded, unbounded};

    /// Records every (channel, sequence) pair it sees; its snapshot is that list.
    struct Recorder {
        seen: Vec<(u32, u32)>,
    }

    impl Operator for Recorder {
        type In = (u32, u32);
        type Out = ();
        fn process(&mut self, input: &mut Batch<(u32, u32)>, _: &mut Batch<()>) -> Result<()> {
            self.seen.append(input);
            Ok(())
        }
        fn snapshot(&mut self, _: &Barrier) -> Result<OperatorSnapshot> {
            Ok(OperatorSnapshot {
                operator_state: Some(
                    bincode::serialize(&self.seen).map_err(|e| Error::Internal(e.to_string()))?,
                ),
                ..Default::default()
            })
        }
    }

    fn ctx() -> OperatorContext {
        OperatorContext {
            job: "job".into(),
            uid: OperatorUid("recorder".into()),
            name: "recorder".into(),
            subtask: Subtask {
                index: 0,
                parallelism: 1,
            },
            max_parallelism: 128,
            key_groups: KeyGroupRange { start: 0, end: 128 },
            attempt: 1,
            state: Default::default(),
            checkpoint_interval: None,
            metrics: Default::default(),
        }
    }

    /// One scripted step on a channel.
    enum Step {
        Data(u32, u32),
        Barrier(u64),
        End,
    }

    /// What the recorder saw: (channel, sequence) pairs.
    type Seen = Vec<(u32, u32)>;

    /// Runs an input task over pre-filled channels; returns the recorder's snapshot
    /// per checkpoint and everything it saw, in order.
    fn run_script(script: Vec<Vec<Step>>) -> (Vec<(CheckpointId, Seen)>, Seen) {
        let mut inputs = Vec::new();
        for (c, steps) in script.into_iter().enumerate() {
            let (tx, rx) = bounded(steps.len() + 1);
            for step in steps {
                let msg = match step {
                    Step::Data(from, to) => {
                        Message::Batch((from..to).map(|s| (c as u32, s)).collect())
                    }
                    Step::Barrier(id) => {
                        Message::Barrier(Barrier::checkpoint(CheckpointId(id), None))
                    }
                    Step::End => Message::EndOfInput,
                };
                tx.send(msg).unwrap();
            }
            inputs.push(rx);
        }
        let head: Box<dyn Downstream<(u32, u32)>> = Box::new(Link::new(
            Recorder { seen: Vec::new() },
            &ctx(),
            Box::new(Discard),
            Arc::new(OperatorMetrics::default()),
        ));
        let task = Box::new(InputTask::new(inputs, head));
        let (control_tx, control) = unbounded();
        let (events_tx, events) = unbounded();
        let (uploads_tx, uploads) = unbounded();
        let id = TaskId {
            chain: 1,
            subtask: 0,
        };
        let thread = std::thread::spawn(move || {
            let mut rt = TaskRuntime::new(id, control, events_tx, uploads_tx, Arc::default());
            task.run(&mut rt)
        });
        assert!(matches!(events.recv().unwrap(), TaskEvent::Ended(_)));
        control_tx
            .send(Control::Trigger(Barrier::checkpoint(
                CheckpointId(99),
                None,
            )))
            .unwrap();
        control_tx.send(Control::Finish).unwrap();
        thread.join().unwrap().unwrap();
        let decode = |u: Upload| -> (CheckpointId, Seen) {
            let bytes = u.parts[0].snapshot.operator_state.clone().unwrap();
            (u.id, bincode::deserialize(&bytes).unwrap())
        };
        let mut snapshots: Vec<_> = uploads.try_iter().map(decode).collect();
        let (last_id, all) = snapshots.pop().unwrap();
        assert_eq!(
            last_id,
            CheckpointId(99),
            "the final snapshot is taken directly"
        );
        (snapshots, all)
    }

    fn assert_alignment(channels: u32) {
        // Channel 0 reaches every barrier first and has records queued right behind it;
        // the others deliver more data before their barrier.
        let mut script = vec![vec![
            Step::Data(0, 2),
            Step::Barrier(1),
            Step::Data(2, 4),
            Step::Barrier(2),
            Step::Data(4, 5),
            Step::End,
        ]];
        for _ in 1..channels {
            script.push(vec![
                Step::Data(0, 3),
                Step::Data(3, 6),
                Step::Barrier(1),
                Step::Data(6, 7),
                Step::Barrier(2),
                Step::Data(7, 9),
                Step::End,
            ]);
        }
        let (snapshots, all) = run_script(script);
        assert_eq!(snapshots.iter().map(|s| s.0 .0).collect::<Vec<_>>(), [1, 2]);
        let before = |c: u32, id: u64| -> u32 {
            match (c, id) {
                (0, 1) => 2,
                (0, _) => 4,
                (_, 1) => 6,
                (_, _) => 7,
            }
        };
        for (id, seen) in &snapshots {
            for c in 0..channels {
                let mut got: Vec<u32> = seen.iter().filter(|r| r.0 == c).map(|r| r.1).collect();
                got.sort_unstable();
                let expected: Vec<u32> = (0..before(c, id.0)).collect();
                assert_eq!(
                    got, expected,
                    "checkpoint {id} holds exactly channel {c}'s records before its barrier"
                );
            }
        }
        for c in 0..channels {
            let order: Vec<u32> = all.iter().filter(|r| r.0 == c).map(|r| r.1).collect();
            let total = if c == 0 { 5 } else { 9 };
            assert_eq!(
                order,
                (0..total).collect::<Vec<_>>(),
                "channel {c}: nothing dropped or reordered"
            );
        }
    }

    #[test]
    fn alignment_holds_data_behind_a_barrier_at_one_channel() {
        assert_alignment(1);
    }

    #[test]
    fn alignment_holds_data_behind_a_barrier_at_two_channels() {
        assert_alignment(2);
    }

    #[test]
    fn alignment_holds_data_behind_a_barrier_at_three_channels() {
        assert_alignment(3);
    }
}
