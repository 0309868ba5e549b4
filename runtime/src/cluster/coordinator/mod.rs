//! `weir coordinator`: accepts workers, runs the job on their slots through the same
//! job runner as `weir run`, and serves the job control API.
//!
//! Step by step:
//! 1. Build the job from the pipeline registry and open checkpoint storage; if it
//!    holds completed checkpoints of the job, resume from the latest.
//! 2. Serve gRPC: worker sessions ([`service::CoordinationService`]) and the API
//!    ([`service::JobControlService`]); a monitor loses workers that stop sending
//!    heartbeats.
//! 3. Run the job: each attempt waits for enough slots, places subtasks (slot
//!    sharing) and deploys them ([`deployer::RemoteDeployer`]); a lost worker
//!    fails the attempt, and the runner redeploys from the latest checkpoint.
//! 4. When the job ends, tell every worker to shut down and return the outcome.

pub mod deployer;
pub mod http;
pub mod service;
pub mod shared;
pub mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use weir_proto::v1::{self, coordinator_message::Body as Command};

use crate::checkpoint::paths::Paths;
use crate::checkpoint::restore;
use crate::checkpoint::retention::Listing;
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::error::{Error, Result};
use crate::exec::requests::job_channel;
use crate::exec::runner::{Ending, JobRunner, RestoreFrom, RunConfig, RunSummary};
use crate::metrics::JobMetrics;

use deployer::RemoteDeployer;
use service::{CoordinationService, JobControlService};
use shared::Shared;
use status::StatusBoard;

/// How a coordinator runs.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// The pipeline to run.
    pub pipeline: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its parallelism.
    pub parallelism: u32,
    /// Its key groups.
    pub max_parallelism: u32,
    /// Checkpoints, restarts and data path, as for `weir run`.
    pub run: RunConfig,
    /// Where gRPC (worker sessions and the API) listens.
    pub listen: String,
    /// Where HTTP (`/healthz`, `/readyz`, `/metrics`, `/v1/status`) listens.
    pub http: String,
    /// How often workers send heartbeats.
    pub heartbeat_interval: Duration,
    /// A worker not heard from for this long is lost.
    pub heartbeat_timeout: Duration,
    /// Whether subtask `k` of every operator shares slot `k` (Flink's default).
    pub slot_sharing: bool,
    /// Keep serving the status API after the job ended, until terminated (as
    /// under a Kubernetes Deployment, which would restart a process that exits).
    pub linger: bool,
}

/// The savepoint a stop-with-savepoint left the job stopped at, if it was.
fn stopped_with(store: &dyn CheckpointStore, paths: &Paths) -> Result<Option<String>> {
    if !store.list(&paths.stopped())?.contains(&paths.stopped()) {
        return Ok(None);
    }
    let bytes = store.get(&paths.stopped())?;
    let marker: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::CorruptCheckpoint {
            path: store.uri(&paths.stopped()),
            reason: format!("not a stop marker: {e}"),
        })?;
    Ok(marker["savepoint"].as_str().map(str::to_string))
}

/// Whether `restore` names the savepoint at `savepoint` (its directory or `_metadata`).
fn restores(restore: &RestoreFrom, savepoint: &str) -> bool {
    let norm = |p: &str| {
        p.trim_end_matches(crate::checkpoint::paths::METADATA)
            .trim_end_matches('/')
            .trim_start_matches("file://")
            .to_string()
    };
    matches!(restore, RestoreFrom::Path(p) if norm(p) == norm(savepoint))
}

