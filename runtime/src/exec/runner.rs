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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::RecvTimeoutError;

use crate::api::JobGraph;
use crate::checkpoint::coordinator::{CheckpointCoordinator, PendingCheckpoint};
use crate::checkpoint::metadata::{CheckpointMetadata, FORMAT_VERSION};
use crate::checkpoint::paths::Paths;
use crate::checkpoint::restore::{self, RestorePoint};
use crate::checkpoint::retention::Listing;
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::error::{Error, ErrorClass, Result};
use crate::exec::config::ExecConfig;
use crate::exec::deploy::check_restore;
use crate::exec::inject::FailureInjector;
use crate::exec::local::LocalDeployer;
use crate::exec::task::{Control, TaskEvent};
use crate::ids::{CheckpointId, TaskId};
use crate::metrics::{CheckpointSummary, JobMetrics};

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

/// Starts attempts of a job: on threads of this process, or on workers.
pub trait Deployer {
    /// Starts every task of `graph`, restoring state from `restore`.
    fn deploy(
        &self,
        graph: &JobGraph,
        restore: Option<&RestorePoint>,
        metrics: &Arc<JobMetrics>,
    ) -> Result<Box<dyn Deployment>>;
}

/// The running tasks of one attempt, as the coordinator sees them.
pub trait Deployment {
    /// Every task of the attempt.
    fn tasks(&self) -> Vec<TaskId>;
    /// The tasks fed by sources.
    fn sources(&self) -> Vec<TaskId>;
    /// Sends a control message to a task (a task that is gone is ignored).
    fn send(&self, task: TaskId, control: Control);
    /// Sends a control message to every task.
    fn broadcast(&self, control: Control) {
        for task in self.tasks() {
            self.send(task, control);
        }
    }
    /// Events from the tasks and their uploads.
    fn events(&self) -> &crossbeam_channel::Receiver<TaskEvent>;
    /// Sends `control` (`Cancel` or `Finish`) to every task and waits until they are gone.
    fn stop(self: Box<Self>, control: Control);
}

/// Runs a job to its end: deploys attempts, coordinates checkpoints, restarts on failure.
pub struct JobRunner<D> {
    graph: JobGraph,
    config: RunConfig,
    store: Arc<dyn CheckpointStore>,
    paths: Paths,
    metrics: Arc<JobMetrics>,
    deployer: D,
}

/// Runs every task of a job on threads of this process (`weir run`).
pub type LocalRunner = JobRunner<LocalDeployer>;

impl LocalRunner {
    /// A runner for `graph` in this process.
    pub fn new(graph: JobGraph, config: RunConfig) -> Result<Self> {
        let store: Arc<dyn CheckpointStore> = Arc::from(open_store(&config.checkpoint_dir)?);
        let paths = Paths::new(&graph.name);
        let deployer = LocalDeployer {
            store: store.clone(),
            paths: paths.clone(),
            exec: config.exec.clone(),
            attempt: crate::exec::deploy::attempt_base().into(),
        };
        Ok(JobRunner {
            graph,
            config,
            store,
            paths,
            metrics: Arc::new(JobMetrics::default()),
            deployer,
        })
    }
}

impl<D: Deployer> JobRunner<D> {
    /// A runner deploying with `deployer`, checkpointing to `store`.
    pub fn with_deployer(
        graph: JobGraph,
        config: RunConfig,
        store: Arc<dyn CheckpointStore>,
        deployer: D,
    ) -> Self {
        let paths = Paths::new(&graph.name);
        JobRunner {
            graph,
            config,
            store,
            paths,
            metrics: Arc::new(JobMetrics::default()),
            deployer,
        }
    }

    /// Makes the runner count into `metrics` (shared with a status reporter).
    pub fn with_metrics(mut self, metrics: Arc<JobMetrics>) -> Self {
        self.metrics = metrics;
        self
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
        let deployment = self
            .deployer
            .deploy(&self.graph, restore, &self.metrics)
            .map_err(|e| (e, next_id))?;
        let now = Instant::now();
        let mut coordinator = CheckpointCoordinator::new(
            deployment.tasks(),
            deployment.sources(),
            next_id,
            self.config.checkpoint_interval,
            self.config.checkpoint_timeout,
            now,
        );
        injector.on_start(now);
        let outcome = self.coordinate(&mut coordinator, deployment.as_ref(), injector);
        let next = coordinator.next_id();
        match outcome {
            Ok(final_id) => {
                deployment.stop(Control::Finish);
                Ok(final_id)
            }
            Err(e) => {
                deployment.stop(Control::Cancel);
                Err((e, next))
            }
        }
    }

    /// The coordinator loop of one attempt; returns the final checkpoint once the job is done.
    fn coordinate(
        &self,
        coordinator: &mut CheckpointCoordinator,
        running: &dyn Deployment,
        injector: &mut FailureInjector,
    ) -> Result<CheckpointId> {
        loop {
            let deadline = [coordinator.next_deadline(), injector.next_at()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            match running.events().recv_deadline(deadline) {
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
            let tasks = running.tasks();
            if let Some(victim) = injector.poll(now, tasks.len()) {
                let task = tasks[victim];
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
