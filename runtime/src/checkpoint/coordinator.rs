//! The checkpoint coordinator's bookkeeping, as pure decisions with no I/O.
//!
//! The flow of checkpoint `n`, step by step:
//! 1. [`CheckpointCoordinator::trigger`] picks `n` and the tasks to tell: every
//!    running source (which snapshots its position and emits barrier `n`) and every
//!    task whose input has already ended (which snapshots directly, since no barrier
//!    can reach it).
//! 2. Barriers flow; each task aligns its inputs, snapshots, and once its state is
//!    stored acknowledges `n` ([`CheckpointCoordinator::ack`]).
//! 3. When every task has acknowledged, `ack` returns the finished checkpoint; the
//!    caller writes `_metadata` (the commit point) and then notifies every task.
//! 4. A checkpoint that is declined or outlives its timeout is abandoned
//!    ([`CheckpointCoordinator::decline`], [`CheckpointCoordinator::expire`]); the
//!    job goes on and late acknowledgements are ignored.
//!
//! At most one checkpoint is in flight; the next is triggered on schedule once it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::checkpoint::metadata::OperatorState;
use crate::checkpoint::metadata::SubtaskState;
use crate::ids::{CheckpointId, OperatorUid, TaskId};

/// A checkpoint in flight.
#[derive(Debug)]
pub struct PendingCheckpoint {
    /// Its id.
    pub id: CheckpointId,
    /// When it was triggered.
    pub started: Instant,
    /// Tasks that have not acknowledged yet.
    pub waiting: BTreeSet<TaskId>,
    /// State handles acknowledged so far, by operator uid, with the operator's parallelism.
    pub states: BTreeMap<OperatorUid, (u32, Vec<SubtaskState>)>,
    /// Whether this is the final checkpoint of a finished bounded job.
    pub is_final: bool,
    /// Bytes the acknowledged tasks wrote for it.
    pub uploaded_bytes: u64,
}

impl PendingCheckpoint {
    /// The operators' states, sorted by uid and subtask, for `_metadata`.
    pub fn into_operators(self) -> Vec<OperatorState> {
        self.states
            .into_iter()
            .map(|(uid, (parallelism, mut subtasks))| {
                subtasks.sort_by_key(|s| s.subtask);
                OperatorState {
                    uid,
                    parallelism,
                    subtasks,
                }
            })
            .collect()
    }
}

/// An acknowledgement: a task's stored state for a checkpoint.
#[derive(Debug)]
pub struct Ack {
    /// The task.
    pub task: TaskId,
    /// The checkpoint.
    pub id: CheckpointId,
    /// Per operator subtask in the task: uid, operator parallelism, handles.
    pub states: Vec<(OperatorUid, u32, SubtaskState)>,
    /// Bytes written to storage for this checkpoint.
    pub uploaded_bytes: u64,
}

/// The coordinator's view of checkpoints and tasks of one deployment.
#[derive(Debug)]
pub struct CheckpointCoordinator {
    next_id: CheckpointId,
    interval: Option<Duration>,
    timeout: Duration,
    next_trigger: Option<Instant>,
    pending: Option<PendingCheckpoint>,
    tasks: BTreeSet<TaskId>,
    sources: BTreeSet<TaskId>,
    ended: BTreeSet<TaskId>,
    /// The final checkpoint completed: nothing more is triggered while the
    /// tasks commit it and stop.
    finished: bool,
}

impl CheckpointCoordinator {
    /// A coordinator for `tasks` (of which `sources` are sources), starting at
    /// `next_id`, triggering every `interval` (never if `None`).
    pub fn new(
        tasks: impl IntoIterator<Item = TaskId>,
        sources: impl IntoIterator<Item = TaskId>,
        next_id: CheckpointId,
        interval: Option<Duration>,
        timeout: Duration,
        now: Instant,
    ) -> Self {
        CheckpointCoordinator {
            next_id,
            interval,
            timeout,
            next_trigger: interval.map(|i| now + i),
            pending: None,
            tasks: tasks.into_iter().collect(),
            sources: sources.into_iter().collect(),
            ended: BTreeSet::new(),
            finished: false,
        }
    }

    /// The id the next checkpoint will get.
    pub fn next_id(&self) -> CheckpointId {
        self.next_id
    }

    /// The checkpoint in flight, if any.
    pub fn pending(&self) -> Option<&PendingCheckpoint> {
        self.pending.as_ref()
    }

    /// Whether every task's input has ended.
    pub fn all_ended(&self) -> bool {
        self.ended.len() == self.tasks.len()
    }

