//! The `StreamJob`'s status: phase, conditions, checkpoints and savepoints,
//! and what the controller remembers between passes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Pods are being created; no checkpoint has completed yet.
    Deploying,
    /// Running, with a completed checkpoint.
    Running,
    /// Taking a savepoint (on request, periodically, or before an upgrade).
    Savepointing,
    /// Replacing the pods with a new spec.
    Upgrading,
    /// Stopped on request; pods removed.
    Suspended,
    /// Restarting after a failure.
    Recovering,
    /// Failed for good; the message says why.
    Failed,
    /// A bounded job that read all its input and completed its final checkpoint.
    Finished,
}

/// What the controller observed and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    /// Where the job is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Ready`, `Reconciling`, `Stalled` (as kstatus reads them) and `Degraded`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The generation of the spec that has been rolled out (or found invalid):
    /// behind `metadata.generation` while a change is in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Parallelism of the running job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// The newest completed checkpoint, as the coordinator reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointRef>,
    /// The newest savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_savepoint: Option<SavepointRef>,
    /// Savepoints kept, oldest first.
    #[serde(default)]
    pub savepoints: Vec<SavepointRef>,
    /// Restarts of the job after failures (all deployments).
    #[serde(default)]
    pub restarts: u32,
    /// Hash of the deployed spec (what a change of makes an upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_spec_hash: Option<String>,
    /// When the current deployment was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<String>,
    /// Where the current (or next) deployment restores from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// A savepoint in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_savepoint: Option<PendingSavepoint>,
    /// Savepoints that failed in a row (for the retry backoff).
    #[serde(default)]
    pub savepoint_failures: u32,
    /// Why the last savepoint failed (cleared when one completes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_savepoint_failure: Option<String>,
    /// No savepoint is retried before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_retry_at: Option<String>,
    /// The savepointTriggerNonce already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_savepoint_nonce: Option<i64>,
    /// The restartNonce already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_restart_nonce: Option<i64>,
    /// Incremented by a stateless upgrade: state goes to a fresh directory.
    #[serde(default)]
    pub storage_epoch: u32,
    /// The deployment's identity, which keys its storage: the StreamJob's UID
    /// (with the storage epoch after a stateless upgrade). A StreamJob deleted and
    /// created again under the same name has another UID, so it starts clean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The maxParallelism the job's state was deployed with (fixed for its life).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_max_parallelism: Option<u32>,
    /// Restarts counted by earlier deployments' coordinators.
    #[serde(default)]
    pub restarts_before: u32,
    /// The coordinator process last seen (see `CoordinatorView::instance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator_instance: Option<String>,
    /// Restarts that coordinator had counted when last seen.
    #[serde(default)]
    pub coordinator_restarts: u32,
    /// The StreamTables a SQL job's script uses, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Why deleting the job's state from storage failed last (the deletion
    /// retries it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_deletion_failure: Option<String>,
    /// What the autoscaler chose and why, while it is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<super::AutoscalerStatus>,
}

/// A completed checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRef {
    /// Its id.
    pub id: u64,
    /// Its directory.
    pub path: String,
    /// When it was taken (RFC 3339).
    pub time: String,
}

/// A savepoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointRef {
    /// Its directory.
    pub path: String,
    /// When it completed (RFC 3339).
    pub time: String,
    /// Why it was taken: `upgrade`, `suspend`, `manual`, `periodic`, `delete`.
    pub reason: String,
}

/// A savepoint the coordinator is taking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingSavepoint {
    /// The coordinator's id of the request.
    pub id: String,
    /// Whether the job stops after it.
    pub stop: bool,
    /// Why it was taken.
    pub reason: String,
    /// When it was requested (RFC 3339).
    pub started: String,
}

/// A status condition, as Kubernetes conventions have it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Its kind: `Ready`, `Reconciling`, `Stalled` or `Degraded` (a StreamTable
    /// has `Ready` only).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word for why.
    pub reason: String,
    /// A sentence for people (left out when empty: Kubernetes 1.20's server-side
    /// apply turns an empty string in a list item into null, which the schema refuses).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
}
