//! Talking to a job's coordinator through its gRPC API (`weir.v1.JobControl`).

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use weir_proto::api_token::SendToken;
use weir_proto::v1::{self, job_control_client::JobControlClient};

use crate::autoscaler::{ChainLoad, JobLoad};
use crate::crd::{CheckpointRef, SavepointFormat};
use crate::error::{Error, Result};
use crate::planner::{CoordinatorView, JobState, SavepointProgress, UpgradeCheck};

/// How long a call to the coordinator may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A job's coordinator: where its API listens, and the token it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    /// host:port of its gRPC API.
    pub address: String,
    /// The job's API token (see [`crate::api_token`]); `None` for a job
    /// deployed before tokens.
    pub token: Option<String>,
}

async fn client(
    coordinator: &Coordinator,
) -> Result<JobControlClient<InterceptedService<Channel, SendToken>>> {
    let address = &coordinator.address;
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| Error::Coordinator(format!("{address}: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Error::Coordinator(format!("{address}: {e}")))?;
    Ok(JobControlClient::with_interceptor(
        channel,
        SendToken::new(coordinator.token.clone()),
    ))
}

fn failed(address: &str, status: tonic::Status) -> Error {
    Error::Coordinator(format!("{address}: {}", status.message()))
}

fn time(unix_ms: u64) -> String {
    jiff::Timestamp::from_millisecond(unix_ms as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The job's status.
pub async fn status(coordinator: &Coordinator) -> Result<CoordinatorView> {
    let address = &coordinator.address;
    let status = client(coordinator)
        .await?
        .get_status(v1::GetStatusRequest {})
        .await
        .map_err(|e| failed(address, e))?
        .into_inner();
    let state = match v1::JobState::try_from(status.state).unwrap_or(v1::JobState::Unspecified) {
        v1::JobState::Running => JobState::Running,
        v1::JobState::Restarting => JobState::Restarting,
        v1::JobState::Savepointing => JobState::Savepointing,
        v1::JobState::Finished => JobState::Finished,
        v1::JobState::Stopped => JobState::Stopped,
        v1::JobState::Failed | v1::JobState::Canceled => JobState::Failed,
        v1::JobState::WaitingForSlots | v1::JobState::Unspecified => JobState::Starting,
    };
    Ok(CoordinatorView {
        state,
        parallelism: status.parallelism,
        latest_checkpoint: status.latest_checkpoint.map(|c| CheckpointRef {
            id: c.id,
            path: c.path,
            time: time(c.time_unix_ms),
        }),
        restarts: status.restarts,
        message: status.message,
        stopped_with: Some(status.stopped_with).filter(|s| !s.is_empty()),
        instance: address.to_string(),
    })
}

/// Starts a savepoint in `format`; returns the coordinator's id for it.
pub async fn trigger_savepoint(
    coordinator: &Coordinator,
    stop: bool,
    format: SavepointFormat,
) -> Result<String> {
    let address = &coordinator.address;
    Ok(client(coordinator)
        .await?
        .trigger_savepoint(v1::TriggerSavepointRequest {
            target: String::new(),
            stop,
            canonical: format == SavepointFormat::Canonical,
        })
        .await
        .map_err(|e| failed(address, e))?
        .into_inner()
        .id)
}

/// How savepoint `id` is doing; a coordinator that does not know it answers
/// [`SavepointProgress::Unknown`].
pub async fn savepoint(coordinator: &Coordinator, id: &str) -> Result<SavepointProgress> {
    let address = &coordinator.address;
    let reply = client(coordinator)
        .await?
        .get_savepoint(v1::GetSavepointRequest { id: id.to_string() })
        .await;
    let status = match reply {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(SavepointProgress::Unknown),
        Err(s) => return Err(failed(address, s)),
    };
    Ok(
        match v1::SavepointState::try_from(status.state).unwrap_or(v1::SavepointState::Unspecified)
        {
            v1::SavepointState::Completed => SavepointProgress::Completed(status.path),
            v1::SavepointState::Failed => SavepointProgress::Failed(status.message),
            _ => SavepointProgress::Pending,
        },
    )
}

/// Deletes the savepoint at `path` from storage.
pub async fn dispose_savepoint(coordinator: &Coordinator, path: &str) -> Result<()> {
    let address = &coordinator.address;
    client(coordinator)
        .await?
        .dispose_savepoint(v1::DisposeSavepointRequest {
            path: path.to_string(),
        })
        .await
        .map_err(|e| failed(address, e))?;
    Ok(())
}

/// Asks the coordinator to build the job as `pipeline` `args` and compare it
/// with its latest checkpoint's state; `None` when it cannot tell (an older
/// image without the call).
pub async fn check_upgrade(
    coordinator: &Coordinator,
    pipeline: String,
    args: Vec<String>,
) -> Result<Option<UpgradeCheck>> {
    let address = &coordinator.address;
    let reply = client(coordinator)
        .await?
        .check_upgrade(v1::CheckUpgradeRequest { pipeline, args })
        .await;
    match reply {
        Ok(r) => {
            let r = r.into_inner();
            Ok(Some(UpgradeCheck::Restores {
                against: r.against,
                dropped: r.dropped,
            }))
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            Ok(Some(UpgradeCheck::Invalid(s.message().to_string())))
        }
        Err(s) if s.code() == tonic::Code::Unimplemented => Ok(None),
        Err(s) => Err(failed(address, s)),
    }
}

/// The job's load over the last `window`, per operator chain.
pub async fn load(coordinator: &Coordinator, window: Duration) -> Result<JobLoad> {
    let address = &coordinator.address;
    let load = client(coordinator)
        .await?
        .get_load(v1::GetLoadRequest {
            window_ms: window.as_millis() as u64,
        })
        .await
        .map_err(|e| failed(address, e))?
        .into_inner();
    Ok(JobLoad {
        covered: Duration::from_millis(load.covered_ms),
        chains: load
            .chains
            .into_iter()
            .map(|c| ChainLoad {
                name: c.name,
                parallelism: c.parallelism,
                source: c.source,
                busy: c.busy,
                backpressured: c.backpressured,
                records_per_second: c.records_per_second,
                backlog: c.backlog.map(|b| b as f64),
                backlog_per_second: c.backlog_per_second,
            })
            .collect(),
    })
}