/// Runs the job to its end with the workers that register; returns how it ended.
pub fn run_coordinator(config: CoordinatorConfig) -> Result<RunSummary> {
    let graph = crate::pipelines::build(
        &config.pipeline,
        &config.args,
        config.parallelism,
        config.max_parallelism,
    )?;
    let store: Arc<dyn CheckpointStore> = Arc::from(open_store(&config.run.checkpoint_dir)?);
    let mut run = config.run.clone();
    // Checkpoint storage is the job's only durable state: a coordinator that finds
    // completed checkpoints of its job (because it was restarted) resumes from the
    // latest, whatever it was first started from.
    // A `--restore` savepoint newer than every checkpoint still wins: the
    // checkpoints are then an earlier deployment's, from before the savepoint.
    let paths = Paths::new(&graph.name);
    // A job stopped with a savepoint resumes only from that savepoint: a
    // coordinator restarted after the stop (or started without it) holds.
    let held = match stopped_with(store.as_ref(), &paths)? {
        Some(savepoint) if !restores(&run.restore, &savepoint) => Some(savepoint),
        Some(_) => {
            store.delete(&[paths.stopped()])?;
            None
        }
        None => None,
    };
    let listing = Listing::from_keys(&paths, &store.list(&paths.checkpoints())?);
    if let Some(latest) = listing.complete.last() {
        let requested = match &run.restore {
            RestoreFrom::Path(path) => Some(restore::explicit(path)?.metadata.checkpoint_id),
            _ => None,
        };
        if requested.is_none_or(|r| *latest > r) {
            tracing::info!(
                checkpoint = latest.0,
                "found completed checkpoints in storage; resuming from the latest"
            );
            run.restore = RestoreFrom::Latest;
        }
    }
    let shared = Arc::new(Shared::default());
    let (handle, requests) = job_channel();
    let spec = v1::JobSpec {
        pipeline: config.pipeline.clone(),
        args: config.args.clone(),
        parallelism: config.parallelism,
        max_parallelism: graph.max_parallelism,
        batch_size: config.run.exec.batch_size as u32,
        channel_capacity: config.run.exec.channel_capacity as u32,
        buffer_timeout_us: config.run.exec.buffer_timeout.as_micros() as u64,
        state_backend: config.run.exec.state.backend.name().to_string(),
        state_cache_bytes: config.run.exec.state.cache_bytes as u64,
    };
    let chain_parallelism: Vec<u32> = crate::exec::deploy::chains(&graph)
        .iter()
        .map(|c| c.parallelism)
        .collect();
    let slots_needed = deployer::slots_needed(&chain_parallelism, config.slot_sharing);
    let metrics = Arc::new(JobMetrics::default());
    let status = Arc::new(StatusBoard::new(
        graph.name.clone(),
        config.parallelism,
        slots_needed,
        metrics.clone(),
        shared.clone(),
        handle.clone(),
    ));
    let deployer = RemoteDeployer {
        shared: shared.clone(),
        status: status.clone(),
        spec,
        checkpoint_uri: store.uri(""),
        attempt_base: crate::exec::deploy::attempt_base(),
        slot_sharing: config.slot_sharing,
    };
    let runner = JobRunner::with_deployer(graph, run, store, deployer)
        .with_metrics(metrics)
        .with_channel((handle, requests));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the async runtime: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&config.listen))
        .map_err(|e| Error::Io {
            action: "listening for workers on",
            path: config.listen.clone().into(),
            source: e,
        })?;
    tracing::info!(listen = %config.listen, slots_needed, "coordinator listening");
    let server = tonic::transport::Server::builder()
        .add_service(v1::coordination_server::CoordinationServer::new(
            CoordinationService {
                shared: shared.clone(),
                heartbeat_interval: config.heartbeat_interval,
            },
        ))
        .add_service(v1::job_control_server::JobControlServer::new(
            JobControlService {
                status: status.clone(),
            },
        ))
        .serve_with_incoming(TcpListenerStream::new(listener));
    runtime.spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "gRPC server failed");
        }
    });
    let http = http::serve(&config.http, status.clone())?;
    tracing::info!(%http, "serving /healthz, /readyz, /metrics and /v1/status");
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (shared, stop, timeout, every) = (
            shared.clone(),
            stop.clone(),
            config.heartbeat_timeout,
            config.heartbeat_interval,
        );
        std::thread::Builder::new()
            .name("weir-heartbeats".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every.min(Duration::from_millis(250)));
                    shared.expire(timeout);
                }
            })
            .map_err(|e| Error::Internal(format!("spawning the heartbeat monitor: {e}")))?
    };
    let outcome = match &held {
        Some(savepoint) => {
            let message = format!(
                "the job was stopped with savepoint {savepoint}; start the coordinator with --restore {savepoint} to resume it"
            );
            tracing::warn!("{message}");
            status.set(v1::JobState::Stopped, message);
            Ok(RunSummary {
                ending: Ending::Stopped {
                    savepoint: savepoint.clone(),
                },
                restarts: 0,
                elapsed: Duration::ZERO,
            })
        }
        None => runner.run(),
    };
    let reason = match &outcome {
        Ok(summary) => {
            let state = match &summary.ending {
                Ending::Finished { .. } => v1::JobState::Finished,
                Ending::Stopped { savepoint } => {
                    status.set_stopped(savepoint);
                    v1::JobState::Stopped
                }
                Ending::Canceled => v1::JobState::Canceled,
            };
            status.set(state, summary.ending.to_string());
            format!("the job {}", summary.ending)
        }
        Err(e) => {
            status.set(v1::JobState::Failed, e.to_string());
            format!("the job failed: {e}")
        }
    };
    {
        let mut inner = shared.lock();
        inner.closing = true;
        for id in inner.workers.keys() {
            inner.command(
                id,
                Command::Shutdown(v1::Shutdown {
                    reason: reason.clone(),
                }),
            );
        }
    }
    // Give the shutdown commands a moment to reach the workers.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    if config.linger {
        // Under a Deployment an exit would restart the coordinator; keep serving
        // the job's final status until the pod is deleted.
        tracing::info!(%reason, "the job is over; serving its status until terminated");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}
