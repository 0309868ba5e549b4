//! The coordinator loop of one attempt: checkpoints on schedule, savepoints and
//! cancel on request, failure injection, and the end of the job.
//!
//! Step by step, until the attempt ends:
//! 1. Wait for a task event, a request, or the next deadline (checkpoint due or
//!    timed out, failure to inject).
//! 2. Acknowledgements complete checkpoints: the fence is checked, `_metadata` is
//!    written (create-only: it commits the checkpoint once), the tasks are
//!    notified, retention deletes old ones. A checkpoint that fails (declined,
//!    timed out, not written) counts towards the tolerable failures in a row;
//!    one more fails the attempt, which restarts from the latest checkpoint. A savepoint's state is copied to its
//!    own directory instead, and the tasks are notified only when it stops the job
//!    (side effects of an intermediate savepoint are committed by the next
//!    checkpoint, as in Flink, so a failover to an older checkpoint never finds
//!    output it would write again).
//! 3. Savepoint requests wait until no checkpoint is in flight, then trigger at
//!    once; with `stop`, sources emit nothing after its barrier and the attempt ends
//!    when it completes. A stop that fails ends the attempt with an error, so the
//!    runner restarts the job from its latest checkpoint and sources run again.
//! 4. Every checkpoint id is reserved in storage before its barriers go out, so
//!    no id is ever used twice, not even by a restarted coordinator.
//! 5. The final checkpoint of a bounded job ends the attempt only once every task
//!    has confirmed that it committed it ([`TaskEvent::Committed`]); a task lost
//!    in between fails the attempt, and the restart from the final checkpoint
//!    commits its pending output again before the job ends. Injected failures
//!    still due when the final checkpoint completes strike there, one per
//!    attempt, before its commit.

use std::cell::Cell;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Select, TryRecvError};

use crate::api::JobGraph;
use crate::checkpoint::coordinator::{CheckpointCoordinator, PendingCheckpoint};
use crate::checkpoint::fence::Fence;
use crate::checkpoint::ids::IdReservation;
use crate::checkpoint::metadata::{CheckpointMetadata, FORMAT_VERSION};
use crate::checkpoint::paths::Paths;
use crate::checkpoint::recovery::StopMarker;
use crate::checkpoint::retention::Listing;
use crate::checkpoint::savepoint::SavepointTarget;
use crate::checkpoint::store::CheckpointStore;
use crate::data::{Barrier, SnapshotKind};
use crate::error::{Error, Result};
use crate::exec::inject::FailureInjector;
use crate::exec::requests::{JobRequest, JobRequests, SavepointProgress, SavepointRequest};
use crate::exec::runner::{Deployment, RunConfig};
use crate::exec::task::{Control, TaskEvent};
use crate::ids::{CheckpointId, TaskId};
use crate::metrics::{CheckpointSummary, JobMetrics};

/// How an attempt ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Every input ended and the final checkpoint completed.
    Finished(CheckpointId),
    /// A stop-with-savepoint completed; the savepoint's directory.
    Stopped(String),
    /// Cancelled on request.
    Canceled,
}

/// What the loop needs of the job runner.
pub struct Coordination<'a> {
    /// The job.
    pub graph: &'a JobGraph,
    /// How it runs.
    pub config: &'a RunConfig,
    /// Checkpoint storage.
    pub store: &'a dyn CheckpointStore,
    /// Keys of the job's checkpoints.
    pub paths: &'a Paths,
    /// The job's counters.
    pub metrics: &'a JobMetrics,
    /// Requests from outside.
    pub requests: &'a JobRequests,
    /// The newest completed checkpoint (at first, the one the attempt restored).
    pub last_completed: Cell<Option<CheckpointId>>,
    /// The runner's claim on the deployment's storage, checked before each write
    /// that commits or deletes.
    pub fence: &'a Fence,
    /// Checkpoint ids reserved in storage.
    pub ids: &'a IdReservation,
    /// Whether the stop marker goes when the next checkpoint completes (the
    /// attempt restored the savepoint the deployment was stopped with).
    pub clears_marker: &'a Cell<bool>,
    /// Checkpoints that failed since the last one completed.
    pub failed_in_a_row: Cell<u32>,
}

