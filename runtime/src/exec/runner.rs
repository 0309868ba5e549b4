//! The local job runner: runs every task of a job on threads in this process, acts as
//! the checkpoint coordinator, and restarts the job from its latest checkpoint on failure.
//!
//! One attempt, step by step:
//! 1. Deploy every task (restoring state from the chosen checkpoint) and start the uploader.
//! 2. Loop on task events: trigger checkpoints on schedule, collect acknowledgements,
//!    write `_metadata` when all are in, notify the tasks, apply retention.
//! 3. When every task's input has ended, take the final checkpoint, notify, and tell
//!    the tasks to finish: the job is done.
//! 4. When a task fails, cancel every task and wait for them; then (bounded, with
//!    backoff) start a new attempt from the latest completed checkpoint.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};

use crate::api::JobGraph;
use crate::checkpoint::coordinator::{CheckpointCoordinator, PendingCheckpoint};
use crate::checkpoint::metadata::{CheckpointMetadata, FORMAT_VERSION};
use crate::checkpoint::paths::Paths;
use crate::checkpoint::restore::{self, RestorePoint};
use crate::checkpoint::retention::Listing;
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::error::{Error, ErrorClass, Result};
use crate::exec::config::ExecConfig;
use crate::exec::deploy::{check_restore, deploy};
use crate::exec::inject::FailureInjector;
use crate::exec::task::{Control, TaskEvent, TaskRuntime};
use crate::exec::upload::run_uploader;
use crate::ids::{CheckpointId, TaskId};
use crate::metrics::JobMetrics;

/// Where a run starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreFrom {
    /// A fresh start.
    Nothing,
    /// The latest completed checkpoint in the checkpoint directory (an error if there is none).
    Latest,
    /// A checkpoint or savepoint directory (or its `_metadata`).
    Path(String),
}

/// How a job runs: checkpoints, restarts, failure injection, data path tuning.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Base URI of checkpoint storage; checkpoints go to `{base}/{job}/checkpoints/`.
    pub checkpoint_dir: String,
    /// Time between checkpoints (`None`: only the final one).
    pub checkpoint_interval: Option<Duration>,
    /// A checkpoint not complete after this long is declined.
    pub checkpoint_timeout: Duration,
    /// Completed checkpoints to keep.
    pub retained: usize,
    /// Where to start from.
    pub restore: RestoreFrom,
    /// Restore even if the checkpoint has state of operators the job lacks.
    pub allow_non_restored_state: bool,
    /// Restarts allowed before the job fails for good.
    pub max_restarts: u32,
    /// Wait before the first restart; doubles up to `max_backoff`.
    pub restart_backoff: Duration,
    /// Longest wait between restarts.
    pub max_backoff: Duration,
    /// Failures to inject on purpose.
    pub inject_failures: u32,
    /// Seed of failure injection.
    pub seed: u64,
    /// Data path tuning.
    pub exec: ExecConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            checkpoint_dir: ".weir/checkpoints".into(),
            checkpoint_interval: Some(Duration::from_secs(5)),
            checkpoint_timeout: Duration::from_secs(60),
            retained: 3,
            restore: RestoreFrom::Nothing,
            allow_non_restored_state: false,
            max_restarts: 10,
            restart_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            inject_failures: 0,
            seed: 0,
            exec: ExecConfig::default(),
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The final checkpoint.
    pub final_checkpoint: CheckpointId,
    /// Where it is.
    pub final_checkpoint_uri: String,
    /// Restarts after failures.
    pub restarts: u32,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Runs jobs in this process.
pub struct LocalRunner {
    graph: JobGraph,
    config: RunConfig,
    store: Arc<dyn CheckpointStore>,
    paths: Paths,
    metrics: Arc<JobMetrics>,
}

