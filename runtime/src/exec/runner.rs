//! The job runner: deploys attempts of a job (on threads of this process or on
//! workers), coordinates their checkpoints, and restarts the job from its latest
//! checkpoint on failure.
//!
//! One attempt, step by step:
//! 1. Deploy every task (restoring state from the chosen checkpoint).
//! 2. Run the coordinator loop ([`crate::exec::coordinate`]): checkpoints on
//!    schedule, savepoints and cancel on request.
//! 3. When every task's input has ended, the final checkpoint completes and the
//!    tasks are told to finish; a stop-with-savepoint ends the same way after its
//!    savepoint; a cancel stops the tasks at once.
//! 4. When a task fails, cancel every task and wait for them; then (bounded, with
//!    backoff) start a new attempt from the latest completed checkpoint.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::JobGraph;
use crate::checkpoint::coordinator::CheckpointCoordinator;
use crate::checkpoint::paths::Paths;
use crate::checkpoint::restore::{self, RestorePoint};
use crate::checkpoint::retention::Listing;
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::error::{Error, ErrorClass, Result};
use crate::exec::config::ExecConfig;
use crate::exec::coordinate::{AttemptEnd, Coordination};
use crate::exec::deploy::check_restore;
use crate::exec::inject::FailureInjector;
use crate::exec::local::LocalDeployer;
use crate::exec::requests::{job_channel, JobHandle, JobRequests};
use crate::exec::task::{Control, TaskEvent};
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
    /// Failures in a row (with no checkpoint completed between them) after which
    /// the job fails for good.
    pub max_restarts: u32,
    /// Wait before the first restart; doubles up to `max_backoff`, and starts over
    /// once a checkpoint completes.
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

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every input ended; the final checkpoint committed the last output.
    Finished {
        /// The final checkpoint.
        checkpoint: CheckpointId,
        /// Where it is.
        uri: String,
    },
    /// Stopped after a savepoint (stop-with-savepoint).
    Stopped {
        /// The savepoint's directory.
        savepoint: String,
    },
    /// Cancelled on request, without a savepoint.
    Canceled,
}

impl Ending {
    /// The final checkpoint, if the job finished.
    pub fn final_checkpoint(&self) -> Option<CheckpointId> {
        match self {
            Ending::Finished { checkpoint, .. } => Some(*checkpoint),
            _ => None,
        }
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Finished { checkpoint, uri } => {
                write!(f, "finished; final checkpoint {checkpoint} at {uri}")
            }
            Ending::Stopped { savepoint } => write!(f, "stopped with savepoint {savepoint}"),
            Ending::Canceled => write!(f, "cancelled"),
        }
    }
}

/// What a run that did not fail reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// How it ended.
    pub ending: Ending,
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
    handle: JobHandle,
    requests: JobRequests,
}

/// Runs every task of a job on threads of this process (`weir run`).
pub type LocalRunner = JobRunner<LocalDeployer>;

