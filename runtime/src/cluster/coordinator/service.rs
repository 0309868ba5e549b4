//! The coordinator's gRPC services: worker sessions and the job control API.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::unbounded_channel;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use weir_proto::v1::{self, coordinator_message::Body as Command, worker_message::Body as Event};
use weir_proto::PROTOCOL_VERSION;

use crate::cluster::convert::{ack_from_wire, task_from_wire};
use crate::cluster::coordinator::load::LoadHistory;
use crate::cluster::coordinator::shared::{Counters, Shared};
use crate::cluster::coordinator::status::StatusBoard;
use crate::data::SavepointFormat;
use crate::error::Error;
use crate::exec::requests::SavepointProgress;
use crate::exec::task::TaskEvent;
use crate::ids::CheckpointId;

/// Serves worker sessions.
pub struct CoordinationService {
    /// The coordinator's state.
    pub shared: Arc<Shared>,
    /// How often workers must send heartbeats (and the coordinator pings them).
    pub heartbeat_interval: Duration,
    /// How long either side waits for word from the other before taking it for lost.
    pub heartbeat_timeout: Duration,
}

type CommandStream = Pin<Box<dyn Stream<Item = Result<v1::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl v1::coordination_server::Coordination for CoordinationService {
    type SessionStream = CommandStream;

    async fn session(
        &self,
        request: Request<Streaming<v1::WorkerMessage>>,
    ) -> Result<Response<CommandStream>, Status> {
        let mut inbound = request.into_inner();
        let register = match inbound.message().await? {
            Some(v1::WorkerMessage {
                body: Some(Event::Register(r)),
            }) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "a session must start with Register",
                ))
            }
        };
        if register.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "worker speaks protocol version {}, this coordinator speaks {PROTOCOL_VERSION}; run the same weir version on both",
                register.protocol_version
            )));
        }
        if register.slots == 0 {
            return Err(Status::invalid_argument(
                "a worker must offer at least one slot",
            ));
        }
        let (commands, stream) = unbounded_channel();
        let _ = commands.send(Ok(v1::CoordinatorMessage {
            body: Some(Command::Registered(v1::Registered {
                protocol_version: PROTOCOL_VERSION,
                heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
                heartbeat_timeout_ms: self.heartbeat_timeout.as_millis() as u64,
            })),
        }));
        let worker = register.worker_id.clone();
        let session =
            self.shared
                .register(&worker, register.slots, register.data_address, commands);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let reason = loop {
                match inbound.message().await {
                    Ok(Some(message)) => handle(&shared, &worker, session, message),
                    Ok(None) => break "its session ended".to_string(),
                    Err(status) => break format!("its connection broke: {}", status.message()),
                }
            };
            shared.lose(&worker, session, &reason);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            stream,
        ))))
    }
}

fn handle(shared: &Shared, worker: &str, session: u64, message: v1::WorkerMessage) {
    let mut inner = shared.lock();
    match inner.workers.get_mut(worker) {
        Some(w) if w.session == session => {
            w.last_seen = Instant::now();
            if let Some(Event::Heartbeat(beat)) = &message.body {
                w.counters = Counters::from_heartbeat(beat);
                w.loads = beat.loads.clone();
            }
        }
        // A session that was replaced or expired: everything it says is stale.
        _ => return,
    }
    match message.body {
        Some(Event::Ack(ack)) => match ack_from_wire(&ack) {
            Ok(a) => inner.event(ack.attempt, TaskEvent::Ack(a)),
            Err(reason) => {
                let task = task_from_wire(ack.task.as_ref());
                inner.event(
                    ack.attempt,
                    TaskEvent::Decline {
                        task,
                        id: CheckpointId(ack.checkpoint_id),
                        reason,
                    },
                );
            }
        },
        Some(Event::Decline(d)) => inner.event(
            d.attempt,
            TaskEvent::Decline {
                task: task_from_wire(d.task.as_ref()),
                id: CheckpointId(d.checkpoint_id),
                reason: d.reason,
            },
        ),
        Some(Event::Ended(e)) => {
            inner.event(e.attempt, TaskEvent::Ended(task_from_wire(e.task.as_ref())))
        }
        Some(Event::Exited(e)) => inner.event(
            e.attempt,
            TaskEvent::Exited(task_from_wire(e.task.as_ref())),
        ),
        Some(Event::Committed(c)) => inner.event(
            c.attempt,
            TaskEvent::Committed(
                task_from_wire(c.task.as_ref()),
                CheckpointId(c.checkpoint_id),
            ),
        ),
        Some(Event::Failed(f)) => {
            let task = task_from_wire(f.task.as_ref());
            let error = Error::TaskFailed {
                task,
                worker: worker.to_string(),
                reason: f.reason,
                user: f.user_error,
            };
            inner.event(f.attempt, TaskEvent::Failed(task, error));
        }
        Some(Event::Heartbeat(_)) | Some(Event::Register(_)) | None => {}
    }
}

/// Serves the job control API.
pub struct JobControlService {
    /// The job's status.
    pub status: Arc<StatusBoard>,
    /// The job's parallelism and key groups, which another version of it is built with.
    pub parallelism: u32,
    /// See `parallelism`.
    pub max_parallelism: u32,
    /// Samples of the job's load.
    pub load: Arc<LoadHistory>,
}

#[tonic::async_trait]
impl v1::job_control_server::JobControl for JobControlService {
    async fn get_status(
        &self,
        _: Request<v1::GetStatusRequest>,
    ) -> Result<Response<v1::JobStatus>, Status> {
        Ok(Response::new(self.status.snapshot()))
    }