/// Deletes the files under `shared/` that no retained checkpoint refers to.
///
/// Runs when a checkpoint completes, before the next is triggered: a checkpoint
/// in flight refers only to files of the newest completed one (which is retained)
/// and to files it uploads itself, which appear after this runs.
pub fn collect_shared(
    store: &dyn CheckpointStore,
    paths: &Paths,
    retained: impl Iterator<Item = CheckpointId>,
) -> Result<usize> {
    let shared = paths.shared();
    let files = store.list(&shared)?;
    if files.is_empty() {
        return Ok(0);
    }
    let mut referenced = std::collections::HashSet::new();
    for id in retained {
        let key = paths.metadata(id);
        let metadata = CheckpointMetadata::parse(&store.uri(&key), &store.get(&key)?)?;
        referenced.extend(metadata.shared_files().map(|p| format!("{shared}{p}")));
    }
    let garbage: Vec<String> = files
        .into_iter()
        .filter(|f| !referenced.contains(f))
        .collect();
    store.delete(&garbage)?;
    if !garbage.is_empty() {
        tracing::debug!(files = garbage.len(), "deleted unreferenced shared files");
    }
    Ok(garbage.len())
}

/// The savepoints of one attempt: asked for, and the one in flight.
#[derive(Default)]
struct Savepoints {
    queued: VecDeque<SavepointRequest>,
    in_flight: Option<(CheckpointId, SavepointRequest)>,
}

/// How long a failure that only follows from another task's (a closed channel)
/// waits for that task to report what went wrong.
const CAUSE_GRACE: Duration = Duration::from_millis(500);

/// The error that ends an attempt. A task whose channel closed failed only
/// because another one did, and the two reports race; so the cause, if it arrives
/// within `grace`, wins, and whether the job restarts follows from it: a bad
/// record must fail the job, not restart it because a neighbour saw it go.
fn cause_of(first: Error, events: &Receiver<TaskEvent>, grace: Duration) -> Error {
    if !matches!(first, Error::ChannelClosed) {
        return first;
    }
    let deadline = Instant::now() + grace;
    while let Ok(event) = events.recv_deadline(deadline) {
        if let TaskEvent::Failed(task, error) = event {
            if !matches!(error, Error::ChannelClosed) {
                tracing::debug!(%task, %error, "the failure that closed the channels");
                return error;
            }
        }
    }
    first
}

/// The final checkpoint, completed, waiting for every task to confirm its commit.
struct FinalCommit {
    id: CheckpointId,
    waiting: BTreeSet<TaskId>,
}