impl LocalRunner {
    /// A runner for `graph` in this process.
    pub fn new(graph: JobGraph, config: RunConfig) -> Result<Self> {
        if config.exec.state.backend == crate::state::Backend::Rocksdb {
            crate::state::rocks::remove_stale(&config.exec.state.local_dir);
        }
        let store: Arc<dyn CheckpointStore> = Arc::from(open_store(&config.checkpoint_dir)?);
        let paths = Paths::new(&graph.name);
        let (handle, requests) = job_channel();
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
            handle,
            requests,
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
        let (handle, requests) = job_channel();
        JobRunner {
            graph,
            config,
            store,
            paths,
            metrics: Arc::new(JobMetrics::default()),
            deployer,
            handle,
            requests,
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

    /// Makes the runner take its requests from `channel` (made by
    /// [`crate::exec::requests::job_channel`]), whose handle others already hold.
    pub fn with_channel(mut self, (handle, requests): (JobHandle, JobRequests)) -> Self {
        self.handle = handle;
        self.requests = requests;
        self
    }

    /// A handle to ask the running job for savepoints or to cancel.
    pub fn handle(&self) -> JobHandle {
        self.handle.clone()
    }

    /// Where the job's checkpoints go.
    pub fn checkpoints_uri(&self) -> String {
        self.store.uri(&self.paths.checkpoints())
    }

    /// Runs the job to its end, restarting it after failures.
    pub fn run(&self) -> Result<RunSummary> {
        let started = Instant::now();
        let loading = Instant::now();
        let initial: Option<Arc<RestorePoint>> = match &self.config.restore {
            RestoreFrom::Nothing => None,
            RestoreFrom::Latest => Some(Arc::new(
                restore::latest(&self.store, &self.paths)?
                    .ok_or_else(|| Error::NoCheckpoint(self.checkpoints_uri()))?,
            )),
            RestoreFrom::Path(path) => Some(Arc::new(restore::explicit(path)?)),
        };
        self.metrics
            .restore_load_ms
            .store(loading.elapsed().as_millis() as u64, Ordering::Relaxed);
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
        let mut failures_in_a_row = 0u32;
        let mut backoff = self.config.restart_backoff;
        loop {
            if self.requests.is_canceled() {
                return Ok(RunSummary {
                    ending: Ending::Canceled,
                    restarts,
                    elapsed: started.elapsed(),
                });
            }
            match self.attempt(restore_point.as_deref(), next_id, &mut injector) {
                Ok(end) => {
                    let ending = match end {
                        AttemptEnd::Finished(checkpoint) => Ending::Finished {
                            checkpoint,
                            uri: self.store.uri(&self.paths.checkpoint_dir(checkpoint)),
                        },
                        AttemptEnd::Stopped(savepoint) => Ending::Stopped { savepoint },
                        AttemptEnd::Canceled => Ending::Canceled,
                    };
                    return Ok(RunSummary {
                        ending,
                        restarts,
                        elapsed: started.elapsed(),
                    });
                }
                Err(_) if self.requests.is_canceled() => {
                    return Ok(RunSummary {
                        ending: Ending::Canceled,
                        restarts,
                        elapsed: started.elapsed(),
                    });
                }
                Err((error, last_id)) => {
                    next_id = last_id;
                    let injected = matches!(error, Error::InjectedFailure(_));
                    if error.class() == ErrorClass::User {
                        return Err(error);
                    }
                    let (recovered, listing) = self.restart_point(initial.as_ref())?;
                    // A completed checkpoint since the last restore is progress: the
                    // failure streak and the backoff start over, so a job that keeps
                    // checkpointing survives any number of failures over its life.
                    let id = |p: &Option<Arc<RestorePoint>>| {
                        p.as_ref().map(|p| p.metadata.checkpoint_id)
                    };
                    if id(&recovered) > id(&restore_point) {
                        failures_in_a_row = 0;
                        backoff = self.config.restart_backoff;
                    }
                    if !injected && failures_in_a_row >= self.config.max_restarts {
                        return Err(Error::RestartLimit {
                            restarts: failures_in_a_row,
                            limit: self.config.max_restarts,
                            last: Box::new(error),
                        });
                    }
                    restarts += 1;
                    self.metrics.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, restart = restarts, backoff_ms = backoff.as_millis() as u64, "job failed; restarting from the latest checkpoint");
                    std::thread::sleep(backoff);
                    if !injected {
                        failures_in_a_row += 1;
                        backoff = (backoff * 2).min(self.config.max_backoff);
                    }
                    restore_point = recovered;
                    next_id = listing.next_id(next_id);
                }
            }
        }
    }

    /// Where to restart from, and the checkpoints in storage. Storage that cannot
    /// be reached (an S3 outage) is waited for, retrying with backoff up to
    /// `max_backoff` for as long as it takes: the outage is not the job's fault,
    /// and a job meant to run for months must outlive it. Cancelling the job
    /// ends the wait.
    fn restart_point(
        &self,
        initial: Option<&Arc<RestorePoint>>,
    ) -> Result<(Option<Arc<RestorePoint>>, Listing)> {
        let mut backoff = self.config.restart_backoff;
        loop {
            match self
                .recovery_point(initial)
                .and_then(|point| Ok((point, self.listing()?)))
            {
                Err(e) if e.class() == ErrorClass::External && !self.requests.is_canceled() => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "cannot reach checkpoint storage to restart the job; waiting for it");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
                found => return found,
            }
        }
    }

    /// Where to restart from: the latest completed checkpoint, unless the run was
    /// started from a point at least as new (a savepoint taken after the checkpoints
    /// that an earlier run of the job left in storage).
    fn recovery_point(
        &self,
        initial: Option<&Arc<RestorePoint>>,
    ) -> Result<Option<Arc<RestorePoint>>> {
        let latest = restore::latest(&self.store, &self.paths)?;
        Ok(match (latest, initial) {
            (Some(latest), Some(initial))
                if latest.metadata.checkpoint_id <= initial.metadata.checkpoint_id =>
            {
                Some(initial.clone())
            }
            (Some(latest), _) => Some(Arc::new(latest)),
            (None, initial) => initial.cloned(),
        })
    }

    fn listing(&self) -> Result<Listing> {
        Ok(Listing::from_keys(
            &self.paths,
            &self.store.list(&self.paths.checkpoints())?,
        ))
    }

    /// One deployment of the job. Returns how it ended, or the failure and the next
    /// unused checkpoint id.
    fn attempt(
        &self,
        restore: Option<&RestorePoint>,
        next_id: CheckpointId,
        injector: &mut FailureInjector,
    ) -> Result<AttemptEnd, (Error, CheckpointId)> {
        let deploying = Instant::now();
        let deployment = self
            .deployer
            .deploy(&self.graph, restore, &self.metrics)
            .map_err(|e| (e, next_id))?;
        self.metrics
            .last_deploy_ms
            .store(deploying.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.metrics.deployments.fetch_add(1, Ordering::Relaxed);
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
        let coordination = Coordination {
            graph: &self.graph,
            config: &self.config,
            store: self.store.as_ref(),
            paths: &self.paths,
            metrics: &self.metrics,
            requests: &self.requests,
            last_completed: std::cell::Cell::new(restore.map(|r| r.metadata.checkpoint_id)),
        };
        let outcome = coordination.run(&mut coordinator, deployment.as_ref(), injector);
        let next = coordinator.next_id();
        match outcome {
            Ok(AttemptEnd::Canceled) => {
                deployment.stop(Control::Cancel);
                Ok(AttemptEnd::Canceled)
            }
            Ok(end) => {
                deployment.stop(Control::Finish);
                Ok(end)
            }
            Err(e) => {
                deployment.stop(Control::Cancel);
                Err((e, next))
            }
        }
    }
}