    async fn trigger_savepoint(
        &self,
        request: Request<v1::TriggerSavepointRequest>,
    ) -> Result<Response<v1::TriggerSavepointResponse>, Status> {
        let request = request.into_inner();
        let phase = self.status.phase();
        if is_over(phase.state) {
            return Err(Status::failed_precondition(format!(
                "the job is over ({}); no savepoint can be taken",
                crate::cluster::coordinator::http::state_name(phase.state)
            )));
        }
        let target = Some(request.target).filter(|t| !t.is_empty());
        let format = if request.canonical {
            SavepointFormat::Canonical
        } else {
            SavepointFormat::Native
        };
        let id = self
            .status
            .handle
            .trigger_savepoint(target, request.stop, format);
        Ok(Response::new(v1::TriggerSavepointResponse { id }))
    }

    async fn get_savepoint(
        &self,
        request: Request<v1::GetSavepointRequest>,
    ) -> Result<Response<v1::SavepointStatus>, Status> {
        let id = request.into_inner().id;
        let progress = self.status.handle.savepoint(&id).ok_or_else(|| {
            Status::not_found(format!("no savepoint {id} was asked of this coordinator"))
        })?;
        let (state, path, message) = match progress {
            SavepointProgress::Pending => {
                (v1::SavepointState::Pending, String::new(), String::new())
            }
            SavepointProgress::Completed { path, .. } => {
                (v1::SavepointState::Completed, path, String::new())
            }
            SavepointProgress::Failed(reason) => {
                (v1::SavepointState::Failed, String::new(), reason)
            }
        };
        Ok(Response::new(v1::SavepointStatus {
            id,
            state: state as i32,
            path,
            message,
        }))
    }

    async fn cancel(
        &self,
        _: Request<v1::CancelRequest>,
    ) -> Result<Response<v1::CancelResponse>, Status> {
        let phase = self.status.phase();
        if is_over(phase.state) {
            return Err(Status::failed_precondition(format!(
                "the job is over ({})",
                crate::cluster::coordinator::http::state_name(phase.state)
            )));
        }
        tracing::info!("cancel requested through the API");
        self.status.handle.cancel();
        Ok(Response::new(v1::CancelResponse {}))
    }

    async fn get_load(
        &self,
        request: Request<v1::GetLoadRequest>,
    ) -> Result<Response<v1::JobLoad>, Status> {
        let window = Duration::from_millis(request.into_inner().window_ms);
        Ok(Response::new(self.load.over(window)))
    }

    async fn check_upgrade(
        &self,
        request: Request<v1::CheckUpgradeRequest>,
    ) -> Result<Response<v1::CheckUpgradeResponse>, Status> {
        let request = request.into_inner();
        let latest = self.status.snapshot().latest_checkpoint.map(|c| c.path);
        let (parallelism, max_parallelism) = (self.parallelism, self.max_parallelism);
        let checked = tokio::task::spawn_blocking(move || {
            check_upgrade(&request, latest, parallelism, max_parallelism)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        checked.map(Response::new)
    }

    async fn dispose_savepoint(
        &self,
        request: Request<v1::DisposeSavepointRequest>,
    ) -> Result<Response<v1::DisposeSavepointResponse>, Status> {
        let path = request.into_inner().path;
        let result = tokio::task::spawn_blocking(move || dispose_savepoint(&path).map(|()| path))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        match result {
            Ok(path) => {
                tracing::info!(savepoint = %path, "savepoint disposed");
                Ok(Response::new(v1::DisposeSavepointResponse {}))
            }
            Err(e @ (crate::error::Error::Usage(_) | crate::error::Error::NoCheckpoint(_))) => {
                Err(Status::invalid_argument(e.to_string()))
            }
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

/// Builds the version of the job `request` names and compares it with the
/// state of checkpoint `latest`.
fn check_upgrade(
    request: &v1::CheckUpgradeRequest,
    latest: Option<String>,
    parallelism: u32,
    max_parallelism: u32,
) -> Result<v1::CheckUpgradeResponse, Status> {
    let graph = crate::pipelines::build(
        &request.pipeline,
        &request.args,
        parallelism,
        max_parallelism,
    )
    .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let Some(location) = latest else {
        return Ok(v1::CheckUpgradeResponse::default());
    };
    let metadata = crate::checkpoint::restore::peek(&location)
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let fit = crate::exec::state_fit::StateFit::of(&graph, &metadata);
    tracing::info!(pipeline = %request.pipeline, against = %location, kept = fit.kept.len(), dropped = %fit.dropped.join(", "), "upgrade checked");
    Ok(v1::CheckUpgradeResponse {
        against: location,
        kept: fit.kept,
        dropped: fit.dropped,
    })
}

/// Deletes the savepoint in directory `path`, after checking that it is one (its
/// last component is `sp-...` and it holds a `_metadata`).
pub fn dispose_savepoint(path: &str) -> crate::error::Result<()> {
    use crate::checkpoint::paths::METADATA;
    use crate::error::Error;
    let dir = path.trim_end_matches('/');
    let name = dir.rsplit('/').next().unwrap_or_default();
    if !name.starts_with("sp-") {
        return Err(Error::Usage(format!(
            "{path} is not a savepoint directory (sp-...)"
        )));
    }
    let store = crate::checkpoint::store::open_store(dir)?;
    if !store.list("")?.iter().any(|k| k == METADATA) {
        return Err(Error::NoCheckpoint(format!("{path} (no savepoint there)")));
    }
    // `_metadata` first: a half-deleted savepoint is then no longer one.
    store.delete(&[METADATA.to_string()])?;
    store.delete_prefix("")
}

/// Whether a job in `state` has ended for good.
fn is_over(state: v1::JobState) -> bool {
    matches!(
        state,
        v1::JobState::Finished
            | v1::JobState::Failed
            | v1::JobState::Canceled
            | v1::JobState::Stopped
    )
}
