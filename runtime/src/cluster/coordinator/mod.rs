//! `weir coordinator`: accepts workers, runs the job on their slots through the same
//! job runner as `weir run`, and serves the job control API.
//!
//! Step by step:
//! 1. Build the job from the pipeline registry and open checkpoint storage. The
//!    runner claims the deployment (its `--job-id`) and resumes its own latest
//!    checkpoint if it wrote any (high availability), or what `--restore` names,
//!    whichever is newer; a deployment stopped with a savepoint stays stopped
//!    until it is started from that savepoint.
//! 2. Serve gRPC: worker sessions ([`service::CoordinationService`]) and the API
//!    ([`service::JobControlService`]); a monitor loses workers that stop sending
//!    heartbeats.
//! 3. Run the job: each attempt waits for enough slots, places subtasks (slot
//!    sharing) and deploys them ([`deployer::RemoteDeployer`]); a lost worker
//!    fails the attempt, and the runner redeploys from the latest checkpoint.
//! 4. When the job ends, tell every worker to shut down and return the outcome.

pub mod deployer;
pub mod http;
pub mod load;
pub mod service;
pub mod shared;
pub mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use weir_proto::api_token::RequireToken;
use weir_proto::v1::{self, coordinator_message::Body as Command};

use crate::checkpoint::paths::Paths;
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::error::{Error, Result};
use crate::exec::requests::job_channel;
use crate::exec::runner::{Ending, JobRunner, RunConfig, RunSummary};
use crate::ids::JobId;
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
    /// The token every job control call must carry (cancel, savepoints,
    /// dispose, status); `None`: open to whoever reaches the port.
    pub api_token: Option<String>,
}

/// How often the job's load is sampled (see [`load::LoadHistory`]).
const LOAD_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

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
    // Checkpoint storage is the job's only durable state: a coordinator outlives an
    // outage of it, however long, rather than fail (and be restarted) over it.
    run.start_wait = None;
    let job_id = run.job_id.clone().unwrap_or_else(JobId::generate);
    run.job_id = Some(job_id.clone());
    tracing::info!(job = %graph.name, %job_id, "deployment");
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
        state_rocksdb_bytes: config.run.exec.state.rocksdb_bytes as u64,
        checkpoint_interval_ms: config
            .run
            .checkpoint_interval
            .map_or(0, |i| i.as_millis().max(1) as u64),
    };
    let paths = Paths::new(&graph.name, &job_id);
    let chain_parallelism: Vec<u32> = crate::exec::deploy::chains(&graph)
        .iter()
        .map(|c| c.parallelism)
        .collect();
    let slots_needed = deployer::slots_needed(&chain_parallelism, config.slot_sharing);
    let metrics = Arc::new(JobMetrics::default());
    let load = Arc::new(load::LoadHistory::new(&graph));
    let status = Arc::new(StatusBoard::new(
        paths.clone(),
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
        paths,
        attempt_base: crate::exec::deploy::attempt_base(),
        slot_sharing: config.slot_sharing,
    };
    let runner = JobRunner::with_deployer(graph, run, store, &job_id, deployer)
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
    let api_token = RequireToken::new(config.api_token.clone());
    tracing::info!(
        listen = %config.listen,
        slots_needed,
        api_token = api_token.required(),
        "coordinator listening"
    );
    let server = tonic::transport::Server::builder()
        .add_service(v1::coordination_server::CoordinationServer::new(
            CoordinationService {
                shared: shared.clone(),
                heartbeat_interval: config.heartbeat_interval,
                heartbeat_timeout: config.heartbeat_timeout,
            },
        ))
        .add_service(v1::job_control_server::JobControlServer::with_interceptor(
            JobControlService {
                status: status.clone(),
                parallelism: config.parallelism,
                max_parallelism: config.max_parallelism,
                load: load.clone(),
            },
            api_token,
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
        let (shared, load, stop, timeout, every) = (
            shared.clone(),
            load,
            stop.clone(),
            config.heartbeat_timeout,
            config.heartbeat_interval,
        );
        std::thread::Builder::new()
            .name("weir-heartbeats".into())
            .spawn(move || {
                let mut last_ping = std::time::Instant::now();
                let mut last_sample = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every.min(Duration::from_millis(250)));
                    shared.expire(timeout);
                    if last_sample.elapsed() >= LOAD_SAMPLE_INTERVAL {
                        load.sample(&shared.lock());
                        last_sample = std::time::Instant::now();
                    }
                    if last_ping.elapsed() >= every {
                        // Workers take a coordinator they do not hear from for lost.
                        shared.ping();
                        last_ping = std::time::Instant::now();
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("spawning the heartbeat monitor: {e}")))?
    };
    let outcome = runner.run();
    let reason = match &outcome {
        Ok(summary) => {
            let (state, message) = match &summary.ending {
                Ending::Finished { .. } => (v1::JobState::Finished, summary.ending.to_string()),
                Ending::Stopped { savepoint } => {
                    status.set_stopped(savepoint);
                    (
                        v1::JobState::Stopped,
                        format!(
                            "the job was stopped with savepoint {savepoint}; start the coordinator with --restore {savepoint} to resume it"
                        ),
                    )
                }
                Ending::Canceled => (v1::JobState::Canceled, summary.ending.to_string()),
            };
            status.set(state, message);
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
    if config.linger {
        // Under a Deployment an exit would restart the coordinator; keep serving
        // the job's final status until the pod is deleted. The monitor goes on
        // pinging: workers restarted by their StatefulSet register and wait
        // quietly instead of taking a silent coordinator for lost every timeout.
        tracing::info!(%reason, "the job is over; serving its status until terminated");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}