impl Coordination<'_> {
    /// Runs the attempt's loop until the job ends, stops or is cancelled, or fails.
    pub fn run(
        &self,
        coordinator: &mut CheckpointCoordinator,
        running: &dyn Deployment,
        injector: &mut FailureInjector,
    ) -> Result<AttemptEnd> {
        let mut savepoints = Savepoints::default();
        let mut committing = None;
        let outcome = self.run_loop(
            coordinator,
            running,
            injector,
            &mut savepoints,
            &mut committing,
        );
        if let Err(e) = &outcome {
            let reason = format!("the job failed before the savepoint completed: {e}");
            for request in savepoints
                .in_flight
                .take()
                .map(|(_, r)| r)
                .into_iter()
                .chain(savepoints.queued.drain(..))
            {
                self.requests
                    .resolve(&request.handle, SavepointProgress::Failed(reason.clone()));
            }
        }
        outcome
    }

    fn run_loop(
        &self,
        coordinator: &mut CheckpointCoordinator,
        running: &dyn Deployment,
        injector: &mut FailureInjector,
        savepoints: &mut Savepoints,
        committing: &mut Option<FinalCommit>,
    ) -> Result<AttemptEnd> {
        let events = running.events();
        let requests = &self.requests.receiver;
        loop {
            let deadline = [coordinator.next_deadline(), injector.next_at()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let mut select = Select::new();
            let events_index = select.recv(events);
            select.recv(requests);
            if let Ok(ready) = select.ready_deadline(deadline) {
                if ready == events_index {
                    match events.try_recv() {
                        Ok(event) => {
                            if let Some(end) = self.on_event(
                                event,
                                coordinator,
                                running,
                                injector,
                                savepoints,
                                committing,
                            )? {
                                return Ok(end);
                            }
                        }
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => {
                            return Err(Error::Internal("every task is gone".into()));
                        }
                    }
                } else if let Ok(request) = requests.try_recv() {
                    match request {
                        JobRequest::Cancel => {
                            tracing::info!("job cancelled on request");
                            return Ok(AttemptEnd::Canceled);
                        }
                        JobRequest::Savepoint(r) if coordinator.all_ended() => {
                            self.requests.resolve(
                                &r.handle,
                                SavepointProgress::Failed(
                                    "the job's input has ended; it is finishing".into(),
                                ),
                            );
                        }
                        JobRequest::Savepoint(r) => savepoints.queued.push_back(r),
                    }
                }
            }
            let now = Instant::now();
            if let Some(p) = coordinator.expire(now) {
                let reason = format!(
                    "timed out after {} ms",
                    self.config.checkpoint_timeout.as_millis()
                );
                tracing::warn!(checkpoint = p.id.0, %reason, "checkpoint declined");
                self.abandon(p, &reason, savepoints)?;
            }
            if !savepoints.queued.is_empty() {
                if let Some((id, targets)) =
                    self.reserved(coordinator.trigger(now), coordinator, savepoints)?
                {
                    if let Some(request) = savepoints.queued.pop_front() {
                        tracing::info!(checkpoint = id.0, stop = request.stop, savepoint = %request.handle, "triggering savepoint");
                        let barrier = Barrier {
                            id,
                            kind: SnapshotKind::Savepoint(request.format),
                            last_completed: self.last_completed.get(),
                        };
                        let control = if request.stop {
                            Control::Stop(barrier)
                        } else {
                            Control::Trigger(barrier)
                        };
                        for task in targets {
                            running.send(task, control);
                        }
                        savepoints.in_flight = Some((id, request));
                    }
                }
            }
            let due = coordinator.poll(now);
            if let Some((id, targets)) = self.reserved(due, coordinator, savepoints)? {
                tracing::debug!(checkpoint = id.0, "triggering checkpoint");
                let barrier = Barrier::checkpoint(id, self.last_completed.get());
                for task in targets {
                    running.send(task, Control::Trigger(barrier));
                }
            }
            let tasks = running.tasks();
            if let Some(victim) = injector.poll(now, tasks.len()) {
                let task = tasks[victim];
                tracing::info!(%task, "injecting a failure");
                running.send(task, Control::Fail);
            }
        }
    }

    /// Handles one task event; returns how the attempt ended if it did.
    fn on_event(
        &self,
        event: TaskEvent,
        coordinator: &mut CheckpointCoordinator,
        running: &dyn Deployment,
        injector: &mut FailureInjector,
        savepoints: &mut Savepoints,
        committing: &mut Option<FinalCommit>,
    ) -> Result<Option<AttemptEnd>> {
        match event {
            TaskEvent::Ack(ack) => {
                let Some(done) = coordinator.ack(ack) else {
                    return Ok(None);
                };
                let id = done.id;
                if savepoints.in_flight.as_ref().is_some_and(|(s, _)| *s == id) {
                    return self.complete_savepoint(done, running, savepoints);
                }
                let is_final = done.is_final;
                match self.complete(done) {
                    Ok(()) => {
                        let tasks = running.tasks();
                        if let Some(victim) =
                            is_final.then(|| injector.poll_final(tasks.len())).flatten()
                        {
                            tracing::info!(task = %tasks[victim], checkpoint = id.0, "injecting a failure between the final checkpoint's completion and its commit");
                            running.send(tasks[victim], Control::Fail);
                        }
                        running.broadcast(Control::Complete(id));
                        if is_final {
                            *committing = Some(FinalCommit {
                                id,
                                waiting: running.tasks().into_iter().collect(),
                            });
                        }
                    }
                    Err(e) if is_final || matches!(e, Error::Fenced { .. }) => return Err(e),
                    Err(e) => {
                        tracing::warn!(checkpoint = id.0, error = %e, "checkpoint could not be completed");
                        self.failed(&format!("completing it failed: {e}"))?;
                    }
                }
            }
            TaskEvent::Committed(task, id) => {
                if let Some(commit) = committing.as_mut().filter(|c| c.id == id) {
                    commit.waiting.remove(&task);
                    if commit.waiting.is_empty() {
                        tracing::info!(
                            checkpoint = id.0,
                            "every task committed the final checkpoint"
                        );
                        return Ok(Some(AttemptEnd::Finished(id)));
                    }
                }
            }
            TaskEvent::Decline { task, id, reason } => {
                if let Some(p) = coordinator.decline(id) {
                    tracing::warn!(checkpoint = id.0, %task, %reason, "checkpoint declined");
                    self.abandon(p, &format!("task {task} declined it: {reason}"), savepoints)?;
                }
            }
            TaskEvent::Ended(task) => {
                if let Some(id) = coordinator.ended(task) {
                    let savepoint = savepoints.in_flight.as_ref().filter(|(s, _)| *s == id);
                    let barrier = Barrier {
                        id,
                        kind: savepoint.map_or(SnapshotKind::Checkpoint, |(_, r)| {
                            SnapshotKind::Savepoint(r.format)
                        }),
                        last_completed: self.last_completed.get(),
                    };
                    running.send(
                        task,
                        if savepoint.is_some_and(|(_, r)| r.stop) {
                            Control::Stop(barrier)
                        } else {
                            Control::Trigger(barrier)
                        },
                    );
                }
            }
            TaskEvent::Failed(task, error) => {
                tracing::debug!(%task, %error, "task failed");
                return Err(cause_of(error, running.events(), CAUSE_GRACE));
            }
            TaskEvent::Exited(task) => {
                return Err(Error::Internal(format!(
                    "task {task} exited before the job finished"
                )));
            }
        }
        Ok(None)
    }

    /// The `_metadata` of a checkpoint whose every task has acknowledged.
    fn metadata(&self, done: PendingCheckpoint) -> CheckpointMetadata {
        let duration = done.started.elapsed();
        let started_ms = SystemTime::now()
            .checked_sub(duration)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        CheckpointMetadata {
            format_version: FORMAT_VERSION,
            job: self.graph.name.clone(),
            job_id: Some(self.paths.id().clone()),
            checkpoint_id: done.id,
            timestamp_ms: started_ms,
            duration_ms: duration.as_millis() as u64,
            uploaded_bytes: done.uploaded_bytes,
            max_parallelism: self.graph.max_parallelism,
            operators: done.into_operators(),
        }
    }

    /// Writes `_metadata` (the commit point, once) and applies retention, each
    /// after checking that no later coordinator has taken over.
    fn complete(&self, done: PendingCheckpoint) -> Result<()> {
        let id = done.id;
        let metadata = self.metadata(done);
        self.fence.check()?;
        match self
            .store
            .put_new(&self.paths.metadata(id), &metadata.to_bytes()?)
        {
            // Someone else committed this id: a successor, which the fence says.
            Err(e @ Error::AlreadyExists { .. }) => {
                self.fence.check()?;
                return Err(e);
            }
            other => other?,
        }
        self.last_completed.set(Some(id));
        self.failed_in_a_row.set(0);
        self.metrics
            .checkpoints_failed_in_a_row
            .store(0, Ordering::Relaxed);
        if self.clears_marker.get() {
            // The job resumed from the savepoint it was stopped with and has a
            // newer checkpoint now: the marker's hold is over.
            match self.store.delete(&[self.paths.stopped()]) {
                Ok(()) => self.clears_marker.set(false),
                Err(e) => {
                    tracing::warn!(error = %e, "could not remove the stop marker; retrying at the next checkpoint")
                }
            }
        }
        self.metrics.checkpoint_completed(CheckpointSummary {
            id: id.0,
            uri: self.store.uri(&self.paths.checkpoint_dir(id)),
            timestamp_ms: metadata.timestamp_ms,
            duration_ms: metadata.duration_ms,
            bytes: metadata.state_size(),
        });
        tracing::debug!(
            checkpoint = id.0,
            duration_ms = metadata.duration_ms,
            bytes = metadata.state_size(),
            "checkpoint complete"
        );
        let listing = Listing::from_keys(self.paths, &self.store.list(&self.paths.checkpoints())?);
        let deleted = listing.to_delete(id, self.config.retained);
        self.fence.check()?;
        for old in &deleted {
            if let Err(e) = self.store.delete_prefix(&self.paths.checkpoint_dir(*old)) {
                tracing::warn!(checkpoint = old.0, error = %e, "could not delete an old checkpoint");
            }
        }
        let retained = listing.complete.iter().filter(|c| !deleted.contains(c));
        if let Err(e) = collect_shared(self.store, self.paths, retained.copied()) {
            tracing::warn!(error = %e, "could not delete unreferenced shared files");
        }
        Ok(())
    }

    /// Moves a savepoint's staged state into its own directory and records it; a
    /// stop-with-savepoint then commits the tasks' side effects and ends the attempt.
    fn complete_savepoint(
        &self,
        done: PendingCheckpoint,
        running: &dyn Deployment,
        savepoints: &mut Savepoints,
    ) -> Result<Option<AttemptEnd>> {
        let Some((id, request)) = savepoints.in_flight.take() else {
            return Ok(None);
        };
        let staging = self.paths.checkpoint_dir(id);
        let metadata = self.metadata(done);
        let written = self.fence.check().and_then(|()| {
            SavepointTarget::new(request.target.as_deref(), self.paths, id)
                .and_then(|target| target.write(self.store, self.paths, &staging, &metadata))
        });
        if let Err(e) = self.store.delete_prefix(&staging) {
            tracing::warn!(checkpoint = id.0, error = %e, "could not delete a savepoint's staged state");
        }
        match written {
            Ok(path) => {
                if request.stop {
                    // Before anything commits: a coordinator restarted from now on
                    // must not resume from an older checkpoint (see `paths.stopped()`).
                    let marker = StopMarker {
                        savepoint: path.clone(),
                        checkpoint_id: id,
                        timestamp_ms: metadata.timestamp_ms,
                    };
                    let written = self.fence.check().and_then(|()| {
                        crate::checkpoint::runs::write_marker(self.store, self.paths, &marker)
                    });
                    if let Err(e) = written {
                        let reason = format!("recording the stop failed: {e}");
                        self.requests
                            .resolve(&request.handle, SavepointProgress::Failed(reason.clone()));
                        return Err(Error::Internal(format!(
                            "stop-with-savepoint failed ({reason}); restarting the job"
                        )));
                    }
                }
                self.requests.resolve(
                    &request.handle,
                    SavepointProgress::Completed {
                        path: path.clone(),
                        checkpoint: id,
                    },
                );
                if request.stop {
                    running.broadcast(Control::Complete(id));
                    return Ok(Some(AttemptEnd::Stopped(path)));
                }
                Ok(None)
            }
            Err(e) => {
                self.metrics
                    .checkpoints_failed
                    .fetch_add(1, Ordering::Relaxed);
                let reason = format!("writing the savepoint failed: {e}");
                self.requests
                    .resolve(&request.handle, SavepointProgress::Failed(reason.clone()));
                if request.stop {
                    return Err(Error::Internal(format!(
                        "stop-with-savepoint failed ({reason}); restarting the job"
                    )));
                }
                Ok(None)
            }
        }
    }

    /// Counts a declined checkpoint and deletes what it had written; a savepoint
    /// declined fails its request, and a stop-with-savepoint declined fails the attempt.
    fn abandon(
        &self,
        pending: PendingCheckpoint,
        reason: &str,
        savepoints: &mut Savepoints,
    ) -> Result<()> {
        let deleted = self.fence.check().and_then(|()| {
            self.store
                .delete_prefix(&self.paths.checkpoint_dir(pending.id))
        });
        match deleted {
            Err(e @ Error::Fenced { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(checkpoint = pending.id.0, error = %e, "could not delete a declined checkpoint; retention deletes it later");
            }
            Ok(()) => {}
        }
        // A savepoint that fails fails its request; only checkpoints count
        // towards the tolerable failures (as in Flink).
        let savepoint = savepoints
            .in_flight
            .as_ref()
            .is_some_and(|(id, _)| *id == pending.id);
        if savepoint {
            self.metrics
                .checkpoints_failed
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed(reason)?;
        }
        match savepoints.in_flight.take() {
            Some((id, request)) if id == pending.id => {
                let reason = format!("savepoint declined: {reason}");
                self.requests
                    .resolve(&request.handle, SavepointProgress::Failed(reason.clone()));
                if request.stop {
                    return Err(Error::Internal(format!(
                        "stop-with-savepoint failed ({reason}); restarting the job"
                    )));
                }
                Ok(())
            }
            other => {
                savepoints.in_flight = other;
                Ok(())
            }
        }
    }

    /// Counts a failed checkpoint; one more than the tolerable number in a row
    /// fails the attempt, which restarts from the latest checkpoint.
    fn failed(&self, reason: &str) -> Result<()> {
        self.metrics
            .checkpoints_failed
            .fetch_add(1, Ordering::Relaxed);
        let in_a_row = self.failed_in_a_row.get() + 1;
        self.failed_in_a_row.set(in_a_row);
        self.metrics
            .checkpoints_failed_in_a_row
            .store(u64::from(in_a_row), Ordering::Relaxed);
        if in_a_row > self.config.tolerable_failed_checkpoints {
            return Err(Error::CheckpointsFailing {
                failures: in_a_row,
                tolerable: self.config.tolerable_failed_checkpoints,
                last: reason.to_string(),
            });
        }
        Ok(())
    }

    /// Reserves the id of a checkpoint just triggered before its barriers go out;
    /// a reservation that cannot be written declines the checkpoint.
    fn reserved(
        &self,
        triggered: Option<(CheckpointId, Vec<TaskId>)>,
        coordinator: &mut CheckpointCoordinator,
        savepoints: &mut Savepoints,
    ) -> Result<Option<(CheckpointId, Vec<TaskId>)>> {
        let Some((id, targets)) = triggered else {
            return Ok(None);
        };
        // A new block is a write: never by a coordinator that was superseded
        // (it could lower its successor's reservation).
        let reserved = match self.ids.covers(id) {
            true => Ok(()),
            false => self.fence.check().and_then(|()| self.ids.reserve(id)),
        };
        match reserved {
            Err(e @ Error::Fenced { .. }) => Err(e),
            Ok(()) => Ok(Some((id, targets))),
            Err(e) => {
                tracing::warn!(checkpoint = id.0, error = %e, "checkpoint declined: its id could not be reserved");
                if let Some(p) = coordinator.decline(id) {
                    self.abandon(p, &format!("reserving its id failed: {e}"), savepoints)?;
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(chain: u32) -> TaskId {
        TaskId { chain, subtask: 0 }
    }

    fn bad_record() -> Error {
        Error::BadRecord {
            operator: "text source".into(),
            reason: "bin.txt at byte 3: not UTF-8".into(),
        }
    }

    #[test]
    fn a_closed_channel_yields_to_the_failure_that_closed_it() {
        let (tx, rx) = crossbeam_channel::unbounded();
        tx.send(TaskEvent::Failed(task(2), Error::ChannelClosed))
            .expect("send");
        tx.send(TaskEvent::Ended(task(3))).expect("send");
        tx.send(TaskEvent::Failed(task(1), bad_record()))
            .expect("send");
        let error = cause_of(Error::ChannelClosed, &rx, Duration::from_secs(5));
        assert!(matches!(error, Error::BadRecord { .. }), "{error}");
    }

    #[test]
    fn a_closed_channel_with_no_other_failure_is_reported_after_the_grace() {
        let (_tx, rx) = crossbeam_channel::unbounded();
        let error = cause_of(Error::ChannelClosed, &rx, Duration::from_millis(10));
        assert!(matches!(error, Error::ChannelClosed));
    }

    #[test]
    fn a_failure_of_its_own_does_not_wait() {
        let (_tx, rx) = crossbeam_channel::unbounded::<TaskEvent>();
        let error = cause_of(bad_record(), &rx, Duration::from_secs(3600));
        assert!(matches!(error, Error::BadRecord { .. }));
    }
}
