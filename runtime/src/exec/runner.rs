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
//!    backoff) start a new attempt from the deployment's latest completed
//!    checkpoint, or the point it started from (see [`crate::exec::recover`]).
//!
//! Before any of it the runner claims the next coordinator epoch of its
//! deployment ([`Fence`]) and checks it before every step that commits or
//! deletes: a runner that was superseded stops ([`Error::Fenced`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::JobGraph;
use crate::checkpoint::coordinator::CheckpointCoordinator;
use crate::checkpoint::fence::Fence;
use crate::checkpoint::ids::IdReservation;
use crate::checkpoint::paths::Paths;
use crate::checkpoint::restore::RestorePoint;
use crate::checkpoint::runs;
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::error::{Error, ErrorClass, Result};
use crate::exec::config::ExecConfig;
use crate::exec::coordinate::{collect_shared, AttemptEnd, Coordination};
use crate::exec::deploy::check_restore;
use crate::exec::inject::FailureInjector;
use crate::exec::local::LocalDeployer;
use crate::exec::recover::{wait_for_storage, Recovery};
use crate::exec::requests::{job_channel, JobHandle, JobRequests};
use crate::exec::task::{Control, TaskEvent};
use crate::ids::{CheckpointId, JobId, TaskId};
use crate::metrics::JobMetrics;

/// Where a run starts from (besides its own deployment's checkpoints, which a
/// deployment restarted with the same identity resumes whatever it is told).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreFrom {
    /// A fresh start.
    Nothing,
    /// The newest resume point of any deployment of the job in the checkpoint
    /// directory: the savepoint of one stopped with a savepoint, else its newest
    /// completed checkpoint (an error if there is none).
    Latest,
    /// A checkpoint or savepoint directory (or its `_metadata`).
    Path(String),
}

