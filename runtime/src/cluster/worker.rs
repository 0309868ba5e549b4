//! `weir worker`: registers with the coordinator, runs the tasks placed on it, and
//! reports their events; reconnects with backoff when the coordinator is away.
//!
//! Step by step:
//! 1. Bind the data plane, connect to the coordinator (retrying with backoff and
//!    logging why), open a session and send `Register` with slots and data address.
//! 2. A heartbeat goes out every interval the coordinator asked for.
//! 3. Commands run on one executor thread: `Deploy` builds the pipeline, deploys
//!    this worker's tasks (restoring state) and starts them; their events are
//!    forwarded with the attempt; `Trigger`, `Complete`, `Fail` reach the tasks;
//!    `Cancel`/`Finish` stop them; commands of another attempt are dropped.
//! 4. When the session ends, the running attempt is cancelled and the worker
//!    registers again; `Shutdown` makes it exit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_stream::wrappers::UnboundedReceiverStream;
use weir_proto::v1::coordination_client::CoordinationClient;
use weir_proto::v1::{self, coordinator_message::Body as Command, worker_message::Body as Event};
use weir_proto::PROTOCOL_VERSION;

use crate::checkpoint::paths::Paths;
use crate::checkpoint::restore;
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::cluster::convert::{ack_to_wire, task_from_wire, task_to_wire};
use crate::data::{Barrier, SavepointFormat, SnapshotKind};
use crate::error::{Error, ErrorClass, Result};
use crate::exec::config::ExecConfig;
use crate::exec::deploy::{deploy, Placement};
use crate::exec::local::{start, LocalDeployment};
use crate::exec::runner::Deployment;
use crate::exec::task::{Control, TaskEvent};
use crate::ids::{CheckpointId, JobId, TaskId};
use crate::metrics::JobMetrics;
use crate::net::DataPlane;
use crate::state::backend::DEFAULT_ROCKSDB_BYTES;
use crate::state::{Backend, StateConfig};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's gRPC address (`host:port` or `http://host:port`).
    pub coordinator: String,
    /// Subtask slots offered.
    pub slots: u32,
    /// Where the data plane listens.
    pub listen: String,
    /// The data address announced to peers (default: the bound address).
    pub advertise: Option<String>,
    /// Local scratch directory of RocksDB state.
    pub state_dir: std::path::PathBuf,
}

/// Why a session ended.
enum SessionEnd {
    /// The coordinator said the job is over.
    Shutdown,
    /// The connection was lost; register again.
    Lost(String),
}