impl LocalRunner {
    /// A runner for `graph`.
    pub fn new(graph: JobGraph, config: RunConfig) -> Result<Self> {
        let store: Arc<dyn CheckpointStore> = Arc::from(open_store(&config.checkpoint_dir)?);
        let paths = Paths::new(&graph.name);
        Ok(LocalRunner {
            graph,
            config,
            store,
            paths,
            metrics: Arc::new(JobMetrics::default()),
        })
    }

    /// The job's counters (live while it runs).
    pub fn metrics(&self) -> Arc<JobMetrics> {
        self.metrics.clone()
    }

    /// Where the job's checkpoints go.
    pub fn checkpoints_uri(&self) -> String {
        self.store.uri(&self.paths.checkpoints())
    }

    /// Runs the job to its end, restarting it after failures.
    pub fn run(&self) -> Result<RunSummary> {
        let started = Instant::now();
        let initial: Option<Arc<RestorePoint>> = match &self.config.restore {
            RestoreFrom::Nothing => None,
            RestoreFrom::Latest => Some(Arc::new(
                restore::latest(self.store.as_ref(), &self.paths)?
                    .ok_or_else(|| Error::NoCheckpoint(self.checkpoints_uri()))?,
            )),
            RestoreFrom::Path(path) => Some(Arc::new(restore::explicit(path)?)),
        };
        if let Some(point) = &initial {
            check_restore(&self.graph, point, self.config.allow_non_restored_state)?;
            tracing::info!(checkpoint = point.metadata.checkpoint_id.0, from = %point.location, "restoring");
        }
        let first_id = initial
            .as_ref()
            .map_or(CheckpointId(1), |p| p.metadata.checkpoint_id.next());
        let mut next_id = self.listing()?.next_id(first_id);
        let mut restore_point = initial.clone();
        let max_delay = self
            .config
            .checkpoint_interval
            .map_or(Duration::from_secs(1), |i| i * 2);
        let mut injector =
            FailureInjector::new(self.config.inject_failures, self.config.seed, max_delay);
        let mut restarts = 0u32;
        let mut backoff = self.config.restart_backoff;
        loop {
            match self.attempt(restore_point.as_deref(), next_id, &mut injector) {
                Ok(final_id) => {
                    return Ok(RunSummary {
                        final_checkpoint: final_id,
                        final_checkpoint_uri: self.store.uri(&self.paths.checkpoint_dir(final_id)),
                        restarts,
                        elapsed: started.elapsed(),
                    })
                }
                Err((error, last_id)) => {
                    next_id = last_id;
                    let injected = matches!(error, Error::InjectedFailure(_));
                    if error.class() == ErrorClass::User {
                        return Err(error);
                    }
                    if !injected && restarts >= self.config.max_restarts {
                        return Err(Error::RestartLimit {
                            restarts,
                            limit: self.config.max_restarts,
                            last: Box::new(error),
                        });
                    }
                    restarts += 1;
                    self.metrics.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, restart = restarts, backoff_ms = backoff.as_millis() as u64, "job failed; restarting from the latest checkpoint");
                    std::thread::sleep(backoff);
                    if !injected {
                        backoff = (backoff * 2).min(self.config.max_backoff);
                    }
                    restore_point = match restore::latest(self.store.as_ref(), &self.paths)? {
                        Some(point) => Some(Arc::new(point)),
                        None => initial.clone(),
                    };
                    next_id = self.listing()?.next_id(next_id);
                }
            }
        }
    }

    fn listing(&self) -> Result<Listing> {
        Ok(Listing::from_keys(
            &self.paths,
            &self.store.list(&self.paths.checkpoints())?,
        ))
    }

    /// One deployment of the job. Returns the final checkpoint, or the failure and
    /// the next unused checkpoint id.
    fn attempt(
        &self,
        restore: Option<&RestorePoint>,
        next_id: CheckpointId,
        injector: &mut FailureInjector,
    ) -> Result<CheckpointId, (Error, CheckpointId)> {
        let tasks = deploy(&self.graph, &self.config.exec, restore, &self.metrics)
            .map_err(|e| (e, next_id))?;
        let (events_tx, events) = unbounded::<TaskEvent>();
        let (uploads_tx, uploads) = unbounded();
        let uploader = {
            let (store, paths, events) =
                (self.store.clone(), self.paths.clone(), events_tx.clone());
            std::thread::Builder::new()
                .name("weir-uploader".into())
                .spawn(move || run_uploader(store, paths, uploads, events))
                .map_err(|e| (Error::Internal(format!("spawning uploader: {e}")), next_id))?
        };
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        let sources: Vec<TaskId> = tasks.iter().filter(|t| t.is_source).map(|t| t.id).collect();
        let mut running = Running::default();
        for task in tasks {
            let (control_tx, control) = unbounded();
            let mut rt = TaskRuntime::new(
                task.id,
                control,
                events_tx.clone(),
                uploads_tx.clone(),
                task.metrics,
            );
            let (body, events) = (task.body, events_tx.clone());
            let span = tracing::info_span!("task", job = %self.graph.name, task = %task.id);
            let handle = std::thread::Builder::new()
                .name(format!("weir-task-{}", task.id))
                .spawn(move || {
                    let _span = span.enter();
                    let id = rt.id;
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        body.run(&mut rt)
                    }));
                    let event = match outcome {
                        Ok(Ok(())) => TaskEvent::Exited(id),
                        Ok(Err(e)) => TaskEvent::Failed(id, e),
                        Err(panic) => TaskEvent::Failed(
                            id,
                            Error::TaskPanicked {
                                task: id,
                                message: panic_message(&panic),
                            },
                        ),
                    };
                    let _ = events.send(event);
                })
                .map_err(|e| (Error::Internal(format!("spawning task: {e}")), next_id));
            match handle {
                Ok(handle) => running.tasks.push((task.id, control_tx, handle)),
                Err(e) => {
                    running.cancel();
                    return Err(e);
                }
            }
        }
        drop(uploads_tx);
        drop(events_tx);
        let now = Instant::now();
        let mut coordinator = CheckpointCoordinator::new(
            ids,
            sources,
            next_id,
            self.config.checkpoint_interval,
            self.config.checkpoint_timeout,
            now,
        );
        injector.on_start(now);
        let outcome = self.coordinate(&mut coordinator, &running, &events, injector);
        let next = coordinator.next_id();
        match outcome {
            Ok(final_id) => {
                running.finish();
                let _ = uploader.join();
                Ok(final_id)
            }
            Err(e) => {
                running.cancel();
                let _ = uploader.join();
                Err((e, next))
            }
        }
    }

    /// The coordinator loop of one attempt; returns the final checkpoint once the job is done.
    fn coordinate(
        &self,
        coordinator: &mut CheckpointCoordinator,
        running: &Running,
        events: &crossbeam_channel::Receiver<TaskEvent>,
        injector: &mut FailureInjector,
    ) -> Result<CheckpointId> {
        loop {
            let deadline = [coordinator.next_deadline(), injector.next_at()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            match events.recv_deadline(deadline) {
                Ok(TaskEvent::Ack(ack)) => {
                    if let Some(done) = coordinator.ack(ack) {
                        let is_final = done.is_final;
                        let id = done.id;
                        match self.complete(done) {
                            Ok(()) => {
                                running.broadcast(Control::Complete(id));
                                if is_final {
                                    return Ok(id);
                                }
                            }
                            Err(e) if is_final => return Err(e),
                            Err(e) => {
                                self.metrics
                                    .checkpoints_failed
                                    .fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(checkpoint = id.0, error = %e, "checkpoint could not be completed");
                            }
                        }
                    }
                }
                Ok(TaskEvent::Decline { task, id, reason }) => {
                    if let Some(p) = coordinator.decline(id) {
                        tracing::warn!(checkpoint = id.0, %task, %reason, "checkpoint declined");
                        self.abandon(p);
                    }
                }
                Ok(TaskEvent::Ended(task)) => {
                    if let Some(id) = coordinator.ended(task) {
                        running.send(task, Control::Trigger(id));
                    }
                }
                Ok(TaskEvent::Failed(task, error)) => {
                    tracing::debug!(%task, %error, "task failed");
                    return Err(error);
                }
                Ok(TaskEvent::Exited(task)) => {
                    return Err(Error::Internal(format!(
                        "task {task} exited before the job finished"
                    )));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Internal("every task is gone".into()));
                }
            }
            let now = Instant::now();
            if let Some(p) = coordinator.expire(now) {
                tracing::warn!(
                    checkpoint = p.id.0,
                    timeout_ms = self.config.checkpoint_timeout.as_millis() as u64,
                    "checkpoint timed out; declined"
                );
                self.abandon(p);
            }
            if let Some((id, targets)) = coordinator.poll(now) {
                tracing::debug!(checkpoint = id.0, "triggering checkpoint");
                for task in targets {
                    running.send(task, Control::Trigger(id));
                }
            }
            if let Some(victim) = injector.poll(now, running.tasks.len()) {
                let task = running.tasks[victim].0;
                tracing::info!(%task, "injecting a failure");
                running.send(task, Control::Fail);
            }
        }
    }

    /// Writes `_metadata` (the commit point) and applies retention.
    fn complete(&self, done: PendingCheckpoint) -> Result<()> {
        let id = done.id;
        let duration = done.started.elapsed();
        let started_ms = SystemTime::now()
            .checked_sub(duration)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        let metadata = CheckpointMetadata {
            format_version: FORMAT_VERSION,
            job: self.graph.name.clone(),
            checkpoint_id: id,
            timestamp_ms: started_ms,
            duration_ms: duration.as_millis() as u64,
            max_parallelism: self.graph.max_parallelism,
            operators: done.into_operators(),
        };
        self.store
            .put(&self.paths.metadata(id), &metadata.to_bytes()?)?;
        self.metrics
            .checkpoints_completed
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .last_checkpoint_ms
            .store(metadata.duration_ms, Ordering::Relaxed);
        self.metrics
            .last_checkpoint_bytes
            .store(metadata.state_size(), Ordering::Relaxed);
        tracing::debug!(
            checkpoint = id.0,
            duration_ms = metadata.duration_ms,
            bytes = metadata.state_size(),
            "checkpoint complete"
        );
        let listing = self.listing()?;
        for old in listing.to_delete(id, self.config.retained) {
            if let Err(e) = self.store.delete_prefix(&self.paths.checkpoint_dir(old)) {
                tracing::warn!(checkpoint = old.0, error = %e, "could not delete an old checkpoint");
            }
        }
        Ok(())
    }

    /// Counts a declined checkpoint and deletes what it had written.
    fn abandon(&self, pending: PendingCheckpoint) {
        self.metrics
            .checkpoints_failed
            .fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self
            .store
            .delete_prefix(&self.paths.checkpoint_dir(pending.id))
        {
            tracing::warn!(checkpoint = pending.id.0, error = %e, "could not delete a declined checkpoint");
        }
    }
}

/// The threads of one attempt and their control channels.
#[derive(Default)]
struct Running {
    tasks: Vec<(TaskId, Sender<Control>, JoinHandle<()>)>,
}

impl Running {
    fn send(&self, task: TaskId, control: Control) {
        if let Some((_, tx, _)) = self.tasks.iter().find(|(id, _, _)| *id == task) {
            // A task that is gone has already reported why; nothing to do here.
            let _ = tx.send(control);
        }
    }

    fn broadcast(&self, control: Control) {
        for (_, tx, _) in &self.tasks {
            let _ = tx.send(control);
        }
    }

    /// Sends `control` to every task and joins them. Events go to an unbounded
    /// channel, so no task can block on reporting how it ended.
    fn stop(self, control: Control) {
        self.broadcast(control);
        for (_, _, handle) in self.tasks {
            let _ = handle.join();
        }
    }

    fn cancel(self) {
        self.stop(Control::Cancel);
    }

    fn finish(self) {
        self.stop(Control::Finish);
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}