/// How a job runs: checkpoints, restarts, failure injection, data path tuning.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Base URI of checkpoint storage; checkpoints go to `{base}/{job}/{id}/checkpoints/`.
    pub checkpoint_dir: String,
    /// The deployment's identity (`None`: a fresh one). A deployment given the
    /// identity of one that checkpointed resumes from its own latest checkpoint.
    pub job_id: Option<JobId>,
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
    /// How long the start waits for checkpoint storage that cannot be reached
    /// before it fails (`None`: as long as it takes). Restarts always wait.
    pub start_wait: Option<Duration>,
    /// Checkpoints that may fail in a row (declined, timed out, not committed)
    /// before the job fails over to its latest checkpoint, as Flink's
    /// tolerable failed checkpoints.
    pub tolerable_failed_checkpoints: u32,
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
            job_id: None,
            checkpoint_interval: Some(Duration::from_secs(5)),
            checkpoint_timeout: Duration::from_secs(60),
            retained: 3,
            restore: RestoreFrom::Nothing,
            allow_non_restored_state: false,
            max_restarts: 10,
            restart_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            start_wait: Some(Duration::from_secs(30)),
            tolerable_failed_checkpoints: 5,
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
        let id = config.job_id.clone().unwrap_or_else(JobId::generate);
        let paths = Paths::new(&graph.name, &id);
        let (handle, requests) = job_channel();
        let deployer = LocalDeployer {
            store: store.clone(),
            paths: paths.clone(),
            exec: ExecConfig {
                checkpoint_interval: config.checkpoint_interval,
                ..config.exec.clone()
            },
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
    /// A runner deploying with `deployer`, checkpointing to `store` as deployment `id`.
    pub fn with_deployer(
        graph: JobGraph,
        config: RunConfig,
        store: Arc<dyn CheckpointStore>,
        id: &JobId,
        deployer: D,
    ) -> Self {
        let paths = Paths::new(&graph.name, id);
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

    /// The deployment's identity.
    pub fn job_id(&self) -> &JobId {
        self.paths.id()
    }

    /// Runs the job to its end, restarting it after failures.
    pub fn run(&self) -> Result<RunSummary> {
        let started = Instant::now();
        let canceled = || self.requests.is_canceled();
        let recovery = Recovery {
            store: &self.store,
            paths: &self.paths,
            metrics: &self.metrics,
        };
        let (limit, max_backoff) = (self.config.start_wait, self.config.max_backoff);
        let metrics = &self.metrics;
        let fence = wait_for_storage(
            "claiming the deployment",
            limit,
            max_backoff,
            metrics,
            &canceled,
            || Fence::claim(self.store.clone(), &self.paths),
        )?;
        let loading = Instant::now();
        let start = wait_for_storage(
            "finding the point to start from",
            limit,
            max_backoff,
            metrics,
            &canceled,
            || recovery.start(&self.config.restore),
        )?;
        self.metrics
            .restore_load_ms
            .store(loading.elapsed().as_millis() as u64, Ordering::Relaxed);
        if let Some(savepoint) = start.held {
            tracing::warn!(
                "deployment {} was stopped with savepoint {savepoint}; it resumes only from there (--restore it)",
                self.paths.id()
            );
            return Ok(RunSummary {
                ending: Ending::Stopped { savepoint },
                restarts: 0,
                elapsed: started.elapsed(),
            });
        }
        let initial = start.point;
        if let Some(point) = &initial {
            check_restore(&self.graph, point, self.config.allow_non_restored_state)?;
            tracing::info!(checkpoint = point.metadata.checkpoint_id.0, from = %point.location, "restoring");
        }
        let ids = wait_for_storage(
            "reading the checkpoint ids",
            limit,
            max_backoff,
            metrics,
            &canceled,
            || IdReservation::open(self.store.clone(), &self.paths),
        )?;
        let first_id = initial
            .as_ref()
            .map_or(CheckpointId(1), |p| p.metadata.checkpoint_id.next());
        let own = wait_for_storage(
            "listing checkpoints",
            limit,
            max_backoff,
            metrics,
            &canceled,
            || runs::listing(self.store.as_ref(), &self.paths),
        )?;
        let mut next_id = own.next_id(first_id).max(ids.next_free());
        let mut restore_point = initial.clone();
        let clears_marker = std::cell::Cell::new(start.clears_marker);
        let max_delay = self
            .config
            .checkpoint_interval
            .map_or(Duration::from_secs(1), |i| i * 2);
        let mut injector =
            FailureInjector::new(self.config.inject_failures, self.config.seed, max_delay);
        let mut restarts = 0u32;
        let mut failures_in_a_row = 0u32;
        let mut backoff = self.config.restart_backoff;
        let guards = Guards {
            fence: &fence,
            ids: &ids,
            clears_marker: &clears_marker,
        };
        loop {
            if self.requests.is_canceled() {
                return Ok(RunSummary {
                    ending: Ending::Canceled,
                    restarts,
                    elapsed: started.elapsed(),
                });
            }
            match self.attempt(restore_point.as_deref(), next_id, &mut injector, &guards) {
                Ok(end) => {
                    let ending = match end {
                        AttemptEnd::Finished(checkpoint) => {
                            self.sweep_shared(&fence);
                            Ending::Finished {
                                checkpoint,
                                uri: self.store.uri(&self.paths.checkpoint_dir(checkpoint)),
                            }
                        }
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
                    if error.class() == ErrorClass::User || matches!(error, Error::Fenced { .. }) {
                        return Err(error);
                    }
                    // No attempt reads requests until the next one runs: savepoints
                    // asked for meanwhile fail at once, saying why.
                    let between = || {
                        self.requests.fail_queued_savepoints(&format!(
                            "the job is restarting after a failure ({error})"
                        ));
                        self.requests.is_canceled()
                    };
                    let recovered = wait_for_storage(
                        "restarting the job",
                        None,
                        max_backoff,
                        metrics,
                        &between,
                        || recovery.restart(initial.as_ref()),
                    )?;
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
                    let from = match id(&recovered) {
                        Some(checkpoint) => format!("checkpoint {}", checkpoint.0),
                        None => "the start (no checkpoint completed yet)".to_string(),
                    };
                    tracing::warn!(%error, restart = restarts, backoff_ms = backoff.as_millis() as u64, %from, "job failed; restarting from the latest checkpoint");
                    std::thread::sleep(backoff);
                    between();
                    if !injected {
                        failures_in_a_row += 1;
                        backoff = (backoff * 2).min(self.config.max_backoff);
                    }
                    restore_point = recovered;
                    // next_id stays the attempt's: ids this process used were reserved.
                }
            }
        }
    }

    /// Once a job has finished, nothing is in flight: the shared files that no
    /// retained checkpoint refers to (an upload that landed after the last
    /// completion's collection, say) are deleted too. Failing here only warns.
    fn sweep_shared(&self, fence: &Fence) {
        let swept = fence.check().and_then(|()| {
            let listing = runs::listing(self.store.as_ref(), &self.paths)?;
            collect_shared(
                self.store.as_ref(),
                &self.paths,
                listing.complete.iter().copied(),
            )
        });
        if let Err(error) = swept {
            tracing::warn!(%error, "could not delete unreferenced shared files");
        }
    }

    /// One deployment of the job. Returns how it ended, or the failure and the next
    /// unused checkpoint id.
    fn attempt(
        &self,
        restore: Option<&RestorePoint>,
        next_id: CheckpointId,
        injector: &mut FailureInjector,
        guards: &Guards<'_>,
    ) -> Result<AttemptEnd, (Error, CheckpointId)> {
        // Deploying cleans up (sinks delete what never committed): never by a
        // runner that was superseded.
        guards.fence.check().map_err(|e| (e, next_id))?;
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
            fence: guards.fence,
            ids: guards.ids,
            clears_marker: guards.clears_marker,
            failed_in_a_row: std::cell::Cell::new(0),
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

/// What guards a run's writes to its deployment's storage, across its attempts.
struct Guards<'a> {
    fence: &'a Fence,
    ids: &'a IdReservation,
    clears_marker: &'a std::cell::Cell<bool>,
}