/// Runs a worker until the coordinator shuts it down.
pub fn run_worker(config: &WorkerConfig) -> Result<()> {
    let worker_id = format!(
        "worker-{}-{}",
        std::process::id(),
        crate::rng::Rng::new(now_nanos()).next_u64() % 100_000
    );
    crate::state::rocks::remove_stale(&config.state_dir);
    let plane = DataPlane::bind(&worker_id, &config.listen)?;
    let data_address = config
        .advertise
        .clone()
        .unwrap_or_else(|| plane.address().to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the async runtime: {e}")))?;
    let endpoint = if config.coordinator.contains("://") {
        config.coordinator.clone()
    } else {
        format!("http://{}", config.coordinator)
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        match runtime.block_on(session(
            &endpoint,
            &worker_id,
            config.slots,
            &data_address,
            &plane,
            &config.state_dir,
        )) {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::Lost(reason)) => {
                tracing::warn!(%reason, "lost the coordinator; registering again");
                backoff = Duration::from_millis(100);
            }
            Err(e @ Error::Usage(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(coordinator = %endpoint, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach the coordinator")
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn session(
    endpoint: &str,
    worker_id: &str,
    slots: u32,
    data_address: &str,
    plane: &Arc<DataPlane>,
    state_dir: &std::path::Path,
) -> Result<SessionEnd> {
    let unreachable = |e: String| Error::Internal(format!("coordinator {endpoint}: {e}"));
    let mut client = CoordinationClient::connect(endpoint.to_string())
        .await
        .map_err(|e| unreachable(crate::error::with_causes(&e)))?;
    let (out, out_rx) = unbounded_channel::<v1::WorkerMessage>();
    let _ = out.send(v1::WorkerMessage {
        body: Some(Event::Register(v1::Register {
            protocol_version: PROTOCOL_VERSION,
            worker_id: worker_id.to_string(),
            slots,
            data_address: data_address.to_string(),
        })),
    });
    let response = client
        .session(UnboundedReceiverStream::new(out_rx))
        .await
        .map_err(|status| {
            if status.code() == tonic::Code::FailedPrecondition {
                Error::Usage(format!(
                    "coordinator {endpoint} refused this worker: {}",
                    status.message()
                ))
            } else {
                unreachable(status.message().to_string())
            }
        })?;
    let mut commands = response.into_inner();
    let (beat_every, silence) = match commands.message().await {
        Ok(Some(v1::CoordinatorMessage {
            body: Some(Command::Registered(r)),
        })) => (
            Duration::from_millis(r.heartbeat_interval_ms.max(50)),
            Duration::from_millis(
                r.heartbeat_timeout_ms
                    .max(r.heartbeat_interval_ms * 2)
                    .max(100),
            ),
        ),
        Ok(_) => {
            return Err(unreachable(
                "the session did not start with Registered".into(),
            ))
        }
        Err(status) => return Err(unreachable(status.message().to_string())),
    };
    tracing::info!(
        worker = worker_id,
        coordinator = endpoint,
        slots,
        data = data_address,
        "registered"
    );
    let beats = out.clone();
    let metrics = Arc::new(JobMetrics::default());
    let counted = metrics.clone();
    let beating = tokio::spawn(async move {
        let mut tick = tokio::time::interval(beat_every);
        loop {
            tick.tick().await;
            let beat = v1::WorkerMessage {
                body: Some(Event::Heartbeat(heartbeat(&counted))),
            };
            if beats.send(beat).is_err() {
                return;
            }
        }
    });
    let (to_executor, inbox) = unbounded::<Command>();
    let executor = {
        let (plane, worker_id) = (plane.clone(), worker_id.to_string());
        let state_dir = state_dir.to_path_buf();
        std::thread::Builder::new()
            .name("weir-worker".into())
            .spawn(move || Executor::new(worker_id, plane, out, metrics, state_dir).run(&inbox))
            .map_err(|e| Error::Internal(format!("spawning the worker executor: {e}")))?
    };
    let end = loop {
        // A coordinator that says nothing (not even its ping) for the heartbeat
        // timeout is gone or frozen: stop its tasks rather than run on unwatched.
        let Ok(next) = tokio::time::timeout(silence, commands.message()).await else {
            break SessionEnd::Lost(format!(
                "no word from the coordinator for {} ms (it is gone or frozen); stopping its tasks",
                silence.as_millis()
            ));
        };
        match next {
            Ok(Some(v1::CoordinatorMessage {
                body: Some(Command::Shutdown(s)),
            })) => {
                tracing::info!(reason = %s.reason, "coordinator shut the worker down");
                break SessionEnd::Shutdown;
            }
            Ok(Some(v1::CoordinatorMessage {
                body: Some(Command::Ping(_)),
            })) => {}
            Ok(Some(v1::CoordinatorMessage {
                body: Some(command),
            })) => {
                let _ = to_executor.send(command);
            }
            Ok(Some(_)) => {}
            Ok(None) => break SessionEnd::Lost("the coordinator closed the session".into()),
            Err(status) => break SessionEnd::Lost(status.message().to_string()),
        }
    };
    beating.abort();
    drop(to_executor);
    let _ = tokio::task::spawn_blocking(move || executor.join()).await;
    Ok(end)
}

/// A heartbeat with this worker's counters.
fn heartbeat(metrics: &JobMetrics) -> v1::Heartbeat {
    let (backpressured_ns, alignment_ns) = metrics.wait_totals();
    v1::Heartbeat {
        sent_unix_ms: now_nanos() / 1_000_000,
        operators: metrics
            .operators()
            .iter()
            .map(|o| v1::OperatorCounters {
                uid: o.uid.clone(),
                subtask: o.subtask,
                is_source: o.is_source,
                records_in: o
                    .metrics
                    .records_in
                    .load(std::sync::atomic::Ordering::Relaxed),
                records_out: o
                    .metrics
                    .records_out
                    .load(std::sync::atomic::Ordering::Relaxed),
                watermark_ms: Some(
                    o.metrics
                        .watermark
                        .load(std::sync::atomic::Ordering::Relaxed),
                )
                .filter(|w| *w != i64::MIN),
                bytes_read: o
                    .metrics
                    .bytes_read
                    .load(std::sync::atomic::Ordering::Relaxed),
                bad_records: o
                    .metrics
                    .bad_records
                    .load(std::sync::atomic::Ordering::Relaxed),
                split_lags: o
                    .metrics
                    .split_lags()
                    .into_iter()
                    .map(|(split, lag)| v1::SplitLag { split, lag })
                    .collect(),
                snapshot_sync_ns: o
                    .metrics
                    .snapshot_sync_ns
                    .load(std::sync::atomic::Ordering::Relaxed),
                snapshot_sync_max_ns: o
                    .metrics
                    .snapshot_sync_max_ns
                    .load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect(),
        tasks: vec![v1::TaskWaits {
            task: None,
            backpressured_ns,
            alignment_ns,
        }],
        loads: metrics
            .current_tasks()
            .iter()
            .map(|t| v1::TaskLoad {
                task: Some(v1::TaskId {
                    chain: t.task.chain,
                    subtask: t.task.subtask,
                }),
                attempt: t.attempt,
                elapsed_ns: t.started.elapsed().as_nanos() as u64,
                idle_ns: t.idle_ns.load(std::sync::atomic::Ordering::Relaxed),
                backpressured_ns: t
                    .backpressured_ns
                    .load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect(),
    }
}

/// Runs commands against this worker's tasks, one at a time.
struct Executor {
    worker_id: String,
    plane: Arc<DataPlane>,
    out: UnboundedSender<v1::WorkerMessage>,
    current: Option<(u64, Box<LocalDeployment>)>,
    /// Counters of every attempt this worker ran, reported in heartbeats.
    metrics: Arc<JobMetrics>,
    /// Local scratch directory of RocksDB state.
    state_dir: std::path::PathBuf,
}

impl Executor {
    fn new(
        worker_id: String,
        plane: Arc<DataPlane>,
        out: UnboundedSender<v1::WorkerMessage>,
        metrics: Arc<JobMetrics>,
        state_dir: std::path::PathBuf,
    ) -> Self {
        Executor {
            worker_id,
            plane,
            out,
            current: None,
            metrics,
            state_dir,
        }
    }

    fn run(mut self, inbox: &Receiver<Command>) {
        for command in inbox {
            self.handle(command);
        }
        // The session is over: nothing may keep running for it.
        self.stop(Control::Cancel);
    }

    fn is_current(&self, attempt: u64) -> bool {
        self.current.as_ref().is_some_and(|(a, _)| *a == attempt)
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Deploy(d) => {
                self.stop(Control::Cancel);
                let attempt = d.attempt;
                if let Err(e) = self.deploy(d) {
                    tracing::error!(attempt, error = %e, "deploy failed");
                    self.report_failure(
                        attempt,
                        TaskId {
                            chain: 0,
                            subtask: 0,
                        },
                        &e,
                    );
                }
            }
            Command::Trigger(t) if self.is_current(t.attempt) => {
                if let Some((_, d)) = &self.current {
                    let barrier = Barrier {
                        id: CheckpointId(t.checkpoint_id),
                        kind: if t.savepoint {
                            SnapshotKind::Savepoint(if t.canonical {
                                SavepointFormat::Canonical
                            } else {
                                SavepointFormat::Native
                            })
                        } else {
                            SnapshotKind::Checkpoint
                        },
                        last_completed: (t.last_completed > 0)
                            .then_some(CheckpointId(t.last_completed)),
                    };
                    let control = if t.stop {
                        Control::Stop(barrier)
                    } else {
                        Control::Trigger(barrier)
                    };
                    for task in &t.tasks {
                        d.send(task_from_wire(Some(task)), control);
                    }
                }
            }
            Command::Complete(c) if self.is_current(c.attempt) => {
                if let Some((_, d)) = &self.current {
                    d.broadcast(Control::Complete(CheckpointId(c.checkpoint_id)));
                }
            }
            Command::Fail(f) if self.is_current(f.attempt) => {
                if let Some((_, d)) = &self.current {
                    d.send(task_from_wire(f.task.as_ref()), Control::Fail);
                }
            }
            Command::Cancel(c) if self.is_current(c.attempt) => self.stop(Control::Cancel),
            Command::Finish(f) if self.is_current(f.attempt) => self.stop(Control::Finish),
            other => tracing::debug!(command = ?other, "dropping a command of another attempt"),
        }
    }

    fn stop(&mut self, control: Control) {
        if let Some((attempt, deployment)) = self.current.take() {
            // Forget the attempt first: that takes the credits away from its remote
            // senders, so a task waiting for credit from a peer that is gone (or
            // stalled) fails at once instead of never seeing the stop.
            if control == Control::Cancel {
                self.plane.forget_attempt(attempt);
            }
            deployment.stop(control);
            self.plane.forget_attempt(attempt);
        }
    }

    fn deploy(&mut self, d: v1::Deploy) -> Result<()> {
        let spec = d
            .job
            .ok_or_else(|| Error::Internal("deploy without a job".into()))?;
        let graph = crate::pipelines::build(
            &spec.pipeline,
            &spec.args,
            spec.parallelism,
            spec.max_parallelism,
        )?;
        let exec = ExecConfig {
            batch_size: spec.batch_size.max(1) as usize,
            channel_capacity: spec.channel_capacity.max(1) as usize,
            buffer_timeout: Duration::from_micros(spec.buffer_timeout_us),
            state: StateConfig {
                backend: Backend::parse(&spec.state_backend).ok_or_else(|| {
                    Error::Usage(format!("unknown state backend {:?}", spec.state_backend))
                })?,
                local_dir: self.state_dir.clone(),
                cache_bytes: (spec.state_cache_bytes as usize).max(1),
                rocksdb_bytes: match spec.state_rocksdb_bytes {
                    0 => DEFAULT_ROCKSDB_BYTES,
                    bytes => bytes as usize,
                },
            },
            checkpoint_interval: (spec.checkpoint_interval_ms > 0)
                .then(|| Duration::from_millis(spec.checkpoint_interval_ms)),
        };
        let restore = match d.restore_from.as_str() {
            "" => None,
            path => {
                let mut point = restore::explicit(path)?;
                point.owned = d.restore_owned;
                Some(point)
            }
        };
        let job_id = JobId::parse(&d.job_id).map_err(Error::Usage)?;
        let placement = Placement {
            attempt: d.attempt,
            me: self.worker_id.clone(),
            workers: d
                .placements
                .iter()
                .map(|p| (task_from_wire(p.task.as_ref()), p.worker_id.clone()))
                .collect(),
            addresses: d.data_addresses.into_iter().collect::<HashMap<_, _>>(),
            plane: self.plane.clone(),
            connect_timeout: Duration::from_secs(10),
        };
        let metrics = self.metrics.clone();
        let tasks = deploy(
            &graph,
            &exec,
            restore.as_ref(),
            &metrics,
            d.attempt,
            Some(&placement),
        )?;
        let store: Arc<dyn CheckpointStore> = Arc::from(open_store(&d.checkpoint_uri)?);
        let deployment = start(&graph.name, tasks, store, Paths::new(&graph.name, &job_id))?;
        tracing::info!(
            attempt = d.attempt,
            tasks = deployment.tasks().len(),
            restored_from = %d.restore_from,
            "deployed"
        );
        let (events, out, attempt, worker) = (
            deployment.events().clone(),
            self.out.clone(),
            d.attempt,
            self.worker_id.clone(),
        );
        std::thread::Builder::new()
            .name("weir-worker-events".into())
            .spawn(move || forward_events(&events, &out, attempt, &worker))
            .map_err(|e| Error::Internal(format!("spawning the event forwarder: {e}")))?;
        self.current = Some((d.attempt, Box::new(deployment)));
        Ok(())
    }

    fn report_failure(&self, attempt: u64, task: TaskId, error: &Error) {
        let _ = self.out.send(failed(attempt, task, error));
    }
}

fn failed(attempt: u64, task: TaskId, error: &Error) -> v1::WorkerMessage {
    v1::WorkerMessage {
        body: Some(Event::Failed(v1::TaskFailed {
            attempt,
            task: Some(task_to_wire(task)),
            reason: error.to_string(),
            user_error: error.class() == ErrorClass::User,
        })),
    }
}

/// Sends the events of one attempt's tasks to the coordinator until they are all gone.
fn forward_events(
    events: &Receiver<TaskEvent>,
    out: &UnboundedSender<v1::WorkerMessage>,
    attempt: u64,
    worker: &str,
) {
    for event in events {
        let body = match event {
            TaskEvent::Ack(ack) => Event::Ack(ack_to_wire(attempt, &ack)),
            TaskEvent::Decline { task, id, reason } => Event::Decline(v1::TaskDecline {
                attempt,
                task: Some(task_to_wire(task)),
                checkpoint_id: id.0,
                reason,
            }),
            TaskEvent::Ended(task) => Event::Ended(v1::TaskEnded {
                attempt,
                task: Some(task_to_wire(task)),
            }),
            TaskEvent::Failed(task, error) => {
                tracing::debug!(worker, %task, %error, "task failed");
                let _ = out.send(failed(attempt, task, &error));
                continue;
            }
            TaskEvent::Exited(task) => Event::Exited(v1::TaskExited {
                attempt,
                task: Some(task_to_wire(task)),
            }),
            TaskEvent::Committed(task, id) => Event::Committed(v1::TaskCommitted {
                attempt,
                task: Some(task_to_wire(task)),
                checkpoint_id: id.0,
            }),
        };
        if out.send(v1::WorkerMessage { body: Some(body) }).is_err() {
            return;
        }
    }
}