    /// The next instant at which [`CheckpointCoordinator::poll`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.pending {
            Some(p) => Some(p.started + self.timeout),
            None if self.finished => None,
            None if self.all_ended() => Some(Instant::now()),
            None => self.next_trigger,
        }
    }

    /// Triggers a checkpoint if one is due at `now`, returning its id and the tasks
    /// to tell. Once every task has ended, the final checkpoint is due at once;
    /// once it has completed, nothing is.
    pub fn poll(&mut self, now: Instant) -> Option<(CheckpointId, Vec<TaskId>)> {
        if self.pending.is_some() || self.finished {
            return None;
        }
        let is_final = self.all_ended();
        if !is_final && self.next_trigger.is_none_or(|t| t > now) {
            return None;
        }
        Some(self.start(now, is_final))
    }

    /// Triggers a checkpoint now, off schedule (a savepoint), unless one is in
    /// flight or every task's input has ended (then only the final one may run).
    pub fn trigger(&mut self, now: Instant) -> Option<(CheckpointId, Vec<TaskId>)> {
        if self.pending.is_some() || self.all_ended() {
            return None;
        }
        Some(self.start(now, false))
    }

    fn start(&mut self, now: Instant, is_final: bool) -> (CheckpointId, Vec<TaskId>) {
        let id = self.next_id;
        self.next_id = id.next();
        let targets: Vec<TaskId> = self
            .sources
            .iter()
            .chain(self.ended.iter())
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.pending = Some(PendingCheckpoint {
            id,
            started: now,
            waiting: self.tasks.clone(),
            states: BTreeMap::new(),
            is_final,
            uploaded_bytes: 0,
        });
        (id, targets)
    }

    /// Task `task`'s input ended. Returns a checkpoint it must now snapshot directly,
    /// if one is in flight that it has not acknowledged (its barrier can no longer come).
    pub fn ended(&mut self, task: TaskId) -> Option<CheckpointId> {
        self.ended.insert(task);
        self.pending
            .as_ref()
            .filter(|p| p.waiting.contains(&task))
            .map(|p| p.id)
    }

    /// Records an acknowledgement. Returns the checkpoint when it was the last one.
    pub fn ack(&mut self, ack: Ack) -> Option<PendingCheckpoint> {
        let pending = self.pending.as_mut().filter(|p| p.id == ack.id)?;
        if !pending.waiting.remove(&ack.task) {
            return None;
        }
        pending.uploaded_bytes += ack.uploaded_bytes;
        for (uid, parallelism, state) in ack.states {
            pending
                .states
                .entry(uid)
                .or_insert_with(|| (parallelism, Vec::new()))
                .1
                .push(state);
        }
        if pending.waiting.is_empty() {
            let done = self.finish_pending();
            self.finished = done.as_ref().is_some_and(|p| p.is_final);
            done
        } else {
            None
        }
    }

    /// A task declined checkpoint `id`. Returns it when it was in flight (now abandoned).
    pub fn decline(&mut self, id: CheckpointId) -> Option<PendingCheckpoint> {
        if self.pending.as_ref().is_some_and(|p| p.id == id) {
            self.finish_pending()
        } else {
            None
        }
    }

    /// Abandons the checkpoint in flight if it has outlived the timeout at `now`.
    pub fn expire(&mut self, now: Instant) -> Option<PendingCheckpoint> {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| now >= p.started + self.timeout)
        {
            self.finish_pending()
        } else {
            None
        }
    }

    fn finish_pending(&mut self) -> Option<PendingCheckpoint> {
        let pending = self.pending.take()?;
        if let Some(interval) = self.interval {
            // Flink's default: the next trigger is an interval after the last one started,
            // or right away if that moment has passed.
            self.next_trigger = Some(pending.started + interval);
        }
        Some(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyGroupRange;

    fn t(chain: u32, subtask: u32) -> TaskId {
        TaskId { chain, subtask }
    }

    fn ack(task: TaskId, id: u64) -> Ack {
        Ack {
            task,
            id: CheckpointId(id),
            states: vec![(
                OperatorUid(format!("op{}", task.chain)),
                2,
                SubtaskState {
                    subtask: task.subtask,
                    key_groups: KeyGroupRange { start: 0, end: 1 },
                    position: None,
                    file: None,
                    rocksdb: None,
                },
            )],
            uploaded_bytes: 0,
        }
    }

    fn coordinator(now: Instant) -> CheckpointCoordinator {
        let tasks = [t(0, 0), t(0, 1), t(1, 0), t(1, 1)];
        CheckpointCoordinator::new(
            tasks,
            [t(0, 0), t(0, 1)],
            CheckpointId(5),
            Some(Duration::from_secs(1)),
            Duration::from_secs(10),
            now,
        )
    }

    #[test]
    fn a_checkpoint_completes_when_every_task_has_acknowledged() {
        let now = Instant::now();
        let mut c = coordinator(now);
        assert!(c.poll(now).is_none(), "not due before the interval");
        let (id, targets) = c.poll(now + Duration::from_secs(1)).unwrap();
        assert_eq!((id, targets), (CheckpointId(5), vec![t(0, 0), t(0, 1)]));
        assert!(
            c.poll(now + Duration::from_secs(3)).is_none(),
            "one in flight at a time"
        );
        for task in [t(0, 0), t(1, 1), t(0, 1)] {
            assert!(c.ack(ack(task, 5)).is_none());
        }
        assert!(
            c.ack(ack(t(0, 0), 5)).is_none(),
            "duplicate acks count once"
        );
        let done = c.ack(ack(t(1, 0), 5)).unwrap();
        let ops = done.into_operators();
        assert_eq!(ops.len(), 2);
        assert_eq!(
            ops[1]
                .subtasks
                .iter()
                .map(|s| s.subtask)
                .collect::<Vec<_>>(),
            [0, 1]
        );
    }

    #[test]
    fn late_acks_of_an_expired_checkpoint_are_ignored() {
        let now = Instant::now();
        let mut c = coordinator(now);
        c.poll(now + Duration::from_secs(1)).unwrap();
        assert!(c.expire(now + Duration::from_secs(5)).is_none());
        assert_eq!(
            c.expire(now + Duration::from_secs(11)).unwrap().id,
            CheckpointId(5)
        );
        for task in [t(0, 0), t(0, 1), t(1, 0), t(1, 1)] {
            assert!(c.ack(ack(task, 5)).is_none());
        }
        let (id, _) = c.poll(now + Duration::from_secs(11)).unwrap();
        assert_eq!(id, CheckpointId(6), "ids never repeat");
    }

    #[test]
    fn a_task_that_ends_during_a_checkpoint_is_asked_to_snapshot_directly() {
        let now = Instant::now();
        let mut c = coordinator(now);
        c.poll(now + Duration::from_secs(1)).unwrap();
        assert_eq!(c.ended(t(1, 0)), Some(CheckpointId(5)));
        c.ack(ack(t(1, 0), 5));
        assert_eq!(c.ended(t(1, 0)), None, "already acknowledged");
    }

    #[test]
    fn a_savepoint_triggers_off_schedule_but_never_beside_another_checkpoint() {
        let now = Instant::now();
        let mut c = coordinator(now);
        let (id, targets) = c.trigger(now).unwrap();
        assert_eq!((id, targets), (CheckpointId(5), vec![t(0, 0), t(0, 1)]));
        assert!(c.trigger(now).is_none(), "one in flight at a time");
        assert!(c.poll(now + Duration::from_secs(2)).is_none());
        c.decline(id).unwrap();
        for task in [t(0, 0), t(0, 1), t(1, 0), t(1, 1)] {
            c.ended(task);
        }
        assert!(c.trigger(now).is_none(), "the job is finishing");
    }

    #[test]
    fn the_final_checkpoint_is_due_once_every_task_has_ended() {
        let now = Instant::now();
        let mut c = coordinator(now);
        for task in [t(0, 0), t(0, 1), t(1, 0), t(1, 1)] {
            c.ended(task);
        }
        let (id, targets) = c.poll(now).unwrap();
        assert_eq!(targets.len(), 4);
        assert!(c.pending().unwrap().is_final);
        assert_eq!(id, CheckpointId(5));
    }

    #[test]
    fn nothing_is_triggered_once_the_final_checkpoint_has_completed() {
        let now = Instant::now();
        let mut c = coordinator(now);
        let tasks = [t(0, 0), t(0, 1), t(1, 0), t(1, 1)];
        for task in tasks {
            c.ended(task);
        }
        let (id, _) = c.poll(now).unwrap();
        c.decline(id).unwrap();
        let (id, _) = c.poll(now).expect("a declined final checkpoint is retried");
        let done = tasks.into_iter().filter_map(|task| c.ack(ack(task, id.0)));
        assert!(done.last().unwrap().is_final);
        // The tasks wait to commit it: another snapshot of their whole state
        // would be work for nothing, and a deadline of now a busy loop.
        assert!(c.poll(now + Duration::from_secs(5)).is_none());
        assert_eq!(c.next_deadline(), None);
    }
}
